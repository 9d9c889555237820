/*
 * Row-level security in PostgreSQL's own SQL, for both stores: the policy
 * set of a database (which tables have RLS enabled, and their policies),
 * built from `ALTER TABLE … ENABLE ROW LEVEL SECURITY` and `CREATE POLICY`
 * statements (the embedded store's schema file) or from the catalog
 * definitions PostgreSQL deparses (pg_policies), and the one place where a
 * requester's claims turn a table's policies into a row predicate.
 *
 * A predicate is a store/query.h node tree (AND/OR/NOT over column
 * conditions with literal values), the same tree the REST filters parse
 * into: the SQLite store renders it into the read's WHERE, the change feed
 * evaluates it against each change's row in C (rt_policy_eval) and indexes
 * bindings by its top-level `column = value` conjunct (rt_policy_eq_key).
 * auth.uid(), auth.role(), auth.jwt() paths and realtime.topic() are
 * replaced by the requester's values when the predicate is built, so what
 * remains mentions only the row.
 *
 * Semantics are PostgreSQL's: permissive policies of a command that apply
 * to the role are OR'ed, restrictive ones AND'ed onto that; a table with RLS
 * enabled and no permissive policy for the role yields nothing; `TO` lists
 * roles (absent or PUBLIC: every role); FOR ALL covers every command;
 * USING restricts the rows read, updated and deleted, WITH CHECK (or USING
 * when a policy has none) the rows inserted or left by an update. The role
 * service_role, and a NULL requester (the server itself), bypass RLS.
 *
 * The supported expressions are in docs/security.md (the policy section:
 * docs/security.md). A policy outside them is refused with its name
 * and the byte offset of the unsupported part (schema-file statements), or
 * kept as opaque (catalog definitions: the PostgreSQL store has the database
 * evaluate it; RT_POLICY_OPAQUE). Roles match by name (no role membership);
 * FORCE ROW LEVEL SECURITY is recorded and changes nothing (API roles never
 * own tables).
 *
 * Ownership: a policy set is reference-counted and immutable once built
 *            (the builder calls before it is shared); predicate trees are
 *            owned by the caller (rt_query_node_deinit).
 * Threads:   building on one thread; a built set is read from any thread.
 * Limits:    RT_POLICY_MAX_EXPR bytes of one expression, RT_POLICY_MAX_DEPTH
 *            nesting, RT_POLICY_MAX_POLICIES per set, RT_QUERY_MAX_LIST
 *            values in one IN list (also after a claim array is expanded).
 */
#ifndef RT_AUTH_POLICY_H
#define RT_AUTH_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "store/query.h"

#define RT_POLICY_MAX_EXPR 8192
#define RT_POLICY_MAX_DEPTH 32
#define RT_POLICY_MAX_POLICIES 4096

/* Who is asking: the verified JWT's role and claims. */
struct rt_auth {
	const char *role;     /* never NULL */
	const json_t *claims; /* the whole claims object (borrowed); NULL: {} */
	const char *topic;    /* realtime.topic() (channel authorization); NULL: SQL NULL */
};

/* Commands, as bits (a policy's FOR …). */
#define RT_POLICY_SELECT 1u
#define RT_POLICY_INSERT 2u
#define RT_POLICY_UPDATE 4u
#define RT_POLICY_DELETE 8u
#define RT_POLICY_ALL 15u

enum rt_policy_verdict {
	RT_POLICY_ALLOW_ALL, /* RLS does not apply (disabled, bypassing role): every row */
	RT_POLICY_DENY_ALL,  /* no row (no permissive policy, or it folded to false) */
	RT_POLICY_ROWS,      /* the rows the predicate in *out accepts */
	RT_POLICY_OPAQUE,    /* a policy is outside the compiled subset: ask the database */
};

/* A policy as the catalog describes it (pg_policies). */
struct rt_policy_def {
	const char *schema;      /* "public", "realtime", … */
	const char *table;
	const char *name;
	bool is_permissive;      /* false: AS RESTRICTIVE */
	unsigned cmds;           /* RT_POLICY_* bits */
	const char *const *roles; /* NULL-terminated; NULL or empty or "public": every role */
	const char *using_sql;   /* NULL when none */
	const char *check_sql;   /* NULL when none */
};

struct rt_policies;

struct rt_policies *rt_policies_new(void);
struct rt_policies *rt_policies_ref(struct rt_policies *p);
/* Drops a reference; the last one frees. NULL does nothing. */
void rt_policies_unref(struct rt_policies *p);

/*
 * Reads one SQL statement (len bytes, without its ';'). Returns 1 when it is
 * a policy statement and was taken (CREATE POLICY, ALTER POLICY, DROP
 * POLICY, ALTER TABLE … ENABLE | DISABLE | FORCE | NO FORCE ROW LEVEL
 * SECURITY), 0 when it is
 * some other statement (the caller hands it to the database), or -1 with
 * the reason in err: e.g. `policy "own rows" on public.t: unsupported
 * expression at offset 14: now()`. default_schema names unqualified tables.
 */
