#include "net/ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <unistr.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/rand.h"

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xa

#define CODE_NORMAL 1000
#define CODE_PROTOCOL 1002
#define CODE_NO_STATUS 1005
#define CODE_BAD_DATA 1007
#define CODE_TOO_BIG 1009

#define MAX_HEADER 14
#define MAX_CONTROL 125

struct header {
	bool is_fin;
	uint8_t rsv;
	uint8_t op;
	bool is_masked;
	uint8_t key[4];
	uint64_t payload_len;
	size_t len; /* header bytes */
};

/* ---- memory ---- */

static void *ws_realloc(struct rt_ws *ws, void *p, size_t size)
{
	if (ws->alloc.realloc)
		return ws->alloc.realloc(ws->alloc.ud, p, size);
	if (!size) {
		free(p);
		return NULL;
	}
	return rt_xrealloc(p, size);
}

static void free_frame(struct rt_ws *ws)
{
	ws->frame = ws_realloc(ws, ws->frame, 0);
	ws->frame_len = ws->frame_cap = 0;
}

static void free_msg(struct rt_ws *ws)
{
	ws->msg = ws_realloc(ws, ws->msg, 0);
	ws->msg_len = 0;
	ws->msg_op = 0;
}

int rt_ws_init(struct rt_ws *ws, enum rt_ws_role role, const struct rt_ws_callbacks *cb,
	       void *user, size_t max_msg_len, const struct rt_ws_allocator *alloc)
{
	memset(ws, 0, sizeof *ws);
	ws->cb = cb;
	ws->user = user;
	ws->role = (uint8_t)role;
	ws->max_msg_len = max_msg_len;
	if (alloc)
		ws->alloc = *alloc;
	return 0;
}

void rt_ws_deinit(struct rt_ws *ws)
{
	free_frame(ws);
	free_msg(ws);
}

/* ---- output ---- */

static size_t put_header(uint8_t *h, uint8_t op, uint64_t len, const uint8_t *key)
{
	size_t n = 0;
	h[n++] = (uint8_t)(0x80 | op);
	uint8_t mask_bit = key ? 0x80 : 0;
	if (len < 126) {
		h[n++] = (uint8_t)(mask_bit | len);
	} else if (len <= 0xffff) {
		h[n++] = mask_bit | 126;
		h[n++] = (uint8_t)(len >> 8);
		h[n++] = (uint8_t)len;
	} else {
		h[n++] = mask_bit | 127;
		for (int i = 7; i >= 0; i--)
			h[n++] = (uint8_t)(len >> (8 * i));
	}
	if (key) {
		memcpy(h + n, key, 4);
		n += 4;
	}
	return n;
}

/* Outputs one frame: header then payload, masked in stack-sized chunks on a
 * client so the caller's data is never modified and nothing is allocated. */
