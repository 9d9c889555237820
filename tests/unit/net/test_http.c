/*
 * HTTP requests (src/net/http.h): parsing fed whole, byte by byte and in
 * random chunks; limits (431, 413), garbage (400), pipelining and upgrades;
 * query strings and percent-decoding; response formatting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "net/http.h"

#include "../testutil.h"


enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_RANDOM };
#define N_MODES 3

/*
 * Feeds data until the request is complete, an error occurs, or the data runs
 * out, as a connection would (never an empty chunk). Returns the bytes
 * consumed, or -1 on error.
 */
static ssize_t feed(struct rt_http_req *r, const char *data, size_t len, enum feed_mode mode)
{
	size_t pos = 0;
	while (pos < len && !r->is_complete) {
		size_t n = len - pos;
		if (mode == FEED_BYTES)
			n = 1;
		else if (mode == FEED_RANDOM) {
			size_t c = rng_next() % 4 == 0 ? rng_next() % 5000 : rng_next() % 16;
			n = c + 1 < n ? c + 1 : n;
		}
		ssize_t got = rt_http_req_feed(r, data + pos, n);
		if (got < 0)
			return -1;
		assert_true((size_t)got <= n);
		pos += (size_t)got;
		if ((size_t)got < n) /* the rest belongs to what comes next */
			break;
	}
	return (ssize_t)pos;
}

static const char get_req[] = "GET /socket/websocket?apikey=abc&vsn=2.0.0 HTTP/1.1\r\n"
			      "Host: localhost:4000\r\n"
			      "X-Custom-HEADER: Mixed Case Value\r\n"
			      "Accept: */*\r\n"
			      "\r\n";

static void check_get(const struct rt_http_req *r)
{
	assert_true(r->is_complete);
	assert_false(r->is_upgrade);
	assert_true(r->keep_alive);
	assert_int_equal(r->method, HTTP_GET);
	assert_string_equal(r->path, "/socket/websocket");
	assert_string_equal(r->query, "apikey=abc&vsn=2.0.0");
	assert_int_equal(r->n_headers, 3);
	assert_string_equal(r->headers[0].name, "host");
	assert_string_equal(r->headers[0].value, "localhost:4000");
	/* Names are lowercased, values are not. */
	assert_string_equal(rt_http_req_header(r, "x-custom-header"), "Mixed Case Value");
	assert_null(rt_http_req_header(r, "X-Custom-HEADER"));
	assert_string_equal(rt_http_req_header(r, "accept"), "*/*");
	assert_null(rt_http_req_header(r, "content-length"));
	assert_int_equal(r->body.len, 0);
	assert_int_equal(r->error_status, 0);
}

static void test_get_all_modes(void **state)
{
	rng_seed(1);
	for (int mode = 0; mode < N_MODES; mode++) {
		for (int iter = 0; iter < (mode == FEED_RANDOM ? 100 : 1); iter++) {
			struct rt_http_req r;
			rt_http_req_init(&r, 1024);
			assert_false(r.is_complete);
			assert_int_equal(feed(&r, get_req, strlen(get_req), (enum feed_mode)mode),
					 (ssize_t)strlen(get_req));
			check_get(&r);
			/* A complete request takes no more bytes until reset. */
			assert_int_equal(rt_http_req_feed(&r, "GET", 3), 0);
			rt_http_req_deinit(&r);
		}
	}
}

static void test_incomplete(void **state)
{
	/* Every proper prefix is consumed entirely and leaves the request open. */
	for (size_t len = 1; len < strlen(get_req); len++) {
		struct rt_http_req r;
		rt_http_req_init(&r, 1024);
		assert_int_equal(rt_http_req_feed(&r, get_req, len), (ssize_t)len);
		assert_false(r.is_complete);
		assert_int_equal(r.error_status, 0);
		/* ... and the rest completes it. */
		assert_int_equal(rt_http_req_feed(&r, get_req + len, strlen(get_req) - len),
				 (ssize_t)(strlen(get_req) - len));
		check_get(&r);
		rt_http_req_deinit(&r);
	}
}

