/*
 * The PostgREST query-string subset (src/store/query.h). The query strings
 * under "supabase-js" are exactly what @supabase/postgrest-js 2.119.1 puts in
 * the URL for the builder call quoted next to each (URLSearchParams
 * encoding: space as '+', reserved characters percent-encoded).
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

#include "store/query.h"
#include "common/buf.h"

/* Invariants of a parsed (or reset) query; returns the number of nodes. */
static size_t check_node(const struct rt_query_node *n, int depth)
{
	size_t count = 1;
	assert_true(depth <= RT_QUERY_MAX_DEPTH + 1);
	if (n->kind == RT_QUERY_COND) {
		assert_non_null(n->column);
		assert_true(n->op <= RT_QUERY_IN);
		assert_int_equal(n->n_children, 0);
		assert_true(n->n_values <= RT_QUERY_MAX_LIST);
		if (n->op != RT_QUERY_IN)
			assert_int_equal(n->n_values, 1);
		for (size_t i = 0; i < n->n_values; i++)
			assert_non_null(n->values[i]);
		return count;
	}
	assert_null(n->column);
	assert_int_equal(n->n_values, 0);
	for (size_t i = 0; i < n->n_children; i++)
		count += check_node(&n->children[i], depth + 1);
	return count;
}

static void check_query(const struct rt_query *q)
{
	assert_int_equal(q->where.kind, RT_QUERY_AND);
	assert_false(q->where.is_negated);
	assert_true(check_node(&q->where, 0) - 1 <= RT_QUERY_MAX_NODES);
	assert_true(q->select || !q->n_select);
	for (size_t i = 0; i < q->n_select; i++) {
		const struct rt_query_select *it = &q->select[i];
		assert_true(it->column || it->agg == RT_QUERY_AGG_COUNT);
		assert_true(it->agg <= RT_QUERY_AGG_MAX);
	}
	for (size_t i = 0; i < q->n_order; i++)
		assert_non_null(q->order[i].column);
	assert_true(q->limit >= -1);
	assert_true(q->offset >= 0);
}

static void assert_empty(const struct rt_query *q)
{
	assert_null(q->select);
	assert_int_equal(q->n_select, 0);
	assert_int_equal(q->where.kind, RT_QUERY_AND);
	assert_false(q->where.is_negated);
	assert_null(q->where.children);
	assert_int_equal(q->where.n_children, 0);
	assert_null(q->order);
	assert_int_equal(q->n_order, 0);
	assert_int_equal(q->limit, -1);
	assert_int_equal(q->offset, 0);
	assert_null(q->on_conflict);
	assert_int_equal(q->n_on_conflict, 0);
	assert_null(q->columns);
	assert_int_equal(q->n_columns, 0);
}

static void parse_ok(const char *qs, struct rt_query *q)
{
	char err[512] = "";
	memset(q, 0x5a, sizeof *q);
	if (rt_query_parse(qs, strlen(qs), q, err, sizeof err))
		fail_msg("parse of [%s] failed: %s", qs, err);
	check_query(q);
}

static void parse_err(const char *qs, const char *want)
{
	struct rt_query q;
	char err[512];
	memset(&q, 0x5a, sizeof q);
	memset(err, 'x', sizeof err);
	assert_int_equal(rt_query_parse(qs, strlen(qs), &q, err, sizeof err), -1);
	if (want)
		assert_string_equal(err, want);
	else
		assert_true(strlen(err) > 0 && strlen(err) < sizeof err);
	assert_empty(&q);	  /* nothing is left behind... */
	rt_query_deinit(&q); /* ...and deinit is still fine */
	assert_empty(&q);
}

/* Checks a condition node; values are NULL-terminated. */
static void assert_cond(const struct rt_query_node *n, const char *column, enum rt_query_op op, int neg,
			...)
{
	assert_int_equal(n->kind, RT_QUERY_COND);
	assert_string_equal(n->column, column);
	assert_int_equal(n->op, op);
	assert_int_equal(n->is_negated, neg);
	va_list ap;
	va_start(ap, neg);
	size_t i = 0;
	for (const char *v; (v = va_arg(ap, const char *)); i++) {
		assert_true(i < n->n_values);
		assert_string_equal(n->values[i], v);
	}
	va_end(ap);
	assert_int_equal(n->n_values, i);
}

/* The only filter of a query: parses "col=<value>" and returns the node. */
static void one_filter(const char *qs, struct rt_query *q)
{
	parse_ok(qs, q);
	assert_int_equal(q->where.n_children, 1);
}

/* ---- supabase-js ---- */

