/* SPDX-License-Identifier: MIT */
/* test_eann_train.c - EANN training: finite-difference checks of the loss
 * gradients of all three targets (dipole with charge penalty, phase-free
 * transition dipole near and away from the sign switch, polarizability with
 * its second-order terms), normalisation fold / statistics round trip,
 * bitwise determinism of training, and a loss decrease on a small synthetic
 * (teacher-student) problem. Runs in a few seconds at -O2. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eann_kernels.h"
#include "eann_train.h"
#include "harness.h"
#include "xyz.h"

static uint64_t rng_state = 12345;
static double urand(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* A small model: species O, H; nwave 3, nipsin 3, hidden widths as given. */
static eann_model *small_model(int kind, int nh, int width, uint64_t seed) {
    eann_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = kind;
    sp.nspecies = 2;
    strcpy(sp.species[0], "O");
    strcpy(sp.species[1], "H");
    sp.mass[0] = 15.999;
    sp.mass[1] = 1.008;
    sp.cutoff = 4.0;
    sp.min_distance = 0.001;
    sp.nipsin = 3;
    sp.nwave = 3;
    sp.nnets = kind == EANN_POLARIZABILITY ? 3 : 1;
    static const char *roles[3] = {"grad_sym", "grad_outer", "trace"};
    for (int t = 0; t < sp.nnets; t++) {
        eann_net_spec *ns = &sp.net[t];
        strcpy(ns->role, kind == EANN_DIPOLE ? "charge" : kind == EANN_TDM ? "tdm3" : roles[t]);
        ns->nhidden = nh;
        ns->sizes[0] = 9;
        for (int h = 1; h <= nh; h++)
            ns->sizes[h] = width;
        ns->sizes[nh + 1] = kind == EANN_TDM ? 3 : 1;
        ns->ln_eps = 1e-5;
    }
    eann_model *m = NULL;
    char msg[256];
    int rc = eann_model_new(&sp, &m, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "model_new: %s\n", msg);
        exit(1);
    }
    eann_model_init_random(m, seed);
    return m;
}

#define MAXAT 5
typedef struct {
    int species[MAXAT];
    double pos[MAXAT * 3];
} mol;

static void random_mol(mol *x, int n) {
    for (int i = 0; i < n; i++) {
        x->species[i] = i == 0 ? 0 : (urand() < 0.7 ? 1 : 0);
        for (int a = 0; a < 3; a++)
            x->pos[3 * i + a] = 2.2 * (urand() - 0.5);
    }
}

/* Mean loss over the samples and its gradient (theta layout). */
static double total_loss(eann_model *m, eann_trainws *tw, const eann_sample *s, int n, double cw,
                         double *grad) {
    double L = 0, pred[9];
    if (grad) memset(grad, 0, sizeof(double) * m->ntheta);
    for (int f = 0; f < n; f++) {
        double l, sq;
        int rc = eann_sample_loss(m, tw, &s[f], cw, 1.0 / n, grad, pred, &sq, &l);
        if (rc) {
            fprintf(stderr, "sample_loss: %s\n", eann_strerror(rc));
            exit(1);
        }
        L += l;
    }
    return L / n;
}

/* Central finite differences of the mean loss over every entry of theta
 * (radial centres and exponents, orbital coefficients, network weights);
 * returns the largest |g - fd| / max_q |fd_q|. */
static double fd_check(eann_model *m, eann_trainws *tw, const eann_sample *s, int n, double cw,
                       const char *what) {
    double *g = calloc(m->ntheta, sizeof(double)), *fd = calloc(m->ntheta, sizeof(double));
    total_loss(m, tw, s, n, cw, g);
    size_t SK = (size_t)m->spec.nspecies * m->spec.nwave;
    double gmax = 0, emax = 0, pmax = 0;
    for (size_t q = 0; q < m->ntheta; q++) {
        double th = m->theta[q], h = 1e-5 * fmax(1.0, fabs(th));
        m->theta[q] = th + h;
        eann_model_sync(m);
        double lp = total_loss(m, tw, s, n, cw, NULL);
        m->theta[q] = th - h;
        eann_model_sync(m);
        double lm = total_loss(m, tw, s, n, cw, NULL);
        m->theta[q] = th;
        eann_model_sync(m);
        fd[q] = (lp - lm) / (2 * h);
        if (fabs(fd[q]) > gmax) gmax = fabs(fd[q]);
    }
    for (size_t q = 0; q < m->ntheta; q++) {
        double e = fabs(g[q] - fd[q]);
        if (e > emax) emax = e;
    }
    /* descriptor parameters (rs, inta, params) one by one, relative */
    for (size_t q = 0; q < m->off_params + SK; q++) {
        double e = fabs(g[q] - fd[q]) / fmax(fabs(fd[q]), 1e-300);
        if (fabs(fd[q]) > 1e-3 * gmax && e > pmax) pmax = e;
    }
    double rel = emax / fmax(gmax, 1e-300);
    printf("  %-36s max |grad - fd| / max|fd| = %.2e (rs/inta/params: %.2e, max|fd| %.3g)\n", what,
           rel, pmax, gmax);
    CHECK(gmax > 0, "%s: zero gradient", what);
    CHECK(rel < 1e-6, "%s: gradient vs finite differences %.3g", what, rel);
    CHECK(pmax < 1e-6, "%s: descriptor-parameter gradient vs finite differences %.3g", what, pmax);
    free(g);
    free(fd);
    return rel;
}

static void make_samples(eann_model *m, mol *mols, eann_sample *s, int n, int nc) {
    for (int f = 0; f < n; f++) {
        int na = 3 + f % 3;
        random_mol(&mols[f], na);
        s[f].natoms = na;
        s[f].species = mols[f].species;
        s[f].pos = mols[f].pos;
        for (int c = 0; c < 9; c++)
            s[f].ref[c] = c < nc ? 2 * urand() - 1 : 0;
        s[f].charge = f % 2 ? 0.0 : 0.3;
    }
    (void)m;
}

