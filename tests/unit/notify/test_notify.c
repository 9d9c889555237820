/*
 * Notifications (src/notify): templates, the `changed` filter grammar,
 * preferences and quiet hours as pure functions; then the service over an
 * embedded store with a fake clock: a change fans out to exactly the users
 * its rule names, offline users find it in the inbox, the same changes
 * read again (a restart from an older saved position) notify nobody twice,
 * quiet hours hold and release, muted categories drop, a burst of 500
 * becomes one summary whose items expand, and read state changes the counts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <http_parser.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "notify/notify.h"
#include "notify/notify_int.h"
#include "store/store.h"

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS requests (id integer PRIMARY KEY, title text, status text,"
	" traveler_id text, org_id integer, watchers text);"
	"CREATE TABLE IF NOT EXISTS members (id integer PRIMARY KEY, org_id integer, user_id text);";

static const struct rt_store_table *table(struct rt_store *s, const char *name)
{
	const struct rt_store_table *t = rt_store_table(s, NULL, name);
	assert_non_null(t);
	return t;
}

/* ---- pure parts ---- */

static struct rt_store *open_store(char *dir, size_t cap)
{
	snprintf(dir, cap, "/tmp/rtsync-notify-XXXXXX");
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof path, "%s/db", dir);
	struct rt_store *s;
	char err[256];
	assert_int_equal(rt_store_open_sqlite(path, schema, 100000, 3600000, &s, err, sizeof err), 0);
	return s;
}

