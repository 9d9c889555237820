/*
 * The activity feed (docs/activity.md): a log of recent actions the server
 * writes itself — REST and socket writes (table, primary key, operation), shared
 * document edits (merged per actor and document over a window, so a burst
 * of edits is one entry), lock grants, releases and expiries — readable in
 * pages per channel and live on the socket.
 *
 * Every entry belongs to one channel: `table:<schema>.<table>` for writes,
 * `collab:<document>` for document edits, `lock:<name>` for locks. A reader
 * sees an entry only when it may: entries of a lock or document channel
 * when the channel policies on realtime.messages let it read that topic
 * (private-channel rules, as a join), entries of a table channel when the
 * table's row-level security lets it select the row written (the row is
 * kept with the entry, never shown). Ids grow across restarts (epoch << 32
 * | n, the epoch from the store's counter); entries live in memory, bounded
 * by count and age.
 *
 * Live: each new entry is published on the hub as the broadcast event
 * `activity` on `realtime:activity:<channel>` (private), with a check that
 * drops it for a subscriber that may not see it.
 *
 * Ownership: the feed owns its entries; JSON handed in is borrowed (copied),
 *            JSON handed out is a new reference.
 * Threads:   every function from any thread (one mutex, held for the ring
 *            alone; visibility checks and publishing happen outside it).
 * Limits:    cfg.max_entries entries, cfg.max_age_ms old, RT_ACTIVITY_MAX_PAGE
 *            entries per page, RT_ACTIVITY_MAX_CHANNEL bytes of a channel,
 *            RT_ACTIVITY_MAX_SUMMARY bytes of a summary (larger ones are cut
 *            to {"truncated": true}).
 */
#ifndef RT_ACTIVITY_ACTIVITY_H
#define RT_ACTIVITY_ACTIVITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/policy.h"

#define RT_ACTIVITY_MAX_PAGE 200
#define RT_ACTIVITY_DEFAULT_PAGE 50
#define RT_ACTIVITY_MAX_CHANNEL 300
#define RT_ACTIVITY_MAX_SUMMARY 4096
#define RT_ACTIVITY_MAX_WRITE_ROWS 100
/* The sub-topic prefix of the live feed: realtime:activity:<channel>. */
#define RT_ACTIVITY_TOPIC_PREFIX "activity:"

enum rt_activity_kind { RT_ACTIVITY_WRITE, RT_ACTIVITY_DOC_EDIT, RT_ACTIVITY_LOCK };

struct rt_activity_config {
	uint64_t max_entries;  /* retention by count (>= 1) */
	uint64_t max_age_ms;   /* retention by age (0: no age limit) */
	uint32_t merge_ms;     /* document edits by one actor within this merge (0: never) */
	uint64_t epoch;        /* id epoch, >= 1 */
	int64_t (*wall_ms)(void); /* NULL: rt_wall_ms (tests set it) */
};

/* Defaults: 10000 entries, 7 days, edits merged over 10 s, epoch 1. */
void rt_activity_config_default(struct rt_activity_config *cfg);

struct rt_activity;
struct rt_hub;
struct rt_store_table;
struct rt_realtime;
struct rt_store;

/* A feed; with hub, new entries are published live; rt and store (both may
 * be NULL) decide visibility (channel policies, row-level security). */
struct rt_activity *rt_activity_new(const struct rt_activity_config *cfg, struct rt_hub *hub,
				    struct rt_realtime *rt, struct rt_store *store);
void rt_activity_free(struct rt_activity *a);

/*
 * Appends an entry of kind on channel by actor (the JWT sub; NULL: none)
 * with summary (an object, borrowed; NULL: {}). For a write, row is the row
 * written (the new one; the old one of a delete), borrowed, kept for the
 * visibility check. Document edits merge into the actor's latest entry on
 * that channel when it is younger than merge_ms: its summary's "edits" and
 * "bytes" add up and "last_at" moves (no live message for a merge).
 * Returns the entry's id (0 when channel is invalid).
 */
uint64_t rt_activity_append(struct rt_activity *a, enum rt_activity_kind kind, const char *channel,
			    const char *actor, const json_t *summary, const json_t *row);

/*
 * A write of rows (the rows it returned, borrowed) to table t by actor: op
 * "INSERT", "UPDATE" or "DELETE". One entry per row on
 * table:<schema>.<table> with summary {"op", "pk": {column: value}}, up to
 * RT_ACTIVITY_MAX_WRITE_ROWS rows; past them one entry {"op", "rows": n}
 * without a row, which only readers whom RLS does not restrict see.
 */
void rt_activity_write(struct rt_activity *a, const struct rt_store_table *t, const char *op,
		       const json_t *rows, const char *actor);

/* A document edit of n_bytes by actor on collab:<doc> (merged as above). */
void rt_activity_doc_edit(struct rt_activity *a, const char *doc, const char *actor,
			  size_t n_bytes);

/*
 * A page of channel's entries newest first, with ids below before (0: from
 * the newest), at most limit (1..RT_ACTIVITY_MAX_PAGE), only those who may
 * see: a new object {"channel", "entries": [...], "next_before": id|null}.
 * Returns 0; -1 with *out an error object {"code","message"} when the
 * channel is invalid (400) — *status says which.
 */
int rt_activity_page(struct rt_activity *a, const char *channel, uint64_t before, unsigned limit,
		     const struct rt_auth *who, json_t **out, int *status);

/* Whether who may see channel's entries at all (lock and document channels:
 * the channel policies; table channels: true, entries are checked one by one). */
bool rt_activity_channel_readable(struct rt_activity *a, const char *channel,
				  const struct rt_auth *who);

/* True for a valid channel name (a known prefix, 1..RT_ACTIVITY_MAX_CHANNEL bytes). */
bool rt_activity_channel_ok(const char *channel);

/* Drops entries past retention (also done by each append). */
void rt_activity_trim(struct rt_activity *a);

/* Entries kept now. */
size_t rt_activity_count(struct rt_activity *a);

#endif
