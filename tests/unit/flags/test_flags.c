/*
 * Feature flags (src/flags/flags.h): a 10% rollout assigns 10% ± 1% of
 * 10,000 users, the same users after a reload, a restart (a new rt_flags on
 * the same file) and edits of other flags; variants get their weights;
 * targeting by claims; scopes by channel and table; the document's checks;
 * edits persist; exposures are counted in the metrics.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "flags/flags.h"

#define N_USERS 10000

static json_t *load(const char *txt)
{
	json_error_t je;
	json_t *v = json_loads(txt, 0, &je);
	if (!v)
		fail_msg("bad JSON in the test: %s", je.text);
	return v;
}

static struct rt_flagset *parse(const char *txt)
{
	json_t *doc = load(txt);
	char err[512] = "";
	struct rt_flagset *fs = rt_flagset_parse(doc, err, sizeof err);
	json_decref(doc);
	if (!fs)
		fail_msg("parse failed: %s", err);
	return fs;
}

static void sub_of(unsigned i, char *buf, size_t cap)
{
	snprintf(buf, cap, "user-%08u", i);
}

/* The users of 0..N_USERS-1 the flag is on for, as a bitmap. */
static unsigned count_on(const struct rt_flagset *fs, const char *flag, uint8_t *on)
{
	unsigned n = 0;
	for (unsigned i = 0; i < N_USERS; i++) {
		char sub[32];
		sub_of(i, sub, sizeof sub);
		struct rt_flag_user u = {.sub = sub};
		struct rt_flag_answer a;
		assert_int_equal(rt_flagset_eval(fs, flag, &u, &a), 0);
		if (on)
			on[i] = a.is_on;
		n += a.is_on;
	}
	return n;
}

static char *temp_path(void)
{
	char tmpl[] = "/tmp/rtsync-flags-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	close(fd);
	unlink(tmpl); /* a missing file is the empty set */
	return strdup(tmpl);
}

static void write_file(const char *path, const char *txt)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(txt, f);
	fclose(f);
}

static void test_rollout_ten_percent(void **state)
{
	struct rt_flagset *fs = parse("{\"flags\":{\"new_ui\":{\"rollout\":10}}}");
	unsigned n = count_on(fs, "new_ui", NULL);
	printf("10%% rollout: %u of %u users\n", n, N_USERS);
	assert_true(n >= 900 && n <= 1100);
	rt_flagset_unref(fs);

	/* 0 and 100 are exact */
	fs = parse("{\"flags\":{\"a\":{\"rollout\":0},\"b\":{\"rollout\":100},\"c\":{}}}");
	assert_int_equal(count_on(fs, "a", NULL), 0);
	assert_int_equal(count_on(fs, "b", NULL), N_USERS);
	assert_int_equal(count_on(fs, "c", NULL), N_USERS);
	rt_flagset_unref(fs);
}

static void test_rollout_grows_monotonically(void **state)
{
	/* Raising a rollout keeps everyone who was in. */
	static uint8_t at10[N_USERS], at30[N_USERS];
	struct rt_flagset *a = parse("{\"flags\":{\"f\":{\"rollout\":10}}}");
	struct rt_flagset *b = parse("{\"flags\":{\"f\":{\"rollout\":30}}}");
	unsigned n10 = count_on(a, "f", at10), n30 = count_on(b, "f", at30);
	printf("10%% then 30%%: %u, %u users\n", n10, n30);
	assert_true(n30 >= 2850 && n30 <= 3150); /* 3.3 standard deviations */
	assert_true(n10 < n30);
	for (unsigned i = 0; i < N_USERS; i++)
		if (at10[i])
			assert_true(at30[i]);
	rt_flagset_unref(a);
	rt_flagset_unref(b);
}

