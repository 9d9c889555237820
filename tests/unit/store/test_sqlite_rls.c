/*
 * The embedded store's schema file and row-level security
 * (src/store/sqlite.c): statements split by SQLite's tokenizer (triggers,
 * quotes, comments, a last statement without ';'), applied again at every
 * open, errors with their line:column; policy statements taken out and
 * enforced on reads, writes, upserts and writes with a base, for users,
 * anon, the service role and the server itself; reads with aggregates.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static char dir[64];
static char db_path[128];

static const char schema[] =
	"-- notes; one per user\n"
	"CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, owner text NOT NULL,\n"
	"  body text DEFAULT 'a;b', is_public boolean NOT NULL DEFAULT false);\n"
	"/* a comment; with a ';' */\n"
	"CREATE TABLE IF NOT EXISTS log (id integer PRIMARY KEY, what text);\n"
	"CREATE TRIGGER IF NOT EXISTS notes_log AFTER INSERT ON notes BEGIN\n"
	"  INSERT INTO log (what) VALUES ('note; ' || NEW.id);\n"
	"  INSERT INTO log (what) VALUES ('again');\n"
	"END;\n"
	"ALTER TABLE notes ENABLE ROW LEVEL SECURITY;\n"
	"CREATE POLICY \"own\" ON notes FOR ALL TO authenticated\n"
	"  USING (owner = auth.uid()) WITH CHECK (owner = auth.uid());\n"
	"CREATE POLICY \"public\" ON notes FOR SELECT USING (is_public = true);\n"
	"CREATE TABLE IF NOT EXISTS plain (id bigint PRIMARY KEY, v text)";

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/rtsync-test-sqlite-rls-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(db_path, sizeof db_path, "%s/t.db", dir);
	return 0;
}

