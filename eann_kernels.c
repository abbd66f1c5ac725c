/* SPDX-License-Identifier: MIT */
/* eann_kernels.c - the hot loops of eann.c, each in two copies, and the
 * choice between them (private header eann_kernels.h): exp of an array,
 * the matrix product of the linear layers and their weight gradient, the
 * descriptor sum S = A^T W and the density's sums of squares of S, and
 * LayerNorm + activation with its backward.
 * The physics (what these loops compute and why) is in eann.c; the plain
 * LayerNorm and activation, which the fused loops here must match, are
 * there too (eann_layernorm_forward, eann_act_forward, ...).
 *
 * 1. The portable copy: C11, written so that gcc -O2 keeps sums in (SSE)
 *    registers: explicit blocks of independent scalar sums.
 * 2. The AVX2 copy (gcc or clang on x86-64, -DTENSORIAL_NO_SIMD / make
 *    PORTABLE=1 compiles it out): the same loops with GNU C vectors of 4
 *    doubles, __attribute__((target("avx2"))), used when the CPU has AVX2
 *    (eann_work_set_simd; chosen per call, so one binary runs everywhere).
 *    HACKING.md "SIMD" says why these stay hand-written (the portable C
 *    built for AVX2 was 40-80 % slower).
 *    Section 2b: inside this copy, the exp-heavy loops (exp, radial values,
 *    LayerNorm + activation) and the packed matrix product use 8 lanes
 *    (AVX-512F) where the CPU has it;
 *    the private mode EANN_SIMD_AVX2_ONLY (tests, benchmarks) keeps 4.
 *    The forward pass reads its weights packed (eann_pack_b, filled by
 *    eann_model_sync) so that each register tile streams them in order.
 * 3. The dispatchers (IF_AVX2, IF_AVX512).
 *
 * Same-bits rule: a vector only ever runs across INDEPENDENT results
 * (columns of a matrix product, elements of a row, or the four partial sums
 * s0..s3 of sum4/dot4 in eann.c), and each lane performs exactly the IEEE
 * operations of the scalar code for its element, in the same order; "avx2"
 * does not enable FMA and we build with -ffp-contract=off, so no a*b+c is
 * fused. tests/test_eann.c compares both copies bit for bit on the published
 * models and on random models with sizes that leave tails, including
 * training gradients. Measured on NMA (bench/bench_eann.sh): the AVX2 copy is
 * 1.6-1.8x faster than the portable one.
 */
#include "eann_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* v4d is a GNU C vector of 4 doubles (the AVX2 copy only) */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(TENSORIAL_NO_SIMD)
#define EANN_HAVE_AVX2 1
#include <immintrin.h> /* the table permutes of v8_exp_core (section 2b) */
#define EANN_AVX2 __attribute__((target("avx2")))
#define EANN_AVX2_INLINE static inline __attribute__((always_inline, target("avx2")))
typedef double v4d __attribute__((vector_size(32)));
typedef uint64_t v4u __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));
#else
#define EANN_HAVE_AVX2 0
#endif

/* ------------------------------------------------------------------------ */
/* 1. the portable copy                                                     */
/* ------------------------------------------------------------------------ */

/* y[0..n) += s * x[0..n); unrolled by four so that gcc -O2 vectorises it.
 * Each y[i] gets exactly one add, so the order of every sum is unchanged. */
static inline void axpy(int n, double s, const double *restrict x, double *restrict y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        y[i] += s * x[i];
        y[i + 1] += s * x[i + 1];
        y[i + 2] += s * x[i + 2];
        y[i + 3] += s * x[i + 3];
    }
    for (; i < n; i++) y[i] += s * x[i];
}

/* Single entries of the descriptor sum S[q][k] = sum_p A[p][q] W[p][k]
 * (sum_atw, below, and its AVX2 copy): the column tails, in the order of p. */
static inline void sum_atw_2x1(int np, int M, int K, const double *A, const double *W, int q, int k,
                               double *S) {
    double a0 = 0, b0 = 0;
    for (int p = 0; p < np; p++) {
        double w = W[(size_t)p * K + k];
        a0 += A[(size_t)p * M + q] * w;
        b0 += A[(size_t)p * M + q + 1] * w;
    }
    S[(size_t)q * K + k] = a0;
    S[(size_t)(q + 1) * K + k] = b0;
}
static inline void sum_atw_1x1(int np, int M, int K, const double *A, const double *W, int q, int k,
                               double *S) {
    double a0 = 0;
    for (int p = 0; p < np; p++) a0 += A[(size_t)p * M + q] * W[(size_t)p * K + k];
    S[(size_t)q * K + k] = a0;
}

/* exp of an array */

/* 2^(j/32), j = 0..31, correctly rounded (computed with 60-digit decimals). */
static const double exp_t32[32] = {
    0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
    0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
    0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
    0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
    0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
    0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
    0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
    0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0};

/* exp(x) for |x| <= 708: x = (32 k + j) ln2/32 + r with |r| <= ln2/64
 * (kk = 32 k + j rounded to nearest by the 1.5*2^52 shift, ln2/32 split in
 * a 33-bit head, exact for |kk| < 2^20, and a tail), exp(r) - 1 by its
 * Taylor polynomial to r^6 (truncation < 4e-18), exp(x) = 2^k 2^(j/32)
 * (1 + q) with 2^k built from the exponent bits. Within 1 ulp of a correctly
 * rounded exp (tests compare with libm). Plain operations only, so the same
 * bits with every compiler and C library. */
static inline double exp_core(double x) {
    const double s32 = 0x1.71547652b82fep5, shift = 0x1.8p52;
    const double h = 0x1.62e42fef00000p-6, l = 0x1.473de6af278edp-39; /* ln2/32 = h + l */
    double kd = x * s32 + shift;
    uint64_t b;
    memcpy(&b, &kd, sizeof b); /* low bits: kk in two's complement */
    kd -= shift;
    double r = (x - kd * h) - kd * l;
    double q = r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720))))));
    double t = exp_t32[b & 31];
    uint64_t e = ((b >> 5) + 1023) << 52; /* 2^floor(kk/32) */
    double sc;
    memcpy(&sc, &e, sizeof sc);
    return (t + t * q) * sc;
}

static inline double exp_one(double x) {
    return (x >= -708.0 && x <= 708.0) ? exp_core(x) : exp(x);
}

void eann_exp_n(int n, const double *x, double *y) {
    /* Each y[i] depends on x[i] only: exp_core for |x| <= 708, libm exp
     * beyond (overflow, subnormal results, NaN). x may equal y. */
    int bad = 0; /* any x outside [-708, 708] or NaN; four independent flags */
    {
        int b0 = 0, b1 = 0, b2 = 0, b3 = 0, i = 0;
        for (; i + 4 <= n; i += 4) {
            b0 |= !(fabs(x[i]) <= 708.0);
            b1 |= !(fabs(x[i + 1]) <= 708.0);
            b2 |= !(fabs(x[i + 2]) <= 708.0);
            b3 |= !(fabs(x[i + 3]) <= 708.0);
        }
        for (; i < n; i++) b0 |= !(fabs(x[i]) <= 708.0);
        bad = b0 | b1 | b2 | b3;
    }
    if (bad) {
        for (int i = 0; i < n; i++) y[i] = exp_one(x[i]);
        return;
    }
    int i = 0;
    /* four at a time: gcc pairs the independent evaluations into SSE registers */
    for (; i + 4 <= n; i += 4) {
        double a = exp_core(x[i]), b = exp_core(x[i + 1]);
        double c = exp_core(x[i + 2]), d = exp_core(x[i + 3]);
        y[i] = a;
        y[i + 1] = b;
        y[i + 2] = c;
        y[i + 3] = d;
    }
    for (; i < n; i++) y[i] = exp_core(x[i]);
}

/* The matrix kernel of the linear layers:
 *     z[a][j] = b[j] + sum_{c = 0..nk-1} x[a][c] B[c][j]   (b == NULL: 0 + ...)
 * for a < n, j < nj; x [n][nk], B [nk][nj], z [n][nj]; every sum in the
 * order of c. Blocks of 2 rows x 8 (then 4) columns are kept in scalars
 * that gcc's SLP vectoriser pairs into SSE registers, so the sums stay in
 * registers instead of memory; the last columns go one at a time. */
static void block8(int two, int nk, int nj, const double *restrict x0, const double *restrict x1,
                   const double *restrict B, const double *restrict b, double *restrict z0,
                   double *restrict z1) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    if (b) { a0 = b[0]; a1 = b[1]; a2 = b[2]; a3 = b[3]; a4 = b[4]; a5 = b[5]; a6 = b[6]; a7 = b[7]; }
    if (two) {
        double c0 = a0, c1 = a1, c2 = a2, c3 = a3, c4 = a4, c5 = a5, c6 = a6, c7 = a7;
        for (int c = 0; c < nk; c++) {
            const double *w = B + (size_t)c * nj;
            double p = x0[c], q = x1[c];
            a0 += p * w[0]; a1 += p * w[1]; a2 += p * w[2]; a3 += p * w[3];
            a4 += p * w[4]; a5 += p * w[5]; a6 += p * w[6]; a7 += p * w[7];
            c0 += q * w[0]; c1 += q * w[1]; c2 += q * w[2]; c3 += q * w[3];
            c4 += q * w[4]; c5 += q * w[5]; c6 += q * w[6]; c7 += q * w[7];
        }
        z1[0] = c0; z1[1] = c1; z1[2] = c2; z1[3] = c3;
        z1[4] = c4; z1[5] = c5; z1[6] = c6; z1[7] = c7;
    } else {
        for (int c = 0; c < nk; c++) {
            const double *w = B + (size_t)c * nj;
            double p = x0[c];
            a0 += p * w[0]; a1 += p * w[1]; a2 += p * w[2]; a3 += p * w[3];
            a4 += p * w[4]; a5 += p * w[5]; a6 += p * w[6]; a7 += p * w[7];
        }
    }
    z0[0] = a0; z0[1] = a1; z0[2] = a2; z0[3] = a3;
    z0[4] = a4; z0[5] = a5; z0[6] = a6; z0[7] = a7;
}

static void block4(int two, int nk, int nj, const double *restrict x0, const double *restrict x1,
                   const double *restrict B, const double *restrict b, double *restrict z0,
                   double *restrict z1) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (b) { a0 = b[0]; a1 = b[1]; a2 = b[2]; a3 = b[3]; }
    double c0 = a0, c1 = a1, c2 = a2, c3 = a3;
    for (int c = 0; c < nk; c++) {
        const double *w = B + (size_t)c * nj;
        double p = x0[c], q = two ? x1[c] : 0.0;
        a0 += p * w[0]; a1 += p * w[1]; a2 += p * w[2]; a3 += p * w[3];
        c0 += q * w[0]; c1 += q * w[1]; c2 += q * w[2]; c3 += q * w[3];
    }
    z0[0] = a0; z0[1] = a1; z0[2] = a2; z0[3] = a3;
    if (two) { z1[0] = c0; z1[1] = c1; z1[2] = c2; z1[3] = c3; }
}

static void gemm_rows(int n, int nk, int nj, const double *x, const double *B, const double *b,
                      double *z) {
    int j8 = nj - nj % 8, j4 = nj - nj % 4;
    for (int a = 0; a < n; a += 2) {
        int two = a + 1 < n;
        const double *xa = x + (size_t)a * nk;
        double *za = z + (size_t)a * nj;
        for (int j = 0; j < j8; j += 8)
            block8(two, nk, nj, xa, xa + nk, B + j, b ? b + j : NULL, za + j, za + nj + j);
        if (j8 < j4)
            block4(two, nk, nj, xa, xa + nk, B + j8, b ? b + j8 : NULL, za + j8, za + nj + j8);
        for (int r = 0; r <= two; r++)
            for (int j = j4; j < nj; j++) {
                double s = b ? b[j] : 0.0;
                for (int c = 0; c < nk; c++) s += xa[(size_t)r * nk + c] * B[(size_t)c * nj + j];
                za[(size_t)r * nj + j] = s;
            }
    }
}

/* S[q][k] = sum_{p = 0..np-1} A[p][q] W[p][k] (eann_sum_atw): blocks of
 * 2 q x 4 k stay in registers (scalars that gcc pairs into SSE registers). */
static void sum_atw(int np, int M, int K, const double *restrict A, const double *restrict W,
                    double *restrict S) {
    int q = 0;
    for (; q + 2 <= M; q += 2) {
        int k = 0;
        for (; k + 4 <= K; k += 4) {
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
            for (int p = 0; p < np; p++) {
                const double *w = W + (size_t)p * K + k;
                double x = A[(size_t)p * M + q], y = A[(size_t)p * M + q + 1];
                a0 += x * w[0]; a1 += x * w[1]; a2 += x * w[2]; a3 += x * w[3];
                b0 += y * w[0]; b1 += y * w[1]; b2 += y * w[2]; b3 += y * w[3];
            }
            double *s0 = S + (size_t)q * K + k, *s1 = s0 + K;
            s0[0] = a0; s0[1] = a1; s0[2] = a2; s0[3] = a3;
            s1[0] = b0; s1[1] = b1; s1[2] = b2; s1[3] = b3;
        }
        for (; k < K; k++) sum_atw_2x1(np, M, K, A, W, q, k, S);
    }
    for (; q < M; q++)
        for (int k = 0; k < K; k++) sum_atw_1x1(np, M, K, A, W, q, k, S);
}

/* rl[k] += Sq[k]^2, four at a time (gcc pairs them into SSE registers;
 * each rl[k] gets one add) */
static inline void add_squares(int K, const double *restrict Sq, double *restrict rl) {
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        rl[k] += Sq[k] * Sq[k];
        rl[k + 1] += Sq[k + 1] * Sq[k + 1];
        rl[k + 2] += Sq[k + 2] * Sq[k + 2];
        rl[k + 3] += Sq[k + 3] * Sq[k + 3];
    }
    for (; k < K; k++) rl[k] += Sq[k] * Sq[k];
}

/* rl[k] = 0 + Sq[0][k]^2 + Sq[1][k]^2 + ... + Sq[nq-1][k]^2 (the rows of one
 * angular group, in order), four k at a time with the sums in registers:
 * the same sums as zeroing rl and calling add_squares row by row, without
 * reading back what the previous row stored */
static inline void group_squares(int K, int nq, const double *restrict Sq, double *restrict rl) {
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int q = 0; q < nq; q++) {
            const double *s = Sq + (size_t)q * K + k;
            a0 += s[0] * s[0];
            a1 += s[1] * s[1];
            a2 += s[2] * s[2];
            a3 += s[3] * s[3];
        }
        rl[k] = a0;
        rl[k + 1] = a1;
        rl[k + 2] = a2;
        rl[k + 3] = a3;
    }
    for (; k < K; k++) {
        double a = 0;
        for (int q = 0; q < nq; q++) a += Sq[(size_t)q * K + k] * Sq[(size_t)q * K + k];
        rl[k] = a;
    }
}

/* eann_rho_squares: a run of components of one group at once
 * (group_squares; the groups of the models are consecutive runs,
 * eann_model_new), a group met again adds (add_squares) */
