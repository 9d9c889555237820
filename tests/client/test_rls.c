/*
 * Row-level security seen from librtsync (docs/security.md): two users'
 * synced tables of one table under `owner = auth.uid()` each hold only
 * their own rows — from the snapshot, from live inserts, updates and
 * deletes made by an outside writer — and a write of a row the policy
 * refuses rolls back with 42501 and is not applied. With
 * $RTSYNC_TEST_POSTGRES set (harness.h) the server runs on PostgreSQL,
 * where the same policy is the database's own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "rtsync/table.h"

#define ALICE "a0000000-0000-4000-8000-00000000000a"
#define BOB "b0000000-0000-4000-8000-00000000000b"

static const char rls_schema[] =
	"CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, owner text NOT NULL,\n"
	"  body text NOT NULL);\n"
	"ALTER TABLE notes ENABLE ROW LEVEL SECURITY;\n"
	"CREATE POLICY \"own notes\" ON notes FOR ALL TO authenticated\n"
	"  USING (owner = auth.uid()::text) WITH CHECK (owner = auth.uid()::text);\n";

struct obs {
	int n_ready, n_confirmed, n_rolled_back;
	char code[16];
};

static void on_ready(void *user, struct rt_table *t)
{
	(void)t;
	((struct obs *)user)->n_ready++;
}

static void on_write(void *user, struct rt_table *t, const struct rt_table_write_event *ev)
{
	(void)t;
	struct obs *o = user;
	if (ev->state == RT_WRITE_CONFIRMED)
		o->n_confirmed++;
	if (ev->state == RT_WRITE_ROLLED_BACK) {
		o->n_rolled_back++;
		snprintf(o->code, sizeof o->code, "%s", ev->code ? ev->code : "");
	}
}

struct user {
	struct rt_client *c;
	struct rt_table *t;
	struct obs o;
};

static void user_open(struct user *u, const struct h_server *s, const char *sub)
{
	memset(u, 0, sizeof *u);
	struct rt_client_options co = {
		.url = s->url,
		.apikey = h_token_as("authenticated", sub, 3600),
		.reconnect_base_ms = 50,
		.reconnect_max_ms = 300,
		.push_timeout_ms = 3000,
	};
	assert_int_equal(rt_client_new(&co, &u->c), 0);
	assert_int_equal(rt_client_connect(u->c), 0);
	struct rt_table_options to = {
		.table = "notes",
		.cb = {.on_ready = on_ready, .on_write = on_write},
		.user = &u->o,
	};
	assert_int_equal(rt_table_open(u->c, &to, &u->t), 0);
}

static void user_close(struct user *u)
{
	rt_table_close(u->t);
	rt_client_free(u->c);
}

/* Pumps both users' clients until cond holds or timeout_ms passes. */
static bool pump(struct user *a, struct user *b, bool (*cond)(struct user *, struct user *),
		 int timeout_ms)
{
	for (int64_t end = h_now_ms() + timeout_ms; h_now_ms() < end;) {
		if (cond(a, b))
			return true;
		rt_client_run(a->c, 5);
		rt_client_run(b->c, 5);
	}
	return cond(a, b);
}

static bool both_ready(struct user *a, struct user *b)
{
	return rt_table_is_ready(a->t) && rt_table_is_ready(b->t);
}

static bool has_row(struct rt_table *t, const char *key)
{
	char *row = NULL;
	bool pending;
	if (rt_table_get(t, key, &row, &pending))
		return false;
	bool ok = row != NULL;
	free(row);
	return ok;
}

static size_t count_of(struct rt_table *t)
{
	return rt_table_count(t);
}

static bool b_has_4(struct user *a, struct user *b)
{
	(void)a;
	return has_row(b->t, "{\"id\":4}");
}

static bool a_lost_1(struct user *a, struct user *b)
{
	(void)b;
	return !has_row(a->t, "{\"id\":1}");
}

static bool b_has_5(struct user *a, struct user *b)
{
	(void)a;
	return has_row(b->t, "{\"id\":5}");
}

static bool a_settled(struct user *a, struct user *b)
{
	(void)b;
	return a->o.n_rolled_back >= 1 && a->o.n_confirmed >= 1 && rt_table_pending(a->t) == 0;
}

