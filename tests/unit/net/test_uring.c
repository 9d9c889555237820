/*
 * Batched sends (src/net/uring.h) on real sockets: every send of a batch
 * reports what the kernel took, in the order added; a full socket reports
 * -EAGAIN or a short count instead of waiting; a bad descriptor reports its
 * error without disturbing the others. Skipped where the kernel refuses
 * io_uring (the server then sends one socket at a time).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/uring.h"

#define N_PAIRS 300 /* more than one batch */

struct result {
	int res[N_PAIRS + 2];
	int order[N_PAIRS + 2];
	unsigned n;
};

static struct result got;

static void on_done(void *user, int res)
{
	int i = (int)(intptr_t)user;
	got.res[i] = res;
	got.order[got.n++] = i;
}

static struct rt_uring *ring_or_skip(void)
{
	struct rt_uring *u;
	int rc = rt_uring_new(&u);
	if (rc < 0) {
		print_message("io_uring unavailable here (%s): skipped\n", strerror(-rc));
		skip();
	}
	return u;
}

static void test_batches_in_order(void **state)
{
	struct rt_uring *u = ring_or_skip();
	int sv[N_PAIRS][2];
	for (int i = 0; i < N_PAIRS; i++)
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]), 0);
	static char head[N_PAIRS][32];
	char tail[] = "-tail";
	memset(&got, 0, sizeof got);
	int i = 0;
	unsigned n_runs = 0;
	while (i < N_PAIRS) {
		struct iovec *iov;
		while (i < N_PAIRS && (iov = rt_uring_slot(u))) {
			int len = snprintf(head[i], sizeof head[i], "msg %d", i);
			iov[0] = (struct iovec){.iov_base = head[i], .iov_len = (size_t)len};
			iov[1] = (struct iovec){.iov_base = tail, .iov_len = 5};
			rt_uring_add(u, sv[i][0], 2, (void *)(intptr_t)i);
			i++;
		}
		assert_int_equal(rt_uring_run(u, on_done), 0);
		n_runs++;
	}
	assert_int_equal(n_runs, (N_PAIRS + RT_URING_BATCH - 1) / RT_URING_BATCH);
	assert_int_equal(got.n, N_PAIRS);
	for (i = 0; i < N_PAIRS; i++) {
		assert_int_equal(got.order[i], i);
		char want[40], buf[64];
		int len = snprintf(want, sizeof want, "msg %d-tail", i);
		assert_int_equal(got.res[i], len);
		assert_int_equal(read(sv[i][1], buf, sizeof buf), len);
		assert_memory_equal(buf, want, (size_t)len);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	rt_uring_free(u);
}

static void test_full_batch(void **state)
{
	struct rt_uring *u = ring_or_skip();
	static int sv[RT_URING_BATCH][2];
	static const char msg[] = "0123456789";
	memset(&got, 0, sizeof got);
	unsigned n = 0;
	struct iovec *iov;
	while ((iov = rt_uring_slot(u))) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[n]), 0);
		iov[0] = (struct iovec){.iov_base = (void *)msg, .iov_len = 10};
		rt_uring_add(u, sv[n][0], 1, (void *)(intptr_t)n);
		n++;
	}
	assert_int_equal(n, RT_URING_BATCH);
	assert_int_equal(rt_uring_run(u, on_done), 0);
	assert_int_equal(got.n, n);
	for (unsigned i = 0; i < n; i++) {
		char buf[16];
		assert_int_equal(got.order[i], (int)i);
		assert_int_equal(got.res[i], 10);
		assert_int_equal(read(sv[i][1], buf, sizeof buf), 10);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	assert_non_null(rt_uring_slot(u)); /* empty again */
	rt_uring_free(u);
}

static void test_full_socket_and_bad_fd(void **state)
{
	struct rt_uring *u = ring_or_skip();
	int full[2], ok[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, full), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ok), 0);
	static char big[65536];
	while (write(full[0], big, sizeof big) > 0)
		;
	assert_int_equal(errno, EAGAIN);
	int bad = dup(ok[0]);
	close(bad);
	memset(&got, 0, sizeof got);
	struct iovec *iov = rt_uring_slot(u);
	iov[0] = (struct iovec){.iov_base = big, .iov_len = sizeof big};
	rt_uring_add(u, full[0], 1, (void *)(intptr_t)0);
	iov = rt_uring_slot(u);
	iov[0] = (struct iovec){.iov_base = big, .iov_len = 100};
	rt_uring_add(u, bad, 1, (void *)(intptr_t)1);
	iov = rt_uring_slot(u);
	iov[0] = (struct iovec){.iov_base = big, .iov_len = 100};
	rt_uring_add(u, ok[0], 1, (void *)(intptr_t)2);
	assert_int_equal(rt_uring_run(u, on_done), 0); /* returned at once: nothing waited */
	assert_int_equal(got.n, 3);
	assert_true(got.res[0] == -EAGAIN || (got.res[0] >= 0 && got.res[0] < (int)sizeof big));
	assert_int_equal(got.res[1], -EBADF);
	assert_int_equal(got.res[2], 100);
	close(full[0]);
	close(full[1]);
	close(ok[0]);
	close(ok[1]);
	rt_uring_free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batches_in_order),
		cmocka_unit_test(test_full_batch),
		cmocka_unit_test(test_full_socket_and_bad_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
