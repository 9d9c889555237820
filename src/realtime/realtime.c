#include "realtime/realtime.h"

#include "realtime/realtime_int.h"
#include "realtime/writes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utlist.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/rand.h"
#include "flags/flags.h"
#include "activity/activity.h"
#include "live/live.h"
#include "locks/service.h"
#include "notify/notify.h"

#define TOPIC_PREFIX "realtime:"
#define TOPIC_PREFIX_LEN 9

struct rt_channel {
	struct rt_session *s;
	uint64_t id;
	char *topic;     /* "realtime:<sub>" (these three strings follow the struct) */
	const char *sub; /* points into topic */
	char *key;       /* hub key: "pub:<sub>" or "priv:<sub>" */
	char *join_ref;  /* NULL when the join had none */
	bool is_private, self, ack;
	/* channel authorization, decided at the join and on each token refresh */
	bool may_send, may_track;
	bool presence_enabled, is_tracked;
	char *pkey;          /* presence key; NULL until needed when the client gave none */
	uint64_t token_hash; /* of the token the channel's claims came from */
	struct rt_jwt_claims *own; /* claims of its own token; NULL: the session's */
	uint64_t pres_window_start_ms;
	unsigned pres_calls;
	struct rt_bucket events; /* channel events per second (docs/limits.md) */
	struct rt_sub hsub;
	struct chan_pg *pg; /* postgres_changes state, NULL without bindings */
	struct chan_live *live; /* live queries, NULL without any */
	unsigned flags_off;     /* RT_FLAG_* features switched off here (docs/flags.md) */
	json_t *flags_view;     /* the flags last reported to the client; NULL without flags */
	struct rt_channel *prev, *next; /* the session's channels */
};

/* A channel's postgres_changes state, apart so a broadcast-only channel (the
 * common idle socket) does not carry it. */
struct chan_pg {
	struct rt_channel *ch;
	struct rt_bgroup *bgroup;  /* the channel's bindings */
	struct rt_sub pgsub;       /* live deliveries of the group */
	struct rt_sub catchup_sub; /* the channel's own key, while resuming */
	json_t *entries;           /* the postgres_changes entries (re-parsed on refresh) */
	uint64_t sent_pos;         /* the last position the channel has been given */
	unsigned gen;              /* catch-up requests made (their hub keys differ) */
	bool is_catching_up;
	bool is_overflowed;    /* too many live changes held during the catch-up */
	uint64_t resume_floor; /* live changes at or below this came in the catch-up */
	uint64_t catchup_pos;  /* the last position the running catch-up gave (or its start) */
	struct rt_msg **held;  /* live changes held during the catch-up */
	size_t n_held;
};

#define MAX_HELD 10000

/* A channel's live queries (docs/live.md): one subscriber of the live
 * module, publishing to a hub key of the channel's own. */
struct chan_live {
	struct rt_channel *ch;
	struct rt_live_sub *sub;
	struct rt_sub hsub;
	json_t *defs; /* id → definition: subscribed again under new claims */
	struct rt_live_opts o;
	uint64_t pos; /* of the last message delivered */
	unsigned gen;
};

struct rt_session {
	struct rt_realtime_worker *rw;
	struct rt_conn *c;
	enum rt_phx_vsn vsn;
	uint64_t token_hash;
	struct rt_jwt_claims claims; /* role, sub, exp and the whole claims object */
	struct rt_channel *channels; /* list: at most max_channels */
	unsigned n_channels;
	struct rt_writes_queue writes; /* store requests of the socket (writes.h) */
	uint64_t n_malformed;
	struct rt_quota_conn quota; /* the connection's count and rates (docs/limits.md) */
	struct rt_session *prev, *next;
};

/* ---- shared state ---- */

struct rt_realtime *rt_realtime_new(const struct rt_realtime_config *cfg)
{
	struct rt_realtime *rt = rt_xcalloc(1, sizeof *rt);
	rt->cfg = *cfg;
	if (!(rt->keys = cfg->keys)) {
		char err[256];
		struct rt_keyring_config kc = {.secret = cfg->jwt_secret};
		rt->keys = rt->own_keys = rt_keyring_new(&kc, err, sizeof err); /* no I/O: cannot fail */
		if (!rt->keys)
			abort();
	}
	rt->hub = rt_hub_new();
	rt->presence = rt_presence_new();
	return rt;
}

void rt_realtime_free(struct rt_realtime *rt)
{
	if (!rt)
		return;
	rt_changes_free(rt->changes); /* stops the change thread first */
	rt_live_free(rt->live);
	rt_presence_free(rt->presence);
	rt_hub_free(rt->hub);
	rt_keyring_free(rt->own_keys);
	free(rt);
}

void rt_realtime_set_store(struct rt_realtime *rt, struct rt_store *store)
{
	rt->store = store;
	rt->changes = rt_changes_new(store, rt->hub);
	rt->live = rt_live_new(store, rt->hub);
	rt_changes_set_live(rt->changes, rt->live);
}

bool rt_realtime_role_allowed(const struct rt_realtime *rt, const char *role)
{
	if (!role)
		return false;
	for (unsigned i = 0; i < RT_REALTIME_MAX_ROLES && rt->cfg.private_roles[i]; i++)
		if (!strcmp(rt->cfg.private_roles[i], role))
			return true;
	return false;
}

struct rt_realtime_worker *rt_realtime_worker_new(struct rt_realtime *rt, struct rt_worker *w)
{
	struct rt_realtime_worker *rw = rt_xcalloc(1, sizeof *rw);
	rw->rt = rt;
	rw->w = w;
	rw->hub = rt_hub_local_new(rt->hub, w);
	return rw;
}

#define TOKEN_CACHE 256 /* entries per worker, direct-mapped by hash */

struct rt_token_entry {
	char *token; /* NULL: empty slot */
	size_t len;
	char *role;
	char *sub;
	int64_t exp;
	json_t *claims; /* the whole object: a token seen before yields the same claims */
	uint64_t generation; /* of the keys that checked it */
};

static void token_entry_clear(struct rt_token_entry *e)
{
	free(e->token);
	free(e->role);
	free(e->sub);
	json_decref(e->claims);
	memset(e, 0, sizeof *e);
}

void rt_realtime_worker_free(struct rt_realtime_worker *rw)
{
	if (!rw)
		return;
	rt_hub_local_free(rw->hub);
	rt_flagset_unref(rw->flags);
	if (rw->tokens) {
		for (size_t i = 0; i < TOKEN_CACHE; i++)
			token_entry_clear(&rw->tokens[i]);
		free(rw->tokens);
	}
	free(rw);
}

static uint64_t token_hash_n(const char *tok, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)tok[i]) * 1099511628211ull;
	return h;
}

enum rt_jwt_result rt_realtime_verify(struct rt_realtime_worker *rw, const char *token,
				      size_t token_len, struct rt_jwt_claims *out,
				      int64_t *expired_ago_s)
{
	int64_t now = rt_wall_s();
	if (!rw->tokens)
		rw->tokens = rt_xcalloc(TOKEN_CACHE, sizeof *rw->tokens);
	struct rt_token_entry *e = &rw->tokens[token_hash_n(token, token_len) % TOKEN_CACHE];
	uint64_t gen = rt_keyring_generation(rw->rt->keys); /* new keys: check again */
	if (e->token && e->len == token_len && !memcmp(e->token, token, token_len) && e->exp > now &&
	    e->generation == gen) {
		memset(out, 0, sizeof *out);
		out->role = rt_xstrdup(e->role);
		out->sub = e->sub ? rt_xstrdup(e->sub) : NULL;
		out->exp = e->exp;
		out->claims = e->claims ? json_deep_copy(e->claims) : NULL;
		return RT_JWT_OK;
	}
	/* a miss, or expired since: the full check (and its exact error) */
	enum rt_jwt_result r =
		rt_keyring_verify(rw->rt->keys, token, token_len, now, out, expired_ago_s);
	if (r != RT_JWT_OK)
		return r;
	token_entry_clear(e);
	e->token = rt_xmalloc(token_len);
	memcpy(e->token, token, token_len);
	e->len = token_len;
	e->role = rt_xstrdup(out->role);
	e->sub = out->sub ? rt_xstrdup(out->sub) : NULL;
	e->exp = out->exp;
	e->claims = out->claims ? json_deep_copy(out->claims) : NULL;
	e->generation = gen;
	return RT_JWT_OK;
}

static void flags_sync(struct rt_realtime_worker *rw);

void rt_realtime_worker_wake(struct rt_realtime_worker *rw)
{
	flags_sync(rw);
	rt_hub_drain(rw->hub);
}

/* ---- sending ---- */

static void send_text(struct rt_session *s, const char *join_ref, const char *ref,
		      const char *topic, const char *event, const json_t *payload)
{
	if (!payload) { /* json_pack refused a string: never send a broken frame */
		rt_error("conn %s: %s on %s not sent: payload could not be encoded",
			 rt_conn_peer(s->c), event, topic);
		return;
	}
	struct rt_buf b;
	rt_buf_init(&b);
	rt_phx_encode_text_json(s->vsn, &b, join_ref, ref, topic, event, payload);
	rt_conn_send_ws(s->c, RT_WS_TEXT, b.data, b.len);
	rt_buf_deinit(&b);
}

/* A phx_reply; takes response. */
static void reply(struct rt_session *s, const char *join_ref, const char *ref, const char *topic,
		  const char *status, json_t *response)
{
	json_t *p = json_pack("{s:s,s:o}", "status", status, "response",
			      response ? response : json_object());
	send_text(s, join_ref, ref, topic, "phx_reply", p);
	json_decref(p);
}

static void reply_reason(struct rt_session *s, const char *join_ref, const char *ref,
			 const char *topic, const char *reason)
{
	reply(s, join_ref, ref, topic, "error", json_pack("{s:s}", "reason", reason));
}

void rt_session_reply(struct rt_session *s, const char *join_ref, const char *ref,
		      const char *topic, const char *status, json_t *response)
{
	reply(s, join_ref, ref, topic, status, response);
}

struct rt_writes_queue *rt_session_writes(struct rt_session *s)
{
	return &s->writes;
}

struct rt_conn *rt_session_conn(struct rt_session *s)
{
	return s->c;
}

enum rt_phx_vsn rt_session_vsn(struct rt_session *s)
{
	return s->vsn;
}

/* A system message to the channel; extra members (may be NULL) are added to it. */
static void system_msg_with(struct rt_channel *ch, const char *extension, const char *status,
			    const char *message, json_t *extra)
{
	json_t *p = json_pack("{s:s,s:s,s:s,s:s}", "extension", extension, "status", status,
			      "message", message, "channel", ch->sub);
	if (extra)
		json_object_update(p, extra);
	send_text(ch->s, ch->join_ref, NULL, ch->topic, "system", p);
	json_decref(p);
}

static void system_msg(struct rt_channel *ch, const char *extension, const char *status,
		       const char *message)
{
	system_msg_with(ch, extension, status, message, NULL);
}

static void send_close(struct rt_channel *ch)
{
	json_t *p = json_object();
	send_text(ch->s, ch->join_ref, ch->join_ref, ch->topic, "phx_close", p);
	json_decref(p);
}

