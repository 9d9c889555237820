/*
 * Yjs updates, format v1 (yjs src/utils/updates.js, UpdateEncoderV1 and
 * UpdateDecoderV1 over lib0 encoding): decoding with validation, a document
 * state made of the structs it has per client and its delete set, and
 * encoding that state whole, from a state vector on, or with deleted
 * content dropped.
 *
 * The state keeps copies of the updates it accepted ("blobs"); a piece is a
 * clock range of one struct inside a blob, so slicing a struct never copies
 * it. Structs are parsed again when they are written.
 */
#include "collab/collab.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/alloc.h"
#include "common/err.h"

enum { REF_GC = 0, REF_DELETED = 1, REF_JSON = 2, REF_BINARY = 3, REF_STRING = 4,
       REF_EMBED = 5, REF_FORMAT = 6, REF_TYPE = 7, REF_ANY = 8, REF_DOC = 9, REF_SKIP = 10 };

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

static bool rd_fail(struct rd *r, const char *why)
{
	if (!r->err) {
		r->err = why;
		r->fail_at = r->p;
	}
	r->p = r->end;
	return false;
}

static bool rd_u8(struct rd *r, uint8_t *v)
{
	if (r->p >= r->end)
		return rd_fail(r, "truncated");
	*v = *r->p++;
	return true;
}

/* lib0 varUint: 7 bits per byte, little-endian groups, at most 2^53 - 1. */
static bool rd_uint(struct rd *r, uint64_t *v)
{
	uint64_t num = 0;
	for (unsigned shift = 0; shift < 63; shift += 7) {
		uint8_t b;
		if (!rd_u8(r, &b))
			return false;
		num |= (uint64_t)(b & 0x7f) << shift;
		if (num > RT_YDOC_MAX_CLOCK)
			return rd_fail(r, "integer over 2^53");
		if (!(b & 0x80)) {
			*v = num;
			return true;
		}
	}
	return rd_fail(r, "integer over 2^53");
}

/* lib0 varInt: sign and 6 bits in the first byte, then 7 bits per byte. */
static bool rd_int(struct rd *r)
{
	uint8_t b;
	if (!rd_u8(r, &b))
		return false;
	uint64_t num = b & 0x3f;
	for (unsigned shift = 6; b & 0x80; shift += 7) {
		if (shift > 56 || !rd_u8(r, &b))
			return rd_fail(r, "integer over 2^53");
		num |= (uint64_t)(b & 0x7f) << shift;
		if (num > RT_YDOC_MAX_CLOCK)
			return rd_fail(r, "integer over 2^53");
	}
	return true;
}

static bool rd_bytes(struct rd *r, size_t n, const uint8_t **out)
{
	if ((size_t)(r->end - r->p) < n)
		return rd_fail(r, "truncated");
	*out = r->p;
	r->p += n;
	return true;
}

/* Strict UTF-8 (what TextDecoder with fatal: true accepts); *units gets the
 * length in UTF-16 code units, as JavaScript counts a string. */
static bool utf8_units(const uint8_t *s, size_t n, uint64_t *units)
{
	uint64_t u = 0;
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		uint32_t cp, min;
		size_t need;
		if (c < 0x80) {
			i++;
			u++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			cp = c & 0x1f, need = 1, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			cp = c & 0x0f, need = 2, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			cp = c & 0x07, need = 3, min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		u += cp >= 0x10000 ? 2 : 1;
		i += need + 1;
	}
	*units = u;
	return true;
}

/* lib0 varString: byte length, then UTF-8. */
static bool rd_str(struct rd *r, const uint8_t **s, size_t *n, uint64_t *units)
{
	uint64_t len, u;
	const uint8_t *p;
	if (!rd_uint(r, &len) || !rd_bytes(r, (size_t)len, &p))
		return false;
	if (!utf8_units(p, (size_t)len, &u))
		return rd_fail(r, "invalid UTF-8 in a string");
	if (s)
		*s = p;
	if (n)
		*n = (size_t)len;
	if (units)
		*units = u;
	return true;
}

/* A string that JSON.parse accepts (and, with allow_undefined, "undefined",
 * which ContentJSON reads as undefined). */
static bool rd_json(struct rd *r, bool allow_undefined)
{
	const uint8_t *s;
	size_t n;
	if (!rd_str(r, &s, &n, NULL))
		return false;
	if (allow_undefined && n == 9 && !memcmp(s, "undefined", 9))
		return true;
	json_error_t e;
	json_t *v = json_loadb((const char *)s, n,
			       JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &e);
	if (!v)
		return rd_fail(r, "a JSON string that does not parse");
	json_decref(v);
	return true;
}

