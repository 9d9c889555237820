/*
 * Quotas and rate limits (docs/limits.md): token buckets for what one
 * connection does, and lock-free shared counters for what a user does across
 * the workers. The callers decide what to answer; this module only counts.
 *
 * A connection lives its whole life on one worker, so its buckets (joins,
 * events, presence, and one per channel) are plain fields of the session and
 * the channel: taking a token is a few integer operations, no atomic, no lock.
 * What spans workers goes through atomics only: the server's WebSocket count
 * is one counter; connections per user and REST requests per user live in
 * open-addressed tables of RT_RATELIMIT_SLOTS atomic slots keyed by the
 * user's 64-bit hash, each user within RT_RATELIMIT_PROBES slots of its hash,
 * claimed and updated by compare-and-swap. A slot is freed when its user's
 * last connection closes (REST: after a second without requests). When every
 * slot of a user's window is taken by others, that user is not counted (the
 * limit fails open rather than refusing someone for others' sake).
 *
 * Ownership: struct rt_quota is created and freed by the server's main
 *            thread and outlives the workers; struct rt_bucket and struct
 *            rt_quota_conn are embedded in their owners.
 * Threads:   rt_bucket_* on the thread owning the bucket; rt_quota_* from any
 *            thread (atomics, no locks).
 * Limits:    rates and bursts up to 2^32-1; a zero rate means no limit.
 */
#ifndef RT_COMMON_RATELIMIT_H
#define RT_COMMON_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RT_RATELIMIT_SLOTS 65536 /* per table; a power of two */
#define RT_RATELIMIT_PROBES 32   /* slots a user may be found in */

/* A rate: per_s tokens a second, at most burst held (0: burst = per_s). */
struct rt_rate {
	uint32_t per_s; /* 0: unlimited */
	uint32_t burst;
};

/* A token bucket; zero-initialized it starts full at its first use. */
struct rt_bucket {
	uint64_t milli;   /* tokens held, in thousandths */
	uint64_t last_ms; /* when it was last refilled */
	bool is_started;
};

/* Takes one token at now_ms (any monotonic millisecond clock). Returns true
 * when it was there (or the rate is unlimited), false when the caller is over
 * the rate; a refused take costs nothing. */
bool rt_bucket_take(struct rt_bucket *b, const struct rt_rate *r, uint64_t now_ms);

/* Milliseconds until the bucket holds a token again (0: it holds one now). */
uint64_t rt_bucket_wait_ms(const struct rt_bucket *b, const struct rt_rate *r, uint64_t now_ms);

struct rt_quota_config {
	uint32_t max_connections;          /* WebSockets on the server; 0: no limit */
	uint32_t max_connections_per_user; /* 0: no limit */
	struct rt_rate joins;              /* channel joins per connection */
	struct rt_rate events;             /* channel events per connection */
	struct rt_rate channel_events;     /* channel events per joined channel */
	struct rt_rate presence;           /* presence messages per connection */
	uint32_t rest_per_s;               /* /rest/v1 requests per user per second; 0: no limit */
};

struct rt_quota;

/* The per-connection part, embedded in the session. */
struct rt_quota_conn {
	uint64_t user; /* rt_quota_user() of the socket's token */
	bool is_counted, is_user_counted;
	struct rt_bucket joins, events, presence;
};

/* Copies cfg. Aborts when out of memory. Main thread. */
struct rt_quota *rt_quota_new(const struct rt_quota_config *cfg);
void rt_quota_free(struct rt_quota *q);
/* The configuration; q may be NULL (then a static all-unlimited one). */
const struct rt_quota_config *rt_quota_config(const struct rt_quota *q);

/* Who a request is, for the per-user limits: the token's sub when it has
 * one, else its role and the peer's address (peer: "ADDR:PORT" or
 * "[ADDR]:PORT"; the port is ignored). A 64-bit hash, never 0. */
uint64_t rt_quota_user(const char *sub, const char *role, const char *peer);

enum rt_quota_refusal {
	RT_QUOTA_OK = 0,
	RT_QUOTA_CONNECTIONS,          /* the server's WebSocket limit */
	RT_QUOTA_CONNECTIONS_PER_USER, /* this user's */
};

/* Starts qc for a new WebSocket of user (full buckets) and counts it (released
 * with rt_quota_conn_close). Returns RT_QUOTA_OK, or the limit that refuses it
 * with nothing counted. q NULL: always OK, nothing counted. */
enum rt_quota_refusal rt_quota_conn_open(struct rt_quota *q, uint64_t user,
					 struct rt_quota_conn *qc);
/* Uncounts qc's WebSocket; does nothing when it is not counted (q may be NULL). */
void rt_quota_conn_close(struct rt_quota *q, struct rt_quota_conn *qc);
/* WebSockets counted now (the server's total; a user's estimate). */
uint32_t rt_quota_connections(const struct rt_quota *q);
uint32_t rt_quota_user_connections(const struct rt_quota *q, uint64_t user);

/* Counts one REST request of user in the second now_s (wall or monotonic
 * seconds, the same clock on every call). Returns true when it is within the
 * limit: at most rest_per_s of a user's requests pass in each second (fixed
 * one-second windows, so up to twice that across a window boundary). q NULL:
 * true. */
bool rt_quota_rest_allow(struct rt_quota *q, uint64_t user, uint64_t now_s);

#endif
