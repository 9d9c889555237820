/*
 * TLS for librtsync's wss:// and https:// URLs (OpenSSL, on the client's
 * non-blocking socket). Verification is on unless the application turns it
 * off: the chain against the system's trusted CAs (or the CA file or
 * directory given), the name against the URL's host (a DNS name, or an IP
 * address literal); SNI carries the host name. TLS 1.2 minimum, ALPN
 * "http/1.1". The session of a connection is offered again on the next
 * one, so reconnects resume instead of doing a full handshake.
 *
 * Ownership: struct rt_client_tls owns its SSL_CTX, the SSL of the current
 *            connection and the session kept for the next; not the socket.
 *            OpenSSL allocates with its own (process-wide) functions, not the
 *            client's allocator.
 * Threads:   used by one client, under its lock.
 * Limits:    none of its own; the caller's connect timeout bounds the
 *            handshake.
 */
#ifndef RT_CLIENT_TLS_H
#define RT_CLIENT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct rt_client_tls;

/*
 * A context for connections to host (as written in the URL, without
 * brackets). ca_file, ca_dir: trusted CAs instead of the system's (NULL:
 * the system's); skip_verify: no certificate or name check. Returns 0,
 * RT_ETLS when the CA file or directory cannot be loaded (err says why),
 * RT_ENOMEM.
 */
int rt_client_tls_new(const char *host, const char *ca_file, const char *ca_dir,
		      bool skip_verify, struct rt_client_tls **out, char *err, size_t cap);
/* Frees everything (NULL: no-op); the socket stays open. */
void rt_client_tls_free(struct rt_client_tls *t);

/* Starts a connection on the connected socket fd. Returns 0 or RT_ENOMEM. */
int rt_client_tls_start(struct rt_client_tls *t, int fd);

/*
 * Advances the handshake. Returns 1 when complete, 0 when it waits for the
 * socket (see rt_client_tls_wants_write()), or RT_ETLS with the reason in
 * err ("certificate verify failed: self-signed certificate", "TLS
 * handshake failed: …").
 */
int rt_client_tls_handshake(struct rt_client_tls *t, char *err, size_t cap);

/* Like recv(): bytes read (> 0), 0 at the end of the stream (close_notify
 * or EOF), RT_EAGAIN when nothing is there now, RT_EIO with err set. */
ssize_t rt_client_tls_recv(struct rt_client_tls *t, void *buf, size_t cap, char *err, size_t errcap);

/* Like send(): bytes taken (> 0), RT_EAGAIN when the socket is full,
 * RT_EIO with err set. */
ssize_t rt_client_tls_send(struct rt_client_tls *t, const void *data, size_t data_len, char *err,
			   size_t errcap);

/* True when the last call waits for the socket to take data (EPOLLOUT). */
bool rt_client_tls_wants_write(const struct rt_client_tls *t);

/* Ends the connection: close_notify when the handshake was done (best
 * effort), its session kept for the next start, the SSL freed. */
void rt_client_tls_stop(struct rt_client_tls *t);

#endif
