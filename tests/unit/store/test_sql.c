/*
 * The SQL builder (src/store/sql.h): for queries parsed by rt_query_parse,
 * as the stores get them, the exact SQL text and binds of both dialects —
 * the text src/store/sqlite.c and src/store/pg.c run — for filters (nested
 * and/or/not, in, like/ilike, is), order, limit, reads and counts, inserts
 * and upserts, updates, deletes, the statements of writes with a base, a
 * filter ANDed with a policy predicate, and the errors.
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

#include "common/alloc.h"
#include "store/sql.h"
#include "store/store_int.h"

static struct rt_store_column t_cols[] = {
	{"id", "int8", true, false},    {"name", "text", false, true},
	{"score", "float8", false, true}, {"done", "bool", false, true},
	{"we\"ird", "text", false, true},
};
static const struct rt_store_table t_tbl = {"public", "t", t_cols, 5};

static struct rt_store_column pair_cols[] = {
	{"a", "int4", true, false}, {"b", "text", true, false}, {"v", "jsonb", false, true}};
static const struct rt_store_table pair_tbl = {"app", "pair", pair_cols, 3};

static const struct rt_sql_dialect *const SQ = &rt_sql_sqlite;
static const struct rt_sql_dialect *const PG = &rt_sql_postgres;

static void parse(const char *qs, struct rt_query *q)
{
	char err[256];
	if (rt_query_parse(qs, strlen(qs), q, err, sizeof err)) {
		print_error("parse %s: %s\n", qs, err);
		fail();
	}
}

static json_t *j(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
	assert_non_null(v);
	return v;
}

/* "type=text" for a text bind, "type:json" for a JSON one, joined by " | ". */
static char *binds_str(const struct rt_sql_binds *bv)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "");
	for (size_t i = 0; i < bv->n; i++) {
		const struct rt_sql_bind *v = &bv->v[i];
		if (i)
			rt_buf_append_str(&b, " | ");
		assert_ptr_equal(bv->texts[i], v->text);
		if (v->kind == RT_SQL_BIND_TEXT) {
			rt_buf_printf(&b, "%s=%s", v->type, v->text);
		} else {
			char *s = v->json ? json_dumps(v->json, JSON_COMPACT | JSON_ENCODE_ANY)
					  : rt_xstrdup("(none)");
			rt_buf_printf(&b, "%s:%s", v->type, s);
			free(s);
		}
	}
	return rt_buf_detach(&b, NULL);
}

static void expect(const char *what, const struct rt_buf *sql, const struct rt_sql_binds *bv,
		   const char *want_sql, const char *want_binds)
{
	char *got_binds = binds_str(bv);
	const char *got_sql = sql->len ? sql->data : "";
	if (strcmp(got_sql, want_sql) || strcmp(got_binds, want_binds)) {
		print_error("%s:\n got  %s\n      [%s]\n want %s\n      [%s]\n", what, got_sql,
			    got_binds, want_sql, want_binds);
		free(got_binds);
		fail();
	}
	free(got_binds);
}

/* The WHERE text of query string qs (its filters) in dialect d. */
static void where_case(const struct rt_sql_dialect *d, const char *qs, const char *want_sql,
		       const char *want_binds)
{
	struct rt_query q;
	parse(qs, &q);
	struct rt_buf b;
	struct rt_sql_binds bv;
	struct rt_store_error e;
	rt_buf_init(&b);
	rt_sql_binds_init(&bv);
	if (rt_sql_where(&b, &bv, d, &t_tbl, &q.where, NULL, &e)) {
		print_error("%s %s: %s %s\n", d->name, qs, e.code, e.message);
		fail();
	}
	char what[512];
	snprintf(what, sizeof what, "%s where %s", d->name, qs);
	expect(what, &b, &bv, want_sql, want_binds);
	rt_sql_binds_deinit(&bv);
	rt_sql_binds_deinit(&bv); /* harmless twice */
	rt_buf_deinit(&b);
	rt_query_deinit(&q);
}

static void where_err(const char *qs, int status, const char *code, const char *message)
{
	const struct rt_sql_dialect *ds[] = {SQ, PG};
	for (size_t i = 0; i < 2; i++) {
		struct rt_query q;
		parse(qs, &q);
		struct rt_buf b;
		struct rt_sql_binds bv;
		struct rt_store_error e = {0};
		rt_buf_init(&b);
		rt_sql_binds_init(&bv);
		assert_int_equal(rt_sql_where(&b, &bv, ds[i], &t_tbl, &q.where, NULL, &e), -1);
		assert_int_equal(e.status, status);
		assert_string_equal(e.code, code);
		assert_string_equal(e.message, message);
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&b);
		rt_query_deinit(&q);
	}
}

static void test_where_compare(void **state)
{
	where_case(SQ, "", "1", "");
	where_case(PG, "", "TRUE", "");
	where_case(SQ, "id=eq.1", "((\"id\" = ?))", "int8=1");
	where_case(PG, "id=eq.1", "((_t.\"id\" = $1))", "int8=1");
	where_case(SQ, "id=neq.1&score=gt.2.5&score=gte.3&id=lt.9&id=lte.8",
		   "((\"id\" <> ?) AND (\"score\" > ?) AND (\"score\" >= ?) AND (\"id\" < ?) AND "
		   "(\"id\" <= ?))",
		   "int8=1 | float8=2.5 | float8=3 | int8=9 | int8=8");
	where_case(PG, "id=neq.1&score=gt.2.5&score=gte.3&id=lt.9&id=lte.8",
		   "((_t.\"id\" <> $1) AND (_t.\"score\" > $2) AND (_t.\"score\" >= $3) AND "
		   "(_t.\"id\" < $4) AND (_t.\"id\" <= $5))",
		   "int8=1 | float8=2.5 | float8=3 | int8=9 | int8=8");
	where_case(SQ, "name=not.eq.x", "(NOT (\"name\" = ?))", "text=x");
	where_case(PG, "name=not.eq.x", "(NOT (_t.\"name\" = $1))", "text=x");
	/* A quoted identifier doubles its quote. */
	where_case(SQ, "%22we%5C%22ird%22=eq.q", "((\"we\"\"ird\" = ?))", "text=q");
	where_case(PG, "%22we%5C%22ird%22=eq.q", "((_t.\"we\"\"ird\" = $1))", "text=q");
}

