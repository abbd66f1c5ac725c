#!/bin/sh
# SPDX-License-Identifier: MIT
# test_outputs.sh - issue 13: outputs that never destroy data, failures that
# never pass as success. For kqeq and eann:
#   1  -o onto devices (written in place, /dev/full fails), FIFOs, '-' and
#      /dev/stdout, symbolic links (followed; the link stays), created files'
#      mode (umask), no temporary files left
#   2  -o equal to an input (same file, via a symlink or a hard link) refused
#   3  the one 'charge' rule (boolean, string, vector, 1e300, fractional)
#   4  non-finite predictions refused with FILE:LINE; far coordinates refused
#   5  write errors on standard output fail every command
#   8  memory estimate / --max-memory; NUL bytes and overlong lines
#   10 periodic frames refused, pbc="F F F" accepted
#   11 0-atom frames, duplicate --soap keys, directories, 4 kB paths,
#      --max-atoms of kqeq qeq
# Device nodes are made with mknod inside a temporary folder (never the real
# /dev); those cases are skipped when mknod is not allowed.
# Usage: B=build sh tests/test_outputs.sh   (from the repository root)
B=${B:-build}
K=$B/kqeq
E=$B/eann
R=tests/repro
pass=0; fail=0; skip=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
umask 022

note_fail() { fail=$((fail + 1)); echo "FAIL: $*"; }
ok() { # ok NAME: previous test result in $?
    if [ "$1" -eq 0 ]; then pass=$((pass + 1)); else note_fail "$2"; fi
}
# expect_ok NAME CMD...: exit 0
expect_ok() {
    n=$1; shift
    if "$@" > "$tmp/stdout" 2> "$tmp/stderr"; then pass=$((pass + 1))
    else note_fail "$n: exit $? ($(head -n 1 "$tmp/stderr"))"; fi
}
# expect_fail NAME PATTERN CMD...: non-zero exit, ONE stderr line matching
# the (grep -E) pattern. Leak checks are off for refusals (exit(1) paths).
expect_fail() {
    n=$1; pat=$2; shift 2
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$@" \
        > "$tmp/stdout" 2> "$tmp/stderr" < /dev/null
    rc=$?
    if [ "$rc" -eq 0 ]; then note_fail "$n: exit 0, expected a refusal"; return; fi
    if [ "$rc" -gt 128 ]; then note_fail "$n: crashed (exit $rc)"; return; fi
    if [ "$(wc -l < "$tmp/stderr")" -ne 1 ]; then
        note_fail "$n: $(wc -l < "$tmp/stderr") stderr lines, expected 1:"; sed 's/^/    /' "$tmp/stderr"; return
    fi
    if grep -Eq -- "$pat" "$tmp/stderr"; then pass=$((pass + 1))
    else note_fail "$n: message '$(cat "$tmp/stderr")' does not match '$pat'"; fi
}
no_tmp_left() { # no_tmp_left NAME DIR
    left=$(find "$2" -name '*.tmp.*' 2> /dev/null)
    if [ -z "$left" ]; then pass=$((pass + 1)); else note_fail "$1: temporary files left: $left"; fi
}

TE=$R/qm9like_test8.xyz
TR=$R/qm9like_train24.xyz
KM=$R/kqeq_small.model
EM=$R/eann_tiny.txt
W=$R/water_labelled.xyz
ktrain() { "$K" train --train "$@" --dipole-key xtb_dipole --soap rcut=3,nmax=2,lmax=1 --species H,C,N,O,F --quiet; }
etrain() { "$E" train --target dipole --key dip --species O,H --nwave 2 --nipsin 2 --hidden 3 --epochs 2 --quiet "$@"; }

# reference outputs (regular files)
"$K" predict -m "$KM" "$TE" -o "$tmp/kref.xyz" 2> /dev/null || note_fail "kqeq predict reference run"
"$E" predict -m "$EM" "$W" -o "$tmp/eref.xyz" 2> /dev/null || note_fail "eann predict reference run"

