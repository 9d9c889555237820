/*
 * librtsync's locks (include/rtsync/lock.h) against a real server: two
 * clients contend for one lock (the second queued, granted at the
 * release with a higher token); automatic renewal keeps a short lease for
 * many leases; without it the lease ends and on_lost says so; a holder's
 * lost connection ends its hold (the waiter is granted, the holder told);
 * a role the channel rules refuse cannot join; bad arguments; every
 * allocation returned.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "rtsync/lock.h"

struct seen {
	int n_granted, n_queued, n_lost, n_errors, n_states, n_joined, n_errored;
	int64_t token;
	unsigned position;
	int error_rc;
	char error_code[32], lost_reason[32];
};

static void on_granted(void *user, struct rt_lock *l, const struct rt_lock_grant *g)
{
	struct seen *s = user;
	s->n_granted++;
	s->token = g->token;
	assert_int_equal(rt_lock_token(l), g->token);
	assert_true(g->lease_ms > 0);
	assert_true(g->expires_at > 1600000000000LL);
}

static void on_queued(void *user, struct rt_lock *l, unsigned position)
{
	(void)l;
	struct seen *s = user;
	s->n_queued++;
	s->position = position;
}

static void on_lost(void *user, struct rt_lock *l, int64_t token, const char *reason)
{
	struct seen *s = user;
	s->n_lost++;
	assert_int_equal(rt_lock_token(l), 0);
	assert_true(token > 0);
	snprintf(s->lost_reason, sizeof s->lost_reason, "%s", reason);
}

static void on_error(void *user, struct rt_lock *l, int rc, const char *code, const char *reason)
{
	(void)l;
	(void)reason;
	struct seen *s = user;
	s->n_errors++;
	s->error_rc = rc;
	snprintf(s->error_code, sizeof s->error_code, "%s", code ? code : "");
}

static void on_state(void *user, struct rt_lock *l, const char *state)
{
	(void)l;
	struct seen *s = user;
	s->n_states++;
	json_t *j = json_loads(state, 0, NULL);
	assert_true(json_is_object(j));
	json_decref(j);
}

static void on_status(void *user, struct rt_lock *l, const struct rt_channel_status *st)
{
	(void)l;
	struct seen *s = user;
	if (st->state == RT_CHANNEL_JOINED)
		s->n_joined++;
	if (st->state == RT_CHANNEL_ERRORED)
		s->n_errored++;
}

struct holder {
	struct rt_client *c;
	struct rt_lock *l;
	struct seen s;
};

static struct rt_client *client_as(const struct h_server *srv, const char *role, const char *sub)
{
	struct rt_client_options co = {
		.url = srv->url,
		.apikey = h_token_as(role, sub, 3600),
		.reconnect_base_ms = 50,
		.reconnect_max_ms = 300,
		.push_timeout_ms = 5000,
		.allocator = &h_allocator,
	};
	struct rt_client *c;
	assert_int_equal(rt_client_new(&co, &c), 0);
	assert_int_equal(rt_client_connect(c), 0);
	return c;
}

static void holder_open(struct holder *h, const struct h_server *srv, const char *role,
			const char *sub, const char *name, uint32_t lease_ms, uint32_t wait_ms,
			bool is_auto)
{
	memset(h, 0, sizeof *h);
	h->c = client_as(srv, role, sub);
	struct rt_lock_options o = {
		.name = name,
		.lease_ms = lease_ms,
		.wait_ms = wait_ms,
		.is_auto_renew = is_auto,
		.cb = {on_granted, on_queued, on_lost, on_error, on_state, on_status},
		.user = &h->s,
	};
	assert_int_equal(rt_lock_open(h->c, &o, &h->l), 0);
}

static void holder_close(struct holder *h)
{
	rt_lock_close(h->l);
	rt_client_free(h->c);
}

static bool pump(struct holder **hs, size_t n, bool (*cond)(void *), void *ctx, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;
	while (!cond(ctx) && h_now_ms() < end)
		for (size_t i = 0; i < n; i++)
			if (hs[i]->c)
				rt_client_run(hs[i]->c, 5);
	return cond(ctx);
}

static void pump_ms(struct holder **hs, size_t n, int ms)
{
	int64_t end = h_now_ms() + ms;
	while (h_now_ms() < end)
		for (size_t i = 0; i < n; i++)
			if (hs[i]->c)
				rt_client_run(hs[i]->c, 5);
}

struct want {
	const int *count;
	int n;
};

static bool reached(void *ctx)
{
	struct want *w = ctx;
	return *w->count >= w->n;
}

#define WAIT_FOR(hs, n, field, value)                                                    \
	do {                                                                             \
		struct want w_ = {&(field), (value)};                                    \
		assert_true(pump(hs, n, reached, &w_, 10000));                           \
	} while (0)

static void start(struct h_server *srv)
{
	memset(srv, 0, sizeof *srv);
	srv->args[0] = "--lock-lease-min-ms";
	srv->args[1] = "100";
	assert_int_equal(h_server_start(srv), 0);
}

static void finish(struct h_server *srv)
{
	assert_int_equal(h_server_stop(srv), 0);
	h_server_remove(srv);
}

static void test_contend(void **state)
{
	(void)state;
	struct h_server srv;
	start(&srv);
	struct holder a, b;
	holder_open(&a, &srv, "authenticated", "alice", "job", 5000, 0, true);
	holder_open(&b, &srv, "authenticated", "bob", "job", 5000, 10000, true);
	struct holder *all[] = {&a, &b};
	/* asked before the join: sent once joined */
	assert_int_equal(rt_lock_acquire(a.l), 0);
	assert_int_equal(rt_lock_acquire(a.l), RT_EEXISTS);
	WAIT_FOR(all, 2, a.s.n_granted, 1);
	WAIT_FOR(all, 2, b.s.n_joined, 1);
	assert_int_equal(rt_lock_acquire(b.l), 0);
	WAIT_FOR(all, 2, b.s.n_queued, 1);
	assert_int_equal(b.s.position, 1);
	assert_int_equal(rt_lock_token(b.l), 0);
	/* a release hands it to bob, with a larger token; both saw the state */
	int64_t ta = a.s.token;
	assert_int_equal(rt_lock_release(a.l), 0);
	assert_int_equal(rt_lock_release(a.l), RT_ENOTFOUND);
	WAIT_FOR(all, 2, b.s.n_granted, 1);
	assert_true(b.s.token > ta);
	assert_true(a.s.n_states > 0 && b.s.n_states > 0);
	/* alice asks again without a wait: busy */
	assert_int_equal(rt_lock_acquire(a.l), 0);
	WAIT_FOR(all, 2, a.s.n_errors, 1);
	assert_int_equal(a.s.error_rc, RT_EPROTO);
	assert_string_equal(a.s.error_code, "RTS409");
	/* bob's client goes: alice, waiting now (a new client), is granted */
	holder_close(&a);
	holder_open(&a, &srv, "authenticated", "alice", "job", 5000, 10000, false);
	all[0] = &a;
	assert_int_equal(rt_lock_acquire(a.l), 0);
	WAIT_FOR(all, 2, a.s.n_queued, 1);
	int64_t tb = b.s.token;
	holder_close(&b);
	b.c = NULL;
	WAIT_FOR(all, 2, a.s.n_granted, 1);
	assert_true(a.s.token > tb);
	holder_close(&a);
	assert_int_equal(atomic_load(&h_mem.live), 0);
	finish(&srv);
}

