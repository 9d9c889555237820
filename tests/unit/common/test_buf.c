/*
 * Byte buffers (src/common/buf.h): rt_buf growth and NUL termination, JSON
 * string escaping, and rt_frame reference counts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

/* The invariants every rt_buf keeps after an append. */
static void check_buf(const struct rt_buf *b)
{
	if (b->cap == 0) {
		assert_null(b->data);
		assert_int_equal(b->len, 0);
		return;
	}
	assert_non_null(b->data);
	assert_true(b->len < b->cap);
	assert_int_equal(b->data[b->len], '\0');
}

static void test_init_deinit(void **state)
{
	struct rt_buf b;
	memset(&b, 0x5a, sizeof b);
	rt_buf_init(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	rt_buf_deinit(&b); /* empty: nothing to free */
	rt_buf_append_str(&b, "x");
	rt_buf_deinit(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	rt_buf_deinit(&b);
}

static void test_growth(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	char want[5000];
	for (size_t i = 0; i < sizeof want; i++) {
		want[i] = (char)('a' + i % 26);
		size_t old_cap = b.cap;
		rt_buf_append_byte(&b, (uint8_t)want[i]);
		check_buf(&b);
		assert_int_equal(b.len, i + 1);
		assert_true(b.cap >= old_cap);
	}
	assert_memory_equal(b.data, want, sizeof want);

	/* Large appends in one go, bytes of every value, NULs included. */
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	for (int k = 0; k < 300; k++) {
		rt_buf_append(&b, all, sizeof all);
		check_buf(&b);
	}
	assert_int_equal(b.len, sizeof want + 300 * sizeof all);
	for (int k = 0; k < 300; k++)
		assert_memory_equal(b.data + sizeof want + (size_t)k * 256, all, 256);
	rt_buf_deinit(&b);
}

static void test_append_variants(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);

	/* An empty append still makes data a valid empty string. */
	rt_buf_append(&b, NULL, 0);
	check_buf(&b);
	assert_string_equal(b.data, "");

	rt_buf_append_str(&b, "abc");
	rt_buf_append(&b, "defXXX", 3);
	rt_buf_append_byte(&b, 0);
	rt_buf_append_byte(&b, 0xff);
	check_buf(&b);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "abcdef\0\xff", 8);

	rt_buf_reset(&b);
	rt_buf_printf(&b, "%d-%s-%05.1f", 42, "x", 3.14159);
	check_buf(&b);
	assert_string_equal(b.data, "42-x-003.1");
	rt_buf_printf(&b, "%s", ""); /* nothing to add */
	assert_string_equal(b.data, "42-x-003.1");

	/* printf output larger than the current capacity. */
	char big[3000];
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	rt_buf_printf(&b, "[%s]", big);
	check_buf(&b);
	assert_int_equal(b.len, 10 + 2 + sizeof big - 1);
	assert_int_equal(b.data[10], '[');
	assert_int_equal(b.data[b.len - 1], ']');
	rt_buf_deinit(&b);
}

static void test_reserve_reset(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "hello");
	rt_buf_reserve(&b, 10000);
	assert_true(b.cap >= b.len + 10000 + 1);
	assert_string_equal(b.data, "hello");

	/* Appends within the reservation do not move the data. */
	char *before = b.data;
	char chunk[1000];
	memset(chunk, 'q', sizeof chunk);
	for (int i = 0; i < 10; i++)
		rt_buf_append(&b, chunk, sizeof chunk);
	assert_ptr_equal(b.data, before);
	assert_int_equal(b.len, 10005);

	/* Reset keeps the memory and leaves an empty string. */
	size_t cap = b.cap;
	rt_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, cap);
	assert_ptr_equal(b.data, before);
	assert_string_equal(b.data, "");
	rt_buf_deinit(&b);

	/* Reset of a never-used buffer is harmless. */
	rt_buf_reset(&b);
	check_buf(&b);
}

static void test_detach(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "owned");
	size_t len = 0;
	char *d = rt_buf_detach(&b, &len);
	assert_int_equal(len, 5);
	assert_string_equal(d, "owned");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	free(d);

	/* The buffer is usable again; len may be NULL. */
	rt_buf_append_str(&b, "again");
	d = rt_buf_detach(&b, NULL);
	assert_string_equal(d, "again");
	free(d);
	assert_null(rt_buf_detach(&b, &len));
	assert_int_equal(len, 0);
}

/* Escapes s, checks the literal equals want and decodes back to s. */
static void check_json_str(const char *s, size_t s_len, const char *want)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_json_str(&b, s, s_len);
	check_buf(&b);
	assert_string_equal(b.data, want);

	json_error_t err;
	json_t *v = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (!v)
		print_error("not JSON: %s (%s)\n", b.data, err.text);
	assert_non_null(v);
	assert_true(json_is_string(v));
	assert_int_equal(json_string_length(v), s_len);
	assert_memory_equal(json_string_value(v), s, s_len);
	json_decref(v);
	rt_buf_deinit(&b);
}