static void test_headers(void **state)
{
	static const char req[] = "GET /a%20b/c HTTP/1.1\r\n"
				  "Host: h\r\n"
				  "X-Empty:\r\n"
				  "X-Next: 1\r\n"
				  "X-Spaces:    padded   \r\n"
				  "CONTENT-type: text/plain\r\n"
				  "\r\n";
	rng_seed(2);
	for (int mode = 0; mode < N_MODES; mode++) {
		struct rt_http_req r;
		rt_http_req_init(&r, 0);
		assert_int_equal(feed(&r, req, strlen(req), (enum feed_mode)mode), (ssize_t)strlen(req));
		assert_true(r.is_complete);
		/* The path keeps its percent-encoding; no query. */
		assert_string_equal(r.path, "/a%20b/c");
		assert_null(r.query);
		assert_int_equal(r.n_headers, 5);
		assert_string_equal(rt_http_req_header(&r, "x-empty"), "");
		assert_string_equal(rt_http_req_header(&r, "x-next"), "1");
		assert_string_equal(rt_http_req_header(&r, "content-type"), "text/plain");
		const char *sp = rt_http_req_header(&r, "x-spaces");
		assert_non_null(sp);
		assert_non_null(strstr(sp, "padded"));
		for (unsigned i = 0; i < r.n_headers; i++)
			for (const char *p = r.headers[i].name; *p; p++)
				assert_false(*p >= 'A' && *p <= 'Z');
		rt_http_req_deinit(&r);
	}
}

static void test_keep_alive(void **state)
{
	static const struct {
		const char *req;
		bool keep_alive;
	} cases[] = {
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.0\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct rt_http_req r;
		rt_http_req_init(&r, 0);
		assert_int_equal(rt_http_req_feed(&r, cases[i].req, strlen(cases[i].req)),
				 (ssize_t)strlen(cases[i].req));
		assert_true(r.is_complete);
		assert_int_equal(r.keep_alive, cases[i].keep_alive);
		rt_http_req_deinit(&r);
	}
}

static void test_body(void **state)
{
	static const char cl[] = "POST /api/broadcast HTTP/1.1\r\nHost: h\r\n"
				 "Content-Type: application/json\r\nContent-Length: 11\r\n\r\n"
				 "hello world";
	static const char chunked[] = "POST /api/broadcast HTTP/1.1\r\nHost: h\r\n"
				      "Transfer-Encoding: chunked\r\n\r\n"
				      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
	rng_seed(3);
	for (int mode = 0; mode < N_MODES; mode++) {
		for (int k = 0; k < 2; k++) {
			const char *req = k ? chunked : cl;
			struct rt_http_req r;
			rt_http_req_init(&r, 11); /* exactly the body size */
			assert_int_equal(feed(&r, req, strlen(req), (enum feed_mode)mode),
					 (ssize_t)strlen(req));
			assert_true(r.is_complete);
			assert_int_equal(r.method, HTTP_POST);
			assert_string_equal(r.path, "/api/broadcast");
			assert_int_equal(r.body.len, 11);
			assert_memory_equal(r.body.data, "hello world", 11);
			rt_http_req_deinit(&r);
		}
	}
}

/* A chunked body's trailers are read past, not kept: the head's headers,
 * path and query stay as they were (the trailers once grew the string
 * buffer the head points into, and counted headers without names). */
static void test_trailers(void **state)
{
	struct rt_buf req;
	rt_buf_init(&req);
	rt_buf_append_str(&req, "POST /rest/v1/t?select=id HTTP/1.1\r\nHost: h\r\n"
				"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n");
	for (int i = 0; i < 40; i++)
		rt_buf_printf(&req, "X-Trailer-%d: %s\r\n", i, "a long value that makes the buffer grow");
	rt_buf_append_str(&req, "\r\n");
	rng_seed(5);
	for (int mode = 0; mode < N_MODES; mode++) {
		struct rt_http_req r;
		rt_http_req_init(&r, 100);
		assert_int_equal(feed(&r, req.data, req.len, (enum feed_mode)mode), (ssize_t)req.len);
		assert_true(r.is_complete);
		assert_string_equal(r.path, "/rest/v1/t");
		assert_string_equal(r.query, "select=id");
		assert_int_equal(r.n_headers, 2);
		assert_string_equal(rt_http_req_header(&r, "host"), "h");
		assert_string_equal(rt_http_req_header(&r, "transfer-encoding"), "chunked");
		assert_null(rt_http_req_header(&r, "x-trailer-0"));
		assert_int_equal(r.body.len, 5);
		rt_http_req_deinit(&r);
	}
	rt_buf_deinit(&req);
}

