/*
 * Live queries through librtsync (docs/live.md, docs/client.md):
 * - against a real server: a window and an aggregate whose local copies
 *   equal a fresh REST read after each of a series of writes (by the client
 *   itself and by an outside writer); resume after the connection drops (the
 *   rejoin gets a diff, not the result again) and after the server is
 *   SIGKILLed and restarted (a fresh result marked resync); two users under
 *   row-level security each see their own result;
 * - against a scripted server (a WebSocket endpoint in this file): what the
 *   joins and live_subscribe requests carry, a diff that does not apply
 *   reported as RT_EPROTO and the query subscribed again without resume, its
 *   stale diffs ignored until the fresh result, error entries, unknown ids,
 *   malformed messages, and a rejoin resuming only the queries with a copy;
 *   the library's k-th allocation failing, for every k, recovered each time
 *   with nothing left allocated;
 * - options the API refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "harness.h"
#include "net/ws.h"

static const char live_schema[] =
	"CREATE TABLE IF NOT EXISTS bookings (id bigint PRIMARY KEY, property text NOT NULL,\n"
	"  owner text NOT NULL, status text NOT NULL, amount bigint NOT NULL,\n"
	"  starts bigint NOT NULL);\n"
	"ALTER TABLE bookings ENABLE ROW LEVEL SECURITY;\n"
	"CREATE POLICY own ON bookings FOR SELECT TO authenticated\n"
	"  USING (owner = (auth.jwt() ->> 'sub'));\n"
	"CREATE TABLE IF NOT EXISTS todos (id bigint PRIMARY KEY, title text NOT NULL,\n"
	"  done boolean NOT NULL DEFAULT false);\n";

/* ---- what the callbacks saw ---- */

struct qstat {
	char id[RT_LQ_MAX_ID + 1];
	int n_result, n_diff, n_error, n_resync;
	char code[32];
};

struct obs {
	struct qstat q[8];
	int n_eproto, n_enomem, n_errors;
	char last_error[512];
	int n_mismatch; /* events whose rows differ from rt_lq_result or n_rows */
	char pos[21];
	char last_ops[2048];
	bool is_joined;
	int n_joined;
};

static struct qstat *qstat_of(struct obs *o, const char *id)
{
	for (size_t i = 0; i < 8; i++) {
		if (!strcmp(o->q[i].id, id))
			return &o->q[i];
		if (!o->q[i].id[0]) {
			snprintf(o->q[i].id, sizeof o->q[i].id, "%s", id);
			return &o->q[i];
		}
	}
	fail_msg("too many query ids");
	return NULL;
}

/* The allocator of the client under test (NULL: the C library's), which
 * frees what rt_lq_result returns. */
static const struct rt_allocator *lib_alloc;

static void lib_free(void *p)
{
	if (lib_alloc)
		lib_alloc->realloc(lib_alloc->ud, p, 0);
	else
		free(p);
}

static void on_live(void *user, struct rt_client_channel *ch, const struct rt_lq_event *ev)
{
	struct obs *o = user;
	struct qstat *q = qstat_of(o, ev->id);
	snprintf(o->pos, sizeof o->pos, "%s", ev->position);
	if (ev->kind == RT_LQ_ERROR) {
		q->n_error++;
		snprintf(q->code, sizeof q->code, "%s", ev->code);
		if (ev->rows || !ev->entry || !strstr(ev->entry, "\"error\""))
			o->n_mismatch++;
		return;
	}
	if (ev->kind == RT_LQ_RESULT)
		q->n_result++;
	else
		q->n_diff++;
	if (ev->is_resync)
		q->n_resync++;
	if (ev->kind == RT_LQ_DIFF)
		snprintf(o->last_ops, sizeof o->last_ops, "%s", ev->ops ? ev->ops : "");
	/* the event's rows are the copy's, and n_rows counts them */
	char *rows = NULL, *keys = NULL;
	int rc = rt_lq_result(ch, ev->id, &rows, &keys);
	if ((rc && rc != RT_ENOMEM) || (!rc && (strcmp(rows, ev->rows) || strcmp(keys, ev->keys))))
		o->n_mismatch++; /* (RT_ENOMEM: the out-of-memory sweep failed that copy) */
	json_t *r = json_loads(ev->rows, 0, NULL);
	if (!json_is_array(r) || json_array_size(r) != ev->n_rows)
		o->n_mismatch++;
	json_decref(r);
	lib_free(rows);
	lib_free(keys);
}

static void on_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct obs *o = user;
	o->is_joined = st->state == RT_CHANNEL_JOINED;
	if (o->is_joined)
		o->n_joined++;
}

static void on_error(void *user, struct rt_client_channel *ch, int rc, const char *message)
{
	struct obs *o = user;
	o->n_errors++;
	o->n_eproto += rc == RT_EPROTO;
	o->n_enomem += rc == RT_ENOMEM;
	snprintf(o->last_error, sizeof o->last_error, "%s", message);
}

static struct rt_client *new_client(const char *url, const char *apikey, struct obs *o)
{
	struct rt_client_options co = {
		.url = url,
		.apikey = apikey,
		.reconnect_base_ms = 30,
		.reconnect_max_ms = 200,
		.push_timeout_ms = 3000,
		.on_error = on_error,
		.user = o,
	};
	struct rt_client *c = NULL;
	assert_int_equal(rt_client_new(&co, &c), 0);
	return c;
}

static struct rt_client_channel *join_live(struct rt_client *c, const char *topic,
					   const struct rt_lq_options *lo, struct obs *o)
{
	struct rt_channel_options co = {
		.topic = topic,
		.cb = {.on_status = on_status, .on_live = on_live},
		.user = o,
		.live = lo,
	};
	struct rt_client_channel *ch = NULL;
	assert_int_equal(rt_channel_join(c, &co, &ch), 0);
	return ch;
}

/* ---- REST ---- */

