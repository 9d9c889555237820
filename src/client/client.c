/*
 * librtsync: connection state machine, Phoenix V1 messages, channels.
 * The contract is in include/rtsync/rtsync.h.
 */
#include "rtsync/rtsync.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <unistr.h>

#include "client/client_int.h"
#include "client/handshake.h"
#include "client/livecopy.h"
#include "client/presence.h"
#include "client/tls.h"
#include "net/ws.h"

#define TOPIC_PREFIX "realtime:"
#define MAX_SUBTOPIC 200
#define READ_CHUNK 65536
#define MAX_READS_PER_TURN 16

/* PH_TLS: the TLS handshake of a wss:// URL, between TCP and WebSocket. */
enum phase { PH_NONE, PH_TCP, PH_TLS, PH_HANDSHAKE, PH_WS };

enum push_kind {
	PUSH_BROADCAST,
	PUSH_TRACK,
	PUSH_UNTRACK,
	PUSH_WRITE,
	PUSH_SNAPSHOT,
	PUSH_LIVE_SUBSCRIBE,
	PUSH_LIVE_UNSUBSCRIBE,
	PUSH_NOTIFY,
	PUSH_LOCK_ACQUIRE,
	PUSH_LOCK_RENEW,
	PUSH_LOCK_RELEASE,
};

/* Pushes answered through on_write, with the reply's response. */
#define IS_WRITE_LIKE(kind) \
	((kind) == PUSH_WRITE || (kind) == PUSH_SNAPSHOT || (kind) == PUSH_NOTIFY ||     \
	 (kind) == PUSH_LOCK_ACQUIRE || (kind) == PUSH_LOCK_RENEW || (kind) == PUSH_LOCK_RELEASE)

/* A push waiting for its channel to join. */
struct held_push {
	struct held_push *next;
	struct rt_client_channel *ch;
	enum push_kind kind;
	uint64_t id;
	json_t *payload;
};

/* One live query of a channel and its local copy. */
struct live_query {
	json_t *def;       /* {"id","schema","table","query"?} as sent */
	const char *id;    /* the def's id */
	struct rt_livecopy copy;
	bool is_pending;   /* waiting for a result: diffs before it are of an older
			      subscription of the id and are ignored */
	bool is_sent;      /* the server has it on this join */
};

/* A push sent and waiting for its phx_reply. */
struct wait_reply {
	struct wait_reply *next;
	struct rt_client_channel *ch;
	uint64_t ref;
	uint64_t id;
	int64_t deadline;
	enum push_kind kind;
};

struct rt_client_channel {
	struct rt_client_channel *next, *prev;
	struct rt_client *c;
	char *topic;    /* "realtime:…" */
	json_t *config; /* the join config without the resume position */
	struct rt_channel_callbacks cb;
	void *user;
	bool want_ack;
	enum rt_channel_state state;
	uint64_t join_ref;   /* ref of the join in flight or accepted; 0 none */
	int64_t join_deadline;
	int64_t rejoin_at;   /* ERRORED: when to join again */
	unsigned rejoin_tries;
	bool has_joined;     /* joined at least once */
	char pos[21];        /* last change position seen, "" none */
	json_t *presence;    /* key → [metas] */
	json_t *track_meta;  /* the meta tracked, or NULL */
	bool has_live;       /* send config.rtsync.live with the join */
	json_t *live_opts;   /* {"throttle_ms",…}: those set */
	struct live_query *lq[RT_LQ_MAX_QUERIES];
	size_t n_lq;
	char live_pos[21];   /* position of the last live_query message applied, "" none */
	json_t *flags;       /* the server's feature flags here ({name: answer}); NULL before any */
};

struct rt_client {
	struct rt_allocator alloc;
	struct rt_ws_allocator ws_alloc; /* the same functions, for the engine */
	pthread_mutex_t lock; /* recursive: callbacks may call the API */
	struct rt_client_options opt;
	struct rt_client_url url;
	char *apikey;
	char *token;
	char *ca_file, *ca_dir; /* copies of the options, for the HTTP calls */
	struct addrinfo *ai;
	struct rt_client_tls *tls; /* wss://: the TLS context; NULL for ws:// */
	int epfd, evfd, sock;
	uint32_t sock_events;

	enum rt_client_state state;
	enum phase phase;
	bool is_user_closed;
	bool is_close_pending; /* closed while not connected: report CLOSED */
	struct rt_client_hs hs;
	struct rt_ws ws;
	bool has_ws;
	bool in_feed;
	uint8_t *out;
	size_t out_len, out_cap;

	int64_t connect_deadline, hb_next, reconnect_at;
	uint64_t hb_ref, next_ref;
	unsigned attempt;

	int fail_rc; /* nonzero: end the connection at the next safe point */
	char fail_detail[256];

	struct rt_client_channel *channels;
	struct rt_client_channel *zombies; /* left inside a callback; freed after it */
	struct held_push *held, *held_tail;
	size_t n_held;
	size_t n_dropped; /* overflows not yet reported */
	struct wait_reply *replies;
	struct rt_client_timer *timers; /* of the client's own modules (client_int.h) */
	uint64_t timer_turn;

	int depth; /* > 0 while rt_client_process runs on this client */
	pthread_t thread;
	bool has_thread;
	atomic_bool stop_thread;
	uint64_t rng;
};

/* ---- memory ---- */

static void *default_realloc(void *ud, void *p, size_t n)
{
	if (!n) {
		free(p);
		return NULL;
	}
	return realloc(p, n);
}

static const struct rt_allocator default_alloc = {default_realloc, NULL};

static void *mem_alloc(struct rt_client *c, size_t n)
{
	return c->alloc.realloc(c->alloc.ud, NULL, n);
}

static void mem_free(struct rt_client *c, void *p)
{
	if (p)
		c->alloc.realloc(c->alloc.ud, p, 0);
}

static char *mem_strdup(struct rt_client *c, const char *s)
{
	size_t n = strlen(s);
	char *d = mem_alloc(c, n + 1);
	if (d)
		memcpy(d, s, n + 1);
	return d;
}

/* Compact JSON text of v in memory from the client's allocator. */
static char *dump(struct rt_client *c, const json_t *v, size_t *len)
{
	size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!n)
		return NULL;
	char *s = mem_alloc(c, n + 1);
	if (!s)
		return NULL;
	if (json_dumpb(v, s, n, JSON_COMPACT | JSON_ENCODE_ANY) != n) {
		mem_free(c, s);
		return NULL;
	}
	s[n] = 0;
	if (len)
		*len = n;
	return s;
}

/* jansson reports some allocation failures with no error code at all. */
static bool is_oom(const json_error_t *err)
{
	return json_error_code(err) == json_error_out_of_memory ||
	       json_error_code(err) == json_error_unknown;
}

/* Parses a JSON object given by the application: RT_EINVAL, RT_ENOMEM or 0. */
static int parse_object(const char *text, json_t **out)
{
	json_error_t err;
	*out = NULL;
	if (!text) {
		*out = json_object();
		return *out ? 0 : RT_ENOMEM;
	}
	json_t *v = json_loads(text, 0, &err);
	if (!v)
		return is_oom(&err) ? RT_ENOMEM : RT_EINVAL;
	if (!json_is_object(v)) {
		json_decref(v);
		return RT_EINVAL;
	}
	*out = v;
	return 0;
}

static bool is_utf8(const char *s)
{
	return u8_check((const uint8_t *)s, strlen(s)) == NULL;
}

/* ---- time and randomness ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t next_rand(struct rt_client *c)
{
	/* splitmix64: jitter needs spread, not secrecy */
	uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Full jitter: uniform in [0, min(max, base * 2^attempt)]. */
static unsigned backoff_ms(struct rt_client *c, unsigned attempt)
{
	uint64_t cap = c->opt.reconnect_base_ms;
	for (unsigned i = 0; i < attempt && cap < c->opt.reconnect_max_ms; i++)
		cap *= 2;
	if (cap > c->opt.reconnect_max_ms)
		cap = c->opt.reconnect_max_ms;
	return (unsigned)(next_rand(c) % (cap + 1));
}

/* ---- epoll ---- */

static void wake(struct rt_client *c)
{
	if (c->depth)
		return; /* the loop is running and recomputes its timers itself */
	uint64_t one = 1;
	ssize_t rc = write(c->evfd, &one, sizeof one);
	(void)rc; /* a full counter is still readable */
}

static void watch_socket(struct rt_client *c)
{
	if (c->sock < 0)
		return;
	uint32_t ev = EPOLLIN;
	if (c->phase == PH_TCP || c->out_len || (c->tls && rt_client_tls_wants_write(c->tls)))
		ev |= EPOLLOUT;
	if (ev == c->sock_events)
		return;
	struct epoll_event e = {.events = ev, .data.fd = c->sock};
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->sock, &e) == 0)
		c->sock_events = ev;
}

/* ---- callbacks ---- */

static void emit_state(struct rt_client *c, enum rt_client_state st, unsigned attempt,
		       unsigned delay, int reason, const char *detail)
{
	c->state = st;
	if (!c->opt.on_state)
		return;
	struct rt_client_state_event ev = {st, attempt, delay, reason, detail};
	c->opt.on_state(c->opt.user, &ev);
}

static void emit_error(struct rt_client *c, struct rt_client_channel *ch, int rc, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));

static void emit_error(struct rt_client *c, struct rt_client_channel *ch, int rc, const char *fmt,
		       ...)
{
	if (!c->opt.on_error)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->opt.on_error(c->opt.user, ch, rc, msg);
}

static void emit_status(struct rt_client_channel *ch, enum rt_channel_state st, int rc,
			const char *reason, bool is_rejoin)
{
	ch->state = st;
	if (!ch->cb.on_status)
		return;
	struct rt_channel_status s = {st, rc, reason, is_rejoin};
	ch->cb.on_status(ch->user, ch, &s);
}

/* Ends the connection at the next safe point (never inside rt_ws_feed). */
static void fail(struct rt_client *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct rt_client *c, int rc, const char *fmt, ...)
{
	if (c->fail_rc)
		return; /* the first reason wins */
	c->fail_rc = rc;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->fail_detail, sizeof c->fail_detail, fmt, ap);
	va_end(ap);
}

/* ---- output ---- */

static int out_append(struct rt_client *c, const void *data, size_t len)
{
	if (c->out_len + len > c->opt.max_output_bytes)
		return RT_ELIMIT;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + len)
			cap *= 2;
		uint8_t *p = c->alloc.realloc(c->alloc.ud, c->out, cap);
		if (!p)
			return RT_ENOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

