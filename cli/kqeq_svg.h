/* SPDX-License-Identifier: MIT */
/* kqeq_svg.h - a small SVG line plot on log-log axes (for `kqeq curve`). */
#ifndef KQEQ_SVG_H
#define KQEQ_SVG_H
#include "common.h"

typedef struct {
    const char *name;   /* legend text */
    const char *color;  /* SVG colour, e.g. "#1f77b4" */
    int n;              /* points */
    const double *x;    /* [n] > 0 */
    const double *y;    /* [n] > 0 */
    const double *err;  /* [n] error bar half-lengths (NULL = none) */
} svg_series;

/* An SVG document of npanels plots stacked vertically: svg_begin, then
 * svg_loglog for panel 0, 1, ..., then svg_end. */
void svg_begin(cli_buf *b, int npanels);
void svg_end(cli_buf *b);
/* One plot (panel 0 at the top): both axes logarithmic (decades with 1-2-5
 * ticks), labelled, one polyline with markers and error bars per series,
 * legend. */
void svg_loglog(cli_buf *b, int panel, const char *title, const char *xlabel, const char *ylabel,
                const svg_series *s, int ns);
#endif