static void rho_squares(int M, int K, const double *S, const int *grp, int nL, double *rho) {
    unsigned char started[EANN_MAX_NIPSIN] = {0};
    for (int q = 0; q < M;) {
        const int L = grp[q];
        int q1 = q + 1;
        while (q1 < M && grp[q1] == L) q1++;
        if (!started[L])
            group_squares(K, q1 - q, S + (size_t)q * K, rho + (size_t)L * K);
        else
            for (int r = q; r < q1; r++) add_squares(K, S + (size_t)r * K, rho + (size_t)L * K);
        started[L] = 1;
        q = q1;
    }
    for (int L = 0; L < nL; L++)
        if (!started[L]) memset(rho + (size_t)L * K, 0, sizeof(double) * (size_t)K);
}

/* eann_radial, one pair: the argument -inta (t t), t = d - rs, four at a
 * time (gcc pairs them into SSE registers), eann_exp_n, then W = par R */
static void radial_pair(int K, double d, const double *restrict rs, const double *restrict inta,
                        const double *restrict par, double *restrict R, double *restrict W) {
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        double t0 = d - rs[k], t1 = d - rs[k + 1], t2 = d - rs[k + 2], t3 = d - rs[k + 3];
        R[k] = -inta[k] * (t0 * t0);
        R[k + 1] = -inta[k + 1] * (t1 * t1);
        R[k + 2] = -inta[k + 2] * (t2 * t2);
        R[k + 3] = -inta[k + 3] * (t3 * t3);
    }
    for (; k < K; k++) {
        double t = d - rs[k];
        R[k] = -inta[k] * (t * t);
    }
    eann_exp_n(K, R, R);
    for (k = 0; k + 4 <= K; k += 4) {
        W[k] = par[k] * R[k];
        W[k + 1] = par[k + 1] * R[k + 1];
        W[k + 2] = par[k + 2] * R[k + 2];
        W[k + 3] = par[k + 3] * R[k + 3];
    }
    for (; k < K; k++) W[k] = par[k] * R[k];
}

/* ------------------------------------------------------------------------ */
/* 2. the AVX2 copy (one vector lane = one scalar sum of the copy above)    */
/* ------------------------------------------------------------------------ */

/* Vector width: 4 doubles versus 2 (SSE2) in the portable copy; the matrix
 * tiles keep up to 8 independent vector sums in flight. */
#if EANN_HAVE_AVX2

EANN_AVX2_INLINE v4d v_load(const double *p) {
    v4d v;
    memcpy(&v, p, sizeof v);
    return v;
}
EANN_AVX2_INLINE void v_store(double *p, v4d v) { memcpy(p, &v, sizeof v); }
EANN_AVX2_INLINE v4d v_splat(double s) { return (v4d){s, s, s, s}; }
/* ((s0 + s1) + (s2 + s3)): the combination of the four partial sums of sum4/dot4 */
EANN_AVX2_INLINE double v_sum4(v4d s) { return (s[0] + s[1]) + (s[2] + s[3]); }

/* exp_core on four lanes (the same operations; |x| <= 708 only) */
EANN_AVX2_INLINE v4d v_exp_core(v4d x) {
    const double s32 = 0x1.71547652b82fep5, shift = 0x1.8p52;
    const double h = 0x1.62e42fef00000p-6, l = 0x1.473de6af278edp-39;
    v4d kd = x * s32 + shift;
    v4u b = (v4u)kd;
    kd -= shift;
    v4d r = (x - kd * h) - kd * l;
    v4d q = r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720))))));
    v4d t = {exp_t32[b[0] & 31], exp_t32[b[1] & 31], exp_t32[b[2] & 31], exp_t32[b[3] & 31]};
    v4u e = ((b >> 5) + 1023) << 52;
    return (t + t * q) * (v4d)e;
}

/* eann_exp_n (same bits): if every x is within [-708, 708] (checked first,
 * four lanes at a time; NaN fails), exp_core four at a time, else exp_one
 * element by element as eann_exp_n does. */
EANN_AVX2_INLINE void exp_n_avx2_body(int n, const double *x, double *y) {
    const int n4 = n - n % 4;
    v4i ok = {-1, -1, -1, -1};
    for (int i = 0; i < n4; i += 4) {
        v4d v = v_load(x + i);
        ok &= (v >= -708.0) & (v <= 708.0);
    }
    int good = (ok[0] & ok[1] & ok[2] & ok[3]) != 0;
    for (int i = n4; i < n; i++) good &= fabs(x[i]) <= 708.0;
    if (!good) {
        for (int i = 0; i < n; i++) y[i] = exp_one(x[i]);
        return;
    }
    for (int i = 0; i < n4; i += 4) v_store(y + i, v_exp_core(v_load(x + i)));
    for (int i = n4; i < n; i++) y[i] = exp_core(x[i]);
}

EANN_AVX2 static void exp_n_avx2(int n, const double *x, double *y) { exp_n_avx2_body(n, x, y); }

/* eann_radial (same bits as radial_pair) in three passes over the fresh
 * pairs: the arguments -inta (t t), then exp over each run of consecutive
 * fresh pairs as one long array (the exp chains of many pairs overlap; per
 * pair there would be only three vectors), then W = par R. exp_n with the
 * chosen width (EXP8: 8 lanes, section 2b) gives each element what
 * eann_exp_n gives. */
EANN_AVX2_INLINE void radial_args_all(int np, int K, const double *d, const int *nbr,
                                      const int *species, const int *src, const double *rs,
                                      const double *inta, double *R) {
    const int K4 = K - K % 4;
    for (int p = 0; p < np; p++) {
        if (src[p] >= 0) continue;
        const size_t s = (size_t)species[nbr[p]] * K;
        const double dp = d[p], *rss = rs + s, *ins = inta + s;
        double *Rp = R + (size_t)p * K;
        for (int k = 0; k < K4; k += 4) {
            v4d t = dp - v_load(rss + k);
            v_store(Rp + k, -v_load(ins + k) * (t * t));
        }
        for (int k = K4; k < K; k++) {
            double t = dp - rss[k];
            Rp[k] = -ins[k] * (t * t);
        }
    }
}
EANN_AVX2_INLINE void radial_w_all(int np, int K, const int *nbr, const int *species,
                                   const int *src, const double *par, const double *R, double *W) {
    const int K4 = K - K % 4;
    for (int p = 0; p < np; p++) {
        if (src[p] >= 0) continue;
        const double *pas = par + (size_t)species[nbr[p]] * K, *Rp = R + (size_t)p * K;
        double *Wp = W + (size_t)p * K;
        for (int k = 0; k < K4; k += 4) v_store(Wp + k, v_load(pas + k) * v_load(Rp + k));
        for (int k = K4; k < K; k++) Wp[k] = pas[k] * Rp[k];
    }
}

EANN_AVX2 static void radial_avx2(int np, int K, const double *d, const int *nbr,
                                  const int *species, const int *src, const double *rs,
                                  const double *inta, const double *par, double *R, double *W) {
    radial_args_all(np, K, d, nbr, species, src, rs, inta, R);
    for (int p = 0; p < np;) {
        int e = p; /* pairs p .. e-1 are fresh */
        while (e < np && src[e] < 0) e++;
        if (e > p) exp_n_avx2_body((e - p) * K, R + (size_t)p * K, R + (size_t)p * K);
        p = e + 1;
    }
    radial_w_all(np, K, nbr, species, src, par, R, W);
}

/* gemm_rows on AVX2 (same arguments, same sums: each z[a][j] starts from
 * b[j] (or 0) and adds x[a][c] B[c][j] for c = 0, 1, ... in turn). The
 * tiles keep up to eight vector sums in registers: 4 (or the last 3 or 2)
 * rows x 8 columns, or 1 row x 32 columns for a single row (a species with
 * one atom is a matrix-vector product). Narrower column tails: one vector per row, then
 * single columns. Written out by hand: compilers keep named variables, not
 * small arrays, in registers. */
EANN_AVX2_INLINE v4d v_init(const double *b, int j) { return b ? v_load(b + j) : v_splat(0.0); }

/* columns j..j+7 of rows 0..R-1 (R <= 4; R is a constant at every call,
 * so the unused sums vanish) */
EANN_AVX2_INLINE void tile_rx8(int R, int nk, int nj, const double *x, const double *B,
                               const double *b, int j, double *z) {
    const double *x0 = x, *x1 = x + nk, *x2 = x + 2 * (size_t)nk, *x3 = x + 3 * (size_t)nk;
    v4d a0 = v_init(b, j), a1 = v_init(b, j + 4);
    v4d b0 = a0, b1 = a1, c0 = a0, c1 = a1, d0 = a0, d1 = a1;
    for (int c = 0; c < nk; c++) {
        const double *w = B + (size_t)c * nj + j;
        v4d w0 = v_load(w), w1 = v_load(w + 4), p;
        p = v_splat(x0[c]); a0 += p * w0; a1 += p * w1;
        if (R > 1) { p = v_splat(x1[c]); b0 += p * w0; b1 += p * w1; }
        if (R > 2) { p = v_splat(x2[c]); c0 += p * w0; c1 += p * w1; }
        if (R > 3) { p = v_splat(x3[c]); d0 += p * w0; d1 += p * w1; }
    }
    v_store(z + j, a0); v_store(z + j + 4, a1);
    if (R > 1) { z += nj; v_store(z + j, b0); v_store(z + j + 4, b1); }
    if (R > 2) { z += nj; v_store(z + j, c0); v_store(z + j + 4, c1); }
    if (R > 3) { z += nj; v_store(z + j, d0); v_store(z + j + 4, d1); }
}

EANN_AVX2_INLINE void tile_1x32(int nk, int nj, const double *x, const double *B,
                                const double *b, int j, double *z) {
    v4d a0 = v_init(b, j), a1 = v_init(b, j + 4), a2 = v_init(b, j + 8), a3 = v_init(b, j + 12);
    v4d a4 = v_init(b, j + 16), a5 = v_init(b, j + 20), a6 = v_init(b, j + 24);
    v4d a7 = v_init(b, j + 28);
    for (int c = 0; c < nk; c++) {
        const double *w = B + (size_t)c * nj + j;
        v4d p = v_splat(x[c]);
        a0 += p * v_load(w); a1 += p * v_load(w + 4); a2 += p * v_load(w + 8);
        a3 += p * v_load(w + 12); a4 += p * v_load(w + 16); a5 += p * v_load(w + 20);
        a6 += p * v_load(w + 24); a7 += p * v_load(w + 28);
    }
    v_store(z + j, a0); v_store(z + j + 4, a1); v_store(z + j + 8, a2);
    v_store(z + j + 12, a3); v_store(z + j + 16, a4); v_store(z + j + 20, a5);
    v_store(z + j + 24, a6); v_store(z + j + 28, a7);
}

/* columns j..j+3 of rows 0..R-1, one vector sum per row (R <= 4) */
EANN_AVX2_INLINE void tile_rx4(int R, int nk, int nj, const double *x, const double *B,
                               const double *b, int j, double *z) {
    v4d a0 = v_init(b, j), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < nk; c++) {
        v4d w = v_load(B + (size_t)c * nj + j);
        a0 += v_splat(x[c]) * w;
        if (R > 1) a1 += v_splat(x[nk + c]) * w;
        if (R > 2) a2 += v_splat(x[2 * (size_t)nk + c]) * w;
        if (R > 3) a3 += v_splat(x[3 * (size_t)nk + c]) * w;
    }
    v_store(z + j, a0);
    if (R > 1) v_store(z + nj + j, a1);
    if (R > 2) v_store(z + 2 * (size_t)nj + j, a2);
    if (R > 3) v_store(z + 3 * (size_t)nj + j, a3);
}

/* column j of rows 0..R-1 (R <= 4), the rows' sums interleaved */
EANN_AVX2_INLINE void tile_rx1(int R, int nk, int nj, const double *x, const double *B,
                               const double *b, int j, double *z) {
    double a0 = b ? b[j] : 0.0, a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < nk; c++) {
        double w = B[(size_t)c * nj + j];
        a0 += x[c] * w;
        if (R > 1) a1 += x[nk + c] * w;
        if (R > 2) a2 += x[2 * (size_t)nk + c] * w;
        if (R > 3) a3 += x[3 * (size_t)nk + c] * w;
    }
    z[j] = a0;
    if (R > 1) z[nj + j] = a1;
    if (R > 2) z[2 * (size_t)nj + j] = a2;
    if (R > 3) z[3 * (size_t)nj + j] = a3;
}

/* rows 0..R-1 (R = 2..4), all columns */
EANN_AVX2_INLINE void rows_avx2(int R, int nk, int nj, const double *x, const double *B,
                                const double *b, double *z) {
    int j = 0;
    for (; j + 8 <= nj; j += 8) tile_rx8(R, nk, nj, x, B, b, j, z);
    for (; j + 4 <= nj; j += 4) tile_rx4(R, nk, nj, x, B, b, j, z);
    for (; j < nj; j++) tile_rx1(R, nk, nj, x, B, b, j, z);
}

/* one row, all columns */
EANN_AVX2_INLINE void row1_avx2(int nk, int nj, const double *x, const double *B,
                                const double *b, double *z) {
    int j = 0;
    for (; j + 32 <= nj; j += 32) tile_1x32(nk, nj, x, B, b, j, z);
    for (; j + 4 <= nj; j += 4) tile_rx4(1, nk, nj, x, B, b, j, z);
    for (; j < nj; j++) tile_rx1(1, nk, nj, x, B, b, j, z);
}

/* gemm_avx2 on packed weights (eann_pack_b): the same tiles and the same
 * sums, each z[a][j] from b[j] (or 0) adding x[a][c] B[c][j] for c = 0, 1,
 * ... in turn; only the addresses of the weights differ. In the ptile_*
 * below, Bp, bj and z point at the tile's first column (of the packed
 * block, of the bias, of the output), ldb and ldz are their row strides. */

/* 8 columns of rows 0..R-1 (R <= 4) from a packed block [nk][8] */
EANN_AVX2_INLINE void ptile_rx8(int R, int nk, const double *x, const double *Bp,
                                const double *bj, double *z, int ldz) {
    const double *x0 = x, *x1 = x + nk, *x2 = x + 2 * (size_t)nk, *x3 = x + 3 * (size_t)nk;
    v4d a0 = v_init(bj, 0), a1 = v_init(bj, 4);
    v4d b0 = a0, b1 = a1, c0 = a0, c1 = a1, d0 = a0, d1 = a1;
    for (int c = 0; c < nk; c++) {
        const double *w = Bp + 8 * (size_t)c;
        v4d w0 = v_load(w), w1 = v_load(w + 4), p;
        p = v_splat(x0[c]); a0 += p * w0; a1 += p * w1;
        if (R > 1) { p = v_splat(x1[c]); b0 += p * w0; b1 += p * w1; }
        if (R > 2) { p = v_splat(x2[c]); c0 += p * w0; c1 += p * w1; }
        if (R > 3) { p = v_splat(x3[c]); d0 += p * w0; d1 += p * w1; }
    }
    v_store(z, a0); v_store(z + 4, a1);
    if (R > 1) { z += ldz; v_store(z, b0); v_store(z + 4, b1); }
    if (R > 2) { z += ldz; v_store(z, c0); v_store(z + 4, c1); }
    if (R > 3) { z += ldz; v_store(z, d0); v_store(z + 4, d1); }
}

