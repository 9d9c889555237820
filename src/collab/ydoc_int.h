/*
 * Internals shared by the Yjs codec (ydoc.c), its integration into a
 * document tree (ydoc_tree.c) and the JSON of shared types (ydoc_json.c).
 *
 * Ownership: a struct rt_ydoc owns its blobs (the updates it kept, shared
 *            with its copies by reference count) and its piece and range
 *            arrays; pieces point into blobs. A ytree borrows the rt_ydoc it
 *            was built from, which must outlive it and stay unchanged.
 * Threads:   as rt_ydoc (one thread at a time per object).
 * Limits:    as rt_ydoc; a ytree holds one entry per piece after splitting
 *            (at most a few times the pieces of the document).
 */
#ifndef RT_COLLAB_YDOC_INT_H
#define RT_COLLAB_YDOC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "common/buf.h"

enum { REF_GC = 0, REF_DELETED = 1, REF_JSON = 2, REF_BINARY = 3, REF_STRING = 4,
       REF_EMBED = 5, REF_FORMAT = 6, REF_TYPE = 7, REF_ANY = 8, REF_DOC = 9, REF_SKIP = 10 };

/* ContentType's type refs */
enum { TYPE_ARRAY = 0, TYPE_MAP = 1, TYPE_TEXT = 2, TYPE_XML_ELEMENT = 3,
       TYPE_XML_FRAGMENT = 4, TYPE_XML_HOOK = 5, TYPE_XML_TEXT = 6 };

#define BIT_ORIGIN 0x80u
#define BIT_RORIGIN 0x40u
#define BIT_SUB 0x20u
#define N_TYPE_REFS 7 /* YArray … YXmlText */

/* ---- lib0 reading ---- */

struct rd {
	const uint8_t *p, *end;
	const char *err; /* the first failure; reading stops there */
	const uint8_t *fail_at;
};

bool rt_ydoc_rd_u8(struct rd *r, uint8_t *v);
/* lib0 varUint, at most 2^53 - 1 */
bool rt_ydoc_rd_uint(struct rd *r, uint64_t *v);
bool rt_ydoc_rd_bytes(struct rd *r, size_t n, const uint8_t **out);
/* lib0 varString (strict UTF-8); any out-parameter may be NULL */
bool rt_ydoc_rd_str(struct rd *r, const uint8_t **s, size_t *n, uint64_t *units);

/* ---- structs ---- */

struct yid {
	uint64_t client, clock;
};

/* A struct as written (the parse of its bytes). */
struct sview {
	uint8_t info, ref; /* ref: content ref, REF_GC or REF_SKIP */
	uint64_t len;
	bool has_origin, has_rorigin;
	struct yid origin, rorigin;
	const uint8_t *parent; /* parent info and parentSub as written (no origins) */
	size_t parent_len;
	const uint8_t *content; /* the content as written */
	size_t content_len;
};

/* Parses a struct already validated (inside a kept blob). */
void rt_ydoc_view_struct(const uint8_t *p, struct sview *v);

/* The UTF-16 units [off, off+len) of v's string content as UTF-8 (half of a
 * surrogate pair as U+FFFD), appended to b when b is not NULL; returns the
 * bytes. */
size_t rt_ydoc_str_slice(const struct sview *v, uint64_t off, uint64_t len, struct rt_buf *b);

/* ---- the document ---- */

/* A clock range of one struct: struct bytes p, starting off into it. */
struct piece {
	uint64_t clock, len, off;
	const uint8_t *p;
};

struct range {
	uint64_t clock, len;
};

struct yclient {
	uint64_t id;
	struct piece *pieces; /* sorted by clock, disjoint */
	size_t n, cap;
	struct range *del;    /* sorted, disjoint, not adjacent */
	size_t n_del, cap_del;
	UT_hash_handle hh;
};

/* A kept update, shared by a document and its copies. */
struct blob {
	_Atomic unsigned refs;
	size_t len;
	uint8_t data[];
};

struct rt_ydoc {
	struct yclient *clients;
	struct blob **blobs;
	size_t n_blobs, cap_blobs;
	size_t bytes;
};

