#!/bin/sh
# Runs every benchmark: build/bench/bench_* programs and bench/bench_*.sh scripts.
# Each prints its own measurements and the ratio against its measured peer.
B=${B:-build}
for b in "$B"/bench/bench_* bench/bench_*.sh; do
    [ -e "$b" ] || continue
    echo "== $b"
    case "$b" in *.sh) B="$B" sh "$b" ;; *) "$b" ;; esac
done
