/*
 * The synced table's rows without any I/O (include/rtsync/table.h is the
 * public side, src/client/table.c the wiring): the confirmed rows with the
 * change-log position each reflects, the list of pending writes in outbox
 * order, and the visible row of a key (confirmed row with the pending
 * writes of that key applied in order). Changes that arrive before the
 * snapshot are buffered and those after the snapshot's position applied on
 * top of it. Every operation that changes what a key shows reports it
 * through on_row with its cause.
 *
 * A per-row position keeps an acknowledged write's row from flickering back:
 * when a write's reply (with its row and position P) arrives before its
 * echo, the row is set at P and every change at or below P for that row —
 * older ones still in the stream, and the echo itself — is skipped. A
 * deleted row leaves a tombstone with its position for the same reason.
 *
 * Ownership: the cache owns its rows (jansson values), its change buffer and
 *            the writes linked into it (freed with the allocator given at
 *            init by rt_cache_deinit()); rt_cache_unlink() gives a write
 *            back to the caller. Values passed in are copied or
 *            reference-counted.
 * Threads:   one thread at a time (the table holds the client's lock).
 * Limits:    keys of up to RT_CACHE_MAX_PK columns and RT_CACHE_MAX_KEY
 *            bytes of JSON; at most RT_CACHE_MAX_BUFFERED changes buffered
 *            while loading (then RT_ELIMIT: load a fresh snapshot).
 */
#ifndef RT_CLIENT_CACHE_H
#define RT_CLIENT_CACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rtsync/table.h"

#define RT_CACHE_MAX_PK 8
#define RT_CACHE_MAX_KEY 512
#define RT_CACHE_MAX_BUFFERED 100000
#define RT_CACHE_MAX_IKEY 64

enum rt_cache_op { RT_CACHE_INSERT, RT_CACHE_UPDATE, RT_CACHE_UPSERT, RT_CACHE_DELETE };

/* A pending write. The cache reads op, key, record; the rest is the table's. */
struct rt_cache_write {
	struct rt_cache_write *prev, *next;
	enum rt_cache_op op;
	char key[RT_CACHE_MAX_KEY]; /* the key object's compact JSON text */
	json_t *key_obj;            /* {"id":7} */
	json_t *record;             /* insert, update, upsert: the values; delete: NULL */
	json_t *base;               /* NULL: none */
	enum rt_table_strategy strategy; /* never DEFAULT */
	char id[RT_TABLE_ID_LEN];        /* the write's public id (its first idempotency key) */
	char ikey[RT_CACHE_MAX_IKEY];    /* the idempotency key it is sent with */
	int64_t seq;                     /* outbox order */
	uint64_t req;                    /* rt_channel_write id while in flight, else 0 */
	unsigned attempts;
};

/* key: the key object's text; row NULL when nothing is visible. */
typedef void (*rt_cache_row_cb)(void *user, const char *key, const json_t *row, bool is_pending,
				enum rt_table_cause cause);

struct rt_cache_alloc {
	void *(*realloc)(void *ud, void *ptr, size_t size);
	void *ud;
};

struct rt_cache {
	char *pk[RT_CACHE_MAX_PK]; /* borrowed from the owner */
	size_t n_pk;
	json_t *rows;     /* key text -> [row or null, "position"] */
	json_t *buffered; /* while loading: [type, record, old_record, position] */
	bool is_loaded;
	struct rt_cache_write *head, *tail;
	size_t n_writes;
	struct rt_cache_alloc alloc;
	rt_cache_row_cb on_row;
	void (*on_oom)(void *user); /* a report could not be built (may be NULL) */
	void *user;
};

/* Sets up an empty, unloaded cache for primary key columns pk (borrowed:
 * they must outlive the cache). Returns 0, RT_EINVAL, RT_ENOMEM. */
int rt_cache_init(struct rt_cache *k, char *const *pk, size_t n_pk,
		  const struct rt_cache_alloc *alloc, rt_cache_row_cb on_row, void *user);