/* The rows of notes as the service role sees them, ids joined by ',' into out. */
static void all_ids(const struct h_server *s, char *out, size_t cap)
{
	const char *tok = h_token_as("service_role", NULL, 3600);
	char cmd[2600];
	snprintf(cmd, sizeof cmd,
		 "curl -sf -H 'apikey: %s' '%s/rest/v1/notes?select=id&order=id' | tr -d ' \\n'",
		 tok, s->url);
	out[0] = 0;
	FILE *p = popen(cmd, "r");
	if (!p)
		return;
	if (!fgets(out, (int)cap, p))
		out[0] = 0;
	pclose(p);
}

static void test_rls_synced_tables(void **state)
{
	(void)state;
	struct h_server s = {.schema = rls_schema};
	assert_int_equal(h_server_start(&s), 0);
	if (s.pgdb[0]) {
		/* the API role needs privileges, and DELETEs the whole old row */
		assert_int_equal(h_sql(&s, "GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO "
					   "authenticated; ALTER TABLE notes REPLICA IDENTITY FULL"),
				 0);
	}
	assert_int_equal(h_sql(&s, "INSERT INTO notes VALUES (1, '%s', 'a1'), (2, '%s', 'b2'), "
				   "(3, '%s', 'a3')",
			       ALICE, BOB, ALICE),
			 0);

	struct user a, b;
	user_open(&a, &s, ALICE);
	user_open(&b, &s, BOB);
	assert_true(pump(&a, &b, both_ready, 10000));
	/* the snapshot: each user's own rows only */
	assert_int_equal(count_of(a.t), 2);
	assert_int_equal(count_of(b.t), 1);
	assert_true(has_row(a.t, "{\"id\":1}") && has_row(a.t, "{\"id\":3}"));
	assert_true(has_row(b.t, "{\"id\":2}"));

	/* live: an insert for bob reaches bob, not alice */
	assert_int_equal(h_sql(&s, "INSERT INTO notes VALUES (4, '%s', 'b4')", BOB), 0);
	assert_true(pump(&a, &b, b_has_4, 10000));
	/* a delete of alice's row (checked on the old row) reaches alice only */
	assert_int_equal(h_sql(&s, "DELETE FROM notes WHERE id = 1"), 0);
	assert_true(pump(&a, &b, a_lost_1, 10000));
	/* an update that hands alice's row 3 to bob: it leaves alice's view... */
	assert_int_equal(h_sql(&s, "UPDATE notes SET owner = '%s' WHERE id = 3", BOB), 0);
	/* (bob sees it as an update of a row he did not have; alice receives no
	 * change for a row that is no longer hers, as in Supabase) */
	assert_int_equal(h_sql(&s, "INSERT INTO notes VALUES (5, '%s', 'b5')", BOB), 0);
	assert_true(pump(&a, &b, b_has_5, 10000));
	assert_false(has_row(a.t, "{\"id\":4}"));
	assert_false(has_row(a.t, "{\"id\":5}"));
	assert_true(has_row(b.t, "{\"id\":3}"));

	/* writes: alice may not write a row owned by bob, may write her own */
	assert_int_equal(rt_table_insert(a.t, "{\"id\":6,\"owner\":\"" BOB "\",\"body\":\"x\"}",
					 RT_STRATEGY_DEFAULT, NULL),
			 0);
	assert_int_equal(rt_table_insert(a.t, "{\"id\":7,\"owner\":\"" ALICE "\",\"body\":\"y\"}",
					 RT_STRATEGY_DEFAULT, NULL),
			 0);
	assert_true(pump(&a, &b, a_settled, 10000));
	assert_string_equal(a.o.code, "42501");
	assert_false(has_row(a.t, "{\"id\":6}"));
	assert_true(has_row(a.t, "{\"id\":7}"));
	char ids[256];
	all_ids(&s, ids, sizeof ids);
	assert_string_equal(ids, "[{\"id\":2},{\"id\":3},{\"id\":4},{\"id\":5},{\"id\":7}]");
	/* bob never saw alice's row 7 */
	for (int i = 0; i < 20; i++) {
		rt_client_run(a.c, 5);
		rt_client_run(b.c, 5);
	}
	assert_false(has_row(b.t, "{\"id\":7}"));

	user_close(&a);
	user_close(&b);
	h_server_stop(&s);
	h_server_remove(&s);
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
		cmocka_unit_test(test_rls_synced_tables),
	};
	int rc = cmocka_run_group_tests_name(h_pg() ? "row-level security, PostgreSQL store"
						    : "row-level security",
					     tests, NULL, NULL);
	h_kill_all();
	return rc;
}
