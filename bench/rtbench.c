/*
 * rtbench: a load generator for rtsync (and any Supabase Realtime-compatible
 * server speaking Phoenix Channels vsn 1.0.0 or 2.0.0). Thousands of WebSocket
 * client connections from one process, one libuv loop per thread; each
 * scenario runs for a bounded time and prints exactly one JSON line of results
 * on stdout.
 *
 *   fanout   N subscribers over T topics, one publisher socket per 100 topics
 *            sending timestamped broadcasts at a fixed rate (open loop); the
 *            subscribers measure delivery latency, deliveries and losses.
 *            --slow K adds K subscribers that stop reading when the run starts.
 *   idle     N sockets, each joined to one topic, held open (heartbeats only);
 *            server RSS before/after and per connection.
 *   changes  N subscribers with postgres_changes filters (topic=eq.K) on the
 *            table of bench/schema.sql; rows written through the REST API at a
 *            fixed rate carry their send time; write-to-receive latency.
 *   storm    N postgres_changes subscribers; the server (started by rtbench
 *            with --spawn) is killed, rows are written into its SQLite file
 *            while it is down, it is started again, and every client
 *            reconnects, rejoins with its last position and must receive every
 *            row: time until all rejoined and resumed, lost, duplicates.
 *   live     N subscribers with live queries (docs/live.md) over D definitions
 *            on the table of bench/schema-live.sql (half aggregates, half
 *            ordered windows); one REST connection inserts, updates and
 *            deletes rows in batches at a fixed rate; each subscriber applies
 *            the diffs to its copy: write-to-diff latency, position lag,
 *            server CPU per change, then the naive way (re-reading each
 *            affected query through REST) measured on the same server, and
 *            at the end every copy compared with a REST read of its query.
 *
 * WebSocket framing is the project's engine (net/ws.h) in its client role:
 * frames are masked, server frames parsed and checked. Connections are set up
 * in a bounded window (the server's listen backlog is finite); failures are
 * counted by reason, never fatal.
 *
 * Ownership: every connection lives in its worker's array; its handle and
 *            buffers are released from libuv's close callback.
 * Threads:   the main thread starts the workers, watches shared atomics, reads
 *            /proc for the server, starts and kills the server (storm) and
 *            prints the result; each worker owns one loop and its connections
 *            and shares nothing else but atomics.
 * Limits:    connections ≤ the open-files limit minus 64; topics ≤ 10000;
 *            payload ≤ 1 MB; a received message ≤ 4 MiB; every loop bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <http_parser.h>
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "auth/jwt.h"
#include "net/ws.h"

#define TICK_MS 5
#define PUB_TICK_MS 1
#define MAX_TOPICS 10000
#define TOPICS_PER_PUB 100     /* the server's default --max-channels */
#define MAX_PAYLOAD 1000000
#define MAX_MSG (4u << 20)     /* largest server message accepted */
#define PUB_MAX_OUT (8u << 20) /* publisher output not yet taken by the kernel */
#define HS_MAX 4096            /* handshake response headers */
#define RBUF_SIZE (64 * 1024)
#define FD_SLACK 64
#define STAMP_LEN 20           /* zero-padded decimal digits of t and s */
#define PIPELINE 256           /* REST requests in flight per writer connection */
#define TABLE "bench_changes"
#define LIVE_TABLE "bookings"
#define LIVE_STATUSES 5
#define LIVE_MAX_PER_SUB 16 /* live queries per subscriber */
#define LIVE_MAX_DEFS 1000
#define LIVE_WINDOW 20       /* limit of the window definitions */
#define NAIVE_RING 8192      /* affected queries of the last changes (naive phase) */
#define NAIVE_DEPTH 4        /* naive GETs in flight per connection */
#define KEEPALIVE_MS 2000    /* a request on an idle naive connection (the server ends
				idle keep-alive connections after its request timeout) */
#define KEEPALIVE_TAG UINT32_MAX

static const char *live_status_name(int s)
{
	static const char *const names[LIVE_STATUSES] = {"hold", "open", "booked", "paid",
							 "cancelled"};
	return names[s];
}

#define RTBENCH_MAX_NODES 16 /* --sub-ports: the --url port and up to 15 more */

enum scenario { SC_FANOUT, SC_IDLE, SC_CHANGES, SC_STORM, SC_LIVE, SC_NOTIFY };
static const char *const scenario_names[] = {"fanout", "idle", "changes", "storm", "live",
					    "notify"};
enum encoding { ENC_JSON, ENC_BINARY, ENC_TEXT };

struct opts {
	enum scenario scenario;
	char host[256];
	int port;
	char path[512];
	const char *apikey;
	const char *spawn;
	const char *db;
	long subscribers, topics, rate, payload, connections, threads, batch, heartbeat_s;
	long server_pid, vsn, slow, writers, changes, retry_ms, kill_signal;
	long write_rows;        /* changes: rows per REST insert (a JSON array) */
	double duration_s, drain_s, setup_timeout_s;
	bool is_rate_set;
	const char *jwt_secret; /* changes: each subscriber joins as user "<K>" */
	bool is_rls;            /* changes: no filter, the table's policy selects */
	long busy_poll;
	enum encoding encoding;
	/* fanout over several nodes: subscribers spread over these ports too */
	int sub_ports[RTBENCH_MAX_NODES];
	int n_sub_ports;
	/* live */
	long queries, per_sub, verify, seed_rows, throttle_ms, naive_conns;
	double naive_s;
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

enum conn_state {
	CS_NEW,
	CS_CONNECTING,
	CS_HANDSHAKE,
	CS_JOINING,
	CS_OPEN,
	CS_CLOSING,
	CS_CLOSED,
	CS_WAIT_RETRY, /* storm: dropped, reconnects at retry_at_ns */
};

enum conn_role {
	ROLE_SUB,    /* subscriber: counts deliveries */
	ROLE_PUB,    /* fanout publisher socket */
	ROLE_SLOW,   /* fanout subscriber that stops reading when the run starts */
	ROLE_WRITER, /* changes: HTTP/1.1 keep-alive connection for REST writes */
};

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
	struct rt_ws ws;
	uint8_t state;      /* enum conn_state */
	uint8_t role;       /* enum conn_role */
	bool is_writing;    /* a uv_write owns the previous output */
	bool is_pg_pending; /* joined; waiting for "Subscribed to PostgreSQL" */
	bool was_dropped;   /* storm: lost its socket in the run, not yet rejoined */
	bool is_resumed;    /* storm: received every row written while down */
	bool is_handle_live; /* tcp initialised and its close callback not yet run */
	uint16_t joins_pending;
	uint32_t topic;    /* subscriber: its topic; publisher: its first topic */
	uint32_t n_topics; /* publisher: topics it joins */
	uint8_t node;      /* subscriber with --sub-ports: which address it uses */
	uint32_t next_ref;
	uint32_t retries;
	char accept[29];   /* expected Sec-WebSocket-Accept */
	char *hs;          /* handshake response being read */
	size_t hs_len;
	uint8_t *out;      /* bytes not yet handed to the kernel */
	size_t out_len, out_cap;
	uint64_t last_seq; /* fanout: last sequence seen */
	uint64_t last_pos; /* changes, storm: last position seen */
	uint64_t got;      /* storm: rows received since the kill */
	uint64_t retry_at_ns;
	/* ROLE_WRITER */
	http_parser *http;
	uint32_t *inflight; /* topics (live: changes) of the requests awaiting an answer (ring) */
	uint32_t if_head, if_len;
	struct lsub *lv;    /* live: the subscriber's queries and copies */
};

/* A live subscriber: its definitions and, when it verifies, its copy of each
 * result (rows and keys, kept by applying the diffs). */
struct lsub {
	uint32_t index; /* subscriber number over all workers */
	uint32_t n_q;
	uint32_t def[LIVE_MAX_PER_SUB];
	json_t *rows[LIVE_MAX_PER_SUB], *keys[LIVE_MAX_PER_SUB];
	bool has[LIVE_MAX_PER_SUB];
	bool is_verify, got_reply, got_result;
	uint64_t max_t; /* newest write time seen in its messages */
};

/* The table as the writer made it (the only writer): which ids exist, and
 * each one's property and status. */
struct model {
	uint32_t *alive; /* ids that exist */
	size_t n_alive, cap_alive;
	uint32_t *at;    /* by id: index in alive, UINT32_MAX when gone */
	uint16_t *prop;  /* by id */
	uint8_t *status; /* by id */
	size_t cap_ids;
	uint32_t next_id;
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
	uv_check_t turn_check; /* measures the loop's turns (turn_hist) */
	uint64_t turn_ns, turn_idle_ns;
	struct hist turn_hist; /* while running: each loop turn's time out of epoll */
	pthread_t thread;
	enum phase phase;
	struct conn *conns;
	size_t n_conns, n_pub; /* conns[0..n_pub) are publishers or writers (worker 0) */
	size_t next_open, n_inflight, n_settled, n_open, batch;
	size_t n_joined;   /* connections that ever reached CS_OPEN */
	size_t n_pub_open; /* publishers open when setup ended */
	size_t n_slow_stopped;
	bool is_opening;
	size_t hb_cursor;
	uint64_t setup_deadline_ns;
	uint64_t rng;
	uint64_t *joined_per_topic;
	struct hist hist;
	uint64_t delivered, reordered, other_msgs, bad_msgs, duplicates;
	_Atomic uint64_t delivered_shared;
	uint64_t fail[F_COUNT];
	char first_error[160];
	/* publisher or writers (worker 0, fanout and changes) */
	uint64_t pub_t0, pub_end, pub_attempted, pub_sent, pub_skipped, pub_seq;
	uint64_t acked, write_failed, next_writer;
	_Atomic uint64_t acked_shared, answered_shared; /* live: changes acknowledged, answered */
	/* live */
	_Atomic uint64_t max_pos; /* newest position delivered to any subscriber */
	uint64_t live_reqs, n_mix[3], live_errors, diff_errors, lat_samples;
	uint64_t naive_sent, naive_got, naive_failed, naive_t0, naive_t1, naive_cursor;
	bool is_naive;
	_Atomic uint64_t naive_got_shared, naive_ns_shared;
	uint64_t *sent_per_topic; /* fanout: sent; changes: acknowledged */
	uint8_t *payload;
	size_t payload_len;
	char *scratch; /* a message being built (publisher, joins) */
	size_t scratch_cap;
	/* storm */
	uint64_t drops, reconnects, connect_refused;
	_Atomic uint64_t n_rejoined, n_resumed;
	_Atomic uint64_t t_first_connect_ns, t_last_rejoin_ns, t_last_resume_ns;
	uint8_t rbuf[RBUF_SIZE];
};

