#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""PM7 labels (MOPAC) for the NMA molecular-dynamics frames.

Run from the repository root (after data/make/nma_md.sh T):
    nice -n 19 /usr/bin/python3 data/make/nma_label_pm7.py T [--follow]   (T = 300 or 500)
(--follow: label chunks as soon as the running MD has written their frames;
 --available: label the complete chunks whose frames exist now, then stop;
 --final: the MD was stopped early: label every frame it wrote, the last incomplete
 chunk into T{T}_NNN_partial.xyz, which must be deleted before resuming.)

Frames: snapshots of data/make/work/nma_md_T$T/xtb.trj (xtb GFN2 MD, one snapshot per
50 fs); snapshot index md_frame = 0, 1, ... in file order; the first SKIP = 100 snapshots
(5 ps) are equilibration and are dropped, so md_frame runs from 100 to 5199.

Labels: MOPAC v22.0.6 (Debian package `mopac`), PM7, one SCF at the given geometry:
    keywords  PM7 1SCF POLAR PRECISE AUX(PRECISION=9) THREADS=1   (charge 0, singlet)
 * pm7_dipole (3, e*bohr): `DIP_VEC:DEBYE[3]` of the .aux file (same frame as the input
   coordinates), divided by 2.541746473 D/(e*bohr).  The molecule is neutral, so the
   origin does not matter.
 * pm7_polarizability (9, row-major, bohr^3 = atomic units): the static (0 eV) TDHF
   polarizability, the first block "ALPHA AT 0.00000 EV. / COMPONENTS OF ALPHA" of the
   .out file (printed in a.u.).  MOPAC computes it in its own principal-axes frame:
   it prints "ROTATION MATRIX FOR ORIENTATION OF MOLECULE" R with
   x_reoriented = (x - x_com) R (row vectors; checked against its printed reoriented
   coordinates to 6e-5 A).  We orthonormalise R (SVD, it is printed with 6 decimals)
   and rotate back: alpha = R alpha' R^T, then symmetrise (alpha + alpha^T)/2 (the
   TDHF solution is converged to ATOL = 1e-3, the raw tensor is asymmetric at ~3e-4).
