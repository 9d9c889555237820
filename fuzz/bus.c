/*
 * Fuzz target: the messages between nodes (src/cluster/bus.h), as they
 * arrive from Redis.
 *
 * Input layout:
 *   byte 0 % 3 == 0   the rest is one bus message: decoded; when it decodes,
 *                     every pointer lies inside the input, it encodes again
 *                     to the same bytes, and a broadcast's frames rebuild
 *   byte 0 % 3 == 1   the rest is a server WebSocket frame to split
 *   byte 0 % 3 == 2   the rest is a Redis URL (NUL-terminated copy)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/bus.h"
#include "net/ws.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static bool inside(const struct rt_bus_str *s, const uint8_t *data, size_t size)
{
	return !s->data || (s->data >= data && s->data + s->len <= data + size);
}

static void one_message(const uint8_t *data, size_t size)
{
	struct rt_bus_msg m;
	if (rt_bus_decode(data, size, &m))
		return;
	CHECK(inside(&m.key, data, size) && inside(&m.topic, data, size) &&
	      inside(&m.pkey, data, size) && inside(&m.join, data, size) &&
	      inside(&m.leave, data, size) && inside(&m.v1.payload, data, size) &&
	      inside(&m.v2.payload, data, size));
	CHECK(rt_bus_node_valid(m.node, strlen(m.node)));
	struct rt_buf b;
	rt_buf_init(&b);
	CHECK(rt_bus_encode(&b, &m) == 0);
	CHECK(b.len == size && !memcmp(b.data, data, size));
	rt_buf_deinit(&b);
	if (m.type == RT_BUS_BROADCAST && m.v1.payload.data) {
		struct rt_frame *f = rt_ws_frame((enum rt_ws_opcode)m.v1.opcode, m.v1.payload.data,
						 m.v1.payload.len);
		uint8_t op;
		const uint8_t *p;
		size_t len;
		CHECK(rt_bus_frame_split(f->data, f->len, &op, &p, &len) == 0);
		CHECK(op == m.v1.opcode && len == m.v1.payload.len);
		rt_frame_unref(f);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *rest = data + 1;
	size_t n = size - 1;
	switch (data[0] % 3) {
	case 0: one_message(rest, n); break;
	case 1: {
		uint8_t op;
		const uint8_t *p;
		size_t len;
		if (!rt_bus_frame_split(rest, n, &op, &p, &len))
			CHECK(p >= rest && p + len == rest + n);
		break;
	}
	default: {
		char *url = malloc(n + 1);
		memcpy(url, rest, n);
		url[n] = '\0';
		struct rt_bus_url u;
		if (!rt_bus_url_parse(url, &u))
			CHECK(u.port > 0 && u.port <= 65535 && u.host[0]);
		free(url);
		break;
	}
	}
	return 0;
}
