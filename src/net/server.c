#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utlist.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "net/tls.h"
#include "net/uring.h"

#define READ_BUF_SIZE (64 * 1024)
#define MAX_IOV 64
#define CLOSE_GRACE_MS 3000
#define STOP_GRACE_MS 3000
#define MAX_STASH (256 * 1024)
#define Q_INLINE 2
#define REQ_CACHE 32 /* parsers kept for new connections: no churn per handshake */
#define TLS_PLAIN_BUF (17 * 1024) /* one TLS record's plaintext (16 KiB) at least */

enum conn_state { CONN_HTTP, CONN_WS };

/* Ordered for size (no holes): an idle WebSocket costs this plus its session. */
struct rt_conn {
	uv_tcp_t tcp; /* first: handle pointers convert to the connection */
	struct rt_worker *w;
	uint64_t id;
	void *data;

	struct rt_http_req *req; /* HTTP state only */
	struct rt_buf *stash;    /* bytes read while a request awaits its answer */
	struct rt_ws ws;         /* WebSocket state only */
	struct rt_tls_conn *tls; /* NULL: plaintext */

	/* Outbound queue: a ring of frames; q_off bytes of the head are sent. It
	 * starts in q_inline and moves to the heap (for good) when it outgrows it. */
	struct rt_frame **q;
	struct rt_frame *q_inline[Q_INLINE];
	size_t q_off, q_bytes;
	uv_write_t *wreq; /* only while a uv_write is pending */
	unsigned q_head, q_len, q_cap;
	unsigned n_inflight; /* head entries owned by the pending uv_write */

	uint64_t last_rx_ms;
	uint64_t req_start_ms; /* first byte of the HTTP request being read; 0 between */
	uint64_t close_deadline_ms;

	struct rt_conn *prev, *next;           /* worker's connection list */
	struct rt_conn *pend_prev, *pend_next; /* worker's flush list */

	uint8_t peer_addr[16]; /* IPv4 in the first 4 bytes, or IPv6 */
	uint16_t peer_port;
	uint8_t state; /* enum conn_state */
	uint8_t data_kind; /* what data is, for its owner (rt_conn_set_data) */
	bool is_peer_v6;
	bool is_awaiting;       /* a request was handed out and not yet answered */
	bool is_pending;        /* on the worker's flush list */
	bool is_closing;        /* no more input handled, no more output queued */
	bool is_output_blocked; /* over the queue bound: everything more is dropped */
	bool is_read_paused;    /* the stash is full: TCP holds the rest of the pipeline */
	bool close_after_flush; /* end TCP once the queue is empty */
	bool is_handle_closing; /* uv_close called */
	bool is_batched;        /* in the worker's io_uring batch being filled */
	bool is_tls_shut;       /* close_notify queued */
};

struct rt_worker {
	struct rt_server *s;
	unsigned idx;
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t async;
	uv_prepare_t prepare;
	uv_timer_t tick;
	pthread_t thread;
	void *data;
	struct rt_conn *conns;
	struct rt_conn *pending;
	struct rt_uring *uring; /* batched sends; NULL: one socket at a time */
	unsigned n_conns;
	uint64_t next_id;
	atomic_bool stop_requested;
	bool has_run; /* its thread ran the loop, which closed every handle */
	char peer_buf[64]; /* rt_conn_peer's answer */
	struct rt_http_req *req_cache[REQ_CACHE];
	unsigned n_req_cache;
	bool is_stopping;
	bool is_stopped; /* handles closed: the loop is ending */
	uint64_t stop_deadline_ms;
	char read_buf[READ_BUF_SIZE];
	uint8_t tls_buf[TLS_PLAIN_BUF]; /* decrypted bytes of one record */
};

struct rt_server {
	struct rt_server_config cfg;
	const struct rt_server_handler *h;
	void *app;
	int port;
	unsigned n_workers;
	struct rt_worker *workers[RT_SERVER_MAX_WORKERS];
	bool is_started;
};

static void conn_flush(struct rt_conn *c);
static void tls_collect(struct rt_conn *c);
static void conn_close_now(struct rt_conn *c);
static void conn_feed(struct rt_conn *c, char *data, size_t len);
static void finish_stop(struct rt_worker *w);

/* ---- listening sockets ---- */

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return UV_EINVAL;
}

static int open_listener(const struct sockaddr_storage *ss, int *port_io)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	struct sockaddr_storage a = *ss;
	if (a.ss_family == AF_INET)
		((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)*port_io);
	else
		((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)*port_io);
	socklen_t len = a.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
	    bind(fd, (struct sockaddr *)&a, len) || listen(fd, 4096))
		goto err;
	if (*port_io == 0) {
		if (getsockname(fd, (struct sockaddr *)&a, &len))
			goto err;
		*port_io = ntohs(a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
							: ((struct sockaddr_in6 *)&a)->sin6_port);
	}
	return fd;
