/* SPDX-License-Identifier: MIT */
/* linalg.c - small dense linear algebra for the tensorial project (see linalg.h).
 *
 * Everything here is plain C11 + libm. Matrices are row-major with explicit
 * leading dimensions: element (i, j) of A is a[i*lda + j].
 *
 * Reproducibility: every element of every result is computed by a sum in a
 * fixed, documented order (the order is stated beside each routine). Loops
 * that the compiler may vectorise run across independent elements (axpy
 * style), never across a reduction, so -O0 and -O2, gcc and clang give the
 * same bits as long as no contraction into FMA happens (-ffp-contract=off).
 *
 * Sources: textbook algorithms, Golub & Van Loan, "Matrix Computations"
 * (4th ed.): Cholesky Alg. 4.2.1 (gaxpy form) and its blocked variant Sec. 4.2.9,
 * LU with partial pivoting Alg. 3.4.1, triangular substitution Sec. 3.1, cyclic
 * Jacobi Sec. 8.5; the Jacobi rotation in H. Rutishauser's stable form (the
 * "tau" updates, Handbook for Automatic Computation II/1, contribution II/1);
 * the relative convergence test for accurate small eigenvalues after
 * J. Demmel and K. Veselic, SIAM J. Matrix Anal. Appl. 13 (1992) 1204.
 */
#include "linalg.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *la_strerror(int code) {
    switch (code) {
    case LA_OK: return "success";
    case LA_NOT_SPD: return "matrix is not symmetric positive definite (non-positive pivot)";
    case LA_SINGULAR: return "matrix is singular (zero pivot)";
    case LA_NOMEM: return "out of memory";
    case LA_BADARG: return "bad argument (negative size, leading dimension too small or NULL pointer)";
    case LA_NOCONV: return "Jacobi eigensolver did not converge within its sweep limit";
    default: return "unknown linear algebra error code";
    }
}

/* Common argument check for a square n x n matrix with leading dimension ld. */
static int bad_square(int n, const void *p, int ld) {
    return n < 0 || ld < (n > 0 ? n : 1) || (n > 0 && p == NULL);
}

/* ------------------------------------------------------------------------- */
/* Cholesky                                                                   */
/* ------------------------------------------------------------------------- */

/* Summation order (the one and only, in every code path below):
 *     s = a_ij;  s = s - l_i0*l_j0;  s = s - l_i1*l_j1;  ...;  s = s - l_i,j-1*l_j,j-1
 *     l_ij = s / l_jj  (j < i)          l_jj = sqrt(s)  (j == i, s > 0 required)
 * i.e. the subtractions for p = 0, 1, ..., j-1 in ascending p, each one a
 * separately rounded product subtracted from the running value. The blocked
 * algorithm below is right-looking (Golub & Van Loan Sec. 4.2.9): panel after
 * panel in ascending p, and inside a panel ascending p again, so every element
 * sees exactly the sequence above. tests/test_linalg.c checks bit equality
 * against the plain loop.
 *
 * Two levels of blocks: super panels of CH_KC columns; inside one, panels of
 * CH_NB columns are factorised (diagonal block, then the rows below it), each
 * followed by the update of the remaining columns of the super panel; after
 * the super panel, one update of depth CH_KC for all columns to its right.
 * The updates pack CH_JB columns of the panel, transposed, into a stack
 * buffer so that the innermost products run over contiguous memory in j
 * (vectorisable across independent j); the deep update touches the trailing
 * matrix once per CH_KC columns. */
#ifndef CH_NB
#define CH_NB 32 /* panel width (unblocked diagonal block and panel solve) */
#endif
#ifndef CH_KC
#define CH_KC 128 /* super panel width = depth of the trailing update */
#endif
#ifndef CH_JB
#define CH_JB 32 /* columns packed per update block */
#endif
#define CH_BUF (CH_KC * CH_JB > CH_NB * CH_NB ? CH_KC * CH_JB : CH_NB * CH_NB)

/* Unblocked Cholesky of the diagonal block rows/cols [k0, k1), which has
 * already received the updates for p < k0. Continues the sum with p = k0..j-1.
 * Returns the failing pivot index or -1. */
static int chol_diag_block(double *a, int lda, int k0, int k1) {
    for (int j = k0; j < k1; j++) {
        double *rj = a + (size_t)j * lda;
        double s = rj[j];
        for (int p = k0; p < j; p++) s = s - rj[p] * rj[p];
        if (!(s > 0.0)) return j; /* also catches NaN */
        rj[j] = sqrt(s);
        for (int i = j + 1; i < k1; i++) {
            double *ri = a + (size_t)i * lda;
            double t = ri[j];
            for (int p = k0; p < j; p++) t = t - ri[p] * rj[p];
            ri[j] = t / rj[j];
        }
    }
    return -1;
}

/* Panel solve: rows i in [k1, n) of columns [k0, k1):
 *     l_ij = (a_ij - sum_{p=k0}^{j-1} l_ip l_jp) / l_jj
 * done right-looking along the row (after l_ip is final, subtract l_ip * l_jp
 * from all later j of the row), so each element still sees ascending p.
 * dt[p*CH_NB + q] = l_(k0+q),(k0+p): the diagonal block transposed, so the
 * inner loop runs over contiguous q. */