/* 32 columns of one row from four consecutive packed blocks (8 sums, as
 * tile_1x32) */
EANN_AVX2_INLINE void ptile_1x32(int nk, const double *x, const double *Bp, const double *bj,
                                 double *z) {
    const size_t s = 8 * (size_t)nk; /* from one block to the next */
    v4d a0 = v_init(bj, 0), a1 = v_init(bj, 4), a2 = v_init(bj, 8), a3 = v_init(bj, 12);
    v4d a4 = v_init(bj, 16), a5 = v_init(bj, 20), a6 = v_init(bj, 24), a7 = v_init(bj, 28);
    for (int c = 0; c < nk; c++) {
        const double *w = Bp + 8 * (size_t)c;
        v4d p = v_splat(x[c]);
        a0 += p * v_load(w); a1 += p * v_load(w + 4);
        a2 += p * v_load(w + s); a3 += p * v_load(w + s + 4);
        a4 += p * v_load(w + 2 * s); a5 += p * v_load(w + 2 * s + 4);
        a6 += p * v_load(w + 3 * s); a7 += p * v_load(w + 3 * s + 4);
    }
    v_store(z, a0); v_store(z + 4, a1); v_store(z + 8, a2); v_store(z + 12, a3);
    v_store(z + 16, a4); v_store(z + 20, a5); v_store(z + 24, a6); v_store(z + 28, a7);
}

/* 4 columns, then 1 column, of rows 0..R-1 (R <= 4) from B rows of stride
 * ldb (the packed tail [nk][nt]) */
EANN_AVX2_INLINE void ptile_rx4(int R, int nk, const double *x, const double *Bp, int ldb,
                                const double *bj, double *z, int ldz) {
    v4d a0 = v_init(bj, 0), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < nk; c++) {
        v4d w = v_load(Bp + (size_t)c * ldb);
        a0 += v_splat(x[c]) * w;
        if (R > 1) a1 += v_splat(x[nk + c]) * w;
        if (R > 2) a2 += v_splat(x[2 * (size_t)nk + c]) * w;
        if (R > 3) a3 += v_splat(x[3 * (size_t)nk + c]) * w;
    }
    v_store(z, a0);
    if (R > 1) v_store(z + ldz, a1);
    if (R > 2) v_store(z + 2 * (size_t)ldz, a2);
    if (R > 3) v_store(z + 3 * (size_t)ldz, a3);
}
EANN_AVX2_INLINE void ptile_rx1(int R, int nk, const double *x, const double *Bp, int ldb,
                                const double *bj, double *z, int ldz) {
    double a0 = bj ? bj[0] : 0.0, a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < nk; c++) {
        double w = Bp[(size_t)c * ldb];
        a0 += x[c] * w;
        if (R > 1) a1 += x[nk + c] * w;
        if (R > 2) a2 += x[2 * (size_t)nk + c] * w;
        if (R > 3) a3 += x[3 * (size_t)nk + c] * w;
    }
    z[0] = a0;
    if (R > 1) z[ldz] = a1;
    if (R > 2) z[2 * (size_t)ldz] = a2;
    if (R > 3) z[3 * (size_t)ldz] = a3;
}

/* rows 0..R-1 (R <= 4), all columns, from packed weights; one row takes
 * blocks of 32 columns where it can (as row1_avx2) */
EANN_AVX2_INLINE void prows_avx2(int R, int nk, int nj, const double *x, const double *P,
                                 const double *b, double *z) {
    const int j8 = nj - nj % 8, nt = nj - j8;
    int j = 0;
    if (R == 1)
        for (; j + 32 <= j8; j += 32) ptile_1x32(nk, x, P + (size_t)j * nk, b ? b + j : NULL, z + j);
    for (; j < j8; j += 8) ptile_rx8(R, nk, x, P + (size_t)j * nk, b ? b + j : NULL, z + j, nj);
    const double *Pt = P + (size_t)j8 * nk; /* [nk][nt] */
    int l = 0;
    for (; l + 4 <= nt; l += 4)
        ptile_rx4(R, nk, x, Pt + l, nt, b ? b + j8 + l : NULL, z + j8 + l, nj);
    for (; l < nt; l++) ptile_rx1(R, nk, x, Pt + l, nt, b ? b + j8 + l : NULL, z + j8 + l, nj);
}

/* one output column (nj = 1: the last layer of every element network) of
 * rows 0..R-1 (R <= 8, a constant at every call): z[r] = b[0] (or 0) +
 * x[r][0] w[0] + x[r][1] w[1] + ..., w = P (packed [nk][1] is B itself).
 * Each sum is a chain of nk dependent adds, so the time is the latency of
 * the chain; eight rows' chains side by side cost about what four do. */
EANN_AVX2_INLINE void pcol_r8(int R, int nk, const double *x, const double *w, const double *b,
                              double *z) {
    const double *x0 = x, *x1 = x + nk, *x2 = x + 2 * (size_t)nk, *x3 = x + 3 * (size_t)nk;
    const double *x4 = x + 4 * (size_t)nk, *x5 = x + 5 * (size_t)nk, *x6 = x + 6 * (size_t)nk;
    const double *x7 = x + 7 * (size_t)nk;
    double a0 = b ? b[0] : 0.0, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int c = 0; c < nk; c++) {
        const double wc = w[c];
        a0 += x0[c] * wc;
        if (R > 1) a1 += x1[c] * wc;
        if (R > 2) a2 += x2[c] * wc;
        if (R > 3) a3 += x3[c] * wc;
        if (R > 4) a4 += x4[c] * wc;
        if (R > 5) a5 += x5[c] * wc;
        if (R > 6) a6 += x6[c] * wc;
        if (R > 7) a7 += x7[c] * wc;
    }
    z[0] = a0;
    if (R > 1) z[1] = a1;
    if (R > 2) z[2] = a2;
    if (R > 3) z[3] = a3;
    if (R > 4) z[4] = a4;
    if (R > 5) z[5] = a5;
    if (R > 6) z[6] = a6;
    if (R > 7) z[7] = a7;
}

EANN_AVX2 static void gemm_packed_avx2(int n, int nk, int nj, const double *x, const double *P,
                                       const double *b, double *z) {
    int a = 0;
    if (nj == 1) {
        for (; a + 8 <= n; a += 8) pcol_r8(8, nk, x + (size_t)a * nk, P, b, z + a);
        const double *xa = x + (size_t)a * nk;
        switch (n - a) { /* the last 0..7 rows */
        case 7: pcol_r8(7, nk, xa, P, b, z + a); break;
        case 6: pcol_r8(6, nk, xa, P, b, z + a); break;
        case 5: pcol_r8(5, nk, xa, P, b, z + a); break;
        case 4: pcol_r8(4, nk, xa, P, b, z + a); break;
        case 3: pcol_r8(3, nk, xa, P, b, z + a); break;
        case 2: pcol_r8(2, nk, xa, P, b, z + a); break;
        case 1: pcol_r8(1, nk, xa, P, b, z + a); break;
        default: break;
        }
        return;
    }
    for (; a + 4 <= n; a += 4) prows_avx2(4, nk, nj, x + (size_t)a * nk, P, b, z + (size_t)a * nj);
    const double *xa = x + (size_t)a * nk;
    double *za = z + (size_t)a * nj;
    switch (n - a) { /* the last 0..3 rows */
    case 3: prows_avx2(3, nk, nj, xa, P, b, za); break;
    case 2: prows_avx2(2, nk, nj, xa, P, b, za); break;
    case 1: prows_avx2(1, nk, nj, xa, P, b, za); break;
    default: break;
    }
}

EANN_AVX2 static void gemm_avx2(int n, int nk, int nj, const double *x, const double *B,
                                const double *b, double *z) {
    int a = 0;
    for (; a + 4 <= n; a += 4) rows_avx2(4, nk, nj, x + (size_t)a * nk, B, b, z + (size_t)a * nj);
    const double *xa = x + (size_t)a * nk;
    double *za = z + (size_t)a * nj;
    switch (n - a) { /* the last 0..3 rows */
    case 3: rows_avx2(3, nk, nj, xa, B, b, za); break;
    case 2: rows_avx2(2, nk, nj, xa, B, b, za); break;
    case 1: row1_avx2(nk, nj, xa, B, b, za); break;
    default: break;
    }
}

/* The weight gradient of a linear layer (same bits as linear_backward's
 * axpy loop): dw[o][c] += dz[a][o] x[a][c] for a = 0, 1, ... in turn; a
 * block of 16 (then 4, then 1) entries of dw[o] stays in registers while
 * all rows a are added. */
EANN_AVX2 static void dw_avx2(int n, int nin, int nout, const double *x, const double *dz,
                              double *dw) {
    for (int o = 0; o < nout; o++) {
        double *d = dw + (size_t)o * nin;
        int c = 0;
        for (; c + 16 <= nin; c += 16) {
            v4d a0 = v_load(d + c), a1 = v_load(d + c + 4), a2 = v_load(d + c + 8);
            v4d a3 = v_load(d + c + 12);
            for (int a = 0; a < n; a++) {
                const double *xa = x + (size_t)a * nin + c;
                v4d g = v_splat(dz[(size_t)a * nout + o]);
                a0 += g * v_load(xa);
                a1 += g * v_load(xa + 4);
                a2 += g * v_load(xa + 8);
                a3 += g * v_load(xa + 12);
            }
            v_store(d + c, a0); v_store(d + c + 4, a1);
            v_store(d + c + 8, a2); v_store(d + c + 12, a3);
        }
        for (; c + 4 <= nin; c += 4) {
            v4d a0 = v_load(d + c);
            for (int a = 0; a < n; a++)
                a0 += v_splat(dz[(size_t)a * nout + o]) * v_load(x + (size_t)a * nin + c);
            v_store(d + c, a0);
        }
        for (; c < nin; c++) {
            double a0 = d[c];
            for (int a = 0; a < n; a++) a0 += dz[(size_t)a * nout + o] * x[(size_t)a * nin + c];
            d[c] = a0;
        }
    }
}

/* eann_layernorm_forward followed by eann_act_forward (same bits): z [n][c]
 * (may alias y), y [n][c] LayerNorm output, zhat, rstd [n], sig [n][c],
 * a [n][c]. Each row's mean and variance are chains of c/4 dependent vector
 * adds; ln_stats runs up to four rows' chains side by side so that their
 * latencies overlap, then ln_act_row finishes each row in one pass. */

/* mean and variance of rows 0..R-1 (R <= 4, a constant at every call) of z:
 * zhat = z - mu, rstd = 1 / sqrt(var + eps), with sum4 / dot4's order */
EANN_AVX2_INLINE void ln_stats(int R, int c, const double *z, double eps, double *zhat,
                               double *rstd) {
    const int c4 = c - c % 4;
    const double *z0 = z, *z1 = z + c, *z2 = z + 2 * (size_t)c, *z3 = z + 3 * (size_t)c;
    double *h0 = zhat, *h1 = zhat + c, *h2 = zhat + 2 * (size_t)c, *h3 = zhat + 3 * (size_t)c;
    v4d s0 = v_splat(0.0), s1 = s0, s2 = s0, s3 = s0;
    for (int i = 0; i < c4; i += 4) { /* sum4 */
        s0 += v_load(z0 + i);
        if (R > 1) s1 += v_load(z1 + i);
        if (R > 2) s2 += v_load(z2 + i);
        if (R > 3) s3 += v_load(z3 + i);
    }
    double m0 = v_sum4(s0), m1 = R > 1 ? v_sum4(s1) : 0, m2 = R > 2 ? v_sum4(s2) : 0;
    double m3 = R > 3 ? v_sum4(s3) : 0;
    for (int i = c4; i < c; i++) {
        m0 += z0[i];
        if (R > 1) m1 += z1[i];
        if (R > 2) m2 += z2[i];
        if (R > 3) m3 += z3[i];
    }
    m0 /= c; m1 /= c; m2 /= c; m3 /= c;
    s0 = s1 = s2 = s3 = v_splat(0.0);
    for (int i = 0; i < c4; i += 4) { /* zhat = z - mu; dot4(zhat, zhat) */
        v4d h = v_load(z0 + i) - m0;
        v_store(h0 + i, h);
        s0 += h * h;
        if (R > 1) { h = v_load(z1 + i) - m1; v_store(h1 + i, h); s1 += h * h; }
        if (R > 2) { h = v_load(z2 + i) - m2; v_store(h2 + i, h); s2 += h * h; }
        if (R > 3) { h = v_load(z3 + i) - m3; v_store(h3 + i, h); s3 += h * h; }
    }
    double v0 = v_sum4(s0), v1 = R > 1 ? v_sum4(s1) : 0, v2 = R > 2 ? v_sum4(s2) : 0;
    double v3 = R > 3 ? v_sum4(s3) : 0;
    for (int i = c4; i < c; i++) {
        h0[i] = z0[i] - m0;
        v0 += h0[i] * h0[i];
        if (R > 1) { h1[i] = z1[i] - m1; v1 += h1[i] * h1[i]; }
        if (R > 2) { h2[i] = z2[i] - m2; v2 += h2[i] * h2[i]; }
        if (R > 3) { h3[i] = z3[i] - m3; v3 += h3[i] * h3[i]; }
    }
    /* biased variance, then 1 / sqrt(var + eps), the rows in the lanes of
     * one vector (sqrt and / are correctly rounded in every lane, as in the
     * scalar code) */
    const v4d vr = (v4d){v0, v1, v2, v3} / (double)c + eps;
    const v4d rs = 1.0 / (v4d)_mm256_sqrt_pd((__m256d)vr);
    rstd[0] = rs[0];
    if (R > 1) rstd[1] = rs[1];
    if (R > 2) rstd[2] = rs[2];
    if (R > 3) rstd[3] = rs[3];
}

/* the columns cv..c-1 that the vectors did not cover (zhat *= rs, y), then
 * the activation from column cv if every vector lane's exp argument was in
 * range (inrange 1), else the whole row again with exp_one (the same value
 * for each argument in range): the scalar end of ln_act_row and its 8-lane
 * copy */
EANN_AVX2_INLINE void ln_act_tail(int c, int cv, int inrange, const double *g, const double *bb,
                                  const double *alpha, const double *beta, double rs,
                                  double *hr, double *yr, double *sr, double *ar) {
    for (int i = cv; i < c; i++) {
        hr[i] *= rs;
        yr[i] = hr[i] * g[i] + bb[i];
    }
    for (int i = inrange ? cv : 0; i < c; i++) {
        double t = beta[i] * yr[i];
        double sg = 1.0 / (1.0 + exp_one(-(beta[i] * yr[i])));
        sr[i] = sg;
        ar[i] = alpha[i] * t * sg;
    }
}

/* columns i, i + 1, ... in 4-lane vectors while 4 are left; *ok gathers
 * the range test of their exp arguments; returns the first column left */
