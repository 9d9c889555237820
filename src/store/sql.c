/*
 * The SQL builder both stores share (sql.h). Everything that differs
 * between them is read from the dialect.
 */
#include "store/sql.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "store/store_int.h"

/* ---- dialects ---- */

static void placeholder_anonymous(struct rt_buf *b, size_t n)
{
	rt_buf_append_byte(b, '?');
}

static void placeholder_numbered(struct rt_buf *b, size_t n)
{
	rt_buf_printf(b, "$%zu", n);
}

/* SQLite's RETURNING gives full rows in table order; the store projects them. */
static void returning_all(struct rt_buf *out, const struct rt_sql_dialect *d,
			  const struct rt_buf *stmt, const struct rt_store_output *outs, size_t n,
			  bool wants_rows)
{
	rt_buf_append(out, stmt->data, stmt->len);
	rt_buf_append_str(out, " RETURNING *");
}

static const char *const agg_sql[] = {
	[RT_QUERY_AGG_COUNT] = "count(", [RT_QUERY_AGG_SUM] = "sum(", [RT_QUERY_AGG_AVG] = "avg(",
	[RT_QUERY_AGG_MIN] = "min(",     [RT_QUERY_AGG_MAX] = "max(",
};

/* One output: the column, or the aggregate over it (count(*) for count()). */
static void output_expr(struct rt_buf *b, const struct rt_sql_dialect *d,
			const struct rt_store_output *o)
{
	if (o->agg == RT_QUERY_AGG_NONE) {
		rt_sql_col(b, d, NULL, o->col->name);
		return;
	}
	rt_buf_append_str(b, agg_sql[o->agg]);
	if (o->col)
		rt_sql_col(b, d, NULL, o->col->name);
	else
		rt_buf_append_byte(b, '*');
	rt_buf_append_byte(b, ')');
}

static void projection(struct rt_buf *b, const struct rt_sql_dialect *d,
		       const struct rt_store_output *outs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			rt_buf_append_byte(b, ',');
		output_expr(b, d, &outs[i]);
		if (d->is_projection_aliased) {
			rt_buf_append_str(b, " AS ");
			rt_sql_ident(b, outs[i].key);
		}
	}
	if (!n)
		rt_buf_append_str(b, d->empty_projection);
}

/* PostgreSQL: "WITH _w AS (<stmt> RETURNING _t.*) SELECT <rows>, count". */
static void returning_cte(struct rt_buf *out, const struct rt_sql_dialect *d,
			  const struct rt_buf *stmt, const struct rt_store_output *outs, size_t n,
			  bool wants_rows)
{
	rt_buf_append_str(out, "WITH _w AS (");
	rt_buf_append(out, stmt->data, stmt->len);
	rt_buf_append_str(out, " RETURNING _t.*) ");
	if (!wants_rows) {
		rt_buf_append_str(out, "SELECT NULL, count(*) FROM _w");
		return;
	}
	rt_buf_append_str(out, "SELECT coalesce(json_agg(_r), '[]')::text, count(*) FROM (SELECT ");
	projection(out, d, outs, n);
	rt_buf_append_str(out, " FROM _w _t) _r");
}

const struct rt_sql_dialect rt_sql_sqlite = {
	.name = "sqlite",
	.placeholder = placeholder_anonymous,
	.col_qual = NULL,
	.is_schema_qualified = false,
	.read_alias = "",
	.write_alias = "",
	.sql_true = "1",
	.sql_false = "0",
	.is_null = " IS NULL",
	.is_unknown = " IS NULL",
	.is_true = " IS 1",
	.is_false = " IS 0",
	.in_empty = NULL,
	.like_fmt = "%c LIKE %p ESCAPE '\\'",
	.ilike_fmt = "rt_lower(%c) LIKE rt_lower(%p) ESCAPE '\\'", /* ASCII-only otherwise */
	.like_type = "text",
	.is_nulls_explicit = true,
	.read_open = "SELECT ",
	.read_close = "",
	.is_projection_aliased = false,
	.empty_projection = "NULL",
	.is_count_inline = false,
	.is_record_rows = false,
	.key_eq = " IS ",
	.lock_select = "SELECT * FROM ",
	.lock_tail_pk = "",
	.lock_tail_where = " LIMIT 2",
	.returning = returning_all,
	.key_lock_sql = NULL,
	.key_lookup_sql = "SELECT fingerprint, result FROM _rtsync_idempotency "
			  "WHERE key = ? AND ts >= ?",
	.key_record_sql = "INSERT OR REPLACE INTO _rtsync_idempotency (key, fingerprint, result, ts) "
			  "VALUES (?, ?, ?, ?)",
};

