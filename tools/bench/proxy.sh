#!/bin/bash
# make bench-proxy: direct-to-enginesim vs gridgate vs nginx (proxy_buffering off, keep-alive upstream),
# measured in one run with wrk. Reports request rate, added latency and each proxy's CPU-us per request
# (and per relayed SSE chunk) from /proc/PID/stat. Not a test: numbers only.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/common.bash
B=${GG_BUILD:-build}
DUR=${BENCH_SECONDS:-8}
TOKENS=${BENCH_STREAM_TOKENS:-100}
PIN=${BENCH_PIN:-1} # proxies on CPU 0, wrk and enginesim on CPU 1 (BENCH_PIN=0: unpinned)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$B/enginesim" --listen 127.0.0.1:0 --flavor vllm --models bench --decode-ms 0 --max-seqs 256 >"$work/sim.log" 2>&1 &
pids+=($!); SIM=$!
SP=$(port_of "$work/sim.log")

"$B/gridgate" --listen 127.0.0.1:0 --backend "http://127.0.0.1:$SP#kind=vllm" --threads 1 --bpf off --log-level info \
    >"$work/gg.log" 2>&1 &
pids+=($!); GG=$!
GP=$(port_of "$work/gg.log")
for _ in $(seq 100); do curl -s "http://127.0.0.1:$GP/v1/models" | grep -q bench && break; sleep 0.05; done

NP=$((20000 + RANDOM % 20000))
cat >"$work/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream sim { server 127.0.0.1:$SP; keepalive 64; }
    server {
        listen 127.0.0.1:$NP;
        location / {
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
NGX
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!); NG=$!
sleep 0.3
NGW=$(pgrep -P "$NG" | head -1 || echo "$NG")
WRK=wrk
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    for p in $GG $NGW; do pin "$p" 0; done
    pin "$SIM" 1
    WRK="taskset -c 1 wrk"
fi

body='{"model":"bench","messages":[{"role":"user","content":"hello there, how are you today?"}],"max_tokens":8}'
sbody="{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":$TOKENS,\"stream\":true}"
printf 'wrk.method="POST"\nwrk.headers["Content-Type"]="application/json"\nwrk.body=[[%s]]\n' "$body" >"$work/chat.lua"
printf 'wrk.method="POST"\nwrk.headers["Content-Type"]="application/json"\nwrk.body=[[%s]]\n' "$sbody" >"$work/stream.lua"

# run NAME PORT PID CONC SCRIPT -> "rps p50_ms p99_ms cpu_us_per_req sys_us_per_req requests"
run() {
    local port=$2 pid=$3 conc=$4 script=$5
    local u0=0 s0=0 u1=0 s1=0 out rps p50 p99 n
    [ "$pid" != - ] && read -r u0 s0 < <(cpu_split "$pid")
    out=$($WRK -t1 -c"$conc" -d"${DUR}s" --latency -s "$script" "http://127.0.0.1:$port/v1/chat/completions" 2>&1)
    [ "$pid" != - ] && read -r u1 s1 < <(cpu_split "$pid")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    local cpu="0 0"
    [ "$pid" != - ] && [ "${n:-0}" -gt 0 ] &&
        cpu=$(awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v n="$n" -v hz="$TCK" 'BEGIN{printf "%.1f %.1f", (u + s) * 1e6 / hz / n, s * 1e6 / hz / n}')
    echo "$rps $(ms "$p50") $(ms "$p99") $cpu $n"
}

row() { printf '%-18s %-9s %10s %9s %9s %12s %10s %10s\n' "$@"; } # workload peer req/s p50 p99 cpu sys ratio
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a - b}'; } # ms over direct

echo "# bench-proxy: $(nproc) cores, ${DUR}s per cell, wrk -t1; enginesim vllm --decode-ms 0; gridgate --threads 1; nginx 1 worker; pinned: $PIN"
row workload peer req/s p50_ms p99_ms cpu_us/req sys_us/req ratio_rps
for conc in 1 16 64; do
    read -r drps dp50 dp99 _ _ _ < <(run direct "$SP" - "$conc" "$work/chat.lua")
    read -r grps gp50 gp99 gcpu gsys _ < <(run gridgate "$GP" "$GG" "$conc" "$work/chat.lua")
    read -r nrps np50 np99 ncpu nsys _ < <(run nginx "$NP" "$NGW" "$conc" "$work/chat.lua")
    row "chat c=$conc" direct "$drps" "$dp50" "$dp99" - - 1.00
    row "" gridgate "$grps" "$gp50" "$gp99" "$gcpu" "$gsys" "$(ratio "$grps" "$drps")"
    row "" nginx "$nrps" "$np50" "$np99" "$ncpu" "$nsys" "$(ratio "$nrps" "$drps")"
    echo "  added p50/p99 ms: gridgate +$(added "$gp50" "$dp50")/+$(added "$gp99" "$dp99")  nginx +$(added "$np50" "$dp50")/+$(added "$np99" "$dp99")  cpu gridgate/nginx $(ratio "$gcpu" "$ncpu")"
done
conc=16
read -r drps dp50 dp99 _ _ _ < <(run direct "$SP" - "$conc" "$work/stream.lua")
read -r grps gp50 gp99 gcpu gsys _ < <(run gridgate "$GP" "$GG" "$conc" "$work/stream.lua")
read -r nrps np50 np99 ncpu nsys _ < <(run nginx "$NP" "$NGW" "$conc" "$work/stream.lua")
chunks=$((TOKENS + 3)) # role chunk, content chunks, finish chunk, [DONE]
gchunk=$(ratio "$gcpu" "$chunks")
nchunk=$(ratio "$ncpu" "$chunks")
row "stream ${TOKENS}tok c=16" direct "$drps" "$dp50" "$dp99" - - 1.00
row "" gridgate "$grps" "$gp50" "$gp99" "$gcpu" "$gsys" "$(ratio "$grps" "$drps")"
row "" nginx "$nrps" "$np50" "$np99" "$ncpu" "$nsys" "$(ratio "$nrps" "$drps")"
echo "  cpu-us per relayed chunk: gridgate $gchunk, nginx $nchunk"
