/*
 * rtsync notify and rtsync inbox: direct sends (service role) and a user's
 * inbox over the notifications' REST routes (docs/notifications.md), with
 * the commands' libcurl client (cli/http.h).
 */
#include "cli/cli.h"
#include "cli/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"

static const char conn_help[] =
	"  --url URL             server URL (http[s]://HOST:PORT) RTSYNC_URL (http://127.0.0.1:4000)\n"
	"  --apikey KEY          API key (a JWT)                 RTSYNC_APIKEY (required)\n"
	"  --token TOKEN         the user's access token         RTSYNC_TOKEN (default: the API key)\n"
	"  --cacert FILE         trust the CAs in FILE for https:// RTSYNC_CACERT\n"
	"  --capath DIR          trust the CAs in DIR (OpenSSL hashed names)\n"
	"  --insecure            no certificate or host name check (tests only)\n"
	"  --timeout-ms N        give up after N ms (10000)\n"
	"  --json                print the server's answer as JSON\n"
	"  -h, --help            this help\n";

static const char notify_help_head[] =
	"Usage: rtsync notify --title TITLE (--user ID... | --query TABLE:COLUMN[?FILTER]) [options]\n"
	"\n"
	"Sends a notification to users (service role): live to their connected sessions on\n"
	"realtime:notifications:<user id>, and kept in their inboxes.\n"
	"  --user ID             a recipient (repeat for more, or a comma-separated list)\n"
	"  --query T:C[?FILTER]  the users in column C of table T's rows matching FILTER\n"
	"                        (REST filters, e.g. members:user_id?org_id=eq.7): a group\n"
	"  --title TEXT          the title (required)\n"
	"  --message TEXT        the message\n"
	"  --type T              info (default), success, warning or error\n"
	"  --priority P          low, normal (default), high or urgent\n"
	"  --category C          a category (users may mute it)\n"
	"  --link URL            a link\n"
	"  --data JSON           any JSON kept with the notification\n"
	"  --key KEY             sends with the same key notify nobody twice\n";

static const char inbox_help_head[] =
	"Usage: rtsync inbox [options]\n"
	"\n"
	"Lists the inbox of the token's user (newest first), or changes its state.\n"
	"  --unread              unread notifications only\n"
	"  --archived            archived ones instead\n"
	"  --category C          one category only\n"
	"  --limit N             at most N (50, at most 200)\n"
	"  --before ID           the page after the one that ended at ID\n"
	"  --items ID            the items of summary ID\n"
	"  --count               print the unread, total and held counts\n"
	"  --read ID             mark ID read (also --unread-id, --archive, --delete ID)\n"
	"  --unread-id ID        mark ID unread\n"
	"  --archive ID          archive ID\n"
	"  --delete ID           delete ID\n"
	"  --read-all            mark everything read\n"
	"  --user ID             another user's inbox (service role)\n";

