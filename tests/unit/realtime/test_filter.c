/*
 * postgres_changes filters (src/realtime/filter.h): the Supabase grammar and
 * its exact error messages (PROTOCOL.md §5.6), validation against a table's
 * columns, evaluation against rows with SQL's three-valued logic, and the
 * single-`eq` index key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "realtime/filter.h"

#define PFX "Error parsing `filter` params: "

/* The table every check and match runs against. */
static const char *const col_names[] = {
	"id", "n", "s", "score", "f", "title", "name", "done", "meta", "tag", "created", "o",
};
static const char *const col_types[] = {
	"int8",	   "int4", "int2",  "numeric", "float8",      "text",
	"varchar", "bool", "jsonb", "bpchar",  "timestamptz", "oid",
};
#define N_COLS (sizeof col_names / sizeof col_names[0])

static const char *type_of(const char *column, void *ctx)
{
	int *calls = ctx;
	if (calls)
		(*calls)++;
	for (size_t i = 0; i < N_COLS; i++)
		if (!strcmp(col_names[i], column))
			return col_types[i];
	return NULL;
}

static struct rt_filter *parse_ok(const char *text)
{
	struct rt_filter *f = (struct rt_filter *)0x1;
	char err[512] = "";
	int rc = rt_filter_parse(text, text ? strlen(text) : 0, &f, err, sizeof err);
	if (rc)
		fail_msg("parse of [%s] failed: %s", text, err);
	assert_non_null(f);
	return f;
}

static void parse_err(const char *text, const char *want)
{
	struct rt_filter *f = (struct rt_filter *)0x1;
	char err[512];
	memset(err, 'x', sizeof err);
	assert_int_equal(rt_filter_parse(text, strlen(text), &f, err, sizeof err), -1);
	assert_null(f);
	assert_string_equal(err, want);
}

/* Parses text, expects exactly one condition and returns the filter. */
static struct rt_filter *parse_one(const char *text, enum rt_filter_op op, bool neg,
				   const char *column)
{
	struct rt_filter *f = parse_ok(text);
	assert_int_equal(f->n_conds, 1);
	assert_int_equal(f->conds[0].op, op);
	assert_int_equal(f->conds[0].is_negated, neg);
	assert_string_equal(f->conds[0].column, column);
	return f;
}

static void assert_value(const char *text, const char *want)
{
	struct rt_filter *f = parse_ok(text);
	assert_int_equal(f->n_conds, 1);
	assert_int_equal(f->conds[0].n_values, 1);
	assert_string_equal(f->conds[0].values[0], want);
	rt_filter_free(f);
}

