/*
 * librtsync over wss:// against `rtsync serve --tls-cert --tls-key`
 * (certificates made per run by tests/tls/make-certs.sh): verification with
 * a CA file or directory succeeds, for an IP address and a host name;
 * without the CA, with a self-signed certificate or one for another name
 * it fails with RT_ETLS and a clear reason; tls_skip_verify connects anyway;
 * a CA file that cannot be read fails rt_client_new(); large messages both
 * ways; a reconnect after the server restarts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

/* harness helpers this program has no use for */
static void *const unused_helpers[] __attribute__((unused)) = {
	(void *)h_count_jansson, (void *)h_pump_for, (void *)h_sql};

static struct h_server srv;
static char certs[160];
static char live_cert[200], live_key[200];

struct t_ctx {
	bool is_open, has_failed, joined, got_big, got_small;
	int n_open, n_reconnecting;
	int reason;
	char detail[300];
	size_t big_len;
};

static void on_state(void *user, const struct rt_client_state_event *ev)
{
	struct t_ctx *t = user;
	if (ev->state == RT_CLIENT_OPEN) {
		t->is_open = true;
		t->n_open++;
	} else if (ev->state == RT_CLIENT_RECONNECTING || ev->state == RT_CLIENT_CLOSED) {
		t->is_open = false;
		if (ev->state == RT_CLIENT_RECONNECTING)
			t->n_reconnecting++;
		if (ev->reason && !t->has_failed) {
			t->has_failed = true;
			t->reason = ev->reason;
			snprintf(t->detail, sizeof t->detail, "%s", ev->detail ? ev->detail : "");
		}
	}
}

static void on_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	((struct t_ctx *)user)->joined = st->state == RT_CHANNEL_JOINED;
}

static void on_broadcast(void *user, struct rt_client_channel *ch, const struct rt_broadcast *b)
{
	struct t_ctx *t = user;
	if (!strcmp(b->event, "big")) {
		t->got_big = true;
		t->big_len = strlen(b->payload);
	} else if (!strcmp(b->event, "small")) {
		t->got_small = true;
	}
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

/* Puts NAME.pem and NAME.key where the server reads its certificate, and
 * has it read them again. */
static void serve_cert(const char *name)
{
	sh("cp '%s/%s.pem' '%s' && cp '%s/%s.key' '%s'", certs, name, live_cert, certs, name,
	   live_key);
	h_server_signal(&srv, SIGHUP);
	usleep(300 * 1000); /* the reload runs on the server's main loop at once */
}

static int setup(void **state)
{
	const char *script = getenv("RTSYNC_CERTS_SH");
	snprintf(certs, sizeof certs, "/tmp/rtsync-tls-XXXXXX");
	if (!mkdtemp(certs))
		return -1;
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s' '%s'", script ? script : "tests/tls/make-certs.sh", certs);
	if (system(cmd))
		return -1;
	snprintf(live_cert, sizeof live_cert, "%s/live.pem", certs);
	snprintf(live_key, sizeof live_key, "%s/live.key", certs);
	snprintf(cmd, sizeof cmd, "cp '%s/server.pem' '%s' && cp '%s/server.key' '%s'", certs,
		 live_cert, certs, live_key);
	if (system(cmd))
		return -1;
	srv.args[0] = "--tls-cert";
	srv.args[1] = live_cert;
	srv.args[2] = "--tls-key";
	srv.args[3] = live_key;
	return h_server_start(&srv) || strncmp(srv.url, "https://", 8) ? -1 : 0;
}

static int teardown(void **state)
{
	int rc = h_server_stop(&srv);
	h_server_remove(&srv);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs);
	if (system(cmd)) {
	}
	return rc; /* non-zero: the server did not exit cleanly (a leak report) */
}

static char ca_file[200], ca_dir[200];

static const char *cert_path(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", certs, name);
	return buf;
}

/* Connects to url; returns once open or failed (first attempt only). */
static struct rt_client *try_connect(struct t_ctx *t, const char *url, const char *cafile,
				     const char *cadir, bool skip)
{
	memset(t, 0, sizeof *t);
	struct rt_client_options o = {
		.url = url,
		.apikey = h_token(3600),
		.on_state = on_state,
		.user = t,
		.reconnect_base_ms = 100,
		.tls_ca_file = cafile,
		.tls_ca_dir = cadir,
		.tls_skip_verify = skip,
	};
	struct rt_client *c;
	assert_int_equal(rt_client_new(&o, &c), 0);
	assert_int_equal(rt_client_connect(c), 0);
	int64_t end = h_now_ms() + 10000;
	while (!t->is_open && !t->has_failed && h_now_ms() < end)
		rt_client_run(c, 20);
	return c;
}

static void expect_open(const char *url, const char *cafile, const char *cadir, bool skip)
{
	struct t_ctx t;
	struct rt_client *c = try_connect(&t, url, cafile, cadir, skip);
	if (!t.is_open)
		fail_msg("%s did not open: %s", url, t.detail);
	rt_client_close(c);
	rt_client_run(c, 0);
	rt_client_free(c);
}

static void expect_tls_failure(const char *url, const char *cafile, const char *want)
{
	struct t_ctx t;
	struct rt_client *c = try_connect(&t, url, cafile, NULL, false);
	assert_false(t.is_open);
	assert_true(t.has_failed);
	assert_int_equal(t.reason, RT_ETLS);
	if (!strstr(t.detail, want))
		fail_msg("detail '%s' lacks '%s'", t.detail, want);
	rt_client_free(c);
}

