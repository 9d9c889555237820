/*
 * Helpers for the librtsync tests against a real server: start, kill, stop
 * and restart `rtsync serve` (binary from $RTSYNC_BIN) on one port and data
 * directory, mint tokens with `rtsync token`, write rows as an outside
 * client, drive a client until a condition holds, and a counting allocator
 * that can fail the k-th allocation (also used for jansson).
 * The store is SQLite (rows written with the sqlite3 shell) unless
 * $RTSYNC_TEST_POSTGRES holds a PostgreSQL server URL (tests/client/run.sh
 * sets it for its PostgreSQL run): then each server gets a fresh database
 * of that cluster, kept across its restarts, and rows are written with psql.
 * Every server started is SIGKILLed at exit if still running.
 */
#ifndef RT_TESTS_CLIENT_HARNESS_H
#define RT_TESTS_CLIENT_HARNESS_H

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rtsync/rtsync.h"

#define H_SECRET "client-test-secret-0123456789abcdef0123456789"

static int64_t h_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *h_bin(void)
{
	const char *b = getenv("RTSYNC_BIN");
	if (!b) {
		fprintf(stderr, "RTSYNC_BIN is not set (run through tests/client/run.sh)\n");
		exit(2);
	}
	return b;
}

/* ---- servers ---- */

struct h_server {
	pid_t pid;
	int port;
	char dir[128];
	char url[64];
	char db[160];        /* SQLite: the database; PostgreSQL: the retained change log */
	char pgdb[48];       /* PostgreSQL: the database (also the slot's name), "" with SQLite */
	const char *args[8]; /* more `serve` arguments, NULL-terminated */
	const char *schema;  /* the schema file's text; NULL: h_schema */
};

/* The PostgreSQL server URL ($RTSYNC_TEST_POSTGRES), NULL for SQLite. */
static const char *h_pg(void)
{
	const char *u = getenv("RTSYNC_TEST_POSTGRES");
	return u && *u ? u : NULL;
}

/* Runs sql (no double quotes) with psql in database db. Returns its status. */
static int h_psql(const char *db, const char *sql)
{
	char cmd[1600];
	snprintf(cmd, sizeof cmd,
		 "psql -X -q -At -v ON_ERROR_STOP=1 -d '%s/%s' -c \"%s\" >/dev/null", h_pg(), db,
		 sql);
	return system(cmd);
}

#define H_MAX_PIDS 64
static pid_t h_pids[H_MAX_PIDS];

static void h_kill_all(void)
{
	for (int i = 0; i < H_MAX_PIDS; i++)
		if (h_pids[i] > 0) {
			kill(h_pids[i], SIGCONT);
			kill(h_pids[i], SIGKILL);
			waitpid(h_pids[i], NULL, 0);
			h_pids[i] = 0;
		}
}

static void h_track_pid(pid_t pid, bool add)
{
	static bool registered;
	if (!registered) {
		atexit(h_kill_all);
		registered = true;
	}
	for (int i = 0; i < H_MAX_PIDS; i++)
		if (add ? h_pids[i] == 0 : h_pids[i] == pid) {
			h_pids[i] = add ? pid : 0;
			return;
		}
}

static const char h_schema[] =
	"CREATE TABLE IF NOT EXISTS todos (id bigint PRIMARY KEY, title text NOT NULL,\n"
	"  done boolean NOT NULL DEFAULT false);\n";

