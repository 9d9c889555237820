/*
 * postgres_changes under row-level security (src/realtime/changes.h): an
 * embedded store whose schema file has policies, bindings parsed for
 * different requesters, and changes matched as the feed matches them
 * (rt_changes_match, nothing published): who receives INSERT, UPDATE and
 * DELETE (the old row), shared entries for equal visibility, the eq index
 * built from a policy predicate, and filters on top of policies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/policy.h"
#include "realtime/changes.h"
#include "realtime/hub.h"
#include "store/store.h"

static const char *const schema_sql =
	"CREATE TABLE notes (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, body TEXT, "
	"team TEXT);\n"
	"CREATE TABLE open_t (id INTEGER PRIMARY KEY, v TEXT);\n"
	"CREATE TABLE notes_open (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, body TEXT, "
	"team TEXT);\n"
	"CREATE TABLE locked (id INTEGER PRIMARY KEY, v TEXT);\n"
	"ALTER TABLE notes ENABLE ROW LEVEL SECURITY;\n"
	"ALTER TABLE locked ENABLE ROW LEVEL SECURITY;\n"
	"CREATE POLICY \"own notes\" ON notes FOR SELECT TO authenticated "
	"USING (owner = auth.uid());\n"
	"CREATE POLICY \"team notes\" ON notes FOR SELECT TO authenticated "
	"USING (team = auth.jwt() ->> 'team');\n";

struct env {
	char dir[64];
	struct rt_store *store;
	struct rt_hub *hub;
	struct rt_changes *c;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof *e);
	snprintf(e->dir, sizeof e->dir, "/tmp/rtsync-rls-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	char path[128], err[512] = "";
	snprintf(path, sizeof path, "%s/db.sqlite", e->dir);
	int rc = rt_store_open_sqlite(path, schema_sql, 100000, 0, &e->store, err, sizeof err);
	if (rc)
		fprintf(stderr, "open: %s\n", err);
	assert_int_equal(rc, 0);
	e->hub = rt_hub_new();
	e->c = rt_changes_new(e->store, e->hub);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	rt_changes_free(e->c);
	rt_hub_free(e->hub);
	rt_store_close(e->store);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
	assert_int_equal(system(cmd), 0);
	free(e);
	return 0;
}

/* A requester: role, and claims {sub, role[, team]}. */
struct who {
	json_t *claims;
	struct rt_auth a;
};

static void who_init(struct who *w, const char *role, const char *sub, const char *team)
{
	w->claims = json_pack("{s:s}", "role", role);
	if (sub)
		json_object_set_new(w->claims, "sub", json_string(sub));
	if (team)
		json_object_set_new(w->claims, "team", json_string(team));
	w->a = (struct rt_auth){.role = role, .claims = w->claims, .topic = NULL};
}

static struct rt_bgroup *attach(struct env *e, const char *topic, const char *entry_json,
				const struct rt_auth *who)
{
	json_t *entry = json_loads(entry_json, 0, NULL);
	assert_non_null(entry);
	char err[1024] = "";
	struct rt_binding *b = rt_binding_parse(e->c, topic, entry, who, err, sizeof err);
	if (!b)
		fprintf(stderr, "parse: %s\n", err);
	assert_non_null(b);
	json_decref(entry);
	return rt_changes_attach(e->c, &b, 1, NULL);
}

static struct rt_change change(struct env *e, const char *table, enum rt_change_type type,
			       const char *rec, const char *old)
{
	struct rt_change ch = {
		.pos = 1,
		.type = type,
		.table = rt_store_table(e->store, NULL, table),
		.record = rec ? json_loads(rec, 0, NULL) : NULL,
		.old_record = old ? json_loads(old, 0, NULL) : NULL,
		.commit_ms = 0,
	};
	assert_non_null(ch.table);
	return ch;
}

static void change_deinit(struct rt_change *ch)
{
	json_decref(ch->record);
	json_decref(ch->old_record);
}

/* Whether the group's key is among the n keys reached. */
static bool reached(const char *const *keys, size_t n, const struct rt_bgroup *g)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(keys[i], rt_bgroup_key(g)))
			return true;
	return false;
}

#define ALL_NOTES "{\"event\":\"*\",\"schema\":\"public\",\"table\":\"notes\"}"

/* INSERT and UPDATE by the new row, DELETE by the old row; anon sees
 * nothing of an RLS table, service_role everything. */
