/* SPDX-License-Identifier: MIT */
/* spectrum_svg.h - the labelled spectrum plot of `spectrum --svg`. */
#ifndef SPECTRUM_SVG_H
#define SPECTRUM_SVG_H
#include <stddef.h>

#include "common.h"

/* Plot nser curves ys[k][0..rows-1] against nu[0..rows-1] (cm^-1) into b (an
 * SVG document): axes with ticks and units, a legend with names[k], the title,
 * and a label with the wavenumber at each of the nb bands. */
void spectrum_svg(cli_buf *b, const char *title, const char *ylabel, const double *nu, const double *const *ys,
                  const char *const *names, int nser, size_t rows, const double *bands, int nb);

/* Band maxima (spectrum.c): local maxima above 10 % of the largest value in
 * [lo, hi], each the largest within +-max(10 cm^-1, 3 grid spacings); at most
 * maxb, ascending; returns their number. */
int spectrum_bands(const double *nu, const double *y, size_t n1, double lo, double hi, int maxb, double *pos);
#endif
