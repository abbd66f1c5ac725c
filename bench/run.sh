#!/bin/sh
# SPDX-License-Identifier: MIT
# `make bench`: issue 14's speed table, every figure against its peer measured in the
# same run (bench/bench_peers.sh; QUICK=1 for a ~3 minute subset).
# BENCH_ALL=1 also runs the older single-sided benchmarks (build/bench/bench_* programs,
# bench/bench_soap.sh, bench_eann*.sh, bench_kqeq_train.sh): they print our own times
# beside recorded peer numbers, not peers measured in the same run, so they are not
# part of the default run (and would take it well past 20 minutes).
B=${B:-build}
echo "== bench/bench_peers.sh"
B="$B" sh bench/bench_peers.sh || exit 1
[ "${BENCH_ALL:-0}" = 1 ] || exit 0
for b in "$B"/bench/bench_* bench/bench_*.sh; do
    [ -e "$b" ] || continue
    case "$b" in */bench_peers.sh) continue ;; esac
    echo "== $b"
    case "$b" in *.sh) B="$B" sh "$b" ;; *) "$b" ;; esac
done
