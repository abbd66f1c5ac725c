#!/bin/sh
# SPDX-License-Identifier: MIT
# test_spectrum_cli.sh - `spectrum ir` / `spectrum raman` end to end: known
# answers on small synthetic trajectories (band positions, absolute IR band
# intensity in km/mol, unit conversions, time step from keys), -m with an EANN
# model equals predictions written by `eann predict`, and bad inputs give one
# "FILE:LINE: ..." line, a non-zero exit and no output (nothing overwritten).
# Run from the repository root.
B=${B:-build}
S=$B/spectrum
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
np=0; nf=0
ok() { np=$((np + 1)); }
bad() { nf=$((nf + 1)); echo "FAIL: $1"; }

# A synthetic "molecule" (two atoms, fixed) with a dipole
#   mu(t) = (0.3 + 0.05 cos(w1 t), 0.02 cos(w2 t + 1), 0.1)  e*bohr,
# w = 2 pi c nu~, nu1 = 1200 cm^-1, nu2 = 2500 cm^-1; 2000 frames, 1 fs apart;
# and a polarizability (bohr^3) diag(40 + 0.5 cos(w3 t)) (isotropic, 1500 cm^-1)
# plus 0.3 cos(w4 t) diag(1, -1, 0) (anisotropic, 800 cm^-1).
awk -v scale=1 -v key=dip -v skip=-1 'BEGIN {
  pi = 3.14159265358979323846; c = 2.99792458e-5;
  for (f = 0; f < 2000; f++) {
    if (f == skip) continue;
    t = f * 1.0;
    m1 = scale * (0.3 + 0.05 * cos(2 * pi * c * 1200 * t));
    m2 = scale * 0.02 * cos(2 * pi * c * 2500 * t + 1);
    a = 40 + 0.5 * cos(2 * pi * c * 1500 * t); b = 0.3 * cos(2 * pi * c * 800 * t);
    printf "2\nProperties=species:S:1:pos:R:3 time=%.1f %s=\"%.12f %.12f %.12f\" pol=\"%.12f 0 0 0 %.12f 0 0 0 %.12f\"\n", t, key, m1, m2, scale * 0.1, a + b, a - b, a;
    printf "H 0 0 0\nH 0.74 0 0\n";
  } }' > "$tmp/t.xyz"

$S ir "$tmp/t.xyz" --key dip -o "$tmp/ir.tsv" --svg "$tmp/ir.svg" 2> "$tmp/err" && ok || bad "ir: $(cat "$tmp/err")"
grep -q '^# wavenumber_cm-1	ir_km_mol-1_per_cm-1$' "$tmp/ir.tsv" && ok || bad "ir column header"
grep -q 'resolution 1/(N dt) = 16.678' "$tmp/ir.tsv" && ok || bad "resolution 1/(N dt) in the header"
grep -q 'dt 1 fs (frame keys)' "$tmp/ir.tsv" && ok || bad "dt from the time keys"
grep -q 'quantum correction harmonic' "$tmp/ir.tsv" && grep -q 'window hann' "$tmp/ir.tsv" && ok || bad "window / correction not named"
# bands: within the resolution of 1200 and 2500
awk '/^# bands/ { sub(/.*: */, ""); n = split($0, v, " ");
     exit !(n == 2 && v[1] > 1183 && v[1] < 1217 && v[2] > 2483 && v[2] < 2517) }' "$tmp/ir.tsv" \
    && ok || bad "ir bands: $(grep '^# bands' "$tmp/ir.tsv")"
# absolute intensity: a mode mu = m0 cos(w t) is a thermal harmonic mode with
# A = N_A m0^2 w^2 / (24 eps0 c^2 k T) (m/mol; /1000 for km/mol), T = 300 K
awk 'BEGIN { pi = 3.14159265358979323846 }
     !/^#/ { if (n > 0 && $1 > 1100 && $1 < 1300) s += 0.5 * ($2 + p) * ($1 - q); if ($1 > 2400 && $1 < 2600 && n > 0) s2 += 0.5 * ($2 + p) * ($1 - q); p = $2; q = $1; n++ }
     END { w = 2 * pi * 299792458 * 100 * 1200; m0 = 0.05 * 8.4783536255e-30;
           ref = 6.02214076e23 * m0 * m0 * w * w / (24 * 8.8541878128e-12 * 299792458^2 * 1.380649e-23 * 300) / 1000;
           r2 = (0.02 * 2500 / (0.05 * 1200))^2;
           exit !(s / ref > 0.995 && s / ref < 1.005 && s2 / s / r2 > 0.99 && s2 / s / r2 < 1.01) }' "$tmp/ir.tsv" \
    && ok || bad "ir band intensities (km/mol)"
