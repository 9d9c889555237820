/*
 * rtsync query: one live query (docs/live.md) through librtsync. Prints the
 * result, then each change of it as it happens — readable lines by default,
 * one JSON object per line (the server's entry with its position) with
 * --json — until interrupted. The library keeps the result and resumes it
 * after a reconnect.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rtsync/rtsync.h"

#define EXIT_REFUSED 3

static const char query_help[] =
	"Usage: rtsync query [options] TABLE [QUERY]\n"
	"\n"
	"Runs a live query on TABLE and prints its result, then every change of the result\n"
	"as it happens, until interrupted. QUERY is a PostgREST query string as for\n"
	"/rest/v1 reads (filters, select, order, limit, offset), e.g.\n"
	"  'select=id,title&status=eq.open&order=created_at.desc&limit=20'\n"
	"or aggregates grouped by the other selected columns, e.g.\n"
	"  'select=property_id,total:price.sum(),count()'\n"
	"(default: every row and column, in primary-key order).\n"
	"  --schema SCHEMA       schema of TABLE (public)\n"
	"  --throttle-ms N       at most one update per N ms (0-60000)\n"
	"  --debounce-ms N       an update once changes have been quiet N ms (0-60000)\n"
	"  --max-wait-ms N       with --debounce-ms: the longest a change waits (4 x debounce)\n"
	"  --count N             exit after N updates (the first result counts as one)\n"
	"  --url URL             server URL (ws://, http://, wss://, https://)\n"
	"                                                        RTSYNC_URL (http://127.0.0.1:4000)\n"
	"  --cacert FILE         trust the CAs in this PEM file for wss:// and https://\n"
	"                        instead of the system's             RTSYNC_CACERT\n"
	"  --capath DIR          trust the CAs in this directory (OpenSSL hashed names)\n"
	"  --insecure            do not verify the server's certificate (testing only)\n"
	"  --apikey KEY          API key (a JWT)                 RTSYNC_APIKEY\n"
	"  --token TOKEN         access token (the user whose row-level security applies)\n"
	"                        RTSYNC_TOKEN; without an API key it is used as one too\n"
	"  --heartbeat-ms N      heartbeat interval (25000); a missed reply reconnects\n"
	"  --json                one JSON object per line on stdout: the server's entry for\n"
	"                        the query with its position, {\"position\",\"id\",\"kind\",…}\n"
	"  --quiet               no status lines on stderr\n"
	"  -h, --help            this help\n"
	"\n"
	"Readable output: 'result @POS: N rows', a line of column names and one line per row;\n"
	"then per update 'diff @POS: …' and one line per change: '+ KEY at I: values' (entered),\n"
	"'- KEY' (left), '> KEY to I: values' (moved), '~ KEY: values' (changed). KEY is the\n"
	"row's primary key (an aggregate's group) as JSON. 'result @POS (resync)' is the whole\n"
	"result sent again after a reconnect the server could not resume.\n"
	"The connection is kept up: it reconnects with backoff and resumes the query from the\n"
	"last update printed.\n"
	"Exit codes: 0 --count reached, or interrupted by SIGINT/SIGTERM; 1 the server refused\n"
	"the query (its error code and message are printed) or gave up connecting; 2 usage\n"
	"error; 3 the channel join was refused or the server closed the channel.\n";

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

struct q {
	bool is_json, is_quiet, is_done;
	long count, seen;
	int exit_code;
};

static void status_line(struct q *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void status_line(struct q *x, const char *fmt, ...)
{
	if (x->is_quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("rtsync query: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void finish(struct q *x, int code)
{
	if (!x->is_done)
		x->exit_code = code;
	x->is_done = true;
}

/* ---- readable output ---- */

/* A value as a cell: strings as they are, the rest as JSON. */
static void print_cell(const json_t *v)
{
	if (json_is_string(v)) {
		fputs(json_string_value(v), stdout);
		return;
	}
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	fputs(s ? s : "?", stdout);
	free(s);
}

static void print_values(const json_t *row)
{
	const char *k;
	const json_t *v;
	bool first = true;
	json_object_foreach((json_t *)row, k, v) {
		if (!first)
			fputs(" | ", stdout);
		first = false;
		print_cell(v);
	}
}

