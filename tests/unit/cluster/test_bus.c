/*
 * The messages between nodes (src/cluster/bus.h): encode and decode of every
 * type, refusal of malformed and truncated input (every prefix, every byte
 * flipped), frame splitting against rt_ws_frame(), the peers table's
 * dedupe (next, gap, duplicate, heartbeat) and the Redis URL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/bus.h"
#include "common/err.h"
#include "net/ws.h"

static struct rt_bus_str S(const char *s) {
	return (struct rt_bus_str){(const uint8_t *)s, strlen(s)};
}

static void
assert_str(struct rt_bus_str s, const char *want)
{
	assert_non_null(s.data);
	assert_int_equal(s.len, strlen(want));
	assert_memory_equal(s.data, want, s.len);
}

static void test_broadcast_round_trip(void **state)
{
	struct rt_bus_msg m = {.type = RT_BUS_BROADCAST, .seq = 42};
	strcpy(m.node, "node-1_a");
	m.key = S("pub:room1");
	m.v1 = (struct rt_bus_frame){1, S("[\"v1\"]")};
	m.v2 = (struct rt_bus_frame){2, {(const uint8_t *)"\x04\x00bin", 5}};
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_bus_encode(&b, &m), 0);
	struct rt_bus_msg d;
	assert_int_equal(rt_bus_decode((const uint8_t *)b.data, b.len, &d), 0);
	assert_int_equal(d.type, RT_BUS_BROADCAST);
	assert_string_equal(d.node, "node-1_a");
	assert_int_equal(d.seq, 42);
	assert_str(d.key, "pub:room1");
	assert_int_equal(d.v1.opcode, 1);
	assert_str(d.v1.payload, "[\"v1\"]");
	assert_int_equal(d.v2.opcode, 2);
	assert_int_equal(d.v2.payload.len, 5);
	assert_memory_equal(d.v2.payload.data, "\x04\x00bin", 5);

	/* only one protocol version's frame */
	rt_buf_reset(&b);
	m.v1 = (struct rt_bus_frame){0};
	assert_int_equal(rt_bus_encode(&b, &m), 0);
	assert_int_equal(rt_bus_decode((const uint8_t *)b.data, b.len, &d), 0);
	assert_null(d.v1.payload.data);
	assert_non_null(d.v2.payload.data);
	/* neither: refused */
	m.v2 = (struct rt_bus_frame){0};
	rt_buf_reset(&b);
	assert_int_equal(rt_bus_encode(&b, &m), RT_EINVAL);
	assert_int_equal(b.len, 0);
	rt_buf_deinit(&b);
}

static void test_presence_round_trip(void **state)
{
	struct rt_bus_msg m = {.type = RT_BUS_PRESENCE, .seq = 7, .chan_id = UINT64_MAX - 1};
	strcpy(m.node, "n");
	m.key = S("pub:lobby");
	m.topic = S("realtime:lobby");
	m.pkey = S("alice");
	m.join = S("{\"phx_ref\":\"x\"}");
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_bus_encode(&b, &m), 0);
	struct rt_bus_msg d;
	assert_int_equal(rt_bus_decode((const uint8_t *)b.data, b.len, &d), 0);
	assert_int_equal(d.type, RT_BUS_PRESENCE);
	assert_int_equal(d.chan_id, UINT64_MAX - 1);
	assert_str(d.key, "pub:lobby");
	assert_str(d.topic, "realtime:lobby");
	assert_str(d.pkey, "alice");
	assert_str(d.join, "{\"phx_ref\":\"x\"}");
	assert_null(d.leave.data);
	/* an empty presence key is refused both ways */
	m.pkey = S("");
	rt_buf_reset(&b);
	assert_int_equal(rt_bus_encode(&b, &m), RT_EINVAL);
	rt_buf_deinit(&b);
}

static void test_heartbeat_and_state(void **state)
{
	for (int t = RT_BUS_HEARTBEAT; t <= RT_BUS_STATE; t++) {
		struct rt_bus_msg m = {.type = (enum rt_bus_type)t, .seq = 3};
		strcpy(m.node, "abc");
		struct rt_buf b;
		rt_buf_init(&b);
		assert_int_equal(rt_bus_encode(&b, &m), 0);
		struct rt_bus_msg d;
		assert_int_equal(rt_bus_decode((const uint8_t *)b.data, b.len, &d), 0);
		assert_int_equal(d.type, t);
		assert_int_equal(d.seq, 3);
		rt_buf_deinit(&b);
	}
}

/* Every strict prefix, one extra byte, and every single flipped byte: a
 * prefix or an extension is refused; a flip decodes or is refused, never
 * reads outside the input (ASan). */
