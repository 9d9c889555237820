#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "common/alloc.h"

#define SECRET "super-secret-jwt-token-with-at-least-32-characters-long"
#define NOW 1700000000
#define HS256_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define GOOD_PAYLOAD                                                                     \
	"{\"role\":\"authenticated\",\"sub\":\"user-1\",\"exp\":1900000000,"              \
	"\"iat\":1700000000,\"email\":\"a@example.com\",\"app_metadata\":{\"provider\":\"email\"}}"

static char *b64url(const void *data, size_t len)
{
	char *out = rt_xmalloc(4 * ((len + 2) / 3) + 1);
	int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	size_t j = 0;

	for (int i = 0; i < n && out[i] != '='; i++)
		out[j++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	out[j] = '\0';
	return out;
}

/* header.payload.signature from raw JSON texts, MAC by OpenSSL's HMAC (md NULL: none). */
static char *make_token(const EVP_MD *md, const char *secret, const char *header,
			const char *payload)
{
	char *h = b64url(header, strlen(header));
	char *p = b64url(payload, strlen(payload));
	char *signing = NULL;
	char *token = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	assert_true(asprintf(&signing, "%s.%s", h, p) > 0);
	if (md)
		assert_non_null(HMAC(md, secret, (int)strlen(secret), (unsigned char *)signing,
				     strlen(signing), mac, &mac_len));
	char *s = b64url(mac, mac_len);
	assert_true(asprintf(&token, "%s.%s", signing, s) > 0);
	free(s);
	free(signing);
	free(p);
	free(h);
	return token;
}

static char *hs256_token(const char *payload)
{
	return make_token(EVP_sha256(), SECRET, HS256_HDR, payload);
}

/* Verifies and checks the out-parameter contract: filled on success, zeroed otherwise. */
static enum rt_jwt_result verify_n(const char *secret, const char *token, size_t len,
				   int64_t now, int64_t *ago)
{
	struct rt_jwt_claims c;

	memset(&c, 0xa5, sizeof c);
	enum rt_jwt_result r = rt_jwt_verify(secret, token, len, now, &c, ago);
	if (r == RT_JWT_OK) {
		assert_non_null(c.role);
		assert_true(json_is_object(c.claims));
		assert_true(c.exp > now);
		rt_jwt_claims_deinit(&c);
	} else {
		assert_null(c.role);
		assert_null(c.sub);
		assert_null(c.claims);
		assert_int_equal(c.exp, 0);
	}
	return r;
}

static enum rt_jwt_result verify_s(const char *secret, const char *token)
{
	return verify_n(secret, token, strlen(token), NOW, NULL);
}

/* Signs payload with HS256 and SECRET and verifies it at NOW. */
static enum rt_jwt_result verify_payload(const char *payload)
{
	char *t = hs256_token(payload);
	enum rt_jwt_result r = verify_s(SECRET, t);
	free(t);
	return r;
}

static void test_success_fills_claims(void **state)
{
	(void)state;
	char *t = hs256_token(GOOD_PAYLOAD);
	struct rt_jwt_claims c;
	int64_t ago = 99;

	assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), NOW, &c, &ago), RT_JWT_OK);
	assert_int_equal(ago, 0);
	assert_string_equal(c.role, "authenticated");
	assert_string_equal(c.sub, "user-1");
	assert_int_equal(c.exp, 1900000000);
	assert_true(json_is_object(c.claims));
	assert_int_equal(c.claims->refcount, 1);
	assert_string_equal(json_string_value(json_object_get(c.claims, "email")), "a@example.com");
	json_t *meta = json_object_get(c.claims, "app_metadata");
	assert_string_equal(json_string_value(json_object_get(meta, "provider")), "email");
	assert_int_equal(json_integer_value(json_object_get(c.claims, "exp")), 1900000000);
	assert_int_equal(json_integer_value(json_object_get(c.claims, "iat")), 1700000000);
	assert_string_equal(json_string_value(json_object_get(c.claims, "role")), "authenticated");

	rt_jwt_claims_deinit(&c);
	assert_null(c.role);
	assert_null(c.sub);
	assert_null(c.claims);
	assert_int_equal(c.exp, 0);
	rt_jwt_claims_deinit(&c);
	free(t);
}

