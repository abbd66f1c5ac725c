/* SPDX-License-Identifier: MIT */
/* eann_train.c - training of EANN tensorial models (declared in
 * eann_train.h): losses with exact parameter gradients (including the
 * second-order ones of the polarizability), descriptor normalisation, Adam,
 * L-BFGS and the training loop with its checkpoint state.
 *
 * Prediction (eann.c) comes first for a reader: this file only adds the
 * parameter gradients and the optimisers, and calls eann.c for every piece
 * of the model (descriptor, networks, heads and their first-order adjoints).
 *
 * ===========================================================================
 * GRADIENT DERIVATION
 * ===========================================================================
 * Notation: theta = all trainable numbers (eann.h PARAMETER LAYOUT); per
 * frame the loss l_f (eann.h, section TRAINING). Positions are data, so nothing below
 * needs derivatives with respect to positions except where the model output
 * itself is a coordinate gradient (polarizability).
 *
 * Dipole (FORMAT.md sect. 5, EANN chapter Eq. 1 and Eq. 6):
 *   mu = sum_i q_i x'_i, l = |mu - mu_ref|^2/3 + w_q (sum_i q_i - Q)^2
 *   dl/dq_i = (2/3)(mu - mu_ref).x'_i + 2 w_q (sum q - Q); then ordinary
 *   backpropagation through net 0 (eann_net_backward) and the descriptor.
 *
 * Transition dipole (FORMAT.md sect. 5, EANN chapter Eqs. 7-8):
 *   t = u + v + W (u x v), u = sum q1_i x'_i, v = sum q2_i x'_i, W = sum w_i.
 *   l = min_s |t - s t_ref|^2/3 (s = +-1). Away from the switch surface
 *   t.t_ref = 0 the minimum is one smooth branch, so dl/dt = (2/3)(t - s t_ref)
 *   with the active s. With g = dl/dt:
 *     dl/du = g + W (v x g)   (because g.(u x v) = u.(v x g))
 *     dl/dv = g + W (g x u)   (g.(u x v) = v.(g x u))
 *     dl/dW = g.(u x v)
 *   and dl/dq1_i = dl/du . x'_i, dl/dq2_i = dl/dv . x'_i, dl/dw_i = dl/dW.
 *
 * Polarizability (FORMAT.md sect. 5, EANN chapter Eqs. 10-12):
 *   alpha = Pm + Pm^T + sum_i h_i h_i^T + E_2 I,  Pm[a][b] = sum_i x'_ia g_ib,
 *   g_i = dE_0/dx_i, h_i = dE_1/dx_i, E_t = sum_i y_i^(t).
 *   With G = dl/dalpha (= (2/9)(alpha - alpha_ref)) and Gs = G + G^T:
 *     dl/dg_i = Gs x'_i =: gamma_i,  dl/dh_i = Gs h_i =: gamma'_i,  dl/dE_2 = tr G.
 *   The E_2 part is ordinary backpropagation of net 2 with dl/dy_i = tr G.
 *   For net 0 (and likewise net 1 with gamma'):
 *     dl/dtheta (through g) = sum_i gamma_i . d g_i/dtheta = d Phi/dtheta,
 *     Phi(theta) = sum_i gamma_i . g_i = d/de E_0(x + e gamma) at e = 0,
 *   with gamma held fixed (it is the upstream adjoint). Phi is the FORWARD
 *   TANGENT of E_0 along the position direction gamma, so dl/dtheta is the
 *   reverse-mode gradient of a forward-mode (tangent) computation. We write
 *   the tangent pass explicitly (dotted quantities) and then backpropagate
 *   through both the primal and the tangent pass (barred quantities; p_ is
 *   the adjoint of the primal p, pd_ that of the tangent pd).
 *
 *   Descriptor tangent, per pair (i, j) (FORMAT.md 4.2-4.5; the pair list
 *   is held fixed as FORMAT.md sect. 5 says):
 *     vd = gamma_i - gamma_j, dd = v.vd/d, fcd = fc'(d) dd,
 *     Rd_k = -2 inta_k (d - rs_k) R_k dd,  Wd_k = c_k Rd_k  (c = params[s_j]),
 *     Ad_0 = fcd, Ad_m = Ad_par v[ax] + A_par vd[ax],
 *     Sd_i[m][k] = sum_j (Ad_m W_k + A_m Wd_k),
 *     rhod_i[L,k] = sum_{m in L} 2 S[m][k] Sd[m][k].
 *   Network tangent, per hidden layer (FORMAT.md 4.6):
 *     zd = W xd;  zhatd = J zd with the LayerNorm Jacobian
 *       J = r (I - 11^T/c - zhat zhat^T/c), r = 1/sqrt(var+eps)
 *       (J is symmetric: the LayerNorm backward routine with gamma = 1 applies it);
 *     yd = gamma_ln * zhatd;  ad = alpha beta phi'(beta y) yd, with
 *       phi(t) = t sig(t), phi' = sig + t sig (1-sig),
 *       phi'' = sig (1-sig) (2 + t (1 - 2 sig));
 *     output: outd = W_H ad_{H-1};  Phi = sum_i outd_i[0].
 *   Reverse pass, seeds outd_ = 1 (column 0), out_ = 0:
 *     linear z = W x + b, zd = W xd:
 *       x_ = W^T z_, xd_ = W^T zd_, W_ += z_ x^T + zd_ xd^T, b_ += z_
 *     activation a = alpha phi(t), ad = alpha beta phi'(t) yd, t = beta y:
 *       yd_ = ad_ alpha beta phi'
 *       y_  = a_ alpha beta phi' + ad_ alpha beta^2 phi'' yd
 *       alpha_ += a_ phi + ad_ beta phi' yd
 *       beta_  += a_ alpha phi' y + ad_ alpha (phi' + t phi'') yd
 *     LayerNorm y = g zhat + b, yd = g zhatd:
 *       g_ += y_ zhat + yd_ zhatd, b_ += y_,
 *       zd_ = J (g yd_)   (J symmetric),
 *       z_  = J (g y_) + [d/dz of F = Ab . zhatd(z, zd), Ab = g yd_]:
 *         write zhatd = r (u - zhat m), u = zd - mean(zd), m = mean(zhat u);
 *         F = r a1 - r m a2, a1 = Ab.u, a2 = Ab.zhat;
 *         dF/dzhat_i = -r (u_i a2/c + m Ab_i) =: Zb_i, dF/dr (explicit) = a1 - m a2 =: rb;
 *         through zhat = (z - mu) r, r = (var+eps)^(-1/2):
 *         z_ += r (Zb - mean(Zb)) - (r^2 zhat / c) (rb + sum_i Zb_i zhat_i / r).
 *   Descriptor reverse (A, Ad depend on positions only; R, Rd also on rs, inta):
 *     S_[m][k] = 2 S rho_[L,k] + 2 Sd rhod_[L,k],  Sd_[m][k] = 2 S rhod_[L,k],
 *     u1_k = sum_m (S_[m][k] A_m + Sd_[m][k] Ad_m), u2_k = sum_m Sd_[m][k] A_m,
 *     c_[s_j][k] += R_k u1_k + Rd_k u2_k,  R_k_ = c_k u1_k,  Rd_k_ = c_k u2_k,
 *     with x = d - rs: dR/drs = 2 inta x R, dR/dinta = -x^2 R,
 *     dRd/drs = dd 2 inta R (1 - 2 inta x^2), dRd/dinta = -dd 2 x R (1 - inta x^2).
 *   (For the dipole, tdm and E_2 parts the same formulas with Sd_ = rhod_ = 0.)
 *   tests/test_eann_train.c checks every target against central finite
 *   differences of the loss (relative error < 1e-6).
 * ===========================================================================
 */

#include "eann_train.h"
#include "eann_kernels.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* workspace                                                                 */
/* ------------------------------------------------------------------------ */

struct eann_trainws {
    eann_work *w;
    int cap, maxw, maxh;
    double *gam;                 /* [N][3] tangent direction, by row */
    double *gpos, *hpos;         /* [N][3] g = dE_0/dx, h = dE_1/dx (original order) */
    double *Sd, *Sb, *Sdb;       /* [N][M][K] */
    double *rhod, *rhob, *rhodb; /* [N][D] */
    double *zd[EANN_MAX_HIDDEN], *zhd[EANN_MAX_HIDDEN], *yd[EANN_MAX_HIDDEN],
        *ad[EANN_MAX_HIDDEN];            /* [N][width] tangent caches of one net */
    double *outd;                        /* [N][maxw] */
    double *b1, *b2, *b3, *b4, *b5, *b6; /* [N][maxw] adjoint scratch */
    double *dout;                        /* [N][maxw] */
    double *zeros, *ones;                /* [maxw] */
};

eann_work *eann_trainws_work(eann_trainws *tw) { return tw ? tw->w : NULL; }

void eann_trainws_free(eann_trainws *tw) {
    if (!tw) return;
    eann_work_free(tw->w);
    double *arr[] = {tw->gam,  tw->gpos, tw->hpos, tw->Sd, tw->Sb, tw->Sdb, tw->rhod,
                     tw->rhob, tw->rhodb, tw->outd, tw->b1, tw->b2, tw->b3, tw->b4,
                     tw->b5,   tw->b6,   tw->dout, tw->zeros, tw->ones};
    for (size_t q = 0; q < sizeof arr / sizeof arr[0]; q++)
        free(arr[q]);
    for (int h = 0; h < EANN_MAX_HIDDEN; h++) {
        free(tw->zd[h]);
        free(tw->zhd[h]);
        free(tw->yd[h]);
        free(tw->ad[h]);
    }
    free(tw);
}

/* A zeroed array of n doubles (at least 1); sets *fail on failure or on a
 * size that would overflow. */
static double *dalloc(size_t n, int *fail) {
    double *p = n > SIZE_MAX / 2 / sizeof(double) ? NULL : calloc(n ? n : 1, sizeof(double));
    if (!p) *fail = 1;
    return p;
}

