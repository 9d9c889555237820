/*
 * Fuzz target: flag-set documents (rt_flagset_parse, the body of PUT
 * /flags/v1 and the --flags file) and their evaluation.
 *
 * Input: a JSON document. When it parses as a flag set, every flag is
 * evaluated for a few fixed users and scopes.
 *
 * Checked: a refused document always says why; an accepted one has at most
 * RT_FLAGS_MAX flags, its document parses again to the same count, and for
 * every flag and user: an answer is stable (evaluated twice, the same), a
 * variant is reported only when on, the view holds only true, false or
 * strings, and the features-off mask holds only feature bits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flags/flags.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static const char *const users_json[] = {
	"{\"role\":\"authenticated\",\"sub\":\"u-1\",\"app_metadata\":{\"team\":\"red\"}}",
	"{\"role\":\"anon\"}",
	"{\"role\":\"service_role\",\"sub\":\"svc\",\"level\":3,\"groups\":[\"beta\",1,true]}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!doc)
		return 0;
	char err[512] = "";
	struct rt_flagset *fs = rt_flagset_parse(doc, err, sizeof err);
	json_decref(doc);
	if (!fs) {
		CHECK(err[0]);
		return 0;
	}
	size_t n = rt_flagset_count(fs);
	CHECK(n <= RT_FLAGS_MAX);
	json_t *again = rt_flagset_doc(fs);
	struct rt_flagset *fs2 = rt_flagset_parse(again, err, sizeof err);
	CHECK(fs2 && rt_flagset_count(fs2) == n);
	rt_flagset_unref(fs2);
	const char *tables[] = {"items", "*"};
	const struct rt_flag_scope scopes[] = {
		{0},
		{.channel = "room:1", .tables = tables, .n_tables = 1},
		{.channel = "lobby", .tables = tables + 1, .n_tables = 1},
	};
	for (size_t u = 0; u < sizeof users_json / sizeof *users_json; u++) {
		json_t *claims = json_loads(users_json[u], 0, NULL);
		CHECK(claims);
		struct rt_flag_user user = {.sub = json_string_value(json_object_get(claims, "sub")),
					    .claims = claims};
		const char *name;
		json_t *def;
		json_object_foreach(json_object_get(again, "flags"), name, def) {
			struct rt_flag_answer a, b;
			CHECK(rt_flagset_eval(fs, name, &user, &a) == 0);
			CHECK(rt_flagset_eval(fs, name, &user, &b) == 0);
			CHECK(a.is_on == b.is_on);
			CHECK(!a.variant == !b.variant && (!a.variant || !strcmp(a.variant, b.variant)));
			CHECK(a.is_on || !a.variant);
		}
		for (size_t s = 0; s < sizeof scopes / sizeof *scopes; s++) {
			unsigned off = rt_flagset_features_off(fs, &user, &scopes[s]);
			CHECK(!(off & ~((1u << RT_FLAG_N_FEATURES) - 1)));
			json_t *view = rt_flagset_view(fs, &user, &scopes[s], false);
			CHECK(json_object_size(view) <= n);
			const char *k;
			json_t *v;
			json_object_foreach(view, k, v)
				CHECK(json_is_boolean(v) || json_is_string(v));
			json_decref(view);
		}
		json_decref(claims);
	}
	json_decref(again);
	rt_flagset_unref(fs);
	return 0;
}