static void test_malformed(void **state)
{
	struct rt_bus_msg m = {.type = RT_BUS_PRESENCE, .seq = 9, .chan_id = 5};
	strcpy(m.node, "node");
	m.key = S("pub:t");
	m.topic = S("realtime:t");
	m.pkey = S("k");
	m.leave = S("{}");
	struct rt_buf b;
	rt_buf_init(&b);
	assert_int_equal(rt_bus_encode(&b, &m), 0);
	struct rt_bus_msg d;
	for (size_t n = 0; n < b.len; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, b.data, n);
		assert_int_equal(rt_bus_decode(copy, n, &d), RT_EPROTO);
		free(copy);
	}
	uint8_t *longer = malloc(b.len + 1);
	memcpy(longer, b.data, b.len);
	longer[b.len] = 0;
	assert_int_equal(rt_bus_decode(longer, b.len + 1, &d), RT_EPROTO);
	for (size_t i = 0; i < b.len; i++) {
		memcpy(longer, b.data, b.len);
		longer[i] ^= 0xff;
		int rc = rt_bus_decode(longer, b.len, &d);
		assert_true(rc == 0 || rc == RT_EPROTO);
	}
	free(longer);
	/* seq 0, bad node ids, unknown type */
	static const uint8_t zero_seq[] =
		"RTB1\x03\x00\x00\x00\x01n\x00\x00\x00\x00\x00\x00\x00\x00";
	assert_int_equal(rt_bus_decode(zero_seq, sizeof zero_seq - 1, &d), RT_EPROTO);
	static const uint8_t bad_node[] =
		"RTB1\x03\x00\x00\x00\x01:\x00\x00\x00\x00\x00\x00\x00\x01";
	assert_int_equal(rt_bus_decode(bad_node, sizeof bad_node - 1, &d), RT_EPROTO);
	static const uint8_t bad_type[] =
		"RTB1\x09\x00\x00\x00\x01n\x00\x00\x00\x00\x00\x00\x00\x01";
	assert_int_equal(rt_bus_decode(bad_type, sizeof bad_type - 1, &d), RT_EPROTO);
	static const uint8_t ok_hb[] = "RTB1\x03\x00\x00\x00\x01n\x00\x00\x00\x00\x00\x00\x00\x01";
	assert_int_equal(rt_bus_decode(ok_hb, sizeof ok_hb - 1, &d), 0);
	/* a key with a NUL */
	struct rt_bus_msg k = {.type = RT_BUS_BROADCAST, .seq = 1};
	strcpy(k.node, "n");
	k.key = (struct rt_bus_str){(const uint8_t *)"a\0b", 3};
	k.v1 = (struct rt_bus_frame){1, S("x")};
	rt_buf_reset(&b);
	assert_int_equal(rt_bus_encode(&b, &k), RT_EINVAL);
	rt_buf_deinit(&b);
}

static void test_frame_split(void **state)
{
	size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		uint8_t *data = malloc(sizes[i] + 1);
		memset(data, 'a' + (int)i, sizes[i]);
		struct rt_frame *f = rt_ws_frame(RT_WS_BINARY, data, sizes[i]);
		uint8_t op;
		const uint8_t *p;
		size_t len;
		assert_int_equal(rt_bus_frame_split(f->data, f->len, &op, &p, &len), 0);
		assert_int_equal(op, RT_WS_BINARY);
		assert_int_equal(len, sizes[i]);
		assert_memory_equal(p, data, len);
		/* one byte short or long: refused */
		assert_int_equal(rt_bus_frame_split(f->data, f->len - 1, &op, &p, &len), RT_EPROTO);
		rt_frame_unref(f);
		free(data);
	}
	static const uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'x'};
	uint8_t op;
	const uint8_t *p;
	size_t len;
	assert_int_equal(rt_bus_frame_split(masked, sizeof masked, &op, &p, &len), RT_EPROTO);
	static const uint8_t not_fin[] = {0x01, 0x01, 'x'};
	assert_int_equal(rt_bus_frame_split(not_fin, sizeof not_fin, &op, &p, &len), RT_EPROTO);
}

