/*
 * The synced table (include/rtsync/table.h) against the real server
 * (tests/client/run.sh sets RTSYNC_BIN): two clients editing one row under
 * each conflict strategy; 1,000 writes made while the server is down by a
 * process killed with SIGKILL halfway and run again; the server killed with
 * SIGKILL during a stream of acknowledged writes; a table away while the
 * server pruned its resume position, which must reload (resync).
 * With $RTSYNC_TEST_POSTGRES set (harness.h) the scenarios that involve the
 * store run against `rtsync serve --postgres`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "rtsync/table.h"

/* ---- a table's observer ---- */

#define MAX_IDS 2048

struct tb {
	int n_ready;
	int n_pending, n_confirmed, n_rolled_back, n_errors;
	char outcome[32], code[16], conflicts[128], record[256];
	int n_rows;
	char row[256]; /* last on_row: the row ("" for none) */
	bool row_pending;
	enum rt_table_cause cause;
	/* manual conflicts */
	enum rt_table_resolution decide;
	const char *resolved;
	int n_conflicts;
	char c_local[256], c_base[256], c_remote[256], c_conflicts[64];
	/* confirmed inserts: ids from the write's record */
	bool confirmed_id[MAX_IDS];
	/* on_row events that showed no row, by id */
	int n_gone[MAX_IDS];
	/* with keep_rows: rt_table_rows() and rt_table_pending() at the last on_ready */
	bool keep_rows;
	char *ready_rows;
	size_t ready_pending;
};

static void tb_ready(void *user, struct rt_table *t)
{
	struct tb *b = user;
	b->n_ready++;
	if (b->keep_rows) {
		free(b->ready_rows);
		b->ready_rows = NULL;
		if (rt_table_rows(t, &b->ready_rows))
			b->ready_rows = NULL;
		b->ready_pending = rt_table_pending(t);
	}
}

static void tb_row(void *user, struct rt_table *t, const struct rt_table_row_event *ev)
{
	struct tb *b = user;
	b->n_rows++;
	if (!ev->row) {
		json_t *k = json_loads(ev->key, 0, NULL);
		json_int_t id = json_integer_value(json_object_get(k, "id"));
		if (id > 0 && id < MAX_IDS)
			b->n_gone[id]++;
		json_decref(k);
	}
	snprintf(b->row, sizeof b->row, "%s", ev->row ? ev->row : "");
	b->row_pending = ev->is_pending;
	b->cause = ev->cause;
}

static void tb_write(void *user, struct rt_table *t, const struct rt_table_write_event *ev)
{
	struct tb *b = user;
	switch (ev->state) {
	case RT_WRITE_PENDING:
		b->n_pending++;
		return;
	case RT_WRITE_CONFIRMED:
		b->n_confirmed++;
		break;
	case RT_WRITE_ROLLED_BACK:
		b->n_rolled_back++;
		if (getenv("H_VERBOSE"))
			print_message("rolled back: %s %s\n", ev->code ? ev->code : "",
				      ev->reason ? ev->reason : "");
		break;
	}
	snprintf(b->outcome, sizeof b->outcome, "%s", ev->outcome ? ev->outcome : "");
	snprintf(b->code, sizeof b->code, "%s", ev->code ? ev->code : "");
	snprintf(b->conflicts, sizeof b->conflicts, "%s", ev->conflicts ? ev->conflicts : "");
	snprintf(b->record, sizeof b->record, "%s", ev->record ? ev->record : "");
	if (ev->state == RT_WRITE_CONFIRMED && ev->record) {
		json_t *r = json_loads(ev->record, 0, NULL);
		json_int_t id = json_integer_value(json_object_get(r, "id"));
		if (id > 0 && id < MAX_IDS)
			b->confirmed_id[id] = true;
		json_decref(r);
	}
}

static enum rt_table_resolution tb_conflict(void *user, struct rt_table *t,
					    const struct rt_table_conflict *c, const char **resolved)
{
	struct tb *b = user;
	b->n_conflicts++;
	snprintf(b->c_local, sizeof b->c_local, "%s", c->local ? c->local : "");
	snprintf(b->c_base, sizeof b->c_base, "%s", c->base ? c->base : "");
	snprintf(b->c_remote, sizeof b->c_remote, "%s", c->remote ? c->remote : "");
	snprintf(b->c_conflicts, sizeof b->c_conflicts, "%s", c->conflicts ? c->conflicts : "");
	*resolved = b->resolved;
	return b->decide;
}

static void tb_error(void *user, struct rt_table *t, int rc, const char *msg)
{
	struct tb *b = user;
	b->n_errors++;
	if (getenv("H_VERBOSE"))
		print_message("table error %s: %s\n", rt_err_name(rc), msg);
}

static struct rt_client *new_client(const struct h_server *s)
{
	struct rt_client_options o = {
		.url = s->url,
		.apikey = h_token(3600),
		.reconnect_base_ms = 50,
		.reconnect_max_ms = 300,
		.push_timeout_ms = 3000,
	};
	struct rt_client *c = NULL;
	assert_int_equal(rt_client_new(&o, &c), 0);
	return c;
}

static struct rt_table *open_table(struct rt_client *c, struct tb *b,
				   enum rt_table_strategy strategy, const char *outbox)
{
	struct rt_table_options o = {
		.table = "todos",
		.default_strategy = strategy,
		.outbox_path = outbox,
		.retry_base_ms = 50,
		.retry_max_ms = 400,
		.cb = {tb_ready, tb_row, tb_write, tb_conflict, tb_error},
		.user = b,
	};
	struct rt_table *t = NULL;
	assert_int_equal(rt_table_open(c, &o, &t), 0);
	return t;
}

