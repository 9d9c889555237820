/*
 * /notify/v1/…: the notifications' REST routes (docs/notifications.md). The
 * token is verified on the worker; the request runs on libuv's thread pool
 * (rt_notify_handle blocks on the database) and is answered by the worker
 * that owns the connection, or dropped when it has gone.
 */
#include "api/api_int.h"

#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "flags/flags.h"
#include "notify/notify.h"

struct notify_job {
	uv_work_t work;
	struct rt_worker *w;
	uint64_t conn_id;
	struct rt_notify *n;
	struct rt_jwt_claims claims;
	int method;
	char *path, *query, *body;
	size_t body_len;
	int status;
	json_t *out;
};

static void job_work(uv_work_t *w)
{
	struct notify_job *j = w->data;
	struct rt_notify_caller who = {.role = j->claims.role, .sub = j->claims.sub};
	j->status = rt_notify_handle(j->n, &who, j->method, j->path, j->query, j->body, j->body_len,
				     &j->out);
}

static void job_done(uv_work_t *w, int status)
{
	struct notify_job *j = w->data;
	struct rt_conn *c = rt_worker_find_conn(j->w, j->conn_id);
	if (c && status == UV_ECANCELED) {
		rt_api_respond_error(c, 503, "RTS503", "the request was cancelled");
	} else if (c) {
		char *txt = j->out ? json_dumps(j->out, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
		rt_conn_respond(c, j->status, txt ? "application/json; charset=utf-8" : NULL, txt,
				txt ? strlen(txt) : 0, NULL);
		free(txt);
	}
	json_decref(j->out);
	rt_jwt_claims_deinit(&j->claims);
	free(j->path);
	free(j->query);
	free(j->body);
	free(j);
}

void rt_api_notify(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		   const char *path)
{
	if (!rt->notify) {
		rt_api_respond_error(c, 404, "RTS404", "notifications are not enabled on this server");
		return;
	}
	char *token = rt_api_request_token(req);
	struct rt_jwt_claims claims;
	enum rt_jwt_result r = RT_JWT_MALFORMED;
	if (token)
		r = rt_jwt_verify(rt->cfg.jwt_secret, token, strlen(token), rt_wall_s(), &claims,
				  NULL);
	free(token);
	if (r != RT_JWT_OK) {
		RT_METRIC_ERROR(AUTH);
		rt_api_respond_error(c, 401, "RTS401", "a valid token is required");
		return;
	}
	if (rt->flags && (rt_realtime_features_off(rt_worker_data(rt_conn_worker(c)), claims.sub,
						   claims.claims, NULL, NULL) &
			  RT_FLAG_NOTIFICATIONS)) { /* docs/flags.md */
		rt_jwt_claims_deinit(&claims);
		rt_api_respond_error(c, 403, "RTS403", "notifications are switched off");
		return;
	}
	struct notify_job *j = rt_xcalloc(1, sizeof *j);
	j->work.data = j;
	j->w = rt_conn_worker(c);
	j->conn_id = rt_conn_id(c);
	j->n = rt->notify;
	j->claims = claims;
	j->method = req->method;
	j->path = rt_xstrdup(path);
	j->query = req->query ? rt_xstrdup(req->query) : NULL;
	j->body_len = req->body.len;
	j->body = rt_xstrndup(req->body.data ? req->body.data : "", req->body.len);
	if (uv_queue_work(rt_worker_loop(j->w), &j->work, job_work, job_done))
		job_done(&j->work, UV_ECANCELED);
}