/* lib0 readAny: one value. */
static bool rd_any(struct rd *r, unsigned depth)
{
	uint8_t tag;
	uint64_t n;
	const uint8_t *p;
	if (!rd_u8(r, &tag))
		return false;
	switch (tag) {
	case 127: /* undefined */
	case 126: /* null */
	case 121: /* false */
	case 120: /* true */
		return true;
	case 125:
		return rd_int(r);
	case 124:
		return rd_bytes(r, 4, &p);
	case 123:
	case 122:
		return rd_bytes(r, 8, &p);
	case 119:
		return rd_str(r, NULL, NULL, NULL);
	case 118:
	case 117:
		if (depth >= RT_YDOC_MAX_DEPTH)
			return rd_fail(r, "Any value nested too deep");
		if (!rd_uint(r, &n))
			return false;
		if (n > (uint64_t)(r->end - r->p))
			return rd_fail(r, "truncated");
		for (uint64_t i = 0; i < n; i++)
			if ((tag == 118 && !rd_str(r, NULL, NULL, NULL)) || !rd_any(r, depth + 1))
				return false;
		return true;
	case 116:
		return rd_uint(r, &n) && rd_bytes(r, (size_t)n, &p);
	default:
		return rd_fail(r, "unknown Any type");
	}
}

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

/*
 * Reads one struct of client at clock. Validates everything a Yjs client's
 * decoder would throw on, and references to its own client that are not
 * before it (Yjs would look them up in its own store and fail).
 */
static bool rd_struct(struct rd *r, uint64_t client, uint64_t clock, struct sview *v)
{
	memset(v, 0, sizeof *v);
	if (!rd_u8(r, &v->info))
		return false;
	v->ref = v->info & 0x1f;
	if (v->ref == REF_GC || v->ref == REF_SKIP) {
		if (!rd_uint(r, &v->len))
			return false;
		goto check_len;
	}
	if (v->info & BIT_ORIGIN) {
		v->has_origin = true;
		if (!rd_uint(r, &v->origin.client) || !rd_uint(r, &v->origin.clock))
			return false;
		if (v->origin.client == client && v->origin.clock >= clock)
			return rd_fail(r, "an origin at or after its own struct");
	}
	if (v->info & BIT_RORIGIN) {
		v->has_rorigin = true;
		if (!rd_uint(r, &v->rorigin.client) || !rd_uint(r, &v->rorigin.clock))
			return false;
		if (v->rorigin.client == client && v->rorigin.clock >= clock)
			return rd_fail(r, "a right origin at or after its own struct");
	}
	v->parent = r->p;
	if (!v->has_origin && !v->has_rorigin) {
		uint64_t is_key;
		if (!rd_uint(r, &is_key))
			return false;
		if (is_key == 1) {
			if (!rd_str(r, NULL, NULL, NULL))
				return false;
		} else if (is_key == 0) {
			struct yid pid;
			if (!rd_uint(r, &pid.client) || !rd_uint(r, &pid.clock))
				return false;
			if (pid.client == client && pid.clock >= clock)
				return rd_fail(r, "a parent at or after its own struct");
		} else {
			return rd_fail(r, "bad parent info");
		}
		if ((v->info & BIT_SUB) && !rd_str(r, NULL, NULL, NULL))
			return false;
	}
	v->parent_len = (size_t)(r->p - v->parent);
	v->content = r->p;
	uint64_t n, type_ref;
	const uint8_t *p;
	switch (v->ref) {
	case REF_DELETED:
		if (!rd_uint(r, &v->len))
			return false;
		break;
	case REF_JSON:
		if (!rd_uint(r, &n))
			return false;
		if (n > (uint64_t)(r->end - r->p))
			return rd_fail(r, "truncated");
		for (uint64_t i = 0; i < n; i++)
			if (!rd_json(r, true))
				return false;
		v->len = n;
		break;
	case REF_BINARY:
		if (!rd_uint(r, &n) || !rd_bytes(r, (size_t)n, &p))
			return false;
		v->len = 1;
		break;
	case REF_STRING:
		if (!rd_str(r, NULL, NULL, &v->len))
			return false;
		break;
	case REF_EMBED:
		if (!rd_json(r, false))
			return false;
		v->len = 1;
		break;
	case REF_FORMAT:
		if (!rd_str(r, NULL, NULL, NULL) || !rd_json(r, false))
			return false;
		v->len = 1;
		break;
	case REF_TYPE:
		if (!rd_uint(r, &type_ref))
			return false;
		if (type_ref >= N_TYPE_REFS)
			return rd_fail(r, "unknown type ref");
		if ((type_ref == 3 || type_ref == 5) && !rd_str(r, NULL, NULL, NULL))
			return false;
		v->len = 1;
		break;
	case REF_ANY:
		if (!rd_uint(r, &n))
			return false;
		if (n > (uint64_t)(r->end - r->p))
			return rd_fail(r, "truncated");
		for (uint64_t i = 0; i < n; i++)
			if (!rd_any(r, 0))
				return false;
		v->len = n;
		break;
	case REF_DOC:
		if (!rd_str(r, NULL, NULL, NULL) || !rd_any(r, 0))
			return false;
		v->len = 1;
		break;
	default:
		return rd_fail(r, "unknown content ref");
	}
	v->content_len = (size_t)(r->p - v->content);
check_len:
	if (!v->len)
		return rd_fail(r, "an empty struct");
	if (v->len > RT_YDOC_MAX_CLOCK - clock)
		return rd_fail(r, "clock over 2^53");
	return true;
}

