/*
 * Fan-out hub (src/realtime/hub.h): subscription counts, topic lifetime,
 * local delivery, cross-worker delivery through inboxes, and rt_msg
 * reference counts. Workers come from a server that is never started; the
 * test thread plays every worker in turn.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "net/server.h"
#include "realtime/hub.h"

#include "fixture.h"

static unsigned refs_of(struct rt_msg *m)
{
	return atomic_load(&m->refs);
}

static struct rt_msg *msg_with_frames(const char *key, uint64_t sender)
{
	struct rt_msg *m = rt_msg_new(RT_MSG_BROADCAST, key);
	assert_non_null(m);
	assert_string_equal(m->key, key);
	assert_int_equal(refs_of(m), 1);
	assert_null(m->v1);
	assert_null(m->v2);
	assert_int_equal(m->sender, 0);
	m->v1 = rt_frame_copy("v1", 2);
	m->v2 = rt_frame_copy("v2", 2);
	m->sender = sender;
	return m;
}

static void test_msg_refs(void **state)
{
	struct rt_msg *m = rt_msg_new(RT_MSG_PRESENCE, "realtime:room1");
	assert_int_equal(m->kind, RT_MSG_PRESENCE);
	assert_true(m->t0_ns > 0);
	struct rt_frame *f = rt_frame_copy("x", 1);
	m->v2 = rt_frame_ref(f); /* the message owns one reference */
	assert_ptr_equal(rt_msg_ref(m), m);
	assert_int_equal(refs_of(m), 2);
	rt_msg_unref(m);
	assert_int_equal(refs_of(m), 1);
	assert_int_equal(atomic_load(&f->refs), 2);
	rt_msg_unref(m); /* frees m and drops its frame reference */
	assert_int_equal(atomic_load(&f->refs), 1);
	rt_frame_unref(f);
	rt_msg_unref(NULL);
}

static void test_subscribe_counts(void **state)
{
	struct fixture fx;
	fx_setup(&fx, 1);
	struct rec a, b, c, d;
	rec_init(&a, "a");
	rec_init(&b, "b");
	rec_init(&c, "c");
	rec_init(&d, "d");

	assert_int_equal(rt_hub_local_count(fx.l[0], "t1"), 0);
	rt_hub_subscribe(fx.l[0], "t1", &a.sub);
	rt_hub_subscribe(fx.l[0], "t1", &b.sub);
	rt_hub_subscribe(fx.l[0], "t1", &c.sub);
	rt_hub_subscribe(fx.l[0], "t2", &d.sub);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t1"), 3);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t2"), 1);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t3"), 0);
	assert_non_null(a.sub.topic);
	assert_ptr_equal(a.sub.topic, b.sub.topic);
	assert_ptr_not_equal(a.sub.topic, d.sub.topic);

	rt_hub_unsubscribe(fx.l[0], &b.sub);
	assert_null(b.sub.topic);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t1"), 2);
	/* Unsubscribing twice, or something never subscribed, does nothing. */
	rt_hub_unsubscribe(fx.l[0], &b.sub);
	struct rec never;
	rec_init(&never, "never");
	rt_hub_unsubscribe(fx.l[0], &never.sub);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t1"), 2);

	/* The removed subscriber no longer gets messages; the others do. */
	struct rt_msg *m = msg_with_frames("t1", 0);
	rt_hub_publish(fx.l[0], m);
	assert_int_equal(a.n, 1);
	assert_int_equal(b.n, 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(d.n, 0);
	rt_msg_unref(m);

	rt_hub_unsubscribe(fx.l[0], &a.sub);
	rt_hub_unsubscribe(fx.l[0], &c.sub);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t1"), 0);
	/* Subscribing again after the topic went away starts a fresh topic. */
	rt_hub_subscribe(fx.l[0], "t1", &b.sub);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t1"), 1);
	rt_hub_unsubscribe(fx.l[0], &b.sub);
	rt_hub_unsubscribe(fx.l[0], &d.sub);
	assert_int_equal(rt_hub_local_count(fx.l[0], "t2"), 0);

	rec_clear(&a);
	rec_clear(&c);
	fx_teardown(&fx);
}

