/*
 * The logical replication decoder (src/store/pgoutput.h): every pgoutput
 * message kind, frames and status updates, every strict prefix of a message
 * refused, limits, and values converted as to_jsonb() does.
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
#include "store/pgoutput.h"

static void put16(struct rt_buf *b, uint16_t v)
{
	rt_buf_append_byte(b, (uint8_t)(v >> 8));
	rt_buf_append_byte(b, (uint8_t)v);
}

static void put32(struct rt_buf *b, uint32_t v)
{
	put16(b, (uint16_t)(v >> 16));
	put16(b, (uint16_t)v);
}

static void put64(struct rt_buf *b, uint64_t v)
{
	put32(b, (uint32_t)(v >> 32));
	put32(b, (uint32_t)v);
}

static void put_str(struct rt_buf *b, const char *s)
{
	rt_buf_append(b, s, strlen(s) + 1);
}

/* A tuple of values: NULL is null, "\x01" unchanged TOAST, else text. */
static void put_tuple(struct rt_buf *b, const char *const *vals, uint16_t n)
{
	put16(b, n);
	for (uint16_t i = 0; i < n; i++) {
		if (!vals[i]) {
			rt_buf_append_byte(b, 'n');
		} else if (!strcmp(vals[i], "\x01")) {
			rt_buf_append_byte(b, 'u');
		} else {
			rt_buf_append_byte(b, 't');
			put32(b, (uint32_t)strlen(vals[i]));
			rt_buf_append_str(b, vals[i]);
		}
	}
}

/* Decodes b whole; also checks that every strict prefix is refused. */
static void decode_ok(const struct rt_buf *b, struct rt_pgo_msg *m)
{
	for (size_t len = 0; len < b->len; len++) {
		struct rt_pgo_msg p;
		assert_int_not_equal(rt_pgo_decode((const uint8_t *)b->data, len, &p), 0);
		assert_null(p.columns);
		rt_pgo_msg_deinit(&p);
	}
	assert_int_equal(rt_pgo_decode((const uint8_t *)b->data, b->len, m), 0);
}

static void test_begin_commit_origin(void **state)
{
	struct rt_buf b;
	struct rt_pgo_msg m;
	rt_buf_init(&b);
	rt_buf_append_byte(&b, 'B');
	put64(&b, 0x1926E60);
	put64(&b, 700000000000000ULL);
	put32(&b, 742);
	decode_ok(&b, &m);
	assert_int_equal(m.kind, RT_PGO_BEGIN);
	assert_int_equal(m.lsn, 0x1926E60);
	assert_int_equal(m.commit_time, 700000000000000LL);
	assert_int_equal(m.xid, 742);
	rt_pgo_msg_deinit(&m);

	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'C');
	rt_buf_append_byte(&b, 0);
	put64(&b, 0x1926E60);
	put64(&b, 0x1926E90);
	put64(&b, 5);
	decode_ok(&b, &m);
	assert_int_equal(m.kind, RT_PGO_COMMIT);
	assert_int_equal(m.lsn, 0x1926E60);
	assert_int_equal(m.end_lsn, 0x1926E90);
	rt_pgo_msg_deinit(&m);

	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'O');
	put64(&b, 77);
	put_str(&b, "node_a");
	decode_ok(&b, &m);
	assert_string_equal(m.name, "node_a");
	rt_pgo_msg_deinit(&m);

	/* trailing bytes are an error */
	rt_buf_append_byte(&b, 0);
	assert_int_not_equal(rt_pgo_decode((const uint8_t *)b.data, b.len, &m), 0);
	rt_buf_deinit(&b);
}

