/*
 * librtsync's notifications: one user's notifications live, and their inbox
 * (docs/notifications.md).
 *
 * An inbox joins the user's private channel "realtime:notifications:<user
 * id>" on a client whose token is that user's (its JWT sub is the user id)
 * or the service role's, and reports the server's events: a new
 * notification (also a summary that grew, or one released when quiet hours
 * end), a change of the inbox's state (read, unread, archived, deleted,
 * read-all: the unread count on every session of the user), and new
 * preferences. Right after every join and rejoin the server sends the inbox
 * counts, so the unread badge is right without a request. Live delivery is
 * at most once: a client that shows the list itself reads its first page
 * (rt_inbox_list()) when on_state reports is_join after a rejoin.
 *
 * The inbox operations are blocking HTTP requests to the server's
 * /notify/v1 routes, made with libcurl: list with paging, one notification,
 * a summary's items, the counts, mark read, unread, archived, unarchived,
 * read-all, delete, and the preferences. They carry the client's current
 * access token (the apikey without one) and ?user_id=<user id>, so a
 * service-role client acts on that user's inbox. A service-role client
 * also sends notifications over its socket with rt_inbox_send().
 *
 * Ownership: an inbox belongs to its client and must be closed
 *            (rt_inbox_close()) before the client is freed. Strings passed to
 *            callbacks live until the callback returns. JSON texts returned
 *            in *json are the caller's, freed with the client's allocator
 *            (free() without one). libcurl allocates through its own
 *            functions (malloc/free).
 * Threads:   callbacks run on the client's loop thread, one at a time, like
 *            the client's. rt_inbox_open() and rt_inbox_close() must not be
 *            called from a callback. The REST functions may be called from
 *            any thread, several at a time; from a callback they hold up the
 *            client's loop for the request, so call them from another thread
 *            where that matters.
 * Limits:    user ids of 1 to 128 bytes; answers of at most 16 MiB; each
 *            request gives up after timeout_ms (default 10000).
 */
#ifndef RTSYNC_NOTIFY_H
#define RTSYNC_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rtsync/rtsync.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rt_inbox;

#define RT_INBOX_MAX_USER_ID 128

/* A notification as the server sent it. Texts are never NULL ("" when the
 * notification has none) except rule (NULL for a direct send). */
struct rt_inbox_notification {
	int64_t id;
	const char *title;
	const char *message;
	const char *link;
	const char *type;     /* "info", "success", "warning", "error" */
	const char *category;
	const char *priority; /* "low", "normal", "high", "urgent" */
	const char *rule;
	bool is_summary;      /* a group's summary; count is how many it holds */
	long long count;
	bool is_read;
	int64_t created_at;   /* ms since the epoch */
	const char *json;     /* the whole notification object (data, times, …) */
};

/* A `notification` event. */
struct rt_inbox_event {
	const struct rt_inbox_notification *notification;
	long long unread;     /* the user's unread count with it */
	const char *replaces; /* JSON array of the ids this summary took over, or NULL */
	const char *payload;  /* the event's payload as received (JSON text) */
};

/* An `inbox_state` event: after the join, or after a change of state. */
struct rt_inbox_state {
	long long unread;
	bool is_join;         /* the counts sent right after a (re)join: total and held set */
	long long total;      /* is_join: notifications in the inbox (not archived) */
	long long held;       /* is_join: held by quiet hours */
	bool is_all_read;     /* after read-all (category: the one it covered, or NULL) */
	const char *category;
	const char *changed;  /* JSON array of the notifications changed ({"id","deleted":true}
				 for a deleted one), or NULL */
	const char *payload;  /* as received (JSON text) */
};

struct rt_inbox_callbacks {
	void (*on_notification)(void *user, struct rt_inbox *ib, const struct rt_inbox_event *ev);
	void (*on_state)(void *user, struct rt_inbox *ib, const struct rt_inbox_state *st);
	/* The user's preferences after a change, as a JSON object text. */
	void (*on_preferences)(void *user, struct rt_inbox *ib, const char *preferences);
	/* The channel's state (joined, refused with the server's reason, …). */
	void (*on_status)(void *user, struct rt_inbox *ib, const struct rt_channel_status *st);
};

struct rt_inbox_options {
	const char *user_id;  /* the user (the token's JWT sub); required */
	/* The server's HTTP base URL ("http://host:port", with a path prefix
	 * behind a proxy; https:// works too). NULL: the client's URL, as
	 * http:// and without its realtime path. */
	const char *rest_url;
	unsigned timeout_ms;  /* per REST request (default 10000) */
	struct rt_inbox_callbacks cb; /* each may be NULL */
	void *user;
};

