/*
 * A live query's local copy: results and diffs applied after checking them
 * whole (src/client/livecopy.h).
 */
#include "client/livecopy.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *default_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	if (!n) {
		free(p);
		return NULL;
	}
	return realloc(p, n);
}

static void *lc_alloc(struct rt_livecopy *lc, size_t n)
{
	return lc->alloc.realloc(lc->alloc.ud, NULL, n ? n : 1);
}

static void lc_free(struct rt_livecopy *lc, void *p)
{
	if (p)
		lc->alloc.realloc(lc->alloc.ud, p, 0);
}

static int say(char *err, size_t err_cap, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int say(char *err, size_t err_cap, int rc, const char *fmt, ...)
{
	if (err && err_cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_cap, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void rt_livecopy_init(struct rt_livecopy *lc, const struct rt_allocator *alloc)
{
	*lc = (struct rt_livecopy){0};
	lc->alloc = alloc ? *alloc : (struct rt_allocator){default_realloc, NULL};
}

void rt_livecopy_reset(struct rt_livecopy *lc)
{
	json_decref(lc->rows);
	json_decref(lc->keys);
	json_decref(lc->at);
	lc->rows = lc->keys = lc->at = NULL;
}

void rt_livecopy_deinit(struct rt_livecopy *lc)
{
	rt_livecopy_reset(lc);
}

bool rt_livecopy_has_result(const struct rt_livecopy *lc)
{
	return lc->rows != NULL;
}

size_t rt_livecopy_count(const struct rt_livecopy *lc)
{
	return lc->rows ? json_array_size(lc->rows) : 0;
}

/* The text of a well-formed key (a string of 1 to RT_LIVECOPY_MAX_KEY bytes
 * without NUL), or NULL. */
static const char *key_of(const json_t *v)
{
	if (!json_is_string(v))
		return NULL;
	size_t n = json_string_length(v);
	const char *s = json_string_value(v);
	if (!n || n > RT_LIVECOPY_MAX_KEY || strlen(s) != n)
		return NULL;
	return s;
}

/* key → index of an array of well-formed keys. Returns 0, RT_EPROTO for a
 * key given twice, RT_ENOMEM. */
static int index_keys(const json_t *keys, json_t **out, char *err, size_t err_cap)
{
	json_t *at = json_object();
	if (!at)
		return RT_ENOMEM;
	size_t i;
	json_t *k;
	json_array_foreach(keys, i, k) {
		const char *s = json_string_value(k);
		if (json_object_get(at, s)) {
			json_decref(at);
			return say(err, err_cap, RT_EPROTO, "key %.64s appears twice", s);
		}
		if (json_object_set_new(at, s, json_integer((json_int_t)i))) {
			json_decref(at);
			return RT_ENOMEM;
		}
	}
	*out = at;
	return 0;
}

static void commit(struct rt_livecopy *lc, json_t *rows, json_t *keys, json_t *at)
{
	rt_livecopy_reset(lc);
	lc->rows = rows;
	lc->keys = keys;
	lc->at = at;
}

static int apply_result(struct rt_livecopy *lc, const json_t *entry, char *err, size_t err_cap)
{
	json_t *rows = json_object_get(entry, "rows"), *keys = json_object_get(entry, "keys");
	const json_t *resync = json_object_get(entry, "resync");
	if (!json_is_array(rows) || !json_is_array(keys))
		return say(err, err_cap, RT_EPROTO, "a result needs arrays rows and keys");
	if (resync && !json_is_boolean(resync))
		return say(err, err_cap, RT_EPROTO, "resync is not a boolean");
	size_t n = json_array_size(rows);
	if (json_array_size(keys) != n)
		return say(err, err_cap, RT_EPROTO, "%zu rows but %zu keys", n,
			   json_array_size(keys));
	if (n > RT_LIVECOPY_MAX_ROWS)
		return say(err, err_cap, RT_ETOOBIG, "a result of %zu rows (at most %d)", n,
			   RT_LIVECOPY_MAX_ROWS);
	for (size_t i = 0; i < n; i++) {
		if (!json_is_object(json_array_get(rows, i)))
			return say(err, err_cap, RT_EPROTO, "rows[%zu] is not an object", i);
		if (!key_of(json_array_get(keys, i)))
			return say(err, err_cap, RT_EPROTO, "keys[%zu] is not a key", i);
	}
	json_t *at = NULL;
	int rc = index_keys(keys, &at, err, err_cap);
	if (rc)
		return rc;
	/* shallow copies: the values are shared, the arrays are the copy's */
	json_t *my_rows = json_copy(rows), *my_keys = json_copy(keys);
	if (!my_rows || !my_keys) {
		json_decref(my_rows);
		json_decref(my_keys);
		json_decref(at);
		return RT_ENOMEM;
	}
	commit(lc, my_rows, my_keys, at);
	return 0;
}

/* An enter or a move: where its row goes in the new result. */
struct placed {
	size_t index;
	json_t *key; /* borrowed from the entry */
	json_t *row;
};

static int by_index(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;
	return x->index < y->index ? -1 : x->index > y->index;
}

static int apply_diff(struct rt_livecopy *lc, const json_t *entry, char *err, size_t err_cap)
{
	if (!lc->rows)
		return say(err, err_cap, RT_EPROTO, "a diff before any result");
	const json_t *ops = json_object_get(entry, "ops");
	if (!json_is_array(ops))
		return say(err, err_cap, RT_EPROTO, "a diff needs an array ops");
	size_t n_ops = json_array_size(ops), n = json_array_size(lc->rows);
	if (n_ops > RT_LIVECOPY_MAX_OPS)
		return say(err, err_cap, RT_ETOOBIG, "a diff of %zu ops (at most %d)", n_ops,
			   RT_LIVECOPY_MAX_OPS);
	int rc = RT_ENOMEM;
	/* every key the diff names: true when it leaves its place (leave, move) */
	json_t *seen = json_object();
	struct placed *pl = lc_alloc(lc, n_ops * sizeof *pl);
	struct placed *chg = lc_alloc(lc, n_ops * sizeof *chg);
	json_t *rows = NULL, *keys = NULL, *at = NULL;
	size_t n_pl = 0, n_chg = 0, n_removed = 0;
	if (!seen || !pl || !chg)
		goto out_free;
	for (size_t i = 0; i < n_ops; i++) {
		const json_t *op = json_array_get(ops, i);
		const char *kind = json_string_value(json_object_get(op, "op"));
		json_t *kv = json_object_get(op, "key");
		const char *key = key_of(kv);
		json_t *row = json_object_get(op, "row");
		const json_t *iv = json_object_get(op, "index");
		rc = RT_EPROTO;
		if (!json_is_object(op) || !kind || !key) {
			say(err, err_cap, rc, "ops[%zu] is not an op with a kind and a key", i);
			goto out_free;
		}
		bool is_leave = !strcmp(kind, "leave"), is_move = !strcmp(kind, "move");
		bool is_enter = !strcmp(kind, "enter"), is_change = !strcmp(kind, "change");
		if (!is_leave && !is_move && !is_enter && !is_change) {
			say(err, err_cap, rc, "ops[%zu]: unknown op %.32s", i, kind);
			goto out_free;
		}
		if (json_object_get(seen, key)) {
			say(err, err_cap, rc, "ops[%zu]: a second op for key %.64s", i, key);
			goto out_free;
		}
		bool is_in = json_object_get(lc->at, key) != NULL;
		if (is_in == is_enter) {
			say(err, err_cap, rc, "ops[%zu]: %s of key %.64s, %s the result", i, kind,
			    key, is_in ? "already in" : "not in");
			goto out_free;
		}
		if (!is_leave && !json_is_object(row)) {
			say(err, err_cap, rc, "ops[%zu]: %s without a row object", i, kind);
			goto out_free;
		}
		if ((is_enter || is_move) && (!json_is_integer(iv) || json_integer_value(iv) < 0 ||
					      json_integer_value(iv) >= RT_LIVECOPY_MAX_ROWS)) {
			say(err, err_cap, rc, "ops[%zu]: %s without a valid index", i, kind);
			goto out_free;
		}
		rc = RT_ENOMEM;
		if (json_object_set(seen, key, (is_leave || is_move) ? json_true() : json_false()))
			goto out_free;
		if (is_leave || is_move)
			n_removed++;
		if (is_enter || is_move)
			pl[n_pl++] = (struct placed){(size_t)json_integer_value(iv), kv, row};
		else if (is_change)
			chg[n_chg++] = (struct placed){0, kv, row};
	}
	size_t n_new = n - n_removed + n_pl;
	if (n_new > RT_LIVECOPY_MAX_ROWS) {
		rc = say(err, err_cap, RT_ETOOBIG, "a result of %zu rows (at most %d)", n_new,
			 RT_LIVECOPY_MAX_ROWS);
		goto out_free;
	}
	qsort(pl, n_pl, sizeof *pl, by_index);
	for (size_t i = 0; i < n_pl; i++) {
		if (pl[i].index >= n_new || (i && pl[i].index == pl[i - 1].index)) {
			rc = say(err, err_cap, RT_EPROTO, "index %zu of key %.64s: %s", pl[i].index,
				 json_string_value(pl[i].key),
				 pl[i].index >= n_new ? "past the new result" : "taken twice");
			goto out_free;
		}
	}
	if (!n_removed && !n_pl) {
		/* changes only: every check passed, and json_array_set of an index
		 * in range cannot fail, so the copy is changed in place */
		for (size_t i = 0; i < n_chg; i++) {
			json_t *ix = json_object_get(lc->at, json_string_value(chg[i].key));
			json_array_set(lc->rows, (size_t)json_integer_value(ix), chg[i].row);
		}
		rc = 0;
		goto out_free;
	}
	rc = RT_ENOMEM;
	rows = json_array();
	keys = json_array();
	if (!rows || !keys)
		goto out_free;
	size_t old = 0, next = 0;
	for (size_t p = 0; p < n_new; p++) {
		json_t *row, *key;
		if (next < n_pl && pl[next].index == p) {
			row = pl[next].row;
			key = pl[next].key;
			next++;
		} else {
			/* the counts match, so an old row is left for every such p */
			while (old < n &&
			       json_is_true(json_object_get(
				       seen, json_string_value(json_array_get(lc->keys, old)))))
				old++;
			if (old >= n) {
				rc = say(err, err_cap, RT_EPROTO, "the diff does not add up");
				goto out_free;
			}
			row = json_array_get(lc->rows, old);
			key = json_array_get(lc->keys, old);
			old++;
		}
		if (json_array_append(rows, row) || json_array_append(keys, key))
			goto out_free;
	}
	rc = index_keys(keys, &at, err, err_cap);
	if (rc)
		goto out_free;
	for (size_t i = 0; i < n_chg; i++) {
		json_t *ix = json_object_get(at, json_string_value(chg[i].key));
		json_array_set(rows, (size_t)json_integer_value(ix), chg[i].row);
	}
	commit(lc, rows, keys, at);
	rows = keys = at = NULL;
	rc = 0;
out_free:
	json_decref(rows);
	json_decref(keys);
	json_decref(at);
	json_decref(seen);
	lc_free(lc, pl);
	lc_free(lc, chg);
	return rc;
}

int rt_livecopy_apply(struct rt_livecopy *lc, const json_t *entry, char *err, size_t err_cap)
{
	if (err && err_cap)
		err[0] = 0;
	const char *kind = json_string_value(json_object_get(entry, "kind"));
	if (!json_is_object(entry) || !kind)
		return say(err, err_cap, RT_EPROTO, "an entry is an object with a kind");
	if (!strcmp(kind, "result"))
		return apply_result(lc, entry, err, err_cap);
	if (!strcmp(kind, "diff"))
		return apply_diff(lc, entry, err, err_cap);
	return say(err, err_cap, RT_EPROTO, "unknown kind %.32s", kind);
}

int rt_livecopy_validate(const struct rt_livecopy *lc)
{
	if (!lc->rows)
		return lc->keys || lc->at ? RT_EPROTO : 0;
	if (!json_is_array(lc->rows) || !json_is_array(lc->keys) || !json_is_object(lc->at))
		return RT_EPROTO;
	size_t n = json_array_size(lc->rows);
	if (json_array_size(lc->keys) != n || json_object_size(lc->at) != n ||
	    n > RT_LIVECOPY_MAX_ROWS)
		return RT_EPROTO;
	for (size_t i = 0; i < n; i++) {
		const char *k = key_of(json_array_get(lc->keys, i));
		const json_t *ix = k ? json_object_get(lc->at, k) : NULL;
		if (!ix || !json_is_integer(ix) || json_integer_value(ix) != (json_int_t)i ||
		    !json_is_object(json_array_get(lc->rows, i)))
			return RT_EPROTO;
	}
	return 0;
}

int rt_livecopy_check_message(const json_t *payload, char *err, size_t err_cap)
{
	if (err && err_cap)
		err[0] = 0;
	const char *pos = json_string_value(json_object_get(payload, "position"));
	size_t n = pos ? strlen(pos) : 0;
	if (!json_is_object(payload) || !n || n > 20 || strspn(pos, "0123456789") != n)
		return say(err, err_cap, RT_EPROTO, "live_query without a decimal position");
	const json_t *qs = json_object_get(payload, "queries");
	if (!json_is_array(qs) || json_array_size(qs) > RT_LIVECOPY_MAX_ENTRIES)
		return say(err, err_cap, RT_EPROTO,
			   "live_query queries is not an array of at most %d",
			   RT_LIVECOPY_MAX_ENTRIES);
	size_t i;
	const json_t *e;
	json_array_foreach(qs, i, e) {
		const json_t *id = json_object_get(e, "id");
		size_t len = json_string_length(id);
		if (!json_is_object(e) || !json_is_string(json_object_get(e, "kind")) ||
		    !json_is_string(id) || !len || len > RT_LIVECOPY_MAX_ID ||
		    strlen(json_string_value(id)) != len)
			return say(err, err_cap, RT_EPROTO,
				   "live_query queries[%zu] has no kind or no valid id", i);
		for (size_t k = 0; k < i; k++)
			if (json_equal(json_object_get(json_array_get(qs, k), "id"), id))
				return say(err, err_cap, RT_EPROTO,
					   "live_query names query %s twice",
					   json_string_value(id));
	}
	return 0;
}
