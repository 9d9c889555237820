/*
 * Phoenix Channels in the Supabase Realtime dialect: one session per
 * WebSocket, channels joined on it, and what happens on them (join, leave,
 * heartbeat, broadcast with self and ack, presence, access_token refresh,
 * token expiry, server-initiated shutdown). Exact reply shapes and error
 * strings are those of PROTOCOL.md.
 *
 * Every channel acts as a requester (struct rt_auth): the whole claims of
 * its own token or the socket's, and its sub-topic for realtime.topic().
 * Its postgres_changes carry only rows the requester may select, socket
 * writes and snapshots run under it (docs/security.md).
 *
 * Private channels (config.private) are authorized by the store's policies
 * on realtime.messages (Supabase Realtime Authorization: SELECT to join,
 * INSERT to send broadcast or track presence); without such policies they
 * are open to the roles listed in private_roles (default: authenticated,
 * service_role), and the same rule grants broadcast and presence writes.
 * An access_token with other claims, or a change of the store's policies,
 * has the channel decided again and its postgres_changes attached again.
 *
 * Per-user channels: a topic under RT_REALTIME_USER_TOPIC_PREFIX
 * ("notifications:<user id>") is the server's channel to that user
 * (docs/notifications.md). It must be joined private; only the user whose
 * JWT sub is that id (or the service role) may join it, and then only if the
 * channel policies above allow it too; nobody but the service role may
 * broadcast or track presence on it. Right after a join of such a channel
 * the server pushes the user's inbox counts as the broadcast `inbox_state`
 * {"unread", "total", "held"} (read on the store pool behind the socket's
 * other requests).
 *
 * Direct notifications over the socket: the event `notify` on any joined
 * channel whose claims are the service role's carries the body of
 * POST /notify/v1/send and is answered ok {"ids", "recipients"} or error
 * {"reason", "code"[, "details"]} (RTS403 for any other role, RTS404 without
 * the notifications service).
 *
 * Locks and the activity feed: a topic "lock:<name>" (docs/locks.md) or
 * "activity:<channel>" (docs/activity.md) must be joined private; on a lock
 * channel the events lock_acquire, lock_renew, lock_release and lock_state
 * are answered by the lock service (locks/service.h), the channel being the
 * owner (its locks go with it); acquiring needs the channel's send right.
 * A message may name one target channel or carry an admit check
 * (realtime/hub.h): the lock pushes and the activity entries use them.
 *
 * Ownership: struct rt_realtime (shared) owns the hub and the presence
 *            registry; a worker's struct rt_realtime_worker owns its sessions;
 *            a session owns its channels. rt_session_new() takes ownership of
 *            the socket claims it is given.
 * Threads:   rt_realtime_new/free on the main thread; everything else on the
 *            worker thread that owns the connection.
 * postgres_changes: each channel's bindings come from the change feed
 * (changes.h); a join may resume after a position it saw, with the extension
 * config.rtsync.resume_after (docs/protocol.md).
 *
 * Limits:    max_payload_bytes per broadcast and presence payload,
 *            max_channels per socket, RT_REALTIME_MAX_BINDINGS postgres_changes
 *            entries per channel, presence_max_calls per
 *            presence_window_ms per channel; the rates of cfg.quota
 *            (docs/limits.md): joins, events and presence messages per
 *            connection, events per channel.
 */
#ifndef RT_REALTIME_REALTIME_H
#define RT_REALTIME_REALTIME_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "auth/jwt.h"
#include "auth/keyring.h"
#include "common/ratelimit.h"
#include "net/server.h"
#include "proto/phx.h"
#include "realtime/changes.h"
#include "realtime/hub.h"
#include "realtime/presence.h"

#define RT_REALTIME_MAX_ROLES 8

/* What a connection's data is (rt_conn_set_data's kind): a Realtime socket's
 * session, or a shared document's connection (src/collab). */
enum { RT_CONN_SESSION = 1, RT_CONN_COLLAB = 2 };
/* postgres_changes entries per channel: each is matched against every change */
#define RT_REALTIME_MAX_BINDINGS 100
#define RT_REALTIME_USER_TOPIC_PREFIX "notifications:"