static void rm_dir(const char *dir)
{
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_templates(void **state)
{
	char dir[64];
	struct rt_store *s = open_store(dir, sizeof dir);
	const struct rt_store_table *t = table(s, "requests");
	struct rt_tpl tpl;
	char err[256];
	assert_int_equal(rt_tpl_parse("{{ new.title }} changed to {{new.status}} (was {{old.status}}) "
				      "on {{table}}/{{event}}",
				      t, false, &tpl, err, sizeof err),
			 0);
	json_t *nr = json_pack("{s:s,s:s,s:i}", "title", "Trip\nto\tRome", "status", "approved",
			       "id", 7);
	json_t *or = json_pack("{s:s}", "status", "pending");
	struct rt_tpl_env env = {nr, or, "requests", "UPDATE", 0};
	struct rt_buf b;
	rt_buf_init(&b);
	rt_tpl_render(&tpl, &env, false, 1000, &b);
	assert_string_equal(b.data, "Trip to Rome changed to approved (was pending) on requests/UPDATE");
	rt_tpl_deinit(&tpl);

	/* bounded, cut on a character boundary */
	assert_int_equal(rt_tpl_parse("ééééé{{new.id}}", t, false, &tpl, err, sizeof err), 0);
	rt_buf_reset(&b);
	rt_tpl_render(&tpl, &env, false, 5, &b);
	assert_string_equal(b.data, "éé");
	rt_tpl_deinit(&tpl);

	/* in a query string a value cannot add parameters */
	assert_int_equal(rt_tpl_parse("org_id=eq.{{new.title}}", t, false, &tpl, err, sizeof err), 0);
	json_object_set_new(nr, "title", json_string("1&status=eq.x"));
	rt_buf_reset(&b);
	rt_tpl_render(&tpl, &env, true, 1000, &b);
	assert_string_equal(b.data, "org_id=eq.1%26status%3Deq.x");
	rt_tpl_deinit(&tpl);

	assert_int_equal(rt_tpl_parse("{{new.nope}}", t, false, &tpl, err, sizeof err), -1);
	assert_non_null(strstr(err, "requests.nope does not exist"));
	assert_int_equal(rt_tpl_parse("{{count}}", t, false, &tpl, err, sizeof err), -1);
	assert_non_null(strstr(err, "unknown placeholder {{count}}"));
	assert_int_equal(rt_tpl_parse("{{count}} new", t, true, &tpl, err, sizeof err), 0);
	rt_tpl_deinit(&tpl);
	assert_int_equal(rt_tpl_parse("a {{new.title", t, false, &tpl, err, sizeof err), -1);
	assert_non_null(strstr(err, "unclosed"));
	char big[RT_NOTIFY_MAX_TEMPLATE + 2];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(rt_tpl_parse(big, t, false, &tpl, err, sizeof err), -1);
	json_decref(nr);
	json_decref(or);
	rt_buf_deinit(&b);
	rt_store_close(s);
	rm_dir(dir);
}

static struct rt_change change(const struct rt_store_table *t, enum rt_change_type type,
			       json_t *rec, json_t *old)
{
	return (struct rt_change){.pos = 1, .type = type, .table = t, .record = rec, .old_record = old};
}

static void test_changed_filter(void **state)
{
	char dir[64];
	struct rt_store *s = open_store(dir, sizeof dir);
	const struct rt_store_table *t = table(s, "requests");
	json_t *oldr = json_pack("{s:i,s:s,s:i}", "id", 1, "status", "pending", "org_id", 7);
	json_t *newr = json_pack("{s:i,s:s,s:i}", "id", 1, "status", "approved", "org_id", 7);
	json_t *same = json_pack("{s:i,s:s,s:i}", "id", 1, "status", "pending", "org_id", 7);
	struct rt_change up = change(t, RT_CHANGE_UPDATE, newr, oldr);
	struct rt_change noop = change(t, RT_CHANGE_UPDATE, same, oldr);
	struct rt_change ins = change(t, RT_CHANGE_INSERT, newr, NULL);
	static const struct {
		const char *f;
		bool up, noop, ins;
	} cases[] = {
		{"", true, true, true},
		{"status=changed", true, false, false},
		{"status=changed.to.approved", true, false, false},
		{"status=changed.to.rejected", false, false, false},
		{"status=changed.from.pending", true, false, false},
		{"status=changed.from.pending.to.approved", true, false, false},
		{"status=changed.from.draft.to.approved", false, false, false},
		{"status=changed&org_id=eq.7", true, false, false},
		{"status=changed&org_id=gt.7", false, false, false},
		{"org_id=changed", false, false, false},
		{"status=eq.approved", true, false, true},
		{"or=(status.eq.pending,org_id.eq.8)", false, true, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct rt_nfilter f;
		char err[256];
		assert_int_equal(rt_nfilter_parse(cases[i].f, t, &f, err, sizeof err), 0);
		assert_int_equal(rt_nfilter_match(&f, &up), cases[i].up);
		assert_int_equal(rt_nfilter_match(&f, &noop), cases[i].noop);
		assert_int_equal(rt_nfilter_match(&f, &ins), cases[i].ins);
		rt_nfilter_deinit(&f);
	}
	static const char *const bad[] = {"status=changed.sideways", "nope=changed",
					  "nope=eq.1", "status=eqx.1", "order=id", "limit=3",
					  /* malformed escapes in a key or a value */
					  "st%zus=changed", "status=changed.to.%", "a%00=eq.1"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct rt_nfilter f;
		char err[256] = "";
		assert_int_equal(rt_nfilter_parse(bad[i], t, &f, err, sizeof err), -1);
		assert_true(strlen(err) > 0);
	}
	json_decref(oldr);
	json_decref(newr);
	json_decref(same);
	rt_store_close(s);
	rm_dir(dir);
}

static void test_prefs(void **state)
{
	struct rt_nprefs p;
	char err[256];
	json_t *j = json_loads("{\"muted_categories\":[\"promo\"],\"min_priority\":\"normal\","
			       "\"quiet_hours\":{\"start\":\"22:00\",\"end\":\"07:00\","
			       "\"utc_offset\":\"+02:00\"},\"channels\":{\"info\":[\"inbox\"],"
			       "\"error\":[]}}",
			       0, NULL);
	assert_int_equal(rt_nprefs_parse(j, &p, err, sizeof err), 0);
	json_decref(j);
	int64_t until;
	unsigned ch;
	const int64_t day = 86400000, h = 3600000;
	int64_t noon = 20000 * day + 10 * h; /* 12:00 at +02:00 */
	assert_int_equal(rt_nprefs_decide(&p, "promo", RT_NTYPE_INFO, RT_NPRIO_HIGH, noon, &until, &ch),
			 RT_NV_DROP);
	assert_int_equal(rt_nprefs_decide(&p, "x", RT_NTYPE_INFO, RT_NPRIO_LOW, noon, &until, &ch),
			 RT_NV_DROP);
	assert_int_equal(rt_nprefs_decide(&p, "x", RT_NTYPE_ERROR, RT_NPRIO_HIGH, noon, &until, &ch),
			 RT_NV_DROP); /* no channel for errors */
	assert_int_equal(rt_nprefs_decide(&p, "x", RT_NTYPE_INFO, RT_NPRIO_NORMAL, noon, &until, &ch),
			 RT_NV_DELIVER);
	assert_int_equal(ch, RT_NCHAN_INBOX);
	/* 23:30 local: held until 07:00 local (05:00 UTC the next day) */
	int64_t late = 20000 * day + 21 * h + 30 * 60000;
	assert_int_equal(rt_nprefs_decide(&p, "x", RT_NTYPE_SUCCESS, RT_NPRIO_NORMAL, late, &until,
					  &ch),
			 RT_NV_HOLD);
	assert_int_equal(until, 20001 * day + 5 * h);
	/* 06:59 local: held one more minute; 07:00 local: delivered */
	int64_t early = 20001 * day + 4 * h + 59 * 60000;
	assert_int_equal(rt_nprefs_decide(&p, "x", RT_NTYPE_SUCCESS, RT_NPRIO_NORMAL, early, &until,
					  &ch),
			 RT_NV_HOLD);
	assert_int_equal(until, 20001 * day + 5 * h);
	assert_int_equal(rt_nprefs_decide(&p, "x", RT_NTYPE_SUCCESS, RT_NPRIO_NORMAL, until, &until,
					  &ch),
			 RT_NV_DELIVER);
	/* urgent is never held */
	assert_int_equal(rt_nprefs_decide(&p, "x", RT_NTYPE_SUCCESS, RT_NPRIO_URGENT, late, &until,
					  &ch),
			 RT_NV_DELIVER);
	json_t *back = rt_nprefs_json(&p);
	assert_string_equal(json_string_value(json_object_get(json_object_get(back, "quiet_hours"),
							      "utc_offset")),
			    "+02:00");
	json_decref(back);
	rt_nprefs_deinit(&p);
	static const char *const bad[] = {
		"{\"min_priority\":\"huge\"}", "{\"quiet_hours\":{\"start\":\"25:00\",\"end\":\"1:00\"}}",
		"{\"channels\":{\"info\":[\"sms\"]}}", "{\"colour\":1}", "[]",
		"{\"quiet_hours\":{\"start\":\"22:00\",\"end\":\"07:00\",\"utc_offset\":\"+99:00\"}}"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
		assert_int_equal(rt_nprefs_parse(j, &p, err, sizeof err), -1);
		rt_nprefs_deinit(&p);
		json_decref(j);
	}
}

/* ---- the service ---- */

static int64_t fake_now = 20000LL * 86400000 + 12 * 3600000;
static int64_t now_ms(void)
{
	return fake_now;
}

static const char rules_json[] =
	"{\"rules\":["
	"{\"name\":\"status\",\"table\":\"requests\",\"events\":\"UPDATE\","
	" \"filter\":\"status=changed.to.approved\",\"recipients\":[{\"column\":\"traveler_id\"},"
	" {\"column\":\"watchers\"}],\"title\":\"{{new.title}} is {{new.status}}\","
	" \"type\":\"success\",\"category\":\"requests\"},"
	"{\"name\":\"org\",\"table\":\"requests\",\"events\":[\"INSERT\"],\"filter\":\"title=neq.burst\","
	" \"recipients\":{\"query\":{\"table\":\"members\",\"select\":\"user_id\","
	" \"filter\":\"org_id=eq.{{new.org_id}}\"}},\"title\":\"new {{new.title}}\","
	" \"category\":\"org\"},"
	"{\"name\":\"burst\",\"table\":\"requests\",\"events\":[\"INSERT\"],\"filter\":\"title=eq.burst\","
	" \"recipients\":{\"users\":[\"carol\"]},\"title\":\"booking {{new.id}}\","
	" \"group\":{\"window_ms\":60000,\"key\":\"{{new.org_id}}\","
	" \"title\":\"{{count}} new bookings at {{new.org_id}}\"}}"
	"]}";

struct fx {
	char dir[64];
	char rules[128];
	char db[128];
	struct rt_store *s;
	struct rt_notify *n;
	uint64_t fed; /* the position fed to the service so far */
};

static void open_notify(struct fx *f)
{
	struct rt_notify_config cfg = {.db_path = f->db, .rules_path = f->rules, .now_ms = now_ms};
	char err[512];
	int rc = rt_notify_new(&cfg, f->s, NULL, &f->n, err, sizeof err);
	if (rc)
		fail_msg("rt_notify_new: %s", err);
}

static void fx_open(struct fx *f)
{
	memset(f, 0, sizeof *f);
	f->s = open_store(f->dir, sizeof f->dir);
	snprintf(f->db, sizeof f->db, "%s/db", f->dir);
	snprintf(f->rules, sizeof f->rules, "%s/rules.json", f->dir);
	FILE *fp = fopen(f->rules, "w");
	assert_non_null(fp);
	fputs(rules_json, fp);
	fclose(fp);
	open_notify(f);
	f->fed = rt_store_last_pos(f->s);
}

static void fx_close(struct fx *f)
{
	rt_notify_free(f->n);
	rt_store_close(f->s);
	rm_dir(f->dir);
}

static void write_rows(struct fx *f, enum rt_write_kind kind, const char *tbl, const char *rows,
		       const char *where)
{
	struct rt_query q;
	char err[256];
	assert_int_equal(rt_query_parse(where, where ? strlen(where) : 0, &q, err, sizeof err), 0);
	json_t *r = json_loads(rows, 0, NULL);
	assert_non_null(r);
	struct rt_write w = {.kind = kind, .table = table(f->s, tbl), .rows = r, .where = &q};
	json_t *out = NULL;
	struct rt_store_error e;
	if (rt_store_write(f->s, &w, &out, &e))
		fail_msg("write: %s", e.message);
	json_decref(out);
	json_decref(r);
	rt_query_deinit(&q);
}

/* Feeds the service what the log holds, as the change thread would. */
static void feed(struct fx *f)
{
	for (;;) {
		struct rt_change *chs;
		size_t n;
		struct rt_store_scan scan;
		assert_int_equal(rt_store_changes_after(f->s, f->fed, 512, &chs, &n, NULL, &scan), 0);
		uint64_t after = f->fed;
		f->fed = scan.last_pos;
		rt_notify_apply(f->n, chs, n, after, scan.last_pos);
		rt_store_changes_free(chs, n);
		if (scan.n_rows < 512)
			break;
	}
	assert_int_equal(rt_notify_position(f->n), f->fed);
}

static json_t *call(struct fx *f, const char *role, const char *sub, int method, const char *path,
		    const char *query, const char *body, int want)
{
	struct rt_notify_caller who = {role, sub};
	json_t *out = NULL;
	int st = rt_notify_handle(f->n, &who, method, path, query, body, body ? strlen(body) : 0,
				  &out);
	if (st != want) {
		char *t = out ? json_dumps(out, 0) : NULL;
		fail_msg("%s %s: %d, wanted %d: %s", sub ? sub : role, path, st, want, t ? t : "");
	}
	return out;
}

static json_t *inbox(struct fx *f, const char *user, const char *query)
{
	return call(f, "authenticated", user, HTTP_GET, "inbox", query, NULL, 200);
}

static long long unread(struct fx *f, const char *user)
{
	json_t *c = call(f, "authenticated", user, HTTP_GET, "inbox/count", NULL, NULL, 200);
	long long n = json_integer_value(json_object_get(c, "unread"));
	json_decref(c);
	return n;
}

static size_t n_items(json_t *page)
{
	return json_array_size(json_object_get(page, "items"));
}

static void test_fanout(void **state)
{
	struct fx f;
	fx_open(&f);
	write_rows(&f, RT_WRITE_INSERT, "members",
		   "[{\"id\":1,\"org_id\":7,\"user_id\":\"ann\"},{\"id\":2,\"org_id\":7,\"user_id\":"
		   "\"ben\"},{\"id\":3,\"org_id\":8,\"user_id\":\"cid\"}]",
		   NULL);
	write_rows(&f, RT_WRITE_INSERT, "requests",
		   "[{\"id\":1,\"title\":\"Rome\",\"status\":\"pending\",\"traveler_id\":\"tom\","
		   "\"org_id\":7,\"watchers\":\"[\\\"wes\\\",\\\"tom\\\"]\"}]",
		   NULL);
	feed(&f);
	/* the org's members, nobody else */
	json_t *p = inbox(&f, "ann", NULL);
	assert_int_equal(n_items(p), 1);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(p, "items"), 0), "title")),
			    "new Rome");
	json_decref(p);
	assert_int_equal(unread(&f, "ben"), 1);
	assert_int_equal(unread(&f, "cid"), 0);
	assert_int_equal(unread(&f, "tom"), 0);

	write_rows(&f, RT_WRITE_UPDATE, "requests", "{\"status\":\"held\"}", "id=eq.1");
	write_rows(&f, RT_WRITE_UPDATE, "requests", "{\"status\":\"approved\"}", "id=eq.1");
	write_rows(&f, RT_WRITE_UPDATE, "requests", "{\"title\":\"Rome!\"}", "id=eq.1");
	feed(&f);
	/* traveler and watchers (tom once), on the change to approved only */
	assert_int_equal(unread(&f, "tom"), 1);
	assert_int_equal(unread(&f, "wes"), 1);
	assert_int_equal(unread(&f, "ann"), 1);
	p = inbox(&f, "wes", NULL);
	json_t *it = json_array_get(json_object_get(p, "items"), 0);
	assert_string_equal(json_string_value(json_object_get(it, "title")), "Rome is approved");
	assert_string_equal(json_string_value(json_object_get(it, "type")), "success");
	long long id = json_integer_value(json_object_get(it, "id"));
	json_decref(p);

	/* nobody sees another's notification; the service role may */
	char path[64];
	snprintf(path, sizeof path, "inbox/%lld", id);
	json_decref(call(&f, "authenticated", "tom", HTTP_GET, path, NULL, NULL, 404));
	json_decref(call(&f, "authenticated", "tom", HTTP_GET, "inbox", "user_id=wes", NULL, 403));
	json_decref(call(&f, "service_role", NULL, HTTP_GET, "inbox", "user_id=wes", NULL, 200));
	json_decref(call(&f, "anon", NULL, HTTP_GET, "inbox", NULL, NULL, 401));

	/* read, unread, read-all, archive, delete */
	snprintf(path, sizeof path, "inbox/%lld/read", id);
	json_decref(call(&f, "authenticated", "wes", HTTP_POST, path, NULL, NULL, 200));
	assert_int_equal(unread(&f, "wes"), 0);
	snprintf(path, sizeof path, "inbox/%lld/unread", id);
	json_decref(call(&f, "authenticated", "wes", HTTP_POST, path, NULL, NULL, 200));
	assert_int_equal(unread(&f, "wes"), 1);
	json_decref(call(&f, "authenticated", "wes", HTTP_POST, "inbox/read-all", NULL, NULL, 200));
	assert_int_equal(unread(&f, "wes"), 0);
	snprintf(path, sizeof path, "inbox/%lld/archive", id);
	json_decref(call(&f, "authenticated", "wes", HTTP_POST, path, NULL, NULL, 200));
	p = inbox(&f, "wes", NULL);
	assert_int_equal(n_items(p), 0);
	json_decref(p);
	p = inbox(&f, "wes", "archived=true");
	assert_int_equal(n_items(p), 1);
	json_decref(p);
	snprintf(path, sizeof path, "inbox/%lld", id);
	json_decref(call(&f, "authenticated", "wes", HTTP_DELETE, path, NULL, NULL, 204));
	json_decref(call(&f, "authenticated", "wes", HTTP_DELETE, path, NULL, NULL, 404));
	fx_close(&f);
}

