/*
 * Live queries (src/live/live.c) against the embedded store: thousands of
 * random writes — inserts, updates that move rows in and out of filters,
 * windows and groups, deletes — applied in batches of random size; after
 * every batch each of 50 definitions, under three requesters with
 * different row-level security, equals the same query run from scratch by
 * the store at that position, and a copy kept by applying the diffs (from
 * the previous batch and from older positions) equals the result. Also: one
 * maintained query per definition and visibility however many open it, the
 * definitions' errors, the window reserve being read again, and a change
 * costing nothing to the queries whose eq conjuncts its rows do not satisfy.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/metrics.h"
#include "live/live.h"
#include "store/store.h"

#include "../realtime/fixture.h"
#include "../testutil.h"

static char dir[64];
static char db_path[128];
/* With $RTSYNC_TEST_POSTGRES (tests/postgres/run.sh): a database of its own. */
static char pg_url[512], pg_log[256], pg_db[64];
static bool is_pg;      /* the store under test is PostgreSQL */
static long long marks; /* sentinel rows written (PostgreSQL) */

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS bookings (id bigint PRIMARY KEY, property text, "
	"status text NOT NULL, owner text NOT NULL, amount bigint, price double precision, "
	"nights integer, starts bigint);\n"
	"ALTER TABLE bookings ENABLE ROW LEVEL SECURITY;\n"
	"CREATE POLICY own ON bookings FOR SELECT TO authenticated USING (owner = (auth.jwt() ->> 'sub'));\n"
	"CREATE POLICY open ON bookings FOR SELECT TO authenticated USING (status = 'open');\n"
	"CREATE POLICY anon_none ON bookings FOR SELECT TO anon USING (false);\n"
	"CREATE POLICY mine ON bookings FOR SELECT TO member USING (owner = (auth.jwt() ->> 'sub'));\n";

static const char pg_schema[] =
	"CREATE TABLE IF NOT EXISTS bookings (id bigint PRIMARY KEY, property text, "
	"status text NOT NULL, owner text NOT NULL, amount bigint, price double precision, "
	"nights integer, starts bigint);"
	"ALTER TABLE bookings REPLICA IDENTITY FULL;"
	"ALTER TABLE bookings ENABLE ROW LEVEL SECURITY;"
	"DROP POLICY IF EXISTS own ON bookings;"
	"CREATE POLICY own ON bookings FOR SELECT TO authenticated USING (owner = (auth.jwt() ->> 'sub'));"
	"DROP POLICY IF EXISTS open ON bookings;"
	"CREATE POLICY open ON bookings FOR SELECT TO authenticated USING (status = 'open');"
	"DROP POLICY IF EXISTS anon_none ON bookings;"
	"CREATE POLICY anon_none ON bookings FOR SELECT TO anon USING (false);"
	"CREATE TABLE IF NOT EXISTS marks (id bigint PRIMARY KEY);";

/* Fifty definitions: windows (filters, order, limit, offset, select) and
 * aggregates (groups, count, sum, avg, min, max). */
static const char *const defs[] = {
	"order=starts.desc&limit=5",
	"order=starts.asc&limit=3&offset=2",
	"status=eq.open&order=amount.desc&limit=4",
	"status=in.(open,held)&order=price.asc.nullsfirst&limit=6",
	"select=id,amount&amount=gt.50&order=amount.asc,id.desc&limit=7",
	"property=eq.p1",
	"property=is.null&order=starts.desc.nullslast",
	"or=(amount.lt.20,nights.gt.5)&order=nights.desc&limit=5&offset=1",
	"select=id,status,price&price=gte.10.5&order=price.desc&limit=2",
	"order=owner.asc,starts.asc&limit=10",
	"nights=not.is.null&order=nights.asc,amount.desc&limit=8",
	"status=neq.closed&amount=lte.60&order=id.desc&limit=1",
	"order=property.desc.nullsfirst,id&limit=9&offset=4",
	"starts=gt.500&order=starts&limit=12",
	"select=id&limit=3",
	"owner=eq.u1",
	"status=like.o*&order=price.desc.nullslast&limit=5",
	"and=(amount.gte.30,amount.lte.70)&order=amount&limit=3",
	"order=price.desc&limit=1&offset=0",
	"property=in.(p2,p3)&order=starts.desc&limit=4&offset=3",
	"not.and=(status.eq.open,nights.gt.3)&order=nights.asc.nullsfirst&limit=6",
	"order=amount.desc.nullslast&limit=15",
	"select=id,owner,starts&status=eq.held&order=starts.asc&limit=5",
	"amount=is.null",
	"order=nights.desc.nullsfirst,price.asc.nullslast&limit=5&offset=5",
	"select=count()",
	"select=property,count()",
	"select=status,amount.sum(),count()",
	"select=property,status,n:count(),total:amount.sum()",
	"select=owner,lo:amount.min(),hi:amount.max()",
	"select=property,a:price.avg(),s:price.sum()",
	"select=status,nights.avg()&property=not.is.null",
	"select=property,first:starts.min(),last:starts.max(),count()&status=eq.open",
	"select=a:amount.sum(),nights.sum(),price.max()",
	"select=nights,count()&order=nights.desc.nullsfirst",
	"select=property,k:amount.count(),count()&order=property.desc",
	"select=status,lo:price.min(),hi:price.max(),m:nights.min()",
	"select=owner,status,amount.avg()&amount=gt.10",
	"select=property,amount.max()&or=(status.eq.held,nights.lt.3)",
	"select=count(),amount.min()&property=eq.p1",
	"select=starts.max(),starts.min(),count()&nights=is.null",
	"select=property,owner,count()&order=owner,property.desc",
	"select=status,total:price.sum()&price=lt.40",
	"select=owner,nights.max(),nights.min(),nights.sum()",
	"select=property,status,amount.min(),amount.max(),amount.sum(),amount.avg(),count()",
	"select=id,status&or=(property.eq.p1,and(amount.gt.40,nights.gte.2))&order=id&limit=6",
	"select=id,amount,price&order=amount.asc.nullsfirst,price.desc&limit=10&offset=7",
	"status=eq.closed&order=starts.desc&limit=30",
	"select=property,hi:price.max()&status=neq.open",
	"select=id,nights&nights=in.(1,2,3)&order=nights.desc,id&limit=4",
	/* several eq conjuncts, numbers (the change index) */
	"status=eq.open&property=eq.p2&order=starts.desc&limit=3",
	"select=property,count(),starts.max()&status=eq.held&owner=eq.u2",
	"price=eq.10.5&order=id",
	"select=status,count(),amount.min()&and=(nights.eq.3,owner.eq.u1)",
	"select=id,amount&amount=eq.50&status=neq.closed&order=id&limit=5",
};
#define N_DEFS (sizeof defs / sizeof defs[0])
#define N_WHO 3

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/rtsync-test-live-XXXXXX");
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

static struct rt_store *open_store(void)
{
	struct rt_store *s = NULL;
	char err[1024];
	if (is_pg) {
		struct rt_store_pg_config cfg = {.conninfo = pg_url, .schema_sql = pg_schema,
						 .log_path = pg_log, .name = pg_db, .pool_size = 2,
						 .retain_count = 1000000, .retain_ms = 3600000};
		if (rt_store_open_postgres(&cfg, &s, err, sizeof err))
			fail_msg("open: %s", err);
		return s;
	}
	unlink(db_path);
	if (rt_store_open_sqlite(db_path, schema, 1000000, 3600000, &s, err, sizeof err))
		fail_msg("open: %s", err);
	return s;
}

static const struct rt_store_table *bookings(struct rt_store *s)
{
	const struct rt_store_table *t = rt_store_table(s, NULL, "bookings");
	assert_non_null(t);
	return t;
}

static void pg_sql(const char *db, const char *q)
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

static int pg_setup(void **state)
{
	const char *base = getenv("RTSYNC_TEST_POSTGRES");
	if (!base || !*base)
		return 0;
	snprintf(pg_db, sizeof pg_db, "rt_live_%d", (int)getpid());
	char q[128];
	snprintf(q, sizeof q, "CREATE DATABASE %s", pg_db);
	pg_sql("postgres", q);
	snprintf(pg_url, sizeof pg_url, "%s/%s", base, pg_db);
	snprintf(pg_log, sizeof pg_log, "/tmp/%s.db", pg_db);
	return 0;
}

static int pg_teardown(void **state)
{
	if (!*pg_url)
		return 0;
	char q[160];
	snprintf(q, sizeof q, "SELECT pg_drop_replication_slot('%s')", pg_db);
	pg_sql(pg_db, q);
	snprintf(q, sizeof q, "DROP DATABASE %s", pg_db);
	pg_sql("postgres", q);
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		char p[300];
		snprintf(p, sizeof p, "%s%s", pg_log, sfx[i]);
		unlink(p);
	}
	return 0;
}

