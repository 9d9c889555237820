#include "net/ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#include "common/err.h"

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
		       void *user_data)
{
	struct rt_ws *ws = user_data;
	if (ws->in_len == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	size_t n = len < ws->in_len ? len : ws->in_len;
	memcpy(buf, ws->in, n);
	ws->in += n;
	ws->in_len -= n;
	return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		       void *user_data)
{
	struct rt_ws *ws = user_data;
	ws->cb->on_output(ws->user, data, len);
	return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
	memset(buf, 0, len); /* never called on a server context */
	return 0;
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
		   void *user_data)
{
	struct rt_ws *ws = user_data;
	if (ws->close_code)
		return;
	if (arg->opcode == WSLAY_TEXT_FRAME) {
		/* wslay has validated the UTF-8 (1007 otherwise). */
		ws->cb->on_message(ws->user, RT_WS_TEXT, arg->msg, arg->msg_length);
	} else if (arg->opcode == WSLAY_BINARY_FRAME) {
		ws->cb->on_message(ws->user, RT_WS_BINARY, arg->msg, arg->msg_length);
	} else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
		/* wslay answers the peer's close with the same code by itself. */
		ws->close_code = arg->status_code ? arg->status_code : WSLAY_CODE_NORMAL_CLOSURE;
	}
}

static const struct wslay_event_callbacks wslay_cbs = {
	.recv_callback = recv_cb,
	.send_callback = send_cb,
	.genmask_callback = genmask_cb,
	.on_msg_recv_callback = msg_cb,
};

int rt_ws_init(struct rt_ws *ws, const struct rt_ws_callbacks *cb, void *user, size_t max_msg_len)
{
	memset(ws, 0, sizeof *ws);
	ws->cb = cb;
	ws->user = user;
	if (wslay_event_context_server_init(&ws->ctx, &wslay_cbs, ws) != 0)
		return RT_ENOMEM;
	wslay_event_config_set_max_recv_msg_length(ws->ctx, max_msg_len);
	return 0;
}

void rt_ws_deinit(struct rt_ws *ws)
{
	if (ws->ctx)
		wslay_event_context_free(ws->ctx);
	ws->ctx = NULL;
}

/* Drains whatever wslay has queued (control frames) into on_output. */
static int flush(struct rt_ws *ws)
{
	if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0)
		return RT_EPROTO;
	return 0;
}

int rt_ws_feed(struct rt_ws *ws, const uint8_t *data, size_t data_len)
{
	ws->in = data;
	ws->in_len = data_len;
	int rc = 0;
	if (wslay_event_want_read(ws->ctx) && wslay_event_recv(ws->ctx) != 0)
		rc = RT_EPROTO;
	ws->in = NULL;
	ws->in_len = 0;
	/* On a protocol error (bad frame 1002, message too big 1009, invalid UTF-8
	 * 1007) wslay queues the close frame itself and stops reading: send it and
	 * tell the owner, who must not wait for the peer. */
	if (flush(ws) != 0)
		rc = RT_EPROTO;
	if (!ws->close_code && wslay_event_get_close_sent(ws->ctx))
		ws->close_code = wslay_event_get_status_code_sent(ws->ctx);
	if (!wslay_event_get_read_enabled(ws->ctx) && !wslay_event_get_close_received(ws->ctx))
		rc = RT_EPROTO;
	if (rc && !ws->close_code)
		ws->close_code = WSLAY_CODE_PROTOCOL_ERROR;
	return rc;
}

void rt_ws_close(struct rt_ws *ws, uint16_t code, const char *reason)
{
	if (!ws->close_code)
		ws->close_code = code;
	size_t reason_len = reason ? strlen(reason) : 0;
	if (reason_len > 123) /* a close frame's payload is at most 125 bytes */
		reason_len = 123;
	wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, reason_len);
	flush(ws);
}

bool rt_ws_is_done(const struct rt_ws *ws)
{
	return wslay_event_get_close_sent(ws->ctx) &&
	       (wslay_event_get_close_received(ws->ctx) || !wslay_event_get_read_enabled(ws->ctx));
}

struct frame_sink {
	uint8_t *p;
};

static ssize_t sink_send(const uint8_t *data, size_t len, int flags, void *user_data)
{
	struct frame_sink *s = user_data;
	memcpy(s->p, data, len);
	s->p += len;
	return (ssize_t)len;
}

static ssize_t sink_recv(uint8_t *buf, size_t len, int flags, void *user_data)
{
	return -1;
}

static int sink_genmask(uint8_t *buf, size_t len, void *user_data)
{
	return -1;
}

struct rt_frame *rt_ws_frame(enum rt_ws_opcode op, const void *data, size_t data_len)
{
	size_t head = data_len < 126 ? 2 : data_len <= 0xffff ? 4 : 10;
	struct rt_frame *f = rt_frame_new(head + data_len);
	struct frame_sink sink = {f->data};
	static const struct wslay_frame_callbacks cbs = {sink_send, sink_recv, sink_genmask};
	wslay_frame_context_ptr fctx;
	if (wslay_frame_context_init(&fctx, &cbs, &sink) != 0)
		goto fail;
	struct wslay_frame_iocb iocb = {
		.fin = 1,
		.opcode = (uint8_t)op,
		.payload_length = data_len,
		.data = data,
		.data_length = data_len,
	};
	ssize_t n = wslay_frame_send(fctx, &iocb);
	wslay_frame_context_free(fctx);
	if (n < 0 || (size_t)n != data_len || (size_t)(sink.p - f->data) != f->len)
		goto fail;
	return f;
fail:
	rt_frame_unref(f);
	return NULL;
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