static void test_supabase_js_filters(void **state)
{
	struct rt_query q;

	/* .select().eq('id', 1) */
	parse_ok("select=*&id=eq.1", &q);
	assert_int_equal(q.n_select, 1);
	assert_string_equal(q.select[0].column, "*");
	assert_null(q.select[0].alias);
	assert_int_equal(q.where.n_children, 1);
	assert_cond(&q.where.children[0], "id", RT_QUERY_EQ, false, "1", NULL);
	rt_query_deinit(&q);

	static const struct {
		const char *qs, *column;
		enum rt_query_op op;
		bool neg;
		const char *value;
	} simple[] = {
		/* .neq('status', 'done') */
		{"select=*&status=neq.done", "status", RT_QUERY_NEQ, false, "done"},
		/* .gt('age', 18) */
		{"select=*&age=gt.18", "age", RT_QUERY_GT, false, "18"},
		/* .gte('score', 1.5) */
		{"select=*&score=gte.1.5", "score", RT_QUERY_GTE, false, "1.5"},
		/* .lt('created_at', '2026-01-01T00:00:00Z') */
		{"select=*&created_at=lt.2026-01-01T00%3A00%3A00Z", "created_at", RT_QUERY_LT, false,
		 "2026-01-01T00:00:00Z"},
		/* .lte('n', -3) */
		{"select=*&n=lte.-3", "n", RT_QUERY_LTE, false, "-3"},
		/* .like('name', '%Al*') */
		{"select=*&name=like.%25Al*", "name", RT_QUERY_LIKE, false, "%Al%"},
		/* .ilike('name', '%al ice%') */
		{"select=*&name=ilike.%25al+ice%25", "name", RT_QUERY_ILIKE, false, "%al ice%"},
		/* .is('deleted_at', null) */
		{"select=*&deleted_at=is.null", "deleted_at", RT_QUERY_IS, false, "null"},
		/* .is('done', true) */
		{"select=*&done=is.true", "done", RT_QUERY_IS, false, "true"},
		/* .not('deleted_at', 'is', null) */
		{"select=*&deleted_at=not.is.null", "deleted_at", RT_QUERY_IS, true, "null"},
		/* .not('title', 'eq', 'x') */
		{"select=*&title=not.eq.x", "title", RT_QUERY_EQ, true, "x"},
		/* .filter('title', 'not.ilike', '*x*') */
		{"select=*&title=not.ilike.*x*", "title", RT_QUERY_ILIKE, true, "%x%"},
	};
	for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
		one_filter(simple[i].qs, &q);
		assert_cond(&q.where.children[0], simple[i].column, simple[i].op, simple[i].neg,
			    simple[i].value, NULL);
		rt_query_deinit(&q);
	}

	/* .in('id', [1, 2, 3]) */
	one_filter("select=*&id=in.%281%2C2%2C3%29", &q);
	assert_cond(&q.where.children[0], "id", RT_QUERY_IN, false, "1", "2", "3", NULL);
	rt_query_deinit(&q);
	/* .in('name', ['a,b', 'c', 'd(e)', 'plain']) */
	one_filter("select=*&name=in.%28%22a%2Cb%22%2Cc%2C%22d%28e%29%22%2Cplain%29", &q);
	assert_cond(&q.where.children[0], "name", RT_QUERY_IN, false, "a,b", "c", "d(e)", "plain",
		    NULL);
	rt_query_deinit(&q);
	/* .not('id', 'in', '(1,2)') */
	one_filter("select=*&id=not.in.%281%2C2%29", &q);
	assert_cond(&q.where.children[0], "id", RT_QUERY_IN, true, "1", "2", NULL);
	rt_query_deinit(&q);
	/* .notIn('id', [4, 5]) */
	one_filter("select=*&id=not.in.%284%2C5%29", &q);
	assert_cond(&q.where.children[0], "id", RT_QUERY_IN, true, "4", "5", NULL);
	rt_query_deinit(&q);

	/* .match({ id: 1, title: 'x' }) */
	parse_ok("select=*&id=eq.1&title=eq.x", &q);
	assert_int_equal(q.where.n_children, 2);
	assert_cond(&q.where.children[0], "id", RT_QUERY_EQ, false, "1", NULL);
	assert_cond(&q.where.children[1], "title", RT_QUERY_EQ, false, "x", NULL);
	rt_query_deinit(&q);
	/* .gt('id', 1).lt('id', 5): the same column twice, ANDed */
	parse_ok("id=gt.1&id=lt.5", &q);
	assert_int_equal(q.where.n_children, 2);
	assert_cond(&q.where.children[1], "id", RT_QUERY_LT, false, "5", NULL);
	rt_query_deinit(&q);
}

static void test_supabase_js_logic(void **state)
{
	struct rt_query q;
	/* .or('id.eq.1,title.eq.x') */
	parse_ok("select=*&or=%28id.eq.1%2Ctitle.eq.x%29", &q);
	assert_int_equal(q.where.n_children, 1);
	const struct rt_query_node *g = &q.where.children[0];
	assert_int_equal(g->kind, RT_QUERY_OR);
	assert_false(g->is_negated);
	assert_int_equal(g->n_children, 2);
	assert_cond(&g->children[0], "id", RT_QUERY_EQ, false, "1", NULL);
	assert_cond(&g->children[1], "title", RT_QUERY_EQ, false, "x", NULL);
	rt_query_deinit(&q);

	/* .or('id.gt.10,and(title.like.a*,done.is.false)') */
	parse_ok("select=*&or=%28id.gt.10%2Cand%28title.like.a*%2Cdone.is.false%29%29", &q);
	g = &q.where.children[0];
	assert_int_equal(g->kind, RT_QUERY_OR);
	assert_int_equal(g->n_children, 2);
	assert_cond(&g->children[0], "id", RT_QUERY_GT, false, "10", NULL);
	const struct rt_query_node *a = &g->children[1];
	assert_int_equal(a->kind, RT_QUERY_AND);
	assert_int_equal(a->n_children, 2);
	assert_cond(&a->children[0], "title", RT_QUERY_LIKE, false, "a%", NULL);
	assert_cond(&a->children[1], "done", RT_QUERY_IS, false, "false", NULL);
	rt_query_deinit(&q);

	/* .update({ done: true }).eq('id', 5).select('id,done') */
	parse_ok("id=eq.5&select=id%2Cdone", &q);
	assert_cond(&q.where.children[0], "id", RT_QUERY_EQ, false, "5", NULL);
	assert_int_equal(q.n_select, 2);
	assert_string_equal(q.select[1].column, "done");
	rt_query_deinit(&q);
	/* .delete().in('id', [1, 2]) */
	parse_ok("id=in.%281%2C2%29", &q);
	assert_cond(&q.where.children[0], "id", RT_QUERY_IN, false, "1", "2", NULL);
	assert_null(q.select);
	rt_query_deinit(&q);
}

