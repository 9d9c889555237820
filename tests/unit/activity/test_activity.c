/*
 * The activity feed (src/activity/activity.c) with a fake clock: ids grow,
 * pages go newest first and on with before=, retention trims by count and
 * by age, document edits merge per actor within the window, and write
 * entries are shown only under the reader's row-level security (an
 * embedded store with a policy).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "activity/activity.h"
#include "store/store.h"

static int64_t fake_now = 1700000000000;
static int64_t now_ms(void)
{
	return fake_now;
}

static struct rt_activity *feed(uint64_t max, uint64_t age, uint32_t merge, struct rt_store *st)
{
	struct rt_activity_config cfg;
	rt_activity_config_default(&cfg);
	cfg.max_entries = max;
	cfg.max_age_ms = age;
	cfg.merge_ms = merge;
	cfg.epoch = 5;
	cfg.wall_ms = now_ms;
	return rt_activity_new(&cfg, NULL, NULL, st);
}

static json_t *page(struct rt_activity *a, const char *ch, uint64_t before, unsigned limit,
		    const char *role, const char *sub)
{
	json_t *claims = sub ? json_pack("{s:s,s:s}", "role", role, "sub", sub)
			     : json_pack("{s:s}", "role", role);
	struct rt_auth who = {.role = role, .claims = claims};
	json_t *out = NULL;
	int status = 0;
	assert_int_equal(rt_activity_page(a, ch, before, limit, &who, &out, &status), 0);
	assert_int_equal(status, 200);
	json_decref(claims);
	return out;
}

static void test_pages_and_retention(void **state)
{
	(void)state;
	struct rt_activity *a = feed(5, 60000, 0, NULL);
	uint64_t prev = 0;
	for (int i = 0; i < 8; i++) {
		json_t *s = json_pack("{s:i}", "n", i);
		uint64_t id = rt_activity_append(a, RT_ACTIVITY_LOCK, i % 2 ? "lock:a" : "lock:b",
						 "u", s, NULL);
		json_decref(s);
		assert_true(id > prev);
		assert_int_equal(id >> 32, 5);
		prev = id;
		fake_now += 1000;
	}
	/* count: the 5 newest stay (n = 3..7) */
	assert_int_equal(rt_activity_count(a), 5);
	json_t *p = page(a, "lock:a", 0, 2, "service_role", NULL);
	json_t *e = json_object_get(p, "entries");
	assert_int_equal(json_array_size(e), 2);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(json_array_get(e, 0), "summary"), "n")),
			 7);
	uint64_t next = (uint64_t)json_integer_value(json_object_get(p, "next_before"));
	assert_true(next > 0);
	json_decref(p);
	p = page(a, "lock:a", next, 2, "service_role", NULL);
	e = json_object_get(p, "entries");
	assert_int_equal(json_array_size(e), 1); /* n = 3; n = 1 was trimmed */
	assert_true(json_is_null(json_object_get(p, "next_before")));
	json_decref(p);
	/* age: 60 s later only the newest remain */
	fake_now += 57500;
	rt_activity_trim(a);
	assert_int_equal(rt_activity_count(a), 2);
	/* bad channels */
	json_t *out = NULL;
	int status = 0;
	struct rt_auth who = {.role = "service_role"};
	assert_int_equal(rt_activity_page(a, "room1", 0, 10, &who, &out, &status), -1);
	assert_int_equal(status, 400);
	json_decref(out);
	assert_int_equal(rt_activity_append(a, RT_ACTIVITY_LOCK, "lock:\xff", NULL, NULL, NULL), 0);
	assert_int_equal(rt_activity_append(a, RT_ACTIVITY_LOCK, "lock:", NULL, NULL, NULL), 0);
	rt_activity_free(a);
}

