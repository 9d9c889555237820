#include "realtime/filter.h"

#include <ctype.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/pgval.h"

#define PARSE_PREFIX "Error parsing `filter` params: "
/* Elixir's inspect shows at most this many bytes of a non-printable binary. */
#define INSPECT_BIN_LIMIT 50

static const char *const op_names[] = {
	[RT_FOP_EQ] = "eq",
	[RT_FOP_NEQ] = "neq",
	[RT_FOP_LT] = "lt",
	[RT_FOP_LTE] = "lte",
	[RT_FOP_GT] = "gt",
	[RT_FOP_GTE] = "gte",
	[RT_FOP_IN] = "in",
	[RT_FOP_LIKE] = "like",
	[RT_FOP_ILIKE] = "ilike",
	[RT_FOP_IS] = "is",
	[RT_FOP_MATCH] = "match",
	[RT_FOP_IMATCH] = "imatch",
	[RT_FOP_ISDISTINCT] = "isdistinct",
};
#define N_OPS (sizeof op_names / sizeof op_names[0])

/* What rt_filter_cond.regex points to: evaluation data private to this file. */
struct cond_priv {
	regex_t re;
	bool has_re;   /* match/imatch: re compiled (a bad pattern is reported by check) */
	bool *is_null; /* in: per element, an unquoted NULL (a SQL NULL element) */
};

/* ---- errors ---- */

static void set_err(char *err, size_t err_cap, const char *msg, size_t msg_len)
{
	if (!err || !err_cap)
		return;
	size_t n = msg_len < err_cap - 1 ? msg_len : err_cap - 1;
	memcpy(err, msg, n);
	err[n] = '\0';
}

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

/* ---- Elixir inspect of a list of binaries ---- */

/* Decodes one UTF-8 sequence as Erlang's <<c::utf8>> does (no overlongs, no
 * surrogates, at most U+10FFFF). Returns its length, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	if (!n)
		return 0;
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if ((c & 0xE0) == 0xC0) {
		len = 2, v = c & 0x1F, min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		len = 3, v = c & 0x0F, min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return len;
}

/* String.printable?/1: valid UTF-8 of printable code points and the escapable controls. */
static bool is_printable(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = utf8_decode(p + i, n - i, &cp);
		if (!len)
			return false;
		bool ok = (cp >= 0x20 && cp <= 0x7E) || (cp >= 0xA0 && cp <= 0xD7FF) ||
			  (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF) ||
			  (cp && cp < 0x80 && strchr("\n\r\t\v\b\f\x1b\x7f\a", (int)cp));
		if (!ok)
			return false;
		i += len;
	}
	return true;
}

static void inspect_bin(struct rt_buf *b, const char *s, size_t n)
{
	if (is_printable(s, n)) {
		rt_buf_append_byte(b, '"');
		for (size_t i = 0; i < n; i++) {
			char c = s[i];
			const char *esc = NULL;
			switch (c) {
			case '"': esc = "\\\""; break;
			case '\\': esc = "\\\\"; break;
			case '\a': esc = "\\a"; break;
			case '\b': esc = "\\b"; break;
			case '\x7f': esc = "\\d"; break;
			case '\x1b': esc = "\\e"; break;
			case '\f': esc = "\\f"; break;
			case '\n': esc = "\\n"; break;
			case '\r': esc = "\\r"; break;
			case '\t': esc = "\\t"; break;
			case '\v': esc = "\\v"; break;
			case '#':
				if (i + 1 < n && s[i + 1] == '{')
					esc = "\\#";
				break;
			default: break;
			}
			if (esc)
				rt_buf_append_str(b, esc);
			else
				rt_buf_append_byte(b, (uint8_t)c);
		}
		rt_buf_append_byte(b, '"');
		return;
	}
	rt_buf_append_str(b, "<<");
	for (size_t i = 0; i < n; i++) {
		if (i)
			rt_buf_append_str(b, ", ");
		if (i == INSPECT_BIN_LIMIT) {
			rt_buf_append_str(b, "...");
			break;
		}
		rt_buf_printf(b, "%u", (unsigned)(unsigned char)s[i]);
	}
	rt_buf_append_str(b, ">>");
}

