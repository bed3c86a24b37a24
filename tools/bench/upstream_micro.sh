#!/bin/bash
# Upstream client micro benchmark: N sequential keep-alive requests from dataplane/upstream.c to build/enginesim
# (tiny JSON, a non-streamed completion, a long SSE stream), CPU-us per request (and per stream chunk) from
# getrusage, and syscalls per request from strace -c -f. Not a test: numbers only.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${GG_BUILD:-build}
N=${BENCH_REQUESTS:-20000}
NS=${BENCH_STRACE_REQUESTS:-2000}
TOKENS=${BENCH_STREAM_TOKENS:-2000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

[ -x "$B/enginesim" ] || make --no-print-directory -s "$B/enginesim"
mkdir -p "$B/bench"
# Built from the two sources directly, with plain -O2: build/ may hold a sanitizer build at any moment.
${CC:-gcc} -O2 -g -std=gnu11 -DH2O_USE_LIBUV=0 -D_GNU_SOURCE -Iinclude -o "$B/bench/upstream_micro" \
    tools/bench/upstream_micro.c dataplane/upstream.c dataplane/upstream_parse.c -lh2o-evloop -lssl -lcrypto -lz -lpthread

"$B/enginesim" --listen 127.0.0.1:0 --flavor vllm --models bench --decode-ms 0 --prefill-tps 0 --max-seqs 64 \
    --log-level info >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    SP=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$work/sim.log" 2>/dev/null | head -1 | sed 's/.*://') || true
    [ -n "${SP:-}" ] && break
    sleep 0.05
done
[ -n "${SP:-}" ] || { echo "enginesim did not start"; cat "$work/sim.log"; exit 1; }

chat='{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
stream="{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":$TOKENS,\"stream\":true}"

run() { # name n path [body]
    local name=$1 n=$2; shift 2
    printf '%-22s %s\n' "$name" "$("$B/bench/upstream_micro" 127.0.0.1 "$SP" "$n" "$@")"
}
syscalls() { # name n path [body]: syscalls per request (warm-up and setup included, so slightly high)
    local name=$1 n=$2; shift 2
    strace -c -f -o "$work/strace.txt" "$B/bench/upstream_micro" 127.0.0.1 "$SP" "$n" "$@" >/dev/null
    local total
    total=$(awk '$NF == "total" {print $(NF-2)}' "$work/strace.txt")
    printf '%-22s syscalls_per_req=%.2f  (' "$name" "$(echo "$total / $n" | bc -l)"
    awk -v n="$n" 'NR > 2 && $1 ~ /^[0-9.]+$/ && $NF != "total" {c = (NF == 6 ? $4 : $4); printf "%s=%.2f ", $NF, c / n}' \
        "$work/strace.txt"
    echo ")"
}

echo "upstream_micro: $N sequential keep-alive requests to enginesim on 127.0.0.1:$SP"
run "GET /v1/models" "$N" /v1/models
printf '%-22s %s\n' "GET /v1/models" "$(UPSTREAM_MICRO_RAW=1 "$B/bench/upstream_micro" 127.0.0.1 "$SP" "$N" /v1/models)"
run "POST chat (8 tokens)" "$N" /v1/chat/completions "$chat"
run "SSE stream ($TOKENS tok)" $((N / 100 > 10 ? N / 100 : 10)) /v1/chat/completions "$stream"
syscalls "GET /v1/models" "$NS" /v1/models
syscalls "POST chat (8 tokens)" "$NS" /v1/chat/completions "$chat"
