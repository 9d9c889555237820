#include "realtime/delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/alloc.h"
#include "common/buf.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

struct rt_window_row {
	char *key; /* table NUL-free address, then the primary key values */
	size_t item; /* the row's newest item */
	UT_hash_handle hh;
};

/* ---- options ---- */

/* One option: absent or null is 0; else an integer 0–RT_DELIVERY_MAX_MS. */
static int parse_ms(const json_t *entry, const char *name, unsigned *out, char *err,
		    size_t err_cap)
{
	const json_t *v = json_object_get(entry, name);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > RT_DELIVERY_MAX_MS) {
		snprintf(err, err_cap,
			 "Error parsing `%s` params: expected an integer number of milliseconds "
			 "from 0 to %d, e.g. %s: 500",
			 name, RT_DELIVERY_MAX_MS, name);
		return -1;
	}
	*out = (unsigned)json_integer_value(v);
	return 0;
}

int rt_delivery_parse(const json_t *entry, struct rt_delivery_opts *out, char *err,
		      size_t err_cap)
{
	memset(out, 0, sizeof *out);
	if (parse_ms(entry, "throttle_ms", &out->throttle_ms, err, err_cap) ||
	    parse_ms(entry, "debounce_ms", &out->debounce_ms, err, err_cap) ||
	    parse_ms(entry, "max_wait_ms", &out->max_wait_ms, err, err_cap))
		goto err;
	const json_t *batch = json_object_get(entry, "batch");
	if (batch && !json_is_null(batch) && !json_is_boolean(batch)) {
		snprintf(err, err_cap,
			 "Error parsing `batch` params: expected a boolean, e.g. batch: true");
		goto err;
	}
	out->is_batch = json_is_true(batch);
	if (out->throttle_ms && out->debounce_ms) {
		snprintf(err, err_cap,
			 "Error parsing delivery params: `throttle_ms` and `debounce_ms` cannot be "
			 "used together; choose one");
		goto err;
	}
	if (out->max_wait_ms && !out->debounce_ms) {
		snprintf(err, err_cap,
			 "Error parsing delivery params: `max_wait_ms` bounds `debounce_ms` and "
			 "needs it");
		goto err;
	}
	if (out->debounce_ms && !out->max_wait_ms)
		out->max_wait_ms = 4 * out->debounce_ms;
	return 0;
err:
	memset(out, 0, sizeof *out);
	return -1;
}

bool rt_delivery_is_on(const struct rt_delivery_opts *o)
{
	return o->throttle_ms || o->debounce_ms || o->is_batch;
}

bool rt_delivery_equal(const struct rt_delivery_opts *a, const struct rt_delivery_opts *b)
{
	return a->throttle_ms == b->throttle_ms && a->debounce_ms == b->debounce_ms &&
	       a->max_wait_ms == b->max_wait_ms && a->is_batch == b->is_batch;
}

/* ---- the window ---- */

void rt_window_init(struct rt_window *w, const struct rt_delivery_opts *opts)
{
	memset(w, 0, sizeof *w);
	w->opts = *opts;
}

static void drop_rows(struct rt_window *w)
{
	struct rt_window_row *r, *tmp;
	HASH_ITER(hh, w->rows, r, tmp) {
		HASH_DEL(w->rows, r);
		free(r->key);
		free(r);
	}
}

void rt_window_items_free(struct rt_pending *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_decref(items[i].ch.record);
		json_decref(items[i].ch.old_record);
		free(items[i].matched);
	}
	free(items);
}

void rt_window_deinit(struct rt_window *w)
{
	drop_rows(w);
	rt_window_items_free(w->items, w->n);
	memset(w, 0, sizeof *w);
}

static int by_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
	return x < y ? -1 : x > y;
}

/* The row key of row in t: its primary key values; false when t has none or
 * the row lacks one. */
static bool row_key(const struct rt_store_table *t, const json_t *row, struct rt_buf *out)
{
	if (!row)
		return false;
	rt_buf_printf(out, "%p", (const void *)t);
	bool has_pk = false;
	for (size_t i = 0; i < t->n_cols; i++) {
		if (!t->cols[i].is_pk)
			continue;
		const json_t *v = json_object_get(row, t->cols[i].name);
		if (!v)
			return false;
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!s)
			return false;
		rt_buf_append_byte(out, 0x1f);
		rt_buf_append_str(out, s);
		free(s);
		has_pk = true;
	}
	return has_pk;
}

static void set_json(json_t **slot, json_t *v)
{
	json_t *old = *slot;
	*slot = json_incref(v);
	json_decref(old);
}

/*
 * Folds ch into p (the row's newest change, matched by the same bindings).
 * Returns false when the pair is not one the rules combine.
 */
static bool fold(struct rt_pending *p, const struct rt_change *ch)
{
	enum rt_change_type a = p->ch.type, b = ch->type;
	if (a == RT_CHANGE_UPDATE && b == RT_CHANGE_UPDATE) {
		set_json(&p->ch.record, ch->record); /* the first old_record stays */
	} else if (a == RT_CHANGE_INSERT && b == RT_CHANGE_UPDATE) {
		set_json(&p->ch.record, ch->record);
	} else if (a == RT_CHANGE_INSERT && b == RT_CHANGE_DELETE) {
		p->is_dead = true;
	} else if (a == RT_CHANGE_UPDATE && b == RT_CHANGE_DELETE) {
		p->ch.type = RT_CHANGE_DELETE;
		set_json(&p->ch.record, NULL);
		if (!p->ch.old_record)
			set_json(&p->ch.old_record, ch->old_record);
	} else if (a == RT_CHANGE_DELETE && b == RT_CHANGE_INSERT) {
		p->ch.type = RT_CHANGE_UPDATE; /* old_record: the deleted row */
		set_json(&p->ch.record, ch->record);
	} else {
		return false;
	}
	p->ch.pos = ch->pos;
	p->ch.commit_ms = ch->commit_ms;
	return true;
}