struct run {
	struct opts o;
	struct sockaddr_storage addr;
	struct sockaddr_storage sub_addrs[RTBENCH_MAX_NODES]; /* [1…]: --sub-ports ([0]: addr) */
	char host_header[300];
	char topic_prefix[64];
	char ws_query[64]; /* "&vsn=2.0.0" */
	int n_workers;
	struct worker **workers;
	_Atomic int n_ready;
	_Atomic uint64_t n_joined_all; /* connections that reached CS_OPEN, all workers */
	_Atomic int go;
	_Atomic int pub_done;
	_Atomic int stop;
	/* storm */
	uint64_t resume_from;          /* position every client starts from */
	uint64_t *expected_per_topic;  /* rows written while the server was down */
	_Atomic int is_restarted;      /* set once expected_per_topic is final */
	/* live */
	char **defs;                   /* query strings, by definition */
	long n_props, n_regions;
	struct model model;            /* worker 0's, once the run starts */
	uint16_t *naive_ring;          /* affected definitions of recent changes */
	uint64_t naive_n, affected;    /* changes generated, queries they affected */
	_Atomic uint64_t p0;           /* the first results' position */
	_Atomic int naive_go, naive_done;
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

/* Reads the decimal number that follows the first occurrence of key in
 * p[0..len) (at most 19 digits). */
static bool find_uint(const uint8_t *p, size_t len, const char *key, uint64_t *out)
{
	size_t kl = strlen(key);
	const uint8_t *k = memmem(p, len, key, kl);
	if (!k)
		return false;
	const uint8_t *d = k + kl, *end = p + len;
	uint64_t v = 0;
	int n = 0;
	for (; d < end && n < 19 && *d >= '0' && *d <= '9'; d++, n++)
		v = v * 10 + (uint64_t)(*d - '0');
	if (!n)
		return false;
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

static void atomic_max(_Atomic uint64_t *a, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
	while (cur < v && !atomic_compare_exchange_weak(a, &cur, v))
		;
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

/* Seconds the threads of a process ("self" when pid <= 0) spent runnable but
 * waiting for a CPU (the second field of /proc/PID/task/TID/schedstat,
 * summed), or -1. On a shared machine this is the share of the latency
 * other programs caused. */
static double proc_wait_s(long pid)
{
	char path[64];
	if (pid > 0)
		snprintf(path, sizeof path, "/proc/%ld/task", pid);
	else
		snprintf(path, sizeof path, "/proc/self/task");
	DIR *d = opendir(path);
	if (!d)
		return -1;
	unsigned long long sum = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char file[384];
		int fl = snprintf(file, sizeof file, "%s/%.*s/schedstat", path, 32, e->d_name);
		FILE *f = fl > 0 && (size_t)fl < sizeof file ? fopen(file, "r") : NULL;
		unsigned long long run, wait;
		if (f && fscanf(f, "%llu %llu", &run, &wait) == 2)
			sum += wait;
		if (f)
			fclose(f);
	}
	closedir(d);
	return (double)sum / 1e9;
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

/* CPU seconds spent by the whole machine (all CPUs, not idle or iowait), or -1. */
static double machine_busy_s(void)
{
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -1;
	unsigned long long v[8] = {0};
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		       &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 8)
		return -1;
	/* user nice system idle iowait irq softirq steal */
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
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
static void conn_lost(struct conn *c, int status);
static void open_more(struct worker *w);
static void flush_conn(struct conn *c);

/* Appends bytes to the connection's output. Returns 0 or RT_ENOMEM. */
static int out_append(struct conn *c, const void *data, size_t len)
{
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 512;
		while (cap < c->out_len + len)
			cap *= 2;
		uint8_t *p = realloc(c->out, cap);
		if (!p)
			return RT_ENOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

static int on_ws_output(void *user, const uint8_t *data, size_t len)
{
	return out_append(user, data, len);
}

static void on_ws_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t len);
static void live_message(struct conn *c, const uint8_t *data, size_t len);

static void notify_message(struct conn *c, const uint8_t *data, size_t len);
static const struct rt_ws_callbacks ws_cbs = {on_ws_message, on_ws_output};

/* Queues one masked frame. Returns false when it could not be queued. */
static bool send_ws(struct conn *c, enum rt_ws_opcode op, const void *data, size_t len)
{
	int rc = rt_ws_send(&c->ws, op, data, len);
	if (rc == RT_ENOMEM) {
		conn_fail(c, F_NOMEM);
		return false;
	}
	return rc == 0;
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
		conn_lost(c, status);
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
		conn_lost(c, n);
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
		conn_lost(c, rc);
	}
}

/* ---- Phoenix messages ------------------------------------------------------ */

/* Makes room for n bytes in the worker's scratch buffer. */
static char *scratch(struct worker *w, size_t n)
{
	if (n > w->scratch_cap) {
		char *p = realloc(w->scratch, n);
		if (!p)
			return NULL;
		w->scratch = p;
		w->scratch_cap = n;
	}
	return w->scratch;
}

/* Sends one Phoenix message as a text frame in the socket's serializer;
 * payload is JSON text; join_ref 0 = null. */
static bool send_phx(struct conn *c, uint32_t join_ref, uint32_t ref, const char *topic,
		     const char *event, const char *payload, size_t payload_len)
{
	struct worker *w = c->w;
	size_t cap = payload_len + strlen(topic) + strlen(event) + 128;
	char *buf = scratch(w, cap);
	if (!buf) {
		conn_fail(c, F_NOMEM);
		return false;
	}
	char jr[16] = "null", rf[16] = "null";
	if (join_ref)
		snprintf(jr, sizeof jr, "\"%u\"", join_ref);
	if (ref)
		snprintf(rf, sizeof rf, "\"%u\"", ref);
	int n;
	if (w->run->o.vsn == 1)
		n = snprintf(buf, cap, "{\"topic\":\"%s\",\"event\":\"%s\",\"payload\":%.*s,\"ref\":%s,"
				       "\"join_ref\":%s}",
			     topic, event, (int)payload_len, payload, rf, jr);
	else
		n = snprintf(buf, cap, "[%s,%s,\"%s\",\"%s\",%.*s]", jr, rf, topic, event,
			     (int)payload_len, payload);
	if (n < 0 || (size_t)n >= cap)
		return false;
	return send_ws(c, RT_WS_TEXT, buf, (size_t)n);
}

/* The event and payload of a decoded message (vsn 1.0.0 object or 2.0.0 array). */
static const char *phx_event(const struct run *r, const json_t *m, json_t **payload)
{
	if (r->o.vsn == 1) {
		*payload = json_object_get(m, "payload");
		return json_string_value(json_object_get(m, "event"));
	}
	*payload = json_array_get(m, 4);
	return json_string_value(json_array_get(m, 3));
}

static bool is_pg_scenario(const struct run *r)
{
	return r->o.scenario == SC_CHANGES || r->o.scenario == SC_STORM;
}

/* The access_token member of subscriber K's join (--jwt-secret): a token of
 * role authenticated whose sub is "<K>"; "" without a secret. */
static void user_token(const struct run *r, uint32_t k, char *out, size_t cap)
{
	*out = 0;
	if (!r->o.jwt_secret)
		return;
	char sub[16];
	snprintf(sub, sizeof sub, "%u", k);
	json_t *extra = json_pack("{s:s}", "sub", sub);
	int64_t now = (int64_t)time(NULL);
	char *tok = rt_jwt_mint(r->o.jwt_secret, "authenticated", NULL, now, now + 86400, extra);
	json_decref(extra);
	if (tok && strlen(tok) + 20 < cap)
		snprintf(out, cap, ",\"access_token\":\"%s\"", tok);
	free(tok);
}

/* live: one channel of its own, its definitions in config.rtsync.live. */
static void send_live_join(struct conn *c)
{
	struct run *r = c->w->run;
	struct lsub *ls = c->lv;
	char topic[128];
	snprintf(topic, sizeof topic, "realtime:%slive-%u", r->topic_prefix, ls->index);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "{\"config\":{\"broadcast\":{\"ack\":false,\"self\":false},"
			      "\"presence\":{\"key\":\"\",\"enabled\":false},\"postgres_changes\":[],"
			      "\"private\":false,\"rtsync\":{\"live\":{\"queries\":[");
	for (uint32_t j = 0; j < ls->n_q; j++)
		rt_buf_printf(&b, "%s{\"id\":\"q%u\",\"table\":\"" LIVE_TABLE "\",\"query\":\"%s\"}",
			      j ? "," : "", ls->def[j], r->defs[ls->def[j]]);
	rt_buf_append_str(&b, "]");
	if (r->o.throttle_ms)
		rt_buf_printf(&b, ",\"throttle_ms\":%ld", r->o.throttle_ms);
	rt_buf_append_str(&b, "}}}}");
	uint32_t ref = ++c->next_ref;
	bool ok = send_phx(c, ref, ref, topic, "phx_join", (const char *)b.data, b.len);
	rt_buf_deinit(&b);
	if (!ok)
		return;
	c->joins_pending = 1;
	flush_conn(c);
}

static void send_notify_join(struct conn *c);

static void send_joins(struct conn *c)
{
	struct run *r = c->w->run;
	if (c->lv) {
		send_live_join(c);
		return;
	}
	if (r->o.scenario == SC_NOTIFY) {
		send_notify_join(c);
		return;
	}
	char payload[1536], topic[128], tok[1024], filter[64];
	for (uint32_t i = 0; i < c->n_topics; i++) {
		uint32_t ref = ++c->next_ref;
		snprintf(topic, sizeof topic, "realtime:%s%u", r->topic_prefix, c->topic + i);
		int n;
		user_token(r, c->topic + i, tok, sizeof tok);
		if (r->o.is_rls)
			*filter = 0; /* the policy (topic = auth.uid()) does the selecting */
		else
			snprintf(filter, sizeof filter, ",\"filter\":\"topic=eq.%u\"", c->topic + i);
		/* A client resumes after the last position it saw; a first join (position 0)
		 * starts at the live end instead of replaying every retained change, so runs
		 * against one long-lived server (bench/soak.sh) count only their own rows.
		 * storm clients always name theirs (the database's last position). */
		char resume[64] = "";
		if (c->last_pos || r->o.scenario == SC_STORM)
			snprintf(resume, sizeof resume, ",\"rtsync\":{\"resume_after\":\"%" PRIu64 "\"}",
				 c->last_pos);
		if (is_pg_scenario(r))
			n = snprintf(payload, sizeof payload,
				     "{\"config\":{\"broadcast\":{\"ack\":false,\"self\":false},"
				     "\"presence\":{\"key\":\"\",\"enabled\":false},\"postgres_changes\":"
				     "[{\"event\":\"INSERT\",\"schema\":\"public\",\"table\":\"" TABLE "\""
				     "%s}],\"private\":false%s}%s}",
				     filter, resume, tok);
		else
			n = snprintf(payload, sizeof payload,
				     "{\"config\":{\"broadcast\":{\"ack\":false,\"self\":false},"
				     "\"presence\":{\"key\":\"\",\"enabled\":false},"
				     "\"postgres_changes\":[],\"private\":false}}");
		if (!send_phx(c, ref, ref, topic, "phx_join", payload, (size_t)n))
			return;
	}
	c->joins_pending = (uint16_t)c->n_topics;
	flush_conn(c);
}

static void send_heartbeat(struct conn *c)
{
	if (send_phx(c, 0, ++c->next_ref, "phoenix", "heartbeat", "{}", 2))
		flush_conn(c);
}

/* ---- connection lifecycle ----------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->is_handle_live = false;
	rt_ws_deinit(&c->ws);
	free(c->hs);
	free(c->out);
	c->hs = NULL;
	c->out = NULL;
	c->hs_len = c->out_len = c->out_cap = 0;
	if (c->state == CS_WAIT_RETRY)
		return;
	c->state = CS_CLOSED;
	if (c->role == ROLE_WRITER) {
		free(c->http);
		free(c->inflight);
		c->http = NULL;
		c->inflight = NULL;
	}
}

static bool is_setting_up(const struct conn *c)
{
	return c->state >= CS_CONNECTING && c->state <= CS_JOINING;
}

/* Closes without counting (the end of the run). */
static void conn_close(struct conn *c)
{
	struct worker *w = c->w;
	if (c->state == CS_WAIT_RETRY) {
		c->state = CS_CLOSED;
		return;
	}
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

/* storm: drops the socket and schedules a reconnect with jitter. */
static void conn_retry_later(struct conn *c)
{
	struct worker *w = c->w;
	uint64_t base = (uint64_t)w->run->o.retry_ms * 1000000u;
	uint64_t delay = c->retries == 0 ? xorshift(&w->rng) % (base + 1)
					 : base / 2 + xorshift(&w->rng) % (base + 1);
	c->retries++;
	if (is_setting_up(c))
		w->n_inflight--;
	else if (c->state == CS_OPEN)
		w->n_open--;
	c->retry_at_ns = rt_mono_ns() + delay;
	c->state = CS_WAIT_RETRY;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static bool is_storm_run(const struct conn *c)
{
	return c->w->run->o.scenario == SC_STORM && c->w->phase == PH_RUN && c->role == ROLE_SUB;
}

static void conn_fail(struct conn *c, enum fail_reason why)
{
	struct worker *w = c->w;
	if (c->state >= CS_CLOSING)
		return;
	if (is_storm_run(c) && why != F_NOMEM) {
		if (c->state == CS_OPEN || c->state == CS_JOINING) {
			if (!c->was_dropped)
				w->drops++;
			c->was_dropped = true;
		}
		if (why == F_CONNECT)
			w->connect_refused++;
		conn_retry_later(c);
		return;
	}
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
	if (!is_storm_run(c))
		set_error(c->w, "socket", uv_strerror(status));
	conn_fail(c, by_state[c->state]);
}

static void conn_opened(struct conn *c)
{
	struct worker *w = c->w;
	c->state = CS_OPEN;
	w->n_inflight--;
	c->retries = 0;
	if (c->was_dropped) {
		/* storm: back after the restart */
		c->was_dropped = false;
		w->n_open++;
		atomic_fetch_add(&w->n_rejoined, 1);
		atomic_max(&w->t_last_rejoin_ns, rt_mono_ns());
		return;
	}
	w->n_settled++;
	w->n_open++;
	w->n_joined++;
	atomic_fetch_add_explicit(&w->run->n_joined_all, 1, memory_order_relaxed);
	if (c->role == ROLE_SUB)
		w->joined_per_topic[c->topic]++;
	open_more(w);
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

/* A postgres_changes delivery: position, then the row's send time. */
static void record_change(struct conn *c, const uint8_t *p, size_t len)
{
	struct worker *w = c->w;
	struct run *r = w->run;
	uint64_t pos, t;
	const uint8_t *rec = memmem(p, len, "\"record\":", 9);
	if (!find_uint(p, len, "\"position\":\"", &pos) || !rec ||
	    !find_uint(rec, len - (size_t)(rec - p), "\"t\":", &t)) {
		w->bad_msgs++;
		return;
	}
	if (pos <= c->last_pos) {
		w->duplicates++;
		return;
	}
	c->last_pos = pos;
	w->delivered++;
	if (r->o.scenario == SC_CHANGES) {
		uint64_t now = rt_mono_ns();
		hist_record(&w->hist, now > t ? now - t : 0);
		return;
	}
	/* storm: rows written while the server was down */
	c->got++;
	if (!c->is_resumed && atomic_load_explicit(&r->is_restarted, memory_order_acquire) &&
	    c->got >= r->expected_per_topic[c->topic]) {
		c->is_resumed = true;
		atomic_fetch_add(&w->n_resumed, 1);
		atomic_max(&w->t_last_resume_ns, rt_mono_ns());
	}
}

/* Join replies and system messages while joining (parsed with jansson). */
static void handle_setup_msg(struct conn *c, const uint8_t *data, size_t len)
{
	struct run *r = c->w->run;
	json_t *m = json_loadb((const char *)data, len, 0, NULL), *payload;
	const char *ev = phx_event(r, m, &payload);
	const char *status = json_string_value(json_object_get(payload, "status"));
	if (!ev || !json_is_object(payload)) {
		c->w->other_msgs++;
		goto out;
	}
	if (!strcmp(ev, "phx_reply")) {
		if (status && !strcmp(status, "ok") && c->lv) {
			/* open once the first live_query (the results) is in too */
			c->lv->got_reply = true;
			if (c->lv->got_result && c->joins_pending && --c->joins_pending == 0)
				conn_opened(c);
			goto out;
		}
		if (status && !strcmp(status, "ok")) {
			if (is_pg_scenario(r))
				c->is_pg_pending = true;
			else if (c->joins_pending && --c->joins_pending == 0)
				conn_opened(c);
			goto out;
		}
		char *resp = json_dumps(json_object_get(payload, "response"),
					JSON_COMPACT | JSON_ENCODE_ANY);
		set_error(c->w, "join", resp ? resp : "?");
		free(resp);
		conn_fail(c, F_JOIN);
	} else if (!strcmp(ev, "system") && c->is_pg_pending) {
		const char *msg = json_string_value(json_object_get(payload, "message"));
		if (status && !strcmp(status, "ok")) {
			c->is_pg_pending = false;
			if (c->joins_pending && --c->joins_pending == 0)
				conn_opened(c);
		} else {
			set_error(c->w, "postgres_changes", msg ? msg : "?");
			conn_fail(c, F_JOIN);
		}
	} else {
		c->w->other_msgs++;
	}
out:
	json_decref(m);
}

/* ---- live queries: receiving (live) ------------------------------------------ */

/* The subscriber's slot of definition id "q<k>", or -1. */
static int live_slot(const struct lsub *ls, const char *id)
{
	if (!id || id[0] != 'q')
		return -1;
	char *end;
	unsigned long k = strtoul(id + 1, &end, 10);
	for (uint32_t j = 0; !*end && j < ls->n_q; j++)
		if (ls->def[j] == k)
			return (int)j;
	return -1;
}

static long key_index(const json_t *keys, const char *key)
{
	for (size_t i = 0; i < json_array_size(keys); i++)
		if (!strcmp(json_string_value(json_array_get(keys, i)), key))
			return (long)i;
	return -1;
}

struct placed_op {
	json_int_t index;
	const json_t *op;
};

static int by_placed_index(const void *a, const void *b)
{
	const struct placed_op *x = a, *y = b;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Applies a diff's ops to a copy as docs/live.md says: leaves and moves out,
 * enters and moves in at their index in ascending order, then changes.
 * Returns false when an op does not fit the copy. */
static bool live_apply_ops(json_t *rows, json_t *keys, const json_t *ops)
{
	size_t i, n_pl = 0;
	const json_t *op;
	struct placed_op *pl = calloc(json_array_size(ops) + 1, sizeof *pl);
	bool ok = pl != NULL;
	json_array_foreach(ops, i, op) {
		const char *o = json_string_value(json_object_get(op, "op"));
		const char *key = json_string_value(json_object_get(op, "key"));
		if (!ok || !o || !key) {
			ok = false;
			break;
		}
		if (!strcmp(o, "leave") || !strcmp(o, "move")) {
			long at = key_index(keys, key);
			if (at < 0) {
				ok = false;
				break;
			}
			json_array_remove(rows, (size_t)at);
			json_array_remove(keys, (size_t)at);
		}
		if (!strcmp(o, "enter") || !strcmp(o, "move"))
			pl[n_pl++] = (struct placed_op){json_integer_value(json_object_get(op, "index")), op};
	}
	if (ok && n_pl)
		qsort(pl, n_pl, sizeof *pl, by_placed_index);
	for (size_t k = 0; ok && k < n_pl; k++) {
		json_t *row = json_object_get(pl[k].op, "row");
		const char *key = json_string_value(json_object_get(pl[k].op, "key"));
		if (!row || pl[k].index < 0 || (size_t)pl[k].index > json_array_size(rows)) {
			ok = false;
			break;
		}
		json_array_insert(rows, (size_t)pl[k].index, row);
		json_array_insert_new(keys, (size_t)pl[k].index, json_string(key));
	}
	free(pl);
	json_array_foreach(ops, i, op) {
		if (!ok)
			break;
		if (strcmp(json_string_value(json_object_get(op, "op")), "change"))
			continue;
		long at = key_index(keys, json_string_value(json_object_get(op, "key")));
		json_t *row = json_object_get(op, "row");
		if (at < 0 || !row) {
			ok = false;
			break;
		}
		json_array_set(rows, (size_t)at, row);
	}
	return ok;
}

/* Parses a live_query message and brings the copies up to it (verifying
 * subscribers, and every subscriber's first message, which must hold a
 * result for each of its queries). Returns false on an error entry. */
static bool live_parse(struct conn *c, const uint8_t *data, size_t len)
{
	struct worker *w = c->w;
	struct lsub *ls = c->lv;
	json_t *m = json_loadb((const char *)data, len, 0, NULL), *payload;
	const char *ev = m ? phx_event(w->run, m, &payload) : NULL;
	const json_t *qs = ev ? json_object_get(payload, "queries") : NULL;
	bool ok = true;
	size_t i;
	const json_t *e;
	if (!json_is_array(qs)) {
		w->bad_msgs++;
		json_decref(m);
		return true;
	}
	json_array_foreach(qs, i, e) {
		const char *kind = json_string_value(json_object_get(e, "kind"));
		int j = live_slot(ls, json_string_value(json_object_get(e, "id")));
		if (!kind || j < 0) {
			w->bad_msgs++;
			continue;
		}
		if (!strcmp(kind, "error")) {
			char msg[128];
			snprintf(msg, sizeof msg, "q%u: %.40s %.70s", ls->def[j],
				 json_string_value(json_object_get(e, "code")) ?: "?",
				 json_string_value(json_object_get(e, "message")) ?: "?");
			set_error(w, "live query", msg);
			w->live_errors++;
			ok = false;
		} else if (!strcmp(kind, "result")) {
			json_decref(ls->rows[j]);
			json_decref(ls->keys[j]);
			ls->rows[j] = json_copy(json_object_get(e, "rows"));
			ls->keys[j] = json_copy(json_object_get(e, "keys"));
			ls->has[j] = json_is_array(ls->rows[j]) && json_is_array(ls->keys[j]);
		} else if (!strcmp(kind, "diff") && ls->has[j]) {
			if (!live_apply_ops(ls->rows[j], ls->keys[j], json_object_get(e, "ops"))) {
				set_error(w, "live diff", "an op that does not fit the copy");
				w->diff_errors++;
				ls->has[j] = false; /* reported as a mismatch at the end */
			}
		} else if (!strcmp(kind, "diff")) {
			w->diff_errors++; /* a diff before any result */
		}
	}
	json_decref(m);
	return ok;
}

/* The write times in a message newer than any the subscriber saw: one
 * latency sample per distinct one ("t" of window rows, "last" = t.max() of
 * aggregate groups; a row that comes back into a window, or a group whose
 * newest row left, carries an older time and is not a sample). */
static void live_latency(struct conn *c, const uint8_t *p, size_t len, bool is_sample)
{
	static const char *const keys[] = {"\"t\":", "\"last\":"};
	struct lsub *ls = c->lv;
	uint64_t fresh[64], top = ls->max_t;
	size_t n = 0;
	for (size_t k = 0; k < 2; k++) {
		size_t kl = strlen(keys[k]);
		const uint8_t *s = p, *end = p + len, *at;
		while (s < end && (at = memmem(s, (size_t)(end - s), keys[k], kl))) {
			uint64_t v = 0;
			s = at + kl;
			for (; s < end && *s >= '0' && *s <= '9'; s++)
				v = v * 10 + (uint64_t)(*s - '0');
			if (v <= ls->max_t)
				continue;
			if (v > top)
				top = v;
			size_t i = 0;
			while (i < n && fresh[i] != v)
				i++;
			if (i == n && n < sizeof fresh / sizeof *fresh)
				fresh[n++] = v;
		}
	}
	ls->max_t = top;
	if (!is_sample || !n)
		return;
	uint64_t now = rt_mono_ns();
	for (size_t i = 0; i < n; i++)
		hist_record(&c->w->hist, now > fresh[i] ? now - fresh[i] : 0);
	c->w->lat_samples += n;
}

static void live_message(struct conn *c, const uint8_t *data, size_t len)
{
	struct worker *w = c->w;
	struct lsub *ls = c->lv;
	uint64_t pos;
	if (!find_uint(data, len, "\"position\":\"", &pos)) {
		w->bad_msgs++;
		return;
	}
	if (!ls->got_result) {
		/* the results: the state the run starts from */
		if (!live_parse(c, data, len)) {
			conn_fail(c, F_JOIN);
			return;
		}
		ls->got_result = true;
		c->last_pos = pos;
		atomic_max(&w->run->p0, pos);
		live_latency(c, data, len, false);
		if (ls->got_reply && c->joins_pending && --c->joins_pending == 0)
			conn_opened(c);
		return;
	}
	if (pos <= c->last_pos)
		w->duplicates++;
	c->last_pos = pos;
	atomic_max(&w->max_pos, pos);
	w->delivered++;
	live_latency(c, data, len, c->state == CS_OPEN && w->phase == PH_RUN);
	if (ls->is_verify)
		live_parse(c, data, len);
}

static void on_ws_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t len)
{
	struct conn *c = user;
	struct worker *w = c->w;
	if (c->state != CS_JOINING && c->state != CS_OPEN)
		return;
	if (!data || !len) {
		w->other_msgs++;
		return;
	}
	if (op == RT_WS_BINARY) {
		/* kind 4: kind, topic_len, event_len, meta_len, encoding */
		if (len >= 5 && data[0] == 4) {
			size_t off = 5 + (size_t)data[1] + data[2] + data[3];
			if (off <= len) {
				record_delivery(c, data + off, len - off);
				return;
			}
		}
		w->other_msgs++;
		return;
	}
	size_t head = len < 300 ? len : 300;
	if (c->lv && (memmem(data, head, ",\"live_query\",", 14) ||
		      memmem(data, head, "\"event\":\"live_query\"", 20))) {
		live_message(c, data, len);
	} else if (c->state == CS_JOINING) {
		handle_setup_msg(c, data, len);
	} else if (w->run->o.scenario == SC_NOTIFY) {
		notify_message(c, data, len);
	} else if (is_pg_scenario(w->run)) {
		if (memmem(data, head, ",\"postgres_changes\",", 20) ||
		    memmem(data, head, "\"event\":\"postgres_changes\"", 26))
			record_change(c, data, len);
		else if (memmem(data, len, "\"resync_required\"", 17)) {
			set_error(w, "resync", "the server asked for a resync");
			w->bad_msgs++;
		} else
			w->other_msgs++;
	} else if (len > 40 && (memmem(data, head, "\",\"broadcast\",", 14) ||
				memmem(data, head, "\"event\":\"broadcast\"", 19))) {
		record_delivery(c, data, len);
	} else {
		w->other_msgs++;
	}
}

static void feed_ws(struct conn *c, uint8_t *data, size_t len)
{
	int rc = rt_ws_feed(&c->ws, data, len);
	if (c->state >= CS_CLOSING)
		return;
	uint16_t code = rt_ws_peer_close_code(&c->ws);
	if (rc == 0 && !code) {
		flush_conn(c);
		return;
	}
	char why[64];
	if (code) {
		snprintf(why, sizeof why, "close code %u", code);
		if (!is_storm_run(c))
			set_error(c->w, "server close", why);
		flush_conn(c);
		conn_lost(c, UV_EOF);
	} else {
		set_error(c->w, "protocol", rc == RT_ENOMEM ? "out of memory" : "bad frame from server");
		conn_fail(c, rc == RT_ENOMEM ? F_NOMEM : F_PROTOCOL);
	}
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
	rt_ws_init(&c->ws, RT_WS_CLIENT, &ws_cbs, c, MAX_MSG, NULL);
	send_joins(c);
	if (rest_len && c->state == CS_JOINING)
		feed_ws(c, (uint8_t *)hs + rest_off, rest_len);
	free(hs);
}

/* ---- REST writer (changes) ------------------------------------------------- */

static void live_answer(struct conn *c, uint32_t changes, unsigned status);

static int on_http_done(http_parser *p)
{
	struct conn *c = p->data;
	struct worker *w = c->w;
	if (!c->if_len) {
		set_error(w, "rest", "an answer to no request");
		return 1;
	}
	uint32_t topic = c->inflight[c->if_head];
	c->if_head = (c->if_head + 1) % PIPELINE;
	c->if_len--;
	if (w->run->o.scenario == SC_LIVE) {
		live_answer(c, topic, p->status_code);
		return 0;
	}
	if (p->status_code >= 200 && p->status_code < 300) {
		/* a request holds write_rows rows, of consecutive topics from `topic` */
		struct run *r = w->run;
		for (long i = 0; i < r->o.write_rows; i++) {
			w->acked++;
			w->sent_per_topic[(topic + (uint32_t)i) % (uint32_t)r->o.topics]++;
		}
	} else {
		char s[16];
		snprintf(s, sizeof s, "HTTP %u", p->status_code);
		set_error(w, "rest write", s);
		w->write_failed++;
	}
	return 0;
}

static const http_parser_settings http_settings = {.on_message_complete = on_http_done};

static void feed_http(struct conn *c, const uint8_t *data, size_t len)
{
	size_t n = http_parser_execute(c->http, &http_settings, (const char *)data, len);
	if (n != len || HTTP_PARSER_ERRNO(c->http) != HPE_OK) {
		set_error(c->w, "rest", http_errno_description(HTTP_PARSER_ERRNO(c->http)));
		conn_fail(c, F_PROTOCOL);
	}
}

/* ---- reading and connecting ------------------------------------------------- */

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
	if (c->role == ROLE_WRITER)
		feed_http(c, (const uint8_t *)buf->base, (size_t)nread);
	else if (c->state == CS_HANDSHAKE)
		feed_handshake(c, (const uint8_t *)buf->base, (size_t)nread);
	else
		feed_ws(c, (uint8_t *)buf->base, (size_t)nread);
	atomic_store_explicit(&c->w->delivered_shared, c->w->delivered, memory_order_relaxed);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->handle->data;
	struct worker *w = c->w;
	struct run *r = w->run;
	if (status == UV_ECANCELED || c->state != CS_CONNECTING)
		return;
	if (status < 0) {
		if (!is_storm_run(c))
			set_error(w, "connect", uv_strerror(status));
		conn_fail(c, F_CONNECT);
		return;
	}
	if (is_storm_run(c) && atomic_load_explicit(&r->is_restarted, memory_order_acquire)) {
		/* (connects to the dying server's backlog succeed too: not those) */
		uint64_t zero = 0, now = rt_mono_ns();
		atomic_compare_exchange_strong(&w->t_first_connect_ns, &zero, now);
	}
	uv_tcp_nodelay(&c->tcp, 1);
	int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc) {
		set_error(w, "read", uv_strerror(rc));
		conn_fail(c, F_HANDSHAKE);
		return;
	}
	if (c->role == ROLE_WRITER) {
		c->state = CS_HANDSHAKE; /* so the output flushes */
		conn_opened(c);
		return;
	}
	uint8_t raw[16];
	char key[32];
	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (uint8_t)xorshift(&w->rng);
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
	rt_ws_accept_key(key, strlen(key), c->accept);
	char req_buf[2048];
	int n = snprintf(req_buf, sizeof req_buf,
			 "GET %s?apikey=%s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
			 "User-Agent: rtbench\r\n\r\n",
			 r->o.path, r->o.apikey, r->ws_query, r->host_header, key);
	if (n < 0 || (size_t)n >= sizeof req_buf) {
		set_error(w, "handshake", "request too long");
		conn_fail(c, F_HANDSHAKE);
		return;
	}
	c->state = CS_HANDSHAKE;
	if (out_append(c, req_buf, (size_t)n)) {
		conn_fail(c, F_NOMEM);
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
		c->state = CS_NEW;
		conn_fail(c, F_CONNECT);
		return;
	}
	c->tcp.data = c;
	c->is_handle_live = true;
	c->state = CS_CONNECTING;
	w->n_inflight++;
	if (c->role == ROLE_WRITER && !c->http) {
		c->http = malloc(sizeof *c->http);
		c->inflight = malloc(PIPELINE * sizeof *c->inflight);
		if (!c->http || !c->inflight) {
			conn_fail(c, F_NOMEM);
			return;
		}
		http_parser_init(c->http, HTTP_RESPONSE);
		c->http->data = c;
	}
	/* node 0 is --url's address (its port is known only once a spawned
	 * server has one) */
	const struct sockaddr_storage *to = (c->role == ROLE_SUB || c->role == ROLE_SLOW) && c->node
						    ? &w->run->sub_addrs[c->node]
						    : &w->run->addr;
	rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)to, on_connect);
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

/* storm: reconnects dropped sockets whose time has come, within the batch window. */
static void retry_due(struct worker *w)
{
	uint64_t now = rt_mono_ns();
	for (size_t i = 0; i < w->n_conns && w->n_inflight < w->batch; i++) {
		struct conn *c = &w->conns[i];
		if (c->state == CS_WAIT_RETRY && !c->is_handle_live && c->retry_at_ns <= now) {
			w->reconnects++;
			conn_start(c);
		}
	}
}
/* ---- publisher (fanout) and writers (changes) --------------------------------- */

static void finish_publishing(struct worker *w)
{
	uv_timer_stop(&w->pub_timer);
	atomic_store_explicit(&w->run->pub_done, 1, memory_order_release);
}

static void publish_broadcast(struct worker *w, uint32_t topic)
{
	struct run *r = w->run;
	struct conn *c = &w->conns[topic / TOPICS_PER_PUB];
	if (c->state != CS_OPEN || c->out_len > PUB_MAX_OUT) {
		w->pub_skipped++;
		return;
	}
	uint32_t jr = topic % TOPICS_PER_PUB + 1;
	char topic_s[128];
	int tl = snprintf(topic_s, sizeof topic_s, "realtime:%s%u", r->topic_prefix, topic);
	put_digits(w->payload + 6, rt_mono_ns());
	put_digits(w->payload + 13 + STAMP_LEN, ++w->pub_seq);
	bool ok;
	if (r->o.vsn == 1 || r->o.encoding == ENC_TEXT) {
		/* a JSON text message, as vsn 1.0.0 (and realtime-js without binary) sends */
		size_t cap = w->payload_len + 64;
		char *p = malloc(cap);
		if (!p) {
			w->pub_skipped++;
			return;
		}
		int n = snprintf(p, cap, "{\"type\":\"broadcast\",\"event\":\"bench\",\"payload\":%.*s}",
				 (int)w->payload_len, (const char *)w->payload);
		ok = n > 0 && (size_t)n < cap && send_phx(c, jr, 0, topic_s, "broadcast", p, (size_t)n);
		free(p);
	} else {
		/* kind 3: kind, join_ref_len, ref_len, topic_len, event_len, meta_len, encoding */
		char jrs[16];
		int jl = snprintf(jrs, sizeof jrs, "%u", jr);
		size_t hl = 7 + (size_t)jl + (size_t)tl + 5, total = hl + w->payload_len;
		uint8_t *b = (uint8_t *)scratch(w, total);
		if (!b) {
			w->pub_skipped++;
			return;
		}
		b[0] = 3;
		b[1] = (uint8_t)jl;
		b[2] = 0;
		b[3] = (uint8_t)tl;
		b[4] = 5;
		b[5] = 0;
		b[6] = r->o.encoding == ENC_JSON ? 1 : 0;
		memcpy(b + 7, jrs, (size_t)jl);
		memcpy(b + 7 + jl, topic_s, (size_t)tl);
		memcpy(b + 7 + jl + tl, "bench", 5);
		memcpy(b + hl, w->payload, w->payload_len);
		ok = send_ws(c, RT_WS_BINARY, b, total);
	}
	if (ok) {
		w->pub_sent++;
		w->sent_per_topic[topic]++;
	} else {
		w->pub_skipped++;
	}
}

/* One REST insert of write_rows rows (topics from `topic` on, consecutive),
 * pipelined on the next writer connection. */
static void publish_write(struct worker *w, uint32_t topic)
{
	struct run *r = w->run;
	size_t rows = (size_t)r->o.write_rows;
	struct conn *c = &w->conns[w->next_writer++ % w->n_pub];
	if (c->state != CS_OPEN || c->if_len == PIPELINE || c->out_len > PUB_MAX_OUT) {
		w->pub_skipped += rows;
		return;
	}
	size_t row_cap = 128 + w->payload_len;
	size_t head_cap = 2 * strlen(r->o.apikey) + strlen(r->host_header) + 256;
	char *req = scratch(w, head_cap + rows * row_cap + 4);
	if (!req) {
		w->pub_skipped += rows;
		return;
	}
	/* the body first, after room for the head; then the head right before it */
	char *body = req + head_cap;
	size_t bl = 0;
	uint64_t t = rt_mono_ns();
	body[bl++] = '[';
	for (size_t i = 0; i < rows; i++) {
		uint32_t k = (topic + (uint32_t)i) % (uint32_t)r->o.topics;
		int n = snprintf(body + bl, row_cap,
				 "%s{\"topic\":%u,\"t\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"p\":\"%.*s\"}",
				 i ? "," : "", k, t, ++w->pub_seq, (int)w->payload_len,
				 (const char *)w->payload);
		if (n < 0 || (size_t)n >= row_cap) {
			w->pub_skipped += rows;
			return;
		}
		bl += (size_t)n;
	}
	body[bl++] = ']';
	char head[1024];
	int hl = snprintf(head, sizeof head,
			  "POST /rest/v1/" TABLE " HTTP/1.1\r\nHost: %s\r\napikey: %s\r\n"
			  "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
			  "Prefer: return=minimal\r\nContent-Length: %zu\r\n\r\n",
			  r->host_header, r->o.apikey, r->o.apikey, bl);
	if (hl < 0 || (size_t)hl >= sizeof head || (size_t)hl > head_cap) {
		w->pub_skipped += rows;
		return;
	}
	memcpy(body - hl, head, (size_t)hl);
	if (out_append(c, body - hl, (size_t)hl + bl)) {
		w->pub_skipped += rows;
		return;
	}
	c->inflight[(c->if_head + c->if_len) % PIPELINE] = topic;
	c->if_len++;
	w->pub_sent += rows;
}

/* ---- live queries: definitions, the table's model, writes, the naive way ---------- */

/* Definition k: even k the window of property k/2, odd k the aggregate of
 * region (k/2)/5 and status (k/2)%5, grouped by property. */
static char *live_def_text(uint32_t k)
{
	char buf[256];
	uint32_t i = k / 2;
	if (k % 2 == 0)
		snprintf(buf, sizeof buf,
			 "select=id,status,price,t&property_id=eq.%u&order=created_at.desc&limit=%d", i,
			 LIVE_WINDOW);
	else
		snprintf(buf, sizeof buf,
			 "select=property_id,total:price.sum(),n:count(),last:t.max()&region=eq.%u"
			 "&status=eq.%s&order=property_id",
			 i / LIVE_STATUSES, live_status_name(i % LIVE_STATUSES));
	return strdup(buf);
}

static void model_set(struct model *m, uint32_t id, uint16_t prop, uint8_t status)
{
	if (id >= m->cap_ids) {
		size_t cap = m->cap_ids ? m->cap_ids : 4096;
		while (cap <= id)
			cap *= 2;
		m->at = realloc(m->at, cap * sizeof *m->at);
		m->prop = realloc(m->prop, cap * sizeof *m->prop);
		m->status = realloc(m->status, cap * sizeof *m->status);
		if (!m->at || !m->prop || !m->status)
			abort();
		for (size_t i = m->cap_ids; i < cap; i++)
			m->at[i] = UINT32_MAX;
		m->cap_ids = cap;
	}
	if (m->n_alive == m->cap_alive) {
		m->cap_alive = m->cap_alive ? 2 * m->cap_alive : 4096;
		if (!(m->alive = realloc(m->alive, m->cap_alive * sizeof *m->alive)))
			abort();
	}
	m->at[id] = (uint32_t)m->n_alive;
	m->alive[m->n_alive++] = id;
	m->prop[id] = prop;
	m->status[id] = status;
}

static void model_swap(struct model *m, size_t a, size_t b)
{
	uint32_t x = m->alive[a], y = m->alive[b];
	m->alive[a] = y;
	m->alive[b] = x;
	m->at[y] = (uint32_t)a;
	m->at[x] = (uint32_t)b;
}

/* Moves n distinct random ids to alive[0..n) (a partial shuffle). */
static void model_sample(struct model *m, size_t n, uint64_t *rng)
{
	for (size_t k = 0; k < n; k++)
		model_swap(m, k, k + xorshift(rng) % (m->n_alive - k));
}

static void model_free(struct model *m)
{
	free(m->alive);
	free(m->at);
	free(m->prop);
	free(m->status);
}

/* Notes one definition a change affects (the naive way re-reads it). */
static void naive_note(struct run *r, uint32_t def)
{
	r->naive_ring[r->affected++ % NAIVE_RING] = (uint16_t)def;
}

/* The definitions a change of a row of property p affects: its window, the
 * aggregate of its old status (old_s < 0: none) and of its new one. */
static void naive_change(struct run *r, uint32_t p, int old_s, int new_s)
{
	uint32_t base = (uint32_t)(p % (uint32_t)r->n_regions) * LIVE_STATUSES;
	naive_note(r, 2 * p);
	if (old_s >= 0)
		naive_note(r, 2 * (base + (uint32_t)old_s) + 1);
	if (new_s >= 0 && new_s != old_s)
		naive_note(r, 2 * (base + (uint32_t)new_s) + 1);
	r->naive_n++;
}

/* Appends one request (head and body) to c and notes it in flight with
 * its number of changes (0: a read). */
static bool live_request(struct conn *c, const char *method, const char *target,
			 const struct rt_buf *body, uint32_t changes)
{
	struct run *r = c->w->run;
	char head[2048];
	int hl = snprintf(head, sizeof head,
			  "%s %s HTTP/1.1\r\nHost: %s\r\napikey: %s\r\nAuthorization: Bearer %s\r\n"
			  "Content-Type: application/json\r\nPrefer: return=minimal\r\n"
			  "Content-Length: %zu\r\n\r\n",
			  method, target, r->host_header, r->o.apikey, r->o.apikey, body ? body->len : 0);
	if (hl < 0 || (size_t)hl >= sizeof head || out_append(c, head, (size_t)hl) ||
	    (body && out_append(c, body->data, body->len)))
		return false;
	c->inflight[(c->if_head + c->if_len) % PIPELINE] = changes;
	c->if_len++;
	return true;
}

/* One write of write_rows changes on the writer connection: by turns five
 * inserts (new bookings), three updates (status, price) and two deletes of
 * random existing rows, every row stamped with its send time t. */
static void publish_live(struct worker *w)
{
	struct run *r = w->run;
	struct model *m = &r->model;
	struct conn *c = &w->conns[0];
	size_t rows = (size_t)r->o.write_rows;
	if (c->state != CS_OPEN || c->if_len == PIPELINE || c->out_len > PUB_MAX_OUT) {
		w->pub_skipped += rows;
		return;
	}
	unsigned turn = (unsigned)(w->live_reqs++ % 10);
	int kind = turn < 5 ? 0 : turn < 8 ? 1 : 2;
	if (kind && m->n_alive < 2 * rows)
		kind = 0;
	uint64_t t = rt_mono_ns();
	struct rt_buf body, target;
	rt_buf_init(&body);
	rt_buf_init(&target);
	rt_buf_append_str(&target, "/rest/v1/" LIVE_TABLE);
	if (kind == 0) {
		rt_buf_append_byte(&body, '[');
		for (size_t i = 0; i < rows; i++) {
			uint32_t id = m->next_id++, p = (uint32_t)(xorshift(&w->rng) % (uint64_t)r->n_props);
			int st = (int)(xorshift(&w->rng) % LIVE_STATUSES);
			rt_buf_printf(&body,
				      "%s{\"id\":%u,\"property_id\":%u,\"region\":%ld,\"status\":\"%s\","
				      "\"price\":%u,\"created_at\":%u,\"t\":%" PRIu64 "}",
				      i ? "," : "", id, p, (long)p % r->n_regions, live_status_name(st),
				      (unsigned)(1 + xorshift(&w->rng) % 1000), id, t);
			model_set(m, id, (uint16_t)p, (uint8_t)st);
			naive_change(r, p, -1, st);
		}
		rt_buf_append_byte(&body, ']');
	} else {
		model_sample(m, rows, &w->rng);
		rt_buf_append_str(&target, "?id=in.(");
		for (size_t i = 0; i < rows; i++)
			rt_buf_printf(&target, "%s%u", i ? "," : "", m->alive[i]);
		rt_buf_append_byte(&target, ')');
		int st = (int)(xorshift(&w->rng) % LIVE_STATUSES);
		for (size_t i = 0; i < rows; i++) {
			uint32_t id = m->alive[i];
			naive_change(r, m->prop[id], m->status[id], kind == 1 ? st : -1);
			m->status[id] = (uint8_t)st;
		}
		if (kind == 1) {
			rt_buf_printf(&body, "{\"status\":\"%s\",\"price\":%u,\"t\":%" PRIu64 "}",
				      live_status_name(st), (unsigned)(1 + xorshift(&w->rng) % 1000), t);
		} else {
			/* the sampled ids leave: swap the tail into their places */
			for (size_t i = rows; i-- > 0;) {
				uint32_t id = m->alive[i];
				model_swap(m, i, m->n_alive - 1);
				m->at[id] = UINT32_MAX;
				m->n_alive--;
			}
		}
	}
	static const char *const methods[] = {"POST", "PATCH", "DELETE"};
	rt_buf_append_byte(&target, 0);
	if (live_request(c, methods[kind], (const char *)target.data, kind == 2 ? NULL : &body,
			 (uint32_t)rows)) {
		w->pub_sent += rows;
		w->n_mix[kind] += rows;
	} else {
		w->pub_skipped += rows;
	}
	rt_buf_deinit(&body);
	rt_buf_deinit(&target);
}

/* An answer on a live writer or naive connection. */
static void live_answer(struct conn *c, uint32_t changes, unsigned status)
{
	struct worker *w = c->w;
	bool ok = status >= 200 && status < 300;
	if (!ok) {
		char s[48];
		snprintf(s, sizeof s, "HTTP %u to a %s", status, changes ? "write" : "read");
		set_error(w, "rest", s);
	}
	if (changes == KEEPALIVE_TAG)
		return;
	if (!changes) {
		w->naive_got += ok;
		w->naive_failed += !ok;
		return;
	}
	if (ok) {
		w->acked += changes;
		atomic_store_explicit(&w->acked_shared, w->acked, memory_order_relaxed);
	} else {
		w->write_failed += changes;
	}
	atomic_store_explicit(&w->answered_shared, w->acked + w->write_failed, memory_order_relaxed);
}

/* The naive way: the naive connections (conns[1..n_pub)) re-read, as fast as
 * the server answers, the queries the last changes affected, in their order. */
static void on_naive_timer(uv_timer_t *t)
{
	struct worker *w = t->data;
	struct run *r = w->run;
	uint64_t now = rt_mono_ns();
	if (atomic_load(&r->stop) || now >= w->naive_t1) {
		uv_timer_stop(t);
		w->naive_t1 = now;
		atomic_store_explicit(&w->naive_got_shared, w->naive_got, memory_order_relaxed);
		atomic_store_explicit(&w->naive_ns_shared, now - w->naive_t0, memory_order_relaxed);
		atomic_store_explicit(&r->naive_done, 1, memory_order_release);
		return;
	}
	uint64_t ring = r->affected < NAIVE_RING ? r->affected : NAIVE_RING;
	if (!ring) {
		w->naive_t1 = now; /* nothing was affected: nothing to re-read */
		return;
	}
	for (size_t i = 1; i < w->n_pub; i++) {
		struct conn *c = &w->conns[i];
		while (c->state == CS_OPEN && c->if_len < NAIVE_DEPTH) {
			char target[400];
			uint32_t def = r->naive_ring[w->naive_cursor++ % ring];
			snprintf(target, sizeof target, "/rest/v1/" LIVE_TABLE "?%s", r->defs[def]);
			if (!live_request(c, "GET", target, NULL, 0))
				break;
			w->naive_sent++;
		}
		flush_conn(c);
	}
}

/* Keeps the naive connections from going idle until their phase. */
static void keep_naive_alive(struct worker *w)
{
	uint64_t now = rt_mono_ns();
	if (w->is_naive || now - w->naive_t0 < (uint64_t)KEEPALIVE_MS * 1000000u)
		return;
	w->naive_t0 = now;
	for (size_t i = 1; i < w->n_pub; i++) {
		struct conn *c = &w->conns[i];
		if (c->state == CS_OPEN && !c->if_len &&
		    live_request(c, "GET", "/rest/v1/" LIVE_TABLE "?select=id&limit=1", NULL,
				 KEEPALIVE_TAG))
			flush_conn(c);
	}
}

static void start_naive(struct worker *w)
{
	w->is_naive = true;
	w->naive_t0 = rt_mono_ns();
	w->naive_t1 = w->naive_t0 + (uint64_t)(w->run->o.naive_s * 1e9);
	uv_timer_start(&w->pub_timer, on_naive_timer, 0, PUB_TICK_MS);
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
	bool is_rows = r->o.scenario == SC_CHANGES || r->o.scenario == SC_LIVE ||
		       r->o.scenario == SC_NOTIFY;
	uint64_t step = is_rows ? (uint64_t)r->o.write_rows : 1;
	for (uint64_t i = 0; i + step <= n; i += step, w->pub_attempted += step) {
		uint32_t topic = (uint32_t)(w->pub_attempted % (uint64_t)r->o.topics);
		if (r->o.scenario == SC_LIVE)
			publish_live(w);
		else if (r->o.scenario == SC_CHANGES || r->o.scenario == SC_NOTIFY)
			publish_write(w, topic); /* notify: the row's topic is its user */
		else
			publish_broadcast(w, topic);
	}
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
	uv_close((uv_handle_t *)&w->turn_check, NULL);
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
		if (c->state == CS_OPEN && c->role != ROLE_WRITER && c->role != ROLE_SLOW)
			send_heartbeat(c);
	}
}

