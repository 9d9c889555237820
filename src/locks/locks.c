#include "locks/locks.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistr.h>
#include <uthash.h>
#include <utlist.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"

#define MAX_GRANTS UINT32_MAX

struct waiter {
	uint64_t owner;
	char *sub;
	bool is_rest;
	uint32_t lease_ms;
	uint64_t deadline;
	struct waiter *prev, *next;
};

struct lock {
	char *name;
	bool is_held;
	uint64_t owner; /* the holder, when held */
	char *sub;
	bool is_rest;
	uint64_t token;
	uint32_t lease_ms;
	uint64_t expires;
	struct waiter *waiters; /* FIFO */
	unsigned n_waiters;
	UT_hash_handle hh;
};

/* How many locks an owner holds or waits for (its entry goes at 0). */
struct owner {
	uint64_t id;
	unsigned n;
	UT_hash_handle hh;
};

/* How many locks a subject (JWT sub) holds or waits for, whichever its
 * owners (channels, REST leases); subjects "" are not counted. */
struct subject {
	char *sub;
	unsigned n;
	UT_hash_handle hh;
};

/* Events gathered under the mutex, handed out after it. */
struct events {
	struct rt_lock_event *v;
	size_t n, cap;
};

struct rt_locks {
	struct rt_locks_config cfg;
	pthread_mutex_t mu;
	struct lock *locks;
	struct owner *owners;
	struct subject *subjects;
	unsigned n_locks;
	uint64_t n_grants; /* the token counter of this run */
	struct rt_locks_stats st;
	/* ticker */
	pthread_t thread;
	pthread_cond_t cond;
	bool is_started, is_stopping;
	uint64_t wake_at; /* when the ticker wakes next (monotonic ms of cfg.now_ms) */
};

void rt_locks_config_default(struct rt_locks_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->max_locks = 10000;
	cfg->max_per_owner = 16;
	cfg->max_per_subject = 256;
	cfg->max_waiters = 64;
	cfg->min_lease_ms = 100;
	cfg->max_lease_ms = 600000;
	cfg->default_lease_ms = 30000;
	cfg->max_wait_ms = 300000;
	cfg->epoch = 1;
}

const char *rt_lock_rc_name(enum rt_lock_rc rc)
{
	switch (rc) {
	case RT_LOCK_OK: return "ok";
	case RT_LOCK_QUEUED: return "queued";
	case RT_LOCK_BUSY: return "busy";
	case RT_LOCK_HELD_BY_YOU: return "held_by_you";
	case RT_LOCK_WAITING: return "waiting";
	case RT_LOCK_NOT_HELD: return "not_held";
	case RT_LOCK_BAD_NAME: return "bad_name";
	case RT_LOCK_BAD_LEASE: return "bad_lease";
	case RT_LOCK_BAD_WAIT: return "bad_wait";
	case RT_LOCK_TOO_MANY_LOCKS: return "too_many_locks";
	case RT_LOCK_OWNER_LIMIT: return "owner_limit";
	case RT_LOCK_SUBJECT_LIMIT: return "subject_limit";
	case RT_LOCK_TOO_MANY_WAITERS: return "too_many_waiters";
	case RT_LOCK_EXHAUSTED: return "exhausted";
	}
	return "unknown";
}

const char *rt_lock_rc_message(enum rt_lock_rc rc)
{
	switch (rc) {
	case RT_LOCK_OK: return "ok";
	case RT_LOCK_QUEUED: return "queued behind the holder";
	case RT_LOCK_BUSY: return "the lock is held by another owner";
	case RT_LOCK_HELD_BY_YOU: return "you hold this lock already";
	case RT_LOCK_WAITING: return "you wait for this lock already";
	case RT_LOCK_NOT_HELD: return "you do not hold this lock (or not with that token)";
	case RT_LOCK_BAD_NAME:
		return "a lock name is 1 to 128 bytes of printable characters without spaces";
	case RT_LOCK_BAD_LEASE: return "lease_ms is outside the server's lease range";
	case RT_LOCK_BAD_WAIT: return "wait_ms is over the server's longest wait";
	case RT_LOCK_TOO_MANY_LOCKS: return "the server holds as many locks as it may";
	case RT_LOCK_OWNER_LIMIT: return "too many locks held or waited for by this connection";
	case RT_LOCK_SUBJECT_LIMIT: return "too many locks held or waited for by this user";
	case RT_LOCK_TOO_MANY_WAITERS: return "too many waiters for this lock";
	case RT_LOCK_EXHAUSTED: return "fencing tokens of this run are exhausted: restart the server";
	}
	return "unknown";
}

