/*
 * The embedded SQLite store. Triggers on every table write each change (new
 * and old row as JSON, time) into _rtsync_changes in the same transaction, so
 * a crash loses nothing and writers other than rtsync are captured too. The
 * change log's rowid is the position: SQLite has one writer at a time, so
 * rowid order is commit order.
 */
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unicase.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "store/sql.h"
#include "store/store_int.h"

#define BUSY_TIMEOUT_MS 5000
#define POLL_MS 10
#define STMT_CACHE 32 /* idle prepared statements kept per connection */

/*
 * A pool thread's connection. Compiling a statement costs more than running
 * it (an INSERT compiles the change-log trigger with it), so statements are
 * kept after use, reset, and found again by their SQL text: a 1,000-row
 * insert compiles its statement once, not 1,000 times.
 */
struct conn {
	pthread_t thread;
	sqlite3 *db;
	sqlite3_stmt *idle[STMT_CACHE]; /* most recently released first */
	size_t n_idle;
	struct conn *next;
};

struct sqlite_store {
	struct rt_store base; /* first: the ops and the schema */
	char *path;
	uint64_t retain_count, retain_ms;

	pthread_mutex_t mu; /* guards conns and the write wake-up */
	pthread_cond_t cond;
	struct conn *conns;
	uint64_t writes; /* bumped by every write through rtsync */

	sqlite3 *change_db; /* the change thread's own connection */
	sqlite3_stmt *version_st; /* PRAGMA data_version on change_db, kept */
	sqlite3_stmt *changes_st; /* the change log's read on change_db, kept */
};

static const struct rt_store_ops sqlite_ops;
static void sq_close(struct rt_store *base);

/* ---- types ---- */

static bool has(const char *decl, const char *word)
{
	return strcasestr(decl, word) != NULL;
}

/* Maps a declared SQLite type to a Postgres type name (docs/store.md). */
static const char *pg_type(const char *decl)
{
	static const struct {
		const char *decl, *pg;
	} exact[] = {
		{"bigint", "int8"}, {"int8", "int8"}, {"integer", "int8"}, {"int", "int4"},
		{"int4", "int4"}, {"mediumint", "int4"}, {"smallint", "int2"}, {"int2", "int2"},
		{"tinyint", "int2"}, {"real", "float8"}, {"double", "float8"},
		{"double precision", "float8"}, {"float8", "float8"}, {"float", "float8"},
		{"float4", "float4"}, {"numeric", "numeric"}, {"decimal", "numeric"},
		{"boolean", "bool"}, {"bool", "bool"}, {"text", "text"}, {"varchar", "varchar"},
		{"character varying", "varchar"}, {"char", "bpchar"}, {"character", "bpchar"},
		{"clob", "text"}, {"json", "json"}, {"jsonb", "jsonb"},
		{"timestamptz", "timestamptz"}, {"timestamp with time zone", "timestamptz"},
		{"timestamp", "timestamp"}, {"timestamp without time zone", "timestamp"},
		{"datetime", "timestamp"}, {"date", "date"}, {"time", "time"},
		{"timetz", "timetz"}, {"uuid", "uuid"}, {"blob", "bytea"}, {"bytea", "bytea"},
		{"", "text"},
	};
	char base[64];
	size_t n = 0;
	for (const char *p = decl; *p && *p != '(' && n < sizeof base - 1; p++)
		base[n++] = (char)tolower((unsigned char)*p);
	while (n && base[n - 1] == ' ')
		n--;
	base[n] = '\0';
	for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
		if (!strcmp(base, exact[i].decl))
			return exact[i].pg;
	/* SQLite's own affinity rules decide the rest. */
	if (has(decl, "int"))
		return "int8";
	if (has(decl, "char") || has(decl, "clob") || has(decl, "text"))
		return "text";
	if (has(decl, "blob"))
		return "bytea";
	if (has(decl, "real") || has(decl, "floa") || has(decl, "doub"))
		return "float8";
	return "numeric";
}

static bool is_int_type(const char *t)
{
	return !strcmp(t, "int2") || !strcmp(t, "int4") || !strcmp(t, "int8");
}

static bool is_num_type(const char *t)
{
	return is_int_type(t) || !strcmp(t, "float4") || !strcmp(t, "float8") ||
	       !strcmp(t, "numeric");
}

static bool is_json_type(const char *t)
{
	return !strcmp(t, "json") || !strcmp(t, "jsonb");
}

static json_t *hex_of(const unsigned char *p, int n)
{
	static const char hex[] = "0123456789abcdef";
	char *s = rt_xmalloc((size_t)n * 2 + 1);
	for (int i = 0; i < n; i++) {
		s[2 * i] = hex[p[i] >> 4];
		s[2 * i + 1] = hex[p[i] & 15];
	}
	s[2 * n] = '\0';
	json_t *v = json_string(s);
	free(s);
	return v ? v : json_null();
}

/* Converts a JSON value captured by a trigger to the column's JSON form. */
static json_t *typed_from_json(const char *type, json_t *v)
{
	if (json_is_null(v))
		return json_null();
	if (!strcmp(type, "bool")) {
		if (json_is_integer(v))
			return json_boolean(json_integer_value(v) != 0);
		if (json_is_string(v)) {
			const char *s = json_string_value(v);
			return json_boolean(!strcasecmp(s, "t") || !strcasecmp(s, "true") ||
					    !strcmp(s, "1"));
		}
	} else if (is_json_type(type) && json_is_string(v)) {
		json_t *parsed = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
		if (parsed)
			return parsed;
	} else if (is_num_type(type) && json_is_string(v)) {
		char *end;
		const char *s = json_string_value(v);
		errno = 0;
		long long ll = strtoll(s, &end, 10);
		if (*s && !*end && errno != ERANGE)
			return json_integer(ll);
		/* past 64 bits: a double, as PostgreSQL's numeric reads in JSON */
		double d = strtod(s, &end);
		if (*s && !*end && isfinite(d))
			return json_real(d);
	}
	return json_incref(v);
}

/* Converts column i of a result row to JSON by the column's type. */
static json_t *typed_from_stmt(const char *type, sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_NULL:
		return json_null();
	case SQLITE_INTEGER: {
		sqlite3_int64 v = sqlite3_column_int64(st, i);
		if (!strcmp(type, "bool"))
			return json_boolean(v != 0);
		return json_integer(v);
	}
	case SQLITE_FLOAT:
		return json_real(sqlite3_column_double(st, i));
	case SQLITE_BLOB:
		return hex_of(sqlite3_column_blob(st, i), sqlite3_column_bytes(st, i));
	default: {
		const char *s = (const char *)sqlite3_column_text(st, i);
		json_t *str = json_stringn(s ? s : "", (size_t)sqlite3_column_bytes(st, i));
		if (!str)
			return json_null();
		json_t *v = typed_from_json(type, str);
		json_decref(str);
		return v;
	}
	}
}

/* Binds a JSON value for column type at index i. */
static int bind_json(sqlite3_stmt *st, int i, const char *type, const json_t *v)
{
	if (!v || json_is_null(v))
		return sqlite3_bind_null(st, i);
	if (is_json_type(type)) { /* any JSON value, kept as its text */
		char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
		int rc = sqlite3_bind_text(st, i, txt ? txt : "null", -1, SQLITE_TRANSIENT);
		free(txt);
		return rc;
	}
	if (json_is_boolean(v))
		return sqlite3_bind_int(st, i, json_is_true(v));
	if (json_is_integer(v))
		return sqlite3_bind_int64(st, i, json_integer_value(v));
	if (json_is_real(v))
		return sqlite3_bind_double(st, i, json_real_value(v));
	if (json_is_string(v))
		return sqlite3_bind_text(st, i, json_string_value(v), (int)json_string_length(v),
					 SQLITE_TRANSIENT);
	/* objects and arrays in a non-JSON column: stored as JSON text */
	char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	int rc = sqlite3_bind_text(st, i, txt ? txt : "null", -1, SQLITE_TRANSIENT);
	free(txt);
	return rc;
}

/* Binds a filter value given as text, converted to the column's type so
 * SQLite compares like Postgres would. */