/* ---- channels ---- */

static struct rt_channel *find_channel(struct rt_session *s, const char *topic)
{
	struct rt_channel *ch;
	DL_FOREACH(s->channels, ch)
		if (!strcmp(ch->topic, topic))
			return ch;
	return NULL;
}

/* Tokens are remembered by a 64-bit hash (FNV-1a): only to skip refreshing
 * with the token a channel already has. A collision would only skip one
 * refresh, the claims in force stay verified ones. */
static uint64_t token_hash(const char *tok)
{
	uint64_t h = 1469598103934665603ull;
	for (; *tok; tok++)
		h = (h ^ (uint8_t)*tok) * 1099511628211ull;
	return h;
}

/* The claims in force on a channel. */
static const struct rt_jwt_claims *chan_claims(const struct rt_channel *ch)
{
	return ch->own ? ch->own : &ch->s->claims;
}

/* The requester a channel acts as (its claims, its sub-topic for
 * realtime.topic()); borrowed from the channel. */
static struct rt_auth chan_auth(const struct rt_channel *ch)
{
	const struct rt_jwt_claims *cl = chan_claims(ch);
	return (struct rt_auth){.role = cl->role, .claims = cl->claims, .topic = ch->sub};
}

/* Column types of realtime.messages, for policies on it. */
static const char *messages_type(const char *column, void *ctx)
{
	(void)ctx;
	if (!strcmp(column, "private"))
		return "bool";
	if (!strcmp(column, "payload"))
		return "jsonb";
	if (!strcmp(column, "inserted_at") || !strcmp(column, "updated_at"))
		return "timestamp";
	if (!strcmp(column, "id"))
		return "uuid";
	return "text"; /* topic, extension, event */
}

/* Whether the policies on realtime.messages let who run cmd (SELECT: read,
 * INSERT: write) for extension on who->topic: 1 yes, 0 no, -1 the database
 * must say (a policy outside the compiled subset). */
static int messages_allowed(struct rt_policies *pol, const struct rt_auth *who, unsigned cmd,
			    const char *extension)
{
	struct rt_query_node pred;
	bool is_check = cmd == RT_POLICY_INSERT;
	enum rt_policy_verdict v =
		rt_policies_predicate(pol, "realtime", "messages", cmd, is_check, who, &pred);
	int ok = 0;
	switch (v) {
	case RT_POLICY_ALLOW_ALL:
		ok = 1;
		break;
	case RT_POLICY_DENY_ALL:
		break;
	case RT_POLICY_ROWS: {
		json_t *row = json_pack("{s:s,s:s,s:b}", "topic", who->topic ? who->topic : "",
					"extension", extension, "private", 1);
		ok = row && rt_policy_eval(&pred, row, messages_type, NULL) == 1;
		json_decref(row);
		rt_query_node_deinit(&pred);
		break;
	}
	case RT_POLICY_OPAQUE:
		ok = -1;
		break;
	}
	return ok;
}

/* A lock's channel, lock:<name> (docs/locks.md). */
static bool is_lock_topic(const char *topic)
{
	return !strncmp(topic, RT_LOCKS_TOPIC_PREFIX, strlen(RT_LOCKS_TOPIC_PREFIX));
}

/* An activity feed's channel, activity:<channel> (docs/activity.md). */
static bool is_activity_topic(const char *topic)
{
	return !strncmp(topic, RT_ACTIVITY_TOPIC_PREFIX, strlen(RT_ACTIVITY_TOPIC_PREFIX));
}

static bool is_user_topic(const char *topic)
{
	return topic && !strncmp(topic, RT_REALTIME_USER_TOPIC_PREFIX,
				 strlen(RT_REALTIME_USER_TOPIC_PREFIX));
}

/* A user's own channel (RT_REALTIME_USER_TOPIC_PREFIX): only its user (JWT
 * sub) or the service role may read, only the service role send or track;
 * narrows a (for other topics leaves it). Returns a->may_read. */
static bool user_topic_clamp(const struct rt_auth *who, struct rt_channel_access *a)
{
	if (!is_user_topic(who->topic))
		return a->may_read;
	const char *user = who->topic + strlen(RT_REALTIME_USER_TOPIC_PREFIX);
	bool is_service = who->role && !strcmp(who->role, "service_role");
	const char *sub = json_string_value(json_object_get(who->claims, "sub"));
	if (!is_service && (!sub || !*user || strcmp(sub, user)))
		a->may_read = false;
	if (!is_service)
		a->may_send = a->may_track = false;
	return a->may_read;
}

/* The channel policies' decision, or the configured roles' (see below). */
static int authorize_private(struct rt_realtime *rt, const struct rt_auth *who,
			     struct rt_channel_access *out);

int rt_realtime_authorize(struct rt_realtime *rt, const struct rt_auth *who, bool is_private,
			  struct rt_channel_access *out)
{
	*out = (struct rt_channel_access){true, true, true};
	if (!is_private)
		return 0;
	if (!is_user_topic(who->topic))
		return authorize_private(rt, who, out);
	struct rt_channel_access all = {true, true, true};
	if (!user_topic_clamp(who, &all)) {
		*out = all;
		return -1;
	}
	int rc = authorize_private(rt, who, out);
	user_topic_clamp(who, out);
	return rc;
}

static int authorize_private(struct rt_realtime *rt, const struct rt_auth *who,
			     struct rt_channel_access *out)
{
	*out = (struct rt_channel_access){true, true, true};
	struct rt_policies *pol = rt->store ? rt_store_policies(rt->store) : NULL;
	if (pol && rt_policies_has_any(pol, "realtime", "messages") &&
	    !rt_policies_is_enabled(pol, "realtime", "messages")) {
		/* Supabase's realtime.messages always has RLS on: policies written
		 * for it but not enforced would open every private channel. */
		rt_warn("channel %s: realtime.messages has policies but row level security is not "
			"enabled on it (ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY); "
			"private channel access denied", who->topic ? who->topic : "");
		*out = (struct rt_channel_access){false, false, false};
	} else if (pol && rt_policies_has_any(pol, "realtime", "messages")) {
		/* Supabase: a join needs read for broadcast or for presence */
		int rb = messages_allowed(pol, who, RT_POLICY_SELECT, "broadcast");
		int rp = messages_allowed(pol, who, RT_POLICY_SELECT, "presence");
		int wb = messages_allowed(pol, who, RT_POLICY_INSERT, "broadcast");
		int wp = messages_allowed(pol, who, RT_POLICY_INSERT, "presence");
		if (rb < 0 || rp < 0 || wb < 0 || wp < 0) { /* the database decides it all */
			rt_policies_unref(pol);
			*out = (struct rt_channel_access){false, false, false};
			return 1;
		}
		*out = (struct rt_channel_access){rb || rp, wb, wp};
	} else { /* no channel policies: the configured roles */
		bool ok = rt_realtime_role_allowed(rt, who->role);
		*out = (struct rt_channel_access){ok, ok, ok};
	}
	rt_policies_unref(pol);
	return out->may_read ? 0 : -1;
}

static void channel_free(struct rt_channel *ch)
{
	struct rt_session *s = ch->s;
	struct rt_realtime_worker *rw = s->rw;
	/* Unsubscribe first: the leave diff is for the others, not for this socket. */
	rt_hub_unsubscribe(rw->hub, &ch->hsub);
	if (ch->is_tracked)
		rt_presence_untrack(rw->rt->presence, rw->hub, ch->key, ch->topic, ch->id);
	struct chan_pg *pg = ch->pg;
	if (pg) {
		rt_hub_unsubscribe(rw->hub, &pg->pgsub);
		rt_changes_detach(rw->rt->changes, pg->bgroup);
		rt_hub_unsubscribe(rw->hub, &pg->catchup_sub);
		for (size_t i = 0; i < pg->n_held; i++)
			rt_msg_unref(pg->held[i]);
		free(pg->held);
		json_decref(pg->entries);
		free(pg);
	}
	if (ch->live) {
		rt_hub_unsubscribe(rw->hub, &ch->live->hsub);
		rt_live_sub_free(rw->rt->live, ch->live->sub);
		json_decref(ch->live->defs);
		free(ch->live);
	}
	if (rw->rt->locks && is_lock_topic(ch->sub)) /* the channel owned its locks */
		rt_lock_service_drop(rw->rt->locks, ch->id);
	DL_DELETE(s->channels, ch);
	s->n_channels--;
	RT_METRIC_INC(channels_closed);
	json_decref(ch->flags_view);
	free(ch->pkey);
	if (ch->own) {
		rt_jwt_claims_deinit(ch->own);
		free(ch->own);
	}
	free(ch);
}

/* Server-initiated close: a system error, then phx_close (no client rejoin). */
static void channel_shutdown(struct rt_channel *ch, const char *message)
{
	RT_METRIC_ERROR(CHANNEL_SHUTDOWN);
	rt_info("conn %s: closing channel %s: %s", rt_conn_peer(ch->s->c), ch->topic, message);
	system_msg(ch, "system", "error", message);
	send_close(ch);
	channel_free(ch);
}

static void channel_deliver(struct rt_sub *sub, struct rt_msg *m)
{
	struct rt_channel *ch = (struct rt_channel *)((char *)sub - offsetof(struct rt_channel, hsub));
	if (m->kind == RT_MSG_PRESENCE && !ch->presence_enabled)
		return;
	if ((m->sender == ch->id && !ch->self) || (m->target && m->target != ch->id))
		return;
	if (ch->flags_off) { /* a feature switched off by a flag delivers nothing */
		unsigned need = m->kind == RT_MSG_PRESENCE ? RT_FLAG_PRESENCE : RT_FLAG_BROADCAST;
		if (m->kind != RT_MSG_PRESENCE && is_user_topic(ch->sub))
			need |= RT_FLAG_NOTIFICATIONS;
		if (ch->flags_off & need)
			return;
	}
	if (m->admit) {
		struct rt_auth who = chan_auth(ch);
		if (!m->admit(m->admit_ctx, &who))
			return;
	}
	struct rt_frame *f = ch->s->vsn == RT_PHX_V1 ? m->v1 : m->v2;
	if (f)
		rt_conn_send(ch->s->c, f);
}

/* A live postgres_changes delivery for the channel's bindings. */
static void binding_deliver(struct rt_sub *sub, struct rt_msg *m)
{
	struct chan_pg *pg = (struct chan_pg *)((char *)sub - offsetof(struct chan_pg, pgsub));
	struct rt_channel *ch = pg->ch;
	if (ch->flags_off & RT_FLAG_POSTGRES_CHANGES)
		return; /* switched off: a catch-up from sent_pos brings it when back on */
	if (pg->is_catching_up) {
		if (pg->n_held == MAX_HELD) {
			pg->is_overflowed = true;
			return;
		}
		if (!pg->held)
			pg->held = rt_xmalloc(MAX_HELD * sizeof *pg->held);
		pg->held[pg->n_held++] = rt_msg_ref(m);
		return;
	}
	if (m->pos <= pg->resume_floor)
		return; /* already sent by the catch-up */
	struct rt_frame *f = ch->s->vsn == RT_PHX_V1 ? m->v1 : m->v2;
	rt_conn_send(ch->s->c, f);
	if (m->pos > pg->sent_pos)
		pg->sent_pos = m->pos;
}

