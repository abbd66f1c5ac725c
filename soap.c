/* SPDX-License-Identifier: MIT */
/* soap.c - SOAP descriptors (DScribe's GTO definition, ../shared/specs/soap.md).
 *
 * Every formula is from ../shared/specs/soap.md ("spec") unless a comment
 * names another source. C11, libc and libm only (no POSIX, no M_PI); uses
 * linalg.h for the symmetric inverse square root of the basis overlap.
 *
 * Reading order:
 *   1. The plain reference (kq_soap_reference and its five helpers, right
 *      below): the spec's equations in order, one centre and one neighbour
 *      at a time, no tables kept between calls, no vector kernels. Start
 *      here.
 *   2. The fast path (kq_soap_new / kq_soap_compute, from "The fast path"
 *      on): the same sums in the same order, with precomputed tables, cell
 *      lists, pair reuse and blocked kernels that the compiler vectorises.
 *      tests/test_soap.c checks that both give the same bits (memcmp).
 *
 * The equations, for one centre i (spec "Expansion coefficients", "Power
 * spectrum"):
 *
 *   c^Z_nlm(i) = sum_{j of species Z, |r_ij| <= cut} R_lm(r_ij) h_ln(|r_ij|),
 *   h_ln(r)    = sum_k B^(l)_nk exp(-gamma_lk r^2),
 *   B^(l)_nk   = pi^(3/2) beta^(l)_nk eta^l (alpha_lk + eta)^-(l + 3/2),
 *   gamma_lk   = alpha_lk eta / (alpha_lk + eta),
 *
 * where R_lm(r) = |r|^l Y_lm(r/|r|) is the real regular solid harmonic (a
 * polynomial in x, y, z: no trigonometry, no division by |r|). Then
 *
 *   p^(Z1 Z2)_(n n' l) = pi sqrt(8 / (2l + 1)) sum_m c^Z1_nlm c^Z2_n'lm.
 *
 * h is formed per neighbour (not B applied to sums over neighbours): the sum
 * over k cancels heavily (|beta| ~ 1e3..1e4), and doing it per pair keeps
 * the result independent of the neighbour order to ~1e-16 and rotation
 * invariant to ~1e-13 (tests/test_soap.c).
 *
 * Reproducibility: every sum runs in a fixed written order (neighbours in
 * ascending atom index, the centre itself included at its own index; k and m
 * ascending, each sum starting from 0.0), in both paths. exp() is our own
 * (soap_exp), so the bits do not depend on the C library either.
 */
#include "soap.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"

#define KQ_PI 3.14159265358979323846

/* Helpers of the fast path's per-centre work are forced inline, so that each
 * of its two copies (portable, AVX2: see "The fast path") gets them compiled
 * for its own instruction set; soap_exp too, as soap_exp_near runs it four
 * lanes at a time. Forcing changes no value. */
#if defined(__GNUC__)
#define KQ_INLINE static inline __attribute__((always_inline))
#else
#define KQ_INLINE static inline
#endif

const char *kq_strerror(int code) {
    switch (code) {
    case KQ_OK: return "success";
    case KQ_EINVAL: return "invalid argument";
    case KQ_ENOMEM: return "out of memory (or a size that would overflow)";
    case KQ_ESPECIES: return "element not in the species list";
    case KQ_EOVERLAP: return "two atoms closer than 1e-6 angstrom";
    case KQ_ELINALG: return "linear algebra failure (matrix not positive definite or singular)";
    case KQ_EFORMAT: return "damaged model text";
    case KQ_ERANGE: return "result is not a finite number (inputs or model out of range)";
    default: return "unknown error code";
    }
}

/* a * b elements of size sz without overflowing size_t; 0 on overflow. */
static int kq_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static double *kq_alloc_doubles(size_t a, size_t b, size_t c, int *err) {
    size_t n, bytes;
    if (!kq_mul_ok(a, b, &n) || !kq_mul_ok(n, c, &n) || !kq_mul_ok(n, sizeof(double), &bytes)) {
        *err = KQ_ENOMEM;
        return NULL;
    }
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) *err = KQ_ENOMEM;
    return p;
}

/* ======================================================================== */
/* 1. The plain reference                                                    */
/* ======================================================================== */

/* Checks p and returns the parameters actually used in q: species sorted
 * ascending by Z (spec "Inputs"), sigma <= 0 resolved to rcut / 8 (the kQEq
 * paper's choice). KQ_EINVAL as kq_soap_new documents (soap.h). */
static int soap_resolve_params(const kq_soap_params *p, kq_soap_params *q) {
    if (!p) return KQ_EINVAL;
    if (!isfinite(p->rcut) || !(p->rcut > 1.0)) return KQ_EINVAL;
    if (p->nmax < 1 || p->nmax > KQ_SOAP_MAX_NMAX || p->lmax < 0 || p->lmax > KQ_MAX_LMAX)
        return KQ_EINVAL;
    if (isnan(p->sigma) || isinf(p->sigma)) return KQ_EINVAL;
    /* A far smaller width overflows eta^l = (1/(2 sigma^2))^l in the
     * prefactors B (NaN descriptors); kq_soap_new's finiteness checks of its
     * tables catch whatever this bound lets through. */
    if (p->sigma > 0.0 && p->sigma < KQ_SOAP_MIN_SIGMA) return KQ_EINVAL;
    if (p->nspecies < 1 || p->nspecies > KQ_MAX_SPECIES) return KQ_EINVAL;
    *q = *p;
    for (int i = 0; i < q->nspecies; i++)
        if (q->species[i] < 1 || q->species[i] > 118) return KQ_EINVAL;
    /* sort ascending by Z (insertion sort), reject duplicates */
    for (int i = 1; i < q->nspecies; i++) {
        int v = q->species[i], j = i - 1;
        while (j >= 0 && q->species[j] > v) { q->species[j + 1] = q->species[j]; j--; }
        q->species[j + 1] = v;
    }
    for (int i = 1; i < q->nspecies; i++)
        if (q->species[i] == q->species[i - 1]) return KQ_EINVAL;
    for (int i = q->nspecies; i < KQ_MAX_SPECIES; i++) q->species[i] = 0;
    if (q->sigma <= 0.0) q->sigma = q->rcut / 8.0;
    return KQ_OK;
}

/* Spec "Density around centre i": the neighbour cutoff rcut + sigma
 * sqrt(2 ln 1000) (angstrom), where a Gaussian of width sigma has fallen to
 * 1/1000. */
static double soap_cutoff(const kq_soap_params *q) {
    return q->rcut + q->sigma * sqrt(2.0 * log(1000.0));
}

/* Spec "Radial basis", for one l: alpha [nmax] (1/angstrom^2), beta
 * [nmax][nmax] (row n, column k) = (S^(l))^(-1/2), s_work [nmax*nmax]. */
static int soap_radial_basis(double rcut, int nmax, int l, double *alpha, double *beta,
                             double *s_work) {
    /* a_k = linspace(1, rcut, nmax) as numpy computes it: k * step + 1, last = rcut */
    double step = nmax > 1 ? (rcut - 1.0) / (double)(nmax - 1) : 0.0;
    for (int k = 0; k < nmax; k++) {
        double a = (double)k * step + 1.0;
        if (k == nmax - 1 && nmax > 1) a = rcut;
        /* alpha_lk = -ln(1e-3 / a^l) / a^2 = (ln 1000 + l ln a) / a^2 */
        alpha[k] = -log(1e-3 / pow(a, (double)l)) / (a * a);
    }
    /* S^(l)_kk' = (1/2) Gamma(l + 3/2) (alpha_lk + alpha_lk')^-(l + 3/2), with
     * Gamma(l + 3/2) = sqrt(pi) prod_{t=0}^{l} (t + 1/2) */
    double g = sqrt(KQ_PI);
    for (int t = 0; t <= l; t++) g *= (double)t + 0.5;
    for (int k = 0; k < nmax; k++)
        for (int q = 0; q < nmax; q++)
            s_work[k * nmax + q] = 0.5 * g * pow(alpha[k] + alpha[q], -((double)l + 1.5));
    /* beta^(l) = (S^(l))^(-1/2), Loewdin, by Jacobi eigenvectors (linalg.c) */
    int rc = la_sym_inv_sqrt(nmax, s_work, nmax, beta, nmax);
    if (rc == LA_NOMEM) return KQ_ENOMEM;
    if (rc != LA_OK) return KQ_ELINALG;
    return KQ_OK;
}

/* Spec "Expansion coefficients": the Gaussian of width sigma (eta = 1/(2
 * sigma^2)) at distance r, integrated against r^l exp(-alpha r^2) Y_lm, is
 *   pi^(3/2) eta^l (alpha + eta)^-(l + 3/2) exp(-gamma r^2) r^l Y_lm,
 *   gamma = alpha eta / (alpha + eta).
 * Returns the prefactor w = pi^(3/2) eta^l (alpha + eta)^-(l + 3/2) and -gamma
 * in *ngamma (1/angstrom^2). B^(l)_nk = beta^(l)_nk w_lk. */
static double soap_radial_factor(double alpha, double eta, int l, double *ngamma) {
    const double ae = alpha + eta;
    *ngamma = -(alpha * eta / ae);
    return KQ_PI * sqrt(KQ_PI) * pow(eta, (double)l) * pow(ae, -((double)l + 1.5));
}

/* exp(x) for -700 <= x <= 0, about 1 ulp, the same bits with any C library:
 * x = (64 k + j) ln2/64 + r with |r| <= ln2/128 (Cody-Waite split of ln2/64),
 * exp(x) = 2^k * 2^(j/64) * e^r, 2^(j/64) from exp2tab [64] (exp2tab[j] =
 * exp2(j/64.0), exact to the last bit in any correct libm: the values are
 * the correctly rounded ones) and e^r - 1 from its Taylor series to degree 5
 * (truncation r^6/720 < 4e-17 relative). soap_exp_near is the same
 * arithmetic, four lanes at a time. */
KQ_INLINE double soap_exp(double x, const double *exp2tab) {
    const double inv = 92.332482616893656877;             /* 64 / ln 2 */
    const double c_hi = 6.93147180369123816490e-01 / 64.0; /* ln2_hi / 64: exact */
    const double c_lo = 1.90821492927058770002e-10 / 64.0;
    const double shifter = 6755399441055744.0;            /* 1.5 * 2^52: round to nearest */
    double tt = x * inv + shifter; /* low bits: K = round(64 x / ln2) */
    double kf = tt - shifter;
    double r = (x - kf * c_hi) - kf * c_lo;
    double q = 1.0 / 120.0;
    q = 1.0 / 24.0 + r * q;
    q = 1.0 / 6.0 + r * q;
    q = 0.5 + r * q;
    q = 1.0 + r * q;
    double p = r * q; /* e^r - 1 */
    uint64_t b;       /* tt's bits are 0x4338000000000000 + K */
    memcpy(&b, &tt, sizeof b);
    double tab = exp2tab[b & 63u], sc; /* j = K mod 64; 2^k, k = floor(K / 64) */
    b = ((b >> 6) + 1023u) << 52;
    memcpy(&sc, &b, sizeof sc);
    return (tab + tab * p) * sc;
}

/* N_lm = sqrt((2l + 1)/(4 pi) (l - m)!/(l + m)!), times sqrt(2) for m != 0:
 * the normalisation of the real orthonormal harmonics (any orthonormal real
 * convention works, spec "Expansion coefficients"). 0 <= m <= l. */
static double soap_ylm_norm(int l, int m) {
    double ratio = 1.0; /* (l + m)! / (l - m)! */
    for (int t = l - m + 1; t <= l + m; t++) ratio *= (double)t;
    double nrm = sqrt((2.0 * l + 1.0) / (4.0 * KQ_PI) / ratio);
    return m == 0 ? nrm : sqrt(2.0) * nrm;
}

/* Real solid harmonics R_lm(r) = |r|^l Y_lm(r/|r|) for l < nl, out
 * [l*l + l + m], m = -l..l (m < 0: the sine part), with
 *   R_lm = N_lm Q_l^|m|(z, r^2) {Re (m >= 0), Im (m < 0)} (x + i y)^|m|,
 * Q_l^m = r^(l-m) P_l^m(cos theta) / sin^m theta (associated Legendre
 * without the Condon-Shortley phase, which the power spectrum ignores):
 *   Q_m^m = (2m - 1)!!,  Q_{m+1}^m = (2m + 1) z Q_m^m,
 *   (l - m) Q_l^m = (2l - 1) z Q_{l-1}^m - (l + m - 1) r^2 Q_{l-2}^m.
 * q [nl][nl] is scratch. */
static void soap_solid_harmonics(int nl, double x, double y, double z, double *q, double *out) {
    const double r2 = x * x + y * y + z * z;
    double df = 1.0, cm = 1.0, sm = 0.0; /* (2m - 1)!!, Re and Im (x + i y)^m */
    for (int m = 0; m < nl; m++) {
        q[m * nl + m] = df;
        if (m + 1 < nl) q[(m + 1) * nl + m] = (2.0 * m + 1.0) * z * df;
        for (int l = m + 2; l < nl; l++)
            q[l * nl + m] = (2.0 * l - 1.0) / (double)(l - m) * z * q[(l - 1) * nl + m] -
                            (double)(l + m - 1) / (double)(l - m) * r2 * q[(l - 2) * nl + m];
        for (int l = m; l < nl; l++) {
            out[l * l + l + m] = soap_ylm_norm(l, m) * q[l * nl + m] * cm;
            if (m > 0) out[l * l + l - m] = soap_ylm_norm(l, m) * q[l * nl + m] * sm;
        }
        double c1 = x * cm - y * sm, s1 = x * sm + y * cm;
        cm = c1;
        sm = s1;
        df *= 2.0 * m + 1.0;
    }
}

