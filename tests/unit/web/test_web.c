/*
 * The embedded web assets (src/web/web.h): the table the build generates,
 * the path aliases, and If-None-Match matching.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "web/web.h"

static void test_table(void **state)
{
	(void)state;
	assert_true(rt_web_n_assets >= 4);
	assert_null(rt_web_assets[rt_web_n_assets].path);
	for (size_t i = 0; i < rt_web_n_assets; i++) {
		const struct rt_web_asset *a = &rt_web_assets[i];
		assert_int_equal(a->path[0], '/');
		assert_non_null(a->content_type);
		assert_true(a->data_len > 0);
		assert_int_equal(a->data[a->data_len], 0); /* the NUL embed.sh appends */
		assert_int_equal(a->etag[0], '"');
		assert_int_equal(a->etag[strlen(a->etag) - 1], '"');
		assert_ptr_equal(rt_web_find(a->path), a);
	}
}

static void test_find(void **state)
{
	(void)state;
	const struct rt_web_asset *idx = rt_web_find("/");
	assert_non_null(idx);
	assert_string_equal(idx->path, "/index.html");
	assert_string_equal(idx->content_type, "text/html; charset=utf-8");
	assert_non_null(strstr((const char *)idx->data, "<html"));
	assert_string_equal(rt_web_find("/demo")->path, "/demo.html");
	assert_string_equal(rt_web_find("/demo/")->path, "/demo.html");
	const struct rt_web_asset *js = rt_web_find("/rtsync.js");
	assert_non_null(js);
	assert_string_equal(js->content_type, "text/javascript; charset=utf-8");
	assert_non_null(strstr((const char *)js->data, "SharedWebSocket"));
	assert_null(rt_web_find("/nope"));
	assert_null(rt_web_find("/rtsync.js/"));
	assert_null(rt_web_find("rtsync.js"));
	assert_null(rt_web_find("/../rtsync.js"));
	assert_null(rt_web_find(""));
	assert_null(rt_web_find(NULL));
	char longp[RT_WEB_MAX_PATH + 8];
	memset(longp, 'a', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = 0;
	assert_null(rt_web_find(longp));
	/* routes of src/api are never assets */
	assert_null(rt_web_find("/metrics"));
	assert_null(rt_web_find("/healthz"));
	assert_null(rt_web_find("/realtime/v1/websocket"));
}

static void test_etag(void **state)
{
	(void)state;
	const char *e = "\"abc123\"";
	assert_true(rt_web_etag_matches("\"abc123\"", e));
	assert_true(rt_web_etag_matches("W/\"abc123\"", e));
	assert_true(rt_web_etag_matches("\"x\", \"abc123\"", e));
	assert_true(rt_web_etag_matches("\"x\",\"abc123\" ,", e));
	assert_true(rt_web_etag_matches("*", e));
	assert_true(rt_web_etag_matches(" * ", e));
	assert_false(rt_web_etag_matches("", e));
	assert_false(rt_web_etag_matches(",,, ", e));
	assert_false(rt_web_etag_matches("\"abc1234\"", e));
	assert_false(rt_web_etag_matches("abc123", e));
	assert_false(rt_web_etag_matches("\"abc12\"", e));
	assert_false(rt_web_etag_matches("W/", e));
	assert_false(rt_web_etag_matches("**", e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_etag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