err:;
	int e = -errno;
	close(fd);
	return e;
}

/* ---- connection output ---- */

static void q_push(struct rt_conn *c, struct rt_frame *f)
{
	if (c->q_len == c->q_cap) {
		unsigned cap = c->q_cap ? c->q_cap * 2 : 4;
		struct rt_frame **q = rt_xmalloc(cap * sizeof *q);
		for (unsigned i = 0; i < c->q_len; i++)
			q[i] = c->q[(c->q_head + i) % c->q_cap];
		if (c->q != c->q_inline)
			free(c->q);
		c->q = q;
		c->q_head = 0;
		c->q_cap = cap;
	}
	c->q[(c->q_head + c->q_len) % c->q_cap] = f;
	c->q_len++;
	c->q_bytes += f->len;
}

/* Drops n_bytes from the front of the queue. */
static void q_consume(struct rt_conn *c, size_t n_bytes)
{
	RT_METRIC_ADD(bytes_out, n_bytes);
	while (n_bytes && c->q_len) {
		struct rt_frame *f = c->q[c->q_head];
		size_t left = f->len - c->q_off;
		if (n_bytes < left) {
			c->q_off += n_bytes;
			c->q_bytes -= n_bytes;
			return;
		}
		n_bytes -= left;
		c->q_bytes -= left;
		c->q_off = 0;
		c->q_head = (c->q_head + 1) % c->q_cap;
		c->q_len--;
		rt_frame_unref(f);
	}
}

static void q_clear(struct rt_conn *c)
{
	while (c->q_len) {
		rt_frame_unref(c->q[c->q_head]);
		c->q_head = (c->q_head + 1) % c->q_cap;
		c->q_len--;
	}
	if (c->q != c->q_inline)
		free(c->q);
	c->q = c->q_inline;
	c->q_cap = Q_INLINE;
	c->q_head = 0;
	c->q_bytes = c->q_off = 0;
}

/* The head of the queue as up to max buffers (uv_buf_t is struct iovec's
 * layout on Unix, so either can be filled). */
static unsigned q_iov(struct rt_conn *c, uv_buf_t *iov, unsigned max, size_t *total)
{
	unsigned n = c->q_len < max ? c->q_len : max;
	*total = 0;
	for (unsigned i = 0; i < n; i++) {
		struct rt_frame *f = c->q[(c->q_head + i) % c->q_cap];
		size_t off = i == 0 ? c->q_off : 0;
		iov[i] = uv_buf_init((char *)f->data + off, (unsigned)(f->len - off));
		*total += f->len - off;
	}
	return n;
}

static void mark_pending(struct rt_conn *c)
{
	if (c->is_pending || c->is_handle_closing)
		return;
	c->is_pending = true;
	DL_APPEND2(c->w->pending, c, pend_prev, pend_next);
}

static void unmark_pending(struct rt_conn *c)
{
	if (!c->is_pending)
		return;
	c->is_pending = false;
	DL_DELETE2(c->w->pending, c, pend_prev, pend_next);
}

static void on_written(uv_write_t *req, int status)
{
	struct rt_conn *c = req->data;
	free(req);
	c->wreq = NULL;
	size_t total = 0;
	for (unsigned i = 0; i < c->n_inflight; i++) {
		struct rt_frame *f = c->q[(c->q_head + i) % c->q_cap];
		total += f->len - (i == 0 ? c->q_off : 0);
	}
	c->n_inflight = 0;
	if (c->is_handle_closing)
		return;
	if (status < 0) {
		rt_debug("conn %s: write failed: %s", rt_conn_peer(c), uv_strerror(status));
		conn_close_now(c);
		return;
	}
	q_consume(c, total);
	conn_flush(c);
}

/* Writes what the socket takes now; leaves the rest to one uv_write. */
static void conn_flush(struct rt_conn *c)
{
	/* is_batched: its queue's head is in an io_uring batch (sent when the
	 * batch runs, in this same loop turn) */
	if (c->is_handle_closing || c->n_inflight || c->is_batched)
		return;
	uv_buf_t iov[MAX_IOV];
	while (c->q_len) {
		size_t total;
		unsigned n = q_iov(c, iov, MAX_IOV, &total);
		int r = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
		if (r == UV_EAGAIN)
			r = 0;
		if (r < 0) {
			rt_debug("conn %s: write failed: %s", rt_conn_peer(c), uv_strerror(r));
			conn_close_now(c);
			return;
		}
		q_consume(c, (size_t)r);
		if ((size_t)r < total)
			break;
	}
	if (c->q_len) {
		size_t total;
		unsigned n = q_iov(c, iov, MAX_IOV, &total);
		c->wreq = rt_xmalloc(sizeof *c->wreq);
		c->wreq->data = c;
		int r = uv_write(c->wreq, (uv_stream_t *)&c->tcp, iov, n, on_written);
		if (r < 0) {
			free(c->wreq);
			c->wreq = NULL;
			conn_close_now(c);
			return;
		}
		c->n_inflight = n;
		return;
	}
	if (c->close_after_flush && (c->state != CONN_WS || rt_ws_is_done(&c->ws))) {
		if (c->tls && rt_tls_conn_is_ready(c->tls) && !c->is_tls_shut) {
			/* close_notify, then the TCP close once it has left */
			c->is_tls_shut = true;
			rt_tls_conn_shutdown(c->tls);
			tls_collect(c);
			if (c->q_len) {
				conn_flush(c);
				return;
			}
		}
		conn_close_now(c);
	}
}