static void resync_msg(struct rt_channel *ch, const char *why)
{
	json_t *p = json_pack("{s:s,s:s,s:s,s:s,s:b}", "extension", "postgres_changes", "status",
			      "error", "message", why, "channel", ch->sub, "resync_required", 1);
	send_text(ch->s, ch->join_ref, NULL, ch->topic, "system", p);
	json_decref(p);
}

/* Catch-up deliveries on the channel's own key, then the marker. */
static void catchup_deliver(struct rt_sub *sub, struct rt_msg *m)
{
	struct chan_pg *pg =
		(struct chan_pg *)((char *)sub - offsetof(struct chan_pg, catchup_sub));
	struct rt_channel *ch = pg->ch;
	if (ch->flags_off & RT_FLAG_POSTGRES_CHANGES)
		return; /* switched off: the catch-up starts again when back on */
	if (m->kind == RT_MSG_CHANGE) {
		rt_conn_send(ch->s->c, ch->s->vsn == RT_PHX_V1 ? m->v1 : m->v2);
		pg->catchup_pos = m->pos;
		if (m->pos > pg->sent_pos)
			pg->sent_pos = m->pos;
		return;
	}
	if (m->kind != RT_MSG_CATCHUP || !pg->is_catching_up)
		return;
	pg->is_catching_up = false;
	pg->resume_floor = m->pos;
	if (m->pos > pg->sent_pos)
		pg->sent_pos = m->pos;
	if (m->is_resync)
		resync_msg(ch, "The resume position is older than the retained changes; refetch "
			       "the data you show, then subscribe without resume_after");
	for (size_t i = 0; i < pg->n_held; i++) {
		if (!pg->is_overflowed)
			binding_deliver(&pg->pgsub, pg->held[i]);
		rt_msg_unref(pg->held[i]);
	}
	pg->n_held = 0;
	if (pg->is_overflowed)
		resync_msg(ch, "Too many changes arrived while catching up; refetch the data you "
			       "show, then subscribe again");
	pg->is_overflowed = false;
}

/* ---- notifications over the socket (docs/notifications.md) ---- */

static char *dup_or_null(const char *v)
{
	return v ? rt_xstrdup(v) : NULL;
}


/* A direct send (`notify`) or the counts pushed after a join, on the pool. */
struct notify_call {
	struct rt_notify *n;
	json_t *req;   /* a send's body; NULL: the counts of user */
	char *user;
	char *join_ref, *ref, *topic;
	uint64_t chan_id;
	int status;
	json_t *out;
};

static void notify_call_free(void *ctx)
{
	struct notify_call *nc = ctx;
	json_decref(nc->req);
	json_decref(nc->out);
	free(nc->user);
	free(nc->join_ref);
	free(nc->ref);
	free(nc->topic);
	free(nc);
}

static void notify_call_work(void *ctx)
{
	struct notify_call *nc = ctx;
	if (nc->req)
		nc->status = rt_notify_send(nc->n, nc->req, &nc->out);
	else
		nc->status = rt_notify_counts(nc->n, nc->user, &nc->out);
}

static void notify_reply_error(struct rt_session *s, const char *join_ref, const char *ref,
			       const char *topic, const char *code, const char *reason,
			       const char *details)
{
	if (!ref)
		return;
	reply(s, join_ref, ref, topic, "error",
	      json_pack("{s:s,s:s,s:s?}", "reason", reason, "code", code, "details", details));
}

static void notify_send_done(struct rt_session *s, void *ctx, bool is_cancelled)
{
	struct notify_call *nc = ctx;
	if (!nc->ref)
		return;
	if (is_cancelled) {
		notify_reply_error(s, nc->join_ref, nc->ref, nc->topic, "RTS503",
				   "the request was cancelled", NULL);
	} else if (nc->status == 201 && nc->out) {
		reply(s, nc->join_ref, nc->ref, nc->topic, "ok", json_incref(nc->out));
	} else {
		const char *code = json_string_value(json_object_get(nc->out, "code"));
		const char *msg = json_string_value(json_object_get(nc->out, "message"));
		const char *det = json_string_value(json_object_get(nc->out, "details"));
		notify_reply_error(s, nc->join_ref, nc->ref, nc->topic, code ? code : "RTS500",
				   msg ? msg : "the send failed", det);
	}
}

/* `notify` {the body of POST /notify/v1/send}: a direct send by the service
 * role, answered ok {ids, recipients} or error {reason, code}. */
static void handle_notify(struct rt_channel *ch, struct rt_phx_msg *m)
{
	struct rt_session *s = ch->s;
	struct rt_notify *n = s->rw->rt->notify;
	const char *role = chan_claims(ch)->role;
	if (!n) {
		notify_reply_error(s, ch->join_ref, m->ref, ch->topic, "RTS404",
				   "notifications are not enabled on this server", NULL);
		return;
	}
	if (!role || strcmp(role, "service_role")) {
		RT_METRIC_ERROR(AUTH);
		notify_reply_error(s, ch->join_ref, m->ref, ch->topic, "RTS403",
				   "only the service role may send notifications: join the "
				   "channel with a service_role token",
				   NULL);
		return;
	}
	if (!json_is_object(m->payload)) {
		notify_reply_error(s, ch->join_ref, m->ref, ch->topic, "RTS400",
				   "the payload must be an object (the body of POST /notify/v1/send)",
				   NULL);
		return;
	}
	struct notify_call *nc = rt_xcalloc(1, sizeof *nc);
	nc->n = n;
	nc->req = json_deep_copy(m->payload);
	nc->join_ref = dup_or_null(ch->join_ref);
	nc->ref = dup_or_null(m->ref);
	nc->topic = rt_xstrdup(ch->topic);
	rt_writes_call(s, ch->join_ref, m->ref, ch->topic, notify_call_work, notify_send_done,
		       notify_call_free, nc);
}

static void inbox_state_done(struct rt_session *s, void *ctx, bool is_cancelled)
{
	struct notify_call *nc = ctx;
	struct rt_channel *ch = find_channel(s, nc->topic);
	if (is_cancelled || nc->status != 200 || !ch || ch->id != nc->chan_id)
		return; /* the channel left (or joined again: that join pushes its own) */
	json_t *p = json_pack("{s:s,s:s,s:O}", "type", "broadcast", "event", "inbox_state",
			      "payload", nc->out);
	send_text(s, ch->join_ref, NULL, ch->topic, "broadcast", p);
	json_decref(p);
}

/* After a join of a user's channel: its inbox counts as an `inbox_state`
 * event, read on the pool behind the session's other requests. */
static void push_inbox_state(struct rt_channel *ch)
{
	struct notify_call *nc = rt_xcalloc(1, sizeof *nc);
	nc->n = ch->s->rw->rt->notify;
	nc->user = rt_xstrdup(ch->sub + strlen(RT_REALTIME_USER_TOPIC_PREFIX));
	nc->topic = rt_xstrdup(ch->topic);
	nc->chan_id = ch->id;
	rt_writes_call(ch->s, ch->join_ref, NULL, ch->topic, notify_call_work, inbox_state_done,
		       notify_call_free, nc);
}

/* ---- locks over the socket (docs/locks.md) ---- */

/* lock_acquire, lock_renew, lock_release, lock_state on realtime:lock:<name>:
 * the lock service answers; the channel is the owner. */
static void handle_lock(struct rt_channel *ch, struct rt_phx_msg *m)
{
	struct rt_session *s = ch->s;
	struct rt_lock_service *svc = s->rw->rt->locks;
	const char *status = "error";
	json_t *resp = NULL;
	if (!svc)
		resp = json_pack("{s:s,s:s}", "reason", "locks are not enabled on this server",
				 "code", "RTS404");
	else if (!is_lock_topic(ch->sub))
		resp = json_pack("{s:s,s:s}", "reason",
				 "lock events go to a lock's channel, realtime:lock:<name>", "code",
				 "RTS400");
	else if (!rt_lock_service_socket(svc, ch->sub + strlen(RT_LOCKS_TOPIC_PREFIX), ch->id,
					 chan_claims(ch)->sub, ch->may_send, m->event, m->payload,
					 &status, &resp))
		return; /* another lock_… event: ignored as unknown events are */
	if (m->ref)
		reply(s, ch->join_ref, m->ref, ch->topic, status, resp);
	else
		json_decref(resp);
}

/* ---- join ---- */

/* Supabase accepts booleans and the strings "true"/"false" in any case. */
static bool get_bool(const json_t *obj, const char *name, bool dflt)
{
	const json_t *v = json_object_get(obj, name);
	if (json_is_boolean(v))
		return json_is_true(v);
	if (json_is_string(v)) {
		if (!strcasecmp(json_string_value(v), "true"))
			return true;
		if (!strcasecmp(json_string_value(v), "false"))
			return false;
	}
	return dflt;
}

/* The token a join or refresh names: user_token, else access_token unless it
 * is an API key ("sb_…"); NULL means "use the socket's token". */
static const char *join_token(const json_t *payload)
{
	const json_t *ut = json_object_get(payload, "user_token");
	if (json_is_string(ut))
		return json_string_value(ut);
	const json_t *at = json_object_get(payload, "access_token");
	if (json_is_string(at) && strncmp(json_string_value(at), "sb_", 3))
		return json_string_value(at);
	return NULL;
}

static void join_error(struct rt_session *s, const struct rt_phx_msg *m, const char *reason)
{
	RT_METRIC_INC(joins_err);
	RT_METRIC_ERROR(JOIN_REJECTED);
	rt_debug("conn %s: join %s rejected: %s", rt_conn_peer(s->c), m->topic, reason);
	reply_reason(s, m->join_ref, m->ref, m->topic, reason);
}

/* A stable id for a postgres_changes entry: FNV-1a of its JSON, 27 bits. */
static json_int_t binding_id(const json_t *entry)
{
	char *txt = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
	uint32_t h = 2166136261u;
	for (const char *p = txt; p && *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	free(txt);
	return (json_int_t)(h & ((1u << 27) - 1));
}

static const char *str_or(const json_t *obj, const char *name, const char *dflt)
{
	const char *v = json_string_value(json_object_get(obj, name));
	return v ? v : dflt;
}

/* A resume position: a decimal string or a non-negative integer. */
static bool resume_after(const json_t *ext, uint64_t *out)
{
	const json_t *v = json_object_get(ext, "resume_after");
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return true;
	}
	const char *s = json_string_value(v);
	if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19)
		return false;
	*out = strtoull(s, NULL, 10);
	return true;
}

/* Asks the feed for the changes after `after` that match the channel's group,
 * on a hub key of this request alone (an older request's deliveries, still
 * on their way, go to a key nobody listens to any more). */
static void start_catchup(struct rt_channel *ch, uint64_t after)
{
	struct rt_realtime_worker *rw = ch->s->rw;
	struct chan_pg *pg = ch->pg;
	char key[64];
	snprintf(key, sizeof key, "chan:%llu:%u", (unsigned long long)ch->id, ++pg->gen);
	pg->catchup_sub.deliver = catchup_deliver;
	pg->catchup_pos = after;
	pg->is_catching_up = true;
	pg->is_overflowed = false;
	rt_hub_subscribe(rw->hub, key, &pg->catchup_sub);
	rt_changes_resume(rw->rt->changes, key, after, pg->bgroup);
}

