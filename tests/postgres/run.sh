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
	"$here/pg.test.mjs" || status=1
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
exit $status