static void test_supabase_js_transforms(void **state)
{
	struct rt_query q;
	/* .select() */
	parse_ok("select=*", &q);
	assert_int_equal(q.n_select, 1);
	assert_string_equal(q.select[0].column, "*");
	assert_int_equal(q.limit, -1);
	assert_int_equal(q.offset, 0);
	rt_query_deinit(&q);
	/* .select('id, title') */
	parse_ok("select=id%2Ctitle", &q);
	assert_int_equal(q.n_select, 2);
	assert_string_equal(q.select[0].column, "id");
	assert_string_equal(q.select[1].column, "title");
	rt_query_deinit(&q);
	/* .select('id,  label:title ,"my col"') */
	parse_ok("select=id%2Clabel%3Atitle%2C%22my+col%22", &q);
	assert_int_equal(q.n_select, 3);
	assert_null(q.select[0].alias);
	assert_string_equal(q.select[1].column, "title");
	assert_string_equal(q.select[1].alias, "label");
	assert_string_equal(q.select[2].column, "my col");
	assert_null(q.select[2].alias);
	rt_query_deinit(&q);

	/* .order('created_at', { ascending: false }) */
	parse_ok("select=*&order=created_at.desc", &q);
	assert_int_equal(q.n_order, 1);
	assert_string_equal(q.order[0].column, "created_at");
	assert_true(q.order[0].is_desc);
	assert_int_equal(q.order[0].nulls, RT_QUERY_NULLS_DEFAULT);
	rt_query_deinit(&q);
	/* .order('a').order('b', { ascending: false, nullsFirst: true })
	 * .order('c', { nullsFirst: false }) */
	parse_ok("select=*&order=a.asc%2Cb.desc.nullsfirst%2Cc.asc.nullslast", &q);
	assert_int_equal(q.n_order, 3);
	assert_false(q.order[0].is_desc);
	assert_int_equal(q.order[0].nulls, RT_QUERY_NULLS_DEFAULT);
	assert_string_equal(q.order[1].column, "b");
	assert_true(q.order[1].is_desc);
	assert_int_equal(q.order[1].nulls, RT_QUERY_NULLS_FIRST);
	assert_false(q.order[2].is_desc);
	assert_int_equal(q.order[2].nulls, RT_QUERY_NULLS_LAST);
	rt_query_deinit(&q);

	/* .limit(10) */
	parse_ok("select=*&limit=10", &q);
	assert_int_equal(q.limit, 10);
	assert_int_equal(q.offset, 0);
	rt_query_deinit(&q);
	/* .range(20, 29) */
	parse_ok("select=*&offset=20&limit=10", &q);
	assert_int_equal(q.limit, 10);
	assert_int_equal(q.offset, 20);
	rt_query_deinit(&q);
}

static void test_supabase_js_writes(void **state)
{
	struct rt_query q;
	/* .insert([{ id: 1, title: 'a' }, { id: 2, done: true }]) */
	parse_ok("columns=%22id%22%2C%22title%22%2C%22done%22", &q);
	assert_int_equal(q.n_columns, 3);
	assert_string_equal(q.columns[0], "id");
	assert_string_equal(q.columns[1], "title");
	assert_string_equal(q.columns[2], "done");
	assert_null(q.select);
	assert_int_equal(q.where.n_children, 0);
	rt_query_deinit(&q);
	/* .upsert([{ id: 1, slug: 's' }], { onConflict: 'id,slug' }) */
	parse_ok("on_conflict=id%2Cslug&columns=%22id%22%2C%22slug%22", &q);
	assert_int_equal(q.n_on_conflict, 2);
	assert_string_equal(q.on_conflict[0], "id");
	assert_string_equal(q.on_conflict[1], "slug");
	assert_int_equal(q.n_columns, 2);
	assert_string_equal(q.columns[1], "slug");
	rt_query_deinit(&q);
	/* Quoted names may hold commas, quotes and spaces. */
	parse_ok("columns=%22a%2Cb%22%2C%22q%5C%22t%22%2C%22sp+ace%22&on_conflict=+a+%2C+b+", &q);
	assert_int_equal(q.n_columns, 3);
	assert_string_equal(q.columns[0], "a,b");
	assert_string_equal(q.columns[1], "q\"t");
	assert_string_equal(q.columns[2], "sp ace");
	assert_int_equal(q.n_on_conflict, 2);
	assert_string_equal(q.on_conflict[0], "a");
	assert_string_equal(q.on_conflict[1], "b");
	rt_query_deinit(&q);

	parse_err("columns=", "failed to parse columns parameter ()");
	parse_err("columns=%22a", "failed to parse columns parameter (\"a)");
	parse_err("columns=a%2C%2Cb", "failed to parse columns parameter (a,,b)");
	parse_err("on_conflict=a%2C", "failed to parse on_conflict parameter (a,)");
	parse_err("on_conflict=a.b", "failed to parse on_conflict parameter (a.b)");
}

static void test_supabase_js_unsupported(void **state)
{
	/* .textSearch('body', 'cat & dog') */
	parse_err("select=*&body=fts.cat+%26+dog", "failed to parse filter (fts.cat & dog)");
	/* .contains('tags', ['a', 'b']) */
	parse_err("select=*&tags=cs.%7Ba%2Cb%7D", "failed to parse filter (cs.{a,b})");
	/* .containedBy('tags', ['a']) */
	parse_err("tags=cd.%7Ba%7D", "failed to parse filter (cd.{a})");
	/* .regexMatch('t', '^a'), .regexIMatch, .isDistinct: not in this subset */
	parse_err("t=match.%5Ea", "failed to parse filter (match.^a)");
	parse_err("t=imatch.a", "failed to parse filter (imatch.a)");
	parse_err("t=isdistinct.1", "failed to parse filter (isdistinct.1)");
	/* .likeAnyOf('t', ['a%', 'b%']) */
	parse_err("t=like%28any%29.%7Ba%25%2Cb%25%7D",
		  "failed to parse filter (like(any).{a%,b%})");
	/* .rangeGt('r', '[1,2)') */
	parse_err("r=sr.%5B1%2C2%29", "failed to parse filter (sr.[1,2))");
	/* .select('id, author(name)') */
	parse_err("select=id%2Cauthor%28name%29",
		  "failed to parse select parameter (id,author(name)): "
		  "embedded resources are not supported");
	/* .order('name', { referencedTable: 'author' }) */
	parse_err("select=*&author.order=name.asc",
		  "failed to parse tree path (author.order): embedded resources are not supported");
	/* .or('name.eq.x', { referencedTable: 'author' }) */
	parse_err("author.or=%28name.eq.x%29",
		  "failed to parse tree path (author.or): embedded resources are not supported");
	/* .eq('author.name', 'x') */
	parse_err("author.name=eq.x",
		  "failed to parse tree path (author.name): embedded resources are not supported");
	/* .eq('data->a', 1) and ->> */
	parse_err("data-%3Ea=eq.1",
		  "failed to parse tree path (data->a): JSON paths are not supported");
	parse_err("data-%3E%3Ea=eq.1",
		  "failed to parse tree path (data->>a): JSON paths are not supported");
}

