/*
 * Fuzz target: row-level security policies (auth/policy.h), from statements
 * to predicates, their evaluation and canonical text.
 *
 * Input layout: statements separated by ';' (each handed to
 * rt_policies_add_statement with default schema "public"); the last one is
 * also added as a catalog definition's USING expression
 * (rt_policies_add_def) on table public.d.
 *
 * Checked: a statement is taken (1), not ours (0) or refused (-1) with a
 * message; a definition compiles (0), is opaque (1) or malformed (-1). For
 * tables t, u, d and realtime.messages, every command, both sides and four
 * requesters (a full claim set, empty claims, a NULL claims object with a
 * topic, service_role): a verdict in range, service_role ALLOW_ALL, a
 * predicate tree in negation normal form (only conditions negated), with
 * columns, 1..RT_QUERY_MAX_LIST values, `is` values null/true/false and
 * bounded depth; the same predicate built twice gives the same canonical
 * text; its eq key points into the tree and that condition holds on a row
 * made of the key; evaluation on fixed rows is 1, 0 or -1.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/policy.h"
#include "common/buf.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static const char *type_of(const char *column, void *ctx)
{
	(void)ctx;
	if (!strcmp(column, "n") || !strcmp(column, "id"))
		return "int8";
	if (!strcmp(column, "done"))
		return "bool";
	if (!strcmp(column, "score"))
		return "numeric";
	return "text";
}

static bool has_column(const char *schema, const char *table, const char *column, void *ctx)
{
	(void)schema;
	(void)table;
	(void)ctx;
	return !column || strcmp(column, "missing") != 0; /* column NULL: the table exists */
}

static void check_tree(const struct rt_query_node *n, int depth)
{
	CHECK(depth <= 4 * RT_POLICY_MAX_DEPTH);
	if (n->kind == RT_QUERY_AND || n->kind == RT_QUERY_OR) {
		CHECK(!n->is_negated);
		CHECK(n->n_children >= 2);
		CHECK(!n->column && !n->n_values);
		for (size_t i = 0; i < n->n_children; i++) {
			CHECK(n->children[i].kind != n->kind); /* flattened */
			check_tree(&n->children[i], depth + 1);
		}
		return;
	}
	CHECK(n->kind == RT_QUERY_COND);
	CHECK(n->column);
	CHECK(n->n_children == 0);
	CHECK(n->n_values >= 1 && n->n_values <= RT_QUERY_MAX_LIST);
	for (size_t i = 0; i < n->n_values; i++)
		CHECK(n->values[i]);
	if (n->op != RT_QUERY_IN)
		CHECK(n->n_values == 1);
	if (n->op == RT_QUERY_IS)
		CHECK(!strcmp(n->values[0], "null") || !strcmp(n->values[0], "true") ||
		      !strcmp(n->values[0], "false"));
}

