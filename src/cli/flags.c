/*
 * rtsync flags: the server's feature flags over /flags/v1 (docs/flags.md),
 * with the service role's key: list, get, set (a definition given whole as
 * JSON or built from options), delete, and import (a whole document).
 * Requests go through src/cli/http.c (libcurl).
 */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http.h"
#include "common/buf.h"

#define MAX_DOC (1 << 20)

static const char help[] =
	"Usage: rtsync flags list|get NAME|set NAME [JSON]|delete NAME|import FILE [options]\n"
	"\n"
	"Reads and edits the server's feature flags (service role; docs/flags.md).\n"
	"  list                  every flag, one a line: its name and definition (JSON)\n"
	"  get NAME              one flag's definition\n"
	"  set NAME [JSON]       creates or replaces a flag: the definition as JSON, or\n"
	"                        built from the options below\n"
	"  delete NAME           removes a flag\n"
	"  import FILE           replaces every flag with the document in FILE ('-': stdin)\n"
	"Options of set:\n"
	"  --off                 switched off for everyone (enabled: false)\n"
	"  --rollout PCT         on for PCT percent of users (0 to 100, by their JWT sub)\n"
	"  --variant NAME=W      a variant with weight W (repeat for more)\n"
	"  --when CLAIM=V[,V…]   only for users whose claim is one of the values (repeat:\n"
	"                        all must hold; CLAIM may be a path: app_metadata.team)\n"
	"  --channels GLOB[,…]   only on channels whose topic matches\n"
	"  --tables GLOB[,…]     only for these tables\n"
	"  --description TEXT    what the flag is for\n"
	"Connection:\n"
	"  --url URL             server URL (http[s]://HOST:PORT) RTSYNC_URL (http://127.0.0.1:4000)\n"
	"  --apikey KEY          the service role's key           RTSYNC_APIKEY (required)\n"
	"  --cacert FILE         trust the CAs in FILE for https:// RTSYNC_CACERT\n"
	"  --capath DIR          trust the CAs in DIR (OpenSSL hashed names)\n"
	"  --insecure            no certificate or host name check (tests only)\n"
	"  --timeout-ms N        give up after N ms (10000)\n"
	"  --json                list: the whole document as the server sends it\n"
	"  -h, --help            this help\n"
	"Exit status: 0 done, 1 refused or unreachable (the server's reason on stderr), 2 usage.\n";

/* One request to /flags/v1[/name] through src/cli/http.c, the name
 * percent-escaped; *status and *answer (caller frees) on success. Returns 0,
 * or -1 (reported on stderr). */
static int call(const struct rt_cli_http *o, const char *method, const char *name,
		const char *body, int *status, char **answer)
{
	char *esc = name ? curl_easy_escape(NULL, name, 0) : NULL;
	if (name && !esc) {
		fprintf(stderr, "rtsync flags: out of memory\n");
		return -1;
	}
	int rc = rt_cli_http_call("flags", o, method, "flags/v1", esc ? esc : "", body, status,
				  answer);
	curl_free(esc);
	return rc;
}

__attribute__((format(printf, 1, 2))) static int usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "rtsync flags: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(rtsync flags --help)\n");
	return RT_CLI_EXIT_USAGE;
}

/* A value of --when: a JSON number, true or false as itself, else a string. */
static json_t *when_value(const char *s)
{
	json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
	if (v && (json_is_number(v) || json_is_boolean(v)))
		return v;
	json_decref(v);
	return json_string(s);
}

static json_t *split_list(const char *s, bool is_when)
{
	json_t *a = json_array();
	char *dup = strdup(s);
	if (!dup)
		return a;
	for (char *save, *p = strtok_r(dup, ",", &save); p; p = strtok_r(NULL, ",", &save))
		json_array_append_new(a, is_when ? when_value(p) : json_string(p));
	free(dup);
	return a;
}

