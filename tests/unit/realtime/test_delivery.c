/*
 * Delivery controls (src/realtime/delivery.h): option validation, each
 * coalescing rule, pairs that stay apart, position order, the flush times of
 * throttle, debounce (with max_wait) and batch, and the window's bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "realtime/delivery.h"

static struct rt_store_column cols[] = {
	{.name = "id", .type = "int8", .is_pk = true},
	{.name = "v", .type = "text"},
};
static struct rt_store_table todos = {.schema = "public", .name = "todos", .cols = cols,
				      .n_cols = 2};
static struct rt_store_column nopk_cols[] = {{.name = "v", .type = "text"}};
static struct rt_store_table logs = {.schema = "public", .name = "logs", .cols = nopk_cols,
				     .n_cols = 1};

static const int A = 1, B = 2; /* two bindings */
static const void *only_a[] = {&A};
static const void *only_b[] = {&B};

static json_t *row(int id, const char *v)
{
	return json_pack("{s:i,s:s}", "id", id, "v", v);
}

/* Adds a change to w; records given are taken (the window takes its own). */
static bool add(struct rt_window *w, uint64_t pos, enum rt_change_type type, json_t *rec,
		json_t *old, const void *const *matched, uint64_t now)
{
	struct rt_change ch = {.pos = pos, .type = type, .table = &todos, .record = rec,
			       .old_record = old, .commit_ms = (int64_t)pos};
	bool full = rt_window_add(w, &ch, matched, 1, now);
	json_decref(rec);
	json_decref(old);
	return full;
}

static struct rt_window *coalescing(void)
{
	static struct rt_window w;
	struct rt_delivery_opts o = {.throttle_ms = 100};
	rt_window_init(&w, &o);
	return &w;
}

static const char *v_of(const json_t *r)
{
	return json_string_value(json_object_get(r, "v"));
}

static void test_options(void **state)
{
	(void)state;
	struct rt_delivery_opts o;
	char err[256];
	json_t *e = json_pack("{s:s,s:i}", "table", "t", "throttle_ms", 500);
	assert_int_equal(rt_delivery_parse(e, &o, err, sizeof err), 0);
	assert_int_equal(o.throttle_ms, 500);
	assert_true(rt_delivery_is_on(&o));
	json_decref(e);
	e = json_pack("{s:i}", "debounce_ms", 100);
	assert_int_equal(rt_delivery_parse(e, &o, err, sizeof err), 0);
	assert_int_equal(o.max_wait_ms, 400); /* 4 × debounce */
	json_decref(e);
	e = json_pack("{s:i,s:i,s:b}", "debounce_ms", 100, "max_wait_ms", 150, "batch", 1);
	assert_int_equal(rt_delivery_parse(e, &o, err, sizeof err), 0);
	assert_int_equal(o.max_wait_ms, 150);
	assert_true(o.is_batch);
	json_decref(e);
	e = json_pack("{s:s}", "table", "t");
	assert_int_equal(rt_delivery_parse(e, &o, err, sizeof err), 0);
	assert_false(rt_delivery_is_on(&o));
	json_decref(e);
	const char *bad[] = {
		"{\"throttle_ms\":-1}",  "{\"throttle_ms\":60001}", "{\"throttle_ms\":1.5}",
		"{\"throttle_ms\":\"5\"}", "{\"debounce_ms\":true}", "{\"batch\":\"true\"}",
		"{\"batch\":1}",         "{\"throttle_ms\":10,\"debounce_ms\":10}",
		"{\"max_wait_ms\":10}",  "{\"max_wait_ms\":99999999999999,\"debounce_ms\":5}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		e = json_loads(bad[i], 0, NULL);
		assert_non_null(e);
		err[0] = 0;
		assert_int_equal(rt_delivery_parse(e, &o, err, sizeof err), -1);
		assert_true(strlen(err) > 10);
		assert_false(rt_delivery_is_on(&o));
		json_decref(e);
	}
	struct rt_delivery_opts a = {.throttle_ms = 5}, b = {.throttle_ms = 5, .is_batch = true};
	assert_false(rt_delivery_equal(&a, &b));
	b.is_batch = false;
	assert_true(rt_delivery_equal(&a, &b));
}

