#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "api/rest.h"
#include "activity/activity.h"
#include "cluster/cluster.h"
#include "collab/collab.h"
#include "locks/service.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "flags/flags.h"
#include "web/web.h"

static uint64_t start_ms;

void rt_api_mark_start(void)
{
	start_ms = rt_mono_ms();
}

static const char content_json[] = "application/json";

static void respond_json(struct rt_conn *c, int status, const char *body)
{
	rt_conn_respond(c, status, content_json, body, strlen(body), NULL);
}

/* Responds {"<field>": "<text>"} with text escaped. */
static void respond_msg(struct rt_conn *c, int status, const char *field, const char *text)
{
	json_t *o = json_pack("{s:s}", field, text);
	char *body = json_dumps(o, JSON_COMPACT);
	respond_json(c, status, body);
	free(body);
	json_decref(o);
}

static struct rt_realtime *app_of(struct rt_conn *c)
{
	return rt_server_app(rt_worker_server(rt_conn_worker(c)));
}

static struct rt_realtime_worker *rw_of(struct rt_conn *c)
{
	return rt_worker_data(rt_conn_worker(c));
}

/* 200 whenever the node serves its own clients; in a cluster, "degraded"
 * while Redis is unreachable (docs/cluster.md: why it stays 200). */
static void health(struct rt_conn *c)
{
	struct rt_cluster *cl = app_of(c)->cluster;
	if (!cl) {
		respond_json(c, 200, "{\"status\":\"ok\"}");
		return;
	}
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_printf(&b, "{\"status\":\"%s\",\"cluster\":", rt_cluster_is_up(cl) ? "ok" : "degraded");
	rt_cluster_health(cl, &b);
	rt_buf_append_byte(&b, '}');
	rt_conn_respond(c, 200, content_json, b.data, b.len, NULL);
	rt_buf_deinit(&b);
}

void rt_api_respond_error(struct rt_conn *c, int status, const char *code, const char *message)
{
	json_t *o = json_pack("{s:s,s:n,s:n,s:s}", "code", code, "details", "hint", "message",
			      message);
	char *body = json_dumps(o, JSON_COMPACT);
	rt_conn_respond(c, status, "application/json; charset=utf-8", body, strlen(body), NULL);
	free(body);
	json_decref(o);
}

/* ---- WebSocket connect ---- */

