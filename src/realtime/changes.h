/*
 * postgres_changes: the change feed from the store to subscribed channels.
 *
 * A binding is one entry of a join's config.postgres_changes, validated
 * against the schema (event, schema, table, filter, select). The registry is
 * indexed by table and, for filters that are a single `eq`, by column value;
 * other bindings of a table are scanned. A channel's bindings form a group:
 * channels on the same topic with the same set of bindings share one group
 * and one hub key, so a change is matched once per binding and encoded once
 * per group, as one frame whose `ids` lists every binding of the group that
 * matched, however many sockets receive it.
 *
 * Row-level security: each binding carries its requester's visibility of
 * its table (the SELECT predicate of the store's policies, built with the
 * requester's claims). Bindings with the same visibility share one entry, so
 * a predicate `owner = auth.uid()` indexes bindings by `owner` like an eq
 * filter does; predicates are evaluated where filters are, live and in
 * catch-ups; opaque policies are asked of the database once per change for
 * all distinct requesters. When the store's policies change
 * (rt_store_policies_version), bindings built from the older set match
 * nothing from the next change on: their channels parse and attach them
 * again under the new set and catch up from the last position they were
 * given (realtime.c), so nothing is lost or shown under the old policies.
 *
 * The change thread waits on the store, reads changes in position order,
 * matches and publishes them through the hub. A channel that resumes from a
 * position asks the change thread for a catch-up: between two live batches
 * the thread reads the retained changes after that position up to the last
 * one it published, sends those that match to the channel's own hub key, then
 * a marker with that last position. Live changes reach the channel through
 * the same inbox after it, so the channel only has to hold live messages until
 * the marker and drop those at or below it: nothing is missed or repeated.
 * When the position has left the retained window the marker says so and the
 * channel is told to resync.
 *
 * Delivery controls (delivery.h, docs/protocol.md): a group whose bindings
 * set throttle_ms, debounce_ms or batch holds its matched changes in a
 * window (coalesced per row with throttle or debounce) that the feed thread
 * flushes when due, checked after every pass; the thread waits at most until
 * the next window is due (never more than 10 ms). A flush is encoded once
 * for the group: its changes one by one, or one postgres_changes_batch
 * message. The group's flushed position is where everything it matched has
 * been published: its catch-ups end there and attach reports it, so the
 * next flush continues right after it.
 *
 * Ownership: rt_changes owns the registry and the thread; a struct
 *            rt_binding is owned by the channel that parsed it until attached,
 *            then shared through the registry (refcounted).
 * Threads:   parse/attach/detach/resume from worker threads; the feed thread
 *            publishes with rt_hub_publish_any.
 * Limits:    RT_CHANGES_BATCH changes per read; a catch-up reads at most the
 *            retained window; a group's window holds at most
 *            RT_WINDOW_MAX_ROWS changes (then it is flushed at once).
 */
#ifndef RT_REALTIME_CHANGES_H
#define RT_REALTIME_CHANGES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "realtime/hub.h"
#include "store/store.h"

#define RT_CHANGES_BATCH 512

struct rt_changes;
struct rt_binding;
struct rt_bgroup;

/* Creates the feed over store, publishing through hub. Starts at the store's
 * newest position (nothing is replayed at start). */
struct rt_changes *rt_changes_new(struct rt_store *store, struct rt_hub *hub);
/*
 * A consumer of the change stream (live queries, notifications): apply gets
 * each batch the feed reads (changes after `after`, in position order;
 * last_pos is where the feed now stands, which may be past the last change:
 * log rows of other tables count), tick runs on each turn of the feed's
 * loop (at least every 10 ms). Both run on the change thread without the
 * registry lock, in the order the consumers were added; either may be NULL.
 */
struct rt_change_consumer {
	void (*apply)(void *ctx, const struct rt_change *chs, size_t n, uint64_t after,
		      uint64_t last_pos);
	void (*tick)(void *ctx, uint64_t last_pos);
	void *ctx;
};
#define RT_CHANGES_MAX_CONSUMERS 8
/* Adds a consumer (copied), before start. Returns 0, or RT_ETOOBIG past
 * RT_CHANGES_MAX_CONSUMERS. */
