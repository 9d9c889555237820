/*
 * Fuzz target: the embedded store's writes and reads (rt_store_write,
 * rt_store_read: src/store/sqlite.c, the SQL of src/store/sql.c, the
 * conflict decisions of src/store/conflict.c, idempotency keys, row-level
 * security) on what /rest/v1 and the socket's `write` push hand them:
 * client-chosen rows, filters, bases and keys.
 *
 * Input layout: a JSON array of requests, each an object:
 *   {"kind": 0..3 (insert, upsert, update, delete), "table": "t"|"u",
 *    "rows": [...] or {...}, "where": "<query string>", "base": {...},
 *    "strategy": 0..2, "key": "<idempotency key>", "who": 0..2,
 *    "ignore": bool, "missing_default": bool, "single": bool}
 *   {"read": "<query string>", "table": …, "who": …, "count": bool}
 * At most 16 requests run; anything else is skipped.
 *
 * Checked: a refused request says why (an HTTP status of 400..599 and a
 * code); a write that succeeds returns an array of rows (when asked) and an
 * outcome in range, with current/conflicts only under a base; rows
 * returned are objects whose keys are the table's columns; a read returns
 * at most its limit; afterwards the server itself reads every table back.
 * The store is created
 * once per process in /dev/shm or /tmp (a temporary directory, removed at exit)
 * and emptied every 256 inputs.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/policy.h"
#include "store/query.h"
#include "store/store.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, title text, done boolean, "
	"score double precision, meta jsonb, owner text, at timestamptz);\n"
	"CREATE TABLE IF NOT EXISTS u (a integer NOT NULL, b text NOT NULL, v text DEFAULT 'x', "
	"PRIMARY KEY (a, b));\n"
	"ALTER TABLE t ENABLE ROW LEVEL SECURITY;\n"
	"CREATE POLICY own_read ON t FOR SELECT TO authenticated "
	"USING (owner = (auth.jwt() ->> 'sub'));\n"
	"CREATE POLICY own_write ON t FOR INSERT TO authenticated "
	"WITH CHECK (owner = (auth.jwt() ->> 'sub'));\n"
	"CREATE POLICY own_update ON t FOR UPDATE TO authenticated "
	"USING (owner = (auth.jwt() ->> 'sub')) WITH CHECK (owner = (auth.jwt() ->> 'sub'));\n"
	"CREATE POLICY own_delete ON t FOR DELETE TO authenticated "
	"USING (owner = (auth.jwt() ->> 'sub'));\n";

static char dir[64];
static struct rt_store *store;
static json_t *claims;

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "store_write: cannot remove %s\n", dir);
}

static void setup(void)
{
	/* memory-backed when the machine has it: SQLite commits cost no fsync */
	snprintf(dir, sizeof dir, "%s/rtsync-fuzz-write-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	CHECK(mkdtemp(dir));
	atexit(remove_dir);
	char path[128], err[512] = "";
	snprintf(path, sizeof path, "%s/db.sqlite", dir);
	if (rt_store_open_sqlite(path, schema, 1000, 3600000, &store, err, sizeof err)) {
		fprintf(stderr, "store_write: %s\n", err);
		abort();
	}
	claims = json_pack("{s:s, s:s}", "sub", "u1", "role", "authenticated");
}

static const struct rt_auth *requester(const json_t *req)
{
	static const struct rt_auth anon = {.role = "anon"};
	static struct rt_auth user = {.role = "authenticated"};
	user.claims = claims;
	switch ((json_integer_value(json_object_get(req, "who")) & 0xff) % 3) {
	case 1: return &anon;
	case 2: return &user;
	default: return NULL; /* the server */
	}
}

static void check_error(const struct rt_store_error *e)
{
	CHECK(e->status >= 400 && e->status <= 599);
	CHECK(e->code[0] && e->message[0]);
}

static void check_rows(const struct rt_store_table *t, const json_t *rows)
{
	CHECK(json_is_array(rows));
	size_t i;
	const json_t *r;
	json_array_foreach(rows, i, r) {
		CHECK(json_is_object(r));
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)r, k, v)
			CHECK(rt_store_column(t, k));
	}
}

static const char *str_or(const json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : dflt;
}

static void do_read(const struct rt_store_table *t, const json_t *req)
{
	struct rt_query q;
	char err[512];
	const char *qs = str_or(req, "read", "");
	if (rt_query_parse(qs, strlen(qs), &q, err, sizeof err))
		return;
	uint64_t pos = 0;
	struct rt_read r = {.table = t, .query = &q,
			    .wants_count = json_is_true(json_object_get(req, "count")),
			    .position = &pos, .who = requester(req)};
	json_t *rows = NULL;
	long long total = -1;
	struct rt_store_error e = {0};
	if (rt_store_read(store, &r, &rows, &total, &e)) {
		check_error(&e);
	} else {
		check_rows(t, rows);
		if (q.limit >= 0)
			CHECK(json_array_size(rows) <= (size_t)q.limit);
		if (r.wants_count)
			CHECK(total >= 0);
	}
	json_decref(rows);
	rt_query_deinit(&q);
}

