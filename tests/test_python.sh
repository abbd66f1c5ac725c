#!/bin/sh
# SPDX-License-Identifier: MIT
# test_python.sh - the Python package python/tensorial (ctypes + NumPy) and its
# ASE calculator against the C programs (optional: needs /usr/bin/python3 or
# $TENSORIAL_PYTHON with numpy and ase; otherwise prints SKIP).
#   1. KQEq.predict and tensorial.ase.Calculator on 40 QM9-like molecules
#      (neutral and charged) equal `kqeq predict --dipole-unit au` bit for bit:
#      charges, dipole (e*bohr), polarizability (bohr^3); the calculator's
#      get_dipole_moment() equals dipole_au * 0.529177210903 (e*angstrom) and
#      results["polarizability"] equals polarizability_au * B*B*B bitwise; a
#      QEq model too.
#   2. EANN.predict and the calculator equal `eann predict` bit for bit for
#      small dipole, tdm and polarizability models trained here (and for the
#      published models when ../shared is present).
#   3. SOAP(...).create equals `kqeq soap` bit for bit (default and explicit
#      sigma), has DScribe's length and get_location blocks, and matches
#      DScribe's own vectors in ../shared/soap_ref (when present) to 1e-7.
#   4. kQEq's polarizability of a planar molecule is exactly zero
#      perpendicular to the plane; charges sum to the total charge.
#   5. Errors: no library -> LibraryNotFound naming TENSORIAL_LIB and `make`;
#      a damaged model -> ValueError "FILE:LINE: ..."; an unknown element.
# Run from the repository root after `make`.
B=${B:-build}
export PYTHONDONTWRITEBYTECODE=1
PY=${TENSORIAL_PYTHON:-/usr/bin/python3}
SH=${TENSORIAL_SHARED:-../shared}
skip() { echo "SKIP: $1"; echo "test_python: 0 passed, 0 failed, 1 skipped"; exit 0; }
[ -x "$PY" ] || skip "$PY not found"
"$PY" -c "import numpy" >/dev/null 2>&1 || skip "$PY has no numpy (python3-numpy)"
"$PY" -c "import ase.io" >/dev/null 2>&1 || skip "$PY has no ase (python3-ase)"
SO=$B/libtensorial.so
if ! [ -f "$SO" ]; then
    echo "FAIL test_python: $SO not built (make)"; echo "test_python: 0 passed, 1 failed"; exit 1
fi
# a sanitizer build cannot be loaded into an uninstrumented python
grep -q -a -e __asan_init -e __ubsan_handle -e __tsan_init "$SO" && skip "$SO is a sanitizer build (cannot be loaded by python)"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
first() {  # first N frames of an XYZ file
    awk -v max="$2" 'left == 0 { if (nf >= max) exit; left = $1 + 2; nf++ } { print; left-- }' "$1"
}
np=0; nf=0
ok() { np=$((np + 1)); }
bad() { nf=$((nf + 1)); echo "FAIL test_python: $1"; }
run() {  # run a C program; a failure is a test failure
    "$@" > "$tmp/out" 2> "$tmp/err" || { bad "$*: $(cat "$tmp/err")"; return 1; }
}
K=$B/kqeq; E=$B/eann

# --- inputs and C outputs ---------------------------------------------------
first data/qm9like/train.xyz 120 > "$tmp/tr.xyz"
# 30 neutral test molecules and 10 charged ones
first data/qm9like/test.xyz 30 > "$tmp/q.xyz"
awk 'NF == 1 && $1 ~ /^[0-9]+$/ && !inframe { n = $1; getline c; keep = (c !~ /charge=0 /);
       if (keep && nk < 10) { print n; print c; for (i = 0; i < n; i++) { getline l; print l }; nk++ }
       else { for (i = 0; i < n; i++) getline l } }' data/qm9like/test.xyz >> "$tmp/q.xyz"
run $K train --quiet --train "$tmp/tr.xyz" --dipole-key xtb_dipole --dipole-unit au \
    --soap rcut=3.5,nmax=3,lmax=2 -o "$tmp/m.kqeq"
