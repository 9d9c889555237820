#!/usr/bin/env bash
# Fan-out across a cluster against one node (bench/README.md, "Scale-out"):
# one redis-server, then for each rate R: one node alone (no --redis), one
# node with --redis (the bus's own cost), and three nodes with the
# subscribers spread over them (rtbench --sub-ports) and the publisher on
# the first. Each node runs one worker; every process is stopped at the end.
# Prints one JSON line of rtbench per run, prefixed with its name, and the
# CPU seconds each node and Redis used during it.
#   bench/cluster.sh [BUILD_DIR] [RATE...]        (BUILD_DIR: build; RATE: 200 1000 5000)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
shift || true
rates=${*:-200 1000 5000}
subs=${RTBENCH_SUBSCRIBERS:-1000}
duration=${RTBENCH_DURATION:-10}
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
secret=bench-cluster-secret-bench-cluster-secret
key=$("$build/rtsync" token --secret "$secret" --role service_role)
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'; }
cpu_s() { # utime+stime of a pid, in seconds
	awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
	--protected-mode no >"$tmp/redis.log" 2>&1 &
rpid=$!
pids+=("$rpid")
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

# node NAME [ARGS...]: starts a node; sets node_pid and node_port
node_start() {
	local name=$1
	shift
	mkdir -p "$tmp/$name"
	"$build/rtsync" serve --listen 127.0.0.1:0 --jwt-secret "$secret" --workers 1 \
		--log-level warn --data-dir "$tmp/$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	node_pid=$!
	pids+=("$node_pid")
	for _ in $(seq 100); do
		node_port=$(sed -n 's|^rtsync listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$tmp/$name.out" 2>/dev/null)
		[ -n "$node_port" ] && return 0
		sleep 0.1
	done
	echo "bench/cluster.sh: node $name did not start" >&2
	cat "$tmp/$name.err" >&2
	return 1
}

echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo -dirty)"
echo "machine $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), Linux $(uname -r)"
run=0
for rate in $rates; do
	for mode in single single-redis three; do
		run=$((run + 1))
		node_pids=()
		ports=()
		case $mode in
		single) node_start "n$run-1" || exit 1; node_pids+=("$node_pid"); ports+=("$node_port") ;;
		single-redis)
			node_start "n$run-1" --redis "redis://127.0.0.1:$rport" --cluster-prefix "b$run" || exit 1
			node_pids+=("$node_pid"); ports+=("$node_port") ;;
		three)
			for i in 1 2 3; do
				node_start "n$run-$i" --redis "redis://127.0.0.1:$rport" --cluster-prefix "b$run" \
					--cluster-node "n$i" || exit 1
				node_pids+=("$node_pid"); ports+=("$node_port")
			done
			sleep 1.5 ;; # the nodes hear each other
		esac
		extra=()
		[ "${#ports[@]}" -gt 1 ] && extra=(--sub-ports "$(IFS=,; echo "${ports[*]:1}")")
		before=()
		for p in "${node_pids[@]}" "$rpid"; do before+=("$(cpu_s "$p")"); done
		echo -n "fanout$rate-$mode "
		"$build/rtbench" fanout --url "ws://127.0.0.1:${ports[0]}" --apikey "$key" \
			--subscribers "$subs" --rate "$rate" --payload 100 --duration "$duration" \
			--server-pid "${node_pids[0]}" "${extra[@]}"
		cpus=""
		i=0
		for p in "${node_pids[@]}" "$rpid"; do
			cpus="$cpus $(awk -v a="${before[$i]}" -v b="$(cpu_s "$p")" 'BEGIN{printf "%.2f", b - a}')"
			i=$((i + 1))
		done
		echo "  cpu_s nodes+redis:$cpus"
		for p in "${node_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null; done
	done
done