# ---- 1: devices, FIFOs, stdout, symlinks -------------------------------
dev=$tmp/dev; mkdir "$dev"
if mknod "$dev/null" c 1 3 2> /dev/null && mknod "$dev/full" c 1 7 2> /dev/null &&
        mknod "$dev/zero" c 1 5 2> /dev/null; then
    expect_ok "kqeq predict -o null-device" "$K" predict -m "$KM" "$TE" -o "$dev/null"
    [ -c "$dev/null" ]; ok $? "null device replaced by kqeq predict"
    expect_fail "kqeq predict -o full-device" "$dev/full: write error: No space left" \
        "$K" predict -m "$KM" "$TE" -o "$dev/full"
    [ -c "$dev/full" ]; ok $? "full device replaced by kqeq predict"
    expect_fail "eann predict -o full-device" "write error: No space left" \
        "$E" predict -m "$EM" "$W" -o "$dev/full"
    expect_fail "kqeq train -o full-device" "write error: No space left" ktrain "$TR" -o "$dev/full"
    expect_fail "eann train -o full-device" "write error: No space left" etrain --train "$W" -o "$dev/full"
    expect_fail "eann eval --svg full-device" "write error: No space left" \
        "$E" eval -m "$EM" "$W" --key dip --svg "$dev/full"
    ln -s "$dev/full" "$tmp/link_to_full"
    expect_fail "kqeq predict -o symlink-to-full" "write error: No space left" \
        "$K" predict -m "$KM" "$TE" -o "$tmp/link_to_full"
    [ -c "$dev/full" ] && [ -L "$tmp/link_to_full" ]; ok $? "device or link replaced"
    # 5: standard output on a full device
    for c in "$K qeq $TE" "$K eval -m $KM $TE --dipole-key xtb_dipole" \
             "$K soap --rcut 3 --nmax 2 --lmax 1 --species H,C,N,O,F $TE" \
             "$K predict -m $KM $TE -o -" "$E predict -m $EM $W -o -" \
             "$E check -m $EM $W --trials 1" "$E eval -m $EM $W --key dip" \
             "$K qeq --help" "$E --version"; do
        # shellcheck disable=SC2086
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" $c > "$dev/full" 2> "$tmp/stderr"
        rc=$?
        if [ "$rc" -ne 0 ] && grep -q "No space left" "$tmp/stderr"; then pass=$((pass + 1))
        else note_fail "stdout on a full device: '$c' exit $rc: $(cat "$tmp/stderr")"; fi
    done
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" ktrain "$TR" -o "$tmp/m_full.model" > "$dev/full" 2> "$tmp/stderr"
    rc=$?; [ "$rc" -ne 0 ] && grep -q "standard output" "$tmp/stderr"; ok $? "kqeq train summary on a full device: exit $rc"
    # 8: kqeq qeq /dev/zero stops at the first NUL byte
    expect_fail "kqeq qeq zero-device" "$dev/zero:1: NUL byte" timeout 60 "$K" qeq "$dev/zero"
    expect_fail "eann predict -m zero-device" "$dev/zero" timeout 60 "$E" predict -m "$dev/zero" "$W" -o "$tmp/x.xyz"
    expect_fail "kqeq predict -m zero-device" "$dev/zero" timeout 60 "$K" predict -m "$dev/zero" "$TE" -o "$tmp/x.xyz"
else
    echo "SKIP: mknod not allowed here (device cases)"; skip=$((skip + 1))
fi
no_tmp_left "device runs" "$tmp"

mkfifo "$tmp/fifo"
cat "$tmp/fifo" > "$tmp/fifo.out" &
cpid=$!
expect_ok "kqeq predict -o fifo" "$K" predict -m "$KM" "$TE" -o "$tmp/fifo"
wait "$cpid"
[ -p "$tmp/fifo" ] && cmp -s "$tmp/fifo.out" "$tmp/kref.xyz"; ok $? "fifo replaced or content differs"
"$K" predict -m "$KM" "$TE" -o - > "$tmp/k_dash.xyz" 2> /dev/null && cmp -s "$tmp/k_dash.xyz" "$tmp/kref.xyz"
ok $? "kqeq predict -o - differs from the file output"
"$K" predict -m "$KM" "$TE" -o /dev/stdout > "$tmp/k_devstdout.xyz" 2> /dev/null &&
    cmp -s "$tmp/k_devstdout.xyz" "$tmp/kref.xyz"
ok $? "kqeq predict -o /dev/stdout differs from the file output"
"$E" predict -m "$EM" "$W" -o /dev/stdout 2> /dev/null | cmp -s - "$tmp/eref.xyz"
ok $? "eann predict -o /dev/stdout (a pipe) differs from the file output"

