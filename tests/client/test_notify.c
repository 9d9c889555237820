/*
 * Notifications seen from librtsync (include/rtsync/notify.h,
 * docs/notifications.md): a rule on a table whose column names the user
 * notifies exactly that user, live on every session of theirs and in the
 * inbox, and nobody else; the counts arrive right after each join and
 * rejoin; inbox operations over REST (list and paging, counts, read,
 * unread, archive, read-all, delete, preferences) reflect on every session
 * of the user; the service role sends over the socket and others are
 * refused; bad arguments, refused joins and a dead server give errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "rtsync/notify.h"

static const char notify_schema[] =
	"CREATE TABLE IF NOT EXISTS tasks (id bigint PRIMARY KEY, title text NOT NULL,\n"
	"  assignee text);\n";

static const char rules_json[] =
	"{\"rules\": [{\"name\": \"assigned\", \"table\": \"tasks\", \"events\": [\"INSERT\"],\n"
	"  \"recipients\": {\"column\": \"assignee\"}, \"title\": \"{{new.title}}\",\n"
	"  \"message\": \"task {{new.id}}\", \"category\": \"tasks\", \"link\": \"/t/{{new.id}}\"}]}\n";

/* What one inbox saw. */
struct seen {
	int n_joined, n_errored;
	int n_notes, n_states, n_joins, n_prefs;
	long long last_unread, join_total;
	int64_t last_id;
	char last_title[64], last_rule[32], last_prefs[256];
	/* the write callback of a channel used for sends */
	int n_writes, write_rc;
	char write_resp[512];
};

static void on_note(void *user, struct rt_inbox *ib, const struct rt_inbox_event *ev)
{
	struct seen *s = user;
	s->n_notes++;
	s->last_unread = ev->unread;
	s->last_id = ev->notification->id;
	snprintf(s->last_title, sizeof s->last_title, "%s", ev->notification->title);
	snprintf(s->last_rule, sizeof s->last_rule, "%s",
		 ev->notification->rule ? ev->notification->rule : "");
	assert_non_null(ev->notification->json);
	assert_non_null(ev->payload);
	assert_int_equal(rt_inbox_unread(ib), ev->unread);
}

static void on_state(void *user, struct rt_inbox *ib, const struct rt_inbox_state *st)
{
	(void)ib;
	struct seen *s = user;
	s->n_states++;
	s->last_unread = st->unread;
	if (st->is_join) {
		s->n_joins++;
		s->join_total = st->total;
	}
}

static void on_prefs(void *user, struct rt_inbox *ib, const char *prefs)
{
	(void)ib;
	struct seen *s = user;
	s->n_prefs++;
	snprintf(s->last_prefs, sizeof s->last_prefs, "%s", prefs);
}

static void on_status(void *user, struct rt_inbox *ib, const struct rt_channel_status *st)
{
	(void)ib;
	struct seen *s = user;
	if (st->state == RT_CHANNEL_JOINED)
		s->n_joined++;
	if (st->state == RT_CHANNEL_ERRORED)
		s->n_errored++;
}

struct user {
	struct rt_client *c;
	struct rt_inbox *ib;
	struct seen s;
};

static struct rt_client *client_as(const struct h_server *srv, const char *role, const char *sub)
{
	struct rt_client_options co = {
		.url = srv->url,
		.apikey = h_token_as(role, sub, 3600),
		.reconnect_base_ms = 50,
		.reconnect_max_ms = 300,
		.push_timeout_ms = 5000,
		.allocator = &h_allocator,
	};
	struct rt_client *c;
	assert_int_equal(rt_client_new(&co, &c), 0);
	assert_int_equal(rt_client_connect(c), 0);
	return c;
}

static void user_open(struct user *u, const struct h_server *srv, const char *sub,
		      const char *inbox_of)
{
	memset(u, 0, sizeof *u);
	u->c = client_as(srv, "authenticated", sub);
	struct rt_inbox_options o = {
		.user_id = inbox_of ? inbox_of : sub,
		.cb = {on_note, on_state, on_prefs, on_status},
		.user = &u->s,
	};
	assert_int_equal(rt_inbox_open(u->c, &o, &u->ib), 0);
}

