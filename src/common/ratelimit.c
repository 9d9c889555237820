#include "common/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/* A connection slot: (key << 24) | count, key 40 bits of the user's hash
 * (never 0), 0 when free. A REST slot: the user (0: free) and its window,
 * (second << 32) | requests in that second. */
struct rest_slot {
	_Atomic uint64_t user;
	_Atomic uint64_t win;
};

struct rt_quota {
	struct rt_quota_config cfg;
	_Atomic uint32_t n_conns;
	_Atomic uint64_t conns[RT_RATELIMIT_SLOTS];
	struct rest_slot rest[RT_RATELIMIT_SLOTS];
};

/* ---- token buckets ---- */

static uint64_t burst_milli(const struct rt_rate *r)
{
	return (uint64_t)(r->burst ? r->burst : r->per_s) * 1000;
}

static void refill(struct rt_bucket *b, const struct rt_rate *r, uint64_t now_ms)
{
	uint64_t cap = burst_milli(r);
	if (!b->is_started) {
		b->is_started = true;
		b->milli = cap;
		b->last_ms = now_ms;
	} else if (now_ms > b->last_ms) {
		uint64_t add = (now_ms - b->last_ms) * r->per_s; /* per_s tokens/s = per_s milli/ms */
		b->milli = b->milli + add > cap ? cap : b->milli + add;
		b->last_ms = now_ms;
	}
}

bool rt_bucket_take(struct rt_bucket *b, const struct rt_rate *r, uint64_t now_ms)
{
	if (!r->per_s)
		return true;
	refill(b, r, now_ms);
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

uint64_t rt_bucket_wait_ms(const struct rt_bucket *b, const struct rt_rate *r, uint64_t now_ms)
{
	if (!r->per_s)
		return 0;
	struct rt_bucket t = *b;
	refill(&t, r, now_ms);
	return t.milli >= 1000 ? 0 : (1000 - t.milli + r->per_s - 1) / r->per_s;
}

/* ---- shared counters ---- */

struct rt_quota *rt_quota_new(const struct rt_quota_config *cfg)
{
	struct rt_quota *q = rt_xcalloc(1, sizeof *q);
	q->cfg = *cfg;
	return q;
}

void rt_quota_free(struct rt_quota *q)
{
	free(q);
}

const struct rt_quota_config *rt_quota_config(const struct rt_quota *q)
{
	static const struct rt_quota_config unlimited;
	return q ? &q->cfg : &unlimited;
}

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

/* A 64-bit finalizer (splitmix64), so each row's slot bits are well mixed. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t rt_quota_user(const char *sub, const char *role, const char *peer)
{
	uint64_t h = 1469598103934665603ull;
	if (sub && *sub) {
		h = fnv(h, "s", 1);
		h = fnv(h, sub, strlen(sub));
	} else {
		h = fnv(h, "r", 1);
		if (role)
			h = fnv(h, role, strlen(role) + 1);
		if (peer) { /* the address without the port */
			const char *colon = strrchr(peer, ':');
			size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
			h = fnv(h, peer, n);
		}
	}
	h = mix(h);
	return h ? h : 1;
}

#define MASK (RT_RATELIMIT_SLOTS - 1)
#define COUNT_BITS 24
#define COUNT_MAX ((1ull << COUNT_BITS) - 1)

static uint64_t conn_key(uint64_t user)
{
	uint64_t k = user >> COUNT_BITS;
	return k ? k : 1;
}

/* Adds one to user's connections; returns false when its window of slots
 * is full of other users (then nothing is counted). */
static bool conns_inc(struct rt_quota *q, uint64_t user)
{
	uint64_t k = conn_key(user);
	for (;;) {
		int empty = -1;
		for (unsigned i = 0; i < RT_RATELIMIT_PROBES; i++) {
			_Atomic uint64_t *slot = &q->conns[(user + i) & MASK];
			uint64_t w = atomic_load_explicit(slot, memory_order_relaxed);
			if (w >> COUNT_BITS == k && (w & COUNT_MAX) < COUNT_MAX) {
				if (atomic_compare_exchange_strong_explicit(
					    slot, &w, w + 1, memory_order_relaxed, memory_order_relaxed))
					return true;
				goto again; /* changed under us: look again */
			}
			if (!w && empty < 0)
				empty = (int)i;
		}
		if (empty < 0)
			return false;
		uint64_t zero = 0;
		if (atomic_compare_exchange_strong_explicit(&q->conns[(user + (unsigned)empty) & MASK],
							    &zero, k << COUNT_BITS | 1,
							    memory_order_relaxed, memory_order_relaxed))
			return true;
	again:;
	}
}

static void conns_dec(struct rt_quota *q, uint64_t user)
{
	uint64_t k = conn_key(user);
	bool is_seen = true;
	while (is_seen) { /* until one is taken off, or none of the user's is left */
		is_seen = false;
		for (unsigned i = 0; i < RT_RATELIMIT_PROBES; i++) {
			_Atomic uint64_t *slot = &q->conns[(user + i) & MASK];
			uint64_t w = atomic_load_explicit(slot, memory_order_relaxed);
			if (w >> COUNT_BITS != k || !(w & COUNT_MAX))
				continue;
			uint64_t next = (w & COUNT_MAX) == 1 ? 0 : w - 1; /* the last one frees it */
			if (atomic_compare_exchange_strong_explicit(slot, &w, next, memory_order_relaxed,
								    memory_order_relaxed))
				return;
			is_seen = true; /* changed under us: look again */
			break;
		}
	}
}

