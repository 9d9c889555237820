/*
 * Phoenix codecs (src/proto/phx.h): text frames in both serializers, binary
 * kinds 0 and 3 in, kind 4 out, and the V1 form of a user broadcast. The
 * byte-exact examples come from PROTOCOL.md §2.2-§2.4.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "proto/phx.h"

/* PROTOCOL.md §2.4: channel.send({type:'broadcast', event:'cursor', payload:{x:1}})
 * on realtime:room1 with join_ref "3" and ref "7". */
static const uint8_t kind3_example[36] = {
	0x03, 0x01, 0x01, 0x0e, 0x06, 0x00, 0x01, '3', '7', 'r', 'e', 'a',
	'l',  't',  'i',  'm',  'e',  ':',  'r',  'o', 'o', 'm', '1', 'c',
	'u',  'r',  's',  'o',  'r',  '{',  '"',  'x', '"', ':', '1', '}',
};

/* The kind-4 frame every V2 subscriber gets for that push. */
static const uint8_t kind4_example[32] = {
	0x04, 0x0e, 0x06, 0x00, 0x01, 'r', 'e', 'a', 'l', 't', 'i', 'm', 'e', ':', 'r', 'o',
	'o',  'm',  '1',  'c',  'u',  'r', 's', 'o', 'r', '{', '"', 'x', '"', ':', '1', '}',
};

static void assert_zeroed(const struct rt_phx_msg *m)
{
	static const struct rt_phx_msg zero;
	assert_memory_equal(m, &zero, sizeof zero);
}

/* Decodes a NUL-terminated text and expects RT_EPROTO with out left zeroed. */
static void expect_text_fail(enum rt_phx_vsn vsn, const char *text)
{
	struct rt_phx_msg m;
	memset(&m, 0xa5, sizeof m);
	int rc = rt_phx_decode_text(vsn, text, strlen(text), &m);
	if (rc != RT_EPROTO)
		print_error("accepted: %s\n", text);
	assert_int_equal(rc, RT_EPROTO);
	assert_zeroed(&m);
}

static void expect_text_ok(enum rt_phx_vsn vsn, const char *text, struct rt_phx_msg *m)
{
	int rc = rt_phx_decode_text(vsn, text, strlen(text), m);
	if (rc != 0)
		print_error("rejected: %s\n", text);
	assert_int_equal(rc, 0);
	assert_non_null(m->topic);
	assert_non_null(m->event);
	assert_non_null(m->payload);
	assert_false(m->is_binary);
}

/* After a failed binary decode nothing may be left to free or to misread.
 * (That out is zeroed byte for byte is checked once, in
 * test_binary_fail_zeroes_out, so that one defect fails one test.) */
static void assert_released(const struct rt_phx_msg *m)
{
	assert_null(m->join_ref);
	assert_null(m->ref);
	assert_null(m->topic);
	assert_null(m->event);
	assert_null(m->payload);
	assert_null(m->user_event);
	assert_null(m->data);
	assert_null(m->meta);
	assert_int_equal(m->data_len, 0);
	assert_int_equal(m->meta_len, 0);
	assert_false(m->is_binary);
	assert_false(m->is_user_broadcast);
}

static void expect_binary_fail(const uint8_t *data, size_t len)
{
	struct rt_phx_msg m;
	memset(&m, 0xa5, sizeof m);
	assert_int_equal(rt_phx_decode_binary(data, len, &m), RT_EPROTO);
	assert_released(&m);
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- V1 text ---- */

static void test_v1_join(void **state)
{
	struct rt_phx_msg m;
	expect_text_ok(RT_PHX_V1,
		       "{\"topic\":\"realtime:room1\",\"event\":\"phx_join\","
		       "\"payload\":{\"config\":{}},\"ref\":\"1\",\"join_ref\":\"2\"}",
		       &m);
	assert_string_equal(m.topic, "realtime:room1");
	assert_string_equal(m.event, "phx_join");
	assert_string_equal(m.ref, "1");
	assert_string_equal(m.join_ref, "2");
	assert_true(json_is_object(m.payload));
	assert_true(json_is_object(json_object_get(m.payload, "config")));
	assert_null(m.user_event);
	assert_null(m.data);
	rt_phx_msg_deinit(&m);
	assert_zeroed(&m);
}

static void test_v1_refs(void **state)
{
	struct rt_phx_msg m;

	/* Heartbeat: no join_ref key at all. */
	expect_text_ok(RT_PHX_V1, "{\"topic\":\"phoenix\",\"event\":\"heartbeat\",\"payload\":{},\"ref\":\"2\"}",
		       &m);
	assert_null(m.join_ref);
	assert_string_equal(m.ref, "2");
	rt_phx_msg_deinit(&m);

	/* Null refs. */
	expect_text_ok(RT_PHX_V1,
		       "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":null,\"join_ref\":null}",
		       &m);
	assert_null(m.join_ref);
	assert_null(m.ref);
	rt_phx_msg_deinit(&m);

	/* Empty-string refs stay strings. */
	expect_text_ok(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"\"}", &m);
	assert_non_null(m.ref);
	assert_string_equal(m.ref, "");
	rt_phx_msg_deinit(&m);

	/* Extra keys are ignored; key order does not matter. */
	expect_text_ok(RT_PHX_V1,
		       "{\"ref\":\"9\",\"extra\":[1,2],\"payload\":{\"a\":1},\"event\":\"e\",\"topic\":\"t\"}",
		       &m);
	assert_string_equal(m.ref, "9");
	assert_int_equal(json_integer_value(json_object_get(m.payload, "a")), 1);
	rt_phx_msg_deinit(&m);

	/* Refs must be strings or null. */
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":1}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":true}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":{}}");
	expect_text_fail(RT_PHX_V1,
			 "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"1\",\"join_ref\":2}");
	expect_text_fail(RT_PHX_V1,
			 "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"1\",\"join_ref\":[]}");
}