static int bind_text_as(sqlite3_stmt *st, int i, const char *type, const char *s)
{
	char *end;
	if (is_int_type(type)) {
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (*s && !*end && errno != ERANGE) /* past 64 bits: compared as a number */
			return sqlite3_bind_int64(st, i, v);
	}
	if (is_num_type(type)) {
		double d = strtod(s, &end);
		if (*s && !*end)
			return sqlite3_bind_double(st, i, d);
	}
	if (!strcmp(type, "bool")) {
		if (!strcasecmp(s, "true") || !strcasecmp(s, "t"))
			return sqlite3_bind_int(st, i, 1);
		if (!strcasecmp(s, "false") || !strcasecmp(s, "f"))
			return sqlite3_bind_int(st, i, 0);
	}
	return sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

/* ---- errors ---- */

#define set_err rt_store_set_err

/* The "table.column" SQLite names in a constraint message, split. */
static void constraint_target(const char *msg, char *table, char *column, size_t cap)
{
	const char *p = strrchr(msg, ':');
	*table = *column = '\0';
	if (!p)
		return;
	p++;
	while (*p == ' ')
		p++;
	const char *dot = strchr(p, '.');
	if (!dot)
		return;
	snprintf(table, cap, "%.*s", (int)(dot - p), p);
	snprintf(column, cap, "%.*s", (int)strcspn(dot + 1, ", "), dot + 1);
}

/* Maps a failed SQLite call to a PostgREST-style error, in Postgres' words. */
static void sql_err(struct rt_store_error *e, sqlite3 *db)
{
	int ext = sqlite3_extended_errcode(db);
	const char *msg = sqlite3_errmsg(db);
	char table[128], column[128];
	constraint_target(msg, table, column, sizeof table);
	/* Storage faults, in PostgreSQL's codes: the request was fine, the disk was not. */
	switch (ext & 0xff) {
	case SQLITE_FULL:
		set_err(e, 507, "53100", msg, "could not write: the disk is full");
		return;
	case SQLITE_READONLY:
		set_err(e, 503, "25006", msg, "could not write: the database is read-only");
		return;
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
		set_err(e, 503, "58030", msg, "could not write: I/O error");
		return;
	}
	switch (ext) {
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		set_err(e, 409, "23505", msg, "duplicate key value violates unique constraint \"%s_pkey\"",
			table);
		break;
	case SQLITE_CONSTRAINT_UNIQUE:
		set_err(e, 409, "23505", msg,
			"duplicate key value violates unique constraint \"%s_%s_key\"", table, column);
		break;
	case SQLITE_CONSTRAINT_NOTNULL:
		set_err(e, 400, "23502", msg,
			"null value in column \"%s\" of relation \"%s\" violates not-null constraint",
			column, table);
		break;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		set_err(e, 409, "23503", msg, "insert or update violates foreign key constraint");
		break;
	case SQLITE_CONSTRAINT_CHECK:
		set_err(e, 400, "23514", msg, "new row violates check constraint");
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		set_err(e, 503, "PGRST003", msg, "the database is busy, try again");
		break;
	default:
		if (strstr(msg, "ON CONFLICT clause does not match"))
			set_err(e, 400, "42P10", msg,
				"there is no unique or exclusion constraint matching the ON CONFLICT "
				"specification");
		else if (!strcmp(msg, "integer overflow")) /* sum(): PostgreSQL's numeric holds it */
			set_err(e, 400, "22003", msg, "bigint out of range");
		else
			set_err(e, 500, "XX000", NULL, "%s", msg);
	}
}

/* ---- connections ---- */

/* lower() for any script (SQLite's own folds ASCII only), for ilike. */
static void sql_lower(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const uint8_t *s = sqlite3_value_text(argv[0]);
	if (!s) {
		sqlite3_result_null(ctx);
		return;
	}
	size_t len = 0;
	uint8_t *low = u8_tolower(s, (size_t)sqlite3_value_bytes(argv[0]), NULL, NULL, NULL, &len);
	if (!low) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	sqlite3_result_text(ctx, (const char *)low, (int)len, free);
}

static int open_db(const char *path, sqlite3 **out, char *err, size_t err_cap)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, err_cap, "cannot open %s: %s", path,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	sqlite3_create_function(db, "rt_lower", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
				sql_lower, NULL, NULL);
	char *msg = NULL;
	/* WAL: readers never block the writer. synchronous=NORMAL in WAL mode
	 * keeps every committed transaction across a process crash. mmap: a
	 * connection's page cache starts empty after another one commits, and
	 * reading the database file through the map costs no copy. */
	if (sqlite3_exec(db,
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
			 "PRAGMA foreign_keys=ON; PRAGMA case_sensitive_like=ON; "
			 "PRAGMA mmap_size=268435456;",
			 NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, err_cap, "cannot configure %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

/* The calling pool thread's connection, opened on first use. */
static struct conn *thread_conn(struct sqlite_store *s, struct rt_store_error *e)
{
	pthread_t self = pthread_self();
	pthread_mutex_lock(&s->mu);
	for (struct conn *c = s->conns; c; c = c->next) {
		if (pthread_equal(c->thread, self)) {
			pthread_mutex_unlock(&s->mu);
			return c;
		}
	}
	pthread_mutex_unlock(&s->mu);
	char err[512];
	sqlite3 *db;
	if (open_db(s->path, &db, err, sizeof err)) {
		set_err(e, 503, "PGRST000", NULL, "%s", err);
		return NULL;
	}
	struct conn *c = rt_xcalloc(1, sizeof *c);
	c->thread = self;
	c->db = db;
	pthread_mutex_lock(&s->mu);
	c->next = s->conns;
	s->conns = c;
	pthread_mutex_unlock(&s->mu);
	return c;
}

/* ---- schema ---- */

/* Line and column (1-based, in bytes) of sql + off. */
static void line_col(const char *sql, size_t off, unsigned *line, unsigned *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && sql[i]; i++) {
		if (sql[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

/* Skips whitespace and SQL comments from p up to end. */
static const char *skip_blank(const char *p, const char *end)
{
	while (p < end) {
		if (isspace((unsigned char)*p)) {
			p++;
		} else if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
			while (p < end && *p != '\n')
				p++;
		} else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
			const char *close = NULL;
			for (const char *q = p + 2; q + 1 < end && !close; q++)
				if (q[0] == '*' && q[1] == '/')
					close = q;
			p = close ? close + 2 : end;
		} else {
			break;
		}
	}
	return p;
}

/* Runs one statement (not a policy statement); a table or index that
 * exists is kept. Returns 0, or -1 with SQLite's message in msg. */
static int exec_statement(sqlite3 *db, const char *stmt, size_t len, char *msg, size_t msg_cap)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, stmt, (int)len, &st, NULL) != SQLITE_OK) {
		/* Applying the schema again must not fail on what exists. */
		if (strstr(sqlite3_errmsg(db), "already exists"))
			return 0;
		snprintf(msg, msg_cap, "%s", sqlite3_errmsg(db));
		return -1;
	}
	int rc = 0;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (step != SQLITE_DONE && !strstr(sqlite3_errmsg(db), "already exists")) {
		snprintf(msg, msg_cap, "%s", sqlite3_errmsg(db));
		rc = -1;
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * Hands one statement of the schema (stmt, len bytes without its ';', a
 * part of sql) to the policy set or, when it is no policy statement, to
 * SQLite. Returns 0, or -1 with the reason and its line:column in err: the
 * unsupported part's when the policy module names its offset, else the
 * statement's.
 */
static int apply_statement(sqlite3 *db, struct rt_policies *pol, const char *sql,
			   const char *stmt, size_t len, char *err, size_t err_cap)
{
	char msg[768];
	size_t at = (size_t)(stmt - sql);
	int rc = rt_policies_add_statement(pol, stmt, len, "public", msg, sizeof msg);
	if (rc == 1)
		return 0;
	if (rc == 0 && !exec_statement(db, stmt, len, msg, sizeof msg))
		return 0;
	const char *off = rc < 0 ? strstr(msg, "at offset ") : NULL;
	unsigned long long part;
	if (off && sscanf(off, "at offset %llu", &part) == 1 && part < len)
		at += (size_t)part;
	unsigned line, col;
	line_col(sql, at, &line, &col);
	snprintf(err, err_cap, "schema line %u:%u: %s", line, col, msg);
	return -1;
}

/*
 * Applies the schema statement by statement. SQLite's own tokenizer
 * (sqlite3_complete) finds where each ends, so quotes, comments and
 * CREATE TRIGGER … BEGIN … END bodies are read as SQLite reads them. Policy
 * statements go to pol, the rest to the database.
 */
static int exec_schema(sqlite3 *db, const char *sql, struct rt_policies *pol, char *err,
		       size_t err_cap)
{
	size_t n = strlen(sql);
	char *buf = rt_xmalloc(n + 1); /* cut at each ';' to ask sqlite3_complete */
	memcpy(buf, sql, n + 1);
	int rc = 0;
	size_t start = 0;
	for (size_t i = 0; i <= n && !rc; i++) {
		if (i < n) {
			if (buf[i] != ';')
				continue;
			char keep = buf[i + 1];
			buf[i + 1] = '\0';
			int is_complete = sqlite3_complete(buf + start);
			buf[i + 1] = keep;
			if (!is_complete)
				continue;
		}
		const char *stmt = skip_blank(buf + start, buf + i);
		if (stmt < buf + i)
			rc = apply_statement(db, pol, buf, stmt, (size_t)(buf + i - stmt), err, err_cap);
		start = i + 1;
	}
	free(buf);
	return rc;
}

static int load_schema(struct sqlite_store *s, sqlite3 *db, char *err, size_t err_cap)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       /* ordinary tables only: virtual tables (FTS, R*Tree) and their
				* shadow tables take no triggers */
			       "SELECT name FROM pragma_table_list WHERE schema = 'main' AND "
			       "type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND "
			       "name NOT LIKE '\\_rtsync\\_%' ESCAPE '\\' ORDER BY name",
			       -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, err_cap, "schema: %s", sqlite3_errmsg(db));
		return -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		s->base.schema.tables = rt_xrealloc(s->base.schema.tables,
					       (s->base.schema.n_tables + 1) * sizeof *s->base.schema.tables);
		struct rt_store_table *t = &s->base.schema.tables[s->base.schema.n_tables++];
		memset(t, 0, sizeof *t);
		t->schema = rt_xstrdup("public");
		t->name = rt_xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);

	for (size_t i = 0; i < s->base.schema.n_tables; i++) {
		struct rt_store_table *t = &s->base.schema.tables[i];
		struct rt_buf q;
		rt_buf_init(&q);
		rt_buf_append_str(&q, "SELECT name, type, \"notnull\", pk FROM pragma_table_info(");
		rt_sql_literal(&q, t->name);
		rt_buf_append_str(&q, ") ORDER BY cid");
		int rc = sqlite3_prepare_v2(db, q.data, -1, &st, NULL);
		rt_buf_deinit(&q);
		if (rc != SQLITE_OK) {
			snprintf(err, err_cap, "schema: %s", sqlite3_errmsg(db));
			return -1;
		}
		while (sqlite3_step(st) == SQLITE_ROW) {
			t->cols = rt_xrealloc(t->cols, (t->n_cols + 1) * sizeof *t->cols);
			struct rt_store_column *c = &t->cols[t->n_cols++];
			const char *decl = (const char *)sqlite3_column_text(st, 1);
			c->name = rt_xstrdup((const char *)sqlite3_column_text(st, 0));
			c->type = rt_xstrdup(pg_type(decl ? decl : ""));
			c->is_pk = sqlite3_column_int(st, 3) > 0;
			c->is_nullable = !sqlite3_column_int(st, 2) && !c->is_pk;
		}
		sqlite3_finalize(st);
	}
	return 0;
}