/* Writes PARSE_PREFIX followed by inspect([a]) or inspect([a, b]). */
static void err_inspect(char *err, size_t err_cap, const char *a, size_t a_len, const char *b,
			size_t b_len)
{
	struct rt_buf m;
	rt_buf_init(&m);
	rt_buf_append_str(&m, PARSE_PREFIX "[");
	inspect_bin(&m, a, a_len);
	if (b) {
		rt_buf_append_str(&m, ", ");
		inspect_bin(&m, b, b_len);
	}
	rt_buf_append_byte(&m, ']');
	set_err(err, err_cap, m.data, m.len);
	rt_buf_deinit(&m);
}

/* ---- parsing ---- */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static void trim(const char **s, size_t *n)
{
	while (*n && is_ws(**s))
		(*s)++, (*n)--;
	while (*n && is_ws((*s)[*n - 1]))
		(*n)--;
}

/* Length of the next segment of s: up to the first comma outside parentheses
 * and outside a quoted section (the upstream split_top_level walk). */
static size_t segment_len(const char *s, size_t n)
{
	int depth = 0;
	bool quoted = false;
	char prev = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (quoted) {
			if (c == '\\' && i + 1 < n) {
				prev = s[++i];
			} else {
				if (c == '"')
					quoted = false;
				prev = c;
			}
			continue;
		}
		if (c == '"' && (prev == '.' || prev == '(' || prev == ',')) {
			quoted = true;
		} else if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (depth > 0)
				depth--;
		} else if (c == ',' && depth == 0) {
			return i;
		}
		prev = c;
	}
	return n;
}

/* A value fully wrapped in double quotes loses them, `\x` becoming x; an
 * unterminated quote or anything after the closing one keeps it literal. */
static char *unquote_value(const char *v, size_t n)
{
	if (!n || v[0] != '"')
		return rt_xstrndup(v, n);
	char *out = rt_xmalloc(n);
	size_t o = 0;
	for (size_t i = 1; i < n; i++) {
		if (v[i] == '"') {
			if (i != n - 1)
				break;
			out[o] = '\0';
			return out;
		}
		if (v[i] == '\\' && i + 1 < n)
			i++;
		out[o++] = v[i];
	}
	free(out);
	return rt_xstrndup(v, n);
}

/* Where a bracket expression starting at p ('[') ends. */
static const char *skip_bracket(const char *p)
{
	const char *q = p + 1;
	if (*q == '^')
		q++;
	if (*q == ']')
		q++;
	while (*q && *q != ']') {
		if (*q == '[' && (q[1] == ':' || q[1] == '=' || q[1] == '.')) {
			char t = q[1];
			for (q += 2; *q && !(q[0] == t && q[1] == ']'); q++)
				;
			if (*q)
				q += 2;
		} else {
			q++;
		}
	}
	return *q ? q + 1 : q;
}

/* Parses a bound "{m}", "{m,}", "{m,n}" or "{,n}" at p; returns its end and
 * the largest repetition count it allows plus one, or NULL when p is no bound. */
static const char *parse_bound(const char *p, size_t *mult)
{
	size_t v[2] = {0, 0}, k = 0;
	bool has_digits[2] = {false, false};
	for (p++; *p != '}'; p++) {
		if (isdigit((unsigned char)*p)) {
			if (v[k] < 1000000)
				v[k] = v[k] * 10 + (size_t)(*p - '0');
			has_digits[k] = true;
		} else if (*p == ',' && k == 0) {
			k = 1;
		} else {
			return NULL;
		}
	}
	if (!has_digits[0] && !has_digits[1])
		return NULL;
	*mult = (k == 0 ? v[0] : has_digits[1] ? v[1] : v[0]) + 1;
	return p + 1;
}

/*
 * Why pattern p is refused (NULL when it is not). glibc's matcher takes
 * exponential time on back-references, expands bounded repetitions (and +)
 * eagerly, and slows down badly on stacked quantifiers, so: no
 * back-references; a quantifier may be followed only by one '?' (Postgres'
 * non-greedy form, which matches the same strings); at most REGEX_MAX_LEN
 * bytes; and a pattern whose expansion is estimated above REGEX_MAX_COST
 * atoms or nests groups deeper than REGEX_MAX_DEPTH is "too complex".
 */
