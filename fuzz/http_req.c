/*
 * Fuzz target: HTTP request parsing (rt_http_req_feed) with pipelining.
 *
 * Input layout:
 *   byte 0      max_body = 16 * byte (0 .. 4080)
 *   byte 1      k = byte % 16: how many chunk-size bytes follow
 *   k bytes     chunk sizes, used in turn: size = byte + 1 (k = 0: all at once)
 *   the rest    what the client sends on one connection
 *
 * Requests are parsed one after another as the server does: feed chunks
 * until one is complete, check it, reset, and go on with the bytes it did not
 * consume. Parsing stops at an error (the server answers and closes) or an
 * upgrade (the rest is WebSocket). Checked: limits hold, header names are
 * lowercase and findable, consumed counts add up, query helpers are safe.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "net/http.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			abort();                                                         \
	} while (0)

static void check_request(const struct rt_http_req *r, size_t max_body)
{
	CHECK(r->is_complete);
	CHECK(r->error_status == 0);
	CHECK(r->path && r->path[0]);
	CHECK(r->n_headers <= RT_HTTP_MAX_HEADERS);
	CHECK(r->body.len <= max_body);
	CHECK(!r->is_upgrade || r->body.len == 0);
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct rt_http_header *h = &r->headers[i];
		CHECK(h->name && h->value);
		for (const char *p = h->name; *p; p++)
			CHECK(!(*p >= 'A' && *p <= 'Z'));
		CHECK(rt_http_req_header(r, h->name) != NULL);
	}
	/* What handlers do with a request. */
	static const char *const names[] = {"apikey", "vsn", "log_level", ""};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		char *v = rt_http_query_get(r->query, names[i]);
		if (v)
			CHECK(strlen(v) <= strlen(r->query));
		free(v);
	}
	char *p = rt_http_pct_decode(r->path, strlen(r->path), false);
	if (p)
		CHECK(strlen(p) <= strlen(r->path));
	free(p);
	struct rt_buf out;
	rt_buf_init(&out);
	rt_http_response(&out, 200, "text/plain", r->path, strlen(r->path), NULL, r->keep_alive);
	CHECK(out.len > strlen(r->path));
	rt_buf_deinit(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max_body = 16 * (size_t)data[0];
	size_t k = data[1] % 16;
	if (size < 2 + k)
		return 0;
	const uint8_t *sizes = data + 2;
	const char *in = (const char *)data + 2 + k;
	size_t in_len = size - 2 - k;

	struct rt_http_req r;
	rt_http_req_init(&r, max_body);
	size_t pos = 0, i = 0;
	while (pos < in_len) {
		/* One request: feed until complete, an error, or no more bytes.
		 * Chunks are never empty (an empty feed means end of input). */
		bool failed = false;
		while (pos < in_len && !r.is_complete) {
			size_t n = k ? (size_t)sizes[i++ % k] + 1 : in_len - pos;
			if (n > in_len - pos)
				n = in_len - pos;
			ssize_t got = rt_http_req_feed(&r, in + pos, n);
			if (got < 0) {
				CHECK(got == -1);
				CHECK(r.error_status == 400 || r.error_status == 413 ||
				      r.error_status == 431);
				failed = true;
				break;
			}
			CHECK((size_t)got <= n);
			pos += (size_t)got;
			if ((size_t)got < n)
				CHECK(r.is_complete);
		}
		if (failed || !r.is_complete)
			break;
		check_request(&r, max_body);
		/* A complete request takes nothing more until reset. */
		if (pos < in_len)
			CHECK(rt_http_req_feed(&r, in + pos, in_len - pos) == 0);
		if (r.is_upgrade)
			break;
		rt_http_req_reset(&r);
	}
	rt_http_req_deinit(&r);
	return 0;
}
