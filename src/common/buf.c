#include "common/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "common/alloc.h"

void rt_buf_init(struct rt_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void rt_buf_deinit(struct rt_buf *b)
{
	free(b->data);
	rt_buf_init(b);
}

void rt_buf_reset(struct rt_buf *b)
{
	b->len = 0;
	if (b->cap)
		b->data[0] = '\0';
}

void rt_buf_reserve(struct rt_buf *b, size_t n)
{
	if (n >= SIZE_MAX / 2 - b->len) {
		/* cannot be met; doubling past it would wrap and loop */
		fprintf(stderr, "rtsync: buffer of %zu bytes cannot grow by %zu\n", b->len, n);
		abort();
	}
	size_t need = b->len + n + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	b->data = rt_xrealloc(b->data, cap);
	b->cap = cap;
}

void rt_buf_append(struct rt_buf *b, const void *data, size_t data_len)
{
	rt_buf_reserve(b, data_len);
	if (data_len)
		memcpy(b->data + b->len, data, data_len);
	b->len += data_len;
	b->data[b->len] = '\0';
}

void rt_buf_append_str(struct rt_buf *b, const char *s)
{
	rt_buf_append(b, s, strlen(s));
}

void rt_buf_append_byte(struct rt_buf *b, uint8_t c)
{
	rt_buf_reserve(b, 1);
	b->data[b->len++] = (char)c;
	b->data[b->len] = '\0';
}

void rt_buf_printf(struct rt_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	rt_buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void rt_buf_append_int(struct rt_buf *b, long long v)
{
	char d[24];
	size_t i = sizeof d;
	/* The magnitude as unsigned: -LLONG_MIN does not fit a long long. */
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		d[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		d[--i] = '-';
	rt_buf_append(b, d + i, sizeof d - i);
}

void rt_buf_append_json_str(struct rt_buf *b, const char *s, size_t s_len)
{
	static const char hex[] = "0123456789abcdef";
	rt_buf_reserve(b, s_len + 2);
	rt_buf_append_byte(b, '"');
	size_t run = 0; /* s[run..i) needs no escape */
	for (size_t i = 0; i < s_len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '"' && c != '\\' && c >= 0x20)
			continue;
		rt_buf_append(b, s + run, i - run);
		run = i + 1;
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			rt_buf_append(b, esc, 2);
		} else {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			rt_buf_append(b, esc, 6);
		}
	}
	rt_buf_append(b, s + run, s_len - run);
	rt_buf_append_byte(b, '"');
}

void rt_utf8_truncate(char *s)
{
	const uint8_t *bad = u8_check((const uint8_t *)s, strlen(s));
	if (bad)
		*(char *)bad = '\0';
}

char *rt_buf_detach(struct rt_buf *b, size_t *len)
{
	char *d = b->data;
	if (len)
		*len = b->len;
	rt_buf_init(b);
	return d;
}

struct rt_frame *rt_frame_new(size_t len)
{
	struct rt_frame *f = rt_xmalloc(sizeof *f + len);
	atomic_init(&f->refs, 1);
	f->len = len;
	return f;
}

struct rt_frame *rt_frame_copy(const void *data, size_t data_len)
{
	struct rt_frame *f = rt_frame_new(data_len);
	if (data_len)
		memcpy(f->data, data, data_len);
	return f;
}

struct rt_frame *rt_frame_ref(struct rt_frame *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	return f;
}

void rt_frame_unref(struct rt_frame *f)
{
	if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		free(f);
}