int kq_soap_reference(const kq_soap_params *params, int natoms, const int *z, const double *pos,
                      double *out) {
    kq_soap_params p;
    int rc = soap_resolve_params(params, &p);
    if (rc) return rc;
    if (natoms < 0 || (natoms > 0 && (!z || !pos || !out))) return KQ_EINVAL;
    const int S = p.nspecies, nmax = p.nmax, nl = p.lmax + 1, nlm = nl * nl;
    const double eta = 1.0 / (2.0 * p.sigma * p.sigma); /* spec "Density" */
    const double cut = soap_cutoff(&p), cut2 = cut * cut;
    int err = KQ_OK, *sp = malloc((size_t)(natoms > 0 ? natoms : 1) * sizeof *sp);
    double *alpha = kq_alloc_doubles((size_t)nl, (size_t)nmax, 1, &err);
    double *beta = kq_alloc_doubles((size_t)nl, (size_t)nmax, (size_t)nmax, &err);
    double *bmat = kq_alloc_doubles((size_t)nl, (size_t)nmax, (size_t)nmax, &err);
    double *ngam = kq_alloc_doubles((size_t)nl, (size_t)nmax, 1, &err);
    double *c = kq_alloc_doubles((size_t)S, (size_t)nlm, (size_t)nmax, &err);
    double *h = kq_alloc_doubles((size_t)nl, (size_t)nmax, 1, &err);
    double *e = kq_alloc_doubles((size_t)nmax, 1, 1, &err);
    double *rlm = kq_alloc_doubles((size_t)nlm, 1, 1, &err);
    double *qw = kq_alloc_doubles((size_t)nlm, 1, 1, &err);
    double *swork = kq_alloc_doubles((size_t)nmax, (size_t)nmax, 1, &err);
    double exp2tab[64];
    for (int j = 0; j < 64; j++) exp2tab[j] = exp2((double)j / 64.0);
    if (!sp) err = KQ_ENOMEM;
    /* 1. Radial basis (spec "Radial basis") and B^(l)_nk = beta^(l)_nk w_lk,
     *    gamma_lk (soap_radial_factor): bmat [nl][nmax n][nmax k] */
    for (int l = 0; l < nl && !err; l++) {
        double *al = alpha + (size_t)l * nmax, *be = beta + (size_t)l * nmax * nmax;
        err = soap_radial_basis(p.rcut, nmax, l, al, be, swork);
        for (int k = 0; k < nmax && !err; k++) {
            double w = soap_radial_factor(al[k], eta, l, &ngam[l * nmax + k]);
            for (int n = 0; n < nmax; n++)
                bmat[((size_t)l * nmax + n) * nmax + k] = be[n * nmax + k] * w;
        }
    }
    /* every atom must be finite and of a listed species (spec "Inputs"), no
     * two closer than 1e-6 angstrom: checked before anything is written */
    for (int i = 0; i < natoms && !err; i++) {
        int t = 0;
        while (t < S && p.species[t] != z[i]) t++;
        if (!isfinite(pos[3 * i]) || !isfinite(pos[3 * i + 1]) || !isfinite(pos[3 * i + 2]))
            err = KQ_EINVAL;
        else if (t == S) err = KQ_ESPECIES;
        sp[i] = t;
    }
    for (int i = 0; i < natoms && !err; i++)
        for (int j = 0; j < i && !err; j++) {
            double dx = pos[3 * j] - pos[3 * i], dy = pos[3 * j + 1] - pos[3 * i + 1],
                   dz = pos[3 * j + 2] - pos[3 * i + 2];
            if (dx * dx + dy * dy + dz * dz < 1e-12) err = KQ_EOVERLAP;
        }
    size_t len = (size_t)(S * nmax) * (size_t)(S * nmax + 1) / 2 * (size_t)nl;
    for (int i = 0; i < natoms && !err; i++) {
        /* 2.-3. c^Z_nlm(i) = sum_j R_lm(r_ij) h_ln(|r_ij|), j ascending, the
         *       centre included (spec "Expansion coefficients"): c [S][nlm][nmax] */
        memset(c, 0, (size_t)S * nlm * nmax * sizeof *c);
        for (int j = 0; j < natoms; j++) {
            double dx = pos[3 * j] - pos[3 * i], dy = pos[3 * j + 1] - pos[3 * i + 1],
                   dz = pos[3 * j + 2] - pos[3 * i + 2];
            double r2 = dx * dx + dy * dy + dz * dz;
            if (!(r2 <= cut2)) continue; /* hard cutoff, inclusive (spec "Density") */
            soap_solid_harmonics(nl, dx, dy, dz, qw, rlm);
            for (int l = 0; l < nl; l++) {
                /* exp(-gamma_lk r^2); below exp(-700) ~ 1e-304 it is taken as 0 */
                for (int k = 0; k < nmax; k++) {
                    double x = ngam[l * nmax + k] * r2;
                    e[k] = x >= -700.0 ? soap_exp(x, exp2tab) : 0.0;
                }
                /* h_ln(r) = sum_k B^(l)_nk exp(-gamma_lk r^2), k ascending */
                for (int n = 0; n < nmax; n++) {
                    double sum = 0.0;
                    for (int k = 0; k < nmax; k++)
                        sum += e[k] * bmat[((size_t)l * nmax + n) * nmax + k];
                    h[l * nmax + n] = sum;
                }
                for (int lm = l * l; lm < (l + 1) * (l + 1); lm++)
                    for (int n = 0; n < nmax; n++)
                        c[((size_t)sp[j] * nlm + lm) * nmax + n] += rlm[lm] * h[l * nmax + n];
            }
        }
        /* 4. p^(Z1 Z2)_(n n' l) = pi sqrt(8/(2l+1)) sum_m c^Z1_nlm c^Z2_n'lm, m
         *    ascending, in the layout of spec "Layout of the vector" */
        double *o = out + (size_t)i * len;
        for (int s1 = 0; s1 < S; s1++)
            for (int s2 = s1; s2 < S; s2++)
                for (int l = 0; l < nl; l++)
                    for (int n = 0; n < nmax; n++)
                        for (int n2 = s1 == s2 ? n : 0; n2 < nmax; n2++) {
                            double sum = 0.0;
                            for (int lm = l * l; lm < (l + 1) * (l + 1); lm++)
                                sum += c[((size_t)s1 * nlm + lm) * nmax + n] *
                                       c[((size_t)s2 * nlm + lm) * nmax + n2];
                            *o++ = KQ_PI * sqrt(8.0 / (2.0 * l + 1.0)) * sum;
                        }
    }
    free(sp); free(alpha); free(beta); free(bmat); free(ngam); free(c); free(h); free(e);
    free(rlm); free(qw); free(swork);
    return err;
}

/* ======================================================================== */
/* 2. The fast path                                                          */
/* ======================================================================== */

/* Speed: cell lists (cost linear in N, each pair tested once); centres
 * computed in a spatial order (soap_centre_order); h and R of a pair (i, j)
 * are computed once, at whichever centre comes first, straight into a free
 * slot of a pool, and read there by pointer at the other, which frees the
 * slot (exactly: see soap_centre_slots); h and R of r = 0 (the centre
 * itself) computed once per calculator (soap_new_self); the fresh pairs of
 * a centre four at a time (solid harmonics vectorised across the four);
 * soap_exp four lanes at a time (soap_exp_near); all products in blocks of
 * 4 (or 8) independent sums (soap_block) that gcc/clang vectorise at -O2,
 * with 8-wide vector types in the wide copies (soap_block_v8); AVX2 and
 * AVX-512 copies of all that, picked at run time (below). Vectorised loops run over
 * independent elements only, so -O0, -O2, gcc and clang give the same bits,
 * and so do the brute-force and cell-list searches, with or without pair
 * reuse, and the plain reference above. */

/* The per-centre work (soap_centre_body and everything it calls) is compiled
 * three times: portable (baseline SSE2 on x86-64) and, with gcc/clang on
 * x86-64, once more inside a function with __attribute__((target("avx2")))
 * and once inside one with target AVX-512 (KQ_TARGET_AVX512), chosen at run
 * time by __builtin_cpu_supports (kq_soap_set_simd). The copies are the same
 * C code: the compiler makes the vectorised loops over independent elements
 * 4 (AVX2) or 8 (AVX-512) wide instead of 2, and the copies pick kernels
 * with 8 instead of 4 independent sums where there are 8 (soap_centre_body's
 * `wide`: 0 portable, 1 AVX2, 2 AVX-512), which add the same terms in the
 * same order. No copy may contract a*b + c into an FMA (-ffp-contract=off;
 * nothing here calls fma()), and every element is still one IEEE multiply
 * or add of the same operands in the same order, so all copies give the
 * same bits (tests/test_soap.c compares them). KQ_INLINE forces the helpers
 * into each copy: a helper that stayed a separate function would be
 * compiled for SSE2 only. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(TENSORIAL_NO_SIMD)
#define KQ_SOAP_AVX2 1
#include <immintrin.h> /* streaming stores of soap_stream_zero */
/* 512-bit vectors where the compiler would otherwise keep 256 (gcc's and
 * clang's default tuning); a speed choice only */
#if defined(__clang__)
#define KQ_TARGET_AVX512 \
    __attribute__((target("avx2,avx512f,avx512vl,avx512dq"), min_vector_width(512)))
#else
#define KQ_TARGET_AVX512 \
    __attribute__((target("avx2,avx512f,avx512vl,avx512dq,prefer-vector-width=512")))
#endif
#else
#define KQ_SOAP_AVX2 0
#endif
/* A cache prefetch hint where the compiler has one (it changes no value);
 * _W: the line is about to be written. */
#if defined(__GNUC__)
#define KQ_PREFETCH(p) __builtin_prefetch(p)
#define KQ_PREFETCH_W(p) __builtin_prefetch(p, 1)
#else
#define KQ_PREFETCH(p) ((void)(p))
#define KQ_PREFETCH_W(p) ((void)(p))
#endif
/* Output arrays larger than this (bytes) are written as out of cache:
 * fetched one row ahead (soap_row_ahead), zero blocks by streaming stores
 * (soap_zero_run). Smaller ones stay in cache from call to call (8.9 MB for
 * 300 atoms measured 8 % slower with the hints, 19 MB for 648 atoms 8-12 %
 * faster, 2 vCPU AMD EPYC, 2026-12-06; 2 MB made 300 atoms 20 % slower on a
 * 2 vCPU Xeon); only the speed depends on it. */
#ifndef KQ_SOAP_AHEAD_BYTES
#define KQ_SOAP_AHEAD_BYTES ((size_t)12 << 20)
#endif
/* Largest pool of the pair reuse (soap_reuse_setup), bytes. 3 MB holds every
 * pair in flight of a 1000-atom water cluster (2.4 MB in Morton order, 840
 * bytes a pair at n_max 8, l_max 6; 1 MB missed 35 % of its pairs there, each
 * then computed twice: 9 % slower); a frame that needs less gets less. More
 * costs first-call page faults (about 2 ms per MB here) for frames that
 * would fill it (10,000 waters would need 28 MB). */
#ifndef KQ_SOAP_RING_BYTES
#define KQ_SOAP_RING_BYTES ((size_t)3 << 20)
#endif

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

/* Grow *buf to hold at least n elements of size sz (contents not kept). */
static int kq_reserve(void **buf, size_t *cap, size_t n, size_t sz) {
    size_t bytes;
    if (n <= *cap) return KQ_OK;
    if (!kq_mul_ok(n, sz, &bytes)) return KQ_ENOMEM;
    void *nb = malloc(bytes ? bytes : 1);
    if (!nb) return KQ_ENOMEM;
    free(*buf);
    *buf = nb;
    *cap = n;
    return KQ_OK;
}

/* y[i] = exp(ng[i] r2) for i < n (n a multiple of 4, ng[i] <= 0, r2 >= 0):
 * the radial factors exp(-gamma_lk r^2) by soap_exp (about 1 ulp;
 * tests/test_soap.c checks an n_max = 1 closed form built on libm's exp to
 * 1e-14 over 0 >= x >= -723). The caller guarantees x >= -700 (soap_exp_far
 * handles the rest), so there is no branch and the blocks of 4 vectorise;
 * every element is computed on its own, so vectorising changes no bits. */
KQ_INLINE void soap_exp_near(int n, const double *restrict ng, double r2,
                             const double *restrict exp2tab, double *restrict y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) /* 8 lanes: one vector in the AVX-512 copy */
        for (int u = 0; u < 8; u++) y[i + u] = soap_exp(ng[i + u] * r2, exp2tab);
    for (; i < n; i += 4)
        for (int u = 0; u < 4; u++) y[i + u] = soap_exp(ng[i + u] * r2, exp2tab);
}

#if KQ_SOAP_AVX2
/* soap_exp_near for the AVX-512 copy, written with intrinsics so that each
 * vector's 2^(j/64) comes from one hardware gather: gcc builds the table
 * lookup of the generic loop from scalar loads and about fourteen shuffles,
 * which share the vector ports with the arithmetic (53 vs 34 ns per 56
 * values, 2 vCPU Xeon with AVX-512, 2026-12-06; the AVX2 copy keeps the
 * generic loop). Every lane does soap_exp's IEEE operations in soap_exp's
 * order (x = ng r2, tt = x inv + shifter, kf = tt - shifter, r = (x - kf
 * c_hi) - kf c_lo, Horner from 1/120, p = r q, (tab + tab p) 2^k), so the
 * same bits. A separate function (not inlined: an AVX-512 function cannot
 * be inlined into the shared helpers), called once per pair. n a multiple
 * of 4. */
KQ_TARGET_AVX512 __attribute__((noinline)) static void soap_exp_near_v8(
    int n, const double *restrict ng, double r2, const double *restrict exp2tab,
    double *restrict y) {
    const __m512d inv = _mm512_set1_pd(92.332482616893656877); /* 64 / ln 2 */
    const __m512d c_hi = _mm512_set1_pd(6.93147180369123816490e-01 / 64.0);
    const __m512d c_lo = _mm512_set1_pd(1.90821492927058770002e-10 / 64.0);
    const __m512d shifter = _mm512_set1_pd(6755399441055744.0), rr = _mm512_set1_pd(r2);
    for (int i = 0; i < n; i += 8) {
        /* lanes past n (n % 8 == 4 at the end) neither read nor written */
        const __mmask8 k = n - i >= 8 ? 0xff : (__mmask8)((1u << (n - i)) - 1u);
        const __m512d x = _mm512_mul_pd(_mm512_maskz_loadu_pd(k, ng + i), rr);
        const __m512d tt = _mm512_add_pd(_mm512_mul_pd(x, inv), shifter);
        const __m512d kf = _mm512_sub_pd(tt, shifter);
        const __m512d r = _mm512_sub_pd(_mm512_sub_pd(x, _mm512_mul_pd(kf, c_hi)),
                                        _mm512_mul_pd(kf, c_lo));
        __m512d q = _mm512_set1_pd(1.0 / 120.0);
        q = _mm512_add_pd(_mm512_set1_pd(1.0 / 24.0), _mm512_mul_pd(r, q));
        q = _mm512_add_pd(_mm512_set1_pd(1.0 / 6.0), _mm512_mul_pd(r, q));
        q = _mm512_add_pd(_mm512_set1_pd(0.5), _mm512_mul_pd(r, q));
        q = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_mul_pd(r, q));
        const __m512d p = _mm512_mul_pd(r, q);
        const __m512i b = _mm512_castpd_si512(tt);
        const __m512d tab =
            _mm512_i64gather_pd(_mm512_and_si512(b, _mm512_set1_epi64(63)), exp2tab, 8);
        const __m512d sc = _mm512_castsi512_pd(_mm512_slli_epi64(
            _mm512_add_epi64(_mm512_srli_epi64(b, 6), _mm512_set1_epi64(1023)), 52));
        _mm512_mask_storeu_pd(y + i, k,
                              _mm512_mul_pd(_mm512_add_pd(tab, _mm512_mul_pd(tab, p)), sc));
    }
}
#endif

