#!/bin/sh
# SPDX-License-Identifier: MIT
# Integrity test of the shipped datasets (data/), run from the repository root.
# - data/SHA256SUMS matches every listed file;
# - each file of data/COUNTS has the stated number of frames, every frame has the stated
#   keys, numeric values (keys and positions) are finite decimal numbers, the atom count
#   matches, species are H C N O F;
# - the splits are disjoint: qm9like train/valid/test by id and by SMILES, NMA
#   train_T300/train_T500/test by (md_temp, md_frame); the NMA frames of the organic
#   PBE0 subset and of nma_b3lyp come from the right place (B3LYP frames are test frames);
#   the chunk files with a `split` key (nma_tdm, qm9like/pbe0) split completely into
#   frames of the split files they name (data/select.sh, whose refusals are tested too).
# POSIX sh + awk + sha256sum only.  Prints "test_data: N passed, N failed".
D=${DATA_DIR:-data}
pass=0; fail=0
ok() { pass=$((pass + 1)); }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }

if [ ! -f "$D/SHA256SUMS" ] || [ ! -f "$D/COUNTS" ]; then
    ko "missing $D/SHA256SUMS or $D/COUNTS"
else
    if (cd "$D" && sha256sum -c --quiet SHA256SUMS >/dev/null 2>&1); then ok
    else ko "checksums: (cd $D && sha256sum -c SHA256SUMS) fails"; fi

    while read -r file frames keys; do
        [ -n "$file" ] || continue
        if [ ! -f "$D/$file" ]; then ko "$file missing"; continue; fi
        msg=$(awk -v want="$frames" -v keys="$keys" '
            function val(h, k,   i, s) {
                i = index(" " h, " " k "=")
                if (i == 0) return "\001"
                s = substr(h, i + length(k) + 1)
                if (substr(s, 1, 1) == "\"") { s = substr(s, 2); return substr(s, 1, index(s, "\"") - 1) }
                i = index(s, " "); return i ? substr(s, 1, i - 1) : s
            }
            function num(x) { return x ~ /^[-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ }
            BEGIN { nk = split(keys, K, ","); n = 0; bad = "" }
            {
                if (hdr) {
                    hdr = 0
                    for (j = 1; j <= nk; j++) {
                        v = val($0, K[j])
                        if (v == "\001") { if (bad == "") bad = "key " K[j] " missing, line " NR; continue }
                        if (K[j] == "smiles" || K[j] == "split") continue
                        m = split(v, T, " ")
                        if (m == 0 && bad == "") bad = "empty " K[j] ", line " NR
                        for (t = 1; t <= m; t++) if (!num(T[t]) && bad == "") bad = "non-finite " K[j] ", line " NR
                    }
                    next
                }
                if (rem > 0) {
                    rem--
                    if (NF != 4 || $1 !~ /^(H|C|N|O|F)$/ || !num($2) || !num($3) || !num($4))
                        if (bad == "") bad = "bad atom line " NR
                    next
                }
                if ($0 !~ /^[0-9]+$/) { if (bad == "") bad = "bad atom count, line " NR; exit }
                n++; rem = $1; hdr = 1
            }
            END {
                if (rem > 0 && bad == "") bad = "truncated frame"
                if (n != want && bad == "") bad = n " frames, expected " want
                print bad
            }' "$D/$file")
        if [ -z "$msg" ]; then ok; else ko "$file: $msg"; fi
    done < "$D/COUNTS"

    # disjoint splits
    ids() { # file key -> values of key, one per frame
        [ -f "$1" ] || return 0
        awk -v k="$2" '
            hdr { hdr = 0; i = index(" " $0, " " k "="); s = substr($0, i + length(k) + 1)
                  if (substr(s, 1, 1) == "\"") { s = substr(s, 2); print substr(s, 1, index(s, "\"") - 1) }
                  else { j = index(s, " "); print (j ? substr(s, 1, j - 1) : s) }
                  next }
            rem > 0 { rem--; next }
            { rem = $1; hdr = 1 }' "$1"
    }
    for key in id smiles; do
        dup=$(for s in train valid test; do ids "$D/qm9like/$s.xyz" $key | sort -u; done | sort | uniq -d | head -n 1)
        if [ -z "$dup" ]; then ok; else ko "qm9like splits share $key $dup"; fi
    done
    W=$(mktemp -d) || exit 1
    trap 'rm -rf "$W"' EXIT
    nmakeys() { # file -> "md_temp:md_frame" per frame
        [ -f "$1" ] || return 0
        ids "$1" md_temp > "$W/t"; ids "$1" md_frame > "$W/f"; paste -d: "$W/t" "$W/f"
    }
    dup=$(for s in train_T300 train_T500 test; do nmakeys "$D/nma/$s.xyz" | sort -u; done | sort | uniq -d | head -n 1)
    if [ -z "$dup" ]; then ok; else ko "NMA splits share frame $dup"; fi
    if ls "$D"/nma_b3lyp/chunk_*.xyz >/dev/null 2>&1 && [ -f "$D/nma/test.xyz" ]; then
        nmakeys "$D/nma/test.xyz" | sort -u > "$W/test"
        out=$(for f in "$D"/nma_b3lyp/chunk_*.xyz; do nmakeys "$f"; done | sort -u | comm -23 - "$W/test" | head -n 1)
        if [ -z "$out" ]; then ok; else ko "nma_b3lyp frame $out is not an NMA test frame"; fi
    fi
    # chunk files that mix splits (key `split`): data/select.sh takes them apart; every
    # frame is in exactly one split, and in the split file it claims
    sel() { sh data/select.sh "$@" 2>/dev/null; }
    if ls "$D"/nma_tdm/chunk_*.xyz >/dev/null 2>&1 && [ -f "$D/nma/test.xyz" ]; then
        all=$(for f in "$D"/nma_tdm/chunk_*.xyz; do nmakeys "$f"; done | wc -l)
        sel split train "$D"/nma_tdm/chunk_*.xyz > "$W/tr.xyz"
        sel split test "$D"/nma_tdm/chunk_*.xyz > "$W/te.xyz"
        ntr=$(nmakeys "$W/tr.xyz" | wc -l); nte=$(nmakeys "$W/te.xyz" | wc -l)
        if [ "$ntr" -gt 0 ] && [ "$nte" -gt 0 ] && [ $((ntr + nte)) -eq "$all" ]; then ok
        else ko "nma_tdm: $ntr train + $nte test frames, $all in all"; fi
        for s in train_T300 train_T500; do nmakeys "$D/nma/$s.xyz"; done | sort -u > "$W/train"
        nmakeys "$D/nma/test.xyz" | sort -u > "$W/test"
        out=$(nmakeys "$W/tr.xyz" | sort -u | comm -23 - "$W/train" | head -n 1)
        out2=$(nmakeys "$W/te.xyz" | sort -u | comm -23 - "$W/test" | head -n 1)
        if [ -z "$out$out2" ]; then ok; else ko "nma_tdm frame $out$out2 is not in the split it claims"; fi
    fi
    if ls "$D"/qm9like/pbe0/chunk_*.xyz >/dev/null 2>&1; then
        miss=""
        for s in train valid test; do
            sel split $s "$D"/qm9like/pbe0/chunk_*.xyz > "$W/p.xyz"
            ids "$D/qm9like/$s.xyz" id | sort -u > "$W/ids"
            out=$(ids "$W/p.xyz" id | sort -u | comm -23 - "$W/ids" | head -n 1)
            [ -z "$out" ] || miss="$miss $s:$out"
        done
        if [ -z "$miss" ]; then ok; else ko "qm9like/pbe0 molecules not in their split:$miss"; fi
    fi
fi
# data/select.sh refuses damaged input (FILE:LINE on stderr, exit 1, nothing on stdout)
T=$(mktemp -d) || exit 1
printf '1\nk=v\nH 0 0 0\n2\nk=v\nH 0 0 0\n' > "$T/cut.xyz"
printf '1\nk=v\nH 0 0 0\nzz\n' > "$T/count.xyz"
for c in cut:4 count:4; do
    f=$T/${c%%:*}.xyz
    out=$(sh data/select.sh k v "$f" 2> "$T/err"); rc=$?
    if [ $rc -eq 1 ] && [ -z "$out" ] && grep -q "^$f:${c#*:}: " "$T/err"; then ok
    else ko "select.sh on $f: exit $rc, stdout '$out', stderr '$(cat "$T/err")'"; fi
done
out=$(printf '1\nk="v" a=1\nH 0 0 0\n1\nk=w\nH 1 0 0\n' > "$T/ok.xyz"; sh data/select.sh k v "$T/ok.xyz")
if [ "$out" = "$(printf '1\nk="v" a=1\nH 0 0 0')" ]; then ok; else ko "select.sh k v: got '$out'"; fi
rm -rf "$T"
echo "test_data: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
