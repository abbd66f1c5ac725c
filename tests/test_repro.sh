#!/bin/sh
# SPDX-License-Identifier: MIT
# test_repro.sh - bitwise reproducibility across compilers and optimisation
# levels (HACKING.md: "same bits at -O0 and -O2, gcc and clang").
#
# Builds the two programs with gcc -O0 and -O2 (and clang -O0 and -O2 when
# clang is installed) into $B/repro-CC-OPT, runs the same fixed pipeline with
# each build and with the programs of $B itself, and compares every output
# file byte for byte (cmp) with the first (gcc -O2) one. The pipeline (inputs in
# tests/repro/, see its README.md):
#   kqeq soap, kqeq qeq                  on 8 QM9-like molecules
#   kqeq train (kQEq, full form, sigma chosen on a validation set; kQEq sparse;
#   QEq with fitted eta) on 24 molecules, kqeq predict + eval with each model
#   eann train dipole (Adam), tdm (L-BFGS, phase-free loss), polarizability
#   (labels = the kQEq polarizabilities predicted above), eann predict + eval
#   with each, eann predict + check with the hand-written tests/repro/eann_tiny.txt
# Timing lines (stderr) are not compared; every compared file holds numbers
# printed with %.17g (or fixed-format summaries of them). Then the pipeline
# once more with glibc made to pick its plain libm variants (GLIBC_TUNABLES):
# the SOAP, QEq and kQEq outputs must be the same bytes (EANN's are listed).
#
# Usage: B=build sh tests/test_repro.sh   (from the repository root)
# Prints "test_repro: N passed, N failed[, N skipped]".
B=${B:-build}
R=tests/repro
pass=0; fail=0; skip=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# Builds: "NAME CC OPT"; the reference is the first one (gcc -O2).
configs=""
for cc in gcc clang; do
    if command -v $cc > /dev/null 2>&1; then
        configs="$configs$cc-O2 $cc -O2
$cc-O0 $cc -O0
"
    else
        echo "SKIP: $cc not found, no $cc builds"; skip=$((skip + 1))
    fi
done

# run_pipeline BINDIR OUTDIR: the fixed pipeline; returns non-zero (and
# prints the failing step) if a step fails.
run_pipeline() {
    k=$1/kqeq; e=$1/eann; o=$2
    mkdir -p "$o"
    tr=$R/qm9like_train24.xyz; te=$R/qm9like_test8.xyz
    step() { # step NAME CMD... (stdout to $o/NAME.out, stderr to $o/NAME.err)
        n=$1; shift
        if ! "$@" > "$o/$n.out" 2> "$o/$n.err"; then
            echo "FAIL: $o: step $n failed: $(head -n 1 "$o/$n.err")"; return 1
        fi
        rm -f "$o/$n.err"
    }
    step soap "$k" soap --rcut 3.5 --nmax 3 --lmax 2 --species H,C,N,O,F "$te" &&
    step qeq "$k" qeq "$te" &&
    step ktrain "$k" train --train "$tr" --valid "$te" --dipole-key xtb_dipole \
        --soap rcut=3,nmax=3,lmax=2 --soap rcut=4,nmax=2,lmax=1,weight=0.5 \
        --species H,C,N,O,F --reg 1e-5,1e-4,1e-3 --quiet -o "$o/kqeq.model" &&
    step ksparse "$k" train --train "$tr" --dipole-key xtb_dipole --sparse 40 \
        --soap rcut=3,nmax=3,lmax=2 --species H,C,N,O,F --quiet -o "$o/kqeq_sparse.model" &&
    step qtrain "$k" train --model qeq --fit-eta --train "$tr" --dipole-key xtb_dipole \
        --species H,C,N,O,F --quiet -o "$o/qeq.model" &&
    step kpred "$k" predict -m "$o/kqeq.model" "$te" -o "$o/kqeq_pred.xyz" &&
    step kpred_tr "$k" predict -m "$o/kqeq.model" "$tr" -o "$o/kqeq_pred_train.xyz" &&
    step kspred "$k" predict -m "$o/kqeq_sparse.model" "$te" -o "$o/kqeq_sparse_pred.xyz" &&
    step qpred "$k" predict -m "$o/qeq.model" "$te" -o "$o/qeq_pred.xyz" &&
    step keval "$k" eval -m "$o/kqeq.model" "$te" --dipole-key xtb_dipole &&
    step qeval "$k" eval -m "$o/qeq.model" "$te" --dipole-key xtb_dipole &&
    step etrain "$e" train --train "$tr" --valid "$te" --target dipole --key xtb_dipole \
        --species H,C,N,O,F --nwave 4 --nipsin 3 --hidden 8,6 --epochs 8 --batch 8 \
        --charge-weight 0.1 --quiet -o "$o/eann_dipole.model" &&
    step etdm "$e" train --train "$tr" --target tdm --key xtb_dipole --species H,C,N,O,F \
        --nwave 3 --nipsin 2 --hidden 5 --epochs 6 --optimizer lbfgs --train-radial \
        --quiet -o "$o/eann_tdm.model" &&
    step epol "$e" train --train "$o/kqeq_pred_train.xyz" --target polarizability \
        --key kqeq_polarizability --species H,C,N,O,F --nwave 3 --nipsin 3 --hidden 4 \
        --epochs 4 --batch 6 --quiet -o "$o/eann_pol.model" &&
    step epred "$e" predict -m "$o/eann_dipole.model" "$te" -o "$o/eann_dipole_pred.xyz" &&
    step etdmpred "$e" predict -m "$o/eann_tdm.model" "$te" -o "$o/eann_tdm_pred.xyz" &&
    step epolpred "$e" predict -m "$o/eann_pol.model" "$te" -o "$o/eann_pol_pred.xyz" &&
    step eeval "$e" eval -m "$o/eann_dipole.model" "$te" --key xtb_dipole &&
    step etdmeval "$e" eval -m "$o/eann_tdm.model" "$te" --key xtb_dipole &&
    step etiny "$e" predict -m "$R/eann_tiny.txt" "$R/water_labelled.xyz" -o "$o/eann_tiny_pred.xyz" &&
    step echeck "$e" check -m "$R/eann_tiny.txt" "$R/water_labelled.xyz" --trials 3
}

