/*
 * A live query's local copy (src/client/livecopy.c): results, enter, leave,
 * move and change at every index, aggregate groups, random diffs checked
 * against a model that applies them the way docs/live.md says, inconsistent
 * and malformed entries refused with the copy unchanged, random garbage
 * shapes, message envelopes, and every allocation failing in turn.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/livecopy.h"
#include "rtsync/err.h"

static json_t *j(const char *txt)
{
	json_error_t e;
	json_t *v = json_loads(txt, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!v)
		fail_msg("bad test JSON %s: %s", txt, e.text);
	return v;
}

static char *text(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(s);
	return s;
}

/* Applies entry (JSON text); returns the code and checks the invariants. */
static int apply(struct rt_livecopy *lc, const char *entry)
{
	json_t *e = j(entry);
	char err[256];
	int rc = rt_livecopy_apply(lc, e, err, sizeof err);
	json_decref(e);
	assert_int_equal(rt_livecopy_validate(lc), 0);
	if (rc)
		assert_true(err[0] != 0); /* every refusal says why */
	return rc;
}

/* The copy's rows as compact text equals want. */
static void assert_rows(const struct rt_livecopy *lc, const char *want)
{
	char *got = text(lc->rows);
	if (strcmp(got, want))
		fail_msg("rows %s, want %s", got, want);
	free(got);
}

static void assert_keys(const struct rt_livecopy *lc, const char *want)
{
	char *got = text(lc->keys);
	if (strcmp(got, want))
		fail_msg("keys %s, want %s", got, want);
	free(got);
}

/* A window result of rows {"id":k} for ids 1..n (keys "[k]"). */
static void result_of(struct rt_livecopy *lc, int n)
{
	char buf[4096];
	int at = snprintf(buf, sizeof buf, "{\"id\":\"w\",\"kind\":\"result\",\"keys\":[");
	for (int i = 1; i <= n; i++)
		at += snprintf(buf + at, sizeof buf - (size_t)at, "%s\"[%d]\"", i > 1 ? "," : "",
			       i);
	at += snprintf(buf + at, sizeof buf - (size_t)at, "],\"rows\":[");
	for (int i = 1; i <= n; i++)
		at += snprintf(buf + at, sizeof buf - (size_t)at, "%s{\"id\":%d}", i > 1 ? "," : "",
			       i);
	snprintf(buf + at, sizeof buf - (size_t)at, "]}");
	assert_int_equal(apply(lc, buf), 0);
	assert_int_equal(rt_livecopy_count(lc), (size_t)n);
}

/* The ids of the copy's rows, joined by ',' (each row's "id"). */
static void ids_of(const struct rt_livecopy *lc, char *out, size_t cap)
{
	size_t at = 0;
	out[0] = 0;
	for (size_t i = 0; i < json_array_size(lc->rows); i++) {
		json_t *r = json_array_get(lc->rows, i);
		at += (size_t)snprintf(out + at, cap - at, "%s%lld", i ? "," : "",
				       (long long)json_integer_value(json_object_get(r, "id")));
		/* every key matches its row */
		char k[32];
		snprintf(k, sizeof k, "[%lld]",
			 (long long)json_integer_value(json_object_get(r, "id")));
		assert_string_equal(json_string_value(json_array_get(lc->keys, i)), k);
	}
}

