/*
 * Fuzz target: notification rules and preferences (src/notify/rule.c), as
 * the rules file, the rules API and the preferences API hand them over.
 *
 * Input layout: byte 0 % 4 picks, the rest is
 *   0  a rule definition (JSON): rt_nrule_parse against an embedded store;
 *      a rule that compiles is applied to fixed changes (filter, templates
 *      rendered, recipients resolved, which runs its queries)
 *   1  a preferences object (JSON): rt_nprefs_parse, rt_nprefs_json, and
 *      rt_nprefs_decide at several times, categories, types and priorities
 *   2  a template (text): rt_tpl_parse against the table, rendered
 *   3  a filter (text): rt_nfilter_parse against the table, matched
 *
 * Checked: refusals say why; a compiled rule has its table, a name of 1 to
 * RT_NOTIFY_MAX_NAME bytes, type and priority in range, 1 to 16 recipient
 * specs; rendered text stays within its bound (cut on a UTF-8 boundary:
 * valid UTF-8 when the template is); resolved recipients are distinct valid user ids;
 * preferences re-read from their JSON form give the same JSON; a verdict
 * is one of three, and HOLD only for a non-urgent notification with a time
 * after now. The store is created once per process (a temporary directory,
 * removed at exit).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <unistr.h>

#include "common/buf.h"
#include "notify/notify_int.h"
#include "store/store.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS requests (id bigint PRIMARY KEY, title text, status text, "
	"priority integer, traveler_id text, watchers jsonb, hotel text, org_id bigint, "
	"amount double precision, done boolean);\n"
	"CREATE TABLE IF NOT EXISTS members (id bigint PRIMARY KEY, org_id bigint, user_id text);\n"
	"INSERT OR IGNORE INTO members (id, org_id, user_id) VALUES (1, 7, 'u1'), (2, 7, 'u2'), "
	"(3, 8, 'u3'), (4, 7, NULL), (5, 7, 'u1');\n";

static char dir[64];
static struct rt_store *store;
static const struct rt_store_table *table;
static json_t *new_row, *old_row;

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "notify_rule: cannot remove %s\n", dir);
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/rtsync-fuzz-notify-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(remove_dir);
	char path[128], err[512] = "";
	snprintf(path, sizeof path, "%s/db.sqlite", dir);
	if (rt_store_open_sqlite(path, schema, 1000, 3600000, &store, err, sizeof err)) {
		fprintf(stderr, "notify_rule: %s\n", err);
		abort();
	}
	table = rt_store_table(store, NULL, "requests");
	CHECK(table);
	new_row = json_pack("{s:i, s:s, s:s, s:i, s:s, s:[s,s,i], s:s, s:i, s:f, s:b}", "id", 1,
			    "title", "Trip \x01 \xc3\xa9t\xc3\xa9 {{new.x}}", "status", "approved",
			    "priority", 3, "traveler_id", "u9", "watchers", "u1", "u2", 5, "hotel",
			    "H&1=2", "org_id", 7, "amount", 2.5, "done", 1);
	old_row = json_pack("{s:i, s:s, s:s, s:n, s:n, s:n, s:n, s:i}", "id", 1, "title", "Trip",
			    "status", "pending", "priority", "traveler_id", "watchers", "hotel",
			    "org_id", 8);
	CHECK(new_row && old_row);
}

/* Rendered text: within max and, when the template's literals are (they
 * are when they come from JSON), valid UTF-8. */
static bool is_utf8_tpl;

static void check_render(const struct rt_tpl *tpl, const struct rt_tpl_env *env, size_t max)
{
	for (int url = 0; url < 2; url++) {
		struct rt_buf out;
		rt_buf_init(&out);
		rt_tpl_render(tpl, env, url, max, &out);
		CHECK(out.len <= max);
		CHECK(out.data && strlen(out.data) == out.len);
		if (is_utf8_tpl)
			CHECK(u8_check((const uint8_t *)out.data, out.len) == NULL);
		rt_buf_deinit(&out);
	}
}

static void fill_changes(struct rt_change chs[3])
{
	chs[0] = (struct rt_change){.pos = 1, .type = RT_CHANGE_INSERT, .table = table,
				    .record = new_row};
	chs[1] = (struct rt_change){.pos = 2, .type = RT_CHANGE_UPDATE, .table = table,
				    .record = new_row, .old_record = old_row};
	chs[2] = (struct rt_change){.pos = 3, .type = RT_CHANGE_DELETE, .table = table,
				    .old_record = old_row};
}

