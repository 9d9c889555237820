#include "auth/jwt.h"

#include <errno.h>
#include <inttypes.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"

/* Jansson and libjwt report out of memory as a plain failure; the server aborts instead. */
static _Noreturn void die_oom(const char *what)
{
	fprintf(stderr, "rtsync: out of memory (%s)\n", what);
	abort();
}

static json_t *json_or_die(json_t *v, const char *what)
{
	if (!v)
		die_oom(what);
	return v;
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_b64url(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/*
 * Percent-decodes token, then drops whitespace (Supabase: URI.decode, then
 * strip \s). out holds at least token_len + 1 bytes and is NUL-terminated.
 * Returns false on a '%' not followed by two hex digits.
 */
static bool clean_token(const char *token, size_t token_len, char *out, size_t *out_len)
{
	size_t n = 0;

	for (size_t i = 0; i < token_len; i++) {
		unsigned char c = (unsigned char)token[i];
		if (c == '%') {
			if (token_len - i < 3)
				return false;
			int hi = hex_value((unsigned char)token[i + 1]);
			int lo = hex_value((unsigned char)token[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (!is_space(c))
			out[n++] = (char)c;
	}
	out[n] = '\0';
	*out_len = n;
	return true;
}

/* An unpadded base64url segment: alphabet only, and a length a decoder accepts. */
static bool is_b64url_segment(const char *seg, size_t seg_len)
{
	if (seg_len % 4 == 1)
		return false;
	for (size_t i = 0; i < seg_len; i++) {
		if (!is_b64url((unsigned char)seg[i]))
			return false;
	}
	return true;
}

/* Decodes a segment that passed is_b64url_segment() (seg_len < INT_MAX)
 * into a malloc'ed buffer (*out, *out_len bytes, NUL-terminated). */
static bool b64url_decode(const char *seg, size_t seg_len, unsigned char **out, size_t *out_len)
{
	size_t padded = (seg_len + 3) / 4 * 4;
	char *b64 = rt_xmalloc(padded + 1);
	unsigned char *raw = rt_xmalloc(padded / 4 * 3 + 1);

	for (size_t i = 0; i < seg_len; i++)
		b64[i] = seg[i] == '-' ? '+' : seg[i] == '_' ? '/' : seg[i];
	for (size_t i = seg_len; i < padded; i++)
		b64[i] = '=';
	b64[padded] = '\0';

	int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)padded);
	free(b64);
	if (n < 0) {
		free(raw);
		return false;
	}
	/* EVP_DecodeBlock counts the zero bytes that stand for '=' padding. */
	*out_len = (size_t)n - (padded - seg_len);
	raw[*out_len] = 0;
	*out = raw;
	return true;
}

/* Decodes a segment that passed is_b64url_segment(); returns a JSON object or NULL. */
static json_t *decode_json_segment(const char *seg, size_t seg_len)
{
	unsigned char *raw;
	size_t raw_len;
	if (!b64url_decode(seg, seg_len, &raw, &raw_len))
		return NULL;
	json_error_t err;
	json_t *obj = json_loadb((const char *)raw, raw_len, 0, &err);
	if (!obj && json_error_code(&err) == json_error_out_of_memory)
		die_oom("token segment");
	if (obj && !json_is_object(obj)) {
		json_decref(obj);
		obj = NULL;
	}
	free(raw);
	return obj;
}

/*
 * Splits token into exactly three base64url segments and decodes the first two
 * as JSON objects. On success the caller owns *header and *payload.
 */
static bool parse_shape(const char *token, size_t token_len, json_t **header, json_t **payload)
{
	const char *dot1 = memchr(token, '.', token_len);
	if (!dot1)
		return false;
	const char *body = dot1 + 1;
	const char *dot2 = memchr(body, '.', token_len - (size_t)(body - token));
	if (!dot2)
		return false;
	const char *sig = dot2 + 1;
	size_t head_len = (size_t)(dot1 - token);
	size_t body_len = (size_t)(dot2 - body);
	size_t sig_len = token_len - (size_t)(sig - token);

	if (memchr(sig, '.', sig_len) || !is_b64url_segment(token, head_len) ||
	    !is_b64url_segment(body, body_len) || !is_b64url_segment(sig, sig_len))
		return false;

	*header = decode_json_segment(token, head_len);
	if (!*header)
		return false;
	*payload = decode_json_segment(body, body_len);
	if (!*payload) {
		json_decref(*header);
		*header = NULL;
		return false;
	}
	return true;
}

/* ---- keys ---- */

enum key_type { KEY_OCT, KEY_RSA, KEY_EC };

struct jwk {
	char *kid;          /* NULL: none */
	enum key_type type;
	jwt_alg_t alg;      /* the JWK's own "alg"; JWT_ALG_INVAL: any of its type */
	jwt_alg_t curve_alg; /* EC: the one ES algorithm of its curve */
	unsigned char *key; /* oct: the secret; RSA, EC: the public key as PEM */
	size_t key_len;
};

struct rt_jwt_keys {
	atomic_uint refs;
	char *secret; /* NULL: none */
	struct jwk *jwks;
	size_t n_jwks;
	char *aud, *iss;
};

/* The algorithm a header names, exact spelling; JWT_ALG_INVAL otherwise
 * ("none" included). */
static jwt_alg_t alg_of(const char *alg)
{
	static const struct {
		const char *name;
		jwt_alg_t alg;
	} algs[] = {
		{"HS256", JWT_ALG_HS256}, {"HS384", JWT_ALG_HS384}, {"HS512", JWT_ALG_HS512},
		{"RS256", JWT_ALG_RS256}, {"RS384", JWT_ALG_RS384}, {"RS512", JWT_ALG_RS512},
		{"ES256", JWT_ALG_ES256}, {"ES384", JWT_ALG_ES384}, {"ES512", JWT_ALG_ES512},
	};
	for (size_t i = 0; alg && i < sizeof algs / sizeof *algs; i++)
		if (!strcmp(alg, algs[i].name))
			return algs[i].alg;
	return JWT_ALG_INVAL;
}

static enum key_type type_of_alg(jwt_alg_t alg)
{
	return alg <= JWT_ALG_HS512 ? KEY_OCT : alg <= JWT_ALG_RS512 ? KEY_RSA : KEY_EC;
}

static void jwk_deinit(struct jwk *k)
{
	free(k->kid);
	if (k->key)
		OPENSSL_cleanse(k->key, k->key_len);
	free(k->key);
}

/* A base64url member of a JWK, decoded; false when missing or not base64url. */
static bool jwk_bytes(const json_t *jwk, const char *name, unsigned char **out, size_t *len)
{
	const char *v = json_string_value(json_object_get(jwk, name));
	size_t n = v ? strlen(v) : 0;
	if (!n || n > 8192 || !is_b64url_segment(v, n))
		return false;
	return b64url_decode(v, n, out, len);
}

/* The PEM text of a public key built from params; NULL on failure. */
static unsigned char *pem_of(const char *type, OSSL_PARAM_BLD *bld, size_t *len, char *err,
			     size_t err_cap)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;
	unsigned char *pem = NULL;
	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		snprintf(err, err_cap, "not a valid %s public key", type);
		goto out;
	}
	EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	bool is_valid = check && EVP_PKEY_public_check(check) > 0;
	EVP_PKEY_CTX_free(check);
	if (!is_valid) {
		snprintf(err, err_cap, "not a valid %s public key", type);
		goto out;
	}
	if (!strcmp(type, "RSA") && EVP_PKEY_get_bits(pkey) < 2048) {
		snprintf(err, err_cap, "an RSA key of %d bits (at least 2048 are needed)",
			 EVP_PKEY_get_bits(pkey));
		goto out;
	}
	BIO *mem = BIO_new(BIO_s_mem());
	char *data;
	long n;
	if (mem && PEM_write_bio_PUBKEY(mem, pkey) && (n = BIO_get_mem_data(mem, &data)) > 0) {
		pem = rt_xmalloc((size_t)n + 1);
		memcpy(pem, data, (size_t)n);
		pem[n] = 0;
		*len = (size_t)n;
	} else {
		snprintf(err, err_cap, "cannot encode the key");
	}
	BIO_free(mem);
out:
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pem;
}

static int jwk_rsa(const json_t *j, struct jwk *k, char *err, size_t err_cap)
{
	unsigned char *n = NULL, *e = NULL;
	size_t n_len, e_len;
	int rc = -1;
	if (!jwk_bytes(j, "n", &n, &n_len) || !jwk_bytes(j, "e", &e, &e_len)) {
		snprintf(err, err_cap, "an RSA key needs \"n\" and \"e\" in base64url");
		goto out;
	}
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *bn = BN_bin2bn(n, (int)n_len, NULL), *be = BN_bin2bn(e, (int)e_len, NULL);
	if (bld && bn && be && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
	    (k->key = pem_of("RSA", bld, &k->key_len, err, err_cap)))
		rc = 0;
	else if (!*err)
		snprintf(err, err_cap, "not a valid RSA public key");
	BN_free(bn);
	BN_free(be);
	OSSL_PARAM_BLD_free(bld);
out:
	free(n);
	free(e);
	return rc;
}

static int jwk_ec(const json_t *j, struct jwk *k, char *err, size_t err_cap)
{
	static const struct {
		const char *crv, *group;
		size_t size;
		jwt_alg_t alg;
	} curves[] = {
		{"P-256", "prime256v1", 32, JWT_ALG_ES256},
		{"P-384", "secp384r1", 48, JWT_ALG_ES384},
		{"P-521", "secp521r1", 66, JWT_ALG_ES512},
	};
	const char *crv = json_string_value(json_object_get(j, "crv"));
	size_t c = 0;
	while (c < 3 && (!crv || strcmp(crv, curves[c].crv)))
		c++;
	if (c == 3) {
		snprintf(err, err_cap, "an EC key's \"crv\" must be P-256, P-384 or P-521");
		return -1;
	}
	unsigned char *x = NULL, *y = NULL;
	size_t x_len, y_len;
	int rc = -1;
	if (!jwk_bytes(j, "x", &x, &x_len) || !jwk_bytes(j, "y", &y, &y_len) ||
	    x_len != curves[c].size || y_len != curves[c].size) {
		snprintf(err, err_cap, "an EC key needs \"x\" and \"y\" of %zu bytes in base64url",
			 curves[c].size);
		goto out;
	}
	unsigned char pub[1 + 2 * 66];
	pub[0] = 0x04; /* uncompressed point */
	memcpy(pub + 1, x, x_len);
	memcpy(pub + 1 + x_len, y, y_len);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	if (bld &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[c].group, 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + x_len + y_len) &&
	    (k->key = pem_of("EC", bld, &k->key_len, err, err_cap))) {
		k->curve_alg = curves[c].alg;
		rc = 0;
	}
	OSSL_PARAM_BLD_free(bld);
out:
	free(x);
	free(y);
	return rc;
}