static void test_local_delivery(void **state)
{
	struct fixture fx;
	fx_setup(&fx, 1);
	enum { N = 10 };
	struct rec r[N], other;
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], "r");
		rt_hub_subscribe(fx.l[0], "realtime:room1", &r[i].sub);
	}
	rec_init(&other, "other");
	rt_hub_subscribe(fx.l[0], "realtime:room2", &other.sub);

	struct rt_msg *m = msg_with_frames("realtime:room1", 42);
	rt_hub_publish(fx.l[0], m);
	/* Delivered at once, once to each, the same shared message. */
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].n, 1);
		assert_ptr_equal(r[i].msgs[0], m);
		assert_int_equal(r[i].msgs[0]->sender, 42);
		assert_memory_equal(r[i].msgs[0]->v2->data, "v2", 2);
	}
	assert_int_equal(other.n, 0);
	/* ours + one per recorder; the hub keeps none. */
	assert_int_equal(refs_of(m), 1 + N);
	/* A lone worker has no inbox traffic. */
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r[0].n, 1);

	/* A topic without subscribers: nothing happens, no reference kept. */
	struct rt_msg *m2 = msg_with_frames("realtime:nobody", 0);
	rt_hub_publish(fx.l[0], m2);
	assert_int_equal(refs_of(m2), 1);
	rt_msg_unref(m2);

	for (int i = 0; i < N; i++) {
		rt_hub_unsubscribe(fx.l[0], &r[i].sub);
		rec_clear(&r[i]);
	}
	assert_int_equal(refs_of(m), 1);
	rt_msg_unref(m);
	rt_hub_unsubscribe(fx.l[0], &other.sub);
	fx_teardown(&fx);
}

static void test_cross_worker(void **state)
{
	struct fixture fx;
	fx_setup(&fx, 3);
	struct rec r0, r1, r2a, r2b;
	rec_init(&r0, "w0");
	rec_init(&r1, "w1");
	rec_init(&r2a, "w2a");
	rec_init(&r2b, "w2b");
	rt_hub_subscribe(fx.l[0], "k", &r0.sub);
	rt_hub_subscribe(fx.l[1], "k", &r1.sub);
	rt_hub_subscribe(fx.l[2], "k", &r2a.sub);
	rt_hub_subscribe(fx.l[2], "k", &r2b.sub);

	struct rt_msg *m = msg_with_frames("k", 7);
	rt_hub_publish(fx.l[0], m);
	/* Local at once; the others wait in their inboxes, one reference each. */
	assert_int_equal(r0.n, 1);
	assert_int_equal(r1.n, 0);
	assert_int_equal(r2a.n, 0);
	assert_int_equal(refs_of(m), 1 + 1 + 2);

	rt_hub_drain(fx.l[1]);
	assert_int_equal(r1.n, 1);
	assert_ptr_equal(r1.msgs[0], m);
	assert_int_equal(r1.msgs[0]->sender, 7);
	assert_int_equal(r2a.n, 0);
	assert_int_equal(refs_of(m), 1 + 1 + 1 + 1); /* w1's inbox ref became r1's */

	rt_hub_drain(fx.l[2]);
	assert_int_equal(r2a.n, 1);
	assert_int_equal(r2b.n, 1);
	assert_int_equal(refs_of(m), 1 + 4); /* no inbox holds it any more */

	/* Draining again delivers nothing new; the publisher's own inbox is empty. */
	rt_hub_drain(fx.l[0]);
	rt_hub_drain(fx.l[1]);
	rt_hub_drain(fx.l[2]);
	assert_int_equal(r0.n + r1.n + r2a.n + r2b.n, 4);

	rec_clear(&r0);
	rec_clear(&r1);
	rec_clear(&r2a);
	rec_clear(&r2b);
	assert_int_equal(refs_of(m), 1);
	rt_msg_unref(m);

	rt_hub_unsubscribe(fx.l[0], &r0.sub);
	rt_hub_unsubscribe(fx.l[1], &r1.sub);
	rt_hub_unsubscribe(fx.l[2], &r2a.sub);
	rt_hub_unsubscribe(fx.l[2], &r2b.sub);
	fx_teardown(&fx);
}

static void test_inbox_order(void **state)
{
	/* Many messages queue up (more than the inbox's first allocation) and
	 * arrive in publish order. */
	struct fixture fx;
	fx_setup(&fx, 2);
	struct rec r;
	rec_init(&r, "r");
	rt_hub_subscribe(fx.l[1], "k", &r.sub);
	for (uint64_t i = 1; i <= REC_MAX; i++) {
		struct rt_msg *m = msg_with_frames("k", i);
		rt_hub_publish(fx.l[0], m);
		rt_msg_unref(m); /* the inbox keeps it alive */
	}
	assert_int_equal(r.n, 0);
	rt_hub_drain(fx.l[1]);
	assert_int_equal(r.n, REC_MAX);
	for (size_t i = 0; i < REC_MAX; i++) {
		assert_int_equal(r.msgs[i]->sender, i + 1);
		assert_int_equal(refs_of(r.msgs[i]), 1); /* only the recorder's */
	}
	rec_clear(&r);
	rt_hub_unsubscribe(fx.l[1], &r.sub);
	fx_teardown(&fx);
}

