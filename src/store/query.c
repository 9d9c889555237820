#include "store/query.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "net/http.h"

static const char *const op_names[] = {
	[RT_QUERY_EQ] = "eq", [RT_QUERY_NEQ] = "neq", [RT_QUERY_GT] = "gt",     [RT_QUERY_GTE] = "gte",
	[RT_QUERY_LT] = "lt", [RT_QUERY_LTE] = "lte", [RT_QUERY_LIKE] = "like", [RT_QUERY_ILIKE] = "ilike",
	[RT_QUERY_IS] = "is", [RT_QUERY_IN] = "in",
};
#define N_OPS (sizeof op_names / sizeof op_names[0])

/* Parse state for one query string. */
struct ctx {
	struct rt_query *q;
	size_t n_nodes;
	bool is_limit_hit; /* a limit was exceeded: msg is set, no backtracking */
	struct rt_buf msg;
};

/* A cursor over one decoded key or value (NUL-free, NUL-terminated). */
struct cur {
	const char *s;
	size_t n, pos;
};

__attribute__((format(printf, 2, 3))) static void fail(struct ctx *x, const char *fmt, ...)
{
	va_list ap;
	char tmp[256];
	if (x->msg.len)
		return; /* the first error wins */
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		rt_buf_append(&x->msg, tmp, (size_t)n);
		return;
	}
	char *big = rt_xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	rt_buf_append(&x->msg, big, (size_t)n);
	free(big);
}

__attribute__((format(printf, 2, 3))) static void fail_limit(struct ctx *x, const char *fmt, ...)
{
	va_list ap;
	char tmp[128];
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	rt_buf_reset(&x->msg);
	rt_buf_append_str(&x->msg, tmp);
	x->is_limit_hit = true;
}

static bool count_node(struct ctx *x)
{
	if (++x->n_nodes <= RT_QUERY_MAX_NODES)
		return true;
	fail_limit(x, "too many filter nodes (maximum %d)", RT_QUERY_MAX_NODES);
	return false;
}

/* ---- nodes ---- */

static void node_clear(struct rt_query_node *n)
{
	free(n->column);
	for (size_t i = 0; i < n->n_values; i++)
		free(n->values[i]);
	free(n->values);
	for (size_t i = 0; i < n->n_children; i++)
		node_clear(&n->children[i]);
	free(n->children);
	memset(n, 0, sizeof *n);
}

void rt_query_node_deinit(struct rt_query_node *n)
{
	if (!n)
		return;
	node_clear(n);
	n->kind = RT_QUERY_AND;
}

/* Appends a zeroed child to n and returns it; it is n's to free from then on. */
static struct rt_query_node *push_child(struct rt_query_node *n)
{
	n->children = rt_xrealloc(n->children, (n->n_children + 1) * sizeof *n->children);
	struct rt_query_node *c = &n->children[n->n_children++];
	memset(c, 0, sizeof *c);
	return c;
}

static void push_value(struct rt_query_node *n, char *v)
{
	n->values = rt_xrealloc(n->values, (n->n_values + 1) * sizeof *n->values);
	n->values[n->n_values++] = v;
}

static void push_str(char ***list, size_t *n, char *v)
{
	*list = rt_xrealloc(*list, (*n + 1) * sizeof **list);
	(*list)[(*n)++] = v;
}