static void test_where_is(void **state)
{
	where_case(SQ, "name=is.null&done=is.true&done=is.false&done=is.unknown",
		   "((\"name\" IS NULL) AND (\"done\" IS 1) AND (\"done\" IS 0) AND "
		   "(\"done\" IS NULL))",
		   "");
	where_case(PG, "name=is.null&done=is.true&done=is.false&done=is.unknown",
		   "((_t.\"name\" IS NULL) AND (_t.\"done\" IS TRUE) AND (_t.\"done\" IS FALSE) AND "
		   "(_t.\"done\" IS UNKNOWN))",
		   "");
	where_case(SQ, "done=not.is.NULL", "(NOT (\"done\" IS NULL))", "");
	where_case(PG, "done=not.is.TRUE", "(NOT (_t.\"done\" IS TRUE))", "");
}

static void test_where_in_like(void **state)
{
	where_case(SQ, "id=in.(1,2,3)", "((\"id\" IN (?,?,?)))", "int8=1 | int8=2 | int8=3");
	where_case(PG, "id=in.(1,2,3)", "((_t.\"id\" IN ($1,$2,$3)))", "int8=1 | int8=2 | int8=3");
	where_case(SQ, "name=in.(\"a,b\",c)", "((\"name\" IN (?,?)))", "text=a,b | text=c");
	where_case(SQ, "id=in.()", "((\"id\" IN ()))", "");
	where_case(PG, "id=in.()", "((FALSE))", "");
	where_case(PG, "id=not.in.()", "(NOT (FALSE))", "");
	where_case(SQ, "name=like.a*b", "((\"name\" LIKE ? ESCAPE '\\'))", "text=a%b");
	where_case(PG, "name=like.a*b", "((_t.\"name\"::text LIKE $1))", "text=a%b");
	where_case(SQ, "name=ilike.*X*", "((rt_lower(\"name\") LIKE rt_lower(?) ESCAPE '\\'))",
		   "text=%X%");
	where_case(PG, "name=ilike.*X*", "((_t.\"name\"::text ILIKE $1))", "text=%X%");
	/* like binds as text whatever the column: the pattern is text */
	where_case(SQ, "id=like.1*", "((\"id\" LIKE ? ESCAPE '\\'))", "text=1%");
	where_case(PG, "id=not.like.1*", "(NOT (_t.\"id\"::text LIKE $1))", "text=1%");
}

static void test_where_trees(void **state)
{
	const char *qs = "or=(id.eq.1,and(name.ilike.a*,not.or(score.lt.0,done.is.true)))"
			 "&not.and=(id.in.(4,5),name.not.like.z*)&done=is.false";
	where_case(SQ, qs,
		   "(((\"id\" = ?) OR ((rt_lower(\"name\") LIKE rt_lower(?) ESCAPE '\\') AND NOT "
		   "((\"score\" < ?) OR (\"done\" IS 1)))) AND NOT ((\"id\" IN (?,?)) AND NOT "
		   "(\"name\" LIKE ? ESCAPE '\\')) AND (\"done\" IS 0))",
		   "int8=1 | text=a% | float8=0 | int8=4 | int8=5 | text=z%");
	where_case(PG, qs,
		   "(((_t.\"id\" = $1) OR ((_t.\"name\"::text ILIKE $2) AND NOT ((_t.\"score\" < $3) "
		   "OR (_t.\"done\" IS TRUE)))) AND NOT ((_t.\"id\" IN ($4,$5)) AND NOT "
		   "(_t.\"name\"::text LIKE $6)) AND (_t.\"done\" IS FALSE))",
		   "int8=1 | text=a% | float8=0 | int8=4 | int8=5 | text=z%");
	/* an empty group inside a tree (a policy predicate may hold one) */
	struct rt_query q;
	parse("id=eq.1", &q);
	struct rt_query_node tree = {
		.kind = RT_QUERY_OR,
		.children = (struct rt_query_node[]){q.where.children[0], {.kind = RT_QUERY_AND}},
		.n_children = 2};
	const char *want[] = {"((\"id\" = ?) OR 1)", "((_t.\"id\" = $1) OR TRUE)"};
	const struct rt_sql_dialect *ds[] = {SQ, PG};
	for (size_t i = 0; i < 2; i++) {
		struct rt_buf b;
		struct rt_sql_binds bv;
		struct rt_store_error e;
		rt_buf_init(&b);
		rt_sql_binds_init(&bv);
		assert_int_equal(rt_sql_where(&b, &bv, ds[i], &t_tbl, &tree, NULL, &e), 0);
		expect("empty group", &b, &bv, want[i], "int8=1");
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&b);
	}
	rt_query_deinit(&q);
}

/* A request filter ANDed with a policy predicate (both trees as the stores
 * hold them), the predicate over another qualifier (an upsert's excluded). */
static void test_where_policy(void **state)
{
	struct rt_query req, pol;
	parse("name=eq.x&or=(score.gt.1,score.is.null)", &req);
	parse("id=eq.42&done=not.is.true", &pol);
	struct rt_query_node both = {.kind = RT_QUERY_AND,
				     .children = (struct rt_query_node[]){req.where, pol.where},
				     .n_children = 2};
	const struct rt_sql_dialect *ds[] = {SQ, PG};
	const char *want[] = {
		"(((\"name\" = ?) AND ((\"score\" > ?) OR (\"score\" IS NULL))) AND ((\"id\" = ?) "
		"AND NOT (\"done\" IS 1)))",
		"(((_t.\"name\" = $1) AND ((_t.\"score\" > $2) OR (_t.\"score\" IS NULL))) AND "
		"((_t.\"id\" = $3) AND NOT (_t.\"done\" IS TRUE)))",
	};
	for (size_t i = 0; i < 2; i++) {
		struct rt_buf b;
		struct rt_sql_binds bv;
		struct rt_store_error e;
		rt_buf_init(&b);
		rt_sql_binds_init(&bv);
		assert_int_equal(rt_sql_where(&b, &bv, ds[i], &t_tbl, &both, NULL, &e), 0);
		expect("policy AND", &b, &bv, want[i], "text=x | float8=1 | int8=42");
		/* the predicate alone, over excluded, after what b holds */
		rt_buf_append_str(&b, " AND ");
		assert_int_equal(rt_sql_where(&b, &bv, ds[i], &t_tbl, &pol.where, "excluded", &e), 0);
		const char *tail = strstr(b.data, " AND ((excluded.");
		assert_non_null(tail);
		assert_string_equal(tail, i ? " AND ((excluded.\"id\" = $4) AND NOT (excluded.\"done\" "
					      "IS TRUE))"
					    : " AND ((excluded.\"id\" = ?) AND NOT (excluded.\"done\" "
					      "IS 1))");
		assert_int_equal(bv.n, 4);
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&b);
	}
	rt_query_deinit(&req);
	rt_query_deinit(&pol);

	/* kept: the texts of a predicate freed after rendering stay valid */
	struct rt_query tmp;
	parse("id=eq.7&name=in.(a,b)", &tmp);
	struct rt_buf b;
	struct rt_sql_binds bv;
	struct rt_store_error e;
	rt_buf_init(&b);
	rt_sql_binds_init(&bv);
	rt_sql_param(&b, &bv, SQ, "text", "first");
	assert_int_equal(rt_sql_where(&b, &bv, SQ, &t_tbl, &tmp.where, NULL, &e), 0);
	rt_sql_binds_keep(&bv, 1);
	assert_ptr_not_equal(bv.v[1].text, tmp.where.children[0].values[0]);
	rt_query_deinit(&tmp);
	expect("kept", &b, &bv, "?((\"id\" = ?) AND (\"name\" IN (?,?)))",
	       "text=first | int8=7 | text=a | text=b");
	assert_ptr_equal(bv.texts[2], bv.v[2].text);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&b);
}