static void flush_output(struct rt_client *c)
{
	if (c->sock < 0 || c->phase == PH_TCP || c->phase == PH_TLS)
		return;
	size_t off = 0;
	while (off < c->out_len) {
		if (c->tls) {
			char err[200];
			ssize_t n = rt_client_tls_send(c->tls, c->out + off, c->out_len - off, err,
						       sizeof err);
			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			if (n != RT_EAGAIN)
				fail(c, RT_EIO, "%s", err);
			break;
		}
		ssize_t n = send(c->sock, c->out + off, c->out_len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		fail(c, RT_EIO, "send: %s", strerror(errno));
		break;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
}

static int ws_output(void *user, const uint8_t *data, size_t data_len)
{
	return out_append(user, data, data_len);
}

/* ---- Phoenix messages (vsn 1.0.0) ---- */

/* Sends one message; payload is borrowed. ref 0 and join_ref 0 are null. */
static int send_msg(struct rt_client *c, const char *topic, const char *event,
		    const json_t *payload, uint64_t ref, uint64_t join_ref)
{
	if (c->phase != PH_WS || c->fail_rc)
		return RT_ECLOSED;
	char rbuf[24], jbuf[24];
	snprintf(rbuf, sizeof rbuf, "%" PRIu64, ref);
	snprintf(jbuf, sizeof jbuf, "%" PRIu64, join_ref);
	json_t *m = json_pack("{s:s,s:s,s:O,s:s?,s:s?}", "topic", topic, "event", event, "payload",
			      payload, "ref", ref ? rbuf : NULL, "join_ref",
			      join_ref ? jbuf : NULL);
	size_t len;
	char *txt = m ? dump(c, m, &len) : NULL;
	json_decref(m);
	if (!txt) {
		/* Inside the loop nobody gets the return code: say it. The
		 * caller retries (joins, heartbeats) or reports (pushes). */
		if (c->depth)
			emit_error(c, NULL, RT_ENOMEM, "out of memory sending %s on %s", event, topic);
		return RT_ENOMEM;
	}
	int rc = rt_ws_send(&c->ws, RT_WS_TEXT, txt, len);
	mem_free(c, txt);
	if (rc < 0)
		fail(c, rc, "cannot queue a message: %s", rt_strerror(rc));
	return rc;
}

static uint64_t new_ref(struct rt_client *c)
{
	return ++c->next_ref;
}

/* ---- channels ---- */

/* A push's result: writes to on_write (with the reply's response as JSON
 * text), the others to on_ack. */
static void report(struct rt_client_channel *ch, enum push_kind kind, uint64_t id, int rc,
		   const char *reason, const char *response)
{
	if (!id)
		return;
	if (IS_WRITE_LIKE(kind)) {
		if (ch->cb.on_write)
			ch->cb.on_write(ch->user, ch, id, rc, response);
	} else if (ch->cb.on_ack) {
		ch->cb.on_ack(ch->user, ch, id, rc, reason);
	}
}

static void drop_replies(struct rt_client *c, struct rt_client_channel *ch, int rc, bool notify)
{
	struct wait_reply **pp = &c->replies;
	while (*pp) {
		struct wait_reply *w = *pp;
		if (ch && w->ch != ch) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		struct rt_client_channel *wch = w->ch;
		uint64_t id = w->id;
		enum push_kind kind = w->kind;
		mem_free(c, w);
		if (notify)
			report(wch, kind, id, rc, NULL, NULL);
	}
}

static bool is_presence(enum push_kind kind)
{
	return kind == PUSH_TRACK || kind == PUSH_UNTRACK;
}

/* Drops the held pushes of ch (NULL: of every channel); with
 * presence_only, only its track/untrack pushes (superseded by a newer one). */
static void drop_held(struct rt_client *c, struct rt_client_channel *ch, bool presence_only)
{
	struct held_push **pp = &c->held;
	c->held_tail = NULL;
	while (*pp) {
		struct held_push *h = *pp;
		if ((ch && h->ch != ch) || (presence_only && !is_presence(h->kind))) {
			c->held_tail = h;
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		json_decref(h->payload);
		mem_free(c, h);
		c->n_held--;
	}
}

static bool has_held_presence(struct rt_client *c, struct rt_client_channel *ch)
{
	for (struct held_push *h = c->held; h; h = h->next)
		if (h->ch == ch && is_presence(h->kind))
			return true;
	return false;
}

static void live_query_free(struct rt_client *c, struct live_query *lq)
{
	if (!lq)
		return;
	rt_livecopy_deinit(&lq->copy);
	json_decref(lq->def);
	mem_free(c, lq);
}

static void channel_free(struct rt_client_channel *ch)
{
	struct rt_client *c = ch->c;
	for (size_t i = 0; i < ch->n_lq; i++)
		live_query_free(c, ch->lq[i]);
	json_decref(ch->live_opts);
	json_decref(ch->flags);
	json_decref(ch->config);
	json_decref(ch->presence);
	json_decref(ch->track_meta);
	mem_free(c, ch->topic);
	mem_free(c, ch);
}

static struct rt_client_channel *find_channel(struct rt_client *c, const char *topic)
{
	for (struct rt_client_channel *ch = c->channels; ch; ch = ch->next)
		if (!strcmp(ch->topic, topic))
			return ch;
	return NULL;
}

/* ---- live queries ---- */

static struct live_query *live_find(struct rt_client_channel *ch, const char *id, size_t *at)
{
	for (size_t i = 0; i < ch->n_lq; i++)
		if (!strcmp(ch->lq[i]->id, id)) {
			if (at)
				*at = i;
			return ch->lq[i];
		}
	return NULL;
}

/* config.rtsync.live of a join: the options, and the queries the server is
 * to hold. Resuming (a live_query message was applied), only those with a
 * result go, with resume_after; the others are subscribed fresh once the
 * join is accepted (live_after_join), as a diff could not apply to them. */
static json_t *live_join_config(struct rt_client_channel *ch)
{
	bool is_resume = ch->live_pos[0] != 0;
	json_t *live = json_deep_copy(ch->live_opts), *qs = json_array();
	if (!live || !qs || json_object_set(live, "queries", qs))
		goto err_put;
	bool has_resumed = false;
	for (size_t i = 0; i < ch->n_lq; i++) {
		struct live_query *lq = ch->lq[i];
		bool has_result = rt_livecopy_has_result(&lq->copy);
		lq->is_sent = !is_resume || has_result;
		lq->is_pending = !has_result;
		if (!lq->is_sent)
			continue;
		if (json_array_append(qs, lq->def))
			goto err_put;
		has_resumed |= is_resume;
	}
	if (has_resumed && json_object_set_new(live, "resume_after", json_string(ch->live_pos)))
		goto err_put;
	json_decref(qs);
	return live;
err_put:
	json_decref(qs);
	json_decref(live);
	return NULL;
}

/* The join payload: config (+ rtsync.resume_after, rtsync.live) and the
 * access token. */
static json_t *join_payload(struct rt_client_channel *ch)
{
	struct rt_client *c = ch->c;
	json_t *cfg = rt_client_copy_object(ch->config);
	if (!cfg)
		return NULL;
	if (ch->pos[0] || ch->has_live) {
		json_t *ext = json_object();
		if (!ext || json_object_set_new(cfg, "rtsync", ext) ||
		    (ch->pos[0] &&
		     json_object_set_new(ext, "resume_after", json_string(ch->pos))) ||
		    (ch->has_live && json_object_set_new(ext, "live", live_join_config(ch)))) {
			json_decref(cfg);
			return NULL;
		}
	}
	json_t *p = json_pack("{s:o}", "config", cfg);
	if (!p)
		return NULL;
	if (c->token && json_object_set_new(p, "access_token", json_string(c->token))) {
		json_decref(p);
		return NULL;
	}
	return p;
}

static void send_join(struct rt_client_channel *ch, int64_t now)
{
	struct rt_client *c = ch->c;
	json_t *p = join_payload(ch);
	if (!p) {
		fail(c, RT_ENOMEM, "out of memory building a join");
		return;
	}
	/* Presence starts over: the server sends the full state after the join. */
	json_t *empty = json_object();
	if (!empty) {
		json_decref(p);
		fail(c, RT_ENOMEM, "out of memory building a join");
		return;
	}
	json_decref(ch->presence);
	ch->presence = empty;
	uint64_t ref = new_ref(c);
	int rc = send_msg(c, ch->topic, "phx_join", p, ref, ref);
	json_decref(p);
	if (rc)
		return;
	ch->join_ref = ref;
	ch->join_deadline = now + c->opt.push_timeout_ms;
	ch->state = RT_CHANNEL_JOINING;
}

static int wait_for_reply(struct rt_client *c, struct rt_client_channel *ch, uint64_t ref,
			  uint64_t id, enum push_kind kind)
{
	struct wait_reply *w = mem_alloc(c, sizeof *w);
	if (!w)
		return RT_ENOMEM;
	*w = (struct wait_reply){c->replies, ch, ref, id, now_ms() + c->opt.push_timeout_ms, kind};
	c->replies = w;
	return 0;
}

/* Sends a broadcast, track or untrack on a joined channel. */
static int send_push(struct rt_client_channel *ch, enum push_kind kind, uint64_t id,
		     const json_t *payload)
{
	struct rt_client *c = ch->c;
	bool wants_reply = kind != PUSH_BROADCAST || ch->want_ack;
	uint64_t ref = new_ref(c);
	const char *event = kind == PUSH_BROADCAST		? "broadcast"
			    : kind == PUSH_WRITE		? "write"
			    : kind == PUSH_SNAPSHOT		? "snapshot"
			    : kind == PUSH_LIVE_SUBSCRIBE	? "live_subscribe"
			    : kind == PUSH_LIVE_UNSUBSCRIBE ? "live_unsubscribe"
			    : kind == PUSH_NOTIFY		? "notify"
			    : kind == PUSH_LOCK_ACQUIRE	? "lock_acquire"
			    : kind == PUSH_LOCK_RENEW		? "lock_renew"
			    : kind == PUSH_LOCK_RELEASE	? "lock_release"
							: "presence";
	if (wants_reply) {
		int rc = wait_for_reply(c, ch, ref, id, kind);
		if (rc)
			return rc;
	}
	int rc = send_msg(c, ch->topic, event, payload, ref, ch->join_ref);
	if (rc && wants_reply) {
		struct wait_reply *w = c->replies; /* the one just added */
		c->replies = w->next;
		mem_free(c, w);
	}
	return rc;
}

static void flush_held(struct rt_client_channel *ch)
{
	struct rt_client *c = ch->c;
	struct held_push **pp = &c->held;
	c->held_tail = NULL;
	while (*pp) {
		struct held_push *h = *pp;
		if (h->ch != ch) {
			c->held_tail = h;
			pp = &h->next;
			continue;
		}
		if (send_push(ch, h->kind, h->id, h->payload))
			break; /* the connection is failing; the rest waits for the rejoin */
		*pp = h->next;
		json_decref(h->payload);
		mem_free(c, h);
		c->n_held--;
	}
	for (struct held_push *h = c->held; h; h = h->next)
		c->held_tail = h;
}

/* Subscribes, on the joined channel, every live query the server does not
 * hold yet, without resume: each starts with its result. */
static void live_send_unsent(struct rt_client_channel *ch)
{
	struct rt_client *c = ch->c;
	json_t *qs = json_array();
	if (!qs)
		goto err_nomem;
	for (size_t i = 0; i < ch->n_lq; i++)
		if (!ch->lq[i]->is_sent && json_array_append(qs, ch->lq[i]->def)) {
			json_decref(qs);
			goto err_nomem;
		}
	if (!json_array_size(qs)) {
		json_decref(qs);
		return;
	}
	json_t *p = json_pack("{s:o}", "queries", qs);
	if (!p)
		goto err_nomem;
	int rc = send_push(ch, PUSH_LIVE_SUBSCRIBE, 0, p);
	json_decref(p);
	if (rc == RT_ECLOSED)
		return; /* the connection is going down: the rejoin subscribes them */
	if (rc) {
		fail(c, rc, "cannot subscribe live queries on %s: %s", ch->topic, rt_strerror(rc));
		return;
	}
	for (size_t i = 0; i < ch->n_lq; i++)
		ch->lq[i]->is_sent = true;
	return;
err_nomem:
	/* a restart rejoins and subscribes them */
	fail(c, RT_ENOMEM, "out of memory subscribing live queries on %s", ch->topic);
}

/* Drops a live query's copy and subscribes it again, fresh: now when the
 * channel is joined, else with the next join. */
static void live_resubscribe(struct rt_client_channel *ch, struct live_query *lq)
{
	rt_livecopy_reset(&lq->copy);
	lq->is_pending = true;
	lq->is_sent = false;
	if (ch->state == RT_CHANNEL_JOINED && ch->c->phase == PH_WS && !ch->c->fail_rc)
		live_send_unsent(ch);
}

static json_t *track_payload(const json_t *meta)
{
	if (meta)
		return json_pack("{s:s,s:s,s:O}", "type", "presence", "event", "track", "payload",
				 meta);
	return json_pack("{s:s,s:s}", "type", "presence", "event", "untrack");
}

/* Queues (or sends) a push; takes payload. */
static int push(struct rt_client_channel *ch, enum push_kind kind, json_t *payload, uint64_t *id)
{
	struct rt_client *c = ch->c;
	static atomic_uint_fast64_t ids;
	uint64_t my_id = atomic_fetch_add(&ids, 1) + 1;
	int rc;
	if (id)
		*id = my_id;
	if (ch->state == RT_CHANNEL_CLOSED) {
		rc = RT_ECLOSED;
		goto out_put;
	}
	if (ch->state == RT_CHANNEL_JOINED && c->phase == PH_WS && !c->fail_rc) {
		rc = send_push(ch, kind, my_id, payload);
		if (rc != RT_ECLOSED)
			goto out_put;
		/* the connection is going down: hold it for the rejoin */
	}
	if (c->n_held >= c->opt.max_buffered_pushes) {
		c->n_dropped++;
		wake(c);
		rc = RT_ELIMIT;
		goto out_put;
	}
	struct held_push *h = mem_alloc(c, sizeof *h);
	if (!h) {
		rc = RT_ENOMEM;
		goto out_put;
	}
	*h = (struct held_push){NULL, ch, kind, my_id, payload};
	if (c->held_tail)
		c->held_tail->next = h;
	else
		c->held = h;
	c->held_tail = h;
	c->n_held++;
	return 0;
out_put:
	json_decref(payload);
	return rc;
}

/* ---- connection ---- */

static void close_socket(struct rt_client *c)
{
	if (c->has_ws) {
		rt_ws_deinit(&c->ws);
		c->has_ws = false;
	}
	if (c->sock >= 0) {
		if (c->tls)
			rt_client_tls_stop(c->tls);
		close(c->sock); /* also leaves the epoll set */
		c->sock = -1;
	}
	c->sock_events = 0;
	c->phase = PH_NONE;
	c->out_len = 0;
	c->hb_ref = 0;
}

static void start_connect(struct rt_client *c, int64_t now)
{
	c->connect_deadline = now + c->opt.connect_timeout_ms;
	emit_state(c, RT_CLIENT_CONNECTING, c->attempt, 0, 0, NULL);
	if (c->is_user_closed)
		return; /* closed from the callback */
	struct addrinfo *ai = c->ai;
	int s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		       ai->ai_protocol);
	if (s < 0) {
		fail(c, RT_EIO, "socket: %s", strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(s, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		fail(c, RT_EIO, "connect %s:%s: %s", c->url.host, c->url.port, strerror(errno));
		close(s);
		return;
	}
	struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.fd = s};
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, s, &e) < 0) {
		fail(c, RT_EIO, "epoll: %s", strerror(errno));
		close(s);
		return;
	}
	c->sock = s;
	c->sock_events = e.events;
	c->phase = PH_TCP;
}

/* After a lost connection: every channel waits to rejoin, replies are lost,
 * and the next attempt is scheduled (or the client gives up). */
static void connection_lost(struct rt_client *c, int rc, const char *detail, int64_t now)
{
	close_socket(c);
	drop_replies(c, NULL, RT_ECLOSED, true);
	for (struct rt_client_channel *ch = c->channels; ch; ch = ch->next) {
		if (ch->state == RT_CHANNEL_CLOSED)
			continue;
		ch->join_ref = 0;
		ch->rejoin_at = 0;
		if (ch->state != RT_CHANNEL_ERRORED)
			emit_status(ch, RT_CHANNEL_ERRORED, RT_ECLOSED, "connection lost", false);
	}
	if (c->is_user_closed) {
		emit_state(c, RT_CLIENT_CLOSED, 0, 0, 0, NULL);
		return;
	}
	c->attempt++;
	if (c->opt.reconnect_max_attempts && c->attempt > c->opt.reconnect_max_attempts) {
		c->is_user_closed = true;
		emit_state(c, RT_CLIENT_CLOSED, c->attempt - 1, 0, rc, detail);
		return;
	}
	unsigned delay = backoff_ms(c, c->attempt - 1);
	c->reconnect_at = now + delay;
	emit_state(c, RT_CLIENT_RECONNECTING, c->attempt, delay, rc, detail);
}

static void handle_message(struct rt_client *c, const char *data, size_t len);

static void ws_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t len)
{
	struct rt_client *c = user;
	if (c->fail_rc)
		return;
	if (op != RT_WS_TEXT) {
		emit_error(c, NULL, RT_EPROTO, "binary message ignored (%zu bytes)", len);
		return;
	}
	handle_message(c, (const char *)data, len);
}

