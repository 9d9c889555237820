#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests, in a temporary directory:
# wal_level=logical, loopback only, an ephemeral port, trust authentication,
# no fsync (it is thrown away).
#
#   source tests/postgres/cluster.sh
#   pg_cluster_start [WAL_LEVEL]  (default logical) sets PGDIR, PGPORT, PGHOST, PGUSER, RTSYNC_TEST_POSTGRES
#   pg_cluster_stop         stops it and removes the directory (idempotent)
#
# Needs the server binaries of Debian's postgresql package; as root the
# cluster runs as the postgres user (PostgreSQL refuses to run as root).

pg_bindir() {
	local d
	for d in "$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
	done
	return 1
}

pg_as() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

pg_cluster_start() {
	PGBIN=$(pg_bindir) || { echo "postgres: initdb not found (apt-get install postgresql)" >&2; return 1; }
	PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/rtsync-pg.XXXXXX")
	chmod 755 "$PGDIR"
	[ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
	pg_as "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
		>"$PGDIR/initdb.log" 2>&1 || { cat "$PGDIR/initdb.log" >&2; return 1; }
	PGPORT=$(pg_free_port)
	cat >>"$PGDIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDIR'
wal_level = ${1:-logical}
max_replication_slots = 64
max_wal_senders = 64
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
wal_sender_timeout = 60s
CONF
	pg_as "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 start >/dev/null ||
		{ tail -20 "$PGDIR/server.log" >&2; return 1; }
	export PGDIR PGPORT PGBIN PGHOST=127.0.0.1 PGUSER=postgres
	export RTSYNC_TEST_POSTGRES="postgres://postgres@127.0.0.1:$PGPORT"
	[ "${RTSYNC_TEST_NO_ROLES:-}" = 1 ] || pg_cluster_roles
}

# Supabase's API roles, granted to the test's connection role (the
# authenticator pattern, docs/security.md), and in template1 the grants a
# Supabase database has, so every database a test creates gets them.
pg_cluster_roles() {
	psql -X -q -v ON_ERROR_STOP=1 -d "$RTSYNC_TEST_POSTGRES/postgres" >/dev/null <<'SQL' || return 1
CREATE ROLE anon NOLOGIN;
CREATE ROLE authenticated NOLOGIN;
CREATE ROLE service_role NOLOGIN BYPASSRLS;
GRANT anon, authenticated, service_role TO postgres;
SQL
	psql -X -q -v ON_ERROR_STOP=1 -d "$RTSYNC_TEST_POSTGRES/template1" >/dev/null <<'SQL'
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
	GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
	GRANT USAGE, SELECT ON SEQUENCES TO anon, authenticated, service_role;
SQL
}

pg_cluster_stop() {
	[ -n "${PGDIR:-}" ] && [ -d "$PGDIR" ] || return 0
	pg_as "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1
	rm -rf "$PGDIR"
	PGDIR=
}