static int parse_num(const char *cmd, const char *name, const char *s, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > max) {
		fprintf(stderr, "rtsync %s: %s must be a whole number from 0 to %ld (got '%s')\n", cmd,
			name, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

enum { O_URL = 256, O_APIKEY, O_TOKEN, O_TIMEOUT, O_JSON, O_CACERT, O_CAPATH, O_INSECURE, O_USER, O_QUERY, O_TITLE, O_MESSAGE,
       O_TYPE, O_PRIORITY, O_CATEGORY, O_LINK, O_DATA, O_KEY, O_UNREAD, O_ARCHIVED, O_LIMIT,
       O_BEFORE, O_ITEMS, O_COUNT, O_READ, O_UNREAD_ID, O_ARCHIVE, O_DELETE, O_READ_ALL };

#define CONN_OPTS                                                                               \
	{"url", required_argument, NULL, O_URL}, {"apikey", required_argument, NULL, O_APIKEY}, \
		{"token", required_argument, NULL, O_TOKEN},                                    \
		{"timeout-ms", required_argument, NULL, O_TIMEOUT},                             \
		{"cacert", required_argument, NULL, O_CACERT},                                  \
		{"capath", required_argument, NULL, O_CAPATH},                                  \
		{"insecure", no_argument, NULL, O_INSECURE},                                    \
		{"json", no_argument, NULL, O_JSON}, {"help", no_argument, NULL, 'h'}

/* Handles a connection option; 1 when it was one, -1 on a bad value. */
static int conn_opt(const char *cmd, int c, struct rt_cli_http *o)
{
	switch (c) {
	case O_URL: o->url = optarg; return 1;
	case O_APIKEY: o->apikey = optarg; return 1;
	case O_TOKEN: o->token = optarg; return 1;
	case O_JSON: o->is_json = true; return 1;
	case O_CACERT: o->cacert = optarg; return 1;
	case O_CAPATH: o->capath = optarg; return 1;
	case O_INSECURE: o->is_insecure = true; return 1;
	case O_TIMEOUT:
		return parse_num(cmd, "--timeout-ms", optarg, 3600000, &o->timeout_ms) ? -1 : 1;
	}
	return 0;
}

static int usage_err(const char *cmd, const char *msg)
{
	fprintf(stderr, "rtsync %s: %s\nTry 'rtsync %s --help'.\n", cmd, msg, cmd);
	return RT_CLI_EXIT_USAGE;
}

/* ---- rtsync notify ---- */

int rt_cli_notify(int argc, char **argv)
{
	static const struct option longopts[] = {
		CONN_OPTS,
		{"user", required_argument, NULL, O_USER},
		{"query", required_argument, NULL, O_QUERY},
		{"title", required_argument, NULL, O_TITLE},
		{"message", required_argument, NULL, O_MESSAGE},
		{"type", required_argument, NULL, O_TYPE},
		{"priority", required_argument, NULL, O_PRIORITY},
		{"category", required_argument, NULL, O_CATEGORY},
		{"link", required_argument, NULL, O_LINK},
		{"data", required_argument, NULL, O_DATA},
		{"key", required_argument, NULL, O_KEY},
		{NULL, 0, NULL, 0},
	};
	struct rt_cli_http o = {0};
	rt_cli_http_defaults(&o);
	json_t *req = json_object();
	json_t *users = json_array();
	const char *query = NULL;
	int c, rc = 0;
	optind = 1;
	while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		int k = conn_opt("notify", c, &o);
		if (k < 0) {
			rc = RT_CLI_EXIT_USAGE;
			break;
		}
		if (k)
			continue;
		switch (c) {
		case O_USER: {
			char *list = strdup(optarg), *save = NULL;
			for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save))
				json_array_append_new(users, json_string(u));
			free(list);
			break;
		}
		case O_QUERY: query = optarg; break;
		case O_TITLE: json_object_set_new(req, "title", json_string(optarg)); break;
		case O_MESSAGE: json_object_set_new(req, "message", json_string(optarg)); break;
		case O_TYPE: json_object_set_new(req, "type", json_string(optarg)); break;
		case O_PRIORITY: json_object_set_new(req, "priority", json_string(optarg)); break;
		case O_CATEGORY: json_object_set_new(req, "category", json_string(optarg)); break;
		case O_LINK: json_object_set_new(req, "link", json_string(optarg)); break;
		case O_KEY: json_object_set_new(req, "key", json_string(optarg)); break;
		case O_DATA: {
			json_t *d = json_loads(optarg, JSON_DECODE_ANY, NULL);
			if (!d)
				rc = usage_err("notify", "--data must be JSON");
			else
				json_object_set_new(req, "data", d);
			break;
		}
		case 'h':
			printf("%s%s", notify_help_head, conn_help);
			rc = -1;
			break;
		default:
			rc = usage_err("notify", "unknown option");
		}
	}
	if (rc)
		goto out;
	if (optind < argc) {
		rc = usage_err("notify", "unexpected argument");
		goto out;
	}
	if (!json_object_get(req, "title") || (!json_array_size(users) && !query)) {
		rc = usage_err("notify", "--title and --user or --query are required");
		goto out;
	}
	if (!o.apikey || !*o.apikey) {
		rc = usage_err("notify", "--apikey (or RTSYNC_APIKEY) is required: the service key");
		goto out;
	}
	json_t *spec = json_array();
	if (json_array_size(users))
		json_array_append_new(spec, json_pack("{s:O}", "users", users));
	if (query) {
		const char *colon = strchr(query, ':');
		const char *q = strchr(query, '?');
		if (!colon || colon == query || (q && q < colon) || colon[1] == '\0' || colon + 1 == q) {
			json_decref(spec);
			rc = usage_err("notify", "--query wants TABLE:COLUMN[?FILTER]");
			goto out;
		}
		char *table = strndup(query, (size_t)(colon - query));
		char *column = q ? strndup(colon + 1, (size_t)(q - colon - 1)) : strdup(colon + 1);
		json_array_append_new(spec, json_pack("{s:{s:s,s:s,s:s?}}", "query", "table", table,
						      "select", column, "filter", q ? q + 1 : NULL));
		free(table);
		free(column);
	}
	json_object_set_new(req, "recipients", spec);
	char *body = json_dumps(req, JSON_COMPACT);
	int status = 0;
	char *answer = NULL;
	if (rt_cli_http_call("notify", &o, "POST", "notify/v1", "send", body, &status, &answer)) {
		rc = RT_CLI_EXIT_FAILURE;
	} else if (status != 201) {
		rc = rt_cli_http_report("notify", status, answer);
	} else if (o.is_json) {
		printf("%s\n", answer);
	} else {
		json_t *j = json_loads(answer, 0, NULL);
		size_t n = json_array_size(json_object_get(j, "ids"));
		printf("notified %zu of %lld recipients\n", n,
		       (long long)json_integer_value(json_object_get(j, "recipients")));
		json_decref(j);
	}
	free(answer);
	free(body);
