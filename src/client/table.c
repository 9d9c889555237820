/*
 * The synced table (include/rtsync/table.h): the wiring of the cache
 * (src/client/cache.c) to a channel of the client and to the outbox
 * (src/client/outbox.c). Everything here runs under the client's lock.
 */
#include "rtsync/table.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistr.h>

#include "client/cache.h"
#include "client/client_int.h"
#include "client/outbox.h"
#include "common/rand.h"

#define TOPIC_PREFIX "rtsync-table:"
#define MAX_NAME 63
#define DEFAULT_RETRY_BASE_MS 200
#define DEFAULT_RETRY_MAX_MS 10000
#define DEFAULT_IN_FLIGHT 16
#define SNAPSHOT_RETRY_MS 2000      /* a refused snapshot is asked again after this, */
#define SNAPSHOT_RETRY_MAX_MS 60000 /* doubling with each refusal in a row up to this */

struct rt_table {
	struct rt_client *c;
	struct rt_client_channel *ch;
	char schema[MAX_NAME + 1], name[MAX_NAME + 1];
	char pk_names[RT_CACHE_MAX_PK][MAX_NAME + 1];
	char *pk[RT_CACHE_MAX_PK];
	size_t n_pk;
	enum rt_table_strategy strategy;
	unsigned retry_base_ms, retry_max_ms, max_in_flight;
	struct rt_table_callbacks cb;
	void *user;
	struct rt_outbox *ob;
	struct rt_cache cache;
	struct rt_client_timer timer;
	bool is_joined;
	uint64_t snap_req;   /* the snapshot request in flight, 0 none */
	int64_t snap_retry_at;
	unsigned snap_failures; /* refusals in a row */
	int64_t retry_at;    /* no write is sent before (monotonic ms); 0 none */
	unsigned n_in_flight;
};

/* ---- small helpers ---- */

static void *tb_alloc(struct rt_table *t, size_t n)
{
	return rt_client_realloc(t->c, NULL, n);
}

static void tb_free(struct rt_client *c, void *p)
{
	if (p)
		rt_client_realloc(c, p, 0);
}

static void *cache_realloc(void *ud, void *p, size_t n)
{
	return rt_client_realloc(ud, p, n);
}

static void *outbox_realloc(void *ud, void *p, size_t n)
{
	return rt_client_realloc(ud, p, n);
}

/* Compact JSON text through the client's allocator. */
static char *dump(struct rt_table *t, const json_t *v)
{
	size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	char *s = n ? tb_alloc(t, n + 1) : NULL;
	if (s) {
		json_dumpb(v, s, n, JSON_COMPACT | JSON_ENCODE_ANY);
		s[n] = 0;
	}
	return s;
}

static void emit_error(struct rt_table *t, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void emit_error(struct rt_table *t, int rc, const char *fmt, ...)
{
	if (!t->cb.on_error)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	t->cb.on_error(t->user, t, rc, msg);
}

static bool is_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n && n <= MAX_NAME && !u8_check((const uint8_t *)s, n) && !strpbrk(s, "\"\\");
}