/* ---- writes ---- */

static json_t *random_row(long long id)
{
	static const char *const props[] = {"p1", "p2", "p3", "p4"};
	static const char *const stats[] = {"open", "held", "closed"};
	static const char *const owners[] = {"u1", "u2", "u3"};
	json_t *r = json_object();
	json_object_set_new(r, "id", json_integer(id));
	unsigned p = rng_next() % 5;
	json_object_set_new(r, "property", p == 4 ? json_null() : json_string(props[p]));
	json_object_set_new(r, "status", json_string(stats[rng_next() % 3]));
	json_object_set_new(r, "owner", json_string(owners[rng_next() % 3]));
	json_object_set_new(r, "amount",
			    rng_next() % 8 ? json_integer(rng_next() % 100) : json_null());
	json_object_set_new(r, "price", rng_next() % 6
						? json_real((double)(rng_next() % 2000) / 20.0)
						: json_null());
	json_object_set_new(r, "nights", rng_next() % 5 ? json_integer(rng_next() % 8) : json_null());
	json_object_set_new(r, "starts",
			    rng_next() % 7 ? json_integer(rng_next() % 1000) : json_null());
	return r;
}

static void write_one(struct rt_store *s, long long *next_id, long long *live, size_t *n_live)
{
	const struct rt_store_table *t = bookings(s);
	unsigned what = rng_next() % 10;
	struct rt_store_error e = {0};
	json_t *rows = NULL;
	if (what < 4 || *n_live < 5) {
		json_t *arr = json_array();
		json_array_append_new(arr, random_row(*next_id));
		struct rt_write w = {.kind = RT_WRITE_INSERT, .table = t, .rows = arr};
		if (rt_store_write(s, &w, &rows, &e))
			fail_msg("insert: %s", e.message);
		json_decref(arr);
		live[(*n_live)++] = (*next_id)++;
		return;
	}
	size_t k = rng_next() % *n_live;
	char f[64];
	snprintf(f, sizeof f, "id=eq.%lld", live[k]);
	struct rt_query q;
	assert_int_equal(rt_query_parse(f, strlen(f), &q, NULL, 0), 0);
	if (what < 8) {
		json_t *row = random_row(live[k]);
		json_object_del(row, "id");
		if (rng_next() % 2) { /* some columns only */
			json_object_del(row, "owner");
			json_object_del(row, "price");
		}
		struct rt_write w = {.kind = RT_WRITE_UPDATE, .table = t, .rows = row, .where = &q};
		if (rt_store_write(s, &w, &rows, &e))
			fail_msg("update: %s", e.message);
		json_decref(row);
	} else {
		struct rt_write w = {.kind = RT_WRITE_DELETE, .table = t, .where = &q};
		if (rt_store_write(s, &w, &rows, &e))
			fail_msg("delete: %s", e.message);
		live[k] = live[--(*n_live)];
	}
	rt_query_deinit(&q);
	json_decref(rows);
}

/* Hands the changes after *pos to l, as the change thread would. With
 * PostgreSQL the changes arrive by replication: a sentinel row written after
 * the others says when every earlier one is in the log. */
