/*
 * The inbox (include/rtsync/notify.h): the user's notifications channel,
 * its events parsed for the application, and the /notify/v1 routes over
 * libcurl, one easy handle per request (any thread, no shared state but the
 * global init).
 */
#include "rtsync/notify.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistr.h>

#include "client/client_int.h"

#define MAX_ANSWER (16u << 20)

struct rt_inbox {
	struct rt_client *c;
	struct rt_client_channel *ch;
	char *user_id;
	char *rest_url; /* NULL: the client's */
	unsigned timeout_ms;
	struct rt_inbox_callbacks cb;
	void *user;
	long long unread; /* under the client's lock */
};

/* ---- memory ---- */

static void *ib_alloc(struct rt_client *c, size_t n)
{
	return rt_client_realloc(c, NULL, n);
}

static void ib_free(struct rt_client *c, void *p)
{
	if (p)
		rt_client_realloc(c, p, 0);
}

static char *ib_strdup(struct rt_client *c, const char *s)
{
	size_t n = strlen(s);
	char *d = ib_alloc(c, n + 1);
	if (d)
		memcpy(d, s, n + 1);
	return d;
}

/* Compact JSON text of v through the client's allocator (NULL: none or no memory). */
static char *dump(struct rt_client *c, const json_t *v)
{
	if (!v)
		return NULL;
	size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	char *s = n ? ib_alloc(c, n + 1) : NULL;
	if (!s)
		return NULL;
	json_dumpb(v, s, n, JSON_COMPACT | JSON_ENCODE_ANY);
	s[n] = '\0';
	return s;
}

/* ---- the channel's events ---- */

static const char *str_of(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long int_of(const json_t *o, const char *k, long long dflt)
{
	const json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

static void on_notification(struct rt_inbox *ib, const json_t *p, const char *text)
{
	const json_t *n = json_object_get(p, "notification");
	if (!json_is_object(n) || !json_is_integer(json_object_get(n, "id")))
		return;
	char *n_text = json_dumps(n, JSON_COMPACT);
	char *repl = json_object_get(p, "replaces")
			     ? json_dumps(json_object_get(p, "replaces"), JSON_COMPACT)
			     : NULL;
	if (!n_text) {
		free(repl);
		return;
	}
	struct rt_inbox_notification note = {
		.id = (int64_t)json_integer_value(json_object_get(n, "id")),
		.title = str_of(n, "title"),
		.message = str_of(n, "message"),
		.link = str_of(n, "link"),
		.type = str_of(n, "type"),
		.category = str_of(n, "category"),
		.priority = str_of(n, "priority"),
		.rule = json_string_value(json_object_get(n, "rule")),
		.is_summary = json_is_true(json_object_get(n, "summary")),
		.count = int_of(n, "count", 1),
		.is_read = json_is_true(json_object_get(n, "read")),
		.created_at = (int64_t)int_of(n, "created_at", 0),
		.json = n_text,
	};
	long long unread = int_of(p, "unread", -1);
	if (unread >= 0)
		ib->unread = unread;
	struct rt_inbox_event ev = {
		.notification = &note, .unread = unread, .replaces = repl, .payload = text};
	if (ib->cb.on_notification)
		ib->cb.on_notification(ib->user, ib, &ev);
	free(n_text);
	free(repl);
}

static void on_state(struct rt_inbox *ib, const json_t *p, const char *text)
{
	long long unread = int_of(p, "unread", -1);
	if (unread < 0)
		return;
	ib->unread = unread;
	const json_t *changed = json_object_get(p, "changed");
	char *ch_text = changed ? json_dumps(changed, JSON_COMPACT) : NULL;
	bool is_join = json_object_get(p, "total") != NULL && !changed &&
		       !json_object_get(p, "all_read");
	struct rt_inbox_state st = {
		.unread = unread,
		.is_join = is_join,
		.total = is_join ? int_of(p, "total", 0) : 0,
		.held = is_join ? int_of(p, "held", 0) : 0,
		.is_all_read = json_is_true(json_object_get(p, "all_read")),
		.category = json_string_value(json_object_get(p, "category")),
		.changed = ch_text,
		.payload = text,
	};
	if (ib->cb.on_state)
		ib->cb.on_state(ib->user, ib, &st);
	free(ch_text);
}

/* Broadcasts on the user's channel: only the server sends there. */
static void chan_broadcast(void *user, struct rt_client_channel *ch, const struct rt_broadcast *b)
{
	struct rt_inbox *ib = user;
	json_t *p = json_loads(b->payload ? b->payload : "{}", 0, NULL);
	if (!json_is_object(p))
		goto out;
	if (!strcmp(b->event, "notification"))
		on_notification(ib, p, b->payload);
	else if (!strcmp(b->event, "inbox_state"))
		on_state(ib, p, b->payload);
	else if (!strcmp(b->event, "preferences") && ib->cb.on_preferences)
		ib->cb.on_preferences(ib->user, ib, b->payload);
out:
	json_decref(p);
}

static void chan_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct rt_inbox *ib = user;
	if (ib->cb.on_status)
		ib->cb.on_status(ib->user, ib, st);
}

/* ---- open, close ---- */

static bool is_http_url(const char *u)
{
	return !strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8);
}