#define REGEX_MAX_LEN	256
#define REGEX_MAX_COST	1000
#define REGEX_MAX_DEPTH 64
static const char *regex_refusal(const char *p)
{
	static const char *const too_complex = "regular expression is too complex";
	if (strlen(p) > REGEX_MAX_LEN)
		return "regular expression is longer than 256 bytes";
	unsigned long long total[REGEX_MAX_DEPTH + 1] = {0}, last[REGEX_MAX_DEPTH + 1] = {0};
	int d = 0;
	int quant = 0; /* 1 right after a quantifier, 2 after its non-greedy '?' */
	while (*p) {
		unsigned long long atom = 1;
		size_t mult = 1;
		const char *e = NULL;
		switch (*p) {
		case '\\':
			if (p[1] >= '1' && p[1] <= '9')
				return "back-references are not supported";
			p += p[1] ? 2 : 1;
			break;
		case '[': p = skip_bracket(p); break;
		case '(':
			if (d == REGEX_MAX_DEPTH)
				return too_complex;
			d++;
			total[d] = last[d] = 0;
			quant = 0;
			p++;
			continue;
		case ')':
			if (d > 0) {
				atom = total[d] ? total[d] : 1;
				d--;
			}
			p++;
			break;
		case '|':
			last[d] = 0;
			quant = 0;
			p++;
			continue;
		case '*':
		case '?':
			e = p + 1; /* repeats what precedes without copying it */
			break;
		case '+':
			e = p + 1; /* compiled as x x*: one more copy */
			mult = 2;
			break;
		case '{':
			e = parse_bound(p, &mult);
			if (!e)
				p++;
			break;
		default: p++; break;
		}
		if (e) {
			if (quant == 1 && *p == '?') {
				quant = 2;
			} else if (quant) {
				return "quantifier operand invalid";
			} else {
				quant = 1;
				total[d] += last[d] * (mult - 1);
				last[d] *= mult;
				if (total[d] > REGEX_MAX_COST)
					return too_complex;
			}
			p = e;
			continue;
		}
		quant = 0;
		last[d] = atom;
		total[d] += atom;
		if (total[d] > REGEX_MAX_COST)
			return too_complex;
	}
	return NULL;
}

static struct cond_priv *priv_of(const struct rt_filter_cond *c)
{
	return c->regex;
}

static struct cond_priv *priv_get(struct rt_filter_cond *c)
{
	if (!c->regex)
		c->regex = rt_xcalloc(1, sizeof(struct cond_priv));
	return c->regex;
}

/* Parses one segment into c (zeroed by the caller; freed by it on failure). */
static int parse_segment(const char *s, size_t n, struct rt_filter_cond *c, char *err,
			 size_t err_cap)
{
	trim(&s, &n);
	if (!n) {
		errf(err, err_cap,
		     PARSE_PREFIX
		     "filter must not contain empty segments (check for extra commas)");
		return -1;
	}
	const char *eq = memchr(s, '=', n);
	if (!eq) {
		err_inspect(err, err_cap, s, n, NULL, 0);
		return -1;
	}
	const char *rest = eq + 1;
	size_t rest_len = n - (size_t)(rest - s);
	if (rest_len >= 4 && !memcmp(rest, "not.", 4)) {
		c->is_negated = true;
		rest += 4, rest_len -= 4;
	}
	const char *dot = memchr(rest, '.', rest_len);
	if (!dot) {
		err_inspect(err, err_cap, rest, rest_len, NULL, 0);
		return -1;
	}
	size_t op_len = (size_t)(dot - rest);
	const char *val = dot + 1;
	size_t val_len = rest_len - op_len - 1;
	size_t op;
	for (op = 0; op < N_OPS; op++)
		if (strlen(op_names[op]) == op_len && !memcmp(op_names[op], rest, op_len))
			break;
	if (op == N_OPS) {
		err_inspect(err, err_cap, rest, op_len, val, val_len);
		return -1;
	}
	c->op = (enum rt_filter_op)op;
	c->column = rt_xstrndup(s, (size_t)(eq - s));

	if (c->op != RT_FOP_IN) {
		c->values = rt_xmalloc(sizeof *c->values);
		c->values[0] = unquote_value(val, val_len);
		c->n_values = 1;
		if (c->op == RT_FOP_MATCH || c->op == RT_FOP_IMATCH) {
			struct cond_priv *pv = priv_get(c);
			int flags =
				REG_EXTENDED | REG_NOSUB | (c->op == RT_FOP_IMATCH ? REG_ICASE : 0);
			pv->has_re = !regex_refusal(c->values[0]) &&
				     regcomp(&pv->re, c->values[0], flags) == 0;
		}
		return 0;
	}
	if (val_len < 2 || val[0] != '(' || val[val_len - 1] != ')') {
		errf(err, err_cap, PARSE_PREFIX "`in` filter value must be wrapped by parentheses");
		return -1;
	}
	/* (a,b) is cast as the Postgres array literal {a,b}. */
	char *lit = rt_xmalloc(val_len + 1);
	lit[0] = '{';
	memcpy(lit + 1, val + 1, val_len - 2);
	lit[val_len - 1] = '}';
	lit[val_len] = '\0';
	bool *is_null = NULL;
	int rc = rt_pgval_parse_array(lit, val_len, RT_FILTER_MAX_IN, &c->values, &is_null,
				      &c->n_values);
	if (is_null)
		priv_get(c)->is_null = is_null;
	if (rc == -2)
		errf(err, err_cap, PARSE_PREFIX "too many values for `in` filter. Maximum %d",
		     RT_FILTER_MAX_IN);
	else if (rc)
		errf(err, err_cap, PARSE_PREFIX "malformed array literal: \"%s\"", lit);
	free(lit);
	return rc;
}