echo old > "$tmp/target.xyz"
ln -s target.xyz "$tmp/link.xyz"
expect_ok "kqeq predict -o symlink" "$K" predict -m "$KM" "$TE" -o "$tmp/link.xyz"
[ -L "$tmp/link.xyz" ] && cmp -s "$tmp/target.xyz" "$tmp/kref.xyz"; ok $? "symlink not followed"
ln -s sub/new.model "$tmp/dangling"
mkdir "$tmp/sub"
expect_ok "kqeq train -o dangling symlink" ktrain "$TR" -o "$tmp/dangling"
[ -L "$tmp/dangling" ] && [ -s "$tmp/sub/new.model" ]; ok $? "dangling symlink: target not created"
[ "$(stat -c %a "$tmp/sub/new.model")" = 644 ]; ok $? "mode of a new file is not 0666 & ~umask (022)"
( umask 077 && "$E" predict -m "$EM" "$W" -o "$tmp/private.xyz" ) 2> /dev/null
[ "$(stat -c %a "$tmp/private.xyz")" = 600 ]; ok $? "mode of a new file under umask 077"
expect_fail "-o a directory" "is a directory" "$K" predict -m "$KM" "$TE" -o "$tmp/sub"
no_tmp_left "symlink runs" "$tmp"

# ---- 2: -o equal to an input --------------------------------------------
cp "$TR" "$tmp/t.xyz"; cp "$W" "$tmp/w.xyz"; cp "$KM" "$tmp/k.model"; cp "$EM" "$tmp/e.txt"
ln -s t.xyz "$tmp/t_link.xyz"; ln "$tmp/t.xyz" "$tmp/t_hard.xyz"
same="same file as the input"
expect_fail "kqeq train -o TRAIN" "$same" ktrain "$tmp/t.xyz" -o "$tmp/t.xyz"
expect_fail "kqeq train -o symlink to TRAIN" "$same" ktrain "$tmp/t.xyz" -o "$tmp/t_link.xyz"
expect_fail "kqeq train -o hard link of TRAIN" "$same" ktrain "$tmp/t.xyz" -o "$tmp/t_hard.xyz"
expect_fail "kqeq train -o VALID" "$same" ktrain "$TR" --valid "$tmp/t.xyz" -o "$tmp/t.xyz"
expect_fail "kqeq predict -o MODEL" "$same" "$K" predict -m "$tmp/k.model" "$TE" -o "$tmp/k.model"
expect_fail "kqeq predict -o IN" "$same" "$K" predict -m "$KM" "$tmp/t.xyz" -o "$tmp/t.xyz"
expect_fail "kqeq curve -o TEST" "$same" "$K" curve --train "$TR" --valid "$TE" --test "$tmp/t.xyz" \
    --dipole-key xtb_dipole --sizes 4 --draws 1 --soap rcut=3,nmax=2,lmax=1 -o "$tmp/t.xyz"
expect_fail "eann train -o TRAIN" "$same" etrain --train "$tmp/w.xyz" -o "$tmp/w.xyz"
expect_fail "eann train -o VALID" "$same" etrain --train "$W" --valid "$tmp/w.xyz" -o "$tmp/w.xyz"
expect_fail "eann predict -o MODEL" "$same" "$E" predict -m "$tmp/e.txt" "$W" -o "$tmp/e.txt"
expect_fail "eann predict -o IN" "$same" "$E" predict -m "$EM" "$tmp/w.xyz" -o "$tmp/w.xyz"
expect_fail "eann eval --svg IN" "$same" "$E" eval -m "$EM" "$tmp/w.xyz" --key dip --svg "$tmp/w.xyz"
cmp -s "$tmp/t.xyz" "$TR" && cmp -s "$tmp/w.xyz" "$W" && cmp -s "$tmp/k.model" "$KM" &&
    cmp -s "$tmp/e.txt" "$EM" && [ -L "$tmp/t_link.xyz" ]
ok $? "an input was changed"

# ---- 3: charge ------------------------------------------------------------
mk_charge() { # mk_charge NAME VALUE: water frames with charge=VALUE
    sed "s/charge=0/charge=$2/" "$W" > "$tmp/$1.xyz"
}
mk_charge q_bool T; mk_charge q_str abc; mk_charge q_vec '"1 2 3"'; mk_charge q_big 1e300
mk_charge q_half 0.5; mk_charge q_one 1
for c in q_bool q_str q_vec q_big q_half; do
    case $c in q_bool) pat="q_bool.xyz:1: key 'charge' is a boolean" ;; q_big) pat="q_big.xyz:1: .*beyond" ;;
        q_half) pat="q_half.xyz:1: .*not an integer.*--fractional-charge" ;; *) pat="$c.xyz:1: key 'charge'" ;; esac
    expect_fail "kqeq qeq $c" "$pat" "$K" qeq "$tmp/$c.xyz"
    expect_fail "kqeq eval $c" "$pat" "$K" eval -m "$R/qeq_small.model" "$tmp/$c.xyz" --dipole-key dip
    expect_fail "eann train --charge-weight $c" "$pat" etrain --train "$tmp/$c.xyz" --charge-weight 0.1 -o "$tmp/x.model"