EANN_AVX2_INLINE int ln_act_v4(int i, int c, const double *g, const double *bb,
                               const double *alpha, const double *beta, double rs, double *hr,
                               double *yr, double *sr, double *ar, v4i *ok) {
    for (; i + 4 <= c; i += 4) {
        v4d h = v_load(hr + i) * rs;
        v4d yy = h * v_load(g + i) + v_load(bb + i);
        v4d t = v_load(beta + i) * yy, e = -t;
        *ok &= (e >= -708.0) & (e <= 708.0);
        v4d sg = 1.0 / (1.0 + v_exp_core(e));
        v_store(hr + i, h);
        v_store(yr + i, yy);
        v_store(sr + i, sg);
        v_store(ar + i, v_load(alpha + i) * t * sg);
    }
    return i;
}

/* one row after ln_stats: zhat *= rs, y = zhat g + bb, then the activation
 * a = alpha (beta y) sigmoid(beta y), the exp as eann_exp_n: exp_core for
 * every lane, kept if all arguments of the row are in range, else the row is
 * redone with exp_one (the same value for each argument in range) */
EANN_AVX2_INLINE void ln_act_row(int c, const double *g, const double *bb, const double *alpha,
                                 const double *beta, double rs, double *hr, double *yr,
                                 double *sr, double *ar) {
    v4i ok = {-1, -1, -1, -1};
    const int cv = ln_act_v4(0, c, g, bb, alpha, beta, rs, hr, yr, sr, ar, &ok);
    ln_act_tail(c, cv, ok[0] & ok[1] & ok[2] & ok[3] & 1, g, bb, alpha, beta, rs, hr, yr, sr, ar);
}

/* eann_ln_act's rows in groups of up to four (ln_stats of the group, then
 * row_fn, ln_act_row or its 8-lane copy, on each row); the body of
 * ln_act_avx2 and ln_act_avx512, whose arguments it uses by name */
#define LN_ACT_GROUP(R, row_fn, r0)                                                              \
    do {                                                                                         \
        const size_t o = (size_t)(r0) * c;                                                       \
        ln_stats(R, c, z + o, eps, zhat + o, rstd + (r0));                                       \
        for (int k = 0; k < (R); k++) {                                                          \
            const size_t ok_ = o + (size_t)k * c;                                                \
            row_fn(c, g, bb, alpha, beta, rstd[(r0) + k], zhat + ok_, y + ok_, sig + ok_,        \
                   a + ok_);                                                                     \
        }                                                                                        \
    } while (0)
#define LN_ACT_BODY(row_fn)                                                                      \
    do {                                                                                         \
        int r = 0;                                                                               \
        for (; r + 4 <= n; r += 4) LN_ACT_GROUP(4, row_fn, r);                                   \
        switch (n - r) { /* the last 0..3 rows */                                                \
        case 3: LN_ACT_GROUP(3, row_fn, r); break;                                               \
        case 2: LN_ACT_GROUP(2, row_fn, r); break;                                               \
        case 1: LN_ACT_GROUP(1, row_fn, r); break;                                               \
        default: break;                                                                          \
        }                                                                                        \
    } while (0)

EANN_AVX2 static void ln_act_avx2(int n, int c, const double *z, const double *g,
                                  const double *bb, double eps, const double *alpha,
                                  const double *beta, double *zhat, double *rstd, double *y,
                                  double *sig, double *a) {
    LN_ACT_BODY(ln_act_row);
}

/* eann_ln_act_blocks (same bits as ln_act_avx2 block by block): the
 * statistics of all rows first, four rows at a time across the species
 * blocks (12 NMA rows: 3 groups instead of 5 of 1, 4, 3, 3, 1 rows; each
 * group is a latency-bound chain, ln_stats), then each row's LayerNorm
 * and activation with its block's parameters. row_fn: ln_act_row or its
 * 8-lane copy ln_act_row512. */
#define LN_ACT_BLOCKS_BODY(row_fn)                                                               \
    do {                                                                                         \
        const int r0 = start[0], n = start[nb] - r0;                                             \
        int r = 0;                                                                               \
        for (; r + 4 <= n; r += 4)                                                               \
            ln_stats(4, c, z + (size_t)(r0 + r) * c, eps, zhat + (size_t)(r0 + r) * c,          \
                     rstd + r0 + r);                                                             \
        const double *zr = z + (size_t)(r0 + r) * c;                                             \
        double *hr = zhat + (size_t)(r0 + r) * c, *sr = rstd + r0 + r;                           \
        switch (n - r) { /* the last 0..3 rows */                                                \
        case 3: ln_stats(3, c, zr, eps, hr, sr); break;                                          \
        case 2: ln_stats(2, c, zr, eps, hr, sr); break;                                          \
        case 1: ln_stats(1, c, zr, eps, hr, sr); break;                                          \
        default: break;                                                                          \
        }                                                                                        \
        for (int b = 0; b < nb; b++)                                                             \
            for (int q = start[b]; q < start[b + 1]; q++) {                                      \
                const size_t o = (size_t)q * c;                                                  \
                row_fn(c, g[b], bb[b], alpha[b], beta[b], rstd[q], zhat + o, y + o, sig + o,     \
                       a + o);                                                                   \
            }                                                                                    \
    } while (0)

EANN_AVX2 static void ln_act_blocks_avx2(int nb, const int *start, int c, const double *z,
                                         const double *const *g, const double *const *bb,
                                         double eps, const double *const *alpha,
                                         const double *const *beta, double *zhat, double *rstd,
                                         double *y, double *sig, double *a) {
    LN_ACT_BLOCKS_BODY(ln_act_row);
}

/* eann_out1_blocks: four rows r0..r3 (each with its own weights w0..w3 and
 * bias) in the four lanes of one vector sum. Per four columns c..c+3 the
 * products x[r][c+l] w[r][c+l] are formed row by row (one vector per row,
 * the same IEEE products), transposed (4 x 4), and added to the lane sums
 * column by column, so lane k adds row k's products in the order of c as
 * the scalar sum does. Why: a per-row scalar chain loads two numbers per
 * product (x and the row's w); here one vector load serves four. Lanes of
 * rows that do not exist repeat row 0 and are not stored. */
EANN_AVX2_INLINE v4d out4_rows(int nk, const double *x0, const double *x1, const double *x2,
                               const double *x3, const double *w0, const double *w1,
                               const double *w2, const double *w3, v4d acc) {
    const int nk4 = nk - nk % 4;
    for (int c = 0; c < nk4; c += 4) {
        const __m256d p0 = (__m256d)(v_load(x0 + c) * v_load(w0 + c));
        const __m256d p1 = (__m256d)(v_load(x1 + c) * v_load(w1 + c));
        const __m256d p2 = (__m256d)(v_load(x2 + c) * v_load(w2 + c));
        const __m256d p3 = (__m256d)(v_load(x3 + c) * v_load(w3 + c));
        /* transpose: t_l = (p0[l], p1[l], p2[l], p3[l]) */
        const __m256d u0 = _mm256_unpacklo_pd(p0, p1), u1 = _mm256_unpackhi_pd(p0, p1);
        const __m256d u2 = _mm256_unpacklo_pd(p2, p3), u3 = _mm256_unpackhi_pd(p2, p3);
        acc += (v4d)_mm256_permute2f128_pd(u0, u2, 0x20);
        acc += (v4d)_mm256_permute2f128_pd(u1, u3, 0x20);
        acc += (v4d)_mm256_permute2f128_pd(u0, u2, 0x31);
        acc += (v4d)_mm256_permute2f128_pd(u1, u3, 0x31);
    }
    for (int c = nk4; c < nk; c++) {
        const v4d p = {x0[c] * w0[c], x1[c] * w1[c], x2[c] * w2[c], x3[c] * w3[c]};
        acc += p;
    }
    return acc;
}

EANN_AVX2 static void out1_blocks_avx2(int nb, const int *start, int nk, const double *x,
                                       const double *const *w, const double *const *b,
                                       double *z) {
    const int r0 = start[0], n = start[nb] - r0;
    int blk = 0;
    /* up to three groups of four rows side by side (their chains overlap) */
    for (int r = 0; r < n; r += 12) {
        const double *xr[12], *wr[12];
        v4d acc[3];
        const int R = n - r < 12 ? n - r : 12, G = (R + 3) / 4;
        for (int k = 0; k < 4 * G; k++) {
            if (k < R) { /* the block of row r0 + r + k */
                while (r0 + r + k >= start[blk + 1]) blk++;
                xr[k] = x + (size_t)(r0 + r + k) * nk;
                wr[k] = w[blk];
                acc[k / 4][k % 4] = b[blk] ? b[blk][0] : 0.0;
            } else {
                xr[k] = xr[0];
                wr[k] = wr[0];
                acc[k / 4][k % 4] = 0.0;
            }
        }
        if (G == 3) {
            v4d a0 = acc[0], a1 = acc[1], a2 = acc[2];
            const int nk4 = nk - nk % 4;
            /* the three groups' loops merged by hand: 4 columns at a time */
            for (int c = 0; c < nk4; c += 4) {
                a0 = out4_rows(4, xr[0] + c, xr[1] + c, xr[2] + c, xr[3] + c, wr[0] + c,
                               wr[1] + c, wr[2] + c, wr[3] + c, a0);
                a1 = out4_rows(4, xr[4] + c, xr[5] + c, xr[6] + c, xr[7] + c, wr[4] + c,
                               wr[5] + c, wr[6] + c, wr[7] + c, a1);
                a2 = out4_rows(4, xr[8] + c, xr[9] + c, xr[10] + c, xr[11] + c, wr[8] + c,
                               wr[9] + c, wr[10] + c, wr[11] + c, a2);
            }
            const int nt = nk - nk4;
            acc[0] = out4_rows(nt, xr[0] + nk4, xr[1] + nk4, xr[2] + nk4, xr[3] + nk4,
                               wr[0] + nk4, wr[1] + nk4, wr[2] + nk4, wr[3] + nk4, a0);
            acc[1] = out4_rows(nt, xr[4] + nk4, xr[5] + nk4, xr[6] + nk4, xr[7] + nk4,
                               wr[4] + nk4, wr[5] + nk4, wr[6] + nk4, wr[7] + nk4, a1);
            acc[2] = out4_rows(nt, xr[8] + nk4, xr[9] + nk4, xr[10] + nk4, xr[11] + nk4,
                               wr[8] + nk4, wr[9] + nk4, wr[10] + nk4, wr[11] + nk4, a2);
        } else {
            for (int g = 0; g < G; g++)
                acc[g] = out4_rows(nk, xr[4 * g], xr[4 * g + 1], xr[4 * g + 2], xr[4 * g + 3],
                                   wr[4 * g], wr[4 * g + 1], wr[4 * g + 2], wr[4 * g + 3],
                                   acc[g]);
        }
        for (int k = 0; k < R; k++) z[r0 + r + k] = acc[k / 4][k % 4];
    }
}

/* eann_act_backward then eann_layernorm_backward without parameter
 * gradients (same bits): da [n][c] -> dy [n][c] (scratch) -> dz [n][c]. */
EANN_AVX2 static void act_ln_backward_avx2(int n, int c, const double *y, const double *sig,
                                           const double *alpha, const double *beta,
                                           const double *zhat, const double *rstd,
                                           const double *g, const double *da, double *dy,
                                           double *dz) {
    const int c4 = c - c % 4;
    for (int r = 0; r < n; r++) {
        const double *yr = y + (size_t)r * c, *sr = sig + (size_t)r * c;
        const double *dar = da + (size_t)r * c, *hr = zhat + (size_t)r * c;
        double *dyr = dy + (size_t)r * c, *dzr = dz + (size_t)r * c;
        v4d sg = v_splat(0.0), sgh = v_splat(0.0);
        for (int i = 0; i < c4; i += 4) {
            v4d bt = v_load(beta + i), s = v_load(sr + i);
            v4d t = bt * v_load(yr + i);
            v4d dadt = v_load(alpha + i) * (s + t * s * (1.0 - s));
            v4d d = v_load(dar + i) * (bt * dadt);
            v_store(dyr + i, d);
            v4d G = v_load(g + i) * d;
            sg += G;
            sgh += G * v_load(hr + i);
        }
        double ssg = v_sum4(sg), ssgh = v_sum4(sgh);
        for (int i = c4; i < c; i++) {
            double t = beta[i] * yr[i], s = sr[i];
            double dadt = alpha[i] * (s + t * s * (1.0 - s));
            dyr[i] = dar[i] * (beta[i] * dadt);
            double G = g[i] * dyr[i];
            ssg += G;
            ssgh += G * hr[i];
        }
        const double mg = ssg / c, mgh = ssgh / c, rs = rstd[r];
        for (int i = 0; i < c4; i += 4)
            v_store(dzr + i, (v_load(g + i) * v_load(dyr + i) - mg - v_load(hr + i) * mgh) * rs);
        for (int i = c4; i < c; i++) dzr[i] = (g[i] * dyr[i] - mg - hr[i] * mgh) * rs;
    }
}

/* sum_atw (same bits): S[q][k] = sum_p A[p][q] W[p][k], each sum starting
 * from 0 in the order of p. A tile holds rows q..q+Q-1 (Q <= 4) and columns
 * k..k+4V-1 (V <= 3 vectors) in up to 12 vector sums while all pairs p are
 * added: for the published models (M = 13, K = 12) a tile is 4 x 12, so
 * each pair's W row is loaded once per 4 rows. Q and V are constants at
 * every call, so the unused sums vanish. */
EANN_AVX2_INLINE void atw_tile(int Q, int V, int np, int M, int K, const double *A,
                               const double *W, int q, int k, double *S) {
    v4d a0 = v_splat(0.0), a1 = a0, a2 = a0, b0 = a0, b1 = a0, b2 = a0;
    v4d c0 = a0, c1 = a0, c2 = a0, d0 = a0, d1 = a0, d2 = a0;
    for (int p = 0; p < np; p++) {
        const double *w = W + (size_t)p * K + k, *x = A + (size_t)p * M + q;
        v4d w0 = v_load(w), w1 = V > 1 ? v_load(w + 4) : w0, w2 = V > 2 ? v_load(w + 8) : w0, t;
        t = v_splat(x[0]); a0 += t * w0; if (V > 1) a1 += t * w1; if (V > 2) a2 += t * w2;
        if (Q > 1) { t = v_splat(x[1]); b0 += t * w0; if (V > 1) b1 += t * w1; if (V > 2) b2 += t * w2; }
        if (Q > 2) { t = v_splat(x[2]); c0 += t * w0; if (V > 1) c1 += t * w1; if (V > 2) c2 += t * w2; }
        if (Q > 3) { t = v_splat(x[3]); d0 += t * w0; if (V > 1) d1 += t * w1; if (V > 2) d2 += t * w2; }
    }
    double *s = S + (size_t)q * K + k;
    v_store(s, a0); if (V > 1) v_store(s + 4, a1); if (V > 2) v_store(s + 8, a2);
    if (Q > 1) { s += K; v_store(s, b0); if (V > 1) v_store(s + 4, b1); if (V > 2) v_store(s + 8, b2); }
    if (Q > 2) { s += K; v_store(s, c0); if (V > 1) v_store(s + 4, c1); if (V > 2) v_store(s + 8, c2); }
    if (Q > 3) { s += K; v_store(s, d0); if (V > 1) v_store(s + 4, d1); if (V > 2) v_store(s + 8, d2); }
}

/* rows q..q+Q-1, columns k0..K-1 (k0 a multiple of 4): tiles of 3
 * vectors, then 2 or 1, then the last K % 4 columns one by one */