const struct rt_sql_dialect rt_sql_postgres = {
	.name = "postgres",
	.placeholder = placeholder_numbered,
	.col_qual = "_t",
	.is_schema_qualified = true,
	.read_alias = " _t",
	.write_alias = " AS _t",
	.sql_true = "TRUE",
	.sql_false = "FALSE",
	.is_null = " IS NULL",
	.is_unknown = " IS UNKNOWN",
	.is_true = " IS TRUE",
	.is_false = " IS FALSE",
	.in_empty = "FALSE",
	.like_fmt = "%c::text LIKE %p",
	.ilike_fmt = "%c::text ILIKE %p",
	.like_type = "text",
	.is_nulls_explicit = false,
	.read_open = "SELECT coalesce((SELECT json_agg(_r) FROM (SELECT ",
	.read_close = ") _r), '[]')::text",
	.is_projection_aliased = true,
	.empty_projection = "",
	.is_count_inline = true,
	.is_record_rows = true,
	.key_eq = " = ",
	.lock_select = "SELECT row_to_json(_t)::text FROM ",
	.lock_tail_pk = " LIMIT 2 FOR UPDATE OF _t",
	.lock_tail_where = " LIMIT 2 FOR UPDATE OF _t",
	.returning = returning_cte,
	.key_lock_sql = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
	.key_lookup_sql = "SELECT encode(fingerprint, 'hex'), result FROM rtsync.idempotency "
			  "WHERE key = $1 AND ts >= $2::bigint",
	.key_record_sql = "INSERT INTO rtsync.idempotency (key, fingerprint, result, ts) "
			  "VALUES ($1, decode($2, 'hex'), $3, $4::bigint) ON CONFLICT (key) DO UPDATE "
			  "SET fingerprint = excluded.fingerprint, result = excluded.result, "
			  "ts = excluded.ts",
};

/* ---- binds ---- */

void rt_sql_binds_init(struct rt_sql_binds *b)
{
	memset(b, 0, sizeof *b);
}

void rt_sql_binds_deinit(struct rt_sql_binds *b)
{
	for (size_t i = 0; i < b->n_owned; i++)
		free(b->owned[i]);
	free(b->owned);
	free(b->v);
	free(b->texts);
	rt_sql_binds_init(b);
}

static void bind_push(struct rt_sql_binds *b, struct rt_sql_bind v)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->v = rt_xrealloc(b->v, b->cap * sizeof *b->v);
		b->texts = rt_xrealloc(b->texts, b->cap * sizeof *b->texts);
	}
	b->v[b->n] = v;
	b->texts[b->n] = v.text;
	b->n++;
}

/* Keeps s until rt_sql_binds_deinit(); returns it. */
static const char *bind_own(struct rt_sql_binds *b, char *s)
{
	if (b->n_owned == b->cap_owned) {
		b->cap_owned = b->cap_owned ? b->cap_owned * 2 : 4;
		b->owned = rt_xrealloc(b->owned, b->cap_owned * sizeof *b->owned);
	}
	b->owned[b->n_owned++] = s;
	return s;
}

void rt_sql_binds_keep(struct rt_sql_binds *b, size_t from)
{
	for (size_t i = from; i < b->n; i++)
		if (b->v[i].kind == RT_SQL_BIND_TEXT && b->v[i].text)
			b->v[i].text = b->texts[i] = bind_own(b, rt_xstrdup(b->v[i].text));
}

/* ---- names and values ---- */

void rt_sql_ident(struct rt_buf *b, const char *name)
{
	rt_buf_append_byte(b, '"');
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			rt_buf_append_byte(b, '"');
		rt_buf_append_byte(b, (uint8_t)*p);
	}
	rt_buf_append_byte(b, '"');
}

void rt_sql_literal(struct rt_buf *b, const char *s)
{
	rt_buf_append_byte(b, '\'');
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			rt_buf_append_byte(b, '\'');
		rt_buf_append_byte(b, (uint8_t)*p);
	}
	rt_buf_append_byte(b, '\'');
}

