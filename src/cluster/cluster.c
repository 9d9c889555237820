#include "cluster/cluster.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cluster/bus.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/rand.h"
#include "net/ws.h"
#include "proto/phx.h"
#include "realtime/hub.h"
#include "realtime/presence.h"
#include "store/store.h"

#define BACKOFF_MIN_MS		  100
#define BACKOFF_MAX_MS		  5000
#define MAX_UNANSWERED_HEARTBEATS 3
#define CONNECT_TIMEOUT_MS	  2000
#define HELD_MAX_BYTES		  (64u << 20)

enum item_kind { IT_PUBLISH, IT_PRESENCE, IT_HEARTBEAT };

/* One message queued for Redis: the bus message, and for presence the
 * hash field to set (value) or delete (value NULL). */
struct item {
	enum item_kind kind;
	char *msg;
	size_t msg_len;
	uint64_t seq;
	char *field, *value;
	size_t value_len;
	struct item *next;
};

/* A diff of a syncing peer, held until its state has been read. */
struct held {
	struct held *next;
	size_t len;
	uint8_t data[];
};

struct peer_data {
	struct held *head, **tail;
	size_t n_held, held_bytes;
	uint64_t sync_gen;
};

struct rt_cluster {
	struct rt_realtime *rt;
	const struct rt_store *store;
	struct rt_bus_url url;
	char node[RT_BUS_NODE_MAX + 1];
	char *prefix;
	char *bus_chan;	 /* PREFIX:bus */
	char *nodes_key; /* PREFIX:nodes */
	char *own_hash;	 /* PREFIX:presence:NODE */
	unsigned heartbeat_ms, node_ttl_ms;
	size_t max_pending;

	/* shared with the publishing threads, under mu */
	pthread_mutex_t mu;
	struct item *q_head, **q_tail;
	size_t pending_bytes; /* queued and in flight */
	uint64_t seq;	      /* last sequence number taken */
	bool is_running;      /* the wake-up handle is alive */
	atomic_bool is_up;
	atomic_bool needs_dump; /* a presence change was dropped: write the whole state again */

	/* the cluster thread */
	pthread_t thread;
	bool has_thread;
	uv_loop_t loop;
	uv_async_t wake, stop;
	uv_timer_t tick, retry;
	uv_timer_t watchdog; /* a connection attempt that neither succeeds nor fails */
	bool is_stopping;
	bool is_loop_done; /* the thread ran and closed every handle */
	redisAsyncContext *cmd, *sub;
	bool is_cmd_ready, is_subscribed;
	unsigned backoff_ms;
	unsigned unanswered; /* heartbeats without a reply */
	uint64_t sync_gen;
	struct rt_bus_peers peers;

	/* metrics (any thread) */
	atomic_uint_fast64_t n_published, n_received, n_dropped_down, n_dropped_full, n_dups,
		n_lost, n_reconnects, n_invalid, n_peers_expired, n_syncs;
	atomic_uint n_peers;
};

static uint64_t now_ms(void)
{
	return rt_mono_ms();
}

/* ---- queueing (any thread) ---- */

static void item_free(struct item *it)
{
	free(it->msg);
	free(it->field);
	free(it->value);
	free(it);
}

/* Takes the next sequence number for it, patches it into the encoded
 * message and queues it; or drops it (counted). Takes ownership of it. */
static void put_seq(struct rt_cluster *c, struct item *it);

static void enqueue(struct rt_cluster *c, struct item *it)
{
	pthread_mutex_lock(&c->mu);
	if (!c->is_running || !atomic_load(&c->is_up)) {
		pthread_mutex_unlock(&c->mu);
		atomic_fetch_add(&c->n_dropped_down, 1);
		item_free(it);
		return;
	}
	size_t size = it->msg_len + it->value_len;
	if (it->kind != IT_HEARTBEAT && c->pending_bytes + size > c->max_pending) {
		pthread_mutex_unlock(&c->mu);
		atomic_fetch_add(&c->n_dropped_full, 1);
		if (it->kind == IT_PRESENCE) /* the others would miss it: the whole state, later */
			atomic_store(&c->needs_dump, true);
		item_free(it);
		return;
	}
	if (it->kind == IT_HEARTBEAT) {
		it->seq = c->seq;
	} else {
		it->seq = ++c->seq;
	}
	put_seq(c, it);
	c->pending_bytes += size;
	bool was_empty = !c->q_head;
	*c->q_tail = it;
	c->q_tail = &it->next;
	if (was_empty)
		uv_async_send(&c->wake);
	pthread_mutex_unlock(&c->mu);
}

static struct item *item_new(enum item_kind kind, struct rt_buf *encoded)
{
	struct item *it = rt_xcalloc(1, sizeof *it);
	it->kind = kind;
	it->msg = rt_buf_detach(encoded, &it->msg_len);
	return it;
}

static bool frame_part(const struct rt_frame *f, struct rt_bus_frame *out)
{
	memset(out, 0, sizeof *out);
	if (!f)
		return true;
	return !rt_bus_frame_split(f->data, f->len, &out->opcode, &out->payload.data,
				   &out->payload.len);
}

/* The hub's remote side: a broadcast published on this node. */
static void hub_send(void *ctx, struct rt_msg *m)
{
	struct rt_cluster *c = ctx;
	if (m->kind != RT_MSG_BROADCAST)
		return;
	if (!atomic_load(&c->is_up)) {
		atomic_fetch_add(&c->n_dropped_down, 1);
		return;
	}
	struct rt_bus_msg b = {.type = RT_BUS_BROADCAST, .seq = 1};
	memcpy(b.node, c->node, sizeof b.node);
	b.key.data = (const uint8_t *)m->key;
	b.key.len = strlen(m->key);
	if (!frame_part(m->v1, &b.v1) || !frame_part(m->v2, &b.v2)) {
		atomic_fetch_add(&c->n_invalid, 1);
		return;
	}
	struct rt_buf out;
	rt_buf_init(&out);
	if (rt_bus_encode(&out, &b)) {
		rt_buf_deinit(&out);
		atomic_fetch_add(&c->n_invalid, 1);
		return;
	}
	enqueue(c, item_new(IT_PUBLISH, &out));
}

