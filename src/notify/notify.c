/*
 * The notification service: its tables, the change consumer, writing and
 * grouping notifications, delivery through the hub, held notifications and
 * retention (docs/notifications.md). The REST face is in http.c.
 */
#include "notify/notify.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "notify/notify_int.h"
#include "realtime/realtime.h"

#define BUSY_TIMEOUT_MS 10000
#define TXN_MAX_ROWS 20000     /* a batch's transaction is committed past this */
#define CURSOR_EVERY_MS 1000   /* an idle cursor is saved at most this often */
#define RELEASE_EVERY_MS 500   /* held notifications are looked at this often */
#define RELEASE_MAX 1000       /* and at most this many released per look */
#define PRUNE_EVERY_MS 60000
#define PREFS_CACHE_MAX 100000

#undef uthash_fatal
#define uthash_fatal(msg) abort()

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS _rtsync_notify_state (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS _rtsync_notify_rules (name TEXT PRIMARY KEY, def TEXT NOT NULL,"
	" source TEXT NOT NULL, updated_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS _rtsync_notify_prefs (user_id TEXT PRIMARY KEY,"
	" prefs TEXT NOT NULL, updated_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS _rtsync_notifications ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, dedup TEXT UNIQUE,"
	" rule TEXT, pos INTEGER, type TEXT NOT NULL, category TEXT NOT NULL,"
	" priority TEXT NOT NULL, title TEXT NOT NULL, message TEXT NOT NULL, link TEXT,"
	" data TEXT, group_key TEXT, parent_id INTEGER, is_summary INTEGER NOT NULL DEFAULT 0,"
	" count INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL, deliver_at INTEGER NOT NULL,"
	" delivered INTEGER NOT NULL DEFAULT 0, read_at INTEGER, archived_at INTEGER);"
	"CREATE INDEX IF NOT EXISTS _rtsync_notifications_user"
	" ON _rtsync_notifications (user_id, parent_id, id);"
	"CREATE INDEX IF NOT EXISTS _rtsync_notifications_parent"
	" ON _rtsync_notifications (parent_id) WHERE parent_id IS NOT NULL;"
	"CREATE INDEX IF NOT EXISTS _rtsync_notifications_held"
	" ON _rtsync_notifications (deliver_at) WHERE delivered = 0;"
	"CREATE INDEX IF NOT EXISTS _rtsync_notifications_group"
	" ON _rtsync_notifications (user_id, rule, group_key, id) WHERE group_key IS NOT NULL;"
	"CREATE INDEX IF NOT EXISTS _rtsync_notifications_created"
	" ON _rtsync_notifications (created_at);";

/* ---- small database helpers ---- */

int rt_nsvc_open_db(const char *path, sqlite3 **out, char *err, size_t err_cap)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, err_cap, "cannot open %s: %s", path,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	char *msg = NULL;
	if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
			 &msg) != SQLITE_OK) {
		snprintf(err, err_cap, "cannot configure %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

sqlite3_stmt *rt_nsvc_prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		rt_error("notify: %s: %s", sqlite3_errmsg(db), sql);
		return NULL;
	}
	return st;
}

int rt_nsvc_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		rt_error("notify: %s: %s", msg ? msg : "?", sql);
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static void set_nullable_ms(json_t *o, const char *key, sqlite3_stmt *st, int i)
{
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		json_object_set_new(o, key, json_null());
	else
		json_object_set_new(o, key, json_integer(sqlite3_column_int64(st, i)));
}

const char rt_nsvc_columns[] =
	"id, user_id, rule, pos, type, category, priority, title, message, link, data, group_key,"
	" parent_id, is_summary, count, created_at, updated_at, deliver_at, read_at, archived_at";

json_t *rt_nsvc_row_json(sqlite3_stmt *st)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_integer(sqlite3_column_int64(st, 0)));
	json_object_set_new(o, "user_id", json_string(col_text(st, 1)));
	json_object_set_new(o, "rule", col_text(st, 2) ? json_string(col_text(st, 2)) : json_null());
	json_object_set_new(o, "position", sqlite3_column_type(st, 3) == SQLITE_NULL
						   ? json_null()
						   : json_integer(sqlite3_column_int64(st, 3)));
	json_object_set_new(o, "type", json_string(col_text(st, 4)));
	json_object_set_new(o, "category", json_string(col_text(st, 5)));
	json_object_set_new(o, "priority", json_string(col_text(st, 6)));
	json_object_set_new(o, "title", json_string(col_text(st, 7)));
	json_object_set_new(o, "message", json_string(col_text(st, 8)));
	json_object_set_new(o, "link", col_text(st, 9) ? json_string(col_text(st, 9)) : json_null());
	json_t *data = col_text(st, 10) ? json_loads(col_text(st, 10), JSON_DECODE_ANY, NULL) : NULL;
	json_object_set_new(o, "data", data ? data : json_null());
	json_object_set_new(o, "group_key",
			    col_text(st, 11) ? json_string(col_text(st, 11)) : json_null());
	json_object_set_new(o, "parent_id", sqlite3_column_type(st, 12) == SQLITE_NULL
						    ? json_null()
						    : json_integer(sqlite3_column_int64(st, 12)));
	json_object_set_new(o, "summary", json_boolean(sqlite3_column_int(st, 13)));
	json_object_set_new(o, "count", json_integer(sqlite3_column_int64(st, 14)));
	json_object_set_new(o, "created_at", json_integer(sqlite3_column_int64(st, 15)));
	json_object_set_new(o, "updated_at", json_integer(sqlite3_column_int64(st, 16)));
	json_object_set_new(o, "deliver_at", json_integer(sqlite3_column_int64(st, 17)));
	set_nullable_ms(o, "read_at", st, 18);
	set_nullable_ms(o, "archived_at", st, 19);
	json_object_set_new(o, "read", json_boolean(sqlite3_column_type(st, 18) != SQLITE_NULL));
	json_object_set_new(o, "archived",
			    json_boolean(sqlite3_column_type(st, 19) != SQLITE_NULL));
	return o;
}

