/*
 * A document's structs integrated as Yjs integrates them (yjs
 * src/structs/Item.js, getMissing and integrate; src/utils/encoding.js,
 * integrateStructs): every item gets its parent type and its place in the
 * parent's list or map chain by YATA's rules (origin, right origin, client
 * ids), which gives the document order for the JSON of shared types and the
 * parents that full garbage collection needs.
 *
 * Items are split first at every clock another item refers to (origin: the
 * end of an item, right origin: its start) and at every deletion boundary,
 * so each reference names a whole item, as Yjs's getItemCleanEnd and
 * getItemCleanStart make it. YATA gives the same order for any causal
 * integration order, so structs are integrated depth first from their
 * dependencies; a struct whose dependency is missing (a gap in a client's
 * clocks, a reference past what the document has, a cycle) stays pending,
 * with the later structs of its client, as Yjs keeps them pending.
 */
#include "collab/ydoc_int.h"

#include <stdlib.h>
#include <string.h>

#include "collab/collab.h"
#include "common/alloc.h"

/* A map chain (node, parentSub) or a root (node -1, its name): hk holds
 * the node's 4 bytes then the key, as the hash key. */
struct tsub {
	int32_t value; /* the last item of the chain; the node of a root */
	int32_t node;
	const uint8_t *key; /* into a kept update */
	size_t key_len;
	uint8_t *hk;
	size_t hk_len;
	struct tsub *next_key; /* the node's next chain */
	UT_hash_handle hh;
};

struct tclient {
	uint64_t id;
	size_t first, n;   /* its items */
	size_t next;       /* the first not integrated */
	uint64_t avail;    /* clocks it has without a gap from 0 */
	uint64_t *splits;
	size_t n_splits, cap_splits;
	UT_hash_handle hh;
};

static struct tclient *tclient_of(const struct ytree *t, uint64_t id)
{
	struct tclient *c;
	HASH_FIND(hh, t->clients, &id, sizeof id, c);
	return c;
}

static void add_split(struct ytree *t, uint64_t client, uint64_t clock)
{
	struct tclient *c = tclient_of(t, client);
	if (!c)
		return;
	if (c->n_splits == c->cap_splits) {
		c->cap_splits = c->cap_splits ? 2 * c->cap_splits : 16;
		c->splits = rt_xrealloc(c->splits, c->cap_splits * sizeof *c->splits);
	}
	c->splits[c->n_splits++] = clock;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_client_asc(const void *a, const void *b)
{
	uint64_t x = (*(struct yclient *const *)a)->id, y = (*(struct yclient *const *)b)->id;
	return x < y ? -1 : x > y;
}

int32_t rt_ydoc_tree_find(const struct ytree *t, uint64_t client, uint64_t clock)
{
	const struct tclient *c = tclient_of(t, client);
	if (!c)
		return -1;
	size_t lo = c->first, hi = c->first + c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->items[mid].clock + t->items[mid].len <= clock)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < c->first + c->n && t->items[lo].clock <= clock)
		return (int32_t)lo;
	return -1;
}

static uint8_t *sub_key(int32_t node, const uint8_t *key, size_t key_len, size_t *n)
{
	uint8_t *hk = rt_xmalloc(key_len + 4);
	memcpy(hk, &node, 4);
	memcpy(hk + 4, key, key_len);
	*n = key_len + 4;
	return hk;
}

void rt_ydoc_tree_client_items(const struct ytree *t, uint64_t client, size_t *first, size_t *n)
{
	const struct tclient *c = tclient_of(t, client);
	*first = c ? c->first : 0;
	*n = c ? c->n : 0;
}

static struct tsub *sub_find(const struct ytree *t, int32_t node, const uint8_t *key,
			     size_t key_len)
{
	size_t n;
	uint8_t *hk = sub_key(node, key, key_len, &n);
	struct tsub *s;
	HASH_FIND(hh, t->subs, hk, n, s);
	free(hk);
	return s;
}