static void test_sub_only_when_string(void **state)
{
	(void)state;
	const char *payloads[] = {
		"{\"role\":\"anon\",\"exp\":1900000000}",
		"{\"role\":\"anon\",\"exp\":1900000000,\"sub\":42}",
		"{\"role\":\"anon\",\"exp\":1900000000,\"sub\":null}",
	};

	for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
		char *t = hs256_token(payloads[i]);
		struct rt_jwt_claims c;
		assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), NOW, &c, NULL), RT_JWT_OK);
		assert_string_equal(c.role, "anon");
		assert_null(c.sub);
		rt_jwt_claims_deinit(&c);
		free(t);
	}
}

static void test_hs384_hs512(void **state)
{
	(void)state;
	struct {
		const EVP_MD *md;
		const char *header;
	} ok[] = {
		{ EVP_sha384(), "{\"alg\":\"HS384\",\"typ\":\"JWT\"}" },
		{ EVP_sha512(), "{\"alg\":\"HS512\",\"typ\":\"JWT\"}" },
		{ EVP_sha512(), "{\"alg\":\"HS512\"}" },
	};

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char *t = make_token(ok[i].md, SECRET, ok[i].header, GOOD_PAYLOAD);
		struct rt_jwt_claims c;
		assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), NOW, &c, NULL), RT_JWT_OK);
		assert_string_equal(c.role, "authenticated");
		assert_int_equal(c.exp, 1900000000);
		rt_jwt_claims_deinit(&c);
		free(t);
	}

	/* The header's algorithm decides; a MAC made with another hash never passes. */
	char *t = make_token(EVP_sha256(), SECRET, "{\"alg\":\"HS384\",\"typ\":\"JWT\"}",
			     GOOD_PAYLOAD);
	assert_int_equal(verify_s(SECRET, t), RT_JWT_BAD_SIGNATURE);
	free(t);
	t = make_token(EVP_sha512(), SECRET, HS256_HDR, GOOD_PAYLOAD);
	assert_int_equal(verify_s(SECRET, t), RT_JWT_BAD_SIGNATURE);
	free(t);
}

static void test_alg_none_never_verifies(void **state)
{
	(void)state;
	const char *headers[] = {
		"{\"alg\":\"none\",\"typ\":\"JWT\"}",
		"{\"alg\":\"none\"}",
		"{\"alg\":\"None\"}",
		"{\"alg\":\"NONE\",\"typ\":\"JWT\"}",
	};
	const char *secrets[] = { SECRET, "", NULL };

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *unsigned_t = make_token(NULL, SECRET, headers[i], GOOD_PAYLOAD);
		char *signed_t = make_token(EVP_sha256(), SECRET, headers[i], GOOD_PAYLOAD);
		/* "h.p." has an empty signature; also try "h.p" without the last dot. */
		char *two_parts = rt_xstrndup(unsigned_t, strlen(unsigned_t) - 1);
		assert_int_equal(unsigned_t[strlen(unsigned_t) - 1], '.');
		for (size_t k = 0; k < sizeof secrets / sizeof secrets[0]; k++) {
			assert_int_equal(verify_s(secrets[k], unsigned_t), RT_JWT_NO_SIGNER);
			assert_int_equal(verify_s(secrets[k], signed_t), RT_JWT_NO_SIGNER);
			assert_int_equal(verify_s(secrets[k], two_parts), RT_JWT_MALFORMED);
		}
		free(two_parts);
		free(signed_t);
		free(unsigned_t);
	}
}

static void test_unsupported_alg_is_no_signer(void **state)
{
	(void)state;
	const char *headers[] = {
		"{\"typ\":\"JWT\"}",
		"{}",
		"{\"alg\":null}",
		"{\"alg\":256}",
		"{\"alg\":[\"HS256\"]}",
		"{\"alg\":\"hs256\"}",
		"{\"alg\":\"hs384\"}",
		"{\"alg\":\"Hs512\"}",
		"{\"alg\":\"HS256 \"}",
		"{\"alg\":\"HS\"}",
		"{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
		"{\"alg\":\"ES256\",\"typ\":\"JWT\"}",
		"{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}",
	};

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *t = make_token(EVP_sha256(), SECRET, headers[i], GOOD_PAYLOAD);
		assert_int_equal(verify_s(SECRET, t), RT_JWT_NO_SIGNER);
		free(t);
	}

	/* typ is compared without case, and a non-string typ is ignored. */
	const char *typs[] = {
		"{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
		"{\"alg\":\"HS256\",\"typ\":1}",
	};
	for (size_t i = 0; i < sizeof typs / sizeof typs[0]; i++) {
		char *t = make_token(EVP_sha256(), SECRET, typs[i], GOOD_PAYLOAD);
		assert_int_equal(verify_s(SECRET, t), RT_JWT_OK);
		free(t);
	}
}