/* Parses a struct already validated (inside a kept blob). */
static void view_struct(const uint8_t *p, struct sview *v)
{
	struct rd r = {p, p + RT_YDOC_MAX_UPDATE + 16, NULL, NULL};
	/* no client is UINT64_MAX: the own-client checks, passed when the bytes
	 * were accepted, are not made again */
	rd_struct(&r, UINT64_MAX, 0, v);
}

/* ---- decoded updates ---- */

struct dstruct {
	uint64_t client, clock, len;
	const uint8_t *p;
	uint8_t ref;
};

struct drange {
	uint64_t client, clock, len;
};

struct dupd {
	struct dstruct *s;
	size_t n_s, cap_s;
	struct drange *d;
	size_t n_d, cap_d;
};

static void dupd_deinit(struct dupd *u)
{
	free(u->s);
	free(u->d);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Decodes a whole update into u. Returns 0 or RT_EPROTO with err. */
static int decode_update(const uint8_t *data, size_t len, struct dupd *u, char *err, size_t err_cap)
{
	struct rd r = {data, data + len, NULL, NULL};
	uint64_t n_clients;
	memset(u, 0, sizeof *u);
	uint64_t *seen = NULL;
	if (!rd_uint(&r, &n_clients))
		goto fail;
	if (n_clients > len) {
		rd_fail(&r, "truncated"); /* a client takes three bytes at least */
		goto fail;
	}
	seen = rt_xcalloc(n_clients + 1, sizeof *seen);
	for (uint64_t i = 0; i < n_clients && !r.err; i++) {
		uint64_t n_structs, client, clock;
		if (!rd_uint(&r, &n_structs) || !rd_uint(&r, &client) || !rd_uint(&r, &clock))
			break;
		if (n_structs > (uint64_t)(r.end - r.p)) {
			rd_fail(&r, "truncated");
			break;
		}
		seen[i] = client;
		for (uint64_t k = 0; k < n_structs; k++) {
			struct sview v;
			const uint8_t *p = r.p;
			if (!rd_struct(&r, client, clock, &v))
				break;
			if (u->n_s == u->cap_s) {
				u->cap_s = u->cap_s ? 2 * u->cap_s : 16;
				u->s = rt_xrealloc(u->s, u->cap_s * sizeof *u->s);
			}
			u->s[u->n_s++] = (struct dstruct){client, clock, v.len, p, v.ref};
			clock += v.len;
		}
	}
	if (r.err)
		goto fail;
	qsort(seen, (size_t)n_clients, sizeof *seen, cmp_u64);
	for (uint64_t i = 1; i < n_clients; i++)
		if (seen[i] == seen[i - 1]) {
			rd_fail(&r, "a client listed twice");
			goto fail;
		}
	uint64_t n_del;
	if (!rd_uint(&r, &n_del))
		goto fail;
	for (uint64_t i = 0; i < n_del && !r.err; i++) {
		uint64_t client, n;
		if (!rd_uint(&r, &client) || !rd_uint(&r, &n))
			break;
		if (n > (uint64_t)(r.end - r.p)) {
			rd_fail(&r, "truncated");
			break;
		}
		for (uint64_t k = 0; k < n; k++) {
			uint64_t clock, dl;
			if (!rd_uint(&r, &clock) || !rd_uint(&r, &dl))
				break;
			if (dl > RT_YDOC_MAX_CLOCK - clock) {
				rd_fail(&r, "clock over 2^53");
				break;
			}
			if (!dl)
				continue;
			if (u->n_d == u->cap_d) {
				u->cap_d = u->cap_d ? 2 * u->cap_d : 16;
				u->d = rt_xrealloc(u->d, u->cap_d * sizeof *u->d);
			}
			u->d[u->n_d++] = (struct drange){client, clock, dl};
		}
	}
	if (r.err)
		goto fail;
	if (r.p != r.end) {
		rd_fail(&r, "trailing bytes after the delete set");
		goto fail;
	}
	free(seen);
	return 0;
fail:
	snprintf(err, err_cap, "malformed update at byte %zu: %s",
		 (size_t)((r.fail_at ? r.fail_at : r.p) - data), r.err ? r.err : "?");
	free(seen);
	dupd_deinit(u);
	memset(u, 0, sizeof *u);
	return RT_EPROTO;
}

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

struct rt_ydoc {
	struct yclient *clients;
	uint8_t **blobs;
	size_t n_blobs, cap_blobs;
	size_t bytes;
};

struct rt_ydoc *rt_ydoc_new(void)
{
	return rt_xcalloc(1, sizeof(struct rt_ydoc));
}

void rt_ydoc_free(struct rt_ydoc *d)
{
	if (!d)
		return;
	struct yclient *c, *tmp;
	HASH_ITER(hh, d->clients, c, tmp) {
		HASH_DEL(d->clients, c);
		free(c->pieces);
		free(c->del);
		free(c);
	}
	for (size_t i = 0; i < d->n_blobs; i++)
		free(d->blobs[i]);
	free(d->blobs);
	free(d);
}

size_t rt_ydoc_bytes(const struct rt_ydoc *d)
{
	return d->bytes;
}

size_t rt_ydoc_count(const struct rt_ydoc *d)
{
	return d->n_blobs;
}

static struct yclient *client_get(struct rt_ydoc *d, uint64_t id, bool create)
{
	struct yclient *c;
	HASH_FIND(hh, d->clients, &id, sizeof id, c);
	if (!c && create) {
		c = rt_xcalloc(1, sizeof *c);
		c->id = id;
		HASH_ADD(hh, d->clients, id, sizeof c->id, c);
	}
	return c;
}

/* Index of the first piece whose end is after clock. */
static size_t piece_after(const struct yclient *c, uint64_t clock)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->pieces[mid].clock + c->pieces[mid].len <= clock)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void piece_insert(struct yclient *c, struct piece pc)
{
	size_t at = piece_after(c, pc.clock);
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->pieces = rt_xrealloc(c->pieces, c->cap * sizeof *c->pieces);
	}
	memmove(&c->pieces[at + 1], &c->pieces[at], (c->n - at) * sizeof *c->pieces);
	c->pieces[at] = pc;
	c->n++;
}

