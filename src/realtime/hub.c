#include "realtime/hub.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/metrics.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

struct hub_topic { /* a worker's local subscribers of one topic */
	char *key;
	struct rt_sub *subs;
	unsigned n_subs;
	UT_hash_handle hh;
};

struct shared_topic { /* which workers have subscribers of one topic */
	char *key;
	uint64_t mask;
	UT_hash_handle hh;
};

struct inbox {
	pthread_mutex_t mu;
	struct rt_msg **items;
	size_t len, cap;
	bool is_open; /* false once the worker stops: no more wake-ups */
	struct rt_worker *w;
};

struct rt_hub {
	pthread_rwlock_t lock; /* guards topics */
	struct shared_topic *topics;
	struct inbox inboxes[RT_SERVER_MAX_WORKERS];
	struct rt_hub_remote remote;
};

struct rt_hub_local {
	struct rt_hub *h;
	struct rt_worker *w;
	unsigned idx;
	struct hub_topic *topics;
	struct rt_msg **spare; /* swapped with the inbox's array on each drain */
	size_t spare_cap;
};

struct rt_msg *rt_msg_new(enum rt_msg_kind kind, const char *key)
{
	struct rt_msg *m = rt_xcalloc(1, sizeof *m);
	atomic_init(&m->refs, 1);
	m->kind = kind;
	m->key = rt_xstrdup(key);
	m->t0_ns = rt_mono_ns();
	return m;
}