static void test_fd(void) {
    printf("finite-difference checks (2 species, nwave 3, nipsin 3, hidden 8,8, 3-5 atoms)\n");
    mol mols[4];
    eann_sample s[4];
    eann_trainws *tw;
    /* dipole, with and without the charge penalty (EANN chapter Eq. 6) */
    eann_model *m = small_model(EANN_DIPOLE, 2, 8, 7);
    make_samples(m, mols, s, 3, 3);
    eann_trainws_new(m, MAXAT, &tw);
    fd_check(m, tw, s, 3, 0.0, "dipole");
    fd_check(m, tw, s, 3, 0.7, "dipole + charge penalty 0.7");
    eann_trainws_free(tw);
    eann_model_free(m);

    /* tdm: references away from the switch (both signs) and near it */
    m = small_model(EANN_TDM, 2, 8, 8);
    make_samples(m, mols, s, 3, 3);
    eann_trainws_new(m, MAXAT, &tw);
    double pred[9], t[3][3];
    for (int f = 0; f < 3; f++) {
        double sq;
        eann_sample_loss(m, tw, &s[f], 0, 1, NULL, pred, &sq, NULL);
        /* pred = sign * t, and the reference is still random: recover t */
        int sg;
        eann_phase_free_sq(pred, s[f].ref, &sg);
        for (int a = 0; a < 3; a++)
            t[f][a] = pred[a];
    }
    /* away: ref = +-(t + noise) */
    for (int f = 0; f < 3; f++)
        for (int a = 0; a < 3; a++)
            s[f].ref[a] = (f == 1 ? -1 : 1) * (t[f][a] * 1.3 + 0.1 * (urand() - 0.5));
    fd_check(m, tw, s, 3, 0, "tdm away from the sign switch");
    int sgn;
    eann_sample_loss(m, tw, &s[1], 0, 1, NULL, pred, NULL, NULL);
    eann_phase_free_sq(pred, s[1].ref, &sgn);
    CHECK(sgn == 1, "pred is already sign-adjusted");
    /* near: ref nearly perpendicular to t: t.ref / (|t||ref|) = 1e-4 */
    for (int f = 0; f < 3; f++) {
        double r[3] = {urand() - 0.5, urand() - 0.5, urand() - 0.5}, tt = 0, tr = 0, tn, rn = 0;
        for (int a = 0; a < 3; a++) {
            tt += t[f][a] * t[f][a];
            tr += t[f][a] * r[a];
        }
        for (int a = 0; a < 3; a++)
            r[a] -= tr / tt * t[f][a];
        for (int a = 0; a < 3; a++)
            rn += r[a] * r[a];
        tn = sqrt(tt);
        rn = sqrt(rn);
        double sgn2 = f == 2 ? -1 : 1;
        for (int a = 0; a < 3; a++)
            s[f].ref[a] = r[a] + sgn2 * 1e-4 * rn * t[f][a] / tn;
    }
    fd_check(m, tw, s, 3, 0, "tdm near the sign switch (cos 1e-4)");
    /* the phase-free loss itself: exact values at both sides of the switch */
    {
        double tv[3] = {1, 2, 3}, rv[3] = {3, -1.5, 0.001}, rw[3] = {-3, 1.5, -0.001};
        int a, b;
        double ea = eann_phase_free_sq(tv, rv, &a), eb = eann_phase_free_sq(tv, rw, &b);
        CHECK(a == 1 && b == -1, "sign choice %d %d", a, b);
        CHECK_CLOSE(ea, eb, 1e-15, "phase-free loss is even in the reference");
        CHECK_CLOSE(ea, 4 + 12.25 + 2.999 * 2.999, 1e-12, "phase-free loss value");
    }
    eann_trainws_free(tw);
    eann_model_free(m);

    /* polarizability: second-order terms through nets 0 and 1 */
    m = small_model(EANN_POLARIZABILITY, 2, 8, 9);
    make_samples(m, mols, s, 3, 9);
    eann_trainws_new(m, MAXAT, &tw);
    fd_check(m, tw, s, 3, 0, "polarizability");
    eann_trainws_free(tw);
    eann_model_free(m);
    /* one hidden layer and no hidden layer (output layer = first layer) */
    m = small_model(EANN_POLARIZABILITY, 1, 5, 10);
    make_samples(m, mols, s, 2, 9);
    eann_trainws_new(m, MAXAT, &tw);
    fd_check(m, tw, s, 2, 0, "polarizability, hidden 5");
    eann_trainws_free(tw);
    eann_model_free(m);
    m = small_model(EANN_TDM, 0, 1, 11);
    make_samples(m, mols, s, 2, 3);
    eann_trainws_new(m, MAXAT, &tw);
    fd_check(m, tw, s, 2, 0, "tdm, no hidden layer");
    eann_trainws_free(tw);
    eann_model_free(m);
}

/* eann_sample_loss predictions agree with eann_predict. */
static void test_predict_agrees(void) {
    int kinds[3] = {EANN_DIPOLE, EANN_TDM, EANN_POLARIZABILITY};
    for (int k = 0; k < 3; k++) {
        eann_model *m = small_model(kinds[k], 2, 8, 20 + k);
        mol x;
        random_mol(&x, 5);
        eann_sample s = {5, x.species, x.pos, {0}, 0};
        eann_trainws *tw;
        eann_trainws_new(m, 5, &tw);
        double p1[9], p2[9];
        eann_sample_loss(m, tw, &s, 0, 1, NULL, p1, NULL, NULL);
        eann_predict(m, eann_trainws_work(tw), 5, x.species, x.pos, p2);
        int n = eann_kind_outputs(kinds[k]), same = 1;
        int sg = kinds[k] == EANN_TDM && p1[0] * p2[0] < 0 ? -1 : 1;
        for (int c = 0; c < n; c++)
            if (p1[c] != sg * p2[c]) same = 0;
        CHECK(same, "%s: training forward pass differs from eann_predict",
              eann_kind_name(kinds[k]));
        eann_trainws_free(tw);
        eann_model_free(m);
    }
}

/* Teacher-student data: labels from a random teacher model. */
typedef struct {
    mol *mols;
    eann_sample *s;
    int n;
} dataset;