static void test_json_str(void **state)
{
	check_json_str("", 0, "\"\"");
	check_json_str("plain", 5, "\"plain\"");
	check_json_str("a\"b", 3, "\"a\\\"b\"");
	check_json_str("back\\slash", 10, "\"back\\\\slash\"");
	check_json_str("\"\\\"", 3, "\"\\\"\\\\\\\"\"");
	check_json_str("/", 1, "\"/\"");
	check_json_str("\n\r\t\b\f", 5, "\"\\u000a\\u000d\\u0009\\u0008\\u000c\"");
	check_json_str("\x01\x1f", 2, "\"\\u0001\\u001f\"");
	check_json_str("a\0b", 3, "\"a\\u0000b\"");
	/* DEL and everything from 0x20 up pass through. */
	check_json_str("\x7f ~", 3, "\"\x7f ~\"");
	/* UTF-8 passes through unchanged. */
	check_json_str("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
		       "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");

	/* Every control character. */
	char ctl[32];
	char want[32 * 6 + 3];
	size_t n = 0;
	want[n++] = '"';
	for (int c = 0; c < 32; c++) {
		ctl[c] = (char)c;
		static const char hex[] = "0123456789abcdef";
		memcpy(want + n, "\\u00", 4);
		want[n + 4] = hex[c >> 4];
		want[n + 5] = hex[c & 15];
		n += 6;
	}
	want[n++] = '"';
	want[n] = '\0';
	check_json_str(ctl, sizeof ctl, want);

	/* Appends after what is there. */
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "{\"k\":");
	rt_buf_append_json_str(&b, "v", 1);
	rt_buf_append_byte(&b, '}');
	assert_string_equal(b.data, "{\"k\":\"v\"}");
	rt_buf_deinit(&b);
}

static void test_append_int(void **state)
{
	static const long long vals[] = {0, 7, -7, 10, -10, 1234567890123LL, LLONG_MAX, LLONG_MIN};
	struct rt_buf b;
	rt_buf_init(&b);
	for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
		char want[32];
		snprintf(want, sizeof want, "%lld", vals[i]);
		rt_buf_reset(&b);
		rt_buf_append_str(&b, "x=");
		rt_buf_append_int(&b, vals[i]);
		assert_string_equal(b.data + 2, want);
		assert_int_equal(b.len, 2 + strlen(want));
	}
	rt_buf_deinit(&b);
}

static void test_json_str_long(void **state)
{
	/* Growth in the middle of escaping. */
	size_t n = 10000;
	char *s = malloc(n);
	assert_non_null(s);
	for (size_t i = 0; i < n; i++)
		s[i] = "a\"\\\n\xc3\xa9"[i % 6];
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_json_str(&b, s, n);
	json_t *v = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
	assert_non_null(v);
	assert_int_equal(json_string_length(v), n);
	assert_memory_equal(json_string_value(v), s, n);
	json_decref(v);
	rt_buf_deinit(&b);
	free(s);
}

static void test_frame_refs(void **state)
{
	struct rt_frame *f = rt_frame_new(10);
	assert_non_null(f);
	assert_int_equal(f->len, 10);
	assert_int_equal(atomic_load(&f->refs), 1);
	memset(f->data, 'x', 10); /* the whole length is writable */

	assert_ptr_equal(rt_frame_ref(f), f);
	assert_ptr_equal(rt_frame_ref(f), f);
	assert_int_equal(atomic_load(&f->refs), 3);
	rt_frame_unref(f);
	rt_frame_unref(f);
	assert_int_equal(atomic_load(&f->refs), 1);
	rt_frame_unref(f); /* freed: ASan reports a leak otherwise */

	rt_frame_unref(NULL);

	struct rt_frame *c = rt_frame_copy("hello\0world", 11);
	assert_int_equal(c->len, 11);
	assert_memory_equal(c->data, "hello\0world", 11);
	assert_int_equal(atomic_load(&c->refs), 1);
	rt_frame_unref(c);

	struct rt_frame *e = rt_frame_copy(NULL, 0);
	assert_int_equal(e->len, 0);
	rt_frame_unref(e);
}

struct ref_worker {
	struct rt_frame *f;
	int rounds;
};

static void *ref_loop(void *arg)
{
	struct ref_worker *w = arg;
	for (int i = 0; i < w->rounds; i++) {
		rt_frame_ref(w->f);
		rt_frame_unref(w->f);
	}
	return NULL;
}

static void test_frame_refs_threads(void **state)
{
	/* Frames are shared across workers: counts must stay exact. */
	struct rt_frame *f = rt_frame_copy("shared", 6);
	enum { N = 4 };
	pthread_t t[N];
	struct ref_worker w = {f, 50000};
	for (int i = 0; i < N; i++)
		assert_int_equal(pthread_create(&t[i], NULL, ref_loop, &w), 0);
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&f->refs), 1);
	rt_frame_unref(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_deinit),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_append_variants),
		cmocka_unit_test(test_reserve_reset),
		cmocka_unit_test(test_detach),
		cmocka_unit_test(test_json_str),
		cmocka_unit_test(test_append_int),
		cmocka_unit_test(test_json_str_long),
		cmocka_unit_test(test_frame_refs),
		cmocka_unit_test(test_frame_refs_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
