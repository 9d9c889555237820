#include "locks/service.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>

#include "activity/activity.h"
#include "auth/jwt.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/rand.h"
#include "realtime/hub.h"
#include "realtime/realtime.h"

/* A REST acquisition waiting in the queue. */
struct rest_wait {
	uint64_t owner;
	struct rt_worker *w;
	uint64_t conn_id;
	char *name;
	bool is_granted;
	struct rt_lock_grant g;
	UT_hash_handle hh;
	struct rest_wait *next; /* the worker's answered list */
};

struct rt_lock_service {
	struct rt_locks *table;
	struct rt_realtime *rt;
	struct rt_activity *activity;
	pthread_mutex_t mu; /* waits and done (never held with the table's) */
	struct rest_wait *waits;
	struct rest_wait *done[RT_SERVER_MAX_WORKERS];
};

#define REST_OWNER_BIT (UINT64_C(1) << 63)

/* Wall-clock ms of a monotonic deadline. */
static int64_t wall_of(uint64_t mono)
{
	uint64_t now = rt_mono_ms();
	return rt_wall_ms() + (mono > now ? (int64_t)(mono - now) : -(int64_t)(now - mono));
}

static json_t *grant_json(const char *name, const struct rt_lock_grant *g)
{
	return json_pack("{s:s,s:I,s:i,s:I}", "name", name, "token", (json_int_t)g->token,
			 "lease_ms", (int)g->lease_ms, "expires_at", (json_int_t)wall_of(g->expires_ms));
}

static char *lock_topic(const char *name)
{
	size_t n = strlen(RT_LOCKS_TOPIC_PREFIX) + strlen(name) + 1;
	char *t = rt_xmalloc(n);
	snprintf(t, n, "%s%s", RT_LOCKS_TOPIC_PREFIX, name);
	return t;
}

/* A broadcast event on the lock's (private) channel; target 0: everyone. */
static void push(struct rt_lock_service *svc, const char *name, uint64_t target, const char *event,
		 json_t *payload)
{
	char *topic = lock_topic(name);
	char *txt = json_dumps(payload, JSON_COMPACT);
	struct rt_msg *m = rt_realtime_broadcast_msg(topic, true, event, txt, strlen(txt));
	m->target = target;
	rt_hub_publish_any(svc->rt->hub, m);
	rt_msg_unref(m);
	free(txt);
	free(topic);
	json_decref(payload);
}

static void record(struct rt_lock_service *svc, const struct rt_lock_event *ev, const char *what)
{
	if (!svc->activity)
		return;
	char *topic = lock_topic(ev->name);
	json_t *s = json_pack("{s:s,s:I,s:s}", "event", what, "token", (json_int_t)ev->token, "via",
			      ev->is_rest ? "rest" : "socket");
	rt_activity_append(svc->activity, RT_ACTIVITY_LOCK, topic, ev->sub, s, NULL);
	json_decref(s);
	free(topic);
}

static void rest_answered(struct rt_lock_service *svc, const struct rt_lock_event *ev)
{
	struct rt_worker *w = NULL;
	pthread_mutex_lock(&svc->mu);
	struct rest_wait *rw;
	HASH_FIND(hh, svc->waits, &ev->owner, sizeof ev->owner, rw);
	if (rw) {
		HASH_DEL(svc->waits, rw);
		rw->is_granted = ev->kind == RT_LOCK_EV_GRANTED;
		rw->g.token = ev->token;
		rw->g.lease_ms = ev->lease_ms;
		rw->g.expires_ms = ev->expires_ms;
		unsigned i = rt_worker_index(rw->w);
		rw->next = svc->done[i];
		svc->done[i] = rw;
		w = rw->w;
	}
	pthread_mutex_unlock(&svc->mu);
	if (w)
		rt_worker_wake(w);
}