static void start_run(struct worker *w)
{
	w->phase = PH_RUN;
	if (w->n_pub)
		start_publishing(w);
	for (size_t i = 0; i < w->n_conns; i++) {
		struct conn *c = &w->conns[i];
		if (c->role == ROLE_SLOW && c->state == CS_OPEN) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			w->n_slow_stopped++;
		}
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
		if (atomic_load_explicit(&r->go, memory_order_acquire))
			start_run(w);
		break;
	case PH_RUN:
		if (r->o.scenario == SC_STORM)
			retry_due(w);
		if (r->o.scenario == SC_LIVE && w->n_pub > 1 && !w->is_naive &&
		    atomic_load_explicit(&r->naive_go, memory_order_acquire))
			start_naive(w);
		if (r->o.scenario == SC_LIVE && w->n_pub > 1)
			keep_naive_alive(w);
		break;
	case PH_DONE:
		break;
	}
	send_heartbeats(w);
}

/* After each loop turn: the turn's time not spent waiting in epoll (its
 * callbacks, and any time the thread was runnable but not running). A frame
 * that arrives during a turn waits up to that long to be read, so the
 * distribution bounds what the generator itself adds to the latency. */
static void on_turn(uv_check_t *h)
{
	struct worker *w = h->data;
	uint64_t now = rt_mono_ns(), idle = uv_metrics_idle_time(&w->loop);
	if (w->phase == PH_RUN && w->turn_ns) {
		uint64_t span = now - w->turn_ns, waited = idle - w->turn_idle_ns;
		hist_record(&w->turn_hist, span > waited ? span - waited : 0);
	}
	w->turn_ns = now;
	w->turn_idle_ns = idle;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->setup_deadline_ns = rt_mono_ns() + (uint64_t)(w->run->o.setup_timeout_s * 1e9);
	uv_timer_start(&w->tick, on_tick, 0, TICK_MS);
	if (!w->run->o.busy_poll) {
		uv_run(&w->loop, UV_RUN_DEFAULT);
		return NULL;
	}
	/* Never sleep in epoll: a sleeping reader costs the server a cross-core
	 * wake-up per write, which would be measured instead of the server. */
	while (uv_run(&w->loop, UV_RUN_NOWAIT))
		;
	return NULL;
}

