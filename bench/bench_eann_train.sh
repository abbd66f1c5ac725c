#!/bin/sh
# SPDX-License-Identifier: MIT
# Training throughput of `eann train` (molecule-gradients per second, one
# thread): dipole and polarizability targets, default network (hidden 64,64,
# nwave 8, nipsin 3, cutoff 6), a few Adam epochs on a fixed subset of NMA
# frames (the first 200 frames of the project's PM7-labelled training file,
# or the 21 B3LYP frames of ../shared/refdata/nma_b3lyp when it is absent).
# The numbers include the validation passes (10 % of the frames).
# No peer is measured (the original PyTorch EANN code is not installed).
B=${B:-build}
EANN=$B/eann
[ -x "$EANN" ] || { echo "bench_eann_train: $EANN not built"; exit 1; }
TMP=${TMPDIR:-/tmp}/bench_eann_train.$$
mkdir -p "$TMP" || exit 1
trap 'rm -rf "$TMP"' EXIT
F=
for f in data/nma/train_*.xyz; do
    [ -f "$f" ] && grep -q pm7_polarizability "$f" && { F=$f; break; }
done
if [ -n "$F" ]; then
    DK=pm7_dipole; PK=pm7_polarizability; N=200; EP=3
else
    S=${TENSORIAL_SHARED:-../shared}
    F=$S/refdata/nma_b3lyp/frames.xyz
    [ -f "$F" ] || { echo "bench_eann_train: no NMA data (data/nma or $F); skipped"; exit 0; }
    DK=dft_dipole; PK=dft_polarizability; N=21; EP=20
fi
echo "data: $F (first $N frames, $EP epochs, batch 32)"
for t in dipole:$DK polarizability:$PK; do
    target=${t%%:*}; key=${t#*:}
    line=$("$EANN" train --train "$F" --max-frames $N --target "$target" --key "$key" \
        --epochs $EP --batch 32 --seed 1 --quiet -o "$TMP/model.txt" 2>&1 | grep throughput)
    echo "$target: ${line#eann train: }"
done
