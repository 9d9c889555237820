/*
 * Phoenix Channels codecs in the Supabase Realtime dialect (PROTOCOL.md §2):
 * vsn 1.0.0 JSON objects, vsn 2.0.0 JSON arrays, and the binary frames of
 * kinds 0 and 3 (client pushes) and 4 (user broadcast to clients). Bytes in,
 * messages out; no I/O, so every function can be fuzzed and replayed.
 *
 * Ownership: a decoded struct rt_phx_msg owns all its members; release them
 *            with rt_phx_msg_deinit(). Encoders append to a caller-owned rt_buf.
 * Threads:   no shared state; callable from any thread.
 * Limits:    binary header strings are at most 255 bytes; refs and topics are
 *            bounded by RT_PHX_MAX_REF and RT_PHX_MAX_TOPIC; a decoded JSON
 *            payload is bounded only by the frame that carried it.
 */
#ifndef RT_PROTO_PHX_H
#define RT_PROTO_PHX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define RT_PHX_MAX_REF 255
#define RT_PHX_MAX_TOPIC 255
#define RT_PHX_MAX_EVENT 255

enum rt_phx_vsn { RT_PHX_V1 = 1, RT_PHX_V2 = 2 };

enum rt_phx_encoding { RT_PHX_ENC_BINARY = 0, RT_PHX_ENC_JSON = 1 };

/* One client → server message. */
struct rt_phx_msg {
	char *join_ref; /* NULL when null or absent */
	char *ref;      /* NULL when null or absent */
	char *topic;    /* never NULL after a successful decode */
	char *event;    /* never NULL after a successful decode */
	json_t *payload; /* text frames: the payload value (one reference); binary: NULL */

	/* Binary frames. Kind 3 (user broadcast push) sets is_user_broadcast, event
	 * "broadcast", user_event, encoding, data and meta. Kind 0 (push) sets event
	 * and data with encoding RT_PHX_ENC_BINARY. */
	bool is_binary;
	bool is_user_broadcast;
	char *user_event;
	enum rt_phx_encoding encoding;
	uint8_t *data; /* with encoding JSON: validated JSON text, NUL-terminated */
	size_t data_len;
	char *meta; /* metadata JSON object text, NUL-terminated; NULL when empty */
	size_t meta_len;
};

/*
 * Decodes a text frame for the socket's serializer. V1 needs an object with
 * string "topic" and "event", a "payload" and a "ref" (string or null) and an
 * optional "join_ref"; V2 an array of at least five elements
 * [join_ref, ref, topic, event, payload]. Refs must be strings or null.
 * Returns 0 and fills out, or RT_EPROTO for a malformed frame (out zeroed).
 */
int rt_phx_decode_text(enum rt_phx_vsn vsn, const char *data, size_t data_len,
		       struct rt_phx_msg *out);

/*
 * Decodes a binary frame (V2 only): kind 0 push or kind 3 user broadcast push.
 * A kind-3 JSON payload must be valid JSON and its metadata, when present, a
 * JSON object. Returns 0, or RT_EPROTO (out zeroed).
 */
int rt_phx_decode_binary(const uint8_t *data, size_t data_len, struct rt_phx_msg *out);

void rt_phx_msg_deinit(struct rt_phx_msg *m);

/*
 * Appends one server → client text message. payload_json is JSON text of
 * payload_len bytes and is copied verbatim. join_ref and ref may be NULL
 * (written as null); V1 never writes join_ref.
 */
void rt_phx_encode_text(enum rt_phx_vsn vsn, struct rt_buf *out, const char *join_ref,
			const char *ref, const char *topic, const char *event,
			const char *payload_json, size_t payload_len);

/* Same with a jansson payload, serialized compactly. */
void rt_phx_encode_text_json(enum rt_phx_vsn vsn, struct rt_buf *out, const char *join_ref,
			     const char *ref, const char *topic, const char *event,
			     const json_t *payload);

/*
 * Appends a binary kind-4 user broadcast. meta may be NULL (length 0).
 * Returns 0, or RT_ETOOBIG when topic, event or meta exceed 255 bytes
 * (nothing appended).
 */
int rt_phx_encode_user_broadcast(struct rt_buf *out, const char *topic, const char *event,
				 const char *meta, size_t meta_len, enum rt_phx_encoding enc,
				 const uint8_t *data, size_t data_len);

/*
 * Appends the JSON payload a V1 (or V2 text) subscriber gets for a user
 * broadcast: {"type":"broadcast","event":E,"payload":<json>[,"meta":<meta>]}.
 * json must be valid JSON text; meta a JSON object text or NULL.
 */
void rt_phx_user_broadcast_json(struct rt_buf *out, const char *event, const char *json,
				size_t json_len, const char *meta, size_t meta_len);

/* Appends v as compact JSON (any JSON value). */
void rt_phx_dump(struct rt_buf *out, const json_t *v);

#endif