static int teardown(void **state)
{
	char p[192];
	static const char *const files[] = {"t.db", "t.db-wal", "t.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
	return 0;
}

static struct rt_store *open_store(const char *sql)
{
	struct rt_store *s = NULL;
	char err[1024];
	if (rt_store_open_sqlite(db_path, sql, 1000, 3600000, &s, err, sizeof err))
		fail_msg("open: %s", err);
	return s;
}

/* The error opening with sql. */
static void open_fails(const char *sql, const char *want)
{
	struct rt_store *s = NULL;
	char err[1024] = "";
	assert_int_equal(rt_store_open_sqlite(db_path, sql, 1000, 3600000, &s, err, sizeof err),
			 -1);
	assert_null(s);
	if (!strstr(err, want))
		fail_msg("open error \"%s\" lacks \"%s\"", err, want);
}

static json_t *j(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
	if (!v)
		fail_msg("bad JSON %s: %s", text, e.text);
	return v;
}

struct who {
	json_t *claims;
	struct rt_auth auth;
};

static void who_init(struct who *w, const char *role, const char *sub)
{
	w->claims = sub ? json_pack("{s:s,s:s}", "role", role, "sub", sub)
			: json_pack("{s:s}", "role", role);
	w->auth = (struct rt_auth){.role = role, .claims = w->claims};
}

static void who_deinit(struct who *w)
{
	json_decref(w->claims);
}

/* Reads the ids of table (filter: a PostgREST query string, may be "")
 * as who; returns them as a JSON text like "[1,2]" in out. */
static void read_ids(struct rt_store *s, const char *table, const char *filter,
		     const struct rt_auth *who, char *out, size_t cap, long long *count)
{
	struct rt_query q;
	char qs[256];
	snprintf(qs, sizeof qs, "select=id&order=id%s%s", *filter ? "&" : "", filter);
	assert_int_equal(rt_query_parse(qs, strlen(qs), &q, NULL, 0), 0);
	struct rt_read r = {.table = rt_store_table(s, NULL, table),
			    .query = &q,
			    .wants_count = count != NULL,
			    .who = who};
	json_t *rows = NULL;
	long long total = -1;
	struct rt_store_error e;
	if (rt_store_read(s, &r, &rows, &total, &e))
		fail_msg("read: %s", e.message);
	json_t *ids = json_array();
	size_t i;
	json_t *row;
	json_array_foreach (rows, i, row)
		json_array_append(ids, json_object_get(row, "id"));
	char *txt = json_dumps(ids, JSON_COMPACT);
	snprintf(out, cap, "%s", txt);
	free(txt);
	json_decref(ids);
	json_decref(rows);
	rt_query_deinit(&q);
	if (count)
		*count = total;
}

struct wr {
	enum rt_write_kind kind;
	const char *table;
	const char *rows;   /* JSON */
	const char *filter; /* query string (UPDATE/DELETE, on_conflict) */
	const char *base;   /* JSON or NULL */
	bool is_count_only;
	const struct rt_auth *who;
	enum rt_write_strategy strategy;
};

/* Runs a write; returns 0 with the rows written in out (JSON text) or -1
 * with the error's code and status. */
static int write_as(struct rt_store *s, const struct wr *x, char *out, size_t cap,
		    struct rt_store_error *e, struct rt_write_result *res)
{
	struct rt_query q;
	const char *f = x->filter ? x->filter : "";
	assert_int_equal(rt_query_parse(f, strlen(f), &q, NULL, 0), 0);
	json_t *rows_in = x->rows ? j(x->rows) : NULL;
	json_t *base = x->base ? j(x->base) : NULL;
	struct rt_write w = {
		.kind = x->kind,
		.table = rt_store_table(s, NULL, x->table),
		.rows = rows_in,
		.where = &q,
		.wants_rows = true,
		.is_count_only = x->is_count_only,
		.base = base,
		.strategy = x->strategy,
		.result = res,
		.who = x->who,
	};
	json_t *rows = NULL;
	int rc = rt_store_write(s, &w, &rows, e);
	if (!rc) {
		char *txt = json_dumps(rows, JSON_COMPACT | JSON_SORT_KEYS);
		snprintf(out, cap, "%s", txt);
		free(txt);
	}
	json_decref(rows);
	json_decref(rows_in);
	json_decref(base);
	rt_query_deinit(&q);
	return rc;
}

static void assert_refused(int rc, const struct rt_store_error *e, int status)
{
	assert_int_equal(rc, -1);
	assert_string_equal(e->code, "42501");
	assert_int_equal(e->status, status);
	assert_string_equal(e->message,
			    "new row violates row-level security policy for table \"notes\"");
}

/* Opens the store with the schema and inserts rows (JSON) into notes as
 * the server. */
static struct rt_store *open_seeded(const char *rows);

static void test_schema_split(void **state)
{
	struct rt_store *s = open_store(schema);
	assert_non_null(rt_store_table(s, NULL, "notes"));
	assert_non_null(rt_store_table(s, NULL, "log"));
	assert_non_null(rt_store_table(s, NULL, "plain"));
	struct rt_policies *p = rt_store_policies(s);
	assert_true(rt_policies_is_enabled(p, "public", "notes"));
	assert_false(rt_policies_is_enabled(p, "public", "plain"));
	assert_int_equal(rt_policies_count(p, NULL), 2);
	rt_policies_unref(p);
	/* The trigger body ran whole: two log rows per note. */
	char out[512];
	struct rt_store_error e;
	struct wr ins = {
		.kind = RT_WRITE_INSERT, .table = "notes", .rows = "[{\"id\":1,\"owner\":\"u1\"}]"};
	assert_int_equal(write_as(s, &ins, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out,
			    "[{\"body\":\"a;b\",\"id\":1,\"is_public\":false,\"owner\":\"u1\"}]");
	read_ids(s, "log", "", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[1,2]");
	rt_store_close(s);
	/* Applied again at the next open: what exists is kept. */
	s = open_store(schema);
	read_ids(s, "notes", "", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[1]");
	rt_store_close(s);
}

static struct rt_store *open_seeded(const char *rows)
{
	struct rt_store *s = open_store(schema);
	char out[512];
	struct rt_store_error e;
	struct wr seed = {.kind = RT_WRITE_INSERT, .table = "notes", .rows = rows};
	if (write_as(s, &seed, out, sizeof out, &e, NULL))
		fail_msg("seed: %s", e.message);
	return s;
}

static void test_schema_errors(void **state)
{
	open_fails("CREATE TABLE a (id bigint PRIMARY KEY);\n\n  CREATE TABLE b (;\n",
		   "schema line 3:3: ");
	open_fails("CREATE TABLE a (id bigint PRIMARY KEY, at text);\n"
		   "CREATE POLICY \"too clever\" ON a\n  USING (at > now());\n",
		   "too clever");
	open_fails("CREATE TABLE a (id bigint PRIMARY KEY, at text);\n"
		   "CREATE POLICY \"too clever\" ON a\n  USING (at > now());\n",
		   "schema line 3:");
	open_fails("CREATE TABLE a (id bigint PRIMARY KEY);\n"
		   "CREATE POLICY \"own\" ON a USING (ownr = auth.uid());\n",
		   "ownr");
	open_fails("CREATE TABLE a (id bigint PRIMARY KEY);\n"
		   "CREATE POLICY \"ghost\" ON missing USING (owner = auth.uid());\n",
		   "relation \"missing\" does not exist");
}

static void test_reads(void **state)
{
	struct rt_store *s =
		open_seeded("[{\"id\":1,\"owner\":\"alice\"},"
			    "{\"id\":2,\"owner\":\"alice\",\"is_public\":true},"
			    "{\"id\":3,\"owner\":\"bob\"},{\"id\":4,\"owner\":\"bob\"}]");
	struct who alice, bob, anon, service;
	who_init(&alice, "authenticated", "alice");
	who_init(&bob, "authenticated", "bob");
	who_init(&anon, "anon", NULL);
	who_init(&service, "service_role", NULL);
	char out[512];
	long long n;
	read_ids(s, "notes", "", &alice.auth, out, sizeof out, &n);
	assert_string_equal(out, "[1,2]");
	assert_int_equal(n, 2);
	read_ids(s, "notes", "", &bob.auth, out, sizeof out, &n);
	assert_string_equal(out, "[2,3,4]");
	assert_int_equal(n, 3);
	read_ids(s, "notes", "limit=1&offset=1", &bob.auth, out, sizeof out, &n);
	assert_string_equal(out, "[3]");
	assert_int_equal(n, 3);
	read_ids(s, "notes", "owner=eq.bob", &alice.auth, out, sizeof out, &n);
	assert_string_equal(out, "[]");
	assert_int_equal(n, 0);
	read_ids(s, "notes", "", &anon.auth, out, sizeof out, NULL);
	assert_string_equal(out, "[2]");
	read_ids(s, "notes", "", &service.auth, out, sizeof out, NULL);
	assert_string_equal(out, "[1,2,3,4]");
	read_ids(s, "notes", "", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[1,2,3,4]");
	who_deinit(&alice);
	who_deinit(&bob);
	who_deinit(&anon);
	who_deinit(&service);
	rt_store_close(s);
}

static void test_writes(void **state)
{
	struct rt_store *s =
		open_seeded("[{\"id\":1,\"owner\":\"alice\"},{\"id\":3,\"owner\":\"bob\"},"
			    "{\"id\":4,\"owner\":\"bob\",\"is_public\":true}]");
	struct who alice, anon;
	who_init(&alice, "authenticated", "alice");
	who_init(&anon, "anon", NULL);
	char out[512];
	struct rt_store_error e;

	/* inserts: WITH CHECK, 403 / 401, all or nothing */
	struct wr x = {.kind = RT_WRITE_INSERT,
		       .table = "notes",
		       .rows = "[{\"id\":5,\"owner\":\"alice\"},{\"id\":6,\"owner\":\"bob\"}]",
		       .who = &alice.auth};
	assert_refused(write_as(s, &x, out, sizeof out, &e, NULL), &e, 403);
	x = (struct wr){.kind = RT_WRITE_INSERT,
			.table = "notes",
			.rows = "[{\"id\":5,\"owner\":\"alice\"}]",
			.who = &anon.auth};
	assert_refused(write_as(s, &x, out, sizeof out, &e, NULL), &e, 401);
	read_ids(s, "notes", "", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[1,3,4]");

	/* updates and deletes of hidden rows: nothing */
	x = (struct wr){.kind = RT_WRITE_UPDATE,
			.table = "notes",
			.rows = "{\"body\":\"x\"}",
			.filter = "id=in.(3,4)",
			.who = &alice.auth};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out, "[]");
	x = (struct wr){.kind = RT_WRITE_DELETE,
			.table = "notes",
			.rows = NULL,
			.filter = "id=in.(3,4)",
			.who = &alice.auth};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out, "[]");
	/* out of WITH CHECK */
	x = (struct wr){.kind = RT_WRITE_UPDATE,
			.table = "notes",
			.rows = "{\"owner\":\"bob\"}",
			.filter = "id=eq.1",
			.who = &alice.auth};
	assert_refused(write_as(s, &x, out, sizeof out, &e, NULL), &e, 403);
	/* upserts onto hidden rows, and onto the own one */
	x = (struct wr){.kind = RT_WRITE_UPSERT,
			.table = "notes",
			.rows = "[{\"id\":3,\"owner\":\"alice\"}]",
			.who = &alice.auth};
	assert_refused(write_as(s, &x, out, sizeof out, &e, NULL), &e, 403);
	x = (struct wr){.kind = RT_WRITE_UPSERT,
			.table = "notes",
			.rows = "[{\"id\":4,\"owner\":\"alice\"}]",
			.who = &alice.auth};
	assert_refused(write_as(s, &x, out, sizeof out, &e, NULL), &e, 403);
	x = (struct wr){.kind = RT_WRITE_UPSERT,
			.table = "notes",
			.rows = "[{\"id\":1,\"owner\":\"alice\",\"body\":\"up\"}]",
			.who = &alice.auth};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out,
			    "[{\"body\":\"up\",\"id\":1,\"is_public\":false,\"owner\":\"alice\"}]");

	/* with a base: a hidden row is as a row that is gone (nothing of it
	 * shown); a visible one is checked */
	struct rt_write_result res = {0};
	x = (struct wr){.kind = RT_WRITE_UPDATE,
			.table = "notes",
			.rows = "{\"body\":\"b\"}",
			.filter = "id=eq.3",
			.base = "{\"body\":\"a;b\"}",
			.who = &alice.auth};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, &res), 0);
	assert_int_equal(res.outcome, RT_WRITE_CONFLICT);
	assert_null(res.current);
	rt_write_result_deinit(&res);
	x.strategy = RT_STRATEGY_LWW;
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, &res), 0);
	assert_int_equal(res.outcome, RT_WRITE_MISSING);
	assert_string_equal(out, "[]");
	rt_write_result_deinit(&res);
	x = (struct wr){.kind = RT_WRITE_UPDATE,
			.table = "notes",
			.rows = "{\"owner\":\"bob\"}",
			.filter = "id=eq.1",
			.base = "{\"owner\":\"alice\"}",
			.who = &alice.auth};
	assert_refused(write_as(s, &x, out, sizeof out, &e, &res), &e, 403);
	rt_write_result_deinit(&res);
	x = (struct wr){.kind = RT_WRITE_UPSERT,
			.table = "notes",
			.rows = "[{\"id\":3,\"owner\":\"alice\"}]",
			.base = "{\"owner\":\"bob\"}",
			.who = &alice.auth};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, &res), 0);
	assert_int_equal(res.outcome, RT_WRITE_CONFLICT);
	assert_null(res.current);
	rt_write_result_deinit(&res);
	x.strategy = RT_STRATEGY_LWW; /* the insert path meets the hidden row */
	assert_refused(write_as(s, &x, out, sizeof out, &e, &res), &e, 403);
	rt_write_result_deinit(&res);
	x = (struct wr){.kind = RT_WRITE_DELETE,
			.table = "notes",
			.filter = "id=eq.4",
			.base = "{\"owner\":\"bob\"}",
			.who = &alice.auth,
			.strategy = RT_STRATEGY_LWW};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, &res), 0);
	assert_int_equal(res.outcome, RT_WRITE_MISSING);
	rt_write_result_deinit(&res);
	/* the own row with a base */
	x = (struct wr){.kind = RT_WRITE_UPDATE,
			.table = "notes",
			.rows = "{\"body\":\"c\"}",
			.filter = "id=eq.1",
			.base = "{\"body\":\"up\"}",
			.who = &alice.auth};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, &res), 0);
	assert_int_equal(res.outcome, RT_WRITE_APPLIED);
	assert_string_equal(out,
			    "[{\"body\":\"c\",\"id\":1,\"is_public\":false,\"owner\":\"alice\"}]");
	rt_write_result_deinit(&res);

	char all[512];
	read_ids(s, "notes", "", NULL, all, sizeof all, NULL);
	assert_string_equal(all, "[1,3,4]");
	x = (struct wr){.kind = RT_WRITE_UPDATE,
			.table = "notes",
			.rows = "{\"body\":\"q\"}",
			.filter = "id=eq.3"};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out,
			    "[{\"body\":\"q\",\"id\":3,\"is_public\":false,\"owner\":\"bob\"}]");
	who_deinit(&alice);
	who_deinit(&anon);
	rt_store_close(s);
}

