#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/policy.h"
#include "common/alloc.h"
#include "common/buf.h"

/* ---- helpers ---- */

static int add_rc(struct rt_policies *p, const char *sql, char *err, size_t cap)
{
	return rt_policies_add_statement(p, sql, strlen(sql), "public", err, cap);
}

static void add(struct rt_policies *p, const char *sql)
{
	char err[512] = "";
	int rc = add_rc(p, sql, err, sizeof err);
	if (rc != 1)
		fail_msg("%s: rc %d (%s)", sql, rc, err);
}

static void add_fails(struct rt_policies *p, const char *sql, const char *want)
{
	char err[512] = "";
	int rc = add_rc(p, sql, err, sizeof err);
	if (rc != -1 || strcmp(err, want))
		fail_msg("%s:\n  rc %d\n  got  %s\n  want %s", sql, rc, err, want);
}

/* The verdict for role/claims (a JSON text, NULL: none), and the predicate's canonical text. */
static enum rt_policy_verdict pred(const struct rt_policies *p, const char *table, unsigned cmd,
				   bool is_check, const char *role, const char *claims,
				   const char *topic, char *canon, size_t cap)
{
	json_t *c = claims ? json_loads(claims, 0, NULL) : NULL;
	if (claims)
		assert_non_null(c);
	struct rt_auth who = {role, c, topic};
	struct rt_query_node n;
	enum rt_policy_verdict v =
		rt_policies_predicate(p, "public", table, cmd, is_check, &who, &n);
	struct rt_buf b;
	rt_buf_init(&b);
	if (v == RT_POLICY_ROWS)
		rt_policy_canon(&n, &b);
	else
		assert_int_equal(n.n_children, 0);
	snprintf(canon, cap, "%s", b.data ? b.data : "");
	rt_buf_deinit(&b);
	rt_query_node_deinit(&n);
	json_decref(c);
	return v;
}

static void expect(const struct rt_policies *p, const char *table, unsigned cmd, bool is_check,
		   const char *role, const char *claims, enum rt_policy_verdict want_v,
		   const char *want_canon)
{
	char canon[2048];
	enum rt_policy_verdict v =
		pred(p, table, cmd, is_check, role, claims, NULL, canon, sizeof canon);
	if (v != want_v || (want_canon && strcmp(canon, want_canon)))
		fail_msg("%s cmd %u check %d role %s claims %s:\n  got  %d %s\n  want %d %s", table,
			 cmd, is_check, role, claims ? claims : "-", v, canon, want_v,
			 want_canon ? want_canon : "");
}

/* One policy expression on a fresh table t, predicate for SELECT. */
static void expect_expr(const char *expr, const char *claims, enum rt_policy_verdict want_v,
			const char *want_canon)
{
	struct rt_policies *p = rt_policies_new();
	char sql[4096];
	snprintf(sql, sizeof sql, "create policy p on t for select using (%s)", expr);
	add(p, "alter table t enable row level security");
	add(p, sql);
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", claims, want_v, want_canon);
	rt_policies_unref(p);
}

static void expect_expr_err(const char *expr, const char *want)
{
	struct rt_policies *p = rt_policies_new();
	char sql[4096], full[600];
	snprintf(sql, sizeof sql, "create policy p on t using (%s)", expr);
	snprintf(full, sizeof full, "policy \"p\" on public.t: %s", want);
	add_fails(p, sql, full);
	rt_policies_unref(p);
}

static const char *types_of(const char *column, void *ctx)
{
	(void)ctx;
	if (!strcmp(column, "n") || !strcmp(column, "id"))
		return "int8";
	if (!strcmp(column, "score"))
		return "numeric";
	if (!strcmp(column, "done") || !strcmp(column, "deleted"))
		return "bool";
	if (!strcmp(column, "unknown"))
		return NULL;
	return "text";
}

static int eval_on(const struct rt_query_node *n, const char *row)
{
	json_t *r = json_loads(row, 0, NULL);
	assert_non_null(r);
	int v = rt_policy_eval(n, r, types_of, NULL);
	json_decref(r);
	return v;
}

/* Predicate of one expression for claims, evaluated on a row. */
static int eval_expr(const char *expr, const char *claims, const char *row)
{
	struct rt_policies *p = rt_policies_new();
	char sql[4096];
	snprintf(sql, sizeof sql, "create policy p on t using (%s)", expr);
	add(p, "alter table t enable row level security");
	add(p, sql);
	json_t *c = json_loads(claims, 0, NULL);
	struct rt_auth who = {"authenticated", c, NULL};
	struct rt_query_node n;
	enum rt_policy_verdict v =
		rt_policies_predicate(p, "public", "t", RT_POLICY_SELECT, false, &who, &n);
	int r = v == RT_POLICY_ALLOW_ALL ? 1 : v == RT_POLICY_DENY_ALL ? 0 : eval_on(&n, row);
	rt_query_node_deinit(&n);
	json_decref(c);
	rt_policies_unref(p);
	return r;
}

/* ---- statements ---- */

static void test_statement_forms(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	char err[256];
	assert_false(rt_policies_is_enabled(p, "public", "todos"));
	add(p, "ALTER TABLE todos ENABLE ROW LEVEL SECURITY");
	assert_true(rt_policies_is_enabled(p, "public", "todos"));
	add(p, "alter table if exists only public.todos disable row level security");
	assert_false(rt_policies_is_enabled(p, "public", "todos"));
	add(p, "  /* c */ Alter /* nested /* c */ */ TABLE \"Todos\" -- x\n enable ROW level "
	       "security;");
	assert_true(rt_policies_is_enabled(p, "public", "Todos"));
	assert_false(rt_policies_is_enabled(p, "public", "todos"));
	add(p, "alter table app.items force row level security, enable row level security");
	assert_true(rt_policies_is_enabled(p, "app", "items"));
	add(p, "alter table app.items no force row level security");
	assert_true(rt_policies_is_enabled(p, "app", "items"));

	/* other statements are not ours */
	assert_int_equal(add_rc(p, "create table t (id int)", err, sizeof err), 0);
	assert_int_equal(add_rc(p, "alter table t add column x int", err, sizeof err), 0);
	assert_int_equal(add_rc(p, "alter table t enable trigger all", err, sizeof err), 0);
	assert_int_equal(add_rc(p, "alter table t owner to bob", err, sizeof err), 0);
	assert_int_equal(add_rc(p, "insert into t values ('$$')", err, sizeof err), 0);
	assert_int_equal(add_rc(p, "", err, sizeof err), 0);
	assert_int_equal(add_rc(p, "-- only a comment", err, sizeof err), 0);
	assert_int_equal(add_rc(p, "create index policy on t (x)", err, sizeof err), 0);
	add_fails(
		p, "alter table t enable row level security, add column x int",
		"ALTER TABLE public.t: row level security actions mixed with other actions are not "
		"supported");

	add(p, "CREATE POLICY \"Own \"\"rows\"\"\" ON todos AS PERMISSIVE FOR SELECT TO "
	       "authenticated, "
	       "anon USING (owner = auth.uid())");
	add(p,
	    "create policy p2 on public.todos as restrictive for all to public using (true) with "
	    "check (true)");
	add(p, "create policy p3 on todos for insert with check (owner = auth.uid())");
	add(p, "create policy p4 on todos for update using (true) with check (false)");
	add(p, "create policy p5 on todos for delete using (true)");
	add(p, "create policy p6 on todos");
	add(p, "create\tpolicy\n\"P6\"\non\ntodos\n;");
	size_t n_opaque = 9;
	assert_int_equal(rt_policies_count(p, &n_opaque), 7);
	assert_int_equal(n_opaque, 0);
	assert_true(rt_policies_has_any(p, "public", "todos"));
	assert_false(rt_policies_has_any(p, "public", "other"));

	add_fails(p, "create policy p6 on todos",
		  "policy \"p6\" for table \"todos\" already exists");
	add_fails(p, "create policy \"Own \"\"rows\"\"\" on todos",
		  "policy \"Own \"rows\"\" for table \"todos\" already exists");
	add(p, "create policy p6 on other");
	add(p, "drop policy p6 on todos");
	add(p, "DROP POLICY IF EXISTS p6 ON public.todos CASCADE");
	add_fails(p, "drop policy p6 on todos", "policy \"p6\" for table \"todos\" does not exist");
	assert_int_equal(rt_policies_count(p, NULL), 7);
	add(p, "create policy p6 on todos using (true)");
	rt_policies_unref(p);

	/* ALTER POLICY */
	p = rt_policies_new();
	add(p, "alter table t enable row level security");
	add(p, "create policy own on t for select to authenticated using (owner = auth.uid())");
	add(p, "create policy ins on t for insert with check (true)");
	expect(p, "t", RT_POLICY_SELECT, false, "anon", "{\"sub\":\"u\"}", RT_POLICY_DENY_ALL, "");
	add(p, "ALTER POLICY own ON public.t TO anon, authenticated");
	expect(p, "t", RT_POLICY_SELECT, false, "anon", "{\"sub\":\"u\"}", RT_POLICY_ROWS,
	       "c(\"owner\",eq,[\"u\"])");
	add(p, "alter policy own on t using (editor = auth.uid())");
	expect(p, "t", RT_POLICY_SELECT, false, "anon", "{\"sub\":\"u\"}", RT_POLICY_ROWS,
	       "c(\"editor\",eq,[\"u\"])");
	add(p, "alter policy own on t rename to \"Own\"");
	add_fails(p, "alter policy own on t using (true)",
		  "policy \"own\" for table \"t\" does not exist");
	add_fails(p, "alter policy ins on t rename to \"Own\"",
		  "policy \"Own\" for table \"t\" already exists");
	add_fails(p, "alter policy ins on t using (true)",
		  "policy \"ins\" on public.t: only WITH CHECK expression allowed for INSERT");
	add_fails(p, "alter policy \"Own\" on t with check (true)",
		  "policy \"Own\" on public.t: WITH CHECK cannot be applied to SELECT or DELETE");
	add_fails(p, "alter policy \"Own\" on t using (now())",
		  "policy \"Own\" on public.t: unsupported expression at offset 31: now()");
	expect(p, "t", RT_POLICY_SELECT, false, "anon", "{\"sub\":\"u\"}", RT_POLICY_ROWS,
	       "c(\"editor\",eq,[\"u\"])");
	assert_int_equal(rt_policies_count(p, NULL), 2);
	rt_policies_unref(p);
}

