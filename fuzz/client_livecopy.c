/*
 * Fuzz target: librtsync's copy of a live query's result
 * (src/client/livecopy.c) under what the server can send: live_query
 * message payloads, their envelope checked (rt_livecopy_check_message),
 * then every entry applied to one copy per query id.
 *
 * Input layout: a JSON array of live_query payloads ({"position",
 * "queries": [{"id", "kind", …}]}); anything else is skipped.
 *
 * Checked: after every entry the copy's invariants hold
 * (rt_livecopy_validate); a refused entry says why and leaves the copy as it
 * was (count and whether it has a result, and the same rows); a result
 * applied leaves exactly its rows; the copy never holds more than
 * RT_LIVECOPY_MAX_ROWS rows. The client source is included because fuzz
 * targets link only the server library.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/livecopy.c"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define MAX_COPIES 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct copy {
	char id[RT_LIVECOPY_MAX_ID + 1];
	struct rt_livecopy lc;
};

static struct rt_livecopy *copy_of(struct copy *cs, size_t *n, const char *id)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(cs[i].id, id))
			return &cs[i].lc;
	if (*n == MAX_COPIES || strlen(id) > RT_LIVECOPY_MAX_ID)
		return NULL;
	struct copy *c = &cs[(*n)++];
	strcpy(c->id, id);
	rt_livecopy_init(&c->lc, NULL);
	return &c->lc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *msgs = json_loadb((const char *)data, size, 0, NULL);
	if (!json_is_array(msgs)) {
		json_decref(msgs);
		return 0;
	}
	struct copy cs[MAX_COPIES];
	size_t n_cs = 0;
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m) {
		char err[256] = "";
		if (rt_livecopy_check_message(m, err, sizeof err)) {
			CHECK(err[0]);
			continue;
		}
		size_t k;
		const json_t *e;
		json_array_foreach(json_object_get(m, "queries"), k, e) {
			struct rt_livecopy *lc = copy_of(cs, &n_cs, json_string_value(json_object_get(e, "id")));
			if (!lc)
				continue;
			size_t before = rt_livecopy_count(lc);
			bool had = rt_livecopy_has_result(lc);
			json_t *rows_before = lc->rows ? json_copy(lc->rows) : NULL;
			err[0] = '\0';
			int rc = rt_livecopy_apply(lc, e, err, sizeof err);
			CHECK(rt_livecopy_validate(lc) == 0);
			CHECK(rt_livecopy_count(lc) <= RT_LIVECOPY_MAX_ROWS);
			if (rc) {
				CHECK(rc == RT_EPROTO || rc == RT_ETOOBIG || rc == RT_ENOMEM);
				CHECK(err[0]);
				CHECK(rt_livecopy_count(lc) == before && rt_livecopy_has_result(lc) == had);
				CHECK(!rows_before == !lc->rows);
				if (rows_before)
					CHECK(json_equal(rows_before, lc->rows));
			} else {
				CHECK(rt_livecopy_has_result(lc));
				const char *kind = json_string_value(json_object_get(e, "kind"));
				if (kind && !strcmp(kind, "result"))
					CHECK(json_equal(lc->rows, json_object_get(e, "rows")));
			}
			json_decref(rows_before);
		}
	}
	for (size_t c = 0; c < n_cs; c++)
		rt_livecopy_deinit(&cs[c].lc);
	json_decref(msgs);
	return 0;
}