static void on_event(void *ctx, const struct rt_lock_event *ev)
{
	struct rt_lock_service *svc = ctx;
	switch (ev->kind) {
	case RT_LOCK_EV_GRANTED:
		atomic_fetch_add(&rt_metrics_lock_grants, 1);
		record(svc, ev, "granted");
		if (ev->is_rest && ev->was_waiting) {
			rest_answered(svc, ev);
		} else if (ev->was_waiting) {
			struct rt_lock_grant g = {ev->token, ev->lease_ms, ev->expires_ms, 0};
			push(svc, ev->name, ev->owner, "lock_granted", grant_json(ev->name, &g));
		}
		break;
	case RT_LOCK_EV_LOST:
		atomic_fetch_add(&rt_metrics_lock_expiries, 1);
		record(svc, ev, "expired");
		if (!ev->is_rest)
			push(svc, ev->name, ev->owner, "lock_lost",
			     json_pack("{s:s,s:I,s:s}", "name", ev->name, "token",
				       (json_int_t)ev->token, "reason", "lease_expired"));
		break;
	case RT_LOCK_EV_TIMEOUT:
		atomic_fetch_add(&rt_metrics_lock_timeouts, 1);
		if (ev->is_rest)
			rest_answered(svc, ev);
		else
			push(svc, ev->name, ev->owner, "lock_timeout",
			     json_pack("{s:s}", "name", ev->name));
		break;
	case RT_LOCK_EV_RELEASED:
		record(svc, ev, "released");
		break;
	case RT_LOCK_EV_STATE: {
		struct rt_locks_stats st;
		rt_locks_stats(svc->table, &st);
		atomic_store(&rt_metrics_locks_held, st.n_held);
		atomic_store(&rt_metrics_lock_waiters, st.n_waiters);
		push(svc, ev->name, 0, "lock_state", rt_locks_state(svc->table, rt_mono_ms(), ev->name));
		break;
	}
	}
}

struct rt_lock_service *rt_lock_service_new(const struct rt_locks_config *cfg,
					    struct rt_realtime *rt, struct rt_activity *activity)
{
	struct rt_lock_service *svc = rt_xcalloc(1, sizeof *svc);
	svc->rt = rt;
	svc->activity = activity;
	pthread_mutex_init(&svc->mu, NULL);
	struct rt_locks_config c = *cfg;
	c.on_event = on_event;
	c.ctx = svc;
	c.now_ms = rt_mono_ms;
	svc->table = rt_locks_new(&c);
	if (rt_locks_start(svc->table)) {
		rt_error("locks: cannot start the lease thread");
		abort();
	}
	return svc;
}

static void wait_free(struct rest_wait *rw)
{
	free(rw->name);
	free(rw);
}

void rt_lock_service_free(struct rt_lock_service *svc)
{
	if (!svc)
		return;
	rt_locks_free(svc->table); /* stops the ticker: no more events */
	struct rest_wait *rw, *tmp;
	HASH_ITER(hh, svc->waits, rw, tmp) {
		HASH_DEL(svc->waits, rw);
		wait_free(rw);
	}
	for (unsigned i = 0; i < RT_SERVER_MAX_WORKERS; i++)
		while ((rw = svc->done[i])) {
			svc->done[i] = rw->next;
			wait_free(rw);
		}
	pthread_mutex_destroy(&svc->mu);
	free(svc);
}

struct rt_locks *rt_lock_service_table(struct rt_lock_service *svc)
{
	return svc->table;
}

/* ---- requests, whichever face ---- */

/* A non-negative integer member up to max; absent: 0. Returns false when
 * present but not such a number. */
