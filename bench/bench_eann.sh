#!/bin/sh
# bench_eann.sh - microseconds per NMA molecule of the four published EANN
# models (eann predict --repeat K on reference_20.xyz, median of R runs),
# beside the published PyTorch models' times measured on this machine
# (single thread): dipole 0.68 ms, each TDM 0.70 ms, polarizability 3.7 ms.
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
printf '%-14s %14s %12s %14s %9s\n' model "C median us" "C min us" "PyTorch us" speed-up
for pair in dm.txt:680 tdm_npi.txt:700 tdm_pipi.txt:700 pol.txt:3700; do
    m=${pair%%:*}
    ref=${pair#*:}
    times=""
    i=0
    while [ $i -lt "$R" ]; do
        t=$("$B/eann" predict -m "$S/$m" "$S/reference_20.xyz" --repeat "$K" | awk '/^us_per_molecule/ {print $2}')
        [ -n "$t" ] || { echo "bench_eann: eann predict failed on $m" >&2; exit 1; }
        times="$times $t"
        i=$((i + 1))
    done
    med=$(echo $times | tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    min=$(echo $times | tr ' ' '\n' | sort -g | head -n 1)
    printf '%-14s %14.1f %12.1f %14d %8.0fx\n' "$m" "$med" "$min" "$ref" "$(echo "$ref $med" | awk '{print $1 / $2}')"
done
echo "(wall-clock microseconds per molecule, median and minimum of $R runs of"
echo " 'eann predict --repeat $K' on $S/reference_20.xyz (20 frames); speed-up from"
echo " the median; on a loaded machine the minimum is the better estimate)"
