#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Mutation check of the tests: which small changes to a source file does no test notice?

    /usr/bin/python3 tools/mutants.py [--n N] [--seed S] [--tests a,b] FILE.c...

For each FILE (a library file at the top level, e.g. kqeq.c, or with --tests any C file)
it tries single-token mutants in a random order (seeded, default 1) until N (default 30)
have built: an operator swapped (+ -, * /, < <=, > >=, == !=, && ||, += -=), a number
changed in its last digit (0.9 -> 0.0, 4 -> 5), an error return made a success (return
KQ_EINVAL -> return 0), fabs( or sqrt( dropped. Each mutant is built (-O1) in a scratch
git worktree of HEAD (../shared is linked next to it, so the tests that need it run),
and the C unit tests of that file run until one fails. --tests names others; a name
ending in .sh is a shell test, and the programs are built for it, e.g.
--tests test_outputs.sh,test_bad_inputs.sh cli/common.c. One line per mutant:

    killed    kqeq.c:1437:24  ==  ->  !=   test_kqeq      jit = attempt == 1 ? ...
    survived  kqeq.c:415:10   <   ->  <=                  if (n < 1 || !z || ...
    nobuild   ...                                          (the compiler refused it)

then the survivors again. Only committed code is mutated (HEAD); nothing in this tree
changes. By default no shell test (tests/*.sh) runs: confirm a survivor with `make test`
on the mutated line before calling it a gap. Reading survivors (HACKING.md, "Tests"):
many are equivalent (a buffer one larger, a flag 1 -> 2, a choice between two copies of
a loop with the same bits, a speed heuristic); some only read or write out of bounds
(`make sanitize` sees them); the rest are gaps: add a check that fails on the mutant.
A mutant takes 5-50 s with the C tests, about a minute with shell tests; 30 per file
are 5-30 minutes of one core.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# The C unit tests that exercise each library file (build/tests/NAME).
TESTS = {
    'spectra.c': ['test_spectra'],
    'xyz.c': ['test_fuzz_regress', 'test_xyz'],
    'linalg.c': ['test_kqeq_ref', 'test_qeq', 'test_linalg'],
    'soap.c': ['test_kqeq', 'test_soap'],
    'kqeq.c': ['test_kqeq', 'test_kqeq_kernel', 'test_kqeq_ref', 'test_qeq'],
    'kqeq_model.c': ['test_kqeq', 'test_kqeq_kernel', 'test_kqeq_ref', 'test_qeq'],
    'kqeq_kernels.c': ['test_kqeq', 'test_kqeq_kernel', 'test_kqeq_ref'],
    'eann.c': ['test_eann_cli', 'test_eann', 'test_eann_train'],
    'eann_kernels.c': ['test_eann_cli', 'test_eann', 'test_eann_train'],
    'eann_train.c': ['test_eann_train'],
}

# (pattern, replacement); None: change the number's last digit
OPS = [(r'(?<=[\w\)\]]) \+ (?=[\w\(])', ' - '), (r'(?<=[\w\)\]]) - (?=[\w\(])', ' + '),
       (r'(?<=[\w\)\]]) \* (?=[\w\(])', ' / '), (r'(?<=[\w\)\]]) / (?=[\w\(])', ' * '),
       (r' < ', ' <= '), (r' <= ', ' < '), (r' > ', ' >= '), (r' >= ', ' > '),
       (r' == ', ' != '), (r' != ', ' == '), (r' && ', ' || '), (r' \|\| ', ' && '),
       (r'\+= ', '-= '), (r'-= ', '+= '),
       (r'\b\d+\.\d+\b', None), (r'\b[1-9]\d*\b(?![.\w])', None),
       (r'return (?:KQ|EANN|LA|SPECTRA|XYZ)_E\w+', 'return 0'),
       (r'\bfabs\(', '('), (r'\bsqrt\(', '(')]


def candidates(lines):
    """(line index, operator index, start, end) of every mutable token outside comments,
    strings and preprocessor lines"""
    out, in_comment = [], False
    for k, line in enumerate(lines):
        s = line.strip()
        if in_comment:
            in_comment = '*/' not in s
            continue
        if s.startswith('/*') and '*/' not in s:
            in_comment = True
            continue
        if not s or s.startswith(('/*', '*', '//', '#')) or '"' in line:
            continue
        code = line.split('/*')[0]
        for oi, (pat, _) in enumerate(OPS):
            out += [(k, oi, m.start(), m.end()) for m in re.finditer(pat, code)]
    return out


def mutate(line, oi, a, b):
    old = line[a:b]
    rep = OPS[oi][1]
    if rep is None:
        new = old[:-1] + str((int(old[-1]) + 1) % 10)
    else:
        new = re.sub(OPS[oi][0], rep, old)
    return line[:a] + new + line[b:], old, new


def run(cmd, cwd, timeout):
    try:
        return subprocess.run(cmd, shell=True, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return 124


def main():
    args, n, seed, tests = sys.argv[1:], 30, 1, None
    while args and args[0].startswith('--'):
        opt, val = args[0], args[1] if len(args) > 1 else ''
        if opt == '--n':
            n = int(val)
        elif opt == '--seed':
            seed = int(val)
        elif opt == '--tests':
            tests = val.split(',')
        else:
            sys.exit(__doc__)
        args = args[2:]
    if not args:
        sys.exit(__doc__)
    root = subprocess.run(['git', 'rev-parse', '--show-toplevel'], capture_output=True,
                          text=True, check=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix='mutants.')
    wt = os.path.join(tmp, 'tensorial')
    shared = os.path.join(os.path.dirname(root), 'shared')
    if os.path.isdir(shared):
        os.symlink(shared, os.path.join(tmp, 'shared'))
    subprocess.run(['git', 'worktree', 'add', '-q', '--detach', wt, 'HEAD'], cwd=root, check=True)
    # a kill (SIGTERM) ends like Ctrl-C: through the finally below, which removes the worktree
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('mutants.py: stopped'))
    survivors, counts = [], {'killed': 0, 'survived': 0, 'nobuild': 0}
    try:
        for fname in args:
            names = tests or TESTS.get(os.path.basename(fname))
            if not names:
                sys.exit('mutants.py: no tests known for %s (give --tests)' % fname)
            path = os.path.join(wt, fname)
            orig = open(path).read()
            lines = orig.split('\n')
            cands = candidates(lines)
            random.Random(seed).shuffle(cands)
            # C tests by name (bm/tests/NAME); shell tests (NAME.sh) need the programs too
            shell = any(t.endswith('.sh') for t in names)
            bins = 'all' if shell else ' '.join('bm/tests/' + t for t in names)
            if run('make -s B=bm OPT=-O1 ' + bins, wt, 900) != 0:
                sys.exit('mutants.py: the unmutated tree does not build')
            done = tried = 0  # N mutants that built; at most 3N tries
            for k, oi, a, b in cands:
                if done >= n or tried >= 3 * n:
                    break
                new_line, old, new = mutate(lines[k], oi, a, b)
                if new_line == lines[k]:
                    continue
                t0 = time.time()
                open(path, 'w').write('\n'.join(lines[:k] + [new_line] + lines[k + 1:]))
                try:
                    status, by = 'survived', ''
                    if run('make -s B=bm OPT=-O1 ' + bins, wt, 900) != 0:
                        status = 'nobuild'
                    else:
                        for t in names:
                            cmd = 'B=bm sh tests/' + t if t.endswith('.sh') else 'bm/tests/' + t
                            if run(cmd, wt, 300) != 0:
                                status, by = 'killed', t
                                break
                finally:
                    open(path, 'w').write(orig)
                tried += 1
                done += status != 'nobuild'
                counts[status] += 1
                row = '%-9s %s:%d:%d  %s  ->  %s   %-14s %3.0fs  %s' % (
                    status, fname, k + 1, a + 1, old.strip(), new.strip(), by,
                    time.time() - t0, lines[k].strip()[:70])
                print(row, flush=True)
                if status == 'survived':
                    survivors.append(row)
    finally:
        subprocess.run(['git', 'worktree', 'remove', '--force', wt], cwd=root)
        shutil.rmtree(tmp, ignore_errors=True)
    print('%d killed, %d survived, %d did not build' %
          (counts['killed'], counts['survived'], counts['nobuild']))
    for row in survivors:
        print(row)


if __name__ == '__main__':
    main()
