#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn the xtb NVE run of nma_ir_md.sh into the shipped trajectory.

Usage (from the repository root):
    python3 data/make/nma_ir_collect.py frames   # work/nma_ir/nve/xtb.trj -> work/nma_ir/nve_frames.xyz
    python3 data/make/nma_ir_collect.py final [S] # + labels -> data/nma_ir/nma_nve_300K.xyz.gz
    python3 data/make/nma_ir_collect.py labels   # data/nma labels -> data/nma_ir/nma_xtb_dipoles.tsv
    python3 data/make/nma_ir_collect.py trainset # data/nma + that file -> work/nma_ir/{train,test}_xtb.xyz

frames: every snapshot of the NVE run (a frame every 2 fs, 20 ps) with positions
    rounded to 1e-6 angstrom ("%.6f"), as plain extended XYZ with keys
    time (fs, 0 at the first snapshot), xtb_energy (GFN2 total energy from the
    xtb.trj comment line, hartree). The dipoles are computed on exactly these
    rounded positions (nma_ir_label.py), so the file is self-consistent.
final: adds xtb_dipole (3 numbers, e*bohr, from work/nma_ir/labels_nve_*.tsv made by
    nma_ir_label.py: _0 the even frames, _1 the odd ones) to every frame and writes data/nma_ir/nma_nve_300K.xyz.gz
    (gzip -n, level 9, so the bytes do not depend on the time of writing). With S = 2
    only every second snapshot (4 fs apart, times 0, 4, 8, ... fs) is written, when the
    odd snapshots have no dipoles yet (Nyquist 4170 cm^-1, enough for 400-4000 cm^-1).
"""
import glob, gzip, io, os, sys

here = os.path.dirname(os.path.abspath(__file__))
work = os.path.join(here, 'work', 'nma_ir')
DT_FS = 2.0


def read_trj(path):
    with open(path) as f:
        while True:
            line = f.readline()
            if not line.strip():
                return
            n = int(line)
            comment = f.readline().split()
            atoms = []
            for _ in range(n):
                p = f.readline().split()
                if len(p) < 4:
                    return  # a frame still being written by a running xtb
                atoms.append((p[0].capitalize(), float(p[1]), float(p[2]), float(p[3])))
            energy = float(comment[comment.index('energy:') + 1])
            yield energy, atoms


def frames():
    out = os.path.join(work, 'nve_frames.xyz')
    k = 0
    with open(out + '.tmp', 'w') as g:
        for energy, atoms in read_trj(os.path.join(work, 'nve', 'xtb.trj')):
            g.write('%d\nProperties=species:S:1:pos:R:3 time=%.1f xtb_energy=%.12f pbc="F F F"\n'
                    % (len(atoms), k * DT_FS, energy))
            for s, x, y, z in atoms:
                g.write('%-2s %12.6f %12.6f %12.6f\n' % (s, x, y, z))
            k += 1
    os.replace(out + '.tmp', out)
    print('%s: %d frames' % (out, k))


def final(stride=1):
    lab = {}
    for part in sorted(glob.glob(os.path.join(work, 'labels_nve_*.tsv'))):
        with open(part) as f:
            for l in f:
                if l.startswith('#') or not l.strip():
                    continue
                p = l.split()
                lab[int(p[0])] = p[1:4]
    src = open(os.path.join(work, 'nve_frames.xyz')).read().splitlines()
    buf = io.StringIO()
    i = k = 0
    while i < len(src) and src[i].strip():
        n = int(src[i])
        if k % stride == 0:
            if k not in lab:
                sys.exit('frame %d has no xtb dipole yet (labels_nve_*.tsv have %d)' % (k, len(lab)))
            buf.write(src[i] + '\n')
            buf.write(src[i + 1].replace(' pbc=', ' xtb_dipole="%s %s %s" pbc=' % tuple(lab[k])) + '\n')
            for a in src[i + 2:i + 2 + n]:
                buf.write(a + '\n')
        i += 2 + n
        k += 1
    os.makedirs(os.path.join(here, '..', 'nma_ir'), exist_ok=True)
    out = os.path.join(here, '..', 'nma_ir', 'nma_nve_300K.xyz.gz')
    with open(out + '.tmp', 'wb') as raw:
        with gzip.GzipFile(filename='', mode='wb', fileobj=raw, compresslevel=9, mtime=0) as g:
            g.write(buf.getvalue().encode())
    os.replace(out + '.tmp', out)
    print('%s: %d frames (every %d of %d snapshots)' % (out, (k + stride - 1) // stride, stride, k))


NMA_FILES = ['train_T300', 'train_T500', 'test']


def labels():
    """The GFN2-xTB dipoles of the data/nma frames labelled so far, one line per frame:
    file (train_T300 | train_T500 | test), frame index in that file (0-based), mu_x mu_y mu_z
    (e*bohr), sorted by file and frame."""
    out = os.path.join(here, '..', 'nma_ir', 'nma_xtb_dipoles.tsv')
    n = 0
    with open(out + '.tmp', 'w') as g:
        g.write('# GFN2-xTB dipoles (xtb 6.5.1 --gfn 2 --sp, e*bohr) of data/nma frames; made by '
                'data/make/nma_ir_label.py, collected by nma_ir_collect.py labels\n')
        g.write('# file\tframe\tmu_x\tmu_y\tmu_z\n')
        for name in NMA_FILES:
            path = os.path.join(work, 'labels_%s.tsv' % name)
            if not os.path.exists(path):
                continue
            lab = {}
            for l in open(path):
                if l.startswith('#') or not l.strip():
                    continue
                p = l.split()
                lab[int(p[0])] = p[1:4]
            for k in sorted(lab):
                g.write('%s\t%d\t%s\t%s\t%s\n' % ((name, k) + tuple(lab[k])))
                n += 1
    os.replace(out + '.tmp', out)
    print('%s: %d frames' % (out, n))


def trainset():
    """data/nma frames with an xtb label, the key xtb_dipole added to their comment line:
    work/nma_ir/train_xtb.xyz (train_T300 and train_T500 frames), work/nma_ir/test_xtb.xyz."""
    lab = {}
    for l in open(os.path.join(here, '..', 'nma_ir', 'nma_xtb_dipoles.tsv')):
        if l.startswith('#') or not l.strip():
            continue
        p = l.split()
        lab[(p[0], int(p[1]))] = p[2:5]
    for split, names in (('train', ['train_T300', 'train_T500']), ('test', ['test'])):
        out = os.path.join(work, '%s_xtb.xyz' % split)
        n = 0
        with open(out + '.tmp', 'w') as g:
            for name in names:
                src = open(os.path.join(here, '..', 'nma', name + '.xyz')).read().splitlines()
                i = k = 0
                while i < len(src) and src[i].strip():
                    na = int(src[i])
                    if (name, k) in lab:
                        g.write(src[i] + '\n')
                        g.write(src[i + 1] + ' xtb_dipole="%s %s %s"\n' % tuple(lab[(name, k)]))
                        g.write('\n'.join(src[i + 2:i + 2 + na]) + '\n')
                        n += 1
                    i += 2 + na
                    k += 1
        os.replace(out + '.tmp', out)
        print('%s: %d frames' % (out, n))


if __name__ == '__main__':
    {'frames': frames, 'final': final, 'labels': labels, 'trainset': trainset}[sys.argv[1]](*map(int, sys.argv[2:]))