static void test_v1_missing_fields(void **state)
{
	expect_text_fail(RT_PHX_V1, "{\"event\":\"e\",\"payload\":{},\"ref\":\"1\"}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"payload\":{},\"ref\":\"1\"}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"ref\":\"1\"}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{}}");
	expect_text_fail(RT_PHX_V1, "{}");
}

static void test_v1_wrong_types(void **state)
{
	expect_text_fail(RT_PHX_V1, "{\"topic\":1,\"event\":\"e\",\"payload\":{},\"ref\":null}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":null,\"event\":\"e\",\"payload\":{},\"ref\":null}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":[],\"payload\":{},\"ref\":null}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":false,\"payload\":{},\"ref\":null}");
}

static void test_v1_not_an_object(void **state)
{
	/* A V2 array on a V1 socket, scalars, and text that is not JSON. */
	expect_text_fail(RT_PHX_V1, "[null,\"1\",\"t\",\"e\",{}]");
	expect_text_fail(RT_PHX_V1, "\"topic\"");
	expect_text_fail(RT_PHX_V1, "42");
	expect_text_fail(RT_PHX_V1, "null");
	expect_text_fail(RT_PHX_V1, "");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":null");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":null} x");
}

static void test_embedded_nul(void **state)
{
	/* A NUL inside topic or event would make the C string differ from the JSON one. */
	expect_text_fail(RT_PHX_V1,
			 "{\"topic\":\"real\\u0000time:x\",\"event\":\"e\",\"payload\":{},\"ref\":null}");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\\u0000\",\"payload\":{},\"ref\":null}");
	expect_text_fail(RT_PHX_V2, "[null,null,\"\\u0000\",\"e\",{}]");
	expect_text_fail(RT_PHX_V2, "[null,null,\"t\",\"heart\\u0000beat\",{}]");

	/* A raw NUL byte inside the frame is not JSON. */
	static const char raw[] = "[null,null,\"t\0\",\"e\",{}]";
	struct rt_phx_msg m;
	assert_int_equal(rt_phx_decode_text(RT_PHX_V2, raw, sizeof raw - 1, &m), RT_EPROTO);
	assert_zeroed(&m);

	/* The same holds for refs: a ref is echoed back in replies, so a NUL in it
	 * must not silently shorten it ("1\0002" must not come back as "1"). */
	expect_text_fail(RT_PHX_V2, "[null,\"1\\u00002\",\"t\",\"e\",{}]");
	expect_text_fail(RT_PHX_V2, "[\"3\\u0000\",\"1\",\"t\",\"e\",{}]");
	expect_text_fail(RT_PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"\\u00001\"}");
}

static void test_length_limits(void **state)
{
	char *s255 = repeat('a', 255), *s256 = repeat('a', 256);
	char text[2048];
	struct rt_phx_msg m;

	/* 255 is the longest topic, event and ref. */
	snprintf(text, sizeof text, "[\"%s\",\"%s\",\"%s\",\"%s\",{}]", s255, s255, s255, s255);
	expect_text_ok(RT_PHX_V2, text, &m);
	assert_int_equal(strlen(m.topic), 255);
	assert_int_equal(strlen(m.event), 255);
	assert_int_equal(strlen(m.ref), 255);
	assert_int_equal(strlen(m.join_ref), 255);
	rt_phx_msg_deinit(&m);

	snprintf(text, sizeof text, "[null,null,\"%s\",\"e\",{}]", s256);
	expect_text_fail(RT_PHX_V2, text);
	snprintf(text, sizeof text, "[null,null,\"t\",\"%s\",{}]", s256);
	expect_text_fail(RT_PHX_V2, text);
	snprintf(text, sizeof text, "[null,\"%s\",\"t\",\"e\",{}]", s256);
	expect_text_fail(RT_PHX_V2, text);
	snprintf(text, sizeof text, "[\"%s\",null,\"t\",\"e\",{}]", s256);
	expect_text_fail(RT_PHX_V2, text);
	snprintf(text, sizeof text, "{\"topic\":\"%s\",\"event\":\"e\",\"payload\":{},\"ref\":null}", s256);
	expect_text_fail(RT_PHX_V1, text);
	snprintf(text, sizeof text, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"%s\"}", s256);
	expect_text_fail(RT_PHX_V1, text);
	snprintf(text, sizeof text,
		 "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":null,\"join_ref\":\"%s\"}", s256);
	expect_text_fail(RT_PHX_V1, text);

	/* The limit counts bytes: 128 two-byte characters are 256 bytes. */
	char wide[600] = "[null,null,\"";
	for (int i = 0; i < 128; i++)
		strcat(wide, "\xc3\xa9");
	strcat(wide, "\",\"e\",{}]");
	expect_text_fail(RT_PHX_V2, wide);

	free(s255);
	free(s256);
}