static void connect_ws(struct rt_conn *c, struct rt_http_req *req)
{
	if (!req->is_upgrade) {
		respond_msg(c, 426, "error", "Upgrade Required: this endpoint speaks WebSocket");
		return;
	}
	char *vsn = rt_http_query_get(req->query, "vsn");
	enum rt_phx_vsn v;
	if (!vsn || !strncmp(vsn, "1.0.", 4))
		v = RT_PHX_V1;
	else if (!strncmp(vsn, "2.0.", 4))
		v = RT_PHX_V2;
	else
		v = 0;
	if (v && vsn && strspn(vsn + 4, "0123456789") != strlen(vsn + 4))
		v = 0;
	free(vsn);
	if (!v) {
		RT_METRIC_ERROR(HTTP_BAD_REQUEST);
		rt_conn_respond(c, 403, NULL, NULL, 0, NULL);
		return;
	}

	const char *hdr = rt_http_req_header(req, "x-api-key");
	char *token = hdr ? rt_xstrdup(hdr) : rt_http_query_get(req->query, "apikey");
	if (!token || !*token) {
		RT_METRIC_ERROR(AUTH);
		respond_msg(c, 401, "error", "API key is missing");
		free(token);
		return;
	}
	struct rt_jwt_claims claims;
	int64_t ago = 0;
	enum rt_jwt_result r = rt_realtime_verify(rw_of(c), token, strlen(token), &claims, &ago);
	if (r != RT_JWT_OK) {
		char msg[256];
		RT_METRIC_ERROR(AUTH);
		rt_info("conn %s: connect refused: %s", rt_conn_peer(c),
			rt_jwt_message(r, ago, msg, sizeof msg));
		respond_msg(c, 401, "error",
			    r == RT_JWT_EXPIRED ? "Token has expired" : rt_jwt_message(r, ago, msg, sizeof msg));
		free(token);
		return;
	}
	struct rt_quota *quota = app_of(c)->cfg.quota;
	struct rt_quota_conn qc;
	enum rt_quota_refusal qr =
		rt_quota_conn_open(quota, rt_quota_user(claims.sub, claims.role, rt_conn_peer(c)), &qc);
	if (qr != RT_QUOTA_OK) { /* Supabase's answer to both (docs/limits.md) */
		if (qr == RT_QUOTA_CONNECTIONS)
			RT_METRIC_LIMIT(CONNECTIONS);
		else
			RT_METRIC_LIMIT(CONNECTIONS_PER_USER);
		rt_info("conn %s: connect refused: %s", rt_conn_peer(c),
			qr == RT_QUOTA_CONNECTIONS ? "max connections" : "max connections per user");
		respond_msg(c, 429, "error", "Too many connected users");
		rt_jwt_claims_deinit(&claims);
		free(token);
		return;
	}
	if (rt_conn_upgrade(c, req) != 0) {
		rt_quota_conn_close(quota, &qc);
		rt_jwt_claims_deinit(&claims);
		free(token);
		return;
	}
	rt_debug("conn %s: websocket open (vsn %d.0.0, role %s)", rt_conn_peer(c), (int)v,
		 claims.role);
	struct rt_session *s = rt_session_new(rw_of(c), c, v, token, &claims);
	*rt_session_quota(s) = qc;
	rt_conn_set_data(c, s, RT_CONN_SESSION);
	free(token);
}

/* ---- broadcast API ---- */

/* The caller's claims from Authorization: Bearer, else the apikey header or
 * query parameter. Returns false after answering 401. */
char *rt_api_request_token(const struct rt_http_req *req)
{
	const char *auth = rt_http_req_header(req, "authorization");
	if (auth && !strncasecmp(auth, "Bearer ", 7))
		return rt_xstrdup(auth + 7);
	if (rt_http_req_header(req, "apikey"))
		return rt_xstrdup(rt_http_req_header(req, "apikey"));
	return rt_http_query_get(req->query, "apikey");
}

static bool http_auth(struct rt_conn *c, struct rt_http_req *req, struct rt_jwt_claims *claims)
{
	char *token = rt_api_request_token(req);
	enum rt_jwt_result r = RT_JWT_MALFORMED;
	if (token)
		r = rt_keyring_verify(app_of(c)->keys, token, strlen(token), rt_wall_s(), claims,
				      NULL);
	free(token);
	if (r != RT_JWT_OK) {
		RT_METRIC_ERROR(AUTH);
		respond_json(c, 401, "{\"message\":\"Unauthorized\"}");
		return false;
	}
	return true;
}

/* Whether the request's claims may send broadcast on a private topic: the
 * policies on realtime.messages (INSERT, extension 'broadcast'), else the
 * configured private roles, as on the socket. */
static bool may_send_private(struct rt_realtime *rt, const struct rt_jwt_claims *claims,
			     const char *topic)
{
	struct rt_auth who = {.role = claims->role, .claims = claims->claims, .topic = topic};
	struct rt_channel_access access;
	if (rt_realtime_authorize(rt, &who, true, &access) == 1) {
		/* rt_store_topic_allowed blocks on the database: not on a worker */
		rt_warn("broadcast to private topic %s: a policy on realtime.messages is outside the "
			"compiled subset; HTTP broadcast denied", topic ? topic : "");
		return false;
	}
	return access.may_send;
}

static void add_error(json_t *errors, size_t idx, const char *field, const char *msg)
{
	char k[32];
	snprintf(k, sizeof k, "%zu", idx);
	json_t *e = json_object_get(errors, k);
	if (!e) {
		e = json_object();
		json_object_set_new(errors, k, e);
	}
	json_object_set_new(e, field, json_pack("[s]", msg));
}