static void new_key(char out[RT_TABLE_ID_LEN])
{
	unsigned char b[16];
	rt_rand_bytes(b, sizeof b);
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Full jitter: uniform in [0, min(max, base * 2^attempts)]. */
static unsigned backoff_ms(const struct rt_table *t, unsigned attempts)
{
	uint64_t cap = t->retry_base_ms;
	for (unsigned i = 0; i < attempts && cap < t->retry_max_ms; i++)
		cap *= 2;
	if (cap > t->retry_max_ms)
		cap = t->retry_max_ms;
	uint64_t r;
	rt_rand_bytes(&r, sizeof r);
	return (unsigned)(r % (cap + 1));
}

static const char *op_name(enum rt_cache_op op)
{
	static const char *const names[] = {"insert", "update", "upsert", "delete"};
	return names[op];
}

static const char *strategy_name(enum rt_table_strategy s)
{
	return s == RT_STRATEGY_MERGE ? "merge" : s == RT_STRATEGY_LWW ? "lww" : "reject";
}

/* ---- callbacks to the application ---- */

static void cache_row(void *user, const char *key, const json_t *row, bool is_pending,
		      enum rt_table_cause cause)
{
	struct rt_table *t = user;
	if (!t->cb.on_row)
		return;
	char *text = row ? dump(t, row) : NULL;
	if (row && !text) {
		emit_error(t, RT_ENOMEM, "out of memory reporting a row");
		return;
	}
	struct rt_table_row_event ev = {key, text, is_pending, cause};
	t->cb.on_row(t->user, t, &ev);
	tb_free(t->c, text);
}

static void cache_oom(void *user)
{
	emit_error(user, RT_ENOMEM, "out of memory reporting a row");
}

static void emit_write(struct rt_table *t, struct rt_table_write_event *ev)
{
	if (t->cb.on_write)
		t->cb.on_write(t->user, t, ev);
}

/* ---- the outbox's form of a write ---- */

/* {"id": public id, "manual": bool, "write": the write event's payload}. */
static json_t *write_payload(struct rt_table *t, const struct rt_cache_write *w)
{
	json_t *p = json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", op_name(w->op), "schema", t->schema,
			      "table", t->name, "strategy", strategy_name(w->strategy),
			      "idempotency_key", w->ikey);
	if (!p)
		return NULL;
	if ((w->record && json_object_set(p, "record", w->record)) ||
	    (w->op != RT_CACHE_INSERT && w->op != RT_CACHE_UPSERT &&
	     json_object_set(p, "key", w->key_obj)) ||
	    (w->base && json_object_set(p, "base", w->base))) {
		json_decref(p);
		return NULL;
	}
	return p;
}

static char *outbox_text(struct rt_table *t, const struct rt_cache_write *w)
{
	json_t *p = write_payload(t, w);
	json_t *e = p ? json_pack("{s:s,s:b,s:o}", "id", w->id, "manual",
				  w->strategy == RT_STRATEGY_MANUAL, "write", p)
		      : NULL;
	char *s = e ? dump(t, e) : NULL;
	json_decref(e);
	return s;
}

static enum rt_cache_op op_of(const char *s)
{
	if (!s)
		return (enum rt_cache_op)-1;
	for (int i = RT_CACHE_INSERT; i <= RT_CACHE_DELETE; i++)
		if (!strcmp(s, op_name((enum rt_cache_op)i)))
			return (enum rt_cache_op)i;
	return (enum rt_cache_op)-1;
}

/* Rebuilds a write from its outbox entry. Returns 0, RT_EIO (not a write of
 * this table), RT_ENOMEM. */
static int write_from_entry(struct rt_table *t, const struct rt_outbox_entry *e,
			    struct rt_cache_write **out)
{
	*out = NULL;
	json_t *root = json_loads(e->payload, 0, NULL);
	const json_t *p = json_object_get(root, "write");
	const char *id = json_string_value(json_object_get(root, "id"));
	const char *schema = json_string_value(json_object_get(p, "schema"));
	const char *table = json_string_value(json_object_get(p, "table"));
	const char *strategy = json_string_value(json_object_get(p, "strategy"));
	enum rt_cache_op op = op_of(json_string_value(json_object_get(p, "type")));
	const json_t *record = json_object_get(p, "record");
	const json_t *base = json_object_get(p, "base");
	int rc = RT_EIO;
	if (!root || !id || strlen(id) != RT_TABLE_ID_LEN - 1 || !schema || strcmp(schema, t->schema) ||
	    !table || strcmp(table, t->name) || !strategy || (int)op < 0 ||
	    (op != RT_CACHE_DELETE && !json_is_object(record)) ||
	    strlen(e->key) >= RT_CACHE_MAX_IKEY)
		goto out_put;
	struct rt_cache_write *w = tb_alloc(t, sizeof *w);
	if (!w) {
		rc = RT_ENOMEM;
		goto out_put;
	}
	memset(w, 0, sizeof *w);
	w->op = op;
	rc = rt_cache_key_of(&t->cache, op == RT_CACHE_INSERT || op == RT_CACHE_UPSERT
						? record
						: json_object_get(p, "key"),
			     &w->key_obj, w->key);
	if (rc) {
		tb_free(t->c, w);
		rc = rc == RT_ENOMEM ? rc : RT_EIO;
		goto out_put;
	}
	w->record = op == RT_CACHE_DELETE ? NULL : json_incref((json_t *)record);
	w->base = json_is_object(base) ? json_incref((json_t *)base) : NULL;
	w->strategy = json_is_true(json_object_get(root, "manual")) ? RT_STRATEGY_MANUAL
		      : !strcmp(strategy, "merge")                 ? RT_STRATEGY_MERGE
		      : !strcmp(strategy, "lww")                   ? RT_STRATEGY_LWW
								   : RT_STRATEGY_REJECT;
	snprintf(w->id, sizeof w->id, "%s", id);
	snprintf(w->ikey, sizeof w->ikey, "%s", e->key);
	w->seq = e->seq;
	w->attempts = e->attempts;
	*out = w;
	rc = 0;
out_put:
	json_decref(root);
	return rc;
}