/* ---- V2 text ---- */

static void test_v2_decode(void **state)
{
	struct rt_phx_msg m;

	expect_text_ok(RT_PHX_V2, "[\"1\",\"1\",\"realtime:room1\",\"phx_join\",{\"config\":{}}]", &m);
	assert_string_equal(m.join_ref, "1");
	assert_string_equal(m.ref, "1");
	assert_string_equal(m.topic, "realtime:room1");
	assert_string_equal(m.event, "phx_join");
	assert_true(json_is_object(json_object_get(m.payload, "config")));
	rt_phx_msg_deinit(&m);

	expect_text_ok(RT_PHX_V2, "[null,\"7\",\"phoenix\",\"heartbeat\",{}]", &m);
	assert_null(m.join_ref);
	assert_string_equal(m.ref, "7");
	assert_string_equal(m.topic, "phoenix");
	rt_phx_msg_deinit(&m);

	expect_text_ok(RT_PHX_V2, "[null,null,\"t\",\"e\",{}]", &m);
	assert_null(m.join_ref);
	assert_null(m.ref);
	rt_phx_msg_deinit(&m);

	/* More than five elements: the rest is ignored. */
	expect_text_ok(RT_PHX_V2, "[null,\"2\",\"t\",\"e\",{\"k\":\"v\"},\"extra\",7]", &m);
	assert_string_equal(json_string_value(json_object_get(m.payload, "k")), "v");
	rt_phx_msg_deinit(&m);

	/* Non-ASCII topic and event (UTF-8 bytes kept as they are). */
	expect_text_ok(RT_PHX_V2, "[null,null,\"realtime:caf\\u00e9\",\"\xe2\x82\xac\",{}]", &m);
	assert_string_equal(m.topic, "realtime:caf\xc3\xa9");
	assert_string_equal(m.event, "\xe2\x82\xac");
	rt_phx_msg_deinit(&m);
}

static void test_v2_malformed(void **state)
{
	expect_text_fail(RT_PHX_V2, "[null,null,\"t\",\"e\"]");
	expect_text_fail(RT_PHX_V2, "[]");
	expect_text_fail(RT_PHX_V2, "[null]");
	/* A V1 object on a V2 socket. */
	expect_text_fail(RT_PHX_V2, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":null}");
	expect_text_fail(RT_PHX_V2, "[1,null,\"t\",\"e\",{}]");
	expect_text_fail(RT_PHX_V2, "[null,2,\"t\",\"e\",{}]");
	expect_text_fail(RT_PHX_V2, "[null,1.5,\"t\",\"e\",{}]");
	expect_text_fail(RT_PHX_V2, "[null,null,3,\"e\",{}]");
	expect_text_fail(RT_PHX_V2, "[null,null,\"t\",null,{}]");
	expect_text_fail(RT_PHX_V2, "[null,null,null,null,null]");
	expect_text_fail(RT_PHX_V2, "[null,null,\"t\",\"e\",{}");
	expect_text_fail(RT_PHX_V2, "not json");
	expect_text_fail(RT_PHX_V2, "\"[null,null,\\\"t\\\",\\\"e\\\",{}]\"");
}

static void test_decode_uses_length(void **state)
{
	/* Only data_len bytes are read: the rest of the buffer is ignored. */
	static const char text[] = "[null,null,\"t\",\"e\",{}]garbage";
	struct rt_phx_msg m;
	assert_int_equal(rt_phx_decode_text(RT_PHX_V2, text, strlen(text) - 7, &m), 0);
	assert_string_equal(m.topic, "t");
	rt_phx_msg_deinit(&m);
	/* Cut one byte short it is not JSON. */
	assert_int_equal(rt_phx_decode_text(RT_PHX_V2, text, strlen(text) - 8, &m), RT_EPROTO);
	assert_zeroed(&m);
}

/* ---- binary ---- */

static void test_kind3_example(void **state)
{
	struct rt_phx_msg m;
	assert_int_equal(rt_phx_decode_binary(kind3_example, sizeof kind3_example, &m), 0);
	assert_true(m.is_binary);
	assert_true(m.is_user_broadcast);
	assert_string_equal(m.join_ref, "3");
	assert_string_equal(m.ref, "7");
	assert_string_equal(m.topic, "realtime:room1");
	assert_string_equal(m.event, "broadcast");
	assert_string_equal(m.user_event, "cursor");
	assert_int_equal(m.encoding, RT_PHX_ENC_JSON);
	assert_int_equal(m.data_len, 7);
	assert_memory_equal(m.data, "{\"x\":1}", 7);
	assert_int_equal(m.data[7], '\0');
	assert_null(m.meta);
	assert_int_equal(m.meta_len, 0);
	assert_null(m.payload);
	rt_phx_msg_deinit(&m);
	assert_zeroed(&m);
}