static dataset teacher_data(int kind, int n, uint64_t seed) {
    dataset d;
    d.n = n;
    d.mols = calloc((size_t)n, sizeof(mol));
    d.s = calloc((size_t)n, sizeof(eann_sample));
    eann_model *t = small_model(kind, 1, 6, seed);
    eann_work *w;
    eann_work_new(t, MAXAT, &w);
    for (int f = 0; f < n; f++) {
        int na = 3 + f % 3;
        random_mol(&d.mols[f], na);
        d.s[f].natoms = na;
        d.s[f].species = d.mols[f].species;
        d.s[f].pos = d.mols[f].pos;
        eann_predict(t, w, na, d.mols[f].species, d.mols[f].pos, d.s[f].ref);
        if (kind == EANN_TDM && f % 2)
            for (int a = 0; a < 3; a++)
                d.s[f].ref[a] = -d.s[f].ref[a]; /* random phase */
    }
    eann_work_free(w);
    eann_model_free(t);
    return d;
}

static void free_data(dataset *d) {
    free(d->mols);
    free(d->s);
}

static int repeat_run; /* the determinism re-run prints nothing */

/* Train a fresh small model; returns its text; rmse0/rmse1 before/after. */
static char *train_text(int kind, const dataset *tr, const dataset *va, int opt, int epochs,
                        double *rmse0, double *rmse1, size_t *len) {
    eann_model *m = small_model(kind, 2, 8, 1);
    eann_train_opts o;
    eann_train_opts_default(&o);
    o.optimizer = opt < 0 ? -opt : opt; /* negative: also train rs and inta */
    o.train_radial = opt < 0;
    o.epochs = epochs;
    o.batch = 8;
    o.lr = 5e-3;
    o.patience = 25;
    o.seed = 42;
    eann_norm nm;
    double *phi = calloc(m->ntheta, sizeof(double));
    int rc = eann_train_init(m, tr->s, tr->n, &o, &nm, phi);
    CHECK(rc == 0, "train_init: %s", eann_strerror(rc));
    eann_trainws *tw;
    eann_trainws_new(m, MAXAT, &tw);
    double v0, v1;
    eann_evaluate(m, tw, tr->s, tr->n, 0, NULL, rmse0);
    eann_evaluate(m, tw, va->s, va->n, 0, NULL, &v0);
    int ep = 0;
    rc = eann_train_run(m, &nm, phi, tr->s, tr->n, va->s, va->n, &o, &ep, NULL);
    CHECK(rc == 0, "train_run: %s", eann_strerror(rc));
    eann_evaluate(m, tw, tr->s, tr->n, 0, NULL, rmse1);
    eann_evaluate(m, tw, va->s, va->n, 0, NULL, &v1);
    if (!repeat_run)
        printf("  %-15s %s, %d epochs run: RMSE train %.4g -> %.4g, valid %.4g -> %.4g\n",
               eann_kind_name(kind),
               opt == EANN_OPT_ADAM ? "Adam"
               : opt < 0            ? "Adam+radial"
                                    : "L-BFGS",
               ep, *rmse0, *rmse1, v0, v1);
    eann_norm_to_comments(m, &nm, "# test\n");
    char *buf;
    eann_model_write(m, &buf, len);
    eann_trainws_free(tw);
    eann_norm_free(&nm);
    free(phi);
    eann_model_free(m);
    return buf;
}

static void test_training(void) {
    int kinds[3] = {EANN_DIPOLE, EANN_TDM, EANN_POLARIZABILITY};
    int epochs[3] = {60, 300, 200};
    printf("teacher-student training (train 64, valid 16 random molecules of 3-5 atoms)\n");
    for (int k = 0; k < 3; k++) {
        dataset tr = teacher_data(kinds[k], 64, 100 + k), va = teacher_data(kinds[k], 16, 100 + k);
        /* same teacher seed: va uses new random molecules (rng advanced) */
        double r0, r1, r0b, r1b;
        size_t l1, l2;
        char *a = train_text(kinds[k], &tr, &va, EANN_OPT_ADAM, epochs[k], &r0, &r1, &l1);
        repeat_run = 1;
        char *b = train_text(kinds[k], &tr, &va, EANN_OPT_ADAM, epochs[k], &r0b, &r1b, &l2);
        repeat_run = 0;
        CHECK(l1 == l2 && !memcmp(a, b, l1), "%s: two trainings with the same seed differ",
              eann_kind_name(kinds[k]));
        CHECK(r1 < 0.5 * r0, "%s: training did not reduce the training RMSE enough (%.3g -> %.3g)",
              eann_kind_name(kinds[k]), r0, r1);
        /* the model text parses, carries the statistics, predicts the same */
        eann_model *m = NULL;
        eann_parse_error pe;
        int rc = eann_model_parse(a, l1, &m, &pe);
        CHECK(rc == 0, "trained model does not parse: line %d %s", pe.line, pe.msg);
        if (!rc) {
            eann_norm nm;
            CHECK(eann_norm_from_comments(m, &nm) == 0, "normalisation statistics not found");
            eann_norm_free(&nm);
            eann_model_free(m);
        }
        free(a);
        free(b);
        if (kinds[k] == EANN_POLARIZABILITY) {
            a = train_text(kinds[k], &tr, &va, -EANN_OPT_ADAM, 100, &r0, &r1, &l1);
            CHECK(r1 < 0.5 * r0, "train_radial: no decrease (%.3g -> %.3g)", r0, r1);
            free(a);
        }
        if (kinds[k] == EANN_DIPOLE) {
            a = train_text(kinds[k], &tr, &va, EANN_OPT_LBFGS, 30, &r0, &r1, &l1);
            CHECK(r1 < 0.3 * r0, "L-BFGS: no decrease (%.3g -> %.3g)", r0, r1);
            free(a);
        }
        free_data(&tr);
        free_data(&va);
    }
}