int rt_inbox_open(struct rt_client *c, const struct rt_inbox_options *opt, struct rt_inbox **out)
{
	*out = NULL;
	if (!c || !opt || !opt->user_id || !*opt->user_id ||
	    strlen(opt->user_id) > RT_INBOX_MAX_USER_ID ||
	    u8_check((const uint8_t *)opt->user_id, strlen(opt->user_id)) ||
	    (opt->rest_url && !is_http_url(opt->rest_url)))
		return RT_EINVAL;
	for (const char *p = opt->user_id; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return RT_EINVAL;
	int rc = RT_ENOMEM;
	struct rt_inbox *ib = ib_alloc(c, sizeof *ib);
	if (!ib)
		return RT_ENOMEM;
	memset(ib, 0, sizeof *ib);
	ib->c = c;
	ib->cb = opt->cb;
	ib->user = opt->user;
	ib->unread = -1;
	ib->timeout_ms = opt->timeout_ms ? opt->timeout_ms : 10000;
	ib->user_id = ib_strdup(c, opt->user_id);
	if (!ib->user_id || (opt->rest_url && !(ib->rest_url = ib_strdup(c, opt->rest_url))))
		goto err_free;
	char topic[32 + RT_INBOX_MAX_USER_ID];
	snprintf(topic, sizeof topic, "notifications:%s", opt->user_id);
	struct rt_channel_options co = {
		.topic = topic,
		.is_private = true,
		.cb = {.on_status = chan_status, .on_broadcast = chan_broadcast},
		.user = ib,
	};
	rt_client_lock(c); /* the channel's callbacks see a complete inbox */
	rc = rt_channel_join(c, &co, &ib->ch);
	if (!rc)
		*out = ib;
	rt_client_unlock(c);
	if (!rc)
		return 0;
err_free:
	ib_free(c, ib->user_id);
	ib_free(c, ib->rest_url);
	ib_free(c, ib);
	return rc;
}

void rt_inbox_close(struct rt_inbox *ib)
{
	if (!ib)
		return;
	struct rt_client *c = ib->c;
	rt_channel_leave(ib->ch);
	ib_free(c, ib->user_id);
	ib_free(c, ib->rest_url);
	ib_free(c, ib);
}

long long rt_inbox_unread(struct rt_inbox *ib)
{
	rt_client_lock(ib->c);
	long long n = ib->unread;
	rt_client_unlock(ib->c);
	return n;
}

/* ---- REST ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct answer {
	char *data;
	size_t len, cap;
	bool is_too_big, is_nomem;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct answer *a = ud;
	size_t n = size * nmemb;
	if (a->len + n > MAX_ANSWER) {
		a->is_too_big = true;
		return 0;
	}
	if (a->len + n + 1 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 4096;
		while (cap < a->len + n + 1)
			cap *= 2;
		char *d = realloc(a->data, cap);
		if (!d) {
			a->is_nomem = true;
			return 0;
		}
		a->data = d;
		a->cap = cap;
	}
	memcpy(a->data + a->len, ptr, n);
	a->len += n;
	a->data[a->len] = '\0';
	return n;
}

/* Appends s percent-encoded (all but unreserved characters). */
static void pct(char *out, size_t cap, size_t *len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s && *len + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			out[(*len)++] = (char)ch;
		} else {
			out[(*len)++] = '%';
			out[(*len)++] = hex[ch >> 4];
			out[(*len)++] = hex[ch & 15];
		}
	}
	out[*len] = '\0';
}

static int status_rc(long status)
{
	switch (status) {
	case 400:
		return RT_EINVAL;
	case 401:
	case 403:
		return RT_EAUTH;
	case 404:
		return RT_ENOTFOUND;
	case 409:
		return RT_EEXISTS;
	case 413:
		return RT_ETOOBIG;
	case 429:
		return RT_ELIMIT;
	default:
		return RT_EPROTO;
	}
}

