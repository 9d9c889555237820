/*
 * One SQL builder for both stores. A struct rt_sql_dialect describes what
 * differs between SQLite and PostgreSQL as data (placeholders, how columns
 * and tables are named, boolean and IS forms, like/ilike, NULLS order, how
 * written rows travel and come back); every statement the stores run over a
 * table is written once here, so a new clause (a policy predicate, a live
 * query) is added in one place. The text each dialect produces is the text
 * the stores ran before the builder, byte for byte (tests/unit/store/test_sql.c).
 *
 * Values never enter the SQL text: every value becomes a placeholder and an
 * entry of a struct rt_sql_binds, in the order the placeholders stand in the
 * text, with the Postgres type name it is bound as (SQLite binds by type,
 * PostgreSQL lets the server infer it from the text or the cast next to it).
 *
 * Ownership: the builder appends to caller-owned buffers; a bind borrows its
 *            text or JSON value from the caller (query, row) except texts the
 *            builder makes (PostgreSQL's row records), which the binds own
 *            until rt_sql_binds_deinit(). Everything borrowed must outlive
 *            the statement's execution.
 * Threads:   no shared state; the two dialects are immutable.
 * Limits:    none of its own: the query parser bounds trees and lists
 *            (RT_QUERY_MAX_*), the stores bound the number of parameters.
 */
#ifndef RT_STORE_SQL_H
#define RT_STORE_SQL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "store/query.h"
#include "store/store.h"
#include "store/store_int.h"

enum rt_sql_bind_kind {
	RT_SQL_BIND_TEXT, /* text, in the column type's text form */
	RT_SQL_BIND_JSON, /* a JSON value of a row, converted by the store (NULL binds NULL) */
};

struct rt_sql_bind {
	enum rt_sql_bind_kind kind;
	const char *type;   /* Postgres type name: int8, text, json, … */
	const char *text;   /* RT_SQL_BIND_TEXT */
	const json_t *json; /* RT_SQL_BIND_JSON */
};

/* The values of one statement, in placeholder order. texts[i] is v[i].text
 * (NULL for a JSON bind): PostgreSQL passes texts and n to PQexecParams. */
struct rt_sql_binds {
	struct rt_sql_bind *v;
	const char **texts;
	size_t n, cap;
	char **owned; /* texts the builder made */
	size_t n_owned, cap_owned;
};

/*
 * What differs between the stores. Strings are SQL fragments; a format
 * string of like_fmt has %c for the column and %p for the placeholder.
 */
struct rt_sql_dialect {
	const char *name;
	/* Appends the placeholder of the n-th value (1-based). */
	void (*placeholder)(struct rt_buf *b, size_t n);
	/* The qualifier of the statement's table columns (NULL: bare names). */
	const char *col_qual;
	bool is_schema_qualified; /* tables as "schema"."name" */
	const char *read_alias;   /* after the table in reads and counts */
	const char *write_alias;  /* after the table in INSERT, UPDATE, DELETE, locked selects */
	const char *sql_true, *sql_false;
	/* Suffixes of `is`: null, unknown, true, false. */
	const char *is_null, *is_unknown, *is_true, *is_false;
	const char *in_empty;                   /* an empty in list; NULL: "c IN ()" */
	const char *like_fmt, *ilike_fmt;       /* bound as like_type */
	const char *like_type;
	bool is_nulls_explicit; /* order: always say NULLS FIRST/LAST (Postgres' default) */
	/* Reads: read_open, the projection, FROM …, read_close. */
	const char *read_open, *read_close;
	bool is_projection_aliased; /* _t."col" AS "key", else "col" (the store renames) */
	const char *empty_projection;
	bool is_count_inline; /* the read's count is a second column of the same statement */
	/* Rows written: as one JSON record parameter read with
	 * json_populate_record (aliased _j for values, _k for a key), or one
	 * parameter per value. */
	bool is_record_rows;
	const char *key_eq; /* the primary key comparison of a keyed statement */
	/* Locked selects of a write with a base: the select list (FROM follows),
	 * and what follows the key match or the filter. */
	const char *lock_select, *lock_tail_pk, *lock_tail_where;
	/* Appends to out the statement that runs stmt (INSERT, UPDATE, DELETE
	 * without RETURNING) and returns its rows: see rt_sql_returning(). */
	void (*returning)(struct rt_buf *out, const struct rt_sql_dialect *d,
			  const struct rt_buf *stmt, const struct rt_store_output *outs, size_t n,
			  bool wants_rows);
	/* Idempotency keys (docs/writes.md): the statements, constant.
	 * key_lock_sql may be NULL (SQLite's write transaction serializes). */
	const char *key_lock_sql, *key_lookup_sql, *key_record_sql;
};

