/*
 * Notifications (docs/notifications.md): rules turn changes of the store into
 * notifications for users, the service role sends them directly, each user
 * keeps an inbox, and every connected session of a user gets them live on the
 * private channel `realtime:notifications:<user id>`.
 *
 * A rule names a table, the events it reacts to, a filter in the REST grammar
 * extended with `col=changed[.from.<v>][.to.<v>]`, its recipients (a column
 * holding user ids, a list, a REST-grammar query, or several of them), title,
 * message and link templates over the old and new row (`{{new.col}}`,
 * `{{old.col}}`, `{{table}}`, `{{event}}`; `{{count}}` in summaries), a type
 * (info, success, warning, error), a category, a priority (low, normal, high,
 * urgent) and an optional grouping window. Rules come from the rules file
 * (reloadable) and from the REST API (kept in the database).
 *
 * The service is a consumer of the change feed (realtime/changes.h): on the
 * change thread it reads the durable change log in position order from the
 * last position it turned into notifications, and writes each batch's
 * notifications together with that position in one transaction. A
 * notification is unique by (rule, change position, recipient), so a crash
 * at any point neither loses nor repeats one. After the commit it publishes
 * them through the hub (at most once live; the inbox is the record).
 *
 * Every user's preferences (muted categories, minimum priority, quiet hours,
 * per-type channels) apply to rule notifications and direct sends alike;
 * quiet hours hold a notification until they end, then it is delivered.
 *
 * Ownership: rt_notify owns its database connections, rules and caches;
 *            JSON handed in is borrowed, JSON handed out is a new reference.
 * Threads:   rt_notify_apply/rt_notify_tick on the change thread only;
 *            rt_notify_handle, rt_notify_send, rt_notify_counts and
 *            rt_notify_reload from any
 *            other thread (pool threads: they block on the database);
 *            rt_notify_new/free on the main thread.
 * Limits:    RT_NOTIFY_MAX_RULES rules, RT_NOTIFY_MAX_RECIPIENTS recipients
 *            per notification, RT_NOTIFY_MAX_TEMPLATE bytes per template,
 *            RT_NOTIFY_MAX_TITLE/MESSAGE/LINK bytes rendered, RT_NOTIFY_MAX_BODY
 *            bytes of a REST body, RT_NOTIFY_MAX_PAGE items per page.
 */
#ifndef RT_NOTIFY_NOTIFY_H
#define RT_NOTIFY_NOTIFY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realtime/hub.h"
#include "store/store.h"

#define RT_NOTIFY_MAX_RULES 256
#define RT_NOTIFY_MAX_RECIPIENTS RT_STORE_MAX_ROWS
#define RT_NOTIFY_MAX_USER_ID 128
#define RT_NOTIFY_MAX_NAME 64
#define RT_NOTIFY_MAX_TEMPLATE 2048
#define RT_NOTIFY_MAX_TITLE 256
#define RT_NOTIFY_MAX_MESSAGE 2048
#define RT_NOTIFY_MAX_LINK 2048
#define RT_NOTIFY_MAX_DATA 8192
#define RT_NOTIFY_MAX_BODY (256 * 1024)
#define RT_NOTIFY_MAX_PAGE 200
#define RT_NOTIFY_MAX_WINDOW_MS (24 * 3600 * 1000)

/* The per-user channel's sub-topic prefix: realtime:notifications:<user id>. */
#define RT_NOTIFY_TOPIC_PREFIX "notifications:"

struct rt_notify;

struct rt_notify_config {
	const char *db_path;    /* the SQLite file that holds the tables (the store's
				 * database, or the PostgreSQL store's change log) */
	const char *rules_path; /* JSON rules file (may be NULL) */
	uint64_t retain_ms;     /* notifications older than this are deleted (0: kept) */
	uint64_t archive_after_ms; /* read ones older than this are archived (0: never) */
	int64_t (*now_ms)(void);   /* wall clock (NULL: the real one); tests set it */
};

/*
 * Opens the service over store (changes, recipient queries) and hub
 * (delivery): creates its tables when missing and loads the rules file (an
 * invalid file fails the open). The first open starts at the store's newest
 * position: no notification for older changes. Returns 0, or -1 with the
 * reason in err.
 */
int rt_notify_new(const struct rt_notify_config *cfg, struct rt_store *store, struct rt_hub *hub,
		  struct rt_notify **out, char *err, size_t err_cap);
void rt_notify_free(struct rt_notify *n);

/* Reads the rules file again: its rules replace those it held before (REST
 * rules stay). Returns 0, or -1 with the reason in err (nothing changes). */
int rt_notify_reload(struct rt_notify *n, char *err, size_t err_cap);

/* ---- the change consumer (change thread) ---- */

/* A batch the feed read: changes after `after`, up to last_pos. */
void rt_notify_apply(struct rt_notify *n, const struct rt_change *chs, size_t n_chs,
		     uint64_t after, uint64_t last_pos);
/* Catches up with the log, releases held notifications, prunes (every few ms). */
void rt_notify_tick(struct rt_notify *n, uint64_t last_pos);
/* The last change position turned into notifications. */
uint64_t rt_notify_position(struct rt_notify *n);

/* ---- the REST face (docs/notifications.md), pool threads ---- */

/* Who calls: the verified token's role and subject. */
struct rt_notify_caller {
	const char *role; /* never NULL */
	const char *sub;  /* NULL when the token has none */
};

/*
 * Serves one request of /notify/v1/<path> (path without that prefix, query
 * the raw query string or NULL, body body_len bytes or NULL). Returns the
 * HTTP status; *out (may stay NULL for 204) is the JSON answer, or
 * {code, message, details, hint} on an error.
 */
int rt_notify_handle(struct rt_notify *n, const struct rt_notify_caller *who, int method,
		     const char *path, const char *query, const char *body, size_t body_len,
		     json_t **out);

/*
 * A direct send (service role): req is {"users": [...] | "user": id | "query":
 * {...} | "recipients": spec, "title", "message"?, "type"?, "category"?,
 * "priority"?, "link"?, "data"?, "key"?}. With a key, a send repeated with
 * the same key notifies nobody twice. Returns the HTTP status (201 with
 * *out {"ids": [...], "recipients": n}; 4xx with an error object).
 */
int rt_notify_send(struct rt_notify *n, const json_t *req, json_t **out);

/*
 * The inbox counts of user, as GET /notify/v1/inbox/count answers them:
 * returns 200 with *out {"unread", "total", "held"}, or 400 (not a user id)
 * or 500 with an error object. The socket pushes them as `inbox_state`
 * right after a join of the user's channel.
 */
int rt_notify_counts(struct rt_notify *n, const char *user, json_t **out);

/* Counters: notifications written so far, pushed live, held now. */
void rt_notify_stats(struct rt_notify *n, uint64_t *n_written, uint64_t *n_pushed,
		     uint64_t *n_held);

#endif
