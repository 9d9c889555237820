/*
 * The change log both stores keep in SQLite (store_int.h): the embedded
 * store's _rtsync_changes, filled by its triggers, and the PostgreSQL
 * store's retained log, filled from logical replication. Both tables have
 * the columns pos, tbl, op, new, old, ts.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "store/store_int.h"

int rt_store_log_read(struct rt_store *base, sqlite3 *db, sqlite3_stmt **cache, const char *table,
		      bool has_txn, uint64_t after, size_t max, struct rt_change **out, size_t *n,
		      uint64_t *oldest, struct rt_store_scan *scan, rt_store_log_row_fn *row)
{
	char sql[160];
	sqlite3_stmt *st;
	*out = NULL;
	*n = 0;
	scan->n_rows = 0;
	scan->last_pos = after;
	if (oldest) {
		*oldest = 0;
		snprintf(sql, sizeof sql, "SELECT min(pos) FROM %s", table);
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
			if (sqlite3_step(st) == SQLITE_ROW)
				*oldest = (uint64_t)sqlite3_column_int64(st, 0);
			sqlite3_finalize(st);
		}
	}
	snprintf(sql, sizeof sql,
		 "SELECT pos, tbl, op, new, old, ts, %s FROM %s WHERE pos > ? ORDER BY pos LIMIT ?",
		 has_txn ? "lsn, xid" : "0, 0", table);
	if (cache && *cache) {
		st = *cache;
	} else if (sqlite3_prepare_v3(db, sql, -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &st,
				      NULL) != SQLITE_OK) {
		rt_error("store: reading changes: %s", sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	struct rt_change *c = rt_xcalloc(max ? max : 1, sizeof *c);
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		scan->n_rows++;
		scan->last_pos = (uint64_t)sqlite3_column_int64(st, 0);
		const struct rt_store_table *t =
			rt_store_table(base, NULL, (const char *)sqlite3_column_text(st, 1));
		if (!t)
			continue; /* a table created after start: not published */
		const char *op = (const char *)sqlite3_column_text(st, 2);
		enum rt_change_type type;
		if (op && !strcmp(op, "INSERT"))
			type = RT_CHANGE_INSERT;
		else if (op && !strcmp(op, "UPDATE"))
			type = RT_CHANGE_UPDATE;
		else if (op && !strcmp(op, "DELETE"))
			type = RT_CHANGE_DELETE;
		else
			continue; /* not a row a trigger or the replication writes */
		struct rt_change *ch = &c[k++];
		ch->pos = scan->last_pos;
		ch->table = t;
		ch->type = type;
		ch->record = row(t, (const char *)sqlite3_column_text(st, 3));
		ch->old_record = row(t, (const char *)sqlite3_column_text(st, 4));
		ch->commit_ms = sqlite3_column_int64(st, 5);
		ch->lsn = (uint64_t)sqlite3_column_int64(st, 6);
		ch->xid = (uint32_t)sqlite3_column_int64(st, 7);
	}
	if (step != SQLITE_DONE)
		rt_error("store: reading changes: %s", sqlite3_errmsg(db));
	if (cache) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		*cache = st;
	} else {
		sqlite3_finalize(st);
	}
	*out = c;
	*n = k;
	return step == SQLITE_DONE ? 0 : -1;
}

void rt_store_log_prune(sqlite3 *db, const char *table, uint64_t retain_count, uint64_t retain_ms)
{
	char sql[160];
	snprintf(sql, sizeof sql, "DELETE FROM %s WHERE pos <= (SELECT max(pos) FROM %s) - ? OR ts < ?",
		 table, table);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)retain_count);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(rt_wall_ms() - (int64_t)retain_ms));
	if (sqlite3_step(st) != SQLITE_DONE)
		rt_warn("store: pruning the change log: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
}
