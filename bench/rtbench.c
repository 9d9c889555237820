/*
 * rtbench: a load generator for rtsync (and any Supabase Realtime-compatible
 * server speaking Phoenix Channels vsn 2.0.0). Thousands of WebSocket client
 * connections from one process, one libuv loop per thread; each scenario runs
 * for a bounded time and prints exactly one JSON line of results on stdout.
 *
 *   fanout  N subscribers over T topics, one publisher socket per 100 topics
 *           sending timestamped broadcasts at a fixed rate (open loop); the
 *           subscribers measure delivery latency, deliveries and losses.
 *   idle    N sockets, each joined to one topic, held open (heartbeats only);
 *           server RSS before/after and per connection.
 *
 * Client frames are masked and written with wslay's frame API; server frames
 * are parsed with it too. Connections are set up in a bounded window (the
 * server's listen backlog is finite); failures are counted by reason, never
 * fatal.
 *
 * Ownership: every connection lives in its worker's array; its handle and
 *            buffers are released from libuv's close callback.
 * Threads:   the main thread starts the workers, watches shared atomics, reads
 *            /proc for the server and prints the result; each worker owns one
 *            loop and its connections and shares nothing else but atomics.
 * Limits:    connections ≤ the open-files limit minus 64; topics ≤ 10000;
 *            payload ≤ 1 MB; a received message ≤ 4 MiB; every loop bounded.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "common/clock.h"
#include "net/ws.h"

#define TICK_MS 10
#define PUB_TICK_MS 1
#define MAX_TOPICS 10000
#define TOPICS_PER_PUB 100   /* the server's default --max-channels */
#define MAX_PAYLOAD 1000000
#define MAX_MSG (4u << 20)   /* largest server message reassembled */
#define PUB_MAX_OUT (8u << 20) /* publisher output not yet taken by the kernel */
#define HS_MAX 4096          /* handshake response headers */
#define RBUF_SIZE (64 * 1024)
#define FD_SLACK 64
#define STAMP_LEN 20         /* zero-padded decimal digits of t and s */

enum scenario { SC_FANOUT, SC_IDLE };
enum encoding { ENC_JSON, ENC_BINARY, ENC_TEXT };

struct opts {
	enum scenario scenario;
	char host[256];
	int port;
	char path[512];
	const char *apikey;
	long subscribers, topics, rate, payload, connections, threads, batch, heartbeat_s;
	long server_pid;
	double duration_s, drain_s, setup_timeout_s;
	enum encoding encoding;
};

/* Log-bucketed histogram of nanosecond values (HDR style): exact below 128,
 * then 64 sub-buckets per power of two, so every value is within 1/64. */
#define HIST_LINEAR 128
#define HIST_SUB 64
#define HIST_N (HIST_LINEAR + (64 - 7) * HIST_SUB)

struct hist {
	uint64_t count[HIST_N];
	uint64_t n, max, sum;
};

enum conn_state { CS_NEW, CS_CONNECTING, CS_HANDSHAKE, CS_JOINING, CS_OPEN, CS_CLOSING, CS_CLOSED };

enum fail_reason {
	F_CONNECT,       /* TCP connect failed */
	F_HANDSHAKE,     /* no 101, bad accept key, or closed during the upgrade */
	F_JOIN,          /* join refused or closed before the reply */
	F_PROTOCOL,      /* malformed frames from the server, or a message too large */
	F_SETUP_TIMEOUT, /* not joined within --setup-timeout */
	F_CLOSED,        /* joined, then closed by the server before the end */
	F_NOMEM,
	F_COUNT
};
static const char *const fail_names[F_COUNT] = {"connect", "handshake",     "join",  "protocol",
						"setup_timeout", "closed", "nomem"};

struct worker;

struct conn {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	struct worker *w;
	wslay_frame_context_ptr fr;
	uint8_t state;
	bool is_pub;
	bool is_writing;
	uint8_t msg_op;
	uint8_t ctl_len;
	uint16_t joins_pending;
	uint32_t topic;    /* subscriber: its topic; publisher: its first topic */
	uint32_t n_topics; /* publisher: topics it joins */
	char accept[29];   /* expected Sec-WebSocket-Accept */
	char *hs;          /* handshake response being read */
	size_t hs_len;
	const uint8_t *in; /* bytes being fed to wslay */
	size_t in_len;
	uint8_t *msg;      /* data message being reassembled */
	size_t msg_len, msg_cap;
	uint64_t frame_got; /* payload bytes of the current frame seen so far */
	uint8_t ctl[125];
	uint8_t *out;      /* bytes not yet handed to the kernel */
	size_t out_len, out_cap;
	uint64_t last_seq;
	uint32_t next_ref;
};

struct write_req {
	uv_write_t req;
	struct conn *c;
	uint8_t *data;
};

enum phase { PH_SETUP, PH_READY, PH_RUN, PH_DONE };

struct run;

struct worker {
	struct run *run;
	int id;
	uv_loop_t loop;
	uv_timer_t tick, pub_timer;
	pthread_t thread;
	enum phase phase;
	struct conn *conns;
	size_t n_conns, n_pub; /* conns[0..n_pub) are publishers (worker 0 only) */
	size_t next_open, n_inflight, n_settled, n_open, batch;
	size_t n_joined;   /* connections that ever reached CS_OPEN */
	size_t n_pub_open; /* publishers open when setup ended */
	bool is_opening;
	size_t hb_cursor;
	uint64_t setup_deadline_ns;
	uint64_t rng;
	uint64_t *joined_per_topic;
	struct hist hist;
	uint64_t delivered, reordered, other_msgs, bad_msgs;
	_Atomic uint64_t delivered_shared;
	uint64_t fail[F_COUNT];
	char first_error[160];
	/* publisher (worker 0, fanout) */
	uint64_t pub_t0, pub_end, pub_attempted, pub_sent, pub_skipped, pub_seq;
	uint64_t *sent_per_topic;
	uint8_t *payload;
	size_t payload_len;
	uint8_t rbuf[RBUF_SIZE];
};

