#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Makes the SOAP benchmark geometries in this folder (python3 standard
library only, deterministic: fixed seeds, Mersenne Twister).

  nma.xyz          N-methylacetamide, 12 atoms: the first frame of
                   ../shared/eann_nma_published/reference_20.xyz (geometry only)
  nma25.xyz        300 atoms: 25 rigidly rotated NMA copies on a 5 x 5 grid
                   (14 A pitch), >= 8 A between atoms of different copies
  water216.xyz     648 atoms: 216 randomly oriented waters on a 6 x 6 x 6 cubic
                   grid, 3.1 A spacing, oxygen jitter +-0.2 A, no two atoms of
                   different molecules closer than 0.9 A

Run from the repository root:  python3 bench/data/make_bench_geoms.py
"""
import math
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("TENSORIAL_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))


def read_first_frame(path):
    with open(path) as f:
        n = int(f.readline())
        f.readline()
        atoms = []
        for _ in range(n):
            t = f.readline().split()
            atoms.append((t[0], [float(v) for v in t[1:4]]))
    return atoms


def write_xyz(path, atoms, comment):
    with open(path, "w") as f:
        f.write("%d\n" % len(atoms))
        f.write('Properties=species:S:1:pos:R:3 pbc="F F F" name=%s\n' % comment)
        for s, p in atoms:
            f.write("%-2s %.10f %.10f %.10f\n" % (s, p[0], p[1], p[2]))


def random_rotation(rng):
    """Rotation matrix from a random unit quaternion."""
    while True:
        q = [rng.uniform(-1, 1) for _ in range(4)]
        n = math.sqrt(sum(x * x for x in q))
        if 0.1 < n <= 1.0:
            break
    a, b, c, d = (x / n for x in q)
    return [[a*a + b*b - c*c - d*d, 2*(b*c - a*d), 2*(b*d + a*c)],
            [2*(b*c + a*d), a*a - b*b + c*c - d*d, 2*(c*d - a*b)],
            [2*(b*d - a*c), 2*(c*d + a*b), a*a - b*b - c*c + d*d]]


def rotate(r, p):
    return [sum(r[i][j] * p[j] for j in range(3)) for i in range(3)]


def dist(p, q):
    return math.sqrt(sum((p[i] - q[i]) ** 2 for i in range(3)))


def main():
    src = os.path.join(SHARED, "eann_nma_published", "reference_20.xyz")
    nma = read_first_frame(src)
    cen = [sum(p[i] for _, p in nma) / len(nma) for i in range(3)]
    nma = [(s, [p[i] - cen[i] for i in range(3)]) for s, p in nma]
    write_xyz(os.path.join(HERE, "nma.xyz"), nma, "nma")

    rng = random.Random(20240611)
    copies = []
    for gx in range(5):
        for gy in range(5):
            r = random_rotation(rng)
            shift = [14.0 * gx, 14.0 * gy, 0.0]
            copies.append([(s, [x + shift[i] for i, x in enumerate(rotate(r, p))]) for s, p in nma])
    for a in range(len(copies)):
        for b in range(a):
            d = min(dist(p, q) for _, p in copies[a] for _, q in copies[b])
            assert d >= 8.0, d
    write_xyz(os.path.join(HERE, "nma25.xyz"), [x for c in copies for x in c], "nma25")

    rng = random.Random(648)
    roh, ang = 0.9572, math.radians(104.52)
    h1 = [roh * math.sin(ang / 2), 0.0, roh * math.cos(ang / 2)]
    h2 = [-roh * math.sin(ang / 2), 0.0, roh * math.cos(ang / 2)]
    waters = []
    for ix in range(6):
        for iy in range(6):
            for iz in range(6):
                o = [3.1 * v + rng.uniform(-0.2, 0.2) for v in (ix, iy, iz)]
                for _ in range(1000):
                    r = random_rotation(rng)
                    mol = [("O", o)] + [("H", [o[i] + x for i, x in enumerate(rotate(r, h))])
                                        for h in (h1, h2)]
                    if all(dist(p, q) >= 0.9 for w in waters for _, p in w for _, q in mol):
                        break
                else:
                    sys.exit("could not place a water")
                waters.append(mol)
    write_xyz(os.path.join(HERE, "water216.xyz"), [x for w in waters for x in w], "water216")


if __name__ == "__main__":
    main()
