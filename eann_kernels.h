/* SPDX-License-Identifier: MIT */
/* eann_kernels.h - PRIVATE to eann.c and eann_kernels.c (not an API; the
 * public ones are eann_matmul, eann_exp_n[_simd] and eann_work_set_simd in
 * eann.h). The hot loops of the EANN forward and backward passes, each with
 * simd = a workspace's `simd` (EANN_SIMD_PORTABLE or EANN_SIMD_AVX2): both
 * copies give the same bits (see the top of eann_kernels.c). Row-major
 * arrays, shapes in brackets. */
#ifndef EANN_KERNELS_H
#define EANN_KERNELS_H

#include "eann.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A private mode for tests and benchmarks (eann_work_set_simd,
 * eann_exp_n_simd): the AVX2 copy with 4 lanes everywhere. EANN_SIMD_AVX2
 * itself runs the exp-heavy loops (exp, radial values, LayerNorm +
 * activation) with 8 lanes where the CPU has AVX-512F (eann_kernels.c
 * section 2b); the bits are the same in every mode. */
#define EANN_SIMD_AVX2_ONLY 3
/* The copy eann_work_new picks: EANN_SIMD_AVX2 if this build has it and the
 * CPU runs it, else EANN_SIMD_PORTABLE. */
int eann_simd_best(void);
/* The weights of a linear layer packed for the AVX2 matrix kernel: B
 * [nk][nj] (row-major, = W^T) -> P [nk * nj]: for each block of 8 columns
 * j0 = 0, 8, .. (j0 + 8 <= nj) the rows c = 0..nk-1 of B[c][j0..j0+7] one
 * after the other (P + j0 nk is that block, [nk][8]), then the last
 * nt = nj % 8 columns as [nk][nt] at P + (nj - nt) nk. A tile of the
 * product then reads its weights as one sequential stream (the hardware
 * prefetcher's best case) instead of one cache line every nj doubles. */
void eann_pack_b(int nk, int nj, const double *B, double *P);
/* eann_matmul (same bits) with the weights also given packed (P =
 * eann_pack_b of B): the AVX2 copy (8 lanes with AVX-512F, 4 without or
 * in EANN_SIMD_AVX2_ONLY) reads P, the portable one B. */
void eann_matmul_packed(int simd, int n, int nk, int nj, const double *x, const double *B,
                        const double *P, const double *b, double *z);
/* y[i] = exp(x[i]) (eann_exp_n; x may equal y). */
void eann_exp_sel(int simd, int n, const double *x, double *y);
/* Weight gradient of a linear layer: dw[o][c] += dz[a][o] x[a][c] for
 * a = 0, 1, ... in turn; x [n][nin], dz [n][nout], dw [nout][nin]. */
void eann_weight_grad(int simd, int n, int nin, int nout, const double *x, const double *dz,
                      double *dw);
/* The radial functions of the pairs p < np with src[p] < 0 (FORMAT.md 4.2,
 * EANN chapter Eq. 16): with s = species[nbr[p]] (the neighbour's species)
 * and t = d[p] - rs[s][k],
 *     R[p][k] = exp(-inta[s][k] (t t))   (eann_exp_n's exp),
 *     W[p][k] = par[s][k] R[p][k];
 * rs, inta, par [S][K], R, W [np][K]; pairs with src[p] >= 0 are left alone. */
void eann_radial(int simd, int np, int K, const double *d, const int *nbr, const int *species,
                 const int *src, const double *rs, const double *inta, const double *par,
                 double *R, double *W);
/* The descriptor sum S[q][k] = sum_{p = 0..np-1} A[p][q] W[p][k] in the
 * order of p; A [np][M], W [np][K], S [M][K]. */
void eann_sum_atw(int simd, int np, int M, int K, const double *A, const double *W, double *S);
/* The density from S: rho[L][k] = 0 + S[q0][k]^2 + S[q1][k]^2 + ... over
 * the components q0 < q1 < ... of group L = grp[q], in the order of q (a
 * group with no component is 0). S [M][K], grp [M] (values 0..nL-1),
 * rho [nL][K]. */
void eann_rho_squares(int simd, int M, int K, const double *S, const int *grp, int nL,
                      double *rho);
/* eann_layernorm_forward then eann_act_forward: z [n][c] (may alias y),
 * zhat, y, sig, a [n][c], rstd [n]. */
void eann_ln_act(int simd, int n, int c, const double *z, const double *g, const double *bb,
                 double eps, const double *alpha, const double *beta, double *zhat, double *rstd,
                 double *y, double *sig, double *a);
