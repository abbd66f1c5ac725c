/* kqeq.c - SOAP descriptors (DScribe's GTO definition) and SOAP kernels.
 *
 * Every formula below is from ../shared/specs/soap.md ("spec") unless a
 * comment names another source. C11, libc and libm only (no POSIX, no M_PI).
 *
 * How the SOAP vector of one centre i is computed (spec, "Expansion
 * coefficients" and "Power spectrum"):
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
 * Speed: cell lists (cost linear in N, each pair tested once); h and R of a
 * pair (i, j), i < j, are computed once at centre i, straight into a ring
 * buffer, and read there by pointer at centre j (exactly: see
 * soap_centre_body); the fresh pairs of a centre four at a time (solid
 * harmonics vectorised across the four); our own vectorisable exp(); all
 * products in blocks of 4 (or 8) independent sums (soap_dot4 and friends)
 * that gcc/clang vectorise at -O2; an AVX2 copy of all that, picked at run
 * time (below).
 *
 * Reproducibility: every sum runs in a fixed written order (neighbours in
 * ascending atom index, the centre itself included at its own index; k and m
 * ascending, each sum starting from 0.0). Vectorised loops run over
 * independent elements only, so -O0, -O2, gcc and clang give the same bits,
 * and so do the brute-force and cell-list searches, with or without pair
 * reuse.
 */
#include "kqeq.h"

#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"

#define KQ_PI 3.14159265358979323846

/* The per-centre work (soap_centre_body and everything it calls) is compiled
 * twice: portable (baseline SSE2 on x86-64) and, with gcc/clang on x86-64,
 * once more inside a function with __attribute__((target("avx2"))), chosen
 * at run time by __builtin_cpu_supports("avx2") (kq_soap_set_simd). The AVX2
 * copy is the same C code: the compiler makes the vectorised loops over
 * independent elements 4 wide instead of 2, and the copy picks kernels with
 * 8 instead of 4 independent sums where there are 8 (soap_centre_body's
 * `wide`), which add the same terms in the same order. Neither copy may
 * contract a*b + c into an FMA (-ffp-contract=off, and "avx2" does not
 * enable FMA), and every element is still one IEEE multiply or add of the
 * same operands in the same order, so both copies give the same bits
 * (tests/test_soap.c compares them). KQ_INLINE forces the helpers into each
 * copy: a helper that stayed a separate function would be compiled for SSE2
 * only. */
#if defined(__GNUC__) && defined(__x86_64__)
#define KQ_SOAP_AVX2 1
#define KQ_INLINE static inline __attribute__((always_inline))
#else
#define KQ_SOAP_AVX2 0
#define KQ_INLINE static inline
#endif
/* A cache prefetch hint where the compiler has one (it changes no value). */
#if defined(__GNUC__)
#define KQ_PREFETCH(p) __builtin_prefetch(p)
#else
#define KQ_PREFETCH(p) ((void)(p))
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

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

/* a * b elements of size sz without overflowing size_t; 0 on overflow. */
static int kq_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

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

/* 1 if all n values are finite (neither NaN nor Inf) */
static int kq_all_finite(size_t n, const double *v) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* y[i] = exp(ng[i] r2) for i < n (n a multiple of 4, ng[i] <= 0, r2 >= 0):
 * the radial factors exp(-gamma_lk r^2). Table method: x = (64 k + j) ln2/64
 * + r with |r| <= ln2/128 (Cody-Waite split of ln2/64), so
 * exp(x) = 2^k * 2^(j/64) * e^r with 2^(j/64) from the table exp2tab [64]
 * (made by kq_soap_new) and e^r - 1 from its Taylor series to degree 5
 * (truncation r^6/720 < 4e-17 relative). About 1 ulp (tests/test_soap.c checks an
 * n_max = 1 closed form built on libm's exp to 1e-14 over 0 >= x >= -723). The caller guarantees x >= -700 (soap_exp_far handles the rest),
 * so there is no branch and the blocks of 4 vectorise; every element is
 * computed on its own, so vectorising changes no bits. */
KQ_INLINE void soap_exp_near(int n, const double *restrict ng, double r2,
                             const double *restrict exp2tab, double *restrict y) {
    const double inv = 92.332482616893656877;             /* 64 / ln 2 */
    const double c_hi = 6.93147180369123816490e-01 / 64.0; /* ln2_hi / 64: exact */
    const double c_lo = 1.90821492927058770002e-10 / 64.0;
    const double shifter = 6755399441055744.0;            /* 1.5 * 2^52: round to nearest */
    for (int i = 0; i < n; i += 4) {
        double t[4], p[4], tab[4], sc[4];
        uint64_t b[4];
        for (int u = 0; u < 4; u++) {
            double x = ng[i + u] * r2;
            double tt = x * inv + shifter; /* low bits: K = round(64 x / ln2) */
            double kf = tt - shifter;
            double r = (x - kf * c_hi) - kf * c_lo;
            double q = 1.0 / 120.0;
            q = 1.0 / 24.0 + r * q;
            q = 1.0 / 6.0 + r * q;
            q = 0.5 + r * q;
            q = 1.0 + r * q;
            p[u] = r * q; /* e^r - 1 */
            t[u] = tt;
        }
        /* t's bit pattern is 0x4338000000000000 + K (two's complement K):
         * j = K mod 64 indexes the table, floor(K / 64) + 1023 is the biased
         * exponent of 2^k */
        memcpy(b, t, sizeof b);
        for (int u = 0; u < 4; u++) tab[u] = exp2tab[b[u] & 63u];
        for (int u = 0; u < 4; u++) b[u] = ((b[u] >> 6) + 1023u) << 52;
        memcpy(sc, b, sizeof sc);
        for (int u = 0; u < 4; u++) y[i + u] = (tab[u] + tab[u] * p[u]) * sc[u];
    }
}

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
    /* per-centre scratch, sized at creation */
    double *coef;         /* [S][nlm][np4] c^Z_nlm (n fastest) */
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
    double *fbuf; size_t fbuf_cap;     /* [neighbours][nl][np4] h_ln(r) of one centre */
    double *rbuf; size_t rbuf_cap;     /* [neighbours][nlm] solid harmonics of one centre */
    const double **hptr; size_t hptr_cap; /* [neighbours] where each h [nlk] is (fbuf or ring) */
    const double **rptr; size_t rptr_cap; /* [neighbours] where each R [nlm] is (rbuf or ring) */
    double *rsign; size_t rsign_cap;   /* [neighbours] +1.0, or -1.0 if R is R(r_ji) */
    double *ones; size_t ones_cap;     /* [neighbours] all +1.0 */
    size_t *fresh, *fresh_t; size_t fresh_cap; /* [neighbours] computed (not reused)
                                                 * slots, and their list entries */
    double *ebuf; size_t ebuf_cap;     /* [4][nl][np4] exp(-gamma_lk r^2) of four of those */
    /* pair reuse (see soap_centre_body): h and R of a pair (i, j), i < j, are
     * computed at centre i into a ring of ring_slots (a power of two)
     * entries [nl*np4 + nlm] and read there at centre j */
    int reuse;
    size_t *rev; size_t rev_cap;       /* [entries] for j < i: entry of i in j's list */
    size_t *stamp; size_t stamp_cap;   /* [entries] for j > i: ring counter when stored */
    size_t *cursor; size_t cursor_cap; /* [natoms] */
    double *ring; size_t ring_cap;
    size_t ring_slots, counter;
};

void kq_soap_free(kq_soap *s) {
    if (!s) return;
    free(s->alpha); free(s->beta); free(s->ngam); free(s->bt); free(s->ynorm);
    free(s->qa); free(s->qb); free(s->dfact);
    free(s->coef); free(s->rpad); free(s->pstmp);
    free(s->fbuf); free(s->rbuf); free(s->ebuf);
    free(s->hptr); free(s->rptr); free(s->rsign); free(s->ones);
    free(s->fresh); free(s->fresh_t);
    free(s->rev); free(s->stamp); free(s->cursor); free(s->ring);
    free(s->sp); free(s->nstart); free(s->nidx); free(s->nidx2); free(s->upstart);
    free(s->cell_of);
    free(s->cell_atoms); free(s->cell_start); free(s->cand);
    free(s);
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

/* Radial basis of one l (spec "Radial basis"): alpha [nmax], beta [nmax][nmax]. */
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
    /* Gamma(l + 3/2) = sqrt(pi) prod_{t=0}^{l} (t + 1/2) */
    double g = sqrt(KQ_PI);
    for (int t = 0; t <= l; t++) g *= (double)t + 0.5;
    for (int k = 0; k < nmax; k++)
        for (int q = 0; q < nmax; q++)
            s_work[k * nmax + q] = 0.5 * g * pow(alpha[k] + alpha[q], -((double)l + 1.5));
    int rc = la_sym_inv_sqrt(nmax, s_work, nmax, beta, nmax);
    if (rc == LA_NOMEM) return KQ_ENOMEM;
    if (rc != LA_OK) return KQ_ELINALG;
    return KQ_OK;
}

/* KQ_SIMD_AVX2 if this build has the AVX2 copy and the CPU runs it */
static int soap_best_simd(void) {
#if KQ_SOAP_AVX2
    if (__builtin_cpu_supports("avx2")) return KQ_SIMD_AVX2;
#endif
    return KQ_SIMD_PORTABLE;
}

int kq_soap_new(const kq_soap_params *p, kq_soap **out) {
    if (!out) return KQ_EINVAL;
    *out = NULL;
    if (!p) return KQ_EINVAL;
    if (!isfinite(p->rcut) || !(p->rcut > 1.0)) return KQ_EINVAL;
    if (p->nmax < 1 || p->lmax < 0 || p->lmax > KQ_MAX_LMAX) return KQ_EINVAL;
    if (isnan(p->sigma) || isinf(p->sigma)) return KQ_EINVAL;
    /* A far smaller width overflows eta^l = (1/(2 sigma^2))^l in the
     * prefactors B below (NaN descriptors); the finiteness checks after the
     * tables catch whatever this bound lets through. */
    if (p->sigma > 0.0 && p->sigma < KQ_SOAP_MIN_SIGMA) return KQ_EINVAL;
    if (p->nspecies < 1 || p->nspecies > KQ_MAX_SPECIES) return KQ_EINVAL;
    kq_soap_params q = *p;
    for (int i = 0; i < q.nspecies; i++)
        if (q.species[i] < 1 || q.species[i] > 118) return KQ_EINVAL;
    /* sort ascending by Z (insertion sort), reject duplicates */
    for (int i = 1; i < q.nspecies; i++) {
        int v = q.species[i], j = i - 1;
        while (j >= 0 && q.species[j] > v) { q.species[j + 1] = q.species[j]; j--; }
        q.species[j + 1] = v;
    }
    for (int i = 1; i < q.nspecies; i++)
        if (q.species[i] == q.species[i - 1]) return KQ_EINVAL;
    for (int i = q.nspecies; i < KQ_MAX_SPECIES; i++) q.species[i] = 0;
    if (q.sigma <= 0.0) q.sigma = q.rcut / 8.0;
    double cut = q.rcut + q.sigma * sqrt(2.0 * log(1000.0));
    if (!isfinite(cut * cut)) return KQ_EINVAL;

    /* sizes: S nmax, (S nmax)(S nmax + 1)/2 (lmax + 1), nmax^2 (lmax + 1) */
    size_t S = (size_t)q.nspecies, nmax = (size_t)q.nmax, nl = (size_t)q.lmax + 1;
    size_t snm, len, tri, nn;
    if (!kq_mul_ok(S, nmax, &snm) || snm == SIZE_MAX || !kq_mul_ok(snm, snm + 1, &tri) ||
        !kq_mul_ok(tri / 2, nl, &len) || !kq_mul_ok(nmax, nmax, &nn) ||
        !kq_mul_ok(nn, nl, &nn) || !kq_mul_ok(nn, sizeof(double), &nn) ||
        nmax > (size_t)INT_MAX / (KQ_MAX_LMAX + 1) / 2)
        return KQ_ENOMEM;
    /* far beyond any usable basis (the GTO overlap is singular in double
     * precision long before): refuse instead of running Jacobi for hours */
    if (q.nmax > KQ_SOAP_MAX_NMAX) return KQ_EINVAL;

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
    int err = KQ_OK;
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
    double *swork = kq_alloc_doubles(nmax, nmax, 1, &err);
    if (err) { free(swork); kq_soap_free(s); return err; }

    for (int j = 0; j < 64; j++) s->exp2tab[j] = exp2((double)j / 64.0);
    const double eta = 1.0 / (2.0 * q.sigma * q.sigma);
    const double pi32 = KQ_PI * sqrt(KQ_PI);
    for (int l = 0; l < s->nl; l++) {
        double *al = s->alpha + (size_t)l * nmax, *be = s->beta + (size_t)l * nmax * nmax;
        err = soap_radial_basis(q.rcut, q.nmax, l, al, be, swork);
        if (err) { free(swork); kq_soap_free(s); return err; }
        for (size_t k = 0; k < nmax; k++) {
            double ae = al[k] + eta;
            s->ngam[(size_t)l * np4 + k] = -(al[k] * eta / ae);
            if (s->ngam[(size_t)l * np4 + k] < s->ngmin) s->ngmin = s->ngam[(size_t)l * np4 + k];
            double w = pi32 * pow(eta, (double)l) * pow(ae, -((double)l + 1.5));
            for (size_t n = 0; n < nmax; n++)
                s->bt[((size_t)l * nmax + k) * np4 + n] = be[n * nmax + k] * w;
        }
        s->pref[l] = KQ_PI * sqrt(8.0 / (2.0 * l + 1.0));
    }
    free(swork);
    /* Every table must be finite, or every descriptor would be NaN/Inf:
     * refuse the parameters instead (kqeq.h). */
    int finite = isfinite(eta) && isfinite(s->cut2);
    for (size_t k = 0; k < nl * nmax; k++)
        finite &= isfinite(s->alpha[k]) && isfinite(s->ngam[k / nmax * np4 + k % nmax]);
    for (size_t k = 0; k < nl * nmax * nmax; k++) finite &= isfinite(s->beta[k]);
    for (size_t k = 0; k < nl * nmax * np4; k++) finite &= isfinite(s->bt[k]);
    if (!finite) {
        kq_soap_free(s);
        return KQ_EINVAL;
    }

    /* Real solid harmonics R_lm = N_lm Q_l^|m|(z, r^2) {Re, Im}(x + i y)^|m|
     * with Q_l^m = r^(l-m) P_l^m(cos theta) / sin^m theta (associated Legendre
     * without the Condon-Shortley phase, which the power spectrum ignores):
     *   Q_m^m = (2m - 1)!!,  Q_{m+1}^m = (2m + 1) z Q_m^m,
     *   (l - m) Q_l^m = (2l - 1) z Q_{l-1}^m - (l + m - 1) r^2 Q_{l-2}^m,
     * N_lm = sqrt((2l + 1)/(4 pi) (l - m)!/(l + m)!), times sqrt(2) for m != 0
     * (orthonormal real harmonics; any such convention works, spec). */
    double df = 1.0;
    for (int m = 0; m < s->nl; m++) {
        s->dfact[m] = df;
        df *= 2.0 * m + 1.0;
    }
    for (int l = 0; l < s->nl; l++) {
        for (int m = 0; m <= l; m++) {
            if (l - m >= 2) {
                s->qa[l * s->nl + m] = (2.0 * l - 1.0) / (double)(l - m);
                s->qb[l * s->nl + m] = (double)(l + m - 1) / (double)(l - m);
            }
            double ratio = 1.0; /* (l + m)! / (l - m)! */
            for (int t = l - m + 1; t <= l + m; t++) ratio *= (double)t;
            double nrm = sqrt((2.0 * l + 1.0) / (4.0 * KQ_PI) / ratio);
            if (m == 0) {
                s->ynorm[l * l + l] = nrm;
            } else {
                s->ynorm[l * l + l + m] = sqrt(2.0) * nrm;
                s->ynorm[l * l + l - m] = sqrt(2.0) * nrm;
            }
        }
    }

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
    if (mode == KQ_SIMD_AVX2 && soap_best_simd() != KQ_SIMD_AVX2) return KQ_EINVAL;
    if (mode != KQ_SIMD_PORTABLE && mode != KQ_SIMD_AVX2) return KQ_EINVAL;
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

static int soap_push_nbr(kq_soap *s, size_t *count, int j) {
    if (*count == s->nidx_cap) {
        size_t ncap = s->nidx_cap ? 2 * s->nidx_cap : 1024;
        size_t bytes;
        if (ncap < s->nidx_cap || !kq_mul_ok(ncap, sizeof(int), &bytes)) return KQ_ENOMEM;
        int *nb = realloc(s->nidx, bytes);
        if (!nb) return KQ_ENOMEM;
        s->nidx = nb;
        s->nidx_cap = ncap;
    }
    s->nidx[(*count)++] = j;
    return KQ_OK;
}

/* O(N^2) reference search: all j in ascending order. */
static int soap_neighbours_brute(kq_soap *s, int natoms, const double *pos) {
    size_t count = 0;
    for (int i = 0; i < natoms; i++) {
        s->nstart[i] = count;
        for (int j = 0; j < natoms; j++) {
            int nb, rc = soap_test_pair(pos, i, j, s->cut2, &nb);
            if (rc) return rc;
            if (nb && (rc = soap_push_nbr(s, &count, j))) return rc;
        }
    }
    s->nstart[natoms] = count;
    return KQ_OK;
}

/* Cell lists: cells at least cut/2 wide, so every neighbour of an atom is in
 * its own cell or at most two cells away; the candidates of a centre are sorted so that each
 * list is in ascending index order, exactly as soap_neighbours_brute makes it.
 * Cost O(N) for bounded density. */
static int soap_neighbours_cells(kq_soap *s, int natoms, const double *pos) {
    double lo[3], hi[3];
    long nc[3];
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
    double width[3];
    for (int d = 0; d < 3; d++) width[d] = nc[d] > 1 ? (hi[d] - lo[d]) / (double)nc[d] : 1.0;

    int rc;
    if ((rc = kq_reserve((void **)&s->cell_of, &s->cell_of_cap, (size_t)natoms, sizeof(int))) ||
        (rc = kq_reserve((void **)&s->cell_atoms, &s->cell_atoms_cap, (size_t)natoms,
                         sizeof(int))) ||
        (rc = kq_reserve((void **)&s->cell_start, &s->cell_start_cap, ncells + 1,
                         sizeof(size_t))) ||
        (rc = kq_reserve((void **)&s->cand, &s->cand_cap, (size_t)natoms, sizeof(int))))
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

    /* Each pair is tested once, from its lower index: first the upper
     * halves (j > i, ascending) of all lists, up[] from upstart[i], built in
     * s->nidx; the test is symmetric (fl(a - b) = -fl(b - a), so the same
     * d^2 both ways), so the full lists are the same as testing both ways. */
    if ((rc = kq_reserve((void **)&s->upstart, &s->upstart_cap, (size_t)natoms + 1,
                         sizeof(size_t))) ||
        (rc = kq_reserve((void **)&s->cursor, &s->cursor_cap, (size_t)natoms, sizeof(size_t))))
        return rc;
    size_t count = 0;
    for (int i = 0; i < natoms; i++) {
        s->upstart[i] = count;
        long ci = s->cell_of[i];
        long c2 = ci % nc[2], c1 = (ci / nc[2]) % nc[1], c0 = ci / nc[2] / nc[1];
        size_t ncand = 0;
        for (long a = c0 - 2; a <= c0 + 2; a++) {
            if (a < 0 || a >= nc[0]) continue;
            for (long b = c1 - 2; b <= c1 + 2; b++) {
                if (b < 0 || b >= nc[1]) continue;
                for (long c = c2 - 2; c <= c2 + 2; c++) {
                    if (c < 0 || c >= nc[2]) continue;
                    size_t cell = (size_t)((a * nc[1] + b) * nc[2] + c);
                    for (size_t t = s->cell_start[cell]; t < s->cell_start[cell + 1]; t++) {
                        int j = s->cell_atoms[t], nb;
                        if (j <= i) continue;
                        if ((rc = soap_test_pair(pos, i, j, s->cut2, &nb))) return rc;
                        if (nb) s->cand[ncand++] = j;
                    }
                }
            }
        }
        /* insertion sort: ascending neighbour index */
        for (size_t t = 1; t < ncand; t++) {
            int v = s->cand[t];
            size_t u = t;
            while (u > 0 && s->cand[u - 1] > v) { s->cand[u] = s->cand[u - 1]; u--; }
            s->cand[u] = v;
        }
        for (size_t t = 0; t < ncand; t++)
            if ((rc = soap_push_nbr(s, &count, s->cand[t]))) return rc;
    }
    s->upstart[natoms] = count;
    /* full list of i: the j < i that have i in their upper half (ascending,
     * as i is visited in ascending order below), i itself, its upper half */
    size_t *low = s->cursor; /* [natoms] lower counts, then fill cursors */
    for (int i = 0; i < natoms; i++) low[i] = 0;
    for (size_t t = 0; t < count; t++) low[s->nidx[t]]++;
    size_t total;
    if (!kq_mul_ok(count, 2, &total) || total > SIZE_MAX - (size_t)natoms) return KQ_ENOMEM;
    total += (size_t)natoms;
    if ((rc = kq_reserve((void **)&s->nidx2, &s->nidx2_cap, total, sizeof(int)))) return rc;
    s->nstart[0] = 0;
    for (int i = 0; i < natoms; i++)
        s->nstart[i + 1] = s->nstart[i] + low[i] + 1 + (s->upstart[i + 1] - s->upstart[i]);
    for (int i = 0; i < natoms; i++) low[i] = s->nstart[i];
    for (int i = 0; i < natoms; i++) {
        size_t w = s->nstart[i + 1] - (s->upstart[i + 1] - s->upstart[i]) - 1;
        s->nidx2[w++] = i;
        for (size_t t = s->upstart[i]; t < s->upstart[i + 1]; t++) {
            int j = s->nidx[t];
            s->nidx2[w++] = j;
            s->nidx2[low[j]++] = i;
        }
    }
    int *tmp = s->nidx; /* the full lists become s->nidx */
    size_t tcap = s->nidx_cap;
    s->nidx = s->nidx2;
    s->nidx_cap = s->nidx2_cap;
    s->nidx2 = tmp;
    s->nidx2_cap = tcap;
    return KQ_OK;
}

/* ------------------------------------------------------------------------ */
/* One centre                                                                */
/* ------------------------------------------------------------------------ */

/* The inner kernels of soap_centre_body: small matrix products on blocks of 4
 * adjacent output columns (independent sums, each in a fixed order), written
 * so that gcc and clang vectorise them at -O2 (SSE2, or AVX2 in the AVX2
 * copy) without reassociating anything. Every output element is
 * sum_t x_t y_t summed t = 0, 1, ... from 0.0, whichever kernel computes it. */

/* out[u] = sum_{t < nt} x[t * xs] y[t * ys + u], u < 4, t ascending from 0 */
KQ_INLINE void soap_dot4(int nt, const double *restrict x, size_t xs, const double *restrict y,
                         size_t ys, double *restrict out) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (int t = 0; t < nt; t++) {
        const double a = x[(size_t)t * xs], *b = y + (size_t)t * ys;
        s0 += a * b[0];
        s1 += a * b[1];
        s2 += a * b[2];
        s3 += a * b[3];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* Four rows given by pointers (stride 1 in t): out_r[u] = sum_t x_r[t] y[t*ys + u] */
KQ_INLINE void soap_dot4x4p(int nt, const double *restrict x0, const double *restrict x1,
                            const double *restrict x2, const double *restrict x3,
                            const double *restrict y, size_t ys, double *restrict o0,
                            double *restrict o1, double *restrict o2, double *restrict o3) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, b0 = 0.0, b1 = 0.0, b2 = 0.0, b3 = 0.0;
    double c0 = 0.0, c1 = 0.0, c2 = 0.0, c3 = 0.0, d0 = 0.0, d1 = 0.0, d2 = 0.0, d3 = 0.0;
    for (int t = 0; t < nt; t++) {
        const double *b = y + (size_t)t * ys;
        const double p = x0[t], q = x1[t], r = x2[t], u = x3[t];
        a0 += p * b[0];
        a1 += p * b[1];
        a2 += p * b[2];
        a3 += p * b[3];
        b0 += q * b[0];
        b1 += q * b[1];
        b2 += q * b[2];
        b3 += q * b[3];
        c0 += r * b[0];
        c1 += r * b[1];
        c2 += r * b[2];
        c3 += r * b[3];
        d0 += u * b[0];
        d1 += u * b[1];
        d2 += u * b[2];
        d3 += u * b[3];
    }
    o0[0] = a0;
    o0[1] = a1;
    o0[2] = a2;
    o0[3] = a3;
    o1[0] = b0;
    o1[1] = b1;
    o1[2] = b2;
    o1[3] = b3;
    o2[0] = c0;
    o2[1] = c1;
    o2[2] = c2;
    o2[3] = c3;
    o3[0] = d0;
    o3[1] = d1;
    o3[2] = d2;
    o3[3] = d3;
}

/* Two rows at once: out0[u] = sum_t x0[t*xs] y[t*ys + u] and out1[u] the
 * same with x1; the same order as soap_dot4, so the same bits. */
KQ_INLINE void soap_dot2x4(int nt, const double *restrict x0, const double *restrict x1,
                           size_t xs, const double *restrict y, size_t ys,
                           double *restrict out0, double *restrict out1) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    for (int t = 0; t < nt; t++) {
        const double a = x0[(size_t)t * xs], c = x1[(size_t)t * xs], *b = y + (size_t)t * ys;
        s0 += a * b[0];
        s1 += a * b[1];
        s2 += a * b[2];
        s3 += a * b[3];
        t0 += c * b[0];
        t1 += c * b[1];
        t2 += c * b[2];
        t3 += c * b[3];
    }
    out0[0] = s0;
    out0[1] = s1;
    out0[2] = s2;
    out0[3] = s3;
    out1[0] = t0;
    out1[1] = t1;
    out1[2] = t2;
    out1[3] = t3;
}