static char *presence_field(const char *key, uint64_t chan_id)
{
	size_t n = strlen(key) + 24;
	char *f = rt_xmalloc(n);
	snprintf(f, n, "%s\n%llu", key, (unsigned long long)chan_id);
	return f;
}

static char *presence_value(const char *topic, const char *pkey, const json_t *meta, size_t *len)
{
	json_t *v = json_pack("{s:s,s:s,s:O}", "t", topic, "k", pkey, "m", meta);
	char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	json_decref(v);
	*len = s ? strlen(s) : 0;
	return s;
}

/* The presence registry's remote side: a change of this node's entries
 * (registry lock held). */
static void presence_send(void *ctx, const char *key, const char *topic, uint64_t chan_id,
			  const char *pkey, const json_t *join_meta, const json_t *leave_meta)
{
	struct rt_cluster *c = ctx;
	if (!atomic_load(&c->is_up)) {
		atomic_fetch_add(&c->n_dropped_down, 1);
		return;
	}
	char *join = join_meta ? json_dumps(join_meta, JSON_COMPACT) : NULL;
	char *leave = leave_meta ? json_dumps(leave_meta, JSON_COMPACT) : NULL;
	struct rt_bus_msg b = {.type = RT_BUS_PRESENCE, .seq = 1, .chan_id = chan_id};
	memcpy(b.node, c->node, sizeof b.node);
	b.key = (struct rt_bus_str){(const uint8_t *)key, strlen(key)};
	b.topic = (struct rt_bus_str){(const uint8_t *)topic, strlen(topic)};
	b.pkey = (struct rt_bus_str){(const uint8_t *)pkey, strlen(pkey)};
	if (join)
		b.join = (struct rt_bus_str){(const uint8_t *)join, strlen(join)};
	if (leave)
		b.leave = (struct rt_bus_str){(const uint8_t *)leave, strlen(leave)};
	struct rt_buf out;
	rt_buf_init(&out);
	int rc = rt_bus_encode(&out, &b);
	free(join);
	free(leave);
	if (rc) {
		rt_buf_deinit(&out);
		atomic_fetch_add(&c->n_invalid, 1);
		return;
	}
	struct item *it = item_new(IT_PRESENCE, &out);
	it->field = presence_field(key, chan_id);
	if (join_meta)
		it->value = presence_value(topic, pkey, join_meta, &it->value_len);
	enqueue(c, it);
}

/* ---- Redis commands (cluster thread) ---- */

static void cmd_argv(struct rt_cluster *c, redisCallbackFn *fn, void *priv, int argc,
		     const char **argv, const size_t *lens)
{
	if (c->cmd)
		redisAsyncCommandArgv(c->cmd, fn, priv, argc, argv, lens);
}

/* Sends argv with NUL-terminated strings. */
static void cmd_strs(struct rt_cluster *c, redisCallbackFn *fn, void *priv, int argc,
		     const char **argv)
{
	size_t lens[16];
	for (int i = 0; i < argc && i < 16; i++)
		lens[i] = strlen(argv[i]);
	cmd_argv(c, fn, priv, argc, argv, lens);
}

static void release_pending(struct rt_cluster *c, size_t n)
{
	pthread_mutex_lock(&c->mu);
	c->pending_bytes = c->pending_bytes > n ? c->pending_bytes - n : 0;
	pthread_mutex_unlock(&c->mu);
}

/* The reply that ends one item: privdata is its size. */
static void on_sent(redisAsyncContext *ac, void *r, void *priv)
{
	struct rt_cluster *c = ac->data;
	release_pending(c, (size_t)(uintptr_t)priv);
	redisReply *reply = r;
	if (reply && reply->type == REDIS_REPLY_ERROR)
		rt_warn("cluster: redis: %s", reply->str);
}

static void on_heartbeat(redisAsyncContext *ac, void *r, void *priv)
{
	struct rt_cluster *c = ac->data;
	if (r && c->unanswered)
		c->unanswered--;
}

static void expire_str(struct rt_cluster *c, char *out, size_t cap, unsigned mult)
{
	snprintf(out, cap, "%u", c->node_ttl_ms * mult);
}

