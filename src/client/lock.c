/*
 * Locks (include/rtsync/lock.h): the lock's private channel
 * "realtime:lock:<name>", the lock_acquire / lock_renew / lock_release
 * events and their replies (through the channel's on_write), the server's
 * pushes (lock_granted, lock_lost, lock_timeout, lock_state), and a client
 * timer that renews the lease every third of it.
 *
 * State lives under the client's lock: API calls take it, callbacks and
 * the timer run with it held (it is recursive).
 */
#include "rtsync/lock.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "client/client_int.h"

enum { OP_ACQUIRE, OP_RENEW, OP_RELEASE };

struct rt_lock {
	struct rt_client *c;
	struct rt_client_channel *ch;
	char *name;
	struct rt_lock_options o; /* o.name points to name */
	struct rt_client_timer renew;
	bool is_held, is_asked; /* held; an acquisition sent or queued */
	int64_t token;
	uint32_t lease_ms;
	uint64_t acquire_id, renew_id, release_id; /* pushes awaiting their replies */
};

static void *l_alloc(struct rt_client *c, size_t n)
{
	return rt_client_realloc(c, NULL, n);
}

static void l_free(struct rt_client *c, void *p)
{
	if (p)
		rt_client_realloc(c, p, 0);
}

static bool name_ok(const char *n)
{
	size_t len = n ? strlen(n) : 0;
	if (!len || len > RT_LOCK_MAX_NAME || u8_check((const uint8_t *)n, len))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)n[i] <= 0x20 || n[i] == 0x7f)
			return false;
	return true;
}

static const char *str_of(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void arm_renew(struct rt_lock *l)
{
	if (l->o.is_auto_renew && l->is_held && l->lease_ms)
		rt_client_timer_arm(l->c, &l->renew, rt_client_now_ms() + l->lease_ms / 3);
}

static void granted(struct rt_lock *l, const json_t *g)
{
	l->is_held = true;
	l->is_asked = false;
	l->token = (int64_t)json_integer_value(json_object_get(g, "token"));
	l->lease_ms = (uint32_t)json_integer_value(json_object_get(g, "lease_ms"));
	arm_renew(l);
	struct rt_lock_grant info = {
		.name = l->name,
		.token = l->token,
		.lease_ms = l->lease_ms,
		.expires_at = (int64_t)json_integer_value(json_object_get(g, "expires_at")),
	};
	if (l->o.cb.on_granted)
		l->o.cb.on_granted(l->o.user, l, &info);
}

static void lost(struct rt_lock *l, const char *reason)
{
	int64_t token = l->token;
	l->is_held = false;
	l->token = 0;
	l->renew.due_ms = 0;
	if (l->o.cb.on_lost)
		l->o.cb.on_lost(l->o.user, l, token, reason);
}

static void failed(struct rt_lock *l, int rc, const char *code, const char *reason)
{
	l->is_asked = false;
	if (l->o.cb.on_error)
		l->o.cb.on_error(l->o.user, l, rc, code, reason);
}

/* ---- the channel's events ---- */

static void on_reply(void *user, struct rt_client_channel *ch, uint64_t id, int rc,
		     const char *response)
{
	struct rt_lock *l = user;
	json_t *r = response ? json_loads(response, 0, NULL) : NULL;
	if (id && id == l->acquire_id) {
		l->acquire_id = 0;
		const char *status = str_of(r, "status");
		if (!rc && !strcmp(status, "granted")) {
			granted(l, r);
		} else if (!rc && !strcmp(status, "queued")) {
			if (l->o.cb.on_queued)
				l->o.cb.on_queued(l->o.user, l,
						  (unsigned)json_integer_value(json_object_get(r, "position")));
		} else {
			failed(l, rc ? rc : RT_EPROTO, str_of(r, "code"), str_of(r, "reason"));
		}
	} else if (id && id == l->renew_id) {
		l->renew_id = 0;
		if (!rc && l->is_held) {
			l->lease_ms = (uint32_t)json_integer_value(json_object_get(r, "lease_ms"));
			arm_renew(l);
		} else if (l->is_held && !strcmp(str_of(r, "code"), "RTS404")) {
			lost(l, "lease_expired");
		} else if (l->is_held) {
			/* no answer: again soon, while the lease may still run */
			rt_client_timer_arm(l->c, &l->renew, rt_client_now_ms() + 100);
		}
	} else if (id && id == l->release_id) {
		l->release_id = 0;
	}
	json_decref(r);
}

static void on_broadcast(void *user, struct rt_client_channel *ch, const struct rt_broadcast *b)
{
	struct rt_lock *l = user;
	json_t *p = json_loads(b->payload ? b->payload : "{}", 0, NULL);
	if (!json_is_object(p))
		goto out;
	if (!strcmp(b->event, "lock_granted") && !l->is_held) {
		granted(l, p);
	} else if (!strcmp(b->event, "lock_lost") && l->is_held &&
		   json_integer_value(json_object_get(p, "token")) == l->token) {
		lost(l, str_of(p, "reason"));
	} else if (!strcmp(b->event, "lock_timeout") && l->is_asked) {
		failed(l, RT_ETIMEDOUT, "timeout", "the wait ended before the lock was free");
	} else if (!strcmp(b->event, "lock_state") && l->o.cb.on_state) {
		l->o.cb.on_state(l->o.user, l, b->payload);
	}
out:
	json_decref(p);
}

static void on_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct rt_lock *l = user;
	/* the server released with the old channel: a rejoin holds nothing */
	if (st->state != RT_CHANNEL_JOINED || st->is_rejoin) {
		if (l->is_held)
			lost(l, "connection_lost");
		if (l->is_asked && !l->acquire_id)
			failed(l, RT_ECLOSED, "connection_lost", "the wait ended with the connection");
	}
	if (l->o.cb.on_status)
		l->o.cb.on_status(l->o.user, l, st);
}