static void chol_panel_solve(int n, double *a, int lda, int k0, int k1, double *dt) {
    int kb = k1 - k0;
    for (int p = 0; p < kb; p++)
        for (int q = p; q < kb; q++) dt[p * CH_NB + q] = a[(size_t)(k0 + q) * lda + k0 + p];
    int i = k1;
    for (; i + 4 <= n; i += 4) { /* four rows at once: same work, shared loads of dt */
        double *c0 = a + (size_t)i * lda + k0, *c1 = c0 + lda, *c2 = c1 + lda, *c3 = c2 + lda;
        for (int p = 0; p < kb; p++) {
            const double *d = dt + p * CH_NB;
            double x0 = c0[p] / d[p], x1 = c1[p] / d[p], x2 = c2[p] / d[p], x3 = c3[p] / d[p];
            c0[p] = x0;
            c1[p] = x1;
            c2[p] = x2;
            c3[p] = x3;
            for (int q = p + 1; q < kb; q++) {
                double dq = d[q];
                c0[q] = c0[q] - x0 * dq;
                c1[q] = c1[q] - x1 * dq;
                c2[q] = c2[q] - x2 * dq;
                c3[q] = c3[q] - x3 * dq;
            }
        }
    }
    for (; i < n; i++) {
        double *c = a + (size_t)i * lda + k0; /* [kb] row i of the panel */
        for (int p = 0; p < kb; p++) {
            double x = c[p] / dt[p * CH_NB + p];
            const double *d = dt + p * CH_NB;
            c[p] = x;
            for (int q = p + 1; q < kb; q++) c[q] = c[q] - x * d[q];
        }
    }
}

/* ------------------------------------------------------------------------- */
/* The update kernel shared by the blocked routines                           */
/* ------------------------------------------------------------------------- */

/* Every blocked routine below (the Cholesky trailing update, both triangular
 * solves) spends its time in one operation,
 *     C(r, j) = C(r, j) - X(r, k) T(k, j)      for k = 0, 1, ..., kc-1 in turn,
 * for r < m, j < nc, with
 *     X(r, k) = x[r*xr + k*xk],  T(k, j) = t[k*tk + j],  C(r, j) = c[r*ldc + j]
 * (strides may be negative: the backward solve walks k down the rows). Each
 * element receives kc separately rounded products, each subtracted separately,
 * in ascending k: exactly the order of the plain loops. Tiles of 4 rows x 4
 * (portable) or 4 x 8 (AVX2) columns keep the running values in registers;
 * the vector lanes are independent elements (different j), never parts of one
 * sum, so all copies give the same bits.
 *
 * AVX2: with gcc/clang on x86-64 the 4 x 8 tile is also compiled with
 * __attribute__((target("avx2"))) and chosen at run time by
 * __builtin_cpu_supports("avx2") (la_use_avx2); "avx2" does not enable FMA and
 * the file is built with -ffp-contract=off, so a*b and c - (a*b) stay two
 * roundings. -DTENSORIAL_NO_SIMD (make PORTABLE=1) compiles it out. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(TENSORIAL_NO_SIMD)
#define LA_HAVE_AVX2 1
typedef double la_v4d __attribute__((vector_size(32)));
typedef double la_v4du __attribute__((vector_size(32), aligned(8))); /* unaligned access */
#else
#define LA_HAVE_AVX2 0
#endif

static int la_use_avx2(void) {
#if LA_HAVE_AVX2
    return __builtin_cpu_supports("avx2") != 0;
#else
    return 0;
#endif
}

/* One row: c[j] -= x(k) t(k, j), k ascending outside, independent j inside. */
static void upd_row(int nc, int kc, const double *x, ptrdiff_t xk, const double *t, ptrdiff_t tk,
                    double *c) {
    for (int k = 0; k < kc; k++) {
        double y = x[k * xk];
        const double *b = t + k * tk;
        for (int j = 0; j < nc; j++) c[j] = c[j] - y * b[j];
    }
}

/* 4 x 4 tile, the 16 running values in local variables. */
static void upd_tile4x4(int kc, const double *x, ptrdiff_t xr, ptrdiff_t xk, const double *t,
                        ptrdiff_t tk, double *c, ptrdiff_t ldc) {
    double *c0 = c, *c1 = c + ldc, *c2 = c + 2 * ldc, *c3 = c + 3 * ldc;
    double s00 = c0[0], s01 = c0[1], s02 = c0[2], s03 = c0[3];
    double s10 = c1[0], s11 = c1[1], s12 = c1[2], s13 = c1[3];
    double s20 = c2[0], s21 = c2[1], s22 = c2[2], s23 = c2[3];
    double s30 = c3[0], s31 = c3[1], s32 = c3[2], s33 = c3[3];
    for (int k = 0; k < kc; k++) {
        const double *b = t + k * tk, *xx = x + k * xk;
        double b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
        double y0 = xx[0], y1 = xx[xr], y2 = xx[2 * xr], y3 = xx[3 * xr];
        s00 -= y0 * b0; s01 -= y0 * b1; s02 -= y0 * b2; s03 -= y0 * b3;
        s10 -= y1 * b0; s11 -= y1 * b1; s12 -= y1 * b2; s13 -= y1 * b3;
        s20 -= y2 * b0; s21 -= y2 * b1; s22 -= y2 * b2; s23 -= y2 * b3;
        s30 -= y3 * b0; s31 -= y3 * b1; s32 -= y3 * b2; s33 -= y3 * b3;
    }
    c0[0] = s00; c0[1] = s01; c0[2] = s02; c0[3] = s03;
    c1[0] = s10; c1[1] = s11; c1[2] = s12; c1[3] = s13;
    c2[0] = s20; c2[1] = s21; c2[2] = s22; c2[3] = s23;
    c3[0] = s30; c3[1] = s31; c3[2] = s32; c3[3] = s33;
}

