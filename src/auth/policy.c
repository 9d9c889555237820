#include "auth/policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/pgval.h"

/* PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes. */
#define NAME_MAX_LEN 63
/* Bytes of the source quoted in an error message. */
#define EXCERPT_MAX 40

/* ---- errors ---- */

__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t err_cap, const char *fmt,
						       ...)
{
	if (!err || !err_cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_cap, fmt, ap);
	va_end(ap);
}

/* ---- tokens ---- */

enum tok_kind { TK_EOF, TK_IDENT, TK_QIDENT, TK_STRING, TK_NUMBER, TK_OP, TK_BAD };

struct tok {
	enum tok_kind kind;
	size_t off, len; /* the token's bytes in the source */
};

struct toks {
	const char *s;
	size_t n;
	struct tok *v;
	size_t n_toks;
	const char *bad_why; /* TK_BAD: what is wrong there */
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_ident_start(unsigned char c)
{
	return isalpha(c) || c == '_' || c >= 0x80;
}

static bool is_ident_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* Operators the expression grammar knows, longest first. */
static const char *const multi_ops[] = {"!~~*", "->>", "#>>", "~~*", "!~~", "::", "->",
					"#>",	"<=",  ">=",  "<>",  "!=",  "||", "~~"};

/* Skips blanks and comments from *p; returns false on an unterminated block comment. */
static bool skip_blank(const char *s, size_t n, size_t *p)
{
	size_t i = *p;
	for (;;) {
		while (i < n && is_space(s[i]))
			i++;
		if (i + 1 < n && s[i] == '-' && s[i + 1] == '-') {
			while (i < n && s[i] != '\n')
				i++;
			continue;
		}
		if (i + 1 < n && s[i] == '/' && s[i + 1] == '*') {
			/* PostgreSQL's block comments nest. */
			size_t depth = 0;
			while (i < n) {
				if (i + 1 < n && s[i] == '/' && s[i + 1] == '*') {
					depth++;
					i += 2;
				} else if (i + 1 < n && s[i] == '*' && s[i + 1] == '/') {
					i += 2;
					if (--depth == 0)
						break;
				} else {
					i++;
				}
			}
			if (depth) {
				*p = i;
				return false;
			}
			continue;
		}
		break;
	}
	*p = i;
	return true;
}

/* Splits s into tokens; a lexical error ends the list with one TK_BAD. */
static void lex(struct toks *t, const char *s, size_t n)
{
	memset(t, 0, sizeof *t);
	t->s = s;
	t->n = n;
	size_t cap = 0, i = 0;
	for (;;) {
		struct tok k = {TK_EOF, 0, 0};
		size_t start = i;
		if (!skip_blank(s, n, &i)) {
			k.kind = TK_BAD;
			k.off = start;
			t->bad_why = "unterminated comment";
			while (start < n && is_space(s[start]))
				k.off = ++start;
			goto push;
		}
		k.off = i;
		if (i >= n)
			goto push;
		unsigned char c = (unsigned char)s[i];
		if (c == '\0') {
			k.kind = TK_BAD;
			t->bad_why = "NUL byte";
		} else if ((c == 'e' || c == 'E' || c == 'u' || c == 'U' || c == 'b' || c == 'B' ||
			    c == 'x' || c == 'X') &&
			   i + 1 < n && (s[i + 1] == '\'' || s[i + 1] == '&')) {
			k.kind = TK_BAD;
			t->bad_why = "unsupported string constant";
		} else if (is_ident_start(c)) {
			while (i < n && is_ident_char((unsigned char)s[i]))
				i++;
			k.kind = TK_IDENT;
		} else if (c == '"' || c == '\'') {
			char q = (char)c;
			for (i++;; i++) {
				if (i >= n) {
					k.kind = TK_BAD;
					t->bad_why = q == '"' ? "unterminated quoted identifier"
							      : "unterminated quoted string";
					break;
				}
				if (s[i] == '\0') {
					k.kind = TK_BAD;
					t->bad_why = "NUL byte";
					break;
				}
				if (s[i] == q) {
					if (i + 1 < n && s[i + 1] == q) {
						i++;
						continue;
					}
					i++;
					k.kind = q == '"' ? TK_QIDENT : TK_STRING;
					break;
				}
			}
			if (k.kind == TK_QIDENT && i - k.off == 2) {
				k.kind = TK_BAD;
				t->bad_why = "zero-length delimited identifier";
			}
		} else if (isdigit(c) ||
			   (c == '.' && i + 1 < n && isdigit((unsigned char)s[i + 1]))) {
			while (i < n && isdigit((unsigned char)s[i]))
				i++;
			if (i < n && s[i] == '.')
				for (i++; i < n && isdigit((unsigned char)s[i]); i++)
					;
			if (i < n && (s[i] == 'e' || s[i] == 'E')) {
				size_t j = i + 1;
				if (j < n && (s[j] == '+' || s[j] == '-'))
					j++;
				if (j < n && isdigit((unsigned char)s[j])) {
					for (i = j; i < n && isdigit((unsigned char)s[i]); i++)
						;
				}
			}
			k.kind = TK_NUMBER;
			if (i < n && is_ident_start((unsigned char)s[i])) {
				k.kind = TK_BAD;
				t->bad_why = "trailing junk after numeric literal";
			}
		} else if (c == '$') {
			k.kind = TK_BAD;
			t->bad_why = "unsupported dollar-quoted string or parameter";
		} else {
			k.kind = TK_OP;
			size_t len = 1;
			for (size_t m = 0; m < sizeof multi_ops / sizeof multi_ops[0]; m++) {
				size_t ml = strlen(multi_ops[m]);
				if (ml <= n - i && !memcmp(s + i, multi_ops[m], ml)) {
					len = ml;
					break;
				}
			}
			i += len;
		}
	push:
		if (k.kind == TK_BAD)
			i = n;
		k.len = i - k.off;
		if (t->n_toks == cap) {
			cap = cap ? cap * 2 : 32;
			t->v = rt_xrealloc(t->v, cap * sizeof *t->v);
		}
		t->v[t->n_toks++] = k;
		if (k.kind == TK_EOF || k.kind == TK_BAD)
			return;
	}
}

static void toks_free(struct toks *t)
{
	free(t->v);
	t->v = NULL;
}

/* Parser state over the tokens of one statement or expression. */
struct ps {
	struct toks t;
	size_t i;			   /* current token */
	size_t base;			   /* offset added to offsets in messages */
	int depth;			   /* recursion depth of the expression parser */
	const char *tbl_schema, *tbl_name; /* the policy's table (qualified columns) */
	/* the first error */
	bool has_err;
	bool is_unsupported;
	size_t err_off, err_end;
	char err_msg[128];
};

static const struct tok *cur(const struct ps *p)
{
	return &p->t.v[p->i];
}

static const struct tok *peek(const struct ps *p, size_t ahead)
{
	size_t j = p->i + ahead;
	return j < p->t.n_toks ? &p->t.v[j] : &p->t.v[p->t.n_toks - 1];
}

static void advance(struct ps *p)
{
	if (p->t.v[p->i].kind != TK_EOF && p->t.v[p->i].kind != TK_BAD)
		p->i++;
}

static bool tok_is_kw(const struct ps *p, const struct tok *k, const char *kw)
{
	return k->kind == TK_IDENT && strlen(kw) == k->len &&
	       !strncasecmp(p->t.s + k->off, kw, k->len);
}

static bool tok_is_op(const struct ps *p, const struct tok *k, const char *op)
{
	return k->kind == TK_OP && strlen(op) == k->len && !memcmp(p->t.s + k->off, op, k->len);
}

static bool is_kw(const struct ps *p, const char *kw)
{
	return tok_is_kw(p, cur(p), kw);
}

static bool is_op(const struct ps *p, const char *op)
{
	return tok_is_op(p, cur(p), op);
}

static bool accept_kw(struct ps *p, const char *kw)
{
	if (!is_kw(p, kw))
		return false;
	advance(p);
	return true;
}

static bool accept_op(struct ps *p, const char *op)
{
	if (!is_op(p, op))
		return false;
	advance(p);
	return true;
}

/* Where the construct starting at token j ends: a name followed by a
 * parenthesized list runs to its closing parenthesis, else the token. */
static size_t construct_end(const struct ps *p, size_t j)
{
	const struct tok *k = &p->t.v[j];
	size_t end = k->off + k->len;
	size_t m = j + 1;
	while (m + 1 < p->t.n_toks && tok_is_op(p, &p->t.v[m], ".") &&
	       (p->t.v[m + 1].kind == TK_IDENT || p->t.v[m + 1].kind == TK_QIDENT))
		m += 2;
	if ((k->kind == TK_IDENT || k->kind == TK_QIDENT || tok_is_op(p, k, "(")) &&
	    (tok_is_op(p, k, "(") || (m < p->t.n_toks && tok_is_op(p, &p->t.v[m], "(")))) {
		size_t depth = 0;
		for (size_t q = tok_is_op(p, k, "(") ? j : m; q < p->t.n_toks; q++) {
			const struct tok *x = &p->t.v[q];
			if (x->kind == TK_EOF || x->kind == TK_BAD)
				break;
			end = x->off + x->len;
			if (tok_is_op(p, x, "("))
				depth++;
			else if (tok_is_op(p, x, ")") && --depth == 0)
				break;
		}
	}
	return end;
}

static void fail_span(struct ps *p, bool is_unsupported, size_t off, size_t end, const char *msg)
{
	if (p->has_err)
		return;
	p->has_err = true;
	p->is_unsupported = is_unsupported;
	p->err_off = off;
	p->err_end = end < off ? off : end;
	snprintf(p->err_msg, sizeof p->err_msg, "%s", msg);
}

/* An error at the current token (the construct it starts). */
static void fail_here(struct ps *p, bool is_unsupported, const char *msg)
{
	const struct tok *k = cur(p);
	if (k->kind == TK_BAD && !is_unsupported && p->t.bad_why) {
		fail_span(p, false, k->off, k->off + (k->len > 1 ? 1 : k->len), p->t.bad_why);
		return;
	}
	fail_span(p, is_unsupported, k->off, construct_end(p, p->i), msg);
}

static void unsupported_here(struct ps *p)
{
	fail_here(p, true, "unsupported expression");
}

static void syntax_here(struct ps *p)
{
	fail_here(p, false, "syntax error");
}

/* Appends "<msg> at offset N: <excerpt>" for the recorded error. */
static void format_err(const struct ps *p, char *out, size_t cap)
{
	char ex[EXCERPT_MAX * 2 + 8];
	size_t o = 0, len = p->err_end - p->err_off;
	const char *src = p->t.s + p->err_off;
	bool is_cut = len > EXCERPT_MAX;
	if (is_cut)
		len = EXCERPT_MAX;
	for (size_t i = 0; i < len && o + 1 < sizeof ex; i++) {
		unsigned char c = (unsigned char)src[i];
		ex[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	if (is_cut)
		o += (size_t)snprintf(ex + o, sizeof ex - o, "...");
	ex[o] = '\0';
	if (p->err_off >= p->t.n || !len)
		snprintf(out, cap, "%s at offset %zu (end of input)", p->err_msg,
			 p->base + p->err_off);
	else
		snprintf(out, cap, "%s at offset %zu: %s", p->err_msg, p->base + p->err_off, ex);
}

/* The identifier token k as a name: unquoted folded to lower case, quoted
 * with "" undone; at most NAME_MAX_LEN bytes (cut at a character boundary). */
static char *ident_text(const struct ps *p, const struct tok *k)
{
	const char *s = p->t.s + k->off;
	char *out = rt_xmalloc(k->len + 1);
	size_t o = 0;
	if (k->kind == TK_QIDENT) {
		for (size_t i = 1; i + 1 < k->len; i++) {
			out[o++] = s[i];
			if (s[i] == '"')
				i++;
		}
	} else {
		for (size_t i = 0; i < k->len; i++)
			out[o++] = (char)tolower((unsigned char)s[i]);
	}
	if (o > NAME_MAX_LEN) {
		o = NAME_MAX_LEN;
		while (o && ((unsigned char)out[o] & 0xC0) == 0x80)
			o--;
	}
	out[o] = '\0';
	return out;
}

/* A string literal's contents ('' undone). */
static char *string_text(const struct ps *p, const struct tok *k)
{
	const char *s = p->t.s + k->off;
	char *out = rt_xmalloc(k->len);
	size_t o = 0;
	for (size_t i = 1; i + 1 < k->len; i++) {
		out[o++] = s[i];
		if (s[i] == '\'')
			i++;
	}
	out[o] = '\0';
	return out;
}

static bool is_name_tok(const struct tok *k)
{
	return k->kind == TK_IDENT || k->kind == TK_QIDENT;
}

/* ---- expressions ---- */

/* Static types of expressions. */
enum st {
	ST_UNKNOWN, /* a column (its type is the table's), or NULL */
	ST_TEXT,
	ST_NUM,
	ST_BOOL, /* a boolean value or a condition */
	ST_JSON,
	ST_ARRAY,
};

enum ek {
	E_COL, /* text: column name */
	E_NULL,
	E_TEXT,	   /* text: literal */
	E_NUM,	   /* text: literal as written */
	E_BOOL,	   /* flag: value */
	E_JSONLIT, /* json: parsed literal (owned) */
	E_UID,
	E_ROLE,
	E_EMAIL,
	E_JWT,
	E_TOPIC,
	E_CLAIMS_SETTING, /* current_setting('request.jwt.claims') */
	E_CLAIM_SETTING,  /* current_setting('request.jwt.claim.<text>') */
	E_GET,		  /* kids[0] -> key (flag: ->>); text: key, or is_index with index */
	E_CAST,		  /* kids[0]::cast */
	E_CONCAT,	  /* kids[0] || kids[1] */
	E_ARRAY,	  /* ARRAY[kids…] */
	E_CMP,		  /* kids[0] op kids[1] */
	E_LIKE,		  /* kids[0] [NOT] LIKE kids[1] (flag: ILIKE) */
	E_IN,		  /* kids[0] [NOT] IN (kids[1…]) */
	E_ANY,		  /* kids[0] = ANY (kids[1]); neg: <> ALL */
	E_ISNULL,	  /* kids[0] IS [NOT] NULL */
	E_ISBOOL,	  /* kids[0] IS [NOT] TRUE|FALSE (flag: TRUE) */
	E_DISTINCT,	  /* kids[0] IS [NOT] DISTINCT FROM kids[1]; neg: NOT DISTINCT */
	E_AND,
	E_OR,
	E_NOT,
	E_ELEMS,    /* json[b]_array_elements_text(kids[0]) in ARRAY(SELECT …) / IN (SELECT …);
		       flag: the elements jsonb ? matches (under E_ANY with flag) */
	E_COALESCE, /* coalesce(kids…) of constants */
	E_NULLIF,   /* nullif(kids[0], kids[1]) of constants */
};

enum cast_to { CT_TEXT, CT_NUM, CT_BOOL, CT_JSON, CT_ARRAY };

struct expr {
	enum ek kind;
	enum st st;
	bool has_col;
	bool neg;
	bool flag;
	bool is_index;
	enum rt_query_op op;
	enum cast_to cast;
	enum rt_pgval_class elem_class; /* CT_ARRAY */
	int height;
	long long index;
	char *text;
	json_t *json;
	size_t off, end;
	struct expr **kids;
	size_t n_kids;
};

static void expr_free(struct expr *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n_kids; i++)
		expr_free(e->kids[i]);
	free(e->kids);
	free(e->text);
	if (e->json)
		json_decref(e->json);
	free(e);
}

static struct expr *expr_clone(const struct expr *e)
{
	struct expr *c = rt_xmalloc(sizeof *c);
	*c = *e;
	c->text = e->text ? rt_xstrdup(e->text) : NULL;
	if (e->json)
		c->json = json_deep_copy(e->json);
	c->kids = e->n_kids ? rt_xmalloc(e->n_kids * sizeof *c->kids) : NULL;
	for (size_t i = 0; i < e->n_kids; i++)
		c->kids[i] = expr_clone(e->kids[i]);
	return c;
}

static struct expr *expr_new(enum ek kind, enum st st, size_t off, size_t end)
{
	struct expr *e = rt_xcalloc(1, sizeof *e);
	e->kind = kind;
	e->st = st;
	e->off = off;
	e->end = end;
	e->height = 1;
	return e;
}

/* Adds a kid; false (the tree too tall: error set) when nesting passes the limit. */
static bool add_kid(struct ps *p, struct expr *e, struct expr *kid)
{
	e->kids = rt_xrealloc(e->kids, (e->n_kids + 1) * sizeof *e->kids);
	e->kids[e->n_kids++] = kid;
	e->has_col |= kid->has_col;
	if (kid->off < e->off)
		e->off = kid->off;
	if (kid->end > e->end)
		e->end = kid->end;
	if (kid->height + 1 > e->height)
		e->height = kid->height + 1;
	if (e->height > RT_POLICY_MAX_DEPTH) {
		fail_span(p, false, e->off, e->end, "expression nested too deeply");
		return false;
	}
	return true;
}

static struct expr *node2(struct ps *p, enum ek kind, enum st st, struct expr *a, struct expr *b)
{
	struct expr *e = expr_new(kind, st, a->off, a->end);
	bool ok = add_kid(p, e, a);
	if (b)
		ok = add_kid(p, e, b) && ok;
	if (!ok) {
		expr_free(e);
		return NULL;
	}
	return e;
}

/* A column under no-op casts. */
static const struct expr *bare_col(const struct expr *e)
{
	while (e->kind == E_CAST && e->cast != CT_JSON && e->cast != CT_ARRAY)
		e = e->kids[0];
	return e->kind == E_COL ? e : NULL;
}

static bool is_scalar_st(enum st st)
{
	return st == ST_TEXT || st == ST_NUM || st == ST_BOOL || st == ST_UNKNOWN;
}

static void fail_expr(struct ps *p, bool is_unsupported, const struct expr *e, const char *msg)
{
	fail_span(p, is_unsupported, e->off, e->end, msg);
}

/* Checks the operands of a comparison-like node: one side a column at most,
 * and then a bare one against a scalar constant. */
static bool check_pair(struct ps *p, const struct expr *e, const struct expr *a,
		       const struct expr *b)
{
	if (a->has_col && b->has_col) {
		fail_expr(p, true, e, "unsupported expression (column compared with column)");
		return false;
	}
	const struct expr *c = a->has_col ? a : b->has_col ? b : NULL;
	if (c && !bare_col(c)) {
		fail_expr(p, true, c, "unsupported expression");
		return false;
	}
	if (!is_scalar_st(a->st) || !is_scalar_st(b->st)) {
		const struct expr *bad = !is_scalar_st(a->st) ? a : b;
		fail_expr(p, false, bad,
			  bad->st == ST_JSON
				  ? "invalid expression (a json value compared; use ->> for text)"
				  : "invalid expression (an array compared)");
		return false;
	}
	return true;
}

/* A condition operand (AND, OR, NOT, the whole expression). */
static bool check_cond(struct ps *p, const struct expr *e)
{
	if (e->st == ST_BOOL || (e->st == ST_UNKNOWN && (!e->has_col || bare_col(e))))
		return true; /* a condition, a (boolean) column, NULL */
	if (e->st == ST_TEXT && !e->has_col)
		return true; /* a text constant reads as a boolean ('t', 'true', …) */
	fail_expr(p, false, e, "invalid expression (not a condition)");
	return false;
}

static struct expr *parse_or(struct ps *p);

/* Type name after :: or AS; sets the cast class. */
static bool parse_type(struct ps *p, struct expr *e)
{
	if (!is_name_tok(cur(p))) {
		syntax_here(p);
		return false;
	}
	char *name = ident_text(p, cur(p));
	advance(p);
	if (is_op(p, ".") && is_name_tok(peek(p, 1))) { /* pg_catalog.text */
		advance(p);
		free(name);
		name = ident_text(p, cur(p));
		advance(p);
	}
	enum cast_to ct = CT_TEXT;
	enum rt_pgval_class cls = RT_PGVAL_TEXT;
	static const char *const nums[] = {"int",      "integer", "int2",    "int4",	"int8",
					   "smallint", "bigint",  "numeric", "decimal", "real",
					   "float",    "float4",  "float8",  "oid"};
	for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
		if (!strcmp(name, nums[i]))
			ct = CT_NUM;
	if (!strcmp(name, "double")) {
		if (!accept_kw(p, "precision")) {
			free(name);
			syntax_here(p);
			return false;
		}
		ct = CT_NUM;
	} else if (!strcmp(name, "bool") || !strcmp(name, "boolean")) {
		ct = CT_BOOL;
	} else if (!strcmp(name, "json") || !strcmp(name, "jsonb")) {
		ct = CT_JSON;
	} else if (!strcmp(name, "character") || !strcmp(name, "char") || !strcmp(name, "bit")) {
		accept_kw(p, "varying");
	} else if (!strcmp(name, "timestamp") || !strcmp(name, "time")) {
		if (is_kw(p, "with") || is_kw(p, "without")) {
			advance(p);
			if (!accept_kw(p, "time") || !accept_kw(p, "zone")) {
				free(name);
				syntax_here(p);
				return false;
			}
		}
	}
	free(name);
	if (accept_op(p, "(")) { /* varchar(20), numeric(10,2) */
		for (;;) {
			if (cur(p)->kind != TK_NUMBER) {
				syntax_here(p);
				return false;
			}
			advance(p);
			if (accept_op(p, ")"))
				break;
			if (!accept_op(p, ",")) {
				syntax_here(p);
				return false;
			}
		}
	}
	cls = ct == CT_NUM ? RT_PGVAL_NUM : ct == CT_BOOL ? RT_PGVAL_BOOL : RT_PGVAL_TEXT;
	bool is_array = false;
	while (accept_op(p, "[")) {
		if (cur(p)->kind == TK_NUMBER)
			advance(p);
		if (!accept_op(p, "]")) {
			syntax_here(p);
			return false;
		}
		is_array = true;
	}
	if (is_array) {
		if (ct == CT_JSON) {
			fail_span(p, true, e->off, cur(p)->off,
				  "unsupported expression (json array)");
			return false;
		}
		e->elem_class = cls;
		ct = CT_ARRAY;
	}
	e->cast = ct;
	return true;
}

/* Wraps e in a cast (the type follows at the cursor). */
static struct expr *make_cast(struct ps *p, struct expr *e)
{
	struct expr *c = expr_new(E_CAST, ST_TEXT, e->off, e->end);
	if (!add_kid(p, c, e) || !parse_type(p, c)) {
		expr_free(c);
		return NULL;
	}
	c->end = p->t.v[p->i ? p->i - 1 : 0].off + p->t.v[p->i ? p->i - 1 : 0].len;
	switch (c->cast) {
	case CT_TEXT: c->st = ST_TEXT; break;
	case CT_NUM: c->st = ST_NUM; break;
	case CT_BOOL: c->st = ST_BOOL; break;
	case CT_JSON: c->st = ST_JSON; break;
	case CT_ARRAY: c->st = ST_ARRAY; break;
	}
	if (e->has_col) {
		if (c->cast == CT_JSON || c->cast == CT_ARRAY || !bare_col(e)) {
			fail_expr(p, true, c, "unsupported expression");
			goto err;
		}
		c->st = ST_UNKNOWN; /* a column keeps its own type */
		return c;
	}
	if (c->cast == CT_JSON) {
		if (e->st == ST_JSON)
			return c;
		if (e->kind == E_TEXT) { /* a json literal: parsed once */
			json_error_t je;
			json_t *j = json_loads(e->text, JSON_DECODE_ANY, &je);
			if (!j) {
				fail_expr(p, false, c, "invalid input syntax for type json");
				goto err;
			}
			struct expr *lit = expr_new(E_JSONLIT, ST_JSON, c->off, c->end);
			lit->json = j;
			expr_free(c);
			return lit;
		}
		fail_expr(p, true, c, "unsupported expression (cast to json)");
		goto err;
	}
	if (c->cast == CT_ARRAY && e->st != ST_ARRAY && e->st != ST_TEXT && e->st != ST_UNKNOWN) {
		fail_expr(p, true, c, "unsupported expression (cast to an array)");
		goto err;
	}
	if (c->cast == CT_ARRAY && e->kind != E_TEXT && e->kind != E_ARRAY && e->kind != E_CAST) {
		fail_expr(p, true, c, "unsupported expression (cast to an array)");
		goto err;
	}
	if (e->st == ST_ARRAY && c->cast != CT_ARRAY) {
		fail_expr(p, false, c, "invalid expression (cast of an array)");
		goto err;
	}
	return c;
err:
	expr_free(c);
	return NULL;
}

/* A literal operand of -> / ->> / current_setting: a string or integer
 * under optional casts (PostgreSQL's deparse writes 'key'::text). */
static bool parse_key_literal(struct ps *p, char **text, bool *is_int, long long *ival)
{
	bool minus = accept_op(p, "-");
	const struct tok *k = cur(p);
	if (k->kind == TK_STRING && !minus) {
		*text = string_text(p, k);
		*is_int = false;
	} else if (k->kind == TK_NUMBER) {
		char buf[32];
		if (k->len >= sizeof buf - 1 || memchr(p->t.s + k->off, '.', k->len) ||
		    memchr(p->t.s + k->off, 'e', k->len) || memchr(p->t.s + k->off, 'E', k->len)) {
			unsupported_here(p);
			return false;
		}
		memcpy(buf, p->t.s + k->off, k->len);
		buf[k->len] = '\0';
		errno = 0;
		long long v = strtoll(buf, NULL, 10);
		if (errno) {
			unsupported_here(p);
			return false;
		}
		*ival = minus ? -v : v;
		*is_int = true;
		*text = NULL;
	} else {
		unsupported_here(p);
		return false;
	}
	advance(p);
	while (accept_op(p, "::")) {
		struct expr tmp;
		memset(&tmp, 0, sizeof tmp);
		tmp.off = k->off;
		if (!parse_type(p, &tmp) || tmp.cast == CT_JSON || tmp.cast == CT_ARRAY) {
			if (!p->has_err)
				fail_span(p, true, k->off, cur(p)->off, "unsupported expression");
			free(*text);
			*text = NULL;
			return false;
		}
		if (tmp.cast == CT_NUM && !*is_int) {
			/* '-1'::integer, as PostgreSQL deparses a negative index */
			char *end;
			errno = 0;
			long long v = strtoll(*text, &end, 10);
			if (errno || end == *text || *end) {
				fail_span(p, false, k->off, cur(p)->off,
					  "invalid input syntax for type integer");
				free(*text);
				*text = NULL;
				return false;
			}
			free(*text);
			*text = NULL;
			*ival = v;
			*is_int = true;
		} else if (tmp.cast != CT_NUM && *is_int) {
			char buf[32];
			snprintf(buf, sizeof buf, "%lld", *ival);
			*text = rt_xstrdup(buf);
			*is_int = false;
		}
	}
	return true;
}

/* auth.uid() and the other functions of the subset; at the name's first token. */
static struct expr *parse_call(struct ps *p, char **parts, size_t n_parts, size_t off)
{
	const char *sch = n_parts == 2 ? parts[0] : NULL, *fn = parts[n_parts - 1];
	static const struct {
		const char *schema, *name;
		enum ek kind;
		enum st st;
	} zero[] = {
		{"auth", "uid", E_UID, ST_TEXT},	 {"auth", "role", E_ROLE, ST_TEXT},
		{"auth", "email", E_EMAIL, ST_TEXT},	 {"auth", "jwt", E_JWT, ST_JSON},
		{"realtime", "topic", E_TOPIC, ST_TEXT},
	};
	size_t fn_tok = p->i;
	if (n_parts <= 2) {
		for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
			if (!sch || strcmp(sch, zero[i].schema) || strcmp(fn, zero[i].name))
				continue;
			advance(p); /* ( */
			if (!is_op(p, ")")) {
				unsupported_here(p);
				return NULL;
			}
			struct expr *e = expr_new(zero[i].kind, zero[i].st, off, cur(p)->off + 1);
			advance(p);
			return e;
		}
		if ((!strcmp(fn, "coalesce") || !strcmp(fn, "nullif")) &&
		    (!sch || !strcmp(sch, "pg_catalog"))) {
			bool is_nullif = !strcmp(fn, "nullif");
			advance(p); /* ( */
			struct expr *e =
				expr_new(is_nullif ? E_NULLIF : E_COALESCE, ST_UNKNOWN, off, off);
			for (;;) {
				struct expr *a = parse_or(p);
				if (!a || !add_kid(p, e, a))
					goto err_fn;
				if (a->has_col) {
					fail_expr(
						p, true, a,
						"unsupported expression (a column in a function)");
					goto err_fn;
				}
				if (a->st == ST_ARRAY || (is_nullif && a->st == ST_JSON)) {
					fail_expr(p, true, a, "unsupported expression");
					goto err_fn;
				}
				if (e->st == ST_UNKNOWN)
					e->st = a->st;
				else if (a->st != ST_UNKNOWN &&
					 (a->st == ST_JSON) != (e->st == ST_JSON)) {
					fail_expr(p, false, a,
						  "invalid expression (mixed json and text)");
					goto err_fn;
				}
				if (accept_op(p, ")"))
					break;
				if (!accept_op(p, ",") || (is_nullif && e->n_kids == 2)) {
					syntax_here(p);
					goto err_fn;
				}
			}
			if (is_nullif && e->n_kids != 2) {
				fail_span(p, false, off, p->t.v[p->i - 1].off + 1, "syntax error");
				goto err_fn;
			}
			if (is_nullif)
				e->st = e->kids[0]->st;
			e->off = off;
			e->end = p->t.v[p->i - 1].off + 1;
			return e;
		err_fn:
			expr_free(e);
			return NULL;
		}
		if (!strcmp(fn, "current_setting") && (!sch || !strcmp(sch, "pg_catalog"))) {
			advance(p); /* ( */
			char *name = NULL;
			bool is_int;
			long long iv;
			if (!parse_key_literal(p, &name, &is_int, &iv))
				return NULL;
			if (is_int) {
				fail_span(p, true, off, construct_end(p, fn_tok),
					  "unsupported expression");
				return NULL;
			}
			if (accept_op(p, ",")) {
				if (!accept_kw(p, "true") && !accept_kw(p, "false")) {
					free(name);
					unsupported_here(p);
					return NULL;
				}
				while (accept_op(p, "::")) {
					struct expr tmp;
					memset(&tmp, 0, sizeof tmp);
					if (!parse_type(p, &tmp)) {
						free(name);
						return NULL;
					}
				}
			}
			if (!is_op(p, ")")) {
				free(name);
				syntax_here(p);
				return NULL;
			}
			size_t end = cur(p)->off + 1;
			advance(p);
			static const char pre[] = "request.jwt.claim.";
			struct expr *e = NULL;
			if (!strcmp(name, "request.jwt.claims")) {
				e = expr_new(E_CLAIMS_SETTING, ST_JSON, off, end);
				free(name);
			} else if (!strncmp(name, pre, sizeof pre - 1) && name[sizeof pre - 1]) {
				e = expr_new(E_CLAIM_SETTING, ST_TEXT, off, end);
				e->text = rt_xstrdup(name + sizeof pre - 1);
				free(name);
			} else {
				free(name);
				fail_span(p, true, off, end, "unsupported expression");
			}
			return e;
		}
	}
	p->i = fn_tok;
	fail_span(p, true, off, construct_end(p, fn_tok), "unsupported expression");
	return NULL;
}

/* Words that begin an expression PostgreSQL has and the subset does not. */
static bool is_unsupported_word(const struct ps *p)
{
	static const char *const words[] = {
		"exists",	   "case",	   "select",	"current_user",
		"session_user",	   "current_role", "user",	"current_timestamp",
		"current_date",	   "current_time", "localtime", "localtimestamp",
		"interval",	   "row",	   "default",	"current_schema",
		"current_catalog", "values"};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (is_kw(p, words[i]))
			return true;
	return false;
}

/* Whether the tokens from ahead read `( SELECT [pg_catalog.]json[b]_array_elements_text (`. */
static bool at_elems(const struct ps *p, size_t ahead)
{
	if (!tok_is_op(p, peek(p, ahead), "(") || !tok_is_kw(p, peek(p, ahead + 1), "select"))
		return false;
	size_t j = ahead + 2;
	if (tok_is_kw(p, peek(p, j), "pg_catalog") && tok_is_op(p, peek(p, j + 1), "."))
		j += 2;
	return (tok_is_kw(p, peek(p, j), "jsonb_array_elements_text") ||
		tok_is_kw(p, peek(p, j), "json_array_elements_text")) &&
	       tok_is_op(p, peek(p, j + 1), "(");
}

/*
 * `( SELECT json[b]_array_elements_text(json) [[AS] alias] )` at the '('
 * (at_elems true): the elements of a JSON array claim as text, as
 * ARRAY(SELECT …) and IN (SELECT …) read them.
 */
static struct expr *parse_elems(struct ps *p, size_t off)
{
	size_t open_tok = p->i;
	advance(p); /* ( */
	advance(p); /* SELECT */
	if (is_kw(p, "pg_catalog")) {
		advance(p);
		advance(p);
	}
	advance(p); /* the function's name */
	advance(p); /* ( */
	struct expr *arg = parse_or(p);
	if (!arg)
		return NULL;
	struct expr *e = expr_new(E_ELEMS, ST_ARRAY, off, off);
	if (!add_kid(p, e, arg))
		goto err;
	if (arg->has_col || arg->st != ST_JSON) {
		fail_expr(p, arg->has_col, arg,
			  arg->has_col ? "unsupported expression (array column)"
				       : "invalid expression (the elements of a json value)");
		goto err;
	}
	if (!accept_op(p, ")")) {
		syntax_here(p);
		goto err;
	}
	if (accept_kw(p, "as")) {
		if (!is_name_tok(cur(p))) {
			syntax_here(p);
			goto err;
		}
		advance(p);
	} else if (cur(p)->kind == TK_IDENT && !is_kw(p, "from") && !is_kw(p, "where")) {
		advance(p); /* alias without AS */
	}
	if (!is_op(p, ")")) {
		fail_span(p, true, off, construct_end(p, open_tok),
			  "unsupported expression (subquery)");
		goto err;
	}
	e->off = off;
	e->end = cur(p)->off + 1;
	advance(p);
	return e;
err:
	expr_free(e);
	return NULL;
}

static struct expr *parse_primary(struct ps *p)
{
	const struct tok *k = cur(p);
	size_t off = k->off, end = k->off + k->len;
	switch (k->kind) {
	case TK_STRING: {
		struct expr *e = expr_new(E_TEXT, ST_TEXT, off, end);
		e->text = string_text(p, k);
		advance(p);
		return e;
	}
	case TK_NUMBER: {
		struct expr *e = expr_new(E_NUM, ST_NUM, off, end);
		e->text = rt_xstrndup(p->t.s + k->off, k->len);
		advance(p);
		return e;
	}
	case TK_OP:
		if (tok_is_op(p, k, "(")) {
			size_t open_tok = p->i;
			advance(p);
			if (is_kw(p, "select")) { /* a scalar subquery wrapping a value */
				advance(p);
				struct expr *e = parse_or(p);
				if (!e)
					return NULL;
				if (e->has_col) {
					fail_span(p, true, off, construct_end(p, open_tok),
						  "unsupported expression (subquery)");
					expr_free(e);
					return NULL;
				}
				if (accept_kw(p, "as")) {
					if (!is_name_tok(cur(p))) {
						expr_free(e);
						syntax_here(p);
						return NULL;
					}
					advance(p);
				} else if (cur(p)->kind == TK_IDENT && !is_kw(p, "from") &&
					   !is_kw(p, "where")) {
					advance(p); /* alias without AS */
				}
				if (!is_op(p, ")")) {
					expr_free(e);
					fail_span(p, true, off, construct_end(p, open_tok),
						  "unsupported expression (subquery)");
					return NULL;
				}
				e->off = off;
				e->end = cur(p)->off + 1;
				advance(p);
				return e;
			}
			struct expr *e = parse_or(p);
			if (!e)
				return NULL;
			if (!is_op(p, ")")) {
				expr_free(e);
				syntax_here(p);
				return NULL;
			}
			e->off = off;
			e->end = cur(p)->off + 1;
			advance(p);
			return e;
		}
		syntax_here(p);
		return NULL;
	case TK_IDENT:
		if (is_kw(p, "null") || is_kw(p, "true") || is_kw(p, "false")) {
			struct expr *e = is_kw(p, "null") ? expr_new(E_NULL, ST_UNKNOWN, off, end)
							  : expr_new(E_BOOL, ST_BOOL, off, end);
			e->flag = is_kw(p, "true");
			advance(p);
			return e;
		}
		if (is_kw(p, "cast") && tok_is_op(p, peek(p, 1), "(")) {
			advance(p);
			advance(p);
			struct expr *e = parse_or(p);
			if (!e)
				return NULL;
			if (!accept_kw(p, "as")) {
				expr_free(e);
				syntax_here(p);
				return NULL;
			}
			struct expr *c = make_cast(p, e);
			if (!c)
				return NULL;
			if (!is_op(p, ")")) {
				expr_free(c);
				syntax_here(p);
				return NULL;
			}
			c->off = off;
			c->end = cur(p)->off + 1;
			advance(p);
			return c;
		}
		if (is_kw(p, "array") && at_elems(p, 1)) {
			advance(p);
			return parse_elems(p, off);
		}
		if (is_kw(p, "array") && tok_is_op(p, peek(p, 1), "[")) {
			advance(p);
			advance(p);
			struct expr *e = expr_new(E_ARRAY, ST_ARRAY, off, end);
			if (!accept_op(p, "]")) {
				for (;;) {
					struct expr *el = parse_or(p);
					if (!el)
						goto err_array;
					bool ok = add_kid(p, e, el);
					if (!ok)
						goto err_array;
					if (!is_scalar_st(el->st) ||
					    (el->has_col && !bare_col(el))) {
						fail_expr(p, true, el, "unsupported expression");
						goto err_array;
					}
					if (e->n_kids > RT_POLICY_MAX_EXPR) {
						syntax_here(p);
						goto err_array;
					}
					if (accept_op(p, "]"))
						break;
					if (!accept_op(p, ",")) {
						syntax_here(p);
						goto err_array;
					}
				}
			}
			e->off = off;
			e->end = p->t.v[p->i - 1].off + 1;
			return e;
		err_array:
			expr_free(e);
			return NULL;
		}
		if (is_unsupported_word(p)) {
			unsupported_here(p);
			return NULL;
		}
		/* fall through */
	case TK_QIDENT: {
		char *parts[4];
		size_t n_parts = 0;
		size_t first = p->i;
		parts[n_parts++] = ident_text(p, cur(p));
		end = cur(p)->off + cur(p)->len;
		advance(p);
		while (is_op(p, ".") && is_name_tok(peek(p, 1)) && n_parts < 4) {
			advance(p);
			parts[n_parts++] = ident_text(p, cur(p));
			end = cur(p)->off + cur(p)->len;
			advance(p);
		}
		struct expr *e = NULL;
		if (is_op(p, "(")) {
			if (n_parts <= 2) {
				e = parse_call(p, parts, n_parts, off); /* at the '(' */
			} else {
				fail_span(p, true, off, construct_end(p, first),
					  "unsupported expression");
			}
		} else if (is_op(p, ".") || n_parts == 4 ||
			   (k->kind == TK_IDENT && cur(p)->kind == TK_STRING)) {
			p->i = first;
			unsupported_here(p);
		} else {
			/* column, table.column or schema.table.column of the policy's table */
			bool ok = n_parts == 1 ||
				  (n_parts == 2 && p->tbl_name && !strcmp(parts[0], p->tbl_name)) ||
				  (n_parts == 3 && p->tbl_name && !strcmp(parts[1], p->tbl_name) &&
				   p->tbl_schema && !strcmp(parts[0], p->tbl_schema));
			if (!ok) {
				fail_span(p, true, off, end,
					  "unsupported expression (column of another table)");
			} else {
				e = expr_new(E_COL, ST_UNKNOWN, off, end);
				e->text = parts[n_parts - 1];
				parts[n_parts - 1] = NULL;
				e->has_col = true;
			}
		}
		for (size_t i = 0; i < n_parts; i++)
			free(parts[i]);
		return e;
	}
	default: syntax_here(p); return NULL;
	}
}

static struct expr *parse_postfix(struct ps *p)
{
	struct expr *e = parse_primary(p);
	while (e) {
		if (accept_op(p, "::")) {
			e = make_cast(p, e);
		} else if (is_op(p, "[") || is_kw(p, "collate") || is_kw(p, "at")) {
			fail_span(p, true, e->off, construct_end(p, p->i),
				  "unsupported expression");
			expr_free(e);
			return NULL;
		} else {
			break;
		}
	}
	return e;
}

static bool enter(struct ps *p)
{
	if (++p->depth > RT_POLICY_MAX_DEPTH) {
		fail_here(p, false, "expression nested too deeply");
		return false;
	}
	return true;
}

static struct expr *parse_unary(struct ps *p)
{
	if (!enter(p))
		return NULL;
	struct expr *e;
	size_t off = cur(p)->off;
	if (is_op(p, "-") && peek(p, 1)->kind == TK_NUMBER) {
		advance(p);
		e = parse_postfix(p);
		if (e && e->kind == E_NUM) {
			char *t = rt_xmalloc(strlen(e->text) + 2);
			t[0] = '-';
			strcpy(t + 1, e->text);
			free(e->text);
			e->text = t;
			e->off = off;
		} else if (e) {
			fail_span(p, true, off, e->end, "unsupported expression (arithmetic)");
			expr_free(e);
			e = NULL;
		}
	} else if (is_op(p, "-") || is_op(p, "+") || is_op(p, "~") || is_op(p, "@")) {
		unsupported_here(p);
		e = NULL;
	} else {
		e = parse_postfix(p);
	}
	p->depth--;
	return e;
}

static bool is_arith_op(const struct ps *p)
{
	static const char *const ops[] = {"+",	"-",  "*",  "/",  "%",	"^",  "&",
					  "|",	"#",  "<<", ">>", "@>", "<@", "?",
					  "?|", "?&", "@@", "~",  "!~", "~*", "!~*"};
	const struct tok *k = cur(p);
	if (k->kind != TK_OP)
		return false;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (tok_is_op(p, k, ops[i]))
			return true;
	return false;
}

/* -> ->> #> #>> || and the operators outside the subset, left to right. */
static struct expr *parse_other(struct ps *p)
{
	struct expr *e = parse_unary(p);
	while (e) {
		size_t op_tok = p->i;
		if (is_op(p, "->") || is_op(p, "->>")) {
			bool is_text = is_op(p, "->>");
			advance(p);
			if (e->has_col || e->st != ST_JSON) {
				fail_span(p, e->has_col, e->off, cur(p)->off + cur(p)->len,
					  e->has_col
						  ? "unsupported expression (json path on a column)"
						  : "invalid expression (-> needs a json value)");
				expr_free(e);
				return NULL;
			}
			struct expr *g =
				expr_new(E_GET, is_text ? ST_TEXT : ST_JSON, e->off, e->end);
			g->flag = is_text;
			if (!add_kid(p, g, e) ||
			    !parse_key_literal(p, &g->text, &g->is_index, &g->index)) {
				expr_free(g);
				return NULL;
			}
			g->end = p->t.v[p->i - 1].off + p->t.v[p->i - 1].len;
			e = g;
		} else if (is_op(p, "||")) {
			advance(p);
			struct expr *r = parse_unary(p);
			if (!r) {
				expr_free(e);
				return NULL;
			}
			struct expr *c = node2(p, E_CONCAT, ST_TEXT, e, r);
			if (!c)
				return NULL;
			if (c->has_col) {
				fail_expr(p, true, c,
					  "unsupported expression (concatenation with a column)");
				expr_free(c);
				return NULL;
			}
			if (!is_scalar_st(e->st) || !is_scalar_st(r->st)) {
				fail_expr(p, true, c,
					  "unsupported expression (concatenation of json)");
				expr_free(c);
				return NULL;
			}
			e = c;
		} else if (is_op(p, "?") && !e->has_col && e->st == ST_JSON) {
			/* json ? text: a string element, key or string scalar equal to text */
			advance(p);
			struct expr *r = parse_unary(p);
			if (!r) {
				expr_free(e);
				return NULL;
			}
			struct expr *k = expr_new(E_ELEMS, ST_ARRAY, e->off, e->end);
			k->flag = true;
			if (!add_kid(p, k, e)) {
				expr_free(k);
				expr_free(r);
				return NULL;
			}
			struct expr *a = node2(p, E_ANY, ST_BOOL, r, k);
			if (!a)
				return NULL;
			a->flag = true;
			if (r->has_col && !bare_col(r)) {
				fail_expr(p, true, r, "unsupported expression");
				expr_free(a);
				return NULL;
			}
			if (r->st != ST_TEXT && r->st != ST_UNKNOWN) {
				fail_expr(p, false, r, "invalid expression (? needs text)");
				expr_free(a);
				return NULL;
			}
			e = a;
		} else if (is_arith_op(p) || is_op(p, "#>") || is_op(p, "#>>")) {
			fail_span(p, true, e->off, construct_end(p, op_tok + 1),
				  "unsupported expression");
			expr_free(e);
			return NULL;
		} else {
			break;
		}
	}
	return e;
}

/* Parses ( list ) of IN into e's kids after the first. */
static bool parse_list(struct ps *p, struct expr *e)
{
	if (is_op(p, "(") && tok_is_kw(p, peek(p, 1), "select")) {
		/* IN (SELECT value): the one row of a subquery without FROM */
		struct expr *el = parse_primary(p);
		if (!el || !add_kid(p, e, el) || !check_pair(p, el, e->kids[0], el))
			return false;
		e->end = el->end;
		return true;
	}
	if (!accept_op(p, "(")) {
		syntax_here(p);
		return false;
	}
	for (;;) {
		struct expr *el = parse_or(p);
		if (!el)
			return false;
		if (!add_kid(p, e, el))
			return false;
		if (!check_pair(p, el, e->kids[0], el))
			return false;
		if (accept_op(p, ")"))
			break;
		if (!accept_op(p, ",")) {
			syntax_here(p);
			return false;
		}
	}
	e->end = p->t.v[p->i - 1].off + 1;
	return true;
}

/* e [NOT] IN (SELECT json[b]_array_elements_text(…)) at the '(': e = ANY of
 * the elements (NOT: <> ALL). */
static struct expr *parse_in_elems(struct ps *p, struct expr *e, bool neg)
{
	struct expr *arr = parse_elems(p, cur(p)->off);
	if (!arr) {
		expr_free(e);
		return NULL;
	}
	struct expr *a = node2(p, E_ANY, ST_BOOL, e, arr);
	if (!a)
		return NULL;
	a->neg = neg;
	if (e->has_col && !bare_col(e)) {
		fail_expr(p, true, e, "unsupported expression");
		expr_free(a);
		return NULL;
	}
	if (!is_scalar_st(e->st)) {
		fail_expr(p, false, e,
			  "invalid expression (a json value compared; use ->> for text)");
		expr_free(a);
		return NULL;
	}
	return a;
}

/* [NOT] IN, [NOT] LIKE / ILIKE and their operator spellings. */
static struct expr *parse_inlike(struct ps *p)
{
	struct expr *e = parse_other(p);
	if (!e)
		return NULL;
	bool neg = false;
	size_t save = p->i;
	if (is_kw(p, "not") &&
	    (tok_is_kw(p, peek(p, 1), "in") || tok_is_kw(p, peek(p, 1), "like") ||
	     tok_is_kw(p, peek(p, 1), "ilike") || tok_is_kw(p, peek(p, 1), "between") ||
	     tok_is_kw(p, peek(p, 1), "similar"))) {
		advance(p);
		neg = true;
	}
	if (accept_kw(p, "in")) {
		if (at_elems(p, 0))
			return parse_in_elems(p, e, neg);
		struct expr *in = expr_new(E_IN, ST_BOOL, e->off, e->end);
		in->neg = neg;
		if (!add_kid(p, in, e) || !parse_list(p, in)) {
			expr_free(in);
			return NULL;
		}
		return in;
	}
	bool is_like = false, icase = false;
	if (is_kw(p, "like") || is_kw(p, "ilike")) {
		is_like = true;
		icase = is_kw(p, "ilike");
	} else if (!neg &&
		   (is_op(p, "~~") || is_op(p, "~~*") || is_op(p, "!~~") || is_op(p, "!~~*"))) {
		is_like = true;
		icase = is_op(p, "~~*") || is_op(p, "!~~*");
		neg = is_op(p, "!~~") || is_op(p, "!~~*");
	}
	if (is_like) {
		advance(p);
		struct expr *r = parse_other(p);
		if (!r) {
			expr_free(e);
			return NULL;
		}
		struct expr *l = node2(p, E_LIKE, ST_BOOL, e, r);
		if (!l)
			return NULL;
		l->neg = neg;
		l->flag = icase;
		if (is_kw(p, "escape")) {
			unsupported_here(p);
			expr_free(l);
			return NULL;
		}
		if (!check_pair(p, l, e, r)) {
			expr_free(l);
			return NULL;
		}
		if (r->has_col) {
			fail_expr(p, true, r, "unsupported expression (pattern from a column)");
			expr_free(l);
			return NULL;
		}
		return l;
	}
	if (is_kw(p, "between") && !tok_is_kw(p, peek(p, 1), "symmetric") &&
	    !tok_is_kw(p, peek(p, 1), "asymmetric")) {
		/* x BETWEEN a AND b: x >= a AND x <= b (NOT: x < a OR x > b) */
		advance(p);
		struct expr *lo = parse_other(p), *hi = NULL;
		if (lo && !accept_kw(p, "and")) {
			syntax_here(p);
		} else if (lo) {
			hi = parse_other(p);
		}
		if (!hi) {
			expr_free(e);
			expr_free(lo);
			return NULL;
		}
		struct expr *e2 = expr_clone(e);
		struct expr *a = node2(p, E_CMP, ST_BOOL, e, lo);
		struct expr *b = a ? node2(p, E_CMP, ST_BOOL, e2, hi) : NULL;
		if (!a)
			expr_free(e2), expr_free(hi);
		struct expr *g = b ? node2(p, E_AND, ST_BOOL, a, b) : NULL;
		if (!b)
			expr_free(a);
		if (!g)
			return NULL;
		a->op = RT_QUERY_GTE;
		b->op = RT_QUERY_LTE;
		if (!check_pair(p, a, e, lo) || !check_pair(p, b, e2, hi)) {
			expr_free(g);
			return NULL;
		}
		if (!neg)
			return g;
		struct expr *n = expr_new(E_NOT, ST_BOOL, g->off, g->end);
		if (!add_kid(p, n, g)) {
			expr_free(n);
			return NULL;
		}
		return n;
	}
	if (is_kw(p, "between") || is_kw(p, "similar")) {
		p->i = save;
		fail_span(p, true, e->off, construct_end(p, p->i + 1 + (neg ? 1 : 0)),
			  "unsupported expression");
		expr_free(e);
		return NULL;
	}
	return e;
}

static bool cmp_op(const struct ps *p, enum rt_query_op *op)
{
	static const struct {
		const char *s;
		enum rt_query_op op;
	} ops[] = {{"=", RT_QUERY_EQ},	{"<>", RT_QUERY_NEQ}, {"!=", RT_QUERY_NEQ},
		   {"<", RT_QUERY_LT},	{"<=", RT_QUERY_LTE}, {">", RT_QUERY_GT},
		   {">=", RT_QUERY_GTE}};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (is_op(p, ops[i].s)) {
			*op = ops[i].op;
			return true;
		}
	return false;
}

static struct expr *parse_cmp(struct ps *p)
{
	struct expr *e = parse_inlike(p);
	enum rt_query_op op;
	if (!e || !cmp_op(p, &op))
		return e;
	advance(p);
	if ((is_kw(p, "any") || is_kw(p, "some") || is_kw(p, "all")) &&
	    tok_is_op(p, peek(p, 1), "(")) {
		bool is_all = is_kw(p, "all");
		if ((op != RT_QUERY_EQ || is_all) && (op != RT_QUERY_NEQ || !is_all)) {
			fail_span(p, true, e->off, construct_end(p, p->i),
				  "unsupported expression (only = ANY and <> ALL)");
			expr_free(e);
			return NULL;
		}
		advance(p);
		size_t open = cur(p)->off;
		struct expr *arr = NULL;
		if (at_elems(p, 0)) { /* = ANY (SELECT json[b]_array_elements_text(…)) */
			arr = parse_elems(p, open);
			if (!arr) {
				expr_free(e);
				return NULL;
			}
		} else {
			advance(p);
			if (is_kw(p, "select")) {
				p->i--;
				unsupported_here(p);
				expr_free(e);
				return NULL;
			}
			arr = parse_or(p);
			if (!arr) {
				expr_free(e);
				return NULL;
			}
			if (!is_op(p, ")")) {
				expr_free(e);
				expr_free(arr);
				syntax_here(p);
				return NULL;
			}
			arr->off = open;
			arr->end = cur(p)->off + 1;
			advance(p);
		}
		struct expr *a = node2(p, E_ANY, ST_BOOL, e, arr);
		if (!a)
			return NULL;
		a->neg = is_all;
		if (e->has_col && !bare_col(e)) {
			fail_expr(p, true, e, "unsupported expression");
			goto err_any;
		}
		if (!is_scalar_st(e->st)) {
			fail_expr(p, false, e,
				  "invalid expression (a json value compared; use ->> for text)");
			goto err_any;
		}
		if (arr->kind == E_ARRAY) {
			for (size_t i = 0; i < arr->n_kids; i++)
				if (!check_pair(p, a, e, arr->kids[i]))
					goto err_any;
		} else if (arr->has_col) {
			fail_expr(p, true, arr, "unsupported expression (array column)");
			goto err_any;
		} else if (arr->st != ST_JSON && arr->st != ST_ARRAY) {
			fail_expr(p, false, arr, "invalid expression (ANY needs an array)");
			goto err_any;
		}
		return a;
	err_any:
		expr_free(a);
		return NULL;
	}
	struct expr *r = parse_inlike(p);
	if (!r) {
		expr_free(e);
		return NULL;
	}
	struct expr *c = node2(p, E_CMP, ST_BOOL, e, r);
	if (!c)
		return NULL;
	c->op = op;
	if (!check_pair(p, c, e, r)) {
		expr_free(c);
		return NULL;
	}
	return c;
}

static struct expr *parse_is(struct ps *p)
{
	struct expr *e = parse_cmp(p);
	while (e) {
		bool neg = false;
		enum ek kind;
		bool flag = false;
		struct expr *rhs = NULL;
		if (accept_kw(p, "isnull") || (accept_kw(p, "notnull") && (neg = true))) {
			kind = E_ISNULL;
		} else if (accept_kw(p, "is")) {
			neg = accept_kw(p, "not");
			if (accept_kw(p, "null")) {
				kind = E_ISNULL;
			} else if (accept_kw(p, "unknown")) {
				kind = E_ISNULL; /* IS UNKNOWN: a NULL boolean */
			} else if (is_kw(p, "true") || is_kw(p, "false")) {
				kind = E_ISBOOL;
				flag = is_kw(p, "true");
				advance(p);
			} else if (accept_kw(p, "distinct")) {
				if (!accept_kw(p, "from")) {
					syntax_here(p);
					expr_free(e);
					return NULL;
				}
				kind = E_DISTINCT;
				rhs = parse_cmp(p);
				if (!rhs) {
					expr_free(e);
					return NULL;
				}
			} else {
				unsupported_here(p);
				expr_free(e);
				return NULL;
			}
		} else {
			break;
		}
		size_t end = p->t.v[p->i - 1].off + p->t.v[p->i - 1].len;
		struct expr *n = node2(p, kind, ST_BOOL, e, rhs);
		if (!n)
			return NULL;
		n->neg = neg;
		n->flag = flag;
		if (end > n->end)
			n->end = end;
		if (kind == E_DISTINCT) {
			if (!check_pair(p, n, e, rhs)) {
				expr_free(n);
				return NULL;
			}
		} else if (e->has_col && !bare_col(e)) {
			fail_expr(p, true, n, "unsupported expression");
			expr_free(n);
			return NULL;
		} else if (kind == E_ISBOOL && !e->has_col && e->st != ST_BOOL &&
			   e->st != ST_UNKNOWN && e->st != ST_TEXT) {
			fail_expr(p, false, n, "invalid expression (IS TRUE needs a boolean)");
			expr_free(n);
			return NULL;
		}
		e = n;
	}
	return e;
}

static struct expr *parse_not(struct ps *p)
{
	if (!is_kw(p, "not"))
		return parse_is(p);
	size_t off = cur(p)->off;
	advance(p);
	if (!enter(p))
		return NULL;
	struct expr *k = parse_not(p);
	p->depth--;
	if (!k)
		return NULL;
	if (!check_cond(p, k)) {
		expr_free(k);
		return NULL;
	}
	struct expr *e = expr_new(E_NOT, ST_BOOL, off, k->end);
	if (!add_kid(p, e, k)) {
		expr_free(e);
		return NULL;
	}
	e->off = off;
	return e;
}

/* AND / OR chains are one n-ary node. */
static struct expr *parse_chain(struct ps *p, bool is_or)
{
	struct expr *e = is_or ? parse_chain(p, false) : parse_not(p);
	if (!e || !(is_or ? is_kw(p, "or") : is_kw(p, "and")))
		return e;
	struct expr *n = expr_new(is_or ? E_OR : E_AND, ST_BOOL, e->off, e->end);
	if (!add_kid(p, n, e) || !check_cond(p, e))
		goto err;
	while (accept_kw(p, is_or ? "or" : "and")) {
		struct expr *k = is_or ? parse_chain(p, false) : parse_not(p);
		if (!k)
			goto err;
		if (!add_kid(p, n, k) || !check_cond(p, k))
			goto err;
	}
	return n;
err:
	expr_free(n);
	return NULL;
}

static struct expr *parse_or(struct ps *p)
{
	if (!enter(p))
		return NULL;
	struct expr *e = parse_chain(p, true);
	p->depth--;
	return e;
}

/* Parses the whole expression of toks [p->i, stop) — stop at a ')' at depth
 * 0 when in_parens; the caller checks what follows. */
static struct expr *parse_condition(struct ps *p)
{
	struct expr *e = parse_or(p);
	if (e && !check_cond(p, e)) {
		expr_free(e);
		return NULL;
	}
	return e;
}

/* ---- constant evaluation (the requester's values) ---- */

enum tri { T_FALSE, T_TRUE, T_NULL };

static enum tri tri_not(enum tri t)
{
	return t == T_NULL ? T_NULL : t == T_TRUE ? T_FALSE : T_TRUE;
}

static enum tri of_bool(bool b)
{
	return b ? T_TRUE : T_FALSE;
}

enum cv_kind { CV_NULL, CV_TEXT, CV_JSON, CV_LIST };

struct cval {
	enum cv_kind k;
	enum rt_pgval_class cls;
	char *text;	    /* CV_TEXT (owned) */
	const json_t *json; /* CV_JSON (borrowed from the claims or the policy) */
	char **items;	    /* CV_LIST; NULL items are SQL NULLs */
	size_t n_items;
};

struct fold_ctx {
	const struct rt_auth *who;
	const json_t *claims; /* never NULL */
};

static void cval_clear(struct cval *v)
{
	free(v->text);
	for (size_t i = 0; i < v->n_items; i++)
		free(v->items[i]);
	free(v->items);
	memset(v, 0, sizeof *v);
}

static enum rt_pgval_class class_of_st(enum st st)
{
	return st == ST_NUM ? RT_PGVAL_NUM : st == ST_BOOL ? RT_PGVAL_BOOL : RT_PGVAL_TEXT;
}

/* The text of a JSON scalar as ->> gives it; NULL for JSON null. */
static char *json_text(const json_t *j)
{
	if (!j || json_is_null(j))
		return NULL;
	if (json_is_string(j))
		return rt_xstrndup(json_string_value(j), json_string_length(j));
	char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!s)
		return NULL;
	char *r = rt_xstrdup(s);
	free(s);
	return r;
}

