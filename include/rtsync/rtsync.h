/*
 * librtsync: a C client for rtsync and Supabase Realtime (Phoenix Channels,
 * vsn 1.0.0 JSON over WebSocket). One struct rt_client owns one connection
 * and any number of channels; each channel can receive postgres_changes,
 * broadcast and presence, send broadcasts and presence updates, and keep
 * live queries' results (rtsync's extension, docs/live.md) locally. The
 * client keeps itself connected: heartbeats detect a dead server, reconnects
 * back off exponentially with full jitter, every channel is rejoined with the
 * position of the last change it saw, so the server replays what was missed.
 *
 * Driving it. Either from the application's own event loop:
 *     poll rt_client_fd() for POLLIN with timeout rt_client_timeout_ms(),
 *     then call rt_client_process(); repeat.
 * (the fd is an epoll descriptor; it works with poll, select, epoll and
 * libuv's uv_poll), or with rt_client_start_thread(), which runs that loop
 * on a thread the library owns. rt_client_run() is the loop for one turn.
 *
 * Callbacks. Every callback runs on the thread that calls rt_client_process()
 * (the library's own thread after rt_client_start_thread()), never two at a
 * time, and never from inside another API call. Pointers handed to a
 * callback are valid only during the call. Callbacks may call any function
 * of this API except rt_client_free() and rt_client_stop_thread().
 *
 * Ownership: rt_client_new() returns a client the caller frees with
 *            rt_client_free(), which also frees every channel still open.
 *            A channel belongs to its client; rt_channel_leave() ends it and
 *            the handle must not be used afterwards. Strings passed in are
 *            copied; the caller keeps its own.
 * Threads:   every function may be called from any thread (a recursive lock
 *            serialises them with the loop), except rt_client_free() and
 *            rt_client_stop_thread(), which must not run inside a callback or
 *            concurrently with another call on the same client.
 * Limits:    incoming messages over max_message_bytes close the connection;
 *            pushes made while a channel is not joined are held in one
 *            bounded buffer (max_buffered_pushes), beyond which sending fails
 *            with RT_ELIMIT and on_error reports the overflow; outgoing
 *            bytes waiting for the socket are bounded (max_output_bytes).
 *
 * Memory: every allocation of the library goes through the allocator given
 * in the options (default: realloc/free); when it fails, the call returns
 * RT_ENOMEM, or, inside the loop, on_error reports RT_ENOMEM and the
 * connection is restarted (nothing is lost: channels resume). The JSON
 * library (jansson) allocates through its own process-wide functions, which
 * are malloc/free unless the application sets them with json_set_alloc_funcs().
 * TLS (wss://) allocates through OpenSSL's process-wide functions
 * (CRYPTO_set_mem_functions()), and its small context with malloc.
 */
#ifndef RTSYNC_RTSYNC_H
#define RTSYNC_RTSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rtsync/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_CLIENT_VERSION "0.1.0"

struct rt_client;
struct rt_client_channel;

/* Replaces malloc/realloc/free: realloc(ud, NULL, n) allocates, size 0 frees
 * (and returns NULL). Must be thread-safe when the client is used from
 * several threads. */
struct rt_allocator {
	void *(*realloc)(void *ud, void *ptr, size_t size);
	void *ud;
};

/* ---- connection state ---- */

enum rt_client_state {
	RT_CLIENT_IDLE,         /* created, rt_client_connect() not called yet */
	RT_CLIENT_CONNECTING,   /* TCP connect and WebSocket handshake under way */
	RT_CLIENT_OPEN,         /* the socket is open; channels (re)join */
	RT_CLIENT_RECONNECTING, /* the connection was lost; next attempt after delay_ms */
	RT_CLIENT_CLOSED,       /* closed by rt_client_close() or reconnects exhausted */
};

struct rt_client_state_event {
	enum rt_client_state state;
	unsigned attempt;   /* RECONNECTING: 1 for the first retry, 2 for the next… */
	unsigned delay_ms;  /* RECONNECTING: time until that attempt */
	int reason;         /* RECONNECTING, CLOSED: why the connection ended (RT_E*), 0 on request */
	const char *detail; /* human-readable reason, or NULL */
};

