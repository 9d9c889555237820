#include "client/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rtsync/err.h"

struct rt_client_tls {
	SSL_CTX *ctx;
	BIO_METHOD *sock_method; /* send() with MSG_NOSIGNAL: no SIGPIPE for the application */
	SSL *ssl;              /* the current connection, or NULL */
	SSL_SESSION *session;  /* offered to the next connection */
	char *host;
	bool is_ip;            /* host is an address literal: no SNI, IP check */
	bool skip_verify;
	bool is_ready;         /* handshake complete */
	bool wants_write;
};

/* The first queued OpenSSL error as text; the queue is emptied. */
static void ssl_reason(char *out, size_t cap, const char *dflt)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	if (r)
		snprintf(out, cap, "%s", r);
	else if (e)
		ERR_error_string_n(e, out, cap);
	else
		snprintf(out, cap, "%s", dflt);
	ERR_clear_error();
}

/* ---- a socket BIO that never raises SIGPIPE (OpenSSL's writes with write()) ---- */

static int sock_write(BIO *b, const char *data, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t n = send((int)(intptr_t)BIO_get_data(b), data, (size_t)len, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)n;
}

static int sock_read(BIO *b, char *out, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t n = recv((int)(intptr_t)BIO_get_data(b), out, (size_t)len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(b);
	return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int sock_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

int rt_client_tls_new(const char *host, const char *ca_file, const char *ca_dir,
		      bool skip_verify, struct rt_client_tls **out, char *err, size_t cap)
{
	*out = NULL;
	struct rt_client_tls *t = calloc(1, sizeof *t);
	if (!t)
		return RT_ENOMEM;
	t->host = strdup(host);
	t->ctx = SSL_CTX_new(TLS_client_method());
	t->sock_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rtsync socket");
	int rc = RT_ENOMEM;
	if (!t->host || !t->ctx || !t->sock_method)
		goto err_free;
	BIO_meth_set_write(t->sock_method, sock_write);
	BIO_meth_set_read(t->sock_method, sock_read);
	BIO_meth_set_ctrl(t->sock_method, sock_ctrl);
	BIO_meth_set_create(t->sock_method, sock_create);
	unsigned char addr[16];
	t->is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	t->skip_verify = skip_verify;
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* the output buffer grows (and moves) between the retries of a write */
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	static const unsigned char alpn[] = "\x08http/1.1";
	if (SSL_CTX_set_alpn_protos(t->ctx, alpn, sizeof alpn - 1))
		goto err_free;
	SSL_CTX_set_verify(t->ctx, skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
	rc = RT_ETLS;
	if (ca_file || ca_dir) {
		if (SSL_CTX_load_verify_locations(t->ctx, ca_file, ca_dir) != 1) {
			char why[160];
			ssl_reason(why, sizeof why, "no certificates");
			snprintf(err, cap, "cannot load the CA certificates from %s: %s",
				 ca_file ? ca_file : ca_dir, why);
			goto err_free;
		}
	} else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
		char why[160];
		ssl_reason(why, sizeof why, "unknown error");
		snprintf(err, cap, "cannot load the system's CA certificates: %s", why);
		goto err_free;
	}
	*out = t;
	return 0;
err_free:
	rt_client_tls_free(t);
	return rc;
}

void rt_client_tls_free(struct rt_client_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	SSL_SESSION_free(t->session);
	SSL_CTX_free(t->ctx);
	BIO_meth_free(t->sock_method);
	free(t->host);
	free(t);
}

int rt_client_tls_start(struct rt_client_tls *t, int fd)
{
	rt_client_tls_stop(t);
	ERR_clear_error();
	t->ssl = SSL_new(t->ctx);
	BIO *bio = t->ssl ? BIO_new(t->sock_method) : NULL;
	if (!bio)
		goto err_free;
	BIO_set_data(bio, (void *)(intptr_t)fd);
	SSL_set_bio(t->ssl, bio, bio); /* the SSL owns it */
	if (!t->is_ip && SSL_set_tlsext_host_name(t->ssl, t->host) != 1)
		goto err_free;
	if (!t->skip_verify) {
		int ok = t->is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), t->host)
				  : SSL_set1_host(t->ssl, t->host);
		if (ok != 1)
			goto err_free;
	}
	if (t->session)
		SSL_set_session(t->ssl, t->session);
	SSL_set_connect_state(t->ssl);
	t->is_ready = false;
	t->wants_write = false;
	return 0;
err_free:
	SSL_free(t->ssl);
	t->ssl = NULL;
	ERR_clear_error();
	return RT_ENOMEM;
}