static void feed(struct rt_store *s, struct rt_live *l, uint64_t *pos)
{
	if (is_pg) {
		json_t *arr = json_pack("[{s:I}]", "id", (json_int_t)++marks);
		struct rt_write w = {.kind = RT_WRITE_INSERT, .table = rt_store_table(s, NULL, "marks"),
				     .rows = arr};
		struct rt_store_error e;
		json_t *rows = NULL;
		if (rt_store_write(s, &w, &rows, &e))
			fail_msg("mark: %s", e.message);
		json_decref(rows);
		json_decref(arr);
		for (int waited = 0;; waited++) {
			struct rt_change *chs;
			size_t n;
			struct rt_store_scan scan;
			assert_int_equal(rt_store_changes_after(s, *pos, 512, &chs, &n, NULL, &scan), 0);
			bool is_seen = false;
			for (size_t i = 0; i < n; i++)
				is_seen |= !strcmp(chs[i].table->name, "marks") &&
					   json_integer_value(json_object_get(chs[i].record, "id")) == marks;
			rt_live_apply(l, chs, n, scan.last_pos);
			rt_store_changes_free(chs, n);
			*pos = scan.last_pos;
			if (is_seen)
				break;
			if (waited > 10000)
				fail_msg("the sentinel change never arrived");
			if (!n)
				usleep(1000);
		}
		rt_live_tick(l, *pos);
		return;
	}
	for (;;) {
		struct rt_change *chs;
		size_t n;
		struct rt_store_scan scan;
		assert_int_equal(rt_store_changes_after(s, *pos, 512, &chs, &n, NULL, &scan), 0);
		rt_live_apply(l, chs, n, scan.last_pos);
		rt_store_changes_free(chs, n);
		*pos = scan.last_pos;
		if (scan.n_rows < 512)
			break;
	}
	rt_live_tick(l, *pos);
}

/* ---- references ---- */

/* Numbers compared with a tolerance (float sums differ in their last bits). */
static bool same_json(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b)) {
		double x = json_number_value(a), y = json_number_value(b);
		return fabs(x - y) <= 1e-9 * (fabs(x) + fabs(y) + 1);
	}
	if (json_is_object(a) && json_is_object(b)) {
		if (json_object_size(a) != json_object_size(b))
			return false;
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)a, k, v) {
			if (!same_json(v, json_object_get(b, k)))
				return false;
		}
		return true;
	}
	return json_equal(a, b);
}

/* The query run from scratch by the store: windows ordered with the primary
 * key as the last key, as a live query orders them. */
static json_t *reference(struct rt_store *s, const char *def, const struct rt_auth *who)
{
	char qs[512];
	bool is_agg = strstr(def, "()") != NULL;
	const char *ord = strstr(def, "order=");
	if (is_agg || (ord && strstr(ord, ",id")) || (ord && !strncmp(ord, "order=id", 8)))
		snprintf(qs, sizeof qs, "%s", def);
	else if (ord) { /* append ,id to the order parameter */
		const char *end = strchr(ord, '&');
		size_t n = end ? (size_t)(end - def) : strlen(def);
		snprintf(qs, sizeof qs, "%.*s,id%s", (int)n, def, end ? end : "");
	} else {
		snprintf(qs, sizeof qs, "%s&order=id", def);
	}
	struct rt_query q;
	char err[256];
	if (rt_query_parse(qs, strlen(qs), &q, err, sizeof err))
		fail_msg("reference %s: %s", qs, err);
	struct rt_read r = {.table = bookings(s), .query = &q, .who = who};
	json_t *rows = NULL;
	struct rt_store_error e = {0};
	if (rt_store_read(s, &r, &rows, NULL, &e))
		fail_msg("reference %s: %s %s", qs, e.code, e.message);
	rt_query_deinit(&q);
	return rows;
}

/* Rows of a result in the reference's order: aggregates sorted by their
 * keys' order as the live result gives them is compared as a set. */
static void check_rows(const char *def, const json_t *got, const json_t *want, bool is_agg,
		       const char *who)
{
	if (json_array_size(got) != json_array_size(want)) {
		char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
		fail_msg("%s as %s: %zu rows, want %zu\n got  %s\n want %s", def, who,
			 json_array_size(got), json_array_size(want), g, w);
	}
	for (size_t i = 0; i < json_array_size(got); i++) {
		const json_t *g = json_array_get(got, i);
		bool ok = false;
		if (!is_agg || strstr(def, "order="))
			ok = same_json(g, json_array_get(want, i));
		else
			for (size_t k = 0; k < json_array_size(want) && !ok; k++)
				ok = same_json(g, json_array_get(want, k));
		if (!ok) {
			char *a = json_dumps(got, JSON_COMPACT), *b = json_dumps(want, JSON_COMPACT);
			fail_msg("%s as %s: row %zu differs\n got  %s\n want %s", def, who, i, a, b);
		}
	}
}

/* ---- a client's copy ---- */

struct copy {
	json_t *keys, *rows;
	uint64_t pos;
};

static long find_key(const json_t *keys, const char *k)
{
	for (size_t i = 0; i < json_array_size(keys); i++)
		if (!strcmp(json_string_value(json_array_get(keys, i)), k))
			return (long)i;
	return -1;
}

/* Applies ops as docs/live.md says a client does. */
static void apply_ops(struct copy *c, const json_t *ops)
{
	size_t i;
	json_t *op;
	json_array_foreach(ops, i, op) {
		const char *o = json_string_value(json_object_get(op, "op"));
		if (strcmp(o, "leave") && strcmp(o, "move"))
			continue;
		long at = find_key(c->keys, json_string_value(json_object_get(op, "key")));
		if (at < 0)
			fail_msg("%s of a key the copy lacks", o);
		json_array_remove(c->keys, (size_t)at);
		json_array_remove(c->rows, (size_t)at);
	}
	long last = -1;
	json_array_foreach(ops, i, op) {
		const char *o = json_string_value(json_object_get(op, "op"));
		if (strcmp(o, "enter") && strcmp(o, "move"))
			continue;
		long at = (long)json_integer_value(json_object_get(op, "index"));
		assert_true(at > last); /* ascending */
		last = at;
		assert_true((size_t)at <= json_array_size(c->keys));
		json_array_insert(c->keys, (size_t)at, json_object_get(op, "key"));
		json_array_insert(c->rows, (size_t)at, json_object_get(op, "row"));
	}
	json_array_foreach(ops, i, op) {
		if (strcmp(json_string_value(json_object_get(op, "op")), "change"))
			continue;
		long at = find_key(c->keys, json_string_value(json_object_get(op, "key")));
		if (at < 0)
			fail_msg("change of a key the copy lacks");
		json_array_set(c->rows, (size_t)at, json_object_get(op, "row"));
	}
}