Output (scratch, assembled by nma_split.py): data/make/work/nma_pm7/T$T_NNN.xyz, chunks
of 250 frames, each written atomically; finished chunks are skipped on rerun.
"""
import math
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 100
CHUNK = 250
DEBYE_PER_AU = 2.541746473
KEYWORDS = 'PM7 1SCF POLAR PRECISE AUX(PRECISION=9) THREADS=1'


def read_trj(path):
    """Frames of an xtb trajectory; a last frame still being written is ignored."""
    frames = []
    with open(path) as f:
        lines = f.read().split('\n')
    i = 0
    while i < len(lines) and lines[i].strip():
        n = int(lines[i])
        block = lines[i + 2:i + 2 + n]
        if len(block) < n or i + 2 + n >= len(lines) or any(len(l.split()) != 4 for l in block):
            break
        frames.append(([l.split()[0] for l in block],
                       np.array([[float(x) for x in l.split()[1:4]] for l in block])))
        i += n + 2
    return frames


def mopac(sym, pos, d):
    with open(os.path.join(d, 'f.mop'), 'w') as f:
        f.write(KEYWORDS + '\nNMA frame\n\n')
        for s, p in zip(sym, pos):
            f.write('%-2s %16.10f 0 %16.10f 0 %16.10f 0\n' % (s, p[0], p[1], p[2]))
    for ext in ('out', 'aux', 'arc', 'pol'):
        if os.path.exists(os.path.join(d, 'f.' + ext)):
            os.remove(os.path.join(d, 'f.' + ext))
    subprocess.run(['mopac', 'f.mop'], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)
    out = open(os.path.join(d, 'f.out')).read()
    aux = open(os.path.join(d, 'f.aux')).read()
    if 'JOB ENDED NORMALLY' not in out:
        raise RuntimeError('MOPAC did not end normally')
    m = re.search(r'DIP_VEC:DEBYE\[3\]=\s*(\S+)\s+(\S+)\s+(\S+)', aux)
    mu = np.array([float(x.replace('D', 'E')) for x in m.groups()]) / DEBYE_PER_AU
    lines = out.split('\n')
    i = next(k for k, l in enumerate(lines) if 'ROTATION MATRIX FOR ORIENTATION OF MOLECULE' in l)
    R = np.array([[float(x) for x in lines[i + 2 + j].split()] for j in range(3)])
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    i = next(k for k, l in enumerate(lines) if 'ALPHA AT       0.00000 EV.' in l)
    assert 'COMPONENTS OF ALPHA' in lines[i + 2] and '*X' in lines[i + 4]
    A = np.array([[float(x) for x in lines[i + 5 + j].split()[1:4]] for j in range(3)])
    a = R @ A @ R.T
    a = 0.5 * (a + a.T)
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(a))):
        raise RuntimeError('non-finite values')
    return mu, a


def main():
    T = int(sys.argv[1])
    follow = '--follow' in sys.argv
    available = '--available' in sys.argv
    md = os.path.join(HERE, 'work', 'nma_md_T%d' % T)
    trj = os.path.join(md, 'xtb.trj')
    if not (follow or available) and not os.path.exists(os.path.join(md, 'xtbmdok')):
        sys.exit('MD at T=%d not finished (use --follow or --available)' % T)
    outdir = os.path.join(HERE, 'work', 'nma_pm7')
    os.makedirs(outdir, exist_ok=True)
    scratch = '/tmp/nma_pm7_T%d_%d' % (T, os.getpid())
    os.makedirs(scratch, exist_ok=True)
    final = '--final' in sys.argv
    c = 0
    while True:
        finished = os.path.exists(os.path.join(md, 'xtbmdok'))
        if final and not finished:
            # --final: the MD was stopped early; label every frame it wrote.  The last,
            # incomplete chunk goes to T{T}_NNN_partial.xyz (delete it before resuming).
            frames = read_trj(trj)
            idx = list(range(SKIP, len(frames)))
            if c * CHUNK >= len(idx):
                break
            full = len(idx) >= (c + 1) * CHUNK
            path = os.path.join(outdir, 'T%d_%03d%s.xyz' % (T, c, '' if full else '_partial'))
            if not os.path.exists(path):
                label_chunk(T, c, frames, idx, path, scratch)
            c += 1
            continue
        frames = read_trj(trj) if os.path.exists(trj) else []
        idx = list(range(SKIP, len(frames)))
        if c * CHUNK >= len(idx) and finished:
            break
        if len(idx) < (c + 1) * CHUNK and not finished:
            if not follow:
                break  # --available: only the chunks whose frames exist now
            time.sleep(30)  # --follow: wait for the MD to write this chunk's frames
            continue
        path = os.path.join(outdir, 'T%d_%03d.xyz' % (T, c))
        c += 1
        if os.path.exists(path):
            continue
        c -= 1
        label_chunk(T, c, frames, idx, path, scratch)
        c += 1
    shutil.rmtree(scratch, ignore_errors=True)


def label_chunk(T, c, frames, idx, path, scratch):
    t0 = time.time()
    with open(path + '.tmp.%d' % os.getpid(), 'w') as f:
        for k in idx[c * CHUNK:(c + 1) * CHUNK]:
            sym, pos = frames[k]
            mu, a = mopac(sym, pos, scratch)
            f.write('%d\n' % len(sym))
            f.write('Properties=species:S:1:pos:R:3 md_temp=%d md_frame=%d '
                    'pm7_dipole="%.10f %.10f %.10f" pm7_polarizability="%s" pbc="F F F"\n'
                    % (T, k, mu[0], mu[1], mu[2], ' '.join('%.8f' % x for x in a.reshape(-1))))
            for s, p in zip(sym, pos):
                f.write('%-2s %16.10f %16.10f %16.10f\n' % (s, p[0], p[1], p[2]))
    os.rename(path + '.tmp.%d' % os.getpid(), path)
    dt = time.time() - t0
    with open(os.path.join(HERE, 'work', 'nma_pm7_timing.tsv'), 'a') as f:
        n = len(idx[c * CHUNK:(c + 1) * CHUNK])
        f.write('T%d chunk %03d\t%d frames\t%.1f s\t%.3f s/frame\n' % (T, c, n, dt, dt / n))


if __name__ == '__main__':
    main()