/* One key of a JWKS. Returns 1 when added, 0 when skipped (not for
 * signatures), -1 on an error. */
static int jwk_parse(const json_t *j, struct jwk *k, char *err, size_t err_cap)
{
	memset(k, 0, sizeof *k);
	const char *kty = json_string_value(json_object_get(j, "kty"));
	const json_t *kid = json_object_get(j, "kid");
	const char *use = json_string_value(json_object_get(j, "use"));
	const json_t *alg = json_object_get(j, "alg");
	if (!json_is_object(j) || !kty) {
		snprintf(err, err_cap, "a key is an object with a \"kty\"");
		return -1;
	}
	if (kid && (!json_is_string(kid) || !json_string_length(kid) ||
		    json_string_length(kid) > 256)) {
		snprintf(err, err_cap, "\"kid\" must be a string of 1 to 256 bytes");
		return -1;
	}
	if (use && strcmp(use, "sig"))
		return 0; /* an encryption key */
	k->alg = JWT_ALG_INVAL;
	if (alg && (k->alg = alg_of(json_string_value(alg))) == JWT_ALG_INVAL)
		return 0; /* an algorithm rtsync does not verify (EdDSA, PS256, …) */
	int rc;
	if (!strcmp(kty, "RSA")) {
		k->type = KEY_RSA;
		rc = jwk_rsa(j, k, err, err_cap);
	} else if (!strcmp(kty, "EC")) {
		k->type = KEY_EC;
		rc = jwk_ec(j, k, err, err_cap);
	} else if (!strcmp(kty, "oct")) {
		k->type = KEY_OCT;
		rc = jwk_bytes(j, "k", &k->key, &k->key_len) && k->key_len ? 0 : -1;
		if (rc)
			snprintf(err, err_cap, "an oct key needs \"k\" in base64url");
	} else {
		return 0; /* OKP and others */
	}
	if (!rc && k->alg != JWT_ALG_INVAL &&
	    (type_of_alg(k->alg) != k->type || (k->type == KEY_EC && k->alg != k->curve_alg))) {
		snprintf(err, err_cap, "\"alg\" %s does not fit the key", json_string_value(alg));
		rc = -1;
	}
	if (rc) {
		jwk_deinit(k);
		return -1;
	}
	k->kid = kid ? rt_xstrdup(json_string_value(kid)) : NULL;
	return 1;
}