/* Pumps both clients (b may be NULL) until cond(arg) or timeout. */
static bool pump2(struct rt_client *a, struct rt_client *b, bool (*cond)(void *), void *arg,
		  int timeout_ms)
{
	for (int64_t end = h_now_ms() + timeout_ms; h_now_ms() < end;) {
		if (cond(arg))
			return true;
		rt_client_run(a, b ? 5 : 20);
		if (b)
			rt_client_run(b, 5);
	}
	return cond(arg);
}

static bool is_ready(void *arg)
{
	return rt_table_is_ready(arg);
}

static bool is_drained(void *arg)
{
	return rt_table_pending(arg) == 0;
}

/* ---- REST ---- */

/* GET /rest/v1/<path> as JSON (NULL on failure). */
static json_t *rest_get(const struct h_server *s, const char *path)
{
	const char *tok = h_token(3600);
	char cmd[2600];
	snprintf(cmd, sizeof cmd,
		 "curl -sf -H 'apikey: %s' -H 'Authorization: Bearer %s' '%s/rest/v1/%s'", tok, tok,
		 s->url, path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	json_t *v = json_loadf(p, 0, NULL);
	pclose(p);
	return v;
}

/* The visible row of id in t as JSON (NULL when none). */
static json_t *cached(struct rt_table *t, int id)
{
	char key[32], *row = NULL;
	snprintf(key, sizeof key, "{\"id\":%d}", id);
	if (rt_table_get(t, key, &row, NULL))
		return NULL;
	json_t *v = json_loads(row, 0, NULL);
	free(row);
	return v;
}

static bool json_is(const char *text, const char *expected)
{
	json_t *a = json_loads(text, 0, NULL), *b = json_loads(expected, 0, NULL);
	bool same = a && b && json_equal(a, b);
	if (!same)
		print_message("got %s, expected %s\n", text, expected);
	json_decref(a);
	json_decref(b);
	return same;
}

/* ---- two clients, one row ---- */

struct race_case {
	enum rt_table_strategy strategy;
	enum rt_table_resolution decide; /* MANUAL */
	const char *resolved;            /* MANUAL, RECORD */
	bool b_confirmed;                /* B's write ends confirmed (else rolled back) */
	const char *b_outcome;
	const char *final;               /* the row on the server at the end */
};

struct both {
	struct rt_table *a, *b;
	const char *final;
};

/* Both caches show the final row, with nothing pending. */
static bool caches_settled(void *arg)
{
	struct both *x = arg;
	json_t *want = json_loads(x->final, 0, NULL);
	json_t *ra = cached(x->a, 1), *rb = cached(x->b, 1);
	bool ok = ra && rb && json_equal(ra, want) && json_equal(rb, want) &&
		  !rt_table_pending(x->a) && !rt_table_pending(x->b);
	json_decref(want);
	json_decref(ra);
	json_decref(rb);
	return ok;
}

static bool b_answered(void *arg)
{
	struct tb *b = arg;
	return b->n_confirmed + b->n_rolled_back > 0;
}

/*
 * Row 1 is {title:"t0", done:false}. A sets title "A" and is acknowledged;
 * B, which has not seen A's change yet, sets title "B" and done true with
 * the strategy of the case. Then the server's row and both caches must be
 * the documented result.
 */
static void race(const struct race_case *rc)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	assert_int_equal(h_sql(&s, "INSERT INTO todos (id, title, done) VALUES (1, 't0', false)"),
			 0);
	struct tb ta = {0}, tb2 = {.decide = rc->decide, .resolved = rc->resolved};
	struct rt_client *ca = new_client(&s), *cb = new_client(&s);
	struct rt_table *a = open_table(ca, &ta, rc->strategy, NULL);
	struct rt_table *b = open_table(cb, &tb2, rc->strategy, NULL);
	assert_int_equal(rt_client_connect(ca), 0);
	assert_int_equal(rt_client_connect(cb), 0);
	assert_true(pump2(ca, NULL, is_ready, a, 5000));
	assert_true(pump2(cb, NULL, is_ready, b, 5000));
	assert_int_equal(ta.n_ready, 1);
	json_t *r = cached(b, 1);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "title")), "t0");
	json_decref(r);

	char ida[RT_TABLE_ID_LEN], idb[RT_TABLE_ID_LEN];
	assert_int_equal(rt_table_update(a, "{\"id\":1,\"title\":\"A\"}", RT_STRATEGY_DEFAULT, ida),
			 0);
	assert_int_equal(strlen(ida), 32);
	assert_true(ta.row_pending);
	assert_int_equal(ta.cause, RT_TABLE_LOCAL);
	assert_int_equal(ta.n_pending, 1);
	assert_int_equal(rt_table_pending(a), 1);
	assert_true(pump2(ca, NULL, is_drained, a, 5000));
	assert_int_equal(ta.n_confirmed, 1);
	assert_string_equal(ta.outcome, "applied");

	/* B edits from what it saw (t0): shows at once as pending */
	assert_int_equal(rt_table_update(b, "{\"id\":1,\"title\":\"B\",\"done\":true}",
					 RT_STRATEGY_DEFAULT, idb),
			 0);
	assert_true(json_is(tb2.row, "{\"id\":1,\"title\":\"B\",\"done\":true}"));
	assert_true(tb2.row_pending);
	assert_true(pump2(cb, NULL, b_answered, &tb2, 5000));
	if (rc->b_confirmed) {
		assert_int_equal(tb2.n_confirmed, 1);
		assert_int_equal(tb2.n_rolled_back, 0);
		assert_string_equal(tb2.outcome, rc->b_outcome);
	} else {
		assert_int_equal(tb2.n_rolled_back, 1);
		assert_int_equal(tb2.n_confirmed, 0);
		assert_string_equal(tb2.code, "RTS409");
	}
	if (rc->strategy == RT_STRATEGY_MERGE || rc->strategy == RT_STRATEGY_LWW)
		assert_string_equal(tb2.conflicts, "[\"title\"]");
	if (rc->strategy == RT_STRATEGY_MANUAL) {
		assert_int_equal(tb2.n_conflicts, 1);
		assert_true(json_is(tb2.c_local, "{\"id\":1,\"title\":\"B\",\"done\":true}"));
		assert_true(json_is(tb2.c_base, "{\"title\":\"t0\",\"done\":false}"));
		assert_true(json_is(tb2.c_remote, "{\"id\":1,\"title\":\"A\",\"done\":false}"));
		assert_string_equal(tb2.c_conflicts, "[\"title\"]");
	}

	/* the server's row, then both caches converge on it */
	json_t *rows = rest_get(&s, "todos?id=eq.1");
	assert_int_equal(json_array_size(rows), 1);
	char *server_row = json_dumps(json_array_get(rows, 0), JSON_COMPACT);
	assert_true(json_is(server_row, rc->final));
	free(server_row);
	json_decref(rows);
	struct both x = {a, b, rc->final};
	assert_true(pump2(ca, cb, caches_settled, &x, 5000));
	assert_false(tb2.row_pending);
	assert_int_equal(ta.n_errors + tb2.n_errors, 0);

	rt_table_close(a);
	rt_table_close(b);
	rt_client_free(ca);
	rt_client_free(cb);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