/* Normalisation: statistics, fold = normalised network, round trips. */
static void test_norm(void) {
    eann_model *m = small_model(EANN_POLARIZABILITY, 2, 8, 30);
    dataset d = teacher_data(EANN_DIPOLE, 20, 5);
    eann_norm nm;
    CHECK(eann_norm_compute(m, d.s, d.n, &nm) == 0, "norm_compute");
    /* normalised descriptors of the training atoms have mean 0, std 1 */
    eann_work *w;
    eann_work_new(m, MAXAT, &w);
    const int D = m->ndensity;
    double s1[2][9] = {{0}}, s2[2][9] = {{0}};
    int cnt[2] = {0, 0};
    for (int f = 0; f < d.n; f++) {
        eann_setup(m, w, d.s[f].natoms, d.s[f].species, d.s[f].pos);
        eann_descriptor_forward(m, w);
        for (int r = 0; r < w->natoms; r++) {
            int s = w->row_species[r];
            cnt[s]++;
            for (int k = 0; k < D; k++) {
                double z = (w->rho[r * D + k] - nm.mean[s * D + k]) / nm.std[s * D + k];
                s1[s][k] += z;
                s2[s][k] += z * z;
            }
        }
    }
    double e1 = 0, e2 = 0;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < D; k++) {
            e1 = th_worst(e1, fabs(s1[s][k] / cnt[s]));
            e2 = th_worst(e2, fabs(s2[s][k] / cnt[s] - 1));
        }
    CHECK(e1 < 1e-12 && e2 < 1e-10, "standardised descriptors: |mean| %.3g, |var - 1| %.3g", e1,
          e2);
    /* fold then unfold gives phi back (to rounding) */
    double *phi = malloc(sizeof(double) * m->ntheta), *th = malloc(sizeof(double) * m->ntheta);
    double *back = malloc(sizeof(double) * m->ntheta);
    memcpy(phi, m->theta, sizeof(double) * m->ntheta);
    eann_norm_fold(m, &nm, phi, th);
    eann_norm_unfold(m, &nm, th, back);
    double e = 0;
    for (size_t q = 0; q < m->ntheta; q++)
        e = th_worst(e, fabs(back[q] - phi[q]) / fmax(1, fabs(phi[q])));
    CHECK(e < 1e-13, "unfold(fold(phi)) = phi: %.3g", e);
    /* the folded model equals the network applied to standardised rho:
     * first-layer output W~ (rho-mean)/std + b~ vs W rho + b */
    const eann_layer *L = eann_layer_of(m, 0, 0, 0);
    eann_setup(m, w, d.s[0].natoms, d.s[0].species, d.s[0].pos);
    eann_descriptor_forward(m, w);
    double emax = 0;
    for (int o = 0; o < L->nout; o++) {
        double z1 = phi[L->b + o], z2 = th[L->b + o];
        for (int c = 0; c < D; c++) {
            z1 += phi[L->w + o * D + c] * (w->rho[c] - nm.mean[c]) / nm.std[c];
            z2 += th[L->w + o * D + c] * w->rho[c];
        }
        emax = th_worst(emax, fabs(z1 - z2) / fmax(1, fabs(z1)));
    }
    CHECK(emax < 1e-12, "folded first layer: %.3g", emax);
    /* statistics round trip through the model text (bitwise) */
    eann_norm_to_comments(m, &nm, "# a comment before\n");
    char *buf;
    size_t len;
    eann_model_write(m, &buf, &len);
    eann_model *m2 = NULL;
    eann_parse_error pe;
    CHECK(eann_model_parse(buf, len, &m2, &pe) == 0, "parse: %s", pe.msg);
    eann_norm nm2;
    CHECK(m2 && eann_norm_from_comments(m2, &nm2) == 0, "statistics from comments");
    if (m2 && nm2.mean) {
        CHECK(!memcmp(nm.mean, nm2.mean, sizeof(double) * 2 * D) &&
                  !memcmp(nm.std, nm2.std, sizeof(double) * 2 * D),
              "statistics differ after the round trip");
        eann_norm_free(&nm2);
    }
    /* a V1 text without the statistics still parses; they are reported absent */
    free(m->comments);
    m->comments = NULL;
    free(buf);
    eann_model_write(m, &buf, &len);
    eann_model *m3 = NULL;
    CHECK(eann_model_parse(buf, len, &m3, &pe) == 0, "plain V1 parse");
    CHECK(m3 && eann_norm_from_comments(m3, &nm2) == EANN_EFORMAT, "absent statistics: EFORMAT");
    eann_model_free(m3);
    eann_model_free(m2);
    free(buf);
    free(phi);
    free(th);
    free(back);
    eann_work_free(w);
    eann_norm_free(&nm);
    free_data(&d);
    eann_model_free(m);
}

/* Transition-dipole training on TEACHER labels: the published n->pi* model
 * (../shared/eann_nma_published/tdm_npi.txt) evaluated on its 20 reference
 * geometries, with the sign of every other label flipped (a computed
 * transition dipole has an arbitrary phase). These are not quantum-chemistry
 * labels and are never written anywhere. The phase-free loss is even in each
 * label, so training on flipped and unflipped labels must give the same
 * model bit for bit. */
