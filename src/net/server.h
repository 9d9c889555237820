/*
 * The network server: N worker threads, each with its own libuv loop and its
 * own SO_REUSEPORT listening socket. A connection lives its whole life on the
 * worker that accepted it, so its state needs no lock. Each connection speaks
 * HTTP/1.1 until its handler upgrades it to WebSocket.
 *
 * Output: every connection has a bounded queue of shared frames. Frames queued
 * during one loop turn leave together, in one writev, just before the loop
 * sleeps. A connection whose queue passes max_out_bytes is a slow consumer: it
 * is sent a close frame (1008) and dropped, and nobody else waits for it.
 *
 * Ownership: the server owns workers and connections. A connection is freed
 *            after its handler's on_close has run, from the loop's close phase,
 *            never inside a handler callback. Frames passed to rt_conn_send()
 *            are referenced, not taken.
 * Threads:   rt_conn_* and rt_worker_* (but rt_worker_wake) run on the owning
 *            worker's thread only. rt_worker_wake() and rt_server_stop() are
 *            thread-safe. Handler callbacks run on the worker's thread.
 * Limits:    see struct rt_server_config.
 */
#ifndef RT_NET_SERVER_H
#define RT_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "net/http.h"
#include "net/tls.h"
#include "net/ws.h"

#define RT_SERVER_MAX_WORKERS 64

struct rt_server;
struct rt_worker;
struct rt_conn;

struct rt_server_config {
	const char *host;            /* numeric IPv4 or IPv6 address */
	int port;                    /* 0: pick a free port (see rt_server_port) */
	unsigned n_workers;          /* 1..RT_SERVER_MAX_WORKERS */
	size_t max_out_bytes;        /* outbound queue bound per connection */
	size_t max_msg_bytes;        /* largest WebSocket message accepted */
	size_t max_body_bytes;       /* largest HTTP request body accepted */
	unsigned request_timeout_ms; /* an HTTP request must arrive within this */
	unsigned idle_timeout_ms;    /* a WebSocket silent this long is closed */
	bool use_io_uring;           /* send to many sockets with one system call
				      * (net/uring.h) when the kernel allows it */
	struct rt_tls *tls;          /* NULL: plaintext; else the listener speaks only
				      * TLS with this context (net/tls.h; borrowed, it
				      * must outlive the server) */
};

struct rt_server_handler {
	/* Worker start/stop, on the worker's thread; start returns its app state. */
	void *(*worker_start)(struct rt_worker *w);
	void (*worker_stop)(struct rt_worker *w);
	/* A complete HTTP request. Answer with rt_conn_respond() (now or later) or
	 * accept a WebSocket upgrade with rt_conn_upgrade(). */
	void (*on_request)(struct rt_conn *c, struct rt_http_req *req);
	/* A complete WebSocket message. */
	void (*on_message)(struct rt_conn *c, enum rt_ws_opcode op, const uint8_t *data,
			   size_t data_len);
	/* The connection is going away: release what the handler attached to it. */
	void (*on_close)(struct rt_conn *c);
	/* rt_worker_wake() was called (wake-ups coalesce: drain everything). */
	void (*on_wake)(struct rt_worker *w);
	/* Once a second. */
	void (*on_tick)(struct rt_worker *w, uint64_t now_ms);
};

/* Binds the listening sockets. Returns 0, or a negative libuv error (e.g.
 * UV_EADDRINUSE) with nothing left allocated. */
int rt_server_new(const struct rt_server_config *cfg, const struct rt_server_handler *h,
		  void *app, struct rt_server **out);
/* The bound port (useful with port 0). */
int rt_server_port(const struct rt_server *s);
void *rt_server_app(const struct rt_server *s);
unsigned rt_server_n_workers(const struct rt_server *s);
struct rt_worker *rt_server_worker(struct rt_server *s, unsigned i);
/* Starts the worker threads. Returns 0 or a negative errno. */
int rt_server_start(struct rt_server *s);
/* Asks every worker to stop: listeners close, WebSockets get close 1001, and
 * each worker ends once its connections are gone (at most ~3 s). */
void rt_server_stop(struct rt_server *s);
/* Waits for every worker thread to end. */
void rt_server_join(struct rt_server *s);
void rt_server_free(struct rt_server *s);

unsigned rt_worker_index(const struct rt_worker *w);
void *rt_worker_data(const struct rt_worker *w);
struct rt_server *rt_worker_server(const struct rt_worker *w);
uv_loop_t *rt_worker_loop(struct rt_worker *w);
/* Thread-safe: makes the worker call handler->on_wake soon. */
void rt_worker_wake(struct rt_worker *w);
/* Live connections on this worker. */
unsigned rt_worker_n_conns(const struct rt_worker *w);

uint64_t rt_conn_id(const struct rt_conn *c);
struct rt_worker *rt_conn_worker(const struct rt_conn *c);
/* The data a layer attached to a connection, and what it is (kind, 1–255, a
 * value the layers sharing connections agree on; 0 with NULL data). */
void *rt_conn_data(const struct rt_conn *c);
unsigned rt_conn_data_kind(const struct rt_conn *c);
void rt_conn_set_data(struct rt_conn *c, void *data, unsigned kind);
/* "ADDR:PORT" of the peer ("[ADDR]:PORT" for IPv6), in a buffer of the
 * worker valid until the next call on that worker. */
const char *rt_conn_peer(const struct rt_conn *c);
bool rt_conn_is_closing(const struct rt_conn *c);

/* Finds a live connection of this worker by id (for answers that arrive
 * later); NULL when it has gone. */
struct rt_conn *rt_worker_find_conn(struct rt_worker *w, uint64_t id);

/* Queues a frame (already WebSocket-framed, or raw HTTP bytes). Takes a new
 * reference. Ignored once the connection is closing. */
void rt_conn_send(struct rt_conn *c, struct rt_frame *f);
/* Frames data as one WebSocket message and queues it. */
void rt_conn_send_ws(struct rt_conn *c, enum rt_ws_opcode op, const void *data, size_t data_len);

/* Answers the current HTTP request; the connection then reads the next one
 * (keep-alive) or closes. extra_headers: "Name: value\r\n"... or NULL. */
void rt_conn_respond(struct rt_conn *c, int status, const char *content_type, const char *body,
		     size_t body_len, const char *extra_headers);

/* Accepts the WebSocket upgrade of the current request (answers 101). Returns
 * 0, or RT_EPROTO when the request is not a valid upgrade (answered 400). */
int rt_conn_upgrade(struct rt_conn *c, struct rt_http_req *req);

/* Closes: a WebSocket gets a close frame with code and reason and the TCP
 * connection ends when the handshake completes (or after 3 s); an HTTP
 * connection ends once its queue is flushed. */
void rt_conn_close(struct rt_conn *c, uint16_t code, const char *reason);

#endif