/* ---- grammar details ---- */

static void test_filter_values(void **state)
{
	struct rt_query q;
	/* A top-level value runs to the end: dots, commas, quotes included. */
	one_filter("v=eq.1.2.3", &q);
	assert_cond(&q.where.children[0], "v", RT_QUERY_EQ, false, "1.2.3", NULL);
	rt_query_deinit(&q);
	one_filter("name=eq.a%2Cb", &q);
	assert_cond(&q.where.children[0], "name", RT_QUERY_EQ, false, "a,b", NULL);
	rt_query_deinit(&q);
	one_filter("name=eq.%22quoted%22", &q);
	assert_cond(&q.where.children[0], "name", RT_QUERY_EQ, false, "\"quoted\"", NULL);
	rt_query_deinit(&q);
	one_filter("name=eq.", &q);
	assert_cond(&q.where.children[0], "name", RT_QUERY_EQ, false, "", NULL);
	rt_query_deinit(&q);
	one_filter("name=eq.a=b", &q);
	assert_cond(&q.where.children[0], "name", RT_QUERY_EQ, false, "a=b", NULL);
	rt_query_deinit(&q);
	/* like: every * is %, other characters untouched */
	one_filter("t=like.a%5C*b*", &q);
	assert_cond(&q.where.children[0], "t", RT_QUERY_LIKE, false, "a\\%b%", NULL);
	rt_query_deinit(&q);
	/* is: keywords in any case, stored lowercase */
	static const char *const is_vals[][2] = {
		{"NULL", "null"}, {"True", "true"}, {"false", "false"}, {"unKnown", "unknown"}};
	for (size_t i = 0; i < 4; i++) {
		char qs[64];
		snprintf(qs, sizeof qs, "c=is.%s", is_vals[i][0]);
		one_filter(qs, &q);
		assert_cond(&q.where.children[0], "c", RT_QUERY_IS, false, is_vals[i][1], NULL);
		rt_query_deinit(&q);
	}
	/* in: quoted elements with escapes, raw elements kept as they are */
	one_filter("c=in.(%22a%5C%22b%22,%20x%20,,%22%22)", &q);
	assert_cond(&q.where.children[0], "c", RT_QUERY_IN, false, "a\"b", " x ", "", "", NULL);
	rt_query_deinit(&q);
	one_filter("c=in.()", &q);
	assert_cond(&q.where.children[0], "c", RT_QUERY_IN, false, NULL);
	assert_int_equal(q.where.children[0].n_values, 0);
	rt_query_deinit(&q);
	one_filter("c=in.(%22a%22b)", &q); /* text after a quote: raw */
	assert_cond(&q.where.children[0], "c", RT_QUERY_IN, false, "\"a\"b", NULL);
	rt_query_deinit(&q);
	one_filter("c=in.(a(b)", &q);
	assert_cond(&q.where.children[0], "c", RT_QUERY_IN, false, "a(b", NULL);
	rt_query_deinit(&q);
	/* Names: spaces, dashes, $, non-ASCII, quoted */
	one_filter("first+name=eq.x", &q);
	assert_string_equal(q.where.children[0].column, "first name");
	rt_query_deinit(&q);
	one_filter("my-col$=eq.x", &q);
	assert_string_equal(q.where.children[0].column, "my-col$");
	rt_query_deinit(&q);
	one_filter("caf%C3%A9=eq.x", &q);
	assert_string_equal(q.where.children[0].column, "caf\xc3\xa9");
	rt_query_deinit(&q);
	one_filter("%22a.b%22=eq.x", &q);
	assert_string_equal(q.where.children[0].column, "a.b");
	rt_query_deinit(&q);
	/* A column named like a keyword is still a column. */
	one_filter("ordered=eq.1", &q);
	assert_string_equal(q.where.children[0].column, "ordered");
	rt_query_deinit(&q);
}

static void test_filter_errors(void **state)
{
	parse_err("id=eqx.1", "failed to parse filter (eqx.1)");
	parse_err("id=EQ.1", "failed to parse filter (EQ.1)");
	parse_err("id=eq", "failed to parse filter (eq)");
	parse_err("id=", "failed to parse filter ()");
	parse_err("id", "failed to parse filter ()");
	parse_err("id=1", "failed to parse filter (1)");
	parse_err("id=not.1", "failed to parse filter (not.1)");
	parse_err("id=not.not.eq.1", "failed to parse filter (not.not.eq.1)");
	parse_err("id=in.1,2", "failed to parse filter (in.1,2)");
	parse_err("id=in.(1,2", "failed to parse filter (in.(1,2)");
	parse_err("id=in.(1)x", "failed to parse filter (in.(1)x)");
	parse_err("id=in.(1))", "failed to parse filter (in.(1)))");
	parse_err("id=is.maybe", "failed to parse filter (is.maybe)");
	parse_err("id=is.null.x", "failed to parse filter (is.null.x)");
	parse_err("id=is.", "failed to parse filter (is.)");
	parse_err("=eq.1", "failed to parse tree path ()");
	parse_err("a%40b=eq.1", "failed to parse tree path (a@b)");
	parse_err("a-=eq.1", "failed to parse tree path (a-)");
	parse_err("%22a=eq.1", "failed to parse tree path (\"a)");
	/* The first failing parameter is reported. */
	parse_err("a=eq.1&b=bad.1&c=worse.2", "failed to parse filter (bad.1)");
}

