/*
 * Fuzz target: librtsync's parsing of the server's handshake response
 * (src/client/handshake.c) and of presence messages (src/client/presence.c).
 * The first byte picks the target and how the input is split into chunks.
 * The client sources are included here because fuzz targets link only the
 * server library.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/handshake.c"
#include "client/presence.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *std_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	if (!n) {
		free(p);
		return NULL;
	}
	return realloc(p, n);
}

static void fuzz_handshake(const uint8_t *data, size_t size, size_t chunk)
{
	static const struct rt_allocator a = {std_realloc, NULL};
	struct rt_client_url u;
	if (rt_client_url_parse(&a, "http://127.0.0.1:4000", &u))
		return;
	struct rt_client_hs hs;
	char *req;
	size_t req_len;
	if (rt_client_hs_start(&hs, &a, &u, "key", &req, &req_len) == 0) {
		/* the fixed accept value lets seeds reach the upgrade path */
		memcpy(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 29);
		size_t off = 0;
		int rc = 0;
		while (off < size && rc == 0) {
			size_t n = size - off < chunk ? size - off : chunk;
			rc = rt_client_hs_feed(&hs, (const char *)data + off, n);
			if (rc > 0 && (size_t)rc > n)
				abort(); /* more consumed than given */
			off += n;
		}
		if (rc == 0)
			rt_client_hs_eof(&hs);
		free(req);
	}
	rt_client_url_deinit(&a, &u);
}

static void fuzz_presence(const uint8_t *data, size_t size, bool is_full)
{
	json_t *msg = json_loadb((const char *)data, size, 0, NULL);
	if (!msg)
		return;
	json_t *state = json_object();
	for (int i = 0; i < 2; i++) { /* apply twice: against empty and non-empty state */
		json_t *ev = rt_client_presence_apply(&state, msg, is_full);
		if (!ev || !json_is_array(ev) || json_array_size(ev) == 0)
			abort();
		json_decref(ev);
		is_full = !is_full;
	}
	json_decref(state);
	json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	if (mode < 0x80)
		fuzz_handshake(data, size, mode % 16 ? mode % 16 : size ? size : 1);
	else
		fuzz_presence(data, size, mode & 1);
	return 0;
}
