#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes one large water frame (a spherical cut of a cubic water lattice) for the
large-frame benchmarks; python3 standard library only, deterministic.

  python3 bench/data/make_water_frame.py NATOMS OUT.xyz

Oxygens on a simple cubic lattice with 3.1 A spacing (about liquid density,
1.0 g/cm^3); the ceil(NATOMS/3) sites nearest the centre of the smallest cube
lattice that holds them (ties broken by lattice order) each get one water
(O-H 0.9572 A, H-O-H 104.52 deg), the k-th in an orientation drawn from
random.Random(1000003 + k), so a given NATOMS always gives the same frame
(NATOMS is rounded up to a multiple of 3: 1000 -> 1002 atoms). Atoms of
neighbouring molecules are >= 3.1 - 2 * 0.9572 = 1.19 A apart. Not shipped:
bench/bench_peers.sh writes these files into build/ at run time.
"""
import math
import random
import sys

from make_bench_geoms import random_rotation  # same folder

SPACING = 3.1
ROH, ANG = 0.9572, math.radians(104.52)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    natoms = int(sys.argv[1])
    nw = (natoms + 2) // 3
    side = 1
    while side ** 3 < nw:
        side += 1
    c = (side - 1) / 2.0
    sites = [(ix, iy, iz) for ix in range(side) for iy in range(side) for iz in range(side)]
    sites.sort(key=lambda s: ((s[0] - c) ** 2 + (s[1] - c) ** 2 + (s[2] - c) ** 2, s))
    h = [[ROH * math.sin(ANG / 2), 0.0, ROH * math.cos(ANG / 2)],
         [-ROH * math.sin(ANG / 2), 0.0, ROH * math.cos(ANG / 2)]]
    lines = []
    for k, s in enumerate(sites[:nw]):
        o = [SPACING * v for v in s]
        r = random_rotation(random.Random(1000003 + k))
        lines.append("O  %.10f %.10f %.10f" % tuple(o))
        for p in h:
            lines.append("H  %.10f %.10f %.10f" % tuple(o[i] + sum(r[i][j] * p[j] for j in range(3))
                                                     for i in range(3)))
    with open(sys.argv[2], "w") as f:
        f.write("%d\n" % len(lines))
        f.write('Properties=species:S:1:pos:R:3 pbc="F F F" name=water%d\n' % len(lines))
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
