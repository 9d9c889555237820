/*
 * Rules, templates, filters, recipients and preferences: everything of the
 * notifications that is pure computation over rows (docs/notifications.md).
 */
#include "notify/notify_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistr.h>

#include "auth/policy.h"
#include "common/alloc.h"
#include "common/log.h"
#include "net/http.h"

static const char *const type_names[RT_NTYPE_N] = {"info", "success", "warning", "error"};
static const char *const prio_names[RT_NPRIO_N] = {"low", "normal", "high", "urgent"};

const char *rt_ntype_name(int t)
{
	return t >= 0 && t < RT_NTYPE_N ? type_names[t] : "info";
}

const char *rt_nprio_name(int p)
{
	return p >= 0 && p < RT_NPRIO_N ? prio_names[p] : "normal";
}

int rt_ntype_parse(const char *s)
{
	for (int i = 0; s && i < RT_NTYPE_N; i++)
		if (!strcmp(s, type_names[i]))
			return i;
	return -1;
}

int rt_nprio_parse(const char *s)
{
	for (int i = 0; s && i < RT_NPRIO_N; i++)
		if (!strcmp(s, prio_names[i]))
			return i;
	return -1;
}

bool rt_notify_valid_user(const char *s)
{
	size_t len = s ? strlen(s) : 0;
	if (!len || len > RT_NOTIFY_MAX_USER_ID || u8_check((const uint8_t *)s, len))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

char *rt_notify_value_text(const json_t *v)
{
	if (!v || json_is_null(v))
		return rt_xstrdup("null");
	if (json_is_string(v))
		return rt_xstrndup(json_string_value(v), json_string_length(v));
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
	return s ? s : rt_xstrdup("");
}

/* ---- templates ---- */

static void tpl_add(struct rt_tpl *tpl, enum rt_tpl_kind kind, const char *text, size_t len)
{
	tpl->parts = rt_xrealloc(tpl->parts, (tpl->n_parts + 1) * sizeof *tpl->parts);
	tpl->parts[tpl->n_parts].kind = kind;
	tpl->parts[tpl->n_parts].text = text ? rt_xstrndup(text, len) : NULL;
	tpl->n_parts++;
}

int rt_tpl_parse(const char *text, const struct rt_store_table *t, bool has_count,
		 struct rt_tpl *out, char *err, size_t err_cap)
{
	*out = (struct rt_tpl){0};
	if (!text)
		return 0;
	size_t len = strlen(text);
	if (len > RT_NOTIFY_MAX_TEMPLATE) {
		snprintf(err, err_cap, "template is longer than %d bytes", RT_NOTIFY_MAX_TEMPLATE);
		return -1;
	}
	if (u8_check((const uint8_t *)text, len)) {
		snprintf(err, err_cap, "template is not valid UTF-8");
		return -1;
	}
	const char *p = text;
	while (*p) {
		const char *open = strstr(p, "{{");
		if (!open) {
			tpl_add(out, RT_TPL_TEXT, p, strlen(p));
			break;
		}
		if (open > p)
			tpl_add(out, RT_TPL_TEXT, p, (size_t)(open - p));
		const char *close = strstr(open + 2, "}}");
		if (!close) {
			snprintf(err, err_cap, "unclosed {{ in template");
			goto fail;
		}
		const char *a = open + 2, *b = close;
		while (a < b && *a == ' ')
			a++;
		while (b > a && b[-1] == ' ')
			b--;
		size_t n = (size_t)(b - a);
		char name[160];
		if (n >= sizeof name) {
			snprintf(err, err_cap, "placeholder too long in template");
			goto fail;
		}
		memcpy(name, a, n);
		name[n] = '\0';
		if (!strncmp(name, "new.", 4) || !strncmp(name, "old.", 4)) {
			const char *col = name + 4;
			if (!*col || (t && !rt_store_column(t, col))) {
				snprintf(err, err_cap, "column %s.%s does not exist (placeholder {{%s}})",
					 t ? t->name : "?", col, name);
				goto fail;
			}
			if (!t) {
				snprintf(err, err_cap, "placeholder {{%s}} needs a rule's table", name);
				goto fail;
			}
			tpl_add(out, name[0] == 'n' ? RT_TPL_NEW : RT_TPL_OLD, col, strlen(col));
		} else if (!strcmp(name, "table")) {
			tpl_add(out, RT_TPL_TABLE, NULL, 0);
		} else if (!strcmp(name, "event")) {
			tpl_add(out, RT_TPL_EVENT, NULL, 0);
		} else if (!strcmp(name, "count") && has_count) {
			tpl_add(out, RT_TPL_COUNT, NULL, 0);
		} else {
			snprintf(err, err_cap, "unknown placeholder {{%s}} (use new.<column>, "
					       "old.<column>, table, event%s)",
				 name, has_count ? ", count" : "");
			goto fail;
		}
		p = close + 2;
	}
	return 0;
fail:
	rt_tpl_deinit(out);
	return -1;
}

void rt_tpl_deinit(struct rt_tpl *tpl)
{
	for (size_t i = 0; i < tpl->n_parts; i++)
		free(tpl->parts[i].text);
	free(tpl->parts);
	*tpl = (struct rt_tpl){0};
}

bool rt_tpl_is_empty(const struct rt_tpl *tpl)
{
	return tpl->n_parts == 0;
}

static void append_value(struct rt_buf *out, const char *s, bool is_url)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (is_url) {
			bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
				     *p == '~';
			if (plain) {
				rt_buf_append_byte(out, *p);
			} else {
				rt_buf_append_byte(out, '%');
				rt_buf_append_byte(out, (uint8_t)hex[*p >> 4]);
				rt_buf_append_byte(out, (uint8_t)hex[*p & 15]);
			}
		} else {
			rt_buf_append_byte(out, *p < 0x20 || *p == 0x7f ? ' ' : *p);
		}
	}
}

