/*
 * The client's copy of one live query's result (docs/live.md), kept by
 * applying the server's `live_query` entries, without any I/O: a `result`
 * replaces the copy, a `diff` applies its ops (remove every leave and move
 * key; insert every enter and move at its index, ascending, indexes being
 * positions in the new result; replace the row of every change key).
 * Window rows and aggregate groups are the same to it: rows in order with,
 * parallel to them, their keys (JSON array text). Everything it applies is
 * checked first — the shape of each value, every key known or unknown as its
 * op requires, one op per key, indexes inside the new result — so a
 * malformed or inconsistent entry is refused and leaves the copy as it was.
 *
 * Ownership: the copy owns its arrays (jansson values; rows are shared by
 *            reference with the entries they came from, never modified);
 *            entries passed in are borrowed. Scratch memory comes from the
 *            allocator given to rt_livecopy_init().
 * Threads:   one thread at a time.
 * Limits:    at most RT_LIVECOPY_MAX_ROWS rows, RT_LIVECOPY_MAX_OPS ops per
 *            diff, RT_LIVECOPY_MAX_KEY bytes per key; a message of at most
 *            RT_LIVECOPY_MAX_ENTRIES entries, ids of 1 to RT_LIVECOPY_MAX_ID
 *            bytes.
 */
#ifndef RT_CLIENT_LIVECOPY_H
#define RT_CLIENT_LIVECOPY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "rtsync/rtsync.h"

#define RT_LIVECOPY_MAX_ROWS	100000
#define RT_LIVECOPY_MAX_OPS	(2 * RT_LIVECOPY_MAX_ROWS)
#define RT_LIVECOPY_MAX_KEY	8192
#define RT_LIVECOPY_MAX_ENTRIES 128
#define RT_LIVECOPY_MAX_ID	64

struct rt_livecopy {
	json_t *rows; /* the result's rows in order; NULL before the first result */
	json_t *keys; /* their keys (strings), parallel to rows; NULL with rows */
	json_t *at;   /* key → index in rows (integers); NULL with rows */
	struct rt_allocator alloc;
};

/* An empty copy (no result yet). alloc NULL: the C library's. */
void rt_livecopy_init(struct rt_livecopy *lc, const struct rt_allocator *alloc);

/* Frees what the copy holds; it is empty (as after init) afterwards. */
void rt_livecopy_deinit(struct rt_livecopy *lc);

/* Drops the result: the copy waits for a `result` again. */
void rt_livecopy_reset(struct rt_livecopy *lc);

/* Whether a result has been applied. */
bool rt_livecopy_has_result(const struct rt_livecopy *lc);

/* The number of rows (0 without a result). */
size_t rt_livecopy_count(const struct rt_livecopy *lc);

/*
 * Applies one entry of a live_query message: {"kind":"result","keys":[…],
 * "rows":[…],"resync"?} or {"kind":"diff","ops":[…]}. Other members (the id)
 * are ignored. On any failure the copy is unchanged. Returns 0; RT_EPROTO
 * for an entry that is malformed (a member missing or of the wrong type, an
 * unknown kind or op, duplicate keys) or does not apply to the copy (a diff
 * without a result, a leave, move or change of a key not in the result, an
 * enter of a key already in it, an index outside the new result, two rows
 * at one index), with the reason in err (err_cap may be 0); RT_ETOOBIG for
 * a result past the limits; RT_ENOMEM.
 */
int rt_livecopy_apply(struct rt_livecopy *lc, const json_t *entry, char *err, size_t err_cap);

/* Checks the copy's invariants (rows and keys parallel, keys unique strings,
 * the index exact). Returns 0 or RT_EPROTO. */
int rt_livecopy_validate(const struct rt_livecopy *lc);

/*
 * Checks the envelope of a live_query payload: an object with "position" (a
 * decimal string of 1 to 20 digits) and "queries", an array of at most
 * RT_LIVECOPY_MAX_ENTRIES objects, each with a string "kind" and an "id" of
 * 1 to RT_LIVECOPY_MAX_ID bytes (no NUL), no id twice. Returns 0 or
 * RT_EPROTO with the reason in err.
 */
int rt_livecopy_check_message(const json_t *payload, char *err, size_t err_cap);

#endif
