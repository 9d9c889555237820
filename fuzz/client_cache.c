/*
 * Fuzz target: the synced table's cache (src/client/cache.c) under what the
 * network can send it. The input is a JSON array of steps, each an array:
 *   ["load", rows, position]            a snapshot reply
 *   ["change", type, record, old, pos]  a postgres_changes delivery
 *   ["write", op 0..3, object]          a local write (key taken from object)
 *   ["ack", n, row, pos] / ["drop", n]  the n-th pending write answered
 *   ["rewrite", n, record]              a manual resolution
 *   ["unload"]                          a resync
 * After every step the cache's invariants must hold (rt_cache_validate) and
 * its rows must be readable. Anything else in the input is skipped. The
 * client source is included because fuzz targets link only the server
 * library. Run with its dictionary:
 *   build-fuzz/fuzz_client_cache -dict=fuzz/client_cache.dict fuzz/corpus/client_cache
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/cache.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *std_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	if (!n) {
		free(p);
		return NULL;
	}
	return realloc(p, n);
}

static void on_row(void *user, const char *key, const json_t *row, bool is_pending,
		   enum rt_table_cause cause)
{
	size_t *n = user;
	(*n)++;
	if (!key || (row && !json_is_object(row)) || cause > RT_TABLE_ROLLED_BACK)
		abort();
	(void)is_pending;
}

static const char *str_or_null(const json_t *v)
{
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void fz_write_free(struct rt_cache_write *w)
{
	json_decref(w->key_obj);
	json_decref(w->record);
	json_decref(w->base);
	free(w);
}

/* The n-th pending write, or NULL. */
static struct rt_cache_write *nth(struct rt_cache *k, const json_t *n)
{
	if (!json_is_integer(n) || json_integer_value(n) < 0)
		return NULL;
	struct rt_cache_write *w = k->head;
	for (json_int_t i = json_integer_value(n); w && i > 0; i--)
		w = w->next;
	return w;
}

static void step(struct rt_cache *k, const json_t *s)
{
	const char *what = json_string_value(json_array_get(s, 0));
	const json_t *a1 = json_array_get(s, 1), *a2 = json_array_get(s, 2);
	const json_t *a3 = json_array_get(s, 3), *a4 = json_array_get(s, 4);
	if (!what)
		return;
	if (!strcmp(what, "load")) {
		rt_cache_load(k, a1, str_or_null(a2));
	} else if (!strcmp(what, "change")) {
		rt_cache_change(k, str_or_null(a1), a2, a3, str_or_null(a4));
	} else if (!strcmp(what, "write")) {
		if (!json_is_integer(a1) || json_integer_value(a1) < 0 || json_integer_value(a1) > 3 ||
		    k->n_writes >= 64)
			return;
		struct rt_cache_write *w = calloc(1, sizeof *w);
		if (!w || rt_cache_key_of(k, a2, &w->key_obj, w->key)) {
			free(w);
			return;
		}
		w->op = (enum rt_cache_op)json_integer_value(a1);
		w->record = w->op == RT_CACHE_DELETE ? NULL : json_deep_copy(a2);
		if (rt_cache_base(k, w->key, w->record, &w->base)) {
			fz_write_free(w);
			return;
		}
		w->strategy = RT_STRATEGY_REJECT;
		rt_cache_add(k, w);
	} else if (!strcmp(what, "ack") || !strcmp(what, "drop")) {
		struct rt_cache_write *w = nth(k, a1);
		if (!w)
			return;
		bool is_ack = !strcmp(what, "ack");
		rt_cache_unlink(k, w, is_ack, json_is_object(a2) ? a2 : NULL, str_or_null(a3),
				is_ack ? RT_TABLE_CONFIRMED : RT_TABLE_ROLLED_BACK);
		fz_write_free(w);
	} else if (!strcmp(what, "rewrite")) {
		struct rt_cache_write *w = nth(k, a1);
		if (!w || w->op == RT_CACHE_DELETE || !json_is_object(a2))
			return;
		rt_cache_rewrite(k, w, json_deep_copy(a2), NULL);
	} else if (!strcmp(what, "unload")) {
		rt_cache_unload(k);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *script = json_loadb((const char *)data, size, 0, NULL);
	if (!json_is_array(script)) {
		json_decref(script);
		return 0;
	}
	static char id[] = "id", org[] = "org";
	char *pk2[] = {id, org};
	size_t reports = 0;
	struct rt_cache k;
	const struct rt_cache_alloc alloc = {std_realloc, NULL};
	/* the key is "id", or ("id", "org") when the script starts with 2 */
	size_t n_pk = json_integer_value(json_array_get(script, 0)) == 2 ? 2 : 1;
	if (rt_cache_init(&k, pk2, n_pk, &alloc, on_row, &reports))
		abort();
	size_t i;
	const json_t *s;
	json_array_foreach(script, i, s) {
		if (i >= 256)
			break;
		if (json_is_array(s))
			step(&k, s);
		if (rt_cache_validate(&k))
			abort();
		json_t *rows = rt_cache_rows(&k);
		if (!rows || json_array_size(rows) != rt_cache_count(&k))
			abort();
		json_decref(rows);
	}
	while (k.head) {
		struct rt_cache_write *w = k.head;
		rt_cache_unlink(&k, w, false, NULL, NULL, RT_TABLE_ROLLED_BACK);
		fz_write_free(w);
	}
	rt_cache_deinit(&k);
	json_decref(script);
	return 0;
}