int rt_policies_add_statement(struct rt_policies *p, const char *stmt, size_t len,
			      const char *default_schema, char *err, size_t err_cap);

/*
 * Adds a policy from its catalog definition (expressions as pg_get_expr
 * deparses them: casts, `( SELECT auth.uid() AS uid)`, `= ANY (ARRAY[…])`).
 * Returns 0 when compiled, 1 when kept as opaque (its verdicts are
 * RT_POLICY_OPAQUE; the reason is in err), -1 on a malformed definition.
 */
int rt_policies_add_def(struct rt_policies *p, const struct rt_policy_def *def, char *err,
			size_t err_cap);

/* Turns RLS on or off for schema.table (off when never said; schema NULL:
 * public). */
void rt_policies_set_enabled(struct rt_policies *p, const char *schema, const char *table,
			     bool is_enabled);

/*
 * Checks that the table of every policy of the set, and every column a
 * policy names, exists: has_column(schema, table, column, ctx) answers for
 * the store's tables, once per policy with column NULL (does the table
 * exist?) and then once per column reference (policies on tables it does
 * not know, such as realtime.messages, are the caller's to skip by
 * answering true). Returns 0, or -1 with e.g. `policy "own rows" on
 * public.t: column "owner" does not exist` or `policy "p" on public.gone:
 * table does not exist` in err.
 */
int rt_policies_validate(const struct rt_policies *p,
			 bool (*has_column)(const char *schema, const char *table, const char *column,
					    void *ctx),
			 void *ctx, char *err, size_t err_cap);

/* True when schema.table has RLS enabled. */
bool rt_policies_is_enabled(const struct rt_policies *p, const char *schema, const char *table);
/* True when any policy exists on schema.table (channel authorization falls
 * back to the configured roles when realtime.messages has none). */
bool rt_policies_has_any(const struct rt_policies *p, const char *schema, const char *table);
/* Policies in the set, and how many of them are opaque. */
size_t rt_policies_count(const struct rt_policies *p, size_t *n_opaque);

/*
 * The condition a row of schema.table must meet for `who` to run cmd (one
 * RT_POLICY_* bit). With is_check the WITH CHECK side (INSERT, and UPDATE's
 * new row), else USING. ALLOW_ALL: who NULL, role service_role, RLS off, or
 * the policies fold to true; DENY_ALL: no applicable permissive policy with
 * an expression for that side, or they fold to false or NULL; OPAQUE: an
 * applicable side is opaque (checked after DENY_ALL's first case). *out
 * (need not be initialized) is always set: on RT_POLICY_ROWS the predicate
 * with the requester's values substituted and constant parts folded away
 * (three-valued: NULL counts as false), else an empty AND; the caller
 * releases it with rt_query_node_deinit(). The tree is in negation normal
 * form: AND/OR groups (flattened, two or more children, never negated) over
 * conditions (possibly negated) with ops eq neq lt lte gt gte in (1 to
 * RT_QUERY_MAX_LIST values; longer lists are split over an OR, or an AND of
 * negated ins) like ilike and is (values "null", "true", "false"). Column
 * names are as the policy wrote them (unquoted identifiers folded to lower
 * case). PostgreSQL also applies the SELECT policies to an UPDATE or DELETE
 * that reads rows (WHERE, RETURNING) and to INSERT … RETURNING: that
 * combination is the caller's.
 */
enum rt_policy_verdict rt_policies_predicate(const struct rt_policies *p, const char *schema,
					     const char *table, unsigned cmd, bool is_check,
					     const struct rt_auth *who, struct rt_query_node *out);

/*
 * Evaluates a predicate against row (column → JSON value) with SQL's
 * three-valued logic. type_of(column, ctx) gives a column's PostgreSQL type
 * name (values compare as filter.h's do, through common/pgval.h: numbers,
 * booleans, text by bytes); a NULL type_of makes every column text, a NULL
 * answer makes that comparison NULL. Returns 1 (true), 0 (false) or -1
 * (NULL: a row is not visible). A column absent from row, or JSON null, is
 * NULL. An empty AND is true, an empty OR false; n NULL is true.
 */
int rt_policy_eval(const struct rt_query_node *n, const json_t *row,
		   const char *(*type_of)(const char *column, void *ctx), void *ctx);

/* Appends a canonical text of a predicate to out: equal texts, equal
 * predicates (for sharing matcher entries between requesters). Columns and
 * values are JSON-escaped strings, so no two trees share a text; n NULL
 * reads "and()". Deterministic for one policy set and requester values. */
void rt_policy_canon(const struct rt_query_node *n, struct rt_buf *out);

/* When a predicate is, or is an AND with, a non-negated `column = value`
 * condition, sets *column and *value (borrowed from n) and returns true. */
bool rt_policy_eq_key(const struct rt_query_node *n, const char **column, const char **value);

#endif
