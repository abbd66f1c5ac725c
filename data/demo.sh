#!/bin/sh
# The README's main demo (`make demo`): kernel charge equilibration (kQEq)
# against classical QEq on the shipped QM9-like molecules
# (data/qm9like/{train,valid,test}.xyz: GFN2-xTB dipoles `xtb_dipole`, e*bohr,
# about the centre of mass; `charge` per frame).
#   1. train one kQEq and one QEq model, evaluate them on test molecules,
#      predict charges/dipoles/polarizabilities for a few molecules;
#   2. print a learning curve (kQEq keeps improving, QEq saturates) and
#      write it as an SVG plot.
# Kept small (a few hundred molecules, a compact SOAP) so that it runs in well
# under a minute on 2 cores; see README for the full-size settings.
set -eu
B=${B:-build}
K="$B/kqeq"
D=data/qm9like
if [ ! -x "$K" ]; then
    echo "demo: $K not found; build it first with 'make'" >&2
    exit 1
fi
for f in train valid test; do
    if [ ! -s "$D/$f.xyz" ]; then
        echo "demo: $D/$f.xyz not found" >&2
        exit 1
    fi
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kqeq_demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# first N frames of an XYZ file
first() {
    awk -v max="$2" 'left == 0 { if (nf >= max) exit; left = $1 + 2; nf++ } { print; left-- }' "$1" > "$3"
}
first "$D/train.xyz" 400 "$tmp/train.xyz"
first "$D/valid.xyz" 100 "$tmp/valid.xyz"
first "$D/test.xyz" 200 "$tmp/test.xyz"
first "$D/test.xyz" 2 "$tmp/two.xyz"

SOAP="rcut=3.5,nmax=4,lmax=3"
KEY="--dipole-key xtb_dipole --dipole-unit au"
start=$(date +%s)

echo "== kQEq: 200 training molecules, SOAP $SOAP, sigma chosen on 100 validation molecules"
first "$D/train.xyz" 200 "$tmp/train200.xyz"
"$K" train --quiet --train "$tmp/train200.xyz" --valid "$tmp/valid.xyz" $KEY \
    --soap "$SOAP" -o "$tmp/kqeq.model"
echo "-- test set:"
"$K" eval -m "$tmp/kqeq.model" "$tmp/test.xyz" $KEY

echo
echo "== classical QEq (per-element electronegativities fitted to the same molecules)"
"$K" train --quiet --model qeq --train "$tmp/train200.xyz" $KEY -o "$tmp/qeq.model"
echo "-- test set:"
"$K" eval -m "$tmp/qeq.model" "$tmp/test.xyz" $KEY

echo
echo "== kQEq prediction for two test molecules (reference xtb_dipole, prediction kqeq_dipole in au)"
"$K" predict -m "$tmp/kqeq.model" "$tmp/two.xyz" -o "$tmp/two_pred.xyz" --dipole-unit au
awk 'NF == 1 && $1 ~ /^[0-9]+$/ { getline c; s = ""; d = ""; p = "";
     if (match(c, /smiles=("[^"]*"|[^ ]*)/)) s = substr(c, RSTART + 7, RLENGTH - 7);
     if (match(c, /xtb_dipole="[^"]*"/)) d = substr(c, RSTART + 12, RLENGTH - 13);
     if (match(c, /kqeq_dipole="[^"]*"/)) p = substr(c, RSTART + 13, RLENGTH - 14);
     gsub(/"/, "", s);
     printf "  %s\n    xtb  %s\n    kQEq %s\n", s, d, p }' "$tmp/two_pred.xyz"

echo
echo "== learning curve: test MAE of |mu| over 2 random draws per size (seed 1)"
mkdir -p "$B"
ntrain=$(awk 'left == 0 { left = $1 + 2; nf++ } { left-- } END { print nf + 0 }' "$tmp/train.xyz")
sizes=""
for n in 25 50 100 200 400; do
    [ "$n" -le "$ntrain" ] && sizes="$sizes${sizes:+,}$n"
done
"$K" curve --quiet --train "$tmp/train.xyz" --valid "$tmp/valid.xyz" --test "$tmp/test.xyz" $KEY \
    --soap "$SOAP" --sizes "$sizes" --draws 2 --seed 1 -o "$B/demo_curve.svg"
echo "(plot: $B/demo_curve.svg; total $(($(date +%s) - start)) s)"