void rt_tpl_render(const struct rt_tpl *tpl, const struct rt_tpl_env *env, bool is_url_value,
		   size_t max, struct rt_buf *out)
{
	size_t start = out->len;
	for (size_t i = 0; i < tpl->n_parts && out->len - start <= max; i++) {
		const struct rt_tpl_part *pt = &tpl->parts[i];
		switch (pt->kind) {
		case RT_TPL_TEXT:
			rt_buf_append_str(out, pt->text);
			break;
		case RT_TPL_NEW:
		case RT_TPL_OLD: {
			const json_t *row = pt->kind == RT_TPL_NEW ? env->new_row : env->old_row;
			const json_t *v = json_object_get(row, pt->text);
			if (!v || json_is_null(v))
				break;
			char *s = rt_notify_value_text(v);
			append_value(out, s, is_url_value);
			free(s);
			break;
		}
		case RT_TPL_TABLE:
			append_value(out, env->table ? env->table : "", is_url_value);
			break;
		case RT_TPL_EVENT:
			append_value(out, env->event ? env->event : "", is_url_value);
			break;
		case RT_TPL_COUNT:
			rt_buf_append_int(out, env->count);
			break;
		}
	}
	if (!out->data)
		rt_buf_append(out, "", 0);
	if (out->len - start > max) {
		out->data[start + max] = '\0';
		rt_utf8_truncate(out->data + start);
		out->len = start + strlen(out->data + start);
	}
}

/* ---- filters ---- */

/* Parses the value of a `changed` condition (after "changed"). */
static int parse_changed(const char *col, const char *v, struct rt_changed_cond *c, char *err,
			 size_t err_cap)
{
	*c = (struct rt_changed_cond){.column = rt_xstrdup(col)};
	if (!*v)
		return 0;
	if (!strncmp(v, ".from.", 6)) {
		const char *from = v + 6, *to = strstr(from, ".to.");
		c->from = rt_xstrndup(from, to ? (size_t)(to - from) : strlen(from));
		if (to)
			c->to = rt_xstrdup(to + 4);
		return 0;
	}
	if (!strncmp(v, ".to.", 4)) {
		c->to = rt_xstrdup(v + 4);
		return 0;
	}
	snprintf(err, err_cap, "failed to parse filter (%s=changed%s): expected changed, "
			       "changed.from.<value>, changed.to.<value> or "
			       "changed.from.<value>.to.<value>",
		 col, v);
	free(c->column);
	*c = (struct rt_changed_cond){0};
	return -1;
}

