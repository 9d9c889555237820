#include "cluster/bus.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"

#define MAGIC  "RTB1"
#define ABSENT UINT32_MAX

bool rt_bus_node_valid(const char *s, size_t len)
{
	if (!len || len > RT_BUS_NODE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '_' && c != '-')
			return false;
	}
	return true;
}

/* ---- encoding ---- */

static void put_u32(struct rt_buf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	rt_buf_append(b, x, 4);
}

static void put_u64(struct rt_buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static void put_str(struct rt_buf *b, const struct rt_bus_str *s)
{
	if (!s->data) {
		put_u32(b, ABSENT);
		return;
	}
	put_u32(b, (uint32_t)s->len);
	rt_buf_append(b, s->data, s->len);
}

static void put_frame(struct rt_buf *b, const struct rt_bus_frame *f)
{
	rt_buf_append_byte(b, f->payload.data ? f->opcode : 0);
	put_str(b, &f->payload);
}

static bool key_ok(const struct rt_bus_str *s)
{
	return s->data && s->len && s->len <= RT_BUS_KEY_MAX && !memchr(s->data, '\0', s->len);
}

static bool frame_ok(const struct rt_bus_frame *f)
{
	if (!f->payload.data)
		return true;
	return (f->opcode == 1 || f->opcode == 2) && f->payload.len < RT_BUS_MAX_BYTES;
}

static bool opt_ok(const struct rt_bus_str *s)
{
	return !s->data || s->len < RT_BUS_MAX_BYTES;
}

int rt_bus_encode(struct rt_buf *out, const struct rt_bus_msg *m)
{
	if (!rt_bus_node_valid(m->node, strlen(m->node)))
		return RT_EINVAL;
	switch (m->type) {
	case RT_BUS_BROADCAST:
		if (!key_ok(&m->key) || !frame_ok(&m->v1) || !frame_ok(&m->v2) ||
		    (!m->v1.payload.data && !m->v2.payload.data))
			return RT_EINVAL;
		break;
	case RT_BUS_PRESENCE:
		if (!key_ok(&m->key) || !key_ok(&m->topic) || !key_ok(&m->pkey) ||
		    !opt_ok(&m->join) || !opt_ok(&m->leave))
			return RT_EINVAL;
		break;
	case RT_BUS_HEARTBEAT:
	case RT_BUS_STATE: break;
	default: return RT_EINVAL;
	}
	rt_buf_append(out, MAGIC, 4);
	rt_buf_append_byte(out, (uint8_t)m->type);
	struct rt_bus_str node = {(const uint8_t *)m->node, strlen(m->node)};
	put_str(out, &node);
	put_u64(out, m->seq);
	if (m->type == RT_BUS_BROADCAST) {
		put_str(out, &m->key);
		put_frame(out, &m->v1);
		put_frame(out, &m->v2);
	} else if (m->type == RT_BUS_PRESENCE) {
		put_str(out, &m->key);
		put_str(out, &m->topic);
		put_u64(out, m->chan_id);
		put_str(out, &m->pkey);
		put_str(out, &m->join);
		put_str(out, &m->leave);
	}
	return 0;
}

/* ---- decoding ---- */

struct reader {
	const uint8_t *p, *end;
	bool is_bad;
};

static uint64_t get_n(struct reader *r, unsigned n)
{
	if (r->is_bad || (size_t)(r->end - r->p) < n) {
		r->is_bad = true;
		return 0;
	}
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n;
	return v;
}

static struct rt_bus_str get_str(struct reader *r)
{
	struct rt_bus_str s = {NULL, 0};
	uint32_t len = (uint32_t)get_n(r, 4);
	if (r->is_bad || len == ABSENT)
		return s;
	if ((size_t)(r->end - r->p) < len) {
		r->is_bad = true;
		return s;
	}
	s.data = r->p;
	s.len = len;
	r->p += len;
	return s;
}

static struct rt_bus_frame get_frame(struct reader *r)
{
	struct rt_bus_frame f = {0};
	f.opcode = (uint8_t)get_n(r, 1);
	f.payload = get_str(r);
	if (!frame_ok(&f) || (!f.payload.data && f.opcode))
		r->is_bad = true;
	return f;
}

int rt_bus_decode(const uint8_t *data, size_t data_len, struct rt_bus_msg *out)
{
	memset(out, 0, sizeof *out);
	if (data_len < 5 || data_len > RT_BUS_MAX_BYTES || memcmp(data, MAGIC, 4))
		return RT_EPROTO;
	struct reader r = {data + 4, data + data_len, false};
	out->type = (enum rt_bus_type)get_n(&r, 1);
	struct rt_bus_str node = get_str(&r);
	if (r.is_bad || !node.data || !rt_bus_node_valid((const char *)node.data, node.len))
		return RT_EPROTO;
	memcpy(out->node, node.data, node.len);
	out->node[node.len] = '\0';
	out->seq = get_n(&r, 8);
	switch (out->type) {
	case RT_BUS_BROADCAST:
		out->key = get_str(&r);
		out->v1 = get_frame(&r);
		out->v2 = get_frame(&r);
		if (!r.is_bad &&
		    (!key_ok(&out->key) || (!out->v1.payload.data && !out->v2.payload.data)))
			r.is_bad = true;
		break;
	case RT_BUS_PRESENCE:
		out->key = get_str(&r);
		out->topic = get_str(&r);
		out->chan_id = get_n(&r, 8);
		out->pkey = get_str(&r);
		out->join = get_str(&r);
		out->leave = get_str(&r);
		if (!r.is_bad &&
		    (!key_ok(&out->key) || !key_ok(&out->topic) || !key_ok(&out->pkey)))
			r.is_bad = true;
		break;
	case RT_BUS_HEARTBEAT:
	case RT_BUS_STATE: break;
	default: return RT_EPROTO;
	}
	if (r.is_bad || r.p != r.end || !out->seq)
		return RT_EPROTO;
	return 0;
}

int rt_bus_frame_split(const uint8_t *frame, size_t frame_len, uint8_t *opcode,
		       const uint8_t **payload, size_t *payload_len)
{
	if (frame_len < 2 || (frame[0] & 0x70) || !(frame[0] & 0x80) || (frame[1] & 0x80))
		return RT_EPROTO;
	size_t hdr = 2;
	uint64_t len = frame[1] & 0x7f;
	if (len == 126) {
		if (frame_len < 4)
			return RT_EPROTO;
		len = (uint64_t)frame[2] << 8 | frame[3];
		hdr = 4;
	} else if (len == 127) {
		if (frame_len < 10)
			return RT_EPROTO;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | frame[2 + i];
		hdr = 10;
	}
	if (len != frame_len - hdr)
		return RT_EPROTO;
	*opcode = frame[0] & 0x0f;
	*payload = frame + hdr;
	*payload_len = (size_t)len;
	return 0;
}

/* ---- peers ---- */

void rt_bus_peers_init(struct rt_bus_peers *ps)
{
	memset(ps, 0, sizeof *ps);
	ps->next_origin = 1;
}

void rt_bus_peers_deinit(struct rt_bus_peers *ps)
{
	while (ps->head)
		rt_bus_peers_remove(ps, ps->head);
}

struct rt_bus_peer *rt_bus_peers_find(struct rt_bus_peers *ps, const char *node)
{
	for (struct rt_bus_peer *p = ps->head; p; p = p->next)
		if (!strcmp(p->node, node))
			return p;
	return NULL;
}

enum rt_bus_seen rt_bus_peers_seen(struct rt_bus_peers *ps, const char *node, uint64_t seq,
				   bool is_heartbeat, uint64_t now_ms, struct rt_bus_peer **peer)
{
	struct rt_bus_peer *p = rt_bus_peers_find(ps, node);
	*peer = p;
	if (!p) {
		if (ps->n_peers >= RT_BUS_MAX_PEERS || !rt_bus_node_valid(node, strlen(node)))
			return RT_BUS_SEEN_FULL;
		p = rt_xcalloc(1, sizeof *p);
		snprintf(p->node, sizeof p->node, "%s", node);
		p->origin = ps->next_origin++;
		p->last_seq = seq;
		p->heard_ms = now_ms;
		p->next = ps->head;
		ps->head = p;
		ps->n_peers++;
		*peer = p;
		return RT_BUS_SEEN_NEXT;
	}
	p->heard_ms = now_ms;
	if (!p->last_seq) { /* known (its state was read) but nothing heard yet */
		p->last_seq = seq;
		return is_heartbeat ? RT_BUS_SEEN_DUP : RT_BUS_SEEN_NEXT;
	}
	if (is_heartbeat) {
		if (seq <= p->last_seq)
			return RT_BUS_SEEN_DUP;
		p->lost += seq - p->last_seq;
		p->last_seq = seq;
		return RT_BUS_SEEN_GAP;
	}
	if (seq <= p->last_seq)
		return RT_BUS_SEEN_DUP;
	enum rt_bus_seen r = seq == p->last_seq + 1 ? RT_BUS_SEEN_NEXT : RT_BUS_SEEN_GAP;
	if (r == RT_BUS_SEEN_GAP)
		p->lost += seq - p->last_seq - 1;
	p->last_seq = seq;
	return r;
}

void rt_bus_peers_restarted(struct rt_bus_peers *ps, const char *node, uint64_t seq)
{
	struct rt_bus_peer *p = rt_bus_peers_find(ps, node);
	if (p && seq && seq <= p->last_seq)
		p->last_seq = seq - 1;
}

void rt_bus_peers_remove(struct rt_bus_peers *ps, struct rt_bus_peer *peer)
{
	for (struct rt_bus_peer **pp = &ps->head; *pp; pp = &(*pp)->next) {
		if (*pp == peer) {
			*pp = peer->next;
			ps->n_peers--;
			free(peer);
			return;
		}
	}
}

/* ---- URL ---- */

static int copy_part(char *dst, size_t cap, const char *s, size_t len)
{
	if (len >= cap)
		return RT_EINVAL;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

int rt_bus_url_parse(const char *url, struct rt_bus_url *out)
{
	memset(out, 0, sizeof *out);
	out->port = 6379;
	static const char scheme[] = "redis://";
	if (strncmp(url, scheme, sizeof scheme - 1))
		return RT_EINVAL;
	const char *p = url + sizeof scheme - 1;
	const char *slash = strchr(p, '/');
	const char *end = slash ? slash : p + strlen(p);
	const char *at = memrchr(p, '@', (size_t)(end - p));
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (!colon)
			return RT_EINVAL;
		if (copy_part(out->user, sizeof out->user, p, (size_t)(colon - p)) ||
		    copy_part(out->password, sizeof out->password, colon + 1,
			      (size_t)(at - colon - 1)))
			return RT_EINVAL;
		p = at + 1;
	}
	const char *host_end;
	const char *port_at = NULL;
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));
		if (!close)
			return RT_EINVAL;
		if (copy_part(out->host, sizeof out->host, p + 1, (size_t)(close - p - 1)))
			return RT_EINVAL;
		host_end = close + 1;
		if (host_end < end) {
			if (*host_end != ':')
				return RT_EINVAL;
			port_at = host_end + 1;
		}
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		host_end = colon ? colon : end;
		if (copy_part(out->host, sizeof out->host, p, (size_t)(host_end - p)))
			return RT_EINVAL;
		if (colon)
			port_at = colon + 1;
	}
	if (!out->host[0])
		return RT_EINVAL;
	if (port_at) {
		if (port_at == end)
			return RT_EINVAL;
		long port = 0;
		for (const char *q = port_at; q < end; q++) {
			if (!isdigit((unsigned char)*q) || (port = port * 10 + (*q - '0')) > 65535)
				return RT_EINVAL;
		}
		if (!port)
			return RT_EINVAL;
		out->port = (int)port;
	}
	if (slash && slash[1]) {
		long db = 0;
		for (const char *q = slash + 1; *q; q++) {
			if (!isdigit((unsigned char)*q) || (db = db * 10 + (*q - '0')) > 100000)
				return RT_EINVAL;
		}
		out->db = (int)db;
	}
	if (!strcmp(out->host, "localhost"))
		snprintf(out->host, sizeof out->host, "127.0.0.1");
	return 0;
}
