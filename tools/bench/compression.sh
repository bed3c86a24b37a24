#!/bin/bash
# make bench-compression: a 1,536-dimension embedding answer (OpenAI JSON floats) through gridgate, plain and
# gzipped at each zlib level. Reports the bytes on the wire per answer and gridgate's CPU per answer (user+sys
# from /proc over N sequential keep-alive requests, one worker thread), and the CPU that gzip adds over plain.
# Not a test: numbers only.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/common.bash
B=${GG_BUILD:-build}
N=${BENCH_REQUESTS:-3000}
LEVELS=${BENCH_LEVELS:-"1 3 6 9"}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT


"$B/enginesim" --listen 127.0.0.1:0 --flavor vllm --models emb --embed-dim 1536 >"$work/sim.log" 2>&1 &
pids+=($!)
SP=$(port_of "$work/sim.log")

# N sequential requests on one keep-alive connection; prints the body bytes of the last answer as received.
cat >"$work/client.mjs" <<'JS'
import http from 'node:http';
const [url, n, gzip] = [process.argv[2], Number(process.argv[3]), process.argv[4] === '1'];
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({ model: 'emb', input: 'the quick brown fox', encoding_format: 'float' });
const headers = { 'content-type': 'application/json', ...(gzip ? { 'accept-encoding': 'gzip' } : {}) };
let bytes = 0, enc = '';
for (let i = 0; i < n; i++) {
  await new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers }, (res) => {
      let len = 0;
      res.on('data', (d) => (len += d.length));
      res.on('end', () => { bytes = len; enc = res.headers['content-encoding'] || 'identity'; resolve(); });
    });
    req.on('error', reject);
    req.end(body);
  });
}
agent.destroy();
console.log(bytes, enc);
JS

run() { # $1 = label, $2 = zlib level (0 = off), $3 = client asks for gzip
    echo "{\"backends\": [{\"url\": \"http://127.0.0.1:$SP\", \"kind\": \"vllm\"}], \"compression\": {\"level\": $2}}" >"$work/gg.json"
    "$B/gridgate" --config "$work/gg.json" --listen 127.0.0.1:0 --threads 1 --bpf off >"$work/gg-$1.log" 2>&1 &
    local pid=$!
    pids+=($pid)
    local p
    p=$(port_of "$work/gg-$1.log")
    for _ in $(seq 200); do curl -s "http://127.0.0.1:$p/v1/models" | grep -q emb && break; sleep 0.05; done
    node "$work/client.mjs" "http://127.0.0.1:$p/v1/embeddings" 200 "$3" >/dev/null # warm-up
    local t0 t1 out
    t0=$(cpu_ticks $pid)
    out=$(node "$work/client.mjs" "http://127.0.0.1:$p/v1/embeddings" "$N" "$3")
    t1=$(cpu_ticks $pid)
    kill $pid
    local us=$(( (t1 - t0) * 1000000 / $TCK / N ))
    echo "$1 ${out% *} ${out#* } $us"
}

{
    run plain 0 0
    for l in $LEVELS; do run "level-$l" "$l" 1; done
} >"$work/results"
plain_bytes=$(awk '$1=="plain"{print $2}' "$work/results")
plain_us=$(awk '$1=="plain"{print $4}' "$work/results")
echo "1,536-dim embedding answer, $N requests per row, gridgate --threads 1 (CPU = user+sys of the gridgate process)"
printf '%-9s %12s %9s %9s %14s %14s\n' arm wire_bytes encoding of_plain cpu_us/answer gzip_us/answer
while read -r name bytes enc us; do
    printf '%-9s %12s %9s %8.1f%% %14s %14s\n' "$name" "$bytes" "$enc" "$(echo "100*$bytes/$plain_bytes" | bc -l)" "$us" "$((us - plain_us))"
done <"$work/results"
