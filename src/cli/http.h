/*
 * One blocking HTTP request of a client command (rtsync notify, inbox,
 * lock) to the server's REST routes, with libcurl: http:// or https://
 * (--cacert, --capath, --insecure), the API key and a bearer token, a JSON
 * body, an answer of at most 16 MiB.
 *
 * Ownership: options are borrowed; the answer is the caller's (free()).
 * Threads:   any thread; one request at a time per call.
 * Limits:    16 MiB answers; o->timeout_ms per request.
 */
#ifndef RT_CLI_HTTP_H
#define RT_CLI_HTTP_H

#include <stdbool.h>

struct rt_cli_http {
	const char *url, *apikey, *token; /* token NULL: the API key */
	const char *cacert, *capath;      /* NULL: the system's CAs */
	bool is_insecure;
	long timeout_ms;
	bool is_json;
};

/* The defaults: RTSYNC_URL (http://127.0.0.1:4000), RTSYNC_APIKEY,
 * RTSYNC_TOKEN, RTSYNC_CACERT, 10 s. */
void rt_cli_http_defaults(struct rt_cli_http *o);

/* method on <url>/<prefix>/<path> (body: JSON text or NULL); *status and
 * *answer on success. Returns 0, or -1 reported on stderr under cmd. */
int rt_cli_http_call(const char *cmd, const struct rt_cli_http *o, const char *method,
		     const char *prefix, const char *path, const char *body, int *status,
		     char **answer);

/* Prints an error answer ({code, message, hint}) under cmd; returns 1. */
int rt_cli_http_report(const char *cmd, int status, const char *answer);

#endif