/* json_object('c', <value>, …) of one row version; blobs become hex. */
static void row_json(struct rt_buf *b, const struct rt_store_table *t, const char *ver)
{
	rt_buf_append_str(b, "json_object(");
	for (size_t i = 0; i < t->n_cols; i++) {
		if (i)
			rt_buf_append_byte(b, ',');
		rt_sql_literal(b, t->cols[i].name);
		rt_buf_printf(b, ",CASE typeof(%s.", ver);
		rt_sql_ident(b, t->cols[i].name);
		rt_buf_printf(b, ") WHEN 'blob' THEN hex(%s.", ver);
		rt_sql_ident(b, t->cols[i].name);
		/* json_object keeps 15 digits of a real: 17 round-trip exactly */
		rt_buf_printf(b, ") WHEN 'real' THEN printf('%%!.17g', %s.", ver);
		rt_sql_ident(b, t->cols[i].name);
		rt_buf_printf(b, ") ELSE %s.", ver);
		rt_sql_ident(b, t->cols[i].name);
		rt_buf_append_str(b, " END");
	}
	rt_buf_append_byte(b, ')');
}

static const char now_ms_sql[] = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

static int install_triggers(struct sqlite_store *s, sqlite3 *db, char *err, size_t err_cap)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "BEGIN IMMEDIATE;"
			      "CREATE TABLE IF NOT EXISTS _rtsync_changes ("
			      " pos INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,"
			      " op TEXT NOT NULL, new TEXT, old TEXT, ts INTEGER NOT NULL);"
			      "CREATE TABLE IF NOT EXISTS _rtsync_idempotency ("
			      " key TEXT PRIMARY KEY, fingerprint BLOB NOT NULL, result TEXT NOT NULL,"
			      " ts INTEGER NOT NULL);"
			      "CREATE TABLE IF NOT EXISTS _rtsync_docs (doc TEXT NOT NULL,"
			      " seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (doc, seq))"
			      " WITHOUT ROWID;"
			      "CREATE TABLE IF NOT EXISTS _rtsync_counters (name TEXT PRIMARY KEY,"
			      " value INTEGER NOT NULL) WITHOUT ROWID;");
	static const char *const ops[] = {"INSERT", "UPDATE", "DELETE"};
	for (size_t i = 0; i < s->base.schema.n_tables; i++) {
		const struct rt_store_table *t = &s->base.schema.tables[i];
		for (int k = 0; k < 3; k++) {
			struct rt_buf name;
			rt_buf_init(&name);
			rt_buf_printf(&name, "_rtsync_%s_%s", t->name, ops[k]);
			rt_buf_append_str(&b, "DROP TRIGGER IF EXISTS ");
			rt_sql_ident(&b, name.data);
			rt_buf_append_str(&b, "; CREATE TRIGGER ");
			rt_sql_ident(&b, name.data);
			rt_buf_printf(&b, " AFTER %s ON ", ops[k]);
			rt_sql_ident(&b, t->name);
			rt_buf_append_str(&b, " BEGIN INSERT INTO _rtsync_changes (tbl, op, new, old, ts) VALUES (");
			rt_sql_literal(&b, t->name);
			rt_buf_printf(&b, ",'%s',", ops[k]);
			if (k == 2)
				rt_buf_append_str(&b, "NULL");
			else
				row_json(&b, t, "NEW");
			rt_buf_append_byte(&b, ',');
			if (k == 0)
				rt_buf_append_str(&b, "NULL");
			else
				row_json(&b, t, "OLD");
			rt_buf_printf(&b, ",%s); END;", now_ms_sql);
			rt_buf_deinit(&name);
		}
	}
	rt_buf_append_str(&b, "COMMIT;");
	char *msg = NULL;
	int rc = sqlite3_exec(db, b.data, NULL, NULL, &msg);
	rt_buf_deinit(&b);
	if (rc != SQLITE_OK) {
		snprintf(err, err_cap, "installing change triggers: %s", msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

/* What policy validation asks of the store. */
struct validation {
	const struct sqlite_store *s;
	char missing[128]; /* a table a policy names that the store does not have */
};

/*
 * Policy validation: whether public.table has column (column NULL: whether
 * the table exists). Tables of other schemas (realtime.messages) are not
 * the store's and pass.
 */
static bool has_column(const char *schema, const char *table, const char *column, void *ctx)
{
	struct validation *v = ctx;
	if (schema && strcmp(schema, "public"))
		return true;
	const struct rt_store_table *t = rt_store_table(&v->s->base, NULL, table);
	if (!t)
		snprintf(v->missing, sizeof v->missing, "%s", table);
	return t && (!column || rt_store_column(t, column));
}

int rt_store_open_sqlite(const char *db_path, const char *schema_sql, uint64_t retain_count,
			 uint64_t retain_ms, struct rt_store **out, char *err, size_t err_cap)
{
	struct sqlite_store *s = rt_xcalloc(1, sizeof *s);
	s->base.ops = &sqlite_ops;
	s->path = rt_xstrdup(db_path);
	s->retain_count = retain_count;
	s->retain_ms = retain_ms;
	s->base.key_window_ms = RT_STORE_KEY_WINDOW_MS;
	rt_store_policies_init(&s->base);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	struct rt_policies *pol = rt_policies_new();
	if (open_db(db_path, &s->change_db, err, err_cap))
		goto err;
	if (schema_sql && exec_schema(s->change_db, schema_sql, pol, err, err_cap))
		goto err;
	if (load_schema(s, s->change_db, err, err_cap) ||
	    install_triggers(s, s->change_db, err, err_cap))
		goto err;
	char msg[768];
	struct validation v = {.s = s};
	if (rt_policies_validate(pol, has_column, &v, msg, sizeof msg)) {
		if (*v.missing)
			snprintf(err, err_cap, "schema: %.600s (relation \"%s\" does not exist)", msg,
				 v.missing);
		else
			snprintf(err, err_cap, "schema: %s", msg);
		goto err;
	}
	rt_store_set_policies(&s->base, pol);
	*out = &s->base;
	return 0;
err:
	rt_policies_unref(pol);
	sq_close(&s->base);
	return -1;
}

static void sq_close(struct rt_store *base)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	if (!s)
		return;
	struct conn *c = s->conns;
	while (c) {
		struct conn *next = c->next;
		for (size_t i = 0; i < c->n_idle; i++)
			sqlite3_finalize(c->idle[i]);
		sqlite3_close(c->db);
		free(c);
		c = next;
	}
	sqlite3_finalize(s->version_st);
	sqlite3_finalize(s->changes_st);
	sqlite3_close(s->change_db);
	rt_store_schema_free(&s->base.schema);
	rt_store_policies_deinit(&s->base);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s->path);
	free(s);
}