static void test_result(void **state)
{
	(void)state;
	struct rt_livecopy lc;
	rt_livecopy_init(&lc, NULL);
	assert_false(rt_livecopy_has_result(&lc));
	assert_int_equal(rt_livecopy_validate(&lc), 0);
	assert_int_equal(apply(&lc, "{\"kind\":\"result\",\"keys\":[],\"rows\":[]}"), 0);
	assert_true(rt_livecopy_has_result(&lc));
	assert_int_equal(rt_livecopy_count(&lc), 0);
	assert_int_equal(
		apply(&lc, "{\"id\":\"open\",\"kind\":\"result\",\"keys\":[\"[17]\",\"[9]\"],"
			   "\"rows\":[{\"id\":17,\"guest\":\"Ada\"},{\"id\":9,\"guest\":\"Bo\"}]}"),
		0);
	assert_rows(&lc, "[{\"id\":17,\"guest\":\"Ada\"},{\"id\":9,\"guest\":\"Bo\"}]");
	/* a resync result replaces it whole */
	assert_int_equal(apply(&lc, "{\"kind\":\"result\",\"resync\":true,\"keys\":[\"[1]\"],"
				    "\"rows\":[{\"id\":1}]}"),
			 0);
	assert_rows(&lc, "[{\"id\":1}]");
	/* the example of docs/live.md */
	assert_int_equal(
		apply(&lc, "{\"kind\":\"result\",\"keys\":[\"[17]\",\"[9]\"],"
			   "\"rows\":[{\"id\":17,\"guest\":\"Ada\"},{\"id\":9,\"guest\":\"Bo\"}]}"),
		0);
	assert_int_equal(apply(&lc, "{\"id\":\"open\",\"kind\":\"diff\",\"ops\":["
				    "{\"op\":\"leave\",\"key\":\"[9]\"},"
				    "{\"op\":\"enter\",\"key\":\"[21]\",\"index\":0,\"row\":{"
				    "\"id\":21,\"guest\":\"Cy\"}},"
				    "{\"op\":\"change\",\"key\":\"[17]\",\"row\":{\"id\":17,"
				    "\"guest\":\"Ada L.\"}}]}"),
			 0);
	assert_rows(&lc, "[{\"id\":21,\"guest\":\"Cy\"},{\"id\":17,\"guest\":\"Ada L.\"}]");
	assert_keys(&lc, "[\"[21]\",\"[17]\"]");
	rt_livecopy_reset(&lc);
	assert_false(rt_livecopy_has_result(&lc));
	rt_livecopy_deinit(&lc);
}

static void test_enter_every_index(void **state)
{
	(void)state;
	for (int n = 0; n <= 5; n++) {
		for (int at = 0; at <= n; at++) {
			struct rt_livecopy lc;
			rt_livecopy_init(&lc, NULL);
			result_of(&lc, n);
			char d[256], want[256] = "", ids[256];
			snprintf(d, sizeof d,
				 "{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[99]\","
				 "\"index\":%d,\"row\":{\"id\":99}}]}",
				 at);
			assert_int_equal(apply(&lc, d), 0);
			size_t w = 0;
			for (int i = 0, id = 1; i <= n; i++)
				w += (size_t)snprintf(want + w, sizeof want - w, "%s%d",
						      i ? "," : "", i == at ? 99 : id++);
			ids_of(&lc, ids, sizeof ids);
			assert_string_equal(ids, want);
			/* one past the end of the new result is refused */
			snprintf(d, sizeof d,
				 "{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[98]\","
				 "\"index\":%d,\"row\":{\"id\":98}}]}",
				 n + 2);
			assert_int_equal(apply(&lc, d), RT_EPROTO);
			ids_of(&lc, ids, sizeof ids);
			assert_string_equal(ids, want);
			rt_livecopy_deinit(&lc);
		}
	}
}

static void test_leave_and_change_every_index(void **state)
{
	(void)state;
	for (int n = 1; n <= 5; n++) {
		for (int k = 1; k <= n; k++) {
			struct rt_livecopy lc;
			rt_livecopy_init(&lc, NULL);
			result_of(&lc, n);
			char d[256], want[256] = "", ids[256];
			snprintf(d, sizeof d,
				 "{\"kind\":\"diff\",\"ops\":[{\"op\":\"change\",\"key\":\"[%d]\","
				 "\"row\":{\"id\":%d,\"x\":true}}]}",
				 k, k);
			assert_int_equal(apply(&lc, d), 0);
			json_t *r = json_array_get(lc.rows, (size_t)k - 1);
			assert_true(json_is_true(json_object_get(r, "x")));
			assert_int_equal(rt_livecopy_count(&lc), (size_t)n);
			snprintf(
				d, sizeof d,
				"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[%d]\"}]}",
				k);
			assert_int_equal(apply(&lc, d), 0);
			size_t w = 0;
			for (int id = 1, i = 0; id <= n; id++)
				if (id != k)
					w += (size_t)snprintf(want + w, sizeof want - w, "%s%d",
							      i++ ? "," : "", id);
			ids_of(&lc, ids, sizeof ids);
			assert_string_equal(ids, want);
			/* leaving again: the key is no longer there */
			assert_int_equal(apply(&lc, d), RT_EPROTO);
			rt_livecopy_deinit(&lc);
		}
	}
}

