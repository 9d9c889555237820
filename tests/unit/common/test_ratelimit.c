/*
 * Quotas and rate limits (src/common/ratelimit.h): token buckets refill at
 * their rate up to their burst and refuse beyond it; the shared counters
 * count WebSockets per server and per user, and REST requests per user and
 * second, without letting anyone past a limit — also from many threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "common/ratelimit.h"

static unsigned take_n(struct rt_bucket *b, const struct rt_rate *r, uint64_t now, unsigned n)
{
	unsigned ok = 0;
	for (unsigned i = 0; i < n; i++)
		ok += rt_bucket_take(b, r, now);
	return ok;
}

static void test_bucket_burst_then_rate(void **state)
{
	struct rt_rate r = {.per_s = 10, .burst = 0}; /* burst = rate */
	struct rt_bucket b = {0};
	uint64_t t = 5000;
	assert_int_equal(take_n(&b, &r, t, 20), 10); /* starts full */
	assert_false(rt_bucket_take(&b, &r, t));
	assert_int_equal(rt_bucket_wait_ms(&b, &r, t), 100);
	assert_int_equal(rt_bucket_wait_ms(&b, &r, t + 60), 40);
	assert_false(rt_bucket_take(&b, &r, t + 99));
	assert_true(rt_bucket_take(&b, &r, t + 100)); /* one token per 100 ms */
	assert_false(rt_bucket_take(&b, &r, t + 100));
	/* A long pause refills only up to the burst. */
	assert_int_equal(take_n(&b, &r, t + 100000, 50), 10);
	/* Over a long run the rate holds: 10/s for 10 s plus the burst. */
	struct rt_bucket c = {0};
	unsigned ok = 0;
	for (uint64_t ms = 0; ms <= 10000; ms++)
		ok += take_n(&c, &r, ms, 3);
	assert_int_equal(ok, 10 + 100);
}

static void test_bucket_explicit_burst_and_unlimited(void **state)
{
	struct rt_rate r = {.per_s = 100, .burst = 250};
	struct rt_bucket b = {0};
	assert_int_equal(take_n(&b, &r, 0, 1000), 250);
	assert_int_equal(take_n(&b, &r, 10, 1000), 1); /* 100/s = 1 per 10 ms */
	assert_int_equal(take_n(&b, &r, 5, 1000), 0);  /* time going back adds nothing */
	struct rt_rate none = {0};
	struct rt_bucket u = {0};
	assert_int_equal(take_n(&u, &none, 0, 100000), 100000);
	assert_int_equal(rt_bucket_wait_ms(&u, &none, 0), 0);
}

static void test_user_identity(void **state)
{
	uint64_t a = rt_quota_user("user-1", "authenticated", "10.0.0.1:5000");
	assert_int_equal(a, rt_quota_user("user-1", "anon", "10.0.0.2:6000")); /* sub wins */
	assert_int_not_equal(a, rt_quota_user("user-2", "authenticated", "10.0.0.1:5000"));
	uint64_t anon = rt_quota_user(NULL, "anon", "10.0.0.1:5000");
	assert_int_equal(anon, rt_quota_user("", "anon", "10.0.0.1:7000")); /* port ignored */
	assert_int_not_equal(anon, rt_quota_user(NULL, "anon", "10.0.0.2:5000"));
	assert_int_not_equal(anon, rt_quota_user(NULL, "service_role", "10.0.0.1:5000"));
	assert_int_equal(rt_quota_user(NULL, "anon", "[::1]:1"), rt_quota_user(NULL, "anon", "[::1]:2"));
	assert_int_not_equal(rt_quota_user(NULL, NULL, NULL), 0);
}

static void test_connections(void **state)
{
	struct rt_quota_config cfg = {.max_connections = 5, .max_connections_per_user = 2};
	struct rt_quota *q = rt_quota_new(&cfg);
	struct rt_quota_conn c[8];
	uint64_t u1 = rt_quota_user("u1", NULL, NULL), u2 = rt_quota_user("u2", NULL, NULL);
	assert_int_equal(rt_quota_conn_open(q, u1, &c[0]), RT_QUOTA_OK);
	assert_int_equal(rt_quota_conn_open(q, u1, &c[1]), RT_QUOTA_OK);
	assert_int_equal(rt_quota_conn_open(q, u1, &c[2]), RT_QUOTA_CONNECTIONS_PER_USER);
	assert_false(c[2].is_counted);
	assert_int_equal(rt_quota_user_connections(q, u1), 2);
	assert_int_equal(rt_quota_conn_open(q, u2, &c[3]), RT_QUOTA_OK); /* others unaffected */
	assert_int_equal(rt_quota_connections(q), 3);
	rt_quota_conn_close(q, &c[2]); /* not counted: nothing */
	rt_quota_conn_close(q, &c[0]);
	rt_quota_conn_close(q, &c[0]); /* twice: once */
	assert_int_equal(rt_quota_connections(q), 2);
	assert_int_equal(rt_quota_conn_open(q, u1, &c[0]), RT_QUOTA_OK);
	/* The server's total: 5 of distinct users. */
	assert_int_equal(rt_quota_conn_open(q, rt_quota_user("u3", NULL, NULL), &c[4]), RT_QUOTA_OK);
	assert_int_equal(rt_quota_conn_open(q, rt_quota_user("u4", NULL, NULL), &c[5]), RT_QUOTA_OK);
	assert_int_equal(rt_quota_conn_open(q, rt_quota_user("u5", NULL, NULL), &c[6]),
			 RT_QUOTA_CONNECTIONS);
	assert_int_equal(rt_quota_connections(q), 5);
	for (int i = 0; i < 7; i++)
		rt_quota_conn_close(q, &c[i]);
	assert_int_equal(rt_quota_connections(q), 0);
	assert_int_equal(rt_quota_user_connections(q, u1), 0);
	rt_quota_free(q);
	/* Without a quota everything passes and nothing is counted. */
	assert_int_equal(rt_quota_conn_open(NULL, u1, &c[0]), RT_QUOTA_OK);
	rt_quota_conn_close(NULL, &c[0]);
	assert_true(rt_quota_rest_allow(NULL, u1, 0));
	assert_int_equal(rt_quota_config(NULL)->max_connections, 0);
}

