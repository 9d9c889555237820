/*
 * /locks/v1/…: the locks' REST routes (docs/locks.md). The token and the
 * per-user rate are checked here; the lock service (locks/service.h)
 * answers on the worker, or later for an acquisition that waits.
 */
#include "api/api_int.h"

#include <stdlib.h>
#include <string.h>

#include "auth/keyring.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "locks/service.h"

void rt_api_locks(struct rt_conn *c, struct rt_http_req *req, struct rt_realtime *rt,
		  const char *path)
{
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
	if (rt_api_within_rate(c, rt, &claims))
		rt_lock_service_http(rt->locks, c, req, path, &claims);
	rt_jwt_claims_deinit(&claims);
}
