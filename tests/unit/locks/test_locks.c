/*
 * The lock table (src/locks/locks.c) with a fake clock: grants and tokens,
 * FIFO hand-over, lease expiry and renewal, waits that time out, release
 * by disconnect, the bounds, the ticker thread, and a random mix of
 * operations checked against the invariants after each step. The stored
 * fencing epoch of both stores is tested in tests/unit/store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "locks/locks.h"
#include "store/store.h"
#include "../testutil.h"

#define MAX_EVENTS 4096

struct rec {
	enum rt_lock_event_kind kind;
	char name[RT_LOCKS_MAX_NAME + 1];
	uint64_t owner, token;
};

static struct rec evs[MAX_EVENTS];
static size_t n_evs;

static void on_event(void *ctx, const struct rt_lock_event *ev)
{
	(void)ctx;
	if (n_evs == MAX_EVENTS)
		n_evs = 0; /* the random test only counts the recent ones */
	struct rec *r = &evs[n_evs++];
	r->kind = ev->kind;
	snprintf(r->name, sizeof r->name, "%s", ev->name);
	r->owner = ev->owner;
	r->token = ev->token;
}

static size_t count(enum rt_lock_event_kind kind, uint64_t owner)
{
	size_t n = 0;
	for (size_t i = 0; i < n_evs; i++)
		if (evs[i].kind == kind && evs[i].owner == owner)
			n++;
	return n;
}

static uint64_t last_token(enum rt_lock_event_kind kind, uint64_t owner)
{
	for (size_t i = n_evs; i-- > 0;)
		if (evs[i].kind == kind && evs[i].owner == owner)
			return evs[i].token;
	return 0;
}

static struct rt_locks *table(uint64_t epoch)
{
	struct rt_locks_config cfg;
	rt_locks_config_default(&cfg);
	cfg.epoch = epoch;
	cfg.max_waiters = 3;
	cfg.max_per_owner = 4;
	cfg.max_locks = 8;
	cfg.on_event = on_event;
	n_evs = 0;
	return rt_locks_new(&cfg);
}

static void test_grant_and_tokens(void **state)
{
	(void)state;
	struct rt_locks *t = table(7);
	struct rt_lock_grant g1, g2;
	assert_int_equal(rt_locks_acquire(t, 1000, "a", 1, "alice", false, 500, 0, &g1), RT_LOCK_OK);
	assert_int_equal(g1.token >> 32, 7);
	assert_int_equal(g1.lease_ms, 500);
	assert_int_equal(g1.expires_ms, 1500);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 1), 1);
	/* held: busy without a wait, and the holder asking again gets its grant */
	assert_int_equal(rt_locks_acquire(t, 1001, "a", 2, "bob", false, 500, 0, &g2), RT_LOCK_BUSY);
	assert_int_equal(rt_locks_acquire(t, 1001, "a", 1, "alice", false, 500, 0, &g2),
			 RT_LOCK_HELD_BY_YOU);
	assert_int_equal(g2.token, g1.token);
	rt_locks_validate(t);
	/* release with a wrong token fails, with the right one works */
	assert_int_equal(rt_locks_release(t, 1002, "a", 1, g1.token + 1), RT_LOCK_NOT_HELD);
	assert_int_equal(rt_locks_release(t, 1002, "a", 2, 0), RT_LOCK_NOT_HELD);
	assert_int_equal(rt_locks_release(t, 1002, "a", 1, g1.token), RT_LOCK_OK);
	rt_locks_validate(t);
	/* every later grant's token is larger, whichever lock */
	uint64_t prev = g1.token;
	for (int i = 0; i < 20; i++) {
		const char *name = i % 2 ? "a" : "b";
		assert_int_equal(rt_locks_acquire(t, 1003, name, 3, NULL, false, 0, 0, &g2), RT_LOCK_OK);
		assert_true(g2.token > prev);
		assert_int_equal(g2.lease_ms, 30000); /* the default */
		prev = g2.token;
		assert_int_equal(rt_locks_release(t, 1003, name, 3, 0), RT_LOCK_OK);
	}
	rt_locks_validate(t);
	struct rt_locks_stats st;
	rt_locks_stats(t, &st);
	assert_int_equal(st.n_held, 0);
	assert_int_equal(st.n_grants, 21);
	assert_int_equal(st.n_releases, 21);
	rt_locks_free(t);
	/* a later run (the next epoch) gives larger tokens than any of this one */
	t = table(8);
	assert_int_equal(rt_locks_acquire(t, 0, "a", 1, NULL, false, 0, 0, &g2), RT_LOCK_OK);
	assert_true(g2.token > prev);
	rt_locks_free(t);
}

