/*
 * Fuzz target: the logical replication stream decoder (src/store/pgoutput.h).
 *
 * Input layout:
 *   byte 0 % 3 == 0   the rest is a CopyData payload: frame parse, then the
 *                     XLogData message decoded as pgoutput
 *   byte 0 % 3 == 1   the rest is one pgoutput message
 *   byte 0 % 3 == 2   byte 1 picks a type name, the rest is a value's text,
 *                     converted to JSON
 * Checked: decoded borrowed pointers lie inside the input, counts respect the
 * limits, values convert to JSON that encodes, a decoded message's JSON of
 * every text column encodes, and deinit leaves nothing behind.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/pgoutput.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			abort();                                                         \
	} while (0)

static const char *const types[] = {
	"int2", "int4", "int8", "numeric", "float4", "float8", "bool", "json", "jsonb",
	"timestamp", "timestamptz", "timetz", "date", "uuid", "text", "bytea", "_int4",
	"_text", "_jsonb", "_numeric", "_bool", "_timestamptz", "__int4", "_",
};

static bool inside(const void *p, size_t len, const uint8_t *data, size_t size)
{
	const uint8_t *b = p;
	return b >= data && b + len <= data + size;
}

static void check_json(json_t *v)
{
	CHECK(v);
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	CHECK(s);
	free(s);
	json_decref(v);
}

static void check_tuple(const struct rt_pgo_tuple *t, const uint8_t *data, size_t size)
{
	CHECK(t->n_cols <= RT_PGO_MAX_COLS);
	for (size_t i = 0; i < t->n_cols; i++) {
		const struct rt_pgo_value *v = &t->cols[i];
		CHECK(v->kind == 'n' || v->kind == 'u' || v->kind == 't' || v->kind == 'b');
		if (v->kind == 't' || v->kind == 'b') {
			CHECK(inside(v->data, v->len, data, size));
			check_json(rt_pgo_value_json(types[i % (sizeof types / sizeof *types)],
						     v->data, v->len));
		}
	}
}

static void decode(const uint8_t *data, size_t size)
{
	struct rt_pgo_msg m;
	if (rt_pgo_decode(data, size, &m)) {
		CHECK(!m.columns && !m.old_tuple.cols && !m.new_tuple.cols && !m.relids);
		return;
	}
	CHECK(m.n_columns <= RT_PGO_MAX_COLS && m.n_relids <= RT_PGO_MAX_RELS);
	if (m.name)
		CHECK(inside(m.name, strlen(m.name) + 1, data, size));
	if (m.nspname)
		CHECK(inside(m.nspname, strlen(m.nspname) + 1, data, size));
	for (size_t i = 0; i < m.n_columns; i++)
		CHECK(inside(m.columns[i].name, strlen(m.columns[i].name) + 1, data, size));
	if (m.content)
		CHECK(inside(m.content, m.content_len, data, size));
	check_tuple(&m.old_tuple, data, size);
	check_tuple(&m.new_tuple, data, size);
	rt_pgo_msg_deinit(&m);
	CHECK(!m.columns && !m.n_columns);
	rt_pgo_msg_deinit(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 3;
	data++;
	size--;
	if (mode == 0) {
		struct rt_pgo_frame f;
		if (rt_pgo_frame_parse(data, size, &f))
			return 0;
		if (f.kind == RT_PGO_XLOGDATA) {
			CHECK(inside(f.data, f.data_len, data, size));
			decode(f.data, f.data_len);
		} else {
			CHECK(size == 18);
		}
		uint8_t st[34];
		rt_pgo_status_update(st, f.wal_end, f.send_time, f.wants_reply);
		CHECK(st[0] == 'r');
	} else if (mode == 1) {
		decode(data, size);
	} else if (size >= 1) {
		const char *type = types[data[0] % (sizeof types / sizeof *types)];
		check_json(rt_pgo_value_json(type, (const char *)data + 1, size - 1));
	}
	return 0;
}
