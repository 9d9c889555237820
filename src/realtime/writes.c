#include "realtime/writes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/metrics.h"
#include "net/server.h"
#include "proto/phx.h"
#include "realtime/realtime.h"
#include "realtime/realtime_int.h"
#include "activity/activity.h"
#include "store/query.h"

struct rt_writes_job {
	uv_work_t work;
	struct rt_writes_job *next; /* the session's queue */
	bool is_snapshot;
	bool is_auth; /* a channel authorization (rt_writes_authorize) */
	char *who_topic;
	rt_writes_auth_done auth_done;
	void (*auth_free)(void *);
	void *auth_ctx;
	struct rt_channel_access access;
	rt_writes_work_cb call_work; /* a call (rt_writes_call); ctx in auth_ctx */
	rt_writes_done_cb call_done;
	bool is_detached;           /* the session is gone: free when the pool is done */
	struct rt_worker *w;
	uint64_t conn_id;
	struct rt_store *store;
	char *join_ref, *ref, *topic;
	/* the requester (the channel's role and claims, copied: the job outlives
	 * neither, but a token refresh may replace the channel's meanwhile) */
	struct rt_auth who;
	char *who_role;
	json_t *who_claims;
	struct rt_query q;
	/* a write */
	struct rt_write wr;
	struct rt_activity *activity; /* a write is recorded there (may be NULL) */
	json_t *rows;       /* INSERT/UPSERT: [record]; UPDATE: record */
	json_t *base;
	char *key;
	char *fingerprint;
	struct rt_write_result res;
	/* a snapshot: its whole phx_reply is encoded on the pool thread */
	struct rt_read rd;
	uint64_t position;
	long long total;
	enum rt_phx_vsn vsn;
	struct rt_buf reply;
	/* results */
	int rc;
	json_t *out;
	struct rt_store_error err;
};

static void job_free(struct rt_writes_job *j)
{
	free(j->join_ref);
	free(j->ref);
	free(j->topic);
	free(j->who_role);
	free(j->who_topic);
	if (j->auth_ctx && j->auth_free)
		j->auth_free(j->auth_ctx);
	json_decref(j->who_claims);
	rt_query_deinit(&j->q);
	json_decref(j->rows);
	json_decref(j->base);
	free(j->key);
	free(j->fingerprint);
	json_decref(j->out);
	rt_write_result_deinit(&j->res);
	rt_buf_deinit(&j->reply);
	free(j);
}

void rt_writes_queue_deinit(struct rt_writes_queue *q)
{
	struct rt_writes_job *j = q->head;
	if (j) { /* on the pool now: freed when it returns */
		j->is_detached = true;
		j = j->next;
	}
	while (j) {
		struct rt_writes_job *next = j->next;
		job_free(j);
		j = next;
	}
	*q = (struct rt_writes_queue){0};
}

static char *dup_or_null(const char *s)
{
	return s ? rt_xstrdup(s) : NULL;
}

static void reply_error(struct rt_session *s, const char *join_ref, const char *ref,
			const char *topic, const char *code, const char *message)
{
	if (!ref)
		return;
	rt_session_reply(s, join_ref, ref, topic, "error",
			 json_pack("{s:s,s:s}", "reason", message, "code", code));
}

/* Appends s percent-encoded (everything but unreserved characters). */
static void pct_encode(struct rt_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			rt_buf_append_byte(b, ch);
		} else {
			rt_buf_append_byte(b, '%');
			rt_buf_append_byte(b, (uint8_t)hex[ch >> 4]);
			rt_buf_append_byte(b, (uint8_t)hex[ch & 15]);
		}
	}
}

/*
 * The filter that names the row of an UPDATE or DELETE: col=eq.value for
 * each member of key, as a query string. Returns 0 or -1 (message in err).
 */
