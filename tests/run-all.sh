#!/usr/bin/env bash
# Runs every test suite against one build directory (make test uses the
# sanitizer build) and ends with the total: "N passed, M failed".
#   tests/run-all.sh BUILD_DIR
# Each suite prints a line "<suite>: N passed, M failed"; this adds them up.
set -uo pipefail
build=${1:?usage: tests/run-all.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=$(cd "$build" && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Sanitizers: fail loudly, report leaks, and keep reports readable.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
run() {
	local name=$1
	shift
	echo "=== $name"
	"$@" 2>&1 | tee -a "$log"
	local rc=${PIPESTATUS[0]}
	if [ "$rc" -ne 0 ]; then
		echo "=== $name: exit status $rc"
		status=1
		grep -q "^$name: [0-9]* passed, [0-9]* failed" "$log" ||
			echo "$name: 0 passed, 1 failed" >>"$log"
	fi
}

start=$(date +%s)
run unit tests/run-unit.sh $(find "$build/tests" -type f -name 'test_*' -perm -u+x | sort)
run fuzz-replay tests/run-fuzz-replay.sh $(find "$build/fuzz" -type f -name 'replay_*' -perm -u+x | sort)
run client tests/client/run.sh "$build/rtsync"
for suite in integration interop; do
	[ -x "tests/$suite/run.sh" ] && run "$suite" "tests/$suite/run.sh" "$build/rtsync"
done
[ -x tests/postgres/run.sh ] && run postgres tests/postgres/run.sh "$build/rtsync"
[ -x tests/chaos/run.sh ] && run chaos tests/chaos/run.sh "$build/rtsync"
[ -x tests/browser/run.sh ] && run browser tests/browser/run.sh "$build/rtsync"
[ -x tests/cluster/run.sh ] && run cluster tests/cluster/run.sh "$build/rtsync"
run bench-smoke bench/smoke.sh "$build"

passed=0
failed=0
while read -r p f; do
	passed=$((passed + p))
	failed=$((failed + f))
done < <(sed -n 's/^[a-z-]*: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$log")
[ "$failed" -gt 0 ] && status=1
echo
echo "all suites in $(($(date +%s) - start)) s"
echo "$passed passed, $failed failed"
exit $status
