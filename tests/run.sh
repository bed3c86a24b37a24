#!/bin/bash
# Runs the unit test binaries given as arguments, then every node test file, and prints one closing
# line 'N passed, N failed' over both. GG_ONLY=unit|integration narrows it; TESTS names node files.
set -u
cd "$(dirname "$0")/.."
passed=0 failed=0 failures=()

if [ "${GG_ONLY:-}" != integration ]; then
    for t in "$@"; do
        out=$("$t" 2>&1); rc=$?
        line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
        p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
        if [ -z "$line" ] || [ $rc -ne 0 ]; then
            printf '%s\n' "$out" | tail -30
            echo "FAIL $t (exit $rc)"
            failed=$((failed + ${f:-1})); passed=$((passed + ${p:-0})); failures+=("$t")
        else
            echo "ok   $t: $line"
            passed=$((passed + p))
        fi
    done
fi

if [ "${GG_ONLY:-}" != unit ]; then
    files=${TESTS:-$(ls tests/integration/*.test.mjs tests/clients/*.test.mjs 2>/dev/null)}
    if [ -n "$files" ]; then
        log=$(mktemp)
        # One file at a time keeps port use and CPU load predictable on a 2-core machine.
        node --test --test-concurrency=1 --test-reporter=spec $files 2>&1 | tee "$log"
        p=$(grep -E '^ℹ pass [0-9]+' "$log" | awk '{print $3}' | tail -1)
        f=$(grep -E '^ℹ fail [0-9]+' "$log" | awk '{print $3}' | tail -1)
        [ -z "$p" ] && { echo "node test runner printed no totals"; f=${f:-1}; failures+=("node"); }
        passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
        [ "${f:-0}" != 0 ] && failures+=("node tests")
        rm -f "$log"
    fi
fi

[ ${#failures[@]} -gt 0 ] && echo "failing: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