static void test_fifo_handover(void **state)
{
	(void)state;
	struct rt_locks *t = table(1);
	struct rt_lock_grant g;
	assert_int_equal(rt_locks_acquire(t, 0, "x", 10, NULL, false, 1000, 0, &g), RT_LOCK_OK);
	uint64_t t10 = g.token;
	for (uint64_t o = 11; o <= 13; o++) {
		assert_int_equal(rt_locks_acquire(t, o, "x", o, NULL, false, 1000, 5000, &g),
				 RT_LOCK_QUEUED);
		assert_int_equal(g.position, o - 10);
	}
	/* a fourth waiter is over the bound; a waiter asking again is told */
	assert_int_equal(rt_locks_acquire(t, 20, "x", 14, NULL, false, 1000, 5000, &g),
			 RT_LOCK_TOO_MANY_WAITERS);
	assert_int_equal(rt_locks_acquire(t, 20, "x", 12, NULL, false, 1000, 5000, &g),
			 RT_LOCK_WAITING);
	rt_locks_validate(t);
	/* each release hands the lock to the longest waiter, with a larger token */
	uint64_t prev = t10;
	uint64_t holder = 10;
	for (uint64_t o = 11; o <= 13; o++) {
		assert_int_equal(rt_locks_release(t, 100, "x", holder, 0), RT_LOCK_OK);
		assert_int_equal(count(RT_LOCK_EV_GRANTED, o), 1);
		uint64_t tok = last_token(RT_LOCK_EV_GRANTED, o);
		assert_true(tok > prev);
		prev = tok;
		holder = o;
		rt_locks_validate(t);
	}
	json_t *s = rt_locks_state(t, 100, "x");
	assert_true(json_is_true(json_object_get(s, "held")));
	assert_int_equal(json_integer_value(json_object_get(s, "token")), (json_int_t)prev);
	assert_int_equal(json_integer_value(json_object_get(s, "waiters")), 0);
	json_decref(s);
	assert_int_equal(rt_locks_release(t, 100, "x", 13, 0), RT_LOCK_OK);
	s = rt_locks_state(t, 100, "x");
	assert_true(json_is_false(json_object_get(s, "held")));
	json_decref(s);
	rt_locks_validate(t);
	rt_locks_free(t);
}

static void test_lease_expiry_and_renew(void **state)
{
	(void)state;
	struct rt_locks *t = table(1);
	struct rt_lock_grant g, w;
	assert_int_equal(rt_locks_acquire(t, 0, "l", 1, NULL, false, 1000, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 10, "l", 2, NULL, false, 1000, 10000, &w),
			 RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_tick(t, 999), 1000); /* the next deadline: the lease */
	assert_int_equal(count(RT_LOCK_EV_LOST, 1), 0);
	/* a renewal moves the end */
	assert_int_equal(rt_locks_renew(t, 900, "l", 1, g.token, 0, &g), RT_LOCK_OK);
	assert_int_equal(g.expires_ms, 1900);
	assert_int_equal(rt_locks_renew(t, 900, "l", 2, 0, 0, NULL), RT_LOCK_NOT_HELD);
	assert_int_equal(rt_locks_renew(t, 900, "l", 1, 0, 50, NULL), RT_LOCK_BAD_LEASE);
	rt_locks_tick(t, 1500);
	assert_int_equal(count(RT_LOCK_EV_LOST, 1), 0);
	/* the lease ends: lost by 1, granted to 2 with a larger token */
	rt_locks_tick(t, 1900);
	assert_int_equal(count(RT_LOCK_EV_LOST, 1), 1);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 2), 1);
	assert_true(last_token(RT_LOCK_EV_GRANTED, 2) > g.token);
	/* the old holder can neither renew nor release it any more */
	assert_int_equal(rt_locks_renew(t, 1901, "l", 1, g.token, 0, NULL), RT_LOCK_NOT_HELD);
	assert_int_equal(rt_locks_release(t, 1901, "l", 1, g.token), RT_LOCK_NOT_HELD);
	/* a lease past its end is not renewed even before the tick sees it */
	assert_int_equal(rt_locks_renew(t, 2900, "l", 2, 0, 0, NULL), RT_LOCK_NOT_HELD);
	rt_locks_validate(t);
	struct rt_locks_stats st;
	rt_locks_stats(t, &st);
	assert_int_equal(st.n_expiries, 1);
	rt_locks_free(t);
}