static void expect_error(const char *req, size_t len, size_t max_body, int status)
{
	rng_seed(4);
	for (int mode = 0; mode < N_MODES; mode++) {
		struct rt_http_req r;
		rt_http_req_init(&r, max_body);
		ssize_t n = feed(&r, req, len, (enum feed_mode)mode);
		if (n != -1 || r.error_status != status)
			print_error("mode %d: consumed %zd, status %d (want %d)\n", mode, n,
				    r.error_status, status);
		assert_int_equal(n, -1);
		assert_int_equal(r.error_status, status);
		assert_false(r.is_complete);
		rt_http_req_deinit(&r);
	}
}

static void test_body_too_big(void **state)
{
	static const char cl[] = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
	expect_error(cl, strlen(cl), 10, 413);
	/* Refused from the header alone, before any body byte. */
	static const char cl_huge[] = "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";
	expect_error(cl_huge, strlen(cl_huge), 1 << 20, 413);
	static const char chunked[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
	expect_error(chunked, strlen(chunked), 10, 413);
	/* A body is refused when there is no room for one at all. */
	static const char one[] = "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
	expect_error(one, strlen(one), 0, 413);
}

static void test_head_too_big(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);

	/* One long header value. */
	rt_buf_append_str(&b, "GET / HTTP/1.1\r\nX-Big: ");
	for (size_t i = 0; i < RT_HTTP_MAX_HEAD + 100; i++)
		rt_buf_append_byte(&b, 'v');
	rt_buf_append_str(&b, "\r\n\r\n");
	expect_error(b.data, b.len, 0, 431);

	/* A long URL. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "GET /");
	for (size_t i = 0; i < RT_HTTP_MAX_HEAD + 100; i++)
		rt_buf_append_byte(&b, 'p');
	rt_buf_append_str(&b, " HTTP/1.1\r\n\r\n");
	expect_error(b.data, b.len, 0, 431);

	/* Many medium headers adding up. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 40; i++) {
		rt_buf_printf(&b, "X-H%d: ", i);
		for (int k = 0; k < 500; k++)
			rt_buf_append_byte(&b, 'a');
		rt_buf_append_str(&b, "\r\n");
	}
	rt_buf_append_str(&b, "\r\n");
	expect_error(b.data, b.len, 0, 431);

	/* Well under the limit is fine. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "GET / HTTP/1.1\r\nX-Big: ");
	for (size_t i = 0; i < RT_HTTP_MAX_HEAD / 2; i++)
		rt_buf_append_byte(&b, 'v');
	rt_buf_append_str(&b, "\r\n\r\n");
	struct rt_http_req r;
	rt_http_req_init(&r, 0);
	assert_int_equal(feed(&r, b.data, b.len, FEED_WHOLE), (ssize_t)b.len);
	assert_true(r.is_complete);
	assert_int_equal(strlen(rt_http_req_header(&r, "x-big")), RT_HTTP_MAX_HEAD / 2);
	rt_http_req_deinit(&r);
	rt_buf_deinit(&b);
}

static void test_too_many_headers(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < RT_HTTP_MAX_HEADERS; i++)
		rt_buf_printf(&b, "X-H%d: %d\r\n", i, i);
	size_t head_len = b.len;
	rt_buf_append_str(&b, "\r\n");

	/* Exactly the maximum. */
	rng_seed(5);
	for (int mode = 0; mode < N_MODES; mode++) {
		struct rt_http_req r;
		rt_http_req_init(&r, 0);
		assert_int_equal(feed(&r, b.data, b.len, (enum feed_mode)mode), (ssize_t)b.len);
		assert_true(r.is_complete);
		assert_int_equal(r.n_headers, RT_HTTP_MAX_HEADERS);
		assert_string_equal(rt_http_req_header(&r, "x-h63"), "63");
		rt_http_req_deinit(&r);
	}

	/* One more. */
	b.len = head_len;
	rt_buf_append_str(&b, "X-One-Too-Many: 1\r\n\r\n");
	expect_error(b.data, b.len, 0, 431);
	rt_buf_deinit(&b);
}

