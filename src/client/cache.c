#include "client/cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* A row entry is [row or null, "position"]. */
#define ENTRY_ROW(e) json_array_get((e), 0)
#define ENTRY_POS(e) json_string_value(json_array_get((e), 1))

static void *ca_realloc(const struct rt_cache_alloc *a, void *p, size_t n)
{
	if (a->realloc)
		return a->realloc(a->ud, p, n);
	if (!n) {
		free(p);
		return NULL;
	}
	return realloc(p, n);
}

int rt_cache_pos_cmp(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a, b);
}

bool rt_cache_is_pos(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n && n < 21 && strspn(s, "0123456789") == n && (n == 1 || s[0] != '0');
}

int rt_cache_init(struct rt_cache *k, char *const *pk, size_t n_pk,
		  const struct rt_cache_alloc *alloc, rt_cache_row_cb on_row, void *user)
{
	memset(k, 0, sizeof *k);
	if (!n_pk || n_pk > RT_CACHE_MAX_PK)
		return RT_EINVAL;
	for (size_t i = 0; i < n_pk; i++) {
		if (!pk[i] || !*pk[i])
			return RT_EINVAL;
		k->pk[i] = pk[i];
	}
	k->n_pk = n_pk;
	k->alloc = alloc ? *alloc : (struct rt_cache_alloc){0};
	k->on_row = on_row;
	k->user = user;
	k->rows = json_object();
	k->buffered = json_array();
	if (!k->rows || !k->buffered) {
		json_decref(k->rows);
		json_decref(k->buffered);
		k->rows = k->buffered = NULL;
		return RT_ENOMEM;
	}
	return 0;
}

static void write_free(struct rt_cache *k, struct rt_cache_write *w)
{
	json_decref(w->key_obj);
	json_decref(w->record);
	json_decref(w->base);
	ca_realloc(&k->alloc, w, 0);
}

void rt_cache_deinit(struct rt_cache *k)
{
	while (k->head) {
		struct rt_cache_write *w = k->head;
		k->head = w->next;
		write_free(k, w);
	}
	k->tail = NULL;
	k->n_writes = 0;
	json_decref(k->rows);
	json_decref(k->buffered);
	k->rows = k->buffered = NULL;
}

int rt_cache_key_of(const struct rt_cache *k, const json_t *obj, json_t **key_obj,
		    char key_text[RT_CACHE_MAX_KEY])
{
	*key_obj = NULL;
	if (!json_is_object(obj))
		return RT_EINVAL;
	json_t *key = json_object();
	if (!key)
		return RT_ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < k->n_pk; i++) {
		json_t *v = json_object_get(obj, k->pk[i]);
		if (!v || !(json_is_string(v) || json_is_number(v) || json_is_boolean(v))) {
			rc = RT_EINVAL;
			goto err_put;
		}
		json_t *copy;
		double d = json_is_real(v) ? json_real_value(v) : 0;
		if (json_is_real(v) && d == floor(d) && fabs(d) < 9007199254740992.0)
			copy = json_integer((json_int_t)d); /* 7.0 and 7 name the same row */
		else
			copy = json_copy(v);
		if (!copy || json_object_set_new(key, k->pk[i], copy)) {
			rc = RT_ENOMEM;
			goto err_put;
		}
	}
	size_t n = json_dumpb(key, key_text, RT_CACHE_MAX_KEY, JSON_COMPACT);
	if (!n || n >= RT_CACHE_MAX_KEY) {
		rc = n ? RT_ETOOBIG : RT_ENOMEM;
		goto err_put;
	}
	key_text[n] = 0;
	*key_obj = key;
	return 0;
err_put:
	json_decref(key);
	return rc;
}

/* The visible row of key given the rows map (the cache's or another). */
static json_t *visible_in(const struct rt_cache *k, const json_t *rows, const char *key,
			  bool *is_pending, bool *oom)
{
	const json_t *confirmed = ENTRY_ROW(json_object_get(rows, key));
	json_t *row = json_is_object(confirmed) ? json_deep_copy(confirmed) : NULL;
	bool pending = false, failed = json_is_object(confirmed) && !row;
	for (const struct rt_cache_write *w = k->head; w; w = w->next) {
		if (strcmp(w->key, key))
			continue;
		pending = true;
		switch (w->op) {
		case RT_CACHE_DELETE:
			json_decref(row);
			row = NULL;
			break;
		case RT_CACHE_UPDATE:
			if (row && json_object_update(row, w->record))
				failed = true;
			break;
		case RT_CACHE_INSERT:
		case RT_CACHE_UPSERT:
			if (!row && !failed && !(row = json_object()))
				failed = true;
			if (row && json_object_update(row, w->record))
				failed = true;
			break;
		}
	}
	if (is_pending)
		*is_pending = pending;
	if (failed) {
		json_decref(row);
		row = NULL;
	}
	if (oom)
		*oom = failed;
	return row;
}

