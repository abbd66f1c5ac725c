#!/bin/sh
# SPDX-License-Identifier: MIT
# tools/reproduce.sh [--quick] [--only dft]   (or: make reproduce [QUICK=1] [ONLY=dft])
#
# Reruns every experiment of the README's accuracy tables and prints one table:
# experiment, data, level of theory, training size, seed, our result, the paper's figure,
# wall time.  Run from the repository root after `make all` (the Makefile target builds).
#
#   1. published EANN NMA models (PyTorch, ../shared/eann_nma_published) against their
#      reference outputs (build/tests/test_eann), and on our own DFT labels (eann eval);
#   2. SOAP against DScribe (build/tests/test_soap, ../shared/soap_ref);
#   3. kQEq vs QEq learning curves (kqeq curve): data/qm9like (GFN2-xTB dipoles) and the
#      PBE0/def2-SVP subset data/qm9like/pbe0 (double SOAP 1.7 + 3.5 A, as in the paper);
#   4. EANN dipole and polarizability (eann train + eval): PM7 labels (data/nma) and
#      B3LYP/cc-pVDZ labels (data/nma_b3lyp, when it has >= 20 frames), the latter from
#      random weights and fine-tuned from the shipped PM7 models (eann train --init);
#   5. EANN transition dipoles n->pi* and pi->pi* on the NWChem TDDFT labels (data/nma_tdm).
# Rows 1-2 need ../shared (or $TENSORIAL_SHARED) and say "skipped" without it.
#
# --only dft: only the rows with DFT labels, which change when the generators add chunks
# (the others are fixed data and need not be rerun): the PBE0 curve of 3, the B3LYP rows
# of 4 and row 5, each with the published models on the same test frames.  Rows 1-2, the
# GFN2-xTB curve and the PM7 rows are left out, and so are their plots in docs/.  At full
# settings about 5 minutes on the loaded 2-core machine (2026-12-05 data: 396 PBE0
# molecules, 83 B3LYP and 88 / 76 TDDFT training frames), 4 of them the PBE0 curve.
#
# Settings.  Full (default): those of the README (EANN: all training frames, up to 3000
# epochs with the default Adam schedule; kQEq on GFN2-xTB: sizes 50..1600, 2 draws, SOAP
# n 4 l 3, sparse M 2000; kQEq on PBE0: sizes 25, 50, ... up to all training molecules,
# 3 draws, double SOAP rc 1.7 + 3.5 A, n 8 l 6 as in the paper) - several hours of one core.  --quick: the same experiments on fewer
# frames and epochs (stated in the table's "train" column: frames x epochs), about
# 10 minutes on 2 idle cores; its numbers show that the pipeline runs, not the accuracy.
# Every run is seeded (--seed 1), so a rerun on the same data gives the same numbers
# (EANN and kQEq are bitwise reproducible; only the wall times change).
#
# Splits: NMA PM7 and nma_tdm as shipped (split files / `split` keys, fixed seed
# 20261121); qm9like and its PBE0 subset as shipped (seed 4242).  data/nma_b3lyp holds
# NMA test frames only, without a split key: here frames 5 and 10 of every chunk (file
# order; 2 of 10, one per temperature block) are the B3LYP test frames, the other 8 train;
# the assignment does not change when chunks are added.
#
# Output: the table on stdout (markdown) and in $OUT/table.md, logs and models in $OUT
# (default build/reproduce), parity plots and learning curves in docs/repro_*.svg.
# Exit status 1 if any experiment failed (its row says FAILED and names its log).
B=${B:-build}
OUT=${OUT:-$B/reproduce}
DOCS=${DOCS:-docs}
QUICK=0
ONLY=all
usage() { echo "usage: sh tools/reproduce.sh [--quick] [--only dft]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --only) [ "$2" = dft ] || usage; ONLY=dft; shift ;;
        *) usage ;;
    esac
    shift
