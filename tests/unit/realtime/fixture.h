/*
 * Shared by the realtime unit tests: a server that is created but never
 * started, one hub local per worker built on the test thread (nothing else
 * runs, so that is safe), and subscribers that record what they are given.
 * Included by the realtime unit tests only; everything is static.
 */
#ifndef RT_TEST_REALTIME_FIXTURE_H
#define RT_TEST_REALTIME_FIXTURE_H

#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "net/server.h"
#include "realtime/hub.h"

#define FX_MAX_WORKERS 3
/* Not every test file uses every helper. */
#define FX_UNUSED __attribute__((unused))

struct fixture {
	struct rt_server *server;
	struct rt_hub *hub;
	unsigned n;
	struct rt_worker *w[FX_MAX_WORKERS];
	struct rt_hub_local *l[FX_MAX_WORKERS];
};

static const struct rt_server_handler fx_handler; /* every callback NULL */

FX_UNUSED static struct rt_server *fx_server_new(unsigned n_workers)
{
	struct rt_server_config cfg = {
		.host = "127.0.0.1",
		.port = 0,
		.n_workers = n_workers,
		.max_out_bytes = 1 << 20,
		.max_msg_bytes = 1 << 20,
		.max_body_bytes = 1 << 20,
		.request_timeout_ms = 1000,
		.idle_timeout_ms = 1000,
	};
	struct rt_server *s = NULL;
	assert_int_equal(rt_server_new(&cfg, &fx_handler, NULL, &s), 0);
	assert_non_null(s);
	assert_int_equal(rt_server_n_workers(s), n_workers);
	return s;
}

/* Open file descriptors of this process. */
FX_UNUSED static int fx_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/*
 * Whether rt_server_free() releases a server that was never started. Asked
 * once, in a child process, so that a leak there cannot taint this one: the
 * child counts its descriptors around rt_server_new()/rt_server_free() and
 * exits 0 when they match. Returns 1 (releases), 0 (leaks) or -1 (probe
 * failed).
 */
FX_UNUSED static int fx_free_releases(void)
{
	static int cached = -2;
	if (cached != -2)
		return cached;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return cached = -1;
	if (pid == 0) {
		int before = fx_count_fds();
		struct rt_server_config cfg = {.host = "127.0.0.1", .port = 0, .n_workers = 2};
		struct rt_server *s = NULL;
		if (rt_server_new(&cfg, &fx_handler, NULL, &s) != 0)
			_exit(2);
		rt_server_free(s);
		_exit(fx_count_fds() == before ? 0 : 1);
	}
	int st = 0;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) > 1)
		return cached = -1;
	return cached = WEXITSTATUS(st) == 0;
}

FX_UNUSED static void fx_close_handle(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/*
 * Frees a never-started server. While rt_server_free() leaves a never-started
 * worker's loop handles open (test_hub.c: test_server_free_never_started),
 * close them first so that this test's own leak checks stay meaningful; once
 * it releases them itself, just call it.
 */
FX_UNUSED static void fx_server_free(struct rt_server *s)
{
	if (fx_free_releases() != 1) {
		for (unsigned i = 0; i < rt_server_n_workers(s); i++) {
			uv_loop_t *loop = rt_worker_loop(rt_server_worker(s, i));
			uv_walk(loop, fx_close_handle, NULL);
			uv_run(loop, UV_RUN_NOWAIT);
		}
	}
	rt_server_free(s);
}

FX_UNUSED static void fx_setup(struct fixture *fx, unsigned n_workers)
{
	assert_true(n_workers >= 1 && n_workers <= FX_MAX_WORKERS);
	memset(fx, 0, sizeof *fx);
	fx->n = n_workers;
	fx->server = fx_server_new(n_workers);
	fx->hub = rt_hub_new();
	assert_non_null(fx->hub);
	for (unsigned i = 0; i < n_workers; i++) {
		fx->w[i] = rt_server_worker(fx->server, i);
		assert_non_null(fx->w[i]);
		assert_int_equal(rt_worker_index(fx->w[i]), i);
		fx->l[i] = rt_hub_local_new(fx->hub, fx->w[i]);
		assert_non_null(fx->l[i]);
	}
	assert_null(rt_server_worker(fx->server, n_workers));
}

FX_UNUSED static void fx_teardown(struct fixture *fx)
{
	for (unsigned i = 0; i < fx->n; i++)
		rt_hub_local_free(fx->l[i]);
	rt_hub_free(fx->hub);
	fx_server_free(fx->server);
	memset(fx, 0, sizeof *fx);
}

/* ---- recording subscribers ---- */

#define REC_MAX 64

struct rec {
	struct rt_sub sub; /* first: deliver gets &rec->sub */
	const char *name;
	size_t n;
	struct rt_msg *msgs[REC_MAX]; /* one reference each */
};

FX_UNUSED static void rec_deliver(struct rt_sub *sub, struct rt_msg *m)
{
	struct rec *r = (struct rec *)sub;
	assert_true(r->n < REC_MAX);
	r->msgs[r->n++] = rt_msg_ref(m);
}

FX_UNUSED static void rec_init(struct rec *r, const char *name)
{
	memset(r, 0, sizeof *r);
	r->sub.deliver = rec_deliver;
	r->name = name;
}

/* Drops the recorded messages. */
FX_UNUSED static void rec_clear(struct rec *r)
{
	for (size_t i = 0; i < r->n; i++)
		rt_msg_unref(r->msgs[i]);
	r->n = 0;
}

/* The payload of a server WebSocket frame (2, 4 or 10 byte header). */
FX_UNUSED static const uint8_t *fx_frame_payload(const struct rt_frame *f, size_t *len)
{
	assert_non_null(f);
	assert_true(f->len >= 2);
	assert_int_equal(f->data[0], 0x81); /* FIN + text */
	size_t n = f->data[1] & 0x7f, head = 2;
	assert_int_equal(f->data[1] & 0x80, 0);
	if (n == 126) {
		n = (size_t)f->data[2] << 8 | f->data[3];
		head = 4;
	} else if (n == 127) {
		n = 0;
		for (int i = 0; i < 8; i++)
			n = n << 8 | f->data[2 + i];
		head = 10;
	}
	assert_int_equal(f->len, head + n);
	*len = n;
	return f->data + head;
}

/* The JSON text of a frame, parsed (a new reference). */
FX_UNUSED static json_t *fx_frame_json(const struct rt_frame *f)
{
	size_t len;
	const uint8_t *p = fx_frame_payload(f, &len);
	json_error_t err;
	json_t *v = json_loadb((const char *)p, len, 0, &err);
	if (!v)
		print_error("frame is not JSON: %.*s (%s)\n", (int)len, (const char *)p, err.text);
	assert_non_null(v);
	return v;
}

#endif
