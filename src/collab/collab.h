/*
 * Shared Yjs documents (docs/collab.md): the Yjs update format v1 and the
 * y-websocket protocol, served at /collab/v1/<document> to the unmodified
 * `yjs` + `y-websocket` clients, with documents persisted in the store.
 *
 * Two layers, both here:
 *  - rt_ydoc: a document state built from Yjs updates (format v1, lib0
 *    encoding), without integrating them into a document tree. Every update
 *    is decoded and validated whole before it changes anything; what it adds
 *    (structs for clocks the document lacks, deletions it does not have) is
 *    kept, re-encoded as one update. The state encodes as one update
 *    (Y.mergeUpdates semantics), optionally only what a state vector lacks
 *    (Y.diffUpdate semantics), optionally with deleted content dropped.
 *    Pure: no I/O, no threads, no globals (fuzz/ydoc.c feeds it).
 *  - rt_collab: the server side. Connections speak y-websocket's messages
 *    (sync step 1/2, update, awareness, query awareness, auth); documents
 *    live in memory while used, shared by every worker, and persist as an
 *    append log per document that a pool thread compacts.
 *
 * Ownership: an rt_ydoc owns copies of every update it keeps; buffers passed
 *            in are borrowed, buffers handed out belong to the caller.
 *            rt_collab owns its documents; a connection's state belongs to
 *            its rt_conn (rt_collab_conn_close frees it).
 * Threads:   an rt_ydoc belongs to one thread at a time (rt_collab guards
 *            each with its document's mutex). rt_collab_new/free on the main
 *            thread; rt_collab_request, _message, _close and _tick on the
 *            worker that owns the connection; store calls on the libuv pool.
 * Limits:    RT_YDOC_MAX_UPDATE bytes per update, RT_YDOC_MAX_DEPTH nesting
 *            of Any values, RT_YDOC_MAX_BYTES kept per document; awareness
 *            states of RT_COLLAB_MAX_AWARENESS bytes, RT_COLLAB_MAX_AW_CLIENTS
 *            client ids per document, RT_COLLAB_MAX_AW_PER_CONN states set by
 *            one connection (more: the message is refused, 1009); document
 *            names of
 *            RT_COLLAB_MAX_NAME bytes; RT_COLLAB_MAX_PENDING messages held per
 *            connection while its document loads.
 */
#ifndef RT_COLLAB_COLLAB_H
#define RT_COLLAB_COLLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "net/http.h"
#include "net/server.h"

/* ---- Yjs updates (format v1) ---- */

#define RT_YDOC_MAX_UPDATE (8u << 20) /* bytes of one update */
#define RT_YDOC_MAX_DEPTH 64          /* nesting of Any arrays and objects */
#define RT_YDOC_MAX_BYTES (64u << 20) /* bytes of updates one document keeps */
#define RT_YDOC_MAX_CLOCK ((1ull << 53) - 1) /* lib0 integers are JavaScript numbers */

struct rt_ydoc;

struct rt_ydoc *rt_ydoc_new(void);
/* NULL does nothing. */
void rt_ydoc_free(struct rt_ydoc *d);

/*
 * Decodes data (one Yjs v1 update) whole and, when it is valid, adds what
 * the document lacks: structs for clocks no struct of the document covers
 * yet (where structs overlap, the document's win) and deletions it does not
 * have. With added non-NULL, *added gets that part as an update of its own
 * (malloc'ed, *added_len bytes; NULL and 0 when nothing was new), which is
 * what is stored and sent on. Invalid updates change nothing.
 * Returns 0; RT_EPROTO with err filled (truncated, trailing bytes, a varint
 * over 53 bits, invalid UTF-8, an unknown struct, content or type ref, a
 * JSON string that does not parse, an Any value nested deeper than
 * RT_YDOC_MAX_DEPTH, an empty struct, a client listed twice, a reference to
 * its own client at or after the struct's clock, clocks past 2^53); or
 * RT_ETOOBIG when data exceeds RT_YDOC_MAX_UPDATE or the document would keep
 * more than RT_YDOC_MAX_BYTES.
 */
int rt_ydoc_apply(struct rt_ydoc *d, const uint8_t *data, size_t data_len, uint8_t **added,
		  size_t *added_len, char *err, size_t err_cap);

