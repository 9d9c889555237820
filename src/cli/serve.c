#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "auth/jwt.h"
#include "cluster/cluster.h"
#include "cluster/relay.h"
#include "collab/collab.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/rand.h"
#include "common/ratelimit.h"
#include "flags/flags.h"
#include "activity/activity.h"
#include "locks/service.h"
#include "net/server.h"
#include "notify/notify.h"
#include "net/tls.h"
#include "realtime/realtime.h"
#include "store/store.h"

#define KEY_LIFETIME_S (10LL * 365 * 24 * 3600)

/* The quotas of docs/limits.md: flag, variable, default, bounds (0: no limit). */
enum { L_CONNS, L_CONNS_USER, L_JOINS, L_EVENTS, L_CHAN_EVENTS, L_PRESENCE, L_REST, L__COUNT };
static const struct limit_opt {
	const char *flag, *env;
	long dflt;
} limit_opts[L__COUNT] = {
	[L_CONNS] = {"max-connections", "RTSYNC_MAX_CONNECTIONS", 100000},
	[L_CONNS_USER] = {"max-connections-per-user", "RTSYNC_MAX_CONNECTIONS_PER_USER", 0},
	[L_JOINS] = {"max-joins-per-second", "RTSYNC_MAX_JOINS_PER_SECOND", 100},
	[L_EVENTS] = {"max-events-per-second", "RTSYNC_MAX_EVENTS_PER_SECOND", 10000},
	[L_CHAN_EVENTS] = {"max-channel-events-per-second", "RTSYNC_MAX_CHANNEL_EVENTS_PER_SECOND",
			   10000},
	[L_PRESENCE] = {"max-presence-events-per-second", "RTSYNC_MAX_PRESENCE_EVENTS_PER_SECOND",
			1000},
	[L_REST] = {"rest-max-requests-per-second", "RTSYNC_REST_MAX_REQUESTS_PER_SECOND", 10000},
};

/* Locks and the activity feed (docs/locks.md, docs/activity.md): flag,
 * variable, default, bounds. */
enum { LA_LOCKS, LA_PER_CONN, LA_PER_USER, LA_WAITERS, LA_LEASE_MIN, LA_LEASE_MAX, LA_LEASE_DFLT, LA_WAIT_MAX,
       LA_ACT_COUNT, LA_ACT_MS, LA_ACT_MERGE, LA__COUNT };
static const struct lockact_opt {
	const char *flag, *env;
	long dflt, min, max;
} lockact_opts[LA__COUNT] = {
	[LA_LOCKS] = {"locks-max", "RTSYNC_LOCKS_MAX", 10000, 1, 10000000},
	[LA_PER_CONN] = {"locks-per-connection", "RTSYNC_LOCKS_PER_CONNECTION", 16, 1, 10000},
	[LA_PER_USER] = {"locks-per-user", "RTSYNC_LOCKS_PER_USER", 256, 0, 10000000},
	[LA_WAITERS] = {"lock-waiters-max", "RTSYNC_LOCK_WAITERS_MAX", 64, 0, 100000},
	[LA_LEASE_MIN] = {"lock-lease-min-ms", "RTSYNC_LOCK_LEASE_MIN_MS", 100, 10, 86400000},
	[LA_LEASE_MAX] = {"lock-lease-max-ms", "RTSYNC_LOCK_LEASE_MAX_MS", 600000, 10, 86400000},
	[LA_LEASE_DFLT] = {"lock-lease-ms", "RTSYNC_LOCK_LEASE_MS", 30000, 10, 86400000},
	[LA_WAIT_MAX] = {"lock-wait-max-ms", "RTSYNC_LOCK_WAIT_MAX_MS", 300000, 0, 86400000},
	[LA_ACT_COUNT] = {"activity-retain-count", "RTSYNC_ACTIVITY_RETAIN_COUNT", 10000, 1,
			  10000000},
	[LA_ACT_MS] = {"activity-retain-ms", "RTSYNC_ACTIVITY_RETAIN_MS", 604800000L, 0, 1L << 40},
	[LA_ACT_MERGE] = {"activity-merge-ms", "RTSYNC_ACTIVITY_MERGE_MS", 10000, 0, 3600000},
};

struct serve_opts {
	char *listen;
	char *jwt_secret;
	char *data_dir;
	char *log_level;
	char *log_format;
	char *private_roles;
	char *db;
	char *schema;
	char *postgres;
	char *pg_tables;
	char *pg_name;
	char *io_uring;
	char *jwks;
	char *jwt_aud;
	char *jwt_iss;
	char *tls_cert;
	char *tls_key;
	long jwks_refresh_s;
	char *notify;
	char *notify_rules;
	char *flags; /* feature flags file (docs/flags.md) */
	long notify_retain_ms;
	long notify_archive_ms;
	long pg_pool;
	bool is_pg_new_log;
	long retain_changes;
	long retain_ms;
	long idempotency_ms;
	long workers;
	long idle_timeout_ms;
	long max_payload_bytes;
	long max_channels;
	long max_queue_bytes;
	long presence_max_calls;
	long presence_window_ms;
	long limits[L__COUNT];
	long lockact[LA__COUNT];
	char *redis;         /* scale-out (docs/cluster.md) */
	char *cluster_node;
	char *cluster_prefix;
	long cluster_ttl_ms;
};