/* ---- sending ---- */

/* Arms the table's one timer at the earlier of its deadlines still ahead
 * (a past retry_at only means sending may start: pump() does it when joined). */
static void arm(struct rt_table *t)
{
	int64_t now = rt_client_now_ms(), due = 0;
	if (t->snap_retry_at > now)
		due = t->snap_retry_at;
	if (t->retry_at > now && (!due || t->retry_at < due))
		due = t->retry_at;
	if (due)
		rt_client_timer_arm(t->c, &t->timer, due);
}

/* Asks for the snapshot again later: 2 s after a first refusal, doubling
 * up to a minute while the server keeps refusing (a table over the
 * snapshot's limits, an unknown table) so a refusal costs it little. */
static void snapshot_later(struct rt_table *t)
{
	unsigned n = t->snap_failures < 5 ? t->snap_failures : 5;
	int64_t delay = (int64_t)SNAPSHOT_RETRY_MS << n;
	if (delay > SNAPSHOT_RETRY_MAX_MS)
		delay = SNAPSHOT_RETRY_MAX_MS;
	t->snap_failures++;
	t->snap_retry_at = rt_client_now_ms() + delay;
	arm(t);
}

static void request_snapshot(struct rt_table *t)
{
	if (!t->is_joined || t->snap_req || t->cache.is_loaded)
		return;
	int rc = rt_channel_snapshot(t->ch, t->schema, t->name, &t->snap_req);
	if (rc) {
		t->snap_req = 0;
		snapshot_later(t);
	}
}

/* Sends what can be sent: unanswered writes in outbox order, up to
 * max_in_flight, once joined, loaded and past the backoff. */
static void pump(struct rt_table *t)
{
	if (!t->is_joined || !t->cache.is_loaded)
		return;
	int64_t now = rt_client_now_ms();
	if (t->retry_at > now) {
		arm(t);
		return;
	}
	t->retry_at = 0;
	for (struct rt_cache_write *w = t->cache.head; w && t->n_in_flight < t->max_in_flight;
	     w = w->next) {
		if (w->req)
			continue;
		json_t *p = write_payload(t, w);
		char *text = p ? dump(t, p) : NULL;
		json_decref(p);
		int rc = text ? rt_channel_write(t->ch, text, &w->req) : RT_ENOMEM;
		tb_free(t->c, text);
		if (rc) {
			/* buffer full or out of memory: try again a little later */
			w->req = 0;
			t->retry_at = now + t->retry_base_ms;
			arm(t);
			if (rc != RT_ELIMIT)
				emit_error(t, rc, "sending a write: %s", rt_strerror(rc));
			return;
		}
		t->n_in_flight++;
	}
}

static void on_timer(void *user, int64_t now)
{
	struct rt_table *t = user;
	if (t->snap_retry_at && now >= t->snap_retry_at) {
		t->snap_retry_at = 0;
		request_snapshot(t);
	}
	pump(t);
	arm(t);
}

/* ---- answers ---- */

/* Store errors worth retrying: too many requests, a cancelled or busy
 * store, lost or refused database connections (PostgreSQL classes 08, 53,
 * 57), serialization failures and deadlocks. */