awk '!/^#/ { last = $1 } END { exit !(last <= 4000 && last > 3990) }' "$tmp/ir.tsv" && ok || bad "rows end at 4000 cm^-1"
head -1 "$tmp/ir.svg" | grep -q '^<?xml' && grep -q 'wavenumber (cm^-1)' "$tmp/ir.svg" && grep -q '</svg>' "$tmp/ir.svg" \
    && ok || bad "svg"
# --dt equal to the keys gives the same rows; units: debye input scaled gives the same spectrum
$S ir "$tmp/t.xyz" --dt 1 --key dip -o "$tmp/ir2.tsv" 2>/dev/null
grep -v '^#' "$tmp/ir2.tsv" > "$tmp/r2"
grep -v '^#' "$tmp/ir.tsv" | cmp -s - "$tmp/r2" && ok || bad "--dt 1 differs from the time keys"
sed -e 's/time=[0-9.]*//' "$tmp/t.xyz" > "$tmp/notime.xyz"
$S ir "$tmp/notime.xyz" --dt 1 --key dip -o "$tmp/ir3.tsv" 2>/dev/null && grep -v '^#' "$tmp/ir3.tsv" | cmp -s - "$tmp/r2" \
    && ok || bad "--dt without time keys"
$S ir "$tmp/notime.xyz" --dt 1 --key dip --max-wavenumber 3000 -o "$tmp/ir4.tsv" 2>/dev/null
awk '!/^#/ { last = $1 } END { exit !(last <= 3000 && last > 2990) }' "$tmp/ir4.tsv" && ok || bad "--max-wavenumber"
awk '{ gsub(/dip="/, "dipD=\""); print }' "$tmp/t.xyz" | awk 'BEGIN{OFS=""} /dipD=/ {
    match($0, /dipD="[^"]*"/); s = substr($0, RSTART + 6, RLENGTH - 7); split(s, v, " ");
    $0 = substr($0, 1, RSTART - 1) sprintf("dipD=\"%.12f %.12f %.12f\"", v[1] * 2.541746473, v[2] * 2.541746473, v[3] * 2.541746473) substr($0, RSTART + RLENGTH) } { print }' > "$tmp/debye.xyz"
$S ir "$tmp/debye.xyz" --key dipD --unit debye -o "$tmp/ird.tsv" 2>/dev/null
grep -v '^#' "$tmp/ird.tsv" > "$tmp/rd"
paste "$tmp/r2" "$tmp/rd" | awk '{ d = $2 - $4; if (d < 0) d = -d; if (d > m) m = d; if ($2 > mx) mx = $2 } END { exit !(NR > 100 && m <= 1e-8 * mx) }' \
    && ok || bad "--unit debye does not reproduce the au spectrum"
# quantum corrections change the spectrum by the named factor: standard at 1200 cm^-1
$S ir "$tmp/t.xyz" --key dip --correction standard -o "$tmp/irs.tsv" 2>/dev/null
grep -v '^#' "$tmp/irs.tsv" | paste "$tmp/r2" - | awk '$1 > 1199 && $1 < 1201 { x = $1 / (0.6950348004 * 300);
    f = 2 * (1 - exp(-x)) / (x * (1 + exp(-x))); r = $4 / $2; exit !(r / f > 0.999999 && r / f < 1.000001) }' \
    && ok || bad "--correction standard factor"
# raman: iso band at 1500 only, aniso at 800 only
$S raman "$tmp/t.xyz" --key pol --temperature 0 -o "$tmp/ra.tsv" --svg "$tmp/ra.svg" 2>"$tmp/err" && ok || bad "raman: $(cat "$tmp/err")"
grep -q '^# wavenumber_cm-1	iso_bohr6_per_cm-1	aniso_bohr6_per_cm-1	total_bohr6_per_cm-1$' "$tmp/ra.tsv" && ok || bad "raman header"
awk '!/^#/ { if ($2 > mi) { mi = $2; ni = $1 } if ($3 > ma) { ma = $3; na = $1 } }
     END { exit !(ni > 1490 && ni < 1510 && na > 790 && na < 810) }' "$tmp/ra.tsv" && ok || bad "raman iso/aniso band positions"