/* Where a new catch-up starts so the channel misses nothing: after the last
 * change the running catch-up gave (its changes are older than sent_pos,
 * which the attach set), else after the last one the channel was given. */
static uint64_t resume_pos(const struct chan_pg *pg)
{
	return pg->is_catching_up ? pg->catchup_pos : pg->sent_pos;
}

/* Attaches the channel's bindings (taking them) and, with a resume position,
 * asks the feed for the changes the client missed. */
static void subscribe_changes(struct rt_channel *ch, struct rt_binding **parsed, size_t n,
			      const json_t *ext, json_t *entries)
{
	struct rt_realtime_worker *rw = ch->s->rw;
	struct chan_pg *pg = rt_xcalloc(1, sizeof *pg);
	pg->ch = ch;
	pg->entries = json_incref(entries);
	ch->pg = pg;
	/* Subscribed first: a change the feed matches right after the attach is
	 * published to a key this worker already listens to. */
	char *gkey = rt_changes_group_key(parsed, n);
	pg->pgsub.deliver = binding_deliver;
	rt_hub_subscribe(rw->hub, gkey, &pg->pgsub);
	uint64_t start;
	pg->bgroup = rt_changes_attach(rw->rt->changes, parsed, n, &start);
	pg->sent_pos = start;
	free(gkey);
	/* rtsync adds the position the subscription starts after: a client that
	 * has seen no change yet resumes from it (docs/protocol.md). */
	char pos[24];
	snprintf(pos, sizeof pos, "%llu", (unsigned long long)start);
	json_t *extra = json_pack("{s:s}", "position", pos);
	system_msg_with(ch, "postgres_changes", "ok", "Subscribed to PostgreSQL", extra);
	json_decref(extra);
	uint64_t after;
	if (resume_after(ext, &after))
		start_catchup(ch, after);
}

/* ---- live queries ---- */

static void live_deliver(struct rt_sub *sub, struct rt_msg *m)
{
	struct chan_live *lv = (struct chan_live *)((char *)sub - offsetof(struct chan_live, hsub));
	struct rt_channel *ch = lv->ch;
	if (ch->flags_off & RT_FLAG_LIVE_QUERIES)
		return; /* switched off: started again from lv->pos when back on */
	struct rt_frame *f = ch->s->vsn == RT_PHX_V1 ? m->v1 : m->v2;
	if (f)
		rt_conn_send(ch->s->c, f);
	if (m->pos > lv->pos)
		lv->pos = m->pos;
}

/* Checks a list of definitions: an array of at most RT_LIVE_MAX_QUERIES
 * objects, each with a string id of 1 to RT_LIVE_MAX_ID bytes (the rest is
 * checked by the live module, which answers in its messages). */
static int live_check(const json_t *queries, char *err, size_t err_cap)
{
	if (!json_is_array(queries) || json_array_size(queries) > RT_LIVE_MAX_QUERIES) {
		snprintf(err, err_cap, "queries must be an array of at most %d definitions",
			 RT_LIVE_MAX_QUERIES);
		return -1;
	}
	size_t i;
	const json_t *q;
	json_array_foreach(queries, i, q) {
		const json_t *id = json_object_get(q, "id");
		if (!json_is_object(q) || !json_is_string(id) || !json_string_length(id) ||
		    json_string_length(id) > RT_LIVE_MAX_ID ||
		    strlen(json_string_value(id)) != json_string_length(id)) {
			snprintf(err, err_cap,
				 "queries[%zu]: a definition is an object with an id of 1 to %d bytes",
				 i, RT_LIVE_MAX_ID);
			return -1;
		}
	}
	return 0;
}

/* Starts (or starts again) the channel's live subscriber with its
 * definitions, resuming after `resume` (0: none). */
static void live_start(struct rt_channel *ch, uint64_t resume)
{
	struct rt_realtime_worker *rw = ch->s->rw;
	struct chan_live *lv = ch->live;
	if (lv->sub) {
		rt_hub_unsubscribe(rw->hub, &lv->hsub);
		rt_live_sub_free(rw->rt->live, lv->sub);
	}
	char key[64];
	snprintf(key, sizeof key, "live:%llu:%u", (unsigned long long)ch->id, ++lv->gen);
	lv->hsub.deliver = live_deliver;
	rt_hub_subscribe(rw->hub, key, &lv->hsub);
	struct rt_auth who = chan_auth(ch);
	lv->sub = rt_live_sub_new(rw->rt->live, key, ch->topic, ch->s->vsn, &who, &lv->o, resume);
	json_t *all = json_array();
	const char *id;
	json_t *d;
	json_object_foreach(lv->defs, id, d)
		json_array_append(all, d);
	if (json_array_size(all))
		rt_live_sub_add(rw->rt->live, lv->sub, all);
	json_decref(all);
}

/* Keeps the definitions (at most RT_LIVE_MAX_QUERIES ids; the live module
 * refuses the ones past it). */
static void live_keep(struct chan_live *lv, const json_t *queries)
{
	size_t i;
	const json_t *q;
	json_array_foreach(queries, i, q) {
		const char *id = json_string_value(json_object_get(q, "id"));
		if (json_object_get(lv->defs, id) || json_object_size(lv->defs) < RT_LIVE_MAX_QUERIES)
			json_object_set(lv->defs, id, (json_t *)q);
	}
}

static struct chan_live *live_new(struct rt_channel *ch, const struct rt_live_opts *o)
{
	struct chan_live *lv = rt_xcalloc(1, sizeof *lv);
	lv->ch = ch;
	lv->defs = json_object();
	if (o)
		lv->o = *o;
	ch->live = lv;
	return lv;
}

/* config.rtsync.live of a join: {queries, throttle_ms, debounce_ms,
 * max_wait_ms, resume_after}. Returns 0, or -1 with the reason. */
static int live_join(struct rt_channel *ch, const json_t *cfg, char *err, size_t err_cap)
{
	if (!ch->s->rw->rt->live) {
		snprintf(err, err_cap, "live queries need a store");
		return -1;
	}
	if (!json_is_object(cfg)) {
		snprintf(err, err_cap, "config.rtsync.live must be an object");
		return -1;
	}
	struct rt_live_opts o;
	const json_t *queries = json_object_get(cfg, "queries");
	if (rt_live_opts_parse(cfg, &o, err, err_cap) ||
	    (queries && live_check(queries, err, err_cap)))
		return -1;
	uint64_t resume = 0;
	if (json_object_get(cfg, "resume_after") && !resume_after(cfg, &resume)) {
		snprintf(err, err_cap, "resume_after must be a position (a decimal string)");
		return -1;
	}
	struct chan_live *lv = live_new(ch, &o);
	if (queries)
		live_keep(lv, queries);
	live_start(ch, resume);
	return 0;
}

/* live_subscribe {queries, throttle_ms?, debounce_ms?, max_wait_ms?,
 * resume_after?}: options (and a resume) start the channel's subscriber
 * again with them, from where it was when it had one. */
static void handle_live_subscribe(struct rt_channel *ch, struct rt_phx_msg *m)
{
	struct rt_session *s = ch->s;
	char err[256];
	const json_t *queries = json_object_get(m->payload, "queries");
	struct rt_live_opts o;
	uint64_t resume = ch->live ? ch->live->pos : 0;
	bool has_opts = json_object_get(m->payload, "throttle_ms") ||
			json_object_get(m->payload, "debounce_ms") ||
			json_object_get(m->payload, "max_wait_ms");
	bool has_resume = json_object_get(m->payload, "resume_after") != NULL;
	if (!s->rw->rt->live) {
		snprintf(err, sizeof err, "live queries need a store");
	} else if (ch->flags_off & RT_FLAG_LIVE_QUERIES) {
		snprintf(err, sizeof err, "FeatureDisabled: live_queries is switched off on this channel");
	} else if (live_check(queries, err, sizeof err) ||
		   rt_live_opts_parse(has_opts ? m->payload : NULL, &o, err, sizeof err)) {
		/* err says why */
	} else if (has_resume && !resume_after(m->payload, &resume)) {
		snprintf(err, sizeof err, "resume_after must be a position (a decimal string)");
	} else {
		struct chan_live *lv = ch->live ? ch->live : live_new(ch, &o);
		if (has_opts)
			lv->o = o;
		if (!lv->sub || has_opts || has_resume)
			live_start(ch, resume); /* the definitions it had resume */
		live_keep(lv, queries);
		rt_live_sub_add(s->rw->rt->live, lv->sub, queries);
		json_t *ids = json_array();
		size_t i;
		const json_t *q;
		json_array_foreach(queries, i, q)
			json_array_append(ids, json_object_get(q, "id"));
		reply(s, ch->join_ref, m->ref, ch->topic, "ok", json_pack("{s:o}", "ids", ids));
		return;
	}
	reply(s, ch->join_ref, m->ref, ch->topic, "error", json_pack("{s:s}", "reason", err));
}

static void handle_live_unsubscribe(struct rt_channel *ch, struct rt_phx_msg *m)
{
	struct rt_session *s = ch->s;
	const json_t *ids = json_object_get(m->payload, "ids");
	bool ok = json_is_array(ids) && json_array_size(ids) <= RT_LIVE_MAX_QUERIES;
	size_t i;
	const json_t *id;
	json_array_foreach(ids, i, id)
		ok = ok && json_is_string(id);
	if (!ok) {
		reply(s, ch->join_ref, m->ref, ch->topic, "error",
		      json_pack("{s:s}", "reason", "ids must be an array of at most 64 query ids"));
		return;
	}
	json_array_foreach(ids, i, id) {
		if (!ch->live || !json_object_get(ch->live->defs, json_string_value(id)))
			continue;
		json_object_del(ch->live->defs, json_string_value(id));
		rt_live_sub_remove(s->rw->rt->live, ch->live->sub, json_string_value(id));
	}
	reply(s, ch->join_ref, m->ref, ch->topic, "ok",
	      json_pack("{s:O}", "ids", (json_t *)ids));
}

/* ---- feature flags (docs/flags.md) ---- */

/* The features a channel is told the switching of: those it uses. */
static unsigned chan_features(const struct rt_channel *ch)
{
	unsigned f = RT_FLAG_BROADCAST;
	if (is_user_topic(ch->sub))
		f |= RT_FLAG_NOTIFICATIONS;
	if (ch->presence_enabled || ch->is_tracked)
		f |= RT_FLAG_PRESENCE;
	if (ch->pg)
		f |= RT_FLAG_POSTGRES_CHANGES;
	if (ch->live)
		f |= RT_FLAG_LIVE_QUERIES;
	return f;
}

/* Evaluates the worker's flags for the channel's requester and place (its
 * sub-topic and the tables of entries, its postgres_changes): returns the
 * features off, and the client's view in *view (NULL without flags). */