static void test_missing_secret_is_no_signer(void **state)
{
	(void)state;
	char *t = hs256_token(GOOD_PAYLOAD);

	assert_int_equal(verify_s(NULL, t), RT_JWT_NO_SIGNER);
	assert_int_equal(verify_s("", t), RT_JWT_NO_SIGNER);
	free(t);
}

static void test_wrong_secret(void **state)
{
	(void)state;
	char *t = make_token(EVP_sha256(), "another-secret", HS256_HDR, GOOD_PAYLOAD);
	char *shorter = rt_xstrndup(SECRET, strlen(SECRET) - 1);

	assert_int_equal(verify_s(SECRET, t), RT_JWT_BAD_SIGNATURE);
	assert_int_equal(verify_s("another-secret", t), RT_JWT_OK);
	free(t);

	t = hs256_token(GOOD_PAYLOAD);
	assert_int_equal(verify_s(SECRET "x", t), RT_JWT_BAD_SIGNATURE);
	assert_int_equal(verify_s(shorter, t), RT_JWT_BAD_SIGNATURE);
	assert_int_equal(verify_s("another-secret", t), RT_JWT_BAD_SIGNATURE);
	free(t);
	free(shorter);
}

static void test_tampered_token(void **state)
{
	(void)state;
	char *good = hs256_token(GOOD_PAYLOAD);
	const char *evil_payload =
		"{\"role\":\"service_role\",\"sub\":\"user-1\",\"exp\":1900000000}";
	char *evil = hs256_token(evil_payload);
	const char *good_sig = strrchr(good, '.') + 1;
	const char *evil_dot2 = strrchr(evil, '.');
	char *forged = NULL;

	/* Header and payload of one token, signature of another. */
	assert_true(asprintf(&forged, "%.*s.%s", (int)(evil_dot2 - evil), evil, good_sig) > 0);
	assert_int_equal(verify_s(SECRET, forged), RT_JWT_BAD_SIGNATURE);
	free(forged);

	/* Header switched to HS512, payload and signature kept. */
	const char *hdr512 = "{\"alg\":\"HS512\",\"typ\":\"JWT\"}";
	char *h512 = b64url(hdr512, strlen(hdr512));
	assert_true(asprintf(&forged, "%s%s", h512, strchr(good, '.')) > 0);
	assert_int_equal(verify_s(SECRET, forged), RT_JWT_BAD_SIGNATURE);
	free(forged);
	free(h512);

	/* Empty, shortened and altered signatures. */
	size_t sig_off = (size_t)(good_sig - good);
	forged = rt_xstrndup(good, sig_off);
	assert_int_equal(verify_s(SECRET, forged), RT_JWT_BAD_SIGNATURE);
	free(forged);
	forged = rt_xstrndup(good, strlen(good) - 1);
	assert_int_equal(verify_s(SECRET, forged), RT_JWT_BAD_SIGNATURE);
	free(forged);
	forged = rt_xstrdup(good);
	forged[sig_off] = forged[sig_off] == 'A' ? 'B' : 'A';
	assert_int_equal(verify_s(SECRET, forged), RT_JWT_BAD_SIGNATURE);
	free(forged);

	/* Any single-byte substitution anywhere fails. */
	const char subst[] = { 'A', 'x', '0', '-', '_', '.', ' ', '%', '=', '\0' };
	size_t len = strlen(good);
	char *m = rt_xstrdup(good);
	for (size_t i = 0; i < len; i++) {
		for (size_t k = 0; k < sizeof subst; k++) {
			if (good[i] == subst[k])
				continue;
			m[i] = subst[k];
			assert_int_not_equal(verify_n(SECRET, m, len, NOW, NULL), RT_JWT_OK);
		}
		m[i] = good[i];
	}
	assert_int_equal(verify_n(SECRET, m, len, NOW, NULL), RT_JWT_OK);
	free(m);
	free(evil);
	free(good);
}