EANN_AVX2_INLINE void atw_rows(int Q, int np, int M, int K, const double *A, const double *W,
                               int q, int k0, double *S) {
    const int K4 = K - K % 4;
    int k = k0;
    for (; k + 12 <= K4; k += 12) atw_tile(Q, 3, np, M, K, A, W, q, k, S);
    if (K4 - k == 8) atw_tile(Q, 2, np, M, K, A, W, q, k, S);
    if (K4 - k == 4) atw_tile(Q, 1, np, M, K, A, W, q, k, S);
    for (int r = q; r < q + Q; r++)
        for (k = K4; k < K; k++) sum_atw_1x1(np, M, K, A, W, r, k, S);
}

/* all rows, columns k0..K-1 (the AVX-512 copy does columns 0..k0-1 itself) */
EANN_AVX2_INLINE void atw_cols(int np, int M, int K, const double *A, const double *W, int k0,
                               double *S) {
    int q = 0;
    for (; q + 4 <= M; q += 4) atw_rows(4, np, M, K, A, W, q, k0, S);
    switch (M - q) { /* the last 0..3 rows */
    case 3: atw_rows(3, np, M, K, A, W, q, k0, S); break;
    case 2: atw_rows(2, np, M, K, A, W, q, k0, S); break;
    case 1: atw_rows(1, np, M, K, A, W, q, k0, S); break;
    default: break;
    }
}

EANN_AVX2 static void sum_atw_avx2(int np, int M, int K, const double *A, const double *W,
                                   double *S) {
    atw_cols(np, M, K, A, W, 0, S);
}

/* rho_squares (same bits): per run of components q .. q1-1 of one group,
 * twelve (then four, then one) columns at a time, the sums in registers
 * from 0 (or from rho when the group was met before) adding S[r][k]^2 for
 * r = q .. q1-1 in turn. Why: the portable loop keeps two 2-lane sums per
 * chain of dependent adds (nine long for L = 2), so its time was that
 * latency; here three 4-lane chains run side by side. */
EANN_AVX2 static void rho_squares_avx2(int M, int K, const double *S, const int *grp, int nL,
                                       double *rho) {
    unsigned char started[EANN_MAX_NIPSIN] = {0};
    const int K4 = K - K % 4;
    for (int q = 0; q < M;) {
        const int L = grp[q];
        int q1 = q + 1;
        while (q1 < M && grp[q1] == L) q1++;
        double *rl = rho + (size_t)L * K;
        int k = 0;
        for (; k + 12 <= K4; k += 12) {
            v4d a0 = v_splat(0.0), a1 = a0, a2 = a0;
            if (started[L]) a0 = v_load(rl + k), a1 = v_load(rl + k + 4), a2 = v_load(rl + k + 8);
            for (int r = q; r < q1; r++) {
                const double *s = S + (size_t)r * K + k;
                const v4d s0 = v_load(s), s1 = v_load(s + 4), s2 = v_load(s + 8);
                a0 += s0 * s0;
                a1 += s1 * s1;
                a2 += s2 * s2;
            }
            v_store(rl + k, a0);
            v_store(rl + k + 4, a1);
            v_store(rl + k + 8, a2);
        }
        for (; k < K4; k += 4) {
            v4d a0 = started[L] ? v_load(rl + k) : v_splat(0.0);
            for (int r = q; r < q1; r++) {
                const v4d s0 = v_load(S + (size_t)r * K + k);
                a0 += s0 * s0;
            }
            v_store(rl + k, a0);
        }
        for (; k < K; k++) {
            double a0 = started[L] ? rl[k] : 0.0;
            for (int r = q; r < q1; r++) a0 += S[(size_t)r * K + k] * S[(size_t)r * K + k];
            rl[k] = a0;
        }
        started[L] = 1;
        q = q1;
    }
    for (int L = 0; L < nL; L++)
        if (!started[L]) memset(rho + (size_t)L * K, 0, sizeof(double) * (size_t)K);
}

/* 2b. AVX-512 inside the AVX2 copy: the exp-heavy loops (eann_exp_n, the
 * radial values, LayerNorm + activation) with 8 lanes where the CPU has
 * AVX-512F. Why: these loops are bound by the number of instructions, not
 * by arithmetic (AMD Zen 4 runs a 512-bit operation as two 256-bit halves
 * but issues it as one): exp of an array measured 0.64 against 1.0 ns per
 * value. Each lane still does exactly the scalar operations (exp_core's,
 * with its table entries picked by two permutes instead of four loads), so
 * the bits are those of the other copies. The sums of LayerNorm keep the
 * 4-lane order of sum4/dot4 (ln_stats above). Chosen at run time by the
 * dispatchers (IF_AVX512); EANN_SIMD_AVX2_ONLY (tests) keeps 4 lanes.
 * The packed matrix product (forward pass) runs 8 lanes too
 * (gemm_packed_avx512): with 4 lanes it issued about as many instructions
 * as Zen 4 dispatches; its 8-lane tiles pay only with the weights on
 * 64-byte boundaries (they measured 5-25 % slower before, every 64-byte
 * load straddling two cache lines). */
#define EANN_AVX512 __attribute__((target("avx512f")))
#define EANN_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))
typedef double v8d __attribute__((vector_size(64)));
typedef uint64_t v8u __attribute__((vector_size(64)));

EANN_AVX512_INLINE v8d v8_load(const double *p) {
    v8d v;
    memcpy(&v, p, sizeof v);
    return v;
}
EANN_AVX512_INLINE void v8_store(double *p, v8d v) { memcpy(p, &v, sizeof v); }

/* exp_core on eight lanes (|x| <= 708 only); t = exp_t32[b & 31] from the
 * table's halves 0..15 and 16..31 (two-source permutes on the low 4 bits)
 * and bit 4 of b choosing between them */
EANN_AVX512_INLINE v8d v8_exp_core(v8d x) {
    const double s32 = 0x1.71547652b82fep5, shift = 0x1.8p52;
    const double h = 0x1.62e42fef00000p-6, l = 0x1.473de6af278edp-39;
    v8d kd = x * s32 + shift;
    v8u b = (v8u)kd;
    kd -= shift;
    v8d r = (x - kd * h) - kd * l;
    v8d q = r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720))))));
    const __m512i j = (__m512i)b;
    const __m512d lo = _mm512_permutex2var_pd(_mm512_loadu_pd(exp_t32), j, _mm512_loadu_pd(exp_t32 + 8));
    const __m512d hi = _mm512_permutex2var_pd(_mm512_loadu_pd(exp_t32 + 16), j,
                                              _mm512_loadu_pd(exp_t32 + 24));
    v8d t = (v8d)_mm512_mask_blend_pd(_mm512_test_epi64_mask(j, _mm512_set1_epi64(16)), lo, hi);
    v8u e = ((b >> 5) + 1023) << 52;
    return (t + t * q) * (v8d)e;
}

/* v8_exp_core of two vectors, written step by step side by side: each is
 * a chain of some 20 dependent operations, and the processor overlaps two
 * chains only when both are in its scheduler at once (ln_act_row512). The
 * operations of each lane are those of v8_exp_core. */
EANN_AVX512_INLINE void v8_exp_core2(v8d x0, v8d x1, v8d *y0, v8d *y1) {
    const double s32 = 0x1.71547652b82fep5, shift = 0x1.8p52;
    const double h = 0x1.62e42fef00000p-6, l = 0x1.473de6af278edp-39;
    v8d k0 = x0 * s32 + shift, k1 = x1 * s32 + shift;
    v8u b0 = (v8u)k0, b1 = (v8u)k1;
    k0 -= shift;
    k1 -= shift;
    v8d r0 = (x0 - k0 * h) - k0 * l, r1 = (x1 - k1 * h) - k1 * l;
    v8d q0 = 1.0 / 120 + r0 * (1.0 / 720), q1 = 1.0 / 120 + r1 * (1.0 / 720);
    q0 = 1.0 / 24 + r0 * q0;
    q1 = 1.0 / 24 + r1 * q1;
    q0 = 1.0 / 6 + r0 * q0;
    q1 = 1.0 / 6 + r1 * q1;
    q0 = 0.5 + r0 * q0;
    q1 = 0.5 + r1 * q1;
    q0 = 1.0 + r0 * q0;
    q1 = 1.0 + r1 * q1;
    q0 = r0 * q0;
    q1 = r1 * q1;
    const __m512d t0 = _mm512_loadu_pd(exp_t32), t1 = _mm512_loadu_pd(exp_t32 + 8);
    const __m512d t2 = _mm512_loadu_pd(exp_t32 + 16), t3 = _mm512_loadu_pd(exp_t32 + 24);
    const __m512i j0 = (__m512i)b0, j1 = (__m512i)b1, sixteen = _mm512_set1_epi64(16);
    v8d u0 = (v8d)_mm512_mask_blend_pd(_mm512_test_epi64_mask(j0, sixteen),
                                       _mm512_permutex2var_pd(t0, j0, t1),
                                       _mm512_permutex2var_pd(t2, j0, t3));
    v8d u1 = (v8d)_mm512_mask_blend_pd(_mm512_test_epi64_mask(j1, sixteen),
                                       _mm512_permutex2var_pd(t0, j1, t1),
                                       _mm512_permutex2var_pd(t2, j1, t3));
    v8u e0 = ((b0 >> 5) + 1023) << 52, e1 = ((b1 >> 5) + 1023) << 52;
    *y0 = (u0 + u0 * q0) * (v8d)e0;
    *y1 = (u1 + u1 * q1) * (v8d)e1;
}

/* The range test of the 8-lane exp loops: "every -708 <= x <= 708" as "the
 * largest bits of |x| <= those of 708". For |x| the bits read as unsigned
 * integers are ordered as the values, and a NaN's lie above infinity's, so
 * the two tests agree on every input, NaN included; per vector one integer
 * and plus one integer max instead of two compares and a mask chain
 * (dipole model, 12-atom NMA: 0.01-0.08 us per molecule less, the larger
 * figure on a loaded machine). big: the running maximum, from v8_bits0(). */
EANN_AVX512_INLINE __m512i v8_bits0(void) { return _mm512_setzero_si512(); }
EANN_AVX512_INLINE __m512i v8_absbits_max(__m512i big, v8d x) {
    return _mm512_max_epu64(big, _mm512_and_si512((__m512i)x, _mm512_set1_epi64(INT64_MAX)));
}
EANN_AVX512_INLINE int v8_within708(__m512i big) {
    const double lim = 708.0;
    uint64_t limbits;
    memcpy(&limbits, &lim, sizeof limbits);
    return _mm512_reduce_max_epu64(big) <= limbits;
}

/* exp_n_avx2 with 8 lanes (then 4, then 1) */
EANN_AVX512 static void exp_n_avx512(int n, const double *x, double *y) {
    const int n8 = n - n % 8;
    __m512i big = v8_bits0(); /* the range test (v8_within708) */
    for (int i = 0; i < n8; i += 8) big = v8_absbits_max(big, v8_load(x + i));
    int good = v8_within708(big);
    for (int i = n8; i < n; i++) good &= fabs(x[i]) <= 708.0;
    if (!good) {
        for (int i = 0; i < n; i++) y[i] = exp_one(x[i]);
        return;
    }
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        v8d y0, y1;
        v8_exp_core2(v8_load(x + i), v8_load(x + i + 8), &y0, &y1);
        v8_store(y + i, y0);
        v8_store(y + i + 8, y1);
    }
    for (; i < n8; i += 8) v8_store(y + i, v8_exp_core(v8_load(x + i)));
    for (; i + 4 <= n; i += 4) v_store(y + i, v_exp_core(v_load(x + i)));
    for (; i < n; i++) y[i] = exp_core(x[i]);
}

/* radial_avx2 with the exp of 8 lanes */
EANN_AVX512 static void radial_avx512(int np, int K, const double *d, const int *nbr,
                                      const int *species, const int *src, const double *rs,
                                      const double *inta, const double *par, double *R,
                                      double *W) {
    radial_args_all(np, K, d, nbr, species, src, rs, inta, R);
    for (int p = 0; p < np;) {
        int e = p; /* pairs p .. e-1 are fresh */
        while (e < np && src[e] < 0) e++;
        if (e > p) exp_n_avx512((e - p) * K, R + (size_t)p * K, R + (size_t)p * K);
        p = e + 1;
    }
    radial_w_all(np, K, nbr, species, src, par, R, W);
}

/* gemm_packed_avx2 with 8 lanes: one vector per packed block of 8 columns
 * and row, the same sums (each z[a][j] from b[j] (or 0) adding x[a][c]
 * B[c][j] for c = 0, 1, ... in turn; lane l of a block's vector is column
 * j0 + l). Why: the 4-lane tiles need one instruction per 4 multiply-adds
 * plus a broadcast per row and step, about what Zen 4 dispatches per cycle,
 * so they ran at ~80 % of its two multiply and two add pipes; here one
 * instruction covers 8 multiply-adds (Zen 4 runs it as two 256-bit halves:
 * the same arithmetic rate, half the instructions), and with the weights
 * on 64-byte boundaries (eann_model_new) each block row is one cache line.
 * Tiles: rows 0..R-1 (R <= 4) x 32 columns (4 blocks, up to 16 sums), then
 * 16, then 8; the nj % 8 last columns as in the AVX2 copy. Measured on the
 * dipole model (12-atom NMA, Zen 4): 9.8 -> 8.4 us per molecule with the
 * aligned weights; before the alignment, 8-lane tiles were 5-25 % slower
 * (every 64-byte load straddled two lines). */
EANN_AVX512_INLINE v8d v8_init(const double *b) {
    return b ? v8_load(b) : (v8d){0, 0, 0, 0, 0, 0, 0, 0};
}
EANN_AVX512_INLINE v8d v8_splat(double s) { return (v8d){s, s, s, s, s, s, s, s}; }

/* columns 0..8V-1 (V = 1, 2 or 4 packed blocks, s doubles apart) of rows
 * 0..R-1 (R <= 4); R and V are constants at every call, so the unused
 * sums vanish. x[r][c] is broadcast inside the multiply where it is used
 * once (an embedded broadcast). */