/* A query parameter for the request (name=value, value percent-encoded). */
struct param {
	const char *name, *value;
};

#define MAX_PARAMS 6

/*
 * One request: method on /notify/v1/<path>?user_id=<user>&<params> with
 * body (JSON text or NULL). Returns as notify.h says of the REST calls.
 */
static int request(struct rt_inbox *ib, const char *method, const char *path,
		   const struct param *params, size_t n_params, const char *body, char **json)
{
	if (json)
		*json = NULL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return RT_EIO;
	char *base, *apikey, *token;
	if (rt_client_http_info(ib->c, &base, &apikey, &token))
		return RT_ENOMEM;
	const char *b = ib->rest_url ? ib->rest_url : base;
	size_t blen = strlen(b);
	while (blen && b[blen - 1] == '/')
		blen--;
	int rc = RT_ENOMEM;
	/* the URL: base, path, user_id and params (each at most 3 bytes per input byte) */
	size_t cap = blen + strlen(path) + 64 + 3 * strlen(ib->user_id);
	for (size_t i = 0; i < n_params; i++)
		cap += strlen(params[i].name) + 2 + 3 * strlen(params[i].value);
	char *url = malloc(cap);
	struct curl_slist *hdrs = NULL;
	struct answer a = {0};
	CURL *h = NULL;
	char *hdr_key = NULL, *hdr_auth = NULL;
	if (!url)
		goto out;
	size_t len = (size_t)snprintf(url, cap, "%.*s/notify/v1/%s?user_id=", (int)blen, b, path);
	pct(url, cap, &len, ib->user_id);
	for (size_t i = 0; i < n_params; i++) {
		len += (size_t)snprintf(url + len, cap - len, "&%s=", params[i].name);
		pct(url, cap, &len, params[i].value);
	}
	size_t hk = strlen(apikey) + 16, ha = strlen(token) + 32;
	hdr_key = malloc(hk);
	hdr_auth = malloc(ha);
	if (!hdr_key || !hdr_auth)
		goto out;
	snprintf(hdr_key, hk, "apikey: %s", apikey);
	snprintf(hdr_auth, ha, "Authorization: Bearer %s", token);
	struct curl_slist *l;
	if (!(l = curl_slist_append(hdrs, hdr_key)))
		goto out;
	hdrs = l;
	if (!(l = curl_slist_append(hdrs, hdr_auth)))
		goto out;
	hdrs = l;
	if (body) {
		if (!(l = curl_slist_append(hdrs, "Content-Type: application/json")))
			goto out;
		hdrs = l;
	}
	if (!(h = curl_easy_init()))
		goto out;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ib->timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	const char *ca_file, *ca_dir;
	bool skip_verify;
	rt_client_http_tls(ib->c, &ca_file, &ca_dir, &skip_verify);
	if (ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
	if (ca_dir)
		curl_easy_setopt(h, CURLOPT_CAPATH, ca_dir);
	if (skip_verify) { /* as the socket: no certificate or name check */
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	CURLcode cc = curl_easy_perform(h);
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		rc = RT_ETIMEDOUT;
		goto out;
	}
	if (a.is_nomem || cc == CURLE_OUT_OF_MEMORY) {
		rc = RT_ENOMEM;
		goto out;
	}
	if (a.is_too_big) {
		rc = RT_ETOOBIG;
		goto out;
	}
	if (cc != CURLE_OK) {
		rc = RT_EIO;
		goto out;
	}
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	rc = status >= 200 && status < 300 ? 0 : status_rc(status);
	if (a.len) {
		json_error_t jerr;
		json_t *v = json_loadb(a.data, a.len, JSON_DECODE_ANY, &jerr);
		if (!v) {
			rc = RT_EPROTO;
		} else if (json) {
			*json = dump(ib->c, v);
			if (!*json && !rc)
				rc = RT_ENOMEM;
		}
		json_decref(v);
	}
out:
	if (h)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	free(hdr_key);
	free(hdr_auth);
	free(url);
	free(a.data);
	ib_free(ib->c, base);
	ib_free(ib->c, apikey);
	ib_free(ib->c, token);
	return rc;
}

int rt_inbox_list(struct rt_inbox *ib, const struct rt_inbox_query *q, char **json)
{
	struct param ps[MAX_PARAMS];
	size_t n = 0;
	char limit[16], before[24];
	if (q && q->status)
		ps[n++] = (struct param){"status", q->status};
	if (q && q->archived)
		ps[n++] = (struct param){"archived", q->archived};
	if (q && q->category)
		ps[n++] = (struct param){"category", q->category};
	if (q && q->limit) {
		snprintf(limit, sizeof limit, "%u", q->limit);
		ps[n++] = (struct param){"limit", limit};
	}
	if (q && q->before > 0) {
		snprintf(before, sizeof before, "%" PRId64, q->before);
		ps[n++] = (struct param){"before", before};
	}
	return request(ib, "GET", "inbox", ps, n, NULL, json);
}

int rt_inbox_items(struct rt_inbox *ib, int64_t id, unsigned limit, int64_t before, char **json)
{
	if (id <= 0) {
		if (json)
			*json = NULL;
		return RT_EINVAL;
	}
	struct param ps[2];
	size_t n = 0;
	char l[16], bf[24], path[48];
	if (limit) {
		snprintf(l, sizeof l, "%u", limit);
		ps[n++] = (struct param){"limit", l};
	}
	if (before > 0) {
		snprintf(bf, sizeof bf, "%" PRId64, before);
		ps[n++] = (struct param){"before", bf};
	}
	snprintf(path, sizeof path, "inbox/%" PRId64 "/items", id);
	return request(ib, "GET", path, ps, n, NULL, json);
}

int rt_inbox_get(struct rt_inbox *ib, int64_t id, char **json)
{
	if (id <= 0) {
		if (json)
			*json = NULL;
		return RT_EINVAL;
	}
	char path[32];
	snprintf(path, sizeof path, "inbox/%" PRId64, id);
	return request(ib, "GET", path, NULL, 0, NULL, json);
}

int rt_inbox_count(struct rt_inbox *ib, struct rt_inbox_counts *counts, char **json)
{
	char *txt = NULL;
	int rc = request(ib, "GET", "inbox/count", NULL, 0, NULL, &txt);
	if (!rc && counts) {
		json_t *v = json_loads(txt, 0, NULL);
		if (!v) {
			rc = RT_ENOMEM;
		} else {
			counts->unread = int_of(v, "unread", 0);
			counts->total = int_of(v, "total", 0);
			counts->held = int_of(v, "held", 0);
		}
		json_decref(v);
	}
	if (json)
		*json = txt;
	else
		ib_free(ib->c, txt);
	return rc;
}

int rt_inbox_mark(struct rt_inbox *ib, int64_t id, enum rt_inbox_mark what, char **json)
{
	static const char *const verbs[] = {"read", "unread", "archive", "unarchive"};
	if (id <= 0 || (unsigned)what > RT_INBOX_UNARCHIVE) {
		if (json)
			*json = NULL;
		return RT_EINVAL;
	}
	char path[48];
	snprintf(path, sizeof path, "inbox/%" PRId64 "/%s", id, verbs[what]);
	return request(ib, "POST", path, NULL, 0, NULL, json);
}

int rt_inbox_read_all(struct rt_inbox *ib, const char *category, char **json)
{
	struct param p = {"category", category};
	return request(ib, "POST", "inbox/read-all", &p, category ? 1 : 0, NULL, json);
}

int rt_inbox_delete(struct rt_inbox *ib, int64_t id, char **json)
{
	if (id <= 0) {
		if (json)
			*json = NULL;
		return RT_EINVAL;
	}
	char path[32];
	snprintf(path, sizeof path, "inbox/%" PRId64, id);
	return request(ib, "DELETE", path, NULL, 0, NULL, json);
}

int rt_inbox_preferences_get(struct rt_inbox *ib, char **json)
{
	return request(ib, "GET", "preferences", NULL, 0, NULL, json);
}

int rt_inbox_preferences_put(struct rt_inbox *ib, const char *prefs, char **json)
{
	if (json)
		*json = NULL;
	if (!prefs)
		return RT_EINVAL;
	json_t *v = json_loads(prefs, 0, NULL);
	bool ok = json_is_object(v);
	json_decref(v);
	if (!ok)
		return RT_EINVAL;
	return request(ib, "PUT", "preferences", NULL, 0, prefs, json);
}

int rt_inbox_send(struct rt_client_channel *ch, const char *send, uint64_t *id)
{
	if (!ch || !send)
		return RT_EINVAL;
	json_error_t jerr;
	json_t *v = json_loads(send, 0, &jerr);
	if (!v)
		return json_error_code(&jerr) == json_error_out_of_memory ? RT_ENOMEM : RT_EINVAL;
	if (!json_is_object(v)) {
		json_decref(v);
		return RT_EINVAL;
	}
	return rt_channel_push_notify(ch, v, id);
}