static bool is_transient(const char *code)
{
	static const char *const exact[] = {"RTS429", "RTS503", "PGRST000", "PGRST001",
					    "PGRST002", "PGRST003", "40001", "40P01"};
	if (!code)
		return false;
	for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
		if (!strcmp(code, exact[i]))
			return true;
	return strlen(code) == 5 &&
	       (!strncmp(code, "08", 2) || !strncmp(code, "53", 2) || !strncmp(code, "57", 2));
}

/* No answer or a transient error: keep it and send it again later. */
static void defer(struct rt_table *t, struct rt_cache_write *w)
{
	unsigned delay = backoff_ms(t, w->attempts);
	w->attempts++;
	int rc = rt_outbox_defer(t->ob, w->seq, wall_ms() + delay);
	if (rc)
		emit_error(t, rc, "outbox: %s", rt_strerror(rc));
	int64_t at = rt_client_now_ms() + delay;
	if (at > t->retry_at)
		t->retry_at = at;
	arm(t);
}

/* A final answer: out of the outbox and of the overlay. */
static void finish(struct rt_table *t, struct rt_cache_write *w, bool has_row, const json_t *row,
		   const char *pos, struct rt_table_write_event *ev)
{
	int rc = rt_outbox_remove(t->ob, w->seq);
	if (rc && rc != RT_ENOTFOUND)
		emit_error(t, rc, "outbox: %s", rt_strerror(rc));
	enum rt_table_cause cause =
		ev->state == RT_WRITE_CONFIRMED ? RT_TABLE_CONFIRMED : RT_TABLE_ROLLED_BACK;
	if (rt_cache_unlink(&t->cache, w, has_row, row, pos, cause) == RT_ENOMEM)
		emit_error(t, RT_ENOMEM, "out of memory confirming a write");
	ev->id = w->id;
	emit_write(t, ev);
	json_decref(w->key_obj);
	json_decref(w->record);
	json_decref(w->base);
	tb_free(t->c, w);
}

/* Sends w again in another form under a new idempotency key, in place. */
static int resend(struct rt_table *t, struct rt_cache_write *w, enum rt_table_strategy strategy,
		  json_t *record, json_t *base)
{
	char old_ikey[RT_CACHE_MAX_IKEY];
	enum rt_table_strategy old_strategy = w->strategy;
	snprintf(old_ikey, sizeof old_ikey, "%s", w->ikey);
	json_t *old_record = json_incref(w->record), *old_base = json_incref(w->base);
	char key[RT_TABLE_ID_LEN];
	new_key(key);
	snprintf(w->ikey, sizeof w->ikey, "%s", key);
	w->strategy = strategy;
	rt_cache_rewrite(&t->cache, w, record, base);
	char *text = outbox_text(t, w);
	int rc = text ? rt_outbox_replace(t->ob, w->seq, w->ikey, text) : RT_ENOMEM;
	tb_free(t->c, text);
	if (rc) {
		snprintf(w->ikey, sizeof w->ikey, "%s", old_ikey);
		w->strategy = old_strategy;
		rt_cache_rewrite(&t->cache, w, old_record, old_base);
		return rc;
	}
	json_decref(old_record);
	json_decref(old_base);
	w->attempts = 0;
	return 0;
}

/* A conflict on a manual write: the application decides. Returns true when
 * the write was sent again (or will be). */
