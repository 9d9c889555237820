/*
 * Signing keys (src/auth/jwt.h, rt_jwt_keys): RS256 and ES256 tokens signed
 * here with OpenSSL and checked against a JWKS built from the same keys;
 * kid selection, the attacks (alg none, HS/RS confusion, a kid of another
 * key type, an unknown kid), nbf, aud and iss, and JWKS documents refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "common/alloc.h"

#define NOW 1700000000
#define SECRET "super-secret-jwt-token-with-at-least-32-characters-long"

static EVP_PKEY *rsa_key, *ec_key, *ec384_key;

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

static char *bn_b64(const BIGNUM *bn, size_t pad)
{
	size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
	unsigned char *buf = rt_xmalloc(n);
	assert_true(BN_bn2binpad(bn, buf, (int)n) == (int)n);
	char *s = b64url(buf, n);
	free(buf);
	return s;
}

static char *param_b64(EVP_PKEY *k, const char *name, size_t pad)
{
	BIGNUM *bn = NULL;
	assert_true(EVP_PKEY_get_bn_param(k, name, &bn));
	char *s = bn_b64(bn, pad);
	BN_free(bn);
	return s;
}

/* The JWK text of k's public half with kid (and alg when not NULL). */
static char *jwk_of(EVP_PKEY *k, const char *kid, const char *alg)
{
	char *out = rt_xmalloc(4096);
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
		char *n = param_b64(k, OSSL_PKEY_PARAM_RSA_N, 0), *e = param_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
		snprintf(out, 4096, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",%s%s%s\"n\":\"%s\",\"e\":\"%s\"}",
			 kid, alg ? "\"alg\":\"" : "", alg ? alg : "", alg ? "\"," : "", n, e);
		free(n);
		free(e);
	} else {
		size_t size = EVP_PKEY_get_bits(k) == 256 ? 32 : 48;
		char *x = param_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, size);
		char *y = param_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, size);
		snprintf(out, 4096, "{\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":\"%s\",%s%s%s\"x\":\"%s\",\"y\":\"%s\"}",
			 kid, size == 32 ? "P-256" : "P-384", alg ? "\"alg\":\"" : "", alg ? alg : "",
			 alg ? "\"," : "", x, y);
		free(x);
		free(y);
	}
	return out;
}

/* header.payload.signature signed with k (RSA: PKCS#1 v1.5 SHA-256; EC:
 * raw r||s as JWS wants), or with an HMAC of secret when k is NULL. */
static char *sign(EVP_PKEY *k, const char *secret, size_t secret_len, const char *header,
		  const char *payload)
{
	char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
	size_t in_len = strlen(h) + 1 + strlen(p);
	char *in = rt_xmalloc(in_len + 1);
	snprintf(in, in_len + 1, "%s.%s", h, p);
	unsigned char sig[1024];
	size_t sig_len = sizeof sig;
	if (!k) {
		unsigned int n = 0;
		HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)in, in_len, sig, &n);
		sig_len = n;
	} else {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		const EVP_MD *md = EVP_PKEY_get_bits(k) == 384 ? EVP_sha384() : EVP_sha256();
		assert_int_equal(EVP_DigestSignInit(ctx, NULL, md, NULL, k), 1);
		assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)in, in_len), 1);
		EVP_MD_CTX_free(ctx);
		if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
			const unsigned char *der = sig;
			ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &der, (long)sig_len);
			assert_non_null(es);
			size_t size = EVP_PKEY_get_bits(k) == 256 ? 32 : 48;
			BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)size);
			BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + size, (int)size);
			sig_len = 2 * size;
			ECDSA_SIG_free(es);
		}
	}
	char *s = b64url(sig, sig_len);
	size_t out_len = in_len + 1 + strlen(s) + 1;
	char *out = rt_xmalloc(out_len);
	snprintf(out, out_len, "%s.%s", in, s);
	free(h);
	free(p);
	free(in);
	free(s);
	return out;
}

static struct rt_jwt_keys *keys_of(const char *jwks, const char *aud, const char *iss)
{
	char err[256] = "";
	struct rt_jwt_keys_config c = {.secret = SECRET, .jwks = jwks, .jwks_len = strlen(jwks),
				       .aud = aud, .iss = iss};
	struct rt_jwt_keys *k = rt_jwt_keys_new(&c, err, sizeof err);
	if (!k)
		fail_msg("keys: %s", err);
	return k;
}

static char *standard_jwks(void)
{
	char *r = jwk_of(rsa_key, "rsa-1", "RS256"), *e = jwk_of(ec_key, "ec-1", NULL);
	char *e384 = jwk_of(ec384_key, "ec-384", "ES384");
	char *doc = rt_xmalloc(16384);
	snprintf(doc, 16384,
		 "{\"keys\":[%s,%s,%s,{\"kty\":\"OKP\",\"kid\":\"ed\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"},"
		 "{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
		 "{\"kty\":\"oct\",\"kid\":\"hs-1\",\"k\":\"%s\"}]}",
		 r, e, e384, "b3RoZXItc2VjcmV0LW9mLWF0LWxlYXN0LTMyLWJ5dGVzLWxvbmc");
	free(r);
	free(e);
	free(e384);
	return doc;
}