static void print_result(const struct rt_lq_event *ev)
{
	printf("result @%s%s: %zu row%s\n", ev->position, ev->is_resync ? " (resync)" : "",
	       ev->n_rows, ev->n_rows == 1 ? "" : "s");
	json_t *rows = json_loads(ev->rows, 0, NULL);
	size_t i;
	const json_t *r;
	if (json_array_size(rows)) {
		const char *k;
		const json_t *v;
		bool first = true;
		fputs("  ", stdout);
		json_object_foreach(json_array_get(rows, 0), k, v) {
			printf("%s%s", first ? "" : " | ", k);
			first = false;
		}
		putchar('\n');
	}
	json_array_foreach(rows, i, r) {
		fputs("  ", stdout);
		print_values(r);
		putchar('\n');
	}
	json_decref(rows);
}

static void print_diff(const struct rt_lq_event *ev)
{
	json_t *ops = json_loads(ev->ops, 0, NULL);
	size_t n[4] = {0};
	static const char *const names[] = {"entered", "left", "moved", "changed"};
	size_t i;
	const json_t *op;
	json_array_foreach(ops, i, op) {
		const char *kind = json_string_value(json_object_get(op, "op"));
		n[!strcmp(kind, "enter")   ? 0
		  : !strcmp(kind, "leave") ? 1
		  : !strcmp(kind, "move")  ? 2
					   : 3]++;
	}
	printf("diff @%s:", ev->position);
	bool first = true;
	for (size_t k = 0; k < 4; k++)
		if (n[k]) {
			printf("%s %zu %s", first ? "" : ",", n[k], names[k]);
			first = false;
		}
	printf("; %zu row%s\n", ev->n_rows, ev->n_rows == 1 ? "" : "s");
	json_array_foreach(ops, i, op) {
		const char *kind = json_string_value(json_object_get(op, "op"));
		const char *key = json_string_value(json_object_get(op, "key"));
		long long index = (long long)json_integer_value(json_object_get(op, "index"));
		if (!strcmp(kind, "leave")) {
			printf("  - %s\n", key);
			continue;
		}
		if (!strcmp(kind, "enter"))
			printf("  + %s at %lld: ", key, index);
		else if (!strcmp(kind, "move"))
			printf("  > %s to %lld: ", key, index);
		else
			printf("  ~ %s: ", key);
		print_values(json_object_get(op, "row"));
		putchar('\n');
	}
	json_decref(ops);
}

/* ---- callbacks ---- */

static void on_live(void *user, struct rt_client_channel *ch, const struct rt_lq_event *ev)
{
	struct q *x = user;
	if (x->is_done)
		return;
	if (x->is_json) {
		json_t *e = json_loads(ev->entry, 0, NULL);
		json_t *o = json_pack("{s:s}", "position", ev->position);
		if (e && o && !json_object_update(o, e)) {
			char *s = json_dumps(o, JSON_COMPACT);
			if (s)
				puts(s);
			free(s);
		}
		json_decref(e);
		json_decref(o);
	} else if (ev->kind == RT_LQ_RESULT) {
		print_result(ev);
	} else if (ev->kind == RT_LQ_DIFF) {
		print_diff(ev);
	}
	fflush(stdout);
	if (ev->kind == RT_LQ_ERROR) {
		fprintf(stderr, "rtsync query: the server refused the query: %s: %s\n", ev->code,
			ev->message);
		finish(x, RT_CLI_EXIT_FAILURE);
		return;
	}
	if (x->count && ++x->seen >= x->count)
		finish(x, 0);
}

static void on_state(void *user, const struct rt_client_state_event *ev)
{
	struct q *x = user;
	if (ev->reason == RT_ETLS && ev->state == RT_CLIENT_RECONNECTING) {
		/* the certificate or the handshake: retrying will not change it */
		fprintf(stderr, "rtsync query: %s\n", ev->detail ? ev->detail : rt_strerror(ev->reason));
		finish(x, RT_CLI_EXIT_FAILURE);
	} else if (ev->state == RT_CLIENT_RECONNECTING)
		status_line(x, "connection lost (%s); reconnecting in %u ms (attempt %u)",
			    ev->detail ? ev->detail : rt_strerror(ev->reason), ev->delay_ms,
			    ev->attempt);
	else if (ev->state == RT_CLIENT_OPEN)
		status_line(x, "connected");
	else if (ev->state == RT_CLIENT_CLOSED && ev->reason) {
		status_line(x, "gave up: %s", ev->detail ? ev->detail : rt_strerror(ev->reason));
		finish(x, RT_CLI_EXIT_FAILURE);
	}
}