json_t *rt_cache_visible(const struct rt_cache *k, const char *key, bool *is_pending, bool *oom)
{
	return visible_in(k, k->rows, key, is_pending, oom);
}

/* Whether key shows a row, without building it. */
static bool is_visible(const struct rt_cache *k, const char *key)
{
	bool shows = json_is_object(ENTRY_ROW(json_object_get(k->rows, key)));
	for (const struct rt_cache_write *w = k->head; w; w = w->next)
		if (!strcmp(w->key, key) && w->op != RT_CACHE_UPDATE)
			shows = w->op != RT_CACHE_DELETE;
	return shows;
}

int rt_cache_base(const struct rt_cache *k, const char *key, const json_t *record, json_t **base)
{
	*base = NULL;
	bool oom;
	json_t *row = rt_cache_visible(k, key, NULL, &oom);
	if (!row)
		return oom ? RT_ENOMEM : 0;
	if (!record) {
		*base = row;
		return 0;
	}
	json_t *b = json_object();
	if (!b)
		goto err_put;
	const char *col;
	json_t *v;
	json_object_foreach((json_t *)record, col, v) {
		bool is_key = false;
		for (size_t i = 0; i < k->n_pk; i++)
			is_key |= !strcmp(col, k->pk[i]);
		if (is_key)
			continue;
		json_t *cur = json_object_get(row, col);
		if (json_object_set_new(b, col, cur ? json_deep_copy(cur) : json_null()))
			goto err_put;
	}
	json_decref(row);
	if (json_object_size(b))
		*base = b;
	else
		json_decref(b);
	return 0;
err_put:
	json_decref(b);
	json_decref(row);
	return RT_ENOMEM;
}

/* Reports key when what it shows changed from (before, was_pending). */
static void report(struct rt_cache *k, const char *key, const json_t *before, bool was_pending,
		   enum rt_table_cause cause, bool always)
{
	bool pending, oom;
	json_t *after = rt_cache_visible(k, key, &pending, &oom);
	if (oom) {
		if (k->on_oom)
			k->on_oom(k->user);
		return;
	}
	bool same = (!before && !after) || (before && after && json_equal(before, after));
	if ((always || !same || pending != was_pending) && k->on_row)
		k->on_row(k->user, key, after, pending, cause);
	json_decref(after);
}

/* Sets the confirmed row of key (NULL: a tombstone) at pos unless the
 * entry is already at pos or later; no report. */
static int set_row(struct rt_cache *k, const char *key, const json_t *row, const char *pos)
{
	json_t *e = json_object_get(k->rows, key);
	const char *old = ENTRY_POS(e);
	bool known = pos && rt_cache_is_pos(pos) && strcmp(pos, "0");
	if (known && old && rt_cache_pos_cmp(pos, old) <= 0)
		return 0;
	json_t *ne = json_pack("[O,s]", row ? row : json_null(), known ? pos : old ? old : "0");
	if (!ne || json_object_set_new(k->rows, key, ne))
		return RT_ENOMEM;
	return 0;
}

void rt_cache_add(struct rt_cache *k, struct rt_cache_write *w)
{
	bool was_pending;
	json_t *before = rt_cache_visible(k, w->key, &was_pending, NULL);
	w->next = NULL;
	w->prev = k->tail;
	if (k->tail)
		k->tail->next = w;
	else
		k->head = w;
	k->tail = w;
	k->n_writes++;
	report(k, w->key, before, was_pending, RT_TABLE_LOCAL, true);
	json_decref(before);
}