done
expect_fail "kqeq predict charge=T" "key 'charge' is a boolean" "$K" predict -m "$R/qeq_small.model" "$tmp/q_bool.xyz" -o "$tmp/x.xyz"
expect_fail "kqeq train charge=T" "q_bool.xyz:1: key 'charge' is a boolean" \
    "$K" train --model qeq --train "$tmp/q_bool.xyz" --dipole-key dip -o "$tmp/x.model"
expect_ok "kqeq qeq --fractional-charge" "$K" qeq "$tmp/q_half.xyz" --fractional-charge
# kqeq train without --soap: the paper's single SOAP (rc 3.5 A, n 8, l 6, sigma rc/8)
"$K" train --train "$TR" --dipole-key xtb_dipole --species H,C,N,O,F --quiet -o "$tmp/ds.model" \
    > /dev/null 2>&1
grep -q '^desc 0 rcut 3.5 nmax 8 lmax 6 sigma 0.4375 delta 1 ' "$tmp/ds.model" &&
    grep -q '^ndesc 1$' "$tmp/ds.model"
ok $? "kqeq train's default SOAP: $(grep '^desc' "$tmp/ds.model" 2> /dev/null | head -n 2)"
# kqeq qeq's documented defaults (--help: Rappe & Goddard chi, eta 0, s_at 0.75) are the
# run with all of them given; abs_debye is the length of the printed dipole
Q8=$R/qm9like_test8.xyz
"$K" qeq "$Q8" > "$tmp/qd.out" 2> /dev/null
"$K" qeq "$Q8" --chi H=4.528,C=5.343,N=6.899,O=8.741,F=10.874 --eta H=0,C=0,N=0,O=0,F=0 \
    --s-at 0.75 > "$tmp/qe.out" 2> /dev/null
[ -s "$tmp/qd.out" ] && cmp -s "$tmp/qd.out" "$tmp/qe.out"; ok $? "kqeq qeq defaults differ from --help's"
awk '/^frame/ { n++; d = sqrt($8 * $8 + $9 * $9 + $10 * $10); if (!(d > 0 && (d - $12) ^ 2 <= 1e-18)) bad++ }
     END { exit !(n == 8 && !bad) }' "$tmp/qd.out"
ok $? "kqeq qeq abs_debye is not |dipole_debye|: $(grep -m 1 '^frame' "$tmp/qd.out")"
grep -q "charge 0.5 " "$tmp/stdout"; ok $? "fractional charge not used"
expect_ok "kqeq qeq charge=1" "$K" qeq "$tmp/q_one.xyz"
expect_ok "eann train --charge-weight --fractional-charge" etrain --train "$tmp/q_half.xyz" --charge-weight 0.1 --fractional-charge -o "$tmp/x.model"
expect_fail "kqeq qeq --charge 0.5" "--charge: '0.5' is not an integer" "$K" qeq "$W" --charge 0.5
expect_ok "kqeq qeq --charge 0.5 --fractional-charge" "$K" qeq "$W" --charge 0.5 --fractional-charge
expect_fail "kqeq qeq --charge 2000" "within" "$K" qeq "$W" --charge 2000

# ---- 4: non-finite predictions, far coordinates -----------------------------
# a model whose last layer overflows: every output is NaN or Inf
awk '/^array net0.[OH].linear1.(weight|bias)/{ if ($2 ~ /weight/) f = 3; else f = 1; print; next }
     f > 0 { print "1.7e308"; f--; next } { print }' "$EM" > "$tmp/nan.txt"
