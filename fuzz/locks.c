/*
 * Fuzz target: the lock table (src/locks/locks.c) under hostile sequences
 * of requests, and the name checks of locks and activity channels.
 *
 * Input layout: records of 8 bytes — op, owner, name length, time step,
 * lease (2 bytes LE), wait (2 bytes LE) — each followed by name-length
 * bytes of name (as many as are left), until the input ends.
 *
 * Checked: the table's invariants after every operation
 * (rt_locks_validate); every grant, at once or from the queue, has a token
 * larger than every token before it; a name the table refuses as bad is
 * never granted; state is valid JSON for any name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "activity/activity.h"
#include "locks/locks.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			abort();                                                         \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t last_token;

static void on_event(void *ctx, const struct rt_lock_event *ev)
{
	(void)ctx;
	if (ev->kind == RT_LOCK_EV_GRANTED) {
		CHECK(ev->token > last_token);
		last_token = ev->token;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rt_locks_config cfg;
	rt_locks_config_default(&cfg);
	cfg.max_locks = 16;
	cfg.max_per_owner = 4;
	cfg.max_per_subject = 6;
	cfg.max_waiters = 4;
	cfg.min_lease_ms = 1;
	cfg.max_lease_ms = 60000;
	cfg.max_wait_ms = 60000;
	cfg.on_event = on_event;
	last_token = 0;
	struct rt_locks *t = rt_locks_new(&cfg);
	uint64_t now = 1;
	size_t i = 0;
	while (i + 8 <= size) {
		const uint8_t *r = data + i;
		i += 8;
		size_t nlen = r[2] % 160;
		if (nlen > size - i)
			nlen = size - i;
		char name[160];
		memcpy(name, data + i, nlen);
		name[nlen] = 0;
		i += nlen;
		now += r[3] * 10u;
		uint64_t owner = 1 + r[1] % 8;
		uint32_t lease = (uint32_t)(r[4] | r[5] << 8);
		uint32_t wait = (uint32_t)(r[6] | r[7] << 8);
		bool ok_name = rt_locks_name_ok(name);
		CHECK(!ok_name || strlen(name) == nlen); /* no name with a NUL inside passes */
		(void)rt_activity_channel_ok(name);
		struct rt_lock_grant g;
		enum rt_lock_rc rc;
		switch (r[0] % 6) {
		case 0:
			rc = rt_locks_acquire(t, now, name, owner, r[1] & 0x10 ? "u" : NULL, false,
					      lease, wait, &g);
			CHECK(ok_name || rc == RT_LOCK_BAD_NAME);
			if (rc == RT_LOCK_OK)
				CHECK(g.token == last_token);
			break;
		case 1: rt_locks_renew(t, now, name, owner, r[4] % 2 ? g.token : 0, lease, NULL); break;
		case 2: rt_locks_release(t, now, name, owner, 0); break;
		case 3: rt_locks_drop_owner(t, now, owner); break;
		case 4: rt_locks_tick(t, now); break;
		default: {
			json_t *s = rt_locks_state(t, now, name);
			CHECK(json_is_object(s));
			char *txt = json_dumps(s, JSON_COMPACT);
			CHECK(txt);
			free(txt);
			json_decref(s);
		}
		}
		rt_locks_validate(t);
	}
	rt_locks_free(t);
	return 0;
}