static void test_malformed(void **state)
{
	(void)state;
	const char *tokens[] = {
		"",
		" \t\r\n",
		"abc",
		"a.b",
		"..",
		"...",
		"a.b.c.d",
		"e30.e30.e30.e30",
		"!!!.e30.abc",
		"e30.e30.a+b",
		"e30.e30.ab/c",
		"e30=.e30.abc",
		"e30.e30.abcde",         /* a segment of 4n+1 characters */
		"eyJhbGciOiJIUzI1NiJ9a.e30.abc",
		"%zz.e30.abc",
		"e30.e30.abc%",
		"e30.e30.abc%4",
		"e30.e30.abc%4g",
		"e30.e30.ab%2\nE",
	};

	for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
		assert_int_equal(verify_s(SECRET, tokens[i]), RT_JWT_MALFORMED);
		assert_int_equal(verify_s(NULL, tokens[i]), RT_JWT_MALFORMED);
	}
	assert_int_equal(verify_n(SECRET, NULL, 0, NOW, NULL), RT_JWT_MALFORMED);
	/* An embedded NUL is not skipped. */
	char *t = hs256_token(GOOD_PAYLOAD);
	size_t len = strlen(t);
	char *withnul = rt_xmalloc(len + 2);
	memcpy(withnul, t, 10);
	withnul[10] = '\0';
	memcpy(withnul + 11, t + 10, len - 10 + 1);
	assert_int_equal(verify_n(SECRET, withnul, len + 1, NOW, NULL), RT_JWT_MALFORMED);
	free(withnul);
	free(t);

	/* Header or payload that is not a JSON object, correctly signed: still malformed. */
	const char *bad_json[][2] = {
		{ "not json", GOOD_PAYLOAD },
		{ "[\"HS256\"]", GOOD_PAYLOAD },
		{ "\"HS256\"", GOOD_PAYLOAD },
		{ "", GOOD_PAYLOAD },
		{ HS256_HDR, "" },
		{ HS256_HDR, "not json" },
		{ HS256_HDR, "[]" },
		{ HS256_HDR, "42" },
		{ HS256_HDR, "{\"role\":\"anon\",\"exp\":1900000000" },
		{ HS256_HDR, "{\"role\":\"anon\",\"exp\":1900000000} x" },
		/* Numbers jansson cannot hold (nor libjwt, built on it) are unreadable. */
		{ HS256_HDR, "{\"role\":\"anon\",\"exp\":1900000000,\"big\":1e400}" },
		{ HS256_HDR, "{\"role\":\"anon\",\"exp\":1900000000,"
			     "\"big\":99999999999999999999}" },
	};
	for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
		t = make_token(EVP_sha256(), SECRET, bad_json[i][0], bad_json[i][1]);
		assert_int_equal(verify_s(SECRET, t), RT_JWT_MALFORMED);
		free(t);
		/* The shape is checked before the algorithm and the signature. */
		t = make_token(EVP_sha256(), "another-secret", bad_json[i][0], bad_json[i][1]);
		assert_int_equal(verify_s(SECRET, t), RT_JWT_MALFORMED);
		free(t);
	}
}

static void test_length_limit(void **state)
{
	(void)state;
	char *t = hs256_token(GOOD_PAYLOAD);
	size_t len = strlen(t);
	char *padded = rt_xmalloc(RT_JWT_MAX_LEN + 2);

	memset(padded, ' ', RT_JWT_MAX_LEN + 1);
	memcpy(padded + 100, t, len);
	padded[RT_JWT_MAX_LEN + 1] = '\0';
	assert_int_equal(verify_n(SECRET, padded, RT_JWT_MAX_LEN, NOW, NULL), RT_JWT_OK);
	assert_int_equal(verify_n(SECRET, padded, RT_JWT_MAX_LEN + 1, NOW, NULL),
			 RT_JWT_MALFORMED);
	free(padded);
	free(t);
}

static void test_not_nul_terminated(void **state)
{
	(void)state;
	char *t = hs256_token(GOOD_PAYLOAD);
	size_t len = strlen(t);
	char *buf = NULL;

	assert_true(asprintf(&buf, "%s.trailing-garbage", t) > 0);
	assert_int_equal(verify_n(SECRET, buf, len, NOW, NULL), RT_JWT_OK);
	assert_int_equal(verify_n(SECRET, buf, strlen(buf), NOW, NULL), RT_JWT_MALFORMED);
	assert_int_equal(verify_n(SECRET, buf, len - 1, NOW, NULL), RT_JWT_BAD_SIGNATURE);
	free(buf);
	free(t);
}

static void test_missing_claims(void **state)
{
	(void)state;
	const char *payloads[] = {
		"{}",
		"{\"exp\":1900000000}",
		"{\"role\":\"anon\"}",
		"{\"role\":7,\"exp\":1900000000}",
		"{\"role\":null,\"exp\":1900000000}",
		"{\"role\":[\"anon\"],\"exp\":1900000000}",
		"{\"Role\":\"anon\",\"exp\":1900000000}",
		"{\"role\":\"anon\",\"Exp\":1900000000}",
		/* Missing claims are reported before expiry. */
		"{\"exp\":1000}",
	};

	for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++)
		assert_int_equal(verify_payload(payloads[i]), RT_JWT_MISSING_CLAIMS);
}