static void test_stable_across_reload_restart_and_edits(void **state)
{
	static uint8_t first[N_USERS], again[N_USERS];
	char *path = temp_path();
	write_file(path, "{\"flags\":{\"beta\":{\"rollout\":10}}}");
	char err[512];
	struct rt_flags *f;
	assert_int_equal(rt_flags_new(path, &f, err, sizeof err), 0);
	struct rt_flagset *fs = rt_flags_current(f);
	unsigned n = count_on(fs, "beta", first);
	rt_flagset_unref(fs);

	/* another flag added through the API: beta's users stay */
	uint64_t g0 = rt_flags_generation(f);
	json_t *def = load("{\"rollout\":50,\"variants\":{\"a\":1,\"b\":1}}");
	assert_int_equal(rt_flags_put(f, "other", def, err, sizeof err), 0);
	json_decref(def);
	assert_true(rt_flags_generation(f) > g0);
	fs = rt_flags_current(f);
	assert_int_equal(rt_flagset_count(fs), 2);
	assert_int_equal(count_on(fs, "beta", again), n);
	assert_memory_equal(first, again, N_USERS);
	rt_flagset_unref(fs);

	/* reloaded from the file the edit wrote */
	assert_int_equal(rt_flags_reload(f, err, sizeof err), 0);
	fs = rt_flags_current(f);
	assert_int_equal(rt_flagset_count(fs), 2);
	count_on(fs, "beta", again);
	assert_memory_equal(first, again, N_USERS);
	rt_flagset_unref(fs);
	rt_flags_free(f);

	/* a restart: a new rt_flags on the same file */
	assert_int_equal(rt_flags_new(path, &f, err, sizeof err), 0);
	fs = rt_flags_current(f);
	count_on(fs, "beta", again);
	assert_memory_equal(first, again, N_USERS);
	rt_flagset_unref(fs);

	/* a broken file keeps the current set */
	write_file(path, "{\"flags\":{\"beta\":{\"rollout\":\"ten\"}}}");
	assert_int_not_equal(rt_flags_reload(f, err, sizeof err), 0);
	assert_non_null(strstr(err, "rollout"));
	fs = rt_flags_current(f);
	assert_int_equal(rt_flagset_count(fs), 2);
	rt_flagset_unref(fs);

	/* delete */
	assert_int_equal(rt_flags_delete(f, "other", err, sizeof err), 0);
	assert_int_equal(rt_flags_delete(f, "other", err, sizeof err), RT_ENOTFOUND);
	fs = rt_flags_current(f);
	assert_int_equal(rt_flagset_count(fs), 1);
	rt_flagset_unref(fs);
	rt_flags_free(f);
	unlink(path);
	free(path);
}

static void test_bucket_is_sha256_of_name_and_sub(void **state)
{
	/* pinned: a change of the hash would move every user */
	assert_int_equal(rt_flags_bucket("beta", "user-1"), rt_flags_bucket("beta", "user-1"));
	assert_int_not_equal(rt_flags_bucket("beta", "user-1"), rt_flags_bucket("gamma", "user-1"));
	/* SHA-256("beta\0user-1"), first 8 bytes big-endian, mod 10^6 (computed
	 * with: printf 'beta\0user-1' | sha256sum) */
	assert_int_equal(rt_flags_bucket("beta", "user-1"), 14789u);
	assert_true(rt_flags_bucket("x", NULL) < RT_FLAGS_BUCKETS);
}

static void test_variants_weights(void **state)
{
	struct rt_flagset *fs = parse(
		"{\"flags\":{\"checkout\":{\"variants\":{\"control\":50,\"one_page\":30,\"wizard\":20}}}}");
	unsigned c = 0, o = 0, w = 0;
	for (unsigned i = 0; i < N_USERS; i++) {
		char sub[32];
		sub_of(i, sub, sizeof sub);
		struct rt_flag_user u = {.sub = sub};
		struct rt_flag_answer a, b;
		assert_int_equal(rt_flagset_eval(fs, "checkout", &u, &a), 0);
		assert_true(a.is_on);
		assert_non_null(a.variant);
		rt_flagset_eval(fs, "checkout", &u, &b);
		assert_string_equal(a.variant, b.variant); /* sticky */
		c += !strcmp(a.variant, "control");
		o += !strcmp(a.variant, "one_page");
		w += !strcmp(a.variant, "wizard");
	}
	printf("variants 50/30/20: %u %u %u\n", c, o, w);
	assert_int_equal(c + o + w, N_USERS);
	assert_true(c >= 4800 && c <= 5200);
	assert_true(o >= 2800 && o <= 3200);
	assert_true(w >= 1800 && w <= 2200);
	rt_flagset_unref(fs);

	/* variants inside a rollout: the off users have no variant */
	fs = parse("{\"flags\":{\"v\":{\"rollout\":20,\"variants\":{\"a\":1,\"b\":1}}}}");
	unsigned on = 0, a_n = 0;
	for (unsigned i = 0; i < N_USERS; i++) {
		char sub[32];
		sub_of(i, sub, sizeof sub);
		struct rt_flag_user u = {.sub = sub};
		struct rt_flag_answer a;
		rt_flagset_eval(fs, "v", &u, &a);
		if (!a.is_on) {
			assert_null(a.variant);
			continue;
		}
		on++;
		a_n += !strcmp(a.variant, "a");
	}
	assert_true(on >= 1900 && on <= 2100);
	assert_true(a_n * 100 / on >= 45 && a_n * 100 / on <= 55);
	rt_flagset_unref(fs);
}