/* ---- SQL from a query ---- */

#define D (&rt_sql_sqlite)

/* A statement for sql: an idle one of the connection's, else compiled, with
 * bv's values bound in order (texts converted to their column's type, JSON
 * values of rows as they are; bv may be NULL). Give it back with release(). */
static int prepare(struct conn *c, const char *sql, const struct rt_sql_binds *bv,
		   sqlite3_stmt **out, struct rt_store_error *e)
{
	*out = NULL;
	for (size_t i = 0; i < c->n_idle; i++) {
		if (!strcmp(sqlite3_sql(c->idle[i]), sql)) {
			*out = c->idle[i];
			memmove(&c->idle[i], &c->idle[i + 1], (c->n_idle - i - 1) * sizeof *c->idle);
			c->n_idle--;
			break;
		}
	}
	if (!*out && sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) !=
			     SQLITE_OK) {
		sql_err(e, c->db);
		return -1;
	}
	for (size_t i = 0; bv && i < bv->n; i++) {
		const struct rt_sql_bind *v = &bv->v[i];
		if (v->kind == RT_SQL_BIND_JSON)
			bind_json(*out, (int)i + 1, v->type, v->json);
		else
			bind_text_as(*out, (int)i + 1, v->type, v->text);
	}
	return 0;
}

/* Gives a statement from prepare() back: reset, unbound and kept for the
 * next use of the same SQL (the least recently used one is dropped). */
static void release(struct conn *c, sqlite3_stmt *st)
{
	if (!st)
		return;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (c->n_idle == STMT_CACHE)
		sqlite3_finalize(c->idle[--c->n_idle]);
	memmove(&c->idle[1], &c->idle[0], c->n_idle * sizeof *c->idle);
	c->idle[0] = st;
	c->n_idle++;
}

/* A read's row: each output typed as what it is (a column's value, or an
 * aggregate's result). */
static json_t *row_object(sqlite3_stmt *st, const struct rt_store_output *outs, size_t n)
{
	json_t *row = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(row, outs[i].key, typed_from_stmt(outs[i].type, st, (int)i));
	return row;
}

/* Runs a statement that returns no rows (BEGIN, COMMIT, ROLLBACK) through
 * c's statement cache, so that it is not compiled again on every request.
 * Returns SQLITE_OK or the step's error code (the message stays on c->db). */
static int exec_cached(struct conn *c, const char *sql)
{
	struct rt_store_error e;
	sqlite3_stmt *st;
	if (prepare(c, sql, NULL, &st, &e))
		return sqlite3_errcode(c->db);
	int rc = sqlite3_step(st);
	release(c, st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* The log's newest position (0 when empty), as c's transaction sees it,
 * through c's statement cache. */
static uint64_t conn_last_pos(struct conn *c)
{
	struct rt_store_error e;
	sqlite3_stmt *st;
	uint64_t pos = 0;
	if (prepare(c, "SELECT max(pos) FROM _rtsync_changes", NULL, &st, &e))
		return 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		pos = (uint64_t)sqlite3_column_int64(st, 0);
	release(c, st);
	return pos;
}

/* The log's newest position (0 when empty), as db's transaction sees it. */
static uint64_t last_pos_of(sqlite3 *db)
{
	sqlite3_stmt *st;
	uint64_t pos = 0;
	if (sqlite3_prepare_v2(db, "SELECT max(pos) FROM _rtsync_changes", -1, &st, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			pos = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return pos;
}

/* ---- row-level security (docs/security.md) ---- */

/* What one read or write runs with: the connection, and the policy set and
 * requester whose row-level security applies. */
struct op {
	struct conn *conn;
	struct rt_policies *pol; /* a reference (op_deinit) */
	const struct rt_auth *who;
	bool sees; /* a write's requester sees the rows written: SELECT policies check them */
	bool is_counted; /* the rows written are wanted for their count alone */
};

static void op_init(struct op *o, struct sqlite_store *s, struct conn *conn,
		    const struct rt_auth *who, bool sees)
{
	o->conn = conn;
	o->pol = rt_store_policies(&s->base);
	o->who = who;
	o->sees = sees;
	o->is_counted = false;
}

static void op_deinit(struct op *o)
{
	rt_policies_unref(o->pol);
	o->pol = NULL;
}

/* A row the policies refuse: 42501, 401 for anon and 403 otherwise
 * (PostgREST's rule). Returns -1. */
static int rls_err(struct rt_store_error *e, const struct op *o, const struct rt_store_table *t)
{
	bool is_anon = o->who && !strcmp(o->who->role, "anon");
	set_err(e, is_anon ? 401 : 403, "42501", NULL,
		"new row violates row-level security policy for table \"%s\"", t->name);
	return -1;
}

/*
 * Appends the condition of cmd's policies for o's requester (USING, or WITH
 * CHECK with is_check), after " AND " when b holds something: nothing when
 * RLS does not apply, "0" when no row passes (also for an opaque verdict,
 * which a schema file cannot produce). qual as rt_sql_where() takes it.
 */
static int policy_sql(const struct op *o, const struct rt_store_table *t, unsigned cmd,
		      bool is_check, const char *qual, struct rt_buf *b, struct rt_sql_binds *bv,
		      struct rt_store_error *e)
{
	struct rt_query_node pred;
	enum rt_policy_verdict v =
		rt_policies_predicate(o->pol, t->schema, t->name, cmd, is_check, o->who, &pred);
	if (v == RT_POLICY_ALLOW_ALL)
		return 0;
	if (b->len)
		rt_buf_append_str(b, " AND ");
	if (v != RT_POLICY_ROWS) {
		rt_buf_append_str(b, D->sql_false);
		return 0;
	}
	size_t first = bv->n;
	int rc = rt_sql_where(b, bv, D, t, &pred, qual, e);
	rt_sql_binds_keep(bv, first); /* the predicate goes now */
	rt_query_node_deinit(&pred);
	return rc;
}

/*
 * The condition of the rows cmd may reach: filters (may be NULL) AND cmd's
 * USING AND, for UPDATE and DELETE, SELECT's USING (PostgREST's writes
 * filter and return rows, so PostgreSQL applies SELECT policies to them as
 * well). Empty when nothing restricts.
 */
static int target_where(const struct op *o, const struct rt_store_table *t,
			const struct rt_query_node *filters, unsigned cmd, struct rt_buf *b,
			struct rt_sql_binds *bv, struct rt_store_error *e)
{
	if (filters && rt_sql_where(b, bv, D, t, filters, NULL, e))
		return -1;
	if (policy_sql(o, t, cmd, false, NULL, b, bv, e))
		return -1;
	if (cmd != RT_POLICY_SELECT && policy_sql(o, t, RT_POLICY_SELECT, false, NULL, b, bv, e))
		return -1;
	return 0;
}

/* The checks a row written must pass, evaluated in C by rt_policy_eval (the
 * change feed's evaluator) on the row as stored. */
struct row_check {
	const struct op *o;
	const struct rt_store_table *t;
	size_t n;
	enum rt_policy_verdict v[2];
	struct rt_query_node pred[2];
};

static const char *col_type(const char *column, void *ctx)
{
	const struct rt_store_column *c = rt_store_column(ctx, column);
	return c ? c->type : "text";
}

/* cmd's WITH CHECK and, when the requester sees the row, SELECT's USING
 * (PostgreSQL checks RETURNING rows against SELECT policies and errors). */
static void row_check_init(struct row_check *c, const struct op *o, const struct rt_store_table *t,
			   unsigned cmd)
{
	memset(c, 0, sizeof *c);
	c->o = o;
	c->t = t;
	for (int i = 0; i < (o->sees ? 2 : 1); i++) {
		enum rt_policy_verdict v =
			rt_policies_predicate(o->pol, t->schema, t->name, i ? RT_POLICY_SELECT : cmd,
					      i == 0, o->who, &c->pred[c->n]);
		if (v != RT_POLICY_ALLOW_ALL)
			c->v[c->n++] = v;
	}
}

static void row_check_deinit(struct row_check *c)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i] == RT_POLICY_ROWS)
			rt_query_node_deinit(&c->pred[i]);
	c->n = 0;
}

/* Returns 0 when row passes every check, else -1 with 42501 in e. */
static int row_check_run(const struct row_check *c, const json_t *row, struct rt_store_error *e)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i] != RT_POLICY_ROWS ||
		    rt_policy_eval(&c->pred[i], row, col_type, (void *)c->t) != 1)
			return rls_err(e, c->o, c->t);
	return 0;
}