static void worker_free(struct worker *w)
{
	if (!w)
		return;
	/* Handles were closed by close_everything; run the loop to their callbacks. */
	for (int i = 0; i < 1000 && uv_loop_close(&w->loop) == UV_EBUSY; i++)
		uv_run(&w->loop, UV_RUN_NOWAIT);
	for (size_t i = 0; i < w->n_conns; i++) {
		free(w->conns[i].http);
		free(w->conns[i].inflight);
		struct lsub *ls = w->conns[i].lv;
		for (uint32_t j = 0; ls && j < ls->n_q; j++) {
			json_decref(ls->rows[j]);
			json_decref(ls->keys[j]);
		}
		free(ls);
	}
	free(w->conns);
	free(w->joined_per_topic);
	free(w->sent_per_topic);
	free(w->payload);
	free(w->scratch);
	free(w);
}

/* n_pub publishers (fanout) or writers (changes), then n_subs subscribers of
 * which the last n_slow stop reading (fanout). Subscriber k (over all workers)
 * is first_sub + i * n_workers and listens on topic k mod T. */
static struct worker *worker_new(struct run *r, int id, size_t n_pub, size_t n_subs,
				 size_t n_slow, long first_sub)
{
	struct worker *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->run = r;
	w->id = id;
	w->n_pub = n_pub;
	w->n_conns = n_pub + n_subs + n_slow;
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
	uv_loop_configure(&w->loop, UV_METRICS_IDLE_TIME);
	uv_check_init(&w->loop, &w->turn_check);
	w->turn_check.data = w;
	uv_check_start(&w->turn_check, on_turn);
	uv_unref((uv_handle_t *)&w->turn_check);
	bool is_changes = r->o.scenario == SC_CHANGES || r->o.scenario == SC_NOTIFY;
	bool is_live = r->o.scenario == SC_LIVE;
	for (size_t i = 0; i < w->n_conns; i++) {
		struct conn *c = &w->conns[i];
		c->w = w;
		c->last_pos = r->resume_from;
		if (i < n_pub && (is_changes || is_live)) {
			c->role = ROLE_WRITER;
		} else if (i < n_pub) {
			c->role = ROLE_PUB;
			c->topic = (uint32_t)(i * TOPICS_PER_PUB);
			long left = r->o.topics - (long)c->topic;
			c->n_topics = (uint32_t)(left < TOPICS_PER_PUB ? left : TOPICS_PER_PUB);
		} else {
			long sub = first_sub + (long)(i - n_pub) * r->n_workers;
			c->role = i < n_pub + n_subs ? ROLE_SUB : ROLE_SLOW;
			c->topic = (uint32_t)(sub % r->o.topics);
			c->node = (uint8_t)(r->o.n_sub_ports ? sub % (r->o.n_sub_ports + 1) : 0);
			c->n_topics = 1;
			if (is_live && !(c->lv = calloc(1, sizeof *c->lv))) {
				worker_free(w);
				return NULL;
			}
			if (is_live) {
				/* subscriber k: definitions k*Q .. k*Q+Q-1 (mod D) */
				c->lv->index = (uint32_t)sub;
				c->lv->n_q = (uint32_t)r->o.per_sub;
				for (uint32_t j = 0; j < c->lv->n_q; j++)
					c->lv->def[j] = (uint32_t)(((uint64_t)sub * (uint64_t)r->o.per_sub + j) %
								   (uint64_t)r->o.queries);
				c->lv->is_verify = r->o.verify < 0 || sub < r->o.verify;
			}
		}
	}
	if (n_pub && !is_live) {
		size_t fixed = 6 + STAMP_LEN + 7 + STAMP_LEN + 7 + 2;
		if (is_changes) {
			/* the row's "p" column pads the body to about --payload bytes */
			w->payload_len = (size_t)r->o.payload > 60 ? (size_t)r->o.payload - 60 : 0;
		} else {
			/* {"t":"<20 digits>","s":"<20 digits>","p":"xxx…"} of exactly --payload bytes */
			w->payload_len = (size_t)r->o.payload > fixed ? (size_t)r->o.payload : fixed;
		}
		w->payload = malloc(w->payload_len + 1);
		if (!w->payload) {
			uv_loop_close(&w->loop);
			free(w->conns);
			free(w->joined_per_topic);
			free(w->sent_per_topic);
			free(w);
			return NULL;
		}
		memset(w->payload, 'x', w->payload_len);
		if (!is_changes) {
			memcpy(w->payload, "{\"t\":\"", 6);
			memcpy(w->payload + 6 + STAMP_LEN, "\",\"s\":\"", 7);
			memcpy(w->payload + 13 + 2 * STAMP_LEN, "\",\"p\":\"", 7);
			memcpy(w->payload + w->payload_len - 2, "\"}", 2);
		}
	}
	return w;
}
/* ---- notify: each subscriber on its own notifications channel ------------------ */

