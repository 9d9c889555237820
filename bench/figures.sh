#!/usr/bin/env bash
# Takes the figures of bench/README.md: every scenario at full size, the
# server (one worker) pinned to CPU 0 and rtbench to CPU 1, one fresh server
# per run (started by rtbench --spawn). Prints one JSON line per run, prefixed
# with its name, and the commit and machine first.
#   bench/figures.sh [BUILD_DIR] [RUN...]      (BUILD_DIR: build; RUN: all)
# Runs: fanout200 fanout1000 fanout5000 slow1000 slowdrop slowdrop0 idle10k
#       idle19900 changes rls-filter rls-policy storm vsn1 fanout200-nouring
#       floor-write floor-uring
# and, not in the default list: topics500, topics500-busy, floor-topics500,
# floor-topics500-write (the many-topics shape: 5,000 subscribers over 500
# topics at 5,000 msg/s, and the kernel's floor in that shape), rls-filter-R, rls-policy-R (the row-level
# security runs at R rows/s, the server unpinned with its default workers and
# rtbench beside it), rls-filter-pg-R, rls-policy-pg-R (the same against a
# private PostgreSQL cluster, tests/postgres/cluster.sh), live-R (rtbench live:
# 100 live queries, 1,000 subscribers, R changes/s, then the naive way; the
# server unpinned with its default workers, rtbench beside it), limits, limits-nice
# (bench/limits.mjs: 100 observers while flooders trip each quota in turn; -nice:
# the flooder threads at nice 10).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
shift || true
runs=${*:-fanout200 fanout1000 fanout5000 slow1000 slowdrop slowdrop0 idle10k idle19900 changes rls-filter rls-policy storm vsn1 fanout200-nouring floor-write floor-uring}
tmp=$(mktemp -d)
trap 'declare -F pg_cluster_stop >/dev/null && pg_cluster_stop; rm -rf "$tmp"' EXIT
secret=bench-figures-secret-bench-figures-secret
key=$("$build/rtsync" token --secret "$secret" --role service_role)
serve="taskset -c 0 $build/rtsync serve --listen 127.0.0.1:{port} --jwt-secret $secret --workers 1 --log-level warn"
bench() { taskset -c 1 "$build/rtbench" "$@" --url ws://127.0.0.1:0 --apikey "$key"; }

echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo -dirty)"
echo "machine $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), Linux $(uname -r)"
for run in $runs; do
	d=$tmp/$run && mkdir -p "$d"
	echo -n "$run "
	case $run in
	fanout200 | fanout1000 | fanout5000)
		bench fanout --spawn "$serve --data-dir $d" --subscribers 1000 --rate "${run#fanout}" \
			--payload 100 --duration 10 ;;
	slow1000) # 10 more subscribers stop reading: compare with fanout200
		bench fanout --spawn "$serve --data-dir $d" --subscribers 1000 --slow 10 --rate 200 \
			--payload 100 --duration 10 ;;
	slowdrop | slowdrop0) # 8 KB payloads, a 1 MiB queue bound: the 5 slow ones are dropped
		# mid-run (slowdrop0: the same without them, for comparison)
		slow=5
		[ "$run" = slowdrop0 ] && slow=0
		bench fanout --spawn "$serve --data-dir $d --max-queue-bytes 1048576" --subscribers 100 \
			--slow $slow --rate 200 --payload 8000 --duration 10 ;;
	idle10k)
		bench idle --spawn "$serve --data-dir $d" --connections 10000 --duration 10 ;;
	idle19900)
		bench idle --spawn "$serve --data-dir $d" --connections 19900 --duration 10 ;;
	changes)
		bench changes --spawn "$serve --data-dir $d --schema $root/bench/schema.sql" \
			--subscribers 1000 --topics 100 --rate 200 --duration 10 ;;
	rls-filter | rls-policy) # 1,000 users, each its own token: eq filters against the policy
		schema=schema.sql rls=
		[ "$run" = rls-policy ] && schema=schema-rls.sql rls=--rls
		bench changes --spawn "$serve --data-dir $d --schema $root/bench/$schema" \
			--jwt-secret "$secret" $rls --subscribers 1000 --topics 1000 --rate 4000 \
			--write-rows 50 --duration 10 ;;
	rls-filter-* | rls-policy-*) # the same at a rate, both cores shared with rtbench
		rate=${run##*-} store=sqlite schema=schema rls= pg=
		case $run in *-pg-*) store=pg ;; esac
		case $run in rls-policy-*) schema=schema-rls rls=--rls ;; esac
		if [ $store = pg ]; then
			source "$root/tests/postgres/cluster.sh"
			pg_cluster_start >"$d/pg.log" 2>&1 &&
				psql -X -q -d "$RTSYNC_TEST_POSTGRES/postgres" -c 'CREATE DATABASE bench' ||
				{ echo '{"error":"postgres did not start"}'; continue; }
			pg="--postgres $RTSYNC_TEST_POSTGRES/bench" schema=$schema-pg
		fi
		taskset -c 0,1 "$build/rtbench" changes --url ws://127.0.0.1:0 --apikey "$key" \
			--spawn "$build/rtsync serve --listen 127.0.0.1:{port} --jwt-secret $secret --log-level warn --data-dir $d $pg --schema $root/bench/$schema.sql" \
			--jwt-secret "$secret" $rls --subscribers 1000 --topics 1000 --rate "$rate" \
			--write-rows 500 --duration 10
		[ $store = pg ] && pg_cluster_stop ;;
	live-* | live500-*) # live queries at R changes/s, 100 copies checked (each definition
		# twice); live500: 500 changes to a request instead of 100
		rows=100
		case $run in live500-*) rows=500 ;; esac
		taskset -c 0,1 "$build/rtbench" live --url ws://127.0.0.1:0 --apikey "$key" \
			--spawn "$build/rtsync serve --listen 127.0.0.1:{port} --jwt-secret $secret --log-level warn --data-dir $d --schema $root/bench/schema-live.sql" \
			--queries 100 --subscribers 1000 --rate "${run#live*-}" --write-rows $rows \
			--duration 10 --verify 100 --naive 3 ;;
	storm)
		bench storm --spawn "$serve --data-dir $d --db $d/rt.db --schema $root/bench/schema.sql" \
			--db "$d/rt.db" --subscribers 10000 --topics 100 --changes 1000 ;;
	vsn1)
		bench fanout --vsn 1.0.0 --spawn "$serve --data-dir $d" --subscribers 1000 --rate 200 \
			--payload 100 --duration 10 ;;
	fanout200-nouring) # the same as fanout200, one socket at a time (no io_uring)
		bench fanout --spawn "$serve --data-dir $d --io-uring off" --subscribers 1000 --rate 200 \
			--payload 100 --duration 10 ;;
	floor-write | floor-uring) # the kernel alone: 100 bytes to 1000 sockets, 200 times a second
		"$build/rtfloor" --sockets 1000 --rounds 2000 --interval-ms 5 --mode "${run#floor-}" ;;
	topics500 | topics500-busy) # 5,000 subscribers over 500 topics (10 each), 5,000 msg/s;
		# -busy: the generator polls without sleeping
		busy=
		[ "$run" = topics500-busy ] && busy="--busy-poll 1"
		bench fanout --spawn "$serve --data-dir $d" --subscribers 5000 --topics 500 --rate 5000 \
			--payload 100 --duration 10 $busy ;;
	floor-topics500 | floor-topics500-write) # the kernel alone in that shape: each message
		# to the next 10 of 5,000 sockets, 5,000 a second (io_uring; -write: write(2))
		mode=uring
		[ "$run" = floor-topics500-write ] && mode=write
		"$build/rtfloor" --sockets 5000 --group 10 --interval-us 200 --rounds 50000 --mode $mode ;;
	limits | limits-nice) # one JSON line; the table goes to stderr
		nice=0
		[ "$run" = limits-nice ] && nice=10
		node "$root/bench/limits.mjs" "$build/rtsync" --observers 100 --rate 100 --duration 5 \
			--flooders 4 --flood-nice $nice --json ;;
	*) echo "unknown run $run" >&2 ;;
	esac
done