static void assert_in_values(const char *text, size_t n, const char *const *want)
{
	struct rt_filter *f = parse_ok(text);
	assert_int_equal(f->n_conds, 1);
	assert_int_equal(f->conds[0].op, RT_FOP_IN);
	assert_int_equal(f->conds[0].n_values, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(f->conds[0].values[i], want[i]);
	rt_filter_free(f);
}

static json_t *row_of(const char *json)
{
	json_error_t e;
	json_t *row = json_loads(json, JSON_DECODE_ANY, &e);
	if (!row)
		fail_msg("bad test row %s: %s", json, e.text);
	return row;
}

static bool matches(const char *filter, const char *row_json)
{
	struct rt_filter *f = parse_ok(filter);
	json_t *row = row_of(row_json);
	bool r = rt_filter_match(f, row, type_of, NULL);
	json_decref(row);
	rt_filter_free(f);
	return r;
}

#define MATCH(filter, row)    assert_true(matches(filter, row))
#define NO_MATCH(filter, row) assert_false(matches(filter, row))

static int check(const char *filter, char *err, size_t err_cap)
{
	struct rt_filter *f = parse_ok(filter);
	int rc = rt_filter_check(f, col_names, col_types, N_COLS, err, err_cap);
	rt_filter_free(f);
	return rc;
}

static void check_ok(const char *filter)
{
	char err[512] = "";
	if (check(filter, err, sizeof err))
		fail_msg("check of [%s] failed: %s", filter, err);
}

static void check_err(const char *filter, const char *want)
{
	char err[512] = "";
	assert_int_equal(check(filter, err, sizeof err), -1);
	assert_string_equal(err, want);
}

/* ---- parsing ---- */

static void test_blank_is_no_filter(void **state)
{
	const char *blanks[] = {"", " ", "   ", "\t\n\r\v\f "};
	for (size_t i = 0; i < sizeof blanks / sizeof blanks[0]; i++) {
		struct rt_filter *f = parse_ok(blanks[i]);
		assert_int_equal(f->n_conds, 0);
		json_t *row = json_object();
		assert_true(rt_filter_match(f, row, type_of, NULL));
		json_decref(row);
		const char *c = NULL, *v = NULL;
		assert_false(rt_filter_eq_key(f, &c, &v));
		assert_int_equal(rt_filter_check(f, col_names, col_types, N_COLS, NULL, 0), 0);
		rt_filter_free(f);
	}
	/* NULL text of length 0 is also empty. */
	struct rt_filter *f = NULL;
	assert_int_equal(rt_filter_parse(NULL, 0, &f, NULL, 0), 0);
	assert_non_null(f);
	assert_int_equal(f->n_conds, 0);
	rt_filter_free(f);
	rt_filter_free(NULL);
	/* A NULL filter matches everything too. */
	assert_true(rt_filter_match(NULL, NULL, type_of, NULL));
}

static void test_every_op(void **state)
{
	static const struct {
		const char *text;
		enum rt_filter_op op;
	} cases[] = {
		{"c=eq.v", RT_FOP_EQ},	       {"c=neq.v", RT_FOP_NEQ},
		{"c=lt.v", RT_FOP_LT},	       {"c=lte.v", RT_FOP_LTE},
		{"c=gt.v", RT_FOP_GT},	       {"c=gte.v", RT_FOP_GTE},
		{"c=like.v", RT_FOP_LIKE},     {"c=ilike.v", RT_FOP_ILIKE},
		{"c=is.v", RT_FOP_IS},	       {"c=match.v", RT_FOP_MATCH},
		{"c=imatch.v", RT_FOP_IMATCH}, {"c=isdistinct.v", RT_FOP_ISDISTINCT},
		{"c=in.(v)", RT_FOP_IN},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (int neg = 0; neg < 2; neg++) {
			char text[64];
			snprintf(text, sizeof text, "%s%s", neg ? "c=not." : "",
				 cases[i].text + (neg ? 2 : 0));
			struct rt_filter *f = parse_one(text, cases[i].op, neg, "c");
			assert_int_equal(f->conds[0].n_values, 1);
			assert_string_equal(f->conds[0].values[0], "v");
			rt_filter_free(f);
		}
	}
}

static void test_negation(void **state)
{
	struct rt_filter *f =
		parse_one("status=not.in.(draft,archived)", RT_FOP_IN, true, "status");
	assert_int_equal(f->conds[0].n_values, 2);
	assert_string_equal(f->conds[0].values[0], "draft");
	assert_string_equal(f->conds[0].values[1], "archived");
	rt_filter_free(f);
	f = parse_one("deleted_at=not.is.null", RT_FOP_IS, true, "deleted_at");
	assert_string_equal(f->conds[0].values[0], "null");
	rt_filter_free(f);
	/* Only one not. is taken; a second one is an unknown operator. */
	parse_err("a=not.not.eq.1", PFX "[\"not\", \"eq.1\"]");
	/* "not" must be lowercase and followed by a dot. */
	parse_err("a=NOT.eq.1", PFX "[\"NOT\", \"eq.1\"]");
	parse_err("a=noteq.1", PFX "[\"noteq\", \"1\"]");
	parse_err("a=not.eq", PFX "[\"eq\"]");
	parse_err("a=not.", PFX "[\"\"]");
}

static void test_and_of_segments(void **state)
{
	struct rt_filter *f = parse_ok("id=gt.0,id=lt.100");
	assert_int_equal(f->n_conds, 2);
	assert_string_equal(f->conds[0].column, "id");
	assert_int_equal(f->conds[0].op, RT_FOP_GT);
	assert_string_equal(f->conds[0].values[0], "0");
	assert_int_equal(f->conds[1].op, RT_FOP_LT);
	assert_string_equal(f->conds[1].values[0], "100");
	rt_filter_free(f);

	/* The whole text and each segment are trimmed; the column is not. */
	f = parse_ok("  id=eq.1 ,\ttitle=neq.x  ");
	assert_int_equal(f->n_conds, 2);
	assert_string_equal(f->conds[0].column, "id");
	assert_string_equal(f->conds[0].values[0], "1");
	assert_string_equal(f->conds[1].column, "title");
	assert_string_equal(f->conds[1].values[0], "x");
	rt_filter_free(f);
	f = parse_one("a =eq.1", RT_FOP_EQ, false, "a ");
	rt_filter_free(f);

	/* Sixteen segments are allowed, the seventeenth is not. */
	struct rt_buf b;
	rt_buf_init(&b);
	for (int i = 0; i < RT_FILTER_MAX_SEGMENTS; i++)
		rt_buf_printf(&b, "%sc%d=eq.%d", i ? "," : "", i, i);
	f = parse_ok(b.data);
	assert_int_equal(f->n_conds, RT_FILTER_MAX_SEGMENTS);
	assert_string_equal(f->conds[15].column, "c15");
	rt_filter_free(f);
	rt_buf_append_str(&b, ",c16=eq.16");
	parse_err(b.data, PFX "too many filter segments. Maximum 16");
	rt_buf_deinit(&b);
}

static void test_value_rules(void **state)
{
	/* The value is everything after the operator's dot. */
	assert_value("ver=eq.1.2.3", "1.2.3");
	assert_value("a=eq.x=y", "x=y");
	assert_value("a=eq.", "");
	assert_value("a=eq. spaced ", " spaced");
	assert_value("a=eq.(x,y)", "(x,y)");
	/* The column is the text before the first '='. */
	parse_err("a=b=eq.1", PFX "[\"b=eq\", \"1\"]");
	struct rt_filter *f = parse_one("=eq.1", RT_FOP_EQ, false, "");
	rt_filter_free(f);
	/* Braces do not group outside `in`: the comma splits. */
	parse_err("a=eq.{1,2}", PFX "[\"2}\"]");
}

static void test_quoting(void **state)
{
	assert_value("name=eq.\"a,b\"", "a,b");
	assert_value("name=eq.\"a\\\"b\"", "a\"b");
	assert_value("name=eq.\"a\\\\b\"", "a\\b");
	assert_value("name=eq.\"\\x\"", "x");
	assert_value("name=eq.\"\"", "");
	/* Unterminated, or text after the closing quote: taken literally. */
	assert_value("name=eq.\"abc", "\"abc");
	assert_value("name=eq.\"a\"b", "\"a\"b");
	assert_value("name=eq.\"abc\\\"", "\"abc\\\"");
	assert_value("name=eq.\"abc\\", "\"abc\\");
	/* A quote only opens after '.', '(' or ','. */
	struct rt_filter *f = parse_ok("name=eq.a\"b,c\"=eq.1");
	assert_int_equal(f->n_conds, 2);
	assert_string_equal(f->conds[0].values[0], "a\"b");
	assert_string_equal(f->conds[1].column, "c\"");
	rt_filter_free(f);
	/* An escaped quote does not close; the comma inside stays. */
	f = parse_ok("name=eq.\"a\\\",b\",x=eq.1");
	assert_int_equal(f->n_conds, 2);
	assert_string_equal(f->conds[0].values[0], "a\",b");
	assert_string_equal(f->conds[1].column, "x");
	rt_filter_free(f);
	/* After a splitting comma the previous character is forgotten, so a quote
	 * right there does not open (upstream split_top_level). */
	f = parse_ok("a=eq.1,\"b=eq.2");
	assert_int_equal(f->n_conds, 2);
	assert_string_equal(f->conds[1].column, "\"b");
	rt_filter_free(f);
	/* An unterminated quote swallows the rest of the text. */
	f = parse_ok("name=eq.\"a,b=eq.1");
	assert_int_equal(f->n_conds, 1);
	assert_string_equal(f->conds[0].values[0], "\"a,b=eq.1");
	rt_filter_free(f);
	/* Parentheses keep commas together outside `in` too. */
	f = parse_ok("a=eq.(x,y),b=eq.2");
	assert_int_equal(f->n_conds, 2);
	assert_string_equal(f->conds[0].values[0], "(x,y)");
	rt_filter_free(f);
	/* A stray ')' does not go below depth 0. */
	f = parse_ok("a=eq.),b=eq.2");
	assert_int_equal(f->n_conds, 2);
	rt_filter_free(f);
}

static void test_in_lists(void **state)
{
	assert_in_values("id=in.(1,2,3)", 3, (const char *const[]){"1", "2", "3"});
	assert_in_values("t=in.(\"a,b\",c)", 2, (const char *const[]){"a,b", "c"});
	assert_in_values("t=in.( a , b c )", 2, (const char *const[]){"a", "b c"});
	assert_in_values("t=in.(\"a\\\"b\",\" x \")", 2, (const char *const[]){"a\"b", " x "});
	assert_in_values("t=in.(a\\,b)", 1, (const char *const[]){"a,b"});
	assert_in_values("t=in.(a\\ )", 1, (const char *const[]){"a "});
	assert_in_values("t=in.(\"\")", 1, (const char *const[]){""});
	assert_in_values("t=in.((a))", 1, (const char *const[]){"(a)"});
	assert_in_values("t=in.(NULL,\"NULL\")", 2, (const char *const[]){"NULL", "NULL"});
	assert_in_values("t=in.()", 0, NULL);
	assert_in_values("t=in.( )", 0, NULL);
	assert_in_values("t=not.in.(x)", 1, (const char *const[]){"x"});

	parse_err("id=in.1", PFX "`in` filter value must be wrapped by parentheses");
	parse_err("id=in.(1,2", PFX "`in` filter value must be wrapped by parentheses");
	parse_err("id=in.1,2)", PFX "`in` filter value must be wrapped by parentheses");
	parse_err("id=in.", PFX "`in` filter value must be wrapped by parentheses");
	parse_err("id=in.(", PFX "`in` filter value must be wrapped by parentheses");
	parse_err("id=in.\"(1)\"", PFX "`in` filter value must be wrapped by parentheses");
	parse_err("id=in.(a,,b)", PFX "malformed array literal: \"{a,,b}\"");
	parse_err("id=in.(a,)", PFX "malformed array literal: \"{a,}\"");
	parse_err("id=in.(,)", PFX "malformed array literal: \"{,}\"");
	parse_err("id=in.(a\"b)", PFX "malformed array literal: \"{a\"b}\"");
	parse_err("id=in.(\"a\"b)", PFX "malformed array literal: \"{\"a\"b}\"");
	parse_err("id=in.(\"a)", PFX "malformed array literal: \"{\"a}\"");
	parse_err("id=in.({a})", PFX "malformed array literal: \"{{a}}\"");
	parse_err("id=in.(a},b)", PFX "malformed array literal: \"{a},b}\"");
	parse_err("id=in.(a\\)", PFX "malformed array literal: \"{a\\}\"");

	/* At most 100 values. */
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "id=in.(");
	for (int i = 0; i < RT_FILTER_MAX_IN; i++)
		rt_buf_printf(&b, "%s%d", i ? "," : "", i);
	rt_buf_append_str(&b, ")");
	struct rt_filter *f = parse_ok(b.data);
	assert_int_equal(f->conds[0].n_values, RT_FILTER_MAX_IN);
	assert_string_equal(f->conds[0].values[99], "99");
	rt_filter_free(f);
	b.len -= 1;
	rt_buf_append_str(&b, ",100)");
	parse_err(b.data, PFX "too many values for `in` filter. Maximum 100");
	/* Also with a null element among them. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "id=in.(NULL");
	for (int i = 0; i < RT_FILTER_MAX_IN; i++)
		rt_buf_printf(&b, ",%d", i);
	rt_buf_append_str(&b, ")");
	parse_err(b.data, PFX "too many values for `in` filter. Maximum 100");
	rt_buf_deinit(&b);
}

static void test_empty_segments(void **state)
{
	const char *msg = PFX "filter must not contain empty segments (check for extra commas)";
	parse_err(",a=eq.1", msg);
	parse_err("a=eq.1,", msg);
	parse_err("a=eq.1,,b=eq.2", msg);
	parse_err("a=eq.1, ,b=eq.2", msg);
	parse_err(",", msg);
	parse_err(" , ", msg);
	/* The first error in segment order wins. */
	parse_err("a=foo.1,,", PFX "[\"foo\", \"1\"]");
	parse_err(",a=foo.1", msg);
}

