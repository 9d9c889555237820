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

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
	files=("$root/tests/interop/postgres-changes.test.mjs" "$root/tests/interop/store-extra.test.mjs"
		"$root/tests/interop/supabase-js.test.mjs" "$root/tests/interop/writes.test.mjs")
	for f in "$here"/*.test.mjs; do files+=("$f"); done
fi
RTSYNC_SUITE=postgres "$root/tests/interop/run.sh" "$bin" "${files[@]}"