int rt_cache_unlink(struct rt_cache *k, struct rt_cache_write *w, bool has_row, const json_t *row,
		    const char *pos, enum rt_table_cause cause)
{
	bool was_pending;
	json_t *before = rt_cache_visible(k, w->key, &was_pending, NULL);
	if (w->prev)
		w->prev->next = w->next;
	else
		k->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		k->tail = w->prev;
	w->prev = w->next = NULL;
	k->n_writes--;
	int rc = 0;
	if (has_row)
		rc = set_row(k, w->key, json_is_object(row) ? row : NULL, pos);
	report(k, w->key, before, was_pending, cause, false);
	json_decref(before);
	return rc;
}

void rt_cache_rewrite(struct rt_cache *k, struct rt_cache_write *w, json_t *record, json_t *base)
{
	bool was_pending;
	json_t *before = rt_cache_visible(k, w->key, &was_pending, NULL);
	json_decref(w->record);
	json_decref(w->base);
	w->record = record;
	w->base = base;
	report(k, w->key, before, was_pending, RT_TABLE_LOCAL, false);
	json_decref(before);
}

static int apply_change(struct rt_cache *k, const char *type, const json_t *record,
			const json_t *old, const char *pos)
{
	char key[RT_CACHE_MAX_KEY], old_key[RT_CACHE_MAX_KEY];
	json_t *kobj = NULL;
	int rc;
	bool is_delete = !strcmp(type, "DELETE");
	if (!is_delete && strcmp(type, "INSERT") && strcmp(type, "UPDATE"))
		return RT_EPROTO;
	rc = rt_cache_key_of(k, is_delete ? old : record, &kobj, key);
	json_decref(kobj);
	if (rc)
		return rc == RT_ENOMEM ? rc : RT_EPROTO;
	/* An update that changed the key: the old key's row is gone. */
	if (!is_delete && json_is_object(old) && !rt_cache_key_of(k, old, &kobj, old_key)) {
		json_decref(kobj);
		if (strcmp(old_key, key)) {
			bool was_pending;
			json_t *before = rt_cache_visible(k, old_key, &was_pending, NULL);
			rc = set_row(k, old_key, NULL, pos);
			report(k, old_key, before, was_pending, RT_TABLE_REMOTE, false);
			json_decref(before);
			if (rc)
				return rc;
		}
	}
	bool was_pending;
	json_t *before = rt_cache_visible(k, key, &was_pending, NULL);
	rc = set_row(k, key, is_delete ? NULL : record, pos);
	report(k, key, before, was_pending, RT_TABLE_REMOTE, false);
	json_decref(before);
	return rc;
}

int rt_cache_change(struct rt_cache *k, const char *type, const json_t *record,
		    const json_t *old_record, const char *pos)
{
	if (!type || (pos && !rt_cache_is_pos(pos)))
		return RT_EPROTO;
	if (k->is_loaded)
		return apply_change(k, type, record, old_record, pos);
	if (json_array_size(k->buffered) >= RT_CACHE_MAX_BUFFERED) {
		json_array_clear(k->buffered);
		return RT_ELIMIT;
	}
	json_t *e = json_pack("[s,O,O,s]", type, record ? record : json_null(),
			      old_record ? old_record : json_null(), pos ? pos : "");
	if (!e || json_array_append_new(k->buffered, e))
		return RT_ENOMEM;
	return 0;
}

void rt_cache_unload(struct rt_cache *k)
{
	k->is_loaded = false;
	json_array_clear(k->buffered);
}