/* Moves the TLS engine's output (records, alerts) into the queue. */
static void tls_collect(struct rt_conn *c)
{
	size_t n = rt_tls_conn_pending(c->tls);
	if (!n)
		return;
	struct rt_frame *f = rt_frame_new(n);
	f->len = rt_tls_conn_take(c->tls, f->data, n);
	q_push(c, f);
	mark_pending(c);
}

/* Frames are shared in plaintext; a TLS connection queues its own
 * encrypted copy, so the queue holds bytes ready for the socket either way
 * (and the batched io_uring path needs no exception for TLS). */
static void queue_frame(struct rt_conn *c, struct rt_frame *f)
{
	if (c->tls) {
		if (rt_tls_conn_write(c->tls, f->data, f->len))
			return; /* no handshake (yet), or it failed: nothing can leave */
		tls_collect(c);
	} else {
		q_push(c, rt_frame_ref(f));
	}
	RT_METRIC_INC(msgs_out);
	mark_pending(c);
}

/* Queues a copy of data_len bytes (HTTP answers, control frames). */
static void queue_copy(struct rt_conn *c, const void *data, size_t data_len)
{
	struct rt_frame *f = rt_frame_copy(data, data_len);
	queue_frame(c, f);
	rt_frame_unref(f);
}

/* Stops handling the peer; the connection ends once what is queued has left
 * (and, for WebSocket, the close handshake is done) or the grace period ends. */
static void end_after_flush(struct rt_conn *c)
{
	c->is_closing = true;
	c->close_after_flush = true;
	c->close_deadline_ms = rt_mono_ms() + CLOSE_GRACE_MS;
	mark_pending(c);
}

/* True when n more bytes would pass the queue bound even after writing what
 * the socket takes now: the bound is on what the peer refused, not on what
 * one loop turn produced. */
static bool is_over_bound(struct rt_conn *c, size_t n)
{
	size_t max = c->w->s->cfg.max_out_bytes;
	if (c->q_bytes + n <= max)
		return false;
	conn_flush(c);
	return c->q_bytes + n > max && !c->is_handle_closing;
}

/* Gives up on a peer that does not read: drops all further output and input
 * and ends the connection once the queue drains or the grace period passes.
 * Safe inside the WebSocket engine's callbacks. */
static void block_output(struct rt_conn *c)
{
	if (c->is_output_blocked)
		return;
	RT_METRIC_ERROR(SLOW_CONSUMER);
	rt_warn("conn %s: outbound queue over %zu bytes, closing slow consumer", rt_conn_peer(c),
		c->w->s->cfg.max_out_bytes);
	c->is_output_blocked = true;
	end_after_flush(c);
}

void rt_conn_send(struct rt_conn *c, struct rt_frame *f)
{
	if (c->is_closing || !f)
		return;
	if (is_over_bound(c, f->len)) {
		if (c->state == CONN_WS) {
			/* the close frame is small: it goes past the bound, once */
			RT_METRIC_ERROR(SLOW_CONSUMER);
			rt_warn("conn %s: outbound queue over %zu bytes, closing slow consumer",
				rt_conn_peer(c), c->w->s->cfg.max_out_bytes);
			rt_conn_close(c, 1008, "slow consumer: send queue limit exceeded");
		} else {
			block_output(c);
		}
		return;
	}
	queue_frame(c, f);
}

void rt_conn_send_ws(struct rt_conn *c, enum rt_ws_opcode op, const void *data, size_t data_len)
{
	if (c->is_closing)
		return;
	struct rt_frame *f = rt_ws_frame(op, data, data_len);
	rt_conn_send(c, f);
	rt_frame_unref(f);
}

/* ---- closing ---- */

/* A request parser from the worker's cache, or a new one. */
static struct rt_http_req *get_req(struct rt_worker *w)
{
	if (w->n_req_cache)
		return w->req_cache[--w->n_req_cache];
	struct rt_http_req *r = rt_xmalloc(sizeof *r);
	rt_http_req_init(r, w->s->cfg.max_body_bytes);
	return r;
}

/* Gives a parser back: reset into the cache (keeping its buffers), or freed. */
static void put_req(struct rt_worker *w, struct rt_http_req *r)
{
	if (w->n_req_cache < REQ_CACHE) {
		rt_http_req_reset(r);
		w->req_cache[w->n_req_cache++] = r;
		return;
	}
	rt_http_req_deinit(r);
	free(r);
}

