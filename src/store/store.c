/*
 * The backend-neutral part of the store: dispatch through the backend's ops,
 * schema lookups, and helpers both backends use.
 */
#include "store/store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
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

int rt_store_select_cols(const struct rt_store_table *t, const struct rt_query *q,
			 const struct rt_store_column ***cols, const char ***keys, size_t *n,
			 struct rt_store_error *e)
{
	size_t cap = 0; /* every "*" expands to all columns */
	for (size_t i = 0; q && q->select && i < q->n_select; i++)
		cap += strcmp(q->select[i].column, "*") ? 1 : t->n_cols;
	if (!q || !q->select)
		cap = t->n_cols;
	*cols = rt_xcalloc(cap ? cap : 1, sizeof **cols);
	*keys = rt_xcalloc(cap ? cap : 1, sizeof **keys);
	*n = 0;
	bool all = !q || !q->select;
	for (size_t i = 0; !all && i < q->n_select; i++) {
		if (!strcmp(q->select[i].column, "*")) {
			for (size_t j = 0; j < t->n_cols; j++) {
				(*cols)[*n] = &t->cols[j];
				(*keys)[(*n)++] = t->cols[j].name;
			}
			continue;
		}
		const struct rt_store_column *c = rt_store_column(t, q->select[i].column);
		if (!c) {
			rt_store_set_err(e, 400, "42703", NULL, "column %s.%s does not exist", t->name,
					 q->select[i].column);
			return -1;
		}
		(*cols)[*n] = c;
		(*keys)[(*n)++] = q->select[i].alias ? q->select[i].alias : c->name;
	}
	for (size_t j = 0; all && j < t->n_cols; j++) {
		(*cols)[*n] = &t->cols[j];
		(*keys)[(*n)++] = t->cols[j].name;
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

int rt_store_read(struct rt_store *s, const struct rt_read *r, json_t **rows, long long *total,
		  struct rt_store_error *err)
{
	return s->ops->read(s, r, rows, total, err);
}

int rt_store_write(struct rt_store *s, const struct rt_write *w, json_t **rows,
		   struct rt_store_error *err)
{
	return s->ops->write(s, w, rows, err);
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

