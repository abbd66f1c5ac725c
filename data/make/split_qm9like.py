#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fixed train / validation / test split of the QM9-like organic set.

Run from the repository root after qm9like_gen.py:
    /usr/bin/python3 data/make/split_qm9like.py
Reads every data/qm9like/chunks/chunk_*.xyz; ids are candidate ids (0..11999).
Order: numpy.random.default_rng(SEED).permutation(12000) over all candidate ids, keeping
the ids that passed xtb; in that order the first 1000 are the test set, the next 1000 the
validation set, the rest training (if fewer than 5000 molecules passed: 20 % / 20 % / 60 %).
The split is a deterministic function of the set of computed molecules; adding chunks
changes it (the first 1000 of the enlarged set are a different 1000).
Writes data/qm9like/train.xyz, valid.xyz, test.xyz (frames as in the chunks, sorted by id),
each atomically.  Canonical SMILES are unique over the whole set (checked).
"""
import glob
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEED = 4242
N_CANDIDATES = 12000


def read_frames(path):
    out = {}
    with open(path) as f:
        lines = f.readlines()
    i = 0
    while i < len(lines):
        n = int(lines[i])
        hdr = lines[i + 1]
        idx = int(hdr.split(' id=')[1].split()[0])
        smi = hdr.split('smiles="')[1].split('"')[0]
        out[idx] = (smi, ''.join(lines[i:i + n + 2]))
        i += n + 2
    return out


def split_ids(ids):
    ids = set(ids)
    order = [int(i) for i in np.random.default_rng(SEED).permutation(N_CANDIDATES) if int(i) in ids]
    n = len(order)
    ntest = nvalid = 1000 if n >= 5000 else int(round(0.2 * n))
    return (sorted(order[ntest + nvalid:]), sorted(order[ntest:ntest + nvalid]), sorted(order[:ntest]))


def write(path, texts):
    with open(path + '.tmp.%d' % os.getpid(), 'w') as f:
        f.writelines(texts)
    os.rename(path + '.tmp.%d' % os.getpid(), path)


def main():
    frames = {}
    for p in sorted(glob.glob(os.path.join(ROOT, 'qm9like', 'chunks', 'chunk_*.xyz'))):
        frames.update(read_frames(p))
    smiles = [s for s, _ in frames.values()]
    assert len(set(smiles)) == len(smiles), 'duplicate SMILES'
    train, valid, test = split_ids(frames.keys())
    for name, ids in (('train', train), ('valid', valid), ('test', test)):
        write(os.path.join(ROOT, 'qm9like', name + '.xyz'), [frames[i][1] for i in ids])
        print('%s: %d molecules, %d ions' % (name, len(ids),
                                              sum(1 for i in ids if ' charge=0 ' not in frames[i][1])))


if __name__ == '__main__':
    main()