static void cond_deinit(struct rt_filter_cond *c)
{
	free(c->column);
	for (size_t i = 0; i < c->n_values; i++)
		free(c->values[i]);
	free(c->values);
	struct cond_priv *pv = priv_of(c);
	if (pv) {
		if (pv->has_re)
			regfree(&pv->re);
		free(pv->is_null);
		free(pv);
	}
}

void rt_filter_free(struct rt_filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_conds; i++)
		cond_deinit(&f->conds[i]);
	free(f->conds);
	free(f);
}

int rt_filter_parse(const char *text, size_t text_len, struct rt_filter **out, char *err,
		    size_t err_cap)
{
	*out = NULL;
	if (!text)
		text_len = 0;
	if (text_len > RT_FILTER_MAX_LEN) {
		errf(err, err_cap, PARSE_PREFIX "filter is longer than %d bytes",
		     RT_FILTER_MAX_LEN);
		return -1;
	}
	if (text_len && memchr(text, '\0', text_len)) {
		errf(err, err_cap, PARSE_PREFIX "filter must not contain NUL bytes");
		return -1;
	}
	struct rt_filter *f = rt_xcalloc(1, sizeof *f);
	const char *s = text;
	size_t n = text_len;
	trim(&s, &n);
	if (!n) {
		*out = f;
		return 0;
	}
	size_t cap = 0;
	for (size_t pos = 0;;) {
		size_t len = segment_len(s + pos, n - pos);
		if (f->n_conds == RT_FILTER_MAX_SEGMENTS) {
			errf(err, err_cap, PARSE_PREFIX "too many filter segments. Maximum %d",
			     RT_FILTER_MAX_SEGMENTS);
			goto err_free_filter;
		}
		if (f->n_conds == cap) {
			cap = cap ? cap * 2 : 2;
			f->conds = rt_xrealloc(f->conds, cap * sizeof *f->conds);
		}
		struct rt_filter_cond *c = &f->conds[f->n_conds++];
		memset(c, 0, sizeof *c);
		if (parse_segment(s + pos, len, c, err, err_cap))
			goto err_free_filter;
		pos += len;
		if (pos == n)
			break;
		pos++; /* the comma; a trailing one leaves an empty last segment */
	}
	*out = f;
	return 0;

err_free_filter:
	rt_filter_free(f);
	return -1;
}

/* ---- evaluation ---- */

enum tri { T_FALSE, T_TRUE, T_NULL };

static enum tri of_bool(bool b)
{
	return b ? T_TRUE : T_FALSE;
}

static enum tri eval_cond(const struct rt_filter_cond *c, const json_t *v, const char *type)
{
	enum rt_pgval_class tc = rt_pgval_class_of(type);
	bool is_null = json_is_null(v);
	const char *val = c->n_values ? c->values[0] : "";
	int cmp;

	switch (c->op) {
	case RT_FOP_IS: {
		bool b;
		if (!strcmp(val, "null") || !strcmp(val, "unknown"))
			return of_bool(is_null);
		if (strcmp(val, "true") && strcmp(val, "false"))
			return T_NULL;
		if (is_null)
			return T_FALSE;
		if (!rt_pgval_bool_of_json(v, &b))
			return T_NULL;
		return of_bool(b == !strcmp(val, "true"));
	}
	case RT_FOP_ISDISTINCT:
		if (is_null)
			return T_TRUE;
		if (rt_pgval_compare(tc, v, val, &cmp))
			return T_NULL;
		return of_bool(cmp != 0);
	default: break;
	}
	if (is_null)
		return T_NULL;

