#include "web/web.h"

#include <stdio.h>
#include <string.h>

const struct rt_web_asset *rt_web_find(const char *path)
{
	if (!path || strlen(path) > RT_WEB_MAX_PATH)
		return NULL;
	if (!strcmp(path, "/"))
		path = "/index.html";
	else if (!strcmp(path, "/demo") || !strcmp(path, "/demo/"))
		path = "/demo.html";
	for (size_t i = 0; i < rt_web_n_assets; i++)
		if (!strcmp(rt_web_assets[i].path, path))
			return &rt_web_assets[i];
	return NULL;
}

bool rt_web_etag_matches(const char *inm, const char *etag)
{
	size_t n = strlen(etag);
	for (const char *p = inm; *p;) {
		p += strspn(p, " \t,");
		if (!*p)
			break;
		size_t len = strcspn(p, ",");
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 1 && *p == '*')
			return true;
		if (len >= 2 && !strncmp(p, "W/", 2)) { /* weak comparison, RFC 9110 13.1.2 */
			p += 2;
			len -= 2;
		}
		if (len == n && !memcmp(p, etag, n))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

static const char page_csp[] =
	"Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; "
	"img-src 'self' data:; style-src 'self' 'unsafe-inline'; base-uri 'none'; "
	"frame-ancestors 'none'\r\n";

bool rt_web_handle(struct rt_conn *c, const struct rt_http_req *req)
{
	const struct rt_web_asset *a = rt_web_find(req->path);
	if (!a)
		return false;
	if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
		static const char body[] = "{\"error\":\"Method Not Allowed\"}";
		rt_conn_respond(c, 405, "application/json", body, sizeof body - 1,
				"Allow: GET, HEAD\r\n");
		return true;
	}
	bool is_page = !strncmp(a->content_type, "text/html", 9);
	char headers[768];
	snprintf(headers, sizeof headers,
		 "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
		 "Referrer-Policy: no-referrer\r\n%s",
		 a->etag, is_page ? page_csp : "");
	const char *inm = rt_http_req_header(req, "if-none-match");
	if (inm && rt_web_etag_matches(inm, a->etag)) {
		rt_conn_respond(c, 304, NULL, NULL, 0, headers);
		return true;
	}
	if (req->method == HTTP_HEAD) /* Content-Length 0: the head alone */
		rt_conn_respond(c, 200, a->content_type, NULL, 0, headers);
	else
		rt_conn_respond(c, 200, a->content_type, (const char *)a->data, a->data_len,
				headers);
	return true;
}
