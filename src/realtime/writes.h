/*
 * The store over the socket: the `write` event on a joined channel inserts,
 * updates, upserts or deletes one row, with optional conflict control (base,
 * strategy) and an idempotency key; the `snapshot` event reads a whole table
 * with the change-log position its rows reflect (docs/writes.md). Both are
 * answered with a phx_reply. A session's requests run on the store pool one
 * at a time, in the order they arrived, so writes apply in the order sent and
 * a snapshot sees the session's earlier writes; the reply goes out on the
 * worker when the request is done, if the socket is still there.
 *
 * Ownership: the payload is borrowed; everything a request needs is copied.
 *            The session owns its queue (rt_writes_queue_deinit() frees what
 *            has not started; a request on the pool is freed when it returns).
 * Threads:   the worker thread that owns the session.
 * Limits:    RT_WRITES_MAX_IN_FLIGHT requests per socket waiting or running
 *            (more are refused at once, RTS429); a snapshot holds at most
 *            RT_STORE_MAX_ROWS rows and an encoded reply of RT_SNAPSHOT_MAX_BYTES
 *            (RTS413); the reply is encoded on the pool thread.
 */
#ifndef RT_REALTIME_WRITES_H
#define RT_REALTIME_WRITES_H

#include <jansson.h>
#include <stdbool.h>

#include "store/store.h"

#define RT_WRITES_MAX_IN_FLIGHT 32
#define RT_SNAPSHOT_MAX_BYTES (4u << 20)

struct rt_session;
struct rt_writes_job;

/* A session's store requests: the head runs on the pool, the rest wait. */
struct rt_writes_queue {
	struct rt_writes_job *head, *tail;
	unsigned n;
};

/* Handles one `write` push (ref may be NULL: then no reply is sent) under who's
 * row-level security (copied into the request). */
void rt_writes_handle(struct rt_session *s, struct rt_store *store, const struct rt_auth *who,
		      const char *join_ref,
		      const char *ref, const char *topic, const json_t *payload);

/* Handles one `snapshot` push: {"schema", "table"} → {"rows", "position"}: the rows
 * who may select. */
void rt_writes_snapshot(struct rt_session *s, struct rt_store *store, const struct rt_auth *who,
			const char *join_ref,
			const char *ref, const char *topic, const json_t *payload);

struct rt_channel_access;
/* Called on the worker with the database's decision; takes ctx. */
typedef void (*rt_writes_auth_done)(struct rt_session *s, void *ctx,
				    const struct rt_channel_access *access);

/*
 * Channel authorization by the database (policies on realtime.messages
 * outside the compiled subset): rt_store_topic_allowed for read and write of
 * broadcast and presence under who (copied; who->topic the sub-topic), on
 * the pool behind the session's other requests, then done(s, ctx, access)
 * on the worker. When the session is gone first, or the request cannot be
 * queued (then the error is answered on join_ref/ref/topic), ctx_free(ctx)
 * instead.
 */
void rt_writes_authorize(struct rt_session *s, struct rt_store *store, const struct rt_auth *who,
			 const char *join_ref, const char *ref, const char *topic,
			 rt_writes_auth_done done, void (*ctx_free)(void *), void *ctx);

/* A request of the session's own kind (rt_writes_call). */
typedef void (*rt_writes_work_cb)(void *ctx);
typedef void (*rt_writes_done_cb)(struct rt_session *s, void *ctx, bool is_cancelled);

/*
 * Runs work(ctx) on the store pool behind the session's other requests
 * (notifications over the socket use it), then done(s, ctx, is_cancelled)
 * on the worker. Takes ctx: ctx_free(ctx) after done, or instead of it when
 * the session is gone first or the request cannot be queued (then the error
 * is answered on join_ref/ref/topic, when ref is set).
 */
void rt_writes_call(struct rt_session *s, const char *join_ref, const char *ref,
		    const char *topic, rt_writes_work_cb work, rt_writes_done_cb done,
		    void (*ctx_free)(void *), void *ctx);

/* Drops the requests of a session that ends. */
void rt_writes_queue_deinit(struct rt_writes_queue *q);

#endif