static void test_logic_trees(void **state)
{
	struct rt_query q;
	/* not.or / not.and at the top and inside; negated conditions inside */
	parse_ok("not.or=(a.eq.1,not.and(b.gt.2,c.not.lt.3))&and=(d.is.null)", &q);
	assert_int_equal(q.where.n_children, 2);
	const struct rt_query_node *g = &q.where.children[0];
	assert_int_equal(g->kind, RT_QUERY_OR);
	assert_true(g->is_negated);
	assert_cond(&g->children[0], "a", RT_QUERY_EQ, false, "1", NULL);
	const struct rt_query_node *a = &g->children[1];
	assert_int_equal(a->kind, RT_QUERY_AND);
	assert_true(a->is_negated);
	assert_cond(&a->children[0], "b", RT_QUERY_GT, false, "2", NULL);
	assert_cond(&a->children[1], "c", RT_QUERY_LT, true, "3", NULL);
	g = &q.where.children[1];
	assert_int_equal(g->kind, RT_QUERY_AND);
	assert_false(g->is_negated);
	assert_int_equal(g->n_children, 1);
	assert_cond(&g->children[0], "d", RT_QUERY_IS, false, "null", NULL);
	rt_query_deinit(&q);
	/* not.and */
	parse_ok("not.and=(a.eq.1)", &q);
	assert_int_equal(q.where.children[0].kind, RT_QUERY_AND);
	assert_true(q.where.children[0].is_negated);
	rt_query_deinit(&q);

	/* Values inside a tree: quoted, {arrays}, in-lists, like, blanks */
	parse_ok("or=(name.eq.%22a,b%22,name.eq.%22x)y%22,tags.eq.{a,b},id.in.(1,%222,3%22),"
		 "t.like.*z*,t.ilike.%22*,*%22,n.eq.1%20)",
		 &q);
	g = &q.where.children[0];
	assert_int_equal(g->n_children, 7);
	assert_cond(&g->children[0], "name", RT_QUERY_EQ, false, "a,b", NULL);
	assert_cond(&g->children[1], "name", RT_QUERY_EQ, false, "x)y", NULL);
	assert_cond(&g->children[2], "tags", RT_QUERY_EQ, false, "{a,b}", NULL);
	assert_cond(&g->children[3], "id", RT_QUERY_IN, false, "1", "2,3", NULL);
	assert_cond(&g->children[4], "t", RT_QUERY_LIKE, false, "%z%", NULL);
	assert_cond(&g->children[5], "t", RT_QUERY_ILIKE, false, "%,%", NULL);
	assert_cond(&g->children[6], "n", RT_QUERY_EQ, false, "1 ", NULL);
	rt_query_deinit(&q);
	/* Blanks around names, commas and parentheses; a raw value keeps its own. */
	parse_ok("or=%20(%20a.eq.1%20,%20and%20(%20b%20.eq.2)%20)%20", &q);
	g = &q.where.children[0];
	assert_int_equal(g->n_children, 2);
	assert_cond(&g->children[0], "a", RT_QUERY_EQ, false, "1 ", NULL);
	assert_int_equal(g->children[1].kind, RT_QUERY_AND);
	assert_cond(&g->children[1].children[0], "b", RT_QUERY_EQ, false, "2", NULL);
	rt_query_deinit(&q);
	/* A quoted value must end at ',' or ')': otherwise it is raw. */
	parse_ok("or=(a.eq.%22x%22y,b.eq.2)", &q);
	assert_cond(&q.where.children[0].children[0], "a", RT_QUERY_EQ, false, "\"x\"y", NULL);
	rt_query_deinit(&q);
	/* Columns named and/or/not are conditions, not groups. */
	parse_ok("or=(and.eq.1,or.is.null,not.not.eq.2)", &q);
	g = &q.where.children[0];
	assert_cond(&g->children[0], "and", RT_QUERY_EQ, false, "1", NULL);
	assert_cond(&g->children[1], "or", RT_QUERY_IS, false, "null", NULL);
	assert_cond(&g->children[2], "not", RT_QUERY_EQ, true, "2", NULL);
	rt_query_deinit(&q);
	/* Quoted column names */
	parse_ok("and=(%22a.b%22.eq.1)", &q);
	assert_cond(&q.where.children[0].children[0], "a.b", RT_QUERY_EQ, false, "1", NULL);
	rt_query_deinit(&q);
}

static void test_logic_errors(void **state)
{
	parse_err("or=(a.eq.1", "failed to parse logic tree ((a.eq.1)");
	parse_err("or=(a.eq.1))", "failed to parse logic tree ((a.eq.1)))");
	parse_err("or=((a.eq.1)", "failed to parse logic tree (((a.eq.1))");
	parse_err("or=a.eq.1", "failed to parse logic tree (a.eq.1)");
	parse_err("or=", "failed to parse logic tree ()");
	parse_err("or=()", "failed to parse logic tree (())");
	parse_err("or=(a.eq.1,)", "failed to parse logic tree ((a.eq.1,))");
	parse_err("or=(,a.eq.1)", "failed to parse logic tree ((,a.eq.1))");
	parse_err("and=(a.eqx.1)", "failed to parse logic tree ((a.eqx.1))");
	parse_err("and=(a.cs.{1})", "failed to parse logic tree ((a.cs.{1}))");
	parse_err("and=(a)", "failed to parse logic tree ((a))");
	parse_err("and=(a.eq.1)x", "failed to parse logic tree ((a.eq.1)x)");
	parse_err("and=(xor(a.eq.1))", "failed to parse logic tree ((xor(a.eq.1)))");
	parse_err("and=(a.eq.{1}x)", "failed to parse logic tree ((a.eq.{1}x))");
	parse_err("and=(a.in.(1,2)", "failed to parse logic tree ((a.in.(1,2))");
	parse_err("and=(a.is.nul)", "failed to parse logic tree ((a.is.nul))");
	parse_err("and=(a-%3Eb.eq.1)", "failed to parse logic tree ((a->b.eq.1))");
	parse_err("or=(a.eq.1)&and=(b.eq.2", "failed to parse logic tree ((b.eq.2)");
}

