#include "api/rest.h"

#include "api/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "activity/activity.h"
#include "auth/jwt.h"
#include "auth/policy.h"
#include "store/query.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ratelimit.h"
#include "flags/flags.h"
#include "store/store.h"

static const char content_json[] = "application/json; charset=utf-8";
static const char single_type[] = "application/vnd.pgrst.object+json";

struct job {
	uv_work_t work;
	struct rt_worker *w;
	uint64_t conn_id;
	struct rt_store *store;
	struct rt_activity *activity; /* writes are recorded there (may be NULL) */
	/* the requester: the verified token's claims (row-level security) */
	struct rt_jwt_claims claims;
	struct rt_auth who;
	int method;
	const struct rt_store_table *table;
	struct rt_query q;
	json_t *body;
	bool wants_single, wants_count, wants_rows, is_upsert, is_ignore_dups, is_missing_default;
	/* conflict control and idempotency (docs/writes.md) */
	json_t *base;
	enum rt_write_strategy strategy;
	char *idempotency_key;
	struct rt_buf fingerprint;
	/* results */
	int rc;
	json_t *rows;
	long long total;
	struct rt_store_error err;
	struct rt_write_result res;
};

static void respond_error(struct rt_conn *c, int status, const char *code, const char *message,
			  const char *details)
{
	/* Built by hand from UTF-8-checked copies: the texts may quote the request. */
	char msg[600], det[600];
	snprintf(msg, sizeof msg, "%s", message);
	snprintf(det, sizeof det, "%s", details ? details : "");
	rt_utf8_truncate(msg);
	rt_utf8_truncate(det);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "{\"code\":");
	rt_buf_append_json_str(&b, code, strlen(code));
	rt_buf_append_str(&b, ",\"details\":");
	if (*det)
		rt_buf_append_json_str(&b, det, strlen(det));
	else
		rt_buf_append_str(&b, "null");
	rt_buf_append_str(&b, ",\"hint\":null,\"message\":");
	rt_buf_append_json_str(&b, msg, strlen(msg));
	rt_buf_append_byte(&b, '}');
	rt_conn_respond(c, status, content_json, b.data, b.len, NULL);
	rt_buf_deinit(&b);
}

/* True when the comma-separated Prefer header names pref (e.g. "count=exact"). */
static bool prefers(const struct rt_http_req *req, const char *pref)
{
	const char *h = rt_http_req_header(req, "prefer");
	if (!h)
		return false;
	size_t n = strlen(pref);
	for (const char *p = h; (p = strstr(p, pref)); p += n) {
		bool starts = p == h || p[-1] == ',' || p[-1] == ' ';
		bool ends = !p[n] || p[n] == ',' || p[n] == ' ' || p[n] == ';';
		if (starts && ends)
			return true;
	}
	return false;
}

static void job_free(struct job *j)
{
	rt_jwt_claims_deinit(&j->claims);
	rt_query_deinit(&j->q);
	json_decref(j->body);
	json_decref(j->rows);
	json_decref(j->base);
	free(j->idempotency_key);
	rt_buf_deinit(&j->fingerprint);
	rt_write_result_deinit(&j->res);
	free(j);
}

static void work_cb(uv_work_t *w)
{
	struct job *j = w->data;
	if (j->method == HTTP_GET || j->method == HTTP_HEAD) {
		struct rt_read r = {.table = j->table,
				    .query = &j->q,
				    .wants_count = j->wants_count,
				    .who = &j->who};
		j->rc = rt_store_read(j->store, &r, &j->rows, &j->total, &j->err);
		return;
	}
	struct rt_write wr = {
		.table = j->table,
		.where = &j->q,
		.rows = j->body,
		.wants_rows = true, /* the count of affected rows needs them too */
		.is_count_only = !j->wants_rows, /* return=minimal: the rows are not shown */
		.wants_single = j->wants_single,
		.is_ignore_duplicates = j->is_ignore_dups,
		.is_missing_default = j->is_missing_default,
		.base = j->base,
		.strategy = j->strategy,
		.idempotency_key = j->idempotency_key,
		.fingerprint = j->fingerprint.data,
		.result = &j->res,
		.who = &j->who,
	};
	switch (j->method) {
	case HTTP_POST:
		wr.kind = j->is_upsert ? RT_WRITE_UPSERT : RT_WRITE_INSERT;
		break;
	case HTTP_PATCH:
		wr.kind = RT_WRITE_UPDATE;
		break;
	default:
		wr.kind = RT_WRITE_DELETE;
	}
	j->rc = rt_store_write(j->store, &wr, &j->rows, &j->err);
	/* the activity feed (docs/activity.md): what was written, by whom */
	if (!j->rc && j->res.outcome != RT_WRITE_CONFLICT && !j->res.is_replayed &&
	    (!j->wants_single || json_array_size(j->rows) == 1))
		rt_activity_write(j->activity, j->table, j->method == HTTP_POST ? "INSERT"
							 : j->method == HTTP_PATCH ? "UPDATE"
										   : "DELETE",
				  j->rows, j->claims.sub);
}

