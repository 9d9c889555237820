/*
 * The C merge of Yjs updates as a filter, for the differential test
 * (tests/collab/differential.mjs): reads records (a 4-byte little-endian
 * length, then that many bytes) from stdin, applies every one but the last
 * to one document, and takes the last as a state vector. Writes seven
 * records: the whole state, the state with garbage collection, the state
 * vector, the state from the given state vector on, the shared types as
 * JSON, the same with texts as deltas, and the JSON of a document loaded
 * from the state with garbage collection alone. An update the
 * document refuses ends it with its error on stderr and exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collab/collab.h"
#include "common/buf.h"

static int read_record(uint8_t **out, size_t *len)
{
	uint8_t h[4];
	if (fread(h, 1, 4, stdin) != 4)
		return -1;
	*len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
	*out = malloc(*len ? *len : 1);
	if (!*out || fread(*out, 1, *len, stdin) != *len) {
		free(*out);
		return -1;
	}
	return 0;
}

static void write_record(const struct rt_buf *b)
{
	uint8_t h[4] = {(uint8_t)b->len, (uint8_t)(b->len >> 8), (uint8_t)(b->len >> 16),
			(uint8_t)(b->len >> 24)};
	fwrite(h, 1, 4, stdout);
	fwrite(b->data, 1, b->len, stdout);
}

int main(void)
{
	uint8_t *recs[1 << 16];
	size_t lens[1 << 16], n = 0;
	while (n < sizeof recs / sizeof *recs && !read_record(&recs[n], &lens[n]))
		n++;
	if (!n) {
		fprintf(stderr, "ymerge: no state vector record\n");
		return 2;
	}
	struct rt_ydoc *d = rt_ydoc_new();
	int rc = 0;
	for (size_t i = 0; i + 1 < n && !rc; i++) {
		char err[256];
		uint8_t *added;
		size_t added_len;
		if (rt_ydoc_apply(d, recs[i], lens[i], &added, &added_len, err, sizeof err)) {
			fprintf(stderr, "ymerge: update %zu: %s\n", i, err);
			rc = 1;
		}
		free(added);
		if (rt_ydoc_validate(d)) {
			fprintf(stderr, "ymerge: invariants broken after update %zu\n", i);
			rc = 1;
		}
	}
	struct rt_buf b;
	rt_buf_init(&b);
	if (!rc) {
		rt_ydoc_encode(d, NULL, 0, false, &b);
		write_record(&b);
		rt_buf_reset(&b);
		rt_ydoc_encode(d, NULL, 0, true, &b);
		write_record(&b);
		rt_buf_reset(&b);
		rt_ydoc_state_vector(d, &b);
		write_record(&b);
		rt_buf_reset(&b);
		if (rt_ydoc_encode(d, recs[n - 1], lens[n - 1], false, &b)) {
			fprintf(stderr, "ymerge: malformed state vector\n");
			rc = 1;
		}
		write_record(&b);
		struct rt_buf j;
		rt_buf_init(&j);
		for (int delta = 0; delta < 2; delta++) {
			char *txt = rt_ydoc_json(d, delta);
			rt_buf_reset(&j);
			rt_buf_append_str(&j, txt ? txt : "null");
			write_record(&j);
			free(txt);
		}
		/* what a compacted document reads back as */
		rt_buf_reset(&b);
		rt_ydoc_encode(d, NULL, 0, true, &b);
		struct rt_ydoc *g = rt_ydoc_new();
		char err[256];
		if (rt_ydoc_apply(g, (const uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err)) {
			fprintf(stderr, "ymerge: the state with gc is refused: %s\n", err);
			rc = 1;
		}
		char *txt = rt_ydoc_json(g, false);
		rt_buf_reset(&j);
		rt_buf_append_str(&j, txt ? txt : "null");
		write_record(&j);
		free(txt);
		rt_ydoc_free(g);
		rt_buf_deinit(&j);
	}
	rt_buf_deinit(&b);
	rt_ydoc_free(d);
	for (size_t i = 0; i < n; i++)
		free(recs[i]);
	return rc;
}
