/*
 * The store: tables with typed columns, reads and writes, and the stream of
 * changes, behind one interface that the embedded SQLite backend and the
 * PostgreSQL backend both implement.
 *
 * Every change has a position: a number that grows with commit order and is
 * never reused. Changes after a position stay readable while they are in the
 * retained window (by count and age); older ones are pruned.
 *
 * Ownership: a store owns its schema, which is immutable for the store's
 *            lifetime (tables and columns may be borrowed freely). Rows and
 *            changes handed out are owned by the caller: free them with
 *            json_decref() / rt_change_free().
 * Threads:   rt_store_schema() and the table lookups from any thread. Reads
 *            and writes are blocking calls for pool threads (never an I/O
 *            worker): with SQLite each pool thread gets its own connection,
 *            with PostgreSQL a call waits for a free connection of the pool.
 *            rt_store_changes_after() is for the change thread. The
 *            PostgreSQL store runs its own replication thread.
 * Limits:    RT_STORE_MAX_ROWS rows per read.
 */
#ifndef RT_STORE_STORE_H
#define RT_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/policy.h"
#include "store/conflict.h"
#include "store/query.h"

#define RT_STORE_MAX_ROWS 10000
/* Longest idempotency key, in bytes. */
#define RT_STORE_MAX_KEY 255
/* Idempotency keys are kept this long unless configured otherwise (24 h). */
#define RT_STORE_KEY_WINDOW_MS (24ull * 3600 * 1000)

struct rt_store;

struct rt_store_column {
	char *name;
	char *type;   /* Postgres type name: int8, text, float8, bool, jsonb, … */
	bool is_pk;
	bool is_nullable;
};

struct rt_store_table {
	char *schema; /* "public" */
	char *name;
	struct rt_store_column *cols;
	size_t n_cols;
};

struct rt_store_schema {
	struct rt_store_table *tables;
	size_t n_tables;
};

enum rt_change_type { RT_CHANGE_INSERT, RT_CHANGE_UPDATE, RT_CHANGE_DELETE };

struct rt_change {
	uint64_t pos;
	enum rt_change_type type;
	const struct rt_store_table *table; /* borrowed from the store's schema */
	json_t *record;     /* new row, typed (INSERT, UPDATE); NULL for DELETE */
	json_t *old_record; /* old row (UPDATE, DELETE); NULL for INSERT */
	int64_t commit_ms;  /* commit time, ms since the epoch */
	/* PostgreSQL: the transaction's commit LSN and id (32 bits), which tell
	 * whether a read already shows it (rt_read_mark_has); 0 when unknown and
	 * on the embedded store. */
	uint64_t lsn;
	uint32_t xid;
};

/* An error in PostgREST's shape: HTTP status, code, message, details. */
struct rt_store_error {
	int status;       /* 400, 404, 406, 409, 500, … */
	char code[16];    /* "PGRST205", "42703", "23505", … */
	char message[512];
	char details[512]; /* "" when none */
};

enum rt_write_kind { RT_WRITE_INSERT, RT_WRITE_UPSERT, RT_WRITE_UPDATE, RT_WRITE_DELETE };

/* What a write did (docs/writes.md). JSON members are new references: free
 * with rt_write_result_deinit(). */
struct rt_write_result {
	enum rt_write_outcome outcome;
	json_t *current;   /* with a base: the whole row as it now is (NULL when gone) */
	json_t *conflicts; /* with a base: array of conflicting column names */
	uint64_t position; /* position of the last change the write made; 0: none */
	bool is_replayed;  /* an idempotency key seen before: the first result, not reapplied */
};

