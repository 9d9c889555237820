/*
 * rtsync write: one row written through the socket's `write` event, with
 * optional conflict control and an idempotency key (docs/writes.md).
 */
#include "cli/cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rand.h"
#include "rtsync/rtsync.h"

static const char write_help[] =
	"Usage: rtsync write [options] TABLE TYPE\n"
	"\n"
	"Writes one row of TABLE (TYPE: insert, update, upsert or delete) and prints the\n"
	"outcome: the row as it now is, and the columns that conflicted.\n"
	"  --record JSON         the row (insert, upsert) or the new values (update)\n"
	"  --key JSON            the row's primary key (update, delete), e.g. '{\"id\":7}'\n"
	"  --base JSON           the values last seen of the columns changed: the write is\n"
	"                        checked against them (compare-and-set)\n"
	"  --strategy S          reject (default), merge or lww, when the base no longer holds\n"
	"  --idempotency-key K   the write's key (default: a random one); a write sent again\n"
	"                        with the same key is applied once\n"
	"  --schema SCHEMA       schema of TABLE (public)\n"
	"  --topic TOPIC         channel to write through (rtsync-cli)\n"
	"  --timeout-ms N        give up without an answer after N ms (10000)\n"
	"  --url URL             server URL (ws://, http://, wss://, https://)\n"
	"                                                        RTSYNC_URL (http://127.0.0.1:4000)\n"
	"  --cacert FILE         trust the CAs in this PEM file for wss:// and https://\n"
	"                        instead of the system's             RTSYNC_CACERT\n"
	"  --capath DIR          trust the CAs in this directory (OpenSSL hashed names)\n"
	"  --insecure            do not verify the server's certificate (testing only)\n"
	"  --apikey KEY          API key (a JWT)                 RTSYNC_APIKEY (required)\n"
	"  --token TOKEN         access token                    RTSYNC_TOKEN (default: the API key)\n"
	"  --json                print the server's answer as one JSON object\n"
	"  -h, --help            this help\n"
	"\n"
	"Readable output: 'applied public.todos {row}', 'merged public.todos {row} (conflicts:\n"
	"title)', 'missing public.todos', or 'conflict public.todos on title: now {row}'.\n"
	"Exit codes: 0 applied, merged or missing; 1 failure (connection, refused write, no\n"
	"answer); 2 usage error; 3 the channel join was refused; 4 conflict (nothing applied).\n";

#define EXIT_REFUSED 3
#define EXIT_CONFLICT 4

struct wr {
	const char *table;
	bool is_json, is_done;
	int exit_code;
};

static void on_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct wr *w = user;
	/* A lost connection is retried (the write waits, then goes with its
	 * idempotency key); a join the server refused or a channel it closed end
	 * the command. */
	bool is_refused = st->state == RT_CHANNEL_CLOSED ||
			  (st->state == RT_CHANNEL_ERRORED && (st->rc == RT_EPROTO || st->rc == RT_EAUTH));
	if (!w->is_done && is_refused) {
		fprintf(stderr, "rtsync write: channel refused: %s\n",
			st->reason ? st->reason : rt_strerror(st->rc));
		w->exit_code = EXIT_REFUSED;
		w->is_done = true;
	}
}

static const char *str_or_empty(const json_t *v)
{
	const char *s = json_string_value(v);
	return s ? s : "";
}

static void on_write(void *user, struct rt_client_channel *ch, uint64_t id, int rc,
		     const char *response)
{
	struct wr *w = user;
	w->is_done = true;
	json_t *r = response ? json_loads(response, 0, NULL) : NULL;
	const char *outcome = json_string_value(json_object_get(r, "outcome"));
	bool is_conflict = outcome && !strcmp(outcome, "conflict");
	w->exit_code = rc == 0 ? 0 : is_conflict ? EXIT_CONFLICT : RT_CLI_EXIT_FAILURE;
	if (w->is_json) {
		json_t *out = r ? json_incref(r) : json_pack("{s:s}", "reason", rt_strerror(rc));
		json_object_set_new(out, "type", json_string("write"));
		char *txt = json_dumps(out, JSON_COMPACT);
		if (txt)
			puts(txt);
		free(txt);
		json_decref(out);
	} else if (outcome) {
		char *row = json_dumps(json_object_get(r, "record"), JSON_COMPACT | JSON_ENCODE_ANY);
		char *cols = NULL;
		const json_t *conf = json_object_get(r, "conflicts");
		if (json_array_size(conf)) {
			size_t len = 1;
			for (size_t i = 0; i < json_array_size(conf); i++)
				len += strlen(str_or_empty(json_array_get(conf, i))) + 2;
			cols = calloc(1, len);
			for (size_t i = 0; cols && i < json_array_size(conf); i++) {
				if (i)
					strcat(cols, ", ");
				strcat(cols, str_or_empty(json_array_get(conf, i)));
			}
		}
		if (is_conflict)
			printf("conflict public.%s on %s: now %s\n", w->table, cols ? cols : "(row gone)",
			       row ? row : "null");
		else if (cols)
			printf("%s public.%s %s (conflicts: %s)\n", outcome, w->table,
			       row ? row : "null", cols);
		else
			printf("%s public.%s %s\n", outcome, w->table, row ? row : "null");
		free(row);
		free(cols);
	} else {
		const char *reason = json_string_value(json_object_get(r, "reason"));
		const char *code = json_string_value(json_object_get(r, "code"));
		fprintf(stderr, "rtsync write: %s%s%s%s\n", reason ? reason : rt_strerror(rc),
			code ? " (" : "", code ? code : "", code ? ")" : "");
	}
	fflush(stdout);
	json_decref(r);
}