static void test_race_reject(void **state)
{
	race(&(struct race_case){RT_STRATEGY_REJECT, 0, NULL, false, NULL,
				 "{\"id\":1,\"title\":\"A\",\"done\":false}"});
}

static void test_race_merge(void **state)
{
	race(&(struct race_case){RT_STRATEGY_MERGE, 0, NULL, true, "merged",
				 "{\"id\":1,\"title\":\"A\",\"done\":true}"});
}

static void test_race_lww(void **state)
{
	race(&(struct race_case){RT_STRATEGY_LWW, 0, NULL, true, "applied",
				 "{\"id\":1,\"title\":\"B\",\"done\":true}"});
}

static void test_race_manual_record(void **state)
{
	race(&(struct race_case){RT_STRATEGY_MANUAL, RT_RESOLVE_RECORD,
				 "{\"title\":\"A+B\",\"done\":true}", true, "applied",
				 "{\"id\":1,\"title\":\"A+B\",\"done\":true}"});
}

static void test_race_manual_keep_mine(void **state)
{
	race(&(struct race_case){RT_STRATEGY_MANUAL, RT_RESOLVE_KEEP_MINE, NULL, true, "applied",
				 "{\"id\":1,\"title\":\"B\",\"done\":true}"});
}

static void test_race_manual_drop(void **state)
{
	race(&(struct race_case){RT_STRATEGY_MANUAL, RT_RESOLVE_DROP, NULL, false, NULL,
				 "{\"id\":1,\"title\":\"A\",\"done\":false}"});
}

/* ---- 1,000 writes offline, SIGKILL halfway ---- */

#define N_OFFLINE 1000

/* The writer process: opens the outbox, writes every row not already
 * pending, reports "pushed N" after each write and "done W S" at the end. */
static void offline_writer(const struct h_server *s, const char *outbox, int out_fd)
{
	struct rt_client *c = NULL;
	struct rt_client_options o = {.url = s->url, .apikey = h_token(3600)};
	if (rt_client_new(&o, &c))
		_exit(3);
	struct rt_table_options to = {.table = "todos", .outbox_path = outbox};
	struct rt_table *t;
	if (rt_table_open(c, &to, &t))
		_exit(4);
	rt_client_connect(c); /* the server is down: it keeps retrying */
	int written = 0, skipped = 0;
	for (int id = 1; id <= N_OFFLINE; id++) {
		char buf[128];
		bool pending = false;
		snprintf(buf, sizeof buf, "{\"id\":%d}", id);
		if (!rt_table_get(t, buf, NULL, &pending) && pending) {
			skipped++;
			continue;
		}
		snprintf(buf, sizeof buf, "{\"id\":%d,\"title\":\"offline %d\"}", id, id);
		if (rt_table_insert(t, buf, RT_STRATEGY_DEFAULT, NULL))
			_exit(5);
		written++;
		int n = snprintf(buf, sizeof buf, "pushed %d\n", written + skipped);
		if (write(out_fd, buf, (size_t)n) != n)
			_exit(6);
	}
	char buf[64];
	int n = snprintf(buf, sizeof buf, "done %d %d\n", written, skipped);
	if (write(out_fd, buf, (size_t)n) != n)
		_exit(6);
	_exit(0); /* no cleanup: as abrupt as the kill */
}

/* Runs the writer; with kill_at, SIGKILLs it once it reported that many
 * pushes. Returns the last line it wrote. */
