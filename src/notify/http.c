/*
 * The REST face of notifications (/notify/v1, docs/notifications.md): the
 * inbox, preferences, rules and direct sends. Runs on pool threads; every
 * request is served under the service's api_mu on its own connection.
 */
#include "notify/notify.h"

#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistr.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "net/http.h"
#include "notify/notify_int.h"

/* {code, details, hint, message}, as the REST API answers errors. */
static int fail(json_t **out, int status, const char *code, const char *details,
		const char *hint, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(json_t **out, int status, const char *code, const char *details,
		const char *hint, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	rt_utf8_truncate(msg);
	char det[600] = "";
	if (details) {
		snprintf(det, sizeof det, "%s", details);
		rt_utf8_truncate(det);
	}
	*out = json_pack("{s:s,s:s?,s:s?,s:s}", "code", code, "details", details ? det : NULL,
			 "hint", hint, "message", msg);
	return status;
}

static bool is_service(const struct rt_notify_caller *who)
{
	return who->role && !strcmp(who->role, "service_role");
}

static int need_service(const struct rt_notify_caller *who, json_t **out)
{
	if (is_service(who))
		return 0;
	return fail(out, 403, "RTS403", NULL, "use the service role key",
		    "only the service role may manage rules and send notifications");
}

/* The inbox's owner: the caller's JWT sub, or for the service role the
 * user_id query parameter. Returns 0 with *user (caller frees) or a status. */
static int inbox_user(const struct rt_notify_caller *who, const char *query, char **user,
		      json_t **out)
{
	*user = NULL;
	char *q = query ? rt_http_query_get(query, "user_id") : NULL;
	if (q && !is_service(who) && (!who->sub || strcmp(q, who->sub))) {
		free(q);
		return fail(out, 403, "RTS403", NULL, NULL,
			    "only the service role may read another user's notifications");
	}
	if (!q && who->sub)
		q = rt_xstrdup(who->sub);
	if (!q)
		return fail(out, 401, "RTS401", NULL,
			    is_service(who) ? "pass user_id=<user id> as the service role" : NULL,
			    "notifications need a user: a token with a sub claim");
	if (!rt_notify_valid_user(q)) {
		free(q);
		return fail(out, 400, "RTS400", NULL, NULL, "user_id is not a user id (1 to %d bytes)",
			    RT_NOTIFY_MAX_USER_ID);
	}
	*user = q;
	return 0;
}

/* A non-negative integer query parameter (dflt when absent). */
static int query_int(const char *query, const char *name, long long dflt, long long max,
		     long long *v, json_t **out)
{
	char *s = query ? rt_http_query_get(query, name) : NULL;
	*v = dflt;
	if (!s)
		return 0;
	char *end;
	long long x = strtoll(s, &end, 10);
	bool bad = !*s || *end || x < 0 || x > max;
	free(s);
	if (bad)
		return fail(out, 400, "RTS400", NULL, NULL, "%s must be a whole number from 0 to %lld",
			    name, max);
	*v = x;
	return 0;
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

static int db_fail(json_t **out, sqlite3 *db)
{
	return fail(out, 500, "RTS500", sqlite3_errmsg(db), NULL, "the notifications database failed");
}

/* ---- inbox ---- */

static int list(struct rt_notify *n, const char *user, const char *query, int64_t parent,
		json_t **out)
{
	long long limit, before;
	int rc;
	if ((rc = query_int(query, "limit", 50, RT_NOTIFY_MAX_PAGE, &limit, out)) ||
	    (rc = query_int(query, "before", 0, INT64_MAX, &before, out)))
		return rc;
	if (!limit)
		limit = 50;
	char *status = query ? rt_http_query_get(query, "status") : NULL;
	char *archived = query ? rt_http_query_get(query, "archived") : NULL;
	char *category = query ? rt_http_query_get(query, "category") : NULL;
	struct rt_buf sql;
	rt_buf_init(&sql);
	rt_buf_printf(&sql, "SELECT %s FROM _rtsync_notifications WHERE user_id = ?1 AND "
			    "deliver_at <= ?2",
		      rt_nsvc_columns);
	if (parent)
		rt_buf_append_str(&sql, " AND parent_id = ?3");
	else
		rt_buf_append_str(&sql, " AND parent_id IS NULL");
	if (before)
		rt_buf_append_str(&sql, " AND id < ?4");
	if (category)
		rt_buf_append_str(&sql, " AND category = ?5");
	if (!status || !strcmp(status, "all"))
		;
	else if (!strcmp(status, "unread"))
		rt_buf_append_str(&sql, " AND read_at IS NULL");
	else if (!strcmp(status, "read"))
		rt_buf_append_str(&sql, " AND read_at IS NOT NULL");
	else {
		rc = fail(out, 400, "RTS400", NULL, NULL, "status must be unread, read or all");
		goto out;
	}
	if (parent || (archived && !strcmp(archived, "all")))
		;
	else if (!archived || !strcmp(archived, "false"))
		rt_buf_append_str(&sql, " AND archived_at IS NULL");
	else if (!strcmp(archived, "true"))
		rt_buf_append_str(&sql, " AND archived_at IS NOT NULL");
	else {
		rc = fail(out, 400, "RTS400", NULL, NULL, "archived must be true, false or all");
		goto out;
	}
	rt_buf_printf(&sql, " ORDER BY id DESC LIMIT %lld", limit + 1);
	int64_t now = n->now_ms();
	sqlite3_stmt *st = rt_nsvc_prepare(n->api_db, sql.data);
	if (!st) {
		rc = db_fail(out, n->api_db);
		goto out;
	}
	bind_str(st, 1, user);
	sqlite3_bind_int64(st, 2, now);
	if (parent)
		sqlite3_bind_int64(st, 3, parent);
	if (before)
		sqlite3_bind_int64(st, 4, before);
	if (category)
		bind_str(st, 5, category);
	json_t *items = json_array();
	json_t *next = json_null();
	while (sqlite3_step(st) == SQLITE_ROW) {
		if ((long long)json_array_size(items) == limit) {
			json_decref(next);
			next = json_integer(json_integer_value(
				json_object_get(json_array_get(items, json_array_size(items) - 1), "id")));
			break;
		}
		json_array_append_new(items, rt_nsvc_row_json(st));
	}
	sqlite3_finalize(st);
	*out = json_pack("{s:o,s:o,s:I}", "items", items, "next_before", next, "unread",
			 (json_int_t)rt_nsvc_unread(n->api_db, user, now));
	rc = 200;
out:
	free(status);
	free(archived);
	free(category);
	rt_buf_deinit(&sql);
	return rc;
}

static int count(struct rt_notify *n, const char *user, json_t **out)
{
	int64_t now = n->now_ms();
	sqlite3_stmt *st = rt_nsvc_prepare(
		n->api_db, "SELECT count(*), sum(read_at IS NULL) FROM _rtsync_notifications WHERE"
			   " user_id = ? AND parent_id IS NULL AND archived_at IS NULL AND"
			   " deliver_at <= ?");
	if (!st)
		return db_fail(out, n->api_db);
	bind_str(st, 1, user);
	sqlite3_bind_int64(st, 2, now);
	long long total = 0, unread = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		total = sqlite3_column_int64(st, 0);
		unread = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	st = rt_nsvc_prepare(n->api_db, "SELECT count(*) FROM _rtsync_notifications WHERE user_id"
					" = ? AND parent_id IS NULL AND deliver_at > ?");
	long long held = 0;
	if (st) {
		bind_str(st, 1, user);
		sqlite3_bind_int64(st, 2, now);
		if (sqlite3_step(st) == SQLITE_ROW)
			held = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	*out = json_pack("{s:I,s:I,s:I}", "unread", (json_int_t)unread, "total", (json_int_t)total,
			 "held", (json_int_t)held);
	return 200;
}

/* Tells the user's sessions what changed: {unread, changed: [...]} or more. */
static void state_event(struct rt_notify *n, const char *user, json_t *extra)
{
	json_t *p = extra ? extra : json_object();
	json_object_set_new(p, "unread", json_integer(rt_nsvc_unread(n->api_db, user, n->now_ms())));
	rt_nsvc_publish(n, user, "inbox_state", p);
	json_decref(p);
}

static int one(struct rt_notify *n, const char *user, int64_t id, json_t **row_out)
{
	json_t *row = rt_nsvc_get(n->api_db, id);
	if (!row || strcmp(json_string_value(json_object_get(row, "user_id")), user) ||
	    json_integer_value(json_object_get(row, "deliver_at")) > n->now_ms()) {
		json_decref(row);
		return -1;
	}
	*row_out = row;
	return 0;
}

static int mark(struct rt_notify *n, const char *user, int64_t id, const char *what,
		json_t **out)
{
	json_t *row;
	if (one(n, user, id, &row))
		return fail(out, 404, "RTS404", NULL, NULL, "notification %lld not found",
			    (long long)id);
	bool is_child = !json_is_null(json_object_get(row, "parent_id"));
	json_decref(row);
	const char *set;
	if (!strcmp(what, "read"))
		set = "read_at = coalesce(read_at, ?2)";
	else if (!strcmp(what, "unread"))
		set = "read_at = NULL";
	else if (!strcmp(what, "archive"))
		set = "archived_at = coalesce(archived_at, ?2)";
	else if (!strcmp(what, "unarchive"))
		set = "archived_at = NULL";
	else
		return fail(out, 404, "RTS404", NULL, "read, unread, archive or unarchive",
			    "no such action: %s", what);
	if (is_child && strcmp(what, "read") && strcmp(what, "unread"))
		return fail(out, 400, "RTS400", NULL, "archive the summary instead",
			    "an item of a summary cannot be archived alone");
	char sql[200];
	snprintf(sql, sizeof sql, "UPDATE _rtsync_notifications SET %s, updated_at = ?2 WHERE id "
				  "= ?1",
		 set);
	sqlite3_stmt *st = rt_nsvc_prepare(n->api_db, sql);
	if (!st)
		return db_fail(out, n->api_db);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, n->now_ms());
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!ok)
		return db_fail(out, n->api_db);
	row = rt_nsvc_get(n->api_db, id);
	state_event(n, user, json_pack("{s:[O]}", "changed", row));
	*out = row;
	return 200;
}

static int read_all(struct rt_notify *n, const char *user, const char *query, json_t **out)
{
	char *category = query ? rt_http_query_get(query, "category") : NULL;
	int64_t now = n->now_ms();
	sqlite3_stmt *st = rt_nsvc_prepare(
		n->api_db, category ? "UPDATE _rtsync_notifications SET read_at = ?2, updated_at = ?2"
				      " WHERE user_id = ?1 AND parent_id IS NULL AND read_at IS NULL"
				      " AND deliver_at <= ?2 AND category = ?3"
				    : "UPDATE _rtsync_notifications SET read_at = ?2, updated_at = ?2"
				      " WHERE user_id = ?1 AND parent_id IS NULL AND read_at IS NULL"
				      " AND deliver_at <= ?2");
	if (!st) {
		free(category);
		return db_fail(out, n->api_db);
	}
	bind_str(st, 1, user);
	sqlite3_bind_int64(st, 2, now);
	if (category)
		bind_str(st, 3, category);
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	long long changed = sqlite3_changes(n->api_db);
	if (!ok) {
		free(category);
		return db_fail(out, n->api_db);
	}
	state_event(n, user, json_pack("{s:b,s:s?}", "all_read", 1, "category", category));
	*out = json_pack("{s:I,s:I}", "updated", (json_int_t)changed, "unread",
			 (json_int_t)rt_nsvc_unread(n->api_db, user, now));
	free(category);
	return 200;
}

static int remove_one(struct rt_notify *n, const char *user, int64_t id, json_t **out)
{
	json_t *row;
	if (one(n, user, id, &row))
		return fail(out, 404, "RTS404", NULL, NULL, "notification %lld not found",
			    (long long)id);
	json_decref(row);
	sqlite3_stmt *st = rt_nsvc_prepare(n->api_db, "DELETE FROM _rtsync_notifications WHERE id"
						      " = ?1 OR parent_id = ?1");
	if (!st)
		return db_fail(out, n->api_db);
	sqlite3_bind_int64(st, 1, id);
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!ok)
		return db_fail(out, n->api_db);
	state_event(n, user, json_pack("{s:[{s:I,s:b}]}", "changed", "id", (json_int_t)id,
				       "deleted", 1));
	return 204;
}