static void fuzz_rule(const char *text, size_t len)
{
	json_t *def = json_loadb(text, len, 0, NULL);
	if (!def)
		return;
	char err[1024] = "";
	struct rt_nrule *r = rt_nrule_parse(store, def, "hint", err, sizeof err);
	json_decref(def);
	if (!r) {
		CHECK(err[0]);
		return;
	}
	CHECK(r->t && r->name);
	CHECK(*r->name && strlen(r->name) <= RT_NOTIFY_MAX_NAME);
	CHECK(r->type >= 0 && r->type < RT_NTYPE_N && r->priority >= 0 && r->priority < RT_NPRIO_N);
	CHECK(r->n_rcpts >= 1 && r->n_rcpts <= 16);
	CHECK(r->category && strlen(r->category) <= RT_NOTIFY_MAX_NAME);
	CHECK(r->window_ms <= RT_NOTIFY_MAX_WINDOW_MS);
	if (r->t != table) {
		rt_nrule_free(r);
		return;
	}
	struct rt_change chs[3];
	fill_changes(chs);
	static const char *const events[] = {"INSERT", "UPDATE", "DELETE"};
	for (int i = 0; i < 3; i++) {
		if (!rt_nfilter_match(&r->filter, &chs[i]))
			continue;
		struct rt_tpl_env env = {chs[i].record, chs[i].old_record, "requests", events[i], 3};
		check_render(&r->title, &env, RT_NOTIFY_MAX_TITLE);
		check_render(&r->message, &env, RT_NOTIFY_MAX_MESSAGE);
		check_render(&r->link, &env, RT_NOTIFY_MAX_LINK);
		check_render(&r->group_key, &env, RT_NOTIFY_MAX_TITLE);
		check_render(&r->group_title, &env, RT_NOTIFY_MAX_TITLE);
		check_render(&r->group_message, &env, RT_NOTIFY_MAX_MESSAGE);
		json_t *users = json_array();
		rt_nrcpts_resolve(store, r->rcpts, r->n_rcpts, &env, users);
		CHECK(json_array_size(users) <= RT_NOTIFY_MAX_RECIPIENTS);
		for (size_t k = 0; k < json_array_size(users); k++) {
			const char *u = json_string_value(json_array_get(users, k));
			CHECK(u && rt_notify_valid_user(u));
			for (size_t j = 0; j < k; j++)
				CHECK(strcmp(u, json_string_value(json_array_get(users, j))));
		}
		json_decref(users);
	}
	rt_nrule_free(r);
}

static void fuzz_prefs(const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, 0, NULL);
	if (!j)
		return;
	struct rt_nprefs p;
	rt_nprefs_default(&p);
	char err[512] = "";
	int rc = rt_nprefs_parse(j, &p, err, sizeof err);
	json_decref(j);
	if (rc) {
		CHECK(err[0]);
		rt_nprefs_deinit(&p);
		return;
	}
	json_t *form = rt_nprefs_json(&p);
	CHECK(form);
	struct rt_nprefs q;
	rt_nprefs_default(&q);
	CHECK(rt_nprefs_parse(form, &q, err, sizeof err) == 0);
	json_t *again = rt_nprefs_json(&q);
	CHECK(json_equal(form, again));
	json_decref(again);
	json_decref(form);
	rt_nprefs_deinit(&q);
	static const int64_t times[] = {0, 1700000000000LL, 1700000000000LL + 13 * 3600000LL,
					86399999LL, -1, INT64_MAX / 2};
	static const char *const cats[] = {"", "requests", "a"};
	for (size_t t = 0; t < sizeof times / sizeof times[0]; t++)
		for (int type = 0; type < RT_NTYPE_N; type++)
			for (int prio = 0; prio < RT_NPRIO_N; prio++) {
				int64_t until = 0;
				unsigned chans = 0;
				enum rt_nverdict v = rt_nprefs_decide(&p, cats[(t + type) % 3], type,
								      prio, times[t], &until, &chans);
				CHECK(v == RT_NV_DELIVER || v == RT_NV_HOLD || v == RT_NV_DROP);
				if (v == RT_NV_HOLD)
					CHECK(prio != RT_NPRIO_URGENT && until > times[t]);
				CHECK(!(chans & ~(RT_NCHAN_LIVE | RT_NCHAN_INBOX)));
			}
	rt_nprefs_deinit(&p);
}

static void fuzz_template(const char *text)
{
	struct rt_tpl tpl;
	char err[512] = "";
	for (int has_count = 0; has_count < 2; has_count++) {
		if (rt_tpl_parse(text, table, has_count, &tpl, err, sizeof err)) {
			CHECK(err[0]);
			continue;
		}
		struct rt_change chs[3];
		fill_changes(chs);
		struct rt_tpl_env env = {new_row, old_row, "requests", "UPDATE", 12345678901LL};
		check_render(&tpl, &env, RT_NOTIFY_MAX_MESSAGE);
		check_render(&tpl, &env, 7);
		struct rt_tpl_env none = {0};
		check_render(&tpl, &none, RT_NOTIFY_MAX_TITLE);
		rt_tpl_deinit(&tpl);
	}
}

static void fuzz_filter(const char *text)
{
	struct rt_nfilter f;
	char err[512] = "";
	if (rt_nfilter_parse(text, table, &f, err, sizeof err)) {
		CHECK(err[0]);
		return;
	}
	struct rt_change chs[3];
	fill_changes(chs);
	for (int i = 0; i < 3; i++) {
		bool m = rt_nfilter_match(&f, &chs[i]);
		if (f.n_changed && chs[i].type != RT_CHANGE_UPDATE)
			CHECK(!m);
	}
	rt_nfilter_deinit(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!store)
		setup();
	if (size < 1)
		return 0;
	/* the text forms are C strings: up to the first NUL */
	char *text = malloc(size);
	CHECK(text);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	is_utf8_tpl = u8_check((const uint8_t *)text, strlen(text)) == NULL;
	switch (data[0] % 4) {
	case 0: fuzz_rule(text, size - 1); break;
	case 1: fuzz_prefs(text, size - 1); break;
	case 2: fuzz_template(text); break;
	default: fuzz_filter(text); break;
	}
	free(text);
	return 0;
}
