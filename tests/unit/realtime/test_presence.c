/*
 * Presence registry (src/realtime/presence.h; PROTOCOL.md §7): diffs for
 * track, re-track and untrack, snapshots grouped by presence key, counts.
 * Diffs are read back from the frames subscribers receive, parsed as JSON.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "realtime/hub.h"
#include "realtime/presence.h"

#include "fixture.h"

#define KEY "tenant:realtime:room1" /* hub key */
#define TOPIC "realtime:room1"      /* what clients call it */

struct env {
	struct fixture fx;
	struct rt_presence *p;
};

static void env_setup(struct env *e, unsigned n_workers)
{
	fx_setup(&e->fx, n_workers);
	e->p = rt_presence_new();
	assert_non_null(e->p);
}

static void env_teardown(struct env *e)
{
	rt_presence_free(e->p);
	rt_presence_free(NULL);
	fx_teardown(&e->fx);
}

/*
 * Checks both frames of a presence_diff message against each other and the
 * protocol, and returns its payload {"joins":…,"leaves":…} (new reference).
 */
static json_t *diff_of(struct rt_msg *m, const char *topic)
{
	assert_int_equal(m->kind, RT_MSG_PRESENCE);
	assert_non_null(m->v1);
	assert_non_null(m->v2);

	/* vsn 2.0.0: [null,null,topic,"presence_diff",payload] */
	json_t *v2 = fx_frame_json(m->v2);
	assert_true(json_is_array(v2));
	assert_int_equal(json_array_size(v2), 5);
	assert_true(json_is_null(json_array_get(v2, 0)));
	assert_true(json_is_null(json_array_get(v2, 1)));
	assert_string_equal(json_string_value(json_array_get(v2, 2)), topic);
	assert_string_equal(json_string_value(json_array_get(v2, 3)), "presence_diff");
	json_t *payload = json_incref(json_array_get(v2, 4));
	json_decref(v2);

	/* vsn 1.0.0: {"topic","event","payload","ref":null}, no join_ref. */
	json_t *v1 = fx_frame_json(m->v1);
	assert_true(json_is_object(v1));
	assert_int_equal(json_object_size(v1), 4);
	assert_string_equal(json_string_value(json_object_get(v1, "topic")), topic);
	assert_string_equal(json_string_value(json_object_get(v1, "event")), "presence_diff");
	assert_true(json_is_null(json_object_get(v1, "ref")));
	assert_null(json_object_get(v1, "join_ref"));
	assert_true(json_equal(json_object_get(v1, "payload"), payload));
	json_decref(v1);

	assert_true(json_is_object(payload));
	assert_int_equal(json_object_size(payload), 2);
	assert_true(json_is_object(json_object_get(payload, "joins")));
	assert_true(json_is_object(json_object_get(payload, "leaves")));
	return payload;
}

/* The metas array of side ("joins"/"leaves") for pkey, or NULL. */
static json_t *metas(json_t *diff, const char *side, const char *pkey)
{
	json_t *entry = json_object_get(json_object_get(diff, side), pkey);
	if (!entry)
		return NULL;
	assert_int_equal(json_object_size(entry), 1);
	json_t *arr = json_object_get(entry, "metas");
	assert_true(json_is_array(arr));
	return arr;
}

/* A meta equals payload plus phx_ref (and phx_ref_prev when prev != NULL). */
static const char *check_meta(json_t *meta, const json_t *payload, const char *prev)
{
	assert_true(json_is_object(meta));
	const char *ref = json_string_value(json_object_get(meta, "phx_ref"));
	assert_non_null(ref);
	assert_true(strlen(ref) > 0);
	json_t *rest = json_deep_copy(meta);
	json_object_del(rest, "phx_ref");
	if (prev) {
		assert_string_equal(json_string_value(json_object_get(meta, "phx_ref_prev")), prev);
		json_object_del(rest, "phx_ref_prev");
	} else {
		assert_null(json_object_get(meta, "phx_ref_prev"));
	}
	assert_true(json_equal(rest, (json_t *)payload));
	json_decref(rest);
	return ref;
}

