/*
 * The synced table's cache (src/client/cache.h) without a server: keys,
 * base computation, the overlay (pending -> confirmed / rolled back), a
 * remote change under a pending write, an acknowledgement before and after
 * its echo, changes buffered before a snapshot, and the reports of each.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cache.h"
#include "common/err.h"

struct seen {
	int n;
	char key[64];
	char row[256]; /* "" for NULL */
	bool pending;
	enum rt_table_cause cause;
};

static void on_row(void *user, const char *key, const json_t *row, bool is_pending,
		   enum rt_table_cause cause)
{
	struct seen *s = user;
	s->n++;
	snprintf(s->key, sizeof s->key, "%s", key);
	s->row[0] = 0;
	if (row)
		s->row[json_dumpb(row, s->row, sizeof s->row - 1, JSON_COMPACT)] = 0;
	s->pending = is_pending;
	s->cause = cause;
}

static char *pk_id[] = {"id"};

static void init(struct rt_cache *k, struct seen *s)
{
	memset(s, 0, sizeof *s);
	assert_int_equal(rt_cache_init(k, pk_id, 1, NULL, on_row, s), 0);
}

static json_t *J(const char *text)
{
	json_t *v = json_loads(text, 0, NULL);
	assert_non_null(v);
	return v;
}

/* Whether v equals the JSON text. */
static bool eq(const json_t *v, const char *text)
{
	json_t *w = J(text);
	bool same = json_equal(v, w);
	json_decref(w);
	return same;
}

static void load(struct rt_cache *k, const char *rows, const char *pos)
{
	json_t *r = J(rows);
	assert_int_equal(rt_cache_load(k, r, pos), 0);
	json_decref(r);
	assert_int_equal(rt_cache_validate(k), 0);
}

static void change(struct rt_cache *k, const char *type, const char *rec, const char *old,
		   const char *pos)
{
	json_t *r = rec ? J(rec) : NULL, *o = old ? J(old) : NULL;
	assert_int_equal(rt_cache_change(k, type, r, o, pos), 0);
	json_decref(r);
	json_decref(o);
	assert_int_equal(rt_cache_validate(k), 0);
}

/* The visible row of {"id":id} as text ("" for none). */
static const char *visible(struct rt_cache *k, int id, bool *pending)
{
	static char out[256];
	char key[32];
	snprintf(key, sizeof key, "{\"id\":%d}", id);
	json_t *v = rt_cache_visible(k, key, pending, NULL);
	out[0] = 0;
	if (v) {
		size_t n = json_dumpb(v, out, sizeof out - 1, JSON_COMPACT);
		out[n] = 0;
	}
	json_decref(v);
	return out;
}

static struct rt_cache_write *add(struct rt_cache *k, enum rt_cache_op op, const char *text)
{
	struct rt_cache_write *w = calloc(1, sizeof *w);
	assert_non_null(w);
	json_t *v = J(text);
	w->op = op;
	w->strategy = RT_STRATEGY_REJECT;
	assert_int_equal(rt_cache_key_of(k, v, &w->key_obj, w->key), 0);
	if (op != RT_CACHE_DELETE)
		w->record = json_incref(v);
	if (op != RT_CACHE_INSERT)
		assert_int_equal(rt_cache_base(k, w->key, w->record, &w->base), 0);
	json_decref(v);
	rt_cache_add(k, w);
	assert_int_equal(rt_cache_validate(k), 0);
	return w;
}

static void done(struct rt_cache *k, struct rt_cache_write *w, const char *row, const char *pos,
		 enum rt_table_cause cause)
{
	json_t *r = row ? J(row) : NULL;
	assert_int_equal(rt_cache_unlink(k, w, row != NULL || pos != NULL, r, pos, cause), 0);
	json_decref(r);
	json_decref(w->key_obj);
	json_decref(w->record);
	json_decref(w->base);
	free(w);
	assert_int_equal(rt_cache_validate(k), 0);
}