static void run_writer(const struct h_server *s, const char *outbox, int kill_at, char *last,
		       size_t last_cap)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		offline_writer(s, outbox, fds[1]);
	}
	close(fds[1]);
	FILE *in = fdopen(fds[0], "r");
	char line[128];
	last[0] = 0;
	while (fgets(line, sizeof line, in)) {
		snprintf(last, last_cap, "%s", line);
		int n;
		if (kill_at && sscanf(line, "pushed %d", &n) == 1 && n >= kill_at) {
			kill(pid, SIGKILL);
			break;
		}
	}
	fclose(in);
	int st;
	waitpid(pid, &st, 0);
	if (kill_at)
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	else
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_offline_sigkill(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0); /* for its port and data directory */
	assert_int_equal(h_server_stop(&s), 0);
	char outbox[200], last[128];
	snprintf(outbox, sizeof outbox, "%s/outbox.db", s.dir);

	int64_t t0 = h_now_ms();
	run_writer(&s, outbox, N_OFFLINE / 2, last, sizeof last);
	int first = 0;
	assert_int_equal(sscanf(last, "pushed %d", &first), 1);
	run_writer(&s, outbox, 0, last, sizeof last);
	int written = 0, skipped = 0;
	assert_int_equal(sscanf(last, "done %d %d", &written, &skipped), 2);
	print_message("first run killed after %d pushes; second run skipped %d, wrote %d (%lld ms)\n",
		      first, skipped, written, (long long)(h_now_ms() - t0));
	assert_true(skipped >= first); /* at least what was reported is durable */
	assert_int_equal(written + skipped, N_OFFLINE);

	/* the server comes back; the outbox drains into it */
	assert_int_equal(h_server_start(&s), 0);
	struct tb b = {0};
	struct rt_client *c = new_client(&s);
	struct rt_table *t = open_table(c, &b, RT_STRATEGY_REJECT, outbox);
	assert_int_equal(rt_table_pending(t), N_OFFLINE);
	assert_int_equal(rt_client_connect(c), 0);
	t0 = h_now_ms();
	assert_true(pump2(c, NULL, is_drained, t, 60000));
	print_message("outbox drained in %lld ms\n", (long long)(h_now_ms() - t0));
	assert_int_equal(b.n_confirmed, N_OFFLINE);
	assert_int_equal(b.n_rolled_back, 0); /* a duplicate insert would roll back (23505) */
	assert_int_equal(rt_table_count(t), N_OFFLINE);
	rt_table_close(t);
	rt_client_free(c);

	json_t *rows = rest_get(&s, "todos?select=id,title&order=id&limit=5000");
	assert_int_equal(json_array_size(rows), N_OFFLINE);
	for (size_t i = 0; i < N_OFFLINE; i++) {
		json_t *row = json_array_get(rows, i);
		assert_int_equal(json_integer_value(json_object_get(row, "id")), (json_int_t)i + 1);
	}
	json_decref(rows);
	/* and the outbox is empty on disk */
	char cmd[300];
	snprintf(cmd, sizeof cmd, "sqlite3 '%s' 'SELECT count(*) FROM rtsync_outbox'", outbox);
	FILE *p = popen(cmd, "r");
	char out[32] = "";
	assert_non_null(fgets(out, sizeof out, p));
	pclose(p);
	assert_int_equal(atoi(out), 0);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* ---- the server killed during a stream of acknowledged writes ---- */

#define N_STREAM 300

struct sub {
	int n;
	long ids[4 * N_STREAM];
	char pos[4 * N_STREAM][21];
	bool joined;
};

static void sub_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	((struct sub *)user)->joined = st->state == RT_CHANNEL_JOINED;
}

static void sub_change(void *user, struct rt_client_channel *ch, const struct rt_client_change *c)
{
	struct sub *s = user;
	if (s->n >= 4 * N_STREAM)
		return;
	json_t *rec = json_loads(c->record ? c->record : c->old_record, 0, NULL);
	s->ids[s->n] = (long)json_integer_value(json_object_get(rec, "id"));
	snprintf(s->pos[s->n], sizeof s->pos[0], "%s", c->position ? c->position : "");
	s->n++;
	json_decref(rec);
}

struct stream {
	struct rt_table *t;
	struct tb *b;
	struct sub *sub;
};

static bool stream_done(void *arg)
{
	struct stream *x = arg;
	return rt_table_pending(x->t) == 0 && x->sub->n >= N_STREAM;
}

/* A client subscribed to every change of todos on topic, joined; sub is
 * cleared first. */
static struct rt_client *subscribe(const struct h_server *s, struct sub *sub, const char *topic)
{
	memset(sub, 0, sizeof *sub);
	struct rt_client *cs = new_client(s);
	static const struct rt_change_filter f = {"*", "public", "todos", NULL};
	struct rt_channel_options co = {.topic = topic, .changes = &f, .n_changes = 1,
					.cb = {.on_status = sub_status, .on_change = sub_change},
					.user = sub};
	struct rt_client_channel *ch;
	assert_int_equal(rt_channel_join(cs, &co, &ch), 0);
	assert_int_equal(rt_client_connect(cs), 0);
	assert_true(h_pump_until(cs, &sub->joined, 5000));
	return cs;
}