done
for p in "$B/eann" "$B/kqeq" "$B/tests/test_eann" "$B/tests/test_soap"; do
    [ -x "$p" ] || { echo "reproduce: $p missing (run make all first)" >&2; exit 1; }
done
SHARED=${TENSORIAL_SHARED:-../shared}
mkdir -p "$OUT" "$DOCS" || exit 1
ROWS=$OUT/rows.tsv
: > "$ROWS"
failed=0
mode=full; [ $QUICK = 1 ] && mode=quick
# the table's first line says which rows ran, so a DFT-only table is not read as complete
[ $ONLY = dft ] && mode="$mode settings, DFT rows only" || mode="$mode settings"
echo "reproduce: $mode; logs and models in $OUT, plots in $DOCS/repro_*.svg" >&2

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f s", b - a }'; }
# row EXPERIMENT DATA LEVEL TRAIN SEED OURS PAPER TIME
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$ROWS"; }
fail() { failed=1; echo "reproduce: $1 FAILED, see $2" >&2; }
nframes() { cat "$@" 2>/dev/null | awk '/^[0-9]+$/ && !skip { n++; skip = $1 + 2 } skip { skip-- } END { print n + 0 }'; }
# eval_rmse MODEL TEST KEY SVG -> "RMSE r" of `eann eval` (all components)
eval_rmse() {
    "$B/eann" eval -m "$1" "$2" --key "$3" ${4:+--svg "$4"} > "$OUT/eval.tmp" 2>&1 || return 1
    awk '$1 == "all" { a = $2 } $1 == "r" { r = $2 } END { if (a == "") exit 1; printf "%.4g %.5f\n", a, r }' "$OUT/eval.tmp"
}

# rows 1-2 and the GFN2-xTB / PM7 rows use fixed data: --only dft leaves them out
# ---- 1. published models against their reference outputs ---------------------------
if [ $ONLY = all ]; then
    t0=$(now)
    if [ -d "$SHARED/eann_nma_published" ]; then
        if "$B/tests/test_eann" > "$OUT/test_eann.log" 2>&1; then
            for m in dm tdm_npi tdm_pipi pol; do
                v=$(awk -v f="$m.txt:" '$1 == f { print $6 }' "$OUT/test_eann.log")
                row "EANN published model ($m), our C evaluation" "eann_nma_published/reference_20.xyz (20)" \
                    "their PyTorch outputs" "-" "-" "max abs diff ${v:-?} a.u." "same model: 0 up to rounding" "$(since "$t0")"
            done
        else
            fail "test_eann" "$OUT/test_eann.log"; row "EANN published models" "-" "-" "-" "-" "FAILED ($OUT/test_eann.log)" "-" "-"
        fi
    else
        row "EANN published models" "-" "-" "-" "-" "skipped (no $SHARED)" "-" "-"
    fi

    # ---- 2. SOAP against DScribe ---------------------------------------------------
    t0=$(now)
    if [ -d "$SHARED/soap_ref" ]; then
        if "$B/tests/test_soap" > "$OUT/test_soap.log" 2>&1; then
            for rc in 3.5 2.6 1.7; do
                v=$(awk -v rc="$rc" '$1 == "rc" && $2 == rc && ($3 == "water" || $3 == "methane") { s = s (s ? " / " : "") $3 " " $5 } END { print s }' "$OUT/test_soap.log")
                row "SOAP vectors vs DScribe, rc $rc A, n 8, l 6" "soap_ref (water, methane)" "-" "-" "-" \
                    "max abs diff / max abs p: $v" "DScribe (limit 1e-7, 1e-5 at rc 1.7)" "$(since "$t0")"
            done
        else
            fail "test_soap" "$OUT/test_soap.log"; row "SOAP vs DScribe" "-" "-" "-" "-" "FAILED ($OUT/test_soap.log)" "-" "-"
        fi
    else
        row "SOAP vs DScribe" "-" "-" "-" "-" "skipped (no $SHARED)" "-" "-"
    fi
