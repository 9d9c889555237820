#include "client/outbox.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define BUSY_TIMEOUT_MS 5000
#define MAX_KEY 255

struct rt_outbox {
	struct rt_outbox_alloc alloc;
	sqlite3 *db;
	sqlite3_stmt *push, *front, *remove, *defer, *count, *next, *replace;
};

static void *ob_realloc(struct rt_outbox_alloc *a, void *p, size_t size)
{
	if (a->realloc)
		return a->realloc(a->ud, p, size);
	if (!size) {
		free(p);
		return NULL;
	}
	return realloc(p, size);
}

static char *ob_strdup(struct rt_outbox_alloc *a, const char *s, size_t len)
{
	char *d = ob_realloc(a, NULL, len + 1);
	if (d) {
		memcpy(d, s, len);
		d[len] = 0;
	}
	return d;
}

static int io_rc(int sqlite_rc)
{
	return sqlite_rc == SQLITE_NOMEM ? RT_ENOMEM : RT_EIO;
}

int rt_outbox_open(const char *path, const struct rt_outbox_alloc *alloc, struct rt_outbox **out,
		   char *err, size_t err_cap)
{
	struct rt_outbox_alloc a = alloc ? *alloc : (struct rt_outbox_alloc){0};
	struct rt_outbox *o = ob_realloc(&a, NULL, sizeof *o);
	if (!o)
		return RT_ENOMEM;
	memset(o, 0, sizeof *o);
	o->alloc = a;
	int rc = sqlite3_open_v2(path, &o->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK)
		goto err;
	sqlite3_busy_timeout(o->db, BUSY_TIMEOUT_MS);
	/* WAL with synchronous=FULL: a push is on disk when it returns. */
	rc = sqlite3_exec(o->db,
			  "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			  "CREATE TABLE IF NOT EXISTS rtsync_outbox ("
			  " seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,"
			  " payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
			  " not_before_ms INTEGER NOT NULL DEFAULT 0)",
			  NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto err;
	static const char *const sql[] = {
		"INSERT INTO rtsync_outbox (key, payload) VALUES (?, ?)",
		"SELECT seq, key, payload, attempts, not_before_ms FROM rtsync_outbox "
		"ORDER BY seq LIMIT 1",
		"DELETE FROM rtsync_outbox WHERE seq = ?",
		"UPDATE rtsync_outbox SET attempts = attempts + 1, not_before_ms = ? WHERE seq = ?",
		"SELECT count(*) FROM rtsync_outbox",
		"SELECT seq, key, payload, attempts, not_before_ms FROM rtsync_outbox "
		"WHERE seq > ? ORDER BY seq LIMIT 1",
		"UPDATE rtsync_outbox SET key = ?, payload = ?, attempts = 0, not_before_ms = 0 "
		"WHERE seq = ?",
	};
	sqlite3_stmt **st[] = {&o->push,  &o->front, &o->remove, &o->defer,
			       &o->count, &o->next,  &o->replace};
	for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
		rc = sqlite3_prepare_v3(o->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, st[i], NULL);
		if (rc != SQLITE_OK)
			goto err;
	}
	*out = o;
	return 0;
err:
	if (err_cap)
		snprintf(err, err_cap, "outbox %s: %s", path,
			 o->db ? sqlite3_errmsg(o->db) : sqlite3_errstr(rc));
	rc = io_rc(rc);
	rt_outbox_close(o);
	return rc;
}

void rt_outbox_close(struct rt_outbox *o)
{
	if (!o)
		return;
	sqlite3_finalize(o->push);
	sqlite3_finalize(o->front);
	sqlite3_finalize(o->remove);
	sqlite3_finalize(o->defer);
	sqlite3_finalize(o->count);
	sqlite3_finalize(o->next);
	sqlite3_finalize(o->replace);
	sqlite3_close(o->db);
	struct rt_outbox_alloc a = o->alloc;
	ob_realloc(&a, o, 0);
}

/* Steps a statement that returns no row, then resets it. */
static int step_done(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE)
		return sqlite3_changes(db) ? 0 : RT_ENOTFOUND;
	if (rc == SQLITE_CONSTRAINT)
		return RT_EEXISTS;
	return io_rc(rc);
}