#if LA_HAVE_AVX2
/* 4 x 8 tile in eight 4-wide vectors: lane j of a vector is element j. */
__attribute__((target("avx2"))) static void upd_tile4x8_avx2(int kc, const double *x, ptrdiff_t xr,
                                                              ptrdiff_t xk, const double *t,
                                                              ptrdiff_t tk, double *c, ptrdiff_t ldc) {
    double *c0 = c, *c1 = c + ldc, *c2 = c + 2 * ldc, *c3 = c + 3 * ldc;
    la_v4d s00 = *(const la_v4du *)c0, s01 = *(const la_v4du *)(c0 + 4);
    la_v4d s10 = *(const la_v4du *)c1, s11 = *(const la_v4du *)(c1 + 4);
    la_v4d s20 = *(const la_v4du *)c2, s21 = *(const la_v4du *)(c2 + 4);
    la_v4d s30 = *(const la_v4du *)c3, s31 = *(const la_v4du *)(c3 + 4);
    for (int k = 0; k < kc; k++) {
        const double *b = t + k * tk, *xx = x + k * xk;
        la_v4d b0 = *(const la_v4du *)b, b1 = *(const la_v4du *)(b + 4);
        double v0 = xx[0], v1 = xx[xr], v2 = xx[2 * xr], v3 = xx[3 * xr];
        la_v4d y0 = {v0, v0, v0, v0}, y1 = {v1, v1, v1, v1};
        la_v4d y2 = {v2, v2, v2, v2}, y3 = {v3, v3, v3, v3};
        s00 = s00 - y0 * b0; s01 = s01 - y0 * b1;
        s10 = s10 - y1 * b0; s11 = s11 - y1 * b1;
        s20 = s20 - y2 * b0; s21 = s21 - y2 * b1;
        s30 = s30 - y3 * b0; s31 = s31 - y3 * b1;
    }
    *(la_v4du *)c0 = s00; *(la_v4du *)(c0 + 4) = s01;
    *(la_v4du *)c1 = s10; *(la_v4du *)(c1 + 4) = s11;
    *(la_v4du *)c2 = s20; *(la_v4du *)(c2 + 4) = s21;
    *(la_v4du *)c3 = s30; *(la_v4du *)(c3 + 4) = s31;
}
#endif

/* C(r, j) -= sum_k X(r, k) T(k, j) as described above; m, nc, kc >= 0. */
static void upd(int avx2, int m, int nc, int kc, const double *x, ptrdiff_t xr, ptrdiff_t xk,
                const double *t, ptrdiff_t tk, double *c, ptrdiff_t ldc) {
    if (kc <= 0 || nc <= 0) return;
    int r = 0;
    for (; r + 4 <= m; r += 4) {
        const double *xx = x + r * xr;
        double *cc = c + r * ldc;
        int j = 0;
#if LA_HAVE_AVX2
        if (avx2)
            for (; j + 8 <= nc; j += 8) upd_tile4x8_avx2(kc, xx, xr, xk, t + j, tk, cc + j, ldc);
#else
        (void)avx2;
#endif
        for (; j + 4 <= nc; j += 4) upd_tile4x4(kc, xx, xr, xk, t + j, tk, cc + j, ldc);
        if (j < nc)
            for (int q = 0; q < 4; q++) upd_row(nc - j, kc, xx + q * xr, xk, t + j, tk, cc + q * ldc + j);
    }
    for (; r < m; r++) upd_row(nc, kc, x + r * xr, xk, t, tk, c + r * ldc);
}

/* Update (symmetric rank-kb, lower triangle only) of the columns [jlo, jhi):
 *     a_ij -= sum_{p=k0}^{k1-1} l_ip l_jp      for jlo <= j < jhi, j <= i < n
 * in ascending p. Column block [j0, j0+jb) at a time; its panel rows are
 * packed transposed into t[p*CH_JB + jj] = l_(j0+jj),(k0+p). kb <= CH_KC. */