static void send_item(struct rt_cluster *c, struct item *it)
{
	size_t size = it->msg_len + it->value_len;
	void *priv = (void *)(uintptr_t)size;
	const char *pub[3] = {"PUBLISH", c->bus_chan, it->msg};
	size_t pub_len[3] = {7, strlen(c->bus_chan), it->msg_len};
	if (it->kind == IT_PUBLISH) {
		cmd_argv(c, on_sent, priv, 3, pub, pub_len);
		atomic_fetch_add(&c->n_published, 1);
		return;
	}
	if (it->kind == IT_HEARTBEAT) {
		char score[32], ttl[32];
		snprintf(score, sizeof score, "%lld",
			 (long long)rt_wall_ms() + (long long)c->node_ttl_ms);
		expire_str(c, ttl, sizeof ttl, 2);
		char now[32];
		snprintf(now, sizeof now, "%lld", (long long)rt_wall_ms());
		const char *zadd[4] = {"ZADD", c->nodes_key, score, c->node};
		const char *prune[4] = {"ZREMRANGEBYSCORE", c->nodes_key, "-inf", now};
		const char *exp[3] = {"PEXPIRE", c->own_hash, ttl};
		cmd_strs(c, NULL, NULL, 4, zadd);
		cmd_strs(c, NULL, NULL, 4, prune);
		cmd_strs(c, NULL, NULL, 3, exp);
		cmd_argv(c, on_sent, priv, 3, pub, pub_len);
		cmd_strs(c, on_heartbeat, NULL, 1, (const char *[]){"PING"});
		c->unanswered++;
		return;
	}
	/* presence: the hash and the diff in one transaction */
	char seq[32], ttl[32];
	snprintf(seq, sizeof seq, "%llu", (unsigned long long)it->seq);
	expire_str(c, ttl, sizeof ttl, 2);
	cmd_strs(c, NULL, NULL, 1, (const char *[]){"MULTI"});
	if (it->value) {
		const char *a[4] = {"HSET", c->own_hash, it->field, it->value};
		size_t l[4] = {4, strlen(c->own_hash), strlen(it->field), it->value_len};
		cmd_argv(c, NULL, NULL, 4, a, l);
	} else {
		cmd_strs(c, NULL, NULL, 3, (const char *[]){"HDEL", c->own_hash, it->field});
	}
	cmd_strs(c, NULL, NULL, 4, (const char *[]){"HSET", c->own_hash, "~seq", seq});
	cmd_strs(c, NULL, NULL, 3, (const char *[]){"PEXPIRE", c->own_hash, ttl});
	cmd_argv(c, NULL, NULL, 3, pub, pub_len);
	cmd_strs(c, on_sent, priv, 1, (const char *[]){"EXEC"});
	atomic_fetch_add(&c->n_published, 1);
}

static void drain(struct rt_cluster *c)
{
	pthread_mutex_lock(&c->mu);
	struct item *it = c->q_head;
	c->q_head = NULL;
	c->q_tail = &c->q_head;
	pthread_mutex_unlock(&c->mu);
	while (it) {
		struct item *next = it->next;
		if (c->cmd && c->is_cmd_ready)
			send_item(c, it);
		else
			release_pending(c, it->msg_len + it->value_len);
		item_free(it);
		it = next;
	}
}

static void on_wake(uv_async_t *h)
{
	drain(h->data);
}

/* ---- peers: receiving ---- */

static struct peer_data *pdata(struct rt_bus_peer *p)
{
	if (!p->user) {
		struct peer_data *d = rt_xcalloc(1, sizeof *d);
		d->tail = &d->head;
		p->user = d;
	}
	return p->user;
}

static void held_clear(struct rt_bus_peer *p)
{
	struct peer_data *d = p->user;
	if (!d)
		return;
	while (d->head) {
		struct held *h = d->head;
		d->head = h->next;
		free(h);
	}
	d->tail = &d->head;
	d->n_held = d->held_bytes = 0;
}

static void peer_forget(struct rt_cluster *c, struct rt_bus_peer *p)
{
	rt_presence_remote_mark(c->rt->presence, p->origin);
	rt_presence_remote_sweep(c->rt->presence, c->rt->hub, p->origin);
	held_clear(p);
	free(p->user);
	rt_bus_peers_remove(&c->peers, p);
	atomic_store(&c->n_peers, c->peers.n_peers);
}

