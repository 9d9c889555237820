#!/usr/bin/env bash
# Scale-out tests (docs/cluster.md): several rtsync nodes on one private
# redis-server each test starts (a free loopback port, its own directory, no
# persistence), driven with supabase-js from tests/interop's node_modules;
# postgres_changes across nodes on a private PostgreSQL cluster
# (tests/postgres/cluster.sh), stopped and removed at the end.
#
#   tests/cluster/run.sh /abs/path/to/rtsync [test-file...]
#
# Prints "cluster: N passed, M failed" for tests/run-all.sh. Every rtsync and
# redis-server a test started and could not stop is killed on exit.
set -euo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 <rtsync-binary> [test-file...]" >&2
	exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$1"; shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
[ -x "$bin" ] || { echo "cluster: server binary '$bin' not found" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "cluster: redis-server is required (make deps)" >&2; exit 2; }
command -v redis-cli >/dev/null || { echo "cluster: redis-cli is required (make deps)" >&2; exit 2; }

# the interop suite's pinned npm dependencies
interop="$root/tests/interop"
stamp="$interop/node_modules/.rtsync-interop-stamp"
want="$(cat "$interop/package.json" "$interop/package-lock.json" | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "cluster: installing npm dependencies (npm ci in tests/interop)" >&2
	(cd "$interop" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		{ echo "cluster: npm ci failed" >&2; exit 2; }
	printf '%s' "$want" >"$stamp"
fi

files=()
if [ $# -eq 0 ]; then
	for f in "$here"/*.test.mjs; do files+=("$f"); done
else
	for f in "$@"; do files+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); done
fi

# shellcheck source=../postgres/cluster.sh
source "$root/tests/postgres/cluster.sh"
piddir="$(mktemp -d "${TMPDIR:-/tmp}/rtsync-cluster-pids.XXXXXX")"
reap() {
	pg_cluster_stop
	for p in "$piddir"/*; do
		[ -f "$p" ] || continue
		name="$(basename "$p")"
		pid="${name#redis-}"
		exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
		case "$name" in
		redis-*) want_exe="$(readlink -f "$(command -v redis-server)")" ;;
		*) want_exe="$(readlink -f "$bin")" ;;
		esac
		if [ -n "$exe" ] && [ "$exe" = "$want_exe" ]; then
			echo "cluster: killing leftover pid $pid ($name)" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$piddir"
}
trap reap EXIT
trap 'exit 130' INT TERM
if ! pg_cluster_start; then
	echo "cluster: 0 passed, 1 failed (the PostgreSQL test cluster did not start)"
	exit 1
fi

export RTSYNC_BIN="$bin" RTSYNC_INTEROP_PIDDIR="$piddir" NODE_PATH="$interop/node_modules" NODE_NO_WARNINGS=1
cd "$here"
tap="$piddir/results.tap"
status=0
timeout --kill-after=10 600 node --test --test-concurrency=1 \
	--test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=tap --test-reporter-destination="$tap" \
	"${files[@]}" || status=$?
count() { sed -n "s/^# $1 \([0-9]*\)\$/\1/p" "$tap" 2>/dev/null | tail -1; }
passed="$(count pass)"; failed="$(count fail)"; cancelled="$(count cancelled)"
passed=${passed:-0}; failed=$(( ${failed:-0} + ${cancelled:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "cluster: $passed passed, $failed failed"
exit "$status"