run $K train --quiet --model qeq --train "$tmp/tr.xyz" --dipole-key xtb_dipole --dipole-unit au -o "$tmp/qeq.kqeq"
run $K predict -m "$tmp/m.kqeq" "$tmp/q.xyz" -o "$tmp/q_kqeq.xyz" --dipole-unit au
run $K predict -m "$tmp/qeq.kqeq" "$tmp/q.xyz" -o "$tmp/q_qeq.xyz" --dipole-unit au
run $K soap --rcut 3.5 --nmax 3 --lmax 2 --species H,C,N,O,F "$tmp/q.xyz" && cp "$tmp/out" "$tmp/soap1.txt"
run $K soap --rcut 2.6 --nmax 2 --lmax 4 --sigma 0.4 --species F,O,N,C,H "$tmp/q.xyz" && cp "$tmp/out" "$tmp/soap2.txt"

first data/nma/test.xyz 25 > "$tmp/n.xyz"
first data/nma/train_T300.xyz 40 > "$tmp/ntr.xyz"
T="train --train $tmp/ntr.xyz --hidden 8,8 --nwave 4 --cutoff 5 --epochs 2 --batch 8 --quiet --species O,H,C,N"
run $E $T --target dipole --key pm7_dipole -o "$tmp/dm.eann"
run $E $T --target polarizability --key pm7_polarizability -o "$tmp/pol.eann"
# a tdm model (the dipole labels stand in for transition dipoles: only the
# agreement of Python and C is tested here)
run $E $T --target tdm --key pm7_dipole -o "$tmp/tdm.eann"
models="$tmp/dm.eann $tmp/pol.eann $tmp/tdm.eann"
if [ -d "$SH/eann_nma_published" ]; then
    models="$models $SH/eann_nma_published/dm.txt $SH/eann_nma_published/pol.txt $SH/eann_nma_published/tdm_npi.txt"
else
    echo "  (../shared absent: the published EANN models are not checked)"
fi
i=0
for m in $models; do
    run $E predict -m "$m" "$tmp/n.xyz" -o "$tmp/n_e$i.xyz"
    i=$((i + 1))
done

# --- Python -----------------------------------------------------------------
"$PY" - "$tmp" "$SO" "$SH" $models > "$tmp/py.out" 2>&1 <<'PYEOF'
import os, re, struct, subprocess, sys
import numpy as np

tmp, so, shared, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
os.environ["TENSORIAL_LIB"] = os.path.abspath(so)
sys.path.insert(0, "python")
npass = nfail = 0


def check(cond, what):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL test_python:", what)


def same(a, b):
    """bitwise equality of two float64 arrays (and no NaN)"""
    a = np.ascontiguousarray(a, dtype=np.float64).ravel()
    b = np.ascontiguousarray(b, dtype=np.float64).ravel()
    return a.shape == b.shape and np.all(np.isfinite(a)) and a.tobytes() == b.tobytes()


def read_xyz(path):
    """Minimal extended-XYZ reader (independent of ASE): per frame the info
    values (lists of floats, or None for text) and per-atom real columns."""
    lines = open(path).read().splitlines()
    i, frames = 0, []
    while i < len(lines):
        n = int(lines[i])
        info = {}
        for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', lines[i + 1]):
            try:
                info[k] = [float(x) for x in v.strip('"').split()]
            except ValueError:
                info[k] = None
        props = re.search(r'Properties=(\S+)', lines[i + 1]).group(1).split(":")
        cols, c = {}, 0
        for name, t, w in zip(props[0::3], props[1::3], props[2::3]):
            cols[name] = (c, int(w), t)
            c += int(w)
        rows = [l.split() for l in lines[i + 2:i + 2 + n]]
        arrays = {name: np.array([[float(x) for x in r[c0:c0 + w]] for r in rows])
                  for name, (c0, w, t) in cols.items() if t == "R"}
        frames.append({"info": info, "arrays": arrays})
        i += n + 2
    return frames