ref=""
: > "$tmp/dirs"
printf '%s' "$configs" > "$tmp/configs"
while read -r name cc opt; do
    dir=$B/repro-$name
    # A clean environment for the nested make: no flags of an outer make
    # (e.g. the sanitizer flags of `make sanitize`) leak into these builds.
    if ! MAKEFLAGS='' MAKELEVEL='' make -s -j2 B="$dir" CC="$cc" OPT="$opt" SAN='' CFLAGS='' \
            "$dir/kqeq" "$dir/eann" > "$tmp/build.log" 2>&1; then
        echo "FAIL: build $name ($cc $opt):"; sed -n '1,10p' "$tmp/build.log"
        fail=$((fail + 1)); continue
    fi
    echo "$dir" >> "$tmp/dirs"
done < "$tmp/configs"
# the programs of $B itself (whatever CC, OPT and sanitizers made them)
if [ -x "$B/kqeq" ] && [ -x "$B/eann" ]; then echo "$B" >> "$tmp/dirs"; fi

i=0
while read -r dir; do
    i=$((i + 1))
    # every build writes under the same path (outputs may name their inputs)
    rm -rf "$tmp/work"
    if ! run_pipeline "$dir" "$tmp/work"; then fail=$((fail + 1)); continue; fi
    o=$tmp/run$i
    mv "$tmp/work" "$o"
    if [ -z "$ref" ]; then ref=$o; refdir=$dir; pass=$((pass + 1)); continue; fi
    for f in "$ref"/*; do
        n=$(basename "$f")
        case "$n" in *.err) continue ;; esac
        if cmp -s "$f" "$o/$n"; then pass=$((pass + 1))
        else
            fail=$((fail + 1))
            echo "FAIL: $n differs between $refdir and $dir: $(cmp "$f" "$o/$n" 2>&1 | head -n 1)"
        fi
    done
done < "$tmp/dirs"
[ -n "$ref" ] && echo "test_repro: compared $(ls "$ref" | wc -l) outputs of $(wc -l < "$tmp/dirs") builds"

# The C library's variants. glibc picks some libm functions (cos, sin, exp, log, pow, ...)
# by CPU: with GLIBC_TUNABLES it picks the plain SSE2 ones, as on a CPU without FMA or AVX
# (other C libraries ignore the variable: the same outputs, trivially). The SOAP, QEq and
# kQEq outputs must not change. EANN's may: its cutoff calls cos and sin (README, "One
# limit across machines"), so they are counted and named, not failed.
if [ -n "$ref" ] && [ -x "$B/kqeq" ] && [ -x "$B/eann" ]; then
    rm -rf "$tmp/work"
    had_tun=${GLIBC_TUNABLES+set}; old_tun=${GLIBC_TUNABLES-}
    export GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-AVX
    if run_pipeline "$B" "$tmp/work"; then
        ediff=""
        for f in "$ref"/*; do
            n=$(basename "$f")
            case "$n" in *.err) continue ;; esac
            if cmp -s "$f" "$tmp/work/$n"; then pass=$((pass + 1))
            else
                case "$n" in
                eann_* | e*.out) ediff="$ediff $n" ;; # the EANN steps (names e*)
                *) fail=$((fail + 1))
                   echo "FAIL: $n differs with the C library's plain (non-FMA) libm variants" ;;
                esac
            fi
        done
        [ -n "$ediff" ] && echo "note: EANN outputs that differ with glibc's non-FMA cos/sin:$ediff"
    else
        fail=$((fail + 1))
    fi
    if [ -n "$had_tun" ]; then GLIBC_TUNABLES=$old_tun; else unset GLIBC_TUNABLES; fi
fi

if [ "$skip" -gt 0 ]; then echo "test_repro: $pass passed, $fail failed, $skip skipped"
else echo "test_repro: $pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