static void test_per_user_events(void **state)
{
	struct env *e = *state;
	struct who a, b, anon, svc;
	who_init(&a, "authenticated", "user-a", NULL);
	who_init(&b, "authenticated", "user-b", NULL);
	who_init(&anon, "anon", NULL, NULL);
	who_init(&svc, "service_role", NULL, NULL);
	struct rt_bgroup *ga = attach(e, "realtime:t", ALL_NOTES, &a.a);
	struct rt_bgroup *gb = attach(e, "realtime:t", ALL_NOTES, &b.a);
	struct rt_bgroup *gn = attach(e, "realtime:t", ALL_NOTES, &anon.a);
	struct rt_bgroup *gs = attach(e, "realtime:t", ALL_NOTES, &svc.a);
	assert_ptr_not_equal(ga, gb);
	const char *keys[8];
	json_t *payloads[8];

	struct rt_change ins = change(e, "notes", RT_CHANGE_INSERT,
				      "{\"id\":1,\"owner\":\"user-a\",\"body\":\"x\"}", NULL);
	size_t n = rt_changes_match(e->c, &ins, keys, NULL, 8, NULL);
	assert_int_equal(n, 2);
	assert_true(reached(keys, n, ga));
	assert_true(reached(keys, n, gs));
	assert_false(reached(keys, n, gb));
	assert_false(reached(keys, n, gn));
	change_deinit(&ins);

	/* A's row handed to B: the new row decides */
	struct rt_change upd = change(e, "notes", RT_CHANGE_UPDATE, "{\"id\":1,\"owner\":\"user-b\"}",
				      "{\"id\":1,\"owner\":\"user-a\"}");
	n = rt_changes_match(e->c, &upd, keys, payloads, 8, NULL);
	assert_int_equal(n, 2);
	assert_true(reached(keys, n, gb));
	assert_true(reached(keys, n, gs));
	for (size_t i = 0; i < n; i++)
		json_decref(payloads[i]);
	change_deinit(&upd);

	/* A deletes its row: B never sees it (checked on the old row) */
	struct rt_change del = change(e, "notes", RT_CHANGE_DELETE, NULL,
				      "{\"id\":2,\"owner\":\"user-a\",\"body\":\"y\"}");
	n = rt_changes_match(e->c, &del, keys, payloads, 8, NULL);
	assert_int_equal(n, 2);
	assert_true(reached(keys, n, ga));
	assert_true(reached(keys, n, gs));
	assert_false(reached(keys, n, gb));
	json_t *data = json_object_get(payloads[0], "data");
	assert_string_equal(json_string_value(json_object_get(data, "type")), "DELETE");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(data, "old_record"), "owner")),
		"user-a");
	for (size_t i = 0; i < n; i++)
		json_decref(payloads[i]);
	change_deinit(&del);

	/* a table without RLS: everyone; a table with RLS and no policy: only service_role */
	struct rt_bgroup *oa = attach(e, "realtime:o", "{\"event\":\"*\",\"table\":\"open_t\"}", &anon.a);
	struct rt_bgroup *la = attach(e, "realtime:o", "{\"event\":\"*\",\"table\":\"locked\"}", &a.a);
	struct rt_bgroup *ls = attach(e, "realtime:o", "{\"event\":\"*\",\"table\":\"locked\"}", &svc.a);
	struct rt_change o = change(e, "open_t", RT_CHANGE_INSERT, "{\"id\":1,\"v\":\"v\"}", NULL);
	n = rt_changes_match(e->c, &o, keys, NULL, 8, NULL);
	assert_int_equal(n, 1);
	assert_true(reached(keys, n, oa));
	change_deinit(&o);
	struct rt_change l = change(e, "locked", RT_CHANGE_INSERT, "{\"id\":1,\"v\":\"v\"}", NULL);
	n = rt_changes_match(e->c, &l, keys, NULL, 8, NULL);
	assert_int_equal(n, 1);
	assert_true(reached(keys, n, ls));
	assert_false(reached(keys, n, la));
	change_deinit(&l);

	rt_changes_detach(e->c, oa);
	rt_changes_detach(e->c, la);
	rt_changes_detach(e->c, ls);
	rt_changes_detach(e->c, ga);
	rt_changes_detach(e->c, gb);
	rt_changes_detach(e->c, gn);
	rt_changes_detach(e->c, gs);
	json_decref(a.claims);
	json_decref(b.claims);
	json_decref(anon.claims);
	json_decref(svc.claims);
}