/* Four rows at once (more independent sums in flight); same order again.
 * Each sum is multiplied by scale when stored (1.0 changes nothing). */
KQ_INLINE void soap_dot4x4(int nt, const double *restrict x, size_t rs, size_t xs,
                           const double *restrict y, size_t ys, double *restrict out, size_t os,
                           double scale) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, b0 = 0.0, b1 = 0.0, b2 = 0.0, b3 = 0.0;
    double c0 = 0.0, c1 = 0.0, c2 = 0.0, c3 = 0.0, d0 = 0.0, d1 = 0.0, d2 = 0.0, d3 = 0.0;
    for (int t = 0; t < nt; t++) {
        const double *xt = x + (size_t)t * xs, *b = y + (size_t)t * ys;
        const double p = xt[0], q = xt[rs], r = xt[2 * rs], u = xt[3 * rs];
        a0 += p * b[0];
        a1 += p * b[1];
        a2 += p * b[2];
        a3 += p * b[3];
        b0 += q * b[0];
        b1 += q * b[1];
        b2 += q * b[2];
        b3 += q * b[3];
        c0 += r * b[0];
        c1 += r * b[1];
        c2 += r * b[2];
        c3 += r * b[3];
        d0 += u * b[0];
        d1 += u * b[1];
        d2 += u * b[2];
        d3 += u * b[3];
    }
    out[0] = scale * a0;
    out[1] = scale * a1;
    out[2] = scale * a2;
    out[3] = scale * a3;
    out[os] = scale * b0;
    out[os + 1] = scale * b1;
    out[os + 2] = scale * b2;
    out[os + 3] = scale * b3;
    out[2 * os] = scale * c0;
    out[2 * os + 1] = scale * c1;
    out[2 * os + 2] = scale * c2;
    out[2 * os + 3] = scale * c3;
    out[3 * os] = scale * d0;
    out[3 * os + 1] = scale * d1;
    out[3 * os + 2] = scale * d2;
    out[3 * os + 3] = scale * d3;
}

/* Eight rows at once: soap_dot4x4 for rows 0..3 and 4..7 of x fused into one
 * loop, so that eight independent vector sums are in flight (the AVX2 copy
 * uses it: its 4-wide adds would otherwise wait on each other); each sum is
 * still its own, t ascending from 0.0, so the bits are those of soap_dot4x4. */
KQ_INLINE void soap_dot8x4(int nt, const double *restrict x, size_t rs, size_t xs,
                           const double *restrict y, size_t ys, double *restrict out, size_t os,
                           double scale) {
    double a[8][4] = {{0.0}}; /* a[r][u], only constant indices: kept in registers */
    for (int t = 0; t < nt; t++) {
        const double *xt = x + (size_t)t * xs, *b = y + (size_t)t * ys;
        const double b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
#define KQ_ROW(r)                                                                            \
    do {                                                                                     \
        const double p = xt[(r) * rs];                                                       \
        a[r][0] += p * b0;                                                                   \
        a[r][1] += p * b1;                                                                   \
        a[r][2] += p * b2;                                                                   \
        a[r][3] += p * b3;                                                                   \
    } while (0)
        KQ_ROW(0); KQ_ROW(1); KQ_ROW(2); KQ_ROW(3); KQ_ROW(4); KQ_ROW(5); KQ_ROW(6); KQ_ROW(7);
#undef KQ_ROW
    }
#define KQ_ROW(r)                                                                            \
    do {                                                                                     \
        out[(r) * os] = scale * a[r][0];                                                     \
        out[(r) * os + 1] = scale * a[r][1];                                                 \
        out[(r) * os + 2] = scale * a[r][2];                                                 \
        out[(r) * os + 3] = scale * a[r][3];                                                 \
    } while (0)
    KQ_ROW(0); KQ_ROW(1); KQ_ROW(2); KQ_ROW(3); KQ_ROW(4); KQ_ROW(5); KQ_ROW(6); KQ_ROW(7);
#undef KQ_ROW
}

/* A block of 4 columns of the product of nrows rows:
 * out[r*os + u] = sum_{t < nt} x[r*rs + t*xs] y[t*ys + u], r < nrows, u < 4,
 * every sum t ascending from 0.0; rows eight (if wide), four, then two at a
 * time. */
KQ_INLINE void soap_rows4(int nt, int nrows, const double *x, size_t rs, size_t xs,
                          const double *y, size_t ys, double *out, size_t os, int wide) {
    int r = 0;
    if (wide)
        for (; r + 8 <= nrows; r += 8)
            soap_dot8x4(nt, x + (size_t)r * rs, rs, xs, y, ys, out + (size_t)r * os, os, 1.0);
    for (; r + 4 <= nrows; r += 4)
        soap_dot4x4(nt, x + (size_t)r * rs, rs, xs, y, ys, out + (size_t)r * os, os, 1.0);
    for (; r + 2 <= nrows; r += 2)
        soap_dot2x4(nt, x + (size_t)r * rs, x + (size_t)(r + 1) * rs, xs, y, ys,
                    out + (size_t)r * os, out + (size_t)(r + 1) * os);
    if (r < nrows) soap_dot4(nt, x + (size_t)r * rs, xs, y, ys, out + (size_t)r * os);
}

/* The coefficient sums c_(r, u) = sum_{t < nt} x_t[r] y_t[u] where both
 * rows of neighbour t are found through pointers, x_t = xp[t] + xo (solid
 * harmonics R, 4, 2 or 1 adjacent m) and y_t = yp[t] + yo (4 adjacent n of
 * the radial functions h), wherever they are stored (see soap_centre_body),
 * and y_t is first multiplied by sg[t] = +1.0 or -1.0: the parity of a pair
 * whose R was computed from the other end, R_lm(-r) = (-1)^l R_lm(r). That
 * multiplication is exact, and x (-y) = (-x) y exactly, so each term is the
 * bits of R_lm(r_ij) h_ln; every sum runs t ascending from 0.0 as in
 * soap_dot4. out[r*os + u], r < 4 (soap_pdot4x4), 2 (soap_pdot2x4) or 1
 * (soap_pdot4). */
KQ_INLINE void soap_pdot4x4(int nt, const double *const *xp, size_t xo,
                            const double *restrict sg, const double *const *yp, size_t yo,
                            double *restrict out, size_t os) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, b0 = 0.0, b1 = 0.0, b2 = 0.0, b3 = 0.0;
    double c0 = 0.0, c1 = 0.0, c2 = 0.0, c3 = 0.0, d0 = 0.0, d1 = 0.0, d2 = 0.0, d3 = 0.0;
    for (int t = 0; t < nt; t++) {
        const double *restrict y = yp[t] + yo, *restrict xt = xp[t] + xo;
        const double g = sg[t];
        const double y0 = g * y[0], y1 = g * y[1], y2 = g * y[2], y3 = g * y[3];
        const double p = xt[0], q = xt[1], r = xt[2], u = xt[3];
        a0 += p * y0;
        a1 += p * y1;
        a2 += p * y2;
        a3 += p * y3;
        b0 += q * y0;
        b1 += q * y1;
        b2 += q * y2;
        b3 += q * y3;
        c0 += r * y0;
        c1 += r * y1;
        c2 += r * y2;
        c3 += r * y3;
        d0 += u * y0;
        d1 += u * y1;
        d2 += u * y2;
        d3 += u * y3;
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
    out[os] = b0;
    out[os + 1] = b1;
    out[os + 2] = b2;
    out[os + 3] = b3;
    out[2 * os] = c0;
    out[2 * os + 1] = c1;
    out[2 * os + 2] = c2;
    out[2 * os + 3] = c3;
    out[3 * os] = d0;
    out[3 * os + 1] = d1;
    out[3 * os + 2] = d2;
    out[3 * os + 3] = d3;
}

KQ_INLINE void soap_pdot2x4(int nt, const double *const *xp, size_t xo,
                            const double *restrict sg, const double *const *yp, size_t yo,
                            double *restrict out, size_t os) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, b0 = 0.0, b1 = 0.0, b2 = 0.0, b3 = 0.0;
    for (int t = 0; t < nt; t++) {
        const double *restrict y = yp[t] + yo, *restrict xt = xp[t] + xo;
        const double g = sg[t];
        const double y0 = g * y[0], y1 = g * y[1], y2 = g * y[2], y3 = g * y[3];
        const double p = xt[0], q = xt[1];
        a0 += p * y0;
        a1 += p * y1;
        a2 += p * y2;
        a3 += p * y3;
        b0 += q * y0;
        b1 += q * y1;
        b2 += q * y2;
        b3 += q * y3;
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
    out[os] = b0;
    out[os + 1] = b1;
    out[os + 2] = b2;
    out[os + 3] = b3;
}

