#!/bin/sh
# SPDX-License-Identifier: MIT
# SOAP descriptor speed of each inner-loop copy (kqeq soap --simd portable / avx2 / avx512,
# all giving the same bits), processor time per atom, rc 3.5, n_max 8, l_max 6, species
# H,C,N,O; inputs in bench/data/ (made by bench/data/make_bench_geoms.py). The figure is
# the mean over K repeats of the whole file, first call included (it is < 1 % of the
# total here), the best of 3 runs (the machine may be shared). A copy the CPU lacks is
# printed as "-". The comparison with DScribe, measured in the same run, is
# `PARTS=soap sh bench/bench_peers.sh` (issue 14's table); this script prints no peer.
# Usage: B=build sh bench/bench_soap.sh     (K=n multiplies the repeats)
B=${B:-build}
K=${K:-1}
exe="$B/kqeq"
if [ ! -x "$exe" ]; then echo "bench_soap: $exe not built (run make)"; exit 1; fi
best() { # file repeats simd: best of 3 runs, "-" if the copy is not available
    us=
    for _ in 1 2 3; do
        u=$("$exe" soap --simd "$3" --rcut 3.5 --nmax 8 --lmax 6 --species H,C,N,O \
                --repeat "$2" "bench/data/$1" 2> /dev/null | sed -n 's/^us_per_atom //p')
        [ -n "$u" ] || { echo -; return; }
        us=$(echo "$u ${us:-$u}" | awk '{ print ($1 < $2) ? $1 : $2 }')
    done
    echo "$us"
}
echo "SOAP rc 3.5, n_max 8, l_max 6, species H,C,N,O (kqeq soap --repeat), us/atom"
printf '%-30s %10s %10s %10s\n' input portable avx2 avx512
for fk in "NMA (12 atoms):nma.xyz:2000" "25 NMA molecules (300 atoms):nma25.xyz:60" \
    "water cluster (648 atoms):water216.xyz:30"; do
    name=${fk%%:*}; rest=${fk#*:}; f=${rest%%:*}; k=$(( ${rest#*:} * K ))
    printf '%-30s %10s %10s %10s\n' "$name" "$(best "$f" "$k" portable)" \
        "$(best "$f" "$k" avx2)" "$(best "$f" "$k" avx512)"
done