static void set_text(struct cval *v, char *text, enum rt_pgval_class cls)
{
	if (!text) {
		v->k = CV_NULL;
		return;
	}
	v->k = CV_TEXT;
	v->text = text;
	v->cls = cls;
}

/* claims ->> name */
static char *claim_text(const struct fold_ctx *x, const char *name)
{
	return json_text(json_object_get(x->claims, name));
}

static enum tri eval_tri(const struct fold_ctx *x, const struct expr *e);
static enum rt_pgval_class pair_class(enum rt_pgval_class a, enum rt_pgval_class b);
static enum tri cmp_texts(enum rt_query_op op, enum rt_pgval_class cls, const char *a,
			  const char *b);

static void elems_text(const json_t *j, struct cval *v);
static void elems_matched(const json_t *j, struct cval *v);

static void eval_val(const struct fold_ctx *x, const struct expr *e, struct cval *v)
{
	memset(v, 0, sizeof *v);
	v->cls = class_of_st(e->st);
	switch (e->kind) {
	case E_NULL: v->k = CV_NULL; return;
	case E_TEXT: set_text(v, rt_xstrdup(e->text), RT_PGVAL_TEXT); return;
	case E_NUM: set_text(v, rt_xstrdup(e->text), RT_PGVAL_NUM); return;
	case E_BOOL: set_text(v, rt_xstrdup(e->flag ? "true" : "false"), RT_PGVAL_BOOL); return;
	case E_JSONLIT:
		v->k = CV_JSON;
		v->json = e->json;
		return;
	case E_UID: {
		char *t = claim_text(x, "sub");
		if (t && !*t) {
			free(t);
			t = NULL;
		}
		set_text(v, t, RT_PGVAL_TEXT);
		return;
	}
	case E_ROLE:
	case E_CLAIM_SETTING: {
		const char *name = e->kind == E_ROLE ? "role" : e->text;
		set_text(v, claim_text(x, name), RT_PGVAL_TEXT);
		return;
	}
	case E_EMAIL: set_text(v, claim_text(x, "email"), RT_PGVAL_TEXT); return;
	case E_TOPIC:
		set_text(v, x->who->topic ? rt_xstrdup(x->who->topic) : NULL, RT_PGVAL_TEXT);
		return;
	case E_JWT:
	case E_CLAIMS_SETTING:
		v->k = CV_JSON;
		v->json = x->claims;
		return;
	case E_GET: {
		struct cval b;
		eval_val(x, e->kids[0], &b);
		const json_t *j = NULL;
		if (b.k == CV_JSON) {
			if (e->is_index && json_is_array(b.json)) {
				long long n = (long long)json_array_size(b.json), i = e->index;
				if (i < 0)
					i += n;
				if (i >= 0 && i < n)
					j = json_array_get(b.json, (size_t)i);
			} else if (!e->is_index && json_is_object(b.json)) {
				j = json_object_get(b.json, e->text);
			}
		}
		cval_clear(&b);
		if (!j) {
			v->k = CV_NULL;
		} else if (e->flag) {
			set_text(v, json_text(j), RT_PGVAL_TEXT);
		} else {
			v->k = CV_JSON;
			v->json = j;
		}
		return;
	}
	case E_CAST: {
		eval_val(x, e->kids[0], v);
		if (v->k == CV_NULL)
			return;
		switch (e->cast) {
		case CT_TEXT:
		case CT_NUM:
		case CT_BOOL: {
			enum rt_pgval_class cls = e->cast == CT_NUM    ? RT_PGVAL_NUM
						  : e->cast == CT_BOOL ? RT_PGVAL_BOOL
								       : RT_PGVAL_TEXT;
			if (v->k == CV_JSON) {
				const json_t *j = v->json;
				char *t = NULL;
				if (e->cast == CT_TEXT)
					t = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
				else if (e->cast == CT_NUM && json_is_number(j))
					t = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
				else if (e->cast == CT_BOOL && json_is_boolean(j))
					t = strdup(json_is_true(j) ? "true" : "false");
				memset(v, 0, sizeof *v);
				if (t) {
					set_text(v, rt_xstrdup(t), cls);
					free(t);
				}
				return;
			}
			if (v->k == CV_TEXT)
				v->cls = cls;
			return;
		}
		case CT_JSON: return; /* json stays json */
		case CT_ARRAY:
			if (v->k == CV_TEXT) {
				/* an array literal '{a,b}' */
				char **items = NULL;
				bool *nulls = NULL;
				size_t n = 0;
				int rc = rt_pgval_parse_array(v->text, strlen(v->text),
							      RT_POLICY_MAX_EXPR, &items, &nulls,
							      &n);
				cval_clear(v);
				if (rc) {
					for (size_t i = 0; i < n; i++)
						free(items[i]);
					free(items);
					free(nulls);
					v->k = CV_NULL;
					return;
				}
				for (size_t i = 0; nulls && i < n; i++)
					if (nulls[i]) {
						free(items[i]);
						items[i] = NULL;
					}
				free(nulls);
				v->k = CV_LIST;
				v->items = items;
				v->n_items = n;
			}
			v->cls = e->elem_class;
			return;
		}
		return;
	}
	case E_CONCAT: {
		struct cval a, b;
		eval_val(x, e->kids[0], &a);
		eval_val(x, e->kids[1], &b);
		if (a.k == CV_TEXT && b.k == CV_TEXT) {
			size_t la = strlen(a.text), lb = strlen(b.text);
			char *t = rt_xmalloc(la + lb + 1);
			memcpy(t, a.text, la);
			memcpy(t + la, b.text, lb + 1);
			set_text(v, t, RT_PGVAL_TEXT);
		} else {
			v->k = CV_NULL;
		}
		cval_clear(&a);
		cval_clear(&b);
		return;
	}
	case E_COALESCE:
		for (size_t i = 0; i < e->n_kids; i++) {
			eval_val(x, e->kids[i], v);
			if (v->k != CV_NULL)
				return;
		}
		return;
	case E_NULLIF: {
		struct cval b;
		eval_val(x, e->kids[0], v);
		eval_val(x, e->kids[1], &b);
		if (v->k == CV_TEXT && b.k == CV_TEXT &&
		    cmp_texts(RT_QUERY_EQ, pair_class(v->cls, b.cls), v->text, b.text) == T_TRUE)
			cval_clear(v);
		cval_clear(&b);
		return;
	}
	case E_ELEMS: {
		struct cval j;
		eval_val(x, e->kids[0], &j);
		if (j.k == CV_NULL && !e->flag) { /* no rows: an empty array */
			v->k = CV_LIST;
			v->items = rt_xcalloc(1, sizeof *v->items);
			v->cls = RT_PGVAL_TEXT;
		} else if (j.k == CV_JSON && !e->flag) {
			elems_text(j.json, v);
		} else if (j.k == CV_JSON) {
			elems_matched(j.json, v);
		} else {
			v->k = CV_NULL;
		}
		cval_clear(&j);
		return;
	}
	case E_ARRAY:
		v->k = CV_LIST;
		v->items = rt_xcalloc(e->n_kids ? e->n_kids : 1, sizeof *v->items);
		v->n_items = e->n_kids;
		v->cls = RT_PGVAL_TEXT;
		for (size_t i = 0; i < e->n_kids; i++) {
			struct cval el;
			eval_val(x, e->kids[i], &el);
			if (el.k == CV_TEXT) {
				v->items[i] = el.text;
				el.text = NULL;
				if (el.cls != RT_PGVAL_TEXT)
					v->cls = el.cls;
			}
			cval_clear(&el);
		}
		return;
	default: {
		/* a condition used as a value */
		enum tri t = eval_tri(x, e);
		if (t == T_NULL)
			v->k = CV_NULL;
		else
			set_text(v, rt_xstrdup(t == T_TRUE ? "true" : "false"), RT_PGVAL_BOOL);
		return;
	}
	}
}