static void chol_update(int avx2, int n, double *a, int lda, int k0, int k1, int jlo, int jhi,
                        double *t) {
    int kb = k1 - k0;
    for (int j0 = jlo; j0 < jhi; j0 += CH_JB) {
        int jb = jhi - j0 < CH_JB ? jhi - j0 : CH_JB;
        for (int jj = 0; jj < jb; jj++) {
            const double *src = a + (size_t)(j0 + jj) * lda + k0;
            for (int p = 0; p < kb; p++) t[p * CH_JB + jj] = src[p];
        }
        /* Rows inside the column block: only j <= i (strict upper untouched).
         * For 4 rows i..i+3, the columns j0..i are below the diagonal in all
         * four (tiles), the rest of each row's triangle row by row. */
        int i = j0;
        for (; i + 4 <= j0 + jb; i += 4) {
            const double *x = a + (size_t)i * lda + k0;
            double *c = a + (size_t)i * lda + j0;
            int w = i - j0 + 1;
            upd(avx2, 4, w, kb, x, lda, 1, t, CH_JB, c, lda);
            for (int r = 1; r < 4; r++)
                upd_row(r, kb, x + (size_t)r * lda, 1, t + w, CH_JB, c + (size_t)r * lda + w);
        }
        for (; i < j0 + jb; i++)
            upd_row(i - j0 + 1, kb, a + (size_t)i * lda + k0, 1, t, CH_JB, a + (size_t)i * lda + j0);
        /* Rows below the block: full width jb. */
        if (i < n)
            upd(avx2, n - i, jb, kb, a + (size_t)i * lda + k0, lda, 1, t, CH_JB,
                a + (size_t)i * lda + j0, lda);
    }
}

int la_cholesky(int n, double *a, int lda, int *bad_pivot) {
    double buf[CH_BUF]; /* 32 KiB packing buffer; no heap allocation */
    if (bad_pivot) *bad_pivot = -1;
    if (bad_square(n, a, lda)) return LA_BADARG;
    int avx2 = la_use_avx2();
    for (int s0 = 0; s0 < n; s0 += CH_KC) {
        int s1 = n - s0 < CH_KC ? n : s0 + CH_KC; /* super panel [s0, s1) */
        for (int k0 = s0; k0 < s1; k0 += CH_NB) {
            int k1 = s1 - k0 < CH_NB ? s1 : k0 + CH_NB; /* panel [k0, k1) */
            int bad = chol_diag_block(a, lda, k0, k1);
            if (bad >= 0) {
                if (bad_pivot) *bad_pivot = bad;
                return LA_NOT_SPD;
            }
            if (k1 < n) chol_panel_solve(n, a, lda, k0, k1, buf);
            if (k1 < s1) chol_update(avx2, n, a, lda, k0, k1, k1, s1, buf);
        }
        if (s1 < n) chol_update(avx2, n, a, lda, s0, s1, s1, n, buf);
    }
    return LA_OK;
}

/* ------------------------------------------------------------------------- */
/* Triangular solves                                                          */
/* ------------------------------------------------------------------------- */

static int bad_rect(int rows, int cols, const void *p, int ld) {
    return rows < 0 || cols < 0 || ld < (cols > 0 ? cols : 1) || (rows > 0 && cols > 0 && p == NULL);
}

static int zero_diagonal(int n, const double *l, int ldl) {
    for (int i = 0; i < n; i++)
        if (l[(size_t)i * ldl + i] == 0.0) return 1;
    return 0;
}

/* Forward substitution L X = B, the plain loop, used by la_lu_solve (unit = 1:
 * L's diagonal is 1 and not stored). Per element:
 * s = b_ic; s -= l_i0 x_0c; ...; s -= l_i,i-1 x_i-1,c (ascending p); then
 * x_ic = s / l_ii unless unit. Inner loop over the independent columns c. */
static void forward_sub(int n, int nrhs, const double *l, int ldl, double *b, int ldb, int unit) {
    for (int i = 0; i < n; i++) {
        const double *li = l + (size_t)i * ldl;
        double *bi = b + (size_t)i * ldb;
        for (int p = 0; p < i; p++) {
            double x = li[p];
            const double *bp = b + (size_t)p * ldb;
            for (int c = 0; c < nrhs; c++) bi[c] = bi[c] - x * bp[c];
        }
        if (!unit)
            for (int c = 0; c < nrhs; c++) bi[c] = bi[c] / li[i];
    }
}

/* Blocking of the triangular solves: column blocks of TR_CB right-hand sides
 * (the block's rows of X stay in cache while the rows of L stream by), rows in
 * groups of 4 (one register tile of upd). */
#ifndef TR_CB
#define TR_CB 64
#endif

/* 1 if every element of the lower triangle of l (with its diagonal) is finite. */
static int lower_finite(int n, const double *l, int ldl) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++)
            if (!isfinite(l[(size_t)i * ldl + j])) return 0;
    return 1;
}

/* Leading exact zeros of a column block (forward solve). Rows [0, f) of the
 * block B(:, c0:c0+cb) that are all +0.0 (not -0.0) need no subtractions, and
 * rows below need none of the products with them, provided
 *   (1) L's lower triangle is finite, and
 *   (2) no element of rows [f, n) of the block is -0.0.
 * Why this gives the same bits as the full loop (IEEE 754, round to nearest):
 * for p < f the running value starts at +0.0 and, by induction, every x_qc
 * with q < p is a signed zero, so every product l_pq x_qc is a signed zero
 * (finite l) and +0.0 - (+0.0) = +0.0 - (-0.0) = +0.0: the value stays +0.0 and
 * x_pc = +0.0 / l_pp, which is what is computed here too. For i >= f the
 * skipped products l_ip x_pc (p < f) are the first ones of the sum, all signed
 * zeros, subtracted from s = b_ic: s - (+-0.0) = s for s != 0, and for
 * s = +0.0 it stays +0.0; only s = -0.0 minus -0.0 would give +0.0, excluded
 * by (2). Returns f (0 when a condition fails or nothing is skipped). */