/* Connection state changes (Threads: the loop thread). */
typedef void (*rt_client_state_cb)(void *user, const struct rt_client_state_event *ev);

/* Errors that no call can return: a channel join refused (ch set), a
 * message that could not be parsed, out of memory inside the loop, buffer
 * overflow. rc is a negative RT_E* code; ch may be NULL. */
typedef void (*rt_client_error_cb)(void *user, struct rt_client_channel *ch, int rc,
				   const char *message);

struct rt_client_options {
	/* Server base URL: "ws://host:port", "http://host:port" or either with a
	 * path prefix; "/realtime/v1/websocket" is appended unless the path already
	 * ends in "/websocket"; wss:// and https:// for TLS (port 443 by default).
	 * Required. */
	const char *url;
	const char *apikey;       /* sent as ?apikey=; required by the server */
	const char *access_token; /* user token sent with every join; NULL: the apikey */
	unsigned heartbeat_ms;    /* heartbeat interval; a heartbeat unanswered when the next
				     is due ends the connection (default 25000) */
	unsigned connect_timeout_ms;  /* TCP connect + WebSocket handshake (default 10000) */
	unsigned push_timeout_ms;     /* join replies and broadcast acks (default 10000) */
	unsigned reconnect_base_ms;   /* backoff: attempt n waits a uniformly random time in */
	unsigned reconnect_max_ms;    /* [0, min(max, base * 2^n)] (defaults 500, 10000) */
	unsigned reconnect_max_attempts; /* give up (CLOSED) after this many; 0 = never */
	size_t max_buffered_pushes;   /* pushes held while not joined (default 100) */
	size_t max_message_bytes;     /* largest incoming message (default 8 MiB) */
	size_t max_output_bytes;      /* outgoing bytes queued for the socket (default 16 MiB) */
	const struct rt_allocator *allocator; /* NULL: the C library's */
	rt_client_state_cb on_state;  /* may be NULL */
	rt_client_error_cb on_error;  /* may be NULL */
	void *user;                   /* passed to on_state and on_error */
	/* wss:// and https:// URLs use TLS (OpenSSL): the server's certificate
	 * chain is verified against the system's trusted CAs and its name
	 * against the URL's host (SNI carries it). A failed verification ends
	 * the attempt with RT_ETLS and a detail such as "certificate verify
	 * failed: self-signed certificate" (on_state: RECONNECTING or CLOSED). */
	const char *tls_ca_file;  /* PEM file of CAs to trust instead of the system's */
	const char *tls_ca_dir;   /* directory of CAs (OpenSSL hashed names) instead */
	bool tls_skip_verify;     /* true: no certificate or name check at all (tests,
				     never in production); default false: verified */
};

/*
 * Creates a client (nothing connects yet). Returns 0 and sets *out, RT_EINVAL
 * for a missing or unsupported URL (ws://, http://, wss://, https://) or
 * apikey, RT_ETLS when tls_ca_file or tls_ca_dir cannot be loaded (or, with
 * neither, the system's CAs), or RT_ENOMEM. Threads: any.
 */
RT_API int rt_client_new(const struct rt_client_options *opt, struct rt_client **out);

/*
 * Starts connecting (state CONNECTING) and keeps the client connected until
 * rt_client_close(). Resolves the host name here (blocking getaddrinfo).
 * Only the first address the name resolves to is used. Returns 0, RT_EINVAL
 * when already connecting or open, RT_EAGAIN when a close has not been
 * processed yet (run rt_client_process() first), RT_EIO when the name cannot
 * be resolved, RT_ENOMEM.
 */
RT_API int rt_client_connect(struct rt_client *c);

/*
 * Closes the connection (a WebSocket close frame is sent if open) and stops
 * reconnecting; state CLOSED. Channels stay and rejoin after a later
 * rt_client_connect(). Returns 0.
 */
RT_API int rt_client_close(struct rt_client *c);

/* Stops the library's thread, closes and frees everything. NULL does nothing.
 * Not from a callback. */
RT_API void rt_client_free(struct rt_client *c);

/* The descriptor to watch for readability (an epoll fd; stays the same for
 * the client's life). */
RT_API int rt_client_fd(const struct rt_client *c);

