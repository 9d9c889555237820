/*
 * Fuzz target: tokens (rt_jwt_verify_keys) and JWKS documents
 * (rt_jwt_keys_new).
 *
 * Input layout: the first byte chooses. Even: the rest is a token checked
 * against fixed keys — an HS secret, an oct key and an EC key
 * given as JWKs — with aud and iss checks on. Odd: the rest is a JWKS
 * document, and when it parses, the fixed tokens are checked against it.
 *
 * Checked: a result is one of the enum's; success fills role, exp and
 * claims, and every other result leaves the claims zeroed; no key set, or
 * no token, is ever accepted without a signature by one of its keys (the
 * fixed unsigned tokens are refused by every parsed set).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define NOW 1700000000

/* The P-256 public key of RFC 7515 A.3 and an oct key. */
static const char jwks[] =
	"{\"keys\":[{\"kty\":\"EC\",\"kid\":\"ec\",\"crv\":\"P-256\","
	"\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
	"\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
	"{\"kty\":\"oct\",\"kid\":\"hs\",\"k\":\"c2VjcmV0LW9mLWF0LWxlYXN0LTMyLWJ5dGVzLWxvbmctLS0\"}]}";

static const char *const unsigned_tokens[] = {
	/* {"alg":"none"} {"role":"service_role","exp":1900000000} */
	"eyJhbGciOiJub25lIn0.eyJyb2xlIjoic2VydmljZV9yb2xlIiwiZXhwIjoxOTAwMDAwMDAwfQ.",
	/* {"alg":"ES256","kid":"ec"} same claims, an empty signature */
	"eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjIn0.eyJyb2xlIjoic2VydmljZV9yb2xlIiwiZXhwIjoxOTAwMDAwMDAwfQ.",
};

static void check_result(enum rt_jwt_result r, const struct rt_jwt_claims *c)
{
	CHECK(r >= RT_JWT_OK && r <= RT_JWT_BAD_CLAIM);
	if (r == RT_JWT_OK) {
		CHECK(c->role && c->claims && c->exp > NOW);
	} else {
		CHECK(!c->role && !c->sub && !c->claims && !c->exp);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	const char *rest = (const char *)data + 1;
	size_t n = size - 1;
	struct rt_jwt_claims c;
	char err[256];
	if (data[0] % 2 == 0) {
		static struct rt_jwt_keys *fixed;
		if (!fixed) {
			struct rt_jwt_keys_config kc = {.secret = "fuzz-secret-of-at-least-32-bytes-long",
							.jwks = jwks,
							.jwks_len = strlen(jwks),
							.aud = "authenticated",
							.iss = "fuzz"};
			fixed = rt_jwt_keys_new(&kc, err, sizeof err);
			CHECK(fixed && rt_jwt_keys_count(fixed) == 2);
		}
		int64_t ago = -1;
		bool unknown = false;
		enum rt_jwt_result r = rt_jwt_verify_keys(fixed, rest, n, NOW, &c, &ago, &unknown);
		check_result(r, &c);
		CHECK(r == RT_JWT_EXPIRED ? ago >= 0 : ago == 0);
		CHECK(!unknown || r == RT_JWT_NO_SIGNER);
		rt_jwt_claims_deinit(&c);
		return 0;
	}
	struct rt_jwt_keys_config kc = {.jwks = rest, .jwks_len = n};
	struct rt_jwt_keys *k = rt_jwt_keys_new(&kc, err, sizeof err);
	if (!k) {
		CHECK(err[0]);
		return 0;
	}
	CHECK(rt_jwt_keys_count(k) <= RT_JWT_MAX_KEYS);
	for (size_t i = 0; i < sizeof unsigned_tokens / sizeof *unsigned_tokens; i++) {
		const char *t = unsigned_tokens[i];
		enum rt_jwt_result r = rt_jwt_verify_keys(k, t, strlen(t), NOW, &c, NULL, NULL);
		check_result(r, &c);
		CHECK(r != RT_JWT_OK);
		rt_jwt_claims_deinit(&c);
	}
	rt_jwt_keys_unref(k);
	return 0;
}