/* Index of the first range whose end reaches clock (adjacent counts). */
static size_t range_after(const struct range *r, size_t n, uint64_t clock)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].clock + r[mid].len < clock)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void del_insert(struct yclient *c, uint64_t clock, uint64_t len)
{
	size_t at = range_after(c->del, c->n_del, clock);
	uint64_t lo = clock, hi = clock + len;
	size_t k = at;
	while (k < c->n_del && c->del[k].clock <= hi) {
		if (c->del[k].clock < lo)
			lo = c->del[k].clock;
		if (c->del[k].clock + c->del[k].len > hi)
			hi = c->del[k].clock + c->del[k].len;
		k++;
	}
	/* ranges at..k-1 merge into one */
	if (k == at) {
		if (c->n_del == c->cap_del) {
			c->cap_del = c->cap_del ? 2 * c->cap_del : 8;
			c->del = rt_xrealloc(c->del, c->cap_del * sizeof *c->del);
		}
		memmove(&c->del[at + 1], &c->del[at], (c->n_del - at) * sizeof *c->del);
		c->n_del++;
	} else if (k > at + 1) {
		memmove(&c->del[at + 1], &c->del[k], (c->n_del - k) * sizeof *c->del);
		c->n_del -= k - at - 1;
	}
	c->del[at] = (struct range){lo, hi - lo};
}

/* ---- writing ---- */

static void wr_uint(struct rt_buf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;
	do {
		uint8_t byte = v & 0x7f;
		v >>= 7;
		tmp[n++] = v ? (byte | 0x80) : byte;
	} while (v);
	rt_buf_append(b, tmp, n);
}

/* Skips n lib0 values of the kind ref holds (REF_JSON strings, REF_ANY values). */
static void skip_elems(struct rd *r, uint8_t ref, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if (ref == REF_JSON)
			rd_str(r, NULL, NULL, NULL);
		else
			rd_any(r, 0);
	}
}

/* Elements [off, off+len) of a JSON or Any content, as written (without the count). */
static void elems_slice(const struct sview *v, uint64_t off, uint64_t len, const uint8_t **s,
			size_t *n)
{
	struct rd r = {v->content, v->content + v->content_len, NULL, NULL};
	uint64_t count;
	rd_uint(&r, &count);
	skip_elems(&r, v->ref, off);
	*s = r.p;
	skip_elems(&r, v->ref, len);
	*n = (size_t)(r.p - *s);
}

/* The UTF-16 units [off, off+len) of a string content as UTF-8; half of a
 * surrogate pair becomes U+FFFD, as Yjs's ContentString.splice and
 * TextEncoder make it. Appends to b when b is not NULL; returns the bytes. */
