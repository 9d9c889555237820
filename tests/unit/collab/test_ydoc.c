/* Unit tests of the Yjs update codec (src/collab/ydoc.c). The vectors were
 * produced by yjs 13.6: six updates of one client (text inserts and a
 * delete, map sets, an array of Any values) and their Y.mergeUpdates; two
 * clients editing concurrently (text inserts at one place, a format,
 * concurrent map sets, nested types); a map of 100 keys set, then deleted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "collab/collab.h"
#include "common/buf.h"
#include "common/err.h"

#define RT_TEST_TREE_ITEMS ((1u << 20) + 16) /* past RT_YDOC_TREE_MAX_ITEMS */

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
		/* what it writes, it reads; gc is stable; the JSON is JSON */
		struct rt_ydoc *d2 = rt_ydoc_new();
		assert_int_equal(rt_ydoc_apply(d2, (uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err), 0);
		if (round & 1) {
			struct rt_buf b2;
			rt_buf_init(&b2);
			rt_ydoc_encode(d2, NULL, 0, true, &b2);
			assert_int_equal(b2.len, b.len);
			assert_memory_equal(b2.data, b.data, b.len);
			rt_buf_deinit(&b2);
		}
		char *txt = rt_ydoc_json(round & 2 ? d2 : d, round & 4);
		assert_non_null(txt);
		json_error_t je;
		json_t *j = json_loads(txt, JSON_ALLOW_NUL, &je);
		/* valid JSON that jansson does not load: a key holding U+0000 */
		if (!j && !strstr(je.text, "NUL byte in object key"))
			fail_msg("not JSON (%s): %s", je.text, txt);
		json_decref(j);
		free(txt);
		rt_buf_deinit(&b);
		rt_ydoc_free(d2);
		rt_ydoc_free(d);
	}
}

/* Two clients (11 and 22): both insert at offset 5 of "hello world", 22
 * bolds "hello", both set m.k (22 wins), 11 nests a map with an array; an
 * array of Any values. yjs's toJSON() and toDelta() of it: */
static const char two_hex[] =
	"02041600c40b040b0503206d79460b0004626f6c640474727565c60b04160004626f6c64046e756c6c2801016d016b01"
	"7d02090b00040101740568656c6c6f840b040620776f726c64c40b040b050520646561722101016d016b012701016d06"
	"6e65737465640127000b11046c6973740008000b12037d01770374776f7e0801016103787c402000007601016f75017d"
	"01830b1801ff010b011001";
static const char two_json[] = "{\"t\":\"hello dear my world\",\"m\":{\"k\":2,\"nested\":{\"list\":[1,\"two\",null]}},\"a\":[true,2.5,{\"o\":[1]},\"/w==\"]}";
static const char two_delta[] = "[{\"insert\":\"hello dear\",\"attributes\":{\"bold\":true}},{\"insert\":\" my world\"}]";

static void assert_json(const char *got, const char *want)
{
	json_error_t e;
	json_t *g = json_loads(got, 0, &e), *w = json_loads(want, 0, &e);
	assert_non_null(g);
	assert_non_null(w);
	if (!json_equal(g, w))
		fail_msg("JSON\n got  %s\n want %s", got, want);
	json_decref(g);
	json_decref(w);
}

static void test_json(void **state)
{
	uint8_t *u = malloc(sizeof two_hex);
	size_t n = unhex(two_hex, u);
	char err[128];
	struct rt_ydoc *d = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d, u, n, NULL, NULL, err, sizeof err), 0);
	char *txt = rt_ydoc_json(d, false);
	assert_json(txt, two_json);
	free(txt);
	txt = rt_ydoc_json(d, true);
	json_error_t e;
	json_t *o = json_loads(txt, 0, &e), *want = json_loads(two_delta, 0, &e);
	assert_true(json_equal(json_object_get(o, "t"), want));
	json_decref(o);
	json_decref(want);
	free(txt);
	/* fed byte by byte as separate documents' prefixes: refused or JSON */
	for (size_t k = 0; k < n; k++) {
		struct rt_ydoc *p = rt_ydoc_new();
		if (!rt_ydoc_apply(p, u, k, NULL, NULL, err, sizeof err)) {
			txt = rt_ydoc_json(p, k & 1);
			json_t *j = json_loads(txt, 0, &e);
			assert_non_null(j);
			json_decref(j);
			free(txt);
		}
		rt_ydoc_free(p);
	}
	/* a copy reads the same and outlives the original */
	struct rt_ydoc *c = rt_ydoc_copy(d);
	rt_ydoc_free(d);
	txt = rt_ydoc_json(c, false);
	assert_json(txt, two_json);
	free(txt);
	rt_ydoc_free(c);
	free(u);
}

