#!/usr/bin/env bash
# Integration tests: real rtsync processes on loopback, driven from Node with
# the interop harness (tests/interop/lib) and its npm dependencies.
#   tests/integration/run.sh /abs/path/to/rtsync
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RTSYNC_SUITE=integration exec "$here/../interop/run.sh" "$1" "$here"/*.test.mjs