static unsigned chan_flags_eval(struct rt_channel *ch, const json_t *entries, bool is_exposed,
				json_t **view)
{
	struct rt_realtime_worker *rw = ch->s->rw;
	*view = NULL;
	if (!rw->flags)
		return 0;
	const char *tables[RT_REALTIME_MAX_BINDINGS];
	size_t n = 0, i;
	const json_t *e;
	json_array_foreach(entries, i, e) {
		if (n < RT_REALTIME_MAX_BINDINGS)
			tables[n++] = str_or(e, "table", "*");
	}
	const struct rt_jwt_claims *cl = chan_claims(ch);
	struct rt_flag_user u = {.sub = cl->sub, .claims = cl->claims};
	struct rt_flag_scope sc = {.channel = ch->sub, .tables = tables, .n_tables = n};
	*view = rt_flagset_view(rw->flags, &u, &sc, is_exposed);
	rt_flags_count_evaluations(rw->rt->flags, 1);
	return rt_flagset_features_off(rw->flags, &u, &sc);
}

/* The system message of a feature switched off or on for the channel. */
static void tell_feature(struct rt_channel *ch, unsigned bit, bool is_off)
{
	const char *name = rt_flag_feature_name(bit);
	char msg[160];
	snprintf(msg, sizeof msg, "%s is switched %s on this channel by a feature flag", name,
		 is_off ? "off" : "on");
	json_t *extra = json_pack("{s:s,s:b}", "feature", name, "enabled", !is_off);
	system_msg_with(ch, name, is_off ? "error" : "ok", msg, extra);
	json_decref(extra);
	rt_debug("conn %s: %s %s on %s by a flag", rt_conn_peer(ch->s->c), name,
		 is_off ? "off" : "on", ch->topic);
}

/* A feature switched back on: what the channel missed comes back. */
static void feature_resumed(struct rt_channel *ch, unsigned bit)
{
	struct rt_realtime_worker *rw = ch->s->rw;
	if (bit == RT_FLAG_POSTGRES_CHANGES && ch->pg) {
		/* the resume machinery: every change after the last one sent */
		struct chan_pg *pg = ch->pg;
		rt_hub_unsubscribe(rw->hub, &pg->catchup_sub);
		for (size_t k = 0; k < pg->n_held; k++)
			rt_msg_unref(pg->held[k]);
		pg->n_held = 0;
		start_catchup(ch, resume_pos(pg));
	} else if (bit == RT_FLAG_LIVE_QUERIES && ch->live && ch->live->sub) {
		live_start(ch, ch->live->pos);
	} else if (bit == RT_FLAG_PRESENCE && ch->presence_enabled) {
		json_t *state = NULL;
		rt_hub_unsubscribe(rw->hub, &ch->hsub);
		rt_presence_subscribe(rw->rt->presence, rw->hub, ch->key, &ch->hsub, &state);
		if (state) {
			send_text(ch->s, ch->join_ref, NULL, ch->topic, "presence_state", state);
			json_decref(state);
		}
	}
}

/* Evaluates the channel's flags again (a new flag set, new claims) and tells
 * the client what changed. */
static void chan_flags_apply(struct rt_channel *ch)
{
	json_t *view;
	unsigned off = chan_flags_eval(ch, ch->pg ? ch->pg->entries : NULL, false, &view);
	unsigned was = ch->flags_off, told = (was ^ off) & chan_features(ch);
	ch->flags_off = off;
	for (unsigned bit = 1; bit && bit <= told; bit <<= 1) {
		if (!(told & bit))
			continue;
		tell_feature(ch, bit, off & bit);
		if (!(off & bit))
			feature_resumed(ch, bit);
	}
	if (!view || (ch->flags_view && json_equal(view, ch->flags_view))) {
		json_decref(view);
		return;
	}
	json_decref(view); /* evaluated again, counted as exposures now that it is told */
	chan_flags_eval(ch, ch->pg ? ch->pg->entries : NULL, true, &view);
	json_decref(ch->flags_view);
	ch->flags_view = view;
	json_t *extra = json_pack("{s:O}", "flags", view);
	system_msg_with(ch, "flags", "ok", "Flags changed", extra);
	json_decref(extra);
}

/* Takes the current flag set when it changed, and evaluates every channel
 * again under it. One atomic load when nothing changed. */
static void flags_sync(struct rt_realtime_worker *rw)
{
	struct rt_flags *flags = rw->rt->flags;
	if (!flags)
		return;
	uint64_t gen = rt_flags_generation(flags);
	if (rw->flags && gen == rw->flags_gen)
		return;
	struct rt_flagset *old = rw->flags;
	rw->flags = rt_flags_current(flags);
	rw->flags_gen = gen;
	if (old) {
		struct rt_session *s;
		DL_FOREACH(rw->sessions, s) {
			if (rt_conn_is_closing(s->c))
				continue;
			struct rt_channel *ch;
			DL_FOREACH(s->channels, ch)
				chan_flags_apply(ch);
		}
	}
	rt_flagset_unref(old);
}

unsigned rt_realtime_features_off(struct rt_realtime_worker *rw, const char *sub,
				  const json_t *claims, const char *channel, const char *table)
{
	flags_sync(rw);
	if (!rw->flags)
		return 0;
	struct rt_flag_user u = {.sub = sub, .claims = claims};
	struct rt_flag_scope sc = {.channel = channel, .tables = &table, .n_tables = table ? 1 : 0};
	return rt_flagset_features_off(rw->flags, &u, &sc);
}

/* Refuses a push of a feature that is off here: true when answered. */
static bool refused_by_flag(struct rt_channel *ch, const struct rt_phx_msg *m, unsigned bit)
{
	if (!(ch->flags_off & bit))
		return false;
	char reason[160];
	snprintf(reason, sizeof reason, "FeatureDisabled: %s is switched off on this channel",
		 rt_flag_feature_name(bit));
	reply_reason(ch->s, ch->join_ref, m->ref, ch->topic, reason);
	return true;
}

static void handle_join_decided(struct rt_session *s, struct rt_phx_msg *m,
				const struct rt_channel_access *decided);

/* A join waiting for the database's channel authorization. */
struct pending_join {
	char *join_ref, *ref, *topic;
	json_t *payload;
};

static void pending_join_free(void *ctx)
{
	struct pending_join *pj = ctx;
	free(pj->join_ref);
	free(pj->ref);
	free(pj->topic);
	json_decref(pj->payload);
	free(pj);
}

static void join_decided(struct rt_session *s, void *ctx, const struct rt_channel_access *access)
{
	struct pending_join *pj = ctx;
	struct rt_phx_msg m = {.join_ref = pj->join_ref, .ref = pj->ref, .topic = pj->topic,
			       .event = (char *)"phx_join", .payload = pj->payload};
	handle_join_decided(s, &m, access);
	pending_join_free(pj);
}

static uint64_t loop_ms(struct rt_session *s)
{
	return uv_now(rt_worker_loop(s->rw->w));
}

static void handle_join(struct rt_session *s, struct rt_phx_msg *m)
{
	const struct rt_quota_config *q = rt_quota_config(s->rw->rt->cfg.quota);
	if (!rt_bucket_take(&s->quota.joins, &q->joins, loop_ms(s))) {
		/* As Supabase: the error reply, then the socket goes away (1001). */
		RT_METRIC_LIMIT(JOINS);
		join_error(s, m, "ClientJoinRateLimitReached: Too many joins per second");
		rt_conn_close(s->c, 1001, "Too many joins per second");
		return;
	}
	handle_join_decided(s, m, NULL);
}

/* A join; decided (may be NULL) is the database's channel authorization when
 * it was asked for it. */
