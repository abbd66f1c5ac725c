#!/bin/sh
# SPDX-License-Identifier: MIT
# test_xyz_ase.sh - interoperability of xyz.c with ASE's extended XYZ (optional).
# Needs /usr/bin/python3 (or $XYZ_PYTHON) with ase (python3-ase); otherwise
# prints a SKIP line.
#   1. ASE writes random frames -> we read them: every number bit-identical to
#      what ASE itself reads back from the same file.
#   2. we copy that file (read + xyz_write) -> ASE reads our copy: identical.
#   3. we write random frames (subnormals, -0, extreme exponents, all types)
#      -> ASE reads: every number, key and array identical to what we wrote.
# Compiles tests/xyz/roundtrip.c with ${CC:-gcc}. Run from the repository root.
PY=${XYZ_PYTHON:-/usr/bin/python3}
if ! [ -x "$PY" ] || ! "$PY" -c "import ase.io" >/dev/null 2>&1; then
    echo "SKIP: $PY with ase not available"
    echo "test_xyz_ase: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
if ! ${CC:-gcc} -std=c11 -O2 -ffp-contract=off -Wall -Wextra -D_POSIX_C_SOURCE=200809L -I. \
        tests/xyz/roundtrip.c xyz.c -o "$tmp/rt" -lm; then
    echo "FAIL: cannot compile tests/xyz/roundtrip.c"
    echo "test_xyz_ase: 0 passed, 1 failed"
    exit 1
fi
"$PY" - "$tmp" <<'PYEOF'
import math, struct, subprocess, sys, warnings
import numpy as np
import ase.io
from ase import Atoms

warnings.simplefilter("ignore")
tmp = sys.argv[1]
rt = tmp + "/rt"
npass = nfail = 0

def check(ok, what):
    global npass, nfail
    if ok:
        npass += 1
    else:
        nfail += 1
        print("FAIL test_xyz_ase:", what)

def bits(x):
    return struct.pack("<d", float(x))

def parse_dump(text):
    frames = []
    for line in text.splitlines():
        w = line.split(" ")
        if w[0] == "frame":
            fr = {"natoms": int(w[1]), "info": {}, "arrays": {}}
            frames.append(fr)
        elif w[0] == "z":
            fr["z"] = [int(x) for x in w[1:]]
        elif w[0] == "pos":
            fr["pos"] = [float.fromhex(x) for x in w[1:]]
        elif w[0] == "info":
            key, t = w[1], w[2]
            if t == "S":
                fr["info"][key] = ("S", line.split(" ", 3)[3] if len(w) > 3 else "")
            else:
                conv = float.fromhex if t == "R" else int
                fr["info"][key] = (t, [conv(x) for x in w[4:]])
        elif w[0] == "array":
            name, t, nc = w[1], w[2], int(w[3])
            conv = {"R": float.fromhex, "I": int, "L": int, "S": str}[t]
            fr["arrays"][name] = (t, nc, [conv(x) for x in w[4:]])
    return frames

def same_reals(a, b):
    a = [float(x) for x in np.asarray(a, dtype=float).ravel()]
    b = [float(x) for x in b]
    return len(a) == len(b) and all(bits(x) == bits(y) for x, y in zip(a, b))

def ase_value(atoms, key):
    if key in atoms.info:
        return atoms.info[key]
    if atoms.calc is not None and key in atoms.calc.results:
        return atoms.calc.results[key]
    return None

