/*
 * librtsync against the real server (tests/client/run.sh sets RTSYNC_BIN):
 * round trips, reconnect and gap-free resume across kill -9 and restart,
 * heartbeat timeout on a stopped server, token refresh, pushes buffered
 * while disconnected, the library's own thread, leave/close freeing
 * everything, and out of memory at every allocation of a whole scenario.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

struct t_ctx {
	pthread_t forbidden_thread; /* callbacks must not run here (is_thread_checked) */
	bool is_thread_checked;
	bool wrong_thread;
	/* client */
	int n_open, n_reconnecting, n_closed;
	int last_reason;
	int64_t reconnecting_at, open_at;
	bool is_open;
	bool enomem;
	int n_limit_errors;
	/* channel */
	bool joined;
	int n_writes, last_write_rc;
	char last_write[1024];
	int n_joined, n_rejoined, n_closed_ch, n_errored;
	int64_t rejoined_at;
	int n_changes;
	long ids[512];
	int n_broadcasts;
	char last_event[64];
	int n_acks, n_ack_errors, last_ack_rc;
	int n_pjoin, n_pleave, n_sync;
	char sync_state[1024];
	bool resync;
	/* leave from a callback */
	bool leave_on_broadcast;
};

static void check_thread(struct t_ctx *t)
{
	if (t->is_thread_checked && pthread_equal(pthread_self(), t->forbidden_thread))
		t->wrong_thread = true;
}

static void on_state(void *user, const struct rt_client_state_event *ev)
{
	struct t_ctx *t = user;
	check_thread(t);
	switch (ev->state) {
	case RT_CLIENT_OPEN:
		t->n_open++;
		t->is_open = true;
		t->open_at = h_now_ms();
		break;
	case RT_CLIENT_RECONNECTING:
		if (t->is_open)
			t->reconnecting_at = h_now_ms();
		t->is_open = false;
		t->n_reconnecting++;
		t->last_reason = ev->reason;
		break;
	case RT_CLIENT_CLOSED:
		t->is_open = false;
		t->n_closed++;
		break;
	default:
		break;
	}
}

static void on_error(void *user, struct rt_client_channel *ch, int rc, const char *msg)
{
	struct t_ctx *t = user;
	check_thread(t);
	if (rc == RT_ENOMEM)
		t->enomem = true;
	if (rc == RT_ELIMIT)
		t->n_limit_errors++;
}

static void on_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct t_ctx *t = user;
	check_thread(t);
	t->joined = st->state == RT_CHANNEL_JOINED;
	if (st->state == RT_CHANNEL_JOINED) {
		t->n_joined++;
		if (st->is_rejoin) {
			t->n_rejoined++;
			t->rejoined_at = h_now_ms();
		}
	} else if (st->state == RT_CHANNEL_CLOSED) {
		t->n_closed_ch++;
	} else if (st->state == RT_CHANNEL_ERRORED) {
		t->n_errored++;
	}
}

static void on_change(void *user, struct rt_client_channel *ch, const struct rt_client_change *c)
{
	struct t_ctx *t = user;
	check_thread(t);
	json_t *rec = json_loads(c->record ? c->record : c->old_record, 0, NULL);
	if (t->n_changes < 512)
		t->ids[t->n_changes] = (long)json_integer_value(json_object_get(rec, "id"));
	t->n_changes++;
	json_decref(rec);
}

static void on_broadcast(void *user, struct rt_client_channel *ch, const struct rt_broadcast *b)
{
	struct t_ctx *t = user;
	check_thread(t);
	t->n_broadcasts++;
	snprintf(t->last_event, sizeof t->last_event, "%s", b->event);
	if (t->leave_on_broadcast)
		rt_channel_leave(ch);
}

static void on_presence(void *user, struct rt_client_channel *ch, const struct rt_presence_event *p)
{
	struct t_ctx *t = user;
	check_thread(t);
	if (p->kind == RT_PRESENCE_JOIN)
		t->n_pjoin++;
	else if (p->kind == RT_PRESENCE_LEAVE)
		t->n_pleave++;
	else {
		t->n_sync++;
		snprintf(t->sync_state, sizeof t->sync_state, "%s", p->state);
	}
}