static void handle_join_decided(struct rt_session *s, struct rt_phx_msg *m,
				const struct rt_channel_access *decided)
{
	struct rt_realtime *rt = s->rw->rt;
	if (strncmp(m->topic, TOPIC_PREFIX, TOPIC_PREFIX_LEN)) {
		RT_METRIC_ERROR(UNMATCHED_TOPIC);
		reply_reason(s, NULL, m->ref, m->topic, "unmatched topic");
		return;
	}
	const char *sub = m->topic + TOPIC_PREFIX_LEN;
	if (!*sub) {
		join_error(s, m, "TopicNameRequired: You must provide a topic name");
		return;
	}
	flags_sync(s->rw); /* before the channel exists: it is evaluated below */
	struct rt_channel *old = find_channel(s, m->topic);
	if (old) { /* a second join replaces the first instance */
		send_close(old);
		channel_free(old);
	}
	if (s->n_channels >= rt->cfg.max_channels) {
		RT_METRIC_LIMIT(CHANNELS);
		join_error(s, m, "ChannelRateLimitReached: Too many channels");
		return;
	}

	const json_t *payload = json_is_object(m->payload) ? m->payload : NULL;
	const json_t *config = json_object_get(payload, "config");
	const json_t *bcast = json_object_get(config, "broadcast");
	const json_t *pres = json_object_get(config, "presence");
	bool is_private = get_bool(config, "private", false);

	/* The channel's token: its own, or the socket's (claims shared, not copied). */
	struct rt_jwt_claims claims = {0};
	const char *tok = join_token(payload);
	if (tok) {
		int64_t ago = 0;
		enum rt_jwt_result r = rt_realtime_verify(s->rw, tok, strlen(tok), &claims, &ago);
		if (r != RT_JWT_OK) {
			char msg[256], reason[320];
			snprintf(reason, sizeof reason, "%s: %s", rt_jwt_code(r),
				 rt_jwt_message(r, ago, msg, sizeof msg));
			RT_METRIC_ERROR(AUTH);
			join_error(s, m, reason);
			return;
		}
	} else {
		int64_t now = rt_wall_s();
		if (s->claims.exp <= now) {
			char reason[128];
			snprintf(reason, sizeof reason,
				 "InvalidJWTToken: Token has expired %lld seconds ago",
				 (long long)(now - s->claims.exp));
			RT_METRIC_ERROR(AUTH);
			join_error(s, m, reason);
			return;
		}
	}
	uint64_t tok_hash = tok ? token_hash(tok) : s->token_hash;
	const struct rt_jwt_claims *cl = tok ? &claims : &s->claims;
	struct rt_auth who = {.role = cl->role, .claims = cl->claims, .topic = sub};
	struct rt_channel_access access;
	int arc;
	if (decided) {
		access = *decided;
		arc = user_topic_clamp(&who, &access) ? 0 : -1;
	} else {
		arc = rt_realtime_authorize(rt, &who, is_private, &access);
	}
	if (arc == 1) { /* the database decides: asked on the pool, joined when it answers */
		struct pending_join *pj = rt_xcalloc(1, sizeof *pj);
		pj->join_ref = dup_or_null(m->join_ref);
		pj->ref = dup_or_null(m->ref);
		pj->topic = rt_xstrdup(m->topic);
		pj->payload = m->payload ? json_incref(m->payload) : NULL;
		rt_writes_authorize(s, rt->store, &who, m->join_ref, m->ref, m->topic, join_decided,
				    pending_join_free, pj);
		rt_jwt_claims_deinit(&claims);
		return;
	}
	if (arc) {
		char reason[400];
		snprintf(reason, sizeof reason,
			 "Unauthorized: You do not have permissions to read from this Channel topic: %s",
			 sub);
		rt_jwt_claims_deinit(&claims);
		join_error(s, m, reason);
		return;
	}
	if (!is_private && is_user_topic(sub)) {
		rt_jwt_claims_deinit(&claims);
		join_error(s, m, "Unauthorized: notifications channels are private: join with "
				 "config.private = true");
		return;
	}
	if ((is_lock_topic(sub) || is_activity_topic(sub)) && !is_private) {
		rt_jwt_claims_deinit(&claims);
		join_error(s, m, "Unauthorized: lock and activity channels are private: join with "
				 "config.private = true");
		return;
	}
	if ((is_lock_topic(sub) && !rt_locks_name_ok(sub + strlen(RT_LOCKS_TOPIC_PREFIX))) ||
	    (is_activity_topic(sub) &&
	     !rt_activity_channel_ok(sub + strlen(RT_ACTIVITY_TOPIC_PREFIX)))) {
		rt_jwt_claims_deinit(&claims);
		join_error(s, m, "Invalid topic: a lock name is 1 to 128 printable bytes without "
				 "spaces; an activity channel is activity:table:<schema>.<table>, "
				 "activity:collab:<document> or activity:lock:<name>");
		return;
	}
	if (json_object_get(bcast, "replay") && !json_is_null(json_object_get(bcast, "replay")) &&
	    !is_private) {
		rt_jwt_claims_deinit(&claims);
		join_error(s, m, "UnableToReplayMessages: Replay is not allowed for public channels");
		return;
	}

	/* postgres_changes: each entry is validated and echoed with its id, in order. */
	json_t *reply_bindings = json_array();
	const json_t *pg = json_object_get(config, "postgres_changes");
	struct rt_binding **parsed = rt_xcalloc(json_array_size(pg) + 1, sizeof *parsed);
	json_t *entries = json_array();
	size_t n_parsed = 0, i;
	char pg_err[1024] = "";
	const json_t *entry;
	json_array_foreach(pg, i, entry) {
		if (!json_is_object(entry))
			continue; /* null entries are dropped, as Supabase does */
		if (json_array_size(reply_bindings) == RT_REALTIME_MAX_BINDINGS && !*pg_err)
			snprintf(pg_err, sizeof pg_err,
				 "Too many postgres_changes subscriptions on one channel (at most %d)",
				 RT_REALTIME_MAX_BINDINGS);
		json_int_t id = binding_id(entry);
		if (!rt->changes) {
			if (!*pg_err)
				snprintf(pg_err, sizeof pg_err,
					 "Unable to subscribe to changes with given parameters. "
					 "Please check Realtime is enabled for the given connect "
					 "parameters: [event: %s, schema: %s, table: %s, filters: [], "
					 "select: nil]",
					 str_or(entry, "event", "*"), str_or(entry, "schema", "public"),
					 str_or(entry, "table", "*"));
		} else if (!*pg_err) { /* after an error the rest are only echoed */
			char err[1024];
			struct rt_binding *b = rt_binding_parse(rt->changes, m->topic, entry, &who,
								err, sizeof err);
			if (b && n_parsed && !rt_binding_same_delivery(parsed[0], b)) {
				/* one window and one position per channel (docs/protocol.md) */
				snprintf(pg_err, sizeof pg_err,
					 "Error parsing delivery params: every postgres_changes entry "
					 "of a channel must set the same throttle_ms, debounce_ms, "
					 "max_wait_ms and batch; use one channel per setting");
				rt_binding_free(b);
			} else if (b) {
				id = rt_binding_id(b);
				parsed[n_parsed++] = b;
				json_array_append(entries, (json_t *)entry);
			} else if (!*pg_err) {
				snprintf(pg_err, sizeof pg_err, "%s", err);
			}
		}
		json_t *e = json_deep_copy(entry);
		json_object_set_new(e, "id", json_integer(id));
		json_array_append_new(reply_bindings, e);
	}
	rt_utf8_truncate(pg_err); /* a cut message must stay valid UTF-8 */
	if (*pg_err) { /* all or nothing, as Supabase subscribes */
		for (size_t k = 0; k < n_parsed; k++)
			rt_binding_free(parsed[k]);
		n_parsed = 0;
	}

	/* topic, hub key and join_ref live in the channel's own block */
	size_t tlen = strlen(m->topic) + 1, klen = tlen - TOPIC_PREFIX_LEN + 5;
	size_t jlen = m->join_ref ? strlen(m->join_ref) + 1 : 0;
	struct rt_channel *ch = rt_xcalloc(1, sizeof *ch + tlen + klen + jlen);
	ch->s = s;
	ch->id = (++s->rw->next_chan << 8) | rt_worker_index(s->rw->w);
	ch->topic = (char *)(ch + 1);
	memcpy(ch->topic, m->topic, tlen);
	ch->sub = ch->topic + TOPIC_PREFIX_LEN;
	ch->key = ch->topic + tlen;
	snprintf(ch->key, klen, "%s:%s", is_private ? "priv" : "pub", ch->sub);
	if (jlen) {
		ch->join_ref = ch->key + klen;
		memcpy(ch->join_ref, m->join_ref, jlen);
	}
	ch->is_private = is_private;
	ch->may_send = access.may_send;
	ch->may_track = access.may_track;
	ch->self = get_bool(bcast, "self", false);
	ch->ack = get_bool(bcast, "ack", false);
	ch->presence_enabled = get_bool(pres, "enabled", false);
	const json_t *pk = json_object_get(pres, "key");
	if (json_is_string(pk) && json_string_length(pk) && strlen(json_string_value(pk)) == json_string_length(pk)) {
		ch->pkey = rt_xstrdup(json_string_value(pk));
	} else if (json_is_number(pk)) {
		ch->pkey = json_dumps(pk, JSON_ENCODE_ANY);
	}
	ch->token_hash = tok_hash;
	if (tok) {
		ch->own = rt_xmalloc(sizeof *ch->own);
		*ch->own = claims;
	}
	ch->hsub.deliver = channel_deliver;
	DL_APPEND(s->channels, ch);
	s->n_channels++;
	RT_METRIC_INC(joins_ok);

	json_t *state = NULL;
	json_t *join_resp = json_pack("{s:o}", "postgres_changes", reply_bindings);
	ch->flags_off = chan_flags_eval(ch, n_parsed ? entries : NULL, true, &ch->flags_view);
	/* the flags that apply to this user here (docs/flags.md); none: the
	 * reply stays Supabase's */
	if (json_object_size(ch->flags_view))
		json_object_set(join_resp, "flags", ch->flags_view);
	reply(s, ch->join_ref, m->ref, ch->topic, "ok", join_resp);
	rt_presence_subscribe(rt->presence, s->rw->hub, ch->key, &ch->hsub,
			      ch->presence_enabled ? &state : NULL);
	if (*pg_err)
		system_msg(ch, "postgres_changes", "error", pg_err);
	else if (n_parsed)
		subscribe_changes(ch, parsed, n_parsed, json_object_get(config, "rtsync"), entries);
	const json_t *live_cfg = json_object_get(json_object_get(config, "rtsync"), "live");
	char live_err[300];
	if (live_cfg && live_join(ch, live_cfg, live_err, sizeof live_err))
		system_msg(ch, "live", "error", live_err);
	json_decref(entries);
	free(parsed);
	if (state && !(ch->flags_off & RT_FLAG_PRESENCE)) {
		send_text(s, ch->join_ref, NULL, ch->topic, "presence_state", state);
	}
	json_decref(state);
	for (unsigned bit = 1, told = ch->flags_off & chan_features(ch); bit && bit <= told;
	     bit <<= 1)
		if (told & bit)
			tell_feature(ch, bit, true);
	if (is_user_topic(sub) && rt->notify)
		push_inbox_state(ch);
	rt_debug("conn %s: joined %s (join_ref %s, role %s)", rt_conn_peer(s->c), ch->topic,
		 ch->join_ref ? ch->join_ref : "null", chan_claims(ch)->role);
}

/* ---- leave, broadcast, presence, access_token ---- */

static void handle_leave(struct rt_channel *ch, struct rt_phx_msg *m)
{
	reply(ch->s, ch->join_ref, m->ref, ch->topic, "ok", NULL);
	send_close(ch);
	channel_free(ch);
}


static struct rt_frame *text_frame(enum rt_phx_vsn vsn, const char *topic, const char *event,
				   const char *payload, size_t payload_len)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_phx_encode_text(vsn, &b, NULL, NULL, topic, event, payload, payload_len);
	struct rt_frame *f = rt_ws_frame(RT_WS_TEXT, b.data, b.len);
	rt_buf_deinit(&b);
	return f;
}

/* Builds the message for a user broadcast: kind 4 for vsn 2, JSON for vsn 1. */
static struct rt_msg *user_broadcast_msg(const char *key, const char *topic, const char *event,
					 enum rt_phx_encoding enc, const void *data,
					 size_t data_len, const char *meta, size_t meta_len)
{
	struct rt_buf b;
	rt_buf_init(&b);
	if (rt_phx_encode_user_broadcast(&b, topic, event, meta, meta_len, enc, data, data_len)) {
		rt_buf_deinit(&b);
		return NULL;
	}
	struct rt_msg *m = rt_msg_new(RT_MSG_BROADCAST, key);
	m->v2 = rt_ws_frame(RT_WS_BINARY, b.data, b.len);
	if (enc == RT_PHX_ENC_JSON) {
		rt_buf_reset(&b);
		rt_phx_user_broadcast_json(&b, event, data, data_len, meta, meta_len);
		m->v1 = text_frame(RT_PHX_V1, topic, "broadcast", b.data, b.len);
	}
	rt_buf_deinit(&b);
	return m;
}

static struct rt_msg *json_broadcast_msg(const char *key, const char *topic, const char *payload,
					 size_t payload_len)
{
	struct rt_msg *m = rt_msg_new(RT_MSG_BROADCAST, key);
	m->v1 = text_frame(RT_PHX_V1, topic, "broadcast", payload, payload_len);
	m->v2 = text_frame(RT_PHX_V2, topic, "broadcast", payload, payload_len);
	return m;
}

