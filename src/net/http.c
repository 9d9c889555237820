#include "net/http.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static int fail(http_parser *p, int status)
{
	struct rt_http_req *r = p->data;
	if (!r->error_status)
		r->error_status = status;
	return -1;
}

static int count_head(http_parser *p, size_t n)
{
	struct rt_http_req *r = p->data;
	r->head_bytes += n;
	return r->head_bytes > RT_HTTP_MAX_HEAD ? fail(p, 431) : 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct rt_http_req *r = p->data;
	if (count_head(p, len))
		return -1;
	rt_buf_append(&r->url, at, len);
	return 0;
}

static void end_header(struct rt_http_req *r)
{
	if (!r->in_value)
		return;
	uint16_t *off = r->str_off[r->n_headers++];
	for (size_t i = 0; i < r->field.len; i++)
		r->field.data[i] = (char)tolower((unsigned char)r->field.data[i]);
	/* the head is at most RT_HTTP_MAX_HEAD bytes, so offsets fit 16 bits */
	off[0] = (uint16_t)r->strs.len;
	rt_buf_append(&r->strs, r->field.data, r->field.len);
	rt_buf_append_byte(&r->strs, 0);
	off[1] = (uint16_t)r->strs.len;
	rt_buf_append(&r->strs, r->value.data, r->value.len);
	rt_buf_append_byte(&r->strs, 0);
	rt_buf_reset(&r->field);
	rt_buf_reset(&r->value);
	r->in_value = false;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct rt_http_req *r = p->data;
	if (count_head(p, len))
		return -1;
	if (r->path)
		return 0; /* a chunked body's trailer: counted, not kept (the head is done) */
	if (r->in_value)
		end_header(r);
	if (!r->field.len && r->n_headers >= RT_HTTP_MAX_HEADERS)
		return fail(p, 431);
	rt_buf_append(&r->field, at, len);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct rt_http_req *r = p->data;
	if (count_head(p, len))
		return -1;
	if (r->path)
		return 0; /* a trailer */
	r->in_value = true;
	rt_buf_append(&r->value, at, len);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct rt_http_req *r = p->data;
	end_header(r);
	if (p->content_length != ULLONG_MAX && p->content_length > r->max_body)
		return fail(p, 413);
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (!r->url.len || http_parser_parse_url(r->url.data, r->url.len, 0, &u) != 0)
		return fail(p, 400);
	if (!(u.field_set & (1 << UF_PATH)))
		return fail(p, 400);
	size_t path_off = r->strs.len, query_off = 0;
	rt_buf_append(&r->strs, r->url.data + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	rt_buf_append_byte(&r->strs, 0);
	if (u.field_set & (1 << UF_QUERY)) {
		query_off = r->strs.len;
		rt_buf_append(&r->strs, r->url.data + u.field_data[UF_QUERY].off,
			      u.field_data[UF_QUERY].len);
		rt_buf_append_byte(&r->strs, 0);
	}
	/* strs no longer grows: its offsets become pointers */
	r->path = r->strs.data + path_off;
	r->query = query_off ? r->strs.data + query_off : NULL;
	for (unsigned i = 0; i < r->n_headers; i++) {
		r->headers[i].name = r->strs.data + r->str_off[i][0];
		r->headers[i].value = r->strs.data + r->str_off[i][1];
	}
	r->method = p->method;
	r->keep_alive = http_should_keep_alive(p);
	r->is_upgrade = p->upgrade;
	/* An upgrade request has no body here: what follows belongs to the new protocol. */
	return p->upgrade ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct rt_http_req *r = p->data;
	if (r->body.len + len > r->max_body)
		return fail(p, 413);
	rt_buf_append(&r->body, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct rt_http_req *r = p->data;
	r->is_complete = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void rt_http_req_init(struct rt_http_req *r, size_t max_body)
{
	memset(r, 0, sizeof *r);
	r->max_body = max_body;
	http_parser_init(&r->parser, HTTP_REQUEST);
	r->parser.data = r;
}

/* Forgets the request; the parse buffers keep their memory unless is_final. */
static void clear(struct rt_http_req *r, bool is_final)
{
	r->n_headers = 0;
	r->path = r->query = NULL;
	rt_buf_deinit(&r->body);
	if (is_final) {
		rt_buf_deinit(&r->url);
		rt_buf_deinit(&r->field);
		rt_buf_deinit(&r->value);
		rt_buf_deinit(&r->strs);
	} else {
		rt_buf_reset(&r->url);
		rt_buf_reset(&r->field);
		rt_buf_reset(&r->value);
		rt_buf_reset(&r->strs);
	}
	r->in_value = false;
	r->head_bytes = 0;
	r->is_complete = r->is_upgrade = r->keep_alive = false;
	r->error_status = 0;
}

void rt_http_req_deinit(struct rt_http_req *r)
{
	clear(r, true);
}

void rt_http_req_reset(struct rt_http_req *r)
{
	clear(r, false);
	/* init clears pause and error states alike */
	http_parser_init(&r->parser, HTTP_REQUEST);
	r->parser.data = r;
}

ssize_t rt_http_req_feed(struct rt_http_req *r, const char *data, size_t data_len)
{
	if (r->is_complete)
		return 0;
	size_t n = http_parser_execute(&r->parser, &settings, data, data_len);
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->parser.upgrade && !r->error_status) {
		r->is_complete = true;
		return (ssize_t)n;
	}
	if (e == HPE_PAUSED)
		return (ssize_t)n;
	if (e != HPE_OK || r->error_status) {
		if (!r->error_status)
			r->error_status = 400;
		return -1;
	}
	return (ssize_t)n;
}

const char *rt_http_req_header(const struct rt_http_req *r, const char *name)
{
	for (unsigned i = 0; i < r->n_headers; i++)
		if (!strcmp(r->headers[i].name, name))
			return r->headers[i].value;
	return NULL;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *rt_http_pct_decode(const char *s, size_t s_len, bool plus_is_space)
{
	char *out = rt_xmalloc(s_len + 1), *o = out;
	for (size_t i = 0; i < s_len; i++) {
		char c = s[i];
		if (c == '%') {
			if (s_len - i < 3)
				goto bad;
			int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (c == '\0')
			goto bad;
		*o++ = c;
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

char *rt_http_query_get(const char *query, const char *name)
{
	if (!query)
		return NULL;
	size_t name_len = strlen(name);
	const char *p = query;
	while (*p) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > name_len && !strncmp(p, name, name_len) && p[name_len] == '=')
			return rt_http_pct_decode(p + name_len + 1, len - name_len - 1, true);
		if (len == name_len && !strncmp(p, name, name_len))
			return rt_xstrdup("");
		if (!end)
			break;
		p = end + 1;
	}
	return NULL;
}

const char *rt_http_status_text(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 422: return "Unprocessable Entity";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	}
	return "Unknown";
}

void rt_http_response(struct rt_buf *out, int status, const char *content_type, const char *body,
		      size_t body_len, const char *extra_headers, bool keep_alive)
{
	rt_buf_printf(out, "HTTP/1.1 %d %s\r\nServer: rtsync\r\nContent-Length: %zu\r\n", status,
		      rt_http_status_text(status), body_len);
	if (content_type)
		rt_buf_printf(out, "Content-Type: %s\r\n", content_type);
	rt_buf_append_str(out, "Access-Control-Allow-Origin: *\r\n");
	if (extra_headers)
		rt_buf_append_str(out, extra_headers);
	rt_buf_append_str(out, keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
	if (body_len)
		rt_buf_append(out, body, body_len);
}