static void test_move_every_index(void **state)
{
	(void)state;
	const int n = 5;
	for (int from = 1; from <= n; from++) {
		for (int to = 0; to < n; to++) {
			struct rt_livecopy lc;
			rt_livecopy_init(&lc, NULL);
			result_of(&lc, n);
			char d[256], want[256] = "", ids[256];
			snprintf(d, sizeof d,
				 "{\"kind\":\"diff\",\"ops\":[{\"op\":\"move\",\"key\":\"[%d]\","
				 "\"index\":%d,\"row\":{\"id\":%d}}]}",
				 from, to, from);
			assert_int_equal(apply(&lc, d), 0);
			int order[8], m = 0;
			for (int id = 1; id <= n; id++)
				if (id != from)
					order[m++] = id;
			memmove(order + to + 1, order + to, (size_t)(m - to) * sizeof *order);
			order[to] = from;
			size_t w = 0;
			for (int i = 0; i < n; i++)
				w += (size_t)snprintf(want + w, sizeof want - w, "%s%d",
						      i ? "," : "", order[i]);
			ids_of(&lc, ids, sizeof ids);
			assert_string_equal(ids, want);
			/* a move to an index past the result */
			snprintf(d, sizeof d,
				 "{\"kind\":\"diff\",\"ops\":[{\"op\":\"move\",\"key\":\"[%d]\","
				 "\"index\":%d,\"row\":{\"id\":%d}}]}",
				 from, n, from);
			assert_int_equal(apply(&lc, d), RT_EPROTO);
			ids_of(&lc, ids, sizeof ids);
			assert_string_equal(ids, want);
			rt_livecopy_deinit(&lc);
		}
	}
}

static void test_aggregate_groups(void **state)
{
	(void)state;
	struct rt_livecopy lc;
	rt_livecopy_init(&lc, NULL);
	/* the whole table as one group, present even when empty */
	assert_int_equal(apply(&lc, "{\"kind\":\"result\",\"keys\":[\"[]\"],"
				    "\"rows\":[{\"count\":0,\"total\":null}]}"),
			 0);
	assert_int_equal(apply(&lc, "{\"kind\":\"diff\",\"ops\":[{\"op\":\"change\",\"key\":\"[]\","
				    "\"row\":{\"count\":1,\"total\":7}}]}"),
			 0);
	assert_rows(&lc, "[{\"count\":1,\"total\":7}]");
	/* groups by property: one appears, one changes, one disappears */
	assert_int_equal(
		apply(&lc,
		      "{\"kind\":\"result\",\"keys\":[\"[\\\"p1\\\"]\",\"[\\\"p3\\\"]\"],"
		      "\"rows\":[{\"property\":\"p1\",\"n\":2},{\"property\":\"p3\",\"n\":1}]}"),
		0);
	assert_int_equal(apply(&lc, "{\"kind\":\"diff\",\"ops\":["
				    "{\"op\":\"leave\",\"key\":\"[\\\"p3\\\"]\"},"
				    "{\"op\":\"enter\",\"key\":\"[\\\"p2\\\"]\",\"index\":1,"
				    "\"row\":{\"property\":\"p2\",\"n\":5}},"
				    "{\"op\":\"change\",\"key\":\"[\\\"p1\\\"]\",\"row\":{"
				    "\"property\":\"p1\",\"n\":3}}]}"),
			 0);
	assert_rows(&lc, "[{\"property\":\"p1\",\"n\":3},{\"property\":\"p2\",\"n\":5}]");
	assert_keys(&lc, "[\"[\\\"p1\\\"]\",\"[\\\"p2\\\"]\"]");
	/* a group ordered by its value moves to the front */
	assert_int_equal(
		apply(&lc, "{\"kind\":\"diff\",\"ops\":[{\"op\":\"move\",\"key\":\"[\\\"p2\\\"]\","
			   "\"index\":0,\"row\":{\"property\":\"p2\",\"n\":6}}]}"),
		0);
	assert_rows(&lc, "[{\"property\":\"p2\",\"n\":6},{\"property\":\"p1\",\"n\":3}]");
	/* a change of an unknown group */
	assert_int_equal(
		apply(&lc,
		      "{\"kind\":\"diff\",\"ops\":[{\"op\":\"change\",\"key\":\"[\\\"p9\\\"]\","
		      "\"row\":{\"property\":\"p9\",\"n\":1}}]}"),
		RT_EPROTO);
	assert_rows(&lc, "[{\"property\":\"p2\",\"n\":6},{\"property\":\"p1\",\"n\":3}]");
	rt_livecopy_deinit(&lc);
}