static void test_targeting(void **state)
{
	struct rt_flagset *fs = parse(
		"{\"flags\":{\"admin_tools\":{\"when\":{\"role\":\"authenticated\","
		"\"app_metadata.team\":[\"red\",\"blue\"]}},"
		"\"lvl\":{\"when\":{\"level\":[3,4]}},"
		"\"tagged\":{\"when\":{\"groups\":\"beta\"}}}}");
	json_t *red = load("{\"role\":\"authenticated\",\"app_metadata\":{\"team\":\"red\"},"
			   "\"level\":3,\"groups\":[\"x\",\"beta\"]}");
	json_t *green = load("{\"role\":\"authenticated\",\"app_metadata\":{\"team\":\"green\"},"
			     "\"level\":5,\"groups\":\"beta\"}");
	json_t *anon = load("{\"role\":\"anon\"}");
	struct rt_flag_user u_red = {.sub = "1", .claims = red};
	struct rt_flag_user u_green = {.sub = "2", .claims = green};
	struct rt_flag_user u_anon = {.claims = anon};
	struct rt_flag_answer a;
	rt_flagset_eval(fs, "admin_tools", &u_red, &a);
	assert_true(a.is_on);
	rt_flagset_eval(fs, "admin_tools", &u_green, &a);
	assert_false(a.is_on);
	rt_flagset_eval(fs, "admin_tools", &u_anon, &a);
	assert_false(a.is_on);
	rt_flagset_eval(fs, "lvl", &u_red, &a);
	assert_true(a.is_on);
	rt_flagset_eval(fs, "lvl", &u_green, &a);
	assert_false(a.is_on);
	rt_flagset_eval(fs, "tagged", &u_red, &a); /* a list claim holding the value */
	assert_true(a.is_on);
	rt_flagset_eval(fs, "tagged", &u_green, &a);
	assert_true(a.is_on);
	rt_flagset_eval(fs, "tagged", &u_anon, &a);
	assert_false(a.is_on);
	assert_int_equal(rt_flagset_eval(fs, "nope", &u_red, &a), RT_ENOTFOUND);
	json_decref(red);
	json_decref(green);
	json_decref(anon);
	rt_flagset_unref(fs);

	/* without a sub, a partial rollout is off and a full one on */
	fs = parse("{\"flags\":{\"half\":{\"rollout\":50},\"all\":{\"rollout\":100}}}");
	struct rt_flag_user nosub = {0};
	rt_flagset_eval(fs, "half", &nosub, &a);
	assert_false(a.is_on);
	rt_flagset_eval(fs, "all", &nosub, &a);
	assert_true(a.is_on);
	rt_flagset_unref(fs);
}

