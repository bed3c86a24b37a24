#!/bin/bash
# Writes small seeds for the btf_dump fuzz target: the BTF of the ABI structs alone (2.4 KB, against 26 KB for a
# whole gridgate object), then one type and a value of that type, patterned bytes so that names and counters are
# neither empty nor zero. Small inputs keep the decoder, not libbpf's BTF checks, the hot part of each run.
# Usage: tests/fuzz/btf_dump_seeds.sh [OUTDIR]   (default tests/fuzz/corpus/btf_dump)
set -euo pipefail
out=${1:-tests/fuzz/corpus/btf_dump}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
types="meta backend model_key model tenant_key tenant flow end stat_val"
{
    echo '#include <linux/types.h>'
    echo '#include "gridgate/bpf_abi.h"'
    for t in $types; do echo "struct gg_bpf_$t v_$t;"; done
} >"$work/abi.c"
clang -g -O2 -target bpf -Iinclude -I/usr/include/"$(uname -m)"-linux-gnu -c "$work/abi.c" -o "$work/abi.o"
llvm-objcopy --dump-section .BTF="$work/abi.btf" "$work/abi.o" /dev/null
bpftool btf dump file "$work/abi.o" >"$work/types"
for t in $types; do
    line=$(grep -E "^\[[0-9]+\] STRUCT 'gg_bpf_$t' " "$work/types")
    id=$(sed -E 's/^\[([0-9]+)\].*/\1/' <<<"$line")
    size=$(sed -E 's/.* size=([0-9]+) .*/\1/' <<<"$line")
    python3 - "$work/abi.btf" "$id" "$size" "$out/abi-$t" <<'PY'
import sys
btf = open(sys.argv[1], "rb").read()
type_id, size = int(sys.argv[2]), int(sys.argv[3])
# the harness picks type 1 + byte % (count - 1): byte = id - 1 picks this one
value = bytes((i * 37 + 11) % 128 for i in range(size))
open(sys.argv[4], "wb").write(len(btf).to_bytes(2, "little") + btf + bytes([type_id - 1]) + value)
PY
done
ls -l "$out"/abi-*
