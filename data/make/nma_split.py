#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fixed 80/20 train/test split of the PM7-labelled NMA frames, and the shipped files.

Run from the repository root (after nma_label_pm7.py 300 and 500):
    /usr/bin/python3 data/make/nma_split.py [--partial]
(--partial: ship only the frames labelled so far; each keeps its place in the fixed split.)
Frames: md_temp in (300, 500) K, md_frame 100..5199 (snapshot index in the xtb
trajectory, one per 50 fs; 0..99 = first 5 ps equilibration dropped): 10200 keys.
Split: numpy.random.default_rng(SEED).permutation over the keys in order
(T=300 frames 100..5199, then T=500 frames 100..5199); the first 20 % (2040) are the
test set, the rest (8160) training.  The split depends only on the keys, not on labels.
Writes data/nma/train_T300.xyz, data/nma/train_T500.xyz, data/nma/test.xyz (both
temperatures), frames sorted by (md_temp, md_frame), each file written atomically.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TEMPS = (300, 500)
FIRST, LAST = 100, 5199
SEED = 20261121
TEST_FRACTION = 0.2


def all_keys():
    return [(T, f) for T in TEMPS for f in range(FIRST, LAST + 1)]


def test_keys():
    keys = all_keys()
    perm = np.random.default_rng(SEED).permutation(len(keys))
    ntest = int(round(TEST_FRACTION * len(keys)))
    return set(keys[i] for i in perm[:ntest])


def read_frames(path):
    """Returns {(T, frame): text of the frame} from a PM7 chunk file."""
    out = {}
    with open(path) as f:
        lines = f.readlines()
    i = 0
    while i < len(lines):
        n = int(lines[i])
        hdr = lines[i + 1]
        T = int(hdr.split('md_temp=')[1].split()[0])
        fr = int(hdr.split('md_frame=')[1].split()[0])
        out[(T, fr)] = ''.join(lines[i:i + n + 2])
        i += n + 2
    return out


def write(path, texts):
    with open(path + '.tmp.%d' % os.getpid(), 'w') as f:
        f.writelines(texts)
    os.rename(path + '.tmp.%d' % os.getpid(), path)


def main():
    frames = {}
    d = os.path.join(HERE, 'work', 'nma_pm7')
    for name in sorted(os.listdir(d)):
        if name.endswith('.xyz'):
            frames.update(read_frames(os.path.join(d, name)))
    keys = all_keys()
    missing = [k for k in keys if k not in frames]
    if missing:
        if '--partial' not in sys.argv:
            raise SystemExit('%d frames have no PM7 labels yet, e.g. %s (use --partial)'
                             % (len(missing), missing[:3]))
        print('partial: %d of %d frames labelled' % (len(keys) - len(missing), len(keys)))
        keys = [k for k in keys if k in frames]
    test = test_keys()
    out = os.path.join(ROOT, 'nma')
    os.makedirs(out, exist_ok=True)
    for T in TEMPS:
        sel = [frames[k] for k in keys if k[0] == T and k not in test]
        if sel:
            write(os.path.join(out, 'train_T%d.xyz' % T), sel)
    write(os.path.join(out, 'test.xyz'), [frames[k] for k in keys if k in test])
    print('train %d, test %d' % (sum(1 for k in keys if k not in test), sum(1 for k in keys if k in test)))


if __name__ == '__main__':
    main()