/* Client 33 sets m.big to a map of 100 keys and m.keep, then deletes m.big:
 * its children collapse to GC structs (yjs's own state is 35 bytes). */
static const char deleted_map_hex[] =
	"016621002701016d036269670128002100056b65792d300177256120666169726c79206c6f6e672076616c756520746f"
	"20626520636f6c6c6563746564203028002100056b65792d310177256120666169726c79206c6f6e672076616c756520"
	"746f20626520636f6c6c6563746564203128002100056b65792d320177256120666169726c79206c6f6e672076616c75"
	"6520746f20626520636f6c6c6563746564203228002100056b65792d330177256120666169726c79206c6f6e67207661"
	"6c756520746f20626520636f6c6c6563746564203328002100056b65792d340177256120666169726c79206c6f6e6720"
	"76616c756520746f20626520636f6c6c6563746564203428002100056b65792d350177256120666169726c79206c6f6e"
	"672076616c756520746f20626520636f6c6c6563746564203528002100056b65792d360177256120666169726c79206c"
	"6f6e672076616c756520746f20626520636f6c6c6563746564203628002100056b65792d370177256120666169726c79"
	"206c6f6e672076616c756520746f20626520636f6c6c6563746564203728002100056b65792d38017725612066616972"
	"6c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203828002100056b65792d3901772561206661"
	"69726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203928002100066b65792d313001772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420313028002100066b65792d3131"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420313128002100066b65"
	"792d31320177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203132280021"
	"00066b65792d31330177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642031"
	"3328002100066b65792d31340177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420313428002100066b65792d31350177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c656374656420313528002100066b65792d31360177266120666169726c79206c6f6e672076616c756520746f206265"
	"20636f6c6c656374656420313628002100066b65792d31370177266120666169726c79206c6f6e672076616c75652074"
	"6f20626520636f6c6c656374656420313728002100066b65792d31380177266120666169726c79206c6f6e672076616c"
	"756520746f20626520636f6c6c656374656420313828002100066b65792d31390177266120666169726c79206c6f6e67"
	"2076616c756520746f20626520636f6c6c656374656420313928002100066b65792d32300177266120666169726c7920"
	"6c6f6e672076616c756520746f20626520636f6c6c656374656420323028002100066b65792d32310177266120666169"
	"726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420323128002100066b65792d323201772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420323228002100066b65792d3233"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420323328002100066b65"
	"792d32340177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203234280021"
	"00066b65792d32350177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642032"
	"3528002100066b65792d32360177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420323628002100066b65792d32370177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c656374656420323728002100066b65792d32380177266120666169726c79206c6f6e672076616c756520746f206265"
	"20636f6c6c656374656420323828002100066b65792d32390177266120666169726c79206c6f6e672076616c75652074"
	"6f20626520636f6c6c656374656420323928002100066b65792d33300177266120666169726c79206c6f6e672076616c"
	"756520746f20626520636f6c6c656374656420333028002100066b65792d33310177266120666169726c79206c6f6e67"
	"2076616c756520746f20626520636f6c6c656374656420333128002100066b65792d33320177266120666169726c7920"
	"6c6f6e672076616c756520746f20626520636f6c6c656374656420333228002100066b65792d33330177266120666169"
	"726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420333328002100066b65792d333401772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420333428002100066b65792d3335"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420333528002100066b65"
	"792d33360177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203336280021"
	"00066b65792d33370177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642033"
	"3728002100066b65792d33380177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420333828002100066b65792d33390177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c656374656420333928002100066b65792d34300177266120666169726c79206c6f6e672076616c756520746f206265"
	"20636f6c6c656374656420343028002100066b65792d34310177266120666169726c79206c6f6e672076616c75652074"
	"6f20626520636f6c6c656374656420343128002100066b65792d34320177266120666169726c79206c6f6e672076616c"
	"756520746f20626520636f6c6c656374656420343228002100066b65792d34330177266120666169726c79206c6f6e67"
	"2076616c756520746f20626520636f6c6c656374656420343328002100066b65792d34340177266120666169726c7920"
	"6c6f6e672076616c756520746f20626520636f6c6c656374656420343428002100066b65792d34350177266120666169"
	"726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420343528002100066b65792d343601772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420343628002100066b65792d3437"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420343728002100066b65"
	"792d34380177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203438280021"
	"00066b65792d34390177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642034"
	"3928002100066b65792d35300177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420353028002100066b65792d35310177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c656374656420353128002100066b65792d35320177266120666169726c79206c6f6e672076616c756520746f206265"
	"20636f6c6c656374656420353228002100066b65792d35330177266120666169726c79206c6f6e672076616c75652074"
	"6f20626520636f6c6c656374656420353328002100066b65792d35340177266120666169726c79206c6f6e672076616c"
	"756520746f20626520636f6c6c656374656420353428002100066b65792d35350177266120666169726c79206c6f6e67"
	"2076616c756520746f20626520636f6c6c656374656420353528002100066b65792d35360177266120666169726c7920"
	"6c6f6e672076616c756520746f20626520636f6c6c656374656420353628002100066b65792d35370177266120666169"
	"726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420353728002100066b65792d353801772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420353828002100066b65792d3539"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420353928002100066b65"
	"792d36300177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203630280021"
	"00066b65792d36310177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642036"
	"3128002100066b65792d36320177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420363228002100066b65792d36330177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c656374656420363328002100066b65792d36340177266120666169726c79206c6f6e672076616c756520746f206265"
	"20636f6c6c656374656420363428002100066b65792d36350177266120666169726c79206c6f6e672076616c75652074"
	"6f20626520636f6c6c656374656420363528002100066b65792d36360177266120666169726c79206c6f6e672076616c"
	"756520746f20626520636f6c6c656374656420363628002100066b65792d36370177266120666169726c79206c6f6e67"
	"2076616c756520746f20626520636f6c6c656374656420363728002100066b65792d36380177266120666169726c7920"
	"6c6f6e672076616c756520746f20626520636f6c6c656374656420363828002100066b65792d36390177266120666169"
	"726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420363928002100066b65792d373001772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420373028002100066b65792d3731"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420373128002100066b65"
	"792d37320177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203732280021"
	"00066b65792d37330177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642037"
	"3328002100066b65792d37340177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420373428002100066b65792d37350177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c656374656420373528002100066b65792d37360177266120666169726c79206c6f6e672076616c756520746f206265"
	"20636f6c6c656374656420373628002100066b65792d37370177266120666169726c79206c6f6e672076616c75652074"
	"6f20626520636f6c6c656374656420373728002100066b65792d37380177266120666169726c79206c6f6e672076616c"
	"756520746f20626520636f6c6c656374656420373828002100066b65792d37390177266120666169726c79206c6f6e67"
	"2076616c756520746f20626520636f6c6c656374656420373928002100066b65792d38300177266120666169726c7920"
	"6c6f6e672076616c756520746f20626520636f6c6c656374656420383028002100066b65792d38310177266120666169"
	"726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420383128002100066b65792d383201772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420383228002100066b65792d3833"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420383328002100066b65"
	"792d38340177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203834280021"
	"00066b65792d38350177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642038"
	"3528002100066b65792d38360177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420383628002100066b65792d38370177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c656374656420383728002100066b65792d38380177266120666169726c79206c6f6e672076616c756520746f206265"
	"20636f6c6c656374656420383828002100066b65792d38390177266120666169726c79206c6f6e672076616c75652074"
	"6f20626520636f6c6c656374656420383928002100066b65792d39300177266120666169726c79206c6f6e672076616c"
	"756520746f20626520636f6c6c656374656420393028002100066b65792d39310177266120666169726c79206c6f6e67"
	"2076616c756520746f20626520636f6c6c656374656420393128002100066b65792d39320177266120666169726c7920"
	"6c6f6e672076616c756520746f20626520636f6c6c656374656420393228002100066b65792d39330177266120666169"
	"726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420393328002100066b65792d393401772661"
	"20666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420393428002100066b65792d3935"
	"0177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374656420393528002100066b65"
	"792d39360177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c6563746564203936280021"
	"00066b65792d39370177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c65637465642039"
	"3728002100066b65792d39380177266120666169726c79206c6f6e672076616c756520746f20626520636f6c6c656374"
	"656420393828002100066b65792d39390177266120666169726c79206c6f6e672076616c756520746f20626520636f6c"
	"6c65637465642039392801016d046b6565700177037965730121010065";