/* Milliseconds until rt_client_process() must run even if the fd stays
 * quiet; -1 when no timer is pending. */
RT_API int rt_client_timeout_ms(struct rt_client *c);

/*
 * Does all pending work without blocking: socket I/O, timers, reconnects,
 * and callbacks. Returns 0, or RT_EINVAL when called inside a callback or
 * while the library's thread runs.
 */
RT_API int rt_client_process(struct rt_client *c);

/* Waits up to timeout_ms (-1: until the next timer) for activity, then
 * processes. Returns as rt_client_process(). */
RT_API int rt_client_run(struct rt_client *c, int timeout_ms);

/* Runs the loop on a thread of the library's own. Returns 0, RT_EINVAL if
 * already started, RT_EIO if the thread cannot be created. */
RT_API int rt_client_start_thread(struct rt_client *c);

/* Stops and joins that thread (no-op if none). Not from a callback. */
RT_API void rt_client_stop_thread(struct rt_client *c);

/*
 * Replaces the access token: every joined channel gets an access_token
 * message, and every later join and rejoin carries the new token. NULL goes
 * back to the apikey. Returns 0 or RT_ENOMEM (the old token stays).
 */
RT_API int rt_client_set_access_token(struct rt_client *c, const char *token);

/* The current state. */
RT_API enum rt_client_state rt_client_state(struct rt_client *c);

/* ---- channels ---- */

/* One postgres_changes subscription: event "INSERT", "UPDATE", "DELETE" or
 * "*" (NULL: "*"), schema (NULL: "public"), table (NULL: every table),
 * filter in Supabase's grammar ("id=eq.3"), or NULL. */
struct rt_change_filter {
	const char *event;
	const char *schema;
	const char *table;
	const char *filter;
};

/* A postgres_changes delivery. Strings are NUL-terminated; JSON texts are
 * compact; absent members are NULL. */
struct rt_client_change {
	const char *type;     /* "INSERT", "UPDATE", "DELETE" */
	const char *schema;
	const char *table;
	const char *commit_timestamp;
	const char *position; /* decimal; what the client resumes after */
	const char *record;     /* JSON object text (INSERT, UPDATE) */
	const char *old_record; /* JSON object text (UPDATE, DELETE) */
	const char *data;       /* the whole "data" object as JSON text */
};

/* A broadcast: event name and its payload as JSON text. */
struct rt_broadcast {
	const char *event;
	const char *payload;
};

enum rt_presence_kind {
	RT_PRESENCE_JOIN,  /* key gained metas (new_metas) */
	RT_PRESENCE_LEAVE, /* key lost metas (left_metas) */
	RT_PRESENCE_SYNC,  /* after a full state or a diff was applied; key is NULL */
};

struct rt_presence_event {
	enum rt_presence_kind kind;
	const char *key;
	const char *current;  /* JSON array of the key's metas now ("[]" when gone) */
	const char *changed;  /* JSON array of the metas that joined or left */
	const char *state;    /* SYNC: the whole state, {"key":[metas…]} */
};

/* A system message (extension, status "ok"/"error", message text).
 * resync_required: the resume position was no longer retained; refetch. */
struct rt_system_event {
	const char *extension;
	const char *status;
	const char *message;
	bool resync_required;
	const char *payload; /* the whole payload as JSON text */
};

enum rt_channel_state {
	RT_CHANNEL_JOINING, /* waiting for the connection or for the join reply */
	RT_CHANNEL_JOINED,
	RT_CHANNEL_ERRORED, /* join refused or channel crashed; rejoins after a delay */
	RT_CHANNEL_CLOSED,  /* closed by the server (phx_close); no rejoin */
};

struct rt_channel_status {
	enum rt_channel_state state;
	int rc;             /* ERRORED, CLOSED: RT_E* code, else 0 */
	const char *reason; /* server's reason text, or NULL */
	bool is_rejoin;     /* JOINED after a reconnect or error (resumed) */
};

/* ---- live queries (docs/live.md) ---- */

#define RT_LQ_MAX_QUERIES 64 /* per channel */
#define RT_LQ_MAX_ID 64      /* bytes of a query id */
#define RT_LQ_MAX_WINDOW_MS 60000

