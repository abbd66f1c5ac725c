#!/bin/sh
# SPDX-License-Identifier: MIT
# valgrind.sh - `make valgrind`: valgrind memcheck over every test program
# ($B/tests/test_*) and over the programs doing a small training and
# prediction of each kind (so that training and prediction are seen to free
# everything and to touch no uninitialised memory). Any memcheck error, any
# definitely or indirectly lost block, or a failing command fails the run.
# Needs valgrind; B is a build without sanitizers (the Makefile uses
# build-vg, -O1 -g). Prints "valgrind: N passed, N failed".
B=${B:-build-vg}
R=tests/repro
VG="valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --track-origins=yes"
command -v valgrind > /dev/null 2>&1 || { echo "valgrind: not installed"; exit 1; }
pass=0; fail=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

check() { # check NAME CMD...: run CMD under memcheck; program output to $tmp/log
    name=$1; shift
    t0=$(date +%s)
    # shellcheck disable=SC2086
    B="$B" $VG "$@" > "$tmp/log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1)); echo "ok   $name ($(($(date +%s) - t0)) s)"
    else
        fail=$((fail + 1)); echo "FAIL $name (exit $rc):"; grep -E '^==[0-9]+==|FAIL' "$tmp/log" | head -n 40
    fi
}

for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    check "$(basename "$t")" "$t"
done

tr=$R/qm9like_train24.xyz; te=$R/qm9like_test8.xyz; o=$tmp
check "kqeq soap" "$B/kqeq" soap --rcut 3 --nmax 3 --lmax 2 --species H,C,N,O,F "$te"
check "kqeq qeq" "$B/kqeq" qeq "$te"
check "kqeq train kqeq" "$B/kqeq" train --train "$tr" --valid "$te" --dipole-key xtb_dipole \
    --soap rcut=3,nmax=2,lmax=1 --species H,C,N,O,F --reg 1e-4,1e-3 --quiet -o "$o/k.model"
check "kqeq train sparse" "$B/kqeq" train --train "$tr" --dipole-key xtb_dipole --sparse 30 \
    --soap rcut=3,nmax=2,lmax=1 --species H,C,N,O,F --quiet -o "$o/ks.model"
check "kqeq train qeq" "$B/kqeq" train --model qeq --fit-eta --train "$tr" \
    --dipole-key xtb_dipole --species H,C,N,O,F --quiet -o "$o/q.model"
check "kqeq predict" "$B/kqeq" predict -m "$o/k.model" "$tr" -o "$o/kp.xyz"
check "kqeq eval" "$B/kqeq" eval -m "$o/ks.model" "$te" --dipole-key xtb_dipole
check "eann train dipole" "$B/eann" train --train "$tr" --target dipole --key xtb_dipole \
    --species H,C,N,O,F --nwave 3 --nipsin 3 --hidden 5,4 --epochs 2 --batch 8 --quiet -o "$o/e.model"
check "eann train tdm lbfgs" "$B/eann" train --train "$tr" --target tdm --key xtb_dipole \
    --species H,C,N,O,F --nwave 3 --nipsin 2 --hidden 4 --epochs 2 --optimizer lbfgs \
    --train-radial --quiet -o "$o/t.model"
check "eann train polarizability" "$B/eann" train --train "$o/kp.xyz" --target polarizability \
    --key kqeq_polarizability --species H,C,N,O,F --nwave 2 --nipsin 2 --hidden 3 --epochs 1 \
    --batch 8 --quiet -o "$o/p.model"
check "eann predict" "$B/eann" predict -m "$o/p.model" "$te" -o "$o/ep.xyz"
check "eann check" "$B/eann" check -m "$o/t.model" "$te" --trials 1
check "eann eval" "$B/eann" eval -m "$o/e.model" "$te" --key xtb_dipole
# a refused input (the program exits through cli_fail) must not touch bad
# memory either: exit 1, not memcheck's 99 (blocks still allocated at that
# exit(1) are not leaks: no leak check here)
refused() { # refused NAME CMD...
    name=$1; shift
    valgrind --quiet --error-exitcode=99 --leak-check=no --track-origins=yes "$@" > "$tmp/log" 2>&1
    rc=$?
    if [ "$rc" -eq 1 ] && ! grep -q '^==[0-9]*==' "$tmp/log"; then pass=$((pass + 1)); echo "ok   $name"
    else fail=$((fail + 1)); echo "FAIL $name (exit $rc):"; head -n 40 "$tmp/log"; fi
}
refused "eann predict bad model" "$B/eann" predict -m tests/bad/eann_truncated.txt "$te" -o "$o/x.xyz"
refused "eann predict bad xyz" "$B/eann" predict -m "$o/e.model" tests/bad/xyz_truncated_frame.xyz -o "$o/x.xyz"
refused "kqeq predict bad model" "$B/kqeq" predict -m tests/bad/kqeq_truncated.model "$te" -o "$o/x.xyz"
refused "kqeq train bad xyz" "$B/kqeq" train --train tests/bad/phys_atoms_same_spot_labelled.xyz \
    --dipole-key dip --soap rcut=3,nmax=2,lmax=1 --quiet -o "$o/x.model"

echo "valgrind: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
