#include "activity/activity.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistr.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "realtime/hub.h"
#include "realtime/realtime.h"
#include "store/query.h"
#include "store/store.h"

struct entry {
	uint64_t id;
	int64_t at_ms, last_at_ms;
	enum rt_activity_kind kind;
	char *channel;
	char *actor; /* NULL: none */
	json_t *summary;
	json_t *row; /* writes: the row written (never shown) */
};

struct rt_activity {
	struct rt_activity_config cfg;
	struct rt_hub *hub;
	struct rt_realtime *rt;
	struct rt_store *store;
	pthread_mutex_t mu;
	struct entry **v; /* oldest first, from v[start] to v[start + n - 1] */
	size_t start, n, cap;
	uint64_t next;    /* the counter part of the next id */
};

void rt_activity_config_default(struct rt_activity_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->max_entries = 10000;
	cfg->max_age_ms = 7ULL * 24 * 3600 * 1000;
	cfg->merge_ms = 10000;
	cfg->epoch = 1;
}

static const char *const kind_names[] = {"write", "doc_edit", "lock"};

bool rt_activity_channel_ok(const char *channel)
{
	size_t n = channel ? strlen(channel) : 0;
	if (n > RT_ACTIVITY_MAX_CHANNEL)
		return false;
	static const char *const prefixes[] = {"table:", "collab:", "lock:"};
	for (size_t i = 0; i < 3; i++) {
		size_t pl = strlen(prefixes[i]);
		if (n > pl && !strncmp(channel, prefixes[i], pl))
			break;
		if (i == 2)
			return false;
	}
	if (u8_check((const uint8_t *)channel, n))
		return false; /* entries are JSON: valid UTF-8 only */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)channel[i] < 0x20 || channel[i] == 0x7f)
			return false;
	return true;
}

struct rt_activity *rt_activity_new(const struct rt_activity_config *cfg, struct rt_hub *hub,
				    struct rt_realtime *rt, struct rt_store *store)
{
	struct rt_activity *a = rt_xcalloc(1, sizeof *a);
	a->cfg = *cfg;
	if (!a->cfg.max_entries)
		a->cfg.max_entries = 1;
	if (!a->cfg.epoch)
		a->cfg.epoch = 1;
	if (!a->cfg.wall_ms)
		a->cfg.wall_ms = rt_wall_ms;
	a->hub = hub;
	a->rt = rt;
	a->store = store;
	pthread_mutex_init(&a->mu, NULL);
	return a;
}

static void entry_free(struct entry *e)
{
	if (!e)
		return;
	free(e->channel);
	free(e->actor);
	json_decref(e->summary);
	json_decref(e->row);
	free(e);
}

void rt_activity_free(struct rt_activity *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		entry_free(a->v[a->start + i]);
	free(a->v);
	pthread_mutex_destroy(&a->mu);
	atomic_store(&rt_metrics_activity_entries, 0);
	free(a);
}

/* Drops the oldest entries past retention (mutex held). */
static void trim_locked(struct rt_activity *a, int64_t now)
{
	while (a->n && (a->n > a->cfg.max_entries ||
			(a->cfg.max_age_ms &&
			 now - a->v[a->start]->last_at_ms > (int64_t)a->cfg.max_age_ms))) {
		entry_free(a->v[a->start]);
		a->v[a->start] = NULL;
		a->start++;
		a->n--;
	}
	if (!a->n)
		a->start = 0;
	atomic_store(&rt_metrics_activity_entries, a->n);
}

void rt_activity_trim(struct rt_activity *a)
{
	pthread_mutex_lock(&a->mu);
	trim_locked(a, a->cfg.wall_ms());
	pthread_mutex_unlock(&a->mu);
}

size_t rt_activity_count(struct rt_activity *a)
{
	pthread_mutex_lock(&a->mu);
	size_t n = a->n;
	pthread_mutex_unlock(&a->mu);
	return n;
}

static void push_locked(struct rt_activity *a, struct entry *e)
{
	if (a->start + a->n == a->cap) {
		if (a->start > a->cap / 2) { /* room at the front: slide down */
			memmove(a->v, a->v + a->start, a->n * sizeof *a->v);
			a->start = 0;
		} else {
			a->cap = a->cap ? a->cap * 2 : 64;
			a->v = rt_xrealloc(a->v, a->cap * sizeof *a->v);
		}
	}
	a->v[a->start + a->n++] = e;
}