/* A row the requester may insert but not select: fine when the rows are
 * only counted (return=minimal), refused when they are shown. */
static void test_count_only(void **state)
{
	static const char drop_box[] = "CREATE TABLE IF NOT EXISTS box (id bigint PRIMARY KEY, "
				       "author text, st text DEFAULT 'new');\n"
				       "ALTER TABLE box ENABLE ROW LEVEL SECURITY;\n"
				       "CREATE POLICY \"drop\" ON box FOR INSERT WITH CHECK "
				       "(author = auth.uid() AND st = 'new');\n";
	struct rt_store *s = open_store(drop_box);
	struct who alice;
	who_init(&alice, "authenticated", "alice");
	char out[512];
	struct rt_store_error e;
	struct wr x = {.kind = RT_WRITE_INSERT,
		       .table = "box",
		       .rows = "[{\"id\":1,\"author\":\"alice\"}]",
		       .is_count_only = true,
		       .who = &alice.auth};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	x.rows = "[{\"id\":2,\"author\":\"alice\"}]";
	x.is_count_only = false;
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), -1);
	assert_string_equal(e.code, "42501");
	x.rows = "[{\"id\":3,\"author\":\"alice\",\"st\":\"done\"}]";
	x.is_count_only = true;
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), -1);
	assert_string_equal(e.code, "42501");
	read_ids(s, "box", "", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[1]");
	read_ids(s, "box", "", &alice.auth, out, sizeof out, NULL);
	assert_string_equal(out, "[]");
	who_deinit(&alice);
	rt_store_close(s);
}

