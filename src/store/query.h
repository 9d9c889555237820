/*
 * The PostgREST query-string subset that supabase-js' from() sends:
 *   select=a,b,alias:c | *          columns to return; aggregates count(),
 *                                   c.count() c.sum() c.avg() c.min() c.max()
 *                                   (alias:c.sum()), the other columns grouped
 *   <col>=[not.]<op>.<value>        filters, ANDed (ops below)
 *   or=(f,f,…) and=(f,f,…)          nested groups, also not.or=(…), not.and=(…);
 *                                   inside a group a filter is col.[not.]op.value
 *                                   and groups nest: or=(a.eq.1,and(b.gt.2,c.lt.3))
 *   order=a.desc.nullslast,b        limit=N  offset=N
 *   on_conflict=a,b                 columns="a","b"   (inserts and upserts)
 *   apikey=…                        ignored: the key, never a filter
 * ops: eq neq gt gte lt lte like ilike is in (in takes a parenthesized,
 * comma-separated list; elements and values may be double-quoted with
 * backslash escapes; `*` in like/ilike patterns means `%`).
 * Names are percent-decoded query keys and values; this module does not know
 * the schema: the store checks names against it.
 *
 * Details, following PostgREST's parser:
 * - Parameters split on '&' (empty ones skipped); keys and values are
 *   percent-decoded with '+' as a space before any parsing.
 * - A name is double-quoted (backslash escapes) or letters, digits, '_', ' ',
 *   '$' and non-ASCII bytes joined by '-', stripped of spaces. A filter key
 *   with a '.' path (embedding) or '->' (JSON path) is an error, as are
 *   embedded resources, casts and JSON paths in select.
 * - A top-level filter value is the rest of the parameter, taken literally
 *   (quotes included). Inside or=/and= trees and `in` lists a value is
 *   double-quoted (then followed by ',' or ')') or runs to ',' or ')'; in a
 *   tree a "{…}" array literal is one value. `in.()` is the empty list.
 * - `is` takes null/true/false/unknown in any case, stored lowercase.
 * - Ops outside the list (cs, cd, ov, sl, sr, nxl, nxr, adj, fts and
 *   variants, match, imatch, isdistinct, like(any)…) are errors.
 * - select= (empty) means all columns. A repeated select, order, limit,
 *   offset, on_conflict or columns replaces the earlier one; repeated
 *   filters, or= and and= are all ANDed, in query order.
 * - limit and offset are non-negative decimal integers.
 * - Every condition and every group counts as a node; the group of an or=/
 *   and= parameter is at depth 1.
 *
 * Ownership: rt_query_parse() fills a caller-owned struct; release it
 *            with rt_query_deinit() (also after a failed parse).
 * Threads:   no shared state.
 * Limits:    RT_QUERY_MAX_QUERY bytes of query string, RT_QUERY_MAX_DEPTH nesting of
 *            groups, RT_QUERY_MAX_NODES filter nodes, RT_QUERY_MAX_LIST items in any
 *            list (select, order, in, on_conflict, columns).
 */
#ifndef RT_STORE_QUERY_H
#define RT_STORE_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#define RT_QUERY_MAX_QUERY (64 * 1024)
#define RT_QUERY_MAX_DEPTH 8
#define RT_QUERY_MAX_NODES 256
#define RT_QUERY_MAX_LIST 1000

enum rt_query_op {
	RT_QUERY_EQ, RT_QUERY_NEQ, RT_QUERY_GT, RT_QUERY_GTE, RT_QUERY_LT, RT_QUERY_LTE,
	RT_QUERY_LIKE, RT_QUERY_ILIKE, RT_QUERY_IS, RT_QUERY_IN,
};

enum rt_query_kind { RT_QUERY_COND, RT_QUERY_AND, RT_QUERY_OR };

struct rt_query_node {
	enum rt_query_kind kind;
	bool is_negated;
	/* RT_QUERY_COND */
	char *column;
	enum rt_query_op op;
	char **values; /* one value, or the `in` list; like patterns have `*` → `%` */
	size_t n_values;
	/* RT_QUERY_AND / RT_QUERY_OR */
	struct rt_query_node *children;
	size_t n_children;
};

/* PostgREST's aggregate functions in select (`count()`, `col.sum()`, …). */
enum rt_query_agg {
	RT_QUERY_AGG_NONE, RT_QUERY_AGG_COUNT, RT_QUERY_AGG_SUM, RT_QUERY_AGG_AVG,
	RT_QUERY_AGG_MIN, RT_QUERY_AGG_MAX,
};

struct rt_query_select {
	char *column; /* "*" for all; NULL for count() (rows, not a column's values) */
	char *alias;  /* NULL when none (the output key is then the function's name) */
	enum rt_query_agg agg;
};

enum rt_query_nulls { RT_QUERY_NULLS_DEFAULT, RT_QUERY_NULLS_FIRST, RT_QUERY_NULLS_LAST };

struct rt_query_order {
	char *column;
	bool is_desc;
	enum rt_query_nulls nulls;
};

struct rt_query {
	struct rt_query_select *select; /* NULL when absent (means all) */
	size_t n_select;
	struct rt_query_node where;     /* kind RT_QUERY_AND; no children when no filter */
	struct rt_query_order *order;
	size_t n_order;
	long long limit;  /* -1 when absent */
	long long offset; /* 0 when absent */
	char **on_conflict;
	size_t n_on_conflict;
	char **columns;
	size_t n_columns;
};

/*
 * Parses a raw (still percent-encoded) query string of len bytes; query may
 * be NULL for none. out need not be initialized. Unknown parameters are
 * column filters. Returns 0, or -1 with out reset to the empty query and a
 * PostgREST-style message in err, e.g. "failed to parse filter (eqx.1)",
 * "failed to parse order (a.sideways)", "failed to parse logic tree (…)",
 * "failed to parse select parameter (…)[: reason]", "failed to parse tree
 * path (key)[: reason]", "failed to parse limit parameter (…)", "failed to
 * decode query parameter (…)", or a limit ("too many filter nodes (maximum
 * 256)", "logic tree nested deeper than 8 levels", "too many items in
 * <list> (maximum 1000)", "query string is longer than 65536 bytes"); the
 * caller answers 400 with code PGRST100. err may be NULL when err_cap is 0.
 */
int rt_query_parse(const char *query, size_t len, struct rt_query *out, char *err,
			size_t err_cap);

/* Frees what a node tree holds (children, values) and resets n to an empty
 * AND. NULL does nothing. */
void rt_query_node_deinit(struct rt_query_node *n);

/* Frees what q holds and resets it to the empty query (so deinit twice is
 * harmless). NULL does nothing. */
void rt_query_deinit(struct rt_query *q);

#endif
