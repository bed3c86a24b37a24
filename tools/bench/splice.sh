#!/bin/bash
# make bench-splice: userspace relay vs sockmap splice of gridgate's tunnel (dataplane/tunnel.c) in one run:
# CPU-us per 100-byte chunk for BENCH_STREAMS streams at BENCH_RATE events/s, and per MB of bulk (see splice.c).
# Needs root for the spliced half. Not a test: numbers only.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${GG_BUILD:-build}
mkdir -p "$B/bench"
# Built directly with plain -O2: build/ may hold a sanitizer build at any moment.
make --no-print-directory -s B="$B" "$B/gridgate.skel.h" "$B/ingress.skel.h"
${CC:-gcc} -O2 -g -std=gnu11 -DH2O_USE_LIBUV=0 -D_GNU_SOURCE -Iinclude -I"$B" -o "$B/bench/splice" \
    tools/bench/splice.c dataplane/tunnel.c control/bpf.c control/guard.c control/backends.c control/metrics.c common/*.c \
    -lh2o-evloop -lssl -lcrypto -lz -ljansson -lbpf -lelf -lpthread -lm
"$B/bench/splice" "${BENCH_STREAMS:-500}" "${BENCH_RATE:-50}" "${BENCH_SECONDS:-5}" "${BENCH_BULK_MB:-1024}"