static void test_no_loss_no_repeat(void **state)
{
	struct fx f;
	fx_open(&f);
	write_rows(&f, RT_WRITE_INSERT, "members", "[{\"id\":1,\"org_id\":7,\"user_id\":\"ann\"}]",
		   NULL);
	uint64_t start = rt_store_last_pos(f.s);
	for (int i = 0; i < 20; i++) {
		char row[160];
		snprintf(row, sizeof row, "[{\"id\":%d,\"title\":\"r%d\",\"org_id\":7}]", i + 1, i);
		write_rows(&f, RT_WRITE_INSERT, "requests", row, NULL);
	}
	/* a restart before the change thread read anything: the service catches up
	 * from its saved position on its first tick */
	rt_notify_free(f.n);
	open_notify(&f);
	rt_notify_tick(f.n, rt_store_last_pos(f.s));
	assert_int_equal(unread(&f, "ann"), 20);
	/* the same changes read again (a saved position older than what was
	 * written, as after a crash between commits): nobody is notified twice */
	rt_notify_free(f.n);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f.db, &db), SQLITE_OK);
	char sql[128];
	snprintf(sql, sizeof sql, "UPDATE _rtsync_notify_state SET v = %llu WHERE k = 'position'",
		 (unsigned long long)start);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	open_notify(&f);
	assert_int_equal(rt_notify_position(f.n), start);
	rt_notify_tick(f.n, rt_store_last_pos(f.s));
	assert_int_equal(rt_notify_position(f.n), rt_store_last_pos(f.s));
	assert_int_equal(unread(&f, "ann"), 20);
	json_t *p = inbox(&f, "ann", "limit=200");
	assert_int_equal(n_items(p), 20);
	json_decref(p);
	fx_close(&f);
}