struct rt_jwt_keys *rt_jwt_keys_new(const struct rt_jwt_keys_config *cfg, char *err,
				    size_t err_cap)
{
	struct rt_jwt_keys *k = rt_xcalloc(1, sizeof *k);
	atomic_init(&k->refs, 1);
	if (cfg->secret && *cfg->secret)
		k->secret = rt_xstrdup(cfg->secret);
	k->aud = cfg->aud && *cfg->aud ? rt_xstrdup(cfg->aud) : NULL;
	k->iss = cfg->iss && *cfg->iss ? rt_xstrdup(cfg->iss) : NULL;
	if (!cfg->jwks)
		return k;
	json_error_t je;
	json_t *doc = cfg->jwks_len <= RT_JWT_MAX_JWKS ? json_loadb(cfg->jwks, cfg->jwks_len, 0, &je)
						       : NULL;
	const json_t *keys = json_object_get(doc, "keys");
	if (!json_is_array(keys) || json_array_size(keys) > RT_JWT_MAX_KEYS) {
		snprintf(err, err_cap,
			 cfg->jwks_len > RT_JWT_MAX_JWKS
				 ? "the JWKS is larger than 1 MiB"
				 : "a JWKS is a JSON object {\"keys\": [...]} of at most %d keys",
			 RT_JWT_MAX_KEYS);
		goto fail;
	}
	k->jwks = rt_xcalloc(json_array_size(keys) + 1, sizeof *k->jwks);
	size_t i;
	const json_t *j;
	json_array_foreach(keys, i, j) {
		char why[200] = "";
		int r = jwk_parse(j, &k->jwks[k->n_jwks], why, sizeof why);
		if (r < 0) {
			snprintf(err, err_cap, "JWKS key %zu: %s", i, why);
			goto fail;
		}
		k->n_jwks += (size_t)r;
	}
	json_decref(doc);
	return k;
fail:
	json_decref(doc);
	rt_jwt_keys_unref(k);
	return NULL;
}