static int key_query(const struct rt_store_table *t, const json_t *key, struct rt_buf *q,
		     char *err, size_t err_cap)
{
	if (!json_is_object(key) || !json_object_size(key)) {
		snprintf(err, err_cap, "key must be an object naming the row by its primary key");
		return -1;
	}
	size_t n_pk = 0;
	for (size_t i = 0; i < t->n_cols; i++)
		n_pk += t->cols[i].is_pk;
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)key, k, v) {
		const struct rt_store_column *col = rt_store_column(t, k);
		if (!col || !col->is_pk) {
			snprintf(err, err_cap, "key: \"%.64s\" is not a primary key column", k);
			return -1;
		}
		if (q->len)
			rt_buf_append_byte(q, '&');
		pct_encode(q, k, strlen(k));
		if (json_is_null(v)) {
			rt_buf_append_str(q, "=is.null");
			continue;
		}
		rt_buf_append_str(q, "=eq.");
		if (json_is_string(v)) {
			pct_encode(q, json_string_value(v), json_string_length(v));
		} else if (json_is_number(v) || json_is_boolean(v)) {
			char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
			pct_encode(q, txt, strlen(txt));
			free(txt);
		} else {
			snprintf(err, err_cap, "key values must be strings, numbers or booleans");
			return -1;
		}
	}
	if (json_object_size(key) != n_pk) {
		snprintf(err, err_cap, "key must name every primary key column");
		return -1;
	}
	return 0;
}

static void work_cb(uv_work_t *w)
{
	struct rt_writes_job *j = w->data;
	if (j->call_work) {
		j->call_work(j->auth_ctx);
		return;
	}
	if (j->is_auth) { /* one question each; an error is a denial */
		bool rb = false, rp = false, wb = false, wp = false;
		if (rt_store_topic_allowed(j->store, &j->who, "broadcast", false, &rb))
			rb = false;
		if (rt_store_topic_allowed(j->store, &j->who, "presence", false, &rp))
			rp = false;
		if ((rb || rp) && rt_store_topic_allowed(j->store, &j->who, "broadcast", true, &wb))
			wb = false;
		if ((rb || rp) && rt_store_topic_allowed(j->store, &j->who, "presence", true, &wp))
			wp = false;
		j->access = (struct rt_channel_access){rb || rp, wb, wp};
		return;
	}
	if (!j->is_snapshot) {
		j->rc = rt_store_write(j->store, &j->wr, &j->out, &j->err);
		/* the activity feed (docs/activity.md): what was written, by whom */
		if (!j->rc && j->res.outcome != RT_WRITE_CONFLICT && !j->res.is_replayed)
			rt_activity_write(j->activity, j->wr.table,
					  j->wr.kind == RT_WRITE_UPDATE   ? "UPDATE"
					  : j->wr.kind == RT_WRITE_DELETE ? "DELETE"
									  : "INSERT",
					  j->out, json_string_value(json_object_get(j->who_claims, "sub")));
		return;
	}
	j->rc = rt_store_read(j->store, &j->rd, &j->out, &j->total, &j->err);
	if (j->rc)
		return;
	bool is_too_big = j->total > (long long)json_array_size(j->out);
	if (!is_too_big) { /* the reply as it will leave, so the worker only queues it */
		char pos[24];
		snprintf(pos, sizeof pos, "%llu", (unsigned long long)j->position);
		json_t *p = json_pack("{s:s,s:{s:O,s:s}}", "status", "ok", "response", "rows",
				      j->out, "position", pos);
		rt_phx_encode_text_json(j->vsn, &j->reply, j->join_ref, j->ref, j->topic,
					"phx_reply", p);
		json_decref(p);
		is_too_big = j->reply.len > RT_SNAPSHOT_MAX_BYTES;
	}
	if (is_too_big) {
		j->rc = -1;
		snprintf(j->err.code, sizeof j->err.code, "RTS413");
		snprintf(j->err.message, sizeof j->err.message,
			 "the table has %lld rows (a reply of %zu bytes); a snapshot holds at most "
			 "%d rows and %u bytes",
			 j->total, j->reply.len, RT_STORE_MAX_ROWS, RT_SNAPSHOT_MAX_BYTES);
	}
}

static void reply_store_error(struct rt_session *s, const struct rt_writes_job *j)
{
	json_t *r = json_pack("{s:s,s:s,s:s?}", "reason", j->err.message, "code", j->err.code,
			      "details", *j->err.details ? j->err.details : NULL);
	rt_session_reply(s, j->join_ref, j->ref, j->topic, "error", r);
}