static void test_depth_and_node_limits(void **state)
{
	struct rt_query q;
	struct rt_buf b;
	rt_buf_init(&b);
	/* and=(x.eq.0,and(x.eq.1,and(…))) with 8 levels is fine, 9 is not. */
	for (int levels = RT_QUERY_MAX_DEPTH; levels <= RT_QUERY_MAX_DEPTH + 1; levels++) {
		rt_buf_reset(&b);
		rt_buf_append_str(&b, "and=(x.eq.0");
		for (int i = 1; i < levels; i++)
			rt_buf_printf(&b, ",%s(x.eq.%d", i % 2 ? "or" : "and", i);
		for (int i = 0; i < levels; i++)
			rt_buf_append_byte(&b, ')');
		if (levels == RT_QUERY_MAX_DEPTH) {
			parse_ok(b.data, &q);
			const struct rt_query_node *n = &q.where.children[0];
			for (int i = 1; i < levels; i++)
				n = &n->children[1];
			assert_cond(&n->children[0], "x", RT_QUERY_EQ, false, "7", NULL);
			rt_query_deinit(&q);
		} else {
			parse_err(b.data, "logic tree nested deeper than 8 levels");
		}
	}
	/* Nodes: a group and 255 conditions make 256. */
	for (int conds = RT_QUERY_MAX_NODES - 1; conds <= RT_QUERY_MAX_NODES; conds++) {
		rt_buf_reset(&b);
		rt_buf_append_str(&b, "or=(");
		for (int i = 0; i < conds; i++)
			rt_buf_printf(&b, "%sc.eq.%d", i ? "," : "", i);
		rt_buf_append_str(&b, ")");
		if (conds < RT_QUERY_MAX_NODES) {
			parse_ok(b.data, &q);
			assert_int_equal(q.where.children[0].n_children, conds);
			rt_query_deinit(&q);
		} else {
			parse_err(b.data, "too many filter nodes (maximum 256)");
		}
	}
	/* Top-level filters count too. */
	for (int n = RT_QUERY_MAX_NODES; n <= RT_QUERY_MAX_NODES + 1; n++) {
		rt_buf_reset(&b);
		for (int i = 0; i < n; i++)
			rt_buf_printf(&b, "%sc%d=eq.%d", i ? "&" : "", i, i);
		if (n == RT_QUERY_MAX_NODES) {
			parse_ok(b.data, &q);
			assert_int_equal(q.where.n_children, n);
			rt_query_deinit(&q);
		} else {
			parse_err(b.data, "too many filter nodes (maximum 256)");
		}
	}
	/* A failing condition inside a group is not retried as a group when a
	 * limit stopped it. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "or=(c.in.(");
	for (int i = 0; i <= RT_QUERY_MAX_LIST; i++)
		rt_buf_printf(&b, "%s%d", i ? "," : "", i);
	rt_buf_append_str(&b, "))");
	parse_err(b.data, "too many items in `in` list (maximum 1000)");
	rt_buf_deinit(&b);
}

static void test_list_limits(void **state)
{
	struct rt_query q;
	struct rt_buf b;
	rt_buf_init(&b);
	static const struct {
		const char *prefix, *suffix, *msg;
		char quote; /* around each item "c<i>" */
	} lists[] = {
		{"c=in.(", ")", "too many items in `in` list (maximum 1000)", 0},
		{"select=", "", "too many items in select (maximum 1000)", 0},
		{"order=", "", "too many items in order (maximum 1000)", 0},
		{"on_conflict=", "", "too many items in on_conflict (maximum 1000)", 0},
		{"columns=", "", "too many items in columns (maximum 1000)", '"'},
	};
	for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
		for (int n = RT_QUERY_MAX_LIST; n <= RT_QUERY_MAX_LIST + 1; n++) {
			rt_buf_reset(&b);
			rt_buf_append_str(&b, lists[l].prefix);
			for (int i = 0; i < n; i++) {
				if (i)
					rt_buf_append_byte(&b, ',');
				if (lists[l].quote)
					rt_buf_append_byte(&b, (uint8_t)lists[l].quote);
				rt_buf_printf(&b, "c%d", i);
				if (lists[l].quote)
					rt_buf_append_byte(&b, (uint8_t)lists[l].quote);
			}
			rt_buf_append_str(&b, lists[l].suffix);
			if (n == RT_QUERY_MAX_LIST) {
				parse_ok(b.data, &q);
				size_t got = q.where.n_children
						     ? q.where.children[0].n_values
						     : q.n_select + q.n_order + q.n_on_conflict +
							       q.n_columns;
				assert_int_equal(got, n);
				rt_query_deinit(&q);
			} else {
				parse_err(b.data, lists[l].msg);
			}
		}
	}
	/* The query string itself. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "c=eq.");
	while (b.len < RT_QUERY_MAX_QUERY)
		rt_buf_append_byte(&b, 'x');
	parse_ok(b.data, &q);
	rt_query_deinit(&q);
	rt_buf_append_byte(&b, 'x');
	parse_err(b.data, "query string is longer than 65536 bytes");
	rt_buf_deinit(&b);
}

static void test_select(void **state)
{
	struct rt_query q;
	parse_ok("select=*,id", &q);
	assert_int_equal(q.n_select, 2);
	assert_string_equal(q.select[0].column, "*");
	assert_string_equal(q.select[1].column, "id");
	rt_query_deinit(&q);
	parse_ok("select=%22x+y%22:%22a,b%22,+c+:+d+,first+name", &q);
	assert_int_equal(q.n_select, 3);
	assert_string_equal(q.select[0].alias, "x y");
	assert_string_equal(q.select[0].column, "a,b");
	assert_string_equal(q.select[1].alias, "c");
	assert_string_equal(q.select[1].column, "d");
	assert_string_equal(q.select[2].column, "first name");
	assert_null(q.select[2].alias);
	rt_query_deinit(&q);
	/* "select=" is no select: all columns. */
	parse_ok("select=", &q);
	assert_null(q.select);
	assert_int_equal(q.n_select, 0);
	rt_query_deinit(&q);
	/* A repeated select replaces the first. */
	parse_ok("select=a,b&select=c", &q);
	assert_int_equal(q.n_select, 1);
	assert_string_equal(q.select[0].column, "c");
	rt_query_deinit(&q);

	parse_err("select=author(*)", "failed to parse select parameter (author(*)): "
				      "embedded resources are not supported");
	parse_err("select=*,a:author!inner(id)", "failed to parse select parameter "
						 "(*,a:author!inner(id)): embedded resources "
						 "are not supported");
	parse_err("select=id::text",
		  "failed to parse select parameter (id::text): casts are not supported");
	parse_err("select=data-%3Ea",
		  "failed to parse select parameter (data->a): JSON paths are not supported");
	parse_err("select=...author(*)", "failed to parse select parameter (...author(*))");
	parse_err("select=a:", "failed to parse select parameter (a:)");
	parse_err("select=:a", "failed to parse select parameter (:a)");
	parse_err("select=a:*", "failed to parse select parameter (a:*)");
	parse_err("select=id,,name", "failed to parse select parameter (id,,name)");
	parse_err("select=id,", "failed to parse select parameter (id,)");
	parse_err("select=*x", "failed to parse select parameter (*x)");
	parse_err("select=a.b", "failed to parse select parameter (a.b)");
}