int rt_outbox_push(struct rt_outbox *o, const char *key, const char *payload, int64_t *seq)
{
	size_t key_len = key ? strlen(key) : 0;
	size_t len = payload ? strlen(payload) : 0;
	if (!key_len || key_len > MAX_KEY || !payload || len > RT_OUTBOX_MAX_PAYLOAD)
		return RT_EINVAL;
	sqlite3_bind_text(o->push, 1, key, (int)key_len, SQLITE_STATIC);
	sqlite3_bind_text(o->push, 2, payload, (int)len, SQLITE_STATIC);
	int rc = step_done(o->db, o->push);
	if (!rc && seq)
		*seq = sqlite3_last_insert_rowid(o->db);
	return rc;
}

/* Reads the row st is on (or finds none) into e and resets st. */
static int read_entry(struct rt_outbox *o, sqlite3_stmt *st, struct rt_outbox_entry *e)
{
	memset(e, 0, sizeof *e);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = RT_ENOTFOUND;
	} else if (rc == SQLITE_ROW) {
		e->seq = sqlite3_column_int64(st, 0);
		e->key = ob_strdup(&o->alloc, (const char *)sqlite3_column_text(st, 1),
				   (size_t)sqlite3_column_bytes(st, 1));
		e->payload = ob_strdup(&o->alloc, (const char *)sqlite3_column_text(st, 2),
				       (size_t)sqlite3_column_bytes(st, 2));
		e->attempts = (unsigned)sqlite3_column_int(st, 3);
		e->not_before_ms = sqlite3_column_int64(st, 4);
		rc = 0;
		if (!e->key || !e->payload) {
			rt_outbox_entry_deinit(o, e);
			rc = RT_ENOMEM;
		}
	} else {
		rc = io_rc(rc);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int rt_outbox_front(struct rt_outbox *o, struct rt_outbox_entry *e)
{
	return read_entry(o, o->front, e);
}

int rt_outbox_next(struct rt_outbox *o, int64_t after_seq, struct rt_outbox_entry *e)
{
	sqlite3_bind_int64(o->next, 1, after_seq);
	return read_entry(o, o->next, e);
}

int rt_outbox_replace(struct rt_outbox *o, int64_t seq, const char *key, const char *payload)
{
	size_t key_len = key ? strlen(key) : 0;
	size_t len = payload ? strlen(payload) : 0;
	if (!key_len || key_len > MAX_KEY || !payload || len > RT_OUTBOX_MAX_PAYLOAD)
		return RT_EINVAL;
	sqlite3_bind_text(o->replace, 1, key, (int)key_len, SQLITE_STATIC);
	sqlite3_bind_text(o->replace, 2, payload, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(o->replace, 3, seq);
	return step_done(o->db, o->replace);
}

void rt_outbox_entry_deinit(struct rt_outbox *o, struct rt_outbox_entry *e)
{
	e->key = ob_realloc(&o->alloc, e->key, 0);
	e->payload = ob_realloc(&o->alloc, e->payload, 0);
}

int rt_outbox_remove(struct rt_outbox *o, int64_t seq)
{
	sqlite3_bind_int64(o->remove, 1, seq);
	return step_done(o->db, o->remove);
}

int rt_outbox_defer(struct rt_outbox *o, int64_t seq, int64_t not_before_ms)
{
	sqlite3_bind_int64(o->defer, 1, not_before_ms);
	sqlite3_bind_int64(o->defer, 2, seq);
	return step_done(o->db, o->defer);
}

long rt_outbox_count(struct rt_outbox *o)
{
	long n = -1;
	if (sqlite3_step(o->count) == SQLITE_ROW)
		n = (long)sqlite3_column_int64(o->count, 0);
	sqlite3_reset(o->count);
	return n;
}