static void test_where_errors(void **state)
{
	where_err("nope=eq.1", 400, "42703", "column t.nope does not exist");
	where_err("or=(id.eq.1,and(name.eq.a,nope.gt.2))", 400, "42703",
		  "column t.nope does not exist");
	/* a predicate node the parser would not produce: an `is` value outside the four */
	struct rt_query q;
	parse("done=is.null", &q);
	free(q.where.children[0].values[0]);
	q.where.children[0].values[0] = rt_xstrdup("maybe");
	const struct rt_sql_dialect *ds[] = {SQ, PG};
	for (size_t i = 0; i < 2; i++) {
		struct rt_buf b;
		struct rt_sql_binds bv;
		struct rt_store_error e = {0};
		rt_buf_init(&b);
		rt_sql_binds_init(&bv);
		assert_int_equal(rt_sql_where(&b, &bv, ds[i], &t_tbl, &q.where, NULL, &e), -1);
		assert_string_equal(e.code, "PGRST100");
		assert_string_equal(e.message, "failed to parse filter (is.maybe)");
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&b);
	}
	rt_query_deinit(&q);
}

static void order_case(const struct rt_sql_dialect *d, const char *qs, const char *want)
{
	struct rt_query q;
	parse(qs, &q);
	struct rt_buf b;
	struct rt_sql_binds bv;
	struct rt_store_error e;
	rt_buf_init(&b);
	rt_sql_binds_init(&bv);
	assert_int_equal(rt_sql_check_order(&t_tbl, &q, &e), 0);
	assert_int_equal(rt_sql_order(&b, d, &t_tbl, &q, &e), 0);
	rt_sql_limit(&b, &q);
	expect(qs, &b, &bv, want, "");
	rt_buf_deinit(&b);
	rt_query_deinit(&q);
}

static void test_order_limit(void **state)
{
	order_case(SQ, "", " LIMIT 10000 OFFSET 0");
	order_case(PG, "limit=5&offset=10", " LIMIT 5 OFFSET 10");
	order_case(SQ, "limit=20000", " LIMIT 10000 OFFSET 0");
	order_case(PG, "limit=0", " LIMIT 0 OFFSET 0");
	order_case(SQ, "order=id,name.desc,score.asc.nullsfirst,done.desc.nullslast&limit=3",
		   " ORDER BY \"id\" ASC NULLS LAST, \"name\" DESC NULLS FIRST, \"score\" ASC NULLS "
		   "FIRST, \"done\" DESC NULLS LAST LIMIT 3 OFFSET 0");
	order_case(PG, "order=id,name.desc,score.asc.nullsfirst,done.desc.nullslast&limit=3",
		   " ORDER BY _t.\"id\" ASC, _t.\"name\" DESC, _t.\"score\" ASC NULLS FIRST, "
		   "_t.\"done\" DESC NULLS LAST LIMIT 3 OFFSET 0");
	struct rt_buf b;
	rt_buf_init(&b);
	rt_sql_limit(&b, NULL);
	assert_string_equal(b.data, " LIMIT 10000 OFFSET 0");
	rt_buf_deinit(&b);

	struct rt_query q;
	parse("order=nope.desc", &q);
	struct rt_store_error e = {0};
	assert_int_equal(rt_sql_check_order(&t_tbl, &q, &e), -1);
	assert_string_equal(e.code, "42703");
	assert_string_equal(e.message, "column t.nope does not exist");
	rt_buf_init(&b);
	assert_int_equal(rt_sql_order(&b, PG, &t_tbl, &q, &e), -1);
	rt_buf_deinit(&b);
	rt_query_deinit(&q);
}

/* A read as the store composes it: the projection, the WHERE rt_sql_where
 * made, rt_sql_read; SQLite's count is its own statement. */
static void read_case(const struct rt_sql_dialect *d, const char *qs, bool wants_count,
		      const char *want, const char *want_binds, const char *want_count)
{
	struct rt_query q;
	parse(qs, &q);
	struct rt_store_output *outs = NULL;
	size_t n;
	bool is_grouped;
	struct rt_store_error e;
	assert_int_equal(rt_store_outputs(&t_tbl, &q, &outs, &n, &is_grouped, &e), 0);
	struct rt_buf where, b;
	struct rt_sql_binds bv;
	rt_buf_init(&where);
	rt_buf_init(&b);
	rt_sql_binds_init(&bv);
	assert_int_equal(rt_sql_where(&where, &bv, d, &t_tbl, &q.where, NULL, &e), 0);
	assert_int_equal(
		rt_sql_read(&b, d, &t_tbl, outs, n, is_grouped, where.data, &q, wants_count, &e), 0);
	expect(qs, &b, &bv, want, want_binds);
	rt_buf_reset(&b);
	rt_sql_count(&b, d, &t_tbl, where.data);
	expect(qs, &b, &bv, want_count, want_binds);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&where);
	rt_buf_deinit(&b);
	free(outs);
	rt_query_deinit(&q);
}