static void test_renew_and_expiry(void **state)
{
	(void)state;
	struct h_server srv;
	start(&srv);
	struct holder a, b;
	holder_open(&a, &srv, "authenticated", "alice", "lease", 300, 0, true);
	holder_open(&b, &srv, "authenticated", "bob", "lease", 300, 0, false);
	struct holder *all[] = {&a, &b};
	assert_int_equal(rt_lock_acquire(a.l), 0);
	WAIT_FOR(all, 2, a.s.n_granted, 1);
	/* renewed by itself: still held after ten leases */
	pump_ms(all, 2, 3000);
	assert_int_equal(a.s.n_lost, 0);
	assert_int_equal(rt_lock_token(a.l), a.s.token);
	assert_int_equal(rt_lock_release(a.l), 0);
	/* bob does not renew: the lease ends and he is told */
	WAIT_FOR(all, 2, b.s.n_joined, 1);
	assert_int_equal(rt_lock_acquire(b.l), 0);
	WAIT_FOR(all, 2, b.s.n_granted, 1);
	assert_true(b.s.token > a.s.token);
	WAIT_FOR(all, 2, b.s.n_lost, 1);
	assert_string_equal(b.s.lost_reason, "lease_expired");
	assert_int_equal(rt_lock_renew(b.l), RT_ENOTFOUND);
	holder_close(&a);
	holder_close(&b);
	assert_int_equal(atomic_load(&h_mem.live), 0);
	finish(&srv);
}