static const char serve_usage[] =
	"Usage: rtsync serve [options]\n"
	"\n"
	"Runs the rtsync server: Supabase Realtime-compatible WebSocket (Phoenix Channels,\n"
	"vsn 1.0.0 and 2.0.0) with broadcast and presence, the HTTP broadcast API, /healthz\n"
	"and /metrics. Every option can also be set through the environment variable shown.\n"
	"\n"
	"Options:\n"
	"  --listen HOST:PORT        address to listen on           RTSYNC_LISTEN (127.0.0.1:4000)\n"
	"  --jwt-secret SECRET       HS256 secret for tokens        RTSYNC_JWT_SECRET\n"
	"                            (default: generated on first start, kept in the data dir)\n"
	"  --jwks FILE|URL           also accept RS256/ES256 tokens signed with these keys\n"
	"                            (a JWKS: a file read again on SIGHUP, or an http(s)\n"
	"                            URL fetched again periodically and on an unknown kid)\n"
	"                                                           RTSYNC_JWKS\n"
	"  --jwks-refresh-s N        how often a JWKS URL is fetched\n"
	"                                                           RTSYNC_JWKS_REFRESH_S (600)\n"
	"  --jwt-aud AUD             tokens must carry this audience RTSYNC_JWT_AUD\n"
	"  --jwt-iss ISS             tokens must carry this issuer  RTSYNC_JWT_ISS\n"
	"  --data-dir DIR            where rtsync keeps its state   RTSYNC_DATA_DIR (.rtsync)\n"
	"  --db FILE                 the embedded SQLite database   RTSYNC_DB (DIR/rtsync.db)\n"
	"                            (with --postgres unused: the change log is DIR/pg-changes.db)\n"
	"  --schema FILE.sql         SQL applied at start (CREATE TABLE …; existing objects are\n"
	"                            kept)                          RTSYNC_SCHEMA\n"
	"  --postgres URL            serve a PostgreSQL database instead of SQLite:\n"
	"                            postgres://USER:PASS@HOST:PORT/DB or a libpq string;\n"
	"                            needs wal_level=logical and a role with REPLICATION\n"
	"                                                           RTSYNC_POSTGRES\n"
	"  --postgres-tables LIST    tables of schema public to serve and publish,\n"
	"                            comma-separated                RTSYNC_POSTGRES_TABLES (all)\n"
	"  --postgres-pool N         connections for REST reads and writes\n"
	"                                                           RTSYNC_POSTGRES_POOL (4)\n"
	"  --postgres-name NAME      publication and replication slot rtsync manages\n"
	"                                                           RTSYNC_POSTGRES_NAME (rtsync)\n"
	"  --postgres-new-log        start a new change log when the kept one belongs to\n"
	"                            another database or slot (resuming clients resync)\n"
	"                                                           RTSYNC_POSTGRES_NEW_LOG=1\n"
	"  --retain-changes N        changes kept for resuming      RTSYNC_RETAIN_CHANGES (100000)\n"
	"  --retain-ms N             and for at most this long      RTSYNC_RETAIN_MS (86400000)\n"
	"  --idempotency-window-ms N how long write idempotency keys are remembered\n"
	"                            (docs/writes.md)       RTSYNC_IDEMPOTENCY_WINDOW_MS (86400000)\n"
	"  --workers N               I/O worker threads             RTSYNC_WORKERS (one per core)\n"
	"  --log-level LEVEL         debug, info, warn, error       RTSYNC_LOG_LEVEL (info)\n"
	"  --log-format FORMAT       text or json                   RTSYNC_LOG_FORMAT (text)\n"
	"  --idle-timeout-ms N       close WebSockets silent this long\n"
	"                                                           RTSYNC_IDLE_TIMEOUT_MS (60000)\n"
	"  --max-payload-bytes N     largest broadcast/presence payload\n"
	"                                                           RTSYNC_MAX_PAYLOAD_BYTES (3000500)\n"
	"  --max-channels N          channels per connection        RTSYNC_MAX_CHANNELS (100)\n"
	"  --max-queue-bytes N       outbound queue per connection before it is dropped\n"
	"                            as a slow consumer             RTSYNC_MAX_QUEUE_BYTES (8388608)\n"
	"  --private-roles LIST      roles allowed on private channels, comma-separated\n"
	"                            RTSYNC_PRIVATE_ROLES (authenticated,service_role)\n"
	"  --presence-max-calls N    presence messages per channel per window\n"
	"                                                           RTSYNC_PRESENCE_MAX_CALLS (5)\n"
	"  --presence-window-ms N    that window                    RTSYNC_PRESENCE_WINDOW_MS (30000)\n"
	"  Quotas and rate limits (docs/limits.md; 0: no limit):\n"
	"  --max-connections N       WebSockets on the server       RTSYNC_MAX_CONNECTIONS (100000)\n"
	"  --max-connections-per-user N  per JWT sub, else per role and address\n"
	"                                                   RTSYNC_MAX_CONNECTIONS_PER_USER (0)\n"
	"  --max-joins-per-second N  channel joins per connection   RTSYNC_MAX_JOINS_PER_SECOND (100)\n"
	"  --max-events-per-second N channel events per connection\n"
	"                                                   RTSYNC_MAX_EVENTS_PER_SECOND (10000)\n"
	"  --max-channel-events-per-second N  per joined channel\n"
	"                                           RTSYNC_MAX_CHANNEL_EVENTS_PER_SECOND (10000)\n"
	"  --max-presence-events-per-second N  presence messages per connection\n"
	"                                           RTSYNC_MAX_PRESENCE_EVENTS_PER_SECOND (1000)\n"
	"  --rest-max-requests-per-second N  /rest/v1, /locks/v1, /activity/v1 requests per user\n"
	"                                           RTSYNC_REST_MAX_REQUESTS_PER_SECOND (10000)\n"
	"  --notify on|off           notifications (docs/notifications.md)   RTSYNC_NOTIFY (on)\n"
	"  --notify-rules FILE.json  notification rules, read again on SIGHUP\n"
	"                                                           RTSYNC_NOTIFY_RULES\n"
	"  --notify-retain-ms N      notifications are deleted after N ms (0: kept)\n"
	"                                            RTSYNC_NOTIFY_RETAIN_MS (7776000000, 90 days)\n"
	"  --notify-archive-ms N     read notifications are archived after N ms (0: never)\n"
	"                                                           RTSYNC_NOTIFY_ARCHIVE_MS (0)\n"
	"  --flags FILE.json         feature flags (docs/flags.md), read again on SIGHUP;\n"
	"                            edits through /flags/v1 are written to it\n"
	"                                            RTSYNC_FLAGS (DIR/flags.json)\n"
	"  Locks (docs/locks.md) and the activity feed (docs/activity.md):\n"
	"  --locks-max N             locks held or waited for       RTSYNC_LOCKS_MAX (10000)\n"
	"  --locks-per-connection N  locks one channel or REST lease holds or waits for\n"
	"                                                   RTSYNC_LOCKS_PER_CONNECTION (16)\n"
	"  --locks-per-user N        locks one JWT sub holds or waits for, all its channels and\n"
	"                            leases together (0: no bound)  RTSYNC_LOCKS_PER_USER (256)\n"
	"  --lock-waiters-max N      waiters queued per lock        RTSYNC_LOCK_WAITERS_MAX (64)\n"
	"  --lock-lease-min-ms N     shortest lease                 RTSYNC_LOCK_LEASE_MIN_MS (100)\n"
	"  --lock-lease-max-ms N     longest lease               RTSYNC_LOCK_LEASE_MAX_MS (600000)\n"
	"  --lock-lease-ms N         lease when none is asked for   RTSYNC_LOCK_LEASE_MS (30000)\n"
	"  --lock-wait-max-ms N      longest wait for a lock     RTSYNC_LOCK_WAIT_MAX_MS (300000)\n"
	"  --activity-retain-count N activity entries kept   RTSYNC_ACTIVITY_RETAIN_COUNT (10000)\n"
	"  --activity-retain-ms N    and for at most this long (0: no age limit)\n"
	"                                       RTSYNC_ACTIVITY_RETAIN_MS (604800000, 7 days)\n"
	"  --activity-merge-ms N     document edits of one user within N ms are one entry\n"
	"                            (0: one entry per edit)     RTSYNC_ACTIVITY_MERGE_MS (10000)\n"
	"  --io-uring on|off         send to many sockets with one system call (io_uring)\n"
	"                            when the kernel allows it      RTSYNC_IO_URING (on)\n"
	"  --tls-cert FILE           serve https:// and wss:// on --listen (TLS only) with this\n"
	"                            PEM certificate chain          RTSYNC_TLS_CERT\n"
	"  --tls-key FILE            and its PEM private key; both are read again on SIGHUP\n"
	"                                                           RTSYNC_TLS_KEY\n"
	"  Scale-out (docs/cluster.md):\n"
	"  --redis URL               share broadcast and presence with the other nodes through\n"
	"                            Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n"
	"                                                           RTSYNC_REDIS\n"
	"  --cluster-node ID         this node's id (A-Z a-z 0-9 _ -) RTSYNC_CLUSTER_NODE (random)\n"
	"  --cluster-prefix P        prefix of the Redis names      RTSYNC_CLUSTER_PREFIX (rtsync)\n"
	"  --cluster-ttl-ms N        a node not heard from this long has its presence removed\n"
	"                            (heartbeats every N/5 ms)      RTSYNC_CLUSTER_TTL_MS (5000)\n"
	"  -h, --help                show this help\n"
	"\n"
	"When the server accepts connections it prints 'rtsync listening on http://HOST:PORT'\n"
	"(https:// with TLS)\n"
	"on standard output. SIGINT or SIGTERM closes every WebSocket with code 1001 and exits 0.\n"
	"The dashboard is at / and the demo at /demo; with a generated secret the URLs are printed\n"
	"with a key in their fragment (docs/dashboard.md).\n";