static void on_system(void *user, struct rt_client_channel *ch, const struct rt_system_event *s)
{
	struct t_ctx *t = user;
	if (s->resync_required)
		t->resync = true;
}

static void on_ack(void *user, struct rt_client_channel *ch, uint64_t id, int rc, const char *why)
{
	struct t_ctx *t = user;
	check_thread(t);
	t->n_acks++;
	t->last_ack_rc = rc;
	if (rc)
		t->n_ack_errors++;
}

static void on_write(void *user, struct rt_client_channel *ch, uint64_t id, int rc,
		     const char *response)
{
	struct t_ctx *t = user;
	check_thread(t);
	t->n_writes++;
	t->last_write_rc = rc;
	snprintf(t->last_write, sizeof t->last_write, "%s", response ? response : "");
}

static const struct rt_channel_callbacks cbs = {on_status, on_change, on_broadcast, on_presence,
						on_system, on_ack,    on_write,     NULL,
						NULL};

static struct rt_client *new_client(struct h_server *s, struct t_ctx *t,
				    struct rt_client_options *extra)
{
	struct rt_client_options o = extra ? *extra : (struct rt_client_options){0};
	o.url = s->url;
	o.apikey = o.apikey ? o.apikey : h_token(3600);
	o.on_state = on_state;
	o.on_error = on_error;
	o.user = t;
	if (!o.reconnect_base_ms)
		o.reconnect_base_ms = 50;
	if (!o.reconnect_max_ms)
		o.reconnect_max_ms = 400;
	struct rt_client *c = NULL;
	assert_int_equal(rt_client_new(&o, &c), 0);
	return c;
}

static struct rt_client_channel *join(struct rt_client *c, struct t_ctx *t, const char *topic,
				      bool with_changes)
{
	static const struct rt_change_filter todos = {"*", "public", "todos", NULL};
	struct rt_channel_options co = {
		.topic = topic,
		.broadcast_self = true,
		.broadcast_ack = true,
		.presence = true,
		.presence_key = "me",
		.changes = with_changes ? &todos : NULL,
		.n_changes = with_changes ? 1 : 0,
		.cb = cbs,
		.user = t,
	};
	struct rt_client_channel *ch = NULL;
	assert_int_equal(rt_channel_join(c, &co, &ch), 0);
	return ch;
}

/* ---- tests ---- */

static void test_round_trip(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0};
	struct rt_client *c = new_client(&s, &t, NULL);
	struct rt_client_channel *ch = join(c, &t, "room1", true);
	assert_int_equal(rt_channel_state(ch), RT_CHANNEL_JOINING);
	struct rt_client_channel *dup;
	struct rt_channel_options again = {.topic = "room1"};
	assert_int_equal(rt_channel_join(c, &again, &dup), RT_EEXISTS);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(h_pump_until(c, &t.joined, 5000));
	assert_int_equal(rt_client_state(c), RT_CLIENT_OPEN);

	/* broadcast to self, acknowledged */
	uint64_t id = 0;
	assert_int_equal(rt_channel_send(ch, "greet", "{\"n\":1}", &id), 0);
	assert_true(id > 0);
	assert_int_equal(rt_channel_send(ch, "greet", "[1]", NULL), RT_EINVAL);
	assert_int_equal(rt_channel_send(ch, "", "{}", NULL), RT_EINVAL);
	for (int64_t end = h_now_ms() + 3000; (t.n_broadcasts < 1 || t.n_acks < 1) && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_broadcasts, 1);
	assert_string_equal(t.last_event, "greet");
	assert_int_equal(t.n_acks, 1);
	assert_int_equal(t.last_ack_rc, 0);

	/* presence: track, see ourselves join, then leave on untrack */
	assert_int_equal(rt_channel_track(ch, "{\"user\":\"ann\"}", NULL), 0);
	for (int64_t end = h_now_ms() + 3000; t.n_pjoin < 1 && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_pjoin, 1);
	char *st = NULL;
	assert_int_equal(rt_channel_presence_state(ch, &st), 0);
	assert_non_null(strstr(st, "\"me\""));
	assert_non_null(strstr(st, "ann"));
	free(st);
	assert_int_equal(rt_channel_untrack(ch, NULL), 0);
	for (int64_t end = h_now_ms() + 3000; t.n_pleave < 1 && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_pleave, 1);

	/* a database change */
	assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (7,'seven')"), 0);
	for (int64_t end = h_now_ms() + 3000; t.n_changes < 1 && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_changes, 1);
	assert_int_equal(t.ids[0], 7);
	char pos[21];
	rt_channel_position(ch, pos);
	assert_true(pos[0] != 0);

	assert_int_equal(rt_client_close(c), 0);
	h_pump_for(c, 50);
	assert_int_equal(rt_client_state(c), RT_CLIENT_CLOSED);
	assert_int_equal(t.n_reconnecting, 0);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* kill -9, rows written while the server is down and after it is back:
 * rejoined within 2 s of the restart, every row received once, in order. */