json_t *rt_nsvc_get(sqlite3 *db, int64_t id)
{
	char sql[512];
	snprintf(sql, sizeof sql, "SELECT %s FROM _rtsync_notifications WHERE id = ?",
		 rt_nsvc_columns);
	sqlite3_stmt *st = rt_nsvc_prepare(db, sql);
	if (!st)
		return NULL;
	sqlite3_bind_int64(st, 1, id);
	json_t *o = sqlite3_step(st) == SQLITE_ROW ? rt_nsvc_row_json(st) : NULL;
	sqlite3_finalize(st);
	return o;
}

long long rt_nsvc_unread(sqlite3 *db, const char *user, int64_t now)
{
	sqlite3_stmt *st = rt_nsvc_prepare(
		db, "SELECT count(*) FROM _rtsync_notifications WHERE user_id = ? AND parent_id IS "
		    "NULL AND read_at IS NULL AND archived_at IS NULL AND deliver_at <= ?");
	if (!st)
		return 0;
	bind_text(st, 1, user);
	sqlite3_bind_int64(st, 2, now);
	long long n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return n;
}

/* ---- rule sets ---- */

struct ruleset {
	atomic_uint refs;
	struct rt_nrule **v;
	char **sources; /* "file" or "api", by rule */
	size_t n;
};

static void ruleset_unref(struct ruleset *rs)
{
	if (!rs || atomic_fetch_sub(&rs->refs, 1) != 1)
		return;
	for (size_t i = 0; i < rs->n; i++) {
		rt_nrule_free(rs->v[i]);
		free(rs->sources[i]);
	}
	free(rs->v);
	free(rs->sources);
	free(rs);
}

struct ruleset *rt_nsvc_rules(struct rt_notify *n)
{
	pthread_mutex_lock(&n->rules_mu);
	struct ruleset *rs = n->rules;
	atomic_fetch_add(&rs->refs, 1);
	pthread_mutex_unlock(&n->rules_mu);
	return rs;
}

void rt_nsvc_rules_unref(struct ruleset *rs)
{
	ruleset_unref(rs);
}

size_t rt_nsvc_rules_count(const struct ruleset *rs)
{
	return rs->n;
}

const struct rt_nrule *rt_nsvc_rule_at(const struct ruleset *rs, size_t i, const char **source)
{
	if (source)
		*source = rs->sources[i];
	return rs->v[i];
}

/* Compiles every rule kept in the rules table on db into a new set. A rule
 * that no longer compiles (its table is gone) is skipped with a warning. */
static struct ruleset *load_rules(struct rt_notify *n, sqlite3 *db)
{
	struct ruleset *rs = rt_xcalloc(1, sizeof *rs);
	atomic_init(&rs->refs, 1);
	sqlite3_stmt *st = rt_nsvc_prepare(db, "SELECT name, def, source FROM _rtsync_notify_rules "
					       "ORDER BY name");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		json_t *def = json_loads(col_text(st, 1), 0, NULL);
		char err[512];
		struct rt_nrule *r = rt_nrule_parse(n->store, def, col_text(st, 0), err, sizeof err);
		json_decref(def);
		if (!r) {
			rt_warn("notify: rule %s skipped: %s", col_text(st, 0), err);
			continue;
		}
		rs->v = rt_xrealloc(rs->v, (rs->n + 1) * sizeof *rs->v);
		rs->sources = rt_xrealloc(rs->sources, (rs->n + 1) * sizeof *rs->sources);
		rs->v[rs->n] = r;
		rs->sources[rs->n++] = rt_xstrdup(col_text(st, 2));
	}
	sqlite3_finalize(st);
	return rs;
}

void rt_nsvc_rules_reload(struct rt_notify *n, sqlite3 *db)
{
	struct ruleset *rs = load_rules(n, db);
	pthread_mutex_lock(&n->rules_mu);
	struct ruleset *old = n->rules;
	n->rules = rs;
	pthread_mutex_unlock(&n->rules_mu);
	ruleset_unref(old);
}

/* Reads the rules file into a rules array (validated). Returns 0 or -1. */
static int read_rules_file(struct rt_notify *n, json_t **out, char *err, size_t err_cap)
{
	json_error_t je;
	json_t *j = json_load_file(n->rules_path, 0, &je);
	if (!j) {
		snprintf(err, err_cap, "%s:%d: %s", n->rules_path, je.line, je.text);
		return -1;
	}
	json_t *list = json_is_array(j) ? json_incref(j) : json_incref(json_object_get(j, "rules"));
	json_decref(j);
	if (!json_is_array(list) || json_array_size(list) > RT_NOTIFY_MAX_RULES) {
		snprintf(err, err_cap, "%s: expected {\"rules\": [...]} with at most %d rules",
			 n->rules_path, RT_NOTIFY_MAX_RULES);
		json_decref(list);
		return -1;
	}
	size_t i;
	json_t *def;
	json_t *seen = json_object();
	json_array_foreach(list, i, def) {
		char rerr[512];
		struct rt_nrule *r = rt_nrule_parse(n->store, def, NULL, rerr, sizeof rerr);
		if (!r) {
			snprintf(err, err_cap, "%s: rules[%zu]: %s", n->rules_path, i, rerr);
			goto fail;
		}
		bool dup = json_object_get(seen, r->name) != NULL;
		json_object_set_new(seen, r->name, json_true());
		rt_nrule_free(r);
		if (dup) {
			snprintf(err, err_cap, "%s: rules[%zu]: a second rule named %s", n->rules_path,
				 i, json_string_value(json_object_get(def, "name")));
			goto fail;
		}
	}
	json_decref(seen);
	*out = list;
	return 0;
fail:
	json_decref(seen);
	json_decref(list);
	return -1;
}