static void broadcast_batch(struct rt_conn *c, struct rt_http_req *req)
{
	struct rt_realtime *rt = app_of(c);
	struct rt_jwt_claims claims;
	if (!http_auth(c, req, &claims))
		return;
	json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, NULL);
	const json_t *msgs = json_object_get(body, "messages");
	if (!json_is_array(msgs)) {
		respond_json(c, 422, "{\"errors\":{\"messages\":[\"can't be blank\"]}}");
		goto out;
	}
	if (json_array_size(msgs) > RT_API_MAX_BATCH) {
		respond_json(c, 429, "{\"message\":\"Too many messages to broadcast, please "
				     "reduce the batch size\"}");
		goto out;
	}
	/* Validate everything first: a batch is all or nothing. Each payload is
	 * serialized once, here, and published from that text. */
	json_t *errors = json_object();
	char **texts = rt_xcalloc(json_array_size(msgs) + 1, sizeof *texts);
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m) {
		const json_t *topic = json_object_get(m, "topic");
		const json_t *event = json_object_get(m, "event");
		const json_t *payload = json_object_get(m, "payload");
		if (!json_is_string(topic) || !json_string_length(topic))
			add_error(errors, i, "topic", "can't be blank");
		if (!json_is_string(event) || !json_string_length(event))
			add_error(errors, i, "event", "can't be blank");
		if (!json_is_object(payload)) {
			add_error(errors, i, "payload", "can't be blank");
		} else {
			texts[i] = json_dumps(payload, JSON_COMPACT);
			if (strlen(texts[i]) > rt->cfg.max_payload_bytes) {
				RT_METRIC_LIMIT(PAYLOAD);
				add_error(errors, i, "payload", "Payload size exceeds tenant limit");
			}
		}
	}
	if (json_object_size(errors)) {
		/* {"errors":{"messages":[{…per message…}, …]}} in message order */
		json_t *list = json_array();
		for (i = 0; i < json_array_size(msgs); i++) {
			char k[32];
			snprintf(k, sizeof k, "%zu", i);
			json_t *e = json_object_get(errors, k);
			json_array_append(list, e ? e : json_object());
		}
		json_t *out = json_pack("{s:{s:o}}", "errors", "messages", list);
		char *txt = json_dumps(out, JSON_COMPACT);
		respond_json(c, 422, txt);
		free(txt);
		json_decref(out);
		json_decref(errors);
		goto out_texts;
	}
	json_decref(errors);
	json_array_foreach(msgs, i, m) {
		bool is_private = json_is_true(json_object_get(m, "private"));
		if (is_private &&
		    !may_send_private(rt, &claims, json_string_value(json_object_get(m, "topic"))))
			continue; /* dropped without telling, as Supabase does */
		const char *id = json_string_value(json_object_get(m, "id"));
		rt_realtime_publish(rw_of(c), json_string_value(json_object_get(m, "topic")),
				    is_private, json_string_value(json_object_get(m, "event")), false,
				    RT_PHX_ENC_JSON, texts[i], strlen(texts[i]), id);
	}
	rt_conn_respond(c, 202, NULL, NULL, 0, NULL);
out_texts:
	for (i = 0; i < json_array_size(msgs); i++)
		free(texts[i]);
	free(texts);
out:
	json_decref(body);
	rt_jwt_claims_deinit(&claims);
}

