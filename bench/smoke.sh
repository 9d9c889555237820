#!/usr/bin/env bash
# A few seconds of every rtbench scenario (and of rtfloor) at small sizes, against the rtsync of
# BUILD_DIR (make test: the sanitizer build), asserting sane results: every
# socket joined, nothing lost, nothing duplicated, the slow consumers dropped
# without touching the others, every storm client resumed, every live query
# copy equal to a REST read, every quota refusing its flooder while the
# observers of bench/limits.mjs lose nothing.
#   bench/smoke.sh BUILD_DIR
# Prints "bench-smoke: N passed, M failed".
set -uo pipefail
build=${1:?usage: bench/smoke.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
rtsync=$build/rtsync
rtbench=$build/rtbench
[ -x "$rtbench" ] || rtbench=$root/build/rtbench
passed=0
failed=0
if [ ! -x "$rtsync" ] || [ ! -x "$rtbench" ]; then
	echo "bench-smoke: needs $rtsync and rtbench (make all bench)"
	echo "bench-smoke: 0 passed, 1 failed"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
secret=bench-smoke-secret-bench-smoke-secret
key=$("$rtsync" token --secret "$secret" --role service_role)
serve="$rtsync serve --listen 127.0.0.1:{port} --jwt-secret $secret --workers 1 --log-level error"

# check NAME EXPR ARGS...: runs rtbench ARGS, then asserts the JS expression
# EXPR over its JSON line (bound as r).
check() {
	local name=$1 expr=$2
	shift 2
	local out rc
	out=$(timeout 120 "${tool:-$rtbench}" "$@" 2>"$tmp/err")
	rc=$?
	if [ "$rc" -eq 0 ] && node -e '
		const r = JSON.parse(process.argv[1]);
		if (!(eval(process.argv[2]))) process.exit(1);' "$out" "$expr" 2>>"$tmp/err"; then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name (exit $rc): $expr"
		echo "     $out"
		sed 's/^/     /' "$tmp/err" | tail -5
		failed=$((failed + 1))
	fi
}

d=$tmp/fanout && mkdir -p "$d"
check "fanout vsn 2.0.0: 100 subscribers, 200 msg/s, nothing lost" \
	'r.server_exit === 0 && r.connected === 101 && r.sent > 0 && r.lost === 0 && r.delivered === r.expected && r.reordered === 0 && r.latency_us.p50 > 0 && r.generator_turn_us.max > 0 && r.server_runq_wait_ms_per_s >= 0 && r.client.runq_wait_ms_per_s >= 0' \
	fanout --url ws://127.0.0.1:0 --apikey "$key" --spawn "$serve --data-dir $d" \
	--subscribers 100 --rate 200 --duration 1
check "fanout without io_uring (one socket at a time): nothing lost" \
	'r.server_exit === 0 && r.connected === 101 && r.sent > 0 && r.lost === 0 && r.delivered === r.expected && r.reordered === 0' \
	fanout --url ws://127.0.0.1:0 --apikey "$key" --spawn "$serve --data-dir $d --io-uring off" \
	--subscribers 100 --rate 200 --duration 1
rtfloor=$build/rtfloor
[ -x "$rtfloor" ] || rtfloor=$root/build/rtfloor
for mode in write uring; do
	tool=$rtfloor check "rtfloor $mode: 50 sockets, every message read" \
		"r.mode === '$mode' && r.short_rounds === 0 && r.deliveries === 50 * 40 && r.latency_ms.p50 > 0" \
		--sockets 50 --rounds 40 --interval-ms 2 --mode $mode
	tool=$rtfloor check "rtfloor $mode --group 5: each round to 5 of 50 sockets in turn, every message read" \
		"r.mode === '$mode' && r.group === 5 && r.short_rounds === 0 && r.deliveries === 5 * 200" \
		--sockets 50 --group 5 --rounds 200 --interval-us 500 --mode $mode
done
check "fanout vsn 1.0.0: 50 subscribers, text frames, nothing lost" \
	'r.server_exit === 0 && r.vsn === "1.0.0" && r.connected === 51 && r.lost === 0 && r.delivered === r.expected && r.delivered > 0' \
	fanout --vsn 1.0.0 --url ws://127.0.0.1:0 --apikey "$key" --spawn "$serve --data-dir $d" \
	--subscribers 50 --rate 100 --duration 1
check "fanout with 2 slow consumers: the 40 others lose nothing" \
	'r.server_exit === 0 && r.slow === 2 && r.slow_stopped === 2 && r.server_slow_consumers === 2 && r.lost === 0 && r.delivered === r.expected && r.failed.closed === 0' \
	fanout --url ws://127.0.0.1:0 --apikey "$key" \
	--spawn "$serve --data-dir $d --max-queue-bytes 65536" \
	--subscribers 40 --slow 2 --rate 200 --payload 20000 --duration 1.5
check "idle: 300 sockets joined and held" \
	'r.server_exit === 0 && r.connected === 300 && Object.values(r.failed).every((v) => v === 0) && r.server.rss_bytes_per_conn > 0' \
	idle --url ws://127.0.0.1:0 --apikey "$key" --spawn "$serve --data-dir $d" \
	--connections 300 --duration 0.5 --heartbeat 1

d=$tmp/changes && mkdir -p "$d"
check "changes: 60 filtered subscribers over 6 topics, REST writes, nothing lost" \
	'r.server_exit === 0 && r.connected === 62 && r.writes_failed === 0 && r.writes_acked === r.sent && r.sent > 0 && r.lost === 0 && r.delivered === r.expected && r.duplicates === 0' \
	changes --url ws://127.0.0.1:0 --apikey "$key" \
	--spawn "$serve --data-dir $d --schema $root/bench/schema.sql" \
	--subscribers 60 --topics 6 --rate 60 --duration 1

d=$tmp/rls && mkdir -p "$d"
check "changes --rls: 100 users, each its own token, the policy picks each one's rows" \
	'r.server_exit === 0 && r.connected === 102 && r.writes_failed === 0 && r.sent > 0 && r.lost === 0 && r.delivered === r.expected && r.duplicates === 0' \
	changes --url ws://127.0.0.1:0 --apikey "$key" \
	--spawn "$serve --data-dir $d --schema $root/bench/schema-rls.sql" --jwt-secret "$secret" --rls \
	--subscribers 100 --topics 100 --rate 100 --duration 1

d=$tmp/rlsbatch && mkdir -p "$d"
check "changes --rls --write-rows 10: 100 users, rows inserted ten to a request" \
	'r.server_exit === 0 && r.connected === 102 && r.writes_failed === 0 && r.sent >= 100 && r.lost === 0 && r.delivered >= r.expected && r.expected >= r.sent - 10 * 2 * 8 && r.duplicates === 0' \
	changes --url ws://127.0.0.1:0 --apikey "$key" \
	--spawn "$serve --data-dir $d --schema $root/bench/schema-rls.sql" --jwt-secret "$secret" --rls \
	--subscribers 100 --topics 100 --rate 200 --write-rows 10 --duration 1

d=$tmp/live && mkdir -p "$d"
check "live: 10 queries, 50 subscribers, REST inserts, updates, deletes; every copy equals REST" \
	'r.server_exit === 0 && r.connected === 53 && r.writes_failed === 0 && r.changes >= 1000 && r.position_ok && r.duplicates === 0 && r.live_errors === 0 && r.diff_errors === 0 && r.latency_samples > 0 && r.server.live_queries === 10 && r.server.live_subscriptions === 100 && r.naive.gets > 0 && r.naive.failed === 0 && r.verified.subscribers === 50 && r.verified.results === 100 && r.verified.mismatches === 0' \
	live --url ws://127.0.0.1:0 --apikey "$key" \
	--spawn "$serve --data-dir $d --schema $root/bench/schema-live.sql" \
	--queries 10 --subscribers 50 --seed-rows 40 --rate 1000 --write-rows 20 --duration 1.5 \
	--naive 0.5 --naive-conns 2

d=$tmp/notify && mkdir -p "$d"
check "notify: 100 users on their own channels, one rule, REST writes, every notification once" \
	'r.server_exit === 0 && r.connected === 102 && r.writes_failed === 0 && r.writes_acked >= 200 && r.expected === r.writes_acked && r.delivered === r.expected && r.lost === 0 && r.duplicates === 0 && r.undecodable === 0 && r.latency_us.p99 > 0' \
	notify --url ws://127.0.0.1:0 --apikey "$key" --jwt-secret "$secret" \
	--spawn "$serve --data-dir $d --schema $root/bench/schema.sql --notify-rules $root/bench/notify-rules.json" \
	--subscribers 100 --rate 200 --write-rows 5 --duration 1.5

d=$tmp/storm && mkdir -p "$d"
check "storm: 100 clients, server killed, 30 rows written while down, all resumed" \
	'r.server_exit === 0 && r.connected === 100 && r.dropped === 100 && r.rejoined === 100 && r.resumed === 100 && r.expected === 30 * 100 / 5 && r.lost === 0 && r.duplicates === 0 && r.spawn_to_all_resumed_s > 0' \
	storm --url ws://127.0.0.1:0 --apikey "$key" \
	--spawn "$serve --data-dir $d --db $d/rt.db --schema $root/bench/schema.sql" --db "$d/rt.db" \
	--subscribers 100 --topics 5 --changes 30

# bench/limits.mjs: the npm ws client of tests/interop (installed as tests/interop/run.sh does)
if [ ! -f "$root/tests/interop/node_modules/ws/package.json" ]; then
	(cd "$root/tests/interop" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
tool=node check "limits: each quota trips with its error (and its metric) while 10 observers lose nothing" \
	'r.server_exit === 0 && r.phases.length === 8 && r.phases.every((p) => p.sent > 0 && p.lost === 0 && p.delivered === p.expected && p.observers_closed === 0 && (p.limit === null ? p.flooders === 0 : p.flood_refusals > 0 && p.metric_refusals[p.limit] >= p.flood_refusals))' \
	"$root/bench/limits.mjs" "$rtsync" --observers 10 --rate 50 --duration 0.5 --flooders 1 --json

echo "bench-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
