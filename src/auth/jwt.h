/*
 * JSON Web Tokens as Supabase Realtime checks them: HS256/HS384/HS512 signed
 * with the configured secret, or RS/ES signed with a key of a JWKS (struct
 * rt_jwt_keys), claims `role` and `exp` required, `exp` in the future. Failures map to the exact codes and messages the official clients
 * see (PROTOCOL.md §1.5, §4.6, §8.3). Also mints tokens for `serve` to print.
 *
 * Ownership: rt_jwt_verify() fills a caller-owned struct rt_jwt_claims whose
 *            members it allocates; release them with rt_jwt_claims_deinit().
 * Threads:   every function is thread-safe (no shared state).
 * Limits:    tokens longer than RT_JWT_MAX_LEN bytes are malformed.
 */
#ifndef RT_AUTH_JWT_H
#define RT_AUTH_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_JWT_MAX_LEN 16384

enum rt_jwt_result {
	RT_JWT_OK = 0,
	RT_JWT_MALFORMED,      /* MalformedJWT: The token provided is not a valid JWT */
	RT_JWT_BAD_SIGNATURE,  /* JwtSignatureError: Failed to validate JWT signature */
	RT_JWT_NO_SIGNER,      /* JwtSignerError: Failed to generate JWT signer, check ... */
	RT_JWT_EXPIRED,        /* InvalidJWTToken: Token has expired N seconds ago */
	RT_JWT_MISSING_CLAIMS, /* InvalidJWTToken: Fields `role` and `exp` are required in JWT */
	RT_JWT_BAD_EXP,        /* InvalidJWTToken: Token expiration time is invalid */
	RT_JWT_NOT_YET_VALID,  /* InvalidJWTToken: `nbf` is in the future or not a number */
	RT_JWT_BAD_CLAIM,      /* InvalidJWTToken: `aud` or `iss` is not the configured one */
};

struct rt_jwt_claims {
	char *role;     /* claim `role`; never NULL after success */
	char *sub;      /* claim `sub` when it is a string, else NULL */
	int64_t exp;    /* claim `exp` rounded to whole seconds since the epoch */
	json_t *claims; /* the whole claims object (one reference owned) */
};

/*
 * Verifies token (token_len bytes, not necessarily NUL-terminated) against
 * secret at time now_s (seconds since the epoch). Whitespace inside the token
 * is ignored and a percent-encoded token is decoded first, as Supabase does.
 * The algorithm comes from the token header and must be HS256, HS384 or HS512;
 * anything else (including "none") is RT_JWT_NO_SIGNER.
 * Check order: shape (MALFORMED) → algorithm (NO_SIGNER) → signature
 * (BAD_SIGNATURE) → `exp` type (BAD_EXP) → `role`/`exp` present
 * (MISSING_CLAIMS) → expiry (EXPIRED, *expired_ago_s set to now - exp).
 * On RT_JWT_OK, out is filled; on any other result out is zeroed.
 * expired_ago_s may be NULL.
 */
enum rt_jwt_result rt_jwt_verify(const char *secret, const char *token, size_t token_len,
				 int64_t now_s, struct rt_jwt_claims *out, int64_t *expired_ago_s);

/*
 * The keys a verifier accepts (docs/security.md, "Signing keys"): the HS
 * secret, and the keys of a JWKS — RSA and EC public keys for RS256/384/512
 * and ES256/384/512 (picked by the header's `kid`), oct keys for HS by
 * `kid` — plus the `aud` and `iss` every token must carry when configured.
 * Reference-counted and immutable once made: any thread may verify with it.
 * Keys not for signatures (`use` other than "sig") or of algorithms rtsync
 * does not verify (OKP/EdDSA, PS256) are skipped; a malformed key, or an RSA
 * key under 2048 bits, is an error.
 */
#define RT_JWT_MAX_JWKS (1 << 20) /* bytes of a JWKS document */
#define RT_JWT_MAX_KEYS 100

struct rt_jwt_keys;
struct rt_jwt_keys_config {
	const char *secret; /* NULL or "": no HS secret */
	const char *jwks;   /* a JWKS document, jwks_len bytes; NULL: none */
	size_t jwks_len;
	const char *aud, *iss; /* required values; NULL: not checked */
};

/* Returns the keys (one reference), or NULL with the reason in err. */
struct rt_jwt_keys *rt_jwt_keys_new(const struct rt_jwt_keys_config *cfg, char *err,
				    size_t err_cap);
struct rt_jwt_keys *rt_jwt_keys_ref(struct rt_jwt_keys *k);
void rt_jwt_keys_unref(struct rt_jwt_keys *k); /* NULL is a no-op */
size_t rt_jwt_keys_count(const struct rt_jwt_keys *k); /* JWKS keys kept */

/*
 * rt_jwt_verify() against keys: the header's `alg` picks the key family
 * first (HS: an oct key of the token's `kid`, else the secret; RS/ES: the
 * key of the token's `kid` and the algorithm's type and curve), so a public
 * key is never used as an HMAC secret. No such key: RT_JWT_NO_SIGNER, and
 * *is_unknown_kid (when not NULL) says whether an RS/ES `kid` was unknown
 * (the JWKS may have rotated). After `exp`: `nbf` (RT_JWT_NOT_YET_VALID),
 * then `aud`/`iss` when configured (RT_JWT_BAD_CLAIM; `aud` may be an
 * array holding the value).
 */
enum rt_jwt_result rt_jwt_verify_keys(const struct rt_jwt_keys *keys, const char *token,
				      size_t token_len, int64_t now_s, struct rt_jwt_claims *out,
				      int64_t *expired_ago_s, bool *is_unknown_kid);

void rt_jwt_claims_deinit(struct rt_jwt_claims *c);
/* Deep-copies src into dst (dst is overwritten, not freed first). */
void rt_jwt_claims_copy(struct rt_jwt_claims *dst, const struct rt_jwt_claims *src);

/* The Supabase error code for a result: "MalformedJWT", "JwtSignatureError",
 * "JwtSignerError" or "InvalidJWTToken"; "" for RT_JWT_OK. */
const char *rt_jwt_code(enum rt_jwt_result r);

/* Writes the Supabase message for a result into out (NUL-terminated, cut to
 * out_cap), e.g. "Token has expired 12 seconds ago". Returns out. */
char *rt_jwt_message(enum rt_jwt_result r, int64_t expired_ago_s, char *out, size_t out_cap);

/*
 * Mints an HS256 token with claims {"iss": iss, "role": role, "iat": now_s,
 * "exp": exp_s} (iss omitted when NULL) plus every member of extra when it is
 * a JSON object (may be NULL). Returns a malloc'ed NUL-terminated string, or
 * NULL on failure.
 */
char *rt_jwt_mint(const char *secret, const char *role, const char *iss, int64_t now_s,
		  int64_t exp_s, const json_t *extra);

#endif