static void test_wait_timeout(void **state)
{
	(void)state;
	struct rt_locks *t = table(1);
	struct rt_lock_grant g;
	assert_int_equal(rt_locks_acquire(t, 0, "w", 1, NULL, false, 10000, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "w", 2, NULL, false, 1000, 300, &g), RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_acquire(t, 0, "w", 3, NULL, false, 1000, 5000, &g), RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_tick(t, 100), 300);
	rt_locks_tick(t, 300);
	assert_int_equal(count(RT_LOCK_EV_TIMEOUT, 2), 1);
	assert_int_equal(count(RT_LOCK_EV_TIMEOUT, 3), 0);
	rt_locks_validate(t);
	/* the release goes to 3, the one still waiting */
	assert_int_equal(rt_locks_release(t, 400, "w", 1, 0), RT_LOCK_OK);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 2), 0);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 3), 1);
	/* a release after a waiter's deadline, before the tick saw it: not handed to it */
	assert_int_equal(rt_locks_acquire(t, 400, "w", 5, NULL, false, 1000, 100, &g), RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_acquire(t, 400, "w", 6, NULL, false, 1000, 5000, &g), RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_release(t, 600, "w", 3, 0), RT_LOCK_OK);
	assert_int_equal(count(RT_LOCK_EV_TIMEOUT, 5), 1);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 5), 0);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 6), 1);
	rt_locks_validate(t);
	assert_int_equal(rt_locks_release(t, 600, "w", 6, 0), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 600, "w", 3, NULL, false, 10000, 0, &g), RT_LOCK_OK);
	/* a waiter's own release is giving up */
	assert_int_equal(rt_locks_acquire(t, 400, "w", 4, NULL, false, 1000, 5000, &g),
			 RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_release(t, 401, "w", 4, 0), RT_LOCK_OK);
	assert_int_equal(rt_locks_release(t, 402, "w", 3, 0), RT_LOCK_OK);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 4), 0);
	rt_locks_validate(t);
	rt_locks_free(t);
}

static void test_drop_owner(void **state)
{
	(void)state;
	struct rt_locks *t = table(1);
	struct rt_lock_grant g;
	assert_int_equal(rt_locks_acquire(t, 0, "p", 1, NULL, false, 10000, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "q", 1, NULL, false, 10000, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "r", 2, NULL, false, 10000, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "r", 1, NULL, false, 10000, 5000, &g),
			 RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_acquire(t, 0, "p", 2, NULL, false, 10000, 5000, &g),
			 RT_LOCK_QUEUED);
	/* 1 goes: p goes to 2, q is free, 1's wait for r is gone */
	assert_int_equal(rt_locks_drop_owner(t, 10, 1), 2);
	assert_int_equal(count(RT_LOCK_EV_RELEASED, 1), 2);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 2), 2);
	rt_locks_validate(t);
	json_t *s = rt_locks_state(t, 10, "q");
	assert_true(json_is_false(json_object_get(s, "held")));
	json_decref(s);
	s = rt_locks_state(t, 10, "r");
	assert_int_equal(json_integer_value(json_object_get(s, "waiters")), 0);
	json_decref(s);
	assert_int_equal(rt_locks_drop_owner(t, 10, 1), 0);
	assert_int_equal(rt_locks_drop_owner(t, 10, 2), 2);
	rt_locks_validate(t);
	struct rt_locks_stats st;
	rt_locks_stats(t, &st);
	assert_int_equal(st.n_held, 0);
	assert_int_equal(st.n_waiters, 0);
	rt_locks_free(t);
}

