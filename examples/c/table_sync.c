/*
 * librtsync example: an offline-first copy of one table. Prints the table's
 * rows as they change, and takes writes from standard input, one per line:
 *   put {"id":7,"title":"buy milk"}     (upsert: the whole row)
 *   set {"id":7,"done":true}            (update: the key and the changed columns)
 *   del {"id":7}                        (delete)
 *   list
 * Writes show at once (marked "pending") and are kept in TABLE.outbox until
 * the server answers, so they survive the server being down and this
 * program being stopped: run it again and they are sent. A conflicting edit
 * of the same row by someone else is settled last-write-wins.
 * Build: cc table_sync.c $(pkg-config --cflags --libs librtsync)
 *   RTSYNC_URL=http://127.0.0.1:4000 RTSYNC_APIKEY=$(rtsync token) ./table_sync todos
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rtsync/rtsync.h>
#include <rtsync/table.h>

static void on_ready(void *user, struct rt_table *t)
{
	(void)user;
	printf("loaded: %zu rows, %zu writes waiting\n", rt_table_count(t), rt_table_pending(t));
}

static void on_row(void *user, struct rt_table *t, const struct rt_table_row_event *ev)
{
	(void)user;
	(void)t;
	static const char *const causes[] = {"remote", "local", "confirmed", "rolled back"};
	printf("%s %s%s (%s)\n", ev->key, ev->row ? ev->row : "deleted",
	       ev->is_pending ? " pending" : "", causes[ev->cause]);
}

static void on_write(void *user, struct rt_table *t, const struct rt_table_write_event *ev)
{
	(void)user;
	(void)t;
	if (ev->state == RT_WRITE_CONFIRMED)
		printf("write %.8s… %s\n", ev->id, ev->outcome);
	else if (ev->state == RT_WRITE_ROLLED_BACK)
		printf("write %.8s… refused: %s (%s)\n", ev->id, ev->reason ? ev->reason : "",
		       ev->code ? ev->code : "");
}

static void on_error(void *user, struct rt_table *t, int rc, const char *message)
{
	(void)user;
	(void)t;
	fprintf(stderr, "table: %s: %s\n", rt_strerror(rc), message);
}

/* One command line; returns 0 or an RT_E* code. */
static int command(struct rt_table *t, char *line)
{
	char *arg = strchr(line, ' ');
	if (arg)
		*arg++ = 0;
	if (!strcmp(line, "list")) {
		char *rows;
		int rc = rt_table_rows(t, &rows);
		if (!rc) {
			printf("%s\n", rows);
			free(rows); /* no allocator given: the C library's */
		}
		return rc;
	}
	if (!arg)
		return RT_EINVAL;
	if (!strcmp(line, "put"))
		return rt_table_upsert(t, arg, RT_STRATEGY_DEFAULT, NULL);
	if (!strcmp(line, "set"))
		return rt_table_update(t, arg, RT_STRATEGY_DEFAULT, NULL);
	if (!strcmp(line, "del"))
		return rt_table_delete(t, arg, RT_STRATEGY_DEFAULT, NULL);
	return RT_EINVAL;
}

int main(int argc, char **argv)
{
	const char *url = getenv("RTSYNC_URL"), *key = getenv("RTSYNC_APIKEY");
	if (argc != 2 || !key) {
		fprintf(stderr, "usage: RTSYNC_APIKEY=KEY [RTSYNC_URL=URL] %s TABLE\n", argv[0]);
		return 2;
	}
	char outbox[256];
	snprintf(outbox, sizeof outbox, "%s.outbox", argv[1]);
	struct rt_client_options o = {.url = url ? url : "http://127.0.0.1:4000", .apikey = key};
	struct rt_client *client;
	int rc = rt_client_new(&o, &client);
	if (rc) {
		fprintf(stderr, "rt_client_new: %s\n", rt_strerror(rc));
		return 1;
	}
	struct rt_table_options to = {
		.table = argv[1],
		.outbox_path = outbox,
		.default_strategy = RT_STRATEGY_LWW,
		.cb = {.on_ready = on_ready, .on_row = on_row, .on_write = on_write, .on_error = on_error},
	};
	struct rt_table *t;
	if ((rc = rt_table_open(client, &to, &t))) {
		fprintf(stderr, "rt_table_open: %s\n", rt_strerror(rc));
		rt_client_free(client);
		return 1;
	}
	if ((rc = rt_client_connect(client)) || (rc = rt_client_start_thread(client))) {
		fprintf(stderr, "%s\n", rt_strerror(rc));
		rt_table_close(t);
		rt_client_free(client);
		return 1;
	}
	char line[4096];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\r\n")] = 0;
		if (*line && (rc = command(t, line)))
			fprintf(stderr, "%s: %s\n", line, rt_strerror(rc));
	}
	rt_client_stop_thread(client);
	rt_table_close(t); /* unanswered writes stay in the outbox for the next run */
	rt_client_free(client);
	return 0;
}
