/*
 * rtsync lock: runs a command while holding a lock (docs/locks.md), over
 * the REST routes /locks/v1/<name>: takes the lock (waiting for it up to
 * --wait-ms), starts the command with the fencing token in
 * RTSYNC_LOCK_TOKEN, renews the lease every third of it while the command
 * runs, releases the lock when it exits. A lease that cannot be renewed
 * (lost, or the server unreachable until it would have ended) stops the
 * command with SIGTERM. `rtsync lock --status NAME` prints the state.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/http.h"
#include "common/buf.h"
#include "common/clock.h"

static const char lock_help[] =
	"Usage: rtsync lock NAME [options] -- COMMAND [ARGS...]\n"
	"       rtsync lock --status NAME [options]\n"
	"\n"
	"Takes the lock NAME, runs COMMAND while holding it (the lease is renewed every\n"
	"third of it), and releases the lock when COMMAND exits. COMMAND gets the lock's\n"
	"fencing token in RTSYNC_LOCK_TOKEN (larger than every earlier holder's: pass it to\n"
	"what you protect so it refuses older holders) and the name in RTSYNC_LOCK_NAME.\n"
	"If the lease is lost, COMMAND is stopped with SIGTERM. SIGINT and SIGTERM are\n"
	"passed on to COMMAND.\n"
	"\n"
	"  --lease-ms N          the lease (the server's default: 30000)\n"
	"  --wait-ms N           wait up to N ms for the lock (0, the default: fail at once\n"
	"                        when another holds it)\n"
	"  --status              print who holds NAME, its token and waiters, and exit\n"
	"  --url URL             server URL (http[s]://HOST:PORT) RTSYNC_URL (http://127.0.0.1:4000)\n"
	"  --apikey KEY          API key (a JWT)                 RTSYNC_APIKEY (required)\n"
	"  --token TOKEN         the user's access token         RTSYNC_TOKEN (default: the API key)\n"
	"  --cacert FILE         trust the CAs in FILE for https:// RTSYNC_CACERT\n"
	"  --capath DIR          trust the CAs in DIR (OpenSSL hashed names)\n"
	"  --insecure            no certificate or host name check (tests only)\n"
	"  --timeout-ms N        give up on one request after N ms (10000)\n"
	"  --json                --status: print the server's answer as JSON\n"
	"  -h, --help            this help\n"
	"\n"
	"Exit status: COMMAND's (128 + N when a signal N ended it); 1 on a failure, 2 on a\n"
	"usage error, 5 when the lock was not obtained (held, or the wait ended), 6 when\n"
	"the lease was lost while COMMAND ran.\n";

#define EXIT_NOT_OBTAINED 5
#define EXIT_LOST 6

enum { O_URL = 256, O_APIKEY, O_TOKEN, O_TIMEOUT, O_JSON, O_CACERT, O_CAPATH, O_INSECURE,
       O_LEASE, O_WAIT, O_STATUS };

static volatile sig_atomic_t g_signal; /* SIGINT or SIGTERM received */

static void on_signal(int sig)
{
	g_signal = sig;
}

static int parse_ms(const char *name, const char *s, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > max) {
		fprintf(stderr, "rtsync lock: %s must be a whole number from 0 to %ld (got '%s')\n",
			name, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

/* "locks/v1" path of name: percent-encoded, with an optional suffix. */
static void lock_path(struct rt_buf *b, const char *name, const char *suffix)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p)) {
			rt_buf_append_byte(b, (char)*p);
		} else {
			rt_buf_append_byte(b, '%');
			rt_buf_append_byte(b, hex[*p >> 4]);
			rt_buf_append_byte(b, hex[*p & 15]);
		}
	}
	if (suffix)
		rt_buf_append_str(b, suffix);
}

/* One call; *j the parsed answer (NULL when not JSON). Returns the HTTP
 * status, or -1 when the server could not be reached. */
static int call(const struct rt_cli_http *o, const char *method, const char *name,
		const char *suffix, json_t *body, char **answer, json_t **j)
{
	struct rt_buf path;
	rt_buf_init(&path);
	lock_path(&path, name, suffix);
	char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int status = 0;
	*answer = NULL;
	*j = NULL;
	int rc = rt_cli_http_call("lock", o, method, "locks/v1", path.data, txt, &status, answer);
	free(txt);
	rt_buf_deinit(&path);
	if (rc)
		return -1;
	*j = json_loads(*answer, 0, NULL);
	return status;
}

