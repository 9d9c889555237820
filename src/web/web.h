/*
 * The web face of the server: the dashboard (/), the demo (/demo), the
 * browser client (/rtsync.js) and their assets, bundled from web/ at build
 * time and embedded in the binary (web/embed.sh generates the asset table),
 * so the server needs neither node nor files on disk to serve them.
 *
 * Routes (GET and HEAD; only paths no other route of src/api answers reach
 * here, so the dashboard never shadows /realtime, /rest, /notify, /collab,
 * /metrics, /healthz or the broadcast API):
 *   /                 index.html          /demo, /demo/   demo.html
 *   /<asset>          any other embedded file (rtsync.js, dashboard.js, …)
 * Every answer carries its content type, a strong ETag (a digest of the
 * bytes), Cache-Control: no-cache (revalidate: the names carry no hash) and
 * X-Content-Type-Options: nosniff; If-None-Match with the ETag answers 304.
 * Pages also carry a Content-Security-Policy that allows only this origin.
 *
 * Ownership: the asset table and its bytes are static, read-only data.
 * Threads:   rt_web_find and rt_web_handle may be called from any thread.
 * Limits:    paths longer than RT_WEB_MAX_PATH are not found.
 */
#ifndef RT_WEB_WEB_H
#define RT_WEB_WEB_H

#include <stdbool.h>
#include <stddef.h>

#include "net/http.h"
#include "net/server.h"

#define RT_WEB_MAX_PATH 256

struct rt_web_asset {
	const char *path;	  /* URL path, "/rtsync.js"; NULL ends the table */
	const char *content_type; /* e.g. "text/javascript; charset=utf-8" */
	const unsigned char *data;
	size_t data_len;
	const char *etag; /* quoted, "\"3f2a…\"" */
};

/* The generated table (web_assets.c), rt_web_n_assets entries then {0}. */
extern const struct rt_web_asset rt_web_assets[];
extern const size_t rt_web_n_assets;

/* The asset a request path names ("/" is /index.html, "/demo" and "/demo/"
 * are /demo.html), or NULL. */
const struct rt_web_asset *rt_web_find(const char *path);

/* Whether an If-None-Match header value (a list of entity tags, weak ones
 * compared weakly, or "*") names etag. inm is untrusted, NUL-terminated. */
bool rt_web_etag_matches(const char *inm, const char *etag);

/* Answers the request when it names an embedded asset: 200 (HEAD: without
 * the body), 304 when If-None-Match holds the ETag, 405 for another method.
 * Returns true when it answered, false (nothing sent) when the path is not
 * an asset, so the caller answers 404. */
bool rt_web_handle(struct rt_conn *c, const struct rt_http_req *req);

#endif