/* Rtsync-Outcome, Rtsync-Conflicts, Rtsync-Position, Idempotency-Replayed. */
static void write_headers(struct rt_buf *h, const struct job *j)
{
	const struct rt_write_result *r = &j->res;
	if (j->method == HTTP_GET || j->method == HTTP_HEAD)
		return;
	if (j->base)
		rt_buf_printf(h, "Rtsync-Outcome: %s\r\n", rt_conflict_outcome_name(r->outcome));
	if (json_array_size(r->conflicts)) {
		rt_buf_append_str(h, "Rtsync-Conflicts: ");
		for (size_t i = 0; i < json_array_size(r->conflicts); i++)
			rt_buf_printf(h, "%s%s", i ? "," : "",
				      json_string_value(json_array_get(r->conflicts, i)));
		rt_buf_append_str(h, "\r\n");
	}
	if (r->position)
		rt_buf_printf(h, "Rtsync-Position: %llu\r\n", (unsigned long long)r->position);
	if (r->is_replayed)
		rt_buf_append_str(h, "Idempotency-Replayed: true\r\n");
}

/* 409 with the row as it is and the conflicting columns (docs/writes.md). */
static void respond_conflict(struct rt_conn *c, const struct job *j)
{
	struct rt_buf cols, headers;
	rt_buf_init(&cols);
	rt_buf_init(&headers);
	for (size_t i = 0; i < json_array_size(j->res.conflicts); i++)
		rt_buf_printf(&cols, "%s%s", i ? ", " : "",
			      json_string_value(json_array_get(j->res.conflicts, i)));
	json_t *body = json_pack(
		"{s:s,s:s?,s:n,s:s,s:O,s:O}", "code", "RTS409", "details",
		cols.len ? cols.data : NULL, "hint", "message",
		j->res.current ? "The row changed since the base was read"
			       : "The row no longer exists",
		"current", j->res.current ? j->res.current : json_null(), "conflicts",
		j->res.conflicts ? j->res.conflicts : json_null());
	char *txt = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
	write_headers(&headers, j);
	rt_conn_respond(c, 409, content_json, txt, strlen(txt), headers.data);
	free(txt);
	json_decref(body);
	rt_buf_deinit(&cols);
	rt_buf_deinit(&headers);
}

static void after_cb(uv_work_t *w, int status)
{
	struct job *j = w->data;
	struct rt_conn *c = rt_worker_find_conn(j->w, j->conn_id);
	if (!c)
		goto out;
	if (status == UV_ECANCELED) {
		respond_error(c, 503, "PGRST000", "the request was cancelled", NULL);
		goto out;
	}
	if (j->rc) {
		/* PostgREST: insufficient privilege is 401 for anon, 403 otherwise. */
		if (!strcmp(j->err.code, "42501"))
			j->err.status = !strcmp(j->who.role, "anon") ? 401 : 403;
		respond_error(c, j->err.status, j->err.code, j->err.message, j->err.details);
		goto out;
	}
	if (j->res.outcome == RT_WRITE_CONFLICT) {
		respond_conflict(c, j);
		goto out;
	}
	size_t n = json_array_size(j->rows);
	json_t *out = j->rows;
	if (j->wants_single) {
		if (n != 1) {
			char details[64];
			snprintf(details, sizeof details, "The result contains %zu rows", n);
			respond_error(c, 406, "PGRST116",
				      "JSON object requested, multiple (or no) rows returned", details);
			goto out;
		}
		out = json_array_get(j->rows, 0);
	}
	/* Browsers let scripts read Content-Range only when it is exposed. */
	static const char expose[] = "Access-Control-Expose-Headers: Content-Range, "
				     "Rtsync-Outcome, Rtsync-Conflicts, Rtsync-Position, "
				     "Idempotency-Replayed\r\n";
	char range[320];
	const char *ctype = j->wants_single ? single_type : content_json;
	int code;
	bool has_body = true;
	if (j->method == HTTP_GET || j->method == HTTP_HEAD) {
		long long first = j->q.offset > 0 ? j->q.offset : 0;
		char total[24] = "*";
		if (j->wants_count)
			snprintf(total, sizeof total, "%lld", j->total);
		if (n)
			snprintf(range, sizeof range, "Content-Range: %lld-%lld/%s\r\n%s", first,
				 first + (long long)n - 1, total, expose);
		else
			snprintf(range, sizeof range, "Content-Range: */%s\r\n%s", total, expose);
		code = 200;
		if (j->wants_count && first > j->total) {
			char details[128];
			snprintf(details, sizeof details,
				 "An offset of %lld was requested, but there are only %lld rows.", first,
				 j->total);
			respond_error(c, 416, "PGRST103", "Requested range not satisfiable", details);
			goto out;
		}
		if (j->wants_count && (long long)n < j->total)
			code = 206; /* a partial page, as PostgREST answers */
		has_body = j->method == HTTP_GET;
	} else {
		snprintf(range, sizeof range, "Content-Range: */%zu\r\n%s", n, expose);
		code = j->method == HTTP_POST ? 201 : j->wants_rows ? 200 : 204;
		has_body = j->wants_rows;
		if (j->method == HTTP_POST && !j->wants_rows)
			code = 201;
	}
	struct rt_buf headers;
	rt_buf_init(&headers);
	rt_buf_append_str(&headers, range);
	write_headers(&headers, j);
	if (!has_body) {
		rt_conn_respond(c, code, NULL, NULL, 0, headers.data);
	} else {
		char *txt = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
		rt_conn_respond(c, code, ctype, txt, strlen(txt), headers.data);
		free(txt);
	}
	rt_buf_deinit(&headers);
out:
	job_free(j);
}