static void copy_set(struct copy *c, const json_t *result, uint64_t pos)
{
	json_decref(c->keys);
	json_decref(c->rows);
	c->keys = json_deep_copy(json_object_get(result, "keys"));
	c->rows = json_deep_copy(json_object_get(result, "rows"));
	c->pos = pos;
}

static void copy_check(struct copy *c, struct rt_live_query *q, const json_t *result,
		       const char *def)
{
	json_t *d = rt_live_diff(q, c->pos);
	if (!d)
		fail_msg("%s: no diff from %llu (at %llu)", def, (unsigned long long)c->pos,
			 (unsigned long long)rt_live_position(q));
	apply_ops(c, json_object_get(d, "ops"));
	json_decref(d);
	if (!json_equal(c->keys, json_object_get(result, "keys")) ||
	    !json_equal(c->rows, json_object_get(result, "rows"))) {
		char *a = json_dumps(c->rows, JSON_COMPACT);
		char *b = json_dumps(json_object_get(result, "rows"), JSON_COMPACT);
		fail_msg("%s: the copy from %llu differs\n copy   %s\n result %s", def,
			 (unsigned long long)c->pos, a, b);
	}
	c->pos = rt_live_position(q);
}

static struct rt_live_def *def_of(struct rt_store *s, const char *id, const char *query,
				  char *err, size_t cap)
{
	json_t *e = json_pack("{s:s,s:s,s:s}", "id", id, "table", "bookings", "query", query);
	struct rt_live_def *d = rt_live_def_parse(s, e, err, cap);
	json_decref(e);
	return d;
}

/* ---- tests ---- */

static void random_writes(int steps)
{
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, NULL);
	rng_seed(20261207);
	long long next_id = 1, live_ids[4096];
	size_t n_live = 0;
	uint64_t pos = rt_store_last_pos(s);
	for (int i = 0; i < 60; i++)
		write_one(s, &next_id, live_ids, &n_live);
	feed(s, l, &pos);

	json_t *c1 = json_pack("{s:s,s:s}", "sub", "u1", "role", "authenticated");
	json_t *c2 = json_pack("{s:s,s:s}", "sub", "u2", "role", "authenticated");
	const struct rt_auth who[N_WHO] = {{.role = "authenticated", .claims = c1},
					   {.role = "authenticated", .claims = c2},
					   {.role = "service_role"}};
	const char *who_name[N_WHO] = {"u1", "u2", "service_role"};
	struct rt_live_query *q[N_DEFS][N_WHO];
	struct copy near[N_DEFS][N_WHO], far[N_DEFS][N_WHO];
	memset(near, 0, sizeof near);
	memset(far, 0, sizeof far);
	for (size_t d = 0; d < N_DEFS; d++)
		for (size_t w = 0; w < N_WHO; w++) {
			char err[512];
			struct rt_live_def *def = def_of(s, "q", defs[d], err, sizeof err);
			if (!def)
				fail_msg("%s: %s", defs[d], err);
			q[d][w] = rt_live_open(l, def, &who[w], err, sizeof err);
			if (!q[d][w])
				fail_msg("%s: %s", defs[d], err);
			json_t *r = rt_live_result(q[d][w]);
			copy_set(&near[d][w], r, rt_live_position(q[d][w]));
			copy_set(&far[d][w], r, rt_live_position(q[d][w]));
			json_decref(r);
		}
	size_t n_queries;
	rt_live_stats(l, &n_queries, NULL, NULL);
	assert_int_equal(n_queries, N_DEFS * N_WHO);

	for (int step = 0; step < steps; step++) {
		int n = rng_next() % 4 ? 1 + rng_next() % 3 : 1 + rng_next() % 25;
		for (int i = 0; i < n; i++)
			write_one(s, &next_id, live_ids, &n_live);
		feed(s, l, &pos);
		for (size_t d = 0; d < N_DEFS; d++)
			for (size_t w = 0; w < N_WHO; w++) {
				struct rt_live_query *lq = q[d][w];
				if (rt_live_error(lq))
					fail_msg("%s: %s", defs[d], rt_live_error(lq));
				assert_int_equal(rt_live_position(lq), pos);
				json_t *r = rt_live_result(lq);
				json_t *want = reference(s, defs[d], &who[w]);
				check_rows(defs[d], json_object_get(r, "rows"), want,
					   strstr(defs[d], "()") != NULL, who_name[w]);
				copy_check(&near[d][w], lq, r, defs[d]);
				if (step % 17 == 16)
					copy_check(&far[d][w], lq, r, defs[d]);
				json_decref(want);
				json_decref(r);
			}
	}
	uint64_t applied;
	rt_live_stats(l, &n_queries, NULL, &applied);
	assert_int_equal(n_queries, N_DEFS * N_WHO);
	assert_true(applied > 0);
	for (size_t d = 0; d < N_DEFS; d++)
		for (size_t w = 0; w < N_WHO; w++) {
			rt_live_close(l, q[d][w]);
			json_decref(near[d][w].keys);
			json_decref(near[d][w].rows);
			json_decref(far[d][w].keys);
			json_decref(far[d][w].rows);
		}
	rt_live_stats(l, &n_queries, NULL, NULL);
	assert_int_equal(n_queries, 0);
	json_decref(c1);
	json_decref(c2);
	rt_live_free(l);
	rt_store_close(s);
}

static void test_random_writes(void **state)
{
	random_writes(400);
}

/* The same on PostgreSQL (types, ordering, sums and policies as the
 * database has them; changes by logical replication). */
static void test_random_writes_postgres(void **state)
{
	if (!*pg_url)
		skip();
	is_pg = true;
	random_writes(120);
	is_pg = false;
}

