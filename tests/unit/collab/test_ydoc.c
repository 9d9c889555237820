/* Unit tests of the Yjs update codec (src/collab/ydoc.c). The vectors were
 * produced by yjs 13.6: six updates of one client (text inserts and a
 * delete, map sets, an array of Any values) and their Y.mergeUpdates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "collab/collab.h"
#include "common/err.h"

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;
	for (; h[0] && h[1]; h += 2) {
		unsigned v;
		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* Y.mergeUpdates of the history: the C merge writes the same bytes. */
static const char merged_hex[] =
	"010605000401017403616263c40500050101582801016d016b017d01880504017601016175027d017d0208"
	"010161027d01770178830507010101050200010302";

static void test_merged_roundtrip(void **state)
{
	uint8_t u[256], *added;
	size_t n = unhex(merged_hex, u), added_len;
	char err[128];
	struct rt_ydoc *d = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d, u, n, &added, &added_len, err, sizeof err), 0);
	assert_non_null(added);
	assert_int_equal(rt_ydoc_validate(d), 0);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_ydoc_encode(d, NULL, 0, false, &b);
	assert_int_equal(b.len, n);
	assert_memory_equal(b.data, u, n);
	/* the same again adds nothing */
	free(added);
	assert_int_equal(rt_ydoc_apply(d, u, n, &added, &added_len, err, sizeof err), 0);
	assert_null(added);
	assert_int_equal(added_len, 0);
	/* state vector: client 5 at clock 9 */
	rt_buf_reset(&b);
	rt_ydoc_state_vector(d, &b);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "\x01\x05\x09", 3);
	/* from its own state vector: nothing but the delete set */
	struct rt_buf diff;
	rt_buf_init(&diff);
	assert_int_equal(rt_ydoc_encode(d, (uint8_t *)b.data, b.len, false, &diff), 0);
	assert_int_equal((uint8_t)diff.data[0], 0);
	/* from clock 4: the structs at 4.. (the first sliced) */
	rt_buf_reset(&diff);
	assert_int_equal(rt_ydoc_encode(d, (const uint8_t *)"\x01\x05\x04", 3, false, &diff), 0);
	struct rt_ydoc *d2 = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d2, (uint8_t *)diff.data, diff.len, NULL, NULL, err, sizeof err), 0);
	rt_buf_reset(&b);
	rt_ydoc_state_vector(d2, &b);
	assert_int_equal(b.len, 1); /* clocks 4..9 only: no run from 0 */
	/* a malformed state vector */
	assert_int_equal(rt_ydoc_encode(d, (const uint8_t *)"\x02\x05", 2, false, &diff), RT_EPROTO);
	rt_buf_deinit(&diff);
	rt_buf_deinit(&b);
	rt_ydoc_free(d2);
	rt_ydoc_free(d);
}

/* Every strict prefix is refused and changes nothing. */
static void test_truncated(void **state)
{
	uint8_t u[256];
	size_t n = unhex(merged_hex, u);
	char err[128];
	struct rt_ydoc *d = rt_ydoc_new();
	for (size_t k = 0; k < n; k++) {
		uint8_t *copy = malloc(k ? k : 1);
		memcpy(copy, u, k);
		assert_int_equal(rt_ydoc_apply(d, copy, k, NULL, NULL, err, sizeof err), RT_EPROTO);
		assert_int_equal(rt_ydoc_count(d), 0);
		free(copy);
	}
	/* trailing bytes */
	u[n] = 0;
	assert_int_equal(rt_ydoc_apply(d, u, n + 1, NULL, NULL, err, sizeof err), RT_EPROTO);
	assert_non_null(strstr(err, "trailing"));
	rt_ydoc_free(d);
}

static void expect_refused(const char *hex, const char *why)
{
	uint8_t u[256];
	size_t n = unhex(hex, u);
	char err[128] = "";
	struct rt_ydoc *d = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d, u, n, NULL, NULL, err, sizeof err), RT_EPROTO);
	if (!strstr(err, why))
		fail_msg("%s: got '%s', want '%s'", hex, err, why);
	rt_ydoc_free(d);
}