static size_t str_slice(const struct sview *v, uint64_t off, uint64_t len, struct rt_buf *b)
{
	struct rd r = {v->content, v->content + v->content_len, NULL, NULL};
	const uint8_t *s;
	size_t n, out = 0;
	rd_str(&r, &s, &n, NULL);
	uint64_t pos = 0, end = off + len;
	size_t i = 0;
	size_t run = 0; /* bytes of s copied as they are, pending */
	size_t run_at = 0;
	while (i < n && pos < end) {
		uint8_t c = s[i];
		size_t w = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
		unsigned units = w == 4 ? 2 : 1;
		bool first = pos >= off, second = units == 2 && pos + 1 >= off && pos + 1 < end;
		if (units == 1 ? first : (first && pos + 1 < end)) {
			if (!run)
				run_at = i;
			run += w;
		} else if (units == 2 && (first || second)) {
			if (b && run)
				rt_buf_append(b, s + run_at, run);
			out += run;
			run = 0;
			if (b)
				rt_buf_append(b, "\xef\xbf\xbd", 3);
			out += 3;
		}
		pos += units;
		i += w;
	}
	if (b && run)
		rt_buf_append(b, s + run_at, run);
	return out + run;
}

/* A unit to write: a piece, or part of one, with its deleted flag. */
struct unit {
	uint64_t clock, len, off;
	const uint8_t *p;
	bool is_deleted;
	struct sview v;
};

/* The content ref a unit is written with. */
static uint8_t unit_ref(const struct unit *u, bool gc)
{
	if (gc && u->is_deleted && u->v.ref != REF_TYPE && u->v.ref != REF_GC)
		return REF_DELETED;
	return u->v.ref;
}

static void unit_origin(const struct unit *u, uint64_t client, bool *has, struct yid *id)
{
	if (u->off) {
		*has = true;
		*id = (struct yid){client, u->clock - 1};
	} else {
		*has = u->v.has_origin;
		*id = u->v.origin;
	}
}

/* Whether b continues a in one item (gc only): Yjs's Item.mergeWith for
 * structs next to each other in the encoding. */
static bool can_merge(const struct unit *a, const struct unit *b, uint64_t client, bool gc)
{
	uint8_t ra = unit_ref(a, gc), rb = unit_ref(b, gc);
	if (a->clock + a->len != b->clock)
		return false;
	if (ra == REF_GC || rb == REF_GC)
		return ra == rb;
	if (!gc || ra != rb || ra == REF_SKIP)
		return false;
	if (ra != REF_DELETED && ra != REF_STRING && ra != REF_ANY && ra != REF_JSON)
		return false;
	bool has;
	struct yid o;
	unit_origin(b, client, &has, &o);
	if (!has || o.client != client || o.clock != b->clock - 1)
		return false;
	if (a->v.has_rorigin != b->v.has_rorigin)
		return false;
	return !a->v.has_rorigin || (a->v.rorigin.client == b->v.rorigin.client &&
				     a->v.rorigin.clock == b->v.rorigin.clock);
}

/* Writes units [0, n) as one struct. */
static void write_run(struct rt_buf *b, uint64_t client, const struct unit *us, size_t n, bool gc)
{
	const struct unit *u = &us[0];
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += us[i].len;
	uint8_t ref = unit_ref(u, gc);
	if (ref == REF_GC || ref == REF_SKIP) {
		rt_buf_append_byte(b, ref);
		wr_uint(b, total);
		return;
	}
	bool has_origin;
	struct yid origin;
	unit_origin(u, client, &has_origin, &origin);
	bool is_parent = !has_origin && !u->v.has_rorigin;
	uint8_t info = (uint8_t)(ref | (has_origin ? BIT_ORIGIN : 0) |
				 (u->v.has_rorigin ? BIT_RORIGIN : 0) |
				 (is_parent ? (u->v.info & BIT_SUB) : 0));
	rt_buf_append_byte(b, info);
	if (has_origin) {
		wr_uint(b, origin.client);
		wr_uint(b, origin.clock);
	}
	if (u->v.has_rorigin) {
		wr_uint(b, u->v.rorigin.client);
		wr_uint(b, u->v.rorigin.clock);
	}
	if (is_parent)
		rt_buf_append(b, u->v.parent, u->v.parent_len);
	switch (ref) {
	case REF_DELETED:
		wr_uint(b, total);
		break;
	case REF_STRING: {
		size_t bytes = 0;
		for (size_t i = 0; i < n; i++)
			bytes += str_slice(&us[i].v, us[i].off, us[i].len, NULL);
		wr_uint(b, bytes);
		for (size_t i = 0; i < n; i++)
			str_slice(&us[i].v, us[i].off, us[i].len, b);
		break;
	}
	case REF_JSON:
	case REF_ANY:
		wr_uint(b, total);
		for (size_t i = 0; i < n; i++) {
			const uint8_t *s;
			size_t sn;
			elems_slice(&us[i].v, us[i].off, us[i].len, &s, &sn);
			rt_buf_append(b, s, sn);
		}
		break;
	default: /* one element: never sliced */
		rt_buf_append(b, u->v.content, u->v.content_len);
		break;
	}
}