static void test_inspect_errors(void **state)
{
	parse_err("subject=foo.hey", PFX "[\"foo\", \"hey\"]");
	parse_err("undefined", PFX "[\"undefined\"]");
	parse_err("a=eq", PFX "[\"eq\"]");
	parse_err("a=", PFX "[\"\"]");
	parse_err("a=EQ.1", PFX "[\"EQ\", \"1\"]");
	parse_err("a=.1", PFX "[\"\", \"1\"]");
	parse_err("a=like(all).{x}", PFX "[\"like(all)\", \"{x}\"]");
	parse_err("a=cs.{1}", PFX "[\"cs\", \"{1}\"]");
	/* Elixir's escapes in inspected strings. */
	parse_err("a=f\"o.h\\i", PFX "[\"f\\\"o\", \"h\\\\i\"]");
	parse_err("a=x#{y}.1", PFX "[\"x\\#{y}\", \"1\"]");
	parse_err("a=b\nc\t.1", PFX "[\"b\\nc\\t\", \"1\"]");
	parse_err("a=\x1b\x7f\a\b\v\f\r.1", PFX "[\"\\e\\d\\a\\b\\v\\f\\r\", \"1\"]");
	parse_err("a=caf\xc3\xa9.1", PFX "[\"caf\xc3\xa9\", \"1\"]");
	/* Non-printable binaries print as bytes, at most 50 of them. */
	parse_err("a=\x01.1", PFX "[<<1>>, \"1\"]");
	parse_err("a=x\xff.1", PFX "[<<120, 255>>, \"1\"]");
	parse_err("a=\xc2\x80.1", PFX "[<<194, 128>>, \"1\"]");
	parse_err("a=\xc0\xaf.1", PFX "[<<192, 175>>, \"1\"]");		 /* overlong */
	parse_err("a=\xed\xa0\x80.1", PFX "[<<237, 160, 128>>, \"1\"]"); /* surrogate */
	struct rt_buf b, want;
	rt_buf_init(&b);
	rt_buf_init(&want);
	rt_buf_append_str(&b, "a=");
	rt_buf_append_str(&want, PFX "[<<");
	for (int i = 0; i < 60; i++)
		rt_buf_append_byte(&b, 1);
	for (int i = 0; i < 50; i++)
		rt_buf_append_str(&want, "1, ");
	rt_buf_append_str(&want, "...>>, \"1\"]");
	rt_buf_append_str(&b, ".1");
	parse_err(b.data, want.data);
	rt_buf_deinit(&b);
	rt_buf_deinit(&want);
}