/* Subscriber K (topic K, one per user) joins realtime:notifications:<K>
 * privately with its own token (sub "K"). */
static void send_notify_join(struct conn *c)
{
	struct run *r = c->w->run;
	char payload[1536], topic[128], tok[1024];
	snprintf(topic, sizeof topic, "realtime:notifications:%u", c->topic);
	user_token(r, c->topic, tok, sizeof tok);
	int n = snprintf(payload, sizeof payload,
			 "{\"config\":{\"broadcast\":{\"ack\":false,\"self\":false},"
			 "\"presence\":{\"key\":\"\",\"enabled\":false},\"postgres_changes\":[],"
			 "\"private\":true}%s}",
			 tok);
	uint32_t ref = ++c->next_ref;
	if (n < 0 || (size_t)n >= sizeof payload ||
	    !send_phx(c, ref, ref, topic, "phx_join", payload, (size_t)n))
		return;
	c->joins_pending = 1;
	flush_conn(c);
}

/* A `notification` event: the row it came from (data.record) carries the
 * write's send time t and its sequence number seq; anything else on the
 * channel (the join's inbox_state) only counts as other. */
static void notify_message(struct conn *c, const uint8_t *data, size_t len)
{
	struct worker *w = c->w;
	size_t head = len < 300 ? len : 300;
	if (!memmem(data, head, "\"event\":\"notification\"", 22)) {
		w->other_msgs++;
		return;
	}
	const uint8_t *rec = memmem(data, len, "\"record\":", 9);
	uint64_t t, seq;
	size_t left = rec ? len - (size_t)(rec - data) : 0;
	if (!rec || !find_uint(rec, left, "\"t\":", &t) || !find_uint(rec, left, "\"seq\":", &seq)) {
		w->bad_msgs++;
		return;
	}
	if (seq == c->last_seq) {
		w->duplicates++;
		return;
	}
	if (seq < c->last_seq)
		w->reordered++;
	else
		c->last_seq = seq;
	uint64_t now = rt_mono_ns();
	hist_record(&w->hist, now > t ? now - t : 0);
	w->delivered++;
}

/* ---- options ---------------------------------------------------------------- */

static const char usage[] =
	"Usage: rtbench SCENARIO --url ws://HOST:PORT[/PATH] --apikey KEY [options]\n"
	"\n"
	"Load generator for rtsync (Supabase Realtime protocol, vsn 1.0.0 or 2.0.0). Runs one\n"
	"scenario for a bounded time and prints one JSON line of results on stdout.\n"
	"\n"
	"Scenarios:\n"
	"  fanout   N subscribers over T topics (joined with broadcast.self=false); one publisher\n"
	"           socket per 100 topics sends broadcasts at a fixed rate, each carrying its send\n"
	"           time (CLOCK_MONOTONIC) and a sequence number; reports delivery latency\n"
	"           (p50/p90/p99/p999/max, us), sent, expected, delivered, lost, server CPU and RSS.\n"
	"           --slow K adds K subscribers that stop reading when publishing starts.\n"
	"  idle     N sockets each joined to one topic, held for --duration with heartbeats;\n"
	"           reports server RSS before, after setup, at the end, and per connection.\n"
	"  changes  N subscribers, subscriber i with the postgres_changes binding INSERT on\n"
	"           public." TABLE " filtered topic=eq.(i mod T) (server started with\n"
	"           --schema bench/schema.sql); --writers keep-alive connections POST rows at\n"
	"           --rate through /rest/v1, each row carrying its send time; reports write-to-\n"
	"           receive latency, expected, delivered, lost.\n"
	"  storm    N postgres_changes subscribers as in changes, joined with a resume position;\n"
	"           the server (--spawn) is killed, --changes rows are written into its database\n"
	"           (--db) while it is down, it is started again; every client reconnects,\n"
	"           rejoins with its last position and must get every row: reports the time\n"
	"           until all rejoined and all resumed, lost and duplicates.\n"
	"  live     N subscribers, each on its own channel with Q live queries (config.rtsync.live)\n"
	"           over D definitions on public." LIVE_TABLE " (server started with --schema\n"
	"           bench/schema-live.sql): half windows (property_id=eq.P, order=created_at.desc,\n"
	"           limit 20), half aggregates (price.sum(), count(), t.max() by property for one\n"
	"           region and status). The table is seeded through REST, then one keep-alive\n"
	"           connection inserts, updates and deletes --write-rows rows a request at --rate\n"
	"           changes/s; reports write-to-diff latency, position lag, server CPU per change,\n"
	"           then --naive seconds of the naive way (the affected queries re-read through\n"
	"           REST on --naive-conns connections) and finally compares every verifying\n"
	"           subscriber's copy with a REST read of its query.\n"
	"  notify   N users, each on its own private channel realtime:notifications:<K> with\n"
	"           its own token (--jwt-secret; sub \"K\"); the server runs a rule on\n"
	"           public." TABLE " that notifies the user named by the row's topic column\n"
	"           (--notify-rules bench/notify-rules.json); --writers connections POST rows\n"
	"           at --rate round-robin over the users; reports notifications delivered per\n"
	"           second, write-to-delivery latency, lost and duplicates (--topics is N).\n"
	"\n"
	"Common options:\n"
	"  --url URL              ws://HOST:PORT[/PATH]; PATH defaults to /realtime/v1/websocket;\n"
	"                         port 0 with --spawn: pick a free port, put it in {port} of CMD\n"
	"  --apikey KEY           token sent as ?apikey= (e.g. from `rtsync token`)\n"
	"  --sub-ports P,P,...    fanout: subscribers spread round-robin over the --url port and\n"
	"                         these (other nodes of a cluster on the same host); publishers\n"
	"                         stay on --url                                   (none)\n"
	"  --vsn V                protocol version: 1.0.0 (JSON objects) or 2.0.0     (2.0.0)\n"
	"  --spawn CMD            start the server with `sh -c 'exec CMD'`, wait until it listens,\n"
	"                         sample it as --server-pid, stop it (SIGTERM) at the end\n"
	"  --duration S           seconds to publish (fanout, changes) or hold (idle)   (10)\n"
	"  --server-pid PID       server process to sample in /proc (CPU, RSS)    (none)\n"
	"  --threads N            client threads, one libuv loop each             (1)\n"
	"  --busy-poll 0|1        1: the client loops poll without sleeping, so the server's\n"
	"                         writes never pay for waking the client (one core per thread;\n"
	"                         on a shared machine it competes with the others)    (0)\n"
	"  --batch N              connections in setup at once (listen backlog)   (500)\n"
	"  --setup-timeout S      give up on connections not joined by then       (60)\n"
	"  --heartbeat S          Phoenix heartbeat per socket every S seconds, 0 = none (25)\n"
	"  --topics T             topics                                          (1)\n"
	"  --drain S              wait at most S seconds for the last deliveries  (5)\n"
	"  -h, --help             this help\n"
	"\n"
	"fanout, changes:\n"
	"  --subscribers N        subscriber sockets                               (1000)\n"
	"  --rate R               broadcasts or writes per second, over all topics (1000; changes 200)\n"
	"  --payload P            fanout: user payload bytes (at least 62); changes: about the\n"
	"                         request body size                                (100)\n"
	"  --encoding E           fanout, 2.0.0: json: binary kind 3, JSON payload (realtime-js);\n"
	"                         binary: kind 3, opaque payload; text: JSON array  (json)\n"
	"  --slow K               fanout: K more subscribers that stop reading     (0)\n"
	"  --writers W            changes: REST connections, requests pipelined    (2)\n"
	"  --jwt-secret S         changes: subscriber K joins with its own token (role\n"
	"                         authenticated, sub \"K\"), signed with the server's secret\n"
	"  --rls                  changes: no filter; the table's policy (topic = auth.uid(),\n"
	"                         bench/schema-rls.sql) picks each subscriber's rows\n"
	"  --write-rows B         changes: rows per REST insert, one JSON array; --rate\n"
	"                         counts rows                                      (1)\n"
	"\n"
	"live:\n"
	"  --queries D            definitions, a multiple of 10: D/2 windows, D/2 aggregates (100)\n"
	"  --per-sub Q            live queries per subscriber (definitions kQ..kQ+Q-1)  (2)\n"
	"  --verify K             subscribers that apply every diff and are checked at the end;\n"
	"                         -1: all (the others only count and time)  (-1)\n"
	"  --seed-rows S          rows per property written before the subscribers join (100)\n"
	"  --throttle-ms MS       the channels' throttle_ms                       (0)\n"
	"  --naive S              seconds of the naive way after the live run, 0 = none (3)\n"
	"  --naive-conns C        REST connections for the naive way              (4)\n"
	"  (--rate counts changes, default 20000; --write-rows defaults to 100)\n"
	"\n"
	"idle:\n"
	"  --connections N        sockets to open                                  (10000)\n"
	"\n"
	"storm (needs --spawn and --db):\n"
	"  --subscribers N        clients                                          (1000)\n"
	"  --db FILE              the server's SQLite database (its --db)\n"
	"  --changes K            rows written while the server is down, over the topics (100)\n"
	"  --retry-ms MS          reconnect delay: first try after 0..MS, then MS/2..1.5 MS (100)\n"
	"  --signal S             KILL (crash) or TERM (clean stop) to take the server down (KILL)\n"
	"\n"
	"Exit status: 0 on a completed run, 1 if the run could not happen (no publisher, no\n"
	"connection, server not started), 2 on bad usage. Failed connections are counted in\n"
	"\"failed\", never fatal.\n";

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
	if (o->host[0] == '[' && o->host[strlen(o->host) - 1] == ']') {
		memmove(o->host, o->host + 1, strlen(o->host) - 2);
		o->host[colon - h - 2] = '\0';
	}
	char port[16];
	size_t pl = hp_len - (size_t)(colon + 1 - h);
	if (pl == 0 || pl >= sizeof port)
		return fprintf(stderr, "rtbench: bad port in --url\n"), -1;
	memcpy(port, colon + 1, pl);
	port[pl] = '\0';
	long p;
	if (parse_long("the --url port", port, 0, 65535, &p))
		return -1;
	if (p == 0 && !o->spawn)
		return fprintf(stderr, "rtbench: --url port 0 needs --spawn\n"), -1;
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
			   .duration_s = 10, .drain_s = 5, .setup_timeout_s = 60, .vsn = 2,
			   .writers = 2, .changes = 100, .retry_ms = 100, .kill_signal = SIGKILL,
			   .busy_poll = 0, .write_rows = 1, .queries = 100, .per_sub = 2, .verify = -1,
			   .seed_rows = 100, .naive_s = 3, .naive_conns = 4};
	bool is_wrows_set = false;
	enum { O_URL = 256, O_KEY, O_DUR, O_PID, O_THR, O_BATCH, O_SETUP, O_HB, O_TOPICS, O_SUBS,
	       O_RATE, O_PAY, O_ENC, O_DRAIN, O_CONNS, O_VSN, O_SLOW, O_WRITERS, O_SPAWN, O_DB,
	       O_CHANGES, O_RETRY, O_SIGNAL, O_BUSY, O_JWT, O_RLS, O_WROWS, O_QUERIES, O_PERSUB,
	       O_VERIFY, O_SEED, O_THROTTLE, O_NAIVE, O_NAIVE_CONNS, O_SUB_PORTS };
	static const struct option longopts[] = {
		{"url", required_argument, NULL, O_URL},
		{"sub-ports", required_argument, NULL, O_SUB_PORTS},
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
		{"vsn", required_argument, NULL, O_VSN},
		{"slow", required_argument, NULL, O_SLOW},
		{"writers", required_argument, NULL, O_WRITERS},
		{"spawn", required_argument, NULL, O_SPAWN},
		{"db", required_argument, NULL, O_DB},
		{"changes", required_argument, NULL, O_CHANGES},
		{"retry-ms", required_argument, NULL, O_RETRY},
		{"signal", required_argument, NULL, O_SIGNAL},
		{"busy-poll", required_argument, NULL, O_BUSY},
		{"jwt-secret", required_argument, NULL, O_JWT},
		{"rls", no_argument, NULL, O_RLS},
		{"write-rows", required_argument, NULL, O_WROWS},
		{"queries", required_argument, NULL, O_QUERIES},
		{"per-sub", required_argument, NULL, O_PERSUB},
		{"verify", required_argument, NULL, O_VERIFY},
		{"seed-rows", required_argument, NULL, O_SEED},
		{"throttle-ms", required_argument, NULL, O_THROTTLE},
		{"naive", required_argument, NULL, O_NAIVE},
		{"naive-conns", required_argument, NULL, O_NAIVE_CONNS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *url = NULL;
	int c, rc = 0;
	while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_URL: url = optarg; break;
		case O_SUB_PORTS: {
			char *list = strdup(optarg), *save = NULL;
			o->n_sub_ports = 0;
			for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				long p;
				if (o->n_sub_ports == RTBENCH_MAX_NODES - 1 ||
				    parse_long("a --sub-ports port", t, 1, 65535, &p)) {
					free(list);
					return fprintf(stderr, "rtbench: --sub-ports: up to %d ports "
							       "from 1 to 65535\n",
						       RTBENCH_MAX_NODES - 1),
					       -1;
				}
				o->sub_ports[o->n_sub_ports++] = (int)p;
			}
			free(list);
			break;
		}
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
		case O_RATE:
			rc = parse_long("--rate", optarg, 1, 10000000, &o->rate);
			o->is_rate_set = true;
			break;
		case O_PAY: rc = parse_long("--payload", optarg, 1, MAX_PAYLOAD, &o->payload); break;
		case O_DRAIN: rc = parse_double("--drain", optarg, 0, 3600, &o->drain_s); break;
		case O_CONNS: rc = parse_long("--connections", optarg, 1, 1000000, &o->connections); break;
		case O_SLOW: rc = parse_long("--slow", optarg, 0, 1000000, &o->slow); break;
		case O_WRITERS: rc = parse_long("--writers", optarg, 1, 64, &o->writers); break;
		case O_CHANGES: rc = parse_long("--changes", optarg, 1, 10000000, &o->changes); break;
		case O_RETRY: rc = parse_long("--retry-ms", optarg, 1, 60000, &o->retry_ms); break;
		case O_SPAWN: o->spawn = optarg; break;
		case O_BUSY: rc = parse_long("--busy-poll", optarg, 0, 1, &o->busy_poll); break;
		case O_DB: o->db = optarg; break;
		case O_JWT: o->jwt_secret = optarg; break;
		case O_RLS: o->is_rls = true; break;
		case O_WROWS:
			rc = parse_long("--write-rows", optarg, 1, 1000, &o->write_rows);
			is_wrows_set = true;
			break;
		case O_QUERIES: rc = parse_long("--queries", optarg, 10, LIVE_MAX_DEFS, &o->queries); break;
		case O_PERSUB: rc = parse_long("--per-sub", optarg, 1, LIVE_MAX_PER_SUB, &o->per_sub); break;
		case O_VERIFY: rc = parse_long("--verify", optarg, -1, 1000000, &o->verify); break;
		case O_SEED: rc = parse_long("--seed-rows", optarg, 0, 100000, &o->seed_rows); break;
		case O_THROTTLE: rc = parse_long("--throttle-ms", optarg, 0, 60000, &o->throttle_ms); break;
		case O_NAIVE: rc = parse_double("--naive", optarg, 0, 3600, &o->naive_s); break;
		case O_NAIVE_CONNS:
			rc = parse_long("--naive-conns", optarg, 1, 64, &o->naive_conns);
			break;
		case O_VSN:
			if (!strcmp(optarg, "1.0.0"))
				o->vsn = 1;
			else if (!strcmp(optarg, "2.0.0"))
				o->vsn = 2;
			else {
				fprintf(stderr, "rtbench: --vsn is 1.0.0 or 2.0.0\n");
				rc = -1;
			}
			break;
		case O_SIGNAL:
			if (!strcmp(optarg, "KILL"))
				o->kill_signal = SIGKILL;
			else if (!strcmp(optarg, "TERM"))
				o->kill_signal = SIGTERM;
			else {
				fprintf(stderr, "rtbench: --signal is KILL or TERM\n");
				rc = -1;
			}
			break;
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
		fprintf(stderr, "rtbench: name one scenario: fanout, idle, changes, storm, live or "
				"notify\n");
		return -1;
	}
	size_t k;
	for (k = 0; k < sizeof scenario_names / sizeof *scenario_names; k++)
		if (!strcmp(argv[optind], scenario_names[k]))
			break;
	if (k == sizeof scenario_names / sizeof *scenario_names)
		return fprintf(stderr, "rtbench: unknown scenario '%s'\n", argv[optind]), -1;
	o->scenario = (enum scenario)k;
	if (o->scenario == SC_CHANGES && !o->is_rate_set)
		o->rate = 200;
	if (o->scenario == SC_NOTIFY && (!o->jwt_secret || o->subscribers < 1 ||
					 o->subscribers > MAX_TOPICS))
		return fprintf(stderr, "rtbench: notify needs --jwt-secret and 1 to %d subscribers\n",
			       MAX_TOPICS),
		       -1;
	if (o->scenario == SC_NOTIFY)
		o->topics = o->subscribers; /* one channel (user) per subscriber */
	if (o->scenario == SC_LIVE && !o->is_rate_set)
		o->rate = 20000;
	if (o->scenario == SC_LIVE && !is_wrows_set)
		o->write_rows = 100;
	if (o->scenario == SC_LIVE && (o->queries % 10 || o->per_sub > o->queries))
		return fprintf(stderr, "rtbench: --queries is a multiple of 10, at least --per-sub\n"),
		       -1;
	if (o->scenario == SC_LIVE && o->rate < o->write_rows)
		return fprintf(stderr, "rtbench: --rate below --write-rows sends nothing\n"), -1;
	if (o->scenario == SC_STORM && (!o->spawn || !o->db))
		return fprintf(stderr, "rtbench: storm needs --spawn and --db\n"), -1;
	if (o->slow && o->scenario != SC_FANOUT)
		return fprintf(stderr, "rtbench: --slow is for fanout\n"), -1;
	if (o->n_sub_ports && (o->scenario != SC_FANOUT || o->spawn))
		return fprintf(stderr, "rtbench: --sub-ports is for fanout against running servers\n"),
		       -1;
	if (o->vsn == 1 && o->encoding != ENC_JSON && o->scenario == SC_FANOUT)
		return fprintf(stderr, "rtbench: --encoding is for vsn 2.0.0\n"), -1;
	if (!url || !o->apikey)
		return fprintf(stderr, "rtbench: --url and --apikey are required\n"), -1;
	if (strspn(o->apikey, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~") !=
		    strlen(o->apikey) ||
	    strlen(o->apikey) > 1200)
		return fprintf(stderr, "rtbench: --apikey has characters a URL would need escaped\n"), -1;
	return parse_url(o, url);
}
/* ---- the server under test (--spawn) and its database (storm) ---------------- */