/* The same values when some ng[i] r2 may be below -700: those give 0 (exp is
 * then below 1e-304, nothing that can matter next to the centre's own
 * Gaussian), the others exactly what soap_exp_near gives. */
KQ_INLINE void soap_exp_far(int n, const double *ng, double r2, const double *exp2tab,
                            double *y) {
    for (int i = 0; i < n; i += 4) {
        double gg[4] = {0.0, 0.0, 0.0, 0.0}, yy[4];
        for (int u = 0; u < 4; u++)
            if (ng[i + u] * r2 >= -700.0) gg[u] = ng[i + u];
        soap_exp_near(4, gg, r2, exp2tab, yy);
        for (int u = 0; u < 4; u++) y[i + u] = ng[i + u] * r2 >= -700.0 ? yy[u] : 0.0;
    }
}

/* ------------------------------------------------------------------------ */
/* The calculator                                                            */
/* ------------------------------------------------------------------------ */

struct kq_soap {
    kq_soap_params p;
    size_t len;           /* doubles per atom */
    int nl, nlm, nmax;    /* lmax + 1, (lmax + 1)^2, nmax */
    int np4;              /* nmax rounded up to a multiple of 4: the padded
                           * length of the k and n dimensions below, so the
                           * hot loops run in fixed blocks of 4 (vectorisable
                           * at -O2); padding entries are zero and never
                           * reach the output */
    double ngmin;         /* min over l, k of -gamma_lk */
    int search;           /* KQ_SEARCH_* */
    int simd;             /* KQ_SIMD_PORTABLE or KQ_SIMD_AVX2 (never AUTO) */
    double cut2;          /* (rcut + sigma sqrt(2 ln 1000))^2, angstrom^2 */
    double cut;
    double *alpha;        /* [nl][nmax] 1/angstrom^2 (spec "Radial basis") */
    double *beta;         /* [nl][nmax][nmax] row n, column k */
    double *ngam;         /* [nl][np4] -gamma_lk (padding 0) */
    double *bt;           /* [nl][nmax k][np4 n] B^(l)_nk transposed (padding 0) */
    double *ynorm;        /* [nlm] normalisation of R_lm, index l*l + l + m */
    double *qa, *qb;      /* [nl][nl] Legendre recurrence coefficients (l, m) */
    double *dfact;        /* [nl] (2m - 1)!! */
    double pref[KQ_MAX_LMAX + 1]; /* pi sqrt(8 / (2l + 1)) */
    double exp2tab[64];   /* 2^(j/64), for soap_exp_near */
    size_t block_off[KQ_MAX_SPECIES][KQ_MAX_SPECIES]; /* s1 <= s2 */
    /* per call: output out of cache (KQ_SOAP_AHEAD_BYTES), and the parts
     * [ahead_lo, ahead_hi) of a row that soap_row_ahead fetches: the blocks
     * of species pairs both in the frame (the others are zero in every row) */
    int stream;
    int nahead;
    size_t ahead_lo[KQ_MAX_SPECIES * (KQ_MAX_SPECIES + 1) / 2];
    size_t ahead_hi[KQ_MAX_SPECIES * (KQ_MAX_SPECIES + 1) / 2];
    /* per-centre scratch, sized at creation */
    double *coef;         /* [S][nlm][np4] c^Z_nlm (n fastest) */
    double *self;         /* [nl*np4 + nlm] h and R of the pair (i, i), r = 0: the
                           * same for every centre, computed once (soap_new_self) */
    double *rpad;         /* [4][nlm] R of unused lanes (discarded; one row per lane,
                           * as the four destinations must not overlap) */
    double *pstmp;        /* [nmax][np4] power spectrum sums of one (Z1, Z2, l) */
    /* per-call scratch, grows */
    int *sp; size_t sp_cap;            /* [natoms] species index */
    size_t *nstart; size_t nstart_cap; /* [natoms + 1] CSR neighbour lists */
    int *nidx; size_t nidx_cap;
    int *nidx2; size_t nidx2_cap;      /* scratch of soap_neighbours_cells */
    size_t *upstart; size_t upstart_cap; /* [natoms + 1] */
    int *cell_of; size_t cell_of_cap;  /* [natoms] */
    int *cell_atoms; size_t cell_atoms_cap;
    size_t *cell_start; size_t cell_start_cap;
    int *cand; size_t cand_cap;        /* candidates of one centre */
    double *cpos; size_t cpos_cap;     /* [3][natoms] x, y, z in cell_atoms order */
    double *fbuf; size_t fbuf_cap;     /* [neighbours][nl][np4] h_ln(r) of one centre */
    double *rbuf; size_t rbuf_cap;     /* [neighbours][nlm] solid harmonics of one centre */
    const double **hptr; size_t hptr_cap; /* [neighbours] where each h [nlk] is (fbuf, pool
                                           * or self) */
    const double **rptr; size_t rptr_cap; /* [neighbours] where each R [nlm] is (rbuf, pool
                                           * or self) */
    double *rsign; size_t rsign_cap;   /* [neighbours] +1.0, or -1.0 if R is R(r_ji) */
    size_t *fresh, *fresh_t; size_t fresh_cap; /* [neighbours] computed (not reused)
                                                 * slots, and their list entries */
    double *ebuf; size_t ebuf_cap;     /* [4][nl][np4] exp(-gamma_lk r^2) of four of those,
                                        * then [4][nl][np4] their h (soap_centre_fresh) */
    /* pair reuse (see soap_centre_slots): h and R of a pair (i, j) are
     * computed at the centre that comes first in s->order into a free slot of
     * a pool ("ring") of ring_slots entries [nl*np4 + nlm], read there at the
     * other, and the slot is free again once that centre is done */
    int reuse;
    /* Which slot holds a pair is kept per atom and per slot, never per list
     * entry (the lists of 10,000 atoms have half a million entries: 4 MB of
     * fresh pages on a first call for two such tables): the slots stored
     * for atom j, not yet computed, form a chain from head[j] through
     * snext[slot] (UINT32_MAX ends it), ssrc[slot] the centre that stored
     * it. At centre j, mark[a] = the place of atom a in j's list, and
     * slotof[place] = the slot holding that pair (UINT32_MAX: none). */
    uint32_t *head; size_t head_cap;     /* [natoms] */
    uint32_t *mark; size_t mark_cap;     /* [natoms] */
    uint32_t *slotof; size_t slotof_cap; /* [neighbours] */
    uint32_t *ssrc; size_t ssrc_cap;     /* [ring_slots] */
    uint32_t *snext; size_t snext_cap;   /* [ring_slots] */
    size_t *cursor; size_t cursor_cap; /* [natoms] scratch of soap_neighbours_cells */
    double *ring; size_t ring_cap;
    size_t ring_slots;
    uint32_t *freel; size_t freel_cap; /* [ring_slots] stack of free slots, nfree on it */
    size_t nfree;
    uint32_t *release; size_t release_cap; /* [neighbours] slots read by this centre,
                                            * freed when it is done */
    size_t nrelease;
    /* processing order of the centres (soap_centre_order): order [natoms] the
     * centres in the order they are computed, rank [natoms] its inverse. Only
     * the speed depends on it (each centre's own sums are the same whatever
     * the order, and a pair is computed at whichever of its two centres comes
     * first, see soap_centre_slots); mkey [cells] scratch */
    int *order; size_t order_cap;
    int *rank; size_t rank_cap;
    uint64_t *mkey; size_t mkey_cap;
};

void kq_soap_free(kq_soap *s) {
    if (!s) return;
    free(s->alpha); free(s->beta); free(s->ngam); free(s->bt); free(s->ynorm);
    free(s->qa); free(s->qb); free(s->dfact);
    free(s->coef); free(s->rpad); free(s->pstmp); free(s->self);
    free(s->fbuf); free(s->rbuf); free(s->ebuf);
    free(s->hptr); free(s->rptr); free(s->rsign);
    free(s->fresh); free(s->fresh_t);
    free(s->head); free(s->mark); free(s->slotof); free(s->ssrc); free(s->snext);
    free(s->cursor); free(s->ring);
    free(s->freel); free(s->release);
    free(s->order); free(s->rank); free(s->mkey);
    free(s->sp); free(s->nstart); free(s->nidx); free(s->nidx2); free(s->upstart);
    free(s->cell_of);
    free(s->cell_atoms); free(s->cell_start); free(s->cand); free(s->cpos);
    free(s);
}

/* KQ_SIMD_AVX2 if this build has the AVX2 copy and the CPU runs it */
static int soap_best_simd(void) {
#if KQ_SOAP_AVX2
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx2"))
        return KQ_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2")) return KQ_SIMD_AVX2;
#endif
    return KQ_SIMD_PORTABLE;
}

/* The radial tables of the fast path (spec "Radial basis" and "Expansion
 * coefficients", via soap_radial_basis and soap_radial_factor, the same
 * calls as the reference): alpha, beta, ngam = -gamma_lk [nl][np4], bt =
 * B^(l)_nk transposed [nl][nmax k][np4 n], ngmin, pref. KQ_EINVAL if any
 * table is not finite: every descriptor would be NaN/Inf, so the parameters
 * are refused instead (soap.h). */
static int soap_new_radial(kq_soap *s) {
    const size_t nmax = (size_t)s->nmax, np4 = (size_t)s->np4, nl = (size_t)s->nl;
    const double eta = 1.0 / (2.0 * s->p.sigma * s->p.sigma); /* spec "Density" */
    int err = KQ_OK;
    double *swork = kq_alloc_doubles(nmax, nmax, 1, &err);
    for (int l = 0; l < s->nl && !err; l++) {
        double *al = s->alpha + (size_t)l * nmax, *be = s->beta + (size_t)l * nmax * nmax;
        err = soap_radial_basis(s->p.rcut, s->nmax, l, al, be, swork);
        for (size_t k = 0; k < nmax && !err; k++) {
            double *ng = &s->ngam[(size_t)l * np4 + k];
            double w = soap_radial_factor(al[k], eta, l, ng);
            if (*ng < s->ngmin) s->ngmin = *ng;
            for (size_t n = 0; n < nmax; n++)
                s->bt[((size_t)l * nmax + k) * np4 + n] = be[n * nmax + k] * w;
        }
        s->pref[l] = KQ_PI * sqrt(8.0 / (2.0 * l + 1.0)); /* spec "Power spectrum" */
    }
    free(swork);
    if (err) return err;
    int finite = isfinite(eta) && isfinite(s->cut2);
    for (size_t k = 0; k < nl * nmax; k++)
        finite &= isfinite(s->alpha[k]) && isfinite(s->ngam[k / nmax * np4 + k % nmax]);
    for (size_t k = 0; k < nl * nmax * nmax; k++) finite &= isfinite(s->beta[k]);
    for (size_t k = 0; k < nl * nmax * np4; k++) finite &= isfinite(s->bt[k]);
    return finite ? KQ_OK : KQ_EINVAL;
}

/* The coefficients of soap_solid_harmonics as tables, for
 * soap_solid_harmonics4: dfact [m] = (2m - 1)!!, qa/qb [l][m] the recurrence
 * factors (2l - 1)/(l - m) and (l + m - 1)/(l - m), ynorm [l*l + l + m]. */
static void soap_new_harmonics(kq_soap *s) {
    const int nl = s->nl;
    double df = 1.0;
    for (int m = 0; m < nl; m++) {
        s->dfact[m] = df;
        df *= 2.0 * m + 1.0;
    }
    for (int l = 0; l < nl; l++)
        for (int m = 0; m <= l; m++) {
            if (l - m >= 2) {
                s->qa[l * nl + m] = (2.0 * l - 1.0) / (double)(l - m);
                s->qb[l * nl + m] = (double)(l + m - 1) / (double)(l - m);
            }
            s->ynorm[l * l + l + m] = s->ynorm[l * l + l - m] = soap_ylm_norm(l, m);
        }
}

static void soap_new_self(kq_soap *s);

int kq_soap_new(const kq_soap_params *p, kq_soap **out) {
    if (!out) return KQ_EINVAL;
    *out = NULL;
    kq_soap_params q;
    int err = soap_resolve_params(p, &q);
    if (err) return err;
    double cut = soap_cutoff(&q);
    if (!isfinite(cut * cut)) return KQ_EINVAL;

    /* sizes: S nmax, (S nmax)(S nmax + 1)/2 (lmax + 1), nmax^2 (lmax + 1) */
    size_t S = (size_t)q.nspecies, nmax = (size_t)q.nmax, nl = (size_t)q.lmax + 1;
    size_t snm, len, tri;
    if (!kq_mul_ok(S, nmax, &snm) || !kq_mul_ok(snm, snm + 1, &tri) ||
        !kq_mul_ok(tri / 2, nl, &len))
        return KQ_ENOMEM;

    kq_soap *s = calloc(1, sizeof *s);
    if (!s) return KQ_ENOMEM;
    s->p = q;
    s->len = len;
    s->nl = (int)nl;
    s->nlm = (int)(nl * nl);
    s->nmax = q.nmax;
    s->np4 = (q.nmax + 3) / 4 * 4;
    size_t np4 = (size_t)s->np4;
    s->cut = cut;
    s->cut2 = cut * cut;
    s->search = KQ_SEARCH_AUTO;
    s->simd = soap_best_simd();
    s->alpha = kq_alloc_doubles(nl, nmax, 1, &err);
    s->beta = kq_alloc_doubles(nl, nmax, nmax, &err);
    s->ngam = kq_alloc_doubles(nl, np4, 1, &err);
    s->bt = kq_alloc_doubles(nl, nmax, np4, &err);
    s->ynorm = kq_alloc_doubles(nl, nl, 1, &err);
    s->qa = kq_alloc_doubles(nl, nl, 1, &err);
    s->qb = kq_alloc_doubles(nl, nl, 1, &err);
    s->dfact = kq_alloc_doubles(nl, 1, 1, &err);
    s->coef = kq_alloc_doubles(S, nl * nl, np4, &err);
    s->pstmp = kq_alloc_doubles(nmax, np4, 1, &err);
    s->rpad = kq_alloc_doubles(4, nl, nl, &err);
    s->self = kq_alloc_doubles(nl * np4 + nl * nl, 1, 1, &err);
    if (!err) err = soap_new_radial(s);
    if (err) {
        kq_soap_free(s);
        return err;
    }
    for (int j = 0; j < 64; j++) s->exp2tab[j] = exp2((double)j / 64.0);
    soap_new_harmonics(s);
    soap_new_self(s);
    /* block offsets of the layout (spec "Layout of the vector") */
    size_t off = 0, same = nmax * (nmax + 1) / 2 * nl, diff = nmax * nmax * nl;
    for (size_t a = 0; a < S; a++)
        for (size_t b = a; b < S; b++) {
            s->block_off[a][b] = off;
            off += a == b ? same : diff;
        }
    *out = s;
    return KQ_OK;
}