static const struct rt_ws_callbacks ws_cbs = {ws_message, ws_output};

static void opened(struct rt_client *c, int64_t now)
{
	c->phase = PH_WS;
	c->attempt = 0;
	c->hb_next = now + c->opt.heartbeat_ms;
	c->hb_ref = 0;
	emit_state(c, RT_CLIENT_OPEN, 0, 0, 0, NULL);
	for (struct rt_client_channel *ch = c->channels; ch && !c->fail_rc; ch = ch->next)
		if (ch->state != RT_CHANNEL_CLOSED && c->phase == PH_WS)
			send_join(ch, now);
}

static void feed_ws(struct rt_client *c, uint8_t *data, size_t len)
{
	c->in_feed = true;
	int rc = rt_ws_feed(&c->ws, data, len);
	c->in_feed = false;
	if (rc < 0)
		fail(c, rc, "WebSocket: %s", rt_strerror(rc));
	else if (rt_ws_is_done(&c->ws) && !c->fail_rc) {
		uint16_t code = rt_ws_peer_close_code(&c->ws);
		fail(c, RT_ECLOSED, "server closed the WebSocket (%u)", code);
	}
}

static void feed_handshake(struct rt_client *c, uint8_t *data, size_t len, int64_t now)
{
	int used = rt_client_hs_feed(&c->hs, (const char *)data, len);
	if (used == 0)
		return;
	if (used < 0) {
		int rc = used;
		int st = rt_client_hs_status(&c->hs);
		if (st)
			fail(c, rc, "HTTP %d from the server: %s", st, c->hs.body);
		else
			fail(c, rc, "bad handshake response: %s", rt_strerror(rc));
		return;
	}
	int rc = rt_ws_init(&c->ws, RT_WS_CLIENT, &ws_cbs, c, c->opt.max_message_bytes,
			    &c->ws_alloc);
	if (rc) {
		fail(c, rc, "WebSocket init: %s", rt_strerror(rc));
		return;
	}
	c->has_ws = true;
	opened(c, now);
	if ((size_t)used < len && !c->fail_rc) /* WebSocket bytes right behind the response */
		feed_ws(c, data + (size_t)used, len - (size_t)used);
}

static void read_socket(struct rt_client *c, int64_t now)
{
	uint8_t buf[READ_CHUNK];
	for (int i = 0; i < MAX_READS_PER_TURN && c->sock >= 0 && !c->fail_rc; i++) {
		ssize_t n;
		if (c->tls) {
			char err[200];
			n = rt_client_tls_recv(c->tls, buf, sizeof buf, err, sizeof err);
			if (n == RT_EAGAIN)
				return;
			if (n < 0) {
				fail(c, RT_EIO, "%s", err);
				return;
			}
		} else {
			n = recv(c->sock, buf, sizeof buf, 0);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			fail(c, RT_EIO, "recv: %s", strerror(errno));
			return;
		}
		if (n == 0) {
			if (c->phase == PH_HANDSHAKE) {
				int rc = rt_client_hs_eof(&c->hs);
				fail(c, rc, "connection closed during the handshake (HTTP %d) %s",
				     rt_client_hs_status(&c->hs), c->hs.body);
			} else {
				fail(c, RT_ECLOSED, "server closed the connection");
			}
			return;
		}
		if (c->phase == PH_HANDSHAKE)
			feed_handshake(c, buf, (size_t)n, now);
		else if (c->phase == PH_WS)
			feed_ws(c, buf, (size_t)n);
	}
}

/* Queues the WebSocket upgrade request. */
static void start_upgrade(struct rt_client *c)
{
	char *req;
	size_t req_len;
	int rc = rt_client_hs_start(&c->hs, &c->alloc, &c->url, c->apikey, &req, &req_len);
	if (rc) {
		fail(c, rc, "handshake: %s", rt_strerror(rc));
		return;
	}
	rc = out_append(c, req, req_len);
	mem_free(c, req);
	if (rc) {
		fail(c, rc, "handshake: %s", rt_strerror(rc));
		return;
	}
	c->phase = PH_HANDSHAKE;
}

