/*
 * WebSocket engine (src/net/ws.h), server side, driven with client frames
 * built here by hand (RFC 6455 §5.2, masked as a client must). Every stream
 * is fed whole, one byte at a time and in random chunks, and must give the
 * same messages and the same output.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "net/ws.h"

#include "../testutil.h"

/* ---- client frames ---- */

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xa

struct frame_opts {
	bool no_fin;   /* FIN clear */
	bool unmasked; /* a client must mask: this is a protocol error */
	uint8_t rsv;   /* RSV1-3 bits (0..7) */
};

/* Appends one client frame, masked with a key drawn from the PRNG. */
static void put_frame_opts(struct rt_buf *b, uint8_t op, const void *data, size_t len,
			   struct frame_opts o)
{
	uint8_t h[14];
	size_t n = 0;
	h[n++] = (uint8_t)((o.no_fin ? 0 : 0x80) | (o.rsv & 7) << 4 | (op & 0x0f));
	uint8_t mask_bit = o.unmasked ? 0 : 0x80;
	if (len < 126) {
		h[n++] = (uint8_t)(mask_bit | len);
	} else if (len <= 0xffff) {
		h[n++] = mask_bit | 126;
		h[n++] = (uint8_t)(len >> 8);
		h[n++] = (uint8_t)len;
	} else {
		h[n++] = mask_bit | 127;
		for (int i = 7; i >= 0; i--)
			h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	uint8_t key[4] = {0};
	if (!o.unmasked) {
		uint32_t k = rng_next();
		memcpy(key, &k, 4);
		memcpy(h + n, key, 4);
		n += 4;
	}
	rt_buf_append(b, h, n);
	const uint8_t *p = data;
	rt_buf_reserve(b, len);
	for (size_t i = 0; i < len; i++)
		rt_buf_append_byte(b, (uint8_t)(p[i] ^ key[i & 3]));
}

static void put_frame(struct rt_buf *b, uint8_t op, const void *data, size_t len)
{
	put_frame_opts(b, op, data, len, (struct frame_opts){0});
}

static void put_close(struct rt_buf *b, uint16_t code, const char *reason)
{
	uint8_t p[125] = {0};
	size_t n = 0;
	if (code) {
		p[n++] = (uint8_t)(code >> 8);
		p[n++] = (uint8_t)code;
	}
	if (reason) {
		memcpy(p + n, reason, strlen(reason));
		n += strlen(reason);
	}
	put_frame(b, OP_CLOSE, p, n);
}

/* ---- what the engine hands back ---- */

struct msg {
	enum rt_ws_opcode op;
	uint8_t *data;
	size_t len;
};

struct cap {
	struct msg *msgs;
	size_t n_msgs, cap_msgs;
	size_t max_len;       /* the engine's max_msg_len */
	struct rt_buf out;    /* everything on_output got, in order */
	unsigned n_outputs;
};

static void on_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t data_len)
{
	struct cap *c = user;
	assert_true(data_len <= c->max_len);
	assert_true(op == RT_WS_TEXT || op == RT_WS_BINARY);
	if (c->n_msgs == c->cap_msgs) {
		c->cap_msgs = c->cap_msgs ? 2 * c->cap_msgs : 16;
		c->msgs = realloc(c->msgs, c->cap_msgs * sizeof *c->msgs);
		assert_non_null(c->msgs);
	}
	struct msg *m = &c->msgs[c->n_msgs++];
	m->op = op;
	m->len = data_len;
	m->data = malloc(data_len ? data_len : 1);
	assert_non_null(m->data);
	if (data_len)
		memcpy(m->data, data, data_len);
}

static int on_output(void *user, const uint8_t *data, size_t data_len)
{
	struct cap *c = user;
	rt_buf_append(&c->out, data, data_len);
	c->n_outputs++;
	return 0;
}

static const struct rt_ws_callbacks cbs = {on_message, on_output};

struct engine {
	struct rt_ws ws;
	struct cap cap;
};

static void engine_init(struct engine *e, size_t max_len)
{
	memset(e, 0, sizeof *e);
	rt_buf_init(&e->cap.out);
	e->cap.max_len = max_len;
	assert_int_equal(rt_ws_init(&e->ws, RT_WS_SERVER, &cbs, &e->cap, max_len, NULL), 0);
	assert_int_equal(e->ws.close_code, 0);
	assert_false(rt_ws_is_done(&e->ws));
}

/* A client-side engine: reads unmasked frames, masks what it sends. */
static void client_init(struct engine *e, size_t max_len)
{
	memset(e, 0, sizeof *e);
	rt_buf_init(&e->cap.out);
	e->cap.max_len = max_len;
	assert_int_equal(rt_ws_init(&e->ws, RT_WS_CLIENT, &cbs, &e->cap, max_len, NULL), 0);
}

static void engine_deinit(struct engine *e)
{
	rt_ws_deinit(&e->ws);
	rt_ws_deinit(&e->ws); /* a second deinit does nothing */
	for (size_t i = 0; i < e->cap.n_msgs; i++)
		free(e->cap.msgs[i].data);
	free(e->cap.msgs);
	rt_buf_deinit(&e->cap.out);
}

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_RANDOM };