static void test_statement_errors(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	add_fails(p, "create policy \"own rows\" on public.t using (created_at < now())",
		  "policy \"own rows\" on public.t: unsupported expression at offset 57: now()");
	add_fails(
		p, "create policy x on t using (a = b)",
		"policy \"x\" on public.t: unsupported expression (column compared with column) at "
		"offset 28: a = b");
	add_fails(p, "create policy x on t using (exists (select 1 from u where u.id = t.id))",
		  "policy \"x\" on public.t: unsupported expression at offset 28: exists (select 1 "
		  "from u where u.id = t.i...");
	add_fails(
		p, "create policy x on t using (id in (select id from u))",
		"policy \"x\" on public.t: unsupported expression (subquery) at offset 34: (select "
		"id from u)");
	add_fails(p, "create policy x on t using (n + 1 > 2)",
		  "policy \"x\" on public.t: unsupported expression at offset 28: n + 1");
	add_fails(p, "create policy x on t using (name like 'a%' escape '!')",
		  "policy \"x\" on public.t: unsupported expression at offset 43: escape");
	add_fails(p, "create policy x on t using (a = 'x)",
		  "policy \"x\" on public.t: unterminated quoted string at offset 32: '");
	add_fails(p, "create policy x on t using (a = 1",
		  "policy \"x\" on public.t: syntax error at offset 33 (end of input)");
	add_fails(p, "create policy x on t using a = 1",
		  "policy \"x\" on public.t: syntax error at offset 27: a");
	add_fails(p, "create policy x on t for everything",
		  "policy \"x\" on public.t: syntax error at offset 25: everything");
	add_fails(p, "create policy x on t using (true) for select",
		  "policy \"x\" on public.t: syntax error at offset 34: for");
	add_fails(p, "create policy x on t to current_user",
		  "policy \"x\" on public.t: unsupported role at offset 24: current_user");
	add_fails(
		p, "create policy x on t using (auth.jwt() = 'x')",
		"policy \"x\" on public.t: invalid expression (a json value compared; use ->> for "
		"text) at offset 28: auth.jwt()");
	add_fails(p, "create policy x on t using (data ->> 'k' = 'v')",
		  "policy \"x\" on public.t: unsupported expression (json path on a column) at "
		  "offset 28: data ->> 'k'");
	add_fails(p, "create policy x on t using (other.a = 1)",
		  "policy \"x\" on public.t: unsupported expression (column of another table) at "
		  "offset 28: other.a");
	add_fails(p, "create policy x on t using (tag = ((auth.jwt() -> 'a') ->> 'x'::int))",
		  "policy \"x\" on public.t: invalid input syntax for type integer at offset 59: "
		  "'x'::int");
	add_fails(p, "create policy x on t using (tags = any (array['a']) and 'a' = any(tags))",
		  "policy \"x\" on public.t: unsupported expression (array column) at offset 65: "
		  "(tags)");
	add_fails(p, "create policy x on t for insert using (true)",
		  "policy \"x\" on public.t: only WITH CHECK expression allowed for INSERT");
	add_fails(p, "create policy x on t for select with check (true)",
		  "policy \"x\" on public.t: WITH CHECK cannot be applied to SELECT or DELETE");
	add_fails(p, "create policy x on t for delete using (true) with check (true)",
		  "policy \"x\" on public.t: WITH CHECK cannot be applied to SELECT or DELETE");
	add_fails(p, "create policy on t", "policy \"on\": syntax error at offset 17: t");
	add_fails(p, "create policy x on t using (a = E'x')",
		  "policy \"x\" on public.t: unsupported string constant at offset 32: E");
	add_fails(
		p, "create policy x on t using (a = $1)",
		"policy \"x\" on public.t: unsupported dollar-quoted string or parameter at offset "
		"32: $");
	add_fails(p, "create policy x on t using (a = 1) /* open",
		  "policy \"x\" on public.t: unterminated comment at offset 35: /");
	/* a long excerpt is cut */
	add_fails(p,
		  "create policy x on t using (lower('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') = "
		  "n)",
		  "policy \"x\" on public.t: unsupported expression at offset 28: "
		  "lower('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...");
	add_fails(p, "create policy x on t using (coalesce(a, 'x') = 'x')",
		  "policy \"x\" on public.t: unsupported expression (a column in a function) at "
		  "offset 37: a");
	add_fails(p, "create policy x on t using (nullif('a', 'b', 'c') = n)",
		  "policy \"x\" on public.t: syntax error at offset 45: 'c'");
	assert_int_equal(rt_policies_count(p, NULL), 0);
	rt_policies_unref(p);
	/* offsets count from the statement's start: "create policy p on t using (" is 28 bytes */
	expect_expr_err("n between symmetric 1 and 2",
			"unsupported expression at offset 28: n between symmetric");
	expect_expr_err("n between 1", "syntax error at offset 39: )");
	expect_expr_err("n similar to 'x'", "unsupported expression at offset 28: n similar to");
	expect_expr_err("owner = auth.foo()", "unsupported expression at offset 36: auth.foo()");
	expect_expr_err("current_setting('app.x') = n",
			"unsupported expression at offset 28: current_setting('app.x')");
	expect_expr_err("(select owner from u) = 'x'",
			"unsupported expression (subquery) at offset 28: (select owner from u)");
	expect_expr_err("n = 'a' = 'b'", "syntax error at offset 36: =");
	expect_expr_err("1", "invalid expression (not a condition) at offset 28: 1");
	expect_expr_err("n = 1 and auth.jwt()",
			"invalid expression (not a condition) at offset 38: auth.jwt()");
	expect_expr_err("n::text[] = 'x'", "unsupported expression at offset 28: n::text[]");
	expect_expr_err("auth.jwt() ->> 'a' || n = 'x'",
			"unsupported expression (concatenation with a column) at offset 28: "
			"auth.jwt() ->> 'a' || n");
}

/* ---- PostgreSQL's semantics ---- */