int eann_trainws_new(const eann_model *m, int natoms_max, eann_trainws **out) {
    if (!m || !out || natoms_max < 1) return EANN_EINVAL;
    *out = NULL;
    eann_trainws *tw = calloc(1, sizeof *tw);
    if (!tw) return EANN_ENOMEM;
    int rc = eann_work_new(m, natoms_max, &tw->w);
    if (rc) {
        free(tw);
        return rc;
    }
    const size_t N = (size_t)natoms_max, M = (size_t)m->norbital, K = (size_t)m->spec.nwave;
    const size_t D = (size_t)m->ndensity;
    int maxw = (int)D, maxh = 0, fail = 0;
    for (int t = 0; t < m->spec.nnets; t++) {
        const eann_net_spec *ns = &m->spec.net[t];
        if (ns->nhidden > maxh) maxh = ns->nhidden;
        for (int h = 0; h <= ns->nhidden + 1; h++)
            if (ns->sizes[h] > maxw) maxw = ns->sizes[h];
    }
    tw->cap = natoms_max;
    tw->maxw = maxw;
    tw->maxh = maxh;
    const size_t NW = N * (size_t)maxw;
    tw->gam = dalloc(N * 3, &fail);
    tw->gpos = dalloc(N * 3, &fail);
    tw->hpos = dalloc(N * 3, &fail);
    tw->Sd = dalloc(N * M * K, &fail);
    tw->Sb = dalloc(N * M * K, &fail);
    tw->Sdb = dalloc(N * M * K, &fail);
    tw->rhod = dalloc(N * D, &fail);
    tw->rhob = dalloc(N * D, &fail);
    tw->rhodb = dalloc(N * D, &fail);
    for (int h = 0; h < maxh; h++) {
        tw->zd[h] = dalloc(NW, &fail);
        tw->zhd[h] = dalloc(NW, &fail);
        tw->yd[h] = dalloc(NW, &fail);
        tw->ad[h] = dalloc(NW, &fail);
    }
    tw->outd = dalloc(NW, &fail);
    tw->b1 = dalloc(NW, &fail);
    tw->b2 = dalloc(NW, &fail);
    tw->b3 = dalloc(NW, &fail);
    tw->b4 = dalloc(NW, &fail);
    tw->b5 = dalloc(NW, &fail);
    tw->b6 = dalloc(NW, &fail);
    tw->dout = dalloc(NW, &fail);
    tw->zeros = dalloc((size_t)maxw, &fail);
    tw->ones = dalloc((size_t)maxw, &fail);
    if (fail) {
        eann_trainws_free(tw);
        return EANN_ENOMEM;
    }
    for (int i = 0; i < maxw; i++)
        tw->ones[i] = 1.0;
    *out = tw;
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* descriptor: tangent forward and parameter backward                        */
/* ------------------------------------------------------------------------ */

/* Tangent of one pair: dd = d d along gamma, Rd [K]. */
static double pair_tangent(const eann_model *m, const eann_work *w, const double *gam, int i, int p,
                           double *vd, double *Rd) {
    const int K = m->spec.nwave, j = w->pair_j[p], sj = w->row_species[j];
    const double *v = w->pair_v + 3 * (size_t)p, d = w->pair_d[p];
    for (int a = 0; a < 3; a++)
        vd[a] = gam[3 * i + a] - gam[3 * j + a];
    double dd = (v[0] * vd[0] + v[1] * vd[1] + v[2] * vd[2]) / d;
    const double *rs = m->theta + m->off_rs + (size_t)sj * K;
    const double *inta = m->theta + m->off_inta + (size_t)sj * K;
    const double *R = w->pair_r + (size_t)p * K;
    for (int k = 0; k < K; k++)
        Rd[k] = -2.0 * inta[k] * (d - rs[k]) * R[k] * dd;
    return dd;
}

/* Sd [rows][M][K] and rhod [rows][D] of every row for the direction gam
 * [rows][3] (tw->w: the molecule; tw->b1, b2: scratch). */
static void descriptor_tangent(const eann_model *m, eann_trainws *tw, const double *gam,
                               double *Sd_all, double *rhod) {
    const eann_work *w = tw->w;
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    const double *par = m->theta + m->off_params;
    double A[EANN_MAX_ORBITAL], Ad[EANN_MAX_ORBITAL], vd[3];
    double *Rd = tw->b1, *Wd = tw->b2; /* [K] scratch (K <= maxw since D = P K) */
    for (int i = 0; i < w->natoms; i++) {
        double *Sd = Sd_all + (size_t)i * M * K;
        memset(Sd, 0, sizeof(double) * (size_t)M * K);
        for (int p = w->pair_start[i]; p < w->pair_start[i + 1]; p++) {
            double dd = pair_tangent(m, w, gam, i, p, vd, Rd);
            eann_angular(m, w->pair_fc[p], w->pair_dfc[p] * dd, w->pair_v + 3 * (size_t)p, vd, A, Ad);
            const double *W = w->pair_w + (size_t)p * K;
            const double *c = par + (size_t)w->row_species[w->pair_j[p]] * K;
            for (int k = 0; k < K; k++)
                Wd[k] = c[k] * Rd[k];
            /* Sd[q][k] += Ad[q] W[k] + A[q] Wd[k] */
            eann_pair_tangent_add(w->simd, M, K, A, Ad, W, Wd, Sd);
        }
        const double *S = w->S + (size_t)i * M * K;
        double *rd = rhod + (size_t)i * D;
        memset(rd, 0, sizeof(double) * (size_t)D);
        for (int q = 0; q < M; q++) {
            double *rl = rd + (size_t)m->index_para[q] * K;
            for (int k = 0; k < K; k++)
                rl[k] += 2.0 * S[q * K + k] * Sd[q * K + k];
        }
    }
}

/* The second-order descriptor reverse pass of the polarizability heads:
 * ADDS dl/d(params, rs, inta) into dtheta from rho_ [rows][D] and rhod_
 * [rows][D], the adjoints of rho and of its tangent rhod, for the direction
 * gam [rows][3] whose descriptor tangent is Sd_all (descriptor_tangent; see
 * "Descriptor reverse" in the derivation above). The first-order pass
 * (rhod_ = 0) is eann_descriptor_backward in eann.c. */
static void descriptor_param_backward(const eann_model *m, eann_trainws *tw, const double *gam,
                                      const double *Sd_all, const double *rhob,
                                      const double *rhodb, double *dtheta) {
    const eann_work *w = tw->w;
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    double A[EANN_MAX_ORBITAL], Ad[EANN_MAX_ORBITAL], vd[3];
    double *Rd = tw->b1, *u1 = tw->b2, *u2 = tw->b3;
    for (int i = 0; i < w->natoms; i++) {
        const double *S = w->S + (size_t)i * M * K, *Sd = Sd_all + (size_t)i * M * K;
        double *Sb = tw->Sb + (size_t)i * M * K, *Sdb = tw->Sdb + (size_t)i * M * K;
        const double *rb = rhob + (size_t)i * D, *rdb = rhodb + (size_t)i * D;
        /* S_ = 2 S rho_ + 2 Sd rhod_, Sd_ = 2 S rhod_ */
        for (int q = 0; q < M; q++) {
            size_t L = (size_t)m->index_para[q] * K;
            for (int k = 0; k < K; k++) {
                size_t e = (size_t)q * K + k;
                Sb[e] = 2.0 * S[e] * rb[L + k];
                Sb[e] += 2.0 * Sd[e] * rdb[L + k];
                Sdb[e] = 2.0 * S[e] * rdb[L + k];
            }
        }
        for (int p = w->pair_start[i]; p < w->pair_start[i + 1]; p++) {
            const double *R = w->pair_r + (size_t)p * K;
            const int sj = w->row_species[w->pair_j[p]];
            const double *c = m->theta + m->off_params + (size_t)sj * K;
            const double *rs = m->theta + m->off_rs + (size_t)sj * K;
            const double *inta = m->theta + m->off_inta + (size_t)sj * K;
            double *dc = dtheta + m->off_params + (size_t)sj * K;
            double *drs = dtheta + m->off_rs + (size_t)sj * K;
            double *dinta = dtheta + m->off_inta + (size_t)sj * K;
            const double d = w->pair_d[p];
            double dd = pair_tangent(m, w, gam, i, p, vd, Rd);
            eann_angular(m, w->pair_fc[p], w->pair_dfc[p] * dd, w->pair_v + 3 * (size_t)p, vd, A, Ad);
            /* u1[k] = sum_q (S_[q][k] A_q + Sd_[q][k] Ad_q), u2[k] = sum_q Sd_[q][k] A_q */
            eann_pair_adjoint(w->simd, M, K, A, Ad, Sb, Sdb, u1, u2);
            for (int k = 0; k < K; k++) {
                /* R_ = c u1, Rd_ = c u2; Rd = -2 inta x R dd (x = d - rs):
                 * dRd/drs = dd 2 inta R (1 - 2 inta x^2), dRd/dinta = -dd 2 x R (1 - inta x^2) */
                double x = d - rs[k];
                dc[k] += R[k] * u1[k] + Rd[k] * u2[k];
                drs[k] +=
                    c[k] * (u1[k] * (2.0 * inta[k] * x * R[k]) +
                            u2[k] * (dd * 2.0 * inta[k] * R[k] * (1.0 - 2.0 * inta[k] * x * x)));
                dinta[k] += c[k] * (u1[k] * (-(x * x) * R[k]) +
                                    u2[k] * (-dd * 2.0 * x * R[k] * (1.0 - inta[k] * x * x)));
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* network: tangent forward and reverse through primal + tangent             */
/* ------------------------------------------------------------------------ */

/* Tangent of net t (eann_net_forward(t) done) for input tangent tw->rhod:
 * fills tw->zd/zhd/yd/ad and tw->outd [rows][n_out]. */
static void net_tangent(const eann_model *m, eann_trainws *tw, int t) {
    eann_work *w = tw->w;
    const int H = m->spec.net[t].nhidden;
    /* layer by layer; within a layer each species block is independent */
    for (int h = 0; h <= H; h++)
        for (int s = 0; s < m->spec.nspecies; s++) {
            const int r0 = w->sp_start[s], n = w->sp_start[s + 1] - r0;
            const eann_layer *L = eann_layer_of(m, t, s, h);
            const size_t c = (size_t)L->nout, o = (size_t)r0 * c;
            /* input tangent: rhod, or the previous layer's ad */
            const double *xd = h ? tw->ad[h - 1] + (size_t)r0 * L->nin
                                 : tw->rhod + (size_t)r0 * m->ndensity;
            if (n == 0) continue;
            if (h == H) { /* output layer: outd = W_H ad_{H-1} */
                eann_matmul(w->simd, n, L->nin, L->nout, xd, m->wt + L->wt, tw->zeros,
                            tw->outd + o);
                continue;
            }
            eann_matmul(w->simd, n, L->nin, L->nout, xd, m->wt + L->wt, tw->zeros, tw->zd[h] + o);
            /* zhatd = J zd (LayerNorm Jacobian, symmetric); yd = gamma_ln zhatd */
            eann_ln_backward_sel(w->simd, n, L->nout, w->zhat[t][h] + o, w->rstd[t][h] + r0,
                                 tw->ones, tw->zd[h] + o, tw->zhd[h] + o, NULL, NULL);
            const double *g = m->theta + L->ln_g;
            for (int r = 0; r < n; r++)
                for (size_t q = 0; q < c; q++)
                    tw->yd[h][o + r * c + q] = g[q] * tw->zhd[h][o + r * c + q];
            /* ad = alpha beta phi'(beta y) yd (diagonal Jacobian of the activation) */
            eann_act_backward_sel(w->simd, n, L->nout, w->y[t][h] + o, w->sig[t][h] + o,
                                  m->theta + L->act_a, m->theta + L->act_b, tw->yd[h] + o,
                                  tw->ad[h] + o, NULL, NULL);
        }
}

/* Reverse through net t's primal and tangent passes: outb (may be NULL =
 * zero) and outdb [rows][n_out] are the adjoints of out and outd. ADDS the
 * weight gradients into dtheta, SETS tw->rhob and tw->rhodb.
 * nseg = 0: one molecule (the reference order: each weight matrix gets the
 * primal rows' terms, then the tangent rows'). nseg > 0: tw->w holds the
 * rows of nseg molecules of a mini-batch (batch_rows), seg [S][nseg+1] the
 * molecules' row ranges inside each species block; every weight matrix then
 * gets, molecule after molecule, its primal then its tangent terms, the
 * order of calling this function on each molecule in turn. */
static void net_tangent_backward(const eann_model *m, eann_trainws *tw, int t, const double *outb,
                                 const double *outdb, double *dtheta, int nseg, const int *seg) {
    eann_work *w = tw->w;
    const int H = m->spec.net[t].nhidden, D = m->ndensity;
    const double *th = m->theta;
    for (int s = 0; s < m->spec.nspecies; s++) {
        int r0 = w->sp_start[s], n = w->sp_start[s + 1] - r0;
        if (n == 0) continue;
        double *ab = tw->b1, *adb = tw->b2, *yb = tw->b3, *ydb = tw->b4, *zb = tw->b5,
               *zdb = tw->b6;
        const eann_layer *L = eann_layer_of(m, t, s, H);
        size_t no = (size_t)L->nout;
        const double *x = H ? w->a[t][H - 1] + (size_t)r0 * L->nin : w->rho + (size_t)r0 * D;
        const double *xd = H ? tw->ad[H - 1] + (size_t)r0 * L->nin : tw->rhod + (size_t)r0 * D;
        double *xb = H ? ab : tw->rhob + (size_t)r0 * D;
        double *xdb = H ? adb : tw->rhodb + (size_t)r0 * D;
        if (outb && nseg) { /* dx and db here, dW molecule by molecule */
            eann_linear_backward_simd(w->simd, n, L->nin, L->nout, x, th + L->w,
                                      outb + (size_t)r0 * no, xb, NULL, dtheta + L->b);
            eann_linear_backward_simd(w->simd, n, L->nin, L->nout, xd, th + L->w,
                                      outdb + (size_t)r0 * no, xdb, NULL, NULL);
            eann_weight_grad_seg2(w->simd, nseg, seg + (size_t)s * (nseg + 1), L->nin, L->nout, x,
                                  outb + (size_t)r0 * no, xd, outdb + (size_t)r0 * no,
                                  dtheta + L->w);
        } else {
            if (outb)
                eann_linear_backward_simd(w->simd, n, L->nin, L->nout, x, th + L->w,
                                          outb + (size_t)r0 * no, xb, dtheta + L->w,
                                          dtheta + L->b);
            else
                memset(xb, 0, sizeof(double) * (size_t)n * L->nin);
            /* (outb == NULL: only the tangent rows add to dW, in batch row order) */
            eann_linear_backward_simd(w->simd, n, L->nin, L->nout, xd, th + L->w,
                                      outdb + (size_t)r0 * no, xdb, dtheta + L->w, NULL);
        }
        for (int h = H - 1; h >= 0; h--) {
            L = eann_layer_of(m, t, s, h);
            const int c = L->nout;
            const size_t o = (size_t)r0 * c;
            const double *al = th + L->act_a, *be = th + L->act_b, *g = th + L->ln_g;
            double *dal = dtheta + L->act_a, *dbe = dtheta + L->act_b;
            double *dg = dtheta + L->ln_g, *dbl = dtheta + L->ln_b;
            /* activation, and LayerNorm affine part: g_ += y_ zhat + yd_ zhatd, b_ += y_
             * (eann_act2_backward; formulas in the derivation above) */
            eann_act2_backward(w->simd, n, c, w->y[t][h] + o, w->sig[t][h] + o, tw->yd[h] + o,
                               w->zhat[t][h] + o, tw->zhd[h] + o, al, be, ab, adb, ydb, yb, dal,
                               dbe, dg, dbl);
            /* zd_ = J (g yd_), z_ = J (g y_) + second-order term */
            eann_ln_backward_sel(w->simd, n, c, w->zhat[t][h] + o, w->rstd[t][h] + r0, g, ydb, zdb,
                                 NULL, NULL);
            eann_ln_backward_sel(w->simd, n, c, w->zhat[t][h] + o, w->rstd[t][h] + r0, g, yb, zb,
                                 NULL, NULL);
            /* the second-order term (eann_ln2_backward): with Ab = g yd_,
             * u = zd - mean(zd), zhatd = r (u - zhat m), m = mean(zhat u),
             * a1 = Ab.u, a2 = Ab.zhat, Zb_q = -r (u_q a2 / c + m Ab_q), rb = a1 - m a2:
             * z_ += r (Zb - mean(Zb)) - (r^2 zhat / c) (rb + sum_q Zb_q zhat_q / r) */
            eann_ln2_backward(w->simd, n, c, w->zhat[t][h] + o, w->rstd[t][h] + r0, tw->zd[h] + o,
                              g, ydb, zb);
            /* linear: x_ = W^T z_, xd_ = W^T zd_, W_ += z_ x^T + zd_ xd^T, b_ += z_ */
            x = h ? w->a[t][h - 1] + (size_t)r0 * L->nin : w->rho + (size_t)r0 * D;
            xd = h ? tw->ad[h - 1] + (size_t)r0 * L->nin : tw->rhod + (size_t)r0 * D;
            xb = h ? ab : tw->rhob + (size_t)r0 * D;
            xdb = h ? adb : tw->rhodb + (size_t)r0 * D;
            if (nseg) { /* dx and db here, dW molecule by molecule */
                const int *sg = seg + (size_t)s * (nseg + 1);
                eann_linear_backward_simd(w->simd, n, L->nin, c, x, th + L->w, zb, xb, NULL,
                                          dtheta + L->b);
                eann_linear_backward_simd(w->simd, n, L->nin, c, xd, th + L->w, zdb, xdb, NULL,
                                          NULL);
                eann_weight_grad_seg2(w->simd, nseg, sg, L->nin, c, x, zb, xd, zdb,
                                      dtheta + L->w);
                continue;
            }
            eann_linear_backward_simd(tw->w->simd, n, L->nin, c, x, th + L->w, zb, xb, dtheta + L->w, dtheta + L->b);
            eann_linear_backward_simd(tw->w->simd, n, L->nin, c, xd, th + L->w, zdb, xdb, dtheta + L->w, NULL);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* heads and per-molecule loss                                               */
/* ------------------------------------------------------------------------ */

double eann_phase_free_sq(const double t[3], const double r[3], int *sign) {
    double ep = 0, em = 0;
    for (int a = 0; a < 3; a++) {
        ep += (t[a] - r[a]) * (t[a] - r[a]);
        em += (t[a] + r[a]) * (t[a] + r[a]);
    }
    if (sign) *sign = em < ep ? -1 : 1;
    return em < ep ? em : ep;
}

/* Gradient through the coordinate-gradient head of net t: dl/dtheta of
 * sum_i gamma_i . (dE_t/dx_i), gamma = tw->gam (rows), set by the caller. */
static void grad_head_backward(const eann_model *m, eann_trainws *tw, int t, double *grad) {
    eann_work *w = tw->w;
    const int no = m->spec.net[t].sizes[m->spec.net[t].nhidden + 1];
    descriptor_tangent(m, tw, tw->gam, tw->Sd, tw->rhod);
    net_tangent(m, tw, t);
    memset(tw->dout, 0, sizeof(double) * (size_t)w->natoms * no);
    for (int r = 0; r < w->natoms; r++)
        tw->dout[(size_t)r * no] = 1.0;
    net_tangent_backward(m, tw, t, NULL, tw->dout, grad, 0, NULL);
    descriptor_param_backward(m, tw, tw->gam, tw->Sd, tw->rhob, tw->rhodb, grad);
}

/* Backpropagation of dout = dl/d(outputs of net t) to the parameters:
 * ordinary first-order pass through net t and the descriptor. */
static void first_order_backward(const eann_model *m, eann_work *w, int t, const double *dout,
                                 double *grad) {
    eann_net_backward(m, w, t, dout, grad);
    eann_descriptor_backward(m, w, w->drho, NULL, grad);
}

/* Dipole head and loss (EANN chapter Eqs. 1 and 6): l = |mu - ref|^2/3 +
 * w_q (sum q - Q)^2, after eann_net_forward(0). Returns l, sets pred[3] and
 * *sq; if back, tw->dout [rows][1] = scale dl/dq_r. */
static double dipole_head(const eann_model *m, eann_trainws *tw, const eann_sample *smp, double cw,
                          double scale, int back, double *pred, double *sq) {
    eann_work *w = tw->w;
    double qs, e[3];
    eann_dipole_parts(m, w, pred, &qs);
    const double pen = qs - smp->charge;
    *sq = 0;
    for (int a = 0; a < 3; a++) {
        e[a] = pred[a] - smp->ref[a];
        *sq += e[a] * e[a];
    }
    /* dl/dq_r = (2/3) e.x'_r + 2 w_q (sum q - Q) */
    if (back) eann_charge_head_backward(w, e, 2.0 / 3.0, 2.0 * cw * pen, scale, tw->dout);
    return *sq / 3.0 + cw * pen * pen;
}

/* Dipole loss, after setup and descriptor. */
static double dipole_loss(const eann_model *m, eann_trainws *tw, const eann_sample *smp, double cw,
                          double scale, double *grad, double *pred, double *sq) {
    eann_net_forward(m, tw->w, 0);
    double l = dipole_head(m, tw, smp, cw, scale, grad != NULL, pred, sq);
    if (grad) first_order_backward(m, tw->w, 0, tw->dout, grad);
    return l;
}

/* Phase-free transition-dipole head and loss (EANN chapter Eqs. 7-8):
 * l = min_s |t - s ref|^2/3, after eann_net_forward(0); if back, tw->dout
 * [rows][3] = scale dl/d(q1, q2, w). */
static double tdm_head(const eann_model *m, eann_trainws *tw, const eann_sample *smp, double scale,
                       int back, double *pred, double *sq) {
    eann_work *w = tw->w;
    double u[3], v[3], W, t[3];
    eann_tdm_parts(m, w, u, v, &W);
    eann_tdm_combine(u, v, W, t);
    int sg;
    *sq = eann_phase_free_sq(t, smp->ref, &sg);
    for (int a = 0; a < 3; a++)
        pred[a] = sg * t[a];
    if (back) {
        /* dl/dt = (2/3)(t - s ref) on the active branch s */
        double g[3];
        for (int a = 0; a < 3; a++)
            g[a] = scale * (2.0 / 3.0) * (t[a] - sg * smp->ref[a]);
        eann_tdm_head_backward(w, u, v, W, g, tw->dout);
    }
    return *sq / 3.0;
}

static double tdm_loss(const eann_model *m, eann_trainws *tw, const eann_sample *smp, double scale,
                       double *grad, double *pred, double *sq) {
    eann_net_forward(m, tw->w, 0);
    double l = tdm_head(m, tw, smp, scale, grad != NULL, pred, sq);
    if (grad) first_order_backward(m, tw->w, 0, tw->dout, grad);
    return l;
}

/* Polarizability head and loss (EANN chapter Eqs. 10-12): l = |alpha -
 * ref|_F^2/9 from the parts of eann_pol_parts; sets pred[9], *sq, and
 * G = scale dl/dalpha, Gs = G + G^T. */
static double pol_head(const eann_sample *smp, double scale, const double Ps[9], const double Hh[9],
                       double E2, double *pred, double *sq, double G[9], double Gs[9]) {
    double e[9];
    *sq = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int q = 3 * a + b;
            pred[q] = Ps[q] + Hh[q] + (a == b ? E2 : 0.0);
            e[q] = pred[q] - smp->ref[q];
            *sq += e[q] * e[q];
        }
    for (int q = 0; q < 9; q++)
        G[q] = scale * (2.0 / 9.0) * e[q];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            Gs[3 * a + b] = G[3 * a + b] + G[3 * b + a];
    return *sq / 9.0;
}

/* net 2's output adjoint dl/dy_i = tr G: dout [rows][no2] */
static void pol_trace_dout(const eann_model *m, const eann_work *w, const double G[9],
                           double *dout) {
    const int no2 = m->spec.net[2].sizes[m->spec.net[2].nhidden + 1];
    memset(dout, 0, sizeof(double) * (size_t)w->natoms * no2);
    for (int r = 0; r < w->natoms; r++)
        dout[(size_t)r * no2] = G[0] + G[4] + G[8];
}

/* The tangent direction of net 0, gamma_r = Gs x'_r (h == NULL), or of
 * net 1, gamma'_r = Gs h_r (h [natoms][3] in original atom order): gam [rows][3]. */
static void pol_direction(const eann_work *w, const double Gs[9], const double *h, double *gam) {
    for (int r = 0; r < w->natoms; r++) {
        const double *x = h ? h + 3 * (size_t)w->atom_of_row[r] : w->x + 3 * (size_t)r;
        for (int b = 0; b < 3; b++)
            gam[3 * r + b] = Gs[b] * x[0] + Gs[3 + b] * x[1] + Gs[6 + b] * x[2];
    }
}

/* h == 0 everywhere (then net 1's gradient terms are zero and skipped) */
static int all_zero(const double *h, int n) {
    int hz = 1;
    for (int q = 0; q < n; q++)
        if (h[q] != 0.0) hz = 0;
    return hz;
}

/* Polarizability loss: the gradient needs the second-order passes
 * (derivation at the top). */
static double pol_loss(const eann_model *m, eann_trainws *tw, const eann_sample *smp, double scale,
                       double *grad, double *pred, double *sq) {
    eann_work *w = tw->w;
    const int N = w->natoms;
    double Ps[9], Hh[9], E2, G[9], Gs[9];
    eann_pol_parts(m, w, tw->gpos, tw->hpos, Ps, Hh, &E2);
    double l = pol_head(smp, scale, Ps, Hh, E2, pred, sq, G, Gs);
    if (!grad) return l;
    /* net 2: dl/dy_i = tr G */
    pol_trace_dout(m, w, G, tw->dout);
    first_order_backward(m, w, 2, tw->dout, grad);
    /* net 0: gamma_i = Gs x'_i */
    pol_direction(w, Gs, NULL, tw->gam);
    grad_head_backward(m, tw, 0, grad);
    /* net 1: gamma'_i = Gs h_i (skipped when h = 0: then it is zero) */
    if (!all_zero(tw->hpos, 3 * N)) {
        pol_direction(w, Gs, tw->hpos, tw->gam);
        grad_head_backward(m, tw, 1, grad);
    }
    return l;
}

int eann_sample_loss(const eann_model *m, eann_trainws *tw, const eann_sample *smp,
                     double charge_weight, double scale, double *grad, double *pred, double *sqerr,
                     double *loss) {
    if (!m || !tw || !smp || !pred) return EANN_EINVAL;
    int rc = eann_setup(m, tw->w, smp->natoms, smp->species, smp->pos);
    if (rc) return rc;
    eann_descriptor_forward(m, tw->w);
    double sq, l;
    if (m->spec.kind == EANN_DIPOLE)
        l = dipole_loss(m, tw, smp, charge_weight, scale, grad, pred, &sq);
    else if (m->spec.kind == EANN_TDM)
        l = tdm_loss(m, tw, smp, scale, grad, pred, &sq);
    else
        l = pol_loss(m, tw, smp, scale, grad, pred, &sq);
    if (sqerr) *sqerr = sq;
    if (loss) *loss = l;
    return EANN_OK;
}

int eann_evaluate(const eann_model *m, eann_trainws *tw, const eann_sample *smp, int n,
                  double charge_weight, double *mean_loss, double *rmse) {
    double L = 0, SQ = 0, pred[9];
    int nc = eann_kind_outputs(m->spec.kind);
    for (int f = 0; f < n; f++) {
        double sq, l;
        int rc = eann_sample_loss(m, tw, &smp[f], charge_weight, 0, NULL, pred, &sq, &l);
        if (rc) return rc;
        L += l;
        SQ += sq;
    }
    if (mean_loss) *mean_loss = n ? L / n : 0;
    if (rmse) *rmse = n ? sqrt(SQ / ((double)n * nc)) : 0;
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* mini-batches: many molecules' atoms in one matrix product per network     */
/* ------------------------------------------------------------------------ */

/* eann_batch_loss gives exactly the bits of eann_sample_loss called on each
 * molecule in turn (the readable reference above), but runs every element
 * network once for the whole mini-batch: the batch workspace B holds the
 * rows of all its molecules, species block after species block, and within
 * a block the molecules in order (each with its rows in its own order):
 *
 *     B rows:  [C of mol 0][C of mol 1]...[H of mol 0][H of mol 1]...
 *
 * so one species' rows of the whole batch go through a layer as one matrix
 * product (NMA: 3 C, 7 H, 1 N, 1 O rows per molecule become 96, 224, 32, 32
 * per batch of 32). Why the bits stay the same:
 *   - every output row of a matrix product is its own sum (over the inputs,
 *     in their order), whatever rows are next to it;
 *   - every weight gradient is added one row at a time (eann_weight_grad,
 *     the bias, LayerNorm and activation parameter sums), and a species
 *     block of B lists molecule 0's rows first, then molecule 1's, ...: the
 *     order of the per-molecule calls. The second-order passes add, per
 *     molecule, a weight matrix's primal rows then its tangent rows;
 *     eann_weight_grad_seg2 keeps that order molecule by molecule;
 *   - the networks' parameters and the descriptor's (params, rs, inta) are
 *     different entries of theta. Each network's weights only get terms from
 *     that network's passes, so all molecules' network passes may run before
 *     the descriptor's; the descriptor entries (which get terms from every
 *     net) are then added molecule by molecule, in the reference order
 *     (polarizability: net 2's first-order pass, net 0's, net 1's).
 * The descriptor, its tangents and the heads stay per molecule (each
 * molecule keeps its own eann_work with its pair list). Where the reference
 * skips work for one molecule: a zero output layer of net 0 or 1 (see
 * eann_pol_parts; the published models) sends the chunk to the reference
 * loop; h = 0 (pol_loss skips net 1's terms; a single atom) keeps the
 * molecule in net 1's batch passes with direction 0. All its terms there
 * are then +0 or -0 (products with the zero tangent; finite values), and
 * adding a zero to a sum that starts at +0 (the gradient is zeroed first)
 * never changes its bits: x + (+-0) = x for x != 0, and +0 + (+-0) = +0
 * (such a sum is never -0: x + y = +0 when y = -x). tests/test_eann_train.c
 * compares both paths with memcmp for all three targets. */

/* atoms per batch pass of the trainer (eann_trainer_new) */
#define EANN_BATCH_ROWS 96

typedef struct {
    eann_trainws *tw;           /* the molecule: pairs, S, rho; net 0's direction and tangent
                                   in tw->gam, tw->Sd; g, h in tw->gpos, tw->hpos */
    double *gam1, *Sd1;         /* net 1's direction [N][3] and descriptor tangent [N][M][K] */
    int row0[EANN_MAX_SPECIES]; /* B row of the molecule's first row of species s */
    int hz;                     /* h = 0: no net-1 terms (pol_loss) */
} batch_mol;

struct eann_batchws {
    int cap_mol, cap_atoms;
    eann_trainws *B;         /* batch rows (B->w: rho, network caches; tangents) */
    batch_mol *mol;          /* [cap_mol] */
    int *seg;                /* [S][nmol+1] molecules' row ranges within each species block */
    double *rhob0, *rhodb0;  /* [rows][D] net 0's descriptor adjoints (polarizability) */
    double *tmp, *tmp2;      /* [cap_atoms][max width] one molecule's rows */
    const eann_sample **ch;  /* [cap_mol] the chunk's molecules */
    double *pred, *sq, *l;   /* [cap_mol][9], [cap_mol], [cap_mol] for batch_grad */
};

void eann_batchws_free(eann_batchws *bw) {
    if (!bw) return;
    eann_trainws_free(bw->B);
    if (bw->mol)
        for (int f = 0; f < bw->cap_mol; f++) {
            eann_trainws_free(bw->mol[f].tw);
            free(bw->mol[f].gam1);
            free(bw->mol[f].Sd1);
        }
    free(bw->mol);
    free(bw->seg);
    free(bw->rhob0);
    free(bw->rhodb0);
    free(bw->tmp);
    free(bw->tmp2);
    free(bw->ch);
    free(bw->pred);
    free(bw->sq);
    free(bw->l);
    free(bw);
}

int eann_batchws_new(const eann_model *m, int natoms_max, int nmol_max, eann_batchws **out) {
    if (!m || !out || natoms_max < 1 || nmol_max < 1) return EANN_EINVAL;
    *out = NULL;
    if ((size_t)natoms_max * (size_t)nmol_max > INT_MAX / 64) return EANN_EINVAL;
    eann_batchws *bw = calloc(1, sizeof *bw);
    if (!bw) return EANN_ENOMEM;
    bw->cap_mol = nmol_max;
    bw->cap_atoms = natoms_max;
    const size_t N = (size_t)natoms_max, NB = N * (size_t)nmol_max;
    const size_t MK = (size_t)m->norbital * m->spec.nwave, D = (size_t)m->ndensity;
    int fail = 0, rc = eann_trainws_new(m, (int)NB, &bw->B);
    if (rc) {
        free(bw);
        return rc;
    }
    const size_t W = (size_t)bw->B->maxw;
    bw->mol = calloc((size_t)nmol_max, sizeof *bw->mol);
    bw->seg = calloc((size_t)m->spec.nspecies * (nmol_max + 1), sizeof(int));
    if (!bw->mol || !bw->seg) fail = 1;
    for (int f = 0; f < nmol_max && !fail; f++) {
        if (eann_trainws_new(m, natoms_max, &bw->mol[f].tw)) fail = 1;
        bw->mol[f].gam1 = dalloc(N * 3, &fail);
        bw->mol[f].Sd1 = m->spec.kind == EANN_POLARIZABILITY ? dalloc(N * MK, &fail) : NULL;
    }
    if (m->spec.kind == EANN_POLARIZABILITY) {
        bw->rhob0 = dalloc(NB * D, &fail);
        bw->rhodb0 = dalloc(NB * D, &fail);
    }
    bw->tmp = dalloc(N * W, &fail);
    bw->tmp2 = dalloc(N * W, &fail);
    bw->pred = dalloc((size_t)nmol_max * 9, &fail);
    bw->sq = dalloc((size_t)nmol_max, &fail);
    bw->l = dalloc((size_t)nmol_max, &fail);
    bw->ch = calloc((size_t)nmol_max, sizeof *bw->ch);
    if (fail || !bw->ch) {
        eann_batchws_free(bw);
        return EANN_ENOMEM;
    }
    *out = bw;
    return EANN_OK;
}

/* Lay out the rows of molecules 0..n-1 (set up in mol[f].tw->w) in B (see
 * above): sp_start, row0, seg and rho. */
static void batch_rows(const eann_model *m, eann_batchws *bw, int n) {
    eann_work *B = bw->B->w;
    const int S = m->spec.nspecies, D = m->ndensity;
    int r = 0;
    for (int s = 0; s < S; s++) {
        int *sg = bw->seg + (size_t)s * (n + 1);
        B->sp_start[s] = r;
        for (int f = 0; f < n; f++) {
            const eann_work *w = bw->mol[f].tw->w;
            const int a = w->sp_start[s], k = w->sp_start[s + 1] - a;
            sg[f] = r - B->sp_start[s];
            bw->mol[f].row0[s] = r;
            memcpy(B->rho + (size_t)r * D, w->rho + (size_t)a * D, sizeof(double) * (size_t)k * D);
            for (int q = 0; q < k; q++)
                B->row_species[r + q] = s;
            r += k;
        }
        sg[n] = r - B->sp_start[s];
    }
    B->sp_start[S] = r;
    B->natoms = r;
}

/* Molecule f's rows of a batch array bat [B rows][c] copied to its own rows
 * x [rows][c] (to_batch = 0) or back (to_batch = 1). */
static void mol_rows(const eann_model *m, const eann_batchws *bw, int f, int c, double *bat,
                     double *x, int to_batch) {
    const eann_work *w = bw->mol[f].tw->w;
    for (int s = 0; s < m->spec.nspecies; s++) {
        const int a = w->sp_start[s], k = w->sp_start[s + 1] - a;
        double *b = bat + (size_t)bw->mol[f].row0[s] * c, *y = x + (size_t)a * c;
        if (to_batch)
            memcpy(b, y, sizeof(double) * (size_t)k * c);
        else
            memcpy(y, b, sizeof(double) * (size_t)k * c);
    }
}

static int net_outputs(const eann_model *m, int t) {
    return m->spec.net[t].sizes[m->spec.net[t].nhidden + 1];
}

/* dout [rows][no] = 1 in column 0, else 0 (the adjoint of sum_i out_i[0]) */
static void ones_col0(double *dout, int rows, int no) {
    memset(dout, 0, sizeof(double) * (size_t)rows * no);
    for (int r = 0; r < rows; r++)
        dout[(size_t)r * no] = 1.0;
}

/* eann_net_backward (eann.c) with dtheta != NULL, the same operations in
 * the same order, for the batch rows of B: dout [rows][n_out] -> B->drho;
 * ADDS the weight gradients of net t into dtheta. Its loops have AVX2
 * copies here (the parameter-gradient loops of eann.c's LayerNorm and
 * activation are portable only; the weight gradient in 4 x 8 tiles), which
 * pays off on a batch's many rows. */
static void batch_net_backward(const eann_model *m, eann_work *B, int t, const double *dout,
                               double *dtheta) {
    const int H = m->spec.net[t].nhidden, D = m->ndensity;
    const double *th = m->theta;
    for (int s = 0; s < m->spec.nspecies; s++) {
        const int r0 = B->sp_start[s], n = B->sp_start[s + 1] - r0;
        if (n == 0) continue;
        double *ga = B->g1, *gb = B->g2;
        const eann_layer *L = eann_layer_of(m, t, s, H);
        const double *x = H ? B->a[t][H - 1] + (size_t)r0 * L->nin : B->rho + (size_t)r0 * D;
        const double *dz = dout + (size_t)r0 * L->nout;
        double *dx = H ? ga : B->drho + (size_t)r0 * D;
        /* linear: dx = dz W, dW += dz^T x, db += sum dz (eann_linear_backward) */
        eann_linear_backward_simd(B->simd, n, L->nin, L->nout, x, th + L->w, dz, dx, NULL, NULL);
        eann_weight_grad_tiled(B->simd, n, L->nin, L->nout, x, dz, dtheta + L->w);
        eann_linear_backward_simd(B->simd, n, L->nin, L->nout, x, th + L->w, dz, NULL, NULL,
                                  dtheta + L->b);
        for (int h = H - 1; h >= 0; h--) {
            L = eann_layer_of(m, t, s, h);
            const size_t c = (size_t)L->nout;
            /* ga = dL/da -> gb = dL/dy -> ga = dL/dz -> dx */
            eann_act_backward_sel(B->simd, n, L->nout, B->y[t][h] + r0 * c, B->sig[t][h] + r0 * c,
                                  th + L->act_a, th + L->act_b, ga, gb, dtheta + L->act_a,
                                  dtheta + L->act_b);
            eann_ln_backward_sel(B->simd, n, L->nout, B->zhat[t][h] + r0 * c, B->rstd[t][h] + r0,
                                 th + L->ln_g, gb, ga, dtheta + L->ln_g, dtheta + L->ln_b);
            x = h ? B->a[t][h - 1] + (size_t)r0 * L->nin : B->rho + (size_t)r0 * D;
            dx = h ? gb : B->drho + (size_t)r0 * D;
            eann_linear_backward_simd(B->simd, n, L->nin, L->nout, x, th + L->w, ga, dx, NULL,
                                      NULL);
            eann_weight_grad_tiled(B->simd, n, L->nin, L->nout, x, ga, dtheta + L->w);
            eann_linear_backward_simd(B->simd, n, L->nin, L->nout, x, th + L->w, ga, NULL, NULL,
                                      dtheta + L->b);
            double *tmp = ga;
            ga = gb;
            gb = tmp;
        }
    }
}

/* Dipole and transition dipole: net 0 forward for the batch, heads per
 * molecule, net 0 backward for the batch, descriptor per molecule. */
static void batch_charge(const eann_model *m, eann_batchws *bw, const eann_sample *const *smp,
                         int n, double cw, double scale, double *grad, double *pred, double *sq,
                         double *loss) {
    eann_work *B = bw->B->w;
    const int no = net_outputs(m, 0);
    eann_net_forward(m, B, 0);
    for (int f = 0; f < n; f++) {
        eann_trainws *tw = bw->mol[f].tw;
        mol_rows(m, bw, f, no, B->out[0], tw->w->out[0], 0);
        loss[f] = m->spec.kind == EANN_DIPOLE
                      ? dipole_head(m, tw, smp[f], cw, scale, grad != NULL, pred + 9 * f, sq + f)
                      : tdm_head(m, tw, smp[f], scale, grad != NULL, pred + 9 * f, sq + f);
        if (grad) mol_rows(m, bw, f, no, B->dout, tw->dout, 1);
    }
    if (!grad) return;
    batch_net_backward(m, B, 0, B->dout, grad);
    for (int f = 0; f < n; f++) {
        mol_rows(m, bw, f, m->ndensity, B->drho, bw->tmp, 0);
        eann_descriptor_backward(m, bw->mol[f].tw->w, bw->tmp, NULL, grad);
    }
}

/* Polarizability (pol_loss for the batch). Returns 1, with grad untouched,
 * if a molecule needs the reference's special cases. */
static int batch_pol(const eann_model *m, eann_batchws *bw, const eann_sample *const *smp, int n,
                     double scale, double *grad, double *pred, double *sq, double *loss) {
    eann_work *B = bw->B->w;
    eann_trainws *TB = bw->B;
    const int D = m->ndensity, rows = B->natoms;
    for (int f = 0; f < n; f++)
        if (eann_output_layer_zero(m, bw->mol[f].tw->w, 0) || eann_output_layer_zero(m, bw->mol[f].tw->w, 1))
            return 1;
    /* eann_pol_parts: g = dE_0/dx and h = dE_1/dx (eann_net_gradient), E_2 */
    for (int t = 0; t < 2; t++) {
        eann_net_forward(m, B, t);
        ones_col0(B->dout, rows, net_outputs(m, t));
        eann_net_backward(m, B, t, B->dout, NULL);
        for (int f = 0; f < n; f++) {
            eann_trainws *tw = bw->mol[f].tw;
            double *g = t ? tw->hpos : tw->gpos;
            memset(g, 0, sizeof(double) * 3 * (size_t)tw->w->natoms);
            mol_rows(m, bw, f, D, B->drho, bw->tmp, 0);
            eann_descriptor_backward(m, tw->w, bw->tmp, g, NULL);
        }
    }
    eann_net_forward(m, B, 2);
    const int no2 = net_outputs(m, 2);
    for (int f = 0; f < n; f++) {
        eann_trainws *tw = bw->mol[f].tw;
        eann_work *w = tw->w;
        const int N = w->natoms;
        mol_rows(m, bw, f, no2, B->out[2], w->out[2], 0);
        /* the end of eann_pol_parts (eann.c): Pm, Hh, E_2 */
        const double *g = tw->gpos, *h = tw->hpos;
        double E2 = eann_net_sum(m, w, 2), Hh[9], Ps[9], G[9], Gs[9];
        eann_pol_moments(w, g, h, Ps, Hh);
        loss[f] = pol_head(smp[f], scale, Ps, Hh, E2, pred + 9 * f, sq + f, G, Gs);
        if (!grad) continue;
        bw->mol[f].hz = all_zero(h, 3 * N);
        pol_trace_dout(m, w, G, tw->dout);
        mol_rows(m, bw, f, no2, B->dout, tw->dout, 1);
        pol_direction(w, Gs, NULL, tw->gam);
        pol_direction(w, Gs, h, bw->mol[f].gam1);
    }
    if (!grad) return 0;
    /* net 2's first-order pass (B->drho is kept for the descriptor part) */
    batch_net_backward(m, B, 2, B->dout, grad);
    /* nets 0 and 1: tangent and reverse passes (grad_head_backward) */
    for (int t = 0; t < 2; t++) {
        for (int f = 0; f < n; f++) {
            batch_mol *bm = &bw->mol[f];
            descriptor_tangent(m, bm->tw, t ? bm->gam1 : bm->tw->gam, t ? bm->Sd1 : bm->tw->Sd,
                               bm->tw->rhod);
            mol_rows(m, bw, f, D, TB->rhod, bm->tw->rhod, 1);
        }
        net_tangent(m, TB, t);
        ones_col0(TB->dout, rows, net_outputs(m, t));
        net_tangent_backward(m, TB, t, NULL, TB->dout, grad, n, bw->seg);
        if (t == 0) {
            memcpy(bw->rhob0, TB->rhob, sizeof(double) * (size_t)rows * D);
            memcpy(bw->rhodb0, TB->rhodb, sizeof(double) * (size_t)rows * D);
        }
    }
    /* the descriptor parameters, molecule by molecule in the reference order */
    for (int f = 0; f < n; f++) {
        batch_mol *bm = &bw->mol[f];
        mol_rows(m, bw, f, D, B->drho, bw->tmp, 0);
        eann_descriptor_backward(m, bm->tw->w, bw->tmp, NULL, grad);
        mol_rows(m, bw, f, D, bw->rhob0, bw->tmp, 0);
        mol_rows(m, bw, f, D, bw->rhodb0, bw->tmp2, 0);
        descriptor_param_backward(m, bm->tw, bm->tw->gam, bm->tw->Sd, bw->tmp, bw->tmp2, grad);
        if (bm->hz) continue;
        mol_rows(m, bw, f, D, TB->rhob, bw->tmp, 0);
        mol_rows(m, bw, f, D, TB->rhodb, bw->tmp2, 0);
        descriptor_param_backward(m, bm->tw, bm->gam1, bm->Sd1, bw->tmp, bw->tmp2, grad);
    }
    return 0;
}

int eann_batch_loss(const eann_model *m, eann_batchws *bw, const eann_sample *smp, const int *idx,
                    int n, double charge_weight, double scale, double *grad, double *pred,
                    double *sqerr, double *loss) {
    if (!m || !bw || n < 0 || (n && !smp) || !pred || !sqerr || !loss) return EANN_EINVAL;
    for (int q0 = 0; q0 < n; q0 += bw->cap_mol) {
        const int nb = n - q0 < bw->cap_mol ? n - q0 : bw->cap_mol;
        const eann_sample **ch = bw->ch;
        int rc = 0, ref = 0;
        for (int f = 0; f < nb; f++) {
            ch[f] = &smp[idx ? idx[q0 + f] : q0 + f];
            eann_trainws *tw = bw->mol[f].tw;
            rc = eann_setup(m, tw->w, ch[f]->natoms, ch[f]->species, ch[f]->pos);
            if (rc) break;
            eann_descriptor_forward(m, tw->w);
        }
        if (!ref && !rc) {
            batch_rows(m, bw, nb);
            if (m->spec.kind == EANN_POLARIZABILITY)
                ref = batch_pol(m, bw, ch, nb, scale, grad, pred + 9 * (size_t)q0, sqerr + q0,
                                loss + q0);
            else
                batch_charge(m, bw, ch, nb, charge_weight, scale, grad, pred + 9 * (size_t)q0,
                             sqerr + q0, loss + q0);
        }
        /* the reference, molecule by molecule (also on an error above, so
         * that the error is the one eann_sample_loss reports) */
        if (ref || rc)
            for (int f = 0; f < nb; f++) {
                rc = eann_sample_loss(m, bw->mol[0].tw, ch[f], charge_weight, scale, grad,
                                      pred + 9 * (size_t)(q0 + f), &sqerr[q0 + f], &loss[q0 + f]);
                if (rc) return rc;
            }
    }
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* normalisation (folded into the first linear layer)                        */
/* ------------------------------------------------------------------------ */

void eann_norm_free(eann_norm *nm) {
    if (!nm) return;
    free(nm->mean);
    free(nm->std);
    nm->mean = nm->std = NULL;
}

static int norm_alloc(const eann_model *m, eann_norm *nm) {
    size_t n = (size_t)m->spec.nspecies * m->ndensity;
    nm->nspecies = m->spec.nspecies;
    nm->ndensity = m->ndensity;
    nm->mean = calloc(n, sizeof(double));
    nm->std = calloc(n, sizeof(double));
    if (!nm->mean || !nm->std) {
        eann_norm_free(nm);
        return EANN_ENOMEM;
    }
    return EANN_OK;
}

static int max_atoms(const eann_sample *smp, int n) {
    int mx = 1;
    for (int f = 0; f < n; f++)
        if (smp[f].natoms > mx) mx = smp[f].natoms;
    return mx;
}

int eann_norm_compute(const eann_model *m, const eann_sample *smp, int n, eann_norm *out) {
    if (!m || !out || (n && !smp)) return EANN_EINVAL;
    int rc = norm_alloc(m, out);
    if (rc) return rc;
    const int S = m->spec.nspecies, D = m->ndensity;
    eann_work *w;
    rc = eann_work_new(m, max_atoms(smp, n), &w);
    if (rc) {
        eann_norm_free(out);
        return rc;
    }
    long cnt[EANN_MAX_SPECIES] = {0};
    /* two passes: mean, then the variance about it */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        for (int f = 0; f < n && !rc; f++) {
            rc = eann_setup(m, w, smp[f].natoms, smp[f].species, smp[f].pos);
            if (rc) break;
            eann_descriptor_forward(m, w);
            for (int r = 0; r < w->natoms; r++) {
                int s = w->row_species[r];
                const double *rho = w->rho + (size_t)r * D;
                double *mu = out->mean + (size_t)s * D, *sd = out->std + (size_t)s * D;
                if (pass == 0) {
                    cnt[s]++;
                    for (int k = 0; k < D; k++)
                        mu[k] += rho[k];
                } else {
                    for (int k = 0; k < D; k++)
                        sd[k] += (rho[k] - mu[k]) * (rho[k] - mu[k]);
                }
            }
        }
        if (pass == 0)
            for (int s = 0; s < S; s++)
                for (int k = 0; k < D; k++)
                    if (cnt[s]) out->mean[(size_t)s * D + k] /= (double)cnt[s];
    }
    eann_work_free(w);
    if (rc) {
        eann_norm_free(out);
        return rc;
    }
    for (int s = 0; s < S; s++)
        for (int k = 0; k < D; k++) {
            double *mu = out->mean + (size_t)s * D + k, *sd = out->std + (size_t)s * D + k;
            *sd = cnt[s] ? sqrt(*sd / (double)cnt[s]) : 0.0;
            if (!(*sd >= 1e-12 * (1.0 + fabs(*mu)))) {
                *mu = 0.0;
                *sd = 1.0;
            }
        }
    return EANN_OK;
}

/* Call fn for the first linear layer of every net and species. */
#define FOR_FIRST_LAYERS(m, L, s)                                                                  \
    for (int t_ = 0; t_ < (m)->spec.nnets; t_++)                                                   \
        for (int s = 0; s < (m)->spec.nspecies; s++)                                               \
            for (const eann_layer *L = eann_layer_of((m), t_, s, 0); L; L = NULL)

/* fold (dir = 1): dst = theta from src = phi; unfold (dir = 0): dst = phi
 * from src = theta. Only the first linear layer of every net and species
 * changes: fold W = W~/std, b = b~ - sum_c W~ mean/std; unfold W~ = W std,
 * b~ = b + sum_c W mean. dst may equal src. */
static void norm_map(const eann_model *m, const eann_norm *nm, const double *src, double *dst,
                     int fold) {
    const int D = m->ndensity;
    if (src != dst) memcpy(dst, src, sizeof(double) * m->ntheta);
    FOR_FIRST_LAYERS(m, L, s) {
        const double *mu = nm->mean + (size_t)s * D, *sd = nm->std + (size_t)s * D;
        for (int o = 0; o < L->nout; o++) {
            const double *ws = src + L->w + (size_t)o * D;
            double *wd = dst + L->w + (size_t)o * D;
            double b = src[L->b + o];
            for (int c = 0; c < D; c++)
                b += fold ? -(ws[c] * (mu[c] / sd[c])) : ws[c] * mu[c];
            for (int c = 0; c < D; c++)
                wd[c] = fold ? ws[c] / sd[c] : ws[c] * sd[c];
            dst[L->b + o] = b;
        }
    }
}

void eann_norm_fold(const eann_model *m, const eann_norm *nm, const double *phi, double *theta) {
    norm_map(m, nm, phi, theta, 1);
}

void eann_norm_unfold(const eann_model *m, const eann_norm *nm, const double *theta, double *phi) {
    norm_map(m, nm, theta, phi, 0);
}

void eann_norm_grad(const eann_model *m, const eann_norm *nm, const double *gtheta, double *gphi) {
    const int D = m->ndensity;
    if (gtheta != gphi) memcpy(gphi, gtheta, sizeof(double) * m->ntheta);
    FOR_FIRST_LAYERS(m, L, s) {
        const double *mu = nm->mean + (size_t)s * D, *sd = nm->std + (size_t)s * D;
        for (int o = 0; o < L->nout; o++) {
            double gb = gtheta[L->b + o];
            const double *gw = gtheta + L->w + (size_t)o * D;
            double *gp = gphi + L->w + (size_t)o * D;
            for (int c = 0; c < D; c++)
                gp[c] = gw[c] / sd[c] - gb * (mu[c] / sd[c]);
        }
    }
}

int eann_norm_to_comments(eann_model *m, const eann_norm *nm, const char *prefix) {
    if (!m || !nm || nm->nspecies != m->spec.nspecies || nm->ndensity != m->ndensity)
        return EANN_EINVAL;
    eann_text b = {NULL, 0, 0, 0};
    char num[64];
    if (prefix) eann_text_printf(&b, "%s", prefix);
    eann_text_printf(
        &b,
        "# descriptor normalisation (folded into linear0 of every net): rho_mean and rho_std\n"
        "# per centre species, lines '# rho_mean|rho_std SPECIES FIRST v ...' (6 values a line)\n");
    for (int which = 0; which < 2; which++)
        for (int s = 0; s < nm->nspecies; s++)
            for (int c0 = 0; c0 < nm->ndensity; c0 += 6) {
                snprintf(num, sizeof num, "# %s %s %d", which ? "rho_std" : "rho_mean",
                         m->spec.species[s], c0);
                eann_text_printf(&b, "%s", num);
                for (int c = c0; c < c0 + 6 && c < nm->ndensity; c++) {
                    const double *a = which ? nm->std : nm->mean;
                    snprintf(num, sizeof num, " %.17g", a[(size_t)s * nm->ndensity + c]);
                    eann_text_printf(&b, "%s", num);
                }
                eann_text_printf(&b, "\n");
            }
    if (b.oom) {
        free(b.s);
        return EANN_ENOMEM;
    }
    free(m->comments);
    m->comments = b.s;
    return EANN_OK;
}

int eann_norm_from_comments(const eann_model *m, eann_norm *out) {
    if (!m || !out) return EANN_EINVAL;
    out->mean = out->std = NULL;
    if (!m->comments) return EANN_EFORMAT;
    int rc = norm_alloc(m, out);
    if (rc) return rc;
    const int D = m->ndensity;
    size_t n = (size_t)m->spec.nspecies * D;
    char *seen = calloc(2 * n, 1);
    if (!seen) {
        eann_norm_free(out);
        return EANN_ENOMEM;
    }
    const char *p = m->comments;
    while (*p) {
        const char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        char line[1024];
        size_t len = (size_t)(e - p) < sizeof line - 1 ? (size_t)(e - p) : sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p = *e ? e + 1 : e;
        char what[16], sp[8];
        int c0, used;
        if (sscanf(line, "# %15s %7s %d%n", what, sp, &c0, &used) != 3) continue;
        int which = !strcmp(what, "rho_mean") ? 0 : !strcmp(what, "rho_std") ? 1 : -1;
        if (which < 0) continue;
        int s = eann_species_index(m, sp);
        if (s < 0 || c0 < 0 || c0 >= D) {
            rc = EANN_EFORMAT;
            break;
        }
        const char *q = line + used;
        for (int c = c0; c < D; c++) {
            char *end;
            while (*q == ' ')
                q++;
            if (!*q) break;
            double v = strtod(q, &end);
            if (end == q || !isfinite(v)) {
                rc = EANN_EFORMAT;
                break;
            }
            q = end;
            (which ? out->std : out->mean)[(size_t)s * D + c] = v;
            seen[which * n + (size_t)s * D + c] = 1;
        }
        if (rc) break;
    }
    for (size_t q = 0; q < 2 * n && !rc; q++)
        if (!seen[q]) rc = EANN_EFORMAT;
    for (size_t q = 0; q < n && !rc; q++)
        if (!(out->std[q] > 0)) rc = EANN_EFORMAT;
    free(seen);
    if (rc) eann_norm_free(out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* initialisation and output scale                                           */
/* ------------------------------------------------------------------------ */

void eann_train_opts_default(eann_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->optimizer = EANN_OPT_ADAM;
    o->epochs = 100;
    o->batch = 32;
    o->lr = 1e-3;
    o->lr_decay = 0.5;
    o->patience = 20;
    o->lr_min = 1e-5;
    o->lbfgs_m = 10;
    o->charge_weight = 0;
    o->diverge_factor = 100;
    o->seed = 1;
}

/* Multiply the output layer of net t (all species; rows r0..r1-1 of its
 * weight and bias) by f in phi. */
static void scale_output(const eann_model *m, double *phi, int t, int r0, int r1, double f) {
    int H = m->spec.net[t].nhidden;
    for (int s = 0; s < m->spec.nspecies; s++) {
        const eann_layer *L = eann_layer_of(m, t, s, H);
        for (int o = r0; o < r1 && o < L->nout; o++) {
            for (int c = 0; c < L->nin; c++)
                phi[L->w + (size_t)o * L->nin + c] *= f;
            phi[L->b + o] *= f;
        }
    }
}

static double rms(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i] * x[i];
    return n ? sqrt(s / n) : 0;
}

/* Output scale (so that training starts with outputs of the size of the
 * labels), using up to 256 training samples:
 *   dipole: the charge net's output layer is scaled so that the RMS of the
 *     predicted dipoles equals the RMS of the labels;
 *   tdm: rows q1, q2 so that RMS(u + v) = RMS(labels), row w so that the
 *     cross term W (u x v) starts at 0.1 of it;
 *   polarizability: net 0 so that the traceless part of Pm + Pm^T matches
 *     the RMS of the labels' traceless part; net 1 so that sum h h^T starts
 *     at 0.1 of it; net 2's output layer (bias per species b, weights
 *     scale k) fitted by least squares so that E_2 = k E_2^0 + b N matches
 *     the isotropic remainder tr(alpha_ref - Pm - Pm^T - hh^T)/3. */
/* The outputs output_scale looks at, for n samples at the current theta:
 *   ref [n][nc] labels (polarizability: traceless part),
 *   p1 [n][nc]  dipole | u + v | traceless part of Pm + Pm^T,
 *   p2 [n][nc]  - | W (u x v) | sum h h^T,
 *   p3 [n][2]   polarizability: E_2 and the isotropic remainder
 *               tr(alpha_ref - Pm - Pm^T - hh^T)/3. */
static int scale_inputs(const eann_model *m, eann_trainws *tw, const eann_sample *smp, int n,
                        double *ref, double *p1, double *p2, double *p3) {
    eann_work *w = tw->w;
    for (int f = 0; f < n; f++) {
        int rc = eann_setup(m, w, smp[f].natoms, smp[f].species, smp[f].pos);
        if (rc) return rc;
        eann_descriptor_forward(m, w);
        if (m->spec.kind == EANN_DIPOLE) {
            eann_net_forward(m, w, 0);
            eann_dipole_parts(m, w, p1 + 3 * f, NULL);
            for (int a = 0; a < 3; a++)
                ref[3 * f + a] = smp[f].ref[a];
        } else if (m->spec.kind == EANN_TDM) {
            double u[3], v[3], W, c[3];
            eann_net_forward(m, w, 0);
            eann_tdm_parts(m, w, u, v, &W);
            eann_cross(u, v, c);
            for (int a = 0; a < 3; a++) {
                p1[3 * f + a] = u[a] + v[a];
                p2[3 * f + a] = W * c[a];
                ref[3 * f + a] = smp[f].ref[a];
            }
        } else {
            double Ps[9], Hh[9], E2;
            eann_pol_parts(m, w, tw->gpos, tw->hpos, Ps, Hh, &E2);
            double tp = (Ps[0] + Ps[4] + Ps[8]) / 3,
                   tr = (smp[f].ref[0] + smp[f].ref[4] + smp[f].ref[8]) / 3;
            for (int q = 0; q < 9; q++) {
                int dg = q % 4 == 0;
                p1[9 * f + q] = Ps[q] - (dg ? tp : 0); /* traceless parts */
                ref[9 * f + q] = smp[f].ref[q] - (dg ? tr : 0);
                p2[9 * f + q] = Hh[q];
            }
            p3[2 * f] = E2;
            p3[2 * f + 1] = tr - tp - (Hh[0] + Hh[4] + Hh[8]) / 3; /* isotropic remainder */
        }
    }
    return EANN_OK;
}

/* Polarizability, net 2: least squares for E_2 = k e_f + b N_f against the
 * remainder r_f (p3 of scale_inputs), then output layer weights *= k, bias = b. */
static void fit_trace_net(const eann_model *m, double *phi, const eann_sample *smp, int n,
                          const double *p3) {
    double see = 0, sen = 0, snn = 0, ser = 0, snr = 0, srr = 0, sr = 0;
    for (int f = 0; f < n; f++) {
        double e = p3[2 * f], r = p3[2 * f + 1], N = smp[f].natoms;
        see += e * e;
        sen += e * N;
        snn += N * N;
        ser += e * r;
        snr += N * r;
        srr += r * r;
        sr += r;
    }
    double det = see * snn - sen * sen, k, b;
    if (det > 1e-12 * see * snn) {
        k = (ser * snn - snr * sen) / det;
        b = (see * snr - sen * ser) / det;
    } else {
        k = 0;
        b = snn > 0 ? snr / snn : 0;
    }
    /* keep some variation in net 2 (a zero output layer has zero gradients below it) */
    double re = sqrt(see / n), rres = sqrt(fmax(srr / n - (sr / n) * (sr / n), 0));
    if (re > 0 && fabs(k) * re < 0.01 * rres) k = (k < 0 ? -0.01 : 0.01) * rres / re;
    if (re > 0 && k == 0) k = 0.01;
    int H = m->spec.net[2].nhidden;
    for (int s = 0; s < m->spec.nspecies; s++) {
        const eann_layer *L = eann_layer_of(m, 2, s, H);
        for (int c = 0; c < L->nin; c++)
            phi[L->w + c] *= k;
        phi[L->b] = b;
    }
}

static int output_scale(eann_model *m, const eann_norm *nm, double *phi, const eann_sample *smp,
                        int n) {
    if (n > 256) n = 256;
    if (n < 1) return EANN_OK;
    eann_trainws *tw;
    int rc = eann_trainws_new(m, max_atoms(smp, n), &tw);
    if (rc) return rc;
    const int kind = m->spec.kind, nc = eann_kind_outputs(kind);
    double *ref = calloc((size_t)n * 9, sizeof(double)),
           *p1 = calloc((size_t)n * 9, sizeof(double));
    double *p2 = calloc((size_t)n * 9, sizeof(double)), *p3 = calloc((size_t)n * 2, sizeof(double));
    if (!ref || !p1 || !p2 || !p3) {
        rc = EANN_ENOMEM;
        goto done;
    }
    /* pass 0 scales the output layers; the polarizability needs a pass 1
     * (E_2 and the remainder after nets 0 and 1 are scaled) */
    for (int pass = 0; pass < 2; pass++) {
        eann_norm_fold(m, nm, phi, m->theta);
        eann_model_sync(m);
        rc = scale_inputs(m, tw, smp, n, ref, p1, p2, p3);
        if (rc) goto done;
        double rr = rms(ref, n * nc), r1 = rms(p1, n * nc), r2 = rms(p2, n * nc);
        if (pass == 1) break;
        if (kind == EANN_DIPOLE) {
            if (r1 > 0 && rr > 0) scale_output(m, phi, 0, 0, 1, rr / r1);
            break;
        } else if (kind == EANN_TDM) {
            double s = r1 > 0 && rr > 0 ? rr / r1 : 1.0;
            scale_output(m, phi, 0, 0, 2, s);
            if (r2 > 0 && rr > 0) scale_output(m, phi, 0, 2, 3, 0.1 * rr / (r2 * s * s));
            break;
        } else {
            double s0 = r1 > 0 && rr > 0 ? rr / r1 : 1.0;
            scale_output(m, phi, 0, 0, 1, s0);
            if (r2 > 0 && rr > 0) scale_output(m, phi, 1, 0, 1, sqrt(0.1 * rr / r2));
            /* net 2: zero bias, then pass 1 recomputes E2^0 and the remainder */
            for (int s = 0; s < m->spec.nspecies; s++) {
                const eann_layer *L = eann_layer_of(m, 2, s, m->spec.net[2].nhidden);
                phi[L->b] = 0;
            }
        }
    }
    if (kind == EANN_POLARIZABILITY) fit_trace_net(m, phi, smp, n, p3);
    eann_norm_fold(m, nm, phi, m->theta);
    eann_model_sync(m);
done:
    free(ref);
    free(p1);
    free(p2);
    free(p3);
    eann_trainws_free(tw);
    return rc;
}

int eann_train_init(eann_model *m, const eann_sample *train, int ntrain, const eann_train_opts *o,
                    eann_norm *nm, double *phi) {
    if (!m || !o || !nm || !phi || ntrain < 1 || !train) return EANN_EINVAL;
    nm->mean = nm->std = NULL;
    eann_model_init_random(m, o->seed);
    /* fixed radial grid: rs_k = k rc / K, inta = 1 / (2 spacing^2) */
    const int S = m->spec.nspecies, K = m->spec.nwave;
    const double rc = m->spec.cutoff, sp = rc / K;
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            m->theta[m->off_rs + (size_t)s * K + k] = k * sp;
            m->theta[m->off_inta + (size_t)s * K + k] = 0.5 / (sp * sp);
        }
    eann_model_sync(m);
    int rc2 = eann_norm_compute(m, train, ntrain, nm);
    if (rc2) return rc2;
    /* the random weights are taken as normalised-space weights phi */
    memcpy(phi, m->theta, sizeof(double) * m->ntheta);
    rc2 = output_scale(m, nm, phi, train, ntrain);
    if (rc2) eann_norm_free(nm);
    return rc2;
}

/* ------------------------------------------------------------------------ */
/* optimisers                                                                */
/* ------------------------------------------------------------------------ */

/* Mean loss, sum of squared errors and gradient (in phi, rs/inta zeroed)
 * over samples idx[0..n) (rs, inta entries zeroed unless train_radial).
 * The molecules go through eann_batch_loss in chunks of bw->cap_mol: the
 * bits of eann_sample_loss on each in turn, with l and s summed in order. */
static int batch_grad(eann_model *m, const eann_norm *nm, eann_batchws *bw, const eann_sample *smp,
                      const int *idx, int n, double cw, int train_radial, double *gth, double *gphi,
                      double *loss, double *sq) {
    double L = 0, SQ = 0;
    memset(gth, 0, sizeof(double) * m->ntheta);
    for (int q0 = 0; q0 < n; q0 += bw->cap_mol) {
        const int nb = n - q0 < bw->cap_mol ? n - q0 : bw->cap_mol;
        const int *ix = idx ? idx + q0 : NULL;
        int rc = eann_batch_loss(m, bw, ix ? smp : smp + q0, ix, nb, cw, 1.0 / n, gth, bw->pred,
                                 bw->sq, bw->l);
        if (rc) return rc;
        for (int q = 0; q < nb; q++) {
            L += bw->l[q];
            SQ += bw->sq[q];
        }
    }
    eann_norm_grad(m, nm, gth, gphi);
    if (!train_radial) {
        size_t SK = (size_t)m->spec.nspecies * m->spec.nwave;
        memset(gphi + m->off_rs, 0, sizeof(double) * SK);
        memset(gphi + m->off_inta, 0, sizeof(double) * SK);
    }
    *loss = L / (n ? n : 1);
    *sq = SQ;
    return EANN_OK;
}

/* eann_evaluate through the batch path (the same bits: losses summed in
 * order) */
static int batch_evaluate(const eann_model *m, eann_batchws *bw, const eann_sample *smp, int n,
                          double cw, double *mean_loss, double *rmse) {
    double L = 0, SQ = 0;
    const int nc = eann_kind_outputs(m->spec.kind);
    for (int q0 = 0; q0 < n; q0 += bw->cap_mol) {
        const int nb = n - q0 < bw->cap_mol ? n - q0 : bw->cap_mol;
        int rc = eann_batch_loss(m, bw, smp + q0, NULL, nb, cw, 0, NULL, bw->pred, bw->sq, bw->l);
        if (rc) return rc;
        for (int q = 0; q < nb; q++) {
            L += bw->l[q];
            SQ += bw->sq[q];
        }
    }
    if (mean_loss) *mean_loss = n ? L / n : 0;
    if (rmse) *rmse = n ? sqrt(SQ / ((double)n * nc)) : 0;
    return EANN_OK;
}

static void set_params(eann_model *m, const eann_norm *nm, const double *phi) {
    eann_norm_fold(m, nm, phi, m->theta);
    eann_model_sync(m);
}

/* Everything a training run carries from one epoch to the next (saved by
 * eann_trainer_save, so that a resumed run continues bit for bit), and
 * scratch. */
struct eann_trainer {
    eann_model *m;
    const eann_norm *nm;
    double *phi;                      /* [P] the caller's normalised parameters */
    const eann_sample *train, *valid;
    int ntrain, nvalid, nc;
    eann_train_opts o;
    eann_trainws *tw;
    eann_batchws *bw;                 /* the mini-batch gradients (batch_grad) */
    size_t P;
    int hist;                         /* L-BFGS history length */
    /* state */
    int epoch;                        /* epochs completed */
    int done;                         /* no further epoch: epochs reached, early stop, line
                                         search failed or diverged */
    int diverged;                     /* epoch at which divergence was seen (0: none) */
    long ng;                          /* molecule gradients so far */
    uint64_t rng;                     /* shuffling PRNG state (Adam) */
    int *idx;                         /* [ntrain] frame order, reshuffled in place every epoch */
    double lr, bestval, b1t, b2t;     /* learning rate, best monitored loss, Adam beta^t */
    double start_rmse;                /* training RMSE before the first epoch */
    double best_rmse;                 /* training RMSE of the best epoch */
    int best_epoch, bad;              /* best epoch (0: the start), epochs since it */
    double *m1, *m2, *best;           /* [P] Adam moments, best phi */
    int nh, hstart;                   /* L-BFGS: pairs stored, oldest slot */
    double f, fsq, step;              /* L-BFGS: loss and squared error at phi, last step */
    double *gphi, *sh, *yh, *rho_h;   /* [P], [hist][P], [hist][P], [hist] */
    /* scratch */
    double *gth, *trial, *g2, *dir, *al_h;
};

void eann_trainer_free(eann_trainer *tr) {
    if (!tr) return;
    eann_trainws_free(tr->tw);
    eann_batchws_free(tr->bw);
    double *arr[] = {tr->m1,  tr->m2,   tr->best, tr->gphi, tr->sh,  tr->yh, tr->rho_h,
                     tr->gth, tr->trial, tr->g2,  tr->dir,  tr->al_h};
    for (size_t q = 0; q < sizeof arr / sizeof arr[0]; q++)
        free(arr[q]);
    free(tr->idx);
    free(tr);
}

int eann_trainer_new(eann_model *m, const eann_norm *nm, double *phi, const eann_sample *train,
                     int ntrain, const eann_sample *valid, int nvalid, const eann_train_opts *o,
                     eann_trainer **out) {
    if (!out) return EANN_EINVAL;
    *out = NULL;
    if (!m || !nm || !phi || !o || ntrain < 1 || !train || nvalid < 0 || (nvalid && !valid))
        return EANN_EINVAL;
    eann_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return EANN_ENOMEM;
    tr->m = m;
    tr->nm = nm;
    tr->phi = phi;
    tr->train = train;
    tr->valid = valid;
    tr->ntrain = ntrain;
    tr->nvalid = nvalid;
    tr->nc = eann_kind_outputs(m->spec.kind);
    tr->o = *o;
    tr->P = m->ntheta;
    tr->hist = o->lbfgs_m > 0 ? o->lbfgs_m : 10;
    int mx = max_atoms(train, ntrain), mv = max_atoms(valid, nvalid);
    int rc = eann_trainws_new(m, mx > mv ? mx : mv, &tr->tw);
    if (rc) {
        free(tr);
        return rc;
    }
    /* molecules per batch pass: the mini-batch, but about EANN_BATCH_ROWS
     * atoms at most, so that a pass's network caches stay in the L2 cache
     * (NMA, 12 atoms, on the 2-core test machine: 48-96 atoms 7-9 % faster
     * than one molecule at a time, all 32 molecules of a batch 0-5 % slower) */
    const int ma = mx > mv ? mx : mv; /* (the validation pass uses it too) */
    int nmol = o->batch > 0 ? o->batch : 32, lim = EANN_BATCH_ROWS / ma;
    if (nmol > lim) nmol = lim;
    if (nmol < 1) nmol = 1;
    rc = eann_batchws_new(m, ma, nmol, &tr->bw);
    if (rc) {
        eann_trainer_free(tr);
        return rc;
    }
    const size_t P = tr->P, PH = P * (size_t)tr->hist;
    int fail = PH / (size_t)tr->hist != P;
    tr->m1 = dalloc(P, &fail);
    tr->m2 = dalloc(P, &fail);
    tr->best = dalloc(P, &fail);
    tr->gphi = dalloc(P, &fail);
    tr->sh = fail ? NULL : dalloc(PH, &fail);
    tr->yh = fail ? NULL : dalloc(PH, &fail);
    tr->rho_h = dalloc((size_t)tr->hist, &fail);
    tr->al_h = dalloc((size_t)tr->hist, &fail);
    tr->gth = dalloc(P, &fail);
    tr->trial = dalloc(P, &fail);
    tr->g2 = dalloc(P, &fail);
    tr->dir = dalloc(P, &fail);
    tr->idx = calloc((size_t)ntrain, sizeof(int));
    if (fail || !tr->idx) {
        eann_trainer_free(tr);
        return EANN_ENOMEM;
    }
    for (int i = 0; i < ntrain; i++)
        tr->idx[i] = i;
    tr->rng = o->seed ^ 0x5DEECE66DULL;
    tr->lr = o->lr > 0 ? o->lr : 1e-3;
    tr->bestval = INFINITY;
    tr->b1t = tr->b2t = 1;
    memcpy(tr->best, phi, sizeof(double) * P);
    set_params(m, nm, phi);
    /* L-BFGS starts from the full-batch gradient at phi. The training RMSE
     * at the start is kept for the divergence test (a loss far above it):
     * L-BFGS has it from that gradient, Adam from its first mini-batch
     * (evaluated before the first step; adam_epoch), so no extra pass. */
    tr->start_rmse = NAN;
    if (o->optimizer == EANN_OPT_LBFGS) {
        rc = batch_grad(m, nm, tr->bw, train, NULL, ntrain, o->charge_weight, o->train_radial,
                        tr->gth, tr->gphi, &tr->f, &tr->fsq);
        tr->ng += ntrain;
        tr->start_rmse = sqrt(tr->fsq / ((double)ntrain * tr->nc));
    }
    tr->best_rmse = INFINITY;
    if (rc) {
        eann_trainer_free(tr);
        return rc;
    }
    *out = tr;
    return EANN_OK;
}

/* L-BFGS two-loop recursion (Nocedal & Wright 2006, Alg. 7.4): dir = -H g
 * with the stored pairs (s, y), oldest first in the ring buffer. */
static void lbfgs_direction(eann_trainer *tr) {
    const size_t P = tr->P;
    const int hist = tr->hist;
    double *dir = tr->dir, *sh = tr->sh, *yh = tr->yh;
    for (size_t q = 0; q < P; q++)
        dir[q] = -tr->gphi[q];
    for (int k = tr->nh - 1; k >= 0; k--) {
        int j = (tr->hstart + k) % hist;
        double a = 0;
        for (size_t q = 0; q < P; q++)
            a += sh[j * P + q] * dir[q];
        a *= tr->rho_h[j];
        tr->al_h[j] = a;
        for (size_t q = 0; q < P; q++)
            dir[q] -= a * yh[j * P + q];
    }
    double gam = 1.0; /* initial Hessian gamma I, gamma = s.y / y.y (Eq. 7.20) */
    if (tr->nh) {
        int j = (tr->hstart + tr->nh - 1) % hist;
        double sy = 0, yy = 0;
        for (size_t q = 0; q < P; q++) {
            sy += sh[j * P + q] * yh[j * P + q];
            yy += yh[j * P + q] * yh[j * P + q];
        }
        gam = sy / yy;
    }
    for (size_t q = 0; q < P; q++)
        dir[q] *= gam;
    for (int k = 0; k < tr->nh; k++) {
        int j = (tr->hstart + k) % hist;
        double bb = 0;
        for (size_t q = 0; q < P; q++)
            bb += yh[j * P + q] * dir[q];
        bb *= tr->rho_h[j];
        for (size_t q = 0; q < P; q++)
            dir[q] += sh[j * P + q] * (tr->al_h[j] - bb);
    }
}

/* One L-BFGS iteration on the full batch: direction, backtracking (Armijo)
 * line search, history update. *ok = 0 if the line search failed (phi
 * unchanged). *trsq = squared error at the iteration's start. */
static int lbfgs_epoch(eann_trainer *tr, double *trsq, int *ok) {
    eann_model *m = tr->m;
    const size_t P = tr->P;
    double *phi = tr->phi, *dir = tr->dir, *trial = tr->trial;
    *trsq = tr->fsq;
    lbfgs_direction(tr);
    double gd = 0, dn = 0;
    for (size_t q = 0; q < P; q++) {
        gd += tr->gphi[q] * dir[q];
        dn += dir[q] * dir[q];
    }
    if (!(gd < 0) || tr->nh == 0) {
        /* first step or not a descent direction: steepest descent, |step| = lr */
        tr->nh = 0;
        dn = 0;
        for (size_t q = 0; q < P; q++) {
            dir[q] = -tr->gphi[q];
            dn += dir[q] * dir[q];
        }
        gd = -dn;
        tr->step = dn > 0 ? tr->lr / sqrt(dn) : 0;
    } else {
        tr->step = 1.0;
    }
    double fn = 0, fnsq = 0;
    *ok = 0;
    for (int ls = 0; ls < 40 && dn > 0; ls++) {
        for (size_t q = 0; q < P; q++)
            trial[q] = phi[q] + tr->step * dir[q];
        set_params(m, tr->nm, trial);
        int rc = batch_grad(m, tr->nm, tr->bw, tr->train, NULL, tr->ntrain, tr->o.charge_weight,
                            tr->o.train_radial, tr->gth, tr->g2, &fn, &fnsq);
        if (rc) return rc;
        tr->ng += tr->ntrain;
        if (isfinite(fn) && fn <= tr->f + 1e-4 * tr->step * gd) {
            *ok = 1;
            break;
        }
        tr->step *= 0.5;
    }
    if (!*ok) {
        set_params(m, tr->nm, phi);
        return EANN_OK;
    }
    double sy = 0;
    for (size_t q = 0; q < P; q++)
        sy += (trial[q] - phi[q]) * (tr->g2[q] - tr->gphi[q]);
    if (sy > 1e-300) {
        /* ring buffer: slot of the newest pair; drop the oldest when full */
        int j = (tr->hstart + tr->nh) % tr->hist;
        if (tr->nh == tr->hist)
            tr->hstart = (tr->hstart + 1) % tr->hist;
        else
            tr->nh++;
        for (size_t q = 0; q < P; q++) {
            tr->sh[j * P + q] = trial[q] - phi[q];
            tr->yh[j * P + q] = tr->g2[q] - tr->gphi[q];
        }
        tr->rho_h[j] = 1.0 / sy;
    }
    memcpy(phi, trial, sizeof(double) * P);
    memcpy(tr->gphi, tr->g2, sizeof(double) * P);
    tr->f = fn;
    tr->fsq = fnsq;
    return EANN_OK;
}

/* One Adam epoch (Kingma & Ba 2015, Alg. 1): Fisher-Yates shuffle of the
 * frame order with our PRNG, then one step per mini-batch. *trsq = sum of
 * the squared errors, each at the parameters its batch was evaluated with. */
static int adam_epoch(eann_trainer *tr, double *trsq) {
    const double B1 = 0.9, B2 = 0.999, EPS = 1e-8;
    const size_t P = tr->P;
    double *phi = tr->phi;
    int *idx = tr->idx;
    *trsq = 0;
    for (int i = tr->ntrain - 1; i > 0; i--) {
        int j = (int)(eann_rand_u64(&tr->rng) % (uint64_t)(i + 1));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    int B = tr->o.batch > 0 ? tr->o.batch : 32;
    for (int b0 = 0; b0 < tr->ntrain; b0 += B) {
        int nb = tr->ntrain - b0 < B ? tr->ntrain - b0 : B;
        double l, sq;
        int rc = batch_grad(tr->m, tr->nm, tr->bw, tr->train, idx + b0, nb, tr->o.charge_weight,
                            tr->o.train_radial, tr->gth, tr->gphi, &l, &sq);
        if (rc) return rc;
        if (tr->epoch == 0 && b0 == 0) tr->start_rmse = sqrt(sq / ((double)nb * tr->nc));
        tr->ng += nb;
        *trsq += sq;
        tr->b1t *= B1;
        tr->b2t *= B2;
        /* m1 = B1 m1 + (1 - B1) g, m2 = B2 m2 + (1 - B2) g^2,
         * phi -= lr (m1 / (1 - B1^t)) / (sqrt(m2 / (1 - B2^t)) + EPS) */
        eann_adam_step(tr->tw->w->simd, P, tr->gphi, tr->m1, tr->m2, phi, B1, B2, 1 - tr->b1t,
                       1 - tr->b2t, tr->lr, EPS);
        set_params(tr->m, tr->nm, phi);
    }
    return EANN_OK;
}

/* After an epoch: validation, best model, divergence, learning-rate decay
 * on plateau (Adam) and early stopping. Fills p. */
static int end_of_epoch(eann_trainer *tr, double trsq, eann_progress *p) {
    const eann_train_opts *o = &tr->o;
    p->epoch = tr->epoch;
    p->epochs = o->epochs;
    p->train_rmse = sqrt(trsq / ((double)tr->ntrain * tr->nc));
    p->valid_rmse = -1;
    p->lr = o->optimizer == EANN_OPT_LBFGS ? tr->step : tr->lr;
    double monitor;
    if (tr->nvalid) {
        double vl, vr;
        int rc = batch_evaluate(tr->m, tr->bw, tr->valid, tr->nvalid, o->charge_weight, &vl, &vr);
        if (rc) return rc;
        p->valid_rmse = vr;
        monitor = vl;
    } else {
        monitor = o->optimizer == EANN_OPT_LBFGS ? tr->f : trsq;
    }
    p->improved = monitor < tr->bestval;
    if (p->improved) {
        tr->bestval = monitor;
        tr->best_epoch = tr->epoch;
        tr->best_rmse = p->train_rmse;
        memcpy(tr->best, tr->phi, sizeof(double) * tr->P);
        tr->bad = 0;
    } else {
        tr->bad++;
    }
    /* divergence: a non-finite loss, or one far above the start */
    double lim = o->diverge_factor > 0 ? o->diverge_factor * tr->start_rmse : INFINITY;
    if (!isfinite(p->train_rmse) || p->train_rmse > lim ||
        (tr->nvalid && !isfinite(p->valid_rmse))) {
        tr->diverged = tr->epoch;
        tr->done = 1;
    }
    if (o->optimizer == EANN_OPT_ADAM) {
        if (tr->bad > o->patience) {
            tr->lr *= o->lr_decay;
            tr->bad = 0;
            if (tr->lr < o->lr_min) tr->done = 1;
        }
    } else if (tr->bad > o->patience) {
        tr->done = 1;
    }
    if (tr->epoch >= o->epochs) tr->done = 1;
    p->ngrad = tr->ng;
    p->diverged = tr->diverged;
    p->best_epoch = tr->best_epoch;
    p->start_rmse = tr->start_rmse;
    return EANN_OK;
}

int eann_trainer_epoch(eann_trainer *tr, eann_progress *p) {
    if (!tr || !p) return EANN_EINVAL;
    memset(p, 0, sizeof *p);
    if (tr->done || tr->epoch >= tr->o.epochs) {
        tr->done = 1;
        return EANN_OK;
    }
    double trsq = 0;
    int rc;
    if (tr->o.optimizer == EANN_OPT_LBFGS) {
        int ok;
        rc = lbfgs_epoch(tr, &trsq, &ok);
        if (rc) return rc;
        if (!ok) { /* no step left: stop, this epoch does not count */
            tr->done = 1;
            return EANN_OK;
        }
    } else {
        rc = adam_epoch(tr, &trsq);
        if (rc) return rc;
    }
    tr->epoch++;
    return end_of_epoch(tr, trsq, p);
}

int eann_trainer_done(const eann_trainer *tr) { return !tr || tr->done; }

void eann_trainer_finish(eann_trainer *tr, int *epochs_run, long *ngrad) {
    memcpy(tr->phi, tr->best, sizeof(double) * tr->P);
    set_params(tr->m, tr->nm, tr->phi);
    if (epochs_run) *epochs_run = tr->epoch;
    if (ngrad) *ngrad = tr->ng;
}

int eann_trainer_best(const eann_trainer *tr, int *epoch, double *train_rmse,
                      double *start_rmse) {
    if (!tr) return 0;
    if (epoch) *epoch = tr->best_epoch;
    if (train_rmse) *train_rmse = tr->best_rmse;
    if (start_rmse) *start_rmse = tr->start_rmse;
    return tr->best_epoch > 0 && isfinite(tr->bestval) && isfinite(tr->best_rmse) &&
           tr->best_rmse <= tr->start_rmse;
}

int eann_train_run(eann_model *m, const eann_norm *nm, double *phi, const eann_sample *train,
                   int ntrain, const eann_sample *valid, int nvalid, const eann_train_opts *o,
                   int *epochs_run, long *ngrad) {
    eann_trainer *tr;
    int rc = eann_trainer_new(m, nm, phi, train, ntrain, valid, nvalid, o, &tr);
    if (rc) return rc;
    while (!eann_trainer_done(tr)) {
        eann_progress p;
        rc = eann_trainer_epoch(tr, &p);
        if (rc) break;
        if (p.epoch == 0) break; /* no epoch ran */
        if (o->progress && o->progress(o->ctx, &p)) break;
    }
    if (!rc) eann_trainer_finish(tr, epochs_run, ngrad);
    eann_trainer_free(tr);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* checkpoint: the trainer's state as text                                   */
/* ------------------------------------------------------------------------ */

/* FNV-1a over the bytes of the data a run was started with (atom counts,
 * species, positions, labels, charges of the training and validation
 * frames): a checkpoint is only loaded into a run on the same data. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001B3ULL;
    return h;
}
static uint64_t data_hash(const eann_trainer *tr) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (int set = 0; set < 2; set++) {
        const eann_sample *smp = set ? tr->valid : tr->train;
        int n = set ? tr->nvalid : tr->ntrain;
        for (int f = 0; f < n; f++) {
            const eann_sample *s = &smp[f];
            h = fnv(h, &s->natoms, sizeof s->natoms);
            h = fnv(h, s->species, sizeof(int) * (size_t)s->natoms);
            h = fnv(h, s->pos, sizeof(double) * 3 * (size_t)s->natoms);
            h = fnv(h, s->ref, sizeof s->ref);
            h = fnv(h, &s->charge, sizeof s->charge);
        }
    }
    return h;
}

/* The options a resumed run must share with the saved one, as text (every
 * real as a hex float); the number of epochs may differ. */
static void options_text(const eann_trainer *tr, char *s, size_t cap) {
    const eann_train_opts *o = &tr->o;
    snprintf(s, cap, "%d %d %d %d %d %llu %a %a %a %a %a %llx %zu %d %d", o->optimizer, o->batch,
             o->patience, tr->hist, o->train_radial, (unsigned long long)o->seed, o->lr,
             o->lr_decay, o->lr_min, o->charge_weight, o->diverge_factor,
             (unsigned long long)data_hash(tr), tr->P, tr->ntrain, tr->nvalid);
}

static void put_array(eann_text *b, const char *name, const double *x, size_t n) {
    eann_text_printf(b, "%s %zu\n", name, n);
    for (size_t q = 0; q < n; q++) eann_text_printf(b, "%a\n", x[q]);
}

/* The arrays of a state: name, pointer, length (the optimiser's own only). */
typedef struct {
    const char *name;
    double *x;
    size_t n;
} state_array;

static int state_arrays(const eann_trainer *tr, const eann_norm *nm, state_array *a) {
    const size_t P = tr->P, H = (size_t)tr->hist, SD = (size_t)nm->nspecies * nm->ndensity;
    int k = 0;
    a[k++] = (state_array){"phi", tr->phi, P};
    a[k++] = (state_array){"best", tr->best, P};
    a[k++] = (state_array){"rho_mean", nm->mean, SD};
    a[k++] = (state_array){"rho_std", nm->std, SD};
    if (tr->o.optimizer == EANN_OPT_LBFGS) {
        a[k++] = (state_array){"gphi", tr->gphi, P};
        a[k++] = (state_array){"lbfgs_s", tr->sh, P * H};
        a[k++] = (state_array){"lbfgs_y", tr->yh, P * H};
        a[k++] = (state_array){"lbfgs_rho", tr->rho_h, H};
    } else {
        a[k++] = (state_array){"adam_m", tr->m1, P};
        a[k++] = (state_array){"adam_v", tr->m2, P};
    }
    return k;
}

int eann_trainer_save(const eann_trainer *tr, char **buf, size_t *len) {
    if (!tr || !buf || !len) return EANN_EINVAL;
    *buf = NULL;
    *len = 0;
    eann_text b = {NULL, 0, 0, 0};
    char opts[512];
    options_text(tr, opts, sizeof opts);
    eann_text_printf(&b, "EANN_TRAIN_STATE_V1\noptions %s\n", opts);
    eann_text_printf(&b, "epoch %d stopped %d diverged %d ngrad %ld rng %llx\n", tr->epoch,
                     tr->done && tr->epoch < tr->o.epochs, tr->diverged, tr->ng,
                     (unsigned long long)tr->rng);
    eann_text_printf(&b, "lr %a bestval %a b1t %a b2t %a start %a best_rmse %a\n", tr->lr,
                     tr->bestval, tr->b1t, tr->b2t, tr->start_rmse, tr->best_rmse);
    eann_text_printf(&b, "best_epoch %d bad %d nh %d hstart %d f %a fsq %a step %a\n",
                     tr->best_epoch, tr->bad, tr->nh, tr->hstart, tr->f, tr->fsq, tr->step);
    eann_text_printf(&b, "idx %d\n", tr->ntrain);
    for (int i = 0; i < tr->ntrain; i++) eann_text_printf(&b, "%d\n", tr->idx[i]);
    state_array a[8];
    int na = state_arrays(tr, tr->nm, a);
    for (int k = 0; k < na; k++) put_array(&b, a[k].name, a[k].x, a[k].n);
    eann_text_printf(&b, "end\n");
    if (b.oom) {
        free(b.s);
        return EANN_ENOMEM;
    }
    *buf = b.s;
    *len = b.len;
    return EANN_OK;
}

/* A reader of whitespace-separated tokens (lines do not matter). */
typedef struct {
    const char *p, *e;
    char tok[512];
} sreader;

static const char *next_tok(sreader *r) {
    while (r->p < r->e && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
    size_t n = 0;
    while (r->p < r->e && !(*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t')) {
        if (n + 1 < sizeof r->tok) r->tok[n++] = *r->p;
        r->p++;
    }
    r->tok[n] = '\0';
    return n ? r->tok : NULL;
}
/* "key" then a number (real: any strtod text incl. inf; integer: base 10 or 16) */
static int key_real(sreader *r, const char *key, double *v) {
    const char *t = next_tok(r);
    char *end;
    if (!t || strcmp(t, key) || !(t = next_tok(r))) return 0;
    *v = strtod(t, &end);
    return end != t && !*end;
}
static int key_long(sreader *r, const char *key, int base, long long lo, long long hi,
                    long long *v) {
    const char *t = next_tok(r);
    char *end;
    if (!t || strcmp(t, key) || !(t = next_tok(r))) return 0;
    *v = strtoll(t, &end, base);
    return end != t && !*end && *v >= lo && *v <= hi;
}
static int key_u64(sreader *r, const char *key, uint64_t *v) {
    const char *t = next_tok(r);
    char *end;
    if (!t || strcmp(t, key) || !(t = next_tok(r))) return 0;
    *v = (uint64_t)strtoull(t, &end, 16);
    return end != t && !*end;
}

/* The scalar state of a checkpoint, read before anything is changed. */
typedef struct {
    long long epoch, stopped, diverged, ng, best_epoch, bad, nh, hstart;
    uint64_t rng;
    double lr, bestval, b1t, b2t, start, best_rmse, f, fsq, step;
} state_scalars;

static int read_scalars(sreader *r, const eann_trainer *tr, state_scalars *s) {
    const long long E = tr->o.epochs > 100000000 ? tr->o.epochs : 100000000, H = tr->hist;
    return key_long(r, "epoch", 10, 0, E, &s->epoch) && key_long(r, "stopped", 10, 0, 1, &s->stopped) &&
           key_long(r, "diverged", 10, 0, E, &s->diverged) &&
           key_long(r, "ngrad", 10, 0, LLONG_MAX, &s->ng) && key_u64(r, "rng", &s->rng) &&
           key_real(r, "lr", &s->lr) && key_real(r, "bestval", &s->bestval) &&
           key_real(r, "b1t", &s->b1t) && key_real(r, "b2t", &s->b2t) &&
           key_real(r, "start", &s->start) && key_real(r, "best_rmse", &s->best_rmse) &&
           key_long(r, "best_epoch", 10, 0, E, &s->best_epoch) &&
           key_long(r, "bad", 10, 0, E, &s->bad) && key_long(r, "nh", 10, 0, H, &s->nh) &&
           key_long(r, "hstart", 10, 0, H - 1, &s->hstart) && key_real(r, "f", &s->f) &&
           key_real(r, "fsq", &s->fsq) && key_real(r, "step", &s->step);
}

/* The frame order (a permutation of 0..ntrain-1) into idx. */
static int read_idx(sreader *r, int ntrain, int *idx, char *seen) {
    long long n, v;
    if (!key_long(r, "idx", 10, ntrain, ntrain, &n)) return 0;
    memset(seen, 0, (size_t)ntrain);
    for (int i = 0; i < ntrain; i++) {
        const char *t = next_tok(r);
        char *end;
        if (!t) return 0;
        v = strtoll(t, &end, 10);
        if (end == t || *end || v < 0 || v >= ntrain || seen[v]) return 0;
        seen[v] = 1;
        idx[i] = (int)v;
    }
    return 1;
}

/* One array "name n" then n reals into x (staged; copied on success). */
static int read_array(sreader *r, const state_array *a, double *x) {
    long long n;
    if (!key_long(r, a->name, 10, (long long)a->n, (long long)a->n, &n)) return 0;
    for (size_t q = 0; q < a->n; q++) {
        const char *t = next_tok(r);
        char *end;
        if (!t) return 0;
        x[q] = strtod(t, &end);
        if (end == t || *end) return 0;
    }
    return 1;
}

int eann_trainer_load(eann_trainer *tr, eann_norm *nm, const char *buf, size_t len, char *msg,
                      size_t msglen) {
#define LOAD_FAIL(...) do { if (msg && msglen) snprintf(msg, msglen, __VA_ARGS__); rc = EANN_EFORMAT; goto done; } while (0)
    if (msg && msglen) msg[0] = '\0';
    if (!tr || !nm || !buf || nm->nspecies != tr->m->spec.nspecies ||
        nm->ndensity != tr->m->ndensity || nm != tr->nm)
        return EANN_EINVAL;
    sreader r = {buf, buf + len, {0}};
    state_array a[8];
    const int na = state_arrays(tr, nm, a);
    size_t total = 0;
    for (int k = 0; k < na; k++) total += a[k].n;
    double *stage = malloc(sizeof(double) * (total ? total : 1));
    int *idx = malloc(sizeof(int) * (size_t)tr->ntrain);
    char *seen = malloc((size_t)tr->ntrain);
    int rc = EANN_OK;
    if (!stage || !idx || !seen) {
        rc = EANN_ENOMEM;
        goto done;
    }
    const char *t = next_tok(&r);
    if (!t || strcmp(t, "EANN_TRAIN_STATE_V1")) LOAD_FAIL("not a training state (first word EANN_TRAIN_STATE_V1)");
    char want[512], got[512] = "";
    options_text(tr, want, sizeof want);
    /* the options line: as many tokens as `want` has */
    if (!(t = next_tok(&r)) || strcmp(t, "options")) LOAD_FAIL("'options' line missing");
    for (const char *w = want; *w;) {
        while (*w == ' ') w++;
        if (!*w) break;
        if (!(t = next_tok(&r))) break;
        size_t l = strlen(got);
        snprintf(got + l, sizeof got - l, "%s%s", l ? " " : "", t);
        w = strchr(w, ' ') ? strchr(w, ' ') : w + strlen(w);
    }
    if (strcmp(want, got))
        LOAD_FAIL("the state belongs to another run (options, model size or data differ: "
                  "'%s' here, '%s' saved)", want, got);
    state_scalars s;
    if (!read_scalars(&r, tr, &s)) LOAD_FAIL("damaged scalar state near '%s'", r.tok);
    if (!read_idx(&r, tr->ntrain, idx, seen)) LOAD_FAIL("damaged frame order near '%s'", r.tok);
    double *x = stage;
    for (int k = 0; k < na; k++, x += a[k - 1].n)
        if (!read_array(&r, &a[k], x)) LOAD_FAIL("damaged array '%s' near '%s'", a[k].name, r.tok);
    if (!(t = next_tok(&r)) || strcmp(t, "end") || next_tok(&r)) LOAD_FAIL("missing 'end' or text after it");
    /* all read: commit */
    x = stage;
    for (int k = 0; k < na; k++) {
        memcpy(a[k].x, x, sizeof(double) * a[k].n);
        x += a[k].n;
    }
    memcpy(tr->idx, idx, sizeof(int) * (size_t)tr->ntrain);
    tr->epoch = (int)s.epoch;
    tr->diverged = (int)s.diverged;
    tr->done = s.stopped || s.diverged || tr->epoch >= tr->o.epochs;
    tr->ng = (long)s.ng;
    tr->rng = s.rng;
    tr->lr = s.lr;
    tr->bestval = s.bestval;
    tr->b1t = s.b1t;
    tr->b2t = s.b2t;
    tr->start_rmse = s.start;
    tr->best_rmse = s.best_rmse;
    tr->best_epoch = (int)s.best_epoch;
    tr->bad = (int)s.bad;
    tr->nh = (int)s.nh;
    tr->hstart = (int)s.hstart;
    tr->f = s.f;
    tr->fsq = s.fsq;
    tr->step = s.step;
    set_params(tr->m, tr->nm, tr->phi);
done:
    free(stage);
    free(idx);
    free(seen);
    return rc;
#undef LOAD_FAIL
}
