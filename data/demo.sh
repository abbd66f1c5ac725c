#!/bin/sh
# SPDX-License-Identifier: MIT
# The README's main demo (`make demo`): kernel charge equilibration (kQEq)
# against classical QEq on the shipped QM9-like molecules
# (data/qm9like/{train,valid,test}.xyz: GFN2-xTB dipoles `xtb_dipole`, e*bohr,
# about the centre of mass; `charge` per frame).
#   1. train one kQEq and one QEq model on 200 molecules, evaluate both on 200
#      test molecules;
#   2. predict charges, dipoles and polarizabilities of a neutral and a
#      charged test molecule with both models;
#   3. print a learning curve (kQEq keeps improving, QEq saturates) and write
#      it as an SVG plot (build/demo_curve.svg).
# Kept small (a few hundred molecules, a compact SOAP) so that it needs about
# 30 s of processor time; see README for the full-size settings. Numbers are
# printed with 4-5 significant digits; the work files live in a temporary
# folder that is removed at the end (its name is never printed).
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
root=$(pwd)
case "$K" in /*) ;; *) K="$root/$K" ;; esac
case "$B" in /*) OUTDIR="$B" ;; *) OUTDIR="$root/$B" ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kqeq_demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# first N frames of an XYZ file
first() {
    awk -v max="$2" 'left == 0 { if (nf >= max) exit; left = $1 + 2; nf++ } { print; left-- }' "$1" > "$3"
}
# frame number I (0-based) of an XYZ file
frame() {
    awk -v want="$2" 'left == 0 { left = $1 + 2; nf++ } { if (nf - 1 == want) print; left-- }' "$1" > "$3"
}
first "$D/train.xyz" 400 "$tmp/train.xyz"
first "$D/train.xyz" 200 "$tmp/train200.xyz"
first "$D/valid.xyz" 100 "$tmp/valid.xyz"
first "$D/test.xyz" 200 "$tmp/test.xyz"
# a neutral molecule (the first test molecule) and the first charged one
frame "$D/test.xyz" 0 "$tmp/mol.xyz"
ic=$(awk 'NF == 1 && $1 ~ /^[0-9]+$/ && left == 0 { left = $1 + 2; getline c; left--;
          if (c !~ /charge=0( |$)/) { print nf; exit } nf++ } { left-- }' "$tmp/test.xyz")
frame "$D/test.xyz" "${ic:-1}" "$tmp/charged.xyz"
cat "$tmp/charged.xyz" >> "$tmp/mol.xyz"

cd "$tmp"    # from here on, file names are relative: nothing temporary is printed
SOAP="rcut=3.5,nmax=4,lmax=3"
KEY="--dipole-key xtb_dipole --dipole-unit au"
start=$(date +%s)

# `kqeq eval` prints "molecules N / MAE_debye X / RRMSE_percent Y"
evaluate() {
    "$K" eval -m "$1" test.xyz $KEY | awk -v name="$2" '
        $1 == "molecules" { n = $2 } $1 == "MAE_debye" { mae = $2 } $1 == "RRMSE_percent" { rr = $2 }
        END { printf "  %-6s %5d molecules   MAE of |mu| %.4f D   RRMSE %.2f %%\n", name, n, mae, rr }'
}

echo "== 1. kQEq and classical QEq, trained on the same 200 molecules"
echo "   (kQEq: SOAP $SOAP, regularisation sigma chosen on 100 validation molecules;"
echo "    QEq: one electronegativity per element, hardness 0)"
"$K" train --quiet --train train200.xyz --valid valid.xyz $KEY --soap "$SOAP" -o kqeq.model
"$K" train --quiet --model qeq --train train200.xyz $KEY -o qeq.model
echo "-- test set (MAE: mean absolute error of the dipole's length; RRMSE: relative"
echo "   root-mean-square error of the dipole vector, specs/kqeq.md):"
evaluate kqeq.model kQEq
evaluate qeq.model QEq

echo
echo "== 2. Predictions for two test molecules (kqeq predict)"
"$K" predict -m kqeq.model mol.xyz -o mol_kqeq.xyz --dipole-unit au
"$K" predict -m qeq.model mol.xyz -o mol_qeq.xyz --dipole-unit au
# One report per molecule from the two prediction files (frame by frame):
# the reference dipole (xtb_dipole), each model's dipole (the 3-number key
# with 'dipole' in its name that predict added), its |mu| in debye
# (1 e*bohr = 2.541746473 D), the per-atom charges (the per-atom column with
# 'charge' in its name) and kQEq's polarizability (the 9-number key).
awk -v D=2.541746473 '
function val(line, key,   s) {
    line = " " line
    if (!match(line, " " key "=(\"[^\"]*\"|[^ ]*)")) return ""
    s = substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2); gsub(/"/, "", s); return s
}
function keyof(line, pat, skip,   rest, k) {    # first key matching pat (not skip)
    rest = line
    while (match(rest, /[A-Za-z_][A-Za-z0-9_]*=/)) {
        k = substr(rest, RSTART, RLENGTH - 1); rest = substr(rest, RSTART + RLENGTH)
        if (k ~ pat && k != skip) return k
    }
    return ""
}
function chargecol(line,   p, n, i, col, f) {    # column of the per-atom charge
    p = val(line, "Properties"); n = split(p, f, ":"); col = 0
    for (i = 1; i <= n; i += 3) { if (f[i] ~ /charge/) return col + 1; col += f[i + 2] }
    return 0
}
function vec(s, fmt,   v, n, i, o) { n = split(s, v, " "); o = ""; for (i = 1; i <= n; i++) o = o sprintf(fmt, v[i]); return o }
function norm(s,   v) { split(s, v, " "); return sqrt(v[1] * v[1] + v[2] * v[2] + v[3] * v[3]) }
FNR == 1 { file++; fr = 0 }
left == 0 && NF == 1 && $1 ~ /^[0-9]+$/ {
    n[fr] = $1; getline c; left = $1
    if (file == 1) {
        smiles[fr] = val(c, "smiles"); q[fr] = val(c, "charge"); ref[fr] = val(c, "xtb_dipole")
        k = keyof(c, "dipole", "xtb_dipole"); kmu[fr] = val(c, k)
        k = keyof(c, "polarizability", ""); kal[fr] = val(c, k); kcol[fr] = chargecol(c)
    } else {
        k = keyof(c, "dipole", "xtb_dipole"); qmu[fr] = val(c, k); qcol[fr] = chargecol(c)
    }
    a = 0; fr++; next
}
left > 0 {
    f = fr - 1; a++
    if (file == 1) { el[f, a] = $1; kq[f, a] = $(kcol[f]) } else qq[f, a] = $(qcol[f])
    left--
}
END {
    for (f = 0; f < fr; f++) {
        printf "\n-- %s (total charge %s e, %d atoms)\n", smiles[f], q[f], n[f]
        printf "   dipole about the centre of mass, e*bohr:      x          y          z      |mu| (D)\n"
        printf "     GFN2-xTB (reference)              %s %9.4g\n", vec(ref[f], "%11.4g"), norm(ref[f]) * D
        printf "     kQEq                              %s %9.4g\n", vec(kmu[f], "%11.4g"), norm(kmu[f]) * D
        printf "     QEq                               %s %9.4g\n", vec(qmu[f], "%11.4g"), norm(qmu[f]) * D
        printf "   atomic charges (e):   atom      kQEq       QEq\n"
        sk = 0; sq = 0
        for (a = 1; a <= n[f]; a++) {
            printf "                       %3d %-2s %9.4f %9.4f\n", a, el[f, a], kq[f, a], qq[f, a]
            sk += kq[f, a]; sq += qq[f, a]
        }
        sk = sprintf("%9.4f", sk); sq = sprintf("%9.4f", sq)     # no "-0.0000"
        sub(/-0\.0000$/, " 0.0000", sk); sub(/-0\.0000$/, " 0.0000", sq)
        printf "                       sum    %s %s\n", sk, sq
        printf "   kQEq polarizability (bohr^3; charge flow between atoms only, R A R^T):\n"
        split(kal[f], m, " ")
        for (r = 0; r < 3; r++) printf "     %11.5g %11.5g %11.5g\n", m[3 * r + 1], m[3 * r + 2], m[3 * r + 3]
    }
}' mol_kqeq.xyz mol_qeq.xyz

echo
echo "== 3. Learning curve: test MAE of |mu| over 2 random draws per size (seed 1)"
echo "   columns: size = training molecules; kQEq_MAE_D / QEq_MAE_D = mean +- spread"
echo "   over the draws (debye); *_RRMSE_% = relative RMSE of the dipole vectors;"
echo "   sigma_last = kQEq's regularisation chosen on the validation set (last draw)"
mkdir -p "$OUTDIR"
ntrain=$(awk 'left == 0 { left = $1 + 2; nf++ } { left-- } END { print nf + 0 }' train.xyz)
sizes=""
for n in 25 50 100 200 400; do
    [ "$n" -le "$ntrain" ] && sizes="$sizes${sizes:+,}$n"
done
"$K" curve --quiet --train train.xyz --valid valid.xyz --test test.xyz $KEY \
    --soap "$SOAP" --sizes "$sizes" --draws 2 --seed 1 -o "$OUTDIR/demo_curve.svg" | grep -v '^# kqeq curve:'
echo "(plot: $B/demo_curve.svg; $(($(date +%s) - start)) s)"