/* Starts the server (port 0 picks one; s->port is then set). Returns 0 or -1. */
static int h_server_start(struct h_server *s)
{
	if (!s->dir[0]) {
		snprintf(s->dir, sizeof s->dir, "/tmp/rtsync-client-XXXXXX");
		if (!mkdtemp(s->dir))
			return -1;
		char path[200];
		snprintf(path, sizeof path, "%s/schema.sql", s->dir);
		FILE *f = fopen(path, "w");
		if (!f)
			return -1;
		fputs(s->schema ? s->schema : h_schema, f);
		fclose(f);
		snprintf(s->db, sizeof s->db, "%s/%s", s->dir,
			 h_pg() ? "pg-changes.db" : "rtsync.db");
		if (h_pg()) {
			static int n_dbs;
			char sql[96];
			snprintf(s->pgdb, sizeof s->pgdb, "rtc_%d_%d", (int)getpid(), ++n_dbs);
			snprintf(sql, sizeof sql, "CREATE DATABASE %s", s->pgdb);
			if (h_psql("postgres", sql))
				return -1;
		}
	}
	char listen[64], schema[200], log[200], pgurl[300];
	snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
	snprintf(schema, sizeof schema, "%s/schema.sql", s->dir);
	snprintf(log, sizeof log, "%s/server.out", s->dir);
	unlink(log);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
		FILE *out = fopen(log, "w");
		if (!out)
			_exit(126);
		dup2(fileno(out), 1);
		const char *argv[40] = {h_bin(), "serve", "--listen", listen, "--jwt-secret",
					H_SECRET, "--data-dir", s->dir, "--schema", schema,
					"--log-level", "error", "--workers", "1"};
		int n = 14;
		if (s->pgdb[0]) {
			snprintf(pgurl, sizeof pgurl, "%s/%s", h_pg(), s->pgdb);
			argv[n++] = "--postgres";
			argv[n++] = pgurl;
			argv[n++] = "--postgres-name";
			argv[n++] = s->pgdb;
		}
		for (int i = 0; i < 7 && s->args[i]; i++)
			argv[n++] = s->args[i];
		execv(h_bin(), (char *const *)argv);
		_exit(127);
	}
	h_track_pid(pid, true);
	s->pid = pid;
	int port = 0;
	bool is_tls = false;
	for (int64_t end = h_now_ms() + 10000; !port && h_now_ms() < end;) {
		FILE *f = fopen(log, "r");
		char line[256];
		while (f && fgets(line, sizeof line, f)) {
			if (sscanf(line, "rtsync listening on http://127.0.0.1:%d", &port) == 1)
				break;
			if (sscanf(line, "rtsync listening on https://127.0.0.1:%d", &port) == 1) {
				is_tls = true; /* --tls-cert in args */
				break;
			}
		}
		if (f)
			fclose(f);
		if (!port)
			usleep(10000);
	}
	if (!port)
		return -1;
	s->port = port;
	snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d", is_tls ? "https" : "http", port);
	return 0;
}

static void h_server_signal(struct h_server *s, int sig)
{
	if (s->pid > 0)
		kill(s->pid, sig);
}

/* SIGKILL and reap. */
static void h_server_kill(struct h_server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGCONT);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	h_track_pid(s->pid, false);
	s->pid = 0;
}

/* SIGTERM, wait; returns the exit status (0 for a clean exit). */
static int h_server_stop(struct h_server *s)
{
	if (s->pid <= 0)
		return 0;
	int st = 0;
	kill(s->pid, SIGCONT);
	kill(s->pid, SIGTERM);
	waitpid(s->pid, &st, 0);
	h_track_pid(s->pid, false);
	s->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Removes the data directory and, with PostgreSQL, the database and its
 * replication slot (the server must be stopped). */
static void h_server_remove(struct h_server *s)
{
	char cmd[200];
	if (s->pgdb[0]) {
		snprintf(cmd, sizeof cmd,
			 "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
			 "WHERE slot_name = '%s'", s->pgdb);
		if (h_psql("postgres", cmd)) {
		}
		snprintf(cmd, sizeof cmd, "DROP DATABASE IF EXISTS %s WITH (FORCE)", s->pgdb);
		if (h_psql("postgres", cmd)) {
		}
		s->pgdb[0] = 0;
	}
	if (!s->dir[0])
		return;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
	if (system(cmd)) {
	}
	s->dir[0] = 0;
}

/* A token for role with claim sub (NULL: none) expiring in expires_in
 * seconds (one of 4 static buffers, reused in turn). */
static const char *h_token_as(const char *role, const char *sub, long expires_in)
{
	static char tok[4][1024];
	static int slot;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "'%s' token --secret '%s' --role '%s' --expires-in %ld%s%s%s",
		 h_bin(), H_SECRET, role, expires_in, sub ? " --sub '" : "", sub ? sub : "",
		 sub ? "'" : "");
	FILE *p = popen(cmd, "r");
	char *t = tok[slot++ % 4];
	t[0] = 0;
	if (p) {
		if (!fgets(t, 1024, p))
			t[0] = 0;
		pclose(p);
	}
	t[strcspn(t, "\r\n")] = 0;
	return t;
}

/* A token for role anon expiring in expires_in seconds (static buffer). */
static const char *h_token(long expires_in)
{
	return h_token_as("anon", NULL, expires_in);
}

/* Runs SQL on the server's database as an outside client: the sqlite3 shell,
 * or psql with PostgreSQL. Returns its status. */