static void test_read(void **state)
{
	read_case(SQ, "select=id,label:name&name=eq.x&order=id.desc&limit=2&offset=1", true,
		  "SELECT \"id\",\"name\" FROM \"t\" WHERE ((\"name\" = ?)) ORDER BY \"id\" DESC "
		  "NULLS FIRST LIMIT 2 OFFSET 1",
		  "text=x", "SELECT count(*) FROM \"t\" WHERE ((\"name\" = ?))");
	read_case(PG, "select=id,label:name&name=eq.x&order=id.desc&limit=2&offset=1", true,
		  "SELECT coalesce((SELECT json_agg(_r) FROM (SELECT _t.\"id\" AS \"id\",_t.\"name\" "
		  "AS \"label\" FROM \"public\".\"t\" _t WHERE ((_t.\"name\" = $1)) ORDER BY "
		  "_t.\"id\" DESC LIMIT 2 OFFSET 1) _r), '[]')::text, (SELECT count(*) FROM "
		  "\"public\".\"t\" _t WHERE ((_t.\"name\" = $1)))",
		  "text=x", "SELECT count(*) FROM \"public\".\"t\" _t WHERE ((_t.\"name\" = $1))");
	read_case(PG, "select=id", false,
		  "SELECT coalesce((SELECT json_agg(_r) FROM (SELECT _t.\"id\" AS \"id\" FROM "
		  "\"public\".\"t\" _t WHERE TRUE LIMIT 10000 OFFSET 0) _r), '[]')::text",
		  "", "SELECT count(*) FROM \"public\".\"t\" _t WHERE TRUE");
	read_case(SQ, "", false,
		  "SELECT \"id\",\"name\",\"score\",\"done\",\"we\"\"ird\" FROM \"t\" WHERE 1 LIMIT "
		  "10000 OFFSET 0",
		  "", "SELECT count(*) FROM \"t\" WHERE 1");

	/* No columns (the stores never ask for none, the dialect still has a form),
	 * no WHERE. */
	struct rt_buf b;
	struct rt_store_error e;
	rt_buf_init(&b);
	assert_int_equal(rt_sql_read(&b, SQ, &t_tbl, NULL, 0, false, NULL, NULL, true, &e), 0);
	assert_string_equal(b.data, "SELECT NULL FROM \"t\" LIMIT 10000 OFFSET 0");
	rt_buf_reset(&b);
	assert_int_equal(rt_sql_read(&b, PG, &pair_tbl, NULL, 0, false, "", NULL, false, &e), 0);
	assert_string_equal(b.data, "SELECT coalesce((SELECT json_agg(_r) FROM (SELECT  FROM "
				    "\"app\".\"pair\" _t LIMIT 10000 OFFSET 0) _r), '[]')::text");
	/* an unknown order column fails the read */
	struct rt_query q;
	parse("order=zz", &q);
	rt_buf_reset(&b);
	assert_int_equal(rt_sql_read(&b, SQ, &t_tbl, NULL, 0, false, NULL, &q, false, &e), -1);
	assert_string_equal(e.code, "42703");
	rt_query_deinit(&q);
	rt_buf_deinit(&b);
}

/* Reads with aggregates: the outputs' keys and types, GROUP BY the other
 * columns, order and limit over the groups, the count over the rows. */
static void test_read_aggregates(void **state)
{
	read_case(SQ, "select=name,total:score.sum(),count(),id.avg(),id.min(),score.max()"
		      "&done=is.true&order=name.desc&limit=5",
		  true,
		  "SELECT \"name\",sum(\"score\"),count(*),avg(\"id\"),min(\"id\"),max(\"score\") "
		  "FROM \"t\" WHERE ((\"done\" IS 1)) GROUP BY \"name\" ORDER BY \"name\" DESC "
		  "NULLS FIRST LIMIT 5 OFFSET 0",
		  "", "SELECT count(*) FROM \"t\" WHERE ((\"done\" IS 1))");
	read_case(PG, "select=n:name,total:score.sum(),c:count(),id.count(),id&order=id", true,
		  "SELECT coalesce((SELECT json_agg(_r) FROM (SELECT _t.\"name\" AS \"n\","
		  "sum(_t.\"score\") AS \"total\",count(*) AS \"c\",count(_t.\"id\") AS "
		  "\"count\",_t.\"id\" AS \"id\" FROM \"public\".\"t\" _t WHERE TRUE GROUP BY "
		  "_t.\"name\", _t.\"id\" ORDER BY _t.\"id\" ASC LIMIT 10000 OFFSET 0) _r), "
		  "'[]')::text, (SELECT count(*) FROM \"public\".\"t\" _t WHERE TRUE)",
		  "", "SELECT count(*) FROM \"public\".\"t\" _t WHERE TRUE");
	/* Aggregates alone: no GROUP BY, one row over all the rows. */
	read_case(SQ, "select=count()", false,
		  "SELECT count(*) FROM \"t\" WHERE 1 LIMIT 10000 OFFSET 0", "",
		  "SELECT count(*) FROM \"t\" WHERE 1");

	/* Keys and types of the outputs. */
	struct rt_query q;
	struct rt_store_output *outs;
	size_t n;
	bool is_grouped;
	struct rt_store_error e;
	parse("select=id.sum(),score.sum(),id.avg(),score.avg(),name.min(),s:done.count(),count(),"
	      "%22we%5C%22ird%22.max(),id",
	      &q);
	assert_int_equal(rt_store_outputs(&t_tbl, &q, &outs, &n, &is_grouped, &e), 0);
	assert_true(is_grouped);
	assert_int_equal(n, 9);
	static const char *const want[][2] = {
		{"sum", "numeric"}, {"sum", "float8"}, {"avg", "numeric"}, {"avg", "float8"},
		{"min", "text"},    {"s", "int8"},     {"count", "int8"},  {"max", "text"},
		{"id", "int8"},
	};
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(outs[i].key, want[i][0]);
		assert_string_equal(outs[i].type, want[i][1]);
	}
	assert_null(outs[6].col);
	free(outs);
	rt_query_deinit(&q);
	parse("select=*", &q);
	assert_int_equal(rt_store_outputs(&t_tbl, &q, &outs, &n, &is_grouped, &e), 0);
	assert_false(is_grouped);
	assert_int_equal(n, 5);
	free(outs);
	rt_query_deinit(&q);

	/* PostgreSQL's refusals, before any SQL. */
	static const struct {
		const char *qs, *code, *message;
		int status;
	} bad[] = {
		{"select=name.sum()", "42883", "function sum(text) does not exist", 404},
		{"select=done.avg()", "42883", "function avg(boolean) does not exist", 404},
		{"select=done.max()", "42883", "function max(boolean) does not exist", 404},
		{"select=zz.count()", "42703", "column t.zz does not exist", 400},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		parse(bad[i].qs, &q);
		assert_int_equal(rt_store_outputs(&t_tbl, &q, &outs, &n, &is_grouped, &e), -1);
		assert_string_equal(e.code, bad[i].code);
		assert_string_equal(e.message, bad[i].message);
		assert_int_equal(e.status, bad[i].status);
		free(outs);
		rt_query_deinit(&q);
	}
	/* An order outside the group. */
	parse("select=name,count()&order=score", &q);
	assert_int_equal(rt_store_outputs(&t_tbl, &q, &outs, &n, &is_grouped, &e), 0);
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_sql_read(&b, PG, &t_tbl, outs, n, is_grouped, NULL, &q, false, &e), -1);
	assert_string_equal(e.code, "42803");
	assert_int_equal(e.status, 400);
	assert_string_equal(e.message, "column \"t.score\" must appear in the GROUP BY clause or be "
				       "used in an aggregate function");
	rt_buf_deinit(&b);
	free(outs);
	rt_query_deinit(&q);
}