static void test_gc_deleted_type(void **state)
{
	uint8_t *u = malloc(sizeof deleted_map_hex);
	size_t n = unhex(deleted_map_hex, u);
	char err[128];
	struct rt_ydoc *d = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d, u, n, NULL, NULL, err, sizeof err), 0);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_ydoc_encode(d, NULL, 0, true, &b);
	assert_true(b.len <= 40); /* the map item, one GC range, keep, the delete set */
	struct rt_ydoc *g = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(g, (uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err), 0);
	char *txt = rt_ydoc_json(g, false);
	assert_json(txt, "{\"m\":{\"keep\":\"yes\"}}");
	free(txt);
	txt = rt_ydoc_json(d, false);
	assert_json(txt, "{\"m\":{\"keep\":\"yes\"}}");
	free(txt);
	/* stable: gc of the gc'd state is the same bytes */
	struct rt_buf b2;
	rt_buf_init(&b2);
	rt_ydoc_encode(g, NULL, 0, true, &b2);
	assert_int_equal(b2.len, b.len);
	assert_memory_equal(b2.data, b.data, b.len);
	rt_buf_deinit(&b2);
	rt_buf_deinit(&b);
	rt_ydoc_free(g);
	rt_ydoc_free(d);
	free(u);
}

static void put_varuint(struct rt_buf *b, uint64_t v)
{
	do {
		uint8_t x = v & 0x7f;
		v >>= 7;
		rt_buf_append_byte(b, v ? (x | 0x80) : x);
	} while (v);
}

