#!/usr/bin/env bash
# Runs the fuzzing campaign of docs/fuzzing.md: each target named (all by
# default) one after another, niced, for 10,000,000 executions or SECONDS
# seconds, whichever comes first, then merges what it found into
# fuzz/corpus/<target>/ (-set_cover_merge: a small set of the new inputs that
# adds their coverage is kept).
#
#   fuzz/campaign.sh [-t SECONDS] [-o WORKDIR] [target...]
#
# Needs `make fuzz` first (build-fuzz/fuzz_<target>). New inputs collect in
# WORKDIR/c_<target> (default /tmp/rtsync-fuzz), logs in
# WORKDIR/run_<target>.log, crashes as WORKDIR/art_<target>-*; the last
# lines of each log give the figures docs/fuzzing.md records.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=3600
work=/tmp/rtsync-fuzz
while getopts "t:o:" opt; do
	case $opt in
	t) secs=$OPTARG ;;
	o) work=$OPTARG ;;
	*) echo "usage: $0 [-t SECONDS] [-o WORKDIR] [target...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in "$root"/fuzz/*.c; do
		n=$(basename "$f" .c)
		[ "$n" = replay ] || targets+=("$n")
	done
fi
mkdir -p "$work"
for t in "${targets[@]}"; do
	bin=$root/build-fuzz/fuzz_$t
	[ -x "$bin" ] || { echo "campaign: $bin missing (make fuzz)" >&2; exit 1; }
	dict=()
	[ -f "$root/fuzz/$t.dict" ] && dict=(-dict="$root/fuzz/$t.dict")
	mkdir -p "$work/c_$t"
	echo "== $t"
	rc=0
	nice -n 19 "$bin" -runs=10000000 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$work/art_$t-" ${dict[@]+"${dict[@]}"} \
		"$work/c_$t" "$root/fuzz/corpus/$t" > "$work/run_$t.log" 2>&1 || rc=$?
	grep -a -E '^#[0-9]+' "$work/run_$t.log" | tail -n 1 || true
	grep -a 'stat::number_of_executed_units' "$work/run_$t.log" || true
	if [ "$rc" -ne 0 ]; then
		echo "campaign: $t failed (exit $rc): see $work/run_$t.log and $work/art_$t-*" >&2
		continue
	fi
	nice -n 19 "$bin" -set_cover_merge=1 "$root/fuzz/corpus/$t" "$work/c_$t" > "$work/merge_$t.log" 2>&1
	echo "corpus: $(ls "$root/fuzz/corpus/$t" | wc -l) inputs, $(du -sk "$root/fuzz/corpus/$t" | cut -f1) KiB"
done