KQ_INLINE void soap_pdot4(int nt, const double *const *xp, size_t xo, const double *restrict sg,
                          const double *const *yp, size_t yo, double *restrict out) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    for (int t = 0; t < nt; t++) {
        const double *restrict y = yp[t] + yo;
        const double g = sg[t];
        const double y0 = g * y[0], y1 = g * y[1], y2 = g * y[2], y3 = g * y[3];
        const double p = xp[t][xo];
        a0 += p * y0;
        a1 += p * y1;
        a2 += p * y2;
        a3 += p * y3;
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

/* The same sums for 8 adjacent n at once (the AVX2 copy: twice the
 * independent vector sums in flight), nr = 4, 2 or 1 rows (a constant after
 * inlining, so the ifs vanish and a[][] has constant indices only and stays
 * in registers); each sum is the one soap_pdot4x4 makes, in the same order. */
KQ_INLINE void soap_pdot_x8(const int nr, int nt, const double *const *xp, size_t xo,
                            const double *restrict sg, const double *const *yp, size_t yo,
                            double *restrict out, size_t os) {
    double a[4][8] = {{0.0}};
    for (int t = 0; t < nt; t++) {
        const double *restrict y = yp[t] + yo, *restrict x = xp[t] + xo;
        const double g = sg[t];
        const double v0 = g * y[0], v1 = g * y[1], v2 = g * y[2], v3 = g * y[3];
        const double v4 = g * y[4], v5 = g * y[5], v6 = g * y[6], v7 = g * y[7];
#define KQ_ROW(r)                                                                            \
    do {                                                                                     \
        const double p = x[r];                                                               \
        a[r][0] += p * v0;                                                                   \
        a[r][1] += p * v1;                                                                   \
        a[r][2] += p * v2;                                                                   \
        a[r][3] += p * v3;                                                                   \
        a[r][4] += p * v4;                                                                   \
        a[r][5] += p * v5;                                                                   \
        a[r][6] += p * v6;                                                                   \
        a[r][7] += p * v7;                                                                   \
    } while (0)
        KQ_ROW(0);
        if (nr >= 2) KQ_ROW(1);
        if (nr >= 4) { KQ_ROW(2); KQ_ROW(3); }
#undef KQ_ROW
    }
#define KQ_ROW(r)                                                                            \
    do {                                                                                     \
        double *o = out + (r) * os;                                                          \
        o[0] = a[r][0]; o[1] = a[r][1]; o[2] = a[r][2]; o[3] = a[r][3];                      \
        o[4] = a[r][4]; o[5] = a[r][5]; o[6] = a[r][6]; o[7] = a[r][7];                      \
    } while (0)
    KQ_ROW(0);
    if (nr >= 2) KQ_ROW(1);
    if (nr >= 4) { KQ_ROW(2); KQ_ROW(3); }
#undef KQ_ROW
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

/* Pair reuse set-up for kq_soap_compute: rev[] of every entry (i, j), j < i,
 * and the ring. The lists are symmetric (the same d^2 both ways), and j's
 * entries below j appear in ascending order, so one cursor per atom finds
 * them. Anything unexpected just turns reuse off (same results, slower). */
static int soap_reuse_setup(kq_soap *s, int natoms) {
    const size_t entries = s->nstart[natoms];
    const size_t pair = (size_t)s->nl * (size_t)s->np4 + (size_t)s->nlm;
    int rc;
    s->reuse = 0;
    s->counter = 0;
    if (s->search == KQ_SEARCH_BRUTE) return KQ_OK; /* the reference path */
    /* 2 to 4 MB (measured best on the water benchmark; the size changes
     * only the speed, never the result) */
    size_t slots = ((size_t)4 << 20) / (pair * sizeof(double));
    if (slots < 64) slots = 64;
    /* a power of two, so that the slot of a stamp is a mask, not a division */
    while (slots & (slots - 1)) slots &= slots - 1;
    if ((rc = kq_reserve((void **)&s->rev, &s->rev_cap, entries, sizeof(size_t))) ||
        (rc = kq_reserve((void **)&s->stamp, &s->stamp_cap, entries, sizeof(size_t))) ||
        (rc = kq_reserve((void **)&s->cursor, &s->cursor_cap, (size_t)natoms, sizeof(size_t))))
        return rc;
    size_t ringn;
    if (!kq_mul_ok(slots, pair, &ringn)) return KQ_OK;
    if (kq_reserve((void **)&s->ring, &s->ring_cap, ringn, sizeof(double)) != KQ_OK)
        return KQ_OK; /* no memory for the ring: compute every pair twice */
    s->ring_slots = slots;
    for (int i = 0; i < natoms; i++) s->cursor[i] = s->nstart[i];
    for (int i = 0; i < natoms; i++)
        for (size_t t = s->nstart[i]; t < s->nstart[i + 1]; t++) {
            int j = s->nidx[t];
            if (j <= i) continue;
            size_t r = s->cursor[j]++;
            if (r >= s->nstart[j + 1] || s->nidx[r] != i) return KQ_OK;
            s->rev[r] = t;
        }
    s->reuse = 1;
    return KQ_OK;
}

/* The SOAP vector of centre i into out [len]. wide (a constant in each copy)
 * selects kernels with 8 independent vector sums for the AVX2 copy; the
 * portable copy keeps 4 (with 2-wide vectors that is already 8 sums, and 16
 * registers hold no more). Either way every element is the same sum in the
 * same order. */
KQ_INLINE void soap_centre_body(kq_soap *s, int i, const double *pos, double *out,
                                const int wide) {
    const int nl = s->nl, nlm = s->nlm, nmax = s->nmax, np4 = s->np4, S = s->p.nspecies;
    const size_t nlk = (size_t)nl * (size_t)np4, sblk = (size_t)nlm * (size_t)np4;
    int present[KQ_MAX_SPECIES] = {0};
    size_t cnt[KQ_MAX_SPECIES] = {0}, off[KQ_MAX_SPECIES], fill[KQ_MAX_SPECIES];
    const size_t t0 = s->nstart[i], t1 = s->nstart[i + 1];

    /* For every neighbour j (the centre itself included: r = 0 gives R_lm = 0
     * for l > 0, so it only feeds l = 0, spec): the radial functions
     * h_ln(r_ij) [nl][np4] (at hptr[slot]), the solid harmonics [nlm] (at
     * rptr[slot]) and their parity rsign[slot] (-1.0: they are R_lm(r_ji) =
     * (-1)^l R_lm(r_ij), see soap_pdot4x4), in slots grouped by species,
     * ascending neighbour index within each group. */
    for (size_t t = t0; t < t1; t++) cnt[s->sp[s->nidx[t]]]++;
    for (int z = 0, o = 0; z < S; z++) {
        off[z] = (size_t)o;
        fill[z] = 0;
        o += (int)cnt[z];
        present[z] = cnt[z] > 0;
    }
    const size_t pair = nlk + (size_t)nlm; /* one ring entry: h then R */
    /* Pair reuse: h and R of a pair (i, j), i < j, are computed at centre i
     * straight into the next ring entry and read there by pointer at centre
     * j. This centre writes nup entries; an entry read here must survive
     * them, so it counts only if counter + nup - stamp <= ring_slots. If nup
     * itself exceeds the ring, this centre keeps its pairs in fbuf and marks
     * them absent (stamp SIZE_MAX). */
    size_t nup = 0;
    if (s->reuse)
        for (size_t t = t0; t < t1; t++) nup += s->nidx[t] > i;
    const int to_ring = s->reuse && nup <= s->ring_slots;
    size_t nfresh = 0;
    for (size_t t = t0; t < t1; t++) {
        int j = s->nidx[t], z = s->sp[j];
        size_t slot = off[z] + fill[z]++;
        if (s->reuse && j < i) {
            /* computed at centre j: h(r_ji) = h(r_ij) and R_lm(r_ji) =
             * (-1)^l R_lm(r_ij), both exactly (r_ji = -r_ij exactly, and the
             * polynomial's terms change sign together), so the result is the
             * same bits as computing it here */
            size_t st = s->stamp[s->rev[t]];
            if (st != SIZE_MAX && s->counter + nup - st <= s->ring_slots) {
                const double *src = s->ring + (st & (s->ring_slots - 1)) * pair;
                s->hptr[slot] = src;
                s->rptr[slot] = src + nlk;
                s->rsign[slot] = -1.0;
                /* the entry may not be in cache: ask for it now (a hint, no
                 * effect on any value), the fresh pairs below hide the wait */
                for (size_t b = 0; b < pair; b += 8) KQ_PREFETCH(src + b);
                continue;
            }
        }
        double *h = s->fbuf + slot * nlk, *r = s->rbuf + slot * (size_t)nlm;
        if (s->reuse && j > i) {
            if (to_ring) {
                h = s->ring + (s->counter & (s->ring_slots - 1)) * pair;
                r = h + nlk;
                s->stamp[t] = s->counter++;
            } else {
                s->stamp[t] = SIZE_MAX;
            }
        }
        s->hptr[slot] = h;
        s->rptr[slot] = r;
        s->rsign[slot] = 1.0;
        s->fresh[nfresh] = slot;
        s->fresh_t[nfresh++] = t;
    }

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
            if (s->ngmin * r2 >= -700.0)
                soap_exp_near((int)nlk, s->ngam, r2, s->exp2tab, f_e);
            else
                soap_exp_far((int)nlk, s->ngam, r2, s->exp2tab, f_e);
        }
        const double *e = s->ebuf; /* [nr][nlk] exponentials */
        for (int l = 0; l < nl; l++) {
            const double *bt = s->bt + (size_t)l * nmax * np4;
            const size_t lo = (size_t)l * np4;
            for (int n = 0; n < np4; n += 4) {
                if (nr == 4)
                    soap_dot4x4p(nmax, e + lo, e + nlk + lo, e + 2 * nlk + lo, e + 3 * nlk + lo,
                                 bt + n, (size_t)np4, fr[0] + lo + n, fr[1] + lo + n,
                                 fr[2] + lo + n, fr[3] + lo + n);
                else
                    for (int u = 0; u < nr; u++)
                        soap_dot4(nmax, e + u * nlk + lo, 1, bt + n, (size_t)np4, fr[u] + lo + n);
            }
        }
    }

    /* c^Z_nlm = sum_j R_lm(r_ij) h_ln(r_ij), j of species Z ascending from
     * 0.0; for odd l the parity signs, for even l all +1.0 (s->ones) */
    for (int z = 0; z < S; z++) {
        if (!present[z]) continue;
        const double *const *rz = s->rptr + off[z], *const *hz = s->hptr + off[z];
        const int nt = (int)cnt[z];
        double *c = s->coef + (size_t)z * sblk;
        for (int l = 0; l < nl; l++) {
            const double *sg = l % 2 ? s->rsign + off[z] : s->ones;
            const size_t nrow = 2 * (size_t)l + 1, xo = (size_t)l * l;
            if (wide && np4 % 8 == 0) {
                for (int n = 0; n < np4; n += 8) {
                    const size_t yo = (size_t)l * np4 + (size_t)n;
                    double *o = c + (size_t)l * l * np4 + n;
                    size_t r = 0;
                    for (; r + 4 <= nrow; r += 4)
                        soap_pdot_x8(4, nt, rz, xo + r, sg, hz, yo, o + r * np4, (size_t)np4);
                    for (; r + 2 <= nrow; r += 2)
                        soap_pdot_x8(2, nt, rz, xo + r, sg, hz, yo, o + r * np4, (size_t)np4);
                    if (r < nrow)
                        soap_pdot_x8(1, nt, rz, xo + r, sg, hz, yo, o + r * np4, (size_t)np4);
                }
                continue;
            }
            for (int n = 0; n < np4; n += 4) {
                const size_t yo = (size_t)l * np4 + (size_t)n;
                double *o = c + (size_t)l * l * np4 + n;
                size_t r = 0;
                for (; r + 4 <= nrow; r += 4)
                    soap_pdot4x4(nt, rz, xo + r, sg, hz, yo, o + r * np4, (size_t)np4);
                for (; r + 2 <= nrow; r += 2)
                    soap_pdot2x4(nt, rz, xo + r, sg, hz, yo, o + r * np4, (size_t)np4);
                if (r < nrow) soap_pdot4(nt, rz, xo + r, sg, hz, yo, o + r * np4);
            }
        }
    }

    /* p^(Z1 Z2)_(n n' l) = pi sqrt(8/(2l+1)) sum_m c^Z1_nlm c^Z2_n'lm, m ascending
     * from 0; blocks of species that have no atoms here are exact zeros */
    for (int z1 = 0; z1 < S; z1++) {
        const double *c1 = s->coef + (size_t)z1 * sblk;
        for (int z2 = z1; z2 < S; z2++) {
            const double *c2 = s->coef + (size_t)z2 * sblk;
            double *o = out + s->block_off[z1][z2];
            if (!present[z1] || !present[z2]) {
                size_t blen = (z1 == z2 ? (size_t)nmax * (size_t)(nmax + 1) / 2
                                        : (size_t)nmax * (size_t)nmax) * (size_t)nl;
                memset(o, 0, blen * sizeof(double));
                continue;
            }
            double *ps = s->pstmp; /* [nmax][np4] sums of one l */
            for (int l = 0; l < nl; l++) {
                const double pref = s->pref[l];
                const double *a = c1 + (size_t)l * l * np4, *b = c2 + (size_t)l * l * np4;
                if (z1 != z2 && nmax % 4 == 0) {
                    /* full n x n' block: the scaled sums go straight to out */
                    for (int q = 0; q < nmax; q += 4) {
                        int n = 0;
                        if (wide)
                            for (; n + 8 <= nmax; n += 8)
                                soap_dot8x4(2 * l + 1, a + n, 1, (size_t)np4, b + q, (size_t)np4,
                                            o + (size_t)n * nmax + q, (size_t)nmax, pref);
                        for (; n < nmax; n += 4)
                            soap_dot4x4(2 * l + 1, a + n, 1, (size_t)np4, b + q, (size_t)np4,
                                        o + (size_t)n * nmax + q, (size_t)nmax, pref);
                    }
                    o += (size_t)nmax * nmax;
                    continue;
                }
                for (int q = 0; q < np4; q += 4) {
                    /* same species: only rows n <= q + 3 are needed */
                    int nrows = z1 == z2 ? (q + 4 < nmax ? q + 4 : nmax) : nmax;
                    soap_rows4(2 * l + 1, nrows, a, 1, (size_t)np4, b + q, (size_t)np4, ps + q,
                               (size_t)np4, wide);
                }
                for (int n = 0; n < nmax; n++) {
                    int q0 = z1 == z2 ? n : 0;
                    soap_scale_copy(nmax - q0, pref, ps + (size_t)n * np4 + q0, o);
                    o += nmax - q0;
                }
            }
        }
    }
}

/* Every centre, portable copy */
static void soap_centres_portable(kq_soap *s, int natoms, const double *pos, double *out) {
    for (int i = 0; i < natoms; i++) soap_centre_body(s, i, pos, out + (size_t)i * s->len, 0);
}

#if KQ_SOAP_AVX2
/* Every centre, AVX2 copy (see KQ_INLINE at the top: same code, same bits) */
__attribute__((target("avx2"))) static void soap_centres_avx2(kq_soap *s, int natoms,
                                                              const double *pos, double *out) {
    for (int i = 0; i < natoms; i++) soap_centre_body(s, i, pos, out + (size_t)i * s->len, 1);
}
#endif

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
        (rc = kq_reserve((void **)&s->ones, &s->ones_cap, maxnb, sizeof(double))) ||
        (rc = kq_reserve((void **)&s->ebuf, &s->ebuf_cap, 4 * (size_t)s->nl * (size_t)s->np4,
                         sizeof(double))))
        return rc;
    if (maxnb > s->fresh_cap) {
        size_t cap = 0;
        if ((rc = kq_reserve((void **)&s->fresh, &cap, maxnb, sizeof(size_t)))) return rc;
        cap = 0;
        if ((rc = kq_reserve((void **)&s->fresh_t, &cap, maxnb, sizeof(size_t)))) return rc;
        s->fresh_cap = maxnb;
    }
    for (size_t t = 0; t < maxnb; t++) s->ones[t] = 1.0;
    if ((rc = soap_reuse_setup(s, natoms))) return rc;
#if KQ_SOAP_AVX2
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

/* sum_t p[t] q[t], t ascending from 0 (the one summation order that every
 * kernel function here uses, so kq_kernel and kq_kernel_matrix agree bitwise) */
static double kq_dot(const double *p, const double *q, size_t len) {
    double d = 0.0;
    for (size_t t = 0; t < len; t++) d += p[t] * q[t];
    return d;
}

static double kq_ipow(double d, int zeta) {
    double r = 1.0;
    for (int i = 0; i < zeta; i++) r = i == 0 ? d : r * d;
    return r;
}

void kq_normalize_rows(size_t n, size_t len, double *p) {
    for (size_t i = 0; i < n; i++) {
        double *row = p + i * len;
        double nrm = sqrt(kq_dot(row, row, len));
        if (nrm > 0.0)
            for (size_t t = 0; t < len; t++) row[t] /= nrm;
    }
}

double kq_kernel(const double *p, const double *q, size_t len, int zeta) {
    return kq_ipow(kq_dot(p, q, len), zeta);
}