struct rt_jwt_keys *rt_jwt_keys_ref(struct rt_jwt_keys *k)
{
	atomic_fetch_add(&k->refs, 1);
	return k;
}

void rt_jwt_keys_unref(struct rt_jwt_keys *k)
{
	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	for (size_t i = 0; i < k->n_jwks; i++)
		jwk_deinit(&k->jwks[i]);
	free(k->jwks);
	if (k->secret)
		OPENSSL_cleanse(k->secret, strlen(k->secret));
	free(k->secret);
	free(k->aud);
	free(k->iss);
	free(k);
}

size_t rt_jwt_keys_count(const struct rt_jwt_keys *k)
{
	return k->n_jwks;
}

/* The key that checks a token of algorithm alg and header kid (NULL:
 * none), as Supabase Realtime picks it: RS and ES by kid among keys of
 * their type; HS by kid among oct keys, else the secret. Sets *key, *len;
 * false when there is none. */
static bool pick_key(const struct rt_jwt_keys *k, jwt_alg_t alg, const char *kid,
		     const unsigned char **key, size_t *len)
{
	enum key_type type = type_of_alg(alg);
	for (size_t i = 0; kid && i < k->n_jwks; i++) {
		const struct jwk *j = &k->jwks[i];
		if (j->type != type || !j->kid || strcmp(j->kid, kid) ||
		    (j->alg != JWT_ALG_INVAL && j->alg != alg) ||
		    (type == KEY_EC && j->curve_alg != alg))
			continue;
		*key = j->key;
		*len = j->key_len;
		return true;
	}
	if (type != KEY_OCT || !k->secret)
		return false;
	*key = (const unsigned char *)k->secret;
	*len = strlen(k->secret);
	return true;
}

/* Whether claim v (a string, or for `aud` an array of strings) holds want. */
static bool claim_has(const json_t *v, const char *want)
{
	if (json_is_string(v))
		return !strcmp(json_string_value(v), want);
	size_t i;
	const json_t *e;
	json_array_foreach(v, i, e) {
		if (json_is_string(e) && !strcmp(json_string_value(e), want))
			return true;
	}
	return false;
}

/* Rounds half away from zero, as Elixir's round/1 does; saturates outside int64. */
static int64_t round_seconds(double d)
{
	if (d >= 0x1p63)
		return INT64_MAX;
	if (d < -0x1p63)
		return INT64_MIN;
	int64_t t = (int64_t)d;
	double frac = d - (double)t;
	if (frac >= 0.5)
		t++;
	else if (frac <= -0.5)
		t--;
	return t;
}