static void format_time(int64_t ms, char out[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* The entry as readers see it (a new object). */
static json_t *entry_json(const struct entry *e)
{
	char at[32], last[32];
	format_time(e->at_ms, at);
	json_t *o = json_pack("{s:I,s:s,s:I,s:s?,s:s,s:s,s:O}", "id", (json_int_t)e->id, "at", at,
			      "at_ms", (json_int_t)e->at_ms, "actor", e->actor, "kind",
			      kind_names[e->kind], "channel", e->channel, "summary", e->summary);
	if (e->kind == RT_ACTIVITY_DOC_EDIT) {
		format_time(e->last_at_ms, last);
		json_object_set_new(o, "last_at", json_string(last));
	}
	return o;
}

/* ---- visibility ---- */

bool rt_activity_channel_readable(struct rt_activity *a, const char *channel,
				  const struct rt_auth *who)
{
	if (!strncmp(channel, "table:", 6))
		return true;
	if (!a->rt)
		return true;
	struct rt_auth w = *who;
	w.topic = channel;
	struct rt_channel_access acc;
	/* 1: a policy outside the compiled subset; not asked of the database
	 * per entry: hidden (docs/activity.md) */
	return rt_realtime_authorize(a->rt, &w, true, &acc) == 0 && acc.may_read;
}

static const char *col_type(const char *column, void *ctx)
{
	const struct rt_store_column *c = rt_store_column(ctx, column);
	return c ? c->type : NULL;
}

/* Whether who may select row of the table channel names. */
static bool row_visible(struct rt_activity *a, const char *channel, const json_t *row,
			const struct rt_auth *who)
{
	if (!a->store)
		return true;
	const char *qn = channel + 6, *dot = strchr(qn, '.');
	if (!dot)
		return false;
	char schema[RT_ACTIVITY_MAX_CHANNEL + 1];
	snprintf(schema, sizeof schema, "%.*s", (int)(dot - qn), qn);
	const struct rt_store_table *t = rt_store_table(a->store, schema, dot + 1);
	if (!t)
		return false;
	struct rt_policies *pol = rt_store_policies(a->store);
	struct rt_query_node pred;
	enum rt_policy_verdict v =
		rt_policies_predicate(pol, schema, dot + 1, RT_POLICY_SELECT, false, who, &pred);
	/* no row (a write of many rows): only for readers RLS does not restrict */
	bool ok = v == RT_POLICY_ALLOW_ALL ||
		  (v == RT_POLICY_ROWS && row &&
		   rt_policy_eval(&pred, row, col_type, (void *)t) == 1);
	rt_query_node_deinit(&pred);
	rt_policies_unref(pol);
	return ok;
}

static bool entry_visible(struct rt_activity *a, const struct entry *e, const struct rt_auth *who)
{
	if (e->kind == RT_ACTIVITY_WRITE)
		return row_visible(a, e->channel, e->row, who);
	return rt_activity_channel_readable(a, e->channel, who);
}

/* ---- live ---- */

struct admit_ctx {
	struct rt_activity *a;
	struct entry e; /* the fields the check reads (own copies) */
};

static void admit_free(void *ctx)
{
	struct admit_ctx *ac = ctx;
	free(ac->e.channel);
	json_decref(ac->e.row);
	free(ac);
}

static bool admit(void *ctx, const struct rt_auth *who)
{
	struct admit_ctx *ac = ctx;
	return entry_visible(ac->a, &ac->e, who);
}

static void publish(struct rt_activity *a, const struct entry *e)
{
	if (!a->hub)
		return;
	json_t *o = entry_json(e);
	char *txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	size_t tl = strlen(RT_ACTIVITY_TOPIC_PREFIX) + strlen(e->channel) + 1;
	char *topic = rt_xmalloc(tl);
	snprintf(topic, tl, "%s%s", RT_ACTIVITY_TOPIC_PREFIX, e->channel);
	struct rt_msg *m = rt_realtime_broadcast_msg(topic, true, "activity", txt, strlen(txt));
	struct admit_ctx *ac = rt_xcalloc(1, sizeof *ac);
	ac->a = a;
	ac->e.kind = e->kind;
	ac->e.channel = rt_xstrdup(e->channel);
	ac->e.row = e->row ? json_incref(e->row) : NULL;
	m->admit = admit;
	m->admit_ctx = ac;
	m->admit_free = admit_free;
	rt_hub_publish_any(a->hub, m);
	rt_msg_unref(m);
	free(topic);
	free(txt);
}

/* ---- appending ---- */

static json_t *bounded_summary(const json_t *summary)
{
	if (!json_is_object(summary))
		return json_object();
	char *txt = json_dumps(summary, JSON_COMPACT);
	size_t n = txt ? strlen(txt) : 0;
	free(txt);
	if (n > RT_ACTIVITY_MAX_SUMMARY)
		return json_pack("{s:b}", "truncated", 1);
	return json_deep_copy(summary);
}

static bool same_actor(const char *x, const char *y)
{
	return (!x && !y) || (x && y && !strcmp(x, y));
}

uint64_t rt_activity_append(struct rt_activity *a, enum rt_activity_kind kind, const char *channel,
			    const char *actor, const json_t *summary, const json_t *row)
{
	if (!rt_activity_channel_ok(channel))
		return 0;
	int64_t now = a->cfg.wall_ms();
	pthread_mutex_lock(&a->mu);
	if (kind == RT_ACTIVITY_DOC_EDIT && a->cfg.merge_ms) {
		/* the actor's latest edit of this document, if recent: merged */
		for (size_t i = a->n; i-- > 0;) {
			struct entry *e = a->v[a->start + i];
			if (now - e->last_at_ms > (int64_t)a->cfg.merge_ms)
				break;
			if (e->kind != RT_ACTIVITY_DOC_EDIT || strcmp(e->channel, channel) ||
			    !same_actor(e->actor, actor))
				continue;
			json_t *add = json_object_get(summary, "bytes");
			json_t *sum = json_object_get(e->summary, "bytes");
			json_t *edits = json_object_get(e->summary, "edits");
			json_object_set_new(e->summary, "bytes",
					    json_integer(json_integer_value(sum) +
							 json_integer_value(add)));
			json_object_set_new(e->summary, "edits",
					    json_integer(json_integer_value(edits) + 1));
			e->last_at_ms = now;
			uint64_t id = e->id;
			pthread_mutex_unlock(&a->mu);
			return id;
		}
	}
	struct entry *e = rt_xcalloc(1, sizeof *e);
	e->id = a->cfg.epoch << 32 | ++a->next;
	e->at_ms = e->last_at_ms = now;
	e->kind = kind;
	e->channel = rt_xstrdup(channel);
	e->actor = actor && *actor ? rt_xstrndup(actor, strnlen(actor, 256)) : NULL;
	e->summary = bounded_summary(summary);
	if (kind == RT_ACTIVITY_DOC_EDIT && !json_object_get(e->summary, "edits"))
		json_object_set_new(e->summary, "edits", json_integer(1));
	e->row = row ? json_deep_copy(row) : NULL;
	push_locked(a, e);
	trim_locked(a, now);
	/* the published copy is made under the mutex: a trim may free e after it */
	struct entry copy = *e;
	copy.channel = rt_xstrdup(e->channel);
	copy.actor = e->actor ? rt_xstrdup(e->actor) : NULL;
	copy.summary = json_deep_copy(e->summary);
	copy.row = e->row ? json_incref(e->row) : NULL;
	uint64_t id = e->id;
	pthread_mutex_unlock(&a->mu);
	atomic_fetch_add(&rt_metrics_activity_appended, 1);
	publish(a, &copy);
	free(copy.channel);
	free(copy.actor);
	json_decref(copy.summary);
	json_decref(copy.row);
	return id;
}

void rt_activity_write(struct rt_activity *a, const struct rt_store_table *t, const char *op,
		       const json_t *rows, const char *actor)
{
	if (!a || !t || !json_array_size(rows))
		return;
	size_t n = strlen(t->schema) + strlen(t->name) + 8;
	char *ch = rt_xmalloc(n);
	snprintf(ch, n, "table:%s.%s", t->schema, t->name);
	size_t n_rows = json_array_size(rows);
	if (n_rows > RT_ACTIVITY_MAX_WRITE_ROWS) {
		json_t *s = json_pack("{s:s,s:I}", "op", op, "rows", (json_int_t)n_rows);
		rt_activity_append(a, RT_ACTIVITY_WRITE, ch, actor, s, NULL);
		json_decref(s);
		free(ch);
		return;
	}
	size_t i;
	const json_t *row;
	json_array_foreach(rows, i, row) {
		json_t *pk = json_object();
		for (size_t k = 0; k < t->n_cols; k++)
			if (t->cols[k].is_pk) {
				json_t *v = json_object_get(row, t->cols[k].name);
				json_object_set(pk, t->cols[k].name, v ? v : json_null());
			}
		json_t *s = json_pack("{s:s,s:o}", "op", op, "pk", pk);
		rt_activity_append(a, RT_ACTIVITY_WRITE, ch, actor, s, row);
		json_decref(s);
	}
	free(ch);
}

void rt_activity_doc_edit(struct rt_activity *a, const char *doc, const char *actor,
			  size_t n_bytes)
{
	if (!a || !doc)
		return;
	size_t n = strlen(doc) + 8;
	char *ch = rt_xmalloc(n);
	snprintf(ch, n, "collab:%s", doc);
	json_t *s = json_pack("{s:I}", "bytes", (json_int_t)n_bytes);
	rt_activity_append(a, RT_ACTIVITY_DOC_EDIT, ch, actor, s, NULL);
	json_decref(s);
	free(ch);
}

/* ---- reading ---- */

int rt_activity_page(struct rt_activity *a, const char *channel, uint64_t before, unsigned limit,
		     const struct rt_auth *who, json_t **out, int *status)
{
	if (!rt_activity_channel_ok(channel)) {
		*status = 400;
		*out = json_pack("{s:s,s:s}", "code", "RTS400", "message",
				 "a channel is table:<schema>.<table>, collab:<document> or "
				 "lock:<name>");
		return -1;
	}
	if (!limit)
		limit = RT_ACTIVITY_DEFAULT_PAGE;
	if (limit > RT_ACTIVITY_MAX_PAGE)
		limit = RT_ACTIVITY_MAX_PAGE;
	json_t *list = json_array();
	*status = 200;
	bool readable = rt_activity_channel_readable(a, channel, who);
	bool is_table = !strncmp(channel, "table:", 6);
	uint64_t last_id = 0;
	bool has_more = false;
	/* Entries are copied under the mutex, checked outside it. */
	struct entry **cand = NULL;
	size_t n_cand = 0;
	for (;;) {
		n_cand = 0;
		pthread_mutex_lock(&a->mu);
		trim_locked(a, a->cfg.wall_ms());
		cand = rt_xrealloc(cand, (limit + 1) * sizeof *cand);
		/* ids grow along the ring: the first entry at or above before */
		size_t lo = 0, hi = a->n;
		while (before && lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (a->v[a->start + mid]->id < before)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t i = before ? lo : a->n; readable && i-- > 0 && n_cand <= limit;) {
			struct entry *e = a->v[a->start + i];
			if (strcmp(e->channel, channel))
				continue;
			struct entry *c = rt_xcalloc(1, sizeof *c);
			*c = *e;
			c->channel = rt_xstrdup(e->channel);
			c->actor = e->actor ? rt_xstrdup(e->actor) : NULL;
			c->summary = json_deep_copy(e->summary);
			c->row = e->row ? json_incref(e->row) : NULL;
			cand[n_cand++] = c;
		}
		pthread_mutex_unlock(&a->mu);
		for (size_t i = 0; i < n_cand; i++) {
			struct entry *c = cand[i];
			before = c->id; /* the next round goes on below the last one looked at */
			if (!has_more && (!is_table || entry_visible(a, c, who))) {
				if (json_array_size(list) == limit) {
					has_more = true; /* one more visible entry: another page */
				} else {
					json_array_append_new(list, entry_json(c));
					last_id = c->id;
				}
			}
			entry_free(c);
		}
		/* another visible entry found, or no older ones left */
		if (has_more || n_cand <= limit)
			break;
	}
	free(cand);
	*out = json_pack("{s:s,s:o}", "channel", channel, "entries", list);
	json_object_set_new(*out, "next_before",
			    has_more && last_id ? json_integer((json_int_t)last_id) : json_null());
	return 0;
}
