/* SPDX-License-Identifier: MIT */
/* spectrum_svg.c - the labelled spectrum plot of `spectrum --svg` (plain SVG
 * 1.1 text, no scripts, fixed layout so the same data give the same bytes). */
#include "spectrum_svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* XML-escape s into out (at most outlen bytes). */
static void esc(const char *s, char *out, size_t outlen) {
    size_t k = 0;
    for (; *s && k + 7 < outlen; s++) {
        const char *r = NULL;
        if (*s == '<') r = "&lt;";
        else if (*s == '>') r = "&gt;";
        else if (*s == '&') r = "&amp;";
        else if (*s == '"') r = "&quot;";
        if (r) { strcpy(out + k, r); k += strlen(r); }
        else out[k++] = *s;
    }
    out[k] = '\0';
}

/* a "nice" tick step (1, 2 or 5 times a power of ten) for about n ticks over span */
static double nice_step(double span, int n) {
    double raw = span / n, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

void spectrum_svg(cli_buf *b, const char *title, const char *ylabel, const double *nu, const double *const *ys,
                  const char *const *names, int nser, size_t rows, const double *bands, int nb) {
    const double W = 960, H = 540, L = 90, R = 30, T = 50, B = 70; /* size and margins, px */
    const char *colour[3] = {"#1f4e9a", "#c0392b", "#27843d"};
    /* y range from the vibrational bands (above 300 cm^-1): the rotational wing of a
     * free molecule near 0 cm^-1 (strong in Raman) is clipped, not allowed to flatten
     * the bands */
    double xmax = rows ? nu[rows - 1] : 1, ymax = 0, ymin = 0, yall = 0;
    for (int k = 0; k < nser; k++)
        for (size_t m = 0; m < rows; m++) {
            if (ys[k][m] > yall) yall = ys[k][m];
            if (nu[m] >= 300 && ys[k][m] > ymax) ymax = ys[k][m];
            if (nu[m] >= 300 && ys[k][m] < ymin) ymin = ys[k][m];
        }
    int clipped = yall > ymax * 1.12 && ymax > 0;
    if (!(ymax > 0)) ymax = yall > 0 ? yall : 1;
    ymax *= 1.12; /* room for band labels */
    if (!(xmax > 0)) xmax = 1;
#define PX(x) (L + (x) / xmax * (W - L - R))
#define PY(y) (H - B - ((y) - ymin) / (ymax - ymin) * (H - T - B))
    char t[1024];
    cli_buf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    cli_buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
                      "font-family=\"sans-serif\" font-size=\"13\">\n", W, H, W, H);
    cli_buf_printf(b, "<rect width=\"%g\" height=\"%g\" fill=\"white\"/>\n", W, H);
    esc(title, t, sizeof t);
    cli_buf_printf(b, "<text x=\"%g\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n", W / 2, t);
    /* axes and ticks */
    cli_buf_printf(b, "<path d=\"M%.1f %.1fH%.1fM%.1f %.1fV%.1f\" stroke=\"black\" fill=\"none\"/>\n", L, H - B, W - R,
                   L, H - B, (double)T);
    double xs = nice_step(xmax, 8);
    for (double x = 0; x <= xmax * (1 + 1e-9); x += xs)
        cli_buf_printf(b, "<path d=\"M%.1f %.1fv5\" stroke=\"black\"/><text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"middle\">%g</text>\n", PX(x), H - B, PX(x), H - B + 20, x);
    double ys_ = nice_step(ymax - ymin, 6);
    for (double y = ceil(ymin / ys_) * ys_; y <= ymax; y += ys_)
        cli_buf_printf(b, "<path d=\"M%.1f %.1fh-5\" stroke=\"black\"/><text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"end\">%.3g</text>\n", L, PY(y), L - 8, PY(y) + 4,
                       fabs(y) < 1e-9 * ys_ ? 0.0 : y);
    cli_buf_printf(b, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">wavenumber (cm^-1)</text>\n", (L + W - R) / 2,
                   H - 25);
    esc(ylabel, t, sizeof t);
    cli_buf_printf(b, "<text transform=\"translate(22 %g) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
                   (T + H - B) / 2, t);
    if (clipped)
        cli_buf_printf(b, "<text x=\"%g\" y=\"%g\" font-size=\"11\" fill=\"#666666\">y range set by the bands above "
                          "300 cm^-1; the curve below is clipped (peak %.3g)</text>\n", L + 8, T - 6, yall);
    /* curves (the first one last, on top) */
    for (int k = nser - 1; k >= 0; k--) {
        cli_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"", colour[k % 3],
                       k == 0 ? "1.4" : "1");
        for (size_t m = 0; m < rows; m++) /* clipped to the plot box */
            cli_buf_printf(b, "%.1f,%.1f ", PX(nu[m]), PY(fmin(fmax(ys[k][m], ymin), ymax)));
        cli_buf_printf(b, "\"/>\n");
        esc(names[k], t, sizeof t);
        cli_buf_printf(b, "<path d=\"M%.1f %.1fh24\" stroke=\"%s\" stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                       W - R - 170, T + 12 + 18.0 * k, colour[k % 3], W - R - 140, T + 16 + 18.0 * k, t);
    }
    /* band labels at the first curve's maxima: the strongest first, at most 14, none
     * closer than 60 cm^-1 to a placed one (so labels do not overlap) */
    double placed[14];
    int np = 0;
    for (int round = 0; round < nb && np < 14; round++) {
        int best = -1;
        size_t bm = 0;
        for (int i = 0; i < nb; i++) {
            size_t m = 0;
            while (m + 1 < rows && nu[m] < bands[i]) m++;
            int near = 0;
            for (int j = 0; j < np; j++)
                if (fabs(placed[j] - bands[i]) < 60) near = 1;
            if (!near && (best < 0 || ys[0][m] > ys[0][bm])) { best = i; bm = m; }
        }
        if (best < 0) break;
        placed[np++] = bands[best];
        cli_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%.0f</text>\n",
                       PX(nu[bm]), PY(ys[0][bm]) - 6, bands[best]);
    }
#undef PX
#undef PY
    cli_buf_printf(b, "</svg>\n");
}