int rt_nfilter_parse(const char *text, const struct rt_store_table *t, struct rt_nfilter *out,
		     char *err, size_t err_cap)
{
	*out = (struct rt_nfilter){0};
	struct rt_buf rest;
	rt_buf_init(&rest);
	rt_buf_append(&rest, "", 0);
	const char *p = text ? text : "";
	if (strlen(p) > RT_NOTIFY_MAX_TEMPLATE) {
		snprintf(err, err_cap, "filter is longer than %d bytes", RT_NOTIFY_MAX_TEMPLATE);
		goto fail;
	}
	while (*p) {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		char *key = eq ? rt_http_pct_decode(p, (size_t)(eq - p), true) : NULL;
		char *val = eq ? rt_http_pct_decode(eq + 1, len - (size_t)(eq - p) - 1, true) : NULL;
		if (eq && (!key || !val)) {
			snprintf(err, err_cap, "filter: malformed percent-encoding in %.*s",
				 (int)(len > 64 ? 64 : len), p);
			free(key);
			free(val);
			goto fail;
		}
		bool is_changed = val && (!strcmp(val, "changed") || !strncmp(val, "changed.", 8));
		if (is_changed) {
			if (!t || !rt_store_column(t, key)) {
				snprintf(err, err_cap, "column %s.%s does not exist",
					 t ? t->name : "?", key);
				free(key);
				free(val);
				goto fail;
			}
			struct rt_changed_cond c;
			int rc = parse_changed(key, val + 7, &c, err, err_cap);
			free(key);
			free(val);
			if (rc)
				goto fail;
			out->changed = rt_xrealloc(out->changed, (out->n_changed + 1) *
								      sizeof *out->changed);
			out->changed[out->n_changed++] = c;
			if (out->n_changed > RT_QUERY_MAX_NODES) {
				snprintf(err, err_cap, "too many filter nodes (maximum %d)",
					 RT_QUERY_MAX_NODES);
				goto fail;
			}
		} else if (len) {
			free(key);
			free(val);
			if (rest.len)
				rt_buf_append_byte(&rest, '&');
			rt_buf_append(&rest, p, len);
		} else {
			free(key);
			free(val);
		}
		p += len;
		if (*p == '&')
			p++;
	}
	char qerr[512];
	if (rt_query_parse(rest.data, rest.len, &out->q, qerr, sizeof qerr)) {
		snprintf(err, err_cap, "%s", qerr);
		goto fail;
	}
	if (out->q.select || out->q.n_order || out->q.limit >= 0 || out->q.offset ||
	    out->q.n_on_conflict || out->q.n_columns) {
		snprintf(err, err_cap, "a rule's filter takes only filters (no select, order, "
				       "limit, offset, on_conflict or columns)");
		goto fail;
	}
	if (t && rt_store_check_columns(t, &out->q.where, err, err_cap))
		goto fail;
	rt_buf_deinit(&rest);
	return 0;
fail:
	rt_buf_deinit(&rest);
	rt_nfilter_deinit(out);
	return -1;
}

void rt_nfilter_deinit(struct rt_nfilter *f)
{
	rt_query_deinit(&f->q);
	for (size_t i = 0; i < f->n_changed; i++) {
		free(f->changed[i].column);
		free(f->changed[i].from);
		free(f->changed[i].to);
	}
	free(f->changed);
	f->changed = NULL;
	f->n_changed = 0;
}

static const char *type_of(const char *column, void *ctx)
{
	const struct rt_store_column *c = rt_store_column(ctx, column);
	return c ? c->type : NULL;
}

static bool text_is(const json_t *v, const char *want)
{
	char *s = rt_notify_value_text(v);
	bool ok = !strcmp(s, want);
	free(s);
	return ok;
}

bool rt_nfilter_match(const struct rt_nfilter *f, const struct rt_change *ch)
{
	const json_t *row = ch->type == RT_CHANGE_DELETE ? ch->old_record : ch->record;
	if (!row)
		return false;
	if (rt_policy_eval(&f->q.where, row, type_of, (void *)ch->table) != 1)
		return false;
	for (size_t i = 0; i < f->n_changed; i++) {
		const struct rt_changed_cond *c = &f->changed[i];
		if (ch->type != RT_CHANGE_UPDATE || !ch->old_record)
			return false;
		const json_t *ov = json_object_get(ch->old_record, c->column);
		const json_t *nv = json_object_get(ch->record, c->column);
		if (!ov || !nv) /* an old row without the column: unknown, not a change */
			return false;
		if (json_equal(ov, nv))
			return false;
		if (c->from && !text_is(ov, c->from))
			return false;
		if (c->to && !text_is(nv, c->to))
			return false;
	}
	return true;
}

/* ---- recipients ---- */

void rt_nrcpts_free(struct rt_nrcpt *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].column);
		for (size_t k = 0; k < r[i].n_users; k++)
			free(r[i].users[k]);
		free(r[i].users);
		free(r[i].qcolumn);
		rt_tpl_deinit(&r[i].qfilter);
	}
	free(r);
}