static void test_track_join(void **state)
{
	struct env e;
	env_setup(&e, 1);
	struct rec r;
	rec_init(&r, "watcher");
	json_t *snap = NULL;
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, &snap);
	assert_true(json_is_object(snap));
	assert_int_equal(json_object_size(snap), 0);
	json_decref(snap);
	assert_int_equal(rt_presence_count(e.p, KEY), 0);

	json_t *alice = json_pack("{s:s,s:s}", "user", "alice", "online_at", "2026-08-21T12:00:00Z");
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice-key", alice));
	assert_int_equal(rt_presence_count(e.p, KEY), 1);
	assert_int_equal(r.n, 1);

	json_t *d = diff_of(r.msgs[0], TOPIC);
	assert_int_equal(json_object_size(json_object_get(d, "leaves")), 0);
	assert_int_equal(json_object_size(json_object_get(d, "joins")), 1);
	json_t *j = metas(d, "joins", "alice-key");
	assert_non_null(j);
	assert_int_equal(json_array_size(j), 1);
	check_meta(json_array_get(j, 0), alice, NULL);
	json_decref(d);

	/* The registry copied the payload: changing ours changes nothing. */
	json_object_set_new(alice, "user", json_string("mallory"));
	snap = NULL;
	struct rec r2;
	rec_init(&r2, "late");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r2.sub, &snap);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(json_object_get(snap, "alice-key"),
								   "metas"),
						   0),
				    "user")),
			    "alice");
	json_decref(snap);

	rec_clear(&r);
	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	rt_hub_unsubscribe(e.fx.l[0], &r2.sub);
	json_decref(alice);
	env_teardown(&e);
}

static void test_retrack(void **state)
{
	struct env e;
	env_setup(&e, 1);
	struct rec r;
	rec_init(&r, "watcher");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, NULL);

	json_t *online = json_pack("{s:s,s:s}", "user", "alice", "status", "online");
	json_t *away = json_pack("{s:s,s:s}", "user", "alice", "status", "away");
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice-key", online));
	json_t *d = diff_of(r.msgs[0], TOPIC);
	char *ref1 = strdup(check_meta(json_array_get(metas(d, "joins", "alice-key"), 0), online, NULL));
	json_decref(d);
	rec_clear(&r);

	/* The same payload again (a fresh, equal object): no diff. */
	json_t *online2 = json_deep_copy(online);
	assert_false(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice-key", online2));
	assert_int_equal(r.n, 0);
	assert_int_equal(rt_presence_count(e.p, KEY), 1);

	/* A changed payload: old meta leaves, new meta joins with phx_ref_prev. */
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice-key", away));
	assert_int_equal(r.n, 1);
	assert_int_equal(rt_presence_count(e.p, KEY), 1);
	d = diff_of(r.msgs[0], TOPIC);
	json_t *left = metas(d, "leaves", "alice-key");
	json_t *joined = metas(d, "joins", "alice-key");
	assert_int_equal(json_array_size(left), 1);
	assert_int_equal(json_array_size(joined), 1);
	assert_string_equal(check_meta(json_array_get(left, 0), online, NULL), ref1);
	char *ref2 = strdup(check_meta(json_array_get(joined, 0), away, ref1));
	assert_string_not_equal(ref2, ref1);
	json_decref(d);
	rec_clear(&r);

	/* Identical to the current payload (which carries phx_ref_prev): no diff. */
	assert_false(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice-key", away));
	assert_int_equal(r.n, 0);

	/* Back to the first payload: a change again, linked to ref2. */
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice-key", online2));
	assert_int_equal(r.n, 1);
	d = diff_of(r.msgs[0], TOPIC);
	assert_string_equal(check_meta(json_array_get(metas(d, "leaves", "alice-key"), 0), away, ref1),
			    ref2);
	check_meta(json_array_get(metas(d, "joins", "alice-key"), 0), online, ref2);
	json_decref(d);
	rec_clear(&r);

	/* A phx_ref_prev sent by the client is not taken as given. */
	json_t *forged = json_pack("{s:s,s:s}", "user", "alice", "phx_ref_prev", "forged");
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice-key", forged));
	d = diff_of(r.msgs[0], TOPIC);
	json_t *meta = json_array_get(metas(d, "joins", "alice-key"), 0);
	assert_string_not_equal(json_string_value(json_object_get(meta, "phx_ref_prev")), "forged");
	json_decref(d);
	rec_clear(&r);
	json_decref(forged);

	free(ref1);
	free(ref2);
	json_decref(online);
	json_decref(online2);
	json_decref(away);
	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	env_teardown(&e);
}

/*
 * presence.h: "an identical payload nothing". That holds for any object the
 * client sends, including one that happens to carry the keys the server adds
 * to metas (phx_ref, phx_ref_prev): tracking it twice must not publish twice.
 */
static void test_identical_retrack_reserved_keys(void **state)
{
	struct env e;
	env_setup(&e, 1);
	struct rec r;
	rec_init(&r, "watcher");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, NULL);
	static const char *const keys[] = {"phx_ref", "phx_ref_prev"};
	int failures = 0;
	for (uint64_t i = 0; i < 2; i++) {
		json_t *pl = json_pack("{s:s,s:s}", "user", "alice", keys[i], "client-value");
		assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 10 + i, "alice", pl));
		rec_clear(&r);
		bool again = rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 10 + i, "alice", pl);
		if (again || r.n) {
			print_error("payload with \"%s\": identical re-track published %zu diff(s)\n",
				    keys[i], r.n);
			failures++;
		}
		rec_clear(&r);
		json_decref(pl);
	}
	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	env_teardown(&e);
	assert_int_equal(failures, 0);
}