void rt_sql_table(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t)
{
	if (d->is_schema_qualified) {
		rt_sql_ident(b, t->schema);
		rt_buf_append_byte(b, '.');
	}
	rt_sql_ident(b, t->name);
}

void rt_sql_col(struct rt_buf *b, const struct rt_sql_dialect *d, const char *qual,
		const char *name)
{
	if (!qual)
		qual = d->col_qual;
	if (qual) {
		rt_buf_append_str(b, qual);
		rt_buf_append_byte(b, '.');
	}
	rt_sql_ident(b, name);
}

void rt_sql_param(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		  const char *type, const char *text)
{
	bind_push(bv, (struct rt_sql_bind){.kind = RT_SQL_BIND_TEXT, .type = type, .text = text});
	d->placeholder(b, bv->n);
}

void rt_sql_param_json(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		       const char *type, const json_t *v)
{
	bind_push(bv, (struct rt_sql_bind){.kind = RT_SQL_BIND_JSON, .type = type, .json = v});
	d->placeholder(b, bv->n);
}

int rt_sql_column(const struct rt_store_table *t, const char *name,
		  const struct rt_store_column **out, struct rt_store_error *e)
{
	*out = rt_store_column(t, name);
	if (!*out) {
		rt_store_set_err(e, 400, "42703", NULL, "column %s.%s does not exist", t->name, name);
		return -1;
	}
	return 0;
}

/* ---- conditions ---- */

/* Appends fmt with %c as the column and %p as a placeholder bound to v. */
static void append_like(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
			const char *fmt, const char *qual, const char *col, const char *v)
{
	for (const char *p = fmt; *p; p++) {
		if (p[0] == '%' && p[1] == 'c') {
			rt_sql_col(b, d, qual, col);
			p++;
		} else if (p[0] == '%' && p[1] == 'p') {
			rt_sql_param(b, bv, d, d->like_type, v);
			p++;
		} else {
			rt_buf_append_byte(b, (uint8_t)*p);
		}
	}
}

int rt_sql_where(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		 const struct rt_store_table *t, const struct rt_query_node *n, const char *qual,
		 struct rt_store_error *e)
{
	if (n->is_negated)
		rt_buf_append_str(b, "NOT ");
	if (n->kind != RT_QUERY_COND) {
		if (!n->n_children) {
			rt_buf_append_str(b, d->sql_true);
			return 0;
		}
		rt_buf_append_byte(b, '(');
		for (size_t i = 0; i < n->n_children; i++) {
			if (i)
				rt_buf_append_str(b, n->kind == RT_QUERY_AND ? " AND " : " OR ");
			if (rt_sql_where(b, bv, d, t, &n->children[i], qual, e))
				return -1;
		}
		rt_buf_append_byte(b, ')');
		return 0;
	}
	const struct rt_store_column *c;
	if (rt_sql_column(t, n->column, &c, e))
		return -1;
	rt_buf_append_byte(b, '(');
	const char *v0 = n->n_values ? n->values[0] : "";
	switch (n->op) {
	case RT_QUERY_IS: {
		const char *is = !strcasecmp(v0, "null")      ? d->is_null
				 : !strcasecmp(v0, "unknown") ? d->is_unknown
				 : !strcasecmp(v0, "true")    ? d->is_true
				 : !strcasecmp(v0, "false")   ? d->is_false
							      : NULL;
		if (!is) {
			rt_store_set_err(e, 400, "PGRST100", NULL, "failed to parse filter (is.%s)",
					 v0);
			return -1;
		}
		rt_sql_col(b, d, qual, c->name);
		rt_buf_append_str(b, is);
		break;
	}
	case RT_QUERY_IN:
		if (!n->n_values && d->in_empty) {
			rt_buf_append_str(b, d->in_empty);
			break;
		}
		rt_sql_col(b, d, qual, c->name);
		rt_buf_append_str(b, " IN (");
		for (size_t i = 0; i < n->n_values; i++) {
			if (i)
				rt_buf_append_byte(b, ',');
			rt_sql_param(b, bv, d, c->type, n->values[i]);
		}
		rt_buf_append_byte(b, ')');
		break;
	case RT_QUERY_LIKE:
	case RT_QUERY_ILIKE:
		append_like(b, bv, d, n->op == RT_QUERY_LIKE ? d->like_fmt : d->ilike_fmt, qual,
			    c->name, v0);
		break;
	default: {
		static const char *const sym[] = {
			[RT_QUERY_EQ] = " = ", [RT_QUERY_NEQ] = " <> ", [RT_QUERY_GT] = " > ",
			[RT_QUERY_GTE] = " >= ", [RT_QUERY_LT] = " < ", [RT_QUERY_LTE] = " <= ",
		};
		rt_sql_col(b, d, qual, c->name);
		rt_buf_append_str(b, sym[n->op]);
		rt_sql_param(b, bv, d, c->type, v0);
	}
	}
	rt_buf_append_byte(b, ')');
	return 0;
}