static json_t *json_field(const struct rt_bus_str *s)
{
	if (!s->data)
		return NULL;
	json_t *v = json_loadb((const char *)s->data, s->len, JSON_REJECT_DUPLICATES, NULL);
	if (v && !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

static char *str_dup(const struct rt_bus_str *s)
{
	return rt_xstrndup((const char *)s->data, s->len);
}

/* Applies a decoded presence diff of peer p. Returns false when it is
 * malformed. */
static bool apply_presence(struct rt_cluster *c, struct rt_bus_peer *p, const struct rt_bus_msg *m)
{
	json_t *join = json_field(&m->join);
	json_t *leave = json_field(&m->leave);
	bool ok = (join || !m->join.data) && (leave || !m->leave.data) && (join || leave);
	if (ok) {
		char *key = str_dup(&m->key), *topic = str_dup(&m->topic),
		     *pkey = str_dup(&m->pkey);
		rt_presence_remote_put(c->rt->presence, c->rt->hub, p->origin, key, topic,
				       m->chan_id, pkey, join);
		free(key);
		free(topic);
		free(pkey);
	}
	json_decref(join);
	json_decref(leave);
	return ok;
}

static void deliver_broadcast(struct rt_cluster *c, const struct rt_bus_msg *m)
{
	char *key = str_dup(&m->key);
	struct rt_msg *msg = rt_msg_new(RT_MSG_BROADCAST, key);
	free(key);
	if (m->v1.payload.data)
		msg->v1 = rt_ws_frame((enum rt_ws_opcode)m->v1.opcode, m->v1.payload.data,
				      m->v1.payload.len);
	if (m->v2.payload.data)
		msg->v2 = rt_ws_frame((enum rt_ws_opcode)m->v2.opcode, m->v2.payload.data,
				      m->v2.payload.len);
	/* counted in rtsync_cluster_received_total, not as a broadcast published here */
	rt_hub_publish_any(c->rt->hub, msg); /* is_shared false: never sent back */
	rt_msg_unref(msg);
}

static void start_sync(struct rt_cluster *c, const char *node);

static void hold(struct rt_cluster *c, struct rt_bus_peer *p, const uint8_t *data, size_t len)
{
	struct peer_data *d = pdata(p);
	if (d->n_held >= RT_CLUSTER_MAX_HELD || d->held_bytes + len > HELD_MAX_BYTES) {
		/* too much while its state is read: read it again, later */
		held_clear(p);
		start_sync(c, p->node);
		return;
	}
	struct held *h = rt_xmalloc(sizeof *h + len);
	h->next = NULL;
	h->len = len;
	memcpy(h->data, data, len);
	*d->tail = h;
	d->tail = &h->next;
	d->n_held++;
	d->held_bytes += len;
}

static void on_bus(struct rt_cluster *c, const uint8_t *data, size_t len)
{
	struct rt_bus_msg m;
	if (rt_bus_decode(data, len, &m)) {
		atomic_fetch_add(&c->n_invalid, 1);
		return;
	}
	if (!strcmp(m.node, c->node))
		return; /* ours: delivered locally when published */
	struct rt_bus_peer *p;
	if (m.type == RT_BUS_STATE) /* perhaps a new process under the same id */
		rt_bus_peers_restarted(&c->peers, m.node, m.seq);
	bool is_new = !rt_bus_peers_find(&c->peers, m.node);
	enum rt_bus_seen seen = rt_bus_peers_seen(&c->peers, m.node, m.seq,
						  m.type == RT_BUS_HEARTBEAT, now_ms(), &p);
	atomic_store(&c->n_peers, c->peers.n_peers);
	if (seen == RT_BUS_SEEN_FULL) {
		atomic_fetch_add(&c->n_invalid, 1);
		return;
	}
	if (seen == RT_BUS_SEEN_DUP) {
		if (m.type != RT_BUS_HEARTBEAT)
			atomic_fetch_add(&c->n_dups, 1);
		return;
	}
	atomic_fetch_add(&c->n_received, 1);
	/* a node not known yet (it started, or came back after its TTL): its
	 * presence state first */
	if (is_new && m.type != RT_BUS_STATE)
		start_sync(c, p->node);
	if (seen == RT_BUS_SEEN_GAP) {
		/* lost messages: broadcasts are gone, presence is read again */
		atomic_fetch_add(&c->n_lost, 1);
		if (!p->is_syncing)
			start_sync(c, p->node);
	}
	switch (m.type) {
	case RT_BUS_BROADCAST: deliver_broadcast(c, &m); break;
	case RT_BUS_PRESENCE:
		if (p->is_syncing)
			hold(c, p, data, len);
		else if (!apply_presence(c, p, &m))
			atomic_fetch_add(&c->n_invalid, 1);
		break;
	case RT_BUS_STATE: start_sync(c, p->node); break;
	case RT_BUS_HEARTBEAT: break;
	}
}

/* ---- syncing a peer's presence state ---- */

struct sync_req {
	struct rt_cluster *c;
	char node[RT_BUS_NODE_MAX + 1];
	uint64_t gen;
};

static void on_state(redisAsyncContext *ac, void *r, void *priv)
{
	struct sync_req *req = priv;
	struct rt_cluster *c = req->c;
	redisReply *reply = r;
	struct rt_bus_peer *p = rt_bus_peers_find(&c->peers, req->node);
	if (!p || !p->is_syncing || !p->user || ((struct peer_data *)p->user)->sync_gen != req->gen)
		goto out;
	if (!reply || reply->type != REDIS_REPLY_ARRAY) {
		p->is_syncing = false; /* down: everyone is read again on reconnect */
		held_clear(p);
		goto out;
	}
	uint64_t state_seq = 0;
	rt_presence_remote_mark(c->rt->presence, p->origin);
	for (size_t i = 0; i + 1 < reply->elements; i += 2) {
		redisReply *f = reply->element[i], *v = reply->element[i + 1];
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		if (!strcmp(f->str, "~seq")) {
			state_seq = strtoull(v->str, NULL, 10);
			continue;
		}
		char *nl = memchr(f->str, '\n', f->len);
		json_t *val = json_loadb(v->str, v->len, 0, NULL);
		const char *topic = json_string_value(json_object_get(val, "t"));
		const char *pkey = json_string_value(json_object_get(val, "k"));
		json_t *meta = json_object_get(val, "m");
		if (nl && topic && pkey && json_is_object(meta) && nl > f->str &&
		    (size_t)(nl - f->str) <= RT_BUS_KEY_MAX && *topic && *pkey) {
			char *key = rt_xstrndup(f->str, (size_t)(nl - f->str));
			uint64_t chan_id = strtoull(nl + 1, NULL, 10);
			rt_presence_remote_put(c->rt->presence, c->rt->hub, p->origin, key, topic,
					       chan_id, pkey, meta);
			free(key);
		} else {
			atomic_fetch_add(&c->n_invalid, 1);
		}
		json_decref(val);
	}
	rt_presence_remote_sweep(c->rt->presence, c->rt->hub, p->origin);
	p->is_syncing = false;
	if (state_seq > p->last_seq)
		p->last_seq = state_seq;
	/* the diffs that came while it was read, newer than what it reflected */
	struct peer_data *d = p->user;
	struct held *h = d->head;
	d->head = NULL;
	d->tail = &d->head;
	d->n_held = d->held_bytes = 0;
	while (h) {
		struct held *next = h->next;
		struct rt_bus_msg m;
		if (!rt_bus_decode(h->data, h->len, &m) && m.seq > state_seq)
			apply_presence(c, p, &m);
		free(h);
		h = next;
	}
	atomic_fetch_add(&c->n_syncs, 1);
out:
	free(req);
}

static void start_sync(struct rt_cluster *c, const char *node)
{
	if (!c->cmd || !strcmp(node, c->node) || !rt_bus_node_valid(node, strlen(node)))
		return;
	struct rt_bus_peer *p = rt_bus_peers_find(&c->peers, node);
	if (!p) {
		rt_bus_peers_seen(&c->peers, node, 0, true, now_ms(), &p);
		if (!p)
			return;
		atomic_store(&c->n_peers, c->peers.n_peers);
	}
	struct peer_data *d = pdata(p);
	held_clear(p);
	p->is_syncing = true;
	d->sync_gen = ++c->sync_gen;
	struct sync_req *req = rt_xcalloc(1, sizeof *req);
	req->c = c;
	snprintf(req->node, sizeof req->node, "%s", node);
	req->gen = d->sync_gen;
	size_t n = strlen(c->prefix) + strlen(node) + 16;
	char *hash = rt_xmalloc(n);
	snprintf(hash, n, "%s:presence:%s", c->prefix, node);
	cmd_strs(c, on_state, req, 2, (const char *[]){"HGETALL", hash});
	free(hash);
}

static void on_nodes(redisAsyncContext *ac, void *r, void *priv)
{
	struct rt_cluster *c = ac->data;
	redisReply *reply = r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < reply->elements; i++)
		if (reply->element[i]->type == REDIS_REPLY_STRING)
			start_sync(c, reply->element[i]->str);
}

/* ---- going up: this node's whole state, then everyone else's ---- */

static void dump_entry(void *ctx, const char *key, const char *topic, uint64_t chan_id,
		       const char *pkey, const json_t *meta)
{
	struct rt_cluster *c = ctx;
	char *field = presence_field(key, chan_id);
	size_t vlen;
	char *value = presence_value(topic, pkey, meta, &vlen);
	if (value) {
		const char *a[4] = {"HSET", c->own_hash, field, value};
		size_t l[4] = {4, strlen(c->own_hash), strlen(field), vlen};
		cmd_argv(c, NULL, NULL, 4, a, l);
	}
	free(field);
	free(value);
}

struct dump_ctx {
	struct rt_cluster *c;
	struct item *state; /* the RT_BUS_STATE message that ends the dump */
};

static void dump_one(void *ctx, const char *key, const char *topic, uint64_t chan_id,
		     const char *pkey, const json_t *meta)
{
	struct dump_ctx *d = ctx;
	dump_entry(d->c, key, topic, chan_id, pkey, meta);
}

/* Still under the registry's lock after the last entry: the node goes up and
 * the state message takes its number, so every change after the dump is
 * queued, and numbered, after it. */
static void dump_done(void *ctx)
{
	struct dump_ctx *d = ctx;
	struct rt_cluster *c = d->c;
	pthread_mutex_lock(&c->mu);
	atomic_store(&c->is_up, true);
	d->state->seq = ++c->seq;
	pthread_mutex_unlock(&c->mu);
}

static void put_seq(struct rt_cluster *c, struct item *it)
{
	size_t seq_at = 4 + 1 + 4 + strlen(c->node);
	for (int i = 0; i < 8; i++)
		it->msg[seq_at + (size_t)i] = (char)(it->seq >> (56 - 8 * i));
}

/* Writes this node's whole presence state to its hash and announces it
 * (RT_BUS_STATE): the others read it again. Marks the node up. */
static void dump_state(struct rt_cluster *c)
{
	struct rt_bus_msg b = {.type = RT_BUS_STATE, .seq = 1};
	memcpy(b.node, c->node, sizeof b.node);
	struct rt_buf out;
	rt_buf_init(&out);
	rt_bus_encode(&out, &b);
	struct dump_ctx d = {c, item_new(IT_PUBLISH, &out)};

	cmd_strs(c, NULL, NULL, 1, (const char *[]){"MULTI"});
	cmd_strs(c, NULL, NULL, 2, (const char *[]){"DEL", c->own_hash});
	rt_presence_each_local(c->rt->presence, dump_one, dump_done, &d);
	put_seq(c, d.state);
	char seq[32], ttl[32], score[32];
	snprintf(seq, sizeof seq, "%llu", (unsigned long long)d.state->seq);
	expire_str(c, ttl, sizeof ttl, 2);
	snprintf(score, sizeof score, "%lld", (long long)rt_wall_ms() + (long long)c->node_ttl_ms);
	cmd_strs(c, NULL, NULL, 4, (const char *[]){"HSET", c->own_hash, "~seq", seq});
	cmd_strs(c, NULL, NULL, 3, (const char *[]){"PEXPIRE", c->own_hash, ttl});
	cmd_strs(c, NULL, NULL, 4, (const char *[]){"ZADD", c->nodes_key, score, c->node});
	const char *pub[3] = {"PUBLISH", c->bus_chan, d.state->msg};
	size_t pub_len[3] = {7, strlen(c->bus_chan), d.state->msg_len};
	cmd_argv(c, NULL, NULL, 3, pub, pub_len);
	cmd_strs(c, NULL, NULL, 1, (const char *[]){"EXEC"});
	item_free(d.state);
}

static void go_up(struct rt_cluster *c)
{
	dump_state(c);
	/* every live node's state */
	char now[32];
	snprintf(now, sizeof now, "%lld", (long long)rt_wall_ms());
	cmd_strs(c, on_nodes, NULL, 4,
		 (const char *[]){"ZRANGEBYSCORE", c->nodes_key, now, "+inf"});
	c->backoff_ms = 0;
	c->unanswered = 0;
	uv_timer_stop(&c->watchdog);
	rt_info("cluster: node %s connected to redis %s:%d", c->node, c->url.host, c->url.port);
}

/* ---- connections ---- */

static void schedule_retry(struct rt_cluster *c);

/* Frees a connection at once (its pending callbacks get NULL replies); the
 * pointer is cleared first, so its disconnect callback finds no match. */
static void drop_conn(redisAsyncContext **pp)
{
	redisAsyncContext *ac = *pp;
	*pp = NULL;
	if (ac)
		redisAsyncFree(ac);
}

static void go_down(struct rt_cluster *c, const char *why)
{
	bool was_up = atomic_exchange(&c->is_up, false);
	c->is_cmd_ready = c->is_subscribed = false;
	if (was_up)
		rt_warn("cluster: redis lost (%s); serving local clients only", why);
	for (struct rt_bus_peer *p = c->peers.head; p; p = p->next) {
		p->is_syncing = false;
		held_clear(p);
	}
	drop_conn(&c->cmd);
	drop_conn(&c->sub);
	drain(c); /* releases whatever was queued */
	schedule_retry(c);
}

static void check_up(struct rt_cluster *c)
{
	if (c->is_cmd_ready && c->is_subscribed && !atomic_load(&c->is_up))
		go_up(c);
}

static void on_subscribed(redisAsyncContext *ac, void *r, void *priv)
{
	struct rt_cluster *c = priv;
	redisReply *reply = r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	redisReply *kind = reply->element[0];
	if (kind->type != REDIS_REPLY_STRING)
		return;
	if (!strcmp(kind->str, "subscribe")) {
		c->is_subscribed = true;
		check_up(c);
	} else if (!strcmp(kind->str, "message") && reply->element[2]->type == REDIS_REPLY_STRING) {
		on_bus(c, (const uint8_t *)reply->element[2]->str, reply->element[2]->len);
	}
}

static void on_ready(redisAsyncContext *ac, void *r, void *priv)
{
	struct rt_cluster *c = ac->data;
	redisReply *reply = r;
	if (!reply)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		rt_error("cluster: redis refused the connection: %s", reply->str);
		redisAsyncDisconnect(ac);
		return;
	}
	if (ac == c->cmd) {
		c->is_cmd_ready = true;
		check_up(c);
	}
}