int rt_nsvc_rule_store(sqlite3 *db, const char *name, const json_t *def, const char *source,
		       int64_t now)
{
	char *txt = json_dumps(def, JSON_COMPACT | JSON_SORT_KEYS);
	sqlite3_stmt *st = rt_nsvc_prepare(db, "INSERT INTO _rtsync_notify_rules (name, def, source,"
					       " updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (name)"
					       " DO UPDATE SET def = excluded.def, source ="
					       " excluded.source, updated_at = excluded.updated_at");
	int rc = -1;
	if (st) {
		bind_text(st, 1, name);
		bind_text(st, 2, txt);
		bind_text(st, 3, source);
		sqlite3_bind_int64(st, 4, now);
		rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
		sqlite3_finalize(st);
	}
	free(txt);
	return rc;
}

int rt_notify_reload(struct rt_notify *n, char *err, size_t err_cap)
{
	if (!n->rules_path) {
		pthread_mutex_lock(&n->api_mu);
		rt_nsvc_rules_reload(n, n->api_db);
		pthread_mutex_unlock(&n->api_mu);
		return 0;
	}
	json_t *list;
	if (read_rules_file(n, &list, err, err_cap))
		return -1;
	pthread_mutex_lock(&n->api_mu);
	sqlite3 *db = n->api_db;
	int rc = rt_nsvc_exec(db, "BEGIN IMMEDIATE");
	/* a REST rule with a name the file now takes becomes the file's */
	if (!rc)
		rc = rt_nsvc_exec(db, "DELETE FROM _rtsync_notify_rules WHERE source = 'file'");
	size_t i;
	json_t *def;
	json_array_foreach(list, i, def) {
		if (rc)
			break;
		rc = rt_nsvc_rule_store(db, json_string_value(json_object_get(def, "name")), def,
					"file", n->now_ms());
	}
	if (!rc)
		rc = rt_nsvc_exec(db, "COMMIT");
	if (rc) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		snprintf(err, err_cap, "%s: cannot store the rules", n->rules_path);
	} else {
		rt_nsvc_rules_reload(n, db);
		rt_info("notify: %zu rules from %s", json_array_size(list), n->rules_path);
	}
	pthread_mutex_unlock(&n->api_mu);
	json_decref(list);
	return rc;
}

/* ---- preferences (cached) ---- */

struct pref_entry {
	char *user;
	struct rt_nprefs p;
	UT_hash_handle hh;
};

static void prefs_cache_clear(struct rt_notify *n)
{
	struct pref_entry *e, *tmp;
	HASH_ITER(hh, n->prefs, e, tmp) {
		HASH_DEL(n->prefs, e);
		rt_nprefs_deinit(&e->p);
		free(e->user);
		free(e);
	}
}

int rt_nsvc_prefs_read(sqlite3 *db, const char *user, struct rt_nprefs *out)
{
	rt_nprefs_default(out);
	sqlite3_stmt *st =
		rt_nsvc_prepare(db, "SELECT prefs FROM _rtsync_notify_prefs WHERE user_id = ?");
	if (!st)
		return -1;
	bind_text(st, 1, user);
	if (sqlite3_step(st) == SQLITE_ROW) {
		json_t *j = json_loads(col_text(st, 0), 0, NULL);
		char err[256];
		if (rt_nprefs_parse(j, out, err, sizeof err))
			rt_warn("notify: preferences of %s ignored: %s", user, err);
		json_decref(j);
	}
	sqlite3_finalize(st);
	return 0;
}

/* Copies user's preferences (the cache's, read through db when absent). */
static void prefs_of(struct rt_notify *n, sqlite3 *db, const char *user, struct rt_nprefs *out)
{
	pthread_mutex_lock(&n->prefs_mu);
	struct pref_entry *e;
	HASH_FIND_STR(n->prefs, user, e);
	if (!e) {
		if (HASH_COUNT(n->prefs) >= PREFS_CACHE_MAX)
			prefs_cache_clear(n);
		e = rt_xcalloc(1, sizeof *e);
		e->user = rt_xstrdup(user);
		rt_nsvc_prefs_read(db, user, &e->p);
		HASH_ADD_KEYPTR(hh, n->prefs, e->user, strlen(e->user), e);
	}
	*out = e->p;
	out->muted = rt_xcalloc(e->p.n_muted + 1, sizeof *out->muted);
	for (size_t i = 0; i < e->p.n_muted; i++)
		out->muted[i] = rt_xstrdup(e->p.muted[i]);
	pthread_mutex_unlock(&n->prefs_mu);
}

void rt_nsvc_prefs_forget(struct rt_notify *n, const char *user)
{
	pthread_mutex_lock(&n->prefs_mu);
	struct pref_entry *e;
	HASH_FIND_STR(n->prefs, user, e);
	if (e) {
		HASH_DEL(n->prefs, e);
		rt_nprefs_deinit(&e->p);
		free(e->user);
		free(e);
	}
	pthread_mutex_unlock(&n->prefs_mu);
}

/* ---- delivery ---- */

