/*
 * The durable outbox (src/client/outbox.h): order, keys, deferral, what a
 * process killed with SIGKILL leaves on disk, a file that is not an outbox,
 * and failing allocations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/outbox.h"
#include "common/err.h"

static char dir[] = "/tmp/rtsync-outbox-XXXXXX";
static char path[sizeof dir + 32];

static int setup(void **state)
{
	strcpy(dir, "/tmp/rtsync-outbox-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof path, "%s/outbox.db", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[sizeof dir + 16];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct rt_outbox *open_ok(const struct rt_outbox_alloc *a)
{
	struct rt_outbox *o = NULL;
	char err[256];
	assert_int_equal(rt_outbox_open(path, a, &o, err, sizeof err), 0);
	assert_non_null(o);
	return o;
}

static void expect_front(struct rt_outbox *o, int64_t seq, const char *key, const char *payload,
			 unsigned attempts)
{
	struct rt_outbox_entry e;
	assert_int_equal(rt_outbox_front(o, &e), 0);
	if (seq)
		assert_int_equal(e.seq, seq);
	assert_string_equal(e.key, key);
	assert_string_equal(e.payload, payload);
	assert_int_equal(e.attempts, attempts);
	rt_outbox_entry_deinit(o, &e);
	assert_null(e.key);
	assert_null(e.payload);
}

static void test_order_and_keys(void **state)
{
	struct rt_outbox *o = open_ok(NULL);
	struct rt_outbox_entry e;
	assert_int_equal(rt_outbox_front(o, &e), RT_ENOTFOUND);
	assert_int_equal(rt_outbox_count(o), 0);
	int64_t s1, s2, s3;
	assert_int_equal(rt_outbox_push(o, "k1", "{\"n\":1}", &s1), 0);
	assert_int_equal(rt_outbox_push(o, "k2", "{\"n\":2}", &s2), 0);
	assert_int_equal(rt_outbox_push(o, "k3", "{\"n\":3}", &s3), 0);
	assert_true(s1 < s2 && s2 < s3);
	assert_int_equal(rt_outbox_push(o, "k2", "{\"n\":9}", NULL), RT_EEXISTS);
	assert_int_equal(rt_outbox_push(o, "", "{}", NULL), RT_EINVAL);
	assert_int_equal(rt_outbox_push(o, NULL, "{}", NULL), RT_EINVAL);
	assert_int_equal(rt_outbox_push(o, "k4", NULL, NULL), RT_EINVAL);
	char long_key[300];
	memset(long_key, 'k', sizeof long_key - 1);
	long_key[sizeof long_key - 1] = 0;
	assert_int_equal(rt_outbox_push(o, long_key, "{}", NULL), RT_EINVAL);
	assert_int_equal(rt_outbox_count(o), 3);

	expect_front(o, s1, "k1", "{\"n\":1}", 0);
	assert_int_equal(rt_outbox_defer(o, s1, 12345), 0);
	assert_int_equal(rt_outbox_defer(o, s1, 23456), 0);
	assert_int_equal(rt_outbox_front(o, &e), 0);
	assert_int_equal(e.attempts, 2);
	assert_int_equal(e.not_before_ms, 23456);
	rt_outbox_entry_deinit(o, &e);
	/* removing out of order is allowed; the front stays the oldest left */
	assert_int_equal(rt_outbox_remove(o, s2), 0);
	assert_int_equal(rt_outbox_remove(o, s2), RT_ENOTFOUND);
	assert_int_equal(rt_outbox_defer(o, s2, 1), RT_ENOTFOUND);
	expect_front(o, s1, "k1", "{\"n\":1}", 2);
	assert_int_equal(rt_outbox_remove(o, s1), 0);
	expect_front(o, s3, "k3", "{\"n\":3}", 0);
	/* a removed key may be used again */
	assert_int_equal(rt_outbox_push(o, "k1", "{\"n\":4}", NULL), 0);
	assert_int_equal(rt_outbox_count(o), 2);
	rt_outbox_close(o);
	rt_outbox_close(NULL);

	/* reopened: the same entries, the same order */
	o = open_ok(NULL);
	assert_int_equal(rt_outbox_count(o), 2);
	expect_front(o, s3, "k3", "{\"n\":3}", 0);
	rt_outbox_close(o);
}