static void user_close(struct user *u)
{
	rt_inbox_close(u->ib);
	rt_client_free(u->c);
}

/* Runs every client's loop until cond(ctx) or timeout_ms. */
static bool pump(struct user **us, size_t n, bool (*cond)(void *), void *ctx, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;
	while (!cond(ctx) && h_now_ms() < end)
		for (size_t i = 0; i < n; i++)
			rt_client_run(us[i]->c, 5);
	return cond(ctx);
}

static void pump_ms(struct user **us, size_t n, int ms)
{
	int64_t end = h_now_ms() + ms;
	while (h_now_ms() < end)
		for (size_t i = 0; i < n; i++)
			rt_client_run(us[i]->c, 5);
}

struct want {
	struct seen *s;
	int n;
	long long unread;
};

static bool has_joins(void *ctx)
{
	struct want *w = ctx;
	return w->s->n_joins >= w->n && w->s->last_unread == w->unread;
}

static bool has_notes(void *ctx)
{
	struct want *w = ctx;
	return w->s->n_notes >= w->n && w->s->last_unread == w->unread;
}

static bool has_unread(void *ctx)
{
	struct want *w = ctx;
	return w->s->last_unread == w->unread;
}

static bool has_writes(void *ctx)
{
	struct want *w = ctx;
	return w->s->n_writes >= w->n;
}

static bool has_errored(void *ctx)
{
	struct want *w = ctx;
	return w->s->n_errored >= w->n;
}

static void start(struct h_server *srv, char *rules_path, size_t cap)
{
	memset(srv, 0, sizeof *srv);
	snprintf(rules_path, cap, "/tmp/rtsync-notify-rules-%d.json", (int)getpid());
	FILE *f = fopen(rules_path, "w");
	assert_non_null(f);
	fputs(rules_json, f);
	fclose(f);
	srv->schema = notify_schema;
	srv->args[0] = "--notify-rules";
	srv->args[1] = rules_path;
	assert_int_equal(h_server_start(srv), 0);
}

static void finish(struct h_server *srv, const char *rules_path)
{
	assert_int_equal(h_server_stop(srv), 0);
	h_server_remove(srv);
	unlink(rules_path);
}

static json_t *parse(char *txt)
{
	assert_non_null(txt);
	json_t *v = json_loads(txt, 0, NULL);
	assert_non_null(v);
	h_realloc(&h_mem, txt, 0); /* the client's allocator */
	return v;
}

/* A rule notifies alice (two sessions) and not bob; the inbox over REST
 * reflects on both of alice's sessions. */