static void test_features_and_scopes(void **state)
{
	struct rt_flagset *fs = parse(
		"{\"flags\":{\"broadcast.rooms\":{\"enabled\":false,\"channels\":[\"room:*\"]},"
		"\"postgres_changes\":{\"enabled\":false,\"tables\":[\"orders\"]},"
		"\"writes\":{\"when\":{\"role\":\"service_role\"}},"
		"\"presence\":true,"
		"\"dark_mode\":{\"channels\":[\"room:*\"]},"
		"\"banner\":{}}}");
	json_t *cl = load("{\"role\":\"authenticated\"}");
	struct rt_flag_user u = {.sub = "u1", .claims = cl};
	const char *orders[] = {"orders"}, *items[] = {"items"}, *all[] = {"*"};
	struct rt_flag_scope room = {.channel = "room:1"};
	struct rt_flag_scope lobby = {.channel = "lobby"};
	struct rt_flag_scope room_orders = {.channel = "room:1", .tables = orders, .n_tables = 1};
	struct rt_flag_scope lobby_items = {.channel = "lobby", .tables = items, .n_tables = 1};
	struct rt_flag_scope lobby_all = {.channel = "lobby", .tables = all, .n_tables = 1};
	struct rt_flag_scope rest_orders = {.tables = orders, .n_tables = 1};

	/* writes: targeted at the service role, so off for this user everywhere */
	assert_int_equal(rt_flagset_features_off(fs, &u, &room), RT_FLAG_BROADCAST | RT_FLAG_WRITES);
	assert_int_equal(rt_flagset_features_off(fs, &u, &lobby), RT_FLAG_WRITES);
	assert_int_equal(rt_flagset_features_off(fs, &u, &room_orders),
			 RT_FLAG_BROADCAST | RT_FLAG_POSTGRES_CHANGES | RT_FLAG_WRITES);
	assert_int_equal(rt_flagset_features_off(fs, &u, &lobby_items), RT_FLAG_WRITES);
	assert_int_equal(rt_flagset_features_off(fs, &u, &lobby_all),
			 RT_FLAG_POSTGRES_CHANGES | RT_FLAG_WRITES);
	assert_int_equal(rt_flagset_features_off(fs, &u, &rest_orders),
			 RT_FLAG_POSTGRES_CHANGES | RT_FLAG_WRITES);
	assert_int_equal(rt_flagset_features_off(NULL, &u, &room), 0);

	/* the view: what applies there */
	json_t *v = rt_flagset_view(fs, &u, &room, false);
	json_t *want = load("{\"broadcast.rooms\":false,\"writes\":false,\"presence\":true,"
			    "\"dark_mode\":true,\"banner\":true}");
	assert_true(json_equal(v, want));
	json_decref(v);
	json_decref(want);
	v = rt_flagset_view(fs, &u, &lobby, false);
	want = load("{\"writes\":false,\"presence\":true,\"banner\":true}");
	assert_true(json_equal(v, want));
	json_decref(v);
	json_decref(want);
	json_decref(cl);
	rt_flagset_unref(fs);
	assert_string_equal(rt_flag_feature_name(RT_FLAG_LIVE_QUERIES), "live_queries");
	assert_null(rt_flag_feature_name(3));
}

