/*
 * The JSON of a document's shared types (Y.Doc's toJSON): the document
 * integrated (ydoc_tree.c), then every root type rendered as Yjs renders
 * it: Y.Map an object of each key's last value, Y.Array an array, Y.Text a
 * string (or its delta), XML types as their toString; embedded content as
 * lib0 Any, JSON, base64 for binary, a reference for subdocuments.
 *
 * An update does not say of which type a root is (a client names it with
 * getMap, getText...): it is inferred from the items it has held
 * (docs/collab.md, "REST").
 */
#include "collab/collab.h"

#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "collab/ydoc_int.h"
#include "common/alloc.h"

#define MAX_TYPE_DEPTH 256 /* nested shared types rendered; deeper ones are null */

struct render {
	const struct ytree *t;
	bool is_delta;
};

static json_t *render_node(const struct render *rn, int32_t node, unsigned depth);

static json_t *base64(const uint8_t *p, size_t n)
{
	char *out = rt_xmalloc(4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	json_t *s = json_stringn(out, (size_t)(len > 0 ? len : 0));
	free(out);
	return s;
}

/* lib0 varInt: the value as a JavaScript number */
static bool rd_varint(struct rd *r, double *out)
{
	uint8_t b;
	if (!rt_ydoc_rd_u8(r, &b))
		return false;
	bool neg = b & 0x40;
	uint64_t num = b & 0x3f;
	unsigned shift = 6;
	while (b & 0x80) {
		if (shift > 56 || !rt_ydoc_rd_u8(r, &b))
			return false;
		num |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	}
	*out = neg ? -(double)num : (double)num;
	return true;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static json_t *number(double v)
{
	if (isnan(v) || isinf(v))
		return json_null(); /* as JSON.stringify */
	if (v == floor(v) && fabs(v) <= 9007199254740991.0)
		return json_integer((json_int_t)v);
	return json_real(v);
}

/* lib0 readAny: one value as JSON; *is_undef for undefined (out NULL). */
static json_t *rd_any_json(struct rd *r, bool *is_undef)
{
	uint8_t tag;
	const uint8_t *p;
	uint64_t n;
	*is_undef = false;
	if (!rt_ydoc_rd_u8(r, &tag))
		return NULL;
	switch (tag) {
	case 127:
		*is_undef = true;
		return NULL;
	case 126:
		return json_null();
	case 125: {
		double v;
		return rd_varint(r, &v) ? number(v) : NULL;
	}
	case 124: {
		if (!rt_ydoc_rd_bytes(r, 4, &p))
			return NULL;
		uint32_t u = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		float f;
		memcpy(&f, &u, 4);
		return number((double)f);
	}
	case 123: {
		if (!rt_ydoc_rd_bytes(r, 8, &p))
			return NULL;
		uint64_t u = be64(p);
		double f;
		memcpy(&f, &u, 8);
		return number(f);
	}
	case 122: {
		if (!rt_ydoc_rd_bytes(r, 8, &p))
			return NULL;
		return json_integer((json_int_t)be64(p)); /* a BigInt */
	}
	case 121:
		return json_false();
	case 120:
		return json_true();
	case 119: {
		const uint8_t *s;
		size_t sn;
		return rt_ydoc_rd_str(r, &s, &sn, NULL) ? json_stringn((const char *)s, sn) : NULL;
	}
	case 118: {
		if (!rt_ydoc_rd_uint(r, &n))
			return NULL;
		json_t *o = json_object();
		for (uint64_t i = 0; i < n; i++) {
			const uint8_t *k;
			size_t kn;
			bool undef;
			if (!rt_ydoc_rd_str(r, &k, &kn, NULL)) {
				json_decref(o);
				return NULL;
			}
			json_t *v = rd_any_json(r, &undef);
			if (!v && !undef) {
				json_decref(o);
				return NULL;
			}
			if (v)
				json_object_setn_new(o, (const char *)k, kn, v);
			else
				json_object_deln(o, (const char *)k, kn); /* JSON.stringify drops it */
		}
		return o;
	}
	case 117: {
		if (!rt_ydoc_rd_uint(r, &n))
			return NULL;
		json_t *a = json_array();
		for (uint64_t i = 0; i < n; i++) {
			bool undef;
			json_t *v = rd_any_json(r, &undef);
			if (!v && !undef) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, v ? v : json_null());
		}
		return a;
	}
	case 116:
		if (!rt_ydoc_rd_uint(r, &n) || !rt_ydoc_rd_bytes(r, (size_t)n, &p))
			return NULL;
		return base64(p, (size_t)n);
	default:
		return NULL;
	}
}

/* A JSON string of ContentJSON / ContentEmbed / ContentFormat; NULL for
 * "undefined". */
static json_t *parse_json(const uint8_t *s, size_t n)
{
	if (n == 9 && !memcmp(s, "undefined", 9))
		return NULL;
	json_error_t e;
	json_t *v = json_loadb((const char *)s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!v) /* an integer past 64 bits: a double, as JSON.parse reads it */
		v = json_loadb((const char *)s, n,
			       JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
	return v ? v : json_null();
}

/* Calls fn with each element item i holds (its part of the struct's
 * content): NULL for undefined. Countable contents only. */
static void each_value(const struct render *rn, int32_t i, unsigned depth,
		       void (*fn)(json_t *v, void *ctx), void *ctx)
{
	const struct titem *it = &rn->t->items[i];
	const struct sview *v = &it->v;
	struct rd r = {v->content, v->content + v->content_len, NULL, NULL};
	uint64_t count;
	switch (v->ref) {
	case REF_ANY:
		rt_ydoc_rd_uint(&r, &count);
		for (uint64_t k = 0; k < it->off + it->len && !r.err; k++) {
			bool undef;
			json_t *x = rd_any_json(&r, &undef);
			if (k >= it->off)
				fn(x, ctx);
			else
				json_decref(x);
		}
		break;
	case REF_JSON:
		rt_ydoc_rd_uint(&r, &count);
		for (uint64_t k = 0; k < it->off + it->len && !r.err; k++) {
			const uint8_t *s;
			size_t sn;
			rt_ydoc_rd_str(&r, &s, &sn, NULL);
			if (k >= it->off)
				fn(parse_json(s, sn), ctx);
		}
		break;
	case REF_BINARY: {
		uint64_t n;
		const uint8_t *p;
		rt_ydoc_rd_uint(&r, &n);
		rt_ydoc_rd_bytes(&r, (size_t)n, &p);
		fn(base64(p, (size_t)n), ctx);
		break;
	}
	case REF_STRING: /* in a list that is not a text: one string per unit */
		for (uint64_t k = 0; k < it->len; k++) {
			struct rt_buf b;
			rt_buf_init(&b);
			rt_ydoc_str_slice(v, it->off + k, 1, &b);
			fn(json_stringn(b.data ? b.data : "", b.len), ctx);
			rt_buf_deinit(&b);
		}
		break;
	case REF_EMBED: {
		const uint8_t *s;
		size_t sn;
		rt_ydoc_rd_str(&r, &s, &sn, NULL);
		json_t *x = parse_json(s, sn);
		fn(x ? x : json_null(), ctx);
		break;
	}
	case REF_TYPE:
		fn(it->node >= 0 ? render_node(rn, it->node, depth + 1) : json_null(), ctx);
		break;
	case REF_DOC: {
		const uint8_t *s;
		size_t sn;
		rt_ydoc_rd_str(&r, &s, &sn, NULL);
		fn(json_pack("{s:s%}", "guid", (const char *)s, sn), ctx);
		break;
	}
	default: /* Deleted, Format, GC: not countable */
		break;
	}
}

static bool is_visible(const struct titem *it)
{
	return !it->is_gc && !it->is_deleted && it->state == TI_DONE;
}

static void push_array(json_t *v, void *ctx)
{
	json_array_append_new(ctx, v ? v : json_null());
}

static void keep_last(json_t *v, void *ctx)
{
	json_t **last = ctx;
	json_decref(*last);
	*last = v; /* NULL: undefined */
}

static json_t *render_array(const struct render *rn, const struct tnode *n, unsigned depth)
{
	json_t *a = json_array();
	for (int32_t i = n->start; i >= 0; i = rn->t->items[i].right)
		if (is_visible(&rn->t->items[i]))
			each_value(rn, i, depth, push_array, a);
	return a;
}

struct map_ctx {
	const struct render *rn;
	json_t *obj;
	unsigned depth;
};

static void map_entry(const uint8_t *key, size_t key_len, int32_t item, void *ctx)
{
	struct map_ctx *mc = ctx;
	const struct titem *it = &mc->rn->t->items[item];
	if (!is_visible(it))
		return;
	json_t *last = NULL;
	each_value(mc->rn, item, mc->depth, keep_last, &last);
	if (last) /* undefined, or content without a value: no member, as JSON.stringify */
		json_object_setn_new(mc->obj, (const char *)key, key_len, last);
}

static json_t *render_map(const struct render *rn, int32_t node, unsigned depth)
{
	struct map_ctx mc = {rn, json_object(), depth};
	rt_ydoc_tree_map_each(rn->t, node, map_entry, &mc);
	return mc.obj;
}

/* YText.toDelta: strings under the same attributes as one insert; embeds
 * and nested types as inserts of their own; a visible format item ends the
 * current insert and sets (or, with null, removes) its attribute. */
static json_t *text_delta(const struct render *rn, const struct tnode *n, unsigned depth)
{
	json_t *ops = json_array(), *attrs = json_object();
	struct rt_buf str;
	rt_buf_init(&str);
#define PACK()                                                                          \
	do {                                                                            \
		if (str.len) {                                                          \
			json_t *op = json_pack("{s:s%}", "insert", str.data, str.len);  \
			if (json_object_size(attrs))                                    \
				json_object_set_new(op, "attributes", json_deep_copy(attrs)); \
			json_array_append_new(ops, op);                                 \
			rt_buf_reset(&str);                                             \
		}                                                                       \
	} while (0)
	for (int32_t i = n->start; i >= 0; i = rn->t->items[i].right) {
		const struct titem *it = &rn->t->items[i];
		if (!is_visible(it))
			continue;
		switch (it->v.ref) {
		case REF_STRING:
			rt_ydoc_str_slice(&it->v, it->off, it->len, &str);
			break;
		case REF_FORMAT: {
			PACK();
			struct rd r = {it->v.content, it->v.content + it->v.content_len, NULL, NULL};
			const uint8_t *k, *s;
			size_t kn, sn;
			rt_ydoc_rd_str(&r, &k, &kn, NULL);
			rt_ydoc_rd_str(&r, &s, &sn, NULL);
			json_t *v = parse_json(s, sn);
			if (!v || json_is_null(v)) {
				json_object_deln(attrs, (const char *)k, kn);
				json_decref(v);
			} else {
				json_object_setn_new(attrs, (const char *)k, kn, v);
			}
			break;
		}
		case REF_EMBED:
		case REF_TYPE: {
			PACK();
			json_t *a = json_array();
			each_value(rn, i, depth, push_array, a);
			json_t *op = json_pack("{s:O}", "insert", json_array_get(a, 0));
			json_decref(a);
			if (json_object_size(attrs))
				json_object_set_new(op, "attributes", json_deep_copy(attrs));
			json_array_append_new(ops, op);
			break;
		}
		default:
			break;
		}
	}
	PACK();
#undef PACK
	rt_buf_deinit(&str);
	json_decref(attrs);
	return ops;
}

/* JavaScript's String(v) of an attribute value, as a template literal
 * renders it. */
static void js_string(struct rt_buf *b, const json_t *v)
{
	if (json_is_string(v)) {
		rt_buf_append(b, json_string_value(v), json_string_length(v));
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i)
				rt_buf_append_byte(b, ',');
			const json_t *e = json_array_get(v, i);
			if (!json_is_null(e))
				js_string(b, e);
		}
	} else if (json_is_object(v)) {
		rt_buf_append_str(b, "[object Object]");
	} else {
		char *s = json_dumps(v, JSON_ENCODE_ANY);
		if (s)
			rt_buf_append_str(b, s);
		free(s);
	}
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void xml_string(const struct render *rn, int32_t node, unsigned depth, struct rt_buf *b);

/* YXmlText.toString: each delta insert inside its attributes as tags
 * (attribute names sorted, their keys sorted). */
static void xml_text_string(const struct render *rn, const struct tnode *n, unsigned depth,
			    struct rt_buf *b)
{
	json_t *ops = text_delta(rn, n, depth);
	size_t i;
	json_t *op;
	json_array_foreach(ops, i, op) {
		json_t *attrs = json_object_get(op, "attributes");
		size_t na = json_object_size(attrs);
		const char **names = rt_xcalloc(na + 1, sizeof *names);
		size_t k = 0;
		const char *key;
		json_t *val;
		json_object_foreach(attrs, key, val)
			names[k++] = key;
		qsort(names, na, sizeof *names, cmp_key);
		for (k = 0; k < na; k++) {
			rt_buf_printf(b, "<%s", names[k]);
			json_t *av = json_object_get(attrs, names[k]);
			if (json_is_object(av)) {
				size_t nk = json_object_size(av), q = 0;
				const char **ks = rt_xcalloc(nk + 1, sizeof *ks);
				const char *ak;
				json_t *x;
				json_object_foreach(av, ak, x)
					ks[q++] = ak;
				qsort(ks, nk, sizeof *ks, cmp_key);
				for (q = 0; q < nk; q++) {
					rt_buf_printf(b, " %s=\"", ks[q]);
					js_string(b, json_object_get(av, ks[q]));
					rt_buf_append_byte(b, '"');
				}
				free(ks);
			}
			rt_buf_append_byte(b, '>');
		}
		js_string(b, json_object_get(op, "insert"));
		for (k = na; k-- > 0;)
			rt_buf_printf(b, "</%s>", names[k]);
		free(names);
	}
	json_decref(ops);
}

/* The children of an XML node, each as its toString. */
static void xml_children(const struct render *rn, const struct tnode *n, unsigned depth,
			 struct rt_buf *b)
{
	for (int32_t i = n->start; i >= 0; i = rn->t->items[i].right) {
		const struct titem *it = &rn->t->items[i];
		if (!is_visible(it))
			continue;
		if (it->v.ref == REF_TYPE && it->node >= 0) {
			xml_string(rn, it->node, depth + 1, b);
		} else {
			json_t *a = json_array();
			each_value(rn, i, depth, push_array, a);
			size_t k;
			json_t *v;
			json_array_foreach(a, k, v)
				js_string(b, v);
			json_decref(a);
		}
	}
}

struct attr_ctx {
	const struct render *rn;
	json_t *obj;
	unsigned depth;
};

static void xml_string(const struct render *rn, int32_t node, unsigned depth, struct rt_buf *b)
{
	const struct tnode *n = &rn->t->nodes[node];
	if (depth > MAX_TYPE_DEPTH)
		return;
	switch (n->type_ref) {
	case TYPE_XML_TEXT:
		xml_text_string(rn, n, depth, b);
		break;
	case TYPE_XML_ELEMENT: {
		json_t *attrs = render_map(rn, node, depth);
		size_t na = json_object_size(attrs), k = 0;
		const char **names = rt_xcalloc(na + 1, sizeof *names);
		const char *key;
		json_t *val;
		json_object_foreach(attrs, key, val)
			names[k++] = key;
		qsort(names, na, sizeof *names, cmp_key);
		/* nodeName.toLocaleLowerCase(): ASCII letters (XML names in practice) */
		char *tag = rt_xmalloc(n->tag_len + 1);
		for (k = 0; k < n->tag_len; k++) {
			char c = (char)n->tag[k];
			tag[k] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
		tag[n->tag_len] = '\0';
		rt_buf_printf(b, "<%s", tag);
		for (k = 0; k < na; k++) {
			rt_buf_printf(b, " %s=\"", names[k]);
			js_string(b, json_object_get(attrs, names[k]));
			rt_buf_append_byte(b, '"');
		}
		rt_buf_append_byte(b, '>');
		xml_children(rn, n, depth, b);
		rt_buf_printf(b, "</%s>", tag);
		free(tag);
		free(names);
		json_decref(attrs);
		break;
	}
	case TYPE_XML_FRAGMENT:
		xml_children(rn, n, depth, b);
		break;
	default: { /* a type that is not XML inside XML: String() of its JSON */
		json_t *v = render_node(rn, node, depth);
		js_string(b, v);
		json_decref(v);
		break;
	}
	}
}

static json_t *render_node(const struct render *rn, int32_t node, unsigned depth)
{
	const struct tnode *n = &rn->t->nodes[node];
	if (depth > MAX_TYPE_DEPTH)
		return json_null();
	switch (n->type_ref) {
	case TYPE_ARRAY:
		return render_array(rn, n, depth);
	case TYPE_MAP:
	case TYPE_XML_HOOK: /* a Y.Map with a hook name */
		return render_map(rn, node, depth);
	case TYPE_TEXT: {
		if (rn->is_delta)
			return text_delta(rn, n, depth);
		struct rt_buf b;
		rt_buf_init(&b);
		for (int32_t i = n->start; i >= 0; i = rn->t->items[i].right) {
			const struct titem *it = &rn->t->items[i];
			if (is_visible(it) && it->v.ref == REF_STRING)
				rt_ydoc_str_slice(&it->v, it->off, it->len, &b);
		}
		json_t *s = json_stringn(b.data ? b.data : "", b.len);
		rt_buf_deinit(&b);
		return s;
	}
	default: {
		struct rt_buf b;
		rt_buf_init(&b);
		xml_string(rn, node, depth, &b);
		json_t *s = json_stringn(b.data ? b.data : "", b.len);
		rt_buf_deinit(&b);
		return s;
	}
	}
}

/* A root's type from the items it has held: text content makes a Y.Text,
 * XML nodes only a Y.XmlFragment, other list content a Y.Array, keys only
 * a Y.Map. */
static uint8_t root_type(const struct ytree *t, int32_t node)
{
	const struct tnode *n = &t->nodes[node];
	if (!n->has_list)
		return TYPE_MAP;
	bool is_xml = false, is_other = false;
	for (int32_t i = n->start; i >= 0; i = t->items[i].right) {
		const struct titem *it = &t->items[i];
		uint8_t ref = it->v.ref;
		if (ref == REF_STRING || ref == REF_FORMAT || ref == REF_EMBED)
			return TYPE_TEXT;
		if (ref == REF_TYPE && it->node >= 0) {
			uint8_t tr = t->nodes[it->node].type_ref;
			if (tr == TYPE_XML_ELEMENT || tr == TYPE_XML_TEXT || tr == TYPE_XML_HOOK)
				is_xml = true;
			else
				is_other = true;
		} else if (ref != REF_DELETED) {
			is_other = true;
		}
	}
	return is_xml && !is_other ? TYPE_XML_FRAGMENT : TYPE_ARRAY;
}

char *rt_ydoc_json(const struct rt_ydoc *d, bool is_delta)
{
	struct ytree *t = rt_ydoc_tree_build(d);
	if (t->is_truncated) {
		rt_ydoc_tree_free(t);
		return NULL;
	}
	struct render rn = {t, is_delta};
	json_t *o = json_object();
	for (size_t i = 0; i < t->n_nodes; i++) {
		struct tnode *n = &t->nodes[i];
		if (n->item >= 0)
			continue;
		n->type_ref = root_type(t, (int32_t)i);
		json_object_setn_new(o, (const char *)n->name, n->name_len,
				     render_node(&rn, (int32_t)i, 0));
	}
	char *txt = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(o);
	rt_ydoc_tree_free(t);
	return txt ? txt : rt_xstrdup("{}");
}
