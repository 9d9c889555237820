/*
 * librtsync's synced table: a local copy of one table of the server's store
 * that stays current and takes writes offline.
 *
 * A table joins its own channel (topic "rtsync-table:<schema>.<table>") with
 * postgres_changes on the whole table, loads a snapshot of the rows (the
 * `snapshot` event) and applies every later change. Writes made through it
 * show at once as pending on top of the confirmed rows (the optimistic
 * overlay), go to a durable outbox in a local SQLite file before the call
 * returns, and are sent in order when the channel is joined and the snapshot
 * loaded; each becomes confirmed when the server acknowledges it or rolls
 * back when the server refuses it, with a callback for every transition.
 * Writes carry a base (what this client saw of the columns they change) so
 * two clients editing one row meet the conflict strategy of the write:
 * reject, merge, last-write-wins, or manual (a callback decides). Writes that
 * got no answer stay in the outbox and are sent again, in order, with their
 * original idempotency key, after a reconnect or a restart of the program:
 * none is lost and none is applied twice. docs/client.md describes it.
 *
 * Ownership: a table belongs to its client and must be closed
 *            (rt_table_close()) before the client is freed. Strings passed to
 *            callbacks live until the callback returns. Texts returned by
 *            rt_table_get() and rt_table_rows() are the caller's, freed with
 *            the client's allocator (free() without one).
 * Threads:   callbacks run on the client's loop thread, one at a time. Every
 *            function may be called from any thread (the client's lock
 *            serializes them with the loop) and from callbacks, except
 *            rt_table_open() and rt_table_close(), which must not be called
 *            from a callback.
 * Limits:    primary keys of up to 8 columns whose values are strings,
 *            numbers or booleans, at most 512 bytes as JSON; the snapshot is
 *            limited by the server (10,000 rows, 4 MiB); a write's JSON up to
 *            8 MiB; at most max_in_flight writes sent and unanswered (16).
 */
#ifndef RTSYNC_TABLE_H
#define RTSYNC_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rtsync/rtsync.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rt_table;

/* A write's id: its idempotency key, 32 lowercase hex digits (128 random
 * bits), NUL-terminated. */
#define RT_TABLE_ID_LEN 33

/* How a write meets a concurrent change of the same columns (docs/writes.md). */
enum rt_table_strategy {
	RT_STRATEGY_DEFAULT, /* per write: the table's default_strategy */
	RT_STRATEGY_REJECT,  /* refused: the write rolls back (the table's default) */
	RT_STRATEGY_MERGE,   /* the columns that do not conflict are applied */
	RT_STRATEGY_LWW,     /* last write wins: everything is applied */
	RT_STRATEGY_MANUAL,  /* sent as reject; on a conflict on_conflict decides */
};

/* Why a row's visible value changed. */
enum rt_table_cause {
	RT_TABLE_REMOTE,      /* a change from the server (snapshot or postgres_changes) */
	RT_TABLE_LOCAL,       /* a write of this table, now pending */
	RT_TABLE_CONFIRMED,   /* a write was acknowledged (the row is the server's) */
	RT_TABLE_ROLLED_BACK, /* a write was refused and no longer shows */
};

/* A row's visible value changed: key is the primary key as a JSON object
 * ({"id":7}); row the visible row as JSON text, NULL when there is none
 * (deleted); is_pending when unacknowledged writes of this table touch it. */
struct rt_table_row_event {
	const char *key;
	const char *row;
	bool is_pending;
	enum rt_table_cause cause;
};

enum rt_table_write_state {
	RT_WRITE_PENDING,     /* accepted by rt_table_insert() and friends */
	RT_WRITE_CONFIRMED,   /* the server applied it (outcome applied, merged, missing) */
	RT_WRITE_ROLLED_BACK, /* refused: a conflict, or an error (code, reason) */
};

/* A write's transition. Fields that do not apply are NULL. */
struct rt_table_write_event {
	const char *id;       /* the write's idempotency key (RT_TABLE_ID_LEN - 1 digits) */
	enum rt_table_write_state state;
	const char *outcome;  /* CONFIRMED: "applied", "merged", "missing";
				 ROLLED_BACK after a conflict: "conflict" */
	const char *conflicts; /* the conflicting columns, JSON array text, when the
				  server listed any (merge, lww, conflict) */
	const char *record;   /* CONFIRMED, conflicts: the server's row (JSON text) */
	const char *code;     /* ROLLED_BACK by an error: the server's code ("23502",
				 "PGRST204", "RTS422", …) or "RTS409" for a conflict */
	const char *reason;   /* ROLLED_BACK: the server's reason text */
	bool is_replayed;     /* the server answered from its idempotency record */
};

/* What on_conflict decides. */
enum rt_table_resolution {
	RT_RESOLVE_DROP,      /* give up: the write rolls back */
	RT_RESOLVE_KEEP_MINE, /* send it again as last-write-wins */
	RT_RESOLVE_RECORD,    /* send *resolved instead, with the remote row as base
				 (it meets on_conflict again if the row changed again) */
};

/* A conflict of a manual write. local: the write's values (its record; for
 * a delete, NULL); base: what this client had seen; remote: the server's
 * current row (NULL when the row is gone); conflicts: the columns (JSON
 * array text). */
struct rt_table_conflict {
	const char *id;
	const char *type; /* "update", "upsert", "delete" */
	const char *key;
	const char *local;
	const char *base;
	const char *remote;
	const char *conflicts;
};