static void test_parse_limits(void **state)
{
	char *big = malloc(RT_FILTER_MAX_LEN + 2);
	memset(big, ' ', RT_FILTER_MAX_LEN + 1);
	memcpy(big, "a=eq.", 5);
	big[RT_FILTER_MAX_LEN + 1] = '\0';
	struct rt_filter *f = (struct rt_filter *)0x1;
	char err[128];
	/* 4096 bytes are fine (trailing blanks trimmed)... */
	assert_int_equal(rt_filter_parse(big, RT_FILTER_MAX_LEN, &f, err, sizeof err), 0);
	assert_int_equal(f->n_conds, 1);
	assert_string_equal(f->conds[0].values[0], "");
	rt_filter_free(f);
	/* ...4097 are not. */
	assert_int_equal(rt_filter_parse(big, RT_FILTER_MAX_LEN + 1, &f, err, sizeof err), -1);
	assert_null(f);
	assert_string_equal(err, PFX "filter is longer than 4096 bytes");
	free(big);

	/* Embedded NUL bytes are refused, not truncated. */
	assert_int_equal(rt_filter_parse("a=eq.1\0,b", 9, &f, err, sizeof err), -1);
	assert_string_equal(err, PFX "filter must not contain NUL bytes");
	/* text_len is honoured: no NUL terminator needed. */
	assert_int_equal(rt_filter_parse("a=eq.12345", 6, &f, err, sizeof err), 0);
	assert_string_equal(f->conds[0].values[0], "1");
	rt_filter_free(f);

	/* The error is truncated to the buffer and always terminated. */
	char small[10];
	assert_int_equal(rt_filter_parse("x", 1, &f, small, sizeof small), -1);
	assert_string_equal(small, "Error par");
	assert_int_equal(rt_filter_parse("x", 1, &f, NULL, 0), -1);
	assert_int_equal(rt_filter_parse("x", 1, &f, small, 0), -1);
}

/* ---- check ---- */