static void test_hostile(void **state)
{
	expect_refused("010107000b01017400", "unknown content ref");
	expect_refused("0101070007010174ff0000", "unknown type ref");       /* type ref 127 */
	expect_refused("010107000401017402c3280000", "UTF-8");            /* bad continuation */
	expect_refused("010107000401017403eda08000", "UTF-8");           /* a surrogate */
	expect_refused("010107000801017401730000", "unknown Any type");     /* Any tag 0x73 */
	expect_refused("0101070005010174037b7b7b0000", "JSON");            /* embed "{{{" */
	expect_refused("0201070004010174016101070104010174016200", "twice");
	expect_refused("0101070084070901610000", "origin at or after");    /* origin (7,9) at clock 0 */
	expect_refused("0101070004010174000000", "empty struct");          /* "" */
	expect_refused("01010780808080808080800100", "2^53");              /* client too big */
	expect_refused("0101070001010174000000", "empty struct");          /* ContentDeleted(0) */
	/* a client count of 2^49 in 15 bytes: refused before anything is allocated */
	expect_refused("ffffffffffffff0002" "6b0232" "01026d", "truncated");
}

/* Deleted content is dropped with gc; the text run survives. */
static void test_gc(void **state)
{
	uint8_t u[256];
	size_t n = unhex(merged_hex, u);
	char err[128];
	struct rt_ydoc *d = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d, u, n, NULL, NULL, err, sizeof err), 0);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_ydoc_encode(d, NULL, 0, true, &b);
	/* 'a' (clock 0) and 'X' (3) and the first map value (5) lose their content */
	static const char want[] = "010705000101017401840500026263c105000501012101016d016b0188050401"
				   "7601016175027d017d0208010161027d01770178830507010101050200010302";
	uint8_t w[256];
	size_t wn = unhex(want, w);
	assert_int_equal(b.len, wn);
	assert_memory_equal(b.data, w, wn);
	/* and it decodes to the same state vector */
	struct rt_ydoc *d2 = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d2, (uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err), 0);
	struct rt_buf s1, s2;
	rt_buf_init(&s1);
	rt_buf_init(&s2);
	rt_ydoc_state_vector(d, &s1);
	rt_ydoc_state_vector(d2, &s2);
	assert_int_equal(s1.len, s2.len);
	assert_memory_equal(s1.data, s2.data, s1.len);
	rt_buf_deinit(&s1);
	rt_buf_deinit(&s2);
	rt_buf_deinit(&b);
	rt_ydoc_free(d2);
	rt_ydoc_free(d);
}

/* Random byte flips: refused or accepted, never broken invariants. */
static void test_flips(void **state)
{
	uint8_t u[256];
	size_t n = unhex(merged_hex, u);
	srand(7);
	for (int round = 0; round < 20000; round++) {
		uint8_t m[256];
		memcpy(m, u, n);
		for (int k = 1 + rand() % 3; k > 0; k--)
			m[rand() % n] = (uint8_t)rand();
		char err[128];
		struct rt_ydoc *d = rt_ydoc_new();
		int rc = rt_ydoc_apply(d, m, n, NULL, NULL, err, sizeof err);
		assert_true(rc == 0 || rc == RT_EPROTO);
		assert_int_equal(rt_ydoc_validate(d), 0);
		struct rt_buf b;
		rt_buf_init(&b);
		rt_ydoc_encode(d, NULL, 0, round & 1, &b);
		/* what it writes, it reads */
		struct rt_ydoc *d2 = rt_ydoc_new();
		assert_int_equal(rt_ydoc_apply(d2, (uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err), 0);
		rt_buf_deinit(&b);
		rt_ydoc_free(d2);
		rt_ydoc_free(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merged_roundtrip),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_gc),
		cmocka_unit_test(test_flips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