static int rcpt_parse_one(struct rt_store *store, const json_t *spec,
			  const struct rt_store_table *t, struct rt_nrcpt *r, char *err,
			  size_t err_cap)
{
	*r = (struct rt_nrcpt){0};
	if (!json_is_object(spec)) {
		snprintf(err, err_cap, "recipients: each entry must be an object with column, users "
				       "or query");
		return -1;
	}
	const json_t *col = json_object_get(spec, "column");
	const json_t *users = json_object_get(spec, "users");
	const json_t *user = json_object_get(spec, "user");
	const json_t *query = json_object_get(spec, "query");
	int n_set = !!col + !!users + !!user + !!query;
	if (n_set != 1) {
		snprintf(err, err_cap, "recipients: an entry takes exactly one of column, users, "
				       "user, query");
		return -1;
	}
	if (col) {
		r->kind = RT_NRCPT_COLUMN;
		if (!t) {
			snprintf(err, err_cap, "recipients: column needs a rule's table");
			return -1;
		}
		if (!json_is_string(col) || !rt_store_column(t, json_string_value(col))) {
			snprintf(err, err_cap, "recipients: column %s.%s does not exist", t->name,
				 json_is_string(col) ? json_string_value(col) : "?");
			return -1;
		}
		r->column = rt_xstrdup(json_string_value(col));
		return 0;
	}
	if (users || user) {
		r->kind = RT_NRCPT_USERS;
		json_t *list = user ? json_pack("[O]", user) : json_incref((json_t *)users);
		if (!json_is_array(list) || json_array_size(list) > RT_NOTIFY_MAX_RECIPIENTS) {
			snprintf(err, err_cap, "recipients: users must be an array of at most %d user "
					       "ids",
				 RT_NOTIFY_MAX_RECIPIENTS);
			json_decref(list);
			return -1;
		}
		size_t i;
		const json_t *u;
		r->users = rt_xcalloc(json_array_size(list) + 1, sizeof *r->users);
		json_array_foreach(list, i, u) {
			if (!json_is_string(u) || !rt_notify_valid_user(json_string_value(u))) {
				snprintf(err, err_cap, "recipients: users[%zu] is not a user id (a "
						       "string of 1 to %d bytes)",
					 i, RT_NOTIFY_MAX_USER_ID);
				json_decref(list);
				return -1;
			}
			r->users[r->n_users++] = rt_xstrdup(json_string_value(u));
		}
		json_decref(list);
		return 0;
	}
	r->kind = RT_NRCPT_QUERY;
	const char *qtable = json_string_value(json_object_get(query, "table"));
	const char *qschema = json_string_value(json_object_get(query, "schema"));
	const char *qsel = json_string_value(json_object_get(query, "select"));
	const json_t *qf = json_object_get(query, "filter");
	if (!json_is_object(query) || !qtable || !qsel || (qf && !json_is_string(qf))) {
		snprintf(err, err_cap, "recipients: query must be {\"table\", \"select\": column, "
				       "\"filter\"?: REST filters}");
		return -1;
	}
	r->qt = rt_store_table(store, qschema, qtable);
	if (!r->qt) {
		snprintf(err, err_cap, "recipients: relation %s.%s does not exist",
			 qschema ? qschema : "public", qtable);
		return -1;
	}
	if (!rt_store_column(r->qt, qsel)) {
		snprintf(err, err_cap, "recipients: column %s.%s does not exist", qtable, qsel);
		return -1;
	}
	r->qcolumn = rt_xstrdup(qsel);
	char terr[256];
	if (rt_tpl_parse(json_string_value(qf), t, false, &r->qfilter, terr, sizeof terr)) {
		snprintf(err, err_cap, "recipients: query filter: %s", terr);
		return -1;
	}
	/* the filter must parse as it will be rendered: try it with empty values */
	struct rt_buf b;
	rt_buf_init(&b);
	struct rt_tpl_env env = {0};
	rt_tpl_render(&r->qfilter, &env, true, RT_NOTIFY_MAX_TEMPLATE * 4, &b);
	struct rt_nfilter f;
	int rc = rt_nfilter_parse(b.data, r->qt, &f, terr, sizeof terr);
	rt_buf_deinit(&b);
	if (rc) {
		snprintf(err, err_cap, "recipients: query filter: %s", terr);
		return -1;
	}
	bool has_changed = f.n_changed > 0;
	rt_nfilter_deinit(&f);
	if (has_changed) {
		snprintf(err, err_cap, "recipients: query filter cannot use changed");
		return -1;
	}
	return 0;
}

int rt_nrcpts_parse(struct rt_store *store, const json_t *spec, const struct rt_store_table *t,
		    struct rt_nrcpt **out, size_t *n, char *err, size_t err_cap)
{
	*out = NULL;
	*n = 0;
	json_t *list = json_is_array(spec) ? json_incref((json_t *)spec) : json_pack("[O]", spec);
	if (!spec || !json_array_size(list) || json_array_size(list) > 16) {
		snprintf(err, err_cap, "recipients: give one to 16 entries ({\"column\"}, "
				       "{\"users\"}, {\"query\"})");
		json_decref(list);
		return -1;
	}
	struct rt_nrcpt *r = rt_xcalloc(json_array_size(list), sizeof *r);
	size_t i;
	const json_t *e;
	json_array_foreach(list, i, e) {
		if (rcpt_parse_one(store, e, t, &r[i], err, err_cap)) {
			rt_nrcpts_free(r, i + 1);
			json_decref(list);
			return -1;
		}
	}
	*out = r;
	*n = json_array_size(list);
	json_decref(list);
	return 0;
}

static void add_user(json_t *seen, json_t *users, const json_t *v)
{
	char buf[32];
	const char *s = NULL;
	if (json_is_string(v))
		s = json_string_value(v);
	else if (json_is_integer(v)) {
		snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
		s = buf;
	}
	if (!s || !rt_notify_valid_user(s) || json_array_size(users) >= RT_NOTIFY_MAX_RECIPIENTS ||
	    json_object_get(seen, s))
		return;
	json_object_set_new(seen, s, json_true());
	json_array_append_new(users, json_string(s));
}