static bool get_uint(const json_t *obj, const char *key, uint64_t max, uint64_t *out)
{
	*out = 0;
	const json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* The status and code an outcome maps to. */
static int rc_status(enum rt_lock_rc rc, const char **code)
{
	switch (rc) {
	case RT_LOCK_BUSY:
	case RT_LOCK_WAITING:
	case RT_LOCK_HELD_BY_YOU: *code = "RTS409"; return 409;
	case RT_LOCK_NOT_HELD: *code = "RTS404"; return 404;
	case RT_LOCK_BAD_NAME:
	case RT_LOCK_BAD_LEASE:
	case RT_LOCK_BAD_WAIT: *code = "RTS400"; return 400;
	case RT_LOCK_TOO_MANY_LOCKS:
	case RT_LOCK_OWNER_LIMIT:
	case RT_LOCK_SUBJECT_LIMIT:
	case RT_LOCK_TOO_MANY_WAITERS: *code = "RTS429"; return 429;
	case RT_LOCK_EXHAUSTED: *code = "RTS503"; return 503;
	default: *code = "RTS500"; return 500;
	}
}

/* The socket's error payload {reason, code, details} (details: the outcome's name). */
static json_t *sock_error(const char *code, const char *reason, const char *details)
{
	return json_pack("{s:s,s:s,s:s?}", "reason", reason, "code", code, "details", details);
}

static json_t *sock_rc_error(enum rt_lock_rc rc)
{
	const char *code;
	rc_status(rc, &code);
	return sock_error(code, rt_lock_rc_message(rc), rt_lock_rc_name(rc));
}

bool rt_lock_service_socket(struct rt_lock_service *svc, const char *name, uint64_t chan_id,
			    const char *sub, bool may_write, const char *event,
			    const json_t *payload, const char **status, json_t **response)
{
	bool is_acquire = !strcmp(event, "lock_acquire"), is_renew = !strcmp(event, "lock_renew");
	bool is_release = !strcmp(event, "lock_release"), is_state = !strcmp(event, "lock_state");
	if (!is_acquire && !is_renew && !is_release && !is_state)
		return false;
	*status = "error";
	uint64_t now = rt_mono_ms();
	if (is_state) {
		*status = "ok";
		*response = rt_locks_state(svc->table, now, name);
		return true;
	}
	if (!may_write) {
		RT_METRIC_ERROR(AUTH);
		*response = sock_error("RTS403",
				       "You do not have permissions to take this lock: a channel policy "
				       "must allow INSERT on realtime.messages for its topic",
				       "forbidden");
		return true;
	}
	uint64_t lease = 0, wait = 0, token = 0;
	if ((payload && !json_is_object(payload)) || !get_uint(payload, "lease_ms", UINT32_MAX, &lease) ||
	    !get_uint(payload, "wait_ms", UINT32_MAX, &wait) ||
	    !get_uint(payload, "token", INT64_MAX, &token)) {
		*response = sock_error("RTS400",
				       "lease_ms and wait_ms are milliseconds and token a fencing "
				       "token (non-negative integers)",
				       "bad_request");
		return true;
	}
	struct rt_lock_grant g;
	enum rt_lock_rc rc;
	if (is_acquire) {
		rc = rt_locks_acquire(svc->table, now, name, chan_id, sub, false, (uint32_t)lease,
				      (uint32_t)wait, &g);
		if (rc == RT_LOCK_OK || rc == RT_LOCK_HELD_BY_YOU) {
			*status = "ok";
			*response = grant_json(name, &g);
			json_object_set_new(*response, "status", json_string("granted"));
		} else if (rc == RT_LOCK_QUEUED) {
			*status = "ok";
			*response = json_pack("{s:s,s:s,s:i}", "name", name, "status", "queued",
					      "position", (int)g.position);
		} else {
			*response = sock_rc_error(rc);
		}
	} else if (is_renew) {
		rc = rt_locks_renew(svc->table, now, name, chan_id, token, (uint32_t)lease, &g);
		if (rc == RT_LOCK_OK) {
			*status = "ok";
			*response = grant_json(name, &g);
		} else {
			*response = sock_rc_error(rc);
		}
	} else {
		rc = rt_locks_release(svc->table, now, name, chan_id, token);
		if (rc == RT_LOCK_OK) {
			*status = "ok";
			*response = json_pack("{s:s}", "name", name);
		} else {
			*response = sock_rc_error(rc);
		}
	}
	return true;
}

void rt_lock_service_drop(struct rt_lock_service *svc, uint64_t chan_id)
{
	rt_locks_drop_owner(svc->table, rt_mono_ms(), chan_id);
}

/* ---- REST ---- */

static void respond(struct rt_conn *c, int status, json_t *body)
{
	char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	rt_conn_respond(c, status, txt ? "application/json; charset=utf-8" : NULL, txt,
			txt ? strlen(txt) : 0, NULL);
	free(txt);
	json_decref(body);
}

static void respond_error(struct rt_conn *c, int status, const char *code, const char *message,
			  const char *details)
{
	respond(c, status, json_pack("{s:s,s:s,s:s?,s:n}", "code", code, "message", message,
				     "details", details, "hint"));
}

static void respond_rc(struct rt_conn *c, enum rt_lock_rc rc)
{
	const char *code;
	int status = rc_status(rc, &code);
	respond_error(c, status, code, rt_lock_rc_message(rc), rt_lock_rc_name(rc));
}

static void lease_id_str(uint64_t owner, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, owner);
}