static void test_semantics(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	const char *u1 = "{\"sub\":\"u1\",\"role\":\"authenticated\"}";
	/* RLS off: policies do nothing */
	add(p, "create policy own on t for select to authenticated using (owner = auth.uid())");
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", u1, RT_POLICY_ALLOW_ALL, "");
	expect(p, "nosuch", RT_POLICY_SELECT, false, "anon", NULL, RT_POLICY_ALLOW_ALL, "");
	add(p, "alter table t enable row level security");
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", u1, RT_POLICY_ROWS,
	       "c(\"owner\",eq,[\"u1\"])");
	/* other roles and commands: no permissive policy */
	expect(p, "t", RT_POLICY_SELECT, false, "anon", "{\"role\":\"anon\"}", RT_POLICY_DENY_ALL,
	       "");
	expect(p, "t", RT_POLICY_UPDATE, false, "authenticated", u1, RT_POLICY_DENY_ALL, "");
	expect(p, "t", RT_POLICY_INSERT, true, "authenticated", u1, RT_POLICY_DENY_ALL, "");
	/* bypass */
	expect(p, "t", RT_POLICY_SELECT, false, "service_role", NULL, RT_POLICY_ALLOW_ALL, "");
	{
		struct rt_query_node n;
		assert_int_equal(
			rt_policies_predicate(p, "public", "t", RT_POLICY_DELETE, false, NULL, &n),
			RT_POLICY_ALLOW_ALL);
		rt_query_node_deinit(&n);
	}
	/* missing sub: owner = NULL folds to NULL: nothing */
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", "{}", RT_POLICY_DENY_ALL, "");
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", NULL, RT_POLICY_DENY_ALL, "");

	/* permissive OR, restrictive AND */
	add(p, "create policy pub on t for select using (is_public)");
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", u1, RT_POLICY_ROWS,
	       "or(c(\"owner\",eq,[\"u1\"]),c(\"is_public\",eq,[\"true\"]))");
	expect(p, "t", RT_POLICY_SELECT, false, "anon", NULL, RT_POLICY_ROWS,
	       "c(\"is_public\",eq,[\"true\"])");
	add(p,
	    "create policy live on t as restrictive for all using (not deleted) with check (org = "
	    "auth.jwt() ->> 'org')");
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", u1, RT_POLICY_ROWS,
	       "and(or(c(\"owner\",eq,[\"u1\"]),c(\"is_public\",eq,[\"true\"])),c(\"deleted\",neq,["
	       "\"true\"]))");
	/* restrictive alone grants nothing */
	expect(p, "t", RT_POLICY_DELETE, false, "authenticated", u1, RT_POLICY_DENY_ALL, "");
	/* FOR ALL permissive with only WITH CHECK: nothing for USING, its check for writes */
	add(p, "create policy w on t for all to authenticated with check (owner = auth.uid())");
	expect(p, "t", RT_POLICY_DELETE, false, "authenticated", u1, RT_POLICY_DENY_ALL, "");
	expect(p, "t", RT_POLICY_INSERT, true, "authenticated", "{\"sub\":\"u1\",\"org\":\"o\"}",
	       RT_POLICY_ROWS, "and(c(\"owner\",eq,[\"u1\"]),c(\"org\",eq,[\"o\"]))");
	/* restrictive check with a missing claim: org = NULL → nothing */
	expect(p, "t", RT_POLICY_INSERT, true, "authenticated", u1, RT_POLICY_DENY_ALL, "");
	/* WITH CHECK falls back to USING */
	add(p, "create policy upd on t for update using (owner = auth.uid())");
	expect(p, "t", RT_POLICY_UPDATE, false, "anon", "{\"sub\":\"u2\"}", RT_POLICY_ROWS,
	       "and(c(\"owner\",eq,[\"u2\"]),c(\"deleted\",neq,[\"true\"]))");
	expect(p, "t", RT_POLICY_UPDATE, true, "anon", "{\"sub\":\"u2\",\"org\":\"o\"}",
	       RT_POLICY_ROWS, "and(c(\"owner\",eq,[\"u2\"]),c(\"org\",eq,[\"o\"]))");
	/* USING (true) for a role: every row */
	add(p, "create policy adm on t for select to admin using (true)");
	expect(p, "t", RT_POLICY_SELECT, false, "admin", "{}", RT_POLICY_ROWS,
	       "c(\"deleted\",neq,[\"true\"])");
	add(p, "alter table u enable row level security");
	add(p, "create policy all_u on u using (true)");
	expect(p, "u", RT_POLICY_DELETE, false, "anon", NULL, RT_POLICY_ALLOW_ALL, "");
	expect(p, "u", RT_POLICY_INSERT, true, "anon", NULL, RT_POLICY_ALLOW_ALL, "");
	add(p, "create policy none_u on u as restrictive using (false)");
	expect(p, "u", RT_POLICY_SELECT, false, "anon", NULL, RT_POLICY_DENY_ALL, "");
	/* disabling lifts it */
	add(p, "alter table u disable row level security");
	expect(p, "u", RT_POLICY_SELECT, false, "anon", NULL, RT_POLICY_ALLOW_ALL, "");
	rt_policies_unref(p);
}

/* ---- claims and folding ---- */