/* Feeds data in the given way; returns the first non-zero rt_ws_feed result. */
static int feed(struct engine *e, const uint8_t *data, size_t len, enum feed_mode mode)
{
	int first = 0;
	size_t pos = 0;
	while (pos < len) {
		size_t n = len - pos;
		if (mode == FEED_BYTES)
			n = 1;
		else if (mode == FEED_RANDOM) {
			/* Mostly small chunks, sometimes large ones. */
			size_t r = rng_next() % 8 == 0 ? rng_next() % 70000 : rng_next() % 40;
			n = r + 1 < n ? r + 1 : n;
		}
		/* The engine unmasks in place: feed an exact-size copy (ASan sees
		 * any read past the chunk, and the caller's stream stays intact). */
		uint8_t *chunk = malloc(n);
		assert_non_null(chunk);
		memcpy(chunk, data + pos, n);
		int rc = rt_ws_feed(&e->ws, chunk, n);
		free(chunk);
		if (rc && !first)
			first = rc;
		pos += n;
	}
	return first;
}

/* ---- server frames ---- */

struct sframe {
	bool fin;
	uint8_t op;
	const uint8_t *data;
	size_t len;
};

/* Splits the output into unmasked server frames; returns how many. */
static size_t parse_out(const struct rt_buf *out, struct sframe *f, size_t max)
{
	const uint8_t *p = (const uint8_t *)out->data;
	size_t pos = 0, n = 0;
	while (pos < out->len) {
		assert_true(n < max);
		assert_true(out->len - pos >= 2);
		f[n].fin = p[pos] & 0x80;
		assert_int_equal(p[pos] & 0x70, 0);
		f[n].op = p[pos] & 0x0f;
		assert_int_equal(p[pos + 1] & 0x80, 0); /* servers never mask */
		size_t len = p[pos + 1] & 0x7f;
		pos += 2;
		if (len == 126) {
			assert_true(out->len - pos >= 2);
			len = (size_t)p[pos] << 8 | p[pos + 1];
			pos += 2;
		} else if (len == 127) {
			assert_true(out->len - pos >= 8);
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[pos + i];
			pos += 8;
		}
		assert_true(out->len - pos >= len);
		f[n].data = p + pos;
		f[n].len = len;
		pos += len;
		n++;
	}
	return n;
}

static uint16_t close_code_of(const struct sframe *f)
{
	assert_int_equal(f->op, OP_CLOSE);
	if (f->len < 2)
		return 0;
	return (uint16_t)(f->data[0] << 8 | f->data[1]);
}

/* The output is exactly one close frame; returns its code (0: none). */
static uint16_t single_close(const struct engine *e)
{
	struct sframe f[4];
	size_t n = parse_out(&e->cap.out, f, 4);
	assert_int_equal(n, 1);
	assert_true(f[0].fin);
	return close_code_of(&f[0]);
}

/* ---- tests ---- */

static void test_text_whole(void **state)
{
	rng_seed(1);
	struct rt_buf in;
	rt_buf_init(&in);
	put_frame(&in, OP_TEXT, "hello", 5);
	struct engine e;
	engine_init(&e, 1024);
	assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE), 0);
	assert_int_equal(e.cap.n_msgs, 1);
	assert_int_equal(e.cap.msgs[0].op, RT_WS_TEXT);
	assert_int_equal(e.cap.msgs[0].len, 5);
	assert_memory_equal(e.cap.msgs[0].data, "hello", 5);
	assert_int_equal(e.cap.out.len, 0);
	assert_int_equal(e.ws.close_code, 0);
	assert_false(rt_ws_is_done(&e.ws));

	/* Feeding nothing changes nothing. */
	assert_int_equal(feed(&e, NULL, 0, FEED_WHOLE), 0);
	assert_int_equal(e.cap.n_msgs, 1);
	engine_deinit(&e);
	rt_buf_deinit(&in);
}

/* A stream exercising every length encoding, fragments and control frames. */
struct stream {
	struct rt_buf in;
	struct msg want[32];
	size_t n_want;
	struct rt_buf pongs; /* the output expected: one pong per ping */
};

static void want_msg(struct stream *s, enum rt_ws_opcode op, const uint8_t *data, size_t len)
{
	assert_true(s->n_want < 32);
	s->want[s->n_want].op = op;
	s->want[s->n_want].data = malloc(len ? len : 1);
	assert_non_null(s->want[s->n_want].data);
	if (len)
		memcpy(s->want[s->n_want].data, data, len);
	s->want[s->n_want].len = len;
	s->n_want++;
}

