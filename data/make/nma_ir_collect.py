#!/usr/bin/env python3
"""Turn the xtb NVE run of nma_ir_md.sh into the shipped trajectory.

Usage (from the repository root):
    python3 data/make/nma_ir_collect.py frames   # work/nma_ir/nve/xtb.trj -> work/nma_ir/nve_frames.xyz
    python3 data/make/nma_ir_collect.py final    # + labels -> data/nma_ir/nma_nve_300K.xyz.gz

frames: every snapshot of the NVE run (a frame every 2 fs, 20 ps) with positions
    rounded to 1e-6 angstrom ("%.6f"), as plain extended XYZ with keys
    time (fs, 0 at the first snapshot), xtb_energy (GFN2 total energy from the
    xtb.trj comment line, hartree). The dipoles are computed on exactly these
    rounded positions (nma_ir_label.py), so the file is self-consistent.
final: adds xtb_dipole (3 numbers, e*bohr, from work/nma_ir/labels_nve.tsv made by
    nma_ir_label.py) to every frame and writes data/nma_ir/nma_nve_300K.xyz.gz
    (gzip -n, level 9, so the bytes do not depend on the time of writing).
"""
import gzip, io, os, sys

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
            energy = float(comment[comment.index('energy:') + 1])
            atoms = []
            for _ in range(n):
                p = f.readline().split()
                atoms.append((p[0].capitalize(), float(p[1]), float(p[2]), float(p[3])))
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


def final():
    lab = {}
    with open(os.path.join(work, 'labels_nve.tsv')) as f:
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
        if k not in lab:
            sys.exit('frame %d has no xtb dipole yet (labels_nve.tsv has %d)' % (k, len(lab)))
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
    print('%s: %d frames' % (out, k))


if __name__ == '__main__':
    {'frames': frames, 'final': final}[sys.argv[1]]()
