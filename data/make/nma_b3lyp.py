#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""B3LYP/cc-pVDZ dipoles and polarizabilities of NMA frames with psi4 1.3.2.

Run from the repository root with Debian's psi4 (Python module):
    PYTHONPATH=/usr/lib/x86_64-linux-gnu nice -n 19 /usr/bin/python3 data/make/nma_b3lyp.py check
        reproduce the first 2 frames of ../shared/refdata/nma_b3lyp/frames.xyz
        (or $TENSORIAL_SHARED/refdata/...) and print the largest differences
    PYTHONPATH=/usr/lib/x86_64-linux-gnu nice -n 19 /usr/bin/python3 data/make/nma_b3lyp.py run
        label the fixed selection below, chunk by chunk; resumable (finished chunks skipped);
        `run --chunks K` stops after K new chunks.  A chunk is computed once the MD
        trajectory contains its frames.

Recipe (exactly that of shared/refdata/nma_b3lyp/README.md): psi4 1.3.2 Python API,
set_options({'basis': 'cc-pvdz', 'scf_type': 'df', 'e_convergence': 1e-10,
'd_convergence': 1e-10}), geometry with no_com, no_reorient, symmetry c1, units angstrom,
charge 0 multiplicity 1, one thread, then
e, wfn = properties('b3lyp', properties=['dipole_polarizabilities'], return_wfn=True).
dft_dipole = SCF DIPOLE X/Y/Z (psi4 1.3 reports debye) / psi4.constants.dipmom_au2debye
(e*bohr, about the file's origin; NMA is neutral); dft_polarizability = DIPOLE
POLARIZABILITY XX XY XZ YX YY YZ ZX ZY ZZ (row-major, atomic units, analytic CPKS, static).

Selection (fixed): the NMA test split of data/make/nma_split.py (md frames of both
temperatures; split by seed, independent of the labels), every 20th test frame of each
temperature in increasing md_frame order, i.e. test frames number 0, 20, 40, ... of T=300
and of T=500.  Geometries are read from data/nma/test.xyz (a fresh clone has no trajectories) or,
for frames not shipped yet, from the xtb trajectories data/make/work/nma_md_T*/xtb.trj;
psi4 gets the positions with 10 decimals either way, so both give the same input.
Chunks of 10 frames alternate between the temperatures: chunk_000 = T300 frames 0..9 of
the selection, chunk_001 = T500 frames 0..9, chunk_002 = T300 frames 10..19, ...
Output: data/nma_b3lyp/chunk_NNN.xyz, extended XYZ, per frame md_temp, md_frame,
dft_dipole (3, a.u.), dft_polarizability (9, a.u.), psi4_seconds (wall time);
each chunk written to chunk_NNN.xyz.tmp.PID and renamed.  Two processes may run at
once: they share the chunks through locks (chunklock.py).
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import chunklock  # noqa: E402
EVERY = 20
CHUNK = 10
COMPS = ['XX', 'XY', 'XZ', 'YX', 'YY', 'YZ', 'ZX', 'ZY', 'ZZ']


def psi4_frame(sym, pos, tag):
    import psi4
    scratch = '/tmp/psi4_nma_%d' % os.getpid()
    os.makedirs(scratch, exist_ok=True)
    psi4.core.IOManager.shared_object().set_default_path(scratch)
    psi4.core.set_output_file(os.path.join(scratch, 'psi4_%s.out' % tag), False)
    psi4.core.clean_options()
    psi4.set_memory('2 GB')
    psi4.set_num_threads(1)
    geom = '0 1\n' + '\n'.join('%s %.10f %.10f %.10f' % (s, p[0], p[1], p[2]) for s, p in zip(sym, pos))
    geom += '\nno_com\nno_reorient\nsymmetry c1\nunits angstrom\n'
    psi4.geometry(geom)
    psi4.set_options({'basis': 'cc-pvdz', 'scf_type': 'df', 'e_convergence': 1e-10,
                      'd_convergence': 1e-10})
    t0 = time.time()
    e, wfn = psi4.properties('b3lyp', properties=['dipole_polarizabilities'], return_wfn=True)
    dt = time.time() - t0
    var = psi4.variable if hasattr(psi4, 'variable') else psi4.core.get_variable
    mu = np.array([var('SCF DIPOLE ' + c) for c in 'XYZ']) / psi4.constants.dipmom_au2debye
    alpha = np.array([var('DIPOLE POLARIZABILITY ' + c) for c in COMPS])
    psi4.core.clean()
    psi4.core.clean_variables()
    return mu, alpha, dt


def read_extxyz(path):
    """Minimal reader for the frames.xyz reference (floats in quoted keys)."""
    import shlex
    out = []
    with open(path) as f:
        while True:
            line = f.readline()
            if not line.strip():
                break
            n = int(line)
            info = {}
            for tok in shlex.split(f.readline()):
                if '=' in tok:
                    k, v = tok.split('=', 1)
                    info[k] = v
            sym, pos = [], []
            for _ in range(n):
                t = f.readline().split()
                sym.append(t[0])
                pos.append([float(x) for x in t[1:4]])
            out.append((sym, np.array(pos), info))
    return out


def check():
    shared = os.environ.get('TENSORIAL_SHARED', os.path.join(ROOT, '..', '..', 'shared'))
    ref = read_extxyz(os.path.join(shared, 'refdata', 'nma_b3lyp', 'frames.xyz'))
    for k in range(2):
        sym, pos, info = ref[k]
        mu, alpha, dt = psi4_frame(sym, pos, 'check%d' % k)
        mref = np.array([float(x) for x in info['dft_dipole'].split()])
        aref = np.array([float(x) for x in info['dft_polarizability'].split()])
        print('frame %d (src_frame %s): max |d dipole| = %.2e a.u., max |d alpha| = %.2e a.u., %.1f s'
              % (k, info['src_frame'], np.abs(mu - mref).max(), np.abs(alpha - aref).max(), dt))
        sys.stdout.flush()


def selection():
    """[(chunk index, T, [md_frame, ...])] in chunk order."""
    import nma_split
    test = nma_split.test_keys()
    per_t = {T: [f for (t, f) in sorted(test) if t == T][::EVERY] for T in nma_split.TEMPS}
    chunks = []
    c = 0
    for j in range(0, max(len(v) for v in per_t.values()), CHUNK):
        for T in nma_split.TEMPS:
            sel = per_t[T][j:j + CHUNK]
            if sel:
                chunks.append((c, T, sel))
                c += 1
    return chunks


def read_shipped():
    """{(md_temp, md_frame): (symbols, positions)} of data/nma/test.xyz, if present."""
    import nma_split
    path = os.path.join(ROOT, 'nma', 'test.xyz')
    out = {}
    if os.path.exists(path):
        for key, text in nma_split.read_frames(path).items():
            lines = text.split('\n')[2:]
            atoms = [l.split() for l in lines if l.strip()]
            out[key] = ([a[0] for a in atoms], np.array([[float(x) for x in a[1:4]] for a in atoms]))
    return out


def run(max_chunks=None):
    import nma_label_pm7
    done = 0
    outdir = os.path.join(ROOT, 'nma_b3lyp')
    os.makedirs(outdir, exist_ok=True)
    trj = {}
    shipped = read_shipped()
    while True:
        progress, blocked = False, False
        for c, T, sel in selection():
            path = os.path.join(outdir, 'chunk_%03d.xyz' % c)
            if os.path.exists(path):
                continue
            if all((T, f) in shipped for f in sel):
                geoms = [shipped[(T, f)] for f in sel]  # from data/nma/test.xyz
            else:
                geoms = None
            md = os.path.join(HERE, 'work', 'nma_md_T%d' % T)
            if geoms is None and not os.path.exists(os.path.join(md, 'xtb.trj')):
                blocked = True
                continue
            if geoms is not None:
                pass
            elif T not in trj or (len(trj[T]) <= max(sel) and not os.path.exists(os.path.join(md, 'xtbmdok'))):
                trj[T] = nma_label_pm7.read_trj(os.path.join(md, 'xtb.trj'))
            if geoms is None and len(trj[T]) <= max(sel):
                blocked = blocked or not os.path.exists(os.path.join(md, "xtbmdok"))
                continue  # the MD has not reached these frames (yet)
            if geoms is None:
                geoms = [trj[T][f] for f in sel]
            if not chunklock.acquire('nma_b3lyp_%03d' % c):
                continue  # another process works on it
            if os.path.exists(path):
                chunklock.release('nma_b3lyp_%03d' % c)
                continue
            lines = []
            for f, (sym, pos) in zip(sel, geoms):
                mu, alpha, dt = psi4_frame(sym, pos, 'T%d_%d' % (T, f))
                lines.append('%d\n' % len(sym))
                lines.append('Properties=species:S:1:pos:R:3 md_temp=%d md_frame=%d '
                             'dft_dipole="%.10f %.10f %.10f" dft_polarizability="%s" '
                             'psi4_seconds=%.1f pbc="F F F"\n'
                             % (T, f, mu[0], mu[1], mu[2], ' '.join('%.10f' % x for x in alpha), dt))
                for s, p in zip(sym, pos):
                    lines.append('%-2s %16.10f %16.10f %16.10f\n' % (s, p[0], p[1], p[2]))
            with open(path + '.tmp.%d' % os.getpid(), 'w') as fh:
                fh.writelines(lines)
            os.rename(path + '.tmp.%d' % os.getpid(), path)
            chunklock.release('nma_b3lyp_%03d' % c)
            progress = True
            done += 1
            if max_chunks and done >= max_chunks:
                return
        if not progress:
            if not blocked or max_chunks:
                break
            time.sleep(60)  # wait for the MD to reach the frames


if __name__ == '__main__':
    if len(sys.argv) not in (2, 4) or sys.argv[1] not in ('check', 'run'):
        sys.exit('usage: nma_b3lyp.py check | run [--chunks K]')
    if sys.argv[1] == 'check':
        check()
    else:
        run(int(sys.argv[3]) if len(sys.argv) == 4 else None)
