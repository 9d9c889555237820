/*
 * Presence: who is on a topic, shared by every worker. Each tracked entry is
 * one channel's meta under a presence key; several channels may share a key.
 * Changes are published as presence_diff messages through the hub while the
 * registry's lock is held, and a joining channel subscribes and takes its
 * presence_state snapshot under the same lock, so a snapshot and the diffs
 * that follow it never disagree (a diff already in the snapshot is idempotent
 * on the client: joins are keyed by phx_ref).
 *
 * In a cluster (src/cluster) the registry also holds the entries of the other
 * nodes, each under its origin (a small number the cluster gives each node;
 * 0 is this node): presence_state on join is the union of every node's
 * entries. Local changes go to the remote callback in the order they are
 * published; remote ones arrive through rt_presence_remote_put().
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

/* Number of tracked entries on key, every origin (for tests and metrics). */
unsigned rt_presence_count(struct rt_presence *p, const char *key);

/*
 * A change of this node's entries (join_meta, leave_meta: the metas of the
 * diff, either may be NULL; borrowed for the call). Called with the
 * registry's lock held, on the thread that made the change: it must queue,
 * not block, and not call back into the registry.
 */
typedef void (*rt_presence_remote_cb)(void *ctx, const char *key, const char *topic,
				      uint64_t chan_id, const char *pkey, const json_t *join_meta,
				      const json_t *leave_meta);
/* Sets the callback (NULL: none). Before the workers start. */
void rt_presence_set_remote(struct rt_presence *p, rt_presence_remote_cb cb, void *ctx);

/*
 * Another node's entry: sets (meta, the meta others see, phx_ref included)
 * or removes (meta NULL) origin's chan_id on key, and publishes the diff to
 * this node's subscribers with rt_hub_publish_any() (never to the remote
 * callback). An identical meta changes nothing but clears the entry's stale
 * mark. origin > 0. Returns true when a diff was published. Any thread.
 */
bool rt_presence_remote_put(struct rt_presence *p, struct rt_hub *h, uint32_t origin,
			    const char *key, const char *topic, uint64_t chan_id, const char *pkey,
			    const json_t *meta);
/* Marks every entry of origin stale (before a full state of that node is
 * put again). */
void rt_presence_remote_mark(struct rt_presence *p, uint32_t origin);
/* Removes origin's entries still marked stale, publishing their leaves;
 * returns how many. After rt_presence_remote_mark() alone: all of them. */
unsigned rt_presence_remote_sweep(struct rt_presence *p, struct rt_hub *h, uint32_t origin);

typedef void (*rt_presence_each_cb)(void *ctx, const char *key, const char *topic,
				    uint64_t chan_id, const char *pkey, const json_t *meta);
/*
 * Calls cb for each of this node's entries with the lock held, then done
 * (may be NULL) still under it, so that nothing changes between the last
 * entry and what done does; neither may call into the registry. Returns the
 * count. Any thread.
 */
size_t rt_presence_each_local(struct rt_presence *p, rt_presence_each_cb cb,
			      void (*done)(void *ctx), void *ctx);

#endif
