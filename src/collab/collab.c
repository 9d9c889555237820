/*
 * The y-websocket server (y-websocket's bin/utils.js, y-protocols' sync,
 * awareness and auth messages) over rt_ydoc documents shared by every
 * worker, with an append log per document in the store and compaction on
 * the libuv pool.
 *
 * A document is in the registry while connections or jobs hold it; its
 * mutex guards its rt_ydoc, log counters and awareness states. Fan-out goes
 * through the hub under the key "collab:<name>": an update or awareness
 * change is encoded once and every worker with connections on the document
 * delivers it. A connection joins through a pool job that loads the
 * document from the store when it is not in memory (and, for policies the
 * database evaluates, asks the database for its access); messages that
 * arrive meanwhile wait.
 */
#include "collab/collab.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utlist.h>
#include <uthash.h>
#include <uv.h>

#include "activity/activity.h"
#include "auth/jwt.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ratelimit.h"
#include "flags/flags.h"
#include "realtime/hub.h"
#include "realtime/realtime.h"
#include "store/store.h"

/* y-websocket message types and y-protocols sync steps */
#define MSG_SYNC RT_COLLAB_MSG_SYNC
#define MSG_AWARENESS RT_COLLAB_MSG_AWARENESS
#define MSG_AUTH RT_COLLAB_MSG_AUTH
#define MSG_QUERY_AWARENESS RT_COLLAB_MSG_QUERY_AWARENESS
#define SYNC_STEP1 RT_COLLAB_SYNC_STEP1
#define SYNC_STEP2 RT_COLLAB_SYNC_STEP2
#define SYNC_UPDATE RT_COLLAB_SYNC_UPDATE

#define MAX_PENDING_BYTES (16u << 20)
/* How often a document whose updates the store could not take is tried again. */
#define UNSTORED_RETRY_MS 1000

enum doc_state { DOC_LOADING, DOC_READY, DOC_FAILED };

/* One client's awareness state (y-protocols' meta and state). */
struct aw {
	uint64_t client, clock;
	char *state;      /* JSON text; NULL once removed */
	uint64_t owner;   /* connection id that set it; 0 when none */
	uint64_t seen_ms; /* last update, for the 30 s timeout */
};

/* An update of the log since the last compaction (kept to replay onto the
 * compacted state). */
struct logent {
	uint64_t seq;
	uint8_t *data;
	size_t len;
	struct logent *next;
};

/* An append (data) or a compaction (data NULL) waiting for the store. */
struct storeop {
	uint64_t seq;
	uint8_t *data;
	size_t len;
	struct storeop *next;
};

struct doc {
	char *name;
	char *key; /* hub key */
	UT_hash_handle hh;
	/* Connections and jobs holding it. Taken from 0 only under co->mu
	 * (doc_get); otherwise by a holder, so a document with no holder
	 * cannot gain one except through the registry. */
	_Atomic unsigned refs;
	_Atomic uint64_t idle_since_ms; /* when refs fell to 0 */
	pthread_mutex_t load_mu; /* held by the job that loads it */
	pthread_mutex_t mu;
	enum doc_state state;
	struct rt_ydoc *yd;
	uint64_t next_seq;
	struct logent *log, *log_tail; /* entries since the last compaction */
	unsigned n_log;
	size_t log_bytes;
	bool is_compacting;
	/* store operations, run in order by one pool job at a time, so a
	 * compaction never races the appends it covers */
	struct storeop *ops, *ops_tail;
	bool is_store_busy;
	/* An append failed (the store could not write): the state in memory holds updates the
	 * store lacks. Appends stop; the tick queues a compaction (the whole state) until one
	 * succeeds, and the document is not unloaded before. */
	_Atomic bool is_unstored;
	uint64_t retry_at_ms; /* unstored: no compaction queued before (d->mu) */
	struct aw *aw;
	size_t n_aw, cap_aw;
};

struct conn_list {
	struct rt_collab_conn *head;
};

struct rt_collab {
	struct rt_collab_config cfg;
	struct rt_realtime *rt;
	struct rt_store *store;
	pthread_mutex_t mu; /* the registry and refs */
	struct doc *docs;
	struct conn_list workers[RT_SERVER_MAX_WORKERS];
	_Atomic unsigned jobs; /* pool jobs in flight */
};

struct pending {
	uint8_t *data;
	size_t len;
	struct pending *next;
};

struct rt_collab_conn {
	struct rt_collab *co;
	struct rt_realtime_worker *rw;
	struct rt_conn *c;
	uint64_t id;
	struct doc *d;
	struct rt_sub sub;
	bool is_ready;
	bool may_write, may_aware;
	bool is_denied_sent;
	int64_t exp; /* token expiry, seconds since the epoch; 0: none */
	char *actor; /* the token's sub (NULL: none), for the activity feed */
	struct rt_quota_conn quota; /* counted as the Realtime sockets are (docs/limits.md) */
	struct pending *pend, *pend_tail;
	unsigned n_pend;
	size_t pend_bytes;
	struct rt_collab_conn *prev, *next; /* the worker's list */
};

/* ---- configuration ---- */

static unsigned long env_num(const char *name, unsigned long def, unsigned long max)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (*end || n > max) {
		rt_warn("collab: ignoring %s=%s", name, v);
		return def;
	}
	return n;
}

void rt_collab_config_default(struct rt_collab_config *cfg)
{
	cfg->compact_updates = (unsigned)env_num("RTSYNC_COLLAB_COMPACT_UPDATES", 500, 1000000);
	cfg->compact_bytes = env_num("RTSYNC_COLLAB_COMPACT_BYTES", 1u << 20, 1u << 30);
	cfg->idle_ms = (unsigned)env_num("RTSYNC_COLLAB_IDLE_MS", 30000, 86400000);
}

struct rt_collab *rt_collab_new(const struct rt_collab_config *cfg, struct rt_realtime *rt,
				struct rt_store *store)
{
	struct rt_collab *co = rt_xcalloc(1, sizeof *co);
	co->cfg = *cfg;
	if (!co->cfg.compact_updates)
		co->cfg.compact_updates = 1;
	co->rt = rt;
	co->store = store;
	pthread_mutex_init(&co->mu, NULL);
	return co;
}

static void log_clear(struct doc *d)
{
	struct logent *e, *t;
	LL_FOREACH_SAFE(d->log, e, t) {
		free(e->data);
		free(e);
	}
	d->log = d->log_tail = NULL;
	d->n_log = 0;
	d->log_bytes = 0;
}

static void doc_free(struct doc *d)
{
	struct storeop *op, *ot;
	LL_FOREACH_SAFE(d->ops, op, ot) {
		free(op->data);
		free(op);
	}
	rt_ydoc_free(d->yd);
	log_clear(d);
	for (size_t i = 0; i < d->n_aw; i++)
		free(d->aw[i].state);
	free(d->aw);
	pthread_mutex_destroy(&d->mu);
	pthread_mutex_destroy(&d->load_mu);
	free(d->name);
	free(d->key);
	free(d);
}

void rt_collab_free(struct rt_collab *co)
{
	if (!co)
		return;
	struct doc *d, *t;
	HASH_ITER(hh, co->docs, d, t) {
		HASH_DEL(co->docs, d);
		doc_free(d);
	}
	pthread_mutex_destroy(&co->mu);
	free(co);
}

