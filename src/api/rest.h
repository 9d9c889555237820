/*
 * The REST data API: what supabase-js' from() sends to /rest/v1/{table}, in
 * PostgREST's dialect (query string in store/query.h; Prefer, Accept, Range,
 * Content-Range headers; PostgREST's JSON errors). The request's token
 * (Authorization: Bearer, else apikey) is verified and its role and claims
 * are the requester of the store call, whose row-level security applies
 * (docs/security.md); a row a policy refuses is 42501, answered 401 to anon
 * and 403 otherwise, as PostgREST does. Store calls run on libuv's
 * thread pool, never on the I/O worker; the answer is written by the worker
 * that owns the connection, or dropped if the connection has gone.
 *
 * Ownership: a request's job owns copies of everything it needs.
 * Threads:   rt_rest_handle() on the connection's worker thread.
 * Limits:    bodies are bounded by the server config; rows per read by
 *            RT_STORE_MAX_ROWS.
 */
#ifndef RT_API_REST_H
#define RT_API_REST_H

#include "net/server.h"
#include "realtime/realtime.h"

/* Handles a request whose path is /rest/v1/<rest>. */
void rt_rest_handle(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		    const char *rest);

#endif