void rt_nsvc_publish(struct rt_notify *n, const char *user, const char *event, json_t *payload)
{
	if (!n->hub)
		return;
	char *txt = json_dumps(payload, JSON_COMPACT);
	size_t tlen = strlen(RT_NOTIFY_TOPIC_PREFIX) + strlen(user) + 1;
	char *topic = rt_xmalloc(tlen);
	snprintf(topic, tlen, "%s%s", RT_NOTIFY_TOPIC_PREFIX, user);
	struct rt_msg *m = rt_realtime_broadcast_msg(topic, true, event, txt, strlen(txt));
	rt_hub_publish_any(n->hub, m);
	rt_msg_unref(m);
	free(topic);
	free(txt);
}

void rt_nsvc_outbox_init(struct rt_nsvc_outbox *o)
{
	o->items = json_array();
	o->users = json_object();
	o->index = json_object();
}

void rt_nsvc_outbox_deinit(struct rt_nsvc_outbox *o)
{
	json_decref(o->items);
	json_decref(o->users);
	json_decref(o->index);
	o->items = o->users = o->index = NULL;
}

/* Adds the counts to every queued event (db inside the writing transaction). */
void rt_nsvc_outbox_count(struct rt_nsvc_outbox *o, sqlite3 *db, int64_t now)
{
	const char *user;
	json_t *v;
	json_object_foreach(o->users, user, v)
		json_object_set_new(o->users, user, json_integer(rt_nsvc_unread(db, user, now)));
	size_t i;
	json_t *e;
	json_array_foreach(o->items, i, e) {
		const char *u = json_string_value(json_object_get(e, "user"));
		json_object_set(json_object_get(e, "payload"), "unread", json_object_get(o->users, u));
	}
}

/* Publishes what o holds (after the commit) and empties it. */
void rt_nsvc_outbox_flush(struct rt_notify *n, struct rt_nsvc_outbox *o)
{
	size_t i;
	json_t *e;
	json_array_foreach(o->items, i, e) {
		rt_nsvc_publish(n, json_string_value(json_object_get(e, "user")),
				json_string_value(json_object_get(e, "event")),
				json_object_get(e, "payload"));
		atomic_fetch_add(&n->n_pushed, 1);
	}
	json_array_clear(o->items);
	json_object_clear(o->users);
	json_object_clear(o->index);
}

/* Queues an event (takes payload). A notification queued again in the same
 * transaction (a summary growing) replaces its earlier event: one push per
 * notification per batch, with its latest state and everything it replaced. */
static void outbox_add(struct rt_nsvc_outbox *o, const char *user, const char *event,
		       json_t *payload)
{
	json_object_set_new(o->users, user, json_integer(0));
	json_t *id = json_object_get(json_object_get(payload, "notification"), "id");
	char key[RT_NOTIFY_MAX_USER_ID + 32];
	snprintf(key, sizeof key, "%lld:%s", (long long)json_integer_value(id), user);
	json_t *at = id ? json_object_get(o->index, key) : NULL;
	if (at) {
		json_t *prev = json_object_get(json_array_get(o->items, (size_t)json_integer_value(at)),
					       "payload");
		json_t *old_rep = json_object_get(prev, "replaces");
		json_t *rep = json_object_get(payload, "replaces");
		if (old_rep && !rep)
			json_object_set(payload, "replaces", old_rep);
		else if (old_rep && rep)
			json_array_extend(rep, old_rep);
		json_object_set_new(json_array_get(o->items, (size_t)json_integer_value(at)),
				    "payload", payload);
		return;
	}
	if (id)
		json_object_set_new(o->index, key, json_integer((json_int_t)json_array_size(o->items)));
	json_array_append_new(o->items, json_pack("{s:s,s:s,s:o}", "user", user, "event", event,
						  "payload", payload));
}

/* ---- writing one notification (inside the caller's transaction) ---- */

static int64_t last_insert(sqlite3 *db)
{
	return sqlite3_changes(db) > 0 ? sqlite3_last_insert_rowid(db) : 0;
}