EANN_AVX512_INLINE void ptile8(int R, int V, int nk, const double *x, const double *Bp,
                               const double *bj, double *z, int ldz) {
    const double *x0 = x, *x1 = x + nk, *x2 = x + 2 * (size_t)nk, *x3 = x + 3 * (size_t)nk;
    const size_t s = 8 * (size_t)nk; /* from one block to the next */
    const v8d zero = {0, 0, 0, 0, 0, 0, 0, 0};
    v8d a0 = v8_init(bj), a1 = V > 1 ? v8_init(bj ? bj + 8 : NULL) : zero;
    v8d a2 = V > 2 ? v8_init(bj ? bj + 16 : NULL) : zero;
    v8d a3 = V > 2 ? v8_init(bj ? bj + 24 : NULL) : zero;
    v8d b0 = a0, b1 = a1, b2 = a2, b3 = a3, c0 = a0, c1 = a1, c2 = a2, c3 = a3;
    v8d d0 = a0, d1 = a1, d2 = a2, d3 = a3;
    for (int k = 0; k < nk; k++) {
        const double *wp = Bp + 8 * (size_t)k;
        const v8d w0 = v8_load(wp), w1 = V > 1 ? v8_load(wp + s) : zero;
        const v8d w2 = V > 2 ? v8_load(wp + 2 * s) : zero, w3 = V > 2 ? v8_load(wp + 3 * s) : zero;
        v8d p = v8_splat(x0[k]);
        a0 += p * w0;
        if (V > 1) a1 += p * w1;
        if (V > 2) { a2 += p * w2; a3 += p * w3; }
        if (R > 1) {
            p = v8_splat(x1[k]);
            b0 += p * w0;
            if (V > 1) b1 += p * w1;
            if (V > 2) { b2 += p * w2; b3 += p * w3; }
        }
        if (R > 2) {
            p = v8_splat(x2[k]);
            c0 += p * w0;
            if (V > 1) c1 += p * w1;
            if (V > 2) { c2 += p * w2; c3 += p * w3; }
        }
        if (R > 3) {
            p = v8_splat(x3[k]);
            d0 += p * w0;
            if (V > 1) d1 += p * w1;
            if (V > 2) { d2 += p * w2; d3 += p * w3; }
        }
    }
    v8_store(z, a0);
    if (V > 1) v8_store(z + 8, a1);
    if (V > 2) { v8_store(z + 16, a2); v8_store(z + 24, a3); }
    if (R > 1) {
        z += ldz;
        v8_store(z, b0);
        if (V > 1) v8_store(z + 8, b1);
        if (V > 2) { v8_store(z + 16, b2); v8_store(z + 24, b3); }
    }
    if (R > 2) {
        z += ldz;
        v8_store(z, c0);
        if (V > 1) v8_store(z + 8, c1);
        if (V > 2) { v8_store(z + 16, c2); v8_store(z + 24, c3); }
    }
    if (R > 3) {
        z += ldz;
        v8_store(z, d0);
        if (V > 1) v8_store(z + 8, d1);
        if (V > 2) { v8_store(z + 16, d2); v8_store(z + 24, d3); }
    }
}

/* rows 0..R-1 (R <= 4), all columns, from packed weights */
EANN_AVX512_INLINE void prows512(int R, int nk, int nj, const double *x, const double *P,
                                 const double *b, double *z) {
    const int j8 = nj - nj % 8, nt = nj - j8;
    int j = 0;
    for (; j + 32 <= j8; j += 32) ptile8(R, 4, nk, x, P + (size_t)j * nk, b ? b + j : NULL, z + j, nj);
    for (; j + 16 <= j8; j += 16) ptile8(R, 2, nk, x, P + (size_t)j * nk, b ? b + j : NULL, z + j, nj);
    for (; j < j8; j += 8) ptile8(R, 1, nk, x, P + (size_t)j * nk, b ? b + j : NULL, z + j, nj);
    const double *Pt = P + (size_t)j8 * nk; /* [nk][nt] */
    int l = 0;
    for (; l + 4 <= nt; l += 4)
        ptile_rx4(R, nk, x, Pt + l, nt, b ? b + j8 + l : NULL, z + j8 + l, nj);
    for (; l < nt; l++) ptile_rx1(R, nk, x, Pt + l, nt, b ? b + j8 + l : NULL, z + j8 + l, nj);
}

EANN_AVX512 static void gemm_packed_avx512(int n, int nk, int nj, const double *x,
                                           const double *P, const double *b, double *z) {
    if (nj == 1) { /* one output column: the AVX2 copy's row chains */
        gemm_packed_avx2(n, nk, nj, x, P, b, z);
        return;
    }
    int a = 0;
    for (; a + 4 <= n; a += 4) prows512(4, nk, nj, x + (size_t)a * nk, P, b, z + (size_t)a * nj);
    const double *xa = x + (size_t)a * nk;
    double *za = z + (size_t)a * nj;
    switch (n - a) { /* the last 0..3 rows */
    case 3: prows512(3, nk, nj, xa, P, b, za); break;
    case 2: prows512(2, nk, nj, xa, P, b, za); break;
    case 1: prows512(1, nk, nj, xa, P, b, za); break;
    default: break;
    }
}

/* sum_atw_avx2 with 8 lanes: rows q..q+Q-1 (Q <= 8) x columns k..k+7 in Q
 * vector sums while all pairs p are added (each S[q][k] from 0 in the order
 * of p, as sum_atw); then the last K % 8 columns by the AVX2 copy's tiles.
 * Why: the published models' K = 12 columns are 1.5 vectors of 8; a tile
 * of 8 rows x 8 columns needs one W load and 8 broadcast multiplies per
 * pair where the 4-lane tiles needed 3 loads and 12 multiplies per 4 rows. */
EANN_AVX512_INLINE void atw_tile512(int Q, int np, int M, int K, const double *A,
                                    const double *W, int q, int k, double *S) {
    const v8d z = {0, 0, 0, 0, 0, 0, 0, 0};
    v8d a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z;
    for (int p = 0; p < np; p++) {
        const v8d w = v8_load(W + (size_t)p * K + k);
        const double *x = A + (size_t)p * M + q;
        a0 += v8_splat(x[0]) * w;
        if (Q > 1) a1 += v8_splat(x[1]) * w;
        if (Q > 2) a2 += v8_splat(x[2]) * w;
        if (Q > 3) a3 += v8_splat(x[3]) * w;
        if (Q > 4) a4 += v8_splat(x[4]) * w;
        if (Q > 5) a5 += v8_splat(x[5]) * w;
        if (Q > 6) a6 += v8_splat(x[6]) * w;
        if (Q > 7) a7 += v8_splat(x[7]) * w;
    }
    double *s = S + (size_t)q * K + k;
    v8_store(s, a0);
    if (Q > 1) v8_store(s + K, a1);
    if (Q > 2) v8_store(s + 2 * (size_t)K, a2);
    if (Q > 3) v8_store(s + 3 * (size_t)K, a3);
    if (Q > 4) v8_store(s + 4 * (size_t)K, a4);
    if (Q > 5) v8_store(s + 5 * (size_t)K, a5);
    if (Q > 6) v8_store(s + 6 * (size_t)K, a6);
    if (Q > 7) v8_store(s + 7 * (size_t)K, a7);
}

EANN_AVX512 static void sum_atw_avx512(int np, int M, int K, const double *A, const double *W,
                                       double *S) {
    const int K8 = K - K % 8;
    for (int k = 0; k < K8; k += 8) {
        int q = 0;
        for (; q + 8 <= M; q += 8) atw_tile512(8, np, M, K, A, W, q, k, S);
        switch (M - q) {
        case 7: atw_tile512(7, np, M, K, A, W, q, k, S); break;
        case 6: atw_tile512(6, np, M, K, A, W, q, k, S); break;
        case 5: atw_tile512(5, np, M, K, A, W, q, k, S); break;
        case 4: atw_tile512(4, np, M, K, A, W, q, k, S); break;
        case 3: atw_tile512(3, np, M, K, A, W, q, k, S); break;
        case 2: atw_tile512(2, np, M, K, A, W, q, k, S); break;
        case 1: atw_tile512(1, np, M, K, A, W, q, k, S); break;
        default: break;
        }
    }
    /* the last K % 8 columns by the AVX2 copy's tiles */
    if (K8 < K) atw_cols(np, M, K, A, W, K8, S);
}

/* ln_act_row with 8 lanes (then 4, then 1); the same redo rule, the range
 * test of the 8-lane loops by v8_within708 */
EANN_AVX512_INLINE void ln_act_row512(int c, const double *g, const double *bb,
                                      const double *alpha, const double *beta, double rs,
                                      double *hr, double *yr, double *sr, double *ar) {
    const int c8 = c - c % 8;
    __m512i big = v8_bits0(); /* the range test of the 8-lane loops */
    v4i ok4 = {-1, -1, -1, -1};
    int i = 0;
    for (; i + 16 <= c; i += 16) { /* two vectors side by side (v8_exp_core2) */
        v8d h0 = v8_load(hr + i) * rs, h1 = v8_load(hr + i + 8) * rs;
        v8d y0 = h0 * v8_load(g + i) + v8_load(bb + i);
        v8d y1 = h1 * v8_load(g + i + 8) + v8_load(bb + i + 8);
        v8d t0 = v8_load(beta + i) * y0, t1 = v8_load(beta + i + 8) * y1, e0 = -t0, e1 = -t1, x0, x1;
        big = v8_absbits_max(v8_absbits_max(big, e0), e1);
        v8_exp_core2(e0, e1, &x0, &x1);
        v8d s0 = 1.0 / (1.0 + x0), s1 = 1.0 / (1.0 + x1);
        v8_store(hr + i, h0);
        v8_store(hr + i + 8, h1);
        v8_store(yr + i, y0);
        v8_store(yr + i + 8, y1);
        v8_store(sr + i, s0);
        v8_store(sr + i + 8, s1);
        v8_store(ar + i, v8_load(alpha + i) * t0 * s0);
        v8_store(ar + i + 8, v8_load(alpha + i + 8) * t1 * s1);
    }
    for (; i < c8; i += 8) {
        v8d h = v8_load(hr + i) * rs;
        v8d yy = h * v8_load(g + i) + v8_load(bb + i);
        v8d t = v8_load(beta + i) * yy, e = -t;
        big = v8_absbits_max(big, e);
        v8d sg = 1.0 / (1.0 + v8_exp_core(e));
        v8_store(hr + i, h);
        v8_store(yr + i, yy);
        v8_store(sr + i, sg);
        v8_store(ar + i, v8_load(alpha + i) * t * sg);
    }
    i = ln_act_v4(i, c, g, bb, alpha, beta, rs, hr, yr, sr, ar, &ok4);
    /* the columns from i on were not done in vectors */
    ln_act_tail(c, i, v8_within708(big) & ok4[0] & ok4[1] & ok4[2] & ok4[3] & 1, g, bb, alpha,
                beta, rs, hr, yr, sr, ar);
}

EANN_AVX512 static void ln_act_blocks_avx512(int nb, const int *start, int c, const double *z,
                                           const double *const *g, const double *const *bb,
                                           double eps, const double *const *alpha,
                                           const double *const *beta, double *zhat,
                                           double *rstd, double *y, double *sig, double *a) {
    LN_ACT_BLOCKS_BODY(ln_act_row512);
}

EANN_AVX512 static void ln_act_avx512(int n, int c, const double *z, const double *g,
                                      const double *bb, double eps, const double *alpha,
                                      const double *beta, double *zhat, double *rstd, double *y,
                                      double *sig, double *a) {
    LN_ACT_BODY(ln_act_row512);
}
#endif /* EANN_HAVE_AVX2 */

/* ------------------------------------------------------------------------ */
/* 3. the dispatchers                                                       */
/* ------------------------------------------------------------------------ */

/* IF_AVX2(simd, call) runs the AVX2 copy and returns when simd asks for it
 * (and this build has it); IF_AVX512(simd, call), placed before it, runs
 * the 8-lane variant of an exp-heavy loop instead when simd is
 * EANN_SIMD_AVX2 and the CPU has AVX-512F (section 2b). */
#if EANN_HAVE_AVX2
#define IF_AVX2(simd, call) \
    do { if ((simd) == EANN_SIMD_AVX2 || (simd) == EANN_SIMD_AVX2_ONLY) { call; return; } } while (0)
#define IF_AVX512(simd, call) \
    do { if ((simd) == EANN_SIMD_AVX2 && __builtin_cpu_supports("avx512f")) { call; return; } } while (0)
#else
#define IF_AVX2(simd, call) (void)(simd)
#define IF_AVX512(simd, call) (void)(simd)
#endif

void eann_matmul(int simd, int n, int nk, int nj, const double *x, const double *B,
                 const double *b, double *z) {
    IF_AVX2(simd, gemm_avx2(n, nk, nj, x, B, b, z));
    gemm_rows(n, nk, nj, x, B, b, z);
}

void eann_pack_b(int nk, int nj, const double *B, double *P) {
    const int j8 = nj - nj % 8, nt = nj - j8;
    for (int j0 = 0; j0 < j8; j0 += 8)
        for (int c = 0; c < nk; c++)
            for (int l = 0; l < 8; l++) P[(size_t)j0 * nk + 8 * (size_t)c + l] = B[(size_t)c * nj + j0 + l];
    for (int c = 0; c < nk; c++)
        for (int l = 0; l < nt; l++) P[(size_t)j8 * nk + (size_t)c * nt + l] = B[(size_t)c * nj + j8 + l];
}

void eann_matmul_packed(int simd, int n, int nk, int nj, const double *x, const double *B,
                        const double *P, const double *b, double *z) {
    IF_AVX512(simd, gemm_packed_avx512(n, nk, nj, x, P, b, z));
    IF_AVX2(simd, gemm_packed_avx2(n, nk, nj, x, P, b, z));
    (void)P;
    gemm_rows(n, nk, nj, x, B, b, z);
}

void eann_weight_grad(int simd, int n, int nin, int nout, const double *x, const double *dz,
                      double *dw) {
    IF_AVX2(simd, dw_avx2(n, nin, nout, x, dz, dw));
    for (int o = 0; o < nout; o++)
        for (int a = 0; a < n; a++)
            axpy(nin, dz[(size_t)a * nout + o], x + (size_t)a * nin, dw + (size_t)o * nin);
}

void eann_exp_sel(int simd, int n, const double *x, double *y) {
    IF_AVX512(simd, exp_n_avx512(n, x, y));
    IF_AVX2(simd, exp_n_avx2(n, x, y));
    eann_exp_n(n, x, y);
}

void eann_radial(int simd, int np, int K, const double *d, const int *nbr, const int *species,
                 const int *src, const double *rs, const double *inta, const double *par,
                 double *R, double *W) {
    IF_AVX512(simd, radial_avx512(np, K, d, nbr, species, src, rs, inta, par, R, W));
    IF_AVX2(simd, radial_avx2(np, K, d, nbr, species, src, rs, inta, par, R, W));
    for (int p = 0; p < np; p++) {
        if (src[p] >= 0) continue;
        const size_t s = (size_t)species[nbr[p]] * K;
        radial_pair(K, d[p], rs + s, inta + s, par + s, R + (size_t)p * K, W + (size_t)p * K);
    }
}

void eann_sum_atw(int simd, int np, int M, int K, const double *A, const double *W, double *S) {
    IF_AVX512(simd, sum_atw_avx512(np, M, K, A, W, S));
    IF_AVX2(simd, sum_atw_avx2(np, M, K, A, W, S));
    sum_atw(np, M, K, A, W, S);
}

void eann_rho_squares(int simd, int M, int K, const double *S, const int *grp, int nL,
                      double *rho) {
    IF_AVX2(simd, rho_squares_avx2(M, K, S, grp, nL, rho));
    rho_squares(M, K, S, grp, nL, rho);
}

void eann_ln_act(int simd, int n, int c, const double *z, const double *g, const double *bb,
                 double eps, const double *alpha, const double *beta, double *zhat, double *rstd,
                 double *y, double *sig, double *a) {
    IF_AVX512(simd, ln_act_avx512(n, c, z, g, bb, eps, alpha, beta, zhat, rstd, y, sig, a));
    IF_AVX2(simd, ln_act_avx2(n, c, z, g, bb, eps, alpha, beta, zhat, rstd, y, sig, a));
    eann_layernorm_forward(n, c, z, g, bb, eps, zhat, rstd, y);
    eann_act_forward(n, c, y, alpha, beta, sig, a);
}