static void free_stash(struct rt_conn *c)
{
	if (!c->stash)
		return;
	rt_buf_deinit(c->stash);
	free(c->stash);
	c->stash = NULL;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Feeds what was read while a request awaited its answer (the stash is
 * detached first: feeding may stash again), and reads again when that was
 * paused and the stash has room. */
static void feed_stash(struct rt_conn *c)
{
	struct rt_buf *stash = c->stash;
	if (stash) {
		c->stash = NULL;
		c->req_start_ms = rt_mono_ms(); /* its clock starts now, not while it waited */
		conn_feed(c, stash->data, stash->len);
		rt_buf_deinit(stash);
		free(stash);
	}
	if (c->is_read_paused && !c->is_handle_closing && (!c->stash || c->stash->len < MAX_STASH)) {
		c->is_read_paused = false;
		uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct rt_conn *c = (struct rt_conn *)h;
	struct rt_worker *w = c->w;
	if (w->s->h->on_close)
		w->s->h->on_close(c);
	if (c->state == CONN_WS) {
		rt_ws_deinit(&c->ws);
		RT_METRIC_INC(ws_closed);
	}
	if (c->req)
		put_req(w, c->req);
	free_stash(c);
	q_clear(c);
	rt_tls_conn_free(c->tls);
	DL_DELETE(w->conns, c);
	w->n_conns--;
	RT_METRIC_INC(conns_closed);
	free(c);
	if (w->is_stopping && !w->n_conns)
		finish_stop(w);
}

static void conn_close_now(struct rt_conn *c)
{
	if (c->is_handle_closing)
		return;
	c->is_closing = true;
	c->is_handle_closing = true;
	unmark_pending(c);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void rt_conn_close(struct rt_conn *c, uint16_t code, const char *reason)
{
	if (c->is_closing)
		return;
	if (c->state == CONN_WS) {
		/* The close frame goes out through on_output, after what is queued. */
		rt_ws_close(&c->ws, code, reason);
	}
	end_after_flush(c);
}

/* ---- input ---- */

static void ws_on_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t len)
{
	struct rt_conn *c = user;
	if (c->is_closing)
		return;
	RT_METRIC_ADD(bytes_in, len);
	c->w->s->h->on_message(c, op, data, len);
}

static int ws_on_output(void *user, const uint8_t *data, size_t len)
{
	struct rt_conn *c = user;
	/* Control frames bypass the closing check (the close frame must leave),
	 * not the bound: a peer that pings without reading is cut off. */
	if (c->is_handle_closing || c->is_output_blocked)
		return 0;
	if (is_over_bound(c, len)) {
		block_output(c);
		return 0;
	}
	queue_copy(c, data, len);
	return 0;
}

static const struct rt_ws_callbacks ws_cbs = {ws_on_message, ws_on_output};

static void respond_error(struct rt_conn *c, int status)
{
	RT_METRIC_ERROR(HTTP_BAD_REQUEST);
	struct rt_buf b;
	rt_buf_init(&b);
	char body[96];
	int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", rt_http_status_text(status));
	rt_http_response(&b, status, "application/json", body, (size_t)n, NULL, false);
	queue_copy(c, b.data, b.len);
	rt_buf_deinit(&b);
	end_after_flush(c);
}

static void conn_feed_ws(struct rt_conn *c, char *data, size_t len)
{
	if (rt_ws_feed(&c->ws, (uint8_t *)data, len) != 0) {
		RT_METRIC_ERROR(WS_PROTOCOL);
		rt_debug("conn %s: websocket protocol error, closing", rt_conn_peer(c));
		end_after_flush(c);
		return;
	}
	/* The peer closed: the engine queued the reply; end after it leaves. */
	if (c->ws.close_code && !c->is_closing)
		end_after_flush(c);
	if (c->close_after_flush)
		mark_pending(c);
}

static void conn_feed(struct rt_conn *c, char *data, size_t len)
{
	while (len && !c->is_closing) {
		if (c->state == CONN_WS) {
			conn_feed_ws(c, data, len);
			return;
		}
		if (c->is_awaiting) {
			if (!c->stash) {
				c->stash = rt_xmalloc(sizeof *c->stash);
				rt_buf_init(c->stash);
			}
			/* A pipeline this deep while an answer is pending: stop reading
			 * until the answer is out, so the peer waits instead of the
			 * stash growing (at most MAX_STASH and one read). */
			rt_buf_append(c->stash, data, len);
			if (c->stash->len >= MAX_STASH && !c->is_read_paused) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->is_read_paused = true;
			}
			return;
		}
		ssize_t n = rt_http_req_feed(c->req, data, len);
		if (n < 0) {
			respond_error(c, c->req->error_status);
			return;
		}
		data += n;
		len -= (size_t)n;
		if (!c->req->is_complete) {
			if (n == 0) /* nothing consumed and not complete: malformed */
				respond_error(c, 400);
			return;
		}
		c->is_awaiting = true;
		c->req_start_ms = 0;
		RT_METRIC_INC(http_requests);
		c->w->s->h->on_request(c, c->req);
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct rt_conn *c = (struct rt_conn *)h;
	*buf = uv_buf_init(c->w->read_buf, READ_BUF_SIZE);
}

/* Plaintext from the peer. */
static void conn_input(struct rt_conn *c, char *data, size_t len)
{
	if (c->is_handle_closing || c->is_output_blocked)
		return;
	if (c->is_closing && c->state == CONN_WS) {
		/* Still read during the close handshake, for the peer's close frame. */
		conn_feed_ws(c, data, len);
		return;
	}
	conn_feed(c, data, len);
}

static void tls_plain(void *user, uint8_t *data, size_t data_len)
{
	conn_input(user, (char *)data, data_len);
}

/* Ciphertext from the peer: the handshake, then records whose plaintext
 * goes the usual way. A failed handshake (a plaintext request, garbage, no
 * common protocol or suite) sends its alert and ends the connection. */
static void tls_input(struct rt_conn *c, uint8_t *data, size_t len)
{
	if (c->is_tls_shut)
		return; /* failed, or the peer closed: nothing more to read */
	bool was_ready = rt_tls_conn_is_ready(c->tls);
	int rc = rt_tls_conn_feed(c->tls, data, len, c->w->tls_buf, sizeof c->w->tls_buf,
				  tls_plain, c);
	if (c->is_handle_closing)
		return;
	if (rc < 0 && rt_tls_conn_is_plain_http(c->tls)) {
		/* Say so in the peer's language rather than with a TLS alert. */
		static const char resp[] =
			"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
			"Content-Length: 34\r\nConnection: close\r\n\r\n"
			"This port speaks TLS: use https://";
		uint8_t sink[256];
		while (rt_tls_conn_take(c->tls, sink, sizeof sink))
			;
		q_push(c, rt_frame_copy(resp, sizeof resp - 1));
		mark_pending(c);
	}
	tls_collect(c);
	if (rc == RT_ECLOSED) {
		rt_debug("conn %s: TLS close_notify from the peer", rt_conn_peer(c));
		c->is_tls_shut = true; /* OpenSSL answered it */
		end_after_flush(c);
	} else if (rc < 0) {
		rt_debug("conn %s: %s: %s, closing", rt_conn_peer(c),
			 was_ready ? "TLS error" : "TLS handshake failed", rt_tls_conn_error(c->tls));
		c->is_tls_shut = true;
		end_after_flush(c);
	} else if (c->q_bytes > c->w->s->cfg.max_out_bytes) {
		block_output(c); /* handshake or key-update answers the peer does not read */
	}
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct rt_conn *c = (struct rt_conn *)stream;
	if (nread < 0) {
		if (nread != UV_EOF)
			rt_debug("conn %s: read: %s", rt_conn_peer(c), uv_strerror((int)nread));
		conn_close_now(c);
		return;
	}
	if (nread == 0 || c->is_handle_closing || c->is_output_blocked)
		return;
	c->last_rx_ms = rt_mono_ms();
	/* The request's clock starts at its first byte, which for TLS is the
	 * first of the handshake: a handshake takes part of the request timeout. */
	if (c->state == CONN_HTTP && !c->req_start_ms)
		c->req_start_ms = c->last_rx_ms;
	if (c->tls)
		tls_input(c, (uint8_t *)buf->base, (size_t)nread);
	else
		conn_input(c, buf->base, (size_t)nread);
}

/* ---- HTTP answers and upgrade ---- */

void rt_conn_respond(struct rt_conn *c, int status, const char *content_type, const char *body,
		     size_t body_len, const char *extra_headers)
{
	if (c->is_handle_closing || c->state != CONN_HTTP || !c->is_awaiting)
		return;
	/* A refused upgrade ends the connection: the client expected a protocol switch. */
	bool keep = c->req->keep_alive && !c->req->is_upgrade && !c->is_closing;
	struct rt_buf b;
	rt_buf_init(&b);
	rt_http_response(&b, status, content_type, body, body_len, extra_headers, keep);
	queue_copy(c, b.data, b.len);
	rt_buf_deinit(&b);
	c->is_awaiting = false;
	rt_http_req_reset(c->req);
	if (is_over_bound(c, 0)) {
		block_output(c);
		return;
	}
	if (!keep) {
		end_after_flush(c);
		return;
	}
	c->last_rx_ms = rt_mono_ms();
	feed_stash(c);
}

int rt_conn_upgrade(struct rt_conn *c, struct rt_http_req *req)
{
	const char *key = rt_http_req_header(req, "sec-websocket-key");
	const char *ver = rt_http_req_header(req, "sec-websocket-version");
	const char *upg = rt_http_req_header(req, "upgrade");
	if (!key || !upg || strcasecmp(upg, "websocket") || !ver || strcmp(ver, "13") ||
	    req->method != HTTP_GET || strlen(key) != 24) {
		rt_conn_respond(c, 400, "application/json",
				"{\"error\":\"invalid WebSocket upgrade\"}", 36, NULL);
		return RT_EPROTO;
	}
	char accept[29];
	rt_ws_accept_key(key, strlen(key), accept);
	rt_ws_init(&c->ws, RT_WS_SERVER, &ws_cbs, c, c->w->s->cfg.max_msg_bytes, NULL);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_printf(&b,
		      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nServer: rtsync\r\n\r\n",
		      accept);
	queue_copy(c, b.data, b.len);
	rt_buf_deinit(&b);

	c->state = CONN_WS;
	c->is_awaiting = false;
	c->last_rx_ms = rt_mono_ms();
	put_req(c->w, c->req);
	c->req = NULL;
	RT_METRIC_INC(ws_opened);
	feed_stash(c);
	return 0;
}

/* ---- accept ---- */

static void on_connection(uv_stream_t *server, int status)
{
	struct rt_worker *w = server->data;
	if (status < 0) {
		rt_warn("accept: %s", uv_strerror(status));
		return;
	}
	struct rt_conn *c = rt_xcalloc(1, sizeof *c);
	c->w = w;
	c->q = c->q_inline;
	c->q_cap = Q_INLINE;
	uv_tcp_init(&w->loop, &c->tcp);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
		return;
	}
	c->id = (++w->next_id << 8) | w->idx;
	c->req = get_req(w);
	if (w->s->cfg.tls)
		c->tls = rt_tls_conn_new(w->s->cfg.tls);
	c->last_rx_ms = rt_mono_ms();
	uv_tcp_nodelay(&c->tcp, 1);
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
			memcpy(c->peer_addr, &a->sin_addr, 4);
			c->peer_port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
			memcpy(c->peer_addr, &a->sin6_addr, 16);
			c->peer_port = ntohs(a->sin6_port);
			c->is_peer_v6 = true;
		}
	}
	DL_APPEND(w->conns, c);
	w->n_conns++;
	RT_METRIC_INC(conns_opened);
	uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* ---- worker loop ---- */