/* Inserts a row; returns its id, 0 when the dedup key was there, -1 on error. */
static int64_t insert_row(sqlite3 *db, const struct rt_nsvc_item *it, const char *title,
			  const char *message, const char *group_key, int64_t parent,
			  bool is_summary, long long count, int64_t created, int64_t now,
			  int64_t deliver_at, bool delivered, bool is_read)
{
	sqlite3_stmt *st = rt_nsvc_prepare(
		db, "INSERT OR IGNORE INTO _rtsync_notifications (user_id, dedup, rule, pos, type,"
		    " category, priority, title, message, link, data, group_key, parent_id,"
		    " is_summary, count, created_at, updated_at, deliver_at, delivered, read_at)"
		    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
	if (!st)
		return -1;
	char *data = it->data ? json_dumps(it->data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	bind_text(st, 1, it->user);
	bind_text(st, 2, is_summary ? NULL : it->dedup);
	bind_text(st, 3, it->rule ? it->rule->name : NULL);
	if (it->pos && !is_summary)
		sqlite3_bind_int64(st, 4, (sqlite3_int64)it->pos);
	bind_text(st, 5, rt_ntype_name(it->type));
	bind_text(st, 6, it->category ? it->category : "");
	bind_text(st, 7, rt_nprio_name(it->priority));
	bind_text(st, 8, title);
	bind_text(st, 9, message ? message : "");
	bind_text(st, 10, it->link && *it->link ? it->link : NULL);
	bind_text(st, 11, data);
	bind_text(st, 12, group_key);
	if (parent)
		sqlite3_bind_int64(st, 13, parent);
	sqlite3_bind_int(st, 14, is_summary);
	sqlite3_bind_int64(st, 15, count);
	sqlite3_bind_int64(st, 16, created);
	sqlite3_bind_int64(st, 17, now);
	sqlite3_bind_int64(st, 18, deliver_at);
	sqlite3_bind_int(st, 19, delivered);
	if (is_read)
		sqlite3_bind_int64(st, 20, now);
	int rc = sqlite3_step(st);
	free(data);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rt_error("notify: insert: %s", sqlite3_errmsg(db));
		return -1;
	}
	return last_insert(db);
}

/* Renders the summary texts of it's rule for count items. */
static void summary_texts(const struct rt_nsvc_item *it, long long count, struct rt_buf *title,
			  struct rt_buf *message)
{
	struct rt_tpl_env env = *it->env;
	env.count = count;
	rt_tpl_render(&it->rule->group_title, &env, false, RT_NOTIFY_MAX_TITLE, title);
	if (!rt_tpl_is_empty(&it->rule->group_message))
		rt_tpl_render(&it->rule->group_message, &env, false, RT_NOTIFY_MAX_MESSAGE, message);
	else
		rt_buf_append(message, "", 0);
}

/* Folds it into a summary when its rule groups and the window has one, or a
 * single one to start one with. Returns 1 when folded (*id: the summary's),
 * 0 when it stands alone, -1 on error; *is_dup when it was there already. */
static int group_item(struct rt_notify *n, sqlite3 *db, const struct rt_nsvc_item *it,
		      const char *key, int64_t now, int64_t deliver_at, bool delivered,
		      bool is_read, struct rt_nsvc_outbox *o, bool *is_dup)
{
	*is_dup = false;
	int64_t since = now - (int64_t)it->rule->window_ms;
	sqlite3_stmt *st = rt_nsvc_prepare(
		db, "SELECT id, is_summary, count, created_at FROM _rtsync_notifications"
		    " WHERE user_id = ? AND rule = ? AND group_key = ? AND parent_id IS NULL"
		    " AND archived_at IS NULL AND created_at >= ? ORDER BY id DESC LIMIT 1");
	if (!st)
		return -1;
	bind_text(st, 1, it->user);
	bind_text(st, 2, it->rule->name);
	bind_text(st, 3, key);
	sqlite3_bind_int64(st, 4, since);
	int64_t prev = 0, prev_created = 0;
	bool is_summary = false;
	long long count = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		prev = sqlite3_column_int64(st, 0);
		is_summary = sqlite3_column_int(st, 1);
		count = sqlite3_column_int64(st, 2);
		prev_created = sqlite3_column_int64(st, 3);
	}
	sqlite3_finalize(st);
	if (!prev)
		return 0;
	struct rt_buf title, message;
	rt_buf_init(&title);
	rt_buf_init(&message);
	int64_t summary = prev;
	json_t *replaces = json_array();
	int rc = -1;
	if (!is_summary) {
		/* the second in the window: a summary over both */
		summary_texts(it, 2, &title, &message);
		summary = insert_row(db, it, title.data, message.data, key, 0, true, 1, prev_created,
				     now, deliver_at, delivered, is_read);
		if (summary <= 0)
			goto out;
		char sql[160];
		snprintf(sql, sizeof sql,
			 "UPDATE _rtsync_notifications SET parent_id = %lld WHERE id = %lld",
			 (long long)summary, (long long)prev);
		if (rt_nsvc_exec(db, sql))
			goto out;
		json_array_append_new(replaces, json_integer(prev));
		count = 1;
	}
	/* the item itself, under the summary (the dedup key keeps it once) */
	int64_t id = insert_row(db, it, it->title, it->message, key, summary, false, 1, now, now,
				now, true, is_read);
	if (id < 0)
		goto out;
	if (id == 0) { /* seen before: nothing changes */
		*is_dup = true;
		if (!is_summary) /* the summary made above would be empty of it: undo */
			goto out_rollback_summary;
		rc = 1;
		goto out;
	}
	rt_buf_reset(&title);
	rt_buf_reset(&message);
	summary_texts(it, count + 1, &title, &message);
	st = rt_nsvc_prepare(db, "UPDATE _rtsync_notifications SET count = ?, title = ?,"
				 " message = ?, updated_at = ?, read_at = ?, deliver_at = ?,"
				 " delivered = ? WHERE id = ?");
	if (!st)
		goto out;
	sqlite3_bind_int64(st, 1, count + 1);
	bind_text(st, 2, title.data);
	bind_text(st, 3, message.data);
	sqlite3_bind_int64(st, 4, now);
	if (is_read)
		sqlite3_bind_int64(st, 5, now);
	sqlite3_bind_int64(st, 6, deliver_at);
	sqlite3_bind_int(st, 7, delivered);
	sqlite3_bind_int64(st, 8, summary);
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!ok)
		goto out;
	if (delivered && deliver_at <= now && o) {
		json_t *row = rt_nsvc_get(db, summary);
		if (row) {
			json_t *p = json_pack("{s:o}", "notification", row);
			if (json_array_size(replaces))
				json_object_set(p, "replaces", replaces);
			outbox_add(o, it->user, "notification", p);
		}
	}
	atomic_fetch_add(&n->n_written, 1);
	rc = 1;
	goto out;
out_rollback_summary: {
	char sql[200];
	snprintf(sql, sizeof sql,
		 "UPDATE _rtsync_notifications SET parent_id = NULL WHERE id = %lld; "
		 "DELETE FROM _rtsync_notifications WHERE id = %lld",
		 (long long)prev, (long long)summary);
	rc = rt_nsvc_exec(db, sql) ? -1 : 1;
}
out:
	json_decref(replaces);
	rt_buf_deinit(&title);
	rt_buf_deinit(&message);
	return rc;
}

