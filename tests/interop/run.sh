#!/usr/bin/env bash
# Interop tests: drive rtsync with the official JS clients
# (@supabase/realtime-js, @supabase/supabase-js, phoenix).
#
#   tests/interop/run.sh /abs/path/to/rtsync [test-file-or-name-pattern...]
#
# Installs the pinned npm dependencies into tests/interop/node_modules with
# `npm ci` when they are missing or stale, then runs every *.test.mjs with
# Node's built-in test runner. Extra arguments select test files (paths or
# substrings of file names). Env: RTSYNC_INTEROP_VERBOSE=1 echoes server logs,
# RTSYNC_LOG_LEVEL sets the server --log-level (default warn).
set -euo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 <rtsync-binary> [test-file...]" >&2
	exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$1"; shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
if [ ! -x "$bin" ]; then
	echo "interop: server binary '$bin' not found or not executable" >&2
	exit 2
fi

command -v node >/dev/null 2>&1 || { echo "interop: node is required" >&2; exit 2; }
command -v npm  >/dev/null 2>&1 || { echo "interop: npm is required" >&2; exit 2; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
	echo "interop: Node >= 18 required (found $(node --version))" >&2
	exit 2
fi

# --- dependencies -----------------------------------------------------------
stamp="$here/node_modules/.rtsync-interop-stamp"
want="$(cat "$here/package.json" "$here/package-lock.json" | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "interop: installing npm dependencies (npm ci)" >&2
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || {
		echo "interop: npm ci failed" >&2; exit 2; }
	printf '%s' "$want" > "$stamp"
fi

# --- test selection ---------------------------------------------------------
files=()
if [ $# -eq 0 ]; then
	for f in "$here"/*.test.mjs; do files+=("$f"); done
else
	for sel in "$@"; do
		if [ -f "$sel" ]; then files+=("$(cd "$(dirname "$sel")" && pwd)/$(basename "$sel")")
		else for f in "$here"/*"$sel"*.test.mjs; do [ -f "$f" ] && files+=("$f"); done
		fi
	done
fi
if [ ${#files[@]} -eq 0 ]; then
	echo "interop: no test files selected" >&2
	exit 2
fi

# --- run --------------------------------------------------------------------
piddir="$(mktemp -d "${TMPDIR:-/tmp}/rtsync-interop-pids.XXXXXX")"
reap() {
	# Kill servers the tests could not stop themselves (e.g. the test process
	# was killed). Only pids recorded by lib/server.mjs whose executable is
	# still the binary under test are touched.
	for p in "$piddir"/*; do
		[ -f "$p" ] || continue
		pid="$(basename "$p")"
		exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
		if [ -n "$exe" ] && [ "$exe" = "$(readlink -f "$bin")" ]; then
			echo "interop: killing leftover rtsync pid $pid" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$piddir"
}
trap reap EXIT

export RTSYNC_BIN="$bin"
export RTSYNC_INTEROP_PIDDIR="$piddir"
export NODE_PATH="$here/node_modules"
export NODE_NO_WARNINGS=1

cd "$here"
# Test files are independent (each starts its own server): run several at
# once when this Node supports choosing the concurrency (>= 20.10).
conc=()
if node --help 2>/dev/null | grep -q -- '--test-concurrency'; then
	conc=(--test-concurrency="${RTSYNC_INTEROP_CONCURRENCY:-4}")
fi
# Human-readable output on stdout, TAP into a file for the summary line that
# tests/run-all.sh adds up ("interop: N passed, M failed").
tap="$piddir/results.tap"
status=0
timeout --kill-after=10 900 node --test "${conc[@]}" \
	--test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=tap --test-reporter-destination="$tap" \
	"${files[@]}" || status=$?
count() { sed -n "s/^# $1 \([0-9]*\)\$/\1/p" "$tap" 2>/dev/null | tail -1; }
passed="$(count pass)"; failed="$(count fail)"; cancelled="$(count cancelled)"
passed=${passed:-0}; failed=$(( ${failed:-0} + ${cancelled:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${RTSYNC_SUITE:-interop}: $passed passed, $failed failed"
exit "$status"