/* POST /api/broadcast/:topic/events/:event with the raw payload as body. */
static void broadcast_single(struct rt_conn *c, struct rt_http_req *req, const char *rest)
{
	struct rt_realtime *rt = app_of(c);
	const char *mid = strstr(rest, "/events/");
	if (!mid || mid == rest || !mid[8] || strchr(mid + 8, '/')) {
		respond_json(c, 404, "{\"message\":\"Not Found\"}");
		return;
	}
	char *topic = rt_http_pct_decode(rest, (size_t)(mid - rest), false);
	char *event = rt_http_pct_decode(mid + 8, strlen(mid + 8), false);
	struct rt_jwt_claims claims = {0};
	if (!topic || !event || !*topic || !*event) {
		respond_json(c, 422, "{\"message\":\"topic and event are required\"}");
		goto out;
	}
	if (!http_auth(c, req, &claims))
		goto out;
	const char *ct = rt_http_req_header(req, "content-type");
	enum rt_phx_encoding enc = RT_PHX_ENC_JSON;
	if (ct && !strncasecmp(ct, "application/octet-stream", 24)) {
		enc = RT_PHX_ENC_BINARY;
	} else if (ct && strncasecmp(ct, "application/json", 16)) {
		respond_json(c, 415, "{\"error\":\"Unsupported Media Type. Use application/json or "
				     "application/octet-stream\"}");
		goto out;
	}
	const char *data = req->body.data ? req->body.data : "";
	if (enc == RT_PHX_ENC_JSON) {
		json_t *v = json_loadb(data, req->body.len, JSON_DECODE_ANY, NULL);
		bool ok = v != NULL;
		json_decref(v);
		if (!ok) {
			respond_json(c, 422, "{\"message\":\"body is not valid JSON\"}");
			goto out;
		}
	}
	if (req->body.len > rt->cfg.max_payload_bytes) {
		RT_METRIC_LIMIT(PAYLOAD);
		respond_json(c, 422, "{\"message\":\"Payload size exceeds tenant limit\"}");
		goto out;
	}
	char *priv = rt_http_query_get(req->query, "private");
	bool is_private = priv && !strcasecmp(priv, "true");
	free(priv);
	if (is_private && !may_send_private(rt, &claims, topic)) {
		respond_json(c, 403, "{\"message\":\"Unauthorized\"}");
		goto out;
	}
	if (rt_realtime_publish(rw_of(c), topic, is_private, event, true, enc, data, req->body.len,
				NULL)) {
		respond_json(c, 422, "{\"message\":\"topic and event must be at most 255 bytes\"}");
		goto out;
	}
	rt_conn_respond(c, 202, NULL, NULL, 0, NULL);
out:
	rt_jwt_claims_deinit(&claims);
	free(topic);
	free(event);
}

/* ---- routing ---- */

static const char cors_headers[] =
	"Access-Control-Allow-Methods: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
	"Access-Control-Allow-Headers: authorization, apikey, content-type, x-client-info, "
	"x-api-key, prefer, range, accept-profile, content-profile\r\n"
	"Access-Control-Expose-Headers: Content-Range\r\n"
	"Access-Control-Max-Age: 86400\r\n";

static const char *strip_prefix(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(path, prefix, n) ? NULL : path + n;
}

