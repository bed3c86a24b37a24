#!/bin/bash
# make bench-local_redirect: does redirecting a proxy's writes straight into a same-host engine's socket (sk_msg,
# BPF_F_INGRESS, in the style of Cilium and Merbridge) pay? Three arms, alternated round by round on the same load:
#   gg-redirect  gridgate + its enginesim in a cgroup whose sockops program puts both ends of each engine
#                connection into a sockhash (tools/bench/local_redirect.bpf.c), so their bytes skip loopback TCP;
#   gg-tcp       the same pair outside that cgroup: plain loopback TCP;
#   nginx        nginx (proxy_buffering off, keep-alive upstream) in front of the second enginesim.
# Non-stream chat with wrk; each proxy's CPU-us per request from /proc/PID/stat. Proxies are pinned to CPU 0,
# wrk and the engines to CPU 1, so no proxy is preempted by its own load. Root and cgroup v2 only. Not a test.
#   BENCH_ROUNDS (default 5), BENCH_SECONDS per arm and round (4), BENCH_CONC (16)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/common.bash
B=${GG_BUILD:-build}
ROUNDS=${BENCH_ROUNDS:-5}
DUR=${BENCH_SECONDS:-4}
CONC=${BENCH_CONC:-16}
[ "$(id -u)" = 0 ] || { echo "bench-local_redirect: needs root (BPF, cgroups); skipped"; exit 0; }
CG_ROOT=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
[ -n "$CG_ROOT" ] || { echo "bench-local_redirect: no cgroup v2 mount; skipped"; exit 0; }

work=$(mktemp -d /tmp/gridgate-lr-XXXXXX) # no dot: libbpf turns dots in pin paths into underscores
cg=$CG_ROOT/gridgate-bench-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -d "$cg" ] && { bpftool cgroup detach "$cg" sock_ops pinned "$work/bpf/p/lr_sockops" 2>/dev/null || true; rmdir "$cg" 2>/dev/null || true; }
    umount "$work/bpf" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

make -s B="$B" "$B/vmlinux.h"
clang -target bpf -g -O2 -I"$B" -I/usr/include/x86_64-linux-gnu -c tools/bench/local_redirect.bpf.c -o "$work/lr.bpf.o"
mkdir -p "$work/bpf" && mount -t bpf bpf "$work/bpf"
bpftool prog loadall "$work/lr.bpf.o" "$work/bpf/p" pinmaps "$work/bpf/m"
bpftool prog attach pinned "$work/bpf/p/lr_msg" msg_verdict pinned "$work/bpf/m/lr_socks"
mkdir "$cg"
bpftool cgroup attach "$cg" sock_ops pinned "$work/bpf/p/lr_sockops"

in_cgroup() { exec bash -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$cg" "$@"; }
u32_bytes() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) 0 0; }
SIM=("$B/enginesim" --listen 127.0.0.1:0 --flavor vllm --models bench --decode-ms 0 --max-seqs 256)
gridgate_for() { GRIDGATE=("$B/gridgate" --listen 127.0.0.1:0 --backend "http://127.0.0.1:$1#kind=vllm" --threads 1 --bpf off); }

in_cgroup "${SIM[@]}" >"$work/simA.log" 2>&1 &
pids+=($!); SIMA=$!
SPA=$(port_of "$work/simA.log")
bpftool map update pinned "$work/bpf/m/lr_ports" key $(u32_bytes "$SPA") value 1 0 0 0
gridgate_for "$SPA"
in_cgroup "${GRIDGATE[@]}" >"$work/ggA.log" 2>&1 &
pids+=($!); GGA=$!
"${SIM[@]}" >"$work/simB.log" 2>&1 &
pids+=($!); SIMB=$!
SPB=$(port_of "$work/simB.log")
gridgate_for "$SPB"
"${GRIDGATE[@]}" >"$work/ggB.log" 2>&1 &
pids+=($!); GGB=$!
GPA=$(port_of "$work/ggA.log")
GPB=$(port_of "$work/ggB.log")
for p in $GPA $GPB; do
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$p/v1/models" | grep -q bench && break; sleep 0.05; done
done

NP=$((20000 + RANDOM % 20000))
cat >"$work/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream sim { server 127.0.0.1:$SPB; keepalive 64; }
    server {
        listen 127.0.0.1:$NP;
        location / { proxy_pass http://sim; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
    }
}
NGX
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!); NG=$!
sleep 0.3
NGW=$(pgrep -P "$NG" | head -1 || echo "$NG")

WRK="wrk"
if [ "$(nproc)" -ge 2 ]; then
    for p in $GGA $GGB $NGW; do pin "$p" 0; done
    for p in $SIMA $SIMB; do pin "$p" 1; done
    WRK="taskset -c 1 wrk"
fi

body='{"model":"bench","messages":[{"role":"user","content":"hello there, how are you today?"}],"max_tokens":8}'
printf 'wrk.method="POST"\nwrk.headers["Content-Type"]="application/json"\nwrk.body=[[%s]]\n' "$body" >"$work/chat.lua"

echo "# bench-local_redirect: $(nproc) cores, $ROUNDS rounds x ${DUR}s per arm, wrk -t1 -c$CONC, proxies on CPU 0"
for _ in $(seq "$ROUNDS"); do
    for arm in "gg-redirect $GGA $GPA" "gg-tcp $GGB $GPB" "nginx $NGW $NP"; do
        set -- $arm
        t0=$(cpu_ticks "$2")
        n=$($WRK -t1 -c"$CONC" -d"${DUR}s" -s "$work/chat.lua" "http://127.0.0.1:$3/v1/chat/completions" |
            awk '/requests in/ {print $1}')
        t1=$(cpu_ticks "$2")
        awk -v a="$1" -v n="$n" -v d=$((t1 - t0)) -v hz="$TCK" 'BEGIN{printf "%s %d %.1f\n", a, n, d * 1e6 / hz / n}'
    done
done >"$work/runs"

median() { grep "^$1 " "$work/runs" | sort -k3 -n | awk '{v[NR]=$3} END{print v[int((NR+1)/2)]}'; }
printf '%-12s %22s %s\n' arm "CPU-us/req (median)" "all rounds"
for arm in gg-redirect gg-tcp nginx; do
    printf '%-12s %22s %s\n' "$arm" "$(median "$arm")" "$(grep "^$arm " "$work/runs" | awk '{printf "%s ", $3}')"
done
r=$(median gg-redirect) t=$(median gg-tcp) n=$(median nginx)
awk -v r="$r" -v t="$t" -v n="$n" 'BEGIN{printf "gg-redirect / gg-tcp %.2f   gg-redirect / nginx %.2f   gg-tcp / nginx %.2f\n", r/t, r/n, t/n}'
echo "sockhash: $(bpftool map dump pinned "$work/bpf/m/lr_counts" | awk '/"value"/ {printf "%s ", $2}' | awk '{print "inserted " $1 ", writes redirected " $2 ", passed to TCP " $3}')"
