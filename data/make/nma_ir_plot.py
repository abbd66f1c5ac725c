#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Overlay plot (SVG) of spectra written by `spectrum`, for docs/ (plain Python 3).

Usage (from the repository root):
    python3 data/make/nma_ir_plot.py OUT.svg "TITLE" "Y LABEL" XMIN XMAX \\
        TSV:COLUMN:LABEL [TSV:COLUMN:LABEL ...] [--sticks VIBSPECTRUM]

TSV:COLUMN:LABEL: a `spectrum` output, the 1-based column of the intensity, the legend
text. --sticks: harmonic wavenumbers and IR intensities (km/mol) from an xtb
`vibspectrum` file, drawn as grey sticks on a second scale (right axis, km/mol).
"""
import sys

COL = ['#1f4e9a', '#c0392b', '#27843d', '#8e44ad']


def read(path, col):
    nu, y = [], []
    for l in open(path):
        if l.startswith('#') or not l.strip():
            continue
        p = l.split()
        nu.append(float(p[0]))
        y.append(float(p[col - 1]))
    return nu, y


def vib(path):
    out, on = [], False
    for l in open(path):
        if l.startswith('$vibrational spectrum'):
            on = True
            continue
        if l.startswith('$end'):
            break
        if on and not l.startswith('#') and l.strip():
            p = l.split()
            out.append((float(p[-4]), float(p[-3])))
    return out


def esc(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def main():
    a = sys.argv[1:]
    sticks = None
    if '--sticks' in a:
        i = a.index('--sticks')
        sticks = vib(a[i + 1])
        a = a[:i] + a[i + 2:]
    out, title, ylabel, xmin, xmax = a[0], a[1], a[2], float(a[3]), float(a[4])
    series = []
    for spec in a[5:]:
        path, col, label = spec.split(':', 2)
        nu, y = read(path, int(col))
        pts = [(x, v) for x, v in zip(nu, y) if xmin <= x <= xmax]
        series.append((label, pts))
    ymax = max(v for _, pts in series for _, v in pts) * 1.1
    W, H, L, R, T, B = 960, 540, 90, 80 if sticks else 30, 50, 70
    px = lambda x: L + (x - xmin) / (xmax - xmin) * (W - L - R)
    py = lambda y: H - B - y / ymax * (H - T - B)
    s = ['<?xml version="1.0" encoding="UTF-8"?>',
         '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="sans-serif" font-size="13">' % (W, H, W, H),
         '<rect width="%d" height="%d" fill="white"/>' % (W, H),
         '<text x="%g" y="28" text-anchor="middle" font-size="15">%s</text>' % (W / 2, esc(title)),
         '<path d="M%d %dH%dM%d %dV%d" stroke="black" fill="none"/>' % (L, H - B, W - R, L, H - B, T)]
    step = 500 if xmax - xmin > 1500 else 100
    x = (int(xmin) // step + (xmin % step > 0)) * step
    while x <= xmax:
        s.append('<path d="M%.1f %dv5" stroke="black"/><text x="%.1f" y="%d" text-anchor="middle">%d</text>'
                 % (px(x), H - B, px(x), H - B + 20, x))
        x += step
    import math
    raw = ymax / 6
    p10 = 10 ** math.floor(math.log10(raw))
    ys = min((m * p10 for m in (1, 2, 5, 10) if m * p10 >= raw))
    y = 0.0
    while y <= ymax:
        s.append('<path d="M%d %.1fh-5" stroke="black"/><text x="%d" y="%.1f" text-anchor="end">%.3g</text>'
                 % (L, py(y), L - 8, py(y) + 4, y))
        y += ys
    s.append('<text x="%g" y="%d" text-anchor="middle">wavenumber (cm^-1)</text>' % ((L + W - R) / 2, H - 25))
    s.append('<text transform="translate(22 %g) rotate(-90)" text-anchor="middle">%s</text>'
             % ((T + H - B) / 2, esc(ylabel)))
    if sticks:
        sm = max(i for w, i in sticks if xmin <= w <= xmax) * 1.1
        for w, i in sticks:
            if xmin <= w <= xmax:
                s.append('<path d="M%.1f %dV%.1f" stroke="#999999" stroke-width="2"/>'
                         % (px(w), H - B, H - B - i / sm * (H - T - B)))
        s.append('<path d="M%d %dV%d" stroke="#999999"/>' % (W - R, H - B, T))
        s.append('<text transform="translate(%d %g) rotate(90)" text-anchor="middle" fill="#666666">'
                 'harmonic IR intensity (km/mol, grey sticks: xtb --ohess)</text>' % (W - R + 30, (T + H - B) / 2))
        top = max((i, w) for w, i in sticks if xmin <= w <= xmax)
        s.append('<text x="%.1f" y="%.1f" font-size="11" fill="#666666">%.0f cm^-1, %.0f km/mol (harmonic)</text>'
                 % (px(top[1]) + 8, H - B - top[0] / sm * (H - T - B) + 10, top[1], top[0]))
    for k, (label, pts) in enumerate(series):
        s.append('<polyline fill="none" stroke="%s" stroke-width="%s" points="%s"/>'  # first one wide, below
                 % (COL[k % 4], '3' if k == 0 else '1', ' '.join('%.1f,%.1f' % (px(x), py(v)) for x, v in pts)))
        s.append('<path d="M%d %dh24" stroke="%s" stroke-width="2"/><text x="%d" y="%d">%s</text>'
                 % (W - R - 330, T + 12 + 18 * k, COL[k % 4], W - R - 300, T + 16 + 18 * k, esc(label)))
    s.append('</svg>')
    with open(out + '.tmp', 'w') as f:
        f.write('\n'.join(s) + '\n')
    import os
    os.replace(out + '.tmp', out)


if __name__ == '__main__':
    main()