bool rt_locks_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (!n || n > RT_LOCKS_MAX_NAME || u8_check((const uint8_t *)name, n))
		return false;
	/* valid UTF-8 (jansson's strings are) without ASCII controls or spaces */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] <= 0x20 || name[i] == 0x7f)
			return false;
	return true;
}

/* ---- events ---- */

static void ev_push(struct events *e, enum rt_lock_event_kind kind, const struct lock *l,
		    uint64_t owner, const char *sub, bool is_rest, uint64_t token)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 8;
		e->v = rt_xrealloc(e->v, e->cap * sizeof *e->v);
	}
	struct rt_lock_event *ev = &e->v[e->n++];
	memset(ev, 0, sizeof *ev);
	ev->kind = kind;
	ev->name = rt_xstrdup(l->name);
	ev->owner = owner;
	ev->sub = rt_xstrdup(sub ? sub : "");
	ev->is_rest = is_rest;
	ev->token = token;
	if (kind == RT_LOCK_EV_GRANTED) {
		ev->lease_ms = l->lease_ms;
		ev->expires_ms = l->expires;
	}
}

static void ev_state(struct events *e, const struct lock *l)
{
	/* one state event per lock per operation is enough */
	for (size_t i = 0; i < e->n; i++)
		if (e->v[i].kind == RT_LOCK_EV_STATE && !strcmp(e->v[i].name, l->name))
			return;
	ev_push(e, RT_LOCK_EV_STATE, l, 0, NULL, false, 0);
}

/* Hands the events out (mutex released) and frees them. */
static void ev_flush(struct rt_locks *t, struct events *e)
{
	for (size_t i = 0; i < e->n; i++) {
		/* a lock's state after the events about it */
		if (t->cfg.on_event && e->v[i].kind != RT_LOCK_EV_STATE)
			t->cfg.on_event(t->cfg.ctx, &e->v[i]);
	}
	for (size_t i = 0; i < e->n; i++) {
		if (t->cfg.on_event && e->v[i].kind == RT_LOCK_EV_STATE)
			t->cfg.on_event(t->cfg.ctx, &e->v[i]);
		free((char *)e->v[i].name);
		free((char *)e->v[i].sub);
	}
	free(e->v);
	memset(e, 0, sizeof *e);
}

/* ---- owners ---- */

static unsigned owner_count(struct rt_locks *t, uint64_t id)
{
	struct owner *o;
	HASH_FIND(hh, t->owners, &id, sizeof id, o);
	return o ? o->n : 0;
}

static void owner_add(struct rt_locks *t, uint64_t id, int delta)
{
	struct owner *o;
	HASH_FIND(hh, t->owners, &id, sizeof id, o);
	if (!o) {
		if (delta < 0)
			abort(); /* counts are kept with every change: cannot happen */
		o = rt_xcalloc(1, sizeof *o);
		o->id = id;
		HASH_ADD(hh, t->owners, id, sizeof o->id, o);
	}
	o->n = (unsigned)((int)o->n + delta);
	if (!o->n) {
		HASH_DEL(t->owners, o);
		free(o);
	}
}

static unsigned subject_count(struct rt_locks *t, const char *sub)
{
	struct subject *u;
	if (!sub || !*sub)
		return 0;
	HASH_FIND_STR(t->subjects, sub, u);
	return u ? u->n : 0;
}

static void subject_add(struct rt_locks *t, const char *sub, int delta)
{
	struct subject *u;
	if (!sub || !*sub)
		return;
	HASH_FIND_STR(t->subjects, sub, u);
	if (!u) {
		if (delta < 0)
			abort(); /* counts are kept with every change: cannot happen */
		u = rt_xcalloc(1, sizeof *u);
		u->sub = rt_xstrdup(sub);
		HASH_ADD_KEYPTR(hh, t->subjects, u->sub, strlen(u->sub), u);
	}
	u->n = (unsigned)((int)u->n + delta);
	if (!u->n) {
		HASH_DEL(t->subjects, u);
		free(u->sub);
		free(u);
	}
}