/* 20,000 clients insert at one place (origin 1:0): YATA's scans would be
 * quadratic; the tree gives up within its budget, JSON says so (NULL), gc
 * still writes a state that reads back. */
static void test_tree_budget(void **state)
{
	enum { N = 20000 };
	struct rt_buf u;
	rt_buf_init(&u);
	put_varuint(&u, N + 1);
	put_varuint(&u, 1); /* client 1: one item in root "a" */
	put_varuint(&u, 1);
	put_varuint(&u, 0);
	rt_buf_append(&u, "\x08\x01\x01" "a" "\x01\x78", 6);
	for (uint64_t c = 2; c < N + 2; c++) {
		put_varuint(&u, 1);
		put_varuint(&u, c);
		put_varuint(&u, 0);
		rt_buf_append(&u, "\x88\x01\x00\x01\x78", 5); /* origin 1:0, Any [true] */
	}
	put_varuint(&u, 0);
	char err[128];
	struct rt_ydoc *d = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d, (uint8_t *)u.data, u.len, NULL, NULL, err, sizeof err), 0);
	assert_null(rt_ydoc_json(d, false));
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_ydoc_encode(d, NULL, 0, true, &b), 0);
	struct rt_ydoc *g = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(g, (uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err), 0);
	rt_ydoc_free(g);
	rt_buf_deinit(&b);
	rt_buf_deinit(&u);
	rt_ydoc_free(d);
}

/* A document of more items than a tree integrates: no JSON, gc by the
 * delete set alone (what it writes reads back, deleted content dropped). */
static void test_tree_too_big(void **state)
{
	enum { N = RT_TEST_TREE_ITEMS };
	struct rt_buf u;
	rt_buf_init(&u);
	put_varuint(&u, 1);
	put_varuint(&u, N);
	put_varuint(&u, 5);
	put_varuint(&u, 0);
	rt_buf_append(&u, "\x08\x01\x01" "a" "\x01\x78", 6);
	for (uint64_t c = 1; c < N; c++) {
		rt_buf_append(&u, "\x88\x05", 2); /* origin 5:c-1, Any [true] */
		put_varuint(&u, c - 1);
		rt_buf_append(&u, "\x01\x78", 2);
	}
	put_varuint(&u, 1); /* the first half deleted */
	put_varuint(&u, 5);
	put_varuint(&u, 1);
	put_varuint(&u, 0);
	put_varuint(&u, N / 2);
	char err[128];
	struct rt_ydoc *d = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(d, (uint8_t *)u.data, u.len, NULL, NULL, err, sizeof err), 0);
	assert_null(rt_ydoc_json(d, false));
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_ydoc_encode(d, NULL, 0, true, &b), 0);
	assert_true(b.len < u.len);
	struct rt_ydoc *g = rt_ydoc_new();
	assert_int_equal(rt_ydoc_apply(g, (uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err), 0);
	rt_ydoc_free(g);
	rt_buf_deinit(&b);
	rt_buf_deinit(&u);
	rt_ydoc_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merged_roundtrip),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_gc),
		cmocka_unit_test(test_flips),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_gc_deleted_type),
		cmocka_unit_test(test_tree_budget),
		cmocka_unit_test(test_tree_too_big),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