int rt_client_tls_handshake(struct rt_client_tls *t, char *err, size_t cap)
{
	t->wants_write = false;
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->is_ready = true;
		return 1;
	}
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE) {
		t->wants_write = true;
		return 0;
	}
	long v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK) {
		snprintf(err, cap, "certificate verify failed: %s", X509_verify_cert_error_string(v));
		ERR_clear_error();
	} else {
		char why[160];
		if (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
			snprintf(why, sizeof why, "%s", errno ? strerror(errno) : "connection closed");
		else
			ssl_reason(why, sizeof why, "unknown error");
		snprintf(err, cap, "TLS handshake failed: %s", why);
	}
	return RT_ETLS;
}

/* Maps a failed SSL_read/SSL_write to the return convention. */
static ssize_t io_error(struct rt_client_tls *t, int r, bool is_read, char *err, size_t cap)
{
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return RT_EAGAIN;
	if (e == SSL_ERROR_WANT_WRITE) {
		t->wants_write = true;
		return RT_EAGAIN;
	}
	if (is_read && e == SSL_ERROR_ZERO_RETURN)
		return 0;
	unsigned long q = ERR_peek_error();
	if (is_read && ((e == SSL_ERROR_SYSCALL && !q) ||
			(ERR_GET_LIB(q) == ERR_LIB_SSL &&
			 ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING))) {
		ERR_clear_error();
		return 0; /* EOF without close_notify: the end of the stream all the same */
	}
	char why[160];
	if (e == SSL_ERROR_SYSCALL && !q)
		snprintf(why, sizeof why, "%s", strerror(errno));
	else
		ssl_reason(why, sizeof why, "unknown error");
	snprintf(err, cap, "TLS %s: %s", is_read ? "read" : "write", why);
	return RT_EIO;
}

ssize_t rt_client_tls_recv(struct rt_client_tls *t, void *buf, size_t cap, char *err, size_t errcap)
{
	t->wants_write = false;
	size_t n = 0;
	int r = SSL_read_ex(t->ssl, buf, cap, &n);
	if (r == 1)
		return (ssize_t)n;
	return io_error(t, r, true, err, errcap);
}

ssize_t rt_client_tls_send(struct rt_client_tls *t, const void *data, size_t data_len, char *err,
			   size_t errcap)
{
	t->wants_write = false;
	size_t n = 0;
	int r = SSL_write_ex(t->ssl, data, data_len, &n);
	if (r == 1)
		return (ssize_t)n;
	return io_error(t, r, false, err, errcap);
}

bool rt_client_tls_wants_write(const struct rt_client_tls *t)
{
	return t->ssl && t->wants_write;
}

void rt_client_tls_stop(struct rt_client_tls *t)
{
	if (!t->ssl)
		return;
	if (t->is_ready) {
		SSL_shutdown(t->ssl); /* one try: the socket closes right after */
		SSL_SESSION *s = SSL_get1_session(t->ssl);
		if (s && SSL_SESSION_is_resumable(s)) {
			SSL_SESSION_free(t->session);
			t->session = s;
		} else {
			SSL_SESSION_free(s);
		}
	}
	ERR_clear_error();
	SSL_free(t->ssl);
	t->ssl = NULL;
	t->is_ready = false;
	t->wants_write = false;
}