static int leading_zero_rows(int n, int cb, const double *b, int ldb, int l_finite) {
    if (!l_finite) return 0;
    int f = 0;
    for (; f < n; f++) {
        const double *bf = b + (size_t)f * ldb;
        int allzero = 1;
        for (int c = 0; c < cb && allzero; c++) allzero = bf[c] == 0.0 && !signbit(bf[c]);
        if (!allzero) break;
    }
    for (int i = f; i < n; i++)
        for (int c = 0; c < cb; c++) {
            double v = b[(size_t)i * ldb + c];
            if (v == 0.0 && signbit(v)) return 0;
        }
    return f;
}

/* L X = B, forward substitution, blocked. Order for x_ic (as forward_sub):
 *     s = b_ic;  s -= l_i0 x_0c;  ...;  s -= l_i,i-1 x_i-1,c  (ascending p);  x_ic = s / l_ii
 * For each column block and each group of 4 rows i0..i0+3: first the products
 * with the finished rows p < i0 (upd, ascending p), then those inside the
 * group (p = i0..i-1), then the division. Leading exact zeros of a column block
 * (e.g. identity columns: column c is zero above row c) are skipped where that
 * provably changes no bit (leading_zero_rows), which makes L^-1 from the
 * identity cost n^3/6 multiply-subtracts instead of n^3/2. */
int la_trsm_lower(int n, int nrhs, const double *l, int ldl, double *b, int ldb) {
    if (bad_square(n, l, ldl) || bad_rect(n, nrhs, b, ldb)) return LA_BADARG;
    if (zero_diagonal(n, l, ldl)) return LA_SINGULAR;
    int avx2 = la_use_avx2(), l_finite = -1;
    for (int c0 = 0; c0 < nrhs; c0 += TR_CB) {
        int cb = nrhs - c0 < TR_CB ? nrhs - c0 : TR_CB;
        double *bc = b + c0;
        /* the O(n^2) finiteness check only when the block starts with a zero row */
        int f = 0;
        if (n > 0 && bc[0] == 0.0) {
            if (l_finite < 0) l_finite = lower_finite(n, l, ldl);
            f = leading_zero_rows(n, cb, bc, ldb, l_finite);
        }
        for (int p = 0; p < f; p++) { /* +0.0 / l_pp, the full loop's value */
            double *bp = bc + (size_t)p * ldb;
            for (int c = 0; c < cb; c++) bp[c] = bp[c] / l[(size_t)p * ldl + p];
        }
        for (int i0 = f; i0 < n; i0 += 4) {
            int m = n - i0 < 4 ? n - i0 : 4;
            upd(avx2, m, cb, i0 - f, l + (size_t)i0 * ldl + f, ldl, 1, bc + (size_t)f * ldb, ldb,
                bc + (size_t)i0 * ldb, ldb);
            for (int i = i0; i < i0 + m; i++) {
                const double *li = l + (size_t)i * ldl;
                double *bi = bc + (size_t)i * ldb;
                for (int p = i0; p < i; p++) {
                    double x = li[p];
                    const double *bp = bc + (size_t)p * ldb;
                    for (int c = 0; c < cb; c++) bi[c] = bi[c] - x * bp[c];
                }
                for (int c = 0; c < cb; c++) bi[c] = bi[c] / li[i];
            }
        }
    }
    return LA_OK;
}

/* L^T X = B, backward substitution, blocked. Order for x_pc:
 *     s = b_pc;  s -= l_(n-1),p x_(n-1),c;  s -= l_(n-2),p x_(n-2),c; ... down to
 *     i = p+1 (descending i);  x_pc = s / l_pp
 * For each column block and each group of 4 rows p0..p0+3 from the bottom up:
 * the products with the finished rows i >= p0+4 (upd walking i downwards: it
 * reads l_i,p0..p0+3, contiguous in row i of L), then those inside the group
 * (i descending), each row divided by its pivot before it is used. */
int la_trsm_lower_t(int n, int nrhs, const double *l, int ldl, double *b, int ldb) {
    if (bad_square(n, l, ldl) || bad_rect(n, nrhs, b, ldb)) return LA_BADARG;
    if (zero_diagonal(n, l, ldl)) return LA_SINGULAR;
    int avx2 = la_use_avx2();
    for (int c0 = 0; c0 < nrhs; c0 += TR_CB) {
        int cb = nrhs - c0 < TR_CB ? nrhs - c0 : TR_CB;
        double *bc = b + c0;
        for (int p1 = n; p1 > 0; p1 -= 4) {
            int p0 = p1 - 4 > 0 ? p1 - 4 : 0;
            if (p1 < n)
                upd(avx2, p1 - p0, cb, n - p1, l + (size_t)(n - 1) * ldl + p0, 1, -(ptrdiff_t)ldl,
                    bc + (size_t)(n - 1) * ldb, -(ptrdiff_t)ldb, bc + (size_t)p0 * ldb, ldb);
            for (int i = p1 - 1; i >= p0; i--) {
                const double *li = l + (size_t)i * ldl;
                double *bi = bc + (size_t)i * ldb;
                for (int c = 0; c < cb; c++) bi[c] = bi[c] / li[i];
                for (int p = p0; p < i; p++) {
                    double y = li[p];
                    double *bp = bc + (size_t)p * ldb;
                    for (int c = 0; c < cb; c++) bp[c] = bp[c] - y * bi[c];
                }
            }
        }
    }
    return LA_OK;
}