static void test_keys(void **state)
{
	struct rt_cache k;
	struct seen s;
	init(&k, &s);
	char text[RT_CACHE_MAX_KEY];
	json_t *kobj, *v;
	v = J("{\"title\":\"x\",\"id\":7.0}");
	assert_int_equal(rt_cache_key_of(&k, v, &kobj, text), 0);
	assert_string_equal(text, "{\"id\":7}"); /* 7.0 and 7 are one row */
	json_decref(kobj);
	json_decref(v);
	const char *bad[] = {"{\"title\":\"x\"}", "{\"id\":null}", "{\"id\":[1]}", "{\"id\":{}}",
			     "[1]"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		v = J(bad[i]);
		assert_int_equal(rt_cache_key_of(&k, v, &kobj, text), RT_EINVAL);
		assert_null(kobj);
		json_decref(v);
	}
	char big[1200];
	snprintf(big, sizeof big, "{\"id\":\"%0600d\"}", 1);
	v = J(big);
	assert_int_equal(rt_cache_key_of(&k, v, &kobj, text), RT_ETOOBIG);
	json_decref(v);
	rt_cache_deinit(&k);

	/* two columns, in key order whatever the row's order */
	char *pk2[] = {"org", "n"};
	assert_int_equal(rt_cache_init(&k, pk2, 2, NULL, NULL, NULL), 0);
	v = J("{\"n\":2,\"x\":1,\"org\":\"a\"}");
	assert_int_equal(rt_cache_key_of(&k, v, &kobj, text), 0);
	assert_string_equal(text, "{\"org\":\"a\",\"n\":2}");
	json_decref(kobj);
	json_decref(v);
	rt_cache_deinit(&k);
	assert_int_equal(rt_cache_init(&k, pk2, 0, NULL, NULL, NULL), RT_EINVAL);
}

static void test_base(void **state)
{
	struct rt_cache k;
	struct seen s;
	init(&k, &s);
	load(&k, "[{\"id\":1,\"title\":\"a\",\"done\":false}]", "10");
	json_t *rec = J("{\"id\":1,\"title\":\"b\",\"extra\":3}"), *base;
	assert_int_equal(rt_cache_base(&k, "{\"id\":1}", rec, &base), 0);
	/* the columns written, not the key; a column the row lacks is null */
	assert_true(eq(base, "{\"title\":\"a\",\"extra\":null}"));
	json_decref(base);
	assert_int_equal(rt_cache_base(&k, "{\"id\":1}", NULL, &base), 0); /* delete: whole row */
	assert_true(eq(base, "{\"id\":1,\"title\":\"a\",\"done\":false}"));
	json_decref(base);
	assert_int_equal(rt_cache_base(&k, "{\"id\":2}", rec, &base), 0); /* no row, no base */
	assert_null(base);
	json_decref(rec);
	/* an earlier pending write of this client is part of what it saw */
	add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"b\"}");
	struct rt_cache_write *w2 = add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"c\"}");
	assert_true(eq(w2->base, "{\"title\":\"b\"}"));
	rt_cache_deinit(&k);
}

static void test_pending_confirmed_rolled_back(void **state)
{
	struct rt_cache k;
	struct seen s;
	init(&k, &s);
	load(&k, "[{\"id\":1,\"title\":\"a\"},{\"id\":2,\"title\":\"b\"}]", "10");
	assert_int_equal(s.n, 2); /* each row reported once */
	assert_int_equal(s.cause, RT_TABLE_REMOTE);
	assert_int_equal(rt_cache_count(&k), 2);

	/* update: pending at once */
	struct rt_cache_write *w = add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"A\"}");
	assert_int_equal(s.n, 3);
	assert_string_equal(s.key, "{\"id\":1}");
	assert_string_equal(s.row, "{\"id\":1,\"title\":\"A\"}");
	assert_true(s.pending);
	assert_int_equal(s.cause, RT_TABLE_LOCAL);
	/* confirmed with the server's row */
	done(&k, w, "{\"id\":1,\"title\":\"A\"}", "11", RT_TABLE_CONFIRMED);
	assert_int_equal(s.n, 4);
	assert_false(s.pending);
	assert_int_equal(s.cause, RT_TABLE_CONFIRMED);
	bool pending;
	assert_string_equal(visible(&k, 1, &pending), "{\"id\":1,\"title\":\"A\"}");
	assert_false(pending);

	/* rolled back: the confirmed row shows again */
	w = add(&k, RT_CACHE_UPDATE, "{\"id\":2,\"title\":\"X\"}");
	assert_string_equal(visible(&k, 2, &pending), "{\"id\":2,\"title\":\"X\"}");
	done(&k, w, NULL, NULL, RT_TABLE_ROLLED_BACK);
	assert_int_equal(s.cause, RT_TABLE_ROLLED_BACK);
	assert_string_equal(s.row, "{\"id\":2,\"title\":\"b\"}");
	assert_false(s.pending);

	/* insert then delete of a new row; a delete hides an existing one */
	w = add(&k, RT_CACHE_INSERT, "{\"id\":3,\"title\":\"c\"}");
	assert_int_equal(rt_cache_count(&k), 3);
	struct rt_cache_write *d = add(&k, RT_CACHE_DELETE, "{\"id\":1}");
	assert_string_equal(s.row, "");
	assert_true(s.pending);
	assert_true(eq(d->base, "{\"id\":1,\"title\":\"A\"}"));
	assert_int_equal(rt_cache_count(&k), 2);
	json_t *rows = rt_cache_rows(&k);
	assert_true(eq(rows, "[{\"id\":2,\"title\":\"b\"},{\"id\":3,\"title\":\"c\"}]"));
	json_decref(rows);
	/* the delete confirmed (row gone), the insert confirmed */
	done(&k, d, NULL, "12", RT_TABLE_CONFIRMED);
	assert_string_equal(visible(&k, 1, &pending), "");
	assert_false(pending);
	done(&k, w, "{\"id\":3,\"title\":\"c\",\"done\":false}", "13", RT_TABLE_CONFIRMED);
	assert_string_equal(s.row, "{\"id\":3,\"title\":\"c\",\"done\":false}");
	/* the echoes of both come later and change nothing */
	int n = s.n;
	change(&k, "DELETE", NULL, "{\"id\":1}", "12");
	change(&k, "INSERT", "{\"id\":3,\"title\":\"c\",\"done\":false}", NULL, "13");
	assert_int_equal(s.n, n);
	assert_int_equal(rt_cache_count(&k), 2);
	/* an update of a row that is not there stays invisible */
	w = add(&k, RT_CACHE_UPDATE, "{\"id\":9,\"title\":\"z\"}");
	assert_string_equal(visible(&k, 9, &pending), "");
	assert_true(pending);
	assert_null(w->base);
	rt_cache_deinit(&k);
}