static void test_tdm_teacher(void) {
    const char *sh = shared_dir();
    if (!sh) {
        th_skip("../shared absent: published TDM teacher test");
        return;
    }
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/eann_nma_published/tdm_npi.txt", sh);
    FILE *f = fopen(path, "rb");
    if (!f) {
        th_skip("tdm_npi.txt absent");
        return;
    }
    static char text[1 << 22];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    eann_model *teacher = NULL;
    eann_parse_error pe;
    CHECK(eann_model_parse(text, len, &teacher, &pe) == 0, "parse %s: %s", path, pe.msg);
    snprintf(path, sizeof path, "%s/eann_nma_published/reference_20.xyz", sh);
    xyz_file xf;
    CHECK(xyz_read(path, &xf, err, sizeof err) == 0, "%s", err);
    if (!teacher || xf.nframes < 20) return;
    int n = xf.nframes, sp[20][32];
    eann_sample s1[20], s2[20];
    eann_work *w;
    eann_work_new(teacher, 32, &w);
    for (int q = 0; q < n; q++) {
        const xyz_frame *fr = &xf.frames[q];
        for (int i = 0; i < fr->natoms; i++)
            sp[q][i] = eann_species_index(teacher, xyz_z_to_symbol(fr->z[i]));
        s1[q] = (eann_sample){fr->natoms, sp[q], fr->pos, {0}, 0};
        eann_predict(teacher, w, fr->natoms, sp[q], fr->pos, s1[q].ref);
        s2[q] = s1[q];
        if (q % 2)
            for (int a = 0; a < 3; a++)
                s2[q].ref[a] = -s2[q].ref[a];
    }
    char *txt[2];
    size_t tl[2];
    double r0[2], r1[2];
    for (int v = 0; v < 2; v++) {
        eann_spec spec = teacher->spec;
        spec.nwave = 4;
        for (int h = 0; h < 3; h++)
            spec.net[0].sizes[h] = h == 0 ? 12 : 16;
        spec.net[0].nhidden = 2;
        spec.net[0].sizes[3] = 3;
        eann_model *m = NULL;
        char msg[256];
        CHECK(eann_model_new(&spec, &m, msg, sizeof msg) == 0, "%s", msg);
        if (!m) return;
        eann_train_opts o;
        eann_train_opts_default(&o);
        o.epochs = 150;
        o.batch = 4;
        o.lr = 5e-3;
        o.patience = 25;
        o.seed = 3;
        eann_norm nm;
        double *phi = calloc(m->ntheta, sizeof(double));
        const eann_sample *s = v ? s2 : s1;
        eann_train_init(m, s, 20, &o, &nm, phi);
        eann_trainws *tw;
        eann_trainws_new(m, 32, &tw);
        eann_evaluate(m, tw, s, 20, 0, NULL, &r0[v]);
        eann_train_run(m, &nm, phi, s, 20, NULL, 0, &o, NULL, NULL);
        eann_evaluate(m, tw, s, 20, 0, NULL, &r1[v]);
        eann_model_write(m, &txt[v], &tl[v]);
        eann_trainws_free(tw);
        eann_norm_free(&nm);
        free(phi);
        eann_model_free(m);
    }
    printf("published n->pi* TDM as teacher (20 reference frames, every other label sign-flipped;\n"
           "  NOT quantum-chemistry labels): training RMSE %.4g -> %.4g a.u. (20 frames, no "
           "validation, 150 epochs)\n",
           r0[1], r1[1]);
    CHECK(r1[1] < 0.5 * r0[1], "teacher TDM: RMSE %.3g -> %.3g", r0[1], r1[1]);
    CHECK(tl[0] == tl[1] && !memcmp(txt[0], txt[1], tl[0]),
          "flipped and unflipped TDM labels give different models");
    free(txt[0]);
    free(txt[1]);
    eann_work_free(w);
    xyz_free(&xf);
    eann_model_free(teacher);
}

/* The trainer one epoch at a time: a run stopped after k epochs, saved
 * (eann_trainer_save) and loaded into a fresh trainer (eann_trainer_load)
 * ends with exactly the parameters of an uninterrupted run, for Adam and
 * L-BFGS; damaged or foreign states are refused and change nothing. */
static void resume_case(int kind, int opt, int radial) {
    dataset tr = teacher_data(kind, 14, 3), va = teacher_data(kind, 4, 4);
    eann_train_opts o;
    eann_train_opts_default(&o);
    o.optimizer = opt;
    o.train_radial = radial;
    o.epochs = 6;
    o.batch = 4;
    o.lr = 5e-3;
    o.seed = 9;
    double *res[2] = {NULL, NULL};
    size_t P = 0;
    for (int pass = 0; pass < 2; pass++) { /* 0: uninterrupted, 1: stopped after 2 and resumed */
        eann_model *m = small_model(kind, 2, 8, 1);
        eann_norm nm;
        P = m->ntheta;
        double *phi = calloc(P, sizeof(double));
        CHECK(eann_train_init(m, tr.s, tr.n, &o, &nm, phi) == 0, "train_init");
        eann_trainer *t;
        CHECK(eann_trainer_new(m, &nm, phi, tr.s, tr.n, va.s, va.n, &o, &t) == 0, "trainer_new");
        eann_progress pr;
        int k = 0;
        while (!eann_trainer_done(t) && (pass == 0 || k < 2)) {
            CHECK(eann_trainer_epoch(t, &pr) == 0, "epoch");
            if (pr.epoch == 0) break;
            k++;
        }
        if (pass == 1) {
            char *text, msg[512];
            size_t len;
            CHECK(eann_trainer_save(t, &text, &len) == 0, "save");
            eann_trainer_free(t);
            /* a fresh start (same data and options), then the saved state */
            eann_norm_free(&nm);
            CHECK(eann_train_init(m, tr.s, tr.n, &o, &nm, phi) == 0, "train_init 2");
            CHECK(eann_trainer_new(m, &nm, phi, tr.s, tr.n, va.s, va.n, &o, &t) == 0, "new 2");
            /* damaged texts are refused and leave phi alone */
            double *keep = malloc(sizeof(double) * P);
            memcpy(keep, phi, sizeof(double) * P);
            char *bad = malloc(len + 1);
            memcpy(bad, text, len + 1);
            char *e = strstr(bad, "\nend");
            CHECK(eann_trainer_load(t, &nm, bad, (size_t)(e - bad) - 40, msg, sizeof msg) ==
                      EANN_EFORMAT, "truncated state refused");
            char *sd = strstr(bad, "options 1 ");
            if (!sd) sd = strstr(bad, "options 2 ");
            sd[8] = sd[8] == '1' ? '2' : '1'; /* another optimizer */
            CHECK(eann_trainer_load(t, &nm, bad, len, msg, sizeof msg) == EANN_EFORMAT &&
                      strstr(msg, "another run"), "foreign state refused (%s)", msg);
            CHECK(!memcmp(keep, phi, sizeof(double) * P), "a refused state changed phi");
            free(bad);
            free(keep);
            CHECK(eann_trainer_load(t, &nm, text, len, msg, sizeof msg) == 0, "load: %s", msg);
            free(text);
            while (!eann_trainer_done(t)) {
                CHECK(eann_trainer_epoch(t, &pr) == 0, "epoch");
                if (pr.epoch == 0) break;
            }
        }
        eann_trainer_finish(t, NULL, NULL);
        eann_trainer_free(t);
        res[pass] = malloc(sizeof(double) * P);
        memcpy(res[pass], m->theta, sizeof(double) * P);
        eann_norm_free(&nm);
        free(phi);
        eann_model_free(m);
    }
    CHECK(!memcmp(res[0], res[1], sizeof(double) * P),
          "%s, %s%s: saved after 2 epochs and resumed differs from the uninterrupted run",
          eann_kind_name(kind), opt == EANN_OPT_LBFGS ? "L-BFGS" : "Adam", radial ? " + radial" : "");
    free(res[0]);
    free(res[1]);
    free_data(&tr);
    free_data(&va);
}

