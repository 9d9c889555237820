/*
 * Delivery controls of a postgres_changes subscription: throttle, debounce
 * and batch (docs/protocol.md, "Delivery controls"), and the window that
 * holds a binding group's changes between two flushes.
 *
 * The window does no I/O and reads no clock: the feed thread adds each
 * change a group matched with the time it saw it, asks when the window is
 * due and takes its changes to publish them. With throttle or debounce set,
 * changes to the same row (table and primary key) that the same bindings
 * matched are coalesced: UPDATE+UPDATE is one UPDATE (latest record, first
 * old_record), INSERT+UPDATE one INSERT (latest record), INSERT+DELETE
 * nothing, UPDATE+DELETE one DELETE (first old_record), DELETE+INSERT one
 * UPDATE (old_record the deleted row). A coalesced change carries the
 * position and commit time of its last constituent. Any other pair, a row
 * matched by another set of bindings, an UPDATE that changes the primary
 * key, and rows of tables without one are kept apart, so applying the
 * taken changes in order leaves every row as the uncoalesced stream would.
 *
 * Ownership: the window owns the records of the changes it holds (new
 *            references) and copies the matched sets; what rt_window_take
 *            gives belongs to the caller (rt_window_items_free).
 * Threads:   none of its own; a window is used by one thread at a time (the
 *            feed thread, under the registry lock).
 * Limits:    RT_WINDOW_MAX_ROWS changes pending after coalescing (and twice
 *            that many added since the window opened): rt_window_add says
 *            when to flush early. Each option is 0–RT_DELIVERY_MAX_MS ms.
 */
#ifndef RT_REALTIME_DELIVERY_H
#define RT_REALTIME_DELIVERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define RT_DELIVERY_MAX_MS 60000
#define RT_WINDOW_MAX_ROWS 10000

struct rt_delivery_opts {
	unsigned throttle_ms;
	unsigned debounce_ms;
	unsigned max_wait_ms; /* with debounce: the effective bound (4 × debounce when not given) */
	bool is_batch;
};

/*
 * Reads throttle_ms, debounce_ms, max_wait_ms and batch of a postgres_changes
 * entry into *out (absent or null: off). Returns 0, or -1 with Supabase's
 * kind of message in err: an option that is not an integer 0–60000, batch
 * not a boolean, throttle together with debounce, max_wait_ms without
 * debounce.
 */
int rt_delivery_parse(const json_t *entry, struct rt_delivery_opts *out, char *err,
		      size_t err_cap);
/* Whether any control is on (the group's changes go through a window). */
bool rt_delivery_is_on(const struct rt_delivery_opts *o);
bool rt_delivery_equal(const struct rt_delivery_opts *a, const struct rt_delivery_opts *b);

/* One pending change and the bindings (opaque, sorted) that matched it. */
struct rt_pending {
	struct rt_change ch; /* owns record and old_record */
	const void **matched;
	size_t n_matched;
	bool is_dead; /* cancelled (INSERT+DELETE) */
};

struct rt_window_row;

struct rt_window {
	struct rt_delivery_opts opts;
	struct rt_pending *items; /* in the order added */
	size_t n, cap, n_live;
	struct rt_window_row *rows; /* row key -> the row's newest item */
	bool is_open;               /* changes added since the last take */
	uint64_t open_after;        /* the position before the window's first change */
	uint64_t first_ms;          /* when the window opened */
	bool has_flushed;
	uint64_t last_flush_ms;     /* the last take that gave changes */
	uint64_t due_ms;            /* when to take, while open */
};

void rt_window_init(struct rt_window *w, const struct rt_delivery_opts *opts);
void rt_window_deinit(struct rt_window *w);

/*
 * Adds change ch (its records are referenced, not taken) matched by
 * matched[0..n) (copied; any order) at time now_ms, coalescing it with the
 * row's pending change when the rules allow. Returns true when the window
 * is full and must be taken now.
 */
bool rt_window_add(struct rt_window *w, const struct rt_change *ch, const void *const *matched,
		   size_t n, uint64_t now_ms);
/* Whether the window is open and due at now_ms. */
bool rt_window_is_due(const struct rt_window *w, uint64_t now_ms);
/*
 * Takes the pending changes in position order (cancelled ones left out) into
 * *out (NULL when none; free with rt_window_items_free) and closes the
 * window. Returns their number.
 */
size_t rt_window_take(struct rt_window *w, uint64_t now_ms, struct rt_pending **out);
void rt_window_items_free(struct rt_pending *items, size_t n);

#endif
