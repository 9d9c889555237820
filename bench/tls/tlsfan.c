/*
 * rttlsfan: the fan-out of `rtbench fanout` over wss:// or ws://, to measure
 * what TLS costs the server (bench/README.md, "TLS"). One thread, one epoll
 * loop: N subscribers join one topic (vsn 1.0.0, broadcast self false, no
 * ack), one publisher sends timestamped broadcasts of --payload bytes at
 * --rate per second for --duration seconds; every delivery's latency is
 * kept. Prints one JSON line: sent, expected, delivered, latency p50/p99/max,
 * the server's CPU over the publishing (from /proc/PID/stat) and this
 * program's. The same code path for both: with --tls every socket is an
 * OpenSSL connection (the setup's handshakes are blocking, then
 * non-blocking), without it plain recv/send.
 *
 *   rttlsfan --port P --apikey KEY [--tls] --server-pid PID [--subscribers 1000]
 *            [--rate 200] [--payload 100] [--duration 10]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/ws.h"

struct sock {
	int fd;
	SSL *ssl;
	struct rt_ws ws;
	bool joined;
	uint8_t *out;
	size_t out_len, out_cap;
};

static struct {
	int port;
	const char *apikey;
	bool tls;
	int server_pid;
	int n_subs, rate, payload, duration;
} o = {.n_subs = 1000, .rate = 200, .payload = 100, .duration = 10};

static SSL_CTX *ctx;
static uint32_t *lat_us;
static size_t n_lat, cap_lat;
static size_t n_joined;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "rttlsfan: %s: %s\n", what, errno ? strerror(errno) : "failed");
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void on_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t len)
{
	struct sock *s = user;
	const char *p = (const char *)data;
	if (!s->joined) {
		if (memmem(p, len, "phx_reply", 9) && memmem(p, len, "\"ok\"", 4)) {
			s->joined = true;
			n_joined++;
		}
		return;
	}
	const char *t = memmem(p, len, "\"t\":\"", 5);
	if (!t)
		return;
	uint64_t sent = strtoull(t + 5, NULL, 10), now = now_ns();
	if (n_lat == cap_lat) {
		cap_lat = cap_lat ? cap_lat * 2 : 1 << 20;
		lat_us = realloc(lat_us, cap_lat * sizeof *lat_us);
		if (!lat_us)
			die("realloc");
	}
	lat_us[n_lat++] = (uint32_t)((now - sent) / 1000);
}

static int on_output(void *user, const uint8_t *data, size_t len)
{
	struct sock *s = user;
	if (s->out_len + len > s->out_cap) {
		s->out_cap = (s->out_len + len) * 2;
		s->out = realloc(s->out, s->out_cap);
		if (!s->out)
			die("realloc");
	}
	memcpy(s->out + s->out_len, data, len);
	s->out_len += len;
	return 0;
}

static const struct rt_ws_callbacks cbs = {on_message, on_output};

static ssize_t sock_write(struct sock *s, const void *p, size_t n)
{
	if (!s->ssl)
		return send(s->fd, p, n, MSG_NOSIGNAL);
	size_t w = 0;
	if (SSL_write_ex(s->ssl, p, n, &w) == 1)
		return (ssize_t)w;
	int e = SSL_get_error(s->ssl, 0);
	errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EIO;
	return -1;
}

static ssize_t sock_read(struct sock *s, void *p, size_t n)
{
	if (!s->ssl)
		return recv(s->fd, p, n, 0);
	size_t r = 0;
	if (SSL_read_ex(s->ssl, p, n, &r) == 1)
		return (ssize_t)r;
	int e = SSL_get_error(s->ssl, 0);
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EIO;
	return -1;
}

static void flush(struct sock *s)
{
	size_t off = 0;
	while (off < s->out_len) {
		ssize_t n = sock_write(s, s->out + off, s->out_len - off);
		if (n <= 0) {
			if (errno == EAGAIN)
				break;
			die("write");
		}
		off += (size_t)n;
	}
	memmove(s->out, s->out + off, s->out_len - off);
	s->out_len -= off;
}

/* Connects, upgrades (blocking) and sends the join; the socket is then non-blocking. */
static void open_sock(struct sock *s)
{
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&a, sizeof a))
		die("connect");
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (o.tls) {
		s->ssl = SSL_new(ctx);
		SSL_set_fd(s->ssl, s->fd);
		if (SSL_connect(s->ssl) != 1)
			die("TLS handshake");
	}
	char req[1024];
	int n = snprintf(req, sizeof req,
			 "GET /realtime/v1/websocket?apikey=%s&vsn=1.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			 o.apikey);
	if (sock_write(s, req, (size_t)n) != n)
		die("upgrade request");
	char resp[2048];
	size_t got = 0;
	while (!memmem(resp, got, "\r\n\r\n", 4)) {
		ssize_t r = sock_read(s, resp + got, 1); /* nothing follows the 101 before the join */
		if (r <= 0 || ++got == sizeof resp)
			die("upgrade response");
	}
	if (strncmp(resp, "HTTP/1.1 101", 12))
		die("upgrade refused");
	rt_ws_init(&s->ws, RT_WS_CLIENT, &cbs, s, 1 << 20, NULL);
	static const char join[] =
		"{\"topic\":\"realtime:tlsfan\",\"event\":\"phx_join\",\"payload\":{\"config\":"
		"{\"broadcast\":{\"self\":false,\"ack\":false}}},\"ref\":\"1\",\"join_ref\":\"1\"}";
	rt_ws_send(&s->ws, RT_WS_TEXT, join, sizeof join - 1);
	flush(s);
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
}

