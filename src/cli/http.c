/*
 * The client commands' HTTP requests (cli/http.h), with libcurl.
 */
#include "cli/http.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"

#define MAX_ANSWER (16 << 20)

static size_t on_answer(char *data, size_t size, size_t n, void *arg)
{
	struct rt_buf *b = arg;
	if (b->len + size * n > MAX_ANSWER)
		return 0; /* too large: the transfer fails */
	rt_buf_append(b, data, size * n);
	return size * n;
}

int rt_cli_http_call(const char *cmd, const struct rt_cli_http *o, const char *method,
		     const char *prefix, const char *path, const char *body, int *status,
		     char **answer)
{
	const char *u = o->url;
	if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) {
		fprintf(stderr, "rtsync %s: --url must be http://HOST:PORT or https://HOST:PORT (got '%s')\n",
			cmd, u);
		return -1;
	}
	size_t ul = strlen(u);
	while (ul && u[ul - 1] == '/') /* a path prefix may follow the host (a proxy) */
		ul--;
	const char *tok = o->token ? o->token : o->apikey;
	struct rt_buf url, key, auth, in;
	rt_buf_init(&url);
	rt_buf_init(&key);
	rt_buf_init(&auth);
	rt_buf_init(&in);
	rt_buf_printf(&url, "%.*s/%s/%s", (int)ul, u, prefix, path);
	rt_buf_printf(&key, "apikey: %s", o->apikey);
	rt_buf_printf(&auth, "Authorization: Bearer %s", tok);
	struct curl_slist *hdrs = NULL, *l;
	int rc = -1;
	CURL *h = NULL;
	char why[CURL_ERROR_SIZE] = "";
	if (!(l = curl_slist_append(hdrs, key.data)) || !(hdrs = l) ||
	    !(l = curl_slist_append(hdrs, auth.data)) || !(hdrs = l) ||
	    (body && (!(l = curl_slist_append(hdrs, "Content-Type: application/json")) ||
		      !(hdrs = l))) ||
	    !(h = curl_easy_init())) {
		fprintf(stderr, "rtsync %s: out of memory\n", cmd);
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_URL, url.data);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? strlen(body) : 0));
	if (!strcmp(method, "GET"))
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_answer);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &in);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "rtsync");
	if (o->cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, o->cacert);
	if (o->capath)
		curl_easy_setopt(h, CURLOPT_CAPATH, o->capath);
	if (o->is_insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	CURLcode cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		fprintf(stderr, "rtsync %s: cannot reach %s: %s\n", cmd, o->url,
			cc == CURLE_WRITE_ERROR ? "the answer is larger than 16 MiB"
						: *why ? why : curl_easy_strerror(cc));
		goto out;
	}
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	*status = (int)code;
	*answer = strdup(in.data ? (const char *)in.data : "");
	rc = *answer ? 0 : -1;
out:
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	rt_buf_deinit(&url);
	rt_buf_deinit(&key);
	rt_buf_deinit(&auth);
	rt_buf_deinit(&in);
	return rc;
}

int rt_cli_http_report(const char *cmd, int status, const char *answer)
{
	json_t *j = json_loads(answer, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "message"));
	const char *code = json_string_value(json_object_get(j, "code"));
	const char *hint = json_string_value(json_object_get(j, "hint"));
	fprintf(stderr, "rtsync %s: %d %s: %s%s%s%s\n", cmd, status, code ? code : "",
		msg ? msg : answer, hint ? " (hint: " : "", hint ? hint : "", hint ? ")" : "");
	json_decref(j);
	return RT_CLI_EXIT_FAILURE;
}

void rt_cli_http_defaults(struct rt_cli_http *o)
{
	o->url = getenv("RTSYNC_URL") && *getenv("RTSYNC_URL") ? getenv("RTSYNC_URL")
							       : "http://127.0.0.1:4000";
	o->apikey = getenv("RTSYNC_APIKEY");
	o->token = getenv("RTSYNC_TOKEN") && *getenv("RTSYNC_TOKEN") ? getenv("RTSYNC_TOKEN") : NULL;
	o->cacert = getenv("RTSYNC_CACERT") && *getenv("RTSYNC_CACERT") ? getenv("RTSYNC_CACERT") : NULL;
	o->timeout_ms = 10000;
}

