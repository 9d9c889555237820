/*
 * The HTTP face of the server and the glue between the network server and the
 * realtime layer: routes requests (WebSocket endpoints, the broadcast API,
 * /healthz, /metrics, CORS preflight), validates the socket's apikey before
 * upgrading, and runs the per-worker realtime state.
 *
 * Routes:
 *   GET  /realtime/v1/websocket, /socket/websocket   WebSocket (apikey, vsn)
 *   POST /realtime/v1/api/broadcast, /api/broadcast  batch broadcast (202)
 *   POST …/api/broadcast/:topic/events/:event        single broadcast (202)
 *   GET/PUT /flags/v1, GET/PUT/DELETE /flags/v1/:name  feature flags (flags.c)
 *   …    /locks/v1/<name>[/renew]                    locks (locks/service.h)
 *   GET  /activity/v1/<channel>                      the activity feed (api/activity.c)
 *   GET  /healthz                                    200 once accepting
 *   GET  /metrics                                    Prometheus text
 *   GET  /, /demo, /rtsync.js, …                     embedded web assets (src/web)
 *
 * Ownership: rt_api_handler is static; the realtime object is passed as the
 *            server's app pointer and outlives the server.
 * Threads:   handler callbacks run on worker threads.
 * Limits:    bodies are bounded by the server config; broadcast batches by
 *            RT_API_MAX_BATCH messages.
 */
#ifndef RT_API_API_H
#define RT_API_API_H

#include "net/server.h"
#include "realtime/realtime.h"

#define RT_API_MAX_BATCH 1000

/* The server handler; create the server with a struct rt_realtime as app. */
extern const struct rt_server_handler rt_api_handler;

/* Records the start time reported by /metrics. */
void rt_api_mark_start(void);

#endif
