#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Sanity check of the PM7 polarizability handling on the NMA start geometry.

Run from the repository root: /usr/bin/python3 data/make/check_pm7_polar.py
Prints (1) the TDHF tensor of nma_label_pm7.py (rotated back to the input frame),
its isotropic mean in a.u. and A^3; (2) a finite-field tensor d mu / d E from MOPAC's
FIELD=(Ex,Ey,Ez) keyword (V/A, +-0.02 V/A, central differences of DIP_VEC, 1 a.u. of
field = 51.42206747632590 V/A); (3) eigenvalues and the angles between the eigenvectors
of the two.  Result (MOPAC v22.0.6): same principal axes (the back-rotation is right),
but the finite-field tensor has the opposite sign and smaller eigenvalues, so MOPAC's
FIELD response is not the TDHF POLAR response; see data/README.md, section 2b.
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nma_label_pm7  # noqa: E402

EFIELD_AU = 51.42206747632590  # V/A


def dip(sym, pos, kw, d):
    with open(os.path.join(d, 'ff.mop'), 'w') as f:
        f.write(kw + '\nff\n\n')
        for s, p in zip(sym, pos):
            f.write('%-2s %16.10f 0 %16.10f 0 %16.10f 0\n' % (s, p[0], p[1], p[2]))
    subprocess.run(['mopac', 'ff.mop'], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a = open(os.path.join(d, 'ff.aux')).read()
    m = re.search(r'DIP_VEC:DEBYE\[3\]=\s*(\S+)\s+(\S+)\s+(\S+)', a)
    return np.array([float(x.replace('D', 'E')) for x in m.groups()]) / nma_label_pm7.DEBYE_PER_AU


def main():
    lines = open(os.path.join(HERE, 'nma_start.xyz')).read().split('\n')[2:14]
    sym = [l.split()[0] for l in lines]
    pos = np.array([[float(x) for x in l.split()[1:4]] for l in lines])
    d = tempfile.mkdtemp()
    mu, a = nma_label_pm7.mopac(sym, pos, d)
    print('TDHF alpha (a.u., input frame):\n', a.round(4))
    print('isotropic %.4f a.u. = %.4f A^3' % (np.trace(a) / 3, np.trace(a) / 3 * 0.529177210903 ** 3))
    h = 0.02
    J = np.zeros((3, 3))
    for k in range(3):
        e = [0.0, 0.0, 0.0]
        e[k] = h
        p = dip(sym, pos, 'PM7 1SCF PRECISE AUX(PRECISION=9) THREADS=1 FIELD=(%g,%g,%g)' % tuple(e), d)
        e[k] = -h
        m = dip(sym, pos, 'PM7 1SCF PRECISE AUX(PRECISION=9) THREADS=1 FIELD=(%g,%g,%g)' % tuple(e), d)
        J[:, k] = (p - m) / (2 * h / EFIELD_AU)
    print('finite-field d mu/d E (a.u.):\n', J.round(4))
    wa, va = np.linalg.eigh(a)
    wj, vj = np.linalg.eigh(-(J + J.T) / 2)
    print('eigenvalues TDHF', wa.round(3), ' -finite-field', wj.round(3))
    for i in range(3):
        c = abs(float(va[:, i] @ vj[:, i]))
        print('angle between eigenvectors %d: %.2f deg' % (i, np.degrees(np.arccos(min(1.0, c)))))


if __name__ == '__main__':
    main()
