/*
 * Feature flags seen from librtsync (docs/flags.md): the join reply's flags
 * reach on_flags and rt_channel_flags()/rt_channel_flag(); the server's flags
 * file read again on SIGHUP changes them on the live channel (on_flags
 * again, on_system for the feature switched off); postgres_changes stop
 * while off and the changes made meanwhile arrive, in order, once it is on
 * again; a variant is the same on another connection of the same user.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

/* harness helpers this program has no use for */
static void *const unused_helpers[] __attribute__((unused)) = {
	(void *)h_count_jansson, (void *)h_token, (void *)h_server_kill};

struct f_ctx {
	bool joined;
	int n_flags;
	char flags[512];
	int n_changes;
	long ids[16];
	int n_pg_off, n_pg_on;
};

static void on_status(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st)
{
	struct f_ctx *t = user;
	if (st->state == RT_CHANNEL_JOINED)
		t->joined = true;
}

static void on_change(void *user, struct rt_client_channel *ch, const struct rt_client_change *c)
{
	struct f_ctx *t = user;
	json_t *rec = json_loads(c->record ? c->record : "{}", 0, NULL);
	if (t->n_changes < 16)
		t->ids[t->n_changes] = (long)json_integer_value(json_object_get(rec, "id"));
	t->n_changes++;
	json_decref(rec);
}

static void on_system(void *user, struct rt_client_channel *ch, const struct rt_system_event *s)
{
	struct f_ctx *t = user;
	if (!s->extension || strcmp(s->extension, "postgres_changes") || !s->status ||
	    !strstr(s->message ? s->message : "", "feature flag"))
		return;
	if (!strcmp(s->status, "error"))
		t->n_pg_off++;
	else
		t->n_pg_on++;
}

static void on_flags(void *user, struct rt_client_channel *ch, const char *flags)
{
	struct f_ctx *t = user;
	t->n_flags++;
	snprintf(t->flags, sizeof t->flags, "%s", flags);
	/* the accessor already answers with the new flags */
	char *now = NULL;
	assert_int_equal(rt_channel_flags(ch, &now), 0);
	assert_string_equal(now, flags);
	free(now);
}

static struct rt_client_channel *join(struct rt_client *c, struct f_ctx *t, const char *topic)
{
	static const struct rt_change_filter todos = {"INSERT", "public", "todos", NULL};
	struct rt_channel_options co = {
		.topic = topic,
		.changes = &todos,
		.n_changes = 1,
		.cb = {.on_status = on_status, .on_change = on_change, .on_system = on_system,
		       .on_flags = on_flags},
		.user = t,
	};
	struct rt_client_channel *ch = NULL;
	assert_int_equal(rt_channel_join(c, &co, &ch), 0);
	return ch;
}

static struct rt_client *new_client(const struct h_server *s, const char *key)
{
	struct rt_client_options o = {.url = s->url, .apikey = key};
	struct rt_client *c = NULL;
	assert_int_equal(rt_client_new(&o, &c), 0);
	assert_int_equal(rt_client_connect(c), 0);
	return c;
}

static char flags_path[64];

static void write_file(const char *path, const char *doc)
{
	char tmp[80];
	snprintf(tmp, sizeof tmp, "%s.new", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(doc, f);
	fclose(f);
	assert_int_equal(rename(tmp, path), 0);
}

/* Writes the server's flags file and has it read again. */
static void set_flags(struct h_server *s, const char *doc)
{
	write_file(flags_path, doc);
	h_server_signal(s, SIGHUP);
}

static bool pump_until_n(struct rt_client *c, const int *n, int want, int ms)
{
	int64_t end = h_now_ms() + ms;
	while (*n < want && h_now_ms() < end)
		rt_client_run(c, 20);
	return *n >= want;
}

static void test_flags(void **state)
{
	snprintf(flags_path, sizeof flags_path, "/tmp/rtsync-flags-%d.json", (int)getpid());
	write_file(flags_path, "{\"flags\":{\"banner\":true}}");
	struct h_server s = {.args = {"--flags", flags_path, NULL}};
	assert_int_equal(h_server_start(&s), 0);
	const char *key = h_token_as("authenticated", "flag-user", 3600);
	struct f_ctx t = {0};
	struct rt_client *c = new_client(&s, key);
	struct rt_client_channel *ch = join(c, &t, "flags-room");
	char *js = NULL;
	assert_int_equal(rt_channel_flags(ch, &js), RT_ENOTFOUND); /* not joined yet */
	assert_null(js);
	assert_true(h_pump_until(c, &t.joined, 5000));
	assert_int_equal(t.n_flags, 1); /* the join reply's, before JOINED */
	assert_string_equal(t.flags, "{\"banner\":true}");
	assert_int_equal(rt_channel_flag(ch, "banner", NULL, 0), 1);
	assert_int_equal(rt_channel_flag(ch, "checkout", NULL, 0), RT_ENOTFOUND);

	assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (1,'one')"), 0);
	assert_true(pump_until_n(c, &t.n_changes, 1, 3000));

	/* off, through the file and SIGHUP: on_flags and the system message */
	set_flags(&s, "{\"flags\":{\"banner\":true,\"checkout\":{\"variants\":{\"a\":1,\"b\":1}},"
		      "\"postgres_changes\":{\"enabled\":false}}}");
	assert_true(pump_until_n(c, &t.n_flags, 2, 3000));
	assert_true(pump_until_n(c, &t.n_pg_off, 1, 2000));
	char variant[8];
	assert_int_equal(rt_channel_flag(ch, "checkout", variant, sizeof variant), 1);
	assert_true(!strcmp(variant, "a") || !strcmp(variant, "b"));
	char none[8] = "x";
	assert_int_equal(rt_channel_flag(ch, "postgres_changes", none, sizeof none), 0);
	assert_string_equal(none, "");
	assert_int_equal(rt_channel_flag(ch, "nope", NULL, 0), RT_ENOTFOUND);
	assert_int_equal(rt_channel_flags(ch, &js), 0);
	assert_non_null(strstr(js, "\"postgres_changes\":false"));
	free(js);

	/* the same user elsewhere gets the same variant */
	struct f_ctx t2 = {0};
	struct rt_client *c2 = new_client(&s, key);
	struct rt_client_channel *ch2 = join(c2, &t2, "flags-room");
	assert_true(h_pump_until(c2, &t2.joined, 5000));
	char variant2[8];
	assert_int_equal(rt_channel_flag(ch2, "checkout", variant2, sizeof variant2), 1);
	assert_string_equal(variant2, variant);
	rt_client_free(c2);

	/* while off: nothing arrives */
	assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (2,'two')"), 0);
	assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (3,'three')"), 0);
	h_pump_for(c, 600);
	assert_int_equal(t.n_changes, 1);

	/* on again: the missed changes, in order, then live ones */
	set_flags(&s, "{\"flags\":{\"banner\":true}}");
	assert_true(pump_until_n(c, &t.n_pg_on, 1, 3000));
	assert_true(pump_until_n(c, &t.n_changes, 3, 3000));
	assert_int_equal(t.n_flags, 3);
	assert_string_equal(t.flags, "{\"banner\":true}");
	assert_int_equal(h_sql(&s, "INSERT INTO todos(id,title) VALUES (4,'four')"), 0);
	assert_true(pump_until_n(c, &t.n_changes, 4, 3000));
	h_pump_for(c, 200);
	assert_int_equal(t.n_changes, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(t.ids[i], i + 1);

	rt_client_free(c);
	assert_int_equal(h_server_stop(&s), 0);
	h_server_remove(&s);
	unlink(flags_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