static void test_remote_under_pending(void **state)
{
	struct rt_cache k;
	struct seen s;
	init(&k, &s);
	load(&k, "[{\"id\":1,\"title\":\"a\",\"done\":false}]", "10");
	struct rt_cache_write *w = add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"mine\"}");
	/* someone else sets done: it shows under the pending title */
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"a\",\"done\":true}", "{\"id\":1}", "11");
	assert_int_equal(s.cause, RT_TABLE_REMOTE);
	assert_string_equal(s.row, "{\"id\":1,\"title\":\"mine\",\"done\":true}");
	assert_true(s.pending);
	/* someone else changes the title: hidden by the pending write, no report */
	int n = s.n;
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"theirs\",\"done\":true}", "{\"id\":1}", "12");
	assert_int_equal(s.n, n);
	/* rolled back (a conflict): theirs shows */
	done(&k, w, NULL, NULL, RT_TABLE_ROLLED_BACK);
	assert_string_equal(s.row, "{\"id\":1,\"title\":\"theirs\",\"done\":true}");
	assert_int_equal(s.cause, RT_TABLE_ROLLED_BACK);
	/* a remote delete */
	change(&k, "DELETE", NULL, "{\"id\":1}", "13");
	assert_string_equal(s.row, "");
	assert_int_equal(rt_cache_count(&k), 0);
	/* an update that moved the key */
	change(&k, "INSERT", "{\"id\":5,\"title\":\"e\"}", NULL, "14");
	change(&k, "UPDATE", "{\"id\":6,\"title\":\"e\"}", "{\"id\":5}", "15");
	bool pending;
	assert_string_equal(visible(&k, 5, &pending), "");
	assert_string_equal(visible(&k, 6, &pending), "{\"id\":6,\"title\":\"e\"}");
	rt_cache_deinit(&k);
}

/* The reply arrives before the echo: no flicker back to older values
 * still in the stream; and after the echo: the same end. */