/* A writer on a connection of its own, inserting rows one transaction at a
 * time until told to stop. */
struct writer {
	atomic_bool is_stopping;
	long long next_id, n_written;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	PGconn *c = PQconnectdb(pg_url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	while (!atomic_load(&w->is_stopping)) {
		char q[200];
		snprintf(q, sizeof q,
			 "INSERT INTO bookings (id, property, status, owner, amount) "
			 "VALUES (%lld, 'p1', 'open', 'u1', 1)",
			 w->next_id++);
		PGresult *r = PQexec(c, q);
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
		w->n_written++;
	}
	PQfinish(c);
	return NULL;
}

/* PostgreSQL: first reads of aggregates while commits go on. A change the
 * read already counts may reach the log after the read's position (the
 * replication runs behind the database); the read's snapshot tells, so no
 * change is counted twice or missed. */
static void test_first_reads_while_writing_postgres(void **state)
{
	if (!*pg_url)
		skip();
	is_pg = true;
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, NULL);
	uint64_t pos = rt_store_last_pos(s);
	pg_sql(pg_db, "INSERT INTO bookings (id, property, status, owner, amount) "
		      "SELECT g, 'p' || (g % 4), 'open', 'u1', g % 10 FROM generate_series(500001, 520000) g");
	feed(s, l, &pos);
	struct writer w = {.next_id = 1000000};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
	enum { N_Q = 40 };
	struct rt_live_query *q[N_Q];
	char qs[N_Q][96];
	const struct rt_auth service = {.role = "service_role"};
	for (int i = 0; i < N_Q; i++) {
		char err[256];
		snprintf(qs[i], sizeof qs[i], "select=property,count(),amount.sum()&id=gt.%d", i);
		usleep(2000); /* let commits pile up in the replication's way */
		q[i] = rt_live_open(l, def_of(s, "q", qs[i], err, sizeof err), &service, err,
				    sizeof err);
		if (!q[i])
			fail_msg("%s: %s", qs[i], err);
	}
	atomic_store(&w.is_stopping, true);
	pthread_join(th, NULL);
	assert_true(w.n_written > 0);
	feed(s, l, &pos);
	for (int i = 0; i < N_Q; i++) {
		json_t *r = rt_live_result(q[i]);
		json_t *want = reference(s, qs[i], &service);
		check_rows(qs[i], json_object_get(r, "rows"), want, true, "service_role");
		json_decref(want);
		json_decref(r);
		rt_live_close(l, q[i]);
	}
	rt_live_free(l);
	rt_store_close(s);
	pg_sql(pg_db, "TRUNCATE bookings");
	is_pg = false;
}

static size_t n_filler;

static void filler_deliver(struct rt_sub *sub, struct rt_msg *m)
{
	n_filler++;
}

/* Fills worker 0's inbox with n messages nobody reads yet. */
static void back_up(struct fixture *fx, int n)
{
	for (int i = 0; i < n; i++) {
		struct rt_msg *m = rt_msg_new(RT_MSG_LIVE, "filler");
		rt_hub_publish_any(fx->hub, m);
		rt_msg_unref(m);
	}
}

/* While a worker is behind, a due message waits and the next changes fold
 * into it; once the backlog is gone, or after FOLD_MAX_MS, it goes out. A
 * first result never waits. */
static void test_folding_under_backlog(void **state)
{
	struct fixture fx;
	fx_setup(&fx, 1);
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, fx.hub);
	struct rec r;
	rec_init(&r, "live");
	rt_hub_subscribe(fx.l[0], "lk", &r.sub);
	struct rt_sub filler = {.deliver = filler_deliver};
	rt_hub_subscribe(fx.l[0], "filler", &filler);
	n_filler = 0;
	const struct rt_auth svc = {.role = "service_role"};
	struct rt_live_opts o = {0};
	back_up(&fx, 300);
	struct rt_live_sub *sub = rt_live_sub_new(l, "lk", "realtime:t", RT_PHX_V2, &svc, &o, 0);
	json_t *qs = json_pack("[{s:s,s:s,s:s}]", "id", "w", "table", "bookings", "query",
			       "order=id&limit=50");
	rt_live_sub_add(l, sub, qs);
	json_decref(qs);
	uint64_t pos = rt_store_last_pos(s);
	feed(s, l, &pos);
	rt_hub_drain(fx.l[0]);
	assert_int_equal(n_filler, 300);
	assert_int_equal(r.n, 1); /* the result, despite the backlog */
	assert_null(r.msgs[0]->v1); /* the channel's version only */
	assert_non_null(r.msgs[0]->v2);

	long long next_id = 1, ids[64];
	size_t n = 0;
	rng_seed(11);
	uint64_t folded0 = atomic_load(&rt_metrics_live_folded);
	back_up(&fx, 300);
	usleep((RT_LIVE_FOLD_MS + 5) * 1000); /* past the default window: due, but held */
	for (int i = 0; i < 3; i++) { /* three batches while the worker is behind */
		write_one(s, &next_id, ids, &n);
		feed(s, l, &pos);
	}
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r.n, 1); /* waited */
	assert_true(atomic_load(&rt_metrics_live_folded) > folded0);
	usleep((RT_LIVE_FOLD_MS + 5) * 1000); /* past the default window too */
	rt_live_tick(l, pos); /* no backlog now: one message for the three */
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r.n, 2);

	/* a backlog that stays: the message goes out after FOLD_MAX_MS */
	back_up(&fx, 300);
	write_one(s, &next_id, ids, &n);
	feed(s, l, &pos);
	usleep(120 * 1000);
	rt_live_tick(l, pos);
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r.n, 3);

	rec_clear(&r);
	rt_live_sub_free(l, sub);
	rt_live_free(l);
	rt_store_close(s);
	rt_hub_unsubscribe(fx.l[0], &r.sub);
	rt_hub_unsubscribe(fx.l[0], &filler);
	fx_teardown(&fx);
}

/* Without delivery options a channel gets at most one message per
 * RT_LIVE_FOLD_MS: batches inside the window fold into one message at its
 * end; the first change after a quiet window goes at once. */