static void on_error(void *user, struct rt_client_channel *ch, int rc, const char *message)
{
	struct q *x = user;
	if (!x->is_quiet)
		fprintf(stderr, "rtsync query: %s\n", message);
}

static void on_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct q *x = user;
	if (st->state == RT_CHANNEL_JOINED) {
		status_line(x, "%s", st->is_rejoin ? "rejoined" : "joined");
	} else if (st->state == RT_CHANNEL_ERRORED && (st->rc == RT_EAUTH || st->rc == RT_EPROTO)) {
		finish(x, EXIT_REFUSED); /* on_error said why */
	} else if (st->state == RT_CHANNEL_CLOSED) {
		status_line(x, "channel closed by the server");
		finish(x, EXIT_REFUSED);
	}
}

/* The server refuses a channel's live configuration in a system message. */
static void on_system(void *user, struct rt_client_channel *ch, const struct rt_system_event *s)
{
	struct q *x = user;
	if (s->extension && !strcmp(s->extension, "live") && s->status &&
	    !strcmp(s->status, "error")) {
		fprintf(stderr, "rtsync query: the server refused the query: %s\n",
			s->message ? s->message : "");
		finish(x, RT_CLI_EXIT_FAILURE);
	}
}

/* ---- options ---- */

enum {
	OPT_URL = 256, OPT_APIKEY, OPT_TOKEN, OPT_HEARTBEAT, OPT_JSON, OPT_QUIET, OPT_SCHEMA,
	OPT_THROTTLE, OPT_DEBOUNCE, OPT_MAX_WAIT, OPT_COUNT, OPT_CACERT, OPT_CAPATH, OPT_INSECURE,
};