nf="water_labelled.xyz:1: the model's output is not finite"
expect_fail "eann predict NaN" "$nf" "$E" predict -m "$tmp/nan.txt" "$W" -o "$tmp/nan.xyz"
expect_fail "eann predict --repeat NaN" "$nf" "$E" predict -m "$tmp/nan.txt" "$W" --repeat 1
expect_fail "eann check NaN" "$nf" "$E" check -m "$tmp/nan.txt" "$W" --trials 2
expect_fail "eann eval NaN" "$nf" "$E" eval -m "$tmp/nan.txt" "$W" --key dip --svg "$tmp/nan.svg"
[ ! -e "$tmp/nan.xyz" ] && [ ! -e "$tmp/nan.svg" ]; ok $? "output written for a NaN prediction"
sed '3s/0.1173/1.7e308/' "$W" > "$tmp/far.xyz"
sed '3s/0.1173/1e300/' "$TR" > /dev/null
far="far.xyz:3: column 4 \(pos\): coordinate .* beyond"
expect_fail "kqeq qeq far atom" "$far" "$K" qeq "$tmp/far.xyz"
expect_fail "eann check far atom" "$far" "$E" check -m "$EM" "$tmp/far.xyz"
awk 'NR == 5 { $2 = "1e300" } { print }' "$TR" > "$tmp/far_train.xyz"
expect_fail "kqeq train atom at 1e300 A names the input" "far_train.xyz:5: column 2 \(pos\)" \
    ktrain "$tmp/far_train.xyz" -o "$tmp/x.model"

# ---- 8: memory, NUL bytes, long lines ----------------------------------------
expect_fail "kqeq train --max-memory" "train: needs about .* --max-memory" ktrain "$TR" --max-memory 1K -o "$tmp/x.model"
# the size suffixes (powers of 1024; B optional), read back from the limit the refusal prints
for sz in 2048:2.05e-06 2K:2.05e-06 2KB:2.05e-06 0.002M:2.1e-06 2e-6G:2.15e-06 2e-9T:2.2e-06; do
    expect_fail "kqeq train --max-memory ${sz%%:*}" "the limit is ${sz#*:} GB \\(--max-memory\\)" \
        ktrain "$TR" --max-memory "${sz%%:*}" -o "$tmp/x.model"
done
# one-atom frames whose full-form kernel (4 M^2 doubles, M = N) exceeds
# MemAvailable: refused before anything large is allocated
avail=$(awk '/^MemAvailable:/ { print $2 * 1024 }' /proc/meminfo)
if [ -n "$avail" ]; then
    n=$(awk -v a="$avail" 'BEGIN { n = int(sqrt(a / 8)) + 1000; print n }')
    awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "1\nd=\"0 0 %d\"\nH %d 0 0\n", i % 3, i }' > "$tmp/many.xyz"
    expect_fail "kqeq train beyond MemAvailable" "needs about .*MemAvailable" timeout 120 "$K" train --train "$tmp/many.xyz" \
        --dipole-key d --sparse 0 --soap rcut=3,nmax=1,lmax=0 --quiet -o "$tmp/x.model"
    rm -f "$tmp/many.xyz"
fi
printf '1\n\nH 0 0 0\n1\n\nH 0 0 \000 0\n' > "$tmp/nul.xyz"
expect_fail "NUL byte" "nul.xyz:6: NUL byte" "$K" qeq "$tmp/nul.xyz"
# a line longer than XYZ_MAX_LINE (128 MiB) through a pipe
awk 'BEGIN { s = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
             for (i = 0; i < 11; i++) s = s s; for (i = 0; i < 700; i++) printf "%s", s }' |
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$K" qeq - > "$tmp/stdout" 2> "$tmp/stderr"
rc=$?; [ "$rc" -ne 0 ] && grep -q -- "-:1: line longer than" "$tmp/stderr"; ok $? "overlong line: exit $rc $(cat "$tmp/stderr")"

