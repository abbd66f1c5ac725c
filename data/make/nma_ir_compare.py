#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare two spectra written by `spectrum` (issue 15 acceptance numbers).

Usage (from the repository root):
    python3 data/make/nma_ir_compare.py REF.tsv OTHER.tsv [COLUMN] [VIBSPECTRUM] [THRESHOLD]

REF, OTHER: TSV files of `spectrum ir` / `spectrum raman` on the same grid
(header lines start with '#'); COLUMN: the intensity column, 1-based counting
the wavenumber as column 1 (default 2: the IR column; 4 = Raman total).
Prints
  - the bands of REF: maxima above THRESHOLD (default 0.1 = 10 %) of REF's largest
    value in 400-4000 cm^-1,
    each the largest value within +-10 cm^-1 (the definition `spectrum` uses);
    for each, OTHER's nearest band maximum (same rule, any height) and the difference;
  - the spectral overlap: cosine of the two intensity vectors on 400-4000 cm^-1;
  - band integrals (trapezoid over +-40 cm^-1 around each band) of both;
  - with VIBSPECTRUM (xtb --hess/--ohess output file `vibspectrum`): the harmonic
    wavenumbers and IR intensities (km/mol) of the modes above 400 cm^-1, for
    comparison with the band maxima and integrals (IR in km/mol per cm^-1).
No third-party modules (plain Python 3).
"""
import math, sys

from nma_ir_plot import vib  # the xtb vibspectrum reader (same folder)


def read(path, col):
    nu, y = [], []
    with open(path) as f:
        for l in f:
            if l.startswith('#') or not l.strip():
                continue
            p = l.split()
            nu.append(float(p[0]))
            y.append(float(p[col - 1]))
    return nu, y


def bands(nu, y, lo=400.0, hi=4000.0, half=10.0, thr=0.1):
    idx = [i for i in range(len(nu)) if lo <= nu[i] <= hi]
    ymax = max(y[i] for i in idx)
    d = nu[1] - nu[0]
    hw = int(math.ceil(max(half, 3 * d) / d))
    out = []
    for i in idx:
        if not y[i] > thr * ymax:
            continue
        win = range(max(0, i - hw), min(len(nu), i + hw + 1))
        if all(y[j] < y[i] or (y[j] == y[i] and j >= i) for j in win):
            out.append(i)
    return out


def integral(nu, y, c, half=40.0):
    s = 0.0
    for i in range(len(nu) - 1):
        if nu[i] >= c - half and nu[i + 1] <= c + half:
            s += 0.5 * (y[i] + y[i + 1]) * (nu[i + 1] - nu[i])
    return s


def main():
    ref, oth = sys.argv[1], sys.argv[2]
    col = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    thr = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    nu, a = read(ref, col)
    nu2, b = read(oth, col)
    if len(nu) != len(nu2) or any(abs(x - y) > 1e-6 for x, y in zip(nu, nu2)):
        sys.exit('the two spectra are not on the same wavenumber grid')
    print('bands of %s (maxima above %g %% of the largest, 400-4000 cm^-1):' % (ref, 100 * thr))
    print('  ref_cm-1  other_cm-1  diff_cm-1  ref_height_rel  ref_integral  other_integral')
    amax = max(a[i] for i in range(len(nu)) if 400 <= nu[i] <= 4000)
    worst = 0.0
    bmax = bands(nu, b, thr=0.0)  # every local maximum of OTHER (same +-10 cm^-1 rule)
    for i in bands(nu, a, thr=thr):
        j = min(bmax, key=lambda k: abs(nu[k] - nu[i]))  # OTHER's nearest band maximum
        worst = max(worst, abs(nu[j] - nu[i]))
        print('  %8.1f  %10.1f  %9.1f  %14.3f  %12.4g  %14.4g' % (nu[i], nu[j], nu[j] - nu[i], a[i] / amax,
                                                                integral(nu, a, nu[i]), integral(nu, b, nu[i])))
    print('largest band shift: %.1f cm^-1' % worst)
    sel = [i for i in range(len(nu)) if 400 <= nu[i] <= 4000]
    dot = sum(a[i] * b[i] for i in sel)
    cos = dot / math.sqrt(sum(a[i] ** 2 for i in sel) * sum(b[i] ** 2 for i in sel))
    print('spectral overlap (cosine, 400-4000 cm^-1): %.4f' % cos)
    if len(sys.argv) > 4 and sys.argv[4] != '-':
        print('harmonic modes above 400 cm^-1 (%s): wavenumber_cm-1  IR_km/mol' % sys.argv[4])
        for w, inten in vib(sys.argv[4]):
            if w > 400:
                print('  %8.1f  %9.2f' % (w, inten))


if __name__ == '__main__':
    main()