static int64_t number_seconds(const json_t *v)
{
	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	return round_seconds(json_real_value(v));
}

/* Replaces a decimal claim by its rounded integer, as Supabase does for exp and iat. */
static void round_claim(json_t *claims, const char *key)
{
	json_t *v = json_object_get(claims, key);

	if (json_is_real(v) &&
	    json_object_set_new(claims, key, json_integer(round_seconds(json_real_value(v)))))
		die_oom(key);
}

enum rt_jwt_result rt_jwt_verify(const char *secret, const char *token, size_t token_len,
				 int64_t now_s, struct rt_jwt_claims *out, int64_t *expired_ago_s)
{
	struct rt_jwt_keys k = {.secret = (char *)secret};
	return rt_jwt_verify_keys(&k, token, token_len, now_s, out, expired_ago_s, NULL);
}

enum rt_jwt_result rt_jwt_verify_keys(const struct rt_jwt_keys *keys, const char *token,
				      size_t token_len, int64_t now_s, struct rt_jwt_claims *out,
				      int64_t *expired_ago_s, bool *is_unknown_kid)
{
	enum rt_jwt_result rc = RT_JWT_MALFORMED;
	json_t *header = NULL;
	json_t *payload = NULL;
	jwt_t *jwt = NULL;
	char *clean = NULL;
	size_t clean_len;

	memset(out, 0, sizeof(*out));
	if (expired_ago_s)
		*expired_ago_s = 0;
	if (!token || token_len > RT_JWT_MAX_LEN)
		goto out_free;

	clean = rt_xmalloc(token_len + 1);
	if (!clean_token(token, token_len, clean, &clean_len) ||
	    !parse_shape(clean, clean_len, &header, &payload))
		goto out_free;

	rc = RT_JWT_NO_SIGNER;
	jwt_alg_t alg = alg_of(json_string_value(json_object_get(header, "alg")));
	const json_t *kid = json_object_get(header, "kid");
	/* libjwt refuses any string `typ` other than "JWT", so no signer can check it. */
	const char *typ = json_string_value(json_object_get(header, "typ"));
	if (alg == JWT_ALG_INVAL || (typ && strcasecmp(typ, "JWT")) || (kid && !json_is_string(kid)))
		goto out_free;
	/* The key is chosen by the algorithm's family first, so a token cannot
	 * have a public key used as an HMAC secret (algorithm confusion). */
	const unsigned char *key;
	size_t key_len;
	if (!pick_key(keys, alg, json_string_value(kid), &key, &key_len) || !key_len ||
	    key_len > INT_MAX) {
		if (is_unknown_kid)
			*is_unknown_kid = kid && type_of_alg(alg) != KEY_OCT;
		goto out_free;
	}

	rc = RT_JWT_BAD_SIGNATURE;
	int err = jwt_decode(&jwt, clean, key, (int)key_len);
	if (err == ENOMEM)
		die_oom("jwt_decode");
	if (err || jwt_get_alg(jwt) != alg)
		goto out_free;

	json_t *exp = json_object_get(payload, "exp");
	json_t *role = json_object_get(payload, "role");
	rc = RT_JWT_BAD_EXP;
	if (exp && !json_is_number(exp))
		goto out_free;
	rc = RT_JWT_MISSING_CLAIMS;
	if (!exp || !json_is_string(role))
		goto out_free;

	int64_t exp_s = number_seconds(exp);
	if (exp_s <= now_s) {
		rc = RT_JWT_EXPIRED;
		if (expired_ago_s && __builtin_sub_overflow(now_s, exp_s, expired_ago_s))
			*expired_ago_s = INT64_MAX;
		goto out_free;
	}

	const json_t *nbf = json_object_get(payload, "nbf");
	rc = RT_JWT_NOT_YET_VALID;
	if (nbf && (!json_is_number(nbf) || number_seconds(nbf) > now_s))
		goto out_free;
	rc = RT_JWT_BAD_CLAIM;
	if ((keys->aud && !claim_has(json_object_get(payload, "aud"), keys->aud)) ||
	    (keys->iss && !json_is_string(json_object_get(payload, "iss"))) ||
	    (keys->iss && !claim_has(json_object_get(payload, "iss"), keys->iss)))
		goto out_free;

	const char *sub = json_string_value(json_object_get(payload, "sub"));
	out->role = rt_xstrdup(json_string_value(role));
	out->sub = sub ? rt_xstrdup(sub) : NULL;
	out->exp = exp_s;
	round_claim(payload, "exp");
	round_claim(payload, "iat");
	out->claims = payload;
	payload = NULL;
	rc = RT_JWT_OK;
out_free:
	jwt_free(jwt);
	json_decref(payload);
	json_decref(header);
	free(clean);
	return rc;
}