	switch (c->op) {
	case RT_FOP_EQ:
	case RT_FOP_NEQ:
	case RT_FOP_LT:
	case RT_FOP_LTE:
	case RT_FOP_GT:
	case RT_FOP_GTE:
		if (rt_pgval_compare(tc, v, val, &cmp))
			return T_NULL;
		switch (c->op) {
		case RT_FOP_EQ: return of_bool(cmp == 0);
		case RT_FOP_NEQ: return of_bool(cmp != 0);
		case RT_FOP_LT: return of_bool(cmp < 0);
		case RT_FOP_LTE: return of_bool(cmp <= 0);
		case RT_FOP_GT: return of_bool(cmp > 0);
		default: return of_bool(cmp >= 0);
		}
	case RT_FOP_IN: {
		const struct cond_priv *pv = priv_of(c);
		bool saw_null = false;
		for (size_t i = 0; i < c->n_values; i++) {
			if (pv && pv->is_null && pv->is_null[i]) {
				saw_null = true;
				continue;
			}
			if (rt_pgval_compare(tc, v, c->values[i], &cmp))
				saw_null = true;
			else if (cmp == 0)
				return T_TRUE;
		}
		return saw_null ? T_NULL : T_FALSE;
	}
	case RT_FOP_LIKE:
	case RT_FOP_ILIKE:
	case RT_FOP_MATCH:
	case RT_FOP_IMATCH: {
		char *owned;
		const char *t = rt_pgval_text_of_json(v, &owned);
		if (!t)
			return T_NULL;
		enum tri r;
		if (c->op == RT_FOP_LIKE || c->op == RT_FOP_ILIKE) {
			r = rt_pgval_like_pattern_ok(val)
				    ? of_bool(rt_pgval_like_match(t, val, c->op == RT_FOP_ILIKE))
				    : T_NULL;
		} else {
			const struct cond_priv *pv = priv_of(c);
			r = pv && pv->has_re ? of_bool(regexec(&pv->re, t, 0, NULL, 0) == 0)
					     : T_NULL;
		}
		free(owned);
		return r;
	}
	default: return T_NULL;
	}
}

bool rt_filter_match(const struct rt_filter *f, const json_t *row,
		     const char *(*type_of)(const char *column, void *ctx), void *ctx)
{
	if (!f)
		return true;
	for (size_t i = 0; i < f->n_conds; i++) {
		const struct rt_filter_cond *c = &f->conds[i];
		const json_t *v = json_is_object(row) ? json_object_get(row, c->column) : NULL;
		const char *type = type_of ? type_of(c->column, ctx) : NULL;
		if (!v || !type)
			return false;
		enum tri r = eval_cond(c, v, type);
		/* NOT NULL is NULL; IS and IS DISTINCT never yield NULL. */
		if (r == T_NULL)
			return false;
		if (c->is_negated)
			r = r == T_TRUE ? T_FALSE : T_TRUE;
		if (r != T_TRUE)
			return false;
	}
	return true;
}

/* ---- validation ---- */

/* Integer input as Postgres takes it: blanks, an optional sign, digits. */
static bool is_int_text(const char *s)
{
	while (is_ws(*s))
		s++;
	if (*s == '+' || *s == '-')
		s++;
	if (!isdigit((unsigned char)*s))
		return false;
	while (isdigit((unsigned char)*s))
		s++;
	while (is_ws(*s))
		s++;
	return !*s;
}