static void test_topic_removed_with_last_subscriber(void **state)
{
	struct fixture fx;
	fx_setup(&fx, 2);
	struct rec a, b;
	rec_init(&a, "a");
	rec_init(&b, "b");
	rt_hub_subscribe(fx.l[1], "k", &a.sub);
	rt_hub_subscribe(fx.l[1], "k", &b.sub);
	rt_hub_unsubscribe(fx.l[1], &a.sub);

	/* Still one subscriber on worker 1: the message is posted there. */
	struct rt_msg *m = msg_with_frames("k", 0);
	rt_hub_publish(fx.l[0], m);
	assert_int_equal(refs_of(m), 2);
	rt_hub_drain(fx.l[1]);
	assert_int_equal(b.n, 1);
	rec_clear(&b);

	/* The last one leaves: worker 1 is no longer interested in "k", so
	 * publishing from worker 0 posts nothing and keeps no reference. */
	rt_hub_unsubscribe(fx.l[1], &b.sub);
	assert_int_equal(rt_hub_local_count(fx.l[1], "k"), 0);
	rt_hub_publish(fx.l[0], m);
	assert_int_equal(refs_of(m), 1);
	rt_hub_publish_any(fx.hub, m);
	assert_int_equal(refs_of(m), 1);
	rt_hub_drain(fx.l[1]);
	assert_int_equal(a.n + b.n, 0);

	/* A topic only worker 0 has does not reach worker 1 either. */
	struct rec c;
	rec_init(&c, "c");
	rt_hub_subscribe(fx.l[0], "k", &c.sub);
	rt_hub_publish(fx.l[1], m);
	assert_int_equal(refs_of(m), 2);
	rt_hub_drain(fx.l[0]);
	assert_int_equal(c.n, 1);
	rec_clear(&c);
	rt_hub_unsubscribe(fx.l[0], &c.sub);

	rt_msg_unref(m);
	fx_teardown(&fx);
}

static void test_backlog(void **state)
{
	/* What waits in the fullest inbox: the change feed waits on it. */
	struct fixture fx;
	fx_setup(&fx, 2);
	struct rec r0, r1, r2;
	rec_init(&r0, "r0");
	rec_init(&r1, "r1");
	rec_init(&r2, "r2");
	rt_hub_subscribe(fx.l[0], "k", &r0.sub);
	rt_hub_subscribe(fx.l[1], "k", &r1.sub);
	rt_hub_subscribe(fx.l[1], "only1", &r2.sub);
	assert_int_equal(rt_hub_backlog(fx.hub), 0);
	struct rt_msg *m = msg_with_frames("k", 1), *o = msg_with_frames("only1", 2);
	for (int i = 0; i < 3; i++)
		rt_hub_publish_any(fx.hub, m);
	rt_hub_publish_any(fx.hub, o);
	assert_int_equal(rt_hub_backlog(fx.hub), 4); /* worker 1: 3 + 1 */
	rt_hub_drain(fx.l[1]);
	assert_int_equal(rt_hub_backlog(fx.hub), 3); /* worker 0's three */
	rt_hub_drain(fx.l[0]);
	assert_int_equal(rt_hub_backlog(fx.hub), 0);
	assert_int_equal(r0.n, 3);
	assert_int_equal(r1.n, 3);
	assert_int_equal(r2.n, 1);
	rec_clear(&r0);
	rec_clear(&r1);
	rec_clear(&r2);
	rt_hub_unsubscribe(fx.l[0], &r0.sub);
	rt_hub_unsubscribe(fx.l[1], &r1.sub);
	rt_hub_unsubscribe(fx.l[1], &r2.sub);
	rt_msg_unref(m);
	rt_msg_unref(o);
	fx_teardown(&fx);
}

static void test_publish_any(void **state)
{
	/* From a thread that is no worker: nothing inline, every worker drains. */
	struct fixture fx;
	fx_setup(&fx, 3);
	struct rec r[3];
	for (unsigned i = 0; i < 3; i++) {
		rec_init(&r[i], "r");
		rt_hub_subscribe(fx.l[i], "k", &r[i].sub);
	}
	struct rt_msg *m = msg_with_frames("k", 99);
	rt_hub_publish_any(fx.hub, m);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(r[i].n, 0);
	assert_int_equal(refs_of(m), 1 + 3);
	for (unsigned i = 0; i < 3; i++) {
		rt_hub_drain(fx.l[i]);
		assert_int_equal(r[i].n, 1);
		assert_int_equal(r[i].msgs[0]->sender, 99);
	}
	for (unsigned i = 0; i < 3; i++) {
		rec_clear(&r[i]);
		rt_hub_unsubscribe(fx.l[i], &r[i].sub);
	}
	assert_int_equal(refs_of(m), 1);
	rt_msg_unref(m);
	fx_teardown(&fx);
}