int rt_nrcpts_resolve(struct rt_store *store, const struct rt_nrcpt *r, size_t n,
		      const struct rt_tpl_env *env, json_t *users)
{
	int rc = 0;
	json_t *seen = json_object();
	for (size_t i = 0; i < json_array_size(users); i++)
		json_object_set_new(seen, json_string_value(json_array_get(users, i)), json_true());
	for (size_t i = 0; i < n; i++) {
		switch (r[i].kind) {
		case RT_NRCPT_COLUMN: {
			const json_t *row = env->new_row ? env->new_row : env->old_row;
			const json_t *v = json_object_get(row, r[i].column);
			if (json_is_array(v)) {
				size_t k;
				const json_t *e;
				json_array_foreach(v, k, e)
					add_user(seen, users, e);
			} else if (json_is_string(v) && json_string_value(v)[0] == '[') {
				/* SQLite keeps JSON arrays as text */
				json_t *a = json_loads(json_string_value(v), 0, NULL);
				size_t k;
				const json_t *e;
				json_array_foreach(a, k, e)
					add_user(seen, users, e);
				json_decref(a);
			} else {
				add_user(seen, users, v);
			}
			break;
		}
		case RT_NRCPT_USERS:
			for (size_t k = 0; k < r[i].n_users; k++) {
				json_t *s = json_string(r[i].users[k]);
				add_user(seen, users, s);
				json_decref(s);
			}
			break;
		case RT_NRCPT_QUERY: {
			struct rt_buf qs;
			rt_buf_init(&qs);
			rt_buf_append_str(&qs, "select=");
			struct rt_buf sel;
			rt_buf_init(&sel);
			/* the column, quoted the way the grammar reads names */
			rt_buf_append_byte(&sel, '"');
			for (const char *p = r[i].qcolumn; *p; p++) {
				if (*p == '"' || *p == '\\')
					rt_buf_append_byte(&sel, '\\');
				rt_buf_append_byte(&sel, (uint8_t)*p);
			}
			rt_buf_append_byte(&sel, '"');
			struct rt_tpl_part lit = {RT_TPL_TEXT, sel.data};
			struct rt_tpl one = {&lit, 1};
			struct rt_tpl_env none = {0};
			rt_tpl_render(&one, &none, true, 1024, &qs);
			rt_buf_deinit(&sel);
			rt_buf_printf(&qs, "&limit=%d", RT_NOTIFY_MAX_RECIPIENTS);
			if (!rt_tpl_is_empty(&r[i].qfilter)) {
				rt_buf_append_byte(&qs, '&');
				rt_tpl_render(&r[i].qfilter, env, true, RT_NOTIFY_MAX_TEMPLATE * 4, &qs);
			}
			struct rt_query q;
			char qerr[256];
			if (rt_query_parse(qs.data, qs.len, &q, qerr, sizeof qerr)) {
				rt_warn("notify: recipients query on %s: %s", r[i].qt->name, qerr);
				rc = -1;
				rt_buf_deinit(&qs);
				break;
			}
			struct rt_read rd = {.table = r[i].qt, .query = &q};
			json_t *rows = NULL;
			struct rt_store_error e;
			if (rt_store_read(store, &rd, &rows, NULL, &e)) {
				rt_warn("notify: recipients query on %s: %s", r[i].qt->name, e.message);
				rc = -1;
			} else {
				size_t k;
				const json_t *row;
				json_array_foreach(rows, k, row)
					add_user(seen, users, json_object_get(row, r[i].qcolumn));
			}
			json_decref(rows);
			rt_query_deinit(&q);
			rt_buf_deinit(&qs);
			break;
		}
		}
	}
	json_decref(seen);
	return rc;
}

/* ---- rules ---- */

void rt_nrule_free(struct rt_nrule *r)
{
	if (!r)
		return;
	free(r->name);
	rt_nfilter_deinit(&r->filter);
	rt_nrcpts_free(r->rcpts, r->n_rcpts);
	rt_tpl_deinit(&r->title);
	rt_tpl_deinit(&r->message);
	rt_tpl_deinit(&r->link);
	rt_tpl_deinit(&r->group_key);
	rt_tpl_deinit(&r->group_title);
	rt_tpl_deinit(&r->group_message);
	free(r->category);
	json_decref(r->def);
	free(r);
}

static bool valid_name(const char *s)
{
	size_t len = s ? strlen(s) : 0;
	if (!len || len > RT_NOTIFY_MAX_NAME)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
	       len;
}