static void test_server_sigkill_stream(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	static struct sub sub;
	struct rt_client *cs = subscribe(&s, &sub, "stream");

	static struct tb b;
	memset(&b, 0, sizeof b);
	char outbox[200];
	snprintf(outbox, sizeof outbox, "%s/writer-outbox.db", s.dir);
	struct rt_client *cw = new_client(&s);
	struct rt_table *t = open_table(cw, &b, RT_STRATEGY_REJECT, outbox);
	assert_int_equal(rt_client_connect(cw), 0);
	assert_true(pump2(cw, NULL, is_ready, t, 5000));

	/* stream: keep about 20 writes pending; kill -9 after 100 acknowledged */
	int next = 1;
	bool killed = false;
	int acked_at_kill = 0;
	int64_t end = h_now_ms() + 60000;
	while (next <= N_STREAM && h_now_ms() < end) {
		while (next <= N_STREAM && rt_table_pending(t) < 20) {
			char rec[96];
			snprintf(rec, sizeof rec, "{\"id\":%d,\"title\":\"stream %d\"}", next, next);
			assert_int_equal(rt_table_insert(t, rec, RT_STRATEGY_DEFAULT, NULL), 0);
			next++;
		}
		rt_client_run(cw, 5);
		rt_client_run(cs, 5);
		if (!killed && b.n_confirmed >= 100) {
			acked_at_kill = b.n_confirmed;
			h_server_kill(&s);
			killed = true;
			h_pump_for(cw, 100); /* writes made while it is down wait too */
			assert_int_equal(h_server_start(&s), 0);
		}
	}
	assert_true(killed);
	struct stream x = {t, &b, &sub};
	assert_true(pump2(cw, cs, stream_done, &x, 30000));
	h_pump_for(cs, 200); /* a duplicate would arrive now */
	print_message("killed after %d acknowledged; %d acknowledged, %d changes received\n",
		      acked_at_kill, b.n_confirmed, sub.n);

	assert_int_equal(b.n_confirmed, N_STREAM);
	assert_int_equal(b.n_rolled_back, 0);
	/* every acknowledged id is on the server */
	json_t *rows = rest_get(&s, "todos?select=id&order=id&limit=5000");
	assert_int_equal(json_array_size(rows), N_STREAM);
	bool present[N_STREAM + 1] = {0};
	for (size_t i = 0; i < json_array_size(rows); i++) {
		json_int_t id = json_integer_value(json_object_get(json_array_get(rows, i), "id"));
		assert_true(id >= 1 && id <= N_STREAM);
		present[id] = true;
	}
	json_decref(rows);
	for (int id = 1; id <= N_STREAM; id++)
		if (b.confirmed_id[id])
			assert_true(present[id]);
	/* the subscriber got each change exactly once, positions increasing */
	assert_int_equal(sub.n, N_STREAM);
	int seen[N_STREAM + 1] = {0};
	for (int i = 0; i < sub.n; i++) {
		assert_true(sub.ids[i] >= 1 && sub.ids[i] <= N_STREAM);
		seen[sub.ids[i]]++;
		assert_true(sub.pos[i][0]);
		if (i) {
			size_t la = strlen(sub.pos[i - 1]), lb = strlen(sub.pos[i]);
			assert_true(la < lb || (la == lb && strcmp(sub.pos[i - 1], sub.pos[i]) < 0));
		}
	}
	for (int id = 1; id <= N_STREAM; id++)
		assert_int_equal(seen[id], 1);
	/* the writer's own cache has every row, confirmed */
	assert_int_equal(rt_table_count(t), N_STREAM);

	rt_table_close(t);
	rt_client_free(cw);
	rt_client_free(cs);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* ---- resync: the resume position was pruned while away ---- */

#define N_AWAY 20

/* A JSON array of rows as an object keyed by id (NULL for a non-array). */
static json_t *by_id(const json_t *rows)
{
	if (!json_is_array(rows))
		return NULL;
	json_t *o = json_object();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		char key[32];
		snprintf(key, sizeof key, "%lld",
			 (long long)json_integer_value(json_object_get(row, "id")));
		json_object_set(o, key, row);
	}
	return o;
}

/* Whether the rows text holds exactly the rows of expected (any order). */
static bool same_rows(const char *text, const json_t *expected)
{
	json_t *got = text ? json_loads(text, 0, NULL) : NULL;
	json_t *a = by_id(got), *b = by_id(expected);
	bool same = a && b && json_array_size(got) == json_array_size(expected) && json_equal(a, b);
	if (!same) {
		char *e = json_dumps(expected, JSON_COMPACT);
		print_message("rows %s\nexpected %s\n", text ? text : "(none)", e ? e : "?");
		free(e);
	}
	json_decref(got);
	json_decref(a);
	json_decref(b);
	return same;
}

static bool reloaded_and_drained(void *arg)
{
	struct stream *x = arg;
	return x->b->n_ready >= 2 && rt_table_pending(x->t) == 0 &&
	       x->sub->n >= 1 + 2 + 15 + N_AWAY;
}

/*
 * A server keeping 2 changes. The table loads rows 1-5 and its client
 * closes; while it is away, the table takes N_AWAY writes (an update of row
 * 4, inserts from id 100) and the server gets an update, two deletes and 15
 * inserts from an outside client; the table's resume position is pruned.
 * On reconnect the server says resync_required: the table must reload, learn
 * the deletes it cannot have seen as changes, keep its writes across the
 * reload (one in flight at a time, so most are still pending when the
 * snapshot lands) and have each applied once.
 */