/* An INSERT of row (JSON) for w with query string qs, then its RETURNING form. */
static void insert_case(const struct rt_sql_dialect *d, enum rt_write_kind kind, const char *qs,
			const char *row_txt, bool is_missing_default, bool is_ignore,
			const char *want, const char *want_binds)
{
	struct rt_query q;
	parse(qs, &q);
	json_t *row = j(row_txt);
	struct rt_write w = {.kind = kind,
			     .table = &t_tbl,
			     .where = &q,
			     .is_missing_default = is_missing_default,
			     .is_ignore_duplicates = is_ignore};
	struct rt_buf b;
	struct rt_sql_binds bv;
	struct rt_store_error e;
	rt_buf_init(&b);
	rt_sql_binds_init(&bv);
	if (rt_sql_insert(&b, &bv, d, &w, row, &e)) {
		print_error("%s insert %s: %s\n", d->name, row_txt, e.message);
		fail();
	}
	char what[256];
	snprintf(what, sizeof what, "%s insert %s %s", d->name, qs, row_txt);
	expect(what, &b, &bv, want, want_binds);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&b);
	json_decref(row);
	rt_query_deinit(&q);
}

static void test_insert(void **state)
{
	insert_case(SQ, RT_WRITE_INSERT, "", "{\"id\":1,\"name\":\"a\"}", false, false,
		    "INSERT INTO \"t\" (\"id\",\"name\") VALUES (?,?)", "int8:1 | text:\"a\"");
	insert_case(PG, RT_WRITE_INSERT, "", "{\"id\":1,\"name\":\"a\"}", false, false,
		    "INSERT INTO \"public\".\"t\" AS _t (\"id\",\"name\") SELECT _j.\"id\",_j.\"name\" "
		    "FROM json_populate_record(NULL::\"public\".\"t\", $1::json) _j",
		    "json={\"id\":1,\"name\":\"a\"}");
	insert_case(SQ, RT_WRITE_INSERT, "", "{}", false, false, "INSERT INTO \"t\" DEFAULT VALUES",
		    "");
	insert_case(PG, RT_WRITE_INSERT, "", "{}", false, false,
		    "INSERT INTO \"public\".\"t\" AS _t DEFAULT VALUES", "");
	/* columns=: missing keys NULL, or left out with missing=default */
	insert_case(SQ, RT_WRITE_INSERT, "columns=id,score", "{\"id\":2}", false, false,
		    "INSERT INTO \"t\" (\"id\",\"score\") VALUES (?,?)", "int8:2 | float8:(none)");
	insert_case(SQ, RT_WRITE_INSERT, "columns=id,score", "{\"id\":2}", true, false,
		    "INSERT INTO \"t\" (\"id\") VALUES (?)", "int8:2");
	insert_case(PG, RT_WRITE_INSERT, "columns=id,score", "{\"id\":2,\"name\":\"n\"}", false,
		    false,
		    "INSERT INTO \"public\".\"t\" AS _t (\"id\",\"score\") SELECT _j.\"id\",_j.\"score\" "
		    "FROM json_populate_record(NULL::\"public\".\"t\", $1::json) _j",
		    "json={\"id\":2,\"name\":\"n\"}");
	/* upserts: on the primary key, on on_conflict, ignoring duplicates, with no column */
	insert_case(SQ, RT_WRITE_UPSERT, "", "{\"id\":1,\"name\":\"a\"}", false, false,
		    "INSERT INTO \"t\" (\"id\",\"name\") VALUES (?,?) ON CONFLICT (\"id\") DO UPDATE "
		    "SET \"id\" = excluded.\"id\",\"name\" = excluded.\"name\"",
		    "int8:1 | text:\"a\"");
	insert_case(PG, RT_WRITE_UPSERT, "on_conflict=name,score", "{\"id\":1,\"name\":\"a\"}",
		    false, false,
		    "INSERT INTO \"public\".\"t\" AS _t (\"id\",\"name\") SELECT _j.\"id\",_j.\"name\" "
		    "FROM json_populate_record(NULL::\"public\".\"t\", $1::json) _j ON CONFLICT "
		    "(\"name\",\"score\") DO UPDATE SET \"id\" = excluded.\"id\",\"name\" = "
		    "excluded.\"name\"",
		    "json={\"id\":1,\"name\":\"a\"}");
	insert_case(SQ, RT_WRITE_UPSERT, "on_conflict=name", "{\"id\":1}", false, true,
		    "INSERT INTO \"t\" (\"id\") VALUES (?) ON CONFLICT (\"name\") DO NOTHING",
		    "int8:1");
	insert_case(PG, RT_WRITE_UPSERT, "", "{}", false, false,
		    "INSERT INTO \"public\".\"t\" AS _t DEFAULT VALUES ON CONFLICT (\"id\") DO NOTHING",
		    "");

	/* several rows writing the same columns: one statement */
	json_t *rows = j("[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":null}]");
	const struct rt_store_column *names[] = {&t_cols[0], &t_cols[1]};
	const struct rt_sql_dialect *ds[] = {SQ, PG};
	const char *want[][2] = {
		{"INSERT INTO \"t\" (\"id\",\"name\") VALUES (?,?),(?,?)",
		 "int8:1 | text:\"a\" | int8:2 | text:null"},
		{"INSERT INTO \"public\".\"t\" AS _t (\"id\",\"name\") SELECT _j.\"id\",_j.\"name\" "
		 "FROM json_populate_recordset(NULL::\"public\".\"t\", $1::json) _j",
		 "json=[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":null}]"},
	};
	for (size_t i = 0; i < 2; i++) {
		struct rt_buf b;
		struct rt_sql_binds bv;
		rt_buf_init(&b);
		rt_sql_binds_init(&bv);
		rt_sql_insert_head_rows(&b, &bv, ds[i], &t_tbl, names, 2, rows);
		expect("insert rows", &b, &bv, want[i][0], want[i][1]);
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&b);
	}
	json_decref(rows);

	/* unknown columns in columns= and on_conflict, and an unknown row key */
	const char *bad[][2] = {{"columns=id,zz", "{\"id\":1}"},
				{"on_conflict=zz", "{\"id\":1}"},
				{"", "{\"zz\":1}"}};
	const char *codes[] = {"42703", "42703", "PGRST204"};
	for (size_t i = 0; i < 3; i++) {
		struct rt_query q;
		parse(bad[i][0], &q);
		json_t *row = j(bad[i][1]);
		struct rt_write w = {.kind = RT_WRITE_UPSERT, .table = &t_tbl, .where = &q};
		struct rt_buf b;
		struct rt_sql_binds bv;
		struct rt_store_error e = {0};
		rt_buf_init(&b);
		rt_sql_binds_init(&bv);
		assert_int_equal(rt_sql_insert(&b, &bv, PG, &w, row, &e), -1);
		assert_string_equal(e.code, codes[i]);
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&b);
		json_decref(row);
		rt_query_deinit(&q);
	}
}