static void test_update_update(void **state)
{
	(void)state;
	struct rt_window *w = coalescing();
	add(w, 10, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, 1000);
	add(w, 11, RT_CHANGE_UPDATE, row(1, "c"), row(1, "b"), only_a, 1000);
	add(w, 12, RT_CHANGE_UPDATE, row(1, "d"), row(1, "c"), only_a, 1000);
	struct rt_pending *p;
	assert_int_equal(rt_window_take(w, 1000, &p), 1);
	assert_int_equal(p[0].ch.type, RT_CHANGE_UPDATE);
	assert_string_equal(v_of(p[0].ch.record), "d");
	assert_string_equal(v_of(p[0].ch.old_record), "a");
	assert_int_equal(p[0].ch.pos, 12);
	assert_int_equal(p[0].ch.commit_ms, 12);
	rt_window_items_free(p, 1);
	rt_window_deinit(w);
}

static void test_insert_update(void **state)
{
	(void)state;
	struct rt_window *w = coalescing();
	add(w, 10, RT_CHANGE_INSERT, row(1, "a"), NULL, only_a, 1000);
	add(w, 11, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, 1000);
	struct rt_pending *p;
	assert_int_equal(rt_window_take(w, 1000, &p), 1);
	assert_int_equal(p[0].ch.type, RT_CHANGE_INSERT);
	assert_string_equal(v_of(p[0].ch.record), "b");
	assert_null(p[0].ch.old_record);
	assert_int_equal(p[0].ch.pos, 11);
	rt_window_items_free(p, 1);
	rt_window_deinit(w);
}

static void test_insert_delete(void **state)
{
	(void)state;
	struct rt_window *w = coalescing();
	add(w, 10, RT_CHANGE_INSERT, row(1, "a"), NULL, only_a, 1000);
	add(w, 11, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, 1000);
	add(w, 12, RT_CHANGE_DELETE, NULL, row(1, "b"), only_a, 1000);
	assert_int_equal(w->n_live, 0);
	/* the row is forgotten: a new INSERT starts afresh */
	add(w, 13, RT_CHANGE_INSERT, row(1, "z"), NULL, only_a, 1000);
	struct rt_pending *p;
	assert_int_equal(rt_window_take(w, 1000, &p), 1);
	assert_int_equal(p[0].ch.type, RT_CHANGE_INSERT);
	assert_int_equal(p[0].ch.pos, 13);
	rt_window_items_free(p, 1);
	/* nothing at all */
	add(w, 14, RT_CHANGE_INSERT, row(2, "a"), NULL, only_a, 1000);
	add(w, 15, RT_CHANGE_DELETE, NULL, row(2, "a"), only_a, 1000);
	assert_int_equal(rt_window_take(w, 1000, &p), 0);
	assert_null(p);
	rt_window_deinit(w);
}

static void test_update_delete(void **state)
{
	(void)state;
	struct rt_window *w = coalescing();
	add(w, 10, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, 1000);
	add(w, 11, RT_CHANGE_DELETE, NULL, row(1, "b"), only_a, 1000);
	struct rt_pending *p;
	assert_int_equal(rt_window_take(w, 1000, &p), 1);
	assert_int_equal(p[0].ch.type, RT_CHANGE_DELETE);
	assert_null(p[0].ch.record);
	assert_string_equal(v_of(p[0].ch.old_record), "a");
	assert_int_equal(p[0].ch.pos, 11);
	rt_window_items_free(p, 1);
	rt_window_deinit(w);
}