extern const struct rt_sql_dialect rt_sql_sqlite;
extern const struct rt_sql_dialect rt_sql_postgres;

void rt_sql_binds_init(struct rt_sql_binds *b);
/* Frees the arrays and the texts the builder made; b is empty after it. */
void rt_sql_binds_deinit(struct rt_sql_binds *b);
/* Makes the texts of binds from..n owned copies: their source (a policy
 * predicate rendered and freed at once) need not outlive the statement. */
void rt_sql_binds_keep(struct rt_sql_binds *b, size_t from);

/* "name" with '"' doubled. */
void rt_sql_ident(struct rt_buf *b, const char *name);
/* 'text' with ' doubled. */
void rt_sql_literal(struct rt_buf *b, const char *s);
/* The table as the dialect names it. */
void rt_sql_table(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t);
/* A column: qual."name" (qual NULL: the dialect's col_qual). */
void rt_sql_col(struct rt_buf *b, const struct rt_sql_dialect *d, const char *qual,
		const char *name);
/* Appends the next placeholder and records text (borrowed) bound as type. */
void rt_sql_param(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		  const char *type, const char *text);
/* The same for a JSON value of a row (borrowed; NULL binds NULL). */
void rt_sql_param_json(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		       const char *type, const json_t *v);

/* t's column name; 0, or -1 with 400 42703 "column t.name does not exist". */
int rt_sql_column(const struct rt_store_table *t, const char *name,
		  const struct rt_store_column **out, struct rt_store_error *e);

/*
 * Appends the condition of a filter or policy predicate tree: groups in
 * parentheses joined by AND/OR (an empty group is sql_true), conditions in
 * parentheses, NOT before a negated node; values as binds typed by their
 * column (like/ilike as like_type). qual as rt_sql_col() takes it. Returns 0,
 * or -1 with e: 42703 for an unknown column, 400 PGRST100 "failed to parse
 * filter (is.x)" for an `is` value outside null/unknown/true/false. b and
 * bv may hold part of the condition on failure.
 */
int rt_sql_where(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		 const struct rt_store_table *t, const struct rt_query_node *n, const char *qual,
		 struct rt_store_error *e);

/* Checks q's order columns (q may be NULL): 0, or -1 with 42703. */
int rt_sql_check_order(const struct rt_store_table *t, const struct rt_query *q,
		       struct rt_store_error *e);
/* Appends " ORDER BY …" for q (nothing without an order). Returns 0, or -1
 * with 42703. */
int rt_sql_order(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t,
		 const struct rt_query *q, struct rt_store_error *e);
/* Appends " LIMIT n OFFSET m": q's limit capped at RT_STORE_MAX_ROWS. */
void rt_sql_limit(struct rt_buf *b, const struct rt_query *q);

/*
 * The read statement: the projection of outs (n of them, from
 * rt_store_outputs()) over t's rows where where (the text rt_sql_where()
 * made; NULL or "" for all); with is_grouped, grouped by the outputs without
 * an aggregate (none: one row over all the rows, also when none match);
 * then q's order and limit (of the groups, when grouped); with wants_count
 * and is_count_inline, the count of the matching rows (never of the groups:
 * PostgREST's count) as a second column. Returns 0, or -1 with e as
 * rt_sql_check_group_order() says (42703 for an unknown order column).
 */
int rt_sql_read(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t,
		const struct rt_store_output *outs, size_t n, bool is_grouped, const char *where,
		const struct rt_query *q, bool wants_count, struct rt_store_error *e);
/* Checks that q's order names only group columns of outs (q may be NULL):
 * 0, or -1 with 400 42703 for an unknown column, 400 42803 "column \"t.c\"
 * must appear in the GROUP BY clause or be used in an aggregate function"
 * for a column outside the group, as PostgreSQL refuses it. */
int rt_sql_check_group_order(const struct rt_store_table *t, const struct rt_store_output *outs,
			     size_t n, const struct rt_query *q, struct rt_store_error *e);
/* "SELECT count(*) FROM t[ WHERE where]" (rt_sql_read() embeds it when inline). */
void rt_sql_count(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t,
		  const char *where);