# iso band integral = <da^2>/2 = 0.5^2/4, aniso = (2/15) <tr beta^2>/2 = 0.3^2/15 (no Bose factor)
awk '!/^#/ { if (n > 0) { if ($1 > 1400 && $1 < 1600) si += 0.5 * ($2 + p2) * ($1 - q);
                          if ($1 > 700 && $1 < 900) sa += 0.5 * ($3 + p3) * ($1 - q) } p2 = $2; p3 = $3; q = $1; n++ }
     END { exit !(si / 0.0625 > 0.995 && si / 0.0625 < 1.005 && sa / 0.006 > 0.995 && sa / 0.006 < 1.005) }' "$tmp/ra.tsv" \
    && ok || bad "raman band integrals"
$S raman "$tmp/t.xyz" --key pol --excitation 532 -o "$tmp/ra2.tsv" 2>/dev/null && grep -q 'excitation 532 nm' "$tmp/ra2.tsv" \
    && grep -q 'Bose factor x/(1-exp(-x))' "$tmp/ra2.tsv" && ok || bad "raman --excitation / Bose header"
# A3 input = au input / 0.1481847114806
awk '/pol="/ { match($0, /pol="[^"]*"/); s = substr($0, RSTART + 5, RLENGTH - 6); n = split(s, v, " "); o = "";
    for (i = 1; i <= n; i++) o = o sprintf("%s%.12f", i > 1 ? " " : "", v[i] * 0.1481847114806);
    $0 = substr($0, 1, RSTART - 1) "pol=\"" o "\"" substr($0, RSTART + RLENGTH) } { print }' "$tmp/t.xyz" > "$tmp/a3.xyz"
$S raman "$tmp/a3.xyz" --key pol --unit A3 --temperature 0 -o "$tmp/ra3.tsv" 2>/dev/null
grep -v '^#' "$tmp/ra.tsv" > "$tmp/q1"; grep -v '^#' "$tmp/ra3.tsv" > "$tmp/q3"
paste "$tmp/q1" "$tmp/q3" | awk '{ d = $4 - $8; if (d < 0) d = -d; if (d > m) m = d; if ($4 > mx) mx = $4 } END { exit !(NR > 100 && m <= 1e-8 * mx) }' \
    && ok || bad "--unit A3 does not reproduce the au spectrum"
$S --help | grep -q 'cm^-1' && ok || bad "--help"

# -m MODEL: a tiny EANN dipole model; the spectrum equals that of the predictions
# written by `eann predict` (when the eann program is built)
if [ -x "$B/eann" ]; then
    awk 'BEGIN { pi = 3.14159265358979323846; c = 2.99792458e-5;
      for (f = 0; f < 300; f++) { t = f * 0.5; d = 0.05 * cos(2 * pi * c * 1700 * t);
        printf "3\nProperties=species:S:1:pos:R:3 mu=\"%.6f %.6f 0\"\nO 0 0 0\nH %.6f 0.75 0\nH %.6f -0.75 0.05\n",
          0.4 + d, 0.1 * d, 0.95 + d, 0.95 - d } }' > "$tmp/w.xyz"
    $B/eann train --train "$tmp/w.xyz" --target dipole --key mu --hidden 8 --nwave 4 --epochs 3 --quiet -o "$tmp/m.eann" 2>/dev/null
    $B/eann predict -m "$tmp/m.eann" "$tmp/w.xyz" -o "$tmp/wp.xyz" 2>/dev/null
    $S ir "$tmp/w.xyz" --dt 0.5 -m "$tmp/m.eann" -o "$tmp/m1.tsv" 2>/dev/null && ok || bad "ir -m EANN model"
    $S ir "$tmp/wp.xyz" --dt 0.5 --key eann_dipole -o "$tmp/m2.tsv" 2>/dev/null
    grep -v '^#' "$tmp/m2.tsv" > "$tmp/mr2"
    grep -v '^#' "$tmp/m1.tsv" | paste - "$tmp/mr2" | awk '{ d = $2 - $4; if (d < 0) d = -d; if (d > m) m = d; if ($2 > mx) mx = $2 } END { exit !(NR > 10 && m <= 1e-9 * mx) }' \
        && ok || bad "-m EANN differs from eann predict + --key"
    grep -q 'predicted by EANN dipole model' "$tmp/m1.tsv" && ok || bad "model named in the header"
    $S raman "$tmp/w.xyz" --dt 0.5 -m "$tmp/m.eann" -o "$tmp/out.tsv" 2>"$tmp/err"; [ $? -ne 0 ] && grep -q 'needs a polarizability model' "$tmp/err" \
        && ok || bad "raman with a dipole model: $(cat "$tmp/err")"
