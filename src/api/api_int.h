/*
 * Internals shared by the files of src/api.
 *
 * Ownership: returned strings are malloc'ed and owned by the caller.
 * Threads:   worker threads.  Limits: none of their own.
 */
#ifndef RT_API_API_INT_H
#define RT_API_API_INT_H

#include "net/http.h"

/* The request's token: Authorization: Bearer, else the apikey header, else
 * the apikey query parameter; NULL when there is none. */
char *rt_api_request_token(const struct rt_http_req *req);

#endif