static void test_kind3_truncated(void **state)
{
	/* Every proper prefix is malformed: the header or a string is cut, or the
	 * JSON payload is incomplete (an empty payload is not JSON either). */
	for (size_t len = 0; len < sizeof kind3_example; len++) {
		uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees over-reads */
		assert_non_null(copy);
		memcpy(copy, kind3_example, len);
		struct rt_phx_msg m;
		memset(&m, 0xa5, sizeof m);
		int rc = rt_phx_decode_binary(copy, len, &m);
		free(copy);
		if (rc != RT_EPROTO)
			print_error("prefix of %zu bytes accepted\n", len);
		assert_int_equal(rc, RT_EPROTO);
		assert_released(&m);
	}
}

static void test_kind3_encoding(void **state)
{
	uint8_t f[sizeof kind3_example];

	/* Encodings other than 0 and 1. */
	for (unsigned enc = 2; enc < 256; enc += 51) {
		memcpy(f, kind3_example, sizeof f);
		f[6] = (uint8_t)enc;
		expect_binary_fail(f, sizeof f);
	}

	/* Encoding 0: the same bytes are an opaque binary payload. */
	memcpy(f, kind3_example, sizeof f);
	f[6] = 0;
	struct rt_phx_msg m;
	assert_int_equal(rt_phx_decode_binary(f, sizeof f, &m), 0);
	assert_int_equal(m.encoding, RT_PHX_ENC_BINARY);
	assert_int_equal(m.data_len, 7);
	assert_memory_equal(m.data, "{\"x\":1}", 7);
	rt_phx_msg_deinit(&m);

	/* Encoding 0 with bytes that are neither text nor JSON, NULs included. */
	static const uint8_t bin[] = {3, 0, 0, 1, 1, 0, 0, 't', 'e', 0x00, 0xff, 0xfe, 0x00, 0x80};
	assert_int_equal(rt_phx_decode_binary(bin, sizeof bin, &m), 0);
	assert_null(m.join_ref);
	assert_null(m.ref);
	assert_string_equal(m.topic, "t");
	assert_string_equal(m.user_event, "e");
	assert_int_equal(m.data_len, 5);
	assert_memory_equal(m.data, bin + 9, 5);
	rt_phx_msg_deinit(&m);

	/* Encoding 0 with an empty payload. */
	static const uint8_t empty[] = {3, 0, 0, 1, 1, 0, 0, 't', 'e'};
	assert_int_equal(rt_phx_decode_binary(empty, sizeof empty, &m), 0);
	assert_int_equal(m.data_len, 0);
	assert_non_null(m.data);
	rt_phx_msg_deinit(&m);
}

static void test_kind3_bad_json(void **state)
{
	static const char *const bad[] = {"{\"x\":}", "{", "", "nul", "{\"a\":1}x", "\"\xff\"", "[1,]"};
	static const char *const good[] = {"1", "\"s\"", "null", "[]", "{\"a\":[1,{\"b\":null}]}"};
	uint8_t f[64];
	struct rt_phx_msg m;

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		size_t n = strlen(bad[i]);
		memcpy(f, ((const uint8_t[]){3, 0, 0, 1, 1, 0, 1, 't', 'e'}), 9);
		memcpy(f + 9, bad[i], n);
		expect_binary_fail(f, 9 + n);
	}
	/* Any JSON value is a valid user payload. */
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		size_t n = strlen(good[i]);
		memcpy(f, ((const uint8_t[]){3, 0, 0, 1, 1, 0, 1, 't', 'e'}), 9);
		memcpy(f + 9, good[i], n);
		assert_int_equal(rt_phx_decode_binary(f, 9 + n, &m), 0);
		assert_int_equal(m.data_len, n);
		assert_string_equal((const char *)m.data, good[i]);
		rt_phx_msg_deinit(&m);
	}
}

/* Builds a kind-3 frame with metadata meta and payload {}. */
static size_t kind3_with_meta(uint8_t *f, const char *meta)
{
	size_t n = strlen(meta);
	memcpy(f, ((const uint8_t[]){3, 1, 1, 1, 1, (uint8_t)n, 1, 'j', 'r', 't', 'e'}), 11);
	memcpy(f + 11, meta, n);
	memcpy(f + 11 + n, "{}", 2);
	return 13 + n;
}

static void test_kind3_meta(void **state)
{
	uint8_t f[300];
	struct rt_phx_msg m;

	size_t n = kind3_with_meta(f, "{\"persist\":true}");
	assert_int_equal(rt_phx_decode_binary(f, n, &m), 0);
	assert_int_equal(m.meta_len, 16);
	assert_string_equal(m.meta, "{\"persist\":true}");
	assert_string_equal(m.join_ref, "j");
	assert_string_equal(m.ref, "r");
	assert_int_equal(m.data_len, 2);
	rt_phx_msg_deinit(&m);

	n = kind3_with_meta(f, "{}");
	assert_int_equal(rt_phx_decode_binary(f, n, &m), 0);
	assert_string_equal(m.meta, "{}");
	rt_phx_msg_deinit(&m);

	static const char *const not_objects[] = {"[1]", "\"x\"", "1", "null", "{", "{\"a\":1}}",
						  "true"};
	for (size_t i = 0; i < sizeof not_objects / sizeof *not_objects; i++) {
		n = kind3_with_meta(f, not_objects[i]);
		expect_binary_fail(f, n);
	}
}