static void reply_write(struct rt_session *s, const struct rt_writes_job *j)
{
	const struct rt_write_result *res = &j->res;
	/* The row as it is now: with a base the store read it back; otherwise it
	 * is what the write returned (none after a delete). */
	json_t *record = res->current;
	if (!j->wr.base && j->wr.kind != RT_WRITE_DELETE)
		record = json_array_get(j->out, 0);
	char pos[24];
	snprintf(pos, sizeof pos, "%llu", (unsigned long long)res->position);
	json_t *r = json_pack("{s:s,s:O,s:o,s:s,s:b}", "outcome",
			      rt_conflict_outcome_name(res->outcome), "record",
			      record ? record : json_null(), "conflicts",
			      res->conflicts ? json_incref(res->conflicts) : json_array(), "position",
			      pos, "replayed", res->is_replayed);
	if (res->outcome == RT_WRITE_CONFLICT)
		json_object_set_new(r, "reason", json_string("conflict"));
	rt_session_reply(s, j->join_ref, j->ref, j->topic,
			 res->outcome == RT_WRITE_CONFLICT ? "error" : "ok", r);
}

static void after_cb(uv_work_t *w, int status);

/* Starts the head of the session's queue on the store pool; a head that
 * cannot start is answered and dropped. */
static void start_next(struct rt_session *s)
{
	struct rt_writes_queue *q = rt_session_writes(s);
	while (q->head) {
		struct rt_writes_job *j = q->head;
		int rc = uv_queue_work(rt_worker_loop(j->w), &j->work, work_cb, after_cb);
		if (!rc)
			return;
		reply_error(s, j->join_ref, j->ref, j->topic, "RTS503", uv_strerror(rc));
		q->head = j->next;
		q->n--;
		job_free(j);
	}
	q->tail = NULL;
}

static void after_cb(uv_work_t *w, int status)
{
	struct rt_writes_job *j = w->data;
	if (j->is_detached)
		goto out;
	struct rt_conn *c = rt_worker_find_conn(j->w, j->conn_id);
	struct rt_session *s =
		c && rt_conn_data_kind(c) == RT_CONN_SESSION ? rt_conn_data(c) : NULL;
	if (!s)
		goto out;
	struct rt_writes_queue *q = rt_session_writes(s);
	q->head = j->next; /* j was the head: one request of a session runs at a time */
	q->n--;
	if (j->call_done) {
		start_next(s);
		j->call_done(s, j->auth_ctx, status == UV_ECANCELED);
		goto out;
	}
	if (j->is_auth) {
		if (status == UV_ECANCELED)
			j->access = (struct rt_channel_access){false, false, false};
		start_next(s); /* first: the decision may queue more requests */
		void *ctx = j->auth_ctx;
		j->auth_ctx = NULL;
		j->auth_done(s, ctx, &j->access);
		goto out;
	}
	if (j->ref) { /* reply_error() is silent without a ref; the others need one */
		if (status == UV_ECANCELED)
			reply_error(s, j->join_ref, j->ref, j->topic, "RTS503",
				    "the request was cancelled");
		else if (j->rc)
			reply_store_error(s, j);
		else if (j->is_snapshot)
			rt_conn_send_ws(rt_session_conn(s), RT_WS_TEXT, j->reply.data, j->reply.len);
		else
			reply_write(s, j);
	}
	start_next(s);
out:
	job_free(j);
}

/* Queues j behind the session's earlier requests (it runs when they are
 * done). */
static void enqueue(struct rt_session *s, struct rt_writes_job *j)
{
	struct rt_writes_queue *q = rt_session_writes(s);
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->n++;
	if (q->head == j)
		start_next(s);
}

/* The table a request names ("schema", "table"), or NULL once the error is
 * answered (no store, no such table). */
static const struct rt_store_table *request_table(struct rt_session *s, struct rt_store *store,
						  const char *join_ref, const char *ref,
						  const char *topic, const json_t *payload)
{
	if (!store) {
		reply_error(s, join_ref, ref, topic, "RTS404", "this server runs without a store");
		return NULL;
	}
	const char *schema = json_string_value(json_object_get(payload, "schema"));
	const char *table = json_string_value(json_object_get(payload, "table"));
	const struct rt_store_table *t = table ? rt_store_table(store, schema, table) : NULL;
	if (!t)
		reply_error(s, join_ref, ref, topic, "PGRST205", "unknown table");
	return t;
}