/* hiredis frees ac after either callback */
static void lost_conn(const redisAsyncContext *ac, const char *why)
{
	struct rt_cluster *c = ac->data;
	if (ac != c->cmd && ac != c->sub)
		return; /* one dropped on purpose */
	if (ac == c->cmd)
		c->cmd = NULL;
	else
		c->sub = NULL;
	if (!c->is_stopping)
		go_down(c, why);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK)
		lost_conn(ac, ac->errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	lost_conn(ac, status == REDIS_OK ? "closed" : ac->errstr);
}

static redisAsyncContext *open_one(struct rt_cluster *c)
{
	redisAsyncContext *ac = redisAsyncConnect(c->url.host, c->url.port);
	if (!ac)
		return NULL;
	if (ac->err || redisLibuvAttach(ac, &c->loop) != REDIS_OK) {
		rt_warn("cluster: cannot connect to redis %s:%d: %s", c->url.host, c->url.port,
			ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = c;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (c->url.password[0]) {
		if (c->url.user[0])
			redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", c->url.user,
					  c->url.password);
		else
			redisAsyncCommand(ac, NULL, NULL, "AUTH %s", c->url.password);
	}
	return ac;
}

/* libuv reports a refused connect as a poll error, which hiredis' adapter
 * ignores: an attempt that is not up in time is given up here. */
static void on_connect_timeout(uv_timer_t *t)
{
	struct rt_cluster *c = t->data;
	if (atomic_load(&c->is_up))
		return;
	drop_conn(&c->cmd);
	drop_conn(&c->sub);
	go_down(c, "connect timed out");
}

static void connect_now(struct rt_cluster *c)
{
	if (c->is_stopping || c->cmd || c->sub)
		return;
	atomic_fetch_add(&c->n_reconnects, 1);
	c->cmd = open_one(c);
	c->sub = c->cmd ? open_one(c) : NULL;
	if (!c->cmd || !c->sub) {
		drop_conn(&c->cmd);
		schedule_retry(c);
		return;
	}
	uv_timer_start(&c->watchdog, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
	char db[16];
	snprintf(db, sizeof db, "%d", c->url.db);
	redisAsyncCommand(c->cmd, on_ready, NULL, "SELECT %s", db);
	redisAsyncCommand(c->sub, on_subscribed, c, "SUBSCRIBE %s", c->bus_chan);
}

static void on_retry(uv_timer_t *t)
{
	connect_now(t->data);
}

static void schedule_retry(struct rt_cluster *c)
{
	if (c->is_stopping || c->cmd || c->sub || uv_is_active((uv_handle_t *)&c->retry))
		return;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
	uint32_t r;
	rt_rand_bytes(&r, sizeof r);
	/* full jitter over the upper half */
	uint64_t delay = c->backoff_ms / 2 + r % (c->backoff_ms / 2 + 1);
	uv_timer_start(&c->retry, on_retry, delay, 0);
}

static void on_tick(uv_timer_t *t)
{
	struct rt_cluster *c = t->data;
	uint64_t now = now_ms();
	struct rt_bus_peer *p = c->peers.head;
	while (p) {
		struct rt_bus_peer *next = p->next;
		if (now - p->heard_ms > c->node_ttl_ms) {
			rt_info("cluster: node %s silent for %u ms: its members leave", p->node,
				c->node_ttl_ms);
			atomic_fetch_add(&c->n_peers_expired, 1);
			peer_forget(c, p);
		}
		p = next;
	}
	if (!atomic_load(&c->is_up))
		return;
	if (c->unanswered >= MAX_UNANSWERED_HEARTBEATS) {
		go_down(c, "no reply to heartbeats"); /* a server that stopped answering */
		return;
	}
	if (atomic_exchange(&c->needs_dump, false)) {
		drain(c); /* what was queued first, then the state that covers it */
		dump_state(c);
	}
	struct rt_bus_msg b = {.type = RT_BUS_HEARTBEAT, .seq = 1};
	memcpy(b.node, c->node, sizeof b.node);
	struct rt_buf out;
	rt_buf_init(&out);
	rt_bus_encode(&out, &b);
	enqueue(c, item_new(IT_HEARTBEAT, &out));
}

static void leave_cluster(struct rt_cluster *c)
{
	cmd_strs(c, NULL, NULL, 2, (const char *[]){"DEL", c->own_hash});
	cmd_strs(c, NULL, NULL, 3, (const char *[]){"ZREM", c->nodes_key, c->node});
}

static void on_stop_timeout(uv_timer_t *t)
{
	struct rt_cluster *c = t->data;
	drop_conn(&c->cmd);
	drop_conn(&c->sub);
}

static void *cluster_main(void *arg)
{
	struct rt_cluster *c = arg;
	rt_metrics_bind(RT_METRICS_BLOCKS - 2);
	connect_now(c);
	uv_timer_start(&c->tick, on_tick, c->heartbeat_ms, c->heartbeat_ms);
	uv_run(&c->loop, UV_RUN_DEFAULT);

	/* stopping: what was queued, then this node leaves, within a second */
	uv_timer_stop(&c->tick);
	uv_timer_stop(&c->retry);
	uv_timer_stop(&c->watchdog);
	drop_conn(&c->sub);
	if (atomic_load(&c->is_up) && c->cmd) {
		drain(c);
		leave_cluster(c);
		redisAsyncDisconnect(c->cmd); /* after the replies of what was sent */
		uv_timer_start(&c->retry, on_stop_timeout, 1000, 0);
		while (c->cmd && uv_run(&c->loop, UV_RUN_ONCE))
			;
		uv_timer_stop(&c->retry);
	}
	drop_conn(&c->cmd);
	atomic_store(&c->is_up, false);
	pthread_mutex_lock(&c->mu);
	c->is_running = false; /* no more wake-ups: the handle closes */
	pthread_mutex_unlock(&c->mu);
	drain(c);
	uv_close((uv_handle_t *)&c->wake, NULL);
	uv_close((uv_handle_t *)&c->stop, NULL);
	uv_close((uv_handle_t *)&c->tick, NULL);
	uv_close((uv_handle_t *)&c->retry, NULL);
	uv_close((uv_handle_t *)&c->watchdog, NULL);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void on_stop(uv_async_t *h)
{
	struct rt_cluster *c = h->data;
	c->is_stopping = true;
	uv_stop(&c->loop);
}

/* ---- lifecycle ---- */

int rt_cluster_new(const struct rt_cluster_config *cfg, struct rt_realtime *rt,
		   struct rt_cluster **out, char *err, size_t err_cap)
{
	*out = NULL;
	struct rt_cluster *c = rt_xcalloc(1, sizeof *c);
	if (!cfg->url || rt_bus_url_parse(cfg->url, &c->url)) {
		snprintf(err, err_cap, "want redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]");
		free(c);
		return RT_EINVAL;
	}
	if (cfg->node_id) {
		if (!rt_bus_node_valid(cfg->node_id, strlen(cfg->node_id))) {
			snprintf(err, err_cap, "a node id is 1 to %d of A-Z a-z 0-9 _ -",
				 RT_BUS_NODE_MAX);
			free(c);
			return RT_EINVAL;
		}
		snprintf(c->node, sizeof c->node, "%s", cfg->node_id);
	} else {
		uint8_t r[8];
		rt_rand_bytes(r, sizeof r);
		for (int i = 0; i < 8; i++)
			snprintf(c->node + 2 * i, 3, "%02x", r[i]);
	}
	const char *prefix = cfg->prefix ? cfg->prefix : "rtsync";
	if (!*prefix || strlen(prefix) > 64 || strpbrk(prefix, " \r\n")) {
		snprintf(err, err_cap, "the Redis prefix is 1 to 64 characters without spaces");
		free(c);
		return RT_EINVAL;
	}
	c->rt = rt;
	c->store = cfg->store;
	c->prefix = rt_xstrdup(prefix);
	size_t n = strlen(prefix) + RT_BUS_NODE_MAX + 16;
	c->bus_chan = rt_xmalloc(n);
	c->nodes_key = rt_xmalloc(n);
	c->own_hash = rt_xmalloc(n);
	snprintf(c->bus_chan, n, "%s:bus", prefix);
	snprintf(c->nodes_key, n, "%s:nodes", prefix);
	snprintf(c->own_hash, n, "%s:presence:%s", prefix, c->node);
	c->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 1000;
	c->node_ttl_ms = cfg->node_ttl_ms ? cfg->node_ttl_ms : 5000;
	if (c->node_ttl_ms < 2 * c->heartbeat_ms)
		c->node_ttl_ms = 2 * c->heartbeat_ms;
	c->max_pending = cfg->max_pending_bytes ? cfg->max_pending_bytes : 16u << 20;
	pthread_mutex_init(&c->mu, NULL);
	c->q_tail = &c->q_head;
	rt_bus_peers_init(&c->peers);
	uv_loop_init(&c->loop);
	uv_async_init(&c->loop, &c->wake, on_wake);
	c->wake.data = c;
	uv_async_init(&c->loop, &c->stop, on_stop);
	c->stop.data = c;
	uv_timer_init(&c->loop, &c->tick);
	c->tick.data = c;
	uv_timer_init(&c->loop, &c->retry);
	c->retry.data = c;
	uv_timer_init(&c->loop, &c->watchdog);
	c->watchdog.data = c;
	rt_hub_set_remote(rt->hub, &(struct rt_hub_remote){hub_send, c});
	rt_presence_set_remote(rt->presence, presence_send, c);
	*out = c;
	return 0;
}

int rt_cluster_start(struct rt_cluster *c)
{
	pthread_mutex_lock(&c->mu);
	c->is_running = true;
	pthread_mutex_unlock(&c->mu);
	int rc = pthread_create(&c->thread, NULL, cluster_main, c);
	if (rc) {
		pthread_mutex_lock(&c->mu);
		c->is_running = false;
		pthread_mutex_unlock(&c->mu);
		return -rc;
	}
	c->has_thread = true;
	return 0;
}

void rt_cluster_stop(struct rt_cluster *c)
{
	if (!c || !c->has_thread)
		return;
	uv_async_send(&c->stop);
	pthread_join(c->thread, NULL);
	c->has_thread = false;
	c->is_loop_done = true;
	pthread_mutex_lock(&c->mu);
	c->is_running = false;
	pthread_mutex_unlock(&c->mu);
}

void rt_cluster_free(struct rt_cluster *c)
{
	if (!c)
		return;
	rt_cluster_stop(c);
	rt_hub_set_remote(c->rt->hub, NULL);
	rt_presence_set_remote(c->rt->presence, NULL, NULL);
	if (!c->is_loop_done) { /* never started */
		uv_close((uv_handle_t *)&c->wake, NULL);
		uv_close((uv_handle_t *)&c->stop, NULL);
		uv_close((uv_handle_t *)&c->tick, NULL);
		uv_close((uv_handle_t *)&c->retry, NULL);
		uv_close((uv_handle_t *)&c->watchdog, NULL);
		uv_run(&c->loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&c->loop);
	while (c->q_head) {
		struct item *it = c->q_head;
		c->q_head = it->next;
		item_free(it);
	}
	for (struct rt_bus_peer *p = c->peers.head; p; p = p->next) {
		held_clear(p);
		free(p->user);
		p->user = NULL;
	}
	rt_bus_peers_deinit(&c->peers);
	pthread_mutex_destroy(&c->mu);
	free(c->prefix);
	free(c->bus_chan);
	free(c->nodes_key);
	free(c->own_hash);
	free(c);
}

/* ---- status ---- */

bool rt_cluster_is_up(const struct rt_cluster *c)
{
	return atomic_load(&c->is_up);
}

const char *rt_cluster_node(const struct rt_cluster *c)
{
	return c->node;
}

void rt_cluster_health(struct rt_cluster *c, struct rt_buf *out)
{
	rt_buf_printf(out, "{\"node\":\"%s\",\"redis\":\"%s\",\"peers\":%u", c->node,
		      rt_cluster_is_up(c) ? "up" : "down", atomic_load(&c->n_peers));
	if (c->store)
		rt_buf_printf(out, ",\"changes\":\"%s\"",
			      rt_store_is_leader(c->store) ? "leader" : "follower");
	rt_buf_append_byte(out, '}');
}

static void counter(struct rt_buf *out, const char *name, const char *help, uint64_t v)
{
	rt_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
		      (unsigned long long)v);
}

void rt_cluster_metrics(struct rt_cluster *c, struct rt_buf *out)
{
	size_t pending;
	pthread_mutex_lock(&c->mu);
	pending = c->pending_bytes;
	pthread_mutex_unlock(&c->mu);
	rt_buf_printf(
		out,
		"# HELP rtsync_cluster_redis_up 1 while connected to Redis and subscribed.\n"
		"# TYPE rtsync_cluster_redis_up gauge\nrtsync_cluster_redis_up %d\n"
		"# HELP rtsync_cluster_peers Other nodes heard from within their TTL.\n"
		"# TYPE rtsync_cluster_peers gauge\nrtsync_cluster_peers %u\n"
		"# HELP rtsync_cluster_pending_bytes Bytes queued or in flight to Redis.\n"
		"# TYPE rtsync_cluster_pending_bytes gauge\nrtsync_cluster_pending_bytes %zu\n",
		rt_cluster_is_up(c) ? 1 : 0, atomic_load(&c->n_peers), pending);
	if (c->store)
		rt_buf_printf(out,
			      "# HELP rtsync_cluster_changes_leader 1 while this node runs the "
			      "replication.\n# TYPE rtsync_cluster_changes_leader gauge\n"
			      "rtsync_cluster_changes_leader %d\n",
			      rt_store_is_leader(c->store) ? 1 : 0);
	counter(out, "rtsync_cluster_published_total", "Messages sent to the other nodes.",
		atomic_load(&c->n_published));
	counter(out, "rtsync_cluster_received_total", "Messages received from other nodes.",
		atomic_load(&c->n_received));
	rt_buf_printf(out,
		      "# HELP rtsync_cluster_dropped_total Messages not sent to the other nodes.\n"
		      "# TYPE rtsync_cluster_dropped_total counter\n"
		      "rtsync_cluster_dropped_total{reason=\"redis_down\"} %llu\n"
		      "rtsync_cluster_dropped_total{reason=\"buffer_full\"} %llu\n",
		      (unsigned long long)atomic_load(&c->n_dropped_down),
		      (unsigned long long)atomic_load(&c->n_dropped_full));
	counter(out, "rtsync_cluster_duplicates_total", "Messages received twice and dropped.",
		atomic_load(&c->n_dups));
	counter(out, "rtsync_cluster_gaps_total",
		"Gaps in another node's sequence numbers (messages lost).",
		atomic_load(&c->n_lost));
	counter(out, "rtsync_cluster_invalid_total", "Messages from Redis refused as malformed.",
		atomic_load(&c->n_invalid));
	counter(out, "rtsync_cluster_connects_total", "Connection attempts to Redis.",
		atomic_load(&c->n_reconnects));
	counter(out, "rtsync_cluster_syncs_total", "Presence states of other nodes read.",
		atomic_load(&c->n_syncs));
	counter(out, "rtsync_cluster_nodes_expired_total",
		"Nodes whose members left after their TTL.", atomic_load(&c->n_peers_expired));
}