static void test_delete_insert(void **state)
{
	(void)state;
	struct rt_window *w = coalescing();
	add(w, 10, RT_CHANGE_DELETE, NULL, row(1, "a"), only_a, 1000);
	add(w, 11, RT_CHANGE_INSERT, row(1, "n"), NULL, only_a, 1000);
	struct rt_pending *p;
	assert_int_equal(rt_window_take(w, 1000, &p), 1);
	assert_int_equal(p[0].ch.type, RT_CHANGE_UPDATE);
	assert_string_equal(v_of(p[0].ch.record), "n");
	assert_string_equal(v_of(p[0].ch.old_record), "a");
	assert_int_equal(p[0].ch.pos, 11);
	rt_window_items_free(p, 1);
	/* DELETE+INSERT+DELETE: the UPDATE it became, then DELETE of the first old */
	add(w, 20, RT_CHANGE_DELETE, NULL, row(1, "a"), only_a, 1000);
	add(w, 21, RT_CHANGE_INSERT, row(1, "n"), NULL, only_a, 1000);
	add(w, 22, RT_CHANGE_DELETE, NULL, row(1, "n"), only_a, 1000);
	assert_int_equal(rt_window_take(w, 1000, &p), 1);
	assert_int_equal(p[0].ch.type, RT_CHANGE_DELETE);
	assert_string_equal(v_of(p[0].ch.old_record), "a");
	rt_window_items_free(p, 1);
	rt_window_deinit(w);
}

/* Pairs the rules do not combine, other bindings, a moved key, no key, and
 * the order of the output. */
static void test_kept_apart(void **state)
{
	(void)state;
	struct rt_window *w = coalescing();
	add(w, 10, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, 1000);
	add(w, 11, RT_CHANGE_UPDATE, row(2, "x"), row(2, "w"), only_a, 1000);
	add(w, 12, RT_CHANGE_UPDATE, row(1, "c"), row(1, "b"), only_b, 1000); /* other bindings */
	add(w, 13, RT_CHANGE_UPDATE, row(1, "d"), row(1, "c"), only_a, 1000); /* newest differs */
	add(w, 14, RT_CHANGE_UPDATE, row(3, "m"), row(2, "x"), only_a, 1000); /* key 2 -> 3 */
	add(w, 15, RT_CHANGE_UPDATE, row(3, "n"), row(3, "m"), only_a, 1000); /* folds into 14 */
	struct rt_change nk = {.pos = 16, .type = RT_CHANGE_INSERT, .table = &logs};
	nk.record = json_pack("{s:s}", "v", "l1");
	rt_window_add(w, &nk, only_a, 1, 1000);
	nk.pos = 17;
	rt_window_add(w, &nk, only_a, 1, 1000); /* no primary key: apart */
	json_decref(nk.record);
	add(w, 18, RT_CHANGE_UPDATE, row(2, "q"), row(2, "p"), only_a, 1000); /* after the move */
	struct rt_pending *p;
	size_t n = rt_window_take(w, 1000, &p);
	assert_int_equal(n, 8);
	uint64_t want[] = {10, 11, 12, 13, 15, 16, 17, 18};
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i].ch.pos, want[i]);
	assert_string_equal(v_of(p[0].ch.record), "b");
	assert_string_equal(v_of(p[4].ch.record), "n");
	assert_int_equal(json_integer_value(json_object_get(p[4].ch.old_record, "id")), 2);
	assert_ptr_equal(p[2].matched[0], &B);
	assert_string_equal(v_of(p[7].ch.record), "q"); /* key 2 after the move: not folded */
	rt_window_items_free(p, n);
	rt_window_deinit(w);
}

