/*
 * Process metrics in Prometheus form. Every thread that counts binds its own
 * block (rt_metrics_bind), so counting is a plain add with no shared cache
 * line; a scrape sums the blocks.
 *
 * Ownership: blocks are static.
 * Threads:   each block has a single writer (the thread bound to it); readers
 *            on any thread see relaxed values. Unbound threads share the last
 *            block, which must then be written by one thread only (main).
 * Limits:    RT_METRICS_BLOCKS blocks.
 */
#ifndef RT_COMMON_METRICS_H
#define RT_COMMON_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/buf.h"

#define RT_METRICS_BLOCKS 80

#define RT_METRIC_EVENTS(X)                                                              \
	X(HEARTBEAT, "heartbeat")                                                        \
	X(JOIN, "phx_join")                                                              \
	X(LEAVE, "phx_leave")                                                            \
	X(BROADCAST, "broadcast")                                                        \
	X(PRESENCE, "presence")                                                          \
	X(ACCESS_TOKEN, "access_token")                                                  \
	X(WRITE, "write")                                                                \
	X(SNAPSHOT, "snapshot")                                                          \
	X(LIVE_SUBSCRIBE, "live_subscribe")                                              \
	X(LIVE_UNSUBSCRIBE, "live_unsubscribe")                                          \
	X(NOTIFY, "notify")                                                              \
	X(LOCK, "lock")                                                                  \
	X(OTHER, "other")

#define RT_METRIC_ERRORS(X)                                                              \
	X(MALFORMED, "malformed_message")                                                \
	X(UNMATCHED_TOPIC, "unmatched_topic")                                            \
	X(AUTH, "auth")                                                                  \
	X(JOIN_REJECTED, "join_rejected")                                                \
	X(PAYLOAD_TOO_LARGE, "payload_too_large")                                        \
	X(SLOW_CONSUMER, "slow_consumer")                                                \
	X(WS_PROTOCOL, "ws_protocol")                                                    \
	X(HTTP_BAD_REQUEST, "http_bad_request")                                          \
	X(IDLE_TIMEOUT, "idle_timeout")                                                  \
	X(RATE_LIMITED, "rate_limited")                                                  \
	X(CHANNEL_SHUTDOWN, "channel_shutdown")

/* Quotas and rate limits (docs/limits.md): refusals by limit. */
#define RT_METRIC_LIMITS(X)                                                              \
	X(CONNECTIONS, "connections")                                                    \
	X(CONNECTIONS_PER_USER, "connections_per_user")                                  \
	X(JOINS, "joins_per_second")                                                     \
	X(CHANNELS, "channels")                                                          \
	X(EVENTS, "events_per_second")                                                   \
	X(CHANNEL_EVENTS, "channel_events_per_second")                                   \
	X(PRESENCE, "presence_per_second")                                               \
	X(CHANNEL_PRESENCE, "channel_presence_calls")                                    \
	X(PAYLOAD, "payload_bytes")                                                      \
	X(REST, "rest_requests_per_second")

enum rt_metric_event {
#define RT_ME(name, text) RT_EV_##name,
	RT_METRIC_EVENTS(RT_ME)
#undef RT_ME
	RT_EV__COUNT
};

enum rt_metric_error {
#define RT_MR(name, text) RT_ERRM_##name,
	RT_METRIC_ERRORS(RT_MR)
#undef RT_MR
	RT_ERRM__COUNT
};

enum rt_metric_limit {
#define RT_ML(name, text) RT_LIM_##name,
	RT_METRIC_LIMITS(RT_ML)
#undef RT_ML
	RT_LIM__COUNT
};

/* Fan-out latency buckets, upper bounds in microseconds (+Inf implied). */
#define RT_METRICS_LAT_BUCKETS 12

struct rt_metrics {
	_Atomic uint64_t conns_opened, conns_closed;
	_Atomic uint64_t ws_opened, ws_closed;
	_Atomic uint64_t http_requests;
	_Atomic uint64_t joins_ok, joins_err, channels_closed;
	_Atomic uint64_t msgs_in[RT_EV__COUNT];
	_Atomic uint64_t bytes_in, msgs_out, bytes_out;
	_Atomic uint64_t broadcasts, presence_diffs;
	_Atomic uint64_t errors[RT_ERRM__COUNT];
	_Atomic uint64_t limit_refusals[RT_LIM__COUNT];
	_Atomic uint64_t lat_bucket[RT_METRICS_LAT_BUCKETS + 1];
	_Atomic uint64_t lat_count, lat_sum_ns;
} __attribute__((aligned(64)));

extern _Thread_local struct rt_metrics *rt_metrics_cur;

/* Row-level security, process-wide (any thread, atomic adds): checks the
 * database evaluated for opaque policies, and the size of the store's
 * current policy set. */
extern _Atomic uint64_t rt_metrics_rls_db_checks;
extern _Atomic uint64_t rt_metrics_rls_policies, rt_metrics_rls_opaque;
extern _Atomic uint64_t rt_metrics_rls_reloads; /* policy sets loaded (PostgreSQL) */
/* Times the change feed waited for workers behind on deliveries. */
extern _Atomic uint64_t rt_metrics_changes_feed_waits;
/* Live queries (src/live): maintained queries and subscriptions now, changes
 * applied to maintained queries, store reads they made, and messages that
 * waited for a backlog of the workers (folded with the next changes). */
extern _Atomic uint64_t rt_metrics_live_queries, rt_metrics_live_subscriptions;
extern _Atomic uint64_t rt_metrics_live_applied, rt_metrics_live_reads, rt_metrics_live_folded;

/* Locks (src/locks): held and waiting now, grants, leases that ended
 * unrenewed, waits that timed out; activity entries kept now, appended. */
extern _Atomic uint64_t rt_metrics_locks_held, rt_metrics_lock_waiters;
extern _Atomic uint64_t rt_metrics_lock_grants, rt_metrics_lock_expiries, rt_metrics_lock_timeouts;
extern _Atomic uint64_t rt_metrics_activity_entries, rt_metrics_activity_appended;

/* Binds the calling thread to block idx (< RT_METRICS_BLOCKS - 1). */
void rt_metrics_bind(unsigned idx);

static inline void rt_metric_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

#define RT_METRIC_ADD(field, n) rt_metric_add(&rt_metrics_cur->field, (n))
#define RT_METRIC_INC(field) rt_metric_add(&rt_metrics_cur->field, 1)
#define RT_METRIC_ERROR(reason) rt_metric_add(&rt_metrics_cur->errors[RT_ERRM_##reason], 1)
#define RT_METRIC_LIMIT(limit) rt_metric_add(&rt_metrics_cur->limit_refusals[RT_LIM_##limit], 1)

/* Records one fan-out latency sample. */
void rt_metrics_latency(uint64_t ns);

/* Appends the Prometheus text exposition of all blocks. */
void rt_metrics_render(struct rt_buf *out, double uptime_s);

#endif
