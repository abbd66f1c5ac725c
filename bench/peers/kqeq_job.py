#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Peer timing: the kQEq benchmark job with the NumPy/SciPy kQEq peer (../shared/peers/kqeq_numpy.py,
imported, not copied; SOAP from DScribe, products through NumPy's OpenBLAS), one thread.

  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../shared/peers/dscribe \\
      /usr/bin/python3 bench/peers/kqeq_job.py TRAIN.xyz TEST.xyz KEY UNIT NTRAIN[,NTRAIN...] NTEST M SIGMA SPECIES

The job (the same one bench/bench_peers.sh runs with `kqeq train` / `kqeq eval`):
  for each n in NTRAIN: sparse kQEq on the first n frames of TRAIN (SOAP rc 3.5 n_max 8 l_max 6
  sigma rc/8 over SPECIES, vectors normalised, k = (p.p')^2, M representative atoms by farthest
  point sampling from atom 0 (all atoms if fewer), one regularisation SIGMA (e*bohr)^2, no
  validation scan), then predict the first NTEST frames of TEST;
  classical QEq (per-element chi, eta = 0, least squares) on the largest n, predict the same test
  frames.
What the peer does differently from our programs: it reads each file once and computes the SOAP
vectors of the largest training set and of the test set once (the smaller training sets are its
first frames); our `kqeq eval` recomputes the test SOAP vectors for each model.
Prints the test MAE of |mu| (debye) of each model and 'cpu_s X' = processor seconds from the
first file read to the last prediction (imports excluded: Python start-up is not the job).
"""
import os
for _v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_v, '1')
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get('TENSORIAL_SHARED', os.path.join(HERE, '..', '..', '..', 'shared')) + '/peers'
sys.path.insert(0, PEERS)
import numpy as np           # noqa: E402
import kqeq_numpy as kq      # noqa: E402
import dscribe.descriptors   # noqa: E402,F401  (import outside the timed job)
import ase.io                # noqa: E402,F401


def main():
    if len(sys.argv) != 10:
        sys.exit(__doc__)
    train_path, test_path, key, unit = sys.argv[1:5]
    ntrain = [int(x) for x in sys.argv[5].split(',')]
    ntest, M, sigma = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
    species = sys.argv[9].split(',')
    to_au = {'au': 1.0, 'eA': kq.UNIT_TO_AU['eA'], 'debye': kq.UNIT_TO_AU['D']}[unit]
    nmax = max(ntrain)
    steps = {}
    c0 = time.process_time()

    def step(name, t):
        steps[name] = steps.get(name, 0.0) + time.process_time() - t
        return time.process_time()

    t = time.process_time()
    train = kq.read_mols(train_path, key, to_au)[:nmax]
    test = kq.read_mols(test_path, key, to_au)[:ntest]
    t = step('read', t)
    P_train = kq.soap_vectors(train, species, 3.5)
    P_test = kq.soap_vectors(test, species, 3.5)
    t = step('soap', t)
    test_set = kq.QEqSet(test)
    t = step('qeq_response', t)
    for n in ntrain:
        tr = kq.QEqSet(train[:n])
        t = step('qeq_response', t)
        P = [P_train[:tr.offsets[-1]]]
        sel = kq.fps(P, M)
        t = step('fps', t)
        PM = [P[0][sel]]
        K_NM, K_MM, K_TM = kq.kernel(P, PM), kq.kernel(PM, PM), kq.kernel([P_test], PM)
        t = step('kernel', t)
        model = kq.KQEq(tr, K_NM, K_MM)
        w = model.fit(sigma)
        t = step('fit', t)
        m = kq.metrics(kq.KQEq.predict(test_set, K_TM, w), test_set.Y)
        t = step('predict', t)
        print('peer kQEq-%d: %d atoms, M %d, test MAE %.4f D RRMSE %.2f %%' %
              (n, tr.offsets[-1], len(sel), m['mae'], m['rrmse']), flush=True)
    tr = kq.QEqSet(train[:nmax])
    elements = sorted(set(tr.symbols) | set(test_set.symbols), key=species.index)
    chi = kq.fit_qeq_baseline(tr, elements)
    m = kq.metrics(kq.predict_qeq_baseline(test_set, elements, chi), test_set.Y)
    t = step('qeq', t)
    print('peer QEq-%d: test MAE %.4f D RRMSE %.2f %%' % (nmax, m['mae'], m['rrmse']))
    print('peer steps (processor s): ' + ', '.join('%s %.2f' % kv for kv in steps.items()))
    print('cpu_s %.3f' % (time.process_time() - c0))


if __name__ == '__main__':
    main()
