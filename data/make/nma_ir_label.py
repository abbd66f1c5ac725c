#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""GFN2-xTB dipoles (single points) for every frame of an XYZ file, resumable.

Usage (from the repository root):
    python3 data/make/nma_ir_label.py FRAMES.xyz LABELS.tsv [STRIDE [OFFSET]]

STRIDE (default 1): label frames 0, S, 2S, ... first, then 1, 1+S, ..., so that a run
stopped early still covers the whole file evenly (a trajectory at S times the time step,
a training set spread over the whole run). The lines are in labelling order; sort them
by frame (nma_ir_collect.py does). With OFFSET only the frames i with i % STRIDE ==
OFFSET are labelled (several processes on disjoint parts, each its own LABELS file).
A frame that is incomplete (a file still being written) ends the list.

FRAMES.xyz: plain or extended XYZ (the first four columns of each atom line are read:
species, x, y, z in Angstrom). LABELS.tsv gets one line per frame, appended and flushed
as it goes, so a stopped run continues where it stopped:
    frame  mu_x  mu_y  mu_z  energy
frame = 0-based index in FRAMES.xyz; mu = GFN2-xTB molecular dipole in atomic units
(e*bohr, xtb's "full" dipole = charges + atomic dipoles, taken with 8 significant digits
from xtbout.json, key "dipole"); energy = total energy in hartree (key "total energy").
Program: xtb 6.5.1 (Debian package): `xtb frame.xyz --gfn 2 --sp --json`, one thread
(OMP_NUM_THREADS=1), run with nice -n 19, default SCF settings (electronic temperature
300 K, accuracy 1), no solvent, charge 0, closed shell. Each frame starts from a fresh
scratch directory (no xtbrestart carried over), so every label is independent of the order.
"""
import json, os, shutil, subprocess, sys, tempfile


def frames(path):
    with open(path) as f:
        while True:
            line = f.readline()
            if not line.strip():
                return
            n = int(line)
            f.readline()
            atoms = [f.readline().split()[:4] for _ in range(n)]
            if any(len(a) < 4 for a in atoms):
                return
            yield atoms


def main():
    src, out = sys.argv[1], sys.argv[2]
    stride = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    offset = int(sys.argv[4]) if len(sys.argv) > 4 else None
    done = set()
    if os.path.exists(out):
        with open(out) as f:
            done = set(int(l.split()[0]) for l in f if l.strip() and not l.startswith('#'))
    env = dict(os.environ, OMP_NUM_THREADS='1', OMP_STACKSIZE='256M')
    scratch = tempfile.mkdtemp(prefix='nma_ir_label.')
    with open(out, 'a') as fo:
        if not done:
            fo.write('# frame\tmu_x\tmu_y\tmu_z (GFN2-xTB dipole, e*bohr)\tenergy (hartree); xtb 6.5.1 --gfn 2 --sp; frames of %s\n'
                     % os.path.basename(src))
        allf = list(frames(src))
        offsets = range(stride) if offset is None else [offset]
        order = [i for o in offsets for i in range(o, len(allf), stride)]
        for k, i in enumerate(order):
            atoms = allf[i]
            if i in done:
                continue
            d = os.path.join(scratch, 'f')
            shutil.rmtree(d, ignore_errors=True)
            os.mkdir(d)
            with open(os.path.join(d, 'frame.xyz'), 'w') as g:
                g.write('%d\n\n' % len(atoms))
                for a in atoms:
                    g.write('%s %s %s %s\n' % tuple(a))
            r = subprocess.run(['nice', '-n', '19', 'xtb', 'frame.xyz', '--gfn', '2', '--sp', '--json'],
                               cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            js = os.path.join(d, 'xtbout.json')
            if r.returncode != 0 or not os.path.exists(js):
                sys.exit('%s: frame %d: xtb failed (exit %d)' % (src, i, r.returncode))
            with open(js) as g:
                res = json.load(g)
            mu = res['dipole']
            fo.write('%d\t%.8f\t%.8f\t%.8f\t%.10f\n' % (i, mu[0], mu[1], mu[2], res['total energy']))
            fo.flush()
            if k % 500 == 0:
                print('%s: %d of %d frames' % (src, k, len(allf)), file=sys.stderr, flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
    main()