/* Parses a JSON option value into obj[name]; returns false when it is not JSON. */
static bool set_json(json_t *obj, const char *name, const char *txt)
{
	json_t *v = json_loads(txt, JSON_DECODE_ANY, NULL);
	if (!json_is_object(v)) {
		json_decref(v);
		fprintf(stderr, "rtsync write: --%s must be a JSON object\n", name);
		return false;
	}
	json_object_set_new(obj, name, v);
	return true;
}

enum { O_RECORD = 256, O_KEY, O_BASE, O_STRATEGY, O_IDEM, O_SCHEMA, O_TOPIC, O_TIMEOUT, O_URL,
       O_APIKEY, O_TOKEN, O_JSON, O_CACERT, O_CAPATH, O_INSECURE };

/* A TLS failure (the certificate, the handshake) ends the command: retrying
 * will not change it. */
static void on_state(void *user, const struct rt_client_state_event *ev)
{
	struct wr *w = user;
	if (ev->reason == RT_ETLS && ev->state == RT_CLIENT_RECONNECTING && !w->is_done) {
		fprintf(stderr, "rtsync write: %s\n", ev->detail ? ev->detail : rt_strerror(ev->reason));
		w->exit_code = RT_CLI_EXIT_FAILURE;
		w->is_done = true;
	}
}

