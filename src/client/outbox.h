/*
 * The client's durable outbox: writes the application made that the server
 * has not acknowledged yet, in a local SQLite file, in the order they were
 * made. An entry is on disk (synchronous=FULL) before rt_outbox_push()
 * returns, so a crash or a restart of the client loses none; it leaves only
 * when rt_outbox_remove() says the server answered it. Every entry carries
 * the idempotency key it was made with, so a replay after a crash (the
 * server may have applied it just before) is never applied twice.
 *
 * Ownership: struct rt_outbox owns its database handle; entries filled by
 *            rt_outbox_front() own their strings (rt_outbox_entry_deinit()).
 *            Memory of the outbox's own comes from the allocator given at
 *            open; SQLite allocates through its own process-wide functions.
 * Threads:   one thread at a time per outbox (the client's loop thread).
 * Limits:    payloads up to RT_OUTBOX_MAX_PAYLOAD bytes; keys up to 255.
 */
#ifndef RT_CLIENT_OUTBOX_H
#define RT_CLIENT_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#define RT_OUTBOX_MAX_PAYLOAD (16u << 20)

struct rt_outbox;

struct rt_outbox_entry {
	int64_t seq;      /* order of the pushes, increasing */
	char *key;        /* idempotency key */
	char *payload;    /* what to send (a write's JSON) */
	unsigned attempts; /* sends that got no answer so far */
	int64_t not_before_ms; /* wall clock: do not send again before */
};

/* realloc semantics (size 0 frees); NULL: the C library's. */
struct rt_outbox_alloc {
	void *(*realloc)(void *ud, void *ptr, size_t size);
	void *ud;
};

/*
 * Opens (creating when missing) the outbox at path. Returns 0 and sets
 * *out, RT_EIO (the file cannot be opened or is not an outbox: message in
 * err), RT_ENOMEM.
 */
int rt_outbox_open(const char *path, const struct rt_outbox_alloc *alloc, struct rt_outbox **out,
		   char *err, size_t err_cap);
/* Closes; NULL does nothing. Everything pushed stays on disk. */
void rt_outbox_close(struct rt_outbox *o);

/*
 * Appends an entry and makes it durable. *seq (may be NULL) gets its
 * order. Returns 0, RT_EINVAL (empty or over-long key, payload over the
 * limit), RT_EEXISTS (an entry with that key is already queued), RT_EIO,
 * RT_ENOMEM.
 */
int rt_outbox_push(struct rt_outbox *o, const char *key, const char *payload, int64_t *seq);

/* The oldest entry into e (owned by the caller after the call). Returns 0,
 * RT_ENOTFOUND when the outbox is empty, RT_EIO, RT_ENOMEM. */
int rt_outbox_front(struct rt_outbox *o, struct rt_outbox_entry *e);
void rt_outbox_entry_deinit(struct rt_outbox *o, struct rt_outbox_entry *e);

/* The first entry with a seq above after_seq (0: the oldest), to walk the
 * outbox in order. Returns as rt_outbox_front(). */
int rt_outbox_next(struct rt_outbox *o, int64_t after_seq, struct rt_outbox_entry *e);

/*
 * Replaces entry seq in place (same place in the order) with a new key and
 * payload, and clears its attempts and deferral: a write resent in another
 * form (a manually resolved conflict) with a new idempotency key. Durable
 * when it returns. Returns 0, RT_EINVAL (as rt_outbox_push()), RT_ENOTFOUND,
 * RT_EEXISTS (another entry has that key), RT_EIO.
 */
int rt_outbox_replace(struct rt_outbox *o, int64_t seq, const char *key, const char *payload);

/* Removes the entry seq (answered by the server). Returns 0, RT_ENOTFOUND,
 * RT_EIO. */
int rt_outbox_remove(struct rt_outbox *o, int64_t seq);

/* Counts a send of seq that got no answer and holds it until
 * not_before_ms. Returns 0, RT_ENOTFOUND, RT_EIO. */
int rt_outbox_defer(struct rt_outbox *o, int64_t seq, int64_t not_before_ms);

/* Entries queued; -1 on an I/O error. */
long rt_outbox_count(struct rt_outbox *o);

#endif