int rt_nsvc_write(struct rt_notify *n, sqlite3 *db, const struct rt_nsvc_item *it, int64_t now,
		  struct rt_nsvc_outbox *o, int64_t *id_out)
{
	if (id_out)
		*id_out = 0;
	struct rt_nprefs p;
	prefs_of(n, db, it->user, &p);
	int64_t until;
	unsigned chans;
	enum rt_nverdict v = rt_nprefs_decide(&p, it->category, it->type, it->priority, now, &until,
					      &chans);
	rt_nprefs_deinit(&p);
	if (v == RT_NV_DROP)
		return 0;
	int64_t deliver_at = v == RT_NV_HOLD ? until : now;
	bool is_read = !(chans & RT_NCHAN_INBOX);
	/* held ones wait for their release; with no live channel there is no push */
	bool delivered = v != RT_NV_HOLD || !(chans & RT_NCHAN_LIVE);
	bool is_pushed = v == RT_NV_DELIVER && (chans & RT_NCHAN_LIVE);
	if (v == RT_NV_HOLD && (chans & RT_NCHAN_LIVE))
		atomic_fetch_add(&n->n_held, 1);
	if (it->rule && it->rule->window_ms) {
		struct rt_buf key;
		rt_buf_init(&key);
		rt_tpl_render(&it->rule->group_key, it->env, false, RT_NOTIFY_MAX_TITLE, &key);
		bool is_dup;
		int g = group_item(n, db, it, key.data, now, deliver_at, delivered, is_read,
				   is_pushed ? o : NULL, &is_dup);
		if (g == 0) {
			int64_t id = insert_row(db, it, it->title, it->message, key.data, 0, false, 1,
						now, now, deliver_at, delivered, is_read);
			if (id > 0) {
				atomic_fetch_add(&n->n_written, 1);
				if (is_pushed && o)
					outbox_add(o, it->user, "notification",
						   json_pack("{s:o*}", "notification",
							     rt_nsvc_get(db, id)));
			}
			if (id_out)
				*id_out = id > 0 ? id : 0;
			g = id < 0 ? -1 : 0;
		}
		rt_buf_deinit(&key);
		return g < 0 ? -1 : 0;
	}
	int64_t id = insert_row(db, it, it->title, it->message, NULL, 0, false, 1, now, now,
				deliver_at, delivered, is_read);
	if (id < 0)
		return -1;
	if (id_out)
		*id_out = id;
	if (id > 0) {
		atomic_fetch_add(&n->n_written, 1);
		if (is_pushed && o)
			outbox_add(o, it->user, "notification",
				   json_pack("{s:o*}", "notification", rt_nsvc_get(db, id)));
	}
	return 0;
}

/* ---- the change consumer ---- */

static int save_cursor(sqlite3 *db, uint64_t pos)
{
	sqlite3_stmt *st = rt_nsvc_prepare(db, "INSERT INTO _rtsync_notify_state (k, v) VALUES"
					       " ('position', ?) ON CONFLICT (k) DO UPDATE SET v ="
					       " excluded.v");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)pos);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

static bool read_cursor(sqlite3 *db, uint64_t *pos)
{
	sqlite3_stmt *st =
		rt_nsvc_prepare(db, "SELECT v FROM _rtsync_notify_state WHERE k = 'position'");
	bool ok = st && sqlite3_step(st) == SQLITE_ROW;
	if (ok)
		*pos = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return ok;
}

struct batch {
	struct rt_notify *n;
	bool in_txn;
	size_t n_rows;
	struct rt_nsvc_outbox out;
};

static int batch_commit(struct batch *b, uint64_t pos)
{
	if (!b->in_txn)
		return 0;
	struct rt_notify *n = b->n;
	int64_t now = n->now_ms();
	rt_nsvc_outbox_count(&b->out, n->feed_db, now);
	int rc = save_cursor(n->feed_db, pos);
	if (!rc)
		rc = rt_nsvc_exec(n->feed_db, "COMMIT");
	if (rc) {
		sqlite3_exec(n->feed_db, "ROLLBACK", NULL, NULL, NULL);
		json_array_clear(b->out.items);
		json_object_clear(b->out.users);
		json_object_clear(b->out.index);
	} else {
		n->saved_pos = pos;
		n->saved_ms = rt_mono_ms();
		rt_nsvc_outbox_flush(n, &b->out);
	}
	b->in_txn = false;
	b->n_rows = 0;
	return rc;
}

static const char *event_name(enum rt_change_type t)
{
	return rt_change_type_name(t);
}

/* Turns one change into notifications. Returns 0, or -1 when the database
 * failed (the batch is retried from the last saved position). */
static int process_change(struct batch *b, struct ruleset *rs, const struct rt_change *ch)
{
	struct rt_notify *n = b->n;
	for (size_t i = 0; i < rs->n; i++) {
		const struct rt_nrule *r = rs->v[i];
		if (r->t != ch->table || !r->on[ch->type] || !rt_nfilter_match(&r->filter, ch))
			continue;
		struct rt_tpl_env env = {.new_row = ch->record,
					 .old_row = ch->old_record,
					 .table = ch->table->name,
					 .event = event_name(ch->type)};
		json_t *users = json_array();
		rt_nrcpts_resolve(n->store, r->rcpts, r->n_rcpts, &env, users);
		if (!json_array_size(users)) {
			json_decref(users);
			continue;
		}
		struct rt_buf title, message, link;
		rt_buf_init(&title);
		rt_buf_init(&message);
		rt_buf_init(&link);
		rt_tpl_render(&r->title, &env, false, RT_NOTIFY_MAX_TITLE, &title);
		rt_tpl_render(&r->message, &env, false, RT_NOTIFY_MAX_MESSAGE, &message);
		rt_tpl_render(&r->link, &env, false, RT_NOTIFY_MAX_LINK, &link);
		int rc = 0;
		if (!b->in_txn) {
			rc = rt_nsvc_exec(n->feed_db, "BEGIN IMMEDIATE");
			b->in_txn = rc == 0;
		}
		size_t k;
		json_t *u;
		json_t *data = json_pack("{s:s,s:s,s:O*,s:O*}", "table", ch->table->name, "event",
					 event_name(ch->type), "record", ch->record, "old_record",
					 ch->old_record);
		json_array_foreach(users, k, u) {
			if (rc)
				break;
			char dedup[RT_NOTIFY_MAX_NAME + RT_NOTIFY_MAX_USER_ID + 48];
			snprintf(dedup, sizeof dedup, "r:%s:%llu:%s", r->name,
				 (unsigned long long)ch->pos, json_string_value(u));
			struct rt_nsvc_item it = {
				.user = json_string_value(u),
				.rule = r,
				.env = &env,
				.pos = ch->pos,
				.dedup = dedup,
				.type = r->type,
				.priority = r->priority,
				.category = r->category,
				.title = title.data,
				.message = message.data,
				.link = link.data,
				.data = data,
			};
			rc = rt_nsvc_write(n, n->feed_db, &it, n->now_ms(), &b->out, NULL);
			b->n_rows++;
		}
		json_decref(data);
		rt_buf_deinit(&title);
		rt_buf_deinit(&message);
		rt_buf_deinit(&link);
		json_decref(users);
		if (rc)
			return -1;
	}
	return 0;
}