static void test_bounds(void **state)
{
	(void)state;
	struct rt_locks *t = table(1);
	struct rt_lock_grant g;
	char longname[RT_LOCKS_MAX_NAME + 2];
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	assert_int_equal(rt_locks_acquire(t, 0, longname, 1, NULL, false, 0, 0, &g),
			 RT_LOCK_BAD_NAME);
	longname[RT_LOCKS_MAX_NAME] = 0;
	assert_int_equal(rt_locks_acquire(t, 0, longname, 1, NULL, false, 0, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "", 1, NULL, false, 0, 0, &g), RT_LOCK_BAD_NAME);
	assert_int_equal(rt_locks_acquire(t, 0, "a b", 1, NULL, false, 0, 0, &g), RT_LOCK_BAD_NAME);
	assert_int_equal(rt_locks_acquire(t, 0, "a\x01", 1, NULL, false, 0, 0, &g), RT_LOCK_BAD_NAME);
	assert_int_equal(rt_locks_acquire(t, 0, "\xc3(", 1, NULL, false, 0, 0, &g), RT_LOCK_BAD_NAME);
	assert_int_equal(rt_locks_acquire(t, 0, "caf\xc3\xa9", 1, NULL, false, 0, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "c", 1, NULL, false, 99, 0, &g), RT_LOCK_BAD_LEASE);
	assert_int_equal(rt_locks_acquire(t, 0, "c", 1, NULL, false, 600001, 0, &g),
			 RT_LOCK_BAD_LEASE);
	assert_int_equal(rt_locks_acquire(t, 0, "c", 1, NULL, false, 0, 300001, &g),
			 RT_LOCK_BAD_WAIT);
	/* four per owner */
	assert_int_equal(rt_locks_acquire(t, 0, "c", 1, NULL, false, 0, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "d", 1, NULL, false, 0, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "e", 1, NULL, false, 0, 0, &g), RT_LOCK_OWNER_LIMIT);
	/* eight locks in the table */
	for (uint64_t o = 2; o <= 5; o++) {
		char n[8];
		snprintf(n, sizeof n, "o%llu", (unsigned long long)o);
		assert_int_equal(rt_locks_acquire(t, 0, n, o, NULL, false, 0, 0, &g), RT_LOCK_OK);
	}
	assert_int_equal(rt_locks_acquire(t, 0, "z", 6, NULL, false, 0, 0, &g),
			 RT_LOCK_TOO_MANY_LOCKS);
	/* a known lock can still be waited for */
	assert_int_equal(rt_locks_acquire(t, 0, "c", 6, NULL, false, 0, 100, &g), RT_LOCK_QUEUED);
	rt_locks_validate(t);
	assert_string_equal(rt_lock_rc_name(RT_LOCK_OWNER_LIMIT), "owner_limit");
	rt_locks_free(t);
}

/* One subject (JWT sub) over many owners: bounded as a whole. */
static void test_subject_limit(void **state)
{
	(void)state;
	struct rt_locks_config cfg;
	rt_locks_config_default(&cfg);
	cfg.max_per_subject = 3;
	cfg.on_event = on_event;
	n_evs = 0;
	struct rt_locks *t = rt_locks_new(&cfg);
	struct rt_lock_grant g;
	assert_int_equal(rt_locks_acquire(t, 0, "s1", 1, "alice", true, 0, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "s2", 2, "alice", true, 0, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 0, "s1", 3, "alice", true, 0, 1000, &g), RT_LOCK_QUEUED);
	assert_int_equal(rt_locks_acquire(t, 0, "s3", 4, "alice", true, 0, 0, &g),
			 RT_LOCK_SUBJECT_LIMIT);
	assert_int_equal(rt_locks_acquire(t, 0, "s3", 5, "bob", true, 0, 0, &g), RT_LOCK_OK);
	/* tokens without a subject are not counted */
	for (uint64_t o = 10; o < 15; o++) {
		char n[8];
		snprintf(n, sizeof n, "n%llu", (unsigned long long)o);
		assert_int_equal(rt_locks_acquire(t, 0, n, o, NULL, true, 0, 0, &g), RT_LOCK_OK);
	}
	rt_locks_validate(t);
	/* a wait that becomes a hold counts once; a release frees room */
	assert_int_equal(rt_locks_release(t, 1, "s1", 1, 0), RT_LOCK_OK);
	assert_int_equal(count(RT_LOCK_EV_GRANTED, 3), 1);
	assert_int_equal(rt_locks_acquire(t, 1, "s4", 6, "alice", true, 0, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, 1, "s5", 7, "alice", true, 0, 0, &g),
			 RT_LOCK_SUBJECT_LIMIT);
	assert_int_equal(rt_locks_drop_owner(t, 1, 2), 1);
	assert_int_equal(rt_locks_acquire(t, 1, "s5", 7, "alice", true, 0, 0, &g), RT_LOCK_OK);
	rt_locks_validate(t);
	assert_string_equal(rt_lock_rc_name(RT_LOCK_SUBJECT_LIMIT), "subject_limit");
	rt_locks_free(t);
}

