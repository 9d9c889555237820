#!/usr/bin/env bash
# Replays each fuzz target's seed corpus (make fuzz-replay passes the replay
# binaries, .../replay_<name>; each runs over fuzz/corpus/<name>/), printing
# each one's output, then one summary line:
#   fuzz-replay: N passed, M failed
# counting targets. Exits non-zero if any target failed, including a missing
# or empty corpus.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ "$#" -eq 0 ]; then
	echo "usage: $0 REPLAY_BINARY..." >&2
	echo "fuzz-replay: 0 passed, 1 failed"
	exit 2
fi

timeout_cmd=()
if command -v timeout >/dev/null 2>&1; then
	timeout_cmd=(timeout --kill-after=10 "${FUZZ_REPLAY_TIMEOUT:-300}")
fi

passed=0
failed=0
bad=()
for bin in "$@"; do
	base=$(basename "$bin")
	name=${base#replay_}
	corpus="$root/fuzz/corpus/$name"
	echo "== $name ($bin on fuzz/corpus/$name)"
	rc=0
	if [ ! -x "$bin" ]; then
		echo "missing or not executable: $bin"
		rc=1
	elif [ ! -d "$corpus" ]; then
		echo "missing corpus: fuzz/corpus/$name"
		rc=1
	else
		${timeout_cmd[@]+"${timeout_cmd[@]}"} "$bin" "$corpus" 2>&1 || rc=$?
	fi
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
	else
		echo "!! $name failed (exit status $rc)"
		failed=$((failed + 1))
		bad+=("$name")
	fi
done

if [ "${#bad[@]}" -ne 0 ]; then
	echo "failing targets: ${bad[*]}"
fi
echo "fuzz-replay: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