/* Advances the TLS handshake; the upgrade follows it. */
static void tls_step(struct rt_client *c)
{
	char err[256];
	int rc = rt_client_tls_handshake(c->tls, err, sizeof err);
	if (rc < 0)
		fail(c, rc, "%s (%s:%s)", err, c->url.host, c->url.port);
	else if (rc == 1)
		start_upgrade(c);
}

static void tcp_connected(struct rt_client *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(c->sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		fail(c, RT_EIO, "connect %s:%s: %s", c->url.host, c->url.port, strerror(err));
		return;
	}
	if (!c->tls) {
		start_upgrade(c);
		return;
	}
	int rc = rt_client_tls_start(c->tls, c->sock);
	if (rc) {
		fail(c, rc, "TLS: %s", rt_strerror(rc));
		return;
	}
	c->phase = PH_TLS;
	tls_step(c);
}

/* ---- incoming messages ---- */

static const char *str_of(const json_t *o, const char *name)
{
	return json_string_value(json_object_get(o, name));
}

static uint64_t ref_of(const json_t *m, const char *name)
{
	const char *s = str_of(m, name);
	if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19)
		return 0;
	return strtoull(s, NULL, 10);
}

/* Text of a JSON value for a callback; NULL for absent or null. Sets
 * *oom when it could not be made. */
static char *text_of(struct rt_client *c, const json_t *v, bool *oom)
{
	if (!v || json_is_null(v))
		return NULL;
	char *s = dump(c, v, NULL);
	if (!s)
		*oom = true;
	return s;
}

static void reason_text(const json_t *response, char *out, size_t out_len)
{
	const char *r = str_of(response, "reason");
	if (!r)
		r = json_string_value(response);
	snprintf(out, out_len, "%s", r ? r : "");
}

/* The feature flags the server reports for the channel (the join reply's
 * response.flags, a system message of extension "flags"; docs/flags.md):
 * kept, and given to on_flags when they differ from the last ones. */
static void take_flags(struct rt_client_channel *ch, const json_t *flags)
{
	if (!json_is_object(flags) || (ch->flags && json_equal(ch->flags, flags)))
		return;
	json_t *copy = json_deep_copy(flags);
	if (!copy) {
		fail(ch->c, RT_ENOMEM, "out of memory keeping the feature flags");
		return;
	}
	json_decref(ch->flags);
	ch->flags = copy;
	if (!ch->cb.on_flags)
		return;
	char *txt = dump(ch->c, copy, NULL);
	if (!txt) {
		fail(ch->c, RT_ENOMEM, "out of memory delivering the feature flags");
		return;
	}
	ch->cb.on_flags(ch->user, ch, txt);
	mem_free(ch->c, txt);
}

static void handle_join_reply(struct rt_client_channel *ch, const json_t *payload, int64_t now)
{
	struct rt_client *c = ch->c;
	const char *status = str_of(payload, "status");
	if (status && !strcmp(status, "ok")) {
		take_flags(ch, json_object_get(json_object_get(payload, "response"), "flags"));
		if (ch->state == RT_CHANNEL_CLOSED || c->fail_rc)
			return; /* left from the callback */
		bool is_rejoin = ch->has_joined;
		ch->has_joined = true;
		ch->rejoin_tries = 0;
		ch->join_deadline = 0;
		emit_status(ch, RT_CHANNEL_JOINED, 0, NULL, is_rejoin);
		if (ch->state != RT_CHANNEL_JOINED || c->phase != PH_WS || c->fail_rc)
			return; /* left or closed from the callback */
		if (ch->track_meta && !has_held_presence(c, ch)) {
			json_t *p = track_payload(ch->track_meta);
			int rc = p ? send_push(ch, PUSH_TRACK, 0, p) : RT_ENOMEM;
			json_decref(p);
			if (rc == RT_ENOMEM)
				fail(c, rc, "out of memory tracking presence again");
		}
		flush_held(ch);
		if (ch->state == RT_CHANNEL_JOINED && c->phase == PH_WS && !c->fail_rc)
			live_send_unsent(ch);
		return;
	}
	char reason[512];
	reason_text(json_object_get(payload, "response"), reason, sizeof reason);
	ch->join_ref = 0;
	ch->join_deadline = 0;
	static const unsigned steps[] = {1000, 2000, 5000, 10000};
	unsigned i = ch->rejoin_tries < 3 ? ch->rejoin_tries : 3;
	ch->rejoin_tries++;
	ch->rejoin_at = now + steps[i];
	int rc = strstr(reason, "JWT") || strstr(reason, "Unauthorized") || strstr(reason, "Token")
			 ? RT_EAUTH
			 : RT_EPROTO;
	emit_error(c, ch, rc, "join %s refused: %s", ch->topic, reason);
	if (ch->state == RT_CHANNEL_CLOSED)
		return; /* left from the callback */
	emit_status(ch, RT_CHANNEL_ERRORED, rc, reason, false);
}

static void handle_reply(struct rt_client *c, struct rt_client_channel *ch, const json_t *m,
			 const json_t *payload, int64_t now)
{
	uint64_t ref = ref_of(m, "ref");
	if (!ref)
		return;
	if (ch && ch->join_ref == ref && ch->state == RT_CHANNEL_JOINING) {
		handle_join_reply(ch, payload, now);
		return;
	}
	for (struct wait_reply **pp = &c->replies; *pp; pp = &(*pp)->next) {
		struct wait_reply *w = *pp;
		if (w->ref != ref)
			continue;
		*pp = w->next;
		struct rt_client_channel *wch = w->ch;
		uint64_t id = w->id;
		enum push_kind kind = w->kind;
		mem_free(c, w);
		const char *status = str_of(payload, "status");
		bool ok = status && !strcmp(status, "ok");
		char reason[512] = "";
		if (!ok)
			reason_text(json_object_get(payload, "response"), reason, sizeof reason);
		if (!ok && (kind == PUSH_LIVE_SUBSCRIBE || kind == PUSH_LIVE_UNSUBSCRIBE)) {
			const char *what = kind == PUSH_LIVE_SUBSCRIBE ? "live_subscribe"
								       : "live_unsubscribe";
			emit_error(c, wch, RT_EPROTO, "%s refused on %s: %s", what, wch->topic,
				   reason);
		}
		char *response = NULL;
		if (IS_WRITE_LIKE(kind)) {
			bool oom = false;
			response = text_of(c, json_object_get(payload, "response"), &oom);
			if (oom) {
				report(wch, kind, id, RT_ENOMEM, NULL, NULL);
				return;
			}
		}
		report(wch, kind, id, ok ? 0 : RT_EPROTO, ok ? NULL : reason, response);
		mem_free(c, response);
		return;
	}
}

/* Positions compare as decimal numbers of up to 20 digits. */
static int pos_cmp(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a, b);
}

static bool is_position(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n && n < 21 && strspn(s, "0123456789") == n;
}

static void handle_change(struct rt_client_channel *ch, const json_t *payload)
{
	struct rt_client *c = ch->c;
	const json_t *data = json_object_get(payload, "data");
	if (!json_is_object(data)) {
		emit_error(c, ch, RT_EPROTO, "postgres_changes without data on %s", ch->topic);
		return;
	}
	const char *pos = str_of(data, "position");
	if (pos && !is_position(pos))
		pos = NULL;
	if (pos && ch->pos[0] && pos_cmp(pos, ch->pos) <= 0)
		return; /* already delivered (a replay overlapping live changes) */
	bool oom = false;
	char *record = text_of(c, json_object_get(data, "record"), &oom);
	char *old = text_of(c, json_object_get(data, "old_record"), &oom);
	char *all = text_of(c, data, &oom);
	if (oom) {
		fail(c, RT_ENOMEM, "out of memory delivering a change");
		goto out_free;
	}
	if (pos)
		strcpy(ch->pos, pos);
	struct rt_client_change chg = {
		.type = str_of(data, "type"),
		.schema = str_of(data, "schema"),
		.table = str_of(data, "table"),
		.commit_timestamp = str_of(data, "commit_timestamp"),
		.position = pos,
		.record = record,
		.old_record = old,
		.data = all,
	};
	if (ch->cb.on_change)
		ch->cb.on_change(ch->user, ch, &chg);
out_free:
	mem_free(c, record);
	mem_free(c, old);
	mem_free(c, all);
}

static void handle_broadcast(struct rt_client_channel *ch, const json_t *payload)
{
	struct rt_client *c = ch->c;
	const char *event = str_of(payload, "event");
	bool oom = false;
	const json_t *inner = json_object_get(payload, "payload");
	char *txt = inner ? text_of(c, inner, &oom) : NULL;
	if (oom) {
		fail(c, RT_ENOMEM, "out of memory delivering a broadcast");
		return;
	}
	struct rt_broadcast b = {event ? event : "", txt ? txt : "null"};
	if (ch->cb.on_broadcast)
		ch->cb.on_broadcast(ch->user, ch, &b);
	mem_free(c, txt);
}

static void handle_presence(struct rt_client_channel *ch, const json_t *payload, bool is_full)
{
	struct rt_client *c = ch->c;
	if (!json_is_object(payload)) {
		emit_error(c, ch, RT_EPROTO, "presence message is not an object on %s", ch->topic);
		return;
	}
	json_t *events = rt_client_presence_apply(&ch->presence, payload, is_full);
	if (!events) {
		fail(c, RT_ENOMEM, "out of memory applying presence");
		return;
	}
	/* The state and events stay alive through the callbacks, even if the
	 * channel is left from one of them (it is freed after the loop turn). */
	size_t i;
	const json_t *ev;
	json_array_foreach(events, i, ev) {
		if (!ch->cb.on_presence)
			break;
		const char *kind = json_string_value(json_array_get(ev, 0));
		bool oom = false;
		char *cur = text_of(c, json_array_get(ev, 2), &oom);
		char *chg = text_of(c, json_array_get(ev, 3), &oom);
		char *state = NULL;
		struct rt_presence_event p = {RT_PRESENCE_SYNC, NULL, NULL, NULL, NULL};
		if (!strcmp(kind, "sync")) {
			state = text_of(c, ch->presence, &oom);
			p.state = state;
		} else {
			p.kind = !strcmp(kind, "join") ? RT_PRESENCE_JOIN : RT_PRESENCE_LEAVE;
			p.key = json_string_value(json_array_get(ev, 1));
			p.current = cur;
			p.changed = chg;
		}
		if (oom)
			fail(c, RT_ENOMEM, "out of memory delivering presence");
		else
			ch->cb.on_presence(ch->user, ch, &p);
		mem_free(c, cur);
		mem_free(c, chg);
		mem_free(c, state);
		if (oom)
			break;
	}
	json_decref(events);
}