static int h_sql(const struct h_server *s, const char *fmt, ...)
{
	char sql[1024], cmd[1400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	if (s->pgdb[0])
		return h_psql(s->pgdb, sql);
	snprintf(cmd, sizeof cmd, "sqlite3 -cmd '.timeout 5000' '%s' \"%s\"", s->db, sql);
	return system(cmd);
}

/* The oldest and newest positions in the server's retained change log
 * (read with the sqlite3 shell; 0 when empty). Returns 0 or -1. */
__attribute__((unused)) static int h_log_range(const struct h_server *s, uint64_t *oldest,
					       uint64_t *newest)
{
	char cmd[400], out[64] = "";
	snprintf(cmd, sizeof cmd,
		 "sqlite3 -cmd '.timeout 5000' '%s' "
		 "'SELECT coalesce(min(pos), 0), coalesce(max(pos), 0) FROM %s'",
		 s->db, s->pgdb[0] ? "changes" : "_rtsync_changes");
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	bool ok = fgets(out, sizeof out, p) != NULL;
	unsigned long long a, b;
	ok = (pclose(p) == 0) && ok && sscanf(out, "%llu|%llu", &a, &b) == 2;
	if (!ok)
		return -1;
	*oldest = a;
	*newest = b;
	return 0;
}

/* Runs the client's loop until *flag or timeout; returns the flag. */
static bool h_pump_until(struct rt_client *c, volatile bool *flag, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;
	while (!*flag && h_now_ms() < end)
		rt_client_run(c, 20);
	return *flag;
}

static void h_pump_for(struct rt_client *c, int ms)
{
	int64_t end = h_now_ms() + ms;
	while (h_now_ms() < end)
		rt_client_run(c, 20);
}

/* ---- counting allocator ---- */

void __sanitizer_print_stack_trace(void) __attribute__((weak));

struct h_alloc {
	atomic_long live;    /* allocations not freed */
	atomic_long count;   /* allocations made */
	atomic_long fail_at; /* fail the allocation with this number (1-based); 0 never */
	atomic_long failed;  /* allocations refused */
};

static struct h_alloc h_mem;

static void *h_count_realloc(struct h_alloc *a, void *p, size_t n, bool can_fail)
{
	if (!n) {
		if (p) {
			atomic_fetch_sub(&a->live, 1);
			free(p);
		}
		return NULL;
	}
	if (can_fail) {
		long k = atomic_fetch_add(&a->count, 1) + 1;
		if (atomic_load(&a->fail_at) == k) {
			atomic_fetch_add(&a->failed, 1);
			if (getenv("H_TRACE_FAIL") && atol(getenv("H_TRACE_FAIL")) == k &&
			    __sanitizer_print_stack_trace)
				__sanitizer_print_stack_trace(); /* which allocation failed */
			return NULL;
		}
	}
	void *q = realloc(p, n);
	if (q && !p)
		atomic_fetch_add(&a->live, 1);
	return q;
}

/* librtsync's allocator: counted, and the fail_at-th allocation fails. */
static void *h_realloc(void *ud, void *p, size_t n)
{
	return h_count_realloc(ud, p, n, true);
}

static const struct rt_allocator h_allocator = {h_realloc, &h_mem};

/* jansson's allocations are counted and failed like the library's, except
 * inside json_loadb: jansson 2.14's parser can crash when one of its own
 * allocations fails (found by this test), and reports some failures as bad
 * syntax; the test binaries are linked with --wrap=json_loadb,--wrap=json_loads
 * to mark those calls. */
static __thread bool h_in_json_parse;

json_t *__real_json_loads(const char *input, size_t flags, json_error_t *error);
json_t *__wrap_json_loads(const char *input, size_t flags, json_error_t *error);

json_t *__wrap_json_loads(const char *input, size_t flags, json_error_t *error)
{
	h_in_json_parse = true;
	json_t *v = __real_json_loads(input, flags, error);
	h_in_json_parse = false;
	return v;
}

json_t *__real_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error);
json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error);

json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error)
{
	h_in_json_parse = true;
	json_t *v = __real_json_loadb(buffer, buflen, flags, error);
	h_in_json_parse = false;
	return v;
}

static void *h_json_malloc(size_t n)
{
	return h_count_realloc(&h_mem, NULL, n ? n : 1, !h_in_json_parse);
}

static void h_json_free(void *p)
{
	h_count_realloc(&h_mem, p, 0, false);
}

/* Routes jansson through the counting allocator (call before any JSON). */
static void h_count_jansson(void)
{
	json_set_alloc_funcs(h_json_malloc, h_json_free);
}

#endif