static char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	return v && *v ? rt_xstrdup(v) : dflt ? rt_xstrdup(dflt) : NULL;
}

static int parse_long(const char *name, const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max) {
		fprintf(stderr, "rtsync serve: %s must be a whole number from %ld to %ld (got '%s')\n",
			name, min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int env_long(const char *env, const char *name, long dflt, long min, long max, long *out)
{
	const char *v = getenv(env);
	*out = dflt;
	return v && *v ? parse_long(name, v, min, max, out) : 0;
}

static void opts_free(struct serve_opts *o)
{
	free(o->listen);
	free(o->jwt_secret);
	free(o->data_dir);
	free(o->log_level);
	free(o->log_format);
	free(o->private_roles);
	free(o->db);
	free(o->schema);
	free(o->postgres);
	free(o->pg_tables);
	free(o->pg_name);
	free(o->io_uring);
	free(o->jwks);
	free(o->jwt_aud);
	free(o->jwt_iss);
	free(o->notify);
	free(o->notify_rules);
	free(o->flags);
	free(o->tls_cert);
	free(o->tls_key);
	free(o->redis);
	free(o->cluster_node);
	free(o->cluster_prefix);
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = rt_xstrdup(v);
}

/* Returns 0 to run, 1 after --help, -1 on a usage error. */
static int parse_opts(int argc, char **argv, struct serve_opts *o)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	o->listen = env_or("RTSYNC_LISTEN", "127.0.0.1:4000");
	o->jwt_secret = env_or("RTSYNC_JWT_SECRET", NULL);
	o->data_dir = env_or("RTSYNC_DATA_DIR", ".rtsync");
	o->log_level = env_or("RTSYNC_LOG_LEVEL", "info");
	o->log_format = env_or("RTSYNC_LOG_FORMAT", "text");
	o->private_roles = env_or("RTSYNC_PRIVATE_ROLES", "authenticated,service_role");
	o->db = env_or("RTSYNC_DB", NULL);
	o->schema = env_or("RTSYNC_SCHEMA", NULL);
	o->postgres = env_or("RTSYNC_POSTGRES", NULL);
	o->pg_tables = env_or("RTSYNC_POSTGRES_TABLES", NULL);
	o->pg_name = env_or("RTSYNC_POSTGRES_NAME", "rtsync");
	{
		const char *nl = getenv("RTSYNC_POSTGRES_NEW_LOG");
		o->is_pg_new_log = nl && !strcmp(nl, "1");
	}
	o->io_uring = env_or("RTSYNC_IO_URING", "on");
	o->jwks = env_or("RTSYNC_JWKS", NULL);
	o->jwt_aud = env_or("RTSYNC_JWT_AUD", NULL);
	o->jwt_iss = env_or("RTSYNC_JWT_ISS", NULL);
	o->notify = env_or("RTSYNC_NOTIFY", "on");
	o->notify_rules = env_or("RTSYNC_NOTIFY_RULES", NULL);
	o->flags = env_or("RTSYNC_FLAGS", NULL);
	o->tls_cert = env_or("RTSYNC_TLS_CERT", NULL);
	o->tls_key = env_or("RTSYNC_TLS_KEY", NULL);
	o->redis = env_or("RTSYNC_REDIS", NULL);
	o->cluster_node = env_or("RTSYNC_CLUSTER_NODE", NULL);
	o->cluster_prefix = env_or("RTSYNC_CLUSTER_PREFIX", NULL);
	if (env_long("RTSYNC_WORKERS", "--workers", ncpu > 0 ? ncpu : 1, 1, RT_SERVER_MAX_WORKERS,
		     &o->workers) ||
	    env_long("RTSYNC_IDLE_TIMEOUT_MS", "--idle-timeout-ms", 60000, 100, 86400000,
		     &o->idle_timeout_ms) ||
	    env_long("RTSYNC_MAX_PAYLOAD_BYTES", "--max-payload-bytes", 3000500, 1, 100000000,
		     &o->max_payload_bytes) ||
	    env_long("RTSYNC_MAX_CHANNELS", "--max-channels", 100, 1, 100000, &o->max_channels) ||
	    env_long("RTSYNC_MAX_QUEUE_BYTES", "--max-queue-bytes", 8 << 20, 4096, 1L << 32,
		     &o->max_queue_bytes) ||
	    env_long("RTSYNC_PRESENCE_MAX_CALLS", "--presence-max-calls", 5, 1, 1000000,
		     &o->presence_max_calls) ||
	    env_long("RTSYNC_PRESENCE_WINDOW_MS", "--presence-window-ms", 30000, 1, 86400000,
		     &o->presence_window_ms) ||
	    env_long("RTSYNC_RETAIN_CHANGES", "--retain-changes", 100000, 1, 1000000000,
		     &o->retain_changes) ||
	    env_long("RTSYNC_POSTGRES_POOL", "--postgres-pool", 4, 1, 256, &o->pg_pool) ||
	    env_long("RTSYNC_RETAIN_MS", "--retain-ms", 86400000, 1000, 1L << 40, &o->retain_ms) ||
	    env_long("RTSYNC_IDEMPOTENCY_WINDOW_MS", "--idempotency-window-ms", 86400000, 1000,
		     1L << 40, &o->idempotency_ms) ||
	    env_long("RTSYNC_JWKS_REFRESH_S", "--jwks-refresh-s", 600, 30, 86400,
		     &o->jwks_refresh_s) ||
	    env_long("RTSYNC_NOTIFY_RETAIN_MS", "--notify-retain-ms", 7776000000L, 0, 1L << 45,
		     &o->notify_retain_ms) ||
	    env_long("RTSYNC_NOTIFY_ARCHIVE_MS", "--notify-archive-ms", 0, 0, 1L << 45,
		     &o->notify_archive_ms) ||
	    env_long("RTSYNC_CLUSTER_TTL_MS", "--cluster-ttl-ms", 5000, 500, 3600000,
		     &o->cluster_ttl_ms))
		return -1;
	for (unsigned i = 0; i < L__COUNT; i++) {
		char flag[64];
		snprintf(flag, sizeof flag, "--%s", limit_opts[i].flag);
		if (env_long(limit_opts[i].env, flag, limit_opts[i].dflt, 0, UINT32_MAX,
			     &o->limits[i]))
			return -1;
	}
	for (unsigned i = 0; i < LA__COUNT; i++) {
		const struct lockact_opt *la = &lockact_opts[i];
		char flag[64];
		snprintf(flag, sizeof flag, "--%s", la->flag);
		if (env_long(la->env, flag, la->dflt, la->min, la->max, &o->lockact[i]))
			return -1;
	}

	enum { O_LISTEN = 256, O_SECRET, O_DATA, O_WORKERS, O_LEVEL, O_FORMAT, O_IDLE, O_PAYLOAD,
	       O_CHANNELS, O_QUEUE, O_ROLES, O_PCALLS, O_PWINDOW, O_DB, O_SCHEMA, O_RCOUNT,
	       O_RMS, O_PG, O_PG_TABLES, O_PG_POOL, O_PG_NAME, O_PG_NEW_LOG, O_IDEM, O_URING, O_JWKS,
	       O_JWKS_REFRESH, O_AUD, O_ISS, O_NOTIFY, O_NOTIFY_RULES, O_NOTIFY_RETAIN,
	       O_NOTIFY_ARCHIVE, O_TLS_CERT, O_TLS_KEY, O_FLAGS, O_REDIS, O_CNODE, O_CPREFIX, O_CTTL,
	       O_LIMIT, O_LOCKACT = O_LIMIT + 64 };
	const struct option longopts[] = {
		{"listen", required_argument, NULL, O_LISTEN},
		{"jwt-secret", required_argument, NULL, O_SECRET},
		{"data-dir", required_argument, NULL, O_DATA},
		{"workers", required_argument, NULL, O_WORKERS},
		{"log-level", required_argument, NULL, O_LEVEL},
		{"log-format", required_argument, NULL, O_FORMAT},
		{"idle-timeout-ms", required_argument, NULL, O_IDLE},
		{"max-payload-bytes", required_argument, NULL, O_PAYLOAD},
		{"max-channels", required_argument, NULL, O_CHANNELS},
		{"max-queue-bytes", required_argument, NULL, O_QUEUE},
		{"private-roles", required_argument, NULL, O_ROLES},
		{"presence-max-calls", required_argument, NULL, O_PCALLS},
		{"presence-window-ms", required_argument, NULL, O_PWINDOW},
		{"db", required_argument, NULL, O_DB},
		{"schema", required_argument, NULL, O_SCHEMA},
		{"retain-changes", required_argument, NULL, O_RCOUNT},
		{"retain-ms", required_argument, NULL, O_RMS},
		{"idempotency-window-ms", required_argument, NULL, O_IDEM},
		{"postgres", required_argument, NULL, O_PG},
		{"postgres-tables", required_argument, NULL, O_PG_TABLES},
		{"postgres-pool", required_argument, NULL, O_PG_POOL},
		{"postgres-name", required_argument, NULL, O_PG_NAME},
		{"postgres-new-log", no_argument, NULL, O_PG_NEW_LOG},
		{"io-uring", required_argument, NULL, O_URING},
		{"jwks", required_argument, NULL, O_JWKS},
		{"jwks-refresh-s", required_argument, NULL, O_JWKS_REFRESH},
		{"jwt-aud", required_argument, NULL, O_AUD},
		{"jwt-iss", required_argument, NULL, O_ISS},
		{"notify", required_argument, NULL, O_NOTIFY},
		{"notify-rules", required_argument, NULL, O_NOTIFY_RULES},
		{"flags", required_argument, NULL, O_FLAGS},
		{"notify-retain-ms", required_argument, NULL, O_NOTIFY_RETAIN},
		{"notify-archive-ms", required_argument, NULL, O_NOTIFY_ARCHIVE},
		{"tls-cert", required_argument, NULL, O_TLS_CERT},
		{"tls-key", required_argument, NULL, O_TLS_KEY},
		{"redis", required_argument, NULL, O_REDIS},
		{"cluster-node", required_argument, NULL, O_CNODE},
		{"cluster-prefix", required_argument, NULL, O_CPREFIX},
		{"cluster-ttl-ms", required_argument, NULL, O_CTTL},
#define LIMIT_OPT(i) {limit_opts[i].flag, required_argument, NULL, O_LIMIT + (i)}
		LIMIT_OPT(L_CONNS), LIMIT_OPT(L_CONNS_USER), LIMIT_OPT(L_JOINS), LIMIT_OPT(L_EVENTS),
		LIMIT_OPT(L_CHAN_EVENTS), LIMIT_OPT(L_PRESENCE), LIMIT_OPT(L_REST),
#undef LIMIT_OPT
#define LOCKACT_OPT(i) {lockact_opts[i].flag, required_argument, NULL, O_LOCKACT + (i)}
		LOCKACT_OPT(LA_LOCKS), LOCKACT_OPT(LA_PER_CONN), LOCKACT_OPT(LA_PER_USER),
		LOCKACT_OPT(LA_WAITERS),
		LOCKACT_OPT(LA_LEASE_MIN), LOCKACT_OPT(LA_LEASE_MAX), LOCKACT_OPT(LA_LEASE_DFLT),
		LOCKACT_OPT(LA_WAIT_MAX), LOCKACT_OPT(LA_ACT_COUNT), LOCKACT_OPT(LA_ACT_MS),
		LOCKACT_OPT(LA_ACT_MERGE),
#undef LOCKACT_OPT
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, rc = 0;
	optind = 1;
	while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN: set_str(&o->listen, optarg); break;
		case O_SECRET: set_str(&o->jwt_secret, optarg); break;
		case O_DATA: set_str(&o->data_dir, optarg); break;
		case O_LEVEL: set_str(&o->log_level, optarg); break;
		case O_FORMAT: set_str(&o->log_format, optarg); break;
		case O_ROLES: set_str(&o->private_roles, optarg); break;
		case O_DB: set_str(&o->db, optarg); break;
		case O_SCHEMA: set_str(&o->schema, optarg); break;
		case O_PG: set_str(&o->postgres, optarg); break;
		case O_PG_TABLES: set_str(&o->pg_tables, optarg); break;
		case O_PG_NAME: set_str(&o->pg_name, optarg); break;
		case O_PG_NEW_LOG: o->is_pg_new_log = true; break;
		case O_URING: set_str(&o->io_uring, optarg); break;
		case O_JWKS: set_str(&o->jwks, optarg); break;
		case O_AUD: set_str(&o->jwt_aud, optarg); break;
		case O_ISS: set_str(&o->jwt_iss, optarg); break;
		case O_TLS_CERT: set_str(&o->tls_cert, optarg); break;
		case O_TLS_KEY: set_str(&o->tls_key, optarg); break;
		case O_REDIS: set_str(&o->redis, optarg); break;
		case O_CNODE: set_str(&o->cluster_node, optarg); break;
		case O_CPREFIX: set_str(&o->cluster_prefix, optarg); break;
		case O_CTTL:
			rc = parse_long("--cluster-ttl-ms", optarg, 500, 3600000, &o->cluster_ttl_ms);
			break;
		case O_JWKS_REFRESH:
			rc = parse_long("--jwks-refresh-s", optarg, 30, 86400, &o->jwks_refresh_s);
			break;
		case O_NOTIFY: set_str(&o->notify, optarg); break;
		case O_NOTIFY_RULES: set_str(&o->notify_rules, optarg); break;
		case O_FLAGS: set_str(&o->flags, optarg); break;
		case O_NOTIFY_RETAIN:
			rc = parse_long("--notify-retain-ms", optarg, 0, 1L << 45, &o->notify_retain_ms);
			break;
		case O_NOTIFY_ARCHIVE:
			rc = parse_long("--notify-archive-ms", optarg, 0, 1L << 45,
					&o->notify_archive_ms);
			break;
		case O_PG_POOL:
			rc = parse_long("--postgres-pool", optarg, 1, 256, &o->pg_pool);
			break;
		case O_RCOUNT:
			rc = parse_long("--retain-changes", optarg, 1, 1000000000, &o->retain_changes);
			break;
		case O_IDEM:
			rc = parse_long("--idempotency-window-ms", optarg, 1000, 1L << 40,
					&o->idempotency_ms);
			break;
		case O_RMS:
			rc = parse_long("--retain-ms", optarg, 1000, 1L << 40, &o->retain_ms);
			break;
		case O_WORKERS:
			rc = parse_long("--workers", optarg, 1, RT_SERVER_MAX_WORKERS, &o->workers);
			break;
		case O_IDLE:
			rc = parse_long("--idle-timeout-ms", optarg, 100, 86400000, &o->idle_timeout_ms);
			break;
		case O_PAYLOAD:
			rc = parse_long("--max-payload-bytes", optarg, 1, 100000000,
					&o->max_payload_bytes);
			break;
		case O_CHANNELS:
			rc = parse_long("--max-channels", optarg, 1, 100000, &o->max_channels);
			break;
		case O_QUEUE:
			rc = parse_long("--max-queue-bytes", optarg, 4096, 1L << 32, &o->max_queue_bytes);
			break;
		case O_PCALLS:
			rc = parse_long("--presence-max-calls", optarg, 1, 1000000,
					&o->presence_max_calls);
			break;
		case O_PWINDOW:
			rc = parse_long("--presence-window-ms", optarg, 1, 86400000,
					&o->presence_window_ms);
			break;
		case O_LIMIT ... O_LIMIT + L__COUNT - 1: {
			char flag[64];
			snprintf(flag, sizeof flag, "--%s", limit_opts[c - O_LIMIT].flag);
			rc = parse_long(flag, optarg, 0, UINT32_MAX, &o->limits[c - O_LIMIT]);
			break;
		}
		case O_LOCKACT ... O_LOCKACT + LA__COUNT - 1: {
			const struct lockact_opt *la = &lockact_opts[c - O_LOCKACT];
			char flag[64];
			snprintf(flag, sizeof flag, "--%s", la->flag);
			rc = parse_long(flag, optarg, la->min, la->max, &o->lockact[c - O_LOCKACT]);
			break;
		}
		case 'h':
			fputs(serve_usage, stdout);
			return 1;
		default:
			fputs("Try 'rtsync serve --help'.\n", stderr);
			return -1;
		}
	}
	if (rc)
		return -1;
	if (strcmp(o->io_uring, "on") && strcmp(o->io_uring, "off")) {
		fprintf(stderr, "rtsync serve: --io-uring must be on or off (got '%s')\n",
			o->io_uring);
		return -1;
	}
	if (strcmp(o->notify, "on") && strcmp(o->notify, "off")) {
		fprintf(stderr, "rtsync serve: --notify must be on or off (got '%s')\n", o->notify);
		return -1;
	}
	if (o->lockact[LA_LEASE_MIN] > o->lockact[LA_LEASE_MAX] ||
	    o->lockact[LA_LEASE_DFLT] < o->lockact[LA_LEASE_MIN] ||
	    o->lockact[LA_LEASE_DFLT] > o->lockact[LA_LEASE_MAX]) {
		fputs("rtsync serve: --lock-lease-ms must lie between --lock-lease-min-ms and "
		      "--lock-lease-max-ms\n", stderr);
		return -1;
	}
	if (!o->tls_cert != !o->tls_key) {
		fputs("rtsync serve: --tls-cert and --tls-key go together\n", stderr);
		return -1;
	}
	if (optind < argc) {
		fprintf(stderr, "rtsync serve: unexpected argument '%s'\nTry 'rtsync serve --help'.\n",
			argv[optind]);
		return -1;
	}
	return 0;
}