static bool resolve(struct rt_table *t, struct rt_cache_write *w, const json_t *remote,
		    const json_t *conflicts)
{
	if (!t->cb.on_conflict)
		return false;
	char *local = w->record ? dump(t, w->record) : NULL;
	char *base = w->base ? dump(t, w->base) : NULL;
	char *rem = json_is_object(remote) ? dump(t, remote) : NULL;
	char *cols = conflicts ? dump(t, conflicts) : NULL;
	bool ok = false;
	if ((w->record && !local) || (w->base && !base) || (json_is_object(remote) && !rem) ||
	    (conflicts && !cols)) {
		emit_error(t, RT_ENOMEM, "out of memory resolving a conflict");
		goto out_free;
	}
	const char *resolved = NULL;
	struct rt_table_conflict c = {w->id, op_name(w->op), w->key, local, base, rem, cols};
	enum rt_table_resolution r = t->cb.on_conflict(t->user, t, &c, &resolved);
	int rc = 0;
	if (r == RT_RESOLVE_KEEP_MINE) {
		rc = resend(t, w, RT_STRATEGY_LWW, json_incref(w->record), NULL);
	} else if (r == RT_RESOLVE_RECORD && w->op != RT_CACHE_DELETE) {
		json_t *rec = resolved ? json_loads(resolved, 0, NULL) : NULL;
		json_t *nbase = NULL;
		if (!json_is_object(rec) || json_object_update(rec, w->key_obj)) {
			json_decref(rec);
			emit_error(t, RT_EINVAL, "on_conflict resolved %s with no JSON object",
				   w->id);
			goto out_free;
		}
		if (json_is_object(remote)) {
			nbase = json_object();
			const char *col;
			json_t *v;
			json_object_foreach(rec, col, v) {
				if (json_object_get(w->key_obj, col))
					continue;
				json_t *cur = json_object_get(remote, col);
				if (!nbase || json_object_set_new(nbase, col,
								  cur ? json_copy(cur) : json_null())) {
					json_decref(nbase);
					json_decref(rec);
					emit_error(t, RT_ENOMEM, "out of memory resolving a conflict");
					goto out_free;
				}
			}
		}
		rc = resend(t, w, RT_STRATEGY_MANUAL, rec, nbase);
	} else {
		goto out_free;
	}
	if (rc)
		emit_error(t, rc, "outbox: %s", rt_strerror(rc));
	else
		ok = true;
out_free:
	tb_free(t->c, local);
	tb_free(t->c, base);
	tb_free(t->c, rem);
	tb_free(t->c, cols);
	return ok;
}

static void write_answered(struct rt_table *t, struct rt_cache_write *w, int rc,
			   const char *response)
{
	w->req = 0;
	t->n_in_flight--;
	json_t *r = response ? json_loads(response, 0, NULL) : NULL;
	const char *outcome = json_string_value(json_object_get(r, "outcome"));
	const json_t *record = json_object_get(r, "record");
	const json_t *conflicts = json_object_get(r, "conflicts");
	const char *pos = json_string_value(json_object_get(r, "position"));
	const char *code = json_string_value(json_object_get(r, "code"));
	const char *reason = json_string_value(json_object_get(r, "reason"));
	char *rec_text = NULL, *cols_text = NULL;
	if (!json_is_array(conflicts) || !json_array_size(conflicts))
		conflicts = NULL;
	if (rc == RT_ETIMEDOUT || rc == RT_ECLOSED || rc == RT_ENOMEM || (rc && !r) ||
	    (rc && is_transient(code))) {
		defer(t, w);
		goto out_put;
	}
	if ((json_is_object(record) && !(rec_text = dump(t, record))) ||
	    (conflicts && !(cols_text = dump(t, conflicts)))) {
		emit_error(t, RT_ENOMEM, "out of memory reporting a write");
		defer(t, w);
		goto out_put;
	}
	struct rt_table_write_event ev = {
		.state = RT_WRITE_CONFIRMED,
		.outcome = outcome,
		.conflicts = cols_text,
		.record = rec_text,
		.is_replayed = json_is_true(json_object_get(r, "replayed")),
	};
	if (!rc && outcome &&
	    (!strcmp(outcome, "applied") || !strcmp(outcome, "merged") ||
	     !strcmp(outcome, "missing"))) {
		finish(t, w, true, json_is_object(record) ? record : NULL, pos, &ev);
		goto out_put;
	}
	ev.state = RT_WRITE_ROLLED_BACK;
	if (outcome && !strcmp(outcome, "conflict")) {
		if (w->strategy == RT_STRATEGY_MANUAL && resolve(t, w, record, conflicts))
			goto out_put;
		ev.code = "RTS409";
		ev.reason = reason ? reason : "conflict";
	} else {
		ev.outcome = NULL;
		ev.code = code ? code : "RTS400";
		ev.reason = reason ? reason : "refused";
	}
	finish(t, w, false, NULL, NULL, &ev);
out_put:
	tb_free(t->c, rec_text);
	tb_free(t->c, cols_text);
	json_decref(r);
	pump(t);
}