int la_cholesky_solve(int n, int nrhs, const double *l, int ldl, double *b, int ldb) {
    int rc = la_trsm_lower(n, nrhs, l, ldl, b, ldb);
    if (rc) return rc;
    return la_trsm_lower_t(n, nrhs, l, ldl, b, ldb);
}

/* ------------------------------------------------------------------------- */
/* LU with partial pivoting                                                   */
/* ------------------------------------------------------------------------- */

/* Right-looking, Golub & Van Loan Alg. 3.4.1. Pivot: the first row with the
 * largest |a_ik| (i >= k). Order: u_kj and the multipliers receive their
 * updates for k = 0, 1, ... in ascending k; l_ik = a_ik / u_kk (a division,
 * not a multiplication by a reciprocal). */
int la_lu(int n, double *a, int lda, int *piv, int *bad_pivot) {
    if (bad_pivot) *bad_pivot = -1;
    if (bad_square(n, a, lda) || (n > 0 && piv == NULL)) return LA_BADARG;
    for (int k = 0; k < n; k++) {
        int p = k;
        double best = fabs(a[(size_t)k * lda + k]);
        for (int i = k + 1; i < n; i++) {
            double v = fabs(a[(size_t)i * lda + k]);
            if (v > best) { best = v; p = i; }
        }
        piv[k] = p;
        if (best == 0.0) {
            if (bad_pivot) *bad_pivot = k;
            return LA_SINGULAR;
        }
        if (p != k) {
            double *rk = a + (size_t)k * lda, *rp = a + (size_t)p * lda;
            for (int j = 0; j < n; j++) { double t = rk[j]; rk[j] = rp[j]; rp[j] = t; }
        }
        const double *rk = a + (size_t)k * lda;
        for (int i = k + 1; i < n; i++) {
            double *ri = a + (size_t)i * lda;
            double m = ri[k] / rk[k];
            ri[k] = m;
            for (int j = k + 1; j < n; j++) ri[j] = ri[j] - m * rk[j];
        }
    }
    return LA_OK;
}

/* Order: rows of B permuted as la_lu did (k ascending); forward with unit L
 * (ascending p), backward with U (x_ic = (b_ic - sum_{p>i, ascending} u_ip x_pc) / u_ii). */
int la_lu_solve(int n, int nrhs, const double *lu, int ldlu, const int *piv, double *b, int ldb) {
    if (bad_square(n, lu, ldlu) || bad_rect(n, nrhs, b, ldb) || (n > 0 && piv == NULL))
        return LA_BADARG;
    for (int k = 0; k < n; k++)
        if (piv[k] < k || piv[k] >= n) return LA_BADARG;
    if (zero_diagonal(n, lu, ldlu)) return LA_SINGULAR;
    for (int k = 0; k < n; k++) {
        if (piv[k] == k) continue;
        double *rk = b + (size_t)k * ldb, *rp = b + (size_t)piv[k] * ldb;
        for (int c = 0; c < nrhs; c++) { double t = rk[c]; rk[c] = rp[c]; rp[c] = t; }
    }
    forward_sub(n, nrhs, lu, ldlu, b, ldb, 1); /* L has a unit diagonal */
    for (int i = n - 1; i >= 0; i--) {
        const double *ui = lu + (size_t)i * ldlu;
        double *bi = b + (size_t)i * ldb;
        for (int p = i + 1; p < n; p++) {
            double x = ui[p];
            const double *bp = b + (size_t)p * ldb;
            for (int c = 0; c < nrhs; c++) bi[c] = bi[c] - x * bp[c];
        }
        for (int c = 0; c < nrhs; c++) bi[c] = bi[c] / ui[i];
    }
    return LA_OK;
}

int la_inverse(int n, const double *a, int lda, double *ainv, int ldainv) {
    if (bad_square(n, a, lda) || bad_square(n, ainv, ldainv)) return LA_BADARG;
    if (n == 0) return LA_OK;
    double *w = malloc(sizeof(double) * (size_t)n * (size_t)n);
    int *piv = malloc(sizeof(int) * (size_t)n);
    if (!w || !piv) {
        free(w);
        free(piv);
        return LA_NOMEM;
    }
    for (int i = 0; i < n; i++)
        memcpy(w + (size_t)i * n, a + (size_t)i * lda, sizeof(double) * (size_t)n);
    int rc = la_lu(n, w, n, piv, NULL);
    if (rc == LA_OK) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) ainv[(size_t)i * ldainv + j] = (i == j) ? 1.0 : 0.0;
        rc = la_lu_solve(n, n, w, n, piv, ainv, ldainv);
    }
    free(w);
    free(piv);
    return rc;
}

