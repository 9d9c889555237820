/*
 * The client handshake (src/client/handshake.c): URL parsing, the upgrade
 * request, and response parsing fed whole, byte by byte and in random chunks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/handshake.h"
#include "net/ws.h"
#include "../testutil.h"

static void *std_realloc(void *ud, void *p, size_t n)
{
	if (!n) {
		free(p);
		return NULL;
	}
	return realloc(p, n);
}

static const struct rt_allocator a = {std_realloc, NULL};

static void test_url(void **state)
{
	struct rt_client_url u;
	assert_int_equal(rt_client_url_parse(&a, "http://127.0.0.1:4000", &u), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_string_equal(u.port, "4000");
	assert_string_equal(u.path, "/realtime/v1/websocket");
	assert_string_equal(u.host_header, "127.0.0.1:4000");
	rt_client_url_deinit(&a, &u);
	assert_int_equal(rt_client_url_parse(&a, "ws://example.org/realtime/v1/", &u), 0);
	assert_string_equal(u.port, "80");
	assert_string_equal(u.path, "/realtime/v1/websocket");
	rt_client_url_deinit(&a, &u);
	assert_int_equal(rt_client_url_parse(&a, "ws://[::1]:9/socket/websocket", &u), 0);
	assert_string_equal(u.host, "::1");
	assert_string_equal(u.host_header, "[::1]:9");
	assert_string_equal(u.path, "/socket/websocket");
	assert_false(u.is_tls);
	rt_client_url_deinit(&a, &u);
	assert_int_equal(rt_client_url_parse(&a, "wss://example.org", &u), 0);
	assert_true(u.is_tls);
	assert_string_equal(u.port, "443");
	assert_string_equal(u.host_header, "example.org");
	rt_client_url_deinit(&a, &u);
	assert_int_equal(rt_client_url_parse(&a, "HTTPS://[::1]:8443/realtime/v1", &u), 0);
	assert_true(u.is_tls);
	assert_string_equal(u.host, "::1");
	assert_string_equal(u.port, "8443");
	assert_string_equal(u.path, "/realtime/v1/websocket");
	rt_client_url_deinit(&a, &u);
	static const char *bad[] = {"wss://", "https://:1", "ftp://x", "ws://", "ws://x:0",
				    "ws://x:70000", "ws://x:12a", "ws://x/?q=1", "ws://u@x",
				    "ws://x#f", "ws://[::1", "x:80", NULL};
	for (int i = 0; bad[i]; i++) {
		assert_int_equal(rt_client_url_parse(&a, bad[i], &u), RT_EINVAL);
		assert_null(u.host);
	}
	assert_int_equal(rt_client_url_parse(&a, NULL, &u), RT_EINVAL);
}

/* The key and expected accept of a request. */
static void start(struct rt_client_hs *hs, char **req)
{
	struct rt_client_url u;
	size_t len;
	assert_int_equal(rt_client_url_parse(&a, "http://h:1", &u), 0);
	assert_int_equal(rt_client_hs_start(hs, &a, &u, "k y/+", req, &len), 0);
	assert_int_equal(strlen(*req), len);
	rt_client_url_deinit(&a, &u);
}