/* ---- the table, mutex held ---- */

static struct lock *find_lock(struct rt_locks *t, const char *name)
{
	struct lock *l;
	HASH_FIND_STR(t->locks, name, l);
	return l;
}

static void lock_gc(struct rt_locks *t, struct lock *l)
{
	if (l->is_held || l->waiters)
		return;
	HASH_DEL(t->locks, l);
	t->n_locks--;
	free(l->name);
	free(l->sub);
	free(l);
}

static void grant(struct rt_locks *t, struct lock *l, uint64_t now, uint64_t owner,
		  const char *sub, bool is_rest, uint32_t lease_ms, bool was_waiting,
		  struct events *e)
{
	t->n_grants++;
	l->is_held = true;
	l->owner = owner;
	free(l->sub);
	l->sub = rt_xstrdup(sub ? sub : "");
	l->is_rest = is_rest;
	l->token = t->cfg.epoch << 32 | t->n_grants;
	l->lease_ms = lease_ms;
	l->expires = now + lease_ms;
	t->st.n_held++;
	t->st.n_grants++;
	ev_push(e, RT_LOCK_EV_GRANTED, l, owner, sub, is_rest, l->token);
	e->v[e->n - 1].was_waiting = was_waiting;
	ev_state(e, l);
}

static void drop_waiter(struct rt_locks *t, struct lock *l, struct waiter *w);

/* The lock is free: its first waiter whose wait has not ended gets it (or
 * nobody, when the run's tokens are exhausted: the waiters then time out). */
static void hand_over(struct rt_locks *t, struct lock *l, uint64_t now, struct events *e)
{
	struct waiter *w;
	while ((w = l->waiters) && w->deadline <= now) { /* due, the tick has not seen it yet */
		ev_push(e, RT_LOCK_EV_TIMEOUT, l, w->owner, w->sub, w->is_rest, 0);
		t->st.n_timeouts++;
		drop_waiter(t, l, w);
	}
	if (!w || l->is_held || t->n_grants >= MAX_GRANTS)
		return;
	DL_DELETE(l->waiters, w);
	l->n_waiters--;
	t->st.n_waiters--;
	/* the owner's count stays: a wait becomes a hold */
	grant(t, l, now, w->owner, w->sub, w->is_rest, w->lease_ms, true, e);
	free(w->sub);
	free(w);
}

/* The holder stops holding (kind: RELEASED or LOST). */
static void unhold(struct rt_locks *t, struct lock *l, uint64_t now, enum rt_lock_event_kind kind,
		   struct events *e)
{
	ev_push(e, kind, l, l->owner, l->sub, l->is_rest, l->token);
	owner_add(t, l->owner, -1);
	subject_add(t, l->sub, -1);
	l->is_held = false;
	t->st.n_held--;
	if (kind == RT_LOCK_EV_LOST)
		t->st.n_expiries++;
	else
		t->st.n_releases++;
	ev_state(e, l);
	hand_over(t, l, now, e);
}

static void drop_waiter(struct rt_locks *t, struct lock *l, struct waiter *w)
{
	DL_DELETE(l->waiters, w);
	l->n_waiters--;
	t->st.n_waiters--;
	owner_add(t, w->owner, -1);
	subject_add(t, w->sub, -1);
	free(w->sub);
	free(w);
}

static struct waiter *find_waiter(struct lock *l, uint64_t owner)
{
	struct waiter *w;
	DL_FOREACH(l->waiters, w)
		if (w->owner == owner)
			return w;
	return NULL;
}