def new_outputs(before, after):
    """What a C program added to a frame: {length: values} for info keys and
    {ncols: values} for per-atom arrays (robust to the keys' names)."""
    info = {}
    for k, v in after["info"].items():
        if k not in before["info"] and v is not None:
            info.setdefault(len(v), []).append(v)
    arr = {}
    for k, v in after["arrays"].items():
        if k not in before["arrays"]:
            arr.setdefault(v.shape[1], []).append(v)
    return info, arr


import ase.io
import tensorial
from tensorial.ase import Calculator
from tensorial import _lib

B = 0.529177210903
check(tensorial.BOHR_ANGSTROM == B, "BOHR_ANGSTROM")

# --- 1. kQEq / QEq against kqeq predict --------------------------------------
inp = read_xyz(tmp + "/q.xyz")
atoms_list = ase.io.read(tmp + "/q.xyz", ":")
check(all(same(a.positions, f["arrays"]["pos"]) for a, f in zip(atoms_list, inp)),
      "ASE reads the positions with the same bits")
check(sum(1 for a in atoms_list if a.info.get("charge", 0) != 0) >= 10, "charged molecules in the input")
for name in ("m", "qeq"):
    model = tensorial.KQEq.load(tmp + "/%s.kqeq" % name)
    check(model.kind == ("qeq" if name == "qeq" else "kqeq"), "%s: kind %s" % (name, model.kind))
    out = read_xyz(tmp + "/q_%s.xyz" % ("kqeq" if name == "m" else "qeq"))
    calc = Calculator(model)
    ok_mu = ok_q = ok_al = ok_ase = ok_sum = 0
    for a, fin, fout in zip(atoms_list, inp, out):
        info, arr = new_outputs(fin, fout)
        r = model.predict(a)
        ok_mu += len(info.get(3, [])) == 1 and same(r["dipole"], info[3][0])
        ok_al += len(info.get(9, [])) == 1 and same(r["polarizability"], info[9][0])
        ok_q += len(arr.get(1, [])) == 1 and same(r["charges"], arr[1][0])
        ok_sum += abs(r["charges"].sum() - a.info.get("charge", 0)) < 1e-9
        b = a.copy()
        b.calc = calc
        mu = b.get_dipole_moment()
        ok_ase += (same(mu, np.asarray(info[3][0]) * B) and same(b.get_charges(), arr[1][0])
                   and same(b.calc.results["dipole_au"], info[3][0])
                   and same(b.calc.results["polarizability_au"], info[9][0])
                   and same(b.calc.results["polarizability"], np.asarray(info[9][0]).reshape(3, 3) * (B * B * B)))
    n = len(inp)
    check(ok_mu == n, "%s: KQEq dipole equals kqeq predict bitwise in %d/%d molecules" % (name, ok_mu, n))
    check(ok_al == n, "%s: KQEq polarizability bitwise in %d/%d" % (name, ok_al, n))
    check(ok_q == n, "%s: KQEq charges bitwise in %d/%d" % (name, ok_q, n))
    check(ok_sum == n, "%s: charges sum to the total charge in %d/%d" % (name, ok_sum, n))
    check(ok_ase == n, "%s: ASE calculator equals kqeq predict (after x0.529177210903) in %d/%d" % (name, ok_ase, n))

# charge from the keyword beats atoms.info; a change of charge is noticed
a = atoms_list[0].copy()
model = tensorial.KQEq.load(tmp + "/m.kqeq")
a.calc = Calculator(model)
q0 = a.get_charges().copy()
a.info["charge"] = 1
q1 = a.get_charges().copy()
check(abs(q0.sum()) < 1e-9 and abs(q1.sum() - 1) < 1e-9, "calculator follows atoms.info['charge']")
check(same(model.predict(a, charge=1)["charges"], q1), "predict(charge=1) equals the calculator's charges")

# --- 4. planar molecule: no polarizability perpendicular to the plane -------
from ase import Atoms
formamide = Atoms("OCNHHH", positions=[[1.2, 0.1, 0], [0.0, 0.3, 0], [-0.9, -0.7, 0],
                                      [-0.3, 1.35, 0], [-1.9, -0.5, 0], [-0.6, -1.65, 0]])