struct units {
	struct unit *u;
	size_t n, cap;
};

static void units_push(struct units *us, const struct unit *u)
{
	if (us->n == us->cap) {
		us->cap = us->cap ? 2 * us->cap : 16;
		us->u = rt_xrealloc(us->u, us->cap * sizeof *us->u);
	}
	us->u[us->n++] = *u;
}

/*
 * Writes one client's section: the pieces from clock `from` on (the first
 * sliced), gaps as Skip structs; with gc, pieces split where the delete set
 * starts or stops, deleted content dropped and runs merged. Appends nothing
 * when no piece reaches past from.
 */
static void write_client(struct rt_buf *out, uint64_t client, const struct piece *ps, size_t n,
			 uint64_t from, bool gc, const struct range *del, size_t n_del,
			 struct units *us)
{
	us->n = 0;
	size_t di = 0;
	for (size_t i = 0; i < n; i++) {
		struct piece pc = ps[i];
		if (pc.clock + pc.len <= from)
			continue;
		if (pc.clock < from) {
			pc.off += from - pc.clock;
			pc.len -= from - pc.clock;
			pc.clock = from;
		}
		struct unit u = {pc.clock, pc.len, pc.off, pc.p, false, {0}};
		view_struct(pc.p, &u.v);
		if (us->n) {
			const struct unit *last = &us->u[us->n - 1];
			if (last->clock + last->len < u.clock) {
				struct unit skip = {last->clock + last->len,
						    u.clock - last->clock - last->len, 0, NULL, false,
						    {0}};
				skip.v.ref = REF_SKIP;
				units_push(us, &skip);
			}
		}
		if (!gc || u.v.ref == REF_GC) {
			units_push(us, &u);
			continue;
		}
		/* split by the delete set */
		while (di < n_del && del[di].clock + del[di].len <= u.clock)
			di++;
		uint64_t at = u.clock, end = u.clock + u.len;
		size_t k = di;
		while (at < end) {
			uint64_t stop;
			bool is_del;
			if (k < n_del && del[k].clock <= at) {
				is_del = true;
				stop = del[k].clock + del[k].len;
				k++;
			} else {
				is_del = false;
				stop = k < n_del ? del[k].clock : end;
			}
			if (stop > end)
				stop = end;
			struct unit part = u;
			part.off = u.off + (at - u.clock);
			part.clock = at;
			part.len = stop - at;
			part.is_deleted = is_del;
			units_push(us, &part);
			at = stop;
		}
	}
	if (!us->n)
		return;
	struct rt_buf body;
	rt_buf_init(&body);
	size_t n_structs = 0;
	for (size_t i = 0; i < us->n;) {
		size_t j = i + 1;
		while (j < us->n && us->u[i].v.ref != REF_SKIP && can_merge(&us->u[j - 1], &us->u[j], client, gc))
			j++;
		write_run(&body, client, &us->u[i], j - i, gc);
		n_structs++;
		i = j;
	}
	wr_uint(out, n_structs);
	wr_uint(out, client);
	wr_uint(out, us->u[0].clock);
	rt_buf_append(out, body.data, body.len);
	rt_buf_deinit(&body);
}

static int cmp_client_desc(const void *a, const void *b)
{
	uint64_t x = (*(struct yclient *const *)a)->id, y = (*(struct yclient *const *)b)->id;
	return x > y ? -1 : x < y;
}

/* Clients sorted by id, highest first (Yjs writes them so). */
static struct yclient **sorted_clients(const struct rt_ydoc *d, size_t *n)
{
	*n = HASH_COUNT(d->clients);
	struct yclient **cs = rt_xcalloc(*n + 1, sizeof *cs);
	size_t i = 0;
	for (struct yclient *c = d->clients; c; c = c->hh.next)
		cs[i++] = c;
	qsort(cs, *n, sizeof *cs, cmp_client_desc);
	return cs;
}

/* The state vector sv as (client, clock) pairs. Returns 0 or RT_EPROTO. */
static int read_sv(const uint8_t *sv, size_t sv_len, struct yid **out, size_t *n)
{
	struct rd r = {sv, sv + sv_len, NULL, NULL};
	uint64_t count;
	*out = NULL;
	*n = 0;
	if (!rd_uint(&r, &count) || count > sv_len)
		return RT_EPROTO;
	struct yid *ids = rt_xcalloc(count + 1, sizeof *ids);
	for (uint64_t i = 0; i < count; i++)
		if (!rd_uint(&r, &ids[i].client) || !rd_uint(&r, &ids[i].clock))
			break;
	if (r.err || r.p != r.end) {
		free(ids);
		return RT_EPROTO;
	}
	*out = ids;
	*n = (size_t)count;
	return 0;
}