# ---- 10: periodic frames --------------------------------------------------------
sed '2s/$/ pbc="T T T" Lattice="9 0 0 0 9 0 0 0 9"/' "$W" > "$tmp/pbc.xyz"
sed '2s/$/ Lattice="9 0 0 0 9 0 0 0 9"/' "$W" > "$tmp/lattice.xyz"
sed '2s/$/ pbc="F F F" Lattice="9 0 0 0 9 0 0 0 9"/' "$W" > "$tmp/nopbc.xyz"
per="periodic systems are not supported"
for f in pbc lattice; do
    expect_fail "kqeq qeq $f" "$f.xyz:1: periodic frame.*$per" "$K" qeq "$tmp/$f.xyz"
    expect_fail "kqeq soap $f" "$f.xyz:1: .*$per" "$K" soap --rcut 3 --nmax 1 --lmax 0 --species H,O "$tmp/$f.xyz"
    expect_fail "kqeq predict $f" "$f.xyz:1: .*$per" "$K" predict -m "$R/qeq_small.model" "$tmp/$f.xyz" -o "$tmp/x.xyz"
    expect_fail "kqeq eval $f" "$f.xyz:1: .*$per" "$K" eval -m "$R/qeq_small.model" "$tmp/$f.xyz" --dipole-key dip
    expect_fail "kqeq train $f" "$f.xyz:1: .*$per" "$K" train --model qeq --train "$tmp/$f.xyz" --dipole-key dip -o "$tmp/x.model"
    expect_fail "kqeq curve $f" "$f.xyz:1: .*$per" "$K" curve --train "$tmp/$f.xyz" --valid "$W" --test "$W" --dipole-key dip --sizes 1
    expect_fail "eann predict $f" "$f.xyz:1: .*$per" "$E" predict -m "$EM" "$tmp/$f.xyz" -o "$tmp/x.xyz"
    expect_fail "eann check $f" "$f.xyz:1: .*$per" "$E" check -m "$EM" "$tmp/$f.xyz"
    expect_fail "eann eval $f" "$f.xyz:1: .*$per" "$E" eval -m "$EM" "$tmp/$f.xyz" --key dip
    expect_fail "eann train $f" "$f.xyz:1: .*$per" etrain --train "$tmp/$f.xyz" -o "$tmp/x.model"
done
expect_ok "pbc=\"F F F\" with a Lattice" "$E" predict -m "$EM" "$tmp/nopbc.xyz" -o "$tmp/x.xyz"
# eann check measures: an EANN model is exactly invariant (charges) and equivariant
# (vectors R v, tensors R A R^T), so every violation it prints is rounding, <= 1e-12 of
# the output (measured 4e-14 on the tiny dipole model, 5e-16 on the polarizability one);
# a check that rotated an output wrongly would print O(1)
check_small() { # check_small NAME MODEL FRAMES
    "$E" check -m "$2" "$3" --trials 2 > "$tmp/chk.out" 2> "$tmp/chk.err"
    awk '/^overall/ { n++; if (!($3 <= 1e-12 && $5 <= 1e-12 && $7 <= 1e-12)) bad = 1 }
         END { exit !(n == 1 && !bad) }' "$tmp/chk.out"
    ok $? "eann check $1: $(tail -n 1 "$tmp/chk.out") $(head -n 1 "$tmp/chk.err")"
}
check_small "dipole" "$EM" "$W"
if [ -s data/nma/test.xyz ]; then
    head -n 42 data/nma/test.xyz > "$tmp/nma3.xyz"
    check_small "polarizability" models/nma_polarizability_pm7.eann "$tmp/nma3.xyz"
fi
# overlapping atoms (the model's min_distance 0.001 A): refused whichever axis separates
# them, at 0.0009 A; accepted at 0.0011 A
for ax in 1 2 3; do
    for d in 0.0009 0.0011; do
        awk -v ax=$ax -v d=$d 'BEGIN { print 3; print "Properties=species:S:1:pos:R:3"
            print "O 0 0 0"; p[1] = 0; p[2] = 0; p[3] = 0; p[ax] = d
            print "H " p[1] " " p[2] " " p[3]; print "H 0.8 0.6 0.1" }' > "$tmp/close.xyz"
        if [ $d = 0.0009 ]; then
            expect_fail "eann predict, atoms $d A apart along axis $ax" \
                "close.xyz:1: atoms 1 and 2 of the frame are 0.0009 angstrom apart" \
                "$E" predict -m "$EM" "$tmp/close.xyz" -o "$tmp/x.xyz"
        else
            expect_ok "eann predict, atoms $d A apart along axis $ax" \
                "$E" predict -m "$EM" "$tmp/close.xyz" -o "$tmp/x.xyz"
        fi
    done
done

