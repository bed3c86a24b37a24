#!/bin/bash
# Demo: starts three engine simulators on fixed loopback ports (ollama 11434, vllm 8000, llamacpp 8081),
# prints what runs and a curl line that works, and waits; Ctrl-C stops them all.
# The gateway goes in front of these later; keep the simulator start-up in start_sims.
set -u
cd "$(dirname "$0")/.."
SIM=${GG_BUILD:-build}/enginesim
LOGDIR=$(mktemp -d /tmp/gridgate-demo.XXXXXX)
pids=()

start_sim() { # flavour port models...
    local flavor=$1 port=$2 models=$3
    "$SIM" --flavor "$flavor" --listen "127.0.0.1:$port" --models "$models" --decode-ms 20 >"$LOGDIR/$flavor.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do
        grep -q "listening on" "$LOGDIR/$flavor.log" && { echo "  $flavor  http://127.0.0.1:$port  models: $models"; return 0; }
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "run-demo: $flavor did not start:" >&2; cat "$LOGDIR/$flavor.log" >&2; return 1
}

start_sims() {
    start_sim ollama 11434 "llama3:4000,qwen2:7b:5000" &&
    start_sim vllm 8000 "meta-llama/Llama-3.1-8B-Instruct,Qwen/Qwen2.5-7B-Instruct" &&
    start_sim llamacpp 8081 "gemma-2-9b,phi-3-mini"
}

stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$LOGDIR"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

[ -x "$SIM" ] || { echo "run-demo: $SIM not built; run make" >&2; exit 1; }
echo "starting engine simulators (logs in $LOGDIR):"
start_sims || exit 1
cat <<'TXT'

try:
  curl -N http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"meta-llama/Llama-3.1-8B-Instruct","stream":true,"messages":[{"role":"user","content":"hi"}]}'
  curl http://127.0.0.1:11434/api/chat -d '{"model":"llama3","messages":[{"role":"user","content":"hi"}]}'
  curl http://127.0.0.1:8081/slots ; curl http://127.0.0.1:8000/_sim/stats

Ctrl-C stops everything.
TXT
wait