_Static_assert(sizeof(uv_buf_t) == sizeof(struct iovec), "uv_buf_t is an iovec");

/* One connection's send of a batch came back: as a uv_try_write() would. */
static void batch_done(void *user, int res)
{
	struct rt_conn *c = user;
	c->is_batched = false;
	if (c->is_handle_closing)
		return;
	if (res == -EAGAIN)
		res = 0;
	if (res < 0) {
		rt_debug("conn %s: write failed: %s", rt_conn_peer(c), uv_strerror(res));
		conn_close_now(c);
		return;
	}
	q_consume(c, (size_t)res);
	if (c->q_len || c->close_after_flush)
		conn_flush(c); /* the rest waits for the socket; or the close */
}

/* Flushes the pending connections with one io_uring submission per batch.
 * Returns false when the ring failed (the caller goes on without it). */
static bool flush_batched(struct rt_worker *w)
{
	while (w->pending) {
		struct iovec *iov;
		while (w->pending && (iov = rt_uring_slot(w->uring))) {
			struct rt_conn *c = w->pending;
			if (c->is_batched)
				break; /* queued more while in this batch: next one */
			unmark_pending(c);
			int fd;
			if (c->is_handle_closing || c->n_inflight || !c->q_len ||
			    uv_fileno((uv_handle_t *)&c->tcp, &fd)) {
				conn_flush(c);
				continue;
			}
			size_t total;
			unsigned n = q_iov(c, (uv_buf_t *)iov, RT_URING_MAX_IOV, &total);
			c->is_batched = true;
			rt_uring_add(w->uring, fd, n, c);
		}
		int rc = rt_uring_run(w->uring, batch_done);
		if (rc < 0) {
			rt_warn("io_uring failed (%s): sending one socket at a time from now on",
				uv_strerror(rc));
			return false;
		}
	}
	return true;
}