static void assert_item(const struct rt_query_select *it, const char *column, const char *alias,
			enum rt_query_agg agg)
{
	if (column)
		assert_string_equal(it->column, column);
	else
		assert_null(it->column);
	if (alias)
		assert_string_equal(it->alias, alias);
	else
		assert_null(it->alias);
	assert_int_equal(it->agg, agg);
}

static void test_select_aggregates(void **state)
{
	struct rt_query q;
	/* .select('category, amount.sum(), count()') */
	parse_ok("select=category%2C+amount.sum%28%29%2C+count%28%29", &q);
	assert_int_equal(q.n_select, 3);
	assert_item(&q.select[0], "category", NULL, RT_QUERY_AGG_NONE);
	assert_item(&q.select[1], "amount", NULL, RT_QUERY_AGG_SUM);
	assert_item(&q.select[2], NULL, NULL, RT_QUERY_AGG_COUNT);
	rt_query_deinit(&q);
	parse_ok("select=n:count(),a.count(),a.avg(),lo:a.min(),hi:a.max(),%22x.y%22.sum(),k:c", &q);
	assert_int_equal(q.n_select, 7);
	assert_item(&q.select[0], NULL, "n", RT_QUERY_AGG_COUNT);
	assert_item(&q.select[1], "a", NULL, RT_QUERY_AGG_COUNT);
	assert_item(&q.select[2], "a", NULL, RT_QUERY_AGG_AVG);
	assert_item(&q.select[3], "a", "lo", RT_QUERY_AGG_MIN);
	assert_item(&q.select[4], "a", "hi", RT_QUERY_AGG_MAX);
	assert_item(&q.select[5], "x.y", NULL, RT_QUERY_AGG_SUM);
	assert_item(&q.select[6], "c", "k", RT_QUERY_AGG_NONE);
	rt_query_deinit(&q);
	/* A column named count is a column; count.sum() its sum. */
	parse_ok("select=count,count.sum(),*", &q);
	assert_item(&q.select[0], "count", NULL, RT_QUERY_AGG_NONE);
	assert_item(&q.select[1], "count", NULL, RT_QUERY_AGG_SUM);
	assert_item(&q.select[2], "*", NULL, RT_QUERY_AGG_NONE);
	rt_query_deinit(&q);
	/* A failed select after a good one leaves nothing. */
	parse_err("select=a.sum()&select=a.total()", "failed to parse select parameter (a.total())");

	parse_err("select=*.sum()", "failed to parse select parameter (*.sum())");
	parse_err("select=a.SUM()", "failed to parse select parameter (a.SUM())");
	parse_err("select=a.sum", "failed to parse select parameter (a.sum)");
	parse_err("select=a.sum(b)", "failed to parse select parameter (a.sum(b))");
	parse_err("select=a.median()", "failed to parse select parameter (a.median())");
	parse_err("select=count(*)", "failed to parse select parameter (count(*)): "
				     "embedded resources are not supported");
	parse_err("select=count+()", "failed to parse select parameter (count ()): "
				     "embedded resources are not supported");
	parse_err("select=count()::text",
		  "failed to parse select parameter (count()::text): casts are not supported");
	parse_err("select=a.sum()::text",
		  "failed to parse select parameter (a.sum()::text): casts are not supported");
	parse_err("select=a::int.sum()",
		  "failed to parse select parameter (a::int.sum()): casts are not supported");
	parse_err("select=a.sum().max()", "failed to parse select parameter (a.sum().max())");
	parse_err("select=a.sum()x", "failed to parse select parameter (a.sum()x)");
	parse_err("select=a.sum()(b)", "failed to parse select parameter (a.sum()(b)): "
				       "embedded resources are not supported");
	parse_err("select=x:*.count()", "failed to parse select parameter (x:*.count())");
	rt_query_deinit(&q);
}

static void test_order_limit_offset(void **state)
{
	struct rt_query q;
	parse_ok("order=a.nullslast,%22b+c%22.desc,+d+", &q);
	assert_int_equal(q.n_order, 3);
	assert_string_equal(q.order[0].column, "a");
	assert_false(q.order[0].is_desc);
	assert_int_equal(q.order[0].nulls, RT_QUERY_NULLS_LAST);
	assert_string_equal(q.order[1].column, "b c");
	assert_true(q.order[1].is_desc);
	assert_string_equal(q.order[2].column, "d");
	rt_query_deinit(&q);
	parse_ok("order=a&order=b.desc", &q); /* the last one wins */
	assert_int_equal(q.n_order, 1);
	assert_string_equal(q.order[0].column, "b");
	rt_query_deinit(&q);

	parse_err("order=a.sideways", "failed to parse order (a.sideways)");
	parse_err("order=a.desc.nullsfirst.x", "failed to parse order (a.desc.nullsfirst.x)");
	parse_err("order=a.ascending", "failed to parse order (a.ascending)");
	parse_err("order=a.nullsfirst.desc", "failed to parse order (a.nullsfirst.desc)");
	parse_err("order=", "failed to parse order ()");
	parse_err("order=a,", "failed to parse order (a,)");
	parse_err("order=a-%3Eb", "failed to parse order (a->b)");

	parse_ok("limit=0&offset=0", &q);
	assert_int_equal(q.limit, 0);
	assert_int_equal(q.offset, 0);
	rt_query_deinit(&q);
	parse_ok("limit=9223372036854775807&offset=007", &q);
	assert_int_equal(q.limit, 9223372036854775807LL);
	assert_int_equal(q.offset, 7);
	rt_query_deinit(&q);
	parse_err("limit=-1", "failed to parse limit parameter (-1)");
	parse_err("limit=abc", "failed to parse limit parameter (abc)");
	parse_err("limit=", "failed to parse limit parameter ()");
	parse_err("limit=1.5", "failed to parse limit parameter (1.5)");
	parse_err("limit=+1", "failed to parse limit parameter ( 1)");
	parse_err("limit=%2B1", "failed to parse limit parameter (+1)");
	parse_err("limit=9223372036854775808", "failed to parse limit parameter "
					       "(9223372036854775808)");
	parse_err("offset=1x", "failed to parse offset parameter (1x)");
}