/* A batch whose commit fails (the disk full, say) is read again, not skipped: the cursor
 * goes back to the last commit and the next tick writes the notifications. */
static void test_failed_commit_is_retried(void **state)
{
	struct fx f;
	fx_open(&f);
	write_rows(&f, RT_WRITE_INSERT, "members", "[{\"id\":1,\"org_id\":7,\"user_id\":\"ann\"}]",
		   NULL);
	feed(&f);
	/* the cursor cannot be written: the batch's transaction fails at its end */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f.db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TRIGGER chaos_i BEFORE INSERT ON _rtsync_notify_state "
				      "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
				      "CREATE TRIGGER chaos_u BEFORE UPDATE ON _rtsync_notify_state "
				      "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	uint64_t before = rt_notify_position(f.n);
	for (int i = 0; i < 3; i++) {
		char row[160];
		snprintf(row, sizeof row, "[{\"id\":%d,\"title\":\"r%d\",\"org_id\":7}]", i + 1, i);
		write_rows(&f, RT_WRITE_INSERT, "requests", row, NULL);
	}
	struct rt_change *chs;
	size_t n;
	struct rt_store_scan scan;
	assert_int_equal(rt_store_changes_after(f.s, f.fed, 512, &chs, &n, NULL, &scan), 0);
	assert_int_equal(n, 3);
	rt_notify_apply(f.n, chs, n, f.fed, scan.last_pos);
	rt_store_changes_free(chs, n);
	assert_int_equal(unread(&f, "ann"), 0);
	assert_true(rt_notify_position(f.n) <= before); /* back at the last saved cursor */
	/* the disk has room again: the next tick reads the changes again */
	assert_int_equal(sqlite3_exec(db, "DROP TRIGGER chaos_i; DROP TRIGGER chaos_u", NULL, NULL,
				      NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	rt_notify_tick(f.n, scan.last_pos);
	assert_int_equal(rt_notify_position(f.n), scan.last_pos);
	assert_int_equal(unread(&f, "ann"), 3);
	fx_close(&f);
}

static void test_prefs_and_quiet_hours(void **state)
{
	struct fx f;
	fx_open(&f);
	write_rows(&f, RT_WRITE_INSERT, "members",
		   "[{\"id\":1,\"org_id\":7,\"user_id\":\"ann\"},{\"id\":2,\"org_id\":7,\"user_id\":"
		   "\"ben\"},{\"id\":3,\"org_id\":7,\"user_id\":\"cid\"}]",
		   NULL);
	feed(&f);
	/* ann: quiet from 11:00 to 13:00 UTC (it is 12:00); ben mutes org */
	json_decref(call(&f, "authenticated", "ann", HTTP_PUT, "preferences", NULL,
			 "{\"quiet_hours\":{\"start\":\"11:00\",\"end\":\"13:00\"}}", 200));
	json_decref(call(&f, "authenticated", "ben", HTTP_PUT, "preferences", NULL,
			 "{\"muted_categories\":[\"org\"]}", 200));
	json_decref(call(&f, "authenticated", "ben", HTTP_PUT, "preferences", NULL,
			 "{\"min_priority\":\"loud\"}", 400));
	json_t *pr = call(&f, "authenticated", "ben", HTTP_GET, "preferences", NULL, NULL, 200);
	assert_string_equal(json_string_value(json_array_get(json_object_get(pr, "muted_categories"),
							     0)),
			    "org");
	json_decref(pr);
	write_rows(&f, RT_WRITE_INSERT, "requests", "[{\"id\":1,\"title\":\"Rome\",\"org_id\":7}]",
		   NULL);
	feed(&f);
	assert_int_equal(unread(&f, "cid"), 1);
	assert_int_equal(unread(&f, "ben"), 0); /* dropped */
	assert_int_equal(unread(&f, "ann"), 0); /* held */
	json_t *c = call(&f, "authenticated", "ann", HTTP_GET, "inbox/count", NULL, NULL, 200);
	assert_int_equal(json_integer_value(json_object_get(c, "held")), 1);
	json_decref(c);
	uint64_t written, pushed, held;
	rt_notify_stats(f.n, &written, &pushed, &held);
	assert_int_equal(held, 1);
	/* the quiet hours end: released */
	fake_now += 3600000;
	rt_notify_tick(f.n, rt_store_last_pos(f.s));
	usleep(600 * 1000); /* the release runs at most every 500 ms */
	rt_notify_tick(f.n, rt_store_last_pos(f.s));
	assert_int_equal(unread(&f, "ann"), 1);
	rt_notify_stats(f.n, &written, &pushed, &held);
	assert_int_equal(held, 0);
	fake_now -= 3600000;
	/* direct sends obey preferences too */
	json_t *r = call(&f, "service_role", NULL, HTTP_POST, "send", NULL,
			 "{\"users\":[\"ben\",\"cid\"],\"title\":\"hi\",\"category\":\"org\"}", 201);
	assert_int_equal(json_array_size(json_object_get(r, "ids")), 1);
	json_decref(r);
	json_decref(call(&f, "authenticated", "ben", HTTP_POST, "send", NULL,
			 "{\"users\":[\"ben\"],\"title\":\"hi\"}", 403));
	json_decref(call(&f, "service_role", NULL, HTTP_POST, "send", NULL,
			 "{\"users\":[\"ben\"]}", 400));
	json_decref(call(&f, "service_role", NULL, HTTP_POST, "send", NULL,
			 "{\"users\":[\"\"],\"title\":\"x\"}", 400));
	/* a key makes a repeated send a no-op */
	r = call(&f, "service_role", NULL, HTTP_POST, "send", NULL,
		 "{\"user\":\"cid\",\"title\":\"once\",\"key\":\"k1\"}", 201);
	assert_int_equal(json_array_size(json_object_get(r, "ids")), 1);
	json_decref(r);
	r = call(&f, "service_role", NULL, HTTP_POST, "send", NULL,
		 "{\"user\":\"cid\",\"title\":\"once\",\"key\":\"k1\"}", 201);
	assert_int_equal(json_array_size(json_object_get(r, "ids")), 0);
	json_decref(r);
	assert_int_equal(unread(&f, "cid"), 3);
	fx_close(&f);
}

static void test_burst_summary(void **state)
{
	struct fx f;
	fx_open(&f);
	struct rt_buf rows;
	rt_buf_init(&rows);
	rt_buf_append_str(&rows, "[");
	for (int i = 0; i < 500; i++)
		rt_buf_printf(&rows, "%s{\"id\":%d,\"title\":\"burst\",\"org_id\":9}", i ? "," : "",
			      i + 1);
	rt_buf_append_str(&rows, "]");
	write_rows(&f, RT_WRITE_INSERT, "requests", rows.data, NULL);
	rt_buf_deinit(&rows);
	feed(&f);
	json_t *p = inbox(&f, "carol", NULL);
	assert_int_equal(n_items(p), 1);
	json_t *s = json_array_get(json_object_get(p, "items"), 0);
	assert_true(json_is_true(json_object_get(s, "summary")));
	assert_int_equal(json_integer_value(json_object_get(s, "count")), 500);
	assert_string_equal(json_string_value(json_object_get(s, "title")), "500 new bookings at 9");
	assert_int_equal(json_integer_value(json_object_get(p, "unread")), 1);
	char path[64];
	snprintf(path, sizeof path, "inbox/%lld/items",
		 (long long)json_integer_value(json_object_get(s, "id")));
	json_decref(p);
	/* expandable to the items, newest first, in pages */
	size_t total = 0;
	long long before = 0, last = 0;
	for (;;) {
		char q[64];
		snprintf(q, sizeof q, "limit=200%s%lld", before ? "&before=" : "&x=", before);
		p = call(&f, "authenticated", "carol", HTTP_GET, path, q, NULL, 200);
		json_t *items = json_object_get(p, "items");
		for (size_t i = 0; i < json_array_size(items); i++) {
			long long id = json_integer_value(json_object_get(json_array_get(items, i), "id"));
			assert_true(!last || id < last);
			last = id;
		}
		total += json_array_size(items);
		json_t *next = json_object_get(p, "next_before");
		before = json_is_null(next) ? 0 : json_integer_value(next);
		json_decref(p);
		if (!before)
			break;
	}
	assert_int_equal(total, 500);
	/* past the window, a new one starts */
	fake_now += 120000;
	write_rows(&f, RT_WRITE_INSERT, "requests", "[{\"id\":1000,\"title\":\"burst\",\"org_id\":9}]",
		   NULL);
	feed(&f);
	p = inbox(&f, "carol", NULL);
	assert_int_equal(n_items(p), 2);
	assert_false(json_is_true(json_object_get(json_array_get(json_object_get(p, "items"), 0),
						  "summary")));
	json_decref(p);
	fake_now -= 120000;
	fx_close(&f);
}

static void test_rules_api(void **state)
{
	struct fx f;
	fx_open(&f);
	json_t *l = call(&f, "service_role", NULL, HTTP_GET, "rules", NULL, NULL, 200);
	assert_int_equal(json_array_size(json_object_get(l, "rules")), 3);
	json_decref(l);
	json_decref(call(&f, "authenticated", "x", HTTP_GET, "rules", NULL, NULL, 403));
	const char *rule = "{\"table\":\"requests\",\"recipients\":{\"column\":\"traveler_id\"},"
			   "\"title\":\"{{event}} {{new.title}}\",\"events\":\"DELETE\"}";
	json_decref(call(&f, "service_role", NULL, HTTP_PUT, "rules/gone", NULL, rule, 201));
	json_decref(call(&f, "service_role", NULL, HTTP_PUT, "rules/gone", NULL, rule, 200));
	json_decref(call(&f, "service_role", NULL, HTTP_PUT, "rules/status", NULL, rule, 409));
	json_decref(call(&f, "service_role", NULL, HTTP_PUT, "rules/bad", NULL,
			 "{\"table\":\"nope\",\"title\":\"x\",\"recipients\":{\"users\":[\"a\"]}}",
			 400));
	json_decref(call(&f, "service_role", NULL, HTTP_PUT, "rules/bad", NULL,
			 "{\"table\":\"requests\",\"title\":\"{{new.x}}\",\"recipients\":{\"users\":"
			 "[\"a\"]}}",
			 400));
	write_rows(&f, RT_WRITE_INSERT, "requests",
		   "[{\"id\":5,\"title\":\"Oslo\",\"traveler_id\":\"tia\",\"org_id\":1}]", NULL);
	write_rows(&f, RT_WRITE_DELETE, "requests", "[]", "id=eq.5");
	feed(&f);
	json_t *p = inbox(&f, "tia", NULL);
	assert_int_equal(n_items(p), 1);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(p, "items"), 0), "title")),
			    "DELETE ");
	json_decref(p);
	json_decref(call(&f, "service_role", NULL, HTTP_DELETE, "rules/gone", NULL, NULL, 204));
	json_decref(call(&f, "service_role", NULL, HTTP_DELETE, "rules/gone", NULL, NULL, 404));
	json_decref(call(&f, "service_role", NULL, HTTP_DELETE, "rules/status", NULL, NULL, 409));
	json_decref(call(&f, "service_role", NULL, HTTP_POST, "rules/reload", NULL, NULL, 200));
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_changed_filter),
		cmocka_unit_test(test_prefs),
		cmocka_unit_test(test_fanout),
		cmocka_unit_test(test_no_loss_no_repeat),
		cmocka_unit_test(test_failed_commit_is_retried),
		cmocka_unit_test(test_prefs_and_quiet_hours),
		cmocka_unit_test(test_burst_summary),
		cmocka_unit_test(test_rules_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
