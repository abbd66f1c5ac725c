#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Peer timing: classical QEq of one large frame with NumPy/SciPy (OpenBLAS, one thread): the
Gaussian-charge hardness matrix of ../shared/peers/kqeq_numpy.py (imported, not copied), one
Cholesky factorisation (LAPACK dpotrf) and solves for the two right-hand sides the bordered
system needs (-chi and 1; q = -H^-1 chi + (Q + 1^T H^-1 chi) / (1^T H^-1 1) H^-1 1), no inverse.
chi: Rappe & Goddard 1991 electronegativities (eV), eta = 0, s_at 0.75, total charge 0, the
defaults of `kqeq qeq`.

  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/peers/qeq_dense.py FRAME.xyz

Prints 'natoms N dipole_debye X Y Z' and 'cpu_s T' (processor seconds from the positions to
the charges: matrix, factorisation, solves; file reading and imports excluded).
"""
import os
for _v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_v, '1')
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get('TENSORIAL_SHARED', os.path.join(HERE, '..', '..', '..', 'shared')) + '/peers')
import numpy as np           # noqa: E402
import scipy.linalg          # noqa: E402
import ase.io                # noqa: E402
import kqeq_numpy as kq      # noqa: E402

CHI_EV = {'H': 4.528, 'C': 5.343, 'N': 6.899, 'O': 8.741, 'F': 10.874, 'S': 6.928, 'Cl': 8.564}
HARTREE_EV = 27.211386245988


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    a = ase.io.read(sys.argv[1])
    sym = a.get_chemical_symbols()
    r = a.get_positions() / kq.BOHR_A
    chi = np.array([CHI_EV[s] for s in sym]) / HARTREE_EV
    t0 = time.process_time()
    H = kq.hardness_matrix(sym, r)
    cf = scipy.linalg.cho_factor(H, lower=True, overwrite_a=True, check_finite=False)
    X = scipy.linalg.cho_solve(cf, np.stack([-chi, np.ones(len(sym))], axis=1), check_finite=False)
    q = X[:, 0] - X[:, 0].sum() / X[:, 1].sum() * X[:, 1]
    cpu = time.process_time() - t0
    m = a.get_masses()
    com = m @ r / m.sum()
    mu = (q @ (r - com)) * kq.AU_D
    print('natoms %d dipole_debye %.6f %.6f %.6f sum_q %.1e' % (len(sym), mu[0], mu[1], mu[2], q.sum()))
    print('cpu_s %.3f' % cpu)


if __name__ == '__main__':
    main()