static int opt_string(const json_t *def, const char *key, const char **out, char *err,
		      size_t err_cap)
{
	const json_t *v = json_object_get(def, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, err_cap, "%s must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static int parse_events(const json_t *def, struct rt_nrule *r, char *err, size_t err_cap)
{
	const json_t *ev = json_object_get(def, "events");
	if (!ev)
		ev = json_object_get(def, "event");
	if (!ev) {
		r->on[0] = r->on[1] = r->on[2] = true;
		return 0;
	}
	json_t *list = json_is_array(ev) ? json_incref((json_t *)ev) : json_pack("[O]", ev);
	size_t i;
	const json_t *e;
	int rc = json_array_size(list) ? 0 : -1;
	json_array_foreach(list, i, e) {
		const char *s = json_string_value(e);
		if (s && !strcmp(s, "*"))
			r->on[0] = r->on[1] = r->on[2] = true;
		else if (s && !strcasecmp(s, "INSERT"))
			r->on[RT_CHANGE_INSERT] = true;
		else if (s && !strcasecmp(s, "UPDATE"))
			r->on[RT_CHANGE_UPDATE] = true;
		else if (s && !strcasecmp(s, "DELETE"))
			r->on[RT_CHANGE_DELETE] = true;
		else
			rc = -1;
	}
	json_decref(list);
	if (rc)
		snprintf(err, err_cap, "events must be INSERT, UPDATE, DELETE or * (or a list of "
				       "them)");
	return rc;
}

struct rt_nrule *rt_nrule_parse(struct rt_store *store, const json_t *def, const char *name_hint,
				char *err, size_t err_cap)
{
	char sub[384];
	if (!json_is_object(def)) {
		snprintf(err, err_cap, "a rule must be an object");
		return NULL;
	}
	struct rt_nrule *r = rt_xcalloc(1, sizeof *r);
	const char *name, *table, *schema, *title, *message, *link, *category, *type, *prio,
		*filter;
	if (opt_string(def, "name", &name, err, err_cap) ||
	    opt_string(def, "table", &table, err, err_cap) ||
	    opt_string(def, "schema", &schema, err, err_cap) ||
	    opt_string(def, "title", &title, err, err_cap) ||
	    opt_string(def, "message", &message, err, err_cap) ||
	    opt_string(def, "link", &link, err, err_cap) ||
	    opt_string(def, "category", &category, err, err_cap) ||
	    opt_string(def, "type", &type, err, err_cap) ||
	    opt_string(def, "priority", &prio, err, err_cap) ||
	    opt_string(def, "filter", &filter, err, err_cap))
		goto fail;
	if (!name)
		name = name_hint;
	if (!valid_name(name)) {
		snprintf(err, err_cap, "name must be 1 to %d letters, digits, '_', '-' or '.'",
			 RT_NOTIFY_MAX_NAME);
		goto fail;
	}
	r->name = rt_xstrdup(name);
	if (!table) {
		snprintf(err, err_cap, "rule %s: table is required", name);
		goto fail;
	}
	r->t = rt_store_table(store, schema, table);
	if (!r->t) {
		snprintf(err, err_cap, "rule %s: relation %s.%s does not exist", name,
			 schema ? schema : "public", table);
		goto fail;
	}
	if (parse_events(def, r, sub, sizeof sub)) {
		snprintf(err, err_cap, "rule %s: %s", name, sub);
		goto fail;
	}
	if (rt_nfilter_parse(filter, r->t, &r->filter, sub, sizeof sub)) {
		snprintf(err, err_cap, "rule %s: filter: %s", name, sub);
		goto fail;
	}
	if (rt_nrcpts_parse(store, json_object_get(def, "recipients"), r->t, &r->rcpts,
			    &r->n_rcpts, sub, sizeof sub)) {
		snprintf(err, err_cap, "rule %s: %s", name, sub);
		goto fail;
	}
	if (!title || !*title) {
		snprintf(err, err_cap, "rule %s: title is required", name);
		goto fail;
	}
	if (rt_tpl_parse(title, r->t, false, &r->title, sub, sizeof sub) ||
	    rt_tpl_parse(message, r->t, false, &r->message, sub, sizeof sub) ||
	    rt_tpl_parse(link, r->t, false, &r->link, sub, sizeof sub)) {
		snprintf(err, err_cap, "rule %s: %s", name, sub);
		goto fail;
	}
	r->type = type ? rt_ntype_parse(type) : RT_NTYPE_INFO;
	r->priority = prio ? rt_nprio_parse(prio) : RT_NPRIO_NORMAL;
	if (r->type < 0 || r->priority < 0) {
		snprintf(err, err_cap, "rule %s: type must be info, success, warning or error; "
				       "priority low, normal, high or urgent",
			 name);
		goto fail;
	}
	if (category && strlen(category) > RT_NOTIFY_MAX_NAME) {
		snprintf(err, err_cap, "rule %s: category is longer than %d bytes", name,
			 RT_NOTIFY_MAX_NAME);
		goto fail;
	}
	if (category && u8_check((const uint8_t *)category, strlen(category))) {
		snprintf(err, err_cap, "rule %s: category is not valid UTF-8", name);
		goto fail;
	}
	r->category = rt_xstrdup(category ? category : "");
	const json_t *g = json_object_get(def, "group");
	if (g && !json_is_null(g)) {
		const json_t *w = json_object_get(g, "window_ms");
		const char *gkey = json_string_value(json_object_get(g, "key"));
		const char *gtitle = json_string_value(json_object_get(g, "title"));
		const char *gmsg = json_string_value(json_object_get(g, "message"));
		if (!json_is_object(g) || !json_is_integer(w) || json_integer_value(w) < 1 ||
		    json_integer_value(w) > RT_NOTIFY_MAX_WINDOW_MS || !gtitle) {
			snprintf(err, err_cap, "rule %s: group must be {\"window_ms\": 1 to %d, "
					       "\"title\": template with {{count}}, \"key\"?, "
					       "\"message\"?}",
				 name, RT_NOTIFY_MAX_WINDOW_MS);
			goto fail;
		}
		r->window_ms = (uint64_t)json_integer_value(w);
		if (rt_tpl_parse(gkey, r->t, false, &r->group_key, sub, sizeof sub) ||
		    rt_tpl_parse(gtitle, r->t, true, &r->group_title, sub, sizeof sub) ||
		    rt_tpl_parse(gmsg, r->t, true, &r->group_message, sub, sizeof sub)) {
			snprintf(err, err_cap, "rule %s: group: %s", name, sub);
			goto fail;
		}
	}
	r->def = json_deep_copy(def);
	json_object_set_new(r->def, "name", json_string(r->name));
	return r;
fail:
	rt_nrule_free(r);
	return NULL;
}

/* ---- preferences ---- */

void rt_nprefs_default(struct rt_nprefs *p)
{
	*p = (struct rt_nprefs){.min_priority = RT_NPRIO_LOW};
	for (int i = 0; i < RT_NTYPE_N; i++)
		p->channels[i] = RT_NCHAN_LIVE | RT_NCHAN_INBOX;
}

void rt_nprefs_deinit(struct rt_nprefs *p)
{
	for (size_t i = 0; i < p->n_muted; i++)
		free(p->muted[i]);
	free(p->muted);
	p->muted = NULL;
	p->n_muted = 0;
}

/* "HH:MM" → minutes of the day, or -1. */
static int parse_hhmm(const char *s)
{
	int h, m;
	char tail;
	if (!s || sscanf(s, "%2d:%2d%c", &h, &m, &tail) != 2 || h < 0 || h > 23 || m < 0 || m > 59)
		return -1;
	return h * 60 + m;
}

/* "+HH:MM" / "-HH:MM" / "Z" → minutes, or INT_MIN-ish failure (-100000). */
static int parse_offset(const char *s)
{
	if (!s || !strcmp(s, "Z") || !strcmp(s, "+00:00"))
		return 0;
	int sign = s[0] == '-' ? -1 : s[0] == '+' ? 1 : 0;
	int v = sign ? parse_hhmm(s + 1) : -1;
	return v < 0 || v > 14 * 60 ? -100000 : sign * v;
}

int rt_nprefs_parse(const json_t *j, struct rt_nprefs *out, char *err, size_t err_cap)
{
	rt_nprefs_default(out);
	if (!json_is_object(j)) {
		snprintf(err, err_cap, "preferences must be an object");
		return -1;
	}
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)j, key, v) {
		if (!strcmp(key, "muted_categories")) {
			if (!json_is_array(v) || json_array_size(v) > 64) {
				snprintf(err, err_cap, "muted_categories must be an array of at most "
						       "64 categories");
				goto fail;
			}
			size_t i;
			const json_t *c;
			out->muted = rt_xcalloc(json_array_size(v) + 1, sizeof *out->muted);
			json_array_foreach(v, i, c) {
				const char *s = json_string_value(c);
				if (!s || strlen(s) > RT_NOTIFY_MAX_NAME ||
				    u8_check((const uint8_t *)s, strlen(s))) {
					snprintf(err, err_cap, "muted_categories[%zu] must be a string of "
							       "at most %d bytes",
						 i, RT_NOTIFY_MAX_NAME);
					goto fail;
				}
				out->muted[out->n_muted++] = rt_xstrdup(s);
			}
		} else if (!strcmp(key, "min_priority")) {
			out->min_priority = rt_nprio_parse(json_string_value(v));
			if (out->min_priority < 0) {
				snprintf(err, err_cap, "min_priority must be low, normal, high or urgent");
				goto fail;
			}
		} else if (!strcmp(key, "quiet_hours")) {
			if (json_is_null(v)) {
				out->has_quiet = false;
				continue;
			}
			int s = parse_hhmm(json_string_value(json_object_get(v, "start")));
			int e = parse_hhmm(json_string_value(json_object_get(v, "end")));
			const json_t *off = json_object_get(v, "utc_offset");
			int o = off ? parse_offset(json_string_value(off)) : 0;
			if (!json_is_object(v) || s < 0 || e < 0 || o == -100000 ||
			    (off && !json_is_string(off))) {
				snprintf(err, err_cap, "quiet_hours must be {\"start\": \"HH:MM\", "
						       "\"end\": \"HH:MM\", \"utc_offset\"?: "
						       "\"+HH:MM\"} or null");
				goto fail;
			}
			out->has_quiet = s != e;
			out->quiet_start = s;
			out->quiet_end = e;
			out->utc_offset_min = o;
		} else if (!strcmp(key, "channels")) {
			if (!json_is_object(v)) {
				snprintf(err, err_cap, "channels must be an object: type → [\"live\", "
						       "\"inbox\"]");
				goto fail;
			}
			const char *tk;
			const json_t *tv;
			json_object_foreach((json_t *)v, tk, tv) {
				int t = rt_ntype_parse(tk);
				if (t < 0 || !json_is_array(tv)) {
					snprintf(err, err_cap, "channels: %s is not a type (info, "
							       "success, warning, error) with a list",
						 tk);
					goto fail;
				}
				unsigned bits = 0;
				size_t i;
				const json_t *c;
				json_array_foreach(tv, i, c) {
					const char *s = json_string_value(c);
					if (s && !strcmp(s, "live"))
						bits |= RT_NCHAN_LIVE;
					else if (s && !strcmp(s, "inbox"))
						bits |= RT_NCHAN_INBOX;
					else {
						snprintf(err, err_cap, "channels.%s: channels are "
								       "\"live\" and \"inbox\"",
							 tk);
						goto fail;
					}
				}
				out->channels[t] = bits;
			}
		} else {
			snprintf(err, err_cap, "unknown preference %.64s (muted_categories, "
					       "min_priority, quiet_hours, channels)",
				 key);
			goto fail;
		}
	}
	return 0;
fail:
	rt_nprefs_deinit(out);
	rt_nprefs_default(out);
	return -1;
}

