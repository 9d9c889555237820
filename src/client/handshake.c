#include "client/handshake.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "net/ws.h"

#define MAX_URL 2048

static void *mem_alloc(const struct rt_allocator *a, size_t n)
{
	return a->realloc(a->ud, NULL, n);
}

static void mem_free(const struct rt_allocator *a, void *p)
{
	if (p)
		a->realloc(a->ud, p, 0);
}

static char *mem_strndup(const struct rt_allocator *a, const char *s, size_t n)
{
	char *d = mem_alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

void rt_client_url_deinit(const struct rt_allocator *a, struct rt_client_url *u)
{
	mem_free(a, u->host);
	mem_free(a, u->port);
	mem_free(a, u->path);
	mem_free(a, u->host_header);
	memset(u, 0, sizeof *u);
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	return n >= k && !memcmp(s + n - k, suffix, k);
}

int rt_client_url_parse(const struct rt_allocator *a, const char *url, struct rt_client_url *out)
{
	memset(out, 0, sizeof *out);
	if (!url || strlen(url) > MAX_URL)
		return RT_EINVAL;
	const char *p;
	bool is_tls = false;
	if (!strncasecmp(url, "ws://", 5))
		p = url + 5;
	else if (!strncasecmp(url, "http://", 7))
		p = url + 7;
	else if (!strncasecmp(url, "wss://", 6))
		p = url + 6, is_tls = true;
	else if (!strncasecmp(url, "https://", 8))
		p = url + 8, is_tls = true;
	else
		return RT_EINVAL;
	if (strpbrk(p, "?#@ \t\r\n"))
		return RT_EINVAL;
	const char *host = p, *host_end, *port = NULL, *port_end = NULL;
	if (*p == '[') { /* IPv6 literal */
		host = p + 1;
		host_end = strchr(host, ']');
		if (!host_end)
			return RT_EINVAL;
		p = host_end + 1;
	} else {
		p += strcspn(p, ":/");
		host_end = p;
	}
	if (*p == ':') {
		port = ++p;
		p += strspn(p, "0123456789");
		port_end = p;
		if (port_end == port || port_end - port > 5 || atoi(port) < 1 || atoi(port) > 65535)
			return RT_EINVAL;
	}
	if (*p && *p != '/')
		return RT_EINVAL;
	if (host_end == host)
		return RT_EINVAL;
	const char *path = p;
	size_t path_len = strlen(path);
	while (path_len && path[path_len - 1] == '/')
		path_len--;
	const char *suffix = "/realtime/v1/websocket";
	if (ends_with(path, path_len, "/websocket"))
		suffix = "";
	else if (ends_with(path, path_len, "/realtime/v1"))
		suffix = "/websocket";

	int rc = RT_ENOMEM;
	out->host = mem_strndup(a, host, (size_t)(host_end - host));
	out->port = port ? mem_strndup(a, port, (size_t)(port_end - port))
			 : mem_strndup(a, is_tls ? "443" : "80", is_tls ? 3 : 2);
	out->is_tls = is_tls;
	size_t plen = path_len + strlen(suffix);
	out->path = mem_alloc(a, plen + 2);
	/* Host header: the authority as written in the URL. */
	const char *auth_end = path;
	out->host_header = mem_strndup(a, url + (host[-1] == '[' ? (host - 1 - url) : (host - url)),
				       (size_t)(auth_end - (host[-1] == '[' ? host - 1 : host)));
	if (!out->host || !out->port || !out->path || !out->host_header)
		goto err_free;
	if (path_len && path[0] != '/') {
		rc = RT_EINVAL;
		goto err_free;
	}
	memcpy(out->path, path, path_len);
	strcpy(out->path + path_len, suffix);
	if (!out->path[0])
		strcpy(out->path, "/");
	return 0;
err_free:
	rt_client_url_deinit(a, out);
	return rc;
}

/* ---- request ---- */

static bool is_unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

int rt_client_hs_start(struct rt_client_hs *hs, const struct rt_allocator *a,
		       const struct rt_client_url *u, const char *apikey, char **req,
		       size_t *req_len)
{
	memset(hs, 0, sizeof *hs);
	http_parser_init(&hs->parser, HTTP_RESPONSE);
	hs->parser.data = hs;
	*req = NULL;
	*req_len = 0;

	unsigned char raw[16];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return RT_EIO;
	char key[25];
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw); /* 24 chars + NUL */
	rt_ws_accept_key(key, 24, hs->accept);

	size_t klen = apikey ? strlen(apikey) : 0;
	size_t cap = strlen(u->path) + strlen(u->host_header) + klen * 3 + 256;
	char *buf = mem_alloc(a, cap);
	if (!buf)
		return RT_ENOMEM;
	size_t n = (size_t)snprintf(buf, cap, "GET %s?", u->path);
	if (apikey) {
		n += (size_t)snprintf(buf + n, cap - n, "apikey=");
		for (size_t i = 0; i < klen; i++) {
			unsigned char ch = (unsigned char)apikey[i];
			if (is_unreserved(ch))
				buf[n++] = (char)ch;
			else
				n += (size_t)snprintf(buf + n, cap - n, "%%%02X", ch);
		}
		buf[n++] = '&';
	}
	n += (size_t)snprintf(buf + n, cap - n,
			      "vsn=1.0.0 HTTP/1.1\r\n"
			      "Host: %s\r\n"
			      "Upgrade: websocket\r\n"
			      "Connection: Upgrade\r\n"
			      "Sec-WebSocket-Key: %s\r\n"
			      "Sec-WebSocket-Version: 13\r\n"
			      "User-Agent: librtsync/" RT_CLIENT_VERSION "\r\n"
			      "\r\n",
			      u->host_header, key);
	*req = buf;
	*req_len = n;
	return 0;
}

