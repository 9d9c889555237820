/*
 * Client presence state (src/client/presence.c): full states and diffs give
 * the joins, leaves and final sync phoenix.js would, and the state after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "client/presence.h"

static json_t *j(const char *txt)
{
	json_t *v = json_loads(txt, 0, NULL);
	assert_non_null(v);
	return v;
}

/* Applies msg and compares the events and the state with the expected JSON. */
static void apply(json_t **state, const char *msg, bool is_full, const char *want_events,
		  const char *want_state)
{
	json_t *m = j(msg);
	json_t *ev = rt_client_presence_apply(state, m, is_full);
	assert_non_null(ev);
	json_t *we = j(want_events), *ws = j(want_state);
	if (!json_equal(ev, we)) {
		char *got = json_dumps(ev, JSON_COMPACT);
		fail_msg("events: %s", got);
	}
	if (!json_equal(*state, ws)) {
		char *got = json_dumps(*state, JSON_COMPACT);
		fail_msg("state: %s", got);
	}
	json_decref(m);
	json_decref(ev);
	json_decref(we);
	json_decref(ws);
}

static void test_full_then_diffs(void **state)
{
	json_t *st = json_object();
	apply(&st, "{\"a\":{\"metas\":[{\"phx_ref\":\"1\",\"n\":1}]}}", true,
	      "[[\"join\",\"a\",[{\"phx_ref\":\"1\",\"n\":1}],[{\"phx_ref\":\"1\",\"n\":1}]],"
	      "[\"sync\",null,null,null]]",
	      "{\"a\":[{\"phx_ref\":\"1\",\"n\":1}]}");
	/* a second meta for a, and b */
	apply(&st,
	      "{\"joins\":{\"a\":{\"metas\":[{\"phx_ref\":\"2\"}]},\"b\":{\"metas\":[{\"phx_ref\":\"3\"}]}},"
	      "\"leaves\":{}}",
	      false,
	      "[[\"join\",\"a\",[{\"phx_ref\":\"2\"},{\"phx_ref\":\"1\",\"n\":1}],[{\"phx_ref\":\"2\"}]],"
	      "[\"join\",\"b\",[{\"phx_ref\":\"3\"}],[{\"phx_ref\":\"3\"}]],[\"sync\",null,null,null]]",
	      "{\"a\":[{\"phx_ref\":\"2\"},{\"phx_ref\":\"1\",\"n\":1}],\"b\":[{\"phx_ref\":\"3\"}]}");
	/* b leaves entirely, a loses one meta */
	apply(&st,
	      "{\"joins\":{},\"leaves\":{\"b\":{\"metas\":[{\"phx_ref\":\"3\"}]},"
	      "\"a\":{\"metas\":[{\"phx_ref\":\"1\",\"n\":1}]}}}",
	      false,
	      "[[\"leave\",\"b\",[],[{\"phx_ref\":\"3\"}]],"
	      "[\"leave\",\"a\",[{\"phx_ref\":\"2\"}],[{\"phx_ref\":\"1\",\"n\":1}]],"
	      "[\"sync\",null,null,null]]",
	      "{\"a\":[{\"phx_ref\":\"2\"}]}");
	/* a full state after a rejoin: a's meta replaced, c new */
	apply(&st, "{\"a\":{\"metas\":[{\"phx_ref\":\"9\"}]},\"c\":{\"metas\":[{\"phx_ref\":\"7\"}]}}",
	      true,
	      "[[\"leave\",\"a\",[{\"phx_ref\":\"9\"}],[{\"phx_ref\":\"2\"}]],"
	      "[\"join\",\"a\",[{\"phx_ref\":\"9\"}],[{\"phx_ref\":\"9\"}]],"
	      "[\"join\",\"c\",[{\"phx_ref\":\"7\"}],[{\"phx_ref\":\"7\"}]],[\"sync\",null,null,null]]",
	      "{\"a\":[{\"phx_ref\":\"9\"}],\"c\":[{\"phx_ref\":\"7\"}]}");
	json_decref(st);
}

static void test_malformed_is_skipped(void **state)
{
	json_t *st = json_object();
	apply(&st, "{\"a\":5,\"b\":{\"metas\":\"x\"},\"c\":{}}", true, "[[\"sync\",null,null,null]]",
	      "{}");
	apply(&st, "{\"joins\":[1],\"leaves\":{\"zz\":{\"metas\":[{\"phx_ref\":\"1\"}]}}}", false,
	      "[[\"sync\",null,null,null]]", "{}");
	apply(&st, "{\"joins\":{\"k\":{\"metas\":[5,{\"phx_ref\":\"1\"}]}}}", false,
	      "[[\"join\",\"k\",[{\"phx_ref\":\"1\"}],[{\"phx_ref\":\"1\"}]],[\"sync\",null,null,null]]",
	      "{\"k\":[{\"phx_ref\":\"1\"}]}");
	json_decref(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_then_diffs),
		cmocka_unit_test(test_malformed_is_skipped),
	};
	return cmocka_run_group_tests_name("client/presence", tests, NULL, NULL);
}