static void test_percent_encoding(void **state)
{
	struct rt_query q;
	/* Keys and values are decoded before parsing, '+' is a space. */
	one_filter("%69d=eq.%31", &q);
	assert_cond(&q.where.children[0], "id", RT_QUERY_EQ, false, "1", NULL);
	rt_query_deinit(&q);
	one_filter("t=eq.a+b%2Bc%20d", &q);
	assert_cond(&q.where.children[0], "t", RT_QUERY_EQ, false, "a b+c d", NULL);
	rt_query_deinit(&q);
	/* An encoded logic key is still the logic key. */
	parse_ok("%6Fr=%28a.eq.1%29", &q);
	assert_int_equal(q.where.children[0].kind, RT_QUERY_OR);
	rt_query_deinit(&q);
	/* An encoded '&' or '=' is data, not structure. */
	one_filter("t=eq.a%26b%3Dc", &q);
	assert_cond(&q.where.children[0], "t", RT_QUERY_EQ, false, "a&b=c", NULL);
	rt_query_deinit(&q);
	/* Empty parameters are skipped. */
	parse_ok("&&select=*&&id=eq.1&", &q);
	assert_int_equal(q.n_select, 1);
	assert_int_equal(q.where.n_children, 1);
	rt_query_deinit(&q);

	parse_err("t=eq.%zz", "failed to decode query parameter (t=eq.%zz)");
	parse_err("t=eq.%2", "failed to decode query parameter (t=eq.%2)");
	parse_err("t%=eq.1", "failed to decode query parameter (t%=eq.1)");
	parse_err("t=eq.a%00b", "failed to decode query parameter (t=eq.a%00b)");
}

static void test_lifecycle(void **state)
{
	struct rt_query q;
	char err[64] = "untouched";
	/* No query, and an empty one: the empty query, no error written. */
	memset(&q, 0x5a, sizeof q);
	assert_int_equal(rt_query_parse(NULL, 0, &q, err, sizeof err), 0);
	assert_empty(&q);
	assert_string_equal(err, "untouched");
	rt_query_deinit(&q);
	memset(&q, 0x5a, sizeof q);
	assert_int_equal(rt_query_parse("", 0, &q, err, sizeof err), 0);
	assert_empty(&q);
	rt_query_deinit(&q);
	/* len is honoured: no NUL terminator needed. */
	assert_int_equal(rt_query_parse("limit=12&junk", 8, &q, err, sizeof err), 0);
	assert_int_equal(q.limit, 12);
	assert_int_equal(q.where.n_children, 0);
	/* deinit resets, so a second one is harmless. */
	rt_query_deinit(&q);
	assert_empty(&q);
	rt_query_deinit(&q);
	rt_query_deinit(NULL);

	/* A failure after much was built frees all of it (ASan checks for leaks). */
	const char *late = "select=a,b:c&order=a.desc&limit=5&offset=2&on_conflict=a&"
			   "columns=%22a%22&or=(x.eq.1,and(y.in.(1,2),z.like.*a))&w=eq.1&"
			   "v=bad.1";
	assert_int_equal(rt_query_parse(late, strlen(late), &q, err, sizeof err), -1);
	assert_string_equal(err, "failed to parse filter (bad.1)");
	assert_empty(&q);
	rt_query_deinit(&q);
	/* Failures at every depth of a tree. */
	const char *deep = "or=(a.eq.1,and(b.in.(1,2),or(c.like.x,not.and(d.eq.1,e.eqx.2))))";
	assert_int_equal(rt_query_parse(deep, strlen(deep), &q, err, sizeof err), -1);
	assert_empty(&q);
	/* The error is truncated to its buffer; NULL is allowed. */
	char small[12];
	assert_int_equal(rt_query_parse("id=eqx.1", 8, &q, small, sizeof small), -1);
	assert_string_equal(small, "failed to p");
	assert_int_equal(rt_query_parse("id=eqx.1", 8, &q, NULL, 0), -1);
	assert_empty(&q);
	/* A struct reused without deinit between successful parses would leak:
	 * parse always starts from scratch, so deinit once per success. */
	parse_ok("a=eq.1", &q);
	rt_query_deinit(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_supabase_js_filters),
		cmocka_unit_test(test_supabase_js_logic),
		cmocka_unit_test(test_supabase_js_transforms),
		cmocka_unit_test(test_supabase_js_writes),
		cmocka_unit_test(test_supabase_js_unsupported),
		cmocka_unit_test(test_filter_values),
		cmocka_unit_test(test_filter_errors),
		cmocka_unit_test(test_logic_trees),
		cmocka_unit_test(test_logic_errors),
		cmocka_unit_test(test_depth_and_node_limits),
		cmocka_unit_test(test_list_limits),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_select_aggregates),
		cmocka_unit_test(test_order_limit_offset),
		cmocka_unit_test(test_percent_encoding),
		cmocka_unit_test(test_lifecycle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