static void test_rule_inbox(void **state)
{
	(void)state;
	struct h_server srv;
	char rules[96];
	start(&srv, rules, sizeof rules);
	struct user a1, a2, b;
	user_open(&a1, &srv, "alice", NULL);
	user_open(&a2, &srv, "alice", NULL);
	user_open(&b, &srv, "bob", NULL);
	struct user *all[] = {&a1, &a2, &b};
	for (size_t i = 0; i < 3; i++) {
		struct want w = {&all[i]->s, 1, 0};
		assert_true(pump(all, 3, has_joins, &w, 10000));
		assert_int_equal(all[i]->s.join_total, 0);
		assert_int_equal(rt_inbox_unread(all[i]->ib), 0);
	}

	assert_int_equal(h_sql(&srv, "INSERT INTO tasks VALUES (1, 'Write docs', 'alice')"), 0);
	assert_int_equal(h_sql(&srv, "INSERT INTO tasks VALUES (2, 'Fix bug', 'alice')"), 0);
	assert_int_equal(h_sql(&srv, "INSERT INTO tasks VALUES (3, 'Unassigned', NULL)"), 0);
	for (size_t i = 0; i < 2; i++) {
		struct want w = {&all[i]->s, 2, 2};
		assert_true(pump(all, 3, has_notes, &w, 10000));
		assert_string_equal(all[i]->s.last_title, "Fix bug");
		assert_string_equal(all[i]->s.last_rule, "assigned");
	}
	pump_ms(all, 3, 300);
	assert_int_equal(a1.s.n_notes, 2);
	assert_int_equal(b.s.n_notes, 0);
	assert_int_equal(b.s.n_states, 1); /* the join's only */

	/* list, paging */
	struct rt_inbox_query q = {.limit = 1};
	char *txt = NULL;
	assert_int_equal(rt_inbox_list(a1.ib, &q, &txt), 0);
	json_t *page = parse(txt);
	assert_int_equal(json_array_size(json_object_get(page, "items")), 1);
	json_t *first = json_array_get(json_object_get(page, "items"), 0);
	assert_string_equal(json_string_value(json_object_get(first, "title")), "Fix bug");
	assert_string_equal(json_string_value(json_object_get(first, "link")), "/t/2");
	int64_t id2 = (int64_t)json_integer_value(json_object_get(first, "id"));
	q.before = (int64_t)json_integer_value(json_object_get(page, "next_before"));
	json_decref(page);
	assert_true(q.before > 0);
	assert_int_equal(rt_inbox_list(a1.ib, &q, &txt), 0);
	page = parse(txt);
	first = json_array_get(json_object_get(page, "items"), 0);
	assert_string_equal(json_string_value(json_object_get(first, "title")), "Write docs");
	int64_t id1 = (int64_t)json_integer_value(json_object_get(first, "id"));
	assert_true(json_is_null(json_object_get(page, "next_before")));
	json_decref(page);
	struct rt_inbox_counts cn;
	assert_int_equal(rt_inbox_count(a1.ib, &cn, NULL), 0);
	assert_int_equal(cn.unread, 2);
	assert_int_equal(cn.total, 2);
	assert_int_equal(cn.held, 0);
	assert_int_equal(rt_inbox_get(a1.ib, id1, &txt), 0);
	json_t *one = parse(txt);
	assert_string_equal(json_string_value(json_object_get(one, "message")), "task 1");
	json_decref(one);

	/* bob sees none of it */
	assert_int_equal(rt_inbox_list(b.ib, NULL, &txt), 0);
	page = parse(txt);
	assert_int_equal(json_array_size(json_object_get(page, "items")), 0);
	json_decref(page);
	assert_int_equal(rt_inbox_get(b.ib, id1, &txt), RT_ENOTFOUND);
	json_t *err = parse(txt);
	assert_string_equal(json_string_value(json_object_get(err, "code")), "RTS404");
	json_decref(err);
	assert_int_equal(rt_inbox_mark(b.ib, id1, RT_INBOX_READ, NULL), RT_ENOTFOUND);

	/* read on one session: the other sees the count drop */
	assert_int_equal(rt_inbox_mark(a1.ib, id2, RT_INBOX_READ, &txt), 0);
	one = parse(txt);
	assert_true(json_is_true(json_object_get(one, "read")));
	json_decref(one);
	struct want w1 = {&a2.s, 0, 1};
	assert_true(pump(all, 3, has_unread, &w1, 5000));
	w1.s = &a1.s;
	assert_true(pump(all, 3, has_unread, &w1, 5000));
	assert_int_equal(rt_inbox_unread(a2.ib), 1);
	assert_int_equal(rt_inbox_mark(a2.ib, id2, RT_INBOX_UNREAD, NULL), 0);
	struct want w2 = {&a1.s, 0, 2};
	assert_true(pump(all, 3, has_unread, &w2, 5000));
	/* archive: out of the default list and the count */
	assert_int_equal(rt_inbox_mark(a1.ib, id1, RT_INBOX_ARCHIVE, NULL), 0);
	struct want w3 = {&a2.s, 0, 1};
	assert_true(pump(all, 3, has_unread, &w3, 5000));
	q = (struct rt_inbox_query){.archived = "true"};
	assert_int_equal(rt_inbox_list(a1.ib, &q, &txt), 0);
	page = parse(txt);
	assert_int_equal(json_array_size(json_object_get(page, "items")), 1);
	json_decref(page);
	assert_int_equal(rt_inbox_mark(a1.ib, id1, RT_INBOX_UNARCHIVE, NULL), 0);
	/* read-all, then delete */
	assert_int_equal(rt_inbox_read_all(a2.ib, "tasks", &txt), 0);
	json_t *ra = parse(txt);
	assert_int_equal(json_integer_value(json_object_get(ra, "unread")), 0);
	json_decref(ra);
	struct want w4 = {&a1.s, 0, 0};
	assert_true(pump(all, 3, has_unread, &w4, 5000));
	assert_int_equal(rt_inbox_delete(a1.ib, id1, &txt), 0);
	assert_null(txt);
	assert_int_equal(rt_inbox_count(a2.ib, &cn, NULL), 0);
	assert_int_equal(cn.total, 1);
	assert_int_equal(rt_inbox_get(a1.ib, id1, NULL), RT_ENOTFOUND);

	/* preferences: read, replace (both sessions hear it), refuse a bad one */
	assert_int_equal(rt_inbox_preferences_get(a1.ib, &txt), 0);
	json_t *pf = parse(txt);
	assert_true(json_is_object(pf));
	json_decref(pf);
	assert_int_equal(rt_inbox_preferences_put(a1.ib, "{\"muted_categories\":[\"tasks\"]}", &txt),
			 0);
	pf = parse(txt);
	assert_string_equal(
		json_string_value(json_array_get(json_object_get(pf, "muted_categories"), 0)), "tasks");
	json_decref(pf);
	int64_t end = h_now_ms() + 5000;
	while (a2.s.n_prefs == 0 && h_now_ms() < end)
		pump_ms(all, 3, 20);
	assert_non_null(strstr(a2.s.last_prefs, "tasks"));
	assert_int_equal(rt_inbox_preferences_put(a1.ib, "{\"min_priority\":\"loudest\"}", &txt),
			 RT_EINVAL);
	err = parse(txt);
	assert_string_equal(json_string_value(json_object_get(err, "code")), "RTS400");
	json_decref(err);
	assert_int_equal(rt_inbox_preferences_put(a1.ib, "[1]", &txt), RT_EINVAL);
	assert_null(txt);
	/* muted now: a new task for alice notifies nobody */
	assert_int_equal(h_sql(&srv, "INSERT INTO tasks VALUES (4, 'Muted', 'alice')"), 0);
	pump_ms(all, 3, 500);
	assert_int_equal(a1.s.n_notes, 2);

	for (size_t i = 0; i < 3; i++)
		user_close(all[i]);
	assert_int_equal(atomic_load(&h_mem.live), 0);
	finish(&srv, rules);
}

