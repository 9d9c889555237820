/*
 * librtsync's locks (docs/locks.md): a named lock taken over the client's
 * socket, with a lease the library can renew by itself, and the fencing
 * token of each grant (larger than every earlier holder's: pass it to what
 * the lock protects so it refuses writes of an older holder).
 *
 * A lock joins the private channel "realtime:lock:<name>"; the channel is
 * the owner on the server, so a lost connection ends the hold (the server
 * releases at once): on_lost reports it with reason "connection_lost", and
 * after the rejoin rt_lock_acquire() asks again. A grant arrives in
 * on_granted, at once or after waiting in the server's FIFO queue
 * (on_queued first); a lease that ends unrenewed in on_lost with
 * "lease_expired". With is_auto_renew the library renews every third of
 * the lease until rt_lock_release().
 *
 * Ownership: a lock belongs to its client and must be closed
 *            (rt_lock_close()) before the client is freed. Strings passed to
 *            callbacks live until the callback returns.
 * Threads:   callbacks run on the client's loop thread, one at a time, like
 *            the client's. rt_lock_open() and rt_lock_close() must not be
 *            called from a callback; the other calls may be made from any
 *            thread, callbacks included.
 * Limits:    names of 1 to 128 bytes of UTF-8 without controls or spaces;
 *            leases and waits within the server's bounds (--lock-lease-*-ms,
 *            --lock-wait-max-ms).
 */
#ifndef RTSYNC_LOCK_H
#define RTSYNC_LOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "rtsync/rtsync.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rt_lock;

#define RT_LOCK_MAX_NAME 128

/* A grant: the fencing token, the lease and when it ends (ms since the epoch). */
struct rt_lock_grant {
	const char *name;
	int64_t token;
	uint32_t lease_ms;
	int64_t expires_at;
};

struct rt_lock_callbacks {
	/* The lock is held (at once, or the queue reached this client). */
	void (*on_granted)(void *user, struct rt_lock *l, const struct rt_lock_grant *g);
	/* Queued behind the holder at position (1: next). */
	void (*on_queued)(void *user, struct rt_lock *l, unsigned position);
	/* No longer held: reason "lease_expired" or "connection_lost". */
	void (*on_lost)(void *user, struct rt_lock *l, int64_t token, const char *reason);
	/* An acquisition failed: rc RT_EPROTO with the server's code ("RTS409"
	 * busy, "RTS403" forbidden, "RTS400" bad lease, "RTS429" a bound) and
	 * reason, RT_ETIMEDOUT (the wait ended: code "timeout"), or RT_ECLOSED
	 * (no answer before the connection went). */
	void (*on_error)(void *user, struct rt_lock *l, int rc, const char *code, const char *reason);
	/* The lock's state as the server pushes it to every reader (JSON text
	 * {"name","held","holder","token","lease_ms","expires_in_ms","waiters"}). */
	void (*on_state)(void *user, struct rt_lock *l, const char *state);
	/* The lock's channel (joined, refused with the server's reason, …). */
	void (*on_status)(void *user, struct rt_lock *l, const struct rt_channel_status *st);
};

struct rt_lock_options {
	const char *name;   /* required */
	uint32_t lease_ms;  /* 0: the server's default */
	uint32_t wait_ms;   /* how long an acquisition may wait in the queue (0: not at all) */
	bool is_auto_renew; /* renew every third of the lease while held */
	struct rt_lock_callbacks cb; /* each may be NULL */
	void *user;
};

/* Joins the lock's channel on c (now if connected, else when the
 * connection opens). Returns 0 and sets *out, RT_EINVAL (no name, or one
 * the server would refuse), RT_EEXISTS (c already has that channel),
 * RT_ENOMEM. Not from a callback. */
RT_API int rt_lock_open(struct rt_client *c, const struct rt_lock_options *opt,
			struct rt_lock **out);

/* Leaves the channel (the server releases the lock and drops the wait) and
 * frees the lock. NULL does nothing. Not from a callback. */
RT_API void rt_lock_close(struct rt_lock *l);

/* Asks for the lock (sent once the channel is joined): the answer comes in
 * on_granted, on_queued or on_error. Returns 0, RT_EEXISTS (held or asked
 * for already), RT_ELIMIT, RT_ENOMEM. */
RT_API int rt_lock_acquire(struct rt_lock *l);

/* Renews the lease now (is_auto_renew does it by itself). Returns 0, or
 * RT_ENOTFOUND when the lock is not held. */
RT_API int rt_lock_renew(struct rt_lock *l);

/* Releases the lock, or gives up the wait. Returns 0, or RT_ENOTFOUND when
 * it is neither held nor asked for. */
RT_API int rt_lock_release(struct rt_lock *l);

/* The fencing token of the current hold, 0 when not held. */
RT_API int64_t rt_lock_token(struct rt_lock *l);

#ifdef __cplusplus
}
#endif

#endif