void kq_kernel_matrix(size_t na, const double *a, size_t nb, const double *b, size_t len,
                      int zeta, double *k) {
    /* Blocks of 4 rows of a x 2 rows of b: 8 independent dot products share
     * their loads; each is still summed t = 0, 1, ... from 0.0. */
    size_t i = 0;
    for (; i + 4 <= na; i += 4) {
        const double *a0 = a + i * len, *a1 = a0 + len, *a2 = a1 + len, *a3 = a2 + len;
        size_t j = 0;
        for (; j + 2 <= nb; j += 2) {
            const double *b0 = b + j * len, *b1 = b0 + len;
            double s00 = 0.0, s01 = 0.0, s10 = 0.0, s11 = 0.0;
            double s20 = 0.0, s21 = 0.0, s30 = 0.0, s31 = 0.0;
            for (size_t t = 0; t < len; t++) {
                double x0 = b0[t], x1 = b1[t];
                s00 += a0[t] * x0; s01 += a0[t] * x1;
                s10 += a1[t] * x0; s11 += a1[t] * x1;
                s20 += a2[t] * x0; s21 += a2[t] * x1;
                s30 += a3[t] * x0; s31 += a3[t] * x1;
            }
            k[i * nb + j] = kq_ipow(s00, zeta); k[i * nb + j + 1] = kq_ipow(s01, zeta);
            k[(i + 1) * nb + j] = kq_ipow(s10, zeta); k[(i + 1) * nb + j + 1] = kq_ipow(s11, zeta);
            k[(i + 2) * nb + j] = kq_ipow(s20, zeta); k[(i + 2) * nb + j + 1] = kq_ipow(s21, zeta);
            k[(i + 3) * nb + j] = kq_ipow(s30, zeta); k[(i + 3) * nb + j + 1] = kq_ipow(s31, zeta);
        }
        for (; j < nb; j++)
            for (size_t r = 0; r < 4; r++)
                k[(i + r) * nb + j] = kq_kernel(a + (i + r) * len, b + j * len, len, zeta);
    }
    for (; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            k[i * nb + j] = kq_kernel(a + i * len, b + j * len, len, zeta);
}

/* ======================================================================== */
/* Classical QEq and kQEq: training, prediction, model text                  */
/* (kQEq paper, Staacke et al. 2021, and ../shared/specs/kqeq.md)            */
/* ======================================================================== */

#define KQ_DEFAULT_S_AT 0.75
/* Atoms closer than this (angstrom) are an error (KQ_EOVERLAP). */
#define KQ_MIN_DIST_ANGSTROM 1e-6
/* Upper bound of fitted eta (hartree/e^2, = 27.2 eV): without it the fit can
 * run off to "frozen" elements (eta -> infinity) on data QEq cannot fit. */
#define KQ_ETA_MAX 1.0

/* ------------------------------------------------------------------------ */
/* Element data                                                              */
/* ------------------------------------------------------------------------ */

typedef struct {
    int z;
    double radius;  /* Rappe & Goddard 1991 Table I, angstrom (specs/kqeq.md) */
    double mass;    /* IUPAC standard atomic weight (conventional value) */
    double chi_ev;  /* Rappe & Goddard 1991 Table I electronegativity, eV */
} kq_element;

static const kq_element kq_elements[] = {
    {1, 0.371, 1.008, 4.528},    {6, 0.759, 12.011, 5.343},   {7, 0.715, 14.007, 6.899},
    {8, 0.669, 15.999, 8.741},   {9, 0.706, 18.998403163, 10.874},
    {16, 1.047, 32.06, 6.928},   {17, 0.994, 35.45, 8.564},
};

static const kq_element *find_element(int z) {
    for (size_t i = 0; i < sizeof kq_elements / sizeof kq_elements[0]; i++)
        if (kq_elements[i].z == z) return &kq_elements[i];
    return NULL;
}

double kq_qeq_radius(int z) {
    const kq_element *e = find_element(z);
    return e ? e->radius : 0.0;
}

double kq_atomic_mass(int z) {
    const kq_element *e = find_element(z);
    return e ? e->mass : 0.0;
}

double kq_qeq_default_chi_ev(int z) {
    const kq_element *e = find_element(z);
    return e ? e->chi_ev : 0.0;
}

/* ------------------------------------------------------------------------ */
/* Classical QEq                                                             */
/* ------------------------------------------------------------------------ */

int kq_com_positions_au(int n, const int *z, const double *pos, double *r_au) {
    if (n < 1 || !z || !pos || !r_au) return KQ_EINVAL;
    double mtot = 0.0, c[3] = {0.0, 0.0, 0.0};
    for (int i = 0; i < n; i++) {
        double m = kq_atomic_mass(z[i]);
        if (m <= 0.0) return KQ_ESPECIES;
        for (int k = 0; k < 3; k++) {
            if (!isfinite(pos[3 * i + k])) return KQ_EINVAL;
            c[k] += m * pos[3 * i + k];
        }
        mtot += m;
    }
    for (int k = 0; k < 3; k++) c[k] /= mtot;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) r_au[3 * i + k] = (pos[3 * i + k] - c[k]) / KQ_BOHR_ANGSTROM;
    return KQ_OK;
}

int kq_qeq_hardness(int n, const int *z, const double *r_au, double s_at, const double *eta,
                    double *h) {
    if (n < 1 || !z || !r_au || !h || !(s_at > 0.0) || !isfinite(s_at)) return KQ_EINVAL;
    const double min_d = KQ_MIN_DIST_ANGSTROM / KQ_BOHR_ANGSTROM;
    for (int i = 0; i < n; i++) {
        double ri = kq_qeq_radius(z[i]);
        if (ri <= 0.0) return KQ_ESPECIES;
        if (eta && !isfinite(eta[i])) return KQ_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        /* Gaussian width alpha_A = s_at R_A, in bohr (kQEq paper Sec. II.C). */
        double ai = s_at * kq_qeq_radius(z[i]) / KQ_BOHR_ANGSTROM;
        /* Eq. 9 diagonal: eta_A + 2 gamma_AA / sqrt(pi), gamma_AA = 1/sqrt(2 alpha_A^2). */
        double gaa = 1.0 / sqrt(2.0 * ai * ai);
        h[(size_t)i * n + i] = (eta ? eta[i] : 0.0) + 2.0 * gaa / sqrt(KQ_PI);
        for (int j = i + 1; j < n; j++) {
            double aj = s_at * kq_qeq_radius(z[j]) / KQ_BOHR_ANGSTROM;
            double dx = r_au[3 * i] - r_au[3 * j], dy = r_au[3 * i + 1] - r_au[3 * j + 1],
                   dz = r_au[3 * i + 2] - r_au[3 * j + 2];
            double r = sqrt(dx * dx + dy * dy + dz * dz);
            if (!(r >= min_d)) return KQ_EOVERLAP;
            /* Eq. 9 off-diagonal: erf(gamma_AB r_AB) / r_AB, Eq. 4's gamma. */
            double g = 1.0 / sqrt(ai * ai + aj * aj);
            double v = erf(g * r) / r;
            h[(size_t)i * n + j] = v;
            h[(size_t)j * n + i] = v;
        }
    }
    return KQ_OK;
}

int kq_qeq_constrained_inverse(int n, const double *h, double *a, double *b) {
    if (n < 1 || !h || !a || !b) return KQ_EINVAL;
    size_t nn = (size_t)n * n;
    double *l = malloc(nn * sizeof *l);
    if (!l) return KQ_ENOMEM;
    memcpy(l, h, nn * sizeof *l);
    if (la_cholesky(n, l, n, NULL) != LA_OK) {
        free(l);
        return KQ_ELINALG;
    }
    /* a <- H^-1 (solve with the identity), symmetrised so A is exactly symmetric. */
    for (size_t k = 0; k < nn; k++) a[k] = 0.0;
    for (int i = 0; i < n; i++) a[(size_t)i * n + i] = 1.0;
    int rc = la_cholesky_solve(n, n, l, n, a, n);
    free(l);
    if (rc != LA_OK) return KQ_ELINALG;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double v = 0.5 * (a[(size_t)i * n + j] + a[(size_t)j * n + i]);
            a[(size_t)i * n + j] = v;
            a[(size_t)j * n + i] = v;
        }
    /* Inverse of the bordered matrix [H 1; 1^T 0] (Eq. 10) by the Schur
     * complement s = 1^T H^-1 1 of the constraint: with u = H^-1 1,
     *   A = H^-1 - u u^T / s   (top-left block),   b = u / s   (last column). */
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        double ui = 0.0;
        for (int j = 0; j < n; j++) ui += a[(size_t)i * n + j];
        b[i] = ui;
        s += ui;
    }
    if (!(s > 0.0) || !isfinite(s)) return KQ_ELINALG;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) a[(size_t)i * n + j] -= b[i] * b[j] / s;
    for (int i = 0; i < n; i++) b[i] /= s;
    return KQ_OK;
}

/* Everything a model needs of one molecule's geometry: COM positions (bohr),
 * H, A, b, RA (3 x n) and Rb (3). Buffers sized by the caller. */
typedef struct {
    double *r;   /* [n*3] bohr */
    double *h;   /* [n*n] */
    double *a;   /* [n*n] */
    double *b;   /* [n] */
    double *ra;  /* [3*n] */
    double rb[3];
} mol_work;

static int mol_work_alloc(mol_work *w, int n) {
    size_t nn = (size_t)n * n;
    memset(w, 0, sizeof *w);
    w->r = malloc((size_t)n * 3 * sizeof(double));
    w->h = malloc(nn * sizeof(double));
    w->a = malloc(nn * sizeof(double));
    w->b = malloc((size_t)n * sizeof(double));
    w->ra = malloc((size_t)n * 3 * sizeof(double));
    return (w->r && w->h && w->a && w->b && w->ra) ? KQ_OK : KQ_ENOMEM;
}

static void mol_work_free(mol_work *w) {
    free(w->r);
    free(w->h);
    free(w->a);
    free(w->b);
    free(w->ra);
    memset(w, 0, sizeof *w);
}

static int mol_prepare(mol_work *w, int n, const int *z, const double *pos, double s_at,
                       const double *eta) {
    int rc = kq_com_positions_au(n, z, pos, w->r);
    if (rc) return rc;
    rc = kq_qeq_hardness(n, z, w->r, s_at, eta, w->h);
    if (rc) return rc;
    rc = kq_qeq_constrained_inverse(n, w->h, w->a, w->b);
    if (rc) return rc;
    /* RA: row c of R (3 x n, Eq. 17) times A; Rb = R b. Fixed order over atoms. */
    for (int c = 0; c < 3; c++) {
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int i = 0; i < n; i++) s += w->r[3 * i + c] * w->a[(size_t)i * n + j];
            w->ra[(size_t)c * n + j] = s;
        }
        double s = 0.0;
        for (int i = 0; i < n; i++) s += w->r[3 * i + c] * w->b[i];
        w->rb[c] = s;
    }
    return KQ_OK;
}

/* q = -A chi + Q b (Eq. 13 + constraint part); mu = -(RA) chi + Q Rb (Eq. 18). */
static void mol_charges(const mol_work *w, int n, const double *chi, double qtot, double *q,
                        double *mu) {
    if (q)
        for (int i = 0; i < n; i++) {
            double s = 0.0;
            for (int j = 0; j < n; j++) s += w->a[(size_t)i * n + j] * chi[j];
            q[i] = -s + qtot * w->b[i];
        }
    if (mu)
        for (int c = 0; c < 3; c++) {
            double s = 0.0;
            for (int j = 0; j < n; j++) s += w->ra[(size_t)c * n + j] * chi[j];
            mu[c] = -s + qtot * w->rb[c];
        }
}