static void handle_broadcast(struct rt_channel *ch, struct rt_phx_msg *m)
{
	struct rt_session *s = ch->s;
	size_t max = s->rw->rt->cfg.max_payload_bytes;
	struct rt_msg *msg = NULL;
	struct rt_buf payload;
	rt_buf_init(&payload);

	if (refused_by_flag(ch, m, RT_FLAG_BROADCAST) ||
	    (is_user_topic(ch->sub) && refused_by_flag(ch, m, RT_FLAG_NOTIFICATIONS)))
		goto out;
	if (m->is_user_broadcast) {
		if (m->data_len > max)
			goto too_big;
		if (!ch->may_send)
			goto out; /* silently dropped, even with ack (as Supabase) */
		msg = user_broadcast_msg(ch->key, ch->topic, m->user_event, m->encoding, m->data,
					 m->data_len, m->meta, m->meta_len);
		if (!msg) {
			if (ch->ack)
				reply_reason(s, ch->join_ref, m->ref, ch->topic,
					     "broadcast event or metadata longer than 255 bytes");
			goto out;
		}
	} else {
		if (!json_is_object(m->payload)) {
			RT_METRIC_ERROR(MALFORMED);
			if (ch->ack)
				reply_reason(s, ch->join_ref, m->ref, ch->topic,
					     "broadcast payload must be an object");
			goto out;
		}
		rt_phx_dump(&payload, m->payload);
		if (payload.len > max)
			goto too_big;
		if (!ch->may_send)
			goto out;
		msg = json_broadcast_msg(ch->key, ch->topic, payload.data, payload.len);
	}
	msg->sender = ch->id;
	msg->is_shared = true;
	RT_METRIC_INC(broadcasts);
	rt_hub_publish(s->rw->hub, msg);
	rt_msg_unref(msg);
	if (ch->ack)
		reply(s, ch->join_ref, m->ref, ch->topic, "ok", NULL);
	goto out;
too_big:
	RT_METRIC_ERROR(PAYLOAD_TOO_LARGE);
	RT_METRIC_LIMIT(PAYLOAD);
	if (ch->ack)
		reply(s, ch->join_ref, m->ref, ch->topic, "error",
		      json_string("payload_size_exceeded"));
out:
	rt_buf_deinit(&payload);
}

static void handle_presence(struct rt_channel *ch, struct rt_phx_msg *m)
{
	struct rt_session *s = ch->s;
	struct rt_realtime *rt = s->rw->rt;
	uint64_t now = rt_mono_ms();
	if (!ch->pres_window_start_ms || now - ch->pres_window_start_ms >= rt->cfg.presence_window_ms) {
		ch->pres_window_start_ms = now;
		ch->pres_calls = 0;
	}
	if (++ch->pres_calls > rt->cfg.presence_max_calls) {
		RT_METRIC_ERROR(RATE_LIMITED);
		RT_METRIC_LIMIT(CHANNEL_PRESENCE);
		channel_shutdown(ch, "Client presence rate limit exceeded");
		return;
	}
	const char *event = json_string_value(json_object_get(m->payload, "event"));
	if (!event) {
		reply(s, ch->join_ref, m->ref, ch->topic, "ok", NULL);
		return;
	}
	if (strcasecmp(event, "untrack") && refused_by_flag(ch, m, RT_FLAG_PRESENCE))
		return;
	if (!ch->may_track && strcasecmp(event, "untrack")) {
		reply(s, ch->join_ref, m->ref, ch->topic, "error", NULL);
		return;
	}
	if (!strcasecmp(event, "track")) {
		const json_t *p = json_object_get(m->payload, "payload");
		json_t *empty = NULL;
		if (!p)
			p = empty = json_object();
		if (!json_is_object(p)) {
			reply_reason(s, ch->join_ref, m->ref, ch->topic,
				     "Presence track payload must be a map");
			return;
		}
		struct rt_buf b;
		rt_buf_init(&b);
		rt_phx_dump(&b, p);
		size_t len = b.len;
		rt_buf_deinit(&b);
		if (len > rt->cfg.max_payload_bytes) {
			json_decref(empty);
			RT_METRIC_ERROR(PAYLOAD_TOO_LARGE);
			RT_METRIC_LIMIT(PAYLOAD);
			channel_shutdown(ch, "Track message size exceeded");
			return;
		}
		ch->presence_enabled = true;
		ch->is_tracked = true;
		if (!ch->pkey) { /* no key from the client: a random one, kept for the channel */
			ch->pkey = rt_xmalloc(RT_UUID_STRLEN + 1);
			rt_rand_uuid(ch->pkey);
		}
		rt_presence_track(rt->presence, s->rw->hub, ch->key, ch->topic, ch->id, ch->pkey, p);
		json_decref(empty);
		reply(s, ch->join_ref, m->ref, ch->topic, "ok", NULL);
	} else if (!strcasecmp(event, "untrack")) {
		if (ch->is_tracked)
			rt_presence_untrack(rt->presence, s->rw->hub, ch->key, ch->topic, ch->id);
		ch->is_tracked = false;
		reply(s, ch->join_ref, m->ref, ch->topic, "ok", NULL);
	} else {
		reply(s, ch->join_ref, m->ref, ch->topic, "error", NULL);
	}
}

/*
 * Re-attaches the channel's postgres_changes under its new claims: the
 * entries are parsed again for the new requester, the old group's live and
 * catch-up deliveries stop (those still on their way are dropped with the
 * subscriptions), and a catch-up from the last position the channel was
 * given brings what came since, matched under the new claims: nothing is
 * lost or sent twice. Returns 0, or -1 with the reason in err.
 */
static int rebind_changes(struct rt_channel *ch, char *err, size_t err_cap)
{
	struct rt_realtime_worker *rw = ch->s->rw;
	struct chan_pg *pg = ch->pg;
	struct rt_auth who = chan_auth(ch);
	size_t n = json_array_size(pg->entries), i;
	struct rt_binding **parsed = rt_xcalloc(n ? n : 1, sizeof *parsed);
	const json_t *entry;
	json_array_foreach(pg->entries, i, entry) {
		parsed[i] = rt_binding_parse(rw->rt->changes, ch->topic, entry, &who, err, err_cap);
		if (!parsed[i]) {
			for (size_t k = 0; k < i; k++)
				rt_binding_free(parsed[k]);
			free(parsed);
			return -1;
		}
	}
	rt_hub_unsubscribe(rw->hub, &pg->pgsub);
	rt_hub_unsubscribe(rw->hub, &pg->catchup_sub);
	for (size_t k = 0; k < pg->n_held; k++)
		rt_msg_unref(pg->held[k]);
	pg->n_held = 0;
	rt_changes_detach(rw->rt->changes, pg->bgroup);
	char *gkey = rt_changes_group_key(parsed, n);
	pg->pgsub.deliver = binding_deliver;
	rt_hub_subscribe(rw->hub, gkey, &pg->pgsub);
	pg->bgroup = rt_changes_attach(rw->rt->changes, parsed, n, NULL);
	free(gkey);
	free(parsed);
	start_catchup(ch, resume_pos(pg));
	return 0;
}

/* New claims or new policies: the channel's access is decided again and its
 * postgres_changes attached again (Supabase's access_token handling). Returns
 * false when the channel was closed. */
/* Applies a channel authorization decided again. Returns false when the
 * channel was closed. */
static bool apply_access(struct rt_channel *ch, const struct rt_channel_access *access)
{
	struct rt_realtime *rt = ch->s->rw->rt;
	struct rt_auth who = chan_auth(ch);
	struct rt_channel_access clamped = *access;
	user_topic_clamp(&who, &clamped);
	access = &clamped;
	if (!access->may_read) {
		char msg[400];
		snprintf(msg, sizeof msg,
			 "You do not have permissions to read from this Channel topic: %s", ch->sub);
		channel_shutdown(ch, msg);
		return false;
	}
	ch->may_send = access->may_send;
	ch->may_track = access->may_track;
	if (ch->is_tracked && !ch->may_track) { /* may no longer be present */
		rt_presence_untrack(rt->presence, ch->s->rw->hub, ch->key, ch->topic, ch->id);
		ch->is_tracked = false;
	}
	return true;
}

/* A channel whose authorization the database decides again. */
struct pending_auth {
	uint64_t chan_id;
	char *topic;
};

static void pending_auth_free(void *ctx)
{
	struct pending_auth *pa = ctx;
	free(pa->topic);
	free(pa);
}

static void reauth_decided(struct rt_session *s, void *ctx, const struct rt_channel_access *access)
{
	struct pending_auth *pa = ctx;
	struct rt_channel *ch = find_channel(s, pa->topic);
	if (ch && ch->id == pa->chan_id) /* still the same channel */
		apply_access(ch, access);
	pending_auth_free(pa);
}

static bool reauthorize(struct rt_channel *ch)
{
	struct rt_realtime *rt = ch->s->rw->rt;
	struct rt_auth who = chan_auth(ch);
	struct rt_channel_access access;
	int arc = rt_realtime_authorize(rt, &who, ch->is_private, &access);
	if (arc == 1) { /* the database decides; sending waits for it */
		ch->may_send = ch->may_track = false;
		struct pending_auth *pa = rt_xcalloc(1, sizeof *pa);
		pa->chan_id = ch->id;
		pa->topic = rt_xstrdup(ch->topic);
		rt_writes_authorize(ch->s, rt->store, &who, ch->join_ref, NULL, ch->topic,
				    reauth_decided, pending_auth_free, pa);
	} else if (!apply_access(ch, &access)) {
		return false;
	}
	char err[1024];
	if (ch->pg && rebind_changes(ch, err, sizeof err)) {
		rt_utf8_truncate(err);
		channel_shutdown(ch, err);
		return false;
	}
	if (ch->live && ch->live->sub) /* the results under the new claims, from where it was */
		live_start(ch, ch->live->pos);
	return true;
}

static bool same_claims(const struct rt_jwt_claims *a, const struct rt_jwt_claims *b)
{
	if (strcmp(a->role, b->role))
		return false;
	if (!a->claims || !b->claims)
		return !a->claims && !b->claims;
	return json_equal(a->claims, b->claims);
}

static void handle_access_token(struct rt_channel *ch, struct rt_phx_msg *m)
{
	const json_t *at = json_object_get(m->payload, "access_token");
	if (!json_is_string(at))
		return;
	const char *tok = json_string_value(at);
	if (!strncmp(tok, "sb_", 3) || token_hash(tok) == ch->token_hash)
		return;
	struct rt_jwt_claims claims;
	int64_t ago = 0;
	enum rt_jwt_result r = rt_realtime_verify(ch->s->rw, tok, strlen(tok), &claims, &ago);
	if (r != RT_JWT_OK) {
		char msg[256];
		RT_METRIC_ERROR(AUTH);
		channel_shutdown(ch, rt_jwt_message(r, ago, msg, sizeof msg));
		return;
	}
	bool is_same = same_claims(chan_claims(ch), &claims);
	if (!ch->own)
		ch->own = rt_xmalloc(sizeof *ch->own);
	else
		rt_jwt_claims_deinit(ch->own);
	*ch->own = claims;
	ch->token_hash = token_hash(tok);
	if (is_same)
		return; /* a later expiry only */
	/* New claims: the channel's access is decided again, as at the join,
	 * and its flags evaluated for them. */
	if (reauthorize(ch))
		chan_flags_apply(ch);
}

/* ---- sessions ---- */

struct rt_session *rt_session_new(struct rt_realtime_worker *rw, struct rt_conn *c,
				  enum rt_phx_vsn vsn, const char *token,
				  struct rt_jwt_claims *claims)
{
	struct rt_session *s = rt_xcalloc(1, sizeof *s);
	s->rw = rw;
	s->c = c;
	s->vsn = vsn;
	s->token_hash = token_hash(token);
	s->claims = *claims;
	memset(claims, 0, sizeof *claims);
	DL_APPEND(rw->sessions, s);
	return s;
}

void rt_session_free(struct rt_session *s)
{
	if (!s)
		return;
	struct rt_channel *ch, *tmp;
	DL_FOREACH_SAFE(s->channels, ch, tmp)
		channel_free(ch);
	rt_quota_conn_close(s->rw->rt->cfg.quota, &s->quota);
	rt_writes_queue_deinit(&s->writes);
	DL_DELETE(s->rw->sessions, s);
	rt_jwt_claims_deinit(&s->claims);
	free(s);
}

