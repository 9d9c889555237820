#!/usr/bin/env bash
# The PostgreSQL store's suite: starts a private cluster (tests/postgres/
# cluster.sh), runs the store-independent interop tests against
# `rtsync serve --postgres` (a fresh database per server) and the
# PostgreSQL-specific tests in this folder, then stops and removes the
# cluster, also on failure or interruption.
#
#   tests/postgres/run.sh /abs/path/to/rtsync [test-file...]
#
# Prints "postgres: N passed, M failed". Installs nothing: `make deps` brings
# the postgresql and libpq-dev packages.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:?usage: $0 <rtsync-binary> [test-file...]}"
shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac

# shellcheck source=cluster.sh
source "$here/cluster.sh"
trap 'pg_cluster_stop' EXIT
trap 'exit 130' INT TERM
if ! pg_cluster_start; then
	echo "postgres: 0 passed, 1 failed (the test cluster did not start)"
	exit 1
fi
echo "postgres: cluster on 127.0.0.1:$PGPORT in $PGDIR"

if [ $# -gt 0 ]; then
	RTSYNC_SUITE=postgres "$root/tests/interop/run.sh" "$bin" "$@"
	exit
fi
status=0
RTSYNC_SUITE=postgres "$root/tests/interop/run.sh" "$bin" \
	"$root/tests/interop/postgres-changes.test.mjs" "$root/tests/interop/store-extra.test.mjs" \
	"$root/tests/interop/supabase-js.test.mjs" "$root/tests/interop/writes.test.mjs" \
	"$root/tests/interop/rls-rest.test.mjs" "$root/tests/interop/rls-changes.test.mjs" \
	"$root/tests/interop/rls-channels.test.mjs" "$root/tests/interop/aggregates.test.mjs" \
	"$root/tests/interop/live.test.mjs" "$root/tests/interop/notify.test.mjs" \
	"$root/tests/interop/collab.test.mjs" "$root/tests/interop/flags.test.mjs" \
	"$root/tests/interop/locks.test.mjs" "$root/tests/interop/activity.test.mjs" \
	"$here/pg.test.mjs" "$here/rls.test.mjs" "$here/rls-changes.test.mjs" || status=1
# unit binaries beside the server's (when built) against the cluster: the
# store's RLS calls, and live queries kept against the database's own reads
for name in store/test_pg_rls live/test_live; do
	unit="$(dirname "$bin")/tests/$name"
	[ -x "$unit" ] || continue
	out=$(CMOCKA_MESSAGE_OUTPUT=stdout "$unit" 2>&1)
	urc=$?
	grep -v 'NOTICE\| info ' <<<"$out"
	npass=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' <<<"$out")
	nfail=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' <<<"$out")
	if [ "$urc" -eq 0 ] && [ "${npass:-0}" -gt 0 ]; then
		echo "postgres-unit: $npass passed, 0 failed"
	else
		echo "postgres-unit: ${npass:-0} passed, ${nfail:-1} failed"
		status=1
	fi
done
# restarts the cluster: alone, after the rest
RTSYNC_SUITE=postgres-restart "$root/tests/interop/run.sh" "$bin" "$here/restart.test.mjs" || status=1

# A cluster without wal_level=logical: rtsync refuses to start and says why.
(
	set +e
	if ! pg_cluster_start replica >/dev/null; then
		echo "postgres-errors: 0 passed, 1 failed (the wal_level=replica cluster did not start)"
		exit 1
	fi
	out=$(timeout 20 "$bin" serve --listen 127.0.0.1:0 --data-dir "$PGDIR/rtsync" \
		--postgres "$RTSYNC_TEST_POSTGRES/postgres" 2>&1)
	rc=$?
	pg_cluster_stop
	if [ "$rc" -ne 0 ] && grep -q "wal_level=replica; rtsync .* needs wal_level=logical" <<<"$out"; then
		echo "ok - serve without wal_level=logical exits $rc: $out"
		echo "postgres-errors: 1 passed, 0 failed"
	else
		echo "not ok - serve without wal_level=logical (exit $rc): $out"
		echo "postgres-errors: 0 passed, 1 failed"
		exit 1
	fi
) || status=1

# A cluster without the API roles: a database without row-level security
# starts (REST as the connection role, with a warning); one with it refuses
# and names the SQL to run.
(
	set +e
	if ! RTSYNC_TEST_NO_ROLES=1 pg_cluster_start >/dev/null; then
		echo "postgres-roles: 0 passed, 1 failed (the cluster did not start)"
		exit 1
	fi
	psql -X -q -d "$RTSYNC_TEST_POSTGRES/postgres" -c 'CREATE DATABASE plain' -c 'CREATE DATABASE guarded' >/dev/null
	psql -X -q -d "$RTSYNC_TEST_POSTGRES/plain" -c 'CREATE TABLE t (id int PRIMARY KEY)' >/dev/null
	psql -X -q -d "$RTSYNC_TEST_POSTGRES/guarded" -c 'CREATE TABLE t (id int PRIMARY KEY)' \
		-c 'ALTER TABLE t ENABLE ROW LEVEL SECURITY' >/dev/null
	pass=0 fail=0
	out=$(timeout 10 "$bin" serve --listen 127.0.0.1:0 --data-dir "$PGDIR/rt-plain" \
		--postgres "$RTSYNC_TEST_POSTGRES/plain" 2>&1)
	if grep -q "roles anon, authenticated and service_role do not exist: REST runs as postgres" <<<"$out" &&
		grep -q "listening" <<<"$out"; then
		echo "ok - without the roles and RLS, serve starts and warns"; pass=$((pass + 1))
	else
		echo "not ok - without the roles and RLS: $out"; fail=$((fail + 1))
	fi
	out=$(timeout 20 "$bin" serve --listen 127.0.0.1:0 --data-dir "$PGDIR/rt-guarded" \
		--postgres "$RTSYNC_TEST_POSTGRES/guarded" --postgres-name guarded 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] && grep -q "row-level security enabled, but the role(s) anon, authenticated, service_role do not exist" <<<"$out" &&
		grep -q "CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS; GRANT anon, authenticated, service_role TO \"postgres\"" <<<"$out"; then
		echo "ok - with RLS and no roles, serve refuses (exit $rc) and names the SQL"; pass=$((pass + 1))
	else
		echo "not ok - with RLS and no roles (exit $rc): $out"; fail=$((fail + 1))
	fi
	pg_cluster_stop
	echo "postgres-roles: $pass passed, $fail failed"
	[ "$fail" -eq 0 ]
) || status=1
exit $status