static void test_bad_exp(void **state)
{
	(void)state;
	const char *payloads[] = {
		"{\"role\":\"anon\",\"exp\":\"1900000000\"}",
		"{\"role\":\"anon\",\"exp\":\"soon\"}",
		"{\"role\":\"anon\",\"exp\":null}",
		"{\"role\":\"anon\",\"exp\":true}",
		"{\"role\":\"anon\",\"exp\":{}}",
		"{\"role\":\"anon\",\"exp\":[1900000000]}",
		/* exp type is checked before role presence. */
		"{\"exp\":\"soon\"}",
		"{\"role\":5,\"exp\":false}",
	};

	for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++)
		assert_int_equal(verify_payload(payloads[i]), RT_JWT_BAD_EXP);
}

static void test_check_order(void **state)
{
	(void)state;
	const char *bad_claims = "{\"exp\":\"soon\"}";
	char *t = make_token(EVP_sha256(), "another-secret", HS256_HDR, bad_claims);

	assert_int_equal(verify_s(SECRET, t), RT_JWT_BAD_SIGNATURE);
	free(t);
	t = make_token(NULL, SECRET, "{\"alg\":\"none\"}", bad_claims);
	assert_int_equal(verify_s(SECRET, t), RT_JWT_NO_SIGNER);
	free(t);
	t = make_token(EVP_sha256(), "another-secret", "{\"alg\":\"RS256\"}", "{\"exp\":1}");
	assert_int_equal(verify_s(SECRET, t), RT_JWT_NO_SIGNER);
	free(t);
	t = make_token(EVP_sha256(), "another-secret", HS256_HDR, "{\"role\":\"anon\",\"exp\":1}");
	assert_int_equal(verify_s(SECRET, t), RT_JWT_BAD_SIGNATURE);
	free(t);
}

static void expect_exp(const char *payload, int64_t now, enum rt_jwt_result want, int64_t exp)
{
	char *t = hs256_token(payload);
	struct rt_jwt_claims c;

	assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), now, &c, NULL), want);
	if (want == RT_JWT_OK) {
		assert_int_equal(c.exp, exp);
		json_t *e = json_object_get(c.claims, "exp");
		assert_true(json_is_integer(e));
		assert_int_equal(json_integer_value(e), exp);
		rt_jwt_claims_deinit(&c);
	}
	free(t);
}

static void test_decimal_exp(void **state)
{
	(void)state;
	expect_exp("{\"role\":\"anon\",\"exp\":1.9e9}", NOW, RT_JWT_OK, 1900000000);
	expect_exp("{\"role\":\"anon\",\"exp\":1.9E+9}", NOW, RT_JWT_OK, 1900000000);
	expect_exp("{\"role\":\"anon\",\"exp\":1900000000.0}", NOW, RT_JWT_OK, 1900000000);
	expect_exp("{\"role\":\"anon\",\"exp\":1900000000.5}", NOW, RT_JWT_OK, 1900000001);
	expect_exp("{\"role\":\"anon\",\"exp\":1900000000.4}", NOW, RT_JWT_OK, 1900000000);
	expect_exp("{\"role\":\"anon\",\"exp\":1900000000.9}", NOW, RT_JWT_OK, 1900000001);
	expect_exp("{\"role\":\"anon\",\"exp\":1e300}", NOW, RT_JWT_OK, INT64_MAX);
	expect_exp("{\"role\":\"anon\",\"exp\":-1.5}", -100, RT_JWT_OK, -2);
	expect_exp("{\"role\":\"anon\",\"exp\":1900000000}", NOW, RT_JWT_OK, 1900000000);

	/* iat is rounded in the claims too. */
	char *t = hs256_token("{\"role\":\"anon\",\"exp\":1900000000,\"iat\":1700000000.7}");
	struct rt_jwt_claims c;
	assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), NOW, &c, NULL), RT_JWT_OK);
	assert_true(json_is_integer(json_object_get(c.claims, "iat")));
	assert_int_equal(json_integer_value(json_object_get(c.claims, "iat")), 1700000001);
	rt_jwt_claims_deinit(&c);
	free(t);

	/* A decimal exp expires by its rounded value. */
	int64_t ago = -1;
	t = hs256_token("{\"role\":\"anon\",\"exp\":1000.6}");
	assert_int_equal(verify_n(SECRET, t, strlen(t), 1012, &ago), RT_JWT_EXPIRED);
	assert_int_equal(ago, 11);
	assert_int_equal(verify_n(SECRET, t, strlen(t), 1000, &ago), RT_JWT_OK);
	assert_int_equal(verify_n(SECRET, t, strlen(t), 1001, &ago), RT_JWT_EXPIRED);
	assert_int_equal(ago, 0);
	free(t);
}

