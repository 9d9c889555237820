#include "realtime/presence.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#include "common/alloc.h"
#include "common/metrics.h"
#include "common/rand.h"
#include "proto/phx.h"
#include "net/ws.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

struct entry {
	uint32_t origin; /* 0: this node; else the cluster's number for another node */
	bool is_stale;   /* remote: not in the full state being put again */
	uint64_t chan_id;
	char *pkey;
	json_t *payload; /* what the client tracked */
	json_t *meta;    /* what others see: payload plus phx_ref */
	struct entry *prev, *next;
};

struct topic {
	char *key;
	char *topic; /* the name clients know it by */
	struct entry *entries;
	unsigned n_entries;
	UT_hash_handle hh;
};

struct rt_presence {
	pthread_mutex_t mu;
	struct topic *topics;
	rt_presence_remote_cb remote;
	void *remote_ctx;
};

struct rt_presence *rt_presence_new(void)
{
	struct rt_presence *p = rt_xcalloc(1, sizeof *p);
	pthread_mutex_init(&p->mu, NULL);
	return p;
}

static void entry_free(struct entry *e)
{
	free(e->pkey);
	json_decref(e->payload);
	json_decref(e->meta);
	free(e);
}

void rt_presence_free(struct rt_presence *p)
{
	if (!p)
		return;
	struct topic *t, *tmp;
	HASH_ITER(hh, p->topics, t, tmp) {
		struct entry *e, *etmp;
		DL_FOREACH_SAFE(t->entries, e, etmp)
			entry_free(e);
		HASH_DEL(p->topics, t);
		free(t->key);
		free(t->topic);
		free(t);
	}
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static json_t *state_of(const struct topic *t)
{
	json_t *state = json_object();
	if (!t)
		return state;
	struct entry *e;
	DL_FOREACH(t->entries, e) {
		json_t *k = json_object_get(state, e->pkey);
		if (!k) {
			k = json_pack("{s:[]}", "metas");
			json_object_set_new(state, e->pkey, k);
		}
		json_array_append(json_object_get(k, "metas"), e->meta);
	}
	return state;
}

void rt_presence_subscribe(struct rt_presence *p, struct rt_hub_local *l, const char *key,
			   struct rt_sub *sub, json_t **state)
{
	pthread_mutex_lock(&p->mu);
	rt_hub_subscribe(l, key, sub);
	if (state) {
		struct topic *t;
		HASH_FIND_STR(p->topics, key, t);
		*state = state_of(t);
	}
	pthread_mutex_unlock(&p->mu);
}

static json_t *one(const char *pkey, json_t *meta)
{
	if (!meta)
		return json_object();
	return json_pack("{s:{s:[O]}}", pkey, "metas", meta);
}

/* Publishes {"joins":…,"leaves":…} for topic, through l on a worker or h from
 * any thread; a change of this node's (origin 0) goes to the remote callback
 * too. Takes nothing. Lock held. */
static void publish_diff(struct rt_presence *p, struct rt_hub_local *l, struct rt_hub *h,
			 uint32_t origin, const char *key, const char *topic, uint64_t chan_id,
			 const char *pkey, json_t *join_meta, json_t *leave_meta)
{
	if (!origin && p->remote)
		p->remote(p->remote_ctx, key, topic, chan_id, pkey, join_meta, leave_meta);
	json_t *diff = json_object();
	json_object_set_new(diff, "joins", one(pkey, join_meta));
	json_object_set_new(diff, "leaves", one(pkey, leave_meta));
	struct rt_buf payload, b;
	rt_buf_init(&payload);
	rt_buf_init(&b);
	rt_phx_dump(&payload, diff);
	json_decref(diff);

	struct rt_msg *m = rt_msg_new(RT_MSG_PRESENCE, key);
	rt_phx_encode_text(RT_PHX_V1, &b, NULL, NULL, topic, "presence_diff", payload.data,
			   payload.len);
	m->v1 = rt_ws_frame(RT_WS_TEXT, b.data, b.len);
	rt_buf_reset(&b);
	rt_phx_encode_text(RT_PHX_V2, &b, NULL, NULL, topic, "presence_diff", payload.data,
			   payload.len);
	m->v2 = rt_ws_frame(RT_WS_TEXT, b.data, b.len);
	rt_buf_deinit(&b);
	rt_buf_deinit(&payload);
	RT_METRIC_INC(presence_diffs);
	if (l)
		rt_hub_publish(l, m);
	else
		rt_hub_publish_any(h, m);
	rt_msg_unref(m);
}

static struct entry *find_entry(struct topic *t, uint32_t origin, uint64_t chan_id)
{
	struct entry *e;
	if (!t)
		return NULL;
	DL_FOREACH(t->entries, e)
		if (e->chan_id == chan_id && e->origin == origin)
			return e;
	return NULL;
}

static struct topic *topic_get(struct rt_presence *p, const char *key, const char *topic)
{
	struct topic *t;
	HASH_FIND_STR(p->topics, key, t);
	if (!t) {
		t = rt_xcalloc(1, sizeof *t);
		t->key = rt_xstrdup(key);
		t->topic = rt_xstrdup(topic);
		HASH_ADD_KEYPTR(hh, p->topics, t->key, strlen(t->key), t);
	}
	return t;
}

/* Unlinks e from t, frees it, and t with its last entry. */
static void entry_remove(struct rt_presence *p, struct topic *t, struct entry *e)
{
	DL_DELETE(t->entries, e);
	t->n_entries--;
	entry_free(e);
	if (!t->n_entries) {
		HASH_DEL(p->topics, t);
		free(t->key);
		free(t->topic);
		free(t);
	}
}

static json_t *new_meta(const json_t *payload, const char *prev_ref)
{
	char ref[16];
	rt_rand_base64(ref, sizeof ref, 8);
	json_t *meta = json_deep_copy(payload);
	json_object_del(meta, "phx_ref_prev");
	json_object_set_new(meta, "phx_ref", json_string(ref));
	if (prev_ref)
		json_object_set_new(meta, "phx_ref_prev", json_string(prev_ref));
	return meta;
}

bool rt_presence_track(struct rt_presence *p, struct rt_hub_local *l, const char *key,
		       const char *topic, uint64_t chan_id, const char *pkey, const json_t *payload)
{
	bool changed = true;
	pthread_mutex_lock(&p->mu);
	struct topic *t = topic_get(p, key, topic);
	struct entry *e = find_entry(t, 0, chan_id);
	if (e && !strcmp(e->pkey, pkey) && json_equal(e->payload, (json_t *)payload)) {
		changed = false;
	} else if (e && !strcmp(e->pkey, pkey)) {
		const char *prev = json_string_value(json_object_get(e->meta, "phx_ref"));
		json_t *meta = new_meta(payload, prev);
		json_t *old = e->meta;
		e->meta = meta;
		json_decref(e->payload);
		e->payload = json_deep_copy(payload);
		publish_diff(p, l, NULL, 0, key, topic, chan_id, pkey, meta, old);
		json_decref(old);
	} else {
		if (e) { /* tracked under another key: leave that one first */
			DL_DELETE(t->entries, e);
			t->n_entries--;
			publish_diff(p, l, NULL, 0, key, topic, chan_id, e->pkey, NULL, e->meta);
			entry_free(e);
		}
		e = rt_xcalloc(1, sizeof *e);
		e->chan_id = chan_id;
		e->pkey = rt_xstrdup(pkey);
		e->payload = json_deep_copy(payload);
		e->meta = new_meta(payload, NULL);
		DL_APPEND(t->entries, e);
		t->n_entries++;
		publish_diff(p, l, NULL, 0, key, topic, chan_id, pkey, e->meta, NULL);
	}
	pthread_mutex_unlock(&p->mu);
	return changed;
}

bool rt_presence_untrack(struct rt_presence *p, struct rt_hub_local *l, const char *key,
			 const char *topic, uint64_t chan_id)
{
	pthread_mutex_lock(&p->mu);
	struct topic *t;
	HASH_FIND_STR(p->topics, key, t);
	struct entry *e = find_entry(t, 0, chan_id);
	if (e) {
		publish_diff(p, l, NULL, 0, key, topic, chan_id, e->pkey, NULL, e->meta);
		entry_remove(p, t, e);
	}
	pthread_mutex_unlock(&p->mu);
	return e != NULL;
}

unsigned rt_presence_count(struct rt_presence *p, const char *key)
{
	pthread_mutex_lock(&p->mu);
	struct topic *t;
	HASH_FIND_STR(p->topics, key, t);
	unsigned n = t ? t->n_entries : 0;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void rt_presence_set_remote(struct rt_presence *p, rt_presence_remote_cb cb, void *ctx)
{
	pthread_mutex_lock(&p->mu);
	p->remote = cb;
	p->remote_ctx = ctx;
	pthread_mutex_unlock(&p->mu);
}

bool rt_presence_remote_put(struct rt_presence *p, struct rt_hub *h, uint32_t origin,
			    const char *key, const char *topic, uint64_t chan_id, const char *pkey,
			    const json_t *meta)
{
	bool changed = true;
	pthread_mutex_lock(&p->mu);
	struct topic *t;
	HASH_FIND_STR(p->topics, key, t);
	struct entry *e = find_entry(t, origin, chan_id);
	if (!meta) {
		if (e) {
			publish_diff(p, NULL, h, origin, key, topic, chan_id, e->pkey, NULL, e->meta);
			entry_remove(p, t, e);
		} else {
			changed = false;
		}
	} else if (e && !strcmp(e->pkey, pkey) && json_equal(e->meta, (json_t *)meta)) {
		e->is_stale = false;
		changed = false;
	} else if (e && !strcmp(e->pkey, pkey)) {
		json_t *old = e->meta;
		e->meta = json_deep_copy(meta);
		e->is_stale = false;
		publish_diff(p, NULL, h, origin, key, topic, chan_id, pkey, e->meta, old);
		json_decref(old);
	} else {
		if (e) { /* under another key: that one leaves */
			publish_diff(p, NULL, h, origin, key, topic, chan_id, e->pkey, NULL, e->meta);
			DL_DELETE(t->entries, e);
			t->n_entries--;
			entry_free(e);
		}
		t = topic_get(p, key, topic);
		e = rt_xcalloc(1, sizeof *e);
		e->origin = origin;
		e->chan_id = chan_id;
		e->pkey = rt_xstrdup(pkey);
		e->payload = json_object();
		e->meta = json_deep_copy(meta);
		DL_APPEND(t->entries, e);
		t->n_entries++;
		publish_diff(p, NULL, h, origin, key, topic, chan_id, pkey, e->meta, NULL);
	}
	pthread_mutex_unlock(&p->mu);
	return changed;
}

void rt_presence_remote_mark(struct rt_presence *p, uint32_t origin)
{
	pthread_mutex_lock(&p->mu);
	struct topic *t, *tmp;
	HASH_ITER(hh, p->topics, t, tmp) {
		struct entry *e;
		DL_FOREACH(t->entries, e)
			if (e->origin == origin)
				e->is_stale = true;
	}
	pthread_mutex_unlock(&p->mu);
}

unsigned rt_presence_remote_sweep(struct rt_presence *p, struct rt_hub *h, uint32_t origin)
{
	unsigned n = 0;
	pthread_mutex_lock(&p->mu);
	struct topic *t, *tmp;
	HASH_ITER(hh, p->topics, t, tmp) {
		struct entry *e, *etmp;
		/* entry_remove frees t with its last entry, when etmp is NULL:
		 * the loop ends without reading t again */
		DL_FOREACH_SAFE(t->entries, e, etmp) {
			if (e->origin != origin || !e->is_stale)
				continue;
			publish_diff(p, NULL, h, origin, t->key, t->topic, e->chan_id, e->pkey, NULL,
				     e->meta);
			entry_remove(p, t, e);
			n++;
		}
	}
	pthread_mutex_unlock(&p->mu);
	return n;
}

size_t rt_presence_each_local(struct rt_presence *p, rt_presence_each_cb cb,
			      void (*done)(void *ctx), void *ctx)
{
	size_t n = 0;
	pthread_mutex_lock(&p->mu);
	struct topic *t, *tmp;
	HASH_ITER(hh, p->topics, t, tmp) {
		struct entry *e;
		DL_FOREACH(t->entries, e) {
			if (e->origin)
				continue;
			cb(ctx, t->key, t->topic, e->chan_id, e->pkey, e->meta);
			n++;
		}
	}
	if (done)
		done(ctx);
	pthread_mutex_unlock(&p->mu);
	return n;
}