/*
 * INSERT of one row of w (an object; a row of an upsert with ON CONFLICT on
 * w->where's on_conflict columns, else the primary key, DO NOTHING with
 * is_ignore_duplicates or no column, else DO UPDATE of the columns written).
 * The columns written are columns= (missing keys NULL, or left to their
 * defaults with is_missing_default), else the row's keys; none gives
 * DEFAULT VALUES. Without RETURNING: see rt_sql_returning(). Returns 0, or
 * -1 with 42703 for an unknown column in columns= or on_conflict (row keys
 * are the caller's to check: rt_store_check_row_keys()).
 */
int rt_sql_insert(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		  const struct rt_write *w, const json_t *row, struct rt_store_error *e);
/*
 * The pieces of rt_sql_insert(), for a store that runs an upsert in steps
 * (SQLite under row-level security: DO NOTHING first, then DO UPDATE … WHERE
 * the policies' predicates). rt_sql_insert_columns() fills names (room for
 * t->n_cols) with the columns written and *n with their count (errors as
 * rt_sql_insert()); rt_sql_insert_head() appends "INSERT INTO t (…) VALUES
 * (…)" (or the record's SELECT, or DEFAULT VALUES when n is 0);
 * rt_sql_conflict_target() appends " ON CONFLICT (…)" (-1 with 42703 for an
 * unknown on_conflict column); rt_sql_do_update() appends " DO UPDATE SET
 * c = excluded.c,…".
 */
int rt_sql_insert_columns(const struct rt_write *w, const json_t *row,
			  const struct rt_store_column **names, size_t *n, struct rt_store_error *e);
void rt_sql_insert_head(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
			const struct rt_store_table *t, const struct rt_store_column *const *names,
			size_t n, const json_t *row);
/* The same head for several rows (an array of objects writing the columns
 * names, n > 0): PostgreSQL reads them as one json_populate_recordset, a
 * dialect without record rows gets one VALUES list per row. One statement
 * is parsed and planned once, not once per row. */
void rt_sql_insert_head_rows(struct rt_buf *b, struct rt_sql_binds *bv,
			     const struct rt_sql_dialect *d, const struct rt_store_table *t,
			     const struct rt_store_column *const *names, size_t n, const json_t *rows);
int rt_sql_conflict_target(struct rt_buf *b, const struct rt_write *w, struct rt_store_error *e);
void rt_sql_do_update(struct rt_buf *b, const struct rt_store_column *const *names, size_t n);
/* "UPDATE t SET <set's keys> …" up to where a WHERE may follow. Returns 0, or
 * -1 with 400 PGRST102 "Empty or invalid json" for an empty set. */
int rt_sql_update(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		  const struct rt_store_table *t, const json_t *set, struct rt_store_error *e);
/* "DELETE FROM t" up to where a WHERE may follow. */
void rt_sql_delete(struct rt_buf *b, const struct rt_sql_dialect *d, const struct rt_store_table *t);
/* Appends " WHERE where" when where is not empty. */
void rt_sql_where_clause(struct rt_buf *b, const char *where);
/*
 * The statement that runs stmt and returns its rows: SQLite stmt RETURNING *
 * (full rows, the store projects them); PostgreSQL a CTE whose one row holds
 * the projected rows as a JSON array text (NULL without wants_rows) and the
 * count.
 */
void rt_sql_returning(struct rt_buf *out, const struct rt_sql_dialect *d, const struct rt_buf *stmt,
		      const struct rt_store_output *outs, size_t n, bool wants_rows);

/*
 * A write with a base (docs/writes.md). The locked select of t's row whose
 * primary key the object key names, full row out; the locked select of the
 * rows where (rt_sql_where() text, not empty) selects, at most 2; and the
 * UPDATE SET apply (DELETE when apply is NULL) of the row current names,
 * without RETURNING. Return 0, or -1 with 400 RTS400 "A write with a base
 * needs the primary key column \"c\"" when key or current lacks one.
 */
int rt_sql_select_pk(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		     const struct rt_store_table *t, const json_t *key, struct rt_store_error *e);
void rt_sql_select_where(struct rt_buf *b, const struct rt_sql_dialect *d,
			 const struct rt_store_table *t, const char *where);
int rt_sql_write_pk(struct rt_buf *b, struct rt_sql_binds *bv, const struct rt_sql_dialect *d,
		    const struct rt_store_table *t, const json_t *current, const json_t *apply,
		    struct rt_store_error *e);

#endif
