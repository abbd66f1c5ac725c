#!/bin/sh
# SPDX-License-Identifier: MIT
# test_torchscript_convert.sh - tools/eann_from_torchscript.py against the
# published models (optional). Needs ../shared (or $TENSORIAL_SHARED) with
# peers/eann_published_pt/*.pt and eann_nma_published/*.txt, and
# /usr/bin/python3 (or $TENSORIAL_PYTHON) with torch; otherwise prints SKIP.
# For each of dm, pol, tdm_npi, tdm_pipi:
#   1. converting the .pt with the reference's two comment lines gives the
#      reference text byte for byte (so every parameter is the same double);
#   2. with the default comments, every non-comment line is identical;
#   3. `eann predict` with the converted and the published text gives
#      byte-identical outputs on reference_20.xyz, and they match the original
#      models' outputs stored in that file to 1e-12 (FORMAT.md sect. 6).
# Also: bad input gives one line and a non-zero exit and writes nothing.
# The converted weights live only in a temporary folder (never in the project).
B=${B:-build}
export PYTHONDONTWRITEBYTECODE=1
PY=${TENSORIAL_PYTHON:-/usr/bin/python3}
SH=${TENSORIAL_SHARED:-../shared}
PT=$SH/peers/eann_published_pt
REF=$SH/eann_nma_published
skip() { echo "SKIP: $1"; echo "test_torchscript_convert: 0 passed, 0 failed, 1 skipped"; exit 0; }
[ -d "$PT" ] || skip "$PT absent: published TorchScript models not converted"
[ -d "$REF" ] || skip "$REF absent"
[ -x "$PY" ] && "$PY" -c "import torch" >/dev/null 2>&1 || skip "$PY with torch (python3-torch) not available"
[ -x "$B/eann" ] || { echo "FAIL: $B/eann not built"; echo "test_torchscript_convert: 0 passed, 1 failed"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
np=0; nf=0
ok() { np=$((np + 1)); }
bad() { nf=$((nf + 1)); echo "FAIL test_torchscript_convert: $1"; }
C=tools/eann_from_torchscript.py
# reference_20.xyz without the stored outputs (eann_* keys)
sed -E 's/ eann_[A-Za-z_]+="[^"]*"//g' "$REF/reference_20.xyz" > "$tmp/in20.xyz"
for f in dm pol tdm_npi tdm_pipi; do
    [ -f "$PT/$f.pt" ] && [ -f "$REF/$f.txt" ] || { bad "$f.pt or $f.txt missing"; continue; }
    c1=$(sed -n 2p "$REF/$f.txt"); c2=$(sed -n 3p "$REF/$f.txt")
    if "$PY" $C "$PT/$f.pt" -o "$tmp/$f.txt" --comment "$c1" --comment "$c2" 2>"$tmp/err"; then
        cmp -s "$tmp/$f.txt" "$REF/$f.txt" && ok || bad "$f: converted text differs from $REF/$f.txt"
    else
        bad "$f: converter failed: $(cat "$tmp/err")"
    fi
    if "$PY" $C "$PT/$f.pt" -o "$tmp/${f}_d.txt" 2>"$tmp/err"; then
        grep -v '^#' "$tmp/${f}_d.txt" > "$tmp/a" && grep -v '^#' "$REF/$f.txt" > "$tmp/b"
        cmp -s "$tmp/a" "$tmp/b" && ok || bad "$f: default conversion differs outside the comments"
        grep -q "^# source: $f.pt\$" "$tmp/${f}_d.txt" && ok || bad "$f: default comment does not name the source"
    else
        bad "$f: converter (default comments) failed: $(cat "$tmp/err")"
    fi
    "$B/eann" predict -m "$tmp/${f}_d.txt" "$tmp/in20.xyz" -o "$tmp/p1.xyz" 2>"$tmp/err" || bad "$f: predict with the converted model: $(cat "$tmp/err")"
    "$B/eann" predict -m "$REF/$f.txt" "$tmp/in20.xyz" -o "$tmp/p2.xyz" 2>"$tmp/err" || bad "$f: predict with the published text: $(cat "$tmp/err")"
    [ -s "$tmp/p1.xyz" ] && cmp -s "$tmp/p1.xyz" "$tmp/p2.xyz" && ok || bad "$f: predictions differ between converted and published text"
    # against the original PyTorch outputs stored in reference_20.xyz (the
    # output key is whichever real key predict added, so renaming keys is fine)
    "$PY" - "$tmp/in20.xyz" "$tmp/p1.xyz" "$REF/reference_20.xyz" "$f" <<'PYEOF' && ok || bad "$f: predictions differ from the original models' outputs by more than 1e-12"
import math, re, sys
inp, out, refp, f = sys.argv[1:5]
key = {"dm": "eann_dipole", "pol": "eann_polarizability", "tdm_npi": "eann_tdm_npi", "tdm_pipi": "eann_tdm_pipi"}[f]
def frames(path):
    lines = open(path).read().splitlines()
    i, res = 0, []
    while i < len(lines):
        nat = int(lines[i])
        d = {}
        for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', lines[i + 1]):
            try:
                d[k] = [float(x) for x in v.strip('"').split()]
            except ValueError:
                d[k] = None
        res.append(d)
        i += nat + 2
    return res
fi, fo, fr = frames(inp), frames(out), frames(refp)
worst, n = 0.0, 0
for a, b, r in zip(fi, fo, fr):
    want = r[key]
    new = [v for k, v in b.items() if k not in a and v is not None and len(v) == len(want)]
    if len(new) != 1 or not all(math.isfinite(x) for x in new[0]):
        print("  no unique finite new output of length %d: %s" % (len(want), sorted(set(b) - set(a))))
        sys.exit(1)
    worst = max(worst, max(abs(x - y) for x, y in zip(new[0], want)))
    n += 1
print("  %s: %d frames, largest difference from the original model %.2g" % (f, n, worst))
sys.exit(0 if n == 20 and worst <= 1e-12 else 1)
PYEOF
done
# bad inputs: one line, non-zero exit, no output file
printf 'not a model\n' > "$tmp/bad.pt"
if "$PY" $C "$tmp/bad.pt" -o "$tmp/bad.txt" 2>"$tmp/err"; then bad "a non-model was accepted"; else
    [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "bad.pt" "$tmp/err" && ok || bad "error message: $(cat "$tmp/err")"
fi
[ -e "$tmp/bad.txt" ] && bad "output written for a bad input" || ok
"$PY" $C "$PT/dm.pt" -o "$tmp/m.txt" --masses 1,2 2>"$tmp/err" && bad "--masses with 2 values for 4 species accepted" || ok
echo "test_torchscript_convert: $np passed, $nf failed"
[ "$nf" -eq 0 ]