static void test_peers_dedupe(void **state)
{
	struct rt_bus_peers ps;
	rt_bus_peers_init(&ps);
	struct rt_bus_peer *p, *q;
	/* a node's first message is next, whatever its number */
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 10, false, 1, &p), RT_BUS_SEEN_NEXT);
	assert_int_equal(p->origin, 1);
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 11, false, 2, &q), RT_BUS_SEEN_NEXT);
	assert_ptr_equal(p, q);
	assert_int_equal(p->heard_ms, 2);
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 11, false, 3, &q), RT_BUS_SEEN_DUP);
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 5, false, 3, &q), RT_BUS_SEEN_DUP);
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 14, false, 4, &q), RT_BUS_SEEN_GAP);
	assert_int_equal(p->lost, 2);
	/* heartbeats carry the last number: equal is fine, more is a gap */
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 14, true, 5, &q), RT_BUS_SEEN_DUP);
	assert_int_equal(p->heard_ms, 5);
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 16, true, 6, &q), RT_BUS_SEEN_GAP);
	assert_int_equal(p->lost, 4);
	assert_int_equal(rt_bus_peers_seen(&ps, "a", 17, false, 7, &q), RT_BUS_SEEN_NEXT);
	/* another node, another origin; removal and a new origin on return */
	assert_int_equal(rt_bus_peers_seen(&ps, "b", 1, false, 1, &q), RT_BUS_SEEN_NEXT);
	assert_int_equal(q->origin, 2);
	assert_int_equal(ps.n_peers, 2);
	rt_bus_peers_remove(&ps, q);
	assert_null(rt_bus_peers_find(&ps, "b"));
	assert_int_equal(rt_bus_peers_seen(&ps, "b", 1, false, 1, &q), RT_BUS_SEEN_NEXT);
	assert_int_equal(q->origin, 3);
	/* a peer known before anything was heard from it (seq 0): its first
	 * message is next, whatever its number */
	assert_int_equal(rt_bus_peers_seen(&ps, "c", 0, true, 1, &q), RT_BUS_SEEN_NEXT);
	assert_int_equal(q->last_seq, 0);
	assert_int_equal(rt_bus_peers_seen(&ps, "c", 40, false, 2, &q), RT_BUS_SEEN_NEXT);
	assert_int_equal(q->lost, 0);
	assert_int_equal(rt_bus_peers_seen(&ps, "c", 41, false, 2, &q), RT_BUS_SEEN_NEXT);
	/* a node started again under the same id: its STATE renumbers it */
	assert_int_equal(rt_bus_peers_seen(&ps, "c", 2, false, 3, &q), RT_BUS_SEEN_DUP);
	rt_bus_peers_restarted(&ps, "c", 1);
	assert_int_equal(rt_bus_peers_seen(&ps, "c", 1, false, 3, &q), RT_BUS_SEEN_NEXT);
	assert_int_equal(rt_bus_peers_seen(&ps, "c", 2, false, 3, &q), RT_BUS_SEEN_NEXT);
	rt_bus_peers_restarted(&ps, "c", 3); /* above what was seen: nothing to do */
	assert_int_equal(q->last_seq, 2);
	rt_bus_peers_restarted(&ps, "unknown", 1);
	assert_null(rt_bus_peers_find(&ps, "unknown"));
	/* bounded */
	char name[16];
	for (unsigned i = ps.n_peers; i < RT_BUS_MAX_PEERS; i++) {
		snprintf(name, sizeof name, "x%u", i);
		assert_int_equal(rt_bus_peers_seen(&ps, name, 1, false, 1, &q), RT_BUS_SEEN_NEXT);
	}
	assert_int_equal(rt_bus_peers_seen(&ps, "one-too-many", 1, false, 1, &q), RT_BUS_SEEN_FULL);
	assert_null(q);
	rt_bus_peers_deinit(&ps);
	assert_int_equal(ps.n_peers, 0);
}

static void test_url(void **state)
{
	struct rt_bus_url u;
	assert_int_equal(rt_bus_url_parse("redis://127.0.0.1:6380", &u), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.password, "");
	assert_int_equal(rt_bus_url_parse("redis://localhost", &u), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_int_equal(rt_bus_url_parse("redis://:s3cret@h:1/2", &u), 0);
	assert_string_equal(u.password, "s3cret");
	assert_string_equal(u.user, "");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.db, 2);
	assert_int_equal(rt_bus_url_parse("redis://bob:pw@[::1]:7000/", &u), 0);
	assert_string_equal(u.user, "bob");
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 7000);
	const char *bad[] = {"http://h",	 "redis://",	  "redis://h:",	 "redis://h:0",
			     "redis://h:65536",	 "redis://h:12x", "redis://h/x", "redis://[::1",
			     "redis://nopass@h", "redis://[::1]x"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(rt_bus_url_parse(bad[i], &u), RT_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broadcast_round_trip),
		cmocka_unit_test(test_presence_round_trip),
		cmocka_unit_test(test_heartbeat_and_state),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_frame_split),
		cmocka_unit_test(test_peers_dedupe),
		cmocka_unit_test(test_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
