/*
 * Fuzz target: the server WebSocket engine (rt_ws_feed) on hostile client
 * bytes, fed in chunks whose sizes come from the input.
 *
 * Input layout:
 *   byte 0      max_msg_len = 1 + 64 * byte (1 .. 16321)
 *   byte 1      k = byte % 16: how many chunk-size bytes follow
 *   k bytes     chunk sizes, used in turn: size = byte + 1 (k = 0: all at once)
 *   the rest    the client's byte stream
 *
 * Checked: messages handed out never exceed max_msg_len, are text or binary,
 * and text is valid UTF-8; the output is a sequence of whole, unmasked server
 * control frames (pong or close, at most 125 bytes of payload) with nothing
 * after a close; after the engine says it is done, nothing more is output.
 * No buffer is held between whole frames. Finally the server closes
 * (rt_ws_close) and the output is checked again.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "common/buf.h"
#include "common/err.h"
#include "net/ws.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			abort();                                                         \
	} while (0)

struct sink {
	size_t max;
	struct rt_buf out;
	size_t n_msgs;
};

static void on_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t data_len)
{
	struct sink *s = user;
	CHECK(data_len <= s->max);
	CHECK(op == RT_WS_TEXT || op == RT_WS_BINARY);
	CHECK(data || !data_len);
	if (op == RT_WS_TEXT)
		CHECK(u8_check(data, data_len) == NULL);
	/* Touch every byte so ASan sees reads past the end. */
	uint8_t x = 0;
	for (size_t i = 0; i < data_len; i++)
		x ^= data[i];
	(void)x;
	s->n_msgs++;
}

static int on_output(void *user, const uint8_t *data, size_t data_len)
{
	struct sink *s = user;
	rt_buf_append(&s->out, data, data_len);
	return 0;
}

static const struct rt_ws_callbacks cbs = {on_message, on_output};

/* Validates everything output so far as server control frames. */
static void check_output(const struct rt_buf *out)
{
	const uint8_t *p = (const uint8_t *)out->data;
	size_t pos = 0;
	bool closed = false;
	while (pos < out->len) {
		CHECK(!closed);
		CHECK(out->len - pos >= 2);
		uint8_t b0 = p[pos], b1 = p[pos + 1];
		CHECK(b0 & 0x80);          /* FIN */
		CHECK((b0 & 0x70) == 0);   /* no RSV */
		CHECK((b1 & 0x80) == 0);   /* a server never masks */
		size_t len = b1 & 0x7f;
		CHECK(len <= 125);
		uint8_t op = b0 & 0x0f;
		CHECK(op == 0x8 || op == 0xa);
		CHECK(out->len - pos - 2 >= len);
		if (op == 0x8) {
			CHECK(len != 1);
			closed = true;
		}
		pos += 2 + len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = 1 + 64 * (size_t)data[0];
	size_t k = data[1] % 16;
	if (size < 2 + k)
		return 0;
	const uint8_t *sizes = data + 2;
	const uint8_t *in = data + 2 + k;
	size_t in_len = size - 2 - k;

	struct sink s = {.max = max};
	rt_buf_init(&s.out);
	struct rt_ws ws;
	CHECK(rt_ws_init(&ws, RT_WS_SERVER, &cbs, &s, max, NULL) == 0);

	size_t pos = 0, i = 0;
	while (pos < in_len) {
		size_t n = k ? (size_t)sizes[i++ % k] + 1 : in_len;
		if (n > in_len - pos)
			n = in_len - pos;
		bool was_done = rt_ws_is_done(&ws);
		size_t out_before = s.out.len;
		/* The engine unmasks in place: feed an exact-size copy. */
		uint8_t *chunk = malloc(n);
		CHECK(chunk);
		memcpy(chunk, in + pos, n);
		int rc = rt_ws_feed(&ws, chunk, n);
		free(chunk);
		CHECK(rc == 0 || rc == RT_EPROTO);
		if (rc)
			CHECK(ws.close_code != 0);
		if (!rc && !ws.frame_len)
			CHECK(!ws.frame); /* no buffer held between frames */
		if (was_done)
			CHECK(s.out.len == out_before);
		pos += n;
	}
	check_output(&s.out);

	/* The server ends the connection as it would at shutdown. */
	rt_ws_close(&ws, 1001, "going away");
	CHECK(ws.close_code != 0);
	check_output(&s.out);
	rt_ws_deinit(&ws);
	rt_buf_deinit(&s.out);
	return 0;
}
