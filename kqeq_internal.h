/* SPDX-License-Identifier: MIT */
/* kqeq_internal.h - PRIVATE to kqeq.c and kqeq_model.c (not an API; the
 * public functions are in kqeq.h). The three helpers of kqeq.c that the
 * model text (kqeq_model.c, KQEQ_MODEL_V1) also needs. */
#ifndef KQEQ_INTERNAL_H
#define KQEQ_INTERNAL_H

#include <stddef.h>

#include "kqeq.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the SOAP calculators of m's ndesc descriptors (m->soap[d] with the
 * model's species) and sets m->calc[d], m->soap[d] (as completed by soap.c)
 * and m->len[d]. KQ_OK or the error of kq_soap_new. */
int kqi_model_make_calcs(kq_model *m);

/* sum_t p[t] q[t] over t = 0 .. len-1 ascending: the one summation order of
 * every SOAP kernel (Eq. 12) and of the representatives' norms. */
double kqi_dot(const double *p, const double *q, size_t len);

/* 1 if all n values v[0 .. n-1] are finite (neither NaN nor Inf), else 0. */
int kqi_all_finite(size_t n, const double *v);

#ifdef __cplusplus
}
#endif

#endif /* KQEQ_INTERNAL_H */
