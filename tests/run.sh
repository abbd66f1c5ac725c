#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs every test program (build/tests/test_*) and every tests/test_*.sh from the
# repository root, sums their "NAME: N passed, N failed[, N skipped]" lines and
# prints one closing line. Exit status is non-zero if anything failed or crashed.
B=${B:-build}
pass=0; fail=0; skip=0; bad=0
out=$(mktemp); trap 'rm -f "$out"' EXIT
for t in "$B"/tests/test_* tests/test_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.sh) cmd="sh $t" ;; *) cmd="$t" ;; esac
    B="$B" $cmd > "$out" 2>&1
    rc=$?
    cat "$out"
    line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "ERROR: $t exited $rc without a result line"; bad=$((bad + 1)); continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "ERROR: $t exited $rc"; bad=$((bad + 1)); fi
done
fail=$((fail + bad))
if [ "$skip" -gt 0 ]; then echo "total: $pass passed, $fail failed, $skip skipped"
else echo "total: $pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