static void test_resume_after_kill(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0};
	struct rt_client_options o = {.heartbeat_ms = 1000};
	struct rt_client *c = new_client(&s, &t, &o);
	join(c, &t, "resume", true);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(h_pump_until(c, &t.joined, 5000));
	h_pump_for(c, 100); /* the "Subscribed to PostgreSQL" system message */

	for (int i = 1; i <= 3; i++)
		assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (%d,'a')", i), 0);
	for (int64_t end = h_now_ms() + 3000; t.n_changes < 3 && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_changes, 3);

	h_server_kill(&s);
	for (int i = 4; i <= 6; i++) /* written while the server is down */
		assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (%d,'b')", i), 0);
	assert_int_equal(h_sql(&s, "UPDATE todos SET done = true WHERE id = 2"), 0);
	h_pump_for(c, 300); /* the client notices and keeps retrying */
	assert_true(t.n_reconnecting >= 1);
	assert_false(t.joined);

	int rejoins = t.n_rejoined;
	assert_int_equal(h_server_start(&s), 0);
	int64_t restarted = h_now_ms();
	for (int64_t end = restarted + 5000; t.n_rejoined == rejoins && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_int_equal(t.n_rejoined, rejoins + 1);
	int64_t took = t.rejoined_at - restarted;
	print_message("rejoined %lld ms after the restart\n", (long long)took);
	assert_true(took <= 2000);

	for (int i = 7; i <= 9; i++)
		assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (%d,'c')", i), 0);
	for (int64_t end = h_now_ms() + 5000; t.n_changes < 10 && h_now_ms() < end;)
		rt_client_run(c, 20);
	h_pump_for(c, 200); /* nothing more must arrive */
	static const long want[] = {1, 2, 3, 4, 5, 6, 2, 7, 8, 9};
	assert_int_equal(t.n_changes, 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(t.ids[i], want[i]);
	assert_false(t.resync);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* A channel that has seen no change yet still misses nothing across a
 * restart: it resumes from the position the subscription started after. */
static void test_resume_before_first_change(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	/* earlier rows: before the subscription, never delivered */
	for (int i = 1; i <= 2; i++)
		assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (%d,'old')", i), 0);
	struct t_ctx t = {0};
	struct rt_client_options o = {.heartbeat_ms = 1000};
	struct rt_client *c = new_client(&s, &t, &o);
	struct rt_client_channel *ch = join(c, &t, "first", true);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(h_pump_until(c, &t.joined, 5000));
	h_pump_for(c, 200); /* the "Subscribed to PostgreSQL" system message */
	char pos[21];
	rt_channel_position(ch, pos);
	assert_string_not_equal(pos, ""); /* where the subscription starts */

	h_server_kill(&s);
	for (int i = 3; i <= 5; i++) /* written while the server is down */
		assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (%d,'new')", i), 0);
	h_pump_for(c, 300);
	int rejoins = t.n_rejoined;
	assert_int_equal(h_server_start(&s), 0);
	for (int64_t end = h_now_ms() + 5000; t.n_rejoined == rejoins && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_int_equal(t.n_rejoined, rejoins + 1);
	for (int64_t end = h_now_ms() + 5000; t.n_changes < 3 && h_now_ms() < end;)
		rt_client_run(c, 20);
	h_pump_for(c, 200); /* and nothing else */
	assert_int_equal(t.n_changes, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(t.ids[i], 3 + i);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* rt_channel_write: applied with the row, a stale base refused with the
 * current row, a replayed key answered from the first result, bad input. */
static void test_write(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0};
	struct rt_client *c = new_client(&s, &t, NULL);
	struct rt_client_channel *ch = join(c, &t, "writes", false);
	/* sent before the connection is up: held, then sent after the join */
	uint64_t id1 = 0;
	assert_int_equal(rt_channel_write(ch, "{\"type\":\"insert\",\"table\":\"todos\","
					      "\"record\":{\"id\":70,\"title\":\"a\"},"
					      "\"idempotency_key\":\"k70\"}",
					  &id1),
			 0);
	assert_true(id1 != 0);
	assert_int_equal(rt_client_connect(c), 0);
	for (int64_t end = h_now_ms() + 5000; t.n_writes < 1 && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_writes, 1);
	assert_int_equal(t.last_write_rc, 0);
	assert_non_null(strstr(t.last_write, "\"outcome\":\"applied\""));
	assert_non_null(strstr(t.last_write, "\"title\":\"a\""));

	assert_int_equal(rt_channel_write(ch, "{\"type\":\"update\",\"table\":\"todos\","
					      "\"key\":{\"id\":70},\"record\":{\"title\":\"b\"},"
					      "\"base\":{\"title\":\"stale\"}}",
					  NULL),
			 0);
	for (int64_t end = h_now_ms() + 5000; t.n_writes < 2 && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_writes, 2);
	assert_int_equal(t.last_write_rc, RT_EPROTO);
	assert_non_null(strstr(t.last_write, "\"outcome\":\"conflict\""));
	assert_non_null(strstr(t.last_write, "\"conflicts\":[\"title\"]"));

	assert_int_equal(rt_channel_write(ch, "{\"type\":\"insert\",\"table\":\"todos\","
					      "\"record\":{\"id\":70,\"title\":\"a\"},"
					      "\"idempotency_key\":\"k70\"}",
					  NULL),
			 0);
	for (int64_t end = h_now_ms() + 5000; t.n_writes < 3 && h_now_ms() < end;)
		rt_client_run(c, 20);
	assert_int_equal(t.n_writes, 3);
	assert_int_equal(t.last_write_rc, 0);
	assert_non_null(strstr(t.last_write, "\"replayed\":true"));

	assert_int_equal(rt_channel_write(ch, "{\"table\":\"todos\"}", NULL), RT_EINVAL);
	assert_int_equal(rt_channel_write(ch, "[1]", NULL), RT_EINVAL);
	assert_int_equal(rt_channel_write(ch, "{nope", NULL), RT_EINVAL);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* A server that stops answering (SIGSTOP) is detected by the heartbeat. */
static void test_heartbeat_timeout(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0};
	struct rt_client_options o = {.heartbeat_ms = 300, .connect_timeout_ms = 500};
	struct rt_client *c = new_client(&s, &t, &o);
	join(c, &t, "hb", false);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(h_pump_until(c, &t.joined, 5000));
	h_pump_for(c, 700); /* heartbeats answered: still open */
	assert_int_equal(t.n_reconnecting, 0);

	h_server_signal(&s, SIGSTOP);
	int64_t stopped = h_now_ms();
	for (int64_t end = stopped + 3000; t.n_reconnecting == 0 && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_int_equal(t.n_reconnecting, 1);
	assert_int_equal(t.last_reason, RT_ETIMEDOUT);
	int64_t took = t.reconnecting_at - stopped;
	print_message("heartbeat timeout detected after %lld ms\n", (long long)took);
	assert_true(took <= 2 * 300 + 250);

	/* the stopped server accepts TCP but never answers: connect attempts time out */
	h_pump_for(c, 1200);
	assert_false(t.joined);
	assert_true(t.n_reconnecting >= 2);
	h_server_signal(&s, SIGCONT);
	int rejoined = t.n_rejoined;
	for (int64_t end = h_now_ms() + 5000; t.n_rejoined == rejoined && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_int_equal(t.n_rejoined, rejoined + 1);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* An access token about to expire, replaced: the joined channel stays, and
 * the rejoin after a restart uses the new token. Without the refresh, the
 * server closes the channel at expiry. */
static void test_token_refresh(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0}, u = {0};
	struct rt_client_options o = {.access_token = h_token(2)};
	struct rt_client *c = new_client(&s, &t, &o);
	struct rt_client *d = new_client(&s, &u, &o); /* never refreshed */
	struct rt_client_channel *ch = join(c, &t, "tok", false);
	join(d, &u, "tok", false);
	assert_int_equal(rt_client_connect(c), 0);
	assert_int_equal(rt_client_connect(d), 0);
	for (int64_t end = h_now_ms() + 5000; !(t.joined && u.joined) && h_now_ms() < end;) {
		rt_client_run(c, 10);
		rt_client_run(d, 10);
	}
	assert_true(t.joined && u.joined);
	assert_int_equal(rt_client_set_access_token(c, h_token(3600)), 0);
	for (int64_t end = h_now_ms() + 4500; h_now_ms() < end;) {
		rt_client_run(c, 10);
		rt_client_run(d, 10);
	}
	assert_int_equal(u.n_closed_ch, 1); /* the old token expired on d */
	assert_int_equal(t.n_closed_ch, 0);
	assert_int_equal(rt_channel_state(ch), RT_CHANNEL_JOINED);
	assert_int_equal(rt_channel_send(ch, "still", "{}", NULL), 0);
	for (int64_t end = h_now_ms() + 3000; t.n_acks < 1 && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_int_equal(t.last_ack_rc, 0);

	/* rejoin after a restart: the expired first token would be refused */
	h_server_kill(&s);
	h_pump_for(c, 200);
	assert_int_equal(h_server_start(&s), 0);
	int rejoined = t.n_rejoined;
	for (int64_t end = h_now_ms() + 5000; t.n_rejoined == rejoined && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_int_equal(t.n_rejoined, rejoined + 1);
	assert_int_equal(t.n_closed_ch, 0);
	rt_client_free(c);
	rt_client_free(d);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* Pushes made while disconnected wait (bounded) and go out after the rejoin. */
static void test_buffered_pushes(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0};
	struct rt_client_options o = {.max_buffered_pushes = 3};
	struct rt_client *c = new_client(&s, &t, &o);
	struct rt_client_channel *ch = join(c, &t, "buf", false);
	assert_int_equal(rt_client_connect(c), 0);
	assert_true(h_pump_until(c, &t.joined, 5000));
	h_server_kill(&s);
	for (int64_t end = h_now_ms() + 2000; t.joined && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_false(t.joined);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rt_channel_send(ch, "queued", "{}", NULL), 0);
	assert_int_equal(rt_channel_send(ch, "overflow", "{}", NULL), RT_ELIMIT);
	h_pump_for(c, 50);
	assert_int_equal(t.n_limit_errors, 1);
	assert_int_equal(h_server_start(&s), 0);
	for (int64_t end = h_now_ms() + 5000; t.n_broadcasts < 3 && h_now_ms() < end;)
		rt_client_run(c, 10);
	h_pump_for(c, 200);
	assert_int_equal(t.n_broadcasts, 3);
	assert_string_equal(t.last_event, "queued");
	assert_int_equal(t.n_acks, 3);
	assert_int_equal(t.n_ack_errors, 0);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* The library's own thread: sends from this thread, callbacks on that one. */
static void test_thread(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0};
	struct rt_client *c = new_client(&s, &t, NULL);
	t.forbidden_thread = pthread_self();
	t.is_thread_checked = true;
	struct rt_client_channel *ch = join(c, &t, "thr", false);
	assert_int_equal(rt_client_start_thread(c), 0);
	assert_int_equal(rt_client_start_thread(c), RT_EINVAL);
	assert_int_equal(rt_client_process(c), RT_EINVAL); /* the thread drives it */
	assert_int_equal(rt_client_connect(c), 0);
	for (int i = 0; i < 50; i++)
		assert_int_equal(rt_channel_send(ch, "t", "{}", NULL), 0);
	for (int64_t end = h_now_ms() + 5000; h_now_ms() < end; usleep(10000))
		if (__atomic_load_n(&t.n_acks, __ATOMIC_SEQ_CST) >= 50)
			break;
	rt_client_stop_thread(c);
	assert_int_equal(t.n_acks, 50);
	assert_int_equal(t.n_broadcasts, 50);
	assert_false(t.wrong_thread);
	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* Leave (also from inside a callback), close and free give back every byte. */
static void test_leave_close_free(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	struct t_ctx t = {0}, t2 = {0};
	long live0 = atomic_load(&h_mem.live);
	atomic_store(&h_mem.fail_at, 0);
	struct rt_client_options o = {.allocator = &h_allocator};
	struct rt_client *c = new_client(&s, &t, &o);
	struct rt_client_channel *a = join(c, &t, "free-a", true);
	struct rt_client_channel *b = join(c, &t2, "free-b", false);
	struct rt_client_channel *z = join(c, &t2, "free-c", false);
	assert_int_equal(rt_client_connect(c), 0);
	for (int64_t end = h_now_ms() + 5000; !(t.joined && t2.n_joined == 2) && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_true(t.joined);
	assert_int_equal(t2.n_joined, 2);
	assert_int_equal(rt_channel_track(b, "{\"k\":1}", NULL), 0);
	assert_int_equal(rt_channel_send(b, "x", "{}", NULL), 0);
	t.leave_on_broadcast = true; /* channel a leaves from its own callback */
	assert_int_equal(rt_channel_send(a, "bye", "{}", NULL), 0);
	for (int64_t end = h_now_ms() + 3000; t.n_broadcasts < 1 && h_now_ms() < end;)
		rt_client_run(c, 10);
	assert_int_equal(t.n_broadcasts, 1);
	h_pump_for(c, 100);
	assert_int_equal(rt_channel_leave(z), 0);
	/* z's leave reply and close arrive for a channel gone: ignored */
	h_pump_for(c, 100);
	assert_true(atomic_load(&h_mem.live) > live0);
	assert_int_equal(rt_client_close(c), 0);
	h_pump_for(c, 50);
	rt_client_free(c); /* b is still joined: freed with the client */
	assert_int_equal(atomic_load(&h_mem.live), live0);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

/* A whole scenario with the k-th allocation failing, for every k until it
 * completes: every run ends with RT_ENOMEM reported or the scenario done,
 * and with nothing left allocated. jansson counts too. */
struct oom_run {
	bool done;
	bool enomem;    /* a call returned RT_ENOMEM or on_error reported it */
	bool restarted; /* the client restarted its connection (it resumes) */
};

static int oom_scenario(struct h_server *s, const char *apikey, struct oom_run *r)
{
	struct t_ctx t = {0};
	struct rt_client_options o = {.url = s->url,
				      .apikey = apikey,
				      .allocator = &h_allocator,
				      .on_state = on_state,
				      .on_error = on_error,
				      .user = &t,
				      .reconnect_base_ms = 5,
				      .reconnect_max_ms = 20};
	struct rt_client *c = NULL;
	int rc = rt_client_new(&o, &c);
	if (rc) {
		r->enomem = rc == RT_ENOMEM;
		return rc;
	}
	struct rt_channel_options co = {.topic = "oom",
					.broadcast_self = true,
					.broadcast_ack = true,
					.presence = true,
					.presence_key = "k",
					.cb = cbs,
					.user = &t};
	struct rt_client_channel *ch = NULL;
	int64_t end = h_now_ms() + 3000;
	if ((rc = rt_channel_join(c, &co, &ch)))
		goto out_free;
	if ((rc = rt_client_connect(c)))
		goto out_free;
	while (!t.joined && !t.enomem && !t.n_reconnecting && h_now_ms() < end)
		rt_client_run(c, 10);
	if (!t.joined)
		goto out_free;
	if ((rc = rt_channel_send(ch, "e", "{\"a\":[1,2,3]}", NULL)))
		goto out_free;
	if ((rc = rt_channel_track(ch, "{\"m\":true}", NULL)))
		goto out_free;
	while ((t.n_acks < 2 || t.n_broadcasts < 1 || t.n_pjoin < 1) && !t.enomem &&
	       !t.n_reconnecting && h_now_ms() < end)
		rt_client_run(c, 10);
	if (t.n_acks < 2 || t.n_broadcasts < 1 || t.n_pjoin < 1)
		goto out_free;
	if ((rc = rt_channel_leave(ch)))
		goto out_free;
	rt_client_close(c);
	rt_client_run(c, 0);
	r->done = !t.enomem;
out_free:
	rt_client_free(c);
	r->enomem = t.enomem || rc == RT_ENOMEM;
	r->restarted = t.n_reconnecting > 0;
	return rc;
}

static void test_oom_every_allocation(void **state)
{
	struct h_server s = {0};
	assert_int_equal(h_server_start(&s), 0);
	char apikey[1024];
	snprintf(apikey, sizeof apikey, "%s", h_token(3600));
	long live0 = atomic_load(&h_mem.live);
	long k, runs_enomem = 0, runs_restarted = 0;
	for (k = 1; k < 20000; k++) {
		struct oom_run r = {0};
		atomic_store(&h_mem.failed, 0);
		atomic_store(&h_mem.count, 0);
		atomic_store(&h_mem.fail_at, k);
		if (getenv("H_VERBOSE"))
			fprintf(stderr, "k=%ld\n", k);
		int rc = oom_scenario(&s, apikey, &r);
		atomic_store(&h_mem.fail_at, 0);
		long failed = atomic_load(&h_mem.failed);
		if (atomic_load(&h_mem.live) != live0)
			fail_msg("k=%ld: %ld allocation(s) leaked", k, atomic_load(&h_mem.live) - live0);
		if (rc && rc != RT_ENOMEM)
			fail_msg("k=%ld: unexpected error %s", k, rt_err_name(rc));
		if (failed && !r.done && !r.enomem && !r.restarted)
			fail_msg("k=%ld: the failure was neither reported nor recovered from", k);
		if (getenv("H_VERBOSE") && failed && r.done && !r.enomem && !r.restarted)
			fprintf(stderr, "k=%ld: completed without a report\n", k);
		if (r.enomem)
			runs_enomem++;
		else if (r.restarted)
			runs_restarted++;
		if (!failed) { /* k is past the scenario's last allocation */
			assert_true(r.done);
			break;
		}
	}
	print_message("%ld allocations in the scenario: %ld runs reported RT_ENOMEM, %ld restarted "
		      "the connection, %ld completed anyway\n",
		      k - 1, runs_enomem, runs_restarted, k - 1 - runs_enomem - runs_restarted);
	assert_true(k > 50);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* e.g. test_oom_every_allocation */
	h_count_jansson();
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_resume_after_kill),
		cmocka_unit_test(test_resume_before_first_change),
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_heartbeat_timeout),
		cmocka_unit_test(test_token_refresh),
		cmocka_unit_test(test_buffered_pushes),
		cmocka_unit_test(test_thread),
		cmocka_unit_test(test_leave_close_free),
		cmocka_unit_test(test_oom_every_allocation),
	};
	int failed = cmocka_run_group_tests_name("client", tests, NULL, NULL);
	h_kill_all();
	return failed;
}