static int output_frame(struct rt_ws *ws, uint8_t op, const uint8_t *data, size_t len)
{
	uint8_t h[MAX_HEADER];
	uint8_t key[4];
	bool is_client = ws->role == RT_WS_CLIENT;
	if (is_client)
		rt_rand_bytes(key, sizeof key);
	int rc = ws->cb->on_output(ws->user, h, put_header(h, op, len, is_client ? key : NULL));
	if (rc || !len)
		return rc;
	if (!is_client)
		return ws->cb->on_output(ws->user, data, len);
	uint8_t chunk[4096];
	for (size_t off = 0; off < len && !rc; off += sizeof chunk) {
		size_t n = len - off < sizeof chunk ? len - off : sizeof chunk;
		for (size_t i = 0; i < n; i++)
			chunk[i] = data[off + i] ^ key[(off + i) & 3];
		rc = ws->cb->on_output(ws->user, chunk, n);
	}
	return rc;
}

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	size_t n = max;
	while (n && ((uint8_t)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

static int send_close(struct rt_ws *ws, uint16_t code, const char *reason, size_t reason_len)
{
	if (ws->is_close_sent)
		return 0;
	ws->is_close_sent = true;
	if (!ws->close_code) /* a close without a code counts as a normal one */
		ws->close_code = code == CODE_NO_STATUS ? CODE_NORMAL : code;
	uint8_t p[MAX_CONTROL];
	size_t n = 0;
	if (code != CODE_NO_STATUS) {
		p[n++] = (uint8_t)(code >> 8);
		p[n++] = (uint8_t)code;
		reason_len = utf8_cut(reason, reason_len, MAX_CONTROL - 2);
		if (reason_len)
			memcpy(p + n, reason, reason_len);
		n += reason_len;
	}
	return output_frame(ws, OP_CLOSE, p, n);
}

int rt_ws_send(struct rt_ws *ws, enum rt_ws_opcode op, const void *data, size_t data_len)
{
	if (op != RT_WS_TEXT && op != RT_WS_BINARY)
		return RT_EINVAL;
	if (ws->is_close_sent)
		return RT_ECLOSED;
	return output_frame(ws, (uint8_t)op, data, data_len);
}

void rt_ws_close(struct rt_ws *ws, uint16_t code, const char *reason)
{
	send_close(ws, code, reason, reason ? strlen(reason) : 0);
}

bool rt_ws_is_done(const struct rt_ws *ws)
{
	return ws->is_close_sent && (ws->is_close_received || ws->is_read_stopped);
}

uint16_t rt_ws_peer_close_code(const struct rt_ws *ws)
{
	return ws->peer_close_code;
}

/* ---- input ---- */

/* Stops reading after a protocol violation and says why with a close frame. */
static int fail(struct rt_ws *ws, uint16_t code)
{
	ws->is_read_stopped = true;
	free_frame(ws);
	free_msg(ws);
	int rc = send_close(ws, code, NULL, 0);
	return rc ? rc : RT_EPROTO;
}

/*
 * Parses a frame header from the n bytes at p. Returns its length, 0 when
 * more bytes are needed.
 */
static size_t parse_header(const uint8_t *p, size_t n, struct header *h)
{
	if (n < 2)
		return 0;
	size_t len = 2;
	uint8_t len7 = p[1] & 0x7f;
	size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
	bool is_masked = p[1] & 0x80;
	len += ext + (is_masked ? 4 : 0);
	if (n < len)
		return 0;
	h->is_fin = p[0] & 0x80;
	h->rsv = (p[0] >> 4) & 7;
	h->op = p[0] & 0x0f;
	h->is_masked = is_masked;
	h->payload_len = len7;
	if (ext) {
		h->payload_len = 0;
		for (size_t i = 0; i < ext; i++)
			h->payload_len = h->payload_len << 8 | p[2 + i];
	}
	if (is_masked)
		memcpy(h->key, p + 2 + ext, 4);
	h->len = len;
	return len;
}

/* The bytes still needed before a header can be parsed from p[0..n). */
static size_t header_need(const uint8_t *p, size_t n)
{
	if (n < 2)
		return 2 - n;
	uint8_t len7 = p[1] & 0x7f;
	size_t len = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((p[1] & 0x80) ? 4 : 0);
	return len > n ? len - n : 0;
}

/* Checks a parsed header against the protocol and our limits. Returns 0 or
 * the close code to fail with. */
static uint16_t check_header(const struct rt_ws *ws, const struct header *h)
{
	if (h->rsv)
		return CODE_PROTOCOL;
	if (h->is_masked != (ws->role == RT_WS_SERVER))
		return CODE_PROTOCOL;
	if (h->payload_len >> 63)
		return CODE_PROTOCOL;
	switch (h->op) {
	case OP_CLOSE:
	case OP_PING:
	case OP_PONG:
		if (!h->is_fin || h->payload_len > MAX_CONTROL)
			return CODE_PROTOCOL;
		return 0;
	case OP_CONT:
		if (!ws->msg_op)
			return CODE_PROTOCOL;
		break;
	case OP_TEXT:
	case OP_BINARY:
		if (ws->msg_op)
			return CODE_PROTOCOL;
		break;
	default:
		return CODE_PROTOCOL;
	}
	if (h->payload_len > ws->max_msg_len - ws->msg_len)
		return CODE_TOO_BIG;
	return 0;
}

static bool is_valid_close_code(uint16_t code)
{
	if (code >= 3000 && code <= 4999)
		return true;
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

static int on_close_frame(struct rt_ws *ws, const uint8_t *p, size_t len)
{
	ws->is_close_received = true;
	if (len == 1)
		return fail(ws, CODE_PROTOCOL);
	uint16_t code = CODE_NO_STATUS;
	if (len >= 2) {
		code = (uint16_t)(p[0] << 8 | p[1]);
		if (!is_valid_close_code(code))
			return fail(ws, CODE_PROTOCOL);
		if (u8_check(p + 2, len - 2))
			return fail(ws, CODE_BAD_DATA);
	}
	ws->peer_close_code = code;
	ws->is_read_stopped = true;
	free_frame(ws);
	free_msg(ws);
	/* Echo the peer's code, as RFC 6455 §5.5.1 asks. */
	return send_close(ws, code, NULL, 0);
}

static int deliver(struct rt_ws *ws, uint8_t op, const uint8_t *p, size_t len)
{
	if (op == OP_TEXT && u8_check(p, len))
		return fail(ws, CODE_BAD_DATA);
	/* After our close frame, data is read and dropped until the peer's close. */
	if (!ws->is_close_sent)
		ws->cb->on_message(ws->user, op == OP_TEXT ? RT_WS_TEXT : RT_WS_BINARY, p, len);
	return 0;
}

/* Handles one complete frame whose payload (len bytes at p) is unmasked. */
static int on_frame(struct rt_ws *ws, const struct header *h, const uint8_t *p, size_t len)
{
	switch (h->op) {
	case OP_CLOSE:
		return on_close_frame(ws, p, len);
	case OP_PING:
		return ws->is_close_sent ? 0 : output_frame(ws, OP_PONG, p, len);
	case OP_PONG:
		return 0;
	case OP_CONT:
		break;
	default: /* text or binary */
		if (h->is_fin)
			return deliver(ws, h->op, p, len);
		ws->msg_op = h->op;
		break;
	}
	if (len) {
		uint8_t *m = ws_realloc(ws, ws->msg, ws->msg_len + len);
		if (!m) {
			ws->is_read_stopped = true;
			return RT_ENOMEM;
		}
		memcpy(m + ws->msg_len, p, len);
		ws->msg = m;
		ws->msg_len += len;
	}
	if (!h->is_fin)
		return 0;
	int rc = deliver(ws, ws->msg_op, ws->msg, ws->msg_len);
	free_msg(ws);
	return rc;
}

static void unmask(uint8_t *p, size_t len, const uint8_t key[4])
{
	for (size_t i = 0; i < len; i++)
		p[i] ^= key[i & 3];
}

/* Appends up to want bytes of input to the partial frame. Returns the count taken, or
 * -1 when the buffer cannot grow. */
static long take(struct rt_ws *ws, const uint8_t *data, size_t len, size_t want, size_t cap)
{
	size_t n = want < len ? want : len;
	if (ws->frame_len + n > ws->frame_cap) {
		uint8_t *f = ws_realloc(ws, ws->frame, cap);
		if (!f)
			return -1;
		ws->frame = f;
		ws->frame_cap = cap;
	}
	memcpy(ws->frame + ws->frame_len, data, n);
	ws->frame_len += n;
	return (long)n;
}

/*
 * Continues the partial frame with input. Returns the bytes consumed (the
 * frame may still be incomplete) or a negative error.
 */
static long feed_partial(struct rt_ws *ws, const uint8_t *data, size_t len)
{
	size_t used = 0;
	struct header h;
	if (!parse_header(ws->frame, ws->frame_len, &h)) {
		size_t need = header_need(ws->frame, ws->frame_len);
		long n = take(ws, data, len, need, MAX_HEADER);
		if (n < 0)
			goto nomem;
		used += (size_t)n;
		if (!parse_header(ws->frame, ws->frame_len, &h))
			return (long)used;
		uint16_t code = check_header(ws, &h);
		if (code)
			return fail(ws, code);
	}
	size_t total = h.len + (size_t)h.payload_len;
	long n = take(ws, data + used, len - used, total - ws->frame_len,
		      total > MAX_HEADER ? total : MAX_HEADER);
	if (n < 0)
		goto nomem;
	used += (size_t)n;
	if (ws->frame_len < total)
		return (long)used;
	uint8_t *payload = ws->frame + h.len;
	if (h.is_masked)
		unmask(payload, (size_t)h.payload_len, h.key);
	/* The frame buffer stays owned until the handler returns, then goes:
	 * an idle connection holds no buffer. */
	int rc = on_frame(ws, &h, payload, (size_t)h.payload_len);
	free_frame(ws);
	return rc ? rc : (long)used;
nomem:
	ws->is_read_stopped = true;
	return RT_ENOMEM;
}

int rt_ws_feed(struct rt_ws *ws, uint8_t *data, size_t data_len)
{
	while (data_len && !ws->is_read_stopped) {
		if (ws->frame_len) {
			long n = feed_partial(ws, data, data_len);
			if (n < 0)
				return (int)n;
			data += n;
			data_len -= (size_t)n;
			continue;
		}
		struct header h;
		size_t cap = MAX_HEADER;
		if (parse_header(data, data_len, &h)) {
			uint16_t code = check_header(ws, &h);
			if (code)
				return fail(ws, code);
			size_t plen = (size_t)h.payload_len;
			if (plen <= data_len - h.len) {
				/* A whole frame in the input: handled in place. */
				uint8_t *payload = data + h.len;
				if (h.is_masked)
					unmask(payload, plen, h.key);
				int rc = on_frame(ws, &h, payload, plen);
				if (rc)
					return rc;
				data += h.len + plen;
				data_len -= h.len + plen;
				continue;
			}
			cap = h.len + plen;
		}
		/* An incomplete frame: keep all of it (feed_partial takes the rest),
		 * in a buffer sized for the whole frame once its header is known. */
		if (take(ws, data, data_len, data_len, cap) < 0) {
			ws->is_read_stopped = true;
			return RT_ENOMEM;
		}
		break;
	}
	return 0;
}

/* ---- server frames and the handshake ---- */

struct rt_frame *rt_ws_frame(enum rt_ws_opcode op, const void *data, size_t data_len)
{
	uint8_t h[MAX_HEADER];
	size_t n = put_header(h, (uint8_t)op, data_len, NULL);
	struct rt_frame *f = rt_frame_new(n + data_len);
	memcpy(f->data, h, n);
	if (data_len)
		memcpy(f->data + n, data, data_len);
	return f;
}

void rt_ws_accept_key(const char *key, size_t key_len, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char md[SHA_DIGEST_LENGTH];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha1(), NULL);
	EVP_DigestUpdate(c, key, key_len);
	EVP_DigestUpdate(c, guid, sizeof guid - 1);
	EVP_DigestFinal_ex(c, md, NULL);
	EVP_MD_CTX_free(c);
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}