/* ---- reads ---- */

int rt_sql_check_order(const struct rt_store_table *t, const struct rt_query *q,
		       struct rt_store_error *e)
{
	const struct rt_store_column *c;
	for (size_t i = 0; q && i < q->n_order; i++)
		if (rt_sql_column(t, q->order[i].column, &c, e))
			return -1;
	return 0;
}

int rt_sql_order(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t,
		 const struct rt_query *q, struct rt_store_error *e)
{
	for (size_t i = 0; q && i < q->n_order; i++) {
		const struct rt_store_column *c;
		if (rt_sql_column(t, q->order[i].column, &c, e))
			return -1;
		rt_buf_append_str(b, i ? ", " : " ORDER BY ");
		rt_sql_col(b, d, NULL, c->name);
		bool is_desc = q->order[i].is_desc;
		enum rt_query_nulls nulls = q->order[i].nulls;
		if (nulls == RT_QUERY_NULLS_DEFAULT && d->is_nulls_explicit)
			nulls = is_desc ? RT_QUERY_NULLS_FIRST : RT_QUERY_NULLS_LAST;
		rt_buf_append_str(b, is_desc ? " DESC" : " ASC");
		if (nulls == RT_QUERY_NULLS_FIRST)
			rt_buf_append_str(b, " NULLS FIRST");
		else if (nulls == RT_QUERY_NULLS_LAST)
			rt_buf_append_str(b, " NULLS LAST");
	}
	return 0;
}

void rt_sql_limit(struct rt_buf *b, const struct rt_query *q)
{
	long long limit = q && q->limit >= 0 && q->limit < RT_STORE_MAX_ROWS ? q->limit
									      : RT_STORE_MAX_ROWS;
	rt_buf_printf(b, " LIMIT %lld OFFSET %lld", limit, q && q->offset > 0 ? q->offset : 0);
}

void rt_sql_where_clause(struct rt_buf *b, const char *where)
{
	if (where && *where) {
		rt_buf_append_str(b, " WHERE ");
		rt_buf_append_str(b, where);
	}
}

void rt_sql_count(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t,
		  const char *where)
{
	rt_buf_append_str(b, "SELECT count(*) FROM ");
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->read_alias);
	rt_sql_where_clause(b, where);
}

/* Whether column c is one of the group's (an output without an aggregate). */
static bool is_group_col(const struct rt_store_output *outs, size_t n,
			 const struct rt_store_column *c)
{
	for (size_t i = 0; i < n; i++)
		if (outs[i].agg == RT_QUERY_AGG_NONE && outs[i].col == c)
			return true;
	return false;
}

/* " GROUP BY" the outputs without an aggregate (nothing when there are none:
 * one row over all the rows). */
static void group_by(struct rt_buf *b, const struct rt_sql_dialect *d,
		     const struct rt_store_output *outs, size_t n)
{
	size_t n_group = 0;
	for (size_t i = 0; i < n; i++) {
		if (outs[i].agg != RT_QUERY_AGG_NONE)
			continue;
		rt_buf_append_str(b, n_group++ ? ", " : " GROUP BY ");
		rt_sql_col(b, d, NULL, outs[i].col->name);
	}
}

int rt_sql_check_group_order(const struct rt_store_table *t, const struct rt_store_output *outs,
			     size_t n, const struct rt_query *q, struct rt_store_error *e)
{
	for (size_t i = 0; q && i < q->n_order; i++) {
		const struct rt_store_column *c;
		if (rt_sql_column(t, q->order[i].column, &c, e))
			return -1;
		if (!is_group_col(outs, n, c)) {
			rt_store_set_err(e, 400, "42803", NULL,
					 "column \"%s.%s\" must appear in the GROUP BY clause or be "
					 "used in an aggregate function",
					 t->name, c->name);
			return -1;
		}
	}
	return 0;
}