static void test_untrack(void **state)
{
	struct env e;
	env_setup(&e, 1);
	struct rec r;
	rec_init(&r, "watcher");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, NULL);
	json_t *pl = json_pack("{s:i}", "n", 1);
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 5, "k5", pl));
	json_t *d = diff_of(r.msgs[0], TOPIC);
	char *ref = strdup(check_meta(json_array_get(metas(d, "joins", "k5"), 0), pl, NULL));
	json_decref(d);
	rec_clear(&r);

	/* Untracking another channel: nothing. */
	assert_false(rt_presence_untrack(e.p, e.fx.l[0], KEY, TOPIC, 6));
	assert_false(rt_presence_untrack(e.p, e.fx.l[0], "other-key", TOPIC, 5));
	assert_int_equal(r.n, 0);

	assert_true(rt_presence_untrack(e.p, e.fx.l[0], KEY, TOPIC, 5));
	assert_int_equal(rt_presence_count(e.p, KEY), 0);
	assert_int_equal(r.n, 1);
	d = diff_of(r.msgs[0], TOPIC);
	assert_int_equal(json_object_size(json_object_get(d, "joins")), 0);
	json_t *left = metas(d, "leaves", "k5");
	assert_int_equal(json_array_size(left), 1);
	assert_string_equal(check_meta(json_array_get(left, 0), pl, NULL), ref);
	json_decref(d);
	rec_clear(&r);

	/* Twice: already gone. */
	assert_false(rt_presence_untrack(e.p, e.fx.l[0], KEY, TOPIC, 5));
	assert_int_equal(r.n, 0);

	/* The topic is empty again; tracking afterwards works as a first track. */
	json_t *snap = NULL;
	struct rec r2;
	rec_init(&r2, "late");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r2.sub, &snap);
	assert_int_equal(json_object_size(snap), 0);
	json_decref(snap);
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 5, "k5", pl));
	assert_int_equal(r.n, 1);
	assert_int_equal(r2.n, 1);
	rec_clear(&r);
	rec_clear(&r2);

	free(ref);
	json_decref(pl);
	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	rt_hub_unsubscribe(e.fx.l[0], &r2.sub);
	env_teardown(&e); /* frees the entry still tracked */
}