/* ---- preferences ---- */

static int prefs(struct rt_notify *n, const char *user, int method, const char *body,
		 size_t body_len, json_t **out)
{
	struct rt_nprefs p;
	if (method == HTTP_GET) {
		if (rt_nsvc_prefs_read(n->api_db, user, &p))
			return db_fail(out, n->api_db);
		*out = rt_nprefs_json(&p);
		rt_nprefs_deinit(&p);
		return 200;
	}
	if (method != HTTP_PUT)
		return fail(out, 405, "RTS405", NULL, "GET or PUT", "method not allowed");
	json_t *j = json_loadb(body ? body : "", body_len, 0, NULL);
	char err[300];
	if (!j)
		return fail(out, 400, "RTS400", NULL, NULL, "the body is not a JSON object");
	int rc = rt_nprefs_parse(j, &p, err, sizeof err);
	json_decref(j);
	if (rc)
		return fail(out, 400, "RTS400", NULL, NULL, "%s", err);
	json_t *canon = rt_nprefs_json(&p);
	rt_nprefs_deinit(&p);
	char *txt = json_dumps(canon, JSON_COMPACT);
	sqlite3_stmt *st = rt_nsvc_prepare(n->api_db, "INSERT INTO _rtsync_notify_prefs (user_id,"
						      " prefs, updated_at) VALUES (?, ?, ?) ON"
						      " CONFLICT (user_id) DO UPDATE SET prefs ="
						      " excluded.prefs, updated_at ="
						      " excluded.updated_at");
	bool ok = false;
	if (st) {
		bind_str(st, 1, user);
		bind_str(st, 2, txt);
		sqlite3_bind_int64(st, 3, n->now_ms());
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_finalize(st);
	}
	free(txt);
	if (!ok) {
		json_decref(canon);
		return db_fail(out, n->api_db);
	}
	rt_nsvc_prefs_forget(n, user);
	rt_nsvc_publish(n, user, "preferences", canon);
	*out = canon;
	return 200;
}