int rt_ydoc_encode(const struct rt_ydoc *d, const uint8_t *sv, size_t sv_len, bool gc,
		   struct rt_buf *out)
{
	struct yid *svs = NULL;
	size_t n_sv = 0;
	if (sv && read_sv(sv, sv_len, &svs, &n_sv))
		return RT_EPROTO;
	size_t n;
	struct yclient **cs = sorted_clients(d, &n);
	struct rt_buf body;
	rt_buf_init(&body);
	struct units us = {0};
	size_t n_written = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t from = 0;
		for (size_t k = 0; k < n_sv; k++)
			if (svs[k].client == cs[i]->id)
				from = svs[k].clock;
		size_t before = body.len;
		write_client(&body, cs[i]->id, cs[i]->pieces, cs[i]->n, from, gc, cs[i]->del,
			     cs[i]->n_del, &us);
		n_written += body.len != before;
	}
	wr_uint(out, n_written);
	rt_buf_append(out, body.data, body.len);
	size_t n_del = 0;
	for (size_t i = 0; i < n; i++)
		n_del += cs[i]->n_del > 0;
	wr_uint(out, n_del);
	for (size_t i = 0; i < n; i++) {
		if (!cs[i]->n_del)
			continue;
		wr_uint(out, cs[i]->id);
		wr_uint(out, cs[i]->n_del);
		for (size_t k = 0; k < cs[i]->n_del; k++) {
			wr_uint(out, cs[i]->del[k].clock);
			wr_uint(out, cs[i]->del[k].len);
		}
	}
	rt_buf_deinit(&body);
	free(us.u);
	free(cs);
	free(svs);
	return 0;
}

void rt_ydoc_state_vector(const struct rt_ydoc *d, struct rt_buf *out)
{
	size_t n, count = 0;
	struct yclient **cs = sorted_clients(d, &n);
	struct rt_buf body;
	rt_buf_init(&body);
	for (size_t i = 0; i < n; i++) {
		const struct yclient *c = cs[i];
		uint64_t clock = 0;
		for (size_t k = 0; k < c->n && c->pieces[k].clock == clock; k++)
			clock += c->pieces[k].len;
		if (!clock)
			continue;
		wr_uint(&body, c->id);
		wr_uint(&body, clock);
		count++;
	}
	wr_uint(out, count);
	rt_buf_append(out, body.data, body.len);
	rt_buf_deinit(&body);
	free(cs);
}

/* ---- applying updates ---- */

/* A piece an update adds, with its client (the trimmed update's structs). */
struct newpiece {
	uint64_t client;
	struct piece pc;
};

static int cmp_newpiece(const void *a, const void *b)
{
	const struct newpiece *x = a, *y = b;
	if (x->client != y->client)
		return x->client > y->client ? -1 : 1;
	return x->pc.clock < y->pc.clock ? -1 : x->pc.clock > y->pc.clock;
}

/* A throwaway document of the new pieces and ranges, encoded. */
static void encode_new(struct newpiece *np, size_t n_np, struct drange *nd, size_t n_nd,
		       struct rt_buf *out)
{
	struct rt_ydoc tmp = {0};
	for (size_t i = 0; i < n_np; i++) {
		struct yclient *c = client_get(&tmp, np[i].client, true);
		piece_insert(c, np[i].pc);
	}
	for (size_t i = 0; i < n_nd; i++)
		del_insert(client_get(&tmp, nd[i].client, true), nd[i].clock, nd[i].len);
	rt_ydoc_encode(&tmp, NULL, 0, false, out);
	struct yclient *c, *t;
	HASH_ITER(hh, tmp.clients, c, t) {
		HASH_DEL(tmp.clients, c);
		free(c->pieces);
		free(c->del);
		free(c);
	}
}