static uint64_t tick_locked(struct rt_locks *t, uint64_t now, struct events *e)
{
	uint64_t next = UINT64_MAX;
	struct lock *l, *tmp;
	HASH_ITER(hh, t->locks, l, tmp) {
		/* waits that ended first: a lease ending at the same time is not
		 * handed to a waiter that gave up */
		struct waiter *w, *wtmp;
		DL_FOREACH_SAFE(l->waiters, w, wtmp) {
			if (w->deadline > now)
				continue;
			ev_push(e, RT_LOCK_EV_TIMEOUT, l, w->owner, w->sub, w->is_rest, 0);
			t->st.n_timeouts++;
			drop_waiter(t, l, w);
			ev_state(e, l);
		}
		if (l->is_held && l->expires <= now)
			unhold(t, l, now, RT_LOCK_EV_LOST, e);
		if (l->is_held && l->expires < next)
			next = l->expires;
		DL_FOREACH(l->waiters, w)
			if (w->deadline < next)
				next = w->deadline;
		lock_gc(t, l);
	}
	return next;
}

/* A new deadline: the ticker wakes for it if it sleeps past it. */
static void note_deadline(struct rt_locks *t, uint64_t at)
{
	if (t->is_started && at < t->wake_at)
		pthread_cond_signal(&t->cond);
}

/* ---- API ---- */

struct rt_locks *rt_locks_new(const struct rt_locks_config *cfg)
{
	struct rt_locks *t = rt_xcalloc(1, sizeof *t);
	t->cfg = *cfg;
	if (!t->cfg.epoch)
		t->cfg.epoch = 1;
	if (!t->cfg.now_ms)
		t->cfg.now_ms = rt_mono_ms;
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);
	t->wake_at = UINT64_MAX;
	return t;
}