static void test_expired(void **state)
{
	(void)state;
	char *t = hs256_token("{\"role\":\"anon\",\"exp\":1000}");
	size_t len = strlen(t);
	int64_t ago = -1;
	char msg[128];

	assert_int_equal(verify_n(SECRET, t, len, 1012, &ago), RT_JWT_EXPIRED);
	assert_int_equal(ago, 12);
	assert_string_equal(rt_jwt_message(RT_JWT_EXPIRED, ago, msg, sizeof msg),
			    "Token has expired 12 seconds ago");
	assert_string_equal(rt_jwt_code(RT_JWT_EXPIRED), "InvalidJWTToken");

	assert_int_equal(verify_n(SECRET, t, len, 1000, &ago), RT_JWT_EXPIRED);
	assert_int_equal(ago, 0);
	assert_int_equal(verify_n(SECRET, t, len, 1012, NULL), RT_JWT_EXPIRED);
	ago = 77;
	assert_int_equal(verify_n(SECRET, t, len, 999, &ago), RT_JWT_OK);
	assert_int_equal(ago, 0);
	ago = 77;
	assert_int_equal(verify_n(SECRET "x", t, len, 1012, &ago), RT_JWT_BAD_SIGNATURE);
	assert_int_equal(ago, 0);
	free(t);

	t = hs256_token("{\"role\":\"anon\",\"exp\":-9000000000000000000}");
	assert_int_equal(verify_n(SECRET, t, strlen(t), INT64_C(9000000000000000000), &ago),
			 RT_JWT_EXPIRED);
	assert_int_equal(ago, INT64_MAX);
	free(t);
}

/* Inserts ins before each offset in at (ascending), returning a new string. */
static char *insert_at(const char *s, const size_t *at, size_t n_at, const char *ins)
{
	size_t len = strlen(s);
	char *out = rt_xmalloc(len + n_at * strlen(ins) + 1);
	size_t o = 0, prev = 0;

	for (size_t i = 0; i <= n_at; i++) {
		size_t end = i < n_at ? at[i] : len;
		memcpy(out + o, s + prev, end - prev);
		o += end - prev;
		if (i < n_at) {
			memcpy(out + o, ins, strlen(ins));
			o += strlen(ins);
		}
		prev = end;
	}
	out[o] = '\0';
	return out;
}

static void test_whitespace_stripped(void **state)
{
	(void)state;
	char *t = hs256_token(GOOD_PAYLOAD);
	size_t len = strlen(t);
	size_t dot1 = (size_t)(strchr(t, '.') - t);
	size_t dot2 = (size_t)(strrchr(t, '.') - t);
	const size_t at[] = { 0, 5, dot1, dot1 + 1, dot2, dot2 + 3, len };
	const char *ws[] = { " ", "\t", "\r\n", "\n", " \t \r\n " };

	for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
		char *spaced = insert_at(t, at, sizeof at / sizeof at[0], ws[i]);
		struct rt_jwt_claims c;
		assert_int_equal(rt_jwt_verify(SECRET, spaced, strlen(spaced), NOW, &c, NULL),
				 RT_JWT_OK);
		assert_string_equal(c.role, "authenticated");
		rt_jwt_claims_deinit(&c);
		free(spaced);
	}
	free(t);
}