/* A JSON array's elements as a list (scalars as ->> gives them). */
static void list_of(struct cval *v)
{
	if (v->k != CV_JSON)
		return;
	const json_t *a = v->json;
	if (!json_is_array(a)) {
		v->k = CV_NULL;
		return;
	}
	size_t n = json_array_size(a);
	v->k = CV_LIST;
	v->items = rt_xcalloc(n ? n : 1, sizeof *v->items);
	v->n_items = n;
	v->cls = RT_PGVAL_TEXT;
	for (size_t i = 0; i < n; i++)
		v->items[i] = json_text(json_array_get(a, i));
}

/* json[b]_array_elements_text: an array's elements as text (nested values
 * as jsonb prints them), NULL for JSON null; a scalar or an object is
 * PostgreSQL's error, here NULL. */
static void elems_text(const json_t *j, struct cval *v)
{
	if (!json_is_array(j)) {
		v->k = CV_NULL;
		return;
	}
	size_t n = json_array_size(j);
	v->k = CV_LIST;
	v->cls = RT_PGVAL_TEXT;
	v->items = rt_xcalloc(n ? n : 1, sizeof *v->items);
	v->n_items = n;
	for (size_t i = 0; i < n; i++) {
		const json_t *el = json_array_get(j, i);
		if (json_is_array(el) || json_is_object(el)) {
			char *t = json_dumps(el, JSON_ENCODE_ANY);
			v->items[i] = t ? rt_xstrdup(t) : NULL;
			free(t);
		} else {
			v->items[i] = json_text(el);
		}
	}
}