static void stream_build(struct stream *s)
{
	memset(s, 0, sizeof *s);
	rt_buf_init(&s->in);
	rt_buf_init(&s->pongs);
	static const size_t sizes[] = {0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70001};
	uint8_t *buf = malloc(70001);
	assert_non_null(buf);
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		size_t n = sizes[i];
		bool text = i % 2 == 0;
		for (size_t k = 0; k < n; k++)
			buf[k] = text ? (uint8_t)(' ' + rng_next() % 95) : (uint8_t)rng_next();
		put_frame(&s->in, text ? OP_TEXT : OP_BINARY, buf, n);
		want_msg(s, text ? RT_WS_TEXT : RT_WS_BINARY, buf, n);
	}

	/* A ping answered with a pong carrying the same bytes. */
	put_frame(&s->in, OP_PING, "ping!", 5);
	rt_buf_append(&s->pongs, "\x8a\x05ping!", 7);

	/* A fragmented text message with a ping and a pong in the middle, and a
	 * two-byte UTF-8 character split across fragments. */
	put_frame_opts(&s->in, OP_TEXT, "Hel", 3, (struct frame_opts){.no_fin = true});
	put_frame(&s->in, OP_PING, "", 0);
	rt_buf_append(&s->pongs, "\x8a\x00", 2);
	put_frame_opts(&s->in, OP_CONT, "lo \xc3", 4, (struct frame_opts){.no_fin = true});
	put_frame(&s->in, OP_PONG, "unsolicited", 11); /* ignored */
	put_frame_opts(&s->in, OP_CONT, "", 0, (struct frame_opts){.no_fin = true});
	put_frame(&s->in, OP_CONT, "\xa9!", 2);
	want_msg(s, RT_WS_TEXT, (const uint8_t *)"Hello \xc3\xa9!", 9);

	/* A fragmented binary message of three large parts. */
	for (size_t k = 0; k < 3 * 20000; k++)
		buf[k % 70001] = (uint8_t)rng_next();
	uint8_t *joined = malloc(60000);
	assert_non_null(joined);
	for (int part = 0; part < 3; part++) {
		for (size_t k = 0; k < 20000; k++)
			joined[part * 20000 + k] = (uint8_t)(k * 7 + (size_t)part);
		put_frame_opts(&s->in, part ? OP_CONT : OP_BINARY, joined + part * 20000, 20000,
			       (struct frame_opts){.no_fin = part < 2});
	}
	want_msg(s, RT_WS_BINARY, joined, 60000);
	free(joined);

	put_frame(&s->in, OP_TEXT, "last", 4);
	want_msg(s, RT_WS_TEXT, (const uint8_t *)"last", 4);
	free(buf);
}

static void stream_free(struct stream *s)
{
	for (size_t i = 0; i < s->n_want; i++)
		free(s->want[i].data);
	rt_buf_deinit(&s->in);
	rt_buf_deinit(&s->pongs);
}

static void check_stream(struct stream *s, enum feed_mode mode)
{
	struct engine e;
	engine_init(&e, 1 << 20);
	assert_int_equal(feed(&e, (const uint8_t *)s->in.data, s->in.len, mode), 0);
	assert_int_equal(e.cap.n_msgs, s->n_want);
	for (size_t i = 0; i < s->n_want; i++) {
		assert_int_equal(e.cap.msgs[i].op, s->want[i].op);
		assert_int_equal(e.cap.msgs[i].len, s->want[i].len);
		assert_memory_equal(e.cap.msgs[i].data, s->want[i].data, s->want[i].len);
	}
	assert_int_equal(e.cap.out.len, s->pongs.len);
	assert_memory_equal(e.cap.out.data, s->pongs.data, s->pongs.len);
	assert_int_equal(e.ws.close_code, 0);
	assert_false(rt_ws_is_done(&e.ws));
	engine_deinit(&e);
}

static void test_stream_whole(void **state)
{
	rng_seed(2);
	struct stream s;
	stream_build(&s);
	check_stream(&s, FEED_WHOLE);
	stream_free(&s);
}

static void test_stream_bytes(void **state)
{
	rng_seed(3);
	struct stream s;
	stream_build(&s);
	check_stream(&s, FEED_BYTES);
	stream_free(&s);
}

static void test_stream_random_chunks(void **state)
{
	rng_seed(4);
	struct stream s;
	stream_build(&s);
	for (int iter = 0; iter < 200; iter++)
		check_stream(&s, FEED_RANDOM);
	stream_free(&s);
}

static void test_ping_pong(void **state)
{
	rng_seed(5);
	struct rt_buf in;
	rt_buf_init(&in);
	put_frame(&in, OP_PING, "abc", 3);
	struct engine e;
	engine_init(&e, 1024);
	assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE), 0);
	assert_int_equal(e.cap.n_msgs, 0);
	assert_int_equal(e.cap.out.len, 5);
	assert_memory_equal(e.cap.out.data, "\x8a\x03" "abc", 5);

	/* A 125-byte ping (the largest allowed) comes back whole. */
	rt_buf_reset(&in);
	rt_buf_reset(&e.cap.out);
	char p[125];
	memset(p, 'p', sizeof p);
	put_frame(&in, OP_PING, p, sizeof p);
	assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE), 0);
	struct sframe f[2];
	assert_int_equal(parse_out(&e.cap.out, f, 2), 1);
	assert_int_equal(f[0].op, OP_PONG);
	assert_int_equal(f[0].len, 125);
	assert_memory_equal(f[0].data, p, 125);
	engine_deinit(&e);
	rt_buf_deinit(&in);
}