static void test_percent_decoded(void **state)
{
	(void)state;
	char *t = hs256_token(GOOD_PAYLOAD);
	size_t len = strlen(t);
	char *all = rt_xmalloc(3 * len + 1);
	char *lower = rt_xmalloc(3 * len + 1);

	for (size_t i = 0; i < len; i++) {
		snprintf(all + 3 * i, 4, "%%%02X", (unsigned char)t[i]);
		snprintf(lower + 3 * i, 4, "%%%02x", (unsigned char)t[i]);
	}
	assert_int_equal(verify_s(SECRET, all), RT_JWT_OK);
	assert_int_equal(verify_s(SECRET, lower), RT_JWT_OK);
	free(lower);
	free(all);

	/* Only the dots encoded, plus encoded and raw whitespace. */
	char *dots = rt_xmalloc(3 * len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (t[i] == '.') {
			memcpy(dots + o, "%2E", 3);
			o += 3;
		} else {
			dots[o++] = t[i];
		}
	}
	dots[o] = '\0';
	assert_int_equal(verify_s(SECRET, dots), RT_JWT_OK);
	const size_t at[] = { 0, 7, o };
	char *spaced = insert_at(dots, at, 3, "%20\n%0A%09 ");
	assert_int_equal(verify_s(SECRET, spaced), RT_JWT_OK);
	free(spaced);
	free(dots);

	/* A decoded byte is part of the token like any other. */
	char *broken = insert_at(t, (const size_t[]){ len - 1 }, 1, "%41");
	assert_int_equal(verify_s(SECRET, broken), RT_JWT_BAD_SIGNATURE);
	free(broken);
	free(t);
}

static void test_mint_round_trip(void **state)
{
	(void)state;
	json_t *extra = json_pack("{s:s, s:s, s:s, s:i, s:{s:[i,i]}}", "sub", "user-9", "email",
				  "x@example.com", "role", "overridden", "exp", 1, "app_metadata",
				  "ids", 1, 2);
	json_t *extra_before = json_deep_copy(extra);
	char *t = rt_jwt_mint(SECRET, "service_role", "supabase", NOW, 1900000000, extra);
	struct rt_jwt_claims c;

	assert_non_null(t);
	assert_true(json_equal(extra, extra_before));
	assert_int_equal(extra->refcount, 1);
	assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), NOW, &c, NULL), RT_JWT_OK);
	assert_string_equal(c.role, "service_role");
	assert_string_equal(c.sub, "user-9");
	assert_int_equal(c.exp, 1900000000);
	assert_string_equal(json_string_value(json_object_get(c.claims, "iss")), "supabase");
	assert_int_equal(json_integer_value(json_object_get(c.claims, "iat")), NOW);
	assert_string_equal(json_string_value(json_object_get(c.claims, "email")), "x@example.com");
	json_t *ids = json_object_get(json_object_get(c.claims, "app_metadata"), "ids");
	assert_int_equal(json_array_size(ids), 2);
	assert_int_equal(json_integer_value(json_array_get(ids, 1)), 2);
	assert_int_equal(json_object_size(c.claims), 7);
	rt_jwt_claims_deinit(&c);

	/* The minted header is plain HS256. */
	char *head = b64url(HS256_HDR, strlen(HS256_HDR));
	assert_int_equal(strchr(t, '.') - t, strlen(head));
	assert_memory_equal(t, head, strlen(head));
	free(head);

	assert_int_equal(verify_s("another-secret", t), RT_JWT_BAD_SIGNATURE);
	assert_int_equal(verify_n(SECRET, t, strlen(t), 1900000000, NULL), RT_JWT_EXPIRED);
	free(t);
	json_decref(extra_before);
	json_decref(extra);

	/* No iss, no extra, or an extra that is not an object. */
	json_t *not_object = json_integer(5);
	const json_t *extras[] = { NULL, not_object };
	for (size_t i = 0; i < 2; i++) {
		t = rt_jwt_mint(SECRET, "anon", NULL, NOW, NOW + 60, extras[i]);
		assert_non_null(t);
		assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), NOW, &c, NULL), RT_JWT_OK);
		assert_string_equal(c.role, "anon");
		assert_null(c.sub);
		assert_int_equal(c.exp, NOW + 60);
		assert_null(json_object_get(c.claims, "iss"));
		assert_int_equal(json_object_size(c.claims), 3);
		rt_jwt_claims_deinit(&c);
		free(t);
	}
	json_decref(not_object);

	assert_null(rt_jwt_mint(NULL, "anon", NULL, NOW, NOW + 60, NULL));
	assert_null(rt_jwt_mint("", "anon", NULL, NOW, NOW + 60, NULL));
	assert_null(rt_jwt_mint(SECRET, NULL, NULL, NOW, NOW + 60, NULL));
	assert_null(rt_jwt_mint(SECRET, "\xff", NULL, NOW, NOW + 60, NULL));
}