/* The texts jsonb ? text matches: an array's string elements, an object's
 * keys, a string scalar itself (nothing for other scalars). */
static void elems_matched(const json_t *j, struct cval *v)
{
	size_t n = json_is_array(j)    ? json_array_size(j)
		   : json_is_object(j) ? json_object_size(j)
		   : json_is_string(j) ? 1
				       : 0;
	v->k = CV_LIST;
	v->cls = RT_PGVAL_TEXT;
	v->items = rt_xcalloc(n ? n : 1, sizeof *v->items);
	if (json_is_array(j)) {
		for (size_t i = 0; i < n; i++) {
			const json_t *el = json_array_get(j, i);
			if (json_is_string(el))
				v->items[v->n_items++] = json_text(el);
		}
	} else if (json_is_object(j)) {
		const char *key;
		const json_t *val;
		json_object_foreach((json_t *)j, key, val)
		{
			(void)val;
			v->items[v->n_items++] = rt_xstrdup(key);
		}
	} else if (n) {
		v->items[v->n_items++] = json_text(j);
	}
}

static enum rt_pgval_class pair_class(enum rt_pgval_class a, enum rt_pgval_class b)
{
	if (a == RT_PGVAL_NUM || b == RT_PGVAL_NUM)
		return RT_PGVAL_NUM;
	if (a == RT_PGVAL_BOOL || b == RT_PGVAL_BOOL)
		return RT_PGVAL_BOOL;
	return RT_PGVAL_TEXT;
}

