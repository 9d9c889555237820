#!/usr/bin/env bash
# librtsync and the client CLI against real servers:
#   tests/client/run.sh /abs/path/to/BUILD/rtsync
# Runs the C test programs in BUILD/client-tests/ (cmocka) and the CLI script
# tests/client/cli.sh, then prints "client: N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin=${1:?usage: tests/client/run.sh /path/to/rtsync}
build=$(cd "$(dirname "$bin")" && pwd)
export RTSYNC_BIN=$build/rtsync
export CMOCKA_MESSAGE_OUTPUT=stdout

passed=0
failed=0
tally() { # reads "N passed, M failed" from the last line matching it
	local line
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' <<<"$1" | tail -1)
	local p f
	p=$(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
	f=$(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-1}))
}

bins=$(find "$build/client-tests" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort)
if [ -z "$bins" ]; then
	echo "no client test binaries in $build/client-tests (make client-bins)"
	failed=$((failed + 1))
else
	# run-unit.sh counts cmocka results and crashes; its summary is renamed so
	# run-all.sh counts only ours.
	out=$("$here/../run-unit.sh" $bins 2>&1)
	printf '%s\n' "$out" | sed 's/^unit: /  C tests: /'
	tally "$(grep '^unit: ' <<<"$out")"
fi

out=$(timeout --kill-after=10 300 "$here/cli.sh" "$RTSYNC_BIN" 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^cli: /  CLI tests: /'
if grep -q '^cli: ' <<<"$out"; then
	tally "$(grep '^cli: ' <<<"$out")"
	[ "$rc" -ne 0 ] && ! grep -qE '^cli: [0-9]+ passed, [1-9]' <<<"$out" && failed=$((failed + 1))
else
	echo "  CLI tests died (status $rc)"
	failed=$((failed + 1))
fi
echo "client: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