al = model.predict(formamide)["polarizability"]
check(np.all(al[2, :] == 0) and np.all(al[:, 2] == 0) and al[0, 0] > 0 and al[1, 1] > 0,
      "kQEq polarizability of a planar molecule: zz, xz, yz exactly 0, in-plane > 0 (%s)" % al.ravel())

# --- 2. EANN against eann predict ---------------------------------------------
ninp = read_xyz(tmp + "/n.xyz")
natoms = ase.io.read(tmp + "/n.xyz", ":")
for i, path in enumerate(models):
    m = tensorial.EANN.load(path)
    out = read_xyz(tmp + "/n_e%d.xyz" % i)
    nout = 9 if m.kind == "polarizability" else 3
    ok_p = ok_a = 0
    for a, fin, fout in zip(natoms, ninp, out):
        info, _ = new_outputs(fin, fout)
        ref = info.get(nout, [])
        r = m.predict(a)[m.kind]
        ok_p += len(ref) == 1 and same(r, ref[0])
        b = a.copy()
        b.calc = Calculator(m)
        if m.kind == "dipole":
            got, conv = b.get_dipole_moment(), B
        else:
            b.calc.calculate(b, [m.kind])
            got = b.calc.results[m.kind]
            conv = B * B * B if m.kind == "polarizability" else B
        ok_a += len(ref) == 1 and same(got, np.asarray(ref[0]) * conv) \
            and same(b.calc.results[m.kind + "_au"], ref[0])
    n = len(ninp)
    tag = os.path.basename(path) + " (" + m.kind + ")"
    check(ok_p == n, "%s: EANN.predict equals eann predict bitwise in %d/%d" % (tag, ok_p, n))
    check(ok_a == n, "%s: ASE calculator equals eann predict after the unit factor in %d/%d" % (tag, ok_a, n))

# two models in one calculator; the same property twice is refused
c = Calculator(models[0], models[1])
b = natoms[0].copy()
b.calc = c
b.get_dipole_moment()
check(set(c.results) >= {"dipole", "dipole_au", "polarizability", "polarizability_au"},
      "dipole + polarizability models in one calculator: %s" % sorted(c.results))
try:
    Calculator(models[0], models[0])
    check(False, "two dipole models accepted")
except ValueError:
    check(True, "")

# --- 3. SOAP ------------------------------------------------------------------
def soap_lines(path):
    return np.array([[float(x) for x in l.split()] for l in open(path) if l.strip() and not l.startswith("#")])

for args, ref in ((dict(species=["H", "C", "N", "O", "F"], r_cut=3.5, n_max=3, l_max=2), "soap1.txt"),
                  (dict(species=["F", "O", "N", "C", "H"], r_cut=2.6, n_max=2, l_max=4, sigma=0.4), "soap2.txt")):
    s = tensorial.SOAP(**args)
    want = soap_lines(tmp + "/" + ref)
    got = np.vstack(s.create(atoms_list))
    S, n, L = 5, args["n_max"], args["l_max"]
    check(s.get_number_of_features() == (S * n) * (S * n + 1) // 2 * (L + 1), "SOAP length")
    check(got.shape == want.shape and same(got, want), "SOAP %s equals kqeq soap bitwise" % args)
    check(s.species == ["H", "C", "N", "O", "F"], "species sorted by Z: %s" % s.species)
    check(s.sigma == args.get("sigma", args["r_cut"] / 8), "sigma resolved: %r" % s.sigma)
    # blocks: HH first, FF last, contiguous
    hh, ff = s.get_location(("H", "H")), s.get_location(("F", "F"))
    check(hh.start == 0 and ff.stop == s.get_number_of_features(), "get_location blocks")
    one = s.create(atoms_list[0])
    check(one.shape == (len(atoms_list[0]), s.get_number_of_features()), "create(one Atoms) shape")

sr = os.path.join(shared, "soap_ref")
if os.path.isdir(sr):
    for mol in ("water", "methane"):
        a = ase.io.read(os.path.join(sr, mol + ".xyz"))
        s = tensorial.SOAP(species=["H", "C", "N", "O"], r_cut=3.5, n_max=8, l_max=6)
        ref = soap_lines(os.path.join(sr, "%s_soap_rc3.5_n8_l6.txt" % mol))
        got = s.create(a)
        err = np.max(np.abs(got - ref)) / np.max(np.abs(ref)) if got.shape == ref.shape else np.inf
        check(err <= 1e-7, "SOAP vs DScribe (%s, rc 3.5 n 8 l 6): max|diff|/max|p| %.2g" % (mol, err))
else:
    print("  (../shared absent: SOAP not compared with DScribe's vectors)")

# --- 5. errors ----------------------------------------------------------------
p = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'python'); import tensorial"],
                   env=dict(os.environ, TENSORIAL_LIB="/nonexistent/libtensorial.so"),
                   capture_output=True, text=True)