static enum tri cmp_result(enum rt_query_op op, int c)
{
	switch (op) {
	case RT_QUERY_EQ: return of_bool(c == 0);
	case RT_QUERY_NEQ: return of_bool(c != 0);
	case RT_QUERY_LT: return of_bool(c < 0);
	case RT_QUERY_LTE: return of_bool(c <= 0);
	case RT_QUERY_GT: return of_bool(c > 0);
	case RT_QUERY_GTE: return of_bool(c >= 0);
	default: return T_NULL;
	}
}

static enum tri cmp_texts(enum rt_query_op op, enum rt_pgval_class cls, const char *a,
			  const char *b)
{
	int c;
	if (!a || !b || rt_pgval_compare_text(cls, a, b, &c))
		return T_NULL;
	return cmp_result(op, c);
}

/* a IN list, SQL's way: a hit is true, else any NULL makes it NULL. */
static enum tri in_list(enum rt_pgval_class cls, const char *a, char *const *items, size_t n)
{
	if (!a)
		return n ? T_NULL : T_FALSE;
	enum tri r = T_FALSE;
	for (size_t i = 0; i < n; i++) {
		enum tri t = cmp_texts(RT_QUERY_EQ, cls, a, items[i]);
		if (t == T_TRUE)
			return T_TRUE;
		if (t == T_NULL)
			r = T_NULL;
	}
	return r;
}

static enum tri tri_of_val(const struct cval *v)
{
	bool b;
	if (v->k != CV_TEXT || !rt_pgval_parse_bool(v->text, &b))
		return T_NULL;
	return of_bool(b);
}

static enum tri eval_tri(const struct fold_ctx *x, const struct expr *e)
{
	switch (e->kind) {
	case E_AND:
	case E_OR: {
		bool is_and = e->kind == E_AND;
		enum tri r = is_and ? T_TRUE : T_FALSE;
		for (size_t i = 0; i < e->n_kids; i++) {
			enum tri t = eval_tri(x, e->kids[i]);
			if (t == (is_and ? T_FALSE : T_TRUE))
				return t;
			if (t == T_NULL)
				r = T_NULL;
		}
		return r;
	}
	case E_NOT: return tri_not(eval_tri(x, e->kids[0]));
	case E_CMP:
	case E_LIKE:
	case E_DISTINCT: {
		struct cval a, b;
		eval_val(x, e->kids[0], &a);
		eval_val(x, e->kids[1], &b);
		enum tri r = T_NULL;
		const char *ta = a.k == CV_TEXT ? a.text : NULL,
			   *tb = b.k == CV_TEXT ? b.text : NULL;
		enum rt_pgval_class cls =
			pair_class(a.k == CV_TEXT ? a.cls : class_of_st(e->kids[0]->st),
				   b.k == CV_TEXT ? b.cls : class_of_st(e->kids[1]->st));
		if (e->kind == E_CMP) {
			r = cmp_texts(e->op, cls, ta, tb);
		} else if (e->kind == E_LIKE) {
			if (ta && tb && rt_pgval_like_pattern_ok(tb))
				r = of_bool(rt_pgval_like_match(ta, tb, e->flag));
			if (e->neg)
				r = tri_not(r);
		} else {
			if (!ta || !tb)
				r = of_bool(!ta != !tb);
			else
				r = tri_not(cmp_texts(RT_QUERY_EQ, cls, ta, tb));
			if (r == T_NULL)
				r = T_TRUE;
			if (e->neg)
				r = tri_not(r);
		}
		cval_clear(&a);
		cval_clear(&b);
		return r;
	}
	case E_IN:
	case E_ANY: {
		struct cval a, l;
		eval_val(x, e->kids[0], &a);
		memset(&l, 0, sizeof l);
		enum rt_pgval_class cls = a.k == CV_TEXT ? a.cls : class_of_st(e->kids[0]->st);
		if (e->kind == E_IN) {
			l.k = CV_LIST;
			l.n_items = e->n_kids - 1;
			l.items = rt_xcalloc(l.n_items ? l.n_items : 1, sizeof *l.items);
			for (size_t i = 1; i < e->n_kids; i++) {
				struct cval el;
				eval_val(x, e->kids[i], &el);
				if (el.k == CV_TEXT) {
					l.items[i - 1] = el.text;
					el.text = NULL;
					cls = pair_class(cls, el.cls);
				}
				cval_clear(&el);
			}
		} else {
			eval_val(x, e->kids[1], &l);
			list_of(&l);
			if (l.k == CV_LIST)
				cls = pair_class(cls, l.cls);
		}
		enum tri r = l.k == CV_LIST ? in_list(cls, a.k == CV_TEXT ? a.text : NULL, l.items,
						      l.n_items)
					    : T_NULL;
		if (e->kind == E_ANY && e->flag && a.k != CV_TEXT)
			r = T_NULL; /* ? is strict */
		if (e->neg)
			r = tri_not(r);
		cval_clear(&a);
		cval_clear(&l);
		return r;
	}
	case E_ISNULL: {
		struct cval a;
		eval_val(x, e->kids[0], &a);
		enum tri r = of_bool(a.k == CV_NULL);
		cval_clear(&a);
		return e->neg ? tri_not(r) : r;
	}
	case E_ISBOOL: {
		struct cval a;
		eval_val(x, e->kids[0], &a);
		enum tri t = tri_of_val(&a);
		cval_clear(&a);
		enum tri r = of_bool(t == (e->flag ? T_TRUE : T_FALSE));
		return e->neg ? tri_not(r) : r;
	}
	default: {
		struct cval a;
		eval_val(x, e, &a);
		enum tri r = tri_of_val(&a);
		cval_clear(&a);
		return r;
	}
	}
}

/* ---- folding into a node tree ---- */

/* Folded: false (or NULL, which a filter treats alike), true, or a tree in *n. */
enum fr { FR_FALSE, FR_TRUE, FR_TREE };

