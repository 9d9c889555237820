#include "auth/keyring.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"

struct rt_keyring {
	char *secret, *jwks, *aud, *iss;
	bool is_url;
	unsigned refresh_s;

	pthread_mutex_t mu;
	struct rt_jwt_keys *keys; /* current; one reference held here */
	_Atomic uint64_t generation; /* read without the lock (every token check) */
	uint64_t kid_fetch_ms;    /* the last fetch an unknown kid asked for */
	bool has_kid_fetch;

	pthread_cond_t cond;      /* wakes the fetch thread */
	bool is_wanted, is_stopping, has_thread;
	pthread_t thread;
};

static bool is_url(const char *s)
{
	return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

/* ---- reading the document ---- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct rt_buf *b = arg;
	if (b->len + size * n > RT_JWT_MAX_JWKS)
		return 0; /* too large: the transfer fails */
	rt_buf_append(b, data, size * n);
	return size * n;
}

static int fetch(const char *url, struct rt_buf *out, char *err, size_t err_cap)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(err, err_cap, "cannot start an HTTP client");
		return -1;
	}
	char why[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, why);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "rtsync");
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK) {
		snprintf(err, err_cap, "fetching %s: %s", url,
			 rc == CURLE_WRITE_ERROR ? "larger than 1 MiB"
						 : *why ? why : curl_easy_strerror(rc));
		return -1;
	}
	if (status != 200) {
		snprintf(err, err_cap, "fetching %s: HTTP %ld", url, status);
		return -1;
	}
	return 0;
}

static int read_file(const char *path, struct rt_buf *out, char *err, size_t err_cap)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, err_cap, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	char chunk[8192];
	size_t n;
	int rc = 0;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (out->len + n > RT_JWT_MAX_JWKS) {
			snprintf(err, err_cap, "%s is larger than 1 MiB", path);
			rc = -1;
			break;
		}
		rt_buf_append(out, chunk, n);
	}
	if (!rc && ferror(f)) {
		snprintf(err, err_cap, "cannot read %s: %s", path, strerror(errno));
		rc = -1;
	}
	fclose(f);
	return rc;
}

/* Reads the JWKS and makes the keys; NULL with the reason in err. */
static struct rt_jwt_keys *load(struct rt_keyring *kr, char *err, size_t err_cap)
{
	struct rt_buf doc;
	rt_buf_init(&doc);
	struct rt_jwt_keys *keys = NULL;
	if (kr->jwks && (kr->is_url ? fetch(kr->jwks, &doc, err, err_cap)
				    : read_file(kr->jwks, &doc, err, err_cap)))
		goto out;
	struct rt_jwt_keys_config kc = {.secret = kr->secret,
					.jwks = kr->jwks ? (const char *)doc.data : NULL,
					.jwks_len = doc.len,
					.aud = kr->aud,
					.iss = kr->iss};
	if (kr->jwks && !doc.data)
		kc.jwks = ""; /* an empty file: not a JWKS */
	char why[256] = "";
	keys = rt_jwt_keys_new(&kc, why, sizeof why);
	if (!keys)
		snprintf(err, err_cap, "%s: %s", kr->jwks, why);
out:
	rt_buf_deinit(&doc);
	return keys;
}

/* Makes keys current (taking the reference). */
static void install(struct rt_keyring *kr, struct rt_jwt_keys *keys)
{
	pthread_mutex_lock(&kr->mu);
	struct rt_jwt_keys *old = kr->keys;
	kr->keys = keys;
	atomic_fetch_add(&kr->generation, 1);
	pthread_mutex_unlock(&kr->mu);
	rt_jwt_keys_unref(old);
}

/* Loads again; on a failure the current keys stay. */
static void refresh(struct rt_keyring *kr)
{
	char err[512];
	struct rt_jwt_keys *keys = load(kr, err, sizeof err);
	if (!keys) {
		rt_warn("auth: the signing keys stay as they were: %s", err);
		return;
	}
	rt_info("auth: %zu signing keys from %s", rt_jwt_keys_count(keys), kr->jwks);
	install(kr, keys);
}

/* ---- the fetch thread (URL) ---- */