/* Verifies the request's token (Authorization: Bearer, else apikey) into
 * *claims; false after answering 401. */
static bool authorize(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		      struct rt_jwt_claims *claims)
{
	char *token = rt_api_request_token(req);
	if (!token) {
		respond_error(c, 401, "PGRST301", "No API key found in request", NULL);
		return false;
	}
	int64_t ago = 0;
	enum rt_jwt_result r =
		rt_keyring_verify(rt->keys, token, strlen(token), rt_wall_s(), claims, &ago);
	free(token);
	if (r != RT_JWT_OK) {
		char msg[256];
		respond_error(c, 401, r == RT_JWT_EXPIRED ? "PGRST303" : "PGRST301",
			      r == RT_JWT_EXPIRED ? "JWT expired" : rt_jwt_message(r, ago, msg, sizeof msg),
			      NULL);
		return false;
	}
	return true;
}

bool rt_api_within_rate(struct rt_conn *c, struct rt_realtime *rt,
			const struct rt_jwt_claims *claims)
{
	uint64_t user = rt_quota_user(claims->sub, claims->role, rt_conn_peer(c));
	if (rt_quota_rest_allow(rt->cfg.quota, user, rt_mono_ms() / 1000))
		return true;
	RT_METRIC_LIMIT(REST);
	char details[96];
	snprintf(details, sizeof details, "At most %u requests per second per user",
		 (unsigned)rt_quota_config(rt->cfg.quota)->rest_per_s);
	json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "code", "RT429", "details", details, "hint",
			      "Retry after the number of seconds in Retry-After", "message",
			      "Too many requests per second");
	char *body = json_dumps(o, JSON_COMPACT);
	rt_conn_respond(c, 429, content_json, body, strlen(body), "Retry-After: 1\r\n");
	free(body);
	json_decref(o);
	return false;
}

/*
 * Reads Rtsync-Base, Rtsync-Strategy and Idempotency-Key, and the request's
 * fingerprint for the key. Returns 0, or -1 after answering 400.
 */
static int parse_control(struct rt_conn *c, struct rt_http_req *req, struct job *j,
			 const char *path)
{
	const char *base = rt_http_req_header(req, "rtsync-base");
	const char *strategy = rt_http_req_header(req, "rtsync-strategy");
	const char *key = rt_http_req_header(req, "idempotency-key");
	if (base) {
		j->base = json_loads(base, 0, NULL);
		if (!json_is_object(j->base)) {
			respond_error(c, 400, "RTS400", "Rtsync-Base must be a JSON object", NULL);
			return -1;
		}
	}
	if (strategy && rt_conflict_strategy_parse(strategy, &j->strategy)) {
		respond_error(c, 400, "RTS400",
			      "Rtsync-Strategy must be one of reject, merge, lww", strategy);
		return -1;
	}
	if (!key)
		return 0;
	j->idempotency_key = rt_xstrdup(key);
	/* Everything that shapes the write or its answer. */
	const char *accept = rt_http_req_header(req, "accept");
	const char *prefer = rt_http_req_header(req, "prefer");
	rt_buf_init(&j->fingerprint);
	rt_buf_printf(&j->fingerprint, "%d %s?%s\n%s\n%s\n%s\n%s\n", req->method, path,
		      req->query ? req->query : "", accept ? accept : "", prefer ? prefer : "",
		      base ? base : "", strategy ? strategy : "");
	rt_buf_append(&j->fingerprint, req->body.data ? req->body.data : "", req->body.len);
	/* A key replays only for the requester that used it: the recorded rows
	 * passed that requester's policies, not another's. */
	rt_buf_printf(&j->fingerprint, "\n%s\n%s", j->who.role,
		      j->claims.sub ? j->claims.sub : "");
	return 0;
}