static struct tsub *sub_add(struct ytree *t, int32_t node, const uint8_t *key, size_t key_len,
			    int32_t value)
{
	struct tsub *s = rt_xcalloc(1, sizeof *s);
	s->node = node;
	s->key = key;
	s->key_len = key_len;
	s->value = value;
	s->hk = sub_key(node, key, key_len, &s->hk_len);
	HASH_ADD_KEYPTR(hh, t->subs, s->hk, s->hk_len, s);
	return s;
}

int32_t rt_ydoc_tree_map_get(const struct ytree *t, int32_t node, const uint8_t *key,
			     size_t key_len)
{
	struct tsub *s = sub_find(t, node, key, key_len);
	return s ? s->value : -1;
}

void rt_ydoc_tree_map_each(const struct ytree *t, int32_t node,
			   void (*fn)(const uint8_t *key, size_t key_len, int32_t item, void *ctx),
			   void *ctx)
{
	for (const struct tsub *s = t->nodes[node].keys; s; s = s->next_key)
		fn(s->key, s->key_len, s->value, ctx);
}

static int32_t node_new(struct ytree *t, int32_t item)
{
	if (t->n_nodes == t->cap_nodes) {
		t->cap_nodes = t->cap_nodes ? 2 * t->cap_nodes : 8;
		t->nodes = rt_xrealloc(t->nodes, t->cap_nodes * sizeof *t->nodes);
	}
	struct tnode *n = &t->nodes[t->n_nodes];
	memset(n, 0, sizeof *n);
	n->item = item;
	n->start = -1;
	return (int32_t)t->n_nodes++;
}

/* The root named key, created on first use (Yjs's doc.get). */
static int32_t root_get(struct ytree *t, const uint8_t *key, size_t key_len)
{
	struct tsub *s = sub_find(t, -1, key, key_len);
	if (s)
		return s->value;
	int32_t n = node_new(t, -1);
	t->nodes[n].name = key;
	t->nodes[n].name_len = key_len;
	sub_add(t, -1, key, key_len, n);
	return n;
}

static bool same_id(bool ha, const struct yid *a, bool hb, const struct yid *b)
{
	if (ha != hb)
		return false;
	return !ha || (a->client == b->client && a->clock == b->clock);
}

/* The first item of a map chain (Yjs: _map.get(sub), then left to the
 * end); the walk counts toward the scan budget. */
static int32_t chain_start(struct ytree *t, int32_t node, const uint8_t *sub, size_t sub_len)
{
	int32_t o = rt_ydoc_tree_map_get(t, node, sub, sub_len);
	while (o >= 0 && t->items[o].left >= 0) {
		if (!t->budget) {
			t->is_truncated = true;
			break;
		}
		t->budget--;
		o = t->items[o].left;
	}
	return o;
}

/* Item.getMissing's lookups and Item.integrate for item i, whose
 * dependencies are integrated. */