static void test_snapshot_groups_by_key(void **state)
{
	struct env e;
	env_setup(&e, 1);
	json_t *a1 = json_pack("{s:s}", "device", "phone");
	json_t *a2 = json_pack("{s:s}", "device", "laptop");
	json_t *b = json_pack("{s:s}", "user", "bob");
	/* Two channels share the key "alice"; a third is "bob". */
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "alice", a1));
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 2, "alice", a2));
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 3, "bob", b));
	/* Another topic stays apart. */
	assert_true(rt_presence_track(e.p, e.fx.l[0], "elsewhere", "realtime:x", 1, "alice", b));
	assert_int_equal(rt_presence_count(e.p, KEY), 3);
	assert_int_equal(rt_presence_count(e.p, "elsewhere"), 1);
	assert_int_equal(rt_presence_count(e.p, "nowhere"), 0);

	struct rec r;
	rec_init(&r, "joiner");
	json_t *snap = NULL;
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, &snap);
	assert_int_equal(rt_hub_local_count(e.fx.l[0], KEY), 1);
	assert_true(json_is_object(snap));
	assert_int_equal(json_object_size(snap), 2);
	json_t *am = json_object_get(json_object_get(snap, "alice"), "metas");
	json_t *bm = json_object_get(json_object_get(snap, "bob"), "metas");
	assert_int_equal(json_array_size(am), 2);
	assert_int_equal(json_array_size(bm), 1);
	const char *r1 = check_meta(json_array_get(am, 0), a1, NULL);
	const char *r2 = check_meta(json_array_get(am, 1), a2, NULL);
	assert_string_not_equal(r1, r2);
	check_meta(json_array_get(bm, 0), b, NULL);
	json_decref(snap);
	/* Subscribing alone publishes nothing. */
	assert_int_equal(r.n, 0);

	/* One of alice's channels leaves: only its meta goes. */
	assert_true(rt_presence_untrack(e.p, e.fx.l[0], KEY, TOPIC, 1));
	json_t *d = diff_of(r.msgs[0], TOPIC);
	json_t *left = metas(d, "leaves", "alice");
	assert_int_equal(json_array_size(left), 1);
	check_meta(json_array_get(left, 0), a1, NULL);
	json_decref(d);
	rec_clear(&r);
	assert_int_equal(rt_presence_count(e.p, KEY), 2);

	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	json_decref(a1);
	json_decref(a2);
	json_decref(b);
	env_teardown(&e);
}

static void test_track_under_new_key(void **state)
{
	/* A channel that tracks again under another presence key leaves the old
	 * key and joins the new one; it stays one entry. */
	struct env e;
	env_setup(&e, 1);
	struct rec r;
	rec_init(&r, "watcher");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, NULL);
	json_t *pl = json_pack("{s:b}", "here", 1);
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "old", pl));
	rec_clear(&r);
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "new", pl));
	assert_int_equal(rt_presence_count(e.p, KEY), 1);
	int saw_leave = 0, saw_join = 0;
	for (size_t i = 0; i < r.n; i++) {
		json_t *d = diff_of(r.msgs[i], TOPIC);
		if (metas(d, "leaves", "old"))
			saw_leave++;
		if (metas(d, "joins", "new"))
			saw_join++;
		assert_null(metas(d, "joins", "old"));
		assert_null(metas(d, "leaves", "new"));
		json_decref(d);
	}
	assert_int_equal(saw_leave, 1);
	assert_int_equal(saw_join, 1);
	rec_clear(&r);

	json_t *snap = NULL;
	struct rec r2;
	rec_init(&r2, "late");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r2.sub, &snap);
	assert_int_equal(json_object_size(snap), 1);
	assert_non_null(json_object_get(snap, "new"));
	json_decref(snap);

	json_decref(pl);
	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	rt_hub_unsubscribe(e.fx.l[0], &r2.sub);
	env_teardown(&e);
}