static void test_binary_bad_header_text(void **state)
{
	/* Invalid UTF-8 or a NUL in any header string. */
	static const uint8_t topic_ff[] = {3, 0, 0, 2, 1, 0, 1, 't', 0xff, 'e', '1'};
	static const uint8_t event_cut[] = {3, 0, 0, 1, 1, 0, 1, 't', 0xc3, '1'};
	static const uint8_t ref_nul[] = {3, 0, 2, 1, 1, 0, 1, '7', 0, 't', 'e', '1'};
	static const uint8_t jr_overlong[] = {3, 2, 0, 1, 1, 0, 1, 0xc0, 0x80, 't', 'e', '1'};
	static const uint8_t meta_bad[] = {3, 0, 0, 1, 1, 4, 1, 't', 'e', '{', '}', 0xed, 0xa0, '1'};
	static const uint8_t k0_topic_surrogate[] = {0, 0, 0, 3, 1, 0xed, 0xa0, 0x80, 'e'};
	expect_binary_fail(topic_ff, sizeof topic_ff);
	expect_binary_fail(event_cut, sizeof event_cut);
	expect_binary_fail(ref_nul, sizeof ref_nul);
	expect_binary_fail(jr_overlong, sizeof jr_overlong);
	expect_binary_fail(meta_bad, sizeof meta_bad);
	expect_binary_fail(k0_topic_surrogate, sizeof k0_topic_surrogate);

	/* Topic and event may not be empty. */
	static const uint8_t no_topic[] = {3, 0, 0, 0, 1, 0, 1, 'e', '1'};
	static const uint8_t no_event[] = {3, 0, 0, 1, 0, 0, 1, 't', '1'};
	static const uint8_t k0_no_event[] = {0, 0, 0, 1, 0, 't'};
	expect_binary_fail(no_topic, sizeof no_topic);
	expect_binary_fail(no_event, sizeof no_event);
	expect_binary_fail(k0_no_event, sizeof k0_no_event);

	/* Valid multi-byte UTF-8 is fine. */
	static const uint8_t utf8[] = {3, 0, 0, 2, 3, 0, 1, 0xc3, 0xa9, 0xe2, 0x82, 0xac, '1'};
	struct rt_phx_msg m;
	assert_int_equal(rt_phx_decode_binary(utf8, sizeof utf8, &m), 0);
	assert_string_equal(m.topic, "\xc3\xa9");
	assert_string_equal(m.user_event, "\xe2\x82\xac");
	rt_phx_msg_deinit(&m);
}

/*
 * Found by fuzz/phx_binary.c. Each header string must be valid UTF-8 on its
 * own ("Header strings become JSON strings for V1 subscribers"): a two-byte
 * character split across two fields makes both invalid even though their
 * concatenation is valid.
 */
static void test_binary_utf8_split_across_fields(void **state)
{
	/* ref "\xce", topic "\x95": together U+0395. */
	static const uint8_t ref_topic[] = {3, 1, 1, 1, 1, 0, 0, '1', 0xce, 0x95, ':'};
	/* join_ref "\xce", ref "\x95", topic and event valid. */
	static const uint8_t jr_ref[] = {3, 1, 1, 1, 1, 0, 1, 0xce, 0x95, 't', 'e', '1'};
	/* Kind 0: topic "t\xc3", event "\xa9". */
	static const uint8_t k0_topic_event[] = {0, 0, 0, 2, 1, 't', 0xc3, 0xa9};
	const struct {
		const char *what;
		const uint8_t *data;
		size_t len;
	} cases[] = {
		{"ref|topic", ref_topic, sizeof ref_topic},
		{"join_ref|ref", jr_ref, sizeof jr_ref},
		{"kind 0 topic|event", k0_topic_event, sizeof k0_topic_event},
	};
	int accepted = 0;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct rt_phx_msg m;
		int rc = rt_phx_decode_binary(cases[i].data, cases[i].len, &m);
		if (rc == 0) {
			print_error("%s: split character accepted\n", cases[i].what);
			accepted++;
			rt_phx_msg_deinit(&m);
		}
	}
	assert_int_equal(accepted, 0);
}