static void test_check_columns_and_casts(void **state)
{
	check_err("notacolumn=eq.123", "invalid column for filter notacolumn");
	check_err("id=eq.1,notacolumn=eq.123", "invalid column for filter notacolumn");
	check_err("ID=eq.1", "invalid column for filter ID");
	check_ok("id=eq.1,title=eq.x,done=eq.true,score=gt.1.5");

	check_ok("id=eq. -12 ");
	check_ok("id=eq.+9223372036854775807");
	check_err("id=eq.9223372036854775808",
		  "value \"9223372036854775808\" is out of range for type bigint");
	check_err("id=eq.abc", "invalid input syntax for type bigint: \"abc\"");
	check_err("id=eq.1.5", "invalid input syntax for type bigint: \"1.5\"");
	check_err("id=eq.", "invalid input syntax for type bigint: \"\"");
	check_err("id=eq.1e3", "invalid input syntax for type bigint: \"1e3\"");
	check_err("id=eq.0x10", "invalid input syntax for type bigint: \"0x10\"");
	check_ok("n=lt.2147483647");
	check_err("n=lt.2147483648", "value \"2147483648\" is out of range for type integer");
	check_err("s=gte.-32769", "value \"-32769\" is out of range for type smallint");
	check_ok("s=gte.-32768");
	check_ok("o=eq.4294967295");
	check_ok("score=gt.-1.5e3");
	check_ok("score=gt.NaN");
	check_err("score=gt.x", "invalid input syntax for type numeric: \"x\"");
	check_err("f=neq.1;5", "invalid input syntax for type double precision: \"1;5\"");
	check_ok("done=eq.t,done=neq.FALSE,done=lt.yes,done=gt.off,done=eq.1,done=eq. tr ");
	check_err("done=eq.maybe", "invalid input syntax for type boolean: \"maybe\"");
	check_err("done=eq.o", "invalid input syntax for type boolean: \"o\"");
	check_err("done=isdistinct.2", "invalid input syntax for type boolean: \"2\"");
	check_err("id=isdistinct.x", "invalid input syntax for type bigint: \"x\"");
	/* Text-like and other types take any value. */
	check_ok("title=eq.anything,meta=eq.{,created=gt.not a date,tag=eq.x");
	/* `in` casts each element; NULL elements need no cast. */
	check_ok("id=in.(1,2,NULL,null)");
	check_ok("id=in.()");
	check_err("id=in.(1,x)", "invalid input syntax for type bigint: \"x\"");
	check_err("id=in.(1,\"NULL\")", "invalid input syntax for type bigint: \"NULL\"");
	check_err("done=not.in.(true,nope)", "invalid input syntax for type boolean: \"nope\"");
}

static void test_check_operators(void **state)
{
	check_ok("done=is.true,done=is.false,done=is.unknown,done=not.is.null");
	check_ok("id=is.null,title=not.is.null");
	check_err("id=is.true", "is true filter requires a boolean column, got bigint");
	check_err("title=not.is.unknown", "is unknown filter requires a boolean column, got text");
	check_err("id=is.maybe",
		  "invalid value for is filter: must be null, true, false, or unknown");
	check_err("id=is.NULL",
		  "invalid value for is filter: must be null, true, false, or unknown");
	check_err("done=is.", "invalid value for is filter: must be null, true, false, or unknown");

	check_ok("title=like.%a%,name=ilike.A_,tag=not.like.x");
	check_err("id=like.1%", "operator like requires a text-compatible column type, got bigint");
	check_err("done=ilike.t%",
		  "operator ilike requires a text-compatible column type, got boolean");
	check_err("meta=like.%", "operator like requires a text-compatible column type, got jsonb");
	check_err("created=like.2026%", "operator like requires a text-compatible column type, "
					"got timestamp with time zone");

	check_ok("title=match.^a+$,name=imatch.[[:digit:]]{3}");
	check_err("n=match.1",
		  "operator match requires a text-compatible column type, got integer");
	check_err("score=imatch.1",
		  "operator imatch requires a text-compatible column type, got numeric");
	char err[256];
	assert_int_equal(check("title=match.(", err, sizeof err), -1);
	assert_true(!strncmp(err, "invalid regular expression for match filter: ", 45));
	assert_true(strlen(err) > 45);
	assert_int_equal(check("title=imatch.\"a{2,1}\"", err, sizeof err), -1);
	assert_true(!strncmp(err, "invalid regular expression for imatch filter: ", 46));
	check_err("title=match.(a)\\1",
		  "invalid regular expression for match filter: back-references are not supported");
	check_ok("title=match.[\\1]"); /* a backslash inside brackets is literal */
	check_err("title=match.((a{100}){100}){100}",
		  "invalid regular expression for match filter: regular expression is too complex");
	check_ok("title=match.(a{10}){50}");
	check_err("title=match.a{255}{5}",
		  "invalid regular expression for match filter: quantifier operand invalid");
	check_err("title=match.(a{255}){5}",
		  "invalid regular expression for match filter: regular expression is too complex");
	/* + is compiled as a copy and a star: a chain of them doubles each time. */
	check_ok("title=match.(((a+)+)+)+");
	check_err("title=match.((((((((((a+)+)+)+)+)+)+)+)+)+)+",
		  "invalid regular expression for match filter: regular expression is too complex");
	/* Stacked quantifiers: only Postgres' non-greedy '?' may follow one. */
	check_ok("title=match.\"a*?b+?c??d{2}?e{1,}?\"");
	check_err("title=imatch.a**",
		  "invalid regular expression for imatch filter: quantifier operand invalid");
	check_err("title=match.a+*",
		  "invalid regular expression for match filter: quantifier operand invalid");
	check_err("title=match.a???",
		  "invalid regular expression for match filter: quantifier operand invalid");
	check_ok("title=match.a*b*(c*)*[*+]*\\**");
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "title=match.");
	for (int i = 0; i < 65; i++)
		rt_buf_append_byte(&b, '(');
	rt_buf_append_byte(&b, 'a');
	for (int i = 0; i < 65; i++)
		rt_buf_append_byte(&b, ')');
	check_err(b.data,
		  "invalid regular expression for match filter: regular expression is too complex");
	/* At most 256 bytes. */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "title=match.");
	for (int i = 0; i < 256; i++)
		rt_buf_append_byte(&b, 'a');
	check_ok(b.data);
	rt_buf_append_byte(&b, 'a');
	check_err(b.data,
		  "invalid regular expression for match filter: regular expression is longer "
		  "than 256 bytes");
	rt_buf_deinit(&b);

	/* A NULL filter, a missing types array and a short error buffer. */
	assert_int_equal(rt_filter_check(NULL, col_names, col_types, N_COLS, NULL, 0), 0);
	struct rt_filter *f = parse_ok("id=eq.1");
	assert_int_equal(rt_filter_check(f, col_names, NULL, N_COLS, NULL, 0), 0);
	assert_int_equal(rt_filter_check(f, col_names, col_types, 0, err, 8), -1);
	assert_string_equal(err, "invalid");
	rt_filter_free(f);
}