/* ---- rules ---- */

static json_t *rule_json(const struct rt_nrule *r, const char *source)
{
	json_t *o = json_deep_copy(r->def);
	json_object_set_new(o, "source", json_string(source));
	return o;
}

static const struct rt_nrule *find_rule(struct ruleset *rs, const char *name, const char **src)
{
	for (size_t i = 0; i < rt_nsvc_rules_count(rs); i++) {
		const struct rt_nrule *r = rt_nsvc_rule_at(rs, i, src);
		if (!strcmp(r->name, name))
			return r;
	}
	return NULL;
}

static int rules(struct rt_notify *n, int method, const char *name, const char *body,
		 size_t body_len, json_t **out)
{
	struct ruleset *rs = rt_nsvc_rules(n);
	const char *src = NULL;
	const struct rt_nrule *cur = name ? find_rule(rs, name, &src) : NULL;
	int rc;
	if (method == HTTP_GET && !name) {
		json_t *list = json_array();
		for (size_t i = 0; i < rt_nsvc_rules_count(rs); i++) {
			const struct rt_nrule *r = rt_nsvc_rule_at(rs, i, &src);
			json_array_append_new(list, rule_json(r, src));
		}
		*out = json_pack("{s:o}", "rules", list);
		rc = 200;
	} else if (method == HTTP_GET) {
		rc = cur ? (*out = rule_json(cur, src), 200)
			 : fail(out, 404, "RTS404", NULL, NULL, "rule %s not found", name);
	} else if (method == HTTP_DELETE && name) {
		if (!cur) {
			rc = fail(out, 404, "RTS404", NULL, NULL, "rule %s not found", name);
		} else if (!strcmp(src, "file")) {
			rc = fail(out, 409, "RTS409", NULL, "edit the rules file and reload",
				  "rule %s is declared in the rules file", name);
		} else {
			sqlite3_stmt *st = rt_nsvc_prepare(n->api_db, "DELETE FROM"
								      " _rtsync_notify_rules WHERE"
								      " name = ?");
			bool ok = st && (bind_str(st, 1, name), sqlite3_step(st) == SQLITE_DONE);
			sqlite3_finalize(st);
			rt_nsvc_rules_reload(n, n->api_db);
			rc = ok ? 204 : db_fail(out, n->api_db);
		}
	} else if ((method == HTTP_PUT && name) || (method == HTTP_POST && !name)) {
		json_t *def = json_loadb(body ? body : "", body_len, 0, NULL);
		char err[600];
		struct rt_nrule *r = NULL;
		if (!json_is_object(def)) {
			rc = fail(out, 400, "RTS400", NULL, NULL, "the body is not a JSON object");
		} else if (name && json_is_string(json_object_get(def, "name")) &&
			   strcmp(json_string_value(json_object_get(def, "name")), name)) {
			rc = fail(out, 400, "RTS400", NULL, NULL,
				  "the body's name is not the rule's name in the path");
		} else if (!(r = rt_nrule_parse(n->store, def, name, err, sizeof err))) {
			rc = fail(out, 400, "RTS400", NULL, NULL, "%s", err);
		} else {
			const char *s2 = NULL;
			const struct rt_nrule *other = find_rule(rs, r->name, &s2);
			if (other && !strcmp(s2, "file"))
				rc = fail(out, 409, "RTS409", NULL, "edit the rules file and reload",
					  "rule %s is declared in the rules file", r->name);
			else if (other && method == HTTP_POST)
				rc = fail(out, 409, "RTS409", NULL, "PUT /notify/v1/rules/<name>",
					  "rule %s exists", r->name);
			else if (!other && rt_nsvc_rules_count(rs) >= RT_NOTIFY_MAX_RULES)
				rc = fail(out, 400, "RTS400", NULL, NULL, "at most %d rules",
					  RT_NOTIFY_MAX_RULES);
			else if (rt_nsvc_rule_store(n->api_db, r->name, r->def, "api", n->now_ms()))
				rc = db_fail(out, n->api_db);
			else {
				rt_nsvc_rules_reload(n, n->api_db);
				*out = rule_json(r, "api");
				rc = other ? 200 : 201;
			}
		}
		rt_nrule_free(r);
		json_decref(def);
	} else {
		rc = fail(out, 405, "RTS405", NULL, NULL, "method not allowed");
	}
	rt_nsvc_rules_unref(rs);
	return rc;
}

