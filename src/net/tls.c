#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 keeps OpenSSL's). */
#define TLS12_CIPHERS                                                                    \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                     \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                     \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Server policy (common/alloc.h): out of memory aborts loudly. */
static void oom(size_t n, const char *where)
{
	fprintf(stderr, "rtsync: out of memory (OpenSSL, %zu bytes) in %s\n", n, where);
	abort();
}

struct rt_tls {
	pthread_mutex_t lock;
	SSL_CTX *ctx; /* under lock */
	char *cert_file, *key_file;
};

struct rt_tls_conn {
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	bool is_ready;
	bool is_failed;
	bool has_shutdown;
	bool is_plain_http; /* the failed handshake was an HTTP request */
	char error[160];
};

/* The first queued OpenSSL error as text (and the queue emptied). */
static void ssl_reason(char *out, size_t cap)
{
	unsigned long e = ERR_get_error();
	if (!e) {
		snprintf(out, cap, "unknown error");
	} else {
		const char *r = ERR_reason_error_string(e);
		if (r)
			snprintf(out, cap, "%s", r);
		else
			ERR_error_string_n(e, out, cap);
	}
	ERR_clear_error();
}

/* ALPN: http/1.1 when offered; a client that offers only other protocols
 * (h2) goes on without ALPN rather than failing. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
		       const unsigned char *in, unsigned in_len, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, out_len, ours, sizeof ours - 1, in, in_len) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *ctx_load(const char *cert, const char *key, char *err, size_t cap)
{
	char why[200];
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		oom(0, __func__);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* Tickets carry the session: no cache shared (and locked) by the workers. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, cap, "%s: %s", cert, why);
		goto err_free;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, cap, "%s: %s", key, why);
		goto err_free;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, cap, "%s does not match %s: %s", key, cert, why);
		goto err_free;
	}
	return ctx;
err_free:
	SSL_CTX_free(ctx);
	return NULL;
}

int rt_tls_new(const char *cert_file, const char *key_file, struct rt_tls **out, char *err,
	       size_t cap)
{
	*out = NULL;
	SSL_CTX *ctx = ctx_load(cert_file, key_file, err, cap);
	if (!ctx)
		return -1;
	struct rt_tls *t = rt_xcalloc(1, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
	t->ctx = ctx;
	t->cert_file = rt_xstrdup(cert_file);
	t->key_file = rt_xstrdup(key_file);
	*out = t;
	return 0;
}

int rt_tls_reload(struct rt_tls *t, char *err, size_t cap)
{
	SSL_CTX *ctx = ctx_load(t->cert_file, t->key_file, err, cap);
	if (!ctx)
		return -1;
	pthread_mutex_lock(&t->lock);
	SSL_CTX *old = t->ctx;
	t->ctx = ctx;
	pthread_mutex_unlock(&t->lock);
	SSL_CTX_free(old); /* connections on it keep their reference */
	return 0;
}

void rt_tls_free(struct rt_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->lock);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}

struct rt_tls_conn *rt_tls_conn_new(struct rt_tls *t)
{
	struct rt_tls_conn *tc = rt_xcalloc(1, sizeof *tc);
	pthread_mutex_lock(&t->lock);
	tc->ssl = SSL_new(t->ctx); /* takes its own reference on the context */
	pthread_mutex_unlock(&t->lock);
	tc->rbio = BIO_new(BIO_s_mem());
	tc->wbio = BIO_new(BIO_s_mem());
	if (!tc->ssl || !tc->rbio || !tc->wbio)
		oom(sizeof(SSL *), __func__);
	/* An empty read BIO means "need more", not end of file. */
	BIO_set_mem_eof_return(tc->rbio, -1);
	BIO_set_mem_eof_return(tc->wbio, -1);
	SSL_set_bio(tc->ssl, tc->rbio, tc->wbio);
	SSL_set_accept_state(tc->ssl);
	return tc;
}

void rt_tls_conn_free(struct rt_tls_conn *tc)
{
	if (!tc)
		return;
	SSL_free(tc->ssl); /* and both BIOs */
	free(tc);
}

/* Records why the connection failed; returns RT_EPROTO. */
static int conn_failed(struct rt_tls_conn *tc, int ssl_err)
{
	tc->is_failed = true;
	unsigned long e = ERR_peek_error();
	tc->is_plain_http = ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST;
	if (ssl_err == SSL_ERROR_SSL)
		ssl_reason(tc->error, sizeof tc->error);
	else
		snprintf(tc->error, sizeof tc->error, "TLS error %d", ssl_err);
	ERR_clear_error();
	return RT_EPROTO;
}

int rt_tls_conn_feed(struct rt_tls_conn *tc, const uint8_t *data, size_t data_len, uint8_t *buf,
		     size_t cap, rt_tls_plain_cb cb, void *user)
{
	if (tc->is_failed)
		return RT_EPROTO;
	if (data_len && BIO_write(tc->rbio, data, (int)data_len) != (int)data_len)
		oom(data_len, __func__);
	if (!tc->is_ready) {
		int r = SSL_do_handshake(tc->ssl);
		if (r != 1) {
			int e = SSL_get_error(tc->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return 0;
			return conn_failed(tc, e);
		}
		tc->is_ready = true;
	}
	for (;;) {
		size_t n = 0;
		int r = SSL_read_ex(tc->ssl, buf, cap, &n);
		if (r == 1) {
			cb(user, buf, n);
			continue;
		}
		int e = SSL_get_error(tc->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_ZERO_RETURN)
			return RT_ECLOSED;
		return conn_failed(tc, e);
	}
}

bool rt_tls_conn_is_ready(const struct rt_tls_conn *tc)
{
	return tc->is_ready && !tc->is_failed;
}

int rt_tls_conn_write(struct rt_tls_conn *tc, const void *data, size_t data_len)
{
	if (!tc->is_ready || tc->is_failed || tc->has_shutdown)
		return RT_ECLOSED;
	const uint8_t *p = data;
	while (data_len) {
		size_t n = 0;
		/* A memory BIO takes everything: a write fails only when broken. */
		if (SSL_write_ex(tc->ssl, p, data_len, &n) != 1) {
			int e = SSL_get_error(tc->ssl, 0);
			conn_failed(tc, e);
			return RT_ECLOSED;
		}
		p += n;
		data_len -= n;
	}
	return 0;
}

void rt_tls_conn_shutdown(struct rt_tls_conn *tc)
{
	if (tc->has_shutdown || !tc->is_ready || tc->is_failed)
		return;
	tc->has_shutdown = true;
	SSL_shutdown(tc->ssl);
	ERR_clear_error();
}

size_t rt_tls_conn_pending(const struct rt_tls_conn *tc)
{
	return BIO_ctrl_pending(tc->wbio);
}

size_t rt_tls_conn_take(struct rt_tls_conn *tc, uint8_t *out, size_t cap)
{
	int n = BIO_read(tc->wbio, out, (int)(cap > INT32_MAX ? INT32_MAX : cap));
	return n > 0 ? (size_t)n : 0;
}

const char *rt_tls_conn_error(const struct rt_tls_conn *tc)
{
	return tc->error;
}

bool rt_tls_conn_is_plain_http(const struct rt_tls_conn *tc)
{
	return tc->is_plain_http;
}