/* Splits "HOST:PORT" or "[V6]:PORT"; host is written into host_out. */
static int split_listen(const char *s, char *host_out, size_t cap, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon)
		return -1;
	const char *h = s;
	size_t hlen = (size_t)(colon - s);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= cap)
		return -1;
	memcpy(host_out, h, hlen);
	host_out[hlen] = '\0';
	if (!strcmp(host_out, "localhost"))
		snprintf(host_out, cap, "127.0.0.1");
	long p;
	char *end;
	p = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || p < 0 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}

/* DIR/rtsync.running holds the pid of the server using the data dir; every orderly exit
 * (a stop, a refused start) removes it. Found at start, the previous server ended without
 * one (killed, crashed, power lost): logged, so a restart after a fault says so. Returns
 * whether the marker was written. */
static bool mark_running(const char *dir)
{
	char path[4096], prev[32] = "";
	snprintf(path, sizeof path, "%s/rtsync.running", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, prev, sizeof prev - 1);
		close(fd);
		prev[n > 0 ? n : 0] = 0;
		prev[strcspn(prev, "\n")] = 0;
		rt_warn("the previous server (pid %s) did not stop cleanly: the store keeps every "
			"committed write, subscribers resume from their positions, notifications "
			"and documents from what was stored", *prev ? prev : "?");
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return false;
	char pid[32];
	int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	bool ok = write(fd, pid, (size_t)len) == len;
	close(fd);
	return ok;
}