static void free_strs(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* ---- lexing ---- */

static char peek(const struct cur *c)
{
	return c->pos < c->n ? c->s[c->pos] : '\0';
}

static char peek_at(const struct cur *c, size_t off)
{
	return c->pos + off < c->n ? c->s[c->pos + off] : '\0';
}

static bool at_end(const struct cur *c)
{
	return c->pos >= c->n;
}

static bool eat(struct cur *c, char ch)
{
	if (at_end(c) || c->s[c->pos] != ch)
		return false;
	c->pos++;
	return true;
}

static bool eat_str(struct cur *c, const char *lit)
{
	size_t len = strlen(lit);
	if (c->n - c->pos < len || memcmp(c->s + c->pos, lit, len))
		return false;
	c->pos += len;
	return true;
}

static void skip_ws(struct cur *c)
{
	while (peek(c) == ' ' || peek(c) == '\t')
		c->pos++;
}

/* A double-quoted string, backslash escaping the next character. NULL (and
 * the cursor unmoved) when there is none. */
static char *parse_quoted(struct cur *c)
{
	size_t start = c->pos;
	if (!eat(c, '"'))
		return NULL;
	char *out = rt_xmalloc(c->n - c->pos + 1);
	size_t len = 0;
	while (!at_end(c) && peek(c) != '"') {
		if (peek(c) == '\\' && c->pos + 1 < c->n)
			c->pos++;
		out[len++] = c->s[c->pos++];
	}
	if (!eat(c, '"')) {
		free(out);
		c->pos = start;
		return NULL;
	}
	out[len] = '\0';
	return out;
}

static bool is_ident_char(char ch)
{
	unsigned char u = (unsigned char)ch;
	return isalnum(u) || u >= 0x80 || ch == '_' || ch == ' ' || ch == '$';
}

/*
 * A field name: double-quoted, or runs of letters, digits, '_', ' ', '$'
 * (and any non-ASCII byte) joined by '-' when no '>' follows it (so a JSON
 * arrow ends the name), stripped of spaces. NULL (cursor unmoved) when none.
 */
static char *parse_name(struct cur *c)
{
	if (peek(c) == '"')
		return parse_quoted(c);
	size_t start = c->pos;
	for (;;) {
		size_t run = c->pos;
		while (!at_end(c) && is_ident_char(peek(c)))
			c->pos++;
		if (c->pos == run) {
			c->pos = start;
			return NULL;
		}
		if (peek(c) == '-' && peek_at(c, 1) != '>') {
			c->pos++;
			continue;
		}
		break;
	}
	const char *s = c->s + start;
	size_t n = c->pos - start;
	while (n && *s == ' ')
		s++, n--;
	while (n && s[n - 1] == ' ')
		n--;
	return rt_xstrndup(s, n);
}

static bool is_json_arrow(const struct cur *c)
{
	return peek(c) == '-' && peek_at(c, 1) == '>';
}

/* ---- filters ---- */

/* An `in` list: "(" elements ")", elements quoted or running to ',' or ')'.
 * "()" is the empty list. */
static int parse_list(struct ctx *x, struct cur *c, struct rt_query_node *n)
{
	skip_ws(c);
	if (!eat(c, '('))
		return -1;
	skip_ws(c);
	if (eat(c, ')'))
		goto out_close;
	for (;;) {
		if (n->n_values == RT_QUERY_MAX_LIST) {
			fail_limit(x, "too many items in `in` list (maximum %d)", RT_QUERY_MAX_LIST);
			return -1;
		}
		size_t save = c->pos;
		char *v = parse_quoted(c);
		if (v && peek(c) != ',' && peek(c) != ')') {
			free(v);
			v = NULL;
			c->pos = save;
		}
		if (!v) {
			while (!at_end(c) && peek(c) != ',' && peek(c) != ')')
				c->pos++;
			v = rt_xstrndup(c->s + save, c->pos - save);
		}
		push_value(n, v);
		if (!eat(c, ','))
			break;
	}
	if (!eat(c, ')'))
		return -1;
out_close:
	skip_ws(c);
	return 0;
}

/* A value inside a logic tree: quoted (then followed by ',' ')' or the end),
 * a "{…}" array literal, or everything up to ',' or ')'. */
static char *parse_logic_value(struct cur *c)
{
	size_t save = c->pos;
	char *v = parse_quoted(c);
	if (v) {
		if (at_end(c) || peek(c) == ',' || peek(c) == ')')
			return v;
		free(v);
		c->pos = save;
	}
	if (peek(c) == '{') {
		size_t p = c->pos + 1;
		while (p < c->n && c->s[p] != '{' && c->s[p] != '}')
			p++;
		if (p < c->n && c->s[p] == '}') {
			c->pos = p + 1;
			return rt_xstrndup(c->s + save, c->pos - save);
		}
	}
	while (!at_end(c) && peek(c) != ',' && peek(c) != ')')
		c->pos++;
	return rt_xstrndup(c->s + save, c->pos - save);
}

/* "[not.]op.value" into n; top-level values run to the end of the input. */
static int parse_op_expr(struct ctx *x, struct cur *c, bool is_logic, struct rt_query_node *n)
{
	n->kind = RT_QUERY_COND;
	if (eat_str(c, "not."))
		n->is_negated = true;
	size_t start = c->pos;
	while (!at_end(c) && peek(c) != '.')
		c->pos++;
	size_t op_len = c->pos - start, op;
	for (op = 0; op < N_OPS; op++)
		if (strlen(op_names[op]) == op_len && !memcmp(op_names[op], c->s + start, op_len))
			break;
	if (op == N_OPS || !eat(c, '.'))
		return -1;
	n->op = (enum rt_query_op)op;

	if (n->op == RT_QUERY_IN)
		return parse_list(x, c, n);
	if (n->op == RT_QUERY_IS) {
		static const char *const tri[] = {"null", "true", "false", "unknown"};
		size_t s = c->pos;
		while (isalpha((unsigned char)peek(c)))
			c->pos++;
		for (size_t i = 0; i < sizeof tri / sizeof tri[0]; i++) {
			if (strlen(tri[i]) == c->pos - s &&
			    !strncasecmp(tri[i], c->s + s, c->pos - s)) {
				push_value(n, rt_xstrdup(tri[i]));
				return 0;
			}
		}
		return -1;
	}
	char *v;
	if (is_logic) {
		v = parse_logic_value(c);
	} else {
		v = rt_xstrndup(c->s + c->pos, c->n - c->pos);
		c->pos = c->n;
	}
	if (n->op == RT_QUERY_LIKE || n->op == RT_QUERY_ILIKE)
		for (char *p = v; *p; p++)
			if (*p == '*')
				*p = '%';
	push_value(n, v);
	return 0;
}

static int parse_tree(struct ctx *x, struct cur *c, struct rt_query_node *n, int depth);

/* "[not.](and|or)(tree,tree,…)" at nesting depth (1 for a query parameter). */
static int parse_group(struct ctx *x, struct cur *c, struct rt_query_node *n, int depth)
{
	if (eat_str(c, "not."))
		n->is_negated = true;
	if (eat_str(c, "and"))
		n->kind = RT_QUERY_AND;
	else if (eat_str(c, "or"))
		n->kind = RT_QUERY_OR;
	else
		return -1;
	if (depth > RT_QUERY_MAX_DEPTH) {
		fail_limit(x, "logic tree nested deeper than %d levels", RT_QUERY_MAX_DEPTH);
		return -1;
	}
	if (!count_node(x))
		return -1;
	skip_ws(c);
	if (!eat(c, '('))
		return -1;
	skip_ws(c);
	for (;;) {
		if (parse_tree(x, c, push_child(n), depth + 1))
			return -1;
		skip_ws(c);
		if (!eat(c, ','))
			break;
		skip_ws(c);
	}
	if (!eat(c, ')'))
		return -1;
	skip_ws(c);
	return 0;
}

/* "field.[not.]op.value" inside a logic tree. */
static int parse_stmt(struct ctx *x, struct cur *c, struct rt_query_node *n)
{
	skip_ws(c);
	n->column = parse_name(c);
	if (!n->column || is_json_arrow(c))
		return -1;
	skip_ws(c);
	if (!eat(c, '.') || parse_op_expr(x, c, true, n))
		return -1;
	return count_node(x) ? 0 : -1;
}

static int parse_tree(struct ctx *x, struct cur *c, struct rt_query_node *n, int depth)
{
	size_t save = c->pos;
	if (!parse_stmt(x, c, n))
		return 0;
	node_clear(n);
	if (x->is_limit_hit)
		return -1;
	c->pos = save;
	return parse_group(x, c, n, depth);
}

/* or=(…), and=(…), not.or=(…), not.and=(…): key and value read as one group. */
static int parse_logic_param(struct ctx *x, const char *key, const char *val)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, key);
	rt_buf_append_str(&b, val);
	struct cur c = {b.data, b.len, 0};
	int rc = parse_group(x, &c, push_child(&x->q->where), 1);
	if (!rc && !at_end(&c))
		rc = -1;
	if (rc)
		fail(x, "failed to parse logic tree (%s)", val);
	rt_buf_deinit(&b);
	return rc;
}