void eann_ln_act_blocks(int simd, int nb, const int *start, int c, const double *z,
                        const double *const *g, const double *const *bb, double eps,
                        const double *const *alpha, const double *const *beta, double *zhat,
                        double *rstd, double *y, double *sig, double *a) {
    IF_AVX512(simd, ln_act_blocks_avx512(nb, start, c, z, g, bb, eps, alpha, beta, zhat, rstd, y,
                                         sig, a));
    IF_AVX2(simd, ln_act_blocks_avx2(nb, start, c, z, g, bb, eps, alpha, beta, zhat, rstd, y, sig,
                                     a));
    for (int b = 0; b < nb; b++) {
        const size_t o = (size_t)start[b] * c;
        eann_ln_act(simd, start[b + 1] - start[b], c, z + o, g[b], bb[b], eps, alpha[b], beta[b],
                    zhat + o, rstd + start[b], y + o, sig + o, a + o);
    }
}

void eann_out1_blocks(int simd, int nb, const int *start, int nk, const double *x,
                      const double *const *w, const double *const *b, double *z) {
    IF_AVX2(simd, out1_blocks_avx2(nb, start, nk, x, w, b, z));
    for (int k = 0; k < nb; k++) /* nj = 1: packed weights are the weights themselves */
        gemm_rows(start[k + 1] - start[k], nk, 1, x + (size_t)start[k] * nk, w[k], b[k],
                  z + start[k]);
}

void eann_act_ln_backward(int simd, int n, int c, const double *y, const double *sig,
                          const double *alpha, const double *beta, const double *zhat,
                          const double *rstd, const double *g, const double *da, double *dy,
                          double *dz) {
    IF_AVX2(simd, act_ln_backward_avx2(n, c, y, sig, alpha, beta, zhat, rstd, g, da, dy, dz));
    eann_act_backward(n, c, y, sig, alpha, beta, da, dy, NULL, NULL);
    eann_layernorm_backward(n, c, zhat, rstd, g, dy, dz, NULL, NULL);
}

int eann_simd_best(void) {
#if EANN_HAVE_AVX2
    if (__builtin_cpu_supports("avx2")) return EANN_SIMD_AVX2;
#endif
    return EANN_SIMD_PORTABLE;
}

/* EANN_SIMD_PORTABLE or EANN_SIMD_AVX2 for a requested mode, or -1 if the
 * mode is unknown or its copy is not available */
static int resolve_simd(int mode) {
    if (mode == EANN_SIMD_AUTO) return eann_simd_best();
    if (mode == EANN_SIMD_PORTABLE) return mode;
    if ((mode == EANN_SIMD_AVX2 || mode == EANN_SIMD_AVX2_ONLY) && eann_simd_best() == EANN_SIMD_AVX2)
        return mode;
    return -1;
}

int eann_exp_n_simd(int mode, int n, const double *x, double *y) {
    int simd = resolve_simd(mode);
    if (simd < 0) return EANN_EINVAL;
    eann_exp_sel(simd, n, x, y);
    return EANN_OK;
}

int eann_work_set_simd(eann_work *w, int mode) {
    int simd = resolve_simd(mode);
    if (!w || simd < 0) return EANN_EINVAL;
    w->simd = simd;
    return EANN_OK;
}

/* --- kernels for mini-batch training (eann_train.c) --- */

/* Weight gradient of a layer run on a primal and a tangent batch (the
 * second-order passes of eann_train.c): x1, dz1 (primal) and x2, dz2
 * (tangent) have the same rows, split into nseg segments (one molecule of a
 * mini-batch each: rows seg[g] .. seg[g+1]-1). For every segment in turn it
 * adds dw[o][c] += dz1[a][o] x1[a][c] over the segment's rows a, then
 * dw[o][c] += dz2[a][o] x2[a][c] over the same rows: exactly the adds of
 * calling eann_weight_grad(x1, dz1) then eann_weight_grad(x2, dz2) on each
 * molecule in turn, so the same bits, with dw kept in registers across the
 * whole batch. x [rows][nin], dz [rows][nout], dw [nout][nin]. x2 == NULL:
 * the first pair only (eann_weight_grad_tiled). */
static void dw2_rows(int a0, int a1, int nin, int nout, int o, const double *x,
                     const double *dz, double *d) {
    for (int a = a0; a < a1; a++) axpy(nin, dz[(size_t)a * nout + o], x + (size_t)a * nin, d);
}

#if EANN_HAVE_AVX2
/* columns c..c+4V-1 of dw row o (V = 4 or 1 vectors), all segments */
EANN_AVX2_INLINE void dw2_tile(int V, int nseg, const int *seg, int nin, int nout, int o, int c,
                               const double *x1, const double *dz1, const double *x2,
                               const double *dz2, double *d) {
    v4d a0 = v_load(d + c), a1 = a0, a2 = a0, a3 = a0;
    if (V > 1) { a1 = v_load(d + c + 4); a2 = v_load(d + c + 8); a3 = v_load(d + c + 12); }
    for (int g = 0; g < nseg; g++)
        for (int pass = 0; pass < (x2 ? 2 : 1); pass++) {
            const double *x = pass ? x2 : x1, *dz = pass ? dz2 : dz1;
            for (int a = seg[g]; a < seg[g + 1]; a++) {
                const double *xa = x + (size_t)a * nin + c;
                v4d s = v_splat(dz[(size_t)a * nout + o]);
                a0 += s * v_load(xa);
                if (V > 1) {
                    a1 += s * v_load(xa + 4);
                    a2 += s * v_load(xa + 8);
                    a3 += s * v_load(xa + 12);
                }
            }
        }
    v_store(d + c, a0);
    if (V > 1) { v_store(d + c + 4, a1); v_store(d + c + 8, a2); v_store(d + c + 12, a3); }
}

/* rows o..o+3 of dw, columns c..c+7: eight vector sums, so that each row
 * a of x is loaded once for four rows of dw */
EANN_AVX2_INLINE void dw2_tile4x8(int nseg, const int *seg, int nin, int nout, int o, int c,
                                  const double *x1, const double *dz1, const double *x2,
                                  const double *dz2, double *dw) {
    double *d0 = dw + (size_t)o * nin + c, *d1 = d0 + nin, *d2 = d1 + nin, *d3 = d2 + nin;
    v4d a0 = v_load(d0), a1 = v_load(d0 + 4), b0 = v_load(d1), b1 = v_load(d1 + 4);
    v4d c0 = v_load(d2), c1 = v_load(d2 + 4), e0 = v_load(d3), e1 = v_load(d3 + 4);
    for (int g = 0; g < nseg; g++)
        for (int pass = 0; pass < (x2 ? 2 : 1); pass++) {
            const double *x = pass ? x2 : x1, *dz = pass ? dz2 : dz1;
            for (int a = seg[g]; a < seg[g + 1]; a++) {
                const double *xa = x + (size_t)a * nin + c, *za = dz + (size_t)a * nout + o;
                v4d x0 = v_load(xa), xx1 = v_load(xa + 4), s;
                s = v_splat(za[0]); a0 += s * x0; a1 += s * xx1;
                s = v_splat(za[1]); b0 += s * x0; b1 += s * xx1;
                s = v_splat(za[2]); c0 += s * x0; c1 += s * xx1;
                s = v_splat(za[3]); e0 += s * x0; e1 += s * xx1;
            }
        }
    v_store(d0, a0); v_store(d0 + 4, a1); v_store(d1, b0); v_store(d1 + 4, b1);
    v_store(d2, c0); v_store(d2 + 4, c1); v_store(d3, e0); v_store(d3 + 4, e1);
}

EANN_AVX2 static void dw2_avx2(int nseg, const int *seg, int nin, int nout, const double *x1,
                               const double *dz1, const double *x2, const double *dz2,
                               double *dw) {
    const int o4 = nout - nout % 4, c8 = nin - nin % 8;
    for (int o = 0; o < o4; o += 4)
        for (int c = 0; c < c8; c += 8)
            dw2_tile4x8(nseg, seg, nin, nout, o, c, x1, dz1, x2, dz2, dw);
    for (int o = 0; o < nout; o++) {
        double *d = dw + (size_t)o * nin;
        int c = o < o4 ? c8 : 0; /* (columns before c8 of rows before o4: done above) */
        for (; c + 16 <= nin; c += 16) dw2_tile(4, nseg, seg, nin, nout, o, c, x1, dz1, x2, dz2, d);
        for (; c + 4 <= nin; c += 4) dw2_tile(1, nseg, seg, nin, nout, o, c, x1, dz1, x2, dz2, d);
        for (; c < nin; c++) {
            double s = d[c];
            for (int g = 0; g < nseg; g++) {
                for (int a = seg[g]; a < seg[g + 1]; a++)
                    s += dz1[(size_t)a * nout + o] * x1[(size_t)a * nin + c];
                if (x2)
                    for (int a = seg[g]; a < seg[g + 1]; a++)
                        s += dz2[(size_t)a * nout + o] * x2[(size_t)a * nin + c];
            }
            d[c] = s;
        }
    }
}
#endif

void eann_weight_grad_seg2(int simd, int nseg, const int *seg, int nin, int nout,
                           const double *x1, const double *dz1, const double *x2,
                           const double *dz2, double *dw) {
    IF_AVX2(simd, dw2_avx2(nseg, seg, nin, nout, x1, dz1, x2, dz2, dw));
    for (int o = 0; o < nout; o++)
        for (int g = 0; g < nseg; g++) {
            dw2_rows(seg[g], seg[g + 1], nin, nout, o, x1, dz1, dw + (size_t)o * nin);
            if (x2) dw2_rows(seg[g], seg[g + 1], nin, nout, o, x2, dz2, dw + (size_t)o * nin);
        }
}

void eann_weight_grad_tiled(int simd, int n, int nin, int nout, const double *x, const double *dz,
                            double *dw) {
    const int seg[2] = {0, n};
    eann_weight_grad_seg2(simd, 1, seg, nin, nout, x, dz, NULL, NULL, dw);
}

/* Descriptor tangent of one pair (eann_train.c, descriptor_tangent):
 * Sd[q][k] += Ad[q] W[k] + A[q] Wd[k]; A, Ad [M], W, Wd [K], Sd [M][K]. */
static void pair_tangent_add(int M, int K, const double *A, const double *Ad, const double *W,
                             const double *Wd, double *Sd) {
    for (int q = 0; q < M; q++) {
        double *Sq = Sd + (size_t)q * K;
        for (int k = 0; k < K; k++) Sq[k] += Ad[q] * W[k] + A[q] * Wd[k];
    }
}

/* Adjoint of one pair's W and its tangent Wd (eann_train.c,
 * descriptor_param_backward): u1[k] = sum_q (Sb[q][k] A[q] + Sdb[q][k] Ad[q]),
 * u2[k] = sum_q Sdb[q][k] A[q], each from 0 in the order of q. */
static void pair_adjoint(int M, int K, const double *A, const double *Ad, const double *Sb,
                         const double *Sdb, double *u1, double *u2) {
    for (int k = 0; k < K; k++) u1[k] = u2[k] = 0;
    for (int q = 0; q < M; q++)
        for (int k = 0; k < K; k++) {
            u1[k] += Sb[q * K + k] * A[q] + Sdb[q * K + k] * Ad[q];
            u2[k] += Sdb[q * K + k] * A[q];
        }
}

#if EANN_HAVE_AVX2
/* the two loops above with k in vector lanes (same operations per lane) */
EANN_AVX2 static void pair_tangent_add_avx2(int M, int K, const double *A, const double *Ad,
                                            const double *W, const double *Wd, double *Sd) {
    const int K4 = K - K % 4;
    for (int q = 0; q < M; q++) {
        double *Sq = Sd + (size_t)q * K;
        const v4d ad = v_splat(Ad[q]), a = v_splat(A[q]);
        for (int k = 0; k < K4; k += 4)
            v_store(Sq + k, v_load(Sq + k) + (ad * v_load(W + k) + a * v_load(Wd + k)));
        for (int k = K4; k < K; k++) Sq[k] += Ad[q] * W[k] + A[q] * Wd[k];
    }
}

EANN_AVX2 static void pair_adjoint_avx2(int M, int K, const double *A, const double *Ad,
                                        const double *Sb, const double *Sdb, double *u1,
                                        double *u2) {
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        v4d a0 = v_splat(0.0), a1 = a0, b0 = a0, b1 = a0;
        for (int q = 0; q < M; q++) {
            const double *sb = Sb + (size_t)q * K + k, *sdb = Sdb + (size_t)q * K + k;
            const v4d x = v_splat(A[q]), xd = v_splat(Ad[q]);
            const v4d d0 = v_load(sdb), d1 = v_load(sdb + 4);
            a0 += v_load(sb) * x + d0 * xd;
            a1 += v_load(sb + 4) * x + d1 * xd;
            b0 += d0 * x;
            b1 += d1 * x;
        }
        v_store(u1 + k, a0); v_store(u1 + k + 4, a1);
        v_store(u2 + k, b0); v_store(u2 + k + 4, b1);
    }
    for (; k + 4 <= K; k += 4) {
        v4d a0 = v_splat(0.0), b0 = a0;
        for (int q = 0; q < M; q++) {
            const v4d x = v_splat(A[q]), d0 = v_load(Sdb + (size_t)q * K + k);
            a0 += v_load(Sb + (size_t)q * K + k) * x + d0 * v_splat(Ad[q]);
            b0 += d0 * x;
        }
        v_store(u1 + k, a0);
        v_store(u2 + k, b0);
    }
    for (; k < K; k++) {
        double s1 = 0, s2 = 0;
        for (int q = 0; q < M; q++) {
            s1 += Sb[q * K + k] * A[q] + Sdb[q * K + k] * Ad[q];
            s2 += Sdb[q * K + k] * A[q];
        }
        u1[k] = s1;
        u2[k] = s2;
    }
}
#endif

void eann_pair_tangent_add(int simd, int M, int K, const double *A, const double *Ad,
                           const double *W, const double *Wd, double *Sd) {
    IF_AVX2(simd, pair_tangent_add_avx2(M, K, A, Ad, W, Wd, Sd));
    pair_tangent_add(M, K, A, Ad, W, Wd, Sd);
}

void eann_pair_adjoint(int simd, int M, int K, const double *A, const double *Ad,
                       const double *Sb, const double *Sdb, double *u1, double *u2) {
    IF_AVX2(simd, pair_adjoint_avx2(M, K, A, Ad, Sb, Sdb, u1, u2));
    pair_adjoint(M, K, A, Ad, Sb, Sdb, u1, u2);
}

/* one element of act2_backward (below): row r, column q, e = r c + q (also
 * the AVX2 copy's last c % 4 columns) */
