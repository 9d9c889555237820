/*
 * Fuzz target: the y-websocket protocol's framing (rt_collab_msg_parse) and
 * awareness updates (rt_collab_aw_parse), then what the server does with a
 * sync message's payload (src/collab/collab.c, on_sync).
 *
 * Input layout: the whole input is one binary WebSocket message.
 *
 * Checked: a parsed message's payload lies inside the input and ends it
 * (sync, awareness); sync step 1's state vector and step 2's or an update's
 * update go to an rt_ydoc as the server hands them (encode against the state
 * vector; apply, then the document validates and encodes); an awareness
 * update that parses has at most one entry per byte, states inside the input
 * within RT_COLLAB_MAX_AWARENESS bytes, is_null exactly for JSON null, and
 * re-encoded with lib0's minimal var-uints it parses again to the same
 * entries. A failure leaves nothing allocated.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "collab/collab.h"
#include "common/buf.h"
#include "common/err.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_uint(struct rt_buf *b, uint64_t v)
{
	do {
		uint8_t byte = v & 0x7f;
		v >>= 7;
		rt_buf_append_byte(b, v ? (byte | 0x80) : byte);
	} while (v);
}

static int inside(const void *p, size_t len, const uint8_t *data, size_t size)
{
	const uint8_t *q = p;
	return q >= data && q <= data + size && len <= (size_t)(data + size - q);
}

static void check_awareness(const uint8_t *u, size_t u_len)
{
	struct rt_collab_aw_entry *es;
	size_t n;
	int rc = rt_collab_aw_parse(u, u_len, &es, &n);
	if (rc) {
		CHECK(rc == RT_EPROTO || rc == RT_ETOOBIG);
		CHECK(!es && !n);
		return;
	}
	CHECK(es);
	CHECK(n <= u_len);
	struct rt_buf b;
	rt_buf_init(&b);
	put_uint(&b, n);
	for (size_t i = 0; i < n; i++) {
		const struct rt_collab_aw_entry *e = &es[i];
		CHECK(e->state_len <= RT_COLLAB_MAX_AWARENESS);
		CHECK(inside(e->state, e->state_len, u, u_len));
		json_t *v = json_loadb(e->state, e->state_len,
				       JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
		CHECK(v);
		CHECK(e->is_null == json_is_null(v));
		json_decref(v);
		put_uint(&b, e->client);
		put_uint(&b, e->clock);
		put_uint(&b, e->state_len);
		rt_buf_append(&b, e->state, e->state_len);
	}
	struct rt_collab_aw_entry *again;
	size_t n_again;
	CHECK(rt_collab_aw_parse((const uint8_t *)b.data, b.len, &again, &n_again) == 0);
	CHECK(n_again == n);
	for (size_t i = 0; i < n; i++) {
		CHECK(again[i].client == es[i].client && again[i].clock == es[i].clock);
		CHECK(again[i].state_len == es[i].state_len && again[i].is_null == es[i].is_null);
		CHECK(!memcmp(again[i].state, es[i].state, es[i].state_len));
	}
	free(again);
	rt_buf_deinit(&b);
	free(es);
}

static void check_sync(const struct rt_collab_msg *m)
{
	struct rt_ydoc *d = rt_ydoc_new();
	struct rt_buf out;
	rt_buf_init(&out);
	char err[256];
	if (m->step == RT_COLLAB_SYNC_STEP1) {
		/* what the server answers with: the (empty) document against the sv */
		int rc = rt_ydoc_encode(d, m->data, m->data_len, false, &out);
		CHECK(rc == 0 || rc == RT_EPROTO);
		if (rc)
			CHECK(out.len == 0);
	} else {
		uint8_t *added = NULL;
		size_t added_len = 0;
		int rc = rt_ydoc_apply(d, m->data, m->data_len, &added, &added_len, err, sizeof err);
		CHECK(rc == 0 || rc == RT_EPROTO || rc == RT_ETOOBIG);
		if (rc)
			CHECK(!added && err[0]);
		CHECK(rt_ydoc_validate(d) == 0);
		if (!rc) {
			/* a client's sync step 1 answered after the update */
			struct rt_buf sv;
			rt_buf_init(&sv);
			rt_ydoc_state_vector(d, &sv);
			CHECK(rt_ydoc_encode(d, (const uint8_t *)sv.data, sv.len, false, &out) == 0);
			CHECK(rt_ydoc_encode(d, NULL, 0, true, &out) == 0);
			rt_buf_deinit(&sv);
		}
		free(added);
	}
	rt_buf_deinit(&out);
	rt_ydoc_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rt_collab_msg m;
	int rc = rt_collab_msg_parse(data, size, &m);
	if (rc) {
		CHECK(rc == RT_EPROTO);
		return 0;
	}
	switch (m.type) {
	case RT_COLLAB_MSG_SYNC:
		CHECK(m.step == RT_COLLAB_SYNC_STEP1 || m.step == RT_COLLAB_SYNC_STEP2 ||
		      m.step == RT_COLLAB_SYNC_UPDATE);
		CHECK(inside(m.data, m.data_len, data, size));
		CHECK(m.data + m.data_len == data + size);
		check_sync(&m);
		break;
	case RT_COLLAB_MSG_AWARENESS:
		CHECK(inside(m.data, m.data_len, data, size));
		CHECK(m.data + m.data_len == data + size);
		check_awareness(m.data, m.data_len);
		break;
	case RT_COLLAB_MSG_AUTH:
	case RT_COLLAB_MSG_QUERY_AWARENESS:
		CHECK(!m.data && !m.data_len);
		break;
	default:
		CHECK(0);
	}
	return 0;
}
