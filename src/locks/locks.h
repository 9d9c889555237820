/*
 * The lock table (docs/locks.md): named locks with a lease and a fencing
 * token, a FIFO queue of waiters per lock with a timeout each, renewal and
 * release by the holder, release when the holder goes (rt_locks_drop_owner)
 * or its lease ends (rt_locks_tick), and the hand-over to the next waiter.
 *
 * The table does no I/O and reads no clock: every call takes the current
 * monotonic time, and what happens to owners (a grant, a loss, a wait that
 * timed out) comes out as events, handed to the configured callback after
 * the table's mutex is released, on the calling thread. An owner is a
 * 64-bit id the caller chooses (a socket channel's id, a REST lease's id)
 * with the JWT subject it acts for.
 *
 * Fencing tokens are epoch << 32 | n: n counts the grants of this table (all
 * locks), the epoch is a counter the caller takes from the store once per
 * start (rt_store_counter_next), so a token is larger than every token given
 * before, by this run or an earlier one, for every lock.
 *
 * Ownership: the table owns its locks, owners and waiters; names and subjects
 *            handed in are copied; an event's strings are valid during the
 *            callback only.
 * Threads:   every function from any thread (one mutex, held by table
 *            operations alone: no callback, I/O or other lock under it).
 *            rt_locks_start runs a ticker thread that expires leases and
 *            waits on time; without it the caller calls rt_locks_tick.
 * Limits:    cfg.max_locks locks (held or waited for), cfg.max_per_owner
 *            locks held or waited for by one owner, cfg.max_per_subject by
 *            one subject (JWT sub; "" is not counted), cfg.max_waiters waiters
 *            per lock, RT_LOCKS_MAX_NAME bytes of a name, leases between
 *            cfg.min_lease_ms and cfg.max_lease_ms, waits up to
 *            cfg.max_wait_ms, 2^32 - 1 grants per run.
 */
#ifndef RT_LOCKS_LOCKS_H
#define RT_LOCKS_LOCKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_LOCKS_MAX_NAME 128
#define RT_LOCKS_MAX_SUB 256
/* The sub-topic of a lock's channel and of its channel policies: lock:<name>. */
#define RT_LOCKS_TOPIC_PREFIX "lock:"

enum rt_lock_event_kind {
	RT_LOCK_EV_GRANTED,  /* owner now holds name (token, lease_ms, expires_ms) */
	RT_LOCK_EV_LOST,     /* owner's lease ended before a renewal: no longer held */
	RT_LOCK_EV_TIMEOUT,  /* owner's wait ended without a grant */
	RT_LOCK_EV_RELEASED, /* owner released name (or went away while holding it) */
	RT_LOCK_EV_STATE,    /* name's holder or queue changed (owner 0) */
};

struct rt_lock_event {
	enum rt_lock_event_kind kind;
	const char *name;
	uint64_t owner;      /* 0 for RT_LOCK_EV_STATE */
	const char *sub;     /* the owner's subject ("" when none) */
	uint64_t token;      /* the grant's token (GRANTED, LOST, RELEASED) */
	uint32_t lease_ms;   /* GRANTED */
	uint64_t expires_ms; /* GRANTED: monotonic time the lease ends */
	bool is_rest;        /* the owner id is a REST lease's */
	bool was_waiting;    /* GRANTED: to a waiter (not at once to an acquire) */
};

typedef void (*rt_lock_event_cb)(void *ctx, const struct rt_lock_event *ev);

struct rt_locks_config {
	unsigned max_locks;
	unsigned max_per_owner;
	unsigned max_per_subject; /* locks held or waited for by one JWT sub (0: no bound) */
	unsigned max_waiters;
	uint32_t min_lease_ms, max_lease_ms, default_lease_ms;
	uint32_t max_wait_ms;
	uint64_t epoch;            /* fencing epoch, >= 1 (see above) */
	uint64_t (*now_ms)(void);  /* monotonic ms for the ticker thread (NULL: rt_mono_ms) */
	rt_lock_event_cb on_event; /* may be NULL */
	void *ctx;
};

/* Defaults: 10000 locks, 16 per owner, 256 per subject, 64 waiters, leases 100 ms .. 10 min
 * (30 s by default), waits up to 5 min, epoch 1. */
void rt_locks_config_default(struct rt_locks_config *cfg);