fi

# ---- 3. kQEq vs QEq learning curves ----------------------------------------------------
# curve_row NAME DATA TRAIN VALID TEST KEY LEVEL SIZES DRAWS SOAPARGS...
curve_row() {
    name=$1 data=$2 tr=$3 va=$4 te=$5 key=$6 level=$7 sizes=$8 draws=$9
    shift 9
    soapdesc="SOAP $(echo "$*" | sed 's/--soap //g; s/rcut=\([0-9.]*\)/rc \1 A/g; s/,nmax=/ n /g; s/,lmax=/ l /g; s/ rc/ + rc/g')"
    t0=$(now)
    log=$OUT/curve_$name.log
    if "$B/kqeq" curve --train "$tr" --valid "$va" --test "$te" --dipole-key "$key" --dipole-unit au \
        --sizes "$sizes" --draws "$draws" --seed 1 "$@" --sparse 2000 -o "$DOCS/repro_kqeq_curve_$name.svg" \
        > "$log" 2> "$log.err"; then
        last=$(awk '!/^#/ && NF >= 5 { s = $1; k = $2; q = $3 } END { printf "%s %s %s", s, k, q }' "$log")
        set -- $last
        row "kQEq vs QEq learning curve, $soapdesc ($name; table in $log)" \
            "$data ($(nframes "$te"))" "$level" \
            "$1 (sizes $sizes, $draws draws)" "1" "MAE kQEq $2 D, QEq $3 D" \
            "kQEq 0.15 D at 4000 (QM9 PBE0/def2-TZVP, rc 2.6/3.5); QEq saturates" "$(since "$t0")"
    else
        fail "kqeq curve $name" "$log.err"; row "kQEq vs QEq curve ($name)" "-" "$level" "-" "1" "FAILED ($log.err)" "-" "$(since "$t0")"
    fi
}
Q=data/qm9like
if [ $ONLY = all ]; then
    if [ $QUICK = 1 ]; then
        curve_row xtb "qm9like train -> test.xyz" $Q/train.xyz $Q/valid.xyz $Q/test.xyz xtb_dipole "GFN2-xTB" 50,100,200 2 --soap rcut=3.5,nmax=4,lmax=3
    else
        curve_row xtb "qm9like train -> test.xyz" $Q/train.xyz $Q/valid.xyz $Q/test.xyz xtb_dipole "GFN2-xTB" 50,100,200,400,800,1600 2 --soap rcut=3.5,nmax=4,lmax=3
    fi
fi
if ls $Q/pbe0/chunk_*.xyz > /dev/null 2>&1; then
    for s in train valid test; do sh data/select.sh split $s $Q/pbe0/chunk_*.xyz > "$OUT/pbe0_$s.xyz" || exit 1; done
    n=$(nframes "$OUT/pbe0_train.xyz")
    sizes=$(awk -v n="$n" 'BEGIN { s = ""; for (k = 25; k < n; k *= 2) s = s k ","; print s n }')
    [ $QUICK = 1 ] && d=2 || d=3
    [ $QUICK = 1 ] && soap="nmax=4,lmax=3" || soap="nmax=8,lmax=6"
    curve_row pbe0 "qm9like/pbe0 split=train -> split=test" "$OUT/pbe0_train.xyz" "$OUT/pbe0_valid.xyz" "$OUT/pbe0_test.xyz" pbe0_dipole \
        "PBE0/def2-SVP (psi4)" "$sizes" $d --soap rcut=1.7,$soap --soap rcut=3.5,$soap
fi