struct rt_msg *rt_msg_ref(struct rt_msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void rt_msg_unref(struct rt_msg *m)
{
	if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	rt_frame_unref(m->v1);
	rt_frame_unref(m->v2);
	if (m->admit_free)
		m->admit_free(m->admit_ctx);
	free(m->key);
	free(m);
}

struct rt_hub *rt_hub_new(void)
{
	struct rt_hub *h = rt_xcalloc(1, sizeof *h);
	pthread_rwlock_init(&h->lock, NULL);
	for (unsigned i = 0; i < RT_SERVER_MAX_WORKERS; i++)
		pthread_mutex_init(&h->inboxes[i].mu, NULL);
	return h;
}

void rt_hub_free(struct rt_hub *h)
{
	if (!h)
		return;
	struct shared_topic *t, *tmp;
	HASH_ITER(hh, h->topics, t, tmp) {
		HASH_DEL(h->topics, t);
		free(t->key);
		free(t);
	}
	for (unsigned i = 0; i < RT_SERVER_MAX_WORKERS; i++) {
		struct inbox *in = &h->inboxes[i];
		for (size_t j = 0; j < in->len; j++)
			rt_msg_unref(in->items[j]);
		free(in->items);
		pthread_mutex_destroy(&in->mu);
	}
	pthread_rwlock_destroy(&h->lock);
	free(h);
}

struct rt_hub_local *rt_hub_local_new(struct rt_hub *h, struct rt_worker *w)
{
	struct rt_hub_local *l = rt_xcalloc(1, sizeof *l);
	l->h = h;
	l->w = w;
	l->idx = rt_worker_index(w);
	struct inbox *in = &h->inboxes[l->idx];
	pthread_mutex_lock(&in->mu);
	in->w = w;
	in->is_open = true;
	pthread_mutex_unlock(&in->mu);
	return l;
}

static void set_worker_bit(struct rt_hub *h, const char *key, unsigned idx, bool on)
{
	pthread_rwlock_wrlock(&h->lock);
	struct shared_topic *t;
	HASH_FIND_STR(h->topics, key, t);
	if (on) {
		if (!t) {
			t = rt_xcalloc(1, sizeof *t);
			t->key = rt_xstrdup(key);
			HASH_ADD_KEYPTR(hh, h->topics, t->key, strlen(t->key), t);
		}
		t->mask |= UINT64_C(1) << idx;
	} else if (t) {
		t->mask &= ~(UINT64_C(1) << idx);
		if (!t->mask) {
			HASH_DEL(h->topics, t);
			free(t->key);
			free(t);
		}
	}
	pthread_rwlock_unlock(&h->lock);
}

void rt_hub_local_free(struct rt_hub_local *l)
{
	if (!l)
		return;
	struct inbox *in = &l->h->inboxes[l->idx];
	pthread_mutex_lock(&in->mu);
	in->is_open = false;
	for (size_t j = 0; j < in->len; j++)
		rt_msg_unref(in->items[j]);
	in->len = 0;
	pthread_mutex_unlock(&in->mu);
	struct hub_topic *t, *tmp;
	HASH_ITER(hh, l->topics, t, tmp) {
		struct rt_sub *s, *stmp;
		DL_FOREACH_SAFE(t->subs, s, stmp)
			s->topic = NULL;
		set_worker_bit(l->h, t->key, l->idx, false);
		HASH_DEL(l->topics, t);
		free(t->key);
		free(t);
	}
	free(l->spare);
	free(l);
}

void rt_hub_subscribe(struct rt_hub_local *l, const char *key, struct rt_sub *sub)
{
	struct hub_topic *t;
	HASH_FIND_STR(l->topics, key, t);
	if (!t) {
		t = rt_xcalloc(1, sizeof *t);
		t->key = rt_xstrdup(key);
		HASH_ADD_KEYPTR(hh, l->topics, t->key, strlen(t->key), t);
		set_worker_bit(l->h, key, l->idx, true);
	}
	DL_APPEND(t->subs, sub);
	t->n_subs++;
	sub->topic = t;
}

void rt_hub_unsubscribe(struct rt_hub_local *l, struct rt_sub *sub)
{
	struct hub_topic *t = sub->topic;
	if (!t)
		return;
	DL_DELETE(t->subs, sub);
	sub->topic = NULL;
	if (--t->n_subs == 0) {
		set_worker_bit(l->h, t->key, l->idx, false);
		HASH_DEL(l->topics, t);
		free(t->key);
		free(t);
	}
}

unsigned rt_hub_local_count(struct rt_hub_local *l, const char *key)
{
	struct hub_topic *t;
	HASH_FIND_STR(l->topics, key, t);
	return t ? t->n_subs : 0;
}

static void deliver_local(struct rt_hub_local *l, struct rt_msg *m)
{
	struct hub_topic *t;
	HASH_FIND_STR(l->topics, m->key, t);
	if (!t)
		return;
	struct rt_sub *s;
	DL_FOREACH(t->subs, s)
		s->deliver(s, m);
	rt_metrics_latency(rt_mono_ns() - m->t0_ns);
}

static void post(struct rt_hub *h, unsigned idx, struct rt_msg *m)
{
	struct inbox *in = &h->inboxes[idx];
	pthread_mutex_lock(&in->mu);
	if (!in->is_open) {
		pthread_mutex_unlock(&in->mu);
		return;
	}
	if (in->len == in->cap) {
		in->cap = in->cap ? in->cap * 2 : 64;
		in->items = rt_xrealloc(in->items, in->cap * sizeof *in->items);
	}
	in->items[in->len++] = rt_msg_ref(m);
	bool first = in->len == 1;
	/* Wake while holding the lock: rt_hub_local_free closes the inbox under
	 * it, so the worker's async handle is still alive here. */
	if (first)
		rt_worker_wake(in->w);
	pthread_mutex_unlock(&in->mu);
}

static uint64_t interested(struct rt_hub *h, const char *key)
{
	pthread_rwlock_rdlock(&h->lock);
	struct shared_topic *t;
	HASH_FIND_STR(h->topics, key, t);
	uint64_t mask = t ? t->mask : 0;
	pthread_rwlock_unlock(&h->lock);
	return mask;
}

void rt_hub_set_remote(struct rt_hub *h, const struct rt_hub_remote *r)
{
	h->remote = r ? *r : (struct rt_hub_remote){0};
}

static void send_remote(struct rt_hub *h, struct rt_msg *m)
{
	if (m->is_shared && h->remote.send)
		h->remote.send(h->remote.ctx, m);
}

void rt_hub_publish(struct rt_hub_local *l, struct rt_msg *m)
{
	send_remote(l->h, m);
	uint64_t mask = interested(l->h, m->key) & ~(UINT64_C(1) << l->idx);
	for (unsigned i = 0; mask; i++, mask >>= 1)
		if (mask & 1)
			post(l->h, i, m);
	deliver_local(l, m);
}

void rt_hub_publish_any(struct rt_hub *h, struct rt_msg *m)
{
	send_remote(h, m);
	uint64_t mask = interested(h, m->key);
	for (unsigned i = 0; mask; i++, mask >>= 1)
		if (mask & 1)
			post(h, i, m);
}

size_t rt_hub_backlog(struct rt_hub *h)
{
	size_t most = 0;
	for (unsigned i = 0; i < RT_SERVER_MAX_WORKERS; i++) {
		struct inbox *in = &h->inboxes[i];
		pthread_mutex_lock(&in->mu);
		if (in->is_open && in->len > most)
			most = in->len;
		pthread_mutex_unlock(&in->mu);
	}
	return most;
}

void rt_hub_drain(struct rt_hub_local *l)
{
	struct inbox *in = &l->h->inboxes[l->idx];
	for (;;) {
		/* Swap arrays: the inbox keeps an empty one with its capacity, so
		 * neither side reallocates in the steady state. */
		pthread_mutex_lock(&in->mu);
		struct rt_msg **items = in->items;
		size_t len = in->len, cap = in->cap;
		in->items = l->spare;
		in->cap = l->spare_cap;
		in->len = 0;
		pthread_mutex_unlock(&in->mu);
		l->spare = items;
		l->spare_cap = cap;
		if (!len)
			return;
		for (size_t i = 0; i < len; i++) {
			deliver_local(l, items[i]);
			rt_msg_unref(items[i]);
		}
	}
}