static int show_status(const struct rt_cli_http *o, const char *name)
{
	char *answer;
	json_t *j;
	int status = call(o, "GET", name, NULL, NULL, &answer, &j);
	int rc = RT_CLI_EXIT_FAILURE;
	if (status < 0)
		goto out;
	if (status != 200) {
		rc = rt_cli_http_report("lock", status, answer);
		goto out;
	}
	if (o->is_json) {
		puts(answer);
	} else if (json_is_true(json_object_get(j, "held"))) {
		const char *holder = json_string_value(json_object_get(j, "holder"));
		printf("%s: held by %s, token %lld, lease ends in %lld ms, %lld waiting\n", name,
		       holder ? holder : "(no subject)",
		       (long long)json_integer_value(json_object_get(j, "token")),
		       (long long)json_integer_value(json_object_get(j, "expires_in_ms")),
		       (long long)json_integer_value(json_object_get(j, "waiters")));
	} else {
		printf("%s: free, %lld waiting\n", name,
		       (long long)json_integer_value(json_object_get(j, "waiters")));
	}
	rc = 0;
out:
	json_decref(j);
	free(answer);
	return rc;
}

static void release(const struct rt_cli_http *o, const char *name, const char *lease_id,
		    long long token)
{
	json_t *body = json_pack("{s:s,s:I}", "lease_id", lease_id, "token", (json_int_t)token);
	char *answer;
	json_t *j;
	int status = call(o, "DELETE", name, NULL, body, &answer, &j);
	if (status >= 0 && status != 204 && status != 404) /* 404: gone already (lease ended) */
		rt_cli_http_report("lock", status, answer);
	json_decref(body);
	json_decref(j);
	free(answer);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR && !g_signal)
		;
}