static inline void act2_elem(size_t e, int q, const double *y, const double *sig,
                             const double *yd, const double *zh, const double *zhd,
                             const double *al, const double *be, const double *ab,
                             const double *adb, double *ydb, double *yb, double *dal,
                             double *dbe, double *dg, double *dbl) {
    double yy = y[e], sg = sig[e], ydd = yd[e];
    double tt = be[q] * yy, ph = tt * sg, ph1 = sg + tt * sg * (1.0 - sg);
    double ph2 = sg * (1.0 - sg) * (2.0 + tt * (1.0 - 2.0 * sg));
    double A_ = ab[e], Ad_ = adb[e];
    ydb[e] = Ad_ * (al[q] * be[q] * ph1);
    yb[e] = A_ * (al[q] * be[q] * ph1) + Ad_ * (al[q] * be[q] * be[q] * ph2 * ydd);
    dal[q] += A_ * ph + Ad_ * (be[q] * ph1 * ydd);
    dbe[q] += A_ * (al[q] * ph1 * yy) + Ad_ * (al[q] * (ph1 + tt * ph2) * ydd);
    dg[q] += yb[e] * zh[e] + ydb[e] * zhd[e];
    dbl[q] += yb[e];
}

/* The activation part of the reverse pass through a layer's primal and
 * tangent (eann_train.c, net_tangent_backward; formulas in the derivation
 * at the top of eann_train.c), and the LayerNorm affine parameters, row by
 * row: from y, sig, yd, zhat, zhd and the adjoints ab (a_), adb (ad_)
 * [n][c] it sets ydb (yd_) and yb (y_) [n][c] and ADDS, one row at a time,
 * into dal, dbe (activation alpha, beta), dg, dbl (LayerNorm gain, bias) [c]. */
static void act2_backward(int n, int c, const double *y, const double *sig, const double *yd,
                          const double *zh, const double *zhd, const double *al,
                          const double *be, const double *ab, const double *adb, double *ydb,
                          double *yb, double *dal, double *dbe, double *dg, double *dbl) {
    for (int r = 0; r < n; r++)
        for (int q = 0; q < c; q++)
            act2_elem((size_t)r * c + q, q, y, sig, yd, zh, zhd, al, be, ab, adb, ydb, yb, dal,
                      dbe, dg, dbl);
}

/* One row of the LayerNorm's second-order term (eann_train.c,
 * net_tangent_backward): zb [c] += d/dz of Ab . zhatd(z, zd), Ab = g ydb;
 * zh, zd, ydb [c], rr = 1/sqrt(var + eps). Serial sums in the order of q. */
static void ln2_row(int c, const double *zh, double rr, const double *zdr, const double *g,
                    const double *ydbr, double *zbr) {
    double mzd = 0;
    for (int q = 0; q < c; q++) mzd += zdr[q];
    mzd /= c;
    double a1 = 0, a2 = 0, mm = 0;
    for (int q = 0; q < c; q++) {
        double Ab = g[q] * ydbr[q], u = zdr[q] - mzd;
        a1 += Ab * u;
        a2 += Ab * zh[q];
        mm += zh[q] * u;
    }
    mm /= c;
    double rb = a1 - mm * a2, mZb = 0, sZz = 0;
    /* Zb_q = -r (u_q a2 / c + mm Ab_q), recomputed in both loops */
    for (int q = 0; q < c; q++) {
        double Zb = -rr * ((zdr[q] - mzd) * a2 / c + mm * g[q] * ydbr[q]);
        mZb += Zb;
        sZz += Zb * zh[q];
    }
    mZb /= c;
    double rbt = rb + sZz / rr;
    for (int q = 0; q < c; q++) {
        double Zb = -rr * ((zdr[q] - mzd) * a2 / c + mm * g[q] * ydbr[q]);
        zbr[q] += rr * (Zb - mZb) - (rr * rr * zh[q] / c) * rbt;
    }
}

/* One Adam step (Kingma & Ba 2015, Alg. 1) on P parameters: m1, m2 the
 * moments, c1 = 1 - beta1^t, c2 = 1 - beta2^t. */
static void adam_step(size_t P, const double *g, double *m1, double *m2, double *phi, double B1,
                      double B2, double c1, double c2, double lr, double eps) {
    for (size_t q = 0; q < P; q++) {
        m1[q] = B1 * m1[q] + (1 - B1) * g[q];
        m2[q] = B2 * m2[q] + (1 - B2) * g[q] * g[q];
        double mh = m1[q] / c1, vh = m2[q] / c2;
        phi[q] -= lr * mh / (sqrt(vh) + eps);
    }
}

#if EANN_HAVE_AVX2
/* act2_backward with the columns q in vector lanes */
EANN_AVX2 static void act2_backward_avx2(int n, int c, const double *y, const double *sig,
                                         const double *yd, const double *zh, const double *zhd,
                                         const double *al, const double *be, const double *ab,
                                         const double *adb, double *ydb, double *yb, double *dal,
                                         double *dbe, double *dg, double *dbl) {
    const int c4 = c - c % 4;
    for (int r = 0; r < n; r++) {
        for (int q = 0; q < c4; q += 4) {
            size_t e = (size_t)r * c + q;
            v4d yy = v_load(y + e), sg = v_load(sig + e), ydd = v_load(yd + e);
            v4d b = v_load(be + q), a = v_load(al + q);
            v4d tt = b * yy, ph = tt * sg, ph1 = sg + tt * sg * (1.0 - sg);
            v4d ph2 = sg * (1.0 - sg) * (2.0 + tt * (1.0 - 2.0 * sg));
            v4d A_ = v_load(ab + e), Ad_ = v_load(adb + e);
            v4d vydb = Ad_ * (a * b * ph1);
            v4d vyb = A_ * (a * b * ph1) + Ad_ * (a * b * b * ph2 * ydd);
            v_store(ydb + e, vydb);
            v_store(yb + e, vyb);
            v_store(dal + q, v_load(dal + q) + (A_ * ph + Ad_ * (b * ph1 * ydd)));
            v_store(dbe + q,
                    v_load(dbe + q) + (A_ * (a * ph1 * yy) + Ad_ * (a * (ph1 + tt * ph2) * ydd)));
            v_store(dg + q, v_load(dg + q) + (vyb * v_load(zh + e) + vydb * v_load(zhd + e)));
            v_store(dbl + q, v_load(dbl + q) + vyb);
        }
        for (int q = c4; q < c; q++) /* the last c % 4 columns of this row */
            act2_elem((size_t)r * c + q, q, y, sig, yd, zh, zhd, al, be, ab, adb, ydb, yb, dal,
                      dbe, dg, dbl);
    }
}

/* ln2_row on four rows at once, one row per vector lane (each lane does its
 * row's serial sums in the order of q) */
EANN_AVX2_INLINE v4d v_col(const double *p, int c, int q) {
    return (v4d){p[q], p[(size_t)c + q], p[2 * (size_t)c + q], p[3 * (size_t)c + q]};
}
EANN_AVX2 static void ln2_rows4_avx2(int c, const double *zh, const double *rstd,
                                     const double *zd, const double *g, const double *ydb,
                                     double *zb) {
    const v4d rr = v_load(rstd), cc = v_splat((double)c);
    v4d mzd = v_splat(0.0);
    for (int q = 0; q < c; q++) mzd += v_col(zd, c, q);
    mzd /= cc;
    v4d a1 = v_splat(0.0), a2 = a1, mm = a1;
    for (int q = 0; q < c; q++) {
        v4d h = v_col(zh, c, q);
        v4d Ab = v_splat(g[q]) * v_col(ydb, c, q), u = v_col(zd, c, q) - mzd;
        a1 += Ab * u;
        a2 += Ab * h;
        mm += h * u;
    }
    mm /= cc;
    v4d rb = a1 - mm * a2, mZb = v_splat(0.0), sZz = mZb;
    for (int q = 0; q < c; q++) {
        v4d Zb = -rr * ((v_col(zd, c, q) - mzd) * a2 / cc + mm * g[q] * v_col(ydb, c, q));
        mZb += Zb;
        sZz += Zb * v_col(zh, c, q);
    }
    mZb /= cc;
    v4d rbt = rb + sZz / rr;
    for (int q = 0; q < c; q++) {
        v4d Zb = -rr * ((v_col(zd, c, q) - mzd) * a2 / cc + mm * g[q] * v_col(ydb, c, q));
        v4d d = rr * (Zb - mZb) - (rr * rr * v_col(zh, c, q) / cc) * rbt;
        for (int l = 0; l < 4; l++) zb[(size_t)l * c + q] += d[l];
    }
}

EANN_AVX2 static void adam_step_avx2(size_t P, const double *g, double *m1, double *m2,
                                     double *phi, double B1, double B2, double c1, double c2,
                                     double lr, double eps) {
    size_t q = 0;
    for (; q + 4 <= P; q += 4) {
        v4d gg = v_load(g + q);
        v4d a = v_splat(B1) * v_load(m1 + q) + (1 - B1) * gg;
        v4d b = v_splat(B2) * v_load(m2 + q) + (1 - B2) * gg * gg;
        v_store(m1 + q, a);
        v_store(m2 + q, b);
        v4d mh = a / c1, vh = b / c2;
        /* IEEE square root, correctly rounded like sqrt(): the same bits */
        v4d s = (v4d)_mm256_sqrt_pd((__m256d)vh);
        v_store(phi + q, v_load(phi + q) - lr * mh / (s + eps));
    }
    adam_step(P - q, g + q, m1 + q, m2 + q, phi + q, B1, B2, c1, c2, lr, eps);
}
#endif

void eann_act2_backward(int simd, int n, int c, const double *y, const double *sig,
                        const double *yd, const double *zh, const double *zhd, const double *al,
                        const double *be, const double *ab, const double *adb, double *ydb,
                        double *yb, double *dal, double *dbe, double *dg, double *dbl) {
    IF_AVX2(simd, act2_backward_avx2(n, c, y, sig, yd, zh, zhd, al, be, ab, adb, ydb, yb, dal,
                                     dbe, dg, dbl));
    act2_backward(n, c, y, sig, yd, zh, zhd, al, be, ab, adb, ydb, yb, dal, dbe, dg, dbl);
}

void eann_ln2_backward(int simd, int n, int c, const double *zhat, const double *rstd,
                       const double *zd, const double *g, const double *ydb, double *zb) {
    int r = 0;
#if EANN_HAVE_AVX2
    if (simd == EANN_SIMD_AVX2 || simd == EANN_SIMD_AVX2_ONLY)
        for (; r + 4 <= n; r += 4) {
            size_t o = (size_t)r * c;
            ln2_rows4_avx2(c, zhat + o, rstd + r, zd + o, g, ydb + o, zb + o);
        }
#endif
    (void)simd;
    for (; r < n; r++) {
        size_t o = (size_t)r * c;
        ln2_row(c, zhat + o, rstd[r], zd + o, g, ydb + o, zb + o);
    }
}

void eann_adam_step(int simd, size_t P, const double *g, double *m1, double *m2, double *phi,
                    double B1, double B2, double c1, double c2, double lr, double eps) {
    IF_AVX2(simd, adam_step_avx2(P, g, m1, m2, phi, B1, B2, c1, c2, lr, eps));
    adam_step(P, g, m1, m2, phi, B1, B2, c1, c2, lr, eps);
}

#if EANN_HAVE_AVX2
/* eann_layernorm_backward without parameter gradients (same bits: the
 * partial sums s0..s3 of its loop are the four lanes), and
 * eann_act_backward without parameter gradients; for the tangent passes of
 * eann_train.c. */
EANN_AVX2 static void ln_backward_avx2(int n, int c, const double *zhat, const double *rstd,
                                       const double *g, const double *dy, double *dz,
                                       double *dg, double *db) {
    const int c4 = c - c % 4;
    for (int r = 0; r < n; r++) {
        const double *hr = zhat + (size_t)r * c, *dyr = dy + (size_t)r * c;
        double *dzr = dz + (size_t)r * c;
        if (dg) {
            int i = 0;
            for (; i < c4; i += 4) v_store(dg + i, v_load(dg + i) + v_load(dyr + i) * v_load(hr + i));
            for (; i < c; i++) dg[i] += dyr[i] * hr[i];
        }
        if (db) {
            int i = 0;
            for (; i < c4; i += 4) v_store(db + i, v_load(db + i) + v_load(dyr + i));
            for (; i < c; i++) db[i] += dyr[i];
        }
        v4d sg = v_splat(0.0), sgh = v_splat(0.0);
        for (int i = 0; i < c4; i += 4) {
            v4d G = v_load(g + i) * v_load(dyr + i);
            sg += G;
            sgh += G * v_load(hr + i);
        }
        double ssg = v_sum4(sg), ssgh = v_sum4(sgh);
        for (int i = c4; i < c; i++) {
            double G = g[i] * dyr[i];
            ssg += G;
            ssgh += G * hr[i];
        }
        const double mg = ssg / c, mgh = ssgh / c, rs = rstd[r];
        for (int i = 0; i < c4; i += 4)
            v_store(dzr + i, (v_load(g + i) * v_load(dyr + i) - mg - v_load(hr + i) * mgh) * rs);
        for (int i = c4; i < c; i++) dzr[i] = (g[i] * dyr[i] - mg - hr[i] * mgh) * rs;
    }
}

EANN_AVX2 static void act_backward_avx2(int n, int c, const double *y, const double *sig,
                                        const double *alpha, const double *beta,
                                        const double *da, double *dy, double *dalpha,
                                        double *dbeta) {
    const int c4 = c - c % 4;
    for (int r = 0; r < n; r++) {
        const double *yr = y + (size_t)r * c, *sr = sig + (size_t)r * c;
        const double *dar = da + (size_t)r * c;
        double *dyr = dy + (size_t)r * c;
        for (int i = 0; i < c4; i += 4) {
            v4d bt = v_load(beta + i), s = v_load(sr + i);
            v4d t = bt * v_load(yr + i);
            v4d dadt = v_load(alpha + i) * (s + t * s * (1.0 - s)), d = v_load(dar + i);
            if (dalpha) v_store(dalpha + i, v_load(dalpha + i) + d * (t * s));
            if (dbeta) v_store(dbeta + i, v_load(dbeta + i) + d * (v_load(yr + i) * dadt));
            v_store(dyr + i, d * (bt * dadt));
        }
        for (int i = c4; i < c; i++) {
            double t = beta[i] * yr[i], s = sr[i];
            double dadt = alpha[i] * (s + t * s * (1.0 - s)), d = dar[i];
            if (dalpha) dalpha[i] += d * (t * s);
            if (dbeta) dbeta[i] += d * (yr[i] * dadt);
            dyr[i] = d * (beta[i] * dadt);
        }
    }
}
#endif

void eann_ln_backward_sel(int simd, int n, int c, const double *zhat, const double *rstd,
                          const double *g, const double *dy, double *dz, double *dg,
                          double *db) {
    IF_AVX2(simd, ln_backward_avx2(n, c, zhat, rstd, g, dy, dz, dg, db));
    eann_layernorm_backward(n, c, zhat, rstd, g, dy, dz, dg, db);
}

void eann_act_backward_sel(int simd, int n, int c, const double *y, const double *sig,
                           const double *alpha, const double *beta, const double *da,
                           double *dy, double *dalpha, double *dbeta) {
    IF_AVX2(simd, act_backward_avx2(n, c, y, sig, alpha, beta, da, dy, dalpha, dbeta));
    eann_act_backward(n, c, y, sig, alpha, beta, da, dy, dalpha, dbeta);
}
