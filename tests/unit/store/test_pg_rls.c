/*
 * The PostgreSQL store's row-level security calls against a real database:
 * channel authorization by realtime.messages policies (rt_store_topic_allowed),
 * column privileges (rt_store_selectable) and the batched check of opaque
 * policies (rt_store_visible). Needs $RTSYNC_TEST_POSTGRES (a server URL
 * without database, as tests/postgres/run.sh sets it, with the API roles);
 * skipped without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static char url[512], log_path[256], dbname[64];

static void sql(const char *db, const char *q)
{
	char conn[600];
	snprintf(conn, sizeof conn, "%s/%s", getenv("RTSYNC_TEST_POSTGRES"), db);
	PGconn *c = PQconnectdb(conn);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, q);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", q, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static int setup(void **state)
{
	(void)state;
	const char *base = getenv("RTSYNC_TEST_POSTGRES");
	if (!base || !*base)
		return 0;
	snprintf(dbname, sizeof dbname, "rt_unit_%d", (int)getpid());
	char q[128];
	snprintf(q, sizeof q, "CREATE DATABASE %s", dbname);
	sql("postgres", q);
	snprintf(url, sizeof url, "%s/%s", base, dbname);
	snprintf(log_path, sizeof log_path, "/tmp/%s.db", dbname);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!*url)
		return 0;
	char q[160];
	snprintf(q, sizeof q, "SELECT pg_drop_replication_slot('%s')", dbname);
	sql(dbname, q);
	snprintf(q, sizeof q, "DROP DATABASE %s", dbname);
	sql("postgres", q);
	unlink(log_path);
	char wal[300];
	snprintf(wal, sizeof wal, "%s-wal", log_path);
	unlink(wal);
	snprintf(wal, sizeof wal, "%s-shm", log_path);
	unlink(wal);
	return 0;
}

static const char SCHEMA[] =
	"CREATE TABLE cols (id int PRIMARY KEY, pub text, hidden text);"
	"REVOKE SELECT ON cols FROM authenticated;"
	"GRANT SELECT (id, pub) ON cols TO authenticated;"
	"CREATE TABLE members (team text, sub text, PRIMARY KEY (team, sub));"
	"INSERT INTO members VALUES ('red', 'user-a');"
	"CREATE TABLE docs (id int PRIMARY KEY, team text);"
	"ALTER TABLE docs ENABLE ROW LEVEL SECURITY;"
	"CREATE POLICY team ON docs FOR SELECT TO authenticated USING (EXISTS (SELECT 1 FROM"
	" members m WHERE m.team = docs.team AND m.sub = auth.jwt() ->> 'sub'));"
	"DO $$ BEGIN IF to_regclass('realtime.messages') IS NOT NULL THEN"
	" CREATE POLICY r ON realtime.messages FOR SELECT TO authenticated USING (realtime.topic() ="
	"  'room:' || substr(auth.jwt() ->> 'sub', 6) AND extension = 'broadcast');"
	" CREATE POLICY w ON realtime.messages FOR INSERT TO authenticated WITH CHECK"
	"  (realtime.topic() = 'room:a' AND (SELECT auth.jwt() ->> 'sub') = 'user-a');"
	" END IF; END $$";

static struct rt_store *open_store(void)
{
	struct rt_store_pg_config cfg = {.conninfo = url,
					 .log_path = log_path,
					 .name = dbname,
					 .pool_size = 2,
					 .retain_count = 1000,
					 .retain_ms = 3600000};
	struct rt_store *s = NULL;
	char err[1024];
	if (rt_store_open_postgres(&cfg, &s, err, sizeof err))
		fail_msg("open: %s", err);
	return s;
}

static void test_rls_calls(void **state)
{
	(void)state;
	if (!*url)
		skip();
	/* first open creates realtime.messages; the schema's policies on it follow */
	rt_store_close(open_store());
	sql(dbname, SCHEMA);
	struct rt_store *s = open_store();
	json_t *ca = json_pack("{s:s}", "sub", "user-a"), *cb = json_pack("{s:s}", "sub", "user-b");

	/* channels: reads by the SELECT policy, writes by the INSERT check */
	static const struct {
		const char *topic;
		bool is_b, is_write, allowed;
	} cases[] = {
		{"room:a", false, false, true}, {"room:a", false, true, true},
		{"room:a", true, false, false}, {"room:a", true, true, false},
		{"room:b", false, false, false}, {"room:b", false, true, false},
		{"room:b", true, false, true},  {"room:b", true, true, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct rt_auth who = {.role = "authenticated",
				      .claims = cases[i].is_b ? cb : ca,
				      .topic = cases[i].topic};
		bool ok = !cases[i].allowed;
		assert_int_equal(rt_store_topic_allowed(s, &who, "broadcast", cases[i].is_write, &ok),
				 0);
		assert_true(ok == cases[i].allowed);
	}
	struct rt_auth anon = {.role = "anon", .topic = "room:a"};
	bool ok = true;
	assert_int_equal(rt_store_topic_allowed(s, &anon, "broadcast", false, &ok), 0);
	assert_false(ok);
	struct rt_auth presence = {.role = "authenticated", .claims = ca, .topic = "room:a"};
	ok = true;
	assert_int_equal(rt_store_topic_allowed(s, &presence, "presence", false, &ok), 0);
	assert_false(ok); /* the read policy names broadcast only */

	/* column privileges, per role */
	const struct rt_store_table *t = rt_store_table(s, NULL, "cols");
	assert_non_null(t);
	bool sel[3] = {false, false, true};
	assert_int_equal(rt_store_selectable(s, "authenticated", t, sel), 0);
	assert_true(sel[0] && sel[1] && !sel[2]);
	assert_int_equal(rt_store_selectable(s, "service_role", t, sel), 0);
	assert_true(sel[0] && sel[1] && sel[2]);
	assert_int_equal(rt_store_selectable(s, "nosuchrole", t, sel), 0);
	assert_true(!sel[0] && !sel[1] && !sel[2]);

	/* an opaque policy, for several requesters at once (a row not in the table) */
	const struct rt_store_table *d = rt_store_table(s, NULL, "docs");
	json_t *row = json_pack("{s:i, s:s}", "id", 7, "team", "red");
	struct rt_auth wa = {.role = "authenticated", .claims = ca},
		       wb = {.role = "authenticated", .claims = cb}, ws = {.role = "service_role"},
		       wn = {.role = "anon"};
	const struct rt_auth *who[] = {&wa, &wb, &ws, &wn, &wa};
	bool vis[5] = {false, true, false, true, false};
	assert_int_equal(rt_store_visible(s, d, row, who, 5, vis), 0);
	assert_true(vis[0] && !vis[1] && vis[2] && !vis[3] && vis[4]);
	json_decref(row);

	json_decref(ca);
	json_decref(cb);
	rt_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rls_calls),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