static void test_resync(void **state)
{
	struct h_server s = {.args = {"--retain-changes", "2"}};
	assert_int_equal(h_server_start(&s), 0);
	assert_int_equal(h_sql(&s, "INSERT INTO todos (id, title) VALUES (1, 'r1'), (2, 'r2'), "
				   "(3, 'r3'), (4, 'r4'), (5, 'r5')"),
			 0);
	/* in the log (PostgreSQL: once replicated) before anyone subscribes */
	uint64_t oldest = 0, seen = 0;
	for (int64_t end = h_now_ms() + 5000; seen < 5 && h_now_ms() < end;) {
		assert_int_equal(h_log_range(&s, &oldest, &seen), 0);
		if (seen < 5)
			usleep(20000);
	}
	assert_int_equal(seen, 5);
	/* a subscriber that stays: counts every change by id */
	static struct sub sub;
	struct rt_client *cs = subscribe(&s, &sub, "watch");

	static struct tb b;
	memset(&b, 0, sizeof b);
	b.keep_rows = true;
	struct rt_client *c = new_client(&s);
	struct rt_table_options to = {
		.table = "todos",
		.max_in_flight = 1,
		.retry_base_ms = 50,
		.retry_max_ms = 400,
		.cb = {tb_ready, tb_row, tb_write, tb_conflict, tb_error},
		.user = &b,
	};
	struct rt_table *t = NULL;
	assert_int_equal(rt_table_open(c, &to, &t), 0);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(pump2(c, NULL, is_ready, t, 5000));
	assert_int_equal(b.n_ready, 1);
	assert_int_equal(rt_table_count(t), 5);
	h_pump_for(c, 100);

	/* away */
	assert_int_equal(rt_client_close(c), 0);
	h_pump_for(c, 50);
	assert_int_equal(rt_client_state(c), RT_CLIENT_CLOSED);
	assert_int_equal(h_log_range(&s, &oldest, &seen), 0); /* the table has seen at most this */
	assert_int_equal(rt_table_update(t, "{\"id\":4,\"done\":true}", RT_STRATEGY_DEFAULT, NULL),
			 0);
	for (int id = 100; id < 100 + N_AWAY - 1; id++) {
		char rec[80]; /* whole rows: a pending insert shows only what it carries */
		snprintf(rec, sizeof rec, "{\"id\":%d,\"title\":\"local %d\",\"done\":false}", id,
			 id);
		assert_int_equal(rt_table_insert(t, rec, RT_STRATEGY_DEFAULT, NULL), 0);
	}
	assert_int_equal(rt_table_pending(t), N_AWAY);
	assert_int_equal(b.n_pending, N_AWAY);
	assert_int_equal(h_sql(&s, "UPDATE todos SET title = 'changed' WHERE id = 2"), 0);
	assert_int_equal(h_sql(&s, "DELETE FROM todos WHERE id IN (3, 5)"), 0);
	for (int id = 6; id <= 20; id++) {
		int rc = h_sql(&s, "INSERT INTO todos (id, title) VALUES (%d, 'new %d')", id, id);
		assert_int_equal(rc, 0);
	}
	json_t *r = cached(t, 3);
	assert_non_null(r); /* not learned yet */
	json_decref(r);

	/* the server prunes the log (every 10 s) past the table's position */
	int64_t t0 = h_now_ms();
	uint64_t newest = 0;
	while (h_now_ms() - t0 < 15000) {
		assert_int_equal(h_log_range(&s, &oldest, &newest), 0);
		if (oldest > seen + 1)
			break;
		rt_client_run(cs, 100);
	}
	print_message("log %llu-%llu after %lld ms; the table had seen at most %llu\n",
		      (unsigned long long)oldest, (unsigned long long)newest,
		      (long long)(h_now_ms() - t0), (unsigned long long)seen);
	assert_true(oldest > seen + 1);

	/* back: the rejoin asks for a resync, the table reloads */
	assert_int_equal(rt_client_connect(c), 0);
	struct stream x = {t, &b, &sub};
	assert_true(pump2(c, cs, reloaded_and_drained, &x, 10000)); /* and the subscriber has all */
	h_pump_for(cs, 300); /* a duplicate change would arrive now */
	print_message("on_ready %d times; %zu of %d writes pending at the reload\n", b.n_ready,
		      b.ready_pending, N_AWAY);
	assert_int_equal(b.n_ready, 2);
	assert_true(b.ready_pending > 0);
	assert_int_equal(b.n_confirmed, N_AWAY);
	assert_int_equal(b.n_rolled_back, 0);
	assert_int_equal(b.n_errors, 0);
	assert_true(rt_table_is_ready(t));

	json_t *rows = rest_get(&s, "todos?select=id,title,done&order=id");
	assert_int_equal(json_array_size(rows), 18 + N_AWAY - 1); /* 1, 2, 4, 6-20, 100… */
	/* what the table showed when reloaded (its pending writes on top of the
	 * snapshot), and what it shows now, is the server's table */
	assert_true(same_rows(b.ready_rows, rows));
	char *now = NULL;
	assert_int_equal(rt_table_rows(t, &now), 0);
	assert_true(same_rows(now, rows));
	free(now);
	json_decref(rows);
	r = cached(t, 2);
	assert_string_equal(json_string_value(json_object_get(r, "title")), "changed");
	json_decref(r);
	assert_null(cached(t, 3));
	assert_null(cached(t, 5));
	r = cached(t, 4);
	assert_true(json_is_true(json_object_get(r, "done")));
	json_decref(r);
	/* the local writes never vanished from view; the deleted rows went once */
	for (int id = 100; id < 100 + N_AWAY - 1; id++)
		assert_int_equal(b.n_gone[id], 0);
	assert_int_equal(b.n_gone[4], 0);
	assert_int_equal(b.n_gone[3], 1);
	assert_int_equal(b.n_gone[5], 1);
	/* each local write reached the server once */
	int per_id[MAX_IDS] = {0};
	for (int i = 0; i < sub.n; i++)
		if (sub.ids[i] > 0 && sub.ids[i] < MAX_IDS)
			per_id[sub.ids[i]]++;
	if (getenv("H_VERBOSE"))
		for (int i = 0; i < sub.n; i++)
			print_message("change %d: id %ld at %s\n", i, sub.ids[i], sub.pos[i]);
	for (int id = 100; id < 100 + N_AWAY - 1; id++)
		assert_int_equal(per_id[id], 1);
	assert_int_equal(per_id[4], 1);
	assert_int_equal(sub.n, 1 + 2 + 15 + N_AWAY);

	free(b.ready_rows);
	rt_table_close(t);
	rt_client_free(c);
	rt_client_free(cs);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* ---- API edges ---- */

static void test_api_edges(void **state)
{
	struct h_server s = {.port = 1}; /* never connected */
	snprintf(s.url, sizeof s.url, "http://127.0.0.1:1");
	struct rt_client *c = new_client(&s);
	struct tb b = {0};
	struct rt_table_options bad = {.table = "bad\"name"};
	struct rt_table *t = NULL;
	assert_int_equal(rt_table_open(c, &bad, &t), RT_EINVAL);
	assert_null(t);
	bad = (struct rt_table_options){.table = NULL};
	assert_int_equal(rt_table_open(c, &bad, &t), RT_EINVAL);
	bad = (struct rt_table_options){.table = "todos", .outbox_path = "/nonexistent/dir/x.db"};
	assert_int_equal(rt_table_open(c, &bad, &t), RT_EIO);
	t = open_table(c, &b, RT_STRATEGY_REJECT, NULL);
	struct rt_table *t2 = NULL;
	assert_int_equal(rt_table_open(c, &(struct rt_table_options){.table = "todos"}, &t2),
			 RT_EEXISTS);
	assert_false(rt_table_is_ready(t));
	assert_int_equal(rt_table_insert(t, "{\"title\":\"no key\"}", 0, NULL), RT_EINVAL);
	assert_int_equal(rt_table_insert(t, "[1]", 0, NULL), RT_EINVAL);
	assert_int_equal(rt_table_insert(t, "{nope", 0, NULL), RT_EINVAL);
	assert_int_equal(rt_table_update(t, "{\"id\":{\"x\":1}}", 0, NULL), RT_EINVAL);
	assert_int_equal(rt_table_delete(t, "{\"id\":1}", 99, NULL), RT_EINVAL);
	assert_int_equal(rt_table_pending(t), 0);
	assert_int_equal(b.n_pending, 0);
	/* offline writes are visible at once */
	char id1[RT_TABLE_ID_LEN], id2[RT_TABLE_ID_LEN];
	assert_int_equal(rt_table_insert(t, "{\"id\":5,\"title\":\"x\"}", 0, id1), 0);
	assert_int_equal(rt_table_upsert(t, "{\"id\":6,\"title\":\"y\"}", 0, id2), 0);
	assert_string_not_equal(id1, id2);
	assert_int_equal(rt_table_update(t, "{\"id\":5,\"done\":true}", 0, NULL), 0);
	assert_int_equal(rt_table_delete(t, "{\"id\":6}", 0, NULL), 0);
	assert_int_equal(rt_table_pending(t), 4);
	assert_int_equal(b.n_pending, 4);
	assert_int_equal(rt_table_count(t), 1);
	char *row = NULL, *rows = NULL;
	bool pending = false;
	assert_int_equal(rt_table_get(t, "{\"id\":5}", &row, &pending), 0);
	assert_true(pending);
	assert_true(json_is(row, "{\"id\":5,\"title\":\"x\",\"done\":true}"));
	free(row);
	assert_int_equal(rt_table_get(t, "{\"id\":6}", &row, &pending), RT_ENOTFOUND);
	assert_null(row);
	assert_true(pending);
	assert_int_equal(rt_table_get(t, "{\"x\":6}", &row, NULL), RT_EINVAL);
	assert_int_equal(rt_table_rows(t, &rows), 0);
	assert_true(json_is(rows, "[{\"id\":5,\"title\":\"x\",\"done\":true}]"));
	free(rows);
	rt_table_close(t);

	/* an outbox keeps its writes for the next open, of the same table only */
	char dir[] = "/tmp/rtsync-table-XXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/outbox.db", dir);
	t = open_table(c, &b, RT_STRATEGY_MANUAL, path);
	assert_int_equal(rt_table_update(t, "{\"id\":3,\"title\":\"z\"}", 0, NULL), 0);
	rt_table_close(t);
	t = open_table(c, &b, RT_STRATEGY_REJECT, path);
	assert_int_equal(rt_table_pending(t), 1);
	rt_table_close(t);
	struct rt_table_options other = {.table = "other", .outbox_path = path};
	assert_int_equal(rt_table_open(c, &other, &t2), RT_EIO);
	char cmd[96];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	rt_client_free(c);
}

