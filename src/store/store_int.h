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
};

/* The head of every backend's store object. */
struct rt_store {
	const struct rt_store_ops *ops;
	struct rt_store_schema schema;
	uint64_t key_window_ms; /* idempotency keys are kept this long */
};

/* Fills e (status, code, details may be NULL) and keeps its texts valid UTF-8. */
void rt_store_set_err(struct rt_store_error *e, int status, const char *code,
		      const char *details, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Frees every table and column of sc and empties it. */
void rt_store_schema_free(struct rt_store_schema *sc);

/* The output keys and table columns a select names (every column when q or
 * its select is absent; "*" expands to all columns). *cols and *keys are
 * arrays the caller frees (also after a failure). Returns 0, or -1 with
 * 42703 in e for an unknown column. */
int rt_store_select_cols(const struct rt_store_table *t, const struct rt_query *q,
			 const struct rt_store_column ***cols, const char ***keys, size_t *n,
			 struct rt_store_error *e);

#endif
