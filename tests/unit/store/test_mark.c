/*
 * Read marks (src/store/store.h): which changes after a read's position its
 * snapshot already shows — by position, by the snapshot's transaction ids
 * (including 32-bit ids across an epoch), and by the commit LSN bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "store/store.h"

static struct rt_change change(uint64_t pos, uint64_t lsn, uint32_t xid)
{
	return (struct rt_change){.pos = pos, .lsn = lsn, .xid = xid};
}

static struct rt_read_mark mark_of(uint64_t pos, uint64_t xmin, uint64_t xmax,
				   const uint64_t *xip, size_t n, uint64_t lsn)
{
	struct rt_read_mark m = {.pos = pos, .xmin = xmin, .xmax = xmax, .lsn = lsn};
	if (n) {
		m.xip = rt_xmalloc(n * sizeof *m.xip);
		memcpy(m.xip, xip, n * sizeof *xip);
		m.n_xip = n;
	}
	return m;
}

static void test_positions_alone(void **state)
{
	struct rt_read_mark m = {.pos = 10}; /* the embedded store's: exact */
	struct rt_change a = change(10, 0, 0), b = change(11, 0, 0);
	assert_true(rt_read_mark_has(&m, &a));
	assert_false(rt_read_mark_has(&m, &b));
	assert_true(rt_read_mark_is_past(&m, &b));
	rt_read_mark_deinit(&m);
}

static void test_snapshot(void **state)
{
	const uint64_t xip[] = {103, 105};
	struct rt_read_mark m = mark_of(10, 100, 108, xip, 2, 5000);
	struct rt_change in_pos = change(9, 4000, 200);    /* at or below the position */
	struct rt_change old = change(11, 4100, 99);       /* below xmin: seen */
	struct rt_change seen = change(12, 4200, 104);     /* between, not in progress */
	struct rt_change running = change(13, 4300, 103);  /* in progress at the snapshot */
	struct rt_change later = change(14, 4400, 108);    /* at xmax: not seen */
	struct rt_change past = change(15, 5000, 101);     /* committed after the read */
	struct rt_change unknown = change(16, 0, 0);       /* a log row without its xid */
	assert_true(rt_read_mark_has(&m, &in_pos));
	assert_true(rt_read_mark_has(&m, &old));
	assert_true(rt_read_mark_has(&m, &seen));
	assert_false(rt_read_mark_has(&m, &running));
	assert_false(rt_read_mark_has(&m, &later));
	assert_false(rt_read_mark_has(&m, &past));
	assert_false(rt_read_mark_has(&m, &unknown));
	assert_false(rt_read_mark_is_past(&m, &seen));
	assert_true(rt_read_mark_is_past(&m, &past));
	assert_false(rt_read_mark_is_past(&m, &unknown));
	rt_read_mark_deinit(&m);
	assert_int_equal(m.xmax, 0);
	assert_null(m.xip);
	assert_int_equal(m.pos, 10); /* positions still tell */
	assert_true(rt_read_mark_has(&m, &in_pos));
	assert_false(rt_read_mark_has(&m, &seen));
}

/* 32-bit ids from the log against 64-bit snapshot ids around an epoch. */
static void test_epochs(void **state)
{
	const uint64_t epoch = (uint64_t)3 << 32;
	const uint64_t xip[] = {epoch + 2};
	struct rt_read_mark m = mark_of(1, epoch - 5, epoch + 5, xip, 1, 1000);
	struct rt_change before = change(2, 10, (uint32_t)(epoch - 3)); /* 0xfffffffd */
	struct rt_change after = change(3, 10, 1);                      /* epoch + 1 */
	struct rt_change running = change(4, 10, 2);                    /* epoch + 2 */
	struct rt_change beyond = change(5, 10, 7);                     /* epoch + 7 */
	struct rt_change ancient = change(6, 10, (uint32_t)(epoch - 6)); /* below xmin */
	assert_true(rt_read_mark_has(&m, &before));
	assert_true(rt_read_mark_has(&m, &after));
	assert_false(rt_read_mark_has(&m, &running));
	assert_false(rt_read_mark_has(&m, &beyond));
	assert_true(rt_read_mark_has(&m, &ancient));
	rt_read_mark_deinit(&m);
	/* the first epoch: no id below zero */
	m = mark_of(1, 3, 10, NULL, 0, 1000);
	struct rt_change high = change(2, 10, UINT32_MAX);
	struct rt_change low = change(3, 10, 5);
	assert_false(rt_read_mark_has(&m, &high));
	assert_true(rt_read_mark_has(&m, &low));
	rt_read_mark_deinit(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_positions_alone),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_epochs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