struct rt_write {
	enum rt_write_kind kind;
	const struct rt_store_table *table;
	const json_t *rows;          /* INSERT/UPSERT: array of objects; UPDATE: one object */
	const struct rt_query *where; /* UPDATE/DELETE filters (and select/order/limit for the
				       * representation); may be NULL for INSERT */
	bool is_ignore_duplicates;   /* UPSERT: resolution=ignore-duplicates */
	bool is_missing_default;     /* with columns=: a row's missing keys take their
				      * defaults instead of NULL (missing=default) */
	bool wants_rows;             /* return the affected rows */
	bool is_count_only;          /* the rows are wanted for their count alone (Prefer
				      * return=minimal): the requester does not see them,
				      * so SELECT policies do not check them */
	bool wants_single;           /* exactly one row must be affected, else nothing is
				      * applied (406 PGRST116) */
	/* Conflict control: with a base (object of the values the writer last
	 * saw), an UPDATE, UPSERT or DELETE targets one row (UPDATE/DELETE: the
	 * row `where` selects; UPSERT: the row with rows[0]'s primary key) and
	 * rt_conflict_decide() settles it under strategy, in the write's
	 * transaction. */
	const json_t *base;
	enum rt_write_strategy strategy;
	/* With a key, the write and its result are recorded together; a write
	 * with the same key and fingerprint returns the recorded result without
	 * applying again (422 RTS422 for another fingerprint). */
	const char *idempotency_key;
	const char *fingerprint;        /* what identifies the request; "" when NULL */
	struct rt_write_result *result; /* out, may be NULL: filled when the write succeeds */
	/* The requester whose row-level security applies (docs/security.md):
	 * rows its USING hides are not updated or deleted, rows its WITH CHECK
	 * refuses fail the whole write with 42501 (HTTP 401 for anon, 403
	 * otherwise). NULL: the server itself, no RLS. */
	const struct rt_auth *who;
};

/*
 * What a read shows, precisely (rt_read.mark): every change at or below pos,
 * and on PostgreSQL also the transactions its snapshot sees — a change
 * committed while the read ran may be in it or not, and only the snapshot
 * tells. Free with rt_read_mark_deinit().
 */
struct rt_read_mark {
	uint64_t pos;
	uint64_t xmin, xmax; /* the snapshot's, full transaction ids; xmax 0: none */
	uint64_t *xip;       /* in progress at the snapshot, ascending; owned */
	size_t n_xip;
	uint64_t lsn;        /* changes committed at or after it are not in the read */
};

/* Whether the read m describes already shows change ch. */
bool rt_read_mark_has(const struct rt_read_mark *m, const struct rt_change *ch);
/* Whether neither ch nor any later change can be in the read (then only
 * positions tell, and m's snapshot can be dropped). */
bool rt_read_mark_is_past(const struct rt_read_mark *m, const struct rt_change *ch);
void rt_read_mark_deinit(struct rt_read_mark *m);

/* Options for a read. */
struct rt_read {
	const struct rt_store_table *table;
	const struct rt_query *query;
	bool wants_count; /* count=exact: also return the total matching rows */
	/* Out, may be NULL: the change-log position the rows reflect. Every
	 * change at or below it shows in the rows. SQLite reads it in the
	 * read's own transaction (exact); PostgreSQL takes the retained log's
	 * last committed position before the read, so changes after it may
	 * already show too (applying them again in order converges). */
	uint64_t *position;
	/* Out, may be NULL: what the read shows exactly, for telling which of
	 * the changes that follow are already in it. */
	struct rt_read_mark *mark;
	/* The requester: only the rows its policies let it select are read and
	 * counted. NULL: the server itself, no RLS. */
	const struct rt_auth *who;
};

/* ---- lifecycle and schema ---- */

/*
 * Opens the embedded SQLite store at db_path, applying schema_sql (may be
 * NULL) idempotently, installing change-capture triggers on every table, and
 * keeping at most retain_count changes no older than retain_ms. Returns 0, or
 * -1 with the reason in err.
 */
int rt_store_open_sqlite(const char *db_path, const char *schema_sql, uint64_t retain_count,
			 uint64_t retain_ms, struct rt_store **out, char *err, size_t err_cap);

/* Options of the PostgreSQL store (docs/store.md). */
/*
 * Several nodes on one PostgreSQL database (docs/cluster.md): with a relay,
 * a node runs the replication only while it holds the leadership (a
 * PostgreSQL advisory lock on the slot's name) and publishes every change it
 * retains, in batches of whole transactions, to the relay before confirming
 * them to PostgreSQL; the other nodes append the relay's batches to their own
 * log under the same positions, and a new leader first reads the relay to
 * its end, then streams from the slot's confirmed position, skipping the
 * transactions its log holds (by commit LSN). Both callbacks run on the
 * replication thread and may block up to the time they are given.
 */
struct rt_store_relay {
	/* Makes one batch (data_len bytes, the store's encoding) durable under
	 * last_pos, its last change's position. Returns 0 when it is (also when
	 * a batch under last_pos or later already was), -1 when the relay is
	 * unreachable. */
	int (*publish)(void *ctx, uint64_t last_pos, const char *data, size_t data_len);
	/* Calls fn, in order, for the batches whose last position is after
	 * `after`, waiting up to wait_ms for the first; *top gets the last
	 * position the relay holds (0: empty). fn returns 0 to go on. Returns
	 * the number of batches, or -1 when the relay is unreachable. */
	int (*read)(void *ctx, uint64_t after, unsigned wait_ms,
		    int (*fn)(void *arg, uint64_t last_pos, const char *data, size_t data_len),
		    void *arg, uint64_t *top);
	void *ctx;
};

