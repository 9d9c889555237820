/*
 * The PostgreSQL store. Reads and writes run as SQL generated from the parsed
 * PostgREST query on a pool of libpq connections; PostgreSQL builds the JSON
 * (json_agg over the projected rows), as PostgREST does. Changes come from a
 * logical replication connection with the built-in pgoutput plugin on a
 * publication and a slot rtsync manages. The replication thread decodes each
 * transaction into a retained log, a local SQLite file, commits it there and
 * only then confirms the transaction's end LSN to PostgreSQL: a restart of
 * rtsync or PostgreSQL neither loses nor repeats a change (docs/store.md).
 */
#include "store/store.h"
#include "store/sql.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "store/pgoutput.h"
#include "store/store_int.h"

#define LOG_BUSY_MS 5000
#define STATUS_EVERY_MS 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define BATCH_MAX_CHANGES 50000
#define BATCH_MAX_MS 20
#define CONNECT_TIMEOUT_S "10"
#define RELAY_RETRY_MS 1000   /* publishing again after the relay failed */
#define LEADER_TRY_MS 500     /* a follower tries for the leadership this often */
#define LOCK_CHECK_MS 100     /* a leader checks its lock's session this often */
#define SILENCE_MAX_MS 120000 /* the server sends keepalives every wal_sender_timeout/2 */
#define MAX_PARAMS 65535
#define SESSION_OPTIONS "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=1"

struct pool_conn {
	PGconn *conn;
	bool is_busy;
};

/* A relation as the stream describes it, mapped onto the schema. */
struct rel {
	uint32_t relid;
	const struct rt_store_table *table; /* NULL: not served */
	char replident;
	size_t n_cols;
	bool *is_key;
	const struct rt_store_column **cols; /* NULL where the schema lacks it */
	struct rel *next;
};

struct pg_store {
	struct rt_store base; /* first: the ops and the schema */
	char *conninfo;
	char *name;
	char *log_path;
	uint64_t retain_count, retain_ms;

	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cond;
	struct pool_conn *pool;
	size_t n_pool;

	pthread_mutex_t mu; /* guards writes and the stop flag's wake-up */
	pthread_cond_t cond;
	uint64_t writes;    /* bumped when a transaction reaches the log */
	uint64_t committed_pos; /* the log's last committed position */

	sqlite3 *log_db;    /* the change thread's connection to the log */

	/* the replication thread */
	pthread_t thread;
	bool is_started;
	atomic_bool is_running;
	sqlite3 *repl_db;
	sqlite3_stmt *ins_st;
	uint64_t commit_lsn; /* last retained transaction: commit LSN */
	uint64_t end_lsn;    /* and its end, confirmed to the server */
	uint64_t batch_pos;  /* last position written in the open batch */
	struct rel *rels;

	/* several nodes (store.h, struct rt_store_relay) */
	struct rt_store_relay relay;
	bool has_relay;
	PGconn *lock_conn;        /* holds the advisory lock while leader */
	atomic_bool is_leader;
	uint64_t published_pos;   /* the log is in the relay up to here */
	uint64_t published_end;   /* and PostgreSQL may be told up to here */
	bool is_relay_failed;     /* the last publish failed: check the relay's top first */
	sqlite3_stmt *put_st;     /* a change under a given position (from the relay) */

	/* row-level security (docs/security.md) */
	bool uses_roles;       /* REST runs under the requester's role */
	char *rls_oids;        /* "{oid,…}": the served tables and realtime.messages */
	pthread_t watch_thread;
	bool is_watching;
	char fingerprint[40];  /* of the policies and privileges last loaded */
	pthread_mutex_t sel_mu; /* the selectable cache */
	struct sel_entry *sel;
	uint64_t sel_version;  /* policies version the cache was filled at */
};

/* A role's selectable columns of one table (rt_store_selectable). */
struct sel_entry {
	char *role;
	const struct rt_store_table *table;
	bool *selectable;
	struct sel_entry *next;
};

static const struct rt_store_ops pg_ops;

/* ---- connections ---- */

/* PostgreSQL's notices (`… already exists, skipping`) go to the debug log. */
static void on_notice(void *arg, const char *msg)
{
	(void)arg;
	rt_debug("store: postgres: %.*s", (int)strcspn(msg, "\n"), msg);
}

static PGconn *connect_pg(const char *conninfo, bool is_replication)
{
	const char *keys[] = {"dbname", "options", "application_name", "connect_timeout",
			      "replication", NULL};
	const char *vals[] = {conninfo, SESSION_OPTIONS, "rtsync", CONNECT_TIMEOUT_S,
			      is_replication ? "database" : NULL, NULL};
	if (!is_replication)
		keys[4] = NULL;
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c)
		PQsetNoticeProcessor(c, on_notice, NULL);
	return c;
}

/* The first line of libpq's message, for logs and errors. */
static const char *pq_msg(const PGconn *c, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", c ? PQerrorMessage(c) : "out of memory");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

/* ---- errors ---- */

/* The HTTP status PostgREST answers for a SQLSTATE. */
static int sqlstate_status(const char *st)
{
	static const struct {
		const char *prefix;
		int status;
	} map[] = {
		{"23503", 409}, {"23505", 409}, {"25006", 405}, {"42883", 404}, {"42P01", 404},
		{"42501", 403}, {"42P17", 500}, {"08", 503},   {"09", 500},   {"0L", 403},
		{"0P", 403},    {"23", 400},    {"22", 400},   {"25", 500},   {"28", 403},
		{"2D", 500},    {"38", 500},    {"39", 500},   {"3B", 500},   {"40", 500},
		{"53", 503},    {"54", 500},    {"55", 500},   {"57", 503},   {"58", 500},
		{"F0", 500},    {"HV", 500},    {"P0001", 400}, {"P0", 500},  {"XX", 500},
		{"42", 400},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strncmp(st, map[i].prefix, strlen(map[i].prefix)))
			return map[i].status;
	return 400;
}

/* A failed result (or connection) as a PostgREST-shaped error. */
static void result_err(struct rt_store_error *e, PGconn *c, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!state || PQstatus(c) == CONNECTION_BAD) {
		char buf[256];
		rt_store_set_err(e, 503, "PGRST001", NULL, "Database client error: %s",
				 pq_msg(c, buf, sizeof buf));
		return;
	}
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *det = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	rt_store_set_err(e, sqlstate_status(state), state, det, "%s", msg ? msg : "error");
}

/* ---- the pool ---- */

static PGconn *pool_get(struct pg_store *s, struct rt_store_error *e)
{
	pthread_mutex_lock(&s->pool_mu);
	struct pool_conn *pc = NULL;
	for (;;) {
		for (size_t i = 0; i < s->n_pool && !pc; i++)
			if (!s->pool[i].is_busy)
				pc = &s->pool[i];
		if (pc)
			break;
		pthread_cond_wait(&s->pool_cond, &s->pool_mu);
	}
	pc->is_busy = true;
	pthread_mutex_unlock(&s->pool_mu);
	if (!pc->conn)
		pc->conn = connect_pg(s->conninfo, false);
	else if (PQstatus(pc->conn) != CONNECTION_OK ||
		 PQtransactionStatus(pc->conn) != PQTRANS_IDLE)
		PQreset(pc->conn); /* PostgreSQL restarted, the network failed, or a
				    * transaction was left behind by a failed ROLLBACK */
	if (!pc->conn || PQstatus(pc->conn) != CONNECTION_OK) {
		char buf[256];
		rt_store_set_err(e, 503, "PGRST000", NULL, "Database connection error: %s",
				 pq_msg(pc->conn, buf, sizeof buf));
		pthread_mutex_lock(&s->pool_mu);
		pc->is_busy = false;
		pthread_cond_signal(&s->pool_cond);
		pthread_mutex_unlock(&s->pool_mu);
		return NULL;
	}
	return pc->conn;
}

static void pool_put(struct pg_store *s, PGconn *c)
{
	pthread_mutex_lock(&s->pool_mu);
	for (size_t i = 0; i < s->n_pool; i++) {
		if (s->pool[i].conn == c) {
			s->pool[i].is_busy = false;
			break;
		}
	}
	pthread_cond_signal(&s->pool_cond);
	pthread_mutex_unlock(&s->pool_mu);
}

/* ---- SQL (built by store/sql.h) ---- */

#define D (&rt_sql_postgres)