static void test_claims(void **state)
{
	(void)state;
	const char *c = "{\"sub\":\"u1\",\"role\":\"authenticated\",\"email\":\"a@x.io\","
			"\"app_metadata\":{\"org\":\"o1\",\"level\":7,\"tags\":[\"x\",\"y\"]},"
			"\"teams\":[\"t1\",2,true,null,{\"k\":1}],\"admin\":true}";
	expect_expr("owner = auth.uid()", c, RT_POLICY_ROWS, "c(\"owner\",eq,[\"u1\"])");
	expect_expr("auth.uid() = owner", c, RT_POLICY_ROWS, "c(\"owner\",eq,[\"u1\"])");
	expect_expr("auth.uid() < n", c, RT_POLICY_ROWS, "c(\"n\",gt,[\"u1\"])");
	expect_expr("owner = (select auth.uid())", c, RT_POLICY_ROWS, "c(\"owner\",eq,[\"u1\"])");
	expect_expr("(( SELECT auth.uid() AS uid) = owner)", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("owner = (SELECT auth.uid() uid)", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("t.owner = auth.uid()::text", c, RT_POLICY_ROWS, "c(\"owner\",eq,[\"u1\"])");
	expect_expr("public.t.owner = CAST(auth.uid() AS uuid)", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("owner = current_setting('request.jwt.claim.sub', true)", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("owner = (current_setting('request.jwt.claims', true)::json ->> 'sub')::uuid",
		    c, RT_POLICY_ROWS, "c(\"owner\",eq,[\"u1\"])");
	expect_expr("email = auth.email()", c, RT_POLICY_ROWS, "c(\"email\",eq,[\"a@x.io\"])");
	expect_expr("org = auth.jwt() -> 'app_metadata' ->> 'org'", c, RT_POLICY_ROWS,
		    "c(\"org\",eq,[\"o1\"])");
	expect_expr("(org)::text = ((auth.jwt() -> 'app_metadata'::text) ->> 'org'::text)", c,
		    RT_POLICY_ROWS, "c(\"org\",eq,[\"o1\"])");
	expect_expr("n <= (auth.jwt() -> 'app_metadata' ->> 'level')::int", c, RT_POLICY_ROWS,
		    "c(\"n\",lte,[\"7\"])");
	expect_expr("tag = auth.jwt() -> 'app_metadata' -> 'tags' ->> 1", c, RT_POLICY_ROWS,
		    "c(\"tag\",eq,[\"y\"])");
	expect_expr("tag = auth.jwt() -> 'app_metadata' -> 'tags' ->> -1", c, RT_POLICY_ROWS,
		    "c(\"tag\",eq,[\"y\"])");
	/* PostgreSQL deparses a negative index as a cast string */
	expect_expr(
		"tag = ((auth.jwt() -> 'app_metadata'::text) -> 'tags'::text) ->> '-1'::integer", c,
		RT_POLICY_ROWS, "c(\"tag\",eq,[\"y\"])");
	expect_expr("tag = auth.jwt() -> 'app_metadata' ->> 0::text", c, RT_POLICY_DENY_ALL, "");
	expect_expr("tag = auth.jwt() -> 'app_metadata' -> 'tags' ->> 5", c, RT_POLICY_DENY_ALL,
		    "");
	expect_expr("tag = auth.jwt() -> 'app_metadata' ->> 'nope'", c, RT_POLICY_DENY_ALL, "");
	expect_expr("tag = auth.jwt() -> 0 ->> 'x'", c, RT_POLICY_DENY_ALL, "");
	/* constants fold */
	expect_expr("auth.role() = 'authenticated'", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("auth.role() = 'anon'", c, RT_POLICY_DENY_ALL, "");
	expect_expr("auth.uid() is not null", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("auth.uid() is null", "{}", RT_POLICY_ALLOW_ALL, "");
	expect_expr("(auth.jwt() ->> 'admin')::boolean", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("(auth.jwt() ->> 'admin')::boolean is true", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("(auth.jwt() -> 'app_metadata' ->> 'level')::int > 10", c, RT_POLICY_DENY_ALL,
		    "");
	expect_expr("(auth.jwt() -> 'app_metadata' ->> 'level')::int > 5", c, RT_POLICY_ALLOW_ALL,
		    "");
	expect_expr("auth.jwt() -> 'app_metadata' ->> 'level' > '10'", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("(auth.jwt() -> 'sub')::text = '\"u1\"'", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("auth.jwt() -> 'nope' is null", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("'room:' || auth.uid() = 'room:u1'", c, RT_POLICY_ALLOW_ALL, "");
	/* coalesce, nullif over constants */
	expect_expr("owner = coalesce(auth.jwt() ->> 'nope', auth.uid(), 'x')", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("owner = coalesce(nullif(auth.jwt() ->> 'sub', 'u1'), 'anon')", c,
		    RT_POLICY_ROWS, "c(\"owner\",eq,[\"anon\"])");
	expect_expr("coalesce((auth.jwt() ->> 'admin')::boolean, false)", c, RT_POLICY_ALLOW_ALL,
		    "");
	expect_expr("coalesce((auth.jwt() ->> 'nope')::boolean, false) or n = 1", c, RT_POLICY_ROWS,
		    "c(\"n\",eq,[\"1\"])");
	expect_expr("coalesce(auth.jwt() -> 'nope', auth.jwt() -> 'teams') ->> 0 = team", c,
		    RT_POLICY_ROWS, "c(\"team\",eq,[\"t1\"])");
	expect_expr("nullif((auth.jwt() -> 'app_metadata' ->> 'level')::int, 7) is null", c,
		    RT_POLICY_ALLOW_ALL, "");
	/* three-valued folding */
	expect_expr("auth.role() = 'admin' or owner = auth.uid()", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("auth.role() = 'authenticated' or owner = auth.uid()", c, RT_POLICY_ALLOW_ALL,
		    "");
	expect_expr("auth.jwt() ->> 'nope' = 'x' or owner = auth.uid()", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("not (auth.jwt() ->> 'nope' = 'x') or owner = 'a'", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"a\"])");
	expect_expr("not (owner = auth.uid())", "{}", RT_POLICY_DENY_ALL, "");
	expect_expr("owner <> null", c, RT_POLICY_DENY_ALL, "");
	expect_expr("owner = null or n = 1", c, RT_POLICY_ROWS, "c(\"n\",eq,[\"1\"])");
	expect_expr("not (n > 1 and owner = 'x')", c, RT_POLICY_ROWS,
		    "or(c(\"n\",lte,[\"1\"]),c(\"owner\",neq,[\"x\"]))");
	expect_expr("not not (n >= 1)", c, RT_POLICY_ROWS, "c(\"n\",gte,[\"1\"])");
	expect_expr("null is null and n = -2", c, RT_POLICY_ROWS, "c(\"n\",eq,[\"-2\"])");
	expect_expr("n = 1 and (n = 2 and (n = 3 or false))", c, RT_POLICY_ROWS,
		    "and(c(\"n\",eq,[\"1\"]),c(\"n\",eq,[\"2\"]),c(\"n\",eq,[\"3\"]))");
	/* IN, ANY */
	expect_expr("team = any (auth.jwt() -> 'teams')", c, RT_POLICY_ROWS,
		    "c(\"team\",in,[\"t1\",\"2\",\"true\",\"{\\\"k\\\":1}\"])");
	expect_expr("team <> all (auth.jwt() -> 'teams')", c, RT_POLICY_DENY_ALL, "");
	expect_expr("team <> all (auth.jwt() -> 'app_metadata' -> 'tags')", c, RT_POLICY_ROWS,
		    "!c(\"team\",in,[\"x\",\"y\"])");
	expect_expr("team = any (auth.jwt() -> 'nope')", c, RT_POLICY_DENY_ALL, "");
	expect_expr("team = any (auth.jwt() -> 'sub')", c, RT_POLICY_DENY_ALL, "");
	expect_expr("(team = ANY (ARRAY['a'::text, 'b'::text]))", c, RT_POLICY_ROWS,
		    "c(\"team\",in,[\"a\",\"b\"])");
	expect_expr("team = any ('{a,\"b,c\",NULL}'::text[])", c, RT_POLICY_ROWS,
		    "c(\"team\",in,[\"a\",\"b,c\"])");
	expect_expr("team in ('a', auth.uid(), null)", c, RT_POLICY_ROWS,
		    "c(\"team\",in,[\"a\",\"u1\"])");
	expect_expr("team not in ('a', null)", c, RT_POLICY_DENY_ALL, "");
	expect_expr("team not in ('a', 'b')", c, RT_POLICY_ROWS, "!c(\"team\",in,[\"a\",\"b\"])");
	expect_expr("auth.uid() in (owner, editor)", c, RT_POLICY_ROWS,
		    "or(c(\"owner\",eq,[\"u1\"]),c(\"editor\",eq,[\"u1\"]))");
	expect_expr("auth.uid() in ('u1', owner)", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("(owner IN ( SELECT auth.uid() AS uid))", c, RT_POLICY_ROWS,
		    "c(\"owner\",in,[\"u1\"])");
	expect_expr("auth.uid() = any (array[owner, 'x'])", c, RT_POLICY_ROWS,
		    "c(\"owner\",eq,[\"u1\"])");
	expect_expr("auth.uid() in ('a', 'b')", c, RT_POLICY_DENY_ALL, "");
	expect_expr("auth.uid() in ('a', null)", c, RT_POLICY_DENY_ALL, "");
	expect_expr("not (auth.uid() in ('a', null))", c, RT_POLICY_DENY_ALL, "");
	expect_expr("auth.uid() not in ('a', 'b')", c, RT_POLICY_ALLOW_ALL, "");
	/* IS */
	expect_expr("owner is null", c, RT_POLICY_ROWS, "c(\"owner\",is,[\"null\"])");
	expect_expr("owner is not null", c, RT_POLICY_ROWS, "!c(\"owner\",is,[\"null\"])");
	expect_expr("owner notnull", c, RT_POLICY_ROWS, "!c(\"owner\",is,[\"null\"])");
	expect_expr("done is true", c, RT_POLICY_ROWS, "c(\"done\",is,[\"true\"])");
	expect_expr("done is not false", c, RT_POLICY_ROWS, "!c(\"done\",is,[\"false\"])");
	expect_expr("owner is distinct from auth.uid()", c, RT_POLICY_ROWS,
		    "or(c(\"owner\",is,[\"null\"]),c(\"owner\",neq,[\"u1\"]))");
	expect_expr("owner is not distinct from auth.uid()", c, RT_POLICY_ROWS,
		    "and(!c(\"owner\",is,[\"null\"]),c(\"owner\",eq,[\"u1\"]))");
	expect_expr("owner is not distinct from auth.uid()", "{}", RT_POLICY_ROWS,
		    "c(\"owner\",is,[\"null\"])");
	/* BETWEEN */
	expect_expr("n between 1 and auth.jwt() ->> 'n'", "{\"n\":5}", RT_POLICY_ROWS,
		    "and(c(\"n\",gte,[\"1\"]),c(\"n\",lte,[\"5\"]))");
	expect_expr("n not between 1 and 5", c, RT_POLICY_ROWS,
		    "or(c(\"n\",lt,[\"1\"]),c(\"n\",gt,[\"5\"]))");
	expect_expr("n between 1 and 5 and n <> 3", c, RT_POLICY_ROWS,
		    "and(c(\"n\",gte,[\"1\"]),c(\"n\",lte,[\"5\"]),c(\"n\",neq,[\"3\"]))");
	expect_expr("auth.jwt() ->> 'n' between '1' and '9'", "{\"n\":5}", RT_POLICY_ALLOW_ALL, "");
	/* LIKE */
	expect_expr("name like 'a%'", c, RT_POLICY_ROWS, "c(\"name\",like,[\"a%\"])");
	expect_expr("name !~~* 'A%'", c, RT_POLICY_ROWS, "!c(\"name\",ilike,[\"A%\"])");
	expect_expr("auth.email() like '%@x.io'", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("auth.email() not like '%@x.io'", c, RT_POLICY_DENY_ALL, "");
	/* realtime.topic() */
	{
		struct rt_policies *p = rt_policies_new();
		add(p, "alter table realtime.messages enable row level security");
		add(p, "create policy \"room members\" on realtime.messages for select to "
		       "authenticated using (realtime.topic() = 'room:' || auth.uid() and "
		       "realtime.messages.extension in ('broadcast', 'presence'))");
		json_t *cl = json_loads(c, 0, NULL);
		struct rt_auth who = {"authenticated", cl, "room:u1"};
		struct rt_query_node n;
		assert_int_equal(rt_policies_predicate(p, "realtime", "messages", RT_POLICY_SELECT,
						       false, &who, &n),
				 RT_POLICY_ROWS);
		struct rt_buf b;
		rt_buf_init(&b);
		rt_policy_canon(&n, &b);
		assert_string_equal(b.data, "c(\"extension\",in,[\"broadcast\",\"presence\"])");
		rt_buf_deinit(&b);
		rt_query_node_deinit(&n);
		who.topic = "room:u2";
		assert_int_equal(rt_policies_predicate(p, "realtime", "messages", RT_POLICY_SELECT,
						       false, &who, &n),
				 RT_POLICY_DENY_ALL);
		who.topic = NULL;
		assert_int_equal(rt_policies_predicate(p, "realtime", "messages", RT_POLICY_SELECT,
						       false, &who, &n),
				 RT_POLICY_DENY_ALL);
		json_decref(cl);
		rt_policies_unref(p);
	}
}

/* The example of docs/security.md. */
static void test_doc_example(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	add(p, "alter table todos enable row level security");
	add(p, "create policy \"own rows\" on todos for all to authenticated\n"
	       "    using (owner = (select auth.uid())) with check (owner = (select auth.uid()))");
	add(p, "create policy \"team read\" on todos for select\n"
	       "    using (team_id = any (auth.jwt() -> 'app_metadata' -> 'teams'))");
	add(p, "create policy \"not archived\" on todos as restrictive using (not archived)");
	const char *c = "{\"sub\":\"u1\",\"app_metadata\":{\"teams\":[\"a\",\"b\"]}}";
	expect(p, "todos", RT_POLICY_SELECT, false, "authenticated", c, RT_POLICY_ROWS,
	       "and(or(c(\"owner\",eq,[\"u1\"]),c(\"team_id\",in,[\"a\",\"b\"])),c(\"archived\","
	       "neq,[\"true\"]))");
	expect(p, "todos", RT_POLICY_INSERT, true, "authenticated", c, RT_POLICY_ROWS,
	       "and(c(\"owner\",eq,[\"u1\"]),c(\"archived\",neq,[\"true\"]))");
	expect(p, "todos", RT_POLICY_SELECT, false, "anon", c, RT_POLICY_ROWS,
	       "and(c(\"team_id\",in,[\"a\",\"b\"]),c(\"archived\",neq,[\"true\"]))");
	rt_policies_unref(p);
	expect_expr("n < 1e3 and (auth.uid() = 'x') is unknown", "{}", RT_POLICY_ROWS,
		    "c(\"n\",lt,[\"1e3\"])");
	expect_expr_err("(done = true) is unknown",
			"unsupported expression at offset 28: (done = true) is unknown");
}

/* ---- catalog definitions ---- */

static void test_defs(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	rt_policies_set_enabled(p, "public", "t", true);
	char err[512];
	const char *roles[] = {"authenticated", NULL};
	struct rt_policy_def d = {"public",
				  "t",
				  "own",
				  true,
				  RT_POLICY_SELECT,
				  roles,
				  "(( SELECT auth.uid() AS uid) = user_id)",
				  NULL};
	assert_int_equal(rt_policies_add_def(p, &d, err, sizeof err), 0);
	struct rt_policy_def d2 = {"public",
				   "t",
				   "team",
				   true,
				   RT_POLICY_ALL,
				   NULL,
				   "((team_id)::text = ANY ((ARRAY['a'::character varying, "
				   "'b'::character varying])::text[]))",
				   "((auth.jwt() ->> 'role'::text) = 'admin'::text)"};
	assert_int_equal(rt_policies_add_def(p, &d2, err, sizeof err), 0);
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", "{\"sub\":\"u\"}", RT_POLICY_ROWS,
	       "or(c(\"user_id\",eq,[\"u\"]),c(\"team_id\",in,[\"a\",\"b\"]))");
	expect(p, "t", RT_POLICY_INSERT, true, "anon", "{\"role\":\"admin\"}", RT_POLICY_ALLOW_ALL,
	       "");
	expect(p, "t", RT_POLICY_INSERT, true, "anon", "{\"role\":\"anon\"}", RT_POLICY_DENY_ALL,
	       "");
	/* outside the subset: opaque */
	struct rt_policy_def d3 = {"public",
				   "t",
				   "member",
				   false,
				   RT_POLICY_UPDATE,
				   roles,
				   "(EXISTS ( SELECT 1 FROM members m WHERE (m.uid = auth.uid())))",
				   NULL};
	assert_int_equal(rt_policies_add_def(p, &d3, err, sizeof err), 1);
	assert_string_equal(err, "policy \"member\" on public.t: USING: unsupported expression at "
				 "offset 1: EXISTS ( SELECT 1 FROM members m WHERE (...");
	size_t n_opaque;
	assert_int_equal(rt_policies_count(p, &n_opaque), 3);
	assert_int_equal(n_opaque, 1);
	expect(p, "t", RT_POLICY_UPDATE, false, "authenticated", "{}", RT_POLICY_OPAQUE, "");
	expect(p, "t", RT_POLICY_UPDATE, true, "authenticated", "{}", RT_POLICY_OPAQUE, "");
	/* not applicable to anon, nor to SELECT */
	expect(p, "t", RT_POLICY_UPDATE, false, "anon", "{\"sub\":\"u\"}", RT_POLICY_ROWS,
	       "c(\"team_id\",in,[\"a\",\"b\"])");
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", "{\"sub\":\"u\"}", RT_POLICY_ROWS,
	       NULL);
	expect(p, "t", RT_POLICY_UPDATE, false, "service_role", "{}", RT_POLICY_ALLOW_ALL, "");
	struct rt_policy_def d4 = {NULL, "t",	       "later", true, RT_POLICY_SELECT,
				   NULL, "now() > t0", NULL};
	assert_int_equal(rt_policies_add_def(p, &d4, err, sizeof err), 1);
	assert_string_equal(err, "policy \"later\" on public.t: USING: unsupported expression at "
				 "offset 0: now()");
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", "{}", RT_POLICY_OPAQUE, "");
	/* malformed */
	assert_int_equal(rt_policies_add_def(p, &d, err, sizeof err), -1);
	assert_string_equal(err, "policy \"own\" for table \"t\" already exists");
	struct rt_policy_def bad = {"public", NULL, "x", true, RT_POLICY_ALL, NULL, NULL, NULL};
	assert_int_equal(rt_policies_add_def(p, &bad, err, sizeof err), -1);
	struct rt_policy_def bad2 = {"public", "t", "x", true, 0, NULL, NULL, NULL};
	assert_int_equal(rt_policies_add_def(p, &bad2, err, sizeof err), -1);
	struct rt_policy_def bad3 = {"public",	       "t",  "x",    true,
				     RT_POLICY_INSERT, NULL, "true", NULL};
	assert_int_equal(rt_policies_add_def(p, &bad3, err, sizeof err), -1);
	assert_int_equal(rt_policies_count(p, &n_opaque), 4);
	assert_int_equal(n_opaque, 2);
	rt_policies_unref(p);
}

/* ---- evaluation ---- */

static void test_eval(void **state)
{
	(void)state;
	const char *c = "{\"sub\":\"u1\"}";
	assert_int_equal(eval_expr("owner = auth.uid()", c, "{\"owner\":\"u1\"}"), 1);
	assert_int_equal(eval_expr("owner = auth.uid()", c, "{\"owner\":\"u2\"}"), 0);
	assert_int_equal(eval_expr("owner = auth.uid()", c, "{\"owner\":null}"), -1);
	assert_int_equal(eval_expr("owner = auth.uid()", c, "{}"), -1);
	assert_int_equal(eval_expr("not (owner = 'u1')", c, "{\"owner\":null}"), -1);
	assert_int_equal(eval_expr("owner is null", c, "{}"), 1);
	assert_int_equal(eval_expr("owner is not null", c, "{\"owner\":\"x\"}"), 1);
	/* numbers by value, bools, text by bytes */
	assert_int_equal(eval_expr("n = 10", c, "{\"n\":10}"), 1);
	assert_int_equal(eval_expr("n > 9", c, "{\"n\":10}"), 1);
	assert_int_equal(eval_expr("n > '9'", c, "{\"n\":\"10\"}"), 1);
	assert_int_equal(eval_expr("name > '9'", c, "{\"name\":\"10\"}"), 0);
	assert_int_equal(eval_expr("score = 1.5", c, "{\"score\":1.50}"), 1);
	assert_int_equal(eval_expr("n = 'x'", c, "{\"n\":1}"), -1);
	assert_int_equal(eval_expr("done", c, "{\"done\":true}"), 1);
	assert_int_equal(eval_expr("done", c, "{\"done\":false}"), 0);
	assert_int_equal(eval_expr("not done", c, "{\"done\":false}"), 1);
	assert_int_equal(eval_expr("not done", c, "{\"done\":null}"), -1);
	assert_int_equal(eval_expr("done is true", c, "{\"done\":null}"), 0);
	assert_int_equal(eval_expr("done is not true", c, "{\"done\":null}"), 1);
	assert_int_equal(eval_expr("done = true", c, "{\"done\":\"t\"}"), 1);
	/* OR / AND with NULL */
	assert_int_equal(eval_expr("owner = 'u1' or n = 1", c, "{\"owner\":\"u1\"}"), 1);
	assert_int_equal(eval_expr("owner = 'u1' or n = 1", c, "{\"owner\":\"u2\"}"), -1);
	assert_int_equal(eval_expr("owner = 'u1' and n = 1", c, "{\"owner\":\"u2\"}"), 0);
	/* IN */
	assert_int_equal(eval_expr("n in (1, 2, 3)", c, "{\"n\":2}"), 1);
	assert_int_equal(eval_expr("n in (1, 2, 3)", c, "{\"n\":4}"), 0);
	assert_int_equal(eval_expr("n not in (1, 2, 3)", c, "{\"n\":4}"), 1);
	assert_int_equal(eval_expr("n not in (1, 2, 3)", c, "{}"), -1);
	assert_int_equal(eval_expr("name in ('a', 'b')", c, "{\"name\":\"b\"}"), 1);
	/* LIKE */
	assert_int_equal(eval_expr("name like 'a_c%'", c, "{\"name\":\"abcd\"}"), 1);
	assert_int_equal(eval_expr("name ilike 'A_C%'", c, "{\"name\":\"abcd\"}"), 1);
	assert_int_equal(eval_expr("name like 'A_C%'", c, "{\"name\":\"abcd\"}"), 0);
	/* distinct */
	assert_int_equal(eval_expr("owner is distinct from 'u1'", c, "{}"), 1);
	assert_int_equal(eval_expr("owner is distinct from 'u1'", c, "{\"owner\":\"u1\"}"), 0);
	assert_int_equal(eval_expr("owner is not distinct from 'u1'", c, "{}"), 0);
	/* unknown type: NULL; type_of NULL: text */
	assert_int_equal(eval_expr("unknown = 'x'", c, "{\"unknown\":\"x\"}"), -1);
	{
		struct rt_query_node n;
		memset(&n, 0, sizeof n);
		n.kind = RT_QUERY_COND;
		n.column = "n";
		n.op = RT_QUERY_EQ;
		char *vals[] = {"01"};
		n.values = vals;
		n.n_values = 1;
		json_t *row = json_loads("{\"n\":1}", 0, NULL);
		assert_int_equal(rt_policy_eval(&n, row, NULL, NULL), 0);
		assert_int_equal(rt_policy_eval(&n, row, types_of, NULL), 1);
		/* empty AND true, empty OR false */
		struct rt_query_node g;
		memset(&g, 0, sizeof g);
		g.kind = RT_QUERY_AND;
		assert_int_equal(rt_policy_eval(&g, row, types_of, NULL), 1);
		g.kind = RT_QUERY_OR;
		assert_int_equal(rt_policy_eval(&g, row, types_of, NULL), 0);
		g.is_negated = true;
		assert_int_equal(rt_policy_eval(&g, row, types_of, NULL), 1);
		json_decref(row);
	}
}

/* ---- canonical text, eq key ---- */

static char *canon_of(const char *expr, const char *claims)
{
	struct rt_policies *p = rt_policies_new();
	char sql[4096];
	snprintf(sql, sizeof sql, "create policy p on t using (%s)", expr);
	add(p, "alter table t enable row level security");
	add(p, sql);
	json_t *c = json_loads(claims, 0, NULL);
	struct rt_auth who = {"authenticated", c, NULL};
	struct rt_query_node n;
	assert_int_equal(rt_policies_predicate(p, "public", "t", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	struct rt_buf b;
	rt_buf_init(&b);
	rt_policy_canon(&n, &b);
	char *s = rt_buf_detach(&b, NULL);
	rt_query_node_deinit(&n);
	json_decref(c);
	rt_policies_unref(p);
	return s;
}

static void test_canon(void **state)
{
	(void)state;
	char *a = canon_of("owner = auth.uid()", "{\"sub\":\"u1\"}");
	char *b = canon_of("auth.uid() = owner", "{\"sub\":\"u1\",\"x\":1}");
	char *c = canon_of("owner = auth.uid()", "{\"sub\":\"u2\"}");
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	free(a);
	free(b);
	free(c);
	/* escapes keep values apart */
	a = canon_of("owner in ('a,b')", "{}");
	b = canon_of("owner in ('a', 'b')", "{}");
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	a = canon_of("owner = auth.uid()", "{\"sub\":\"a\\\",[\\\"b\"}");
	b = canon_of("owner in ('a', 'b')", "{}");
	assert_string_equal(a, "c(\"owner\",eq,[\"a\\\",[\\\"b\"])");
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	a = canon_of("owner = 'x' and n = 1", "{}");
	b = canon_of("owner = 'x' or n = 1", "{}");
	c = canon_of("not (owner = 'x' or n = 1)", "{}");
	assert_string_not_equal(a, b);
	assert_string_equal(c, "and(c(\"owner\",neq,[\"x\"]),c(\"n\",neq,[\"1\"]))");
	free(a);
	free(b);
	free(c);
	struct rt_buf buf;
	rt_buf_init(&buf);
	rt_policy_canon(NULL, &buf);
	assert_string_equal(buf.data, "and()");
	rt_buf_deinit(&buf);
}

static void test_eq_key(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	add(p, "alter table t enable row level security");
	add(p, "create policy own on t using (owner = auth.uid())");
	add(p, "create policy r on t as restrictive using (n > 0 and org = 'o')");
	json_t *c = json_loads("{\"sub\":\"u1\"}", 0, NULL);
	struct rt_auth who = {"authenticated", c, NULL};
	struct rt_query_node n;
	const char *col = NULL, *val = NULL;
	assert_int_equal(rt_policies_predicate(p, "public", "t", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	assert_true(rt_policy_eq_key(&n, &col, &val));
	assert_string_equal(col, "owner");
	assert_string_equal(val, "u1");
	rt_query_node_deinit(&n);
	add(p, "create policy pub on t using (is_public)");
	assert_int_equal(rt_policies_predicate(p, "public", "t", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	/* and(or(owner, is_public), n > 0, org = 'o'): the org conjunct */
	assert_true(rt_policy_eq_key(&n, &col, &val));
	assert_string_equal(col, "org");
	assert_string_equal(val, "o");
	rt_query_node_deinit(&n);
	json_decref(c);
	rt_policies_unref(p);

	p = rt_policies_new();
	add(p, "alter table t enable row level security");
	add(p, "create policy a on t using (owner <> 'x')");
	c = json_loads("{}", 0, NULL);
	who.claims = c;
	assert_int_equal(rt_policies_predicate(p, "public", "t", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	assert_false(rt_policy_eq_key(&n, &col, &val));
	rt_query_node_deinit(&n);
	add(p, "create policy b on t using (owner = 'y')");
	assert_int_equal(rt_policies_predicate(p, "public", "t", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	assert_false(rt_policy_eq_key(&n, &col, &val)); /* an OR */
	rt_query_node_deinit(&n);
	assert_false(rt_policy_eq_key(NULL, &col, &val));
	json_decref(c);
	rt_policies_unref(p);
}

/* ---- claim arrays in the forms PostgreSQL accepts ---- */

static const char *const elems_forms[] = {
	"team_id = ANY (ARRAY(SELECT jsonb_array_elements_text(auth.jwt() -> 'teams')))",
	"team_id = any (array(select json_array_elements_text((auth.jwt() -> 'teams')::json)))",
	"team_id::text = ANY (ARRAY(SELECT jsonb_array_elements_text((auth.jwt() -> 'teams')::jsonb)))",
	"team_id = ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text(auth.jwt() -> 'teams') AS x))",
	"team_id = ANY (SELECT jsonb_array_elements_text(auth.jwt() -> 'teams'))",
	"team_id IN (SELECT jsonb_array_elements_text(auth.jwt() -> 'teams'))",
	"team_id in (select jsonb_array_elements_text(auth.jwt() -> 'teams') e)",
	"team_id IN (SELECT jsonb_array_elements_text(current_setting('request.jwt.claims', "
	"true)::jsonb -> 'teams'))",
	"team_id = ANY (ARRAY(SELECT jsonb_array_elements_text((select auth.jwt()) -> 'teams')))",
	/* as pg_policies deparses them (PostgreSQL 15) */
	"(team_id = ANY (ARRAY( SELECT jsonb_array_elements_text((auth.jwt() -> 'teams'::text)) AS "
	"jsonb_array_elements_text)))",
	"(team_id = ANY (ARRAY( SELECT json_array_elements_text(((auth.jwt() -> 'teams'::text))::json) "
	"AS json_array_elements_text)))",
	"((team_id)::text = ANY (ARRAY( SELECT jsonb_array_elements_text((auth.jwt() -> "
	"'teams'::text)) AS jsonb_array_elements_text)))",
	"(team_id IN ( SELECT jsonb_array_elements_text((auth.jwt() -> 'teams'::text)) AS "
	"jsonb_array_elements_text))",
	"(team_id IN ( SELECT jsonb_array_elements_text(((current_setting('request.jwt.claims'::text, "
	"true))::jsonb -> 'teams'::text)) AS jsonb_array_elements_text))",
	"(team_id = ANY (ARRAY( SELECT jsonb_array_elements_text((( SELECT auth.jwt() AS jwt) -> "
	"'teams'::text)) AS jsonb_array_elements_text)))",
};

static const char *const elems_negated[] = {
	"team_id <> ALL (ARRAY(SELECT jsonb_array_elements_text(auth.jwt() -> 'teams')))",
	"team_id NOT IN (SELECT jsonb_array_elements_text(auth.jwt() -> 'teams'))",
	"NOT (team_id = ANY (ARRAY(SELECT jsonb_array_elements_text(auth.jwt() -> 'teams'))))",
	"(team_id <> ALL (ARRAY( SELECT jsonb_array_elements_text((auth.jwt() -> 'teams'::text)) AS "
	"jsonb_array_elements_text)))",
	"(NOT (team_id IN ( SELECT jsonb_array_elements_text((auth.jwt() -> 'teams'::text)) AS "
	"jsonb_array_elements_text)))",
};

static const char *const qmark_forms[] = {
	"(auth.jwt() -> 'teams') ? team_id",
	"auth.jwt() -> 'teams' ? team_id::text",
	"((auth.jwt() -> 'teams'::text) ? team_id)",
	"((auth.jwt() -> 'teams'::text) ? (team_id)::text)",
	"(current_setting('request.jwt.claims', true)::jsonb -> 'teams')?team_id",
};

/* A catalog definition of the SELECT policy "d" on t. */
static struct rt_policies *def_set(const char *using_sql, int want_rc)
{
	struct rt_policies *p = rt_policies_new();
	rt_policies_set_enabled(p, "public", "t", true);
	char err[512] = "";
	struct rt_policy_def d = {"public", "t", "d", true, RT_POLICY_SELECT, NULL, using_sql, NULL};
	int rc = rt_policies_add_def(p, &d, err, sizeof err);
	if (rc != want_rc)
		fail_msg("%s: rc %d (%s)", using_sql, rc, err);
	return p;
}

/* The expression both as a statement and as a catalog definition. */
static void expect_both(const char *expr, const char *claims, enum rt_policy_verdict want_v,
			const char *want_canon)
{
	expect_expr(expr, claims, want_v, want_canon);
	struct rt_policies *p = def_set(expr, 0);
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", claims, want_v, want_canon);
	rt_policies_unref(p);
}

/* The statement is refused as unsupported or invalid, as want begins. */
static void expect_refused(const char *expr, const char *want)
{
	struct rt_policies *p = rt_policies_new();
	char sql[4096], err[512] = "";
	snprintf(sql, sizeof sql, "create policy p on t using (%s)", expr);
	int rc = add_rc(p, sql, err, sizeof err);
	const char *kind = !strncmp(want, "invalid", 7)  ? "invalid"
			   : !strncmp(want, "syntax", 6) ? "syntax"
							 : "unsupported";
	if (rc != -1 || strncmp(err, "policy \"p\" on public.t: ", 24) ||
	    strncmp(err + 24, kind, strlen(kind)))
		fail_msg("%s:\n  rc %d\n  got  %s\n  want %s", sql, rc, err, want);
	rt_policies_unref(p);
}

static void test_claim_arrays(void **state)
{
	(void)state;
	const char *c = "{\"sub\":\"u1\",\"teams\":[\"t1\",\"t2\"],\"str\":\"t1\",\"none\":null}";
	const char *mixed = "{\"teams\":[\"t1\",2,true,null,{\"k\":1},[\"t2\"]]}";
	const char *empty = "{\"teams\":[]}";
	const char *scalar = "{\"teams\":\"t1\"}";
	const char *object = "{\"teams\":{\"t1\":1,\"t2\":null}}";
	const char *jnull = "{\"teams\":null}";
	const char *missing = "{\"sub\":\"u1\"}";
	for (size_t i = 0; i < sizeof elems_forms / sizeof elems_forms[0]; i++) {
		const char *f = elems_forms[i];
		expect_both(f, c, RT_POLICY_ROWS, "c(\"team_id\",in,[\"t1\",\"t2\"])");
		/* elements as text; a JSON null element is NULL; nested values as jsonb prints them */
		expect_both(f, mixed, RT_POLICY_ROWS,
			    "c(\"team_id\",in,[\"t1\",\"2\",\"true\",\"{\\\"k\\\": 1}\","
			    "\"[\\\"t2\\\"]\"])");
		/* no elements (missing claim: no rows, an empty array): no match */
		expect_both(f, empty, RT_POLICY_DENY_ALL, "");
		expect_both(f, missing, RT_POLICY_DENY_ALL, "");
		expect_both(f, NULL, RT_POLICY_DENY_ALL, "");
		/* not an array (PostgreSQL: cannot extract elements): no row */
		expect_both(f, scalar, RT_POLICY_DENY_ALL, "");
		expect_both(f, object, RT_POLICY_DENY_ALL, "");
		expect_both(f, jnull, RT_POLICY_DENY_ALL, "");
		assert_int_equal(eval_expr(f, c, "{\"team_id\":\"t2\"}"), 1);
		assert_int_equal(eval_expr(f, c, "{\"team_id\":\"t3\"}"), 0);
		assert_int_equal(eval_expr(f, c, "{\"team_id\":null}"), -1);
		assert_int_equal(eval_expr(f, c, "{}"), -1);
		/* t3 = NULL element: NULL, folded to false like every NULL */
		assert_int_equal(eval_expr(f, mixed, "{\"team_id\":\"t3\"}"), 0);
		assert_int_equal(eval_expr(f, mixed, "{\"team_id\":\"2\"}"), 1);
		assert_int_equal(eval_expr(f, missing, "{\"team_id\":\"t1\"}"), 0);
		assert_int_equal(eval_expr(f, scalar, "{\"team_id\":\"t1\"}"), 0);
	}
	for (size_t i = 0; i < sizeof elems_negated / sizeof elems_negated[0]; i++) {
		const char *f = elems_negated[i];
		expect_both(f, c, RT_POLICY_ROWS, "!c(\"team_id\",in,[\"t1\",\"t2\"])");
		expect_both(f, mixed, RT_POLICY_DENY_ALL, ""); /* NOT IN with a NULL */
		/* <> ALL of no elements is true, even for a NULL column */
		expect_both(f, empty, RT_POLICY_ALLOW_ALL, "");
		expect_both(f, missing, RT_POLICY_ALLOW_ALL, "");
		/* PostgreSQL's error stays no row under NOT */
		expect_both(f, scalar, RT_POLICY_DENY_ALL, "");
		expect_both(f, jnull, RT_POLICY_DENY_ALL, "");
		assert_int_equal(eval_expr(f, c, "{\"team_id\":\"t3\"}"), 1);
		assert_int_equal(eval_expr(f, c, "{\"team_id\":\"t1\"}"), 0);
		assert_int_equal(eval_expr(f, c, "{\"team_id\":null}"), -1);
		assert_int_equal(eval_expr(f, missing, "{\"team_id\":null}"), 1);
	}
	for (size_t i = 0; i < sizeof qmark_forms / sizeof qmark_forms[0]; i++) {
		const char *f = qmark_forms[i];
		char neg[512];
		snprintf(neg, sizeof neg, "not (%s)", f);
		expect_both(f, c, RT_POLICY_ROWS, "c(\"team_id\",in,[\"t1\",\"t2\"])");
		/* string elements only: no null, numbers or nested values */
		expect_both(f, mixed, RT_POLICY_ROWS, "c(\"team_id\",in,[\"t1\"])");
		expect_both(neg, mixed, RT_POLICY_ROWS, "!c(\"team_id\",in,[\"t1\"])");
		/* an object's keys, a string scalar itself */
		expect_both(f, object, RT_POLICY_ROWS, "c(\"team_id\",in,[\"t1\",\"t2\"])");
		expect_both(f, scalar, RT_POLICY_ROWS, "c(\"team_id\",in,[\"t1\"])");
		/* nothing to match: false for a value, NULL for a NULL column */
		expect_both(f, empty, RT_POLICY_DENY_ALL, "");
		expect_both(f, jnull, RT_POLICY_DENY_ALL, "");
		expect_both(neg, empty, RT_POLICY_ROWS, "!c(\"team_id\",is,[\"null\"])");
		expect_both(neg, jnull, RT_POLICY_ROWS, "!c(\"team_id\",is,[\"null\"])");
		/* a missing claim is NULL, also negated */
		expect_both(f, missing, RT_POLICY_DENY_ALL, "");
		expect_both(neg, missing, RT_POLICY_DENY_ALL, "");
		assert_int_equal(eval_expr(f, c, "{\"team_id\":\"t1\"}"), 1);
		assert_int_equal(eval_expr(f, c, "{\"team_id\":\"t3\"}"), 0);
		assert_int_equal(eval_expr(f, c, "{\"team_id\":null}"), -1);
		assert_int_equal(eval_expr(neg, c, "{\"team_id\":\"t3\"}"), 1);
		assert_int_equal(eval_expr(neg, c, "{\"team_id\":null}"), -1);
		assert_int_equal(eval_expr(neg, empty, "{\"team_id\":\"t3\"}"), 1);
		/* PostgreSQL: NULL; here IS NOT NULL: false (hidden alike) */
		assert_int_equal(eval_expr(neg, empty, "{\"team_id\":null}"), 0);
		assert_int_equal(eval_expr(f, mixed, "{\"team_id\":\"2\"}"), 0);
	}
	/* constants on both sides fold */
	expect_expr("'t2' IN (SELECT jsonb_array_elements_text(auth.jwt() -> 'teams'))", c,
		    RT_POLICY_ALLOW_ALL, "");
	expect_expr("auth.uid() = ANY (ARRAY(SELECT jsonb_array_elements_text(auth.jwt() -> "
		    "'teams')))",
		    c, RT_POLICY_DENY_ALL, "");
	expect_expr("(auth.jwt() -> 'teams') ? 't1'", c, RT_POLICY_ALLOW_ALL, "");
	expect_expr("not ((auth.jwt() -> 'teams') ? 't3') and team_id = 'x'", c, RT_POLICY_ROWS,
		    "c(\"team_id\",eq,[\"x\"])");
	expect_expr("(auth.jwt() -> 'nope') ? 't1' is null", c, RT_POLICY_ALLOW_ALL, "");
	/* an IN list and a ? next to the subquery forms */
	expect_expr("team_id in ('a') or (auth.jwt() -> 'teams') ? team_id", c, RT_POLICY_ROWS,
		    "or(c(\"team_id\",in,[\"a\"]),c(\"team_id\",in,[\"t1\",\"t2\"]))");
	/* refused */
	expect_refused("team_id = ANY (ARRAY(SELECT jsonb_array_elements_text(tags)))",
			"unsupported expression at offset 58: tags");
	expect_refused("team_id IN (SELECT jsonb_array_elements_text(auth.jwt() ->> 'teams'))",
			"invalid expression at offset 45: auth.jwt() ->> 'teams'");
	expect_refused("team_id = ANY (ARRAY(SELECT jsonb_array_elements_text(auth.jwt() -> "
			"'teams') FROM x))",
			"unsupported expression at offset 15: ARRAY(SELECT "
			"jsonb_array_elements_text(auth.jwt() -> 'teams') FROM x)");
	expect_refused("team_id IN (SELECT jsonb_array_elements_text(auth.jwt() -> 'teams') AS e "
			"WHERE e <> '')",
			"unsupported expression at offset 11: (SELECT "
			"jsonb_array_elements_text(auth.jwt() -> 'teams') AS e WHERE e <> '')");
	expect_refused("(auth.jwt() -> 'teams') ? 1", "invalid expression at offset 26: 1");
	expect_refused("(auth.jwt() -> 'teams') ? lower(team_id)",
			"unsupported expression at offset 26: lower(team_id)");
	expect_refused("team_id ? 'x'", "unsupported expression at offset 0: team_id ? 'x'");
	expect_refused("(auth.jwt() -> 'teams') ?| array['a']",
			"syntax error at offset 0: |");
	expect_refused("(auth.jwt() -> 'teams') @> to_jsonb(team_id)",
			"invalid expression (not a condition)");
	expect_refused("jsonb_array_elements_text(auth.jwt() -> 'teams') = team_id",
			"unsupported expression at offset 0: jsonb_array_elements_text(auth.jwt() -> "
			"'teams')");
	/* outside the subset in the catalog: opaque */
	struct rt_policies *p = def_set("(team_id = ANY (ARRAY( SELECT e.value AS e\n"
					"   FROM jsonb_array_elements_text((auth.jwt() -> "
					"'teams'::text)) e(value))))",
					1);
	expect(p, "t", RT_POLICY_SELECT, false, "authenticated", c, RT_POLICY_OPAQUE, "");
	rt_policies_unref(p);
	p = def_set("((auth.jwt() -> 'teams'::text) @> to_jsonb(team_id))", 1);
	rt_policies_unref(p);
}

/* ---- validation ---- */

static bool has_col(const char *schema, const char *table, const char *column, void *ctx)
{
	(void)ctx;
	if (!strcmp(schema, "realtime"))
		return true;
	if (!column)
		return !strcmp(table, "t");
	return !strcmp(table, "t") && (!strcmp(column, "owner") || !strcmp(column, "n"));
}

static void test_validate(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	char err[256];
	add(p, "create policy ok on t using (owner = auth.uid() or n in (1, 2))");
	add(p, "create policy rt on realtime.messages using (extension = 'broadcast')");
	assert_int_equal(rt_policies_validate(p, has_col, NULL, err, sizeof err), 0);
	add(p, "create policy \"own rows\" on t for insert with check (ownr = auth.uid())");
	assert_int_equal(rt_policies_validate(p, has_col, NULL, err, sizeof err), -1);
	assert_string_equal(err, "policy \"own rows\" on public.t: column \"ownr\" does not exist");
	rt_policies_unref(p);
	p = rt_policies_new();
	add(p, "create policy p on missing using (true)");
	assert_int_equal(rt_policies_validate(p, has_col, NULL, err, sizeof err), -1);
	assert_string_equal(err, "policy \"p\" on public.missing: table does not exist");
	rt_policies_unref(p);
}

/* ---- limits ---- */

static void test_limits(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	char err[512];
	/* nesting */
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append_str(&b, "create policy deep on t using (");
	for (int i = 0; i < 100000; i++)
		rt_buf_append_byte(&b, '(');
	assert_int_equal(rt_policies_add_statement(p, b.data, b.len, NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "nested too deeply"));
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "create policy deep on t using (");
	for (int i = 0; i < 10000; i++)
		rt_buf_append_str(&b, "not ");
	rt_buf_append_str(&b, "true)");
	assert_int_equal(rt_policies_add_statement(p, b.data, b.len, NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "nested too deeply"));
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "create policy deep on t using (auth.jwt()");
	for (int i = 0; i < 100; i++)
		rt_buf_append_str(&b, " -> 'a'");
	rt_buf_append_str(&b, " is null)");
	assert_int_equal(rt_policies_add_statement(p, b.data, b.len, NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "nested too deeply"));
	/* within the limit */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "create policy ok on t using (");
	for (int i = 0; i < 10; i++)
		rt_buf_append_str(&b, "(n = 1 or ");
	rt_buf_append_str(&b, "true");
	for (int i = 0; i < 10; i++)
		rt_buf_append_byte(&b, ')');
	rt_buf_append_byte(&b, ')');
	assert_int_equal(rt_policies_add_statement(p, b.data, b.len, NULL, err, sizeof err), 1);
	/* long expression */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "create policy long on t using (n in (0");
	for (int i = 1; i < 3000; i++)
		rt_buf_printf(&b, ",%d", i);
	rt_buf_append_str(&b, "))");
	assert_int_equal(rt_policies_add_statement(p, b.data, b.len, NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "expression is longer than 8192 bytes"));
	/* 1500 values: two IN nodes of at most 1000 */
	rt_buf_reset(&b);
	rt_buf_append_str(&b, "create policy big on u using (n in (0");
	for (int i = 1; i < 1500; i++)
		rt_buf_printf(&b, ",%d", i);
	rt_buf_append_str(&b, "))");
	assert_int_equal(rt_policies_add_statement(p, b.data, b.len, NULL, err, sizeof err), 1);
	rt_policies_set_enabled(p, "public", "u", true);
	struct rt_auth who = {"anon", NULL, NULL};
	struct rt_query_node n;
	assert_int_equal(rt_policies_predicate(p, "public", "u", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	assert_int_equal(n.kind, RT_QUERY_OR);
	assert_int_equal(n.n_children, 2);
	assert_int_equal(n.children[0].n_values, RT_QUERY_MAX_LIST);
	assert_int_equal(n.children[1].n_values, 500);
	json_t *row = json_loads("{\"n\":1499}", 0, NULL);
	assert_int_equal(rt_policy_eval(&n, row, types_of, NULL), 1);
	json_decref(row);
	rt_query_node_deinit(&n);
	/* a claim array over the list limit */
	json_t *arr = json_array();
	for (int i = 0; i < 2500; i++)
		json_array_append_new(arr, json_integer(i));
	json_t *cl = json_object();
	json_object_set_new(cl, "ids", arr);
	add(p, "create policy ids on v using (n = any (auth.jwt() -> 'ids'))");
	add(p, "create policy nids on w using (n <> all (auth.jwt() -> 'ids'))");
	rt_policies_set_enabled(p, "public", "v", true);
	rt_policies_set_enabled(p, "public", "w", true);
	who.claims = cl;
	assert_int_equal(rt_policies_predicate(p, "public", "v", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	assert_int_equal(n.kind, RT_QUERY_OR);
	assert_int_equal(n.n_children, 3);
	rt_query_node_deinit(&n);
	assert_int_equal(rt_policies_predicate(p, "public", "w", RT_POLICY_SELECT, false, &who, &n),
			 RT_POLICY_ROWS);
	assert_int_equal(n.kind, RT_QUERY_AND);
	assert_int_equal(n.n_children, 3);
	row = json_loads("{\"n\":2499}", 0, NULL);
	assert_int_equal(rt_policy_eval(&n, row, types_of, NULL), 0);
	json_decref(row);
	row = json_loads("{\"n\":2500}", 0, NULL);
	assert_int_equal(rt_policy_eval(&n, row, types_of, NULL), 1);
	json_decref(row);
	rt_query_node_deinit(&n);
	json_decref(cl);
	rt_buf_deinit(&b);
	rt_policies_unref(p);

	/* the policy count */
	p = rt_policies_new();
	for (int i = 0; i < RT_POLICY_MAX_POLICIES; i++) {
		char sql[64];
		snprintf(sql, sizeof sql, "create policy p%d on t%d", i, i % 7);
		add(p, sql);
	}
	add_fails(p, "create policy one_more on t",
		  "policy \"one_more\" on public.t: too many policies (maximum 4096)");
	add(p, "drop policy p0 on t0");
	add(p, "create policy one_more on t");
	rt_policies_unref(p);
}

static void test_refs(void **state)
{
	(void)state;
	struct rt_policies *p = rt_policies_new();
	add(p, "create policy a on t using (owner = auth.uid())");
	assert_ptr_equal(rt_policies_ref(p), p);
	rt_policies_unref(p);
	assert_int_equal(rt_policies_count(p, NULL), 1);
	rt_policies_unref(p);
	rt_policies_unref(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_statement_forms),
		cmocka_unit_test(test_statement_errors),
		cmocka_unit_test(test_semantics),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_claim_arrays),
		cmocka_unit_test(test_defs),
		cmocka_unit_test(test_eval),
		cmocka_unit_test(test_canon),
		cmocka_unit_test(test_eq_key),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_refs),
		cmocka_unit_test(test_doc_example),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
