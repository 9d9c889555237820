/*
 * What librtsync's own modules (the synced table, src/client/table.c, and
 * the inbox, src/client/notify.c) need from the client beyond the public
 * API: its lock, its allocator, timers run by its loop, pushes of events
 * other than broadcast/presence/write, and what an HTTP request needs.
 *
 * Ownership: timers are owned by their caller, which removes them before
 *            freeing them.
 * Threads:   call with the client's lock held (rt_client_lock()); timers run
 *            on the loop thread, inside rt_client_process(), with it held.
 * Limits:    none.
 */
#ifndef RT_CLIENT_CLIENT_INT_H
#define RT_CLIENT_CLIENT_INT_H

#include <jansson.h>
#include <stdint.h>

#include "rtsync/rtsync.h"

/* A timer run by the client's loop: run(user, now) once now >= due_ms (a
 * CLOCK_MONOTONIC time in ms; 0: not armed). The timer is disarmed before
 * run is called; it runs at most once per rt_client_process() turn. */
struct rt_client_timer {
	struct rt_client_timer *next;
	int64_t due_ms;
	uint64_t ran_turn; /* the client's */
	void (*run)(void *user, int64_t now_ms);
	void *user;
};

void rt_client_lock(struct rt_client *c);
void rt_client_unlock(struct rt_client *c);

/* The client's allocator (realloc semantics). */
void *rt_client_realloc(struct rt_client *c, void *p, size_t n);

/* CLOCK_MONOTONIC in ms, the clock of timers. */
int64_t rt_client_now_ms(void);

/* Adds or removes a timer; arming (rt_client_timer_arm) wakes the loop. */
void rt_client_timer_add(struct rt_client *c, struct rt_client_timer *t);
void rt_client_timer_remove(struct rt_client *c, struct rt_client_timer *t);
void rt_client_timer_arm(struct rt_client *c, struct rt_client_timer *t, int64_t due_ms);

/* Asks for the channel's table snapshot (the `snapshot` event, payload
 * {"schema","table"}); the reply arrives in the channel's on_write with *id,
 * like a write's. Returns as rt_channel_write(). */
int rt_channel_snapshot(struct rt_client_channel *ch, const char *schema, const char *table,
			uint64_t *id);

/* Pushes the `notify` event (a direct send, docs/notifications.md) with
 * payload (taken), held until the channel is joined like a write; the reply
 * arrives in the channel's on_write with *id. Returns as rt_channel_write(). */
int rt_channel_push_notify(struct rt_client_channel *ch, json_t *payload, uint64_t *id);

/* Pushes a lock event (docs/locks.md) with payload (taken): op 0
 * lock_acquire, 1 lock_renew, 2 lock_release; held until the channel is
 * joined like a write; the reply arrives in the channel's on_write with
 * *id. Returns as rt_channel_write(). */
int rt_channel_push_lock(struct rt_client_channel *ch, int op, json_t *payload, uint64_t *id);
/* What an HTTP request to the server needs (notify.c): the base URL
 * "http://host[:port][prefix]" (the client's URL without its realtime path),
 * the apikey, and the token joins carry (the apikey without one), each a copy
 * from the client's allocator. Returns 0 or RT_ENOMEM (all NULL). Takes the
 * lock itself. */
int rt_client_http_info(struct rt_client *c, char **base_url, char **apikey, char **token);
/* The client's TLS options for HTTP calls (strings owned by the client, valid
 * while it lives; NULL: the system's CAs). */
void rt_client_http_tls(struct rt_client *c, const char **ca_file, const char **ca_dir,
			bool *skip_verify);

#endif