int kq_qeq_solve(int n, const int *z, const double *pos, double qtot, const double *chi,
                 const double *eta, double s_at, double *q, double *dipole_au, double *energy,
                 double *a, double *b) {
    if (n < 1 || !z || !pos || !chi || !isfinite(qtot)) return KQ_EINVAL;
    for (int i = 0; i < n; i++)
        if (!isfinite(chi[i])) return KQ_EINVAL;
    mol_work w;
    int rc = mol_work_alloc(&w, n);
    double *qq = malloc((size_t)n * sizeof *qq);
    if (rc || !qq) rc = KQ_ENOMEM;
    if (!rc) rc = mol_prepare(&w, n, z, pos, s_at, eta);
    if (!rc) {
        double mu[3], e = 0.0;
        mol_charges(&w, n, chi, qtot, qq, mu);
        /* Eq. 5 with E_0 = 0: chi.q + 1/2 q^T H q (H holds eta and self terms). */
        for (int i = 0; i < n; i++) {
            double hq = 0.0;
            for (int j = 0; j < n; j++) hq += w.h[(size_t)i * n + j] * qq[j];
            e += chi[i] * qq[i] + 0.5 * qq[i] * hq;
        }
        /* never a NaN or Inf result (kqeq.h) */
        if (!kq_all_finite((size_t)n, qq) || !kq_all_finite(3, mu) || !isfinite(e) ||
            !kq_all_finite((size_t)n * n, w.a) || !kq_all_finite((size_t)n, w.b))
            rc = KQ_ERANGE;
        if (!rc) {
            if (q) memcpy(q, qq, (size_t)n * sizeof *q);
            if (dipole_au) memcpy(dipole_au, mu, sizeof mu);
            if (energy) *energy = e;
            if (a) memcpy(a, w.a, (size_t)n * n * sizeof *a);
            if (b) memcpy(b, w.b, (size_t)n * sizeof *b);
        }
    }
    free(qq);
    mol_work_free(&w);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

static int species_index(const kq_model *m, int z) {
    for (int s = 0; s < m->nspecies; s++)
        if (m->species[s] == z) return s;
    return -1;
}

static int model_make_calcs(kq_model *m) {
    for (int d = 0; d < m->ndesc; d++) {
        m->soap[d].nspecies = m->nspecies;
        for (int s = 0; s < m->nspecies; s++) m->soap[d].species[s] = m->species[s];
        int rc = kq_soap_new(&m->soap[d], &m->calc[d]);
        if (rc) return rc;
        m->soap[d] = *kq_soap_get_params(m->calc[d]);
        m->len[d] = kq_soap_length(m->calc[d]);
    }
    return KQ_OK;
}

int kq_model_init(kq_model *m, const kq_model_config *c) {
    if (!m || !c) return KQ_EINVAL;
    memset(m, 0, sizeof *m);
    if (c->kind != KQ_KIND_KQEQ && c->kind != KQ_KIND_QEQ) return KQ_EINVAL;
    if (c->nspecies < 1 || c->nspecies > KQ_MAX_SPECIES) return KQ_EINVAL;
    m->kind = c->kind;
    m->s_at = c->s_at > 0.0 ? c->s_at : KQ_DEFAULT_S_AT;
    if (!isfinite(m->s_at)) return KQ_EINVAL;
    m->zeta = c->zeta > 0 ? c->zeta : 2;
    /* species sorted ascending, no duplicates */
    int sp[KQ_MAX_SPECIES];
    for (int i = 0; i < c->nspecies; i++) sp[i] = c->species[i];
    for (int i = 1; i < c->nspecies; i++)
        for (int j = i; j > 0 && sp[j - 1] > sp[j]; j--) {
            int t = sp[j];
            sp[j] = sp[j - 1];
            sp[j - 1] = t;
        }
    for (int i = 0; i < c->nspecies; i++) {
        if (i > 0 && sp[i] == sp[i - 1]) return KQ_EINVAL;
        if (kq_qeq_radius(sp[i]) <= 0.0) return KQ_ESPECIES;
        m->species[i] = sp[i];
    }
    m->nspecies = c->nspecies;
    if (m->kind == KQ_KIND_KQEQ) {
        if (c->ndesc < 1 || c->ndesc > KQ_MAX_DESC) return KQ_EINVAL;
        m->ndesc = c->ndesc;
        for (int d = 0; d < c->ndesc; d++) {
            m->soap[d] = c->soap[d];
            m->delta[d] = c->delta[d] > 0.0 ? c->delta[d] : 1.0;
            if (!isfinite(m->delta[d])) return KQ_EINVAL;
        }
        int rc = model_make_calcs(m);
        if (rc) {
            kq_model_free(m);
            return rc;
        }
    }
    return KQ_OK;
}

void kq_model_free(kq_model *m) {
    if (!m) return;
    free(m->w);
    for (int d = 0; d < KQ_MAX_DESC; d++) {
        free(m->rep[d]);
        if (m->calc[d]) kq_soap_free(m->calc[d]);
    }
    memset(m, 0, sizeof *m);
}

/* Per-atom eta of a molecule from the model's per-species eta. */
static int atom_eta(const kq_model *m, int n, const int *z, double *eta) {
    for (int i = 0; i < n; i++) {
        int s = species_index(m, z[i]);
        if (s < 0) return KQ_ESPECIES;
        eta[i] = m->eta[s];
    }
    return KQ_OK;
}

/* Combined kernel (specs/soap.md "Kernel used by kQEq"): sum_d delta_d k_d. */
static double kernel_sum(const kq_model *m, const double *const *pa, size_t ia,
                         const double *const *pb, size_t ib) {
    double k = 0.0;
    for (int d = 0; d < m->ndesc; d++)
        k += m->delta[d] * kq_kernel(pa[d] + ia * m->len[d], pb[d] + ib * m->len[d], m->len[d],
                                     m->zeta);
    return k;
}

/* ------------------------------------------------------------------------ */
/* Prepared sets                                                             */
/* ------------------------------------------------------------------------ */

void kq_set_free(kq_set *s) {
    if (!s) return;
    free(s->first);
    free(s->z);
    free(s->ra);
    free(s->rb);
    free(s->charge);
    free(s->dipole_au);
    for (int d = 0; d < KQ_MAX_DESC; d++) free(s->p[d]);
    memset(s, 0, sizeof *s);
}

int kq_set_build(kq_model *m, int nmol, const kq_mol *mols, kq_set *s, kq_progress_fn progress,
                 void *ctx) {
    if (!m || !s || nmol < 1 || !mols) return KQ_EINVAL;
    memset(s, 0, sizeof *s);
    size_t ntot = 0;
    int nmax = 0;
    for (int k = 0; k < nmol; k++) {
        if (mols[k].natoms < 1 || !mols[k].z || !mols[k].pos) return KQ_EINVAL;
        ntot += (size_t)mols[k].natoms;
        if (mols[k].natoms > nmax) nmax = mols[k].natoms;
    }
    int rc = KQ_OK;
    s->nmol = nmol;
    s->natoms = ntot;
    s->first = malloc(((size_t)nmol + 1) * sizeof *s->first);
    s->z = malloc(ntot * sizeof *s->z);
    s->ra = malloc(ntot * 3 * sizeof *s->ra);
    s->rb = malloc((size_t)nmol * 3 * sizeof *s->rb);
    s->charge = malloc((size_t)nmol * sizeof *s->charge);
    s->dipole_au = malloc((size_t)nmol * 3 * sizeof *s->dipole_au);
    if (!s->first || !s->z || !s->ra || !s->rb || !s->charge || !s->dipole_au) rc = KQ_ENOMEM;
    if (m->kind == KQ_KIND_KQEQ && !rc) {
        s->ndesc = m->ndesc;
        for (int d = 0; d < m->ndesc; d++) {
            s->len[d] = m->len[d];
            if (m->len[d] && ntot > SIZE_MAX / sizeof(double) / m->len[d]) {
                rc = KQ_ENOMEM;
                break;
            }
            s->p[d] = malloc(ntot * m->len[d] * sizeof(double));
            if (!s->p[d]) {
                rc = KQ_ENOMEM;
                break;
            }
        }
    }
    mol_work w;
    double *eta = malloc((size_t)nmax * sizeof *eta);
    if (mol_work_alloc(&w, nmax) || !eta) rc = KQ_ENOMEM;
    size_t at = 0;
    for (int k = 0; k < nmol && !rc; k++) {
        const kq_mol *mo = &mols[k];
        int n = mo->natoms;
        s->first[k] = at;
        if (!isfinite(mo->charge)) rc = KQ_EINVAL;
        if (!rc) rc = atom_eta(m, n, mo->z, eta);
        if (!rc) rc = mol_prepare(&w, n, mo->z, mo->pos, m->s_at, eta);
        if (rc) break;
        memcpy(s->z + at, mo->z, (size_t)n * sizeof *s->z);
        memcpy(s->ra + 3 * at, w.ra, (size_t)n * 3 * sizeof *s->ra);
        for (int c = 0; c < 3; c++) {
            s->rb[3 * k + c] = w.rb[c];
            s->dipole_au[3 * k + c] = mo->dipole_au[c];
        }
        s->charge[k] = mo->charge;
        for (int d = 0; d < s->ndesc && !rc; d++) {
            double *p = s->p[d] + at * s->len[d];
            rc = kq_soap_compute(m->calc[d], n, mo->z, mo->pos, p);
            if (!rc) kq_normalize_rows((size_t)n, s->len[d], p);
        }
        at += (size_t)n;
        if (progress && !rc && ((k + 1) % 64 == 0 || k + 1 == nmol))
            progress(ctx, "descriptors", (size_t)k + 1, (size_t)nmol);
    }
    if (!rc) s->first[nmol] = at;
    free(eta);
    mol_work_free(&w);
    if (rc) kq_set_free(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------ */

void kq_dipole_metrics(int nmol, const double *pred_au, const double *ref_au, double *mae_debye,
                       double *rrmse_percent) {
    double mae = 0.0, rr = 0.0;
    for (int k = 0; k < nmol; k++) {
        const double *p = pred_au + 3 * k, *r = ref_au + 3 * k;
        double np = sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]) * KQ_AU_DEBYE;
        double nr = sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * KQ_AU_DEBYE;
        double dx = p[0] - r[0], dy = p[1] - r[1], dz = p[2] - r[2];
        double err = sqrt(dx * dx + dy * dy + dz * dz) * KQ_AU_DEBYE;
        mae += fabs(np - nr);
        /* specs/kqeq.md: |mu - mu_ref| / max(|mu_ref|, 1 D) */
        double t = err / (nr > 1.0 ? nr : 1.0);
        rr += t * t;
    }
    if (mae_debye) *mae_debye = nmol > 0 ? mae / nmol : 0.0;
    if (rrmse_percent) *rrmse_percent = nmol > 0 ? sqrt(rr / nmol) * 100.0 : 0.0;
}

/* ------------------------------------------------------------------------ */
/* Prediction                                                                */
/* ------------------------------------------------------------------------ */

#define KQ_REP_BLOCK 32 /* representatives per kernel block (they stay in cache) */

/* Combined kernel block out [na][nb] = sum_d delta_d K_d(a, b) of na rows
 * pa[d] against nb rows pb[d], by kq_kernel_matrix (which agrees bitwise with
 * kq_kernel) over blocks of KQ_REP_BLOCK columns; tmp [na*KQ_REP_BLOCK]
 * scratch. Same values as kernel_sum. */
static void kernel_block(const kq_model *m, const double *const *pa, size_t na,
                         const double *const *pb, size_t nb, double *out, double *tmp) {
    for (size_t e = 0; e < na * nb; e++) out[e] = 0.0;
    for (size_t j0 = 0; j0 < nb; j0 += KQ_REP_BLOCK) {
        size_t nj = nb - j0 < KQ_REP_BLOCK ? nb - j0 : KQ_REP_BLOCK;
        for (int d = 0; d < m->ndesc; d++) {
            kq_kernel_matrix(na, pa[d], nj, pb[d] + j0 * m->len[d], m->len[d], m->zeta, tmp);
            for (size_t i = 0; i < na; i++)
                for (size_t j = 0; j < nj; j++)
                    out[i * nb + j0 + j] += m->delta[d] * tmp[i * nj + j];
        }
    }
}

/* chi [n] of n atoms from their kernel rows k [n][nrep] (kQEq Eq. 11 with the
 * multi-SOAP kernel over the representative atoms) plus the per-species
 * constant; r ascending. */
static void chi_from_k(const kq_model *m, int n, const int *z, const double *k, double *chi) {
    size_t nr = (size_t)m->nrep;
    for (int i = 0; i < n; i++) {
        double c = 0.0;
        for (size_t r = 0; r < nr; r++) c += m->w[r] * k[(size_t)i * nr + r];
        chi[i] = m->chi[species_index(m, z[i])] + c;
    }
}

/* chi [n] of n atoms with normalised descriptors p[d] + i*len[d].
 * kbuf [n*nrep + n*KQ_REP_BLOCK] scratch. */
static void atom_chi(const kq_model *m, int n, const int *z, const double *const *p,
                     double *chi, double *kbuf) {
    size_t nr = (size_t)m->nrep;
    if (nr > 0)
        kernel_block(m, p, (size_t)n, (const double *const *)m->rep, nr, kbuf,
                     kbuf + (size_t)n * nr);
    chi_from_k(m, n, z, kbuf, chi);
}

int kq_predict(kq_model *m, int n, const int *z, const double *pos, double charge, double *q,
               double *dipole_au, double *alpha_au, double *chi_out) {
    if (!m || n < 1 || !z || !pos || !isfinite(charge)) return KQ_EINVAL;
    for (int i = 0; i < n; i++)
        if (species_index(m, z[i]) < 0) return KQ_ESPECIES;
    mol_work w;
    int rc = mol_work_alloc(&w, n);
    double *eta = malloc((size_t)n * sizeof *eta), *chi = malloc((size_t)n * sizeof *chi);
    double *kbuf = malloc(((size_t)n * ((size_t)m->nrep + KQ_REP_BLOCK) + 1) * sizeof *kbuf);
    double *p[KQ_MAX_DESC] = {NULL};
    if (rc || !eta || !chi || !kbuf) rc = KQ_ENOMEM;
    for (int d = 0; d < m->ndesc && !rc; d++) {
        p[d] = malloc((size_t)n * m->len[d] * sizeof(double));
        if (!p[d]) rc = KQ_ENOMEM;
        if (!rc) rc = kq_soap_compute(m->calc[d], n, z, pos, p[d]);
        if (!rc) kq_normalize_rows((size_t)n, m->len[d], p[d]);
    }
    if (!rc) rc = atom_eta(m, n, z, eta);
    if (!rc) rc = mol_prepare(&w, n, z, pos, m->s_at, eta);
    if (!rc) {
        /* everything into local buffers (qq reuses eta), checked before any
         * output is written: never a NaN or Inf result (kqeq.h) */
        double *qq = eta, mu[3], al[9];
        atom_chi(m, n, z, (const double *const *)p, chi, kbuf);
        mol_charges(&w, n, chi, charge, qq, mu);
        /* specs/kqeq.md field response: alpha = R A R^T = (RA) R^T. */
        for (int c = 0; c < 3; c++)
            for (int e = 0; e < 3; e++) {
                double s = 0.0;
                for (int j = 0; j < n; j++) s += w.ra[(size_t)c * n + j] * w.r[3 * j + e];
                al[3 * c + e] = s;
            }
        for (int c = 0; c < 3; c++)
            for (int e = c + 1; e < 3; e++) {
                double v = 0.5 * (al[3 * c + e] + al[3 * e + c]);
                al[3 * c + e] = v;
                al[3 * e + c] = v;
            }
        if (!kq_all_finite((size_t)n, chi) || !kq_all_finite((size_t)n, qq) ||
            !kq_all_finite(3, mu) || !kq_all_finite(9, al))
            rc = KQ_ERANGE;
        if (!rc) {
            if (q) memcpy(q, qq, (size_t)n * sizeof *q);
            if (dipole_au) memcpy(dipole_au, mu, sizeof mu);
            if (alpha_au) memcpy(alpha_au, al, sizeof al);
            if (chi_out) memcpy(chi_out, chi, (size_t)n * sizeof *chi);
        }
    }
    for (int d = 0; d < KQ_MAX_DESC; d++) free(p[d]);
    free(eta);
    free(chi);
    free(kbuf);
    mol_work_free(&w);
    return rc;
}

static int set_matches(const kq_model *m, const kq_set *s) {
    if (m->kind == KQ_KIND_QEQ) return 1;
    if (s->ndesc != m->ndesc) return 0;
    for (int d = 0; d < m->ndesc; d++)
        if (s->len[d] != m->len[d] || !s->p[d]) return 0;
    return 1;
}

int kq_set_predict(const kq_model *m, const kq_set *s, double *out) {
    if (!m || !s || !out) return KQ_EINVAL;
    if (!set_matches(m, s)) return KQ_EINVAL;
    for (size_t i = 0; i < s->natoms; i++)
        if (species_index(m, s->z[i]) < 0) return KQ_ESPECIES;
    /* molecules in chunks of up to 256 atoms (at least one molecule): one
     * kernel block per chunk, then chi and mu molecule by molecule */
    const size_t chunk = 256;
    size_t maxrows = chunk;
    for (int k = 0; k < s->nmol; k++)
        if (s->first[k + 1] - s->first[k] > maxrows) maxrows = s->first[k + 1] - s->first[k];
    size_t nr = (size_t)m->nrep;
    double *chi = malloc(maxrows * sizeof *chi);
    double *kbuf = malloc((maxrows * (nr + KQ_REP_BLOCK) + 1) * sizeof *kbuf);
    if (!chi || !kbuf) {
        free(chi);
        free(kbuf);
        return KQ_ENOMEM;
    }
    for (int k0 = 0; k0 < s->nmol;) {
        int k1 = k0 + 1;
        while (k1 < s->nmol && s->first[k1 + 1] - s->first[k0] <= chunk) k1++;
        size_t a0 = s->first[k0], rows = s->first[k1] - a0;
        if (nr > 0) {
            const double *p[KQ_MAX_DESC];
            for (int d = 0; d < m->ndesc; d++) p[d] = s->p[d] + a0 * s->len[d];
            kernel_block(m, p, rows, (const double *const *)m->rep, nr, kbuf, kbuf + rows * nr);
        }
        for (int k = k0; k < k1; k++) {
            size_t b0 = s->first[k];
            int n = (int)(s->first[k + 1] - b0);
            chi_from_k(m, n, s->z + b0, kbuf + (b0 - a0) * nr, chi);
            /* Same arithmetic as mol_charges: mu = -(RA) chi + Q Rb. */
            const double *ra = s->ra + 3 * b0;
            for (int c = 0; c < 3; c++) {
                double t = 0.0;
                for (int j = 0; j < n; j++) t += ra[(size_t)c * n + j] * chi[j];
                out[3 * k + c] = -t + s->charge[k] * s->rb[3 * k + c];
            }
        }
        k0 = k1;
    }
    free(chi);
    free(kbuf);
    /* never a NaN or Inf result (kqeq.h) */
    return kq_all_finite(3 * (size_t)s->nmol, out) ? KQ_OK : KQ_ERANGE;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

/* Classical QEq baseline: chi per species by linear least squares.
 * mu_k = -sum_{i in k} RA_k[:, i] chi_{Z_i} + Q_k Rb_k  (Eq. 18 with K = the
 * species indicator), so with X[3k+c][s] = -sum_{i in k, Z_i = s} RA_k[c][i]
 * and y = mu_ref - Q Rb: min |X chi - y|^2. Since A 1 = 0, a common shift of
 * all chi changes nothing; a ridge of 1e-10 * mean(diag X^T X) picks the
 * solution of smallest norm (and chi = 0 for species without atoms). */
static int train_qeq(kq_model *m, const kq_set *t, const int *sel, int nsel) {
    int ns = m->nspecies;
    double xtx[KQ_MAX_SPECIES * KQ_MAX_SPECIES] = {0}, xty[KQ_MAX_SPECIES] = {0};
    for (int kk = 0; kk < nsel; kk++) {
        int k = sel ? sel[kk] : kk;
        size_t a0 = t->first[k];
        int n = (int)(t->first[k + 1] - a0);
        const double *ra = t->ra + 3 * a0;
        for (int c = 0; c < 3; c++) {
            double x[KQ_MAX_SPECIES] = {0};
            for (int i = 0; i < n; i++) {
                int s = species_index(m, t->z[a0 + i]);
                if (s < 0) return KQ_ESPECIES;
                x[s] -= ra[(size_t)c * n + i];
            }
            double y = t->dipole_au[3 * k + c] - t->charge[k] * t->rb[3 * k + c];
            for (int a = 0; a < ns; a++) {
                xty[a] += x[a] * y;
                for (int b = 0; b < ns; b++) xtx[a * ns + b] += x[a] * x[b];
            }
        }
    }
    double tr = 0.0;
    for (int a = 0; a < ns; a++) tr += xtx[a * ns + a];
    double ridge = 1e-10 * (tr > 0.0 ? tr / ns : 1.0);
    for (int a = 0; a < ns; a++) xtx[a * ns + a] += ridge;
    if (la_cholesky(ns, xtx, ns, NULL) != LA_OK) return KQ_ELINALG;
    if (la_cholesky_solve(ns, 1, xtx, ns, xty, 1) != LA_OK) return KQ_ELINALG;
    if (!kq_all_finite((size_t)ns, xty)) return KQ_ERANGE; /* never a NaN model (kqeq.h) */
    for (int a = 0; a < ns; a++) m->chi[a] = xty[a];
    m->reg = 0.0;
    return KQ_OK;
}

/* QEq chi least squares for given per-species eta on raw molecules: fills
 * chi_sp and returns the loss sum |mu - mu_ref|^2 in *loss (and the dipoles
 * in pred [nsel*3] if not NULL). Same normal equations and ridge as
 * train_qeq. */
static int qeq_lsq_eta(const kq_model *m, const kq_mol *mols, const int *mol, int nsel,
                       const double *eta_sp, double *chi_sp, double *loss, double *pred) {
    int ns = m->nspecies, nmax = 0;
    for (int kk = 0; kk < nsel; kk++)
        if (mols[mol[kk]].natoms > nmax) nmax = mols[mol[kk]].natoms;
    double *x = malloc((size_t)nsel * 3 * ns * sizeof *x);
    double *y = malloc((size_t)nsel * 3 * sizeof *y);
    double *eta = malloc((size_t)nmax * sizeof *eta);
    mol_work w;
    int rc = mol_work_alloc(&w, nmax);
    if (!x || !y || !eta) rc = KQ_ENOMEM;
    double xtx[KQ_MAX_SPECIES * KQ_MAX_SPECIES] = {0}, xty[KQ_MAX_SPECIES] = {0};
    for (int kk = 0; kk < nsel && !rc; kk++) {
        const kq_mol *mo = &mols[mol[kk]];
        int n = mo->natoms;
        for (int i = 0; i < n && !rc; i++) {
            int s = species_index(m, mo->z[i]);
            if (s < 0) rc = KQ_ESPECIES;
            else eta[i] = eta_sp[s];
        }
        if (!rc) rc = mol_prepare(&w, n, mo->z, mo->pos, m->s_at, eta);
        if (rc) break;
        for (int c = 0; c < 3; c++) {
            double *xr = x + (3 * (size_t)kk + c) * ns;
            for (int a = 0; a < ns; a++) xr[a] = 0.0;
            for (int i = 0; i < n; i++) xr[species_index(m, mo->z[i])] -= w.ra[(size_t)c * n + i];
            double yv = mo->dipole_au[c] - mo->charge * w.rb[c];
            y[3 * kk + c] = yv;
            for (int a = 0; a < ns; a++) {
                xty[a] += xr[a] * yv;
                for (int b = 0; b < ns; b++) xtx[a * ns + b] += xr[a] * xr[b];
            }
        }
    }
    if (!rc) {
        double tr = 0.0;
        for (int a = 0; a < ns; a++) tr += xtx[a * ns + a];
        double ridge = 1e-10 * (tr > 0.0 ? tr / ns : 1.0);
        for (int a = 0; a < ns; a++) xtx[a * ns + a] += ridge;
        if (la_cholesky(ns, xtx, ns, NULL) != LA_OK ||
            la_cholesky_solve(ns, 1, xtx, ns, xty, 1) != LA_OK)
            rc = KQ_ELINALG;
    }
    if (!rc) {
        double l = 0.0;
        for (size_t r = 0; r < 3 * (size_t)nsel; r++) {
            double mu = 0.0;
            for (int a = 0; a < ns; a++) mu += x[r * ns + a] * xty[a];
            /* mu_pred = X chi + Q Rb = mu_ref - (y - X chi) */
            double res = y[r] - mu;
            l += res * res;
            if (pred) pred[r] = mols[mol[r / 3]].dipole_au[r % 3] - res;
        }
        for (int a = 0; a < ns; a++) chi_sp[a] = xty[a];
        *loss = l;
    }
    free(x);
    free(y);
    free(eta);
    mol_work_free(&w);
    return rc;
}

int kq_train_qeq_eta(kq_model *m, int nmol, const kq_mol *mols, const int *sel, int nsel,
                     int max_iter, kq_train_report *report, kq_progress_fn progress, void *ctx) {
    if (!m || !mols || nmol < 1 || m->kind != KQ_KIND_QEQ || max_iter < 0) return KQ_EINVAL;
    if (!sel) nsel = nmol;
    if (nsel < 1) return KQ_EINVAL;
    kq_train_report rep = {-1.0, -1.0, -1.0, -1.0};
    if (report) *report = rep;
    int ns = m->nspecies;
    size_t nr = 3 * (size_t)nsel;
    int *mol = malloc((size_t)nsel * sizeof *mol);
    double *r0 = malloc(nr * sizeof *r0), *r1 = malloc(nr * sizeof *r1);
    double *jac = malloc(nr * ns * sizeof *jac);
    int rc = (mol && r0 && r1 && jac) ? KQ_OK : KQ_ENOMEM;
    for (int kk = 0; kk < nsel && !rc; kk++) {
        mol[kk] = sel ? sel[kk] : kk;
        if (mol[kk] < 0 || mol[kk] >= nmol) rc = KQ_EINVAL;
    }
    double eta[KQ_MAX_SPECIES], chi[KQ_MAX_SPECIES], loss = 0.0, lambda = 1e-3;
    for (int s = 0; s < ns; s++) eta[s] = fmin(fmax(m->eta[s], 0.0), KQ_ETA_MAX);
    /* residuals r = mu_pred - mu_ref as functions of eta (chi eliminated) */
    if (!rc) rc = qeq_lsq_eta(m, mols, mol, nsel, eta, chi, &loss, r0);
    for (size_t i = 0; i < nr && !rc; i++) r0[i] -= mols[mol[i / 3]].dipole_au[i % 3];
    for (int it = 0; it < max_iter && !rc; it++) {
        /* forward-difference Jacobian d r / d eta_s */
        for (int s = 0; s < ns && !rc; s++) {
            double e[KQ_MAX_SPECIES], tmp[KQ_MAX_SPECIES], l1;
            memcpy(e, eta, sizeof e);
            double h = 1e-6 * (1.0 + eta[s]);
            e[s] += h;
            rc = qeq_lsq_eta(m, mols, mol, nsel, e, tmp, &l1, r1);
            for (size_t i = 0; i < nr && !rc; i++)
                jac[i * ns + s] = (r1[i] - mols[mol[i / 3]].dipole_au[i % 3] - r0[i]) / h;
        }
        if (rc) break;
        double jtj[KQ_MAX_SPECIES * KQ_MAX_SPECIES] = {0}, jtr[KQ_MAX_SPECIES] = {0}, tr = 0.0;
        for (size_t i = 0; i < nr; i++)
            for (int a = 0; a < ns; a++) {
                jtr[a] += jac[i * ns + a] * r0[i];
                for (int b = 0; b < ns; b++) jtj[a * ns + b] += jac[i * ns + a] * jac[i * ns + b];
            }
        for (int a = 0; a < ns; a++) tr += jtj[a * ns + a];
        int accepted = 0, converged = 0;
        /* Levenberg-Marquardt step, eta projected onto eta >= 0 */
        for (int tries = 0; tries < 12 && !accepted && !rc; tries++) {
            double mm[KQ_MAX_SPECIES * KQ_MAX_SPECIES], step[KQ_MAX_SPECIES];
            memcpy(mm, jtj, sizeof mm);
            for (int a = 0; a < ns; a++) {
                mm[a * ns + a] += lambda * jtj[a * ns + a] + 1e-12 * (tr > 0.0 ? tr : 1.0);
                step[a] = -jtr[a];
            }
            if (la_cholesky(ns, mm, ns, NULL) != LA_OK ||
                la_cholesky_solve(ns, 1, mm, ns, step, 1) != LA_OK) {
                lambda *= 10.0;
                continue;
            }
            double e[KQ_MAX_SPECIES], tmp[KQ_MAX_SPECIES], l1;
            for (int a = 0; a < ns; a++) e[a] = fmin(fmax(eta[a] + step[a], 0.0), KQ_ETA_MAX);
            rc = qeq_lsq_eta(m, mols, mol, nsel, e, tmp, &l1, r1);
            if (rc) break;
            if (l1 < loss) {
                accepted = 1;
                double rel = (loss - l1) / (loss > 0.0 ? loss : 1.0);
                memcpy(eta, e, sizeof e);
                loss = l1;
                for (size_t i = 0; i < nr; i++) r0[i] = r1[i] - mols[mol[i / 3]].dipole_au[i % 3];
                lambda = fmax(lambda / 10.0, 1e-12);
                if (rel < 1e-12) converged = 1;
            } else {
                lambda *= 10.0;
            }
        }
        if (progress) progress(ctx, "eta fit", (size_t)it + 1, (size_t)max_iter);
        if (!accepted || converged) break;
    }
    double *pred = r1;
    if (!rc) rc = qeq_lsq_eta(m, mols, mol, nsel, eta, chi, &loss, pred);
    /* never a NaN model or error (kqeq.h) */
    if (!rc && (!kq_all_finite((size_t)ns, eta) || !kq_all_finite((size_t)ns, chi) ||
                !kq_all_finite(nr, pred) || !isfinite(loss)))
        rc = KQ_ERANGE;
    if (!rc) {
        for (int s = 0; s < ns; s++) {
            m->eta[s] = eta[s];
            m->chi[s] = chi[s];
        }
        m->reg = 0.0;
        if (report) {
            for (size_t i = 0; i < nr; i++) r0[i] = mols[mol[i / 3]].dipole_au[i % 3];
            kq_dipole_metrics(nsel, pred, r0, &rep.train_mae_debye, &rep.train_rrmse_percent);
            *report = rep;
        }
    }
    free(mol);
    free(r0);
    free(r1);
    free(jac);
    return rc;
}

/* Kernel rows of all atoms of set s against the representative vectors
 * rep[d] ([M][len]): out [natoms][M], in blocks of up to 64 atoms. */
static int kernel_rows(const kq_model *m, const kq_set *s, const double *const *rep, int nrep,
                       double *out, const char *stage, kq_progress_fn progress, void *ctx) {
    const size_t blk = 256;
    double *tmp = malloc(blk * KQ_REP_BLOCK * sizeof *tmp);
    if (!tmp) return KQ_ENOMEM;
    for (size_t i0 = 0; i0 < s->natoms; i0 += blk) {
        size_t nb = s->natoms - i0 < blk ? s->natoms - i0 : blk;
        const double *pa[KQ_MAX_DESC];
        for (int d = 0; d < m->ndesc; d++) pa[d] = s->p[d] + i0 * s->len[d];
        kernel_block(m, pa, nb, rep, (size_t)nrep, out + i0 * (size_t)nrep, tmp);
        if (progress) progress(ctx, stage, i0 + nb, s->natoms);
    }
    free(tmp);
    return KQ_OK;
}

/* Combined kernel of n atoms (rows idx[] of set s) with atom c of s:
 * out[i] = sum_d delta_d (p_d(idx[i]) . p_d(c))^zeta. Eight dot products run
 * side by side (independent accumulators, so the loop is not bound by the
 * latency of one addition chain); each is still summed t = 0, 1, ... from
 * 0.0 and raised to zeta by repeated multiplication, exactly as kq_kernel
 * does, so the values are bitwise those of kernel_sum. */
static void kernel_column(const kq_model *m, const kq_set *s, const size_t *idx, size_t n,
                          size_t c, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = 0.0;
    for (int d = 0; d < m->ndesc; d++) {
        size_t len = m->len[d];
        const double *q = s->p[d] + c * len;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const double *r[8];
            double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
            for (int k = 0; k < 8; k++) r[k] = s->p[d] + idx[i + k] * len;
            for (size_t t = 0; t < len; t++) {
                double x = q[t];
                acc[0] += r[0][t] * x;
                acc[1] += r[1][t] * x;
                acc[2] += r[2][t] * x;
                acc[3] += r[3][t] * x;
                acc[4] += r[4][t] * x;
                acc[5] += r[5][t] * x;
                acc[6] += r[6][t] * x;
                acc[7] += r[7][t] * x;
            }
            for (int k = 0; k < 8; k++) {
                double pw = acc[k];
                for (int z = 1; z < m->zeta; z++) pw *= acc[k];
                out[i + k] += m->delta[d] * pw;
            }
        }
        for (; i < n; i++)
            out[i] += m->delta[d] * kq_kernel(s->p[d] + idx[i] * len, q, len, m->zeta);
    }
}

/* Farthest point sampling of M of the n atoms idx[] in the metric of the
 * combined kernel, d^2(a, b) = K(a,a) + K(b,b) - 2 K(a,b) (a distance in the
 * kernel's feature space); starts at the first atom, ties go to the lower
 * index. Fills pick[M] (positions in idx).
 * Pruning by the triangle inequality: with a = the nearest representative of
 * atom i so far, d(i, c) >= d(a, c) - d(i, a), so a new representative c
 * cannot come nearer to i when d(a, c) >= 2 d(i, a); those kernels are not
 * computed (a margin of 1e-6 in d covers the rounding of d from d^2). */
static int fps_select(const kq_model *m, const kq_set *s, const size_t *idx, size_t n, int mrep,
                      size_t *pick, kq_progress_fn progress, void *ctx) {
    const double *const *p = (const double *const *)s->p;
    double *mind = malloc(n * sizeof *mind), *kdiag = malloc(n * sizeof *kdiag);
    double *col = malloc(n * sizeof *col), *dc = malloc((size_t)mrep * sizeof *dc);
    size_t *cl = malloc(n * sizeof *cl), *clpos = malloc(n * sizeof *clpos);
    int *near = malloc(n * sizeof *near);
    unsigned char *taken = calloc(n, 1);
    int rc = KQ_OK;
    if (!mind || !kdiag || !taken || !col || !dc || !cl || !clpos || !near) rc = KQ_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        kdiag[i] = kernel_sum(m, p, idx[i], p, idx[i]);
        mind[i] = HUGE_VAL;
        near[i] = -1;
    }
    size_t cur = 0;
    for (int r = 0; r < mrep && !rc; r++) {
        pick[r] = cur;
        taken[cur] = 1;
        /* distances of the new representative to the earlier ones */
        for (int j = 0; j < r; j++) {
            double d2 = kdiag[cur] + kdiag[pick[j]] -
                        2.0 * kernel_sum(m, p, idx[cur], p, idx[pick[j]]);
            dc[j] = sqrt(d2 > 0.0 ? d2 : 0.0);
        }
        size_t ncl = 0;
        for (size_t i = 0; i < n; i++) {
            if (near[i] >= 0) {
                double di = sqrt(mind[i] > 0.0 ? mind[i] : 0.0);
                if (dc[near[i]] >= 2.0 * di + 1e-6) continue;
            }
            cl[ncl] = idx[i];
            clpos[ncl++] = i;
        }
        kernel_column(m, s, cl, ncl, idx[cur], col);
        for (size_t c = 0; c < ncl; c++) {
            size_t i = clpos[c];
            double d2 = kdiag[i] + kdiag[cur] - 2.0 * col[c];
            if (d2 < mind[i]) {
                mind[i] = d2;
                near[i] = r;
            }
        }
        size_t best = 0;
        double bestd = -1.0;
        for (size_t i = 0; i < n; i++)
            if (!taken[i] && mind[i] > bestd) {
                bestd = mind[i];
                best = i;
            }
        cur = best;
        if (progress && ((r + 1) % 16 == 0 || r + 1 == mrep))
            progress(ctx, "select", (size_t)r + 1, (size_t)mrep);
    }
    free(col);
    free(dc);
    free(cl);
    free(clpos);
    free(near);
    free(mind);
    free(kdiag);
    free(taken);
    return rc;
}