static void test_connection_lost(void **state)
{
	(void)state;
	struct h_server srv;
	start(&srv);
	struct holder a;
	holder_open(&a, &srv, "authenticated", "alice", "conn", 5000, 0, true);
	struct holder *all[] = {&a};
	assert_int_equal(rt_lock_acquire(a.l), 0);
	WAIT_FOR(all, 1, a.s.n_granted, 1);
	int64_t t1 = a.s.token;
	/* the server restarts: the hold is over; acquiring again gives a higher token */
	h_server_kill(&srv);
	assert_int_equal(h_server_start(&srv), 0);
	WAIT_FOR(all, 1, a.s.n_lost, 1);
	assert_string_equal(a.s.lost_reason, "connection_lost");
	WAIT_FOR(all, 1, a.s.n_joined, 2);
	assert_int_equal(rt_lock_acquire(a.l), 0);
	WAIT_FOR(all, 1, a.s.n_granted, 2);
	assert_true(a.s.token > t1);
	holder_close(&a);
	assert_int_equal(atomic_load(&h_mem.live), 0);
	finish(&srv);
}

static void test_refused_and_args(void **state)
{
	(void)state;
	struct h_server srv;
	start(&srv);
	/* anon is not among the roles allowed on private channels */
	struct holder n;
	holder_open(&n, &srv, "anon", NULL, "job", 0, 0, false);
	struct holder *all[] = {&n};
	WAIT_FOR(all, 1, n.s.n_errored, 1);
	assert_int_equal(n.s.n_joined, 0);
	holder_close(&n);
	struct rt_client *c = client_as(&srv, "authenticated", "x");
	struct rt_lock *l;
	struct rt_lock_options o = {.name = ""};
	assert_int_equal(rt_lock_open(c, &o, &l), RT_EINVAL);
	o.name = "a b";
	assert_int_equal(rt_lock_open(c, &o, &l), RT_EINVAL);
	char big[RT_LOCK_MAX_NAME + 2];
	memset(big, 'n', sizeof big - 1);
	big[sizeof big - 1] = 0;
	o.name = big;
	assert_int_equal(rt_lock_open(c, &o, &l), RT_EINVAL);
	o.name = "dup";
	assert_int_equal(rt_lock_open(c, &o, &l), 0);
	struct rt_lock *l2;
	assert_int_equal(rt_lock_open(c, &o, &l2), RT_EEXISTS);
	assert_int_equal(rt_lock_renew(l), RT_ENOTFOUND);
	assert_int_equal(rt_lock_release(l), RT_ENOTFOUND);
	assert_int_equal(rt_lock_token(l), 0);
	rt_lock_close(l);
	rt_lock_close(NULL);
	rt_client_free(c);
	assert_int_equal(atomic_load(&h_mem.live), 0);
	finish(&srv);
}

int main(void)
{
	(void)h_server_signal;
	(void)h_count_jansson;
	(void)h_pump_for;
	(void)h_pump_until;
	(void)h_token;
	(void)h_sql;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_contend),
		cmocka_unit_test(test_renew_and_expiry),
		cmocka_unit_test(test_connection_lost),
		cmocka_unit_test(test_refused_and_args),
	};
	int rc = cmocka_run_group_tests_name("locks", tests, NULL, NULL);
	h_kill_all();
	return rc;
}