/* ---- the registry ---- */

static struct doc *doc_get(struct rt_collab *co, const char *name)
{
	pthread_mutex_lock(&co->mu);
	struct doc *d;
	HASH_FIND_STR(co->docs, name, d);
	if (!d) {
		d = rt_xcalloc(1, sizeof *d);
		d->name = rt_xstrdup(name);
		size_t kn = strlen(name) + 8;
		d->key = rt_xmalloc(kn);
		snprintf(d->key, kn, "collab:%s", name);
		pthread_mutex_init(&d->mu, NULL);
		pthread_mutex_init(&d->load_mu, NULL);
		d->state = DOC_LOADING;
		d->next_seq = 1;
		HASH_ADD_KEYPTR(hh, co->docs, d->name, strlen(d->name), d);
	}
	d->refs++;
	pthread_mutex_unlock(&co->mu);
	return d;
}

static void doc_put(struct rt_collab *co, struct doc *d)
{
	d->idle_since_ms = rt_mono_ms();
	d->refs--;
}

/* ---- lib0 helpers ---- */

static void put_uint(struct rt_buf *b, uint64_t v)
{
	do {
		uint8_t byte = v & 0x7f;
		v >>= 7;
		rt_buf_append_byte(b, v ? (byte | 0x80) : byte);
	} while (v);
}

static void put_bytes(struct rt_buf *b, const void *data, size_t len)
{
	put_uint(b, len);
	rt_buf_append(b, data, len);
}

struct rd {
	const uint8_t *p, *end;
	bool is_bad;
};

static uint64_t get_uint(struct rd *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 63; shift += 7) {
		if (r->p >= r->end)
			break;
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (v > RT_YDOC_MAX_CLOCK)
			break;
		if (!(b & 0x80))
			return v;
	}
	r->is_bad = true;
	r->p = r->end;
	return 0;
}