/* Feeds in and expects a close with code, no message, and the engine done. */
static void expect_close(struct engine *e, const struct rt_buf *in, enum feed_mode mode,
			 uint16_t code)
{
	size_t before = e->cap.n_msgs;
	feed(e, (const uint8_t *)in->data, in->len, mode);
	assert_int_equal(e->cap.n_msgs, before);
	assert_int_equal(single_close(e), code);
}

static void test_unmasked_frame(void **state)
{
	for (int mode = FEED_WHOLE; mode <= FEED_RANDOM; mode++) {
		rng_seed(6);
		struct rt_buf in;
		rt_buf_init(&in);
		put_frame_opts(&in, OP_TEXT, "hi", 2, (struct frame_opts){.unmasked = true});
		put_frame(&in, OP_TEXT, "after", 5); /* nothing is read after the error */
		struct engine e;
		engine_init(&e, 1024);
		expect_close(&e, &in, (enum feed_mode)mode, 1002);
		/* Reading stopped and the close left: the TCP connection can go. */
		assert_true(rt_ws_is_done(&e.ws));
		assert_int_equal(e.cap.n_msgs, 0);
		engine_deinit(&e);
		rt_buf_deinit(&in);
	}
}

static void test_other_protocol_errors(void **state)
{
	rng_seed(7);
	struct rt_buf in;
	rt_buf_init(&in);
	struct engine e;

	/* RSV bits without a negotiated extension. */
	put_frame_opts(&in, OP_TEXT, "x", 1, (struct frame_opts){.rsv = 4});
	engine_init(&e, 1024);
	expect_close(&e, &in, FEED_WHOLE, 1002);
	engine_deinit(&e);

	/* Reserved opcode. */
	rt_buf_reset(&in);
	put_frame(&in, 0x3, "x", 1);
	engine_init(&e, 1024);
	expect_close(&e, &in, FEED_WHOLE, 1002);
	engine_deinit(&e);

	/* Continuation with nothing to continue. */
	rt_buf_reset(&in);
	put_frame(&in, OP_CONT, "x", 1);
	engine_init(&e, 1024);
	expect_close(&e, &in, FEED_WHOLE, 1002);
	engine_deinit(&e);

	/* A new data frame while a fragmented message is open. */
	rt_buf_reset(&in);
	put_frame_opts(&in, OP_TEXT, "a", 1, (struct frame_opts){.no_fin = true});
	put_frame(&in, OP_TEXT, "b", 1);
	engine_init(&e, 1024);
	expect_close(&e, &in, FEED_BYTES, 1002);
	engine_deinit(&e);

	/* A fragmented control frame. */
	rt_buf_reset(&in);
	put_frame_opts(&in, OP_PING, "a", 1, (struct frame_opts){.no_fin = true});
	engine_init(&e, 1024);
	feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE);
	assert_int_equal(e.cap.n_msgs, 0);
	assert_true(rt_ws_is_done(&e.ws));
	engine_deinit(&e);

	/* A close with a code that may not be sent on the wire (1005). */
	rt_buf_reset(&in);
	put_close(&in, 1005, NULL);
	engine_init(&e, 1024);
	expect_close(&e, &in, FEED_WHOLE, 1002);
	engine_deinit(&e);
	rt_buf_deinit(&in);
}

static void test_too_big(void **state)
{
	for (int mode = FEED_WHOLE; mode <= FEED_RANDOM; mode++) {
		rng_seed(8);
		char p[101];
		memset(p, 'x', sizeof p);
		struct rt_buf in;
		rt_buf_init(&in);
		struct engine e;

		/* Exactly the limit is fine. */
		put_frame(&in, OP_TEXT, p, 100);
		engine_init(&e, 100);
		assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, (enum feed_mode)mode), 0);
		assert_int_equal(e.cap.n_msgs, 1);
		assert_int_equal(e.cap.msgs[0].len, 100);
		engine_deinit(&e);

		/* One byte more closes with 1009. */
		rt_buf_reset(&in);
		put_frame(&in, OP_BINARY, p, 101);
		engine_init(&e, 100);
		expect_close(&e, &in, (enum feed_mode)mode, 1009);
		assert_true(rt_ws_is_done(&e.ws));
		engine_deinit(&e);

		/* Fragments that add up to more than the limit. */
		rt_buf_reset(&in);
		put_frame_opts(&in, OP_TEXT, p, 60, (struct frame_opts){.no_fin = true});
		put_frame(&in, OP_CONT, p, 60);
		engine_init(&e, 100);
		expect_close(&e, &in, (enum feed_mode)mode, 1009);
		engine_deinit(&e);

		/* A huge announced length is refused at its first payload byte,
		 * without waiting for (or buffering) the rest. */
		rt_buf_reset(&in);
		static const uint8_t huge[] = {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 'x'};
		rt_buf_append(&in, huge, sizeof huge);
		engine_init(&e, 100);
		expect_close(&e, &in, (enum feed_mode)mode, 1009);
		engine_deinit(&e);
		rt_buf_deinit(&in);
	}
}

