#!/usr/bin/env bash
# librtsync and the client CLI against real servers:
#   tests/client/run.sh /abs/path/to/BUILD/rtsync
# Runs the C test programs in BUILD/client-tests/ (cmocka), the synced
# table's program once more against `rtsync serve --postgres` on a private
# cluster (tests/postgres/cluster.sh; a cluster that cannot start is a
# failure), and the CLI script tests/client/cli.sh, then prints
# "client: N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin=${1:?usage: tests/client/run.sh /path/to/rtsync}
build=$(cd "$(dirname "$bin")" && pwd)
export RTSYNC_BIN=$build/rtsync
export CMOCKA_MESSAGE_OUTPUT=stdout
export RTSYNC_CERTS_SH=$here/../tls/make-certs.sh # test_tls.c's certificates

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

# The synced table and row-level security against the PostgreSQL store
# (test_table.c picks the scenarios that involve the store when
# RTSYNC_TEST_POSTGRES is set).
table_bin="$build/client-tests/test_table $build/client-tests/test_rls"
out=$( (
	# shellcheck source=../postgres/cluster.sh
	source "$here/../postgres/cluster.sh"
	trap 'pg_cluster_stop' EXIT
	trap 'exit 130' INT TERM
	if ! pg_cluster_start; then
		echo "unit: 0 passed, 1 failed (the PostgreSQL cluster did not start)"
		exit 1
	fi
	# shellcheck disable=SC2086 # two paths
	"$here/../run-unit.sh" $table_bin
) 2>&1)
printf '%s\n' "$out" | sed 's/^unit: /  C tests, PostgreSQL store: /'
tally "$(grep '^unit: ' <<<"$out")"

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
