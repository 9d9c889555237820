/*
 * /activity/v1/<channel>: pages of the activity feed (docs/activity.md).
 * The feed is in memory and its visibility checks are compiled policies,
 * so the request is answered on the worker.
 */
#include "api/api_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "activity/activity.h"
#include "auth/keyring.h"
#include "common/clock.h"
#include "common/metrics.h"

/* A query parameter that must be a whole number up to max when present. */
static bool query_uint(const char *query, const char *name, uint64_t max, uint64_t *out)
{
	*out = 0;
	char *v = rt_http_query_get(query, name);
	if (!v)
		return true;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	bool ok = *v && *v != '-' && !*end && !errno && n <= max;
	free(v);
	*out = n;
	return ok;
}

void rt_api_activity(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		     const char *path)
{
	if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
		rt_api_respond_error(c, 405, "RTS405", "GET /activity/v1/<channel>");
		return;
	}
	char *token = rt_api_request_token(req);
	struct rt_jwt_claims claims = {0};
	enum rt_jwt_result r = RT_JWT_MALFORMED;
	if (token)
		r = rt_keyring_verify(rt->keys, token, strlen(token), rt_wall_s(), &claims, NULL);
	free(token);
	if (r != RT_JWT_OK) {
		RT_METRIC_ERROR(AUTH);
		rt_api_respond_error(c, 401, "RTS401", "a valid token is required");
		return;
	}
	char *channel = NULL;
	if (!rt_api_within_rate(c, rt, &claims))
		goto out;
	channel = rt_http_pct_decode(path, strlen(path), false);
	uint64_t before, limit;
	if (!query_uint(req->query, "before", UINT64_MAX >> 1, &before) ||
	    !query_uint(req->query, "limit", RT_ACTIVITY_MAX_PAGE, &limit)) {
		rt_api_respond_error(c, 400, "RTS400",
				     "before is an entry id and limit a number from 1 to 200");
		goto out;
	}
	struct rt_auth who = {.role = claims.role, .claims = claims.claims, .topic = NULL};
	json_t *page = NULL;
	int status = 500;
	rt_activity_page(rt->activity, channel ? channel : "", before, (unsigned)limit, &who,
			 &page, &status);
	char *txt = json_dumps(page, JSON_COMPACT);
	rt_conn_respond(c, status, "application/json; charset=utf-8", txt, strlen(txt), NULL);
	free(txt);
	json_decref(page);
out:
	free(channel);
	rt_jwt_claims_deinit(&claims);
}
