#!/bin/sh
# SPDX-License-Identifier: MIT
# Integrity test of the shipped datasets (data/), run from the repository root.
# - data/SHA256SUMS matches every listed file;
# - each file of data/COUNTS has the stated number of frames, every frame has the stated
#   keys, every number of every frame (all key values except the strings smiles/split/pbc,
#   and the positions) is a finite decimal number (no nan/inf), the atom count matches,
#   species are H C N O F; every .xyz under data/ (except data/make/) is listed in COUNTS;
# - the splits are disjoint: qm9like train/valid/test by id and by SMILES, NMA
#   train_T300/train_T500/test by (md_temp, md_frame); the NMA frames of the organic
#   PBE0 subset and of nma_b3lyp come from the right place (B3LYP frames are test frames);
#   the chunk files with a `split` key (nma_tdm, qm9like/pbe0) split completely into
#   frames of the split files they name (data/select.sh, whose refusals are tested too).
# - nma_tdm (issue 17: per-state labels): every frame has n->pi* or pi->pi* keys, each state
#   all four of its keys (tdm_, exc_, osc_, root_) or none, no frame twice;
# - with /usr/bin/python3 and numpy (skipped with a message otherwise): the splits are those
#   of the fixed seeds (NMA 80/20, numpy default_rng(20261121); qm9like default_rng(4242);
#   the pbe0 and nma_tdm chunk selections), the labelled frames' atoms are byte-identical to
#   the split files', nma_tdm frames missing a state are listed in the chunk's .ambiguous.tsv,
#   the sign conventions hold and f = 2/3 dE |t|^2 matches the printed oscillator strengths;
# - mutation check: a temp copy with one NaN, one with a wrong count and one with a wrong
#   split key must each fail (run with TEST_DATA_NO_MUTATION=1 inside).
# POSIX sh + awk + sha256sum (+ optional python).  Prints "test_data: N passed, N failed".
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
                    for (j = 1; j <= nk; j++)
                        if (val($0, K[j]) == "\001" && bad == "") bad = "key " K[j] " missing, line " NR
                    # every key=value of the line, listed in COUNTS or not, must be finite
                    h = $0
                    while (match(h, /[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|[^ "]*)/)) {
                        if (substr(h, 1, RSTART - 1) ~ /[^ ]/ && bad == "") bad = "stray text \"" substr(h, 1, RSTART - 1) "\", line " NR
                        kv = substr(h, RSTART, RLENGTH); h = substr(h, RSTART + RLENGTH)
                        k = substr(kv, 1, index(kv, "=") - 1); v = substr(kv, index(kv, "=") + 1)
                        if (k == "Properties" || k == "pbc" || k == "smiles" || k == "split") continue
                        gsub(/"/, "", v)
                        m = split(v, T, " ")
                        if (m == 0 && bad == "") bad = "empty " k ", line " NR
                        for (t = 1; t <= m; t++) if (!num(T[t]) && bad == "") bad = "non-finite " k " (" T[t] "), line " NR
                    }
                    if (h ~ /[^ ]/ && bad == "") bad = "unparsed header text \"" h "\", line " NR
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
                if (want != "any" && n != want && bad == "") bad = n " frames, expected " want
                print bad
            }' "$D/$file")
        if [ -z "$msg" ]; then ok; else ko "$file: $msg"; fi
    done <<EOF
$(cat "$D/COUNTS"
  # the raw qm9like chunks are shipped but not in COUNTS: checked for finiteness, any count
  for f in "$D"/qm9like/chunks/chunk_*.xyz; do
      [ -f "$f" ] && echo "qm9like/chunks/${f##*/} any id,smiles,charge,xtb_dipole,xtb_energy,xtb_gap"
  done)
EOF

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
    awk '{ print $1 }' "$D/COUNTS" | sort > "$W/listed"
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
    # every shipped extended-XYZ file is checked (listed in COUNTS, or a raw qm9like chunk)
    unl=$(cd "$D" && find . -path ./make -prune -o -path ./qm9like/chunks -prune -o -name '*.xyz' -print | sed 's|^\./||' | sort | comm -23 - "$W/listed" | head -n 1)
    if [ -z "$unl" ]; then ok; else ko "$unl is not listed in $D/COUNTS (run sh data/make/finalize.sh)"; fi
    # nma_tdm: per-state keys (issue 17)
    if ls "$D"/nma_tdm/chunk_*.xyz >/dev/null 2>&1; then
        msg=$(awk '
            { if (skip > 0) { skip--; next } }
            /^[0-9]+$/ {
                skip = $1; getline h; h = h " "; n = 0
                for (s = 1; s <= 2; s++) {
                    st = s == 1 ? "npi" : "pipi"; c = 0
                    c += index(h, " tdm_" st "=") > 0; c += index(h, " exc_" st "_ev=") > 0
                    c += index(h, " osc_" st "=") > 0; c += index(h, " root_" st "=") > 0
                    if (c != 0 && c != 4 && bad == "") bad = FILENAME ":" FNR ": " c " of the 4 " st " keys"
                    n += c
                }
                if (n == 0 && bad == "") bad = FILENAME ":" FNR ": neither state labelled"
                t = h; sub(/.* md_temp=/, "", t); sub(/ .*/, "", t); f = h; sub(/.* md_frame=/, "", f); sub(/ .*/, "", f)
                if ((t ":" f) in seen && bad == "") bad = "frame " t ":" f " twice"
                seen[t ":" f] = 1
            }
            END { print bad }' "$D"/nma_tdm/chunk_*.xyz)
        if [ -z "$msg" ]; then ok; else ko "nma_tdm: $msg"; fi
    fi
    # the fixed-seed splits and the chunk selections, recomputed by the generators' own code
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
        /usr/bin/python3 - "$D" > "$W/py" 2>&1 <<'EOF'
import glob, os, sys
import numpy as np
D = sys.argv[1]
sys.path.insert(0, 'data/make')
import nma_split, split_qm9like, nma_tdm

def res(name, ok, why=''):
    print(('ok ' if ok else 'FAIL ') + name + ('' if ok else ': ' + why))

def frames(path):  # [(header, atom text)] of an extended-XYZ file
    lines, out, i = open(path).read().split('\n'), [], 0
    while i < len(lines) and lines[i].strip():
        n = int(lines[i]); out.append((lines[i + 1], '\n'.join(lines[i + 2:i + 2 + n]))); i += n + 2
    return out

def info(h, k):
    v = (' ' + h).split(' %s=' % k, 1)
    if len(v) < 2:
        return None
    v = v[1]
    return v[1:].split('"', 1)[0] if v.startswith('"') else v.split(' ', 1)[0]

def key(h):
    return (int(info(h, 'md_temp')), int(info(h, 'md_frame')))

# NMA: 80/20 with numpy default_rng(20261121) over the 10200 keys
nma = {s: {key(h): a for h, a in frames(os.path.join(D, 'nma', s + '.xyz'))} for s in ('train_T300', 'train_T500', 'test')}
allk = set().union(*nma.values())
tk = nma_split.test_keys()
res('nma split seed', set(nma['test']) == allk & tk and not (set(nma['train_T300']) | set(nma['train_T500'])) & tk
    and all(T == 300 for T, _ in nma['train_T300']) and all(T == 500 for T, _ in nma['train_T500']),
    'test.xyz is not the test part of default_rng(%d)' % nma_split.SEED)
res('nma split 80/20', len(allk) != 10200 or len(nma['test']) == 2040, '%d test of %d' % (len(nma['test']), len(allk)))
# qm9like: default_rng(4242) order, 1000 test, 1000 valid
q = {s: [int(info(h, 'id')) for h, _ in frames(os.path.join(D, 'qm9like', s + '.xyz'))] for s in ('train', 'valid', 'test')}
tr, va, te = split_qm9like.split_ids(q['train'] + q['valid'] + q['test'])
res('qm9like split seed', (sorted(q['train']), sorted(q['valid']), sorted(q['test'])) == (tr, va, te),
    'train/valid/test differ from split_ids (seed %d)' % split_qm9like.SEED)
# qm9like/pbe0: chunk c = molecules 12c.. of train, 4c.. of valid and test, in the seed's order
rank = {int(i): r for r, i in enumerate(np.random.default_rng(split_qm9like.SEED).permutation(split_qm9like.N_CANDIDATES))}
order = {s: sorted(q[s], key=lambda i: rank[i]) for s in q}
bad = []
for p in sorted(glob.glob(os.path.join(D, 'qm9like', 'pbe0', 'chunk_*.xyz'))):
    c = int(p[-7:-4])
    want = [(s, i) for s, k in (('train', 12), ('valid', 4), ('test', 4)) for i in order[s][k * c:k * (c + 1)]]
    got = [(info(h, 'split'), int(info(h, 'id'))) for h, _ in frames(p)]
    if got != want:
        bad.append(os.path.basename(p))
res('qm9like/pbe0 selection', not bad, ' '.join(bad))
# nma_b3lyp: NMA test frames, atoms verbatim
bad = [os.path.basename(p) for p in sorted(glob.glob(os.path.join(D, 'nma_b3lyp', 'chunk_*.xyz')))
       if any(nma['test'].get(key(h)) != a for h, a in frames(p))]
res('nma_b3lyp atoms = nma/test.xyz', not bad, ' '.join(bad))
# nma_tdm: chunk k = its fixed selection (8 train + 2 test) in order, atoms verbatim; a frame
# missing from the chunk is in .excluded.tsv (chunks made before issue 17) or has both states
# in .ambiguous.tsv; a missing state is in .ambiguous.tsv; signs; oscillator strengths
nma_tdm.ROOT = D
sel = dict(nma_tdm.selection()) if glob.glob(os.path.join(D, 'nma_tdm', 'chunk_*.xyz')) else {}
bad, sign, osc, ntr, nte = [], [], [], 0, 0
for p in sorted(glob.glob(os.path.join(D, 'nma_tdm', 'chunk_*.xyz'))):
    c, name = int(p[-7:-4]), os.path.basename(p)
    amb, exc = {}, set()
    for ext, store in (('.ambiguous.tsv', amb), ('.excluded.tsv', exc)):
        if os.path.exists(p[:-4] + ext):
            for l in open(p[:-4] + ext).read().split('\n')[1:]:
                if l.strip():
                    t = l.split('\t')
                    if ext == '.excluded.tsv':
                        exc.add((int(t[0]), int(t[1])))
                    else:
                        amb.setdefault((int(t[0]), int(t[1])), set()).add(t[3])
    fr = frames(p)
    got = [key(h) for h, _ in fr]
    want = [(T, f) for _, T, f, _ in sel[c]]
    src = {(T, f): (s, '\n'.join(a)) for s, T, f, a in sel[c]}
    if got != [k for k in want if k in got] or len(set(got)) != len(got):
        bad.append(name + ': frames not of its selection / not in selection order')
    for k in want:
        if k not in got and k not in exc and amb.get(k) != {'npi', 'pipi'}:
            bad.append('%s: T%d_%d neither in the chunk nor listed as excluded' % ((name,) + k))
    for h, a in fr:
        k = key(h)
        if k not in src:
            continue
        if info(h, 'split') != src[k][0] or a != src[k][1]:
            bad.append('%s: T%d_%d split key or atoms differ from data/nma' % ((name,) + k))
        ntr += info(h, 'split') == 'train'; nte += info(h, 'split') == 'test'
        sym = [l.split()[0] for l in a.split('\n')]
        pos = np.array([[float(x) for x in l.split()[1:4]] for l in a.split('\n')])
        n, u = nma_tdm.amide_frame(sym, pos)
        for st, ax in (('npi', n), ('pipi', u)):
            if info(h, 'tdm_' + st) is None:
                if st not in amb.get(k, ()):
                    bad.append('%s: T%d_%d has no %s label and no .ambiguous.tsv line' % ((name,) + k + (st,)))
                continue
            t = np.array([float(x) for x in info(h, 'tdm_' + st).split()])
            if t @ ax < 0:
                sign.append('%s T%d_%d %s' % ((name,) + k + (st,)))
            e, f = float(info(h, 'exc_%s_ev' % st)) / nma_tdm.HARTREE_EV, float(info(h, 'osc_' + st))
            # t has 5 printed decimals: |d f| <= 4/3 e |t| 0.5e-5 sqrt(3) (+ the 4 decimals of e)
            if abs(2.0 / 3.0 * e * (t @ t) - f) > 4.0 / 3.0 * e * np.linalg.norm(t) * 0.9e-5 + 3e-5 * f + 1e-9:
                osc.append('%s T%d_%d %s: 2/3 dE |t|^2 = %.6f, osc %.6f' % ((name,) + k + (st, 2.0 / 3.0 * e * (t @ t), f)))
res('nma_tdm selection, atoms, ambiguity lists', not bad, '; '.join(bad[:3]))
res('nma_tdm split 80/20 (%d train, %d test)' % (ntr, nte), not sel or (ntr > 0 and nte > 0 and all(
    sum(s == 'test' for s, _, _, _ in fr) == 2 and len(fr) == 10 for fr in sel.values())), 'selection is not 8 + 2 per chunk')
res('nma_tdm sign convention', not sign, ' '.join(sign[:3]))
res('nma_tdm oscillator strengths', not osc, '; '.join(osc[:3]))
EOF
        while read -r st rest; do
            case "$st" in ok) ok ;; FAIL) ko "$rest" ;; *) ko "python check: $st $rest" ;; esac
        done < "$W/py"
    else
        echo "test_data: /usr/bin/python3 with numpy not found, split seeds and TDM checks skipped"
    fi
fi
# mutation check: the test must fail on a NaN, a wrong count and a wrong split key (temp copies)
if [ -z "$TEST_DATA_NO_MUTATION" ] && [ -f "$D/COUNTS" ] && [ -f "$D/nma_b3lyp/chunk_000.xyz" ] && [ -f "$D/nma_tdm/chunk_000.xyz" ]; then
    M=$(mktemp -d) || exit 1
    for mut in nan count split; do
        rm -rf "$M/d"; cp -r "$D" "$M/d"
        case $mut in
            nan) # a NaN in a dipole component, checksums updated so only the value is wrong
                sed -i '2s/dft_dipole="[^ "]*/dft_dipole="nan/' "$M/d/nma_b3lyp/chunk_000.xyz"
                want="non-finite dft_dipole" ;;
            count) awk '$1 == "nma_tdm/chunk_000.xyz" { $2 = $2 + 1 } { print }' "$D/COUNTS" > "$M/d/COUNTS"
                want="frames, expected" ;;
            split) sed -i '2s/ split=train / split=test /' "$M/d/nma_tdm/chunk_000.xyz"
                want="not in the split it claims" ;;  # the awk check (the python one fires too)
        esac
        (cd "$M/d" && awk '{print $1}' COUNTS | xargs sha256sum > SHA256SUMS.new && grep -v '\.xyz$' SHA256SUMS >> SHA256SUMS.new && mv SHA256SUMS.new SHA256SUMS)
        out=$(DATA_DIR="$M/d" TEST_DATA_NO_MUTATION=1 sh "$0" 2>&1); rc=$?
        if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q "$want"; then ok
        else ko "mutation '$mut' not caught (exit $rc, wanted '$want'): $(printf '%s\n' "$out" | grep FAIL | head -n 2)"; fi
    done
    rm -rf "$M"
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