static void on_request(struct rt_conn *c, struct rt_http_req *req)
{
	const char *path = req->path;
	const char *api = strip_prefix(path, "/realtime/v1/api/");
	if (!api)
		api = strip_prefix(path, "/api/");

	if (!strcmp(path, "/realtime/v1/websocket") || !strcmp(path, "/socket/websocket")) {
		connect_ws(c, req);
	} else if (!strncmp(path, "/collab/v1/", 11) && app_of(c)->collab) {
		char *token = req->is_upgrade ? rt_http_query_get(req->query, "apikey")
					      : rt_api_request_token(req);
		rt_collab_request(app_of(c)->collab, rw_of(c), c, req, path + 11, token);
		free(token);
	} else if (req->method == HTTP_OPTIONS) {
		rt_conn_respond(c, 204, NULL, NULL, 0, cors_headers);
	} else if (!strncmp(path, "/rest/v1/", 9) && path[9]) {
		rt_rest_handle(c, req, app_of(c), path + 9);
	} else if (!strcmp(path, "/flags/v1") || !strncmp(path, "/flags/v1/", 10)) {
		rt_api_flags(c, req, app_of(c), path[9] ? path + 10 : "");
	} else if (!strncmp(path, "/notify/v1/", 11) && path[11]) {
		rt_api_notify(c, req, app_of(c), path + 11);
	} else if (!strncmp(path, "/locks/v1/", 10) && path[10] && app_of(c)->locks) {
		rt_api_locks(c, req, app_of(c), path + 10);
	} else if (!strncmp(path, "/activity/v1/", 13) && path[13] && app_of(c)->activity) {
		rt_api_activity(c, req, app_of(c), path + 13);
	} else if (!strcmp(path, "/healthz")) {
		health(c);
	} else if (!strcmp(path, "/metrics") && req->method == HTTP_GET) {
		struct rt_buf b;
		rt_buf_init(&b);
		rt_metrics_render(&b, (double)(rt_mono_ms() - start_ms) / 1000.0);
		if (app_of(c)->flags)
			rt_flags_render_metrics(app_of(c)->flags, &b);
		if (app_of(c)->cluster)
			rt_cluster_metrics(app_of(c)->cluster, &b);
		rt_conn_respond(c, 200, "text/plain; version=0.0.4", b.data, b.len, NULL);
		rt_buf_deinit(&b);
	} else if (api && !strcmp(api, "broadcast")) {
		if (req->method != HTTP_POST)
			respond_json(c, 405, "{\"message\":\"Method Not Allowed\"}");
		else
			broadcast_batch(c, req);
	} else if (api && !strncmp(api, "broadcast/", 10)) {
		if (req->method != HTTP_POST)
			respond_json(c, 405, "{\"message\":\"Method Not Allowed\"}");
		else
			broadcast_single(c, req, api + 10);
	} else if (!rt_web_handle(c, req)) { /* the embedded dashboard: last, shadows nothing */
		respond_json(c, 404, "{\"error\":\"Not Found\"}");
	}
}

/* ---- server callbacks ---- */

static void *worker_start(struct rt_worker *w)
{
	return rt_realtime_worker_new(rt_server_app(rt_worker_server(w)), w);
}

static void worker_stop(struct rt_worker *w)
{
	rt_realtime_worker_free(rt_worker_data(w));
}

static void on_message(struct rt_conn *c, enum rt_ws_opcode op, const uint8_t *data,
		       size_t data_len)
{
	switch (rt_conn_data_kind(c)) {
	case RT_CONN_SESSION:
		rt_session_on_message(rt_conn_data(c), op, data, data_len);
		break;
	case RT_CONN_COLLAB:
		rt_collab_message(rt_conn_data(c), op, data, data_len);
		break;
	}
}

static void on_close(struct rt_conn *c)
{
	switch (rt_conn_data_kind(c)) {
	case RT_CONN_SESSION:
		rt_session_free(rt_conn_data(c));
		break;
	case RT_CONN_COLLAB:
		rt_collab_conn_close(rt_conn_data(c));
		break;
	}
	rt_conn_set_data(c, NULL, 0);
}

static void on_wake(struct rt_worker *w)
{
	struct rt_realtime_worker *rw = rt_worker_data(w);
	if (rw)
		rt_realtime_worker_wake(rw);
	if (rw && rw->rt->locks) /* REST lock requests whose wait ended */
		rt_lock_service_drain(rw->rt->locks, w);
}

static void on_tick(struct rt_worker *w, uint64_t now_ms)
{
	struct rt_realtime_worker *rw = rt_worker_data(w);
	if (rw)
		rt_realtime_worker_tick(rw);
	if (rw && rw->rt->collab)
		rt_collab_tick(rw->rt->collab, w, rw->hub, now_ms);
}

const struct rt_server_handler rt_api_handler = {
	.worker_start = worker_start,
	.worker_stop = worker_stop,
	.on_request = on_request,
	.on_message = on_message,
	.on_close = on_close,
	.on_wake = on_wake,
	.on_tick = on_tick,
};