/* ---- direct sends ---- */

static int opt_text(const json_t *req, const char *key, size_t max, const char **v, json_t **out)
{
	const json_t *j = json_object_get(req, key);
	*v = NULL;
	if (!j || json_is_null(j))
		return 0;
	if (!json_is_string(j))
		return fail(out, 400, "RTS400", NULL, NULL, "%s must be a string", key);
	if (json_string_length(j) > max)
		return fail(out, 400, "RTS400", NULL, NULL, "%s is longer than %zu bytes", key, max);
	if (strlen(json_string_value(j)) != json_string_length(j))
		return fail(out, 400, "RTS400", NULL, NULL, "%s must not contain NUL bytes", key);
	*v = json_string_value(j);
	return 0;
}

static char *clean_text(const char *s)
{
	char *c = rt_xstrdup(s ? s : "");
	for (char *p = c; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\n')
			*p = ' ';
	return c;
}

static int send_locked(struct rt_notify *n, const json_t *req, json_t **out)
{
	if (!json_is_object(req))
		return fail(out, 400, "RTS400", NULL, NULL, "the body is not a JSON object");
	const char *title, *message, *link, *type, *prio, *category, *key;
	int rc;
	if ((rc = opt_text(req, "title", RT_NOTIFY_MAX_TITLE, &title, out)) ||
	    (rc = opt_text(req, "message", RT_NOTIFY_MAX_MESSAGE, &message, out)) ||
	    (rc = opt_text(req, "link", RT_NOTIFY_MAX_LINK, &link, out)) ||
	    (rc = opt_text(req, "type", 16, &type, out)) ||
	    (rc = opt_text(req, "priority", 16, &prio, out)) ||
	    (rc = opt_text(req, "category", RT_NOTIFY_MAX_NAME, &category, out)) ||
	    (rc = opt_text(req, "key", 128, &key, out)))
		return rc;
	if (!title || !*title)
		return fail(out, 400, "RTS400", NULL, NULL, "title is required");
	int t = type ? rt_ntype_parse(type) : RT_NTYPE_INFO;
	int p = prio ? rt_nprio_parse(prio) : RT_NPRIO_NORMAL;
	if (t < 0)
		return fail(out, 400, "RTS400", NULL, NULL, "type must be info, success, warning or "
							    "error");
	if (p < 0)
		return fail(out, 400, "RTS400", NULL, NULL, "priority must be low, normal, high or "
							    "urgent");
	const char *texts[] = {title, message, link, category};
	for (size_t i = 0; i < 4; i++)
		if (texts[i] && u8_check((const uint8_t *)texts[i], strlen(texts[i])))
			return fail(out, 400, "RTS400", NULL, NULL, "texts must be valid UTF-8");
	const json_t *data = json_object_get(req, "data");
	if (data) {
		char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
		size_t dl = d ? strlen(d) : 0;
		free(d);
		if (dl > RT_NOTIFY_MAX_DATA)
			return fail(out, 400, "RTS400", NULL, NULL, "data is longer than %d bytes",
				    RT_NOTIFY_MAX_DATA);
	}
	const json_t *spec = json_object_get(req, "recipients");
	json_t *own = NULL;
	if (!spec) {
		own = json_object();
		const char *keys[] = {"users", "user", "query"};
		for (size_t i = 0; i < 3; i++)
			if (json_object_get(req, keys[i]))
				json_object_set(own, keys[i], json_object_get(req, keys[i]));
		spec = own;
	}
	struct rt_nrcpt *rc_list;
	size_t n_rc;
	char err[400];
	if (rt_nrcpts_parse(n->store, spec, NULL, &rc_list, &n_rc, err, sizeof err)) {
		json_decref(own);
		return fail(out, 400, "RTS400", NULL, "give users, user, query or recipients", "%s",
			    err);
	}
	json_decref(own);
	json_t *users = json_array();
	struct rt_tpl_env env = {0};
	rt_nrcpts_resolve(n->store, rc_list, n_rc, &env, users);
	rt_nrcpts_free(rc_list, n_rc);
	char *c_title = clean_text(title), *c_msg = clean_text(message);
	char *c_link = clean_text(link), *c_cat = clean_text(category);
	int64_t now = n->now_ms();
	struct rt_nsvc_outbox o;
	rt_nsvc_outbox_init(&o);
	json_t *ids = json_array();
	rc = rt_nsvc_exec(n->api_db, "BEGIN IMMEDIATE");
	size_t i;
	json_t *u;
	json_array_foreach(users, i, u) {
		if (rc)
			break;
		char dedup[200 + RT_NOTIFY_MAX_USER_ID];
		if (key)
			snprintf(dedup, sizeof dedup, "s:%s:%s", key, json_string_value(u));
		struct rt_nsvc_item it = {
			.user = json_string_value(u),
			.dedup = key ? dedup : NULL,
			.type = t,
			.priority = p,
			.category = c_cat,
			.title = c_title,
			.message = c_msg,
			.link = c_link,
			.data = data,
		};
		int64_t id = 0;
		rc = rt_nsvc_write(n, n->api_db, &it, now, &o, &id);
		if (id > 0)
			json_array_append_new(ids, json_integer(id));
	}
	if (!rc) {
		rt_nsvc_outbox_count(&o, n->api_db, now);
		rc = rt_nsvc_exec(n->api_db, "COMMIT");
	}
	if (rc) {
		sqlite3_exec(n->api_db, "ROLLBACK", NULL, NULL, NULL);
		rc = db_fail(out, n->api_db);
		json_decref(ids);
	} else {
		rt_nsvc_outbox_flush(n, &o);
		*out = json_pack("{s:o,s:I}", "ids", ids, "recipients",
				 (json_int_t)json_array_size(users));
		rc = 201;
	}
	rt_nsvc_outbox_deinit(&o);
	json_decref(users);
	free(c_title);
	free(c_msg);
	free(c_link);
	free(c_cat);
	return rc;
}

int rt_notify_send(struct rt_notify *n, const json_t *req, json_t **out)
{
	pthread_mutex_lock(&n->api_mu);
	int rc = send_locked(n, req, out);
	pthread_mutex_unlock(&n->api_mu);
	return rc;
}

int rt_notify_counts(struct rt_notify *n, const char *user, json_t **out)
{
	*out = NULL;
	if (!user || !rt_notify_valid_user(user))
		return fail(out, 400, "RTS400", NULL, NULL, "not a user id (1 to %d bytes)",
			    RT_NOTIFY_MAX_USER_ID);
	pthread_mutex_lock(&n->api_mu);
	int rc = count(n, user, out);
	pthread_mutex_unlock(&n->api_mu);
	return rc;
}

/* ---- routing ---- */

/* A path segment that is a notification id: > 0, or -1. */
static int64_t parse_id(const char *s, size_t len)
{
	if (!len || len > 18 || strspn(s, "0123456789") < len)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < len; i++)
		v = v * 10 + (s[i] - '0');
	return v > 0 ? v : -1;
}

