#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Signed n->pi* and pi->pi* transition dipoles of NMA frames, TDDFT B3LYP/cc-pVDZ (NWChem 7.0.2).

Run from the repository root (Debian's `nwchem` 7.0.2-4, OpenMPI build, one process):
    OMP_NUM_THREADS=1 nice -n 19 /usr/bin/python3 data/make/nma_tdm.py run [--chunks K]
        label the fixed selection below chunk by chunk; resumable (finished chunks skipped,
        and finished NWChem outputs of an unfinished chunk are reused); `--chunks K` stops
        after K new chunks.  Two processes may run at once (chunk locks, chunklock.py).
    /usr/bin/python3 data/make/nma_tdm.py check
        ground-state dipole of the first frame of ../shared/refdata/nma_b3lyp/frames.xyz
        (or $TENSORIAL_SHARED/refdata/...) against its psi4 B3LYP/cc-pVDZ value.
    /usr/bin/python3 data/make/nma_tdm.py parse OUT...
        print the roots, the amide-plane analysis and the chosen states of NWChem outputs.

Level of theory (the EANN chapter's recipe, B3LYP/cc-pVDZ TDDFT, made in NWChem since
Gaussian 09 is not available): NWChem 7.0.2 (`nwchem` 7.0.2-4, "Northwest Computational
Chemistry Package (NWChem) 7.0.2"), input
    geometry units angstrom nocenter noautoz noautosym / symmetry c1  (positions as in the file)
    basis spherical / * library cc-pvdz                  (5d, as Gaussian's cc-pVDZ)
    dft / xc b3lyp / convergence energy 1e-8             (medium grid, NWChem's default)
    tddft / nroots NROOTS / notriplet                    (full linear-response TDDFT = RPA,
                                                          NWChem's default, as Gaussian's TD)
    task tddft energy
NWChem's `xc b3lyp` uses VWN_1_RPA local correlation (VWN formula 1, RPA parameters), the
Gaussian flavour of B3LYP (Gaussian's "VWN functional III"), not the VWN5 flavour;
psi4's test suite (tests/dft-b3lyp) finds psi4's b3lyp equal to NWChem's default b3lyp
(closed shell) and to Gaussian's (open shell), and the ground-state dipole agrees with the
psi4 reference to 5e-5 a.u. (`check`), so no custom `xc` line is used.  The
transition moments NWChem prints per root ("Transition Moments X Y Z") are length-gauge
<0|r|n> in atomic units (e*bohr), in the input frame (nocenter, noautosym); checked by
f = 2/3 dE(hartree) |t|^2 against the printed "Dipole Oscillator Strength" (see data/README.md).

Selection (fixed, no seed): the project's split (data/make/nma_split.py, files data/nma/).
Let A300 = every 10th frame of data/nma/train_T300.xyz (file order = increasing md_frame,
frames number 0, 10, 20, ...), A500 the same of train_T500.xyz, B300 / B500 every 10th
NMA test frame of each temperature (data/nma/test.xyz, increasing md_frame).  Chunk k
(k = 0 .. NCHUNK-1 = 99) holds, in this order, A300[k + 100 m] (m = 0..3), A500[k + 100 m]
(m = 0..3), B300[k], B500[k]: 8 train and 2 test frames, both temperatures, spread over the
whole trajectories (train frames 100 * 10 * 50 fs = 50 ps apart).  100 chunks = 1000 frames
(800 train, 200 test).  Test frames B[k] with even k are also frames of data/nma_b3lyp/.

State identification (amide plane from O, carbonyl C (the C nearest to O) and N):
    n = unit((O - C) x (N - C)); out-of-plane fraction of root i: p_i = |t_i . n| / |t_i|.
    n->pi*: root 1 (the lowest singlet), required to have f_1 < F_NPI_MAX (0.02) and
            E_1 < E_NPI_MAX (6.5 eV), and either to be isolated (root 2 at least GAP_NPI =
            0.5 eV higher) or to be clearly out-of-plane (p_1 >= P_NPI = 0.5 and the largest p
            of roots 1-3).  p alone is not required: in strongly non-planar 500 K frames
            (pyramidal N, twisted amide) the lowest, isolated n->pi* state can have p ~ 0.4.
    pi->pi*: among the roots 2..NROOTS with E < E_PIPI_MAX (9 eV), the one with the largest
            in-plane oscillator strength f_i (1 - p_i^2); required: that in-plane strength
            >= F_PIPI_MIN (0.05) and >= RATIO_PIPI (1.5) times that of the runner-up.
    Each state is judged on its own (issue 17).  A state that fails a requirement is
    reported on stderr (table of roots, reasons, frame) and its keys (tdm_, exc_, osc_,
    root_ + npi / pipi) are left out of the frame: the absence of a state's keys is its
    ambiguity flag (no NaN is ever written), and data/select.sh --has tdm_npi picks the
    frames that carry a label.  The reasons are listed, one line per ambiguous state, in
    data/nma_tdm/chunk_NNN.ambiguous.tsv (md_temp, md_frame, split, state npi|pipi,
    reason; written only for chunks with an ambiguous state, before the chunk itself).  A
    frame with both states ambiguous has no label and is left out of the chunk (its two
    lines are in the .tsv).  NWChem outputs are kept, so a later change of the rules costs
    no recomputation.
    Chunks made before issue 17 (000-006) left out the whole frame when one state was
    ambiguous and listed it in chunk_NNN.excluded.tsv; `run` first recomputes those frames
    (recover()), inserts them in selection order (the other frames' text unchanged) and
    replaces the .excluded.tsv by a .ambiguous.tsv.
Sign convention (the phase of an excited state is arbitrary; the project's TDM loss is
phase-free): tdm_npi . n >= 0, tdm_pipi . (O - N) >= 0 (the pi->pi* moment of NMA lies
near the N...O direction).

Output: data/nma_tdm/chunk_NNN.xyz, extended XYZ, species and positions (angstrom) copied
verbatim from the source split file, per frame: md_temp, md_frame, split ("train"/"test"),
tdm_npi, tdm_pipi (3 each, e*bohr, input frame), exc_npi_ev, exc_pipi_ev (eV),
osc_npi, osc_pipi (dipole oscillator strengths), root_npi, root_pipi (1-based root
numbers) (the keys of an ambiguous state absent, see above), exc_all_ev, osc_all, perp_all (NROOTS each: energies, oscillator strengths and
out-of-plane fractions p of all roots, for auditing), nwchem_seconds (wall time).
Each chunk is written to chunk_NNN.xyz.tmp.PID and renamed.  NWChem outputs are kept in
data/make/work/nma_tdm_out/T{T}_{frame}.out (scratch in /tmp/nwchem_tdm_PID).
"""
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import chunklock  # noqa: E402

NROOTS = 10
NCHUNK = 100
EVERY = 10
COMPUTE_ORDER = (0, 4, 8, 1, 5, 9, 2, 6, 3, 7)  # order of the 10 frames of a chunk in computing
P_NPI = 0.5          # n->pi*: minimum out-of-plane fraction of root 1
F_NPI_MAX = 0.02     # n->pi*: maximum oscillator strength
E_NPI_MAX = 6.5      # eV
GAP_NPI = 0.5        # eV, root 2 - root 1 gap that makes root 1 unambiguous without the p rule
E_PIPI_MAX = 9.0     # eV, window for pi->pi*
F_PIPI_MIN = 0.05    # minimum in-plane oscillator strength of pi->pi*
RATIO_PIPI = 1.5     # ... and its margin over the runner-up
HARTREE_EV = 27.211386245988   # CODATA 2018
OUTDIR = os.path.join(HERE, 'work', 'nma_tdm_out')

NW_INPUT = """start {name}
permanent_dir {scratch}
scratch_dir {scratch}
memory total 1500 mb
echo
geometry units angstrom nocenter noautoz noautosym
 symmetry c1
{atoms}
end
basis spherical
 * library cc-pvdz
end
dft
 xc b3lyp
 convergence energy 1e-8
end
tddft
 nroots {nroots}
 notriplet
end
task tddft energy
"""


def run_nwchem(atom_lines, tag):
    """Runs NWChem on the atoms (lines 'sym x y z', angstrom); returns (output text, seconds)."""
    os.makedirs(OUTDIR, exist_ok=True)
    out = os.path.join(OUTDIR, tag + '.out')
    if os.path.exists(out):
        text = open(out).read()
        m = re.search(r'nwchem_seconds=([0-9.]+)', text)
        if m and 'Total times' in text:
            return text, float(m.group(1))
    scratch = '/tmp/nwchem_tdm_%d' % os.getpid()
    os.makedirs(scratch, exist_ok=True)
    inp = NW_INPUT.format(name=tag, scratch=scratch, nroots=NROOTS,
                          atoms='\n'.join('  ' + l.strip() for l in atom_lines))
    with open(os.path.join(scratch, tag + '.nw'), 'w') as f:
        f.write(inp)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    t0 = time.time()
    r = subprocess.run(['nwchem', tag + '.nw'], cwd=scratch, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dt = time.time() - t0
    text = r.stdout.decode(errors='replace')
    if r.returncode != 0 or 'Total times' not in text:
        with open(out + '.failed', 'w') as f:
            f.write(text)
        raise SystemExit('nma_tdm: NWChem failed on %s (exit %d), output in %s.failed'
                         % (tag, r.returncode, out))
    text += '\nnwchem_seconds=%.1f\n' % dt
    with open(out + '.tmp.%d' % os.getpid(), 'w') as f:
        f.write(text)
    os.rename(out + '.tmp.%d' % os.getpid(), out)
    shutil.rmtree(scratch, ignore_errors=True)
    return text, dt


FLOAT = r'([-+]?\d+\.\d+(?:[EeDd][-+]?\d+)?)'


def parse(text):
    """Roots of a tddft energy run: list of (E hartree, E eV, t[3] a.u., f)."""
    roots = []
    blocks = re.split(r'\n\s*Root\s+', text)
    for b in blocks[1:]:
        head = b.split('\n', 1)[0]
        m = re.match(r'(\d+)\s+singlet\s+\S+\s+' + FLOAT + r'\s+a\.u\.\s+' + FLOAT + r'\s+eV', head)
        if not m:
            continue
        mt = re.search(r'Transition Moments\s+X\s+' + FLOAT + r'\s+Y\s+' + FLOAT + r'\s+Z\s+' + FLOAT, b)
        mf = re.search(r'Dipole Oscillator Strength\s+' + FLOAT, b)
        if not (mt and mf):
            raise ValueError('root %s: no transition moments / oscillator strength' % m.group(1))
        roots.append((int(m.group(1)), float(m.group(2)), float(m.group(3)),
                      np.array([float(mt.group(i)) for i in (1, 2, 3)]), float(mf.group(1))))
    roots.sort(key=lambda r: r[0])
    if [r[0] for r in roots] != list(range(1, len(roots) + 1)):
        raise ValueError('roots not numbered 1..n')
    return [r[1:] for r in roots]


def ground_dipole(text):
    """Total ground-state dipole (a.u.) from the DFT multipole analysis."""
    d = []
    for ax in ('1 0 0', '0 1 0', '0 0 1'):
        m = re.search(r'\n\s+1\s+' + ax + r'\s+' + FLOAT, text)
        d.append(float(m.group(1)))
    return np.array(d)


def amide_frame(sym, pos):
    """(n, u): unit amide-plane normal (O-C)x(N-C) and unit N->O vector; pos in angstrom."""
    pos = np.asarray(pos, float)
    iO = sym.index('O')
    iN = sym.index('N')
    cs = [i for i, s in enumerate(sym) if s == 'C']
    iC = min(cs, key=lambda i: np.linalg.norm(pos[i] - pos[iO]))
    n = np.cross(pos[iO] - pos[iC], pos[iN] - pos[iC])
    u = pos[iO] - pos[iN]
    return n / np.linalg.norm(n), u / np.linalg.norm(u)


def identify(roots, sym, pos, tag):
    """Identifies each state on its own (issue 17: one ambiguous state no longer costs the
    other).  Returns (i_npi, why_npi, i_pipi, why_pipi, p): 0-based root index of a state,
    or None with the reasons (a string) when that state is ambiguous; p = out-of-plane
    fractions of all roots.  The rules are those of the module docstring, unchanged."""
    n, _ = amide_frame(sym, pos)
    p = np.array([abs(t @ n) / max(np.linalg.norm(t), 1e-12) for (_, _, t, _) in roots])
    ev = np.array([r[1] for r in roots])
    f = np.array([r[3] for r in roots])
    why = []
    if f[0] >= F_NPI_MAX:
        why.append('root 1 f = %.4f >= %.3f' % (f[0], F_NPI_MAX))
    if ev[0] >= E_NPI_MAX:
        why.append('root 1 at %.2f eV >= %.2f' % (ev[0], E_NPI_MAX))
    if ev[1] - ev[0] < GAP_NPI and (p[0] < P_NPI or int(np.argmax(p[:3])) != 0):
        why.append('root 2 only %.2f eV above root 1 and root 1 not clearly out-of-plane '
                   '(p = %.2f, largest p of roots 1-3: %.2f, root %d)'
                   % (ev[1] - ev[0], p[0], p[:3].max(), int(np.argmax(p[:3])) + 1))
    why_npi = '; '.join(why)
    i_npi = None if why else 0
    why = []
    fin = f * (1.0 - p ** 2)
    cand = [i for i in range(1, len(roots)) if ev[i] < E_PIPI_MAX]
    i_pipi = None
    if not cand:
        why.append('no root 2..%d below %.1f eV' % (len(roots), E_PIPI_MAX))
    else:
        cand.sort(key=lambda i: -fin[i])
        if fin[cand[0]] < F_PIPI_MIN:
            why.append('largest in-plane f %.3f (root %d) < %.3f' % (fin[cand[0]], cand[0] + 1, F_PIPI_MIN))
        if len(cand) > 1 and fin[cand[0]] < RATIO_PIPI * fin[cand[1]]:
            why.append('pi->pi* ambiguous: in-plane f %.3f (root %d) vs %.3f (root %d)'
                       % (fin[cand[0]], cand[0] + 1, fin[cand[1]], cand[1] + 1))
        if not why:
            i_pipi = cand[0]
    why_pipi = '; '.join(why)
    return i_npi, why_npi, i_pipi, why_pipi, p


def report(roots, p, tag):
    lines = ['%s: root  E/eV     f        p     |t|/au   f_check' % tag]
    for i, ((eh, ev, t, f), pi) in enumerate(zip(roots, p)):
        lines.append('  %2d  %7.3f  %.5f  %.3f  %.5f  %.5f'
                     % (i + 1, ev, f, pi, np.linalg.norm(t), 2.0 / 3.0 * eh * (t @ t)))
    return '\n'.join(lines)


def label(atom_lines, tag):
    """NWChem + identification; returns a dict of the output keys.  The keys of a state
    (tdm_, exc_, osc_, root_ + npi / pipi) are None when that state is ambiguous, and
    'why_npi' / 'why_pipi' then hold the reasons ('' when the state was identified)."""
    sym = [l.split()[0] for l in atom_lines]
    pos = np.array([[float(x) for x in l.split()[1:4]] for l in atom_lines])
    text, dt = run_nwchem(atom_lines, tag)
    roots = parse(text)
    if len(roots) != NROOTS:
        raise SystemExit('nma_tdm: frame %s: %d roots in the NWChem output, expected %d'
                         % (tag, len(roots), NROOTS))
    i1, why1, i2, why2, p = identify(roots, sym, pos, tag)
    n, u = amide_frame(sym, pos)
    r = {'exc_all_ev': [x[1] for x in roots], 'osc_all': [x[3] for x in roots],
         'perp_all': list(p), 'nwchem_seconds': dt, 'why_npi': why1, 'why_pipi': why2}
    for st, i, axis in (('npi', i1, n), ('pipi', i2, u)):
        if i is None:
            r.update({'tdm_' + st: None, 'exc_%s_ev' % st: None, 'osc_' + st: None, 'root_' + st: None})
        else:
            t = roots[i][2] * (1.0 if roots[i][2] @ axis >= 0 else -1.0)
            r.update({'tdm_' + st: t, 'exc_%s_ev' % st: roots[i][1], 'osc_' + st: roots[i][3],
                      'root_' + st: i + 1})
    if why1 or why2:
        print('%s\nnma_tdm: frame %s: ambiguous: %s' % (
            report(roots, p, tag), tag, '; '.join(w for w in (why1 and 'n->pi*: ' + why1,
                                                               why2 and 'pi->pi*: ' + why2) if w)),
              file=sys.stderr)
        sys.stderr.flush()
    return r


def read_split(path):
    """[(md_temp, md_frame, [atom lines verbatim])] in file order (nma_split.read_frames)."""
    import nma_split
    return [(T, f, text.split('\n')[2:-1]) for (T, f), text in nma_split.read_frames(path).items()]


def selection():
    """[(chunk, [(split, T, frame, atom lines), ...])] for chunks 0..NCHUNK-1."""
    d = os.path.join(ROOT, 'nma')
    a = {T: read_split(os.path.join(d, 'train_T%d.xyz' % T))[::EVERY] for T in (300, 500)}
    test = read_split(os.path.join(d, 'test.xyz'))
    b = {T: [x for x in test if x[0] == T][::EVERY] for T in (300, 500)}
    for T in (300, 500):
        if len(a[T]) < 100 * 3 + NCHUNK or len(b[T]) < NCHUNK:
            raise SystemExit('nma_tdm: data/nma/ has too few frames for %d chunks' % NCHUNK)
    chunks = []
    for k in range(NCHUNK):
        fr = [('train',) + a[T][k + 100 * m] for T in (300, 500) for m in range(4)]
        fr += [('test',) + b[T][k] for T in (300, 500)]
        chunks.append((k, fr))
    return chunks


def vec(x, fmt='%.6f'):
    return '"' + ' '.join(fmt % v for v in x) + '"'


def frame_lines(split, T, f, atoms, r):
    """The extended-XYZ lines of one labelled frame (atom lines copied verbatim).  The keys
    of an ambiguous state are left out (its flag is their absence; the reason is in the
    chunk's .ambiguous.tsv); every number written is finite."""
    hdr = 'Properties=species:S:1:pos:R:3 md_temp=%d md_frame=%d split=%s' % (T, f, split)
    for st in ('npi', 'pipi'):
        if r['tdm_' + st] is not None:
            hdr += ' tdm_%s=%s' % (st, vec(r['tdm_' + st], '%.5f'))
    for st in ('npi', 'pipi'):
        if r['tdm_' + st] is not None:
            hdr += ' exc_%s_ev=%.4f' % (st, r['exc_%s_ev' % st])
    for st in ('npi', 'pipi'):
        if r['tdm_' + st] is not None:
            hdr += ' osc_%s=%.10f' % (st, r['osc_' + st])
    for st in ('npi', 'pipi'):
        if r['tdm_' + st] is not None:
            hdr += ' root_%s=%d' % (st, r['root_' + st])
    hdr += (' exc_all_ev=%s osc_all=%s perp_all=%s nwchem_seconds=%.1f pbc="F F F"\n'
            % (vec(r['exc_all_ev'], '%.4f'), vec(r['osc_all'], '%.10f'), vec(r['perp_all'], '%.4f'),
               r['nwchem_seconds']))
    return ['%d\n' % len(atoms), hdr] + [a + '\n' for a in atoms]


def write_atomic(path, text):
    with open(path + '.tmp.%d' % os.getpid(), 'w') as fh:
        fh.write(text)
    os.rename(path + '.tmp.%d' % os.getpid(), path)


def label_chunk(k, frames, skip=None):
    """Labels the frames of chunk k (in COMPUTE_ORDER) except those in `skip` (a set of
    selection indices); returns ({index: result}, [ambiguity lines of the .tsv])."""
    res, amb = {}, []
    for j in COMPUTE_ORDER:  # both temperatures early; the file keeps the selection order
        if skip and j in skip:
            continue
        split, T, f, atoms = frames[j]
        tag = 'T%d_%d' % (T, f)
        r = label(atoms, tag)
        for st, name in (('npi', 'n->pi*'), ('pipi', 'pi->pi*')):
            if r['why_' + st]:
                amb.append((j, '%d\t%d\t%s\t%s\t%s\n' % (T, f, split, st, r['why_' + st])))
        print('chunk %03d %s %-5s npi %s | pipi %s | %.0f s' % (
            k, tag, split,
            'root %d %.3f eV f %.5f p %.2f' % (r['root_npi'], r['exc_npi_ev'], r['osc_npi'],
                                              r['perp_all'][r['root_npi'] - 1])
            if r['tdm_npi'] is not None else 'ambiguous',
            'root %d %.3f eV f %.4f' % (r['root_pipi'], r['exc_pipi_ev'], r['osc_pipi'])
            if r['tdm_pipi'] is not None else 'ambiguous', r['nwchem_seconds']))
        sys.stdout.flush()
        res[j] = r
    amb.sort()
    return res, [line for _, line in amb]


AMB_HEADER = 'md_temp\tmd_frame\tsplit\tstate\treason\n'


def write_chunk(path, frames, res, old, amb):
    """chunk_NNN.ambiguous.tsv (if any state is ambiguous), then chunk_NNN.xyz: the frames in
    selection order, an old frame's text verbatim (old: {(T, f): text}), a new one from its
    result; a frame with neither state identified is left out (it has no label)."""
    if amb:
        write_atomic(path[:-len('.xyz')] + '.ambiguous.tsv', AMB_HEADER + ''.join(amb))
    lines = []
    for j, (split, T, f, atoms) in enumerate(frames):
        if (T, f) in old:
            lines.append(old[(T, f)])
        elif j in res and (res[j]['tdm_npi'] is not None or res[j]['tdm_pipi'] is not None):
            lines.extend(frame_lines(split, T, f, atoms, res[j]))
    write_atomic(path, ''.join(lines))


def recover(k, frames, path):
    """Chunks written before issue 17 left out a whole frame when one state was ambiguous
    (listed in chunk_NNN.excluded.tsv).  Recomputes those frames (NWChem outputs are reused
    if present), inserts them in selection order with the keys of the states that are
    identified (the old frames' text is kept byte for byte), writes chunk_NNN.ambiguous.tsv
    and removes the .excluded.tsv."""
    import nma_split
    xpath = path[:-len('.xyz')] + '.excluded.tsv'
    with open(xpath) as fh:
        excl = {(int(l.split('\t')[0]), int(l.split('\t')[1])) for l in fh.readlines()[1:] if l.strip()}
    old = nma_split.read_frames(path)
    skip = {j for j, (_, T, f, _) in enumerate(frames) if (T, f) not in excl}
    if {(T, f) for (_, T, f, _) in frames} != set(old) | excl or set(old) & excl:
        raise SystemExit('nma_tdm: %s and %s do not partition chunk %03d' % (path, xpath, k))
    res, amb = label_chunk(k, frames, skip)
    write_chunk(path, frames, res, old, amb)
    os.remove(xpath)
    print('nma_tdm: chunk %03d: %d excluded frames recomputed, %d with a label now'
          % (k, len(res), sum(1 for r in res.values() if r['tdm_npi'] is not None or r['tdm_pipi'] is not None)))
    sys.stdout.flush()


def run(max_chunks=None):
    """Recovers the frames of old chunks first (chunk_NNN.excluded.tsv), then labels new chunks."""
    outdir = os.path.join(ROOT, 'nma_tdm')
    os.makedirs(outdir, exist_ok=True)
    done = 0
    chunks = selection()
    todo = [(k, fr, True) for k, fr in chunks
            if os.path.exists(os.path.join(outdir, 'chunk_%03d.excluded.tsv' % k))]
    todo += [(k, fr, False) for k, fr in chunks]
    for k, frames, old in todo:
        path = os.path.join(outdir, 'chunk_%03d.xyz' % k)
        xpath = path[:-len('.xyz')] + '.excluded.tsv'
        if (old and not os.path.exists(xpath)) or (not old and os.path.exists(path)):
            continue
        if not chunklock.acquire('nma_tdm_%03d' % k):
            continue
        if (old and not os.path.exists(xpath)) or (not old and os.path.exists(path)):
            chunklock.release('nma_tdm_%03d' % k)
            continue
        if old:
            recover(k, frames, path)
        else:
            res, amb = label_chunk(k, frames)
            write_chunk(path, frames, res, {}, amb)
            print('nma_tdm: chunk %03d: %d frames, n->pi* %d, pi->pi* %d'
                  % (k, sum(1 for r in res.values() if r['tdm_npi'] is not None or r['tdm_pipi'] is not None),
                     sum(1 for r in res.values() if r['tdm_npi'] is not None),
                     sum(1 for r in res.values() if r['tdm_pipi'] is not None)))
            sys.stdout.flush()
        chunklock.release('nma_tdm_%03d' % k)
        done += 1
        if max_chunks and done >= max_chunks:
            break


def check():
    shared = os.environ.get('TENSORIAL_SHARED', os.path.join(ROOT, '..', '..', 'shared'))
    path = os.path.join(shared, 'refdata', 'nma_b3lyp', 'frames.xyz')
    with open(path) as f:
        lines = f.read().split('\n')
    n = int(lines[0])
    ref = np.array([float(x) for x in lines[1].split('dft_dipole="')[1].split('"')[0].split()])
    text, dt = run_nwchem(lines[2:2 + n], 'check_refdata0')
    mu = ground_dipole(text)
    print('refdata frame 0: NWChem dipole %s, psi4 %s, max |diff| %.1e a.u. (%.0f s)'
          % (np.array2string(mu, precision=6), np.array2string(ref, precision=6),
             np.abs(mu - ref).max(), dt))


def out_geometry(text):
    """Symbols and angstrom positions from the first 'Output coordinates in angstroms' block."""
    blk = text.split('Output coordinates in angstroms', 1)[1].split('\n')[4:]
    sym, pos = [], []
    for l in blk:
        t = l.split()
        if len(t) != 6:
            break
        sym.append(t[1])
        pos.append([float(x) for x in t[3:6]])
    return sym, np.array(pos)


def parse_cmd(paths):
    for out in paths:
        text = open(out).read()
        sym, pos = out_geometry(text)
        roots = parse(text)
        n, u = amide_frame(sym, pos)
        p = np.array([abs(t @ n) / max(np.linalg.norm(t), 1e-12) for (_, _, t, _) in roots])
        print(report(roots, p, os.path.basename(out)))
        i1, why1, i2, why2, p = identify(roots, sym, pos, os.path.basename(out))
        print('  -> n->pi* %s, pi->pi* %s' % (
            'root %d' % (i1 + 1) if i1 is not None else 'ambiguous (%s)' % why1,
            'root %d (|cos(t_pipi, N->O)| %.2f)' % (i2 + 1, abs(roots[i2][2] @ u) / np.linalg.norm(roots[i2][2]))
            if i2 is not None else 'ambiguous (%s)' % why2))


if __name__ == '__main__':
    if len(sys.argv) >= 2 and sys.argv[1] == 'parse':
        parse_cmd(sys.argv[2:])
    elif len(sys.argv) == 2 and sys.argv[1] == 'check':
        check()
    elif len(sys.argv) in (2, 4) and sys.argv[1] == 'run':
        run(int(sys.argv[3]) if len(sys.argv) == 4 else None)
    else:
        sys.exit('usage: nma_tdm.py run [--chunks K] | check | parse OUT...')
