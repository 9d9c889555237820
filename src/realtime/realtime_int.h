/*
 * What the realtime folder's modules share about a session, for modules
 * that answer on it later (writes.c).
 *
 * Ownership: as realtime.h.
 * Threads:   the worker thread that owns the session.
 * Limits:    none of its own.
 */
#ifndef RT_REALTIME_REALTIME_INT_H
#define RT_REALTIME_REALTIME_INT_H

#include <jansson.h>

#include "net/server.h"
#include "proto/phx.h"

struct rt_session;

/* Sends a phx_reply {status, response} on topic; takes response (NULL: {}). */
void rt_session_reply(struct rt_session *s, const char *join_ref, const char *ref,
		      const char *topic, const char *status, json_t *response);
/* The session's queue of store requests (writes.c). */
struct rt_writes_queue *rt_session_writes(struct rt_session *s);
struct rt_conn *rt_session_conn(struct rt_session *s);
/* The server's activity feed (activity/activity.h), NULL without one. */
struct rt_activity *rt_session_activity(struct rt_session *s);
/* The socket's Phoenix serializer. */
enum rt_phx_vsn rt_session_vsn(struct rt_session *s);

#endif