/* Rows wanted for their count alone (return=minimal) are counted, not read
 * back, and the checks that reading back made still hold. */
static void test_counted_writes(void **state)
{
	struct rt_store *s = open_store("CREATE TABLE IF NOT EXISTS auto (id integer PRIMARY KEY, v text);\n"
					"CREATE TABLE IF NOT EXISTS named (k text PRIMARY KEY, v text);\n");
	char out[512];
	struct rt_store_error e;
	struct rt_write_result res = {0};
	/* the rowid numbers rows written without a key */
	struct wr x = {.kind = RT_WRITE_INSERT,
		       .table = "auto",
		       .rows = "[{\"v\":\"a\"},{\"v\":\"b\"},{\"id\":10,\"v\":\"c\"}]",
		       .is_count_only = true};
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, &res), 0);
	assert_string_equal(out, "[{},{},{}]");
	assert_int_equal(res.position, 3);
	read_ids(s, "auto", "", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[1,2,10]");
	/* a duplicate key still fails, with PostgreSQL's details */
	x.rows = "[{\"id\":10,\"v\":\"again\"}]";
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), -1);
	assert_string_equal(e.code, "23505");
	assert_string_equal(e.details, "Key (id)=(10) already exists.");
	/* a key that is not the rowid: NULL refused (SQLite would store it) */
	x.table = "named";
	x.rows = "[{\"v\":\"no key\"}]";
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), -1);
	assert_string_equal(e.code, "23502");
	x.rows = "[{\"k\":null,\"v\":\"null key\"}]";
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), -1);
	assert_string_equal(e.code, "23502");
	x.rows = "[{\"k\":\"a\",\"v\":\"1\"},{\"k\":\"b\",\"v\":\"2\"}]";
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out, "[{},{}]");
	/* an upsert counts the rows inserted and the rows merged; ignoring
	 * duplicates counts only the new ones */
	x.kind = RT_WRITE_UPSERT;
	x.rows = "[{\"k\":\"a\",\"v\":\"3\"},{\"k\":\"c\",\"v\":\"4\"}]";
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out, "[{},{}]");
	x.kind = RT_WRITE_UPDATE;
	x.rows = "{\"v\":\"all\"}";
	x.filter = "k=in.(a,b)";
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out, "[{},{}]");
	/* without return=minimal the rows come back whole */
	x.is_count_only = false;
	x.filter = "k=eq.c";
	assert_int_equal(write_as(s, &x, out, sizeof out, &e, NULL), 0);
	assert_string_equal(out, "[{\"k\":\"c\",\"v\":\"all\"}]");
	rt_store_close(s);
}

