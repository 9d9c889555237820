#include "common/pgval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool rt_pgval_is_int_type(const char *t)
{
	return !strcmp(t, "int2") || !strcmp(t, "int4") || !strcmp(t, "int8") || !strcmp(t, "oid");
}

enum rt_pgval_class rt_pgval_class_of(const char *t)
{
	if (rt_pgval_is_int_type(t) || !strcmp(t, "float4") || !strcmp(t, "float8") ||
	    !strcmp(t, "numeric"))
		return RT_PGVAL_NUM;
	if (!strcmp(t, "bool"))
		return RT_PGVAL_BOOL;
	return RT_PGVAL_TEXT;
}

/* Types with a text pattern (LIKE) and regex operator. */
bool rt_pgval_is_text_like(const char *t)
{
	return !strcmp(t, "text") || !strcmp(t, "varchar") || !strcmp(t, "bpchar") ||
	       !strcmp(t, "name") || !strcmp(t, "citext");
}

/* The name Postgres prints for a type (regtype output) in its messages. */
const char *rt_pgval_type_display(const char *t)
{
	static const char *const map[][2] = {
		{"int2", "smallint"},
		{"int4", "integer"},
		{"int8", "bigint"},
		{"float4", "real"},
		{"float8", "double precision"},
		{"bool", "boolean"},
		{"varchar", "character varying"},
		{"bpchar", "character"},
		{"timestamptz", "timestamp with time zone"},
		{"timestamp", "timestamp without time zone"},
		{"timetz", "time with time zone"},
		{"time", "time without time zone"},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strcmp(t, map[i][0]))
			return map[i][1];
	return t;
}

/* Postgres' boolin: t/f, true/false, yes/no, on/off, 1/0 and unique
 * prefixes, any case, surrounding blanks allowed. */
bool rt_pgval_parse_bool(const char *s, bool *out)
{
	while (is_ws(*s))
		s++;
	size_t n = strlen(s);
	while (n && is_ws(s[n - 1]))
		n--;
	if (!n)
		return false;
	static const struct {
		const char *word;
		size_t min;
		bool val;
	} words[] = {
		{"true", 1, true}, {"false", 1, false}, {"yes", 1, true},
		{"no", 1, false},  {"on", 2, true},	{"off", 2, false},
	};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
		if (n >= words[i].min && n <= strlen(words[i].word) &&
		    !strncasecmp(s, words[i].word, n)) {
			*out = words[i].val;
			return true;
		}
	}
	if (n == 1 && (s[0] == '1' || s[0] == '0')) {
		*out = s[0] == '1';
		return true;
	}
	return false;
}

/* Parses a decimal number (surrounding blanks allowed; no hex). */
bool rt_pgval_parse_num(const char *s, struct rt_pgval_num *out)
{
	while (is_ws(*s))
		s++;
	if (!*s || strpbrk(s, "xX"))
		return false;
	char *end;
	errno = 0;
	long long i = strtoll(s, &end, 10);
	if (end != s && errno == 0) {
		const char *e = end;
		while (is_ws(*e))
			e++;
		if (!*e) {
			out->is_int = true;
			out->i = i;
			out->d = (double)i;
			return true;
		}
	}
	errno = 0;
	double d = strtod(s, &end);
	if (end == s)
		return false;
	while (is_ws(*end))
		end++;
	if (*end)
		return false;
	out->is_int = false;
	out->d = d;
	return true;
}

bool rt_pgval_num_of_json(const json_t *v, struct rt_pgval_num *out)
{
	if (json_is_integer(v)) {
		out->is_int = true;
		out->i = (long long)json_integer_value(v);
		out->d = (double)out->i;
		return true;
	}
	if (json_is_real(v)) {
		out->is_int = false;
		out->d = json_real_value(v);
		return true;
	}
	if (json_is_string(v))
		return rt_pgval_parse_num(json_string_value(v), out);
	return false;
}

/* Orders like Postgres numerics: NaN equals NaN and sorts above everything. */
int rt_pgval_num_cmp(const struct rt_pgval_num *a, const struct rt_pgval_num *b)
{
	if (a->is_int && b->is_int)
		return (a->i > b->i) - (a->i < b->i);
	bool an = isnan(a->d), bn = isnan(b->d);
	if (an || bn)
		return an - bn;
	return (a->d > b->d) - (a->d < b->d);
}

bool rt_pgval_bool_of_json(const json_t *v, bool *out)
{
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return true;
	}
	if (json_is_string(v))
		return rt_pgval_parse_bool(json_string_value(v), out);
	return false;
}

/* The text of a non-null row value, as `value #>> '{}'` gives it: a string's
 * contents, otherwise its JSON text (*owned must then be freed). */
const char *rt_pgval_text_of_json(const json_t *v, char **owned)
{
	*owned = NULL;
	if (json_is_string(v))
		return json_string_value(v);
	*owned = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	return *owned;
}

/* Compares row value v (not null) with the filter text s as type class tc.
 * Returns 0 and sets *cmp, or -1 when a side does not convert. */
int rt_pgval_compare(enum rt_pgval_class tc, const json_t *v, const char *s, int *cmp)
{
	switch (tc) {
	case RT_PGVAL_NUM: {
		struct rt_pgval_num a, b;
		if (!rt_pgval_num_of_json(v, &a) || !rt_pgval_parse_num(s, &b))
			return -1;
		*cmp = rt_pgval_num_cmp(&a, &b);
		return 0;
	}
	case RT_PGVAL_BOOL: {
		bool a, b;
		if (!rt_pgval_bool_of_json(v, &a) || !rt_pgval_parse_bool(s, &b))
			return -1;
		*cmp = (int)a - (int)b;
		return 0;
	}
	case RT_PGVAL_TEXT:
	default: {
		char *owned;
		const char *t = rt_pgval_text_of_json(v, &owned);
		if (!t)
			return -1;
		int r = strcmp(t, s);
		*cmp = (r > 0) - (r < 0);
		free(owned);
		return 0;
	}
	}
}

