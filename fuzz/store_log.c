/*
 * Fuzz target: the embedded store's change log read back from disk
 * (rt_store_changes_after over _rtsync_changes, src/store/log.c and the
 * typed rows of src/store/sqlite.c). The log is a table in the database file,
 * which other writers (the sqlite3 shell, another process) can reach: its
 * rows are input like any other.
 *
 * Input layout: rows separated by 0x1e, each tbl 0x1f op 0x1f new 0x1f old
 * (a missing field is SQL NULL; "new"/"old" are the row JSON texts the
 * triggers write). They are inserted through a second connection, as
 * another process would, then read by the store.
 *
 * Checked: every change read has a known table, a type in range and a
 * position above the last one, and as many are read as rows were written
 * with a known table and an op of INSERT, UPDATE or DELETE; its rows are NULL or JSON objects holding
 * only the table's columns; the changes then go through filters as the matcher runs
 * them (rt_filter_match), which must not fail on anything the log holds. The
 * store is created once per process (a temporary directory, removed at
 * exit).
 */
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "realtime/filter.h"
#include "store/store.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, title text, done boolean, "
	"score double precision, meta jsonb, n integer, at timestamptz);\n"
	"CREATE TABLE IF NOT EXISTS u (id integer PRIMARY KEY, v text);\n";

static char dir[64];
static struct rt_store *store;
static sqlite3 *raw; /* the other writer */
static uint64_t last;
static struct rt_filter *filters[4];

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "store_log: cannot remove %s\n", dir);
}

static const char *type_of(const char *column, void *ctx)
{
	const struct rt_store_table *t = ctx;
	const struct rt_store_column *c = rt_store_column(t, column);
	return c ? c->type : NULL;
}

static void setup(void)
{
	/* memory-backed when the machine has it: SQLite commits cost no fsync */
	snprintf(dir, sizeof dir, "%s/rtsync-fuzz-log-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	CHECK(mkdtemp(dir));
	atexit(remove_dir);
	char path[128], err[512] = "";
	snprintf(path, sizeof path, "%s/db.sqlite", dir);
	if (rt_store_open_sqlite(path, schema, 1000000, 0, &store, err, sizeof err)) {
		fprintf(stderr, "store_log: %s\n", err);
		abort();
	}
	CHECK(sqlite3_open(path, &raw) == SQLITE_OK);
	sqlite3_busy_timeout(raw, 5000);
	CHECK(sqlite3_exec(raw, "PRAGMA synchronous=OFF", NULL, NULL, NULL) == SQLITE_OK);
	static const char *const texts[] = {"title=eq.a", "score=gt.1.5", "done=is.true",
					    "n=in.(1,2,3)"};
	for (size_t i = 0; i < 4; i++)
		CHECK(rt_filter_parse(texts[i], strlen(texts[i]), &filters[i], err, sizeof err) == 0);
}

static void check_row(const struct rt_store_table *t, const json_t *row)
{
	if (!row)
		return;
	CHECK(json_is_object(row));
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)row, k, v) {
		const struct rt_store_column *c = rt_store_column(t, k);
		CHECK(c);
		CHECK(v);
	}
	for (size_t i = 0; i < 4; i++)
		(void)rt_filter_match(filters[i], row, type_of, (void *)t);
}

/* Inserts one row of the log; fields are NULL-separated copies. Returns
 * whether it went in (tbl and op are NOT NULL). */
static bool insert(char *const f[4])
{
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(raw,
				 "INSERT INTO _rtsync_changes (tbl, op, new, old, ts) "
				 "VALUES (?, ?, ?, ?, 1700000000000)",
				 -1, &st, NULL) == SQLITE_OK);
	for (int i = 0; i < 4; i++)
		if (f[i])
			sqlite3_bind_text(st, i + 1, f[i], -1, SQLITE_STATIC);
	bool is_in = sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	return is_in;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!store)
		setup();
	if (size > 16384)
		return 0;
	char *copy = malloc(size + 1);
	CHECK(copy);
	memcpy(copy, data, size);
	copy[size] = '\0';
	CHECK(sqlite3_exec(raw, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
	size_t n_rows = 0, n_valid = 0;
	for (char *p = copy; p && n_rows < 64;) {
		char *end = strchr(p, 0x1e);
		if (end)
			*end++ = '\0';
		char *f[4] = {p, NULL, NULL, NULL};
		for (int i = 1; i < 4 && f[i - 1]; i++) {
			char *sep = strchr(f[i - 1], 0x1f);
			if (sep) {
				*sep = '\0';
				f[i] = sep + 1;
			}
		}
		if (!insert(f)) {
			p = end;
			continue;
		}
		n_rows++;
		if (f[1] && (!strcmp(f[0], "t") || !strcmp(f[0], "u")) &&
		    (!strcmp(f[1], "INSERT") || !strcmp(f[1], "UPDATE") || !strcmp(f[1], "DELETE")))
			n_valid++;
		p = end;
	}
	CHECK(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
	free(copy);

	struct rt_change *chs;
	size_t n;
	uint64_t oldest;
	struct rt_store_scan scan;
	CHECK(rt_store_changes_after(store, last, 128, &chs, &n, &oldest, &scan) == 0);
	CHECK(n == n_valid && scan.n_rows == n_rows);
	uint64_t prev = last;
	for (size_t i = 0; i < n; i++) {
		const struct rt_change *c = &chs[i];
		CHECK(c->table && c->pos > prev);
		CHECK(c->type == RT_CHANGE_INSERT || c->type == RT_CHANGE_UPDATE ||
		      c->type == RT_CHANGE_DELETE);
		check_row(c->table, c->record);
		check_row(c->table, c->old_record);
		prev = c->pos;
	}
	if (scan.n_rows)
		last = scan.last_pos;
	rt_store_changes_free(chs, n);
	/* keep the file small: what was read goes, now and then */
	static unsigned runs;
	if (++runs % 256 == 0)
		CHECK(sqlite3_exec(raw, "DELETE FROM _rtsync_changes", NULL, NULL, NULL) ==
		      SQLITE_OK);
	return 0;
}
