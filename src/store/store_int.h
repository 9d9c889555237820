/*
 * What the store backends share: the ops table each backend fills, the
 * common head of every store object, and small helpers. store.c dispatches
 * the public calls of store.h through the ops.
 *
 * Ownership: a backend's object starts with struct rt_store (first member)
 *            and owns the schema in it; store.c frees neither.
 * Threads:   as store.h says for the matching public call.
 * Limits:    none of its own.
 */
#ifndef RT_STORE_STORE_INT_H
#define RT_STORE_STORE_INT_H

#include <pthread.h>
#include <sqlite3.h>

#include "store/store.h"

struct rt_store_ops {
	const char *name; /* "sqlite", "postgres" */
	void (*close)(struct rt_store *s);
	int (*read)(struct rt_store *s, const struct rt_read *r, json_t **rows, long long *total,
		    struct rt_store_error *err);
	int (*write)(struct rt_store *s, const struct rt_write *w, json_t **rows,
		     struct rt_store_error *err);
	int (*changes_after)(struct rt_store *s, uint64_t after, size_t max,
			     struct rt_change **out, size_t *n, uint64_t *oldest,
			     struct rt_store_scan *scan);
	uint64_t (*last_pos)(struct rt_store *s);
	bool (*wait)(struct rt_store *s, uint64_t *version, unsigned timeout_ms);
	void (*prune)(struct rt_store *s);
	/* Row-level security (store.h); NULL: every column selectable, and no
	 * opaque policies to ask about (rt_store_visible fails). */
	int (*selectable)(struct rt_store *s, const char *role, const struct rt_store_table *t,
			  bool *selectable);
	int (*visible)(struct rt_store *s, const struct rt_store_table *t, const json_t *row,
		       const struct rt_auth *const *who, size_t n, bool *visible);
	int (*topic_allowed)(struct rt_store *s, const struct rt_auth *who,
			     const char *extension, bool is_write, bool *allowed);
	/* Shared documents (store.h). */
	int (*doc_read)(struct rt_store *s, const char *doc, rt_store_doc_row_fn *row, void *ctx);
	int (*doc_append)(struct rt_store *s, const char *doc, uint64_t seq, const uint8_t *data,
			  size_t data_len);
	int (*doc_compact)(struct rt_store *s, const char *doc, uint64_t upto,
			   const uint8_t *data, size_t data_len);
	int (*doc_size)(struct rt_store *s, const char *doc, uint64_t *n_updates, uint64_t *bytes);
	/* Named counters (store.h). */
	int (*counter_next)(struct rt_store *s, const char *name, uint64_t *value);
};

/* The head of every backend's store object. */
struct rt_store {
	const struct rt_store_ops *ops;
	struct rt_store_schema schema;
	uint64_t key_window_ms; /* idempotency keys are kept this long */
	pthread_mutex_t policies_mu; /* policies (the pointer) */
	struct rt_policies *policies; /* never NULL once open (an empty set) */
	_Atomic uint64_t policies_version;
	/* Writes failing for want of storage or of the database (507; 503 with a read-only,
	 * I/O, resource or connection code) since the last one that succeeded: the first logs
	 * the fault, the next success the recovery (rt_store_write). */
	_Atomic uint64_t n_unavailable;
};

/* Sets up the head's policy state with an empty set (backends call it
 * first in open), and releases it (in close). */
void rt_store_policies_init(struct rt_store *s);
void rt_store_policies_deinit(struct rt_store *s);
/* Publishes a new policy set (takes the reference) and bumps the version. */
void rt_store_set_policies(struct rt_store *s, struct rt_policies *p);
/* Bumps the version alone (column privileges changed). */
void rt_store_policies_touch(struct rt_store *s);

