/*
 * Verified-token memory of a realtime worker (rt_realtime_verify in
 * src/realtime/realtime.h): same answers as rt_jwt_verify, a remembered token
 * still expires, a token differing in one byte is checked afresh, and a slot
 * taken over by another token forgets the first.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "realtime/realtime.h"

#include "fixture.h"

#define SECRET "unit-secret-unit-secret-unit-secret-1234"

struct env {
	struct rt_server *server;
	struct rt_realtime *rt;
	struct rt_realtime_worker *rw;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof *e);
	struct rt_realtime_config cfg = {.jwt_secret = SECRET, .max_payload_bytes = 1000,
					 .max_channels = 10};
	e->server = fx_server_new(1);
	e->rt = rt_realtime_new(&cfg);
	e->rw = rt_realtime_worker_new(e->rt, rt_server_worker(e->server, 0));
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	rt_realtime_worker_free(e->rw);
	rt_realtime_free(e->rt);
	rt_server_free(e->server);
	free(e);
	return 0;
}

static enum rt_jwt_result verify(struct env *e, const char *tok, struct rt_jwt_claims *c,
				 int64_t *ago)
{
	return rt_realtime_verify(e->rw, tok, strlen(tok), c, ago);
}

static void test_remembered_token(void **state)
{
	struct env *e = *state;
	json_t *extra = json_pack("{s:s}", "sub", "user-1");
	char *tok = rt_jwt_mint(SECRET, "authenticated", "unit", rt_wall_s(), rt_wall_s() + 60,
				extra);
	json_decref(extra);
	json_t *first = NULL;
	for (int i = 0; i < 3; i++) { /* a miss, then two hits: the same claims */
		struct rt_jwt_claims c;
		assert_int_equal(verify(e, tok, &c, NULL), RT_JWT_OK);
		assert_string_equal(c.role, "authenticated");
		assert_string_equal(c.sub, "user-1");
		assert_true(c.exp > rt_wall_s());
		/* the whole claims object, kept by the cache too */
		assert_non_null(c.claims);
		assert_string_equal(json_string_value(json_object_get(c.claims, "sub")), "user-1");
		if (!first)
			first = json_incref(c.claims);
		else
			assert_true(json_equal(first, c.claims));
		rt_jwt_claims_deinit(&c);
	}
	json_decref(first);
	/* one byte of the signature changed: checked afresh, and refused */
	size_t n = strlen(tok);
	tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';
	struct rt_jwt_claims c;
	assert_int_not_equal(verify(e, tok, &c, NULL), RT_JWT_OK);
	free(tok);
}

static void test_refusals_match_jwt(void **state)
{
	struct env *e = *state;
	struct rt_jwt_claims c;
	int64_t ago = 0;
	char *expired = rt_jwt_mint(SECRET, "anon", NULL, rt_wall_s() - 100, rt_wall_s() - 30, NULL);
	assert_int_equal(verify(e, expired, &c, &ago), RT_JWT_EXPIRED);
	assert_true(ago >= 30);
	char *other = rt_jwt_mint("another-secret-another-secret-12", "anon", NULL, rt_wall_s(),
				  rt_wall_s() + 60, NULL);
	assert_int_equal(verify(e, other, &c, NULL), RT_JWT_BAD_SIGNATURE);
	assert_int_equal(verify(e, "not.a.token", &c, NULL), RT_JWT_MALFORMED);
	free(expired);
	free(other);
}

static void test_remembered_token_expires(void **state)
{
	struct env *e = *state;
	/* valid for one more second: remembered, then refused once past exp */
	char *tok = rt_jwt_mint(SECRET, "anon", NULL, rt_wall_s(), rt_wall_s() + 1, NULL);
	struct rt_jwt_claims c;
	assert_int_equal(verify(e, tok, &c, NULL), RT_JWT_OK);
	rt_jwt_claims_deinit(&c);
	int64_t until = rt_wall_s() + 3;
	enum rt_jwt_result r = RT_JWT_OK;
	while (r == RT_JWT_OK && rt_wall_s() < until) {
		r = verify(e, tok, &c, NULL);
		if (r == RT_JWT_OK)
			rt_jwt_claims_deinit(&c);
		else
			break;
		usleep(50 * 1000);
	}
	assert_int_equal(r, RT_JWT_EXPIRED);
	free(tok);
}

static void test_many_tokens(void **state)
{
	struct env *e = *state;
	/* more tokens than slots: every answer stays right as slots are reused */
	char *toks[600];
	for (int i = 0; i < 600; i++) {
		json_t *extra = json_pack("{s:i}", "n", i);
		toks[i] = rt_jwt_mint(SECRET, i % 2 ? "anon" : "authenticated", NULL, rt_wall_s(),
				      rt_wall_s() + 60, extra);
		json_decref(extra);
	}
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 600; i++) {
			struct rt_jwt_claims c;
			assert_int_equal(verify(e, toks[i], &c, NULL), RT_JWT_OK);
			assert_string_equal(c.role, i % 2 ? "anon" : "authenticated");
			rt_jwt_claims_deinit(&c);
		}
	for (int i = 0; i < 600; i++)
		free(toks[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_remembered_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals_match_jwt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remembered_token_expires, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_tokens, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
