#!/bin/sh
# SPDX-License-Identifier: MIT
# SOAP descriptor speed (kqeq soap --repeat K) against DScribe's measured time.
# rc 3.5, n_max 8, l_max 6, species H,C,N,O; inputs in bench/data/ (made by
# bench/data/make_bench_geoms.py). DScribe (single thread, Python call
# included, ../shared/soap_ref/README.md): ~60 us/atom for small molecules,
# 83 us/atom for separated NMA molecules, 108 us/atom in a 648-atom water
# cluster. Our figure is processor time per atom (mean over the repeats of
# one run; the best of 3 runs is shown). K=n multiplies the repeats.
# SIMD=portable times the plain-C inner loops instead of the AVX2 copy that
# is picked by default where the CPU has it (both give the same bits).
# Usage: B=build sh bench/bench_soap.sh
B=${B:-build}
K=${K:-1}
exe="$B/kqeq"
if [ ! -x "$exe" ]; then echo "bench_soap: $exe not built (run make)"; exit 1; fi
run() { # name file repeats dscribe_us; best of 3 runs (the machine may be shared)
    us=
    for _ in 1 2 3; do
        u=$("$exe" soap ${SIMD:+--simd "$SIMD"} --rcut 3.5 --nmax 8 --lmax 6 --species H,C,N,O \
                --repeat "$3" "bench/data/$2" |
            sed -n 's/^us_per_atom //p')
        if [ -z "$u" ]; then echo "bench_soap: $1 failed"; return 1; fi
        us=$(echo "$u ${us:-$u}" | awk '{ print ($1 < $2) ? $1 : $2 }')
    done
    awk -v n="$1" -v us="$us" -v ds="$4" \
        'BEGIN { printf "%-34s %8.2f us/atom  DScribe ~%d us/atom  speed-up %.1f x\n", n, us, ds, ds / us }'
}
echo "SOAP rc 3.5, n_max 8, l_max 6, species H,C,N,O (kqeq soap --repeat${SIMD:+, --simd $SIMD})"
run "NMA (12 atoms)" nma.xyz $((2000 * K)) 60
run "25 NMA molecules (300 atoms)" nma25.xyz $((60 * K)) 83
run "water cluster (648 atoms)" water216.xyz $((30 * K)) 108
