#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""QM9-like organic set: enumerate molecules, embed, optimise with xtb GFN2, label dipoles.

Run from the repository root with Debian's python3 (RDKit 2022.09 from python3-rdkit):
    nice -n 19 /usr/bin/python3 data/make/qm9like_gen.py [--until N]
(--until N: only chunks 0..N-1.  Two processes may run at once: chunk locks, chunklock.py.)

Steps (all deterministic for fixed program versions; seeds below):
 1. Enumeration (RDKit, Python `random.Random(SEED)`): random valence-valid graphs of
    1..9 heavy atoms from C, N, O, F (optionally grown from an aromatic seed ring),
    random ring closures (ring sizes 3..7), filtered against strained / exotic motifs
    (see `acceptable`), canonical SMILES deduplicated.  About 7 % ions are made from
    neutral candidates: protonated aliphatic amines (+1), carboxylates (-1),
    alkoxides (-1).  The candidate list is cached in data/qm9like/candidates.tsv
    (id, canonical SMILES, charge); ids are the line numbers (0-based).
 2. 3D: RDKit ETKDGv3 (randomSeed = 1000 + id), then MMFF94 (UFF if MMFF has no
    parameters), 2000 iterations.
 3. xtb 6.5.1 GFN2-xTB, gas phase, one thread:
        xtb mol.xyz --gfn 2 --chrg Q --opt normal        (geometry optimisation)
        xtb xtbopt.xyz --gfn 2 --chrg Q --json           (single point: dipole)
    The single point is needed because after --opt the dipole in xtbout.json is not
    given in the frame of xtbopt.xyz.  xtb reports the dipole (charges + atomic dipoles,
    "full") in e*bohr about the coordinate ORIGIN of its input (checked: translating a
    cation by d changes it by Q*d).  We store it about the centre of mass:
        mu_com = mu_origin - Q * R_com   (R_com in bohr),
    masses (amu) H 1.008, C 12.011, N 14.007, O 15.999, F 18.998; 1 bohr = 0.529177210903 A.
 4. Checks: optimisation converged, SCC converged, connectivity unchanged (bonded iff
    distance < 1.25 * (r_i + r_j), covalent radii H 0.31, C 0.76, N 0.71, O 0.66,
    F 0.57 A, compared with the RDKit graph including hydrogens).  Failures are dropped
    and logged in data/make/work/qm9like_failed.tsv.
 5. Output: data/qm9like/chunks/chunk_NNNN.xyz holds candidates NNNN*250 .. +249 that
    passed, extended XYZ (positions angstrom, optimised), per frame: id, smiles (quoted,
    canonical RDKit SMILES without stereo), charge, xtb_dipole (3, e*bohr, about the
    centre of mass), xtb_energy (hartree), xtb_gap (HOMO-LUMO gap, eV).  Each chunk is
    written to a temporary name and renamed; finished chunks are skipped on rerun.