static void on_send_reply(void *user, struct rt_client_channel *ch, uint64_t id, int rc,
			  const char *response)
{
	(void)ch;
	(void)id;
	struct seen *s = user;
	s->n_writes++;
	s->write_rc = rc;
	snprintf(s->write_resp, sizeof s->write_resp, "%s", response ? response : "");
}

/* Socket sends: the service role's reach the users, a user's are refused. */
static void test_socket_send(void **state)
{
	(void)state;
	struct h_server srv;
	char rules[96];
	start(&srv, rules, sizeof rules);
	struct user a, svc, b;
	user_open(&a, &srv, "alice", NULL);
	memset(&svc, 0, sizeof svc);
	svc.c = client_as(&srv, "service_role", NULL);
	memset(&b, 0, sizeof b);
	b.c = client_as(&srv, "authenticated", "bob");
	struct user *all[] = {&a, &svc, &b};
	struct rt_channel_options co = {
		.topic = "ops", .cb = {.on_write = on_send_reply}, .user = &svc.s};
	struct rt_client_channel *sch, *bch;
	assert_int_equal(rt_channel_join(svc.c, &co, &sch), 0);
	co.user = &b.s;
	assert_int_equal(rt_channel_join(b.c, &co, &bch), 0);
	struct want wj = {&a.s, 1, 0};
	assert_true(pump(all, 3, has_joins, &wj, 10000));

	/* held until joined, then sent: the answer names the new ids */
	uint64_t id = 0;
	assert_int_equal(rt_inbox_send(sch, "{\"users\":[\"alice\"],\"title\":\"Deploy at 5\","
					    "\"type\":\"warning\",\"key\":\"d1\"}",
				       &id),
			 0);
	assert_true(id > 0);
	struct want ww = {&svc.s, 1, 0};
	assert_true(pump(all, 3, has_writes, &ww, 10000));
	assert_int_equal(svc.s.write_rc, 0);
	json_t *r = json_loads(svc.s.write_resp, 0, NULL);
	assert_non_null(r);
	assert_int_equal(json_integer_value(json_object_get(r, "recipients")), 1);
	assert_int_equal(json_array_size(json_object_get(r, "ids")), 1);
	int64_t nid = (int64_t)json_integer_value(json_array_get(json_object_get(r, "ids"), 0));
	json_decref(r);
	struct want wn = {&a.s, 1, 1};
	assert_true(pump(all, 3, has_notes, &wn, 10000));
	assert_string_equal(a.s.last_title, "Deploy at 5");
	assert_int_equal(a.s.last_id, nid);
	assert_string_equal(a.s.last_rule, "");
	/* the same key again: nobody notified twice */
	assert_int_equal(rt_inbox_send(sch, "{\"users\":[\"alice\"],\"title\":\"Deploy at 5\","
					    "\"key\":\"d1\"}",
				       NULL),
			 0);
	ww.n = 2;
	assert_true(pump(all, 3, has_writes, &ww, 10000));
	assert_int_equal(svc.s.write_rc, 0);
	assert_non_null(strstr(svc.s.write_resp, "\"ids\":[]"));
	/* a bad body: RTS400 with the REST API's reason */
	assert_int_equal(rt_inbox_send(sch, "{\"user\":\"alice\"}", NULL), 0);
	ww.n = 3;
	assert_true(pump(all, 3, has_writes, &ww, 10000));
	assert_int_equal(svc.s.write_rc, RT_EPROTO);
	assert_non_null(strstr(svc.s.write_resp, "RTS400"));
	assert_non_null(strstr(svc.s.write_resp, "title"));
	/* a user: RTS403 */
	assert_int_equal(rt_inbox_send(bch, "{\"user\":\"alice\",\"title\":\"spoof\"}", NULL), 0);
	struct want wb = {&b.s, 1, 0};
	assert_true(pump(all, 3, has_writes, &wb, 10000));
	assert_int_equal(b.s.write_rc, RT_EPROTO);
	assert_non_null(strstr(b.s.write_resp, "RTS403"));
	pump_ms(all, 3, 300);
	assert_int_equal(a.s.n_notes, 1);
	/* arguments */
	assert_int_equal(rt_inbox_send(sch, "[1]", NULL), RT_EINVAL);
	assert_int_equal(rt_inbox_send(sch, "{", NULL), RT_EINVAL);
	assert_int_equal(rt_inbox_send(NULL, "{}", NULL), RT_EINVAL);

	rt_channel_leave(sch);
	rt_channel_leave(bch);
	user_close(&a);
	rt_client_free(svc.c);
	rt_client_free(b.c);
	assert_int_equal(atomic_load(&h_mem.live), 0);
	finish(&srv, rules);
}