static void renew_due(void *user, int64_t now_ms)
{
	(void)now_ms;
	rt_lock_renew(user);
}

/* ---- API ---- */

int rt_lock_open(struct rt_client *c, const struct rt_lock_options *opt, struct rt_lock **out)
{
	*out = NULL;
	if (!c || !opt || !name_ok(opt->name))
		return RT_EINVAL;
	struct rt_lock *l = l_alloc(c, sizeof *l);
	if (!l)
		return RT_ENOMEM;
	memset(l, 0, sizeof *l);
	size_t n = strlen(opt->name);
	if (!(l->name = l_alloc(c, n + 1))) {
		l_free(c, l);
		return RT_ENOMEM;
	}
	memcpy(l->name, opt->name, n + 1);
	l->c = c;
	l->o = *opt;
	l->o.name = l->name;
	l->renew.run = renew_due;
	l->renew.user = l;
	char topic[16 + RT_LOCK_MAX_NAME];
	snprintf(topic, sizeof topic, "lock:%s", l->name);
	struct rt_channel_options co = {
		.topic = topic,
		.is_private = true,
		.cb = {.on_status = on_status, .on_broadcast = on_broadcast, .on_write = on_reply},
		.user = l,
	};
	rt_client_lock(c); /* the callbacks see a complete lock */
	int rc = rt_channel_join(c, &co, &l->ch);
	if (!rc) {
		rt_client_timer_add(c, &l->renew);
		*out = l;
	}
	rt_client_unlock(c);
	if (rc) {
		l_free(c, l->name);
		l_free(c, l);
	}
	return rc;
}

void rt_lock_close(struct rt_lock *l)
{
	if (!l)
		return;
	struct rt_client *c = l->c;
	rt_client_lock(c);
	rt_client_timer_remove(c, &l->renew);
	rt_channel_leave(l->ch); /* the server releases with the channel */
	rt_client_unlock(c);
	l_free(c, l->name);
	l_free(c, l);
}

int rt_lock_acquire(struct rt_lock *l)
{
	rt_client_lock(l->c);
	int rc = RT_EEXISTS;
	if (l->is_held || l->is_asked)
		goto out;
	json_t *p = json_object();
	if (!p) {
		rc = RT_ENOMEM;
		goto out;
	}
	if (l->o.lease_ms)
		json_object_set_new(p, "lease_ms", json_integer(l->o.lease_ms));
	if (l->o.wait_ms)
		json_object_set_new(p, "wait_ms", json_integer(l->o.wait_ms));
	rc = rt_channel_push_lock(l->ch, OP_ACQUIRE, p, &l->acquire_id);
	if (!rc)
		l->is_asked = true;
out:
	rt_client_unlock(l->c);
	return rc;
}

int rt_lock_renew(struct rt_lock *l)
{
	rt_client_lock(l->c);
	int rc = RT_ENOTFOUND;
	if (l->is_held) {
		json_t *p = json_pack("{s:I}", "token", (json_int_t)l->token);
		rc = p ? rt_channel_push_lock(l->ch, OP_RENEW, p, &l->renew_id) : RT_ENOMEM;
	}
	rt_client_unlock(l->c);
	return rc;
}

int rt_lock_release(struct rt_lock *l)
{
	rt_client_lock(l->c);
	int rc = RT_ENOTFOUND;
	if (l->is_held || l->is_asked) {
		json_t *p = l->is_held ? json_pack("{s:I}", "token", (json_int_t)l->token)
				       : json_object();
		rc = p ? rt_channel_push_lock(l->ch, OP_RELEASE, p, &l->release_id) : RT_ENOMEM;
		if (!rc) {
			l->is_held = l->is_asked = false;
			l->token = 0;
			l->renew.due_ms = 0;
			l->acquire_id = 0; /* a late answer to it is no grant */
		}
	}
	rt_client_unlock(l->c);
	return rc;
}

int64_t rt_lock_token(struct rt_lock *l)
{
	rt_client_lock(l->c);
	int64_t t = l->is_held ? l->token : 0;
	rt_client_unlock(l->c);
	return t;
}
