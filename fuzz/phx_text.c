/*
 * Fuzz target: Phoenix text frames (rt_phx_decode_text).
 *
 * Input: byte 0 picks the serializer (odd: vsn 1.0.0, even: vsn 2.0.0; seeds
 * use '1' and '2'), the rest is the text frame. A frame that decodes must
 * satisfy the header's promises, re-encode (rt_phx_encode_text_json) to valid
 * JSON, and decode again to the same fields. A frame that does not decode
 * must leave nothing allocated.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "proto/phx.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			abort();                                                         \
	} while (0)

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_decoded(const struct rt_phx_msg *m)
{
	CHECK(m->topic && m->event && m->payload);
	CHECK(strlen(m->topic) <= RT_PHX_MAX_TOPIC);
	CHECK(strlen(m->event) <= RT_PHX_MAX_EVENT);
	CHECK(!m->ref || strlen(m->ref) <= RT_PHX_MAX_REF);
	CHECK(!m->join_ref || strlen(m->join_ref) <= RT_PHX_MAX_REF);
	CHECK(!m->is_binary && !m->is_user_broadcast);
	CHECK(!m->user_event && !m->data && !m->meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum rt_phx_vsn vsn = (data[0] & 1) ? RT_PHX_V1 : RT_PHX_V2;
	const char *text = (const char *)data + 1;
	size_t text_len = size - 1;

	struct rt_phx_msg m;
	int rc = rt_phx_decode_text(vsn, text, text_len, &m);
	if (rc != 0) {
		CHECK(rc == RT_EPROTO);
		CHECK(!m.topic && !m.event && !m.payload && !m.ref && !m.join_ref);
		return 0;
	}
	check_decoded(&m);

	struct rt_buf out;
	rt_buf_init(&out);
	rt_phx_encode_text_json(vsn, &out, m.join_ref, m.ref, m.topic, m.event, m.payload);

	/* Valid JSON of the right shape. */
	json_t *root = json_loadb(out.data, out.len, 0, NULL);
	CHECK(root);
	if (vsn == RT_PHX_V1) {
		CHECK(json_is_object(root) && json_object_size(root) == 4);
		CHECK(!json_object_get(root, "join_ref"));
	} else {
		CHECK(json_is_array(root) && json_array_size(root) == 5);
	}
	json_decref(root);

	/* Decodes again to the same message (V1 output has no join_ref). */
	struct rt_phx_msg m2;
	CHECK(rt_phx_decode_text(vsn, out.data, out.len, &m2) == 0);
	check_decoded(&m2);
	CHECK(!strcmp(m.topic, m2.topic));
	CHECK(!strcmp(m.event, m2.event));
	CHECK(same_str(m.ref, m2.ref));
	CHECK(same_str(vsn == RT_PHX_V1 ? NULL : m.join_ref, m2.join_ref));
	CHECK(json_equal(m.payload, m2.payload));

	/* The other serializer carries the same message too. */
	enum rt_phx_vsn other = vsn == RT_PHX_V1 ? RT_PHX_V2 : RT_PHX_V1;
	rt_buf_reset(&out);
	rt_phx_encode_text_json(other, &out, m.join_ref, m.ref, m.topic, m.event, m.payload);
	struct rt_phx_msg m3;
	CHECK(rt_phx_decode_text(other, out.data, out.len, &m3) == 0);
	CHECK(!strcmp(m.topic, m3.topic) && !strcmp(m.event, m3.event));
	CHECK(json_equal(m.payload, m3.payload));

	rt_phx_msg_deinit(&m3);
	rt_phx_msg_deinit(&m2);
	rt_phx_msg_deinit(&m);
	rt_buf_deinit(&out);
	return 0;
}
