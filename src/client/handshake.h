/*
 * The client side of the WebSocket opening handshake (RFC 6455 §4.1) for
 * librtsync: the server URL split into host, port and path, the upgrade
 * request, and the server's response parsed with http-parser and checked
 * (status 101, Upgrade/Connection headers, Sec-WebSocket-Accept). No I/O.
 *
 * Ownership: struct rt_client_url owns its strings (allocated with the given
 *            allocator; free them with rt_client_url_deinit()). The request
 *            buffer belongs to the caller (free with the same allocator).
 * Threads:   no shared state.
 * Limits:    URLs up to 2048 bytes; response headers up to
 *            RT_CLIENT_HS_MAX_HEADER bytes; at most 255 bytes of an error
 *            body are kept.
 */
#ifndef RT_CLIENT_HANDSHAKE_H
#define RT_CLIENT_HANDSHAKE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#include "rtsync/rtsync.h"

#define RT_CLIENT_HS_MAX_HEADER 16384

struct rt_client_url {
	char *host; /* without brackets for IPv6 literals */
	char *port; /* decimal */
	char *path; /* starts with '/', ends in "/websocket" */
	char *host_header; /* host[:port] as sent in Host */
	bool is_tls;       /* wss:// or https:// */
};

/*
 * Parses "ws://host[:port][/path]" or "http://…" (default port 80), or
 * "wss://…" or "https://…" (TLS, default port 443). The path gets
 * "/realtime/v1/websocket" appended (or "/websocket" when it ends in
 * "/realtime/v1"; nothing when it already ends in "/websocket").
 * Returns 0, RT_EINVAL (unsupported scheme, bad port, too long, query or
 * fragment present), RT_ENOMEM (out zeroed on failure).
 */
int rt_client_url_parse(const struct rt_allocator *a, const char *url, struct rt_client_url *out);
void rt_client_url_deinit(const struct rt_allocator *a, struct rt_client_url *u);

struct rt_client_hs {
	http_parser parser;
	char accept[29];       /* the Sec-WebSocket-Accept value expected */
	size_t header_bytes;   /* bytes fed so far */
	int field;             /* header being read: 0 other, 1 upgrade, 2 connection, 3 accept */
	bool in_value;
	char value[64];        /* value of the header being read (truncated) */
	size_t value_len;
	bool has_upgrade, has_connection, has_accept;
	bool is_headers_done, is_done;
	char body[256];        /* start of an error response's body */
	size_t body_len;
};

/*
 * Builds the upgrade request into *req (allocated with a; *req_len bytes,
 * NUL-terminated) for apikey (percent-encoded into the query, vsn=1.0.0)
 * and a fresh random key, and prepares hs to check the response.
 * Returns 0 or RT_ENOMEM, RT_EIO (no randomness).
 */
int rt_client_hs_start(struct rt_client_hs *hs, const struct rt_allocator *a,
		       const struct rt_client_url *u, const char *apikey, char **req,
		       size_t *req_len);

/*
 * Feeds response bytes. Returns 0 (need more), a positive count when the
 * upgrade succeeded (the response ended after that many bytes of data; the
 * rest is WebSocket data), or an error: RT_EPROTO (malformed, missing or
 * wrong upgrade headers or accept value), RT_ETOOBIG (headers too long),
 * RT_EAUTH (status 401 or 403), RT_EIO (any other status). For error
 * statuses the result comes once the body is complete (or at
 * rt_client_hs_eof()); rt_client_hs_status() and the body are then set.
 */
int rt_client_hs_feed(struct rt_client_hs *hs, const char *data, size_t data_len);

/* The connection ended: the error for a response cut short. */
int rt_client_hs_eof(struct rt_client_hs *hs);

/* The response status code (0 before the status line is complete). */
int rt_client_hs_status(const struct rt_client_hs *hs);

#endif