static bool in_tree(const struct rt_query_node *n, const char *column, const char *value)
{
	if (n->kind == RT_QUERY_COND)
		return n->column == column && n->n_values == 1 && n->values[0] == value;
	for (size_t i = 0; i < n->n_children; i++)
		if (in_tree(&n->children[i], column, value))
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *claims[2], *rows[3];
	if (!claims[0]) {
		claims[0] = json_loads(
			"{\"sub\":\"u1\",\"role\":\"authenticated\",\"email\":\"a@x.io\","
			"\"org\":\"o1\",\"n\":5,\"teams\":[\"t1\",\"t2\",3,null],"
			"\"app_metadata\":{\"org\":\"o1\",\"tags\":[\"x\"],\"admin\":true}}",
			0, NULL);
		claims[1] = json_object();
		rows[0] = json_loads(
			"{\"id\":1,\"owner\":\"u1\",\"org\":\"o1\",\"n\":5,\"done\":true,"
			"\"team\":\"t1\",\"name\":\"abc\",\"score\":\"2.5\","
			"\"extension\":\"broadcast\"}",
			0, NULL);
		rows[1] = json_loads("{\"id\":null,\"owner\":null,\"n\":null,\"done\":null}", 0,
				     NULL);
		rows[2] = json_object();
		CHECK(claims[0] && claims[1] && rows[0] && rows[1] && rows[2]);
	}
	const struct rt_auth who[] = {
		{"authenticated", claims[0], "room:1"},
		{"anon", claims[1], NULL},
		{"authenticated", NULL, "room:u1"},
		{"service_role", claims[0], NULL},
	};

	struct rt_policies *p = rt_policies_new();
	char err[512];
	const char *s = (const char *)data, *end = s + size;
	const char *last = s;
	size_t last_len = 0;
	while (s <= end) {
		const char *semi = memchr(s, ';', (size_t)(end - s));
		size_t len = semi ? (size_t)(semi - s) : (size_t)(end - s);
		err[0] = '\0';
		int rc = rt_policies_add_statement(p, s, len, "public", err, sizeof err);
		CHECK(rc >= -1 && rc <= 1);
		if (rc == -1)
			CHECK(err[0]);
		last = s;
		last_len = len;
		if (!semi)
			break;
		s = semi + 1;
	}
	if (!memchr(last, '\0', last_len)) {
		char *sql = strndup(last, last_len);
		CHECK(sql);
		struct rt_policy_def d = {"public",	 "d",  "fuzz", true,
					  RT_POLICY_ALL, NULL, sql,    NULL};
		int rc = rt_policies_add_def(p, &d, err, sizeof err);
		CHECK(rc >= -1 && rc <= 1);
		if (rc != 0)
			CHECK(err[0]);
		free(sql);
		rt_policies_set_enabled(p, "public", "d", true);
	}
	size_t n_opaque;
	size_t n = rt_policies_count(p, &n_opaque);
	CHECK(n <= RT_POLICY_MAX_POLICIES && n_opaque <= n);
	err[0] = '\0';
	if (rt_policies_validate(p, has_column, NULL, err, sizeof err))
		CHECK(strstr(err, "\"missing\" does not exist"));

	static const char *const tables[][2] = {
		{"public", "t"}, {"public", "u"}, {"public", "d"}, {"realtime", "messages"}};
	static const unsigned cmds[] = {RT_POLICY_SELECT, RT_POLICY_INSERT, RT_POLICY_UPDATE,
					RT_POLICY_DELETE};
	for (size_t ti = 0; ti < 4; ti++) {
		for (size_t ci = 0; ci < 4; ci++) {
			for (int chk = 0; chk < 2; chk++) {
				for (size_t wi = 0; wi < 4; wi++) {
					struct rt_query_node a, b;
					enum rt_policy_verdict v = rt_policies_predicate(
						p, tables[ti][0], tables[ti][1], cmds[ci], chk,
						&who[wi], &a);
					CHECK(v >= RT_POLICY_ALLOW_ALL && v <= RT_POLICY_OPAQUE);
					if (wi == 3)
						CHECK(v == RT_POLICY_ALLOW_ALL);
					if (!rt_policies_is_enabled(p, tables[ti][0],
								    tables[ti][1]))
						CHECK(v == RT_POLICY_ALLOW_ALL);
					if (v != RT_POLICY_ROWS) {
						CHECK(a.kind == RT_QUERY_AND && !a.n_children);
						rt_query_node_deinit(&a);
						continue;
					}
					check_tree(&a, 0);
					CHECK(rt_policies_predicate(p, tables[ti][0], tables[ti][1],
								    cmds[ci], chk, &who[wi],
								    &b) == v);
					struct rt_buf ca, cb;
					rt_buf_init(&ca);
					rt_buf_init(&cb);
					rt_policy_canon(&a, &ca);
					rt_policy_canon(&b, &cb);
					CHECK(ca.len == cb.len &&
					      !memcmp(ca.data, cb.data, ca.len));
					rt_buf_deinit(&ca);
					rt_buf_deinit(&cb);
					for (size_t ri = 0; ri < 3; ri++) {
						int r = rt_policy_eval(&a, rows[ri], type_of, NULL);
						CHECK(r >= -1 && r <= 1);
						CHECK(rt_policy_eval(&a, rows[ri], NULL, NULL) >=
						      -1);
					}
					CHECK(rt_policy_eval(&a, rows[2], type_of, NULL) != 1 ||
					      a.kind != RT_QUERY_COND || a.is_negated ||
					      a.op == RT_QUERY_IS);
					const char *col, *val;
					if (rt_policy_eq_key(&a, &col, &val)) {
						CHECK(in_tree(&a, col, val));
						json_t *row = json_object();
						json_object_set_new(row, col, json_string(val));
						struct rt_query_node k;
						memset(&k, 0, sizeof k);
						k.kind = RT_QUERY_COND;
						k.column = (char *)col;
						k.op = RT_QUERY_EQ;
						k.values = (char **)&val;
						k.n_values = 1;
						/* text compares by bytes: the key's own value
						 * matches */
						if (json_string_value(json_object_get(row, col)))
							CHECK(rt_policy_eval(&k, row, NULL, NULL) ==
							      1);
						json_decref(row);
					}
					rt_query_node_deinit(&a);
					rt_query_node_deinit(&b);
				}
			}
		}
	}
	struct rt_policies *r = rt_policies_ref(p);
	rt_policies_unref(p);
	rt_policies_unref(r);
	return 0;
}