static void snapshot_answered(struct rt_table *t, int rc, const char *response)
{
	t->snap_req = 0;
	if (rc == RT_ECLOSED)
		return; /* asked again after the rejoin */
	json_t *r = response ? json_loads(response, 0, NULL) : NULL;
	if (!rc && r) {
		rc = rt_cache_load(&t->cache, json_object_get(r, "rows"),
				   json_string_value(json_object_get(r, "position")));
		if (!rc) {
			json_decref(r);
			t->snap_failures = 0;
			if (t->cb.on_ready)
				t->cb.on_ready(t->user, t);
			pump(t);
			return;
		}
	}
	const char *reason = json_string_value(json_object_get(r, "reason"));
	emit_error(t, rc == RT_ENOMEM ? rc : RT_EPROTO, "snapshot of %s.%s: %s", t->schema, t->name,
		   reason ? reason : rc ? rt_strerror(rc) : "malformed");
	json_decref(r);
	snapshot_later(t);
}

/* ---- channel callbacks ---- */

static void ch_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct rt_table *t = user;
	t->is_joined = st->state == RT_CHANNEL_JOINED;
	if (!t->is_joined) {
		if (st->state == RT_CHANNEL_CLOSED)
			emit_error(t, RT_ECLOSED, "the server closed the table's channel");
		return;
	}
	request_snapshot(t);
	pump(t);
}

static void ch_change(void *user, struct rt_client_channel *ch, const struct rt_client_change *c)
{
	struct rt_table *t = user;
	if (!c->table || strcmp(c->table, t->name) || (c->schema && strcmp(c->schema, t->schema)))
		return;
	json_t *rec = c->record ? json_loads(c->record, 0, NULL) : NULL;
	json_t *old = c->old_record ? json_loads(c->old_record, 0, NULL) : NULL;
	int rc = rt_cache_change(&t->cache, c->type, rec, old, c->position);
	json_decref(rec);
	json_decref(old);
	if (rc == RT_ELIMIT) {
		rt_cache_unload(&t->cache); /* too much while loading: start over */
		request_snapshot(t);
	} else if (rc) {
		emit_error(t, rc, "change of %s.%s not applied: %s", t->schema, t->name,
			   rt_strerror(rc));
	}
}

static void ch_system(void *user, struct rt_client_channel *ch, const struct rt_system_event *s)
{
	struct rt_table *t = user;
	if (!s->resync_required)
		return;
	rt_cache_unload(&t->cache);
	request_snapshot(t); /* now if joined, else after the rejoin */
}

static void ch_write(void *user, struct rt_client_channel *ch, uint64_t id, int rc,
		     const char *response)
{
	struct rt_table *t = user;
	if (id && id == t->snap_req) {
		snapshot_answered(t, rc, response);
		return;
	}
	for (struct rt_cache_write *w = t->cache.head; w; w = w->next)
		if (w->req == id && id) {
			write_answered(t, w, rc, response);
			return;
		}
}

/* ---- public API ---- */