check(p.returncode != 0 and "LibraryNotFound" in p.stderr and "TENSORIAL_LIB" in p.stderr,
      "missing library: clear error (%s)" % p.stderr.strip().splitlines()[-1:])
env = dict(os.environ)
env.pop("TENSORIAL_LIB", None)
p = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'python'); import tensorial; "
                    "print(tensorial.library_path)"], env=env, capture_output=True, text=True)
if os.path.isfile("build/libtensorial.so") or os.path.isfile("python/tensorial/libtensorial.so"):
    check(p.returncode == 0 and p.stdout.strip().endswith("libtensorial.so"),
          "the library is found without TENSORIAL_LIB (%s)" % (p.stdout.strip() or p.stderr.strip()))
else:  # another build folder (make B=...): only $TENSORIAL_LIB finds it
    check(p.returncode != 0 and "make" in p.stderr, "no library in build/: the error says to run make")
p = subprocess.run([sys.executable, "-c", "import sys; sys.modules['numpy'] = None; sys.path.insert(0, 'python'); "
                    "import tensorial\ntry:\n  tensorial.SOAP(['H'], 3, 2, 2)\nexcept ImportError as e:\n  print(e)"],
                   capture_output=True, text=True)
check(p.returncode == 0 and "python3-numpy" in p.stdout,
      "without NumPy: import works, use says what is missing (%s)" % (p.stdout.strip() or p.stderr.strip()))
text = open(tmp + "/m.kqeq").read().splitlines()
bad_text = "\n".join(text[:3] + ["chi nan"] + text[4:]) + "\n"
try:
    tensorial.KQEq(bad_text, name="bad.kqeq")
    check(False, "damaged kQEq model accepted")
except ValueError as e:
    check(re.match(r"bad\.kqeq:\d+: ", str(e)) is not None, "kQEq model error names file:line (%s)" % e)
try:
    tensorial.EANN("EANN_TEXT_V1\nkind dipole\nnspecies x\n", name="bad.eann")
    check(False, "damaged EANN model accepted")
except ValueError as e:
    check(str(e).startswith("bad.eann:3: "), "EANN model error names file:line (%s)" % e)
try:
    tensorial.EANN.load(models[0]).predict(Atoms("OS", positions=[[0, 0, 0], [1.5, 0, 0]]))
    check(False, "unknown element accepted")
except ValueError as e:
    check("S" in str(e) and "species" in str(e), "unknown element error (%s)" % e)
try:
    tensorial.SOAP(["H"], r_cut=0.5, n_max=2, l_max=2)
    check(False, "r_cut 0.5 accepted")
except ValueError:
    check(True, "")

print("test_python: %d passed, %d failed" % (npass, nfail))
sys.exit(1 if nfail else 0)
PYEOF
rc=$?
grep -v '^test_python: [0-9]* passed' "$tmp/py.out"
line=$(grep '^test_python: [0-9]* passed, [0-9]* failed' "$tmp/py.out")
pp=$(echo "$line" | sed -nE 's/.*: ([0-9]+) passed.*/\1/p')
pf=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
if [ -z "$line" ]; then pp=0; pf=1; echo "FAIL test_python: the Python part stopped (exit $rc)"; fi
np=$((np + pp)); nf=$((nf + pf))
echo "test_python: $np passed, $nf failed"
[ "$nf" -eq 0 ]
