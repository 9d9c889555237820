#include "proto/phx.h"

#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "common/alloc.h"
#include "common/err.h"

static int take_ref(const json_t *v, char **out)
{
	if (!v || json_is_null(v)) {
		*out = NULL;
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) > RT_PHX_MAX_REF)
		return RT_EPROTO;
	*out = rt_xstrndup(json_string_value(v), json_string_length(v));
	return 0;
}

static int take_name(const json_t *v, size_t max, char **out)
{
	if (!json_is_string(v) || json_string_length(v) > max)
		return RT_EPROTO;
	/* An embedded NUL would make the C string disagree with the JSON one. */
	if (strlen(json_string_value(v)) != json_string_length(v))
		return RT_EPROTO;
	*out = rt_xstrndup(json_string_value(v), json_string_length(v));
	return 0;
}

int rt_phx_decode_text(enum rt_phx_vsn vsn, const char *data, size_t data_len,
		       struct rt_phx_msg *out)
{
	memset(out, 0, sizeof *out);
	json_t *root = json_loadb(data, data_len, JSON_REJECT_DUPLICATES, NULL);
	if (!root)
		return RT_EPROTO;

	const json_t *jr, *ref, *topic, *event, *payload;
	if (vsn == RT_PHX_V1) {
		if (!json_is_object(root))
			goto err;
		jr = json_object_get(root, "join_ref");
		ref = json_object_get(root, "ref");
		topic = json_object_get(root, "topic");
		event = json_object_get(root, "event");
		payload = json_object_get(root, "payload");
		if (!ref || !payload)
			goto err;
	} else {
		if (!json_is_array(root) || json_array_size(root) < 5)
			goto err;
		jr = json_array_get(root, 0);
		ref = json_array_get(root, 1);
		topic = json_array_get(root, 2);
		event = json_array_get(root, 3);
		payload = json_array_get(root, 4);
	}
	if (take_ref(jr, &out->join_ref) || take_ref(ref, &out->ref) ||
	    take_name(topic, RT_PHX_MAX_TOPIC, &out->topic) ||
	    take_name(event, RT_PHX_MAX_EVENT, &out->event))
		goto err;
	out->payload = json_incref((json_t *)payload);
	json_decref(root);
	return 0;
err:
	json_decref(root);
	rt_phx_msg_deinit(out);
	return RT_EPROTO;
}

/* Reads a length-prefixed field: the bytes at *pos of length len. */
static char *take_bytes(const uint8_t *data, size_t *pos, size_t len)
{
	char *s = rt_xstrndup((const char *)data + *pos, len);
	*pos += len;
	return s;
}

/* Header strings become JSON strings for V1 subscribers: no NULs, valid UTF-8. */
static bool is_bad_text(const uint8_t *p, size_t n)
{
	return memchr(p, '\0', n) != NULL || u8_check(p, n) != NULL;
}

int rt_phx_decode_binary(const uint8_t *data, size_t data_len, struct rt_phx_msg *out)
{
	memset(out, 0, sizeof *out);
	if (data_len < 1)
		return RT_EPROTO;
	size_t pos, jr_len, ref_len, topic_len, ev_len, meta_len = 0;
	uint8_t kind = data[0];
	if (kind == 0) {
		if (data_len < 5)
			return RT_EPROTO;
		jr_len = data[1], ref_len = data[2], topic_len = data[3], ev_len = data[4];
		pos = 5;
	} else if (kind == 3) {
		if (data_len < 7)
			return RT_EPROTO;
		jr_len = data[1], ref_len = data[2], topic_len = data[3], ev_len = data[4];
		meta_len = data[5];
		if (data[6] > RT_PHX_ENC_JSON)
			return RT_EPROTO;
		pos = 7;
	} else {
		return RT_EPROTO;
	}
	size_t head = jr_len + ref_len + topic_len + ev_len + meta_len;
	if (data_len - pos < head || topic_len == 0 || ev_len == 0)
		goto err;
	/* Each header string on its own: a multi-byte sequence must not span two. */
	const size_t lens[] = {jr_len, ref_len, topic_len, ev_len, meta_len};
	for (size_t i = 0, off = pos; i < sizeof lens / sizeof lens[0]; off += lens[i++])
		if (is_bad_text(data + off, lens[i]))
			goto err;

	out->is_binary = true;
	out->join_ref = jr_len ? take_bytes(data, &pos, jr_len) : NULL;
	out->ref = ref_len ? take_bytes(data, &pos, ref_len) : NULL;
	out->topic = take_bytes(data, &pos, topic_len);
	if (kind == 3) {
		out->event = rt_xstrdup("broadcast");
		out->user_event = take_bytes(data, &pos, ev_len);
		out->is_user_broadcast = true;
		if (meta_len) {
			out->meta = take_bytes(data, &pos, meta_len);
			out->meta_len = meta_len;
			json_t *m = json_loadb(out->meta, meta_len, 0, NULL);
			bool ok = json_is_object(m);
			json_decref(m);
			if (!ok)
				goto err;
		}
	} else {
		out->event = take_bytes(data, &pos, ev_len);
	}
	out->encoding = kind == 3 ? data[6] : RT_PHX_ENC_BINARY;
	out->data_len = data_len - pos;
	out->data = rt_xmalloc(out->data_len + 1);
	memcpy(out->data, data + pos, out->data_len);
	out->data[out->data_len] = '\0';
	if (out->is_user_broadcast && out->encoding == RT_PHX_ENC_JSON) {
		json_t *v = json_loadb((const char *)out->data, out->data_len, JSON_DECODE_ANY, NULL);
		if (!v)
			goto err;
		json_decref(v);
	}
	return 0;
err:
	rt_phx_msg_deinit(out);
	return RT_EPROTO;
}