/* The user's connections: the sum of its slots (two workers counting a new
 * user at the same moment may each have taken one). */
static uint32_t conns_sum(const struct rt_quota *q, uint64_t user)
{
	uint64_t k = conn_key(user), n = 0;
	for (unsigned i = 0; i < RT_RATELIMIT_PROBES; i++) {
		uint64_t w = atomic_load_explicit(&((struct rt_quota *)q)->conns[(user + i) & MASK],
						  memory_order_relaxed);
		if (w >> COUNT_BITS == k)
			n += w & COUNT_MAX;
	}
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

enum rt_quota_refusal rt_quota_conn_open(struct rt_quota *q, uint64_t user,
					 struct rt_quota_conn *qc)
{
	*qc = (struct rt_quota_conn){.user = user}; /* full buckets */
	if (!q)
		return RT_QUOTA_OK;
	uint32_t n = atomic_fetch_add_explicit(&q->n_conns, 1, memory_order_relaxed) + 1;
	if (q->cfg.max_connections && n > q->cfg.max_connections) {
		atomic_fetch_sub_explicit(&q->n_conns, 1, memory_order_relaxed);
		return RT_QUOTA_CONNECTIONS;
	}
	/* Counted first, checked after: two racing connections may both be
	 * refused, never both let past the limit. */
	qc->is_user_counted = conns_inc(q, user);
	if (qc->is_user_counted && q->cfg.max_connections_per_user &&
	    conns_sum(q, user) > q->cfg.max_connections_per_user) {
		conns_dec(q, user);
		atomic_fetch_sub_explicit(&q->n_conns, 1, memory_order_relaxed);
		qc->is_user_counted = false;
		return RT_QUOTA_CONNECTIONS_PER_USER;
	}
	qc->is_counted = true;
	return RT_QUOTA_OK;
}

void rt_quota_conn_close(struct rt_quota *q, struct rt_quota_conn *qc)
{
	if (!q || !qc->is_counted)
		return;
	qc->is_counted = false;
	if (qc->is_user_counted)
		conns_dec(q, qc->user);
	qc->is_user_counted = false;
	atomic_fetch_sub_explicit(&q->n_conns, 1, memory_order_relaxed);
}

uint32_t rt_quota_connections(const struct rt_quota *q)
{
	return q ? atomic_load_explicit(&((struct rt_quota *)q)->n_conns, memory_order_relaxed) : 0;
}

uint32_t rt_quota_user_connections(const struct rt_quota *q, uint64_t user)
{
	return q ? conns_sum(q, user) : 0;
}

/* Counts one request in a window for second now_s; returns the count in
 * that second after it (saturating at 2^32-1). */
static uint32_t window_add(_Atomic uint64_t *win, uint64_t now_s)
{
	uint64_t sec = now_s & 0xffffffffull;
	uint64_t old = atomic_load_explicit(win, memory_order_relaxed), next;
	do {
		uint64_t n = (old >> 32) == sec ? (old & 0xffffffffull) : 0;
		if (n < 0xffffffffull)
			n++;
		next = sec << 32 | n;
	} while (!atomic_compare_exchange_weak_explicit(win, &old, next, memory_order_relaxed,
						       memory_order_relaxed));
	return (uint32_t)(next & 0xffffffffull);
}

bool rt_quota_rest_allow(struct rt_quota *q, uint64_t user, uint64_t now_s)
{
	if (!q || !q->cfg.rest_per_s)
		return true;
	uint64_t sec = now_s & 0xffffffffull;
	for (;;) {
		int free_i = -1;
		for (unsigned i = 0; i < RT_RATELIMIT_PROBES; i++) {
			struct rest_slot *sl = &q->rest[(user + i) & MASK];
			uint64_t u = atomic_load_explicit(&sl->user, memory_order_relaxed);
			if (u == user)
				return window_add(&sl->win, now_s) <= q->cfg.rest_per_s;
			uint64_t w = atomic_load_explicit(&sl->win, memory_order_relaxed);
			/* free: never used, or idle for a whole second */
			if (free_i < 0 && (!u || ((w >> 32) != sec && (w >> 32) + 1 != sec)))
				free_i = (int)i;
		}
		if (free_i < 0)
			return true; /* every slot busy with others this second: let it pass */
		struct rest_slot *sl = &q->rest[(user + (unsigned)free_i) & MASK];
		uint64_t u = atomic_load_explicit(&sl->user, memory_order_relaxed);
		uint64_t w = atomic_load_explicit(&sl->win, memory_order_relaxed);
		if ((!u || ((w >> 32) != sec && (w >> 32) + 1 != sec)) &&
		    atomic_compare_exchange_strong_explicit(&sl->user, &u, user, memory_order_relaxed,
							    memory_order_relaxed)) {
			atomic_store_explicit(&sl->win, sec << 32, memory_order_relaxed);
			return window_add(&sl->win, now_s) <= q->cfg.rest_per_s;
		}
	}
}
