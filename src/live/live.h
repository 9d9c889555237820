/*
 * Live queries: query results kept current from the change stream
 * (docs/live.md).
 *
 * A definition is a table and a PostgREST query string: filters in the REST
 * grammar, `select`, `order`, `limit`, `offset`, and PostgREST's aggregate
 * syntax in `select` (`count()`, `col.count()`, `col.sum()`, `col.avg()`,
 * `col.min()`, `col.max()`, each with an optional `alias:`); with aggregates
 * the other selected columns are the groups. A maintained query is one
 * definition under one visibility (the requester's SELECT predicate from
 * the store's policies): every subscriber with the same definition and the
 * same visibility shares it, so a change is applied once however many
 * subscribers it has. The queries of a table are indexed by the values of
 * their top-level eq conditions (filters and visibility): a change visits
 * only the queries its old or new row may match, and those without any.
 *
 * Windows (no aggregates) hold the first offset+limit rows in order plus a
 * reserve, ordered by `order` with the primary key as the last tie-break;
 * the store is read again only when the reserve runs dry. Aggregates keep
 * per group the row count, and per aggregated column the non-null count, the
 * sum and the extremes it selects; when a group's minimum or maximum
 * leaves, only that value of that group is read again.
 *
 * Each maintained query keeps a short history of what changed at which
 * position (which result keys were touched, whether they were in the result
 * before). A subscriber's message is the net diff since the position it was
 * last given, rendered against the current result: the same mechanism
 * serves every batch, every throttled or debounced flush, and a resume from
 * a position after a reconnect (a position older than the history gets a
 * fresh result). All of one subscriber's queries advance together: one
 * message carries every query's diff at one position.
 *
 * Ownership: rt_live owns its maintained queries and subscribers; a
 *            definition is the caller's until handed to rt_live_open.
 *            A subscriber handle stays valid until rt_live_sub_free.
 * Threads:   rt_live_sub_* from any thread (they queue requests);
 *            rt_live_apply/rt_live_tick on the change thread only;
 *            rt_live_open/result/diff/close are for tests and benchmarks with
 *            the change thread not running.
 * Limits:    RT_LIVE_MAX_QUERIES queries per subscriber, RT_LIVE_MAX_ROWS
 *            rows read to set up one query, RT_LIVE_HISTORY touched keys
 *            kept per query.
 */
#ifndef RT_LIVE_LIVE_H
#define RT_LIVE_LIVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/policy.h"
#include "proto/phx.h"
#include "realtime/hub.h"
#include "store/store.h"

#define RT_LIVE_MAX_QUERIES 64
#define RT_LIVE_MAX_ROWS (RT_STORE_MAX_ROWS - 1) /* rows or groups of one result */
#define RT_LIVE_HISTORY 8192
#define RT_LIVE_MAX_ID 64
#define RT_LIVE_MAX_WINDOW_MS 60000
/* A subscriber with no delivery option gets at most one message per
 * RT_LIVE_FOLD_MS: the first change after a quiet window goes at once, the
 * next ones fold into one message at the end of the window. */
#define RT_LIVE_FOLD_MS 50

struct rt_live;
struct rt_live_def;
struct rt_live_sub;
struct rt_live_query;

/* Delivery of a subscriber's messages (0: off). With neither, the changes
 * that touch a result are sent at most once per RT_LIVE_FOLD_MS. */
struct rt_live_opts {
	unsigned throttle_ms; /* at most one message per window */
	unsigned debounce_ms; /* a message once the results have been quiet this long */
	unsigned max_wait_ms; /* with debounce: the longest a change waits (default 4×) */
};

struct rt_live *rt_live_new(struct rt_store *store, struct rt_hub *hub);
void rt_live_free(struct rt_live *l);

/*
 * Parses one definition {"id", "table", "schema"?, "query"?} against the
 * store's schema. Returns it, or NULL with a message in err (PostgREST's
 * wording where it has one, e.g. "column bookings.x does not exist").
 */
struct rt_live_def *rt_live_def_parse(struct rt_store *store, const json_t *entry, char *err,
				      size_t err_cap);
void rt_live_def_free(struct rt_live_def *d);
const char *rt_live_def_id(const struct rt_live_def *d);

/* Parses {"throttle_ms", "debounce_ms", "max_wait_ms"} (any may be absent;
 * obj may be NULL). Returns 0, or -1 with the reason in err. */
int rt_live_opts_parse(const json_t *obj, struct rt_live_opts *o, char *err, size_t err_cap);

/*
 * A subscriber: its messages are published under hub key `key` as
 * RT_MSG_LIVE messages on topic (event "live_query"). who is copied.
 * resume_pos > 0: the first message of each query of the first
 * rt_live_sub_add is the diff since that position when the query's history
 * still holds it (else its result with "resync": true); queries added later
 * start with their result.
 */
struct rt_live_sub *rt_live_sub_new(struct rt_live *l, const char *key, const char *topic,
				    enum rt_phx_vsn vsn, const struct rt_auth *who,
				    const struct rt_live_opts *o, uint64_t resume_pos);
/* Adds definitions: an array of {"id", "table", "schema"?, "query"?} (copied;
 * parsed on the change thread; entries without a string id of 1 to
 * RT_LIVE_MAX_ID bytes are skipped). A definition with the id of one the
 * subscriber holds replaces it. Each query's first message holds its result,
 * or its error ({"id", "kind": "error", "code", "message"}). */
void rt_live_sub_add(struct rt_live *l, struct rt_live_sub *s, const json_t *queries);
/* Stops the query with this id. */
void rt_live_sub_remove(struct rt_live *l, struct rt_live_sub *s, const char *id);
/* Ends the subscriber; the handle must not be used again. */
void rt_live_sub_free(struct rt_live *l, struct rt_live_sub *s);

/* Change thread: applies a batch (in position order; last_pos is where the
 * feed now stands), then sends what is due. */
void rt_live_apply(struct rt_live *l, const struct rt_change *chs, size_t n, uint64_t last_pos);
/* Change thread, at least every few ms: requests, timers, lingering queries. */
void rt_live_tick(struct rt_live *l, uint64_t last_pos);

/* ---- in process (tests, benchmarks: no change thread) ---- */

/* Opens (or shares) the maintained query of d for who, reading it now.
 * Returns NULL with err on failure. Takes d. */
struct rt_live_query *rt_live_open(struct rt_live *l, struct rt_live_def *d,
				   const struct rt_auth *who, char *err, size_t err_cap);
/* The current result {"rows": [...], "keys": [...]} (new reference). */
json_t *rt_live_result(struct rt_live_query *q);
/* The diff since position `since` as {"ops": [...]} (new reference), or
 * NULL when the history no longer reaches back that far. */
json_t *rt_live_diff(struct rt_live_query *q, uint64_t since);
/* The error that stopped the query's maintenance, or NULL. */
const char *rt_live_error(const struct rt_live_query *q);
/* The position the query's state reflects. */
uint64_t rt_live_position(const struct rt_live_query *q);
void rt_live_close(struct rt_live *l, struct rt_live_query *q);

/* Counters: maintained queries now, subscriptions now (query × subscriber),
 * and changes applied to queries so far. */
void rt_live_stats(struct rt_live *l, size_t *n_queries, size_t *n_subscriptions,
		   uint64_t *n_applied);

#endif
