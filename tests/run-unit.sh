#!/usr/bin/env bash
# Runs cmocka unit-test binaries (make unit passes them as arguments) and
# prints each one's output, then one summary line:
#   unit: N passed, M failed
# N and M count individual cmocka tests. A binary that exits non-zero without
# reporting a failed test (a crash, a sanitizer or leak report after the
# tests) counts as one more failure. Exits non-zero if anything failed.
set -euo pipefail

if [ "$#" -eq 0 ]; then
	echo "usage: $0 TEST_BINARY..." >&2
	echo "unit: 0 passed, 1 failed"
	exit 2
fi

# cmocka writes its report to stdout unless told otherwise.
export CMOCKA_MESSAGE_OUTPUT=stdout
unset CMOCKA_XML_FILE || true

timeout_cmd=()
if command -v timeout >/dev/null 2>&1; then
	timeout_cmd=(timeout --kill-after=10 "${UNIT_TIMEOUT:-300}")
fi

passed=0
failed=0
bad_bins=()
for bin in "$@"; do
	echo "== $bin"
	if [ ! -x "$bin" ]; then
		echo "missing or not executable: $bin"
		failed=$((failed + 1))
		bad_bins+=("$bin")
		continue
	fi
	rc=0
	out=$(${timeout_cmd[@]+"${timeout_cmd[@]}"} "$bin" 2>&1) || rc=$?
	printf '%s\n' "$out"

	# "[  PASSED  ] 12 test(s)." and "[  FAILED  ] 2 test(s), listed below:"
	p=0
	f=0
	summaries=0
	while IFS= read -r line; do
		if [[ $line =~ ^\[\ \ PASSED\ \ \]\ ([0-9]+)\ test ]]; then
			p=$((p + BASH_REMATCH[1]))
			summaries=$((summaries + 1))
		elif [[ $line =~ ^\[\ \ FAILED\ \ \]\ ([0-9]+)\ test ]]; then
			f=$((f + BASH_REMATCH[1]))
		fi
	done <<<"$out"

	if [ "$summaries" -eq 0 ]; then
		# No summary: the binary died mid-run. Count what finished.
		p=$(grep -c '^\[       OK \]' <<<"$out" || true)
		f=$((f + 1))
		echo "!! $bin: no cmocka summary (exit status $rc)"
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "!! $bin: tests passed but the binary exited with status $rc (sanitizer report?)"
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -ne 0 ]; then
		bad_bins+=("$bin")
	fi
done

if [ "${#bad_bins[@]}" -ne 0 ]; then
	echo "failing binaries: ${bad_bins[*]}"
fi
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