"""
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem

RDLogger.DisableLog('rdApp.*')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chunklock  # noqa: E402

SEED = 20261121
N_CANDIDATES = 12000
ION_FRACTION = 0.07
CHUNK = 250
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, 'qm9like')
CHUNKDIR = os.path.join(OUT, 'chunks')
CANDIDATES = os.path.join(OUT, 'candidates.tsv')
WORK = os.path.join(HERE, 'work')
SCRATCH = '/tmp/qm9like_scratch'

MASS = {'H': 1.008, 'C': 12.011, 'N': 14.007, 'O': 15.999, 'F': 18.998}
RCOV = {'H': 0.31, 'C': 0.76, 'N': 0.71, 'O': 0.66, 'F': 0.57}
BOHR = 0.529177210903  # angstrom

VALENCE = {'C': 4, 'N': 3, 'O': 2, 'F': 1}
ELEMENT_WEIGHTS = [('C', 0.66), ('N', 0.13), ('O', 0.17), ('F', 0.04)]
# heavy-atom count weights for n = 1..9 (QM9 is dominated by 8-9 heavy atoms)
SIZE_WEIGHTS = [1, 1, 2, 3, 5, 8, 15, 25, 40]
AROMATIC_SEEDS = ['c1ccccc1', 'c1ccncc1', 'c1cc[nH]c1', 'c1ccoc1', 'c1cnc[nH]1',
                  'c1cocn1', 'c1cncnc1', 'c1ccnnc1', 'c1cn[nH]c1', 'c1cnoc1']


def pick(rng, weighted):
    x = rng.random() * sum(w for _, w in weighted)
    for item, w in weighted:
        x -= w
        if x < 0:
            return item
    return weighted[-1][0]


def free_valence(mol, idx):
    a = mol.GetAtomWithIdx(idx)
    used = sum(b.GetBondTypeAsDouble() for b in a.GetBonds())
    return VALENCE[a.GetSymbol()] - int(round(used)) - a.GetNumExplicitHs()


BT = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


def random_molecule(rng):
    n = pick(rng, list(zip(range(1, 10), SIZE_WEIGHTS)))
    if n >= 6 and rng.random() < 0.18:
        seed = Chem.MolFromSmiles(rng.choice(AROMATIC_SEEDS))
        Chem.Kekulize(seed, clearAromaticFlags=True)
        mol = Chem.RWMol(seed)
        for a in mol.GetAtoms():
            a.SetNoImplicit(True)  # keep the seed's explicit H count fixed
    else:
        mol = Chem.RWMol()
        a = Chem.Atom(pick(rng, ELEMENT_WEIGHTS))
        a.SetNoImplicit(True)
        mol.AddAtom(a)
    # grow a tree
    while mol.GetNumAtoms() < n:
        sites = [i for i in range(mol.GetNumAtoms()) if free_valence(mol, i) > 0]
        if not sites:
            return None
        i = rng.choice(sites)
        el = pick(rng, ELEMENT_WEIGHTS)
        maxo = min(free_valence(mol, i), VALENCE[el], 3)
        order = pick(rng, [(1, 0.75), (2, 0.18), (3, 0.07)])
        order = min(order, maxo)
        a = Chem.Atom(el)
        a.SetNoImplicit(True)
        j = mol.AddAtom(a)
        mol.AddBond(i, j, BT[order])
    # ring closures
    nclose = pick(rng, [(0, 0.45), (1, 0.38), (2, 0.17)])
    for _ in range(nclose):
        dm = Chem.GetDistanceMatrix(mol, force=True)
        pairs = [(i, j) for i in range(mol.GetNumAtoms()) for j in range(i + 1, mol.GetNumAtoms())
                 if 2 <= dm[i][j] <= 6 and free_valence(mol, i) > 0 and free_valence(mol, j) > 0]
        if not pairs:
            break
        i, j = rng.choice(pairs)
        order = 2 if (dm[i][j] >= 4 and rng.random() < 0.2 and
                      min(free_valence(mol, i), free_valence(mol, j)) >= 2) else 1
        mol.AddBond(i, j, BT[order])
    # fill hydrogens
    for a in mol.GetAtoms():
        a.SetNumExplicitHs(a.GetNumExplicitHs() + free_valence(mol, a.GetIdx()))
    try:
        m = mol.GetMol()
        Chem.SanitizeMol(m)
    except Exception:
        return None
    return m


def acceptable(m):
    """Reject motifs that are exotic, strained, or that xtb tends to rearrange."""
    ri = m.GetRingInfo()
    rings = ri.AtomRings()
    if len(rings) > 3:
        return False
    if any(len(r) < 3 or len(r) > 7 for r in rings):
        return False
    for a in m.GetAtoms():
        if ri.NumAtomRings(a.GetIdx()) > 2:
            return False
        if a.GetFormalCharge() != 0 or a.GetNumRadicalElectrons():
            return False
        nd = sum(1 for b in a.GetBonds() if b.GetBondType() == Chem.BondType.DOUBLE)
        nt = sum(1 for b in a.GetBonds() if b.GetBondType() == Chem.BondType.TRIPLE)
        if nd >= 2 or (nt and nd):          # cumulenes, ketenes
            return False
        if (nd or nt) and a.IsInRing() and ri.MinAtomRingSize(a.GetIdx()) <= 4 and not a.GetIsAromatic():
            # no double/triple bonds touching 3- and 4-membered rings' atoms in the ring
            for b in a.GetBonds():
                if b.GetBondType() != Chem.BondType.SINGLE and b.IsInRing():
                    return False
    # fused small rings (bicyclobutane-like) are strained: no two rings of size <= 4 sharing atoms
    for x in range(len(rings)):
        for y in range(len(rings)):
            if x != y and len(rings[x]) <= 4 and set(rings[x]) & set(rings[y]):
                return False
    # bridged systems: two rings sharing more than 2 atoms
    for x in range(len(rings)):
        for y in range(x + 1, len(rings)):
            if len(set(rings[x]) & set(rings[y])) > 2:
                return False
    for b in m.GetBonds():
        s = {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()}
        bt = b.GetBondType()
        if bt == Chem.BondType.TRIPLE and b.IsInRing():
            return False
        if 'F' in s and s != {'C', 'F'}:
            return False
        if s == {'O'}:
            return False
        if bt != Chem.BondType.SINGLE and not b.GetIsAromatic() and 'C' not in s and s != {'N'}:
            return False  # N=O, O=O ...
        if bt == Chem.BondType.TRIPLE and s == {'N'}:
            return False
    heavy = m.GetNumAtoms()
    hetero = sum(1 for a in m.GetAtoms() if a.GetSymbol() != 'C')
    if heavy >= 3 and hetero > heavy / 2:
        return False
    # at most 3 consecutive N/O heteroatoms in a chain is still exotic: forbid N-N-N, N-N-O, etc.
    patt = Chem.MolFromSmarts('[N,O]~[N,O]~[N,O]')
    if m.HasSubstructMatch(patt):
        return False
    return True


ION_RULES = [
    # (SMARTS with the atom to change first, charge change, H change)
    ('[NX3;H2,H1,H0;!$(N-[C,N]=[O,N,C]);!$(N-a);!$(N-C#N);!$(N-N);!$(N-O)]', +1, +1),  # amine -> ammonium
    ('[OX2H1]-C(=O)', -1, -1),                                         # carboxylic acid -> carboxylate
    ('[OX2H1]-[CX4]', -1, -1),                                         # alcohol -> alkoxide
]


def make_ion(m, rng):
    order = list(range(len(ION_RULES)))
    rng.shuffle(order)
    for k in order:
        smarts, dq, dh = ION_RULES[k]
        hits = m.GetSubstructMatches(Chem.MolFromSmarts(smarts))
        if not hits:
            continue
        idx = rng.choice(hits)[0]
        rw = Chem.RWMol(m)
        a = rw.GetAtomWithIdx(idx)
        nh = a.GetTotalNumHs()
        if nh + dh < 0:
            continue
        a.SetFormalCharge(dq)
        a.SetNoImplicit(True)
        a.SetNumExplicitHs(nh + dh)
        try:
            x = rw.GetMol()
            Chem.SanitizeMol(x)
            return Chem.MolToSmiles(x), dq
        except Exception:
            continue
    return None


def enumerate_candidates():
    rng = random.Random(SEED)
    seen = set()
    neutral = []
    n_neutral = int(round(N_CANDIDATES * (1 - ION_FRACTION)))
    tries = 0
    while len(neutral) < n_neutral:
        tries += 1
        m = random_molecule(rng)
        if m is None or not acceptable(m):
            continue
        smi = Chem.MolToSmiles(m)
        if smi in seen:
            continue
        seen.add(smi)
        neutral.append(smi)
    ions = []
    for smi in neutral:
        if len(ions) >= N_CANDIDATES - n_neutral:
            break
        if rng.random() > 0.35:
            continue
        r = make_ion(Chem.MolFromSmiles(smi), rng)
        if r and r[0] not in seen:
            seen.add(r[0])
            ions.append(r)
    allc = [(s, 0) for s in neutral] + ions
    rng.shuffle(allc)
    sys.stderr.write('enumeration: %d tries, %d neutral, %d ions\n' % (tries, len(neutral), len(ions)))
    return allc


def load_candidates():
    if os.path.exists(CANDIDATES):
        out = []
        with open(CANDIDATES) as f:
            for line in f:
                if line.startswith('#'):
                    continue
                i, s, q = line.split('\t')
                out.append((s, int(q)))
        return out
    c = enumerate_candidates()
    tmp = CANDIDATES + '.tmp.%d' % os.getpid()
    with open(tmp, 'w') as f:
        f.write('# id\tcanonical_smiles\tcharge  (data/make/qm9like_gen.py, seed %d)\n' % SEED)
        for i, (s, q) in enumerate(c):
            f.write('%d\t%s\t%d\n' % (i, s, q))
    os.rename(tmp, CANDIDATES)
    return c


def embed(smi, seed):
    m = Chem.AddHs(Chem.MolFromSmiles(smi))
    p = AllChem.ETKDGv3()
    p.randomSeed = seed
    if AllChem.EmbedMolecule(m, p) != 0:
        p.useRandomCoords = True
        if AllChem.EmbedMolecule(m, p) != 0:
            return None
    if AllChem.MMFFHasAllMoleculeParams(m):
        AllChem.MMFFOptimizeMolecule(m, maxIters=2000)
    else:
        AllChem.UFFOptimizeMolecule(m, maxIters=2000)
    return m


def run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', OMP_STACKSIZE='256M')
    with open(os.path.join(cwd, 'log'), 'a') as log:
        r = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=300)
    return r.returncode


def read_xyz(path):
    with open(path) as f:
        n = int(f.readline())
        f.readline()
        sym, pos = [], []
        for _ in range(n):
            t = f.readline().split()
            sym.append(t[0])
            pos.append([float(x) for x in t[1:4]])
    return sym, pos


def connectivity_ok(m, sym, pos):
    n = m.GetNumAtoms()
    ref = set()
    for b in m.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        ref.add((min(i, j), max(i, j)))
    got = set()
    for i in range(n):
        for j in range(i + 1, n):
            d = math.dist(pos[i], pos[j])
            if d < 1.25 * (RCOV[sym[i]] + RCOV[sym[j]]):
                got.add((i, j))
    return ref == got


def process(idx, smi, q):
    """Returns (frame dict, None) or (None, reason)."""
    m = embed(smi, 1000 + idx)
    if m is None:
        return None, 'embed'
    d = os.path.join(SCRATCH, str(idx))
    shutil.rmtree(d, ignore_errors=True)
    try:
        return _xtb(m, idx, smi, q, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _xtb(m, idx, smi, q, d):
    os.makedirs(d)
    syms = [a.GetSymbol() for a in m.GetAtoms()]
    conf = m.GetConformer()
    with open(os.path.join(d, 'mol.xyz'), 'w') as f:
        f.write('%d\n%s\n' % (len(syms), smi))
        for k, s in enumerate(syms):
            p = conf.GetAtomPosition(k)
            f.write('%s %.8f %.8f %.8f\n' % (s, p.x, p.y, p.z))
    try:
        run(['xtb', 'mol.xyz', '--gfn', '2', '--chrg', str(q), '--opt', 'normal'], d)
        if not os.path.exists(os.path.join(d, 'xtbopt.xyz')):
            return None, 'opt-failed'
        with open(os.path.join(d, 'log')) as f:
            txt = f.read()
        if 'GEOMETRY OPTIMIZATION CONVERGED' not in txt:
            return None, 'opt-not-converged'
        os.makedirs(os.path.join(d, 'sp'))
        shutil.copy(os.path.join(d, 'xtbopt.xyz'), os.path.join(d, 'sp', 'opt.xyz'))
        run(['xtb', 'opt.xyz', '--gfn', '2', '--chrg', str(q), '--json'], os.path.join(d, 'sp'))
        jp = os.path.join(d, 'sp', 'xtbout.json')
        if not os.path.exists(jp):
            return None, 'sp-failed'
        with open(jp) as f:
            js = json.load(f)
        with open(os.path.join(d, 'sp', 'log')) as f:
            if 'convergence criteria satisfied' not in f.read():
                return None, 'scc-not-converged'
    except subprocess.TimeoutExpired:
        return None, 'timeout'
    sym, pos = read_xyz(os.path.join(d, 'sp', 'opt.xyz'))
    if sym != syms:
        return None, 'atom-order'
    if not connectivity_ok(m, sym, pos):
        return None, 'connectivity-changed'
    mu = js['dipole']
    mtot = sum(MASS[s] for s in sym)
    com = [sum(MASS[s] * p[k] for s, p in zip(sym, pos)) / mtot for k in range(3)]
    mu_com = [mu[k] - q * com[k] / BOHR for k in range(3)]
    if not all(math.isfinite(x) for x in mu_com):
        return None, 'nonfinite'
    return dict(id=idx, smiles=smi, charge=q, sym=sym, pos=pos, mu=mu_com,
                energy=js['total energy'], gap=js['HOMO-LUMO gap/eV']), None


def write_frames(path, frames):
    tmp = path + '.tmp.%d' % os.getpid()
    with open(tmp, 'w') as f:
        for fr in frames:
            f.write('%d\n' % len(fr['sym']))
            f.write('Properties=species:S:1:pos:R:3 id=%d smiles="%s" charge=%d '
                    'xtb_dipole="%.10f %.10f %.10f" xtb_energy=%.10f xtb_gap=%.6f pbc="F F F"\n'
                    % (fr['id'], fr['smiles'], fr['charge'], *fr['mu'], fr['energy'], fr['gap']))
            for s, p in zip(fr['sym'], fr['pos']):
                f.write('%-2s %16.10f %16.10f %16.10f\n' % (s, *p))
    os.rename(tmp, path)


def main():
    until = None  # process only chunks c < until
    if len(sys.argv) > 2 and sys.argv[1] == '--until':
        until = int(sys.argv[2])
    os.makedirs(CHUNKDIR, exist_ok=True)
    os.makedirs(WORK, exist_ok=True)
    cands = load_candidates()
    nchunks = (len(cands) + CHUNK - 1) // CHUNK
    for c in range(nchunks if until is None else min(until, nchunks)):
        path = os.path.join(CHUNKDIR, 'chunk_%04d.xyz' % c)
        if os.path.exists(path) or not chunklock.acquire('qm9like_%04d' % c):
            continue
        if os.path.exists(path):
            chunklock.release('qm9like_%04d' % c)
            continue
        t0 = time.time()
        frames, failed = [], []
        for idx in range(c * CHUNK, min((c + 1) * CHUNK, len(cands))):
            smi, q = cands[idx]
            fr, why = process(idx, smi, q)
            if fr:
                frames.append(fr)
            else:
                failed.append((idx, smi, q, why))
        write_frames(path, frames)
        with open(os.path.join(WORK, 'qm9like_failed.tsv'), 'a') as f:
            for x in failed:
                f.write('%d\t%s\t%d\t%s\n' % x)
        dt = time.time() - t0
        with open(os.path.join(WORK, 'qm9like_timing.tsv'), 'a') as f:
            f.write('chunk %04d\t%d ok\t%d failed\t%.1f s\t%.3f s/molecule\n'
                    % (c, len(frames), len(failed), dt, dt / max(1, len(frames) + len(failed))))
        chunklock.release('qm9like_%04d' % c)


if __name__ == '__main__':
    main()