/* Bad arguments, a refused join, the counts again after a rejoin, a dead server. */
static void test_errors(void **state)
{
	(void)state;
	struct h_server srv;
	char rules[96];
	start(&srv, rules, sizeof rules);
	struct rt_client *c = client_as(&srv, "authenticated", "alice");
	struct rt_inbox *ib = (struct rt_inbox *)1;
	struct rt_inbox_options o = {0};
	assert_int_equal(rt_inbox_open(c, &o, &ib), RT_EINVAL);
	assert_null(ib);
	o.user_id = "";
	assert_int_equal(rt_inbox_open(c, &o, &ib), RT_EINVAL);
	char big[200];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	o.user_id = big;
	assert_int_equal(rt_inbox_open(c, &o, &ib), RT_EINVAL);
	o.user_id = "a\x01";
	assert_int_equal(rt_inbox_open(c, &o, &ib), RT_EINVAL);
	o.user_id = "alice";
	o.rest_url = "ftp://x";
	assert_int_equal(rt_inbox_open(c, &o, &ib), RT_EINVAL);
	o.rest_url = NULL;
	rt_client_free(c);

	/* alice may not read bob's channel; her REST calls for bob are refused */
	struct user spy;
	user_open(&spy, &srv, "alice", "bob");
	struct user *one[] = {&spy};
	struct want we = {&spy.s, 1, 0};
	assert_true(pump(one, 1, has_errored, &we, 10000));
	assert_int_equal(spy.s.n_joined, 0);
	assert_int_equal(spy.s.n_states, 0);
	char *txt = NULL;
	assert_int_equal(rt_inbox_list(spy.ib, NULL, &txt), RT_EAUTH);
	json_t *err = parse(txt);
	assert_string_equal(json_string_value(json_object_get(err, "code")), "RTS403");
	json_decref(err);
	assert_int_equal(rt_inbox_mark(spy.ib, 0, RT_INBOX_READ, NULL), RT_EINVAL);
	assert_int_equal(rt_inbox_mark(spy.ib, 1, (enum rt_inbox_mark)9, NULL), RT_EINVAL);
	user_close(&spy);

	/* a restart: the rejoin brings the counts again */
	struct user a;
	user_open(&a, &srv, "alice", NULL);
	struct user *ua[] = {&a};
	struct want wj = {&a.s, 1, 0};
	assert_true(pump(ua, 1, has_joins, &wj, 10000));
	assert_int_equal(h_sql(&srv, "INSERT INTO tasks VALUES (1, 'Before', 'alice')"), 0);
	struct want wn = {&a.s, 1, 1};
	assert_true(pump(ua, 1, has_notes, &wn, 10000));
	assert_int_equal(h_server_stop(&srv), 0);
	/* the server is gone: REST fails without an answer */
	assert_int_equal(rt_inbox_count(a.ib, NULL, &txt), RT_EIO);
	assert_null(txt);
	assert_int_equal(h_server_start(&srv), 0);
	wj.n = 2;
	wj.unread = 1;
	assert_true(pump(ua, 1, has_joins, &wj, 15000));
	assert_int_equal(a.s.join_total, 1);
	/* a service-role client acts on a user's inbox with the same calls */
	struct rt_client *sc = client_as(&srv, "service_role", NULL);
	struct rt_inbox *sib;
	o.user_id = "alice";
	o.cb = (struct rt_inbox_callbacks){0};
	assert_int_equal(rt_inbox_open(sc, &o, &sib), 0);
	assert_int_equal(rt_inbox_open(sc, &o, &ib), RT_EEXISTS);
	struct rt_inbox_counts cn;
	assert_int_equal(rt_inbox_count(sib, &cn, NULL), 0);
	assert_int_equal(cn.unread, 1);
	rt_inbox_close(sib);
	rt_client_free(sc);
	user_close(&a);
	rt_inbox_close(NULL);
	assert_int_equal(atomic_load(&h_mem.live), 0);
	finish(&srv, rules);
}

int main(void)
{
	(void)h_server_signal;
	(void)h_server_kill;
	(void)h_count_jansson;
	(void)h_pump_for;
	(void)h_pump_until;
	(void)h_token;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_inbox),
		cmocka_unit_test(test_socket_send),
		cmocka_unit_test(test_errors),
	};
	int rc = cmocka_run_group_tests_name("notifications", tests, NULL, NULL);
	h_kill_all();
	return rc;
}