/* ---- LIKE ---- */

/* Length of the UTF-8 character at s (1 for a stray byte), never past the NUL. */
static size_t char_len(const char *s)
{
	size_t n = 1;
	if ((unsigned char)s[0] >= 0xC0)
		while (n < 4 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n++;
	return n;
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool bytes_eq(char a, char b, bool icase)
{
	return icase ? ascii_lower(a) == ascii_lower(b) : a == b;
}

/* Postgres rejects a LIKE pattern that ends in a lone backslash. */
bool rt_pgval_like_pattern_ok(const char *p)
{
	for (; *p; p++)
		if (*p == '\\' && !*++p)
			return false;
	return true;
}

/* LIKE: % any run, _ one character, backslash takes the next character
 * literally (the pattern is rt_pgval_like_pattern_ok). */
bool rt_pgval_like_match(const char *s, const char *p, bool icase)
{
	const char *star_p = NULL, *star_s = NULL;
	for (;;) {
		if (*p == '%') {
			while (*p == '%')
				p++;
			star_p = p;
			star_s = s;
			continue;
		}
		if (!*p) {
			if (!*s)
				return true;
		} else if (*s) {
			if (*p == '_') {
				p++;
				s += char_len(s);
				continue;
			}
			const char *lit = p;
			if (*p == '\\') {
				if (!p[1])
					return false;
				lit = p + 1;
			}
			if (bytes_eq(*lit, *s, icase)) {
				p = lit + 1;
				s++;
				continue;
			}
		}
		/* Mismatch: let the last % absorb one more character. */
		if (!star_p || !*star_s)
			return false;
		star_s += char_len(star_s);
		p = star_p;
		s = star_s;
	}
}

int rt_pgval_compare_text(enum rt_pgval_class tc, const char *a, const char *b, int *cmp)
{
	switch (tc) {
	case RT_PGVAL_NUM: {
		struct rt_pgval_num x, y;
		if (!rt_pgval_parse_num(a, &x) || !rt_pgval_parse_num(b, &y))
			return -1;
		*cmp = rt_pgval_num_cmp(&x, &y);
		return 0;
	}
	case RT_PGVAL_BOOL: {
		bool x, y;
		if (!rt_pgval_parse_bool(a, &x) || !rt_pgval_parse_bool(b, &y))
			return -1;
		*cmp = (int)x - (int)y;
		return 0;
	}
	case RT_PGVAL_TEXT:
	default: {
		int r = strcmp(a, b);
		*cmp = (r > 0) - (r < 0);
		return 0;
	}
	}
}

int rt_pgval_parse_array(const char *lit, size_t n, size_t max, char ***values, bool **is_null,
			 size_t *n_values)
{
	size_t p = 0, cap = 0;
	*values = NULL;
	*is_null = NULL;
	*n_values = 0;
	while (p < n && is_ws(lit[p]))
		p++;
	if (p >= n || lit[p] != '{')
		return -1;
	p++;
	while (p < n && is_ws(lit[p]))
		p++;
	if (p < n && lit[p] == '}') {
		p++;
		goto out_trailing;
	}
	for (;;) {
		while (p < n && is_ws(lit[p]))
			p++;
		if (p >= n)
			return -1;
		char *el = malloc(n + 1);
		if (!el)
			abort();
		size_t len = 0;
		bool is_null_el = false;
		if (lit[p] == '"') {
			for (p++; p < n && lit[p] != '"'; p++) {
				if (lit[p] == '\\' && ++p >= n)
					break;
				el[len++] = lit[p];
			}
			if (p >= n) {
				free(el);
				return -1;
			}
			p++;
			while (p < n && is_ws(lit[p]))
				p++;
		} else {
			size_t keep = 0; /* length without trailing unescaped blanks */
			bool has_escape = false;
			for (; p < n && lit[p] != ',' && lit[p] != '}'; p++) {
				char ch = lit[p];
				if (ch == '"' || ch == '{') {
					free(el);
					return -1;
				}
				if (ch == '\\') {
					if (++p >= n)
						break;
					el[len++] = lit[p];
					keep = len;
					has_escape = true;
					continue;
				}
				el[len++] = ch;
				if (!is_ws(ch))
					keep = len;
			}
			len = keep;
			if (!len || p >= n) {
				free(el);
				return -1;
			}
			is_null_el = !has_escape && len == 4 && !strncasecmp(el, "NULL", 4);
		}
		el[len] = '\0';
		if (*n_values == max) {
			free(el);
			return -2;
		}
		if (*n_values == cap) {
			size_t had = cap;
			cap = cap ? cap * 2 : 4;
			char **nv = realloc(*values, cap * sizeof **values);
			if (!nv)
				abort();
			*values = nv;
			if (*is_null) {
				bool *nn = realloc(*is_null, cap * sizeof **is_null);
				if (!nn)
					abort();
				memset(nn + had, 0, (cap - had) * sizeof *nn);
				*is_null = nn;
			}
		}
		if (is_null_el && !*is_null) {
			*is_null = calloc(cap, sizeof **is_null);
			if (!*is_null)
				abort();
		}
		if (*is_null)
			(*is_null)[*n_values] = is_null_el;
		(*values)[(*n_values)++] = el;
		if (p >= n)
			return -1;
		if (lit[p] == ',') {
			p++;
			continue;
		}
		if (lit[p] != '}')
			return -1;
		p++;
		break;
	}
out_trailing:
	while (p < n && is_ws(lit[p]))
		p++;
	return p == n ? 0 : -1;
}