fi

# -m MODEL with a (classical) QEq model of the kqeq program: dipoles and R A R^T
# polarizabilities equal those written by `kqeq predict` (dipole in debye there)
if [ -x "$B/kqeq" ] && [ -f "$tmp/w.xyz" ]; then
    $B/kqeq train --model qeq --train "$tmp/w.xyz" --dipole-key mu --quiet -o "$tmp/q.model" > /dev/null 2>&1
    $B/kqeq predict -m "$tmp/q.model" "$tmp/w.xyz" -o "$tmp/wq.xyz" 2>/dev/null
    for kind in ir raman; do
        key="kqeq_dipole --unit debye"; [ $kind = raman ] && key=kqeq_polarizability
        $S $kind "$tmp/w.xyz" --dt 0.5 -m "$tmp/q.model" -o "$tmp/q1.tsv" 2>/dev/null && ok || bad "$kind -m QEq model"
        $S $kind "$tmp/wq.xyz" --dt 0.5 --key $key -o "$tmp/q2.tsv" 2>/dev/null
        grep -v '^#' "$tmp/q2.tsv" > "$tmp/qr2"
        grep -v '^#' "$tmp/q1.tsv" | paste - "$tmp/qr2" | awk -v h=$([ $kind = raman ] && echo 4 || echo 2) '{
            n = NF / 2; d = $h - $(h + n); if (d < 0) d = -d; if (d > m) m = d; if ($h > mx) mx = $h }
            END { exit !(NR > 10 && mx > 0 && m <= 1e-8 * mx) }' && ok || bad "$kind -m QEq differs from kqeq predict + --key"
    done
fi

# -o to a FIFO (as to /dev/null): written in place, the FIFO stays a FIFO (a rename over
# it would replace it by a plain file)
if mkfifo "$tmp/fifo" 2>/dev/null; then
    timeout 20 cat "$tmp/fifo" > "$tmp/fifo.out" &  # never hangs the test
    $S ir "$tmp/t.xyz" --key dip -o "$tmp/fifo" 2>/dev/null
    wait
    [ -p "$tmp/fifo" ] && grep -q '^# wavenumber_cm-1' "$tmp/fifo.out" && ok || bad "-o FIFO"
fi

