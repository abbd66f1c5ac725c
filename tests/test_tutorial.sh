#!/bin/sh
# SPDX-License-Identifier: MIT
# test_tutorial.sh - runs every ```sh block of docs/tutorial.md, in order, in
# one shell (as a reader pasting them into a terminal would), on small
# settings through the variables the tutorial defines: EPOCHS=2, SIZES=20,40,
# NMA and QM9 pointing at a few dozen frames of data/nma and data/qm9like,
# WORK a temporary folder. The line `make` of block 0 is skipped (the test
# runs after the build). The Python block runs only when python3 has numpy
# and ase and the library is not a sanitizer build (else it is reported as
# skipped). Every block must exit 0 and the files the tutorial names must
# appear; a few printed values are checked. Run from the repository root.
B=${B:-build}
export PYTHONDONTWRITEBYTECODE=1
PY=/usr/bin/python3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
np=0; nf=0; ns=0
ok() { np=$((np + 1)); }
bad() { nf=$((nf + 1)); echo "FAIL test_tutorial: $1"; }
T=docs/tutorial.md
[ -f "$T" ] || { bad "$T missing"; echo "test_tutorial: $np passed, $nf failed"; exit 1; }

first() {  # first N frames of an XYZ file
    awk -v max="$2" 'left == 0 { if (nf >= max) exit; left = $1 + 2; nf++ } { print; left-- }' "$1"
}
# small data: both temperatures and both signs of charge in the test sets
mkdir -p "$tmp/nma" "$tmp/qm9"
first data/nma/train_T300.xyz 40 > "$tmp/nma/train_T300.xyz"
first data/nma/train_T500.xyz 40 > "$tmp/nma/train_T500.xyz"
{ first data/nma/test.xyz 20; sh data/select.sh md_temp 500 data/nma/test.xyz > "$tmp/t500.xyz"; first "$tmp/t500.xyz" 20; } > "$tmp/nma/test.xyz"
first data/qm9like/train.xyz 80 > "$tmp/qm9/train.xyz"
first data/qm9like/valid.xyz 30 > "$tmp/qm9/valid.xyz"
sh data/select.sh charge 1 data/qm9like/test.xyz > "$tmp/cat.xyz"
sh data/select.sh charge -1 data/qm9like/test.xyz > "$tmp/an.xyz"
{ first data/qm9like/test.xyz 40; first "$tmp/cat.xyz" 5; first "$tmp/an.xyz" 5; } > "$tmp/qm9/test.xyz"

# the blocks, each followed by a marker line
awk -v out="$tmp/blocks" '
    /^```sh[ \t]*$/ { inb = 1; n++; f = sprintf("%s.%02d", out, n); next }
    /^```/ && inb { inb = 0; close(f); next }
    inb { print > f }' "$T"
nblocks=$(ls "$tmp"/blocks.* 2>/dev/null | wc -l)
[ "$nblocks" -ge 10 ] && ok || bad "only $nblocks sh blocks found in $T"

python_ok=1
"$PY" -c "import numpy, ase.io" >/dev/null 2>&1 || python_ok=0
grep -q -a -e __asan_init -e __ubsan_handle "$B/libtensorial.so" 2>/dev/null && python_ok=0
[ -f "$B/libtensorial.so" ] || python_ok=0