static int parse_filter_param(struct ctx *x, const char *key, const char *val)
{
	struct cur k = {key, strlen(key), 0};
	char *name = parse_name(&k);
	if (!name || !at_end(&k)) {
		free(name);
		if (peek(&k) == '.')
			fail(x,
			     "failed to parse tree path (%s): embedded resources are not supported",
			     key);
		else if (is_json_arrow(&k))
			fail(x, "failed to parse tree path (%s): JSON paths are not supported",
			     key);
		else
			fail(x, "failed to parse tree path (%s)", key);
		return -1;
	}
	if (!count_node(x)) {
		free(name);
		return -1;
	}
	struct rt_query_node *n = push_child(&x->q->where);
	n->column = name;
	struct cur c = {val, strlen(val), 0};
	if (parse_op_expr(x, &c, false, n) || !at_end(&c)) {
		fail(x, "failed to parse filter (%s)", val);
		return -1;
	}
	return 0;
}

/* ---- other parameters ---- */

static const struct {
	const char *name; /* followed by "()" */
	enum rt_query_agg agg;
} agg_names[] = {
	{"count", RT_QUERY_AGG_COUNT}, {"sum", RT_QUERY_AGG_SUM}, {"avg", RT_QUERY_AGG_AVG},
	{"min", RT_QUERY_AGG_MIN},     {"max", RT_QUERY_AGG_MAX},
};