static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int rt_cli_query(int argc, char **argv)
{
	struct q x = {0};
	const char *url = getenv("RTSYNC_URL"), *apikey = getenv("RTSYNC_APIKEY");
	const char *token = getenv("RTSYNC_TOKEN"), *schema = "public";
	const char *cacert = getenv("RTSYNC_CACERT"), *capath = NULL;
	bool is_insecure = false;
	long heartbeat = 0, throttle = 0, debounce = 0, max_wait = 0;
	static const struct option opts[] = {
		{"url", required_argument, NULL, OPT_URL},
		{"apikey", required_argument, NULL, OPT_APIKEY},
		{"token", required_argument, NULL, OPT_TOKEN},
		{"heartbeat-ms", required_argument, NULL, OPT_HEARTBEAT},
		{"json", no_argument, NULL, OPT_JSON},
		{"quiet", no_argument, NULL, OPT_QUIET},
		{"schema", required_argument, NULL, OPT_SCHEMA},
		{"throttle-ms", required_argument, NULL, OPT_THROTTLE},
		{"debounce-ms", required_argument, NULL, OPT_DEBOUNCE},
		{"max-wait-ms", required_argument, NULL, OPT_MAX_WAIT},
		{"count", required_argument, NULL, OPT_COUNT},
		{"cacert", required_argument, NULL, OPT_CACERT},
		{"capath", required_argument, NULL, OPT_CAPATH},
		{"insecure", no_argument, NULL, OPT_INSECURE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, at = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, &at)) != -1) {
		bool ok = true;
		switch (c) {
		case OPT_URL: url = optarg; break;
		case OPT_CACERT: cacert = optarg; break;
		case OPT_CAPATH: capath = optarg; break;
		case OPT_INSECURE: is_insecure = true; break;
		case OPT_APIKEY: apikey = optarg; break;
		case OPT_TOKEN: token = optarg; break;
		case OPT_HEARTBEAT: ok = parse_long(optarg, 1, 3600000, &heartbeat); break;
		case OPT_JSON: x.is_json = true; break;
		case OPT_QUIET: x.is_quiet = true; break;
		case OPT_SCHEMA:
			schema = optarg;
			ok = *schema != 0;
			break;
		case OPT_THROTTLE:
			ok = parse_long(optarg, 0, RT_LQ_MAX_WINDOW_MS, &throttle);
			break;
		case OPT_DEBOUNCE:
			ok = parse_long(optarg, 0, RT_LQ_MAX_WINDOW_MS, &debounce);
			break;
		case OPT_MAX_WAIT:
			ok = parse_long(optarg, 0, RT_LQ_MAX_WINDOW_MS, &max_wait);
			break;
		case OPT_COUNT: ok = parse_long(optarg, 1, LONG_MAX, &x.count); break;
		case 'h': fputs(query_help, stdout); return 0;
		default: ok = false; break;
		}
		if (!ok) {
			if (c != '?' && at >= 0)
				fprintf(stderr, "rtsync query: bad value '%s' for --%s\n", optarg,
					opts[at].name);
			fputs("Try 'rtsync query --help'.\n", stderr);
			return RT_CLI_EXIT_USAGE;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		fputs("rtsync query: wrong number of arguments (TABLE [QUERY])\n"
		      "Try 'rtsync query --help'.\n",
		      stderr);
		return RT_CLI_EXIT_USAGE;
	}
	if (throttle && debounce) {
		fputs("rtsync query: --throttle-ms and --debounce-ms cannot be combined\n", stderr);
		return RT_CLI_EXIT_USAGE;
	}
	if (!apikey || !*apikey)
		apikey = token;
	if (!apikey || !*apikey) {
		fputs("rtsync query: an API key or a token is required (--apikey, --token, "
		      "RTSYNC_APIKEY or RTSYNC_TOKEN)\n",
		      stderr);
		return RT_CLI_EXIT_USAGE;
	}
	const char *table = argv[optind], *query = argc - optind == 2 ? argv[optind + 1] : NULL;
	if (!*table) {
		fputs("rtsync query: TABLE is empty\n", stderr);
		return RT_CLI_EXIT_USAGE;
	}

	struct rt_client_options o = {
		.url = url ? url : "http://127.0.0.1:4000",
		.apikey = apikey,
		.access_token = token && *token ? token : NULL,
		.heartbeat_ms = (unsigned)heartbeat,
		.on_state = on_state,
		.on_error = on_error,
		.user = &x,
		.tls_ca_file = cacert && *cacert ? cacert : NULL,
		.tls_ca_dir = capath,
		.tls_skip_verify = is_insecure,
	};
	struct rt_client *client;
	int rc = rt_client_new(&o, &client);
	if (rc) {
		fprintf(stderr, "rtsync query: %s\n",
			rc == RT_EINVAL
				? "bad --url (ws://host:port or http://host:port), or a key "
				  "that is not UTF-8"
			: rc == RT_ETLS ? "cannot load the CA certificates (--cacert, --capath)"
					: rt_strerror(rc));
		return rc == RT_EINVAL ? RT_CLI_EXIT_USAGE : RT_CLI_EXIT_FAILURE;
	}
	struct rt_lq_def def = {.id = "q", .schema = schema, .table = table, .query = query};
	struct rt_lq_options lo = {
		.queries = &def,
		.n_queries = 1,
		.throttle_ms = (unsigned)throttle,
		.debounce_ms = (unsigned)debounce,
		.max_wait_ms = (unsigned)max_wait,
	};
	char topic[64];
	snprintf(topic, sizeof topic, "rtsync-query:%ld", (long)getpid());
	struct rt_channel_options co = {
		.topic = topic,
		.cb = {.on_status = on_status, .on_system = on_system, .on_live = on_live},
		.user = &x,
		.live = &lo,
	};
	struct rt_client_channel *ch;
	rc = rt_channel_join(client, &co, &ch);
	if (rc) {
		fprintf(stderr, "rtsync query: %s\n",
			rc == RT_EINVAL ? "bad TABLE, QUERY or --schema (not UTF-8?)"
					: rt_strerror(rc));
		rt_client_free(client);
		return rc == RT_EINVAL ? RT_CLI_EXIT_USAGE : RT_CLI_EXIT_FAILURE;
	}
	rc = rt_client_connect(client);
	if (rc) {
		fprintf(stderr, "rtsync query: cannot connect to %s: %s\n", o.url, rt_strerror(rc));
		rt_client_free(client);
		return RT_CLI_EXIT_FAILURE;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!stop_signal && !x.is_done)
		rt_client_run(client, 200);
	rt_client_close(client);
	rt_client_run(client, 0);
	rt_client_free(client);
	return x.exit_code;
}