static int inbox_route(struct rt_notify *n, const char *user, int method, const char *rest,
		       const char *query, json_t **out)
{
	if (!*rest) {
		if (method != HTTP_GET)
			return fail(out, 405, "RTS405", NULL, "GET", "method not allowed");
		return list(n, user, query, 0, out);
	}
	if (!strcmp(rest, "count")) {
		if (method != HTTP_GET)
			return fail(out, 405, "RTS405", NULL, "GET", "method not allowed");
		return count(n, user, out);
	}
	if (!strcmp(rest, "read-all")) {
		if (method != HTTP_POST)
			return fail(out, 405, "RTS405", NULL, "POST", "method not allowed");
		return read_all(n, user, query, out);
	}
	size_t len = strcspn(rest, "/");
	int64_t id = parse_id(rest, len);
	if (id < 0)
		return fail(out, 404, "RTS404", NULL, NULL, "no such route");
	const char *action = rest[len] == '/' ? rest + len + 1 : NULL;
	if (!action) {
		if (method == HTTP_DELETE)
			return remove_one(n, user, id, out);
		if (method != HTTP_GET)
			return fail(out, 405, "RTS405", NULL, "GET or DELETE", "method not allowed");
		json_t *row;
		if (one(n, user, id, &row))
			return fail(out, 404, "RTS404", NULL, NULL, "notification %lld not found",
				    (long long)id);
		*out = row;
		return 200;
	}
	if (!strcmp(action, "items")) {
		json_t *row;
		if (method != HTTP_GET)
			return fail(out, 405, "RTS405", NULL, "GET", "method not allowed");
		if (one(n, user, id, &row))
			return fail(out, 404, "RTS404", NULL, NULL, "notification %lld not found",
				    (long long)id);
		json_decref(row);
		return list(n, user, query, id, out);
	}
	if (method != HTTP_POST)
		return fail(out, 405, "RTS405", NULL, "POST", "method not allowed");
	return mark(n, user, id, action, out);
}