/* One live query: a table and a PostgREST query string whose result the
 * server keeps current. id: the application's name for it, 1 to
 * RT_LQ_MAX_ID bytes, unique on the channel (required). schema: NULL is
 * "public". table: required. query: the grammar of /rest/v1 reads — filters,
 * select, order, limit, offset ("select=id,title&status=eq.open&
 * order=created_at.desc&limit=20"), or aggregates grouped by the other
 * selected columns ("select=property_id,total:price.sum(),count()");
 * NULL or "": every row, every column, in primary-key order. */
struct rt_lq_def {
	const char *id;
	const char *schema;
	const char *table;
	const char *query;
};

/* A channel's live queries and how the server paces its messages, for all
 * of them: throttle_ms (at most one message per window), or debounce_ms (a
 * message once changes have been quiet that long) with max_wait_ms (the
 * longest a change waits; 0: four times debounce_ms). Each 0 (off) to
 * RT_LQ_MAX_WINDOW_MS; throttle_ms and debounce_ms exclude each other. */
struct rt_lq_options {
	const struct rt_lq_def *queries;
	size_t n_queries; /* at most RT_LQ_MAX_QUERIES */
	unsigned throttle_ms;
	unsigned debounce_ms;
	unsigned max_wait_ms;
};

enum rt_lq_kind {
	RT_LQ_RESULT, /* a whole result: the local copy was replaced by it */
	RT_LQ_DIFF,   /* ops (enter, leave, move, change) applied to the local copy */
	RT_LQ_ERROR,  /* the server cannot maintain the query and dropped it; so did
			 the library (subscribe it again to retry) */
};

/* One query's part of a live_query message, after the library applied it.
 * Every pointer is owned by the library and valid only during the callback;
 * copy what you keep. JSON texts are compact. */
struct rt_lq_event {
	const char *id;
	enum rt_lq_kind kind;
	const char *position; /* decimal change-log position the result now reflects */
	bool is_resync;       /* RESULT sent again because the resume position was gone */
	size_t n_rows;        /* RESULT, DIFF: rows (or aggregate groups) in the result now */
	const char *rows;     /* RESULT, DIFF: JSON array of the rows in order, the whole
				 local copy after this message; NULL for ERROR */
	const char *keys;     /* RESULT, DIFF: JSON array of the rows' keys (each the
				 primary key, or the group's values, as JSON array text) */
	const char *ops;      /* DIFF: the ops as received (JSON array, docs/live.md) */
	const char *code;     /* ERROR: PGRST100, 42703, RTS400, … */
	const char *message;  /* ERROR: the server's text */
	const char *entry;    /* the query's entry of the message as received (JSON) */
};

/* Callbacks of one channel; any may be NULL. user is the channel's. */
struct rt_channel_callbacks {
	void (*on_status)(void *user, struct rt_client_channel *ch, const struct rt_channel_status *st);
	void (*on_change)(void *user, struct rt_client_channel *ch, const struct rt_client_change *chg);
	void (*on_broadcast)(void *user, struct rt_client_channel *ch, const struct rt_broadcast *b);
	void (*on_presence)(void *user, struct rt_client_channel *ch, const struct rt_presence_event *p);
	void (*on_system)(void *user, struct rt_client_channel *ch, const struct rt_system_event *s);
	/* Result of an acknowledged send or of a track/untrack: id as returned by
	 * the call; rc 0, RT_EPROTO (refused; reason set), RT_ETIMEDOUT (no reply
	 * within push_timeout_ms) or RT_ECLOSED (connection lost or channel left
	 * before a reply: the push may or may not have been applied). */
	void (*on_ack)(void *user, struct rt_client_channel *ch, uint64_t id, int rc, const char *reason);
	/* Result of rt_channel_write(): rc 0 (outcome applied, merged or
	 * missing), RT_EPROTO (a conflict or a refused write), RT_ETIMEDOUT or
	 * RT_ECLOSED (the write may or may not have been applied: send it again
	 * with the same idempotency key), RT_ENOMEM. response is the server's
	 * answer as JSON text ({"outcome","record","conflicts","position",
	 * "replayed"} or {"reason","code"}; docs/writes.md), NULL without one. */
	void (*on_write)(void *user, struct rt_client_channel *ch, uint64_t id, int rc,
			 const char *response);
	/* A live query's result, diff or error, in message order, once the local
	 * copy has been updated. A diff or result that does not apply to the
	 * copy never reaches this callback: on_error gets RT_EPROTO and the
	 * query is subscribed again, fresh (its next event is a RESULT). When
	 * the event's texts cannot be made for lack of memory, on_error gets
	 * RT_ENOMEM instead (the copy is right; the next event has all of it). */
	void (*on_live)(void *user, struct rt_client_channel *ch, const struct rt_lq_event *ev);
	/* The feature flags that apply to this user on this channel changed
	 * (docs/flags.md): flags is the JSON object {name: true | false |
	 * "variant"} the server reported, in the join reply when some apply
	 * (before on_status JOINED) or in a system message of extension "flags" later (which
	 * on_system sees too). Not called when a rejoin brings the same flags.
	 * A feature the server switched off or on arrives in on_system
	 * (extension = the feature, status "error" or "ok"). */
	void (*on_flags)(void *user, struct rt_client_channel *ch, const char *flags);
};