struct rt_realtime_config {
	const char *jwt_secret; /* when keys is NULL: HS tokens with this secret */
	struct rt_keyring *keys; /* the signing keys (not owned); NULL: from jwt_secret */
	size_t max_payload_bytes;
	unsigned max_channels;
	unsigned presence_max_calls;
	unsigned presence_window_ms;
	const char *private_roles[RT_REALTIME_MAX_ROLES]; /* NULL-terminated */
	struct rt_quota *quota; /* joins, events, presence rates (not owned); NULL: none */
};

struct rt_realtime {
	struct rt_realtime_config cfg;
	struct rt_keyring *keys;     /* cfg.keys, or made from cfg.jwt_secret */
	struct rt_keyring *own_keys; /* the one made here, else NULL */
	struct rt_hub *hub;
	struct rt_presence *presence;
	struct rt_store *store;     /* NULL without a store (not owned) */
	struct rt_changes *changes; /* NULL without a store */
	struct rt_live *live;       /* live queries (fed by changes); NULL without a store */
	struct rt_notify *notify;   /* notifications (set by the server; not owned); may be NULL */
	struct rt_collab *collab;   /* shared documents (collab/collab.h; not owned); may be NULL */
	struct rt_flags *flags;     /* feature flags (flags/flags.h; not owned); may be NULL */
	struct rt_lock_service *locks; /* locks (locks/service.h; not owned); may be NULL */
	struct rt_activity *activity;  /* activity feed (activity/activity.h; not owned); may be NULL */
	struct rt_cluster *cluster; /* scale-out over Redis (cluster/cluster.h; not owned); may be NULL */
};

struct rt_session;
struct rt_notify;

struct rt_token_entry;

struct rt_realtime_worker {
	struct rt_realtime *rt;
	struct rt_worker *w;
	struct rt_hub_local *hub;
	struct rt_session *sessions;
	uint64_t next_chan;
	struct rt_token_entry *tokens; /* tokens verified lately (see rt_realtime_verify) */
	uint64_t pol_version; /* the store's policy version the channels were decided under */
	bool is_pol_seen;
	struct rt_flagset *flags; /* the flag set the channels were evaluated under (a reference) */
	uint64_t flags_gen;       /* its generation */
};

/* Copies cfg (strings must outlive the object). */
struct rt_realtime *rt_realtime_new(const struct rt_realtime_config *cfg);
/* Serves postgres_changes from store (call before the server starts). */
void rt_realtime_set_store(struct rt_realtime *rt, struct rt_store *store);
void rt_realtime_free(struct rt_realtime *rt);
/* True when role may join, broadcast and track on private channels. */
bool rt_realtime_role_allowed(const struct rt_realtime *rt, const char *role);

/* What a requester may do on a channel (Supabase Realtime Authorization). */
struct rt_channel_access {
	bool may_read;  /* join: SELECT on realtime.messages for broadcast or presence */
	bool may_send;  /* broadcast: INSERT for extension 'broadcast' */
	bool may_track; /* presence track: INSERT for extension 'presence' */
};

/*
 * Decides who's access to a channel (who->topic: the sub-topic, for
 * realtime.topic()). Public channels allow everything. Private ones: by the
 * store's policies on realtime.messages, evaluated on the row {topic,
 * extension}; without such policies, by the configured private roles.
 * Policies outside the compiled subset deny (logged). Returns 0, or -1 when
 * who may not read (join refused). Any thread.
 */
int rt_realtime_authorize(struct rt_realtime *rt, const struct rt_auth *who, bool is_private,
			  struct rt_channel_access *out);

struct rt_realtime_worker *rt_realtime_worker_new(struct rt_realtime *rt, struct rt_worker *w);
/* Frees the worker state; its sessions must be gone (connections closed). */
void rt_realtime_worker_free(struct rt_realtime_worker *rw);
/* Delivers messages other workers published. */
void rt_realtime_worker_wake(struct rt_realtime_worker *rw);
/* Closes channels whose token has expired; after a change of the store's
 * policies, decides every channel again under them; after a change of the
 * feature flags, evaluates every channel's flags again. */