/* ---- reads ---- */

static int sq_read(struct rt_store *base, const struct rt_read *r, json_t **rows, long long *total,
		  struct rt_store_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	const struct rt_store_table *t = r->table;
	struct conn *conn = thread_conn(s, err);
	if (!conn)
		return -1;
	sqlite3 *db = conn->db;
	int rc = -1;
	struct rt_store_output *outs = NULL;
	size_t n_outs;
	bool is_grouped;
	struct rt_buf where, sql;
	struct rt_sql_binds bv;
	rt_sql_binds_init(&bv);
	sqlite3_stmt *st = NULL;
	bool is_txn = false;
	struct op o;
	op_init(&o, s, conn, r->who, true);
	rt_buf_init(&where);
	rt_buf_init(&sql);
	if (rt_store_outputs(t, r->query, &outs, &n_outs, &is_grouped, err) ||
	    rt_sql_check_order(t, r->query, err))
		goto out;
	/* The rows the requester may select; limit, offset and the count apply to them. */
	if (target_where(&o, t, r->query ? &r->query->where : NULL, RT_POLICY_SELECT, &where, &bv,
			 err))
		goto out;

	if (rt_sql_read(&sql, D, t, outs, n_outs, is_grouped, where.data, r->query, false, err))
		goto out;
	/* With a position, the rows and the log's last position come from one
	 * read transaction (the log is a table of the same database). */
	if (r->position || r->mark) {
		if (exec_cached(conn, "BEGIN") != SQLITE_OK) {
			sql_err(err, db);
			goto out;
		}
		is_txn = true;
		uint64_t pos = conn_last_pos(conn);
		if (r->position)
			*r->position = pos;
		if (r->mark)
			r->mark->pos = pos; /* exact: positions alone tell */
	}
	if (prepare(conn, sql.data, &bv, &st, err))
		goto out;
	json_t *arr = json_array();
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(arr, row_object(st, outs, n_outs));
	if (step != SQLITE_DONE) {
		sql_err(err, db);
		json_decref(arr);
		goto out;
	}
	release(conn, st);
	st = NULL;
	if (r->wants_count) {
		rt_buf_reset(&sql);
		rt_sql_count(&sql, D, t, where.data);
		if (prepare(conn, sql.data, &bv, &st, err) || sqlite3_step(st) != SQLITE_ROW) {
			if (st)
				sql_err(err, db);
			json_decref(arr);
			goto out;
		}
		*total = sqlite3_column_int64(st, 0);
	}
	*rows = arr;
	rc = 0;
out:
	release(conn, st);
	if (is_txn)
		exec_cached(conn, "COMMIT"); /* read only: nothing to lose */
	op_deinit(&o);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&where);
	rt_buf_deinit(&sql);
	free(outs);
	return rc;
}

/* ---- writes ---- */

/*
 * Every write runs with a struct rt_store_cas whose ctx is its struct op:
 * the projection and the output array of the rows written are the same for
 * the plain and the conflict-controlled paths.
 */

static void wake_changes(struct sqlite_store *s)
{
	pthread_mutex_lock(&s->mu);
	s->writes++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

/* A row from SELECT * or RETURNING * (every column, in table order), typed. */
static json_t *full_row(sqlite3_stmt *st, const struct rt_store_table *t)
{
	json_t *full = json_object();
	for (size_t i = 0; i < t->n_cols; i++)
		json_object_set_new(full, t->cols[i].name,
				    typed_from_stmt(t->cols[i].type, st, (int)i));
	return full;
}

/*
 * Runs st (… RETURNING *), checking each row written with chk (may be NULL)
 * and appending it, projected by the select, to cas->out. With
 * is_pk_checked, a row with a NULL primary key fails the write (Postgres
 * refuses one; SQLite allows it outside INTEGER PRIMARY KEY). *n_rows (may
 * be NULL) gets the number of rows.
 */
/* Appends n empty objects to out (when not NULL): rows written that are
 * wanted for their count alone. */
static void append_counted(json_t *out, size_t n)
{
	for (size_t i = 0; out && i < n; i++)
		json_array_append_new(out, json_object());
}

static int step_rows(const struct rt_store_cas *cas, sqlite3_stmt *st,
		     const struct rt_store_table *t, bool is_pk_checked,
		     const struct row_check *chk, size_t *n_rows, struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	bool is_checked = chk && chk->n;
	size_t n = 0;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		n++;
		for (size_t i = 0; is_pk_checked && i < t->n_cols; i++) {
			if (t->cols[i].is_pk && sqlite3_column_type(st, (int)i) == SQLITE_NULL) {
				sqlite3_reset(st);
				set_err(err, 400, "23502", NULL,
					"null value in column \"%s\" of relation \"%s\" violates "
					"not-null constraint",
					t->cols[i].name, t->name);
				return -1;
			}
		}
		if (!cas->out && !is_checked)
			continue;
		if (o->is_counted && !is_checked) {
			append_counted(cas->out, 1);
			continue;
		}
		json_t *full = full_row(st, t);
		int rc = is_checked ? row_check_run(chk, full, err) : 0;
		if (!rc && cas->out)
			json_array_append_new(cas->out,
					      rt_store_project(full, cas->outs, cas->n_outs));
		json_decref(full);
		if (rc) {
			sqlite3_reset(st);
			return -1;
		}
	}
	if (step != SQLITE_DONE) {
		sql_err(err, o->conn->db);
		return -1;
	}
	if (n_rows)
		*n_rows = n;
	return 0;
}

/* Postgres' details for a duplicate key, "Key (a, b)=(1, x) already exists.",
 * from SQLite's "UNIQUE constraint failed: t.a, t.b" and the row written. */
static void duplicate_details(struct rt_store_error *e, const json_t *row)
{
	const char *p = strchr(e->details, ':');
	if (!p)
		return;
	struct rt_buf names, values;
	rt_buf_init(&names);
	rt_buf_init(&values);
	for (p++; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *dot = strchr(p, '.');
		if (!dot)
			break;
		size_t n = strcspn(dot + 1, ",");
		char col[128];
		snprintf(col, sizeof col, "%.*s", (int)n, dot + 1);
		const json_t *v = json_object_get(row, col);
		char *txt = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY);
		rt_buf_printf(&names, "%s%s", names.len ? ", " : "", col);
		rt_buf_printf(&values, "%s%s", values.len ? ", " : "",
			      json_is_string(v) ? json_string_value(v) : txt ? txt : "null");
		free(txt);
		p = dot + 1 + n;
	}
	if (names.len) {
		snprintf(e->details, sizeof e->details, "Key (%s)=(%s) already exists.", names.data,
			 values.data);
		rt_utf8_truncate(e->details);
	}
	rt_buf_deinit(&names);
	rt_buf_deinit(&values);
}

/* Runs one INSERT statement with bv bound. Without RETURNING (is_returning
 * false) the rows are counted, not read back. */
