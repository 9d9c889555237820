#!/usr/bin/env bash
# Browser tests: the dashboard, the demo and rtsync.js in headless Chromium
# (Debian's chromium, driven by playwright-core from web/'s lock file).
#
#   tests/browser/run.sh /abs/path/to/rtsync [test-name-pattern]
#
# Screenshots of each state go to $RTSYNC_BROWSER_SHOTS when it is set (the
# directory is kept); otherwise to a temp dir removed at the end. Prints
# "browser: N passed, M failed".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:?usage: $0 <rtsync-binary> [pattern]}"; shift || true
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
[ -x "$bin" ] || { echo "browser: server binary '$bin' not found" >&2; echo "browser: 0 passed, 1 failed"; exit 2; }

chromium="${RTSYNC_CHROMIUM:-$(command -v chromium || true)}"
if [ -z "$chromium" ]; then
	echo "browser: chromium is not installed (make deps)" >&2
	echo "browser: 0 passed, 1 failed"
	exit 2
fi
if [ ! -d "$root/web/node_modules/playwright-core" ]; then
	(cd "$root/web" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null) || {
		echo "browser: npm ci in web/ failed" >&2; echo "browser: 0 passed, 1 failed"; exit 2; }
fi

own_shots=""
piddir="$(mktemp -d "${TMPDIR:-/tmp}/rtsync-browser-pids.XXXXXX")"
reap() {
	for p in "$piddir"/*; do
		[ -f "$p" ] || continue
		pid="$(basename "$p")"
		exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
		if [ -n "$exe" ] && [ "$exe" = "$(readlink -f "$bin")" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
	done
	rm -rf "$piddir"
	if [ -n "$own_shots" ]; then rm -rf "$own_shots"; fi
}
trap reap EXIT

export RTSYNC_BIN="$bin"
export RTSYNC_INTEROP_PIDDIR="$piddir"
export RTSYNC_CHROMIUM="$chromium"
own_shots=""
if [ -z "${RTSYNC_BROWSER_SHOTS:-}" ]; then
	own_shots="$(mktemp -d "${TMPDIR:-/tmp}/rtsync-browser-shots.XXXXXX")"
	export RTSYNC_BROWSER_SHOTS="$own_shots"
fi
mkdir -p "$RTSYNC_BROWSER_SHOTS"
export NODE_NO_WARNINGS=1
cd "$root"

pattern=()
[ $# -gt 0 ] && pattern=(--test-name-pattern="$1")
tap="$piddir/results.tap"
status=0
# --test-timeout: a hung test fails and its after hooks still close the browser
timeout --kill-after=10 300 node --test --test-timeout=90000 "${pattern[@]}" \
	--test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=tap --test-reporter-destination="$tap" \
	"$here/browser.test.mjs" || status=$?
count() { sed -n "s/^# $1 \([0-9]*\)\$/\1/p" "$tap" 2>/dev/null | tail -1; }
passed="$(count pass)"; failed="$(count fail)"; cancelled="$(count cancelled)"
passed=${passed:-0}; failed=$(( ${failed:-0} + ${cancelled:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ -z "$own_shots" ]; then echo "browser: screenshots in $RTSYNC_BROWSER_SHOTS"; fi
echo "browser: $passed passed, $failed failed"
exit "$status"