static void test_binary_kinds(void **state)
{
	/* Kind 0 push: 5-byte header, then join_ref, ref, topic, event, data. */
	static const uint8_t k0[] = {0, 1, 1, 1, 4, '1', '2', 't', 'p', 'i', 'n', 'g', 0, 1, 2};
	struct rt_phx_msg m;
	assert_int_equal(rt_phx_decode_binary(k0, sizeof k0, &m), 0);
	assert_true(m.is_binary);
	assert_false(m.is_user_broadcast);
	assert_string_equal(m.join_ref, "1");
	assert_string_equal(m.ref, "2");
	assert_string_equal(m.topic, "t");
	assert_string_equal(m.event, "ping");
	assert_null(m.user_event);
	assert_int_equal(m.encoding, RT_PHX_ENC_BINARY);
	assert_int_equal(m.data_len, 3);
	assert_memory_equal(m.data, k0 + 12, 3);
	assert_null(m.payload);
	rt_phx_msg_deinit(&m);

	/* Kind 0 with empty refs and no data. */
	static const uint8_t k0_min[] = {0, 0, 0, 1, 1, 't', 'e'};
	assert_int_equal(rt_phx_decode_binary(k0_min, sizeof k0_min, &m), 0);
	assert_null(m.join_ref);
	assert_null(m.ref);
	assert_int_equal(m.data_len, 0);
	rt_phx_msg_deinit(&m);
	for (size_t len = 0; len < sizeof k0_min; len++)
		expect_binary_fail(k0_min, len);

	/* Kinds the server never accepts from a client. */
	uint8_t f[sizeof kind3_example];
	static const uint8_t bad_kinds[] = {1, 2, 4, 5, 0x7f, 0x80, 0xff};
	for (size_t i = 0; i < sizeof bad_kinds; i++) {
		memcpy(f, kind3_example, sizeof f);
		f[0] = bad_kinds[i];
		expect_binary_fail(f, sizeof f);
	}
	expect_binary_fail(kind4_example, sizeof kind4_example);

	/* Header lengths that point past the end. */
	memcpy(f, kind3_example, sizeof f);
	f[3] = 0xff;
	expect_binary_fail(f, sizeof f);
	memcpy(f, kind3_example, sizeof f);
	f[5] = 30; /* metadata would swallow the payload and more */
	expect_binary_fail(f, sizeof f);
}

/* ---- encoders ---- */

static void test_encode_text(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	static const char payload[] = "{\"status\":\"ok\",\"response\":{}}";

	/* V1 never writes join_ref, even when given one. */
	rt_phx_encode_text(RT_PHX_V1, &b, "1", "1", "realtime:room1", "phx_reply", payload,
			   strlen(payload));
	assert_string_equal(b.data, "{\"topic\":\"realtime:room1\",\"event\":\"phx_reply\","
				    "\"payload\":{\"status\":\"ok\",\"response\":{}},\"ref\":\"1\"}");
	rt_buf_reset(&b);
	rt_phx_encode_text(RT_PHX_V1, &b, NULL, NULL, "realtime:room1", "broadcast", "{}", 2);
	assert_string_equal(b.data,
			    "{\"topic\":\"realtime:room1\",\"event\":\"broadcast\",\"payload\":{},\"ref\":null}");
	rt_buf_reset(&b);

	rt_phx_encode_text(RT_PHX_V2, &b, "1", "1", "realtime:room1", "phx_reply", payload,
			   strlen(payload));
	assert_string_equal(b.data, "[\"1\",\"1\",\"realtime:room1\",\"phx_reply\","
				    "{\"status\":\"ok\",\"response\":{}}]");
	rt_buf_reset(&b);
	rt_phx_encode_text(RT_PHX_V2, &b, NULL, "7", "phoenix", "phx_reply", payload, strlen(payload));
	assert_string_equal(b.data, "[null,\"7\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
	rt_buf_reset(&b);
	rt_phx_encode_text(RT_PHX_V2, &b, "3", NULL, "t", "e", "{}", 2);
	assert_string_equal(b.data, "[\"3\",null,\"t\",\"e\",{}]");
	rt_buf_reset(&b);

	/* Strings are escaped; the payload is copied verbatim (only payload_len bytes). */
	rt_phx_encode_text(RT_PHX_V2, &b, "a\"b", NULL, "t\\\n", "e", "{}XXXX", 2);
	assert_string_equal(b.data, "[\"a\\\"b\",null,\"t\\\\\\u000a\",\"e\",{}]");
	rt_buf_reset(&b);

	/* Encoders append. */
	rt_buf_append_str(&b, "prefix|");
	rt_phx_encode_text(RT_PHX_V2, &b, NULL, NULL, "t", "e", "1", 1);
	assert_string_equal(b.data, "prefix|[null,null,\"t\",\"e\",1]");
	rt_buf_deinit(&b);
}

static void test_encode_text_json(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	json_t *p = json_pack("{s:s,s:{s:[]}}", "status", "ok", "response", "postgres_changes");
	rt_phx_encode_text_json(RT_PHX_V2, &b, "1", "1", "realtime:room1", "phx_reply", p);
	assert_string_equal(b.data, "[\"1\",\"1\",\"realtime:room1\",\"phx_reply\","
				    "{\"status\":\"ok\",\"response\":{\"postgres_changes\":[]}}]");
	rt_buf_reset(&b);
	rt_phx_encode_text_json(RT_PHX_V1, &b, "1", "1", "realtime:room1", "phx_reply", p);
	assert_string_equal(b.data, "{\"topic\":\"realtime:room1\",\"event\":\"phx_reply\","
				    "\"payload\":{\"status\":\"ok\",\"response\":{\"postgres_changes\":[]}},"
				    "\"ref\":\"1\"}");
	json_decref(p);

	/* Any JSON value, including strings that need escapes. */
	rt_buf_reset(&b);
	json_t *s = json_string("a\"\x01");
	rt_phx_encode_text_json(RT_PHX_V2, &b, NULL, NULL, "t", "e", s);
	assert_string_equal(b.data, "[null,null,\"t\",\"e\",\"a\\\"\\u0001\"]");
	json_decref(s);

	rt_buf_reset(&b);
	json_t *i = json_integer(42);
	rt_phx_dump(&b, i);
	assert_string_equal(b.data, "42");
	json_decref(i);
	rt_buf_deinit(&b);
}

static void test_encode_kind4(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_phx_encode_user_broadcast(&b, "realtime:room1", "cursor", NULL, 0,
						      RT_PHX_ENC_JSON, (const uint8_t *)"{\"x\":1}", 7),
			 0);
	assert_int_equal(b.len, sizeof kind4_example);
	assert_memory_equal(b.data, kind4_example, sizeof kind4_example);

	/* With metadata and a binary payload holding NULs. */
	rt_buf_reset(&b);
	static const uint8_t bin[] = {0, 1, 0, 0xff};
	assert_int_equal(rt_phx_encode_user_broadcast(&b, "t", "ev", "{\"persist\":true}", 16,
						      RT_PHX_ENC_BINARY, bin, sizeof bin),
			 0);
	static const uint8_t want[] = {4, 1, 2, 16, 0, 't', 'e', 'v', '{', '"', 'p', 'e', 'r', 's',
				       'i', 's', 't', '"', ':', 't', 'r', 'u', 'e', '}', 0, 1, 0, 0xff};
	assert_int_equal(b.len, sizeof want);
	assert_memory_equal(b.data, want, sizeof want);

	/* Empty payload. */
	rt_buf_reset(&b);
	assert_int_equal(rt_phx_encode_user_broadcast(&b, "t", "e", NULL, 0, RT_PHX_ENC_BINARY, NULL, 0),
			 0);
	assert_int_equal(b.len, 7);
	assert_memory_equal(b.data, ((const uint8_t[]){4, 1, 1, 0, 0, 't', 'e'}), 7);
	rt_buf_deinit(&b);
}