static void unmark_running(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/rtsync.running", dir);
	unlink(path);
}

/* Loads the secret from DIR/jwt_secret, creating both when missing.
 * Returns a malloc'ed secret or NULL (reported). */
static char *load_or_create_secret(const char *dir, bool *created)
{
	*created = false;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "rtsync serve: cannot create data dir %s: %s\n", dir, strerror(errno));
		return NULL;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/jwt_secret", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		char line[1024] = "";
		char *ok = fgets(line, sizeof line, f);
		fclose(f);
		line[strcspn(line, "\r\n")] = '\0';
		if (!ok || strlen(line) < 16) {
			fprintf(stderr, "rtsync serve: %s holds no usable secret (at least 16 characters)\n",
				path);
			return NULL;
		}
		return rt_xstrdup(line);
	}
	char secret[64];
	rt_rand_base64(secret, sizeof secret, 32);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "rtsync serve: cannot write %s: %s\n", path, strerror(errno));
		return NULL;
	}
	size_t len = strlen(secret);
	bool ok = write(fd, secret, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && !fsync(fd);
	close(fd);
	if (!ok) {
		fprintf(stderr, "rtsync serve: cannot write %s\n", path);
		unlink(path);
		return NULL;
	}
	*created = true;
	return rt_xstrdup(secret);
}