struct rt_table_callbacks {
	/* The table's rows are loaded (after every snapshot, also a resync). */
	void (*on_ready)(void *user, struct rt_table *t);
	void (*on_row)(void *user, struct rt_table *t, const struct rt_table_row_event *ev);
	void (*on_write)(void *user, struct rt_table *t, const struct rt_table_write_event *ev);
	/* Required for RT_STRATEGY_MANUAL (without it a manual conflict rolls
	 * back). For RT_RESOLVE_RECORD, set *resolved to a JSON object text with
	 * the values to write (the key columns may be left out); it is read right
	 * after the callback returns, so it may point into the application's own
	 * buffer. An invalid *resolved rolls the write back. */
	enum rt_table_resolution (*on_conflict)(void *user, struct rt_table *t,
						const struct rt_table_conflict *c,
						const char **resolved);
	/* Something went wrong outside any call: the outbox could not be written
	 * (RT_EIO), out of memory (RT_ENOMEM), a snapshot refused or malformed
	 * (RT_EPROTO; asked again 2 s later, doubling up to a minute while it is
	 * refused). May be NULL. */
	void (*on_error)(void *user, struct rt_table *t, int rc, const char *message);
};

struct rt_table_options {
	const char *schema;              /* NULL: "public" */
	const char *table;               /* required */
	const char *const *primary_key;  /* column names; NULL: {"id"} */
	size_t n_primary_key;
	enum rt_table_strategy default_strategy; /* DEFAULT: reject */
	/* The outbox's SQLite file (created when missing; its writes are sent
	 * first). NULL: an in-memory database, not durable. One table per file. */
	const char *outbox_path;
	unsigned retry_base_ms;  /* a write with no answer waits a random time in */
	unsigned retry_max_ms;   /* [0, min(max, base * 2^attempts)] (200, 10000) */
	unsigned max_in_flight;  /* writes sent and unanswered (default 16; 1: one at a time) */
	struct rt_table_callbacks cb;
	void *user;
};

/*
 * Opens a synced table on client c: loads the outbox (its writes show as
 * pending at once; on_row reports each, cause LOCAL, before this returns)
 * and joins the table's channel (now if connected, else when the
 * connection opens). Writes are sent once the channel is joined and the
 * snapshot loaded, in outbox order. A write that gets no answer (timeout,
 * connection lost) or a transient error (RTS429, RTS503, PGRST000-003,
 * PostgreSQL classes 08, 53, 57, 40001, 40P01) stays in the outbox and is
 * sent again after a backoff with its idempotency key; any other answer
 * ends it (docs/client.md). Returns 0 and sets *out, RT_EINVAL (no table,
 * bad names, over 8 key columns), RT_EEXISTS (c already has that table
 * open), RT_EIO (the outbox cannot be opened, or holds a write that is not
 * one of this table's), RT_ENOMEM. Not from a callback.
 */
RT_API int rt_table_open(struct rt_client *c, const struct rt_table_options *opt,
			 struct rt_table **out);

/* Leaves the channel and frees the table; writes not yet answered stay in
 * the outbox for the next open. NULL does nothing. Not from a callback. */
RT_API void rt_table_close(struct rt_table *t);

/*
 * Writes. record and key are JSON object texts: insert and upsert take the
 * whole row including its primary key (client-chosen keys); update takes the
 * key columns and the changed ones; delete takes the key columns. strategy
 * RT_STRATEGY_DEFAULT uses the table's. The write is durable in the outbox
 * and visible as pending when the call returns; on_row reports the visible
 * row (cause LOCAL) and on_write the PENDING state before it returns. id
 * (may be NULL) gets the write's id. The base sent with an update, upsert or
 * delete is the visible row's value of each column written (delete: the
 * whole row) — what this client saw, including its own earlier pending
 * writes; without a visible row there is no base.
 * Returns 0, RT_EINVAL (not a JSON object, a key column missing or not a
 * string, number or boolean), RT_ETOOBIG (over the limits), RT_EIO (the
 * outbox could not be written: nothing changed), RT_ENOMEM.
 */
RT_API int rt_table_insert(struct rt_table *t, const char *record, enum rt_table_strategy strategy,
			   char id[RT_TABLE_ID_LEN]);
RT_API int rt_table_update(struct rt_table *t, const char *record, enum rt_table_strategy strategy,
			   char id[RT_TABLE_ID_LEN]);
RT_API int rt_table_upsert(struct rt_table *t, const char *record, enum rt_table_strategy strategy,
			   char id[RT_TABLE_ID_LEN]);
RT_API int rt_table_delete(struct rt_table *t, const char *key, enum rt_table_strategy strategy,
			   char id[RT_TABLE_ID_LEN]);

/*
 * The visible row with primary key key (JSON object text with the key
 * columns): the confirmed row with this table's pending writes applied on
 * top. *row (may be NULL) gets its JSON text, *is_pending (may be NULL)
 * whether pending writes touch it. Returns 0, RT_ENOTFOUND (no visible row;
 * *is_pending still set), RT_EINVAL (a bad key), RT_ENOMEM.
 */
RT_API int rt_table_get(struct rt_table *t, const char *key, char **row, bool *is_pending);

/* Every visible row as a JSON array text (snapshot order, then rows that
 * appeared later). Returns 0 or RT_ENOMEM. */
RT_API int rt_table_rows(struct rt_table *t, char **json);

/* Visible rows. */
RT_API size_t rt_table_count(struct rt_table *t);

/* Writes not answered yet (in the outbox). */
RT_API size_t rt_table_pending(struct rt_table *t);

/* Whether the rows are loaded (a snapshot arrived and no resync is under way). */
RT_API bool rt_table_is_ready(struct rt_table *t);

#ifdef __cplusplus
}
#endif

#endif