# plot MODEL TEST KEY SVG: parity plot; of large test sets every 5th frame only (file size)
plot() {
    if [ "$(nframes "$2")" -gt 500 ]; then
        awk '/^[0-9]+$/ && !left { i++; left = $1 + 2 } left { left--; if (i % 5 == 1) print }' "$2" > "$OUT/every5th_$(basename "$2")"
        set -- "$1" "$OUT/every5th_$(basename "$2")" "$3" "$4"
    fi
    "$B/eann" eval -m "$1" "$2" --key "$3" --svg "$4" > /dev/null 2>&1
}

# pub_row MODEL KEY TEST DATA LEVEL PAPER: a published model on our labels; also the
# least-squares scale s = sum(p.r) / sum(r.r) of its predictions p against our labels r
# (1 = same scale; the phase of a transition dipole is matched per frame)
pub_row() {
    t0=$(now)
    if res=$(eval_rmse "$SHARED/eann_nma_published/$1.txt" "$3" "$2" "") &&
       "$B/eann" predict -m "$SHARED/eann_nma_published/$1.txt" "$3" -o "$OUT/pub_$1.xyz" > /dev/null 2>&1; then
        sc=$(awk -v k="$2" '
            function vals(h, key, A,   i, s) { i = index(h, " " key "=\""); if (!i) return 0
                s = substr(h, i + length(key) + 3); return split(substr(s, 1, index(s, "\"") - 1), A, " ") }
            /^[0-9]+$/ { getline h; h = " " h; n = vals(h, k, R); m = vals(h, "eann_" (k ~ /^tdm/ ? "tdm" : k ~ /polariz/ ? "polarizability" : "dipole"), P)
                         d = 0; for (j = 1; j <= n; j++) d += P[j] * R[j]; sg = d < 0 ? -1 : 1
                         for (j = 1; j <= n; j++) { pr += sg * P[j] * R[j]; rr += R[j] * R[j] } }
            END { if (rr > 0) printf "%.3g", pr / rr }' "$OUT/pub_$1.xyz")
        set -- "$@" $res
        row "EANN published model $1.txt on our labels ($2)" "$4 ($(nframes "$3"))" "$5" "their 10000 structures" "-" \
            "RMSE $7 a.u. (r $8; scale ${sc:-?})" "$6" "$(since "$t0")"
    else
        fail "published $1 on $3" "$OUT/eval.tmp"
    fi
}

# ---- 4./5. EANN: train, then eval on the test frames -----------------------------------
# eann_row NAME TARGET KEY LEVEL DATA TEST PAPER EXTRA-ARGS -- TRAIN-FILES...
eann_row() {
    name=$1 target=$2 key=$3 level=$4 data=$5 test=$6 paper=$7 extra=$8
    shift 9
    t0=$(now)
    log=$OUT/eann_$name.log
    ntr=0; for f in "$@"; do ntr=$((ntr + $(nframes "$f"))); done
    tr=""; for f in "$@"; do tr="$tr --train $f"; done
    sp="--species O,H,C,N"; case "$extra" in *--init*) sp="" ;; esac # --init: the model's species
    # shellcheck disable=SC2086
    if "$B/eann" train $tr --target "$target" --key "$key" $sp $extra --seed 1 \
            --quiet -o "$OUT/$name.eann" > "$log" 2>&1 &&
       res=$(eval_rmse "$OUT/$name.eann" "$test" "$key" "") && plot "$OUT/$name.eann" "$test" "$key" "$DOCS/repro_eann_$name.svg"; then
        set -- $res
        mf=$(echo "$extra" | sed -n 's/.*--max-frames \([0-9]*\).*/\1/p')
        ep=$(awk '/epochs in/ { print $3; exit }' "$log")
        row "EANN $target ($key)" "$data ($(nframes "$test"))" "$level" "${mf:-$ntr} frames x ${ep:-?} epochs" "1" \
            "RMSE $1 a.u. (r $2)" "$paper" "$(since "$t0")"
    else
        fail "eann $name" "$log"; row "EANN $target ($key)" "$name" "$level" "$ntr" "1" "FAILED ($log)" "$paper" "$(since "$t0")"
    fi
}
PAPERL="B3LYP/cc-pVDZ, 10000 protein-backbone NMA structures"
N=data/nma
if [ $QUICK = 1 ]; then
    DIP="--nwave 12 --cutoff 6 --max-frames 2000 --epochs 40"
    POL="--nwave 8 --cutoff 5 --max-frames 1000 --epochs 30"
    SMALL="--valid-fraction 0.2 --nwave 12 --cutoff 6 --epochs 150 --patience 50"
    SMALLP="--valid-fraction 0.2 --nwave 8 --cutoff 5 --epochs 150 --patience 50"
    FT="--valid-fraction 0.2 --epochs 150 --patience 50"