static void test_diff_reaches_other_workers(void **state)
{
	struct env e;
	env_setup(&e, 3);
	struct rec r0, r2, other;
	rec_init(&r0, "w0");
	rec_init(&r2, "w2");
	rec_init(&other, "other topic");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r0.sub, NULL);
	rt_presence_subscribe(e.p, e.fx.l[2], KEY, &r2.sub, NULL);
	rt_presence_subscribe(e.p, e.fx.l[1], "other", &other.sub, NULL);

	json_t *pl = json_pack("{s:s}", "user", "carol");
	/* Tracked from worker 1, which has no subscriber of KEY itself. */
	assert_true(rt_presence_track(e.p, e.fx.l[1], KEY, TOPIC, 9, "carol", pl));
	assert_int_equal(r0.n, 0);
	assert_int_equal(r2.n, 0);
	for (unsigned i = 0; i < 3; i++)
		rt_hub_drain(e.fx.l[i]);
	assert_int_equal(r0.n, 1);
	assert_int_equal(r2.n, 1);
	assert_int_equal(other.n, 0);
	assert_ptr_equal(r0.msgs[0], r2.msgs[0]); /* encoded once, shared */
	json_t *d = diff_of(r2.msgs[0], TOPIC);
	check_meta(json_array_get(metas(d, "joins", "carol"), 0), pl, NULL);
	json_decref(d);

	rec_clear(&r0);
	rec_clear(&r2);
	json_decref(pl);
	rt_hub_unsubscribe(e.fx.l[0], &r0.sub);
	rt_hub_unsubscribe(e.fx.l[2], &r2.sub);
	rt_hub_unsubscribe(e.fx.l[1], &other.sub);
	env_teardown(&e);
}

static void test_escaping_in_frames(void **state)
{
	/* Keys and payload strings that need escaping still give valid JSON. */
	struct env e;
	env_setup(&e, 1);
	struct rec r;
	rec_init(&r, "watcher");
	static const char topic[] = "realtime:we\"ird\\topic";
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, NULL);
	json_t *pl = json_pack("{s:s}", "note", "line\nbreak \"quoted\" caf\xc3\xa9");
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, topic, 1, "k\"ey", pl));
	json_t *d = diff_of(r.msgs[0], topic);
	check_meta(json_array_get(metas(d, "joins", "k\"ey"), 0), pl, NULL);
	json_decref(d);
	rec_clear(&r);
	json_decref(pl);
	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	env_teardown(&e);
}

/* ---- the remote side (src/cluster): other nodes' entries ---- */

struct remote_log {
	unsigned n;
	char key[64], pkey[64];
	uint64_t chan_id;
	bool has_join, has_leave;
};

static void remote_cb(void *ctx, const char *key, const char *topic, uint64_t chan_id,
		      const char *pkey, const json_t *join_meta, const json_t *leave_meta)
{
	struct remote_log *l = ctx;
	l->n++;
	snprintf(l->key, sizeof l->key, "%s", key);
	snprintf(l->pkey, sizeof l->pkey, "%s", pkey);
	l->chan_id = chan_id;
	l->has_join = join_meta != NULL;
	l->has_leave = leave_meta != NULL;
}

static void count_local(void *ctx, const char *key, const char *topic, uint64_t chan_id,
			const char *pkey, const json_t *meta)
{
	(*(unsigned *)ctx)++;
	assert_string_equal(pkey, "local");
}