static void test_resume(void) {
    resume_case(EANN_DIPOLE, EANN_OPT_ADAM, 0);
    resume_case(EANN_TDM, EANN_OPT_LBFGS, 1);
    resume_case(EANN_POLARIZABILITY, EANN_OPT_ADAM, 1);
    resume_case(EANN_POLARIZABILITY, EANN_OPT_LBFGS, 0);
}

/* The mini-batch path (eann_batch_loss) against the per-molecule reference
 * (eann_sample_loss in turn): memcmp-identical gradients, predictions,
 * squared errors and losses, for batches split into chunks of 1, 3 and 40
 * molecules, in a shuffled order, with a species missing from some
 * molecules; both SIMD copies where available. */
static void batch_case(int kind, int nh, int width, int nchunk, int simd) {
    enum { NB = 11 };
    mol mols[NB];
    eann_sample s[NB];
    eann_model *m = small_model(kind, nh, width, 99 + kind);
    const int nc = kind == EANN_POLARIZABILITY ? 9 : 3;
    for (int f = 0; f < NB; f++) {
        int na = 1 + (f * 7) % MAXAT;
        random_mol(&mols[f], na);
        if (f % 4 == 1) /* a molecule without O, one without H */
            for (int i = 0; i < na; i++) mols[f].species[i] = 1;
        if (f % 4 == 2)
            for (int i = 0; i < na; i++) mols[f].species[i] = 0;
        s[f].natoms = na;
        s[f].species = mols[f].species;
        s[f].pos = mols[f].pos;
        for (int c = 0; c < 9; c++) s[f].ref[c] = c < nc ? 2 * urand() - 1 : 0;
        s[f].charge = f % 2 ? 0.0 : 0.3;
    }
    int idx[NB];
    for (int f = 0; f < NB; f++) idx[f] = (f * 5 + 3) % NB;
    eann_trainws *tw;
    eann_batchws *bw;
    CHECK(eann_trainws_new(m, MAXAT, &tw) == EANN_OK, "trainws_new");
    CHECK(eann_batchws_new(m, MAXAT, nchunk, &bw) == EANN_OK, "batchws_new");
    if (simd) CHECK(eann_work_set_simd(eann_trainws_work(tw), simd) == EANN_OK, "set_simd");
    double *g1 = calloc(m->ntheta, sizeof(double)), *g2 = calloc(m->ntheta, sizeof(double));
    double p1[NB * 9], p2[NB * 9], q1[NB], q2[NB], l1[NB], l2[NB];
    memset(p1, 0, sizeof p1);
    memset(p2, 0, sizeof p2);
    for (int f = 0; f < NB; f++)
        CHECK(eann_sample_loss(m, tw, &s[idx[f]], 0.3, 1.0 / NB, g1, p1 + 9 * f, &q1[f], &l1[f]) ==
                  EANN_OK,
              "sample_loss");
    CHECK(eann_batch_loss(m, bw, s, idx, NB, 0.3, 1.0 / NB, g2, p2, q2, l2) == EANN_OK,
          "batch_loss");
    int same = !memcmp(g1, g2, sizeof(double) * m->ntheta) && !memcmp(p1, p2, sizeof p1) &&
               !memcmp(q1, q2, sizeof q1) && !memcmp(l1, l2, sizeof l1);
    /* losses only (grad NULL: the validation pass) */
    memset(p2, 0, sizeof p2);
    CHECK(eann_batch_loss(m, bw, s, idx, NB, 0.3, 1.0 / NB, NULL, p2, q2, l2) == EANN_OK,
          "batch_loss without gradient");
    same = same && !memcmp(p1, p2, sizeof p1) && !memcmp(q1, q2, sizeof q1) &&
           !memcmp(l1, l2, sizeof l1);
    double gmax = 0;
    for (size_t q = 0; q < m->ntheta; q++) gmax = fmax(gmax, fabs(g1[q]));
    printf("  %-15s hidden %d x %2d, chunks of %2d, simd %d: batch == per molecule: %s\n",
           kind == EANN_DIPOLE ? "dipole" : kind == EANN_TDM ? "tdm" : "polarizability", nh, width,
           nchunk, simd, same ? "identical bits" : "DIFFERENT");
    CHECK(same, "batch path differs from the per-molecule reference");
    CHECK(gmax > 0 && isfinite(gmax), "batch test: zero or non-finite gradient");
    free(g1);
    free(g2);
    eann_batchws_free(bw);
    eann_trainws_free(tw);
    eann_model_free(m);
}

static void test_batch(void) {
    printf("mini-batch path against the per-molecule reference (memcmp)\n");
    const int kinds[3] = {EANN_DIPOLE, EANN_TDM, EANN_POLARIZABILITY};
    for (int k = 0; k < 3; k++) {
        batch_case(kinds[k], 2, 8, 1, 0);
        batch_case(kinds[k], 2, 19, 3, 0);
        batch_case(kinds[k], 1, 21, 40, 0);
        batch_case(kinds[k], 2, 8, 4, EANN_SIMD_PORTABLE);
    }
}