static void read_sock(struct sock *s)
{
	static uint8_t buf[65536];
	for (;;) {
		ssize_t n = sock_read(s, buf, sizeof buf);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			die("connection lost");
		rt_ws_feed(&s->ws, buf, (size_t)n);
	}
}

static double cpu_s(int pid)
{
	if (pid <= 0) {
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	}
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(line, sizeof line, f))
		die("/proc/PID/stat");
	fclose(f);
	unsigned long ut, st;
	const char *p = strrchr(line, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		die("/proc/PID/stat");
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void loop_for(int ep, struct sock *socks, uint64_t until_ns, struct sock *pub,
		     uint64_t *next_pub, uint64_t *n_sent)
{
	static char msg[70000];
	struct epoll_event evs[256];
	for (;;) {
		uint64_t now = now_ns();
		if (now >= until_ns)
			return;
		if (pub && now >= *next_pub) {
			int n = snprintf(msg, sizeof msg,
					 "{\"topic\":\"realtime:tlsfan\",\"event\":\"broadcast\",\"payload\":"
					 "{\"type\":\"broadcast\",\"event\":\"b\",\"payload\":{\"t\":\"%020llu\","
					 "\"p\":\"",
					 (unsigned long long)now);
			int pad = o.payload - 32;
			for (int i = 0; i < (pad > 0 ? pad : 0); i++)
				msg[n++] = 'x';
			n += snprintf(msg + n, sizeof msg - (size_t)n, "\"}},\"ref\":null}");
			rt_ws_send(&pub->ws, RT_WS_TEXT, msg, (size_t)n);
			flush(pub);
			(*n_sent)++;
			*next_pub += 1000000000ull / (uint64_t)o.rate;
			continue;
		}
		uint64_t wake = pub && *next_pub < until_ns ? *next_pub : until_ns;
		int t = (int)((wake - now) / 1000000);
		int n = epoll_wait(ep, evs, 256, t);
		for (int i = 0; i < n; i++)
			read_sock(&socks[evs[i].data.u32]);
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"port", 1, NULL, 'P'},        {"apikey", 1, NULL, 'k'},  {"tls", 0, NULL, 'T'},
		{"server-pid", 1, NULL, 's'},  {"subscribers", 1, NULL, 'n'},
		{"rate", 1, NULL, 'r'},        {"payload", 1, NULL, 'p'}, {"duration", 1, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'P': o.port = atoi(optarg); break;
		case 'k': o.apikey = optarg; break;
		case 'T': o.tls = true; break;
		case 's': o.server_pid = atoi(optarg); break;
		case 'n': o.n_subs = atoi(optarg); break;
		case 'r': o.rate = atoi(optarg); break;
		case 'p': o.payload = atoi(optarg); break;
		case 'd': o.duration = atoi(optarg); break;
		default:
			fputs("usage: rttlsfan --port P --apikey KEY [--tls] [--server-pid PID]\n"
			      "       [--subscribers N] [--rate R] [--payload B] [--duration S]\n",
			      stderr);
			return 2;
		}
	}
	if (!o.port || !o.apikey || o.rate < 1 || o.payload > 65000)
		return fputs("rttlsfan: --port and --apikey are required\n", stderr), 2;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (o.tls) {
		/* the server's certificate is not what is measured: no verification */
		ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	int n = o.n_subs + 1; /* the last one publishes */
	struct sock *socks = calloc((size_t)n, sizeof *socks);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint64_t t0 = now_ns();
	for (int i = 0; i < n; i++) {
		open_sock(&socks[i]);
		struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
		epoll_ctl(ep, EPOLL_CTL_ADD, socks[i].fd, &e);
	}
	uint64_t zero = 0, sent = 0;
	for (uint64_t end = now_ns() + 30000000000ull; n_joined < (size_t)n && now_ns() < end;)
		loop_for(ep, socks, now_ns() + 100000000ull, NULL, &zero, &sent);
	if (n_joined < (size_t)n)
		return fprintf(stderr, "rttlsfan: %zu of %d joined\n", n_joined, n), 1;
	double setup_s = (double)(now_ns() - t0) / 1e9;
	double srv0 = cpu_s(o.server_pid), me0 = cpu_s(0);
	uint64_t start = now_ns(), next = start;
	loop_for(ep, socks, start + (uint64_t)o.duration * 1000000000ull, &socks[n - 1], &next, &sent);
	double srv1 = cpu_s(o.server_pid), me1 = cpu_s(0);
	uint64_t expected = sent * (uint64_t)o.n_subs;
	for (uint64_t end = now_ns() + 5000000000ull; n_lat < expected && now_ns() < end;)
		loop_for(ep, socks, now_ns() + 50000000ull, NULL, &zero, &sent);
	qsort(lat_us, n_lat, sizeof *lat_us, cmp_u32);
#define PCT(p) (n_lat ? lat_us[(size_t)((double)(n_lat - 1) * (p))] / 1000.0 : -1.0)
	printf("{\"tls\":%s,\"subscribers\":%d,\"rate\":%d,\"payload\":%d,\"duration_s\":%d,"
	       "\"setup_s\":%.2f,\"sent\":%llu,\"expected\":%llu,\"delivered\":%zu,"
	       "\"deliveries_per_s\":%.0f,\"latency_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
	       "\"server_cpu_pct\":%.1f,\"client_cpu_pct\":%.1f}\n",
	       o.tls ? "true" : "false", o.n_subs, o.rate, o.payload, o.duration, setup_s,
	       (unsigned long long)sent, (unsigned long long)expected, n_lat,
	       (double)n_lat / o.duration, PCT(0.5), PCT(0.99), PCT(1.0),
	       o.server_pid > 0 ? (srv1 - srv0) * 100.0 / o.duration : -1.0,
	       (me1 - me0) * 100.0 / o.duration);
	for (int i = 0; i < n; i++) {
		SSL_free(socks[i].ssl);
		close(socks[i].fd);
		rt_ws_deinit(&socks[i].ws);
		free(socks[i].out);
	}
	free(socks);
	free(lat_us);
	SSL_CTX_free(ctx);
	close(ep);
	return 0;
}
