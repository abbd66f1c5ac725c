/* SPDX-License-Identifier: MIT */
/* kqeq.c - kernel charge equilibration (kQEq, Staacke et al. 2021).
 *
 * What is here, in reading order: the plain SOAP kernels of Eq. 12
 * (descriptors from soap.c; their fast copies, the same bits, are in
 * kqeq_kernels.c); element data (QEq radii, masses, default
 * electronegativities); classical QEq with Gaussian charges (hardness matrix
 * Eq. 9, constrained solution Eqs. 10 and 13, dipole Eq. 17); the kernels of
 * Eq. 11 over several descriptors; kQEq training, the closed form of Eq. 20
 * and its sparse (representative atoms) form; prediction of charges, dipoles
 * and polarizabilities. The model text (KQEQ_MODEL_V1) is in kqeq_model.c.
 *
 * Sources: "Eq. N" is an equation of the kQEq paper (../shared/papers/
 * kqeq-paper.txt), "spec" is ../shared/specs/kqeq.md. Units: atomic units
 * inside (bohr, e, hartree) and at the interface, except positions (angstrom,
 * converted once in kq_com_positions_au). C11, libc and libm only (no POSIX,
 * no M_PI); uses soap.h, linalg.h and the private kqeq_kernels.h and
 * kqeq_internal.h (kqi_* helpers shared with kqeq_model.c).
 */
#include "kqeq.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kqeq_internal.h" /* helpers shared with kqeq_model.c */
#include "kqeq_kernels.h"  /* the fast kernels (kqeq_kernels.c) */
#include "linalg.h"

#define KQ_PI 3.14159265358979323846

/* 1 if all n values are finite (neither NaN nor Inf) */
int kqi_all_finite(size_t n, const double *v) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Kernels: k(p, p') = (p . p')^zeta of normalised SOAP vectors, Eq. 12      */
/* (zeta = 2 in the paper; specs/soap.md "Kernel used by kQEq")              */
/* ------------------------------------------------------------------------ */

/* sum_t p[t] q[t], t ascending from 0 (the one summation order that every
 * kernel function here uses, so kq_kernel and kq_kernel_matrix agree bitwise) */
double kqi_dot(const double *p, const double *q, size_t len) {
    double d = 0.0;
    for (size_t t = 0; t < len; t++) d += p[t] * q[t];
    return d;
}

/* d^zeta by repeated multiplication (zeta <= 0: 1): the power of Eq. 12 */
static double kq_ipow(double d, int zeta) {
    double r = 1.0;
    for (int i = 0; i < zeta; i++) r = i == 0 ? d : r * d;
    return r;
}

void kq_normalize_rows(size_t n, size_t len, double *p) {
    for (size_t i = 0; i < n; i++) {
        double *row = p + i * len;
        double nrm = sqrt(kqi_dot(row, row, len));
        if (nrm > 0.0)
            for (size_t t = 0; t < len; t++) row[t] /= nrm;
    }
}