# ---- 11: smaller ones --------------------------------------------------------------
printf '0\nempty=T\n' | cat "$W" - > "$tmp/zero_atoms.xyz"
za="zero_atoms.xyz:11: frame without atoms"
expect_fail "kqeq qeq 0 atoms" "$za" "$K" qeq "$tmp/zero_atoms.xyz"
expect_fail "kqeq soap 0 atoms" "$za" "$K" soap --rcut 3 --nmax 1 --lmax 0 --species H,O "$tmp/zero_atoms.xyz"
expect_fail "kqeq predict 0 atoms" "$za" "$K" predict -m "$R/qeq_small.model" "$tmp/zero_atoms.xyz" -o "$tmp/x.xyz"
expect_fail "eann predict 0 atoms" "$za" "$E" predict -m "$EM" "$tmp/zero_atoms.xyz" -o "$tmp/x.xyz"
expect_fail "eann check 0 atoms" "$za" "$E" check -m "$EM" "$tmp/zero_atoms.xyz"
expect_fail "duplicate --soap rcut" "--soap: 'rcut' given twice" ktrain "$TR" --soap rcut=3,nmax=2,lmax=1,rcut=4 -o "$tmp/x.model"
expect_fail "duplicate --soap sigma" "--soap: 'sigma' given twice" ktrain "$TR" --soap rcut=3,nmax=2,lmax=1,sigma=0.3,sigma=0.4 -o "$tmp/x.model"
expect_fail "directory as xyz input" "$tmp/sub: is a directory" "$K" qeq "$tmp/sub"
expect_fail "directory as model" "$tmp/sub: is a directory" "$E" predict -m "$tmp/sub" "$W" -o "$tmp/x.xyz"
long=$tmp/$(awk 'BEGIN { for (i = 0; i < 20; i++) printf "%0200d/", i }')out.xyz
expect_fail "4 kB -o path keeps its reason" "No such file or directory" "$K" predict -m "$KM" "$TE" -o "$long"
expect_fail "4 kB -o path (eann train)" "No such file or directory" etrain --train "$W" -o "$long"
awk 'BEGIN { n = 10000; print n; print "big"; for (i = 0; i < n; i++) printf "H %d %d %d\n", i % 20, int(i / 20) % 20, int(i / 400) }' > "$tmp/big.xyz"
expect_fail "kqeq qeq 10,000 atoms" "big.xyz:1: frame of 10000 atoms.*O\(N\^3\).*--max-atoms" "$K" qeq "$tmp/big.xyz"
awk 'BEGIN { n = 30; print n; print "small"; for (i = 0; i < n; i++) printf "H %d 0 0\n", i }' > "$tmp/h30.xyz"
expect_fail "kqeq qeq --max-atoms 20" "--max-atoms 20" "$K" qeq "$tmp/h30.xyz" --max-atoms 20
expect_ok "kqeq qeq --max-atoms 30" "$K" qeq "$tmp/h30.xyz" --max-atoms 30
# ---- issue 16 item 5: one set of conventions ------------------------------------
for p in "$K" "$E"; do
    v=$("$p" --version 2> /dev/null)
    case "$v" in *"(tensorial "[0-9]*) pass=$((pass + 1)) ;; *) note_fail "$p --version: '$v'" ;; esac
done
# --key/--unit in kqeq, with the old names as aliases giving the same bits
"$K" eval -m "$R/qeq_small.model" "$TE" --key xtb_dipole --unit au > "$tmp/e_new.out" 2> /dev/null
"$K" eval -m "$R/qeq_small.model" "$TE" --dipole-key xtb_dipole --dipole-unit au > "$tmp/e_old.out" 2> /dev/null
[ -s "$tmp/e_new.out" ] && cmp -s "$tmp/e_new.out" "$tmp/e_old.out"; ok $? "kqeq eval --key/--unit differ from --dipole-key/--dipole-unit"
# chained predictions: the second refuses to overwrite, --prefix keeps both,
# the units key lists every kind written
"$E" predict -m "$EM" "$W" -o "$tmp/c1.xyz" 2> /dev/null
expect_fail "eann predict over an existing eann_dipole" "c1.xyz:1: key 'eann_dipole' is already in the frame.*--prefix" \
    "$E" predict -m "$EM" "$tmp/c1.xyz" -o "$tmp/c2.xyz"
expect_ok "eann predict --prefix" "$E" predict -m "$EM" "$tmp/c1.xyz" -o "$tmp/c2.xyz" --prefix second
grep -q 'eann_dipole=.* second_dipole=.* second_units=dipole:e\*bohr' "$tmp/c2.xyz"; ok $? "eann --prefix keys"
expect_ok "eann predict --overwrite" "$E" predict -m "$EM" "$tmp/c1.xyz" -o "$tmp/c3.xyz" --overwrite
cmp -s "$tmp/c3.xyz" "$tmp/c1.xyz"; ok $? "eann predict --overwrite of the same model is not idempotent"
expect_fail "kqeq predict over existing keys" "key 'kqeq_dipole' is already in the frame" \
    "$K" predict -m "$KM" "$tmp/kref.xyz" -o "$tmp/k2.xyz"