int rt_sql_read(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t,
		const struct rt_store_output *outs, size_t n, bool is_grouped, const char *where,
		const struct rt_query *q, bool wants_count, struct rt_store_error *e)
{
	if (is_grouped && rt_sql_check_group_order(t, outs, n, q, e))
		return -1;
	rt_buf_append_str(b, d->read_open);
	projection(b, d, outs, n);
	rt_buf_append_str(b, " FROM ");
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->read_alias);
	rt_sql_where_clause(b, where);
	if (is_grouped)
		group_by(b, d, outs, n);
	if (rt_sql_order(b, d, t, q, e))
		return -1;
	rt_sql_limit(b, q);
	rt_buf_append_str(b, d->read_close);
	if (wants_count && d->is_count_inline) { /* the same parameters, referenced again */
		rt_buf_append_str(b, ", (");
		rt_sql_count(b, d, t, where);
		rt_buf_append_byte(b, ')');
	}
	return 0;
}

/* ---- writes ---- */

/* The compact JSON text of row, owned by bv ("{}" when it cannot be written). */
static const char *row_text(struct rt_sql_binds *bv, const json_t *row)
{
	char *txt = json_dumps(row, JSON_COMPACT | JSON_REAL_PRECISION(17));
	return bind_own(bv, txt ? txt : rt_xstrdup("{}"));
}

/* "json_populate_record(NULL::tbl, $n::json) alias": PostgreSQL converts the
 * JSON fields to the column types, as PostgREST has it do. */
static void record_as(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		      const struct rt_store_table *t, const json_t *row, const char *alias)
{
	rt_buf_append_str(b, "json_populate_record(NULL::");
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, ", ");
	rt_sql_param(b, bv, d, "json", row_text(bv, row));
	rt_buf_printf(b, "::json) %s", alias);
}

/* The value of column c of row: alias."c" of the row's record, or a bind. */
static void row_value(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		      const char *alias, const struct rt_store_column *c, const json_t *row)
{
	if (d->is_record_rows)
		rt_sql_col(b, d, alias, c->name);
	else
		rt_sql_param_json(b, bv, d, c->type, json_object_get(row, c->name));
}

/* "pk1 <key_eq> <value> AND …": the statement's row is the one key names. */
static void pk_match(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		     const struct rt_store_table *t, const json_t *key)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n_cols; i++) {
		if (!t->cols[i].is_pk)
			continue;
		rt_buf_append_str(b, n++ ? " AND " : "");
		rt_sql_col(b, d, NULL, t->cols[i].name);
		rt_buf_append_str(b, d->key_eq);
		row_value(b, bv, d, "_k", &t->cols[i], key);
	}
}

static int check_pk(const struct rt_store_table *t, const json_t *key, struct rt_store_error *e)
{
	for (size_t i = 0; i < t->n_cols; i++) {
		if (t->cols[i].is_pk && !json_object_get(key, t->cols[i].name)) {
			rt_store_set_err(e, 400, "RTS400", NULL,
					 "A write with a base needs the primary key column \"%s\"",
					 t->cols[i].name);
			return -1;
		}
	}
	return 0;
}

/* "a" = <value>,…: set's keys (columns of t, checked by the caller). */
static void set_list(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		     const struct rt_store_table *t, const json_t *set)
{
	const char *k;
	json_t *v;
	size_t j = 0;
	json_object_foreach((json_t *)set, k, v) {
		/* A key that is no column (the caller checks) fails in the database. */
		const struct rt_store_column *c = rt_store_column(t, k);
		struct rt_store_column unknown = {.name = (char *)k, .type = (char *)"text"};
		if (j++)
			rt_buf_append_byte(b, ',');
		rt_sql_ident(b, k);
		rt_buf_append_str(b, " = ");
		row_value(b, bv, d, "_j", c ? c : &unknown, set);
	}
}