static int run_insert(const struct rt_store_cas *cas, const struct rt_write *w, const json_t *row,
		      const char *sql, const struct rt_sql_binds *bv, const struct row_check *chk,
		      bool is_returning, size_t *n_rows, struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	const struct rt_store_table *t = w->table;
	sqlite3_stmt *st;
	if (prepare(o->conn, sql, bv, &st, err))
		return -1;
	int rc = step_rows(cas, st, t, true, chk, n_rows, err);
	if (!rc && !is_returning) {
		*n_rows = (size_t)sqlite3_changes(o->conn->db);
		append_counted(cas->out, *n_rows);
	}
	release(o->conn, st);
	if (rc && !strcmp(err->code, "23505"))
		duplicate_details(err, row);
	return rc;
}

/* The rows the checks of an insert and of an upsert's update see. */
struct insert_checks {
	struct row_check insert, update;
	bool rowid_key; /* the key is the rowid: numbered when NULL */
};

/* Whether t's primary key is SQLite's rowid (one column declared INTEGER). */
static bool is_rowid_key(sqlite3 *db, const struct rt_store_table *t)
{
	const struct rt_store_column *key = NULL;
	for (size_t i = 0; i < t->n_cols; i++) {
		if (!t->cols[i].is_pk)
			continue;
		if (key)
			return false;
		key = &t->cols[i];
	}
	const char *decl = NULL;
	return key &&
	       sqlite3_table_column_metadata(db, "main", t->name, key->name, &decl, NULL, NULL, NULL,
					     NULL) == SQLITE_OK &&
	       decl && !strcasecmp(decl, "integer");
}

/* Whether the row written (the columns names[0..n) of row) leaves no key
 * column NULL. */
static bool is_key_given(const struct rt_store_table *t, bool rowid_key, const json_t *row,
			 const struct rt_store_column *const *names, size_t n)
{
	if (rowid_key)
		return true;
	for (size_t i = 0; i < t->n_cols; i++) {
		if (!t->cols[i].is_pk)
			continue;
		bool is_written = false;
		for (size_t j = 0; j < n && !is_written; j++)
			is_written = names[j] == &t->cols[i];
		const json_t *v = json_object_get(row, t->cols[i].name);
		if (!is_written || !v || json_is_null(v))
			return false;
	}
	return true;
}

/*
 * Inserts one row. An upsert that merges is two statements: the insert
 * (DO NOTHING on a conflict) and, when the row exists, the update, whose
 * WHERE holds what PostgreSQL checks on that path: the proposed row against
 * INSERT's WITH CHECK, the existing row against UPDATE's and SELECT's USING.
 * An existing row that fails them refuses the write (42501), as PostgreSQL
 * does for ON CONFLICT DO UPDATE.
 */
static int insert_row(const struct rt_store_cas *cas, const struct rt_write *w, const json_t *row,
		      const struct insert_checks *chk, struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	const struct rt_store_table *t = w->table;
	int rc = -1;
	struct rt_buf sql, where;
	struct rt_sql_binds bv;
	rt_buf_init(&sql);
	rt_buf_init(&where);
	rt_sql_binds_init(&bv);
	const struct rt_store_column **names = rt_xcalloc(t->n_cols + 1, sizeof *names);
	size_t n;
	if (rt_sql_insert_columns(w, row, names, &n, err))
		goto out;
	rt_sql_insert_head(&sql, &bv, D, t, names, n, row);
	if (w->kind == RT_WRITE_UPSERT) {
		if (rt_sql_conflict_target(&sql, w, err))
			goto out;
		rt_buf_append_str(&sql, " DO NOTHING");
	}
	/* Read back unless only counted, unchecked, and the key cannot be NULL
	 * (SQLite lets a NULL into a key that is not the rowid: 23502 below). */
	bool is_returning =
		!o->is_counted || chk->insert.n || !is_key_given(t, chk->rowid_key, row, names, n);
	if (is_returning)
		rt_buf_append_str(&sql, " RETURNING *");
	size_t n_rows;
	if (run_insert(cas, w, row, sql.data, &bv, &chk->insert, is_returning, &n_rows, err))
		goto out;
	if (n_rows || w->kind != RT_WRITE_UPSERT || w->is_ignore_duplicates || !n) {
		rc = 0;
		goto out;
	}
	/* The row exists: the update path. */
	rt_buf_reset(&sql);
	rt_sql_binds_deinit(&bv);
	rt_sql_insert_head(&sql, &bv, D, t, names, n, row);
	if (rt_sql_conflict_target(&sql, w, err))
		goto out;
	rt_sql_do_update(&sql, names, n);
	if (policy_sql(o, t, RT_POLICY_INSERT, true, "excluded", &where, &bv, err) ||
	    target_where(o, t, NULL, RT_POLICY_UPDATE, &where, &bv, err))
		goto out;
	rt_sql_where_clause(&sql, where.data);
	rt_buf_append_str(&sql, " RETURNING *");
	if (run_insert(cas, w, row, sql.data, &bv, &chk->update, true, &n_rows, err))
		goto out;
	rc = n_rows ? 0 : rls_err(err, o, t);
out:
	free(names);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&sql);
	rt_buf_deinit(&where);
	return rc;
}

static int insert_rows(const struct rt_store_cas *cas, const struct rt_write *w,
		       struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	struct insert_checks chk;
	row_check_init(&chk.insert, o, w->table, RT_POLICY_INSERT);
	row_check_init(&chk.update, o, w->table, RT_POLICY_UPDATE);
	chk.rowid_key = o->is_counted && is_rowid_key(o->conn->db, w->table);
	int rc = 0;
	size_t i;
	const json_t *row;
	json_array_foreach(w->rows, i, row) {
		rc = rt_store_check_row_keys(w->table, row, err);
		if (!rc)
			rc = insert_row(cas, w, row, &chk, err);
		if (rc)
			break;
	}
	row_check_deinit(&chk.insert);
	row_check_deinit(&chk.update);
	return rc;
}

/* UPDATE or DELETE of the rows the filter selects among those the
 * requester may reach; rows its policies hide are left alone. */
static int update_or_delete(const struct rt_store_cas *cas, const struct rt_write *w,
			    struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	const struct rt_store_table *t = w->table;
	bool is_update = w->kind == RT_WRITE_UPDATE;
	struct rt_buf sql, where;
	struct rt_sql_binds bv; /* the SET values, then the WHERE's: their order in the text */
	struct row_check chk = {0};
	rt_buf_init(&sql);
	rt_buf_init(&where);
	rt_sql_binds_init(&bv);
	int rc = -1;
	sqlite3_stmt *st = NULL;
	if (is_update && rt_store_check_row_keys(t, w->rows, err))
		goto out;
	if (is_update ? rt_sql_update(&sql, &bv, D, t, w->rows, err)
		      : (rt_sql_delete(&sql, D, t), 0))
		goto out;
	if (target_where(o, t, w->where ? &w->where->where : NULL,
			 is_update ? RT_POLICY_UPDATE : RT_POLICY_DELETE, &where, &bv, err))
		goto out;
	rt_sql_where_clause(&sql, where.data);
	rt_buf_append_str(&sql, " RETURNING *");
	if (prepare(o->conn, sql.data, &bv, &st, err))
		goto out;
	if (is_update)
		row_check_init(&chk, o, t, RT_POLICY_UPDATE);
	rc = step_rows(cas, st, t, is_update, &chk, NULL, err);
out:
	row_check_deinit(&chk);
	release(o->conn, st);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&sql);
	rt_buf_deinit(&where);
	return rc;
}

/* ---- conflict control and idempotency (docs/writes.md) ---- */

static int control_err(struct rt_store_error *e, const char *msg)
{
	set_err(e, 400, "RTS400", NULL, "%s", msg);
	return -1;
}

/* Reads the one row st selects as a full typed object (*row NULL when none). */
static int fetch_one(sqlite3 *db, sqlite3_stmt *st, const struct rt_store_table *t, json_t **row,
		     struct rt_store_error *err)
{
	*row = NULL;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (*row) {
			json_decref(*row);
			*row = NULL;
			return control_err(err, "A write with a base must target one row: the "
						"filter matched more (filter on the primary key)");
		}
		*row = full_row(st, t);
	}
	if (step != SQLITE_DONE) {
		sql_err(err, db);
		json_decref(*row);
		*row = NULL;
		return -1;
	}
	return 0;
}