out:
	json_decref(users);
	json_decref(req);
	return rc < 0 ? 0 : rc;
}

/* ---- rtsync inbox ---- */

static void print_item(const json_t *n)
{
	const char *msg = json_string_value(json_object_get(n, "message"));
	printf("#%lld %s %-7s %s%s%s\n", (long long)json_integer_value(json_object_get(n, "id")),
	       json_is_true(json_object_get(n, "read")) ? "read  " : "unread",
	       json_string_value(json_object_get(n, "type")),
	       json_string_value(json_object_get(n, "title")), msg && *msg ? " - " : "",
	       msg ? msg : "");
	if (json_is_true(json_object_get(n, "summary")))
		printf("    (%lld items: rtsync inbox --items %lld)\n",
		       (long long)json_integer_value(json_object_get(n, "count")),
		       (long long)json_integer_value(json_object_get(n, "id")));
}

int rt_cli_inbox(int argc, char **argv)
{
	static const struct option longopts[] = {
		CONN_OPTS,
		{"unread", no_argument, NULL, O_UNREAD},
		{"archived", no_argument, NULL, O_ARCHIVED},
		{"category", required_argument, NULL, O_CATEGORY},
		{"limit", required_argument, NULL, O_LIMIT},
		{"before", required_argument, NULL, O_BEFORE},
		{"items", required_argument, NULL, O_ITEMS},
		{"count", no_argument, NULL, O_COUNT},
		{"read", required_argument, NULL, O_READ},
		{"unread-id", required_argument, NULL, O_UNREAD_ID},
		{"archive", required_argument, NULL, O_ARCHIVE},
		{"delete", required_argument, NULL, O_DELETE},
		{"read-all", no_argument, NULL, O_READ_ALL},
		{"user", required_argument, NULL, O_USER},
		{NULL, 0, NULL, 0},
	};
	struct rt_cli_http o = {0};
	rt_cli_http_defaults(&o);
	bool is_unread = false, is_archived = false, is_count = false, is_read_all = false;
	long limit = 0, before = 0, items = 0, act_id = 0;
	const char *action = NULL, *user = NULL, *category = NULL;
	int c, rc = 0;
	optind = 1;
	while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		int k = conn_opt("inbox", c, &o);
		if (k < 0) {
			rc = RT_CLI_EXIT_USAGE;
			break;
		}
		if (k)
			continue;
		switch (c) {
		case O_UNREAD: is_unread = true; break;
		case O_ARCHIVED: is_archived = true; break;
		case O_COUNT: is_count = true; break;
		case O_READ_ALL: is_read_all = true; break;
		case O_USER: user = optarg; break;
		case O_CATEGORY: category = optarg; break;
		case O_LIMIT:
			rc = parse_num("inbox", "--limit", optarg, 200, &limit) ? RT_CLI_EXIT_USAGE : 0;
			break;
		case O_BEFORE:
			rc = parse_num("inbox", "--before", optarg, 1L << 62, &before) ? RT_CLI_EXIT_USAGE
										       : 0;
			break;
		case O_ITEMS:
			rc = parse_num("inbox", "--items", optarg, 1L << 62, &items) ? RT_CLI_EXIT_USAGE
										     : 0;
			break;
		case O_READ:
		case O_UNREAD_ID:
		case O_ARCHIVE:
		case O_DELETE:
			if (action) {
				rc = usage_err("inbox", "one of --read, --unread-id, --archive, --delete");
				break;
			}
			action = c == O_READ ? "read" : c == O_UNREAD_ID ? "unread" : c == O_ARCHIVE ? "archive" : "delete";
			rc = parse_num("inbox", "the id", optarg, 1L << 62, &act_id) ? RT_CLI_EXIT_USAGE : 0;
			break;
		case 'h':
			printf("%s%s", inbox_help_head, conn_help);
			return 0;
		default:
			rc = usage_err("inbox", "unknown option");
		}
	}
	if (rc)
		return rc;
	if (optind < argc)
		return usage_err("inbox", "unexpected argument");
	if (!o.apikey || !*o.apikey)
		return usage_err("inbox", "--apikey (or RTSYNC_APIKEY) is required");
	if (user && strpbrk(user, "&?#%/ "))
		return usage_err("inbox", "--user must be a plain user id");
	if (category && strpbrk(category, "&?#%/ "))
		return usage_err("inbox", "--category must be a plain name");
	char path[512];
	const char *method = "GET";
	char userq[200] = "";
	if (user)
		snprintf(userq, sizeof userq, "user_id=%s", user);
	if (action) {
		method = !strcmp(action, "delete") ? "DELETE" : "POST";
		if (!strcmp(action, "delete"))
			snprintf(path, sizeof path, "inbox/%ld%s%s", act_id, user ? "?" : "", userq);
		else
			snprintf(path, sizeof path, "inbox/%ld/%s%s%s", act_id, action, user ? "?" : "",
				 userq);
	} else if (is_read_all) {
		method = "POST";
		snprintf(path, sizeof path, "inbox/read-all?%s%s%s", userq,
			 category ? "&category=" : "", category ? category : "");
	} else if (is_count) {
		snprintf(path, sizeof path, "inbox/count%s%s", user ? "?" : "", userq);
	} else {
		int len;
		if (items)
			len = snprintf(path, sizeof path, "inbox/%ld/items?x=1", items);
		else
			len = snprintf(path, sizeof path, "inbox?status=%s&archived=%s",
				       is_unread ? "unread" : "all", is_archived ? "true" : "false");
		if (limit)
			len += snprintf(path + len, sizeof path - (size_t)len, "&limit=%ld", limit);
		if (before)
			len += snprintf(path + len, sizeof path - (size_t)len, "&before=%ld", before);
		if (category)
			len += snprintf(path + len, sizeof path - (size_t)len, "&category=%s", category);
		if (user)
			snprintf(path + len, sizeof path - (size_t)len, "&%s", userq);
	}
	int status = 0;
	char *answer = NULL;
	if (rt_cli_http_call("inbox", &o, method, "notify/v1", path, NULL, &status, &answer))
		return RT_CLI_EXIT_FAILURE;
	if (status >= 300) {
		rc = rt_cli_http_report("inbox", status, answer);
	} else if (o.is_json || status == 204) {
		if (*answer)
			printf("%s\n", answer);
		else if (!o.is_json)
			printf("deleted #%ld\n", act_id);
	} else {
		json_t *j = json_loads(answer, 0, NULL);
		if (is_count) {
			printf("%lld unread, %lld in the inbox, %lld held\n",
			       (long long)json_integer_value(json_object_get(j, "unread")),
			       (long long)json_integer_value(json_object_get(j, "total")),
			       (long long)json_integer_value(json_object_get(j, "held")));
		} else if (is_read_all) {
			printf("%lld marked read\n",
			       (long long)json_integer_value(json_object_get(j, "updated")));
		} else if (action) {
			print_item(j);
		} else {
			json_t *list = json_object_get(j, "items");
			for (size_t i = 0; i < json_array_size(list); i++)
				print_item(json_array_get(list, i));
			if (!json_array_size(list))
				printf("no notifications\n");
			if (!json_is_null(json_object_get(j, "next_before")))
				printf("more: --before %lld\n",
				       (long long)json_integer_value(json_object_get(j, "next_before")));
			if (!items)
				printf("%lld unread\n",
				       (long long)json_integer_value(json_object_get(j, "unread")));
		}
		json_decref(j);
	}
	free(answer);
	return rc;
}