static void test_encode_kind4_limits(void **state)
{
	char *s255 = repeat('a', 255), *s256 = repeat('b', 256);
	struct rt_buf b;
	rt_buf_init(&b);

	assert_int_equal(rt_phx_encode_user_broadcast(&b, s255, s255, s255, 255, RT_PHX_ENC_BINARY,
						      (const uint8_t *)"x", 1),
			 0);
	assert_int_equal(b.len, 5 + 3 * 255 + 1);
	assert_int_equal((uint8_t)b.data[1], 255);
	assert_int_equal((uint8_t)b.data[2], 255);
	assert_int_equal((uint8_t)b.data[3], 255);

	/* Over 255 bytes: RT_ETOOBIG and nothing appended. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "keep");
	assert_int_equal(rt_phx_encode_user_broadcast(&b, s256, "e", NULL, 0, RT_PHX_ENC_JSON,
						      (const uint8_t *)"1", 1),
			 RT_ETOOBIG);
	assert_int_equal(rt_phx_encode_user_broadcast(&b, "t", s256, NULL, 0, RT_PHX_ENC_JSON,
						      (const uint8_t *)"1", 1),
			 RT_ETOOBIG);
	assert_int_equal(rt_phx_encode_user_broadcast(&b, "t", "e", s256, 256, RT_PHX_ENC_JSON,
						      (const uint8_t *)"1", 1),
			 RT_ETOOBIG);
	assert_int_equal(b.len, 4);
	assert_string_equal(b.data, "keep");

	rt_buf_deinit(&b);
	free(s255);
	free(s256);
}

static void test_user_broadcast_json(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_phx_user_broadcast_json(&b, "cursor", "{\"x\":1}", 7, NULL, 0);
	assert_string_equal(b.data, "{\"type\":\"broadcast\",\"event\":\"cursor\",\"payload\":{\"x\":1}}");

	rt_buf_reset(&b);
	rt_phx_user_broadcast_json(&b, "cursor", "{\"x\":1}", 7, "{\"persist\":true}", 16);
	assert_string_equal(b.data, "{\"type\":\"broadcast\",\"event\":\"cursor\",\"payload\":{\"x\":1},"
				    "\"meta\":{\"persist\":true}}");

	/* Empty metadata is no metadata. */
	rt_buf_reset(&b);
	rt_phx_user_broadcast_json(&b, "e\"v", "[1]", 3, "", 0);
	assert_string_equal(b.data, "{\"type\":\"broadcast\",\"event\":\"e\\\"v\",\"payload\":[1]}");

	/* The V1 text of §2.4, up to key order. */
	rt_buf_reset(&b);
	rt_phx_user_broadcast_json(&b, "cursor", "{\"x\":1}", 7, NULL, 0);
	struct rt_buf t;
	rt_buf_init(&t);
	rt_phx_encode_text(RT_PHX_V1, &t, "3", NULL, "realtime:room1", "broadcast", b.data, b.len);
	json_t *got = json_loads(t.data, 0, NULL);
	json_t *want = json_loads("{\"topic\":\"realtime:room1\",\"event\":\"broadcast\",\"payload\":"
				  "{\"event\":\"cursor\",\"payload\":{\"x\":1},\"type\":\"broadcast\"},"
				  "\"ref\":null}",
				  0, NULL);
	assert_non_null(got);
	assert_non_null(want);
	assert_true(json_equal(got, want));
	json_decref(got);
	json_decref(want);
	rt_buf_deinit(&t);
	rt_buf_deinit(&b);
}

/* ---- round trips ---- */