struct rt_channel_options {
	const char *topic;        /* sub-topic: "room1" joins "realtime:room1". Required. */
	bool broadcast_self;      /* receive own broadcasts */
	bool broadcast_ack;       /* the server acknowledges each broadcast (on_ack) */
	bool presence;            /* receive presence state and diffs */
	const char *presence_key; /* key to track under; NULL: server-generated */
	bool is_private;
	const struct rt_change_filter *changes; /* postgres_changes subscriptions */
	size_t n_changes;
	const char *resume_after; /* resume from this position at the first join; NULL: live only */
	struct rt_channel_callbacks cb;
	void *user;
	/* Live queries sent with the join (config.rtsync.live); NULL: none. The
	 * library keeps each query's current result and resumes them after a
	 * reconnect (see rt_lq_subscribe()). Copied; the caller keeps its own. */
	const struct rt_lq_options *live;
};

/*
 * Creates a channel and joins it (now if the connection is open, else as
 * soon as it opens). Returns 0 and sets *out, RT_EINVAL (no topic, a topic
 * over 200 bytes, resume_after not decimal, or live options out of range
 * or with a definition rt_lq_subscribe() would refuse), RT_EEXISTS (this
 * client already has a channel for that topic), RT_ENOMEM.
 */
RT_API int rt_channel_join(struct rt_client *c, const struct rt_channel_options *opt,
			   struct rt_client_channel **out);

/* Leaves the channel (phx_leave if joined) and frees it; pending acks get no
 * callback. The handle is invalid afterwards. NULL does nothing. Returns 0
 * (a leave that could not be sent is simply dropped). */
RT_API int rt_channel_leave(struct rt_client_channel *ch);

/*
 * Broadcasts event with payload (JSON object text; NULL: {}). Sent now if
 * the channel is joined, else buffered until it is. With broadcast_ack, the
 * result arrives in on_ack with *id (id may be NULL). Returns 0, RT_EINVAL
 * (payload not a JSON object, empty event), RT_ECLOSED (closed by the server),
 * RT_ELIMIT (buffer full; on_error reports it too), RT_ENOMEM.
 */
RT_API int rt_channel_send(struct rt_client_channel *ch, const char *event, const char *payload,
			   uint64_t *id);

/*
 * Tracks this client in the channel's presence with meta (JSON object text;
 * NULL: {}). Remembered and tracked again after every rejoin; the server's
 * reply arrives in on_ack with *id. Returns as rt_channel_send().
 */
RT_API int rt_channel_track(struct rt_client_channel *ch, const char *meta, uint64_t *id);

/*
 * Writes one row of the server's store through the channel (the `write`
 * event, docs/writes.md): write is a JSON object text with "type" (insert,
 * update, upsert, delete), "table", and as the write needs "record", "key",
 * "base", "strategy" (reject, merge, lww) and "idempotency_key". Sent now if
 * the channel is joined, else buffered with the other pushes (in order).
 * The result arrives in on_write with *id. Returns 0, RT_EINVAL (not a JSON
 * object, or no type or table), RT_ECLOSED, RT_ELIMIT, RT_ENOMEM.
 */