#define PAYLOAD "{\"role\":\"authenticated\",\"sub\":\"u1\",\"exp\":1900000000}"

static enum rt_jwt_result check(const struct rt_jwt_keys *k, const char *token, bool *unknown)
{
	struct rt_jwt_claims c;
	bool u = false;
	enum rt_jwt_result r = rt_jwt_verify_keys(k, token, strlen(token), NOW, &c, NULL, &u);
	if (unknown)
		*unknown = u;
	if (r == RT_JWT_OK) {
		assert_string_equal(c.role, "authenticated");
		rt_jwt_claims_deinit(&c);
	}
	return r;
}

static void test_rs256_es256(void **state)
{
	char *doc = standard_jwks();
	struct rt_jwt_keys *k = keys_of(doc, NULL, NULL);
	assert_int_equal(rt_jwt_keys_count(k), 4); /* OKP and the encryption key skipped */
	char *t = sign(rsa_key, NULL, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rsa-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_OK);
	t[strlen(t) - 3] = t[strlen(t) - 3] == 'A' ? 'B' : 'A'; /* the signature altered, still base64url */
	assert_int_equal(check(k, t, NULL), RT_JWT_BAD_SIGNATURE);
	free(t);
	t = sign(ec_key, NULL, 0, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"ec-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_OK);
	free(t);
	t = sign(ec384_key, NULL, 0, "{\"alg\":\"ES384\",\"kid\":\"ec-384\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_OK);
	free(t);
	/* HS256 by the oct key of its kid, and by the secret without a kid */
	const char oct[] = "other-secret-of-at-least-32-bytes-long";
	t = sign(NULL, oct, strlen(oct), "{\"alg\":\"HS256\",\"kid\":\"hs-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_OK);
	free(t);
	t = sign(NULL, SECRET, strlen(SECRET), "{\"alg\":\"HS256\",\"kid\":\"gotrue\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_OK); /* an HS kid without a JWK: the secret */
	free(t);
	rt_jwt_keys_unref(k);
	free(doc);
}

static void test_attacks(void **state)
{
	char *doc = standard_jwks();
	struct rt_jwt_keys *k = keys_of(doc, NULL, NULL);
	bool unknown;
	/* alg none, unsigned */
	char *t = sign(NULL, "", 0, "{\"alg\":\"none\",\"kid\":\"rsa-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_NO_SIGNER);
	free(t);
	/* HS256 keyed with the RSA public key's PEM: the secret checks it, not the key */
	BIO *mem = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(mem, rsa_key);
	char *pem;
	long pem_len = BIO_get_mem_data(mem, &pem);
	t = sign(NULL, pem, (size_t)pem_len, "{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_BAD_SIGNATURE);
	free(t);
	BIO_free(mem);
	/* an RS token naming the EC key, an ES token naming the RSA key */
	t = sign(rsa_key, NULL, 0, "{\"alg\":\"RS256\",\"kid\":\"ec-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, &unknown), RT_JWT_NO_SIGNER);
	assert_true(unknown);
	free(t);
	t = sign(ec_key, NULL, 0, "{\"alg\":\"ES256\",\"kid\":\"rsa-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_NO_SIGNER);
	free(t);
	/* ES384 claimed for the P-256 key */
	t = sign(ec_key, NULL, 0, "{\"alg\":\"ES384\",\"kid\":\"ec-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_NO_SIGNER);
	free(t);
	/* RS384 for a key whose JWK says RS256 */
	t = sign(rsa_key, NULL, 0, "{\"alg\":\"RS384\",\"kid\":\"rsa-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_NO_SIGNER);
	free(t);
	/* an unknown kid, no kid, a kid that is not a string */
	t = sign(rsa_key, NULL, 0, "{\"alg\":\"RS256\",\"kid\":\"rotated\"}", PAYLOAD);
	assert_int_equal(check(k, t, &unknown), RT_JWT_NO_SIGNER);
	assert_true(unknown);
	free(t);
	t = sign(rsa_key, NULL, 0, "{\"alg\":\"RS256\"}", PAYLOAD);
	assert_int_equal(check(k, t, &unknown), RT_JWT_NO_SIGNER);
	assert_false(unknown);
	free(t);
	t = sign(rsa_key, NULL, 0, "{\"alg\":\"RS256\",\"kid\":7}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_NO_SIGNER);
	free(t);
	/* signed by another RSA key under the known kid */
	EVP_PKEY *other = EVP_RSA_gen(2048);
	t = sign(other, NULL, 0, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_BAD_SIGNATURE);
	free(t);
	EVP_PKEY_free(other);
	/* expired, not yet valid */
	t = sign(ec_key, NULL, 0, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}",
		 "{\"role\":\"anon\",\"exp\":1600000000}");
	assert_int_equal(check(k, t, NULL), RT_JWT_EXPIRED);
	free(t);
	t = sign(ec_key, NULL, 0, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}",
		 "{\"role\":\"anon\",\"exp\":1900000000,\"nbf\":1800000000}");
	assert_int_equal(check(k, t, NULL), RT_JWT_NOT_YET_VALID);
	free(t);
	t = sign(ec_key, NULL, 0, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}",
		 "{\"role\":\"authenticated\",\"exp\":1900000000,\"nbf\":1600000000}");
	assert_int_equal(check(k, t, NULL), RT_JWT_OK);
	free(t);
	rt_jwt_keys_unref(k);
	free(doc);
}

static void test_aud_iss(void **state)
{
	char *doc = standard_jwks();
	struct rt_jwt_keys *k = keys_of(doc, "authenticated", "https://x.example/auth/v1");
	const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}";
	static const struct {
		const char *payload;
		enum rt_jwt_result want;
	} cases[] = {
		{"{\"role\":\"a\",\"exp\":1900000000,\"aud\":\"authenticated\",\"iss\":\"https://x.example/auth/v1\"}", RT_JWT_OK},
		{"{\"role\":\"a\",\"exp\":1900000000,\"aud\":[\"x\",\"authenticated\"],\"iss\":\"https://x.example/auth/v1\"}", RT_JWT_OK},
		{"{\"role\":\"a\",\"exp\":1900000000,\"aud\":\"other\",\"iss\":\"https://x.example/auth/v1\"}", RT_JWT_BAD_CLAIM},
		{"{\"role\":\"a\",\"exp\":1900000000,\"iss\":\"https://x.example/auth/v1\"}", RT_JWT_BAD_CLAIM},
		{"{\"role\":\"a\",\"exp\":1900000000,\"aud\":\"authenticated\",\"iss\":\"https://evil\"}", RT_JWT_BAD_CLAIM},
		{"{\"role\":\"a\",\"exp\":1900000000,\"aud\":\"authenticated\",\"iss\":[\"https://x.example/auth/v1\"]}", RT_JWT_BAD_CLAIM},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *t = sign(ec_key, NULL, 0, hdr, cases[i].payload);
		struct rt_jwt_claims c;
		enum rt_jwt_result r = rt_jwt_verify_keys(k, t, strlen(t), NOW, &c, NULL, NULL);
		if (r != cases[i].want)
			fail_msg("case %zu: %d, want %d", i, r, cases[i].want);
		if (r == RT_JWT_OK)
			rt_jwt_claims_deinit(&c);
		free(t);
	}
	char msg[128];
	assert_string_equal(rt_jwt_code(RT_JWT_BAD_CLAIM), "InvalidJWTToken");
	assert_non_null(strstr(rt_jwt_message(RT_JWT_NOT_YET_VALID, 0, msg, sizeof msg), "not valid yet"));
	rt_jwt_keys_unref(k);
	free(doc);
}

static void test_bad_documents(void **state)
{
	char *small = NULL;
	{
		EVP_PKEY *k1024 = EVP_RSA_gen(1024);
		small = jwk_of(k1024, "small", NULL);
		EVP_PKEY_free(k1024);
	}
	char *ec = jwk_of(ec_key, "ec", "RS256"); /* alg of another type */
	char off_curve[1024];
	snprintf(off_curve, sizeof off_curve,
		 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"bad\",\"x\":\"%s\",\"y\":\"%s\"}",
		 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE");
	char docs[6][4200];
	snprintf(docs[0], sizeof docs[0], "{\"keys\":[%s]}", small);
	snprintf(docs[1], sizeof docs[1], "{\"keys\":[%s]}", ec);
	snprintf(docs[2], sizeof docs[2], "{\"keys\":[%s]}", off_curve);
	snprintf(docs[3], sizeof docs[3], "[]");
	snprintf(docs[4], sizeof docs[4], "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"*\",\"e\":\"AQAB\"}]}");
	snprintf(docs[5], sizeof docs[5], "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQ\",\"y\":\"AQ\"}]}");
	for (size_t i = 0; i < 6; i++) {
		char err[256] = "";
		struct rt_jwt_keys_config c = {.jwks = docs[i], .jwks_len = strlen(docs[i])};
		struct rt_jwt_keys *k = rt_jwt_keys_new(&c, err, sizeof err);
		if (k)
			fail_msg("document %zu accepted", i);
		assert_true(strlen(err) > 0);
	}
	free(small);
	free(ec);
	/* no secret and no key: HS and RS both unsigned-for */
	struct rt_jwt_keys_config none = {0};
	char err[64];
	struct rt_jwt_keys *k = rt_jwt_keys_new(&none, err, sizeof err);
	assert_non_null(k);
	char *t = sign(NULL, SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", PAYLOAD);
	assert_int_equal(check(k, t, NULL), RT_JWT_NO_SIGNER);
	free(t);
	rt_jwt_keys_unref(k);
}

static int setup(void **state)
{
	rsa_key = EVP_RSA_gen(2048);
	ec_key = EVP_EC_gen("P-256");
	ec384_key = EVP_EC_gen("P-384");
	return !rsa_key || !ec_key || !ec384_key;
}

static int teardown(void **state)
{
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(ec384_key);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rs256_es256),
		cmocka_unit_test(test_attacks),
		cmocka_unit_test(test_aud_iss),
		cmocka_unit_test(test_bad_documents),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