/* ---- out of memory ---- */

/* One offline scenario (open, writes, reads, close) with the k-th
 * allocation failing (the library's and jansson's). Returns whether it ran
 * to the end; *enomem whether a call reported RT_ENOMEM. */
static bool oom_scenario(bool *enomem)
{
	struct h_server s = {.port = 1};
	snprintf(s.url, sizeof s.url, "http://127.0.0.1:1");
	struct rt_client_options o = {.url = s.url, .apikey = "k", .allocator = &h_allocator};
	struct rt_client *c = NULL;
	struct tb b = {0};
	bool done = false;
	int rc = rt_client_new(&o, &c);
	if (rc)
		goto out;
	struct rt_table_options to = {.table = "todos", .cb = {tb_ready, tb_row, tb_write, tb_conflict,
							  tb_error}, .user = &b};
	struct rt_table *t;
	if ((rc = rt_table_open(c, &to, &t)))
		goto out_free;
	const char *const writes[] = {"{\"id\":1,\"title\":\"a\"}", "{\"id\":1,\"done\":true}",
				      "{\"id\":2,\"title\":\"b\"}"};
	if ((rc = rt_table_insert(t, writes[0], 0, NULL)) ||
	    (rc = rt_table_update(t, writes[1], RT_STRATEGY_MERGE, NULL)) ||
	    (rc = rt_table_upsert(t, writes[2], 0, NULL)) ||
	    (rc = rt_table_delete(t, "{\"id\":2}", 0, NULL)))
		goto out_close;
	char *row = NULL, *rows = NULL;
	if ((rc = rt_table_get(t, "{\"id\":1}", &row, NULL)))
		goto out_close;
	h_allocator.realloc(h_allocator.ud, row, 0);
	if ((rc = rt_table_rows(t, &rows)))
		goto out_close;
	h_allocator.realloc(h_allocator.ud, rows, 0);
	done = rt_table_pending(t) == 4 && rt_table_count(t) == 1;
out_close:
	rt_table_close(t);
out_free:
	rt_client_free(c);
out:
	*enomem = rc == RT_ENOMEM;
	return done;
}