{
    echo 'set -e'
    echo "B='$B'; NMA='$tmp/nma'; QM9='$tmp/qm9'; EPOCHS=2; SIZES=20,40; WORK='$tmp/work'"
    echo "export TENSORIAL_LIB='$(pwd)/$B/libtensorial.so'"
    for f in "$tmp"/blocks.*; do
        i=${f##*.}
        if grep -q 'python3' "$f" && [ "$python_ok" -eq 0 ]; then
            echo "echo '@@ block $i skipped (python3 with numpy and ase, or a loadable libtensorial.so, not available)'"
            continue
        fi
        echo "echo '@@ block $i'"
        # the build step: already done before the test runs
        sed -e 's/^make\( .*\)\{0,1\}$/: skipped by the test: make/' "$f"
    done
    echo "echo '@@ end'"
} > "$tmp/run.sh"

sh "$tmp/run.sh" > "$tmp/out" 2> "$tmp/err"
rc=$?
last=$(grep '^@@ ' "$tmp/out" | tail -n 1)
if [ "$rc" -eq 0 ] && [ "$last" = "@@ end" ]; then
    ok
else
    bad "the tutorial's commands stopped in ${last#@@ } (exit $rc):"
    tail -n 15 "$tmp/err" | sed 's/^/    /'
fi
grep -q 'skipped (python3' "$tmp/out" && { ns=1; echo "  (the Python block was skipped: python3 with numpy/ase or a loadable library missing)"; }

W=$tmp/work
for f in dm.eann pol.eann dm_parity.svg pol_parity.svg test300.xyz test500.xyz traj.xyz \
         b3lyp_train.xyz b3lyp_test.xyz dm_b3lyp.eann curve.svg \
         kqeq.model qeq.model mol_kqeq.xyz cations.xyz anions_kqeq.xyz formamide_kqeq.xyz; do
    [ -s "$W/$f" ] && ok || bad "the tutorial did not make $f"
done
# values the tutorial's text relies on
grep -q 'eann_polarizability=' "$W/traj.xyz" && grep -q 'eann_dipole=' "$W/traj.xyz" && ok \
    || bad "traj.xyz lacks eann_dipole / eann_polarizability"
grep -Eq '^md_frame +\|mu\|_EANN_D' "$tmp/out" && ok || bad "the trajectory table was not printed"
# A6: the B3LYP frames split 8 : 2 (every frame once), and the fine-tuned model records
# where it started
ntr=$(grep -c Properties "$W/b3lyp_train.xyz"); nte=$(grep -c Properties "$W/b3lyp_test.xyz")
nall=$(cat data/nma_b3lyp/chunk_*.xyz | grep -c Properties)
[ $((ntr + nte)) -eq "$nall" ] && [ "$nte" -ge 1 ] && [ "$ntr" -ge $((3 * nte)) ] && ok \
    || bad "the B3LYP split: $ntr train + $nte test of $nall frames"
grep -q 'started from the parameters of .*dm.eann (--init)' "$W/dm_b3lyp.eann" && ok || bad "dm_b3lyp.eann: no --init record"
sed -n 2p "$W/formamide_kqeq.xyz" | grep -o 'kqeq_polarizability="[^"]*"' | tr -d '"' | cut -d= -f2 \
    | awk '{ if (NF == 9 && $3 == 0 && $6 == 0 && $7 == 0 && $8 == 0 && $9 == 0 && $1 > 0 && $5 > 0) exit 0; exit 1 }' \
    && ok || bad "formamide: kQEq polarizability not zero out of plane"
n=$(grep -c '^sum of charges -1.000000 e$' "$tmp/out")
[ "$n" -ge 1 ] && ! grep '^sum of charges' "$tmp/out" | grep -vq -- '-1.000000 e$' && ok \
    || bad "anion charges do not sum to -1: $(grep '^sum of charges' "$tmp/out" | head -n 3)"
grep -Eq '^(C|H|N|O|F) +kQEq +-?[0-9.]+ +QEq +-?[0-9.]+$' "$tmp/out" && ok || bad "the charges table (B4) was not printed"
if [ "$ns" -eq 0 ]; then
    grep -q '^kQEq charges (e):' "$tmp/out" && grep -q '^dipole (e\*A):' "$tmp/out" && ok \
        || bad "the Python block printed no charges/dipole"
fi
if [ "$nf" -gt 0 ]; then echo "  output of the run:"; tail -n 20 "$tmp/out" | sed 's/^/    /'; fi
if [ "$ns" -gt 0 ]; then echo "test_tutorial: $np passed, $nf failed, $ns skipped"
else echo "test_tutorial: $np passed, $nf failed"; fi
[ "$nf" -eq 0 ]
