/*
 * The lock service (docs/locks.md): the lock table (locks.h) behind the
 * socket and REST faces. It turns the table's events into pushes on the
 * lock's channel `realtime:lock:<name>` (broadcast events `lock_granted`,
 * `lock_lost`, `lock_timeout` for the one channel concerned, `lock_state`
 * for every subscriber), answers REST acquisitions that waited, records
 * grants, releases and expiries in the activity feed, and keeps the
 * /metrics gauges.
 *
 * Socket: on a channel joined (private) on `realtime:lock:<name>`, the
 * events lock_acquire {lease_ms?, wait_ms?}, lock_renew {token?, lease_ms?},
 * lock_release {token?} and lock_state {} are answered by a phx_reply; the
 * channel is the owner, so leaving it or losing the socket releases its
 * locks and drops its waits. Acquiring needs the channel's write right
 * (channel policies: INSERT on realtime.messages for topic lock:<name>).
 *
 * REST (rt_lock_service_http): /locks/v1/<name> — POST acquire, POST
 * …/renew, DELETE release, GET state; a REST holder is a lease id.
 *
 * Ownership: the service owns the table and the waiting REST requests;
 *            the realtime object, hub and activity feed are borrowed and
 *            outlive it.
 * Threads:   rt_lock_service_new/free on the main thread (free after the
 *            server stopped); rt_lock_service_socket, _drop, _http and
 *            _drain on worker threads; events arrive on any thread.
 * Limits:    the table's (locks.h); REST bodies RT_LOCKS_MAX_BODY bytes.
 */
#ifndef RT_LOCKS_SERVICE_H
#define RT_LOCKS_SERVICE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/jwt.h"
#include "locks/locks.h"
#include "net/http.h"
#include "net/server.h"

#define RT_LOCKS_MAX_BODY 4096

struct rt_lock_service;
struct rt_realtime;
struct rt_activity;

/* A service over a table made from cfg (its on_event is the service's).
 * activity may be NULL. */
struct rt_lock_service *rt_lock_service_new(const struct rt_locks_config *cfg,
					    struct rt_realtime *rt, struct rt_activity *activity);
void rt_lock_service_free(struct rt_lock_service *svc);
/* The table (for stats and tests). */
struct rt_locks *rt_lock_service_table(struct rt_lock_service *svc);

/*
 * A lock event of the socket protocol on the channel chan_id of lock name,
 * acting for sub (may be NULL), may_write its right to acquire. Returns
 * true when the event is one of the lock events (then *status is "ok" or
 * "error" and *response the reply's payload, a new reference), false for
 * any other event (nothing done).
 */
bool rt_lock_service_socket(struct rt_lock_service *svc, const char *name, uint64_t chan_id,
			    const char *sub, bool may_write, const char *event,
			    const json_t *payload, const char **status, json_t **response);

/* The channel chan_id went: its locks are released, its waits dropped. */
void rt_lock_service_drop(struct rt_lock_service *svc, uint64_t chan_id);

/* Serves /locks/v1/<path> (path after the prefix) on c's worker for the
 * verified claims (borrowed; the caller checked the token and the rate). */
void rt_lock_service_http(struct rt_lock_service *svc, struct rt_conn *c,
			  struct rt_http_req *req, const char *path,
			  const struct rt_jwt_claims *claims);

/* Answers the REST acquisitions of worker w whose wait ended (call on wake). */
void rt_lock_service_drain(struct rt_lock_service *svc, struct rt_worker *w);

#endif
