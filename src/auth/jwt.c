#include "auth/jwt.h"

#include <errno.h>
#include <inttypes.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/evp.h>
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

/* Decodes a segment that passed is_b64url_segment(); returns a JSON object or NULL. */
static json_t *decode_json_segment(const char *seg, size_t seg_len)
{
	size_t padded = (seg_len + 3) / 4 * 4;
	char *b64 = rt_xmalloc(padded + 1);
	unsigned char *raw = rt_xmalloc(padded / 4 * 3 + 1);
	json_t *obj = NULL;

	for (size_t i = 0; i < seg_len; i++)
		b64[i] = seg[i] == '-' ? '+' : seg[i] == '_' ? '/' : seg[i];
	for (size_t i = seg_len; i < padded; i++)
		b64[i] = '=';
	b64[padded] = '\0';

	int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)padded);
	if (n < 0)
		goto out_free;
	/* EVP_DecodeBlock counts the zero bytes that stand for '=' padding. */
	size_t raw_len = (size_t)n - (padded - seg_len);

	json_error_t err;
	obj = json_loadb((const char *)raw, raw_len, 0, &err);
	if (!obj && json_error_code(&err) == json_error_out_of_memory)
		die_oom("token segment");
	if (obj && !json_is_object(obj)) {
		json_decref(obj);
		obj = NULL;
	}
out_free:
	free(raw);
	free(b64);
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

/* The HMAC algorithm the header names, exact spelling; JWT_ALG_INVAL otherwise. */
static jwt_alg_t header_alg(const json_t *header)
{
	const char *alg = json_string_value(json_object_get(header, "alg"));

	if (!alg)
		return JWT_ALG_INVAL;
	if (!strcmp(alg, "HS256"))
		return JWT_ALG_HS256;
	if (!strcmp(alg, "HS384"))
		return JWT_ALG_HS384;
	if (!strcmp(alg, "HS512"))
		return JWT_ALG_HS512;
	return JWT_ALG_INVAL;
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
	jwt_alg_t alg = header_alg(header);
	size_t secret_len = secret ? strlen(secret) : 0;
	/* libjwt refuses any string `typ` other than "JWT", so no signer can check it. */
	const char *typ = json_string_value(json_object_get(header, "typ"));
	if (alg == JWT_ALG_INVAL || !secret_len || secret_len > INT_MAX ||
	    (typ && strcasecmp(typ, "JWT")))
		goto out_free;

	rc = RT_JWT_BAD_SIGNATURE;
	int err = jwt_decode(&jwt, clean, (const unsigned char *)secret, (int)secret_len);
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
