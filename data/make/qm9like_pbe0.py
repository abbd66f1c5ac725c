#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""PBE0/def2-SVP dipoles (psi4 1.3.2) for a fixed subset of the QM9-like organic set.

Run from the repository root after split_qm9like.py:
    PYTHONPATH=/usr/lib/x86_64-linux-gnu nice -n 19 /usr/bin/python3 data/make/qm9like_pbe0.py
Resumable: finished chunks are skipped.  Runs until every chunk is done (or killed).
Two processes may run at once (chunk locks, chunklock.py).

Geometries: the xtb GFN2 geometries of data/qm9like/{train,valid,test}.xyz, unchanged.
psi4 1.3.2 (Debian), Python API, one thread: set_options({'basis': 'def2-svp',
'scf_type': 'df', 'e_convergence': 1e-8, 'd_convergence': 1e-8}), geometry with
no_com, no_reorient, symmetry c1, units angstrom, charge = `charge`, multiplicity 1
(restricted Kohn-Sham), then properties('pbe0', properties=['dipole']).
psi4 reports SCF DIPOLE X/Y/Z in debye about the coordinate origin (checked: translating
a cation by d changes it by Q*d); pbe0_dipole = that / psi4.constants.dipmom_au2debye,
shifted to the centre of mass as in qm9like_gen.py: mu_com = mu_origin - Q * R_com
(masses H 1.008, C 12.011, N 14.007, O 15.999, F 18.998 amu; bohr = 0.529177210903 A).

Subset (fixed): each split's molecules ordered as in split_qm9like.py's permutation
(SEED 4242 over all candidate ids); chunk k (k = 0, 1, ...) holds the molecules number
12k..12k+11 of train, 4k..4k+3 of valid and 4k..4k+3 of test (20 per chunk).
Output: data/qm9like/pbe0/chunk_NNN.xyz: the frames of the split files with the extra keys
split ("train"/"valid"/"test"), pbe0_dipole (3, e*bohr, about the centre of mass),
psi4_seconds (wall time); each chunk written atomically.
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import split_qm9like  # noqa: E402
import chunklock  # noqa: E402

MASS = {'H': 1.008, 'C': 12.011, 'N': 14.007, 'O': 15.999, 'F': 18.998}
BOHR = 0.529177210903
PER_CHUNK = (('train', 12), ('valid', 4), ('test', 4))
MAX_CHUNKS = 100


def parse(text):
    lines = text.split('\n')
    n = int(lines[0])
    hdr = lines[1]
    q = int(hdr.split(' charge=')[1].split()[0])
    sym, pos = [], []
    for l in lines[2:2 + n]:
        t = l.split()
        sym.append(t[0])
        pos.append([float(x) for x in t[1:4]])
    return hdr, q, sym, np.array(pos), lines[2:2 + n]


def pbe0_dipole(sym, pos, q, tag):
    import psi4
    scratch = '/tmp/psi4_pbe0_%d' % os.getpid()
    os.makedirs(scratch, exist_ok=True)
    psi4.core.IOManager.shared_object().set_default_path(scratch)
    psi4.core.set_output_file(os.path.join(scratch, 'psi4_%s.out' % tag), False)
    psi4.core.clean_options()
    psi4.set_memory('2 GB')
    psi4.set_num_threads(1)
    geom = '%d 1\n' % q + '\n'.join('%s %.10f %.10f %.10f' % (s, p[0], p[1], p[2]) for s, p in zip(sym, pos))
    geom += '\nno_com\nno_reorient\nsymmetry c1\nunits angstrom\n'
    psi4.geometry(geom)
    psi4.set_options({'basis': 'def2-svp', 'scf_type': 'df', 'e_convergence': 1e-8,
                      'd_convergence': 1e-8})
    t0 = time.time()
    psi4.properties('pbe0', properties=['dipole'])
    dt = time.time() - t0
    var = psi4.variable if hasattr(psi4, 'variable') else psi4.core.get_variable
    mu = np.array([var('SCF DIPOLE ' + c) for c in 'XYZ']) / psi4.constants.dipmom_au2debye
    psi4.core.clean()
    psi4.core.clean_variables()
    m = np.array([MASS[s] for s in sym])
    com = (m[:, None] * pos).sum(0) / m.sum()
    return mu - q * com / BOHR, dt


def main():
    order = [int(i) for i in np.random.default_rng(split_qm9like.SEED).permutation(split_qm9like.N_CANDIDATES)]
    rank = {i: r for r, i in enumerate(order)}
    splits = {}
    for name, _ in PER_CHUNK:
        fr = split_qm9like.read_frames(os.path.join(ROOT, 'qm9like', name + '.xyz'))
        splits[name] = [fr[i][1] for i in sorted(fr, key=lambda i: rank[i])]
    outdir = os.path.join(ROOT, 'qm9like', 'pbe0')
    os.makedirs(outdir, exist_ok=True)
    for c in range(MAX_CHUNKS):
        path = os.path.join(outdir, 'chunk_%03d.xyz' % c)
        if os.path.exists(path) or not chunklock.acquire('pbe0_%03d' % c):
            continue
        if os.path.exists(path):
            chunklock.release('pbe0_%03d' % c)
            continue
        out = []
        for name, k in PER_CHUNK:
            for text in splits[name][k * c:k * (c + 1)]:
                hdr, q, sym, pos, atom_lines = parse(text)
                idx = int(hdr.split(' id=')[1].split()[0])
                mu, dt = pbe0_dipole(sym, pos, q, str(idx))
                hdr = hdr.replace(' pbc="F F F"', ' split="%s" pbe0_dipole="%.10f %.10f %.10f" '
                                  'psi4_seconds=%.1f pbc="F F F"' % (name, mu[0], mu[1], mu[2], dt))
                out.append('%d\n%s\n%s\n' % (len(sym), hdr, '\n'.join(atom_lines)))
        if not out:
            chunklock.release('pbe0_%03d' % c)
            break
        with open(path + '.tmp.%d' % os.getpid(), 'w') as f:
            f.writelines(out)
        os.rename(path + '.tmp.%d' % os.getpid(), path)
        chunklock.release('pbe0_%03d' % c)


if __name__ == '__main__':
    main()