static void forget_row(struct rt_window *w, const char *key)
{
	struct rt_window_row *r;
	HASH_FIND_STR(w->rows, key, r);
	if (r) {
		HASH_DEL(w->rows, r);
		free(r->key);
		free(r);
	}
}

static void remember_row(struct rt_window *w, const char *key, size_t item)
{
	struct rt_window_row *r;
	HASH_FIND_STR(w->rows, key, r);
	if (!r) {
		r = rt_xcalloc(1, sizeof *r);
		r->key = rt_xstrdup(key);
		HASH_ADD_KEYPTR(hh, w->rows, r->key, strlen(r->key), r);
	}
	r->item = item;
}

static void open_window(struct rt_window *w, const struct rt_change *ch, uint64_t now_ms)
{
	w->is_open = true;
	w->open_after = ch->pos ? ch->pos - 1 : 0;
	w->first_ms = now_ms;
	w->due_ms = now_ms; /* batch alone: at the end of the feed's pass */
	if (w->opts.throttle_ms && w->has_flushed &&
	    w->last_flush_ms + w->opts.throttle_ms > now_ms)
		w->due_ms = w->last_flush_ms + w->opts.throttle_ms;
}

bool rt_window_add(struct rt_window *w, const struct rt_change *ch, const void *const *matched,
		   size_t n, uint64_t now_ms)
{
	if (!w->is_open)
		open_window(w, ch, now_ms);
	if (w->opts.debounce_ms) {
		uint64_t quiet = now_ms + w->opts.debounce_ms, bound = w->first_ms + w->opts.max_wait_ms;
		w->due_ms = quiet < bound ? quiet : bound;
	}
	const void **set = rt_xmalloc((n ? n : 1) * sizeof *set);
	if (n)
		memcpy(set, matched, n * sizeof *set);
	qsort(set, n, sizeof *set, by_ptr);

	bool is_coalescing = w->opts.throttle_ms || w->opts.debounce_ms;
	struct rt_buf key, old_key;
	rt_buf_init(&key);
	rt_buf_init(&old_key);
	const json_t *row = ch->type == RT_CHANGE_DELETE ? ch->old_record : ch->record;
	bool has_key = is_coalescing && row_key(ch->table, row, &key);
	bool is_moved = false; /* an UPDATE of the primary key */
	if (has_key && ch->type == RT_CHANGE_UPDATE && row_key(ch->table, ch->old_record, &old_key))
		is_moved = strcmp(key.data, old_key.data) != 0;
	if (has_key && !is_moved) {
		struct rt_window_row *r;
		HASH_FIND_STR(w->rows, key.data, r);
		struct rt_pending *p = r ? &w->items[r->item] : NULL;
		if (p && !p->is_dead && p->n_matched == n && !memcmp(p->matched, set, n * sizeof *set) &&
		    fold(p, ch)) {
			if (p->is_dead) {
				w->n_live--;
				forget_row(w, key.data);
			}
			free(set);
			goto out;
		}
	}
	if (is_moved) /* nothing later merges with the row's changes before the move */
		forget_row(w, old_key.data);
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 16;
		w->items = rt_xrealloc(w->items, w->cap * sizeof *w->items);
	}
	struct rt_pending *p = &w->items[w->n];
	p->ch = *ch;
	p->ch.record = json_incref(ch->record);
	p->ch.old_record = json_incref(ch->old_record);
	p->matched = set;
	p->n_matched = n;
	p->is_dead = false;
	if (has_key)
		remember_row(w, key.data, w->n);
	w->n++;
	w->n_live++;
out:
	rt_buf_deinit(&key);
	rt_buf_deinit(&old_key);
	return w->n_live >= RT_WINDOW_MAX_ROWS || w->n >= 2 * RT_WINDOW_MAX_ROWS;
}

bool rt_window_is_due(const struct rt_window *w, uint64_t now_ms)
{
	return w->is_open && now_ms >= w->due_ms;
}

static int by_pos(const void *a, const void *b)
{
	const struct rt_pending *x = a, *y = b;
	return x->ch.pos < y->ch.pos ? -1 : x->ch.pos > y->ch.pos;
}

size_t rt_window_take(struct rt_window *w, uint64_t now_ms, struct rt_pending **out)
{
	size_t k = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct rt_pending *p = &w->items[i];
		if (p->is_dead) {
			json_decref(p->ch.record);
			json_decref(p->ch.old_record);
			free(p->matched);
			continue;
		}
		w->items[k++] = *p;
	}
	qsort(w->items, k, sizeof *w->items, by_pos);
	*out = k ? w->items : NULL;
	if (!k)
		free(w->items);
	w->items = NULL;
	w->n = w->cap = w->n_live = 0;
	drop_rows(w);
	w->is_open = false;
	if (k) {
		w->has_flushed = true;
		w->last_flush_ms = now_ms;
	}
	return k;
}
