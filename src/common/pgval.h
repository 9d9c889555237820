/*
 * PostgreSQL values compared in C, the way the change feed's filters and
 * the row-level security predicates both compare a row's JSON value with a
 * literal: by the column's type name, numeric types (int2/int4/int8/oid/
 * float4/float8/numeric) as numbers, bool as booleans, everything else as
 * text by bytes (strcmp, not a collation). Integers compare exactly, other
 * numbers as doubles; NaN equals NaN and sorts above all numbers. A
 * non-string JSON value compares as its compact JSON text when the type is
 * text-like (`value #>> '{}'`). LIKE: `%` any run, `_` one UTF-8
 * character, backslash escapes; ILIKE folds ASCII case only.
 *
 * Ownership: nothing is retained; rt_pgval_text_of_json may hand back an
 *            allocation (see there).
 * Threads:   no shared state.
 * Limits:    none (inputs are NUL-terminated strings and JSON values).
 */
#ifndef RT_COMMON_PGVAL_H
#define RT_COMMON_PGVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum rt_pgval_class { RT_PGVAL_TEXT, RT_PGVAL_NUM, RT_PGVAL_BOOL };

struct rt_pgval_num {
	bool is_int; /* i holds the value exactly; d is (double)i */
	long long i;
	double d;
};

/* int2, int4, int8, oid. */
bool rt_pgval_is_int_type(const char *type);
/* The comparison class of a PostgreSQL type name (unknown names: text). */
enum rt_pgval_class rt_pgval_class_of(const char *type);
/* text, varchar, bpchar, name, citext: the types with LIKE and regexes. */
bool rt_pgval_is_text_like(const char *type);
/* The name PostgreSQL prints for a type in its messages ("int4" → "integer"). */
const char *rt_pgval_type_display(const char *type);

/* PostgreSQL's boolin: t/f, true/false, yes/no, on/off, 1/0 and unique
 * prefixes, any case, surrounding blanks allowed. False when s is none. */
bool rt_pgval_parse_bool(const char *s, bool *out);
/* A decimal number (surrounding blanks allowed, no hex). False when s is none. */
bool rt_pgval_parse_num(const char *s, struct rt_pgval_num *out);
/* A JSON number, or a string holding one. */
bool rt_pgval_num_of_json(const json_t *v, struct rt_pgval_num *out);
/* -1, 0, 1 as PostgreSQL orders numerics (NaN = NaN, above everything). */
int rt_pgval_num_cmp(const struct rt_pgval_num *a, const struct rt_pgval_num *b);
/* A JSON boolean, or a string rt_pgval_parse_bool takes. */
bool rt_pgval_bool_of_json(const json_t *v, bool *out);

/* The text of a non-null JSON value: a string's contents (borrowed), else
 * its compact JSON text in *owned, which the caller frees (NULL when not
 * allocated). NULL when the value cannot be encoded. */
const char *rt_pgval_text_of_json(const json_t *v, char **owned);

/*
 * Compares the non-null JSON value v with the literal s as class tc. Returns
 * 0 with *cmp set to -1, 0 or 1, or -1 when a side does not convert (SQL
 * would raise an error; callers treat it as NULL).
 */
int rt_pgval_compare(enum rt_pgval_class tc, const json_t *v, const char *s, int *cmp);
/* The same for two literals (a constant comparison). */
int rt_pgval_compare_text(enum rt_pgval_class tc, const char *a, const char *b, int *cmp);

/* False when a LIKE pattern ends in a lone backslash (PostgreSQL refuses it). */
bool rt_pgval_like_pattern_ok(const char *pattern);
/* LIKE (icase: ILIKE) of s against a pattern rt_pgval_like_pattern_ok accepts. */
bool rt_pgval_like_match(const char *s, const char *pattern, bool icase);

/*
 * Reads the one-dimensional PostgreSQL array literal lit[0..n) ("{a,\"b,c\"}":
 * blanks around unquoted elements dropped, backslash escapes, an unquoted
 * NULL in any case is a SQL NULL element). Sets *values (n_values strings,
 * each NUL-terminated) and *is_null (per element, allocated only when a NULL
 * occurs, else NULL); the caller frees both, also after a failure (what was
 * read so far). Returns 0, -1 when malformed, -2 past max elements.
 */
int rt_pgval_parse_array(const char *lit, size_t n, size_t max, char ***values, bool **is_null,
			 size_t *n_values);

#endif
