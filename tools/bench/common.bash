# Sourced by the tools/bench/*.sh scripts (not a bench itself: make bench runs *.sh only).

port_of() { # waits for "listening on http://H:P" in a log, prints P
    for _ in $(seq 200); do
        p=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$1" 2>/dev/null | head -1 | sed 's/.*://')
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.05
    done
    echo "no listening line in $1" >&2; cat "$1" >&2; exit 1
}

# A process's CPU in clock ticks (TCK per second): user + system, and the two apart.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_split() { awk '{print $14, $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

pin() { # pin every thread of PID to CPU, so that a proxy is not preempted by its own load generator
    for t in /proc/"$1"/task/*; do taskset -pc "$2" "${t##*/}" >/dev/null; done
}

ms() { # wrk latency like 1.23ms / 850.00us / 1.02s -> ms
    awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us/,"",v); printf "%.3f", v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v); printf "%.3f", v} else if (v ~ /s$/) {sub(/s/,"",v); printf "%.3f", v*1000} else print "?" }'
}