static bool parse_lease_id(const char *s, uint64_t *owner)
{
	if (!s || strlen(s) != 16)
		return false;
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char ch = s[i];
		int d = ch >= '0' && ch <= '9' ? ch - '0'
			: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
			: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	if (!(v & REST_OWNER_BIT))
		return false;
	*owner = v;
	return true;
}

static json_t *rest_grant(const char *name, uint64_t owner, const struct rt_lock_grant *g)
{
	char id[17];
	lease_id_str(owner, id);
	json_t *o = grant_json(name, g);
	json_object_set_new(o, "lease_id", json_string(id));
	return o;
}

void rt_lock_service_http(struct rt_lock_service *svc, struct rt_conn *c,
			  struct rt_http_req *req, const char *path,
			  const struct rt_jwt_claims *who_claims)
{
	const struct rt_jwt_claims claims = *who_claims; /* borrowed */
	json_t *body = NULL;
	char *name = NULL;
	const char *slash = strchr(path, '/');
	const char *rest = slash ? slash : "";
	bool is_renew = !strcmp(rest, "/renew");
	if (*rest && !is_renew) {
		respond_error(c, 404, "RTS404", "no such route: /locks/v1/<name>[/renew]", NULL);
		return;
	}
	name = rt_http_pct_decode(path, slash ? (size_t)(slash - path) : strlen(path), false);
	if (!name || !rt_locks_name_ok(name)) {
		respond_rc(c, RT_LOCK_BAD_NAME);
		goto out;
	}
	bool is_get = req->method == HTTP_GET || req->method == HTTP_HEAD;
	bool is_post = req->method == HTTP_POST, is_delete = req->method == HTTP_DELETE;
	if ((is_renew && !is_post) || (!is_get && !is_post && !is_delete)) {
		respond_error(c, 405, "RTS405", "GET, POST or DELETE /locks/v1/<name>; POST …/renew",
			      NULL);
		goto out;
	}
	char *topic = lock_topic(name);
	struct rt_auth who = {.role = claims.role, .claims = claims.claims, .topic = topic};
	struct rt_channel_access acc;
	int arc = rt_realtime_authorize(svc->rt, &who, true, &acc);
	free(topic);
	if (arc == 1) {
		rt_warn("lock %s: a policy on realtime.messages is outside the compiled subset; REST "
			"lock request denied", name);
		acc.may_read = acc.may_send = false;
	} else if (arc) {
		acc.may_read = acc.may_send = false;
	}
	if (is_get ? !acc.may_read : !acc.may_send) {
		RT_METRIC_ERROR(AUTH);
		respond_error(c, 403, "RTS403",
			      is_get ? "the channel policies do not let you read this lock"
				     : "the channel policies do not let you take this lock",
			      "forbidden");
		goto out;
	}
	uint64_t now = rt_mono_ms();
	if (is_get) {
		respond(c, 200, rt_locks_state(svc->table, now, name));
		goto out;
	}
	if (req->body.len > RT_LOCKS_MAX_BODY) {
		respond_error(c, 413, "RTS413", "the body is over 4096 bytes", NULL);
		goto out;
	}
	if (req->body.len) {
		body = json_loadb(req->body.data, req->body.len, 0, NULL);
		if (!json_is_object(body)) {
			respond_error(c, 400, "RTS400", "the body must be a JSON object", NULL);
			goto out;
		}
	}
	uint64_t lease = 0, wait = 0, tok = 0;
	if (!get_uint(body, "lease_ms", UINT32_MAX, &lease) ||
	    !get_uint(body, "wait_ms", UINT32_MAX, &wait) ||
	    !get_uint(body, "token", INT64_MAX, &tok)) {
		respond_error(c, 400, "RTS400",
			      "lease_ms and wait_ms are milliseconds and token a fencing token "
			      "(non-negative integers)",
			      "bad_request");
		goto out;
	}
	struct rt_lock_grant g;
	if (is_post && !is_renew) {
		uint64_t owner;
		rt_rand_bytes(&owner, sizeof owner);
		owner |= REST_OWNER_BIT;
		struct rest_wait *rw = NULL;
		if (wait) { /* registered first: the grant may come before acquire returns */
			rw = rt_xcalloc(1, sizeof *rw);
			rw->owner = owner;
			rw->w = rt_conn_worker(c);
			rw->conn_id = rt_conn_id(c);
			rw->name = rt_xstrdup(name);
			pthread_mutex_lock(&svc->mu);
			HASH_ADD(hh, svc->waits, owner, sizeof rw->owner, rw);
			pthread_mutex_unlock(&svc->mu);
		}
		enum rt_lock_rc rc = rt_locks_acquire(svc->table, now, name, owner, claims.sub, true,
						      (uint32_t)lease, (uint32_t)wait, &g);
		if (rc == RT_LOCK_QUEUED)
			goto out; /* answered by rt_lock_service_drain */
		if (rw) {
			pthread_mutex_lock(&svc->mu);
			HASH_DEL(svc->waits, rw);
			pthread_mutex_unlock(&svc->mu);
			wait_free(rw);
		}
		if (rc == RT_LOCK_OK)
			respond(c, 200, rest_grant(name, owner, &g));
		else
			respond_rc(c, rc);
		goto out;
	}
	/* renew and release name a lease */
	const char *lid = json_string_value(json_object_get(body, "lease_id"));
	char *qid = lid ? NULL : rt_http_query_get(req->query, "lease_id");
	uint64_t owner = 0;
	bool ok = parse_lease_id(lid ? lid : qid, &owner);
	free(qid);
	if (!ok) {
		respond_error(c, 400, "RTS400",
			      "lease_id (the 16 hex digits an acquisition returned) is required",
			      "bad_request");
		goto out;
	}
	if (is_renew) {
		enum rt_lock_rc rc =
			rt_locks_renew(svc->table, now, name, owner, tok, (uint32_t)lease, &g);
		if (rc == RT_LOCK_OK)
			respond(c, 200, rest_grant(name, owner, &g));
		else
			respond_rc(c, rc);
	} else {
		enum rt_lock_rc rc = rt_locks_release(svc->table, now, name, owner, tok);
		if (rc == RT_LOCK_OK)
			rt_conn_respond(c, 204, NULL, NULL, 0, NULL);
		else
			respond_rc(c, rc);
	}
out:
	json_decref(body);
	free(name);
}

void rt_lock_service_drain(struct rt_lock_service *svc, struct rt_worker *w)
{
	unsigned i = rt_worker_index(w);
	pthread_mutex_lock(&svc->mu);
	struct rest_wait *list = svc->done[i];
	svc->done[i] = NULL;
	pthread_mutex_unlock(&svc->mu);
	while (list) {
		struct rest_wait *rw = list;
		list = rw->next;
		struct rt_conn *c = rt_worker_find_conn(w, rw->conn_id);
		if (rw->is_granted && (!c || rt_conn_is_closing(c))) {
			/* nobody to tell: the lock goes to the next waiter */
			rt_locks_release(svc->table, rt_mono_ms(), rw->name, rw->owner, rw->g.token);
		} else if (rw->is_granted) {
			respond(c, 200, rest_grant(rw->name, rw->owner, &rw->g));
		} else if (c) {
			respond_error(c, 409, "RTS409", "the wait ended before the lock was free",
				      "timeout");
		}
		wait_free(rw);
	}
}
