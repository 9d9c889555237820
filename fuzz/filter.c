/*
 * Fuzz target: postgres_changes filters (rt_filter_parse), then validation
 * and evaluation of what parsed.
 *
 * Input layout: the whole input is the filter text.
 *
 * Checked: a failure says why with Supabase's prefix and leaves no filter; a
 * parsed filter keeps the limits (segments, `in` values) and its conditions
 * are complete. rt_filter_check and rt_filter_match run against a fixed
 * table and rows (a full one, one of nulls, an empty one, and one built from
 * the filter's own values), and a single non-negated `eq` on a text column
 * must match the row holding its value and be the filter's eq key.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "realtime/filter.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define PREFIX "Error parsing `filter` params: "

static const char *const names[] = {"id", "title", "done", "score", "meta", "n", "tag"};
static const char *const types[] = {"int8", "text", "bool", "numeric", "jsonb", "int4", "varchar"};
#define N_COLS (sizeof names / sizeof names[0])

static const char *type_of(const char *column, void *ctx)
{
	(void)ctx;
	for (size_t i = 0; i < N_COLS; i++)
		if (!strcmp(names[i], column))
			return types[i];
	return NULL;
}

static void check_filter(const struct rt_filter *f)
{
	CHECK(f->n_conds <= RT_FILTER_MAX_SEGMENTS);
	CHECK(f->n_conds == 0 || f->conds);
	for (size_t i = 0; i < f->n_conds; i++) {
		const struct rt_filter_cond *c = &f->conds[i];
		CHECK(c->column);
		CHECK(c->op <= RT_FOP_ISDISTINCT);
		if (c->op == RT_FOP_IN)
			CHECK(c->n_values <= RT_FILTER_MAX_IN);
		else
			CHECK(c->n_values == 1);
		for (size_t j = 0; j < c->n_values; j++)
			CHECK(c->values[j]);
		if (c->op != RT_FOP_MATCH && c->op != RT_FOP_IMATCH && c->op != RT_FOP_IN)
			CHECK(c->regex == NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *rows[3];
	if (!rows[0]) {
		rows[0] = json_loads(
			"{\"id\":5,\"title\":\"Hello, world\",\"done\":true,"
			"\"score\":\"2.5\",\"meta\":{\"a\":[1,2]},\"n\":-3,\"tag\":\"x\"}",
			0, NULL);
		rows[1] = json_loads("{\"id\":null,\"title\":null,\"done\":null,\"score\":null,"
				     "\"meta\":null,\"n\":null,\"tag\":null}",
				     0, NULL);
		rows[2] = json_object();
		CHECK(rows[0] && rows[1] && rows[2]);
	}

	struct rt_filter *f = (struct rt_filter *)&f;
	char err[256];
	err[0] = '\0';
	if (rt_filter_parse((const char *)data, size, &f, err, sizeof err)) {
		CHECK(f == NULL);
		CHECK(!strncmp(err, PREFIX, strlen(PREFIX)));
		return 0;
	}
	CHECK(f);
	check_filter(f);

	bool is_valid = rt_filter_check(f, names, types, N_COLS, err, sizeof err) == 0;
	if (!is_valid)
		CHECK(err[0]);
	bool any = false;
	for (size_t i = 0; i < 3; i++)
		any |= rt_filter_match(f, rows[i], type_of, NULL);
	if (f->n_conds == 0)
		CHECK(any);
	else
		CHECK(!rt_filter_match(f, rows[2], type_of, NULL)); /* no columns: no match */

	/* A row made of the filter's own first values, as strings. */
	json_t *own = json_object();
	for (size_t i = 0; i < f->n_conds; i++) {
		const struct rt_filter_cond *c = &f->conds[i];
		if (c->n_values)
			json_object_set_new_nocheck(
				own, c->column,
				json_stringn_nocheck(c->values[0], strlen(c->values[0])));
	}
	bool own_match = rt_filter_match(f, own, type_of, NULL);
	json_decref(own);

	const char *col = NULL, *val = NULL;
	bool is_key = rt_filter_eq_key(f, &col, &val);
	if (is_key) {
		CHECK(f->n_conds == 1 && f->conds[0].op == RT_FOP_EQ && !f->conds[0].is_negated);
		CHECK(col == f->conds[0].column && val == f->conds[0].values[0]);
		const char *t = type_of(col, NULL);
		if (t && (!strcmp(t, "text") || !strcmp(t, "varchar")))
			CHECK(own_match);
	} else if (f->n_conds == 1 && f->conds[0].op == RT_FOP_EQ) {
		CHECK(f->conds[0].is_negated);
	}
	rt_filter_free(f);
	return 0;
}
