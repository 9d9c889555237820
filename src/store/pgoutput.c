/*
 * Decoding of the logical replication stream (pgoutput protocol 1). Every
 * read is bounds-checked against the message; strings must be
 * NUL-terminated inside it.
 */
#include "store/pgoutput.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/err.h"

struct reader {
	const uint8_t *p, *end;
	bool is_bad;
};

static bool need(struct reader *r, size_t n)
{
	if (r->is_bad || (size_t)(r->end - r->p) < n) {
		r->is_bad = true;
		return false;
	}
	return true;
}

static uint8_t get8(struct reader *r)
{
	return need(r, 1) ? *r->p++ : 0;
}

static uint16_t get16(struct reader *r)
{
	if (!need(r, 2))
		return 0;
	uint16_t v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	return v;
}

static uint32_t get32(struct reader *r)
{
	if (!need(r, 4))
		return 0;
	uint32_t v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 |
		     r->p[3];
	r->p += 4;
	return v;
}

static uint64_t get64(struct reader *r)
{
	uint64_t hi = get32(r);
	return hi << 32 | get32(r);
}

static const char *get_str(struct reader *r)
{
	if (r->is_bad)
		return NULL;
	const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
	if (!nul) {
		r->is_bad = true;
		return NULL;
	}
	const char *s = (const char *)r->p;
	r->p = nul + 1;
	return s;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

int rt_pgo_frame_parse(const uint8_t *data, size_t data_len, struct rt_pgo_frame *out)
{
	struct reader r = {data, data + data_len, false};
	memset(out, 0, sizeof *out);
	uint8_t kind = get8(&r);
	if (kind == 'w') {
		out->kind = RT_PGO_XLOGDATA;
		out->wal_start = get64(&r);
		out->wal_end = get64(&r);
		out->send_time = (int64_t)get64(&r);
		if (r.is_bad)
			return RT_EPROTO;
		out->data = r.p;
		out->data_len = (size_t)(r.end - r.p);
		return 0;
	}
	if (kind == 'k') {
		out->kind = RT_PGO_KEEPALIVE;
		out->wal_end = get64(&r);
		out->send_time = (int64_t)get64(&r);
		out->wants_reply = get8(&r) != 0;
		return r.is_bad || r.p != r.end ? RT_EPROTO : 0;
	}
	return RT_EPROTO;
}

void rt_pgo_status_update(uint8_t out[34], uint64_t lsn, int64_t now_us, bool wants_reply)
{
	out[0] = 'r';
	put64(out + 1, lsn);  /* written */
	put64(out + 9, lsn);  /* flushed */
	put64(out + 17, lsn); /* applied */
	put64(out + 25, (uint64_t)now_us);
	out[33] = wants_reply ? 1 : 0;
}

static int get_tuple(struct reader *r, struct rt_pgo_tuple *t)
{
	uint16_t n = get16(r);
	if (r->is_bad || n > RT_PGO_MAX_COLS || (size_t)(r->end - r->p) < n)
		return RT_EPROTO; /* every column takes at least one byte */
	t->cols = rt_xcalloc(n ? n : 1, sizeof *t->cols);
	t->n_cols = n;
	for (size_t i = 0; i < n; i++) {
		struct rt_pgo_value *v = &t->cols[i];
		v->kind = (char)get8(r);
		switch (v->kind) {
		case 'n':
		case 'u':
			break;
		case 't':
		case 'b': {
			uint32_t len = get32(r);
			if (!need(r, len))
				return RT_EPROTO;
			v->data = (const char *)r->p;
			v->len = len;
			r->p += len;
			break;
		}
		default:
			return RT_EPROTO;
		}
		if (r->is_bad)
			return RT_EPROTO;
	}
	return 0;
}

int rt_pgo_decode(const uint8_t *data, size_t data_len, struct rt_pgo_msg *m)
{
	struct reader r = {data, data + data_len, false};
	memset(m, 0, sizeof *m);
	int rc = RT_EPROTO;
	m->kind = (enum rt_pgo_kind)get8(&r);
	switch (m->kind) {
	case RT_PGO_BEGIN:
		m->lsn = get64(&r);
		m->commit_time = (int64_t)get64(&r);
		m->xid = get32(&r);
		break;
	case RT_PGO_COMMIT:
		get8(&r); /* flags, unused */
		m->lsn = get64(&r);
		m->end_lsn = get64(&r);
		m->commit_time = (int64_t)get64(&r);
		break;
	case RT_PGO_ORIGIN:
		m->lsn = get64(&r);
		m->name = get_str(&r);
		break;
	case RT_PGO_RELATION: {
		m->relid = get32(&r);
		m->nspname = get_str(&r);
		m->name = get_str(&r);
		m->replident = (char)get8(&r);
		uint16_t n = get16(&r);
		/* a column takes at least 10 bytes */
		if (r.is_bad || n > RT_PGO_MAX_COLS || (size_t)(r.end - r.p) / 10 < n)
			goto err;
		m->columns = rt_xcalloc(n ? n : 1, sizeof *m->columns);
		m->n_columns = n;
		for (size_t i = 0; i < n && !r.is_bad; i++) {
			m->columns[i].is_key = get8(&r) & 1;
			m->columns[i].name = get_str(&r);
			m->columns[i].type_oid = get32(&r);
			m->columns[i].typmod = (int32_t)get32(&r);
		}
		break;
	}
	case RT_PGO_TYPE:
		m->relid = get32(&r);
		m->nspname = get_str(&r);
		m->name = get_str(&r);
		break;
	case RT_PGO_INSERT:
		m->relid = get32(&r);
		if (get8(&r) != 'N' || get_tuple(&r, &m->new_tuple))
			goto err;
		break;
	case RT_PGO_UPDATE: {
		m->relid = get32(&r);
		uint8_t k = get8(&r);
		if (k == 'K' || k == 'O') {
			m->old_kind = (char)k;
			if (get_tuple(&r, &m->old_tuple))
				goto err;
			k = get8(&r);
		}
		if (k != 'N' || get_tuple(&r, &m->new_tuple))
			goto err;
		break;
	}
	case RT_PGO_DELETE: {
		m->relid = get32(&r);
		uint8_t k = get8(&r);
		if (k != 'K' && k != 'O')
			goto err;
		m->old_kind = (char)k;
		if (get_tuple(&r, &m->old_tuple))
			goto err;
		break;
	}
	case RT_PGO_TRUNCATE: {
		uint32_t n = get32(&r);
		m->truncate_options = get8(&r);
		if (r.is_bad || n > RT_PGO_MAX_RELS || (size_t)(r.end - r.p) / 4 < n)
			goto err;
		m->relids = rt_xcalloc(n ? n : 1, sizeof *m->relids);
		m->n_relids = n;
		for (size_t i = 0; i < n; i++)
			m->relids[i] = get32(&r);
		break;
	}
	case RT_PGO_MESSAGE: {
		get8(&r); /* transactional flag */
		m->lsn = get64(&r);
		m->name = get_str(&r);
		uint32_t len = get32(&r);
		if (!need(&r, len))
			goto err;
		m->content = (const char *)r.p;
		m->content_len = len;
		r.p += len;
		break;
	}
	default:
		goto err;
	}
	if (r.is_bad || r.p != r.end)
		goto err;
	return 0;
err:
	rt_pgo_msg_deinit(m);
	return rc;
}

void rt_pgo_msg_deinit(struct rt_pgo_msg *m)
{
	if (!m)
		return;
	free(m->columns);
	free(m->old_tuple.cols);
	free(m->new_tuple.cols);
	free(m->relids);
	memset(m, 0, sizeof *m);
}

/* ---- values ---- */

static bool is_type(const char *type, const char *const *names)
{
	for (; *names; names++)
		if (!strcmp(type, *names))
			return true;
	return false;
}

static json_t *string_json(const char *s, size_t len)
{
	json_t *v = json_stringn(s, len);
	return v ? v : json_null();
}

/* A copy of len bytes, NUL-terminated, or NULL when they hold a NUL. */
static char *dup_text(const char *s, size_t len)
{
	if (memchr(s, 0, len))
		return NULL;
	return rt_xstrndup(s, len);
}

static json_t *integer_json(const char *s, size_t len)
{
	char *t = dup_text(s, len);
	json_t *v = NULL;
	if (t && *t) {
		char *end;
		errno = 0;
		long long ll = strtoll(t, &end, 10);
		if (!errno && !*end)
			v = json_integer(ll);
		else if (!*end && strspn(t + (*t == '-'), "0123456789") == strlen(t + (*t == '-')))
			v = json_real(strtod(t, NULL)); /* numeric beyond 64 bits */
	}
	free(t);
	return v ? v : string_json(s, len);
}

/* float4, float8, numeric: numbers, except NaN and the infinities. */
static json_t *number_json(const char *s, size_t len)
{
	char *t = dup_text(s, len);
	json_t *v = NULL;
	if (t && *t && strspn(t, "0123456789+-.eE") == strlen(t)) {
		char *end;
		if (!strpbrk(t, ".eE")) {
			free(t);
			return integer_json(s, len);
		}
		double d = strtod(t, &end);
		if (!*end && d - d == 0) /* finite */
			v = json_real(d);
	}
	free(t);
	return v ? v : string_json(s, len);
}

/* "2024-01-02 03:04:05.678+05:30" → "2024-01-02T03:04:05.678+05:30";
 * a bare "+HH" offset becomes "+HH:00", as to_jsonb writes it. */
static json_t *timestamp_json(const char *s, size_t len, bool is_tz, bool is_time)
{
	struct rt_buf b;
	rt_buf_init(&b);
	rt_buf_append(&b, s, len);
	rt_buf_append_byte(&b, 0);
	char *t = (char *)b.data;
	if (!is_time && len > 10 && t[10] == ' ' && isdigit((unsigned char)t[11]))
		t[10] = 'T';
	if (is_tz) {
		/* the offset: the last '+' or '-' after the time of day */
		char *time = is_time ? t : strchr(t, 'T');
		char *sign = time ? strpbrk(time, "+-") : NULL;
		if (sign && strlen(sign) == 3 && isdigit((unsigned char)sign[1]) &&
		    isdigit((unsigned char)sign[2])) {
			b.len--; /* the NUL */
			rt_buf_append_str(&b, ":00");
			rt_buf_append_byte(&b, 0);
		}
	}
	json_t *v = string_json((const char *)b.data, strlen((const char *)b.data));
	rt_buf_deinit(&b);
	return v;
}

static json_t *value_json(const char *type, const char *s, size_t len, int depth);

/* One array level "{…}" at *p: elements converted by elem. */
static json_t *array_level(const char *elem, const char **p, const char *end, int depth)
{
	if (depth > RT_PGO_MAX_DEPTH || *p >= end || **p != '{')
		return NULL;
	(*p)++;
	json_t *arr = json_array();
	struct rt_buf item;
	rt_buf_init(&item);
	bool is_empty_ok = true;
	for (;;) {
		while (*p < end && isspace((unsigned char)**p))
			(*p)++;
		if (*p >= end)
			goto err;
		if (**p == '}' && is_empty_ok && json_array_size(arr) == 0) {
			(*p)++;
			break;
		}
		is_empty_ok = false;
		json_t *v;
		if (**p == '{') {
			v = array_level(elem, p, end, depth + 1);
			if (!v)
				goto err;
		} else if (**p == '"') {
			rt_buf_reset(&item);
			for ((*p)++; *p < end && **p != '"'; (*p)++) {
				if (**p == '\\' && *p + 1 < end)
					(*p)++;
				rt_buf_append_byte(&item, (uint8_t)**p);
			}
			if (*p >= end)
				goto err;
			(*p)++;
			v = value_json(elem, item.data ? (const char *)item.data : "", item.len,
				       depth + 1);
		} else {
			const char *start = *p;
			while (*p < end && **p != ',' && **p != '}')
				(*p)++;
			const char *stop = *p;
			while (stop > start && isspace((unsigned char)stop[-1]))
				stop--;
			if (stop == start)
				goto err;
			if (stop - start == 4 && !strncasecmp(start, "NULL", 4)) {
				v = json_null();
			} else {
				rt_buf_reset(&item);
				for (const char *q = start; q < stop; q++) {
					if (*q == '\\' && q + 1 < stop)
						q++;
					rt_buf_append_byte(&item, (uint8_t)*q);
				}
				v = value_json(elem, (const char *)item.data, item.len, depth + 1);
			}
		}
		json_array_append_new(arr, v);
		while (*p < end && isspace((unsigned char)**p))
			(*p)++;
		if (*p >= end)
			goto err;
		if (**p == ',') {
			(*p)++;
			continue;
		}
		if (**p == '}') {
			(*p)++;
			break;
		}
		goto err;
	}
	rt_buf_deinit(&item);
	return arr;
err:
	rt_buf_deinit(&item);
	json_decref(arr);
	return NULL;
}

static json_t *array_json(const char *elem, const char *s, size_t len, int depth)
{
	const char *p = s, *end = s + len;
	/* "[0:1]={…}": bounds other than 1 come first; to_jsonb drops them */
	if (p < end && *p == '[') {
		const char *eq = memchr(p, '=', len);
		if (!eq)
			return string_json(s, len);
		p = eq + 1;
	}
	json_t *v = array_level(elem, &p, end, depth);
	if (v && p != end) {
		json_decref(v);
		v = NULL;
	}
	return v ? v : string_json(s, len);
}

static json_t *value_json(const char *type, const char *s, size_t len, int depth)
{
	static const char *const ints[] = {"int2", "int4", "int8", "oid", "xid", NULL};
	static const char *const nums[] = {"float4", "float8", "numeric", NULL};
	if (type[0] == '_' && type[1])
		return depth > RT_PGO_MAX_DEPTH ? string_json(s, len)
						: array_json(type + 1, s, len, depth);
	if (is_type(type, ints))
		return integer_json(s, len);
	if (is_type(type, nums))
		return number_json(s, len);
	if (!strcmp(type, "bool")) {
		if (len == 1 && (*s == 't' || *s == 'f'))
			return json_boolean(*s == 't');
		return string_json(s, len);
	}
	if (!strcmp(type, "json") || !strcmp(type, "jsonb")) {
		json_t *v = json_loadb(s, len, JSON_DECODE_ANY, NULL);
		/* an integer beyond 64 bits: as a double, like a JavaScript client reads it */
		if (!v)
			v = json_loadb(s, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
		return v ? v : string_json(s, len);
	}
	if (!strcmp(type, "timestamp"))
		return timestamp_json(s, len, false, false);
	if (!strcmp(type, "timestamptz"))
		return timestamp_json(s, len, true, false);
	if (!strcmp(type, "timetz"))
		return timestamp_json(s, len, true, true);
	return string_json(s, len);
}

json_t *rt_pgo_value_json(const char *type, const char *text, size_t len)
{
	return value_json(type ? type : "text", text ? text : "", text ? len : 0, 0);
}