static void integrate(struct ytree *t, int32_t i, uint64_t *mark_before, uint64_t *mark_conf,
		      uint64_t *gen)
{
	struct titem *it = &t->items[i];
	if (it->v.ref == REF_GC) {
		it->is_gc = true;
		return;
	}
	int32_t left = it->has_origin ? rt_ydoc_tree_find(t, it->origin.client, it->origin.clock) : -1;
	int32_t right = it->has_rorigin ? rt_ydoc_tree_find(t, it->rorigin.client, it->rorigin.clock) : -1;
	if ((left >= 0 && t->items[left].is_gc) || (right >= 0 && t->items[right].is_gc)) {
		it->is_gc = true;
		return;
	}
	int32_t parent = -1;
	if (!it->off && !it->v.has_origin && !it->v.has_rorigin) {
		struct rd r = {it->v.parent, it->v.parent + it->v.parent_len, NULL, NULL};
		uint64_t is_key;
		rt_ydoc_rd_uint(&r, &is_key);
		if (is_key == 1) {
			const uint8_t *k;
			size_t kn;
			rt_ydoc_rd_str(&r, &k, &kn, NULL);
			parent = root_get(t, k, kn);
		} else {
			struct yid pid;
			rt_ydoc_rd_uint(&r, &pid.client);
			rt_ydoc_rd_uint(&r, &pid.clock);
			int32_t pi = rt_ydoc_tree_find(t, pid.client, pid.clock);
			if (pi >= 0 && !t->items[pi].is_gc && t->items[pi].node >= 0)
				parent = t->items[pi].node;
		}
		if (it->v.info & BIT_SUB)
			rt_ydoc_rd_str(&r, &it->sub, &it->sub_len, NULL);
		it = &t->items[i]; /* root_get may not move items; nodes it may */
	} else if (left >= 0) {
		parent = t->items[left].parent;
		it->sub = t->items[left].sub;
		it->sub_len = t->items[left].sub_len;
	} else if (right >= 0) {
		parent = t->items[right].parent;
		it->sub = t->items[right].sub;
		it->sub_len = t->items[right].sub_len;
	}
	if (parent < 0) {
		it->is_gc = true;
		return;
	}
	it->parent = parent;
	it->left = left;
	it->right = right;
	struct tnode *pn = &t->nodes[parent];
	if (it->sub)
		pn->has_map = true;
	else
		pn->has_list = true;
	if ((left < 0 && (right < 0 || t->items[right].left >= 0)) ||
	    (left >= 0 && t->items[left].right != right)) {
		int32_t o;
		if (left >= 0)
			o = t->items[left].right;
		else if (it->sub)
			o = chain_start(t, parent, it->sub, it->sub_len);
		else
			o = pn->start;
		uint64_t before = ++*gen, conf = ++*gen;
		while (o >= 0 && o != right) {
			if (!t->budget) {
				t->is_truncated = true;
				break;
			}
			t->budget--;
			const struct titem *oi = &t->items[o];
			mark_before[o] = before;
			mark_conf[o] = conf;
			if (same_id(it->has_origin, &it->origin, oi->has_origin, &oi->origin)) {
				if (oi->client < it->client) {
					left = o;
					conf = ++*gen;
				} else if (same_id(it->has_rorigin, &it->rorigin, oi->has_rorigin,
						   &oi->rorigin)) {
					break;
				}
			} else {
				int32_t oo = oi->has_origin
					? rt_ydoc_tree_find(t, oi->origin.client, oi->origin.clock) : -1;
				if (oo >= 0 && mark_before[oo] == before) {
					if (mark_conf[oo] != conf) {
						left = o;
						conf = ++*gen;
					}
				} else {
					break;
				}
			}
			o = oi->right;
		}
		it->left = left;
	}
	if (it->left >= 0) {
		it->right = t->items[it->left].right;
		t->items[it->left].right = i;
	} else if (it->sub) {
		it->right = chain_start(t, parent, it->sub, it->sub_len);
	} else {
		it->right = pn->start;
		pn->start = i;
	}
	if (it->right >= 0) {
		t->items[it->right].left = i;
	} else if (it->sub) {
		struct tsub *s = sub_find(t, parent, it->sub, it->sub_len);
		if (s) {
			s->value = i;
		} else {
			s = sub_add(t, parent, it->sub, it->sub_len, i);
			s->next_key = t->nodes[parent].keys;
			t->nodes[parent].keys = s;
		}
	}
	if (it->v.ref == REF_TYPE) {
		int32_t n = node_new(t, i);
		struct rd r = {it->v.content, it->v.content + it->v.content_len, NULL, NULL};
		uint64_t ref;
		rt_ydoc_rd_uint(&r, &ref);
		t->nodes[n].type_ref = (uint8_t)ref;
		if (ref == TYPE_XML_ELEMENT || ref == TYPE_XML_HOOK)
			rt_ydoc_rd_str(&r, &t->nodes[n].tag, &t->nodes[n].tag_len, NULL);
		t->items[i].node = n;
	}
}

/* The first dependency of item i (origin, right origin, parent of another
 * client) not integrated yet: 0 when none, 1 with *wait the item to
 * integrate first, -1 when it can never be (Yjs keeps i pending). */