/* Processes changes with positions above the cursor; the cursor then stands
 * at last_pos. Returns 0, or -1 (nothing after the last commit is kept: the
 * same changes come again). */
static int process(struct rt_notify *n, const struct rt_change *chs, size_t n_chs,
		   uint64_t last_pos)
{
	struct ruleset *rs = rt_nsvc_rules(n);
	struct batch b = {.n = n};
	rt_nsvc_outbox_init(&b.out);
	int rc = 0;
	for (size_t i = 0; i < n_chs && !rc && rs->n; i++) {
		if (chs[i].pos <= n->pos)
			continue;
		rc = process_change(&b, rs, &chs[i]);
		if (!rc && b.n_rows >= TXN_MAX_ROWS)
			rc = batch_commit(&b, chs[i].pos);
		if (!rc)
			n->pos = chs[i].pos;
	}
	if (!rc)
		rc = batch_commit(&b, last_pos); /* rolls back when it fails */
	if (!rc) {
		if (last_pos > n->pos)
			n->pos = last_pos;
	} else {
		/* nothing since the last commit is kept (the disk is full, say): the cursor
		 * goes back there and the same changes are read again at the next tick */
		if (b.in_txn)
			sqlite3_exec(n->feed_db, "ROLLBACK", NULL, NULL, NULL);
		n->pos = n->saved_pos;
	}
	rt_nsvc_outbox_deinit(&b.out);
	rt_nsvc_rules_unref(rs);
	return rc;
}

/* Reads the log from the cursor until `until` (or the log's end). */
static void catch_up(struct rt_notify *n, uint64_t until)
{
	while (n->pos < until) {
		struct rt_change *chs;
		size_t cnt;
		uint64_t oldest = 0;
		struct rt_store_scan scan;
		if (rt_store_changes_after(n->store, n->pos, 512, &chs, &cnt, &oldest, &scan))
			return;
		if (oldest && n->pos + 1 < oldest && !n->is_gap_logged) {
			rt_warn("notify: changes %llu to %llu left the retained log before they were "
				"turned into notifications",
				(unsigned long long)n->pos + 1, (unsigned long long)oldest - 1);
			n->is_gap_logged = true;
		}
		int rc = process(n, chs, cnt, scan.last_pos);
		rt_store_changes_free(chs, cnt);
		if (rc || scan.n_rows < 512)
			return;
	}
}

void rt_notify_apply(struct rt_notify *n, const struct rt_change *chs, size_t n_chs,
		     uint64_t after, uint64_t last_pos)
{
	if (n->pos < after)
		catch_up(n, after);
	if (n->pos < after)
		return; /* the database failed: the next tick catches up */
	process(n, chs, n_chs, last_pos);
}

/* Releases held notifications whose quiet hours are over. */
static void release_held(struct rt_notify *n, int64_t now)
{
	char sql[600];
	snprintf(sql, sizeof sql,
		 "SELECT %s FROM _rtsync_notifications WHERE delivered = 0 AND deliver_at <= ? "
		 "ORDER BY deliver_at, id LIMIT %d",
		 rt_nsvc_columns, RELEASE_MAX);
	if (rt_nsvc_exec(n->feed_db, "BEGIN IMMEDIATE"))
		return;
	sqlite3_stmt *st = rt_nsvc_prepare(n->feed_db, sql);
	struct rt_nsvc_outbox o;
	rt_nsvc_outbox_init(&o);
	json_t *ids = json_array();
	if (st) {
		sqlite3_bind_int64(st, 1, now);
		while (sqlite3_step(st) == SQLITE_ROW) {
			json_t *row = rt_nsvc_row_json(st);
			json_array_append(ids, json_object_get(row, "id"));
			if (json_is_null(json_object_get(row, "parent_id")))
				outbox_add(&o, json_string_value(json_object_get(row, "user_id")),
					   "notification", json_pack("{s:o}", "notification", row));
			else
				json_decref(row);
		}
		sqlite3_finalize(st);
	}
	int rc = 0;
	sqlite3_stmt *up =
		rt_nsvc_prepare(n->feed_db, "UPDATE _rtsync_notifications SET delivered = 1 WHERE "
					    "id = ?");
	size_t i;
	json_t *id;
	json_array_foreach(ids, i, id) {
		if (!up || rc)
			break;
		sqlite3_bind_int64(up, 1, json_integer_value(id));
		rc = sqlite3_step(up) == SQLITE_DONE ? 0 : -1;
		sqlite3_reset(up);
	}
	sqlite3_finalize(up);
	rt_nsvc_outbox_count(&o, n->feed_db, now);
	if (!rc && !rt_nsvc_exec(n->feed_db, "COMMIT")) {
		uint64_t released = json_array_size(ids);
		uint64_t held = atomic_load(&n->n_held);
		atomic_store(&n->n_held, held > released ? held - released : 0);
		rt_nsvc_outbox_flush(n, &o);
	} else {
		sqlite3_exec(n->feed_db, "ROLLBACK", NULL, NULL, NULL);
	}
	json_decref(ids);
	rt_nsvc_outbox_deinit(&o);
}

