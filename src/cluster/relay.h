/*
 * The change stream between nodes (docs/cluster.md): the store's relay
 * (store.h, struct rt_store_relay) as a Redis Stream, PREFIX:changes:NAME
 * (NAME: the replication slot's), one entry per batch under the ID
 * "LASTPOS-0", so that a batch's position is its ID, a node reads on from
 * its log's last position, and publishing a batch twice is refused by Redis
 * itself (an ID not above the top) and taken as done. XADD keeps about
 * maxlen entries (MAXLEN ~).
 *
 * Ownership: the relay owns its connection; rt_cluster_relay_bind() hands
 *            out callbacks that borrow the relay, which must outlive the
 *            store.
 * Threads:   the callbacks are for one thread (the store's replication
 *            thread): a blocking connection with timeouts, reconnected on
 *            the next call after a failure.
 * Limits:    100 batches per read; a connect timeout of 500 ms, a command
 *            timeout of 2 s (plus the read's wait).
 */
#ifndef RT_CLUSTER_RELAY_H
#define RT_CLUSTER_RELAY_H

#include <stddef.h>

#include "store/store.h"

struct rt_cluster_relay;

/* Checks url (redis://…) and prefix; connects lazily. Returns 0, or
 * RT_EINVAL with the reason in err. */
int rt_cluster_relay_new(const char *url, const char *prefix, const char *name, size_t maxlen,
			 struct rt_cluster_relay **out, char *err, size_t err_cap);
void rt_cluster_relay_free(struct rt_cluster_relay *r);
/* The store's callbacks over r. */
void rt_cluster_relay_bind(struct rt_cluster_relay *r, struct rt_store_relay *out);

#endif