static json_t *hhmm_json(int m)
{
	char b[24];
	snprintf(b, sizeof b, "%02d:%02d", (m / 60) % 24, m % 60);
	return json_string(b);
}

json_t *rt_nprefs_json(const struct rt_nprefs *p)
{
	json_t *muted = json_array();
	for (size_t i = 0; i < p->n_muted; i++)
		json_array_append_new(muted, json_string(p->muted[i]));
	json_t *chans = json_object();
	for (int t = 0; t < RT_NTYPE_N; t++) {
		json_t *l = json_array();
		if (p->channels[t] & RT_NCHAN_LIVE)
			json_array_append_new(l, json_string("live"));
		if (p->channels[t] & RT_NCHAN_INBOX)
			json_array_append_new(l, json_string("inbox"));
		json_object_set_new(chans, rt_ntype_name(t), l);
	}
	json_t *quiet = json_null();
	if (p->has_quiet) {
		char off[24];
		int o = p->utc_offset_min < 0 ? -p->utc_offset_min : p->utc_offset_min;
		snprintf(off, sizeof off, "%c%02d:%02d", p->utc_offset_min < 0 ? '-' : '+', o / 60,
			 o % 60);
		quiet = json_pack("{s:o,s:o,s:s}", "start", hhmm_json(p->quiet_start), "end",
				  hhmm_json(p->quiet_end), "utc_offset", off);
	}
	return json_pack("{s:o,s:s,s:o,s:o}", "muted_categories", muted, "min_priority",
			 rt_nprio_name(p->min_priority), "quiet_hours", quiet, "channels", chans);
}

enum rt_nverdict rt_nprefs_decide(const struct rt_nprefs *p, const char *category, int type,
				  int priority, int64_t now_ms, int64_t *until_ms,
				  unsigned *chans)
{
	*until_ms = 0;
	*chans = p->channels[type >= 0 && type < RT_NTYPE_N ? type : 0];
	for (size_t i = 0; category && *category && i < p->n_muted; i++)
		if (!strcmp(p->muted[i], category))
			return RT_NV_DROP;
	if (priority < p->min_priority || !*chans)
		return RT_NV_DROP;
	if (!p->has_quiet || priority >= RT_NPRIO_URGENT)
		return RT_NV_DELIVER;
	int64_t local_min = now_ms / 60000 + p->utc_offset_min;
	int m = (int)(((local_min % 1440) + 1440) % 1440);
	bool quiet = p->quiet_start < p->quiet_end
			     ? m >= p->quiet_start && m < p->quiet_end
			     : m >= p->quiet_start || m < p->quiet_end;
	if (!quiet)
		return RT_NV_DELIVER;
	int left = (p->quiet_end - m + 1440) % 1440;
	*until_ms = (now_ms / 60000 + left) * 60000;
	return RT_NV_HOLD;
}
