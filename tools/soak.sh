#!/bin/bash
# Soak (issue 8): gridgate in front of a vLLM and an Ollama simulator for N minutes under mixed load from
# three tenants (OpenAI streaming, Ollama non-streaming, Ollama generate streaming), with a backend fault
# injected every 20 s. Samples gridgate's RSS and open fds every 5 s and fails when either grows past the
# first minute's level (RSS: max +25% and +8 MB; fds: the last minute's floor above the first minute's
# peak +8), when gridgate dies, when a request hangs past the client timeout, or when gridgate logs an
# error-level line that is not about the injected faults. Every gridgate timeout, the admission queue's
# included, is shorter than the client's 20 s, so a client timeout means gridgate failed to answer.
# usage: tools/soak.sh MINUTES   (GG_BUILD=dir picks the binaries; default build)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-5}
B=${GG_BUILD:-build}
dir=$(mktemp -d /tmp/gg-soak.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

port_of() { # waits for the listening line of a log, prints the port
    for _ in $(seq 100); do
        p=$(grep -oE 'listening on http://127.0.0.1:[0-9]+' "$1" | head -1 | sed 's/.*://') && [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.1
    done
    echo "soak: no listening line in $1" >&2; exit 1
}

"$B/enginesim" --listen 127.0.0.1:0 --flavor vllm --models m --max-seqs 32 --decode-ms 5 >"$dir/vl.log" 2>&1 & pids+=($!)
"$B/enginesim" --listen 127.0.0.1:0 --flavor ollama --models m --max-seqs 4 --decode-ms 5 >"$dir/ol.log" 2>&1 & pids+=($!)
vl=$(port_of "$dir/vl.log"); ol=$(port_of "$dir/ol.log")
cat >"$dir/gridgate.json" <<EOF
{"backends": [{"name": "vl", "url": "http://127.0.0.1:$vl"}, {"name": "ol", "url": "http://127.0.0.1:$ol"}],
 "tenants": [{"name": "a", "keys": ["soak-key-a"]}, {"name": "b", "keys": ["soak-key-b"]}, {"name": "c", "keys": ["soak-key-c"]}],
 "health": {"interval_ms": 500, "cooldown_ms": 500},
 "timeouts": {"connect_ms": 1000, "first_byte_ms": 2000, "idle_ms": 2000},
 "routing": {"queue_ms": 10000},
 "access_log": "$dir/access.log"}
EOF
"$B/gridgate" --listen 127.0.0.1:0 --bpf off --threads 2 --config "$dir/gridgate.json" >"$dir/gridgate.log" 2>&1 & gg=$!; pids+=($gg)
gp=$(port_of "$dir/gridgate.log")
sleep 2

secs=$((minutes * 60))
"$B/gridload" --target "http://127.0.0.1:$gp" --model m --duration "$secs" --timeout 20 --max-tokens 24 --quiet \
    --json "$dir/load.json" \
    --flow "a:soak-key-a:15,api=openai,stream=1" \
    --flow "b:soak-key-b:8,api=ollama,stream=0" \
    --flow "c:soak-key-c:6,api=generate,stream=1" >"$dir/gridload.out" 2>&1 & load=$!; pids+=($load)

faults=('{"mode":"reset_after","after_tokens":5,"count":3}' '{"mode":"status","status":503,"count":5}'
        '{"mode":"hang","count":2}' '{"mode":"close_after_headers","count":2}' '{"mode":"garbage","count":2}')
sample() { # t rss_kb fds
    echo "$1 $(awk '/VmRSS/ {print $2}' "/proc/$gg/status") $(ls "/proc/$gg/fd" | wc -l)" >>"$dir/samples"
}
start=$(date +%s); n=0
while kill -0 "$load" 2>/dev/null; do
    sleep 5
    kill -0 "$gg" 2>/dev/null || { echo "soak: gridgate died"; tail -30 "$dir/gridgate.log"; exit 1; }
    t=$(($(date +%s) - start)); sample "$t"
    if [ $((t / 20)) -gt "$n" ]; then
        n=$((t / 20)); f=${faults[$((n % ${#faults[@]}))]}
        port=$([ $((n % 2)) = 0 ] && echo "$vl" || echo "$ol")
        curl -s -o /dev/null -X POST "http://127.0.0.1:$port/_sim/fault" -d "$f" && echo "$t fault $port $f" >>"$dir/faults"
    fi
done
wait "$load" || { echo "soak: gridload failed"; cat "$dir/gridload.out"; exit 1; }

# Verdict: level = maxima over the samples of the first minute (after warm-up); end = maxima of the last minute.
read -r rss0 fd0 < <(awk '$1 <= 60 {if ($2 > r) r = $2; if ($3 > f) f = $3} END {print r, f}' "$dir/samples")
last=$(($(tail -1 "$dir/samples" | awk '{print $1}') - 60))
# fds follow the number of open connections, so a leak shows as a rising floor: the last minute's minimum.
read -r rss1 fd1 < <(awk -v s="$last" '$1 >= s {if ($2 > r) r = $2; if (f == "" || $3 < f) f = $3} END {print r, f}' "$dir/samples")
sent=$(jq '[.flows[].sent] | add' "$dir/load.json"); ok=$(jq '[.flows[].ok] | add' "$dir/load.json")
errs=$(jq -c '[.flows[] | {(.name): .errors}] | add' "$dir/load.json")
# Error-level lines that are not the gateway reporting a broken backend.
unexpected=$(grep -E ' error: | error ' "$dir/gridgate.log" | grep -vE 'backend|upstream|probe|health' || true)
echo "soak: ${minutes} min, $sent requests, $ok ok, faults injected: $(wc -l <"$dir/faults")"
echo "soak: errors by flow: $errs"
echo "soak: RSS max first minute ${rss0} kB, last minute ${rss1} kB; fds peak first minute ${fd0}, floor last minute ${fd1}; samples in $dir/samples"
fail=0
[ "$rss1" -le $((rss0 + rss0 / 4 + 8192)) ] || { echo "soak: FAIL RSS grew"; fail=1; }
[ "$fd1" -le $((fd0 + 8)) ] || { echo "soak: FAIL fds grew"; fail=1; }
[ -z "$unexpected" ] || { echo "soak: FAIL unexpected error lines:"; echo "$unexpected" | head -20; fail=1; }
[ "$ok" -gt 0 ] || { echo "soak: FAIL nothing succeeded"; fail=1; }
jq -e '[.flows[].errors.timeout] | add == 0' "$dir/load.json" >/dev/null || { echo "soak: FAIL requests hung past the client timeout"; fail=1; }
[ $fail = 0 ] && echo "soak: PASS"
exit $fail