static void test_request(void **state)
{
	struct rt_client_hs hs;
	char *req;
	start(&hs, &req);
	assert_non_null(strstr(req, "GET /realtime/v1/websocket?apikey=k%20y%2F%2B&vsn=1.0.0 HTTP/1.1\r\n"));
	assert_non_null(strstr(req, "\r\nHost: h:1\r\n"));
	assert_non_null(strstr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
	const char *k = strstr(req, "Sec-WebSocket-Key: ");
	assert_non_null(k);
	char accept[29];
	rt_ws_accept_key(k + 19, 24, accept);
	assert_string_equal(accept, hs.accept);
	assert_string_equal(req + strlen(req) - 4, "\r\n\r\n");
	free(req);
}

static int feed_chunks(struct rt_client_hs *hs, const char *resp, size_t len, int mode,
		       size_t *at)
{
	size_t off = 0;
	while (off < len) {
		size_t n = mode == 0 ? len - off : mode == 1 ? 1 : 1 + rng_next() % 7;
		if (n > len - off)
			n = len - off;
		int rc = rt_client_hs_feed(hs, resp + off, n);
		if (rc) {
			*at = off + (rc > 0 ? (size_t)rc : 0);
			return rc;
		}
		off += n;
	}
	*at = off;
	return 0;
}

static void test_response_ok(void **state)
{
	rng_seed(7);
	for (int mode = 0; mode < 3; mode++) {
		struct rt_client_hs hs;
		char *req, resp[512];
		start(&hs, &req);
		free(req);
		int n = snprintf(resp, sizeof resp,
				 "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
				 "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
				 "X-Long: %0200d\r\n\r\n\x81\x02hi",
				 hs.accept, 0);
		size_t at;
		int rc = feed_chunks(&hs, resp, (size_t)n, mode, &at);
		assert_true(rc > 0);
		assert_int_equal(at, (size_t)n - 4); /* the frame bytes are left over */
		assert_int_equal(rt_client_hs_status(&hs), 101);
	}
}

#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* check_fails' formats are the test's own */
static void check_fails(const char *fmt, int want)
{
	for (int mode = 0; mode < 3; mode++) {
		struct rt_client_hs hs;
		char *req, resp[1024];
		start(&hs, &req);
		free(req);
		int n = snprintf(resp, sizeof resp, fmt, hs.accept);
		size_t at;
		int rc = feed_chunks(&hs, resp, (size_t)n, mode, &at);
		if (!rc)
			rc = rt_client_hs_eof(&hs);
		assert_int_equal(rc, want);
	}
}

static void test_response_errors(void **state)
{
	rng_seed(9);
	/* wrong accept value */
	check_fails("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=%.0s\r\n\r\n",
		    RT_EPROTO);
	/* missing Upgrade */
	check_fails("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		    RT_EPROTO);
	/* missing Connection: upgrade */
	check_fails("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: close\r\n"
		    "Sec-WebSocket-Accept: %s\r\n\r\n",
		    RT_EPROTO);
	/* not HTTP */
	check_fails("SSH-2.0-OpenSSH%.0s\r\n", RT_EPROTO);
	/* refused */
	check_fails("HTTP/1.1 401 Unauthorized\r\nContent-Length: 29\r\n\r\n"
		    "{\"error\":\"Token has expired\"}%.0s",
		    RT_EAUTH);
	check_fails("HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\n{}%.0s", RT_EIO);
	/* cut short */
	check_fails("HTTP/1.1 101 OK\r\nUpgrade: websocket%.0s", RT_EPROTO);
	/* the body text is kept for the error message */
	struct rt_client_hs hs;
	char *req;
	start(&hs, &req);
	free(req);
	const char *r = "HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!";
	assert_int_equal(rt_client_hs_feed(&hs, r, strlen(r)), RT_EAUTH);
	assert_string_equal(hs.body, "nope!");
	assert_int_equal(rt_client_hs_status(&hs), 403);
}

static void test_header_limit(void **state)
{
	struct rt_client_hs hs;
	char *req;
	start(&hs, &req);
	free(req);
	const char *head = "HTTP/1.1 101 OK\r\n";
	assert_int_equal(rt_client_hs_feed(&hs, head, strlen(head)), 0);
	char line[1024];
	memset(line, 'a', sizeof line);
	memcpy(line, "X-A: ", 5);
	line[sizeof line - 2] = '\r';
	line[sizeof line - 1] = '\n';
	int rc = 0;
	for (int i = 0; i < 40 && !rc; i++)
		rc = rt_client_hs_feed(&hs, line, sizeof line);
	assert_int_equal(rc, RT_ETOOBIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_response_ok),
		cmocka_unit_test(test_response_errors),
		cmocka_unit_test(test_header_limit),
	};
	return cmocka_run_group_tests_name("client/handshake", tests, NULL, NULL);
}
