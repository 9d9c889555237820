/*
 * The backend-neutral part of the store: dispatch through the backend's ops,
 * schema lookups, and helpers both backends use.
 */
#include "store/store.h"

#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "store/store_int.h"

void rt_store_set_err(struct rt_store_error *e, int status, const char *code,
		      const char *details, const char *fmt, ...)
{
	e->status = status;
	snprintf(e->code, sizeof e->code, "%s", code);
	snprintf(e->details, sizeof e->details, "%s", details ? details : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
	/* names from the request may be anything, and cutting may split a character */
	rt_utf8_truncate(e->message);
	rt_utf8_truncate(e->details);
}

void rt_store_schema_free(struct rt_store_schema *sc)
{
	for (size_t i = 0; i < sc->n_tables; i++) {
		struct rt_store_table *t = &sc->tables[i];
		for (size_t j = 0; j < t->n_cols; j++) {
			free(t->cols[j].name);
			free(t->cols[j].type);
		}
		free(t->cols);
		free(t->schema);
		free(t->name);
	}
	free(sc->tables);
	memset(sc, 0, sizeof *sc);
}

static const char *const agg_fn[] = {
	[RT_QUERY_AGG_COUNT] = "count", [RT_QUERY_AGG_SUM] = "sum", [RT_QUERY_AGG_AVG] = "avg",
	[RT_QUERY_AGG_MIN] = "min",     [RT_QUERY_AGG_MAX] = "max",
};

static bool is_int_type(const char *t)
{
	return !strcmp(t, "int2") || !strcmp(t, "int4") || !strcmp(t, "int8");
}

static bool is_float_type(const char *t)
{
	return !strcmp(t, "float4") || !strcmp(t, "float8");
}

/* What agg of column c gives, as PostgreSQL types it; NULL when PostgreSQL
 * has no such function for c's type. */
static const char *agg_type(enum rt_query_agg agg, const struct rt_store_column *c)
{
	switch (agg) {
	case RT_QUERY_AGG_NONE:
		return c->type;
	case RT_QUERY_AGG_COUNT:
		return "int8";
	case RT_QUERY_AGG_SUM:
		if (!strcmp(c->type, "int2") || !strcmp(c->type, "int4"))
			return "int8";
		if (!strcmp(c->type, "int8") || !strcmp(c->type, "numeric"))
			return "numeric";
		return is_float_type(c->type) ? c->type : NULL;
	case RT_QUERY_AGG_AVG:
		if (is_int_type(c->type) || !strcmp(c->type, "numeric"))
			return "numeric";
		return is_float_type(c->type) ? "float8" : NULL;
	case RT_QUERY_AGG_MIN:
	case RT_QUERY_AGG_MAX:
		if (!strcmp(c->type, "json") || !strcmp(c->type, "jsonb") ||
		    !strcmp(c->type, "bool") || !strcmp(c->type, "bytea"))
			return NULL;
		return c->type;
	}
	return NULL;
}

/* PostgreSQL's names of the types it spells out in its messages. */
static const char *type_name(const char *t)
{
	static const char *const long_names[][2] = {
		{"bool", "boolean"},
		{"int2", "smallint"},
		{"int4", "integer"},
		{"int8", "bigint"},
		{"float4", "real"},
		{"float8", "double precision"},
		{"varchar", "character varying"},
		{"bpchar", "character"},
		{"timestamptz", "timestamp with time zone"},
		{"timestamp", "timestamp without time zone"},
		{"timetz", "time with time zone"},
		{"time", "time without time zone"},
	};
	for (size_t i = 0; i < sizeof long_names / sizeof long_names[0]; i++)
		if (!strcmp(t, long_names[i][0]))
			return long_names[i][1];
	return t;
}

int rt_store_outputs(const struct rt_store_table *t, const struct rt_query *q,
		     struct rt_store_output **out, size_t *n, bool *is_grouped,
		     struct rt_store_error *e)
{
	bool all = !q || !q->select;
	size_t cap = all ? t->n_cols : 0; /* every "*" expands to all columns */
	for (size_t i = 0; !all && i < q->n_select; i++)
		cap += q->select[i].column && !strcmp(q->select[i].column, "*") ? t->n_cols : 1;
	*out = rt_xcalloc(cap ? cap : 1, sizeof **out);
	*n = 0;
	*is_grouped = false;
	for (size_t j = 0; all && j < t->n_cols; j++)
		(*out)[(*n)++] = (struct rt_store_output){t->cols[j].name, &t->cols[j],
							  RT_QUERY_AGG_NONE, t->cols[j].type};
	for (size_t i = 0; !all && i < q->n_select; i++) {
		const struct rt_query_select *it = &q->select[i];
		if (!it->column) { /* count() */
			(*out)[(*n)++] = (struct rt_store_output){
				it->alias ? it->alias : agg_fn[RT_QUERY_AGG_COUNT], NULL,
				RT_QUERY_AGG_COUNT, "int8"};
			*is_grouped = true;
			continue;
		}
		if (!strcmp(it->column, "*")) {
			for (size_t j = 0; j < t->n_cols; j++)
				(*out)[(*n)++] = (struct rt_store_output){
					t->cols[j].name, &t->cols[j], RT_QUERY_AGG_NONE,
					t->cols[j].type};
			continue;
		}
		const struct rt_store_column *c = rt_store_column(t, it->column);
		if (!c) {
			rt_store_set_err(e, 400, "42703", NULL, "column %s.%s does not exist", t->name,
					 it->column);
			return -1;
		}
		const char *type = agg_type(it->agg, c);
		if (!type) {
			rt_store_set_err(e, 404, "42883", NULL, "function %s(%s) does not exist",
					 agg_fn[it->agg], type_name(c->type));
			return -1;
		}
		const char *key = it->alias ? it->alias : it->agg ? agg_fn[it->agg] : c->name;
		(*out)[(*n)++] = (struct rt_store_output){key, c, it->agg, type};
		*is_grouped |= it->agg != RT_QUERY_AGG_NONE;
	}
	return 0;
}

/* 400 PGRST100 when q's select has an aggregate: the rows a write returns
 * are the rows it wrote, never groups. q may be NULL. */
static int check_no_aggs(const struct rt_query *q, struct rt_store_error *e)
{
	for (size_t i = 0; q && i < q->n_select; i++) {
		if (q->select[i].agg != RT_QUERY_AGG_NONE) {
			rt_store_set_err(e, 400, "PGRST100", NULL,
					 "aggregate functions are only supported in reads, not "
					 "in the representation of a write");
			return -1;
		}
	}
	return 0;
}

void rt_store_close(struct rt_store *s)
{
	if (s)
		s->ops->close(s);
}

const char *rt_store_backend(const struct rt_store *s)
{
	return s->ops->name;
}

const struct rt_store_schema *rt_store_schema(const struct rt_store *s)
{
	return &s->schema;
}

const struct rt_store_table *rt_store_table(const struct rt_store *s, const char *schema,
					    const char *name)
{
	if (schema && strcmp(schema, "public"))
		return NULL;
	for (size_t i = 0; i < s->schema.n_tables; i++)
		if (!strcmp(s->schema.tables[i].name, name))
			return &s->schema.tables[i];
	return NULL;
}

const struct rt_store_column *rt_store_column(const struct rt_store_table *t, const char *name)
{
	for (size_t i = 0; i < t->n_cols; i++)
		if (!strcmp(t->cols[i].name, name))
			return &t->cols[i];
	return NULL;
}

int rt_store_check_columns(const struct rt_store_table *t, const struct rt_query_node *n, char *err,
			   size_t err_cap)
{
	if (n->kind == RT_QUERY_COND) {
		if (rt_store_column(t, n->column))
			return 0;
		snprintf(err, err_cap, "column %s.%s does not exist", t->name, n->column);
		return -1;
	}
	for (size_t i = 0; i < n->n_children; i++)
		if (rt_store_check_columns(t, &n->children[i], err, err_cap))
			return -1;
	return 0;
}

/* ---- row-level security ---- */

void rt_store_policies_init(struct rt_store *s)
{
	pthread_mutex_init(&s->policies_mu, NULL);
	s->policies = rt_policies_new();
	atomic_store(&s->policies_version, 1);
}

void rt_store_policies_deinit(struct rt_store *s)
{
	if (!s->policies)
		return; /* never initialized (a failed open) */
	rt_policies_unref(s->policies);
	s->policies = NULL;
	pthread_mutex_destroy(&s->policies_mu);
}

void rt_store_set_policies(struct rt_store *s, struct rt_policies *p)
{
	pthread_mutex_lock(&s->policies_mu);
	struct rt_policies *old = s->policies;
	s->policies = p;
	atomic_fetch_add(&s->policies_version, 1);
	pthread_mutex_unlock(&s->policies_mu);
	rt_policies_unref(old);
}

void rt_store_policies_touch(struct rt_store *s)
{
	atomic_fetch_add(&s->policies_version, 1);
}

struct rt_policies *rt_store_policies(struct rt_store *s)
{
	pthread_mutex_lock(&s->policies_mu);
	struct rt_policies *p = rt_policies_ref(s->policies);
	pthread_mutex_unlock(&s->policies_mu);
	return p;
}

uint64_t rt_store_policies_version(struct rt_store *s)
{
	return atomic_load(&s->policies_version);
}

int rt_store_selectable(struct rt_store *s, const char *role, const struct rt_store_table *t,
			bool *selectable)
{
	if (s->ops->selectable)
		return s->ops->selectable(s, role, t, selectable);
	for (size_t i = 0; i < t->n_cols; i++)
		selectable[i] = true;
	return 0;
}

int rt_store_visible(struct rt_store *s, const struct rt_store_table *t, const json_t *row,
		     const struct rt_auth *const *who, size_t n, bool *visible)
{
	if (s->ops->visible)
		return s->ops->visible(s, t, row, who, n, visible);
	for (size_t i = 0; i < n; i++)
		visible[i] = false;
	return -1;
}

int rt_store_topic_allowed(struct rt_store *s, const struct rt_auth *who, const char *extension,
			   bool is_write, bool *allowed)
{
	*allowed = false;
	if (s->ops->topic_allowed)
		return s->ops->topic_allowed(s, who, extension, is_write, allowed);
	return -1;
}

int rt_store_doc_read(struct rt_store *s, const char *doc, rt_store_doc_row_fn *row, void *ctx)
{
	return s->ops->doc_read(s, doc, row, ctx);
}

int rt_store_doc_append(struct rt_store *s, const char *doc, uint64_t seq, const uint8_t *data,
			size_t data_len)
{
	return s->ops->doc_append(s, doc, seq, data, data_len);
}

int rt_store_doc_compact(struct rt_store *s, const char *doc, uint64_t upto, const uint8_t *data,
			 size_t data_len)
{
	return s->ops->doc_compact(s, doc, upto, data, data_len);
}

int rt_store_counter_next(struct rt_store *s, const char *name, uint64_t *value)
{
	return s->ops->counter_next(s, name, value);
}

int rt_store_doc_size(struct rt_store *s, const char *doc, uint64_t *n_updates, uint64_t *bytes)
{
	return s->ops->doc_size(s, doc, n_updates, bytes);
}

int rt_store_read(struct rt_store *s, const struct rt_read *r, json_t **rows, long long *total,
		  struct rt_store_error *err)
{
	if (r->mark)
		*r->mark = (struct rt_read_mark){0};
	int rc = s->ops->read(s, r, rows, total, err);
	if (rc && r->mark)
		rt_read_mark_deinit(r->mark);
	return rc;
}

/* ---- read marks ---- */

/* The full id of a 32-bit transaction id near the snapshot's xmax. */
static uint64_t full_xid(const struct rt_read_mark *m, uint32_t xid)
{
	uint64_t x = (m->xmax & ~(uint64_t)UINT32_MAX) | xid;
	if (x > m->xmax + ((uint64_t)1 << 31) && x >= ((uint64_t)1 << 32))
		x -= (uint64_t)1 << 32;
	else if (x + ((uint64_t)1 << 31) < m->xmax)
		x += (uint64_t)1 << 32;
	return x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

bool rt_read_mark_has(const struct rt_read_mark *m, const struct rt_change *ch)
{
	if (ch->pos <= m->pos)
		return true;
	if (!m->xmax || !ch->xid || !ch->lsn || ch->lsn >= m->lsn)
		return false;
	/* committed before the read's end: the snapshot decides (PostgreSQL's
	 * XidInMVCCSnapshot) */
	uint64_t x = full_xid(m, ch->xid);
	if (x < m->xmin)
		return true;
	if (x >= m->xmax)
		return false;
	return !m->n_xip || !bsearch(&x, m->xip, m->n_xip, sizeof *m->xip, cmp_u64);
}

bool rt_read_mark_is_past(const struct rt_read_mark *m, const struct rt_change *ch)
{
	/* the log holds transactions in commit order */
	return !m->xmax || (ch->lsn && ch->lsn >= m->lsn);
}

void rt_read_mark_deinit(struct rt_read_mark *m)
{
	free(m->xip);
	*m = (struct rt_read_mark){.pos = m->pos};
}

/* Whether a failed write failed for want of storage (the disk full, read-only or failing)
 * or of the database (PostgreSQL unreachable), as opposed to being refused for what it
 * asked. */
static bool is_unavailable(const struct rt_store_error *e)
{
	return e->status == 507 ||
	       (e->status == 503 && (!strcmp(e->code, "25006") || !strncmp(e->code, "58", 2) ||
				     !strncmp(e->code, "53", 2) || !strcmp(e->code, "PGRST000") ||
				     !strcmp(e->code, "PGRST001")));
}

int rt_store_write(struct rt_store *s, const struct rt_write *w, json_t **rows,
		   struct rt_store_error *err)
{
	if (check_no_aggs(w->where, err))
		return -1;
	int rc = s->ops->write(s, w, rows, err);
	/* One line when writes start failing for want of storage or of the database, one when
	 * they succeed again. */
	if (rc && is_unavailable(err)) {
		if (atomic_fetch_add(&s->n_unavailable, 1) == 0)
			rt_error("store: writes fail: %s (%d %s); they succeed again once the store "
				 "can write (room on the disk, a writable data dir, the database back)",
				 err->message, err->status, err->code);
	} else if (!rc && atomic_load(&s->n_unavailable)) {
		uint64_t n = atomic_exchange(&s->n_unavailable, 0);
		if (n)
			rt_info("store: writes succeed again after %llu failed",
				(unsigned long long)n);
	}
	return rc;
}

int rt_store_changes_after(struct rt_store *s, uint64_t after, size_t max, struct rt_change **out,
			   size_t *n, uint64_t *oldest, struct rt_store_scan *scan)
{
	return s->ops->changes_after(s, after, max, out, n, oldest, scan);
}

uint64_t rt_store_last_pos(struct rt_store *s)
{
	return s->ops->last_pos(s);
}

bool rt_store_wait(struct rt_store *s, uint64_t *version, unsigned timeout_ms)
{
	return s->ops->wait(s, version, timeout_ms);
}

void rt_store_prune(struct rt_store *s)
{
	s->ops->prune(s);
}

void rt_store_changes_free(struct rt_change *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_decref(c[i].record);
		json_decref(c[i].old_record);
	}
	free(c);
}

const char *rt_change_type_name(enum rt_change_type t)
{
	return t == RT_CHANGE_INSERT ? "INSERT" : t == RT_CHANGE_UPDATE ? "UPDATE" : "DELETE";
}

void rt_write_result_deinit(struct rt_write_result *r)
{
	json_decref(r->current);
	json_decref(r->conflicts);
	r->current = r->conflicts = NULL;
}

void rt_store_set_key_window(struct rt_store *s, uint64_t ms)
{
	s->key_window_ms = ms;
}

void rt_store_fingerprint(const char *fingerprint, unsigned char out[32])
{
	const char *fp = fingerprint ? fingerprint : "";
	EVP_Digest(fp, strlen(fp), out, NULL, EVP_sha256(), NULL);
}

json_t *rt_write_result_json(const struct rt_write_result *r, const json_t *rows)
{
	char pos[24];
	snprintf(pos, sizeof pos, "%llu", (unsigned long long)r->position);
	return json_pack("{s:s,s:O,s:O,s:O,s:s}", "outcome", rt_conflict_outcome_name(r->outcome),
			 "rows", rows ? (json_t *)rows : json_null(), "current",
			 r->current ? r->current : json_null(), "conflicts",
			 r->conflicts ? r->conflicts : json_null(), "position", pos);
}

void rt_write_result_parse(const json_t *j, struct rt_write_result *res, json_t **rows)
{
	const char *name = json_string_value(json_object_get(j, "outcome"));
	for (int o = RT_WRITE_APPLIED; name && o <= RT_WRITE_MISSING; o++)
		if (!strcmp(name, rt_conflict_outcome_name((enum rt_write_outcome)o)))
			res->outcome = (enum rt_write_outcome)o;
	json_t *cur = json_object_get(j, "current");
	json_t *conf = json_object_get(j, "conflicts");
	const char *pos = json_string_value(json_object_get(j, "position"));
	res->current = json_is_object(cur) ? json_incref(cur) : NULL;
	res->conflicts = json_is_array(conf) ? json_incref(conf) : NULL;
	res->position = pos ? strtoull(pos, NULL, 10) : 0;
	res->is_replayed = true;
	json_t *recorded = json_object_get(j, "rows");
	if (*rows && json_is_array(recorded)) {
		json_decref(*rows);
		*rows = json_incref(recorded);
	}
}

int rt_store_check_row_keys(const struct rt_store_table *t, const json_t *row,
			    struct rt_store_error *e)
{
	const char *k;
	json_t *v;
	if (!json_is_object(row)) {
		rt_store_set_err(e, 400, "PGRST102", NULL, "All object keys must match");
		return -1;
	}
	json_object_foreach((json_t *)row, k, v) {
		if (!rt_store_column(t, k)) {
			rt_store_set_err(e, 400, "PGRST204", NULL,
					 "Could not find the '%s' column of '%s' in the schema cache",
					 k, t->name);
			return -1;
		}
	}
	return 0;
}

bool rt_store_has_pk(const struct rt_store_table *t)
{
	for (size_t i = 0; i < t->n_cols; i++)
		if (t->cols[i].is_pk)
			return true;
	return false;
}

json_t *rt_store_project(const json_t *full, const struct rt_store_output *outs, size_t n)
{
	json_t *row = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set(row, outs[i].key, json_object_get(full, outs[i].col->name));
	return row;
}

static int control_err(struct rt_store_error *e, const char *msg)
{
	rt_store_set_err(e, 400, "RTS400", NULL, "%s", msg);
	return -1;
}

/* Checks a write with a base and reads its target row into *current. */
static int cas_target(const struct rt_store_cas *cas, const struct rt_write *w,
		      const json_t **changes, json_t **current, struct rt_store_error *err)
{
	const struct rt_store_table *t = w->table;
	*changes = NULL;
	*current = NULL;
	if (w->kind == RT_WRITE_INSERT)
		return control_err(err, "A base applies to update, upsert and delete, not insert");
	if (!json_is_object(w->base))
		return control_err(err, "The base must be a JSON object");
	if (!rt_store_has_pk(t))
		return control_err(err, "A write with a base needs a table with a primary key");
	if (rt_store_check_row_keys(t, w->base, err))
		return -1;
	if (w->kind == RT_WRITE_UPSERT) {
		if (json_array_size(w->rows) != 1)
			return control_err(err, "A write with a base writes one row");
		*changes = json_array_get(w->rows, 0);
		if (rt_store_check_row_keys(t, *changes, err))
			return -1;
		return cas->select_pk(cas, w, *changes, current, err);
	}
	if (w->kind == RT_WRITE_UPDATE) {
		*changes = w->rows;
		if (rt_store_check_row_keys(t, *changes, err))
			return -1;
		if (!json_object_size(*changes)) {
			rt_store_set_err(err, 400, "PGRST102", NULL, "Empty or invalid json");
			return -1;
		}
	}
	return cas->select_where(cas, w, current, err);
}

int rt_store_controlled_write(const struct rt_store_cas *cas, const struct rt_write *w,
			      struct rt_write_result *res, struct rt_store_error *err)
{
	const json_t *changes;
	json_t *current;
	if (cas_target(cas, w, &changes, &current, err))
		return -1;
	struct rt_conflict_result d;
	rt_conflict_decide(current, w->base, changes, w->strategy, &d);
	res->outcome = d.outcome;
	res->conflicts = json_incref(d.conflicts);
	int rc = 0;
	switch (d.outcome) {
	case RT_WRITE_CONFLICT:
		res->current = json_incref(current);
		break;
	case RT_WRITE_MISSING:
		if (w->kind == RT_WRITE_UPSERT) {
			rc = cas->insert(cas, w, err);
			if (!rc)
				rc = cas->select_pk(cas, w, changes, &res->current, err);
		}
		break;
	case RT_WRITE_APPLIED:
	case RT_WRITE_MERGED:
		if (d.is_delete) {
			rc = cas->write_pk(cas, w, current, NULL, err);
		} else if (!json_object_size(d.apply)) {
			/* Every change conflicted: nothing written, the row as it is. */
			if (cas->out)
				json_array_append_new(cas->out, rt_store_project(current, cas->outs,
										 cas->n_outs));
			res->current = json_incref(current);
		} else {
			rc = cas->write_pk(cas, w, current, d.apply, err);
			/* Read back by the key as it is after the write (it may change). */
			json_t *key = json_deep_copy(current);
			json_object_update(key, d.apply);
			if (!rc)
				rc = cas->select_pk(cas, w, key, &res->current, err);
			json_decref(key);
		}
		break;
	}
	rt_conflict_result_deinit(&d);
	json_decref(current);
	return rc;
}