/* The training kernels of eann_kernels.c ("kernels for mini-batch
 * training"): the AVX2 copy against the portable one, memcmp, on random
 * data with sizes that leave vector tails. */
static void fill(double *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * urand();
}
static void test_train_kernels(void) {
    eann_work *probe = NULL;
    eann_model *m = small_model(EANN_DIPOLE, 1, 4, 1);
    eann_work_new(m, 1, &probe);
    int have = eann_work_set_simd(probe, EANN_SIMD_AVX2) == EANN_OK;
    eann_work_free(probe);
    eann_model_free(m);
    if (!have) {
        printf("training kernels: no AVX2 copy in this build/CPU; skipped\n");
        return;
    }
    const int P = EANN_SIMD_PORTABLE, V = EANN_SIMD_AVX2;
    int bad = 0;
    for (int rep = 0; rep < 3; rep++) {
        /* n c, M K and 6 c stay within 7 x 19 */
        const int n = 1 + rep * 3, c = 5 + rep * 6 + (rep == 2), M = 4 + rep * 4,
                  K = 3 + rep * 4, nseg = 3;
        const size_t nc = (size_t)n * c;
        double in[9][7 * 19], par[6][19], out[2][15][7 * 19];
        memset(out, 0, sizeof out);
        /* every entry set: the pair kernels and the weight gradients read
         * M K and 6 c entries, more than n c */
        const size_t all = 7 * 19;
        for (int a = 0; a < 9; a++) fill(in[a], all, -1, 1);
        fill(in[1], all, 0.05, 0.95); /* sigmoid values */
        fill(in[7], all, 0.5, 2.0);   /* rstd */
        for (int a = 0; a < 6; a++) fill(par[a], 19, 0.3, 1.5);
        for (int v = 0; v < 2; v++) {
            int simd = v ? V : P;
            double *o = out[v][0];
            for (int a = 0; a < 8; a++) memcpy(out[v][a], in[8], sizeof(double) * nc);
            double acc[4][19];
            for (int a = 0; a < 4; a++) memcpy(acc[a], par[5], sizeof acc[a]);
            eann_act2_backward(simd, n, c, in[0], in[1], in[2], in[3], in[4], par[0], par[1], in[5],
                               in[6], out[v][1], out[v][2], acc[0], acc[1], acc[2], acc[3]);
            for (int a = 0; a < 4; a++) memcpy(out[v][3] + a * 19, acc[a], sizeof acc[a]);
            eann_ln2_backward(simd, n, c, in[3], in[7], in[4], par[2], in[5], o);
            /* with parameter gradients (slots 10, 11: [2][19]), then without */
            memcpy(out[v][10], par[4], sizeof(double) * 38);
            memcpy(out[v][11], par[3], sizeof(double) * 38);
            eann_ln_backward_sel(simd, n, c, in[3], in[7], par[2], in[5], out[v][8], out[v][10],
                                 out[v][10] + 19);
            eann_act_backward_sel(simd, n, c, in[0], in[1], par[0], par[1], in[5], out[v][9],
                                  out[v][11], out[v][11] + 19);
            eann_ln_backward_sel(simd, n, c, in[3], in[7], par[2], in[6], out[v][13], NULL, NULL);
            eann_act_backward_sel(simd, n, c, in[0], in[1], par[0], par[1], in[6], out[v][14],
                                  NULL, NULL);
            memcpy(out[v][12], in[8], sizeof(double) * (size_t)c * 6);
            eann_weight_grad_tiled(simd, n, c, 6, in[2], in[3], out[v][12]);
            /* pair kernels: A, Ad [M], W, Wd [K], S [M][K] */
            memcpy(out[v][4], in[8], sizeof(double) * (size_t)M * K);
            eann_pair_tangent_add(simd, M, K, in[0], in[1], in[2], in[3], out[v][4]);
            eann_pair_adjoint(simd, M, K, in[0], in[1], in[4], in[5], out[v][5], out[v][5] + K);
            /* weight gradient in segments: rows 0..n-1 split into nseg */
            int seg[4] = {0, n / 3, n / 2, n};
            memcpy(out[v][6], in[8], sizeof(double) * (size_t)c * 6);
            eann_weight_grad_seg2(simd, nseg, seg, c, 6, in[0], in[1], in[2], in[3], out[v][6]);
            /* Adam */
            double m1[19], m2[19], ph[19];
            memcpy(m1, par[3], sizeof m1);
            memcpy(m2, par[4], sizeof m2);
            memcpy(ph, par[5], sizeof ph);
            eann_adam_step(simd, (size_t)c, in[0], m1, m2, ph, 0.9, 0.999, 0.3, 0.02, 1e-3, 1e-8);
            memcpy(out[v][7], m1, sizeof m1);
            memcpy(out[v][7] + 19, m2, sizeof m2);
            memcpy(out[v][7] + 38, ph, sizeof ph);
        }
        for (int a = 0; a < 15; a++)
            if (memcmp(out[0][a], out[1][a], sizeof out[0][a])) {
                printf("  kernel test %d (rep %d) differs\n", a, rep);
                bad++;
            }
    }
    printf("training kernels: AVX2 copy == portable copy (memcmp): %s\n", bad ? "DIFFERENT" : "yes");
    CHECK(!bad, "training kernels: AVX2 and portable copies differ");
}

/* Adam as the trainer runs it, against Kingma & Ba (2015), Algorithm 1,
 * written out here with its published constants (beta1 0.9, beta2 0.999,
 * epsilon 1e-8): g_t the gradient of the mean loss with respect to phi
 * (rs and inta fixed: their entries 0), m_t = b1 m + (1 - b1) g,
 * v_t = b2 v + (1 - b2) g^2, phi -= lr (m_t / (1 - b1^t)) /
 * (sqrt(v_t / (1 - b2^t)) + eps). One training frame, so that an epoch is
 * one step whose gradient has the trainer's own bits (eann_batch_loss of
 * that frame, scale 1, then eann_norm_grad); the trajectory of four
 * steps must agree to rounding (measured: bit for bit; tolerance 1e-12).
 * The first step alone is ~lr sign(g) for any b1, b2; from the second on
 * they matter (b1 0 instead of 0.9 moves phi by ~lr). A dipole and a
 * polarizability model (3 and 9 components). */
