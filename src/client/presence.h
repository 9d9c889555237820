/*
 * Client-side presence state for librtsync, as phoenix.js keeps it: a map
 * key → array of metas (each with the server's "phx_ref"), replaced by a
 * full presence_state and updated by presence_diff. Applying either yields
 * the join and leave events it causes, in order, ending with one sync.
 *
 * Ownership: the state is a jansson object owned by the caller; the events
 *            array returned belongs to the caller (json_decref). Inputs are
 *            borrowed.
 * Threads:   no shared state.
 * Limits:    bounded by the messages applied; keys and metas are not counted.
 */
#ifndef RT_CLIENT_PRESENCE_H
#define RT_CLIENT_PRESENCE_H

#include <jansson.h>
#include <stdbool.h>

/*
 * Applies a presence_state (is_full: {key:{metas:[…]}}) or a presence_diff
 * ({joins:{…}, leaves:{…}}) to *state, replacing *state with the new state
 * only on success. Returns the events as a JSON array of
 * [kind, key, current, changed] with kind "join" or "leave" (a final
 * ["sync", null, null, null] closes it), or NULL on out of memory (*state is
 * unchanged). Malformed entries (not objects, metas not an array) are
 * skipped.
 */
json_t *rt_client_presence_apply(json_t **state, const json_t *msg, bool is_full);

/* A shallow copy of the object src that fails as a whole, NULL on out of
 * memory (json_copy() ignores inserts that fail). Also used by client.c. */
json_t *rt_client_copy_object(const json_t *src);

#endif
