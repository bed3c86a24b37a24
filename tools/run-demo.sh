#!/bin/bash
# make run: gridgate on 127.0.0.1:8080 in front of four engine simulators (ollama 11434, vllm 8000,
# llamacpp 8081, comfyui 8188). Prints what runs and curl lines that work; Ctrl-C stops everything.
# GG_DEMO_PORT moves gridgate's port.
set -u
cd "$(dirname "$0")/.."
B=${GG_BUILD:-build}
PORT=${GG_DEMO_PORT:-8080}
LOGDIR=$(mktemp -d /tmp/gridgate-demo.XXXXXX)
pids=()

wait_listening() { # name log pid
    for _ in $(seq 100); do
        grep -q "listening on" "$2" && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    echo "run-demo: $1 did not start:" >&2
    cat "$2" >&2
    return 1
}

start_sim() { # flavour port models
    "$B/enginesim" --flavor "$1" --listen "127.0.0.1:$2" --models "$3" --decode-ms 20 >"$LOGDIR/$1.log" 2>&1 &
    pids+=($!)
    wait_listening "$1" "$LOGDIR/$1.log" "${pids[-1]}" && echo "  $1 simulator  http://127.0.0.1:$2  models: $3"
}

start_sims() {
    start_sim ollama 11434 "llama3:4000,qwen2:7b:5000" &&
        start_sim vllm 8000 "meta-llama/Llama-3.1-8B-Instruct,Qwen/Qwen2.5-7B-Instruct,llama3" &&
        start_sim llamacpp 8081 "gemma-2-9b,phi-3-mini" &&
        start_sim comfyui 8188 "sdxl"
}

start_gridgate() {
    "$B/gridgate" --listen "127.0.0.1:$PORT" --access-log "$LOGDIR/access.log" \
        --backend http://127.0.0.1:11434 --backend http://127.0.0.1:8000 --backend http://127.0.0.1:8081 \
        --backend http://127.0.0.1:8188 >"$LOGDIR/gridgate.log" 2>&1 &
    pids+=($!)
    wait_listening gridgate "$LOGDIR/gridgate.log" "${pids[-1]}" || return 1
    for _ in $(seq 50); do # until health has found the models
        curl -s "http://127.0.0.1:$PORT/v1/models" | grep -q gemma && break
        sleep 0.1
    done
    echo "  gridgate            http://127.0.0.1:$PORT  (log $LOGDIR/gridgate.log, access log $LOGDIR/access.log)"
}

stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$LOGDIR"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

for bin in enginesim gridgate; do
    [ -x "$B/$bin" ] || { echo "run-demo: $B/$bin not built; run make" >&2; exit 1; }
done
echo "starting (logs in $LOGDIR):"
start_sims && start_gridgate || exit 1
cat <<TXT

try (one endpoint, every engine):
  curl http://127.0.0.1:$PORT/v1/models
  curl -N http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"meta-llama/Llama-3.1-8B-Instruct","stream":true,"messages":[{"role":"user","content":"hi"}]}'
  curl http://127.0.0.1:$PORT/api/chat -d '{"model":"gemma-2-9b","messages":[{"role":"user","content":"hi"}]}'
  curl http://127.0.0.1:$PORT/metrics
OpenAI SDKs: base URL http://127.0.0.1:$PORT/v1   Ollama clients: host http://127.0.0.1:$PORT

Ctrl-C stops everything.
TXT
wait
