/* SPDX-License-Identifier: MIT */
/* linalg.h - small dense linear algebra for the tensorial project.
 *
 * Our own, readable, exact: Cholesky, LU with partial pivoting, triangular
 * solves, a cyclic Jacobi symmetric eigensolver and the symmetric inverse
 * square root S^(-1/2) built from it.
 *
 * Conventions
 *   - Matrices are row-major double arrays with an explicit leading dimension:
 *     element (i, j) of A is a[i*lda + j], lda >= number of columns.
 *   - Functions never allocate inside hot loops, never print and never exit.
 *     They return LA_OK (0) or a positive LA_* error code; la_strerror() gives
 *     a one-line description.
 *   - Summation order is fixed (no reordering, no threads), so results are
 *     bitwise reproducible for a given compiler and -ffp-contract=off.
 *
 * Vendoring: copy linalg.c and linalg.h; libc and libm only.
 */
#ifndef LINALG_H
#define LINALG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    LA_OK = 0,
    LA_NOT_SPD = 1,   /* Cholesky met a non-positive pivot (see *bad_pivot) */
    LA_SINGULAR = 2,  /* LU met an exactly zero pivot column */
    LA_NOMEM = 3,     /* malloc failed (only functions documented to allocate) */
    LA_BADARG = 4,    /* n < 0, lda < n, NULL pointer, ... */
    LA_NOCONV = 5     /* Jacobi did not converge within its sweep limit */
};

const char *la_strerror(int code);

/* Cholesky factorisation A = L L^T of a symmetric positive definite n x n
 * matrix, in place: on return the lower triangle (including the diagonal)
 * holds L; the strict upper triangle is left untouched (only the lower
 * triangle of A is read). On LA_NOT_SPD, *bad_pivot (if not NULL) receives
 * the 0-based index of the failing pivot (a pivot <= 0 or NaN; rows and
 * columns before it hold their factor, the rest is partly updated); on
 * success *bad_pivot = -1.
 * Every element is l_ij = (a_ij - l_i0 l_j0 - l_i1 l_j1 - ... - l_i,j-1 l_j,j-1)
 * / l_jj, the products subtracted one by one in ascending order (the plain
 * textbook loop, bit for bit); blocked and vectorised across independent
 * elements only (a 4 x 8 register tile, AVX2 when the CPU has it, chosen at run
 * time; same bits as the portable copy). No heap allocation (32 KiB of stack).
 * Speed: ~15-30 GFLOP/s on one core, 0.5-0.8x single-thread OpenBLAS dpotrf
 * (bench/bench_linalg.c). */
int la_cholesky(int n, double *a, int lda, int *bad_pivot);

/* Solve A X = B given the Cholesky factor L (lower triangle of l) of A.
 * B is n x nrhs (row-major, leading dimension ldb), overwritten by X.
 * (la_trsm_lower followed by la_trsm_lower_t.) */
int la_cholesky_solve(int n, int nrhs, const double *l, int ldl, double *b, int ldb);

/* Triangular solves with nrhs right-hand sides, B overwritten by the solution.
 *   la_trsm_lower:   L X = B      (L lower triangular, non-unit diagonal)
 *   la_trsm_lower_t: L^T X = B
 * Only the lower triangle of l is read. LA_SINGULAR (B untouched) if a
 * diagonal element is exactly zero.
 * Every x_ic is the plain substitution loop's, bit for bit (forward: ascending
 * p, backward: descending i, one rounding per product and per subtraction);
 * blocked over right-hand sides and rows, vectorised across right-hand sides.
 * la_trsm_lower skips the leading all-zero rows of each block of right-hand
 * sides (e.g. the identity's, so L^-1 costs n^3/6 multiply-subtracts instead of
 * n^3/2) only where that provably changes no bit: +0.0 rows, finite L, no -0.0
 * below them (the argument is in linalg.c, tests/test_linalg.c checks it). */
int la_trsm_lower(int n, int nrhs, const double *l, int ldl, double *b, int ldb);
int la_trsm_lower_t(int n, int nrhs, const double *l, int ldl, double *b, int ldb);

/* LU factorisation with partial pivoting P A = L U, in place (unit lower L
 * below the diagonal, U on and above). piv[i] = row swapped with row i at
 * step i. LA_SINGULAR if a pivot column is exactly zero (*bad_pivot gets it). */
int la_lu(int n, double *a, int lda, int *piv, int *bad_pivot);

/* Solve A X = B from la_lu's factors; B is n x nrhs, overwritten by X.
 * LA_BADARG if piv is not a valid la_lu pivot vector (piv[k] in [k, n)). */
int la_lu_solve(int n, int nrhs, const double *lu, int ldlu, const int *piv, double *b, int ldb);

/* Inverse of a general n x n matrix via LU (allocates n ints + n*n doubles
 * of workspace internally; ainv may not alias a). */
int la_inverse(int n, const double *a, int lda, double *ainv, int ldainv);

/* Inverse of a symmetric positive definite matrix via Cholesky, in place
 * (full symmetric result). Allocates n*n doubles of workspace. */
int la_spd_inverse(int n, double *a, int lda, int *bad_pivot);

/* Symmetric eigen-decomposition A = V diag(w) V^T by cyclic Jacobi
 * rotations. a (n x n, symmetric, only read) is not modified. On return
 * w[k] are the eigenvalues in ascending order and column k of v (n x n,
 * leading dimension ldv) the matching unit eigenvector. Allocates n*n
 * doubles of workspace.
 * Details: only the lower triangle of a is read (mirrored); v may not alias
 * a; LA_BADARG if it holds a NaN or infinity. Rotations in Rutishauser's stable form; a pair (p, q) counts as
 * converged when |a_pq| <= DBL_EPSILON sqrt(|a_pp| |a_qq|) (relative to the
 * diagonal, so small eigenvalues of positive definite matrices keep their
 * relative accuracy), sweeps end when a sweep rotates nothing (LA_NOCONV after
 * 60 sweeps). Ties keep a deterministic order; each eigenvector is signed so
 * that its first component of largest magnitude is positive. About 10 sweeps
 * of ~3 n^3 flops: meant for n up to a few hundred. */
int la_sym_eig(int n, const double *a, int lda, double *w, double *v, int ldv);

/* Symmetric (Loewdin) inverse square root S^(-1/2) = V diag(w^-1/2) V^T of a
 * symmetric positive definite S via la_sym_eig. LA_NOT_SPD if an eigenvalue
 * is <= 0. out may not alias s. Allocates workspace internally.
 * The result is exactly symmetric. Accuracy on the SOAP GTO overlaps of
 * specs/soap.md (n_max 8, l <= 6, cond 1e8..4e12): max|S^-1/2 S S^-1/2 - I|
 * 3e-9 (rc 3.5), 1e-8 (rc 2.6), 1e-5 (rc 1.7), i.e. ~cond*eps/100; against a
 * 60-digit evaluation max|err|/max|S^-1/2| 3e-9, 1.4e-8, 1.5e-5. */
int la_sym_inv_sqrt(int n, const double *s, int lds, double *out, int ldo);

/* C = A B (A m x k, B k x n), plain triple loop in fixed order (i, p, j):
 * c_ij = 0 + a_i0 b_0j + a_i1 b_1j + ... in ascending p. C may not alias A or B. */
void la_matmul(int m, int n, int k, const double *a, int lda, const double *b, int ldb,
               double *c, int ldc);

#ifdef __cplusplus
}
#endif
#endif