static void on_prepare(uv_prepare_t *h)
{
	struct rt_worker *w = h->data;
	if (w->uring && !flush_batched(w)) {
		rt_uring_free(w->uring);
		w->uring = NULL;
	}
	while (w->pending) {
		struct rt_conn *c = w->pending;
		unmark_pending(c);
		conn_flush(c);
	}
}

/* Runs once every connection's close callback has run. */
static void finish_stop(struct rt_worker *w)
{
	if (w->is_stopped)
		return;
	w->is_stopped = true;
	if (w->s->h->worker_stop)
		w->s->h->worker_stop(w);
	uv_close((uv_handle_t *)&w->async, NULL);
	uv_close((uv_handle_t *)&w->prepare, NULL);
	uv_close((uv_handle_t *)&w->tick, NULL);
}

static void begin_stop(struct rt_worker *w)
{
	if (w->is_stopping)
		return;
	w->is_stopping = true;
	w->stop_deadline_ms = rt_mono_ms() + STOP_GRACE_MS;
	uv_close((uv_handle_t *)&w->listener, NULL);
	struct rt_conn *c, *tmp;
	DL_FOREACH_SAFE(w->conns, c, tmp) {
		if (c->state == CONN_WS)
			rt_conn_close(c, 1001, "server shutting down");
		else if (!c->is_awaiting)
			conn_close_now(c);
	}
}