static const uint8_t *get_bytes(struct rd *r, size_t *len)
{
	uint64_t n = get_uint(r);
	if (r->is_bad || n > (uint64_t)(r->end - r->p)) {
		r->is_bad = true;
		r->p = r->end;
		*len = 0;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	*len = (size_t)n;
	return p;
}

/* ---- parsing messages ---- */

int rt_collab_msg_parse(const uint8_t *data, size_t data_len, struct rt_collab_msg *out)
{
	struct rd r = {data, data + data_len, false};
	memset(out, 0, sizeof *out);
	uint64_t type = get_uint(&r);
	if (r.is_bad)
		return RT_EPROTO;
	if (type == MSG_AUTH || type == MSG_QUERY_AWARENESS) {
		out->type = (enum rt_collab_msg_type)type;
		return 0;
	}
	uint64_t step = 0;
	if (type == MSG_SYNC) {
		step = get_uint(&r);
		if (step != SYNC_STEP1 && step != SYNC_STEP2 && step != SYNC_UPDATE)
			return RT_EPROTO;
	} else if (type != MSG_AWARENESS) {
		return RT_EPROTO;
	}
	size_t len;
	const uint8_t *p = get_bytes(&r, &len);
	if (r.is_bad || r.p != r.end)
		return RT_EPROTO;
	out->type = (enum rt_collab_msg_type)type;
	out->step = (enum rt_collab_sync_step)step;
	out->data = p;
	out->data_len = len;
	return 0;
}

int rt_collab_aw_parse(const uint8_t *data, size_t data_len, struct rt_collab_aw_entry **out,
		       size_t *n_out)
{
	struct rd r = {data, data + data_len, false};
	*out = NULL;
	*n_out = 0;
	uint64_t n = get_uint(&r);
	if (r.is_bad || n > data_len)
		return RT_EPROTO; /* an entry takes three bytes at least */
	struct rt_collab_aw_entry *es = rt_xcalloc((size_t)n + 1, sizeof *es);
	int rc = 0;
	for (uint64_t i = 0; i < n && !rc; i++) {
		struct rt_collab_aw_entry *e = &es[i];
		e->client = get_uint(&r);
		e->clock = get_uint(&r);
		const uint8_t *s = get_bytes(&r, &e->state_len);
		if (r.is_bad) {
			rc = RT_EPROTO;
			break;
		}
		if (e->state_len > RT_COLLAB_MAX_AWARENESS) {
			rc = RT_ETOOBIG;
			break;
		}
		e->state = (const char *)s;
		json_error_t je;
		json_t *v = json_loadb(e->state, e->state_len,
				       JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
		if (!v)
			rc = RT_EPROTO;
		e->is_null = json_is_null(v);
		json_decref(v);
	}
	if (!rc && r.p != r.end)
		rc = RT_EPROTO;
	if (rc) {
		free(es);
		return rc;
	}
	*out = es;
	*n_out = (size_t)n;
	return 0;
}

/* ---- sending ---- */

static void send_buf(struct rt_collab_conn *cc, const struct rt_buf *b)
{
	rt_conn_send_ws(cc->c, RT_WS_BINARY, b->data, b->len);
}

/* Publishes one message to every connection on the document (sender: a
 * connection id to skip; 0 for none). */
static void publish(struct rt_collab_conn *cc, struct doc *d, const struct rt_buf *b,
		    uint64_t sender)
{
	struct rt_msg *m = rt_msg_new(RT_MSG_BROADCAST, d->key);
	m->v1 = rt_ws_frame(RT_WS_BINARY, b->data, b->len);
	m->sender = sender;
	rt_hub_publish(cc->rw->hub, m);
	rt_msg_unref(m);
}

static void deliver(struct rt_sub *sub, struct rt_msg *m)
{
	struct rt_collab_conn *cc = (struct rt_collab_conn *)((char *)sub -
							      offsetof(struct rt_collab_conn, sub));
	if (!cc->is_ready || !m->v1 || m->sender == cc->id)
		return;
	rt_conn_send(cc->c, m->v1);
}

/* Closes with a logged reason. */
static void refuse(struct rt_collab_conn *cc, uint16_t code, const char *reason)
{
	RT_METRIC_ERROR(MALFORMED);
	rt_info("collab %s: conn %s closed: %s", cc->d->name, rt_conn_peer(cc->c), reason);
	rt_conn_close(cc->c, code, reason);
}

/* y-protocols auth: permission denied with reason. */
static void send_denied(struct rt_collab_conn *cc, const char *reason)
{
	struct rt_buf b;
	rt_buf_init(&b);
	put_uint(&b, MSG_AUTH);
	put_uint(&b, 0);
	put_bytes(&b, reason, strlen(reason));
	send_buf(cc, &b);
	rt_buf_deinit(&b);
}

/* ---- awareness ---- */

static struct aw *aw_find(struct doc *d, uint64_t client)
{
	for (size_t i = 0; i < d->n_aw; i++)
		if (d->aw[i].client == client)
			return &d->aw[i];
	return NULL;
}

/* Appends entries [clients] as an awareness update message. */
static void aw_encode(struct doc *d, const uint64_t *clients, size_t n, struct rt_buf *b)
{
	struct rt_buf u;
	rt_buf_init(&u);
	put_uint(&u, n);
	for (size_t i = 0; i < n; i++) {
		struct aw *a = aw_find(d, clients[i]);
		put_uint(&u, clients[i]);
		put_uint(&u, a ? a->clock : 0);
		const char *s = a && a->state ? a->state : "null";
		put_bytes(&u, s, strlen(s));
	}
	put_uint(b, MSG_AWARENESS);
	put_bytes(b, u.data, u.len);
	rt_buf_deinit(&u);
}

/* Removes the states owned by conn id (owner 0: those older than the
 * timeout at now) and returns their clients (caller frees). */
static uint64_t *aw_remove(struct doc *d, uint64_t owner, uint64_t now_ms, size_t *n)
{
	uint64_t *out = rt_xcalloc(d->n_aw + 1, sizeof *out);
	*n = 0;
	for (size_t i = 0; i < d->n_aw; i++) {
		struct aw *a = &d->aw[i];
		if (!a->state)
			continue;
		if (owner ? a->owner != owner
			  : now_ms - a->seen_ms < RT_COLLAB_AWARENESS_TIMEOUT_MS)
			continue;
		free(a->state);
		a->state = NULL;
		a->owner = 0;
		a->clock++;
		out[(*n)++] = a->client;
	}
	return out;
}

/* How many awareness states connection id holds in d. */
static size_t aw_owned(const struct doc *d, uint64_t id)
{
	size_t n = 0;
	for (size_t i = 0; i < d->n_aw; i++)
		n += d->aw[i].state && d->aw[i].owner == id;
	return n;
}

/* A slot for a new client id: a new one below RT_COLLAB_MAX_AW_CLIENTS, else
 * one whose state was removed (its clock is forgotten); NULL when the
 * document is full of live states. */
static struct aw *aw_slot(struct doc *d)
{
	if (d->n_aw < RT_COLLAB_MAX_AW_CLIENTS) {
		if (d->n_aw == d->cap_aw) {
			d->cap_aw = d->cap_aw ? 2 * d->cap_aw : 8;
			d->aw = rt_xrealloc(d->aw, d->cap_aw * sizeof *d->aw);
		}
		return &d->aw[d->n_aw++];
	}
	for (size_t i = 0; i < d->n_aw; i++)
		if (!d->aw[i].state)
			return &d->aw[i];
	return NULL;
}

/* An awareness update from cc: validated whole, then applied as
 * y-protocols applyAwarenessUpdate does, except that a client id another
 * connection set is left alone, and that a connection holds at most
 * RT_COLLAB_MAX_AW_PER_CONN states and a document RT_COLLAB_MAX_AW_CLIENTS
 * client ids (past either the message is refused: RT_ETOOBIG). */
static int on_awareness(struct rt_collab_conn *cc, const uint8_t *data, size_t len)
{
	struct doc *d = cc->d;
	struct rt_collab_aw_entry *es;
	size_t n;
	int rc = rt_collab_aw_parse(data, len, &es, &n);
	if (rc)
		return rc;
	uint64_t *changed = rt_xcalloc(n + 1, sizeof *changed);
	size_t n_changed = 0;
	uint64_t now = rt_mono_ms();
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < n && cc->may_aware; i++) {
		const struct rt_collab_aw_entry *e = &es[i];
		struct aw *a = aw_find(d, e->client);
		if (a && a->owner && a->owner != cc->id)
			continue;
		uint64_t cur = a ? a->clock : 0;
		if (!(cur < e->clock || (cur == e->clock && e->is_null && a && a->state)))
			continue;
		if (!e->is_null && !(a && a->state) &&
		    aw_owned(d, cc->id) >= RT_COLLAB_MAX_AW_PER_CONN) {
			rc = RT_ETOOBIG;
			break;
		}
		if (!a) {
			if (e->is_null)
				continue;
			if (!(a = aw_slot(d))) {
				rc = RT_ETOOBIG;
				break;
			}
			memset(a, 0, sizeof *a);
			a->client = e->client;
		}
		free(a->state);
		a->state = NULL;
		a->owner = 0;
		if (!e->is_null) {
			a->state = rt_xmalloc(e->state_len + 1);
			memcpy(a->state, e->state, e->state_len);
			a->state[e->state_len] = '\0';
			a->owner = cc->id;
		}
		a->clock = e->clock;
		a->seen_ms = now;
		changed[n_changed++] = e->client;
	}
	struct rt_buf b;
	rt_buf_init(&b);
	if (n_changed)
		aw_encode(d, changed, n_changed, &b);
	pthread_mutex_unlock(&d->mu);
	/* y-websocket's server sends awareness changes to every connection, the
	 * sender included (its keep-alive) */
	if (n_changed)
		publish(cc, d, &b, 0);
	rt_buf_deinit(&b);
	free(changed);
	free(es);
	return rc;
}

static void send_all_awareness(struct rt_collab_conn *cc)
{
	struct doc *d = cc->d;
	pthread_mutex_lock(&d->mu);
	uint64_t *ids = rt_xcalloc(d->n_aw + 1, sizeof *ids);
	size_t n = 0;
	for (size_t i = 0; i < d->n_aw; i++)
		if (d->aw[i].state)
			ids[n++] = d->aw[i].client;
	struct rt_buf b;
	rt_buf_init(&b);
	if (n)
		aw_encode(d, ids, n, &b);
	pthread_mutex_unlock(&d->mu);
	if (n)
		send_buf(cc, &b);
	rt_buf_deinit(&b);
	free(ids);
}

/* ---- persistence jobs ---- */

struct job {
	uv_work_t work;
	struct rt_collab *co;
	struct doc *d;
	uint64_t conn_id;       /* join: the connection to resume */
	struct rt_worker *w;
	struct rt_auth who;     /* join under database-evaluated policies */
	char *role;
	json_t *claims;
	bool is_opaque;
	bool may_read, may_write, may_aware;
	uint64_t seq;           /* append */
	uint8_t *data;
	size_t len;
};

static struct job *job_new(struct rt_collab *co, struct doc *d, struct rt_worker *w)
{
	struct job *j = rt_xcalloc(1, sizeof *j);
	j->work.data = j;
	j->co = co;
	j->d = d;
	j->w = w;
	co->jobs++;
	return j;
}

static void job_free(struct job *j)
{
	doc_put(j->co, j->d);
	j->co->jobs--;
	free(j->role);
	json_decref(j->claims);
	free(j->data);
	free(j);
}

struct loader {
	struct rt_ydoc *yd;
	uint64_t last_seq;
	unsigned n;
	size_t bytes;
	struct doc *d;
	bool is_bad;
};

static int load_row(uint64_t seq, const uint8_t *data, size_t len, void *ctx)
{
	struct loader *l = ctx;
	char err[256];
	int rc = rt_ydoc_apply(l->yd, data, len, NULL, NULL, err, sizeof err);
	if (rc) {
		rt_error("collab %s: stored update %llu refused (%s); the document is not served",
			 l->d->name, (unsigned long long)seq, err);
		l->is_bad = true;
		return 1;
	}
	l->last_seq = seq;
	l->n++;
	l->bytes += len;
	return 0;
}

/* Loads d from the store unless another job did (pool thread). */
static void load_doc(struct rt_collab *co, struct doc *d)
{
	pthread_mutex_lock(&d->load_mu);
	pthread_mutex_lock(&d->mu);
	enum doc_state st = d->state;
	pthread_mutex_unlock(&d->mu);
	if (st == DOC_LOADING) {
		struct loader l = {rt_ydoc_new(), 0, 0, 0, d, false};
		int rc = co->store ? rt_store_doc_read(co->store, d->name, load_row, &l) : 0;
		pthread_mutex_lock(&d->mu);
		if (rc || l.is_bad) {
			d->state = DOC_FAILED;
			rt_ydoc_free(l.yd);
		} else {
			d->yd = l.yd;
			d->next_seq = l.last_seq + 1;
			/* what was stored counts toward the next compaction */
			d->n_log = l.n > 1 ? l.n : 0;
			d->log_bytes = l.n > 1 ? l.bytes : 0;
			d->state = DOC_READY;
			rt_debug("collab %s: loaded %u updates, %zu bytes", d->name, l.n, l.bytes);
		}
		pthread_mutex_unlock(&d->mu);
	}
	pthread_mutex_unlock(&d->load_mu);
}

static int compact(struct rt_collab *co, struct doc *d);

static void append_done(uv_work_t *w, int status)
{
	job_free(w->data);
}

/* Runs the document's store operations until none is left (pool thread). */
static void store_work(uv_work_t *w)
{
	struct job *j = w->data;
	struct doc *d = j->d;
	for (;;) {
		pthread_mutex_lock(&d->mu);
		struct storeop *ops = d->ops;
		d->ops = d->ops_tail = NULL;
		if (!ops)
			d->is_store_busy = false;
		pthread_mutex_unlock(&d->mu);
		if (!ops)
			return;
		/* A compaction writes the state as it is when it runs, which holds
		 * every update queued so far: with one in the batch, the batch's
		 * appends are covered by it (a backlog of appends costs one write). */
		struct storeop *op, *t;
		bool has_compaction = false;
		LL_FOREACH(ops, op)
			has_compaction |= !op->data;
		if (has_compaction && compact(j->co, d))
			has_compaction = false; /* not stored: the appends are */
		else if (has_compaction && atomic_exchange(&d->is_unstored, false))
			rt_info("collab %s: stored again (the whole state, compacted)", d->name);
		LL_FOREACH_SAFE(ops, op, t) {
			/* unstored: the appends wait for the compaction the tick queues,
			 * which covers them, rather than failing one by one */
			if (op->data && !has_compaction && j->co->store &&
			    !atomic_load(&d->is_unstored) &&
			    rt_store_doc_append(j->co->store, d->name, op->seq, op->data, op->len) &&
			    !atomic_exchange(&d->is_unstored, true))
				rt_error("collab %s: updates not stored: they stay in memory and are "
					 "stored with the next compaction, retried every second",
					 d->name);
			free(op->data);
			free(op);
		}
	}
}

/* Queues a store operation of d (d->mu held; takes data). */
static void store_queue(struct rt_collab *co, struct doc *d, struct rt_worker *w, uint64_t seq,
			uint8_t *data, size_t len)
{
	struct storeop *op = rt_xcalloc(1, sizeof *op);
	op->seq = seq;
	op->data = data;
	op->len = len;
	if (d->ops_tail)
		d->ops_tail->next = op;
	else
		d->ops = op;
	d->ops_tail = op;
	if (d->is_store_busy)
		return;
	d->is_store_busy = true;
	d->refs++;
	struct job *j = job_new(co, d, w);
	int rc = uv_queue_work(rt_worker_loop(w), &j->work, store_work, append_done);
	if (rc) { /* cannot happen with a live loop; the operations wait for the next one */
		rt_error("collab %s: cannot queue store work: %s", d->name, uv_strerror(rc));
		d->is_store_busy = false;
		d->refs--;
		co->jobs--;
		free(j);
	}
}


/* Replaces the stored log and the state in memory by the compacted state.
 * The merge runs off the document's lock, on a copy of its state (editors
 * go on meanwhile); the lock is held to take the copy and to swap in the
 * compacted state with the updates that came meanwhile. Returns 0, or -1
 * when the store failed (logged; nothing changed). */
static int compact(struct rt_collab *co, struct doc *d)
{
	pthread_mutex_lock(&d->mu);
	uint64_t upto = d->next_seq - 1;
	struct rt_ydoc *copy = rt_ydoc_copy(d->yd);
	pthread_mutex_unlock(&d->mu);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_ydoc_encode(copy, NULL, 0, true, &b);
	size_t before = rt_ydoc_bytes(copy);
	rt_ydoc_free(copy);
	if (co->store && rt_store_doc_compact(co->store, d->name, upto, (uint8_t *)b.data, b.len)) {
		pthread_mutex_lock(&d->mu);
		d->is_compacting = false;
		pthread_mutex_unlock(&d->mu);
		rt_buf_deinit(&b);
		return -1;
	}
	/* the compacted state replaces the one in memory, with the updates
	 * applied since replayed onto it: those logged so far off the lock
	 * (entries are freed only here; appends only link new ones after the
	 * tail), the rest under it */
	struct rt_ydoc *yd = rt_ydoc_new();
	char err[256];
	if (rt_ydoc_apply(yd, (uint8_t *)b.data, b.len, NULL, NULL, err, sizeof err))
		rt_error("collab %s: compacted state refused: %s", d->name, err);
	pthread_mutex_lock(&d->mu);
	struct logent *seen = d->log_tail;
	pthread_mutex_unlock(&d->mu);
	struct logent *e, *t;
	for (e = d->log; seen && e; e = e->next) {
		if (e->seq > upto)
			rt_ydoc_apply(yd, e->data, e->len, NULL, NULL, err, sizeof err);
		if (e == seen)
			break;
	}
	pthread_mutex_lock(&d->mu);
	struct logent *keep = NULL, *keep_tail = NULL;
	unsigned n = 0;
	size_t bytes = 0;
	bool is_replayed = seen != NULL;
	LL_FOREACH_SAFE(d->log, e, t) {
		bool was_seen = is_replayed;
		if (e == seen)
			is_replayed = false;
		if (e->seq <= upto) {
			free(e->data);
			free(e);
			continue;
		}
		if (!was_seen)
			rt_ydoc_apply(yd, e->data, e->len, NULL, NULL, err, sizeof err);
		e->next = NULL;
		if (keep_tail)
			keep_tail->next = e;
		else
			keep = e;
		keep_tail = e;
		n++;
		bytes += e->len;
	}
	d->log = keep;
	d->log_tail = keep_tail;
	d->n_log = n;
	d->log_bytes = bytes;
	rt_ydoc_free(d->yd);
	d->yd = yd;
	d->is_compacting = false;
	rt_debug("collab %s: compacted up to %llu: %zu bytes kept in memory before, %zu stored",
		 d->name, (unsigned long long)upto, before, b.len);
	pthread_mutex_unlock(&d->mu);
	rt_buf_deinit(&b);
	return 0;
}

/* Queues a compaction of d when its log has grown (d->mu held). */
static void maybe_compact(struct rt_collab *co, struct doc *d, struct rt_worker *w)
{
	bool is_unstored = atomic_load(&d->is_unstored);
	if (d->is_compacting || d->state != DOC_READY ||
	    (!is_unstored && d->n_log < co->cfg.compact_updates &&
	     d->log_bytes < co->cfg.compact_bytes))
		return;
	if (is_unstored) { /* a store that failed is tried once a second */
		uint64_t now_ms = rt_mono_ms();
		if (now_ms < d->retry_at_ms)
			return;
		d->retry_at_ms = now_ms + UNSTORED_RETRY_MS;
	}
	d->is_compacting = true;
	store_queue(co, d, w, 0, NULL, 0);
}

/* ---- sync ---- */

/* Applies an update from cc. Returns 0, or an error that closes cc. */
static int on_update(struct rt_collab_conn *cc, const uint8_t *data, size_t len)
{
	struct doc *d = cc->d;
	char err[256];
	if (!cc->may_write) {
		/* refused, not applied; an empty update (nothing to offer) is no attempt */
		struct rt_ydoc *probe = rt_ydoc_new();
		uint8_t *added;
		size_t added_len;
		int rc = rt_ydoc_apply(probe, data, len, &added, &added_len, err, sizeof err);
		rt_ydoc_free(probe);
		free(added);
		if (rc)
			return rc;
		if (added_len && !cc->is_denied_sent) {
			rt_info("collab %s: conn %s: update refused: no write permission", d->name,
				rt_conn_peer(cc->c));
			send_denied(cc, "read-only: updates to this document are not applied");
			cc->is_denied_sent = true;
		}
		return 0;
	}
	uint8_t *added = NULL;
	size_t added_len = 0;
	pthread_mutex_lock(&d->mu);
	int rc = rt_ydoc_apply(d->yd, data, len, &added, &added_len, err, sizeof err);
	uint64_t seq = 0;
	if (!rc && added) {
		seq = d->next_seq++;
		struct logent *e = rt_xcalloc(1, sizeof *e);
		e->seq = seq;
		e->data = rt_xmalloc(added_len);
		memcpy(e->data, added, added_len);
		e->len = added_len;
		if (d->log_tail)
			d->log_tail->next = e;
		else
			d->log = e;
		d->log_tail = e;
		d->n_log++;
		d->log_bytes += added_len;
		maybe_compact(cc->co, d, rt_conn_worker(cc->c));
	}
	pthread_mutex_unlock(&d->mu);
	if (rc) {
		rt_info("collab %s: conn %s: %s", d->name, rt_conn_peer(cc->c), err);
		return rc;
	}
	if (!added)
		return 0;
	struct rt_buf b;
	rt_buf_init(&b);
	put_uint(&b, MSG_SYNC);
	put_uint(&b, SYNC_UPDATE);
	put_bytes(&b, added, added_len);
	publish(cc, d, &b, cc->id);
	rt_buf_deinit(&b);
	rt_activity_doc_edit(cc->co->rt->activity, d->name, cc->actor, added_len);
	if (cc->co->store) {
		pthread_mutex_lock(&d->mu);
		store_queue(cc->co, d, rt_conn_worker(cc->c), seq, added, added_len);
		pthread_mutex_unlock(&d->mu);
		added = NULL;
	}
	free(added);
	return 0;
}

/* Sync step 2 of a document larger than this is encoded on the pool, from
 * a copy of its state, not on the connection's I/O thread. */
#define SYNC_INLINE_BYTES (64u << 10)

struct step2_job {
	struct job j;
	struct rt_ydoc *yd; /* the copy */
	uint8_t *sv;
	size_t sv_len;
	struct rt_buf msg;
	int rc;
};

static void step2_work(uv_work_t *w)
{
	struct step2_job *sj = w->data;
	struct rt_buf u;
	rt_buf_init(&u);
	sj->rc = rt_ydoc_encode(sj->yd, sj->sv, sj->sv_len, false, &u);
	if (!sj->rc) {
		put_uint(&sj->msg, MSG_SYNC);
		put_uint(&sj->msg, SYNC_STEP2);
		put_bytes(&sj->msg, u.data, u.len);
	}
	rt_buf_deinit(&u);
	rt_ydoc_free(sj->yd);
	sj->yd = NULL;
}

static void step2_done(uv_work_t *w, int status)
{
	struct step2_job *sj = w->data;
	struct rt_conn *c = rt_worker_find_conn(sj->j.w, sj->j.conn_id);
	struct rt_collab_conn *cc = c ? rt_collab_conn_of(c) : NULL;
	if (cc && cc->id == sj->j.conn_id && !rt_conn_is_closing(c)) {
		if (sj->rc)
			refuse(cc, 1008, "sync message refused: malformed state vector");
		else if (status == 0)
			send_buf(cc, &sj->msg);
	}
	rt_ydoc_free(sj->yd);
	free(sj->sv);
	rt_buf_deinit(&sj->msg);
	struct rt_collab *co = sj->j.co;
	doc_put(co, sj->j.d);
	co->jobs--;
	free(sj);
}

/* Queues sync step 2 for cc from copy (taken). Returns 0 or RT_ENOMEM. */
static int sync_step2_queue(struct rt_collab_conn *cc, struct rt_ydoc *copy, const uint8_t *sv,
			    size_t sv_len)
{
	struct step2_job *sj = rt_xcalloc(1, sizeof *sj);
	sj->j.work.data = sj;
	sj->j.co = cc->co;
	sj->j.d = cc->d;
	sj->j.w = rt_conn_worker(cc->c);
	sj->j.conn_id = cc->id;
	sj->yd = copy;
	sj->sv = rt_xmalloc(sv_len ? sv_len : 1);
	memcpy(sj->sv, sv, sv_len);
	sj->sv_len = sv_len;
	rt_buf_init(&sj->msg);
	cc->d->refs++; /* cc holds one: the job's own */
	cc->co->jobs++;
	if (uv_queue_work(rt_worker_loop(sj->j.w), &sj->j.work, step2_work, step2_done)) {
		step2_done(&sj->j.work, -1);
		return RT_ENOMEM;
	}
	return 0;
}

static int on_sync(struct rt_collab_conn *cc, const struct rt_collab_msg *m)
{
	if (m->step == SYNC_STEP1) {
		pthread_mutex_lock(&cc->d->mu);
		if (rt_ydoc_bytes(cc->d->yd) > SYNC_INLINE_BYTES) {
			struct rt_ydoc *copy = rt_ydoc_copy(cc->d->yd);
			pthread_mutex_unlock(&cc->d->mu);
			return sync_step2_queue(cc, copy, m->data, m->data_len);
		}
		struct rt_buf b;
		rt_buf_init(&b);
		put_uint(&b, MSG_SYNC);
		put_uint(&b, SYNC_STEP2);
		struct rt_buf u;
		rt_buf_init(&u);
		int rc = rt_ydoc_encode(cc->d->yd, m->data, m->data_len, false, &u);
		pthread_mutex_unlock(&cc->d->mu);
		if (!rc) {
			put_bytes(&b, u.data, u.len);
			send_buf(cc, &b);
		}
		rt_buf_deinit(&u);
		rt_buf_deinit(&b);
		return rc;
	}
	return on_update(cc, m->data, m->data_len);
}

static void handle(struct rt_collab_conn *cc, const uint8_t *data, size_t len)
{
	struct rt_collab_msg m;
	int rc = rt_collab_msg_parse(data, len, &m);
	if (rc)
		; /* refused below */
	else if (m.type == MSG_SYNC)
		rc = on_sync(cc, &m);
	else if (m.type == MSG_AWARENESS)
		rc = on_awareness(cc, m.data, m.data_len);
	else if (m.type == MSG_QUERY_AWARENESS)
		send_all_awareness(cc);
	/* MSG_AUTH: clients do not send it; ignored as y-websocket's server does */
	if (rc) {
		char reason[64];
		snprintf(reason, sizeof reason, "%s message refused: %s",
			 m.type == MSG_SYNC ? "sync" : m.type == MSG_AWARENESS ? "awareness" : "a",
			 rt_strerror(rc));
		refuse(cc, rc == RT_ETOOBIG ? 1009 : 1008, reason);
	}
}

void rt_collab_message(struct rt_collab_conn *cc, enum rt_ws_opcode op, const uint8_t *data,
		       size_t data_len)
{
	if (rt_conn_is_closing(cc->c))
		return;
	if (op != RT_WS_BINARY) {
		refuse(cc, 1003, "y-websocket messages are binary");
		return;
	}
	if (!cc->is_ready) {
		if (cc->n_pend >= RT_COLLAB_MAX_PENDING || cc->pend_bytes + data_len > MAX_PENDING_BYTES) {
			refuse(cc, 1008, "too many messages while the document loads");
			return;
		}
		struct pending *p = rt_xcalloc(1, sizeof *p);
		p->data = rt_xmalloc(data_len ? data_len : 1);
		memcpy(p->data, data, data_len);
		p->len = data_len;
		LL_APPEND(cc->pend, p);
		cc->n_pend++;
		cc->pend_bytes += data_len;
		return;
	}
	handle(cc, data, data_len);
}

/* ---- joining ---- */

static void join_work(uv_work_t *w)
{
	struct job *j = w->data;
	if (j->is_opaque && j->co->store) {
		bool rb = false, rp = false, wb = false, wp = false;
		rt_store_topic_allowed(j->co->store, &j->who, "broadcast", false, &rb);
		rt_store_topic_allowed(j->co->store, &j->who, "presence", false, &rp);
		rt_store_topic_allowed(j->co->store, &j->who, "broadcast", true, &wb);
		rt_store_topic_allowed(j->co->store, &j->who, "presence", true, &wp);
		j->may_read = rb || rp;
		j->may_write = wb;
		j->may_aware = wp;
		if (!j->may_read)
			return;
	}
	load_doc(j->co, j->d);
}

static void free_pending(struct rt_collab_conn *cc)
{
	struct pending *p, *t;
	LL_FOREACH_SAFE(cc->pend, p, t) {
		free(p->data);
		free(p);
	}
	cc->pend = NULL;
	cc->n_pend = 0;
}

static void join_done(uv_work_t *w, int status)
{
	struct job *j = w->data;
	struct rt_conn *c = rt_worker_find_conn(j->w, j->conn_id);
	struct rt_collab_conn *cc = c ? rt_collab_conn_of(c) : NULL;
	if (!cc || cc->id != j->conn_id || rt_conn_is_closing(c)) {
		job_free(j);
		return;
	}
	if (j->is_opaque) {
		cc->may_write = j->may_write;
		cc->may_aware = j->may_aware;
		if (!j->may_read) {
			send_denied(cc, "You do not have permissions to read this document");
			refuse(cc, 4403, "no read permission");
			job_free(j);
			return;
		}
	}
	pthread_mutex_lock(&cc->d->mu);
	enum doc_state st = cc->d->state;
	pthread_mutex_unlock(&cc->d->mu);
	if (st != DOC_READY) {
		refuse(cc, 1011, "the document cannot be loaded");
		job_free(j);
		return;
	}
	cc->is_ready = true;
	/* y-websocket's server: sync step 1 with its state vector, then the
	 * awareness states there are */
	struct rt_buf b, sv;
	rt_buf_init(&b);
	rt_buf_init(&sv);
	pthread_mutex_lock(&cc->d->mu);
	rt_ydoc_state_vector(cc->d->yd, &sv);
	pthread_mutex_unlock(&cc->d->mu);
	put_uint(&b, MSG_SYNC);
	put_uint(&b, SYNC_STEP1);
	put_bytes(&b, sv.data, sv.len);
	send_buf(cc, &b);
	rt_buf_deinit(&b);
	rt_buf_deinit(&sv);
	send_all_awareness(cc);
	struct pending *p, *t;
	LL_FOREACH_SAFE(cc->pend, p, t) {
		if (!rt_conn_is_closing(cc->c))
			handle(cc, p->data, p->len);
	}
	free_pending(cc);
	job_free(j);
}

/* A document name: 1..RT_COLLAB_MAX_NAME bytes of printable UTF-8 without '/'. */
static char *doc_name(const char *rest)
{
	size_t n = strcspn(rest, "?");
	char *name = rt_http_pct_decode(rest, n, false);
	if (!name)
		return NULL;
	size_t len = strlen(name);
	bool ok = len && len <= RT_COLLAB_MAX_NAME && !strchr(name, '/');
	for (size_t i = 0; ok && i < len; i++)
		ok = (unsigned char)name[i] >= 0x20 && name[i] != 0x7f;
	if (ok) {
		/* valid UTF-8 */
		char *tmp = rt_xstrdup(name);
		rt_utf8_truncate(tmp);
		ok = strlen(tmp) == len;
		free(tmp);
	}
	if (!ok) {
		free(name);
		return NULL;
	}
	return name;
}

static void respond_json(struct rt_conn *c, int status, const char *body)
{
	rt_conn_respond(c, status, "application/json", body, strlen(body), NULL);
}

/* Decides access to document name for claims. Returns 0 (out set), 1 (the
 * database decides) or -1 (no read). */
static int authorize(struct rt_collab *co, const struct rt_jwt_claims *claims, const char *topic,
		     struct rt_channel_access *out)
{
	struct rt_auth who = {.role = claims->role, .claims = claims->claims, .topic = topic};
	return rt_realtime_authorize(co->rt, &who, true, out);
}

static void rest_read(struct rt_collab *co, struct rt_realtime_worker *rw, struct rt_conn *c,
		      struct rt_http_req *req, struct doc *d);

void rt_collab_request(struct rt_collab *co, struct rt_realtime_worker *rw, struct rt_conn *c,
		       struct rt_http_req *req, const char *rest, const char *token)
{
	char *name = doc_name(rest);
	if (!name) {
		respond_json(c, 400, "{\"error\":\"a document name is 1 to 255 bytes of UTF-8 "
				     "without '/' or control characters\"}");
		return;
	}
	if (!req->is_upgrade && req->method != HTTP_GET && req->method != HTTP_HEAD) {
		respond_json(c, 405, "{\"error\":\"Method Not Allowed\"}");
		free(name);
		return;
	}
	struct rt_jwt_claims claims = {0};
	int64_t ago = 0;
	enum rt_jwt_result jr =
		token && *token ? rt_realtime_verify(rw, token, strlen(token), &claims, &ago)
				: RT_JWT_MALFORMED;
	if (jr != RT_JWT_OK) {
		char msg[256];
		RT_METRIC_ERROR(AUTH);
		rt_info("collab %s: conn %s refused: %s", name, rt_conn_peer(c),
			token && *token ? rt_jwt_message(jr, ago, msg, sizeof msg) : "no apikey");
		respond_json(c, 401, !token || !*token ? "{\"error\":\"API key is missing\"}"
				     : jr == RT_JWT_EXPIRED ? "{\"error\":\"Token has expired\"}"
							    : "{\"error\":\"Unauthorized\"}");
		free(name);
		return;
	}
	if (rt_realtime_features_off(rw, claims.sub, claims.claims, name, NULL) &
	    RT_FLAG_DOCUMENTS) { /* switched off by a feature flag (docs/flags.md) */
		respond_json(c, 403, "{\"error\":\"documents are switched off\"}");
		rt_jwt_claims_deinit(&claims);
		free(name);
		return;
	}
	size_t tn = strlen(name) + 8;
	char *topic = rt_xmalloc(tn);
	snprintf(topic, tn, "collab:%s", name);
	struct rt_channel_access acc;
	int arc = authorize(co, &claims, topic, &acc);
	if (arc < 0) {
		RT_METRIC_ERROR(JOIN_REJECTED);
		rt_info("collab %s: conn %s (role %s) refused: no read permission", name,
			rt_conn_peer(c), claims.role);
		respond_json(c, 403, "{\"error\":\"You do not have permissions to read this "
				     "document\"}");
		goto out;
	}
	if (!req->is_upgrade) {
		if (arc == 1) {
			rt_warn("collab %s: a policy on realtime.messages is outside the compiled "
				"subset; REST read denied", name);
			respond_json(c, 403, "{\"error\":\"You do not have permissions to read this "
					     "document\"}");
			goto out;
		}
		rest_read(co, rw, c, req, doc_get(co, name));
		goto out;
	}
	struct rt_quota *quota = co->rt->cfg.quota;
	struct rt_quota_conn qc;
	enum rt_quota_refusal qr =
		rt_quota_conn_open(quota, rt_quota_user(claims.sub, claims.role, rt_conn_peer(c)), &qc);
	if (qr != RT_QUOTA_OK) {
		if (qr == RT_QUOTA_CONNECTIONS)
			RT_METRIC_LIMIT(CONNECTIONS);
		else
			RT_METRIC_LIMIT(CONNECTIONS_PER_USER);
		rt_info("collab %s: conn %s refused: %s", name, rt_conn_peer(c),
			qr == RT_QUOTA_CONNECTIONS ? "max connections" : "max connections per user");
		respond_json(c, 429, "{\"error\":\"Too many connected users\"}");
		goto out;
	}
	if (rt_conn_upgrade(c, req)) {
		rt_quota_conn_close(quota, &qc);
		goto out;
	}
	struct rt_collab_conn *cc = rt_xcalloc(1, sizeof *cc);
	cc->quota = qc;
	cc->co = co;
	cc->rw = rw;
	cc->c = c;
	cc->id = rt_conn_id(c);
	cc->d = doc_get(co, name);
	cc->may_write = arc == 0 && acc.may_send;
	cc->may_aware = arc == 0 && acc.may_track;
	cc->exp = claims.exp;
	cc->actor = claims.sub ? rt_xstrdup(claims.sub) : NULL;
	cc->sub.deliver = deliver;
	rt_hub_subscribe(rw->hub, cc->d->key, &cc->sub);
	DL_APPEND(co->workers[rt_worker_index(rt_conn_worker(c))].head, cc);
	rt_conn_set_data(c, cc, RT_CONN_COLLAB);
	rt_debug("collab %s: conn %s open (role %s%s)", name, rt_conn_peer(c), claims.role,
		 cc->may_write ? "" : ", read-only");
	struct job *j = job_new(co, cc->d, rt_conn_worker(c));
	cc->d->refs++;
	j->conn_id = cc->id;
	if (arc == 1) {
		j->is_opaque = true;
		j->role = rt_xstrdup(claims.role);
		j->claims = claims.claims ? json_incref(claims.claims) : NULL;
		j->who = (struct rt_auth){.role = j->role, .claims = j->claims, .topic = cc->d->key};
	}
	if (uv_queue_work(rt_worker_loop(rt_conn_worker(c)), &j->work, join_work, join_done)) {
		job_free(j);
		refuse(cc, 1011, "cannot queue the document load");
	}
out:
	rt_jwt_claims_deinit(&claims);
	free(topic);
	free(name);
}

struct rt_collab_conn *rt_collab_conn_of(const struct rt_conn *c)
{
	return rt_conn_data_kind(c) == RT_CONN_COLLAB ? rt_conn_data(c) : NULL;
}

void rt_collab_conn_close(struct rt_collab_conn *cc)
{
	if (!cc)
		return;
	struct rt_collab *co = cc->co;
	struct doc *d = cc->d;
	rt_hub_unsubscribe(cc->rw->hub, &cc->sub);
	DL_DELETE(co->workers[rt_worker_index(rt_conn_worker(cc->c))].head, cc);
	/* its awareness states go at once, as y-websocket's closeConn does */
	pthread_mutex_lock(&d->mu);
	size_t n;
	uint64_t *gone = aw_remove(d, cc->id, 0, &n);
	struct rt_buf b;
	rt_buf_init(&b);
	if (n)
		aw_encode(d, gone, n, &b);
	pthread_mutex_unlock(&d->mu);
	if (n)
		publish(cc, d, &b, 0);
	rt_buf_deinit(&b);
	free(gone);
	free_pending(cc);
	doc_put(co, d);
	rt_quota_conn_close(co->rt->cfg.quota, &cc->quota);
	free(cc->actor);
	free(cc);
}

/* ---- REST ---- */

enum rest_format { REST_INFO, REST_UPDATE, REST_JSON, REST_DELTA };

struct rest_job {
	struct job j;
	enum rest_format format;
	struct rt_buf body;
	int status;
};

static void rest_work(uv_work_t *w)
{
	struct rest_job *rj = w->data;
	struct doc *d = rj->j.d;
	load_doc(rj->j.co, d);
	pthread_mutex_lock(&d->mu);
	if (d->state != DOC_READY) {
		pthread_mutex_unlock(&d->mu);
		rj->status = 503;
		rt_buf_append_str(&rj->body, "{\"error\":\"the document cannot be loaded\"}");
		return;
	}
	/* read a copy off the lock: encoding, gc and integration take time */
	struct rt_ydoc *yd = rt_ydoc_copy(d->yd);
	pthread_mutex_unlock(&d->mu);
	rj->status = 200;
	if (rj->format == REST_JSON || rj->format == REST_DELTA) {
		char *txt = rt_ydoc_json(yd, rj->format == REST_DELTA);
		if (txt) {
			rt_buf_append_str(&rj->body, txt);
			free(txt);
		} else {
			rj->status = 422;
			rt_buf_append_str(&rj->body, "{\"error\":\"the document's history is too costly "
						     "to integrate; read it as an update\"}");
		}
		rt_ydoc_free(yd);
		return;
	}
	struct rt_buf u;
	rt_buf_init(&u);
	rt_ydoc_encode(yd, NULL, 0, true, &u);
	struct rt_buf sv;
	rt_buf_init(&sv);
	rt_ydoc_state_vector(yd, &sv);
	size_t mem = rt_ydoc_bytes(yd), n_mem = rt_ydoc_count(yd);
	rt_ydoc_free(yd);
	if (rj->format == REST_UPDATE) {
		rt_buf_append(&rj->body, u.data, u.len);
	} else {
		uint64_t n_stored = 0, stored = 0;
		if (rj->j.co->store)
			rt_store_doc_size(rj->j.co->store, d->name, &n_stored, &stored);
		json_t *svo = json_object();
		struct rd r = {(uint8_t *)sv.data, (uint8_t *)sv.data + sv.len, false};
		uint64_t n = get_uint(&r);
		for (uint64_t i = 0; i < n; i++) {
			char k[24];
			uint64_t client = get_uint(&r);
			snprintf(k, sizeof k, "%llu", (unsigned long long)client);
			json_object_set_new(svo, k, json_integer((json_int_t)get_uint(&r)));
		}
		/* the update as base64 */
		static const char tbl[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		struct rt_buf b64;
		rt_buf_init(&b64);
		const uint8_t *p = (const uint8_t *)u.data;
		for (size_t i = 0; i < u.len; i += 3) {
			uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < u.len ? (uint32_t)p[i + 1] << 8 : 0) |
				     (i + 2 < u.len ? p[i + 2] : 0);
			char q[4] = {tbl[v >> 18 & 63], tbl[v >> 12 & 63],
				     i + 1 < u.len ? tbl[v >> 6 & 63] : '=',
				     i + 2 < u.len ? tbl[v & 63] : '='};
			rt_buf_append(&b64, q, 4);
		}
		json_t *o = json_pack("{s:s,s:o,s:s%,s:{s:I,s:I},s:{s:I,s:I}}", "document", d->name,
				      "state_vector", svo, "update", b64.data ? b64.data : "",
				      b64.len, "stored", "updates", (json_int_t)n_stored, "bytes",
				      (json_int_t)stored, "memory", "updates", (json_int_t)n_mem,
				      "bytes", (json_int_t)mem);
		char *txt = json_dumps(o, JSON_COMPACT);
		rt_buf_append_str(&rj->body, txt);
		free(txt);
		json_decref(o);
		rt_buf_deinit(&b64);
	}
	rt_buf_deinit(&u);
	rt_buf_deinit(&sv);
}

static void rest_done(uv_work_t *w, int status)
{
	struct rest_job *rj = w->data;
	struct rt_conn *c = rt_worker_find_conn(rj->j.w, rj->j.conn_id);
	if (c && !rt_conn_is_closing(c))
		rt_conn_respond(c, rj->status,
				rj->format == REST_UPDATE && rj->status == 200 ? "application/octet-stream"
								   : "application/json",
				rj->body.data, rj->body.len, NULL);
	rt_buf_deinit(&rj->body);
	struct rt_collab *co = rj->j.co;
	doc_put(co, rj->j.d);
	co->jobs--;
	free(rj);
}

/* A REST read answered before its job was queued. */
static void rest_done_early(struct rest_job *rj)
{
	rt_buf_deinit(&rj->body);
	doc_put(rj->j.co, rj->j.d);
	rj->j.co->jobs--;
	free(rj);
}

static void rest_read(struct rt_collab *co, struct rt_realtime_worker *rw, struct rt_conn *c,
		      struct rt_http_req *req, struct doc *d)
{
	struct rest_job *rj = rt_xcalloc(1, sizeof *rj);
	rj->j.work.data = rj;
	rj->j.co = co;
	rj->j.d = d; /* doc_get's reference */
	rj->j.w = rt_conn_worker(c);
	rj->j.conn_id = rt_conn_id(c);
	co->jobs++;
	char *fmt = rt_http_query_get(req->query, "format");
	const char *accept = rt_http_req_header(req, "accept");
	rt_buf_init(&rj->body);
	if (fmt && !strcmp(fmt, "update"))
		rj->format = REST_UPDATE;
	else if (fmt && !strcmp(fmt, "json"))
		rj->format = REST_JSON;
	else if (fmt && !strcmp(fmt, "delta"))
		rj->format = REST_DELTA;
	else if (fmt && strcmp(fmt, "info")) {
		free(fmt);
		respond_json(c, 400, "{\"error\":\"format is info, update, json or delta\"}");
		rest_done_early(rj);
		return;
	} else if (!fmt && accept && strstr(accept, "application/octet-stream"))
		rj->format = REST_UPDATE;
	free(fmt);
	if (uv_queue_work(rt_worker_loop(rj->j.w), &rj->j.work, rest_work, rest_done)) {
		respond_json(c, 503, "{\"error\":\"busy\"}");
		rest_done(&rj->j.work, 0);
	}
}

/* ---- ticks ---- */

void rt_collab_tick(struct rt_collab *co, struct rt_worker *w, struct rt_hub_local *hl,
		    uint64_t now_ms)
{
	struct rt_collab_conn *cc, *t;
	int64_t now_s = rt_wall_s();
	DL_FOREACH_SAFE(co->workers[rt_worker_index(w)].head, cc, t) {
		if (cc->exp && cc->exp <= now_s && !rt_conn_is_closing(cc->c)) {
			send_denied(cc, "Token has expired");
			rt_info("collab %s: conn %s closed: token expired", cc->d->name,
				rt_conn_peer(cc->c));
			rt_conn_close(cc->c, 4001, "token expired");
		}
	}
	if (rt_worker_index(w))
		return;
	/* worker 0: awareness timeouts, compaction, unloading */
	now_ms = rt_mono_ms();
	pthread_mutex_lock(&co->mu);
	struct doc *d, *dt;
	size_t n_docs = 0;
	struct doc **docs = rt_xcalloc(HASH_COUNT(co->docs) + 1, sizeof *docs);
	HASH_ITER(hh, co->docs, d, dt) {
		if (!d->refs && !atomic_load(&d->is_unstored) &&
		    now_ms - d->idle_since_ms >= co->cfg.idle_ms) {
			HASH_DEL(co->docs, d); /* no holder: nothing else can reach it */
			doc_free(d);
			continue;
		}
		d->refs++;
		docs[n_docs++] = d;
	}
	pthread_mutex_unlock(&co->mu);
	for (size_t i = 0; i < n_docs; i++) {
		d = docs[i];
		pthread_mutex_lock(&d->mu);
		size_t n = 0;
		uint64_t *gone = aw_remove(d, 0, now_ms, &n);
		struct rt_buf b;
		rt_buf_init(&b);
		if (n)
			aw_encode(d, gone, n, &b);
		maybe_compact(co, d, w);
		pthread_mutex_unlock(&d->mu);
		if (n) {
			struct rt_msg *m = rt_msg_new(RT_MSG_BROADCAST, d->key);
			m->v1 = rt_ws_frame(RT_WS_BINARY, b.data, b.len);
			rt_hub_publish(hl, m);
			rt_msg_unref(m);
		}
		rt_buf_deinit(&b);
		free(gone);
		doc_put(co, d);
	}
	free(docs);
}