static void test_invalid_utf8(void **state)
{
	static const char *const bad[] = {"\xff", "a\xc3", "\xc0\x80", "\xed\xa0\x80", "ok\xf4\x90\x80\x80"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		for (int mode = FEED_WHOLE; mode <= FEED_RANDOM; mode++) {
			rng_seed(9);
			struct rt_buf in;
			rt_buf_init(&in);
			put_frame(&in, OP_TEXT, bad[i], strlen(bad[i]));
			struct engine e;
			engine_init(&e, 1024);
			expect_close(&e, &in, (enum feed_mode)mode, 1007);
			assert_int_equal(e.cap.n_msgs, 0);
			engine_deinit(&e);
			rt_buf_deinit(&in);
		}
	}

	/* Split across fragments: each fragment alone could be a valid prefix. */
	rng_seed(10);
	struct rt_buf in;
	rt_buf_init(&in);
	put_frame_opts(&in, OP_TEXT, "ab\xe2\x82", 4, (struct frame_opts){.no_fin = true});
	put_frame(&in, OP_CONT, "x", 1);
	struct engine e;
	engine_init(&e, 1024);
	expect_close(&e, &in, FEED_WHOLE, 1007);
	engine_deinit(&e);

	/* Truncated at the end of the last fragment. */
	rt_buf_reset(&in);
	put_frame_opts(&in, OP_TEXT, "ab", 2, (struct frame_opts){.no_fin = true});
	put_frame(&in, OP_CONT, "\xe2\x82", 2);
	engine_init(&e, 1024);
	expect_close(&e, &in, FEED_WHOLE, 1007);
	engine_deinit(&e);

	/* The same bytes in a binary message are fine. */
	rt_buf_reset(&in);
	put_frame(&in, OP_BINARY, "\xff\xc3", 2);
	engine_init(&e, 1024);
	assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE), 0);
	assert_int_equal(e.cap.n_msgs, 1);
	assert_int_equal(e.cap.out.len, 0);
	engine_deinit(&e);
	rt_buf_deinit(&in);
}

/*
 * ws.h: rt_ws_feed "Returns 0, or RT_EPROTO when the connection must be
 * closed now (a close frame, if any, was already output)", and close_code is
 * "code we sent or will send; 0 until closing". When the engine itself ends
 * the connection (1002, 1009, 1007), the owner must learn it from one or the
 * other, or it keeps a connection whose reading has stopped.
 */
static void test_engine_close_is_reported(void **state)
{
	static const struct {
		const char *what;
		uint16_t code;
	} cases[] = {{"unmasked frame", 1002}, {"message too big", 1009}, {"invalid UTF-8", 1007}};
	char big[200];
	memset(big, 'x', sizeof big);
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		rng_seed(11);
		struct rt_buf in;
		rt_buf_init(&in);
		if (i == 0)
			put_frame_opts(&in, OP_TEXT, "hi", 2, (struct frame_opts){.unmasked = true});
		else if (i == 1)
			put_frame(&in, OP_TEXT, big, sizeof big);
		else
			put_frame(&in, OP_TEXT, "\xff", 1);
		struct engine e;
		engine_init(&e, 100);
		int rc = feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE);
		uint16_t sent = single_close(&e);
		if (sent != cases[i].code || rc != RT_EPROTO || e.ws.close_code != cases[i].code) {
			print_error("%s: close frame %u sent; rt_ws_feed returned %d (want %d), "
				    "close_code %u (want %u)\n",
				    cases[i].what, sent, rc, RT_EPROTO, e.ws.close_code, cases[i].code);
			failures++;
		}
		engine_deinit(&e);
		rt_buf_deinit(&in);
	}
	assert_int_equal(failures, 0);
}

static void test_peer_close(void **state)
{
	for (int mode = FEED_WHOLE; mode <= FEED_RANDOM; mode++) {
		rng_seed(12);
		struct rt_buf in;
		rt_buf_init(&in);
		put_frame(&in, OP_TEXT, "before", 6);
		put_close(&in, 1000, "bye");
		put_frame(&in, OP_TEXT, "after", 5); /* nothing after a close counts */
		struct engine e;
		engine_init(&e, 1024);
		assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, (enum feed_mode)mode), 0);
		assert_int_equal(e.cap.n_msgs, 1);
		assert_memory_equal(e.cap.msgs[0].data, "before", 6);
		/* The reply echoes the code. */
		assert_int_equal(single_close(&e), 1000);
		assert_int_equal(e.ws.close_code, 1000);
		assert_true(rt_ws_is_done(&e.ws));
		engine_deinit(&e);
		rt_buf_deinit(&in);
	}

	/* A close with another code, and one without any. */
	rng_seed(13);
	struct rt_buf in;
	rt_buf_init(&in);
	put_close(&in, 4000, NULL);
	struct engine e;
	engine_init(&e, 1024);
	assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE), 0);
	assert_int_equal(single_close(&e), 4000);
	assert_int_equal(e.ws.close_code, 4000);
	assert_true(rt_ws_is_done(&e.ws));
	engine_deinit(&e);

	rt_buf_reset(&in);
	put_close(&in, 0, NULL);
	engine_init(&e, 1024);
	assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE), 0);
	assert_int_equal(single_close(&e), 0);
	assert_int_equal(e.ws.close_code, 1000);
	assert_true(rt_ws_is_done(&e.ws));
	engine_deinit(&e);
	rt_buf_deinit(&in);
}