/* Runs argv while holding the lock; returns the exit status. */
static int run_locked(struct rt_cli_http *o, const char *name, long lease_ms, long wait_ms,
		      char **argv)
{
	json_t *body = json_object();
	if (lease_ms)
		json_object_set_new(body, "lease_ms", json_integer(lease_ms));
	if (wait_ms)
		json_object_set_new(body, "wait_ms", json_integer(wait_ms));
	struct rt_cli_http acq = *o;
	acq.timeout_ms = o->timeout_ms + wait_ms; /* the answer comes when the wait ends */
	char *answer;
	json_t *j;
	int status = call(&acq, "POST", name, NULL, body, &answer, &j);
	json_decref(body);
	if (status != 200) {
		int rc = RT_CLI_EXIT_FAILURE;
		if (status == 409) {
			const char *d = json_string_value(json_object_get(j, "details"));
			fprintf(stderr, "rtsync lock: %s: %s\n", name,
				d && !strcmp(d, "timeout") ? "the wait ended before the lock was free"
							   : "held by another owner");
			rc = EXIT_NOT_OBTAINED;
		} else if (status > 0) {
			rt_cli_http_report("lock", status, answer);
		}
		json_decref(j);
		free(answer);
		return rc;
	}
	long long token = (long long)json_integer_value(json_object_get(j, "token"));
	long granted_lease = (long)json_integer_value(json_object_get(j, "lease_ms"));
	char lease_id[32];
	snprintf(lease_id, sizeof lease_id, "%s",
		 json_string_value(json_object_get(j, "lease_id")) ? json_string_value(json_object_get(j, "lease_id")) : "");
	json_decref(j);
	free(answer);
	if (granted_lease <= 0 || !*lease_id) {
		fprintf(stderr, "rtsync lock: the server's grant has no lease\n");
		return RT_CLI_EXIT_FAILURE;
	}

	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "rtsync lock: fork: %s\n", strerror(errno));
		release(o, name, lease_id, token);
		return RT_CLI_EXIT_FAILURE;
	}
	if (!pid) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		char tok[32];
		snprintf(tok, sizeof tok, "%lld", token);
		setenv("RTSYNC_LOCK_TOKEN", tok, 1);
		setenv("RTSYNC_LOCK_NAME", name, 1);
		execvp(argv[0], argv);
		fprintf(stderr, "rtsync lock: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}

	/* renew every third of the lease; the lease ends at `valid_until` unless renewed */
	uint64_t now = rt_mono_ms(), valid_until = now + (uint64_t)granted_lease;
	uint64_t next_renew = now + (uint64_t)granted_lease / 3;
	bool is_lost = false, is_forwarded = false;
	int wst = 0;
	for (;;) {
		pid_t r = waitpid(pid, &wst, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			break;
		if (g_signal && !is_forwarded) {
			kill(pid, g_signal);
			is_forwarded = true;
		}
		now = rt_mono_ms();
		if (!is_lost && now >= next_renew) {
			json_t *rb = json_pack("{s:s,s:I,s:i}", "lease_id", lease_id, "token",
					       (json_int_t)token, "lease_ms", (int)granted_lease);
			struct rt_cli_http ren = *o;
			/* a renewal never outlives the lease it extends */
			long left = (long)(valid_until > now ? valid_until - now : 1);
			ren.timeout_ms = left < o->timeout_ms ? left : o->timeout_ms;
			int st = call(&ren, "POST", name, "/renew", rb, &answer, &j);
			json_decref(rb);
			now = rt_mono_ms();
			if (st == 200) {
				valid_until = now + (uint64_t)granted_lease;
				next_renew = now + (uint64_t)granted_lease / 3;
			} else if (st == 404 || now >= valid_until) {
				fprintf(stderr, "rtsync lock: %s: the lease was lost; stopping %s\n",
					name, argv[0]);
				is_lost = true;
				kill(pid, SIGTERM);
			} else {
				next_renew = now + 100; /* the server did not answer: again soon */
			}
			json_decref(j);
			free(answer);
		}
		if (!is_lost && rt_mono_ms() >= valid_until) {
			fprintf(stderr, "rtsync lock: %s: the lease ended unrenewed; stopping %s\n",
				name, argv[0]);
			is_lost = true;
			kill(pid, SIGTERM);
		}
		sleep_ms(20);
	}
	if (!is_lost)
		release(o, name, lease_id, token);
	if (is_lost)
		return EXIT_LOST;
	if (WIFEXITED(wst))
		return WEXITSTATUS(wst);
	return WIFSIGNALED(wst) ? 128 + WTERMSIG(wst) : RT_CLI_EXIT_FAILURE;
}

int rt_cli_lock(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", required_argument, NULL, O_URL},
		{"apikey", required_argument, NULL, O_APIKEY},
		{"token", required_argument, NULL, O_TOKEN},
		{"timeout-ms", required_argument, NULL, O_TIMEOUT},
		{"cacert", required_argument, NULL, O_CACERT},
		{"capath", required_argument, NULL, O_CAPATH},
		{"insecure", no_argument, NULL, O_INSECURE},
		{"json", no_argument, NULL, O_JSON},
		{"lease-ms", required_argument, NULL, O_LEASE},
		{"wait-ms", required_argument, NULL, O_WAIT},
		{"status", no_argument, NULL, O_STATUS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct rt_cli_http o = {0};
	rt_cli_http_defaults(&o);
	long lease_ms = 0, wait_ms = 0;
	bool is_status = false;
	/* the options end at "--": what follows is the command's */
	int n_opts = argc;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--")) {
			n_opts = i;
			break;
		}
	int c;
	optind = 1;
	while ((c = getopt_long(n_opts, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_URL: o.url = optarg; break;
		case O_APIKEY: o.apikey = optarg; break;
		case O_TOKEN: o.token = optarg; break;
		case O_JSON: o.is_json = true; break;
		case O_CACERT: o.cacert = optarg; break;
		case O_CAPATH: o.capath = optarg; break;
		case O_INSECURE: o.is_insecure = true; break;
		case O_STATUS: is_status = true; break;
		case O_TIMEOUT:
			if (parse_ms("--timeout-ms", optarg, 3600000, &o.timeout_ms))
				return RT_CLI_EXIT_USAGE;
			break;
		case O_LEASE:
			if (parse_ms("--lease-ms", optarg, 86400000, &lease_ms))
				return RT_CLI_EXIT_USAGE;
			break;
		case O_WAIT:
			if (parse_ms("--wait-ms", optarg, 86400000, &wait_ms))
				return RT_CLI_EXIT_USAGE;
			break;
		case 'h': fputs(lock_help, stdout); return 0;
		default: fputs("Try 'rtsync lock --help'.\n", stderr); return RT_CLI_EXIT_USAGE;
		}
	}
	if (optind + 1 != n_opts) {
		fputs(optind >= n_opts ? "rtsync lock: the lock's NAME is required\n"
				       : "rtsync lock: one NAME, then -- COMMAND\n",
		      stderr);
		fputs("Try 'rtsync lock --help'.\n", stderr);
		return RT_CLI_EXIT_USAGE;
	}
	const char *name = argv[optind];
	if (!o.apikey || !*o.apikey) {
		fputs("rtsync lock: --apikey (or RTSYNC_APIKEY) is required\n", stderr);
		return RT_CLI_EXIT_USAGE;
	}
	if (is_status) {
		if (n_opts < argc) {
			fputs("rtsync lock: --status takes no command\n", stderr);
			return RT_CLI_EXIT_USAGE;
		}
		return show_status(&o, name);
	}
	if (n_opts + 1 >= argc) {
		fputs("rtsync lock: a COMMAND to run under the lock is required (after --)\n"
		      "Try 'rtsync lock --help'.\n",
		      stderr);
		return RT_CLI_EXIT_USAGE;
	}
	optind = n_opts + 1;
	return run_locked(&o, name, lease_ms, wait_ms, argv + optind);
}