int rt_table_open(struct rt_client *c, const struct rt_table_options *o, struct rt_table **out)
{
	*out = NULL;
	static const char *const default_pk[] = {"id"};
	const char *const *pk = o && o->primary_key ? o->primary_key : default_pk;
	size_t n_pk = o && o->primary_key ? o->n_primary_key : 1;
	if (!c || !o || !is_name(o->table) || (o->schema && !is_name(o->schema)) || !n_pk ||
	    n_pk > RT_CACHE_MAX_PK || o->default_strategy > RT_STRATEGY_MANUAL)
		return RT_EINVAL;
	for (size_t i = 0; i < n_pk; i++)
		if (!is_name(pk[i]))
			return RT_EINVAL;
	rt_client_lock(c);
	int rc = RT_ENOMEM;
	struct rt_table *t = rt_client_realloc(c, NULL, sizeof *t);
	if (!t)
		goto out_unlock;
	memset(t, 0, sizeof *t);
	t->c = c;
	snprintf(t->schema, sizeof t->schema, "%s", o->schema ? o->schema : "public");
	snprintf(t->name, sizeof t->name, "%s", o->table);
	for (size_t i = 0; i < n_pk; i++) {
		snprintf(t->pk_names[i], sizeof t->pk_names[i], "%s", pk[i]);
		t->pk[i] = t->pk_names[i];
	}
	t->n_pk = n_pk;
	t->strategy = o->default_strategy ? o->default_strategy : RT_STRATEGY_REJECT;
	t->retry_base_ms = o->retry_base_ms ? o->retry_base_ms : DEFAULT_RETRY_BASE_MS;
	t->retry_max_ms = o->retry_max_ms ? o->retry_max_ms : DEFAULT_RETRY_MAX_MS;
	if (t->retry_max_ms < t->retry_base_ms)
		t->retry_max_ms = t->retry_base_ms;
	t->max_in_flight = o->max_in_flight ? o->max_in_flight : DEFAULT_IN_FLIGHT;
	t->cb = o->cb;
	t->user = o->user;
	t->timer = (struct rt_client_timer){.run = on_timer, .user = t};
	struct rt_cache_alloc ca = {cache_realloc, c};
	rc = rt_cache_init(&t->cache, t->pk, t->n_pk, &ca, cache_row, t);
	if (rc)
		goto err_free;
	t->cache.on_oom = cache_oom;
	struct rt_outbox_alloc oa = {outbox_realloc, c};
	/* No on_error before the table exists for the application: the code says it. */
	rc = rt_outbox_open(o->outbox_path ? o->outbox_path : ":memory:", &oa, &t->ob, NULL, 0);
	if (rc)
		goto err_cache;
	/* Writes left from an earlier run are pending from the start. */
	struct rt_outbox_entry e;
	for (int64_t after = 0; !(rc = rt_outbox_next(t->ob, after, &e));) {
		struct rt_cache_write *w;
		after = e.seq;
		rc = write_from_entry(t, &e, &w);
		rt_outbox_entry_deinit(t->ob, &e);
		if (rc)
			goto err_outbox;
		rt_cache_add(&t->cache, w);
	}
	if (rc != RT_ENOTFOUND)
		goto err_outbox;
	char topic[sizeof TOPIC_PREFIX + 2 * MAX_NAME + 2];
	snprintf(topic, sizeof topic, TOPIC_PREFIX "%s.%s", t->schema, t->name);
	struct rt_change_filter f = {"*", t->schema, t->name, NULL};
	struct rt_channel_options co = {
		.topic = topic,
		.changes = &f,
		.n_changes = 1,
		.cb = {.on_status = ch_status,
		       .on_change = ch_change,
		       .on_system = ch_system,
		       .on_write = ch_write},
		.user = t,
	};
	rc = rt_channel_join(c, &co, &t->ch);
	if (rc)
		goto err_outbox;
	rt_client_timer_add(c, &t->timer);
	*out = t;
	rc = 0;
	goto out_unlock;
err_outbox:
	rt_outbox_close(t->ob);
err_cache:
	rt_cache_deinit(&t->cache);
err_free:
	rt_client_realloc(c, t, 0);
out_unlock:
	rt_client_unlock(c);
	return rc;
}

void rt_table_close(struct rt_table *t)
{
	if (!t)
		return;
	struct rt_client *c = t->c;
	rt_client_lock(c);
	rt_client_timer_remove(c, &t->timer);
	rt_channel_leave(t->ch);
	rt_outbox_close(t->ob);
	rt_cache_deinit(&t->cache);
	rt_client_realloc(c, t, 0);
	rt_client_unlock(c);
}