/* The row of t whose primary key row names, if the requester may select it
 * (*out NULL when none). */
static int select_by_pk(const struct rt_store_cas *cas, const struct rt_write *w,
			const json_t *row, json_t **out, struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	const struct rt_store_table *t = w->table;
	struct rt_buf sql;
	struct rt_sql_binds bv;
	rt_buf_init(&sql);
	rt_sql_binds_init(&bv);
	sqlite3_stmt *st = NULL;
	int rc = -1;
	*out = NULL;
	if (rt_sql_select_pk(&sql, &bv, D, t, row, err) ||
	    policy_sql(o, t, RT_POLICY_SELECT, false, NULL, &sql, &bv, err) ||
	    prepare(o->conn, sql.data, &bv, &st, err))
		goto out;
	rc = fetch_one(o->conn->db, st, t, out, err);
out:
	release(o->conn, st);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&sql);
	return rc;
}

/* The row an UPDATE or DELETE's filter selects among those the requester
 * may reach (*out NULL when none). */
static int select_by_where(const struct rt_store_cas *cas, const struct rt_write *w,
			   json_t **out, struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	const struct rt_store_table *t = w->table;
	struct rt_buf sql, where;
	struct rt_sql_binds bv;
	rt_buf_init(&sql);
	rt_buf_init(&where);
	rt_sql_binds_init(&bv);
	sqlite3_stmt *st = NULL;
	int rc = -1;
	*out = NULL;
	if (!w->where) {
		control_err(err, "A write with a base must target one row: add a filter on the "
				 "primary key");
		goto out;
	}
	if (target_where(o, t, &w->where->where,
			 w->kind == RT_WRITE_DELETE ? RT_POLICY_DELETE : RT_POLICY_UPDATE, &where,
			 &bv, err))
		goto out;
	rt_sql_select_where(&sql, D, t, where.len ? where.data : D->sql_true);
	if (prepare(o->conn, sql.data, &bv, &st, err))
		goto out;
	rc = fetch_one(o->conn->db, st, t, out, err);
out:
	release(o->conn, st);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&sql);
	rt_buf_deinit(&where);
	return rc;
}

/* UPDATE t SET <apply> (or DELETE) WHERE <current's primary key> RETURNING *,
 * under the command's USING: a row it hides refuses the update (42501, an
 * upsert's existing row). */
static int write_by_pk(const struct rt_store_cas *cas, const struct rt_write *w,
		       const json_t *current, const json_t *apply, struct rt_store_error *err)
{
	const struct op *o = cas->ctx;
	const struct rt_store_table *t = w->table;
	struct rt_buf sql;
	struct rt_sql_binds bv;
	struct row_check chk = {0};
	rt_buf_init(&sql);
	rt_sql_binds_init(&bv);
	sqlite3_stmt *st = NULL;
	int rc = -1;
	if (rt_sql_write_pk(&sql, &bv, D, t, current, apply, err) ||
	    policy_sql(o, t, apply ? RT_POLICY_UPDATE : RT_POLICY_DELETE, false, NULL, &sql, &bv,
		       err))
		goto out;
	rt_buf_append_str(&sql, " RETURNING *");
	if (prepare(o->conn, sql.data, &bv, &st, err))
		goto out;
	if (apply)
		row_check_init(&chk, o, t, RT_POLICY_UPDATE);
	size_t n_rows;
	rc = step_rows(cas, st, t, apply != NULL, &chk, &n_rows, err);
	if (!rc && apply && !n_rows)
		rc = rls_err(err, o, t);
out:
	row_check_deinit(&chk);
	release(o->conn, st);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&sql);
	return rc;
}

/*
 * Looks the key up. Returns 1 when it was used before with the same
 * fingerprint (res and *out hold the first result), 0 when it is new, -1 on
 * an error (another fingerprint: 422 RTS422).
 */
static int key_lookup(struct conn *c, const char *key, const unsigned char fp[32],
		      uint64_t window_ms, json_t **out, struct rt_write_result *res,
		      struct rt_store_error *err)
{
	sqlite3_stmt *st;
	/* A key older than the window is forgotten even before pruning removes it. */
	if (prepare(c, D->key_lookup_sql, NULL, &st, err))
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, rt_wall_ms() - (int64_t)window_ms);
	int rc = 0;
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		const void *had = sqlite3_column_blob(st, 0);
		json_t *r = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
		if (sqlite3_column_bytes(st, 0) != 32 || memcmp(had, fp, 32) || !r) {
			set_err(err, 422, "RTS422", NULL,
				"The idempotency key was already used for a different request");
			rc = -1;
		} else {
			rt_write_result_parse(r, res, out);
			rc = 1;
		}
		json_decref(r);
	} else if (step != SQLITE_DONE) {
		sql_err(err, c->db);
		rc = -1;
	}
	release(c, st);
	return rc;
}

static int key_record(struct conn *c, const char *key, const unsigned char fp[32],
		      const struct rt_write_result *res, const json_t *rows,
		      struct rt_store_error *err)
{
	sqlite3_stmt *st;
	if (prepare(c, D->key_record_sql, NULL, &st, err))
		return -1;
	json_t *r = rt_write_result_json(res, rows);
	char *txt = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(r);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, fp, 32, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, txt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, rt_wall_ms());
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	if (rc)
		sql_err(err, c->db);
	release(c, st);
	free(txt);
	return rc;
}

static int sq_write(struct rt_store *base, const struct rt_write *w, json_t **rows,
		   struct rt_store_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	struct conn *conn = thread_conn(s, err);
	if (!conn)
		return -1;
	sqlite3 *db = conn->db;
	*rows = NULL;
	if (w->idempotency_key && (!*w->idempotency_key ||
				   strlen(w->idempotency_key) > RT_STORE_MAX_KEY))
		return control_err(err, "The idempotency key must have 1 to 255 bytes");
	struct rt_store_output *outs = NULL;
	size_t n_outs;
	bool is_grouped; /* never: rt_store_write() refuses aggregates */
	struct rt_write_result res = {.outcome = RT_WRITE_APPLIED};
	struct op o;
	op_init(&o, s, conn, w->who, (w->wants_rows || w->wants_single) && !w->is_count_only);
	o.is_counted = w->is_count_only && !w->base;
	json_t *out = NULL;
	if (rt_store_outputs(w->table, w->where, &outs, &n_outs, &is_grouped, err))
		goto err;
	out = w->wants_rows || w->wants_single ? json_array() : NULL;
	if (exec_cached(conn, "BEGIN IMMEDIATE") != SQLITE_OK) {
		sql_err(err, db);
		goto err;
	}
	unsigned char fp[32];
	int rc = 0;
	if (w->idempotency_key) {
		rt_store_fingerprint(w->fingerprint, fp);
		rc = key_lookup(conn, w->idempotency_key, fp, s->base.key_window_ms, &out, &res, err);
	}
	sqlite3_int64 before = sqlite3_total_changes64(db);
	if (rc == 0) {
		const struct rt_store_cas cas = {
			.ctx = &o,
			.outs = outs,
			.n_outs = n_outs,
			.out = out,
			.select_where = select_by_where,
			.select_pk = select_by_pk,
			.write_pk = write_by_pk,
			.insert = insert_rows,
		};
		if (w->base)
			rc = rt_store_controlled_write(&cas, w, &res, err);
		else if (w->kind == RT_WRITE_INSERT || w->kind == RT_WRITE_UPSERT)
			rc = insert_rows(&cas, w, err);
		else
			rc = update_or_delete(&cas, w, err);
		/* A conflict is answered as such, whatever the representation asked. */
		if (!rc && w->wants_single && res.outcome != RT_WRITE_CONFLICT &&
		    json_array_size(out) != 1) {
			char details[64];
			snprintf(details, sizeof details, "The result contains %zu rows",
				 json_array_size(out));
			set_err(err, 406, "PGRST116", details,
				"JSON object requested, multiple (or no) rows returned");
			rc = -1;
		}
		if (!rc && sqlite3_total_changes64(db) != before)
			res.position = conn_last_pos(conn);
		if (!rc && w->idempotency_key)
			rc = key_record(conn, w->idempotency_key, fp, &res, out, err);
	}
	if (rc < 0 || exec_cached(conn, "COMMIT") != SQLITE_OK) {
		if (rc >= 0)
			sql_err(err, db);
		exec_cached(conn, "ROLLBACK");
		goto err;
	}
	free(outs);
	op_deinit(&o);
	if (!res.is_replayed)
		wake_changes(s);
	if (w->result)
		*w->result = res;
	else
		rt_write_result_deinit(&res);
	*rows = out;
	return 0;
err:
	rt_write_result_deinit(&res);
	json_decref(out);
	free(outs);
	op_deinit(&o);
	return -1;
}

