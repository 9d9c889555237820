/*
 * postgres_changes filters (PROTOCOL.md §5.6): the Supabase grammar
 *   filter  := segment ("," segment)*      AND of all segments
 *   segment := column "=" ["not."] op "." value
 *   op      := eq | neq | lt | lte | gt | gte | in | like | ilike | is
 *            | match | imatch | isdistinct
 * parsed once at subscribe time and evaluated in C against each change's row
 * (the new row for INSERT/UPDATE, the old row for DELETE).
 *
 * Values compare by the column's Postgres type name: numeric types
 * (int2/int4/int8/float4/float8/numeric/oid) as numbers, bool as booleans,
 * everything else as text. A row value of JSON null never matches a
 * comparison (SQL semantics) but does match `is.null`.
 *
 * Where this differs from Postgres or says more than Supabase:
 * - Text compares by bytes (strcmp), not by collation; a non-string row value
 *   compares as its compact JSON text. Integers compare exactly, other
 *   numbers as doubles; NaN equals NaN and sorts above all numbers.
 * - `in` lists are read as Postgres array literals ("{a,\"b,c\"}"): blanks
 *   around unquoted elements dropped, backslash escapes, and an unquoted NULL
 *   (any case) is a SQL NULL element (kept in values as written).
 * - like/ilike: `_` is one UTF-8 character; ilike folds ASCII case only.
 * - match/imatch use POSIX extended regexes (glibc), not Postgres' ARE. To
 *   bound the cost per change, back-references, stacked quantifiers (other
 *   than one non-greedy '?'), patterns over 256 bytes and patterns whose
 *   repetitions expand too far are refused by rt_filter_check.
 * - Only numeric and bool values are checked for casting; other types'
 *   values (uuid, timestamptz, …) are accepted as text.
 * - Blanks trimmed are the ASCII ones.
 *
 * Ownership: rt_filter_parse() returns a filter the caller frees with
 *            rt_filter_free(); error messages are written to a caller buffer.
 * Threads:   a parsed filter is immutable: evaluate it from any thread.
 * Limits:    RT_FILTER_MAX_LEN bytes of filter text, RT_FILTER_MAX_SEGMENTS
 *            segments, RT_FILTER_MAX_IN values per `in` list (all enforced
 *            by rt_filter_parse).
 */
#ifndef RT_REALTIME_FILTER_H
#define RT_REALTIME_FILTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define RT_FILTER_MAX_LEN 4096
#define RT_FILTER_MAX_SEGMENTS 16
#define RT_FILTER_MAX_IN 100

enum rt_filter_op {
	RT_FOP_EQ, RT_FOP_NEQ, RT_FOP_LT, RT_FOP_LTE, RT_FOP_GT, RT_FOP_GTE, RT_FOP_IN,
	RT_FOP_LIKE, RT_FOP_ILIKE, RT_FOP_IS, RT_FOP_MATCH, RT_FOP_IMATCH, RT_FOP_ISDISTINCT,
};

struct rt_filter_cond {
	char *column;
	enum rt_filter_op op;
	bool is_negated; /* "not." prefix */
	char **values;   /* one value, or the list of an `in` */
	size_t n_values;
	void *regex;     /* private: compiled match/imatch pattern, NULL `in` elements */
};

struct rt_filter {
	struct rt_filter_cond *conds;
	size_t n_conds;
};

/*
 * Parses text (text_len bytes). An empty or all-blank text yields a filter
 * with no conditions (matches everything). Returns 0 and sets *out, or -1,
 * sets *out to NULL and writes Supabase's message into err (e.g. "Error
 * parsing `filter` params: filter must not contain empty segments (check for
 * extra commas)", "Error parsing `filter` params: `in` filter value must be
 * wrapped by parentheses", "Error parsing `filter` params: [\"foo\",
 * \"hey\"]" with Elixir's inspect escapes). Errors Supabase raises in the
 * database are reported here with the same prefix, since the values must be
 * split at parse time: "too many values for `in` filter. Maximum 100" and
 * "malformed array literal: \"{…}\""; so are this module's own limits
 * ("filter is longer than 4096 bytes", "too many filter segments. Maximum
 * 16", "filter must not contain NUL bytes"). err may be NULL when err_cap is
 * 0; a message is truncated to err_cap - 1 bytes.
 */
int rt_filter_parse(const char *text, size_t text_len, struct rt_filter **out, char *err,
		    size_t err_cap);

void rt_filter_free(struct rt_filter *f);

/*
 * Checks the filter against the table's columns: every condition's column
 * must be one of names[0..n-1] (types[i] is its Postgres type name; a NULL
 * types is all text); `is` takes null/true/false/unknown (lowercase) and the
 * last three need a bool column; like/ilike/match/imatch a text-like column
 * (text, varchar, bpchar, name, citext) and match/imatch a usable pattern;
 * values must convert to numeric/bool column types. Returns 0, or -1 with
 * the reason in err, worded as the Postgres exception upstream raises (e.g.
 * "invalid column for filter notacolumn", "invalid input syntax for type
 * integer: \"x\"", "is true filter requires a boolean column, got bigint",
 * "invalid regular expression for match filter: …"). A NULL f passes.
 */
int rt_filter_check(const struct rt_filter *f, const char *const *names, const char *const *types,
		    size_t n, char *err, size_t err_cap);

/*
 * True when row (a JSON object column → value) satisfies every condition.
 * type_of(column) gives a column's Postgres type name (NULL when unknown:
 * the condition fails). A column absent from row fails the condition. A
 * condition that is NULL in SQL (a null row value, a value that does not
 * convert, an `in` list whose only hits are NULL elements, a refused
 * pattern) fails whether negated or not; `is` and `isdistinct` never are
 * NULL on values rt_filter_check accepts. A NULL f, or one without
 * conditions, matches every row.
 */
bool rt_filter_match(const struct rt_filter *f, const json_t *row,
		     const char *(*type_of)(const char *column, void *ctx), void *ctx);

/* The indexable condition, when the filter is exactly one non-negated `eq`:
 * sets *column and *value (borrowed) and returns true. */
bool rt_filter_eq_key(const struct rt_filter *f, const char **column, const char **value);

#endif