static void test_ack_and_echo(void **state)
{
	struct rt_cache k;
	struct seen s;
	init(&k, &s);
	load(&k, "[{\"id\":1,\"title\":\"a\"}]", "10");
	struct rt_cache_write *w = add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"mine\"}");
	/* ack at 12 first; then a remote change at 11 and the echo at 12 */
	done(&k, w, "{\"id\":1,\"title\":\"mine\"}", "12", RT_TABLE_CONFIRMED);
	assert_int_equal(s.cause, RT_TABLE_CONFIRMED);
	assert_false(s.pending);
	int n = s.n;
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"older\"}", "{\"id\":1}", "11");
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"mine\"}", "{\"id\":1}", "12");
	assert_int_equal(s.n, n); /* no flicker */
	bool pending;
	assert_string_equal(visible(&k, 1, &pending), "{\"id\":1,\"title\":\"mine\"}");
	/* a later change applies */
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"later\"}", "{\"id\":1}", "13");
	assert_string_equal(s.row, "{\"id\":1,\"title\":\"later\"}");

	/* echo first, then the ack: one report, when the pending flag clears */
	w = add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"again\"}");
	n = s.n;
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"again\"}", "{\"id\":1}", "14");
	assert_int_equal(s.n, n);
	done(&k, w, "{\"id\":1,\"title\":\"again\"}", "14", RT_TABLE_CONFIRMED);
	assert_int_equal(s.n, n + 1);
	assert_false(s.pending);
	assert_int_equal(s.cause, RT_TABLE_CONFIRMED);
	/* an unknown position ("0", the PostgreSQL store) still sets the row */
	w = add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"pg\"}");
	done(&k, w, "{\"id\":1,\"title\":\"pg\"}", "0", RT_TABLE_CONFIRMED);
	assert_string_equal(visible(&k, 1, &pending), "{\"id\":1,\"title\":\"pg\"}");
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"pg\"}", "{\"id\":1}", "15");
	assert_string_equal(visible(&k, 1, &pending), "{\"id\":1,\"title\":\"pg\"}");
	rt_cache_deinit(&k);
}

static void test_buffer_and_reload(void **state)
{
	struct rt_cache k;
	struct seen s;
	init(&k, &s);
	/* changes before the snapshot: those at or below its position are in it */
	change(&k, "INSERT", "{\"id\":1,\"title\":\"a\"}", NULL, "9");
	change(&k, "UPDATE", "{\"id\":1,\"title\":\"b\"}", "{\"id\":1}", "11");
	assert_int_equal(s.n, 0);
	assert_false(k.is_loaded);
	load(&k, "[{\"id\":1,\"title\":\"a\"},{\"id\":2,\"title\":\"x\"}]", "10");
	bool pending;
	assert_string_equal(visible(&k, 1, &pending), "{\"id\":1,\"title\":\"b\"}");
	assert_int_equal(rt_cache_count(&k), 2);
	/* a pending write survives a reload; rows gone from the snapshot go */
	add(&k, RT_CACHE_UPDATE, "{\"id\":1,\"title\":\"mine\"}");
	rt_cache_unload(&k);
	change(&k, "DELETE", NULL, "{\"id\":2}", "30");
	s.n = 0;
	load(&k, "[{\"id\":1,\"title\":\"c\",\"done\":true}]", "20");
	assert_string_equal(visible(&k, 1, &pending), "{\"id\":1,\"title\":\"mine\",\"done\":true}");
	assert_true(pending);
	assert_string_equal(visible(&k, 2, &pending), "");
	assert_int_equal(s.n, 2);
	/* malformed snapshots change nothing */
	json_t *bad = J("[{\"title\":\"no key\"}]");
	assert_int_equal(rt_cache_load(&k, bad, "21"), RT_EPROTO);
	json_decref(bad);
	bad = J("{\"rows\":[]}");
	assert_int_equal(rt_cache_load(&k, bad, "21"), RT_EPROTO);
	json_decref(bad);
	bad = J("[]");
	assert_int_equal(rt_cache_load(&k, bad, "x1"), RT_EPROTO);
	assert_int_equal(rt_cache_load(&k, bad, NULL), RT_EPROTO);
	json_decref(bad);
	assert_int_equal(rt_cache_count(&k), 1);
	/* malformed changes are refused */
	json_t *r = J("{\"title\":\"no key\"}");
	assert_int_equal(rt_cache_change(&k, "INSERT", r, NULL, "40"), RT_EPROTO);
	assert_int_equal(rt_cache_change(&k, "TRUNCATE", r, NULL, "40"), RT_EPROTO);
	assert_int_equal(rt_cache_change(&k, "INSERT", r, NULL, "4x"), RT_EPROTO);
	assert_int_equal(rt_cache_change(&k, NULL, r, NULL, "40"), RT_EPROTO);
	assert_int_equal(rt_cache_change(&k, "DELETE", NULL, NULL, "40"), RT_EPROTO);
	json_decref(r);
	assert_int_equal(rt_cache_validate(&k), 0);
	rt_cache_deinit(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_base),
		cmocka_unit_test(test_pending_confirmed_rolled_back),
		cmocka_unit_test(test_remote_under_pending),
		cmocka_unit_test(test_ack_and_echo),
		cmocka_unit_test(test_buffer_and_reload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