int rt_ydoc_apply(struct rt_ydoc *d, const uint8_t *data, size_t data_len, uint8_t **added,
		  size_t *added_len, char *err, size_t err_cap)
{
	if (added) {
		*added = NULL;
		*added_len = 0;
	}
	if (data_len > RT_YDOC_MAX_UPDATE) {
		snprintf(err, err_cap, "update of %zu bytes (at most %u)", data_len,
			 RT_YDOC_MAX_UPDATE);
		return RT_ETOOBIG;
	}
	struct dupd u;
	int rc = decode_update(data, data_len, &u, err, err_cap);
	if (rc)
		return rc;
	struct newpiece *np = NULL;
	size_t n_np = 0, cap_np = 0;
	struct drange *nd = NULL;
	size_t n_nd = 0, cap_nd = 0;
	for (size_t i = 0; i < u.n_s; i++) {
		const struct dstruct *s = &u.s[i];
		if (s->ref == REF_SKIP)
			continue;
		struct yclient *c = client_get(d, s->client, false);
		uint64_t at = s->clock, end = s->clock + s->len;
		size_t k = c ? piece_after(c, at) : 0;
		while (at < end) {
			uint64_t stop = end;
			if (c && k < c->n && c->pieces[k].clock <= at) { /* covered */
				at = c->pieces[k].clock + c->pieces[k].len;
				k++;
				continue;
			}
			if (c && k < c->n && c->pieces[k].clock < end)
				stop = c->pieces[k].clock;
			if (n_np == cap_np) {
				cap_np = cap_np ? 2 * cap_np : 16;
				np = rt_xrealloc(np, cap_np * sizeof *np);
			}
			np[n_np++] = (struct newpiece){s->client, {at, stop - at, at - s->clock, s->p}};
			at = stop;
		}
	}
	for (size_t i = 0; i < u.n_d; i++) {
		const struct drange *r = &u.d[i];
		struct yclient *c = client_get(d, r->client, false);
		uint64_t at = r->clock, end = r->clock + r->len;
		size_t k = c ? range_after(c->del, c->n_del, at) : 0;
		while (at < end) {
			uint64_t stop = end;
			if (c && k < c->n_del && c->del[k].clock <= at) {
				at = c->del[k].clock + c->del[k].len;
				k++;
				continue;
			}
			if (c && k < c->n_del && c->del[k].clock < end)
				stop = c->del[k].clock;
			if (n_nd == cap_nd) {
				cap_nd = cap_nd ? 2 * cap_nd : 16;
				nd = rt_xrealloc(nd, cap_nd * sizeof *nd);
			}
			nd[n_nd++] = (struct drange){r->client, at, stop - at};
			at = stop;
		}
	}
	if (!n_np && !n_nd)
		goto out;
	if (n_np)
		qsort(np, n_np, sizeof *np, cmp_newpiece);
	struct rt_buf b;
	rt_buf_init(&b);
	encode_new(np, n_np, nd, n_nd, &b);
	if (d->bytes + b.len > RT_YDOC_MAX_BYTES) {
		snprintf(err, err_cap, "the document would keep more than %u bytes",
			 RT_YDOC_MAX_BYTES);
		rt_buf_deinit(&b);
		rc = RT_ETOOBIG;
		goto out;
	}
	/* Keep the trimmed update and index its structs (they cover only what
	 * the document lacked, so they insert without overlap). */
	size_t blen;
	uint8_t *blob = (uint8_t *)rt_buf_detach(&b, &blen);
	struct dupd kept;
	char kerr[128];
	if (decode_update(blob, blen, &kept, kerr, sizeof kerr)) {
		/* cannot happen: the encoder writes what the decoder accepted */
		snprintf(err, err_cap, "internal: re-encoded update does not decode: %s", kerr);
		free(blob);
		rc = RT_EPROTO;
		goto out;
	}
	for (size_t i = 0; i < kept.n_s; i++) {
		const struct dstruct *s = &kept.s[i];
		if (s->ref == REF_SKIP)
			continue;
		piece_insert(client_get(d, s->client, true),
			     (struct piece){s->clock, s->len, 0, s->p});
	}
	for (size_t i = 0; i < kept.n_d; i++)
		del_insert(client_get(d, kept.d[i].client, true), kept.d[i].clock, kept.d[i].len);
	dupd_deinit(&kept);
	if (d->n_blobs == d->cap_blobs) {
		d->cap_blobs = d->cap_blobs ? 2 * d->cap_blobs : 8;
		d->blobs = rt_xrealloc(d->blobs, d->cap_blobs * sizeof *d->blobs);
	}
	d->blobs[d->n_blobs++] = blob;
	d->bytes += blen;
	if (added) {
		*added = rt_xmalloc(blen ? blen : 1);
		memcpy(*added, blob, blen);
		*added_len = blen;
	}
out:
	free(np);
	free(nd);
	dupd_deinit(&u);
	return rc;
}

int rt_ydoc_validate(const struct rt_ydoc *d)
{
	for (const struct yclient *c = d->clients; c; c = c->hh.next) {
		for (size_t i = 0; i < c->n; i++) {
			if (!c->pieces[i].len)
				return -1;
			if (i && c->pieces[i - 1].clock + c->pieces[i - 1].len > c->pieces[i].clock)
				return -1;
			struct sview v;
			view_struct(c->pieces[i].p, &v);
			if (c->pieces[i].off + c->pieces[i].len > v.len)
				return -1;
		}
		for (size_t i = 0; i < c->n_del; i++) {
			if (!c->del[i].len)
				return -1;
			if (i && c->del[i - 1].clock + c->del[i - 1].len >= c->del[i].clock)
				return -1;
		}
	}
	return 0;
}