static void test_server_close(void **state)
{
	rng_seed(14);
	struct engine e;
	engine_init(&e, 1024);
	rt_ws_close(&e.ws, 1001, "going away");
	assert_int_equal(e.ws.close_code, 1001);
	struct sframe f[2];
	assert_int_equal(parse_out(&e.cap.out, f, 2), 1);
	assert_int_equal(close_code_of(&f[0]), 1001);
	assert_int_equal(f[0].len, 2 + 10);
	assert_memory_equal(f[0].data + 2, "going away", 10);
	/* Waiting for the peer's close. */
	assert_false(rt_ws_is_done(&e.ws));

	/* Messages that arrive meanwhile are not delivered; the peer's close
	 * completes the handshake without another close frame from us. */
	struct rt_buf in;
	rt_buf_init(&in);
	put_frame(&in, OP_TEXT, "late", 4);
	put_close(&in, 1001, NULL);
	rt_buf_reset(&e.cap.out);
	assert_int_equal(feed(&e, (const uint8_t *)in.data, in.len, FEED_WHOLE), 0);
	assert_int_equal(e.cap.n_msgs, 0);
	assert_int_equal(e.cap.out.len, 0);
	assert_true(rt_ws_is_done(&e.ws));
	assert_int_equal(e.ws.close_code, 1001);

	/* Closing again does nothing. */
	rt_ws_close(&e.ws, 1000, NULL);
	assert_int_equal(e.cap.out.len, 0);
	assert_int_equal(e.ws.close_code, 1001);
	engine_deinit(&e);

	/* A reason longer than a close frame can carry is cut to fit in 125 bytes. */
	char reason[300];
	memset(reason, 'r', sizeof reason - 1);
	reason[sizeof reason - 1] = '\0';
	engine_init(&e, 1024);
	rt_ws_close(&e.ws, 1008, reason);
	assert_int_equal(parse_out(&e.cap.out, f, 2), 1);
	assert_int_equal(close_code_of(&f[0]), 1008);
	assert_true(f[0].len <= 125);
	assert_true(f[0].len >= 2);
	engine_deinit(&e);

	/* No reason at all. */
	engine_init(&e, 1024);
	rt_ws_close(&e.ws, 1000, NULL);
	assert_int_equal(single_close(&e), 1000);
	assert_int_equal(parse_out(&e.cap.out, f, 2), 1);
	assert_int_equal(f[0].len, 2);
	engine_deinit(&e);
	rt_buf_deinit(&in);
}

static void check_frame(enum rt_ws_opcode op, size_t len, size_t head)
{
	uint8_t *data = malloc(len ? len : 1);
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(32 + (i * 31 + 7) % 95); /* ASCII: valid as text */
	struct rt_frame *f = rt_ws_frame(op, data, len);
	assert_non_null(f);
	assert_int_equal(atomic_load(&f->refs), 1);
	assert_int_equal(f->len, head + len);
	assert_int_equal(f->data[0], 0x80 | op); /* FIN, no RSV */
	assert_int_equal(f->data[1] & 0x80, 0); /* unmasked */
	if (head == 2)
		assert_int_equal(f->data[1], len);
	else if (head == 4) {
		assert_int_equal(f->data[1], 126);
		assert_int_equal((size_t)f->data[2] << 8 | f->data[3], len);
	} else {
		assert_int_equal(f->data[1], 127);
		uint64_t l = 0;
		for (int i = 0; i < 8; i++)
			l = l << 8 | f->data[2 + i];
		assert_int_equal(l, len);
	}
	assert_memory_equal(f->data + head, data, len);

	/* A client engine reads it back, fed whole and one byte at a time. */
	if (op != RT_WS_CLOSE) {
		for (int mode = FEED_WHOLE; mode <= FEED_BYTES; mode++) {
			struct engine c;
			client_init(&c, len ? len : 1);
			assert_int_equal(feed(&c, f->data, f->len, (enum feed_mode)mode), 0);
			assert_int_equal(c.cap.n_msgs, 1);
			assert_int_equal(c.cap.msgs[0].op, op);
			assert_int_equal(c.cap.msgs[0].len, len);
			assert_memory_equal(c.cap.msgs[0].data, data, len);
			assert_int_equal(c.cap.out.len, 0);
			assert_null(c.ws.frame);
			engine_deinit(&c);
		}
	}
	rt_frame_unref(f);
	free(data);
}

static void test_frame_sizes(void **state)
{
	check_frame(RT_WS_TEXT, 0, 2);
	check_frame(RT_WS_TEXT, 1, 2);
	check_frame(RT_WS_TEXT, 125, 2);
	check_frame(RT_WS_BINARY, 126, 4);
	check_frame(RT_WS_TEXT, 127, 4);
	check_frame(RT_WS_BINARY, 65535, 4);
	check_frame(RT_WS_TEXT, 65536, 10);
	check_frame(RT_WS_BINARY, 200000, 10);
	check_frame(RT_WS_CLOSE, 2, 2);
}

