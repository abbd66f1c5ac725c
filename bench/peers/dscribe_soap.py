#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Peer timing: DScribe SOAP (rc 3.5 A, n_max 8, l_max 6, sigma rc/8, rbf 'gto', species
H,C,N,O, no periodicity, every atom a centre, compression off) per atom, processor time,
one thread. Our own driver; it only calls DScribe (../shared/peers/dscribe, not copied).

  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../shared/peers/dscribe \\
      /usr/bin/python3 bench/peers/dscribe_soap.py [--seconds S] FILE.xyz...

Per file, one line:
  FILE natoms N first_ms F us_per_atom U passes P mean_us_per_atom A
first_ms: processor time of the first SOAP.create pass over the file's frames minus one
steady pass (the cost of the first use, after the import and the descriptor's construction).
us_per_atom: the fastest of the passes after that first one (>= S seconds of passes in all,
default 1, at least 3 passes; the minimum is the robust figure on a shared machine, and our
side is timed the same way), mean_us_per_atom their mean; SOAP.create called once per frame
as a user would (ASE Atoms built outside the timed loop).
"""
import os
for _v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_v, '1')
import sys
import time

import ase.io
from dscribe.descriptors import SOAP

RCUT, NMAX, LMAX = 3.5, 8, 6


def main():
    args = sys.argv[1:]
    seconds = 1.0
    if args[:1] == ['--seconds']:
        seconds = float(args[1])
        args = args[2:]
    if not args:
        sys.exit(__doc__)
    soap = SOAP(species=['H', 'C', 'N', 'O'], r_cut=RCUT, n_max=NMAX, l_max=LMAX, sigma=RCUT / 8.0,
                periodic=False, rbf='gto', average='off', compression={'mode': 'off'}, sparse=False)
    for path in args:
        frames = ase.io.read(path, ':')
        natoms = sum(len(a) for a in frames)
        t0 = time.process_time()
        for a in frames:
            soap.create(a)
        first = time.process_time() - t0
        passes, total, best = 0, 0.0, float('inf')
        while passes < 3 or total < seconds:
            t0 = time.process_time()
            for a in frames:
                soap.create(a)
            dt = time.process_time() - t0
            total += dt
            best = min(best, dt)
            passes += 1
        print('%s natoms %d first_ms %.3f us_per_atom %.3f passes %d mean_us_per_atom %.3f' %
              (path, natoms, 1e3 * (first - best), 1e6 * best / natoms, passes,
               1e6 * total / passes / natoms), flush=True)


if __name__ == '__main__':
    main()
