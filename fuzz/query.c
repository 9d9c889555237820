/*
 * Fuzz target: the PostgREST query-string subset (rt_query_parse).
 *
 * Input layout: the whole input is the raw (still percent-encoded) query
 * string.
 *
 * Checked: a failure writes a message and leaves the empty query; a parsed
 * query keeps every limit (nesting depth, filter nodes, list lengths) and its
 * nodes are complete; deinit resets the struct, so a second deinit is a no-op.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/query.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* Checks n, at depth below the root (whose groups nest at most
 * RT_QUERY_MAX_DEPTH deep), and returns how many nodes it holds. */
static size_t check_node(const struct rt_query_node *n, int depth)
{
	if (n->kind == RT_QUERY_COND) {
		CHECK(depth >= 1 && depth <= RT_QUERY_MAX_DEPTH + 1);
		CHECK(n->column);
		CHECK(n->op <= RT_QUERY_IN);
		CHECK(n->n_children == 0 && !n->children);
		CHECK(n->n_values <= RT_QUERY_MAX_LIST);
		CHECK(n->op == RT_QUERY_IN || n->n_values == 1);
		for (size_t i = 0; i < n->n_values; i++)
			CHECK(n->values[i]);
		if (n->op == RT_QUERY_LIKE || n->op == RT_QUERY_ILIKE)
			CHECK(!strchr(n->values[0], '*'));
		if (n->op == RT_QUERY_IS)
			CHECK(!strcmp(n->values[0], "null") || !strcmp(n->values[0], "true") ||
			      !strcmp(n->values[0], "false") || !strcmp(n->values[0], "unknown"));
		return 1;
	}
	CHECK(n->kind == RT_QUERY_AND || n->kind == RT_QUERY_OR);
	CHECK(depth <= RT_QUERY_MAX_DEPTH);
	CHECK(!n->column && n->n_values == 0);
	CHECK(depth == 0 || n->n_children > 0);
	size_t count = 1;
	for (size_t i = 0; i < n->n_children; i++)
		count += check_node(&n->children[i], depth + 1);
	return count;
}

static bool is_empty(const struct rt_query *q)
{
	return !q->select && !q->n_select && q->where.kind == RT_QUERY_AND && !q->where.is_negated &&
	       !q->where.children && !q->where.n_children && !q->order && !q->n_order &&
	       q->limit == -1 && q->offset == 0 && !q->on_conflict && !q->n_on_conflict &&
	       !q->columns && !q->n_columns;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rt_query q;
	char err[256];
	memset(&q, 0xa5, sizeof q);
	err[0] = '\0';
	if (rt_query_parse((const char *)data, size, &q, err, sizeof err)) {
		CHECK(err[0]);
		CHECK(is_empty(&q));
		rt_query_deinit(&q);
		return 0;
	}
	CHECK(!q.where.is_negated && q.where.kind == RT_QUERY_AND);
	CHECK(check_node(&q.where, 0) - 1 <= RT_QUERY_MAX_NODES);
	CHECK(q.n_select <= RT_QUERY_MAX_LIST && (q.select || !q.n_select));
	for (size_t i = 0; i < q.n_select; i++) {
		const struct rt_query_select *it = &q.select[i];
		CHECK(it->agg <= RT_QUERY_AGG_MAX);
		/* only count() has no column; "*" is never aggregated or aliased */
		CHECK(it->column || it->agg == RT_QUERY_AGG_COUNT);
		CHECK(!it->column || strcmp(it->column, "*") || (!it->agg && !it->alias));
	}
	CHECK(q.n_order <= RT_QUERY_MAX_LIST);
	for (size_t i = 0; i < q.n_order; i++)
		CHECK(q.order[i].column && q.order[i].nulls <= RT_QUERY_NULLS_LAST);
	CHECK(q.n_on_conflict <= RT_QUERY_MAX_LIST && q.n_columns <= RT_QUERY_MAX_LIST);
	for (size_t i = 0; i < q.n_on_conflict; i++)
		CHECK(q.on_conflict[i]);
	for (size_t i = 0; i < q.n_columns; i++)
		CHECK(q.columns[i]);
	CHECK(q.limit >= -1 && q.offset >= 0);
	rt_query_deinit(&q);
	CHECK(is_empty(&q));
	rt_query_deinit(&q);
	return 0;
}
