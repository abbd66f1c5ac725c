#!/bin/sh
# SPDX-License-Identifier: MIT
# Regenerates data/COUNTS and data/SHA256SUMS for the shipped data files.
# Run from the repository root:  sh data/make/finalize.sh
# COUNTS: one line per shipped extended-XYZ file: "path frames key,key,..." (paths relative
# to data/); tests/test_data.sh checks every file against it and against SHA256SUMS.
set -e
cd data
tmp=COUNTS.tmp.$$
: > "$tmp"
add() { # file keys
    [ -f "$1" ] || return 0
    n=$(awk 'BEGIN{n=0} { if (skip > 0) { skip--; next } n++; skip = $1 + 1 } END{print n}' "$1")
    echo "$1 $n $2" >> "$tmp"
}
Q=id,smiles,charge,xtb_dipole,xtb_energy,xtb_gap
for f in qm9like/train.xyz qm9like/valid.xyz qm9like/test.xyz; do add "$f" "$Q"; done
for f in qm9like/pbe0/chunk_*.xyz; do add "$f" "$Q,split,pbe0_dipole,psi4_seconds"; done
for f in nma/train_T300.xyz nma/train_T500.xyz nma/test.xyz; do
    add "$f" md_temp,md_frame,pm7_dipole,pm7_polarizability
done
for f in nma_b3lyp/chunk_*.xyz; do
    add "$f" md_temp,md_frame,dft_dipole,dft_polarizability,psi4_seconds
done
# nma_tdm: a frame carries the keys of a state only if that state was identified (issue 17),
# so a chunk lists the keys of a state only when every one of its frames has them.
for f in nma_tdm/chunk_*.xyz; do
    [ -f "$f" ] || continue
    k=md_temp,md_frame,split
    st=$(awk '
        { if (skip > 0) { skip--; next } }
        /^[0-9]+$/ { skip = $1; getline h; if (index(h " ", " tdm_npi=") == 0) n = 1
                     if (index(h " ", " tdm_pipi=") == 0) p = 1 }
        END { print (n ? "" : " npi") (p ? "" : " pipi") }' "$f")
    for q in tdm_ exc_ osc_ root_; do
        for s in $st; do
            if [ "$q" = exc_ ]; then k="$k,exc_${s}_ev"; else k="$k,$q$s"; fi
        done
    done
    add "$f" "$k,exc_all_ev,osc_all,perp_all,nwchem_seconds"
done
mv "$tmp" COUNTS
awk '{print $1}' COUNTS | xargs sha256sum > SHA256SUMS.tmp.$$
sha256sum qm9like/candidates.tsv >> SHA256SUMS.tmp.$$
for f in nma_tdm/chunk_*.excluded.tsv nma_tdm/chunk_*.ambiguous.tsv; do
    if [ -f "$f" ]; then sha256sum "$f" >> SHA256SUMS.tmp.$$; fi
done
# data/nma_ir (issue 15; data/nma_ir/README.md): a gzipped trajectory, labels, a model
for f in nma_ir/nma_nve_300K.xyz.gz nma_ir/nma_xtb_dipoles.tsv nma_ir/nma_xtb_dipole.eann \
         nma_ir/nma_ohess_vibspectrum; do
    if [ -f "$f" ]; then sha256sum "$f" >> SHA256SUMS.tmp.$$; fi
done
mv SHA256SUMS.tmp.$$ SHA256SUMS
cat COUNTS