/* eann_ln_act on several blocks of consecutive rows at once (the species
 * blocks of eann_net_forward): rows start[b] .. start[b+1]-1 with block b's
 * parameters g[b], bb[b], alpha[b], beta[b] [c]; arrays as eann_ln_act,
 * indexed by absolute row. The same bits as eann_ln_act block by block. */
void eann_ln_act_blocks(int simd, int nb, const int *start, int c, const double *z,
                        const double *const *g, const double *const *bb, double eps,
                        const double *const *alpha, const double *const *beta, double *zhat,
                        double *rstd, double *y, double *sig, double *a);
/* A linear layer with one output (nj = 1) on several row blocks at once:
 * z[r] = b[blk][0] (0 if b[blk] == NULL) + sum_{c = 0..nk-1} x[r][c] w[blk][c]
 * in the order of c, for the rows r of each block blk (start as above);
 * x [rows][nk], z [rows]. The same bits as eann_matmul per block. */
void eann_out1_blocks(int simd, int nb, const int *start, int nk, const double *x,
                      const double *const *w, const double *const *b, double *z);
/* eann_act_backward then eann_layernorm_backward without parameter
 * gradients: da [n][c] -> dy [n][c] (scratch) -> dz [n][c] (may alias da). */
void eann_act_ln_backward(int simd, int n, int c, const double *y, const double *sig,
                          const double *alpha, const double *beta, const double *zhat,
                          const double *rstd, const double *g, const double *da, double *dy,
                          double *dz);

/* --- kernels for mini-batch training (eann_train.c) --- */
/* dw[o][c] += for each segment g (rows seg[g] .. seg[g+1]-1) in turn: the
 * segment's rows of dz1^T x1, one row at a time, then its rows of dz2^T x2:
 * the same bits as eann_weight_grad(x1, dz1) then (x2, dz2) per segment.
 * x1, x2 [rows][nin], dz1, dz2 [rows][nout], dw [nout][nin]. */
void eann_weight_grad_seg2(int simd, int nseg, const int *seg, int nin, int nout,
                           const double *x1, const double *dz1, const double *x2,
                           const double *dz2, double *dw);
/* Descriptor tangent of one pair: Sd[q][k] += Ad[q] W[k] + A[q] Wd[k]
 * (A, Ad [M], W, Wd [K], Sd [M][K]). */
void eann_pair_tangent_add(int simd, int M, int K, const double *A, const double *Ad,
                           const double *W, const double *Wd, double *Sd);
/* Adjoints of one pair's W and Wd: u1[k] = sum_q (Sb[q][k] A[q] + Sdb[q][k]
 * Ad[q]), u2[k] = sum_q Sdb[q][k] A[q], from 0 in the order of q. */
void eann_pair_adjoint(int simd, int M, int K, const double *A, const double *Ad,
                       const double *Sb, const double *Sdb, double *u1, double *u2);
/* Reverse through a layer's activation (primal and tangent) and the
 * LayerNorm affine part (eann_train.c, net_tangent_backward): sets ydb, yb
 * [n][c], ADDS row by row into dal, dbe, dg, dbl [c]. */
void eann_act2_backward(int simd, int n, int c, const double *y, const double *sig,
                        const double *yd, const double *zh, const double *zhd, const double *al,
                        const double *be, const double *ab, const double *adb, double *ydb,
                        double *yb, double *dal, double *dbe, double *dg, double *dbl);
/* zb [n][c] += the LayerNorm's second-order term (eann_train.c), row by row
 * with serial sums in the order of the columns (AVX2: four rows in the
 * four lanes). */
void eann_ln2_backward(int simd, int n, int c, const double *zhat, const double *rstd,
                       const double *zd, const double *g, const double *ydb, double *zb);
/* One Adam step on P parameters (c1 = 1 - beta1^t, c2 = 1 - beta2^t). */
void eann_adam_step(int simd, size_t P, const double *g, double *m1, double *m2, double *phi,
                    double B1, double B2, double c1, double c2, double lr, double eps);
/* eann_layernorm_backward and eann_act_backward (parameter gradients may
 * be NULL) with a chosen copy of the loops (same bits). */
void eann_ln_backward_sel(int simd, int n, int c, const double *zhat, const double *rstd,
                          const double *g, const double *dy, double *dz, double *dg,
                          double *db);
void eann_act_backward_sel(int simd, int n, int c, const double *y, const double *sig,
                           const double *alpha, const double *beta, const double *da,
                           double *dy, double *dalpha, double *dbeta);
/* eann_weight_grad (same bits) in the 4 x 8 tiles of eann_weight_grad_seg2. */
void eann_weight_grad_tiled(int simd, int n, int nin, int nout, const double *x, const double *dz,
                            double *dw);

#ifdef __cplusplus
}
#endif
#endif