size_t kq_soap_length(const kq_soap *s) { return s ? s->len : 0; }
const kq_soap_params *kq_soap_get_params(const kq_soap *s) { return s ? &s->p : NULL; }
const double *kq_soap_alpha(const kq_soap *s) { return s ? s->alpha : NULL; }
const double *kq_soap_beta(const kq_soap *s) { return s ? s->beta : NULL; }

int kq_soap_set_simd(kq_soap *s, int mode) {
    if (!s) return KQ_EINVAL;
    if (mode == KQ_SIMD_AUTO) mode = soap_best_simd();
    if (mode != KQ_SIMD_PORTABLE && mode != KQ_SIMD_AVX2 && mode != KQ_SIMD_AVX512)
        return KQ_EINVAL;
    if (mode > soap_best_simd()) return KQ_EINVAL; /* not in this build or CPU */
    s->simd = mode;
    return KQ_OK;
}

int kq_soap_set_search(kq_soap *s, int mode) {
    if (!s || (mode != KQ_SEARCH_AUTO && mode != KQ_SEARCH_BRUTE && mode != KQ_SEARCH_CELLS))
        return KQ_EINVAL;
    s->search = mode;
    return KQ_OK;
}

/* R_lm(x_u, y_u, z_u) = |r|^l Y_lm(r/|r|) for l <= lmax of four vectors
 * (lanes u < 4), out[u][l*l + l + m] (four rows that do not overlap). The
 * lanes are independent and each one runs the same expressions in the same
 * order as the former one-vector version (the lane loops only vectorise
 * across atoms), so batching changes no bits. */
KQ_INLINE void soap_solid_harmonics4(const kq_soap *s, const double *restrict x,
                                     const double *restrict y, const double *restrict z,
                                     double *const *out) {
    /* Local arrays (about 30 kB of stack) with compile-time strides: the
     * compiler then sees that the lane loops touch disjoint elements and
     * vectorises them (at -O2 it will not add run-time overlap checks). */
    enum { NL = KQ_MAX_LMAX + 1 };
    const int nl = s->nl;
    double q[NL * NL * 4];         /* q[(l*NL + m)*4 + u] = Q_l^m of lane u */
    double cm[NL * 4], sm[NL * 4]; /* [m][4] Re, Im (x + i y)^m */
    double rv[NL * NL * 4];        /* [l*l + l + m][4] R_lm, lane fastest */
    double r2[4];
    for (int u = 0; u < 4; u++) {
        r2[u] = x[u] * x[u] + y[u] * y[u] + z[u] * z[u];
        cm[u] = 1.0;
        sm[u] = 0.0;
    }
    for (int m = 1; m < nl; m++)
        for (int u = 0; u < 4; u++) {
            cm[4 * m + u] = x[u] * cm[4 * (m - 1) + u] - y[u] * sm[4 * (m - 1) + u];
            sm[4 * m + u] = x[u] * sm[4 * (m - 1) + u] + y[u] * cm[4 * (m - 1) + u];
        }
    for (int m = 0; m < nl; m++) {
        const double df = s->dfact[m];
        for (int u = 0; u < 4; u++) q[(m * NL + m) * 4 + u] = df;
        if (m + 1 < nl)
            for (int u = 0; u < 4; u++) q[((m + 1) * NL + m) * 4 + u] = (2.0 * m + 1.0) * z[u] * df;
        for (int l = m + 2; l < nl; l++) {
            const double a = s->qa[l * nl + m], b = s->qb[l * nl + m];
            for (int u = 0; u < 4; u++)
                q[(l * NL + m) * 4 + u] = a * z[u] * q[((l - 1) * NL + m) * 4 + u] -
                                          b * r2[u] * q[((l - 2) * NL + m) * 4 + u];
        }
    }
    for (int l = 0; l < nl; l++) {
        const double *nrm = s->ynorm + l * l + l;
        const int c = l * l + l; /* row of m = 0 */
        for (int u = 0; u < 4; u++) rv[4 * c + u] = nrm[0] * q[(l * NL) * 4 + u];
        for (int m = 1; m <= l; m++) {
            for (int u = 0; u < 4; u++)
                rv[4 * (c + m) + u] = nrm[m] * q[(l * NL + m) * 4 + u] * cm[4 * m + u];
            for (int u = 0; u < 4; u++)
                rv[4 * (c - m) + u] = nrm[-m] * q[(l * NL + m) * 4 + u] * sm[4 * m + u];
        }
    }
    /* lane-major into the four destinations, 4 x 4 blocks at a time (whole
     * vectors stored: the destinations are often not in cache) */
    const int nlm = s->nlm;
    double *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2],
                     *restrict o3 = out[3];
    int t = 0;
    for (; t + 4 <= nlm; t += 4) {
        const double *v = rv + 4 * t; /* v[4 a + u] = R of row t + a, lane u */
        o0[t] = v[0]; o0[t + 1] = v[4]; o0[t + 2] = v[8]; o0[t + 3] = v[12];
        o1[t] = v[1]; o1[t + 1] = v[5]; o1[t + 2] = v[9]; o1[t + 3] = v[13];
        o2[t] = v[2]; o2[t + 1] = v[6]; o2[t + 2] = v[10]; o2[t + 3] = v[14];
        o3[t] = v[3]; o3[t + 1] = v[7]; o3[t + 2] = v[11]; o3[t + 3] = v[15];
    }
    for (; t < nlm; t++) {
        o0[t] = rv[4 * t];
        o1[t] = rv[4 * t + 1];
        o2[t] = rv[4 * t + 2];
        o3[t] = rv[4 * t + 3];
    }
}

/* The pair (i, i) of every centre, r = 0, computed once: s->self = h_ln(0)
 * [nl][np4] then R_lm(0) [nlm], by the same operations as soap_centre_fresh
 * (soap_exp_near of 0, h a sum over k ascending from 0.0 of e B, the padding
 * columns 0; soap_solid_harmonics4), so the same bits as computing it at
 * each centre. */
static void soap_new_self(kq_soap *s) {
    const int nl = s->nl, nmax = s->nmax, np4 = s->np4;
    const size_t nlk = (size_t)nl * (size_t)np4;
    double *e = s->coef; /* scratch here, [nlk] <= [S][nlm][np4] */
    soap_exp_near((int)nlk, s->ngam, 0.0, s->exp2tab, e);
    for (int l = 0; l < nl; l++)
        for (int n = 0; n < np4; n++) {
            double a = 0.0;
            for (int k = 0; k < nmax; k++)
                a += e[l * np4 + k] * s->bt[((size_t)l * nmax + k) * np4 + n];
            s->self[(size_t)l * np4 + n] = a;
        }
    const double zero[4] = {0.0, 0.0, 0.0, 0.0};
    double *rows[4] = {s->self + nlk, s->rpad + s->nlm, s->rpad + 2 * s->nlm, s->rpad + 3 * s->nlm};
    soap_solid_harmonics4(s, zero, zero, zero, rows);
}

/* ------------------------------------------------------------------------ */
/* Neighbour lists                                                           */
/* ------------------------------------------------------------------------ */

/* Appends the neighbour j of centre i if |r_ij|^2 <= cut2 (j == i included);
 * KQ_EOVERLAP if j != i is closer than 1e-6 angstrom. The same arithmetic in
 * both searches, so both give the same lists. */
static int soap_test_pair(const double *pos, int i, int j, double cut2, int *is_nbr) {
    double dx = pos[3 * j] - pos[3 * i], dy = pos[3 * j + 1] - pos[3 * i + 1],
           dz = pos[3 * j + 2] - pos[3 * i + 2];
    double d2 = dx * dx + dy * dy + dz * dz;
    if (j != i && d2 < 1e-12) return KQ_EOVERLAP;
    *is_nbr = d2 <= cut2;
    return KQ_OK;
}

/* (*buf)[(*count)++] = j, growing *buf (capacity *cap) as needed */
static int soap_push_nbr(int **buf, size_t *cap, size_t *count, int j) {
    if (*count == *cap) {
        size_t ncap = *cap ? 2 * *cap : 1024;
        size_t bytes;
        if (ncap < *cap || !kq_mul_ok(ncap, sizeof(int), &bytes)) return KQ_ENOMEM;
        int *nb = realloc(*buf, bytes);
        if (!nb) return KQ_ENOMEM;
        *buf = nb;
        *cap = ncap;
    }
    (*buf)[(*count)++] = j;
    return KQ_OK;
}

static int soap_centre_order(kq_soap *s, int natoms, const long *nc);

/* O(N^2) reference search: all j in ascending order. */
static int soap_neighbours_brute(kq_soap *s, int natoms, const double *pos) {
    size_t count = 0;
    for (int i = 0; i < natoms; i++) {
        s->nstart[i] = count;
        for (int j = 0; j < natoms; j++) {
            int nb, rc = soap_test_pair(pos, i, j, s->cut2, &nb);
            if (rc) return rc;
            if (nb && (rc = soap_push_nbr(&s->nidx, &s->nidx_cap, &count, j))) return rc;
        }
    }
    s->nstart[natoms] = count;
    return soap_centre_order(s, natoms, NULL);
}

/* Cell lists: cells at least cut/2 wide, so every neighbour of an atom is in
 * its own cell or at most two cells away; the candidates of a centre are sorted so that each
 * list is in ascending index order, exactly as soap_neighbours_brute makes it.
 * Cost O(N) for bounded density. */
/* The cells of soap_neighbours_cells: nc [3] cells per dimension, each atom's
 * cell (s->cell_of) and the atoms of each cell in ascending index
 * (s->cell_atoms from s->cell_start[c]). */
static int soap_cells_build(kq_soap *s, int natoms, const double *pos, long nc[3],
                            double lo[3], double width[3]) {
    double hi[3];
    for (int d = 0; d < 3; d++) {
        lo[d] = hi[d] = pos[d];
        for (int i = 1; i < natoms; i++) {
            double v = pos[3 * i + d];
            if (v < lo[d]) lo[d] = v;
            if (v > hi[d]) hi[d] = v;
        }
        double ext = hi[d] - lo[d];
        /* cells at least cut/2 wide (so neighbours are at most 2 cells away),
         * with a margin so that rounding in the cell index can never put two
         * atoms closer than cut three cells apart */
        double ncd = floor(ext / (0.5 * s->cut * 1.000001));
        nc[d] = (isfinite(ncd) && ncd >= 1.0) ? (ncd > 1e6 ? 1000000 : (long)ncd) : 1;
    }
    /* at most about 2 N + 125 cells: halve the largest dimension until it fits */
    double maxcells = 2.0 * (double)natoms + 125.0;
    while ((double)nc[0] * (double)nc[1] * (double)nc[2] > maxcells) {
        int d = nc[0] >= nc[1] && nc[0] >= nc[2] ? 0 : (nc[1] >= nc[2] ? 1 : 2);
        nc[d] = (nc[d] + 1) / 2;
    }
    size_t ncells = (size_t)(nc[0] * nc[1] * nc[2]);
    for (int d = 0; d < 3; d++) width[d] = nc[d] > 1 ? (hi[d] - lo[d]) / (double)nc[d] : 1.0;

    int rc;
    if ((rc = kq_reserve((void **)&s->cell_of, &s->cell_of_cap, (size_t)natoms, sizeof(int))) ||
        (rc = kq_reserve((void **)&s->cell_atoms, &s->cell_atoms_cap, (size_t)natoms,
                         sizeof(int))) ||
        (rc = kq_reserve((void **)&s->cell_start, &s->cell_start_cap, ncells + 1,
                         sizeof(size_t))) ||
        (rc = kq_reserve((void **)&s->cand, &s->cand_cap, (size_t)natoms, sizeof(int))) ||
        (rc = kq_reserve((void **)&s->cpos, &s->cpos_cap, 3 * (size_t)natoms, sizeof(double))))
        return rc;
    for (int i = 0; i < natoms; i++) {
        long c[3];
        for (int d = 0; d < 3; d++) {
            long v = 0;
            if (nc[d] > 1) {
                double f = floor((pos[3 * i + d] - lo[d]) / width[d]);
                v = f < 0.0 ? 0 : (f >= (double)nc[d] ? nc[d] - 1 : (long)f);
            }
            c[d] = v;
        }
        s->cell_of[i] = (int)((c[0] * nc[1] + c[1]) * nc[2] + c[2]);
    }
    /* counting sort by cell, stable: each cell's atoms in ascending index */
    memset(s->cell_start, 0, (ncells + 1) * sizeof(size_t));
    for (int i = 0; i < natoms; i++) s->cell_start[s->cell_of[i] + 1]++;
    for (size_t c = 0; c < ncells; c++) s->cell_start[c + 1] += s->cell_start[c];
    for (int i = 0; i < natoms; i++) {
        size_t *fill = s->cell_start; /* use cell_start[c] as a cursor, restored below */
        s->cell_atoms[fill[s->cell_of[i]]++] = i;
    }
    for (size_t c = ncells; c > 0; c--) s->cell_start[c] = s->cell_start[c - 1];
    s->cell_start[0] = 0;
    /* the coordinates in the same order, one array per axis [3][natoms], so
     * that the candidates of a row of cells are one contiguous run */
    for (int t = 0; t < natoms; t++)
        for (int d = 0; d < 3; d++) s->cpos[(size_t)d * natoms + t] = pos[3 * s->cell_atoms[t] + d];
    return KQ_OK;
}

/* Morton (Z-order) key of a cell: the bits of its three coordinates (each
 * < 2^21) interleaved, and back. */
static uint64_t soap_morton(const long c[3]) {
    uint64_t key = 0;
    for (int b = 0; b < 21; b++)
        for (int d = 0; d < 3; d++) key |= (((uint64_t)c[d] >> b) & 1u) << (3 * b + (2 - d));
    return key;
}
static void soap_unmorton(uint64_t key, long c[3]) {
    c[0] = c[1] = c[2] = 0;
    for (int b = 0; b < 21; b++)
        for (int d = 0; d < 3; d++) c[d] |= (long)((key >> (3 * b + (2 - d))) & 1u) << b;
}
static int soap_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The processing order of the centres (s->order, s->rank): with nc NULL
 * (brute-force search) ascending index; else the atoms cell by cell, the
 * cells in Morton order (ascending index within a cell), so that the two
 * centres of most pairs are computed close together in time and few pairs
 * wait in the pool for their second centre (pair reuse, soap_centre_slots).
 * Atom order in a file is often far from spatial order (shells of a
 * cluster, molecules of a box), and the pool then fills up. Only the speed
 * depends on the order, never a value. */