static void test_local_free_drops_inbox(void **state)
{
	struct fixture fx;
	fx_setup(&fx, 2);
	struct rec r;
	rec_init(&r, "r");
	rt_hub_subscribe(fx.l[1], "k", &r.sub);
	struct rt_msg *m = msg_with_frames("k", 0);
	rt_hub_publish(fx.l[0], m);
	rt_hub_publish(fx.l[0], m);
	assert_int_equal(refs_of(m), 3);

	/* Worker 1 stops: its queued messages are dropped, its subscribers
	 * detached, and nothing more is posted to it. */
	rt_hub_local_free(fx.l[1]);
	fx.l[1] = NULL;
	assert_int_equal(refs_of(m), 1);
	assert_null(r.sub.topic);
	assert_int_equal(r.n, 0);
	rt_hub_publish(fx.l[0], m);
	rt_hub_publish_any(fx.hub, m);
	assert_int_equal(refs_of(m), 1);

	rt_msg_unref(m);
	rt_hub_local_free(NULL);
	fx_teardown(&fx);
}

static void test_hub_free_with_queued(void **state)
{
	/* Messages still queued at teardown are released with the locals. */
	struct fixture fx;
	fx_setup(&fx, 2);
	struct rec r;
	rec_init(&r, "r");
	rt_hub_subscribe(fx.l[1], "k", &r.sub);
	struct rt_frame *f = rt_frame_copy("x", 1);
	struct rt_msg *m = rt_msg_new(RT_MSG_BROADCAST, "k");
	m->v2 = rt_frame_ref(f);
	rt_hub_publish(fx.l[0], m);
	rt_msg_unref(m);
	assert_int_equal(atomic_load(&f->refs), 2);
	fx_teardown(&fx); /* frees the locals (dropping the queue) and the hub */
	assert_int_equal(atomic_load(&f->refs), 1);
	rt_frame_unref(f);
	rt_hub_free(NULL);
}

/*
 * server.h: "rt_server_new ... Binds the listening sockets"; rt_server_free()
 * must release a server that was created but never started (as these tests
 * do). Checked in a child process by counting descriptors: a never-started
 * worker's loop still has its listener, async, prepare and timer handles
 * open, so uv_loop_close() fails with UV_EBUSY and the sockets, the epoll
 * and event fds and the loop's memory leak.
 */
static void test_server_free_never_started(void **state)
{
	int r = fx_free_releases();
	if (r == 0)
		print_error("rt_server_free() leaked descriptors of a never-started server\n");
	assert_int_equal(r, 1);
}

static void test_server_accessors(void **state)
{
	struct rt_server *s = fx_server_new(3);
	assert_true(rt_server_port(s) > 0);
	assert_null(rt_server_app(s));
	for (unsigned i = 0; i < 3; i++) {
		struct rt_worker *w = rt_server_worker(s, i);
		assert_non_null(w);
		assert_int_equal(rt_worker_index(w), i);
		assert_ptr_equal(rt_worker_server(w), s);
		assert_int_equal(rt_worker_n_conns(w), 0);
		assert_non_null(rt_worker_loop(w));
	}
	assert_null(rt_server_worker(s, 3));
	fx_server_free(s);

	/* Bad worker counts are refused with nothing allocated. */
	struct rt_server_config cfg = {.host = "127.0.0.1", .port = 0, .n_workers = 0};
	struct rt_server *bad = NULL;
	assert_true(rt_server_new(&cfg, &fx_handler, NULL, &bad) < 0);
	cfg.n_workers = RT_SERVER_MAX_WORKERS + 1;
	assert_true(rt_server_new(&cfg, &fx_handler, NULL, &bad) < 0);
	cfg.n_workers = 1;
	cfg.host = "not an address";
	assert_true(rt_server_new(&cfg, &fx_handler, NULL, &bad) < 0);
	assert_null(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_msg_refs),
		cmocka_unit_test(test_subscribe_counts),
		cmocka_unit_test(test_local_delivery),
		cmocka_unit_test(test_cross_worker),
		cmocka_unit_test(test_inbox_order),
		cmocka_unit_test(test_topic_removed_with_last_subscriber),
		cmocka_unit_test(test_publish_any),
		cmocka_unit_test(test_local_free_drops_inbox),
		cmocka_unit_test(test_hub_free_with_queued),
		cmocka_unit_test(test_backlog),
		cmocka_unit_test(test_server_free_never_started),
		cmocka_unit_test(test_server_accessors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