/* An upsert in steps, as SQLite runs it under row-level security: the
 * INSERT … DO NOTHING, then DO UPDATE … WHERE a predicate over excluded. */
static void test_upsert_steps(void **state)
{
	struct rt_query q, pol;
	parse("on_conflict=name", &q);
	parse("score=gt.0", &pol);
	json_t *row = j("{\"id\":7,\"name\":\"n\"}");
	struct rt_write w = {.kind = RT_WRITE_UPSERT, .table = &t_tbl, .where = &q};
	const struct rt_sql_dialect *ds[] = {SQ, PG};
	const char *want_nothing[] = {
		"INSERT INTO \"t\" (\"id\",\"name\") VALUES (?,?) ON CONFLICT (\"name\") DO NOTHING",
		"INSERT INTO \"public\".\"t\" AS _t (\"id\",\"name\") SELECT _j.\"id\",_j.\"name\" FROM "
		"json_populate_record(NULL::\"public\".\"t\", $1::json) _j ON CONFLICT (\"name\") DO "
		"NOTHING",
	};
	const char *want_update[] = {
		"INSERT INTO \"t\" (\"id\",\"name\") VALUES (?,?) ON CONFLICT (\"name\") DO UPDATE SET "
		"\"id\" = excluded.\"id\",\"name\" = excluded.\"name\" WHERE ((excluded.\"score\" > ?))",
		"INSERT INTO \"public\".\"t\" AS _t (\"id\",\"name\") SELECT _j.\"id\",_j.\"name\" FROM "
		"json_populate_record(NULL::\"public\".\"t\", $1::json) _j ON CONFLICT (\"name\") DO "
		"UPDATE SET \"id\" = excluded.\"id\",\"name\" = excluded.\"name\" WHERE "
		"((excluded.\"score\" > $2))",
	};
	const char *want_binds[][2] = {{"int8:7 | text:\"n\"", "int8:7 | text:\"n\" | float8=0"},
				       {"json={\"id\":7,\"name\":\"n\"}",
					"json={\"id\":7,\"name\":\"n\"} | float8=0"}};
	for (size_t i = 0; i < 2; i++) {
		const struct rt_store_column *names[6];
		size_t n;
		struct rt_buf b, where;
		struct rt_sql_binds bv;
		struct rt_store_error e;
		rt_buf_init(&b);
		rt_buf_init(&where);
		rt_sql_binds_init(&bv);
		assert_int_equal(rt_sql_insert_columns(&w, row, names, &n, &e), 0);
		assert_int_equal(n, 2);
		rt_sql_insert_head(&b, &bv, ds[i], &t_tbl, names, n, row);
		assert_int_equal(rt_sql_conflict_target(&b, &w, &e), 0);
		rt_buf_append_str(&b, " DO NOTHING");
		expect("upsert step 1", &b, &bv, want_nothing[i], want_binds[i][0]);
		rt_buf_reset(&b);
		rt_sql_binds_deinit(&bv);
		rt_sql_insert_head(&b, &bv, ds[i], &t_tbl, names, n, row);
		assert_int_equal(rt_sql_conflict_target(&b, &w, &e), 0);
		rt_sql_do_update(&b, names, n);
		assert_int_equal(rt_sql_where(&where, &bv, ds[i], &t_tbl, &pol.where, "excluded", &e),
				 0);
		rt_sql_where_clause(&b, where.data);
		expect("upsert step 2", &b, &bv, want_update[i], want_binds[i][1]);
		/* the same text as rt_sql_insert's, but for the WHERE */
		struct rt_buf whole;
		struct rt_sql_binds wb;
		rt_buf_init(&whole);
		rt_sql_binds_init(&wb);
		assert_int_equal(rt_sql_insert(&whole, &wb, ds[i], &w, row, &e), 0);
		assert_int_equal(strncmp(b.data, whole.data, whole.len), 0);
		assert_string_equal(b.data + whole.len, i ? " WHERE ((excluded.\"score\" > $2))"
							  : " WHERE ((excluded.\"score\" > ?))");
		rt_sql_binds_deinit(&wb);
		rt_buf_deinit(&whole);
		rt_sql_binds_deinit(&bv);
		rt_buf_deinit(&b);
		rt_buf_deinit(&where);
	}
	/* the columns' errors */
	struct rt_query bad;
	parse("columns=id,zz", &bad);
	struct rt_write wb = {.kind = RT_WRITE_INSERT, .table = &t_tbl, .where = &bad};
	const struct rt_store_column *names[6];
	size_t n = 9;
	struct rt_store_error e = {0};
	assert_int_equal(rt_sql_insert_columns(&wb, row, names, &n, &e), -1);
	assert_string_equal(e.code, "42703");
	rt_query_deinit(&bad);
	json_decref(row);
	rt_query_deinit(&q);
	rt_query_deinit(&pol);
}