/* Runs sql with the n texts vals; returns the result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) or NULL with e set. */
static PGresult *run(PGconn *c, const char *sql, const char *const *vals, size_t n,
		     struct rt_store_error *e)
{
	if (n > MAX_PARAMS) {
		rt_store_set_err(e, 400, "PGRST100", NULL,
				 "too many filter values (%zu; PostgreSQL takes at most %d)", n,
				 MAX_PARAMS);
		return NULL;
	}
	PGresult *res = PQexecParams(c, sql, (int)n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	result_err(e, c, res);
	PQclear(res);
	return NULL;
}

/* run() with a statement's binds. */
static PGresult *run_binds(PGconn *c, const char *sql, const struct rt_sql_binds *bv,
			   struct rt_store_error *e)
{
	return run(c, sql, bv->texts, bv->n, e);
}

/* Parses the json_agg text of row 0, column col. */
static json_t *rows_of(PGresult *res, int col, struct rt_store_error *e)
{
	const char *txt = PQgetisnull(res, 0, col) ? "[]" : PQgetvalue(res, 0, col);
	json_error_t jerr;
	json_t *rows = json_loads(txt, 0, &jerr);
	if (!rows) /* an integer beyond 64 bits (numeric, json): read as doubles */
		rows = json_loads(txt, JSON_DECODE_INT_AS_REAL, &jerr);
	if (!json_is_array(rows)) {
		json_decref(rows);
		rt_store_set_err(e, 500, "XX000", NULL, "cannot read the rows PostgreSQL sent: %s",
				 jerr.text);
		return NULL;
	}
	return rows;
}

static int exec_simple(PGconn *c, const char *sql, struct rt_store_error *e)
{
	PGresult *res = run(c, sql, NULL, 0, e);
	PQclear(res);
	return res ? 0 : -1;
}

/* ---- the request context (PostgREST's, docs/security.md) ---- */

/* PostgREST's status for errors of a requester's statement: insufficient
 * privilege is 401 for anon and 403 otherwise; a role that does not exist
 * is a JWT error (401). */
static void who_status(struct rt_store_error *e, const struct rt_auth *who)
{
	if (!who)
		return;
	if (!strcmp(e->code, "42501"))
		e->status = !strcmp(who->role, "anon") ? 401 : 403;
	else if (!strcmp(e->code, "22023") && !strncmp(e->message, "role ", 5) &&
		 strstr(e->message, "does not exist"))
		e->status = 401;
}

/*
 * Inside the open transaction: switches to who's role and sets the claims
 * as PostgREST does (request.jwt.claims, the legacy request.jwt.claim.<name>
 * for each top-level claim, request.method, request.path). One round trip.
 */
static int apply_context(PGconn *c, const struct rt_auth *who, const char *method,
			 const struct rt_store_table *t, struct rt_store_error *e)
{
	/* "none" would mean RESET ROLE: the connection role's rights */
	if (!*who->role || !strcasecmp(who->role, "none")) {
		rt_store_set_err(e, 401, "22023", NULL, "role \"%s\" does not exist", who->role);
		return -1;
	}
	char *claims = who->claims ? json_dumps(who->claims, JSON_COMPACT) : NULL;
	struct rt_buf path;
	rt_buf_init(&path);
	rt_buf_printf(&path, "/%s", t ? t->name : "");
	rt_buf_append_byte(&path, 0);
	const char *vals[] = {who->role, claims ? claims : "{}", method, (const char *)path.data};
	/* the claims first: the role's own rights do not matter to them */
	PGresult *res = run(c,
			    "SELECT set_config('request.jwt.claims', $2, true),"
			    " (SELECT count(set_config('request.jwt.claim.' || key, value, true))"
			    "  FROM json_each_text($2::json)"
			    "  WHERE key ~ '^[A-Za-z0-9_]{1,63}$' AND value IS NOT NULL),"
			    " set_config('request.method', $3, true),"
			    " set_config('request.path', $4, true),"
			    " set_config('role', $1, true)",
			    vals, 4, e);
	free(claims);
	rt_buf_deinit(&path);
	if (!res) {
		who_status(e, who);
		return -1;
	}
	PQclear(res);
	return 0;
}

static int set_context(struct pg_store *s, PGconn *c, const struct rt_auth *who,
		       const char *method, const struct rt_store_table *t,
		       struct rt_store_error *e)
{
	if (!who || !s->uses_roles)
		return 0;
	return apply_context(c, who, method, t, e);
}

/* Back to the connection role, for rtsync's own bookkeeping. */
static int reset_role(struct pg_store *s, PGconn *c, const struct rt_auth *who,
		      struct rt_store_error *e)
{
	if (!who || !s->uses_roles)
		return 0;
	PGresult *res = run(c, "SET LOCAL ROLE NONE", NULL, 0, e);
	PQclear(res);
	return res ? 0 : -1;
}

/* Parses a pg_snapshot's text, "xmin:xmax:xip,xip,…", into m. */
static int parse_snapshot(const char *text, struct rt_read_mark *m)
{
	char *end;
	errno = 0;
	m->xmin = strtoull(text, &end, 10);
	if (*end != ':')
		return -1;
	m->xmax = strtoull(end + 1, &end, 10);
	if (*end != ':' || errno || !m->xmax || m->xmin > m->xmax)
		return -1;
	size_t cap = 0;
	for (const char *p = end + 1; *p;) {
		uint64_t x = strtoull(p, &end, 10);
		if (end == p || errno || (*end && *end != ','))
			return -1;
		if (m->n_xip == cap) {
			cap = cap ? 2 * cap : 16;
			m->xip = rt_xrealloc(m->xip, cap * sizeof *m->xip);
		}
		m->xip[m->n_xip++] = x; /* ascending, as PostgreSQL prints them */
		p = *end ? end + 1 : end;
	}
	return 0;
}

/* In the read's REPEATABLE READ transaction, before its query: the
 * snapshot every statement of it sees, and the WAL insert position after
 * it (a transaction the snapshot sees has its commit record below). */
static int read_snapshot(PGconn *c, struct rt_read_mark *m, struct rt_store_error *err)
{
	PGresult *res = run(c,
			    PQserverVersion(c) >= 130000
				    ? "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text"
				    : "SELECT txid_current_snapshot()::text, pg_current_wal_insert_lsn()::text",
			    NULL, 0, err);
	if (!res)
		return -1;
	unsigned hi = 0, lo = 0;
	int rc = 0;
	if (PQntuples(res) != 1 || parse_snapshot(PQgetvalue(res, 0, 0), m) ||
	    sscanf(PQgetvalue(res, 0, 1), "%X/%X", &hi, &lo) != 2) {
		rt_store_set_err(err, 500, "RTS500", NULL, "unreadable snapshot \"%s\"",
				 PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
		rc = -1;
	}
	m->lsn = (uint64_t)hi << 32 | lo;
	PQclear(res);
	return rc;
}

static int pg_read(struct rt_store *base, const struct rt_read *r, json_t **rows,
		   long long *total, struct rt_store_error *err)
{
	struct pg_store *s = (struct pg_store *)base;
	const struct rt_store_table *t = r->table;
	const struct rt_query *q = r->query;
	struct rt_store_output *outs = NULL;
	size_t n_outs;
	bool is_grouped;
	struct rt_buf where, sql;
	struct rt_sql_binds p;
	rt_sql_binds_init(&p);
	PGconn *c = NULL;
	PGresult *res = NULL;
	bool in_txn = false;
	int rc = -1;
	rt_buf_init(&where);
	rt_buf_init(&sql);
	if (r->position || r->mark) { /* before the read: changes up to it show in the rows */
		pthread_mutex_lock(&s->mu);
		uint64_t pos = s->committed_pos;
		pthread_mutex_unlock(&s->mu);
		if (r->position)
			*r->position = pos;
		if (r->mark)
			r->mark->pos = pos;
	}
	if (rt_store_outputs(t, q, &outs, &n_outs, &is_grouped, err))
		goto out;
	if (q && rt_sql_where(&where, &p, D, t, &q->where, NULL, err))
		goto out;
	if (rt_sql_read(&sql, D, t, outs, n_outs, is_grouped, where.data, q, r->wants_count, err))
		goto out;
	if (!(c = pool_get(s, err)))
		goto out;
	/* the role and claims hold for one transaction, and so does a mark's
	 * snapshot */
	in_txn = (r->who && s->uses_roles) || r->mark;
	if (in_txn && exec_simple(c,
				  r->mark ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
					  : "BEGIN READ ONLY",
				  err)) {
		in_txn = false;
		goto out;
	}
	if (r->mark && read_snapshot(c, r->mark, err))
		goto out;
	if (set_context(s, c, r->who, "GET", t, err))
		goto out;
	if (!(res = run_binds(c, (const char *)sql.data, &p, err))) {
		who_status(err, r->who);
		goto out;
	}
	if (!(*rows = rows_of(res, 0, err)))
		goto out;
	if (r->wants_count)
		*total = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	if (in_txn) {
		in_txn = false;
		if (exec_simple(c, "COMMIT", err)) {
			json_decref(*rows);
			*rows = NULL;
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(res);
	if (c && in_txn && PQstatus(c) == CONNECTION_OK) {
		struct rt_store_error ignored;
		exec_simple(c, "ROLLBACK", &ignored);
	}
	if (c)
		pool_put(s, c);
	rt_sql_binds_deinit(&p);
	rt_buf_deinit(&where);
	rt_buf_deinit(&sql);
	free(outs);
	return rc;
}

/* ---- writes ---- */

/* Runs one write statement (stmt without RETURNING, binds bv); appends its
 * rows to out (when not NULL) and adds the affected count to *count. */
static int write_stmt(PGconn *c, const struct rt_buf *stmt, const struct rt_sql_binds *bv,
		      const struct rt_store_output *outs, size_t n, json_t *out, size_t *count,
		      struct rt_store_error *e)
{
	struct rt_buf sql;
	rt_buf_init(&sql);
	if (out)
		rt_sql_returning(&sql, D, stmt, outs, n, true);
	else /* no RETURNING: the rows are not read back, so SELECT policies
	      * do not check them (PostgreSQL's rule for RETURNING) */
		rt_buf_append(&sql, stmt->data, stmt->len);
	PGresult *res = run_binds(c, sql.data ? sql.data : "", bv, e);
	rt_buf_deinit(&sql);
	if (!res)
		return -1;
	int rc = 0;
	if (!out) {
		*count += (size_t)strtoull(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		return 0;
	}
	*count += (size_t)strtoull(PQgetvalue(res, 0, 1), NULL, 10);
	json_t *rows = rows_of(res, 0, e);
	if (rows)
		json_array_extend(out, rows);
	else
		rc = -1;
	json_decref(rows);
	PQclear(res);
	return rc;
}

static bool same_names(const struct rt_store_column *const *a, size_t na,
		       const struct rt_store_column *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/*
 * Inserts the rows. A run of rows writing the same columns is one
 * statement over json_populate_recordset, as PostgREST inserts: parsed and
 * planned once, not once per row. An upsert writes row by row, so two rows
 * of one key merge in order.
 */
static int insert_rows(PGconn *c, const struct rt_write *w, const struct rt_store_output *outs,
		       size_t n_outs, json_t *out, size_t *count, struct rt_store_error *err)
{
	const struct rt_store_table *t = w->table;
	size_t n_rows = json_array_size(w->rows);
	const struct rt_store_column **names = rt_xcalloc(t->n_cols + 1, sizeof *names);
	const struct rt_store_column **next = rt_xcalloc(t->n_cols + 1, sizeof *next);
	int rc = 0;
	for (size_t i = 0; i < n_rows && !rc;) {
		const json_t *row = json_array_get(w->rows, i);
		size_t n = 0, end = i + 1;
		bool is_run = w->kind == RT_WRITE_INSERT;
		rc = rt_store_check_row_keys(t, row, err) ||
		     (is_run && rt_sql_insert_columns(w, row, names, &n, err));
		is_run = is_run && n; /* a row of no column is DEFAULT VALUES */
		/* the run of rows from i on with the same columns */
		while (!rc && is_run && end < n_rows) {
			const json_t *r = json_array_get(w->rows, end);
			size_t m;
			rc = rt_store_check_row_keys(t, r, err) ||
			     rt_sql_insert_columns(w, r, next, &m, err);
			if (rc || !same_names(names, n, next, m))
				break;
			end++;
		}
		if (rc)
			break;
		struct rt_buf stmt;
		struct rt_sql_binds bv;
		rt_buf_init(&stmt);
		rt_sql_binds_init(&bv);
		if (is_run) {
			json_t *run_rows = json_array();
			for (size_t k = i; k < end; k++)
				json_array_append(run_rows, json_array_get(w->rows, k));
			rt_sql_insert_head_rows(&stmt, &bv, D, t, names, n, run_rows);
			json_decref(run_rows);
		} else {
			rc = rt_sql_insert(&stmt, &bv, D, w, row, err);
		}
		if (!rc)
			rc = write_stmt(c, &stmt, &bv, outs, n_outs, out, count, err);
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&stmt);
		i = end;
	}
	free(names);
	free(next);
	return rc ? -1 : 0;
}

static int update_or_delete(PGconn *c, const struct rt_write *w,
			    const struct rt_store_output *outs, size_t n_outs, json_t *out,
			    size_t *count, struct rt_store_error *err)
{
	const struct rt_store_table *t = w->table;
	struct rt_buf stmt, where;
	struct rt_sql_binds bv;
	int rc = -1;
	rt_buf_init(&stmt);
	rt_buf_init(&where);
	rt_sql_binds_init(&bv);
	if (w->kind == RT_WRITE_UPDATE) {
		if (rt_store_check_row_keys(t, w->rows, err) ||
		    rt_sql_update(&stmt, &bv, D, t, w->rows, err))
			goto out;
	} else {
		rt_sql_delete(&stmt, D, t);
	}
	if (w->where && rt_sql_where(&where, &bv, D, t, &w->where->where, NULL, err))
		goto out;
	rt_sql_where_clause(&stmt, where.data);
	rc = write_stmt(c, &stmt, &bv, outs, n_outs, out, count, err);
out:
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&stmt);
	rt_buf_deinit(&where);
	return rc;
}

/* ---- conflict control and idempotency keys (docs/writes.md) ---- */

static int control_err(struct rt_store_error *e, const char *msg)
{
	rt_store_set_err(e, 400, "RTS400", NULL, "%s", msg);
	return -1;
}

/* Runs a locked select (rt_sql_select_pk / _where). *row is the row's
 * JSON, NULL when there is none; more than one row is refused. */
static int fetch_locked(PGconn *c, const struct rt_buf *sql, const struct rt_sql_binds *bv,
			json_t **row, struct rt_store_error *err)
{
	*row = NULL;
	PGresult *res = run_binds(c, sql->data, bv, err);
	if (!res)
		return -1;
	int rc = 0;
	if (PQntuples(res) > 1)
		rc = control_err(err, "A write with a base must target one row: the filter matched "
				      "more (filter on the primary key)");
	else if (PQntuples(res) == 1 && !(*row = json_loads(PQgetvalue(res, 0, 0), 0, NULL)))
		rc = control_err(err, "cannot read the row PostgreSQL sent");
	PQclear(res);
	return rc;
}

/* The row the JSON object key names (by primary key), locked. */
static int select_by_pk(const struct rt_store_cas *cas, const struct rt_write *w,
			const json_t *key, json_t **row, struct rt_store_error *err)
{
	struct rt_buf sql;
	struct rt_sql_binds bv;
	rt_buf_init(&sql);
	rt_sql_binds_init(&bv);
	*row = NULL;
	int rc = rt_sql_select_pk(&sql, &bv, D, w->table, key, err);
	if (!rc)
		rc = fetch_locked(cas->ctx, &sql, &bv, row, err);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&sql);
	return rc;
}

/* UPDATE t SET <apply> (or, with apply NULL, DELETE) the row current names. */
static int write_by_pk(const struct rt_store_cas *cas, const struct rt_write *w,
		       const json_t *current, const json_t *apply, struct rt_store_error *err)
{
	struct rt_buf stmt;
	struct rt_sql_binds bv;
	rt_buf_init(&stmt);
	rt_sql_binds_init(&bv);
	size_t count = 0;
	int rc = rt_sql_write_pk(&stmt, &bv, D, w->table, current, apply, err);
	if (!rc)
		rc = write_stmt(cas->ctx, &stmt, &bv, cas->outs, cas->n_outs, cas->out,
				&count, err);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&stmt);
	return rc;
}

/* The one row a filter selects, locked (the backend's part of a write with a base). */
static int select_by_where(const struct rt_store_cas *cas, const struct rt_write *w,
			   json_t **row, struct rt_store_error *err)
{
	struct rt_buf where, sql;
	struct rt_sql_binds bv;
	rt_buf_init(&where);
	rt_buf_init(&sql);
	rt_sql_binds_init(&bv);
	*row = NULL;
	int rc = w->where ? rt_sql_where(&where, &bv, D, w->table, &w->where->where, NULL, err) : 0;
	if (!rc && !where.len)
		rc = control_err(err, "A write with a base must target one row: add a filter on "
				      "the primary key");
	if (!rc) {
		rt_sql_select_where(&sql, D, w->table, where.data);
		rc = fetch_locked(cas->ctx, &sql, &bv, row, err);
	}
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&where);
	rt_buf_deinit(&sql);
	return rc;
}

static int insert_missing(const struct rt_store_cas *cas, const struct rt_write *w,
			  struct rt_store_error *err)
{
	size_t count = 0;
	return insert_rows(cas->ctx, w, cas->outs, cas->n_outs, cas->out, &count, err);
}

/*
 * Serializes writes with the same key (a transaction-scoped advisory lock)
 * and looks the key up: 1 when it was used with the same fingerprint (res
 * and *out hold the first result), 0 when new, -1 on an error.
 */
static int key_lookup(PGconn *c, const char *key, const unsigned char fp[32], uint64_t window_ms,
		      json_t **out, struct rt_write_result *res, struct rt_store_error *err)
{
	PGresult *r = run(c, D->key_lock_sql, (const char *const[]){key}, 1, err);
	if (!r)
		return -1;
	PQclear(r);
	char since[24];
	snprintf(since, sizeof since, "%lld", (long long)(rt_wall_ms() - (int64_t)window_ms));
	r = run(c, D->key_lookup_sql, (const char *const[]){key, since}, 2, err);
	if (!r)
		return -1;
	int rc = 0;
	if (PQntuples(r) == 1) {
		char hex[65];
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", fp[i]);
		json_t *j = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
		if (strcmp(PQgetvalue(r, 0, 0), hex) || !j) {
			rt_store_set_err(err, 422, "RTS422", NULL,
					 "The idempotency key was already used for a different request");
			rc = -1;
		} else {
			rt_write_result_parse(j, res, out);
			rc = 1;
		}
		json_decref(j);
	}
	PQclear(r);
	return rc;
}

static int key_record(PGconn *c, const char *key, const unsigned char fp[32],
		      const struct rt_write_result *res, const json_t *rows,
		      struct rt_store_error *err)
{
	char hex[65], now[24];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", fp[i]);
	snprintf(now, sizeof now, "%lld", (long long)rt_wall_ms());
	json_t *j = rt_write_result_json(res, rows);
	char *txt = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(j);
	PGresult *r = run(c, D->key_record_sql, (const char *const[]){key, hex, txt, now}, 4, err);
	free(txt);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

static int pg_write(struct rt_store *base, const struct rt_write *w, json_t **rows,
		    struct rt_store_error *err)
{
	struct pg_store *s = (struct pg_store *)base;
	*rows = NULL;
	if (w->idempotency_key && (!*w->idempotency_key ||
				   strlen(w->idempotency_key) > RT_STORE_MAX_KEY))
		return control_err(err, "The idempotency key must have 1 to 255 bytes");
	struct rt_write_result res = {.outcome = RT_WRITE_APPLIED};
	struct rt_store_output *outs = NULL;
	size_t n_outs, count = 0;
	bool is_grouped; /* never: rt_store_write() refuses aggregates */
	json_t *out = NULL;
	PGconn *c = NULL;
	int rc = -1;
	if (rt_store_outputs(w->table, w->where, &outs, &n_outs, &is_grouped, err))
		goto out;
	if (!(c = pool_get(s, err)))
		goto out;
	if (exec_simple(c, "BEGIN", err))
		goto out;
	out = w->wants_rows || w->wants_single ? json_array() : NULL;
	/* rows wanted for their count alone are not read back (no RETURNING) */
	bool is_counted = out && w->is_count_only && !w->base;
	unsigned char fp[32];
	rc = 0;
	if (w->idempotency_key) { /* rtsync's own table: as the connection role */
		rt_store_fingerprint(w->fingerprint, fp);
		rc = key_lookup(c, w->idempotency_key, fp, s->base.key_window_ms, &out, &res, err);
	}
	if (rc == 0) {
		static const char *const method[] = {[RT_WRITE_INSERT] = "POST",
						     [RT_WRITE_UPSERT] = "POST",
						     [RT_WRITE_UPDATE] = "PATCH",
						     [RT_WRITE_DELETE] = "DELETE"};
		json_t *dest = is_counted ? NULL : out;
		rc = set_context(s, c, w->who, method[w->kind], w->table, err);
		if (!rc && w->base) {
			rc = rt_store_controlled_write(
				&(struct rt_store_cas){c, outs, n_outs, out, select_by_where,
						       select_by_pk, write_by_pk, insert_missing},
				w, &res, err);
			count = json_array_size(out);
		} else if (!rc && (w->kind == RT_WRITE_INSERT || w->kind == RT_WRITE_UPSERT))
			rc = insert_rows(c, w, outs, n_outs, dest, &count, err);
		else if (!rc)
			rc = update_or_delete(c, w, outs, n_outs, dest, &count, err);
		if (rc)
			who_status(err, w->who);
		for (size_t i = 0; !rc && is_counted && i < count; i++)
			json_array_append_new(out, json_object()); /* what the count reads */
		if (!rc && w->idempotency_key)
			rc = reset_role(s, c, w->who, err);
		/* A conflict is answered as such, whatever the representation asked. */
		if (!rc && w->wants_single && res.outcome != RT_WRITE_CONFLICT && count != 1) {
			char details[64];
			snprintf(details, sizeof details, "The result contains %zu rows", count);
			rt_store_set_err(err, 406, "PGRST116", details,
					 "JSON object requested, multiple (or no) rows returned");
			rc = -1;
		}
		if (!rc && w->idempotency_key)
			rc = key_record(c, w->idempotency_key, fp, &res, out, err);
	}
	if (rc < 0 || exec_simple(c, "COMMIT", err)) {
		struct rt_store_error ignored;
		if (PQstatus(c) == CONNECTION_OK)
			exec_simple(c, "ROLLBACK", &ignored);
		rc = -1;
		json_decref(out);
		rt_write_result_deinit(&res);
		goto out;
	}
	/* Positions come with the replication stream, after the commit: none here. */
	if (w->result)
		*w->result = res;
	else
		rt_write_result_deinit(&res);
	*rows = out;
	rc = 0;
out:
	if (c)
		pool_put(s, c);
	free(outs);
	return rc;
}

/* A log written before changes carried their transaction id gets the
 * column (0: unknown, so only positions tell for those rows). */
static int add_xid(sqlite3 *db, char **msg)
{
	sqlite3_stmt *st;
	bool has = false;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('changes') WHERE name = 'xid'",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	has = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (has)
		return 0;
	return sqlite3_exec(db, "ALTER TABLE changes ADD COLUMN xid INTEGER NOT NULL DEFAULT 0",
			    NULL, NULL, msg) == SQLITE_OK
		       ? 0
		       : -1;
}

/* ---- the retained log ---- */

static int open_log(const char *path, sqlite3 **out, char *err, size_t err_cap)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, err_cap, "cannot open the change log %s: %s", path,
			 db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, LOG_BUSY_MS);
	char *msg = NULL;
	/* synchronous=FULL: a transaction confirmed to PostgreSQL must survive
	 * a power loss too, or the slot would have moved past it. */
	if (sqlite3_exec(db,
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			 "CREATE TABLE IF NOT EXISTS changes (pos INTEGER PRIMARY KEY AUTOINCREMENT,"
			 " lsn INTEGER NOT NULL, tbl TEXT NOT NULL, op TEXT NOT NULL, new TEXT,"
			 " old TEXT, ts INTEGER NOT NULL, xid INTEGER NOT NULL DEFAULT 0);"
			 "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);",
			 NULL, NULL, &msg) != SQLITE_OK ||
	    add_xid(db, &msg)) {
		snprintf(err, err_cap, "cannot set up the change log %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

static uint64_t meta_get(sqlite3 *db, const char *k)
{
	sqlite3_stmt *st;
	uint64_t v = 0;
	if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = ?", -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int meta_set(sqlite3 *db, const char *k, uint64_t v)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)v);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

/* A row version of the log (PostgreSQL gave it typed already). */
static json_t *row_of(const struct rt_store_table *t, const char *txt)
{
	if (!txt)
		return NULL;
	json_t *row = json_loads(txt, 0, NULL);
	if (!json_is_object(row)) {
		json_decref(row);
		return json_object();
	}
	return row;
}

static int pg_changes_after(struct rt_store *base, uint64_t after, size_t max,
			    struct rt_change **out, size_t *n, uint64_t *oldest,
			    struct rt_store_scan *scan)
{
	struct pg_store *s = (struct pg_store *)base;
	return rt_store_log_read(base, s->log_db, NULL, "changes", true, after, max, out, n, oldest,
				 scan, row_of);
}

static uint64_t pg_last_pos(struct rt_store *base)
{
	struct pg_store *s = (struct pg_store *)base;
	sqlite3_stmt *st;
	uint64_t pos = 0;
	/* the sequence, not max(pos): positions are never reused, even when the
	 * whole log was pruned */
	if (sqlite3_prepare_v2(s->log_db, "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
			       -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			pos = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return pos;
}

static bool pg_wait(struct rt_store *base, uint64_t *version, unsigned timeout_ms)
{
	struct pg_store *s = (struct pg_store *)base;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	ts.tv_sec += timeout_ms / 1000 + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&s->mu);
	while (s->writes == *version)
		if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) == ETIMEDOUT)
			break;
	bool is_changed = s->writes != *version;
	*version = s->writes;
	pthread_mutex_unlock(&s->mu);
	return is_changed;
}

static void pg_prune(struct rt_store *base)
{
	struct pg_store *s = (struct pg_store *)base;
	rt_store_log_prune(s->log_db, "changes", s->retain_count, s->retain_ms);
}

/* ---- the replication thread ---- */

static void rel_free(struct rel *r)
{
	if (r) {
		free(r->is_key);
		free(r->cols);
	}
	free(r);
}

static struct rel *rel_find(struct pg_store *s, uint32_t relid)
{
	for (struct rel *r = s->rels; r; r = r->next)
		if (r->relid == relid)
			return r;
	return NULL;
}

static void rel_update(struct pg_store *s, const struct rt_pgo_msg *m)
{
	struct rel **pp = &s->rels;
	while (*pp && (*pp)->relid != m->relid)
		pp = &(*pp)->next;
	if (*pp) {
		struct rel *old = *pp;
		*pp = old->next;
		rel_free(old);
	}
	struct rel *r = rt_xcalloc(1, sizeof *r);
	r->relid = m->relid;
	r->replident = m->replident;
	if (!strcmp(m->nspname, "public"))
		r->table = rt_store_table(&s->base, NULL, m->name);
	r->n_cols = m->n_columns;
	r->is_key = rt_xcalloc(m->n_columns + 1, sizeof *r->is_key);
	r->cols = rt_xcalloc(m->n_columns + 1, sizeof *r->cols);
	for (size_t i = 0; i < m->n_columns; i++) {
		r->is_key[i] = m->columns[i].is_key;
		r->cols[i] = r->table ? rt_store_column(r->table, m->columns[i].name) : NULL;
	}
	r->next = s->rels;
	s->rels = r;
}

/* Sets in obj the JSON of the served columns of tuple tp (only the replica
 * identity's key columns with keys_only). An
 * unchanged TOASTed value ('u') is taken from fill (the old row) when that
 * has it, else left out, as Supabase Realtime does. */
static void tuple_json(json_t *obj, const struct rel *r, const struct rt_pgo_tuple *tp,
		       bool keys_only, const json_t *fill)
{
	for (size_t i = 0; i < tp->n_cols && i < r->n_cols; i++) {
		const struct rt_store_column *c = r->cols[i];
		if (!c || (keys_only && !r->is_key[i]))
			continue;
		const struct rt_pgo_value *v = &tp->cols[i];
		if (v->kind == 'u') {
			json_t *old = fill ? json_object_get(fill, c->name) : NULL;
			if (old)
				json_object_set(obj, c->name, old);
			continue;
		}
		json_object_set_new(obj, c->name,
				    v->kind == 'n' ? json_null()
						   : rt_pgo_value_json(c->type, v->data, v->len));
	}
}

static char *dump_row(const json_t *row)
{
	return row ? json_dumps(row, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
}

/* Appends one row change to the open log transaction. */
static int log_change(struct pg_store *s, uint64_t lsn, uint32_t xid, int64_t commit_ms,
		      const struct rel *r, const struct rt_pgo_msg *m)
{
	const char *op = m->kind == RT_PGO_INSERT ? "INSERT"
			 : m->kind == RT_PGO_UPDATE ? "UPDATE"
						    : "DELETE";
	json_t *old = NULL, *rec = NULL;
	if (m->old_kind)
		tuple_json(old = json_object(), r, &m->old_tuple, m->old_kind == 'K', NULL);
	else if (m->kind == RT_PGO_UPDATE) {
		/* the key did not change: the old key is the new one's (none with
		 * REPLICA IDENTITY NOTHING) */
		old = json_object();
		if (r->replident != 'n')
			tuple_json(old, r, &m->new_tuple, true, NULL);
	}
	if (m->kind != RT_PGO_DELETE)
		tuple_json(rec = json_object(), r, &m->new_tuple, false, old);
	char *new_txt = dump_row(rec), *old_txt = dump_row(old);
	json_decref(rec);
	json_decref(old);
	sqlite3_stmt *st = s->ins_st;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)lsn);
	sqlite3_bind_text(st, 2, r->table->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, op, -1, SQLITE_STATIC);
	if (new_txt)
		sqlite3_bind_text(st, 4, new_txt, -1, free);
	else
		sqlite3_bind_null(st, 4);
	if (old_txt)
		sqlite3_bind_text(st, 5, old_txt, -1, free);
	else
		sqlite3_bind_null(st, 5);
	sqlite3_bind_int64(st, 6, commit_ms);
	sqlite3_bind_int64(st, 7, xid);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	if (rc)
		rt_error("store: writing the change log: %s", sqlite3_errmsg(s->repl_db));
	else
		s->batch_pos = (uint64_t)sqlite3_last_insert_rowid(s->repl_db);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static int64_t pg_now_us(void)
{
	return rt_wall_ms() * 1000 - RT_PGO_EPOCH_US;
}

static int send_status(PGconn *c, uint64_t lsn)
{
	uint8_t msg[34];
	rt_pgo_status_update(msg, lsn, pg_now_us(), false);
	if (PQputCopyData(c, (const char *)msg, sizeof msg) != 1 || PQflush(c) < 0)
		return -1;
	return 0;
}

/* State of the stream: the transaction being decoded and the batch of
 * decoded transactions written to the log but not yet committed there. */
struct txn {
	bool is_open;    /* between Begin and Commit */
	bool is_skipped; /* already in the log (resent after a restart) */
	uint64_t final_lsn;
	uint32_t xid;
	int64_t commit_ms;
	bool has_batch;  /* a log transaction is open */
	size_t batch_changes;
	uint64_t batch_started_ms;
	uint64_t batch_commit_lsn, batch_end_lsn; /* of its last whole transaction */
};

/* What PostgreSQL may be told is kept: with a relay, only what reached it. */
static uint64_t confirm_lsn(const struct pg_store *s)
{
	return s->has_relay ? s->published_end : s->end_lsn;
}

#define RELAY_CHUNK 1000 /* changes per published batch */

/*
 * Publishes the log's changes after published_pos to the relay, in batches
 * of whole transactions of at most about RELAY_CHUNK changes (a transaction
 * is never split). Each batch carries the commit and end LSN of its last
 * transaction. Returns 0 when everything retained is published, -1 when the
 * relay failed (what is published stays so; the rest goes next time).
 */
static int count_batch(void *arg, uint64_t last_pos, const char *data, size_t data_len)
{
	return 0;
}

static int publish_backlog(struct pg_store *s)
{
	if (!s->has_relay)
		return 0;
	if (s->is_relay_failed) {
		/* A relay that came back may have lost what it held (a Redis
		 * restarted without persistence): what followers had not read yet
		 * is published again from its top; they skip what they have. */
		uint64_t top = 0;
		if (s->relay.read(s->relay.ctx, s->published_pos, 0, count_batch, NULL, &top) < 0)
			return -1;
		if (top < s->published_pos) {
			rt_warn("store: the relay holds positions up to %llu only, not %llu: publishing "
				"the rest again",
				(unsigned long long)top, (unsigned long long)s->published_pos);
			s->published_pos = top;
		}
		s->is_relay_failed = false;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->repl_db,
			       "SELECT pos, lsn, tbl, op, new, old, ts, xid FROM changes WHERE pos > ? "
			       "ORDER BY pos",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)s->published_pos);
	int rc = 0;
	json_t *batch = json_array();
	uint64_t last_pos = 0, last_lsn = 0;
	for (;;) {
		int step = sqlite3_step(st);
		uint64_t lsn = step == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 1) : 0;
		/* a batch ends at a transaction's end: before a new commit LSN */
		if (json_array_size(batch) && (step != SQLITE_ROW || (lsn != last_lsn &&
								 json_array_size(batch) >= RELAY_CHUNK))) {
			bool is_last = step != SQLITE_ROW;
			/* the end LSN is known for the log's last transaction only */
			uint64_t end = is_last ? s->end_lsn : 0;
			json_t *msg = json_pack("{s:O,s:I,s:I}", "c", batch, "commit_lsn",
						(json_int_t)last_lsn, "end_lsn", (json_int_t)end);
			char *txt = json_dumps(msg, JSON_COMPACT);
			json_decref(msg);
			rc = s->relay.publish(s->relay.ctx, last_pos, txt, strlen(txt));
			free(txt);
			if (rc)
				break;
			s->published_pos = last_pos;
			if (is_last)
				s->published_end = s->end_lsn;
			json_array_clear(batch);
		}
		if (step != SQLITE_ROW)
			break;
		last_pos = (uint64_t)sqlite3_column_int64(st, 0);
		last_lsn = lsn;
		const char *nw = (const char *)sqlite3_column_text(st, 4);
		const char *old = (const char *)sqlite3_column_text(st, 5);
		json_array_append_new(
			batch, json_pack("[I,I,s,s,s?,s?,I,I]", (json_int_t)last_pos, (json_int_t)lsn,
					 (const char *)sqlite3_column_text(st, 2),
					 (const char *)sqlite3_column_text(st, 3), nw, old,
					 (json_int_t)sqlite3_column_int64(st, 6),
					 (json_int_t)sqlite3_column_int64(st, 7)));
	}
	if (!rc && !json_array_size(batch) && s->published_pos >= s->committed_pos)
		s->published_end = s->end_lsn;
	if (rc)
		s->is_relay_failed = true;
	json_decref(batch);
	sqlite3_finalize(st);
	return rc;
}

static void batch_abort(struct pg_store *s, struct txn *x)
{
	if (x->has_batch)
		sqlite3_exec(s->repl_db, "ROLLBACK", NULL, NULL, NULL);
	memset(x, 0, sizeof *x);
}

static int batch_begin(struct pg_store *s, struct txn *x)
{
	if (x->has_batch)
		return 0;
	if (sqlite3_exec(s->repl_db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		rt_error("store: change log: %s", sqlite3_errmsg(s->repl_db));
		return -1;
	}
	x->has_batch = true;
	x->batch_changes = 0;
	x->batch_started_ms = rt_mono_ms();
	return 0;
}

/* Commits the batch of whole transactions to the log, wakes the change
 * feed, and only then confirms the last one's end to PostgreSQL. */
static int batch_commit(struct pg_store *s, PGconn *c, struct txn *x)
{
	if (!x->has_batch || x->is_open)
		return 0;
	if (meta_set(s->repl_db, "commit_lsn", x->batch_commit_lsn) ||
	    meta_set(s->repl_db, "end_lsn", x->batch_end_lsn) ||
	    sqlite3_exec(s->repl_db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		rt_error("store: committing to the change log: %s", sqlite3_errmsg(s->repl_db));
		return -1;
	}
	x->has_batch = false;
	s->commit_lsn = x->batch_commit_lsn;
	s->end_lsn = x->batch_end_lsn;
	pthread_mutex_lock(&s->mu);
	s->writes++;
	if (s->batch_pos > s->committed_pos)
		s->committed_pos = s->batch_pos;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	bool was_failed = s->is_relay_failed;
	if (publish_backlog(s) && !was_failed)
		rt_warn("store: the relay is unreachable: changes are kept here and confirmed to "
			"PostgreSQL once published");
	return send_status(c, confirm_lsn(s));
}

/* Handles one pgoutput message. Returns 0, or -1 to reconnect (what is not
 * committed to the log is dropped; the server sends it again). */
static int handle_msg(struct pg_store *s, PGconn *c, struct txn *x, const uint8_t *data,
		      size_t len)
{
	struct rt_pgo_msg m;
	if (rt_pgo_decode(data, len, &m)) {
		rt_error("store: replication: undecodable pgoutput message (%zu bytes, kind 0x%02x)",
			 len, len ? data[0] : 0);
		return -1;
	}
	int rc = 0;
	switch (m.kind) {
	case RT_PGO_BEGIN:
		if (x->is_open) {
			rt_error("store: replication: Begin inside a transaction");
			rc = -1;
			break;
		}
		x->is_open = true;
		x->final_lsn = m.lsn;
		x->xid = m.xid;
		x->commit_ms = (m.commit_time + RT_PGO_EPOCH_US) / 1000;
		x->is_skipped = m.lsn <= s->commit_lsn;
		break;
	case RT_PGO_RELATION:
		rel_update(s, &m);
		break;
	case RT_PGO_INSERT:
	case RT_PGO_UPDATE:
	case RT_PGO_DELETE: {
		const struct rel *r = rel_find(s, m.relid);
		if (!x->is_open || !r) {
			rt_error("store: replication: a change outside a transaction or of an "
				 "unknown relation %u",
				 m.relid);
			rc = -1;
			break;
		}
		if (x->is_skipped || !r->table)
			break;
		if (!(rc = batch_begin(s, x)))
			rc = log_change(s, x->final_lsn, x->xid, x->commit_ms, r, &m);
		x->batch_changes++;
		break;
	}
	case RT_PGO_TRUNCATE:
		for (size_t i = 0; i < m.n_relids; i++) {
			const struct rel *r = rel_find(s, m.relids[i]);
			if (r && r->table)
				rt_info("store: TRUNCATE of %s: no postgres_changes event (as "
					"Supabase Realtime)",
					r->table->name);
		}
		break;
	case RT_PGO_COMMIT:
		if (!x->is_open)
			break;
		x->is_open = false;
		if (x->is_skipped)
			break;
		if ((rc = batch_begin(s, x)))
			break;
		x->batch_commit_lsn = m.lsn;
		x->batch_end_lsn = m.end_lsn;
		/* a big batch or an old one goes out now; else when the stream
		 * pauses (group commit: one log commit for many small transactions) */
		if (x->batch_changes >= BATCH_MAX_CHANGES ||
		    rt_mono_ms() - x->batch_started_ms >= BATCH_MAX_MS)
			rc = batch_commit(s, c, x);
		break;
	default: /* Origin, Type, Message: nothing to keep */
		break;
	}
	rt_pgo_msg_deinit(&m);
	return rc;
}

static bool lock_held(struct pg_store *s);

/* Sleeps up to ms unless the store is stopping. */
static void nap(struct pg_store *s, unsigned ms)
{
	uint64_t end = rt_mono_ms() + ms;
	while (atomic_load(&s->is_running) && rt_mono_ms() < end) {
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* Streams from the slot until an error or stop. Returns 0 when the stream
 * ran (the backoff restarts), -1 when it could not start. */
static int stream(struct pg_store *s)
{
	char buf[512];
	PGconn *c = connect_pg(s->conninfo, true);
	int rc = -1;
	struct txn x = {0};
	if (!c || PQstatus(c) != CONNECTION_OK) {
		rt_warn("store: replication connection failed: %s", pq_msg(c, buf, sizeof buf));
		goto out;
	}
	struct rt_buf q;
	rt_buf_init(&q);
	rt_buf_append_str(&q, "START_REPLICATION SLOT ");
	rt_sql_ident(&q, s->name);
	rt_buf_printf(&q, " LOGICAL %X/%X (proto_version '1', publication_names ",
		      (unsigned)(s->end_lsn >> 32), (unsigned)s->end_lsn);
	/* a quoted literal holding a quoted identifier */
	struct rt_buf pub;
	rt_buf_init(&pub);
	rt_sql_ident(&pub, s->name);
	rt_buf_append_byte(&pub, 0);
	char *lit = PQescapeLiteral(c, (const char *)pub.data, strlen((const char *)pub.data));
	rt_buf_printf(&q, "%s)", lit ? lit : "''");
	PQfreemem(lit);
	rt_buf_deinit(&pub);
	rt_buf_append_byte(&q, 0);
	PGresult *res = PQexec(c, (const char *)q.data);
	rt_buf_deinit(&q);
	if (PQresultStatus(res) != PGRES_COPY_BOTH) {
		rt_error("store: START_REPLICATION: %s", pq_msg(c, buf, sizeof buf));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	rt_info("store: streaming changes from slot %s at %X/%X", s->name,
		(unsigned)(s->end_lsn >> 32), (unsigned)s->end_lsn);
	rc = 0;
	uint64_t last_status = rt_mono_ms(), last_recv = rt_mono_ms(), last_lock_check = 0;
	uint64_t last_relay_try = 0;
	while (atomic_load(&s->is_running)) {
		char *data = NULL;
		int n = PQgetCopyData(c, &data, 1);
		if (n != 0)
			last_recv = rt_mono_ms();
		else if (rt_mono_ms() - last_recv > SILENCE_MAX_MS) {
			rt_warn("store: nothing from PostgreSQL for %d s: reconnecting",
				SILENCE_MAX_MS / 1000);
			break;
		}
		if (n == 0 && batch_commit(s, c, &x)) /* the stream paused */
			break;
		if (n == 0) {
			struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
			if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
				break;
			if (!PQconsumeInput(c)) {
				rt_warn("store: replication stream: %s", pq_msg(c, buf, sizeof buf));
				break;
			}
		} else if (n < 0) {
			if (n == -2)
				rt_warn("store: replication stream: %s", pq_msg(c, buf, sizeof buf));
			else
				rt_warn("store: the replication stream ended");
			break;
		} else {
			struct rt_pgo_frame f;
			int frc = rt_pgo_frame_parse((const uint8_t *)data, (size_t)n, &f);
			if (frc) {
				rt_error("store: replication: bad frame (%d bytes)", n);
			} else if (f.kind == RT_PGO_XLOGDATA) {
				frc = handle_msg(s, c, &x, f.data, f.data_len);
			} else if (f.wants_reply) {
				/* Between transactions everything before the server's
				 * position was sent and kept: confirm it so the slot
				 * does not hold WAL of other databases' traffic. */
				bool is_idle = !x.is_open && !x.has_batch &&
					       confirm_lsn(s) == s->end_lsn;
				uint64_t lsn = is_idle && f.wal_end > s->end_lsn ? f.wal_end
										 : confirm_lsn(s);
				frc = send_status(c, lsn);
				last_status = rt_mono_ms();
			}
			PQfreemem(data);
			if (frc)
				break;
		}
		if (s->has_relay && rt_mono_ms() - last_lock_check >= LOCK_CHECK_MS) {
			if (!lock_held(s))
				break;
			last_lock_check = rt_mono_ms();
		}
		if (s->has_relay && (s->published_pos < s->committed_pos || s->is_relay_failed) &&
		    !x.has_batch && rt_mono_ms() - last_relay_try >= RELAY_RETRY_MS) {
			last_relay_try = rt_mono_ms();
			if (!publish_backlog(s))
				last_status = 0; /* the confirmed position moved: tell PostgreSQL */
		}
		if (rt_mono_ms() - last_status >= STATUS_EVERY_MS) {
			if (send_status(c, confirm_lsn(s)))
				break;
			last_status = rt_mono_ms();
		}
	}
out:
	batch_abort(s, &x);
	PQfinish(c);
	return rc;
}

/* ---- several nodes: leadership and following ---- */

/* Whether the advisory lock's session is still there (else PostgreSQL has
 * released the lock and another node may lead). */
static bool lock_held(struct pg_store *s)
{
	if (!s->lock_conn)
		return false;
	PQconsumeInput(s->lock_conn);
	if (PQstatus(s->lock_conn) == CONNECTION_OK)
		return true;
	rt_warn("store: lost the leadership's connection to PostgreSQL");
	PQfinish(s->lock_conn);
	s->lock_conn = NULL;
	atomic_store(&s->is_leader, false);
	return false;
}

/* Tries once for the advisory lock of the slot's name. */
static bool try_lead(struct pg_store *s)
{
	if (lock_held(s))
		return true;
	char buf[512];
	PGconn *c = connect_pg(s->conninfo, false);
	if (!c || PQstatus(c) != CONNECTION_OK) {
		rt_warn("store: leadership: cannot connect: %s", pq_msg(c, buf, sizeof buf));
		PQfinish(c);
		return false;
	}
	struct rt_buf key;
	rt_buf_init(&key);
	rt_buf_printf(&key, "rtsync leader %s", s->name);
	const char *vals[] = {key.data};
	PGresult *res = PQexecParams(c, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1,
				     NULL, vals, NULL, NULL, 0);
	rt_buf_deinit(&key);
	bool got = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		   !strcmp(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	if (!got) {
		PQfinish(c);
		return false;
	}
	s->lock_conn = c;
	return true;
}

/* One batch from the relay (publish_backlog's encoding) into the log, in one
 * transaction with the LSNs it ends at; changes the log holds are skipped. */
static int apply_batch(void *arg, uint64_t last_pos, const char *data, size_t data_len)
{
	struct pg_store *s = arg;
	if (last_pos <= s->committed_pos)
		return 0;
	json_t *msg = json_loadb(data, data_len, 0, NULL);
	json_t *chs = json_object_get(msg, "c");
	json_int_t commit_lsn = json_integer_value(json_object_get(msg, "commit_lsn"));
	json_int_t end_lsn = json_integer_value(json_object_get(msg, "end_lsn"));
	if (!json_is_array(chs) || !json_array_size(chs)) {
		rt_error("store: relay: a malformed batch under position %llu",
			 (unsigned long long)last_pos);
		json_decref(msg);
		return 0;
	}
	json_int_t first = json_integer_value(json_array_get(json_array_get(chs, 0), 0));
	int rc = -1;
	if (sqlite3_exec(s->repl_db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	if (s->committed_pos && (uint64_t)first > s->committed_pos + 1) {
		/* the relay no longer holds what came between: a resume from
		 * before is told to refetch, never given a silent gap */
		rt_warn("store: relay: positions %llu to %llu are gone; the log starts again at %lld",
			(unsigned long long)s->committed_pos + 1, (unsigned long long)first - 1,
			(long long)first);
		sqlite3_exec(s->repl_db, "DELETE FROM changes", NULL, NULL, NULL);
	}
	size_t i;
	json_t *ch;
	json_array_foreach(chs, i, ch) {
		json_int_t pos, lsn, ts, xid;
		const char *tbl, *op;
		json_t *nw_v, *old_v;
		if (json_unpack(ch, "[I,I,s,s,o,o,I,I]", &pos, &lsn, &tbl, &op, &nw_v, &old_v, &ts,
				&xid) ||
		    (strcmp(op, "INSERT") && strcmp(op, "UPDATE") && strcmp(op, "DELETE")) ||
		    (!json_is_string(nw_v) && !json_is_null(nw_v)) ||
		    (!json_is_string(old_v) && !json_is_null(old_v))) {
			rt_error("store: relay: a malformed change under position %llu",
				 (unsigned long long)last_pos);
			continue;
		}
		if ((uint64_t)pos <= s->committed_pos)
			continue;
		const char *nw = json_string_value(nw_v), *old = json_string_value(old_v);
		sqlite3_stmt *st = s->put_st;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, pos);
		sqlite3_bind_int64(st, 2, lsn);
		sqlite3_bind_text(st, 3, tbl, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 4, op, -1, SQLITE_TRANSIENT);
		if (nw)
			sqlite3_bind_text(st, 5, nw, -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_null(st, 5);
		if (old)
			sqlite3_bind_text(st, 6, old, -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_null(st, 6);
		sqlite3_bind_int64(st, 7, ts);
		sqlite3_bind_int64(st, 8, xid);
		int step = sqlite3_step(st);
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		if (step != SQLITE_DONE) {
			rt_error("store: relay: writing the change log: %s", sqlite3_errmsg(s->repl_db));
			sqlite3_exec(s->repl_db, "ROLLBACK", NULL, NULL, NULL);
			goto out;
		}
	}
	if ((uint64_t)commit_lsn > s->commit_lsn && meta_set(s->repl_db, "commit_lsn", (uint64_t)commit_lsn))
		goto rollback;
	if ((uint64_t)end_lsn > s->end_lsn && meta_set(s->repl_db, "end_lsn", (uint64_t)end_lsn))
		goto rollback;
	if (sqlite3_exec(s->repl_db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto rollback;
	if ((uint64_t)commit_lsn > s->commit_lsn)
		s->commit_lsn = (uint64_t)commit_lsn;
	if ((uint64_t)end_lsn > s->end_lsn)
		s->end_lsn = (uint64_t)end_lsn;
	pthread_mutex_lock(&s->mu);
	s->writes++;
	s->committed_pos = last_pos;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	rc = 0;
	goto out;
rollback:
	rt_error("store: relay: committing to the change log: %s", sqlite3_errmsg(s->repl_db));
	sqlite3_exec(s->repl_db, "ROLLBACK", NULL, NULL, NULL);
out:
	json_decref(msg);
	return rc;
}

/*
 * The replication thread with a relay: a follower appends the relay's
 * batches and tries for the leadership every LEADER_TRY_MS; a node that
 * gets it reads the relay to its end first, then streams from the slot (a
 * transaction its log holds is skipped by its commit LSN) and publishes.
 */
static void relay_main(struct pg_store *s)
{
	unsigned backoff = BACKOFF_MIN_MS;
	uint64_t next_try = 0;
	while (atomic_load(&s->is_running)) {
		if (!s->lock_conn && rt_mono_ms() >= next_try) {
			next_try = rt_mono_ms() + LEADER_TRY_MS;
			try_lead(s);
		}
		uint64_t top = 0;
		if (!s->lock_conn) {
			if (s->relay.read(s->relay.ctx, s->committed_pos, LEADER_TRY_MS, apply_batch, s,
					  &top) < 0)
				nap(s, LEADER_TRY_MS); /* the relay is unreachable */
			continue;
		}
		/* leading: the relay to its end, then the stream */
		int n;
		do {
			n = s->relay.read(s->relay.ctx, s->committed_pos, 0, apply_batch, s, &top);
		} while (n > 0 && atomic_load(&s->is_running));
		if (n < 0) { /* leading blind could publish under taken positions */
			nap(s, backoff);
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		s->published_pos = top > s->committed_pos ? s->committed_pos : top;
		s->published_end = s->end_lsn;
		if (s->published_pos < s->committed_pos)
			s->published_end = 0; /* the rest of the log first */
		atomic_store(&s->is_leader, true);
		rt_info("store: leading the replication of slot %s from position %llu", s->name,
			(unsigned long long)s->committed_pos);
		uint64_t started = rt_mono_ms();
		publish_backlog(s);
		int rc = stream(s);
		if (!atomic_load(&s->is_running))
			break;
		if (!rc && rt_mono_ms() - started > 10000)
			backoff = BACKOFF_MIN_MS;
		nap(s, backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	atomic_store(&s->is_leader, false);
	if (s->lock_conn) {
		PQfinish(s->lock_conn); /* releases the lock */
		s->lock_conn = NULL;
	}
}

bool rt_store_is_leader(const struct rt_store *base)
{
	if (!base || base->ops != &pg_ops)
		return false;
	return atomic_load(&((const struct pg_store *)base)->is_leader);
}

static void *repl_main(void *arg)
{
	struct pg_store *s = arg;
	if (s->has_relay) {
		relay_main(s);
		return NULL;
	}
	unsigned backoff = BACKOFF_MIN_MS;
	while (atomic_load(&s->is_running)) {
		uint64_t started = rt_mono_ms();
		int rc = stream(s);
		if (!atomic_load(&s->is_running))
			break;
		/* a stream that ran a while starts the backoff over */
		if (!rc && rt_mono_ms() - started > 10000)
			backoff = BACKOFF_MIN_MS;
		rt_info("store: reconnecting to PostgreSQL in %u ms", backoff);
		nap(s, backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

/* ---- opening ---- */

/* Runs sql on c (no parameters); NULL with err set on failure. */
static PGresult *query(PGconn *c, const char *sql, int n, const char *const *vals, char *err,
		       size_t err_cap)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	char buf[512];
	snprintf(err, err_cap, "%s", pq_msg(c, buf, sizeof buf));
	PQclear(res);
	return NULL;
}

static bool is_listed(const char *list, const char *name)
{
	if (!list || !*list)
		return true;
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t len = strcspn(p, ",");
		size_t trimmed = len;
		while (trimmed && p[trimmed - 1] == ' ')
			trimmed--;
		if (trimmed == n && !strncmp(p, name, n))
			return true;
		p += len;
	}
	return false;
}

static int check_server(PGconn *c, char *err, size_t err_cap)
{
	PGresult *res = query(c, "SELECT current_setting('wal_level'), "
				 "(SELECT rolreplication OR rolsuper FROM pg_roles "
				 " WHERE rolname = current_user), current_user",
			      0, NULL, err, err_cap);
	if (!res)
		return -1;
	int rc = -1;
	if (strcmp(PQgetvalue(res, 0, 0), "logical"))
		snprintf(err, err_cap,
			 "PostgreSQL runs with wal_level=%s; rtsync reads changes through logical "
			 "replication and needs wal_level=logical (set it in postgresql.conf and "
			 "restart PostgreSQL)",
			 PQgetvalue(res, 0, 0));
	else if (strcmp(PQgetvalue(res, 0, 1), "t"))
		snprintf(err, err_cap,
			 "role %s lacks the REPLICATION attribute rtsync needs to stream changes "
			 "(ALTER ROLE %s REPLICATION)",
			 PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 2));
	else
		rc = 0;
	PQclear(res);
	return rc;
}

static int load_schema(struct pg_store *s, PGconn *c, const char *tables, char *err,
		       size_t err_cap)
{
	PGresult *res = query(
		c,
		"SELECT c.relname, a.attname, t.typname, a.attnotnull,"
		" coalesce(a.attnum = ANY(i.indkey::int2[]), false)"
		" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
		" JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
		" JOIN pg_type t ON t.oid = a.atttypid"
		" LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary"
		" WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
		" ORDER BY c.relname, a.attnum",
		0, NULL, err, err_cap);
	if (!res)
		return -1;
	struct rt_store_schema *sc = &s->base.schema;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *tname = PQgetvalue(res, i, 0);
		if (!is_listed(tables, tname))
			continue;
		struct rt_store_table *t = sc->n_tables ? &sc->tables[sc->n_tables - 1] : NULL;
		if (!t || strcmp(t->name, tname)) {
			sc->tables = rt_xrealloc(sc->tables, (sc->n_tables + 1) * sizeof *sc->tables);
			t = &sc->tables[sc->n_tables++];
			memset(t, 0, sizeof *t);
			t->schema = rt_xstrdup("public");
			t->name = rt_xstrdup(tname);
		}
		t->cols = rt_xrealloc(t->cols, (t->n_cols + 1) * sizeof *t->cols);
		struct rt_store_column *col = &t->cols[t->n_cols++];
		col->name = rt_xstrdup(PQgetvalue(res, i, 1));
		col->type = rt_xstrdup(PQgetvalue(res, i, 2));
		col->is_pk = !strcmp(PQgetvalue(res, i, 4), "t");
		col->is_nullable = strcmp(PQgetvalue(res, i, 3), "t") && !col->is_pk;
	}
	PQclear(res);
	for (size_t i = 0; i < sc->n_tables; i++) {
		bool has_pk = false;
		for (size_t j = 0; j < sc->tables[i].n_cols; j++)
			has_pk |= sc->tables[i].cols[j].is_pk;
		if (!has_pk) {
			snprintf(err, err_cap,
				 "table public.%s has no primary key: rtsync identifies rows by it "
				 "(add one, or leave the table out with --postgres-tables)",
				 sc->tables[i].name);
			return -1;
		}
	}
	/* every listed table must exist */
	for (const char *p = tables; p && *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t len = strcspn(p, ",");
		size_t trimmed = len;
		while (trimmed && p[trimmed - 1] == ' ')
			trimmed--;
		if (trimmed) {
			char *name = rt_xstrndup(p, trimmed);
			bool is_found = rt_store_table(&s->base, NULL, name) != NULL;
			if (!is_found)
				snprintf(err, err_cap, "table public.%s (--postgres-tables) does not exist",
					 name);
			free(name);
			if (!is_found)
				return -1;
		}
		p += len;
	}
	return 0;
}

/* Creates the publication when missing, and makes it list exactly the
 * served tables; creates the slot when missing. */
static int setup_replication(struct pg_store *s, PGconn *c, bool *is_slot_new, char *err,
			     size_t err_cap)
{
	*is_slot_new = false;
	const char *vals[] = {s->name};
	PGresult *res = query(c, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, vals, err,
			      err_cap);
	if (!res)
		return -1;
	bool has_pub = PQntuples(res) > 0;
	PQclear(res);
	struct rt_buf b;
	rt_buf_init(&b);
	const struct rt_store_schema *sc = &s->base.schema;
	if (!has_pub) {
		rt_buf_append_str(&b, "CREATE PUBLICATION ");
		rt_sql_ident(&b, s->name);
		if (sc->n_tables)
			rt_buf_append_str(&b, " FOR TABLE ");
	} else if (sc->n_tables) {
		rt_buf_append_str(&b, "ALTER PUBLICATION ");
		rt_sql_ident(&b, s->name);
		rt_buf_append_str(&b, " SET TABLE ");
	}
	for (size_t i = 0; b.len && i < sc->n_tables; i++) {
		if (i)
			rt_buf_append_byte(&b, ',');
		rt_sql_table(&b, D, &sc->tables[i]);
	}
	if (b.len) {
		rt_buf_append_byte(&b, 0);
		res = query(c, (const char *)b.data, 0, NULL, err, err_cap);
		rt_buf_deinit(&b);
		if (!res)
			return -1;
		PQclear(res);
	}
	rt_buf_deinit(&b);
	res = query(c, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", 1, vals, err,
		    err_cap);
	if (!res)
		return -1;
	bool has_slot = PQntuples(res) > 0;
	PQclear(res);
	if (!has_slot) {
		res = query(c, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", 1, vals,
			    err, err_cap);
		if (!res)
			return -1;
		PQclear(res);
		rt_info("store: created replication slot %s", s->name);
		*is_slot_new = true;
	}
	return 0;
}

/* The idempotency keys of writes (docs/writes.md): in schema rtsync, apart
 * from the served and published tables of public. */
static int setup_keys(PGconn *c, char *err, size_t err_cap)
{
	static const char *const sql[] = {
		"CREATE SCHEMA IF NOT EXISTS rtsync",
		"CREATE TABLE IF NOT EXISTS rtsync.idempotency (key text PRIMARY KEY,"
		" fingerprint bytea NOT NULL, result text NOT NULL, ts bigint NOT NULL)",
		"CREATE TABLE IF NOT EXISTS rtsync.docs (doc text NOT NULL, seq bigint NOT NULL,"
		" data bytea NOT NULL, PRIMARY KEY (doc, seq))",
		"CREATE TABLE IF NOT EXISTS rtsync.counters (name text PRIMARY KEY,"
		" value bigint NOT NULL)",
	};
	for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
		PGresult *res = query(c, sql[i], 0, NULL, err, err_cap);
		if (!res)
			return -1;
		PQclear(res);
	}
	return 0;
}

/* ---- row-level security: roles, helper objects, policies (docs/security.md) ---- */

#define WATCH_EVERY_MS 1000


/* What a database needs for rtsync to run REST as the requester's role. */
static void roles_advice(struct rt_buf *b, const char *user)
{
	rt_buf_printf(b,
		      "CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; "
		      "CREATE ROLE service_role NOLOGIN BYPASSRLS; "
		      "GRANT anon, authenticated, service_role TO \"%s\"; "
		      "GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role; "
		      "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO anon, "
		      "authenticated, service_role (then narrow with policies and REVOKE)",
		      user);
}

/*
 * The authenticator pattern: the connection role must be able to switch to
 * anon, authenticated and service_role. With RLS on a served table a missing
 * or ungranted role refuses the start; without RLS and none of the roles,
 * REST runs as the connection role (as before) and a warning says so.
 */
static int check_roles(struct pg_store *s, PGconn *c, char *err, size_t err_cap)
{
	const char *vals[] = {s->rls_oids};
	PGresult *res = query(c,
			      "SELECT current_user, coalesce((SELECT bool_or(relrowsecurity) FROM pg_class"
			      " WHERE oid = ANY($1::oid[]) AND relnamespace = 'public'::regnamespace), false),"
			      " (SELECT string_agg(n, ', ' ORDER BY o) FROM unnest(ARRAY['anon',"
			      "  'authenticated','service_role']) WITH ORDINALITY u(n, o)"
			      "  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = n)),"
			      " (SELECT string_agg(rolname, ', ' ORDER BY rolname) FROM pg_roles WHERE"
			      "  rolname IN ('anon','authenticated','service_role')"
			      "  AND NOT pg_has_role(current_user, oid, 'MEMBER')),"
			      " (SELECT count(*) FROM pg_roles WHERE rolname IN"
			      "  ('anon','authenticated','service_role'))",
			      1, vals, err, err_cap);
	if (!res)
		return -1;
	const char *user = PQgetvalue(res, 0, 0);
	bool has_rls = !strcmp(PQgetvalue(res, 0, 1), "t");
	const char *missing = PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2);
	const char *ungranted = PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3);
	long n_roles = strtol(PQgetvalue(res, 0, 4), NULL, 10);
	int rc = 0;
	struct rt_buf b;
	rt_buf_init(&b);
	if (has_rls && (missing || ungranted)) {
		if (missing)
			rt_buf_printf(&b, "a served table has row-level security enabled, but the "
					  "role(s) %s do not exist", missing);
		else
			rt_buf_printf(&b, "a served table has row-level security enabled, but role "
					  "%s cannot switch to %s", user, ungranted);
		rt_buf_append_str(&b, ": rtsync runs each REST request as the token's role (as "
				      "PostgREST). Run, as a superuser: ");
		roles_advice(&b, user);
		rt_buf_append_byte(&b, 0);
		snprintf(err, err_cap, "%s", (const char *)b.data);
		rc = -1;
	} else if (!n_roles) {
		s->uses_roles = false;
		roles_advice(&b, user);
		rt_buf_append_byte(&b, 0);
		rt_warn("store: the roles anon, authenticated and service_role do not exist: REST "
			"runs as %s without the token's role; to have the database's privileges "
			"and policies apply, run: %s",
			user, (const char *)b.data);
	} else {
		s->uses_roles = true;
		if (missing || ungranted)
			rt_warn("store: role(s) %s%s%s: requests with those roles fail (401)",
				missing ? missing : "", missing ? " do not exist" : "",
				ungranted ? " are not granted to the connection role" : "");
	}
	rt_buf_deinit(&b);
	PQclear(res);
	return rc;
}

/* The objects Supabase databases have, created when missing: auth.uid(),
 * auth.role(), auth.email(), auth.jwt(), realtime.messages, realtime.topic(),
 * and rtsync.visible() for opaque policies. */
static int setup_rls_objects(PGconn *c, char *err, size_t err_cap)
{
	static const struct {
		const char *missing; /* a query that is true when the object is missing */
		const char *create;
	} objs[] = {
		{"SELECT to_regnamespace('auth') IS NULL",
		 "CREATE SCHEMA auth; GRANT USAGE ON SCHEMA auth TO PUBLIC"},
		{"SELECT to_regprocedure('auth.uid()') IS NULL",
		 "CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT coalesce("
		 "nullif(current_setting('request.jwt.claim.sub', true), ''), "
		 "nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')::uuid $$"},
		{"SELECT to_regprocedure('auth.role()') IS NULL",
		 "CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$ SELECT coalesce("
		 "nullif(current_setting('request.jwt.claim.role', true), ''), "
		 "nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')::text $$"},
		{"SELECT to_regprocedure('auth.email()') IS NULL",
		 "CREATE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $$ SELECT coalesce("
		 "nullif(current_setting('request.jwt.claim.email', true), ''), "
		 "nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')::text $$"},
		{"SELECT to_regprocedure('auth.jwt()') IS NULL",
		 "CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT coalesce("
		 "nullif(current_setting('request.jwt.claim', true), ''), "
		 "nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$"},
		{"SELECT to_regnamespace('realtime') IS NULL",
		 "CREATE SCHEMA realtime; GRANT USAGE ON SCHEMA realtime TO PUBLIC"},
		{"SELECT to_regclass('realtime.messages') IS NULL",
		 "CREATE TABLE realtime.messages (topic text NOT NULL, extension text NOT NULL,"
		 " payload jsonb, event text, private boolean DEFAULT false,"
		 " updated_at timestamp without time zone NOT NULL DEFAULT now(),"
		 " inserted_at timestamp without time zone NOT NULL DEFAULT now(),"
		 " id uuid NOT NULL DEFAULT gen_random_uuid(), PRIMARY KEY (id, inserted_at));"
		 " ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;"
		 " GRANT SELECT, INSERT ON realtime.messages TO PUBLIC"},
		{"SELECT to_regprocedure('realtime.topic()') IS NULL",
		 "CREATE FUNCTION realtime.topic() RETURNS text LANGUAGE sql STABLE AS $$ SELECT "
		 "nullif(current_setting('realtime.topic', true), '')::text $$"},
		{"SELECT to_regprocedure('rtsync.visible(regclass, jsonb, jsonb)') IS NULL",
		 "CREATE FUNCTION rtsync.visible(tbl regclass, rec jsonb, auths jsonb)"
		 " RETURNS boolean[] LANGUAGE plpgsql AS $f$\n"
		 "DECLARE a jsonb; res boolean[] := '{}'; ok boolean; perm text; restr text;"
		 " rid oid; bypass boolean; rls boolean; rel text;\n"
		 "BEGIN\n"
		 "  SELECT relrowsecurity, relname INTO rls, rel FROM pg_class WHERE oid = tbl;\n"
		 "  FOR a IN SELECT value FROM jsonb_array_elements(auths) LOOP\n"
		 "    ok := false; rid := NULL;\n"
		 "    SELECT oid, rolbypassrls INTO rid, bypass FROM pg_roles WHERE rolname = a->>'role';\n"
		 "    IF rid IS NOT NULL AND has_table_privilege(rid, tbl, 'SELECT') THEN\n"
		 "      IF NOT rls OR bypass THEN ok := true;\n"
		 "      ELSE\n"
		 "        SELECT string_agg('(' || pg_get_expr(p.polqual, p.polrelid) || ')', ' OR ')"
		 "          FILTER (WHERE p.polpermissive),"
		 "          string_agg('(' || pg_get_expr(p.polqual, p.polrelid) || ')', ' AND ')"
		 "          FILTER (WHERE NOT p.polpermissive) INTO perm, restr\n"
		 "        FROM pg_policy p WHERE p.polrelid = tbl AND p.polcmd IN ('r', '*')"
		 "          AND p.polqual IS NOT NULL AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1"
		 "          FROM unnest(p.polroles) pr WHERE pg_has_role(rid, pr, 'MEMBER')));\n"
		 "        IF perm IS NOT NULL THEN\n"
		 "          BEGIN\n"
		 "            PERFORM set_config('request.jwt.claim.' || k, '', true)"
		 "              FROM unnest(ARRAY['sub','role','email']) k;\n"
		 "            PERFORM set_config('request.jwt.claims', coalesce(a->'claims', '{}')::text, true);\n"
		 "            PERFORM set_config('request.jwt.claim.' || key, value, true)"
		 "              FROM jsonb_each_text(coalesce(a->'claims', '{}'))"
		 "              WHERE key ~ '^[A-Za-z0-9_]{1,63}$' AND value IS NOT NULL;\n"
		 "            PERFORM set_config('role', a->>'role', true);\n"
		 "            EXECUTE format('SELECT (%s)%s FROM jsonb_populate_record(NULL::%s, $1) AS %I',"
		 "              perm, coalesce(' AND (' || restr || ')', ''), tbl, rel) INTO ok USING rec;\n"
		 "            ok := coalesce(ok, false);\n"
		 "            PERFORM set_config('role', 'none', true);\n"
		 "          EXCEPTION WHEN OTHERS THEN ok := false;\n"
		 "          END;\n"
		 "        END IF;\n"
		 "      END IF;\n"
		 "    END IF;\n"
		 "    res := res || ok;\n"
		 "  END LOOP;\n"
		 "  RETURN res;\n"
		 "END $f$"},
	};
	for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) {
		PGresult *res = query(c, objs[i].missing, 0, NULL, err, err_cap);
		if (!res)
			return -1;
		bool is_missing = !strcmp(PQgetvalue(res, 0, 0), "t");
		PQclear(res);
		if (!is_missing)
			continue;
		res = PQexec(c, objs[i].create);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			char buf[256];
			snprintf(err, err_cap, "creating %.60s…: %s", objs[i].create,
				 pq_msg(c, buf, sizeof buf));
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	return 0;
}

/* "{oid,…}" of the served tables and realtime.messages. */
static int rls_oids(struct pg_store *s, PGconn *c, char *err, size_t err_cap)
{
	json_t *names = json_array();
	const struct rt_store_schema *sc = &s->base.schema;
	for (size_t i = 0; i < sc->n_tables; i++) {
		struct rt_buf b;
		rt_buf_init(&b);
		rt_sql_table(&b, D, &sc->tables[i]);
		rt_buf_append_byte(&b, 0);
		json_array_append_new(names, json_string((const char *)b.data));
		rt_buf_deinit(&b);
	}
	char *txt = json_dumps(names, JSON_COMPACT);
	json_decref(names);
	const char *vals[] = {txt ? txt : "[]"};
	PGresult *res = query(c,
			      "SELECT '{' || concat_ws(',', (SELECT string_agg(t::regclass::oid::text, ',')"
			      " FROM json_array_elements_text($1::json) t),"
			      " to_regclass('realtime.messages')::oid::text) || '}'",
			      1, vals, err, err_cap);
	free(txt);
	if (!res)
		return -1;
	free(s->rls_oids);
	s->rls_oids = rt_xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* md5 over the policies, RLS flags and privileges of the tables rtsync
 * serves: a change means a reload. */
static int rls_fingerprint(struct pg_store *s, PGconn *c, char out[40], char *err, size_t err_cap)
{
	const char *vals[] = {s->rls_oids};
	PGresult *res = query(
		c,
		"SELECT md5(coalesce((SELECT string_agg(concat_ws('|', p.oid, p.polname, p.polcmd,"
		" p.polpermissive, p.polroles, pg_get_expr(p.polqual, p.polrelid),"
		" pg_get_expr(p.polwithcheck, p.polrelid)), ',' ORDER BY p.oid) FROM pg_policy p"
		" WHERE p.polrelid = ANY($1::oid[])), '') || '#' || coalesce((SELECT"
		" string_agg(concat_ws('|', c.oid, c.relrowsecurity, c.relacl), ',' ORDER BY c.oid)"
		" FROM pg_class c WHERE c.oid = ANY($1::oid[])), '') || '#' || coalesce((SELECT"
		" string_agg(concat_ws('|', a.attrelid, a.attnum, a.attacl), ',' ORDER BY a.attrelid,"
		" a.attnum) FROM pg_attribute a WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0"
		" AND a.attacl IS NOT NULL), ''))",
		1, vals, err, err_cap);
	if (!res)
		return -1;
	snprintf(out, 40, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

static unsigned policy_cmd(const char *cmd)
{
	return !strcmp(cmd, "SELECT")   ? RT_POLICY_SELECT
	       : !strcmp(cmd, "INSERT") ? RT_POLICY_INSERT
	       : !strcmp(cmd, "UPDATE") ? RT_POLICY_UPDATE
	       : !strcmp(cmd, "DELETE") ? RT_POLICY_DELETE
					: RT_POLICY_ALL;
}

/* Reads the policies of the served tables and realtime.messages from the
 * catalog and publishes them. */
static int load_policies(struct pg_store *s, PGconn *c, char *err, size_t err_cap)
{
	const char *vals[] = {s->rls_oids};
	PGresult *rels = query(c,
			       "SELECT n.nspname, c.relname, c.relrowsecurity FROM pg_class c"
			       " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1::oid[])",
			       1, vals, err, err_cap);
	if (!rels)
		return -1;
	PGresult *pols = query(c,
			       "SELECT p.schemaname, p.tablename, p.policyname, p.permissive = 'PERMISSIVE',"
			       " array_to_json(p.roles)::text, p.cmd, p.qual, p.with_check FROM pg_policies p"
			       " JOIN pg_namespace n ON n.nspname = p.schemaname JOIN pg_class c ON"
			       " c.relnamespace = n.oid AND c.relname = p.tablename"
			       " WHERE c.oid = ANY($1::oid[]) ORDER BY 1, 2, 3",
			       1, vals, err, err_cap);
	if (!pols) {
		PQclear(rels);
		return -1;
	}
	struct rt_policies *p = rt_policies_new();
	for (int i = 0; i < PQntuples(rels); i++)
		rt_policies_set_enabled(p, PQgetvalue(rels, i, 0), PQgetvalue(rels, i, 1),
					!strcmp(PQgetvalue(rels, i, 2), "t"));
	int rc = 0;
	size_t n = (size_t)PQntuples(pols), n_opaque = 0;
	for (int i = 0; i < PQntuples(pols) && !rc; i++) {
		json_t *roles = json_loads(PQgetvalue(pols, i, 4), 0, NULL);
		size_t n_roles = json_array_size(roles);
		const char **rv = rt_xcalloc(n_roles + 1, sizeof *rv);
		for (size_t j = 0; j < n_roles; j++)
			rv[j] = json_string_value(json_array_get(roles, j));
		struct rt_policy_def def = {
			.schema = PQgetvalue(pols, i, 0),
			.table = PQgetvalue(pols, i, 1),
			.name = PQgetvalue(pols, i, 2),
			.is_permissive = !strcmp(PQgetvalue(pols, i, 3), "t"),
			.cmds = policy_cmd(PQgetvalue(pols, i, 5)),
			.roles = rv,
			.using_sql = PQgetisnull(pols, i, 6) ? NULL : PQgetvalue(pols, i, 6),
			.check_sql = PQgetisnull(pols, i, 7) ? NULL : PQgetvalue(pols, i, 7),
		};
		char perr[512] = "";
		int arc = rt_policies_add_def(p, &def, perr, sizeof perr);
		n_opaque += arc == 1;
		if (arc == 1)
			rt_debug("store: policy \"%s\" on %s.%s is evaluated by the database: %s",
				 def.name, def.schema, def.table, perr);
		else if (arc < 0) {
			snprintf(err, err_cap, "policy \"%s\" on %s.%s: %s", def.name, def.schema,
				 def.table, perr);
			rc = -1;
		}
		free(rv);
		json_decref(roles);
	}
	PQclear(rels);
	PQclear(pols);
	if (rc) {
		rt_policies_unref(p);
		return -1;
	}
	atomic_fetch_add(&rt_metrics_rls_reloads, 1);
	atomic_store(&rt_metrics_rls_policies, (uint64_t)n);
	atomic_store(&rt_metrics_rls_opaque, (uint64_t)n_opaque);
	rt_info("store: row-level security loaded: %zu policies (%zu opaque, evaluated by the "
		"database)",
		n, n_opaque);
	pthread_mutex_lock(&s->sel_mu);
	s->sel_version = 0; /* column privileges may have changed too */
	pthread_mutex_unlock(&s->sel_mu);
	rt_store_set_policies(&s->base, p);
	return 0;
}

/* Polls the fingerprint every second on a connection of its own and
 * reloads the policies when it changes. */
static void *watch_main(void *arg)
{
	struct pg_store *s = arg;
	PGconn *c = NULL;
	char err[512];
	while (atomic_load(&s->is_running)) {
		nap(s, WATCH_EVERY_MS);
		if (!atomic_load(&s->is_running))
			break;
		if (!c || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = connect_pg(s->conninfo, false);
			if (!c || PQstatus(c) != CONNECTION_OK)
				continue;
		}
		char fp[40];
		if (rls_fingerprint(s, c, fp, err, sizeof err))
			continue;
		if (!strcmp(fp, s->fingerprint))
			continue;
		if (load_policies(s, c, err, sizeof err))
			rt_warn("store: reloading row-level security: %s", err);
		else
			memcpy(s->fingerprint, fp, sizeof fp);
	}
	PQfinish(c);
	return NULL;
}

/* ---- row-level security: the ops ---- */

static int pg_selectable(struct rt_store *base, const char *role, const struct rt_store_table *t,
			 bool *selectable)
{
	struct pg_store *s = (struct pg_store *)base;
	uint64_t version = rt_store_policies_version(base);
	for (size_t i = 0; i < t->n_cols; i++)
		selectable[i] = false;
	pthread_mutex_lock(&s->sel_mu);
	if (s->sel_version != version) {
		while (s->sel) {
			struct sel_entry *e = s->sel;
			s->sel = e->next;
			free(e->role);
			free(e->selectable);
			free(e);
		}
		s->sel_version = version;
	}
	for (struct sel_entry *e = s->sel; e; e = e->next) {
		if (e->table == t && !strcmp(e->role, role)) {
			memcpy(selectable, e->selectable, t->n_cols * sizeof *selectable);
			pthread_mutex_unlock(&s->sel_mu);
			return 0;
		}
	}
	pthread_mutex_unlock(&s->sel_mu);
	struct rt_store_error err;
	PGconn *c = pool_get(s, &err);
	if (!c)
		return -1;
	struct rt_buf tb;
	rt_buf_init(&tb);
	rt_sql_table(&tb, D, t);
	rt_buf_append_byte(&tb, 0);
	const char *vals[] = {role, (const char *)tb.data};
	PGresult *res = run(c,
			    "SELECT a.attname, r.oid IS NOT NULL AND has_column_privilege(r.oid,"
			    " a.attrelid, a.attnum, 'SELECT') FROM pg_attribute a LEFT JOIN pg_roles r"
			    " ON r.rolname = $1 WHERE a.attrelid = $2::regclass AND a.attnum > 0"
			    " AND NOT a.attisdropped",
			    vals, 2, &err);
	pool_put(s, c);
	rt_buf_deinit(&tb);
	if (!res) {
		rt_warn("store: column privileges of %s on %s: %s", role, t->name, err.message);
		return -1;
	}
	for (int i = 0; i < PQntuples(res); i++)
		for (size_t j = 0; j < t->n_cols; j++)
			if (!strcmp(t->cols[j].name, PQgetvalue(res, i, 0)))
				selectable[j] = !strcmp(PQgetvalue(res, i, 1), "t");
	PQclear(res);
	struct sel_entry *e = rt_xcalloc(1, sizeof *e);
	e->role = rt_xstrdup(role);
	e->table = t;
	e->selectable = rt_xcalloc(t->n_cols + 1, sizeof *e->selectable);
	memcpy(e->selectable, selectable, t->n_cols * sizeof *selectable);
	pthread_mutex_lock(&s->sel_mu);
	if (s->sel_version == version) {
		e->next = s->sel;
		s->sel = e;
		e = NULL;
	}
	pthread_mutex_unlock(&s->sel_mu);
	if (e) {
		free(e->role);
		free(e->selectable);
		free(e);
	}
	return 0;
}

/* {"role":…, "claims":…} of a requester, as canonical text. */
static char *auth_text(const struct rt_auth *a)
{
	json_t *j = json_object();
	json_object_set_new(j, "role", json_string(a->role));
	json_object_set_new(j, "claims", a->claims ? json_deep_copy(a->claims) : json_object());
	char *txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return txt;
}

static int pg_visible(struct rt_store *base, const struct rt_store_table *t, const json_t *row,
		      const struct rt_auth *const *who, size_t n, bool *visible)
{
	struct pg_store *s = (struct pg_store *)base;
	for (size_t i = 0; i < n; i++)
		visible[i] = false;
	if (!n)
		return 0;
	/* one entry per distinct requester */
	char **texts = rt_xcalloc(n, sizeof *texts);
	size_t *slot = rt_xcalloc(n, sizeof *slot), n_distinct = 0;
	size_t *first = rt_xcalloc(n, sizeof *first);
	struct rt_buf arr;
	rt_buf_init(&arr);
	rt_buf_append_byte(&arr, '[');
	int rc = -1;
	for (size_t i = 0; i < n; i++) {
		texts[i] = auth_text(who[i]);
		size_t k = 0;
		while (k < n_distinct && strcmp(texts[first[k]], texts[i] ? texts[i] : ""))
			k++;
		if (k == n_distinct) {
			first[n_distinct++] = i;
			if (k)
				rt_buf_append_byte(&arr, ',');
			rt_buf_append_str(&arr, texts[i] ? texts[i] : "{}");
		}
		slot[i] = k;
	}
	rt_buf_append_byte(&arr, ']');
	rt_buf_append_byte(&arr, 0);
	char *row_txt = json_dumps(row, JSON_COMPACT | JSON_REAL_PRECISION(17));
	struct rt_buf tb;
	rt_buf_init(&tb);
	rt_sql_table(&tb, D, t);
	rt_buf_append_byte(&tb, 0);
	const char *vals[] = {(const char *)tb.data, row_txt ? row_txt : "{}",
			      (const char *)arr.data};
	struct rt_store_error err;
	PGconn *c = pool_get(s, &err);
	PGresult *res = NULL;
	if (!c)
		goto out;
	atomic_fetch_add(&rt_metrics_rls_db_checks, 1);
	res = run(c, "SELECT array_to_json(rtsync.visible($1::regclass, $2::jsonb, $3::jsonb))::text",
		  vals, 3, &err);
	pool_put(s, c);
	if (!res) {
		rt_warn("store: row-level security check of %s: %s", t->name, err.message);
		goto out;
	}
	json_t *got = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	if (json_array_size(got) == n_distinct) {
		for (size_t i = 0; i < n; i++)
			visible[i] = json_is_true(json_array_get(got, slot[i]));
		rc = 0;
	}
	json_decref(got);
out:
	PQclear(res);
	for (size_t i = 0; i < n; i++)
		free(texts[i]);
	free(texts);
	free(slot);
	free(first);
	free(row_txt);
	rt_buf_deinit(&arr);
	rt_buf_deinit(&tb);
	return rc;
}

/*
 * Supabase's channel authorization (lib/realtime/tenants/authorization.ex):
 * in a transaction that is rolled back, a message of the topic and extension
 * is inserted as the connection role and read back under the requester's
 * role and claims (read), or inserted under them (write: the WITH CHECK).
 */
static int pg_topic_allowed(struct rt_store *base, const struct rt_auth *who,
			    const char *extension, bool is_write, bool *allowed)
{
	struct pg_store *s = (struct pg_store *)base;
	*allowed = false;
	struct rt_store_error err;
	PGconn *c = pool_get(s, &err);
	if (!c)
		return -1;
	int rc = -1;
	PGresult *res = NULL;
	const char *topic = who->topic ? who->topic : "";
	atomic_fetch_add(&rt_metrics_rls_db_checks, 1);
	if (exec_simple(c, "BEGIN", &err))
		goto out;
	const char *v1[] = {topic, extension};
	if (!is_write &&
	    !(res = run(c,
			"INSERT INTO realtime.messages (topic, extension, private) VALUES ($1, $2,"
			" true) RETURNING id::text",
			v1, 2, &err)))
		goto out;
	char id[64] = "";
	if (res)
		snprintf(id, sizeof id, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	res = NULL;
	const char *v2[] = {topic};
	if (!(res = run(c, "SELECT set_config('realtime.topic', $1, true)", v2, 1, &err)))
		goto out;
	PQclear(res);
	res = NULL;
	/* a check is always under the requester's role */
	if (apply_context(c, who, is_write ? "POST" : "GET", NULL, &err))
		goto out;
	if (is_write) {
		const char *v4[] = {extension};
		res = run(c,
			  "INSERT INTO realtime.messages (topic, extension, private) VALUES"
			  " (realtime.topic(), $1, true)",
			  v4, 1, &err);
		if (res)
			*allowed = true;
		rc = res || !strcmp(err.code, "42501") ? 0 : -1;
	} else {
		const char *v3[] = {id};
		res = run(c, "SELECT 1 FROM realtime.messages WHERE id = $1::uuid", v3, 1, &err);
		if (res) {
			*allowed = PQntuples(res) > 0;
			rc = 0;
		} else if (!strcmp(err.code, "42501")) {
			rc = 0;
		}
	}
out:
	if (rc)
		rt_warn("store: channel authorization of %s: %s", topic, err.message);
	PQclear(res);
	if (PQstatus(c) == CONNECTION_OK) {
		struct rt_store_error ignored;
		exec_simple(c, "ROLLBACK", &ignored);
	}
	pool_put(s, c);
	return rc;
}

/* ---- the change log's identity ---- */

static char *ident_get(sqlite3 *db, const char *k)
{
	sqlite3_stmt *st;
	char *v = NULL;
	if (sqlite3_prepare_v2(db, "SELECT v FROM identity WHERE k = ?", -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		v = rt_xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v;
}

static int ident_set(sqlite3 *db, const char *k, const char *v)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO identity (k, v) VALUES (?, ?)", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

/* Empties the log for another database: positions continue above the old
 * ones, past a gap, so a client resuming from any old position resyncs. */
static int new_log(sqlite3 *db)
{
	return sqlite3_exec(db,
			    "BEGIN IMMEDIATE; DELETE FROM changes; DELETE FROM meta;"
			    " INSERT INTO changes (lsn, tbl, op, ts) VALUES (0, '', 'RESET', 0);"
			    " UPDATE changes SET pos = pos + 1;"
			    " UPDATE sqlite_sequence SET seq = (SELECT max(pos) FROM changes)"
			    "  WHERE name = 'changes';"
			    " COMMIT;",
			    NULL, NULL, NULL) == SQLITE_OK
		       ? 0
		       : -1;
}

/*
 * The retained log belongs to one database and slot: the system identifier
 * and database name (IDENTIFY_SYSTEM) and the slot are recorded with it. A
 * mismatch, or a slot created anew under a log that had streamed, refuses
 * the start unless is_new_log, which starts a new log instead.
 */
static int check_identity(struct pg_store *s, sqlite3 *db, bool is_slot_new, bool is_new_log,
			  char *err, size_t err_cap)
{
	char buf[256];
	PGconn *rc_conn = connect_pg(s->conninfo, true);
	PGresult *res = rc_conn && PQstatus(rc_conn) == CONNECTION_OK
				? PQexec(rc_conn, "IDENTIFY_SYSTEM")
				: NULL;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 4) {
		snprintf(err, err_cap, "IDENTIFY_SYSTEM: %s", pq_msg(rc_conn, buf, sizeof buf));
		PQclear(res);
		PQfinish(rc_conn);
		return -1;
	}
	char *sysid = rt_xstrdup(PQgetvalue(res, 0, 0));
	char *dbname = rt_xstrdup(PQgetvalue(res, 0, 3));
	PQclear(res);
	PQfinish(rc_conn);
	int rc = -1;
	if (sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS identity (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
			 NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, err_cap, "change log: %s", sqlite3_errmsg(db));
		goto out;
	}
	char *o_sys = ident_get(db, "system_identifier"), *o_db = ident_get(db, "database"),
	     *o_slot = ident_get(db, "slot");
	bool has_streamed = meta_get(db, "end_lsn") != 0;
	struct rt_buf why;
	rt_buf_init(&why);
	if (o_sys && strcmp(o_sys, sysid))
		rt_buf_printf(&why, "it was written for the PostgreSQL system %s, this is %s; ",
			      o_sys, sysid);
	if (o_db && strcmp(o_db, dbname))
		rt_buf_printf(&why, "it was written for database \"%s\", this is \"%s\"; ", o_db,
			      dbname);
	if (o_slot && strcmp(o_slot, s->name))
		rt_buf_printf(&why, "it was written for slot \"%s\", this is \"%s\"; ", o_slot,
			      s->name);
	if (!why.len && is_slot_new && has_streamed)
		rt_buf_printf(&why, "it was streamed from a replication slot \"%s\" that no longer "
				    "exists (the slot was created anew); ",
			      s->name);
	bool is_mismatch = why.len > 0;
	if (is_mismatch && !is_new_log) {
		rt_buf_append_byte(&why, 0);
		snprintf(err, err_cap,
			 "the change log %s belongs to another database: %sits positions and slot "
			 "state do not apply here. Start with --postgres-new-log "
			 "(RTSYNC_POSTGRES_NEW_LOG=1) to begin a new log (resuming clients resync), or "
			 "use another --data-dir for this database",
			 s->log_path, (const char *)why.data);
	} else if (is_mismatch && new_log(db)) {
		snprintf(err, err_cap, "change log: %s", sqlite3_errmsg(db));
	} else {
		if (is_mismatch)
			rt_warn("store: starting a new change log (--postgres-new-log): %.*s",
				(int)(why.len > 2 ? why.len - 2 : 0), (const char *)why.data);
		if (ident_set(db, "system_identifier", sysid) || ident_set(db, "database", dbname) ||
		    ident_set(db, "slot", s->name))
			snprintf(err, err_cap, "change log: %s", sqlite3_errmsg(db));
		else
			rc = 0;
	}
	rt_buf_deinit(&why);
	free(o_sys);
	free(o_db);
	free(o_slot);
out:
	free(sysid);
	free(dbname);
	return rc;
}

int rt_store_open_postgres(const struct rt_store_pg_config *cfg, struct rt_store **out, char *err,
			   size_t err_cap)
{
	struct pg_store *s = rt_xcalloc(1, sizeof *s);
	s->base.ops = &pg_ops;
	s->base.key_window_ms = RT_STORE_KEY_WINDOW_MS;
	rt_store_policies_init(&s->base);
	s->conninfo = rt_xstrdup(cfg->conninfo);
	s->name = rt_xstrdup(cfg->name && *cfg->name ? cfg->name : "rtsync");
	s->log_path = rt_xstrdup(cfg->log_path);
	s->retain_count = cfg->retain_count;
	s->retain_ms = cfg->retain_ms;
	s->n_pool = cfg->pool_size ? cfg->pool_size : 4;
	if (cfg->relay) {
		s->relay = *cfg->relay;
		s->has_relay = true;
	}
	s->pool = rt_xcalloc(s->n_pool, sizeof *s->pool);
	pthread_mutex_init(&s->pool_mu, NULL);
	pthread_cond_init(&s->pool_cond, NULL);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->sel_mu, NULL);
	s->uses_roles = true;
	char buf[512];
	PGconn *c = connect_pg(s->conninfo, false);
	if (!c || PQstatus(c) != CONNECTION_OK) {
		snprintf(err, err_cap, "cannot connect to PostgreSQL: %s", pq_msg(c, buf, sizeof buf));
		PQfinish(c);
		goto err;
	}
	if (check_server(c, err, err_cap))
		goto err_conn;
	/* before the schema: its policies may call auth.uid() and the like */
	if (setup_keys(c, err, err_cap) || setup_rls_objects(c, err, err_cap))
		goto err_conn;
	if (cfg->schema_sql) {
		PGresult *res = PQexec(c, cfg->schema_sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK &&
		    PQresultStatus(res) != PGRES_EMPTY_QUERY) {
			snprintf(err, err_cap, "schema: %s", pq_msg(c, buf, sizeof buf));
			PQclear(res);
			goto err_conn;
		}
		PQclear(res);
	}
	if (load_schema(s, c, cfg->tables, err, err_cap))
		goto err_conn;
	/* the log's identity first: a refused start creates nothing */
	const char *slot_vals[] = {s->name};
	PGresult *slot_res = query(c,
				   "SELECT coalesce(database, ''), coalesce(plugin, ''), current_database() "
				   "FROM pg_replication_slots WHERE slot_name = $1",
				   1, slot_vals, err, err_cap);
	if (!slot_res)
		goto err_conn;
	bool is_slot_new = PQntuples(slot_res) == 0;
	/* Slots are the cluster's: one of this name may serve another database. */
	if (!is_slot_new && (strcmp(PQgetvalue(slot_res, 0, 0), PQgetvalue(slot_res, 0, 2)) ||
			     strcmp(PQgetvalue(slot_res, 0, 1), "pgoutput"))) {
		snprintf(err, err_cap,
			 "replication slot \"%s\" belongs to database \"%s\" (plugin \"%s\"), not to "
			 "\"%s\" with pgoutput: give this server its own --postgres-name, or drop "
			 "that slot (SELECT pg_drop_replication_slot('%s'))",
			 s->name, PQgetvalue(slot_res, 0, 0), PQgetvalue(slot_res, 0, 1),
			 PQgetvalue(slot_res, 0, 2), s->name);
		PQclear(slot_res);
		goto err_conn;
	}
	PQclear(slot_res);
	if (open_log(s->log_path, &s->log_db, err, err_cap) ||
	    open_log(s->log_path, &s->repl_db, err, err_cap) ||
	    check_identity(s, s->log_db, is_slot_new, cfg->is_new_log, err, err_cap))
		goto err_conn;
	if (setup_replication(s, c, &is_slot_new, err, err_cap) || rls_oids(s, c, err, err_cap) ||
	    check_roles(s, c, err, err_cap) ||
	    rls_fingerprint(s, c, s->fingerprint, err, err_cap) ||
	    load_policies(s, c, err, err_cap))
		goto err_conn;
	s->pool[0].conn = c; /* the first pool connection */
	c = NULL;
	if (sqlite3_prepare_v2(s->repl_db,
			       "INSERT INTO changes (lsn, tbl, op, new, old, ts, xid) VALUES (?,?,?,?,?,?,?)",
			       -1, &s->ins_st, NULL) != SQLITE_OK) {
		snprintf(err, err_cap, "change log: %s", sqlite3_errmsg(s->repl_db));
		goto err;
	}
	if (sqlite3_prepare_v2(s->repl_db,
			       "INSERT OR IGNORE INTO changes (pos, lsn, tbl, op, new, old, ts, xid) "
			       "VALUES (?,?,?,?,?,?,?,?)",
			       -1, &s->put_st, NULL) != SQLITE_OK) {
		snprintf(err, err_cap, "change log: %s", sqlite3_errmsg(s->repl_db));
		goto err;
	}
	s->commit_lsn = meta_get(s->log_db, "commit_lsn");
	s->end_lsn = meta_get(s->log_db, "end_lsn");
	s->committed_pos = pg_last_pos(&s->base);
	atomic_store(&s->is_running, true);
	int prc = pthread_create(&s->thread, NULL, repl_main, s);
	if (prc) {
		snprintf(err, err_cap, "cannot start the replication thread: %s", strerror(prc));
		goto err;
	}
	s->is_started = true;
	if ((prc = pthread_create(&s->watch_thread, NULL, watch_main, s))) {
		snprintf(err, err_cap, "cannot start the policy watch thread: %s", strerror(prc));
		goto err;
	}
	s->is_watching = true;
	*out = &s->base;
	return 0;
err_conn:
	PQfinish(c);
err:
	pg_ops.close(&s->base);
	return -1;
}

static void pg_close(struct rt_store *base)
{
	struct pg_store *s = (struct pg_store *)base;
	if (s->is_started) {
		atomic_store(&s->is_running, false);
		pthread_join(s->thread, NULL);
	}
	if (s->is_watching)
		pthread_join(s->watch_thread, NULL);
	while (s->sel) {
		struct sel_entry *e = s->sel;
		s->sel = e->next;
		free(e->role);
		free(e->selectable);
		free(e);
	}
	free(s->rls_oids);
	pthread_mutex_destroy(&s->sel_mu);
	while (s->rels) {
		struct rel *r = s->rels;
		s->rels = r->next;
		rel_free(r);
	}
	for (size_t i = 0; i < s->n_pool; i++)
		PQfinish(s->pool[i].conn);
	free(s->pool);
	sqlite3_finalize(s->ins_st);
	sqlite3_finalize(s->put_st);
	sqlite3_close(s->repl_db);
	sqlite3_close(s->log_db);
	rt_store_schema_free(&s->base.schema);
	rt_store_policies_deinit(&s->base);
	pthread_mutex_destroy(&s->pool_mu);
	pthread_cond_destroy(&s->pool_cond);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s->conninfo);
	free(s->name);
	free(s->log_path);
	free(s);
}

/* ---- shared documents ---- */

/* Runs sql with text parameters and, last, one binary (data may be NULL:
 * no binary parameter). Returns the result or NULL (logged). */
static PGresult *doc_exec(PGconn *c, const char *sql, const char *const *texts, int n_texts,
			  const uint8_t *data, size_t data_len)
{
	const char *vals[4];
	int lens[4] = {0}, fmts[4] = {0};
	int n = n_texts;
	for (int i = 0; i < n_texts; i++)
		vals[i] = texts[i];
	if (data) {
		vals[n] = (const char *)data;
		lens[n] = (int)data_len;
		fmts[n] = 1;
		n++;
	}
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, lens, fmts, 1);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	rt_error("store: documents: %s", PQresultErrorMessage(res));
	PQclear(res);
	return NULL;
}

static PGconn *doc_conn(struct rt_store *base)
{
	struct rt_store_error e;
	PGconn *c = pool_get((struct pg_store *)base, &e);
	if (!c)
		rt_error("store: documents: %s", e.message);
	return c;
}

static uint64_t be64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | (uint8_t)p[i];
	return v;
}

static int pg_doc_read(struct rt_store *base, const char *doc, rt_store_doc_row_fn *row, void *ctx)
{
	PGconn *c = doc_conn(base);
	if (!c)
		return -1;
	const char *t[] = {doc};
	PGresult *res = doc_exec(c, "SELECT seq, data FROM rtsync.docs WHERE doc = $1 ORDER BY seq",
				 t, 1, NULL, 0);
	if (res) {
		for (int i = 0; i < PQntuples(res); i++)
			if (PQgetlength(res, i, 0) != 8 ||
			    row(be64(PQgetvalue(res, i, 0)), (const uint8_t *)PQgetvalue(res, i, 1),
				(size_t)PQgetlength(res, i, 1), ctx))
				break;
		PQclear(res);
	}
	pool_put((struct pg_store *)base, c);
	return res ? 0 : -1;
}

static int pg_doc_append(struct rt_store *base, const char *doc, uint64_t seq, const uint8_t *data,
			 size_t data_len)
{
	PGconn *c = doc_conn(base);
	if (!c)
		return -1;
	char sq[24];
	snprintf(sq, sizeof sq, "%llu", (unsigned long long)seq);
	const char *t[] = {doc, sq};
	PGresult *res = doc_exec(c, "INSERT INTO rtsync.docs (doc, seq, data) VALUES ($1, $2, $3)"
				    " ON CONFLICT DO NOTHING", t, 2, data, data_len);
	PQclear(res);
	pool_put((struct pg_store *)base, c);
	return res ? 0 : -1;
}

static int pg_doc_compact(struct rt_store *base, const char *doc, uint64_t upto,
			  const uint8_t *data, size_t data_len)
{
	PGconn *c = doc_conn(base);
	if (!c)
		return -1;
	char sq[24];
	snprintf(sq, sizeof sq, "%llu", (unsigned long long)upto);
	const char *t[] = {doc, sq};
	/* one statement, one transaction */
	PGresult *res = doc_exec(c, "WITH gone AS (DELETE FROM rtsync.docs WHERE doc = $1 AND seq <= $2)"
				    " INSERT INTO rtsync.docs (doc, seq, data) VALUES ($1, $2, $3)"
				    " ON CONFLICT (doc, seq) DO UPDATE SET data = EXCLUDED.data",
				 t, 2, data, data_len);
	PQclear(res);
	pool_put((struct pg_store *)base, c);
	return res ? 0 : -1;
}

static int pg_counter_next(struct rt_store *base, const char *name, uint64_t *value)
{
	PGconn *c = doc_conn(base);
	if (!c)
		return -1;
	const char *t[] = {name};
	PGresult *res = doc_exec(c, "INSERT INTO rtsync.counters (name, value) VALUES ($1, 1)"
				    " ON CONFLICT (name) DO UPDATE SET value = rtsync.counters.value + 1"
				    " RETURNING value",
				 t, 1, NULL, 0);
	int rc = -1;
	if (res && PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 8) {
		*value = be64(PQgetvalue(res, 0, 0));
		rc = 0;
	}
	PQclear(res);
	pool_put((struct pg_store *)base, c);
	return rc;
}

static int pg_doc_size(struct rt_store *base, const char *doc, uint64_t *n_updates, uint64_t *bytes)
{
	*n_updates = *bytes = 0;
	PGconn *c = doc_conn(base);
	if (!c)
		return -1;
	const char *t[] = {doc};
	PGresult *res = doc_exec(c, "SELECT count(*)::int8, coalesce(sum(length(data)), 0)::int8"
				    " FROM rtsync.docs WHERE doc = $1", t, 1, NULL, 0);
	if (res && PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 8 && PQgetlength(res, 0, 1) == 8) {
		*n_updates = be64(PQgetvalue(res, 0, 0));
		*bytes = be64(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	pool_put((struct pg_store *)base, c);
	return res ? 0 : -1;
}

static const struct rt_store_ops pg_ops = {
	.name = "postgres",
	.close = pg_close,
	.read = pg_read,
	.write = pg_write,
	.changes_after = pg_changes_after,
	.last_pos = pg_last_pos,
	.wait = pg_wait,
	.prune = pg_prune,
	.selectable = pg_selectable,
	.visible = pg_visible,
	.topic_allowed = pg_topic_allowed,
	.doc_read = pg_doc_read,
	.doc_append = pg_doc_append,
	.counter_next = pg_counter_next,
	.doc_compact = pg_doc_compact,
	.doc_size = pg_doc_size,
};