static void do_write(const struct rt_store_table *t, const json_t *req)
{
	static const char *const keys[] = {"k1", "k2", "k3"};
	struct rt_query q;
	char err[512];
	const char *qs = str_or(req, "where", "");
	if (rt_query_parse(qs, strlen(qs), &q, err, sizeof err))
		return;
	enum rt_write_kind kind =
		(enum rt_write_kind)(json_integer_value(json_object_get(req, "kind")) & 3);
	const json_t *rows = json_object_get(req, "rows");
	json_t *arr = NULL;
	if (kind == RT_WRITE_INSERT || kind == RT_WRITE_UPSERT) {
		if (json_is_object(rows)) {
			arr = json_array();
			json_array_append(arr, (json_t *)rows);
			rows = arr;
		}
		if (!json_is_array(rows) || json_array_size(rows) > 8)
			goto out;
	} else if (kind == RT_WRITE_UPDATE && !json_is_object(rows)) {
		goto out;
	}
	const json_t *base = json_object_get(req, "base");
	const json_t *jk = json_object_get(req, "key");
	const char *key = json_is_integer(jk) ? keys[(json_integer_value(jk) & 0xff) % 3] : NULL;
	struct rt_write_result res = {0};
	struct rt_write w = {
		.kind = kind,
		.table = t,
		.rows = kind == RT_WRITE_DELETE ? NULL : rows,
		.where = &q,
		.is_ignore_duplicates = json_is_true(json_object_get(req, "ignore")),
		.is_missing_default = json_is_true(json_object_get(req, "missing_default")),
		.wants_rows = true,
		.wants_single = json_is_true(json_object_get(req, "single")),
		.base = json_is_object(base) ? base : NULL,
		.strategy = (enum rt_write_strategy)((json_integer_value(json_object_get(req, "strategy")) &
						       0xff) % 3),
		.idempotency_key = key,
		.fingerprint = key ? str_or(req, "fp", "") : NULL,
		.result = &res,
		.who = requester(req),
	};
	json_t *out = NULL;
	struct rt_store_error e = {0};
	if (rt_store_write(store, &w, &out, &e)) {
		check_error(&e);
		CHECK(!out);
	} else {
		check_rows(t, out);
		CHECK(res.outcome >= RT_WRITE_APPLIED && res.outcome <= RT_WRITE_MISSING);
		if (!w.base)
			CHECK(!res.conflicts);
		if (res.conflicts)
			CHECK(json_is_array(res.conflicts));
		if (res.current) {
			json_t *one = json_pack("[O]", res.current);
			check_rows(t, one);
			json_decref(one);
		}
	}
	json_decref(out);
	rt_write_result_deinit(&res);
out:
	json_decref(arr);
	rt_query_deinit(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!store)
		setup();
	json_t *reqs = json_loadb((const char *)data, size, 0, NULL);
	if (json_is_array(reqs)) {
		size_t i;
		const json_t *req;
		json_array_foreach(reqs, i, req) {
			if (i >= 16)
				break;
			const struct rt_store_table *t = rt_store_table(store, NULL, str_or(req, "table", "t"));
			if (!t)
				continue;
			if (json_object_get(req, "read"))
				do_read(t, req);
			else
				do_write(t, req);
		}
		/* the server itself reads every table back */
		static const char *const tables[] = {"t", "u"};
		for (size_t k = 0; k < 2; k++) {
			struct rt_query q;
			char err[64];
			CHECK(rt_query_parse("", 0, &q, err, sizeof err) == 0);
			const struct rt_store_table *t = rt_store_table(store, NULL, tables[k]);
			struct rt_read r = {.table = t, .query = &q};
			json_t *rows = NULL;
			struct rt_store_error e = {0};
			CHECK(rt_store_read(store, &r, &rows, NULL, &e) == 0);
			check_rows(t, rows);
			json_decref(rows);
			rt_query_deinit(&q);
		}
	}
	json_decref(reqs);
	static unsigned runs;
	if (++runs % 256 == 0) {
		/* empty the tables as the server, so inputs do not pile up */
		static const char *const tables[] = {"t", "u"};
		for (size_t k = 0; k < 2; k++) {
			struct rt_query q;
			char err[64];
			CHECK(rt_query_parse("", 0, &q, err, sizeof err) == 0);
			struct rt_write w = {.kind = RT_WRITE_DELETE,
					     .table = rt_store_table(store, NULL, tables[k]),
					     .where = &q};
			struct rt_store_error e = {0};
			json_t *out = NULL;
			CHECK(rt_store_write(store, &w, &out, &e) == 0);
			json_decref(out);
			rt_query_deinit(&q);
		}
	}
	return 0;
}