static void handle_system(struct rt_client_channel *ch, const json_t *payload)
{
	struct rt_client *c = ch->c;
	bool oom = false;
	char *txt = text_of(c, payload, &oom);
	if (oom) {
		fail(c, RT_ENOMEM, "out of memory delivering a system message");
		return;
	}
	/* rtsync says where a postgres_changes subscription starts: a channel
	 * that has seen no change yet resumes from there after a reconnect. */
	const char *start = str_of(payload, "position");
	const char *ext = str_of(payload, "extension");
	const char *status = str_of(payload, "status");
	if (!ch->pos[0] && start && is_position(start) && ext && !strcmp(ext, "postgres_changes") &&
	    status && !strcmp(status, "ok"))
		snprintf(ch->pos, sizeof ch->pos, "%s", start);
	struct rt_system_event s = {
		.extension = str_of(payload, "extension"),
		.status = str_of(payload, "status"),
		.message = str_of(payload, "message"),
		.resync_required = json_is_true(json_object_get(payload, "resync_required")),
		.payload = txt,
	};
	if (ch->cb.on_system)
		ch->cb.on_system(ch->user, ch, &s);
	mem_free(c, txt);
	if (ext && !strcmp(ext, "flags") && ch->state != RT_CHANNEL_CLOSED && !c->fail_rc)
		take_flags(ch, json_object_get(payload, "flags"));
}

/* on_live for one applied entry. */
static void emit_live(struct rt_client_channel *ch, struct live_query *lq, const json_t *e,
		      const char *pos, bool is_result)
{
	struct rt_client *c = ch->c;
	bool oom = false;
	char *rows = text_of(c, lq->copy.rows, &oom);
	char *keys = text_of(c, lq->copy.keys, &oom);
	char *ops = is_result ? NULL : text_of(c, json_object_get(e, "ops"), &oom);
	char *entry = text_of(c, e, &oom);
	if (oom) {
		emit_error(c, ch, RT_ENOMEM, "out of memory delivering live query %s on %s", lq->id,
			   ch->topic);
		goto out_free;
	}
	struct rt_lq_event ev = {
		.id = lq->id,
		.kind = is_result ? RT_LQ_RESULT : RT_LQ_DIFF,
		.position = pos,
		.is_resync = is_result && json_is_true(json_object_get(e, "resync")),
		.n_rows = rt_livecopy_count(&lq->copy),
		.rows = rows,
		.keys = keys,
		.ops = ops,
		.entry = entry,
	};
	ch->cb.on_live(ch->user, ch, &ev);
out_free:
	mem_free(c, rows);
	mem_free(c, keys);
	mem_free(c, ops);
	mem_free(c, entry);
}

/* An error entry: the server dropped the query; so does the channel, before
 * telling the application (which may subscribe it again from the callback). */
static void live_error(struct rt_client_channel *ch, size_t at, const json_t *e, const char *pos)
{
	struct rt_client *c = ch->c;
	struct live_query *lq = ch->lq[at];
	memmove(&ch->lq[at], &ch->lq[at + 1], (ch->n_lq - at - 1) * sizeof *ch->lq);
	ch->n_lq--;
	bool oom = false;
	char *entry = text_of(c, e, &oom);
	if (oom) {
		emit_error(c, ch, RT_ENOMEM, "out of memory delivering live query %s on %s",
			   lq->id, ch->topic);
	} else if (ch->cb.on_live) {
		const char *code = str_of(e, "code"), *msg = str_of(e, "message");
		struct rt_lq_event ev = {
			.id = lq->id,
			.kind = RT_LQ_ERROR,
			.position = pos,
			.code = code ? code : "",
			.message = msg ? msg : "",
			.entry = entry,
		};
		ch->cb.on_live(ch->user, ch, &ev);
	}
	mem_free(c, entry);
	live_query_free(c, lq);
}

/* A live_query message: each entry applied to its query's copy, then
 * reported; one that does not apply makes that query start over. */
static void handle_live(struct rt_client_channel *ch, const json_t *payload)
{
	struct rt_client *c = ch->c;
	char err[256];
	if (rt_livecopy_check_message(payload, err, sizeof err)) {
		/* which copies it meant to change is unknown: every query starts over */
		for (size_t i = 0; i < ch->n_lq; i++) {
			rt_livecopy_reset(&ch->lq[i]->copy);
			ch->lq[i]->is_pending = true;
			ch->lq[i]->is_sent = false;
		}
		if (ch->state == RT_CHANNEL_JOINED && c->phase == PH_WS && !c->fail_rc)
			live_send_unsent(ch);
		emit_error(c, ch, RT_EPROTO, "%s on %s; its live queries are subscribed again", err,
			   ch->topic);
		return;
	}
	/* the channel's queries all stand at this position once it is applied */
	char pos[21];
	snprintf(pos, sizeof pos, "%s", str_of(payload, "position"));
	snprintf(ch->live_pos, sizeof ch->live_pos, "%s", pos);
	size_t i;
	const json_t *e;
	json_array_foreach(json_object_get(payload, "queries"), i, e) {
		if (ch->state == RT_CHANNEL_CLOSED || c->fail_rc)
			break; /* left from a callback, or the connection restarts */
		const char *id = str_of(e, "id"), *kind = str_of(e, "kind");
		size_t at;
		struct live_query *lq = live_find(ch, id, &at);
		if (!lq)
			continue; /* unsubscribed while the message was on its way */
		if (!strcmp(kind, "error")) {
			live_error(ch, at, e, pos);
			continue;
		}
		bool is_result = !strcmp(kind, "result");
		if (!is_result && lq->is_pending)
			continue; /* of the subscription this id had before */
		int rc = rt_livecopy_apply(&lq->copy, e, err, sizeof err);
		if (rc) {
			live_resubscribe(ch, lq);
			emit_error(c, ch, rc == RT_ENOMEM ? RT_ENOMEM : RT_EPROTO,
				   "live query %s on %s: %s; subscribed again", id, ch->topic,
				   rc == RT_ENOMEM ? "out of memory" : err);
			continue;
		}
		lq->is_pending = false;
		if (ch->cb.on_live)
			emit_live(ch, lq, e, pos, is_result);
	}
}

static void handle_message(struct rt_client *c, const char *data, size_t len)
{
	json_error_t err;
	json_t *m = json_loadb(data, len, 0, &err);
	if (!m) {
		/* jansson cannot always tell out of memory from bad syntax, and a
		 * server sending bad JSON is broken: restart the connection (the
		 * channels resume, so no change is lost either way). */
		if (is_oom(&err))
			fail(c, RT_ENOMEM, "out of memory parsing a message");
		else
			fail(c, RT_EPROTO, "unparsable message: %s", err.text);
		return;
	}
	int64_t now = now_ms();
	const char *topic = str_of(m, "topic"), *event = str_of(m, "event");
	const json_t *payload = json_object_get(m, "payload");
	if (!json_is_object(m) || !topic || !event) {
		emit_error(c, NULL, RT_EPROTO, "message without topic or event");
		goto out_put;
	}
	if (!strcmp(topic, "phoenix")) {
		if (!strcmp(event, "phx_reply") && c->hb_ref && ref_of(m, "ref") == c->hb_ref)
			c->hb_ref = 0;
		goto out_put;
	}
	struct rt_client_channel *ch = find_channel(c, topic);
	if (!strcmp(event, "phx_reply")) {
		handle_reply(c, ch, m, payload, now);
		goto out_put;
	}
	if (!ch || ch->state == RT_CHANNEL_CLOSED)
		goto out_put; /* a channel left meanwhile */
	if (!strcmp(event, "postgres_changes"))
		handle_change(ch, payload);
	else if (!strcmp(event, "broadcast"))
		handle_broadcast(ch, payload);
	else if (!strcmp(event, "presence_state"))
		handle_presence(ch, payload, true);
	else if (!strcmp(event, "presence_diff"))
		handle_presence(ch, payload, false);
	else if (!strcmp(event, "system"))
		handle_system(ch, payload);
	else if (!strcmp(event, "live_query"))
		handle_live(ch, payload);
	else if (!strcmp(event, "phx_close")) {
		ch->join_ref = 0;
		drop_replies(c, ch, RT_ECLOSED, true);
		emit_status(ch, RT_CHANNEL_CLOSED, RT_ECLOSED, "closed by the server", false);
	} else if (!strcmp(event, "phx_error")) {
		ch->join_ref = 0;
		ch->rejoin_at = now + 1000;
		emit_status(ch, RT_CHANNEL_ERRORED, RT_EIO, "channel error on the server", false);
	}
out_put:
	json_decref(m);
}

/* ---- timers ---- */

static void run_timers(struct rt_client *c, int64_t now)
{
	if ((c->phase == PH_TCP || c->phase == PH_TLS || c->phase == PH_HANDSHAKE) &&
	    now >= c->connect_deadline)
		fail(c, RT_ETIMEDOUT, "connect timeout after %u ms", c->opt.connect_timeout_ms);
	if (c->phase == PH_WS && now >= c->hb_next && !c->fail_rc) {
		if (c->hb_ref) {
			fail(c, RT_ETIMEDOUT, "heartbeat timeout");
		} else {
			uint64_t ref = new_ref(c);
			json_t *p = json_object();
			int rc = p ? send_msg(c, "phoenix", "heartbeat", p, ref, 0) : RT_ENOMEM;
			json_decref(p);
			if (rc == RT_ENOMEM)
				fail(c, rc, "out of memory sending a heartbeat");
			c->hb_ref = ref;
			c->hb_next = now + c->opt.heartbeat_ms;
		}
	}
	/* Push replies that never came. */
	for (struct wait_reply **pp = &c->replies; *pp;) {
		struct wait_reply *w = *pp;
		if (now < w->deadline) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		struct rt_client_channel *wch = w->ch;
		uint64_t id = w->id;
		enum push_kind kind = w->kind;
		mem_free(c, w);
		report(wch, kind, id, RT_ETIMEDOUT, "no reply", NULL);
		pp = &c->replies; /* the callback may have changed the list */
	}
	for (struct rt_client_channel *ch = c->channels; ch && c->phase == PH_WS && !c->fail_rc;
	     ch = ch->next) {
		if (ch->state == RT_CHANNEL_JOINING && ch->join_ref && now >= ch->join_deadline) {
			ch->join_ref = 0;
			ch->rejoin_at = now + 1000;
			emit_error(c, ch, RT_ETIMEDOUT, "join %s: no reply", ch->topic);
			emit_status(ch, RT_CHANNEL_ERRORED, RT_ETIMEDOUT, "join timeout", false);
		} else if ((ch->state == RT_CHANNEL_ERRORED || ch->state == RT_CHANNEL_JOINING) &&
			   !ch->join_ref && now >= ch->rejoin_at) {
			send_join(ch, now);
		}
	}
	if (c->state == RT_CLIENT_RECONNECTING && c->phase == PH_NONE && now >= c->reconnect_at &&
	    !c->fail_rc)
		start_connect(c, now);
}