/* K_NM [n][M] of the n atoms idx[] of set s against the model's M
 * representative vectors, by kq_kernel_matrix on runs of consecutive atoms
 * (up to 256) and blocks of 32 representatives (which stay in cache). The
 * values equal kernel_sum's bit for bit. */
static int knm_blocked(const kq_model *m, const kq_set *s, const size_t *idx, size_t n, int mrep,
                       double *knm, kq_progress_fn progress, void *ctx) {
    const size_t rb = 32, ra = 256;
    double *tmp = malloc(ra * rb * sizeof *tmp);
    if (!tmp) return KQ_ENOMEM;
    for (size_t r0 = 0; r0 < (size_t)mrep; r0 += rb) {
        size_t nr = (size_t)mrep - r0 < rb ? (size_t)mrep - r0 : rb;
        for (size_t i = 0; i < n;) {
            size_t len_run = 1;
            while (i + len_run < n && len_run < ra && idx[i + len_run] == idx[i] + len_run)
                len_run++;
            for (size_t a = 0; a < len_run; a++)
                for (size_t b = 0; b < nr; b++) knm[(i + a) * (size_t)mrep + r0 + b] = 0.0;
            for (int d = 0; d < m->ndesc; d++) {
                size_t len = m->len[d];
                kq_kernel_matrix(len_run, s->p[d] + idx[i] * len, nr, m->rep[d] + r0 * len, len,
                                 m->zeta, tmp);
                for (size_t a = 0; a < len_run; a++)
                    for (size_t b = 0; b < nr; b++)
                        knm[(i + a) * (size_t)mrep + r0 + b] += m->delta[d] * tmp[a * nr + b];
            }
            i += len_run;
        }
        if (progress) progress(ctx, "kernel", r0 + nr, (size_t)mrep);
    }
    free(tmp);
    return KQ_OK;
}

/* P = RA K_NM for the molecules of a list (3 rows per molecule): the dipole
 * response to the weights, mu = -P w + Q Rb (Eq. 18). Rows of knm follow the
 * atoms of the molecules in order. */
static void build_p(const kq_set *s, const int *mol, int nmol, const double *knm, int mrep,
                    double *pm) {
    size_t row = 0;
    for (int kk = 0; kk < nmol; kk++) {
        int k = mol[kk];
        size_t a0 = s->first[k];
        int n = (int)(s->first[k + 1] - a0);
        const double *ra = s->ra + 3 * a0;
        for (int c = 0; c < 3; c++) {
            double *out = pm + (3 * (size_t)kk + c) * mrep;
            for (int j = 0; j < mrep; j++) out[j] = 0.0;
            for (int i = 0; i < n; i++) {
                double f = ra[(size_t)c * n + i];
                const double *kr = knm + (row + i) * (size_t)mrep;
                for (int j = 0; j < mrep; j++) out[j] += f * kr[j];
            }
        }
        row += (size_t)n;
    }
}

/* Solve the symmetric positive (semi)definite system s w = rhs by Cholesky;
 * if it is numerically singular add a jitter of 1e-12, 1e-10, ... 1e-4 times
 * the largest diagonal element (deterministic). s is overwritten. */
static int spd_solve_jitter(int n, double *s, double *rhs) {
    double *copy = malloc((size_t)n * n * sizeof *copy);
    if (!copy) return KQ_ENOMEM;
    memcpy(copy, s, (size_t)n * n * sizeof *copy);
    double dmax = 0.0;
    for (int i = 0; i < n; i++)
        if (s[(size_t)i * n + i] > dmax) dmax = s[(size_t)i * n + i];
    double jit = 0.0;
    int rc = KQ_ELINALG;
    for (int attempt = 0; attempt < 6; attempt++) {
        if (attempt > 0) {
            jit = attempt == 1 ? 1e-12 * dmax : jit * 100.0;
            memcpy(s, copy, (size_t)n * n * sizeof *copy);
            for (int i = 0; i < n; i++) s[(size_t)i * n + i] += jit;
        }
        if (la_cholesky(n, s, n, NULL) == LA_OK) {
            rc = la_cholesky_solve(n, 1, s, n, rhs, 1) == LA_OK ? KQ_OK : KQ_ELINALG;
            break;
        }
    }
    free(copy);
    return rc;
}

/* Metrics of the molecules mol[0..nmol-1] of set s from predicted dipoles
 * pred [nmol*3]. */
static void subset_metrics(const kq_set *s, const int *mol, int nmol, const double *pred,
                           double *mae, double *rr) {
    double *ref = malloc((size_t)nmol * 3 * sizeof *ref);
    if (!ref) {
        *mae = *rr = -1.0;
        return;
    }
    for (int k = 0; k < nmol; k++)
        for (int c = 0; c < 3; c++) ref[3 * k + c] = s->dipole_au[3 * mol[k] + c];
    kq_dipole_metrics(nmol, pred, ref, mae, rr);
    free(ref);
}

/* Forgets a model's kernel weights and representative environments (before a
 * new fit, or after a failed one). */
static void drop_fit(kq_model *m) {
    free(m->w);
    m->w = NULL;
    for (int d = 0; d < KQ_MAX_DESC; d++) {
        free(m->rep[d]);
        m->rep[d] = NULL;
    }
    m->nrep = 0;
}

