/*
 * Conflict decisions (src/store/conflict.h): every strategy against rows
 * that did and did not change under the writer, deletes, rows that are gone,
 * and value equality across JSON number forms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "store/conflict.h"

static json_t *j(const char *text)
{
	if (!text)
		return NULL;
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
	assert_non_null(v);
	return v;
}

struct want {
	enum rt_write_outcome outcome;
	const char *apply;     /* JSON object */
	const char *conflicts; /* JSON array */
	bool is_delete;
};

static void check(const char *current, const char *base, const char *changes,
		  enum rt_write_strategy strategy, struct want w)
{
	json_t *cur = j(current), *b = j(base), *ch = j(changes);
	json_t *want_apply = j(w.apply), *want_conflicts = j(w.conflicts);
	struct rt_conflict_result r;
	assert_int_equal(rt_conflict_decide(cur, b, ch, strategy, &r), 0);
	if (r.outcome != w.outcome || !json_equal(r.apply, want_apply) ||
	    !json_equal(r.conflicts, want_conflicts) || r.is_delete != w.is_delete) {
		char *a = json_dumps(r.apply, JSON_SORT_KEYS), *c = json_dumps(r.conflicts, 0);
		print_error("current %s base %s changes %s strategy %s: got %s apply %s conflicts %s "
			    "delete %d; want %s apply %s conflicts %s delete %d\n",
			    current ? current : "NULL", base ? base : "NULL",
			    changes ? changes : "NULL", rt_conflict_strategy_name(strategy),
			    rt_conflict_outcome_name(r.outcome), a, c, r.is_delete,
			    rt_conflict_outcome_name(w.outcome), w.apply, w.conflicts, w.is_delete);
		free(a);
		free(c);
		fail();
	}
	rt_conflict_result_deinit(&r);
	rt_conflict_result_deinit(&r); /* a second deinit does nothing */
	json_decref(cur);
	json_decref(b);
	json_decref(ch);
	json_decref(want_apply);
	json_decref(want_conflicts);
}

static const char row[] = "{\"id\":1,\"title\":\"b\",\"done\":false,\"n\":2}";

static void test_no_conflict(void **state)
{
	for (int s = RT_STRATEGY_REJECT; s <= RT_STRATEGY_LWW; s++) {
		/* base holds: everything applies */
		check(row, "{\"title\":\"b\"}", "{\"title\":\"c\"}", s,
		      (struct want){RT_WRITE_APPLIED, "{\"title\":\"c\"}", "[]", false});
		/* no base: a blind write */
		check(row, NULL, "{\"title\":\"c\",\"done\":true}", s,
		      (struct want){RT_WRITE_APPLIED, "{\"title\":\"c\",\"done\":true}", "[]", false});
		/* both writers made the same change */
		check(row, "{\"title\":\"a\"}", "{\"title\":\"b\"}", s,
		      (struct want){RT_WRITE_APPLIED, "{\"title\":\"b\"}", "[]", false});
		/* numbers compare by value */
		check(row, "{\"n\":2.0}", "{\"n\":3}", s,
		      (struct want){RT_WRITE_APPLIED, "{\"n\":3}", "[]", false});
		/* an empty base is no base */
		check(NULL, "{}", "{\"id\":5}", s,
		      (struct want){RT_WRITE_MISSING, "{\"id\":5}", "[]", false});
	}
}

static void test_conflict(void **state)
{
	/* title changed under the writer (a -> b); done did not */
	const char *base = "{\"title\":\"a\",\"done\":false}";
	const char *changes = "{\"title\":\"c\",\"done\":true}";
	check(row, base, changes, RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[\"title\"]", false});
	check(row, base, changes, RT_STRATEGY_MERGE,
	      (struct want){RT_WRITE_MERGED, "{\"done\":true}", "[\"title\"]", false});
	check(row, base, changes, RT_STRATEGY_LWW,
	      (struct want){RT_WRITE_APPLIED, "{\"title\":\"c\",\"done\":true}", "[\"title\"]",
			    false});
	/* merge where every change conflicts: merged with nothing applied */
	check(row, "{\"title\":\"a\"}", "{\"title\":\"c\"}", RT_STRATEGY_MERGE,
	      (struct want){RT_WRITE_MERGED, "{}", "[\"title\"]", false});
	/* a base column the writer only read (not changed) still conflicts */
	check(row, "{\"n\":1}", "{\"title\":\"c\"}", RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[\"n\"]", false});
	check(row, "{\"n\":1}", "{\"title\":\"c\"}", RT_STRATEGY_MERGE,
	      (struct want){RT_WRITE_MERGED, "{\"title\":\"c\"}", "[\"n\"]", false});
	/* a column absent from the row reads as null */
	check(row, "{\"gone\":null}", "{\"gone\":1}", RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_APPLIED, "{\"gone\":1}", "[]", false});
	check(row, "{\"gone\":0}", "{\"gone\":1}", RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[\"gone\"]", false});
	/* nested values compare deeply, numbers by value inside too */
	check("{\"id\":1,\"tags\":[1,{\"a\":2}]}", "{\"tags\":[1.0,{\"a\":2}]}", "{\"tags\":[]}",
	      RT_STRATEGY_REJECT, (struct want){RT_WRITE_APPLIED, "{\"tags\":[]}", "[]", false});
	check("{\"id\":1,\"tags\":[1,{\"a\":2}]}", "{\"tags\":[1,{\"a\":3}]}", "{\"tags\":[]}",
	      RT_STRATEGY_REJECT, (struct want){RT_WRITE_CONFLICT, "{}", "[\"tags\"]", false});
}

