/*
 * Fuzz target: a Phoenix join payload's config as the server reads it —
 * postgres_changes entries (rt_delivery_parse, rt_binding_parse: table,
 * schema, event, filter, delivery controls, row-level security of the
 * requester) and live-query definitions (config.rtsync.live: options by
 * rt_live_opts_parse, each query by rt_live_def_parse, then opened against
 * an embedded store, which builds and runs its SQL).
 *
 * Input layout: the whole input is the join payload, JSON text. Also read as
 * a live_subscribe payload ({queries, throttle_ms?, …}).
 *
 * Checked: every refusal says why; delivery options that parse are within
 * 0..60000 ms, never throttle with debounce, and max_wait_ms only with
 * debounce; a binding parses the same for every requester (its id is the
 * entry's whoever asks) and forms a group key; a definition that parses has
 * its id, 1..RT_LIVE_MAX_ID bytes; an opened query has a result with rows
 * and keys arrays of the same length. The store is created once per process
 * (a temporary directory, removed at exit).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/policy.h"
#include "live/live.h"
#include "realtime/changes.h"
#include "realtime/delivery.h"
#include "realtime/hub.h"
#include "store/store.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS bookings (id bigint PRIMARY KEY, property text, "
	"status text NOT NULL, owner text NOT NULL, amount bigint, price double precision, "
	"nights integer, active boolean, meta jsonb, at timestamptz, day date);\n"
	"CREATE TABLE IF NOT EXISTS open_t (id integer PRIMARY KEY, v text);\n"
	"ALTER TABLE bookings ENABLE ROW LEVEL SECURITY;\n"
	"CREATE POLICY own ON bookings FOR SELECT TO authenticated "
	"USING (owner = (auth.jwt() ->> 'sub'));\n"
	"CREATE POLICY open ON bookings FOR SELECT TO authenticated USING (status = 'open');\n"
	"CREATE POLICY anon_none ON bookings FOR SELECT TO anon USING (false);\n"
	"INSERT OR IGNORE INTO bookings (id, property, status, owner, amount, price, nights, "
	"active, meta, at, day) VALUES "
	"(1, 'p1', 'open', 'u1', 10, 1.5, 2, 1, '{\"a\":1}', '2024-01-01T00:00:00Z', '2024-01-01'), "
	"(2, 'p2', 'closed', 'u2', NULL, NULL, NULL, 0, NULL, NULL, NULL), "
	"(3, 'p1', 'open', 'u2', -5, 1e300, 0, NULL, '[1,2]', '2030-12-31T23:59:59Z', '2030-12-31');\n"
	"INSERT OR IGNORE INTO open_t (id, v) VALUES (1, 'x'), (2, NULL);\n";

static char dir[64];
static struct rt_store *store;
static struct rt_hub *hub;
static struct rt_changes *changes;
static struct rt_live *live;
static json_t *claims;

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "join_config: cannot remove %s\n", dir);
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/rtsync-fuzz-join-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(remove_dir);
	char path[128], err[512] = "";
	snprintf(path, sizeof path, "%s/db.sqlite", dir);
	if (rt_store_open_sqlite(path, schema, 1000, 3600000, &store, err, sizeof err)) {
		fprintf(stderr, "join_config: %s\n", err);
		abort();
	}
	hub = rt_hub_new();
	changes = rt_changes_new(store, hub);
	live = rt_live_new(store, hub);
	claims = json_pack("{s:s, s:s, s:s}", "sub", "u1", "role", "authenticated", "team", "t");
}

static void check_delivery(const json_t *entry)
{
	struct rt_delivery_opts o;
	char err[512] = "";
	if (rt_delivery_parse(entry, &o, err, sizeof err)) {
		CHECK(err[0]);
		return;
	}
	CHECK(o.throttle_ms <= 60000 && o.debounce_ms <= 60000);
	CHECK(!(o.throttle_ms && o.debounce_ms));
	CHECK(o.debounce_ms || !o.max_wait_ms);
	CHECK(rt_delivery_equal(&o, &o));
}

static void check_bindings(const json_t *pg)
{
	const struct rt_auth who[] = {
		{.role = "anon", .claims = NULL, .topic = "room"},
		{.role = "authenticated", .claims = claims, .topic = "room"},
		{.role = "service_role", .claims = NULL, .topic = "room"},
	};
	size_t i;
	const json_t *entry;
	json_array_foreach(pg, i, entry) {
		if (i >= 8)
			break;
		if (!json_is_object(entry))
			continue;
		check_delivery(entry);
		int parsed = -1;
		json_int_t id = 0;
		for (size_t k = 0; k < sizeof who / sizeof who[0]; k++) {
			char err[1024] = "";
			struct rt_binding *b =
				rt_binding_parse(changes, "realtime:room", entry, &who[k], err, sizeof err);
			if (!b) {
				CHECK(err[0]);
				continue;
			}
			if (parsed == 1)
				CHECK(rt_binding_id(b) == id);
			parsed = 1;
			id = rt_binding_id(b);
			CHECK(rt_binding_same_delivery(b, b));
			char *key = rt_changes_group_key(&b, 1);
			CHECK(key && !strncmp(key, "pgg:", 4));
			free(key);
			rt_binding_free(b);
		}
	}
}

static void check_live(const json_t *cfg, const json_t *queries)
{
	struct rt_live_opts o;
	char err[1024] = "";
	if (rt_live_opts_parse(json_is_object(cfg) ? cfg : NULL, &o, err, sizeof err))
		CHECK(err[0]);
	else
		CHECK(o.throttle_ms <= RT_LIVE_MAX_WINDOW_MS && o.debounce_ms <= RT_LIVE_MAX_WINDOW_MS);
	const struct rt_auth who = {.role = "authenticated", .claims = claims, .topic = NULL};
	size_t i;
	const json_t *entry;
	json_array_foreach(queries, i, entry) {
		if (i >= 4)
			break;
		err[0] = '\0';
		struct rt_live_def *d = rt_live_def_parse(store, entry, err, sizeof err);
		if (!d) {
			CHECK(err[0]);
			continue;
		}
		const char *id = rt_live_def_id(d);
		CHECK(id && *id && strlen(id) <= RT_LIVE_MAX_ID);
		err[0] = '\0';
		struct rt_live_query *q = rt_live_open(live, d, &who, err, sizeof err);
		if (!q) {
			CHECK(err[0]);
			continue;
		}
		json_t *res = rt_live_result(q);
		CHECK(res);
		const json_t *rows = json_object_get(res, "rows"), *keys = json_object_get(res, "keys");
		CHECK(json_is_array(rows) && json_is_array(keys));
		CHECK(json_array_size(rows) == json_array_size(keys));
		json_decref(res);
		rt_live_close(live, q);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!store)
		setup();
	json_t *payload = json_loadb((const char *)data, size, 0, NULL);
	if (!payload)
		return 0;
	const json_t *config = json_object_get(payload, "config");
	check_bindings(json_object_get(config, "postgres_changes"));
	const json_t *lcfg = json_object_get(json_object_get(config, "rtsync"), "live");
	if (lcfg)
		check_live(lcfg, json_object_get(lcfg, "queries"));
	/* the same object as a live_subscribe payload */
	check_live(payload, json_object_get(payload, "queries"));
	json_decref(payload);
	return 0;
}