/* A job for a request of s, or NULL (answered) when the session has too
 * many waiting. */
static struct rt_writes_job *job_new(struct rt_session *s, struct rt_store *store,
				     const struct rt_auth *who, const char *join_ref,
				     const char *ref, const char *topic)
{
	if (rt_session_writes(s)->n >= RT_WRITES_MAX_IN_FLIGHT) {
		RT_METRIC_ERROR(RATE_LIMITED);
		reply_error(s, join_ref, ref, topic, "RTS429", "too many store requests in flight");
		return NULL;
	}
	struct rt_writes_job *j = rt_xcalloc(1, sizeof *j);
	j->work.data = j;
	j->w = rt_conn_worker(rt_session_conn(s));
	j->conn_id = rt_conn_id(rt_session_conn(s));
	j->store = store;
	j->join_ref = dup_or_null(join_ref);
	j->ref = dup_or_null(ref);
	j->topic = rt_xstrdup(topic);
	j->vsn = rt_session_vsn(s);
	j->who_role = rt_xstrdup(who && who->role ? who->role : "");
	j->who_claims = who && who->claims ? json_deep_copy(who->claims) : NULL;
	j->who = (struct rt_auth){.role = j->who_role, .claims = j->who_claims};
	rt_buf_init(&j->reply);
	return j;
}

static int parse_kind(const char *type, enum rt_write_kind *kind)
{
	static const struct {
		const char *name;
		enum rt_write_kind kind;
	} kinds[] = {{"insert", RT_WRITE_INSERT},
		     {"update", RT_WRITE_UPDATE},
		     {"upsert", RT_WRITE_UPSERT},
		     {"delete", RT_WRITE_DELETE}};
	for (size_t i = 0; type && i < sizeof kinds / sizeof *kinds; i++) {
		if (!strcasecmp(type, kinds[i].name)) {
			*kind = kinds[i].kind;
			return 0;
		}
	}
	return -1;
}

void rt_writes_handle(struct rt_session *s, struct rt_store *store, const struct rt_auth *who,
		      const char *join_ref,
		      const char *ref, const char *topic, const json_t *payload)
{
	const struct rt_store_table *t = request_table(s, store, join_ref, ref, topic, payload);
	if (!t)
		return;
	const char *type = json_string_value(json_object_get(payload, "type"));
	const json_t *record = json_object_get(payload, "record");
	const json_t *key = json_object_get(payload, "key");
	const json_t *base = json_object_get(payload, "base");
	const json_t *strategy = json_object_get(payload, "strategy");
	const json_t *idem = json_object_get(payload, "idempotency_key");
	enum rt_write_kind kind;
	if (parse_kind(type, &kind)) {
		reply_error(s, join_ref, ref, topic, "RTS400",
			    "type must be insert, update, upsert or delete");
		return;
	}
	if (kind != RT_WRITE_DELETE && !json_is_object(record)) {
		reply_error(s, join_ref, ref, topic, "RTS400", "record must be an object");
		return;
	}
	if (base && !json_is_null(base) && !json_is_object(base)) {
		reply_error(s, join_ref, ref, topic, "RTS400", "base must be an object");
		return;
	}
	enum rt_write_strategy strat = RT_STRATEGY_REJECT;
	if (strategy && (!json_is_string(strategy) ||
			 rt_conflict_strategy_parse(json_string_value(strategy), &strat))) {
		reply_error(s, join_ref, ref, topic, "RTS400",
			    "strategy must be reject, merge or lww");
		return;
	}
	if (idem && !json_is_string(idem)) {
		reply_error(s, join_ref, ref, topic, "RTS400", "idempotency_key must be a string");
		return;
	}

	struct rt_writes_job *j = job_new(s, store, who, join_ref, ref, topic);
	if (!j)
		return;
	char err[160];
	struct rt_buf q;
	rt_buf_init(&q);
	int rc = 0;
	if (kind == RT_WRITE_UPDATE || kind == RT_WRITE_DELETE)
		rc = key_query(t, key, &q, err, sizeof err);
	if (!rc && rt_query_parse(q.data, q.len, &j->q, err, sizeof err))
		rc = -1;
	rt_buf_deinit(&q);
	if (rc) {
		reply_error(s, join_ref, ref, topic, "RTS400", err);
		job_free(j);
		return;
	}
	if (kind == RT_WRITE_INSERT || kind == RT_WRITE_UPSERT) {
		j->rows = json_array();
		json_array_append(j->rows, (json_t *)record);
	} else if (kind == RT_WRITE_UPDATE) {
		j->rows = json_incref((json_t *)record);
	}
	j->base = json_is_object(base) ? json_incref((json_t *)base) : NULL;
	if (idem) {
		j->key = rt_xstrdup(json_string_value(idem));
		/* The whole request but the key identifies it. */
		json_t *copy = json_deep_copy(payload);
		json_object_del(copy, "idempotency_key");
		j->fingerprint = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(copy);
	}
	j->wr = (struct rt_write){
		.kind = kind,
		.table = t,
		.rows = j->rows,
		.where = &j->q,
		.wants_rows = true,
		.base = j->base,
		.strategy = strat,
		.idempotency_key = j->key,
		.fingerprint = j->fingerprint,
		.result = &j->res,
		.who = &j->who,
	};
	j->activity = rt_session_activity(s);
	enqueue(s, j);
}