void rt_phx_msg_deinit(struct rt_phx_msg *m)
{
	free(m->join_ref);
	free(m->ref);
	free(m->topic);
	free(m->event);
	json_decref(m->payload);
	free(m->user_event);
	free(m->data);
	free(m->meta);
	memset(m, 0, sizeof *m);
}

static void append_ref(struct rt_buf *out, const char *ref)
{
	if (ref)
		rt_buf_append_json_str(out, ref, strlen(ref));
	else
		rt_buf_append(out, "null", 4);
}

void rt_phx_encode_text(enum rt_phx_vsn vsn, struct rt_buf *out, const char *join_ref,
			const char *ref, const char *topic, const char *event,
			const char *payload_json, size_t payload_len)
{
	if (vsn == RT_PHX_V1) {
		rt_buf_append_str(out, "{\"topic\":");
		rt_buf_append_json_str(out, topic, strlen(topic));
		rt_buf_append_str(out, ",\"event\":");
		rt_buf_append_json_str(out, event, strlen(event));
		rt_buf_append_str(out, ",\"payload\":");
		rt_buf_append(out, payload_json, payload_len);
		rt_buf_append_str(out, ",\"ref\":");
		append_ref(out, ref);
		rt_buf_append_byte(out, '}');
		return;
	}
	rt_buf_append_byte(out, '[');
	append_ref(out, join_ref);
	rt_buf_append_byte(out, ',');
	append_ref(out, ref);
	rt_buf_append_byte(out, ',');
	rt_buf_append_json_str(out, topic, strlen(topic));
	rt_buf_append_byte(out, ',');
	rt_buf_append_json_str(out, event, strlen(event));
	rt_buf_append_byte(out, ',');
	rt_buf_append(out, payload_json, payload_len);
	rt_buf_append_byte(out, ']');
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
	rt_buf_append(data, buffer, size);
	return 0;
}

void rt_phx_dump(struct rt_buf *out, const json_t *v)
{
	json_dump_callback(v, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
}

void rt_phx_encode_text_json(enum rt_phx_vsn vsn, struct rt_buf *out, const char *join_ref,
			     const char *ref, const char *topic, const char *event,
			     const json_t *payload)
{
	struct rt_buf p;
	rt_buf_init(&p);
	rt_phx_dump(&p, payload);
	rt_phx_encode_text(vsn, out, join_ref, ref, topic, event, p.data, p.len);
	rt_buf_deinit(&p);
}

int rt_phx_encode_user_broadcast(struct rt_buf *out, const char *topic, const char *event,
				 const char *meta, size_t meta_len, enum rt_phx_encoding enc,
				 const uint8_t *data, size_t data_len)
{
	size_t topic_len = strlen(topic), ev_len = strlen(event);
	if (topic_len > 255 || ev_len > 255 || meta_len > 255)
		return RT_ETOOBIG;
	uint8_t head[5] = {4, (uint8_t)topic_len, (uint8_t)ev_len, (uint8_t)meta_len, (uint8_t)enc};
	rt_buf_reserve(out, sizeof head + topic_len + ev_len + meta_len + data_len);
	rt_buf_append(out, head, sizeof head);
	rt_buf_append(out, topic, topic_len);
	rt_buf_append(out, event, ev_len);
	if (meta_len)
		rt_buf_append(out, meta, meta_len);
	rt_buf_append(out, data, data_len);
	return 0;
}

void rt_phx_user_broadcast_json(struct rt_buf *out, const char *event, const char *json,
				size_t json_len, const char *meta, size_t meta_len)
{
	rt_buf_append_str(out, "{\"type\":\"broadcast\",\"event\":");
	rt_buf_append_json_str(out, event, strlen(event));
	rt_buf_append_str(out, ",\"payload\":");
	rt_buf_append(out, json, json_len);
	if (meta && meta_len) {
		rt_buf_append_str(out, ",\"meta\":");
		rt_buf_append(out, meta, meta_len);
	}
	rt_buf_append_byte(out, '}');
}