/* ---- response ---- */

static void finish_value(struct rt_client_hs *hs)
{
	if (!hs->in_value)
		return;
	const char *v = hs->value;
	if (hs->field == 1 && !strcasecmp(v, "websocket"))
		hs->has_upgrade = true;
	else if (hs->field == 2) {
		/* a token list: "Upgrade" among others */
		char tmp[sizeof hs->value], *save = NULL;
		strcpy(tmp, v);
		for (char *t = strtok_r(tmp, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
			if (!strcasecmp(t, "upgrade"))
				hs->has_connection = true;
	} else if (hs->field == 3) {
		hs->has_accept = !strcmp(v, hs->accept);
	}
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct rt_client_hs *hs = p->data;
	if (hs->in_value) {
		finish_value(hs);
		hs->in_value = false;
		hs->field = 0;
		hs->value_len = 0;
		hs->value[0] = 0;
	}
	/* Field names arrive in pieces; match them on the accumulated text. */
	if (hs->field < 0)
		return 0;
	if (hs->value_len + len >= sizeof hs->value) {
		hs->value_len = sizeof hs->value - 1; /* longer than any name we want */
		hs->field = -1;
		return 0;
	}
	memcpy(hs->value + hs->value_len, at, len);
	hs->value_len += len;
	hs->value[hs->value_len] = 0;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct rt_client_hs *hs = p->data;
	if (!hs->in_value) {
		int f = 0;
		if (hs->field >= 0) {
			if (!strcasecmp(hs->value, "upgrade"))
				f = 1;
			else if (!strcasecmp(hs->value, "connection"))
				f = 2;
			else if (!strcasecmp(hs->value, "sec-websocket-accept"))
				f = 3;
		}
		hs->field = f;
		hs->in_value = true;
		hs->value_len = 0;
		hs->value[0] = 0;
	}
	if (!hs->field)
		return 0;
	size_t room = sizeof hs->value - 1 - hs->value_len;
	if (len > room) {
		len = room;
		if (hs->field == 3) /* too long to be a valid accept value */
			hs->value[0] = '!';
	}
	memcpy(hs->value + hs->value_len, at, len);
	hs->value_len += len;
	hs->value[hs->value_len] = 0;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct rt_client_hs *hs = p->data;
	finish_value(hs);
	hs->in_value = false;
	hs->is_headers_done = true;
	if (p->status_code == 101)
		return 2; /* no body: the rest is WebSocket data */
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct rt_client_hs *hs = p->data;
	size_t room = sizeof hs->body - 1 - hs->body_len;
	if (len > room)
		len = room;
	memcpy(hs->body + hs->body_len, at, len);
	hs->body_len += len;
	hs->body[hs->body_len] = 0;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct rt_client_hs *hs = p->data;
	hs->is_done = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static int status_error(const struct rt_client_hs *hs)
{
	unsigned s = hs->parser.status_code;
	return s == 401 || s == 403 ? RT_EAUTH : RT_EIO;
}

int rt_client_hs_feed(struct rt_client_hs *hs, const char *data, size_t data_len)
{
	if (hs->is_done)
		return RT_EPROTO;
	size_t n = http_parser_execute(&hs->parser, &settings, data, data_len);
	enum http_errno e = HTTP_PARSER_ERRNO(&hs->parser);
	if (!hs->is_headers_done) {
		hs->header_bytes += n;
		if (hs->header_bytes > RT_CLIENT_HS_MAX_HEADER)
			return RT_ETOOBIG;
	}
	if (e != HPE_OK && e != HPE_PAUSED)
		return RT_EPROTO;
	if (!hs->is_headers_done)
		return 0;
	if (hs->parser.status_code == 101) {
		hs->is_done = true;
		if (!hs->parser.upgrade || !hs->has_upgrade || !hs->has_connection || !hs->has_accept)
			return RT_EPROTO;
		/* http-parser stops right after the headers of an upgrade. */
		return (int)n > 0 ? (int)n : RT_EPROTO;
	}
	if (hs->is_done)
		return status_error(hs);
	if (hs->body_len == sizeof hs->body - 1) {
		hs->is_done = true;
		return status_error(hs);
	}
	return 0;
}

int rt_client_hs_eof(struct rt_client_hs *hs)
{
	hs->is_done = true;
	if (hs->is_headers_done && hs->parser.status_code != 101)
		return status_error(hs);
	return RT_EPROTO;
}

int rt_client_hs_status(const struct rt_client_hs *hs)
{
	return hs->is_headers_done ? (int)hs->parser.status_code : 0;
}