/* A filter naming another user's rows reaches nothing: the policy still applies. */
static void test_filter_on_top(void **state)
{
	struct env *e = *state;
	struct who b;
	who_init(&b, "authenticated", "user-b", NULL);
	struct rt_bgroup *g = attach(
		e, "realtime:t",
		"{\"event\":\"*\",\"schema\":\"public\",\"table\":\"notes\",\"filter\":\"owner=eq.user-a\"}", &b.a);
	const char *keys[4];
	struct rt_change ins = change(e, "notes", RT_CHANGE_INSERT, "{\"id\":1,\"owner\":\"user-a\"}",
				      NULL);
	assert_int_equal(rt_changes_match(e->c, &ins, keys, NULL, 4, NULL), 0);
	change_deinit(&ins);
	/* the team policy does let B see A's rows of B's team */
	rt_changes_detach(e->c, g);
	json_decref(b.claims);
	who_init(&b, "authenticated", "user-b", "red");
	g = attach(e, "realtime:t",
		   "{\"event\":\"*\",\"schema\":\"public\",\"table\":\"notes\",\"filter\":\"owner=eq.user-a\"}", &b.a);
	ins = change(e, "notes", RT_CHANGE_INSERT,
		     "{\"id\":1,\"owner\":\"user-a\",\"team\":\"red\"}", NULL);
	assert_int_equal(rt_changes_match(e->c, &ins, keys, NULL, 4, NULL), 1);
	change_deinit(&ins);
	ins = change(e, "notes", RT_CHANGE_INSERT,
		     "{\"id\":1,\"owner\":\"user-a\",\"team\":\"blue\"}", NULL);
	assert_int_equal(rt_changes_match(e->c, &ins, keys, NULL, 4, NULL), 0);
	change_deinit(&ins);
	rt_changes_detach(e->c, g);
	json_decref(b.claims);
}

/* Requesters with the same visibility share one group; others do not. */
static void test_sharing(void **state)
{
	struct env *e = *state;
	struct who a1, a2, b;
	who_init(&a1, "authenticated", "user-a", NULL);
	/* other claims, same uid: the same predicate */
	who_init(&a2, "authenticated", "user-a", NULL);
	json_object_set_new(a2.claims, "session_id", json_string("s2"));
	who_init(&b, "authenticated", "user-b", NULL);
	struct rt_bgroup *g1 = attach(e, "realtime:t", ALL_NOTES, &a1.a);
	struct rt_bgroup *g2 = attach(e, "realtime:t", ALL_NOTES, &a2.a);
	struct rt_bgroup *g3 = attach(e, "realtime:t", ALL_NOTES, &b.a);
	assert_ptr_equal(g1, g2);
	assert_ptr_not_equal(g1, g3);
	rt_changes_detach(e->c, g1);
	rt_changes_detach(e->c, g2);
	rt_changes_detach(e->c, g3);
	json_decref(a1.claims);
	json_decref(a2.claims);
	json_decref(b.claims);
}

/* 1,000 users under `owner = auth.uid()`: one change evaluates one binding. */
static void test_eq_index(void **state)
{
	struct env *e = *state;
	enum { N = 1000 };
	struct rt_bgroup **gs = calloc(N, sizeof *gs);
	json_t *claims = json_pack("{s:s}", "role", "authenticated");
	for (int i = 0; i < N; i++) {
		char sub[32];
		snprintf(sub, sizeof sub, "user-%d", i);
		json_object_set_new(claims, "sub", json_string(sub));
		struct rt_auth a = {.role = "authenticated", .claims = claims};
		/* the own-rows policy is OR'ed with the team one (NULL team: folded away) */
		gs[i] = attach(e, "realtime:t", ALL_NOTES, &a);
	}
	json_decref(claims);
	const char *keys[4];
	size_t considered = 0;
	struct rt_change ins = change(e, "notes", RT_CHANGE_INSERT,
				      "{\"id\":7,\"owner\":\"user-417\"}", NULL);
	size_t n = rt_changes_match(e->c, &ins, keys, NULL, 4, &considered);
	assert_int_equal(n, 1);
	assert_true(reached(keys, n, gs[417]));
	assert_int_equal(considered, 1);
	change_deinit(&ins);
	for (int i = 0; i < N; i++)
		rt_changes_detach(e->c, gs[i]);
	free(gs);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The matcher's cost per change for 1,000 users, by policy (no filter) and
 * by filter (no policy: notes_open, the same columns without RLS): every change reaches its
 * user's group only. Prints changes matched and encoded per second (each is
 * one delivery here); asserts the routing, not the speed.
 */