expect_ok "kqeq predict --prefix --unit" "$K" predict -m "$R/qeq_small.model" "$tmp/kref.xyz" -o "$tmp/k2.xyz" --prefix qeq --unit au
grep -q 'kqeq_dipole=.*qeq_dipole=.*qeq_units="dipole:au,polarizability:bohr^3,charge:e".*kqeq_charge:R:1:qeq_charge:R:1' "$tmp/k2.xyz" ||
    grep -q 'Properties=species:S:1:pos:R:3:kqeq_charge:R:1:qeq_charge:R:1 .*qeq_dipole=.*qeq_units=' "$tmp/k2.xyz"
ok $? "kqeq --prefix keys: $(sed -n 2p "$tmp/k2.xyz" | head -c 300)"
expect_fail "--prefix with a space" "--prefix: 'a b' is not a plain name" "$K" predict -m "$KM" "$TE" -o "$tmp/x.xyz" --prefix "a b"
# every character class a prefix may hold, at both ends of its ranges
expect_ok "--prefix aZzA09_-." "$K" predict -m "$KM" "$TE" -o "$tmp/x.xyz" --prefix "aZzA09_-."
grep -q 'aZzA09_-\._dipole=' "$tmp/x.xyz"; ok $? "--prefix aZzA09_-. keys: $(sed -n 2p "$tmp/x.xyz" | head -c 200)"
# units merge: a polarizability model after a dipole model keeps both entries
"$E" predict -m "$EM" "$W" -o - 2> /dev/null | sed 's/eann_dipole=/old_dipole=/; s/dipole:e\*bohr/polarizability:x,dipole:e*bohr/' > "$tmp/u.xyz"
expect_ok "eann predict merging units" "$E" predict -m "$EM" "$tmp/u.xyz" -o "$tmp/u2.xyz"
grep -q 'eann_units=polarizability:x,dipole:e\*bohr' "$tmp/u2.xyz"; ok $? "units entries of other kinds kept: $(sed -n 2p "$tmp/u2.xyz")"
# kqeq soap --repeat: only the timings, per atom: the mean of the K passes, the first
# pass and (K >= 2) the fastest of the others; the passes add up to K times the mean
"$K" soap --rcut 3 --nmax 2 --lmax 1 --species H,C,N,O,F --repeat 3 "$TE" > "$tmp/rep.txt" 2> "$tmp/stderr"
awk 'NR == 1 && $1 == "us_per_atom" { m = $2; n++ } NR == 2 && $1 == "first_us_per_atom" { f = $2; n++ }
     NR == 3 && $1 == "min_us_per_atom" { b = $2; n++ }
     END { exit !(NR == 3 && n == 3 && m > 0 && f > 0 && b > 0 && 3 * m >= f + 2 * b - 0.01) }' "$tmp/rep.txt"
ok $? "kqeq soap --repeat 3 output: $(tr '\n' ' ' < "$tmp/rep.txt") $(head -n 1 "$tmp/stderr")"
"$K" soap --rcut 3 --nmax 2 --lmax 1 --species H,C,N,O,F --repeat 1 "$TE" > "$tmp/rep.txt" 2> "$tmp/stderr"
awk 'NR == 1 && $1 == "us_per_atom" && $2 > 0 { n++ } NR == 2 && $1 == "first_us_per_atom" && $2 > 0 { n++ }
     END { exit !(NR == 2 && n == 2) }' "$tmp/rep.txt"
ok $? "kqeq soap --repeat 1 output (no fastest pass): $(tr '\n' ' ' < "$tmp/rep.txt")"
for c in "$K qeq" "$K soap" "$K train" "$K predict" "$K eval" "$K curve" "$E predict" "$E check" "$E train" "$E eval"; do
    # shellcheck disable=SC2086
    h=$($c --help 2>&1)
    case "$h" in *angstrom*) pass=$((pass + 1)) ;; *) note_fail "'$c --help' does not state the position unit" ;; esac
done

no_tmp_left "all runs" "$tmp"

if [ "$skip" -gt 0 ]; then echo "test_outputs: $pass passed, $fail failed, $skip skipped"
else echo "test_outputs: $pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