int kq_train(kq_model *m, const kq_set *t, const int *sel, int nsel, const kq_set *valid,
             const kq_train_opts *o, kq_train_report *report, kq_progress_fn progress,
             void *ctx) {
    if (!m || !t || !o) return KQ_EINVAL;
    if (!sel) nsel = t->nmol;
    if (nsel < 1) return KQ_EINVAL;
    for (int kk = 0; kk < nsel; kk++)
        if (sel && (sel[kk] < 0 || sel[kk] >= t->nmol)) return KQ_EINVAL;
    if (!set_matches(m, t) || (valid && !set_matches(m, valid))) return KQ_EINVAL;
    kq_train_report rep = {-1.0, -1.0, -1.0, -1.0};
    if (report) *report = rep;
    drop_fit(m);
    for (int s = 0; s < m->nspecies; s++) m->chi[s] = 0.0;

    int *mol = malloc((size_t)nsel * sizeof *mol);
    if (!mol) return KQ_ENOMEM;
    for (int kk = 0; kk < nsel; kk++) mol[kk] = sel ? sel[kk] : kk;

    if (m->kind == KQ_KIND_QEQ) {
        int rc = train_qeq(m, t, mol, nsel);
        if (!rc && report) {
            const kq_set *sets[2] = {t, valid};
            for (int k = 0; k < 2 && !rc; k++) {
                const kq_set *s = sets[k];
                if (!s) continue;
                double *pd = malloc((size_t)s->nmol * 3 * sizeof *pd), *ps = NULL;
                if (!pd) rc = KQ_ENOMEM;
                if (!rc) rc = kq_set_predict(m, s, pd);
                if (!rc && k == 0) {
                    ps = malloc((size_t)nsel * 3 * sizeof *ps);
                    if (!ps) rc = KQ_ENOMEM;
                    for (int kk = 0; kk < nsel && !rc; kk++)
                        for (int c = 0; c < 3; c++) ps[3 * kk + c] = pd[3 * mol[kk] + c];
                    if (!rc)
                        subset_metrics(s, mol, nsel, ps, &rep.train_mae_debye,
                                       &rep.train_rrmse_percent);
                } else if (!rc) {
                    kq_dipole_metrics(s->nmol, pd, s->dipole_au, &rep.valid_mae_debye,
                                      &rep.valid_rrmse_percent);
                }
                free(pd);
                free(ps);
            }
            *report = rep;
        }
        free(mol);
        return rc;
    }
    if (o->nreg < 1 || !o->reg) {
        free(mol);
        return KQ_EINVAL;
    }
    for (int g = 0; g < o->nreg; g++)
        if (!(o->reg[g] > 0.0) || !isfinite(o->reg[g])) {
            free(mol);
            return KQ_EINVAL;
        }

    /* Training atoms, molecule by molecule. */
    size_t n = 0;
    for (int kk = 0; kk < nsel; kk++) n += t->first[mol[kk] + 1] - t->first[mol[kk]];
    for (size_t i = 0; i < t->natoms; i++)
        if (species_index(m, t->z[i]) < 0) {
            free(mol);
            return KQ_ESPECIES;
        }
    int sparse = o->sparse > 0;
    size_t mrep_z = sparse ? ((size_t)o->sparse < n ? (size_t)o->sparse : n) : n;
    if (mrep_z > (size_t)INT_MAX / 4 || n > SIZE_MAX / sizeof(double) / mrep_z) {
        free(mol);
        return KQ_ENOMEM;
    }
    int mrep = (int)mrep_z;
    size_t nrow = 3 * (size_t)nsel;
    size_t nv = valid ? valid->natoms : 0;
    int rc = KQ_OK;
    size_t *idx = malloc(n * sizeof *idx), *pick = malloc((size_t)mrep * sizeof *pick);
    double *knm = malloc(n * (size_t)mrep * sizeof *knm);
    double *pm = malloc(nrow * (size_t)mrep * sizeof *pm);
    double *y = malloc(nrow * sizeof *y);
    double *g = malloc((size_t)mrep * mrep * sizeof *g);  /* P^T P (sparse) or RA^T P (full) */
    double *kmm = sparse ? malloc((size_t)mrep * mrep * sizeof *kmm) : NULL;
    double *rhs0 = malloc((size_t)mrep * sizeof *rhs0);
    double *sys = malloc((size_t)mrep * mrep * sizeof *sys);
    double *wv = malloc((size_t)mrep * sizeof *wv), *wbest = malloc((size_t)mrep * sizeof *wbest);
    int *piv = sparse ? NULL : malloc((size_t)mrep * sizeof *piv);
    double *pv = NULL, *kvm = NULL, *predv = NULL;
    int *vmol = NULL;
    if (!idx || !pick || !knm || !pm || !y || !g || (sparse && !kmm) || !rhs0 || !sys || !wv ||
        !wbest || (!sparse && !piv))
        rc = KQ_ENOMEM;
    if (!rc) {
        size_t a = 0;
        for (int kk = 0; kk < nsel; kk++)
            for (size_t i = t->first[mol[kk]]; i < t->first[mol[kk] + 1]; i++) idx[a++] = i;
        for (int kk = 0; kk < nsel; kk++)
            for (int c = 0; c < 3; c++)
                y[3 * (size_t)kk + c] =
                    t->dipole_au[3 * mol[kk] + c] - t->charge[mol[kk]] * t->rb[3 * mol[kk] + c];
    }
    /* Representative atoms (FPS, or all atoms for the full form), their
     * vectors into the model, then K_NM. */
    if (!rc && sparse) {
        rc = fps_select(m, t, idx, n, mrep, pick, progress, ctx);
    } else if (!rc) {
        for (size_t i = 0; i < n; i++) pick[i] = i;
    }
    if (!rc) {
        m->w = malloc((size_t)mrep * sizeof *m->w);
        if (!m->w) rc = KQ_ENOMEM;
        for (int d = 0; d < m->ndesc && !rc; d++) {
            m->rep[d] = malloc((size_t)mrep * m->len[d] * sizeof(double));
            if (!m->rep[d]) {
                rc = KQ_ENOMEM;
                break;
            }
            for (int r = 0; r < mrep; r++)
                memcpy(m->rep[d] + (size_t)r * m->len[d], t->p[d] + idx[pick[r]] * m->len[d],
                       m->len[d] * sizeof(double));
        }
    }
    if (!rc) rc = knm_blocked(m, t, idx, n, mrep, knm, progress, ctx);
    if (!rc) {
        build_p(t, mol, nsel, knm, mrep, pm);
        if (progress) progress(ctx, "normal equations", 0, 1);
        if (sparse) {
            /* Sparse normal equations (specs/kqeq.md):
             * (P^T P + sigma K_MM) w = -P^T y, P = R A K_NM. */
            for (size_t e = 0; e < (size_t)mrep * mrep; e++) g[e] = 0.0;
            for (size_t r = 0; r < nrow; r++) {
                const double *pr = pm + r * mrep;
                for (int i = 0; i < mrep; i++) {
                    double f = pr[i];
                    double *gi = g + (size_t)i * mrep;
                    for (int j = i; j < mrep; j++) gi[j] += f * pr[j];
                }
            }
            for (int i = 0; i < mrep; i++)
                for (int j = 0; j < i; j++) g[(size_t)i * mrep + j] = g[(size_t)j * mrep + i];
            for (int i = 0; i < mrep; i++)
                for (int j = 0; j < mrep; j++)
                    kmm[(size_t)i * mrep + j] = knm[pick[i] * (size_t)mrep + j];
            for (int j = 0; j < mrep; j++) {
                double s = 0.0;
                for (size_t r = 0; r < nrow; r++) s += pm[r * mrep + j] * y[r];
                rhs0[j] = -s;
            }
        } else {
            /* Full form, Eq. 20: (A R^T R A K + sigma 1) w = -A R^T mu_ref,
             * with A R^T R A K = (RA)^T P assembled molecule by molecule. */
            size_t row = 0;
            for (int kk = 0; kk < nsel; kk++) {
                int k = mol[kk];
                size_t a0 = t->first[k];
                int nk = (int)(t->first[k + 1] - a0);
                const double *ra = t->ra + 3 * a0;
                for (int i = 0; i < nk; i++) {
                    double *gi = g + (row + i) * mrep;
                    double s = 0.0;
                    for (int j = 0; j < mrep; j++) gi[j] = 0.0;
                    for (int c = 0; c < 3; c++) {
                        double f = ra[(size_t)c * nk + i];
                        const double *pr = pm + (3 * (size_t)kk + c) * mrep;
                        for (int j = 0; j < mrep; j++) gi[j] += f * pr[j];
                        s += f * y[3 * (size_t)kk + c];
                    }
                    rhs0[row + i] = -s;
                }
                row += (size_t)nk;
            }
        }
    }
    /* Validation: P_v = R A K_vM for the validation molecules. */
    if (!rc && valid) {
        vmol = malloc((size_t)valid->nmol * sizeof *vmol);
        kvm = malloc(nv * (size_t)mrep * sizeof *kvm);
        pv = malloc(3 * (size_t)valid->nmol * mrep * sizeof *pv);
        predv = malloc(3 * (size_t)valid->nmol * sizeof *predv);
        if (!vmol || !kvm || !pv || !predv) rc = KQ_ENOMEM;
        if (!rc) {
            for (int k = 0; k < valid->nmol; k++) vmol[k] = k;
            rc = kernel_rows(m, valid, (const double *const *)m->rep, mrep, kvm,
                             "validation kernel", progress, ctx);
        }
        if (!rc) {
            build_p(valid, vmol, valid->nmol, kvm, mrep, pv);
        }
    }
    /* Solve for each sigma of the grid; keep the best on validation. */
    double best_mae = HUGE_VAL, best_reg = 0.0;
    int have = 0;
    for (int gi = 0; gi < o->nreg && !rc; gi++) {
        double sg = o->reg[gi];
        if (progress) progress(ctx, "solve", (size_t)gi, (size_t)o->nreg);
        memcpy(sys, g, (size_t)mrep * mrep * sizeof *sys);
        memcpy(wv, rhs0, (size_t)mrep * sizeof *wv);
        if (sparse) {
            for (size_t e = 0; e < (size_t)mrep * mrep; e++) sys[e] += sg * kmm[e];
            rc = spd_solve_jitter(mrep, sys, wv);
        } else {
            for (int i = 0; i < mrep; i++) sys[(size_t)i * mrep + i] += sg;
            if (la_lu(mrep, sys, mrep, piv, NULL) != LA_OK ||
                la_lu_solve(mrep, 1, sys, mrep, piv, wv, 1) != LA_OK)
                rc = KQ_ELINALG;
        }
        if (rc) break;
        double mae = 0.0;
        if (valid) {
            for (int k = 0; k < valid->nmol; k++)
                for (int c = 0; c < 3; c++) {
                    const double *pr = pv + (3 * (size_t)k + c) * mrep;
                    double s = 0.0;
                    for (int j = 0; j < mrep; j++) s += pr[j] * wv[j];
                    predv[3 * k + c] = -s + valid->charge[k] * valid->rb[3 * k + c];
                }
            kq_dipole_metrics(valid->nmol, predv, valid->dipole_au, &mae, NULL);
        }
        /* ties (and no validation set: only the first value) keep the larger sigma */
        if (!have || (valid && (mae < best_mae || (mae == best_mae && sg > best_reg)))) {
            have = 1;
            best_mae = mae;
            best_reg = sg;
            memcpy(wbest, wv, (size_t)mrep * sizeof *wv);
        }
        if (!valid) break;
    }
    /* never a NaN model (kqeq.h): the weights and the training dipoles they
     * give (mu = -P w + Q Rb) must be finite */
    double *pt = rc ? NULL : malloc(nrow * sizeof *pt);
    if (!rc && !pt) rc = KQ_ENOMEM;
    if (!rc) {
        for (int kk = 0; kk < nsel; kk++)
            for (int c = 0; c < 3; c++) {
                const double *pr = pm + (3 * (size_t)kk + c) * mrep;
                double s = 0.0;
                for (int j = 0; j < mrep; j++) s += pr[j] * wbest[j];
                pt[3 * kk + c] = -s + t->charge[mol[kk]] * t->rb[3 * mol[kk] + c];
            }
        if (!kq_all_finite((size_t)mrep, wbest) || !kq_all_finite(nrow, pt)) rc = KQ_ERANGE;
    }
    if (!rc && valid) {
        for (int k = 0; k < valid->nmol; k++)
            for (int c = 0; c < 3; c++) {
                const double *pr = pv + (3 * (size_t)k + c) * mrep;
                double s = 0.0;
                for (int j = 0; j < mrep; j++) s += pr[j] * wbest[j];
                predv[3 * k + c] = -s + valid->charge[k] * valid->rb[3 * k + c];
            }
        if (!kq_all_finite(3 * (size_t)valid->nmol, predv)) rc = KQ_ERANGE;
    }
    if (!rc) {
        memcpy(m->w, wbest, (size_t)mrep * sizeof *wbest);
        m->nrep = mrep;
        m->reg = best_reg;
        if (report) {
            /* errors from the assembled P: mu = -P w + Q Rb */
            subset_metrics(t, mol, nsel, pt, &rep.train_mae_debye, &rep.train_rrmse_percent);
            if (valid) /* predv: the chosen weights' dipoles (above) */
                kq_dipole_metrics(valid->nmol, predv, valid->dipole_au, &rep.valid_mae_debye,
                                  &rep.valid_rrmse_percent);
            *report = rep;
        }
        if (progress) progress(ctx, "solve", (size_t)o->nreg, (size_t)o->nreg);
    } else {
        drop_fit(m);
    }
    free(pt);
    free(idx);
    free(pick);
    free(knm);
    free(pm);
    free(y);
    free(g);
    free(kmm);
    free(rhs0);
    free(sys);
    free(wv);
    free(wbest);
    free(piv);
    free(pv);
    free(kvm);
    free(predv);
    free(vmol);
    free(mol);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Model text                                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
    int bad;
} tbuf;

static void tb_put(tbuf *b, const char *str, size_t n) {
    if (b->bad) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->bad = 1;
                return;
            }
            cap *= 2;
        }
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->bad = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, str, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void tb_str(tbuf *b, const char *str) { tb_put(b, str, strlen(str)); }

static void tb_num(tbuf *b, double v) {
    char t[40];
    int k = snprintf(t, sizeof t, " %.17g", v);
    tb_put(b, t, (size_t)k);
}

static void tb_int(tbuf *b, long v) {
    char t[32];
    int k = snprintf(t, sizeof t, " %ld", v);
    tb_put(b, t, (size_t)k);
}

int kq_model_write(const kq_model *m, char **text, size_t *len) {
    if (!m || !text || !len) return KQ_EINVAL;
    /* every number finite, or the reader would refuse the text (kqeq.h) */
    if (m->nspecies < 0 || m->nspecies > KQ_MAX_SPECIES || m->ndesc < 0 ||
        m->ndesc > KQ_MAX_DESC || m->nrep < 0 || (m->nrep > 0 && !m->w))
        return KQ_EINVAL;
    int finite = isfinite(m->s_at) && isfinite(m->reg) &&
                 kq_all_finite((size_t)m->nspecies, m->chi) &&
                 kq_all_finite((size_t)m->nspecies, m->eta) &&
                 kq_all_finite((size_t)m->nrep, m->w);
    for (int d = 0; d < m->ndesc; d++) {
        finite &= isfinite(m->soap[d].rcut) && isfinite(m->soap[d].sigma) &&
                  isfinite(m->delta[d]);
        if (m->nrep > 0) {
            if (!m->rep[d]) return KQ_EINVAL;
            finite &= kq_all_finite((size_t)m->nrep * m->len[d], m->rep[d]);
        }
    }
    if (!finite) return KQ_EINVAL;
    tbuf b = {0};
    tb_str(&b, "KQEQ_MODEL_V1\n");
    tb_str(&b, m->kind == KQ_KIND_QEQ ? "kind qeq\n" : "kind kqeq\n");
    tb_str(&b, "# units: chi hartree/e, eta hartree/e^2, w hartree/e, reg (e*bohr)^2;"
               " rcut, sigma angstrom; kernel sum_d delta_d (p.p')^zeta\n");
    tb_str(&b, "s_at");
    tb_num(&b, m->s_at);
    tb_str(&b, "\nspecies");
    tb_int(&b, m->nspecies);
    for (int s = 0; s < m->nspecies; s++) tb_int(&b, m->species[s]);
    tb_str(&b, "\nchi");
    tb_int(&b, m->nspecies);
    for (int s = 0; s < m->nspecies; s++) tb_num(&b, m->chi[s]);
    tb_str(&b, "\neta");
    tb_int(&b, m->nspecies);
    for (int s = 0; s < m->nspecies; s++) tb_num(&b, m->eta[s]);
    tb_str(&b, "\nzeta");
    tb_int(&b, m->zeta);
    tb_str(&b, "\nreg");
    tb_num(&b, m->reg);
    tb_str(&b, "\nndesc");
    tb_int(&b, m->ndesc);
    tb_str(&b, "\n");
    for (int d = 0; d < m->ndesc; d++) {
        tb_str(&b, "desc");
        tb_int(&b, d);
        tb_str(&b, " rcut");
        tb_num(&b, m->soap[d].rcut);
        tb_str(&b, " nmax");
        tb_int(&b, m->soap[d].nmax);
        tb_str(&b, " lmax");
        tb_int(&b, m->soap[d].lmax);
        tb_str(&b, " sigma");
        tb_num(&b, m->soap[d].sigma);
        tb_str(&b, " delta");
        tb_num(&b, m->delta[d]);
        tb_str(&b, " length");
        tb_int(&b, (long)m->len[d]);
        tb_str(&b, "\n");
    }
    tb_str(&b, "nrep");
    tb_int(&b, m->nrep);
    tb_str(&b, "\n");
    for (int r = 0; r < m->nrep; r++) {
        tb_str(&b, "rep");
        tb_int(&b, r);
        tb_num(&b, m->w[r]);
        tb_str(&b, "\n");
        for (int d = 0; d < m->ndesc; d++) {
            tb_str(&b, "v");
            tb_int(&b, d);
            const double *v = m->rep[d] + (size_t)r * m->len[d];
            for (size_t i = 0; i < m->len[d]; i++) tb_num(&b, v[i]);
            tb_str(&b, "\n");
        }
    }
    tb_str(&b, "end\n");
    if (b.bad) {
        free(b.s);
        return KQ_ENOMEM;
    }
    *text = b.s;
    *len = b.len;
    return KQ_OK;
}