/* ---- client role ---- */

/* Unmasks the client frames in out in place and checks each was masked. */
static size_t parse_client_out(struct rt_buf *out, struct sframe *f, size_t max)
{
	uint8_t *p = (uint8_t *)out->data;
	size_t pos = 0, n = 0;
	while (pos < out->len) {
		assert_true(n < max);
		assert_true(out->len - pos >= 6);
		f[n].fin = p[pos] & 0x80;
		f[n].op = p[pos] & 0x0f;
		assert_true(p[pos + 1] & 0x80); /* a client masks every frame */
		size_t len = p[pos + 1] & 0x7f, head = 2;
		if (len == 126) {
			len = (size_t)p[pos + 2] << 8 | p[pos + 3];
			head = 4;
		} else if (len == 127) {
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[pos + 2 + i];
			head = 10;
		}
		uint8_t *key = p + pos + head;
		uint8_t *data = key + 4;
		assert_true(pos + head + 4 + len <= out->len);
		for (size_t i = 0; i < len; i++)
			data[i] ^= key[i & 3];
		f[n].data = data;
		f[n].len = len;
		pos += head + 4 + len;
		n++;
	}
	return n;
}

static void test_client_send(void **state)
{
	rng_seed(21);
	static const size_t sizes[] = {0, 1, 125, 126, 4095, 4096, 4097, 65535, 65536, 70001};
	struct engine c, srv;
	client_init(&c, 1 << 20);
	engine_init(&srv, 1 << 20);
	struct rt_buf want;
	rt_buf_init(&want);
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		uint8_t *data = malloc(sizes[i] + 1);
		assert_non_null(data);
		for (size_t j = 0; j < sizes[i]; j++)
			data[j] = (uint8_t)('a' + rng_next() % 26);
		rt_buf_append(&want, data, sizes[i]);
		enum rt_ws_opcode op = i % 2 ? RT_WS_BINARY : RT_WS_TEXT;
		assert_int_equal(rt_ws_send(&c.ws, op, data, sizes[i]), 0);
		for (size_t j = 0; j < sizes[i]; j++) /* the caller's data is untouched */
			assert_true(data[j] >= 'a' && data[j] <= 'z');
		free(data);
	}
	assert_int_equal(rt_ws_send(&c.ws, RT_WS_CLOSE, "x", 1), RT_EINVAL);
	/* The server engine accepts every frame: masked, whole, in order. */
	assert_int_equal(feed(&srv, (const uint8_t *)c.cap.out.data, c.cap.out.len, FEED_RANDOM), 0);
	assert_int_equal(srv.cap.n_msgs, sizeof sizes / sizeof *sizes);
	size_t off = 0;
	for (size_t i = 0; i < srv.cap.n_msgs; i++) {
		assert_int_equal(srv.cap.msgs[i].op, i % 2 ? RT_WS_BINARY : RT_WS_TEXT);
		assert_int_equal(srv.cap.msgs[i].len, sizes[i]);
		assert_memory_equal(srv.cap.msgs[i].data, want.data + off, sizes[i]);
		off += sizes[i];
	}
	assert_int_equal(srv.cap.out.len, 0);
	rt_buf_deinit(&want);
	engine_deinit(&c);
	engine_deinit(&srv);
}

static void test_client_protocol(void **state)
{
	rng_seed(22);
	for (int mode = FEED_WHOLE; mode <= FEED_RANDOM; mode++) {
		/* A masked frame from the server is a protocol error: masked close 1002. */
		struct engine c;
		client_init(&c, 1000);
		struct rt_buf in;
		rt_buf_init(&in);
		put_frame(&in, OP_TEXT, "hi", 2);
		assert_int_equal(feed(&c, (const uint8_t *)in.data, in.len, (enum feed_mode)mode),
				 RT_EPROTO);
		struct sframe f[4];
		assert_int_equal(parse_client_out(&c.cap.out, f, 4), 1);
		assert_int_equal(f[0].op, OP_CLOSE);
		assert_int_equal(f[0].len, 2);
		assert_int_equal(f[0].data[0] << 8 | f[0].data[1], 1002);
		assert_true(rt_ws_is_done(&c.ws));
		assert_int_equal(c.cap.n_msgs, 0);
		engine_deinit(&c);
		rt_buf_deinit(&in);

		/* Ping: a masked pong with the same payload; then the server closes. */
		client_init(&c, 1000);
		rt_buf_init(&in);
		put_frame_opts(&in, OP_PING, "abc", 3, (struct frame_opts){.unmasked = true});
		put_frame_opts(&in, OP_TEXT, "hel", 3,
			       (struct frame_opts){.unmasked = true, .no_fin = true});
		put_frame_opts(&in, OP_CONT, "lo", 2, (struct frame_opts){.unmasked = true});
		uint8_t close[5] = {0x03, 0xe9, 'b', 'y', 'e'}; /* 1001 "bye" */
		put_frame_opts(&in, OP_CLOSE, close, sizeof close, (struct frame_opts){.unmasked = true});
		assert_int_equal(feed(&c, (const uint8_t *)in.data, in.len, (enum feed_mode)mode), 0);
		assert_int_equal(c.cap.n_msgs, 1);
		assert_int_equal(c.cap.msgs[0].len, 5);
		assert_memory_equal(c.cap.msgs[0].data, "hello", 5);
		assert_int_equal(rt_ws_peer_close_code(&c.ws), 1001);
		assert_true(rt_ws_is_done(&c.ws));
		assert_int_equal(rt_ws_send(&c.ws, RT_WS_TEXT, "late", 4), RT_ECLOSED);
		assert_int_equal(parse_client_out(&c.cap.out, f, 4), 2);
		assert_int_equal(f[0].op, OP_PONG);
		assert_int_equal(f[0].len, 3);
		assert_memory_equal(f[0].data, "abc", 3);
		assert_int_equal(f[1].op, OP_CLOSE);
		assert_int_equal(f[1].data[0] << 8 | f[1].data[1], 1001);
		assert_null(c.ws.frame);
		assert_null(c.ws.msg);
		engine_deinit(&c);
		rt_buf_deinit(&in);
	}
}