/* Outcomes of the table's operations. */
enum rt_lock_rc {
	RT_LOCK_OK = 0,        /* granted, renewed, released */
	RT_LOCK_QUEUED,        /* acquire: queued behind the holder (a GRANTED or TIMEOUT follows) */
	RT_LOCK_BUSY,          /* acquire without wait: held by another owner */
	RT_LOCK_HELD_BY_YOU,   /* acquire: the owner holds it already (its grant in *out) */
	RT_LOCK_WAITING,       /* acquire: the owner waits for it already */
	RT_LOCK_NOT_HELD,      /* renew/release: the owner does not hold it (or not with that token) */
	RT_LOCK_BAD_NAME,      /* empty, too long, or not printable UTF-8 */
	RT_LOCK_BAD_LEASE,     /* outside min_lease_ms .. max_lease_ms */
	RT_LOCK_BAD_WAIT,      /* over max_wait_ms */
	RT_LOCK_TOO_MANY_LOCKS,
	RT_LOCK_OWNER_LIMIT,   /* the owner holds or waits for max_per_owner locks */
	RT_LOCK_SUBJECT_LIMIT, /* the subject holds or waits for max_per_subject locks */
	RT_LOCK_TOO_MANY_WAITERS,
	RT_LOCK_EXHAUSTED,     /* 2^32 - 1 grants in this run: restart for a new epoch */
};

/* A short name of rc ("ok", "busy", "not_held", …) for replies and logs. */
const char *rt_lock_rc_name(enum rt_lock_rc rc);
/* An explanation of rc for error messages. */
const char *rt_lock_rc_message(enum rt_lock_rc rc);

/* A grant as acquire and renew report it. */
struct rt_lock_grant {
	uint64_t token;
	uint32_t lease_ms;
	uint64_t expires_ms; /* monotonic */
	unsigned position;   /* RT_LOCK_QUEUED: 1 for the first waiter */
};

struct rt_locks;

struct rt_locks *rt_locks_new(const struct rt_locks_config *cfg);
/* Stops the ticker (if started) and frees everything; no event is emitted. */
void rt_locks_free(struct rt_locks *t);
/* Starts the ticker thread. Returns 0, or -1 when the thread cannot start. */
int rt_locks_start(struct rt_locks *t);

/* True when name is a valid lock name (1..RT_LOCKS_MAX_NAME bytes of
 * printable ASCII other than space, or UTF-8 above it). */
bool rt_locks_name_ok(const char *name);

/*
 * owner (acting for sub, may be NULL) asks for name with a lease of lease_ms
 * (0: the default). Free: granted at once (RT_LOCK_OK, *out, and a GRANTED
 * event). Held by another: RT_LOCK_BUSY when wait_ms is 0, else queued
 * (RT_LOCK_QUEUED, out->position) until granted or wait_ms passes. Other
 * returns as enum rt_lock_rc; nothing changes then.
 */
enum rt_lock_rc rt_locks_acquire(struct rt_locks *t, uint64_t now, const char *name,
				 uint64_t owner, const char *sub, bool is_rest, uint32_t lease_ms,
				 uint32_t wait_ms, struct rt_lock_grant *out);

/* The holder extends its lease to now + lease_ms (0: the grant's lease).
 * token 0 matches the owner's grant whatever its token. */
enum rt_lock_rc rt_locks_renew(struct rt_locks *t, uint64_t now, const char *name, uint64_t owner,
			       uint64_t token, uint32_t lease_ms, struct rt_lock_grant *out);

/* The holder releases name (token 0: whatever its token); a waiter gives up
 * its wait (RT_LOCK_OK too). The next waiter is granted it. */
enum rt_lock_rc rt_locks_release(struct rt_locks *t, uint64_t now, const char *name,
				 uint64_t owner, uint64_t token);

/* owner went away: every lock it holds is released, every wait dropped.
 * Returns how many locks it held. */
unsigned rt_locks_drop_owner(struct rt_locks *t, uint64_t now, uint64_t owner);

/* Ends the leases and waits due by now (LOST, TIMEOUT, then GRANTED to the
 * next waiters). Returns the time of the next deadline (UINT64_MAX: none). */
uint64_t rt_locks_tick(struct rt_locks *t, uint64_t now);

/*
 * The state of name as a new JSON object: {"name", "held": bool, and when
 * held "holder" (the subject, null when none), "token", "lease_ms",
 * "expires_in_ms"; "waiters": n, "last_token": the latest token given for
 * it by this run (0: none)}. Never NULL.
 */
json_t *rt_locks_state(struct rt_locks *t, uint64_t now, const char *name);

struct rt_locks_stats {
	uint64_t n_held, n_waiters;       /* now */
	uint64_t n_grants, n_expiries;    /* so far (expiries: leases that ended) */
	uint64_t n_timeouts, n_releases;  /* waits that timed out, releases */
};
void rt_locks_stats(struct rt_locks *t, struct rt_locks_stats *out);

/* Checks the table's invariants (counts, queues, owners); aborts with a
 * message when one fails. For tests. */
void rt_locks_validate(struct rt_locks *t);

#endif