static void *fetch_main(void *arg)
{
	struct rt_keyring *kr = arg;
	pthread_mutex_lock(&kr->mu);
	while (!kr->is_stopping) {
		if (!kr->is_wanted) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += kr->refresh_s;
			if (pthread_cond_timedwait(&kr->cond, &kr->mu, &until) == ETIMEDOUT)
				kr->is_wanted = true;
			continue;
		}
		kr->is_wanted = false;
		pthread_mutex_unlock(&kr->mu);
		refresh(kr);
		pthread_mutex_lock(&kr->mu);
	}
	pthread_mutex_unlock(&kr->mu);
	return NULL;
}

/* ---- the contract ---- */

struct rt_keyring *rt_keyring_new(const struct rt_keyring_config *cfg, char *err, size_t err_cap)
{
	struct rt_keyring *kr = rt_xcalloc(1, sizeof *kr);
	kr->secret = cfg->secret ? rt_xstrdup(cfg->secret) : NULL;
	kr->jwks = cfg->jwks && *cfg->jwks ? rt_xstrdup(cfg->jwks) : NULL;
	kr->aud = cfg->aud ? rt_xstrdup(cfg->aud) : NULL;
	kr->iss = cfg->iss ? rt_xstrdup(cfg->iss) : NULL;
	kr->is_url = kr->jwks && is_url(kr->jwks);
	kr->refresh_s = cfg->refresh_s ? cfg->refresh_s : 600;
	pthread_mutex_init(&kr->mu, NULL);
	pthread_cond_init(&kr->cond, NULL);
	if (kr->is_url)
		curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!(kr->keys = load(kr, err, err_cap))) {
		rt_keyring_free(kr);
		return NULL;
	}
	if (kr->is_url) {
		if (pthread_create(&kr->thread, NULL, fetch_main, kr)) {
			snprintf(err, err_cap, "cannot start the JWKS thread");
			rt_keyring_free(kr);
			return NULL;
		}
		kr->has_thread = true;
	}
	return kr;
}

void rt_keyring_free(struct rt_keyring *kr)
{
	if (!kr)
		return;
	if (kr->has_thread) {
		pthread_mutex_lock(&kr->mu);
		kr->is_stopping = true;
		pthread_cond_signal(&kr->cond);
		pthread_mutex_unlock(&kr->mu);
		pthread_join(kr->thread, NULL);
	}
	if (kr->is_url)
		curl_global_cleanup();
	rt_jwt_keys_unref(kr->keys);
	pthread_cond_destroy(&kr->cond);
	pthread_mutex_destroy(&kr->mu);
	free(kr->secret);
	free(kr->jwks);
	free(kr->aud);
	free(kr->iss);
	free(kr);
}

enum rt_jwt_result rt_keyring_verify(struct rt_keyring *kr, const char *token, size_t token_len,
				     int64_t now_s, struct rt_jwt_claims *out,
				     int64_t *expired_ago_s)
{
	pthread_mutex_lock(&kr->mu);
	struct rt_jwt_keys *keys = rt_jwt_keys_ref(kr->keys);
	pthread_mutex_unlock(&kr->mu);
	bool is_unknown_kid = false;
	enum rt_jwt_result r = rt_jwt_verify_keys(keys, token, token_len, now_s, out,
						  expired_ago_s, &is_unknown_kid);
	rt_jwt_keys_unref(keys);
	if (is_unknown_kid && kr->has_thread) {
		pthread_mutex_lock(&kr->mu);
		uint64_t now = rt_mono_ms();
		if (!kr->has_kid_fetch || now - kr->kid_fetch_ms >= RT_KEYRING_MIN_FETCH_S * 1000ULL) {
			kr->is_wanted = true;
			kr->has_kid_fetch = true;
			kr->kid_fetch_ms = now; /* one ask per period */
			pthread_cond_signal(&kr->cond);
		}
		pthread_mutex_unlock(&kr->mu);
	}
	return r;
}

uint64_t rt_keyring_generation(struct rt_keyring *kr)
{
	return atomic_load(&kr->generation);
}

void rt_keyring_reload(struct rt_keyring *kr)
{
	if (!kr->jwks)
		return;
	if (!kr->has_thread) {
		refresh(kr);
		return;
	}
	pthread_mutex_lock(&kr->mu);
	kr->is_wanted = true;
	pthread_cond_signal(&kr->cond);
	pthread_mutex_unlock(&kr->mu);
}