void rt_rest_handle(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		    const char *rest)
{
	if (!rt->store) {
		respond_error(c, 404, "PGRST205", "this server runs without a store", NULL);
		return;
	}
	int m = req->method;
	if (m != HTTP_GET && m != HTTP_HEAD && m != HTTP_POST && m != HTTP_PATCH &&
	    m != HTTP_DELETE) {
		respond_error(c, 405, "PGRST117", "Unsupported HTTP method", NULL);
		return;
	}
	struct rt_jwt_claims claims;
	if (!authorize(c, req, rt, &claims))
		return;
	if (!rt_api_within_rate(c, rt, &claims)) {
		rt_jwt_claims_deinit(&claims);
		return;
	}
	char *name = rt_http_pct_decode(rest, strlen(rest), false);
	const struct rt_store_table *t = name ? rt_store_table(rt->store, NULL, name) : NULL;
	if (!t) {
		char msg[400];
		snprintf(msg, sizeof msg, "Could not find the table 'public.%s' in the schema cache",
			 name ? name : rest);
		respond_error(c, 404, "PGRST205", msg, NULL);
		free(name);
		rt_jwt_claims_deinit(&claims);
		return;
	}
	free(name);
	if (m != HTTP_GET && m != HTTP_HEAD && rt->flags &&
	    (rt_realtime_features_off(rt_worker_data(rt_conn_worker(c)), claims.sub,
				      claims.claims, NULL, t->name) &
	     RT_FLAG_WRITES)) { /* switched off by a feature flag (docs/flags.md) */
		respond_error(c, 403, "RTS403", "writes are switched off for this table", NULL);
		rt_jwt_claims_deinit(&claims);
		return;
	}

	struct job *j = rt_xcalloc(1, sizeof *j);
	j->work.data = j;
	j->w = rt_conn_worker(c);
	j->conn_id = rt_conn_id(c);
	j->store = rt->store;
	j->activity = rt->activity;
	j->claims = claims; /* the job owns them now */
	j->who = (struct rt_auth){.role = j->claims.role, .claims = j->claims.claims};
	j->method = m;
	j->table = t;
	char err[512];
	if (rt_query_parse(req->query, req->query ? strlen(req->query) : 0, &j->q, err,
				sizeof err)) {
		respond_error(c, 400, "PGRST100", err, NULL);
		goto err;
	}
	const char *accept = rt_http_req_header(req, "accept");
	j->wants_single = accept && strstr(accept, single_type);
	j->wants_count = prefers(req, "count=exact") || prefers(req, "count=planned") ||
			 prefers(req, "count=estimated");
	j->wants_rows = prefers(req, "return=representation");
	j->is_upsert = prefers(req, "resolution=merge-duplicates") ||
		       prefers(req, "resolution=ignore-duplicates");
	j->is_ignore_dups = prefers(req, "resolution=ignore-duplicates");
	j->is_missing_default = prefers(req, "missing=default");

	/* A Range header (rows a-b) limits a read like offset and limit do. */
	const char *range = rt_http_req_header(req, "range");
	long long a, b;
	if (range && (m == HTTP_GET || m == HTTP_HEAD) && sscanf(range, "%lld-%lld", &a, &b) == 2 &&
	    a >= 0 && b >= a) {
		j->q.offset = a;
		j->q.limit = b - a < RT_STORE_MAX_ROWS ? b - a + 1 : RT_STORE_MAX_ROWS;
	}
	if (m == HTTP_POST || m == HTTP_PATCH) {
		j->body = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, NULL);
		if (m == HTTP_POST && json_is_object(j->body)) {
			json_t *arr = json_array();
			json_array_append_new(arr, j->body);
			j->body = arr;
		}
		bool ok = m == HTTP_POST ? json_is_array(j->body) : json_is_object(j->body);
		if (!ok) {
			respond_error(c, 400, "PGRST102", "Empty or invalid json", NULL);
			goto err;
		}
	}
	if (m != HTTP_GET && m != HTTP_HEAD && parse_control(c, req, j, rest))
		goto err;
	int rc = uv_queue_work(rt_worker_loop(j->w), &j->work, work_cb, after_cb);
	if (rc) {
		respond_error(c, 503, "PGRST000", uv_strerror(rc), NULL);
		goto err;
	}
	return;
err:
	job_free(j);
}
