#!/bin/bash
# Runs each libFuzzer target for N seconds on a copy of its seed corpus; prints executions per target.
set -eu
secs=$1; shift
for f in "$@"; do
    name=$(basename "$f")
    seeds=tests/fuzz/corpus/$name
    dir=$(dirname "$f") # the build dir of the target (make B=...), not always build/
    work=$dir/corpus-$name
    mkdir -p "$work"
    [ -d "$seeds" ] && cp -n "$seeds"/* "$work"/ 2>/dev/null || true
    log=$dir/$name.log
    if ! "$f" -max_total_time="$secs" -print_final_stats=1 "$work" >"$log" 2>&1; then
        tail -40 "$log"; echo "FUZZ FAIL $name"; exit 1
    fi
    execs=$(grep -E 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    echo "fuzz $name: $execs executions in ${secs}s, $cov"
done
