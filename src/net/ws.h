/*
 * The WebSocket protocol (RFC 6455) for one connection, server or client
 * side: masking rules, fragmentation, ping/pong, the close handshake and its
 * codes, UTF-8 validation of text messages, and a bound on message size. It
 * does no I/O: the owner feeds received bytes in and gets complete messages
 * and the bytes to send through callbacks. An idle engine holds no buffer:
 * memory is taken only while a frame or a fragmented message is incomplete,
 * and given back when it completes.
 * Also: the handshake's Sec-WebSocket-Accept value, and server frames encoded
 * once into shared rt_frame buffers for fan-out.
 *
 * Ownership: struct rt_ws is embedded in its owner; rt_ws_deinit() frees the
 *            partial-frame and message buffers. Message data passed to
 *            on_message is valid only during the call. Frames from
 *            rt_ws_frame() carry one reference.
 * Threads:   one rt_ws belongs to one thread; rt_ws_frame() and
 *            rt_ws_accept_key() are thread-safe.
 * Limits:    messages over max_msg_len bytes close with 1009; invalid UTF-8 in
 *            a text message or a close reason closes with 1007; every other
 *            protocol error (unmasked client frame, masked server frame, RSV
 *            bits, unknown opcode, bad control frame, bad close code, a
 *            continuation out of place) with 1002. With an allocator, out of
 *            memory is RT_ENOMEM; without one, the process aborts (server).
 */
#ifndef RT_NET_WS_H
#define RT_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

enum rt_ws_role { RT_WS_SERVER, RT_WS_CLIENT };

enum rt_ws_opcode { RT_WS_TEXT = 1, RT_WS_BINARY = 2, RT_WS_CLOSE = 8 };

/* realloc semantics: size 0 frees ptr and returns NULL; NULL on failure. */
struct rt_ws_allocator {
	void *(*realloc)(void *ud, void *ptr, size_t size);
	void *ud;
};

struct rt_ws_callbacks {
	/* A complete text or binary message. */
	void (*on_message)(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t data_len);
	/* Bytes to send (frames, control replies), in order. Returns 0, or a
	 * negative RT_E* code that stops the engine and is returned by the call
	 * that produced the output. */
	int (*on_output)(void *user, const uint8_t *data, size_t data_len);
};

struct rt_ws {
	const struct rt_ws_callbacks *cb;
	void *user;
	struct rt_ws_allocator alloc; /* realloc NULL: rt_xrealloc (abort on OOM) */
	size_t max_msg_len;
	uint8_t *frame;      /* an incomplete frame: header and payload so far */
	size_t frame_len;
	size_t frame_cap;
	uint8_t *msg;        /* a fragmented message being assembled */
	size_t msg_len;
	uint8_t msg_op;      /* opcode of that message; 0 when none */
	uint8_t role;        /* enum rt_ws_role */
	bool is_close_sent;
	bool is_close_received;
	bool is_read_stopped; /* after a protocol error or the peer's close */
	uint16_t close_code;  /* code we sent or will send; 0 until closing */
	uint16_t peer_close_code; /* 0 until the peer's close frame (1005: no code) */
};

/*
 * Sets up an engine. alloc may be NULL (the server: abort on out of memory);
 * it is copied. Returns 0 (it allocates nothing).
 */
int rt_ws_init(struct rt_ws *ws, enum rt_ws_role role, const struct rt_ws_callbacks *cb,
	       void *user, size_t max_msg_len, const struct rt_ws_allocator *alloc);
void rt_ws_deinit(struct rt_ws *ws);

/*
 * Feeds received bytes; the engine may unmask them in place. Complete
 * messages go to on_message; replies (pong, close) to on_output before this
 * returns. Returns 0; RT_EPROTO when the connection must be closed now (our
 * close frame, if any, was already output); RT_ENOMEM when a buffer could
 * not be had (reading stops); or on_output's error.
 */
int rt_ws_feed(struct rt_ws *ws, uint8_t *data, size_t data_len);

/*
 * Sends one message as a single frame through on_output (masked with a fresh
 * random key on a client). Returns 0, RT_ECLOSED once our close frame has
 * been sent, RT_EINVAL for an opcode other than text or binary, or
 * on_output's error.
 */
int rt_ws_send(struct rt_ws *ws, enum rt_ws_opcode op, const void *data, size_t data_len);

/* Starts the close handshake with code and reason (reason may be NULL; it is
 * cut to 123 bytes on a UTF-8 boundary). Does nothing once a close was sent. */
void rt_ws_close(struct rt_ws *ws, uint16_t code, const char *reason);

/* True once both sides have sent close frames (or reading has stopped and
 * our close is out): the TCP connection can be closed. */
bool rt_ws_is_done(const struct rt_ws *ws);

/* The code of the peer's close frame: 0 until it arrives, 1005 when it had none. */
uint16_t rt_ws_peer_close_code(const struct rt_ws *ws);

/* Encodes one unmasked server frame (FIN set) holding data. */
struct rt_frame *rt_ws_frame(enum rt_ws_opcode op, const void *data, size_t data_len);

/* Computes Sec-WebSocket-Accept for the client's key: out gets 28 characters
 * and a NUL. */
void rt_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
