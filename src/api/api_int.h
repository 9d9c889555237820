/*
 * Internals shared by the files of src/api.
 *
 * Ownership: returned strings are malloc'ed and owned by the caller.
 * Threads:   worker threads.  Limits: none of their own.
 */
#ifndef RT_API_API_INT_H
#define RT_API_API_INT_H

#include "net/http.h"
#include "net/server.h"
#include "realtime/realtime.h"

/* The request's token: Authorization: Bearer, else the apikey header, else
 * the apikey query parameter; NULL when there is none. */
char *rt_api_request_token(const struct rt_http_req *req);

/* Answers {code, details: null, hint: null, message} with status. */
void rt_api_respond_error(struct rt_conn *c, int status, const char *code, const char *message);

/* Handles a request whose path is /flags/v1 or /flags/v1/<path>
 * (src/api/flags.c; path "" for the first). */
void rt_api_flags(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		  const char *path);

/* The per-user REST rate (docs/limits.md) of /rest/v1, /locks/v1 and
 * /activity/v1 together. Returns false after answering 429 with Retry-After
 * (src/api/rest.c). */
bool rt_api_within_rate(struct rt_conn *c, struct rt_realtime *rt,
			const struct rt_jwt_claims *claims);
/* Handles a request whose path is /locks/v1/<path> (src/api/locks.c). */
void rt_api_locks(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		  const char *path);
/* Handles a request whose path is /activity/v1/<channel> (src/api/activity.c). */
void rt_api_activity(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		     const char *path);
/* Handles a request whose path is /notify/v1/<path> (src/api/notify.c). */
void rt_api_notify(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		   const char *path);

#endif