/* Entries that must be refused, each against a copy of ids 1..3; the copy
 * must stay as it was. */
static void test_inconsistent_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		/* kinds and shapes */
		"{}",
		"[]",
		"{\"kind\":\"nope\"}",
		"{\"kind\":7}",
		"{\"kind\":\"diff\"}",
		"{\"kind\":\"diff\",\"ops\":{}}",
		"{\"kind\":\"diff\",\"ops\":[7]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"jump\",\"key\":\"[1]\"}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\"}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":1}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"\"}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[\\u00001]\"}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"change\",\"key\":\"[1]\"}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"change\",\"key\":\"[1]\",\"row\":[1]}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"row\":{\"id\":7}}]"
		"}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"index\":\"0\","
		"\"row\":{\"id\":7}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"index\":1.0,"
		"\"row\":{\"id\":7}}]}",
		"{\"kind\":\"result\",\"keys\":[\"[1]\"]}",
		"{\"kind\":\"result\",\"keys\":[\"[1]\"],\"rows\":[]}",
		"{\"kind\":\"result\",\"keys\":[\"[1]\",\"[1]\"],\"rows\":[{},{}]}",
		"{\"kind\":\"result\",\"keys\":[1],\"rows\":[{}]}",
		"{\"kind\":\"result\",\"keys\":[\"[1]\"],\"rows\":[null]}",
		"{\"kind\":\"result\",\"keys\":[],\"rows\":[],\"resync\":1}",
		/* unknown keys, known keys entering */
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[7]\"}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"change\",\"key\":\"[7]\",\"row\":{\"id\":7}}"
		"]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"move\",\"key\":\"[7]\",\"index\":0,\"row\":{"
		"\"id\":7}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[2]\",\"index\":0,\"row\":"
		"{\"id\":2}}]}",
		/* indexes out of range, taken twice */
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"index\":-1,"
		"\"row\":{\"id\":7}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"index\":4,\"row\":"
		"{\"id\":7}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"index\":"
		"9223372036854775807,\"row\":{\"id\":7}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[1]\"},"
		"{\"op\":\"enter\",\"key\":\"[7]\",\"index\":3,\"row\":{\"id\":7}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"index\":1,\"row\":"
		"{\"id\":7}},"
		"{\"op\":\"enter\",\"key\":\"[8]\",\"index\":1,\"row\":{\"id\":8}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"move\",\"key\":\"[1]\",\"index\":2,\"row\":{"
		"\"id\":1}},"
		"{\"op\":\"move\",\"key\":\"[2]\",\"index\":2,\"row\":{\"id\":2}}]}",
		/* two ops for one key */
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[1]\"},{\"op\":\"leave\","
		"\"key\":\"[1]\"}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[1]\"},"
		"{\"op\":\"change\",\"key\":\"[1]\",\"row\":{\"id\":1}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[7]\",\"index\":0,\"row\":"
		"{\"id\":7}},"
		"{\"op\":\"change\",\"key\":\"[7]\",\"row\":{\"id\":7}}]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct rt_livecopy lc;
		rt_livecopy_init(&lc, NULL);
		result_of(&lc, 3);
		int rc = apply(&lc, bad[i]);
		if (rc != RT_EPROTO)
			fail_msg("entry %zu (%s): %d, not RT_EPROTO", i, bad[i], rc);
		char ids[64];
		ids_of(&lc, ids, sizeof ids);
		assert_string_equal(ids, "1,2,3");
		rt_livecopy_deinit(&lc);
	}
	/* a diff before any result */
	struct rt_livecopy lc;
	rt_livecopy_init(&lc, NULL);
	assert_int_equal(apply(&lc, "{\"kind\":\"diff\",\"ops\":[]}"), RT_EPROTO);
	assert_false(rt_livecopy_has_result(&lc));
	rt_livecopy_deinit(&lc);
}

/* ---- random diffs against a model ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static size_t below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

#define MAXN 40

/* A random new list from old (ids), and the diff the server would send:
 * leave for ids gone, enter for new ids and move for some kept ids (with
 * their index in the new list), change for other kept ids now and then. */