/* ---- change stream ---- */

static json_t *typed_row(const struct rt_store_table *t, const char *txt)
{
	if (!txt)
		return NULL;
	json_t *row = json_loads(txt, 0, NULL);
	if (!json_is_object(row)) {
		json_decref(row);
		return json_object();
	}
	/* Converted in place; a key of a column no longer in the table (or
	 * written by another writer) makes the row rebuilt with the table's
	 * columns only. */
	size_t n_known = 0;
	for (size_t i = 0; i < t->n_cols; i++)
		n_known += json_object_get(row, t->cols[i].name) != NULL;
	json_t *only = json_object_size(row) > n_known ? json_object() : NULL;
	for (size_t i = 0; i < t->n_cols; i++) {
		const char *name = t->cols[i].name;
		json_t *v = json_object_get(row, name);
		json_t *typed = v ? typed_from_json(t->cols[i].type, v) : json_null();
		if (only)
			json_object_set_new(only, name, typed);
		else if (typed != v)
			json_object_set_new(row, name, typed);
		else
			json_decref(typed);
	}
	if (only) {
		json_decref(row);
		return only;
	}
	return row;
}

static int sq_changes_after(struct rt_store *base, uint64_t after, size_t max, struct rt_change **out,
			   size_t *n, uint64_t *oldest, struct rt_store_scan *scan)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	return rt_store_log_read(base, s->change_db, &s->changes_st, "_rtsync_changes", false, after,
				 max, out, n, oldest, scan, typed_row);
}

static uint64_t sq_last_pos(struct rt_store *base)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	return last_pos_of(s->change_db);
}

static uint64_t data_version(struct sqlite_store *s)
{
	uint64_t v = 0;
	if (!s->version_st && sqlite3_prepare_v3(s->change_db, "PRAGMA data_version", -1,
						 SQLITE_PREPARE_PERSISTENT, &s->version_st,
						 NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_step(s->version_st) == SQLITE_ROW)
		v = (uint64_t)sqlite3_column_int64(s->version_st, 0);
	sqlite3_reset(s->version_st);
	return v;
}

static bool sq_wait(struct rt_store *base, uint64_t *version, unsigned timeout_ms)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	/* Writes through rtsync signal the condition at once; others (the sqlite3
	 * shell, another process) show up in data_version within POLL_MS. */
	uint64_t deadline = rt_mono_ms() + timeout_ms;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		uint64_t seen = s->writes;
		pthread_mutex_unlock(&s->mu);
		uint64_t v = data_version(s) + (seen << 32);
		if (v != *version) {
			*version = v;
			return true;
		}
		uint64_t now = rt_mono_ms();
		if (now >= deadline)
			return false;
		unsigned wait = (unsigned)(deadline - now < POLL_MS ? deadline - now : POLL_MS);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)wait * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&s->mu);
		if (s->writes == seen)
			pthread_cond_timedwait(&s->cond, &s->mu, &ts);
		pthread_mutex_unlock(&s->mu);
	}
}

static void sq_prune(struct rt_store *base)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	rt_store_log_prune(s->change_db, "_rtsync_changes", s->retain_count, s->retain_ms);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->change_db, "DELETE FROM _rtsync_idempotency WHERE ts < ?", -1,
			       &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)(rt_wall_ms() - (int64_t)s->base.key_window_ms));
	if (sqlite3_step(st) != SQLITE_DONE)
		rt_warn("store: pruning idempotency keys: %s", sqlite3_errmsg(s->change_db));
	sqlite3_finalize(st);
}

/* ---- shared documents ---- */

static sqlite3 *doc_db(struct rt_store *base)
{
	struct rt_store_error e;
	struct conn *c = thread_conn((struct sqlite_store *)base, &e);
	if (!c)
		rt_error("store: documents: %s", e.message);
	return c ? c->db : NULL;
}

static int doc_fail(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
	rt_error("store: documents: %s: %s", what, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return -1;
}

static int sq_doc_read(struct rt_store *base, const char *doc, rt_store_doc_row_fn *row, void *ctx)
{
	sqlite3 *db = doc_db(base);
	sqlite3_stmt *st = NULL;
	if (!db)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT seq, data FROM _rtsync_docs WHERE doc = ? ORDER BY seq",
			       -1, &st, NULL) != SQLITE_OK)
		return doc_fail(db, st, "reading");
	sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *data = sqlite3_column_blob(st, 1);
		size_t n = (size_t)sqlite3_column_bytes(st, 1);
		if (row((uint64_t)sqlite3_column_int64(st, 0), data ? data : (const uint8_t *)"", n,
			ctx))
			break;
	}
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return doc_fail(db, st, "reading");
	sqlite3_finalize(st);
	return 0;
}

static int sq_doc_append(struct rt_store *base, const char *doc, uint64_t seq, const uint8_t *data,
			 size_t data_len)
{
	sqlite3 *db = doc_db(base);
	sqlite3_stmt *st = NULL;
	if (!db)
		return -1;
	if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO _rtsync_docs (doc, seq, data) VALUES (?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK)
		return doc_fail(db, st, "appending");
	sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
	sqlite3_bind_blob64(st, 3, data, data_len, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return doc_fail(db, st, "appending");
	sqlite3_finalize(st);
	return 0;
}

static int sq_counter_next(struct rt_store *base, const char *name, uint64_t *value)
{
	sqlite3 *db = doc_db(base);
	sqlite3_stmt *st = NULL;
	if (!db)
		return -1;
	if (sqlite3_prepare_v2(db, "INSERT INTO _rtsync_counters (name, value) VALUES (?, 1)"
				   " ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
			       -1, &st, NULL) != SQLITE_OK)
		return doc_fail(db, st, "counting");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW)
		return doc_fail(db, st, "counting");
	*value = (uint64_t)sqlite3_column_int64(st, 0);
	/* RETURNING: the change is committed when the statement completes */
	int step = sqlite3_step(st);
	if (step != SQLITE_DONE)
		return doc_fail(db, st, "counting");
	sqlite3_finalize(st);
	return 0;
}

static int sq_doc_compact(struct rt_store *base, const char *doc, uint64_t upto,
			  const uint8_t *data, size_t data_len)
{
	sqlite3 *db = doc_db(base);
	sqlite3_stmt *st = NULL;
	if (!db)
		return -1;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return doc_fail(db, NULL, "compacting");
	if (sqlite3_prepare_v2(db, "DELETE FROM _rtsync_docs WHERE doc = ? AND seq <= ?", -1, &st,
			       NULL) != SQLITE_OK)
		goto err;
	sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)upto);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto err;
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db, "INSERT INTO _rtsync_docs (doc, seq, data) VALUES (?, ?, ?)", -1,
			       &st, NULL) != SQLITE_OK)
		goto err;
	sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)upto);
	sqlite3_bind_blob64(st, 3, data, data_len, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto err;
	sqlite3_finalize(st);
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto err_nostmt;
	return 0;
err:
	sqlite3_finalize(st);
err_nostmt:
	rt_error("store: documents: compacting %s: %s", doc, sqlite3_errmsg(db));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int sq_doc_size(struct rt_store *base, const char *doc, uint64_t *n_updates, uint64_t *bytes)
{
	sqlite3 *db = doc_db(base);
	sqlite3_stmt *st = NULL;
	*n_updates = *bytes = 0;
	if (!db)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(length(data)), 0) FROM _rtsync_docs"
				   " WHERE doc = ?", -1, &st, NULL) != SQLITE_OK)
		return doc_fail(db, st, "counting");
	sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW)
		return doc_fail(db, st, "counting");
	*n_updates = (uint64_t)sqlite3_column_int64(st, 0);
	*bytes = (uint64_t)sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	return 0;
}

static const struct rt_store_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.read = sq_read,
	.write = sq_write,
	.changes_after = sq_changes_after,
	.last_pos = sq_last_pos,
	.wait = sq_wait,
	.prune = sq_prune,
	.doc_read = sq_doc_read,
	.doc_append = sq_doc_append,
	.counter_next = sq_counter_next,
	.doc_compact = sq_doc_compact,
	.doc_size = sq_doc_size,
};