void rt_jwt_claims_deinit(struct rt_jwt_claims *c)
{
	free(c->role);
	free(c->sub);
	json_decref(c->claims);
	memset(c, 0, sizeof(*c));
}

void rt_jwt_claims_copy(struct rt_jwt_claims *dst, const struct rt_jwt_claims *src)
{
	dst->role = src->role ? rt_xstrdup(src->role) : NULL;
	dst->sub = src->sub ? rt_xstrdup(src->sub) : NULL;
	dst->exp = src->exp;
	dst->claims = src->claims ? json_or_die(json_deep_copy(src->claims), "claims copy") : NULL;
}

const char *rt_jwt_code(enum rt_jwt_result r)
{
	switch (r) {
	case RT_JWT_MALFORMED:
		return "MalformedJWT";
	case RT_JWT_BAD_SIGNATURE:
		return "JwtSignatureError";
	case RT_JWT_NO_SIGNER:
		return "JwtSignerError";
	case RT_JWT_EXPIRED:
	case RT_JWT_MISSING_CLAIMS:
	case RT_JWT_BAD_EXP:
	case RT_JWT_NOT_YET_VALID:
	case RT_JWT_BAD_CLAIM:
		return "InvalidJWTToken";
	case RT_JWT_OK:
		break;
	}
	return "";
}

char *rt_jwt_message(enum rt_jwt_result r, int64_t expired_ago_s, char *out, size_t out_cap)
{
	const char *msg = "";

	if (!out_cap)
		return out;
	switch (r) {
	case RT_JWT_MALFORMED:
		msg = "The token provided is not a valid JWT";
		break;
	case RT_JWT_BAD_SIGNATURE:
		msg = "Failed to validate JWT signature";
		break;
	case RT_JWT_NO_SIGNER:
		msg = "Failed to generate JWT signer, check your JWT secret or JWKS configuration";
		break;
	case RT_JWT_EXPIRED:
		snprintf(out, out_cap, "Token has expired %" PRId64 " seconds ago", expired_ago_s);
		return out;
	case RT_JWT_MISSING_CLAIMS:
		msg = "Fields `role` and `exp` are required in JWT";
		break;
	case RT_JWT_BAD_EXP:
		msg = "Token expiration time is invalid";
		break;
	case RT_JWT_NOT_YET_VALID:
		msg = "Token is not valid yet (nbf)";
		break;
	case RT_JWT_BAD_CLAIM:
		msg = "Token audience or issuer is not the configured one";
		break;
	case RT_JWT_OK:
		break;
	}
	snprintf(out, out_cap, "%s", msg);
	return out;
}

char *rt_jwt_mint(const char *secret, const char *role, const char *iss, int64_t now_s,
		  int64_t exp_s, const json_t *extra)
{
	size_t secret_len = secret ? strlen(secret) : 0;
	char *grants_json = NULL;
	char *token = NULL;
	jwt_t *jwt = NULL;
	json_t *grants;

	if (!secret_len || secret_len > INT_MAX || !role)
		return NULL;

	/* The named claims override members of extra with the same name. */
	if (json_is_object(extra))
		grants = json_or_die(json_deep_copy(extra), "mint claims");
	else
		grants = json_or_die(json_object(), "mint claims");
	if ((iss && json_object_set_new(grants, "iss", json_string(iss))) ||
	    json_object_set_new(grants, "role", json_string(role)) ||
	    json_object_set_new(grants, "iat", json_or_die(json_integer(now_s), "iat")) ||
	    json_object_set_new(grants, "exp", json_or_die(json_integer(exp_s), "exp")))
		goto out_free;

	grants_json = json_dumps(grants, JSON_COMPACT);
	if (!grants_json || jwt_new(&jwt) ||
	    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)secret_len) ||
	    jwt_add_grants_json(jwt, grants_json))
		goto out_free;
	token = jwt_encode_str(jwt);
out_free:
	jwt_free(jwt);
	free(grants_json);
	json_decref(grants);
	return token;
}