static json_t *rest_get(const struct h_server *s, const char *path, const char *tok)
{
	char cmd[3000];
	snprintf(cmd, sizeof cmd,
		 "curl -sf -g -H 'apikey: %s' -H 'Authorization: Bearer %s' '%s/rest/v1/%s'", tok,
		 tok, s->url, path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	json_t *v = json_loadf(p, 0, NULL);
	pclose(p);
	return v;
}

/* Pumps c until query id's copy equals the REST read of path (read again
 * every 100 ms), or timeout_ms. */
static bool converges(struct rt_client *c, struct rt_client_channel *ch, const char *id,
		      const struct h_server *s, const char *path, const char *tok, int timeout_ms)
{
	json_t *want = NULL, *mine = NULL;
	bool eq = false;
	for (int64_t end = h_now_ms() + timeout_ms;;) {
		json_decref(want);
		json_decref(mine);
		want = rest_get(s, path, tok);
		char *rows = NULL;
		mine = rt_lq_result(ch, id, &rows, NULL) ? NULL : json_loads(rows, 0, NULL);
		free(rows);
		eq = want && mine && json_equal(want, mine);
		if (eq || h_now_ms() > end)
			break;
		h_pump_for(c, 100);
	}
	if (!eq) {
		char *w = want ? json_dumps(want, JSON_COMPACT) : NULL;
		char *m = mine ? json_dumps(mine, JSON_COMPACT) : NULL;
		print_message("%s: the copy %s never equalled the REST read %s\n", id,
			      m ? m : "(none)", w ? w : "(none)");
		free(w);
		free(m);
	}
	json_decref(want);
	json_decref(mine);
	return eq;
}

static bool pump_until_result(struct rt_client *c, struct obs *o, const char *id, int n,
			      int timeout_ms)
{
	for (int64_t end = h_now_ms() + timeout_ms; h_now_ms() < end;) {
		if (qstat_of(o, id)->n_result >= n)
			return true;
		rt_client_run(c, 20);
	}
	return qstat_of(o, id)->n_result >= n;
}

/* ---- against the server ---- */

#define W_QUERY "select=id,starts,amount&property=eq.p&order=starts.desc&limit=3"
#define W_REST	"bookings?select=id,starts,amount&property=eq.p&order=starts.desc,id.asc&limit=3"
#define K_QUERY "select=status,n:count(),total:amount.sum(),hi:amount.max()&property=eq.p"
#define K_REST                                                                                     \
	"bookings?select=status,n:count(),total:amount.sum(),hi:amount.max()&property=eq.p"        \
	"&order=status"

static const struct rt_lq_def both_defs[] = {
	{"w", NULL, "bookings", W_QUERY},
	{"kpi", "public", "bookings", K_QUERY},
};

static void test_window_and_aggregate(void **state)
{
	(void)state;
	struct h_server s = {.schema = live_schema};
	assert_int_equal(h_server_start(&s), 0);
	assert_int_equal(h_sql(&s, "INSERT INTO bookings VALUES (1,'p','u1','open',10,5),"
				   "(2,'p','u1','held',20,9),(3,'p','u2','open',30,7),"
				   "(4,'q','u1','open',99,8)"),
			 0);
	const char *tok = h_token_as("service_role", NULL, 3600);
	struct obs o = {0};
	struct rt_client *c = new_client(s.url, tok, &o);
	struct rt_lq_options lo = {.queries = both_defs, .n_queries = 2};
	struct rt_client_channel *ch = join_live(c, "dash", &lo, &o);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(pump_until_result(c, &o, "w", 1, 10000));
	assert_true(pump_until_result(c, &o, "kpi", 1, 10000));
	assert_true(converges(c, ch, "w", &s, W_REST, tok, 5000));
	assert_true(converges(c, ch, "kpi", &s, K_REST, tok, 5000));

	/* the client's own write: enters at the front of the window */
	uint64_t wid;
	assert_int_equal(
		rt_channel_write(ch,
				 "{\"type\":\"insert\",\"table\":\"bookings\","
				 "\"record\":{\"id\":5,\"property\":\"p\",\"owner\":\"u3\","
				 "\"status\":\"open\",\"amount\":5,\"starts\":50}}",
				 &wid),
		0);
	assert_true(converges(c, ch, "w", &s, W_REST, tok, 5000));
	assert_true(converges(c, ch, "kpi", &s, K_REST, tok, 5000));
	/* outside writes: a row leaves the window (the reserve fills it), a
	 * value changes in place, a new group, a delete, a transaction of three */
	static const char *const steps[] = {
		"UPDATE bookings SET starts = 1 WHERE id = 5",
		"UPDATE bookings SET amount = 500 WHERE id = 2",
		"UPDATE bookings SET status = 'closed' WHERE id = 3",
		"UPDATE bookings SET starts = 99 WHERE id = 1",
		"DELETE FROM bookings WHERE id = 2",
		"BEGIN; INSERT INTO bookings VALUES (6,'p','u1','held',1,60);"
		"INSERT INTO bookings VALUES (7,'p','u1','held',2,61);"
		"UPDATE bookings SET property = 'q' WHERE id = 1; COMMIT",
		"UPDATE bookings SET property = 'p' WHERE id = 4",
	};
	for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
		assert_int_equal(h_sql(&s, "%s", steps[i]), 0);
		if (!converges(c, ch, "w", &s, W_REST, tok, 5000) ||
		    !converges(c, ch, "kpi", &s, K_REST, tok, 5000))
			fail_msg("after %s", steps[i]);
	}
	/* one result each, then only diffs (the copies followed every step
	 * without another result); never an error or a mismatch */
	assert_int_equal(qstat_of(&o, "w")->n_result, 1);
	assert_int_equal(qstat_of(&o, "kpi")->n_result, 1);
	assert_true(qstat_of(&o, "w")->n_diff >= 3);
	assert_true(qstat_of(&o, "kpi")->n_diff >= 3);
	assert_int_equal(o.n_errors, 0);
	assert_int_equal(o.n_mismatch, 0);
	char pos[21];
	rt_lq_position(ch, pos);
	assert_string_equal(pos, o.pos);
	assert_true(pos[0] != 0);

	/* a definition the server refuses comes back as an error event and is
	 * dropped; a later one works */
	static const struct rt_lq_def bad = {"bad", NULL, "bookings", "select=nope"};
	assert_int_equal(rt_lq_subscribe(ch, &bad, 1), 0);
	for (int64_t end = h_now_ms() + 5000; !qstat_of(&o, "bad")->n_error && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(qstat_of(&o, "bad")->n_error, 1);
	assert_string_equal(qstat_of(&o, "bad")->code, "42703");
	char *rows = NULL;
	assert_int_equal(rt_lq_result(ch, "bad", &rows, NULL), RT_ENOTFOUND);
	static const struct rt_lq_def todo = {"t", NULL, "todos", NULL};
	assert_int_equal(rt_lq_subscribe(ch, &todo, 1), 0);
	assert_true(pump_until_result(c, &o, "t", 1, 5000));
	assert_int_equal(h_sql(&s, "INSERT INTO todos VALUES (1,'one',0)"), 0);
	assert_true(converges(c, ch, "t", &s, "todos?order=id", tok, 5000));
	/* unsubscribed: no more events for it */
	assert_int_equal(rt_lq_unsubscribe(ch, "t"), 0);
	assert_int_equal(rt_lq_unsubscribe(ch, "t"), RT_ENOTFOUND);
	int n_t = qstat_of(&o, "t")->n_diff;
	assert_int_equal(h_sql(&s, "INSERT INTO todos VALUES (2,'two',0)"), 0);
	h_pump_for(c, 500);
	assert_int_equal(qstat_of(&o, "t")->n_diff, n_t);
	assert_int_equal(o.n_errors, 0);

	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

static void test_resume(void **state)
{
	(void)state;
	struct h_server s = {.schema = live_schema};
	assert_int_equal(h_server_start(&s), 0);
	assert_int_equal(h_sql(&s, "INSERT INTO bookings VALUES (1,'p','u1','open',10,5),"
				   "(2,'p','u1','held',20,9)"),
			 0);
	const char *tok = h_token_as("service_role", NULL, 3600);
	struct obs o = {0};
	struct rt_client *c = new_client(s.url, tok, &o);
	struct rt_lq_options lo = {.queries = both_defs, .n_queries = 2, .throttle_ms = 50};
	struct rt_client_channel *ch = join_live(c, "resume", &lo, &o);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(pump_until_result(c, &o, "w", 1, 10000));
	assert_true(pump_until_result(c, &o, "kpi", 1, 10000));
	assert_true(converges(c, ch, "w", &s, W_REST, tok, 5000));
	char before[21];
	rt_lq_position(ch, before);

	/* the connection drops; rows change meanwhile; the rejoin resumes after
	 * the last position applied and gets the diff, not the result again */
	assert_int_equal(rt_client_close(c), 0);
	h_pump_for(c, 100);
	assert_int_equal(rt_client_state(c), RT_CLIENT_CLOSED);
	assert_int_equal(h_sql(&s, "INSERT INTO bookings VALUES (3,'p','u1','open',7,70)"), 0);
	assert_int_equal(h_sql(&s, "UPDATE bookings SET amount = 11 WHERE id = 1"), 0);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(converges(c, ch, "w", &s, W_REST, tok, 5000));
	assert_true(converges(c, ch, "kpi", &s, K_REST, tok, 5000));
	assert_int_equal(qstat_of(&o, "w")->n_result, 1);
	assert_int_equal(qstat_of(&o, "kpi")->n_result, 1);
	assert_true(qstat_of(&o, "w")->n_diff >= 1);
	char after[21];
	rt_lq_position(ch, after);
	assert_true(strlen(after) > strlen(before) ||
		    (strlen(after) == strlen(before) && strcmp(after, before) > 0));

	/* the server is SIGKILLed, rows change while it is down, it restarts:
	 * it no longer holds the position, so a fresh result marked resync */
	h_server_kill(&s);
	assert_int_equal(h_sql(&s, "DELETE FROM bookings WHERE id = 3"), 0);
	assert_int_equal(h_sql(&s, "INSERT INTO bookings VALUES (4,'p','u1','new',1,80)"), 0);
	assert_int_equal(h_server_start(&s), 0);
	assert_true(pump_until_result(c, &o, "w", 2, 15000));
	assert_true(pump_until_result(c, &o, "kpi", 2, 5000));
	assert_int_equal(qstat_of(&o, "w")->n_resync, 1);
	assert_int_equal(qstat_of(&o, "kpi")->n_resync, 1);
	assert_true(converges(c, ch, "w", &s, W_REST, tok, 5000));
	assert_true(converges(c, ch, "kpi", &s, K_REST, tok, 5000));
	/* and it goes on with diffs */
	int n_diff = qstat_of(&o, "w")->n_diff;
	assert_int_equal(h_sql(&s, "UPDATE bookings SET starts = 100 WHERE id = 1"), 0);
	assert_true(converges(c, ch, "w", &s, W_REST, tok, 5000));
	assert_true(qstat_of(&o, "w")->n_diff > n_diff);
	assert_int_equal(o.n_eproto, 0);
	assert_int_equal(o.n_mismatch, 0);

	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

static void test_rls_two_users(void **state)
{
	(void)state;
	struct h_server s = {.schema = live_schema};
	assert_int_equal(h_server_start(&s), 0);
	assert_int_equal(h_sql(&s, "INSERT INTO bookings VALUES (1,'r','ua','open',1,1),"
				   "(2,'r','ub','open',2,2),(3,'r','ub','open',3,3)"),
			 0);
	static const struct rt_lq_def defs[] = {
		{"k", NULL, "bookings", "select=id,amount&property=eq.r&order=amount"},
		{"n", NULL, "bookings", "select=n:count()&property=eq.r"},
	};
	const char *path_k = "bookings?select=id,amount&property=eq.r&order=amount,id";
	const char *path_n = "bookings?select=n:count()&property=eq.r";
	struct rt_lq_options lo = {.queries = defs, .n_queries = 2};
	char ta[1024], tb[1024];
	snprintf(ta, sizeof ta, "%s", h_token_as("authenticated", "ua", 3600));
	snprintf(tb, sizeof tb, "%s", h_token_as("authenticated", "ub", 3600));
	struct obs oa = {0}, ob = {0};
	struct rt_client *ca = new_client(s.url, ta, &oa), *cb = new_client(s.url, tb, &ob);
	struct rt_client_channel *cha = join_live(ca, "rls", &lo, &oa);
	struct rt_client_channel *chb = join_live(cb, "rls", &lo, &ob);
	assert_int_equal(rt_client_connect(ca), 0);
	assert_int_equal(rt_client_connect(cb), 0);
	assert_true(pump_until_result(ca, &oa, "k", 1, 10000));
	assert_true(pump_until_result(cb, &ob, "k", 1, 10000));
	assert_true(converges(ca, cha, "k", &s, path_k, ta, 5000));
	assert_true(converges(cb, chb, "k", &s, path_k, tb, 5000));
	assert_true(converges(ca, cha, "n", &s, path_n, ta, 5000));
	assert_true(converges(cb, chb, "n", &s, path_n, tb, 5000));
	char *ra = NULL, *rb = NULL;
	assert_int_equal(rt_lq_result(cha, "k", &ra, NULL), 0);
	assert_int_equal(rt_lq_result(chb, "k", &rb, NULL), 0);
	assert_string_equal(ra, "[{\"id\":1,\"amount\":1}]");
	assert_string_equal(rb, "[{\"id\":2,\"amount\":2},{\"id\":3,\"amount\":3}]");
	free(ra);
	free(rb);
	/* a row for ub reaches ub only; one handed from ub to ua moves */
	assert_int_equal(h_sql(&s, "INSERT INTO bookings VALUES (4,'r','ub','open',10,4)"), 0);
	assert_true(converges(cb, chb, "k", &s, path_k, tb, 5000));
	assert_true(converges(cb, chb, "n", &s, path_n, tb, 5000));
	h_pump_for(ca, 300);
	assert_int_equal(qstat_of(&oa, "k")->n_diff, 0);
	assert_int_equal(h_sql(&s, "UPDATE bookings SET owner = 'ua' WHERE id = 2"), 0);
	assert_true(converges(ca, cha, "k", &s, path_k, ta, 5000));
	assert_true(converges(cb, chb, "k", &s, path_k, tb, 5000));
	assert_true(converges(ca, cha, "n", &s, path_n, ta, 5000));
	assert_true(converges(cb, chb, "n", &s, path_n, tb, 5000));
	assert_int_equal(oa.n_errors + ob.n_errors, 0);
	assert_int_equal(oa.n_mismatch + ob.n_mismatch, 0);
	rt_client_free(ca);
	rt_client_free(cb);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* ---- a scripted server ---- */

struct fake {
	int lfd, fd;
	char url[64];
	char hs[16384]; /* the handshake request so far */
	size_t hs_len;
	bool is_ws;
	bool is_lenient; /* a send to a client that went away is no failure */
	struct rt_ws ws;
	json_t *msgs; /* messages received, oldest first */
	int n_conns;
};

static int fake_output(void *user, const uint8_t *data, size_t len)
{
	struct fake *f = user;
	while (len) {
		ssize_t n = send(f->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd p = {f->fd, POLLOUT, 0};
			poll(&p, 1, 100);
			continue;
		}
		if (n <= 0)
			return RT_EIO;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void fake_message(void *user, enum rt_ws_opcode op, const uint8_t *data, size_t len)
{
	struct fake *f = user;
	json_t *m = json_loadb((const char *)data, len, 0, NULL);
	assert_non_null(m);
	json_array_append_new(f->msgs, m);
}

static const struct rt_ws_callbacks fake_cbs = {fake_message, fake_output};

static void fake_start(struct fake *f)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->msgs = json_array();
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	socklen_t alen = sizeof a;
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &alen), 0);
	snprintf(f->url, sizeof f->url, "ws://127.0.0.1:%d", ntohs(a.sin_port));
}

static void fake_drop(struct fake *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->is_ws)
		rt_ws_deinit(&f->ws);
	f->fd = -1;
	f->is_ws = false;
	f->hs_len = 0;
}

static void fake_stop(struct fake *f)
{
	fake_drop(f);
	close(f->lfd);
	json_decref(f->msgs);
}

static void fake_poll(struct fake *f)
{
	if (f->fd < 0) {
		f->fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (f->fd < 0)
			return;
		f->n_conns++;
	}
	uint8_t buf[65536];
	ssize_t n = recv(f->fd, buf, sizeof buf, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			fake_drop(f); /* reset by the client */
		return;
	}
	if (n == 0) {
		fake_drop(f);
		return;
	}
	if (f->is_ws) {
		rt_ws_feed(&f->ws, buf, (size_t)n);
		return;
	}
	assert_true(f->hs_len + (size_t)n < sizeof f->hs);
	memcpy(f->hs + f->hs_len, buf, (size_t)n);
	f->hs_len += (size_t)n;
	f->hs[f->hs_len] = 0;
	if (!strstr(f->hs, "\r\n\r\n"))
		return;
	const char *k = strcasestr(f->hs, "Sec-WebSocket-Key:");
	assert_non_null(k);
	k += strlen("Sec-WebSocket-Key:");
	while (*k == ' ')
		k++;
	char accept[29], resp[256];
	rt_ws_accept_key(k, strcspn(k, "\r\n"), accept);
	int len = snprintf(resp, sizeof resp,
			   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			   accept);
	assert_int_equal(rt_ws_init(&f->ws, RT_WS_SERVER, &fake_cbs, f, 1 << 24, NULL), 0);
	f->is_ws = true;
	assert_int_equal(fake_output(f, (const uint8_t *)resp, (size_t)len), 0);
}

/* Sends {"topic":"realtime:lq","event":…,"payload":…,"ref":ref} (payload
 * JSON text, ref may be NULL). */
static void fake_send(struct fake *f, const char *event, const char *payload, const char *ref)
{
	json_t *p = json_loads(payload, 0, NULL);
	assert_non_null(p);
	json_t *m = json_pack("{s:s,s:s,s:o,s:s?}", "topic", "realtime:lq", "event", event,
			      "payload", p, "ref", ref);
	char *t = json_dumps(m, JSON_COMPACT);
	int rc = f->is_ws ? rt_ws_send(&f->ws, RT_WS_TEXT, t, strlen(t)) : RT_ECLOSED;
	if (!f->is_lenient)
		assert_int_equal(rc, 0);
	free(t);
	json_decref(m);
}

/* Pumps client and server until a message with event arrives (heartbeats
 * are answered and skipped); returns it (the caller's), or NULL. */
static json_t *fake_next(struct fake *f, struct rt_client *c, const char *event, int timeout_ms)
{
	for (int64_t end = h_now_ms() + timeout_ms; h_now_ms() < end;) {
		for (size_t i = 0; i < json_array_size(f->msgs); i++) {
			json_t *m = json_array_get(f->msgs, i);
			const char *ev = json_string_value(json_object_get(m, "event"));
			if (ev && !strcmp(ev, event)) {
				json_incref(m);
				json_array_remove(f->msgs, i);
				return m;
			}
		}
		rt_client_run(c, 5);
		fake_poll(f);
	}
	return NULL;
}

static void fake_pump(struct fake *f, struct rt_client *c, int ms)
{
	for (int64_t end = h_now_ms() + ms; h_now_ms() < end;) {
		rt_client_run(c, 5);
		fake_poll(f);
	}
}

/* Answers m with an ok phx_reply. */
static void fake_ok(struct fake *f, const json_t *m)
{
	fake_send(f, "phx_reply", "{\"status\":\"ok\",\"response\":{}}",
		  json_string_value(json_object_get(m, "ref")));
}

/* The ids of an array of definitions, joined by ','. */
static void ids_of(const json_t *defs, char *out, size_t cap)
{
	size_t at = 0;
	out[0] = 0;
	for (size_t i = 0; i < json_array_size(defs); i++)
		at += (size_t)snprintf(
			out + at, cap - at, "%s%s", i ? "," : "",
			json_string_value(json_object_get(json_array_get(defs, i), "id")));
}

static const char *result_text(struct rt_client_channel *ch, const char *id, char *buf, size_t cap)
{
	char *rows = NULL;
	int rc = rt_lq_result(ch, id, &rows, NULL);
	snprintf(buf, cap, "%s", rc ? rt_err_name(rc) : rows);
	free(rows);
	return buf;
}

static void test_protocol(void **state)
{
	(void)state;
	struct fake f;
	fake_start(&f);
	struct obs o = {0};
	struct rt_client *c = new_client(f.url, "key", &o);
	static const struct rt_lq_def defs[] = {
		{"a", NULL, "todos", "order=id"},
		{"b", "public", "todos", "select=done,n:count()"},
	};
	struct rt_lq_options lo = {.queries = defs, .n_queries = 2, .throttle_ms = 200};
	struct rt_client_channel *ch = join_live(c, "lq", &lo, &o);
	assert_int_equal(rt_client_connect(c), 0);
	char buf[512];

	/* the join carries the definitions and the options, no resume yet */
	json_t *m = fake_next(&f, c, "phx_join", 5000);
	assert_non_null(m);
	json_t *rt =
		json_object_get(json_object_get(json_object_get(m, "payload"), "config"), "rtsync");
	json_t *want =
		json_loads("{\"queries\":[{\"id\":\"a\",\"schema\":\"public\",\"table\":"
			   "\"todos\",\"query\":\"order=id\"},{\"id\":\"b\",\"schema\":"
			   "\"public\",\"table\":\"todos\",\"query\":\"select=done,n:count()\"}],"
			   "\"throttle_ms\":200}",
			   0, NULL);
	assert_true(json_equal(json_object_get(rt, "live"), want));
	assert_null(json_object_get(rt, "resume_after"));
	json_decref(want);
	fake_ok(&f, m);
	json_decref(m);

	/* results, then a diff */
	fake_send(&f, "live_query",
		  "{\"position\":\"10\",\"queries\":[{\"id\":\"a\",\"kind\":\"result\",\"keys\":"
		  "[\"[1]\",\"[2]\"],\"rows\":[{\"id\":1},{\"id\":2}]},{\"id\":\"b\",\"kind\":"
		  "\"result\",\"keys\":[\"[false]\"],\"rows\":[{\"done\":false,\"n\":2}]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_int_equal(qstat_of(&o, "a")->n_result, 1);
	assert_int_equal(qstat_of(&o, "b")->n_result, 1);
	assert_string_equal(result_text(ch, "a", buf, sizeof buf), "[{\"id\":1},{\"id\":2}]");
	assert_string_equal(o.pos, "10");
	fake_send(&f, "live_query",
		  "{\"position\":\"11\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\",\"ops\":["
		  "{\"op\":\"enter\",\"key\":\"[3]\",\"index\":1,\"row\":{\"id\":3}}]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_int_equal(qstat_of(&o, "a")->n_diff, 1);
	assert_string_equal(o.last_ops, "[{\"op\":\"enter\",\"key\":\"[3]\",\"index\":1,"
					"\"row\":{\"id\":3}}]");
	assert_string_equal(result_text(ch, "a", buf, sizeof buf),
			    "[{\"id\":1},{\"id\":3},{\"id\":2}]");

	/* a diff that does not apply: reported, and a subscribes again fresh */
	fake_send(&f, "live_query",
		  "{\"position\":\"12\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\",\"ops\":["
		  "{\"op\":\"leave\",\"key\":\"[9]\"}]},{\"id\":\"b\",\"kind\":\"diff\",\"ops\":["
		  "{\"op\":\"change\",\"key\":\"[false]\",\"row\":{\"done\":false,\"n\":3}}]}]}",
		  NULL);
	m = fake_next(&f, c, "live_subscribe", 3000);
	assert_non_null(m);
	assert_int_equal(o.n_eproto, 1);
	assert_non_null(strstr(o.last_error, "live query a"));
	json_t *p = json_object_get(m, "payload");
	want = json_loads("{\"queries\":[{\"id\":\"a\",\"schema\":\"public\",\"table\":\"todos\","
			  "\"query\":\"order=id\"}]}",
			  0, NULL);
	assert_true(json_equal(p, want)); /* no resume_after, no options */
	json_decref(want);
	fake_ok(&f, m);
	json_decref(m);
	assert_string_equal(result_text(ch, "a", buf, sizeof buf), "RT_EAGAIN");
	assert_int_equal(qstat_of(&o, "a")->n_diff, 1); /* never reported */
	/* b of the same message still applied */
	assert_int_equal(qstat_of(&o, "b")->n_diff, 1);
	assert_string_equal(result_text(ch, "b", buf, sizeof buf), "[{\"done\":false,\"n\":3}]");
	/* a diff of the old subscription, still on its way: ignored */
	fake_send(&f, "live_query",
		  "{\"position\":\"13\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\",\"ops\":["
		  "{\"op\":\"change\",\"key\":\"[1]\",\"row\":{\"id\":1}}]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_int_equal(o.n_errors, 1);
	assert_int_equal(qstat_of(&o, "a")->n_diff, 1);
	/* the fresh result */
	fake_send(&f, "live_query",
		  "{\"position\":\"14\",\"queries\":[{\"id\":\"a\",\"kind\":\"result\",\"keys\":"
		  "[\"[5]\"],\"rows\":[{\"id\":5}]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_int_equal(qstat_of(&o, "a")->n_result, 2);
	assert_string_equal(result_text(ch, "a", buf, sizeof buf), "[{\"id\":5}]");

	/* an error entry drops b; an unknown id is ignored */
	fake_send(&f, "live_query",
		  "{\"position\":\"15\",\"queries\":[{\"id\":\"b\",\"kind\":\"error\",\"code\":"
		  "\"42703\",\"message\":\"column todos.x does not exist\"},{\"id\":\"zz\","
		  "\"kind\":\"diff\",\"ops\":[]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_int_equal(qstat_of(&o, "b")->n_error, 1);
	assert_string_equal(qstat_of(&o, "b")->code, "42703");
	assert_string_equal(result_text(ch, "b", buf, sizeof buf), "RT_ENOTFOUND");
	assert_int_equal(o.n_errors, 1);

	/* a malformed message: every query starts over */
	fake_send(&f, "live_query", "{\"queries\":[]}", NULL);
	m = fake_next(&f, c, "live_subscribe", 3000);
	assert_non_null(m);
	assert_int_equal(o.n_eproto, 2);
	ids_of(json_object_get(json_object_get(m, "payload"), "queries"), buf, sizeof buf);
	assert_string_equal(buf, "a");
	assert_null(json_object_get(json_object_get(m, "payload"), "resume_after"));
	fake_ok(&f, m);
	json_decref(m);
	fake_send(&f, "live_query",
		  "{\"position\":\"17\",\"queries\":[{\"id\":\"a\",\"kind\":\"result\",\"keys\":"
		  "[\"[5]\",\"[6]\"],\"rows\":[{\"id\":5},{\"id\":6}]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_string_equal(result_text(ch, "a", buf, sizeof buf), "[{\"id\":5},{\"id\":6}]");

	/* a query added while joined is subscribed at once */
	static const struct rt_lq_def cdef = {"c", NULL, "todos", "done=eq.true"};
	assert_int_equal(rt_lq_subscribe(ch, &cdef, 1), 0);
	m = fake_next(&f, c, "live_subscribe", 3000);
	assert_non_null(m);
	ids_of(json_object_get(json_object_get(m, "payload"), "queries"), buf, sizeof buf);
	assert_string_equal(buf, "c");
	fake_ok(&f, m);
	json_decref(m);
	fake_send(&f, "live_query",
		  "{\"position\":\"18\",\"queries\":[{\"id\":\"c\",\"kind\":\"result\",\"keys\":"
		  "[],\"rows\":[]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_int_equal(qstat_of(&o, "c")->n_result, 1);

	/* the connection drops; d is added while it is down. The rejoin resumes
	 * a and c after 18; d, without a result, is subscribed fresh after it */
	fake_drop(&f);
	for (int64_t end = h_now_ms() + 3000;
	     rt_client_state(c) == RT_CLIENT_OPEN && h_now_ms() < end;)
		rt_client_run(c, 5);
	assert_int_not_equal(rt_client_state(c), RT_CLIENT_OPEN);
	static const struct rt_lq_def ddef = {"d", NULL, "todos", NULL};
	assert_int_equal(rt_lq_subscribe(ch, &ddef, 1), 0);
	m = fake_next(&f, c, "phx_join", 5000);
	assert_non_null(m);
	assert_int_equal(f.n_conns, 2);
	json_t *live = json_object_get(
		json_object_get(json_object_get(json_object_get(m, "payload"), "config"), "rtsync"),
		"live");
	assert_string_equal(json_string_value(json_object_get(live, "resume_after")), "18");
	assert_int_equal(json_integer_value(json_object_get(live, "throttle_ms")), 200);
	ids_of(json_object_get(live, "queries"), buf, sizeof buf);
	assert_string_equal(buf, "a,c");
	fake_ok(&f, m);
	json_decref(m);
	m = fake_next(&f, c, "live_subscribe", 3000);
	assert_non_null(m);
	p = json_object_get(m, "payload");
	ids_of(json_object_get(p, "queries"), buf, sizeof buf);
	assert_string_equal(buf, "d");
	assert_null(json_object_get(p, "resume_after"));
	json_t *d0 = json_array_get(json_object_get(p, "queries"), 0);
	assert_null(json_object_get(d0, "query")); /* NULL query: not sent */
	fake_ok(&f, m);
	json_decref(m);
	/* the copies survived the reconnect; a resumed diff applies to them */
	assert_string_equal(result_text(ch, "a", buf, sizeof buf), "[{\"id\":5},{\"id\":6}]");
	fake_send(&f, "live_query",
		  "{\"position\":\"20\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\",\"ops\":["
		  "{\"op\":\"move\",\"key\":\"[6]\",\"index\":0,\"row\":{\"id\":6,\"v\":1}}]},"
		  "{\"id\":\"d\",\"kind\":\"result\",\"keys\":[],\"rows\":[]}]}",
		  NULL);
	fake_pump(&f, c, 100);
	assert_string_equal(result_text(ch, "a", buf, sizeof buf),
			    "[{\"id\":6,\"v\":1},{\"id\":5}]");
	char pos[21];
	rt_lq_position(ch, pos);
	assert_string_equal(pos, "20");

	/* unsubscribing sends live_unsubscribe; a late entry for it is ignored */
	assert_int_equal(rt_lq_unsubscribe(ch, "c"), 0);
	m = fake_next(&f, c, "live_unsubscribe", 3000);
	assert_non_null(m);
	want = json_loads("{\"ids\":[\"c\"]}", 0, NULL);
	assert_true(json_equal(json_object_get(m, "payload"), want));
	json_decref(want);
	fake_ok(&f, m);
	json_decref(m);
	fake_send(&f, "live_query",
		  "{\"position\":\"21\",\"queries\":[{\"id\":\"c\",\"kind\":\"diff\",\"ops\":["
		  "{\"op\":\"leave\",\"key\":\"[1]\"}]}]}",
		  NULL);
	/* a refused live_subscribe goes to on_error */
	static const struct rt_lq_def edef = {"e", NULL, "todos", NULL};
	assert_int_equal(rt_lq_subscribe(ch, &edef, 1), 0);
	m = fake_next(&f, c, "live_subscribe", 3000);
	assert_non_null(m);
	fake_send(&f, "phx_reply",
		  "{\"status\":\"error\",\"response\":{\"reason\":\"live queries need a store\"}}",
		  json_string_value(json_object_get(m, "ref")));
	json_decref(m);
	fake_pump(&f, c, 100);
	assert_int_equal(o.n_eproto, 3);
	assert_non_null(strstr(o.last_error, "live queries need a store"));
	assert_int_equal(o.n_errors, 3);
	assert_int_equal(o.n_mismatch, 0);
	assert_int_equal(o.n_joined, 2);

	rt_client_free(c);
	fake_stop(&f);
}

/* A callback that leaves its channel, or unsubscribes and subscribes again
 * from inside on_live, mid-message. */
struct reentry {
	struct rt_client_channel *ch;
	int mode; /* 0 leave, 1 unsubscribe the next query, 2 replace this one */
	int n_events;
};

static void reentry_live(void *user, struct rt_client_channel *ch, const struct rt_lq_event *ev)
{
	struct reentry *r = user;
	r->n_events++;
	if (r->mode == 0) {
		rt_channel_leave(ch);
	} else if (r->mode == 1) {
		rt_lq_unsubscribe(ch, "b");
	} else if (r->mode == 2 && ev->kind == RT_LQ_RESULT && !strcmp(ev->id, "a")) {
		static const struct rt_lq_def again = {"a", NULL, "todos", "order=id.desc"};
		assert_int_equal(rt_lq_subscribe(ch, &again, 1), 0);
	}
}

static void test_reentrant_callbacks(void **state)
{
	(void)state;
	for (int mode = 0; mode < 3; mode++) {
		struct fake f;
		fake_start(&f);
		struct obs o = {0};
		struct rt_client *c = new_client(f.url, "key", &o);
		static const struct rt_lq_def defs[] = {{"a", NULL, "todos", NULL},
							{"b", NULL, "todos", NULL}};
		struct rt_lq_options lo = {.queries = defs, .n_queries = 2};
		struct reentry r = {.mode = mode};
		struct rt_channel_options co = {
			.topic = "lq", .cb = {.on_live = reentry_live}, .user = &r, .live = &lo};
		assert_int_equal(rt_channel_join(c, &co, &r.ch), 0);
		assert_int_equal(rt_client_connect(c), 0);
		json_t *m = fake_next(&f, c, "phx_join", 5000);
		assert_non_null(m);
		fake_ok(&f, m);
		json_decref(m);
		fake_send(&f, "live_query",
			  "{\"position\":\"1\",\"queries\":[{\"id\":\"a\",\"kind\":\"result\","
			  "\"keys\":[],\"rows\":[]},{\"id\":\"b\",\"kind\":\"result\",\"keys\":[],"
			  "\"rows\":[]}]}",
			  NULL);
		fake_pump(&f, c, 150);
		/* leave or unsubscribe of b: only a's event; a replaced: both */
		assert_int_equal(r.n_events, mode == 2 ? 2 : 1);
		if (mode == 2) {
			m = fake_next(&f, c, "live_subscribe", 3000);
			assert_non_null(m);
			json_decref(m);
			char buf[64];
			assert_string_equal(result_text(r.ch, "a", buf, sizeof buf), "RT_EAGAIN");
		}
		assert_int_equal(o.n_errors, 0);
		rt_client_free(c);
		fake_stop(&f);
	}
}

/* The out-of-memory sweep's server: answers every join and live_subscribe
 * with ok and then the result entry (JSON text) at the next position. */
static void fake_serve(struct fake *f, int *pos, const char *entry)
{
	while (json_array_size(f->msgs)) {
		json_t *m = json_incref(json_array_get(f->msgs, 0));
		json_array_remove(f->msgs, 0);
		const char *ev = json_string_value(json_object_get(m, "event"));
		if (f->is_ws && ev && (!strcmp(ev, "phx_join") || !strcmp(ev, "live_subscribe"))) {
			fake_ok(f, m);
			char p[512];
			snprintf(p, sizeof p, "{\"position\":\"%d\",\"queries\":[%s]}", ++*pos, entry);
			fake_send(f, "live_query", p, NULL);
		}
		json_decref(m);
	}
}

static bool result_is(struct rt_client_channel *ch, const char *want)
{
	char *rows = NULL;
	bool is = !rt_lq_result(ch, "a", &rows, NULL) && !strcmp(rows, want);
	lib_free(rows);
	return is;
}

/* One run of the sweep: join, result, a diff that does not apply (the query
 * subscribed again), the fresh result, a diff; the allocation numbered
 * fail_at fails. Every failure must be recovered from: the copy reaches the
 * final rows. Returns whether an allocation was refused. */
static bool oom_run(long fail_at)
{
	static const char *const r1 = "{\"id\":\"a\",\"kind\":\"result\",\"keys\":[\"[1]\","
				      "\"[2]\"],\"rows\":[{\"id\":1},{\"id\":2}]}";
	static const char *const r2 =
		"{\"id\":\"a\",\"kind\":\"result\",\"keys\":[\"[3]\"],\"rows\":[{\"id\":3}]}";
	static const char *const r3 = "{\"id\":\"a\",\"kind\":\"result\",\"keys\":[\"[4]\","
				      "\"[3]\"],\"rows\":[{\"id\":4},{\"id\":3}]}";
	struct fake f;
	fake_start(&f);
	f.is_lenient = true;
	struct obs o = {0};
	atomic_store(&h_mem.count, 0);
	atomic_store(&h_mem.failed, 0);
	atomic_store(&h_mem.fail_at, fail_at);
	struct rt_client_options co = {
		.url = f.url,
		.apikey = "key",
		.reconnect_base_ms = 5,
		.reconnect_max_ms = 20,
		.push_timeout_ms = 500,
		.allocator = &h_allocator,
		.on_error = on_error,
		.user = &o,
	};
	struct rt_client *c = NULL;
	int rc = rt_client_new(&co, &c);
	if (rc) {
		assert_int_equal(rc, RT_ENOMEM);
		goto out;
	}
	static const struct rt_lq_def defs[] = {{"a", NULL, "todos", "order=id"}};
	struct rt_lq_options lo = {.queries = defs, .n_queries = 1};
	struct rt_channel_options cho = {
		.topic = "lq", .cb = {.on_status = on_status, .on_live = on_live}, .user = &o,
		.live = &lo};
	struct rt_client_channel *ch = NULL;
	rc = rt_channel_join(c, &cho, &ch);
	if (!rc)
		rc = rt_client_connect(c);
	if (rc) {
		assert_int_equal(rc, RT_ENOMEM);
		goto out_free;
	}
	const char *entry = r1;
	int pos = 0, stage = 0;
	for (int64_t end = h_now_ms() + 5000; stage < 3 && h_now_ms() < end;) {
		rt_client_run(c, 1);
		fake_poll(&f);
		fake_serve(&f, &pos, entry);
		char p[256];
		if (stage == 0 && result_is(ch, "[{\"id\":1},{\"id\":2}]")) {
			entry = r2; /* a lost diff is made up for by a result */
			snprintf(p, sizeof p,
				 "{\"position\":\"%d\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\","
				 "\"ops\":[{\"op\":\"leave\",\"key\":\"[9]\"}]}]}",
				 ++pos);
			fake_send(&f, "live_query", p, NULL);
			stage = 1;
		} else if (stage == 1 && result_is(ch, "[{\"id\":3}]")) {
			entry = r3;
			snprintf(p, sizeof p,
				 "{\"position\":\"%d\",\"queries\":[{\"id\":\"a\",\"kind\":\"diff\","
				 "\"ops\":[{\"op\":\"enter\",\"key\":\"[4]\",\"index\":0,\"row\":"
				 "{\"id\":4}}]}]}",
				 ++pos);
			fake_send(&f, "live_query", p, NULL);
			stage = 2;
		} else if (stage == 2 && result_is(ch, "[{\"id\":4},{\"id\":3}]")) {
			stage = 3;
		}
	}
	if (stage != 3)
		fail_msg("allocation %ld failing: stuck at stage %d (last error: %s)", fail_at, stage,
			 o.last_error);
	if (o.n_mismatch || (!o.n_eproto && !o.n_enomem)) /* the bad diff must be reported */
		fail_msg("allocation %ld failing: %d mismatch(es), %d RT_EPROTO, %d RT_ENOMEM",
			 fail_at, o.n_mismatch, o.n_eproto, o.n_enomem);
out_free:
	rt_client_free(c);
out:
	fake_stop(&f);
	if (atomic_load(&h_mem.live)) /* nothing of the library's may be left */
		fail_msg("allocation %ld failing: %ld allocation(s) left", fail_at,
			 (long)atomic_load(&h_mem.live));
	bool failed = atomic_load(&h_mem.failed) > 0;
	atomic_store(&h_mem.fail_at, 0);
	return failed;
}

static void test_oom_every_allocation(void **state)
{
	(void)state;
	long k = 1;
	lib_alloc = &h_allocator;
	while (oom_run(k) && k < 5000)
		k++;
	lib_alloc = NULL;
	assert_true(k > 20); /* the scenario allocates: the sweep reached its failures */
	assert_true(k < 5000);
	print_message("out of memory at each of %ld allocations: recovered every time\n", k - 1);
}

static void test_options_refused(void **state)
{
	(void)state;
	struct obs o = {0};
	struct rt_client *c = new_client("ws://127.0.0.1:1", "key", &o);
	char id65[66];
	memset(id65, 'x', 65);
	id65[65] = 0;
	const struct rt_lq_def bad_defs[][1] = {
		{{NULL, NULL, "t", NULL}},  {{"", NULL, "t", NULL}}, {{id65, NULL, "t", NULL}},
		{{"a", NULL, NULL, NULL}},  {{"a", NULL, "", NULL}}, {{"a", "", "t", NULL}},
		{{"a", NULL, "t", "\xff"}},
	};
	for (size_t i = 0; i < sizeof bad_defs / sizeof *bad_defs; i++) {
		struct rt_lq_options lo = {.queries = bad_defs[i], .n_queries = 1};
		struct rt_channel_options co = {.topic = "x", .live = &lo};
		struct rt_client_channel *ch = NULL;
		assert_int_equal(rt_channel_join(c, &co, &ch), RT_EINVAL);
		assert_null(ch);
	}
	static const struct rt_lq_def two[] = {{"a", NULL, "t", NULL}, {"a", NULL, "u", NULL}};
	static const struct rt_lq_def one[] = {{"a", NULL, "t", NULL}};
	const struct rt_lq_options bad_opts[] = {
		{.queries = two, .n_queries = 2},
		{.queries = NULL, .n_queries = 1},
		{.queries = one, .n_queries = 1, .throttle_ms = 60001},
		{.queries = one, .n_queries = 1, .debounce_ms = 60001},
		{.queries = one, .n_queries = 1, .max_wait_ms = 60001},
		{.queries = one, .n_queries = 1, .throttle_ms = 10, .debounce_ms = 10},
		{.queries = one, .n_queries = RT_LQ_MAX_QUERIES + 1},
	};
	for (size_t i = 0; i < sizeof bad_opts / sizeof *bad_opts; i++) {
		struct rt_channel_options co = {.topic = "x", .live = &bad_opts[i]};
		struct rt_client_channel *ch = NULL;
		assert_int_equal(rt_channel_join(c, &co, &ch), RT_EINVAL);
	}
	/* options without queries are fine; then up to 64 queries, not 65 */
	struct rt_lq_options lo = {.debounce_ms = 100, .max_wait_ms = 60000};
	struct rt_channel_options co = {.topic = "x", .live = &lo};
	struct rt_client_channel *ch = NULL;
	assert_int_equal(rt_channel_join(c, &co, &ch), 0);
	assert_int_equal(rt_lq_subscribe(ch, two, 2), RT_EINVAL);
	assert_int_equal(rt_lq_subscribe(ch, one, 0), RT_EINVAL);
	assert_int_equal(rt_lq_subscribe(ch, bad_defs[2], 1), RT_EINVAL);
	struct rt_lq_def many[RT_LQ_MAX_QUERIES];
	char ids[RT_LQ_MAX_QUERIES][16];
	for (int i = 0; i < RT_LQ_MAX_QUERIES; i++) {
		snprintf(ids[i], sizeof ids[i], "q%d", i);
		many[i] = (struct rt_lq_def){ids[i], NULL, "t", NULL};
	}
	assert_int_equal(rt_lq_subscribe(ch, many, RT_LQ_MAX_QUERIES), 0);
	assert_int_equal(rt_lq_subscribe(ch, many, RT_LQ_MAX_QUERIES), 0); /* replaced */
	static const struct rt_lq_def extra = {"x", NULL, "t", NULL};
	assert_int_equal(rt_lq_subscribe(ch, &extra, 1), RT_ELIMIT);
	assert_int_equal(rt_lq_unsubscribe(ch, "q3"), 0);
	assert_int_equal(rt_lq_subscribe(ch, &extra, 1), 0);
	char *rows = NULL;
	assert_int_equal(rt_lq_result(ch, "x", &rows, NULL), RT_EAGAIN);
	assert_int_equal(rt_lq_result(ch, "q3", &rows, NULL), RT_ENOTFOUND);
	assert_null(rows);
	char pos[21];
	rt_lq_position(ch, pos);
	assert_string_equal(pos, "");
	rt_client_free(c);
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	(void)h_server_signal;
	(void)h_count_jansson;
	(void)h_pump_until;
	(void)h_token;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_refused),
		cmocka_unit_test(test_protocol),
		cmocka_unit_test(test_reentrant_callbacks),
		cmocka_unit_test(test_oom_every_allocation),
		cmocka_unit_test(test_window_and_aggregate),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_rls_two_users),
	};
	int rc = cmocka_run_group_tests_name("live queries", tests, NULL, NULL);
	h_kill_all();
	return rc;
}
