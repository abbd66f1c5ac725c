#!/bin/sh
# SPDX-License-Identifier: MIT
# test_eann_train_cli.sh - `eann train` / `eann eval` end to end on a tiny
# synthetic file (labels are arbitrary numbers, not physics): determinism,
# the model is a readable V1 file, eval output and SVG, tdm label signs do
# not matter, and bad inputs give one "FILE:LINE: ..." line, a non-zero exit
# and no output file. Run from the repository root.
B=${B:-build}
E=$B/eann
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
np=0; nf=0
ok() { np=$((np + 1)); }
bad() { nf=$((nf + 1)); echo "FAIL: $1"; }
# 12 frames of a bent triatomic with made-up labels
awk 'BEGIN {
  for (f = 0; f < 12; f++) {
    a = 0.9 + 0.02 * f; c = 0.3 * sin(f);
    s = (f % 2) ? -1 : 1;
    printf "3\nProperties=species:S:1:pos:R:3 mu=\"%.6f %.6f %.6f\" tdm=\"%.6f %.6f %.6f\" tdmflip=\"%.6f %.6f %.6f\" pol=\"%.4f 0 0 0 %.4f 0 0 0 %.4f\"\n",
      0.1 * f, 0.5 - 0.01 * f, c, 0.2 + c, 0.1, -0.05 * f, s * (0.2 + c), s * 0.1, s * (-0.05 * f),
      10 + f, 8 - 0.1 * f, 9 + c;
    printf "O 0 0 0\nH %.5f 0.7 0.1\nH %.5f -0.7 0\n", a, a - 0.1;
  } }' > "$tmp/d.xyz"
T="train --train $tmp/d.xyz --hidden 8,8 --nwave 4 --epochs 5 --batch 4 --quiet"
$E $T --target dipole --key mu -o "$tmp/m1.txt" 2>"$tmp/err" && ok || bad "train dipole: $(cat "$tmp/err")"
$E $T --target dipole --key mu -o "$tmp/m2.txt" 2>/dev/null
cmp -s "$tmp/m1.txt" "$tmp/m2.txt" && ok || bad "two trainings with the same seed differ"
$E $T --target dipole --key mu --seed 2 -o "$tmp/m3.txt" 2>/dev/null
cmp -s "$tmp/m1.txt" "$tmp/m3.txt" && bad "different seeds give the same model" || ok
head -1 "$tmp/m1.txt" | grep -qx EANN_TEXT_V1 && ok || bad "model is not EANN_TEXT_V1"
grep -q '^# rho_std O 0 ' "$tmp/m1.txt" && ok || bad "normalisation statistics missing"
$E predict -m "$tmp/m1.txt" "$tmp/d.xyz" -o "$tmp/p.xyz" && grep -q eann_dipole "$tmp/p.xyz" && ok || bad "predict with a trained model"
$E eval -m "$tmp/m1.txt" "$tmp/d.xyz" --key mu --svg "$tmp/p.svg" > "$tmp/ev" 2>&1 && ok || bad "eval: $(cat "$tmp/ev")"
grep -Eq '^all +[0-9.e+-]+$' "$tmp/ev" && grep -Eq '^r +-?[0-9.]+$' "$tmp/ev" && ok || bad "eval output: $(cat "$tmp/ev")"
head -1 "$tmp/p.svg" | grep -q '^<?xml' && grep -q '</svg>' "$tmp/p.svg" && ok || bad "svg"
# tdm: flipping label signs does not change the model (phase-free loss)
$E $T --target tdm --key tdm -o "$tmp/t1.txt" 2>/dev/null
$E $T --target tdm --key tdmflip -o "$tmp/t2.txt" 2>/dev/null
sed -e 's/tdmflip/tdm/' "$tmp/t2.txt" | cmp -s - "$tmp/t1.txt" && ok || bad "tdm labels with flipped signs give another model"
$E $T --target polarizability --key pol --unit A3 -o "$tmp/a1.txt" 2>/dev/null && ok || bad "train polarizability"
$E $T --target polarizability --train-radial --key pol -o "$tmp/a3.txt" 2>/dev/null && ok || bad "train polarizability --train-radial"
grep -q 'rs and inta (start' "$tmp/a3.txt" && ok || bad "--train-radial not recorded"
$E $T --target polarizability --optimizer lbfgs --key pol -o "$tmp/a2.txt" 2>/dev/null && ok || bad "train polarizability lbfgs"
$E train --train "$tmp/d.xyz" --hidden 8 --nwave 4 --epochs 100000 --max-time 0.000001 --quiet \
    --target dipole --key mu -o "$tmp/mt.txt" 2>/dev/null && grep -q ', 1 epochs run' "$tmp/mt.txt" \
    && ok || bad "--max-time does not stop after the first epoch"
$E train --train "$tmp/d.xyz" --hidden 8 --nwave 4 --epochs 100000 --max-time 0.000001 \
    --target dipole --key mu -o "$tmp/mt2.txt" 2>"$tmp/mterr" && grep -q ', 1 epochs run' "$tmp/mt2.txt" \
    && grep -q 'max-time .* reached' "$tmp/mterr" && ok || bad "--max-time without --quiet"