static void test_relation_and_type(void **state)
{
	struct rt_buf b;
	struct rt_pgo_msg m;
	rt_buf_init(&b);
	rt_buf_append_byte(&b, 'R');
	put32(&b, 16384);
	put_str(&b, "public");
	put_str(&b, "todos");
	rt_buf_append_byte(&b, 'f');
	put16(&b, 2);
	rt_buf_append_byte(&b, 1);
	put_str(&b, "id");
	put32(&b, 20);
	put32(&b, 0xffffffff);
	rt_buf_append_byte(&b, 0);
	put_str(&b, "meta");
	put32(&b, 3802);
	put32(&b, 0xffffffff);
	decode_ok(&b, &m);
	assert_int_equal(m.relid, 16384);
	assert_string_equal(m.nspname, "public");
	assert_string_equal(m.name, "todos");
	assert_int_equal(m.replident, 'f');
	assert_int_equal(m.n_columns, 2);
	assert_true(m.columns[0].is_key);
	assert_false(m.columns[1].is_key);
	assert_string_equal(m.columns[1].name, "meta");
	assert_int_equal(m.columns[1].type_oid, 3802);
	assert_int_equal(m.columns[1].typmod, -1);
	rt_pgo_msg_deinit(&m);

	/* a name without its NUL */
	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'Y');
	put32(&b, 70000);
	put_str(&b, "public");
	rt_buf_append_str(&b, "mood");
	assert_int_not_equal(rt_pgo_decode((const uint8_t *)b.data, b.len, &m), 0);
	rt_buf_append_byte(&b, 0);
	decode_ok(&b, &m);
	assert_string_equal(m.name, "mood");
	rt_pgo_msg_deinit(&m);
	rt_buf_deinit(&b);
}

static void test_row_changes(void **state)
{
	struct rt_buf b;
	struct rt_pgo_msg m;
	rt_buf_init(&b);
	const char *const ins[] = {"1", NULL, "{\"a\": 1}"};
	rt_buf_append_byte(&b, 'I');
	put32(&b, 16384);
	rt_buf_append_byte(&b, 'N');
	put_tuple(&b, ins, 3);
	decode_ok(&b, &m);
	assert_int_equal(m.kind, RT_PGO_INSERT);
	assert_int_equal(m.new_tuple.n_cols, 3);
	assert_int_equal(m.new_tuple.cols[0].kind, 't');
	assert_memory_equal(m.new_tuple.cols[0].data, "1", 1);
	assert_int_equal(m.new_tuple.cols[1].kind, 'n');
	assert_int_equal(m.new_tuple.cols[2].len, 8);
	rt_pgo_msg_deinit(&m);

	const char *const old[] = {"1", "x", "\x01"};
	const char *const neu[] = {"1", "y", "\x01"};
	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'U');
	put32(&b, 16384);
	rt_buf_append_byte(&b, 'O');
	put_tuple(&b, old, 3);
	rt_buf_append_byte(&b, 'N');
	put_tuple(&b, neu, 3);
	decode_ok(&b, &m);
	assert_int_equal(m.old_kind, 'O');
	assert_int_equal(m.old_tuple.cols[2].kind, 'u');
	assert_int_equal(m.new_tuple.cols[2].kind, 'u');
	rt_pgo_msg_deinit(&m);

	/* an update without the old row */
	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'U');
	put32(&b, 16384);
	rt_buf_append_byte(&b, 'N');
	put_tuple(&b, neu, 3);
	decode_ok(&b, &m);
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.old_tuple.n_cols, 0);
	rt_pgo_msg_deinit(&m);

	const char *const key[] = {"1", NULL, NULL};
	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'D');
	put32(&b, 16384);
	rt_buf_append_byte(&b, 'K');
	put_tuple(&b, key, 3);
	decode_ok(&b, &m);
	assert_int_equal(m.kind, RT_PGO_DELETE);
	assert_int_equal(m.old_kind, 'K');
	rt_pgo_msg_deinit(&m);

	/* a delete needs K or O; an insert needs N */
	b.data[5] = 'N';
	assert_int_not_equal(rt_pgo_decode((const uint8_t *)b.data, b.len, &m), 0);
	b.data[0] = 'I';
	b.data[5] = 'K';
	assert_int_not_equal(rt_pgo_decode((const uint8_t *)b.data, b.len, &m), 0);

	/* a column count beyond what the bytes can hold */
	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'I');
	put32(&b, 1);
	rt_buf_append_byte(&b, 'N');
	put16(&b, 2000);
	for (int i = 0; i < 2000; i++)
		rt_buf_append_byte(&b, 'n');
	assert_int_not_equal(rt_pgo_decode((const uint8_t *)b.data, b.len, &m), 0);
	/* a value length beyond the message */
	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'I');
	put32(&b, 1);
	rt_buf_append_byte(&b, 'N');
	put16(&b, 1);
	rt_buf_append_byte(&b, 't');
	put32(&b, 0xffffffff);
	rt_buf_append_str(&b, "abc");
	assert_int_not_equal(rt_pgo_decode((const uint8_t *)b.data, b.len, &m), 0);
	rt_buf_deinit(&b);
}

