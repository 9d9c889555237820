/*
 * Scale-out: several rtsync nodes behind one address share broadcast and
 * presence through Redis (docs/cluster.md). A node publishes every broadcast
 * that originates on it (socket and HTTP) and every change of its own
 * presence entries on one pub/sub channel, PREFIX:bus, each message carrying
 * the node's id and its next sequence number (src/cluster/bus.h); every
 * other node delivers it to its own subscribers and never publishes it
 * again; a node drops its own messages (it delivered them locally) and
 * duplicates, so each subscriber gets each message once, in order per
 * publisher.
 *
 * Presence: a node's entries live in the hash PREFIX:presence:NODE (field
 * "KEY\nCHANNEL_ID", value {"t":topic,"k":presence key,"m":meta}, and
 * "~seq": the sequence number of its last change), written in the same
 * transaction as the diff is published; PREFIX:nodes is a sorted set of the
 * live nodes scored by when they expire. A node heartbeats every
 * heartbeat_ms (refreshing both); another node that has not heard from it
 * for node_ttl_ms removes its entries (their leaves go to its subscribers).
 * When a node (re)connects to Redis it writes its whole state again,
 * announces it, and reads every live node's hash; a gap in a node's
 * sequence numbers has its hash read again. A join's presence_state is the
 * union of every node's entries this node holds.
 *
 * Redis down: the node keeps serving its own clients; what it would
 * publish is dropped and counted, /healthz reports "degraded" (still 200) and
 * rtsync_cluster_redis_up is 0; it reconnects with exponential backoff
 * (100 ms doubling to 5 s, with jitter) and resynchronizes presence.
 *
 * Ownership: the cluster copies its configuration; it is attached to the
 *            realtime object's hub and presence registry from
 *            rt_cluster_new() to rt_cluster_free() and must be freed before
 *            them.
 * Threads:   rt_cluster_new/start/stop/free on the main thread; the Redis
 *            connections live on the cluster's own thread (a libuv loop);
 *            the hub and presence callbacks queue from any thread;
 *            rt_cluster_is_up, _health and _metrics from any thread.
 * Limits:    max_pending_bytes of messages queued or in flight to Redis
 *            (past it, messages are dropped and counted); messages of
 *            RT_BUS_MAX_BYTES; RT_BUS_MAX_PEERS nodes; a syncing node's
 *            diffs held while its state is read: RT_CLUSTER_MAX_HELD.
 */
#ifndef RT_CLUSTER_CLUSTER_H
#define RT_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "realtime/realtime.h"

#define RT_CLUSTER_MAX_HELD 100000

struct rt_cluster_config {
	const char *url;	      /* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] */
	const char *node_id;	      /* NULL: a random one per start */
	const char *prefix;	      /* of every Redis name; NULL: "rtsync" */
	unsigned heartbeat_ms;	      /* 0: 1000 */
	unsigned node_ttl_ms;	      /* 0: 5000 */
	size_t max_pending_bytes;     /* 0: 16 MiB */
	const struct rt_store *store; /* PostgreSQL with a relay: its leadership is
				       * reported (not owned); else NULL */
};

struct rt_cluster;

/*
 * Checks cfg and attaches to rt's hub and presence registry (nothing is sent
 * before rt_cluster_start). Returns 0, or RT_EINVAL with a reason in err.
 */
int rt_cluster_new(const struct rt_cluster_config *cfg, struct rt_realtime *rt,
		   struct rt_cluster **out, char *err, size_t err_cap);
/* Starts the cluster thread (it connects in the background). Returns 0 or a
 * negative errno. */
int rt_cluster_start(struct rt_cluster *c);
/* Stops the thread: this node's presence hash and entry in PREFIX:nodes are
 * deleted when Redis is reachable, so the others drop its members at once. */
void rt_cluster_stop(struct rt_cluster *c);
/* Detaches and frees (after rt_cluster_stop, or never started). NULL: nothing. */
void rt_cluster_free(struct rt_cluster *c);

/* True while connected and subscribed. */
bool rt_cluster_is_up(const struct rt_cluster *c);
/* This node's id. */
const char *rt_cluster_node(const struct rt_cluster *c);
/* Appends the JSON object {"node","redis":"up"|"down","peers"[,"changes":
 * "leader"|"follower"]} to out. */
void rt_cluster_health(struct rt_cluster *c, struct rt_buf *out);
/* Appends the rtsync_cluster_* metrics (Prometheus text) to out. */
void rt_cluster_metrics(struct rt_cluster *c, struct rt_buf *out);

#endif