static double secs(uint64_t a_ns, uint64_t b_ns)
{
	return b_ns > a_ns ? (double)(b_ns - a_ns) / 1e9 : 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A port the kernel says is free now (bind to port 0, read it, close). */
static int pick_free_port(const struct sockaddr_storage *addr)
{
	struct sockaddr_storage a = *addr;
	socklen_t len = a.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6);
	int fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int port = -1;
	if (!bind(fd, (struct sockaddr *)&a, len) && !getsockname(fd, (struct sockaddr *)&a, &len))
		port = ntohs(a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
						    : ((struct sockaddr_in6 *)&a)->sin6_port);
	close(fd);
	return port;
}

/* Starts `sh -c 'exec CMD'` ({port} replaced) with stdout to /dev/null. */
static pid_t spawn_server(const char *cmd, int port)
{
	char buf[8192], ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	size_t n = snprintf(buf, sizeof buf, "exec ");
	for (const char *p = cmd; *p && n < sizeof buf - 16; p++) {
		if (!strncmp(p, "{port}", 6)) {
			n += (size_t)snprintf(buf + n, sizeof buf - n, "%s", ps);
			p += 5;
		} else {
			buf[n++] = *p;
		}
	}
	buf[n] = '\0';
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, 1);
		execl("/bin/sh", "sh", "-c", buf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Waits until addr accepts a TCP connection (true) or timeout_ms passes or the
 * child exits (false). */
static bool wait_listening(const struct sockaddr_storage *addr, pid_t pid, long timeout_ms)
{
	socklen_t len = addr->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						   : sizeof(struct sockaddr_in6);
	uint64_t end = rt_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	while (rt_mono_ns() < end) {
		int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return false;
		int rc = connect(fd, (const struct sockaddr *)addr, len);
		close(fd);
		if (rc == 0)
			return true;
		if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		sleep_ms(2);
	}
	return false;
}

/* Sends sig and waits up to 10 s for the exit (then SIGKILL). Returns the
 * exit status, 128 + the signal that ended it, or -1. */
static int stop_server(pid_t pid, int sig)
{
	if (pid <= 0)
		return -1;
	kill(pid, sig);
	int st = 0;
	bool is_reaped = false;
	for (int i = 0; i < 1000 && !is_reaped; i++) {
		is_reaped = waitpid(pid, &st, WNOHANG) == pid;
		if (!is_reaped)
			sleep_ms(10);
	}
	if (!is_reaped) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

/* The last change position in the server's log (0 when empty), or -1. */
static long long db_last_position(const char *path)
{
	sqlite3 *db;
	long long pos = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(db, 5000);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT coalesce(max(rowid), 0) FROM _rtsync_changes", -1, &st,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			pos = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	} else {
		fprintf(stderr, "rtbench: %s: %s\n", path, sqlite3_errmsg(db));
	}
out:
	sqlite3_close(db);
	return pos;
}

/* Inserts n rows round-robin over the topics in one transaction (the server's
 * triggers log them as changes); counts them per topic. Returns 0 or -1. */
static int db_write_rows(const char *path, long n, long topics, uint64_t *per_topic)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	int rc = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO " TABLE " (topic, t, seq, p) VALUES (?, ?, ?, 'x')",
			       -1, &st, NULL) != SQLITE_OK)
		goto out;
	for (long i = 0; i < n; i++) {
		sqlite3_bind_int64(st, 1, i % topics);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)rt_mono_ns());
		sqlite3_bind_int64(st, 3, i + 1);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto out;
		sqlite3_reset(st);
		per_topic[i % topics]++;
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "rtbench: writing into %s: %s\n", path, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* One blocking request to the server on a connection of its own (main
 * thread: seeding, metrics, verification). The body of the answer goes to out
 * (may be NULL). Returns the HTTP status, or -1. */
struct http_answer {
	struct rt_buf *body;
	bool is_done;
};

static int on_answer_body(http_parser *p, const char *at, size_t len)
{
	struct http_answer *a = p->data;
	if (a->body)
		rt_buf_append(a->body, at, len);
	return 0;
}

static int on_answer_done(http_parser *p)
{
	((struct http_answer *)p->data)->is_done = true;
	return 1; /* one answer */
}

