#!/usr/bin/env bash
# Soak: one rtsync server under a steady postgres_changes load for N minutes, sampled every
# minute: server RSS, open descriptors (/proc/PID/fd), threads, and the minute's write-to-receive
# latency (p50/p99 from `rtbench changes`, which also counts lost and duplicated deliveries).
# Prints one row per minute, then a verdict: RSS, fds and p99 are flat when the mean of the last
# third of the minutes grew by at most TOLERANCE % over the mean of the first third (minute 1,
# the warm-up, excluded), and every minute was complete: every socket connected and none
# closed, no write failed, nothing lost or duplicated.
#
#   bench/soak.sh [--minutes N] [--rate R] [--subscribers S] [--topics T] [--tolerance PCT]
#                 [--build DIR] [--workers W] [--out FILE]
#
# --rate is writes/s; run it at half of the capacity measured with `rtbench changes`
# (bench/README.md, "Soak"). Exit status: 0 flat, 1 not flat or a minute failed, 2 usage.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=60 rate=100 subscribers=200 topics=20 tolerance=5 build=$root/build workers=1 out=
while [ $# -gt 0 ]; do
	case $1 in
	--minutes) minutes=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--subscribers) subscribers=$2; shift 2 ;;
	--topics) topics=$2; shift 2 ;;
	--tolerance) tolerance=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--workers) workers=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak: unknown option $1 (--help)" >&2; exit 2 ;;
	esac
done
build=$(cd "$build" && pwd) || exit 2
rtsync=$build/rtsync rtbench=$build/rtbench
[ -x "$rtsync" ] && [ -x "$rtbench" ] || { echo "soak: needs $rtsync and $rtbench (make all bench)" >&2; exit 2; }

tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
secret=soak-secret-soak-secret-soak-secret-0123
key=$("$rtsync" token --secret "$secret" --role service_role)
"$rtsync" serve --listen 127.0.0.1:0 --jwt-secret "$secret" --data-dir "$tmp/data" \
	--schema "$root/bench/schema.sql" --workers "$workers" --log-level warn \
	>"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
for _ in $(seq 100); do
	port=$(sed -n 's/^rtsync listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/stdout")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "${port:-}" ] || { echo "soak: the server did not start" >&2; cat "$tmp/stderr" >&2; exit 1; }

sample() { # RSS kB, fds, threads of the server now
	local rss thr fds
	rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
	thr=$(awk '/^Threads:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
	fds=$(ls /proc/"$pid"/fd 2>/dev/null | wc -l)
	echo "${rss:-0} $fds ${thr:-0}"
}

echo "soak: pid $pid port $port, $minutes min at $rate writes/s, $subscribers subscribers over $topics topics"
printf '%6s %10s %6s %7s %10s %10s %9s %8s %9s %6s %6s\n' minute rss_kB fds threads p50_ms p99_ms acked skipped delivered lost dups
rows=$tmp/rows
: >"$rows"
bad=0
skipped_total=0
for m in $(seq "$minutes"); do
	# The sample is taken in the middle of the minute, with every subscriber connected.
	(sleep 30; sample >"$tmp/sample") &
	sp=$!
	r=$(timeout 120 "$rtbench" changes --url "ws://127.0.0.1:$port" --apikey "$key" --server-pid "$pid" \
		--subscribers "$subscribers" --topics "$topics" --rate "$rate" --duration 58 --drain 2 2>>"$tmp/bench.err")
	wait "$sp"
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "soak: the server died in minute $m" >&2
		tail -20 "$tmp/stderr" >&2
		exit 1
	fi
	read -r rss fds thr <"$tmp/sample"
	line=$(node -e '
		const r = JSON.parse(process.argv[1]);
		const ok = r.connected === r.subscribers + r.writers && r.lost === 0 && r.duplicates === 0 &&
			r.failed.closed === 0 && r.writes_failed === 0;
		console.log([(r.latency_us.p50 / 1000).toFixed(2), (r.latency_us.p99 / 1000).toFixed(2), r.writes_acked,
			r.send_skipped, r.delivered, r.lost, r.duplicates, ok ? 1 : 0].join(" "));' "$r" 2>/dev/null) || line="0 0 0 0 0 -1 -1 0"
	read -r p50 p99 acked skipped delivered lost dups ok <<<"$line"
	[ "$ok" = 1 ] || { bad=$((bad + 1)); echo "soak: minute $m incomplete (a socket missing or closed, a write failed, a delivery lost or repeated): $r" >&2; }
	skipped_total=$((skipped_total + skipped))
	printf '%6s %10s %6s %7s %10s %10s %9s %8s %9s %6s %6s\n' "$m" "$rss" "$fds" "$thr" "$p50" "$p99" "$acked" "$skipped" "$delivered" "$lost" "$dups"
	echo "$m $rss $fds $p99" >>"$rows"
done

# Verdict: the first and last thirds of minutes 2..N.
verdict=$(awk -v tol="$tolerance" '
	$1 > 1 { n++; rss[n] = $2; fds[n] = $3; p99[n] = $4 }
	function drift(a,    i, k, f, l) {
		k = int(n / 3); if (k < 1) k = 1
		for (i = 1; i <= k; i++) { f += a[i]; l += a[n - k + i] }
		f /= k; l /= k
		return f > 0 ? (l - f) * 100 / f : 0
	}
	END {
		if (n < 2) { print "too-short"; exit }
		r = drift(rss); d = drift(fds); p = drift(p99)
		flat = (r <= tol && d <= tol && p <= tol)
		printf "%s rss %+.1f%% fds %+.1f%% p99 %+.1f%%\n", flat ? "flat" : "not-flat", r, d, p
	}' "$rows")
echo "soak: drift (last third against first third of minutes 2..$minutes, tolerance ${tolerance}%): ${verdict#* }"
[ -n "$out" ] && cp "$rows" "$out"
# Sends the writers could not make on time (the client or the machine fell behind the rate):
# reported, not a failure of the server; a large share means the rate is above capacity.
echo "soak: $skipped_total sends skipped in all (rtbench's send_skipped: the rate was not held for them)"
if [ "${verdict%% *}" = flat ] && [ "$bad" -eq 0 ]; then
	echo "soak: verdict FLAT ($minutes min, $rate writes/s, every minute complete)"
	exit 0
fi
echo "soak: verdict NOT FLAT (${verdict%% *}; $bad incomplete minutes)"
exit 1