static void on_tick(uv_timer_t *h)
{
	struct rt_worker *w = h->data;
	uint64_t now = rt_mono_ms();
	const struct rt_server_config *cfg = &w->s->cfg;
	struct rt_conn *c, *tmp;
	DL_FOREACH_SAFE(w->conns, c, tmp) {
		if (c->is_handle_closing)
			continue;
		if (c->is_closing) {
			if (c->close_deadline_ms && now >= c->close_deadline_ms)
				conn_close_now(c);
		} else if (c->state == CONN_HTTP) {
			/* A request must be whole within the timeout of its first byte (no
			 * trickling), and an idle keep-alive connection ends after it too. */
			uint64_t since = c->req_start_ms ? c->req_start_ms : c->last_rx_ms;
			if (!c->is_awaiting && now - since >= cfg->request_timeout_ms)
				conn_close_now(c);
		} else if (now - c->last_rx_ms >= cfg->idle_timeout_ms) {
			RT_METRIC_ERROR(IDLE_TIMEOUT);
			rt_debug("conn %s: idle for %u ms, closing", rt_conn_peer(c), cfg->idle_timeout_ms);
			rt_conn_close(c, 1001, "idle timeout");
		}
	}
	if (w->s->h->on_tick)
		w->s->h->on_tick(w, now);
	if (w->is_stopping && !w->is_stopped) {
		if (!w->n_conns)
			finish_stop(w);
		else if (now >= w->stop_deadline_ms)
			DL_FOREACH_SAFE(w->conns, c, tmp)
				conn_close_now(c);
	}
}

static void on_async(uv_async_t *h)
{
	struct rt_worker *w = h->data;
	if (atomic_load(&w->stop_requested) && !w->is_stopping) {
		begin_stop(w);
		/* Check again soon rather than waiting for the next second. */
		uv_timer_start(&w->tick, on_tick, 50, 100);
	}
	if (w->s->h->on_wake)
		w->s->h->on_wake(w);
}