RT_API int rt_channel_write(struct rt_client_channel *ch, const char *write, uint64_t *id);

/* Stops tracking. Returns as rt_channel_send(). */
RT_API int rt_channel_untrack(struct rt_client_channel *ch, uint64_t *id);

/* The channel's state and the position of the last change it received
 * (copied into pos, at least 21 bytes; "" before the first). */
RT_API enum rt_channel_state rt_channel_state(struct rt_client_channel *ch);
RT_API void rt_channel_position(struct rt_client_channel *ch, char pos[21]);

/* The feature flags the server last reported for the channel (see on_flags)
 * as JSON text in a buffer the caller frees with its allocator (NULL
 * allocator: free()). Returns 0, RT_ENOTFOUND before the server reported any
 * (not joined yet, or a server without flags), or RT_ENOMEM. */
RT_API int rt_channel_flags(struct rt_client_channel *ch, char **json);

/* One flag of those: 1 when on (a variant flag's variant copied into variant,
 * else ""), 0 when off, RT_ENOTFOUND when the server reported no such flag
 * here. variant may be NULL; a longer variant is cut to variant_cap - 1
 * bytes. */
RT_API int rt_channel_flag(struct rt_client_channel *ch, const char *name, char *variant,
			   size_t variant_cap);

/* The current presence state as JSON text {"key":[metas…]} in a buffer the
 * caller frees with its allocator (NULL allocator: free()). Returns 0 or
 * RT_ENOMEM. */
RT_API int rt_channel_presence_state(struct rt_client_channel *ch, char **json);

/*
 * Live queries. A channel's live queries (rt_channel_options.live, or added
 * with rt_lq_subscribe) are kept by the library: each query's result lives
 * in a local copy, replaced by every `result` and updated by every `diff` the
 * server sends, and on_live reports each after it is applied. Every entry is
 * checked before it changes anything; one that does not apply (a key the
 * copy does not hold, an index outside the result, a malformed shape) is
 * reported to on_error as RT_EPROTO and the query is subscribed again
 * without resume, so a wrong copy is never kept. After a reconnect the
 * channel rejoins with resume_after = the position of the last live_query
 * message applied: the server sends each query's diff since then, or a
 * fresh result with is_resync. A query without a result yet starts fresh.
 * A query the server reports as an error (RT_LQ_ERROR) is dropped.
 */

/*
 * Adds live queries to the channel, or replaces those with the same id (the
 * replaced one's copy is dropped; its next event is a RESULT — one already
 * on its way from the old definition may still come first). Sent at once
 * when the channel is joined, else with the next join. The server's answer
 * is the query's first on_live event (RESULT or ERROR); a refused request
 * goes to on_error (RT_EPROTO). Returns 0, RT_EINVAL (no definitions, an id
 * of 0 or more than RT_LQ_MAX_ID bytes or given twice, no table, text that
 * is not UTF-8), RT_ELIMIT (more than RT_LQ_MAX_QUERIES on the channel),
 * RT_ECLOSED (closed by the server), RT_ENOMEM (nothing changed).
 */
RT_API int rt_lq_subscribe(struct rt_client_channel *ch, const struct rt_lq_def *defs, size_t n);

/* Stops the live query id and drops its copy (live_unsubscribe when
 * joined). Returns 0, RT_ENOTFOUND (no such query), RT_ENOMEM. */
RT_API int rt_lq_unsubscribe(struct rt_client_channel *ch, const char *id);

/*
 * A copy of query id's current result: *rows the JSON array of its rows in
 * order, and *keys (keys may be NULL) the JSON array of their keys, in
 * buffers the caller frees with its allocator (NULL allocator: free()).
 * Returns 0, RT_ENOTFOUND (no such query), RT_EAGAIN (no result yet: the
 * first one, or a fresh one after an inconsistency, has not arrived),
 * RT_ENOMEM (*rows and *keys NULL).
 */
RT_API int rt_lq_result(struct rt_client_channel *ch, const char *id, char **rows, char **keys);

/* The position of the last live_query message applied on the channel
 * (copied into pos; "" before the first), which a rejoin resumes after. */
RT_API void rt_lq_position(struct rt_client_channel *ch, char pos[21]);

#ifdef __cplusplus
}
#endif

#endif