struct rt_activity *rt_session_activity(struct rt_session *s)
{
	return s->rw->rt->activity;
}

struct rt_quota_conn *rt_session_quota(struct rt_session *s)
{
	return &s->quota;
}

/*
 * The rates of docs/limits.md for an event the client sends on a channel
 * (heartbeats, joins, leaves and token refreshes are not counted). Over a
 * rate the channel is shut down as Supabase does it; returns false then.
 */
static bool within_rates(struct rt_channel *ch, enum rt_metric_event kind)
{
	struct rt_session *s = ch->s;
	if (kind == RT_EV_LEAVE || kind == RT_EV_ACCESS_TOKEN)
		return true;
	const struct rt_quota_config *q = rt_quota_config(s->rw->rt->cfg.quota);
	uint64_t now = loop_ms(s);
	if (!rt_bucket_take(&s->quota.events, &q->events, now)) {
		RT_METRIC_LIMIT(EVENTS);
		channel_shutdown(ch, "Too many messages per second");
		return false;
	}
	if (!rt_bucket_take(&ch->events, &q->channel_events, now)) {
		RT_METRIC_LIMIT(CHANNEL_EVENTS);
		channel_shutdown(ch, "Too many messages per second");
		return false;
	}
	if (kind == RT_EV_PRESENCE && !rt_bucket_take(&s->quota.presence, &q->presence, now)) {
		RT_METRIC_LIMIT(PRESENCE);
		channel_shutdown(ch, "Too many presence messages per second");
		return false;
	}
	return true;
}

static enum rt_metric_event event_kind(const char *event)
{
	if (!strcmp(event, "heartbeat"))
		return RT_EV_HEARTBEAT;
	if (!strcmp(event, "phx_join"))
		return RT_EV_JOIN;
	if (!strcmp(event, "phx_leave"))
		return RT_EV_LEAVE;
	if (!strcmp(event, "broadcast"))
		return RT_EV_BROADCAST;
	if (!strcmp(event, "presence"))
		return RT_EV_PRESENCE;
	if (!strcmp(event, "access_token"))
		return RT_EV_ACCESS_TOKEN;
	if (!strcmp(event, "write"))
		return RT_EV_WRITE;
	if (!strcmp(event, "snapshot"))
		return RT_EV_SNAPSHOT;
	if (!strcmp(event, "live_subscribe"))
		return RT_EV_LIVE_SUBSCRIBE;
	if (!strcmp(event, "live_unsubscribe"))
		return RT_EV_LIVE_UNSUBSCRIBE;
	if (!strcmp(event, "notify"))
		return RT_EV_NOTIFY;
	if (!strncmp(event, "lock_", 5))
		return RT_EV_LOCK;
	return RT_EV_OTHER;
}

void rt_session_on_message(struct rt_session *s, enum rt_ws_opcode op, const uint8_t *data,
			   size_t data_len)
{
	struct rt_phx_msg m;
	int rc;
	if (op == RT_WS_TEXT)
		rc = rt_phx_decode_text(s->vsn, (const char *)data, data_len, &m);
	else if (s->vsn == RT_PHX_V2)
		rc = rt_phx_decode_binary(data, data_len, &m);
	else
		rc = RT_EPROTO; /* vsn 1.0.0 has no binary frames */
	if (rc) {
		RT_METRIC_ERROR(MALFORMED);
		/* Logged at 1, 10, 100, … per connection: visible, but no log flood. */
		uint64_t n = ++s->n_malformed;
		while (n % 10 == 0)
			n /= 10;
		rt_log(n == 1 ? RT_LOG_WARN : RT_LOG_DEBUG,
		       "conn %s: malformed %s message of %zu bytes dropped (%llu so far)",
		       rt_conn_peer(s->c), op == RT_WS_TEXT ? "text" : "binary", data_len,
		       (unsigned long long)s->n_malformed);
		return;
	}
	enum rt_metric_event kind = event_kind(m.event);
	RT_METRIC_INC(msgs_in[kind]);
	flags_sync(s->rw); /* a push meets the current flags (one atomic load) */

	if (!strcmp(m.topic, "phoenix")) {
		if (kind == RT_EV_HEARTBEAT) {
			reply(s, NULL, m.ref, m.topic, "ok", NULL);
		} else {
			RT_METRIC_ERROR(UNMATCHED_TOPIC);
			reply_reason(s, NULL, m.ref, m.topic, "unmatched topic");
		}
		goto out;
	}
	if (kind == RT_EV_JOIN) {
		handle_join(s, &m);
		goto out;
	}
	struct rt_channel *ch = find_channel(s, m.topic);
	if (!ch) {
		if (kind == RT_EV_LEAVE) {
			reply(s, m.join_ref, m.ref, m.topic, "ok", NULL);
		} else {
			RT_METRIC_ERROR(UNMATCHED_TOPIC);
			reply_reason(s, NULL, m.ref, m.topic, "unmatched topic");
		}
		goto out;
	}
	if (!within_rates(ch, kind))
		goto out;
	switch (kind) {
	case RT_EV_LEAVE:
		handle_leave(ch, &m);
		break;
	case RT_EV_BROADCAST:
		handle_broadcast(ch, &m);
		break;
	case RT_EV_PRESENCE:
		handle_presence(ch, &m);
		break;
	case RT_EV_ACCESS_TOKEN:
		handle_access_token(ch, &m);
		break;
	case RT_EV_WRITE: {
		const json_t *wt = json_object_get(m.payload, "table");
		if (rt_realtime_features_off(s->rw, chan_claims(ch)->sub, chan_claims(ch)->claims,
					     ch->sub, json_is_string(wt) ? json_string_value(wt) : "*") &
		    RT_FLAG_WRITES) {
			json_t *r = json_pack("{s:s,s:s}", "reason",
					      "FeatureDisabled: writes are switched off for this table",
					      "code", "RTS403");
			reply(s, ch->join_ref, m.ref, ch->topic, "error", r);
			break;
		}
		struct rt_auth who = chan_auth(ch);
		rt_writes_handle(s, s->rw->rt->store, &who, ch->join_ref, m.ref, ch->topic,
				 m.payload);
		break;
	}
	case RT_EV_SNAPSHOT: {
		struct rt_auth who = chan_auth(ch);
		rt_writes_snapshot(s, s->rw->rt->store, &who, ch->join_ref, m.ref, ch->topic,
				   m.payload);
		break;
	}
	case RT_EV_LIVE_SUBSCRIBE:
		handle_live_subscribe(ch, &m);
		break;
	case RT_EV_LIVE_UNSUBSCRIBE:
		handle_live_unsubscribe(ch, &m);
		break;
	case RT_EV_NOTIFY:
		handle_notify(ch, &m);
		break;
	case RT_EV_LOCK:
		handle_lock(ch, &m);
		break;
	default:
		break; /* other channel events are ignored, as Supabase does */
	}
out:
	rt_phx_msg_deinit(&m);
}

/* The store's policies changed: every channel is decided again under them. */
static void check_policies(struct rt_realtime_worker *rw)
{
	if (!rw->rt->store)
		return;
	uint64_t v = rt_store_policies_version(rw->rt->store);
	if (!rw->is_pol_seen || v == rw->pol_version) {
		rw->pol_version = v;
		rw->is_pol_seen = true;
		return;
	}
	rw->pol_version = v;
	struct rt_session *s;
	DL_FOREACH(rw->sessions, s) {
		if (rt_conn_is_closing(s->c))
			continue;
		struct rt_channel *ch, *tmp;
		DL_FOREACH_SAFE(s->channels, ch, tmp)
			if (ch->pg || ch->is_private)
				reauthorize(ch);
	}
}

void rt_realtime_worker_tick(struct rt_realtime_worker *rw)
{
	int64_t now = rt_wall_s();
	check_policies(rw);
	flags_sync(rw);
	struct rt_session *s;
	DL_FOREACH(rw->sessions, s) {
		if (rt_conn_is_closing(s->c))
			continue;
		struct rt_channel *ch, *tmp;
		DL_FOREACH_SAFE(s->channels, ch, tmp) {
			if (chan_claims(ch)->exp > now)
				continue;
			char msg[96];
			snprintf(msg, sizeof msg, "Token has expired %lld seconds ago",
				 (long long)(now - chan_claims(ch)->exp));
			channel_shutdown(ch, msg);
		}
	}
}

struct rt_msg *rt_realtime_broadcast_msg(const char *sub_topic, bool is_private, const char *event,
					 const char *json, size_t json_len)
{
	size_t tlen = strlen(sub_topic);
	char *topic = rt_xmalloc(tlen + TOPIC_PREFIX_LEN + 1);
	char *key = rt_xmalloc(tlen + 6);
	snprintf(topic, tlen + TOPIC_PREFIX_LEN + 1, "%s%s", TOPIC_PREFIX, sub_topic);
	snprintf(key, tlen + 6, "%s:%s", is_private ? "priv" : "pub", sub_topic);
	struct rt_buf p;
	rt_buf_init(&p);
	rt_phx_user_broadcast_json(&p, event, json, json_len, NULL, 0);
	struct rt_msg *m = json_broadcast_msg(key, topic, p.data, p.len);
	rt_buf_deinit(&p);
	free(topic);
	free(key);
	return m;
}

int rt_realtime_publish(struct rt_realtime_worker *rw, const char *sub_topic, bool is_private,
			const char *event, bool is_user_broadcast, enum rt_phx_encoding enc,
			const void *data, size_t data_len, const char *meta_id)
{
	size_t tlen = strlen(sub_topic);
	char *topic = rt_xmalloc(tlen + TOPIC_PREFIX_LEN + 1);
	char *key = rt_xmalloc(tlen + 6);
	snprintf(topic, tlen + TOPIC_PREFIX_LEN + 1, "%s%s", TOPIC_PREFIX, sub_topic);
	snprintf(key, tlen + 6, "%s:%s", is_private ? "priv" : "pub", sub_topic);
	struct rt_buf meta;
	rt_buf_init(&meta);
	if (meta_id) {
		rt_buf_append_str(&meta, "{\"id\":");
		rt_buf_append_json_str(&meta, meta_id, strlen(meta_id));
		rt_buf_append_byte(&meta, '}');
	}
	struct rt_msg *m;
	if (is_user_broadcast) {
		m = user_broadcast_msg(key, topic, event, enc, data, data_len, meta.data, meta.len);
	} else {
		struct rt_buf p;
		rt_buf_init(&p);
		rt_phx_user_broadcast_json(&p, event, data, data_len, meta.data, meta.len);
		m = json_broadcast_msg(key, topic, p.data, p.len);
		rt_buf_deinit(&p);
	}
	int rc = m ? 0 : RT_ETOOBIG;
	if (m) {
		m->is_shared = true;
		RT_METRIC_INC(broadcasts);
		rt_hub_publish(rw->hub, m);
		rt_msg_unref(m);
	}
	rt_buf_deinit(&meta);
	free(topic);
	free(key);
	return rc;
}