/* ".fn()" after a column: the aggregate, or NONE (cursor unmoved). */
static enum rt_query_agg parse_agg(struct cur *c)
{
	size_t save = c->pos;
	if (!eat(c, '.'))
		return RT_QUERY_AGG_NONE;
	for (size_t i = 0; i < sizeof agg_names / sizeof agg_names[0]; i++) {
		if (eat_str(c, agg_names[i].name)) {
			if (eat_str(c, "()"))
				return agg_names[i].agg;
			break;
		}
	}
	c->pos = save;
	return RT_QUERY_AGG_NONE;
}

static void select_clear(struct rt_query *q)
{
	for (size_t i = 0; i < q->n_select; i++) {
		free(q->select[i].column);
		free(q->select[i].alias);
	}
	free(q->select);
	q->select = NULL;
	q->n_select = 0;
}

/*
 * One item: "*", or [alias:]count(), or [alias:]name[.fn()] where fn is
 * count, sum, avg, min or max (PostgREST's pFieldSelect, without embedding,
 * casts and JSON paths). Returns 0, or -1 with *why set for an unsupported
 * form (NULL for a plain syntax error).
 */
static int parse_select_item(struct cur *c, struct rt_query_select *out, const char **why)
{
	*out = (struct rt_query_select){0};
	skip_ws(c);
	if (eat(c, '*')) {
		out->column = rt_xstrdup("*");
		return 0;
	}
	size_t save = c->pos;
	char *alias = parse_name(c);
	if (alias && peek(c) == ':' && peek_at(c, 1) != ':') {
		c->pos++;
	} else {
		free(alias);
		alias = NULL;
		c->pos = save;
	}
	out->alias = alias;
	if (eat_str(c, "count()")) {
		out->agg = RT_QUERY_AGG_COUNT;
	} else {
		out->column = parse_name(c);
		if (!out->column)
			return -1;
		out->agg = parse_agg(c);
	}
	if (peek(c) == '(' || peek(c) == '!')
		*why = "embedded resources are not supported";
	else if (is_json_arrow(c))
		*why = "JSON paths are not supported";
	else if (peek(c) == ':')
		*why = "casts are not supported";
	return *why ? -1 : 0;
}