void rt_realtime_worker_tick(struct rt_realtime_worker *rw);

/*
 * Feature flags (docs/flags.md). Every channel evaluates the flags for its
 * requester (the sub and claims of its token) and its place (its sub-topic,
 * the tables of its postgres_changes) at the join, on a token with other
 * claims and whenever the flag set changes (checked on every tick and wake:
 * within a second). The join reply carries the answers as "flags"; a change
 * of them is the system message {"extension": "flags", "status": "ok",
 * "message", "channel", "flags"}. A feature switched off stops its
 * deliveries on the channel with a system message {"extension": <feature>,
 * "status": "error", "message", "channel", "feature", "enabled": false};
 * switched on, the same with "ok" and true, and postgres_changes resume from
 * the last position the channel was given (the catch-up of a resume), live
 * queries from theirs, presence with a fresh presence_state.
 *
 * rt_realtime_features_off(): the RT_FLAG_* features off for a requester
 * (sub, claims) on channel (may be NULL) and table (may be NULL), under the
 * worker's current set; 0 without flags. Worker thread only.
 */
unsigned rt_realtime_features_off(struct rt_realtime_worker *rw, const char *sub,
				  const json_t *claims, const char *channel, const char *table);

/*
 * Verifies token (token_len bytes) as rt_jwt_verify() does with the
 * configured secret at the current time, remembering the tokens this worker
 * verified lately (a few hundred, by exact bytes): a token seen before costs a
 * lookup and an expiry check instead of a signature check and two JSON
 * parses, which is what a reconnecting crowd sharing an API key or a user's
 * token needs. On RT_JWT_OK, out gets role, sub, exp and the whole claims
 * object (a copy: the same claims for a token seen before);
 * rt_jwt_claims_deinit() releases it all. Worker thread only.
 */
enum rt_jwt_result rt_realtime_verify(struct rt_realtime_worker *rw, const char *token,
				      size_t token_len, struct rt_jwt_claims *out,
				      int64_t *expired_ago_s);

/* A session for an upgraded connection; takes ownership of claims' members. */
struct rt_session *rt_session_new(struct rt_realtime_worker *rw, struct rt_conn *c,
				  enum rt_phx_vsn vsn, const char *token,
				  struct rt_jwt_claims *claims);
/* The session's share of the quotas: the connection counted by
 * rt_quota_conn_open() is moved here and released when the session is freed. */
struct rt_quota_conn *rt_session_quota(struct rt_session *s);
/* Leaves every channel (presence leaves are published) and frees. */
void rt_session_free(struct rt_session *s);
/* Handles one WebSocket message. */
void rt_session_on_message(struct rt_session *s, enum rt_ws_opcode op, const uint8_t *data,
			   size_t data_len);

/*
 * Publishes a broadcast that did not come from a socket (HTTP API). With
 * is_user_broadcast it goes out as a user broadcast (kind 4 to vsn 2.0.0,
 * JSON form to vsn 1.0.0; binary payloads only to 2.0.0); otherwise as the
 * JSON payload {"event","payload","type"[,"meta"]} to both. data is JSON text
 * unless enc is RT_PHX_ENC_BINARY; meta_id (may be NULL) becomes meta.id.
 * Returns 0, or RT_ETOOBIG when the topic or event cannot be encoded.
 */
int rt_realtime_publish(struct rt_realtime_worker *rw, const char *sub_topic, bool is_private,
			const char *event, bool is_user_broadcast, enum rt_phx_encoding enc,
			const void *data, size_t data_len, const char *meta_id);

/*
 * A broadcast message for any thread to publish (rt_hub_publish_any): the
 * JSON payload {"event","payload","type":"broadcast"} on sub_topic, for both
 * protocol versions. json is the payload's JSON text. One reference, the
 * caller's.
 */
struct rt_msg *rt_realtime_broadcast_msg(const char *sub_topic, bool is_private, const char *event,
					 const char *json, size_t json_len);

#endif
