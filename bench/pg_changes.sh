#!/usr/bin/env bash
# Runs bench/pg_changes.mjs against a private PostgreSQL cluster
# (tests/postgres/cluster.sh), removed afterwards.
#   bench/pg_changes.sh [RTSYNC_BINARY] [ROWS] [TXN_ROWS] [SUBSCRIBERS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$root/build/rtsync}"
shift || true
source "$root/tests/postgres/cluster.sh"
trap pg_cluster_stop EXIT
pg_cluster_start
node "$root/bench/pg_changes.mjs" "$bin" "$@"