static void prune(struct rt_notify *n, int64_t now)
{
	char sql[400];
	if (n->retain_ms) {
		snprintf(sql, sizeof sql,
			 "DELETE FROM _rtsync_notifications WHERE created_at < %lld AND "
			 "(parent_id IS NOT NULL OR updated_at < %lld)",
			 (long long)(now - (int64_t)n->retain_ms),
			 (long long)(now - (int64_t)n->retain_ms));
		rt_nsvc_exec(n->feed_db, sql);
	}
	if (n->archive_after_ms) {
		snprintf(sql, sizeof sql,
			 "UPDATE _rtsync_notifications SET archived_at = %lld WHERE archived_at IS "
			 "NULL AND read_at IS NOT NULL AND read_at < %lld",
			 (long long)now, (long long)(now - (int64_t)n->archive_after_ms));
		rt_nsvc_exec(n->feed_db, sql);
	}
}

void rt_notify_tick(struct rt_notify *n, uint64_t last_pos)
{
	if (n->pos < last_pos)
		catch_up(n, last_pos);
	uint64_t now_mono = rt_mono_ms();
	if (n->pos != n->saved_pos && now_mono - n->saved_ms >= CURSOR_EVERY_MS) {
		if (!save_cursor(n->feed_db, n->pos))
			n->saved_pos = n->pos;
		n->saved_ms = now_mono;
	}
	if (now_mono - n->released_ms >= RELEASE_EVERY_MS) {
		release_held(n, n->now_ms());
		n->released_ms = now_mono;
	}
	if (now_mono - n->pruned_ms >= PRUNE_EVERY_MS) {
		prune(n, n->now_ms());
		n->pruned_ms = now_mono;
	}
}

uint64_t rt_notify_position(struct rt_notify *n)
{
	return n->pos;
}

void rt_notify_stats(struct rt_notify *n, uint64_t *n_written, uint64_t *n_pushed,
		     uint64_t *n_held)
{
	*n_written = atomic_load(&n->n_written);
	*n_pushed = atomic_load(&n->n_pushed);
	*n_held = atomic_load(&n->n_held);
}

/* ---- lifecycle ---- */

static int64_t wall_ms(void)
{
	return rt_wall_ms();
}

int rt_notify_new(const struct rt_notify_config *cfg, struct rt_store *store, struct rt_hub *hub,
		  struct rt_notify **out, char *err, size_t err_cap)
{
	struct rt_notify *n = rt_xcalloc(1, sizeof *n);
	n->store = store;
	n->hub = hub;
	n->now_ms = cfg->now_ms ? cfg->now_ms : wall_ms;
	n->retain_ms = cfg->retain_ms;
	n->archive_after_ms = cfg->archive_after_ms;
	n->rules_path = cfg->rules_path ? rt_xstrdup(cfg->rules_path) : NULL;
	pthread_mutex_init(&n->rules_mu, NULL);
	pthread_mutex_init(&n->api_mu, NULL);
	pthread_mutex_init(&n->prefs_mu, NULL);
	n->rules = rt_xcalloc(1, sizeof *n->rules);
	atomic_init(&n->rules->refs, 1);
	if (rt_nsvc_open_db(cfg->db_path, &n->feed_db, err, err_cap) ||
	    rt_nsvc_open_db(cfg->db_path, &n->api_db, err, err_cap))
		goto fail;
	char *msg = NULL;
	if (sqlite3_exec(n->feed_db, schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, err_cap, "notify tables: %s", msg ? msg : "?");
		sqlite3_free(msg);
		goto fail;
	}
	if (!read_cursor(n->feed_db, &n->pos)) {
		n->pos = rt_store_last_pos(store);
		if (save_cursor(n->feed_db, n->pos)) {
			snprintf(err, err_cap, "notify: cannot save the position");
			goto fail;
		}
	}
	n->saved_pos = n->pos;
	n->saved_ms = n->released_ms = n->pruned_ms = rt_mono_ms();
	sqlite3_stmt *st = rt_nsvc_prepare(n->feed_db, "SELECT count(*) FROM _rtsync_notifications"
						       " WHERE delivered = 0");
	if (st && sqlite3_step(st) == SQLITE_ROW)
		atomic_store(&n->n_held, (uint64_t)sqlite3_column_int64(st, 0));
	sqlite3_finalize(st);
	if (rt_notify_reload(n, err, err_cap))
		goto fail;
	*out = n;
	return 0;
fail:
	rt_notify_free(n);
	return -1;
}

void rt_notify_free(struct rt_notify *n)
{
	if (!n)
		return;
	if (n->feed_db && n->pos != n->saved_pos)
		save_cursor(n->feed_db, n->pos);
	sqlite3_close(n->feed_db);
	sqlite3_close(n->api_db);
	ruleset_unref(n->rules);
	prefs_cache_clear(n);
	pthread_mutex_destroy(&n->rules_mu);
	pthread_mutex_destroy(&n->api_mu);
	pthread_mutex_destroy(&n->prefs_mu);
	free(n->rules_path);
	free(n);
}