static void adam_case(int kind) {
    dataset tr = teacher_data(kind, 1, 11);
    eann_model *m = small_model(kind, 1, 5, 2);
    eann_train_opts o;
    eann_train_opts_default(&o);
    o.optimizer = EANN_OPT_ADAM;
    o.epochs = 4;
    o.batch = 1;
    o.lr = 1e-2;
    o.patience = 100;
    o.seed = 5;
    eann_norm nm;
    const size_t P = m->ntheta, SK = (size_t)m->spec.nspecies * m->spec.nwave;
    double *phi = calloc(P, sizeof(double)), *ref = calloc(P, sizeof(double)),
           *mom1 = calloc(P, sizeof(double)), *mom2 = calloc(P, sizeof(double)),
           *gth = calloc(P, sizeof(double)), *g = calloc(P, sizeof(double)),
           *prev = calloc(P, sizeof(double));
    eann_batchws *bw;
    CHECK(eann_train_init(m, tr.s, tr.n, &o, &nm, phi) == 0, "adam: train_init");
    CHECK(eann_batchws_new(m, MAXAT, 1, &bw) == EANN_OK, "adam: batchws_new");
    memcpy(ref, phi, sizeof(double) * P);
    eann_trainer *t;
    CHECK(eann_trainer_new(m, &nm, phi, tr.s, tr.n, NULL, 0, &o, &t) == 0, "adam: trainer_new");
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double b1t = 1, b2t = 1, worst = 0, moved = 0, start = -1;
    int steps = 0;
    for (int e = 1; e <= 4; e++) {
        /* the reference step from ref (m->theta = fold(ref) for the gradient) */
        eann_norm_fold(m, &nm, ref, m->theta);
        eann_model_sync(m);
        double pred[9], sq, l;
        memset(gth, 0, sizeof(double) * P);
        CHECK(eann_batch_loss(m, bw, tr.s, NULL, 1, o.charge_weight, 1.0, gth, pred, &sq, &l) == 0,
              "adam: batch_loss");
        eann_norm_grad(m, &nm, gth, g);
        for (size_t q = 0; q < SK; q++) g[m->off_rs + q] = g[m->off_inta + q] = 0;
        b1t *= b1;
        b2t *= b2;
        for (size_t q = 0; q < P; q++) {
            mom1[q] = b1 * mom1[q] + (1 - b1) * g[q];
            mom2[q] = b2 * mom2[q] + (1 - b2) * g[q] * g[q];
            ref[q] -= o.lr * (mom1[q] / (1 - b1t)) / (sqrt(mom2[q] / (1 - b2t)) + eps);
        }
        /* the trainer's step from phi (its m->theta = fold(phi)) */
        memcpy(prev, phi, sizeof(double) * P);
        eann_norm_fold(m, &nm, phi, m->theta);
        eann_model_sync(m);
        eann_progress pr;
        CHECK(eann_trainer_epoch(t, &pr) == 0 && pr.epoch == e, "adam: epoch %d", e);
        steps += pr.epoch == e;
        /* the work and the start it reports: one molecule gradient per step; the
         * start RMSE is the first step's, sqrt(sum of squared errors / outputs) */
        CHECK(pr.ngrad == e, "adam: %ld molecule gradients after %d one-frame steps", pr.ngrad, e);
        if (e == 1) start = sqrt(sq / eann_kind_outputs(kind));
        CHECK(pr.start_rmse == start, "adam: start RMSE %.17g, the first step's is %.17g",
              pr.start_rmse, start);
        for (size_t q = 0; q < P; q++) {
            worst = th_worst(worst, fabs(phi[q] - ref[q]));
            moved = th_worst(moved, fabs(phi[q] - prev[q]));
        }
    }
    printf("  Adam, %s: 4 steps, max |phi - Algorithm 1| = %.2e (lr %g; largest move %.2e)\n",
           eann_kind_name(kind), worst, o.lr, moved);
    CHECK(steps == 4 && worst <= 1e-12 && moved > 0.1 * o.lr,
          "adam, %s: %d steps, trainer vs Kingma & Ba Algorithm 1: max |diff| %.3g (tolerance "
          "1e-12), a step of %.3g", eann_kind_name(kind), steps, worst, moved);
    {   /* an empty batch is no error and adds nothing */
        double pred[9], sq = -1, l = -1;
        g[0] = 0.25;
        CHECK(eann_batch_loss(m, bw, NULL, NULL, 0, 0, 1.0, g, pred, &sq, &l) == EANN_OK &&
                  g[0] == 0.25,
              "adam: a batch of 0 molecules");
    }
    eann_trainer_free(t);
    eann_batchws_free(bw);
    eann_norm_free(&nm);
    free(phi); free(ref); free(mom1); free(mom2); free(gth); free(g); free(prev);
    eann_model_free(m);
    free_data(&tr);
}

static void test_adam(void) {
    printf("Adam against Kingma & Ba's Algorithm 1 (one frame, 4 steps)\n");
    adam_case(EANN_DIPOLE);
    adam_case(EANN_POLARIZABILITY);
    /* the defaults eann_train.h documents */
    eann_train_opts o;
    eann_train_opts_default(&o);
    CHECK(o.optimizer == EANN_OPT_ADAM && o.epochs == 100 && o.batch == 32 && o.lr == 1e-3 &&
              o.lr_decay == 0.5 && o.patience == 20 && o.lr_min == 1e-5 && o.lbfgs_m == 10 &&
              o.charge_weight == 0 && o.train_radial == 0 && o.diverge_factor == 100 &&
              o.progress == NULL,
          "eann_train_opts_default differs from the defaults eann_train.h documents");
}

int main(void) {
    test_adam();
    test_train_kernels();
    test_batch();
    test_tdm_teacher();
    test_fd();
    test_predict_agrees();
    test_norm();
    test_training();
    test_resume();
    return th_done("test_eann_train");
}