else
    DIP="--nwave 12 --cutoff 6 --epochs 3000"
    POL="--nwave 8 --cutoff 5 --epochs 3000"
    SMALL="--valid-fraction 0.2 --nwave 12 --cutoff 6 --epochs 3000 --patience 50"
    SMALLP="--valid-fraction 0.2 --nwave 8 --cutoff 5 --epochs 3000 --patience 50"
    FT="--valid-fraction 0.2 --epochs 3000 --patience 50"
fi
if [ $ONLY = all ]; then
    # --max-frames takes the first N frames of the training files: mix the temperatures
    if [ $QUICK = 1 ]; then
        # alternate frames of the two temperatures (12 atoms + 2 lines per frame)
        awk 'NR == FNR { a[++na] = $0; next } { b[++nb] = $0 }
             END { for (i = 1; i <= na || i <= nb; i += 14) { for (j = i; j < i + 14 && j <= na; j++) print a[j]
                                                            for (j = i; j < i + 14 && j <= nb; j++) print b[j] } }' \
            $N/train_T300.xyz $N/train_T500.xyz > "$OUT/nma_train_mixed.xyz"
        PM7TR=$OUT/nma_train_mixed.xyz
    else
        PM7TR="$N/train_T300.xyz $N/train_T500.xyz"
    fi
    # shellcheck disable=SC2086
    eann_row dipole_pm7 dipole pm7_dipole "PM7 (MOPAC)" "nma train -> nma/test.xyz" $N/test.xyz "0.004 a.u. ($PAPERL)" "$DIP" -- $PM7TR
    # shellcheck disable=SC2086
    eann_row polarizability_pm7 polarizability pm7_polarizability "PM7 TDHF (MOPAC)" "nma train -> nma/test.xyz" $N/test.xyz "0.020 a.u. ($PAPERL)" "$POL" -- $PM7TR
fi