static void *worker_main(void *arg)
{
	struct rt_worker *w = arg;
	rt_metrics_bind(w->idx);
	if (w->s->h->worker_start)
		w->data = w->s->h->worker_start(w);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void worker_free(struct rt_worker *w)
{
	if (!w)
		return;
	uv_loop_close(&w->loop);
	rt_uring_free(w->uring);
	while (w->n_req_cache) {
		struct rt_http_req *r = w->req_cache[--w->n_req_cache];
		rt_http_req_deinit(r);
		free(r);
	}
	free(w);
}

static int worker_new(struct rt_server *s, unsigned idx, int fd, struct rt_worker **out)
{
	struct rt_worker *w = rt_xcalloc(1, sizeof *w);
	w->s = s;
	w->idx = idx;
	int rc = uv_loop_init(&w->loop);
	if (rc) {
		close(fd);
		goto err_free;
	}
	uv_tcp_init(&w->loop, &w->listener);
	w->listener.data = w;
	rc = uv_tcp_open(&w->listener, fd);
	if (rc)
		close(fd); /* not the handle's yet */
	else
		rc = uv_listen((uv_stream_t *)&w->listener, 4096, on_connection);
	if (rc) {
		uv_close((uv_handle_t *)&w->listener, NULL); /* closes fd once it was opened */
		uv_run(&w->loop, UV_RUN_NOWAIT);
		goto err_loop;
	}
	uv_async_init(&w->loop, &w->async, on_async);
	w->async.data = w;
	uv_prepare_init(&w->loop, &w->prepare);
	w->prepare.data = w;
	uv_prepare_start(&w->prepare, on_prepare);
	uv_timer_init(&w->loop, &w->tick);
	w->tick.data = w;
	uv_timer_start(&w->tick, on_tick, 1000, 1000);
	if (s->cfg.use_io_uring) {
		int urc = rt_uring_new(&w->uring);
		if (urc < 0 && idx == 0)
			rt_info("io_uring not available (%s): sending one socket at a time",
				uv_strerror(urc));
	}
	*out = w;
	return 0;
err_loop:
	uv_loop_close(&w->loop);
err_free:
	free(w);
	return rc;
}

/* Tears down a worker that never ran its thread. */
static void worker_discard(struct rt_worker *w)
{
	uv_close((uv_handle_t *)&w->listener, NULL);
	uv_close((uv_handle_t *)&w->async, NULL);
	uv_close((uv_handle_t *)&w->prepare, NULL);
	uv_close((uv_handle_t *)&w->tick, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	worker_free(w);
}

int rt_server_new(const struct rt_server_config *cfg, const struct rt_server_handler *h,
		  void *app, struct rt_server **out)
{
	if (cfg->n_workers < 1 || cfg->n_workers > RT_SERVER_MAX_WORKERS)
		return UV_EINVAL;
	struct sockaddr_storage ss;
	int rc = parse_addr(cfg->host, cfg->port, &ss);
	if (rc)
		return rc;
	struct rt_server *s = rt_xcalloc(1, sizeof *s);
	s->cfg = *cfg;
	s->h = h;
	s->app = app;
	s->port = cfg->port;
	for (unsigned i = 0; i < cfg->n_workers; i++) {
		int fd = open_listener(&ss, &s->port);
		if (fd < 0) {
			rc = fd;
			goto err;
		}
		rc = worker_new(s, i, fd, &s->workers[i]); /* takes fd */
		if (rc)
			goto err;
		s->n_workers++;
	}
	*out = s;
	return 0;
err:
	for (unsigned i = 0; i < s->n_workers; i++)
		worker_discard(s->workers[i]);
	free(s);
	return rc;
}

int rt_server_start(struct rt_server *s)
{
	for (unsigned i = 0; i < s->n_workers; i++) {
		int rc = pthread_create(&s->workers[i]->thread, NULL, worker_main, s->workers[i]);
		s->workers[i]->has_run = rc == 0;
		if (rc) {
			for (unsigned j = 0; j < i; j++)
				atomic_store(&s->workers[j]->stop_requested, true),
					uv_async_send(&s->workers[j]->async);
			for (unsigned j = 0; j < i; j++)
				pthread_join(s->workers[j]->thread, NULL);
			return -rc;
		}
	}
	s->is_started = true;
	return 0;
}

void rt_server_stop(struct rt_server *s)
{
	for (unsigned i = 0; i < s->n_workers; i++) {
		atomic_store(&s->workers[i]->stop_requested, true);
		uv_async_send(&s->workers[i]->async);
	}
}

void rt_server_join(struct rt_server *s)
{
	if (!s->is_started)
		return;
	for (unsigned i = 0; i < s->n_workers; i++)
		pthread_join(s->workers[i]->thread, NULL);
	s->is_started = false;
}

void rt_server_free(struct rt_server *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->n_workers; i++) {
		if (s->workers[i]->has_run)
			worker_free(s->workers[i]);
		else
			worker_discard(s->workers[i]);
	}
	free(s);
}

int rt_server_port(const struct rt_server *s)
{
	return s->port;
}

void *rt_server_app(const struct rt_server *s)
{
	return s->app;
}

unsigned rt_server_n_workers(const struct rt_server *s)
{
	return s->n_workers;
}

struct rt_worker *rt_server_worker(struct rt_server *s, unsigned i)
{
	return i < s->n_workers ? s->workers[i] : NULL;
}

unsigned rt_worker_index(const struct rt_worker *w)
{
	return w->idx;
}

void *rt_worker_data(const struct rt_worker *w)
{
	return w->data;
}

struct rt_server *rt_worker_server(const struct rt_worker *w)
{
	return w->s;
}

uv_loop_t *rt_worker_loop(struct rt_worker *w)
{
	return &w->loop;
}

void rt_worker_wake(struct rt_worker *w)
{
	uv_async_send(&w->async);
}

unsigned rt_worker_n_conns(const struct rt_worker *w)
{
	return w->n_conns;
}

struct rt_conn *rt_worker_find_conn(struct rt_worker *w, uint64_t id)
{
	struct rt_conn *c;
	DL_FOREACH(w->conns, c)
		if (c->id == id)
			return c->is_handle_closing ? NULL : c;
	return NULL;
}

uint64_t rt_conn_id(const struct rt_conn *c)
{
	return c->id;
}

struct rt_worker *rt_conn_worker(const struct rt_conn *c)
{
	return c->w;
}

void *rt_conn_data(const struct rt_conn *c)
{
	return c->data;
}

unsigned rt_conn_data_kind(const struct rt_conn *c)
{
	return c->data_kind;
}

void rt_conn_set_data(struct rt_conn *c, void *data, unsigned kind)
{
	c->data = data;
	c->data_kind = (uint8_t)(data ? kind : 0);
}

const char *rt_conn_peer(const struct rt_conn *c)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	inet_ntop(c->is_peer_v6 ? AF_INET6 : AF_INET, c->peer_addr, ip, sizeof ip);
	snprintf(c->w->peer_buf, sizeof c->w->peer_buf, c->is_peer_v6 ? "[%s]:%u" : "%s:%u", ip,
		 c->peer_port);
	return c->w->peer_buf;
}

bool rt_conn_is_closing(const struct rt_conn *c)
{
	return c->is_closing;
}