static void test_truncate_and_message(void **state)
{
	struct rt_buf b;
	struct rt_pgo_msg m;
	rt_buf_init(&b);
	rt_buf_append_byte(&b, 'T');
	put32(&b, 2);
	rt_buf_append_byte(&b, 3);
	put32(&b, 16384);
	put32(&b, 16390);
	decode_ok(&b, &m);
	assert_int_equal(m.n_relids, 2);
	assert_int_equal(m.relids[1], 16390);
	assert_int_equal(m.truncate_options, 3);
	rt_pgo_msg_deinit(&m);
	/* a count the message cannot hold */
	b.data[4] = 200;
	assert_int_not_equal(rt_pgo_decode((const uint8_t *)b.data, b.len, &m), 0);

	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'M');
	rt_buf_append_byte(&b, 1);
	put64(&b, 5);
	put_str(&b, "prefix");
	put32(&b, 5);
	rt_buf_append_str(&b, "hello");
	decode_ok(&b, &m);
	assert_int_equal(m.content_len, 5);
	assert_memory_equal(m.content, "hello", 5);
	rt_pgo_msg_deinit(&m);

	uint8_t unknown[] = {'Z', 0, 0};
	assert_int_not_equal(rt_pgo_decode(unknown, sizeof unknown, &m), 0);
	rt_buf_deinit(&b);
}

static void test_frames(void **state)
{
	struct rt_buf b;
	struct rt_pgo_frame f;
	rt_buf_init(&b);
	rt_buf_append_byte(&b, 'w');
	put64(&b, 100);
	put64(&b, 200);
	put64(&b, 300);
	rt_buf_append_str(&b, "payload");
	assert_int_equal(rt_pgo_frame_parse((const uint8_t *)b.data, b.len, &f), 0);
	assert_int_equal(f.kind, RT_PGO_XLOGDATA);
	assert_int_equal(f.wal_start, 100);
	assert_int_equal(f.wal_end, 200);
	assert_int_equal(f.data_len, 7);
	assert_memory_equal(f.data, "payload", 7);
	assert_int_not_equal(rt_pgo_frame_parse((const uint8_t *)b.data, 20, &f), 0);

	rt_buf_reset(&b);
	rt_buf_append_byte(&b, 'k');
	put64(&b, 0x1234);
	put64(&b, 9);
	rt_buf_append_byte(&b, 1);
	assert_int_equal(rt_pgo_frame_parse((const uint8_t *)b.data, b.len, &f), 0);
	assert_int_equal(f.kind, RT_PGO_KEEPALIVE);
	assert_int_equal(f.wal_end, 0x1234);
	assert_true(f.wants_reply);
	rt_buf_append_byte(&b, 0);
	assert_int_not_equal(rt_pgo_frame_parse((const uint8_t *)b.data, b.len, &f), 0);
	assert_int_not_equal(rt_pgo_frame_parse((const uint8_t *)"x", 1, &f), 0);

	uint8_t st[34];
	rt_pgo_status_update(st, 0x0102030405060708ULL, 1, true);
	assert_int_equal(st[0], 'r');
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 8; i++)
			assert_int_equal(st[1 + 8 * k + i], i + 1);
	assert_int_equal(st[32], 1);
	assert_int_equal(st[33], 1);
	rt_buf_deinit(&b);
}

