/*
 * The server's signing keys as they change (docs/security.md, "Signing
 * keys"): the HS secret and a JWKS read from a file or fetched from a URL,
 * with the `aud`/`iss` checks. A URL is fetched again every refresh_s
 * seconds and, at most every RT_KEYRING_MIN_FETCH_S seconds, when a token
 * names an RS/ES `kid` the keys do not hold (a rotation); a file is read
 * again on rt_keyring_reload() (SIGHUP). A failed refresh keeps the last
 * good keys and logs why.
 *
 * Ownership: the keyring owns its keys; rt_keyring_verify() holds them for
 *            the call only.
 * Threads:   every function but new/free is thread-safe; a URL is fetched
 *            on the keyring's own thread.
 */
#ifndef RT_AUTH_KEYRING_H
#define RT_AUTH_KEYRING_H

#include <stdint.h>

#include "auth/jwt.h"

#define RT_KEYRING_MIN_FETCH_S 30

struct rt_keyring;

struct rt_keyring_config {
	const char *secret; /* NULL: none */
	const char *jwks;   /* a file path, an http(s):// URL, or NULL */
	const char *aud, *iss;
	unsigned refresh_s; /* a URL's refresh period; 0: 600 */
};

/* Reads (or fetches) the JWKS once; NULL with the reason in err when it
 * cannot be read or is not a valid JWKS. */
struct rt_keyring *rt_keyring_new(const struct rt_keyring_config *cfg, char *err, size_t err_cap);
void rt_keyring_free(struct rt_keyring *kr);

/* rt_jwt_verify_keys() with the current keys. */
enum rt_jwt_result rt_keyring_verify(struct rt_keyring *kr, const char *token, size_t token_len,
				     int64_t now_s, struct rt_jwt_claims *out,
				     int64_t *expired_ago_s);

/* Grows whenever the keys change: a verdict cached under another
 * generation is stale. */
uint64_t rt_keyring_generation(struct rt_keyring *kr);

/* Reads the file again now, or has the URL fetched again soon. */
void rt_keyring_reload(struct rt_keyring *kr);

#endif