# checkpoint and resume: 3 epochs + resume to 8 = 8 epochs, byte for byte
for opt in adam lbfgs; do
    $E $T --optimizer $opt --epochs 8 --target polarizability --key pol -o "$tmp/f_$opt.txt" 2>/dev/null
    $E $T --optimizer $opt --epochs 3 --target polarizability --key pol -o "$tmp/p_$opt.txt" \
        --checkpoint "$tmp/c_$opt.ckpt" 2>/dev/null && head -1 "$tmp/c_$opt.ckpt" | grep -qx EANN_TRAIN_STATE_V1 \
        && ok || bad "$opt: no checkpoint written"
    $E $T --optimizer $opt --epochs 8 --target polarizability --key pol -o "$tmp/r_$opt.txt" \
        --resume "$tmp/c_$opt.ckpt" 2>/dev/null && cmp -s "$tmp/f_$opt.txt" "$tmp/r_$opt.txt" \
        && ok || bad "$opt: 3 epochs + resume differs from 8 epochs"
done
# a checkpoint of another run (other seed) is refused, nothing written
if $E $T --epochs 8 --seed 5 --target polarizability --key pol -o "$tmp/x.txt" \
    --resume "$tmp/c_adam.ckpt" 2> "$tmp/err"; then bad "resume with another seed: exit 0"
else grep -q 'another run' "$tmp/err" && [ ! -e "$tmp/x.txt" ] && ok || bad "resume mismatch: $(cat "$tmp/err")"; fi
# SIGTERM during a run: exit 143, a valid model, a checkpoint; resuming from
# it gives the uninterrupted run's model byte for byte
S="train --train $tmp/d.xyz --hidden 32,32 --nwave 6 --batch 1 --patience 100000000 --target dipole --key mu --quiet"
$E $S --epochs 400 -o "$tmp/su.txt" 2>/dev/null
$E $S --epochs 400 -o "$tmp/st.txt" --checkpoint "$tmp/st.ckpt" 2>"$tmp/sterr" &
pid=$!
n=0; while [ ! -s "$tmp/st.ckpt" ] && [ $n -lt 300 ]; do sleep 0.05; n=$((n + 1)); done
kill -TERM $pid 2>/dev/null; wait $pid; rc=$?
if [ $rc -eq 0 ]; then
    echo "SKIP: the run ended before SIGTERM arrived"; cmp -s "$tmp/su.txt" "$tmp/st.txt" && ok || bad "SIGTERM run (ended first) differs"
else
    [ $rc -eq 143 ] && grep -q 'stopped by SIGTERM' "$tmp/sterr" && ok || bad "SIGTERM: rc $rc, $(cat "$tmp/sterr")"
    $E predict -m "$tmp/st.txt" "$tmp/d.xyz" -o "$tmp/stp.xyz" && ok || bad "SIGTERM: the model written is not valid"
    $E $S --epochs 400 -o "$tmp/sr.txt" --resume "$tmp/st.ckpt" 2>/dev/null && cmp -s "$tmp/su.txt" "$tmp/sr.txt" \
        && ok || bad "SIGTERM + resume differs from the uninterrupted run"
fi
# SIGINT: exit 130 and a valid model (the best so far)
$E $S --epochs 100000000 -o "$tmp/si.txt" 2>"$tmp/sierr" &
pid=$!; sleep 1; kill -INT $pid; wait $pid; rc=$?
[ $rc -eq 130 ] && grep -q 'stopped by SIGINT' "$tmp/sierr" && ok || bad "SIGINT: rc $rc, $(tail -1 "$tmp/sierr")"
$E predict -m "$tmp/si.txt" "$tmp/d.xyz" -o "$tmp/sip.xyz" && ok || bad "SIGINT: no valid model"
# a diverging run exits non-zero, says so, writes no model
for lr in 1e3 1e300; do
    rm -f "$tmp/dv.txt"
    if $E $T --epochs 10 --lr $lr --target dipole --key mu -o "$tmp/dv.txt" 2> "$tmp/err"; then
        bad "--lr $lr: exit 0"
    else grep -q 'diverged at epoch' "$tmp/err" && [ ! -e "$tmp/dv.txt" ] && ok || bad "--lr $lr: $(cat "$tmp/err")"; fi
done
# --init: the start model's function is kept (one step of --lr 1e-30 moves nothing:
# predictions within 1e-12 of the start model's), training goes on from it (5 more epochs
# reach a lower training RMSE than the start model's 5), it is recorded in the model, and
# the start model is never the output
I="train --train $tmp/d.xyz --batch 4 --quiet"
$E $I --init "$tmp/m1.txt" --target dipole --key mu --epochs 1 --lr 1e-30 -o "$tmp/i1.txt" 2> "$tmp/err" \
    && ok || bad "--init: $(cat "$tmp/err")"