/* Line reader over a memory buffer: copies each line NUL-terminated into
 * line, skipping '#' comment lines and blank lines. Every failing check
 * writes its reason into msg [msglen] (if not NULL), see pr_fail. */
typedef struct {
    const char *p, *end;
    int lineno;
    char *line;
    size_t cap;
    char *cur; /* token cursor in line */
    int nomem;
    int nul;   /* the current line holds a NUL byte */
    char *msg;
    size_t msglen;
} preader;

/* Record the reason of a failure (the first one wins); returns 0. */
static int pr_fail(preader *r, const char *fmt, ...) {
    if (r->msg && r->msglen > 0 && r->msg[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, r->msglen, fmt, ap);
        va_end(ap);
        /* quoted tokens may hold control bytes (a stray CR): keep one plain line */
        for (char *c = r->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f) *c = '?';
    }
    return 0;
}

static int pr_next(preader *r) {
    for (;;) {
        if (r->p >= r->end) return 0;
        const char *e = memchr(r->p, '\n', (size_t)(r->end - r->p));
        size_t n = e ? (size_t)(e - r->p) : (size_t)(r->end - r->p);
        r->lineno++;
        if (n + 1 > r->cap) {
            char *nl = realloc(r->line, n + 1);
            if (!nl) {
                r->nomem = 1;
                return 0;
            }
            r->line = nl;
            r->cap = n + 1;
        }
        memcpy(r->line, r->p, n);
        r->line[n] = '\0';
        r->p += n + (e ? 1 : 0);
        if (n > 0 && r->line[n - 1] == '\r') r->line[--n] = '\0';
        r->nul = 0;
        if (strlen(r->line) != n) {
            r->cur = NULL; /* an embedded NUL byte: damaged, no tokens */
            r->nul = 1;
            return 1;
        }
        r->cur = r->line;
        while (*r->cur == ' ' || *r->cur == '\t') r->cur++;
        if (*r->cur == '\0' || *r->cur == '#') continue;
        return 1;
    }
}

/* Next whitespace-separated token of the current line, or NULL. */
static const char *pr_tok(preader *r) {
    if (!r->cur) return NULL;
    char *s = r->cur;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\0') return NULL;
    char *e = s;
    while (*e && *e != ' ' && *e != '\t') e++;
    if (*e) *e++ = '\0';
    r->cur = e;
    return s;
}

/* The reason for a missing token: a NUL byte or the end of the line. */
static int pr_missing(preader *r, const char *what, const char *expected) {
    if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
    return pr_fail(r, "%s: expected %s, found the end of the line", what, expected);
}

static int pr_end_of_line(preader *r, const char *what) {
    if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
    const char *t = pr_tok(r);
    if (t) return pr_fail(r, "%s: unexpected text '%.40s' at the end of the line", what, t);
    return 1;
}

static int pr_word(preader *r, const char *w) {
    const char *t = pr_tok(r);
    if (!t) {
        if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
        return pr_fail(r, "expected '%s', found the end of the line", w);
    }
    if (strcmp(t, w) != 0) return pr_fail(r, "expected '%s', found '%.40s'", w, t);
    return 1;
}

static int pr_double(preader *r, const char *what, double *v) {
    const char *t = pr_tok(r);
    if (!t) return pr_missing(r, what, "a number");
    char *e;
    double x = strtod(t, &e);
    if (e == t || *e != '\0') return pr_fail(r, "%s: '%.40s' is not a number", what, t);
    if (!isfinite(x)) return pr_fail(r, "%s: '%.40s' is not a finite number", what, t);
    *v = x;
    return 1;
}

/* The integer token t (not NULL) in [lo, hi]. */
static int pr_long_tok(preader *r, const char *what, const char *t, long lo, long hi, long *v) {
    char *e;
    errno = 0;
    long x = strtol(t, &e, 10);
    if (lo == hi && (e == t || *e != '\0' || x != lo))
        return pr_fail(r, "%s: expected %ld, found '%.40s'", what, lo, t);
    if (e != t && *e == '\0' && errno == ERANGE)
        return pr_fail(r, "%s: '%.40s' is out of range", what, t);
    if (e == t || *e != '\0' || x < lo || x > hi)
        return pr_fail(r, "%s: '%.40s' is not an integer in [%ld, %ld]", what, t, lo, hi);
    *v = x;
    return 1;
}

static int pr_long(preader *r, const char *what, long lo, long hi, long *v) {
    const char *t = pr_tok(r);
    if (!t) return pr_missing(r, what, "an integer");
    return pr_long_tok(r, what, t, lo, hi, v);
}

/* n numbers, and nothing more on the line: "expected n values, found k". */
static int pr_values(preader *r, const char *what, size_t n, double *v) {
    for (size_t i = 0; i < n; i++) {
        const char *t = pr_tok(r);
        if (!t) {
            if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
            return pr_fail(r, "%s: expected %zu values, found %zu", what, n, i);
        }
        char *e;
        double x = strtod(t, &e);
        if (e == t || *e != '\0') return pr_fail(r, "%s: '%.40s' is not a number", what, t);
        if (!isfinite(x)) return pr_fail(r, "%s: '%.40s' is not a finite number", what, t);
        v[i] = x;
    }
    size_t extra = 0;
    while (pr_tok(r)) extra++;
    if (extra) return pr_fail(r, "%s: expected %zu values, found %zu", what, n, n + extra);
    return 1;
}

/* A representative vector must have unit length (kq_normalize_rows), or be
 * all zero (a zero row stays zero): anything else is not a model that
 * kq_train wrote, and a huge value would give NaN or Inf predictions. */
#define KQ_REP_NORM_TOL 1e-8

int kq_model_read(const char *text, size_t len, kq_model *m, int *line) {
    return kq_model_read_msg(text, len, m, line, NULL, 0);
}

int kq_model_read_msg(const char *text, size_t len, kq_model *m, int *line, char *msg,
                      size_t msglen) {
    if (line) *line = 0;
    if (msg && msglen > 0) msg[0] = '\0';
    if (!text || !m) return KQ_EINVAL;
    memset(m, 0, sizeof *m);
    preader r = {text, text + len, 0, NULL, 0, NULL, 0, 0, msg, msglen};
    int rc = KQ_EFORMAT;
    long v;
    double x;
#define NEXT_LINE(expected)                                                                    \
    do {                                                                                       \
        if (!pr_next(&r)) {                                                                    \
            if (r.nomem) {                                                                     \
                rc = KQ_ENOMEM;                                                                \
                pr_fail(&r, "out of memory");                                                  \
            } else {                                                                           \
                pr_fail(&r, "unexpected end of text: expected %s", expected);                  \
            }                                                                                  \
            r.lineno++;                                                                        \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)
#define REQUIRE(cond)           \
    do {                        \
        if (!(cond)) goto fail; \
    } while (0)
#define REQUIRE_MSG(cond, ...)          \
    do {                                \
        if (!(cond)) {                  \
            pr_fail(&r, __VA_ARGS__);   \
            goto fail;                  \
        }                               \
    } while (0)
    /* version line: must be the very first line. The wording names what the
     * text is not, for programs handed the wrong kind of file. */
    if (len == 0) {
        r.lineno = 1;
        REQUIRE_MSG(0, "empty text: not a kqeq model (damaged or truncated kqeq model text, "
                       "expected first line 'KQEQ_MODEL_V1')");
    }
    NEXT_LINE("the line 'KQEQ_MODEL_V1'");
    {
        const char *t = r.lineno == 1 ? pr_tok(&r) : NULL;
        REQUIRE_MSG(r.lineno == 1 && t && !strcmp(t, "KQEQ_MODEL_V1") && !pr_tok(&r),
                    "first line must be exactly 'KQEQ_MODEL_V1': not a kqeq model "
                    "(damaged or truncated kqeq model text)");
    }
    NEXT_LINE("'kind kqeq' or 'kind qeq'");
    REQUIRE(pr_word(&r, "kind"));
    {
        const char *k = pr_tok(&r);
        if (!k) REQUIRE(pr_missing(&r, "kind", "kqeq or qeq"));
        REQUIRE_MSG(!strcmp(k, "kqeq") || !strcmp(k, "qeq"),
                    "kind: unknown kind '%.40s' (kqeq or qeq)", k);
        m->kind = !strcmp(k, "qeq") ? KQ_KIND_QEQ : KQ_KIND_KQEQ;
        REQUIRE(pr_end_of_line(&r, "kind"));
    }
    NEXT_LINE("the 's_at' line");
    REQUIRE(pr_word(&r, "s_at") && pr_double(&r, "s_at", &x));
    REQUIRE_MSG(x > 0.0, "s_at: %g is not positive", x);
    REQUIRE(pr_end_of_line(&r, "s_at"));
    m->s_at = x;
    NEXT_LINE("the 'species' line");
    REQUIRE(pr_word(&r, "species") && pr_long(&r, "species count", 1, KQ_MAX_SPECIES, &v));
    m->nspecies = (int)v;
    for (int s = 0; s < m->nspecies; s++) {
        const char *t = pr_tok(&r);
        if (!t && r.nul) REQUIRE(pr_missing(&r, "species", "an atomic number"));
        REQUIRE_MSG(t, "species: expected %d atomic numbers, found %d", m->nspecies, s);
        REQUIRE(pr_long_tok(&r, "species", t, 1, 118, &v));
        REQUIRE_MSG(kq_qeq_radius((int)v) > 0.0,
                    "species: element %ld has no QEq radius (known: 1 6 7 8 9 16 17)", v);
        REQUIRE_MSG(s == 0 || v > m->species[s - 1],
                    "species: atomic numbers must be ascending and distinct (%ld after %d)", v,
                    m->species[s - 1]);
        m->species[s] = (int)v;
    }
    {
        size_t extra = 0;
        while (pr_tok(&r)) extra++;
        REQUIRE_MSG(extra == 0, "species: expected %d atomic numbers, found %zu", m->nspecies,
                    (size_t)m->nspecies + extra);
    }
    NEXT_LINE("the 'chi' line");
    REQUIRE(pr_word(&r, "chi") && pr_long(&r, "chi count", m->nspecies, m->nspecies, &v));
    REQUIRE(pr_values(&r, "chi", (size_t)m->nspecies, m->chi));
    NEXT_LINE("the 'eta' line");
    REQUIRE(pr_word(&r, "eta") && pr_long(&r, "eta count", m->nspecies, m->nspecies, &v));
    REQUIRE(pr_values(&r, "eta", (size_t)m->nspecies, m->eta));
    NEXT_LINE("the 'zeta' line");
    REQUIRE(pr_word(&r, "zeta") && pr_long(&r, "zeta", 1, 16, &v) && pr_end_of_line(&r, "zeta"));
    m->zeta = (int)v;
    NEXT_LINE("the 'reg' line");
    REQUIRE(pr_word(&r, "reg") && pr_double(&r, "reg", &x));
    REQUIRE_MSG(x >= 0.0, "reg: %g is negative", x);
    REQUIRE(pr_end_of_line(&r, "reg"));
    m->reg = x;
    NEXT_LINE("the 'ndesc' line");
    REQUIRE(pr_word(&r, "ndesc") && pr_long(&r, "ndesc", 0, KQ_MAX_DESC, &v) &&
            pr_end_of_line(&r, "ndesc"));
    REQUIRE_MSG((m->kind == KQ_KIND_QEQ) == (v == 0),
                m->kind == KQ_KIND_QEQ ? "ndesc: a kind qeq model has ndesc 0, found %ld"
                                       : "ndesc: a kind kqeq model has ndesc 1..4, found %ld",
                v);
    m->ndesc = (int)v;
    long lens[KQ_MAX_DESC];
    int desc_line[KQ_MAX_DESC];
    for (int d = 0; d < m->ndesc; d++) {
        NEXT_LINE("a 'desc' line");
        desc_line[d] = r.lineno;
        kq_soap_params *sp = &m->soap[d];
        REQUIRE(pr_word(&r, "desc") && pr_long(&r, "desc", d, d, &v));
        REQUIRE(pr_word(&r, "rcut") && pr_double(&r, "rcut", &sp->rcut));
        REQUIRE_MSG(sp->rcut > 1.0, "rcut: %g angstrom is not > 1", sp->rcut);
        REQUIRE(pr_word(&r, "nmax") && pr_long(&r, "nmax", 1, 64, &v));
        sp->nmax = (int)v;
        REQUIRE(pr_word(&r, "lmax") && pr_long(&r, "lmax", 0, KQ_MAX_LMAX, &v));
        sp->lmax = (int)v;
        REQUIRE(pr_word(&r, "sigma") && pr_double(&r, "sigma", &sp->sigma));
        REQUIRE_MSG(sp->sigma >= KQ_SOAP_MIN_SIGMA, "sigma: %g angstrom is below %g",
                    sp->sigma, KQ_SOAP_MIN_SIGMA);
        REQUIRE(pr_word(&r, "delta") && pr_double(&r, "delta", &m->delta[d]));
        REQUIRE_MSG(m->delta[d] > 0.0, "delta: %g is not positive", m->delta[d]);
        REQUIRE(pr_word(&r, "length") && pr_long(&r, "length", 1, LONG_MAX, &lens[d]));
        REQUIRE(pr_end_of_line(&r, "desc"));
    }
    {
        int mc = model_make_calcs(m);
        if (mc == KQ_ENOMEM) {
            rc = KQ_ENOMEM;
            pr_fail(&r, "out of memory for the SOAP tables");
            goto fail;
        }
        if (mc) {
            /* the calculators are made in order: the first without one failed */
            int d = 0;
            while (d < m->ndesc - 1 && m->calc[d]) d++;
            r.lineno = m->ndesc ? desc_line[d] : r.lineno;
            REQUIRE_MSG(0, "desc %d: SOAP settings rcut %g nmax %d lmax %d sigma %g refused (%s)",
                        d, m->soap[d].rcut, m->soap[d].nmax, m->soap[d].lmax, m->soap[d].sigma,
                        kq_strerror(mc));
        }
        for (int d = 0; d < m->ndesc; d++)
            if ((long)m->len[d] != lens[d]) {
                r.lineno = desc_line[d];
                REQUIRE_MSG(0,
                            "desc %d: length %ld does not match nmax, lmax and %d species "
                            "(%zu)",
                            d, lens[d], m->nspecies, m->len[d]);
            }
    }
    NEXT_LINE("the 'nrep' line");
    REQUIRE(pr_word(&r, "nrep") && pr_long(&r, "nrep", 0, LONG_MAX, &v) &&
            pr_end_of_line(&r, "nrep"));
    REQUIRE_MSG((m->kind == KQ_KIND_QEQ) == (v == 0),
                m->kind == KQ_KIND_QEQ ? "nrep: a kind qeq model has nrep 0, found %ld"
                                       : "nrep: a kind kqeq model has nrep >= 1, found %ld",
                v);
    {
        /* Every value takes at least two characters of text: a larger count
         * cannot be true, so refuse it before allocating. */
        size_t per = 1;
        for (int d = 0; d < m->ndesc; d++) per += m->len[d];
        REQUIRE_MSG((unsigned long)v <= len / 2 / per,
                    "nrep %ld is larger than the text can hold", v);
        REQUIRE_MSG(v <= INT_MAX / 4, "nrep %ld is more than %d", v, INT_MAX / 4);
    }
    m->nrep = (int)v;
    if (m->nrep > 0) {
        m->w = malloc((size_t)m->nrep * sizeof *m->w);
        if (!m->w) {
            rc = KQ_ENOMEM;
            pr_fail(&r, "out of memory for %d representatives", m->nrep);
            goto fail;
        }
        for (int d = 0; d < m->ndesc; d++) {
            m->rep[d] = malloc((size_t)m->nrep * m->len[d] * sizeof(double));
            if (!m->rep[d]) {
                rc = KQ_ENOMEM;
                pr_fail(&r, "out of memory for %d representatives", m->nrep);
                goto fail;
            }
        }
    }
    for (int rr = 0; rr < m->nrep; rr++) {
        NEXT_LINE("a 'rep' line");
        REQUIRE(pr_word(&r, "rep") && pr_long(&r, "rep", rr, rr, &v) &&
                pr_double(&r, "weight", &m->w[rr]) && pr_end_of_line(&r, "rep"));
        for (int d = 0; d < m->ndesc; d++) {
            NEXT_LINE("a 'v' line");
            REQUIRE(pr_word(&r, "v") && pr_long(&r, "v", d, d, &v));
            double *vec = m->rep[d] + (size_t)rr * m->len[d];
            REQUIRE(pr_values(&r, "v", m->len[d], vec));
            /* unit length or zero (see KQ_REP_NORM_TOL); sum as kq_normalize_rows */
            double nrm = sqrt(kq_dot(vec, vec, m->len[d]));
            REQUIRE_MSG(nrm == 0.0 || fabs(nrm - 1.0) <= KQ_REP_NORM_TOL,
                        "v %d of representative %d: Euclidean length %.17g, not 1 (nor 0)", d,
                        rr, nrm);
        }
    }
    NEXT_LINE("the line 'end'");
    REQUIRE(pr_word(&r, "end") && pr_end_of_line(&r, "end"));
    /* nothing but comments after "end" */
    REQUIRE_MSG(!pr_next(&r), "text after 'end'");
    free(r.line);
    return KQ_OK;
fail:
    if (line) *line = r.lineno;
    pr_fail(&r, "damaged kqeq model text"); /* only if no reason was recorded */
    free(r.line);
    kq_model_free(m);
    return rc;
#undef NEXT_LINE
#undef REQUIRE
#undef REQUIRE_MSG
}