/* A^-1 = L^-T L^-1 (lower triangle computed, then mirrored, so the result is
 * exactly symmetric).
 *   W = L^-1: w_ii = 1 / l_ii;  w_ij = -(sum_{p=j}^{i-1} l_ip w_pj) / l_ii  (ascending p)
 *   (A^-1)_ij = sum_{p=i}^{n-1} w_pi w_pj  for j <= i  (ascending p, from 0.0) */
int la_spd_inverse(int n, double *a, int lda, int *bad_pivot) {
    if (bad_pivot) *bad_pivot = -1;
    if (bad_square(n, a, lda)) return LA_BADARG;
    if (n == 0) return LA_OK;
    double *w = malloc(sizeof(double) * (size_t)n * (size_t)n);
    if (!w) return LA_NOMEM;
    int rc = la_cholesky(n, a, lda, bad_pivot);
    if (rc) {
        free(w);
        return rc;
    }
    for (int i = 0; i < n; i++) {
        const double *li = a + (size_t)i * lda;
        double *wi = w + (size_t)i * n;
        for (int j = 0; j < i; j++) wi[j] = 0.0;
        for (int p = 0; p < i; p++) {
            double x = li[p];
            const double *wp = w + (size_t)p * n;
            for (int j = 0; j <= p; j++) wi[j] = wi[j] + x * wp[j];
        }
        for (int j = 0; j < i; j++) wi[j] = -wi[j] / li[i];
        wi[i] = 1.0 / li[i];
    }
    for (int i = 0; i < n; i++) {
        double *ai = a + (size_t)i * lda;
        for (int j = 0; j <= i; j++) ai[j] = 0.0;
        for (int p = i; p < n; p++) {
            const double *wp = w + (size_t)p * n;
            double x = wp[i];
            for (int j = 0; j <= i; j++) ai[j] = ai[j] + x * wp[j];
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) a[(size_t)j * lda + i] = a[(size_t)i * lda + j];
    free(w);
    return LA_OK;
}

/* ------------------------------------------------------------------------- */
/* Symmetric eigenproblem: cyclic Jacobi                                      */
/* ------------------------------------------------------------------------- */

#define JACOBI_MAX_SWEEPS 60

/* x[r] <- x[r] - s (y[r] + tau x[r]),  y[r] <- y[r] + s (x[r] - tau y[r])
 * for r in [lo, hi): the rotation of rows p (x) and q (y) in Rutishauser's
 * form (c = 1/sqrt(1+t^2), s = t c, tau = s / (1 + c)), which changes small
 * entries by small amounts and keeps the rounding relative to them. */
static void jacobi_rotate(double *x, double *y, int lo, int hi, double s, double tau) {
    for (int r = lo; r < hi; r++) {
        double xr = x[r], yr = y[r];
        x[r] = xr - s * (yr + tau * xr);
        y[r] = yr + s * (xr - tau * yr);
    }
}

/* Cyclic-by-row Jacobi on the full symmetric n x n matrix m (leading
 * dimension ldm, destroyed: ends up diagonal); vt (n x n, leading dimension n)
 * accumulates the rotations, row k = eigenvector of m_kk on return.
 * Pair (p, q) is rotated unless
 *     |m_pq| <= eps * sqrt(|m_pp|) * sqrt(|m_qq|)    (relative to the diagonal)
 *  or |m_pq| <= eps^2 * max_k |m_kk| (only to stop on exactly singular input),
 * and sweeps end when a whole sweep rotates nothing. The relative test is what
 * gives small eigenvalues of positive definite matrices to high relative
 * accuracy (Demmel & Veselic 1992). */
static int jacobi_sweeps(int n, double *m, int ldm, double *vt) {
    const double eps = DBL_EPSILON;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) vt[(size_t)i * n + j] = (i == j) ? 1.0 : 0.0;
    for (int sweep = 0; sweep < JACOBI_MAX_SWEEPS; sweep++) {
        double dmax = 0.0;
        for (int k = 0; k < n; k++) dmax = fmax(dmax, fabs(m[(size_t)k * ldm + k]));
        double floor_abs = eps * eps * dmax;
        int rotations = 0;
        for (int p = 0; p < n - 1; p++) {
            for (int q = p + 1; q < n; q++) {
                double *mp = m + (size_t)p * ldm, *mq = m + (size_t)q * ldm;
                double apq = mp[q], app = mp[p], aqq = mq[q];
                double g = fabs(apq);
                if (g == 0.0 || g <= eps * sqrt(fabs(app)) * sqrt(fabs(aqq)) || g <= floor_abs)
                    continue;
                /* theta = cot(2 phi) = (a_qq - a_pp) / (2 a_pq); t = tan(phi), the
                 * smaller root of t^2 + 2 t theta - 1 = 0. */
                double theta = 0.5 * (aqq - app) / apq;
                double t;
                if (fabs(theta) > 1e150) t = 0.5 / theta;
                else {
                    t = 1.0 / (fabs(theta) + sqrt(theta * theta + 1.0));
                    if (theta < 0.0) t = -t;
                }
                double c = 1.0 / sqrt(t * t + 1.0);
                double s = t * c;
                double tau = s / (1.0 + c);
                mp[p] = app - t * apq;
                mq[q] = aqq + t * apq;
                mp[q] = 0.0;
                mq[p] = 0.0;
                jacobi_rotate(mp, mq, 0, p, s, tau);
                jacobi_rotate(mp, mq, p + 1, q, s, tau);
                jacobi_rotate(mp, mq, q + 1, n, s, tau);
                for (int r = 0; r < n; r++) { /* keep m symmetric: columns p, q */
                    if (r == p || r == q) continue;
                    m[(size_t)r * ldm + p] = mp[r];
                    m[(size_t)r * ldm + q] = mq[r];
                }
                jacobi_rotate(vt + (size_t)p * n, vt + (size_t)q * n, 0, n, s, tau);
                rotations++;
            }
        }
        if (rotations == 0) return LA_OK;
    }
    return LA_NOCONV;
}

