#!/bin/sh
# SPDX-License-Identifier: MIT
# bench_eann.sh - microseconds per NMA molecule of the four published EANN
# models (eann predict --repeat K on reference_20.xyz, median of R runs), with
# the AVX2/AVX-512 copy of the inner loops and with the portable copy.
# Ours only: the ratio against PyTorch/TorchScript, measured in the same run,
# is printed by `PARTS=eann_infer sh bench/bench_peers.sh` (part of make bench);
# recorded peer numbers go stale with the machine and the peer's version.
# Skips with a message if ../shared (or $TENSORIAL_SHARED) is absent.
B=${B:-build}
S=${TENSORIAL_SHARED:-../shared}/eann_nma_published
K=${K:-200}      # evaluations of each of the 20 frames per run
R=${R:-7}        # runs; the median is reported
if [ ! -f "$S/reference_20.xyz" ]; then
    echo "bench_eann: SKIP ($S not found: published NMA models absent)"
    exit 0
fi
if [ ! -x "$B/eann" ]; then
    echo "bench_eann: $B/eann not built (run make)" >&2
    exit 1
fi
# median of R runs of one model with one copy of the inner loops
median_us() { # model simd
    times=""
    i=0
    while [ $i -lt "$R" ]; do
        t=$("$B/eann" predict -m "$S/$1" "$S/reference_20.xyz" --repeat "$K" --simd "$2" | awk '/^us_per_molecule/ {print $2}')
        [ -n "$t" ] || { echo "bench_eann: eann predict --simd $2 failed on $1" >&2; exit 1; }
        times="$times $t"
        i=$((i + 1))
    done
    echo $times | tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {printf "%s %s\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, a[1]}'
}
printf '%-14s %12s %10s %14s\n' model "C median us" "C min us" "portable us"
for m in dm.txt tdm_npi.txt tdm_pipi.txt pol.txt; do
    set -- $(median_us "$m" auto)
    med=$1 min=$2
    set -- $(median_us "$m" portable)
    port=$1
    printf '%-14s %12.1f %10.1f %14.1f\n' "$m" "$med" "$min" "$port"
done
echo "(wall-clock microseconds per molecule, median and minimum of $R runs of"
echo " 'eann predict --repeat $K' on $S/reference_20.xyz (20 frames), single thread;"
echo " 'C' uses the AVX2/AVX-512 copy of the inner loops where the CPU has it, 'portable' the"
echo " baseline copy (same bits); on a loaded machine the minimum is the better"
echo " estimate. Against PyTorch, measured now: PARTS=eann_infer sh bench/bench_peers.sh)"