static int soap_centre_order(kq_soap *s, int natoms, const long *nc) {
    int rc;
    if ((rc = kq_reserve((void **)&s->order, &s->order_cap, (size_t)natoms, sizeof(int))) ||
        (rc = kq_reserve((void **)&s->rank, &s->rank_cap, (size_t)natoms, sizeof(int))))
        return rc;
    if (!nc) {
        for (int i = 0; i < natoms; i++) s->order[i] = s->rank[i] = i;
        return KQ_OK;
    }
    size_t ncells = (size_t)(nc[0] * nc[1] * nc[2]), nk = 0, k = 0;
    if ((rc = kq_reserve((void **)&s->mkey, &s->mkey_cap, ncells, sizeof(uint64_t)))) return rc;
    for (size_t cell = 0; cell < ncells; cell++) {
        if (s->cell_start[cell] == s->cell_start[cell + 1]) continue;
        long c[3] = {(long)cell / nc[2] / nc[1], (long)(cell / (size_t)nc[2]) % nc[1],
                     (long)(cell % (size_t)nc[2])};
        s->mkey[nk++] = soap_morton(c);
    }
    qsort(s->mkey, nk, sizeof(uint64_t), soap_cmp_u64);
    for (size_t q = 0; q < nk; q++) {
        long c[3];
        soap_unmorton(s->mkey[q], c);
        size_t cell = (size_t)((c[0] * nc[1] + c[1]) * nc[2] + c[2]);
        for (size_t t = s->cell_start[cell]; t < s->cell_start[cell + 1]; t++)
            s->order[k++] = s->cell_atoms[t];
    }
    for (size_t q = 0; q < (size_t)natoms; q++) s->rank[s->order[q]] = (int)q;
    return KQ_OK;
}

/* Distance from v to the slab of cell a along one axis (0 if a == self, the
 * atom's own cell), less a margin eps: a lower bound for any atom the cell
 * list put in cell a, whatever the rounding of its cell index. */
static double soap_slab_gap(double v, long a, long self, double lo, double w, double eps) {
    double g = a < self ? v - (lo + (double)(a + 1) * w) : a > self ? (lo + (double)a * w) - v : 0.0;
    g -= eps;
    return g > 0.0 ? g : 0.0;
}

/* Doubles in one entry of the pool of the pair reuse: h [nl][np4], then R [nlm]. */
static size_t soap_pair_len(const kq_soap *s) {
    return (size_t)s->nl * (size_t)s->np4 + (size_t)s->nlm;
}

/* The most slots the pool of the pair reuse may have: KQ_SOAP_RING_BYTES
 * (the size changes only the speed, never the result; a larger pool costs
 * page faults on the first call), at least 64. */
static size_t soap_ring_cap(const kq_soap *s) {
    size_t cap = (size_t)KQ_SOAP_RING_BYTES / (soap_pair_len(s) * sizeof(double));
    return cap < 64 ? 64 : cap;
}

/* Room for `need` entries of the upper halves being built at *up (capacity
 * *cap, count entries so far): in the pool's memory while they fit there
 * (borrowed, see soap_neighbours_cells), then in s->nidx2, twice as large
 * each time. */
static int soap_upper_grow(kq_soap *s, int **up, size_t *cap, size_t count, size_t need) {
    size_t ncap = need < 512 ? 1024 : 2 * need, bytes;
    if (ncap < need || !kq_mul_ok(ncap, sizeof(int), &bytes)) return KQ_ENOMEM;
    if (*up == s->nidx2) { /* our own buffer: grow it, keeping its contents */
        int *nb = realloc(s->nidx2, bytes);
        if (!nb) return KQ_ENOMEM;
        s->nidx2 = nb;
        s->nidx2_cap = ncap;
    } else { /* borrowed: move the entries so far to our own buffer */
        int rc = kq_reserve((void **)&s->nidx2, &s->nidx2_cap, ncap, sizeof(int));
        if (rc) return rc;
        if (count) memcpy(s->nidx2, *up, count * sizeof(int));
    }
    *up = s->nidx2;
    *cap = s->nidx2_cap;
    return KQ_OK;
}

static int soap_neighbours_cells(kq_soap *s, int natoms, const double *pos) {
    long nc[3];
    double lo[3], width[3];
    int rc = soap_cells_build(s, natoms, pos, nc, lo, width);
    if (rc) return rc;
    /* Each pair is tested once, from its lower index: first the upper
     * halves (j > i, ascending) of all lists, from upstart[i], built in up
     * (capacity upcap); the test is symmetric (fl(a - b) = -fl(b - a), so
     * the same d^2 both ways), so the full lists are the same as testing
     * both ways. They are scratch, dead before the pool of the pair reuse
     * is first used, so they are built in the pool's memory while they fit
     * there (1 MB of the 3 MB for 10,000 waters: pages a first call would
     * otherwise touch twice), then in s->nidx2. */
    if ((rc = kq_reserve((void **)&s->upstart, &s->upstart_cap, (size_t)natoms + 1,
                         sizeof(size_t))) ||
        (rc = kq_reserve((void **)&s->cursor, &s->cursor_cap, (size_t)natoms, sizeof(size_t))))
        return rc;
    int *up = s->nidx2;
    size_t upcap = s->nidx2_cap, ringn;
    if (kq_mul_ok(soap_ring_cap(s), soap_pair_len(s), &ringn) &&
        upcap < ringn * (sizeof(double) / sizeof(int)) &&
        kq_reserve((void **)&s->ring, &s->ring_cap, ringn, sizeof(double)) == KQ_OK) {
        up = (int *)(void *)s->ring;
        upcap = ringn * (sizeof(double) / sizeof(int));
    }
    /* Rows of cells (and end cells of a row) whose slab is farther than the
     * cutoff from the centre are skipped: only the speed depends on it, as
     * the margin eps (far above rounding, far below any distance that
     * matters) keeps every atom within the cutoff among the candidates. */
    double maxabs = 0.0;
    for (int d = 0; d < 3; d++) {
        double a = fabs(lo[d]) + (double)nc[d] * width[d];
        if (a > maxabs) maxabs = a;
    }
    const double eps = 1e-7 * s->cut + 1e-9 * maxabs;
    const double *cx = s->cpos, *cy = s->cpos + natoms, *cz = s->cpos + 2 * (size_t)natoms;
    size_t count = 0;
    for (int i = 0; i < natoms; i++) {
        s->upstart[i] = count;
        long ci = s->cell_of[i];
        long c2 = ci % nc[2], c1 = (ci / nc[2]) % nc[1], c0 = ci / nc[2] / nc[1];
        const double xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
        size_t ncand = 0;
        int overlap = 0;
        for (long a = c0 - 2; a <= c0 + 2; a++) {
            if (a < 0 || a >= nc[0]) continue;
            const double gx = soap_slab_gap(xi, a, c0, lo[0], width[0], eps);
            for (long b = c1 - 2; b <= c1 + 2; b++) {
                if (b < 0 || b >= nc[1]) continue;
                const double gy = soap_slab_gap(yi, b, c1, lo[1], width[1], eps);
                const double g2 = gx * gx + gy * gy;
                if (g2 > s->cut2) continue;
                long clo = c2 - 2 < 0 ? 0 : c2 - 2, chi = c2 + 2 >= nc[2] ? nc[2] - 1 : c2 + 2;
                for (double g; clo < c2; clo++)
                    if (g = soap_slab_gap(zi, clo, c2, lo[2], width[2], eps), g2 + g * g <= s->cut2)
                        break;
                for (double g; chi > c2; chi--)
                    if (g = soap_slab_gap(zi, chi, c2, lo[2], width[2], eps), g2 + g * g <= s->cut2)
                        break;
                const size_t row = (size_t)((a * nc[1] + b) * nc[2]);
                /* the test of soap_test_pair, without branches (they would
                 * be mispredicted half the time): j is kept if j > i and
                 * d^2 <= cut2, overlap flagged if j > i and d^2 < 1e-12 */
                for (size_t t = s->cell_start[row + (size_t)clo]; t < s->cell_start[row + (size_t)chi + 1];
                     t++) {
                    int j = s->cell_atoms[t];
                    double dx = cx[t] - xi, dy = cy[t] - yi, dz = cz[t] - zi;
                    double d2 = dx * dx + dy * dy + dz * dz;
                    s->cand[ncand] = j;
                    ncand += (size_t)((j > i) & (d2 <= s->cut2));
                    overlap |= (j > i) & (d2 < 1e-12);
                }
            }
        }
        if (overlap) return KQ_EOVERLAP;
        /* insertion sort: ascending neighbour index */
        for (size_t t = 1; t < ncand; t++) {
            int v = s->cand[t];
            size_t u = t;
            while (u > 0 && s->cand[u - 1] > v) { s->cand[u] = s->cand[u - 1]; u--; }
            s->cand[u] = v;
        }
        if (ncand > upcap - count && (rc = soap_upper_grow(s, &up, &upcap, count, count + ncand)))
            return rc;
        for (size_t t = 0; t < ncand; t++) up[count++] = s->cand[t];
    }
    s->upstart[natoms] = count;
    /* full list of i: the j < i that have i in their upper half (ascending,
     * as i is visited in ascending order below), i itself, its upper half */
    size_t *low = s->cursor; /* [natoms] lower counts, then fill cursors */
    for (int i = 0; i < natoms; i++) low[i] = 0;
    for (size_t t = 0; t < count; t++) low[up[t]]++;
    size_t total;
    if (!kq_mul_ok(count, 2, &total) || total > SIZE_MAX - (size_t)natoms) return KQ_ENOMEM;
    total += (size_t)natoms;
    if ((rc = kq_reserve((void **)&s->nidx, &s->nidx_cap, total, sizeof(int)))) return rc;
    s->nstart[0] = 0;
    for (int i = 0; i < natoms; i++)
        s->nstart[i + 1] = s->nstart[i] + low[i] + 1 + (s->upstart[i + 1] - s->upstart[i]);
    for (int i = 0; i < natoms; i++) low[i] = s->nstart[i];
    for (int i = 0; i < natoms; i++) {
        size_t w = s->nstart[i + 1] - (s->upstart[i + 1] - s->upstart[i]) - 1;
        s->nidx[w++] = i;
        for (size_t t = s->upstart[i]; t < s->upstart[i + 1]; t++) {
            int j = up[t];
            s->nidx[w++] = j;
            s->nidx[low[j]++] = i;
        }
    }
    return soap_centre_order(s, natoms, nc);
}

/* ------------------------------------------------------------------------ */
/* One centre                                                                */
/* ------------------------------------------------------------------------ */

/* The inner kernel of the per-centre work: a block of a small matrix product,
 *   out[r*os + u] = scale * sum_{t < nt} x_t[r*rs] (g_t y_t[u]),
 * r < nr (1 to 8 rows), u < nu (4 or 8 adjacent columns), every sum
 * its own, t ascending from 0.0 (the order of kq_soap_reference). Row t of
 * x and of y is found by soap_row: base + t*ts (a dense matrix) or ptr[t] +
 * off (rows stored wherever a neighbour's h and R are, see
 * soap_centre_slots). g_t = sg[t] = +1.0 or -1.0 is the parity of a pair
 * whose R was computed from the other end, R_lm(-r) = (-1)^l R_lm(r); that
 * multiplication is exact, and x (-y) = (-x) y exactly, so each term is the
 * bits of R_lm(r_ij) h_ln (sg NULL: g = 1). nr and nu are constants at every
 * call (the function is inlined), so the ifs below vanish and a[][] has
 * constant indices only and stays in registers: nr x nu independent sums in
 * flight, which gcc/clang vectorise at -O2 across u (4 wide in the AVX2
 * copy, 8 in the AVX-512 one) without reassociating anything. scale 1.0 changes nothing. */
typedef struct {
    const double *base;      /* dense rows: base + t * ts */
    size_t ts;
    const double *const *ptr; /* or (ptr not NULL) rows through pointers: ptr[t] + off */
    size_t off;
} soap_src;

KQ_INLINE const double *soap_row(soap_src s, int t) {
    return s.ptr ? s.ptr[t] + s.off : s.base + (size_t)t * s.ts;
}

#if KQ_SOAP_AVX2
/* soap_block for nu = 8, written with GCC/clang vector types (one 8-wide
 * vector per row: one register in the AVX-512 copy, two in the AVX2 one),
 * used by the wide copies only. The compiler's own vectorisation of the
 * scalar form kept the sums transposed and shuffled every term into place;
 * here every element is the same two operations per t as there (v = g y,
 * a += p v, t ascending from 0.0, then scale a), elementwise, so the same
 * bits. */
typedef double soap_v4 __attribute__((vector_size(32), aligned(8), may_alias));
KQ_INLINE void soap_block_v4x2(const int nr, int nt, soap_src x, size_t rs, soap_src y,
                               const double *sg, double *restrict out, size_t os,
                               double *const *orow, double scale, const int tri) {
    /* two 4-wide halves per row (lo, hi): native in the AVX2 copy, where
     * gcc would split an 8-wide generic vector into scalars */
    const soap_v4 z = {0.0, 0.0, 0.0, 0.0};
    soap_v4 l0 = z, l1 = z, l2 = z, l3 = z, l4 = z, l5 = z, l6 = z, l7 = z;
    soap_v4 h0 = z, h1 = z, h2 = z, h3 = z, h4 = z, h5 = z, h6 = z, h7 = z;
    for (int t = 0; t < nt; t++) {
        const double *restrict xt = soap_row(x, t), *yt = soap_row(y, t);
        soap_v4 vl = *(const soap_v4 *)yt, vh = *(const soap_v4 *)(yt + 4);
        if (sg) {
            vl = sg[t] * vl;
            vh = sg[t] * vh;
        }
#define KQ_ROW(r, lr, hr)                                                                    \
    do {                                                                                     \
        const double p = xt[(size_t)(r) * rs];                                               \
        lr += p * vl;                                                                        \
        hr += p * vh;                                                                        \
    } while (0)
        KQ_ROW(0, l0, h0);
        if (nr > 1) KQ_ROW(1, l1, h1);
        if (nr > 2) KQ_ROW(2, l2, h2);
        if (nr > 3) KQ_ROW(3, l3, h3);
        if (nr > 4) KQ_ROW(4, l4, h4);
        if (nr > 5) {
            KQ_ROW(5, l5, h5);
            KQ_ROW(6, l6, h6);
            KQ_ROW(7, l7, h7);
        }
#undef KQ_ROW
    }
    /* row r goes to out + r os, or (orow not NULL) to orow[r] + os; tri: as in
     * soap_block_v8x1, row r whole at out + P_r - r, the last row first */
#define KQ_OUT(r, lr, hr)                                                                    \
    do {                                                                                     \
        double *o = tri ? out + 8 * (r) - (r) * ((r) - 1) / 2 - (r)                          \
                        : orow ? orow[r] + os : out + (size_t)(r) * os;                      \
        *(soap_v4 *)o = scale * lr;                                                          \
        *(soap_v4 *)(o + 4) = scale * hr;                                                    \
    } while (0)
    if (tri) {
        KQ_OUT(7, l7, h7); KQ_OUT(6, l6, h6); KQ_OUT(5, l5, h5); KQ_OUT(4, l4, h4);
        KQ_OUT(3, l3, h3); KQ_OUT(2, l2, h2); KQ_OUT(1, l1, h1); KQ_OUT(0, l0, h0);
        return;
    }
    KQ_OUT(0, l0, h0);
    if (nr > 1) KQ_OUT(1, l1, h1);
    if (nr > 2) KQ_OUT(2, l2, h2);
    if (nr > 3) KQ_OUT(3, l3, h3);
    if (nr > 4) KQ_OUT(4, l4, h4);
    if (nr > 5) {
        KQ_OUT(5, l5, h5);
        KQ_OUT(6, l6, h6);
        KQ_OUT(7, l7, h7);
    }
#undef KQ_OUT
}