static void test_throttle_timing(void **state)
{
	(void)state;
	struct rt_window w;
	struct rt_delivery_opts o = {.throttle_ms = 500};
	rt_window_init(&w, &o);
	struct rt_pending *p;
	add(&w, 1, RT_CHANGE_INSERT, row(1, "a"), NULL, only_a, 1000);
	assert_true(rt_window_is_due(&w, 1000)); /* a quiet period: at once */
	assert_int_equal(rt_window_take(&w, 1000, &p), 1);
	rt_window_items_free(p, 1);
	add(&w, 2, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, 1100);
	add(&w, 3, RT_CHANGE_UPDATE, row(1, "c"), row(1, "b"), only_a, 1400);
	assert_int_equal(w.open_after, 1);
	assert_false(rt_window_is_due(&w, 1499));
	assert_true(rt_window_is_due(&w, 1500));
	assert_int_equal(rt_window_take(&w, 1500, &p), 1);
	rt_window_items_free(p, 1);
	assert_false(rt_window_is_due(&w, 5000)); /* closed */
	add(&w, 4, RT_CHANGE_UPDATE, row(1, "d"), row(1, "c"), only_a, 3000);
	assert_true(rt_window_is_due(&w, 3000)); /* quiet again */
	rt_window_deinit(&w);
}

static void test_debounce_timing(void **state)
{
	(void)state;
	struct rt_window w;
	struct rt_delivery_opts o = {.debounce_ms = 100, .max_wait_ms = 300};
	rt_window_init(&w, &o);
	add(&w, 1, RT_CHANGE_INSERT, row(1, "a"), NULL, only_a, 1000);
	assert_false(rt_window_is_due(&w, 1099));
	assert_true(rt_window_is_due(&w, 1100));
	for (uint64_t t = 1050; t <= 1400; t += 50) /* never quiet: max_wait bounds it */
		add(&w, t, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, t);
	assert_false(rt_window_is_due(&w, 1299));
	assert_true(rt_window_is_due(&w, 1300));
	struct rt_pending *p;
	assert_int_equal(rt_window_take(&w, 1300, &p), 1);
	assert_int_equal(p[0].ch.type, RT_CHANGE_INSERT);
	rt_window_items_free(p, 1);
	rt_window_deinit(&w);
}

static void test_batch_only(void **state)
{
	(void)state;
	struct rt_window w;
	struct rt_delivery_opts o = {.is_batch = true};
	rt_window_init(&w, &o);
	add(&w, 1, RT_CHANGE_UPDATE, row(1, "b"), row(1, "a"), only_a, 1000);
	add(&w, 2, RT_CHANGE_UPDATE, row(1, "c"), row(1, "b"), only_a, 1000);
	assert_true(rt_window_is_due(&w, 1000));
	struct rt_pending *p;
	assert_int_equal(rt_window_take(&w, 1000, &p), 2); /* no coalescing */
	rt_window_items_free(p, 2);
	rt_window_deinit(&w);
}

static void test_bound(void **state)
{
	(void)state;
	struct rt_window *w = coalescing();
	bool full = false;
	int i;
	for (i = 0; !full; i++)
		full = add(w, (uint64_t)i + 1, RT_CHANGE_INSERT, row(i, "a"), NULL, only_a, 1000);
	assert_int_equal(i, RT_WINDOW_MAX_ROWS);
	struct rt_pending *p;
	size_t n = rt_window_take(w, 1000, &p);
	assert_int_equal(n, RT_WINDOW_MAX_ROWS);
	rt_window_items_free(p, n);
	/* churn that cancels out still ends the window */
	full = false;
	for (i = 0; !full; i++)
		full = add(w, (uint64_t)i + 1, i % 2 ? RT_CHANGE_DELETE : RT_CHANGE_INSERT,
			   i % 2 ? NULL : row(7, "a"), i % 2 ? row(7, "a") : NULL, only_a, 1000);
	assert_int_equal(w->n, 2 * RT_WINDOW_MAX_ROWS);
	n = rt_window_take(w, 1000, &p);
	assert_true(n <= 1);
	rt_window_items_free(p, n);
	rt_window_deinit(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),       cmocka_unit_test(test_update_update),
		cmocka_unit_test(test_insert_update), cmocka_unit_test(test_insert_delete),
		cmocka_unit_test(test_update_delete), cmocka_unit_test(test_delete_insert),
		cmocka_unit_test(test_kept_apart),    cmocka_unit_test(test_throttle_timing),
		cmocka_unit_test(test_debounce_timing), cmocka_unit_test(test_batch_only),
		cmocka_unit_test(test_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
