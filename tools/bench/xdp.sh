#!/bin/bash
# make bench-xdp: a bounded SYN flood (tools/bench/synflood.c, spoofed sources) from one network namespace at gridgate
# in another, across a veth pair, with the XDP guard off and then on. Reports gridgate's CPU (/proc/PID/stat), the
# machine's softirq + system CPU (/proc/stat: where SYN handling is paid), what the guard dropped, and a good client's
# connect+request success rate during the flood. Root only; everything lives in namespaces this script creates and
# deletes. Not a test: numbers only.
#   BENCH_SYNS (default 300000), BENCH_PPS (200000), BENCH_SOURCES (16: each far over the per-source rate of 100/s)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${GG_BUILD:-build}
SYNS=${BENCH_SYNS:-300000}
PPS=${BENCH_PPS:-200000}
SOURCES=${BENCH_SOURCES:-16}
[ "$(id -u)" = 0 ] || { echo "bench-xdp: needs root (namespaces, XDP, raw sockets); skipped"; exit 0; }

id=$$
nsS=gbs$id nsC=gbc$id vS=gbvs$id vC=gbvc$id
net3="10.$((150 + id % 50)).$((id % 250))"
SERVER=$net3.1 GOOD=$net3.2
# spoofed sources: another /16 routed to nowhere, so SYN-ACKs go unanswered as in a real spoofed flood
FLOOD_SRC=10.$((100 + id % 50)).0.1
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$nsS" 2>/dev/null || true
    ip netns del "$nsC" 2>/dev/null || true
    umount "$work/bpf" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$B/bench" "$work/bpf"
${CC:-gcc} -O2 -Wall -o "$B/bench/synflood" tools/bench/synflood.c
mount -t bpf bpf "$work/bpf"
ip netns add "$nsS"
ip netns add "$nsC"
ip link add "$vS" netns "$nsS" type veth peer name "$vC" netns "$nsC"
ip -n "$nsS" addr add "$SERVER/24" dev "$vS"
ip -n "$nsC" addr add "$GOOD/24" dev "$vC"
for ns in "$nsS" "$nsC"; do ip -n "$ns" link set lo up; done
ip -n "$nsS" link set "$vS" up
ip -n "$nsC" link set "$vC" up
ip -n "$nsS" route add "${FLOOD_SRC%.*.*}.0.0/16" via "$GOOD" 2>/dev/null || true

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }              # utime + stime, clock ticks
sys_cpu() { awk '/^cpu /{print $4 + $7 + $8}' /proc/stat; }         # system + irq + softirq, clock ticks
tick=$(getconf CLK_TCK)

run() { # run MODE(off|on)
    local mode=$1 ifs='[]'
    [ "$mode" = on ] && ifs="[\"$vS\"]"
    cat >"$work/gg.json" <<EOF
{"bpf": {"xdp": {"interfaces": $ifs, "syn_rate": 100, "syn_burst": 200}}}
EOF
    ip netns exec "$nsS" "$B/gridgate" --config "$work/gg.json" --listen "$SERVER:0" --threads 2 --bpf on \
        --pin-path "$work/bpf/pins-$mode" --admin "unix:$work/admin-$mode.sock" --log-level warn >"$work/gg-$mode.log" 2>&1 &
    local gg=$!
    pids+=($gg)
    local port=""
    for _ in $(seq 200); do
        port=$(ip netns exec "$nsS" ss -Htlnp 2>/dev/null | grep "pid=$gg," | grep -oE "$SERVER:[0-9]+" | head -1 | cut -d: -f2) || true
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { cat "$work/gg-$mode.log"; echo "gridgate did not start"; exit 1; }
    # settle, then measure
    sleep 0.5
    local c0 s0 t0
    c0=$(cpu_of "$gg")
    s0=$(sys_cpu)
    t0=$(date +%s.%N)
    ip netns exec "$nsC" "$B/bench/synflood" "$FLOOD_SRC" "$SOURCES" "$SERVER" "$port" "$SYNS" "$PPS" >"$work/flood-$mode.log" &
    local fl=$!
    local ok=0 total=0
    # the good client: a new connection + GET per try (Connection: close), 1 s timeout each, back to back while the flood
    # lasts; 10 tries per curl process
    local urls=()
    for _ in $(seq 10); do urls+=(-o /dev/null "http://$SERVER:$port/v1/models"); done
    while kill -0 "$fl" 2>/dev/null; do
        while read -r code; do
            total=$((total + 1))
            [ "$code" = 200 ] && ok=$((ok + 1))
        done < <(ip netns exec "$nsC" curl -s -m 1 -H 'Connection: close' -w '%{http_code}\n' --interface "$GOOD" "${urls[@]}" || true)
    done
    wait "$fl"
    local c1 s1 t1
    c1=$(cpu_of "$gg")
    s1=$(sys_cpu)
    t1=$(date +%s.%N)
    local drops
    drops=$("$B/gridctl" --admin "unix:$work/admin-$mode.sock" -j guard stats |
        python3 -c 'import json,sys; c=json.load(sys.stdin)["counters"]; print(c.get("rate_limited",0), c.get("passed",0))')
    kill "$gg"
    wait "$gg" 2>/dev/null || true
    awk -v m="$mode" -v c="$((c1 - c0))" -v s="$((s1 - s0))" -v hz="$tick" -v t0="$t0" -v t1="$t1" -v ok="$ok" -v tot="$total" \
        -v d="$drops" -v fl="$(cat "$work/flood-$mode.log")" 'BEGIN {
        split(d, dd, " "); el = t1 - t0;
        printf "guard %-3s  %-62s\n", m, fl;
        split(fl, f, " "); n = f[3];
        printf "           gridgate CPU %.2f s (%.1f%% of one core); machine system+softirq CPU %.2f s over %.1f s = %.1f us per SYN\n",
               c / hz, 100 * c / hz / el, s / hz, el, n ? 1e6 * s / hz / n : 0;
        printf "           XDP dropped %d SYNs (rate_limited), passed %d; good client %d/%d connect+GET ok (%.1f%%)\n",
               dd[1], dd[2], ok, tot, tot ? 100 * ok / tot : 0 }'
}

echo "bench-xdp: $SYNS SYNs at <= $PPS/s from $SOURCES spoofed sources to gridgate (2 workers) across a veth pair"
run off
run on