/* The same with one 8-wide vector per row: one register in the AVX-512 copy.
 * tri (a constant; nr 8, an 8 x 8 block of one species pair with itself):
 * only row r's part u >= r is wanted, packed row after row from out (row r
 * at out + P_r, P_r = 8r - r(r-1)/2, 36 values in all): each row is stored
 * whole at out + P_r - r, rows from the last up, so that a store's first r
 * values fall on rows above, which are written after it; every value ends
 * up from its own row and no store leaves [out, out + 36) (soap_centre_power). */
typedef double soap_v8 __attribute__((vector_size(64), aligned(8), may_alias));
KQ_INLINE void soap_block_v8x1(const int nr, int nt, soap_src x, size_t rs, soap_src y,
                               const double *sg, double *restrict out, size_t os,
                               double *const *orow, double scale, const int tri) {
    soap_v8 a0 = {0.0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int t = 0; t < nt; t++) {
        const double *restrict xt = soap_row(x, t);
        soap_v8 v = *(const soap_v8 *)soap_row(y, t);
        if (sg) v = sg[t] * v;
        a0 += xt[0] * v;
        if (nr > 1) a1 += xt[rs] * v;
        if (nr > 2) a2 += xt[2 * rs] * v;
        if (nr > 3) a3 += xt[3 * rs] * v;
        if (nr > 4) a4 += xt[4 * rs] * v;
        if (nr > 5) {
            a5 += xt[5 * rs] * v;
            a6 += xt[6 * rs] * v;
            a7 += xt[7 * rs] * v;
        }
    }
    if (tri) {
#define KQ_TRI(r) (*(soap_v8 *)(out + 8 * (r) - (r) * ((r) - 1) / 2 - (r)))
        KQ_TRI(7) = scale * a7;
        KQ_TRI(6) = scale * a6;
        KQ_TRI(5) = scale * a5;
        KQ_TRI(4) = scale * a4;
        KQ_TRI(3) = scale * a3;
        KQ_TRI(2) = scale * a2;
        KQ_TRI(1) = scale * a1;
        KQ_TRI(0) = scale * a0;
#undef KQ_TRI
        return;
    }
#define KQ_OUT(r) (*(soap_v8 *)(orow ? orow[r] + os : out + (size_t)(r) * os))
    KQ_OUT(0) = scale * a0;
    if (nr > 1) KQ_OUT(1) = scale * a1;
    if (nr > 2) KQ_OUT(2) = scale * a2;
    if (nr > 3) KQ_OUT(3) = scale * a3;
    if (nr > 4) KQ_OUT(4) = scale * a4;
    if (nr > 5) {
        KQ_OUT(5) = scale * a5;
        KQ_OUT(6) = scale * a6;
        KQ_OUT(7) = scale * a7;
    }
#undef KQ_OUT
}

/* w (a constant) = the copy's `wide`: 8-wide vectors in the AVX-512 copy
 * (w 2), pairs of 4-wide ones otherwise (gcc splits an 8-wide generic
 * vector into scalars where the target has no 8-wide registers); tri (a
 * constant) as in soap_block_v8x1 */
KQ_INLINE void soap_block_v8(const int nr, int nt, soap_src x, size_t rs, soap_src y,
                             const double *sg, double *restrict out, size_t os,
                             double *const *orow, double scale, const int w, const int tri) {
    if (w == 2)
        soap_block_v8x1(nr, nt, x, rs, y, sg, out, os, orow, scale, tri);
    else
        soap_block_v4x2(nr, nt, x, rs, y, sg, out, os, orow, scale, tri);
}
#endif

KQ_INLINE void soap_block(const int nr, const int nu, int nt, soap_src x, size_t rs, soap_src y,
                          const double *sg, double *restrict out, size_t os, double scale) {
#if KQ_SOAP_AVX2
    if (nu == 8) {
        soap_block_v8(nr, nt, x, rs, y, sg, out, os, NULL, scale, 1, 0);
        return;
    }
#endif
    double a[8][8] = {{0.0}};
#define KQ_ROW(r)                                                                            \
    do {                                                                                     \
        const double p = xt[(size_t)(r) * rs];                                               \
        a[r][0] += p * v[0];                                                                 \
        a[r][1] += p * v[1];                                                                 \
        a[r][2] += p * v[2];                                                                 \
        a[r][3] += p * v[3];                                                                 \
        if (nu == 8) {                                                                       \
            a[r][4] += p * v[4];                                                             \
            a[r][5] += p * v[5];                                                             \
            a[r][6] += p * v[6];                                                             \
            a[r][7] += p * v[7];                                                             \
        }                                                                                    \
    } while (0)
    for (int t = 0; t < nt; t++) {
        const double *restrict xt = soap_row(x, t), *restrict yt = soap_row(y, t);
        const double g = sg ? sg[t] : 1.0;
        double v[8];
        v[0] = g * yt[0];
        v[1] = g * yt[1];
        v[2] = g * yt[2];
        v[3] = g * yt[3];
        if (nu == 8) {
            v[4] = g * yt[4];
            v[5] = g * yt[5];
            v[6] = g * yt[6];
            v[7] = g * yt[7];
        }
        KQ_ROW(0);
        if (nr > 1) KQ_ROW(1);
        if (nr > 2) KQ_ROW(2);
        if (nr > 3) KQ_ROW(3);
        if (nr > 4) KQ_ROW(4);
        if (nr > 5) { KQ_ROW(5); KQ_ROW(6); KQ_ROW(7); }
    }
#undef KQ_ROW
#define KQ_ROW(r)                                                                            \
    do {                                                                                     \
        double *o = out + (size_t)(r) * os;                                                  \
        o[0] = scale * a[r][0];                                                              \
        o[1] = scale * a[r][1];                                                              \
        o[2] = scale * a[r][2];                                                              \
        o[3] = scale * a[r][3];                                                              \
        if (nu == 8) {                                                                       \
            o[4] = scale * a[r][4];                                                          \
            o[5] = scale * a[r][5];                                                          \
            o[6] = scale * a[r][6];                                                          \
            o[7] = scale * a[r][7];                                                          \
        }                                                                                    \
    } while (0)
    KQ_ROW(0);
    if (nr > 1) KQ_ROW(1);
    if (nr > 2) KQ_ROW(2);
    if (nr > 3) KQ_ROW(3);
    if (nr > 4) KQ_ROW(4);
    if (nr > 5) { KQ_ROW(5); KQ_ROW(6); KQ_ROW(7); }
#undef KQ_ROW
}

#if !KQ_SOAP_AVX2
/* Without the vector-type copies (PORTABLE=1, other compilers): the wide
 * paths are never taken at run time, but must compile (tri is only asked
 * for inside #if KQ_SOAP_AVX2) */
KQ_INLINE void soap_block_v8(const int nr, int nt, soap_src x, size_t rs, soap_src y,
                             const double *sg, double *restrict out, size_t os,
                             double *const *orow, double scale, const int w, const int tri) {
    (void)orow;
    (void)w;
    (void)tri;
    soap_block(nr, 8, nt, x, rs, y, sg, out, os, scale);
}
#endif

/* Dense and pointer operands for soap_block */
KQ_INLINE soap_src soap_dense(const double *base, size_t ts) {
    soap_src s = {base, ts, NULL, 0};
    return s;
}
KQ_INLINE soap_src soap_ptrs(const double *const *ptr, size_t off) {
    soap_src s = {NULL, 0, ptr, off};
    return s;
}

/* A block of 4 columns of the product of nrows rows:
 * out[r*os + u] = sum_{t < nt} x[r*rs + t*xs] y[t*ys + u], r < nrows, u < 4,
 * every sum t ascending from 0.0; rows eight (if wide), four, then two and
 * one at a time. */
KQ_INLINE void soap_rows4(int nt, int nrows, const double *x, size_t rs, size_t xs,
                          const double *y, size_t ys, double *out, size_t os, int wide) {
    int r = 0;
    const soap_src yy = soap_dense(y, ys);
    if (wide)
        for (; r + 8 <= nrows; r += 8)
            soap_block(8, 4, nt, soap_dense(x + (size_t)r * rs, xs), rs, yy, NULL,
                       out + (size_t)r * os, os, 1.0);
    for (; r + 4 <= nrows; r += 4)
        soap_block(4, 4, nt, soap_dense(x + (size_t)r * rs, xs), rs, yy, NULL,
                   out + (size_t)r * os, os, 1.0);
    for (; r + 2 <= nrows; r += 2)
        soap_block(2, 4, nt, soap_dense(x + (size_t)r * rs, xs), rs, yy, NULL,
                   out + (size_t)r * os, os, 1.0);
    if (r < nrows)
        soap_block(1, 4, nt, soap_dense(x + (size_t)r * rs, xs), rs, yy, NULL,
                   out + (size_t)r * os, os, 1.0);
}

/* o[q] = pref * v[q], q < n: blocks of 4, then the rest one by one */
KQ_INLINE void soap_scale_copy(int n, double pref, const double *restrict v, double *restrict o) {
    int q = 0;
    for (; q + 4 <= n; q += 4) {
        o[q] = pref * v[q];
        o[q + 1] = pref * v[q + 1];
        o[q + 2] = pref * v[q + 2];
        o[q + 3] = pref * v[q + 3];
    }
    for (; q < n; q++) o[q] = pref * v[q];
}

/* The pool of soap_centre_slots run over the lists without computing
 * anything, for the processing order `order` (rank its inverse; both NULL:
 * ascending index) and a pool of `slots` entries: the pairs that miss (find
 * no free slot, so are computed at both centres), and in *need the most
 * slots in use at once. Uses s->head [natoms] as the count of pairs stored
 * for each atom so far. */
static size_t soap_ring_misses(kq_soap *s, int natoms, const int *order, const int *rank,
                               size_t slots, size_t *need) {
    uint32_t *got = s->head;
    size_t live = 0, misses = 0;
    *need = 1;
    for (int i = 0; i < natoms; i++) got[i] = 0;
    for (int k = 0; k < natoms; k++) {
        const int i = order ? order[k] : k, ri = rank ? rank[i] : i;
        size_t before = 0; /* neighbours earlier in the order */
        for (size_t t = s->nstart[i]; t < s->nstart[i + 1]; t++) {
            const int j = s->nidx[t], rj = rank ? rank[j] : j;
            if (rj < ri) {
                before++;
            } else if (rj > ri && live < slots) {
                got[j]++;
                live++;
            }
        }
        misses += before - got[i];
        if (live > *need) *need = live;
        live -= got[i]; /* slots read here are free once this centre is done */
    }
    return misses;
}

/* Pair reuse set-up for kq_soap_compute: the processing order and the pool.
 * The spatial order of soap_centre_order is used if no pair misses a slot
 * in it, else whichever of it and ascending index (often better for files
 * of molecules, and for clusters listed shell by shell) has fewer misses;
 * the pool gets only as many slots as are in use at once (at most
 * KQ_SOAP_RING_BYTES), so a small frame does not touch pages it would never
 * use. Anything unexpected just turns reuse off (same results, slower). */
static int soap_reuse_setup(kq_soap *s, int natoms) {
    const size_t pair = soap_pair_len(s);
    int rc;
    s->reuse = 0;
    if (s->search == KQ_SEARCH_BRUTE) return KQ_OK; /* the reference path */
    if ((rc = kq_reserve((void **)&s->head, &s->head_cap, (size_t)natoms, sizeof(uint32_t))) ||
        (rc = kq_reserve((void **)&s->mark, &s->mark_cap, (size_t)natoms, sizeof(uint32_t))))
        return rc;
    size_t cap = soap_ring_cap(s), need_id = 0, need_sp;
    /* the spatial order first; ascending index only if that can do better
     * (with brute force the two are the same order) */
    int same = 1;
    for (int i = 0; i < natoms && same; i++) same = s->order[i] == i;
    size_t miss_sp = soap_ring_misses(s, natoms, s->order, s->rank, cap, &need_sp);
    size_t miss_id = same || miss_sp == 0 ? miss_sp + 1
                                          : soap_ring_misses(s, natoms, NULL, NULL, cap, &need_id);
    if (miss_id < miss_sp) {
        for (int i = 0; i < natoms; i++) s->order[i] = s->rank[i] = i;
        need_sp = need_id;
        miss_sp = miss_id;
    }
    size_t slots = miss_sp == 0 ? need_sp : cap;
    size_t ringn;
    if (!kq_mul_ok(slots, pair, &ringn)) return KQ_OK;
    if (kq_reserve((void **)&s->ring, &s->ring_cap, ringn, sizeof(double)) != KQ_OK ||
        kq_reserve((void **)&s->freel, &s->freel_cap, slots, sizeof(uint32_t)) != KQ_OK ||
        kq_reserve((void **)&s->ssrc, &s->ssrc_cap, slots, sizeof(uint32_t)) != KQ_OK ||
        kq_reserve((void **)&s->snext, &s->snext_cap, slots, sizeof(uint32_t)) != KQ_OK)
        return KQ_OK; /* no memory for the pool: compute every pair twice */
    /* free stack: slot 0 on top, so that the slots in use stay few and hot */
    for (size_t k = 0; k < slots; k++) s->freel[k] = (uint32_t)(slots - 1 - k);
    for (int i = 0; i < natoms; i++) s->head[i] = UINT32_MAX; /* nothing stored yet */
    s->nfree = slots;
    s->ring_slots = slots;
    s->reuse = 1;
    return KQ_OK;
}

