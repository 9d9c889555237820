/*
 * Fuzz target: Phoenix binary frames (rt_phx_decode_binary), kinds 0 and 3.
 *
 * The whole input is one binary WebSocket message. A kind-3 frame that
 * decodes is re-encoded as the kind-4 frame V2 subscribers get: its length
 * must add up and its bytes after the header must equal the input's from the
 * topic on; with a JSON payload, the V1 form (rt_phx_user_broadcast_json)
 * must be a JSON object. A frame that does not decode leaves nothing
 * allocated.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "common/buf.h"
#include "common/err.h"
#include "proto/phx.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			abort();                                                         \
	} while (0)

/* A header string: valid UTF-8, no NUL, at most 255 bytes (NULL allowed). */
static void check_text(const char *s)
{
	if (!s)
		return;
	size_t n = strlen(s);
	CHECK(n <= 255);
	CHECK(u8_check((const uint8_t *)s, n) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rt_phx_msg m;
	int rc = rt_phx_decode_binary(data, size, &m);
	if (rc != 0) {
		CHECK(rc == RT_EPROTO);
		/* Nothing owned is left behind. (Scalar fields are not checked
		 * here: see tests/unit/proto/test_phx.c, test_binary_fail_zeroes_out.) */
		CHECK(!m.join_ref && !m.ref && !m.topic && !m.event && !m.user_event && !m.data &&
		      !m.meta && !m.payload);
		return 0;
	}

	CHECK(size >= 5 && (data[0] == 0 || data[0] == 3));
	CHECK(m.is_binary && m.topic && m.event && m.data && !m.payload);
	CHECK(m.topic[0] && m.event[0]);
	check_text(m.join_ref);
	check_text(m.ref);
	check_text(m.topic);
	check_text(m.event);
	CHECK(m.data[m.data_len] == '\0');
	size_t jr = m.join_ref ? strlen(m.join_ref) : 0, ref = m.ref ? strlen(m.ref) : 0;
	size_t topic = strlen(m.topic);
	CHECK(jr == data[1] && ref == data[2] && topic == data[3]);

	if (data[0] == 0) {
		CHECK(!m.is_user_broadcast && m.encoding == RT_PHX_ENC_BINARY && !m.user_event);
		CHECK(strlen(m.event) == data[4]);
		CHECK(size == 5 + jr + ref + topic + data[4] + m.data_len);
		CHECK(!memcmp(m.data, data + size - m.data_len, m.data_len));
		rt_phx_msg_deinit(&m);
		return 0;
	}

	CHECK(m.is_user_broadcast && !strcmp(m.event, "broadcast") && m.user_event);
	check_text(m.user_event);
	check_text(m.meta);
	size_t ev = strlen(m.user_event);
	CHECK(ev == data[4] && m.meta_len == data[5] && m.encoding == data[6]);
	CHECK(!m.meta == !m.meta_len);
	CHECK(!m.meta || strlen(m.meta) == m.meta_len);
	size_t head3 = 7 + jr + ref;
	CHECK(size == head3 + topic + ev + m.meta_len + m.data_len);

	/* Kind 4 for V2 subscribers. */
	struct rt_buf out;
	rt_buf_init(&out);
	CHECK(rt_phx_encode_user_broadcast(&out, m.topic, m.user_event, m.meta, m.meta_len,
					   m.encoding, m.data, m.data_len) == 0);
	CHECK(out.len == 5 + topic + ev + m.meta_len + m.data_len);
	CHECK(out.len == size - head3 + 5);
	const uint8_t *o = (const uint8_t *)out.data;
	CHECK(o[0] == 4 && o[1] == topic && o[2] == ev && o[3] == m.meta_len && o[4] == m.encoding);
	CHECK(!memcmp(o + 5, data + head3, size - head3));

	/* The V1 form of a JSON broadcast. */
	if (m.encoding == RT_PHX_ENC_JSON) {
		rt_buf_reset(&out);
		rt_phx_user_broadcast_json(&out, m.user_event, (const char *)m.data, m.data_len,
					   m.meta, m.meta_len);
		json_t *v = json_loadb(out.data, out.len, 0, NULL);
		CHECK(json_is_object(v));
		CHECK(!strcmp(json_string_value(json_object_get(v, "event")), m.user_event));
		CHECK(json_object_get(v, "payload"));
		CHECK(!m.meta || json_is_object(json_object_get(v, "meta")));
		json_decref(v);
	}
	rt_buf_deinit(&out);
	rt_phx_msg_deinit(&m);
	return 0;
}