int rt_sql_insert_columns(const struct rt_write *w, const json_t *row,
			  const struct rt_store_column **names, size_t *n, struct rt_store_error *e)
{
	const struct rt_store_table *t = w->table;
	const struct rt_query *q = w->where;
	*n = 0;
	/* With columns=, every named column is written (missing keys as NULL);
	 * otherwise only the row's keys, so defaults apply to the rest. */
	if (q && q->n_columns) {
		for (size_t j = 0; j < q->n_columns && *n < t->n_cols; j++) {
			const struct rt_store_column *c;
			if (rt_sql_column(t, q->columns[j], &c, e))
				return -1;
			if (!w->is_missing_default || json_object_get(row, c->name))
				names[(*n)++] = c;
		}
		return 0;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)row, k, v) {
		const struct rt_store_column *c = rt_store_column(t, k);
		if (!c) /* the caller checks; say what it would */
			return rt_store_check_row_keys(t, row, e);
		if (*n < t->n_cols)
			names[(*n)++] = c;
	}
	return 0;
}

void rt_sql_insert_head(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
			const struct rt_store_table *t, const struct rt_store_column *const *names,
			size_t n, const json_t *row)
{
	rt_buf_append_str(b, "INSERT INTO ");
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->write_alias);
	if (!n) {
		rt_buf_append_str(b, " DEFAULT VALUES");
		return;
	}
	rt_buf_append_str(b, " (");
	for (size_t j = 0; j < n; j++) {
		if (j)
			rt_buf_append_byte(b, ',');
		rt_sql_ident(b, names[j]->name);
	}
	rt_buf_append_str(b, d->is_record_rows ? ") SELECT " : ") VALUES (");
	for (size_t j = 0; j < n; j++) {
		if (j)
			rt_buf_append_byte(b, ',');
		row_value(b, bv, d, "_j", names[j], row);
	}
	if (d->is_record_rows) {
		rt_buf_append_str(b, " FROM ");
		record_as(b, bv, d, t, row, "_j");
	} else {
		rt_buf_append_byte(b, ')');
	}
}

void rt_sql_insert_head_rows(struct rt_buf *b, struct rt_sql_binds *bv,
			     const struct rt_sql_dialect *d, const struct rt_store_table *t,
			     const struct rt_store_column *const *names, size_t n, const json_t *rows)
{
	rt_buf_append_str(b, "INSERT INTO ");
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->write_alias);
	rt_buf_append_str(b, " (");
	for (size_t j = 0; j < n; j++) {
		if (j)
			rt_buf_append_byte(b, ',');
		rt_sql_ident(b, names[j]->name);
	}
	if (d->is_record_rows) {
		rt_buf_append_str(b, ") SELECT ");
		for (size_t j = 0; j < n; j++) {
			if (j)
				rt_buf_append_byte(b, ',');
			rt_sql_col(b, d, "_j", names[j]->name);
		}
		rt_buf_append_str(b, " FROM json_populate_recordset(NULL::");
		rt_sql_table(b, d, t);
		rt_buf_append_str(b, ", ");
		char *txt = json_dumps(rows, JSON_COMPACT | JSON_REAL_PRECISION(17));
		rt_sql_param(b, bv, d, "json", bind_own(bv, txt ? txt : rt_xstrdup("[]")));
		rt_buf_append_str(b, "::json) _j");
		return;
	}
	rt_buf_append_str(b, ") VALUES ");
	size_t i;
	const json_t *row;
	json_array_foreach(rows, i, row) {
		rt_buf_append_str(b, i ? ",(" : "(");
		for (size_t j = 0; j < n; j++) {
			if (j)
				rt_buf_append_byte(b, ',');
			row_value(b, bv, d, "_j", names[j], row);
		}
		rt_buf_append_byte(b, ')');
	}
}

int rt_sql_conflict_target(struct rt_buf *b, const struct rt_write *w, struct rt_store_error *e)
{
	const struct rt_store_table *t = w->table;
	const struct rt_query *q = w->where;
	rt_buf_append_str(b, " ON CONFLICT (");
	size_t n_conf = 0;
	for (size_t j = 0; q && j < q->n_on_conflict; j++) {
		const struct rt_store_column *c;
		if (rt_sql_column(t, q->on_conflict[j], &c, e))
			return -1;
		rt_buf_append_str(b, n_conf++ ? "," : "");
		rt_sql_ident(b, c->name);
	}
	for (size_t j = 0; !n_conf && j < t->n_cols; j++) {
		if (!t->cols[j].is_pk)
			continue;
		rt_buf_append_str(b, n_conf++ ? "," : "");
		rt_sql_ident(b, t->cols[j].name);
	}
	rt_buf_append_byte(b, ')');
	return 0;
}