static int table_write(struct rt_table *t, enum rt_cache_op op, const char *text,
		       enum rt_table_strategy strategy, char id[RT_TABLE_ID_LEN])
{
	if (!t || !text || strategy > RT_STRATEGY_MANUAL)
		return RT_EINVAL;
	if (strlen(text) > RT_OUTBOX_MAX_PAYLOAD / 2)
		return RT_ETOOBIG;
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);
	if (!json_is_object(v)) {
		json_decref(v);
		return RT_EINVAL;
	}
	rt_client_lock(t->c);
	int rc = RT_ENOMEM;
	struct rt_cache_write *w = tb_alloc(t, sizeof *w);
	if (!w)
		goto out_unlock;
	memset(w, 0, sizeof *w);
	w->op = op;
	w->strategy = strategy ? strategy : t->strategy;
	rc = rt_cache_key_of(&t->cache, v, &w->key_obj, w->key);
	if (rc)
		goto err_free;
	if (op != RT_CACHE_DELETE)
		w->record = json_incref(v);
	if (op != RT_CACHE_INSERT) {
		rc = rt_cache_base(&t->cache, w->key, w->record, &w->base);
		if (rc)
			goto err_free;
	}
	new_key(w->id);
	snprintf(w->ikey, sizeof w->ikey, "%s", w->id);
	char *entry = outbox_text(t, w);
	if (!entry) {
		rc = RT_ENOMEM;
		goto err_free;
	}
	rc = rt_outbox_push(t->ob, w->ikey, entry, &w->seq);
	tb_free(t->c, entry);
	if (rc)
		goto err_free;
	if (id)
		memcpy(id, w->id, RT_TABLE_ID_LEN);
	rt_cache_add(&t->cache, w);
	struct rt_table_write_event ev = {.id = w->id, .state = RT_WRITE_PENDING};
	emit_write(t, &ev);
	pump(t);
	rc = 0;
	goto out_unlock;
err_free:
	json_decref(w->key_obj);
	json_decref(w->record);
	json_decref(w->base);
	tb_free(t->c, w);
out_unlock:
	rt_client_unlock(t->c);
	json_decref(v);
	return rc;
}

int rt_table_insert(struct rt_table *t, const char *record, enum rt_table_strategy strategy,
		    char id[RT_TABLE_ID_LEN])
{
	return table_write(t, RT_CACHE_INSERT, record, strategy, id);
}

int rt_table_update(struct rt_table *t, const char *record, enum rt_table_strategy strategy,
		    char id[RT_TABLE_ID_LEN])
{
	return table_write(t, RT_CACHE_UPDATE, record, strategy, id);
}

int rt_table_upsert(struct rt_table *t, const char *record, enum rt_table_strategy strategy,
		    char id[RT_TABLE_ID_LEN])
{
	return table_write(t, RT_CACHE_UPSERT, record, strategy, id);
}

int rt_table_delete(struct rt_table *t, const char *key, enum rt_table_strategy strategy,
		    char id[RT_TABLE_ID_LEN])
{
	return table_write(t, RT_CACHE_DELETE, key, strategy, id);
}

int rt_table_get(struct rt_table *t, const char *key, char **row, bool *is_pending)
{
	if (row)
		*row = NULL;
	if (is_pending)
		*is_pending = false;
	json_t *k = key ? json_loads(key, 0, NULL) : NULL;
	char text[RT_CACHE_MAX_KEY];
	json_t *kobj;
	int rc = rt_cache_key_of(&t->cache, k, &kobj, text);
	json_decref(k);
	json_decref(kobj);
	if (rc)
		return rc == RT_ETOOBIG ? RT_EINVAL : rc;
	rt_client_lock(t->c);
	bool oom;
	json_t *v = rt_cache_visible(&t->cache, text, is_pending, &oom);
	rc = v ? 0 : oom ? RT_ENOMEM : RT_ENOTFOUND;
	if (v && row && !(*row = dump(t, v)))
		rc = RT_ENOMEM;
	rt_client_unlock(t->c);
	json_decref(v);
	return rc;
}

int rt_table_rows(struct rt_table *t, char **json)
{
	rt_client_lock(t->c);
	json_t *a = rt_cache_rows(&t->cache);
	*json = a ? dump(t, a) : NULL;
	rt_client_unlock(t->c);
	json_decref(a);
	return *json ? 0 : RT_ENOMEM;
}

size_t rt_table_count(struct rt_table *t)
{
	rt_client_lock(t->c);
	size_t n = rt_cache_count(&t->cache);
	rt_client_unlock(t->c);
	return n;
}

size_t rt_table_pending(struct rt_table *t)
{
	rt_client_lock(t->c);
	size_t n = t->cache.n_writes;
	rt_client_unlock(t->c);
	return n;
}

bool rt_table_is_ready(struct rt_table *t)
{
	rt_client_lock(t->c);
	bool ready = t->cache.is_loaded;
	rt_client_unlock(t->c);
	return ready;
}