static void test_oom_every_allocation(void **state)
{
	h_count_jansson();
	long k, runs_enomem = 0;
	for (k = 1;; k++) {
		atomic_store(&h_mem.count, 0);
		atomic_store(&h_mem.failed, 0);
		atomic_store(&h_mem.fail_at, k);
		bool enomem = false;
		bool done = oom_scenario(&enomem);
		bool failed = atomic_load(&h_mem.failed) > 0;
		atomic_store(&h_mem.fail_at, 0);
		assert_int_equal(atomic_load(&h_mem.live), 0); /* nothing leaked */
		if (!failed) {
			assert_true(done); /* the allocation k never came: the whole run */
			break;
		}
		if (!done)
			assert_true(enomem); /* a failure is reported, never silent */
		runs_enomem += enomem;
	}
	print_message("%ld allocations in the scenario: %ld runs reported RT_ENOMEM\n", k - 1,
		      runs_enomem);
	assert_true(k > 50);
}

/* ---- a snapshot the server refuses ---- */

static bool has_error(void *arg)
{
	return ((struct tb *)arg)->n_errors > 0;
}

/*
 * A table the server does not have: its snapshot is refused (PGRST205),
 * on_error says so, the table never becomes ready, and it is asked for again
 * after 2 s, then after 4 s more: two refusals in the first 4.5 s after the
 * first one, not three.
 */
static void test_snapshot_refused(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct rt_client *c = new_client(&s);
	struct tb b = {0};
	struct rt_table_options o = {.table = "ghost",
				     .cb = {tb_ready, tb_row, tb_write, tb_conflict, tb_error},
				     .user = &b};
	struct rt_table *t = NULL;
	assert_int_equal(rt_table_open(c, &o, &t), 0);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(pump2(c, NULL, has_error, &b, 5000));
	assert_int_equal(b.n_errors, 1);
	h_pump_for(c, 4500);
	assert_int_equal(b.n_errors, 2);
	assert_false(rt_table_is_ready(t));
	assert_int_equal(b.n_ready, 0);
	rt_table_close(t);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

int main(void)
{
	(void)h_server_signal;
	if (getenv("H_ONLY"))
		cmocka_set_test_filter(getenv("H_ONLY")); /* a name or pattern, to run one test */
	/* PostgreSQL: the scenarios that involve the store */
	const struct CMUnitTest pg_tests[] = {
		cmocka_unit_test(test_race_reject),
		cmocka_unit_test(test_race_merge),
		cmocka_unit_test(test_race_lww),
		cmocka_unit_test(test_race_manual_record),
		cmocka_unit_test(test_race_manual_keep_mine),
		cmocka_unit_test(test_race_manual_drop),
		cmocka_unit_test(test_offline_sigkill),
		cmocka_unit_test(test_server_sigkill_stream),
		cmocka_unit_test(test_resync),
	};
	if (h_pg()) {
		int rc = cmocka_run_group_tests_name("synced table, PostgreSQL store", pg_tests, NULL,
						     NULL);
		h_kill_all();
		return rc;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api_edges),
		cmocka_unit_test(test_race_reject),
		cmocka_unit_test(test_race_merge),
		cmocka_unit_test(test_race_lww),
		cmocka_unit_test(test_race_manual_record),
		cmocka_unit_test(test_race_manual_keep_mine),
		cmocka_unit_test(test_race_manual_drop),
		cmocka_unit_test(test_offline_sigkill),
		cmocka_unit_test(test_server_sigkill_stream),
		cmocka_unit_test(test_resync),
		cmocka_unit_test(test_snapshot_refused),
		cmocka_unit_test(test_oom_every_allocation), /* last: it counts jansson from then on */
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	h_kill_all();
	return rc;
}