static void test_claims_copy(void **state)
{
	(void)state;
	char *t = hs256_token(GOOD_PAYLOAD);
	struct rt_jwt_claims src, dst;

	assert_int_equal(rt_jwt_verify(SECRET, t, strlen(t), NOW, &src, NULL), RT_JWT_OK);
	memset(&dst, 0xa5, sizeof dst);
	rt_jwt_claims_copy(&dst, &src);
	assert_ptr_not_equal(dst.role, src.role);
	assert_ptr_not_equal(dst.sub, src.sub);
	assert_ptr_not_equal(dst.claims, src.claims);
	assert_string_equal(dst.role, "authenticated");
	assert_string_equal(dst.sub, "user-1");
	assert_int_equal(dst.exp, 1900000000);
	assert_true(json_equal(dst.claims, src.claims));

	/* Deep: changing a nested value of the copy leaves the source alone. */
	json_object_set_new(json_object_get(dst.claims, "app_metadata"), "provider",
			    json_string("github"));
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(src.claims, "app_metadata"),
						  "provider")),
		"email");
	rt_jwt_claims_deinit(&src);
	assert_string_equal(dst.role, "authenticated");
	assert_string_equal(json_string_value(json_object_get(dst.claims, "email")),
			    "a@example.com");
	rt_jwt_claims_deinit(&dst);

	/* A zeroed struct copies as zeroed. */
	struct rt_jwt_claims empty = { 0 };
	memset(&dst, 0xa5, sizeof dst);
	rt_jwt_claims_copy(&dst, &empty);
	assert_null(dst.role);
	assert_null(dst.sub);
	assert_null(dst.claims);
	assert_int_equal(dst.exp, 0);
	rt_jwt_claims_deinit(&dst);
	free(t);
}

static void test_codes_and_messages(void **state)
{
	(void)state;
	const struct {
		enum rt_jwt_result r;
		const char *code;
		const char *msg;
	} table[] = {
		{ RT_JWT_OK, "", "" },
		{ RT_JWT_MALFORMED, "MalformedJWT", "The token provided is not a valid JWT" },
		{ RT_JWT_BAD_SIGNATURE, "JwtSignatureError", "Failed to validate JWT signature" },
		{ RT_JWT_NO_SIGNER, "JwtSignerError",
		  "Failed to generate JWT signer, check your JWT secret or JWKS configuration" },
		{ RT_JWT_EXPIRED, "InvalidJWTToken", "Token has expired 0 seconds ago" },
		{ RT_JWT_MISSING_CLAIMS, "InvalidJWTToken",
		  "Fields `role` and `exp` are required in JWT" },
		{ RT_JWT_BAD_EXP, "InvalidJWTToken", "Token expiration time is invalid" },
	};
	char msg[256];

	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		assert_string_equal(rt_jwt_code(table[i].r), table[i].code);
		memset(msg, 'z', sizeof msg);
		assert_ptr_equal(rt_jwt_message(table[i].r, 0, msg, sizeof msg), msg);
		assert_string_equal(msg, table[i].msg);
	}
	assert_string_equal(rt_jwt_message(RT_JWT_EXPIRED, 3600, msg, sizeof msg),
			    "Token has expired 3600 seconds ago");

	/* Cut to the capacity, always terminated; a zero capacity writes nothing. */
	assert_string_equal(rt_jwt_message(RT_JWT_MALFORMED, 0, msg, 6), "The t");
	assert_string_equal(rt_jwt_message(RT_JWT_EXPIRED, 12, msg, 8), "Token h");
	msg[0] = 'q';
	assert_ptr_equal(rt_jwt_message(RT_JWT_BAD_EXP, 0, msg, 0), msg);
	assert_int_equal(msg[0], 'q');
	assert_string_equal(rt_jwt_message(RT_JWT_BAD_EXP, 0, msg, 1), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_fills_claims),
		cmocka_unit_test(test_sub_only_when_string),
		cmocka_unit_test(test_hs384_hs512),
		cmocka_unit_test(test_alg_none_never_verifies),
		cmocka_unit_test(test_unsupported_alg_is_no_signer),
		cmocka_unit_test(test_missing_secret_is_no_signer),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_tampered_token),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_length_limit),
		cmocka_unit_test(test_not_nul_terminated),
		cmocka_unit_test(test_missing_claims),
		cmocka_unit_test(test_bad_exp),
		cmocka_unit_test(test_check_order),
		cmocka_unit_test(test_decimal_exp),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_whitespace_stripped),
		cmocka_unit_test(test_percent_decoded),
		cmocka_unit_test(test_mint_round_trip),
		cmocka_unit_test(test_claims_copy),
		cmocka_unit_test(test_codes_and_messages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