static void *ticker_main(void *arg)
{
	struct rt_locks *t = arg;
	pthread_mutex_lock(&t->mu);
	while (!t->is_stopping) {
		struct events e = {0};
		uint64_t now = t->cfg.now_ms();
		uint64_t next = tick_locked(t, now, &e);
		if (e.n) {
			pthread_mutex_unlock(&t->mu);
			ev_flush(t, &e);
			pthread_mutex_lock(&t->mu);
			continue; /* the callbacks took time: look again */
		}
		/* at most a second asleep, so a clock step cannot stall it */
		uint64_t sleep_ms = next == UINT64_MAX || next - now > 1000 ? 1000 : next - now;
		t->wake_at = now + sleep_ms;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(sleep_ms / 1000);
		ts.tv_nsec += (long)(sleep_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cond, &t->mu, &ts);
		t->wake_at = UINT64_MAX;
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

int rt_locks_start(struct rt_locks *t)
{
	pthread_mutex_lock(&t->mu);
	t->is_started = true;
	pthread_mutex_unlock(&t->mu);
	if (pthread_create(&t->thread, NULL, ticker_main, t)) {
		t->is_started = false;
		return -1;
	}
	return 0;
}

void rt_locks_free(struct rt_locks *t)
{
	if (!t)
		return;
	if (t->is_started) {
		pthread_mutex_lock(&t->mu);
		t->is_stopping = true;
		pthread_cond_signal(&t->cond);
		pthread_mutex_unlock(&t->mu);
		pthread_join(t->thread, NULL);
	}
	struct lock *l, *tmp;
	HASH_ITER(hh, t->locks, l, tmp) {
		struct waiter *w, *wtmp;
		DL_FOREACH_SAFE(l->waiters, w, wtmp) {
			free(w->sub);
			free(w);
		}
		HASH_DEL(t->locks, l);
		free(l->name);
		free(l->sub);
		free(l);
	}
	struct owner *o, *otmp;
	HASH_ITER(hh, t->owners, o, otmp) {
		HASH_DEL(t->owners, o);
		free(o);
	}
	struct subject *u, *utmp;
	HASH_ITER(hh, t->subjects, u, utmp) {
		HASH_DEL(t->subjects, u);
		free(u->sub);
		free(u);
	}
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static void fill_grant(const struct lock *l, struct rt_lock_grant *out)
{
	if (!out)
		return;
	out->token = l->token;
	out->lease_ms = l->lease_ms;
	out->expires_ms = l->expires;
	out->position = 0;
}

enum rt_lock_rc rt_locks_acquire(struct rt_locks *t, uint64_t now, const char *name,
				 uint64_t owner, const char *sub, bool is_rest, uint32_t lease_ms,
				 uint32_t wait_ms, struct rt_lock_grant *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (!rt_locks_name_ok(name))
		return RT_LOCK_BAD_NAME;
	if (!lease_ms)
		lease_ms = t->cfg.default_lease_ms;
	if (lease_ms < t->cfg.min_lease_ms || lease_ms > t->cfg.max_lease_ms)
		return RT_LOCK_BAD_LEASE;
	if (wait_ms > t->cfg.max_wait_ms)
		return RT_LOCK_BAD_WAIT;
	if (sub && strlen(sub) > RT_LOCKS_MAX_SUB)
		sub = NULL; /* not a subject this table keeps; shown as none */
	struct events e = {0};
	enum rt_lock_rc rc;
	pthread_mutex_lock(&t->mu);
	struct lock *l = find_lock(t, name);
	if (l && l->is_held && l->owner == owner) {
		fill_grant(l, out);
		rc = RT_LOCK_HELD_BY_YOU;
		goto out_unlock;
	}
	if (l && find_waiter(l, owner)) {
		rc = RT_LOCK_WAITING;
		goto out_unlock;
	}
	if (l && l->is_held && !wait_ms) {
		rc = RT_LOCK_BUSY;
		goto out_unlock;
	}
	if (owner_count(t, owner) >= t->cfg.max_per_owner) {
		rc = RT_LOCK_OWNER_LIMIT;
		goto out_unlock;
	}
	if (t->cfg.max_per_subject && subject_count(t, sub) >= t->cfg.max_per_subject) {
		rc = RT_LOCK_SUBJECT_LIMIT;
		goto out_unlock;
	}
	if (!l && t->n_locks >= t->cfg.max_locks) {
		rc = RT_LOCK_TOO_MANY_LOCKS;
		goto out_unlock;
	}
	if (l && l->is_held && l->n_waiters >= t->cfg.max_waiters) {
		rc = RT_LOCK_TOO_MANY_WAITERS;
		goto out_unlock;
	}
	bool is_free = !l || (!l->is_held && !l->waiters);
	if (is_free && t->n_grants >= MAX_GRANTS) {
		rc = RT_LOCK_EXHAUSTED;
		goto out_unlock;
	}
	if (!l) {
		l = rt_xcalloc(1, sizeof *l);
		l->name = rt_xstrdup(name);
		HASH_ADD_KEYPTR(hh, t->locks, l->name, strlen(l->name), l);
		t->n_locks++;
	}
	owner_add(t, owner, 1);
	subject_add(t, sub, 1);
	if (is_free) {
		grant(t, l, now, owner, sub, is_rest, lease_ms, false, &e);
		fill_grant(l, out);
		note_deadline(t, l->expires);
		rc = RT_LOCK_OK;
		goto out_unlock;
	}
	struct waiter *w = rt_xcalloc(1, sizeof *w);
	w->owner = owner;
	w->sub = rt_xstrdup(sub ? sub : "");
	w->is_rest = is_rest;
	w->lease_ms = lease_ms;
	w->deadline = now + wait_ms;
	DL_APPEND(l->waiters, w);
	l->n_waiters++;
	t->st.n_waiters++;
	if (out)
		out->position = l->n_waiters;
	note_deadline(t, w->deadline);
	ev_state(&e, l);
	rc = RT_LOCK_QUEUED;
out_unlock:
	pthread_mutex_unlock(&t->mu);
	ev_flush(t, &e);
	return rc;
}

enum rt_lock_rc rt_locks_renew(struct rt_locks *t, uint64_t now, const char *name, uint64_t owner,
			       uint64_t token, uint32_t lease_ms, struct rt_lock_grant *out)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (!rt_locks_name_ok(name))
		return RT_LOCK_BAD_NAME;
	if (lease_ms && (lease_ms < t->cfg.min_lease_ms || lease_ms > t->cfg.max_lease_ms))
		return RT_LOCK_BAD_LEASE;
	enum rt_lock_rc rc = RT_LOCK_NOT_HELD;
	pthread_mutex_lock(&t->mu);
	struct lock *l = find_lock(t, name);
	/* a lease that ended is lost even when the ticker has not seen it yet */
	if (l && l->is_held && l->owner == owner && (!token || token == l->token) &&
	    l->expires > now) {
		if (lease_ms)
			l->lease_ms = lease_ms;
		l->expires = now + l->lease_ms;
		fill_grant(l, out);
		rc = RT_LOCK_OK;
	}
	pthread_mutex_unlock(&t->mu);
	return rc;
}

enum rt_lock_rc rt_locks_release(struct rt_locks *t, uint64_t now, const char *name,
				 uint64_t owner, uint64_t token)
{
	if (!rt_locks_name_ok(name))
		return RT_LOCK_BAD_NAME;
	struct events e = {0};
	enum rt_lock_rc rc = RT_LOCK_NOT_HELD;
	pthread_mutex_lock(&t->mu);
	struct lock *l = find_lock(t, name);
	if (!l)
		goto out_unlock;
	if (l->is_held && l->owner == owner && (!token || token == l->token)) {
		unhold(t, l, now, RT_LOCK_EV_RELEASED, &e);
		rc = RT_LOCK_OK;
	} else if (!token) {
		struct waiter *w = find_waiter(l, owner);
		if (w) {
			drop_waiter(t, l, w);
			ev_state(&e, l);
			rc = RT_LOCK_OK;
		}
	}
	lock_gc(t, l);
out_unlock:
	pthread_mutex_unlock(&t->mu);
	ev_flush(t, &e);
	return rc;
}

unsigned rt_locks_drop_owner(struct rt_locks *t, uint64_t now, uint64_t owner)
{
	struct events e = {0};
	unsigned n_held = 0;
	pthread_mutex_lock(&t->mu);
	if (!owner_count(t, owner))
		goto out_unlock;
	/* waits first, so a lock the owner holds is not handed back to it */
	struct lock *l, *tmp;
	HASH_ITER(hh, t->locks, l, tmp) {
		struct waiter *w = find_waiter(l, owner);
		if (w) {
			drop_waiter(t, l, w);
			ev_state(&e, l);
		}
	}
	HASH_ITER(hh, t->locks, l, tmp) {
		if (l->is_held && l->owner == owner) {
			unhold(t, l, now, RT_LOCK_EV_RELEASED, &e);
			n_held++;
		}
		lock_gc(t, l);
	}
out_unlock:
	pthread_mutex_unlock(&t->mu);
	ev_flush(t, &e);
	return n_held;
}

uint64_t rt_locks_tick(struct rt_locks *t, uint64_t now)
{
	struct events e = {0};
	pthread_mutex_lock(&t->mu);
	uint64_t next = tick_locked(t, now, &e);
	pthread_mutex_unlock(&t->mu);
	ev_flush(t, &e);
	return next;
}

json_t *rt_locks_state(struct rt_locks *t, uint64_t now, const char *name)
{
	bool is_ok = rt_locks_name_ok(name); /* a bad name is no lock, and may not be UTF-8 */
	json_t *o = json_pack("{s:s,s:b}", "name", is_ok ? name : "", "held", 0);
	pthread_mutex_lock(&t->mu);
	struct lock *l = is_ok ? find_lock(t, name) : NULL;
	if (l && l->is_held && l->expires > now) {
		json_object_set_new(o, "held", json_true());
		json_object_set_new(o, "holder", *l->sub ? json_string(l->sub) : json_null());
		json_object_set_new(o, "token", json_integer((json_int_t)l->token));
		json_object_set_new(o, "lease_ms", json_integer(l->lease_ms));
		json_object_set_new(o, "expires_in_ms", json_integer((json_int_t)(l->expires - now)));
	}
	json_object_set_new(o, "waiters", json_integer(l ? l->n_waiters : 0));
	pthread_mutex_unlock(&t->mu);
	return o;
}

void rt_locks_stats(struct rt_locks *t, struct rt_locks_stats *out)
{
	pthread_mutex_lock(&t->mu);
	*out = t->st;
	pthread_mutex_unlock(&t->mu);
}

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "rt_locks_validate: %s failed\n", #cond);        \
			abort();                                                         \
		}                                                                        \
	} while (0)