/* Walking in order, and a replace that keeps the entry's place. */
static void test_next_and_replace(void **state)
{
	struct rt_outbox *o = open_ok(NULL);
	int64_t s1, s2, s3;
	assert_int_equal(rt_outbox_push(o, "a", "{\"n\":1}", &s1), 0);
	assert_int_equal(rt_outbox_push(o, "b", "{\"n\":2}", &s2), 0);
	assert_int_equal(rt_outbox_push(o, "c", "{\"n\":3}", &s3), 0);
	assert_int_equal(rt_outbox_defer(o, s2, 12345), 0);
	assert_int_equal(rt_outbox_replace(o, s2, "b2", "{\"n\":22}"), 0);
	assert_int_equal(rt_outbox_replace(o, s2, "c", "{}"), RT_EEXISTS);
	assert_int_equal(rt_outbox_replace(o, 999, "z", "{}"), RT_ENOTFOUND);
	assert_int_equal(rt_outbox_replace(o, s2, "", "{}"), RT_EINVAL);
	const char *keys[] = {"a", "b2", "c"}, *payloads[] = {"{\"n\":1}", "{\"n\":22}", "{\"n\":3}"};
	int64_t after = 0;
	for (int i = 0; i < 3; i++) {
		struct rt_outbox_entry e;
		assert_int_equal(rt_outbox_next(o, after, &e), 0);
		assert_string_equal(e.key, keys[i]);
		assert_string_equal(e.payload, payloads[i]);
		assert_int_equal(e.attempts, 0); /* the replace cleared the deferral */
		assert_int_equal(e.not_before_ms, 0);
		after = e.seq;
		rt_outbox_entry_deinit(o, &e);
	}
	assert_int_equal(after, s3);
	struct rt_outbox_entry e;
	assert_int_equal(rt_outbox_next(o, after, &e), RT_ENOTFOUND);
	assert_int_equal(rt_outbox_count(o), 3);
	rt_outbox_close(o);
}

static void test_survives_sigkill(void **state)
{
	enum { N = 200 };
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rt_outbox *o = NULL;
		if (rt_outbox_open(path, NULL, &o, NULL, 0))
			_exit(3);
		for (int i = 0; i < N; i++) {
			char key[32], payload[64];
			snprintf(key, sizeof key, "key-%d", i);
			snprintf(payload, sizeof payload, "{\"i\":%d}", i);
			if (rt_outbox_push(o, key, payload, NULL))
				_exit(4);
		}
		kill(getpid(), SIGKILL); /* no close, no exit handlers */
		_exit(5);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	struct rt_outbox *o = open_ok(NULL);
	assert_int_equal(rt_outbox_count(o), N);
	for (int i = 0; i < N; i++) {
		struct rt_outbox_entry e;
		assert_int_equal(rt_outbox_front(o, &e), 0);
		char key[32], payload[64];
		snprintf(key, sizeof key, "key-%d", i);
		snprintf(payload, sizeof payload, "{\"i\":%d}", i);
		assert_string_equal(e.key, key);
		assert_string_equal(e.payload, payload);
		assert_int_equal(rt_outbox_remove(o, e.seq), 0);
		rt_outbox_entry_deinit(o, &e);
	}
	assert_int_equal(rt_outbox_count(o), 0);
	rt_outbox_close(o);
}

static void test_not_an_outbox(void **state)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not a database file. ", f);
	fclose(f);
	struct rt_outbox *o = NULL;
	char err[256] = "";
	assert_int_equal(rt_outbox_open(path, NULL, &o, err, sizeof err), RT_EIO);
	assert_null(o);
	assert_non_null(strstr(err, path));
	assert_int_equal(rt_outbox_open("/nonexistent-dir/outbox.db", NULL, &o, err, sizeof err),
			 RT_EIO);
}

struct failing {
	long n, fail_at, live;
};

static void *failing_realloc(void *ud, void *p, size_t size)
{
	struct failing *f = ud;
	if (!size) {
		if (p)
			f->live--;
		free(p);
		return NULL;
	}
	if (++f->n == f->fail_at)
		return NULL;
	void *q = realloc(p, size);
	if (q && !p)
		f->live++;
	return q;
}

static void test_out_of_memory(void **state)
{
	/* Open, push, read the front and close, with the k-th allocation failing. */
	for (long k = 1;; k++) {
		struct failing f = {.fail_at = k};
		struct rt_outbox_alloc a = {failing_realloc, &f};
		struct rt_outbox *o = NULL;
		int rc = rt_outbox_open(path, &a, &o, NULL, 0);
		if (rc) {
			assert_int_equal(rc, RT_ENOMEM);
			assert_int_equal(f.live, 0);
			continue;
		}
		char key[32];
		snprintf(key, sizeof key, "oom-%ld", k);
		assert_int_equal(rt_outbox_push(o, key, "{\"x\":1}", NULL), 0);
		struct rt_outbox_entry e;
		rc = rt_outbox_front(o, &e);
		if (rc) {
			assert_int_equal(rc, RT_ENOMEM);
			assert_null(e.key);
			assert_null(e.payload);
		} else {
			assert_int_equal(rt_outbox_remove(o, e.seq), 0);
			rt_outbox_entry_deinit(o, &e);
		}
		rt_outbox_close(o);
		assert_int_equal(f.live, 0);
		if (f.n < k)
			break; /* nothing failed: every allocation was tried */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_and_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_and_replace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_survives_sigkill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_an_outbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