struct run {
	struct opts o;
	struct sockaddr_storage addr;
	char host_header[300];
	char topic_prefix[64];
	int n_workers;
	struct worker **workers;
	_Atomic int n_ready;
	_Atomic int go;
	_Atomic int pub_done;
	_Atomic int stop;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void set_error(struct worker *w, const char *what, const char *detail)
{
	if (!w->first_error[0])
		snprintf(w->first_error, sizeof w->first_error, "%s: %s", what, detail);
}

static void put_digits(uint8_t *p, uint64_t v)
{
	for (int i = STAMP_LEN - 1; i >= 0; i--, v /= 10)
		p[i] = (uint8_t)('0' + v % 10);
}

static bool get_digits(const uint8_t *p, size_t avail, uint64_t *out)
{
	if (avail < STAMP_LEN)
		return false;
	uint64_t v = 0;
	for (int i = 0; i < STAMP_LEN; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return true;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* ---- histogram ---------------------------------------------------------- */

static size_t hist_index(uint64_t v)
{
	if (v < HIST_LINEAR)
		return (size_t)v;
	int e = 63 - __builtin_clzll(v); /* >= 7 */
	return HIST_LINEAR + (size_t)(e - 7) * HIST_SUB + (size_t)((v >> (e - 6)) - HIST_SUB);
}

static uint64_t hist_upper(size_t i)
{
	if (i < HIST_LINEAR)
		return i;
	size_t e = (i - HIST_LINEAR) / HIST_SUB + 7, m = (i - HIST_LINEAR) % HIST_SUB + HIST_SUB;
	if (e >= 63 - 1)
		return UINT64_MAX;
	return ((uint64_t)(m + 1) << (e - 6)) - 1;
}

static void hist_record(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *from)
{
	for (size_t i = 0; i < HIST_N; i++)
		into->count[i] += from->count[i];
	into->n += from->n;
	into->sum += from->sum;
	if (from->max > into->max)
		into->max = from->max;
}

/* The value at quantile q (0..1]: the top of its bucket, never above max. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
	if (!h->n)
		return 0;
	uint64_t target = (uint64_t)(q * (double)h->n + 0.999999), seen = 0;
	if (target < 1)
		target = 1;
	for (size_t i = 0; i < HIST_N; i++) {
		seen += h->count[i];
		if (seen >= target) {
			uint64_t v = hist_upper(i);
			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}

/* ---- /proc ---------------------------------------------------------------- */

/* Server CPU (user + system) in seconds, or -1. */
static double proc_cpu_s(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS in kB ("self" or a pid), or -1. */
static long proc_rss_kb(long pid)
{
	char path[64], line[256];
	if (pid > 0)
		snprintf(path, sizeof path, "/proc/%ld/status", pid);
	else
		snprintf(path, sizeof path, "/proc/self/status");
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long kb = -1;
	for (int i = 0; i < 100 && fgets(line, sizeof line, f); i++)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static double rusage_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- output -------------------------------------------------------------- */

static void conn_close(struct conn *c);
static void conn_fail(struct conn *c, enum fail_reason why);
static void open_more(struct worker *w);
static void flush_conn(struct conn *c);

static ssize_t on_wslay_send(const uint8_t *data, size_t len, int flags, void *user)
{
	struct conn *c = user;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 512;
		while (cap < c->out_len + len)
			cap *= 2;
		uint8_t *p = realloc(c->out, cap);
		if (!p)
			return 0; /* wslay reports WANT_WRITE; the caller counts it */
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return (ssize_t)len;
}

static ssize_t on_wslay_recv(uint8_t *buf, size_t len, int flags, void *user)
{
	struct conn *c = user;
	size_t n = c->in_len < len ? c->in_len : len;
	memcpy(buf, c->in, n);
	c->in += n;
	c->in_len -= n;
	return (ssize_t)n;
}

static int on_wslay_genmask(uint8_t *buf, size_t len, void *user)
{
	struct conn *c = user;
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)xorshift(&c->w->rng);
	return 0;
}

static const struct wslay_frame_callbacks frame_cbs = {on_wslay_send, on_wslay_recv,
						       on_wslay_genmask};

/* Queues one masked frame whose payload is the concatenation of parts.
 * Returns false when it could not be queued. */
static bool send_frame(struct conn *c, uint8_t opcode, const struct iovec *parts, size_t n_parts)
{
	size_t total = 0;
	for (size_t i = 0; i < n_parts; i++)
		total += parts[i].iov_len;
	for (size_t i = 0; i < n_parts; i++) {
		struct wslay_frame_iocb io = {
			.fin = 1,
			.opcode = opcode,
			.mask = 1,
			.payload_length = total,
			.data = parts[i].iov_base,
			.data_length = parts[i].iov_len,
		};
		if (wslay_frame_send(c->fr, &io) != (ssize_t)parts[i].iov_len) {
			conn_fail(c, F_NOMEM);
			return false;
		}
	}
	return true;
}

static bool send_text(struct conn *c, const char *text, size_t len)
{
	struct iovec part = {(void *)text, len};
	return send_frame(c, WSLAY_TEXT_FRAME, &part, 1);
}

static void on_write(uv_write_t *req, int status)
{
	struct write_req *wr = (struct write_req *)req;
	struct conn *c = wr->c;
	free(wr->data);
	free(wr);
	c->is_writing = false;
	if (status == UV_ECANCELED || c->state >= CS_CLOSING)
		return;
	if (status < 0) {
		set_error(c->w, "write", uv_strerror(status));
		conn_fail(c, c->state == CS_OPEN ? F_CLOSED : F_HANDSHAKE);
		return;
	}
	flush_conn(c);
}

/* Writes what the kernel takes now; the rest goes to one uv_write, and the
 * buffer starts afresh behind it. */
static void flush_conn(struct conn *c)
{
	if (c->is_writing || !c->out_len || c->state < CS_HANDSHAKE || c->state >= CS_CLOSING)
		return;
	uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n == UV_EAGAIN)
		n = 0;
	if (n < 0) {
		set_error(c->w, "write", uv_strerror(n));
		conn_fail(c, c->state == CS_OPEN ? F_CLOSED : F_HANDSHAKE);
		return;
	}
	if ((size_t)n == c->out_len) {
		c->out_len = 0;
		return;
	}
	struct write_req *wr = malloc(sizeof *wr);
	if (!wr) {
		conn_fail(c, F_NOMEM);
		return;
	}
	memmove(c->out, c->out + n, c->out_len - (size_t)n);
	wr->c = c;
	wr->data = c->out;
	b = uv_buf_init((char *)c->out, (unsigned)(c->out_len - (size_t)n));
	c->out = NULL;
	c->out_len = c->out_cap = 0;
	c->is_writing = true;
	int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rc) {
		free(wr->data);
		free(wr);
		c->is_writing = false;
		set_error(c->w, "write", uv_strerror(rc));
		conn_fail(c, c->state == CS_OPEN ? F_CLOSED : F_HANDSHAKE);
	}
}

/* ---- connection lifecycle ----------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	wslay_frame_context_free(c->fr);
	c->fr = NULL;
	free(c->hs);
	free(c->msg);
	free(c->out);
	c->hs = NULL;
	c->msg = NULL;
	c->out = NULL;
	c->hs_len = c->msg_len = c->msg_cap = c->out_len = c->out_cap = 0;
	c->state = CS_CLOSED;
}

static bool is_setting_up(const struct conn *c)
{
	return c->state >= CS_CONNECTING && c->state <= CS_JOINING;
}

/* Closes without counting (the end of the run). */
static void conn_close(struct conn *c)
{
	struct worker *w = c->w;
	if (c->state >= CS_CLOSING)
		return;
	if (c->state == CS_NEW) {
		c->state = CS_CLOSED;
		return;
	}
	if (is_setting_up(c)) {
		w->n_inflight--;
		w->n_settled++;
	} else if (c->state == CS_OPEN) {
		w->n_open--;
	}
	c->state = CS_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void conn_fail(struct conn *c, enum fail_reason why)
{
	struct worker *w = c->w;
	if (c->state >= CS_CLOSING)
		return;
	bool was_setup = is_setting_up(c) || c->state == CS_NEW;
	w->fail[why]++;
	if (c->state == CS_NEW) {
		c->state = CS_CLOSED;
		w->n_settled++;
		return;
	}
	conn_close(c);
	if (was_setup)
		open_more(w);
}

/* A socket error or EOF: counted by the stage the connection was in. */
static void conn_lost(struct conn *c, int status)
{
	static const enum fail_reason by_state[] = {
		[CS_CONNECTING] = F_CONNECT, [CS_HANDSHAKE] = F_HANDSHAKE,
		[CS_JOINING] = F_JOIN,       [CS_OPEN] = F_CLOSED,
	};
	if (c->state < CS_CONNECTING || c->state > CS_OPEN)
		return;
	set_error(c->w, "socket", uv_strerror(status));
	conn_fail(c, by_state[c->state]);
}

static void conn_opened(struct conn *c)
{
	struct worker *w = c->w;
	c->state = CS_OPEN;
	w->n_inflight--;
	w->n_settled++;
	w->n_open++;
	w->n_joined++;
	if (!c->is_pub)
		w->joined_per_topic[c->topic]++;
	open_more(w);
}

static void send_joins(struct conn *c)
{
	struct run *r = c->w->run;
	char buf[512];
	for (uint32_t i = 0; i < c->n_topics; i++) {
		uint32_t ref = ++c->next_ref;
		int n = snprintf(buf, sizeof buf,
				 "[\"%u\",\"%u\",\"realtime:%s%u\",\"phx_join\",{\"config\":{"
				 "\"broadcast\":{\"ack\":false,\"self\":false},\"presence\":{\"key\":\"\","
				 "\"enabled\":false},\"postgres_changes\":[],\"private\":false}}]",
				 ref, ref, r->topic_prefix, c->topic + i);
		if (!send_text(c, buf, (size_t)n))
			return;
	}
	c->joins_pending = (uint16_t)c->n_topics;
	flush_conn(c);
}

static void send_heartbeat(struct conn *c)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "[null,\"%u\",\"phoenix\",\"heartbeat\",{}]", ++c->next_ref);
	if (send_text(c, buf, (size_t)n))
		flush_conn(c);
}

/* ---- receiving ------------------------------------------------------------ */

static void record_delivery(struct conn *c, const uint8_t *p, size_t len)
{
	struct worker *w = c->w;
	uint64_t t, seq;
	/* Fast path: the payload is forwarded verbatim (binary kinds). */
	bool ok = len >= 6 + STAMP_LEN + 7 + STAMP_LEN && !memcmp(p, "{\"t\":\"", 6) &&
		  !memcmp(p + 6 + STAMP_LEN, "\",\"s\":\"", 7) && get_digits(p + 6, len - 6, &t) &&
		  get_digits(p + 13 + STAMP_LEN, len - 13 - STAMP_LEN, &seq);
	if (!ok) {
		const uint8_t *pt = memmem(p, len, "\"t\":\"", 5), *ps = memmem(p, len, "\"s\":\"", 5);
		ok = pt && ps && get_digits(pt + 5, len - (size_t)(pt + 5 - p), &t) &&
		     get_digits(ps + 5, len - (size_t)(ps + 5 - p), &seq);
	}
	if (!ok) {
		w->bad_msgs++;
		return;
	}
	uint64_t now = rt_mono_ns();
	hist_record(&w->hist, now > t ? now - t : 0);
	w->delivered++;
	if (seq <= c->last_seq)
		w->reordered++;
	c->last_seq = seq;
}

static void handle_join_reply(struct conn *c, const uint8_t *data, size_t len)
{
	json_t *m = json_loadb((const char *)data, len, 0, NULL);
	const char *ev = json_string_value(json_array_get(m, 3));
	const char *ref = json_string_value(json_array_get(m, 1));
	json_t *payload = json_array_get(m, 4);
	if (!ev || !ref || strcmp(ev, "phx_reply") || !json_is_object(payload)) {
		c->w->other_msgs++;
		goto out;
	}
	const char *status = json_string_value(json_object_get(payload, "status"));
	if (status && !strcmp(status, "ok")) {
		if (c->joins_pending && --c->joins_pending == 0)
			conn_opened(c);
		goto out;
	}
	char *resp = json_dumps(json_object_get(payload, "response"), JSON_COMPACT | JSON_ENCODE_ANY);
	set_error(c->w, "join", resp ? resp : "?");
	free(resp);
	conn_fail(c, F_JOIN);
out:
	json_decref(m);
}

static void handle_message(struct conn *c, uint8_t op, const uint8_t *data, size_t len)
{
	struct worker *w = c->w;
	if (op == WSLAY_BINARY_FRAME) {
		/* kind 4: kind, topic_len, event_len, meta_len, encoding */
		if (len >= 5 && data[0] == 4) {
			size_t off = 5 + (size_t)data[1] + data[2] + data[3];
			if (off <= len) {
				record_delivery(c, data + off, len - off);
				return;
			}
		}
		w->other_msgs++;
	} else if (op == WSLAY_TEXT_FRAME) {
		if (c->state == CS_JOINING)
			handle_join_reply(c, data, len);
		else if (len > 40 && memmem(data, len < 300 ? len : 300, "\",\"broadcast\",", 14))
			record_delivery(c, data, len);
		else
			w->other_msgs++;
	}
}

static void handle_control(struct conn *c, uint8_t op, const uint8_t *data, size_t len)
{
	if (op == WSLAY_CONNECTION_CLOSE) {
		char why[140];
		unsigned code = len >= 2 ? (unsigned)(data[0] << 8 | data[1]) : 0;
		int n = len > 2 ? (int)(len - 2 < 120 ? len - 2 : 120) : 0;
		snprintf(why, sizeof why, "%u %.*s", code, n, len > 2 ? (const char *)data + 2 : "");
		set_error(c->w, "server close", why);
		conn_lost(c, UV_EOF);
	} else if (op == WSLAY_PING) {
		struct iovec part = {(void *)data, len};
		if (send_frame(c, WSLAY_PONG, &part, 1))
			flush_conn(c);
	}
}

static void on_chunk(struct conn *c, const struct wslay_frame_iocb *io)
{
	if (wslay_is_ctrl_frame(io->opcode)) {
		/* wslay refuses control frames over 125 bytes or fragmented */
		memcpy(c->ctl + c->ctl_len, io->data, io->data_length);
		c->ctl_len = (uint8_t)(c->ctl_len + io->data_length);
		c->frame_got += io->data_length;
		if (c->frame_got == io->payload_length) {
			c->frame_got = 0;
			uint8_t n = c->ctl_len;
			c->ctl_len = 0;
			handle_control(c, io->opcode, c->ctl, n);
		}
		return;
	}
	if (io->opcode != WSLAY_CONTINUATION_FRAME)
		c->msg_op = io->opcode;
	if (c->frame_got == 0 && c->msg_len == 0 && io->fin && io->data_length == io->payload_length) {
		handle_message(c, c->msg_op, io->data, io->data_length);
		return;
	}
	if (c->msg_len + io->data_length > MAX_MSG) {
		set_error(c->w, "protocol", "server message over 4 MiB");
		conn_fail(c, F_PROTOCOL);
		return;
	}
	if (c->msg_len + io->data_length > c->msg_cap) {
		size_t cap = c->msg_cap ? c->msg_cap : 1024;
		while (cap < c->msg_len + io->data_length)
			cap *= 2;
		uint8_t *p = realloc(c->msg, cap);
		if (!p) {
			conn_fail(c, F_NOMEM);
			return;
		}
		c->msg = p;
		c->msg_cap = cap;
	}
	memcpy(c->msg + c->msg_len, io->data, io->data_length);
	c->msg_len += io->data_length;
	c->frame_got += io->data_length;
	if (c->frame_got == io->payload_length) {
		c->frame_got = 0;
		if (io->fin) {
			size_t n = c->msg_len;
			c->msg_len = 0;
			handle_message(c, c->msg_op, c->msg, n);
		}
	}
}

static void feed_ws(struct conn *c, const uint8_t *data, size_t len)
{
	c->in = data;
	c->in_len = len;
	/* Each round consumes at least one byte of input or of wslay's buffer. */
	for (size_t guard = len + HS_MAX + 4096 + 4; guard > 0 && c->state < CS_CLOSING; guard--) {
		struct wslay_frame_iocb io;
		ssize_t r = wslay_frame_recv(c->fr, &io);
		if (r == WSLAY_ERR_WANT_READ)
			break;
		if (r < 0) {
			set_error(c->w, "protocol", "malformed frame from server");
			conn_fail(c, F_PROTOCOL);
			break;
		}
		on_chunk(c, &io);
	}
	c->in = NULL;
	c->in_len = 0;
}

static void feed_handshake(struct conn *c, const uint8_t *data, size_t len)
{
	if (!c->hs && !(c->hs = malloc(HS_MAX + 1))) {
		conn_fail(c, F_NOMEM);
		return;
	}
	if (c->hs_len + len > HS_MAX) {
		set_error(c->w, "handshake", "response headers over 4 KiB");
		conn_fail(c, F_HANDSHAKE);
		return;
	}
	memcpy(c->hs + c->hs_len, data, len);
	c->hs_len += len;
	c->hs[c->hs_len] = '\0';
	char *end = memmem(c->hs, c->hs_len, "\r\n\r\n", 4);
	if (!end)
		return;
	*end = '\0';
	const char *acc = strcasestr(c->hs, "\r\nsec-websocket-accept:");
	if (acc) {
		acc += 23;
		while (*acc == ' ')
			acc++;
	}
	if (strncmp(c->hs, "HTTP/1.1 101", 12) || !acc || strncmp(acc, c->accept, 28)) {
		char *eol = strstr(c->hs, "\r\n");
		if (eol)
			*eol = '\0';
		set_error(c->w, "handshake", c->hs);
		conn_fail(c, F_HANDSHAKE);
		return;
	}
	char *hs = c->hs;
	size_t rest_off = (size_t)(end + 4 - hs), rest_len = c->hs_len - rest_off;
	c->hs = NULL;
	c->hs_len = 0;
	c->state = CS_JOINING;
	send_joins(c);
	if (rest_len && c->state == CS_JOINING)
		feed_ws(c, (const uint8_t *)hs + rest_off, rest_len);
	free(hs);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	*buf = uv_buf_init((char *)c->w->rbuf, RBUF_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	if (nread == 0 || c->state >= CS_CLOSING)
		return;
	if (nread < 0) {
		conn_lost(c, (int)nread);
		return;
	}
	if (c->state == CS_HANDSHAKE)
		feed_handshake(c, (const uint8_t *)buf->base, (size_t)nread);
	else
		feed_ws(c, (const uint8_t *)buf->base, (size_t)nread);
	atomic_store_explicit(&c->w->delivered_shared, c->w->delivered, memory_order_relaxed);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->handle->data;
	struct run *r = c->w->run;
	if (status == UV_ECANCELED || c->state != CS_CONNECTING)
		return;
	if (status < 0) {
		set_error(c->w, "connect", uv_strerror(status));
		conn_fail(c, F_CONNECT);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (wslay_frame_context_init(&c->fr, &frame_cbs, c)) {
		conn_fail(c, F_NOMEM);
		return;
	}
	uint8_t raw[16];
	char key[32];
	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (uint8_t)xorshift(&c->w->rng);
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
	rt_ws_accept_key(key, strlen(key), c->accept);
	char req_buf[2048];
	int n = snprintf(req_buf, sizeof req_buf,
			 "GET %s?apikey=%s&vsn=2.0.0 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
			 "User-Agent: rtbench\r\n\r\n",
			 r->o.path, r->o.apikey, r->host_header, key);
	if (n < 0 || (size_t)n >= sizeof req_buf) {
		set_error(c->w, "handshake", "request too long");
		conn_fail(c, F_HANDSHAKE);
		return;
	}
	c->state = CS_HANDSHAKE;
	if (on_wslay_send((const uint8_t *)req_buf, (size_t)n, 0, c) != n) {
		conn_fail(c, F_NOMEM);
		return;
	}
	int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc) {
		set_error(c->w, "read", uv_strerror(rc));
		conn_fail(c, F_HANDSHAKE);
		return;
	}
	flush_conn(c);
}

static void conn_start(struct conn *c)
{
	struct worker *w = c->w;
	int rc = uv_tcp_init(&w->loop, &c->tcp);
	if (rc) {
		set_error(w, "socket", uv_strerror(rc));
		conn_fail(c, F_CONNECT);
		return;
	}
	c->tcp.data = c;
	c->state = CS_CONNECTING;
	w->n_inflight++;
	rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&w->run->addr,
			    on_connect);
	if (rc) {
		set_error(w, "connect", uv_strerror(rc));
		conn_fail(c, F_CONNECT);
	}
}

/* Keeps up to w->batch connections in setup at once. */
static void open_more(struct worker *w)
{
	if (w->is_opening || w->phase != PH_SETUP)
		return;
	w->is_opening = true;
	while (w->n_inflight < w->batch && w->next_open < w->n_conns)
		conn_start(&w->conns[w->next_open++]);
	w->is_opening = false;
}

/* ---- publisher ------------------------------------------------------------ */

static void finish_publishing(struct worker *w)
{
	uv_timer_stop(&w->pub_timer);
	atomic_store_explicit(&w->run->pub_done, 1, memory_order_release);
}

static void publish_one(struct worker *w, uint32_t topic)
{
	struct run *r = w->run;
	struct conn *c = &w->conns[topic / TOPICS_PER_PUB];
	if (c->state != CS_OPEN || c->out_len > PUB_MAX_OUT) {
		w->pub_skipped++;
		return;
	}
	char head[600];
	uint32_t jr = topic % TOPICS_PER_PUB + 1;
	size_t hl;
	struct iovec parts[3];
	size_t n_parts;
	put_digits(w->payload + 6, rt_mono_ns());
	put_digits(w->payload + 13 + STAMP_LEN, ++w->pub_seq);
	if (r->o.encoding == ENC_TEXT) {
		hl = (size_t)snprintf(head, sizeof head,
				      "[\"%u\",null,\"realtime:%s%u\",\"broadcast\",{\"type\":\"broadcast\","
				      "\"event\":\"bench\",\"payload\":",
				      jr, r->topic_prefix, topic);
		parts[0] = (struct iovec){head, hl};
		parts[1] = (struct iovec){w->payload, w->payload_len};
		parts[2] = (struct iovec){(void *)"}]", 2};
		n_parts = 3;
	} else {
		/* kind 3: kind, join_ref_len, ref_len, topic_len, event_len, meta_len, encoding */
		char jrs[16], topic_s[300];
		int jl = snprintf(jrs, sizeof jrs, "%u", jr);
		int tl = snprintf(topic_s, sizeof topic_s, "realtime:%s%u", r->topic_prefix, topic);
		head[0] = 3;
		head[1] = (char)jl;
		head[2] = 0;
		head[3] = (char)tl;
		head[4] = 5;
		head[5] = 0;
		head[6] = r->o.encoding == ENC_JSON ? 1 : 0;
		memcpy(head + 7, jrs, (size_t)jl);
		memcpy(head + 7 + jl, topic_s, (size_t)tl);
		memcpy(head + 7 + jl + tl, "bench", 5);
		hl = 7 + (size_t)jl + (size_t)tl + 5;
		parts[0] = (struct iovec){head, hl};
		parts[1] = (struct iovec){w->payload, w->payload_len};
		n_parts = 2;
	}
	if (send_frame(c, r->o.encoding == ENC_TEXT ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME, parts,
		       n_parts)) {
		w->pub_sent++;
		w->sent_per_topic[topic]++;
	} else {
		w->pub_skipped++;
	}
}

/* Open loop: sends what the schedule says is due, whatever the server does. */
static void on_pub_timer(uv_timer_t *t)
{
	struct worker *w = t->data;
	struct run *r = w->run;
	uint64_t now = rt_mono_ns();
	if (atomic_load(&r->stop)) {
		finish_publishing(w);
		return;
	}
	uint64_t until = now < w->pub_end ? now : w->pub_end;
	uint64_t due = (uint64_t)((double)(until - w->pub_t0) * (double)r->o.rate / 1e9);
	uint64_t n = due > w->pub_attempted ? due - w->pub_attempted : 0;
	if (n > (uint64_t)r->o.rate) { /* more than a second behind: skip, never burst */
		w->pub_skipped += n - (uint64_t)r->o.rate;
		w->pub_attempted += n - (uint64_t)r->o.rate;
		n = (uint64_t)r->o.rate;
	}
	for (uint64_t i = 0; i < n; i++, w->pub_attempted++)
		publish_one(w, (uint32_t)(w->pub_attempted % (uint64_t)r->o.topics));
	for (size_t i = 0; i < w->n_pub; i++)
		flush_conn(&w->conns[i]);
	if (now >= w->pub_end)
		finish_publishing(w);
}

static void start_publishing(struct worker *w)
{
	w->pub_t0 = rt_mono_ns();
	w->pub_end = w->pub_t0 + (uint64_t)(w->run->o.duration_s * 1e9);
	uv_timer_start(&w->pub_timer, on_pub_timer, PUB_TICK_MS, PUB_TICK_MS);
}

/* ---- worker --------------------------------------------------------------- */

static void close_everything(struct worker *w)
{
	w->phase = PH_DONE;
	for (size_t i = 0; i < w->n_conns; i++)
		conn_close(&w->conns[i]);
	uv_close((uv_handle_t *)&w->tick, NULL);
	uv_close((uv_handle_t *)&w->pub_timer, NULL);
}

/* Heartbeats every --heartbeat seconds, spread over the ticks. */
static void send_heartbeats(struct worker *w)
{
	long hb_ms = w->run->o.heartbeat_s * 1000;
	if (hb_ms <= 0 || !w->n_conns)
		return;
	size_t k = w->n_conns * TICK_MS / (size_t)hb_ms + 1;
	for (size_t i = 0; i < k && i < w->n_conns; i++) {
		struct conn *c = &w->conns[w->hb_cursor];
		w->hb_cursor = (w->hb_cursor + 1) % w->n_conns;
		if (c->state == CS_OPEN)
			send_heartbeat(c);
	}
}

static void on_tick(uv_timer_t *t)
{
	struct worker *w = t->data;
	struct run *r = w->run;
	if (atomic_load(&r->stop)) {
		close_everything(w);
		return;
	}
	switch (w->phase) {
	case PH_SETUP:
		if (rt_mono_ns() > w->setup_deadline_ns) {
			set_error(w, "setup", "timed out");
			for (size_t i = 0; i < w->n_conns; i++)
				if (is_setting_up(&w->conns[i]) || w->conns[i].state == CS_NEW)
					conn_fail(&w->conns[i], F_SETUP_TIMEOUT);
		}
		open_more(w);
		if (w->n_settled >= w->n_conns) {
			w->phase = PH_READY;
			for (size_t i = 0; i < w->n_pub; i++)
				w->n_pub_open += w->conns[i].state == CS_OPEN;
			atomic_fetch_add_explicit(&r->n_ready, 1, memory_order_release);
		}
		break;
	case PH_READY:
		if (atomic_load_explicit(&r->go, memory_order_acquire)) {
			w->phase = PH_RUN;
			if (w->n_pub)
				start_publishing(w);
		}
		break;
	case PH_RUN:
	case PH_DONE:
		break;
	}
	send_heartbeats(w);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->setup_deadline_ns = rt_mono_ns() + (uint64_t)(w->run->o.setup_timeout_s * 1e9);
	uv_timer_start(&w->tick, on_tick, 0, TICK_MS);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	return NULL;
}

static struct worker *worker_new(struct run *r, int id, size_t n_pub, size_t n_subs,
				 long first_sub)
{
	struct worker *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->run = r;
	w->id = id;
	w->n_pub = n_pub;
	w->n_conns = n_pub + n_subs;
	w->conns = calloc(w->n_conns ? w->n_conns : 1, sizeof *w->conns);
	w->joined_per_topic = calloc((size_t)r->o.topics, sizeof *w->joined_per_topic);
	w->sent_per_topic = calloc((size_t)r->o.topics, sizeof *w->sent_per_topic);
	w->batch = (size_t)(r->o.batch / r->n_workers > 0 ? r->o.batch / r->n_workers : 1);
	w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)id << 32) ^ rt_mono_ns();
	if (!w->conns || !w->joined_per_topic || !w->sent_per_topic || uv_loop_init(&w->loop)) {
		free(w->conns);
		free(w->joined_per_topic);
		free(w->sent_per_topic);
		free(w);
		return NULL;
	}
	uv_timer_init(&w->loop, &w->tick);
	uv_timer_init(&w->loop, &w->pub_timer);
	w->tick.data = w->pub_timer.data = w;
	for (size_t i = 0; i < w->n_conns; i++) {
		struct conn *c = &w->conns[i];
		c->w = w;
		if (i < n_pub) {
			c->is_pub = true;
			c->topic = (uint32_t)(i * TOPICS_PER_PUB);
			long left = r->o.topics - (long)c->topic;
			c->n_topics = (uint32_t)(left < TOPICS_PER_PUB ? left : TOPICS_PER_PUB);
		} else {
			long sub = first_sub + (long)(i - n_pub) * r->n_workers;
			c->topic = (uint32_t)(sub % r->o.topics);
			c->n_topics = 1;
		}
	}
	if (n_pub) {
		/* {"t":"<20 digits>","s":"<20 digits>","p":"xxx…"} of exactly --payload bytes */
		size_t fixed = 6 + STAMP_LEN + 7 + STAMP_LEN + 7 + 2;
		w->payload_len = (size_t)r->o.payload > fixed ? (size_t)r->o.payload : fixed;
		w->payload = malloc(w->payload_len);
		if (!w->payload) {
			uv_loop_close(&w->loop);
			free(w->conns);
			free(w->joined_per_topic);
			free(w->sent_per_topic);
			free(w);
			return NULL;
		}
		memset(w->payload, 'x', w->payload_len);
		memcpy(w->payload, "{\"t\":\"", 6);
		memcpy(w->payload + 6 + STAMP_LEN, "\",\"s\":\"", 7);
		memcpy(w->payload + 13 + 2 * STAMP_LEN, "\",\"p\":\"", 7);
		memcpy(w->payload + w->payload_len - 2, "\"}", 2);
	}
	return w;
}