static json_t *random_diff(const int *old, size_t n_old, int *nw, size_t *n_new, int *next_id,
			   int *version)
{
	int keep[MAXN];
	size_t n_keep = 0;
	json_t *ops = json_array();
	for (size_t i = 0; i < n_old; i++) {
		if (below(4) == 0) {
			char k[16];
			snprintf(k, sizeof k, "[%d]", old[i]);
			json_array_append_new(ops, json_pack("{s:s,s:s}", "op", "leave", "key", k));
		} else {
			keep[n_keep++] = old[i];
		}
	}
	/* kept ones moved: taken out, to be placed anywhere */
	bool moved[MAXN] = {false};
	int rest[MAXN], placed_ids[MAXN];
	size_t n_rest = 0, n_placed = 0;
	for (size_t i = 0; i < n_keep; i++) {
		if (below(5) == 0) {
			moved[n_placed] = true;
			placed_ids[n_placed++] = keep[i];
		} else {
			rest[n_rest++] = keep[i];
		}
	}
	size_t n_enter = below(MAXN - n_rest - n_placed + 1);
	if (n_enter > 6)
		n_enter = below(7);
	for (size_t i = 0; i < n_enter; i++) {
		moved[n_placed] = false;
		placed_ids[n_placed++] = (*next_id)++;
	}
	/* the new list: the rest in their order, the placed ones at random places */
	*n_new = n_rest + n_placed;
	bool taken[MAXN] = {false};
	size_t at_of[MAXN];
	for (size_t i = 0; i < n_placed; i++) {
		size_t at;
		do
			at = below(*n_new);
		while (taken[at]);
		taken[at] = true;
		at_of[i] = at;
		nw[at] = placed_ids[i];
	}
	for (size_t p = 0, r = 0; p < *n_new; p++)
		if (!taken[p])
			nw[p] = rest[r++];
	(*version)++;
	for (size_t i = 0; i < n_placed; i++) {
		char k[16];
		snprintf(k, sizeof k, "[%d]", placed_ids[i]);
		json_array_append_new(ops, json_pack("{s:s,s:s,s:I,s:{s:i,s:i}}", "op",
						     moved[i] ? "move" : "enter", "key", k, "index",
						     (json_int_t)at_of[i], "row", "id",
						     placed_ids[i], "v", *version));
	}
	for (size_t i = 0; i < n_rest; i++) {
		if (below(3))
			continue;
		char k[16];
		snprintf(k, sizeof k, "[%d]", rest[i]);
		json_array_append_new(ops, json_pack("{s:s,s:s,s:{s:i,s:i}}", "op", "change", "key",
						     k, "row", "id", rest[i], "v", *version));
	}
	/* the server sorts nothing but placed ops; shuffle to prove order
	 * inside one diff does not matter */
	for (size_t i = json_array_size(ops); i > 1; i--) {
		size_t k = below(i);
		json_t *a = json_incref(json_array_get(ops, i - 1));
		json_array_set(ops, i - 1, json_array_get(ops, k));
		json_array_set_new(ops, k, a);
	}
	return json_pack("{s:s,s:o}", "kind", "diff", "ops", ops);
}

static void test_random_diffs_match_the_model(void **state)
{
	(void)state;
	for (int round = 0; round < 200; round++) {
		struct rt_livecopy lc;
		rt_livecopy_init(&lc, NULL);
		int cur[MAXN];
		size_t n = below(10);
		int next_id = 1, version = 0;
		for (size_t i = 0; i < n; i++)
			cur[i] = next_id++;
		result_of(&lc, (int)n);
		for (int step = 0; step < 30; step++) {
			int nw[MAXN];
			size_t n_new;
			json_t *d = random_diff(cur, n, nw, &n_new, &next_id, &version);
			char err[256];
			int rc = rt_livecopy_apply(&lc, d, err, sizeof err);
			if (rc) {
				char *t = text(d);
				fail_msg("round %d step %d: %s: %s", round, step, err, t);
			}
			json_decref(d);
			assert_int_equal(rt_livecopy_validate(&lc), 0);
			memcpy(cur, nw, n_new * sizeof *cur);
			n = n_new;
			char want[512] = "", got[512];
			size_t w = 0;
			for (size_t i = 0; i < n; i++)
				w += (size_t)snprintf(want + w, sizeof want - w, "%s%d",
						      i ? "," : "", cur[i]);
			ids_of(&lc, got, sizeof got);
			assert_string_equal(got, want);
		}
		rt_livecopy_deinit(&lc);
	}
}