/* ---- match ---- */

static void test_match_numbers(void **state)
{
	const char *rows[] = {"{\"id\":5}", "{\"id\":\"5\"}", "{\"id\":5.0}", "{\"id\":\" 5 \"}"};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const char *r = rows[i];
		MATCH("id=eq.5", r);
		MATCH("id=eq.5.0", r);
		MATCH("id=eq.05", r);
		NO_MATCH("id=eq.6", r);
		MATCH("id=neq.6", r);
		NO_MATCH("id=neq.5", r);
		MATCH("id=gt.4", r);
		NO_MATCH("id=gt.5", r);
		MATCH("id=gte.5", r);
		MATCH("id=lt.10", r); /* numeric, not text, order */
		NO_MATCH("id=lt.5", r);
		MATCH("id=lte.5", r);
		MATCH("id=gt.4.5", r);
		MATCH("id=not.gt.5", r);
		MATCH("id=gt.-1e3", r);
	}
	/* int8 beyond double precision compares exactly. */
	MATCH("id=eq.9007199254740993", "{\"id\":9007199254740993}");
	NO_MATCH("id=eq.9007199254740992", "{\"id\":9007199254740993}");
	MATCH("id=gt.9007199254740992", "{\"id\":\"9007199254740993\"}");
	/* Floats, and NaN equal to itself and above everything. */
	MATCH("f=gt.1.25", "{\"f\":1.5}");
	MATCH("f=eq.1.50", "{\"f\":1.5}");
	MATCH("f=eq.NaN", "{\"f\":\"NaN\"}");
	MATCH("f=gt.1e308", "{\"f\":\"NaN\"}");
	NO_MATCH("f=lt.0", "{\"f\":\"NaN\"}");
	MATCH("score=lt.0.3", "{\"score\":\"0.25\"}");
	/* A row value that is no number fails, negated or not. */
	NO_MATCH("id=eq.5", "{\"id\":\"five\"}");
	NO_MATCH("id=not.eq.5", "{\"id\":\"five\"}");
	NO_MATCH("id=neq.5", "{\"id\":true}");
	NO_MATCH("id=eq.5", "{\"id\":[5]}");
	/* As does a filter value that is no number. */
	NO_MATCH("id=eq.x", "{\"id\":5}");
	NO_MATCH("id=not.eq.x", "{\"id\":5}");
}

static void test_match_text_and_bool(void **state)
{
	MATCH("title=eq.hello", "{\"title\":\"hello\"}");
	NO_MATCH("title=eq.Hello", "{\"title\":\"hello\"}");
	MATCH("title=gt.a", "{\"title\":\"b\"}");
	MATCH("title=lt.c", "{\"title\":\"b\"}");
	MATCH("title=lt.a", "{\"title\":\"B\"}"); /* byte order */
	MATCH("title=lt.10", "{\"title\":\"1\"}");
	MATCH("title=gt.10", "{\"title\":\"9\"}"); /* text, not numeric, order */
	MATCH("title=eq.\"a,b\"", "{\"title\":\"a,b\"}");
	MATCH("title=eq.5", "{\"title\":5}");
	MATCH("meta=eq.{\"a\":1}", "{\"meta\":{\"a\":1}}");
	MATCH("name=eq.x", "{\"name\":\"x\"}");

	MATCH("done=eq.true", "{\"done\":true}");
	MATCH("done=eq.t", "{\"done\":true}");
	MATCH("done=eq.YES", "{\"done\":true}");
	MATCH("done=eq.true", "{\"done\":\"t\"}");
	MATCH("done=eq.f", "{\"done\":\"false\"}");
	NO_MATCH("done=eq.true", "{\"done\":false}");
	MATCH("done=neq.true", "{\"done\":false}");
	MATCH("done=lt.true", "{\"done\":false}");
	NO_MATCH("done=gt.true", "{\"done\":false}");
	NO_MATCH("done=eq.true", "{\"done\":\"maybe\"}");
	NO_MATCH("done=not.eq.true", "{\"done\":\"maybe\"}");
	NO_MATCH("done=eq.true", "{\"done\":1}");
}