/* ---- the document integrated (ydoc_tree.c) ---- */

enum { TI_NEW, TI_STACKED, TI_DONE, TI_PENDING };

/* One item after splitting: a clock range that Yjs would hold as one item
 * in this document (split at every origin, right origin and deletion
 * boundary), or a GC struct. */
struct titem {
	uint64_t client, clock, len, off;
	const uint8_t *p;
	struct sview v;
	bool has_origin, has_rorigin;
	struct yid origin, rorigin;
	int32_t left, right; /* neighbours in its parent's list or map chain; -1 */
	int32_t parent;      /* its parent type (index into nodes); -1 */
	const uint8_t *sub;  /* parentSub (UTF-8, sub_len bytes); NULL in a list */
	size_t sub_len;
	int32_t node;        /* a ContentType item: the type it holds; -1 */
	uint8_t state;       /* TI_* */
	bool is_gc;          /* a GC struct, or integrated as one (no parent) */
	bool is_deleted;     /* in the delete set, or under a deleted type */
};

/* A shared type: a root (item -1, name) or the content of a ContentType item. */
struct tnode {
	int32_t item;
	const uint8_t *name; /* root name */
	size_t name_len;
	uint8_t type_ref;    /* TYPE_*; roots: inferred (ydoc_json.c) */
	const uint8_t *tag;  /* XmlElement node name / XmlHook hook name */
	size_t tag_len;
	int32_t start;       /* first item of its list; -1 */
	bool has_list, has_map; /* had items of either kind (deleted ones too) */
	bool is_deleted;     /* its item, or a type above it, is deleted */
	struct tsub *keys;   /* its map chains */
};

struct tsub; /* map chains: (node, key) -> the last item */
struct tclient;

/* YATA's conflict scans cost up to the items integrated at one place each:
 * a hostile update of many concurrent inserts at one position would make
 * them quadratic. A tree gives up past this budget of scan steps (the items
 * left are treated as pending). */
#define RT_YDOC_TREE_STEPS_PER_ITEM 64
#define RT_YDOC_TREE_STEPS_MIN (4u << 20)
/* Items (after splitting) a tree integrates at most, ~230 bytes each while
 * it is built: past it no tree is built (is_truncated, no items). */
#define RT_YDOC_TREE_MAX_ITEMS (1u << 20)

struct ytree {
	const struct rt_ydoc *d;
	uint64_t budget;   /* scan steps left */
	bool is_truncated; /* the budget ran out: not every item is integrated */
	struct titem *items; /* per client by clock, clients in ascending id */
	size_t n_items;
	struct tnode *nodes; /* roots in order of appearance */
	size_t n_nodes, cap_nodes;
	struct tsub *subs;
	struct tclient *clients;
};

/* Integrates every struct of d as Yjs's applyUpdate would (YATA: Item's
 * getMissing and integrate), structs Yjs would keep pending left out
 * (state TI_PENDING), and so are those left when the scan budget runs out
 * (is_truncated); a document of more than RT_YDOC_TREE_MAX_ITEMS items is
 * not integrated at all (is_truncated, n_items 0). Returns the tree
 * (rt_ydoc_tree_free). */
struct ytree *rt_ydoc_tree_build(const struct rt_ydoc *d);
void rt_ydoc_tree_free(struct ytree *t);
/* The item holding id, or -1. */
int32_t rt_ydoc_tree_find(const struct ytree *t, uint64_t client, uint64_t clock);
/* The items of client: [*first, *first + *n) (n 0 when it has none). */
void rt_ydoc_tree_client_items(const struct ytree *t, uint64_t client, size_t *first, size_t *n);
/* The last item of a map chain (the key's current value), or -1. */
int32_t rt_ydoc_tree_map_get(const struct ytree *t, int32_t node, const uint8_t *key,
			     size_t key_len);
/* Calls fn for every key of node with its last item, in no particular order. */
void rt_ydoc_tree_map_each(const struct ytree *t, int32_t node,
			   void (*fn)(const uint8_t *key, size_t key_len, int32_t item, void *ctx),
			   void *ctx);

#endif