# B3LYP/cc-pVDZ (psi4): frames 5 and 10 of every chunk are the test frames
if [ "$(nframes data/nma_b3lyp/chunk_*.xyz)" -ge 20 ]; then
    for f in data/nma_b3lyp/chunk_*.xyz; do
        awk -v part=train '/^[0-9]+$/ && !left { i++; left = $1 + 2 } left { left--; t = (i % 10 == 5 || i % 10 == 0); if ((part == "test") == t) print }' "$f"
    done > "$OUT/b3lyp_train.xyz"
    for f in data/nma_b3lyp/chunk_*.xyz; do
        awk -v part=test '/^[0-9]+$/ && !left { i++; left = $1 + 2 } left { left--; t = (i % 10 == 5 || i % 10 == 0); if ((part == "test") == t) print }' "$f"
    done > "$OUT/b3lyp_test.xyz"
    eann_row dipole_b3lyp dipole dft_dipole "B3LYP/cc-pVDZ (psi4)" "nma_b3lyp, frames 5 and 10 of each chunk" "$OUT/b3lyp_test.xyz" "0.004 a.u. ($PAPERL)" "$SMALL" -- "$OUT/b3lyp_train.xyz"
    eann_row polarizability_b3lyp polarizability dft_polarizability "B3LYP/cc-pVDZ (psi4)" "nma_b3lyp, frames 5 and 10 of each chunk" "$OUT/b3lyp_test.xyz" "0.020 a.u. ($PAPERL)" "$SMALLP" -- "$OUT/b3lyp_train.xyz"
    # the same frames, fine-tuning the shipped PM7 models (eann train --init)
    eann_row dipole_b3lyp_ft dipole dft_dipole "B3LYP/cc-pVDZ (psi4), fine-tuned from models/nma_dipole_pm7.eann" "nma_b3lyp, frames 5 and 10 of each chunk" "$OUT/b3lyp_test.xyz" "0.004 a.u. ($PAPERL)" "$FT --init models/nma_dipole_pm7.eann" -- "$OUT/b3lyp_train.xyz"
    eann_row polarizability_b3lyp_ft polarizability dft_polarizability "B3LYP/cc-pVDZ (psi4), fine-tuned from models/nma_polarizability_pm7.eann" "nma_b3lyp, frames 5 and 10 of each chunk" "$OUT/b3lyp_test.xyz" "0.020 a.u. ($PAPERL)" "$FT --init models/nma_polarizability_pm7.eann" -- "$OUT/b3lyp_train.xyz"
    if [ -d "$SHARED/eann_nma_published" ]; then
        for m in dm:dft_dipole:0.004 pol:dft_polarizability:0.020; do
            pub_row "${m%%:*}" "$(echo "$m" | cut -d: -f2)" "$OUT/b3lyp_test.xyz" "nma_b3lyp test frames" \
                "B3LYP/cc-pVDZ (psi4)" "${m##*:} a.u. on their own test set"
        done
    fi
else
    row "EANN dipole / polarizability" "nma_b3lyp" "B3LYP/cc-pVDZ (psi4)" "-" "-" "skipped: fewer than 20 frames" "-" "-"
fi

# NWChem TDDFT transition dipoles: per state, the frames that carry its label
for st in npi pipi; do
    sh data/select.sh --has tdm_$st split train data/nma_tdm/chunk_*.xyz > "$OUT/tdm_${st}_train.xyz" || exit 1
    sh data/select.sh --has tdm_$st split test data/nma_tdm/chunk_*.xyz > "$OUT/tdm_${st}_test.xyz" || exit 1
done
eann_row tdm_npi_tddft tdm tdm_npi "TDDFT B3LYP/cc-pVDZ (NWChem)" "nma_tdm split=test, --has tdm_npi" "$OUT/tdm_npi_test.xyz" "0.002 a.u. ($PAPERL)" "$SMALL" -- "$OUT/tdm_npi_train.xyz"
eann_row tdm_pipi_tddft tdm tdm_pipi "TDDFT B3LYP/cc-pVDZ (NWChem)" "nma_tdm split=test, --has tdm_pipi" "$OUT/tdm_pipi_test.xyz" "'equally accurate' (no number)" "$SMALL" -- "$OUT/tdm_pipi_train.xyz"
if [ -d "$SHARED/eann_nma_published" ]; then
    pub_row tdm_npi tdm_npi "$OUT/tdm_npi_test.xyz" "nma_tdm test frames" "TDDFT B3LYP/cc-pVDZ (NWChem)" "0.002 a.u. on their own test set"
    pub_row tdm_pipi tdm_pipi "$OUT/tdm_pipi_test.xyz" "nma_tdm test frames" "TDDFT B3LYP/cc-pVDZ (NWChem)" "'equally accurate' (no number)"
fi

# ---- the table -----------------------------------------------------------------------
{
    echo "reproduce ($mode, $(date -u +%Y-%m-%d), $(uname -m)):"
    echo
    echo "| experiment | data (test frames) | level of theory | training size | seed | ours | paper | wall time |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    awk -F '\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }' "$ROWS"
} > "$OUT/table.md"
cat "$OUT/table.md"
exit $failed
