/*
 * Byte buffers. struct rt_buf is a growable buffer owned by one thread, used to
 * build output. struct rt_frame is an immutable, reference-counted block of
 * bytes: a message encoded once and shared by every connection that sends it.
 *
 * Ownership: an rt_buf owns data until rt_buf_detach() or rt_buf_deinit();
 *            an rt_frame is freed when its last reference is dropped.
 * Threads:   an rt_buf belongs to one thread; rt_frame_ref/unref are atomic and
 *            may be called from any thread.
 * Limits:    growth aborts on out of memory (server policy, see alloc.h).
 */
#ifndef RT_COMMON_BUF_H
#define RT_COMMON_BUF_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct rt_buf {
	char *data; /* NUL-terminated after every append while cap > 0 */
	size_t len;
	size_t cap;
};

void rt_buf_init(struct rt_buf *b);
void rt_buf_deinit(struct rt_buf *b);
void rt_buf_reset(struct rt_buf *b); /* len = 0, keeps the memory */
/* Ensures room for n more bytes (plus a terminating NUL). Aborts when
 * len + n reaches SIZE_MAX / 2 (an overflow, never a real size). */
void rt_buf_reserve(struct rt_buf *b, size_t n);
void rt_buf_append(struct rt_buf *b, const void *data, size_t data_len);
void rt_buf_append_str(struct rt_buf *b, const char *s);
void rt_buf_append_byte(struct rt_buf *b, uint8_t c);
void rt_buf_printf(struct rt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v in decimal (what "%lld" prints, without printf's cost). */
void rt_buf_append_int(struct rt_buf *b, long long v);
/* Appends s as a JSON string literal, quotes included. */
void rt_buf_append_json_str(struct rt_buf *b, const char *s, size_t s_len);
/* Cuts s at its first byte that is not valid UTF-8 (a truncated multi-byte
 * character at the end included), so it can become a JSON string. */
void rt_utf8_truncate(char *s);

/* Hands the data to the caller (free() it) and leaves b empty. */
char *rt_buf_detach(struct rt_buf *b, size_t *len);

struct rt_frame {
	atomic_uint refs;
	size_t len;
	uint8_t data[];
};

/* A frame of len bytes with one reference; the caller fills data before sharing it. */
struct rt_frame *rt_frame_new(size_t len);
/* A frame holding a copy of data. */
struct rt_frame *rt_frame_copy(const void *data, size_t data_len);
struct rt_frame *rt_frame_ref(struct rt_frame *f);
/* Drops one reference; frees on the last. NULL does nothing. */
void rt_frame_unref(struct rt_frame *f);

#endif