int rt_notify_handle(struct rt_notify *n, const struct rt_notify_caller *who, int method,
		     const char *path, const char *query, const char *body, size_t body_len,
		     json_t **out)
{
	*out = NULL;
	if (body_len > RT_NOTIFY_MAX_BODY)
		return fail(out, 413, "RTS413", NULL, NULL, "the body is larger than %d bytes",
			    RT_NOTIFY_MAX_BODY);
	int rc;
	if (!strcmp(path, "send")) {
		if ((rc = need_service(who, out)))
			return rc;
		if (method != HTTP_POST)
			return fail(out, 405, "RTS405", NULL, "POST", "method not allowed");
		json_t *req = json_loadb(body ? body : "", body_len, 0, NULL);
		rc = req ? rt_notify_send(n, req, out)
			 : fail(out, 400, "RTS400", NULL, NULL, "the body is not a JSON object");
		json_decref(req);
		return rc;
	}
	if (!strcmp(path, "rules/reload")) {
		if ((rc = need_service(who, out)))
			return rc;
		if (method != HTTP_POST)
			return fail(out, 405, "RTS405", NULL, "POST", "method not allowed");
		char err[600];
		if (rt_notify_reload(n, err, sizeof err))
			return fail(out, 400, "RTS400", NULL, NULL, "%s", err);
		struct ruleset *rs = rt_nsvc_rules(n);
		*out = json_pack("{s:I}", "rules", (json_int_t)rt_nsvc_rules_count(rs));
		rt_nsvc_rules_unref(rs);
		return 200;
	}
	if (!strcmp(path, "rules") || !strncmp(path, "rules/", 6)) {
		if ((rc = need_service(who, out)))
			return rc;
		const char *name = path[5] ? path + 6 : NULL;
		if (name && (!*name || strchr(name, '/')))
			return fail(out, 404, "RTS404", NULL, NULL, "no such route");
		pthread_mutex_lock(&n->api_mu);
		rc = rules(n, method, name, body, body_len, out);
		pthread_mutex_unlock(&n->api_mu);
		return rc;
	}
	bool is_inbox = !strcmp(path, "inbox") || !strncmp(path, "inbox/", 6);
	bool is_prefs = !strcmp(path, "preferences");
	if (!is_inbox && !is_prefs)
		return fail(out, 404, "RTS404", NULL,
			    "routes: inbox, inbox/count, inbox/read-all, inbox/<id>[/read|unread|"
			    "archive|unarchive|items], preferences, rules, send",
			    "no such route: /notify/v1/%.200s", path);
	char *user;
	if ((rc = inbox_user(who, query, &user, out)))
		return rc;
	pthread_mutex_lock(&n->api_mu);
	if (is_prefs)
		rc = prefs(n, user, method, body, body_len, out);
	else
		rc = inbox_route(n, user, method, path[5] ? path + 6 : "", query, out);
	pthread_mutex_unlock(&n->api_mu);
	free(user);
	return rc;
}
