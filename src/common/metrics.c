#include "common/metrics.h"

static struct rt_metrics blocks[RT_METRICS_BLOCKS];

_Thread_local struct rt_metrics *rt_metrics_cur = &blocks[RT_METRICS_BLOCKS - 1];

_Atomic uint64_t rt_metrics_rls_db_checks;
_Atomic uint64_t rt_metrics_rls_policies, rt_metrics_rls_opaque;
_Atomic uint64_t rt_metrics_rls_reloads;
_Atomic uint64_t rt_metrics_changes_feed_waits;
_Atomic uint64_t rt_metrics_live_queries, rt_metrics_live_subscriptions;
_Atomic uint64_t rt_metrics_live_applied, rt_metrics_live_reads, rt_metrics_live_folded;
_Atomic uint64_t rt_metrics_locks_held, rt_metrics_lock_waiters;
_Atomic uint64_t rt_metrics_lock_grants, rt_metrics_lock_expiries, rt_metrics_lock_timeouts;
_Atomic uint64_t rt_metrics_activity_entries, rt_metrics_activity_appended;

static const uint64_t lat_bounds_us[RT_METRICS_LAT_BUCKETS] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000,
};

void rt_metrics_bind(unsigned idx)
{
	rt_metrics_cur = &blocks[idx % (RT_METRICS_BLOCKS - 1)];
}

void rt_metrics_latency(uint64_t ns)
{
	unsigned i = 0;
	while (i < RT_METRICS_LAT_BUCKETS && ns > lat_bounds_us[i] * 1000)
		i++;
	RT_METRIC_INC(lat_bucket[i]);
	RT_METRIC_INC(lat_count);
	RT_METRIC_ADD(lat_sum_ns, ns);
}

#define SUM(field)                                                                       \
	({                                                                               \
		uint64_t s_ = 0;                                                         \
		for (unsigned b_ = 0; b_ < RT_METRICS_BLOCKS; b_++)                      \
			s_ += atomic_load_explicit(&blocks[b_].field, memory_order_relaxed); \
		s_;                                                                      \
	})

static void counter(struct rt_buf *out, const char *name, const char *help, uint64_t v)
{
	rt_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
		      (unsigned long long)v);
}