/* UPDATE or DELETE (set NULL) with qs's filters, as the stores compose them. */
static void update_case(const struct rt_sql_dialect *d, const char *qs, const char *set_txt,
			const char *want, const char *want_binds)
{
	struct rt_query q;
	parse(qs, &q);
	json_t *set = set_txt ? j(set_txt) : NULL;
	struct rt_buf b, where;
	struct rt_sql_binds bv;
	struct rt_store_error e;
	rt_buf_init(&b);
	rt_buf_init(&where);
	rt_sql_binds_init(&bv);
	if (set)
		assert_int_equal(rt_sql_update(&b, &bv, d, &t_tbl, set, &e), 0);
	else
		rt_sql_delete(&b, d, &t_tbl);
	assert_int_equal(rt_sql_where(&where, &bv, d, &t_tbl, &q.where, NULL, &e), 0);
	rt_sql_where_clause(&b, where.data);
	expect(qs, &b, &bv, want, want_binds);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&b);
	rt_buf_deinit(&where);
	json_decref(set);
	rt_query_deinit(&q);
}

static void test_update_delete(void **state)
{
	update_case(SQ, "id=eq.3", "{\"name\":\"b\",\"score\":1.5}",
		    "UPDATE \"t\" SET \"name\" = ?,\"score\" = ? WHERE ((\"id\" = ?))",
		    "text:\"b\" | float8:1.5 | int8=3");
	update_case(PG, "id=eq.3", "{\"name\":\"b\",\"score\":1.5}",
		    "UPDATE \"public\".\"t\" AS _t SET \"name\" = _j.\"name\",\"score\" = _j.\"score\" "
		    "FROM json_populate_record(NULL::\"public\".\"t\", $1::json) _j WHERE "
		    "((_t.\"id\" = $2))",
		    "json={\"name\":\"b\",\"score\":1.5} | int8=3");
	update_case(SQ, "name=like.a*", NULL,
		    "DELETE FROM \"t\" WHERE ((\"name\" LIKE ? ESCAPE '\\'))", "text=a%");
	update_case(PG, "name=like.a*", NULL,
		    "DELETE FROM \"public\".\"t\" AS _t WHERE ((_t.\"name\"::text LIKE $1))",
		    "text=a%");
	update_case(SQ, "", NULL, "DELETE FROM \"t\" WHERE 1", "");

	struct rt_buf b;
	struct rt_sql_binds bv;
	struct rt_store_error e = {0};
	rt_buf_init(&b);
	rt_sql_binds_init(&bv);
	rt_sql_where_clause(&b, NULL);
	rt_sql_where_clause(&b, "");
	assert_int_equal(b.len, 0);
	json_t *empty = json_object();
	assert_int_equal(rt_sql_update(&b, &bv, SQ, &t_tbl, empty, &e), -1);
	assert_string_equal(e.code, "PGRST102");
	assert_string_equal(e.message, "Empty or invalid json");
	assert_int_equal(e.status, 400);
	json_decref(empty);
	rt_sql_binds_deinit(&bv);
	rt_buf_deinit(&b);
}

static void test_returning(void **state)
{
	const struct rt_store_output outs[] = {{"id", &t_cols[0], RT_QUERY_AGG_NONE, "int8"},
					       {"label", &t_cols[1], RT_QUERY_AGG_NONE, "text"}};
	struct rt_buf stmt, b;
	rt_buf_init(&stmt);
	rt_buf_init(&b);
	rt_sql_delete(&stmt, SQ, &t_tbl);
	rt_sql_returning(&b, SQ, &stmt, outs, 2, true);
	assert_string_equal(b.data, "DELETE FROM \"t\" RETURNING *");
	rt_buf_reset(&stmt);
	rt_buf_reset(&b);
	rt_sql_delete(&stmt, PG, &t_tbl);
	rt_sql_returning(&b, PG, &stmt, outs, 2, true);
	assert_string_equal(b.data,
			    "WITH _w AS (DELETE FROM \"public\".\"t\" AS _t RETURNING _t.*) SELECT "
			    "coalesce(json_agg(_r), '[]')::text, count(*) FROM (SELECT _t.\"id\" AS "
			    "\"id\",_t.\"name\" AS \"label\" FROM _w _t) _r");
	rt_buf_reset(&b);
	rt_sql_returning(&b, PG, &stmt, outs, 2, false);
	assert_string_equal(b.data, "WITH _w AS (DELETE FROM \"public\".\"t\" AS _t RETURNING "
				    "_t.*) SELECT NULL, count(*) FROM _w");
	rt_buf_deinit(&stmt);
	rt_buf_deinit(&b);
}

