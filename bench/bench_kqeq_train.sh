#!/bin/sh
# SPDX-License-Identifier: MIT
# Wall time and peak memory of sparse kQEq training (single thread: the code
# has no threads) on the first 1000, 2000 and 4000 molecules of
# data/qm9like/train.xyz (fewer if the file has fewer; the script says so).
# Measured with /usr/bin/time -v when it exists (wall, user+system CPU
# seconds, maximum RSS), else with `kqeq train --stats` (wall, VmHWM from
# /proc/self/status). On a shared machine CPU seconds are the fairer number.
#
# Settings (environment overrides):
#   KQEQ_BENCH_SIZES  "1000 2000 4000"
#   KQEQ_BENCH_SOAP   rcut=3.5,nmax=8,lmax=6   (the paper's single SOAP)
#   KQEQ_BENCH_M      1000                     (representative atoms, FPS)
#   KQEQ_BENCH_REG    1e-3                     (one sigma: no validation step)
#   KQEQ_BENCH_DATA   data/qm9like/train.xyz
# Peer: none measured here (the reference implementation is Python/numpy);
# the expected cost is O(N M L) for the kernel (N atoms, L SOAP length) and
# memory N L + N M doubles, which the table lets you check.
set -eu
B=${B:-build}
K="$B/kqeq"
DATA=${KQEQ_BENCH_DATA:-data/qm9like/train.xyz}
SIZES=${KQEQ_BENCH_SIZES:-"1000 2000 4000"}
SOAP=${KQEQ_BENCH_SOAP:-rcut=3.5,nmax=8,lmax=6}
M=${KQEQ_BENCH_M:-1000}
REG=${KQEQ_BENCH_REG:-1e-3}
if [ ! -x "$K" ]; then echo "bench_kqeq_train: $K not built (run make)" >&2; exit 1; fi
if [ ! -s "$DATA" ]; then echo "bench_kqeq_train: $DATA not found; skipped"; exit 0; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kqeq_bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

have=$(awk 'left == 0 { left = $1 + 2; nf++ } { left-- } END { print nf + 0 }' "$DATA")
echo "kQEq sparse training, single thread: SOAP $SOAP, M = $M (farthest point sampling), sigma $REG"
echo "data: $DATA ($have molecules)"
printf "%10s %10s %10s %10s %12s\n" molecules atoms wall_s cpu_s peak_rss_MB
for n in $SIZES; do
    use=$n
    if [ "$n" -gt "$have" ]; then
        use=$have
        echo "(only $have molecules available: using $have instead of $n)"
    fi
    awk -v max="$use" 'left == 0 { if (nf >= max) exit; left = $1 + 2; nf++ } { print; left-- }' \
        "$DATA" > "$tmp/train.xyz"
    atoms=$(awk 'left == 0 { left = $1 + 2; na += $1 } { left-- } END { print na + 0 }' "$tmp/train.xyz")
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v "$K" train --quiet --train "$tmp/train.xyz" --dipole-key xtb_dipole \
            --dipole-unit au --soap "$SOAP" --sparse "$M" --reg "$REG" -o "$tmp/model" \
            > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
        wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/err" |
            awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s }')
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/err" |
            awk '{ printf "%.0f", $1 / 1024 }')
        cpu=$(awk -F': ' '/User time \(seconds\)/ { u = $2 } /System time \(seconds\)/ { s = $2 }
            END { printf "%.1f", u + s }' "$tmp/err")
    else
        "$K" train --quiet --stats --train "$tmp/train.xyz" --dipole-key xtb_dipole \
            --dipole-unit au --soap "$SOAP" --sparse "$M" --reg "$REG" -o "$tmp/model" \
            > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
        wall=$(sed -n 's/.*wall_s \([0-9.]*\).*/\1/p' "$tmp/err")
        cpu="-"
        rss=$(sed -n 's/.*peak_rss_MB \([0-9.]*\).*/\1/p' "$tmp/err")
    fi
    printf "%10s %10s %10s %10s %12s\n" "$use" "$atoms" "$wall" "$cpu" "$rss"
done