void rt_sql_do_update(struct rt_buf *b, const struct rt_store_column *const *names, size_t n)
{
	rt_buf_append_str(b, " DO UPDATE SET ");
	for (size_t j = 0; j < n; j++) {
		if (j)
			rt_buf_append_byte(b, ',');
		rt_sql_ident(b, names[j]->name);
		rt_buf_append_str(b, " = excluded.");
		rt_sql_ident(b, names[j]->name);
	}
}

int rt_sql_insert(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		  const struct rt_write *w, const json_t *row, struct rt_store_error *e)
{
	const struct rt_store_table *t = w->table;
	int rc = -1;
	const struct rt_store_column **names = rt_xcalloc(t->n_cols + 1, sizeof *names);
	size_t n;
	if (rt_sql_insert_columns(w, row, names, &n, e))
		goto out;
	rt_sql_insert_head(b, bv, d, t, names, n, row);
	if (w->kind == RT_WRITE_UPSERT) {
		if (rt_sql_conflict_target(b, w, e))
			goto out;
		if (w->is_ignore_duplicates || !n)
			rt_buf_append_str(b, " DO NOTHING");
		else
			rt_sql_do_update(b, names, n);
	}
	rc = 0;
out:
	free(names);
	return rc;
}

int rt_sql_update(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		  const struct rt_store_table *t, const json_t *set, struct rt_store_error *e)
{
	if (!json_object_size(set)) {
		rt_store_set_err(e, 400, "PGRST102", NULL, "Empty or invalid json");
		return -1;
	}
	rt_buf_append_str(b, "UPDATE ");
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->write_alias);
	rt_buf_append_str(b, " SET ");
	set_list(b, bv, d, t, set);
	if (d->is_record_rows) {
		rt_buf_append_str(b, " FROM ");
		record_as(b, bv, d, t, set, "_j");
	}
	return 0;
}

void rt_sql_delete(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t)
{
	rt_buf_append_str(b, "DELETE FROM ");
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->write_alias);
}

void rt_sql_returning(struct rt_buf *out, const struct rt_sql_dialect *d, const struct rt_buf *stmt,
		      const struct rt_store_output *outs, size_t n, bool wants_rows)
{
	d->returning(out, d, stmt, outs, n, wants_rows);
}

/* ---- writes with a base ---- */

int rt_sql_select_pk(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		     const struct rt_store_table *t, const json_t *key, struct rt_store_error *e)
{
	if (check_pk(t, key, e))
		return -1;
	rt_buf_append_str(b, d->lock_select);
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->write_alias);
	if (d->is_record_rows) {
		rt_buf_append_str(b, ", ");
		record_as(b, bv, d, t, key, "_k");
	}
	rt_buf_append_str(b, " WHERE ");
	pk_match(b, bv, d, t, key);
	rt_buf_append_str(b, d->lock_tail_pk);
	return 0;
}

void rt_sql_select_where(struct rt_buf *b, const struct rt_sql_dialect *d,
			 const struct rt_store_table *t, const char *where)
{
	rt_buf_append_str(b, d->lock_select);
	rt_sql_table(b, d, t);
	rt_buf_append_str(b, d->write_alias);
	rt_buf_append_str(b, " WHERE ");
	rt_buf_append_str(b, where);
	rt_buf_append_str(b, d->lock_tail_where);
}

int rt_sql_write_pk(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		    const struct rt_store_table *t, const json_t *current, const json_t *apply,
		    struct rt_store_error *e)
{
	if (check_pk(t, current, e))
		return -1;
	if (apply) {
		rt_buf_append_str(b, "UPDATE ");
		rt_sql_table(b, d, t);
		rt_buf_append_str(b, d->write_alias);
		rt_buf_append_str(b, " SET ");
		set_list(b, bv, d, t, apply);
		if (d->is_record_rows) {
			rt_buf_append_str(b, " FROM ");
			record_as(b, bv, d, t, apply, "_j");
			rt_buf_append_str(b, ", ");
		}
	} else {
		rt_sql_delete(b, d, t);
		if (d->is_record_rows)
			rt_buf_append_str(b, " USING ");
	}
	if (d->is_record_rows)
		record_as(b, bv, d, t, current, "_k");
	rt_buf_append_str(b, " WHERE ");
	pk_match(b, bv, d, t, current);
	return 0;
}