/* ---- garbage ---- */

static const char *const names[] = {"kind", "ops",  "op",     "key", "index", "row",
				    "rows", "keys", "resync", "id",  "x"};
static const char *const strs[] = {"result", "diff", "error", "enter", "leave", "move", "change",
				   "[1]",    "[2]",  "[3]",   "[9]",   "",	"[]"};

static json_t *garbage(int depth)
{
	switch (below(depth > 3 ? 5 : 8)) {
	case 0: return json_null();
	case 1: return json_boolean(below(2));
	case 2: return json_integer((json_int_t)below(8) - 2);
	case 3: return json_real(0.5);
	case 4: return json_string(strs[below(sizeof strs / sizeof *strs)]);
	case 5: {
		json_t *a = json_array();
		for (size_t i = below(5); i; i--)
			json_array_append_new(a, garbage(depth + 1));
		return a;
	}
	default: {
		json_t *o = json_object();
		for (size_t i = below(6); i; i--)
			json_object_set_new(o, names[below(sizeof names / sizeof *names)],
					    garbage(depth + 1));
		return o;
	}
	}
}

/* A valid diff against ids 1..3 with one member replaced by garbage. */
static json_t *mutated(void)
{
	json_t *d = j("{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[1]\"},"
		      "{\"op\":\"enter\",\"key\":\"[9]\",\"index\":0,\"row\":{\"id\":9}},"
		      "{\"op\":\"move\",\"key\":\"[3]\",\"index\":1,\"row\":{\"id\":3}},"
		      "{\"op\":\"change\",\"key\":\"[2]\",\"row\":{\"id\":2}}]}");
	json_t *ops = json_object_get(d, "ops");
	json_t *op = json_array_get(ops, below(4));
	if (below(5) == 0)
		json_object_set_new(d, names[below(sizeof names / sizeof *names)], garbage(1));
	else
		json_object_set_new(op, names[below(sizeof names / sizeof *names)], garbage(1));
	return d;
}

static void test_garbage_never_crashes(void **state)
{
	(void)state;
	int n_ok = 0, n_refused = 0;
	for (int i = 0; i < 20000; i++) {
		struct rt_livecopy lc;
		rt_livecopy_init(&lc, NULL);
		result_of(&lc, 3);
		json_t *before = json_deep_copy(lc.rows);
		json_t *e = i % 2 ? mutated() : garbage(0);
		char err[256];
		int rc = rt_livecopy_apply(&lc, e, err, sizeof err);
		assert_int_equal(rt_livecopy_validate(&lc), 0);
		if (rc) {
			assert_true(rc == RT_EPROTO || rc == RT_ETOOBIG);
			assert_true(err[0] != 0);
			assert_true(json_equal(before, lc.rows)); /* unchanged */
			n_refused++;
		} else {
			n_ok++;
		}
		/* the envelope check takes anything too */
		json_t *m = json_pack("{s:o}", "queries", json_incref(e));
		if (below(2))
			json_object_set_new(m, "position", garbage(2));
		rt_livecopy_check_message(m, err, sizeof err);
		rt_livecopy_check_message(e, err, 0);
		json_decref(m);
		json_decref(e);
		json_decref(before);
		rt_livecopy_deinit(&lc);
	}
	/* both outcomes happen: the generator reaches valid entries too */
	assert_true(n_ok > 0);
	assert_true(n_refused > 0);
}