static void check_value(const char *type, const char *text, const char *json)
{
	json_t *v = rt_pgo_value_json(type, text, strlen(text));
	char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (strcmp(got, json))
		fail_msg("%s '%s': got %s, want %s", type, text, got, json);
	free(got);
	json_decref(v);
}

static void test_values(void **state)
{
	check_value("int2", "-32768", "-32768");
	check_value("int8", "9223372036854775807", "9223372036854775807");
	check_value("int4", "x", "\"x\"");
	check_value("numeric", "10", "10");
	check_value("numeric", "-1.5", "-1.5");
	check_value("numeric", "NaN", "\"NaN\"");
	check_value("numeric", "123456789012345678901234567890", "1.2345678901234568e29");
	check_value("float8", "Infinity", "\"Infinity\"");
	check_value("float8", "-Infinity", "\"-Infinity\"");
	check_value("float8", "2.5e-1", "0.25");
	check_value("bool", "t", "true");
	check_value("bool", "f", "false");
	check_value("jsonb", "{\"a\": [1, null]}", "{\"a\":[1,null]}");
	check_value("jsonb", "\"s\"", "\"s\"");
	check_value("json", "{broken", "\"{broken\"");
	check_value("jsonb", "{\"n\": 123456789012345678901234567890}", "{\"n\":1.2345678901234568e29}");
	check_value("timestamp", "2024-02-29 12:34:56.789", "\"2024-02-29T12:34:56.789\"");
	check_value("timestamptz", "2024-02-29 12:34:56+00", "\"2024-02-29T12:34:56+00:00\"");
	check_value("timestamptz", "2024-02-29 12:34:56-03:30", "\"2024-02-29T12:34:56-03:30\"");
	check_value("timestamptz", "infinity", "\"infinity\"");
	check_value("timetz", "12:00:00+02", "\"12:00:00+02:00\"");
	check_value("date", "2024-02-29", "\"2024-02-29\"");
	check_value("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		     "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
	check_value("bytea", "\\x00ff", "\"\\\\x00ff\"");
	check_value("_int4", "{1,NULL,3}", "[1,null,3]");
	check_value("_int4", "{}", "[]");
	check_value("_int4", "{{1,2},{3,4}}", "[[1,2],[3,4]]");
	check_value("_int4", "[0:1]={7,8}", "[7,8]");
	check_value("_text", "{\"a b\",\"c,d\",\"e\\\"f\",NULL,\"NULL\", g }",
		     "[\"a b\",\"c,d\",\"e\\\"f\",null,\"NULL\",\"g\"]");
	check_value("_jsonb", "{\"{\\\"x\\\": 1}\",\"[2]\"}", "[{\"x\":1},[2]]");
	check_value("_bool", "{t,f}", "[true,false]");
	check_value("_timestamptz", "{\"2024-01-01 00:00:00+00\"}", "[\"2024-01-01T00:00:00+00:00\"]");
	/* malformed arrays stay text */
	check_value("_int4", "{1,2", "\"{1,2\"");
	check_value("_int4", "{1,,2}", "\"{1,,2}\"");
	check_value("_int4", "{1}x", "\"{1}x\"");
	check_value("_int4", "{{{{{{{{{{1}}}}}}}}}}", "\"{{{{{{{{{{1}}}}}}}}}}\"");
	/* invalid UTF-8 in text is null, never a crash */
	check_value("text", "\xff\xfe", "null");
	json_t *v = rt_pgo_value_json("text", "a\0b", 3);
	assert_int_equal(json_string_length(v), 3);
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_begin_commit_origin),
		cmocka_unit_test(test_relation_and_type),
		cmocka_unit_test(test_row_changes),
		cmocka_unit_test(test_truncate_and_message),
		cmocka_unit_test(test_frames),
		cmocka_unit_test(test_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