static int parse_select(struct ctx *x, const char *val)
{
	struct rt_query *q = x->q;
	select_clear(q);
	if (!*val)
		return 0; /* "select=" is the same as no select */
	struct cur c = {val, strlen(val), 0};
	const char *why = NULL;
	for (;;) {
		if (q->n_select == RT_QUERY_MAX_LIST) {
			fail_limit(x, "too many items in select (maximum %d)", RT_QUERY_MAX_LIST);
			return -1;
		}
		struct rt_query_select item;
		if (parse_select_item(&c, &item, &why)) {
			free(item.column);
			free(item.alias);
			goto err_syntax;
		}
		q->select = rt_xrealloc(q->select, (q->n_select + 1) * sizeof *q->select);
		q->select[q->n_select++] = item;
		skip_ws(&c);
		if (!eat(&c, ','))
			break;
	}
	if (at_end(&c))
		return 0;
err_syntax:
	if (why)
		fail(x, "failed to parse select parameter (%s): %s", val, why);
	else
		fail(x, "failed to parse select parameter (%s)", val);
	return -1;
}

static int parse_order(struct ctx *x, const char *val)
{
	struct rt_query *q = x->q;
	for (size_t i = 0; i < q->n_order; i++)
		free(q->order[i].column);
	free(q->order);
	q->order = NULL;
	q->n_order = 0;
	struct cur c = {val, strlen(val), 0};
	for (;;) {
		if (q->n_order == RT_QUERY_MAX_LIST) {
			fail_limit(x, "too many items in order (maximum %d)", RT_QUERY_MAX_LIST);
			return -1;
		}
		skip_ws(&c);
		char *col = parse_name(&c);
		if (!col)
			goto err_syntax;
		q->order = rt_xrealloc(q->order, (q->n_order + 1) * sizeof *q->order);
		struct rt_query_order *o = &q->order[q->n_order++];
		*o = (struct rt_query_order){.column = col};
		if (eat_str(&c, ".asc"))
			o->is_desc = false;
		else if (eat_str(&c, ".desc"))
			o->is_desc = true;
		if (eat_str(&c, ".nullsfirst"))
			o->nulls = RT_QUERY_NULLS_FIRST;
		else if (eat_str(&c, ".nullslast"))
			o->nulls = RT_QUERY_NULLS_LAST;
		skip_ws(&c);
		if (!eat(&c, ','))
			break;
	}
	if (at_end(&c))
		return 0;
err_syntax:
	fail(x, "failed to parse order (%s)", val);
	return -1;
}

/* on_conflict=a,b and columns="a","b": field names separated by commas. */
static int parse_names(struct ctx *x, const char *param, const char *val, char ***list, size_t *n)
{
	free_strs(*list, *n);
	*list = NULL;
	*n = 0;
	struct cur c = {val, strlen(val), 0};
	for (;;) {
		if (*n == RT_QUERY_MAX_LIST) {
			fail_limit(x, "too many items in %s (maximum %d)", param, RT_QUERY_MAX_LIST);
			return -1;
		}
		skip_ws(&c);
		char *name = parse_name(&c);
		if (!name)
			goto err_syntax;
		push_str(list, n, name);
		skip_ws(&c);
		if (!eat(&c, ','))
			break;
	}
	if (at_end(&c))
		return 0;
err_syntax:
	fail(x, "failed to parse %s parameter (%s)", param, val);
	return -1;
}

