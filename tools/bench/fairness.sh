#!/bin/bash
# make bench-fairness: a quiet tenant (1 req/s) beside a flooder (32 req/s) on one vLLM-flavour enginesim,
# 64-token streams (the InferGrid experiment). Arms, each through gridgate:
#   cap   the flooder alone, closed loop: the engine's capacity (tokens/s) at gridgate's cap
#   a     the quiet tenant alone
#   b     flooder + quiet tenant, fairness off: no tenants configured, one FIFO queue
#   c     flooder + quiet tenant, fairness on: two tenants, DRR + burst slots for the under-share tenant
# Reports the quiet tenant's TTFT p50/p99 (warm-up excluded) and the flooder's goodput (tokens received inside
# the measured window) against the capacity the quiet tenant leaves unused. Not a test: numbers only.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/common.bash
B=${GG_BUILD:-build}
DUR=${BENCH_SECONDS:-60}
WARM=${BENCH_WARMUP:-5}
CAP=${BENCH_CAP:-8}          # gridgate's concurrency cap for the engine (max_inflight)
# the engine's own batch limit: room for the cap/2 burst slots (vLLM's max_num_seqs is far above its latency knee)
SEQS=${BENCH_SEQS:-$((CAP + CAP / 2))}
DECODE=${BENCH_DECODE_MS:-5} # ms per decode step
PREFILL=${BENCH_PREFILL_TPS:-5000}
PROMPT=${BENCH_PROMPT_TOKENS:-128}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT


"$B/enginesim" --listen 127.0.0.1:0 --flavor vllm --models bench --max-seqs "$SEQS" --decode-ms "$DECODE" \
    --prefill-tps "$PREFILL" --default-tokens 64 --max-queue 0 --log-level info >"$work/sim.log" 2>&1 &
pids+=($!)
SP=$(port_of "$work/sim.log")

gateway() { # $1 = name, $2 = tenants JSON; starts gridgate, sets PORT (not in a subshell: its pid must be kept)
    cat >"$work/$1.json" <<CFG
{"backends": [{"name": "sim", "url": "http://127.0.0.1:$SP", "kind": "vllm", "max_inflight": $CAP}],
 "tenants": $2, "routing": {"queue_ms": 30000}, "health": {"interval_ms": 200}}
CFG
    "$B/gridgate" --config "$work/$1.json" --listen 127.0.0.1:0 --bpf off --log-level info >"$work/$1.log" 2>&1 &
    pids+=($!)
    PORT=$(port_of "$work/$1.log")
    for _ in $(seq 200); do curl -s "http://127.0.0.1:$PORT/v1/models" | grep -q bench && break; sleep 0.05; done
}

gateway fair '[{"name": "quiet", "keys": ["quiet-key"], "weight": 1},
               {"name": "flood", "keys": ["flood-key"], "weight": 1, "max_queue": 16}]'
FAIR=$PORT
gateway fifo '[]'
FIFO=$PORT

load() { # $1 = arm, $2 = port, flows...
    local arm=$1 port=$2
    shift 2
    echo "== arm $arm" >&2
    "$B/gridload" --target "http://127.0.0.1:$port" --model bench --max-tokens 64 --prompt-tokens "$PROMPT" \
        --warmup "$WARM" --duration "$DUR" --timeout 40 --json "$work/$arm.json" "$@" >&2
}

load cap "$FAIR" --flow "flood:flood-key:1,conc=$((CAP * 2))"
load a "$FAIR" --flow quiet:quiet-key:1
load b "$FIFO" --flow quiet:quiet-key:1 --flow flood:flood-key:32
load c "$FAIR" --flow quiet:quiet-key:1 --flow flood:flood-key:32

python3 - "$work" "$DUR" "$CAP" "$SEQS" "$DECODE" "$PREFILL" "$PROMPT" <<'PY'
import json, sys
work, dur, cap, seqs, decode, prefill, prompt = sys.argv[1:]
def flow(arm, name):
    for f in json.load(open(f"{work}/{arm}.json"))["flows"]:
        if f["name"] == name:
            return f
    return None
def goodput(f):
    """Tokens/s received inside the measured window (a queue that drains after the window does not count)."""
    w = [x for x in f["windows"] if not x["warmup"]][: int(dur)]
    return sum(x["tokens"] for x in w) / max(1, len(w))
capacity = goodput(flow("cap", "flood"))
solo = flow("a", "quiet")
print(f"\nenginesim vllm max-seqs {seqs}, decode {decode} ms/step, prefill {prefill} tok/s, prompt {prompt} words, "
      f"64-token streams; gridgate cap {cap}; {dur} s measured per arm")
print(f"engine capacity at the cap (flooder alone, closed loop): {capacity:.0f} tokens/s\n")
print("| arm | quiet TTFT p50 (ms) | p90 | p99 | p99 / solo | quiet ok/sent | flooder tokens/s "
      "| flooder / capacity the quiet tenant leaves |")
print("|---|---|---|---|---|---|---|---|")
for arm, label in (("a", "(a) quiet alone"), ("b", "(b) + flooder, fairness off (FIFO)"), ("c", "(c) + flooder, fairness on")):
    q, f = flow(arm, "quiet"), flow(arm, "flood")
    t = q["ttft_ms"]
    ratio = t["p99"] / solo["ttft_ms"]["p99"] if t["n"] and solo["ttft_ms"]["p99"] else float("nan")
    if f:
        left = capacity - goodput(q)
        fl = f"{goodput(f):.0f}"
        share = f"{100 * goodput(f) / left:.1f}%"
    else:
        fl, share = "-", "-"
    print(f"| {label} | {t['p50']:.1f} | {t['p90']:.1f} | {t['p99']:.1f} | {ratio:.2f}x | {q['ok']}/{q['sent']} | {fl} | {share} |")
PY