static void test_default_fold(void **state)
{
	struct fixture fx;
	fx_setup(&fx, 1);
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, fx.hub);
	struct rec r;
	rec_init(&r, "live");
	rt_hub_subscribe(fx.l[0], "lk", &r.sub);
	const struct rt_auth svc = {.role = "service_role"};
	struct rt_live_opts o = {0};
	struct rt_live_sub *sub = rt_live_sub_new(l, "lk", "realtime:t", RT_PHX_V2, &svc, &o, 0);
	json_t *qs = json_pack("[{s:s,s:s,s:s}]", "id", "w", "table", "bookings", "query",
			       "order=id&limit=50");
	rt_live_sub_add(l, sub, qs);
	json_decref(qs);
	uint64_t pos = rt_store_last_pos(s);
	feed(s, l, &pos);
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r.n, 1); /* the result at once */

	long long next_id = 1, ids[64];
	size_t n = 0;
	rng_seed(12);
	for (int i = 0; i < 3; i++) { /* three batches inside the window */
		write_one(s, &next_id, ids, &n);
		feed(s, l, &pos);
	}
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r.n, 1);
	usleep((RT_LIVE_FOLD_MS + 5) * 1000);
	rt_live_tick(l, pos);
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r.n, 2); /* one message for the three */
	size_t len;
	const uint8_t *text = fx_frame_payload(r.msgs[1]->v2, &len);
	json_t *msg = json_loadb((const char *)text, len, 0, NULL);
	assert_non_null(msg); /* [join_ref, ref, topic, "live_query", payload] */
	json_t *q0 = json_array_get(json_object_get(json_array_get(msg, 4), "queries"), 0);
	assert_string_equal(json_string_value(json_object_get(q0, "kind")), "diff");
	assert_int_equal(json_array_size(json_object_get(q0, "ops")), 3); /* three inserts */
	json_decref(msg);

	usleep((RT_LIVE_FOLD_MS + 5) * 1000); /* quiet for a window: the next goes at once */
	write_one(s, &next_id, ids, &n);
	feed(s, l, &pos);
	rt_hub_drain(fx.l[0]);
	assert_int_equal(r.n, 3);

	rec_clear(&r);
	rt_live_sub_free(l, sub);
	rt_live_free(l);
	rt_store_close(s);
	rt_hub_unsubscribe(fx.l[0], &r.sub);
	fx_teardown(&fx);
}

/* Many opens of one definition under one visibility share one maintained
 * query: a change is applied once. Another visibility is another query. */
static void test_sharing(void **state)
{
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, NULL);
	json_t *c1 = json_pack("{s:s}", "sub", "u1");
	json_t *c2 = json_pack("{s:s}", "sub", "u2");
	struct rt_auth a1 = {.role = "authenticated", .claims = c1};
	struct rt_auth a2 = {.role = "authenticated", .claims = c2};
	struct rt_live_query *q[1000];
	char err[256];
	for (int i = 0; i < 1000; i++) {
		q[i] = rt_live_open(l, def_of(s, "q", "order=starts.desc&limit=5", err, sizeof err),
				    &a1, err, sizeof err);
		assert_non_null(q[i]);
		assert_ptr_equal(q[i], q[0]);
	}
	struct rt_live_query *other =
		rt_live_open(l, def_of(s, "q", "order=starts.desc&limit=5", err, sizeof err), &a2,
			     err, sizeof err);
	assert_ptr_not_equal(other, q[0]);
	size_t n_queries;
	uint64_t applied;
	rt_live_stats(l, &n_queries, NULL, NULL);
	assert_int_equal(n_queries, 2);
	uint64_t pos = rt_store_last_pos(s);
	long long next_id = 1, ids[64];
	size_t n = 0;
	rng_seed(7);
	for (int i = 0; i < 10; i++)
		write_one(s, &next_id, ids, &n);
	feed(s, l, &pos);
	rt_live_stats(l, NULL, NULL, &applied);
	assert_int_equal(applied, 20); /* 10 changes, 2 queries */
	for (int i = 0; i < 1000; i++)
		rt_live_close(l, q[i]);
	rt_live_close(l, other);
	json_decref(c1);
	json_decref(c2);
	rt_live_free(l);
	rt_store_close(s);
}

static void test_definition_errors(void **state)
{
	struct rt_store *s = open_store();
	static const struct {
		const char *query, *want;
	} cases[] = {
		{"select=nope", "42703: column bookings.nope does not exist"},
		{"order=nope", "42703"},
		{"nope=eq.1", "42703"},
		{"select=status.sum()", "42883: function sum(text) does not exist"},
		{"select=status,count()&order=amount", "only group columns"},
		{"select=status,count()&limit=3", "limit and offset"},
		{"select=*,count()", "cannot be grouped"},
		{"select=sum(),sum()", "PGRST100"},
		{"limit=20000", "RTS413"},
		{"order=amount.sideways", "PGRST100"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[256] = "";
		struct rt_live_def *d = def_of(s, "q", cases[i].query, err, sizeof err);
		if (d)
			fail_msg("%s: accepted", cases[i].query);
		if (!strstr(err, cases[i].want))
			fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].query, err, cases[i].want);
	}
	char err[256];
	json_t *e = json_pack("{s:s,s:s}", "id", "q", "table", "nope");
	assert_null(rt_live_def_parse(s, e, err, sizeof err));
	assert_non_null(strstr(err, "PGRST205"));
	json_decref(e);
	e = json_pack("{s:s,s:i}", "id", "q", "table", 5);
	assert_null(rt_live_def_parse(s, e, err, sizeof err));
	json_decref(e);
	e = json_pack("{s:s,s:s}", "id", "", "table", "bookings");
	assert_null(rt_live_def_parse(s, e, err, sizeof err));
	json_decref(e);
	struct rt_live_opts o;
	json_t *opts = json_pack("{s:i}", "throttle_ms", 70000);
	assert_int_equal(rt_live_opts_parse(opts, &o, err, sizeof err), -1);
	json_decref(opts);
	opts = json_pack("{s:i,s:i}", "throttle_ms", 10, "debounce_ms", 10);
	assert_int_equal(rt_live_opts_parse(opts, &o, err, sizeof err), -1);
	json_decref(opts);
	opts = json_pack("{s:i}", "debounce_ms", 100);
	assert_int_equal(rt_live_opts_parse(opts, &o, err, sizeof err), 0);
	assert_int_equal(o.max_wait_ms, 400);
	json_decref(opts);
	rt_store_close(s);
}