static void test_match_rate(void **state)
{
	struct env *e = *state;
	enum { N = 1000, CHANGES = 100000 };
	for (int mode = 0; mode < 2; mode++) {
		struct rt_bgroup **gs = calloc(N, sizeof *gs);
		json_t *claims = json_pack("{s:s}", "role", "authenticated");
		for (int i = 0; i < N; i++) {
			char sub[32], entry[256];
			snprintf(sub, sizeof sub, "user-%d", i);
			json_object_set_new(claims, "sub", json_string(sub));
			struct rt_auth a = {.role = "authenticated", .claims = claims};
			if (mode == 0)
				snprintf(entry, sizeof entry, "%s", ALL_NOTES);
			else
				snprintf(entry, sizeof entry,
					 "{\"event\":\"*\",\"schema\":\"public\",\"table\":"
					 "\"notes_open\",\"filter\":\"owner=eq.user-%d\"}", i);
			gs[i] = attach(e, "realtime:t", entry, &a);
		}
		json_decref(claims);
		const char *keys[4];
		json_t *payloads[4];
		size_t reached_ok = 0;
		double t0 = now_s();
		for (int k = 0; k < CHANGES; k++) {
			char rec[96];
			int u = (k * 7919) % N;
			snprintf(rec, sizeof rec, "{\"id\":%d,\"owner\":\"user-%d\",\"body\":\"b\"}",
				 k, u);
			struct rt_change ch = change(e, mode == 0 ? "notes" : "notes_open",
						     RT_CHANGE_INSERT, rec, NULL);
			size_t n = rt_changes_match(e->c, &ch, keys, payloads, 4, NULL);
			if (n == 1 && !strcmp(keys[0], rt_bgroup_key(gs[u])))
				reached_ok++;
			for (size_t i = 0; i < n && i < 4; i++)
				json_decref(payloads[i]);
			change_deinit(&ch);
		}
		double dt = now_s() - t0;
		assert_int_equal(reached_ok, CHANGES);
		fprintf(stderr, "match rate, 1000 users, %s: %.0f changes/s (one delivery each)\n",
			mode == 0 ? "policy owner = auth.uid()" : "filter owner=eq.<user>, no policy",
			CHANGES / dt);
		for (int i = 0; i < N; i++)
			rt_changes_detach(e->c, gs[i]);
		free(gs);
	}
}

/* A wildcard binding applies each table's own predicate. */
static void test_wildcard(void **state)
{
	struct env *e = *state;
	struct who a;
	who_init(&a, "authenticated", "user-a", NULL);
	struct rt_bgroup *g = attach(e, "realtime:w", "{\"event\":\"*\",\"schema\":\"public\"}", &a.a);
	const char *keys[4];
	struct rt_change c1 = change(e, "notes", RT_CHANGE_INSERT, "{\"id\":1,\"owner\":\"user-a\"}",
				     NULL);
	assert_int_equal(rt_changes_match(e->c, &c1, keys, NULL, 4, NULL), 1);
	change_deinit(&c1);
	struct rt_change c2 = change(e, "notes", RT_CHANGE_INSERT, "{\"id\":1,\"owner\":\"user-z\"}",
				     NULL);
	assert_int_equal(rt_changes_match(e->c, &c2, keys, NULL, 4, NULL), 0);
	change_deinit(&c2);
	struct rt_change c3 = change(e, "open_t", RT_CHANGE_INSERT, "{\"id\":1}", NULL);
	assert_int_equal(rt_changes_match(e->c, &c3, keys, NULL, 4, NULL), 1);
	change_deinit(&c3);
	struct rt_change c4 = change(e, "locked", RT_CHANGE_INSERT, "{\"id\":1}", NULL);
	assert_int_equal(rt_changes_match(e->c, &c4, keys, NULL, 4, NULL), 0);
	change_deinit(&c4);
	rt_changes_detach(e->c, g);
	json_decref(a.claims);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_per_user_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filter_on_top, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sharing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eq_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wildcard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_match_rate, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