static void node_set_cond(struct rt_query_node *n, const char *column, enum rt_query_op op,
			  bool is_negated)
{
	memset(n, 0, sizeof *n);
	n->kind = RT_QUERY_COND;
	n->column = rt_xstrdup(column);
	n->op = op;
	n->is_negated = is_negated;
}

static void node_add_value(struct rt_query_node *n, const char *v)
{
	n->values = rt_xrealloc(n->values, (n->n_values + 1) * sizeof *n->values);
	n->values[n->n_values++] = rt_xstrdup(v);
}

/* Appends kid (moved) to group g. */
static void node_add_child(struct rt_query_node *g, struct rt_query_node *kid)
{
	if (kid->kind == g->kind && !kid->is_negated) { /* flatten */
		for (size_t i = 0; i < kid->n_children; i++) {
			g->children =
				rt_xrealloc(g->children, (g->n_children + 1) * sizeof *g->children);
			g->children[g->n_children++] = kid->children[i];
		}
		free(kid->children);
		memset(kid, 0, sizeof *kid);
		return;
	}
	g->children = rt_xrealloc(g->children, (g->n_children + 1) * sizeof *g->children);
	g->children[g->n_children++] = *kid;
	memset(kid, 0, sizeof *kid);
}

/* A group folded: its one child unwrapped. */
static enum fr finish_group(struct rt_query_node *g, bool is_and, struct rt_query_node *out)
{
	if (!g->n_children) {
		rt_query_node_deinit(g);
		return is_and ? FR_TRUE : FR_FALSE;
	}
	if (g->n_children == 1) {
		*out = g->children[0];
		free(g->children);
		memset(g, 0, sizeof *g);
		return FR_TREE;
	}
	*out = *g;
	memset(g, 0, sizeof *g);
	return FR_TREE;
}

static enum rt_query_op negate_op(enum rt_query_op op)
{
	switch (op) {
	case RT_QUERY_EQ: return RT_QUERY_NEQ;
	case RT_QUERY_NEQ: return RT_QUERY_EQ;
	case RT_QUERY_LT: return RT_QUERY_GTE;
	case RT_QUERY_LTE: return RT_QUERY_GT;
	case RT_QUERY_GT: return RT_QUERY_LTE;
	case RT_QUERY_GTE: return RT_QUERY_LT;
	default: return op;
	}
}

static enum rt_query_op flip_op(enum rt_query_op op)
{
	switch (op) {
	case RT_QUERY_LT: return RT_QUERY_GT;
	case RT_QUERY_LTE: return RT_QUERY_GTE;
	case RT_QUERY_GT: return RT_QUERY_LT;
	case RT_QUERY_GTE: return RT_QUERY_LTE;
	default: return op;
	}
}

static enum fr fold(const struct fold_ctx *x, const struct expr *e, bool neg,
		    struct rt_query_node *out);

/* column op value (value from the constant side), under negation neg. */
static enum fr fold_cmp(const struct fold_ctx *x, const struct expr *col, enum rt_query_op op,
			const struct expr *k, bool neg, struct rt_query_node *out)
{
	struct cval v;
	eval_val(x, k, &v);
	if (v.k != CV_TEXT) {
		cval_clear(&v);
		return FR_FALSE; /* NULL, also negated */
	}
	node_set_cond(out, bare_col(col)->text, neg ? negate_op(op) : op, false);
	node_add_value(out, v.text);
	cval_clear(&v);
	return FR_TREE;
}

/* column [NOT] IN items (NULL items are SQL NULLs), chunked to RT_QUERY_MAX_LIST. */
static enum fr fold_in(const char *column, char *const *items, size_t n, bool is_not,
		       struct rt_query_node *out)
{
	size_t n_real = 0;
	for (size_t i = 0; i < n; i++) {
		if (items[i])
			n_real++;
		else if (is_not)
			return FR_FALSE; /* NOT IN with a NULL is never true */
	}
	if (!n_real)
		return is_not ? FR_TRUE : FR_FALSE;
	struct rt_query_node g;
	memset(&g, 0, sizeof g);
	g.kind = is_not ? RT_QUERY_AND : RT_QUERY_OR;
	struct rt_query_node c;
	memset(&c, 0, sizeof c);
	for (size_t i = 0; i < n; i++) {
		if (!items[i])
			continue;
		if (!c.column)
			node_set_cond(&c, column, RT_QUERY_IN, is_not);
		node_add_value(&c, items[i]);
		if (c.n_values == RT_QUERY_MAX_LIST)
			node_add_child(&g, &c);
	}
	if (c.column)
		node_add_child(&g, &c);
	return finish_group(&g, is_not, out);
}

static enum fr fold_group(const struct fold_ctx *x, const struct expr *const *kids, size_t n,
			  bool is_and, bool neg, struct rt_query_node *out)
{
	struct rt_query_node g;
	memset(&g, 0, sizeof g);
	g.kind = is_and ? RT_QUERY_AND : RT_QUERY_OR;
	for (size_t i = 0; i < n; i++) {
		struct rt_query_node k;
		enum fr r = fold(x, kids[i], neg, &k);
		if (r == (is_and ? FR_FALSE : FR_TRUE)) {
			rt_query_node_deinit(&g);
			return r;
		}
		if (r == FR_TREE)
			node_add_child(&g, &k);
	}
	return finish_group(&g, is_and, out);
}

static enum fr fold_tri(enum tri t, bool neg)
{
	if (neg)
		t = tri_not(t);
	return t == T_TRUE ? FR_TRUE : FR_FALSE;
}

static enum fr fold(const struct fold_ctx *x, const struct expr *e, bool neg,
		    struct rt_query_node *out)
{
	if (!e->has_col)
		return fold_tri(eval_tri(x, e), neg);
	switch (e->kind) {
	case E_COL:
	case E_CAST: /* a boolean column */
		node_set_cond(out, bare_col(e)->text, neg ? RT_QUERY_NEQ : RT_QUERY_EQ, false);
		node_add_value(out, "true");
		return FR_TREE;
	case E_NOT: return fold(x, e->kids[0], !neg, out);
	case E_AND:
	case E_OR:
		return fold_group(x, (const struct expr *const *)e->kids, e->n_kids,
				  (e->kind == E_AND) != neg, neg, out);
	case E_CMP: {
		bool left = e->kids[0]->has_col;
		return fold_cmp(x, e->kids[left ? 0 : 1], left ? e->op : flip_op(e->op),
				e->kids[left ? 1 : 0], neg, out);
	}
	case E_LIKE: {
		struct cval v;
		eval_val(x, e->kids[1], &v);
		if (v.k != CV_TEXT || !rt_pgval_like_pattern_ok(v.text)) {
			cval_clear(&v);
			return FR_FALSE;
		}
		node_set_cond(out, bare_col(e->kids[0])->text,
			      e->flag ? RT_QUERY_ILIKE : RT_QUERY_LIKE, neg != e->neg);
		node_add_value(out, v.text);
		cval_clear(&v);
		return FR_TREE;
	}
	case E_ISNULL:
		node_set_cond(out, bare_col(e->kids[0])->text, RT_QUERY_IS, neg != e->neg);
		node_add_value(out, "null");
		return FR_TREE;
	case E_ISBOOL:
		node_set_cond(out, bare_col(e->kids[0])->text, RT_QUERY_IS, neg != e->neg);
		node_add_value(out, e->flag ? "true" : "false");
		return FR_TREE;
	case E_DISTINCT: {
		bool left = e->kids[0]->has_col;
		const struct expr *col = e->kids[left ? 0 : 1], *k = e->kids[left ? 1 : 0];
		bool distinct = neg == e->neg; /* neg: IS NOT DISTINCT */
		struct cval v;
		eval_val(x, k, &v);
		if (v.k != CV_TEXT) {
			cval_clear(&v);
			node_set_cond(out, bare_col(col)->text, RT_QUERY_IS, distinct);
			node_add_value(out, "null");
			return FR_TREE;
		}
		struct rt_query_node g, c;
		memset(&g, 0, sizeof g);
		g.kind = distinct ? RT_QUERY_OR : RT_QUERY_AND;
		node_set_cond(&c, bare_col(col)->text, RT_QUERY_IS, !distinct);
		node_add_value(&c, "null");
		node_add_child(&g, &c);
		node_set_cond(&c, bare_col(col)->text, distinct ? RT_QUERY_NEQ : RT_QUERY_EQ,
			      false);
		node_add_value(&c, v.text);
		node_add_child(&g, &c);
		cval_clear(&v);
		return finish_group(&g, !distinct, out);
	}
	case E_IN:
	case E_ANY: {
		bool is_not = neg != e->neg;
		const struct expr *lhs = e->kids[0];
		if (lhs->has_col) {
			struct cval l;
			memset(&l, 0, sizeof l);
			if (e->kind == E_IN || e->kids[1]->kind == E_ARRAY) {
				const struct expr *src = e->kind == E_IN ? e : e->kids[1];
				size_t first = e->kind == E_IN ? 1 : 0;
				l.k = CV_LIST;
				l.n_items = src->n_kids - first;
				l.items = rt_xcalloc(l.n_items ? l.n_items : 1, sizeof *l.items);
				for (size_t i = first; i < src->n_kids; i++) {
					struct cval el;
					eval_val(x, src->kids[i], &el);
					if (el.k == CV_TEXT) {
						l.items[i - first] = el.text;
						el.text = NULL;
					}
					cval_clear(&el);
				}
			} else {
				eval_val(x, e->kids[1], &l);
				list_of(&l);
			}
			enum fr r = l.k == CV_LIST ? fold_in(bare_col(lhs)->text, l.items,
							     l.n_items, is_not, out)
						   : FR_FALSE;
			cval_clear(&l);
			if (r == FR_TRUE && e->kind == E_ANY && e->flag) {
				/* NOT (json ? column) with nothing to match: NULL for a NULL column */
				node_set_cond(out, bare_col(lhs)->text, RT_QUERY_IS, true);
				node_add_value(out, "null");
				r = FR_TREE;
			}
			return r;
		}
		/* constant IN (…, column, …): an OR of comparisons (AND when negated) */
		const struct expr *src = e->kind == E_IN ? e : e->kids[1];
		size_t first = e->kind == E_IN ? 1 : 0;
		struct rt_query_node g;
		memset(&g, 0, sizeof g);
		g.kind = is_not ? RT_QUERY_AND : RT_QUERY_OR;
		for (size_t i = first; i < src->n_kids; i++) {
			const struct expr *el = src->kids[i];
			struct rt_query_node k;
			enum fr r;
			if (el->has_col) {
				r = fold_cmp(x, el, RT_QUERY_EQ, lhs, is_not, &k);
			} else {
				struct cval a, b;
				eval_val(x, lhs, &a);
				eval_val(x, el, &b);
				enum tri t = cmp_texts(
					RT_QUERY_EQ,
					pair_class(class_of_st(lhs->st), class_of_st(el->st)),
					a.k == CV_TEXT ? a.text : NULL,
					b.k == CV_TEXT ? b.text : NULL);
				cval_clear(&a);
				cval_clear(&b);
				r = fold_tri(t, is_not);
			}
			if (r == (is_not ? FR_FALSE : FR_TRUE)) {
				rt_query_node_deinit(&g);
				return r;
			}
			if (r == FR_TREE)
				node_add_child(&g, &k);
		}
		return finish_group(&g, is_not, out);
	}
	default: return FR_FALSE;
	}
}

/* ---- evaluation against a row ---- */

static enum tri eval_node(const struct rt_query_node *n, const json_t *row,
			  const char *(*type_of)(const char *column, void *ctx), void *ctx,
			  int depth)
{
	enum tri r = T_NULL;
	if (depth > 4 * RT_POLICY_MAX_DEPTH)
		return T_NULL;
	if (n->kind == RT_QUERY_AND || n->kind == RT_QUERY_OR) {
		bool is_and = n->kind == RT_QUERY_AND;
		r = is_and ? T_TRUE : T_FALSE;
		for (size_t i = 0; i < n->n_children; i++) {
			enum tri t = eval_node(&n->children[i], row, type_of, ctx, depth + 1);
			if (t == (is_and ? T_FALSE : T_TRUE)) {
				r = t;
				break;
			}
			if (t == T_NULL)
				r = T_NULL;
		}
		return n->is_negated ? tri_not(r) : r;
	}
	const json_t *v = n->column && json_is_object(row) ? json_object_get(row, n->column) : NULL;
	bool is_null = !v || json_is_null(v);
	const char *val = n->n_values ? n->values[0] : NULL;
	if (n->op == RT_QUERY_IS) {
		bool b;
		if (!val || !strcmp(val, "null") || !strcmp(val, "unknown"))
			r = of_bool(is_null);
		else if (is_null)
			r = T_FALSE;
		else if (!rt_pgval_bool_of_json(v, &b))
			r = T_NULL;
		else
			r = of_bool(b == !strcmp(val, "true"));
		return n->is_negated ? tri_not(r) : r;
	}
	if (is_null || !val)
		return T_NULL;
	const char *type = type_of ? type_of(n->column, ctx) : "text";
	if (!type)
		return T_NULL;
	enum rt_pgval_class cls = rt_pgval_class_of(type);
	int c;
	switch (n->op) {
	case RT_QUERY_EQ:
	case RT_QUERY_NEQ:
	case RT_QUERY_LT:
	case RT_QUERY_LTE:
	case RT_QUERY_GT:
	case RT_QUERY_GTE:
		r = rt_pgval_compare(cls, v, val, &c) ? T_NULL : cmp_result(n->op, c);
		break;
	case RT_QUERY_IN:
		r = T_FALSE;
		for (size_t i = 0; i < n->n_values; i++) {
			if (rt_pgval_compare(cls, v, n->values[i], &c)) {
				r = T_NULL;
			} else if (c == 0) {
				r = T_TRUE;
				break;
			}
		}
		break;
	case RT_QUERY_LIKE:
	case RT_QUERY_ILIKE: {
		char *owned;
		const char *t = rt_pgval_text_of_json(v, &owned);
		r = t && rt_pgval_like_pattern_ok(val)
			    ? of_bool(rt_pgval_like_match(t, val, n->op == RT_QUERY_ILIKE))
			    : T_NULL;
		free(owned);
		break;
	}
	default: r = T_NULL; break;
	}
	return n->is_negated ? tri_not(r) : r;
}

int rt_policy_eval(const struct rt_query_node *n, const json_t *row,
		   const char *(*type_of)(const char *column, void *ctx), void *ctx)
{
	if (!n)
		return 1;
	enum tri t = eval_node(n, row, type_of, ctx, 0);
	return t == T_TRUE ? 1 : t == T_FALSE ? 0 : -1;
}

/* ---- canonical text ---- */

static const char *const op_names[] = {
	[RT_QUERY_EQ] = "eq",	  [RT_QUERY_NEQ] = "neq",     [RT_QUERY_GT] = "gt",
	[RT_QUERY_GTE] = "gte",	  [RT_QUERY_LT] = "lt",	      [RT_QUERY_LTE] = "lte",
	[RT_QUERY_LIKE] = "like", [RT_QUERY_ILIKE] = "ilike", [RT_QUERY_IS] = "is",
	[RT_QUERY_IN] = "in",
};