static void test_remote_entries(void **state)
{
	struct env e;
	env_setup(&e, 1);
	struct remote_log log = {0};
	rt_presence_set_remote(e.p, remote_cb, &log);
	struct rec r;
	rec_init(&r, "sub");
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r.sub, NULL);

	/* a local track goes to the remote side with its meta */
	json_t *pl = json_pack("{s:s}", "user", "me");
	assert_true(rt_presence_track(e.p, e.fx.l[0], KEY, TOPIC, 1, "local", pl));
	assert_int_equal(log.n, 1);
	assert_string_equal(log.key, KEY);
	assert_string_equal(log.pkey, "local");
	assert_int_equal(log.chan_id, 1);
	assert_true(log.has_join);
	assert_false(log.has_leave);
	rec_clear(&r);

	/* another node's entry, same channel id: its own entry, not sent back */
	json_t *meta = json_pack("{s:s,s:s}", "user", "them", "phx_ref", "R1");
	assert_true(rt_presence_remote_put(e.p, e.fx.hub, 1, KEY, TOPIC, 1, "remote", meta));
	assert_int_equal(log.n, 1);
	rt_hub_drain(e.fx.l[0]);
	assert_int_equal(r.n, 1);
	json_t *d = diff_of(r.msgs[0], TOPIC);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(metas(d, "joins", "remote"), 0), "phx_ref")),
			    "R1");
	json_decref(d);
	rec_clear(&r);
	assert_int_equal(rt_presence_count(e.p, KEY), 2);
	unsigned n_local = 0;
	assert_int_equal(rt_presence_each_local(e.p, count_local, NULL, &n_local), 1);
	assert_int_equal(n_local, 1);

	/* a join's state is the union */
	struct rec r2;
	rec_init(&r2, "joiner");
	json_t *st = NULL;
	rt_presence_subscribe(e.p, e.fx.l[0], KEY, &r2.sub, &st);
	assert_non_null(json_object_get(st, "local"));
	assert_non_null(json_object_get(st, "remote"));
	json_decref(st);
	rt_hub_unsubscribe(e.fx.l[0], &r2.sub);

	/* identical: nothing; a full state that keeps it: nothing swept */
	assert_false(rt_presence_remote_put(e.p, e.fx.hub, 1, KEY, TOPIC, 1, "remote", meta));
	rt_presence_remote_mark(e.p, 1);
	assert_false(rt_presence_remote_put(e.p, e.fx.hub, 1, KEY, TOPIC, 1, "remote", meta));
	assert_int_equal(rt_presence_remote_sweep(e.p, e.fx.hub, 1), 0);
	rt_hub_drain(e.fx.l[0]);
	assert_int_equal(r.n, 0);

	/* a full state without it: it leaves; the local entry stays */
	rt_presence_remote_mark(e.p, 1);
	assert_int_equal(rt_presence_remote_sweep(e.p, e.fx.hub, 1), 1);
	rt_hub_drain(e.fx.l[0]);
	assert_int_equal(r.n, 1);
	d = diff_of(r.msgs[0], TOPIC);
	assert_non_null(metas(d, "leaves", "remote"));
	json_decref(d);
	rec_clear(&r);
	assert_int_equal(rt_presence_count(e.p, KEY), 1);

	/* a remote removal of what is not there changes nothing */
	assert_false(rt_presence_remote_put(e.p, e.fx.hub, 2, KEY, TOPIC, 9, "x", NULL));

	/* untrack: the remote side gets the leave */
	assert_true(rt_presence_untrack(e.p, e.fx.l[0], KEY, TOPIC, 1));
	assert_int_equal(log.n, 2);
	assert_false(log.has_join);
	assert_true(log.has_leave);
	rec_clear(&r);
	assert_int_equal(rt_presence_count(e.p, KEY), 0);

	json_decref(meta);
	json_decref(pl);
	rt_hub_unsubscribe(e.fx.l[0], &r.sub);
	rt_presence_set_remote(e.p, NULL, NULL);
	env_teardown(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_track_join),
		cmocka_unit_test(test_retrack),
		cmocka_unit_test(test_identical_retrack_reserved_keys),
		cmocka_unit_test(test_untrack),
		cmocka_unit_test(test_snapshot_groups_by_key),
		cmocka_unit_test(test_track_under_new_key),
		cmocka_unit_test(test_diff_reaches_other_workers),
		cmocka_unit_test(test_escaping_in_frames),
		cmocka_unit_test(test_remote_entries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