int rt_cache_load(struct rt_cache *k, const json_t *rows, const char *pos)
{
	if (!json_is_array(rows) || !rt_cache_is_pos(pos))
		return RT_EPROTO;
	json_t *fresh = json_object();
	if (!fresh)
		return RT_ENOMEM;
	int rc = 0;
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		char key[RT_CACHE_MAX_KEY];
		json_t *kobj;
		rc = rt_cache_key_of(k, row, &kobj, key);
		json_decref(kobj);
		if (rc) {
			rc = rc == RT_ENOMEM ? rc : RT_EPROTO;
			goto out_put;
		}
		json_t *e = json_pack("[O,s]", row, pos);
		if (!e || json_object_set_new(fresh, key, e)) {
			rc = RT_ENOMEM;
			goto out_put;
		}
	}
	json_t *old = k->rows;
	k->rows = fresh;
	fresh = NULL;
	/* Report what changed: keys of the old rows, then the new ones. */
	const char *key;
	json_t *e;
	json_object_foreach(old, key, e) {
		bool was_pending;
		json_t *before = visible_in(k, old, key, &was_pending, NULL);
		report(k, key, before, was_pending, RT_TABLE_REMOTE, false);
		json_decref(before);
	}
	json_object_foreach(k->rows, key, e) {
		if (json_object_get(old, key))
			continue;
		bool was_pending;
		json_t *before = visible_in(k, old, key, &was_pending, NULL);
		report(k, key, before, was_pending, RT_TABLE_REMOTE, false);
		json_decref(before);
	}
	json_decref(old);
	k->is_loaded = true;
	json_t *buf = k->buffered;
	k->buffered = json_array();
	json_array_foreach(buf, i, e) {
		const char *cpos = json_string_value(json_array_get(e, 3));
		if (cpos && *cpos && rt_cache_pos_cmp(cpos, pos) <= 0)
			continue; /* the snapshot reflects it */
		const json_t *r = json_array_get(e, 1), *o = json_array_get(e, 2);
		int arc = apply_change(k, json_string_value(json_array_get(e, 0)),
				       json_is_null(r) ? NULL : r, json_is_null(o) ? NULL : o,
				       cpos && *cpos ? cpos : NULL);
		if (arc == RT_ENOMEM && !rc)
			rc = arc;
	}
	json_decref(buf);
	if (!k->buffered) {
		k->buffered = json_array();
		if (!rc && !k->buffered)
			rc = RT_ENOMEM;
	}
out_put:
	json_decref(fresh);
	return rc;
}

/* Calls fn for the key of every visible row: the rows in map order, then
 * keys only pending writes make visible. */
static int each_visible(const struct rt_cache *k, int (*fn)(void *arg, const char *key), void *arg)
{
	const char *key;
	json_t *e;
	int rc = 0;
	json_object_foreach(k->rows, key, e) {
		if (is_visible(k, key) && (rc = fn(arg, key)))
			return rc;
	}
	for (const struct rt_cache_write *w = k->head; w; w = w->next) {
		if (json_object_get(k->rows, w->key))
			continue;
		const struct rt_cache_write *p = k->head;
		while (p != w && strcmp(p->key, w->key))
			p = p->next;
		if (p != w)
			continue; /* this key was seen at an earlier write */
		if (is_visible(k, w->key) && (rc = fn(arg, w->key)))
			return rc;
	}
	return 0;
}

static int count_row(void *arg, const char *key)
{
	(*(size_t *)((void **)arg)[1])++;
	return 0;
}

static int append_row(void *arg, const char *key)
{
	const struct rt_cache *k = ((void **)arg)[0];
	json_t *row = rt_cache_visible(k, key, NULL, NULL);
	return !row || json_array_append_new(((void **)arg)[1], row) ? RT_ENOMEM : 0;
}

size_t rt_cache_count(const struct rt_cache *k)
{
	size_t n = 0;
	void *arg[2] = {(void *)k, &n};
	each_visible(k, count_row, arg);
	return n;
}

json_t *rt_cache_rows(const struct rt_cache *k)
{
	json_t *a = json_array();
	void *arg[2] = {(void *)k, a};
	if (a && each_visible(k, append_row, arg)) {
		json_decref(a);
		a = NULL;
	}
	return a;
}

int rt_cache_validate(const struct rt_cache *k)
{
	size_t n = 0;
	const struct rt_cache_write *prev = NULL;
	for (const struct rt_cache_write *w = k->head; w; prev = w, w = w->next, n++)
		if (w->prev != prev || (w->op != RT_CACHE_DELETE && !json_is_object(w->record)) ||
		    !json_is_object(w->key_obj) || w->strategy == RT_STRATEGY_DEFAULT)
			return RT_EINVAL;
	if (prev != k->tail || n != k->n_writes || !json_is_object(k->rows) ||
	    !json_is_array(k->buffered))
		return RT_EINVAL;
	const char *key;
	json_t *e;
	json_object_foreach(k->rows, key, e) {
		json_t *row = ENTRY_ROW(e);
		if (!json_is_array(e) || json_array_size(e) != 2 ||
		    !(json_is_object(row) || json_is_null(row)) ||
		    !(rt_cache_is_pos(ENTRY_POS(e))))
			return RT_EINVAL;
	}
	return 0;
}