static void worker_free(struct worker *w)
{
	if (!w)
		return;
	/* Handles were closed by close_everything; run the loop to their callbacks. */
	for (int i = 0; i < 1000 && uv_loop_close(&w->loop) == UV_EBUSY; i++)
		uv_run(&w->loop, UV_RUN_NOWAIT);
	free(w->conns);
	free(w->joined_per_topic);
	free(w->sent_per_topic);
	free(w->payload);
	free(w);
}

/* ---- options ---------------------------------------------------------------- */

static const char usage[] =
	"Usage: rtbench SCENARIO --url ws://HOST:PORT[/PATH] --apikey KEY [options]\n"
	"\n"
	"Load generator for rtsync (Supabase Realtime protocol, vsn 2.0.0). Runs one scenario for\n"
	"a bounded time and prints one JSON line of results on stdout.\n"
	"\n"
	"Scenarios:\n"
	"  fanout   N subscribers over T topics (joined with broadcast.self=false); one publisher\n"
	"           socket per 100 topics sends broadcasts at a fixed rate, each carrying its send\n"
	"           time (CLOCK_MONOTONIC) and a sequence number; reports delivery latency\n"
	"           (p50/p90/p99/p999/max, us), sent, expected, delivered, lost, server CPU and RSS.\n"
	"  idle     N sockets each joined to one topic, held for --duration with heartbeats;\n"
	"           reports server RSS before, after setup, at the end, and per connection.\n"
	"\n"
	"Common options:\n"
	"  --url URL              ws://HOST:PORT[/PATH]; PATH defaults to /realtime/v1/websocket\n"
	"  --apikey KEY           token sent as ?apikey= (e.g. from `rtsync token`)\n"
	"  --duration S           seconds to publish (fanout) or hold (idle)      (10)\n"
	"  --server-pid PID       server process to sample in /proc (CPU, RSS)    (none)\n"
	"  --threads N            client threads, one libuv loop each             (1)\n"
	"  --batch N              connections in setup at once (listen backlog)   (500)\n"
	"  --setup-timeout S      give up on connections not joined by then       (60)\n"
	"  --heartbeat S          Phoenix heartbeat per socket every S seconds, 0 = none (25)\n"
	"  --topics T             topics                                          (1)\n"
	"  -h, --help             this help\n"
	"\n"
	"fanout:\n"
	"  --subscribers N        subscriber sockets                               (1000)\n"
	"  --rate R               broadcasts per second, over all topics           (1000)\n"
	"  --payload P            user payload bytes (at least 62)                 (100)\n"
	"  --encoding E           json: binary kind 3, JSON payload (realtime-js); binary: kind 3,\n"
	"                         opaque payload; text: JSON array text frame      (json)\n"
	"  --drain S              wait at most S seconds after the last send       (5)\n"
	"\n"
	"idle:\n"
	"  --connections N        sockets to open                                  (10000)\n"
	"\n"
	"Exit status: 0 on a completed run, 1 if the run could not happen (no publisher, no\n"
	"connection), 2 on bad usage. Failed connections are counted in \"failed\", never fatal.\n";

