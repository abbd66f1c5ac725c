/* SPDX-License-Identifier: MIT */
/* eann_train.h - training of EANN tensorial models (eann.h): losses with
 * exact parameter gradients for dipole, phase-free transition-dipole and
 * polarizability targets (the polarizability needs second derivatives),
 * descriptor normalisation folded into the first layer, Adam and L-BFGS,
 * the training loop with progress callback, checkpoint and resume.
 *
 * Vendoring: eann.c, eann.h (prediction) plus eann_train.c and
 * eann_train.h (training). Same rules as eann.h: C11 + libm, no printing,
 * no files, no global state, our own seeded PRNG, fixed summation orders.
 */
#ifndef EANN_TRAIN_H
#define EANN_TRAIN_H

#include "eann.h"

#ifdef __cplusplus
extern "C" {
#endif

/* =========================================================================
 * TRAINING: losses with exact gradients for dipole, phase-free transition
 * dipole and polarizability targets; descriptor normalisation; Adam and
 * L-BFGS.
 *
 * Built from the pieces of eann.h (setup, descriptor, net forward/backward,
 * building blocks); same rules: no printing, no files, no global state, our
 * own seeded PRNG, fixed summation order (bitwise reproducible runs). The
 * gradient derivation is written out at the top of eann_train.c.
 *
 * Losses (per frame f, summed over the batch and divided by its size B; the
 * EANN chapter reports the RMSE per component, so the loss is the per-
 * component mean squared error):
 *   dipole          l_f = |mu - mu_ref|^2 / 3 + w_q (sum_i q_i - Q)^2
 *                   (EANN chapter Eq. 6; w_q = charge_weight, Q the frame's total charge)
 *   tdm             l_f = min(|t - t_ref|^2, |t + t_ref|^2) / 3
 *                   (the phase of a computed transition dipole is arbitrary; the
 *                   sign of the smaller branch, +1 on a tie, is also used for RMSEs)
 *   polarizability  l_f = |alpha - alpha_ref|_F^2 / 9
 * Labels and outputs are in atomic units; positions in angstrom (as eann.h).
 *
 * What is trained: every network weight and the orbital coefficients
 * `params` [S][K]. The radial centres `rs` and exponents `inta` stay fixed by
 * default at the values set by eann_train_init (an even grid, see there);
 * eann_sample_loss computes their exact gradients too, and the optimiser
 * trains them when eann_train_opts.train_radial is set.
 *
 * Descriptor normalisation: rho is standardised per centre species with the
 * mean and standard deviation over the training atoms (at the initial
 * orbital coefficients). The standardisation is FOLDED EXACTLY into the
 * first linear layer of every net: the optimiser works on "normalised"
 * parameters phi (first-layer W~, b~ acting on (rho - mean)/std), the model
 * holds theta with W = W~ / std (per column), b = b~ - W~ (mean / std).
 * So a trained model is a plain EANN_TEXT_V1 file that every reader
 * predicts with unchanged; the statistics are kept in its header comments
 * ("# rho_mean ..." / "# rho_std ...", eann_norm_to_comments /
 * eann_norm_from_comments) for the record and for continued training.
 */

/* One labelled molecule. */
typedef struct {
    int natoms;
    const int *species; /* [natoms] species index of the model */
    const double *pos;  /* [natoms][3] angstrom */
    double ref[9];      /* label, atomic units: 3 (dipole, tdm) or 9 (polarizability, row-major) */
    double charge;      /* total charge Q (dipole charge penalty only) */
} eann_sample;

/* Training workspace: an eann_work plus the tangent caches (below). */
typedef struct eann_trainws eann_trainws;
int eann_trainws_new(const eann_model *m, int natoms_max, eann_trainws **out);
void eann_trainws_free(eann_trainws *tw);
/* The eann_work inside (valid caches after eann_sample_loss). */
eann_work *eann_trainws_work(eann_trainws *tw);

/* Loss of one molecule (see the top of this file) and, if grad != NULL,
 * ADD scale * d l_f / d theta into grad [m->ntheta] (theta layout, all
 * entries including rs and inta). pred [3] or [9] receives the prediction (tdm:
 * multiplied by the chosen sign, so pred - ref is the error), *sqerr the
 * squared error summed over components (without the charge penalty), and
 * *loss l_f (may be NULL). The polarizability gradient needs the parameter
 * derivative of coordinate gradients: see the derivation at the top of eann_train.c. */
int eann_sample_loss(const eann_model *m, eann_trainws *tw, const eann_sample *smp,
                     double charge_weight, double scale, double *grad, double *pred, double *sqerr,
                     double *loss);

/* Phase-free squared error of a 3-vector: min(|t - r|^2, |t + r|^2); *sign
 * = +1 or -1 for the chosen branch (+1 on a tie). */
double eann_phase_free_sq(const double t[3], const double r[3], int *sign);

/* --- mini-batches: the same bits as eann_sample_loss per molecule ----- */
/* Mini-batch workspace: molecules of up to natoms_max atoms, nmol_max of
 * them in one pass (larger batches are done in chunks of nmol_max). */
typedef struct eann_batchws eann_batchws;
int eann_batchws_new(const eann_model *m, int natoms_max, int nmol_max, eann_batchws **out);
void eann_batchws_free(eann_batchws *bw);
/* The losses of n molecules smp[idx[q]] (idx NULL: smp[q]), q = 0..n-1,
 * and, if grad != NULL, their gradients ADDED into grad: the same bits as
 * calling eann_sample_loss on each in turn (pred [n][9], row q = that call's
 * pred; sqerr [n], loss [n]), but each element network runs once per batch
 * on the atoms of all its molecules (see eann_train.c, "mini-batches"). On
 * an error grad may hold part of the sum. */
int eann_batch_loss(const eann_model *m, eann_batchws *bw, const eann_sample *smp, const int *idx,
                    int n, double charge_weight, double scale, double *grad, double *pred,
                    double *sqerr, double *loss);

/* --- descriptor normalisation (folded into the first layer) ------------- */
typedef struct {
    int nspecies, ndensity;
    double *mean, *std; /* [S][D]; std > 0 */
} eann_norm;

/* Statistics of rho per centre species over all atoms of n samples (mean,
 * population standard deviation; a component with std < 1e-12 (1 + |mean|)
 * or a species without atoms gets mean 0, std 1). */
int eann_norm_compute(const eann_model *m, const eann_sample *smp, int n, eann_norm *out);
void eann_norm_free(eann_norm *nm);
/* theta = fold(phi): first layer of every net and species W = W~/std,
 * b = b~ - sum_c W~[o][c] mean[c]/std[c]; all other entries copied. */
void eann_norm_fold(const eann_model *m, const eann_norm *nm, const double *phi, double *theta);
/* phi = unfold(theta), the inverse. */
void eann_norm_unfold(const eann_model *m, const eann_norm *nm, const double *theta, double *phi);
/* Chain rule through the fold: gphi = (d theta / d phi)^T gtheta. */
void eann_norm_grad(const eann_model *m, const eann_norm *nm, const double *gtheta, double *gphi);
/* Replace m->comments by text lines "# rho_mean X c v v ..." / "# rho_std
 * ..." (values %.17g) preceded by `prefix` (NULL: none; must be complete
 * "# ...\n" lines). */
int eann_norm_to_comments(eann_model *m, const eann_norm *nm, const char *prefix);
/* Read the statistics back from m->comments. EANN_EFORMAT if absent or damaged. */
int eann_norm_from_comments(const eann_model *m, eann_norm *out);

/* --- training ----------------------------------------------------------- */
enum { EANN_OPT_ADAM = 1, EANN_OPT_LBFGS = 2 };

typedef struct {
    int epoch, epochs; /* current (1-based) and maximum */
    double train_rmse; /* RMSE per component (a.u.) over the epoch's training
                                 frames, at the parameters each was evaluated with (Adam)
                                 / at the epoch's start (L-BFGS) */
    double valid_rmse; /* at the end of the epoch; < 0 if no validation data */
    double lr;         /* learning rate (Adam) / accepted step length (L-BFGS) */
    long ngrad;        /* molecule gradients computed so far */
    int improved;      /* the validation RMSE is the best so far */
    int diverged;      /* this epoch diverged (= epoch; 0: no): a non-finite RMSE, or a
                          training RMSE above diverge_factor x start_rmse; training stops */
    int best_epoch;    /* epoch of the best parameters so far (0: the start) */
    double start_rmse; /* training RMSE before the first step (Adam: of the first
                          mini-batch) */
} eann_progress;

typedef struct {
    int optimizer;        /* EANN_OPT_ADAM (default) or EANN_OPT_LBFGS */
    int epochs;           /* maximum epochs (L-BFGS: iterations) */
    int batch;            /* Adam mini-batch size */
    double lr;            /* Adam initial learning rate */
    double lr_decay;      /* factor on plateau (0.5) */
    int patience;         /* epochs without improvement before a decay (20) */
    double lr_min;        /* stop when lr falls below (early stopping), 1e-5 */
    int lbfgs_m;          /* L-BFGS history (10) */
    double charge_weight; /* dipole: weight of (sum q - Q)^2 (0) */
    int train_radial;     /* also train rs and inta (0: fixed) */
    double diverge_factor;/* stop as diverged when the training RMSE exceeds this
                             multiple of its start (100; 0: only non-finite values) */
    uint64_t seed;        /* initialisation and shuffling */
    /* Called after every epoch (may be NULL); a non-zero return stops. */
    int (*progress)(void *ctx, const eann_progress *p);
    void *ctx;
} eann_train_opts;

/* Defaults as documented above (epochs 100, batch 32, lr 1e-3). */
void eann_train_opts_default(eann_train_opts *o);

/* Initialise a model for training on the samples: eann_model_init_random
 * (seed) for the networks and orbital coefficients, rs and inta on a fixed
 * grid (rs_k = k rc / K, inta = K^2 / (2 rc^2), i.e. Gaussians of width the
 * grid spacing), the normalisation statistics (nm, allocated here),
 * and the output scale (see eann_train.c, output_scale). theta is
 * fold(phi); phi [m->ntheta] receives the normalised parameters. */
int eann_train_init(eann_model *m, const eann_sample *train, int ntrain, const eann_train_opts *o,
                    eann_norm *nm, double *phi);

/* Minimise the mean training loss from phi (normalised parameters, see
 * eann_norm) with Adam (mini-batches, shuffled by the seed, learning-rate
 * decay on plateau of the validation loss, early stopping) or full-batch
 * L-BFGS. At the end m->theta = fold(best phi) (best by validation loss, or
 * training loss without validation data) and phi holds it. *epochs_run and
 * *ngrad (may be NULL) report the work done. */
int eann_train_run(eann_model *m, const eann_norm *nm, double *phi, const eann_sample *train,
                   int ntrain, const eann_sample *valid, int nvalid, const eann_train_opts *o,
                   int *epochs_run, long *ngrad);

/* --- the training loop, one epoch at a time ----------------------------
 * eann_train_run is:
 *     eann_trainer_new(...); while (!eann_trainer_done(tr)) {
 *         eann_trainer_epoch(tr, &p); if (p.epoch == 0) break;
 *         if (o->progress && o->progress(o->ctx, &p)) break; }
 *     eann_trainer_finish(tr, ...); eann_trainer_free(tr);
 * A program that wants checkpoints or to stop on a signal runs this loop
 * itself: between two epochs eann_trainer_save gives the complete state
 * (parameters, Adam moments or L-BFGS history, PRNG state, frame order,
 * epoch, best parameters, patience counter, learning rate, normalisation),
 * and eann_trainer_load continues from it bit for bit. */
typedef struct eann_trainer eann_trainer;
/* A trainer for phi (normalised parameters, eann_train_init) of m; the
 * model, nm, phi and the samples must outlive it (they are not copied);
 * phi is updated in place. L-BFGS: computes the first full-batch gradient.
 * The training RMSE at the start (divergence test) comes from that gradient
 * (L-BFGS) or from the first mini-batch, evaluated before the first step
 * (Adam). */
int eann_trainer_new(eann_model *m, const eann_norm *nm, double *phi, const eann_sample *train,
                     int ntrain, const eann_sample *valid, int nvalid, const eann_train_opts *o,
                     eann_trainer **out);
void eann_trainer_free(eann_trainer *tr);
/* One epoch (Adam) or iteration (L-BFGS), then validation, best model,
 * divergence test, learning-rate decay and early stopping; p describes it.
 * p->epoch == 0 if no epoch ran (done, or the L-BFGS line search found no
 * step). */
int eann_trainer_epoch(eann_trainer *tr, eann_progress *p);
/* 1 when no further epoch will run (epochs reached, early stop, line search
 * failure, divergence). */
int eann_trainer_done(const eann_trainer *tr);
/* phi = the best parameters (by validation loss, or training loss without
 * validation data), m->theta = fold(phi); *epochs_run, *ngrad (may be NULL). */
void eann_trainer_finish(eann_trainer *tr, int *epochs_run, long *ngrad);
/* The best epoch so far (0: none), its training RMSE and the start's. Returns
 * 1 if the best parameters are worth keeping (an epoch improved, finite,
 * no worse than the start), else 0. */
int eann_trainer_best(const eann_trainer *tr, int *epoch, double *train_rmse, double *start_rmse);
/* The complete state as text (EANN_TRAIN_STATE_V1, every real as a C99 hex
 * float, so it reads back exactly): malloc'd, NUL-terminated. */
int eann_trainer_save(const eann_trainer *tr, char **buf, size_t *len);
/* Restore a saved state into a trainer made by eann_trainer_new for the
 * same model header, data (sizes and a checksum of positions and labels) and
 * options (the number of epochs may differ). Writes phi, m->theta and the
 * normalisation statistics into *nm (the one given to eann_trainer_new).
 * EANN_EFORMAT with a reason in msg if the text is damaged or belongs to
 * another run; the trainer is then unchanged. */
int eann_trainer_load(eann_trainer *tr, eann_norm *nm, const char *buf, size_t len, char *msg,
                      size_t msglen);

/* Mean loss and RMSE per component over samples (no gradient). */
int eann_evaluate(const eann_model *m, eann_trainws *tw, const eann_sample *smp, int n,
                  double charge_weight, double *mean_loss, double *rmse);


#ifdef __cplusplus
}
#endif
#endif