static void test_match_nulls_and_missing(void **state)
{
	const char *r = "{\"title\":null,\"id\":null,\"done\":null}";
	/* Comparisons with NULL are NULL: no match, negated or not. */
	static const char *const never[] = {
		"title=eq.x",	     "title=not.eq.x",
		"title=neq.x",	     "title=not.neq.x",
		"id=lt.1",	     "id=not.lt.1",
		"id=gte.1",	     "title=in.(x)",
		"title=not.in.(x)",  "title=like.%",
		"title=not.like.%",  "title=ilike.%",
		"title=match.^",     "title=not.imatch.^",
		"title=not.is.null", "id=not.isdistinct.1",
		"done=is.true",	     "done=is.false",
	};
	for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
		if (matches(never[i], r))
			fail_msg("%s matched a null", never[i]);
	MATCH("title=is.null", r);
	MATCH("done=is.unknown", r);
	MATCH("done=not.is.true", r);
	MATCH("done=not.is.false", r);
	MATCH("id=isdistinct.1", r);
	MATCH("title=isdistinct.", r);

	/* A column absent from the row fails every condition. */
	NO_MATCH("title=is.null", "{\"id\":1}");
	NO_MATCH("title=not.eq.x", "{\"id\":1}");
	NO_MATCH("title=isdistinct.x", "{\"id\":1}");
	/* So does a column of unknown type, and a row that is no object. */
	NO_MATCH("nosuch=is.null", "{\"nosuch\":null}");
	NO_MATCH("id=eq.1", "[1]");
	NO_MATCH("id=eq.1", "null");
	struct rt_filter *f = parse_ok("id=eq.1");
	json_t *row = row_of("{\"id\":1}");
	assert_false(rt_filter_match(f, row, NULL, NULL));
	int calls = 0;
	assert_true(rt_filter_match(f, row, type_of, &calls));
	assert_int_equal(calls, 1);
	json_decref(row);
	rt_filter_free(f);
}

static void test_match_is(void **state)
{
	MATCH("done=is.true", "{\"done\":true}");
	NO_MATCH("done=is.false", "{\"done\":true}");
	NO_MATCH("done=not.is.true", "{\"done\":true}");
	MATCH("done=not.is.false", "{\"done\":true}");
	MATCH("done=is.false", "{\"done\":\"f\"}");
	NO_MATCH("done=is.unknown", "{\"done\":false}");
	MATCH("done=not.is.unknown", "{\"done\":false}");
	NO_MATCH("title=is.null", "{\"title\":\"\"}");
	MATCH("title=not.is.null", "{\"title\":\"\"}");
	/* Keywords are lowercase only (check rejects the rest). */
	NO_MATCH("title=is.NULL", "{\"title\":null}");
	NO_MATCH("title=not.is.NULL", "{\"title\":null}");
	/* IS TRUE on a value that is no boolean is an error: no match. */
	NO_MATCH("id=is.true", "{\"id\":1}");
	NO_MATCH("id=not.is.true", "{\"id\":1}");
}

static void test_match_like(void **state)
{
	const char *r = "{\"title\":\"hello world\"}";
	MATCH("title=like.hello%", r);
	MATCH("title=like.%world", r);
	MATCH("title=like.%lo wo%", r);
	MATCH("title=like.h_llo%", r);
	MATCH("title=like.%", r);
	MATCH("title=like.%%%d", r);
	MATCH("title=like.hello world", r);
	MATCH("title=like.___________", r);
	NO_MATCH("title=like.__________", r);
	NO_MATCH("title=like.hello", r);
	NO_MATCH("title=like.HELLO%", r);
	MATCH("title=ilike.HELLO%", r);
	MATCH("title=ilike.%O W%", r);
	NO_MATCH("title=not.like.h%", r);
	MATCH("title=not.like.x%", r);
	MATCH("title=like.%o%o%o%", "{\"title\":\"foo boo zoo\"}");
	NO_MATCH("title=like.%o%o%o%x", "{\"title\":\"foo boo zoo\"}");
	MATCH("title=like.%ab", "{\"title\":\"aab\"}");
	/* Escapes make % and _ literal. */
	MATCH("title=like.100\\%", "{\"title\":\"100%\"}");
	NO_MATCH("title=like.100\\%", "{\"title\":\"1000\"}");
	MATCH("title=like.a\\_b", "{\"title\":\"a_b\"}");
	NO_MATCH("title=like.a\\_b", "{\"title\":\"axb\"}");
	MATCH("title=like.a\\\\b", "{\"title\":\"a\\\\b\"}");
	MATCH("title=like.\\a", "{\"title\":\"a\"}");
	/* A trailing lone backslash is an error: no match either way. */
	NO_MATCH("title=like.abc\\", "{\"title\":\"abc\\\\\"}");
	NO_MATCH("title=not.like.abc\\", "{\"title\":\"xyz\"}");
	/* _ is one character, not one byte. */
	MATCH("title=like._", "{\"title\":\"\xc3\xa9\"}");
	MATCH("title=like.__", "{\"title\":\"\xc3\xa9\x61\"}");
	NO_MATCH("title=like.__", "{\"title\":\"\xc3\xa9\"}");
	MATCH("title=like.%\xc3\xa9", "{\"title\":\"ab\xc3\xa9\"}");
	MATCH("title=like.", "{\"title\":\"\"}");
	NO_MATCH("title=like._", "{\"title\":\"\"}");
	MATCH("title=like.%", "{\"title\":\"\"}");
	/* Quoted patterns lose their quotes. */
	MATCH("title=like.\"%,%\"", "{\"title\":\"a,b\"}");
}

static void test_match_regex(void **state)
{
	const char *r = "{\"title\":\"Hello\"}";
	MATCH("title=match.^H", r);
	NO_MATCH("title=match.^h", r);
	MATCH("title=imatch.^h", r);
	MATCH("title=match.l+o$", r);
	MATCH("title=match.el", r); /* unanchored */
	MATCH("title=match.^(Hi|Hello)$", r);
	MATCH("title=imatch.[[:upper:]]ELLO", r);
	NO_MATCH("title=not.match.^H", r);
	MATCH("title=not.match.^h", r);
	/* An invalid or refused pattern never matches, negated or not. */
	NO_MATCH("title=match.(", r);
	NO_MATCH("title=not.match.(", r);
	NO_MATCH("title=not.match.(H)\\1", r);
}