/*
 * Appends to out one update holding the document's state: with sv (an
 * encoded state vector, sv_len bytes), only what that state lacks (per
 * client, the structs from sv's clock on, the first one sliced) and the
 * whole delete set, as Y.diffUpdate does; with sv NULL, everything, as
 * Y.mergeUpdates does. With gc, deleted content is dropped: a deleted item
 * keeps its identity and position but its content becomes ContentDeleted
 * (a deleted type too, once integrated: Yjs keeps pending ones whole), the
 * items of a deleted type (and of the types inside it) and the items Yjs
 * integrates as GC (a GC neighbour, a parent that is not a type) collapse
 * to GC structs, as Yjs's gc does, and neighbouring structs that one can
 * hold are written as one (docs/collab.md). Returns 0, or RT_EPROTO for a
 * malformed state vector (out unchanged).
 */
int rt_ydoc_encode(const struct rt_ydoc *d, const uint8_t *sv, size_t sv_len, bool gc,
		   struct rt_buf *out);

/* Appends the document's state vector (per client, the end of the clocks
 * it has without a gap from 0), encoded as y-protocols does. */
void rt_ydoc_state_vector(const struct rt_ydoc *d, struct rt_buf *out);

/*
 * A copy of d for another thread to read while d goes on changing: the
 * index is copied, the kept updates are shared (reference counted, never
 * changed), so it costs a copy of the index, not of the bytes. Free it with
 * rt_ydoc_free on any thread.
 */
struct rt_ydoc *rt_ydoc_copy(const struct rt_ydoc *d);

/*
 * The document's shared types as JSON text (malloc'ed, NUL-terminated;
 * caller frees): an object with one member per root type, integrated as
 * Yjs does (YATA), as Y.Doc's toJSON gives them (docs/collab.md, "REST":
 * maps, arrays, text as a string, XML as Yjs's toString, embedded content,
 * root types inferred from their items). With is_delta, texts are Yjs's
 * delta (an array of {insert, attributes}) instead of strings. Returns
 * NULL when the document is too costly to integrate (concurrent inserts at
 * one place past RT_YDOC_TREE_STEPS_PER_ITEM scan steps per item: a
 * hostile history that Yjs clients themselves take quadratic time on).
 */
char *rt_ydoc_json(const struct rt_ydoc *d, bool is_delta);

/* Bytes of updates the document keeps, and how many it keeps. */
size_t rt_ydoc_bytes(const struct rt_ydoc *d);
size_t rt_ydoc_count(const struct rt_ydoc *d);

/* Checks the document's invariants (structs sorted without overlap per
 * client, delete ranges sorted and disjoint). Returns 0 or -1. */
int rt_ydoc_validate(const struct rt_ydoc *d);

/* ---- y-websocket messages (y-protocols), parsed without a connection ---- */

enum rt_collab_msg_type {
	RT_COLLAB_MSG_SYNC = 0,
	RT_COLLAB_MSG_AWARENESS = 1,
	RT_COLLAB_MSG_AUTH = 2,
	RT_COLLAB_MSG_QUERY_AWARENESS = 3,
};
enum rt_collab_sync_step {
	RT_COLLAB_SYNC_STEP1 = 0,  /* data: a state vector */
	RT_COLLAB_SYNC_STEP2 = 1,  /* data: an update */
	RT_COLLAB_SYNC_UPDATE = 2, /* data: an update */
};

/* One message; data points into the message parsed (borrowed). */
struct rt_collab_msg {
	enum rt_collab_msg_type type;
	enum rt_collab_sync_step step; /* sync only */
	const uint8_t *data;           /* sync: the step's payload; awareness: the update */
	size_t data_len;
};

/*
 * Parses one y-websocket message: a var-uint type, then for sync a var-uint
 * step and a var-length payload, for awareness a var-length update, nothing
 * more for either; auth and query-awareness messages may carry anything
 * (ignored, as y-websocket's server does). Var-uints are lib0's, at most
 * RT_YDOC_MAX_CLOCK. Returns 0 with *out filled, or RT_EPROTO (truncated,
 * trailing bytes, an unknown type or step, a var-uint over 53 bits).
 */
int rt_collab_msg_parse(const uint8_t *data, size_t data_len, struct rt_collab_msg *out);