/* The statements of a write with a base, on a table with a two-column key. */
static void test_base_writes(void **state)
{
	json_t *key = j("{\"a\":1,\"b\":\"x\",\"v\":{\"k\":[1]}}");
	json_t *apply = j("{\"v\":[2]}");
	struct rt_buf b;
	struct rt_sql_binds bv;
	struct rt_store_error e = {0};
	rt_buf_init(&b);

	rt_sql_binds_init(&bv);
	assert_int_equal(rt_sql_select_pk(&b, &bv, SQ, &pair_tbl, key, &e), 0);
	expect("sqlite select_pk", &b, &bv, "SELECT * FROM \"pair\" WHERE \"a\" IS ? AND \"b\" IS ?",
	       "int4:1 | text:\"x\"");
	rt_sql_binds_deinit(&bv);
	rt_buf_reset(&b);
	assert_int_equal(rt_sql_select_pk(&b, &bv, PG, &pair_tbl, key, &e), 0);
	expect("pg select_pk", &b, &bv,
	       "SELECT row_to_json(_t)::text FROM \"app\".\"pair\" AS _t, "
	       "json_populate_record(NULL::\"app\".\"pair\", $1::json) _k WHERE _t.\"a\" = _k.\"a\" "
	       "AND _t.\"b\" = _k.\"b\" LIMIT 2 FOR UPDATE OF _t",
	       "json={\"a\":1,\"b\":\"x\",\"v\":{\"k\":[1]}}");
	rt_sql_binds_deinit(&bv);

	rt_buf_reset(&b);
	rt_sql_select_where(&b, SQ, &pair_tbl, "((\"a\" = ?))");
	assert_string_equal(b.data, "SELECT * FROM \"pair\" WHERE ((\"a\" = ?)) LIMIT 2");
	rt_buf_reset(&b);
	rt_sql_select_where(&b, PG, &pair_tbl, "((_t.\"a\" = $1))");
	assert_string_equal(b.data, "SELECT row_to_json(_t)::text FROM \"app\".\"pair\" AS _t WHERE "
				    "((_t.\"a\" = $1)) LIMIT 2 FOR UPDATE OF _t");

	rt_buf_reset(&b);
	assert_int_equal(rt_sql_write_pk(&b, &bv, SQ, &pair_tbl, key, apply, &e), 0);
	expect("sqlite write_pk update", &b, &bv,
	       "UPDATE \"pair\" SET \"v\" = ? WHERE \"a\" IS ? AND \"b\" IS ?",
	       "jsonb:[2] | int4:1 | text:\"x\"");
	rt_sql_binds_deinit(&bv);
	rt_buf_reset(&b);
	assert_int_equal(rt_sql_write_pk(&b, &bv, PG, &pair_tbl, key, apply, &e), 0);
	expect("pg write_pk update", &b, &bv,
	       "UPDATE \"app\".\"pair\" AS _t SET \"v\" = _j.\"v\" FROM "
	       "json_populate_record(NULL::\"app\".\"pair\", $1::json) _j, "
	       "json_populate_record(NULL::\"app\".\"pair\", $2::json) _k WHERE _t.\"a\" = _k.\"a\" "
	       "AND _t.\"b\" = _k.\"b\"",
	       "json={\"v\":[2]} | json={\"a\":1,\"b\":\"x\",\"v\":{\"k\":[1]}}");
	rt_sql_binds_deinit(&bv);
	rt_buf_reset(&b);
	assert_int_equal(rt_sql_write_pk(&b, &bv, SQ, &pair_tbl, key, NULL, &e), 0);
	expect("sqlite write_pk delete", &b, &bv, "DELETE FROM \"pair\" WHERE \"a\" IS ? AND \"b\" IS ?",
	       "int4:1 | text:\"x\"");
	rt_sql_binds_deinit(&bv);
	rt_buf_reset(&b);
	assert_int_equal(rt_sql_write_pk(&b, &bv, PG, &pair_tbl, key, NULL, &e), 0);
	expect("pg write_pk delete", &b, &bv,
	       "DELETE FROM \"app\".\"pair\" AS _t USING "
	       "json_populate_record(NULL::\"app\".\"pair\", $1::json) _k WHERE _t.\"a\" = _k.\"a\" "
	       "AND _t.\"b\" = _k.\"b\"",
	       "json={\"a\":1,\"b\":\"x\",\"v\":{\"k\":[1]}}");
	rt_sql_binds_deinit(&bv);

	/* a key without its whole primary key */
	json_t *partial = j("{\"a\":1}");
	const struct rt_sql_dialect *ds[] = {SQ, PG};
	for (size_t i = 0; i < 2; i++) {
		rt_buf_reset(&b);
		assert_int_equal(rt_sql_select_pk(&b, &bv, ds[i], &pair_tbl, partial, &e), -1);
		assert_string_equal(e.code, "RTS400");
		assert_string_equal(e.message, "A write with a base needs the primary key column \"b\"");
		assert_int_equal(rt_sql_write_pk(&b, &bv, ds[i], &pair_tbl, partial, apply, &e), -1);
		assert_string_equal(e.code, "RTS400");
		rt_sql_binds_deinit(&bv);
	}
	json_decref(partial);
	json_decref(key);
	json_decref(apply);
	rt_buf_deinit(&b);
}

static void test_names_and_keys(void **state)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_sql_literal(&b, "it's");
	rt_buf_append_byte(&b, ' ');
	rt_sql_table(&b, PG, &(struct rt_store_table){"s\"x", "t\"y", NULL, 0});
	rt_buf_append_byte(&b, ' ');
	rt_sql_table(&b, SQ, &(struct rt_store_table){"s", "t\"y", NULL, 0});
	rt_buf_append_byte(&b, ' ');
	rt_sql_col(&b, PG, "new", "c");
	assert_string_equal(b.data, "'it''s' \"s\"\"x\".\"t\"\"y\" \"t\"\"y\" new.\"c\"");
	rt_buf_deinit(&b);
	/* the idempotency statements stay the stores' own */
	assert_null(SQ->key_lock_sql);
	assert_string_equal(PG->key_lock_sql, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");
	assert_non_null(strstr(SQ->key_record_sql, "INSERT OR REPLACE INTO _rtsync_idempotency"));
	assert_non_null(strstr(PG->key_lookup_sql, "ts >= $2::bigint"));
	/* many placeholders number on */
	struct rt_sql_binds bv;
	rt_sql_binds_init(&bv);
	rt_buf_init(&b);
	for (int i = 0; i < 40; i++)
		rt_sql_param(&b, &bv, PG, "int8", "1");
	assert_int_equal(bv.n, 40);
	assert_non_null(strstr(b.data, "$39$40"));
	rt_sql_binds_deinit(&bv);
	assert_int_equal(bv.n, 0);
	rt_buf_deinit(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_where_compare), cmocka_unit_test(test_where_is),
		cmocka_unit_test(test_where_in_like), cmocka_unit_test(test_where_trees),
		cmocka_unit_test(test_where_policy),  cmocka_unit_test(test_where_errors),
		cmocka_unit_test(test_order_limit),   cmocka_unit_test(test_read),
		cmocka_unit_test(test_read_aggregates),
		cmocka_unit_test(test_insert),        cmocka_unit_test(test_upsert_steps),
		cmocka_unit_test(test_update_delete),
		cmocka_unit_test(test_returning),     cmocka_unit_test(test_base_writes),
		cmocka_unit_test(test_names_and_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