static void test_match_in_and_isdistinct(void **state)
{
	MATCH("id=in.(1,2,3)", "{\"id\":2}");
	MATCH("id=in.(1,2,3)", "{\"id\":\"2\"}");
	MATCH("id=in.(1, 2.0 ,3)", "{\"id\":2}");
	NO_MATCH("id=in.(1,2,3)", "{\"id\":4}");
	NO_MATCH("id=in.()", "{\"id\":4}");
	MATCH("id=not.in.()", "{\"id\":4}");
	MATCH("id=not.in.(1,2)", "{\"id\":3}");
	NO_MATCH("id=not.in.(1,2)", "{\"id\":2}");
	/* A NULL element: true when another element equals, else NULL. */
	MATCH("id=in.(1,NULL)", "{\"id\":1}");
	NO_MATCH("id=in.(1,null)", "{\"id\":2}");
	NO_MATCH("id=not.in.(1,NULL)", "{\"id\":2}");
	NO_MATCH("id=not.in.(1,NULL)", "{\"id\":1}");
	/* A quoted "NULL" is the text NULL. */
	MATCH("title=in.(\"NULL\")", "{\"title\":\"NULL\"}");
	NO_MATCH("title=in.(NULL)", "{\"title\":\"NULL\"}");
	MATCH("title=in.(\"a,b\",c)", "{\"title\":\"a,b\"}");
	MATCH("title=in.(\"a,b\",c)", "{\"title\":\"c\"}");
	NO_MATCH("title=in.(\"a,b\",c)", "{\"title\":\"a\"}");
	MATCH("done=in.(t)", "{\"done\":true}");
	/* An element that does not cast makes the result NULL unless another equals. */
	MATCH("id=in.(x,2)", "{\"id\":2}");
	NO_MATCH("id=not.in.(x,2)", "{\"id\":3}");

	MATCH("id=isdistinct.6", "{\"id\":5}");
	NO_MATCH("id=isdistinct.5", "{\"id\":5}");
	NO_MATCH("id=isdistinct.5.0", "{\"id\":\"5\"}");
	MATCH("id=not.isdistinct.5", "{\"id\":5}");
	NO_MATCH("id=not.isdistinct.6", "{\"id\":5}");
	MATCH("title=isdistinct.a", "{\"title\":\"b\"}");
}

static void test_match_and(void **state)
{
	MATCH("id=gt.0,id=lt.10", "{\"id\":5}");
	NO_MATCH("id=gt.0,id=lt.10", "{\"id\":10}");
	NO_MATCH("id=gt.0,id=lt.10", "{\"id\":0}");
	MATCH("title=eq.x,id=eq.1,done=is.false", "{\"title\":\"x\",\"id\":1,\"done\":false}");
	NO_MATCH("title=eq.x,id=eq.1,done=is.false", "{\"title\":\"x\",\"id\":1,\"done\":true}");
	NO_MATCH("title=eq.x,id=eq.1", "{\"title\":\"x\"}");
	/* Extra row columns do not matter. */
	MATCH("id=eq.1", "{\"id\":1,\"other\":{\"x\":[1,2]}}");
}

/* ---- eq key ---- */

static void test_eq_key(void **state)
{
	const char *col = NULL, *val = NULL;
	struct rt_filter *f = parse_ok("id=eq.5");
	assert_true(rt_filter_eq_key(f, &col, &val));
	assert_string_equal(col, "id");
	assert_string_equal(val, "5");
	assert_ptr_equal(col, f->conds[0].column); /* borrowed */
	rt_filter_free(f);

	f = parse_ok("title=eq.\"a,b\"");
	assert_true(rt_filter_eq_key(f, &col, &val));
	assert_string_equal(val, "a,b");
	rt_filter_free(f);

	const char *not_keys[] = {"id=not.eq.5", "id=neq.5", "id=in.(5)",      "id=eq.5,x=eq.1",
				  "id=gte.5",	 "",	     "id=isdistinct.5"};
	for (size_t i = 0; i < sizeof not_keys / sizeof not_keys[0]; i++) {
		f = parse_ok(not_keys[i]);
		col = val = NULL;
		assert_false(rt_filter_eq_key(f, &col, &val));
		assert_null(col);
		assert_null(val);
		rt_filter_free(f);
	}
	assert_false(rt_filter_eq_key(NULL, &col, &val));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blank_is_no_filter),
		cmocka_unit_test(test_every_op),
		cmocka_unit_test(test_negation),
		cmocka_unit_test(test_and_of_segments),
		cmocka_unit_test(test_value_rules),
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_in_lists),
		cmocka_unit_test(test_empty_segments),
		cmocka_unit_test(test_inspect_errors),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_check_columns_and_casts),
		cmocka_unit_test(test_check_operators),
		cmocka_unit_test(test_match_numbers),
		cmocka_unit_test(test_match_text_and_bool),
		cmocka_unit_test(test_match_nulls_and_missing),
		cmocka_unit_test(test_match_is),
		cmocka_unit_test(test_match_like),
		cmocka_unit_test(test_match_regex),
		cmocka_unit_test(test_match_in_and_isdistinct),
		cmocka_unit_test(test_match_and),
		cmocka_unit_test(test_eq_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