static int missing_dep(const struct ytree *t, int32_t i, int32_t *wait)
{
	const struct titem *it = &t->items[i];
	struct yid ids[3];
	size_t n = 0;
	if (it->v.ref == REF_GC)
		return 0;
	if (it->has_origin)
		ids[n++] = it->origin;
	if (it->has_rorigin)
		ids[n++] = it->rorigin;
	if (!it->off && !it->v.has_origin && !it->v.has_rorigin) {
		struct rd r = {it->v.parent, it->v.parent + it->v.parent_len, NULL, NULL};
		uint64_t is_key;
		rt_ydoc_rd_uint(&r, &is_key);
		if (is_key == 0) {
			rt_ydoc_rd_uint(&r, &ids[n].client);
			rt_ydoc_rd_uint(&r, &ids[n].clock);
			n++;
		}
	}
	for (size_t k = 0; k < n; k++) {
		if (ids[k].client == it->client)
			continue; /* before it: validated when it was decoded */
		const struct tclient *c = tclient_of(t, ids[k].client);
		if (!c || ids[k].clock >= c->avail)
			return -1;
		int32_t j = rt_ydoc_tree_find(t, ids[k].client, ids[k].clock);
		if (j < 0 || t->items[j].state == TI_PENDING)
			return -1;
		if (t->items[j].state == TI_DONE)
			continue;
		if (c->next >= c->n)
			return -1;
		*wait = (int32_t)(c->first + c->next);
		if (t->items[*wait].state == TI_STACKED)
			return -1; /* a cycle */
		return 1;
	}
	return 0;
}

static void pend_rest(struct ytree *t, struct tclient *c)
{
	for (size_t k = c->next; k < c->n; k++)
		t->items[c->first + k].state = TI_PENDING;
	c->next = c->n;
}

static bool in_ranges(const struct range *r, size_t n, uint64_t clock)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].clock + r[mid].len <= clock)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && r[lo].clock <= clock;
}