static void canon(const struct rt_query_node *n, struct rt_buf *out, int depth)
{
	if (n->is_negated)
		rt_buf_append_byte(out, '!');
	if (depth > 4 * RT_POLICY_MAX_DEPTH) {
		rt_buf_append_str(out, "?");
		return;
	}
	if (n->kind == RT_QUERY_AND || n->kind == RT_QUERY_OR) {
		rt_buf_append_str(out, n->kind == RT_QUERY_AND ? "and(" : "or(");
		for (size_t i = 0; i < n->n_children; i++) {
			if (i)
				rt_buf_append_byte(out, ',');
			canon(&n->children[i], out, depth + 1);
		}
		rt_buf_append_byte(out, ')');
		return;
	}
	rt_buf_append_str(out, "c(");
	const char *col = n->column ? n->column : "";
	rt_buf_append_json_str(out, col, strlen(col));
	rt_buf_printf(out, ",%s,[",
		      (size_t)n->op < sizeof op_names / sizeof op_names[0] && op_names[n->op]
			      ? op_names[n->op]
			      : "?");
	for (size_t i = 0; i < n->n_values; i++) {
		if (i)
			rt_buf_append_byte(out, ',');
		const char *v = n->values[i] ? n->values[i] : "";
		rt_buf_append_json_str(out, v, strlen(v));
	}
	rt_buf_append_str(out, "])");
}

void rt_policy_canon(const struct rt_query_node *n, struct rt_buf *out)
{
	if (!n) {
		rt_buf_append_str(out, "and()");
		return;
	}
	canon(n, out, 0);
}

static bool is_eq_cond(const struct rt_query_node *n)
{
	return n->kind == RT_QUERY_COND && !n->is_negated && n->op == RT_QUERY_EQ &&
	       n->n_values == 1 && n->column && n->values[0];
}

bool rt_policy_eq_key(const struct rt_query_node *n, const char **column, const char **value)
{
	if (!n)
		return false;
	const struct rt_query_node *k = NULL;
	if (is_eq_cond(n)) {
		k = n;
	} else if (n->kind == RT_QUERY_AND && !n->is_negated) {
		for (size_t i = 0; i < n->n_children && !k; i++)
			if (is_eq_cond(&n->children[i]))
				k = &n->children[i];
	}
	if (!k)
		return false;
	*column = k->column;
	*value = k->values[0];
	return true;
}

/* ---- the set ---- */

/* One side of a policy: none, compiled, or opaque. */
struct side {
	bool is_present;
	struct expr *e; /* NULL when opaque or absent */
};

struct pol {
	char *name;
	bool is_permissive;
	unsigned cmds;
	char **roles; /* NULL-terminated; none: every role */
	size_t n_roles;
	struct side using_, check;
};

struct tbl {
	char *schema, *name;
	bool is_enabled, is_forced;
	struct pol *pols;
	size_t n_pols;
};

struct rt_policies {
	unsigned refs;
	struct tbl *tbls;
	size_t n_tbls;
	size_t n_pols, n_opaque;
};

struct rt_policies *rt_policies_new(void)
{
	struct rt_policies *p = rt_xcalloc(1, sizeof *p);
	p->refs = 1;
	return p;
}

struct rt_policies *rt_policies_ref(struct rt_policies *p)
{
	__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

static bool pol_is_opaque(const struct pol *q)
{
	return (q->using_.is_present && !q->using_.e) || (q->check.is_present && !q->check.e);
}

static void pol_deinit(struct pol *q)
{
	free(q->name);
	for (size_t i = 0; i < q->n_roles; i++)
		free(q->roles[i]);
	free(q->roles);
	expr_free(q->using_.e);
	expr_free(q->check.e);
	memset(q, 0, sizeof *q);
}

void rt_policies_unref(struct rt_policies *p)
{
	if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < p->n_tbls; i++) {
		struct tbl *t = &p->tbls[i];
		for (size_t j = 0; j < t->n_pols; j++)
			pol_deinit(&t->pols[j]);
		free(t->pols);
		free(t->schema);
		free(t->name);
	}
	free(p->tbls);
	free(p);
}

static struct tbl *find_tbl(const struct rt_policies *p, const char *schema, const char *table)
{
	if (!p || !schema || !table)
		return NULL;
	for (size_t i = 0; i < p->n_tbls; i++)
		if (!strcmp(p->tbls[i].schema, schema) && !strcmp(p->tbls[i].name, table))
			return &p->tbls[i];
	return NULL;
}

static struct tbl *get_tbl(struct rt_policies *p, const char *schema, const char *table)
{
	struct tbl *t = find_tbl(p, schema, table);
	if (t)
		return t;
	p->tbls = rt_xrealloc(p->tbls, (p->n_tbls + 1) * sizeof *p->tbls);
	t = &p->tbls[p->n_tbls++];
	memset(t, 0, sizeof *t);
	t->schema = rt_xstrdup(schema);
	t->name = rt_xstrdup(table);
	return t;
}

static struct pol *find_pol(const struct tbl *t, const char *name)
{
	for (size_t i = 0; t && i < t->n_pols; i++)
		if (!strcmp(t->pols[i].name, name))
			return &t->pols[i];
	return NULL;
}

/* Moves q into table t (t's set counters follow). */
static void add_pol(struct rt_policies *p, struct tbl *t, struct pol *q)
{
	t->pols = rt_xrealloc(t->pols, (t->n_pols + 1) * sizeof *t->pols);
	t->pols[t->n_pols++] = *q;
	p->n_pols++;
	if (pol_is_opaque(q))
		p->n_opaque++;
	memset(q, 0, sizeof *q);
}

static void drop_pol(struct rt_policies *p, struct tbl *t, struct pol *q)
{
	if (pol_is_opaque(q))
		p->n_opaque--;
	p->n_pols--;
	pol_deinit(q);
	size_t i = (size_t)(q - t->pols);
	memmove(&t->pols[i], &t->pols[i + 1], (t->n_pols - i - 1) * sizeof *t->pols);
	t->n_pols--;
}

void rt_policies_set_enabled(struct rt_policies *p, const char *schema, const char *table,
			     bool is_enabled)
{
	if (!p || !table)
		return;
	get_tbl(p, schema ? schema : "public", table)->is_enabled = is_enabled;
}

bool rt_policies_is_enabled(const struct rt_policies *p, const char *schema, const char *table)
{
	const struct tbl *t = find_tbl(p, schema ? schema : "public", table);
	return t && t->is_enabled;
}

bool rt_policies_has_any(const struct rt_policies *p, const char *schema, const char *table)
{
	const struct tbl *t = find_tbl(p, schema ? schema : "public", table);
	return t && t->n_pols;
}

size_t rt_policies_count(const struct rt_policies *p, size_t *n_opaque)
{
	if (n_opaque)
		*n_opaque = p ? p->n_opaque : 0;
	return p ? p->n_pols : 0;
}

static bool role_applies(const struct pol *q, const char *role)
{
	if (!q->n_roles)
		return true;
	for (size_t i = 0; i < q->n_roles; i++)
		if (!strcmp(q->roles[i], "public") || (role && !strcmp(q->roles[i], role)))
			return true;
	return false;
}

enum rt_policy_verdict rt_policies_predicate(const struct rt_policies *p, const char *schema,
					     const char *table, unsigned cmd, bool is_check,
					     const struct rt_auth *who, struct rt_query_node *out)
{
	memset(out, 0, sizeof *out);
	out->kind = RT_QUERY_AND;
	if (!who || (who->role && !strcmp(who->role, "service_role")))
		return RT_POLICY_ALLOW_ALL;
	const struct tbl *t = find_tbl(p, schema ? schema : "public", table);
	if (!t || !t->is_enabled)
		return RT_POLICY_ALLOW_ALL;

	/* Which sides apply, and whether any is opaque. */
	bool has_permissive = false, is_opaque = false;
	for (size_t i = 0; i < t->n_pols; i++) {
		const struct pol *q = &t->pols[i];
		if (!(q->cmds & cmd) || !role_applies(q, who->role))
			continue;
		const struct side *s = is_check && q->check.is_present ? &q->check : &q->using_;
		if (!s->is_present)
			continue;
		if (q->is_permissive)
			has_permissive = true;
		if (!s->e)
			is_opaque = true;
	}
	if (!has_permissive)
		return RT_POLICY_DENY_ALL;
	if (is_opaque)
		return RT_POLICY_OPAQUE;

	json_t *empty = NULL;
	struct fold_ctx x = {who, who->claims};
	if (!json_is_object(x.claims))
		x.claims = empty = json_object();

	struct rt_query_node perm, all;
	memset(&perm, 0, sizeof perm);
	perm.kind = RT_QUERY_OR;
	memset(&all, 0, sizeof all);
	all.kind = RT_QUERY_AND;
	bool is_true = false, is_false = false;
	for (size_t i = 0; i < t->n_pols && !is_true; i++) {
		const struct pol *q = &t->pols[i];
		if (!q->is_permissive || !(q->cmds & cmd) || !role_applies(q, who->role))
			continue;
		const struct side *s = is_check && q->check.is_present ? &q->check : &q->using_;
		if (!s->e)
			continue;
		struct rt_query_node k;
		enum fr r = fold(&x, s->e, false, &k);
		if (r == FR_TRUE)
			is_true = true;
		else if (r == FR_TREE)
			node_add_child(&perm, &k);
	}
	struct rt_query_node pk;
	enum fr pr = is_true ? FR_TRUE : finish_group(&perm, false, &pk);
	rt_query_node_deinit(&perm);
	if (pr == FR_FALSE)
		is_false = true;
	else if (pr == FR_TREE)
		node_add_child(&all, &pk);
	for (size_t i = 0; i < t->n_pols && !is_false; i++) {
		const struct pol *q = &t->pols[i];
		if (q->is_permissive || !(q->cmds & cmd) || !role_applies(q, who->role))
			continue;
		const struct side *s = is_check && q->check.is_present ? &q->check : &q->using_;
		if (!s->e)
			continue;
		struct rt_query_node k;
		enum fr r = fold(&x, s->e, false, &k);
		if (r == FR_FALSE)
			is_false = true;
		else if (r == FR_TREE)
			node_add_child(&all, &k);
	}
	if (empty)
		json_decref(empty);
	if (is_false) {
		rt_query_node_deinit(&all);
		return RT_POLICY_DENY_ALL;
	}
	struct rt_query_node res;
	enum fr r = finish_group(&all, true, &res);
	if (r == FR_TRUE)
		return RT_POLICY_ALLOW_ALL;
	*out = res;
	return RT_POLICY_ROWS;
}

/* ---- validation ---- */

static int check_cols(const struct expr *e, const struct tbl *t, const struct pol *q,
		      bool (*has_column)(const char *, const char *, const char *, void *),
		      void *ctx, char *err, size_t err_cap)
{
	if (!e)
		return 0;
	if (e->kind == E_COL && !has_column(t->schema, t->name, e->text, ctx)) {
		errf(err, err_cap, "policy \"%s\" on %s.%s: column \"%s\" does not exist", q->name,
		     t->schema, t->name, e->text);
		return -1;
	}
	for (size_t i = 0; i < e->n_kids; i++)
		if (check_cols(e->kids[i], t, q, has_column, ctx, err, err_cap))
			return -1;
	return 0;
}

int rt_policies_validate(const struct rt_policies *p,
			 bool (*has_column)(const char *schema, const char *table,
					    const char *column, void *ctx),
			 void *ctx, char *err, size_t err_cap)
{
	for (size_t i = 0; p && i < p->n_tbls; i++) {
		const struct tbl *t = &p->tbls[i];
		for (size_t j = 0; j < t->n_pols; j++) {
			const struct pol *q = &t->pols[j];
			if (!has_column(t->schema, t->name, NULL, ctx)) {
				errf(err, err_cap, "policy \"%s\" on %s.%s: table does not exist",
				     q->name, t->schema, t->name);
				return -1;
			}
			if (check_cols(q->using_.e, t, q, has_column, ctx, err, err_cap) ||
			    check_cols(q->check.e, t, q, has_column, ctx, err, err_cap))
				return -1;
		}
	}
	return 0;
}

/* ---- statements ---- */

static void ps_init(struct ps *p, const char *s, size_t n)
{
	memset(p, 0, sizeof *p);
	lex(&p->t, s, n);
}

/* [schema.]name; false with a syntax error. */
static bool parse_qualified(struct ps *p, const char *default_schema, char **schema, char **name)
{
	*schema = *name = NULL;
	if (!is_name_tok(cur(p))) {
		syntax_here(p);
		return false;
	}
	char *a = ident_text(p, cur(p));
	advance(p);
	if (is_op(p, ".")) {
		advance(p);
		if (!is_name_tok(cur(p))) {
			free(a);
			syntax_here(p);
			return false;
		}
		*schema = a;
		*name = ident_text(p, cur(p));
		advance(p);
		if (is_op(p, ".")) { /* database.schema.table */
			syntax_here(p);
			free(*schema);
			free(*name);
			*schema = *name = NULL;
			return false;
		}
		return true;
	}
	*schema = rt_xstrdup(default_schema ? default_schema : "public");
	*name = a;
	return true;
}

static bool at_end(struct ps *p)
{
	accept_op(p, ";");
	return cur(p)->kind == TK_EOF;
}

/* Parses "( condition )" at the cursor into *out. */
static bool parse_paren_expr(struct ps *p, struct expr **out)
{
	if (!is_op(p, "(")) {
		syntax_here(p);
		return false;
	}
	size_t open = cur(p)->off;
	advance(p);
	p->depth = 0;
	struct expr *e = parse_condition(p);
	if (!e)
		return false;
	if (!is_op(p, ")")) {
		expr_free(e);
		if (!p->has_err) {
			if (is_arith_op(p) || is_kw(p, "from") || cur(p)->kind == TK_IDENT)
				unsupported_here(p);
			else
				syntax_here(p);
		}
		return false;
	}
	if (cur(p)->off - open - 1 > RT_POLICY_MAX_EXPR) {
		expr_free(e);
		fail_span(p, false, open, open + 1, "expression is longer than 8192 bytes");
		return false;
	}
	advance(p);
	*out = e;
	return true;
}

static int policy_err(const struct ps *p, const char *name, const char *schema, const char *table,
		      char *err, size_t err_cap)
{
	char m[256];
	format_err(p, m, sizeof m);
	if (name && table)
		errf(err, err_cap, "policy \"%s\" on %s.%s: %s", name, schema, table, m);
	else if (name)
		errf(err, err_cap, "policy \"%s\": %s", name, m);
	else
		errf(err, err_cap, "CREATE POLICY: %s", m);
	return -1;
}

/* [TO role, …] [USING (…)] [WITH CHECK (…)] into q (what is given). */
static bool parse_clauses(struct ps *p, struct pol *q)
{
	if (accept_kw(p, "to")) {
		for (;;) {
			if (is_kw(p, "current_user") || is_kw(p, "session_user") ||
			    is_kw(p, "current_role")) {
				fail_here(p, true, "unsupported role");
				return false;
			}
			if (!is_name_tok(cur(p))) {
				syntax_here(p);
				return false;
			}
			if (q->n_roles >= RT_QUERY_MAX_LIST) {
				fail_here(p, false, "too many roles");
				return false;
			}
			q->roles = rt_xrealloc(q->roles, (q->n_roles + 2) * sizeof *q->roles);
			q->roles[q->n_roles++] = ident_text(p, cur(p));
			q->roles[q->n_roles] = NULL;
			advance(p);
			if (!accept_op(p, ","))
				break;
		}
	}
	if (accept_kw(p, "using")) {
		q->using_.is_present = true;
		if (!parse_paren_expr(p, &q->using_.e))
			return false;
	}
	if (is_kw(p, "with") && tok_is_kw(p, peek(p, 1), "check")) {
		advance(p);
		advance(p);
		q->check.is_present = true;
		if (!parse_paren_expr(p, &q->check.e))
			return false;
	}
	return true;
}