/* Many users at their limit never limit each other. */
static void test_users_do_not_limit_each_other(void **state)
{
	struct rt_quota_config cfg = {.max_connections_per_user = 1};
	struct rt_quota *q = rt_quota_new(&cfg);
	static struct rt_quota_conn c[3000];
	unsigned refused = 0;
	for (unsigned i = 0; i < 3000; i++) {
		char sub[32];
		snprintf(sub, sizeof sub, "user-%u", i);
		refused += rt_quota_conn_open(q, rt_quota_user(sub, NULL, NULL), &c[i]) != RT_QUOTA_OK;
	}
	assert_int_equal(refused, 0);
	assert_int_equal(rt_quota_connections(q), 3000);
	for (unsigned i = 0; i < 3000; i++)
		rt_quota_conn_close(q, &c[i]);
	assert_int_equal(rt_quota_connections(q), 0);
	rt_quota_free(q);
}

static void test_rest_windows(void **state)
{
	struct rt_quota_config cfg = {.rest_per_s = 3};
	struct rt_quota *q = rt_quota_new(&cfg);
	uint64_t a = rt_quota_user("a", NULL, NULL), b = rt_quota_user("b", NULL, NULL);
	unsigned ok = 0;
	for (int i = 0; i < 10; i++)
		ok += rt_quota_rest_allow(q, a, 100);
	assert_int_equal(ok, 3);
	assert_true(rt_quota_rest_allow(q, b, 100)); /* another user: his own window */
	ok = 0;
	for (int i = 0; i < 10; i++)
		ok += rt_quota_rest_allow(q, a, 101); /* the next second starts afresh */
	assert_int_equal(ok, 3);
	rt_quota_free(q);
}

struct race {
	struct rt_quota *q;
	uint64_t user;
	unsigned admitted;
};

static void *race_open(void *arg)
{
	struct race *r = arg;
	struct rt_quota_conn c[200];
	for (unsigned i = 0; i < 200; i++)
		if (rt_quota_conn_open(r->q, r->user, &c[i]) == RT_QUOTA_OK)
			r->admitted++;
	return NULL;
}

static void *race_rest(void *arg)
{
	struct race *r = arg;
	for (unsigned i = 0; i < 1000; i++)
		r->admitted += rt_quota_rest_allow(r->q, r->user, 7);
	return NULL;
}

/* Threads racing for one user's connections or requests: exactly the limit passes. */
static void test_threads(void **state)
{
	struct rt_quota_config cfg = {.max_connections = 1000, .max_connections_per_user = 50,
				      .rest_per_s = 300};
	struct rt_quota *q = rt_quota_new(&cfg);
	pthread_t th[8];
	struct race r[8];
	for (int pass = 0; pass < 2; pass++) {
		unsigned total = 0;
		for (int i = 0; i < 8; i++) {
			r[i] = (struct race){.q = q, .user = rt_quota_user("racer", NULL, NULL)};
			pthread_create(&th[i], NULL, pass ? race_rest : race_open, &r[i]);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(th[i], NULL);
			total += r[i].admitted;
		}
		/* Racers counted at once may all be refused: never more than the limit. */
		assert_true(total <= (pass ? 300u : 50u) && total >= (pass ? 290u : 40u));
	}
	assert_true(rt_quota_connections(q) <= 50);
	assert_int_equal(rt_quota_connections(q), rt_quota_user_connections(q, r[0].user));
	rt_quota_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_burst_then_rate),
		cmocka_unit_test(test_bucket_explicit_burst_and_unlimited),
		cmocka_unit_test(test_user_identity),
		cmocka_unit_test(test_connections),
		cmocka_unit_test(test_users_do_not_limit_each_other),
		cmocka_unit_test(test_rest_windows),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