int rt_changes_add_consumer(struct rt_changes *c, const struct rt_change_consumer *k);
/* Live queries as a consumer (rt_live_apply, rt_live_tick); before start. */
struct rt_live;
void rt_changes_set_live(struct rt_changes *c, struct rt_live *live);
int rt_changes_start(struct rt_changes *c);
/* Stops and joins the thread. */
void rt_changes_stop(struct rt_changes *c);
void rt_changes_free(struct rt_changes *c);

/*
 * Validates one postgres_changes entry for topic (the full "realtime:…"
 * topic) for requester who (copied; NULL: anon with no claims). Returns a
 * binding, or NULL with Supabase's system message in err. The binding
 * takes only the rows who may select (its SELECT predicate under the
 * store's policies, docs/security.md) and the columns who's role
 * may select; its id is the entry's, whoever the requester is.
 */
struct rt_binding *rt_binding_parse(struct rt_changes *c, const char *topic, const json_t *entry,
				    const struct rt_auth *who, char *err, size_t err_cap);
/* The id echoed in the join reply and carried in `ids`. */
json_int_t rt_binding_id(const struct rt_binding *b);
/* Whether a and b have the same delivery controls (throttle_ms,
 * debounce_ms, max_wait_ms, batch): one channel's bindings must, as its
 * group has one window and its client one position. */
bool rt_binding_same_delivery(const struct rt_binding *a, const struct rt_binding *b);
/* Frees a binding that was never attached. */
void rt_binding_free(struct rt_binding *b);

/* The hub key under which the group these bindings form is published (what
 * rt_bgroup_key() gives after attaching them): subscribe to it before
 * attaching, so no delivery can precede the subscription. Caller frees. */
char *rt_changes_group_key(struct rt_binding *const *bindings, size_t n);

/*
 * Registers one channel's bindings with the feed and takes them (identical
 * ones count once): returns their group, shared by every channel on the same
 * topic with the same set. Each attach is released by one detach. *pos (may
 * be NULL) gets the position the bindings start after: every later change is
 * matched against them, or waits in the group's window.
 */
struct rt_bgroup *rt_changes_attach(struct rt_changes *c, struct rt_binding **bindings, size_t n,
				    uint64_t *pos);
void rt_changes_detach(struct rt_changes *c, struct rt_bgroup *g);
/* The hub key the group's live deliveries are published under. */
const char *rt_bgroup_key(const struct rt_bgroup *g);

/*
 * Asks for the changes after `after` that match group g, delivered to hub
 * key `key` (the channel's own key) as RT_MSG_CHANGE messages (one per
 * change, whatever g's delivery controls), then a RT_MSG_CATCHUP marker
 * whose pos is the last position covered: g's flushed position, or `after`
 * when that is further (with is_resync set when `after` was no longer
 * retained, or is ahead of the log; pos is then the flushed position).
 * The request holds its own reference to g.
 */
void rt_changes_resume(struct rt_changes *c, const char *key, uint64_t after, struct rt_bgroup *g);

/*
 * Matches change ch against the registry as the feed would, without
 * publishing (tests and benchmarks; the feed must not be running): up to
 * cap hub keys of the groups it would reach go to keys (borrowed: valid
 * while those groups are attached), and with payloads their
 * postgres_changes payloads (new references). *n_considered (may be NULL)
 * gets how many bindings were evaluated: indexed ones are not looped over.
 * Returns the number of groups reached.
 */
size_t rt_changes_match(struct rt_changes *c, const struct rt_change *ch, const char **keys,
			json_t **payloads, size_t cap, size_t *n_considered);

/* The store's policy version the feed matches under: bindings parsed under
 * an older one receive nothing. */
uint64_t rt_changes_policy_version(struct rt_changes *c);

/* The newest position published so far. */
uint64_t rt_changes_last_pos(struct rt_changes *c);

#endif