/* A window whose reserve runs dry reads the store again, and a history
 * too short for an old position says so (NULL diff). */
static void test_reserve_and_history(void **state)
{
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, NULL);
	struct rt_auth svc = {.role = "service_role"};
	long long next_id = 1, ids[4096];
	size_t n = 0;
	rng_seed(99);
	for (int i = 0; i < 200; i++)
		write_one(s, &next_id, ids, &n);
	uint64_t pos = rt_store_last_pos(s);
	char err[256];
	struct rt_live_query *q =
		rt_live_open(l, def_of(s, "q", "order=id.asc&limit=3", err, sizeof err), &svc, err,
			     sizeof err);
	assert_non_null(q);
	uint64_t start = rt_live_position(q);
	/* delete the smallest ids one by one: the window empties its reserve */
	const struct rt_store_table *t = bookings(s);
	for (int k = 0; k < 40; k++) {
		json_t *r = rt_live_result(q);
		const json_t *first = json_array_get(json_object_get(r, "rows"), 0);
		char f[64];
		snprintf(f, sizeof f, "id=eq.%lld",
			 (long long)json_integer_value(json_object_get(first, "id")));
		json_decref(r);
		struct rt_query wq;
		assert_int_equal(rt_query_parse(f, strlen(f), &wq, NULL, 0), 0);
		struct rt_write w = {.kind = RT_WRITE_DELETE, .table = t, .where = &wq};
		struct rt_store_error e;
		json_t *rows = NULL;
		assert_int_equal(rt_store_write(s, &w, &rows, &e), 0);
		json_decref(rows);
		rt_query_deinit(&wq);
		feed(s, l, &pos);
		r = rt_live_result(q);
		json_t *want = reference(s, "order=id.asc&limit=3", &svc);
		check_rows("reserve", json_object_get(r, "rows"), want, false, "service_role");
		json_decref(want);
		json_decref(r);
	}
	json_t *d = rt_live_diff(q, start);
	assert_non_null(d);
	json_decref(d);
	assert_null(rt_live_diff(q, start - 1)); /* before the query's first read */
	rt_live_close(l, q);
	rt_live_free(l);
	rt_store_close(s);
}

/* A window skips the changes of rows its filter does not select, and still
 * lets a held row go when it leaves the filter or is deleted, also when the
 * old row carries only its key (PostgreSQL without REPLICA IDENTITY FULL). */
static void test_window_filter_changes(void **state)
{
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, NULL);
	struct rt_auth svc = {.role = "service_role"};
	const struct rt_store_table *t = bookings(s);
	char err[256];
	struct rt_live_query *q = rt_live_open(
		l, def_of(s, "q", "select=id&status=eq.open&order=id&limit=5", err, sizeof err), &svc,
		err, sizeof err);
	assert_non_null(q);
	uint64_t pos = rt_live_position(q);
	struct {
		enum rt_change_type type;
		const char *record, *old; /* JSON or NULL */
		const char *want;         /* the ids of the result after it */
	} steps[] = {
		{RT_CHANGE_INSERT, "{\"id\":1,\"status\":\"open\",\"owner\":\"u1\"}", NULL, "[1]"},
		{RT_CHANGE_INSERT, "{\"id\":2,\"status\":\"held\",\"owner\":\"u1\"}", NULL, "[1]"},
		{RT_CHANGE_INSERT, "{\"id\":3,\"status\":\"open\",\"owner\":\"u1\"}", NULL, "[1,3]"},
		/* a row outside the filter changes, stays outside */
		{RT_CHANGE_UPDATE, "{\"id\":2,\"status\":\"closed\",\"owner\":\"u2\"}",
		 "{\"id\":2,\"status\":\"held\",\"owner\":\"u1\"}", "[1,3]"},
		/* enters the filter */
		{RT_CHANGE_UPDATE, "{\"id\":2,\"status\":\"open\",\"owner\":\"u2\"}",
		 "{\"id\":2,\"status\":\"closed\",\"owner\":\"u2\"}", "[1,2,3]"},
		/* leaves it: its new row does not match, its old row does */
		{RT_CHANGE_UPDATE, "{\"id\":1,\"status\":\"held\",\"owner\":\"u1\"}",
		 "{\"id\":1,\"status\":\"open\",\"owner\":\"u1\"}", "[2,3]"},
		/* leaves it with only the key as old row */
		{RT_CHANGE_UPDATE, "{\"id\":2,\"status\":\"held\",\"owner\":\"u2\"}", "{\"id\":2}",
		 "[3]"},
		/* deleted, key only */
		{RT_CHANGE_DELETE, NULL, "{\"id\":3}", "[]"},
		/* deleted outside the filter */
		{RT_CHANGE_DELETE, NULL, "{\"id\":1,\"status\":\"held\",\"owner\":\"u1\"}", "[]"},
	};
	size_t n_cols = t->n_cols;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		struct rt_change ch = {.pos = ++pos, .type = steps[i].type, .table = t};
		ch.record = steps[i].record ? json_loads(steps[i].record, 0, NULL) : NULL;
		ch.old_record = steps[i].old ? json_loads(steps[i].old, 0, NULL) : NULL;
		/* the store's records carry every column */
		json_t *rows[2] = {ch.record, ch.old_record};
		for (size_t k = 0; k < 2; k++)
			for (size_t c = 0; rows[k] && json_object_size(rows[k]) > 1 && c < n_cols; c++)
				if (!json_object_get(rows[k], t->cols[c].name))
					json_object_set_new(rows[k], t->cols[c].name, json_null());
		rt_live_apply(l, &ch, 1, pos);
		json_decref(ch.record);
		json_decref(ch.old_record);
		json_t *r = rt_live_result(q), *ids = json_array();
		size_t k;
		json_t *row;
		json_array_foreach(json_object_get(r, "rows"), k, row)
			json_array_append(ids, json_object_get(row, "id"));
		json_t *want = json_loads(steps[i].want, 0, NULL);
		if (!json_equal(ids, want)) {
			char *got = json_dumps(ids, JSON_COMPACT);
			fail_msg("step %zu: %s, want %s", i, got, steps[i].want);
		}
		json_decref(want);
		json_decref(ids);
		json_decref(r);
	}
	rt_live_close(l, q);
	rt_live_free(l);
	rt_store_close(s);
}