/* Fills e (status, code, details may be NULL) and keeps its texts valid UTF-8. */
void rt_store_set_err(struct rt_store_error *e, int status, const char *code,
		      const char *details, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Frees every table and column of sc and empties it. */
void rt_store_schema_free(struct rt_store_schema *sc);

/*
 * One output column of a read or of the rows a write returns: a table
 * column's value, or an aggregate over the rows of a group (docs/store.md).
 */
struct rt_store_output {
	const char *key;                   /* the JSON key: alias, column or function name */
	const struct rt_store_column *col; /* NULL for count() */
	enum rt_query_agg agg;             /* RT_QUERY_AGG_NONE: the column's value */
	const char *type;                  /* the value's Postgres type (the column's, or
					    * what the aggregate gives) */
};

/*
 * The outputs a select names (every column when q or its select is absent;
 * "*" expands to all columns), and *is_grouped when one is an aggregate:
 * the others are then the group. *out is an array the caller frees (also
 * after a failure); keys and columns borrow from q and t. Returns 0, or -1
 * with e: 400 42703 for an unknown column, 404 42883 "function sum(text)
 * does not exist" for sum or avg of a non-numeric column, min or max of one
 * without an order (json, jsonb, bool, bytea): PostgreSQL's refusals,
 * before any SQL runs.
 */
int rt_store_outputs(const struct rt_store_table *t, const struct rt_query *q,
		     struct rt_store_output **out, size_t *n, bool *is_grouped,
		     struct rt_store_error *e);

/* ---- writes with conflict control and idempotency keys (docs/writes.md) ---- */

/* Validates that every key of the object row is a column of t (400 PGRST102
 * / PGRST204 otherwise). Returns 0 or -1 with e. */
int rt_store_check_row_keys(const struct rt_store_table *t, const json_t *row,
			    struct rt_store_error *e);
/* True when t has a primary key. */
bool rt_store_has_pk(const struct rt_store_table *t);
/* The projection of a full row on outputs without aggregates (new reference). */
json_t *rt_store_project(const json_t *full, const struct rt_store_output *outs, size_t n);

/* What a backend does for a write with a base; rt_store_controlled_write()
 * runs the flow. Rows are full rows as JSON objects. */
struct rt_store_cas {
	void *ctx;                           /* the backend's connection */
	const struct rt_store_output *outs; /* the select's projection of written rows */
	size_t n_outs;
	json_t *out; /* projected rows written, appended (NULL: not wanted) */
	/* The one row w's filter selects, locked for the transaction; *row NULL
	 * when none, an error when more than one. */
	int (*select_where)(const struct rt_store_cas *cas, const struct rt_write *w, json_t **row,
			    struct rt_store_error *err);
	/* The row of w's table whose primary key the object key names. */
	int (*select_pk)(const struct rt_store_cas *cas, const struct rt_write *w, const json_t *key,
			 json_t **row, struct rt_store_error *err);
	/* UPDATE … SET apply (DELETE when apply is NULL) the row current names,
	 * appending the rows written to out. */
	int (*write_pk)(const struct rt_store_cas *cas, const struct rt_write *w,
			const json_t *current, const json_t *apply, struct rt_store_error *err);
	/* Inserts w's rows (an upsert of a row that is not there). */
	int (*insert)(const struct rt_store_cas *cas, const struct rt_write *w,
		      struct rt_store_error *err);
};

/*
 * A write with a base (w->base set), inside the caller's transaction: reads
 * the target row, decides with rt_conflict_decide() and has the backend
 * apply what it says. Fills res (outcome, current, conflicts). Returns 0 or
 * -1 with err.
 */
int rt_store_controlled_write(const struct rt_store_cas *cas, const struct rt_write *w,
			      struct rt_write_result *res, struct rt_store_error *err);

/* SHA-256 of a write's fingerprint (NULL counts as ""). */
void rt_store_fingerprint(const char *fingerprint, unsigned char out[32]);

/* What an idempotency key records: the result and the rows (may be NULL) as
 * one JSON object (new reference). */
json_t *rt_write_result_json(const struct rt_write_result *r, const json_t *rows);

/* Reads a recorded result back into res (marked replayed); when *rows is an
 * array, it is replaced by the recorded rows. */
void rt_write_result_parse(const json_t *j, struct rt_write_result *res, json_t **rows);

/*
 * The change log both stores keep in SQLite (store/log.c): reads up to max
 * changes after `after` from db's table (columns pos, tbl, op, new, old,
 * ts, and with has_txn also lsn and xid), in position order, as the
 * changes_after op returns them; row makes a row version of table t from
 * its JSON text (NULL for NULL). cache (may be NULL) keeps the prepared read
 * between calls: *cache belongs to the caller, who finalizes it with db and
 * calls this from one thread at a time.
 */
typedef json_t *rt_store_log_row_fn(const struct rt_store_table *t, const char *txt);
int rt_store_log_read(struct rt_store *base, sqlite3 *db, sqlite3_stmt **cache, const char *table,
		      bool has_txn, uint64_t after, size_t max, struct rt_change **out, size_t *n,
		      uint64_t *oldest, struct rt_store_scan *scan, rt_store_log_row_fn *row);
/* Deletes what the log keeps no more: all but the last retain_count
 * changes, and those older than retain_ms. */
void rt_store_log_prune(sqlite3 *db, const char *table, uint64_t retain_count, uint64_t retain_ms);

#endif