static void test_garbage(void **state)
{
	static const char *const bad[] = {
		"\x01\x02\x03 hello\r\n\r\n",
		"GET / HTTP/1.1\r\nHost x\r\n\r\n",
		"GET / FOO/1.1\r\n\r\n",
		"GET\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET / HTTP/1.1\r\nBad\x01Name: x\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		expect_error(bad[i], strlen(bad[i]), 100, 400);
}

/* Runs an error, a reset and a good request; exits 0 when all went well. */
static void reset_after_error_child(const char *bad, size_t bad_len, size_t max_body)
{
	struct rt_http_req r;
	rt_http_req_init(&r, max_body);
	if (rt_http_req_feed(&r, bad, bad_len) != -1 || !r.error_status)
		_exit(2);
	rt_http_req_reset(&r);
	if (r.error_status || r.is_complete || r.n_headers || r.path)
		_exit(3);
	if (rt_http_req_feed(&r, get_req, strlen(get_req)) != (ssize_t)strlen(get_req) ||
	    !r.is_complete || strcmp(r.path, "/socket/websocket"))
		_exit(4);
	rt_http_req_deinit(&r);
	_exit(0);
}

/*
 * http.h: rt_http_req_reset() "Forgets the current request and gets ready for
 * the next". After a failed feed it must not abort the process. Run in a
 * child: http_parser asserts on pausing a parser in an error state.
 */
static void test_reset_after_error(void **state)
{
	static const char garbage[] = "\x01garbage\r\n\r\n";
	static const char big[] = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
	const struct {
		const char *what, *data;
		size_t len, max_body;
	} cases[] = {
		{"after 400", garbage, sizeof garbage - 1, 0},
		{"after 413", big, sizeof big - 1, 10},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			reset_after_error_child(cases[i].data, cases[i].len, cases[i].max_body);
		int st = 0;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			if (WIFSIGNALED(st))
				print_error("reset %s: child killed by signal %d\n", cases[i].what,
					    WTERMSIG(st));
			else
				print_error("reset %s: child exit status %d\n", cases[i].what,
					    WEXITSTATUS(st));
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static void test_pipelined(void **state)
{
	static const char two[] = "GET /first?a=1 HTTP/1.1\r\nHost: h\r\n\r\n"
				  "POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
				  "GET /third HTTP/1.1\r\n\r\n";
	const size_t first_len = strlen("GET /first?a=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	const size_t second_len = strlen("POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz");
	rng_seed(6);
	for (int mode = 0; mode < N_MODES; mode++) {
		for (int iter = 0; iter < (mode == FEED_RANDOM ? 50 : 1); iter++) {
			struct rt_http_req r;
			rt_http_req_init(&r, 100);
			size_t len = strlen(two);
			ssize_t n = feed(&r, two, len, (enum feed_mode)mode);
			assert_int_equal(n, (ssize_t)first_len);
			assert_true(r.is_complete);
			assert_string_equal(r.path, "/first");
			assert_string_equal(r.query, "a=1");
			/* The second request waits for reset. */
			assert_int_equal(rt_http_req_feed(&r, two + n, len - (size_t)n), 0);
			assert_string_equal(r.path, "/first");

			rt_http_req_reset(&r);
			assert_false(r.is_complete);
			ssize_t n2 = feed(&r, two + n, len - (size_t)n, (enum feed_mode)mode);
			assert_int_equal(n2, (ssize_t)second_len);
			assert_true(r.is_complete);
			assert_int_equal(r.method, HTTP_POST);
			assert_string_equal(r.path, "/second");
			assert_null(r.query);
			assert_int_equal(r.body.len, 3);
			assert_memory_equal(r.body.data, "xyz", 3);
			assert_null(rt_http_req_header(&r, "x-none"));

			rt_http_req_reset(&r);
			size_t off = (size_t)n + (size_t)n2;
			assert_int_equal(feed(&r, two + off, len - off, (enum feed_mode)mode),
					 (ssize_t)(len - off));
			assert_true(r.is_complete);
			assert_string_equal(r.path, "/third");
			assert_int_equal(r.body.len, 0);
			rt_http_req_deinit(&r);
		}
	}
}

static void test_upgrade(void **state)
{
	static const char head[] = "GET /realtime/v1/websocket?apikey=k&vsn=1.0.0 HTTP/1.1\r\n"
				   "Host: localhost\r\n"
				   "Upgrade: websocket\r\n"
				   "Connection: Upgrade\r\n"
				   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				   "Sec-WebSocket-Version: 13\r\n"
				   "\r\n";
	/* A masked WebSocket frame sent right behind the request. */
	static const char frame[] = "\x81\x82\x01\x02\x03\x04ik";
	char all[sizeof head + sizeof frame];
	size_t head_len = strlen(head), frame_len = sizeof frame - 1;
	memcpy(all, head, head_len);
	memcpy(all + head_len, frame, frame_len);

	rng_seed(7);
	for (int mode = 0; mode < N_MODES; mode++) {
		for (int iter = 0; iter < (mode == FEED_RANDOM ? 50 : 1); iter++) {
			struct rt_http_req r;
			rt_http_req_init(&r, 0);
			ssize_t n = feed(&r, all, head_len + frame_len, (enum feed_mode)mode);
			assert_int_equal(n, (ssize_t)head_len);
			assert_true(r.is_complete);
			assert_true(r.is_upgrade);
			assert_string_equal(r.path, "/realtime/v1/websocket");
			assert_string_equal(r.query, "apikey=k&vsn=1.0.0");
			assert_string_equal(rt_http_req_header(&r, "upgrade"), "websocket");
			assert_string_equal(rt_http_req_header(&r, "sec-websocket-key"),
					    "dGhlIHNhbXBsZSBub25jZQ==");
			assert_int_equal(r.body.len, 0);
			/* The frame bytes are left for the WebSocket engine. */
			assert_int_equal(rt_http_req_feed(&r, all + n, frame_len), 0);
			rt_http_req_deinit(&r);
		}
	}
}

static void test_pct_decode(void **state)
{
	static const struct {
		const char *in;
		bool plus;
		const char *out; /* NULL: rejected */
	} cases[] = {
		{"", false, ""},
		{"plain", false, "plain"},
		{"a%20b", false, "a b"},
		{"%41%42%43", false, "ABC"},
		{"%e2%82%AC", false, "\xe2\x82\xac"},
		{"a+b", true, "a b"},
		{"a+b", false, "a+b"},
		{"%2B", true, "+"},
		{"%25", false, "%"},
		{"%", false, NULL},
		{"%4", false, NULL},
		{"a%", false, NULL},
		{"%zz", false, NULL},
		{"%g0", false, NULL},
		{"%0g", false, NULL},
		{"%00", false, NULL},
		{"a%00b", true, NULL},
		{"%%41", false, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *got = rt_http_pct_decode(cases[i].in, strlen(cases[i].in), cases[i].plus);
		if (cases[i].out) {
			if (!got)
				print_error("rejected: \"%s\"\n", cases[i].in);
			assert_non_null(got);
			assert_string_equal(got, cases[i].out);
		} else {
			if (got)
				print_error("accepted: \"%s\" -> \"%s\"\n", cases[i].in, got);
			assert_null(got);
		}
		free(got);
	}

	/* Only s_len bytes count; a raw NUL inside them is rejected. */
	char *got = rt_http_pct_decode("ab%41cd", 5, false);
	assert_string_equal(got, "abA");
	free(got);
	assert_null(rt_http_pct_decode("a\0b", 3, false));
	/* "%4" at the end of the counted bytes is cut, even if more follows. */
	assert_null(rt_http_pct_decode("%41", 2, false));
}

static void test_query_get(void **state)
{
	static const char q[] = "apikey=abc%3D%3D&vsn=2.0.0&name=J%C3%BCrgen+M&flag&empty=&dup=1&dup=2"
				"&bad=%zz&nul=%00";
	static const struct {
		const char *name;
		const char *value; /* NULL: absent or not decodable */
	} cases[] = {
		{"apikey", "abc=="}, {"vsn", "2.0.0"}, {"name", "J\xc3\xbcrgen M"},
		{"flag", ""},         {"empty", ""},   {"dup", "1"},
		{"api", NULL},        {"key", NULL},   {"missing", NULL},
		{"bad", NULL},        {"nul", NULL},   {"apikey=abc", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *v = rt_http_query_get(q, cases[i].name);
		if (cases[i].value) {
			if (!v)
				print_error("%s: absent\n", cases[i].name);
			assert_non_null(v);
			assert_string_equal(v, cases[i].value);
		} else {
			if (v)
				print_error("%s: got \"%s\"\n", cases[i].name, v);
			assert_null(v);
		}
		free(v);
	}
	assert_null(rt_http_query_get(NULL, "apikey"));
	assert_null(rt_http_query_get("", "apikey"));
	char *v = rt_http_query_get("&&a=1&", "a");
	assert_string_equal(v, "1");
	free(v);
}

/* Parses a response with http_parser to check that it is well formed. */
struct resp {
	int n_complete;
	struct rt_buf body;
};

static int resp_body(http_parser *p, const char *at, size_t len)
{
	struct resp *r = p->data;
	rt_buf_append(&r->body, at, len);
	return 0;
}

static int resp_complete(http_parser *p)
{
	struct resp *r = p->data;
	r->n_complete++;
	return 0;
}

static void test_response(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_http_response(&b, 404, "application/json", "{\"error\":\"Not Found\"}", 21,
			 "X-Extra: 1\r\nX-Other: two\r\n", false);
	assert_string_equal(b.data, "HTTP/1.1 404 Not Found\r\n"
				    "Server: rtsync\r\n"
				    "Content-Length: 21\r\n"
				    "Content-Type: application/json\r\n"
				    "Access-Control-Allow-Origin: *\r\n"
				    "X-Extra: 1\r\n"
				    "X-Other: two\r\n"
				    "Connection: close\r\n"
				    "\r\n"
				    "{\"error\":\"Not Found\"}");

	/* Appends: a second response after the first, no type, no body. */
	size_t first = b.len;
	rt_http_response(&b, 204, NULL, NULL, 0, NULL, true);
	assert_string_equal(b.data + first, "HTTP/1.1 204 No Content\r\n"
					    "Server: rtsync\r\n"
					    "Content-Length: 0\r\n"
					    "Access-Control-Allow-Origin: *\r\n"
					    "Connection: keep-alive\r\n"
					    "\r\n");

	/* Both parse as HTTP responses, the body of the first intact. */
	struct resp r = {0};
	rt_buf_init(&r.body);
	http_parser p;
	http_parser_init(&p, HTTP_RESPONSE);
	p.data = &r;
	http_parser_settings s;
	http_parser_settings_init(&s);
	s.on_body = resp_body;
	s.on_message_complete = resp_complete;
	assert_int_equal(http_parser_execute(&p, &s, b.data, b.len), b.len);
	assert_int_equal(HTTP_PARSER_ERRNO(&p), HPE_OK);
	assert_int_equal(r.n_complete, 2);
	assert_string_equal(r.body.data, "{\"error\":\"Not Found\"}");
	rt_buf_deinit(&r.body);

	/* A body with NUL bytes is sent as is. */
	rt_buf_reset(&b);
	rt_http_response(&b, 200, "application/octet-stream", "a\0b", 3, NULL, true);
	assert_memory_equal(b.data + b.len - 3, "a\0b", 3);
	assert_non_null(strstr(b.data, "Content-Length: 3\r\n"));
	rt_buf_deinit(&b);
}

static void test_status_text(void **state)
{
	assert_string_equal(rt_http_status_text(101), "Switching Protocols");
	assert_string_equal(rt_http_status_text(200), "OK");
	assert_string_equal(rt_http_status_text(400), "Bad Request");
	assert_string_equal(rt_http_status_text(413), "Payload Too Large");
	assert_string_equal(rt_http_status_text(431), "Request Header Fields Too Large");
	assert_string_equal(rt_http_status_text(999), "Unknown");
	assert_string_equal(rt_http_status_text(0), "Unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_all_modes),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_trailers),
		cmocka_unit_test(test_body_too_big),
		cmocka_unit_test(test_head_too_big),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_reset_after_error),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_pct_decode),
		cmocka_unit_test(test_query_get),
		cmocka_unit_test(test_response),
		cmocka_unit_test(test_status_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
