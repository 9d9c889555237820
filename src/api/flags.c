/*
 * /flags/v1[/<name>]: managing the feature flags (docs/flags.md). Only the
 * service role may read or edit them (no token or a bad one: 401, another
 * role: 403). The token is verified on the worker; an edit (validated,
 * written to the flags file, made current) runs on libuv's thread pool and
 * is answered by the worker that owns the connection, or dropped when the
 * connection has gone.
 *
 *   GET    /flags/v1          the whole document {"flags": {...}}
 *   PUT    /flags/v1          replaces the whole document
 *   GET    /flags/v1/<name>   one flag's definition (404 without it)
 *   PUT    /flags/v1/<name>   creates or replaces one flag
 *   DELETE /flags/v1/<name>   removes one flag (204; 404 without it)
 */
#include "api/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/metrics.h"
#include "flags/flags.h"

struct flags_job {
	uv_work_t work;
	struct rt_worker *w;
	uint64_t conn_id;
	struct rt_flags *flags;
	int method;
	char *name; /* NULL: the whole document */
	json_t *body;
	int status;
	json_t *out;
	char err[512];
};

static void job_work(uv_work_t *w)
{
	struct flags_job *j = w->data;
	int rc;
	if (j->method == HTTP_DELETE)
		rc = rt_flags_delete(j->flags, j->name, j->err, sizeof j->err);
	else if (j->name)
		rc = rt_flags_put(j->flags, j->name, j->body, j->err, sizeof j->err);
	else
		rc = rt_flags_replace(j->flags, j->body, j->err, sizeof j->err);
	j->status = rc == 0 ? (j->method == HTTP_DELETE ? 204 : 200)
		    : rc == RT_ENOTFOUND ? 404
		    : rc == RT_EINVAL    ? 400
					 : 500;
	if (rc) {
		j->out = json_pack("{s:s,s:n,s:n,s:s}", "code",
				   j->status == 404   ? "RTS404"
				   : j->status == 400 ? "RTS400"
						      : "RTS500",
				   "details", "hint", "message", j->err);
		return;
	}
	if (j->method == HTTP_DELETE)
		return;
	struct rt_flagset *fs = rt_flags_current(j->flags);
	json_t *doc = rt_flagset_doc(fs);
	rt_flagset_unref(fs);
	j->out = j->name ? json_incref(json_object_get(json_object_get(doc, "flags"), j->name))
			 : json_incref(doc);
	json_decref(doc);
}

/* Every worker takes the new set now rather than at its next tick. */
static void wake_workers(struct rt_worker *w)
{
	struct rt_server *srv = rt_worker_server(w);
	for (unsigned i = 0; i < rt_server_n_workers(srv); i++)
		rt_worker_wake(rt_server_worker(srv, i));
}

static void job_done(uv_work_t *w, int status)
{
	struct flags_job *j = w->data;
	if (status != UV_ECANCELED && j->status < 300)
		wake_workers(j->w);
	struct rt_conn *c = rt_worker_find_conn(j->w, j->conn_id);
	if (c && status == UV_ECANCELED) {
		rt_api_respond_error(c, 503, "RTS503", "the request was cancelled");
	} else if (c) {
		char *txt = j->out ? json_dumps(j->out, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		rt_conn_respond(c, j->status, txt ? "application/json; charset=utf-8" : NULL, txt,
				txt ? strlen(txt) : 0, NULL);
		free(txt);
	}
	json_decref(j->out);
	json_decref(j->body);
	free(j->name);
	free(j);
}

static void respond_value(struct rt_conn *c, const json_t *v)
{
	char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	rt_conn_respond(c, 200, "application/json; charset=utf-8", txt, strlen(txt), NULL);
	free(txt);
}

void rt_api_flags(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		  const char *path)
{
	if (!rt->flags) {
		rt_api_respond_error(c, 404, "RTS404", "feature flags are not enabled on this server");
		return;
	}
	char *token = rt_api_request_token(req);
	struct rt_jwt_claims claims;
	enum rt_jwt_result r = RT_JWT_MALFORMED;
	if (token)
		r = rt_keyring_verify(rt->keys, token, strlen(token), rt_wall_s(), &claims, NULL);
	free(token);
	if (r != RT_JWT_OK) {
		RT_METRIC_ERROR(AUTH);
		rt_api_respond_error(c, 401, "RTS401", "a valid service_role token is required");
		return;
	}
	bool is_service = !strcmp(claims.role, "service_role");
	rt_jwt_claims_deinit(&claims);
	if (!is_service) {
		rt_api_respond_error(c, 403, "RTS403", "only the service role manages feature flags");
		return;
	}
	char *name = *path ? rt_http_pct_decode(path, strlen(path), false) : NULL;
	if (*path && (!name || !*name || strchr(name, '/'))) {
		rt_api_respond_error(c, 404, "RTS404", "no such route");
		free(name);
		return;
	}
	int m = req->method;
	if (m == HTTP_GET || m == HTTP_HEAD) {
		struct rt_flagset *fs = rt_flags_current(rt->flags);
		json_t *doc = rt_flagset_doc(fs);
		rt_flagset_unref(fs);
		const json_t *v = name ? json_object_get(json_object_get(doc, "flags"), name) : doc;
		if (v)
			respond_value(c, v);
		else
			rt_api_respond_error(c, 404, "RTS404", "no flag by that name");
		json_decref(doc);
		free(name);
		return;
	}
	if (m != HTTP_PUT && !(m == HTTP_DELETE && name)) {
		rt_api_respond_error(c, 405, "RTS405",
				     name ? "GET, PUT or DELETE a flag" : "GET or PUT the flags");
		free(name);
		return;
	}
	json_t *body = NULL;
	if (m == HTTP_PUT) {
		if (req->body.len > RT_FLAGS_MAX_DOC) {
			rt_api_respond_error(c, 413, "RTS413", "the flags document is over 1 MiB");
			free(name);
			return;
		}
		json_error_t je;
		body = json_loadb(req->body.data ? req->body.data : "", req->body.len,
				  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
		if (!body) {
			char msg[256];
			snprintf(msg, sizeof msg, "the body is not JSON: %s", je.text);
			rt_api_respond_error(c, 400, "RTS400", msg);
			free(name);
			return;
		}
	}
	struct flags_job *j = rt_xcalloc(1, sizeof *j);
	j->work.data = j;
	j->w = rt_conn_worker(c);
	j->conn_id = rt_conn_id(c);
	j->flags = rt->flags;
	j->method = m;
	j->name = name;
	j->body = body;
	if (uv_queue_work(rt_worker_loop(j->w), &j->work, job_work, job_done))
		job_done(&j->work, UV_ECANCELED);
}