static void test_check_message(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		int rc;
	} cases[] = {
		{"{\"position\":\"1234\",\"queries\":[]}", 0},
		{"{\"position\":\"0\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\"},"
		 "{\"id\":\"b\",\"kind\":\"result\"}]}",
		 0},
		{"{\"position\":\"18446744073709551615\",\"queries\":[]}", 0},
		{"{\"position\":\"184467440737095516150\",\"queries\":[]}", RT_EPROTO},
		{"{\"position\":1234,\"queries\":[]}", RT_EPROTO},
		{"{\"position\":\"\",\"queries\":[]}", RT_EPROTO},
		{"{\"position\":\"-1\",\"queries\":[]}", RT_EPROTO},
		{"{\"position\":\"12a\",\"queries\":[]}", RT_EPROTO},
		{"{\"queries\":[]}", RT_EPROTO},
		{"{\"position\":\"1\"}", RT_EPROTO},
		{"{\"position\":\"1\",\"queries\":{}}", RT_EPROTO},
		{"{\"position\":\"1\",\"queries\":[1]}", RT_EPROTO},
		{"{\"position\":\"1\",\"queries\":[{\"kind\":\"diff\"}]}", RT_EPROTO},
		{"{\"position\":\"1\",\"queries\":[{\"id\":\"\",\"kind\":\"diff\"}]}", RT_EPROTO},
		{"{\"position\":\"1\",\"queries\":[{\"id\":\"a\\u0000b\",\"kind\":\"diff\"}]}",
		 RT_EPROTO},
		{"{\"position\":\"1\",\"queries\":[{\"id\":\"a\"}]}", RT_EPROTO},
		{"{\"position\":\"1\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\"},"
		 "{\"id\":\"a\",\"kind\":\"diff\"}]}",
		 RT_EPROTO},
		{"[]", RT_EPROTO},
		{"null", RT_EPROTO},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		json_t *m = j(cases[i].msg);
		char err[128];
		int rc = rt_livecopy_check_message(m, err, sizeof err);
		if (rc != cases[i].rc)
			fail_msg("%s: %d, want %d", cases[i].msg, rc, cases[i].rc);
		if (rc)
			assert_true(err[0] != 0);
		json_decref(m);
	}
	/* an id of 64 bytes is fine, 65 is not; 128 entries are, 129 not */
	char id[70];
	memset(id, 'i', 65);
	id[65] = 0;
	json_t *m = json_pack("{s:s,s:[{s:s,s:s}]}", "position", "1", "queries", "id", id, "kind",
			      "diff");
	assert_int_equal(rt_livecopy_check_message(m, NULL, 0), RT_EPROTO);
	json_decref(m);
	id[64] = 0;
	m = json_pack("{s:s,s:[{s:s,s:s}]}", "position", "1", "queries", "id", id, "kind", "diff");
	assert_int_equal(rt_livecopy_check_message(m, NULL, 0), 0);
	json_decref(m);
	json_t *qs = json_array();
	for (int i = 0; i < 129; i++) {
		char name[16];
		snprintf(name, sizeof name, "q%d", i);
		json_array_append_new(qs, json_pack("{s:s,s:s}", "id", name, "kind", "diff"));
	}
	m = json_pack("{s:s,s:o}", "position", "1", "queries", qs);
	assert_int_equal(rt_livecopy_check_message(m, NULL, 0), RT_EPROTO);
	json_array_remove(qs, 0);
	assert_int_equal(rt_livecopy_check_message(m, NULL, 0), 0);
	json_decref(m);
}

static void test_limits(void **state)
{
	(void)state;
	/* a result past RT_LIVECOPY_MAX_ROWS */
	json_t *keys = json_array(), *rows = json_array();
	for (int i = 0; i <= RT_LIVECOPY_MAX_ROWS; i++) {
		char k[16];
		snprintf(k, sizeof k, "[%d]", i);
		json_array_append_new(keys, json_string(k));
		json_array_append_new(rows, json_object());
	}
	json_t *e = json_pack("{s:s,s:O,s:O}", "kind", "result", "keys", keys, "rows", rows);
	struct rt_livecopy lc;
	rt_livecopy_init(&lc, NULL);
	assert_int_equal(rt_livecopy_apply(&lc, e, NULL, 0), RT_ETOOBIG);
	assert_false(rt_livecopy_has_result(&lc));
	json_decref(e);
	/* the largest result, then a diff that would grow it past the limit */
	json_array_remove(keys, 0);
	json_array_remove(rows, 0);
	e = json_pack("{s:s,s:o,s:o}", "kind", "result", "keys", keys, "rows", rows);
	assert_int_equal(rt_livecopy_apply(&lc, e, NULL, 0), 0);
	json_decref(e);
	assert_int_equal(rt_livecopy_count(&lc), RT_LIVECOPY_MAX_ROWS);
	assert_int_equal(rt_livecopy_validate(&lc), 0);
	assert_int_equal(apply(&lc, "{\"kind\":\"diff\",\"ops\":[{\"op\":\"enter\",\"key\":\"[0]\","
				    "\"index\":0,\"row\":{}}]}"),
			 RT_ETOOBIG);
	/* and a big structural diff: the first half leaves */
	json_t *ops = json_array();
	for (int i = 1; i <= RT_LIVECOPY_MAX_ROWS / 2; i++) {
		char k[16];
		snprintf(k, sizeof k, "[%d]", i);
		json_array_append_new(ops, json_pack("{s:s,s:s}", "op", "leave", "key", k));
	}
	e = json_pack("{s:s,s:o}", "kind", "diff", "ops", ops);
	assert_int_equal(rt_livecopy_apply(&lc, e, NULL, 0), 0);
	json_decref(e);
	assert_int_equal(rt_livecopy_count(&lc), RT_LIVECOPY_MAX_ROWS - RT_LIVECOPY_MAX_ROWS / 2);
	assert_string_equal(json_string_value(json_array_get(lc.keys, 0)), "[50001]");
	assert_int_equal(rt_livecopy_validate(&lc), 0);
	rt_livecopy_deinit(&lc);
}