/* Reads a whole file into a NUL-terminated string, or NULL (reported). */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "rtsync serve: cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	struct rt_buf b;
	rt_buf_init(&b);
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		rt_buf_append(&b, chunk, n);
	bool failed = ferror(f);
	fclose(f);
	if (failed) {
		fprintf(stderr, "rtsync serve: cannot read %s\n", path);
		rt_buf_deinit(&b);
		return NULL;
	}
	if (!b.data)
		rt_buf_append(&b, "", 0);
	return rt_buf_detach(&b, NULL);
}

/* jansson allocates with the server's policy: out of memory aborts loudly,
 * so a NULL from jansson can only mean input it refused. */
static void *json_alloc(size_t n)
{
	return rt_xmalloc(n);
}

static struct rt_server *g_server;
static struct rt_keyring *g_keys;
static struct rt_tls *g_tls;
static uv_signal_t g_signals[3]; /* SIGINT, SIGTERM, SIGHUP */
static struct rt_notify *g_notify;
static struct rt_flags *g_flags;
static struct rt_cluster *g_cluster;
static struct rt_cluster_relay *g_relay; /* postgres_changes between nodes */

static void notify_apply(void *ctx, const struct rt_change *chs, size_t n, uint64_t after,
			 uint64_t last_pos)
{
	rt_notify_apply(ctx, chs, n, after, last_pos);
}

static void notify_tick(void *ctx, uint64_t last_pos)
{
	rt_notify_tick(ctx, last_pos);
}

