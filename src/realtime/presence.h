/*
 * Presence: who is on a topic, shared by every worker. Each tracked entry is
 * one channel's meta under a presence key; several channels may share a key.
 * Changes are published as presence_diff messages through the hub while the
 * registry's lock is held, and a joining channel subscribes and takes its
 * presence_state snapshot under the same lock, so a snapshot and the diffs
 * that follow it never disagree (a diff already in the snapshot is idempotent
 * on the client: joins are keyed by phx_ref).
 *
 * Ownership: the registry copies what it keeps; returned JSON is a new
 *            reference owned by the caller.
 * Threads:   every function is thread-safe and called on a worker thread with
 *            that worker's hub.
 * Limits:    none of its own; callers bound payload sizes and call rates.
 */
#ifndef RT_REALTIME_PRESENCE_H
#define RT_REALTIME_PRESENCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "realtime/hub.h"

struct rt_presence;

struct rt_presence *rt_presence_new(void);
void rt_presence_free(struct rt_presence *p);

/*
 * Subscribes sub to key (through the hub) and, when state is not NULL, stores
 * the topic's presence_state payload ({key: {"metas": [...]}}) in *state.
 */
void rt_presence_subscribe(struct rt_presence *p, struct rt_hub_local *l, const char *key,
			   struct rt_sub *sub, json_t **state);

/*
 * Tracks chan_id under pkey with payload (an object) on key, whose clients
 * know it as topic. A first track publishes a join; a changed payload an
 * update (the old meta in leaves, the new one with phx_ref_prev in joins); an
 * identical payload nothing. Returns true when a diff was published.
 */
bool rt_presence_track(struct rt_presence *p, struct rt_hub_local *l, const char *key,
		       const char *topic, uint64_t chan_id, const char *pkey, const json_t *payload);

/* Removes chan_id's entry from key, publishing a leave. Returns true if it
 * was tracked. */
bool rt_presence_untrack(struct rt_presence *p, struct rt_hub_local *l, const char *key,
			 const char *topic, uint64_t chan_id);

/* Number of tracked entries on key (for tests and metrics). */
unsigned rt_presence_count(struct rt_presence *p, const char *key);

#endif