int rt_cli_write(int argc, char **argv)
{
	static const struct option opts[] = {
		{"record", required_argument, NULL, O_RECORD},
		{"key", required_argument, NULL, O_KEY},
		{"base", required_argument, NULL, O_BASE},
		{"strategy", required_argument, NULL, O_STRATEGY},
		{"idempotency-key", required_argument, NULL, O_IDEM},
		{"schema", required_argument, NULL, O_SCHEMA},
		{"topic", required_argument, NULL, O_TOPIC},
		{"timeout-ms", required_argument, NULL, O_TIMEOUT},
		{"url", required_argument, NULL, O_URL},
		{"apikey", required_argument, NULL, O_APIKEY},
		{"token", required_argument, NULL, O_TOKEN},
		{"json", no_argument, NULL, O_JSON},
		{"cacert", required_argument, NULL, O_CACERT},
		{"capath", required_argument, NULL, O_CAPATH},
		{"insecure", no_argument, NULL, O_INSECURE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct wr w = {0};
	const char *url = getenv("RTSYNC_URL"), *apikey = getenv("RTSYNC_APIKEY");
	const char *token = getenv("RTSYNC_TOKEN"), *topic = "rtsync-cli", *idem = NULL;
	const char *cacert = getenv("RTSYNC_CACERT"), *capath = NULL;
	bool is_insecure = false;
	long timeout = 10000;
	json_t *req = json_object();
	int rc = RT_CLI_EXIT_USAGE, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		bool ok = true;
		char *end;
		switch (c) {
		case O_RECORD: ok = set_json(req, "record", optarg); break;
		case O_KEY: ok = set_json(req, "key", optarg); break;
		case O_BASE: ok = set_json(req, "base", optarg); break;
		case O_STRATEGY:
			ok = !strcmp(optarg, "reject") || !strcmp(optarg, "merge") ||
			     !strcmp(optarg, "lww");
			if (ok)
				json_object_set_new(req, "strategy", json_string(optarg));
			else
				fprintf(stderr, "rtsync write: --strategy is reject, merge or lww\n");
			break;
		case O_IDEM: idem = optarg; break;
		case O_SCHEMA: json_object_set_new(req, "schema", json_string(optarg)); break;
		case O_TOPIC: topic = optarg; break;
		case O_TIMEOUT:
			timeout = strtol(optarg, &end, 10);
			ok = *optarg && !*end && timeout > 0 && timeout <= 3600000;
			break;
		case O_URL: url = optarg; break;
		case O_APIKEY: apikey = optarg; break;
		case O_TOKEN: token = optarg; break;
		case O_JSON: w.is_json = true; break;
		case O_CACERT: cacert = optarg; break;
		case O_CAPATH: capath = optarg; break;
		case O_INSECURE: is_insecure = true; break;
		case 'h':
			fputs(write_help, stdout);
			rc = 0;
			goto out;
		default: ok = false; break;
		}
		if (!ok)
			goto usage;
	}
	if (argc - optind != 2)
		goto usage;
	w.table = argv[optind];
	const char *type = argv[optind + 1];
	if (strcmp(type, "insert") && strcmp(type, "update") && strcmp(type, "upsert") &&
	    strcmp(type, "delete")) {
		fprintf(stderr, "rtsync write: TYPE is insert, update, upsert or delete\n");
		goto usage;
	}
	if (!apikey || !*apikey) {
		fprintf(stderr, "rtsync write: an API key is required (--apikey or RTSYNC_APIKEY)\n");
		goto usage;
	}
	char key_buf[RT_UUID_STRLEN + 1];
	if (!idem) {
		rt_rand_uuid(key_buf);
		idem = key_buf;
	}
	json_object_set_new(req, "type", json_string(type));
	json_object_set_new(req, "table", json_string(w.table));
	json_object_set_new(req, "idempotency_key", json_string(idem));

	struct rt_client_options o = {
		.url = url ? url : "http://127.0.0.1:4000",
		.apikey = apikey,
		.access_token = token,
		.push_timeout_ms = (unsigned)timeout,
		.reconnect_max_attempts = 5,
		.on_state = on_state,
		.user = &w,
		.tls_ca_file = cacert && *cacert ? cacert : NULL,
		.tls_ca_dir = capath,
		.tls_skip_verify = is_insecure,
	};
	struct rt_client *cl;
	rc = rt_client_new(&o, &cl);
	if (rc) {
		fprintf(stderr, "rtsync write: %s\n",
			rc == RT_EINVAL	 ? "bad --url (ws://host:port or http://host:port)"
			: rc == RT_ETLS ? "cannot load the CA certificates (--cacert, --capath)"
					 : rt_strerror(rc));
		rc = rc == RT_EINVAL ? RT_CLI_EXIT_USAGE : RT_CLI_EXIT_FAILURE;
		goto out;
	}
	struct rt_channel_options co = {.topic = topic, .user = &w};
	co.cb.on_status = on_status;
	co.cb.on_write = on_write;
	struct rt_client_channel *ch;
	char *txt = json_dumps(req, JSON_COMPACT);
	rc = rt_channel_join(cl, &co, &ch);
	if (!rc)
		rc = rt_channel_write(ch, txt, NULL);
	free(txt);
	if (!rc)
		rc = rt_client_connect(cl);
	if (rc) {
		fprintf(stderr, "rtsync write: %s\n", rt_strerror(rc));
		rt_client_free(cl);
		rc = RT_CLI_EXIT_FAILURE;
		goto out;
	}
	/* Bounded: the push timeout answers a write sent; the connection gives up after
	 * its reconnect attempts, which ends the wait too. */
	for (int64_t waited = 0; !w.is_done && waited < timeout + 60000; waited += 100) {
		rt_client_run(cl, 100);
		if (rt_client_state(cl) == RT_CLIENT_CLOSED) {
			fprintf(stderr, "rtsync write: cannot reach %s\n", o.url);
			w.exit_code = RT_CLI_EXIT_FAILURE;
			break;
		}
	}
	if (!w.is_done && !w.exit_code) {
		fprintf(stderr, "rtsync write: no answer\n");
		w.exit_code = RT_CLI_EXIT_FAILURE;
	}
	rt_client_close(cl);
	rt_client_run(cl, 0);
	rt_client_free(cl);
	rc = w.exit_code;
	goto out;
usage:
	fprintf(stderr, "Try 'rtsync write --help'.\n");
	rc = RT_CLI_EXIT_USAGE;
out:
	json_decref(req);
	return rc;
}