/* The change index: a change visits only the queries whose eq conjuncts
 * (of the definition or of the requester's policy) its old or new row
 * satisfies, and those without any; numbers compare as numbers. Counted by
 * the applied counter, checked against the store. */
static void test_index_skips_unrelated(void **state)
{
	struct rt_store *s = open_store();
	struct rt_live *l = rt_live_new(s, NULL);
	const struct rt_store_table *t = bookings(s);
	struct rt_auth svc = {.role = "service_role"};
	json_t *c1 = json_pack("{s:s}", "sub", "u1");
	struct rt_auth member = {.role = "member", .claims = c1};
	static const char *const qs[] = {
		"property=eq.p1&order=id&limit=5",
		"select=owner,count(),amount.max()&status=eq.open&property=eq.p2",
		"nights=eq.3&order=id",
		"order=id&limit=5", /* as member: the policy's owner = 'u1' */
		"status=in.(open,held)&order=id&limit=5", /* no eq: every change */
	};
	enum { N = sizeof qs / sizeof qs[0] };
	struct rt_live_query *q[N];
	char err[256];
	for (size_t i = 0; i < N; i++) {
		q[i] = rt_live_open(l, def_of(s, "q", qs[i], err, sizeof err), i == 3 ? &member : &svc,
				    err, sizeof err);
		if (!q[i])
			fail_msg("%s: %s", qs[i], err);
	}
	static const struct {
		const char *set; /* a PATCH body, or NULL: insert `row` */
		long long id;
		const char *row;
		uint64_t applied; /* applications it costs (the last query takes every one) */
	} steps[] = {
		{NULL, 1, "{\"id\":1,\"property\":\"p3\",\"status\":\"closed\",\"owner\":\"u2\",\"nights\":4}", 1},
		{NULL, 2, "{\"id\":2,\"property\":\"p1\",\"status\":\"closed\",\"owner\":\"u2\",\"nights\":4}", 2},
		{"{\"property\":\"p4\",\"amount\":7}", 1, NULL, 1},
		{"{\"property\":\"p2\",\"status\":\"open\",\"owner\":\"u1\",\"nights\":3.0,\"amount\":9}", 2, NULL, 5},
		{"{\"amount\":11}", 2, NULL, 4},
		{"{\"status\":\"held\"}", 1, NULL, 1},
		{"{\"owner\":\"u3\"}", 1, NULL, 1},
		{NULL, 3, "{\"id\":3,\"property\":null,\"status\":\"closed\",\"owner\":\"u3\"}", 1},
	};
	uint64_t pos = rt_store_last_pos(s);
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		struct rt_store_error e = {0};
		json_t *rows = NULL;
		json_t *body = json_loads(steps[i].set ? steps[i].set : steps[i].row, 0, NULL);
		if (steps[i].set) {
			char f[64];
			snprintf(f, sizeof f, "id=eq.%lld", steps[i].id);
			struct rt_query wq;
			assert_int_equal(rt_query_parse(f, strlen(f), &wq, NULL, 0), 0);
			struct rt_write w = {.kind = RT_WRITE_UPDATE, .table = t, .rows = body,
					     .where = &wq};
			if (rt_store_write(s, &w, &rows, &e))
				fail_msg("step %zu: %s", i, e.message);
			rt_query_deinit(&wq);
		} else {
			json_t *arr = json_array();
			json_array_append(arr, body);
			struct rt_write w = {.kind = RT_WRITE_INSERT, .table = t, .rows = arr};
			if (rt_store_write(s, &w, &rows, &e))
				fail_msg("step %zu: %s", i, e.message);
			json_decref(arr);
		}
		json_decref(body);
		json_decref(rows);
		uint64_t before, after;
		rt_live_stats(l, NULL, NULL, &before);
		feed(s, l, &pos);
		rt_live_stats(l, NULL, NULL, &after);
		if (after - before != steps[i].applied)
			fail_msg("step %zu: %llu applications, want %llu", i,
				 (unsigned long long)(after - before),
				 (unsigned long long)steps[i].applied);
		for (size_t k = 0; k < N; k++) {
			json_t *r = rt_live_result(q[k]);
			json_t *want = reference(s, qs[k], k == 3 ? &member : &svc);
			check_rows(qs[k], json_object_get(r, "rows"), want, strstr(qs[k], "()") != NULL,
				   k == 3 ? "member" : "service_role");
			json_decref(want);
			json_decref(r);
		}
	}
	for (size_t i = 0; i < N; i++)
		rt_live_close(l, q[i]);
	size_t n_queries;
	rt_live_stats(l, &n_queries, NULL, NULL);
	assert_int_equal(n_queries, 0);
	json_decref(c1);
	rt_live_free(l);
	rt_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_definition_errors),
		cmocka_unit_test(test_sharing),
		cmocka_unit_test(test_reserve_and_history),
		cmocka_unit_test(test_window_filter_changes),
		cmocka_unit_test(test_index_skips_unrelated),
		cmocka_unit_test(test_random_writes),
		cmocka_unit_test(test_folding_under_backlog),
		cmocka_unit_test(test_default_fold),
	};
	const struct CMUnitTest pg_tests[] = {
		cmocka_unit_test(test_random_writes_postgres),
		cmocka_unit_test(test_first_reads_while_writing_postgres),
	};
	if (getenv("RTSYNC_TEST_POSTGRES") && *getenv("RTSYNC_TEST_POSTGRES"))
		return cmocka_run_group_tests(pg_tests, pg_setup, pg_teardown);
	return cmocka_run_group_tests(tests, setup, teardown);
}