static int create_policy(struct rt_policies *set, struct ps *p, const char *default_schema,
			 char *err, size_t err_cap)
{
	int rc = -1;
	struct pol q;
	memset(&q, 0, sizeof q);
	q.is_permissive = true;
	q.cmds = RT_POLICY_ALL;
	char *schema = NULL, *table = NULL;
	if (!is_name_tok(cur(p))) {
		syntax_here(p);
		return policy_err(p, NULL, NULL, NULL, err, err_cap);
	}
	q.name = ident_text(p, cur(p));
	advance(p);
	if (!accept_kw(p, "on")) {
		syntax_here(p);
		goto err_syntax;
	}
	if (!parse_qualified(p, default_schema, &schema, &table))
		goto err_syntax;
	p->tbl_schema = schema;
	p->tbl_name = table;
	if (accept_kw(p, "as")) {
		if (accept_kw(p, "restrictive")) {
			q.is_permissive = false;
		} else if (!accept_kw(p, "permissive")) {
			syntax_here(p);
			goto err_syntax;
		}
	}
	if (accept_kw(p, "for")) {
		static const struct {
			const char *kw;
			unsigned cmds;
		} cmds[] = {{"all", RT_POLICY_ALL},
			    {"select", RT_POLICY_SELECT},
			    {"insert", RT_POLICY_INSERT},
			    {"update", RT_POLICY_UPDATE},
			    {"delete", RT_POLICY_DELETE}};
		size_t i;
		for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
			if (accept_kw(p, cmds[i].kw))
				break;
		if (i == sizeof cmds / sizeof cmds[0]) {
			syntax_here(p);
			goto err_syntax;
		}
		q.cmds = cmds[i].cmds;
	}
	if (!parse_clauses(p, &q))
		goto err_syntax;
	if (!at_end(p)) {
		syntax_here(p);
		goto err_syntax;
	}
	if (q.cmds == RT_POLICY_INSERT && q.using_.is_present) {
		errf(err, err_cap,
		     "policy \"%s\" on %s.%s: only WITH CHECK expression allowed for INSERT",
		     q.name, schema, table);
		goto out;
	}
	if ((q.cmds == RT_POLICY_SELECT || q.cmds == RT_POLICY_DELETE) && q.check.is_present) {
		errf(err, err_cap,
		     "policy \"%s\" on %s.%s: WITH CHECK cannot be applied to SELECT or DELETE",
		     q.name, schema, table);
		goto out;
	}
	struct tbl *t = find_tbl(set, schema, table);
	if (find_pol(t, q.name)) {
		errf(err, err_cap, "policy \"%s\" for table \"%s\" already exists", q.name, table);
		goto out;
	}
	if (set->n_pols >= RT_POLICY_MAX_POLICIES) {
		errf(err, err_cap, "policy \"%s\" on %s.%s: too many policies (maximum %d)", q.name,
		     schema, table, RT_POLICY_MAX_POLICIES);
		goto out;
	}
	add_pol(set, get_tbl(set, schema, table), &q);
	rc = 1;
	goto out;
err_syntax:
	policy_err(p, q.name, schema, table, err, err_cap);
out:
	pol_deinit(&q);
	free(schema);
	free(table);
	return rc;
}

/* ALTER POLICY name ON table { RENAME TO new | [TO …] [USING (…)] [WITH CHECK (…)] }. */
static int alter_policy(struct rt_policies *set, struct ps *p, const char *default_schema,
			char *err, size_t err_cap)
{
	int rc = -1;
	struct pol q;
	memset(&q, 0, sizeof q);
	char *schema = NULL, *table = NULL, *rename = NULL;
	if (!is_name_tok(cur(p))) {
		syntax_here(p);
		return policy_err(p, NULL, NULL, NULL, err, err_cap);
	}
	q.name = ident_text(p, cur(p));
	advance(p);
	if (!accept_kw(p, "on")) {
		syntax_here(p);
		goto err_syntax;
	}
	if (!parse_qualified(p, default_schema, &schema, &table))
		goto err_syntax;
	p->tbl_schema = schema;
	p->tbl_name = table;
	if (accept_kw(p, "rename")) {
		if (!accept_kw(p, "to") || !is_name_tok(cur(p))) {
			syntax_here(p);
			goto err_syntax;
		}
		rename = ident_text(p, cur(p));
		advance(p);
	} else if (!parse_clauses(p, &q)) {
		goto err_syntax;
	}
	if (!at_end(p)) {
		syntax_here(p);
		goto err_syntax;
	}
	struct tbl *t = find_tbl(set, schema, table);
	struct pol *old = find_pol(t, q.name);
	if (!old) {
		errf(err, err_cap, "policy \"%s\" for table \"%s\" does not exist", q.name, table);
		goto out;
	}
	if (rename) {
		if (find_pol(t, rename)) {
			errf(err, err_cap, "policy \"%s\" for table \"%s\" already exists", rename,
			     table);
			goto out;
		}
		free(old->name);
		old->name = rename;
		rename = NULL;
		rc = 1;
		goto out;
	}
	if (old->cmds == RT_POLICY_INSERT && q.using_.is_present) {
		errf(err, err_cap,
		     "policy \"%s\" on %s.%s: only WITH CHECK expression allowed for INSERT",
		     q.name, schema, table);
		goto out;
	}
	if ((old->cmds == RT_POLICY_SELECT || old->cmds == RT_POLICY_DELETE) &&
	    q.check.is_present) {
		errf(err, err_cap,
		     "policy \"%s\" on %s.%s: WITH CHECK cannot be applied to SELECT or DELETE",
		     q.name, schema, table);
		goto out;
	}
	bool was_opaque = pol_is_opaque(old);
	if (q.roles) {
		struct pol tmp = {0};
		tmp.roles = old->roles;
		tmp.n_roles = old->n_roles;
		old->roles = q.roles;
		old->n_roles = q.n_roles;
		q.roles = tmp.roles;
		q.n_roles = tmp.n_roles;
	}
	if (q.using_.is_present) {
		struct side sw = old->using_;
		old->using_ = q.using_;
		q.using_ = sw;
	}
	if (q.check.is_present) {
		struct side sw = old->check;
		old->check = q.check;
		q.check = sw;
	}
	if (was_opaque && !pol_is_opaque(old))
		set->n_opaque--;
	rc = 1;
	goto out;
err_syntax:
	policy_err(p, q.name, schema, table, err, err_cap);
out:
	pol_deinit(&q);
	free(schema);
	free(table);
	free(rename);
	return rc;
}

static int drop_policy(struct rt_policies *set, struct ps *p, const char *default_schema, char *err,
		       size_t err_cap)
{
	char m[256];
	bool if_exists = false;
	if (is_kw(p, "if") && tok_is_kw(p, peek(p, 1), "exists")) {
		advance(p);
		advance(p);
		if_exists = true;
	}
	char *name = NULL, *schema = NULL, *table = NULL;
	int rc = -1;
	if (!is_name_tok(cur(p))) {
		syntax_here(p);
		goto err_syntax;
	}
	name = ident_text(p, cur(p));
	advance(p);
	if (!accept_kw(p, "on")) {
		syntax_here(p);
		goto err_syntax;
	}
	if (!parse_qualified(p, default_schema, &schema, &table))
		goto err_syntax;
	if (!accept_kw(p, "cascade"))
		accept_kw(p, "restrict");
	if (!at_end(p)) {
		syntax_here(p);
		goto err_syntax;
	}
	struct tbl *t = find_tbl(set, schema, table);
	struct pol *q = find_pol(t, name);
	if (q)
		drop_pol(set, t, q);
	else if (!if_exists) {
		errf(err, err_cap, "policy \"%s\" for table \"%s\" does not exist", name, table);
		goto out;
	}
	rc = 1;
	goto out;
err_syntax:
	format_err(p, m, sizeof m);
	errf(err, err_cap, "DROP POLICY: %s", m);
out:
	free(name);
	free(schema);
	free(table);
	return rc;
}

/* ALTER TABLE … { ENABLE | DISABLE | FORCE | NO FORCE } ROW LEVEL SECURITY [, …]. */
static int alter_table(struct rt_policies *set, struct ps *p, const char *default_schema, char *err,
		       size_t err_cap)
{
	if (is_kw(p, "if") && tok_is_kw(p, peek(p, 1), "exists")) {
		advance(p);
		advance(p);
	}
	accept_kw(p, "only");
	char *schema, *table;
	if (!parse_qualified(p, default_schema, &schema, &table))
		return 0;
	accept_op(p, "*");
	int n_rls = 0, n_other = 0;
	enum { A_ENABLE, A_DISABLE, A_FORCE, A_NOFORCE } acts[64];
	int rc = 0;
	for (;;) {
		size_t save = p->i;
		int act = -1;
		if (accept_kw(p, "enable"))
			act = A_ENABLE;
		else if (accept_kw(p, "disable"))
			act = A_DISABLE;
		else if (accept_kw(p, "force"))
			act = A_FORCE;
		else if (is_kw(p, "no") && tok_is_kw(p, peek(p, 1), "force")) {
			advance(p);
			advance(p);
			act = A_NOFORCE;
		}
		if (act >= 0 && accept_kw(p, "row") && accept_kw(p, "level") &&
		    accept_kw(p, "security") &&
		    (is_op(p, ",") || is_op(p, ";") || cur(p)->kind == TK_EOF)) {
			if (n_rls < 64)
				acts[n_rls] = act;
			n_rls++;
		} else {
			p->i = save;
			n_other++;
			int depth = 0;
			while (cur(p)->kind != TK_EOF && cur(p)->kind != TK_BAD &&
			       !(depth == 0 && is_op(p, ","))) {
				if (is_op(p, "("))
					depth++;
				else if (is_op(p, ")"))
					depth--;
				advance(p);
			}
			if (cur(p)->kind == TK_BAD)
				break;
		}
		if (!accept_op(p, ","))
			break;
	}
	if (!n_rls)
		goto out;
	if (n_other || n_rls > 64 || !at_end(p)) {
		errf(err, err_cap,
		     "ALTER TABLE %s.%s: row level security actions mixed with other actions are "
		     "not "
		     "supported",
		     schema, table);
		rc = -1;
		goto out;
	}
	struct tbl *t = get_tbl(set, schema, table);
	for (int i = 0; i < n_rls; i++) {
		if (acts[i] == A_ENABLE || acts[i] == A_DISABLE)
			t->is_enabled = acts[i] == A_ENABLE;
		else
			t->is_forced = acts[i] == A_FORCE;
	}
	rc = 1;
out:
	free(schema);
	free(table);
	return rc;
}

int rt_policies_add_statement(struct rt_policies *set, const char *stmt, size_t len,
			      const char *default_schema, char *err, size_t err_cap)
{
	if (err && err_cap)
		err[0] = '\0';
	if (!stmt)
		return 0;
	struct ps p;
	ps_init(&p, stmt, len);
	int rc = 0;
	if (is_kw(&p, "create") && tok_is_kw(&p, peek(&p, 1), "policy")) {
		advance(&p);
		advance(&p);
		rc = create_policy(set, &p, default_schema, err, err_cap);
	} else if (is_kw(&p, "alter") && tok_is_kw(&p, peek(&p, 1), "policy")) {
		advance(&p);
		advance(&p);
		rc = alter_policy(set, &p, default_schema, err, err_cap);
	} else if (is_kw(&p, "drop") && tok_is_kw(&p, peek(&p, 1), "policy")) {
		advance(&p);
		advance(&p);
		rc = drop_policy(set, &p, default_schema, err, err_cap);
	} else if (is_kw(&p, "alter") && tok_is_kw(&p, peek(&p, 1), "table")) {
		advance(&p);
		advance(&p);
		rc = alter_table(set, &p, default_schema, err, err_cap);
	}
	toks_free(&p.t);
	return rc;
}

/* Compiles a catalog expression; false (reason in msg) when outside the subset. */
static bool compile_def_expr(const char *sql, const char *schema, const char *table,
			     struct expr **out, char *msg, size_t msg_cap)
{
	*out = NULL;
	size_t n = strlen(sql);
	if (n > RT_POLICY_MAX_EXPR) {
		snprintf(msg, msg_cap, "expression is longer than %d bytes", RT_POLICY_MAX_EXPR);
		return false;
	}
	struct ps p;
	ps_init(&p, sql, n);
	p.tbl_schema = schema;
	p.tbl_name = table;
	struct expr *e = parse_condition(&p);
	if (e && cur(&p)->kind != TK_EOF) {
		expr_free(e);
		e = NULL;
		if (is_arith_op(&p) || cur(&p)->kind == TK_IDENT)
			unsupported_here(&p);
		else
			syntax_here(&p);
	}
	if (!e)
		format_err(&p, msg, msg_cap);
	toks_free(&p.t);
	*out = e;
	return e != NULL;
}

int rt_policies_add_def(struct rt_policies *set, const struct rt_policy_def *def, char *err,
			size_t err_cap)
{
	if (err && err_cap)
		err[0] = '\0';
	if (!def || !def->table || !def->name || !def->cmds || (def->cmds & ~RT_POLICY_ALL)) {
		errf(err, err_cap, "malformed policy definition");
		return -1;
	}
	const char *schema = def->schema ? def->schema : "public";
	if ((def->cmds == RT_POLICY_INSERT && def->using_sql) ||
	    ((def->cmds == RT_POLICY_SELECT || def->cmds == RT_POLICY_DELETE) && def->check_sql)) {
		errf(err, err_cap,
		     "policy \"%s\" on %s.%s: malformed definition (expression for "
		     "the wrong command)",
		     def->name, schema, def->table);
		return -1;
	}
	struct tbl *t = find_tbl(set, schema, def->table);
	if (find_pol(t, def->name)) {
		errf(err, err_cap, "policy \"%s\" for table \"%s\" already exists", def->name,
		     def->table);
		return -1;
	}
	if (set->n_pols >= RT_POLICY_MAX_POLICIES) {
		errf(err, err_cap, "policy \"%s\" on %s.%s: too many policies (maximum %d)",
		     def->name, schema, def->table, RT_POLICY_MAX_POLICIES);
		return -1;
	}
	struct pol q;
	memset(&q, 0, sizeof q);
	q.name = rt_xstrdup(def->name);
	q.is_permissive = def->is_permissive;
	q.cmds = def->cmds;
	for (size_t i = 0; def->roles && def->roles[i]; i++) {
		q.roles = rt_xrealloc(q.roles, (q.n_roles + 2) * sizeof *q.roles);
		q.roles[q.n_roles++] = rt_xstrdup(def->roles[i]);
		q.roles[q.n_roles] = NULL;
	}
	int rc = 0;
	char msg[256];
	if (def->using_sql) {
		q.using_.is_present = true;
		if (!compile_def_expr(def->using_sql, schema, def->table, &q.using_.e, msg,
				      sizeof msg)) {
			errf(err, err_cap, "policy \"%s\" on %s.%s: USING: %s", def->name, schema,
			     def->table, msg);
			rc = 1;
		}
	}
	if (def->check_sql) {
		q.check.is_present = true;
		if (!compile_def_expr(def->check_sql, schema, def->table, &q.check.e, msg,
				      sizeof msg) &&
		    rc == 0) {
			errf(err, err_cap, "policy \"%s\" on %s.%s: WITH CHECK: %s", def->name,
			     schema, def->table, msg);
			rc = 1;
		}
	}
	add_pol(set, get_tbl(set, schema, def->table), &q);
	return rc;
}