/* One centre i of kq_soap_compute, in four steps: soap_centre_slots (where
 * each neighbour's h and R are: computed here or reused), soap_centre_fresh
 * (compute the fresh ones), soap_centre_coef (c^Z_nlm), soap_centre_power
 * (p). wide (a constant in each copy) selects kernels with 8 independent
 * vector sums for the AVX2 and AVX-512 copies (wide 1, 2; the latter also
 * takes 8 x 8 blocks of the power spectrum, one 8-wide vector per row); the
 * portable copy keeps 4 (with 2-wide vectors that is already 8 sums, and 16
 * registers hold no more). Either way every element is the same sum in the
 * same order as kq_soap_reference. */
typedef struct {
    int present[KQ_MAX_SPECIES]; /* species with at least one neighbour */
    size_t cnt[KQ_MAX_SPECIES];  /* neighbours of each species */
    size_t off[KQ_MAX_SPECIES];  /* first slot of each species */
    size_t nfresh;               /* pairs computed at this centre (s->fresh) */
} soap_centre;

KQ_INLINE void soap_centre_slots(kq_soap *s, int i, soap_centre *c) {
    const int S = s->p.nspecies;
    const size_t nlk = (size_t)s->nl * (size_t)s->np4, nlm = (size_t)s->nlm;
    size_t *cnt = c->cnt, *off = c->off, fill[KQ_MAX_SPECIES];
    const size_t t0 = s->nstart[i], t1 = s->nstart[i + 1];
    for (int z = 0; z < S; z++) cnt[z] = 0;
    /* For every neighbour j (the centre itself included: r = 0 gives R_lm = 0
     * for l > 0, so it only feeds l = 0, spec): the radial functions
     * h_ln(r_ij) [nl][np4] (at hptr[slot]), the solid harmonics [nlm] (at
     * rptr[slot]) and their parity rsign[slot] (-1.0: they are R_lm(r_ji) =
     * (-1)^l R_lm(r_ij), see soap_block), in slots grouped by species,
     * ascending neighbour index within each group. */
    for (size_t t = t0; t < t1; t++) cnt[s->sp[s->nidx[t]]]++;
    if (s->reuse) {
        /* the pairs stored for i by earlier centres: the place of each in
         * i's list (a pair not found there cannot happen, as the lists are
         * symmetric; it would only be computed again here) */
        for (size_t t = t0; t < t1; t++) {
            s->mark[s->nidx[t]] = (uint32_t)(t - t0);
            s->slotof[t - t0] = UINT32_MAX;
        }
        for (uint32_t st = s->head[i]; st != UINT32_MAX; st = s->snext[st]) {
            const uint32_t a = s->ssrc[st], q = s->mark[a];
            if (q < t1 - t0 && s->nidx[t0 + q] == (int)a) s->slotof[q] = st;
        }
    }
    for (int z = 0, o = 0; z < S; z++) {
        off[z] = (size_t)o;
        fill[z] = 0;
        o += (int)cnt[z];
        c->present[z] = cnt[z] > 0;
    }
    const size_t pair = nlk + nlm; /* one pool entry: h then R */
    /* Pair reuse: h and R of a pair (i, j) are computed at whichever of its
     * two centres comes first in the processing order (s->rank), straight
     * into a free pool slot, and read there by pointer at the other, which
     * frees the slot when it is done (soap_centre_body). With no free
     * slot the pair is kept in fbuf and not put on j's chain: the other
     * centre computes it again. */
    const int *rank = s->rank, ri = rank[i];
    size_t nfresh = 0;
    s->nrelease = 0;
    for (size_t t = t0; t < t1; t++) {
        int j = s->nidx[t], z = s->sp[j];
        size_t slot = off[z] + fill[z]++;
        if (j == i) { /* the centre itself: h and R of r = 0, computed once */
            s->hptr[slot] = s->self;
            s->rptr[slot] = s->self + nlk;
            s->rsign[slot] = 1.0;
            continue;
        }
        if (s->reuse && rank[j] < ri) {
            /* computed at centre j (earlier in the order): h(r_ji) = h(r_ij) and R_lm(r_ji) =
             * (-1)^l R_lm(r_ij), both exactly (r_ji = -r_ij exactly, and the
             * polynomial's terms change sign together), so the result is the
             * same bits as computing it here */
            uint32_t st = s->slotof[t - t0];
            if (st != UINT32_MAX) {
                const double *src = s->ring + (size_t)st * pair;
                s->hptr[slot] = src;
                s->rptr[slot] = src + nlk;
                s->rsign[slot] = -1.0;
                s->release[s->nrelease++] = st;
                /* the entry may not be in cache: ask for it now (a hint, no
                 * effect on any value), the fresh pairs below hide the wait */
                for (size_t b = 0; b < pair; b += 8) KQ_PREFETCH(src + b);
                continue;
            }
        }
        double *h = s->fbuf + slot * nlk, *r = s->rbuf + slot * nlm;
        if (s->reuse && rank[j] > ri) {
            if (s->nfree) { /* stored for j: put on j's chain */
                uint32_t st = s->freel[--s->nfree];
                h = s->ring + (size_t)st * pair;
                r = h + nlk;
                s->ssrc[st] = (uint32_t)i;
                s->snext[st] = s->head[j];
                s->head[j] = st;
            }
        }
        s->hptr[slot] = h;
        s->rptr[slot] = r;
        s->rsign[slot] = 1.0;
        s->fresh[nfresh] = slot;
        s->fresh_t[nfresh++] = t;
    }
    c->nfresh = nfresh;
}

KQ_INLINE void soap_centre_fresh(kq_soap *s, int i, const double *pos, size_t nfresh,
                                 const int wide) {
    const int nl = s->nl, nlm = s->nlm, nmax = s->nmax, np4 = s->np4;
    const size_t nlk = (size_t)nl * (size_t)np4;
    /* The fresh pairs, four at a time: R_lm into rptr[slot], exp(-gamma_lk
     * r^2) into ebuf [4][nlk], then h_ln(r) = sum_k B^(l)_nk exp(-gamma_lk
     * r^2), k ascending from 0.0, into hptr[slot]. Unused lanes of the last
     * group compute r = 0 and are dropped. */
    for (size_t g = 0; g < nfresh; g += 4) {
        const int nr = nfresh - g < 4 ? (int)(nfresh - g) : 4;
        double dx[4], dy[4], dz[4];
        double *fr[4], *rp[4];
        for (int u = 0; u < 4; u++) {
            int j = u < nr ? s->nidx[s->fresh_t[g + u]] : i;
            dx[u] = pos[3 * j] - pos[3 * i];
            dy[u] = pos[3 * j + 1] - pos[3 * i + 1];
            dz[u] = pos[3 * j + 2] - pos[3 * i + 2];
            fr[u] = u < nr ? (double *)s->hptr[s->fresh[g + u]] : NULL;
            rp[u] = u < nr ? (double *)s->rptr[s->fresh[g + u]] : s->rpad + u * (size_t)nlm;
        }
        soap_solid_harmonics4(s, dx, dy, dz, rp);
        for (int u = 0; u < nr; u++) {
            double *f_e = s->ebuf + (size_t)u * nlk;
            double r2 = dx[u] * dx[u] + dy[u] * dy[u] + dz[u] * dz[u];
            if (s->ngmin * r2 >= -700.0) {
#if KQ_SOAP_AVX2
                if (wide == 2) soap_exp_near_v8((int)nlk, s->ngam, r2, s->exp2tab, f_e);
                else
#endif
                    soap_exp_near((int)nlk, s->ngam, r2, s->exp2tab, f_e);
            } else
                soap_exp_far((int)nlk, s->ngam, r2, s->exp2tab, f_e);
        }
        const double *e = s->ebuf; /* [nr][nlk] exponentials */
#if KQ_SOAP_AVX2
        if (wide && np4 % 8 == 0) {
            /* the wide copies: 8 columns at a time, straight into place */
            for (int l = 0; l < nl; l++) {
                const double *bt = s->bt + (size_t)l * nmax * np4;
                const size_t lo = (size_t)l * np4;
                for (int n = 0; n < np4; n += 8) {
                    const soap_src bn = soap_dense(bt + n, (size_t)np4);
                    if (nr == 4)
                        soap_block_v8(4, nmax, soap_dense(e + lo, 1), nlk, bn, NULL, NULL,
                                      lo + (size_t)n, fr, 1.0, wide, 0);
                    else
                        for (int u = 0; u < nr; u++)
                            soap_block_v8(1, nmax, soap_dense(e + u * nlk + lo, 1), 0, bn, NULL,
                                          NULL, lo + (size_t)n, fr + u, 1.0, wide, 0);
                }
            }
            continue;
        }
#endif
        double *hb = s->ebuf + 4 * nlk; /* [4][nlk] h of four lanes, then copied */
        for (int l = 0; l < nl; l++) {
            const double *bt = s->bt + (size_t)l * nmax * np4;
            const size_t lo = (size_t)l * np4;
            /* h of lane u, columns n..n+3 (n..n+7 in the wide copy): rows u of
             * e (stride nlk), k = t */
            for (int n = 0; n < np4; n += 4) {
                const soap_src bn = soap_dense(bt + n, (size_t)np4);
                if (nr == 4 && wide && n + 8 <= np4) {
                    soap_block(4, 8, nmax, soap_dense(e + lo, 1), nlk, bn, NULL, hb + lo + n,
                               nlk, 1.0);
                    n += 4;
                } else if (nr == 4)
                    soap_block(4, 4, nmax, soap_dense(e + lo, 1), nlk, bn, NULL, hb + lo + n,
                               nlk, 1.0);
                else
                    for (int u = 0; u < nr; u++)
                        soap_block(1, 4, nmax, soap_dense(e + u * nlk + lo, 1), 0, bn, NULL,
                                   fr[u] + lo + n, 0, 1.0);
            }
        }
        if (nr == 4)
            for (int u = 0; u < 4; u++) memcpy(fr[u], hb + u * nlk, nlk * sizeof(double));
    }
}

/* c^Z_nlm of one species and one l: c [nlm][np4] (n fastest), rows m of the
 * solid harmonics (rz[t] + l*l + m) times columns n of h (hz[t] + l*np4 + n)
 * over the nt neighbours t, in blocks of nu (4 or 8, a constant) columns and
 * 4, then 5, 3 or 1 rows. */
KQ_INLINE void soap_coef_l(const int nu, int nt, const double *const *rz,
                           const double *const *hz, const double *sg, int l, int np4,
                           double *c, const int wide) {
    const size_t nrow = 2 * (size_t)l + 1, xo = (size_t)l * l;
    /* nu 8 (wide copies only): soap_block_v8 with the copy's vector width */
#if KQ_SOAP_AVX2
#define KQ_COEF_BLOCK(nr)                                                                    \
    do {                                                                                     \
        if (nu == 8)                                                                         \
            soap_block_v8(nr, nt, soap_ptrs(rz, xo + r), 1, h, sg, o + r * np4, (size_t)np4, \
                          NULL, 1.0, wide, 0);                                               \
        else                                                                                 \
            soap_block(nr, nu, nt, soap_ptrs(rz, xo + r), 1, h, sg, o + r * np4,             \
                       (size_t)np4, 1.0);                                                    \
    } while (0)
#else
#define KQ_COEF_BLOCK(nr)                                                                    \
    soap_block(nr, nu, nt, soap_ptrs(rz, xo + r), 1, h, sg, o + r * np4, (size_t)np4, 1.0)
#endif
    (void)wide;
    for (int n = 0; n < np4; n += nu) {
        const soap_src h = soap_ptrs(hz, (size_t)l * np4 + (size_t)n);
        double *o = c + (size_t)l * l * np4 + n;
        /* rows 4 at a time while more than 5 are left, then the odd rest
         * (1, 3 or 5 rows: 2l + 1 is odd) in one block, so that no block but
         * l = 0's has fewer than 3 rows (few independent sums in flight
         * leave the adder waiting on its own latency) */
        size_t r = 0;
        for (; nrow - r > 5; r += 4)
            KQ_COEF_BLOCK(4);
        if (nrow - r == 5)
            KQ_COEF_BLOCK(5);
        else if (nrow - r == 3)
            KQ_COEF_BLOCK(3);
        else
            KQ_COEF_BLOCK(1);
    }
#undef KQ_COEF_BLOCK
}

KQ_INLINE void soap_centre_coef(kq_soap *s, const soap_centre *cs, const int wide) {
    const int nl = s->nl, np4 = s->np4, S = s->p.nspecies;
    const size_t sblk = (size_t)s->nlm * (size_t)np4;
    const int *present = cs->present;
    const size_t *cnt = cs->cnt, *off = cs->off;
    /* c^Z_nlm = sum_j R_lm(r_ij) h_ln(r_ij), j of species Z ascending from
     * 0.0; for odd l times the parity signs (even l: (-1)^l = 1) */
    for (int z = 0; z < S; z++) {
        if (!present[z]) continue;
        const double *const *rz = s->rptr + off[z], *const *hz = s->hptr + off[z];
        const int nt = (int)cnt[z];
        double *c = s->coef + (size_t)z * sblk;
        for (int l = 0; l < nl; l++) {
            /* even l: no signs (sg NULL: g = 1, and 1.0 y = y exactly) */
            const double *sg = s->rsign + off[z];
            if (wide && np4 % 8 == 0) {
                if (l % 2) soap_coef_l(8, nt, rz, hz, sg, l, np4, c, wide);
                else soap_coef_l(8, nt, rz, hz, NULL, l, np4, c, wide);
            } else {
                if (l % 2) soap_coef_l(4, nt, rz, hz, sg, l, np4, c, wide);
                else soap_coef_l(4, nt, rz, hz, NULL, l, np4, c, wide);
            }
        }
    }
}

#if KQ_SOAP_AVX2
/* n >= 8 zeros at p, the whole 64-byte lines among them by streaming
 * (non-temporal) stores: straight to memory, without the read of each line
 * that a plain store of an out-of-cache line costs; the partial lines at
 * both ends by memset. The caller ends with _mm_sfence (soap_centres_avx2
 * and _avx512) so that the stores are ordered before anything after the
 * call. Zeros either way: no value changes. */
__attribute__((target("avx2"))) static void soap_stream_zero(double *p, size_t n) {
    size_t i = (size_t)((64 - ((uintptr_t)p & 63)) & 63) / sizeof(double);
    memset(p, 0, i * sizeof(double));
    for (; i + 8 <= n; i += 8) {
        _mm256_stream_pd(p + i, _mm256_setzero_pd());
        _mm256_stream_pd(p + i + 4, _mm256_setzero_pd());
    }
    memset(p + i, 0, (n - i) * sizeof(double));
}
#endif