/* Checks that s casts to type t, like realtime.cast(s, t). */
static int check_cast(const char *s, const char *t, char *err, size_t err_cap)
{
	enum rt_pgval_class tc = rt_pgval_class_of(t);
	if (tc == RT_PGVAL_BOOL) {
		bool b;
		if (rt_pgval_parse_bool(s, &b))
			return 0;
		errf(err, err_cap, "invalid input syntax for type boolean: \"%s\"", s);
		return -1;
	}
	if (tc != RT_PGVAL_NUM)
		return 0;
	struct rt_pgval_num n;
	if (!rt_pgval_is_int_type(t)) {
		if (rt_pgval_parse_num(s, &n))
			return 0;
		errf(err, err_cap, "invalid input syntax for type %s: \"%s\"",
		     rt_pgval_type_display(t), s);
		return -1;
	}
	if (!is_int_text(s)) {
		errf(err, err_cap, "invalid input syntax for type %s: \"%s\"",
		     rt_pgval_type_display(t), s);
		return -1;
	}
	long long lo = LLONG_MIN, hi = LLONG_MAX;
	if (!strcmp(t, "int2"))
		lo = INT16_MIN, hi = INT16_MAX;
	else if (!strcmp(t, "int4"))
		lo = INT32_MIN, hi = INT32_MAX;
	else if (!strcmp(t, "oid"))
		lo = INT32_MIN, hi = UINT32_MAX;
	/* All digits but not a long long: beyond even int8. */
	if (rt_pgval_parse_num(s, &n) && n.is_int && n.i >= lo && n.i <= hi)
		return 0;
	errf(err, err_cap, "value \"%s\" is out of range for type %s", s, rt_pgval_type_display(t));
	return -1;
}

int rt_filter_check(const struct rt_filter *f, const char *const *names, const char *const *types,
		    size_t n, char *err, size_t err_cap)
{
	for (size_t i = 0; f && i < f->n_conds; i++) {
		const struct rt_filter_cond *c = &f->conds[i];
		size_t j;
		for (j = 0; j < n; j++)
			if (names[j] && !strcmp(names[j], c->column))
				break;
		if (j == n) {
			errf(err, err_cap, "invalid column for filter %s", c->column);
			return -1;
		}
		const char *t = types && types[j] ? types[j] : "text";
		const char *val = c->n_values ? c->values[0] : "";
		switch (c->op) {
		case RT_FOP_IN: {
			const struct cond_priv *pv = priv_of(c);
			for (size_t k = 0; k < c->n_values; k++) {
				if (pv && pv->is_null && pv->is_null[k])
					continue;
				if (check_cast(c->values[k], t, err, err_cap))
					return -1;
			}
			break;
		}
		case RT_FOP_IS:
			if (strcmp(val, "null") && strcmp(val, "true") && strcmp(val, "false") &&
			    strcmp(val, "unknown")) {
				errf(err, err_cap,
				     "invalid value for is filter: must be null, true, "
				     "false, or unknown");
				return -1;
			}
			if (strcmp(val, "null") && rt_pgval_class_of(t) != RT_PGVAL_BOOL) {
				errf(err, err_cap, "is %s filter requires a boolean column, got %s",
				     val, rt_pgval_type_display(t));
				return -1;
			}
			break;
		case RT_FOP_LIKE:
		case RT_FOP_ILIKE:
		case RT_FOP_MATCH:
		case RT_FOP_IMATCH:
			if (!rt_pgval_is_text_like(t)) {
				errf(err, err_cap,
				     "operator %s requires a text-compatible column type, got %s",
				     op_names[c->op], rt_pgval_type_display(t));
				return -1;
			}
			if ((c->op == RT_FOP_MATCH || c->op == RT_FOP_IMATCH) &&
			    !(priv_of(c) && priv_of(c)->has_re)) {
				char msg[256] = "invalid regular expression";
				const char *why = regex_refusal(val);
				if (!why) {
					regex_t re;
					int flags = REG_EXTENDED | REG_NOSUB |
						    (c->op == RT_FOP_IMATCH ? REG_ICASE : 0);
					int rc = regcomp(&re, val, flags);
					if (rc == 0)
						regfree(&re); /* not reached: parse compiled it */
					else
						regerror(rc, NULL, msg, sizeof msg);
					why = msg;
				}
				errf(err, err_cap, "invalid regular expression for %s filter: %s",
				     op_names[c->op], why);
				return -1;
			}
			break;
		default:
			if (check_cast(val, t, err, err_cap))
				return -1;
			break;
		}
	}
	return 0;
}

bool rt_filter_eq_key(const struct rt_filter *f, const char **column, const char **value)
{
	if (!f || f->n_conds != 1)
		return false;
	const struct rt_filter_cond *c = &f->conds[0];
	if (c->op != RT_FOP_EQ || c->is_negated || c->n_values != 1)
		return false;
	*column = c->column;
	*value = c->values[0];
	return true;
}