static int parse_long(const char *name, const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "rtbench: %s wants an integer in %ld..%ld\n", name, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || end == s || !(v >= lo && v <= hi)) {
		fprintf(stderr, "rtbench: %s wants a number in %g..%g\n", name, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_url(struct opts *o, const char *url)
{
	if (strncmp(url, "ws://", 5)) {
		fprintf(stderr, "rtbench: --url must start with ws:// (no TLS)\n");
		return -1;
	}
	const char *h = url + 5, *slash = strchr(h, '/');
	size_t hp_len = slash ? (size_t)(slash - h) : strlen(h);
	const char *colon = memrchr(h, ':', hp_len);
	if (!colon || colon == h || (size_t)(colon - h) >= sizeof o->host) {
		fprintf(stderr, "rtbench: --url wants ws://HOST:PORT\n");
		return -1;
	}
	memcpy(o->host, h, (size_t)(colon - h));
	o->host[colon - h] = '\0';
	char port[16];
	size_t pl = hp_len - (size_t)(colon + 1 - h);
	if (pl == 0 || pl >= sizeof port)
		return fprintf(stderr, "rtbench: bad port in --url\n"), -1;
	memcpy(port, colon + 1, pl);
	port[pl] = '\0';
	long p;
	if (parse_long("the --url port", port, 1, 65535, &p))
		return -1;
	o->port = (int)p;
	const char *path = slash ? slash : "/realtime/v1/websocket";
	if (strlen(path) >= sizeof o->path || strchr(path, '?') || strpbrk(path, " \r\n"))
		return fprintf(stderr, "rtbench: bad path in --url\n"), -1;
	snprintf(o->path, sizeof o->path, "%s", path);
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){.subscribers = 1000, .topics = 1, .rate = 1000, .payload = 100,
			   .connections = 10000, .threads = 1, .batch = 500, .heartbeat_s = 25,
			   .duration_s = 10, .drain_s = 5, .setup_timeout_s = 60};
	enum { O_URL = 256, O_KEY, O_DUR, O_PID, O_THR, O_BATCH, O_SETUP, O_HB, O_TOPICS, O_SUBS,
	       O_RATE, O_PAY, O_ENC, O_DRAIN, O_CONNS };
	static const struct option longopts[] = {
		{"url", required_argument, NULL, O_URL},
		{"apikey", required_argument, NULL, O_KEY},
		{"duration", required_argument, NULL, O_DUR},
		{"server-pid", required_argument, NULL, O_PID},
		{"threads", required_argument, NULL, O_THR},
		{"batch", required_argument, NULL, O_BATCH},
		{"setup-timeout", required_argument, NULL, O_SETUP},
		{"heartbeat", required_argument, NULL, O_HB},
		{"topics", required_argument, NULL, O_TOPICS},
		{"subscribers", required_argument, NULL, O_SUBS},
		{"rate", required_argument, NULL, O_RATE},
		{"payload", required_argument, NULL, O_PAY},
		{"encoding", required_argument, NULL, O_ENC},
		{"drain", required_argument, NULL, O_DRAIN},
		{"connections", required_argument, NULL, O_CONNS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *url = NULL;
	int c, rc = 0;
	while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_URL: url = optarg; break;
		case O_KEY: o->apikey = optarg; break;
		case O_DUR: rc = parse_double("--duration", optarg, 0.1, 86400, &o->duration_s); break;
		case O_PID: rc = parse_long("--server-pid", optarg, 1, INT32_MAX, &o->server_pid); break;
		case O_THR: rc = parse_long("--threads", optarg, 1, 64, &o->threads); break;
		case O_BATCH: rc = parse_long("--batch", optarg, 1, 100000, &o->batch); break;
		case O_SETUP:
			rc = parse_double("--setup-timeout", optarg, 1, 3600, &o->setup_timeout_s);
			break;
		case O_HB: rc = parse_long("--heartbeat", optarg, 0, 3600, &o->heartbeat_s); break;
		case O_TOPICS: rc = parse_long("--topics", optarg, 1, MAX_TOPICS, &o->topics); break;
		case O_SUBS: rc = parse_long("--subscribers", optarg, 0, 1000000, &o->subscribers); break;
		case O_RATE: rc = parse_long("--rate", optarg, 1, 10000000, &o->rate); break;
		case O_PAY: rc = parse_long("--payload", optarg, 1, MAX_PAYLOAD, &o->payload); break;
		case O_DRAIN: rc = parse_double("--drain", optarg, 0, 3600, &o->drain_s); break;
		case O_CONNS: rc = parse_long("--connections", optarg, 1, 1000000, &o->connections); break;
		case O_ENC:
			if (!strcmp(optarg, "json"))
				o->encoding = ENC_JSON;
			else if (!strcmp(optarg, "binary"))
				o->encoding = ENC_BINARY;
			else if (!strcmp(optarg, "text"))
				o->encoding = ENC_TEXT;
			else {
				fprintf(stderr, "rtbench: --encoding is json, binary or text\n");
				rc = -1;
			}
			break;
		case 'h': fputs(usage, stdout); exit(0);
		default: rc = -1;
		}
	}
	if (rc)
		return -1;
	if (optind != argc - 1) {
		fprintf(stderr, "rtbench: name one scenario: fanout or idle\n");
		return -1;
	}
	if (!strcmp(argv[optind], "fanout"))
		o->scenario = SC_FANOUT;
	else if (!strcmp(argv[optind], "idle"))
		o->scenario = SC_IDLE;
	else
		return fprintf(stderr, "rtbench: unknown scenario '%s'\n", argv[optind]), -1;
	if (!url || !o->apikey)
		return fprintf(stderr, "rtbench: --url and --apikey are required\n"), -1;
	if (strspn(o->apikey, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~") !=
		    strlen(o->apikey) ||
	    strlen(o->apikey) > 1200)
		return fprintf(stderr, "rtbench: --apikey has characters a URL would need escaped\n"), -1;
	return parse_url(o, url);
}

/* ---- main ------------------------------------------------------------------- */

/* Raises the open-files soft limit to the hard one; false if need is above it. */
static bool raise_fd_limit(size_t need, long *limit)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return false;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	*limit = rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
	return need + FD_SLACK <= (size_t)*limit;
}

static double secs(uint64_t a_ns, uint64_t b_ns)
{
	return b_ns > a_ns ? (double)(b_ns - a_ns) / 1e9 : 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

struct totals {
	uint64_t fail[F_COUNT];
	uint64_t connected, delivered, reordered, other_msgs, bad_msgs;
	struct hist hist;
	const char *first_error;
};

static void print_common(const struct run *r, const struct totals *t, double setup_s)
{
	printf("\"threads\":%d,\"topics\":%ld,\"connected\":%" PRIu64 ",\"failed\":{", r->n_workers,
	       r->o.topics, t->connected);
	for (int i = 0; i < F_COUNT; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "", fail_names[i], t->fail[i]);
	printf("},\"setup_s\":%.3f,", setup_s);
	if (t->first_error) {
		printf("\"first_error\":");
		json_str(stdout, t->first_error);
		putchar(',');
	}
}

int main(int argc, char **argv)
{
	struct run *r = calloc(1, sizeof *r);
	if (!r)
		return 1;
	int exit_code = 1;
	if (parse_opts(argc, argv, &r->o)) {
		fputs("Try 'rtbench --help'.\n", stderr);
		free(r);
		return 2;
	}
	struct opts *o = &r->o;
	signal(SIGPIPE, SIG_IGN);
	bool is_fanout = o->scenario == SC_FANOUT;
	size_t n_pub = is_fanout ? (size_t)((o->topics + TOPICS_PER_PUB - 1) / TOPICS_PER_PUB) : 0;
	size_t n_subs = (size_t)(is_fanout ? o->subscribers : o->connections);
	long fd_limit = 0;
	if (!raise_fd_limit(n_pub + n_subs, &fd_limit)) {
		fprintf(stderr, "rtbench: %zu sockets need %zu open files; the limit is %ld\n",
			n_pub + n_subs, n_pub + n_subs + FD_SLACK, fd_limit);
		free(r);
		return 2;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)&r->addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r->addr;
	if (uv_ip4_addr(o->host, o->port, a4) && uv_ip6_addr(o->host, o->port, a6)) {
		fprintf(stderr, "rtbench: --url host must be a numeric IPv4 or IPv6 address\n");
		free(r);
		return 2;
	}
	bool is_v6 = strchr(o->host, ':') != NULL;
	snprintf(r->host_header, sizeof r->host_header, "%s%s%s:%d", is_v6 ? "[" : "", o->host,
		 is_v6 ? "]" : "", o->port);
	snprintf(r->topic_prefix, sizeof r->topic_prefix, "bench-%ld-", (long)getpid());
	r->n_workers = (int)(o->threads < (long)n_subs + 1 ? o->threads : (long)n_subs + 1);
	if (r->n_workers < 1)
		r->n_workers = 1;
	r->workers = calloc((size_t)r->n_workers, sizeof *r->workers);
	if (!r->workers) {
		free(r);
		return 1;
	}
	for (int i = 0; i < r->n_workers; i++) {
		size_t mine = n_subs / (size_t)r->n_workers + ((size_t)i < n_subs % (size_t)r->n_workers);
		r->workers[i] = worker_new(r, i, i == 0 ? n_pub : 0, mine, i);
		if (!r->workers[i]) {
			fprintf(stderr, "rtbench: out of memory\n");
			goto out_free;
		}
	}

	long pid = o->server_pid;
	long rss_before = pid ? proc_rss_kb(pid) : -1;
	uint64_t t_setup = rt_mono_ns();
	for (int i = 0; i < r->n_workers; i++)
		if (pthread_create(&r->workers[i]->thread, NULL, worker_main, r->workers[i])) {
			fprintf(stderr, "rtbench: cannot start a thread\n");
			atomic_store(&r->stop, 1);
			for (int k = 0; k < i; k++)
				pthread_join(r->workers[k]->thread, NULL);
			for (int k = i; k < r->n_workers; k++)
				close_everything(r->workers[k]);
			goto out_free;
		}
	/* Workers give up on their own at --setup-timeout; this bound is a backstop. */
	uint64_t setup_limit = t_setup + (uint64_t)((o->setup_timeout_s + 10) * 1e9);
	while (atomic_load_explicit(&r->n_ready, memory_order_acquire) < r->n_workers &&
	       rt_mono_ns() < setup_limit)
		sleep_ms(5);
	uint64_t t_ready = rt_mono_ns();
	bool is_ready = atomic_load_explicit(&r->n_ready, memory_order_acquire) == r->n_workers;
	bool has_pub = is_ready && r->workers[0]->n_pub_open == n_pub;

	struct totals t = {0};
	uint64_t subs_per_topic_sum = 0;
	for (int i = 0; is_ready && i < r->n_workers; i++)
		for (long k = 0; k < o->topics; k++)
			subs_per_topic_sum += r->workers[i]->joined_per_topic[k];

	long rss_setup = pid ? proc_rss_kb(pid) : -1;
	double cpu0 = pid ? proc_cpu_s(pid) : -1, ccpu0 = rusage_cpu_s();
	uint64_t t_go = rt_mono_ns(), t_pub_end = t_go, t_end = t_go;
	uint64_t expected = 0, sent = 0, skipped = 0;
	if (is_ready && has_pub && (!is_fanout || subs_per_topic_sum > 0)) {
		atomic_store_explicit(&r->go, 1, memory_order_release);
		if (is_fanout) {
			uint64_t limit = t_go + (uint64_t)((o->duration_s + 10) * 1e9);
			while (!atomic_load_explicit(&r->pub_done, memory_order_acquire) &&
			       rt_mono_ns() < limit)
				sleep_ms(2);
			t_pub_end = rt_mono_ns();
			if (atomic_load_explicit(&r->pub_done, memory_order_acquire)) {
				struct worker *w0 = r->workers[0];
				sent = w0->pub_sent;
				skipped = w0->pub_skipped;
				for (long k = 0; k < o->topics; k++) {
					uint64_t subs = 0;
					for (int i = 0; i < r->n_workers; i++)
						subs += r->workers[i]->joined_per_topic[k];
					expected += w0->sent_per_topic[k] * subs;
				}
			}
			uint64_t drain_end = t_pub_end + (uint64_t)(o->drain_s * 1e9);
			for (;;) {
				uint64_t got = 0;
				for (int i = 0; i < r->n_workers; i++)
					got += atomic_load_explicit(&r->workers[i]->delivered_shared,
								    memory_order_relaxed);
				if (got >= expected || rt_mono_ns() >= drain_end)
					break;
				sleep_ms(2);
			}
		} else {
			uint64_t hold_end = t_go + (uint64_t)(o->duration_s * 1e9);
			while (rt_mono_ns() < hold_end)
				sleep_ms(10);
		}
		exit_code = 0;
	}
	t_end = rt_mono_ns();
	double cpu1 = pid ? proc_cpu_s(pid) : -1, ccpu1 = rusage_cpu_s();
	long rss_end = pid ? proc_rss_kb(pid) : -1, client_rss = proc_rss_kb(0);
	atomic_store(&r->stop, 1);

	for (int i = 0; i < r->n_workers; i++)
		pthread_join(r->workers[i]->thread, NULL);

	for (int i = 0; i < r->n_workers; i++) {
		struct worker *w = r->workers[i];
		for (int k = 0; k < F_COUNT; k++)
			t.fail[k] += w->fail[k];
		t.connected += w->n_joined;
		t.delivered += w->delivered;
		t.reordered += w->reordered;
		t.other_msgs += w->other_msgs;
		t.bad_msgs += w->bad_msgs;
		hist_merge(&t.hist, &w->hist);
		if (!t.first_error && w->first_error[0])
			t.first_error = w->first_error;
	}
	double setup_s = secs(t_setup, t_ready), window_s = secs(t_go, t_end);
	double cpu_pct = cpu0 >= 0 && cpu1 >= 0 && window_s > 0 ? 100 * (cpu1 - cpu0) / window_s : -1;
	double ccpu_pct = exit_code == 0 && window_s > 0 ? 100 * (ccpu1 - ccpu0) / window_s : -1;
	if (exit_code)
		cpu_pct = -1;

	printf("{\"scenario\":\"%s\",", is_fanout ? "fanout" : "idle");
	if (is_fanout) {
		double pub_s = secs(t_go, t_pub_end);
		printf("\"subscribers\":%ld,\"rate\":%ld,\"payload\":%ld,\"encoding\":\"%s\","
		       "\"duration_s\":%.3f,",
		       o->subscribers, o->rate, o->payload,
		       o->encoding == ENC_JSON ? "json" : o->encoding == ENC_BINARY ? "binary" : "text",
		       o->duration_s);
		print_common(r, &t, setup_s);
		uint64_t lost = expected > t.delivered ? expected - t.delivered : 0;
		printf("\"sent\":%" PRIu64 ",\"send_skipped\":%" PRIu64 ",\"send_rate\":%.1f,"
		       "\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"lost\":%" PRIu64
		       ",\"loss_pct\":%.4f,\"deliveries_per_s\":%.0f,\"reordered\":%" PRIu64
		       ",\"undecodable\":%" PRIu64 ",\"drain_s\":%.3f,",
		       sent, skipped, pub_s > 0 ? (double)sent / pub_s : 0, expected, t.delivered, lost,
		       expected ? 100.0 * (double)lost / (double)expected : 0,
		       window_s > 0 ? (double)t.delivered / window_s : 0, t.reordered, t.bad_msgs,
		       secs(t_pub_end, t_end));
		const struct hist *h = &t.hist;
		printf("\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
		       "\"max\":%.1f,\"mean\":%.1f},",
		       hist_quantile(h, 0.5) / 1e3, hist_quantile(h, 0.9) / 1e3,
		       hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
		       h->n ? (double)h->sum / (double)h->n / 1e3 : 0);
		printf("\"server\":{\"pid\":%ld,\"cpu_pct\":%.1f,\"rss_kb_before\":%ld,"
		       "\"rss_kb_setup\":%ld,\"rss_kb_end\":%ld},",
		       pid, cpu_pct, rss_before, rss_setup, rss_end);
	} else {
		printf("\"connections\":%ld,\"duration_s\":%.3f,", o->connections, o->duration_s);
		print_common(r, &t, setup_s);
		double per_conn = t.connected && rss_end >= 0 && rss_before >= 0
					  ? (double)(rss_end - rss_before) * 1024.0 / (double)t.connected
					  : -1;
		printf("\"connect_rate\":%.0f,\"server\":{\"pid\":%ld,\"cpu_pct_hold\":%.2f,"
		       "\"rss_kb_before\":%ld,\"rss_kb_setup\":%ld,\"rss_kb_end\":%ld,"
		       "\"rss_bytes_per_conn\":%.0f},",
		       setup_s > 0 ? (double)t.connected / setup_s : 0, pid, cpu_pct, rss_before,
		       rss_setup, rss_end, per_conn);
	}
	printf("\"client\":{\"cpu_pct\":%.1f,\"rss_kb\":%ld},\"window_s\":%.3f}\n", ccpu_pct,
	       client_rss, window_s);
	fflush(stdout);
	if (!is_ready)
		fprintf(stderr, "rtbench: setup did not finish\n");
	else if (!has_pub)
		fprintf(stderr, "rtbench: the publisher did not join: %s\n",
			t.first_error ? t.first_error : "?");

out_free:
	for (int i = 0; i < r->n_workers; i++)
		worker_free(r->workers[i]);
	free(r->workers);
	free(r);
	return exit_code;
}