struct rt_store_pg_config {
	const char *conninfo;   /* libpq connection string or postgres:// URI */
	const struct rt_store_relay *relay; /* several nodes (copied); NULL: this node alone */
	const char *schema_sql; /* applied at open (may be NULL) */
	const char *tables;     /* comma-separated tables of "public" to serve and
				 * publish; NULL or "" for every table of "public" */
	const char *log_path;   /* the retained change log (a local SQLite file) */
	const char *name;       /* publication and replication slot name */
	unsigned pool_size;     /* connections for reads and writes */
	bool is_new_log;        /* a kept log of another database or slot: start a new
				 * one (positions continue above it) instead of refusing */
	uint64_t retain_count, retain_ms;
};

/*
 * Opens the PostgreSQL store: connects, checks wal_level=logical and the
 * REPLICATION attribute, applies schema_sql, loads the tables (each needs a
 * primary key), creates or updates the publication and creates the slot when
 * missing, opens the retained log and starts the replication thread, which
 * reconnects with backoff. Returns 0, or -1 with the reason in err.
 */
int rt_store_open_postgres(const struct rt_store_pg_config *cfg, struct rt_store **out, char *err,
			   size_t err_cap);

/* With a relay: whether this node holds the replication now (any thread;
 * false without a relay or on the embedded store). */
bool rt_store_is_leader(const struct rt_store *s);

/* Closes either backend (stops its threads first). NULL does nothing. */
void rt_store_close(struct rt_store *s);

/* "sqlite" or "postgres". */
const char *rt_store_backend(const struct rt_store *s);

const struct rt_store_schema *rt_store_schema(const struct rt_store *s);
/* A table by schema (NULL means "public") and name; NULL when absent. */
const struct rt_store_table *rt_store_table(const struct rt_store *s, const char *schema,
					    const char *name);
/* A column of t by name; NULL when absent. */
const struct rt_store_column *rt_store_column(const struct rt_store_table *t, const char *name);
/* Whether every condition of the filter tree n names a column of t; the
 * first that does not is in err ("column T.C does not exist": PostgREST's
 * 42703). Returns 0 or -1. */
int rt_store_check_columns(const struct rt_store_table *t, const struct rt_query_node *n, char *err,
			   size_t err_cap);

/* ---- row-level security (docs/security.md) ---- */

/*
 * The store's policy set, a new reference (rt_policies_unref). SQLite: the
 * policies of the schema file, fixed for the store's lifetime. PostgreSQL:
 * the catalog's, read at open and again when they change, so two calls may
 * return different sets; rt_store_policies_version() tells them apart.
 * Any thread.
 */
struct rt_policies *rt_store_policies(struct rt_store *s);
/* Grows each time the policy set or the column privileges change. Any thread. */
uint64_t rt_store_policies_version(struct rt_store *s);

/*
 * The columns of t that role may select: selectable[i] for t->cols[i]
 * (caller's array of t->n_cols). SQLite: every column. PostgreSQL: the
 * role's column privileges (cached per role; an unknown role may select
 * none). Returns 0, or -1 when they cannot be read (every column false).
 * Pool or change thread.
 */
int rt_store_selectable(struct rt_store *s, const char *role, const struct rt_store_table *t,
			bool *selectable);

/*
 * For policies outside the compiled subset (RT_POLICY_OPAQUE, PostgreSQL
 * only): whether each requester who[i] may select row (a row of t, as the
 * change feed has it), asked of the database in one round trip for all of
 * them. visible[i] is set for i < n. Returns 0, or -1 (every visible[i]
 * false). Change thread. Counted in /metrics
 * (rtsync_rls_database_checks_total).
 */
int rt_store_visible(struct rt_store *s, const struct rt_store_table *t, const json_t *row,
		     const struct rt_auth *const *who, size_t n, bool *visible);

/*
 * Channel authorization by the database, for policies on realtime.messages
 * outside the compiled subset (PostgreSQL): whether who may read (SELECT;
 * is_write false) or write (INSERT; is_write true) messages of extension
 * ("broadcast", "presence") on who->topic, checked with one query under
 * who's role and claims. Returns 0 with *allowed set, or -1 (not allowed).
 * Pool threads.
 */