static int http_call(const struct run *r, const char *method, const char *target,
		     const char *body, size_t body_len, struct rt_buf *out)
{
	static const http_parser_settings settings = {.on_body = on_answer_body,
						      .on_message_complete = on_answer_done};
	const struct sockaddr_storage *a = &r->addr;
	socklen_t len = a->ss_family == AF_INET ? sizeof(struct sockaddr_in)
					       : sizeof(struct sockaddr_in6);
	int fd = socket(a->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {30, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int status = -1;
	struct rt_buf req;
	rt_buf_init(&req);
	rt_buf_printf(&req,
		      "%s %s HTTP/1.1\r\nHost: %s\r\napikey: %s\r\nAuthorization: Bearer %s\r\n"
		      "Content-Type: application/json\r\nPrefer: return=minimal\r\n"
		      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		      method, target, r->host_header, r->o.apikey, r->o.apikey, body_len);
	rt_buf_append(&req, body, body_len);
	http_parser p;
	http_parser_init(&p, HTTP_RESPONSE);
	struct http_answer ans = {.body = out};
	p.data = &ans;
	if (connect(fd, (const struct sockaddr *)a, len))
		goto out;
	for (size_t off = 0; off < req.len;) {
		ssize_t k = write(fd, req.data + off, req.len - off);
		if (k <= 0)
			goto out;
		off += (size_t)k;
	}
	char buf[65536];
	ssize_t k;
	while (!ans.is_done && (k = read(fd, buf, sizeof buf)) > 0) {
		http_parser_execute(&p, &settings, buf, (size_t)k);
		if (HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_CB_message_complete)
			goto out;
	}
	if (ans.is_done)
		status = (int)p.status_code;
out:
	rt_buf_deinit(&req);
	close(fd);
	return status;
}

/* A counter or gauge from the server's GET /metrics (blocking, on the main
 * thread), or -1. */
static long long server_metric(const struct run *r, const char *name)
{
	struct rt_buf b;
	rt_buf_init(&b);
	long long n = -1;
	if (http_call(r, "GET", "/metrics", NULL, 0, &b) == 200) {
		rt_buf_append_byte(&b, 0);
		size_t nl = strlen(name);
		for (const char *m = (const char *)b.data; (m = strstr(m, name)); m += nl)
			if ((m == (const char *)b.data || m[-1] == '\n') && m[nl] == ' ') {
				n = strtoll(m + nl + 1, NULL, 10);
				break;
			}
	}
	rt_buf_deinit(&b);
	return n;
}

/* ---- live: preparing, running, checking (main thread) -------------------------- */

/* The definitions, the seed rows (through REST, seed_rows per property) and
 * the writer's model of the table. Returns 0 or -1. */
static int live_prepare(struct run *r)
{
	struct opts *o = &r->o;
	r->n_props = o->queries / 2;
	r->n_regions = r->n_props / LIVE_STATUSES;
	r->defs = calloc((size_t)o->queries, sizeof *r->defs);
	r->naive_ring = calloc(NAIVE_RING, sizeof *r->naive_ring);
	if (!r->defs || !r->naive_ring)
		return -1;
	for (long k = 0; k < o->queries; k++)
		if (!(r->defs[k] = live_def_text((uint32_t)k)))
			return -1;
	struct model *m = &r->model;
	m->next_id = 1;
	uint64_t rng = 0x2545f4914f6cdd1dull, total = (uint64_t)r->n_props * (uint64_t)o->seed_rows;
	struct rt_buf b;
	rt_buf_init(&b);
	int rc = 0;
	for (uint64_t done = 0; !rc && done < total;) {
		rt_buf_reset(&b);
		rt_buf_append_byte(&b, '[');
		uint64_t t = rt_mono_ns();
		for (int i = 0; i < 1000 && done < total; i++, done++) {
			uint32_t id = m->next_id++, p = (id - 1) % (uint32_t)r->n_props;
			int st = (int)(xorshift(&rng) % LIVE_STATUSES);
			rt_buf_printf(&b,
				      "%s{\"id\":%u,\"property_id\":%u,\"region\":%ld,\"status\":\"%s\","
				      "\"price\":%u,\"created_at\":%u,\"t\":%" PRIu64 "}",
				      i ? "," : "", id, p, (long)p % r->n_regions, live_status_name(st),
				      (unsigned)(1 + xorshift(&rng) % 1000), id, t);
			model_set(m, id, (uint16_t)p, (uint8_t)st);
		}
		rt_buf_append_byte(&b, ']');
		int status = http_call(r, "POST", "/rest/v1/" LIVE_TABLE, (const char *)b.data, b.len,
				       NULL);
		if (status < 200 || status >= 300) {
			fprintf(stderr, "rtbench: seeding " LIVE_TABLE ": HTTP %d (--schema "
					"bench/schema-live.sql?)\n", status);
			rc = -1;
		}
	}
	rt_buf_deinit(&b);
	return rc;
}

static uint64_t live_max_pos(const struct run *r)
{
	uint64_t mp = 0;
	for (int i = 0; i < r->n_workers; i++) {
		uint64_t v = atomic_load_explicit(&r->workers[i]->max_pos, memory_order_relaxed);
		if (v > mp)
			mp = v;
	}
	return mp;
}

struct live_result {
	uint64_t p0, final_pos, max_pos, pos_at_pub_end, acked;
	uint64_t t_go, t_pub_end, t_acked, t_caught, t_quiet, t_cpu;
	uint64_t lag_max, lag_n;
	double lag_sum, cpu_s;
	long long applied, reads, n_queries, n_subscriptions;
	/* naive */
	uint64_t naive_got, naive_ns;
	double naive_cpu_s;
	/* verification */
	uint64_t v_subs, v_results, v_mismatches;
};

static uint64_t sum_delivered(const struct run *r);

/* The live run once the subscribers hold their results: writes for
 * --duration (the lag sampled meanwhile), the drain until the delivered
 * position reaches the last change, then the naive way. */
static void run_live(struct run *r, long pid, double cpu0, struct live_result *lr)
{
	struct opts *o = &r->o;
	struct worker *w0 = r->workers[0];
	uint64_t t_go = lr->t_go = rt_mono_ns();
	uint64_t limit = t_go + (uint64_t)((o->duration_s + 10) * 1e9);
	long long applied0 = server_metric(r, "rtsync_live_changes_applied_total");
	long long reads0 = server_metric(r, "rtsync_live_reads_total");
	lr->p0 = atomic_load(&r->p0);
	while (!atomic_load_explicit(&r->pub_done, memory_order_acquire) && rt_mono_ns() < limit) {
		uint64_t acked = atomic_load_explicit(&w0->acked_shared, memory_order_relaxed);
		uint64_t mp = live_max_pos(r), committed = lr->p0 + acked;
		if (mp < lr->p0)
			mp = lr->p0;
		uint64_t lag = committed > mp ? committed - mp : 0;
		lr->lag_sum += (double)lag;
		lr->lag_n++;
		if (lag > lr->lag_max)
			lr->lag_max = lag;
		sleep_ms(10);
	}
	lr->t_pub_end = rt_mono_ns();
	lr->pos_at_pub_end = live_max_pos(r);
	uint64_t drain_end = lr->t_pub_end + (uint64_t)(o->drain_s * 1e9);
	uint64_t sent = w0->pub_sent; /* final once pub_done is set */
	while (rt_mono_ns() < drain_end &&
	       atomic_load_explicit(&w0->answered_shared, memory_order_relaxed) < sent)
		sleep_ms(1);
	lr->t_acked = rt_mono_ns();
	lr->acked = atomic_load(&w0->acked_shared);
	lr->final_pos = lr->p0 + lr->acked;
	while (rt_mono_ns() < drain_end && live_max_pos(r) < lr->final_pos)
		sleep_ms(1);
	lr->max_pos = live_max_pos(r);
	if (lr->max_pos >= lr->final_pos)
		lr->t_caught = rt_mono_ns();
	/* the other subscribers' last messages: until none has come for 300 ms */
	uint64_t seen = sum_delivered(r), quiet_since = rt_mono_ns();
	while (rt_mono_ns() < drain_end && rt_mono_ns() - quiet_since < 300000000u) {
		sleep_ms(5);
		uint64_t now_seen = sum_delivered(r);
		if (now_seen != seen) {
			seen = now_seen;
			quiet_since = rt_mono_ns();
		}
	}
	lr->t_quiet = rt_mono_ns();
	double cpu1 = pid > 0 ? proc_cpu_s(pid) : -1;
	lr->t_cpu = rt_mono_ns();
	lr->cpu_s = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
	long long applied1 = server_metric(r, "rtsync_live_changes_applied_total");
	long long reads1 = server_metric(r, "rtsync_live_reads_total");
	lr->applied = applied0 >= 0 && applied1 >= 0 ? applied1 - applied0 : -1;
	lr->reads = reads0 >= 0 && reads1 >= 0 ? reads1 - reads0 : -1;
	lr->n_queries = server_metric(r, "rtsync_live_queries");
	lr->n_subscriptions = server_metric(r, "rtsync_live_subscriptions");
	if (o->naive_s <= 0 || w0->n_pub < 2)
		return;
	sleep_ms(200); /* the last deliveries leave the server */
	double n0 = pid > 0 ? proc_cpu_s(pid) : -1;
	atomic_store_explicit(&r->naive_go, 1, memory_order_release);
	limit = rt_mono_ns() + (uint64_t)((o->naive_s + 10) * 1e9);
	while (!atomic_load_explicit(&r->naive_done, memory_order_acquire) && rt_mono_ns() < limit)
		sleep_ms(2);
	double n1 = pid > 0 ? proc_cpu_s(pid) : -1;
	lr->naive_cpu_s = n0 >= 0 && n1 >= 0 ? n1 - n0 : -1;
	lr->naive_got = atomic_load(&w0->naive_got_shared);
	lr->naive_ns = atomic_load(&w0->naive_ns_shared);
}

/* Every verifying subscriber's copy against a REST read of its query, read
 * once per definition (the server is quiet: no write is under way). */
static void live_verify(struct run *r, struct live_result *lr)
{
	json_t **rest = calloc((size_t)r->o.queries, sizeof *rest);
	if (!rest)
		return;
	for (int i = 0; i < r->n_workers; i++) {
		struct worker *w = r->workers[i];
		for (size_t n = 0; n < w->n_conns; n++) {
			struct lsub *ls = w->conns[n].lv;
			if (!ls || !ls->is_verify || !ls->got_result)
				continue;
			lr->v_subs++;
			for (uint32_t j = 0; j < ls->n_q; j++) {
				uint32_t k = ls->def[j];
				if (!rest[k]) {
					char target[400];
					struct rt_buf b;
					rt_buf_init(&b);
					snprintf(target, sizeof target, "/rest/v1/" LIVE_TABLE "?%s", r->defs[k]);
					int st = http_call(r, "GET", target, NULL, 0, &b);
					rest[k] = st == 200 ? json_loadb((const char *)b.data, b.len, 0, NULL)
							    : NULL;
					if (!rest[k])
						rest[k] = json_string("(the REST read failed)");
					rt_buf_deinit(&b);
				}
				lr->v_results++;
				if (ls->has[j] && json_equal(ls->rows[j], rest[k]))
					continue;
				if (lr->v_mismatches++ < 3) {
					char *a = ls->has[j] ? json_dumps(ls->rows[j], JSON_COMPACT) : NULL;
					char *b = json_dumps(rest[k], JSON_COMPACT | JSON_ENCODE_ANY);
					fprintf(stderr, "rtbench: subscriber %u, q%u (%s):\n  copy %.600s\n  REST %.600s\n",
						ls->index, k, r->defs[k], a ? a : "(none)", b ? b : "?");
					free(a);
					free(b);
				}
			}
		}
	}
	for (long k = 0; k < r->o.queries; k++)
		json_decref(rest[k]);
	free(rest);
}

static void live_free(struct run *r)
{
	for (long k = 0; r->defs && k < r->o.queries; k++)
		free(r->defs[k]);
	free(r->defs);
	free(r->naive_ring);
	model_free(&r->model);
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

struct totals {
	uint64_t fail[F_COUNT];
	uint64_t connected, delivered, reordered, other_msgs, bad_msgs, duplicates;
	uint64_t drops, reconnects, refused, rejoined, resumed, slow_stopped;
	uint64_t t_first_connect, t_last_rejoin, t_last_resume;
	struct hist hist, turn_hist;
	const char *first_error;
};

static uint64_t sum_delivered(const struct run *r)
{
	uint64_t got = 0;
	for (int i = 0; i < r->n_workers; i++)
		got += atomic_load_explicit(&r->workers[i]->delivered_shared, memory_order_relaxed);
	return got;
}

static uint64_t sum_resumed(const struct run *r)
{
	uint64_t n = 0;
	for (int i = 0; i < r->n_workers; i++)
		n += atomic_load(&r->workers[i]->n_resumed);
	return n;
}

static void print_latency(const struct hist *h)
{
	printf("\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
	       "\"max\":%.1f,\"mean\":%.1f},",
	       hist_quantile(h, 0.5) / 1e3, hist_quantile(h, 0.9) / 1e3, hist_quantile(h, 0.99) / 1e3,
	       hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
	       h->n ? (double)h->sum / (double)h->n / 1e3 : 0);
}

static void print_common(const struct run *r, const struct totals *t, double setup_s,
			 int server_exit)
{
	printf("\"server_exit\":%d,\"vsn\":\"%s\",\"threads\":%d,\"topics\":%ld,\"connected\":%" PRIu64 ",\"failed\":{",
	       server_exit, r->o.vsn == 1 ? "1.0.0" : "2.0.0", r->n_workers, r->o.topics, t->connected);
	for (int i = 0; i < F_COUNT; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "", fail_names[i], t->fail[i]);
	printf("},\"setup_s\":%.3f,", setup_s);
	if (t->first_error) {
		printf("\"first_error\":");
		json_str(stdout, t->first_error);
		putchar(',');
	}
}

static void print_live(const struct run *r, const struct totals *t, const struct live_result *lr,
		       double setup_s, int server_exit, double pub_s, long pid, long rss_end)
{
	const struct opts *o = &r->o;
	const struct worker *w0 = r->workers[0];
	uint64_t live_errors = 0, diff_errors = 0, samples = 0;
	for (int i = 0; i < r->n_workers; i++) {
		live_errors += r->workers[i]->live_errors;
		diff_errors += r->workers[i]->diff_errors;
		samples += r->workers[i]->lat_samples;
	}
	double rate = pub_s > 0 ? (double)lr->acked / pub_s : 0;
	double cpu_us = lr->cpu_s >= 0 && lr->acked ? 1e6 * lr->cpu_s / (double)lr->acked : -1;
	printf("\"queries\":%ld,\"subscribers\":%ld,\"per_sub\":%ld,\"verify\":%ld,\"seed_rows\":%ld,"
	       "\"throttle_ms\":%ld,\"rate\":%ld,\"write_rows\":%ld,\"duration_s\":%.3f,",
	       o->queries, o->subscribers, o->per_sub, o->verify, o->seed_rows, o->throttle_ms,
	       o->rate, o->write_rows, o->duration_s);
	print_common(r, t, setup_s, server_exit);
	printf("\"changes\":%" PRIu64 ",\"writes_failed\":%" PRIu64 ",\"send_skipped\":%" PRIu64
	       ",\"mix\":{\"insert\":%" PRIu64 ",\"update\":%" PRIu64 ",\"delete\":%" PRIu64 "},"
	       "\"changes_per_s\":%.0f,",
	       lr->acked, w0->write_failed, w0->pub_skipped, w0->n_mix[0], w0->n_mix[1],
	       w0->n_mix[2], rate);
	printf("\"start_position\":%" PRIu64 ",\"final_position\":%" PRIu64
	       ",\"delivered_position\":%" PRIu64 ",\"position_ok\":%s,"
	       "\"delivered_per_s\":%.0f,\"lag_changes\":{\"mean\":%.0f,\"max\":%" PRIu64 "},"
	       "\"catchup_s\":%.3f,\"last_message_s\":%.3f,",
	       lr->p0, lr->final_pos, lr->max_pos, lr->max_pos == lr->final_pos ? "true" : "false",
	       pub_s > 0 && lr->pos_at_pub_end > lr->p0 ? (double)(lr->pos_at_pub_end - lr->p0) / pub_s
							 : 0,
	       lr->lag_n ? lr->lag_sum / (double)lr->lag_n : 0, lr->lag_max,
	       lr->t_caught ? secs(lr->t_acked, lr->t_caught) : -1,
	       secs(lr->t_acked, lr->t_quiet) - 0.3);
	printf("\"messages\":%" PRIu64 ",\"messages_per_s\":%.0f,\"duplicates\":%" PRIu64
	       ",\"undecodable\":%" PRIu64 ",\"live_errors\":%" PRIu64 ",\"diff_errors\":%" PRIu64
	       ",\"latency_samples\":%" PRIu64 ",",
	       t->delivered, pub_s > 0 ? (double)t->delivered / pub_s : 0, t->duplicates, t->bad_msgs,
	       live_errors, diff_errors, samples);
	print_latency(&t->hist);
	printf("\"server\":{\"pid\":%ld,\"cpu_s\":%.2f,\"cpu_pct\":%.1f,\"cpu_us_per_change\":%.2f,"
	       "\"rss_kb_end\":%ld,\"live_queries\":%lld,\"live_subscriptions\":%lld,"
	       "\"live_applied\":%lld,\"live_reads\":%lld},",
	       pid, lr->cpu_s, lr->cpu_s >= 0 ? 100 * lr->cpu_s / secs(lr->t_go, lr->t_cpu) : -1,
	       cpu_us, rss_end, lr->n_queries, lr->n_subscriptions, lr->applied, lr->reads);
	double per_change = r->naive_n ? (double)r->affected / (double)r->naive_n : 0;
	double naive_s = (double)lr->naive_ns / 1e9;
	double gets_per_s = naive_s > 0 ? (double)lr->naive_got / naive_s : 0;
	double naive_rate = per_change > 0 ? gets_per_s / per_change : 0;
	double naive_cpu_get = lr->naive_got && lr->naive_cpu_s >= 0
				       ? 1e6 * lr->naive_cpu_s / (double)lr->naive_got
				       : -1;
	double naive_cpu_change = naive_cpu_get >= 0 ? naive_cpu_get * per_change : -1;
	printf("\"naive\":{\"s\":%.3f,\"conns\":%zu,\"gets\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"gets_per_s\":%.0f,\"affected_per_change\":%.3f,\"changes_per_s\":%.0f,"
	       "\"cpu_us_per_get\":%.1f,\"cpu_us_per_change\":%.1f},",
	       naive_s, w0->n_pub - 1, lr->naive_got, w0->naive_failed, gets_per_s, per_change,
	       naive_rate, naive_cpu_get, naive_cpu_change);
	printf("\"live_vs_naive\":{\"rate\":%.1f,\"cpu_per_change\":%.1f},",
	       naive_rate > 0 ? rate / naive_rate : -1,
	       naive_cpu_change > 0 && cpu_us > 0 ? naive_cpu_change / cpu_us : -1);
	printf("\"verified\":{\"subscribers\":%" PRIu64 ",\"results\":%" PRIu64
	       ",\"mismatches\":%" PRIu64 "},",
	       lr->v_subs, lr->v_results, lr->v_mismatches);
}

/* notify: the fields of the JSON line (the common ones around them). */
static void print_notify(const struct run *r, const struct totals *t, uint64_t expected,
			 double setup_s, int server_exit, double pub_s, double window_s, long pid,
			 double cpu_pct, long rss_end)
{
	const struct opts *o = &r->o;
	const struct worker *w0 = r->workers[0];
	uint64_t lost = expected > t->delivered ? expected - t->delivered : 0;
	printf("\"users\":%ld,\"rate\":%ld,\"write_rows\":%ld,\"writers\":%ld,\"duration_s\":%.3f,",
	       o->subscribers, o->rate, o->write_rows, o->writers, o->duration_s);
	print_common(r, t, setup_s, server_exit);
	printf("\"writes_acked\":%" PRIu64 ",\"writes_failed\":%" PRIu64 ",\"send_skipped\":%" PRIu64
	       ",\"write_rate\":%.1f,\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
	       ",\"lost\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"reordered\":%" PRIu64
	       ",\"undecodable\":%" PRIu64 ",\"other_msgs\":%" PRIu64
	       ",\"notifications_per_s\":%.0f,",
	       w0->acked, w0->write_failed, w0->pub_skipped, pub_s > 0 ? (double)w0->acked / pub_s : 0,
	       expected, t->delivered, lost, t->duplicates, t->reordered, t->bad_msgs, t->other_msgs,
	       window_s > 0 ? (double)t->delivered / window_s : 0);
	print_latency(&t->hist);
	printf("\"server\":{\"pid\":%ld,\"cpu_pct\":%.1f,\"rss_kb_end\":%ld},", pid, cpu_pct,
	       rss_end);
}

/* The storm itself, on the main thread: down, write, up, wait. */
struct storm_result {
	bool is_ok;
	uint64_t t_kill, t_down, t_spawn, t_listen, t_end;
	long written;
	uint64_t expected;
};

static void run_storm(struct run *r, pid_t *pid, int port, struct storm_result *out)
{
	struct opts *o = &r->o;
	/* settle: let the joins' catch-ups finish and heartbeats start */
	sleep_ms(300);
	out->t_kill = rt_mono_ns();
	kill(*pid, (int)o->kill_signal);
	waitpid(*pid, NULL, 0);
	*pid = -1;
	out->t_down = rt_mono_ns();
	if (db_write_rows(o->db, o->changes, o->topics, r->expected_per_topic))
		return;
	out->written = o->changes;
	for (int i = 0; i < r->n_workers; i++)
		for (long k = 0; k < o->topics; k++)
			out->expected += r->expected_per_topic[k] * r->workers[i]->joined_per_topic[k];
	atomic_store_explicit(&r->is_restarted, 1, memory_order_release);
	out->t_spawn = rt_mono_ns();
	*pid = spawn_server(o->spawn, port);
	if (*pid < 0)
		return;
	if (wait_listening(&r->addr, *pid, 10000))
		out->t_listen = rt_mono_ns();
	uint64_t clients = 0;
	for (int i = 0; i < r->n_workers; i++)
		clients += r->workers[i]->n_joined;
	uint64_t limit = out->t_spawn + (uint64_t)((o->drain_s + 5) * 1e9);
	while (sum_resumed(r) < clients && rt_mono_ns() < limit)
		sleep_ms(1);
	out->t_end = rt_mono_ns();
	out->is_ok = true;
}

int main(int argc, char **argv)
{
	struct run *r = calloc(1, sizeof *r);
	if (!r)
		return 1;
	int exit_code = 1;
	pid_t spawned = -1;
	if (parse_opts(argc, argv, &r->o)) {
		fputs("Try 'rtbench --help'.\n", stderr);
		free(r);
		return 2;
	}
	struct opts *o = &r->o;
	signal(SIGPIPE, SIG_IGN);
	enum scenario sc = o->scenario;
	size_t n_pub = sc == SC_FANOUT	  ? (size_t)((o->topics + TOPICS_PER_PUB - 1) / TOPICS_PER_PUB)
		       : sc == SC_CHANGES || sc == SC_NOTIFY ? (size_t)o->writers
		       : sc == SC_LIVE	  ? 1 + (o->naive_s > 0 ? (size_t)o->naive_conns : 0)
					  : 0;
	size_t n_subs = (size_t)(sc == SC_IDLE ? o->connections : o->subscribers);
	size_t n_slow = (size_t)o->slow;
	long fd_limit = 0;
	if (!raise_fd_limit(n_pub + n_subs + n_slow, &fd_limit)) {
		fprintf(stderr, "rtbench: %zu sockets need %zu open files; the limit is %ld\n",
			n_pub + n_subs + n_slow, n_pub + n_subs + n_slow + FD_SLACK, fd_limit);
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
	for (int i = 0; i < o->n_sub_ports; i++) {
		r->sub_addrs[i + 1] = r->addr;
		if (r->addr.ss_family == AF_INET)
			((struct sockaddr_in *)&r->sub_addrs[i + 1])->sin_port =
				htons((uint16_t)o->sub_ports[i]);
		else
			((struct sockaddr_in6 *)&r->sub_addrs[i + 1])->sin6_port =
				htons((uint16_t)o->sub_ports[i]);
	}
	if (o->spawn) {
		if (!o->port && (o->port = pick_free_port(&r->addr)) <= 0) {
			fprintf(stderr, "rtbench: no free port\n");
			free(r);
			return 1;
		}
		if (r->addr.ss_family == AF_INET)
			a4->sin_port = htons((uint16_t)o->port);
		else
			a6->sin6_port = htons((uint16_t)o->port);
		spawned = spawn_server(o->spawn, o->port);
		if (spawned < 0 || !wait_listening(&r->addr, spawned, 10000)) {
			fprintf(stderr, "rtbench: the server (--spawn) did not start listening\n");
			stop_server(spawned, SIGKILL);
			free(r);
			return 1;
		}
		o->server_pid = spawned;
	}
	bool is_v6 = strchr(o->host, ':') != NULL;
	snprintf(r->host_header, sizeof r->host_header, "%s%s%s:%d", is_v6 ? "[" : "", o->host,
		 is_v6 ? "]" : "", o->port);
	snprintf(r->topic_prefix, sizeof r->topic_prefix, "bench-%ld-", (long)getpid());
	snprintf(r->ws_query, sizeof r->ws_query, "&vsn=%s", o->vsn == 1 ? "1.0.0" : "2.0.0");
	if (sc == SC_LIVE && live_prepare(r)) {
		stop_server(spawned, SIGTERM);
		live_free(r);
		free(r);
		return 1;
	}
	if (sc == SC_STORM) {
		long long pos = db_last_position(o->db);
		r->expected_per_topic = calloc((size_t)o->topics, sizeof *r->expected_per_topic);
		if (pos < 0 || !r->expected_per_topic) {
			stop_server(spawned, SIGTERM);
			free(r->expected_per_topic);
			free(r);
			return 1;
		}
		r->resume_from = (uint64_t)pos;
	}
	r->n_workers = (int)(o->threads < (long)n_subs + 1 ? o->threads : (long)n_subs + 1);
	if (r->n_workers < 1)
		r->n_workers = 1;
	r->workers = calloc((size_t)r->n_workers, sizeof *r->workers);
	if (!r->workers) {
		stop_server(spawned, SIGTERM);
		free(r->expected_per_topic);
		live_free(r);
		free(r);
		return 1;
	}
	for (int i = 0; i < r->n_workers; i++) {
		size_t nw = (size_t)r->n_workers;
		size_t mine = n_subs / nw + ((size_t)i < n_subs % nw);
		size_t slow = n_slow / nw + ((size_t)i < n_slow % nw);
		r->workers[i] = worker_new(r, i, i == 0 ? n_pub : 0, mine, slow, i);
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
	/* idle: the server's RSS once a first part of the sockets is up, so that
	 * one-time costs (code pages, arenas, caches) drop out of the slope */
	uint64_t warm_at = n_subs / 5 < 1000 ? n_subs / 5 : 1000, n_warm = 0;
	long rss_warm = -1;
	while (atomic_load_explicit(&r->n_ready, memory_order_acquire) < r->n_workers &&
	       rt_mono_ns() < setup_limit) {
		uint64_t n = atomic_load_explicit(&r->n_joined_all, memory_order_relaxed);
		if (sc == SC_IDLE && pid && rss_warm < 0 && warm_at && n >= warm_at) {
			rss_warm = proc_rss_kb(pid);
			n_warm = (n + atomic_load_explicit(&r->n_joined_all, memory_order_relaxed)) / 2;
		}
		sleep_ms(n < warm_at ? 1 : 5);
	}
	uint64_t t_ready = rt_mono_ns();
	bool is_ready = atomic_load_explicit(&r->n_ready, memory_order_acquire) == r->n_workers;
	bool has_pub = is_ready && r->workers[0]->n_pub_open == n_pub;

	struct totals t = {0};
	uint64_t subs_sum = 0;
	for (int i = 0; is_ready && i < r->n_workers; i++)
		for (long k = 0; k < o->topics; k++)
			subs_sum += r->workers[i]->joined_per_topic[k];

	long rss_setup = pid ? proc_rss_kb(pid) : -1;
	double cpu0 = pid ? proc_cpu_s(pid) : -1, ccpu0 = rusage_cpu_s(), mcpu0 = machine_busy_s();
	double wait0 = pid > 0 ? proc_wait_s(pid) : -1, cwait0 = proc_wait_s(0);
	uint64_t t_go = rt_mono_ns(), t_pub_end = t_go, t_end = t_go;
	uint64_t expected = 0, sent = 0, skipped = 0;
	struct storm_result storm = {0};
	struct live_result lr = {0};
	bool needs_subs = sc != SC_IDLE;
	if (is_ready && has_pub && (!needs_subs || subs_sum > 0)) {
		atomic_store_explicit(&r->go, 1, memory_order_release);
		if (sc == SC_FANOUT || sc == SC_CHANGES || sc == SC_NOTIFY) {
			uint64_t limit = t_go + (uint64_t)((o->duration_s + 10) * 1e9);
			while (!atomic_load_explicit(&r->pub_done, memory_order_acquire) &&
			       rt_mono_ns() < limit)
				sleep_ms(2);
			t_pub_end = rt_mono_ns();
			uint64_t drain_end = t_pub_end + (uint64_t)(o->drain_s * 1e9);
			struct worker *w0 = r->workers[0];
			/* changes: writes are counted when acknowledged, so wait for the answers */
			while ((sc == SC_CHANGES || sc == SC_NOTIFY) && rt_mono_ns() < drain_end) {
				uint64_t answered = 0;
				for (size_t i = 0; i < n_pub; i++)
					answered += w0->conns[i].if_len;
				if (!answered)
					break;
				sleep_ms(2);
			}
			/* the publisher's counters are final once pub_done is set (changes: the
			 * acknowledgements keep coming on w0's loop, read them after the drain) */
			for (;;) {
				expected = 0;
				for (long k = 0; k < o->topics; k++) {
					uint64_t subs = 0;
					for (int i = 0; i < r->n_workers; i++)
						subs += r->workers[i]->joined_per_topic[k];
					expected += w0->sent_per_topic[k] * subs;
				}
				if (sum_delivered(r) >= expected || rt_mono_ns() >= drain_end)
					break;
				sleep_ms(2);
			}
			sent = w0->pub_sent;
			skipped = w0->pub_skipped;
		} else if (sc == SC_LIVE) {
			run_live(r, pid, cpu0, &lr);
			t_pub_end = lr.t_pub_end;
			sent = r->workers[0]->pub_sent;
			skipped = r->workers[0]->pub_skipped;
		} else if (sc == SC_STORM) {
			run_storm(r, &spawned, o->port, &storm);
			o->server_pid = pid = spawned;
			if (storm.is_ok)
				exit_code = 0;
		} else {
			uint64_t hold_end = t_go + (uint64_t)(o->duration_s * 1e9);
			while (rt_mono_ns() < hold_end)
				sleep_ms(10);
		}
		if (sc != SC_STORM)
			exit_code = 0;
	}
	t_end = rt_mono_ns();
	long slow_dropped =
		o->slow && exit_code == 0
			? (long)server_metric(r, "rtsync_errors_total{reason=\"slow_consumer\"}")
			: -1;
	double cpu1 = pid > 0 ? proc_cpu_s(pid) : -1, ccpu1 = rusage_cpu_s(), mcpu1 = machine_busy_s();
	double wait1 = pid > 0 ? proc_wait_s(pid) : -1, cwait1 = proc_wait_s(0);
	long rss_end = pid > 0 ? proc_rss_kb(pid) : -1, client_rss = proc_rss_kb(0);
	atomic_store(&r->stop, 1);

	for (int i = 0; i < r->n_workers; i++)
		pthread_join(r->workers[i]->thread, NULL);
	if (sc == SC_LIVE && exit_code == 0)
		live_verify(r, &lr);
	/* a clean stop of the server we started (0 under ASan also means no leak) */
	int server_exit = stop_server(spawned, SIGTERM);
	spawned = -1;

	for (int i = 0; i < r->n_workers; i++) {
		struct worker *w = r->workers[i];
		for (int k = 0; k < F_COUNT; k++)
			t.fail[k] += w->fail[k];
		t.connected += w->n_joined;
		t.delivered += w->delivered;
		t.reordered += w->reordered;
		t.other_msgs += w->other_msgs;
		t.bad_msgs += w->bad_msgs;
		t.duplicates += w->duplicates;
		t.drops += w->drops;
		t.reconnects += w->reconnects;
		t.refused += w->connect_refused;
		t.rejoined += atomic_load(&w->n_rejoined);
		t.resumed += atomic_load(&w->n_resumed);
		t.slow_stopped += w->n_slow_stopped;
		uint64_t v;
		if ((v = atomic_load(&w->t_first_connect_ns)) && (!t.t_first_connect || v < t.t_first_connect))
			t.t_first_connect = v;
		if ((v = atomic_load(&w->t_last_rejoin_ns)) > t.t_last_rejoin)
			t.t_last_rejoin = v;
		if ((v = atomic_load(&w->t_last_resume_ns)) > t.t_last_resume)
			t.t_last_resume = v;
		hist_merge(&t.hist, &w->hist);
		hist_merge(&t.turn_hist, &w->turn_hist);
		if (!t.first_error && w->first_error[0])
			t.first_error = w->first_error;
	}
	bool is_rows = sc == SC_CHANGES || sc == SC_NOTIFY;
	if (is_rows)
		expected = 0;
	for (long k = 0; is_rows && k < o->topics; k++) {
		uint64_t subs = 0;
		for (int i = 0; i < r->n_workers; i++)
			subs += r->workers[i]->joined_per_topic[k];
		expected += r->workers[0]->sent_per_topic[k] * subs;
	}
	double setup_s = secs(t_setup, t_ready), window_s = secs(t_go, t_end);
	double cpu_pct = cpu0 >= 0 && cpu1 >= 0 && window_s > 0 ? 100 * (cpu1 - cpu0) / window_s : -1;
	double ccpu_pct = exit_code == 0 && window_s > 0 ? 100 * (ccpu1 - ccpu0) / window_s : -1;
	if (exit_code || sc == SC_STORM)
		cpu_pct = -1; /* storm: the process changed in between */

	printf("{\"scenario\":\"%s\",", scenario_names[sc]);
	if (sc == SC_NOTIFY)
		print_notify(r, &t, expected, setup_s, server_exit, secs(t_go, t_pub_end), window_s,
			     pid, cpu_pct, rss_end);
	else if (sc == SC_FANOUT || sc == SC_CHANGES) {
		double pub_s = secs(t_go, t_pub_end);
		printf("\"subscribers\":%ld,\"rate\":%ld,\"payload\":%ld,", o->subscribers, o->rate,
		       o->payload);
		if (sc == SC_FANOUT)
			printf("\"encoding\":\"%s\",\"slow\":%ld,\"slow_stopped\":%" PRIu64
			       ",\"server_slow_consumers\":%ld,",
			       o->vsn == 1 || o->encoding == ENC_TEXT ? "text"
			       : o->encoding == ENC_JSON	      ? "json"
								      : "binary",
			       o->slow, t.slow_stopped, slow_dropped);
		else
			printf("\"writers\":%ld,\"writes_acked\":%" PRIu64 ",\"writes_failed\":%" PRIu64
			       ",",
			       o->writers, r->workers[0]->acked, r->workers[0]->write_failed);
		printf("\"duration_s\":%.3f,", o->duration_s);
		print_common(r, &t, setup_s, server_exit);
		uint64_t lost = expected > t.delivered ? expected - t.delivered : 0;
		printf("\"sent\":%" PRIu64 ",\"send_skipped\":%" PRIu64 ",\"send_rate\":%.1f,"
		       "\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"lost\":%" PRIu64
		       ",\"loss_pct\":%.4f,\"deliveries_per_s\":%.0f,\"reordered\":%" PRIu64
		       ",\"duplicates\":%" PRIu64 ",\"undecodable\":%" PRIu64 ",\"drain_s\":%.3f,",
		       sent, skipped, pub_s > 0 ? (double)sent / pub_s : 0, expected, t.delivered, lost,
		       expected ? 100.0 * (double)lost / (double)expected : 0,
		       window_s > 0 ? (double)t.delivered / window_s : 0, t.reordered, t.duplicates,
		       t.bad_msgs, secs(t_pub_end, t_end));
		print_latency(&t.hist);
		printf("\"generator_turn_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},",
		       hist_quantile(&t.turn_hist, 0.5) / 1e3, hist_quantile(&t.turn_hist, 0.99) / 1e3,
		       hist_quantile(&t.turn_hist, 0.999) / 1e3, t.turn_hist.max / 1e3);
		printf("\"server\":{\"pid\":%ld,\"cpu_pct\":%.1f,\"rss_kb_before\":%ld,"
		       "\"rss_kb_setup\":%ld,\"rss_kb_end\":%ld},",
		       pid, cpu_pct, rss_before, rss_setup, rss_end);
	} else if (sc == SC_LIVE) {
		print_live(r, &t, &lr, setup_s, server_exit, secs(t_go, t_pub_end), pid, rss_end);
	} else if (sc == SC_STORM) {
		printf("\"subscribers\":%ld,\"signal\":\"%s\",\"retry_ms\":%ld,", o->subscribers,
		       o->kill_signal == SIGKILL ? "KILL" : "TERM", o->retry_ms);
		print_common(r, &t, setup_s, server_exit);
		uint64_t got = t.delivered;
		uint64_t lost = storm.expected > got ? storm.expected - got : 0;
		double rejoin_s = t.rejoined && t.t_last_rejoin ? secs(storm.t_spawn, t.t_last_rejoin) : -1;
		double resume_s = t.resumed == t.connected && t.t_last_resume
					  ? secs(storm.t_spawn, t.t_last_resume)
					  : -1;
		printf("\"resume_from\":%" PRIu64 ",\"written_while_down\":%ld,\"expected\":%" PRIu64
		       ",\"delivered\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"duplicates\":%" PRIu64
		       ",\"undecodable\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"rejoined\":%" PRIu64
		       ",\"resumed\":%" PRIu64 ",\"reconnect_attempts\":%" PRIu64
		       ",\"connects_refused\":%" PRIu64 ",",
		       r->resume_from, storm.written, storm.expected, got, lost, t.duplicates, t.bad_msgs,
		       t.drops, t.rejoined, t.resumed, t.reconnects, t.refused);
		printf("\"kill_to_exit_s\":%.3f,\"down_s\":%.3f,\"spawn_to_listen_s\":%.3f,"
		       "\"spawn_to_first_connect_s\":%.3f,\"spawn_to_all_rejoined_s\":%.3f,"
		       "\"spawn_to_all_resumed_s\":%.3f,",
		       secs(storm.t_kill, storm.t_down), secs(storm.t_kill, storm.t_spawn),
		       storm.t_listen ? secs(storm.t_spawn, storm.t_listen) : -1,
		       t.t_first_connect ? secs(storm.t_spawn, t.t_first_connect) : -1, rejoin_s,
		       resume_s);
		printf("\"server\":{\"pid\":%ld,\"rss_kb_end\":%ld},", pid, rss_end);
	} else {
		printf("\"connections\":%ld,\"duration_s\":%.3f,", o->connections, o->duration_s);
		print_common(r, &t, setup_s, server_exit);
		double per_conn = t.connected && rss_end >= 0 && rss_before >= 0
					  ? (double)(rss_end - rss_before) * 1024.0 / (double)t.connected
					  : -1;
		double marginal = rss_warm >= 0 && rss_end >= 0 && t.connected > n_warm
					  ? (double)(rss_end - rss_warm) * 1024.0 /
						    (double)(t.connected - n_warm)
					  : -1;
		printf("\"connect_rate\":%.0f,\"server\":{\"pid\":%ld,\"cpu_pct_hold\":%.2f,"
		       "\"rss_kb_before\":%ld,\"rss_kb_warm\":%ld,\"conns_warm\":%" PRIu64
		       ",\"rss_kb_setup\":%ld,\"rss_kb_end\":%ld,\"rss_bytes_per_conn\":%.0f,"
		       "\"rss_bytes_per_conn_marginal\":%.0f},",
		       setup_s > 0 ? (double)t.connected / setup_s : 0, pid, cpu_pct, rss_before,
		       rss_warm, n_warm, rss_setup, rss_end, per_conn, marginal);
	}
	/* what else ran on the machine meanwhile (other processes, interrupts) */
	double mbusy = mcpu0 >= 0 && mcpu1 >= 0 && window_s > 0 ? 100 * (mcpu1 - mcpu0) / window_s : -1;
	double others = mbusy >= 0 && ccpu_pct >= 0 ? mbusy - ccpu_pct - (cpu_pct > 0 ? cpu_pct : 0) : -1;
	/* time runnable but not running, per second of the run, summed over threads */
	double swait = wait0 >= 0 && wait1 >= 0 && window_s > 0 ? 1e3 * (wait1 - wait0) / window_s : -1;
	double cwait = cwait0 >= 0 && cwait1 >= 0 && window_s > 0 ? 1e3 * (cwait1 - cwait0) / window_s
								    : -1;
	printf("\"client\":{\"cpu_pct\":%.1f,\"rss_kb\":%ld,\"runq_wait_ms_per_s\":%.1f},"
	       "\"server_runq_wait_ms_per_s\":%.1f,\"machine\":{\"cpus\":%ld,"
	       "\"busy_pct\":%.1f,\"others_pct\":%.1f},\"window_s\":%.3f}\n",
	       ccpu_pct, client_rss, cwait, exit_code || sc == SC_STORM ? -1 : swait,
	       sysconf(_SC_NPROCESSORS_ONLN), mbusy, others > 0 ? others : 0, window_s);
	fflush(stdout);
	if (!is_ready)
		fprintf(stderr, "rtbench: setup did not finish\n");
	else if (!has_pub)
		fprintf(stderr, "rtbench: the publisher did not join: %s\n",
			t.first_error ? t.first_error : "?");
	else if (needs_subs && !subs_sum)
		fprintf(stderr, "rtbench: no subscriber joined: %s\n",
			t.first_error ? t.first_error : "?");

out_free:
	stop_server(spawned, SIGTERM);
	for (int i = 0; i < r->n_workers; i++)
		worker_free(r->workers[i]);
	free(r->workers);
	free(r->expected_per_topic);
	live_free(r);
	free(r);
	return exit_code;
}
