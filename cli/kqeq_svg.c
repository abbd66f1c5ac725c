/* SPDX-License-Identifier: MIT */
/* kqeq_svg.c - log-log line plots as SVG text, drawn by our own code
 * (used by `kqeq curve`). */
#include "kqeq_svg.h"

#include <math.h>
#include <string.h>

enum { W = 680, H = 460, ML = 84, MR = 24, MT = 44, MB = 64 };

static void xml_text(cli_buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '&') cli_buf_printf(b, "&amp;");
        else if (*s == '<') cli_buf_printf(b, "&lt;");
        else if (*s == '>') cli_buf_printf(b, "&gt;");
        else if (*s == '"') cli_buf_printf(b, "&quot;");
        else cli_buf_printf(b, "%c", *s);
    }
}

/* Largest 1-2-5 tick <= v (down) or smallest >= v (up). */
static double tick125(double v, int up) {
    double e = floor(log10(v)), best = up ? INFINITY : 0.0;
    for (int k = -1; k <= 1; k++)
        for (int m = 0; m < 3; m++) {
            static const double mant[3] = {1.0, 2.0, 5.0};
            double t = mant[m] * pow(10.0, e + k);
            if (up && t >= v * (1 - 1e-12) && t < best) best = t;
            if (!up && t <= v * (1 + 1e-12) && t > best) best = t;
        }
    return best;
}

typedef struct {
    double lo, hi; /* log10 of the axis ends */
} axis;

static double map(const axis *a, double v, double p0, double p1) {
    return p0 + (log10(v) - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

static void ticks(cli_buf *b, const axis *a, int vertical) {
    for (int e = (int)floor(a->lo) - 1; e <= (int)ceil(a->hi); e++)
        for (int m = 0; m < 3; m++) {
            static const double mant[3] = {1.0, 2.0, 5.0};
            double v = mant[m] * pow(10.0, e), lv = log10(v);
            if (lv < a->lo - 1e-9 || lv > a->hi + 1e-9) continue;
            const char *grid = m == 0 ? "#cccccc" : "#eeeeee";
            if (vertical) {
                double y = map(a, v, H - MB, MT);
                cli_buf_printf(b,
                               "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" "
                               "stroke=\"%s\"/>\n",
                               ML, y, W - MR, y, grid);
                cli_buf_printf(b,
                               "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\" "
                               "font-size=\"12\">%g</text>\n",
                               ML - 6, y + 4, v);
            } else {
                double x = map(a, v, ML, W - MR);
                cli_buf_printf(b,
                               "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" "
                               "stroke=\"%s\"/>\n",
                               x, MT, x, H - MB, grid);
                cli_buf_printf(b,
                               "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\" "
                               "font-size=\"12\">%g</text>\n",
                               x, H - MB + 18, v);
            }
        }
}

void svg_begin(cli_buf *b, int npanels) {
    cli_buf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
                      "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
                   W, H * npanels, W, H * npanels, W, H * npanels);
}

void svg_end(cli_buf *b) { cli_buf_printf(b, "</svg>\n"); }

void svg_loglog(cli_buf *b, int panel, const char *title, const char *xlabel, const char *ylabel,
                const svg_series *s, int ns) {
    double xmin = INFINITY, xmax = 0.0, ymin = INFINITY, ymax = 0.0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i], e = s[k].err ? s[k].err[i] : 0.0;
            if (!(x > 0.0) || !(y > 0.0)) continue;
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
            ymin = fmin(ymin, y - e > 0.0 ? y - e : y);
            ymax = fmax(ymax, y + e);
        }
    if (!(xmax > 0.0)) { xmin = 1.0; xmax = 10.0; }
    if (!(ymax > 0.0)) { ymin = 1.0; ymax = 10.0; }
    axis ax = {log10(tick125(xmin, 0)), log10(tick125(xmax, 1))};
    axis ay = {log10(tick125(ymin, 0)), log10(tick125(ymax, 1))};
    if (ax.hi - ax.lo < 1e-9) { ax.lo -= 0.5; ax.hi += 0.5; }
    if (ay.hi - ay.lo < 1e-9) { ay.lo -= 0.5; ay.hi += 0.5; }
    cli_buf_printf(b, "<g transform=\"translate(0 %d)\">\n", panel * H);
    ticks(b, &ax, 0);
    ticks(b, &ay, 1);
    cli_buf_printf(b,
                   "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                   "stroke=\"black\"/>\n",
                   ML, MT, W - ML - MR, H - MT - MB);
    cli_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"15\">",
                   W / 2, 26);
    xml_text(b, title);
    cli_buf_printf(b, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">",
                   (ML + W - MR) / 2, H - 20);
    xml_text(b, xlabel);
    cli_buf_printf(b, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\" "
                      "transform=\"rotate(-90 %d %d)\">",
                   22, (MT + H - MB) / 2, 22, (MT + H - MB) / 2);
    xml_text(b, ylabel);
    cli_buf_printf(b, "</text>\n");
    for (int k = 0; k < ns; k++) {
        const svg_series *sr = &s[k];
        cli_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                       sr->color);
        for (int i = 0; i < sr->n; i++)
            if (sr->x[i] > 0.0 && sr->y[i] > 0.0)
                cli_buf_printf(b, "%.2f,%.2f ", map(&ax, sr->x[i], ML, W - MR),
                               map(&ay, sr->y[i], H - MB, MT));
        cli_buf_printf(b, "\"/>\n");
        for (int i = 0; i < sr->n; i++) {
            if (!(sr->x[i] > 0.0 && sr->y[i] > 0.0)) continue;
            double x = map(&ax, sr->x[i], ML, W - MR), y = map(&ay, sr->y[i], H - MB, MT);
            double e = sr->err ? sr->err[i] : 0.0;
            if (e > 0.0) {
                double lo = sr->y[i] - e > 0.0 ? sr->y[i] - e : sr->y[i];
                double y0 = map(&ay, lo, H - MB, MT), y1 = map(&ay, sr->y[i] + e, H - MB, MT);
                cli_buf_printf(b,
                               "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
                               "stroke=\"%s\"/>\n",
                               x, y0, x, y1, sr->color);
            }
            cli_buf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"%s\"/>\n", x, y,
                           sr->color);
        }
    }
    /* legend, bottom left on a white box (learning curves fall to the right) */
    int lx = ML + 12, ly0 = H - MB - 12 - 20 * ns;
    cli_buf_printf(b,
                   "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"white\" "
                   "fill-opacity=\"0.85\" stroke=\"#999999\"/>\n",
                   lx - 6, ly0 - 4, 120, 20 * ns + 4);
    for (int k = 0; k < ns; k++) {
        int ly = ly0 + 10 + 20 * k;
        cli_buf_printf(b,
                       "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                       "stroke-width=\"2\"/>\n"
                       "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/>\n"
                       "<text x=\"%d\" y=\"%d\" font-size=\"13\">",
                       lx, ly, lx + 30, ly, s[k].color, lx + 15, ly, s[k].color, lx + 38, ly + 4);
        xml_text(b, s[k].name);
        cli_buf_printf(b, "</text>\n");
    }
    cli_buf_printf(b, "</g>\n");
}