def compare(atoms, fr, where):
    """ASE Atoms vs one frame of our dump: everything identical."""
    check(len(atoms) == fr["natoms"], f"{where}: natoms {len(atoms)} vs {fr['natoms']}")
    check(list(atoms.numbers) == fr["z"], f"{where}: atomic numbers")
    check(same_reals(atoms.positions, fr["pos"]), f"{where}: positions not bit-identical")
    keys = set(atoms.info) | (set(atoms.calc.results) if atoms.calc is not None else set())
    ours = set(fr["info"]) - {"Lattice", "pbc"}
    check(keys == ours, f"{where}: info keys {sorted(keys)} vs {sorted(ours)}")
    for key, (t, vals) in fr["info"].items():
        if key == "Lattice":
            check(same_reals(atoms.cell.array, vals), f"{where}: Lattice")
            continue
        if key == "pbc":
            want = vals * 3 if len(vals) == 1 else vals
            check([bool(x) for x in atoms.pbc] == [bool(x) for x in want], f"{where}: pbc")
            continue
        v = ase_value(atoms, key)
        if t == "S":
            check(isinstance(v, str) and v == vals, f"{where}: info {key} {v!r} vs {vals!r}")
        elif t == "R":
            a = np.asarray(v)
            check(a.dtype.kind == "f" and same_reals(a, vals), f"{where}: info {key} {v!r} vs {vals!r}")
        elif t == "I":
            a = np.asarray(v)
            check(a.dtype.kind == "i" and [int(x) for x in a.ravel()] == vals, f"{where}: info {key} {v!r} vs {vals!r}")
        else:
            a = np.asarray(v)
            check(a.dtype.kind == "b" and [int(x) for x in a.ravel()] == vals, f"{where}: info {key} {v!r} vs {vals!r}")
    names = set(atoms.arrays) - {"numbers", "positions"}
    check(names == set(fr["arrays"]), f"{where}: arrays {sorted(names)} vs {sorted(fr['arrays'])}")
    for name, (t, nc, vals) in fr["arrays"].items():
        a = atoms.arrays.get(name)
        if a is None:
            continue
        shape_ok = a.shape == ((len(atoms),) if nc == 1 else (len(atoms), nc))
        if t == "R":
            ok = a.dtype.kind == "f" and same_reals(a, vals)
        elif t == "S":
            ok = [str(x) for x in a.ravel()] == vals
        else:
            ok = a.dtype.kind == ("i" if t == "I" else "b") and [int(x) for x in a.ravel()] == vals
        check(shape_ok and ok, f"{where}: array {name}")

def run(*args):
    p = subprocess.run([rt, *args], capture_output=True, text=True)
    check(p.returncode == 0, f"roundtrip {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout

# 1. ASE writes -> we read
rng = np.random.default_rng(12345)
frames = []
for k in range(6):
    n = int(rng.integers(1, 6))
    a = Atoms(numbers=rng.integers(1, 87, n), positions=rng.normal(size=(n, 3)) * 10.0 ** rng.integers(-3, 4))
    if k % 2:
        a.cell = rng.normal(size=(3, 3)) * 5
        a.pbc = [True, False, True]
    a.info["energy"] = float(rng.normal() * 1e3)
    a.info["n_iter"] = int(rng.integers(-1000, 1000))
    a.info["title"] = 'run "%d", with spaces' % k
    a.info["converged"] = bool(k % 2)
    a.info["dipole_ref"] = rng.normal(size=3)
    a.info["counts"] = rng.integers(-50, 50, 4)
    a.info["tiny"] = 5e-324
    a.new_array("q", rng.normal(size=n))
    a.new_array("vel", rng.normal(size=(n, 3)))
    a.new_array("idx", rng.integers(-1000, 1000, n))
    a.new_array("fixed", rng.integers(0, 2, n).astype(bool))
    a.new_array("label", np.array(["s%d" % i for i in range(n)]))
    frames.append(a)
ase.io.write(tmp + "/a.xyz", frames, format="extxyz")
ref = ase.io.read(tmp + "/a.xyz", ":", format="extxyz")
ours = parse_dump(run("dump", tmp + "/a.xyz"))
check(len(ours) == len(ref), "ASE file: frame count")
for k, (atoms, fr) in enumerate(zip(ref, ours)):
    compare(atoms, fr, f"ASE->us frame {k}")

# 2. we copy ASE's file -> ASE reads our copy
run("copy", tmp + "/a.xyz", tmp + "/c.xyz")
copy = ase.io.read(tmp + "/c.xyz", ":", format="extxyz")
check(len(copy) == len(ref), "copy: frame count")
for k, (atoms, fr) in enumerate(zip(copy, ours)):
    compare(atoms, fr, f"ASE->us->ASE frame {k}")

# 3. we write random frames -> ASE reads
gen = parse_dump(run("gen", tmp + "/b.xyz"))
back = ase.io.read(tmp + "/b.xyz", ":", format="extxyz")
check(len(back) == len(gen) and len(gen) > 0, "ours: frame count")
for k, (atoms, fr) in enumerate(zip(back, gen)):
    compare(atoms, fr, f"us->ASE frame {k}")

print(f"test_xyz_ase: {npass} passed, {nfail} failed")
sys.exit(1 if nfail else 0)
PYEOF