/* n zeros at p: streaming stores when the output is out of cache (s->stream,
 * wide copies only: they need AVX2), else memset */
KQ_INLINE void soap_zero_run(const kq_soap *s, double *p, size_t n, const int wide) {
#if KQ_SOAP_AVX2
    /* (a double * off its 8-byte grid never reaches a 64-byte boundary:
     * memset then) */
    if (wide && s->stream && n >= 16 && (uintptr_t)p % sizeof(double) == 0) {
        soap_stream_zero(p, n);
        return;
    }
#endif
    (void)wide;
    (void)s;
    memset(p, 0, n * sizeof(double));
}

KQ_INLINE void soap_centre_power(kq_soap *s, const int *present, double *out, const int wide) {
    const int nl = s->nl, nmax = s->nmax, np4 = s->np4, S = s->p.nspecies;
    const size_t sblk = (size_t)s->nlm * (size_t)np4;
    /* p^(Z1 Z2)_(n n' l) = pi sqrt(8/(2l+1)) sum_m c^Z1_nlm c^Z2_n'lm, m ascending
     * from 0; blocks of species that have no atoms here are exact zeros,
     * written by one soap_zero_run per run of adjacent zero blocks [zero, o)
     * (large runs are faster per byte) */
    double *zero = out;
    for (int z1 = 0; z1 < S; z1++) {
        const double *c1 = s->coef + (size_t)z1 * sblk;
        for (int z2 = z1; z2 < S; z2++) {
            const double *c2 = s->coef + (size_t)z2 * sblk;
            double *o = out + s->block_off[z1][z2];
            if (!present[z1] || !present[z2]) continue;
            if (zero < o) soap_zero_run(s, zero, (size_t)(o - zero), wide);
            double *ps = s->pstmp; /* [nmax][np4] sums of one l */
            for (int l = 0; l < nl; l++) {
                const double pref = s->pref[l];
                const double *a = c1 + (size_t)l * l * np4, *b = c2 + (size_t)l * l * np4;
                if (z1 != z2 && nmax % 8 == 0 && wide == 2) {
                    /* full n x n' block, 8 x 8 at a time (AVX-512 copy) */
                    for (int q = 0; q < nmax; q += 8)
                        for (int n = 0; n < nmax; n += 8)
                            soap_block_v8(8, 2 * l + 1, soap_dense(a + n, (size_t)np4), 1,
                                          soap_dense(b + q, (size_t)np4), NULL, o + (size_t)n * nmax + q,
                                          (size_t)nmax, NULL, pref, 2, 0);
                    o += (size_t)nmax * nmax;
                    continue;
                }
                if (z1 != z2 && nmax % 4 == 0) {
                    /* full n x n' block: the scaled sums go straight to out */
                    for (int q = 0; q < nmax; q += 4) {
                        int n = 0;
                        const soap_src bq = soap_dense(b + q, (size_t)np4);
                        if (wide)
                            for (; n + 8 <= nmax; n += 8)
                                soap_block(8, 4, 2 * l + 1, soap_dense(a + n, (size_t)np4), 1, bq,
                                           NULL, o + (size_t)n * nmax + q, (size_t)nmax, pref);
                        for (; n < nmax; n += 4)
                            soap_block(4, 4, 2 * l + 1, soap_dense(a + n, (size_t)np4), 1, bq,
                                       NULL, o + (size_t)n * nmax + q, (size_t)nmax, pref);
                    }
                    o += (size_t)nmax * nmax;
                    continue;
                }
#if KQ_SOAP_AVX2
                if (z1 == z2 && nmax == 8 && wide) {
                    /* same species, n_max 8 (wide copies): row n's part
                     * n' >= n (8 - n values from o + P_n, P_n = 8n -
                     * n(n-1)/2) stored straight from the sums as whole
                     * 8-value rows at o + P_n - n, rows from the last up
                     * (soap_block_v8 with tri 1): each store's
                     * first n values fall on rows above, which are written
                     * after it, so every value ends up from its own row,
                     * and no store leaves the block [o, o + 36). (Through a
                     * scratch block and memcpy it was 16 % slower on 25
                     * NMA in the AVX2 copy, 12 % in the AVX-512 one.) */
                    soap_block_v8(8, 2 * l + 1, soap_dense(a, (size_t)np4), 1,
                                  soap_dense(b, (size_t)np4), NULL, o, 0, NULL, pref, wide, 1);
                    o += 36;
                    continue;
                }
#endif
                if (z1 == z2 && nmax % 8 == 0 && wide == 2) {
                    /* same species, 8 x 8 blocks (AVX-512 copy): only rows
                     * n <= q + 7 are needed */
                    for (int q = 0; q < nmax; q += 8)
                        for (int n = 0; n < q + 8; n += 8)
                            soap_block_v8(8, 2 * l + 1, soap_dense(a + n, (size_t)np4), 1,
                                          soap_dense(b + q, (size_t)np4), NULL, ps + (size_t)n * np4 + q,
                                          (size_t)np4, NULL, 1.0, 2, 0);
                } else {
                    for (int q = 0; q < np4; q += 4) {
                        /* same species: only rows n <= q + 3 are needed */
                        int nrows = z1 == z2 ? (q + 4 < nmax ? q + 4 : nmax) : nmax;
                        soap_rows4(2 * l + 1, nrows, a, 1, (size_t)np4, b + q, (size_t)np4,
                                   ps + q, (size_t)np4, wide);
                    }
                }
                for (int n = 0; n < nmax; n++) {
                    int q0 = z1 == z2 ? n : 0;
                    soap_scale_copy(nmax - q0, pref, ps + (size_t)n * np4 + q0, o);
                    o += nmax - q0;
                }
            }
            zero = o; /* the end of this block */
        }
    }
    if (zero < out + s->len) soap_zero_run(s, zero, (size_t)(out + s->len - zero), wide);
}

/* The output row of the next centre (order[k + 1]), asked for now, for
 * writing: the rows of a large frame are out of cache, centres go in
 * spatial order (not row order, so the hardware prefetcher cannot guess the
 * next row), and each line would otherwise wait for memory once. Only the
 * blocks that may be nonzero (s->ahead_lo/hi); the zero blocks of species
 * absent from the frame go to memory by streaming stores, without being
 * read (soap_zero_run). All lines at once, before the centre's own work, so
 * that they have its whole time to arrive (the hints spread over its four
 * steps, or two rows ahead, measured 5-10 % slower). Hints only: no value
 * changes. */
KQ_INLINE void soap_row_ahead(const kq_soap *s, int natoms, int k, const double *out) {
    if (k + 1 >= natoms || !s->stream) return;
    const double *next = out + (size_t)s->order[k + 1] * s->len;
    for (int q = 0; q < s->nahead; q++)
        for (size_t b = s->ahead_lo[q] & ~(size_t)7; b < s->ahead_hi[q]; b += 8)
            KQ_PREFETCH_W(next + b);
}

KQ_INLINE void soap_centre_body(kq_soap *s, int i, const double *pos, double *out,
                                const int wide) {
    soap_centre c;
    soap_centre_slots(s, i, &c);
    soap_centre_fresh(s, i, pos, c.nfresh, wide);
    soap_centre_coef(s, &c, wide);
    /* the pool slots read here are not needed any more */
    for (size_t k = 0; k < s->nrelease; k++) s->freel[s->nfree++] = s->release[k];
    soap_centre_power(s, c.present, out, wide);
}

/* Every centre, portable copy */
static void soap_centres_portable(kq_soap *s, int natoms, const double *pos, double *out) {
    for (int k = 0; k < natoms; k++) {
        const int i = s->order[k];
        soap_row_ahead(s, natoms, k, out);
        soap_centre_body(s, i, pos, out + (size_t)i * s->len, 0);
    }
}

#if KQ_SOAP_AVX2
/* Every centre, AVX2 copy (see KQ_INLINE at the top: same code, same bits) */
__attribute__((target("avx2"))) static void soap_centres_avx2(kq_soap *s, int natoms,
                                                              const double *pos, double *out) {
    for (int k = 0; k < natoms; k++) {
        const int i = s->order[k];
        soap_row_ahead(s, natoms, k, out);
        soap_centre_body(s, i, pos, out + (size_t)i * s->len, 1);
    }
    if (s->stream) _mm_sfence(); /* the streaming stores of soap_zero_run */
}
/* Every centre, AVX-512 copy (the same code again, same bits) */
KQ_TARGET_AVX512 static void soap_centres_avx512(kq_soap *s, int natoms, const double *pos,
                                                 double *out) {
    for (int k = 0; k < natoms; k++) {
        const int i = s->order[k];
        soap_row_ahead(s, natoms, k, out);
        soap_centre_body(s, i, pos, out + (size_t)i * s->len, 2);
    }
    if (s->stream) _mm_sfence(); /* the streaming stores of soap_zero_run */
}
#endif

/* s->stream, and the parts of a row soap_row_ahead fetches (the blocks of
 * species pairs present in the frame, adjacent ones merged). */
static void soap_stream_setup(kq_soap *s, int natoms) {
    const int S = s->p.nspecies;
    int inframe[KQ_MAX_SPECIES] = {0};
    s->stream = (size_t)natoms * s->len > KQ_SOAP_AHEAD_BYTES / sizeof(double);
    s->nahead = 0;
    for (int i = 0; i < natoms; i++) inframe[s->sp[i]] = 1;
    const size_t nmax = (size_t)s->nmax, nl = (size_t)s->nl;
    for (int a = 0; a < S; a++)
        for (int b = a; b < S; b++) {
            if (!inframe[a] || !inframe[b]) continue;
            size_t lo = s->block_off[a][b], hi = lo + (a == b ? nmax * (nmax + 1) / 2 : nmax * nmax) * nl;
            if (s->nahead && s->ahead_hi[s->nahead - 1] == lo)
                s->ahead_hi[s->nahead - 1] = hi;
            else {
                s->ahead_lo[s->nahead] = lo;
                s->ahead_hi[s->nahead++] = hi;
            }
        }
}

/* Validates the input and builds the neighbour lists (s->sp, s->nstart,
 * s->nidx). natoms >= 1. */
static int soap_prepare(kq_soap *s, int natoms, const int *z, const double *pos) {
    int rc;
    if ((rc = kq_reserve((void **)&s->sp, &s->sp_cap, (size_t)natoms, sizeof(int))) ||
        (rc = kq_reserve((void **)&s->nstart, &s->nstart_cap, (size_t)natoms + 1,
                         sizeof(size_t))))
        return rc;
    for (int i = 0; i < natoms; i++) {
        if (!isfinite(pos[3 * i]) || !isfinite(pos[3 * i + 1]) || !isfinite(pos[3 * i + 2]))
            return KQ_EINVAL;
        int t = 0;
        while (t < s->p.nspecies && s->p.species[t] != z[i]) t++;
        if (t == s->p.nspecies) return KQ_ESPECIES;
        s->sp[i] = t;
    }
    int cells = s->search == KQ_SEARCH_CELLS || (s->search == KQ_SEARCH_AUTO && natoms > 64);
    return cells ? soap_neighbours_cells(s, natoms, pos) : soap_neighbours_brute(s, natoms, pos);
}

int kq_soap_check(kq_soap *s, int natoms, const int *z, const double *pos) {
    if (!s || natoms < 0) return KQ_EINVAL;
    if (natoms == 0) return KQ_OK;
    if (!z || !pos) return KQ_EINVAL;
    return soap_prepare(s, natoms, z, pos);
}

int kq_soap_compute(kq_soap *s, int natoms, const int *z, const double *pos, double *out) {
    if (!s || natoms < 0) return KQ_EINVAL;
    if (natoms == 0) return KQ_OK;
    if (!z || !pos || !out) return KQ_EINVAL;
    size_t total;
    if (!kq_mul_ok((size_t)natoms, s->len, &total) || !kq_mul_ok(total, sizeof(double), &total))
        return KQ_ENOMEM;
    int rc = soap_prepare(s, natoms, z, pos);
    if (rc) return rc;
    size_t maxnb = 0, nf, nr;
    for (int i = 0; i < natoms; i++)
        if (s->nstart[i + 1] - s->nstart[i] > maxnb) maxnb = s->nstart[i + 1] - s->nstart[i];
    if (!kq_mul_ok(maxnb, (size_t)s->nl * (size_t)s->np4, &nf) ||
        !kq_mul_ok(maxnb, (size_t)s->nlm, &nr))
        return KQ_ENOMEM;
    if ((rc = kq_reserve((void **)&s->fbuf, &s->fbuf_cap, nf, sizeof(double))) ||
        (rc = kq_reserve((void **)&s->rbuf, &s->rbuf_cap, nr, sizeof(double))) ||
        (rc = kq_reserve((void **)&s->hptr, &s->hptr_cap, maxnb, sizeof(double *))) ||
        (rc = kq_reserve((void **)&s->rptr, &s->rptr_cap, maxnb, sizeof(double *))) ||
        (rc = kq_reserve((void **)&s->rsign, &s->rsign_cap, maxnb, sizeof(double))) ||
        (rc = kq_reserve((void **)&s->release, &s->release_cap, maxnb, sizeof(uint32_t))) ||
        (rc = kq_reserve((void **)&s->slotof, &s->slotof_cap, maxnb, sizeof(uint32_t))) ||
        (rc = kq_reserve((void **)&s->ebuf, &s->ebuf_cap, 8 * (size_t)s->nl * (size_t)s->np4,
                         sizeof(double))))
        return rc;
    if (maxnb > s->fresh_cap) {
        size_t cap = 0;
        if ((rc = kq_reserve((void **)&s->fresh, &cap, maxnb, sizeof(size_t)))) return rc;
        cap = 0;
        if ((rc = kq_reserve((void **)&s->fresh_t, &cap, maxnb, sizeof(size_t)))) return rc;
        s->fresh_cap = maxnb;
    }
    if ((rc = soap_reuse_setup(s, natoms))) return rc;
    soap_stream_setup(s, natoms);
#if KQ_SOAP_AVX2
    if (s->simd == KQ_SIMD_AVX512) {
        soap_centres_avx512(s, natoms, pos, out);
        return KQ_OK;
    }
    if (s->simd == KQ_SIMD_AVX2) {
        soap_centres_avx2(s, natoms, pos, out);
        return KQ_OK;
    }
#endif
    soap_centres_portable(s, natoms, pos, out);
    return KQ_OK;
}

/* ------------------------------------------------------------------------ */
/* Kernels                                                                   */
/* ------------------------------------------------------------------------ */