/* ---- memory ---- */

struct counting_alloc {
	long live;      /* blocks held */
	long fail_at;   /* the allocation (1-based) that fails; 0: none */
	long n_allocs;
};

static void *counting_realloc(void *ud, void *ptr, size_t size)
{
	struct counting_alloc *a = ud;
	if (!size) {
		if (ptr)
			a->live--;
		free(ptr);
		return NULL;
	}
	if (++a->n_allocs == a->fail_at)
		return NULL;
	void *p = realloc(ptr, size);
	if (p && !ptr)
		a->live++;
	return p;
}

static void test_memory(void **state)
{
	rng_seed(23);
	/* Partial and fragmented input, fed in every way: with a failing k-th
	 * allocation the feed says RT_ENOMEM and stops; without, all arrives.
	 * Either way nothing is held once the engine is idle or deinited. */
	struct rt_buf in;
	rt_buf_init(&in);
	char big[3000];
	memset(big, 'q', sizeof big);
	put_frame(&in, OP_TEXT, big, sizeof big);
	put_frame_opts(&in, OP_BINARY, big, 100, (struct frame_opts){.no_fin = true});
	put_frame(&in, OP_PING, "p", 1);
	put_frame_opts(&in, OP_CONT, big, 200, (struct frame_opts){.no_fin = true});
	put_frame(&in, OP_CONT, big, 300);
	for (int mode = FEED_WHOLE; mode <= FEED_RANDOM; mode++) {
		for (long k = 1;; k++) {
			struct counting_alloc a = {.fail_at = k};
			struct rt_ws_allocator alloc = {counting_realloc, &a};
			struct engine e;
			memset(&e, 0, sizeof e);
			rt_buf_init(&e.cap.out);
			e.cap.max_len = 4096;
			assert_int_equal(rt_ws_init(&e.ws, RT_WS_SERVER, &cbs, &e.cap, 4096, &alloc), 0);
			int rc = feed(&e, (const uint8_t *)in.data, in.len, (enum feed_mode)mode);
			if (a.n_allocs >= k) {
				assert_int_equal(rc, RT_ENOMEM);
			} else {
				assert_int_equal(rc, 0);
				assert_int_equal(e.cap.n_msgs, 2);
				assert_int_equal(e.cap.msgs[1].len, 600);
				assert_int_equal(a.live, 0); /* idle: no buffer held */
			}
			engine_deinit(&e);
			assert_int_equal(a.live, 0);
			if (a.n_allocs < k)
				break;
		}
	}
	rt_buf_deinit(&in);
}

static void test_accept_key(void **state)
{
	char out[29];
	memset(out, 'X', sizeof out);
	static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
	rt_ws_accept_key(key, strlen(key), out);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

	/* Only key_len bytes count. */
	static const char longer[] = "dGhlIHNhbXBsZSBub25jZQ==trailing";
	rt_ws_accept_key(longer, 24, out);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

	/* Another key: SHA-1 of key+GUID, base64. Checked against OpenSSL CLI:
	 * printf 'x3JJHMbDL1EzLkh9GBhXDw==258EAFA5-E914-47DA-95CA-C5AB0DC85B11' |
	 *   openssl sha1 -binary | base64 */
	static const char key2[] = "x3JJHMbDL1EzLkh9GBhXDw==";
	rt_ws_accept_key(key2, strlen(key2), out);
	assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_whole),
		cmocka_unit_test(test_stream_whole),
		cmocka_unit_test(test_stream_bytes),
		cmocka_unit_test(test_stream_random_chunks),
		cmocka_unit_test(test_ping_pong),
		cmocka_unit_test(test_unmasked_frame),
		cmocka_unit_test(test_other_protocol_errors),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_engine_close_is_reported),
		cmocka_unit_test(test_peer_close),
		cmocka_unit_test(test_server_close),
		cmocka_unit_test(test_frame_sizes),
		cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_client_send),
		cmocka_unit_test(test_client_protocol),
		cmocka_unit_test(test_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