$E predict -m "$tmp/m1.txt" "$tmp/d.xyz" -o "$tmp/pi0.xyz" && $E predict -m "$tmp/i1.txt" "$tmp/d.xyz" -o "$tmp/pi1.xyz"
vals() { sed -n 's/.*eann_dipole="\([^"]*\)".*/\1/p' "$1" | tr ' ' '\n'; }
vals "$tmp/pi0.xyz" > "$tmp/v0"; vals "$tmp/pi1.xyz" > "$tmp/v1"
paste "$tmp/v0" "$tmp/v1" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++ }
    END { exit !(n == 36 && m <= 1e-12) }' && ok || bad "--init with --lr 1e-30 changed the predictions"
grep -q '^# started from the parameters of .*m1.txt (--init)' "$tmp/i1.txt" && ok || bad "--init not recorded"
$E $I --init "$tmp/m1.txt" --target dipole --key mu --epochs 5 -o "$tmp/i2.txt" 2> /dev/null
rmse() { sed -n 's/.*RMSE (a.u.) train \([^ ]*\) .*/\1/p' "$1"; }
awk -v a="$(rmse "$tmp/m1.txt")" -v b="$(rmse "$tmp/i2.txt")" 'BEGIN { exit !(b > 0 && b < a) }' \
    && ok || bad "--init: 5 more epochs did not lower the training RMSE ($(rmse "$tmp/m1.txt") -> $(rmse "$tmp/i2.txt"))"
cp "$tmp/m1.txt" "$tmp/m1.keep"
$E $I --init "$tmp/m1.txt" --target dipole --key mu -o "$tmp/m1.txt" 2> "$tmp/err" && bad "-o the --init model: exit 0" || ok
grep -q 'refusing to overwrite an input' "$tmp/err" && cmp -s "$tmp/m1.txt" "$tmp/m1.keep" && ok || bad "-o the --init model: $(cat "$tmp/err")"
# errors: one line naming file and line, exit 1, no output
expect_fail() { # what, pattern, args...
    what=$1; pat=$2; shift 2
    rm -f "$tmp/out.txt"
    if "$E" "$@" > /dev/null 2> "$tmp/err"; then bad "$what: exit 0"; return; fi
    [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q -- "$pat" "$tmp/err" && ok || bad "$what: $(cat "$tmp/err")"
    [ -e "$tmp/out.txt" ] && bad "$what: output file left behind" || ok
    ls "$tmp" | grep -q '\.tmp\.' && bad "$what: temporary file left behind" || ok
}
expect_fail "missing key" "d.xyz:1: key 'nope' is missing" $T --target dipole --key nope -o "$tmp/out.txt"
expect_fail "wrong length" "d.xyz:1: key 'pol' has 9 numbers, expected 3" $T --target dipole --key pol -o "$tmp/out.txt"
expect_fail "element not listed" "d.xyz:4: element H" $T --target dipole --key mu --species O -o "$tmp/out.txt"
expect_fail "bad unit" "unit" $T --target polarizability --key pol --unit debye -o "$tmp/out.txt"
expect_fail "bad target" "target" $T --target energy --key mu -o "$tmp/out.txt"
expect_fail "huge cutoff" "cutoff must be in" $T --target dipole --key mu --cutoff 1e300 -o "$tmp/out.txt"
printf '3\nProperties=species:S:1:pos:R:3 mu="1 2 3"\nO 0 0 0\nH 1 0 0\nH 1 0 0\n' > "$tmp/same.xyz"
expect_fail "atoms on one spot" "same.xyz:1: atoms 2 and 3" train --train "$tmp/same.xyz" --target dipole --key mu --hidden 4 --nwave 2 --epochs 1 -o "$tmp/out.txt"
expect_fail "bad hidden" "hidden" $T --target dipole --key mu --hidden 8,x -o "$tmp/out.txt"
expect_fail "unwritable output" "nonexistent" $T --target dipole --key mu -o "$tmp/nonexistent/out.txt"
expect_fail "--init with --nwave" "--nwave cannot be combined with --init" $T --init "$tmp/m1.txt" --target dipole --key mu -o "$tmp/out.txt"
expect_fail "--init of another kind" "a dipole model cannot be trained as --target tdm" $I --init "$tmp/m1.txt" --target tdm --key tdm -o "$tmp/out.txt"
expect_fail "--init missing" "nope.txt: cannot open" $I --init "$tmp/nope.txt" --target dipole --key mu -o "$tmp/out.txt"
printf '3\nProperties=species:S:1:pos:R:3 mu="1 2"\nO 0 0 0\nH 1 0 0\nH 0 1 0\n' > "$tmp/bad.xyz"
expect_fail "eval bad label" "bad.xyz:1: key 'mu' has 2 numbers" eval -m "$tmp/m1.txt" "$tmp/bad.xyz" --key mu --svg "$tmp/out.txt"
printf '1\nProperties=species:S:1:pos:R:3 mu="1 2 3"\nC 0 0 0\n' > "$tmp/c.xyz"
expect_fail "eval unknown element" "c.xyz:3: element C" eval -m "$tmp/m1.txt" "$tmp/c.xyz" --key mu --svg "$tmp/out.txt"
echo "test_eann_train_cli: $np passed, $nf failed"
[ "$nf" -eq 0 ]