static void test_delete(void **state)
{
	check(row, "{\"title\":\"b\"}", NULL, RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_APPLIED, "{}", "[]", true});
	check(row, "{\"title\":\"a\"}", NULL, RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[\"title\"]", false});
	check(row, "{\"title\":\"a\"}", NULL, RT_STRATEGY_MERGE,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[\"title\"]", false});
	check(row, "{\"title\":\"a\"}", NULL, RT_STRATEGY_LWW,
	      (struct want){RT_WRITE_APPLIED, "{}", "[\"title\"]", true});
	check(row, NULL, NULL, RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_APPLIED, "{}", "[]", true});
}

static void test_missing_row(void **state)
{
	/* with a base: someone deleted the row the writer saw */
	check(NULL, "{\"title\":\"a\"}", "{\"title\":\"c\"}", RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[]", false});
	check(NULL, "{\"title\":\"a\"}", "{\"title\":\"c\"}", RT_STRATEGY_MERGE,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[]", false});
	check(NULL, "{\"title\":\"a\"}", NULL, RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_CONFLICT, "{}", "[]", false});
	/* lww or no base: the caller decides (upsert inserts) */
	check(NULL, "{\"title\":\"a\"}", "{\"id\":1,\"title\":\"c\"}", RT_STRATEGY_LWW,
	      (struct want){RT_WRITE_MISSING, "{\"id\":1,\"title\":\"c\"}", "[]", false});
	check(NULL, NULL, "{\"id\":1}", RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_MISSING, "{\"id\":1}", "[]", false});
	check(NULL, NULL, NULL, RT_STRATEGY_REJECT,
	      (struct want){RT_WRITE_MISSING, "{}", "[]", true});
}

static void test_bad_arguments(void **state)
{
	json_t *arr = json_array(), *obj = json_object();
	struct rt_conflict_result r = {.outcome = RT_WRITE_MERGED};
	assert_int_equal(rt_conflict_decide(arr, NULL, obj, RT_STRATEGY_REJECT, &r), RT_EINVAL);
	assert_int_equal(rt_conflict_decide(obj, arr, obj, RT_STRATEGY_REJECT, &r), RT_EINVAL);
	assert_int_equal(rt_conflict_decide(obj, obj, arr, RT_STRATEGY_REJECT, &r), RT_EINVAL);
	assert_int_equal(r.outcome, RT_WRITE_MERGED); /* untouched */
	assert_null(r.apply);
	json_decref(arr);
	json_decref(obj);
}

static void test_values_equal(void **state)
{
	static const struct {
		const char *a, *b;
		bool eq;
	} cases[] = {
		{"1", "1", true},       {"1", "1.0", true},       {"1", "2", false},
		{"1", "\"1\"", false},  {"null", "null", true},   {"null", "false", false},
		{"true", "true", true}, {"[1,2]", "[1,2]", true}, {"[1,2]", "[2,1]", false},
		{"[1]", "[1,1]", false}, {"{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1.0}", true},
		{"{\"a\":1}", "{\"a\":1,\"b\":2}", false}, {"{\"a\":1}", "{\"b\":1}", false},
		{"\"x\"", "\"x\"", true}, {"\"x\"", "\"X\"", false},
		{"9007199254740993", "9007199254740993", true},
		{"9007199254740993", "9007199254740992", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		json_t *a = j(cases[i].a), *b = j(cases[i].b);
		if (rt_conflict_values_equal(a, b) != cases[i].eq ||
		    rt_conflict_values_equal(b, a) != cases[i].eq) {
			print_error("%s vs %s: want %d\n", cases[i].a, cases[i].b, cases[i].eq);
			fail();
		}
		json_decref(a);
		json_decref(b);
	}
}

static void test_names(void **state)
{
	enum rt_write_strategy s;
	assert_int_equal(rt_conflict_strategy_parse("reject", &s), 0);
	assert_int_equal(s, RT_STRATEGY_REJECT);
	assert_int_equal(rt_conflict_strategy_parse("merge", &s), 0);
	assert_int_equal(s, RT_STRATEGY_MERGE);
	assert_int_equal(rt_conflict_strategy_parse("last-write-wins", &s), 0);
	assert_int_equal(s, RT_STRATEGY_LWW);
	assert_int_equal(rt_conflict_strategy_parse("LWW", &s), RT_EINVAL);
	assert_int_equal(rt_conflict_strategy_parse("", &s), RT_EINVAL);
	assert_string_equal(rt_conflict_strategy_name(RT_STRATEGY_LWW), "lww");
	assert_string_equal(rt_conflict_outcome_name(RT_WRITE_MERGED), "merged");
	assert_string_equal(rt_conflict_outcome_name((enum rt_write_outcome)99), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_conflict),  cmocka_unit_test(test_conflict),
		cmocka_unit_test(test_delete),       cmocka_unit_test(test_missing_row),
		cmocka_unit_test(test_bad_arguments), cmocka_unit_test(test_values_equal),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
