/*
 * The WebSocket protocol (RFC 6455) for one server-side connection, on top of
 * wslay's event engine: masking checks, fragmentation, ping/pong, the close
 * handshake and its codes, UTF-8 validation of text messages (all by wslay),
 * and a bound on message size. It does no I/O: the owner feeds received bytes in and gets
 * complete messages and the bytes to send back through callbacks.
 * Also: the handshake's Sec-WebSocket-Accept value, and server frames encoded
 * once into shared rt_frame buffers for fan-out.
 *
 * Ownership: struct rt_ws is embedded in its owner; rt_ws_deinit() frees
 *            wslay's state. Message data passed to on_message is valid only
 *            during the call. Frames from rt_ws_frame() carry one reference.
 * Threads:   one rt_ws belongs to one thread; rt_ws_frame() and
 *            rt_ws_accept_key() are thread-safe.
 * Limits:    messages over max_msg_len bytes close with 1009; invalid UTF-8 in
 *            a text message closes with 1007; protocol errors with 1002.
 */
#ifndef RT_NET_WS_H
#define RT_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

#include "common/buf.h"

enum rt_ws_opcode { RT_WS_TEXT = 1, RT_WS_BINARY = 2, RT_WS_CLOSE = 8 };

struct rt_ws_callbacks {
	/* A complete text or binary message. */
	void (*on_message)(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t data_len);
	/* Bytes the engine wants sent (pongs, close frames), in order. */
	void (*on_output)(void *user, const uint8_t *data, size_t data_len);
};

struct rt_ws {
	wslay_event_context_ptr ctx;
	const struct rt_ws_callbacks *cb;
	void *user;
	const uint8_t *in;   /* bytes being fed, consumed by wslay's recv callback */
	size_t in_len;
	uint16_t close_code; /* code we sent or will send; 0 until closing */
};

/* Sets up a server-side engine. Returns 0 or RT_ENOMEM. */
int rt_ws_init(struct rt_ws *ws, const struct rt_ws_callbacks *cb, void *user, size_t max_msg_len);
void rt_ws_deinit(struct rt_ws *ws);

/*
 * Feeds received bytes. Complete messages go to on_message; replies (pong,
 * close) to on_output before this returns. Returns 0, or RT_EPROTO when the
 * connection must be closed now (a close frame, if any, was already output).
 */
int rt_ws_feed(struct rt_ws *ws, const uint8_t *data, size_t data_len);

/* Starts the close handshake with code and reason (reason may be NULL). */
void rt_ws_close(struct rt_ws *ws, uint16_t code, const char *reason);

/* True once both sides have sent close frames (or reading has stopped and
 * nothing is left to send): the TCP connection can be closed. */
bool rt_ws_is_done(const struct rt_ws *ws);

/* Encodes one unmasked server frame (FIN set) holding data. */
struct rt_frame *rt_ws_frame(enum rt_ws_opcode op, const void *data, size_t data_len);

/* Computes Sec-WebSocket-Accept for the client's key: out gets 28 characters
 * and a NUL. */
void rt_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