void rt_locks_validate(struct rt_locks *t)
{
	pthread_mutex_lock(&t->mu);
	uint64_t n_held = 0, n_waiters = 0;
	unsigned n_locks = 0;
	struct owner *counts = NULL, *o, *otmp;
	struct lock *l, *tmp;
	HASH_ITER(hh, t->locks, l, tmp) {
		n_locks++;
		CHECK(l->is_held || l->waiters);
		CHECK(!l->waiters || l->is_held || t->n_grants >= MAX_GRANTS);
		uint64_t ids[2] = {0};
		size_t n_ids = 0;
		if (l->is_held) {
			n_held++;
			CHECK((l->token >> 32) == t->cfg.epoch);
			ids[n_ids++] = l->owner;
		}
		unsigned n = 0;
		struct waiter *w;
		DL_FOREACH(l->waiters, w) {
			n++;
			CHECK(!(l->is_held && w->owner == l->owner));
			struct waiter *w2;
			for (w2 = w->next; w2; w2 = w2->next)
				CHECK(w2->owner != w->owner);
		}
		CHECK(n == l->n_waiters);
		n_waiters += n;
		/* recount every owner's locks */
		DL_FOREACH(l->waiters, w) {
			HASH_FIND(hh, counts, &w->owner, sizeof w->owner, o);
			if (!o) {
				o = rt_xcalloc(1, sizeof *o);
				o->id = w->owner;
				HASH_ADD(hh, counts, id, sizeof o->id, o);
			}
			o->n++;
		}
		for (size_t i = 0; i < n_ids; i++) {
			HASH_FIND(hh, counts, &ids[i], sizeof ids[i], o);
			if (!o) {
				o = rt_xcalloc(1, sizeof *o);
				o->id = ids[i];
				HASH_ADD(hh, counts, id, sizeof o->id, o);
			}
			o->n++;
		}
	}
	/* every subject's count: its holds and waits */
	size_t n_subjects = 0;
	struct subject *u, *utmp;
	HASH_ITER(hh, t->subjects, u, utmp) {
		unsigned n = 0;
		struct lock *l2, *tmp2;
		HASH_ITER(hh, t->locks, l2, tmp2) {
			if (l2->is_held && !strcmp(l2->sub, u->sub))
				n++;
			struct waiter *w;
			DL_FOREACH(l2->waiters, w)
				if (!strcmp(w->sub, u->sub))
					n++;
		}
		CHECK(n == u->n);
		n_subjects++;
	}
	{
		size_t want = 0; /* distinct non-empty subjects among holds and waits */
		struct subject *seen = NULL, *s2, *stmp;
		HASH_ITER(hh, t->locks, l, tmp) {
			const char *subs[1];
			if (l->is_held && *l->sub) {
				subs[0] = l->sub;
				HASH_FIND_STR(seen, subs[0], s2);
				if (!s2) {
					s2 = rt_xcalloc(1, sizeof *s2);
					s2->sub = l->sub;
					HASH_ADD_KEYPTR(hh, seen, s2->sub, strlen(s2->sub), s2);
					want++;
				}
			}
			struct waiter *w;
			DL_FOREACH(l->waiters, w) {
				if (!*w->sub)
					continue;
				HASH_FIND_STR(seen, w->sub, s2);
				if (!s2) {
					s2 = rt_xcalloc(1, sizeof *s2);
					s2->sub = w->sub;
					HASH_ADD_KEYPTR(hh, seen, s2->sub, strlen(s2->sub), s2);
					want++;
				}
			}
		}
		HASH_ITER(hh, seen, s2, stmp) {
			HASH_DEL(seen, s2);
			free(s2);
		}
		CHECK(want == n_subjects);
	}
	CHECK(n_locks == t->n_locks);
	CHECK(n_held == t->st.n_held);
	CHECK(n_waiters == t->st.n_waiters);
	CHECK(HASH_COUNT(counts) == HASH_COUNT(t->owners));
	HASH_ITER(hh, counts, o, otmp) {
		struct owner *real;
		HASH_FIND(hh, t->owners, &o->id, sizeof o->id, real);
		CHECK(real && real->n == o->n);
		HASH_DEL(counts, o);
		free(o);
	}
	pthread_mutex_unlock(&t->mu);
}
