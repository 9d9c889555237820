/*
 * HTTP/1.1 requests on top of http-parser, bounded for hostile peers: one
 * request at a time (pipelined bytes wait), limits on the request head, the
 * number of headers and the body. Also query-string lookup and response
 * formatting. No I/O.
 *
 * Ownership: struct rt_http_req is embedded in its owner and owns every string
 *            it hands out until rt_http_req_reset()/rt_http_req_deinit().
 * Threads:   one request object belongs to one thread.
 * Limits:    RT_HTTP_MAX_HEAD bytes of request line plus headers (431 beyond),
 *            RT_HTTP_MAX_HEADERS headers (431), max_body bytes of body (413).
 */
#ifndef RT_NET_HTTP_H
#define RT_NET_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"

#define RT_HTTP_MAX_HEAD (16 * 1024)
#define RT_HTTP_MAX_HEADERS 64

struct rt_http_header {
	char *name; /* lowercased */
	char *value;
};

struct rt_http_req {
	http_parser parser;
	size_t max_body;
	int method;     /* enum http_method */
	char *path;     /* percent-encoded path, without the query */
	char *query;    /* raw query string without '?', or NULL */
	struct rt_http_header headers[RT_HTTP_MAX_HEADERS];
	unsigned n_headers;
	struct rt_buf body;
	bool is_complete; /* a whole request has been parsed */
	bool is_upgrade;  /* the request asks for a protocol upgrade */
	bool keep_alive;
	int error_status; /* set with a negative return from feed */

	/* parse state: header names and values, path and query are copied into
	 * strs ("name\0value\0"…), whose offsets become pointers once the head is
	 * complete; reset keeps the buffers' memory for the next request */
	struct rt_buf url, field, value, strs;
	uint16_t str_off[RT_HTTP_MAX_HEADERS][2];
	bool in_value;
	size_t head_bytes;
};

void rt_http_req_init(struct rt_http_req *r, size_t max_body);
void rt_http_req_deinit(struct rt_http_req *r);
/* Forgets the current request and gets ready for the next (on the same or
 * another connection); the parse buffers keep their memory. */
void rt_http_req_reset(struct rt_http_req *r);

/*
 * Parses data. Returns the number of bytes consumed (the rest belongs to the
 * next request, or to the upgraded protocol when is_upgrade), with
 * is_complete set once the request is whole; or -1 with error_status set to
 * the HTTP status to answer (400, 413, 431) before closing.
 */
ssize_t rt_http_req_feed(struct rt_http_req *r, const char *data, size_t data_len);

/* The value of a header (name in lowercase), or NULL. */
const char *rt_http_req_header(const struct rt_http_req *r, const char *name);

/* Looks up name in a query string and percent-decodes its value ('+' is a
 * space). Returns a malloc'ed string, or NULL when absent. */
char *rt_http_query_get(const char *query, const char *name);

/* Percent-decodes s_len bytes of s into a malloc'ed string; NULL if it would
 * contain a NUL byte or a malformed escape. */
char *rt_http_pct_decode(const char *s, size_t s_len, bool plus_is_space);

/* Appends a complete response. extra_headers is "Name: value\r\n"... or NULL. */
void rt_http_response(struct rt_buf *out, int status, const char *content_type, const char *body,
		      size_t body_len, const char *extra_headers, bool keep_alive);

const char *rt_http_status_text(int status);

#endif