static void test_bad_documents(void **state)
{
	static const char *const bad[] = {
		"[]",
		"{\"flag\":{}}",
		"{\"flags\":[]}",
		"{\"flags\":{},\"extra\":1}",
		"{\"flags\":{\"a b\":{}}}",
		"{\"flags\":{\"\":{}}}",
		"{\"flags\":{\"a\":1}}",
		"{\"flags\":{\"a\":{\"rollout\":101}}}",
		"{\"flags\":{\"a\":{\"rollout\":-1}}}",
		"{\"flags\":{\"a\":{\"rollout\":\"5\"}}}",
		"{\"flags\":{\"a\":{\"enabled\":1}}}",
		"{\"flags\":{\"a\":{\"unknown\":1}}}",
		"{\"flags\":{\"a\":{\"when\":[]}}}",
		"{\"flags\":{\"a\":{\"when\":{\"role\":{}}}}}",
		"{\"flags\":{\"a\":{\"when\":{\"role\":[]}}}}",
		"{\"flags\":{\"a\":{\"when\":{\"role\":[{}]}}}}",
		"{\"flags\":{\"a\":{\"variants\":{}}}}",
		"{\"flags\":{\"a\":{\"variants\":{\"x\":0}}}}",
		"{\"flags\":{\"a\":{\"variants\":{\"x\":-1}}}}",
		"{\"flags\":{\"a\":{\"variants\":{\"x\":1.5}}}}",
		"{\"flags\":{\"a\":{\"variants\":{\"off\":1}}}}",
		"{\"flags\":{\"a\":{\"channels\":[]}}}",
		"{\"flags\":{\"a\":{\"channels\":\"room:*\"}}}",
		"{\"flags\":{\"a\":{\"tables\":[1]}}}",
		"{\"flags\":{\"broadcast\":{\"variants\":{\"x\":1}}}}",
		"{\"flags\":{\"a\":{\"description\":5}}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		json_t *doc = load(bad[i]);
		char err[512] = "";
		struct rt_flagset *fs = rt_flagset_parse(doc, err, sizeof err);
		if (fs)
			fail_msg("accepted: %s", bad[i]);
		assert_true(strlen(err) > 0);
		json_decref(doc);
	}
	/* too many flags */
	json_t *doc = json_pack("{s:{}}", "flags");
	for (int i = 0; i <= RT_FLAGS_MAX; i++) {
		char n[32];
		snprintf(n, sizeof n, "f%d", i);
		json_object_set_new(json_object_get(doc, "flags"), n, json_true());
	}
	char err[256];
	assert_null(rt_flagset_parse(doc, err, sizeof err));
	json_decref(doc);
	/* the empty set and the shorthand */
	struct rt_flagset *fs = rt_flagset_parse(NULL, err, sizeof err);
	assert_int_equal(rt_flagset_count(fs), 0);
	rt_flagset_unref(fs);
	fs = parse("{\"flags\":{\"on\":true,\"off\":false}}");
	struct rt_flag_user u = {.sub = "x"};
	struct rt_flag_answer a;
	rt_flagset_eval(fs, "on", &u, &a);
	assert_true(a.is_on);
	rt_flagset_eval(fs, "off", &u, &a);
	assert_false(a.is_on);
	rt_flagset_unref(fs);
}

static void test_exposures_in_metrics(void **state)
{
	char err[256];
	struct rt_flags *f;
	assert_int_equal(rt_flags_new(NULL, &f, err, sizeof err), 0);
	json_t *doc = load("{\"flags\":{\"exp\":{\"variants\":{\"a\":1,\"b\":1}},\"plain\":{}}}");
	assert_int_equal(rt_flags_replace(f, doc, err, sizeof err), 0);
	json_decref(doc);
	struct rt_flagset *fs = rt_flags_current(f);
	unsigned n_a = 0;
	for (unsigned i = 0; i < 200; i++) {
		char sub[32];
		sub_of(i, sub, sizeof sub);
		struct rt_flag_user u = {.sub = sub};
		struct rt_flag_scope sc = {0};
		json_t *v = rt_flagset_view(fs, &u, &sc, true);
		n_a += !strcmp(json_string_value(json_object_get(v, "exp")), "a");
		assert_true(json_is_true(json_object_get(v, "plain")));
		json_decref(v);
	}
	rt_flagset_unref(fs);
	rt_flags_count_evaluations(f, 200);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_flags_render_metrics(f, &b);
	rt_buf_append_byte(&b, 0);
	char want[128];
	snprintf(want, sizeof want, "rtsync_flag_exposures_total{flag=\"exp\",variant=\"a\"} %u\n",
		 n_a);
	assert_non_null(strstr((char *)b.data, want));
	snprintf(want, sizeof want, "rtsync_flag_exposures_total{flag=\"exp\",variant=\"b\"} %u\n",
		 200 - n_a);
	assert_non_null(strstr((char *)b.data, want));
	assert_non_null(
		strstr((char *)b.data, "rtsync_flag_exposures_total{flag=\"plain\",variant=\"on\"} 200\n"));
	assert_non_null(strstr((char *)b.data, "rtsync_flag_evaluations_total 200\n"));
	rt_buf_deinit(&b);
	rt_flags_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rollout_ten_percent),
		cmocka_unit_test(test_rollout_grows_monotonically),
		cmocka_unit_test(test_stable_across_reload_restart_and_edits),
		cmocka_unit_test(test_bucket_is_sha256_of_name_and_sub),
		cmocka_unit_test(test_variants_weights),
		cmocka_unit_test(test_targeting),
		cmocka_unit_test(test_features_and_scopes),
		cmocka_unit_test(test_bad_documents),
		cmocka_unit_test(test_exposures_in_metrics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