int rt_store_topic_allowed(struct rt_store *s, const struct rt_auth *who, const char *extension,
			   bool is_write, bool *allowed);

/* ---- reads and writes (pool threads) ---- */

/* Runs a read. On success *rows is a JSON array (new reference) and, with
 * wants_count, *total the number of matching rows. Returns 0 or -1 with err. */
int rt_store_read(struct rt_store *s, const struct rt_read *r, json_t **rows, long long *total,
		  struct rt_store_error *err);

/* Runs a write in one transaction. With wants_rows, *rows gets the affected
 * rows (new reference), else NULL. With w->result, that is filled too (also
 * for a conflict, which is a success: nothing applied, outcome says why).
 * Returns 0 or -1 with err. */
int rt_store_write(struct rt_store *s, const struct rt_write *w, json_t **rows,
		   struct rt_store_error *err);
void rt_write_result_deinit(struct rt_write_result *r);

/* How long idempotency keys are kept (default RT_STORE_KEY_WINDOW_MS); call
 * before the store is used. Pruned by rt_store_prune(). */
void rt_store_set_key_window(struct rt_store *s, uint64_t ms);

/* ---- the change stream (change thread) ---- */

/* How far a read of the change log got: log rows are read even when they are
 * not returned (a table created after start), so positions must advance by
 * these, not by the changes returned. */
struct rt_store_scan {
	size_t n_rows;     /* log rows read */
	uint64_t last_pos; /* position of the last row read; `after` when none */
};

/*
 * Reads up to max changes with position > after, in order. *out is an array
 * of *n changes (free with rt_store_changes_free). oldest, when not NULL, gets
 * the smallest position still retained (0 when the log is empty): a caller whose `after` is below
 * oldest - 1 has missed changes. *scan says how far the read got (the log has
 * more when scan->n_rows == max). Returns 0 or -1 (error logged).
 */
int rt_store_changes_after(struct rt_store *s, uint64_t after, size_t max, struct rt_change **out,
			   size_t *n, uint64_t *oldest, struct rt_store_scan *scan);

/* The newest retained position, 0 when the log is empty. */
uint64_t rt_store_last_pos(struct rt_store *s);

/* Blocks until a change may have been committed after *version, or timeout_ms
 * passes; updates *version. Returns true when something may have changed.
 * Cheap: lets the change thread sleep. */
bool rt_store_wait(struct rt_store *s, uint64_t *version, unsigned timeout_ms);

/* Prunes changes outside the retained window. */
void rt_store_prune(struct rt_store *s);

void rt_store_changes_free(struct rt_change *c, size_t n);

/* ---- shared documents (src/collab, docs/collab.md; pool threads) ---- */

/*
 * A document is a log of Yjs updates numbered by seq, in a table the store
 * owns: SQLite _rtsync_docs, PostgreSQL rtsync.docs (doc, seq, data).
 * rt_store_doc_read calls row for each update of doc in seq order (data
 * valid during the call); row returning non-zero stops the read.
 * rt_store_doc_append adds one (a seq already there is left as it is).
 * rt_store_doc_compact replaces, in one transaction, every update of doc up
 * to seq upto by data stored at upto. rt_store_doc_size counts the updates
 * and their bytes. Each returns 0, or -1 with the reason logged.
 */
typedef int rt_store_doc_row_fn(uint64_t seq, const uint8_t *data, size_t data_len, void *ctx);
int rt_store_doc_read(struct rt_store *s, const char *doc, rt_store_doc_row_fn *row, void *ctx);
int rt_store_doc_append(struct rt_store *s, const char *doc, uint64_t seq, const uint8_t *data,
			size_t data_len);
int rt_store_doc_compact(struct rt_store *s, const char *doc, uint64_t upto, const uint8_t *data,
			 size_t data_len);
int rt_store_doc_size(struct rt_store *s, const char *doc, uint64_t *n_updates, uint64_t *bytes);

/* ---- named counters (pool threads or the main thread) ---- */

/*
 * Adds one to the persisted counter name (created at 0) and returns the new
 * value in *value: SQLite _rtsync_counters, PostgreSQL rtsync.counters
 * (name, value), one statement, so two callers never get the same value and
 * a value once returned is never returned again, across restarts. The lock
 * service takes its fencing epoch from one (docs/locks.md). Returns 0, or -1
 * with the reason logged.
 */
int rt_store_counter_next(struct rt_store *s, const char *name, uint64_t *value);

/* "INSERT", "UPDATE", "DELETE" */
const char *rt_change_type_name(enum rt_change_type t);

#endif