/* ---- out of memory ---- */

static long n_allocs, fail_at;

static void *failing_malloc(size_t n)
{
	if (++n_allocs == fail_at)
		return NULL;
	return malloc(n);
}

static void *failing_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	if (!n) {
		free(p);
		return NULL;
	}
	if (!p && ++n_allocs == fail_at)
		return NULL;
	return realloc(p, n);
}

static void test_every_allocation_failing(void **state)
{
	(void)state;
	static const char *const steps[] = {
		"{\"kind\":\"result\",\"keys\":[\"[1]\",\"[2]\",\"[3]\"],"
		"\"rows\":[{\"id\":1},{\"id\":2},{\"id\":3}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"leave\",\"key\":\"[1]\"},"
		"{\"op\":\"enter\",\"key\":\"[9]\",\"index\":0,\"row\":{\"id\":9}},"
		"{\"op\":\"move\",\"key\":\"[3]\",\"index\":1,\"row\":{\"id\":3}},"
		"{\"op\":\"change\",\"key\":\"[2]\",\"row\":{\"id\":2,\"x\":1}}]}",
		"{\"kind\":\"diff\",\"ops\":[{\"op\":\"change\",\"key\":\"[9]\",\"row\":{\"id\":9,"
		"\"x\":2}}]}",
	};
	static const char *const want = "[{\"id\":9,\"x\":2},{\"id\":3},{\"id\":2,\"x\":1}]";
	const struct rt_allocator a = {failing_realloc, NULL};
	bool completed = false;
	long n_failed_runs = 0;
	for (long k = 1; !completed && k < 1000; k++) {
		json_t *es[3];
		for (size_t i = 0; i < 3; i++)
			es[i] = j(steps[i]);
		struct rt_livecopy lc;
		rt_livecopy_init(&lc, &a);
		n_allocs = 0;
		fail_at = k;
		bool failed = false;
		for (size_t i = 0; i < 3 && !failed; i++) {
			char *before = lc.rows ? json_dumps(lc.rows, JSON_COMPACT) : NULL;
			json_set_alloc_funcs(failing_malloc, free);
			int rc = rt_livecopy_apply(&lc, es[i], NULL, 0);
			json_set_alloc_funcs(malloc, free);
			if (rc) {
				/* only out of memory, and nothing half-applied */
				assert_int_equal(rc, RT_ENOMEM);
				char *after = lc.rows ? json_dumps(lc.rows, JSON_COMPACT) : NULL;
				assert_true((!before && !after) ||
					    (before && after && !strcmp(before, after)));
				free(after);
				failed = true;
			}
			free(before);
		}
		assert_int_equal(rt_livecopy_validate(&lc), 0);
		if (!failed) {
			assert_rows(&lc, want);
			completed = true;
		} else {
			n_failed_runs++;
		}
		rt_livecopy_deinit(&lc);
		for (size_t i = 0; i < 3; i++)
			json_decref(es[i]);
	}
	assert_true(completed);
	assert_true(n_failed_runs > 5); /* the sweep reached failures on the way */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_result),
		cmocka_unit_test(test_enter_every_index),
		cmocka_unit_test(test_leave_and_change_every_index),
		cmocka_unit_test(test_move_every_index),
		cmocka_unit_test(test_aggregate_groups),
		cmocka_unit_test(test_inconsistent_refused),
		cmocka_unit_test(test_random_diffs_match_the_model),
		cmocka_unit_test(test_garbage_never_crashes),
		cmocka_unit_test(test_check_message),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_every_allocation_failing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