void rt_writes_authorize(struct rt_session *s, struct rt_store *store, const struct rt_auth *who,
			 const char *join_ref, const char *ref, const char *topic,
			 rt_writes_auth_done done, void (*ctx_free)(void *), void *ctx)
{
	struct rt_writes_job *j = job_new(s, store, who, join_ref, ref, topic);
	if (!j) {
		ctx_free(ctx);
		return;
	}
	j->is_auth = true;
	j->who_topic = rt_xstrdup(who->topic ? who->topic : "");
	j->who.topic = j->who_topic;
	j->auth_done = done;
	j->auth_free = ctx_free;
	j->auth_ctx = ctx;
	enqueue(s, j);
}

void rt_writes_call(struct rt_session *s, const char *join_ref, const char *ref,
		    const char *topic, rt_writes_work_cb work, rt_writes_done_cb done,
		    void (*ctx_free)(void *), void *ctx)
{
	struct rt_writes_job *j = job_new(s, NULL, NULL, join_ref, ref, topic);
	if (!j) {
		ctx_free(ctx);
		return;
	}
	j->call_work = work;
	j->call_done = done;
	j->auth_free = ctx_free;
	j->auth_ctx = ctx;
	enqueue(s, j);
}

void rt_writes_snapshot(struct rt_session *s, struct rt_store *store, const struct rt_auth *who,
			const char *join_ref,
			const char *ref, const char *topic, const json_t *payload)
{
	const struct rt_store_table *t = request_table(s, store, join_ref, ref, topic, payload);
	if (!t)
		return;
	struct rt_writes_job *j = job_new(s, store, who, join_ref, ref, topic);
	if (!j)
		return;
	/* every row, by primary key (a table without one: in the store's order) */
	struct rt_buf q;
	rt_buf_init(&q);
	for (size_t i = 0; i < t->n_cols; i++) {
		if (!t->cols[i].is_pk)
			continue;
		rt_buf_append_str(&q, q.len ? "," : "order=");
		pct_encode(&q, t->cols[i].name, strlen(t->cols[i].name));
		rt_buf_append_str(&q, ".asc");
	}
	char err[160];
	int rc = rt_query_parse(q.data, q.len, &j->q, err, sizeof err);
	rt_buf_deinit(&q);
	if (rc) {
		reply_error(s, join_ref, ref, topic, "RTS400", err);
		job_free(j);
		return;
	}
	j->is_snapshot = true;
	j->rd = (struct rt_read){
		.table = t,
		.query = &j->q,
		.wants_count = true,
		.position = &j->position,
		.who = &j->who,
	};
	enqueue(s, j);
}