static char *read_all(const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "rtsync flags: cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	struct rt_buf b;
	rt_buf_init(&b);
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= MAX_DOC)
		rt_buf_append(&b, chunk, n);
	bool is_err = ferror(f) || b.len > MAX_DOC;
	if (f != stdin)
		fclose(f);
	if (is_err) {
		fprintf(stderr, "rtsync flags: cannot read %s (or it is over 1 MiB)\n", path);
		rt_buf_deinit(&b);
		return NULL;
	}
	rt_buf_append_byte(&b, 0);
	char *s = strdup((const char *)b.data);
	rt_buf_deinit(&b);
	return s;
}

int rt_cli_flags(int argc, char **argv)
{
	struct rt_cli_http o = {0};
	rt_cli_http_defaults(&o);
	o.token = NULL; /* the service role's key is the bearer too */
	json_t *def = json_object(), *when = json_object(), *variants = json_object();
	int rc = RT_CLI_EXIT_USAGE;
	bool has_opts = false;
	char *body = NULL, *answer = NULL;
	enum { O_URL = 256, O_KEY, O_CACERT, O_CAPATH, O_INSECURE, O_TIMEOUT, O_JSON, O_OFF,
	       O_ROLLOUT, O_VARIANT, O_WHEN, O_CHANNELS, O_TABLES, O_DESC };
	static const struct option longopts[] = {
		{"url", required_argument, NULL, O_URL},
		{"apikey", required_argument, NULL, O_KEY},
		{"cacert", required_argument, NULL, O_CACERT},
		{"capath", required_argument, NULL, O_CAPATH},
		{"insecure", no_argument, NULL, O_INSECURE},
		{"timeout-ms", required_argument, NULL, O_TIMEOUT},
		{"json", no_argument, NULL, O_JSON},
		{"off", no_argument, NULL, O_OFF},
		{"rollout", required_argument, NULL, O_ROLLOUT},
		{"variant", required_argument, NULL, O_VARIANT},
		{"when", required_argument, NULL, O_WHEN},
		{"channels", required_argument, NULL, O_CHANNELS},
		{"tables", required_argument, NULL, O_TABLES},
		{"description", required_argument, NULL, O_DESC},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		char *end, *eq;
		switch (c) {
		case O_URL: o.url = optarg; break;
		case O_KEY: o.apikey = optarg; break;
		case O_CACERT: o.cacert = optarg; break;
		case O_CAPATH: o.capath = optarg; break;
		case O_INSECURE: o.is_insecure = true; break;
		case O_JSON: o.is_json = true; break;
		case O_TIMEOUT:
			errno = 0;
			o.timeout_ms = strtol(optarg, &end, 10);
			if (errno || *end || o.timeout_ms < 1 || o.timeout_ms > 3600000) {
				rc = usage("--timeout-ms must be 1 to 3600000 (got '%s')", optarg);
				goto out;
			}
			break;
		case O_OFF:
			json_object_set_new(def, "enabled", json_false());
			has_opts = true;
			break;
		case O_ROLLOUT: {
			double pct = strtod(optarg, &end);
			if (*end || end == optarg || pct < 0 || pct > 100) {
				rc = usage("--rollout must be a percentage from 0 to 100 (got '%s')", optarg);
				goto out;
			}
			json_object_set_new(def, "rollout", json_real(pct));
			has_opts = true;
			break;
		}
		case O_VARIANT: {
			eq = strchr(optarg, '=');
			long w = eq ? strtol(eq + 1, &end, 10) : -1;
			if (!eq || eq == optarg || *end || end == eq + 1 || w < 0) {
				rc = usage("--variant wants NAME=WEIGHT (got '%s')", optarg);
				goto out;
			}
			*eq = 0;
			json_object_set_new(variants, optarg, json_integer(w));
			*eq = '=';
			has_opts = true;
			break;
		}
		case O_WHEN:
			eq = strchr(optarg, '=');
			if (!eq || eq == optarg || !eq[1]) {
				rc = usage("--when wants CLAIM=VALUE[,VALUE…] (got '%s')", optarg);
				goto out;
			}
			*eq = 0;
			json_object_set_new(when, optarg, split_list(eq + 1, true));
			*eq = '=';
			has_opts = true;
			break;
		case O_CHANNELS:
		case O_TABLES:
			json_object_set_new(def, c == O_CHANNELS ? "channels" : "tables",
					    split_list(optarg, false));
			has_opts = true;
			break;
		case O_DESC:
			json_object_set_new(def, "description", json_string(optarg));
			has_opts = true;
			break;
		case 'h':
			fputs(help, stdout);
			rc = 0;
			goto out;
		default:
			fputs(help, stderr);
			goto out;
		}
	}
	if (json_object_size(when))
		json_object_set(def, "when", when);
	if (json_object_size(variants))
		json_object_set(def, "variants", variants);
	int n_args = argc - optind;
	const char *verb = n_args ? argv[optind] : NULL;
	const char *name = n_args > 1 ? argv[optind + 1] : NULL;
	if (!verb) {
		rc = usage("%s", "which command: list, get, set, delete or import?");
		goto out;
	}
	if (strncmp(o.url, "http://", 7) && strncmp(o.url, "https://", 8)) {
		rc = usage("--url must be http://HOST:PORT or https://HOST:PORT (got '%s')", o.url);
		goto out;
	}
	if (!o.apikey || !*o.apikey) {
		rc = usage("%s", "--apikey (or RTSYNC_APIKEY) is required: the service role's key");
		goto out;
	}
	bool is_list = !strcmp(verb, "list"), is_get = !strcmp(verb, "get"),
	     is_set = !strcmp(verb, "set"), is_del = !strcmp(verb, "delete"),
	     is_import = !strcmp(verb, "import");
	int want_args = is_list ? 1 : is_set ? -1 : 2;
	if (!is_list && !is_get && !is_set && !is_del && !is_import) {
		rc = usage("unknown command '%s' (list, get, set, delete, import)", verb);
		goto out;
	}
	if ((want_args > 0 && n_args != want_args) || (is_set && (n_args < 2 || n_args > 3))) {
		rc = usage("wrong arguments for '%s' (rtsync flags --help)", verb);
		goto out;
	}
	if (has_opts && !is_set) {
		rc = usage("the definition options go with 'set', not '%s'", verb);
		goto out;
	}
	const char *method = "GET";
	if (is_set) {
		method = "PUT";
		if (n_args == 3 && has_opts) {
			rc = usage("%s", "set takes a JSON definition or options, not both");
			goto out;
		}
		if (n_args == 3) {
			json_t *v = json_loads(argv[optind + 2], JSON_DECODE_ANY, NULL);
			if (!v) {
				rc = usage("the definition is not JSON: %s", argv[optind + 2]);
				goto out;
			}
			body = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			json_decref(v);
		} else {
			body = json_dumps(def, JSON_COMPACT);
		}
	} else if (is_del) {
		method = "DELETE";
	} else if (is_import) {
		method = "PUT";
		if (!(body = read_all(name))) {
			rc = RT_CLI_EXIT_FAILURE;
			goto out;
		}
		name = NULL;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int status = 0;
	rc = RT_CLI_EXIT_FAILURE;
	if (call(&o, method, is_list ? NULL : name, body, &status, &answer))
		goto out_curl;
	if (status >= 300) {
		rc = rt_cli_http_report("flags", status, answer);
		goto out_curl;
	}
	rc = 0;
	if (is_del)
		goto out_curl;
	json_t *doc = json_loads(answer, JSON_DECODE_ANY, NULL);
	if (is_list && !o.is_json) {
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(doc, "flags"), k, v) {
			char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			printf("%s\t%s\n", k, txt ? txt : "?");
			free(txt);
		}
	} else {
		printf("%s\n", answer);
	}
	json_decref(doc);
out_curl:
	curl_global_cleanup();
out:
	free(body);
	free(answer);
	json_decref(def);
	json_decref(when);
	json_decref(variants);
	return rc;
}