static void test_round_trip_text(void **state)
{
	static const char *const v2[] = {
		"[\"1\",\"1\",\"realtime:room1\",\"phx_join\",{\"config\":{\"broadcast\":{\"self\":true}}}]",
		"[null,\"7\",\"phoenix\",\"heartbeat\",{}]",
		"[null,null,\"t\\\"q\",\"e\\\\\",[1,2,{\"a\":null}]]",
		"[\"x\",null,\"caf\xc3\xa9\",\"\\u0001\",\"str\"]",
	};
	struct rt_buf b;
	rt_buf_init(&b);
	for (size_t i = 0; i < sizeof v2 / sizeof *v2; i++) {
		struct rt_phx_msg m;
		expect_text_ok(RT_PHX_V2, v2[i], &m);
		rt_buf_reset(&b);
		rt_phx_encode_text_json(RT_PHX_V2, &b, m.join_ref, m.ref, m.topic, m.event, m.payload);
		assert_string_equal(b.data, v2[i]);

		/* The same message through V1 and back. */
		rt_buf_reset(&b);
		rt_phx_encode_text_json(RT_PHX_V1, &b, m.join_ref, m.ref, m.topic, m.event, m.payload);
		struct rt_phx_msg m1;
		expect_text_ok(RT_PHX_V1, b.data, &m1);
		assert_null(m1.join_ref); /* V1 output never carries it */
		if (m.ref)
			assert_string_equal(m1.ref, m.ref);
		else
			assert_null(m1.ref);
		assert_string_equal(m1.topic, m.topic);
		assert_string_equal(m1.event, m.event);
		assert_true(json_equal(m1.payload, m.payload));
		rt_phx_msg_deinit(&m1);
		rt_phx_msg_deinit(&m);
	}
	rt_buf_deinit(&b);
}

static void test_round_trip_binary(void **state)
{
	struct rt_phx_msg m;
	assert_int_equal(rt_phx_decode_binary(kind3_example, sizeof kind3_example, &m), 0);
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_phx_encode_user_broadcast(&b, m.topic, m.user_event, m.meta, m.meta_len,
						      m.encoding, m.data, m.data_len),
			 0);
	assert_int_equal(b.len, sizeof kind4_example);
	assert_memory_equal(b.data, kind4_example, sizeof kind4_example);
	rt_phx_msg_deinit(&m);

	/* With metadata: kind 3 → kind 4 keeps every byte of topic, event, meta, data. */
	uint8_t f[300];
	size_t n = kind3_with_meta(f, "{\"persist\":true}");
	assert_int_equal(rt_phx_decode_binary(f, n, &m), 0);
	rt_buf_reset(&b);
	assert_int_equal(rt_phx_encode_user_broadcast(&b, m.topic, m.user_event, m.meta, m.meta_len,
						      m.encoding, m.data, m.data_len),
			 0);
	/* kind-3 header is 7 bytes plus join_ref and ref (1 each); kind 4 is 5 bytes. */
	assert_int_equal(b.len, n - 4);
	assert_memory_equal(b.data + 5, f + 9, n - 9);
	assert_int_equal((uint8_t)b.data[3], 16);
	rt_phx_msg_deinit(&m);
	rt_buf_deinit(&b);
}

static void test_binary_fail_zeroes_out(void **state)
{
	/* The header promises "RT_EPROTO (out zeroed)". A kind-3 frame whose
	 * header is complete but whose strings are cut short, or whose meta or
	 * payload is bad, must leave every field zero, encoding included. */
	const size_t cuts[] = {7, 20, 29, 30};
	for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
		struct rt_phx_msg m;
		memset(&m, 0xa5, sizeof m);
		assert_int_equal(rt_phx_decode_binary(kind3_example, cuts[i], &m), RT_EPROTO);
		assert_zeroed(&m);
	}
}

static void test_deinit_zeroed(void **state)
{
	struct rt_phx_msg m = {0};
	rt_phx_msg_deinit(&m);
	rt_phx_msg_deinit(&m);
	assert_zeroed(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_join),
		cmocka_unit_test(test_v1_refs),
		cmocka_unit_test(test_v1_missing_fields),
		cmocka_unit_test(test_v1_wrong_types),
		cmocka_unit_test(test_v1_not_an_object),
		cmocka_unit_test(test_embedded_nul),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_v2_decode),
		cmocka_unit_test(test_v2_malformed),
		cmocka_unit_test(test_decode_uses_length),
		cmocka_unit_test(test_kind3_example),
		cmocka_unit_test(test_kind3_truncated),
		cmocka_unit_test(test_kind3_encoding),
		cmocka_unit_test(test_kind3_bad_json),
		cmocka_unit_test(test_kind3_meta),
		cmocka_unit_test(test_binary_bad_header_text),
		cmocka_unit_test(test_binary_utf8_split_across_fields),
		cmocka_unit_test(test_binary_kinds),
		cmocka_unit_test(test_encode_text),
		cmocka_unit_test(test_encode_text_json),
		cmocka_unit_test(test_encode_kind4),
		cmocka_unit_test(test_encode_kind4_limits),
		cmocka_unit_test(test_user_broadcast_json),
		cmocka_unit_test(test_round_trip_text),
		cmocka_unit_test(test_round_trip_binary),
		cmocka_unit_test(test_binary_fail_zeroes_out),
		cmocka_unit_test(test_deinit_zeroed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