static void wss_url(char *buf, size_t cap, const char *host)
{
	snprintf(buf, cap, "wss://%s:%d", host, srv.port);
}

static void test_verified_round_trip(void **state)
{
	cert_path(ca_file, sizeof ca_file, "ca.pem");
	struct t_ctx t;
	struct rt_client *c = try_connect(&t, srv.url, ca_file, NULL, false); /* https://127.0.0.1 */
	assert_true(t.is_open);
	struct rt_channel_options co = {
		.topic = "tls-room",
		.broadcast_self = true,
		.cb = {.on_status = on_status, .on_broadcast = on_broadcast},
		.user = &t,
	};
	struct rt_client_channel *ch;
	assert_int_equal(rt_channel_join(c, &co, &ch), 0);
	assert_true(h_pump_until(c, &t.joined, 10000));
	assert_int_equal(rt_channel_send(ch, "small", "{\"n\":1}", NULL), 0);
	assert_true(h_pump_until(c, &t.got_small, 10000));
	/* many TLS records each way */
	size_t n = 300 * 1000;
	char *big = malloc(n + 16);
	assert_non_null(big);
	memcpy(big, "{\"p\":\"", 6);
	memset(big + 6, 'x', n);
	strcpy(big + 6 + n, "\"}");
	assert_int_equal(rt_channel_send(ch, "big", big, NULL), 0);
	free(big);
	assert_true(h_pump_until(c, &t.got_big, 20000));
	assert_int_equal(t.big_len, n + 8);
	rt_client_close(c);
	rt_client_run(c, 0);
	rt_client_free(c);

	char url[64];
	wss_url(url, sizeof url, "localhost"); /* a host name: SNI and the DNS name checked */
	expect_open(url, ca_file, NULL, false);
	cert_path(ca_dir, sizeof ca_dir, "cadir");
	expect_open(url, NULL, ca_dir, false);
}

static void test_refused_without_the_ca(void **state)
{
	char url[64];
	wss_url(url, sizeof url, "127.0.0.1");
	expect_tls_failure(url, NULL, "certificate verify failed: unable to get local issuer certificate");
	char other_ca[200];
	expect_tls_failure(url, cert_path(other_ca, sizeof other_ca, "ca2.pem"),
			   "certificate verify failed");
	expect_open(url, NULL, NULL, true); /* tls_skip_verify */
}

static void test_bad_ca_file(void **state)
{
	struct rt_client_options o = {.url = srv.url, .apikey = "k", .tls_ca_file = "/nonexistent"};
	struct rt_client *c = NULL;
	assert_int_equal(rt_client_new(&o, &c), RT_ETLS);
	assert_null(c);
	char junk[200];
	sh("echo 'not a certificate' > '%s'", cert_path(junk, sizeof junk, "junk.pem"));
	o.tls_ca_file = junk;
	assert_int_equal(rt_client_new(&o, &c), RT_ETLS);
	/* a ws:// URL never loads them */
	o.url = "ws://127.0.0.1:1";
	assert_int_equal(rt_client_new(&o, &c), 0);
	rt_client_free(c);
	assert_string_equal(rt_err_name(RT_ETLS), "RT_ETLS");
}

static void test_self_signed_and_name_mismatch(void **state)
{
	char url[64], ca[200], self[200];
	cert_path(ca, sizeof ca, "ca.pem");
	wss_url(url, sizeof url, "localhost");
	serve_cert("self");
	expect_tls_failure(url, ca, "certificate verify failed: self-signed certificate");
	expect_open(url, cert_path(self, sizeof self, "self.pem"), NULL, false); /* trusted as itself */
	expect_open(url, NULL, NULL, true);
	serve_cert("other"); /* CA 1's, for elsewhere.invalid */
	expect_tls_failure(url, ca, "certificate verify failed: hostname mismatch");
	wss_url(url, sizeof url, "127.0.0.1");
	expect_tls_failure(url, ca, "certificate verify failed: IP address mismatch");
	expect_open(url, NULL, NULL, true);
	serve_cert("server");
	expect_open(url, ca, NULL, false);
}

static void test_reconnect_after_restart(void **state)
{
	char ca[200];
	struct t_ctx t;
	struct rt_client *c = try_connect(&t, srv.url, cert_path(ca, sizeof ca, "ca.pem"), NULL,
					  false);
	assert_true(t.is_open);
	struct rt_channel_options co = {
		.topic = "tls-restart",
		.broadcast_self = true,
		.cb = {.on_status = on_status, .on_broadcast = on_broadcast},
		.user = &t,
	};
	struct rt_client_channel *ch;
	assert_int_equal(rt_channel_join(c, &co, &ch), 0);
	assert_true(h_pump_until(c, &t.joined, 10000));
	h_server_kill(&srv);
	assert_int_equal(h_server_start(&srv), 0);
	int64_t end = h_now_ms() + 15000;
	while ((t.n_open < 2 || !t.joined) && h_now_ms() < end)
		rt_client_run(c, 20);
	assert_true(t.n_open >= 2);
	assert_true(t.joined);
	assert_int_equal(rt_channel_send(ch, "small", "{}", NULL), 0);
	assert_true(h_pump_until(c, &t.got_small, 10000));
	rt_client_close(c);
	rt_client_run(c, 0);
	rt_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verified_round_trip),
		cmocka_unit_test(test_refused_without_the_ca),
		cmocka_unit_test(test_bad_ca_file),
		cmocka_unit_test(test_self_signed_and_name_mismatch),
		cmocka_unit_test(test_reconnect_after_restart),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
