/*
 * TLS for the server (OpenSSL): the certificate and key of a listener in an
 * SSL_CTX that can be read again while connections run, and the engine of
 * one TLS connection over memory BIOs. The engine does no I/O (STYLE habit
 * 1): ciphertext read from the socket is fed in, plaintext comes out through
 * a callback; plaintext to send is encrypted into the engine's output, which
 * the caller takes and writes to the socket.
 *
 * Defaults: TLS 1.2 minimum; TLS 1.2 limited to ECDHE with AES-GCM or
 * ChaCha20-Poly1305, TLS 1.3 with OpenSSL's suites; OpenSSL's default
 * security level (2: 112-bit keys at least); no compression, no
 * renegotiation; ALPN "http/1.1" when the client offers it; session
 * tickets (stateless; no server-side session cache).
 *
 * Ownership: struct rt_tls holds the current SSL_CTX; a reload swaps in a
 *            new one and each connection keeps the context it started with
 *            (SSL objects hold a reference). struct rt_tls_conn belongs to its
 *            connection; rt_tls_conn_free() frees it.
 * Threads:   rt_tls_reload() and rt_tls_conn_new() may run on any thread at
 *            the same time (the swap is under a lock); one rt_tls_conn is used
 *            by one thread.
 * Limits:    a feed processes what it is given (one socket read); the engine
 *            holds at most one partial TLS record of input between feeds.
 *            Handshake time is bounded by the caller (the server's request
 *            timeout).
 */
#ifndef RT_NET_TLS_H
#define RT_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rt_tls;
struct rt_tls_conn;

/*
 * Reads a PEM certificate chain (the server's certificate first) and its
 * private key into a new context. Returns 0 and sets *out, or -1 with a
 * reason ("FILE: why") in err (cap bytes) and *out NULL.
 */
int rt_tls_new(const char *cert_file, const char *key_file, struct rt_tls **out, char *err,
	       size_t cap);

/*
 * Reads the files again into a new context used by connections accepted
 * from now on. Returns 0, or -1 with a reason in err: the old context stays.
 */
int rt_tls_reload(struct rt_tls *t, char *err, size_t cap);

/* Frees the context holder (connections still open keep theirs). NULL: no-op. */
void rt_tls_free(struct rt_tls *t);

/* Called with decrypted bytes during rt_tls_conn_feed(). */
typedef void (*rt_tls_plain_cb)(void *user, uint8_t *data, size_t data_len);

/* A server-side connection engine on the current context. Aborts on out of
 * memory (server policy). */
struct rt_tls_conn *rt_tls_conn_new(struct rt_tls *t);
void rt_tls_conn_free(struct rt_tls_conn *tc);

/*
 * Feeds ciphertext from the socket: advances the handshake and hands every
 * decrypted byte to cb (buf of cap bytes is the scratch space for it; at
 * least 16 KiB). Returns 0 (need more, or done), or a negative RT_E* code:
 * RT_EPROTO for a failed handshake or a bad record (rt_tls_conn_error()
 * says why), RT_ECLOSED when the peer sent close_notify. Output (handshake
 * messages, alerts) may be pending afterwards either way.
 */
int rt_tls_conn_feed(struct rt_tls_conn *tc, const uint8_t *data, size_t data_len, uint8_t *buf,
		     size_t cap, rt_tls_plain_cb cb, void *user);

/* True once the handshake is complete: rt_tls_conn_write() works. */
bool rt_tls_conn_is_ready(const struct rt_tls_conn *tc);

/* Encrypts data_len bytes into the output. Returns 0, or RT_ECLOSED when
 * the connection cannot send (handshake not done, or failed). */
int rt_tls_conn_write(struct rt_tls_conn *tc, const void *data, size_t data_len);

/* Queues close_notify (once). */
void rt_tls_conn_shutdown(struct rt_tls_conn *tc);

/* Ciphertext waiting to be sent, in bytes. */
size_t rt_tls_conn_pending(const struct rt_tls_conn *tc);

/* Moves up to cap bytes of that output into out; returns the count. */
size_t rt_tls_conn_take(struct rt_tls_conn *tc, uint8_t *out, size_t cap);

/* True when the handshake failed because the peer spoke plain HTTP. */
bool rt_tls_conn_is_plain_http(const struct rt_tls_conn *tc);

/* Why the last feed failed (an OpenSSL reason), "" when it did not. */
const char *rt_tls_conn_error(const struct rt_tls_conn *tc);

#endif