/*
 * Opens the inbox of opt->user_id on client c: joins the user's channel
 * (now if connected, else when the connection opens). Returns 0 and sets
 * *out, RT_EINVAL (no user id, one over RT_INBOX_MAX_USER_ID bytes or not
 * UTF-8, a rest_url that is not http:// or https://), RT_EEXISTS (c already
 * has that channel), RT_ENOMEM. Not from a callback.
 */
RT_API int rt_inbox_open(struct rt_client *c, const struct rt_inbox_options *opt,
			 struct rt_inbox **out);

/* Leaves the channel and frees the inbox. NULL does nothing. Not from a
 * callback, nor while a REST call on it is under way. */
RT_API void rt_inbox_close(struct rt_inbox *ib);

/* The last unread count the server sent (-1 before the first). */
RT_API long long rt_inbox_unread(struct rt_inbox *ib);

/*
 * REST. Every call returns 0 on a 2xx answer, with *json (json may be NULL)
 * the answer's JSON text (NULL for an answer without a body). On an error
 * answer it returns RT_EINVAL (400), RT_EAUTH (401, 403), RT_ENOTFOUND
 * (404), RT_EEXISTS (409), RT_ETOOBIG (413), RT_ELIMIT (429) or RT_EPROTO
 * (any other status, or an answer that is not JSON), with *json the server's
 * error object {"code", "message", "details", "hint"}. Without an answer:
 * RT_ETIMEDOUT, RT_EIO (cannot connect, connection lost), RT_ENOMEM (*json
 * NULL).
 */

/* Which notifications rt_inbox_list() returns; zeroed: the first page of
 * everything not archived, 50 at most. */
struct rt_inbox_query {
	const char *status;   /* "unread", "read" or "all" (NULL: all) */
	const char *archived; /* "false" (NULL), "true" or "all" */
	const char *category; /* NULL: every category */
	unsigned limit;       /* 1 to 200 (0: 50) */
	int64_t before;       /* the page after the one that ended at this id:
				 the previous answer's next_before (0: the first) */
};

/* The inbox, newest first: {"items": [...], "next_before": id | null,
 * "unread": n}. q may be NULL. */
RT_API int rt_inbox_list(struct rt_inbox *ib, const struct rt_inbox_query *q, char **json);

/* The items of summary id, newest first, paged like the list. */
RT_API int rt_inbox_items(struct rt_inbox *ib, int64_t id, unsigned limit, int64_t before,
			  char **json);

/* One notification. */
RT_API int rt_inbox_get(struct rt_inbox *ib, int64_t id, char **json);

struct rt_inbox_counts {
	long long unread, total, held;
};

/* The counts (GET inbox/count); counts may be NULL. */
RT_API int rt_inbox_count(struct rt_inbox *ib, struct rt_inbox_counts *counts, char **json);

enum rt_inbox_mark {
	RT_INBOX_READ,
	RT_INBOX_UNREAD,
	RT_INBOX_ARCHIVE,
	RT_INBOX_UNARCHIVE,
};

/* Changes notification id's state; *json is the notification after it. The
 * user's sessions (this one too) get an inbox_state event. */
RT_API int rt_inbox_mark(struct rt_inbox *ib, int64_t id, enum rt_inbox_mark what, char **json);

/* Marks everything read (only category when not NULL): {"updated", "unread"}. */
RT_API int rt_inbox_read_all(struct rt_inbox *ib, const char *category, char **json);

/* Deletes notification id (a summary with its items). */
RT_API int rt_inbox_delete(struct rt_inbox *ib, int64_t id, char **json);

/* The preferences (docs/notifications.md), and replacing them with prefs (a
 * JSON object text; missing members take their defaults): *json is the
 * preferences in force. */
RT_API int rt_inbox_preferences_get(struct rt_inbox *ib, char **json);
RT_API int rt_inbox_preferences_put(struct rt_inbox *ib, const char *prefs, char **json);

/*
 * A direct send over the socket (the service role): send is the body of
 * POST /notify/v1/send as a JSON object text ({"users": [...] | "user" |
 * "query" | "recipients", "title", "message"?, "type"?, "category"?,
 * "priority"?, "link"?, "data"?, "key"?}), pushed as the event `notify` on
 * ch, any channel joined with a service_role token. Sent now if the channel
 * is joined, else held with its other pushes. The answer arrives in the
 * channel's on_write with *id: rc 0 and response {"ids": [...],
 * "recipients": n}, or RT_EPROTO and {"reason", "code"} (RTS400 a bad body,
 * RTS403 not the service role, RTS404 no notifications service), or
 * RT_ETIMEDOUT / RT_ECLOSED (sent again with a "key", it notifies nobody
 * twice). Returns 0, RT_EINVAL (not a JSON object), RT_ECLOSED, RT_ELIMIT,
 * RT_ENOMEM.
 */
RT_API int rt_inbox_send(struct rt_client_channel *ch, const char *send, uint64_t *id);

#ifdef __cplusplus
}
#endif

#endif