/* Frees the rows, the buffer and every linked write. */
void rt_cache_deinit(struct rt_cache *k);

/*
 * The key of obj (a row or a key object): a new object with the key columns
 * in key order (numbers with integral values as integers), and its compact
 * text in key_text (RT_CACHE_MAX_KEY bytes). Returns 0, RT_EINVAL (obj not
 * an object, a column missing, null or not a string, number or boolean),
 * RT_ETOOBIG, RT_ENOMEM.
 */
int rt_cache_key_of(const struct rt_cache *k, const json_t *obj, json_t **key_obj,
		    char key_text[RT_CACHE_MAX_KEY]);

/* The visible row of key (a new reference; NULL when none) and whether
 * pending writes touch it (is_pending may be NULL). NULL also when out of
 * memory, which sets *oom (may be NULL). */
json_t *rt_cache_visible(const struct rt_cache *k, const char *key, bool *is_pending, bool *oom);

/*
 * The base of a write on key: for a delete (record NULL) the whole visible
 * row, else the visible value of each column of record that is not a key
 * column (null where the row lacks it). *base is NULL when there is no
 * visible row or nothing to compare. Returns 0 or RT_ENOMEM.
 */
int rt_cache_base(const struct rt_cache *k, const char *key, const json_t *record, json_t **base);

/* Appends w (the cache owns it until unlinked) and reports the key (LOCAL). */
void rt_cache_add(struct rt_cache *k, struct rt_cache_write *w);

/*
 * Takes w out of the pending list (the caller owns it again). With
 * has_row, the confirmed row of w's key becomes row (NULL: gone) at
 * position pos — unless the row already reflects a later position; a pos
 * of NULL or "0" (unknown) sets the row and keeps the old position. Reports
 * the key with cause when its visible row or pending flag changed. Returns
 * 0 or RT_ENOMEM (w is unlinked either way).
 */
int rt_cache_unlink(struct rt_cache *k, struct rt_cache_write *w, bool has_row, const json_t *row,
		    const char *pos, enum rt_table_cause cause);

/* Replaces w's record and base (takes both references; either may be NULL)
 * and reports the key (LOCAL) when what it shows changed. */
void rt_cache_rewrite(struct rt_cache *k, struct rt_cache_write *w, json_t *record, json_t *base);

/*
 * A postgres_changes change: type "INSERT", "UPDATE" or "DELETE", record
 * and old_record as delivered (NULL when absent), pos its position (may be
 * NULL). Applied when loaded (reported as REMOTE), else buffered. Returns 0,
 * RT_EPROTO (a malformed change: ignored), RT_ELIMIT (the buffer is full: it
 * was dropped; load a fresh snapshot), RT_ENOMEM.
 */
int rt_cache_change(struct rt_cache *k, const char *type, const json_t *record,
		    const json_t *old_record, const char *pos);

/* Starts (again) to wait for a snapshot: changes are buffered from now on. */
void rt_cache_unload(struct rt_cache *k);

/*
 * Loads a snapshot: rows (an array of row objects) reflect every change up
 * to position pos. Rows of keys not in it are dropped; the buffered changes
 * after pos are applied; every key whose visible row changed is reported
 * (REMOTE). Returns 0, RT_EPROTO (rows not an array, a row without its key,
 * pos not a position: nothing changed), RT_ENOMEM (nothing changed).
 */
int rt_cache_load(struct rt_cache *k, const json_t *rows, const char *pos);

/* Visible rows, and all of them as a new array (NULL on ENOMEM). */
size_t rt_cache_count(const struct rt_cache *k);
json_t *rt_cache_rows(const struct rt_cache *k);

/* Positions (decimal, up to 20 digits) compare as numbers. */
int rt_cache_pos_cmp(const char *a, const char *b);
bool rt_cache_is_pos(const char *s);

/* Checks the invariants (list links and count, row entries' shape);
 * returns 0 or RT_EINVAL. */
int rt_cache_validate(const struct rt_cache *k);

#endif