# bad inputs: one line, non-zero exit, no output, an existing output untouched
expect_fail() { # what, pattern, args...
    what=$1; pat=$2; shift 2
    echo keep > "$tmp/out.tsv"
    if "$S" "$@" > /dev/null 2> "$tmp/err"; then bad "$what: exit 0"; return; fi
    [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q -- "$pat" "$tmp/err" && ok || bad "$what: $(cat "$tmp/err")"
    [ "$(cat "$tmp/out.tsv")" = keep ] && ok || bad "$what: output overwritten"
    ls "$tmp" | grep -q '\.tmp\.' && bad "$what: temporary file left behind" || ok
}
awk 'NR == 2 + 4 * 7 { sub(/time=7.0/, "time=7.5") } { print }' "$tmp/t.xyz" > "$tmp/uneq.xyz"
expect_fail "unequal spacing" "uneq.xyz:30: frames are not equally spaced in 'time'" ir "$tmp/uneq.xyz" --key dip -o "$tmp/out.tsv"
awk 'NR == 2 + 4 * 3 { sub(/time=3.0 /, "") } { print }' "$tmp/t.xyz" > "$tmp/notime3.xyz"
expect_fail "time key missing in one frame" "notime3.xyz:14: key 'time' is missing in this frame" ir "$tmp/notime3.xyz" --key dip -o "$tmp/out.tsv"
expect_fail "--dt against time keys" "the frame's time step 1 fs differs from --dt 2 fs" ir "$tmp/t.xyz" --dt 2 --key dip -o "$tmp/out.tsv"
expect_fail "no time step" "no time step: give --dt" ir "$tmp/notime.xyz" --key dip -o "$tmp/out.tsv"
awk 'NR == 2 + 4 * 5 { sub(/ dip="[^"]*"/, "") } { print }' "$tmp/t.xyz" > "$tmp/nokey.xyz"
expect_fail "missing key" "nokey.xyz:21: key 'dip' is missing" ir "$tmp/nokey.xyz" --key dip -o "$tmp/out.tsv"
expect_fail "wrong length" "t.xyz:1: key 'pol' has 9 numbers, expected 3" ir "$tmp/t.xyz" --key pol -o "$tmp/out.tsv"
expect_fail "bad unit" "--unit for ir must be" ir "$tmp/t.xyz" --key dip --unit A3 -o "$tmp/out.tsv"
expect_fail "bad window" "--window must be" ir "$tmp/t.xyz" --key dip --window kaiser -o "$tmp/out.tsv"
expect_fail "bad correction" "--correction must be" ir "$tmp/t.xyz" --key dip --correction quantum -o "$tmp/out.tsv"
expect_fail "key and model" "exactly one of --key KEY and -m MODEL" ir "$tmp/t.xyz" --key dip -m "$tmp/t.xyz" -o "$tmp/out.tsv"
expect_fail "not a model" "t.xyz:1: not an EANN" ir "$tmp/notime.xyz" --dt 1 -m "$tmp/t.xyz" -o "$tmp/out.tsv"
expect_fail "missing file" "cannot open" ir "$tmp/none.xyz" --dt 1 --key dip -o "$tmp/out.tsv"
head -4 "$tmp/t.xyz" > "$tmp/one.xyz"
expect_fail "one frame" "a spectrum needs at least 2 frames" ir "$tmp/one.xyz" --dt 1 --key dip -o "$tmp/out.tsv"
printf '2\nProperties=species:S:1:pos:R:3 dip="0 0 nan"\nH 0 0 0\nH 1 0 0\n' > "$tmp/nan.xyz"
expect_fail "NaN dipole" "nan.xyz:2:" ir "$tmp/nan.xyz" --dt 1 --key dip -o "$tmp/out.tsv"
expect_fail "ir at 0 K" "ir needs --temperature > 0 K" ir "$tmp/t.xyz" --dt 1 --key dip --temperature 0 -o "$tmp/out.tsv"
head -30 "$tmp/t.xyz" > "$tmp/trunc.xyz"
expect_fail "truncated frame" "trunc.xyz:29: frame declares 2 atoms but the file ends after 0 atom lines" ir "$tmp/trunc.xyz" --key dip -o "$tmp/out.tsv"
expect_fail "negative dt" "--dt: '-1' is not a positive time step" ir "$tmp/t.xyz" --dt -1 --key dip -o "$tmp/out.tsv"
expect_fail "unknown command" "unknown command 'uv'" uv "$tmp/t.xyz"
expect_fail "-o over the trajectory" "would overwrite the trajectory" ir "$tmp/out.tsv" --dt 1 --key dip -o "$tmp/out.tsv"
printf '2\nProperties=species:S:1:pos:R:3 dip="0 0 1" pbc="T T T" Lattice="9 0 0 0 9 0 0 0 9"\nH 0 0 0\nH 1 0 0\n2\nProperties=species:S:1:pos:R:3 dip="0 0 1"\nH 0 0 0\nH 1 0 0\n' > "$tmp/pbc.xyz"
expect_fail "periodic frame" "pbc.xyz:1: periodic frame" ir "$tmp/pbc.xyz" --dt 1 --key dip -o "$tmp/out.tsv"
printf '0\nProperties=species:S:1:pos:R:3 dip="0 0 1"\n' > "$tmp/empty.xyz"
expect_fail "frame without atoms" "empty.xyz:1: frame without atoms" ir "$tmp/empty.xyz" --dt 1 --key dip -o "$tmp/out.tsv"
if "$S" --version | grep -q '^spectrum (tensorial [0-9]'; then ok; else bad "spectrum --version"; fi
echo "test_spectrum_cli: $np passed, $nf failed"
[ "$nf" -eq 0 ]