/* limit=N, offset=N: a non-negative decimal integer. */
static int parse_count(struct ctx *x, const char *param, const char *val, long long *out)
{
	long long v = 0;
	const char *p = val;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (INT64_MAX - (*p - '0')) / 10)
			break;
		v = v * 10 + (*p - '0');
	}
	if (p == val || *p) {
		fail(x, "failed to parse %s parameter (%s)", param, val);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_param(struct ctx *x, const char *key, const char *val)
{
	struct rt_query *q = x->q;
	if (!strcmp(key, "select"))
		return parse_select(x, val);
	if (!strcmp(key, "order"))
		return parse_order(x, val);
	if (!strcmp(key, "limit"))
		return parse_count(x, key, val, &q->limit);
	if (!strcmp(key, "offset"))
		return parse_count(x, key, val, &q->offset);
	if (!strcmp(key, "on_conflict"))
		return parse_names(x, key, val, &q->on_conflict, &q->n_on_conflict);
	if (!strcmp(key, "columns"))
		return parse_names(x, key, val, &q->columns, &q->n_columns);
	if (!strcmp(key, "or") || !strcmp(key, "and") || !strcmp(key, "not.or") ||
	    !strcmp(key, "not.and"))
		return parse_logic_param(x, key, val);
	/* The API key may ride in the query string (Supabase's gateway takes it
	 * out before PostgREST sees it): it is never a filter. */
	if (!strcmp(key, "apikey"))
		return 0;
	return parse_filter_param(x, key, val);
}

static void query_init(struct rt_query *q)
{
	memset(q, 0, sizeof *q);
	q->where.kind = RT_QUERY_AND;
	q->limit = -1;
}

int rt_query_parse(const char *query, size_t len, struct rt_query *out, char *err,
			size_t err_cap)
{
	query_init(out);
	if (!query)
		return 0;
	struct ctx x = {.q = out};
	rt_buf_init(&x.msg);
	if (len > RT_QUERY_MAX_QUERY) {
		fail_limit(&x, "query string is longer than %d bytes", RT_QUERY_MAX_QUERY);
		goto err_deinit;
	}
	for (size_t pos = 0; pos < len;) {
		const char *p = query + pos;
		const char *amp = memchr(p, '&', len - pos);
		size_t plen = amp ? (size_t)(amp - p) : len - pos;
		pos += plen + 1;
		if (!plen)
			continue;
		const char *eq = memchr(p, '=', plen);
		size_t klen = eq ? (size_t)(eq - p) : plen;
		char *key = rt_http_pct_decode(p, klen, true);
		char *val = eq ? rt_http_pct_decode(eq + 1, plen - klen - 1, true) : rt_xstrdup("");
		int rc = -1;
		if (!key || !val) {
			struct rt_buf raw;
			rt_buf_init(&raw);
			rt_buf_append(&raw, p, plen);
			fail(&x, "failed to decode query parameter (%s)", raw.data);
			rt_buf_deinit(&raw);
		} else {
			rc = parse_param(&x, key, val);
		}
		free(key);
		free(val);
		if (rc)
			goto err_deinit;
	}
	rt_buf_deinit(&x.msg);
	return 0;

err_deinit:
	if (err && err_cap)
		snprintf(err, err_cap, "%s", x.msg.len ? x.msg.data : "failed to parse query");
	rt_buf_deinit(&x.msg);
	rt_query_deinit(out);
	return -1;
}

void rt_query_deinit(struct rt_query *q)
{
	if (!q)
		return;
	select_clear(q);
	node_clear(&q->where);
	for (size_t i = 0; i < q->n_order; i++)
		free(q->order[i].column);
	free(q->order);
	free_strs(q->on_conflict, q->n_on_conflict);
	free_strs(q->columns, q->n_columns);
	query_init(q);
}