/* Timers of the client's modules, each at most once per turn (one armed
 * again for now runs in the next turn); a run may add, arm or remove
 * timers. */
static void run_module_timers(struct rt_client *c, int64_t now)
{
	uint64_t turn = ++c->timer_turn;
	for (bool again = true; again;) {
		again = false;
		for (struct rt_client_timer *t = c->timers; t; t = t->next) {
			if (!t->due_ms || t->due_ms > now || t->ran_turn == turn)
				continue;
			t->due_ms = 0;
			t->ran_turn = turn;
			t->run(t->user, now);
			again = true; /* the list may have changed: scan it again */
			break;
		}
	}
}

/* ---- zombies ---- */

static void free_zombies(struct rt_client *c)
{
	while (c->zombies) {
		struct rt_client_channel *ch = c->zombies;
		c->zombies = ch->next;
		channel_free(ch);
	}
}

/* ---- public API ---- */

int rt_client_new(const struct rt_client_options *opt, struct rt_client **out)
{
	*out = NULL;
	if (!opt || !opt->url || !opt->apikey || !*opt->apikey || !is_utf8(opt->apikey) ||
	    (opt->access_token && !is_utf8(opt->access_token)))
		return RT_EINVAL;
	const struct rt_allocator *a = opt->allocator ? opt->allocator : &default_alloc;
	struct rt_client *c = a->realloc(a->ud, NULL, sizeof *c);
	if (!c)
		return RT_ENOMEM;
	memset(c, 0, sizeof *c);
	c->alloc = *a;
	c->ws_alloc = (struct rt_ws_allocator){a->realloc, a->ud};
	c->opt = *opt;
	c->opt.url = NULL;
	c->opt.apikey = NULL;
	c->opt.access_token = NULL;
	c->opt.allocator = NULL;
	c->opt.tls_ca_file = NULL;
	c->opt.tls_ca_dir = NULL;
	if (!c->opt.heartbeat_ms)
		c->opt.heartbeat_ms = 25000;
	if (!c->opt.connect_timeout_ms)
		c->opt.connect_timeout_ms = 10000;
	if (!c->opt.push_timeout_ms)
		c->opt.push_timeout_ms = 10000;
	if (!c->opt.reconnect_base_ms)
		c->opt.reconnect_base_ms = 500;
	if (!c->opt.reconnect_max_ms)
		c->opt.reconnect_max_ms = 10000;
	if (c->opt.reconnect_max_ms < c->opt.reconnect_base_ms)
		c->opt.reconnect_max_ms = c->opt.reconnect_base_ms;
	if (!c->opt.max_buffered_pushes)
		c->opt.max_buffered_pushes = 100;
	if (!c->opt.max_message_bytes)
		c->opt.max_message_bytes = 8u << 20;
	if (!c->opt.max_output_bytes)
		c->opt.max_output_bytes = 16u << 20;
	c->epfd = c->evfd = c->sock = -1;
	c->state = RT_CLIENT_IDLE;
	int rc = rt_client_url_parse(&c->alloc, opt->url, &c->url);
	if (rc)
		goto err_free;
	if (c->url.is_tls) {
		char terr[300];
		rc = rt_client_tls_new(c->url.host, opt->tls_ca_file, opt->tls_ca_dir,
				       opt->tls_skip_verify, &c->tls, terr, sizeof terr);
		if (rc)
			goto err_free;
	}
	rc = RT_ENOMEM;
	if ((opt->tls_ca_file && !(c->ca_file = mem_strdup(c, opt->tls_ca_file))) ||
	    (opt->tls_ca_dir && !(c->ca_dir = mem_strdup(c, opt->tls_ca_dir))))
		goto err_free;
	c->apikey = mem_strdup(c, opt->apikey);
	if (!c->apikey)
		goto err_free;
	if (opt->access_token && !(c->token = mem_strdup(c, opt->access_token)))
		goto err_free;
	rc = RT_EIO;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->epfd < 0 || c->evfd < 0)
		goto err_free;
	struct epoll_event e = {.events = EPOLLIN, .data.fd = c->evfd};
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &e) < 0)
		goto err_free;
	if (getrandom(&c->rng, sizeof c->rng, GRND_NONBLOCK) != (ssize_t)sizeof c->rng)
		c->rng = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)c;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init(&c->lock, &ma) ? RT_ENOMEM : 0;
	pthread_mutexattr_destroy(&ma);
	if (rc)
		goto err_free;
	*out = c;
	return 0;
err_free:
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->evfd >= 0)
		close(c->evfd);
	rt_client_url_deinit(&c->alloc, &c->url);
	rt_client_tls_free(c->tls);
	mem_free(c, c->apikey);
	mem_free(c, c->token);
	mem_free(c, c->ca_file);
	mem_free(c, c->ca_dir);
	a->realloc(a->ud, c, 0);
	return rc;
}

int rt_client_connect(struct rt_client *c)
{
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	if ((c->state != RT_CLIENT_IDLE && c->state != RT_CLIENT_CLOSED) || c->phase != PH_NONE ||
	    c->is_close_pending) {
		rc = c->phase != PH_NONE || c->is_close_pending ? RT_EAGAIN : RT_EINVAL;
		goto out_unlock;
	}
	if (!c->ai) {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		int gai = getaddrinfo(c->url.host, c->url.port, &hints, &c->ai);
		if (gai) {
			c->ai = NULL;
			rc = gai == EAI_MEMORY ? RT_ENOMEM : RT_EIO;
			goto out_unlock;
		}
	}
	c->is_user_closed = false;
	c->attempt = 0;
	c->fail_rc = 0;
	/* Connect from the loop, so the CONNECTING callback arrives on its thread. */
	c->state = RT_CLIENT_RECONNECTING;
	c->reconnect_at = 0;
	wake(c);
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_client_close(struct rt_client *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->is_user_closed)
		goto out_unlock;
	c->is_user_closed = true;
	if (c->phase == PH_WS && c->has_ws && !c->in_feed) {
		rt_ws_close(&c->ws, 1000, "client closed");
		flush_output(c); /* best effort: the close frame, if the socket takes it */
	}
	/* The loop thread tears down and reports CLOSED. */
	if (c->phase != PH_NONE)
		fail(c, RT_ECLOSED, "closed by the application");
	else if (c->state != RT_CLIENT_CLOSED && c->state != RT_CLIENT_IDLE)
		c->is_close_pending = true;
	wake(c);
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return 0;
}

void rt_client_free(struct rt_client *c)
{
	if (!c)
		return;
	rt_client_stop_thread(c);
	close_socket(c);
	drop_replies(c, NULL, 0, false);
	drop_held(c, NULL, false);
	while (c->channels) {
		struct rt_client_channel *ch = c->channels;
		c->channels = ch->next;
		channel_free(ch);
	}
	free_zombies(c);
	if (c->ai)
		freeaddrinfo(c->ai);
	close(c->epfd);
	close(c->evfd);
	rt_client_tls_free(c->tls);
	rt_client_url_deinit(&c->alloc, &c->url);
	mem_free(c, c->apikey);
	mem_free(c, c->token);
	mem_free(c, c->ca_file);
	mem_free(c, c->ca_dir);
	mem_free(c, c->out);
	pthread_mutex_destroy(&c->lock);
	struct rt_allocator a = c->alloc;
	a.realloc(a.ud, c, 0);
}

int rt_client_fd(const struct rt_client *c)
{
	return c->epfd;
}