/* Reads the lower triangle of a (mirrors it), so an input that is symmetric
 * only up to rounding still gives a symmetric problem. The working copy lives
 * in v itself; the n x n workspace holds the rotated basis. */
int la_sym_eig(int n, const double *a, int lda, double *w, double *v, int ldv) {
    if (bad_square(n, a, lda) || bad_square(n, v, ldv) || (n > 0 && w == NULL)) return LA_BADARG;
    if (n == 0) return LA_OK;
    double *vt = malloc(sizeof(double) * (size_t)n * (size_t)n);
    if (!vt) return LA_NOMEM;
    int finite = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double x = a[(size_t)i * lda + j];
            finite &= isfinite(x) != 0;
            v[(size_t)i * ldv + j] = x;
            v[(size_t)j * ldv + i] = x;
        }
    int rc = finite ? jacobi_sweeps(n, v, ldv, vt) : LA_BADARG;
    if (rc) {
        free(vt);
        return rc;
    }
    for (int k = 0; k < n; k++) w[k] = v[(size_t)k * ldv + k];
    /* Ascending order by selection sort: position k gets the first smallest
     * remaining value; deterministic for ties. */
    for (int k = 0; k < n - 1; k++) {
        int m = k;
        for (int j = k + 1; j < n; j++)
            if (w[j] < w[m]) m = j;
        if (m != k) {
            double t = w[k]; w[k] = w[m]; w[m] = t;
            double *rk = vt + (size_t)k * n, *rm = vt + (size_t)m * n;
            for (int j = 0; j < n; j++) { t = rk[j]; rk[j] = rm[j]; rm[j] = t; }
        }
    }
    /* Sign convention: the first component of largest magnitude is positive. */
    for (int k = 0; k < n; k++) {
        double *rk = vt + (size_t)k * n;
        int m = 0;
        for (int j = 1; j < n; j++)
            if (fabs(rk[j]) > fabs(rk[m])) m = j;
        if (rk[m] < 0.0)
            for (int j = 0; j < n; j++) rk[j] = -rk[j];
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) v[(size_t)i * ldv + k] = vt[(size_t)k * n + i];
    free(vt);
    return LA_OK;
}

/* out_ij = sum_k (w_k^-1/2 v_ik) v_jk, ascending k (ascending eigenvalue),
 * from 0.0; lower triangle computed, upper mirrored (exactly symmetric). */
int la_sym_inv_sqrt(int n, const double *s, int lds, double *out, int ldo) {
    if (bad_square(n, s, lds) || bad_square(n, out, ldo)) return LA_BADARG;
    if (n == 0) return LA_OK;
    double *w = malloc(sizeof(double) * (size_t)n);
    double *v = malloc(sizeof(double) * (size_t)n * (size_t)n);
    if (!w || !v) {
        free(w);
        free(v);
        return LA_NOMEM;
    }
    int rc = la_sym_eig(n, s, lds, w, v, n);
    if (rc == LA_OK && !(w[0] > 0.0)) rc = LA_NOT_SPD;
    if (rc == LA_OK) {
        for (int k = 0; k < n; k++) w[k] = 1.0 / sqrt(w[k]);
        for (int i = 0; i < n; i++) {
            double *oi = out + (size_t)i * ldo;
            const double *vi = v + (size_t)i * n;
            for (int j = 0; j <= i; j++) {
                const double *vj = v + (size_t)j * n;
                double acc = 0.0;
                for (int k = 0; k < n; k++) acc = acc + (w[k] * vi[k]) * vj[k];
                oi[j] = acc;
            }
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) out[(size_t)j * ldo + i] = out[(size_t)i * ldo + j];
    }
    free(w);
    free(v);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Matrix product                                                             */
/* ------------------------------------------------------------------------- */

/* c_ij = ((0 + a_i0 b_0j) + a_i1 b_1j) + ...  (ascending p); inner loop over j. */
void la_matmul(int m, int n, int k, const double *a, int lda, const double *b, int ldb,
               double *c, int ldc) {
    for (int i = 0; i < m; i++) {
        double *ci = c + (size_t)i * ldc;
        const double *ai = a + (size_t)i * lda;
        for (int j = 0; j < n; j++) ci[j] = 0.0;
        for (int p = 0; p < k; p++) {
            double x = ai[p];
            const double *bp = b + (size_t)p * ldb;
            for (int j = 0; j < n; j++) ci[j] = ci[j] + x * bp[j];
        }
    }
}