static void on_signal(uv_signal_t *h, int signum)
{
	if (signum == SIGHUP) {
		rt_info("received SIGHUP, reading the signing keys, notification rules, feature flags and TLS certificate again");
		rt_keyring_reload(g_keys);
		char ferr[1024];
		if (g_flags && rt_flags_reload(g_flags, ferr, sizeof ferr))
			rt_error("feature flags not reloaded, the current ones stay: %s", ferr);
		else if (g_flags) /* the workers take them now, not at their next tick */
			for (unsigned i = 0; i < rt_server_n_workers(g_server); i++)
				rt_worker_wake(rt_server_worker(g_server, i));
		char err[1024];
		if (g_notify && rt_notify_reload(g_notify, err, sizeof err))
			rt_error("notification rules not reloaded: %s", err);
		char terr[600];
		if (g_tls && rt_tls_reload(g_tls, terr, sizeof terr))
			rt_warn("tls: the certificate stays as it was: %s", terr);
		else if (g_tls)
			rt_info("tls: certificate and key read again; new connections use them");
		return;
	}
	rt_info("received %s, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
	rt_server_stop(g_server);
	for (size_t i = 0; i < 3; i++)
		uv_close((uv_handle_t *)&g_signals[i], NULL);
}

int rt_cli_serve(int argc, char **argv)
{
	struct serve_opts o = {0};
	int prc = parse_opts(argc, argv, &o);
	if (prc) {
		opts_free(&o);
		return prc > 0 ? 0 : RT_CLI_EXIT_USAGE;
	}
	int rc = RT_CLI_EXIT_FAILURE;
	bool is_marked = false;
	struct rt_realtime *rt = NULL;
	struct rt_quota *quota = NULL;
	struct rt_store *store = NULL;
	char host[256];
	int port;
	int level = rt_log_level_parse(o.log_level);
	bool is_json = !strcmp(o.log_format, "json");
	if (level < 0 || (!is_json && strcmp(o.log_format, "text"))) {
		fprintf(stderr, "rtsync serve: bad --log-level '%s' or --log-format '%s'\n",
			o.log_level, o.log_format);
		rc = RT_CLI_EXIT_USAGE;
		goto out;
	}
	rt_log_setup(level, is_json);
	json_set_alloc_funcs(json_alloc, free);
	if (split_listen(o.listen, host, sizeof host, &port)) {
		fprintf(stderr, "rtsync serve: --listen wants HOST:PORT, got '%s'\n", o.listen);
		rc = RT_CLI_EXIT_USAGE;
		goto out;
	}
	bool created = false;
	bool is_generated = !o.jwt_secret;
	if (is_generated && !(o.jwt_secret = load_or_create_secret(o.data_dir, &created)))
		goto out;

	char kerr[600];
	struct rt_keyring_config kcfg = {.secret = o.jwt_secret,
					 .jwks = o.jwks,
					 .aud = o.jwt_aud,
					 .iss = o.jwt_iss,
					 .refresh_s = (unsigned)o.jwks_refresh_s};
	if (!(g_keys = rt_keyring_new(&kcfg, kerr, sizeof kerr))) {
		fprintf(stderr, "rtsync serve: --jwks: %s\n", kerr);
		goto out;
	}
	if (o.jwks)
		rt_info("auth: signing keys from %s", o.jwks);
	if (o.tls_cert && rt_tls_new(o.tls_cert, o.tls_key, &g_tls, kerr, sizeof kerr)) {
		fprintf(stderr, "rtsync serve: --tls-cert/--tls-key: %s\n", kerr);
		goto out;
	}

	/* A join burst as large as the channels a client may hold: realtime-js
	 * joins them all again at once when it reconnects. */
	uint32_t join_burst = (uint32_t)(o.limits[L_JOINS] > o.max_channels ? o.limits[L_JOINS]
									      : o.max_channels);
	struct rt_quota_config qcfg = {
		.max_connections = (uint32_t)o.limits[L_CONNS],
		.max_connections_per_user = (uint32_t)o.limits[L_CONNS_USER],
		.joins = {(uint32_t)o.limits[L_JOINS], join_burst},
		.events = {(uint32_t)o.limits[L_EVENTS], 0},
		.channel_events = {(uint32_t)o.limits[L_CHAN_EVENTS], 0},
		.presence = {(uint32_t)o.limits[L_PRESENCE], 0},
		.rest_per_s = (uint32_t)o.limits[L_REST],
	};
	quota = rt_quota_new(&qcfg);
	struct rt_realtime_config rcfg = {
		.quota = quota,
		.jwt_secret = o.jwt_secret,
		.keys = g_keys,
		.max_payload_bytes = (size_t)o.max_payload_bytes,
		.max_channels = (unsigned)o.max_channels,
		.presence_max_calls = (unsigned)o.presence_max_calls,
		.presence_window_ms = (unsigned)o.presence_window_ms,
	};
	unsigned n_roles = 0;
	for (char *save, *r = strtok_r(o.private_roles, ",", &save);
	     r && n_roles < RT_REALTIME_MAX_ROLES - 1; r = strtok_r(NULL, ",", &save))
		rcfg.private_roles[n_roles++] = r;
	rt = rt_realtime_new(&rcfg);

	/* The data dir exists by now when the secret lives there. */
	if ((!o.db || o.postgres) && mkdir(o.data_dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "rtsync serve: cannot create data dir %s: %s\n", o.data_dir,
			strerror(errno));
		goto out;
	}
	/* A read-only file system refuses every write: say so before the store fails on it. */
	if ((!o.db || o.postgres) && access(o.data_dir, W_OK)) {
		fprintf(stderr, "rtsync serve: the data dir %s is not writable (%s); rtsync keeps "
			"its database there\n", o.data_dir, strerror(errno));
		goto out;
	}
	is_marked = (!o.db || o.postgres) && mark_running(o.data_dir);
	if (!o.db || o.postgres) {
		/* SQLite: the database; PostgreSQL: the retained change log */
		size_t n = strlen(o.data_dir) + 24;
		free(o.db);
		o.db = rt_xmalloc(n);
		snprintf(o.db, n, "%s/%s", o.data_dir, o.postgres ? "pg-changes.db" : "rtsync.db");
	}
	char *schema_sql = o.schema ? read_file(o.schema) : NULL;
	if (o.schema && !schema_sql)
		goto out;
	char serr[1024];
	int src;
	struct rt_store_relay relay;
	if (o.postgres && o.redis) {
		if (rt_cluster_relay_new(o.redis, o.cluster_prefix ? o.cluster_prefix : "rtsync",
					 o.pg_name, (size_t)o.retain_changes, &g_relay, serr,
					 sizeof serr)) {
			fprintf(stderr, "rtsync serve: --redis: %s\n", serr);
			free(schema_sql);
			goto out;
		}
		rt_cluster_relay_bind(g_relay, &relay);
	}
	if (o.postgres) {
		struct rt_store_pg_config pcfg = {
			.relay = g_relay ? &relay : NULL,
			.conninfo = o.postgres,
			.schema_sql = schema_sql,
			.tables = o.pg_tables,
			.log_path = o.db,
			.name = o.pg_name,
			.is_new_log = o.is_pg_new_log,
			.pool_size = (unsigned)o.pg_pool,
			.retain_count = (uint64_t)o.retain_changes,
			.retain_ms = (uint64_t)o.retain_ms,
		};
		src = rt_store_open_postgres(&pcfg, &store, serr, sizeof serr);
	} else {
		src = rt_store_open_sqlite(o.db, schema_sql, (uint64_t)o.retain_changes,
					   (uint64_t)o.retain_ms, &store, serr, sizeof serr);
	}
	free(schema_sql);
	if (src) {
		fprintf(stderr, "rtsync serve: store %s: %s\n", o.postgres ? "postgres" : o.db, serr);
		goto out;
	}
	rt_store_set_key_window(store, (uint64_t)o.idempotency_ms);
	rt_realtime_set_store(rt, store);
	if (!strcmp(o.notify, "on")) {
		struct rt_notify_config ncfg = {
			.db_path = o.db,
			.rules_path = o.notify_rules,
			.retain_ms = (uint64_t)o.notify_retain_ms,
			.archive_after_ms = (uint64_t)o.notify_archive_ms,
		};
		if (rt_notify_new(&ncfg, store, rt->hub, &g_notify, serr, sizeof serr)) {
			fprintf(stderr, "rtsync serve: notifications: %s\n", serr);
			goto out;
		}
		rt->notify = g_notify;
		struct rt_change_consumer k = {notify_apply, notify_tick, g_notify};
		rt_changes_add_consumer(rt->changes, &k);
	}
	struct rt_collab_config ccfg;
	rt_collab_config_default(&ccfg);
	rt->collab = rt_collab_new(&ccfg, rt, store);
	{
		/* feature flags: the file given, else one in the data dir */
		size_t n = strlen(o.data_dir) + 16;
		char *fpath = o.flags ? rt_xstrdup(o.flags) : rt_xmalloc(n);
		if (!o.flags)
			snprintf(fpath, n, "%s/flags.json", o.data_dir);
		int frc = rt_flags_new(fpath, &g_flags, serr, sizeof serr);
		if (frc)
			fprintf(stderr, "rtsync serve: --flags: %s\n", serr);
		else
			rt_info("flags: %s", fpath);
		free(fpath);
		if (frc)
			goto out;
		rt->flags = g_flags;
	}
	/* Locks and the activity feed: fencing tokens and entry ids take the
	 * epoch of this start from the store (docs/locks.md). */
	uint64_t epoch;
	if (rt_store_counter_next(store, "rtsync.boot", &epoch) || epoch >= (1ULL << 21)) {
		fprintf(stderr, "rtsync serve: cannot take this start's epoch from the store\n");
		goto out;
	}
	struct rt_activity_config acfg;
	rt_activity_config_default(&acfg);
	acfg.max_entries = (uint64_t)o.lockact[LA_ACT_COUNT];
	acfg.max_age_ms = (uint64_t)o.lockact[LA_ACT_MS];
	acfg.merge_ms = (uint32_t)o.lockact[LA_ACT_MERGE];
	acfg.epoch = epoch;
	rt->activity = rt_activity_new(&acfg, rt->hub, rt, store);
	struct rt_locks_config lcfg;
	rt_locks_config_default(&lcfg);
	lcfg.max_locks = (unsigned)o.lockact[LA_LOCKS];
	lcfg.max_per_owner = (unsigned)o.lockact[LA_PER_CONN];
	lcfg.max_per_subject = (unsigned)o.lockact[LA_PER_USER];
	lcfg.max_waiters = (unsigned)o.lockact[LA_WAITERS];
	lcfg.min_lease_ms = (uint32_t)o.lockact[LA_LEASE_MIN];
	lcfg.max_lease_ms = (uint32_t)o.lockact[LA_LEASE_MAX];
	lcfg.default_lease_ms = (uint32_t)o.lockact[LA_LEASE_DFLT];
	lcfg.max_wait_ms = (uint32_t)o.lockact[LA_WAIT_MAX];
	lcfg.epoch = epoch;
	rt->locks = rt_lock_service_new(&lcfg, rt, rt->activity);
	rt_info("store %s (%s): %zu tables", rt_store_backend(store), o.db,
		rt_store_schema(store)->n_tables);
	if (o.redis) {
		struct rt_cluster_config clcfg = {
			.url = o.redis,
			.node_id = o.cluster_node,
			.prefix = o.cluster_prefix,
			.node_ttl_ms = (unsigned)o.cluster_ttl_ms,
			.heartbeat_ms = (unsigned)(o.cluster_ttl_ms / 5),
			.store = g_relay ? store : NULL,
		};
		if (rt_cluster_new(&clcfg, rt, &g_cluster, serr, sizeof serr)) {
			fprintf(stderr, "rtsync serve: --redis: %s\n", serr);
			goto out;
		}
		rt->cluster = g_cluster;
	}

	struct rt_server_config scfg = {
		.host = host,
		.port = port,
		.n_workers = (unsigned)o.workers,
		.max_out_bytes = (size_t)o.max_queue_bytes,
		/* A frame carries the payload plus its envelope. */
		.max_msg_bytes = (size_t)o.max_payload_bytes + 64 * 1024,
		.max_body_bytes = (size_t)o.max_payload_bytes + 64 * 1024,
		.request_timeout_ms = 10000,
		.idle_timeout_ms = (unsigned)o.idle_timeout_ms,
		.use_io_uring = !strcmp(o.io_uring, "on"),
		.tls = g_tls,
	};
	signal(SIGPIPE, SIG_IGN);
	int err = rt_server_new(&scfg, &rt_api_handler, rt, &g_server);
	if (err) {
		fprintf(stderr, "rtsync serve: cannot listen on %s: %s\n", o.listen, uv_strerror(err));
		goto out;
	}
	rt_api_mark_start();
	if ((err = rt_server_start(g_server)) || (err = rt_changes_start(rt->changes)) ||
	    (g_cluster && (err = rt_cluster_start(g_cluster)))) {
		fprintf(stderr, "rtsync serve: cannot start threads: %s\n", strerror(-err));
		rt_server_stop(g_server);
		rt_server_join(g_server);
		goto out_server;
	}

	uv_loop_t *loop = uv_default_loop();
	static const int signums[3] = {SIGINT, SIGTERM, SIGHUP};
	for (size_t i = 0; i < 3; i++) {
		uv_signal_init(loop, &g_signals[i]);
		uv_signal_start(&g_signals[i], on_signal, signums[i]);
	}

	bool is_v6 = strchr(host, ':') != NULL;
	char hostport[300];
	snprintf(hostport, sizeof hostport, "%s%s%s:%d", is_v6 ? "[" : "", host, is_v6 ? "]" : "",
		 rt_server_port(g_server));
	const char *s = g_tls ? "s" : "";
	printf("rtsync listening on http%s://%s\n", s, hostport);
	printf("  websocket   ws%s://%s/realtime/v1/websocket\n", s, hostport);
	printf("  broadcast   http%s://%s/realtime/v1/api/broadcast\n", s, hostport);
	printf("  health      http%s://%s/healthz\n", s, hostport);
	printf("  metrics     http%s://%s/metrics\n", s, hostport);
	printf("  rest        http%s://%s/rest/v1/<table>\n", s, hostport);
	if (g_notify)
		printf("  notify      http%s://%s/notify/v1/inbox\n", s, hostport);
	printf("  flags       http%s://%s/flags/v1\n", s, hostport);
	printf("  locks       http%s://%s/locks/v1/<name>\n", s, hostport);
	printf("  activity    http%s://%s/activity/v1/<channel>\n", s, hostport);
	if (g_cluster) /* the URL may hold a password: not printed */
		printf("  cluster     node %s over redis\n", rt_cluster_node(g_cluster));
	if (o.postgres) /* the URL may hold a password: not printed */
		printf("  database    postgres (slot %s), change log %s\n", o.pg_name, o.db);
	else
		printf("  database    %s\n", o.db);
	if (is_generated) {
		int64_t now = rt_wall_s();
		/* keys the configured aud and iss checks accept */
		const char *iss = o.jwt_iss ? o.jwt_iss : "rtsync";
		json_t *extra = o.jwt_aud ? json_pack("{s:s}", "aud", o.jwt_aud) : NULL;
		char *anon = rt_jwt_mint(o.jwt_secret, "anon", iss, now, now + KEY_LIFETIME_S, extra);
		char *svc = rt_jwt_mint(o.jwt_secret, "service_role", iss, now,
					now + KEY_LIFETIME_S, extra);
		json_decref(extra);
		printf("  jwt secret  %s/jwt_secret%s\n", o.data_dir, created ? " (new)" : "");
		printf("  anon key    %s\n", anon ? anon : "?");
		printf("  service key %s\n", svc ? svc : "?");
		free(anon);
		free(svc);
		/* the dashboard (src/web): an authenticated key for user "1" in the
		 * URL fragment, which browsers never send, so it stays out of logs */
		json_t *who = o.jwt_aud ? json_pack("{s:s,s:s}", "sub", "1", "aud", o.jwt_aud)
					: json_pack("{s:s}", "sub", "1");
		char *dash = rt_jwt_mint(o.jwt_secret, "authenticated", iss, now, now + KEY_LIFETIME_S,
					 who);
		json_decref(who);
		printf("  dashboard   http%s://%s/#key=%s\n", s, hostport, dash ? dash : "?");
		printf("  demo        http%s://%s/demo#key=%s\n", s, hostport, dash ? dash : "?");
		free(dash);
	}
	fflush(stdout);
	rt_info("rtsync listening on %s with %ld workers%s", hostport, o.workers,
		g_tls ? " (TLS)" : "");

	uv_run(loop, UV_RUN_DEFAULT);
	rt_server_join(g_server);
	rt_cluster_stop(g_cluster); /* after the workers: their presence leaves go out */
	rt_changes_stop(rt->changes);
	uv_loop_close(loop);
	rt_info("stopped");
	rc = 0;
out_server:
	rt_server_free(g_server);
	g_server = NULL;
out:
	rt_cluster_free(g_cluster); /* before the hub and registry it is attached to */
	g_cluster = NULL;
	if (rt) {
		rt_collab_free(rt->collab);
		rt_lock_service_free(rt->locks); /* its events write activity entries */
		rt_activity_free(rt->activity);
	}
	rt_realtime_free(rt); /* stops the change thread, which feeds notifications */
	rt_quota_free(quota);
	rt_notify_free(g_notify);
	g_notify = NULL;
	rt_flags_free(g_flags);
	g_flags = NULL;
	rt_store_close(store);
	rt_cluster_relay_free(g_relay); /* after the store's replication thread */
	g_relay = NULL;
	rt_keyring_free(g_keys);
	g_keys = NULL;
	rt_tls_free(g_tls);
	g_tls = NULL;
	if (is_marked)
		unmark_running(o.data_dir);
	opts_free(&o);
	return rc;
}
