#!/usr/bin/env bash
# The chaos harness (docs/chaos.md): rtsync under a steady load of writes, subscribers,
# notifications, a shared document and broadcasts, through SIGKILLs of the server, of
# PostgreSQL, of Redis and of a cluster node, a full disk, a read-only data dir and a
# connection cut, with exact accounting
# after each fault.
#
#   tests/chaos/run.sh /abs/path/to/rtsync [--long] [--phases sqlite-kill,postgres-kill,...]
#
# The short form (make test) takes about a minute; --long runs more load and every fault three
# times. The run happens in private mount and network namespaces (unshare -m -n) when this
# machine allows them, so the small file systems and the cut loopback exist for it alone and
# vanish with it even if it dies; phases whose capability is missing are skipped, and say so.
# Prints "chaos: N passed, M failed, K skipped" (phases).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ "${1:-}" = --inner ]; then
	shift
	bin=$1
	shift
	# Inside the namespaces: loopback up, then the private PostgreSQL cluster.
	if [ "${CHAOS_CAN_CUT:-}" = 1 ]; then
		ip link set lo up || { echo "chaos: cannot bring up loopback in the namespace" >&2; exit 1; }
	fi
	# shellcheck source=../postgres/cluster.sh
	source "$root/tests/postgres/cluster.sh"
	trap 'pg_cluster_stop >/dev/null 2>&1' EXIT
	trap 'exit 130' INT TERM
	if pg_bindir >/dev/null && command -v psql >/dev/null; then
		if pg_cluster_start >/dev/null; then
			# The test cluster acknowledges commits before their WAL is written
			# (synchronous_commit=off), which a SIGKILL of PostgreSQL loses by design:
			# acknowledged must mean durable here.
			psql -X -q -d "$RTSYNC_TEST_POSTGRES/postgres" -c "ALTER SYSTEM SET synchronous_commit = on" \
				-c "SELECT pg_reload_conf()" >/dev/null
		else
			echo "# the PostgreSQL cluster did not start: the postgres phase is skipped"
			unset RTSYNC_TEST_POSTGRES
		fi
	else
		echo "# no PostgreSQL server binaries (apt-get install postgresql): the postgres phase is skipped"
	fi
	timeout --kill-after=10 "${CHAOS_TIMEOUT:-1500}" node "$here/chaos.mjs" --bin "$bin" "$@"
	exit
fi

bin="${1:?usage: $0 <rtsync-binary> [--long] [--phases LIST]}"
shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
[ -x "$bin" ] || { echo "chaos: $bin is not executable"; echo "chaos: 0 passed, 1 failed"; exit 1; }
[ -d "$root/tests/interop/node_modules/yjs" ] || (cd "$root/tests/interop" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
	{ echo "chaos: npm dependencies missing (tests/interop: npm ci)"; echo "chaos: 0 passed, 1 failed"; exit 1; }
export NODE_NO_WARNINGS=1

# Which faults this machine can make: a mount namespace (tmpfs data dirs, remount read-only)
# and a network namespace (loopback cut) need root or the matching capabilities.
ns=()
if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
	ns+=(-m --propagation private)
	export CHAOS_CAN_MOUNT=1
else
	echo "# no private mount namespace here (not root, or unshare -m refused): disk-full and read-only are skipped"
fi
if unshare -n true 2>/dev/null && command -v ip >/dev/null; then
	ns+=(-n)
	export CHAOS_CAN_CUT=1
else
	echo "# no private network namespace here (unshare -n refused or no ip): connection-cut is skipped"
fi
if [ ${#ns[@]} -gt 0 ]; then
	exec unshare "${ns[@]}" -- "$0" --inner "$bin" "$@"
fi
exec "$0" --inner "$bin" "$@"