double kq_kernel(const double *p, const double *q, size_t len, int zeta) {
    return kq_ipow(kqi_dot(p, q, len), zeta);
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
    /* a <- H^-1 (solve with the identity), symmetrised so A is exactly symmetric.
     * (la_trsm_lower skips the identity's leading zeros, bit-exactly.) */
    for (size_t k = 0; k < nn; k++) a[k] = 0.0;
    for (int i = 0; i < n; i++) a[(size_t)i * n + i] = 1.0;
    int rc = la_cholesky_solve(n, n, l, n, a, n);
    free(l);
    if (rc != LA_OK) return KQ_ELINALG;
    /* in 32 x 32 tiles so that the column walk stays in cache; each pair
     * (i, j) is averaged once, whatever the order */
    for (int i0 = 0; i0 < n; i0 += 32)
        for (int j0 = i0; j0 < n; j0 += 32)
            for (int i = i0; i < i0 + 32 && i < n; i++)
                for (int j = (j0 > i + 1 ? j0 : i + 1); j < j0 + 32 && j < n; j++) {
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
 * H, RA (3 x n) and Rb (3), and what mol_charges needs, by one of two paths
 * (kqeq.h, KQ_QEQ_DIRECT_MAX_ATOMS):
 *   inverse path: A [n*n] and b [n] of kq_qeq_constrained_inverse (H kept);
 *   factor path:  H's Cholesky factor L in the lower triangle of h (the strict
 *                 upper triangle keeps H, hd its diagonal), u = H^-1 1 (column
 *                 0 of y) and b = u / s; no n x n buffer besides h.
 * Buffers sized by mol_work_alloc; a grows on first use of the inverse path. */
typedef struct {
    double *r;   /* [n*3] bohr */
    double *h;   /* [n*n] H, or L + upper H on the factor path */
    double *a;   /* [n*n] inverse path only (NULL until needed) */
    size_t a_cap; /* doubles allocated in a */
    double *b;   /* [n] */
    double *ra;  /* [3*n] */
    double rb[3];
    double *hd;  /* [n] factor path: diagonal of H */
    double *y;   /* [n*4] factor path: H^-1 [1 R^T], row-major (column 0 = u) */
    int path;    /* KQ_QEQ_PATH_*: which path mol_prepare takes (AUTO: by size) */
    int factored; /* 1 after mol_prepare took the factor path */
} mol_work;

static int mol_work_alloc(mol_work *w, int n) {
    size_t nn = (size_t)n * n;
    memset(w, 0, sizeof *w);
    w->r = malloc((size_t)n * 3 * sizeof(double));
    w->h = malloc(nn * sizeof(double));
    w->b = malloc((size_t)n * sizeof(double));
    w->ra = malloc((size_t)n * 3 * sizeof(double));
    w->hd = malloc((size_t)n * sizeof(double));
    w->y = malloc((size_t)n * 4 * sizeof(double));
    w->path = KQ_QEQ_PATH_AUTO;
    return (w->r && w->h && w->b && w->ra && w->hd && w->y) ? KQ_OK : KQ_ENOMEM;
}

static void mol_work_free(mol_work *w) {
    free(w->r);
    free(w->h);
    free(w->a);
    free(w->b);
    free(w->ra);
    free(w->hd);
    free(w->y);
    memset(w, 0, sizeof *w);
}

/* Factor path of mol_prepare (w->h holds H [n*n], w->r the positions).
 * H = L L^T in place; then one solve with four right-hand sides,
 *   H Y = [1  R^T]        (Y [n x 4]: u = H^-1 1, H^-1 R^T),
 * and the pieces of Eq. 10's bordered inverse without forming it
 * (A = H^-1 - u u^T / s, s = 1^T u, b = u / s):
 *   b = u / s,   Rb = R b,   (RA)_cj = (A R^T)_jc = (H^-1 R^T)_jc - u_j (Rb)_c
 * since u^T R^T / s = R b. O(n^3/3) for the factor, O(n^2) for the rest. */
static int qeq_factor_prepare(mol_work *w, int n) {
    double *h = w->h, *y = w->y;
    for (int i = 0; i < n; i++) w->hd[i] = h[(size_t)i * n + i];
    if (la_cholesky(n, h, n, NULL) != LA_OK) return KQ_ELINALG;
    for (int i = 0; i < n; i++) {
        y[4 * i] = 1.0;
        for (int c = 0; c < 3; c++) y[4 * i + 1 + c] = w->r[3 * i + c];
    }
    if (la_cholesky_solve(n, 4, h, n, y, 4) != LA_OK) return KQ_ELINALG;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += y[4 * i];
    if (!(s > 0.0) || !isfinite(s)) return KQ_ELINALG;
    for (int i = 0; i < n; i++) w->b[i] = y[4 * i] / s;
    for (int c = 0; c < 3; c++) {
        double t = 0.0;
        for (int i = 0; i < n; i++) t += w->r[3 * i + c] * w->b[i];
        w->rb[c] = t;
        for (int j = 0; j < n; j++) w->ra[(size_t)c * n + j] = y[4 * j + 1 + c] - y[4 * j] * t;
    }
    w->factored = 1;
    return KQ_OK;
}

static int mol_prepare(mol_work *w, int n, const int *z, const double *pos, double s_at,
                       const double *eta) {
    int rc = kq_com_positions_au(n, z, pos, w->r);
    if (rc) return rc;
    rc = kq_qeq_hardness(n, z, w->r, s_at, eta, w->h);
    if (rc) return rc;
    w->factored = 0;
    int inverse = w->path == KQ_QEQ_PATH_INVERSE ||
                  (w->path == KQ_QEQ_PATH_AUTO && n <= KQ_QEQ_DIRECT_MAX_ATOMS);
    if (!inverse) return qeq_factor_prepare(w, n);
    size_t nn = (size_t)n * n;
    if (w->a_cap < nn) {
        free(w->a);
        w->a = malloc(nn * sizeof(double));
        w->a_cap = w->a ? nn : 0;
        if (!w->a) return KQ_ENOMEM;
    }
    rc = kq_qeq_constrained_inverse(n, w->h, w->a, w->b);
    if (rc) return rc;
    /* RA: row c of R (3 x n, Eq. 17) times A; Rb = R b. Fixed order over atoms:
     * (RA)_cj = 0 + r_0c a_0j + r_1c a_1j + ... (ascending i), accumulated for
     * all j at once in row c of ra (rows of A are contiguous). */
    for (int c = 0; c < 3; c++) {
        double *rac = w->ra + (size_t)c * n;
        for (int j = 0; j < n; j++) rac[j] = 0.0;
        for (int i = 0; i < n; i++) {
            double ric = w->r[3 * i + c];
            const double *ai = w->a + (size_t)i * n;
            for (int j = 0; j < n; j++) rac[j] += ric * ai[j];
        }
        double s = 0.0;
        for (int i = 0; i < n; i++) s += w->r[3 * i + c] * w->b[i];
        w->rb[c] = s;
    }
    return KQ_OK;
}

/* q = -A chi + Q b (Eq. 13 + constraint part); mu = -(RA) chi + Q Rb (Eq. 18).
 * Factor path: A chi = v - u (u . chi) / s with v = H^-1 chi (one solve with
 * L, in q), so q = -v + b (u . chi + Q). */
static void mol_charges(const mol_work *w, int n, const double *chi, double qtot, double *q,
                        double *mu) {
    if (q && w->factored) {
        memcpy(q, chi, (size_t)n * sizeof *q);
        /* cannot fail: L is a successful Cholesky factor (positive diagonal) */
        (void)la_cholesky_solve(n, 1, w->h, n, q, 1);
        double t = 0.0;
        for (int i = 0; i < n; i++) t += w->y[4 * i] * chi[i];
        t += qtot;
        for (int i = 0; i < n; i++) q[i] = -q[i] + w->b[i] * t;
    } else if (q)
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

/* hq = H q from the factor path's storage (strict upper triangle of h = H,
 * diagonal in hd). Each (hq)_i is summed over j in ascending order, as the
 * full-matrix loop of the inverse path: row i adds its diagonal and upper
 * terms j > i after every row k < i has added its term h_ki q_i = h_ik q_i. */
static void qeq_hq_upper(const mol_work *w, int n, const double *q, double *hq) {
    for (int i = 0; i < n; i++) hq[i] = 0.0;
    for (int i = 0; i < n; i++) {
        const double *hi = w->h + (size_t)i * n;
        double s = hq[i] + w->hd[i] * q[i], qi = q[i];
        for (int j = i + 1; j < n; j++) {
            s += hi[j] * q[j];
            hq[j] += hi[j] * qi;
        }
        hq[i] = s;
    }
}

int kq_qeq_solve_path(int path, int n, const int *z, const double *pos, double qtot,
                      const double *chi, const double *eta, double s_at, double *q,
                      double *dipole_au, double *energy, double *a, double *b) {
    if (n < 1 || !z || !pos || !chi || !isfinite(qtot)) return KQ_EINVAL;
    if (path != KQ_QEQ_PATH_AUTO && path != KQ_QEQ_PATH_INVERSE && path != KQ_QEQ_PATH_FACTOR)
        return KQ_EINVAL;
    if ((a || b) && path == KQ_QEQ_PATH_FACTOR) return KQ_EINVAL;
    for (int i = 0; i < n; i++)
        if (!isfinite(chi[i])) return KQ_EINVAL;
    mol_work w;
    int rc = mol_work_alloc(&w, n);
    w.path = (a || b) ? KQ_QEQ_PATH_INVERSE : path; /* A and b only come from the inverse */
    double *qq = malloc((size_t)n * sizeof *qq);
    double *hq = NULL;
    if (rc || !qq) rc = KQ_ENOMEM;
    if (!rc) rc = mol_prepare(&w, n, z, pos, s_at, eta);
    if (!rc && w.factored && !(hq = malloc((size_t)n * sizeof *hq))) rc = KQ_ENOMEM;
    if (!rc) {
        double mu[3], e = 0.0;
        mol_charges(&w, n, chi, qtot, qq, mu);
        /* Eq. 5 with E_0 = 0: chi.q + 1/2 q^T H q (H holds eta and self terms). */
        if (w.factored) {
            qeq_hq_upper(&w, n, qq, hq);
            for (int i = 0; i < n; i++) e += chi[i] * qq[i] + 0.5 * qq[i] * hq[i];
        } else
            for (int i = 0; i < n; i++) {
                double hqi = 0.0;
                for (int j = 0; j < n; j++) hqi += w.h[(size_t)i * n + j] * qq[j];
                e += chi[i] * qq[i] + 0.5 * qq[i] * hqi;
            }
        /* never a NaN or Inf result (kqeq.h) */
        if (!kqi_all_finite((size_t)n, qq) || !kqi_all_finite(3, mu) || !isfinite(e) ||
            (!w.factored && !kqi_all_finite((size_t)n * n, w.a)) || !kqi_all_finite((size_t)n, w.b))
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
    free(hq);
    mol_work_free(&w);
    return rc;
}

int kq_qeq_solve(int n, const int *z, const double *pos, double qtot, const double *chi,
                 const double *eta, double s_at, double *q, double *dipole_au, double *energy,
                 double *a, double *b) {
    return kq_qeq_solve_path(KQ_QEQ_PATH_AUTO, n, z, pos, qtot, chi, eta, s_at, q, dipole_au,
                             energy, a, b);
}

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

static int species_index(const kq_model *m, int z) {
    for (int s = 0; s < m->nspecies; s++)
        if (m->species[s] == z) return s;
    return -1;
}

int kqi_model_make_calcs(kq_model *m) {
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
        int rc = kqi_model_make_calcs(m);
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

/* The combined kernel (specs/soap.md "Kernel used by kQEq") of atoms a and b
 * is K(a, b) = sum_d delta_d kq_kernel(p_d(a), p_d(b)), summed from 0.0 in
 * ascending d ("kernel_sum" in comments); every kernel routine of the training and
 * prediction gives exactly these bits. */

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

/* The fast kernels for a model: its M representatives packed once per
 * descriptor (kqk_pack), and the scratch space of kqk_accumulate. */
typedef struct {
    int ndesc;
    kqk_pack pk[KQ_MAX_DESC];
    const double *rep[KQ_MAX_DESC]; /* the unpacked rows [M][len[d]] */
    kqk_scratch w;
    uint64_t *am;
    const double **ar;
    size_t cap;
} kb_model;

static void kbm_free(kb_model *f) {
    for (int d = 0; d < f->ndesc; d++) kqk_pack_free(&f->pk[d]);
    kqk_scratch_free(&f->w);
    free(f->am);
    free(f->ar);
    memset(f, 0, sizeof *f);
}

/* Pack nrep rows rep[d] [nrep][len[d]] of model m. */
static int kbm_build(const kq_model *m, const double *const *rep, size_t nrep, kb_model *f) {
    memset(f, 0, sizeof *f);
    for (int d = 0; d < m->ndesc; d++) {
        kqk_layout l;
        kqk_layout_soap(&m->soap[d], m->len[d], &l);
        f->rep[d] = rep[d];
        int rc = kqk_pack_build(&l, nrep, rep[d], m->len[d], &f->pk[d]);
        f->ndesc = d + 1;
        if (rc) {
            kbm_free(f);
            return rc;
        }
    }
    return KQ_OK;
}

/* out [na][M] = sum_d delta_d (p_d(a_i) . rep_d[j])^zeta for the atoms
 * a_i = idx[i] (idx NULL: i) of the rows p[d] [.][len[d]]: bitwise the
 * values of kernel_sum and kernel_block (out = 0.0, then += per
 * descriptor). */
static int kbm_rows(const kq_model *m, kb_model *f, size_t na, const double *const *p,
                    const size_t *idx, double *out) {
    size_t nr = f->ndesc ? f->pk[0].nr : 0;
    if (na > f->cap) {
        free(f->am);
        free(f->ar);
        f->am = malloc(na * sizeof *f->am);
        f->ar = malloc(na * sizeof *f->ar);
        f->cap = f->am && f->ar ? na : 0;
        if (!f->cap) return KQ_ENOMEM;
    }
    for (size_t e = 0; e < na * nr; e++) out[e] = 0.0;
    for (int d = 0; d < f->ndesc; d++) {
        for (size_t i = 0; i < na; i++) f->ar[i] = p[d] + (idx ? idx[i] : i) * m->len[d];
        int rc = kqk_accumulate(&f->pk[d], na, f->ar, m->zeta, m->delta[d], out, nr,
                                KQ_SIMD_AUTO, f->rep[d], f->am, &f->w);
        if (rc) return rc;
    }
    return KQ_OK;
}

#define KQ_REP_BLOCK 32 /* representatives per kernel block (they stay in cache) */

/* Combined kernel block out [na][nb] = sum_d delta_d K_d(a, b) of na rows
 * pa[d] against nb rows pb[d], by kq_kernel_matrix (which agrees bitwise with
 * kq_kernel) over blocks of KQ_REP_BLOCK columns; tmp [na*KQ_REP_BLOCK]
 * scratch. Same values as kernel_sum (the combined kernel above). */
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

/* chi [n] of n atoms from their kernel rows k [n][nrep]: chi = K w (Eqs. 11
 * and 14, the multi-SOAP kernel of Eq. 12 over the representative atoms)
 * plus the per-species constant; r ascending. */
static void chi_from_k(const kq_model *m, int n, const int *z, const double *k, double *chi) {
    size_t nr = (size_t)m->nrep;
    for (int i = 0; i < n; i++) {
        double c = 0.0;
        for (size_t r = 0; r < nr; r++) c += m->w[r] * k[(size_t)i * nr + r];
        chi[i] = m->chi[species_index(m, z[i])] + c;
    }
}

/* The part of a prediction after the kernel (shared by kq_predict and
 * kq_predict_many): kbuf [n][nrep] the molecule's kernel rows (Eqs. 11, 12),
 * eta and chi [n] scratch; w sized for n atoms. chi = K w (Eqs. 11, 14),
 * q = -A chi + Q b (Eqs. 13, 15), mu = R q (Eqs. 17, 18), alpha = R A R^T;
 * everything into local buffers, checked before any output is written:
 * never a NaN or Inf result (kqeq.h). */
static int predict_finish(const kq_model *m, mol_work *w, int n, const int *z, const double *pos,
                          double charge, const double *kbuf, double *eta, double *chi, double *q,
                          double *dipole_au, double *alpha_au, double *chi_out) {
    int rc = atom_eta(m, n, z, eta);
    if (!rc) rc = mol_prepare(w, n, z, pos, m->s_at, eta);
    if (rc) return rc;
    double *qq = eta, mu[3], al[9]; /* qq reuses eta */
    chi_from_k(m, n, z, kbuf, chi);
    mol_charges(w, n, chi, charge, qq, mu);
    /* specs/kqeq.md field response: alpha = R A R^T = (RA) R^T. */
    for (int c = 0; c < 3; c++)
        for (int e = 0; e < 3; e++) {
            double s = 0.0;
            for (int j = 0; j < n; j++) s += w->ra[(size_t)c * n + j] * w->r[3 * j + e];
            al[3 * c + e] = s;
        }
    for (int c = 0; c < 3; c++)
        for (int e = c + 1; e < 3; e++) {
            double v = 0.5 * (al[3 * c + e] + al[3 * e + c]);
            al[3 * c + e] = v;
            al[3 * e + c] = v;
        }
    if (!kqi_all_finite((size_t)n, chi) || !kqi_all_finite((size_t)n, qq) ||
        !kqi_all_finite(3, mu) || !kqi_all_finite(9, al))
        return KQ_ERANGE;
    if (q) memcpy(q, qq, (size_t)n * sizeof *q);
    if (dipole_au) memcpy(dipole_au, mu, sizeof mu);
    if (alpha_au) memcpy(alpha_au, al, sizeof al);
    if (chi_out) memcpy(chi_out, chi, (size_t)n * sizeof *chi);
    return KQ_OK;
}

/* kq_predict's checks of one molecule before any work */
static int predict_check(const kq_model *m, int n, const int *z, const double *pos,
                         double charge) {
    if (n < 1 || !z || !pos || !isfinite(charge)) return KQ_EINVAL;
    for (int i = 0; i < n; i++)
        if (species_index(m, z[i]) < 0) return KQ_ESPECIES;
    return KQ_OK;
}

int kq_predict(kq_model *m, int n, const int *z, const double *pos, double charge, double *q,
               double *dipole_au, double *alpha_au, double *chi_out) {
    if (!m) return KQ_EINVAL;
    int rc = predict_check(m, n, z, pos, charge);
    if (rc) return rc;
    mol_work w;
    rc = mol_work_alloc(&w, n);
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
    /* kernel rows against the representatives (one molecule: the plain
     * blocked kernel; many molecules go through kq_predict_many) */
    if (!rc && m->nrep > 0)
        kernel_block(m, (const double *const *)p, (size_t)n, (const double *const *)m->rep,
                     (size_t)m->nrep, kbuf, kbuf + (size_t)n * m->nrep);
    if (!rc)
        rc = predict_finish(m, &w, n, z, pos, charge, kbuf, eta, chi, q, dipole_au, alpha_au,
                            chi_out);
    for (int d = 0; d < KQ_MAX_DESC; d++) free(p[d]);
    free(eta);
    free(chi);
    free(kbuf);
    mol_work_free(&w);
    return rc;
}

int kq_predict_many(kq_model *m, int nmol, const kq_mol *mols, double *q, double *dipole_au,
                    double *alpha_au, int *bad) {
    if (bad) *bad = 0;
    if (!m || nmol < 0 || (nmol > 0 && !mols)) return KQ_EINVAL;
    /* chunks of molecules of up to 1024 atoms (at least one molecule): SOAP
     * of the chunk, one fast kernel block, then each molecule as kq_predict */
    const size_t chunk = 1024;
    size_t nr = (size_t)m->nrep, maxn = 1, cap = 0;
    for (int k = 0; k < nmol; k++)
        if (mols[k].natoms > 0 && (size_t)mols[k].natoms > maxn) maxn = (size_t)mols[k].natoms;
    cap = maxn > chunk ? maxn : chunk;
    kb_model f;
    memset(&f, 0, sizeof f);
    mol_work w;
    int rc = mol_work_alloc(&w, (int)maxn);
    double *eta = malloc(maxn * sizeof *eta), *chi = malloc(maxn * sizeof *chi);
    double *kbuf = malloc((cap * nr + 1) * sizeof *kbuf);
    double *p[KQ_MAX_DESC] = {NULL};
    if (rc || !eta || !chi || !kbuf) rc = KQ_ENOMEM;
    for (int d = 0; d < m->ndesc && !rc; d++) {
        p[d] = malloc(cap * m->len[d] * sizeof(double));
        if (!p[d]) rc = KQ_ENOMEM;
    }
    if (!rc && nr > 0) rc = kbm_build(m, (const double *const *)m->rep, nr, &f);
    int failed = rc ? 0 : -1; /* the first molecule that fails, and its code */
    size_t qat = 0;           /* atoms before molecule k (offset into q) */
    for (int k0 = 0; k0 < nmol && failed < 0;) {
        /* molecules k0..k1-1 with their descriptors; kerr: the first that
         * fails before the kernel (its code rerr) */
        int k1 = k0, kerr = -1, rerr = KQ_OK;
        size_t at = 0;
        while (k1 < nmol && (k1 == k0 || at + (size_t)mols[k1].natoms <= chunk)) {
            const kq_mol *mo = &mols[k1];
            int r = predict_check(m, mo->natoms, mo->z, mo->pos, mo->charge);
            for (int d = 0; d < m->ndesc && !r; d++) {
                double *pd = p[d] + at * m->len[d];
                r = kq_soap_compute(m->calc[d], mo->natoms, mo->z, mo->pos, pd);
                if (!r) kq_normalize_rows((size_t)mo->natoms, m->len[d], pd);
            }
            if (r) {
                kerr = k1;
                rerr = r;
                break;
            }
            at += (size_t)mo->natoms;
            k1++;
        }
        if (nr > 0 && at > 0 && (rc = kbm_rows(m, &f, at, (const double *const *)p, NULL, kbuf))) {
            failed = k0;
            break;
        }
        size_t a0 = 0;
        for (int k = k0; k < k1; k++) {
            const kq_mol *mo = &mols[k];
            int n = mo->natoms;
            rc = predict_finish(m, &w, n, mo->z, mo->pos, mo->charge, kbuf + a0 * nr, eta, chi,
                                q ? q + qat : NULL, dipole_au ? dipole_au + 3 * (size_t)k : NULL,
                                alpha_au ? alpha_au + 9 * (size_t)k : NULL, NULL);
            if (rc) {
                failed = k;
                break;
            }
            a0 += (size_t)n;
            qat += (size_t)n;
        }
        if (failed < 0 && kerr >= 0) {
            failed = kerr;
            rc = rerr;
        }
        k0 = k1;
    }
    if (failed >= 0 && bad) *bad = failed;
    kbm_free(&f);
    for (int d = 0; d < KQ_MAX_DESC; d++) free(p[d]);
    free(eta);
    free(chi);
    free(kbuf);
    mol_work_free(&w);
    return failed >= 0 ? rc : KQ_OK;
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
    double *kbuf = malloc((maxrows * nr + 1) * sizeof *kbuf);
    kb_model f;
    memset(&f, 0, sizeof f);
    if (!chi || !kbuf || (nr > 0 && kbm_build(m, (const double *const *)m->rep, nr, &f))) {
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
            if (kbm_rows(m, &f, rows, p, NULL, kbuf)) {
                kbm_free(&f);
                free(chi);
                free(kbuf);
                return KQ_ENOMEM;
            }
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
    kbm_free(&f);
    free(chi);
    free(kbuf);
    /* never a NaN or Inf result (kqeq.h) */
    return kqi_all_finite(3 * (size_t)s->nmol, out) ? KQ_OK : KQ_ERANGE;
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
    if (!kqi_all_finite((size_t)ns, xty)) return KQ_ERANGE; /* never a NaN model (kqeq.h) */
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
    if (!rc && (!kqi_all_finite((size_t)ns, eta) || !kqi_all_finite((size_t)ns, chi) ||
                !kqi_all_finite(nr, pred) || !isfinite(loss)))
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
 * rep[d] ([M][len]): out [natoms][M], in blocks of 1024 atoms (fast kernels). */
static int kernel_rows(const kq_model *m, const kq_set *s, const double *const *rep, int nrep,
                       double *out, const char *stage, kq_progress_fn progress, void *ctx) {
    const size_t blk = 1024;
    kb_model f;
    int rc = kbm_build(m, rep, (size_t)nrep, &f);
    for (size_t i0 = 0; i0 < s->natoms && !rc; i0 += blk) {
        size_t nb = s->natoms - i0 < blk ? s->natoms - i0 : blk;
        const double *pa[KQ_MAX_DESC];
        for (int d = 0; d < m->ndesc; d++) pa[d] = s->p[d] + i0 * s->len[d];
        rc = kbm_rows(m, &f, nb, pa, NULL, out + i0 * (size_t)nrep);
        if (progress && !rc) progress(ctx, stage, i0 + nb, s->natoms);
    }
    kbm_free(&f);
    return rc;
}

/* Combined kernel of n atoms (rows idx[] of set s) with atom c of s:
 * out[i] = sum_d delta_d (p_d(idx[i]) . p_d(c))^zeta, by kqk_column (chunk
 * layouts lay[d], chunk masks mask[d] [s->natoms] of every atom of s): out
 * = 0.0, then += per descriptor, so the values are bitwise those of
 * kernel_sum. */
static void kernel_column(const kq_model *m, const kq_set *s, const kqk_layout *lay,
                          uint64_t *const *mask, const size_t *idx, size_t n, size_t c,
                          double *out) {
    for (size_t i = 0; i < n; i++) out[i] = 0.0;
    for (int d = 0; d < m->ndesc; d++) {
        size_t len = m->len[d];
        kqk_column(&lay[d], s->p[d], mask[d], len, idx, n, s->p[d] + c * len, mask[d][c],
                   m->zeta, m->delta[d], out);
    }
}

/* Farthest point sampling of M of the n atoms idx[] in the metric of the
 * combined kernel, d^2(a, b) = K(a,a) + K(b,b) - 2 K(a,b) (a distance in the
 * kernel's feature space); starts at the first atom, ties go to the lower
 * index. Fills pick[M] (positions in idx).
 * Pruning by the triangle inequality: with a = the nearest representative of
 * atom i so far, d(i, c) >= d(a, c) - d(i, a), so a new representative c
 * cannot come nearer to i when d(a, c) >= 2 d(i, a); those kernels are not
 * computed (a margin of 1e-6 in d covers the rounding of d from d^2).
 * Second pruning, by the Cauchy-Schwarz inequality over pieces of the
 * vectors: |p . q| <= sum_b |p_b| |q_b| for any partition into pieces b
 * (here each chunk of kqk_layout cut into up to KQ_FPS_PIECES pieces), so
 * K(i, c) <= Kub = sum_d delta_d (sum_b |p_d,b(i)| |p_d,b(c)|)^zeta and
 * d^2(i, c) >= K(i,i) + K(c,c) - 2 Kub; when that is at least the current
 * minimum mind[i] plus a margin of 1e-6 (1 + K(i,i) + K(c,c) + 2 Kub), the
 * computed d^2 could not be below mind[i] either, and the kernel is not
 * computed. Neither pruning changes a selected atom or a bit of K_NM: a
 * skipped kernel is one that would not have changed mind[i]. */
#define KQ_FPS_PIECES 8

/* Piece norms for the second pruning of fps_select: for each of the n rows
 * x [n][len] and each piece b of layout l (chunk c cut into up to
 * KQ_FPS_PIECES pieces of equal length), out[i*npiece + b] = |x_b(i)|,
 * padded with zeros; returns npiece = nch * KQ_FPS_PIECES. */
static size_t fps_piece_norms(const kqk_layout *l, size_t n, const double *x, size_t len,
                              double *out) {
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        const double *row = x + i * len;
        double *o = out + i * (size_t)l->nch * KQ_FPS_PIECES;
        np = 0;
        for (int c = 0; c < l->nch; c++) {
            size_t c0 = l->off[c], cl = l->off[c + 1] - c0;
            size_t step = (cl + KQ_FPS_PIECES - 1) / KQ_FPS_PIECES;
            for (size_t b0 = 0; b0 < cl; b0 += step) {
                size_t b1 = b0 + step < cl ? b0 + step : cl;
                double s = 0.0;
                for (size_t t = b0; t < b1; t++) s += row[c0 + t] * row[c0 + t];
                o[np++] = sqrt(s);
            }
        }
        while (np < (size_t)l->nch * KQ_FPS_PIECES) o[np++] = 0.0; /* fewer, shorter pieces */
    }
    return (size_t)l->nch * KQ_FPS_PIECES;
}

static int fps_select(const kq_model *m, const kq_set *s, const size_t *idx, size_t n, int mrep,
                      size_t *pick, kq_progress_fn progress, void *ctx) {
    double *mind = malloc(n * sizeof *mind), *kdiag = malloc(n * sizeof *kdiag);
    double *col = malloc(n * sizeof *col), *dc = malloc((size_t)mrep * sizeof *dc);
    size_t *cl = malloc(n * sizeof *cl), *clpos = malloc(n * sizeof *clpos);
    size_t *patom = malloc((size_t)mrep * sizeof *patom);
    int *near = malloc(n * sizeof *near);
    unsigned char *taken = calloc(n, 1);
    /* chunk masks of every atom of s (kernel_column) */
    kqk_layout lay[KQ_MAX_DESC];
    uint64_t *mask[KQ_MAX_DESC] = {NULL};
    int rc = KQ_OK;
    if (!mind || !kdiag || !taken || !col || !dc || !cl || !clpos || !near || !patom)
        rc = KQ_ENOMEM;
    double *pn[KQ_MAX_DESC] = {NULL}; /* piece norms [s->natoms][npiece[d]] */
    size_t npiece[KQ_MAX_DESC] = {0};
    int finite = 1;
    for (int d = 0; d < m->ndesc && !rc; d++) {
        kqk_layout_soap(&m->soap[d], m->len[d], &lay[d]);
        mask[d] = malloc((s->natoms + 1) * sizeof *mask[d]);
        pn[d] = malloc((s->natoms * (size_t)lay[d].nch * KQ_FPS_PIECES + 1) * sizeof *pn[d]);
        if (!mask[d] || !pn[d]) rc = KQ_ENOMEM;
        if (!rc) finite &= kqk_masks(&lay[d], s->natoms, s->p[d], m->len[d], mask[d]);
        if (!rc) npiece[d] = fps_piece_norms(&lay[d], s->natoms, s->p[d], m->len[d], pn[d]);
    }
    int cs_ok = finite; /* the bound needs finite values and delta_d > 0 */
    for (int d = 0; d < m->ndesc; d++)
        if (!(m->delta[d] > 0.0)) cs_ok = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        kernel_column(m, s, lay, mask, idx + i, 1, idx[i], kdiag + i); /* K(i, i) */
        mind[i] = HUGE_VAL;
        near[i] = -1;
    }
    size_t cur = 0;
    for (int r = 0; r < mrep && !rc; r++) {
        pick[r] = cur;
        patom[r] = idx[cur];
        taken[cur] = 1;
        /* distances of the new representative to the earlier ones */
        kernel_column(m, s, lay, mask, patom, (size_t)r, idx[cur], dc);
        for (int j = 0; j < r; j++) {
            double d2 = kdiag[cur] + kdiag[pick[j]] - 2.0 * dc[j];
            dc[j] = sqrt(d2 > 0.0 ? d2 : 0.0);
        }
        size_t ncl = 0;
        for (size_t i = 0; i < n; i++) {
            if (near[i] >= 0) {
                double di = sqrt(mind[i] > 0.0 ? mind[i] : 0.0);
                if (dc[near[i]] >= 2.0 * di + 1e-6) continue;
            }
            if (cs_ok && near[i] >= 0) { /* the Cauchy-Schwarz bound (above) */
                double kub = 0.0;
                for (int d = 0; d < m->ndesc; d++) {
                    const double *a = pn[d] + idx[i] * npiece[d], *c = pn[d] + idx[cur] * npiece[d];
                    double sb = 0.0;
                    for (size_t b = 0; b < npiece[d]; b++) sb += a[b] * c[b];
                    kub += m->delta[d] * kq_ipow(sb, m->zeta);
                }
                double lb = kdiag[i] + kdiag[cur] - 2.0 * kub;
                double tol = 1e-6 * (1.0 + fabs(kdiag[i]) + fabs(kdiag[cur]) + 2.0 * fabs(kub));
                if (lb >= mind[i] + tol) continue;
            }
            cl[ncl] = idx[i];
            clpos[ncl++] = i;
        }
        kernel_column(m, s, lay, mask, cl, ncl, idx[cur], col);
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
    for (int d = 0; d < KQ_MAX_DESC; d++) {
        free(mask[d]);
        free(pn[d]);
    }
    free(patom);
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
 * representative vectors by the fast kernels, 1024 atoms at a time. The
 * values equal kernel_sum's bit for bit. */
static int knm_blocked(const kq_model *m, const kq_set *s, const size_t *idx, size_t n, int mrep,
                       double *knm, kq_progress_fn progress, void *ctx) {
    const size_t blk = 1024;
    kb_model f;
    int rc = kbm_build(m, (const double *const *)m->rep, (size_t)mrep, &f);
    for (size_t i0 = 0; i0 < n && !rc; i0 += blk) {
        size_t nb = n - i0 < blk ? n - i0 : blk;
        rc = kbm_rows(m, &f, nb, (const double *const *)s->p, idx + i0, knm + i0 * (size_t)mrep);
        if (progress && !rc)
            progress(ctx, "kernel", (size_t)((double)(i0 + nb) / (double)n * mrep), (size_t)mrep);
    }
    kbm_free(&f);
    return rc;
}

/* Molecule k of a set: its atom count *n and its RA block [3][n]. */
static const double *set_ra(const kq_set *s, int k, int *n) {
    *n = (int)(s->first[k + 1] - s->first[k]);
    return s->ra + 3 * s->first[k];
}

/* P = RA K_NM for the molecules of a list (3 rows per molecule): the dipole
 * response to the weights, mu = -P w + Q Rb (Eq. 18). Rows of knm follow the
 * atoms of the molecules in order. */
static void build_p(const kq_set *s, const int *mol, int nmol, const double *knm, int mrep,
                    double *pm) {
    size_t row = 0;
    for (int kk = 0; kk < nmol; kk++) {
        int n;
        const double *ra = set_ra(s, mol[kk], &n);
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

/* Dipoles of the molecules mol[0..nmol-1] of s (mol NULL: all, in order)
 * from their rows of P = R A K_NM (build_p) and weights w [mrep]:
 * mu = -P w + Q_tot R b (Eq. 18 plus the total-charge part), mu [nmol*3]
 * e*bohr, each P w summed j ascending from 0.0. */
static void p_dipoles(const kq_set *s, const int *mol, int nmol, const double *p, int mrep,
                      const double *w, double *mu) {
    for (int kk = 0; kk < nmol; kk++) {
        int k = mol ? mol[kk] : kk;
        for (int c = 0; c < 3; c++) {
            const double *pr = p + (3 * (size_t)kk + c) * mrep;
            double sum = 0.0;
            for (int j = 0; j < mrep; j++) sum += pr[j] * w[j];
            mu[3 * kk + c] = -sum + s->charge[k] * s->rb[3 * k + c];
        }
    }
}

/* The training (and validation) errors of a fitted QEq model into rep. */
static int train_qeq_report(const kq_model *m, const kq_set *t, const int *mol, int nsel,
                            const kq_set *valid, kq_train_report *rep) {
    const kq_set *sets[2] = {t, valid};
    int rc = KQ_OK;
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
                subset_metrics(s, mol, nsel, ps, &rep->train_mae_debye,
                               &rep->train_rrmse_percent);
        } else if (!rc) {
            kq_dipole_metrics(s->nmol, pd, s->dipole_au, &rep->valid_mae_debye,
                              &rep->valid_rrmse_percent);
        }
        free(pd);
        free(ps);
    }
    return rc;
}

/* The arrays of one kQEq training run (kq_train). n training atoms, mrep
 * representatives (= n for the full form), nrow = 3 nsel dipole components. */
typedef struct {
    int sparse, mrep;
    size_t n, nrow;
    size_t *idx;          /* [n] set index of each training atom */
    size_t *pick;         /* [mrep] representatives, as indices into idx */
    double *knm;          /* [n][mrep] K_NM (Eqs. 11, 12; multi-SOAP sum) */
    double *pm;           /* [nrow][mrep] P = R A K_NM */
    double *y;            /* [nrow] mu_ref - Q_tot R b, e*bohr */
    double *g;            /* [mrep][mrep] P^T P (sparse) or (RA)^T P (full) */
    double *kmm;          /* [mrep][mrep] K_MM (sparse only) */
    double *rhs0;         /* [mrep] right-hand side */
    double *sys, *wv, *wbest; /* [mrep][mrep] system of one sigma, [mrep] weights */
    int *piv;             /* [mrep] LU pivots (full form) */
    double *pv, *kvm, *predv; /* validation: P_v [3 nv_mol][mrep], K_vM, dipoles */
    int *vmol;
    double *pt;           /* [nrow] training dipoles of the chosen weights */
} train_work;

static void train_work_free(train_work *w) {
    free(w->idx); free(w->pick); free(w->knm); free(w->pm); free(w->y); free(w->g);
    free(w->kmm); free(w->rhs0); free(w->sys); free(w->wv); free(w->wbest); free(w->piv);
    free(w->pv); free(w->kvm); free(w->predv); free(w->vmol); free(w->pt);
}

static int train_work_alloc(train_work *w, const kq_set *valid) {
    const size_t n = w->n, nrow = w->nrow, mrep = (size_t)w->mrep;
    w->idx = malloc(n * sizeof *w->idx);
    w->pick = malloc(mrep * sizeof *w->pick);
    w->knm = malloc(n * mrep * sizeof *w->knm);
    w->pm = malloc(nrow * mrep * sizeof *w->pm);
    w->y = malloc(nrow * sizeof *w->y);
    w->g = malloc(mrep * mrep * sizeof *w->g);
    w->kmm = w->sparse ? malloc(mrep * mrep * sizeof *w->kmm) : NULL;
    w->rhs0 = malloc(mrep * sizeof *w->rhs0);
    w->sys = malloc(mrep * mrep * sizeof *w->sys);
    w->wv = malloc(mrep * sizeof *w->wv);
    w->wbest = malloc(mrep * sizeof *w->wbest);
    w->piv = w->sparse ? NULL : malloc(mrep * sizeof *w->piv);
    w->pt = malloc(nrow * sizeof *w->pt);
    int ok = w->idx && w->pick && w->knm && w->pm && w->y && w->g && (!w->sparse || w->kmm) &&
             w->rhs0 && w->sys && w->wv && w->wbest && (w->sparse || w->piv) && w->pt;
    if (valid) {
        w->vmol = malloc((size_t)valid->nmol * sizeof *w->vmol);
        w->kvm = malloc(valid->natoms * mrep * sizeof *w->kvm);
        w->pv = malloc(3 * (size_t)valid->nmol * mrep * sizeof *w->pv);
        w->predv = malloc(3 * (size_t)valid->nmol * sizeof *w->predv);
        ok = ok && w->vmol && w->kvm && w->pv && w->predv;
    }
    return ok ? KQ_OK : KQ_ENOMEM;
}

/* Sparse normal equations (specs/kqeq.md "Sparse form"; minimum of the loss
 * of Eq. 19 with chi = K_NM w): (P^T P + sigma K_MM) w = -P^T y, P = R A
 * K_NM. Fills g = P^T P, kmm and rhs0 = -P^T y. */
static int train_normal_sparse(train_work *w) {
    const int mrep = w->mrep;
    const double *pm = w->pm;
    double *g = w->g;
    for (size_t e = 0; e < (size_t)mrep * mrep; e++) g[e] = 0.0;
    /* g[i][j] = sum_r P[r][i] P[r][j], r ascending from 0.0: the dot product
     * of columns i and j of P, i.e. kq_kernel with zeta 1 of the rows of P^T,
     * so the fast kernel block gives these bits (g = 0.0 + 1.0 * s = s, as s
     * is never -0: see "Fast kernels"). The plain form it replaces:
     *   for r: for i: for j >= i: g[i][j] += P[r][i] P[r][j]. */
    double *pt = malloc((w->nrow * (size_t)mrep + 1) * sizeof *pt);
    if (!pt) return KQ_ENOMEM;
    for (size_t r = 0; r < w->nrow; r++)
        for (int i = 0; i < mrep; i++) pt[(size_t)i * w->nrow + r] = pm[r * mrep + i];
    int rc = kq_kernel_accumulate((size_t)mrep, pt, (size_t)mrep, pt, w->nrow, 0, NULL, 1, 1.0,
                                  KQ_SIMD_AUTO, g);
    free(pt);
    if (rc) return rc;
    for (int i = 0; i < mrep; i++)
        for (int j = 0; j < i; j++) g[(size_t)i * mrep + j] = g[(size_t)j * mrep + i];
    for (int i = 0; i < mrep; i++)
        for (int j = 0; j < mrep; j++)
            w->kmm[(size_t)i * mrep + j] = w->knm[w->pick[i] * (size_t)mrep + j];
    for (int j = 0; j < mrep; j++) {
        double s = 0.0;
        for (size_t r = 0; r < w->nrow; r++) s += pm[r * mrep + j] * w->y[r];
        w->rhs0[j] = -s;
    }
    return KQ_OK;
}

/* Full form, Eq. 20: (A R^T R A K + sigma 1) w = -A R^T mu_ref (A symmetric,
 * so A^T = A), with A R^T R A K = (RA)^T P assembled molecule by molecule:
 * g = (RA)^T P, rhs0 = -(RA)^T y. */
static void train_normal_full(const kq_set *t, const int *mol, int nsel, train_work *w) {
    const int mrep = w->mrep;
    size_t row = 0;
    for (int kk = 0; kk < nsel; kk++) {
        int nk;
        const double *ra = set_ra(t, mol[kk], &nk);
        for (int i = 0; i < nk; i++) {
            double *gi = w->g + (row + i) * mrep;
            double s = 0.0;
            for (int j = 0; j < mrep; j++) gi[j] = 0.0;
            for (int c = 0; c < 3; c++) {
                double f = ra[(size_t)c * nk + i];
                const double *pr = w->pm + (3 * (size_t)kk + c) * mrep;
                for (int j = 0; j < mrep; j++) gi[j] += f * pr[j];
                s += f * w->y[3 * (size_t)kk + c];
            }
            w->rhs0[row + i] = -s;
        }
        row += (size_t)nk;
    }
}

/* Training atoms (idx), targets y, representatives (FPS, or every atom for
 * the full form) copied into the model, K_NM, P and the normal equations. */
static int train_assemble(kq_model *m, const kq_set *t, const int *mol, int nsel,
                          train_work *w, kq_progress_fn progress, void *ctx) {
    const int mrep = w->mrep;
    size_t a = 0;
    for (int kk = 0; kk < nsel; kk++)
        for (size_t i = t->first[mol[kk]]; i < t->first[mol[kk] + 1]; i++) w->idx[a++] = i;
    for (int kk = 0; kk < nsel; kk++)
        for (int c = 0; c < 3; c++)
            w->y[3 * (size_t)kk + c] =
                t->dipole_au[3 * mol[kk] + c] - t->charge[mol[kk]] * t->rb[3 * mol[kk] + c];
    int rc = KQ_OK;
    if (w->sparse)
        rc = fps_select(m, t, w->idx, w->n, mrep, w->pick, progress, ctx);
    else
        for (size_t i = 0; i < w->n; i++) w->pick[i] = i;
    if (!rc) {
        m->w = malloc((size_t)mrep * sizeof *m->w);
        if (!m->w) rc = KQ_ENOMEM;
    }
    for (int d = 0; d < m->ndesc && !rc; d++) {
        m->rep[d] = malloc((size_t)mrep * m->len[d] * sizeof(double));
        if (!m->rep[d]) return KQ_ENOMEM;
        for (int r = 0; r < mrep; r++)
            memcpy(m->rep[d] + (size_t)r * m->len[d], t->p[d] + w->idx[w->pick[r]] * m->len[d],
                   m->len[d] * sizeof(double));
    }
    if (!rc) rc = knm_blocked(m, t, w->idx, w->n, mrep, w->knm, progress, ctx);
    if (rc) return rc;
    build_p(t, mol, nsel, w->knm, mrep, w->pm);
    if (progress) progress(ctx, "normal equations", 0, 1);
    if (w->sparse) return train_normal_sparse(w);
    train_normal_full(t, mol, nsel, w);
    return KQ_OK;
}

/* Solve for each sigma of the grid (the regularisation of Eq. 19); keep the
 * weights with the lowest validation MAE (ties: the larger sigma; without a
 * validation set only reg[0]) in w->wbest, that sigma in *best_reg. */
static int train_solve_grid(const kq_train_opts *o, const kq_set *valid, train_work *w,
                            double *best_reg, kq_progress_fn progress, void *ctx) {
    const int mrep = w->mrep;
    double best_mae = HUGE_VAL;
    int have = 0, rc = KQ_OK;
    for (int gi = 0; gi < o->nreg; gi++) {
        double sg = o->reg[gi];
        if (progress) progress(ctx, "solve", (size_t)gi, (size_t)o->nreg);
        memcpy(w->sys, w->g, (size_t)mrep * mrep * sizeof *w->sys);
        memcpy(w->wv, w->rhs0, (size_t)mrep * sizeof *w->wv);
        if (w->sparse) {
            for (size_t e = 0; e < (size_t)mrep * mrep; e++) w->sys[e] += sg * w->kmm[e];
            rc = spd_solve_jitter(mrep, w->sys, w->wv);
        } else {
            for (int i = 0; i < mrep; i++) w->sys[(size_t)i * mrep + i] += sg;
            if (la_lu(mrep, w->sys, mrep, w->piv, NULL) != LA_OK ||
                la_lu_solve(mrep, 1, w->sys, mrep, w->piv, w->wv, 1) != LA_OK)
                rc = KQ_ELINALG;
        }
        if (rc) return rc;
        double mae = 0.0;
        if (valid) {
            p_dipoles(valid, NULL, valid->nmol, w->pv, mrep, w->wv, w->predv);
            kq_dipole_metrics(valid->nmol, w->predv, valid->dipole_au, &mae, NULL);
        }
        if (!have || (valid && (mae < best_mae || (mae == best_mae && sg > *best_reg)))) {
            have = 1;
            best_mae = mae;
            *best_reg = sg;
            memcpy(w->wbest, w->wv, (size_t)mrep * sizeof *w->wv);
        }
        if (!valid) break;
    }
    return KQ_OK;
}

/* kq_train's argument checks (KQ_EINVAL) before anything is touched */
static int train_check_args(const kq_model *m, const kq_set *t, const int *sel, int nsel,
                            const kq_set *valid, const kq_train_opts *o) {
    if (!m || !t || !o) return KQ_EINVAL;
    if (nsel < 1) return KQ_EINVAL;
    for (int kk = 0; kk < nsel; kk++)
        if (sel && (sel[kk] < 0 || sel[kk] >= t->nmol)) return KQ_EINVAL;
    if (!set_matches(m, t) || (valid && !set_matches(m, valid))) return KQ_EINVAL;
    return KQ_OK;
}

/* kQEq only: the sigma grid (KQ_EINVAL) and every element known (KQ_ESPECIES) */
static int train_check_kqeq(const kq_model *m, const kq_set *t, const kq_train_opts *o) {
    if (o->nreg < 1 || !o->reg) return KQ_EINVAL;
    for (int g = 0; g < o->nreg; g++)
        if (!(o->reg[g] > 0.0) || !isfinite(o->reg[g])) return KQ_EINVAL;
    for (size_t i = 0; i < t->natoms; i++)
        if (species_index(m, t->z[i]) < 0) return KQ_ESPECIES;
    return KQ_OK;
}

int kq_train(kq_model *m, const kq_set *t, const int *sel, int nsel, const kq_set *valid,
             const kq_train_opts *o, kq_train_report *report, kq_progress_fn progress,
             void *ctx) {
    if (t && !sel) nsel = t->nmol;
    int rc = train_check_args(m, t, sel, nsel, valid, o);
    if (rc) return rc;
    kq_train_report rep = {-1.0, -1.0, -1.0, -1.0};
    if (report) *report = rep;
    drop_fit(m);
    for (int s = 0; s < m->nspecies; s++) m->chi[s] = 0.0;
    int *mol = malloc((size_t)nsel * sizeof *mol);
    if (!mol) return KQ_ENOMEM;
    for (int kk = 0; kk < nsel; kk++) mol[kk] = sel ? sel[kk] : kk;
    if (m->kind == KQ_KIND_QEQ) {
        rc = train_qeq(m, t, mol, nsel);
        if (!rc && report) {
            rc = train_qeq_report(m, t, mol, nsel, valid, &rep);
            *report = rep;
        }
        free(mol);
        return rc;
    }
    if ((rc = train_check_kqeq(m, t, o))) {
        free(mol);
        return rc;
    }
    /* training atoms, molecule by molecule; M representatives */
    train_work w;
    memset(&w, 0, sizeof w);
    for (int kk = 0; kk < nsel; kk++) w.n += t->first[mol[kk] + 1] - t->first[mol[kk]];
    w.sparse = o->sparse > 0;
    size_t mrep_z = w.sparse ? ((size_t)o->sparse < w.n ? (size_t)o->sparse : w.n) : w.n;
    if (mrep_z > (size_t)INT_MAX / 4 || w.n > SIZE_MAX / sizeof(double) / mrep_z) {
        free(mol);
        return KQ_ENOMEM;
    }
    w.mrep = (int)mrep_z;
    w.nrow = 3 * (size_t)nsel;
    rc = train_work_alloc(&w, valid);
    if (!rc) rc = train_assemble(m, t, mol, nsel, &w, progress, ctx);
    /* validation: P_v = R A K_vM for the validation molecules */
    if (!rc && valid) {
        for (int k = 0; k < valid->nmol; k++) w.vmol[k] = k;
        rc = kernel_rows(m, valid, (const double *const *)m->rep, w.mrep, w.kvm,
                         "validation kernel", progress, ctx);
        if (!rc) build_p(valid, w.vmol, valid->nmol, w.kvm, w.mrep, w.pv);
    }
    double best_reg = 0.0;
    if (!rc) rc = train_solve_grid(o, valid, &w, &best_reg, progress, ctx);
    /* never a NaN model (kqeq.h): the weights and the dipoles they give
     * (mu = -P w + Q Rb) must be finite */
    if (!rc) {
        p_dipoles(t, mol, nsel, w.pm, w.mrep, w.wbest, w.pt);
        if (!kqi_all_finite((size_t)w.mrep, w.wbest) || !kqi_all_finite(w.nrow, w.pt))
            rc = KQ_ERANGE;
    }
    if (!rc && valid) {
        p_dipoles(valid, NULL, valid->nmol, w.pv, w.mrep, w.wbest, w.predv);
        if (!kqi_all_finite(3 * (size_t)valid->nmol, w.predv)) rc = KQ_ERANGE;
    }
    if (!rc) {
        memcpy(m->w, w.wbest, (size_t)w.mrep * sizeof *w.wbest);
        m->nrep = w.mrep;
        m->reg = best_reg;
        if (report) {
            subset_metrics(t, mol, nsel, w.pt, &rep.train_mae_debye, &rep.train_rrmse_percent);
            if (valid) /* predv: the chosen weights' dipoles (above) */
                kq_dipole_metrics(valid->nmol, w.predv, valid->dipole_au, &rep.valid_mae_debye,
                                  &rep.valid_rrmse_percent);
            *report = rep;
        }
        if (progress) progress(ctx, "solve", (size_t)o->nreg, (size_t)o->nreg);
    } else {
        drop_fit(m);
    }
    train_work_free(&w);
    free(mol);
    return rc;
}