/* One client's entry of an awareness update; state points into the update. */
struct rt_collab_aw_entry {
	uint64_t client, clock;
	const char *state; /* JSON text, state_len bytes, not NUL-terminated */
	size_t state_len;
	bool is_null;      /* the state is JSON null: the client is gone */
};

/*
 * Parses an awareness update whole (y-protocols' encodeAwarenessUpdate: a
 * var-uint count, then per client its id, clock and JSON state as a
 * var-length string). Returns 0 with *out (malloc'ed, caller frees; never
 * NULL) holding *n_out entries, or RT_EPROTO (truncated, trailing bytes, a
 * state that is not JSON, more entries than bytes) or RT_ETOOBIG (a state
 * over RT_COLLAB_MAX_AWARENESS bytes) with *out NULL.
 */
int rt_collab_aw_parse(const uint8_t *data, size_t data_len, struct rt_collab_aw_entry **out,
		       size_t *n_out);

/* ---- the server ---- */

#define RT_COLLAB_MAX_NAME 255         /* bytes of a document name */
#define RT_COLLAB_MAX_AWARENESS 65536  /* bytes of one client's awareness state */
#define RT_COLLAB_MAX_AW_CLIENTS 4096  /* awareness client ids one document keeps */
#define RT_COLLAB_MAX_AW_PER_CONN 16   /* awareness states one connection may hold */
#define RT_COLLAB_MAX_PENDING 64       /* messages held while a document loads */
#define RT_COLLAB_AWARENESS_TIMEOUT_MS 30000 /* y-protocols' outdatedTimeout */

struct rt_realtime;
struct rt_realtime_worker;
struct rt_hub_local;
struct rt_store;
struct rt_collab;
struct rt_collab_conn;

/* Compaction and retention (docs/collab.md). */
struct rt_collab_config {
	unsigned compact_updates; /* compact a document's log past this many updates */
	size_t compact_bytes;     /* … or past this many bytes */
	unsigned idle_ms;         /* unload a document this long after its last connection */
};

/* Fills cfg with the defaults, then RTSYNC_COLLAB_COMPACT_UPDATES,
 * RTSYNC_COLLAB_COMPACT_BYTES and RTSYNC_COLLAB_IDLE_MS from the environment. */
void rt_collab_config_default(struct rt_collab_config *cfg);

/* Serves documents with rt's tokens and channel policies, stored in store
 * (not owned; may be NULL: documents then live in memory only). */
struct rt_collab *rt_collab_new(const struct rt_collab_config *cfg, struct rt_realtime *rt,
				struct rt_store *store);
/* After the server has stopped. NULL does nothing. */
void rt_collab_free(struct rt_collab *co);

/*
 * Handles a request under /collab/v1/ (rest: the part after it, the
 * document name, percent-encoded) with token (the caller's JWT; NULL or ""
 * when none: 401): a WebSocket upgrade joins the document, GET reads it
 * (?format=info, the default: JSON of its state vector, sizes and update;
 * ?format=update or Accept: application/octet-stream: the state as one
 * update; ?format=json or delta: the shared types, rt_ydoc_json, 422 when
 * too costly; another format: 400), from a copy of the state on a pool
 * thread. A bad, expired or missing token gets 401, a
 * requester without read permission 403, both before any upgrade. On an
 * upgrade the connection's data becomes the collab connection (see
 * rt_collab_conn_of). token is borrowed.
 */
void rt_collab_request(struct rt_collab *co, struct rt_realtime_worker *rw, struct rt_conn *c,
		       struct rt_http_req *req, const char *rest, const char *token);
/* c's collab connection, or NULL when its data is something else (a
 * Realtime session: rt_conn_data_kind). */
struct rt_collab_conn *rt_collab_conn_of(const struct rt_conn *c);
/* One WebSocket message of a collab connection. */
void rt_collab_message(struct rt_collab_conn *cc, enum rt_ws_opcode op, const uint8_t *data,
		       size_t data_len);
/* The connection is going: its awareness states are removed at the others at
 * once, and its state is freed. */
void rt_collab_conn_close(struct rt_collab_conn *cc);
/* Once a second per worker: token expiry of its connections; on worker 0
 * also awareness timeouts, compaction and unloading of idle documents. */
void rt_collab_tick(struct rt_collab *co, struct rt_worker *w, struct rt_hub_local *hl,
		    uint64_t now_ms);

#endif