/* Reads table with the query string qs as who; the rows as compact JSON
 * text in out, the count (count=exact) and the position in *total and *pos. */
static void read_json(struct rt_store *s, const char *table, const char *qs,
		      const struct rt_auth *who, char *out, size_t cap, long long *total,
		      uint64_t *pos)
{
	struct rt_query q;
	assert_int_equal(rt_query_parse(qs, strlen(qs), &q, NULL, 0), 0);
	struct rt_read r = {.table = rt_store_table(s, NULL, table),
			    .query = &q,
			    .wants_count = true,
			    .position = pos,
			    .who = who};
	json_t *rows = NULL;
	struct rt_store_error e;
	if (rt_store_read(s, &r, &rows, total, &e))
		fail_msg("read %s: %s", qs, e.message);
	char *txt = json_dumps(rows, JSON_COMPACT | JSON_PRESERVE_ORDER);
	snprintf(out, cap, "%s", txt);
	free(txt);
	json_decref(rows);
	rt_query_deinit(&q);
}

/* Aggregates: grouped by the plain columns, over the rows the requester's
 * policies let it select; the count is of rows, the position still read. */
static void test_aggregates(void **state)
{
	struct rt_store *s =
		open_seeded("[{\"id\":1,\"owner\":\"alice\",\"body\":\"a\"},"
			    "{\"id\":2,\"owner\":\"alice\",\"body\":\"a\",\"is_public\":true},"
			    "{\"id\":3,\"owner\":\"alice\",\"body\":\"b\"},"
			    "{\"id\":4,\"owner\":\"bob\",\"body\":\"a\"},"
			    "{\"id\":5,\"owner\":\"bob\",\"body\":null}]");
	struct who alice, bob, anon;
	who_init(&alice, "authenticated", "alice");
	who_init(&bob, "authenticated", "bob");
	who_init(&anon, "anon", NULL);
	char out[512];
	long long n;
	uint64_t pos = 0;
	const char *qs = "select=body,total:id.sum(),count(),id.avg(),id.max()&order=body";
	read_json(s, "notes", qs, &alice.auth, out, sizeof out, &n, &pos);
	assert_string_equal(out, "[{\"body\":\"a\",\"total\":3,\"count\":2,\"avg\":1.5,\"max\":2},"
				 "{\"body\":\"b\",\"total\":3,\"count\":1,\"avg\":3.0,\"max\":3}]");
	assert_int_equal(n, 3); /* rows, not groups */
	assert_true(pos > 0);   /* the seed's changes */
	read_json(s, "notes", qs, &bob.auth, out, sizeof out, &n, NULL);
	assert_string_equal(out, "[{\"body\":\"a\",\"total\":6,\"count\":2,\"avg\":3.0,\"max\":4},"
				 "{\"body\":null,\"total\":5,\"count\":1,\"avg\":5.0,\"max\":5}]");
	assert_int_equal(n, 3); /* 2, 4, 5: the public note too */
	read_json(s, "notes", "select=count(),id.sum()", &anon.auth, out, sizeof out, &n, NULL);
	assert_string_equal(out, "[{\"count\":1,\"sum\":2}]");
	/* nothing matches: one row, count 0 and the others null */
	read_json(s, "notes", "select=count(),id.sum(),body.min()&owner=eq.bob", &alice.auth, out,
		  sizeof out, &n, NULL);
	assert_string_equal(out, "[{\"count\":0,\"sum\":null,\"min\":null}]");
	assert_int_equal(n, 0);
	/* limit and offset over the groups */
	read_json(s, "notes", "select=owner,count()&order=owner.desc&limit=1&offset=1", NULL, out,
		  sizeof out, &n, NULL);
	assert_string_equal(out, "[{\"owner\":\"alice\",\"count\":3}]");
	assert_int_equal(n, 5);

	/* a sum beyond 64 bits: PostgreSQL's numeric would hold it, SQLite refuses */
	char err_out[512];
	struct rt_store_error e;
	struct wr big = {.kind = RT_WRITE_INSERT,
			 .table = "notes",
			 .rows = "[{\"id\":9223372036854775807,\"owner\":\"carol\"},"
				 "{\"id\":9223372036854775806,\"owner\":\"carol\"}]"};
	assert_int_equal(write_as(s, &big, err_out, sizeof err_out, &e, NULL), 0);
	struct rt_query q;
	const char *sum = "select=id.sum()&owner=eq.carol";
	assert_int_equal(rt_query_parse(sum, strlen(sum), &q, NULL, 0), 0);
	struct rt_read r = {.table = rt_store_table(s, NULL, "notes"), .query = &q};
	json_t *rows = NULL;
	long long total;
	assert_int_equal(rt_store_read(s, &r, &rows, &total, &e), -1);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.code, "22003");
	rt_query_deinit(&q);

	/* a write's representation is never grouped */
	struct wr agg_write = {.kind = RT_WRITE_UPDATE,
			       .table = "notes",
			       .rows = "{\"body\":\"z\"}",
			       .filter = "id=eq.1&select=count()"};
	assert_int_equal(write_as(s, &agg_write, err_out, sizeof err_out, &e, NULL), -1);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.code, "PGRST100");
	read_json(s, "notes", "select=body&id=eq.1", NULL, out, sizeof out, &n, NULL);
	assert_string_equal(out, "[{\"body\":\"a\"}]");
	who_deinit(&alice);
	who_deinit(&bob);
	who_deinit(&anon);
	rt_store_close(s);
}

/* An integer filter value past 64 bits matches no row: it is not read as
 * the largest bigint (strtoll saturates). */
static void test_big_integers(void **state)
{
	struct rt_store *s = open_store(schema);
	char out[512];
	struct rt_store_error e;
	struct wr ins = {.kind = RT_WRITE_INSERT, .table = "plain",
			 .rows = "[{\"id\":9223372036854775807,\"v\":\"max\"},{\"id\":1,\"v\":\"one\"}]"};
	assert_int_equal(write_as(s, &ins, out, sizeof out, &e, NULL), 0);
	read_ids(s, "plain", "id=eq.9223372036854775807", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[9223372036854775807]");
	read_ids(s, "plain", "id=eq.99999999999999999999", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[]");
	read_ids(s, "plain", "id=gt.-99999999999999999999", NULL, out, sizeof out, NULL);
	assert_string_equal(out, "[1,9223372036854775807]");
	rt_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_schema_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_count_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counted_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aggregates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_integers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
