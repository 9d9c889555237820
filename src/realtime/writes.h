/*
 * Writes over the socket: the `write` event on a joined channel inserts,
 * updates, upserts or deletes one row of the store, with optional conflict
 * control (base, strategy) and an idempotency key, and is answered with a
 * phx_reply (docs/writes.md). The store call runs on the store pool; the
 * reply goes out on the worker when it is done, if the socket is still there.
 *
 * Ownership: the payload is borrowed; everything a write needs is copied.
 * Threads:   the worker thread that owns the session.
 * Limits:    RT_WRITES_MAX_IN_FLIGHT per socket (more are refused at once).
 */
#ifndef RT_REALTIME_WRITES_H
#define RT_REALTIME_WRITES_H

#include <jansson.h>

#include "store/store.h"

#define RT_WRITES_MAX_IN_FLIGHT 32

struct rt_session;

/* Handles one `write` push (ref may be NULL: then no reply is sent). */
void rt_writes_handle(struct rt_session *s, struct rt_store *store, const char *join_ref,
		      const char *ref, const char *topic, const json_t *payload);

#endif