struct ytree *rt_ydoc_tree_build(const struct rt_ydoc *d)
{
	struct ytree *t = rt_xcalloc(1, sizeof *t);
	t->d = d;
	size_t n_clients = HASH_COUNT(d->clients);
	struct yclient **cs = rt_xcalloc(n_clients + 1, sizeof *cs);
	size_t k = 0;
	for (struct yclient *c = d->clients; c; c = c->hh.next)
		cs[k++] = c;
	qsort(cs, n_clients, sizeof *cs, cmp_client_asc);
	struct tclient **tcs = rt_xcalloc(n_clients + 1, sizeof *tcs);
	for (size_t i = 0; i < n_clients; i++) {
		struct tclient *c = rt_xcalloc(1, sizeof *c);
		c->id = cs[i]->id;
		for (size_t p = 0; p < cs[i]->n && cs[i]->pieces[p].clock == c->avail; p++)
			c->avail += cs[i]->pieces[p].len;
		HASH_ADD(hh, t->clients, id, sizeof c->id, c);
		tcs[i] = c;
	}
	/* split points: every reference names a whole item; deletions too */
	size_t n_max = 0;
	for (size_t i = 0; i < n_clients; i++) {
		const struct yclient *c = cs[i];
		for (size_t p = 0; p < c->n; p++) {
			struct sview v;
			rt_ydoc_view_struct(c->pieces[p].p, &v);
			if (v.ref == REF_GC)
				continue;
			if (v.has_origin)
				add_split(t, v.origin.client, v.origin.clock + 1);
			if (v.has_rorigin)
				add_split(t, v.rorigin.client, v.rorigin.clock);
		}
		for (size_t r = 0; r < c->n_del; r++) {
			add_split(t, c->id, c->del[r].clock);
			add_split(t, c->id, c->del[r].clock + c->del[r].len);
		}
		n_max += c->n;
	}
	for (size_t i = 0; i < n_clients; i++) {
		if (tcs[i]->n_splits)
			qsort(tcs[i]->splits, tcs[i]->n_splits, sizeof(uint64_t), cmp_u64);
		n_max += tcs[i]->n_splits;
	}
	if (n_max > RT_YDOC_TREE_MAX_ITEMS) {
		t->is_truncated = true;
		goto out;
	}
	t->items = rt_xcalloc(n_max + 1, sizeof *t->items);
	for (size_t i = 0; i < n_clients; i++) {
		const struct yclient *c = cs[i];
		struct tclient *tc = tcs[i];
		tc->first = t->n_items;
		size_t s = 0;
		for (size_t p = 0; p < c->n; p++) {
			const struct piece *pc = &c->pieces[p];
			struct sview v;
			rt_ydoc_view_struct(pc->p, &v);
			uint64_t at = pc->clock, end = pc->clock + pc->len;
			while (at < end) {
				while (s < tc->n_splits && tc->splits[s] <= at)
					s++;
				uint64_t stop = end;
				if (v.ref != REF_GC && s < tc->n_splits && tc->splits[s] < end)
					stop = tc->splits[s];
				struct titem *it = &t->items[t->n_items++];
				it->client = c->id;
				it->clock = at;
				it->len = stop - at;
				it->off = pc->off + (at - pc->clock);
				it->p = pc->p;
				it->v = v;
				if (it->off) {
					it->has_origin = true;
					it->origin = (struct yid){c->id, at - 1};
				} else {
					it->has_origin = v.has_origin;
					it->origin = v.origin;
				}
				it->has_rorigin = v.has_rorigin;
				it->rorigin = v.rorigin;
				it->left = it->right = it->parent = it->node = -1;
				it->is_deleted = in_ranges(c->del, c->n_del, at);
				at = stop;
			}
		}
		tc->n = t->n_items - tc->first;
	}
	/* integrate, depth first from dependencies */
	uint64_t *mark_before = rt_xcalloc(t->n_items + 1, sizeof *mark_before);
	uint64_t *mark_conf = rt_xcalloc(t->n_items + 1, sizeof *mark_conf);
	int32_t *order = rt_xcalloc(t->n_items + 1, sizeof *order);
	int32_t *stack = rt_xcalloc(t->n_items + 1, sizeof *stack);
	size_t n_order = 0;
	uint64_t gen = 0;
	t->budget = RT_YDOC_TREE_STEPS_PER_ITEM * (uint64_t)t->n_items + RT_YDOC_TREE_STEPS_MIN;
	for (size_t i = 0; i < n_clients; i++) {
		struct tclient *tc = tcs[i];
		while (tc->next < tc->n) {
			size_t sp = 0;
			stack[sp++] = (int32_t)(tc->first + tc->next);
			t->items[stack[0]].state = TI_STACKED;
			if (t->is_truncated) {
				pend_rest(t, tc);
				break;
			}
			while (sp) {
				int32_t top = stack[sp - 1];
				struct titem *it = &t->items[top];
				if (it->state == TI_DONE || it->state == TI_PENDING) {
					sp--;
					continue;
				}
				struct tclient *own = tclient_of(t, it->client);
				if (it->clock >= own->avail) {
					pend_rest(t, own);
					sp--;
					continue;
				}
				int32_t wait = -1;
				int dep = missing_dep(t, top, &wait);
				if (dep > 0) {
					t->items[wait].state = TI_STACKED;
					stack[sp++] = wait;
					continue;
				}
				sp--;
				if (dep < 0) {
					pend_rest(t, own);
					continue;
				}
				integrate(t, top, mark_before, mark_conf, &gen);
				t->items[top].state = TI_DONE;
				own->next++;
				order[n_order++] = top;
			}
		}
	}
	/* deletions Yjs makes as it integrates: a map value that is not the
	 * last of its chain, everything under a deleted type */
	for (size_t i = 0; i < n_order; i++) {
		struct titem *it = &t->items[order[i]];
		if (it->is_gc)
			continue;
		if (it->sub && it->right >= 0)
			it->is_deleted = true;
		if (t->nodes[it->parent].is_deleted)
			it->is_deleted = true;
		if (it->node >= 0)
			t->nodes[it->node].is_deleted = it->is_deleted;
	}
	free(mark_before);
	free(mark_conf);
	free(order);
	free(stack);
out:
	free(tcs);
	free(cs);
	return t;
}

void rt_ydoc_tree_free(struct ytree *t)
{
	if (!t)
		return;
	struct tsub *s, *st;
	HASH_ITER(hh, t->subs, s, st) {
		HASH_DEL(t->subs, s);
		free(s->hk);
		free(s);
	}
	struct tclient *c, *ct;
	HASH_ITER(hh, t->clients, c, ct) {
		HASH_DEL(t->clients, c);
		free(c->splits);
		free(c);
	}
	free(t->items);
	free(t->nodes);
	free(t);
}