static void gauge(struct rt_buf *out, const char *name, const char *help, double v)
{
	rt_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

void rt_metrics_render(struct rt_buf *out, double uptime_s)
{
	uint64_t opened = SUM(conns_opened), closed = SUM(conns_closed);
	uint64_t ws_opened = SUM(ws_opened), ws_closed = SUM(ws_closed);
	uint64_t joins = SUM(joins_ok), chan_closed = SUM(channels_closed);

	gauge(out, "rtsync_uptime_seconds", "Seconds since the server started.", uptime_s);
	gauge(out, "rtsync_connections", "Open TCP connections.", (double)(opened - closed));
	counter(out, "rtsync_connections_total", "TCP connections accepted.", opened);
	gauge(out, "rtsync_websockets", "Open WebSocket connections.", (double)(ws_opened - ws_closed));
	counter(out, "rtsync_websockets_total", "WebSocket upgrades accepted.", ws_opened);
	counter(out, "rtsync_http_requests_total", "HTTP requests handled.", SUM(http_requests));
	gauge(out, "rtsync_channels", "Joined channels.", (double)(joins - chan_closed));
	rt_buf_printf(out, "# HELP rtsync_joins_total Channel joins by result.\n"
			   "# TYPE rtsync_joins_total counter\n"
			   "rtsync_joins_total{result=\"ok\"} %llu\n"
			   "rtsync_joins_total{result=\"error\"} %llu\n",
		      (unsigned long long)joins, (unsigned long long)SUM(joins_err));

	rt_buf_append_str(out, "# HELP rtsync_messages_in_total Messages received by event.\n"
			       "# TYPE rtsync_messages_in_total counter\n");
#define RT_ME(name, text)                                                                \
	rt_buf_printf(out, "rtsync_messages_in_total{event=\"%s\"} %llu\n", text,        \
		      (unsigned long long)SUM(msgs_in[RT_EV_##name]));
	RT_METRIC_EVENTS(RT_ME)
#undef RT_ME
	counter(out, "rtsync_bytes_in_total", "WebSocket payload bytes received.", SUM(bytes_in));
	counter(out, "rtsync_messages_out_total", "Frames queued to clients.", SUM(msgs_out));
	counter(out, "rtsync_bytes_out_total", "Bytes written to clients.", SUM(bytes_out));
	counter(out, "rtsync_broadcasts_total", "Broadcasts published.", SUM(broadcasts));
	counter(out, "rtsync_presence_diffs_total", "Presence diffs published.", SUM(presence_diffs));

	rt_buf_append_str(out, "# HELP rtsync_errors_total Errors by reason.\n"
			       "# TYPE rtsync_errors_total counter\n");
#define RT_MR(name, text)                                                                \
	rt_buf_printf(out, "rtsync_errors_total{reason=\"%s\"} %llu\n", text,            \
		      (unsigned long long)SUM(errors[RT_ERRM_##name]));
	RT_METRIC_ERRORS(RT_MR)
#undef RT_MR
	rt_buf_append_str(out, "# HELP rtsync_limit_refusals_total Requests refused or slowed by a "
			       "quota or rate limit (docs/limits.md).\n"
			       "# TYPE rtsync_limit_refusals_total counter\n");
#define RT_ML(name, text)                                                                \
	rt_buf_printf(out, "rtsync_limit_refusals_total{limit=\"%s\"} %llu\n", text,     \
		      (unsigned long long)SUM(limit_refusals[RT_LIM_##name]));
	RT_METRIC_LIMITS(RT_ML)
#undef RT_ML

	rt_buf_append_str(out, "# HELP rtsync_fanout_latency_seconds Time from publish to "
			       "queueing on each worker.\n"
			       "# TYPE rtsync_fanout_latency_seconds histogram\n");
	uint64_t cum = 0;
	for (unsigned i = 0; i < RT_METRICS_LAT_BUCKETS; i++) {
		cum += SUM(lat_bucket[i]);
		rt_buf_printf(out, "rtsync_fanout_latency_seconds_bucket{le=\"%g\"} %llu\n",
			      (double)lat_bounds_us[i] / 1e6, (unsigned long long)cum);
	}
	cum += SUM(lat_bucket[RT_METRICS_LAT_BUCKETS]);
	rt_buf_printf(out, "rtsync_fanout_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
		      (unsigned long long)cum);
	rt_buf_printf(out, "rtsync_fanout_latency_seconds_sum %.9f\n",
		      (double)SUM(lat_sum_ns) / 1e9);
	rt_buf_printf(out, "rtsync_fanout_latency_seconds_count %llu\n",
		      (unsigned long long)SUM(lat_count));
	counter(out, "rtsync_rls_database_checks_total",
		"Row-level security checks the database evaluated (opaque policies).",
		atomic_load(&rt_metrics_rls_db_checks));
	counter(out, "rtsync_rls_reloads_total",
		"Times the store loaded its row-level security policies.",
		atomic_load(&rt_metrics_rls_reloads));
	counter(out, "rtsync_changes_feed_waits_total",
		"Times the change feed waited (1 ms) for workers behind on deliveries.",
		atomic_load(&rt_metrics_changes_feed_waits));
	counter(out, "rtsync_live_changes_applied_total",
		"Changes applied to maintained live queries (once per query, whatever its subscribers).",
		atomic_load(&rt_metrics_live_applied));
	counter(out, "rtsync_live_reads_total",
		"Store reads made by live queries (first results, window reserves, group extremes).",
		atomic_load(&rt_metrics_live_reads));
	counter(out, "rtsync_live_messages_folded_total",
		"Times a due live query message waited, while workers were behind, for the next changes.",
		atomic_load(&rt_metrics_live_folded));
	gauge(out, "rtsync_live_queries", "Maintained live queries.",
	      (double)atomic_load(&rt_metrics_live_queries));
	gauge(out, "rtsync_live_subscriptions", "Live query subscriptions (query x channel).",
	      (double)atomic_load(&rt_metrics_live_subscriptions));
	gauge(out, "rtsync_rls_policies", "Row-level security policies in force.",
	      (double)atomic_load(&rt_metrics_rls_policies));
	gauge(out, "rtsync_rls_opaque_policies",
	      "Policies outside the compiled subset (evaluated by the database).",
	      (double)atomic_load(&rt_metrics_rls_opaque));
	counter(out, "rtsync_lock_grants_total", "Locks granted (docs/locks.md).",
		atomic_load(&rt_metrics_lock_grants));
	counter(out, "rtsync_lock_expiries_total", "Lock leases that ended without a renewal.",
		atomic_load(&rt_metrics_lock_expiries));
	counter(out, "rtsync_lock_wait_timeouts_total", "Lock waits that ended without a grant.",
		atomic_load(&rt_metrics_lock_timeouts));
	gauge(out, "rtsync_locks_held", "Locks held now.",
	      (double)atomic_load(&rt_metrics_locks_held));
	gauge(out, "rtsync_lock_waiters", "Lock waiters queued now.",
	      (double)atomic_load(&rt_metrics_lock_waiters));
	counter(out, "rtsync_activity_appended_total", "Activity entries written (docs/activity.md).",
		atomic_load(&rt_metrics_activity_appended));
	gauge(out, "rtsync_activity_entries", "Activity entries kept now.",
	      (double)atomic_load(&rt_metrics_activity_entries));
}