/* The ticker thread ends a lease on the real clock and hands the lock over. */
static void test_ticker(void **state)
{
	(void)state;
	struct rt_locks *t = table(1);
	assert_int_equal(rt_locks_start(t), 0);
	struct rt_lock_grant g;
	uint64_t t0 = rt_mono_ms();
	assert_int_equal(rt_locks_acquire(t, t0, "tk", 1, NULL, false, 200, 0, &g), RT_LOCK_OK);
	assert_int_equal(rt_locks_acquire(t, t0, "tk", 2, NULL, false, 200, 3000, &g),
			 RT_LOCK_QUEUED);
	struct rt_locks_stats st = {0};
	for (int i = 0; i < 300 && st.n_grants < 2; i++) {
		usleep(10000);
		rt_locks_stats(t, &st);
	}
	uint64_t took = rt_mono_ms() - t0;
	assert_int_equal(st.n_grants, 2);
	assert_int_equal(st.n_expiries, 1);
	assert_true(took >= 200);
	assert_true(took < 2000);
	rt_locks_validate(t);
	rt_locks_free(t);
}

/* Random operations on a few locks and owners, invariants after each. */
static void test_random(void **state)
{
	(void)state;
	struct rt_locks *t = table(3);
	rng_seed(42);
	uint64_t now = 0, last = 0;
	for (int i = 0; i < 20000; i++) {
		now += rng_next() % 50;
		char name[4] = {'k', (char)('0' + rng_next() % 5), 0};
		uint64_t owner = 1 + rng_next() % 6;
		struct rt_lock_grant g;
		switch (rng_next() % 6) {
		case 0:
		case 1:
			if (rt_locks_acquire(t, now, name, owner, owner % 3 ? "u" : NULL, false,
					     100 + rng_next() % 500,
					     rng_next() % 2 ? 0 : rng_next() % 1000, &g) == RT_LOCK_OK) {
				assert_true(g.token > last);
				last = g.token;
			}
			break;
		case 2: rt_locks_release(t, now, name, owner, 0); break;
		case 3: rt_locks_renew(t, now, name, owner, 0, 0, NULL); break;
		case 4: rt_locks_tick(t, now); break;
		default:
			if (rng_next() % 8 == 0)
				rt_locks_drop_owner(t, now, owner);
			break;
		}
		/* grants from the queue also count toward "larger than before" */
		for (size_t k = 0; k < n_evs; k++)
			if (evs[k].kind == RT_LOCK_EV_GRANTED) {
				assert_true(evs[k].token >= last);
				last = evs[k].token;
			}
		n_evs = 0;
		rt_locks_validate(t);
	}
	rt_locks_free(t);
}

/* The fencing epoch: a persisted counter that only grows, across reopenings. */
static void test_store_counter(void **state)
{
	(void)state;
	char dir[] = "/tmp/rtsync-locks-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof path, "%s/db.sqlite", dir);
	uint64_t prev = 0;
	for (int run = 0; run < 3; run++) {
		struct rt_store *s;
		char err[256];
		assert_int_equal(rt_store_open_sqlite(path, "CREATE TABLE IF NOT EXISTS t (id integer primary key);",
						      1000, 0, &s, err, sizeof err),
				 0);
		uint64_t v, w;
		assert_int_equal(rt_store_counter_next(s, "boot", &v), 0);
		assert_int_equal(rt_store_counter_next(s, "other", &w), 0);
		assert_int_equal(v, prev + 1);
		assert_int_equal(w, (uint64_t)run + 1);
		prev = v;
		rt_store_close(s);
	}
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grant_and_tokens), cmocka_unit_test(test_fifo_handover),
		cmocka_unit_test(test_lease_expiry_and_renew), cmocka_unit_test(test_wait_timeout),
		cmocka_unit_test(test_drop_owner), cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_subject_limit),
		cmocka_unit_test(test_ticker), cmocka_unit_test(test_random),
		cmocka_unit_test(test_store_counter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
