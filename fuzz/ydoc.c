/*
 * Fuzz target: the Yjs update codec (src/collab/ydoc.c) on hostile updates.
 *
 * Input layout: records, each a 2-byte little-endian length and that many
 * bytes, until the input ends (a short last record takes what is left).
 * Every record is applied to one document as an update; the last one is
 * also used as a state vector.
 *
 * Checked: a refused update changes nothing (count and bytes kept); the
 * document's invariants hold after every update (rt_ydoc_validate); what it
 * encodes (whole, with gc, from the state vector on) decodes again; the
 * whole state re-encoded from a fresh document is the same bytes with the
 * same state vector; an update applied twice adds nothing the second time;
 * the JSON of the shared types (the document integrated as Yjs does) is
 * JSON, before and after gc; gc is stable (the state with gc, loaded and
 * encoded with gc again, is the same bytes).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "collab/collab.h"
#include "common/buf.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			abort();                                                         \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rt_ydoc *decode_fresh(const struct rt_buf *b)
{
	char err[256];
	struct rt_ydoc *d = rt_ydoc_new();
	CHECK(rt_ydoc_apply(d, (const uint8_t *)b->data, b->len, NULL, NULL, err, sizeof err) == 0);
	CHECK(rt_ydoc_validate(d) == 0);
	return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rt_ydoc *d = rt_ydoc_new();
	const uint8_t *last = NULL;
	size_t last_len = 0;
	char err[256];
	while (size) {
		size_t n = size >= 2 ? (size_t)data[0] | (size_t)data[1] << 8 : 0;
		data += size >= 2 ? 2 : size;
		size -= size >= 2 ? 2 : size;
		if (n > size)
			n = size;
		size_t count = rt_ydoc_count(d), bytes = rt_ydoc_bytes(d);
		uint8_t *added;
		size_t added_len;
		int rc = rt_ydoc_apply(d, data, n, &added, &added_len, err, sizeof err);
		if (rc) {
			CHECK(rt_ydoc_count(d) == count && rt_ydoc_bytes(d) == bytes);
		} else {
			free(added);
			CHECK(rt_ydoc_apply(d, data, n, &added, &added_len, err, sizeof err) == 0);
			CHECK(!added && !added_len);
		}
		CHECK(rt_ydoc_validate(d) == 0);
		last = data;
		last_len = n;
		data += n;
		size -= n;
	}
	struct rt_buf whole, gc, sv, sv2, diff, again;
	rt_buf_init(&whole);
	rt_buf_init(&gc);
	rt_buf_init(&sv);
	rt_buf_init(&sv2);
	rt_buf_init(&diff);
	rt_buf_init(&again);
	rt_ydoc_encode(d, NULL, 0, false, &whole);
	rt_ydoc_encode(d, NULL, 0, true, &gc);
	rt_ydoc_state_vector(d, &sv);
	struct rt_ydoc *w = decode_fresh(&whole);
	rt_ydoc_encode(w, NULL, 0, false, &again);
	CHECK(again.len == whole.len && !memcmp(again.data, whole.data, whole.len));
	rt_ydoc_state_vector(w, &sv2);
	CHECK(sv2.len == sv.len && !memcmp(sv2.data, sv.data, sv.len));
	struct rt_ydoc *g = decode_fresh(&gc);
	struct rt_buf gc2;
	rt_buf_init(&gc2);
	rt_ydoc_encode(g, NULL, 0, true, &gc2);
	CHECK(gc2.len == gc.len && !memcmp(gc2.data, gc.data, gc.len));
	rt_buf_deinit(&gc2);
	for (int k = 0; k < 3; k++) {
		char *txt = rt_ydoc_json(k == 2 ? g : d, k == 1);
		if (!txt)
			continue; /* too costly to integrate */
		json_error_t je;
		json_t *j = json_loads(txt, JSON_ALLOW_NUL, &je);
		/* valid JSON that jansson does not load: a key holding U+0000 */
		CHECK((j && json_is_object(j)) || (!j && strstr(je.text, "NUL byte in object key")));
		json_decref(j);
		free(txt);
	}
	rt_ydoc_free(g);
	if (last && rt_ydoc_encode(d, last, last_len, false, &diff) == 0)
		rt_ydoc_free(decode_fresh(&diff));
	rt_ydoc_free(w);
	rt_buf_deinit(&whole);
	rt_buf_deinit(&gc);
	rt_buf_deinit(&sv);
	rt_buf_deinit(&sv2);
	rt_buf_deinit(&diff);
	rt_buf_deinit(&again);
	rt_ydoc_free(d);
	return 0;
}
