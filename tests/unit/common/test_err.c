/*
 * Error codes (src/common/err.h): one table generates the enum, the texts and
 * the names, so they must agree for every code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/err.h"

static void test_table(void **state)
{
	int n = 0, expect_code = -1;
#define CHECK(name, code, text)                                                          \
	assert_int_equal(RT_E##name, code);                                              \
	assert_int_equal(code, expect_code--); /* dense, appended in order */            \
	assert_string_equal(rt_strerror(code), text);                                    \
	assert_string_equal(rt_err_name(code), "RT_E" #name);                            \
	n++;
	RT_ERRNO_MAP(CHECK)
#undef CHECK
	assert_true(n >= 13);
	assert_int_equal(RT_ENOMEM, -1);
	assert_int_equal(RT_EPROTO, -3);
	assert_int_equal(RT_ETOOBIG, -4);
	assert_string_equal(rt_err_name(RT_EUTF8), "RT_EUTF8");
}

static void test_ok_and_unknown(void **state)
{
	assert_int_equal(RT_OK, 0);
	assert_string_equal(rt_err_name(RT_OK), "RT_OK");
	assert_non_null(rt_strerror(RT_OK));
	static const int unknown[] = {1, 42, -1000, -14 - 100};
	for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
		assert_string_equal(rt_strerror(unknown[i]), "unknown error");
		assert_string_equal(rt_err_name(unknown[i]), "RT_EUNKNOWN");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_ok_and_unknown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