int rt_client_timeout_ms(struct rt_client *c)
{
	pthread_mutex_lock(&c->lock);
	int64_t now = now_ms(), next = INT64_MAX;
#define AT(t) next = (t) < next ? (t) : next
	if (c->fail_rc || c->n_dropped || c->is_close_pending)
		next = now;
	if (c->phase == PH_TCP || c->phase == PH_TLS || c->phase == PH_HANDSHAKE)
		AT(c->connect_deadline);
	if (c->phase == PH_WS) {
		AT(c->hb_next);
		for (struct rt_client_channel *ch = c->channels; ch; ch = ch->next) {
			if (ch->state == RT_CHANNEL_JOINING && ch->join_ref)
				AT(ch->join_deadline);
			else if (ch->state == RT_CHANNEL_ERRORED ||
				 (ch->state == RT_CHANNEL_JOINING && !ch->join_ref))
				AT(ch->rejoin_at);
		}
		for (struct wait_reply *w = c->replies; w; w = w->next)
			AT(w->deadline);
	}
	if (c->state == RT_CLIENT_RECONNECTING && c->phase == PH_NONE)
		AT(c->reconnect_at);
	for (struct rt_client_timer *t = c->timers; t; t = t->next)
		if (t->due_ms)
			AT(t->due_ms);
#undef AT
	pthread_mutex_unlock(&c->lock);
	if (next == INT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

int rt_client_process(struct rt_client *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->depth || (c->has_thread && !pthread_equal(pthread_self(), c->thread))) {
		pthread_mutex_unlock(&c->lock);
		return RT_EINVAL;
	}
	c->depth++;
	uint64_t drain;
	while (read(c->evfd, &drain, sizeof drain) > 0) {
	}
	struct epoll_event evs[4];
	int n = epoll_wait(c->epfd, evs, 4, 0);
	int64_t now = now_ms();
	for (int i = 0; i < n; i++) {
		if (evs[i].data.fd != c->sock || c->sock < 0 || c->fail_rc)
			continue;
		uint32_t e = evs[i].events;
		if (c->phase == PH_TCP && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			tcp_connected(c);
		else if (c->phase == PH_TLS)
			tls_step(c);
		/* a TLS read may have waited for the socket to take a write */
		if (c->phase != PH_TCP && c->phase != PH_TLS &&
		    (e & (EPOLLIN | EPOLLERR | EPOLLHUP) || (c->tls && (e & EPOLLOUT))))
			read_socket(c, now);
	}
	if (c->n_dropped) {
		size_t k = c->n_dropped;
		c->n_dropped = 0;
		emit_error(c, NULL, RT_ELIMIT,
			   "%zu push(es) refused: the buffer of pushes waiting for a join is full", k);
	}
	now = now_ms();
	run_timers(c, now);
	run_module_timers(c, now);
	if (c->is_close_pending) {
		c->is_close_pending = false;
		emit_state(c, RT_CLIENT_CLOSED, 0, 0, 0, NULL);
	}
	flush_output(c);
	if (c->fail_rc) {
		int rc = c->fail_rc;
		char detail[sizeof c->fail_detail];
		strcpy(detail, c->fail_detail);
		c->fail_rc = 0;
		if (rc == RT_ENOMEM)
			emit_error(c, NULL, rc, "%s", detail);
		connection_lost(c, rc, detail, now_ms());
		/* a reconnect due right away starts in this turn */
		if (c->state == RT_CLIENT_RECONNECTING && now_ms() >= c->reconnect_at && !c->fail_rc)
			start_connect(c, now_ms());
		flush_output(c);
		if (c->fail_rc)
			wake(c);
	}
	watch_socket(c);
	c->depth--;
	free_zombies(c);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int rt_client_run(struct rt_client *c, int timeout_ms)
{
	int t = rt_client_timeout_ms(c);
	if (timeout_ms >= 0 && (t < 0 || t > timeout_ms))
		t = timeout_ms;
	struct pollfd p = {.fd = c->epfd, .events = POLLIN};
	if (t != 0)
		poll(&p, 1, t);
	return rt_client_process(c);
}

static void *thread_main(void *arg)
{
	struct rt_client *c = arg;
	while (!atomic_load(&c->stop_thread))
		rt_client_run(c, 1000);
	return NULL;
}

int rt_client_start_thread(struct rt_client *c)
{
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	if (c->has_thread) {
		rc = RT_EINVAL;
		goto out_unlock;
	}
	atomic_store(&c->stop_thread, false);
	if (pthread_create(&c->thread, NULL, thread_main, c)) {
		rc = RT_EIO;
		goto out_unlock;
	}
	c->has_thread = true;
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void rt_client_stop_thread(struct rt_client *c)
{
	if (!c->has_thread)
		return;
	atomic_store(&c->stop_thread, true);
	uint64_t one = 1;
	ssize_t w = write(c->evfd, &one, sizeof one);
	(void)w;
	pthread_join(c->thread, NULL);
	c->has_thread = false;
}

int rt_client_set_access_token(struct rt_client *c, const char *token)
{
	if (token && !is_utf8(token))
		return RT_EINVAL;
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	char *copy = NULL;
	if (token && !(copy = mem_strdup(c, token))) {
		rc = RT_ENOMEM;
		goto out_unlock;
	}
	json_t *p = json_pack("{s:s}", "access_token", token ? token : c->apikey);
	if (!p) {
		mem_free(c, copy);
		rc = RT_ENOMEM;
		goto out_unlock;
	}
	mem_free(c, c->token);
	c->token = copy;
	for (struct rt_client_channel *ch = c->channels; ch; ch = ch->next)
		if (ch->state == RT_CHANNEL_JOINED && c->phase == PH_WS)
			send_msg(c, ch->topic, "access_token", p, new_ref(c), ch->join_ref);
	json_decref(p);
	wake(c);
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

enum rt_client_state rt_client_state(struct rt_client *c)
{
	pthread_mutex_lock(&c->lock);
	enum rt_client_state s = c->state;
	pthread_mutex_unlock(&c->lock);
	return s;
}

/* ---- channel API ---- */

static json_t *build_config(const struct rt_channel_options *o)
{
	json_t *pg = json_array();
	if (!pg)
		return NULL;
	for (size_t i = 0; i < o->n_changes; i++) {
		const struct rt_change_filter *f = &o->changes[i];
		json_t *e = json_pack("{s:s,s:s}", "event", f->event ? f->event : "*", "schema",
				      f->schema ? f->schema : "public");
		if (!e || (f->table && json_object_set_new(e, "table", json_string(f->table))) ||
		    (f->filter && json_object_set_new(e, "filter", json_string(f->filter))) ||
		    json_array_append_new(pg, e)) {
			json_decref(e);
			json_decref(pg);
			return NULL;
		}
	}
	json_t *presence = json_pack("{s:s,s:b}", "key", o->presence_key ? o->presence_key : "",
				     "enabled", o->presence);
	return json_pack("{s:{s:b,s:b},s:o,s:o,s:b}", "broadcast", "self", o->broadcast_self, "ack",
			 o->broadcast_ack, "presence", presence, "postgres_changes", pg, "private",
			 o->is_private);
}

static bool lq_def_valid(const struct rt_lq_def *d)
{
	size_t n = d->id ? strlen(d->id) : 0;
	return n && n <= RT_LQ_MAX_ID && is_utf8(d->id) && d->table && *d->table &&
	       is_utf8(d->table) && (!d->schema || (*d->schema && is_utf8(d->schema))) &&
	       (!d->query || is_utf8(d->query));
}

/* Definitions valid, and no id twice among them. */
static bool lq_defs_valid(const struct rt_lq_def *defs, size_t n)
{
	if (n > RT_LQ_MAX_QUERIES || (n && !defs))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!lq_def_valid(&defs[i]))
			return false;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(defs[i].id, defs[k].id))
				return false;
	}
	return true;
}

static bool lq_options_valid(const struct rt_lq_options *o)
{
	return lq_defs_valid(o->queries, o->n_queries) && o->throttle_ms <= RT_LQ_MAX_WINDOW_MS &&
	       o->debounce_ms <= RT_LQ_MAX_WINDOW_MS && o->max_wait_ms <= RT_LQ_MAX_WINDOW_MS &&
	       !(o->throttle_ms && o->debounce_ms);
}

/* A live query of the channel (not linked in yet), or NULL for lack of memory. */
static struct live_query *live_query_new(struct rt_client *c, const struct rt_lq_def *d)
{
	struct live_query *lq = mem_alloc(c, sizeof *lq);
	if (!lq)
		return NULL;
	*lq = (struct live_query){.is_pending = true};
	rt_livecopy_init(&lq->copy, &c->alloc);
	lq->def = json_pack("{s:s,s:s,s:s}", "id", d->id, "schema",
			    d->schema ? d->schema : "public", "table", d->table);
	if (!lq->def || (d->query && *d->query &&
			 json_object_set_new(lq->def, "query", json_string(d->query)))) {
		live_query_free(c, lq);
		return NULL;
	}
	lq->id = json_string_value(json_object_get(lq->def, "id"));
	return lq;
}

/* The delivery options the join sends (those set). */
static json_t *lq_options_json(const struct rt_lq_options *o)
{
	json_t *v = json_object();
	static const char *const names[] = {"throttle_ms", "debounce_ms", "max_wait_ms"};
	const unsigned ms[] = {o->throttle_ms, o->debounce_ms, o->max_wait_ms};
	for (size_t i = 0; v && i < 3; i++)
		if (ms[i] && json_object_set_new(v, names[i], json_integer(ms[i]))) {
			json_decref(v);
			return NULL;
		}
	return v;
}

static bool options_valid(const struct rt_channel_options *o)
{
	if (!o || !o->topic || !*o->topic || strlen(o->topic) > MAX_SUBTOPIC || !is_utf8(o->topic))
		return false;
	if (o->presence_key && !is_utf8(o->presence_key))
		return false;
	if (o->resume_after && *o->resume_after && !is_position(o->resume_after))
		return false;
	if (o->n_changes && !o->changes)
		return false;
	if (o->live && !lq_options_valid(o->live))
		return false;
	for (size_t i = 0; i < o->n_changes; i++) {
		const struct rt_change_filter *f = &o->changes[i];
		const char *s[] = {f->event, f->schema, f->table, f->filter};
		for (size_t k = 0; k < 4; k++)
			if (s[k] && !is_utf8(s[k]))
				return false;
	}
	return true;
}

int rt_channel_join(struct rt_client *c, const struct rt_channel_options *o,
		    struct rt_client_channel **out)
{
	*out = NULL;
	if (!options_valid(o))
		return RT_EINVAL;
	int rc = RT_ENOMEM;
	pthread_mutex_lock(&c->lock);
	struct rt_client_channel *ch = mem_alloc(c, sizeof *ch);
	if (!ch)
		goto out_unlock;
	memset(ch, 0, sizeof *ch);
	ch->c = c;
	ch->cb = o->cb;
	ch->user = o->user;
	ch->want_ack = o->broadcast_ack;
	ch->state = RT_CHANNEL_JOINING;
	size_t tlen = strlen(TOPIC_PREFIX) + strlen(o->topic) + 1;
	ch->topic = mem_alloc(c, tlen);
	ch->config = build_config(o);
	ch->presence = json_object();
	if (!ch->topic || !ch->config || !ch->presence)
		goto err_free;
	if (o->live) {
		ch->has_live = true;
		if (!(ch->live_opts = lq_options_json(o->live)))
			goto err_free;
		for (; ch->n_lq < o->live->n_queries; ch->n_lq++)
			if (!(ch->lq[ch->n_lq] = live_query_new(c, &o->live->queries[ch->n_lq])))
				goto err_free;
	} else if (!(ch->live_opts = json_object())) {
		goto err_free;
	}
	snprintf(ch->topic, tlen, "%s%s", TOPIC_PREFIX, o->topic);
	if (o->resume_after)
		snprintf(ch->pos, sizeof ch->pos, "%s", o->resume_after);
	if (find_channel(c, ch->topic)) {
		rc = RT_EEXISTS;
		goto err_free;
	}
	ch->next = c->channels;
	if (c->channels)
		c->channels->prev = ch;
	c->channels = ch;
	if (c->phase == PH_WS && !c->fail_rc)
		send_join(ch, now_ms());
	wake(c);
	*out = ch;
	rc = 0;
	goto out_unlock;
err_free:
	if (ch->topic || ch->config || ch->presence)
		channel_free(ch);
	else
		mem_free(c, ch);
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_channel_leave(struct rt_client_channel *ch)
{
	if (!ch)
		return 0;
	struct rt_client *c = ch->c;
	pthread_mutex_lock(&c->lock);
	if (ch->join_ref && c->phase == PH_WS && ch->state != RT_CHANNEL_CLOSED) {
		json_t *p = json_object();
		if (p)
			send_msg(c, ch->topic, "phx_leave", p, new_ref(c), ch->join_ref);
		json_decref(p);
	}
	drop_replies(c, ch, 0, false);
	drop_held(c, ch, false);
	if (ch->prev)
		ch->prev->next = ch->next;
	else
		c->channels = ch->next;
	if (ch->next)
		ch->next->prev = ch->prev;
	ch->state = RT_CHANNEL_CLOSED;
	ch->cb = (struct rt_channel_callbacks){0};
	if (c->depth) { /* inside a callback: free after the loop turn */
		ch->next = c->zombies;
		c->zombies = ch;
	} else {
		channel_free(ch);
	}
	wake(c);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* push() under the client's lock from an API call, waking the loop; takes payload. */
static int push_now(struct rt_client_channel *ch, enum push_kind kind, json_t *payload,
		    uint64_t *id)
{
	struct rt_client *c = ch->c;
	pthread_mutex_lock(&c->lock);
	int rc = push(ch, kind, payload, id);
	if (!rc)
		wake(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_channel_send(struct rt_client_channel *ch, const char *event, const char *payload,
		    uint64_t *id)
{
	if (!event || !*event || !is_utf8(event))
		return RT_EINVAL;
	json_t *inner;
	int rc = parse_object(payload, &inner);
	if (rc)
		return rc;
	json_t *p = json_pack("{s:s,s:s,s:o}", "type", "broadcast", "event", event, "payload", inner);
	if (!p)
		return RT_ENOMEM;
	return push_now(ch, PUSH_BROADCAST, p, id);
}

int rt_channel_write(struct rt_client_channel *ch, const char *write, uint64_t *id)
{
	json_t *p;
	int rc = parse_object(write, &p);
	if (rc)
		return rc;
	if (!json_is_string(json_object_get(p, "type")) ||
	    !json_is_string(json_object_get(p, "table"))) {
		json_decref(p);
		return RT_EINVAL;
	}
	return push_now(ch, PUSH_WRITE, p, id);
}

int rt_channel_track(struct rt_client_channel *ch, const char *meta, uint64_t *id)
{
	json_t *m;
	int rc = parse_object(meta, &m);
	if (rc)
		return rc;
	json_t *p = track_payload(m);
	if (!p) {
		json_decref(m);
		return RT_ENOMEM;
	}
	struct rt_client *c = ch->c;
	pthread_mutex_lock(&c->lock);
	json_decref(ch->track_meta);
	ch->track_meta = m; /* tracked again after each rejoin */
	drop_held(c, ch, true); /* only the last track or untrack matters */
	rc = push(ch, PUSH_TRACK, p, id);
	wake(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_channel_untrack(struct rt_client_channel *ch, uint64_t *id)
{
	json_t *p = track_payload(NULL);
	if (!p)
		return RT_ENOMEM;
	struct rt_client *c = ch->c;
	pthread_mutex_lock(&c->lock);
	json_decref(ch->track_meta);
	ch->track_meta = NULL;
	drop_held(c, ch, true);
	int rc = push(ch, PUSH_UNTRACK, p, id);
	wake(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

enum rt_channel_state rt_channel_state(struct rt_client_channel *ch)
{
	pthread_mutex_lock(&ch->c->lock);
	enum rt_channel_state s = ch->state;
	pthread_mutex_unlock(&ch->c->lock);
	return s;
}

void rt_channel_position(struct rt_client_channel *ch, char pos[21])
{
	pthread_mutex_lock(&ch->c->lock);
	memcpy(pos, ch->pos, 21);
	pthread_mutex_unlock(&ch->c->lock);
}

int rt_channel_flags(struct rt_client_channel *ch, char **json)
{
	struct rt_client *c = ch->c;
	int rc = RT_ENOTFOUND;
	*json = NULL;
	pthread_mutex_lock(&c->lock);
	if (ch->flags)
		rc = (*json = dump(c, ch->flags, NULL)) ? 0 : RT_ENOMEM;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_channel_flag(struct rt_client_channel *ch, const char *name, char *variant,
		    size_t variant_cap)
{
	struct rt_client *c = ch->c;
	int rc = RT_ENOTFOUND;
	if (variant && variant_cap)
		*variant = 0;
	pthread_mutex_lock(&c->lock);
	const json_t *v = name ? json_object_get(ch->flags, name) : NULL;
	if (json_is_string(v)) {
		rc = 1;
		if (variant && variant_cap)
			snprintf(variant, variant_cap, "%s", json_string_value(v));
	} else if (json_is_boolean(v)) {
		rc = json_is_true(v);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_channel_presence_state(struct rt_client_channel *ch, char **json)
{
	struct rt_client *c = ch->c;
	pthread_mutex_lock(&c->lock);
	*json = dump(c, ch->presence, NULL);
	pthread_mutex_unlock(&c->lock);
	return *json ? 0 : RT_ENOMEM;
}

/* ---- live query API ---- */

int rt_lq_subscribe(struct rt_client_channel *ch, const struct rt_lq_def *defs, size_t n)
{
	if (!n || !lq_defs_valid(defs, n))
		return RT_EINVAL;
	struct rt_client *c = ch->c;
	struct live_query *made[RT_LQ_MAX_QUERIES] = {NULL};
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	if (ch->state == RT_CHANNEL_CLOSED) {
		rc = RT_ECLOSED;
		goto out_unlock;
	}
	size_t n_new = 0;
	for (size_t i = 0; i < n; i++)
		n_new += !live_find(ch, defs[i].id, NULL);
	if (ch->n_lq + n_new > RT_LQ_MAX_QUERIES) {
		rc = RT_ELIMIT;
		goto out_unlock;
	}
	/* all made before any is published: a failure changes nothing */
	for (size_t i = 0; i < n; i++)
		if (!(made[i] = live_query_new(c, &defs[i]))) {
			for (size_t k = 0; k < i; k++)
				live_query_free(c, made[k]);
			rc = RT_ENOMEM;
			goto out_unlock;
		}
	for (size_t i = 0; i < n; i++) {
		size_t at;
		if (live_find(ch, defs[i].id, &at)) {
			live_query_free(c, ch->lq[at]); /* replaced: its copy goes too */
			ch->lq[at] = made[i];
		} else {
			ch->lq[ch->n_lq++] = made[i];
		}
	}
	ch->has_live = true;
	if (ch->state == RT_CHANNEL_JOINED && c->phase == PH_WS && !c->fail_rc)
		live_send_unsent(ch);
	wake(c);
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_lq_unsubscribe(struct rt_client_channel *ch, const char *id)
{
	struct rt_client *c = ch->c;
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	size_t at;
	struct live_query *lq = id ? live_find(ch, id, &at) : NULL;
	if (!lq) {
		rc = RT_ENOTFOUND;
		goto out_unlock;
	}
	if (ch->state == RT_CHANNEL_JOINED && c->phase == PH_WS && !c->fail_rc && lq->is_sent) {
		json_t *p = json_pack("{s:[s]}", "ids", id);
		rc = p ? send_push(ch, PUSH_LIVE_UNSUBSCRIBE, 0, p) : RT_ENOMEM;
		json_decref(p);
		if (rc == RT_ENOMEM)
			goto out_unlock;
		rc = 0; /* not sent (the connection is going down): the rejoin leaves it out */
	}
	memmove(&ch->lq[at], &ch->lq[at + 1], (ch->n_lq - at - 1) * sizeof *ch->lq);
	ch->n_lq--;
	live_query_free(c, lq);
	wake(c);
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rt_lq_result(struct rt_client_channel *ch, const char *id, char **rows, char **keys)
{
	struct rt_client *c = ch->c;
	int rc = 0;
	*rows = NULL;
	if (keys)
		*keys = NULL;
	pthread_mutex_lock(&c->lock);
	struct live_query *lq = id ? live_find(ch, id, NULL) : NULL;
	if (!lq) {
		rc = RT_ENOTFOUND;
		goto out_unlock;
	}
	if (!rt_livecopy_has_result(&lq->copy)) {
		rc = RT_EAGAIN;
		goto out_unlock;
	}
	*rows = dump(c, lq->copy.rows, NULL);
	if (keys)
		*keys = dump(c, lq->copy.keys, NULL);
	if (!*rows || (keys && !*keys)) {
		mem_free(c, *rows);
		*rows = NULL;
		if (keys) {
			mem_free(c, *keys);
			*keys = NULL;
		}
		rc = RT_ENOMEM;
	}
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void rt_lq_position(struct rt_client_channel *ch, char pos[21])
{
	pthread_mutex_lock(&ch->c->lock);
	memcpy(pos, ch->live_pos, 21);
	pthread_mutex_unlock(&ch->c->lock);
}

/* ---- for the client's own modules (client_int.h) ---- */

void rt_client_lock(struct rt_client *c)
{
	pthread_mutex_lock(&c->lock);
}

void rt_client_unlock(struct rt_client *c)
{
	pthread_mutex_unlock(&c->lock);
}

void *rt_client_realloc(struct rt_client *c, void *p, size_t n)
{
	return c->alloc.realloc(c->alloc.ud, p, n);
}

int64_t rt_client_now_ms(void)
{
	return now_ms();
}

void rt_client_timer_add(struct rt_client *c, struct rt_client_timer *t)
{
	t->next = c->timers;
	c->timers = t;
}

void rt_client_timer_remove(struct rt_client *c, struct rt_client_timer *t)
{
	for (struct rt_client_timer **pp = &c->timers; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			return;
		}
}

void rt_client_timer_arm(struct rt_client *c, struct rt_client_timer *t, int64_t due_ms)
{
	t->due_ms = due_ms;
	wake(c);
}

int rt_channel_snapshot(struct rt_client_channel *ch, const char *schema, const char *table,
			uint64_t *id)
{
	json_t *p = json_pack("{s:s,s:s}", "schema", schema, "table", table);
	if (!p)
		return RT_ENOMEM;
	return push_now(ch, PUSH_SNAPSHOT, p, id);
}

int rt_channel_push_notify(struct rt_client_channel *ch, json_t *payload, uint64_t *id)
{
	return push_now(ch, PUSH_NOTIFY, payload, id);
}

int rt_channel_push_lock(struct rt_client_channel *ch, int op, json_t *payload, uint64_t *id)
{
	static const enum push_kind kinds[] = {PUSH_LOCK_ACQUIRE, PUSH_LOCK_RENEW,
					       PUSH_LOCK_RELEASE};
	if (op < 0 || op > 2) {
		json_decref(payload);
		return RT_EINVAL;
	}
	return push_now(ch, kinds[op], payload, id);
}

void rt_client_http_tls(struct rt_client *c, const char **ca_file, const char **ca_dir,
			bool *skip_verify)
{
	*ca_file = c->ca_file;
	*ca_dir = c->ca_dir;
	*skip_verify = c->opt.tls_skip_verify;
}

int rt_client_http_info(struct rt_client *c, char **base_url, char **apikey, char **token)
{
	*base_url = *apikey = *token = NULL;
	pthread_mutex_lock(&c->lock);
	/* the path without its realtime part ("/realtime/v1/websocket" or "/websocket") */
	const char *path = c->url.path;
	size_t n = strlen(path);
	static const char *const suffixes[] = {"/realtime/v1/websocket", "/websocket"};
	for (size_t i = 0; i < 2; i++) {
		size_t k = strlen(suffixes[i]);
		if (n >= k && !strcmp(path + n - k, suffixes[i])) {
			n -= k;
			break;
		}
	}
	size_t len = 8 + strlen(c->url.host_header) + n + 1;
	*base_url = mem_alloc(c, len);
	if (*base_url)
		snprintf(*base_url, len, "%s://%s%.*s", c->url.is_tls ? "https" : "http",
			 c->url.host_header, (int)n, path);
	*apikey = mem_strdup(c, c->apikey);
	*token = mem_strdup(c, c->token ? c->token : c->apikey);
	pthread_mutex_unlock(&c->lock);
	if (*base_url && *apikey && *token)
		return 0;
	mem_free(c, *base_url);
	mem_free(c, *apikey);
	mem_free(c, *token);
	*base_url = *apikey = *token = NULL;
	return RT_ENOMEM;
}