static void test_merge(void **state)
{
	(void)state;
	struct rt_activity *a = feed(100, 0, 10000, NULL);
	for (int i = 0; i < 100; i++) {
		rt_activity_doc_edit(a, "d", "alice", 3);
		fake_now += 10; /* 100 edits in one second */
	}
	rt_activity_doc_edit(a, "d", "bob", 1);
	rt_activity_doc_edit(a, "other", "alice", 1);
	assert_int_equal(rt_activity_count(a), 3);
	json_t *p = page(a, "collab:d", 0, 10, "service_role", NULL);
	json_t *e = json_object_get(p, "entries");
	assert_int_equal(json_array_size(e), 2);
	json_t *al = json_array_get(e, 1);
	assert_string_equal(json_string_value(json_object_get(al, "actor")), "alice");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(al, "summary"), "edits")), 100);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(al, "summary"), "bytes")), 300);
	json_decref(p);
	/* past the window: a new entry */
	fake_now += 20000;
	rt_activity_doc_edit(a, "d", "alice", 3);
	assert_int_equal(rt_activity_count(a), 4);
	rt_activity_free(a);
}

static void test_rls(void **state)
{
	(void)state;
	char dir[] = "/tmp/rtsync-activity-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof path, "%s/db.sqlite", dir);
	struct rt_store *st;
	char err[256];
	assert_int_equal(rt_store_open_sqlite(
				 path,
				 "CREATE TABLE IF NOT EXISTS notes (id integer PRIMARY KEY, owner text);"
				 "ALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
				 "CREATE POLICY own ON notes FOR SELECT TO authenticated"
				 " USING (owner = (auth.jwt() ->> 'sub'));",
				 1000, 0, &st, err, sizeof err),
			 0);
	struct rt_activity *a = feed(1000, 0, 0, st);
	const struct rt_store_table *t = rt_store_table(st, NULL, "notes");
	assert_non_null(t);
	json_t *rows = json_array();
	for (int i = 0; i < 20; i++)
		json_array_append_new(rows, json_pack("{s:i,s:s}", "id", i, "owner",
						      i % 4 ? "alice" : "eve"));
	rt_activity_write(a, t, "INSERT", rows, "svc");
	assert_int_equal(rt_activity_count(a), 20);
	/* eve: 5 rows (0, 4, 8, 12, 16), in pages of 2 past alice's */
	json_t *p = page(a, "table:public.notes", 0, 2, "authenticated", "eve");
	json_t *e = json_object_get(p, "entries");
	assert_int_equal(json_array_size(e), 2);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(json_object_get(json_array_get(e, 0), "summary"), "pk"),
				 "id")),
			 16);
	uint64_t next = (uint64_t)json_integer_value(json_object_get(p, "next_before"));
	json_decref(p);
	p = page(a, "table:public.notes", next, 2, "authenticated", "eve");
	next = (uint64_t)json_integer_value(json_object_get(p, "next_before"));
	json_decref(p);
	p = page(a, "table:public.notes", next, 2, "authenticated", "eve");
	assert_int_equal(json_array_size(json_object_get(p, "entries")), 1);
	assert_true(json_is_null(json_object_get(p, "next_before")));
	json_decref(p);
	p = page(a, "table:public.notes", 0, 200, "authenticated", "alice");
	assert_int_equal(json_array_size(json_object_get(p, "entries")), 15);
	json_decref(p);
	p = page(a, "table:public.notes", 0, 200, "anon", NULL);
	assert_int_equal(json_array_size(json_object_get(p, "entries")), 0);
	json_decref(p);
	/* a write of many rows: one entry without a row, for the unrestricted */
	json_t *many = json_array();
	for (int i = 0; i < RT_ACTIVITY_MAX_WRITE_ROWS + 1; i++)
		json_array_append_new(many, json_pack("{s:i,s:s}", "id", 100 + i, "owner", "alice"));
	rt_activity_write(a, t, "DELETE", many, "svc");
	assert_int_equal(rt_activity_count(a), 21);
	p = page(a, "table:public.notes", 0, 1, "service_role", NULL);
	json_t *s = json_object_get(json_array_get(json_object_get(p, "entries"), 0), "summary");
	assert_int_equal(json_integer_value(json_object_get(s, "rows")), RT_ACTIVITY_MAX_WRITE_ROWS + 1);
	json_decref(p);
	p = page(a, "table:public.notes", 0, 1, "authenticated", "alice");
	s = json_object_get(json_array_get(json_object_get(p, "entries"), 0), "summary");
	assert_string_equal(json_string_value(json_object_get(s, "op")), "INSERT");
	json_decref(p);
	json_decref(rows);
	json_decref(many);
	rt_activity_free(a);
	rt_store_close(st);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages_and_retention),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_rls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
