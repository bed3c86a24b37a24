#!/bin/bash
# make bench-splice: userspace relay vs sockmap splice in one run, for gridgate's tunnel (dataplane/tunnel.c):
# CPU-us per 100-byte chunk for BENCH_STREAMS streams at BENCH_RATE events/s, and per MB of bulk (see splice.c).
# Needs root for the spliced half. Not a test: numbers only.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${GG_BUILD:-build}
mkdir -p "$B/bench"
# Built directly with plain -O2: build/ may hold a sanitizer build at any moment.
make --no-print-directory -s B="$B" "$B/gridgate.skel.h" "$B/ingress.skel.h"
# All of gridgate but its main(), as the Makefile's GATEWAY_SRC: control/bpf.c reaches into the tenants and beyond.
src=$(ls common/*.c control/*.c control/adapters/*.c dataplane/*.c | grep -v '^control/main\.c$')
# shellcheck disable=SC2086
${CC:-gcc} -O2 -g -std=gnu11 -DH2O_USE_LIBUV=0 -D_GNU_SOURCE -I. -Iinclude -I"$B" -o "$B/bench/splice" \
    tools/bench/splice.c $src -lh2o-evloop -lssl -lcrypto -lz -ljansson -lbpf -lelf -lpthread -lm
"$B/bench/splice" "${BENCH_STREAMS:-500}" "${BENCH_RATE:-50}" "${BENCH_SECONDS:-5}" "${BENCH_BULK_MB:-1024}" "${BENCH_ROUNDS:-3}"
# SSE arm: a real gridgate, userspace relay vs spliced SSE responses (bpf.splice_streams), side by side.
make --no-print-directory -s B="$B" "$B/gridgate"
GG_BUILD="$B" node tools/bench/splice_sse.mjs
