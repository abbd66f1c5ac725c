/* SPDX-License-Identifier: MIT */
/* test_eann.c - EANN: published NMA models against reference_20.xyz,
 * finite-difference checks of every analytic derivative, rotation /
 * translation / permutation symmetry, model text parser and writer.
 * Small random models built here make every part run without ../shared. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "eann_kernels.h" /* private kernels: their copies compared bit for bit */
#include "eann_train.h"
#include "harness.h"
#include "xyz.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 12345;
static double urand(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}
static double srand1(void) { return 2.0 * urand() - 1.0; }

static double maxabs(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s = th_worst(s, fabs(x[i]));
    return s;
}

/* random rotation matrix from a random unit quaternion */
static void random_rotation(double R[9]) {
    double q[4], n = 0;
    for (int i = 0; i < 4; i++) { q[i] = srand1(); n += q[i] * q[i]; }
    n = sqrt(n);
    double a = q[0] / n, b = q[1] / n, c = q[2] / n, d = q[3] / n;
    double M[9] = {a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c),
                   2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b),
                   2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d};
    memcpy(R, M, sizeof M);
}

static void rot_vec(const double R[9], const double *v, double *o) {
    for (int a = 0; a < 3; a++) o[a] = R[3 * a] * v[0] + R[3 * a + 1] * v[1] + R[3 * a + 2] * v[2];
}

/* Output transformed like the model's kind: vector R v or tensor R A R^T. */
static void rot_out(int kind, const double R[9], const double *in, double *o) {
    if (kind != EANN_POLARIZABILITY) { rot_vec(R, in, o); return; }
    double T[9];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double s = 0;
            for (int c = 0; c < 3; c++) s += R[3 * a + c] * in[3 * c + b];
            T[3 * a + b] = s;
        }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double s = 0;
            for (int c = 0; c < 3; c++) s += T[3 * a + c] * R[3 * b + c];
            o[3 * a + b] = s;
        }
}

static int g_nipsin = 3, g_nwave = 4, g_width = 0; /* g_width 0: hidden widths 5 + 2h + t */

static eann_model *random_model(int kind, int nhidden, uint64_t seed) {
    eann_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = kind;
    sp.nspecies = 3;
    strcpy(sp.species[0], "H");
    strcpy(sp.species[1], "C");
    strcpy(sp.species[2], "O");
    sp.mass[0] = 1.008; sp.mass[1] = 12.011; sp.mass[2] = 15.999;
    sp.cutoff = 4.5;
    sp.min_distance = 0.001;
    sp.nipsin = g_nipsin;
    sp.nwave = g_nwave;
    sp.nnets = kind == EANN_POLARIZABILITY ? 3 : 1;
    const char *roles[3] = {"grad_sym", "grad_outer", "trace"};
    for (int t = 0; t < sp.nnets; t++) {
        eann_net_spec *ns = &sp.net[t];
        strcpy(ns->role, kind == EANN_DIPOLE ? "charge" : kind == EANN_TDM ? "tdm3" : roles[t]);
        ns->nhidden = nhidden;
        ns->sizes[0] = sp.nipsin * sp.nwave;
        for (int h = 1; h <= nhidden; h++) ns->sizes[h] = g_width ? g_width + h - 1 + t : 5 + 2 * h + t;
        ns->sizes[nhidden + 1] = kind == EANN_TDM ? 3 : 1;
        ns->ln_eps = 1e-5;
    }
    eann_model *m = NULL;
    char msg[200];
    int rc = eann_model_new(&sp, &m, msg, sizeof msg);
    CHECK(rc == 0, "eann_model_new: %s", msg);
    if (rc) return NULL;
    eann_model_init_random(m, seed);
    return m;
}

/* random molecule of n atoms (species 0..2) in a box of side L, pairs >= 0.8 A */
static void random_molecule_box(int n, int *sp, double *x, double L) {
    for (int i = 0; i < n; i++) {
        sp[i] = i % 3 == 2 ? 0 : (int)(urand() * 3);
        for (;;) {
            for (int a = 0; a < 3; a++) x[3 * i + a] = L * urand() + 0.5;
            int ok = 1;
            for (int j = 0; j < i; j++) {
                double d2 = 0;
                for (int a = 0; a < 3; a++) d2 += (x[3 * i + a] - x[3 * j + a]) * (x[3 * i + a] - x[3 * j + a]);
                if (d2 < 0.64) ok = 0;
            }
            if (ok) break;
        }
    }
}

static void random_molecule(int n, int *sp, double *x) { random_molecule_box(n, sp, x, 3.2); }

/* ---- building blocks ---------------------------------------------------- */

static void test_blocks(void) {
    enum { N = 3, C = 7, O = 5 };
    double x[N * C], W[O * C], WT[C * O], b[O], z[N * O], dz[N * O];
    for (int i = 0; i < N * C; i++) x[i] = srand1();
    for (int i = 0; i < O * C; i++) W[i] = srand1();
    for (int i = 0; i < O; i++) b[i] = srand1();
    for (int i = 0; i < N * O; i++) dz[i] = srand1();
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++) WT[c * O + o] = W[o * C + c];
    /* linear: L = sum dz * z */
    double dx[N * C], dW[O * C] = {0}, db[O] = {0};
    eann_linear_backward(N, C, O, x, W, dz, dx, dW, db);
    const double hstep = 1e-6;
#define LIN_L(res)                                             \
    do {                                                       \
        eann_linear_forward(N, C, O, x, WT, b, z);             \
        res = 0;                                               \
        for (int i = 0; i < N * O; i++) res += dz[i] * z[i];   \
    } while (0)
    double worst = 0;
    for (int i = 0; i < N * C; i++) {
        double s = x[i], lp, lm;
        x[i] = s + hstep; LIN_L(lp);
        x[i] = s - hstep; LIN_L(lm);
        x[i] = s;
        worst = th_worst(worst, fabs((lp - lm) / (2 * hstep) - dx[i]) / fmax(fabs(dx[i]), 1));
    }
    for (int i = 0; i < O * C; i++) {
        double s = W[i], lp, lm;
        int o = i / C, c = i % C;
        WT[c * O + o] = s + hstep; LIN_L(lp);
        WT[c * O + o] = s - hstep; LIN_L(lm);
        WT[c * O + o] = s;
        worst = th_worst(worst, fabs((lp - lm) / (2 * hstep) - dW[i]) / fmax(fabs(dW[i]), 1));
    }
    for (int i = 0; i < O; i++) {
        double s = b[i], lp, lm;
        b[i] = s + hstep; LIN_L(lp);
        b[i] = s - hstep; LIN_L(lm);
        b[i] = s;
        worst = th_worst(worst, fabs((lp - lm) / (2 * hstep) - db[i]) / fmax(fabs(db[i]), 1));
    }
    CHECK(worst <= 1e-7, "linear backward vs finite differences: rel err %.3g", worst);

    /* LayerNorm: L = sum dy * y over (z, gamma, beta) */
    double zz[N * O], g[O], be[O], zhat[N * O], rstd[N], y[N * O], dy[N * O], dzz[N * O];
    double dg[O] = {0}, dbe[O] = {0};
    for (int i = 0; i < N * O; i++) { zz[i] = 2 * srand1(); dy[i] = srand1(); }
    for (int i = 0; i < O; i++) { g[i] = 1 + 0.5 * srand1(); be[i] = srand1(); }
    eann_layernorm_forward(N, O, zz, g, be, 1e-5, zhat, rstd, y);
    eann_layernorm_backward(N, O, zhat, rstd, g, dy, dzz, dg, dbe);
#define LN_L(res)                                                      \
    do {                                                               \
        eann_layernorm_forward(N, O, zz, g, be, 1e-5, zhat, rstd, y);  \
        res = 0;                                                       \
        for (int i = 0; i < N * O; i++) res += dy[i] * y[i];           \
    } while (0)
    worst = 0;
    double *vars[3] = {zz, g, be}, *grads[3] = {dzz, dg, dbe};
    int lens[3] = {N * O, O, O};
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < lens[v]; i++) {
            double s = vars[v][i], lp, lm;
            vars[v][i] = s + hstep; LN_L(lp);
            vars[v][i] = s - hstep; LN_L(lm);
            vars[v][i] = s;
            worst = th_worst(worst, fabs((lp - lm) / (2 * hstep) - grads[v][i]) / fmax(fabs(grads[v][i]), 1));
        }
    CHECK(worst <= 1e-7, "layernorm backward vs finite differences: rel err %.3g", worst);
    /* the normalised rows have mean 0 and (biased) variance var/(var+eps) */
    double mu = 0;
    for (int i = 0; i < O; i++) mu += zhat[i];
    CHECK_CLOSE(mu, 0.0, 1e-14, "layernorm mean");

    /* activation: L = sum da * a over (y, alpha, beta) */
    double al[O], bt[O], sg[N * O], a[N * O], da[N * O], dyy[N * O], dal[O] = {0}, dbt[O] = {0};
    for (int i = 0; i < N * O; i++) { y[i] = 3 * srand1(); da[i] = srand1(); }
    for (int i = 0; i < O; i++) { al[i] = 1 + 0.5 * srand1(); bt[i] = 0.5 + urand(); }
    eann_act_forward(N, O, y, al, bt, sg, a);
    eann_act_backward(N, O, y, sg, al, bt, da, dyy, dal, dbt);
    /* value: alpha * (beta y) * sigmoid(beta y) */
    CHECK_REL(a[4], al[4] * (bt[4] * y[4]) / (1 + exp(-bt[4] * y[4])), 1e-15, "activation value");
#define ACT_L(res)                                               \
    do {                                                         \
        eann_act_forward(N, O, y, al, bt, sg, a);                \
        res = 0;                                                 \
        for (int i = 0; i < N * O; i++) res += da[i] * a[i];     \
    } while (0)
    worst = 0;
    double *vars2[3] = {y, al, bt}, *grads2[3] = {dyy, dal, dbt};
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < lens[v]; i++) {
            double s = vars2[v][i], lp, lm;
            vars2[v][i] = s + hstep; ACT_L(lp);
            vars2[v][i] = s - hstep; ACT_L(lm);
            vars2[v][i] = s;
            worst = th_worst(worst, fabs((lp - lm) / (2 * hstep) - grads2[v][i]) / fmax(fabs(grads2[v][i]), 1));
        }
    CHECK(worst <= 1e-7, "activation backward vs finite differences: rel err %.3g", worst);
}

/* eann_exp_n against libm: within 1 ulp (of libm's result) on random
 * arguments over the whole fast range and near 0, exact at 0, libm beyond. */
static void test_exp(void) {
    enum { N = 4099 };
    static double x[N], y[N];
    double worst = 0;
    for (int rep = 0; rep < 40; rep++) {
        double span = rep % 4 == 0 ? 708.0 : rep % 4 == 1 ? 30.0 : rep % 4 == 2 ? 1.0 : 1e-3;
        for (int i = 0; i < N; i++) x[i] = span * srand1();
        eann_exp_n(N, x, y);
        for (int i = 0; i < N; i++) {
            double e = exp(x[i]);
            worst = th_worst(worst, fabs(y[i] - e) / (nextafter(e, INFINITY) - e));
        }
    }
    CHECK(worst <= 1.0, "eann_exp_n: %.3g ulp from libm exp", worst);
    double sp[8] = {0.0, -0.0, 708.0, -708.0, 709.5, -720.0, -800.0, NAN}, sy[8];
    eann_exp_n(8, sp, sy);
    CHECK(sy[0] == 1.0 && sy[1] == 1.0, "exp(0) = %.17g", sy[0]);
    CHECK(fabs(sy[2] - exp(708.0)) <= 2 * (nextafter(exp(708.0), INFINITY) - exp(708.0)), "exp(708)");
    CHECK(sy[4] == exp(709.5) && sy[5] == exp(-720.0) && sy[6] == 0.0 && isnan(sy[7]),
          "exp outside the fast range: %g %g %g %g", sy[4], sy[5], sy[6], sy[7]);
    memcpy(y, x, sizeof x); /* in place gives the same bits */
    eann_exp_n(N, y, y);
    double y2[N];
    eann_exp_n(N, x, y2);
    CHECK(!memcmp(y, y2, sizeof y2), "eann_exp_n in place differs");
}

/* ---- model-level derivative checks --------------------------------------- */

/* L = sum_r c[r] . rho[r]; compares dL/dx (descriptor backward) with central
 * differences. Returns the worst error relative to max |dL/dx|. */
static double fd_descriptor_positions(const eann_model *m, eann_work *w, int n, const int *sp,
                                      double *x, double hstep) {
    const int D = m->ndensity;
    double *c = malloc(sizeof(double) * (size_t)n * D), *g = calloc((size_t)n * 3, sizeof(double));
    for (int i = 0; i < n * D; i++) c[i] = srand1();
    eann_setup(m, w, n, sp, x);
    eann_descriptor_forward(m, w);
    eann_descriptor_backward(m, w, c, g, NULL);
    double scale = maxabs(g, 3 * n), worst = 0;
    for (int i = 0; i < 3 * n; i++) {
        double s = x[i], L[2];
        for (int k = 0; k < 2; k++) {
            x[i] = s + (k ? -hstep : hstep);
            eann_setup(m, w, n, sp, x);
            eann_descriptor_forward(m, w);
            double v = 0;
            for (int q = 0; q < n * D; q++) v += c[q] * w->rho[q];
            L[k] = v;
        }
        x[i] = s;
        worst = th_worst(worst, fabs((L[0] - L[1]) / (2 * hstep) - g[i]) / scale);
    }
    free(c);
    free(g);
    return worst;
}

/* dE_t/dx from eann_scalar vs central differences of E_t. */
static double fd_scalar_positions(const eann_model *m, eann_work *w, int t, int n, const int *sp,
                                  double *x, double hstep, double *scale_out) {
    double *g = malloc(sizeof(double) * 3 * (size_t)n);
    eann_setup(m, w, n, sp, x);
    eann_descriptor_forward(m, w);
    eann_scalar(m, w, t, g);
    double scale = maxabs(g, 3 * n), worst = 0;
    *scale_out = scale;
    for (int i = 0; i < 3 * n; i++) {
        double s = x[i], E[2];
        for (int k = 0; k < 2; k++) {
            x[i] = s + (k ? -hstep : hstep);
            eann_setup(m, w, n, sp, x);
            eann_descriptor_forward(m, w);
            E[k] = eann_scalar(m, w, t, NULL);
        }
        x[i] = s;
        worst = th_worst(worst, fabs((E[0] - E[1]) / (2 * hstep) - g[i]) / fmax(scale, 1e-300));
    }
    free(g);
    return worst;
}

/* Network input gradient (drho) and weight gradient (dtheta) of
 * L = sum c . out_t vs central differences. Only a sample of weights. */
static void fd_network(eann_model *m, eann_work *w, int t, int n, const int *sp, const double *x,
                       const char *what) {
    const int D = m->ndensity;
    const eann_net_spec *ns = &m->spec.net[t];
    const int no = ns->sizes[ns->nhidden + 1];
    eann_setup(m, w, n, sp, x);
    eann_descriptor_forward(m, w);
    double *rho = malloc(sizeof(double) * (size_t)n * D);
    memcpy(rho, w->rho, sizeof(double) * (size_t)n * D);
    double *c = malloc(sizeof(double) * (size_t)n * no);
    for (int i = 0; i < n * no; i++) c[i] = srand1();
    double *dth = calloc(m->ntheta, sizeof(double)), *drho = malloc(sizeof(double) * (size_t)n * D);
    eann_net_forward(m, w, t);
    eann_net_backward(m, w, t, c, dth);
    memcpy(drho, w->drho, sizeof(double) * (size_t)n * D);
#define NET_L(res)                                                  \
    do {                                                            \
        eann_net_forward(m, w, t);                                  \
        res = 0;                                                    \
        for (int q = 0; q < n * no; q++) res += c[q] * w->out[t][q]; \
    } while (0)
    double scale = maxabs(drho, n * D), worst = 0;
    for (int i = 0; i < n * D; i++) {
        double h = 1e-6 * fmax(fabs(rho[i]), 1.0), lp, lm;
        w->rho[i] = rho[i] + h; NET_L(lp);
        w->rho[i] = rho[i] - h; NET_L(lm);
        w->rho[i] = rho[i];
        worst = th_worst(worst, fabs((lp - lm) / (2 * h) - drho[i]) / scale);
    }
    CHECK(worst <= 1e-7, "%s net %d input gradient vs finite differences: rel err %.3g", what, t, worst);
    /* weights: every array of net t, a few entries each */
    worst = 0;
    double dscale = 0;
    for (int ia = 3; ia < m->narrays; ia++) {
        const eann_array *A = &m->arrays[ia];
        char pre[16];
        snprintf(pre, sizeof pre, "net%d.", t);
        if (strncmp(A->name, pre, strlen(pre))) continue;
        for (size_t q = 0; q < A->n; q++) dscale = th_worst(dscale, fabs(dth[A->off + q]));
    }
    for (int ia = 3; ia < m->narrays; ia++) {
        const eann_array *A = &m->arrays[ia];
        char pre[16];
        snprintf(pre, sizeof pre, "net%d.", t);
        if (strncmp(A->name, pre, strlen(pre))) continue;
        for (int k = 0; k < 3; k++) {
            size_t q = A->off + (size_t)(urand() * (double)A->n);
            double s = m->theta[q], h = 1e-6 * fmax(fabs(s), 1.0), lp, lm;
            m->theta[q] = s + h; eann_model_sync(m); NET_L(lp);
            m->theta[q] = s - h; eann_model_sync(m); NET_L(lm);
            m->theta[q] = s; eann_model_sync(m);
            worst = th_worst(worst, fabs((lp - lm) / (2 * h) - dth[q]) / dscale);
        }
    }
    CHECK(worst <= 1e-7, "%s net %d weight gradient vs finite differences: rel err %.3g", what, t, worst);
    free(rho); free(c); free(dth); free(drho);
}

/* descriptor parameters (rs, inta, params): L = sum c . rho */
static void fd_descriptor_params(eann_model *m, eann_work *w, int n, const int *sp, const double *x) {
    const int D = m->ndensity;
    double *c = malloc(sizeof(double) * (size_t)n * D), *dth = calloc(m->ntheta, sizeof(double));
    for (int i = 0; i < n * D; i++) c[i] = srand1();
    eann_setup(m, w, n, sp, x);
    eann_descriptor_forward(m, w);
    eann_descriptor_backward(m, w, c, NULL, dth);
    size_t nd = m->off_params + (size_t)m->spec.nspecies * m->spec.nwave;
    double scale = maxabs(dth, (int)nd), worst = 0;
    for (size_t q = 0; q < nd; q++) {
        double s = m->theta[q], h = 1e-6 * fmax(fabs(s), 1.0), L[2];
        for (int k = 0; k < 2; k++) {
            m->theta[q] = s + (k ? -h : h);
            eann_setup(m, w, n, sp, x);
            eann_descriptor_forward(m, w);
            double v = 0;
            for (int i = 0; i < n * D; i++) v += c[i] * w->rho[i];
            L[k] = v;
        }
        m->theta[q] = s;
        worst = th_worst(worst, fabs((L[0] - L[1]) / (2 * h) - dth[q]) / scale);
    }
    CHECK(worst <= 1e-7, "descriptor rs/inta/params gradient vs finite differences: rel err %.3g", worst);
    free(c);
    free(dth);
}

/* Full parameter gradient of L = c . output (dipole, tdm) through
 * eann_head_backward, eann_net_backward and eann_descriptor_backward vs
 * central differences, on a sample of theta (every array). */
static void fd_training_gradient(eann_model *m, eann_work *w, int n, const int *sp, const double *x,
                                 const char *what) {
    double c[3] = {srand1(), srand1(), srand1()}, out[9];
    double *dth = calloc(m->ntheta, sizeof(double)), *dout = malloc(sizeof(double) * 3 * (size_t)n);
    eann_predict(m, w, n, sp, x, out);
    CHECK(eann_head_backward(m, w, c, dout) == 0, "head_backward");
    eann_net_backward(m, w, 0, dout, dth);
    eann_descriptor_backward(m, w, w->drho, NULL, dth);
    double scale = maxabs(dth, (int)m->ntheta), worst = 0;
    for (int ia = 0; ia < m->narrays; ia++) {
        const eann_array *A = &m->arrays[ia];
        for (int k = 0; k < 2; k++) {
            size_t q = A->off + (size_t)(urand() * (double)A->n);
            double s = m->theta[q], h = 1e-6 * fmax(fabs(s), 1.0), L[2];
            for (int j = 0; j < 2; j++) {
                m->theta[q] = s + (j ? -h : h);
                eann_model_sync(m);
                eann_predict(m, w, n, sp, x, out);
                L[j] = c[0] * out[0] + c[1] * out[1] + c[2] * out[2];
            }
            m->theta[q] = s;
            eann_model_sync(m);
            worst = th_worst(worst, fabs((L[0] - L[1]) / (2 * h) - dth[q]) / scale);
        }
    }
    CHECK(worst <= 1e-7, "%s: parameter gradient of the output vs finite differences: rel err %.3g",
          what, worst);
    free(dth);
    free(dout);
}

/* ---- symmetry ------------------------------------------------------------ */

/* Largest violation of rotation, translation and permutation symmetry over
 * `trials` random transformations, relative to max |output|. */
static double symmetry_violation(const eann_model *m, eann_work *w, int n, const int *sp,
                                 const double *x, int trials) {
    int no = eann_kind_outputs(m->spec.kind);
    double base[9], o1[9], o2[9], R[9];
    double *y = malloc(sizeof(double) * 3 * (size_t)n);
    int *sp2 = malloc(sizeof(int) * (size_t)n), *perm = malloc(sizeof(int) * (size_t)n);
    CHECK(eann_predict(m, w, n, sp, x, base) == 0, "predict");
    double scale = fmax(maxabs(base, no), 1e-300), worst = 0;
    if (m->spec.kind == EANN_TDM) {
        /* rounding scale of u + v + W u x v: the terms, not their sum */
        double u[3], v[3], W, c[3];
        eann_tdm_parts(m, w, u, v, &W);
        c[0] = W * (u[1] * v[2] - u[2] * v[1]);
        c[1] = W * (u[2] * v[0] - u[0] * v[2]);
        c[2] = W * (u[0] * v[1] - u[1] * v[0]);
        scale = th_worst(scale, fmax(maxabs(u, 3), fmax(maxabs(v, 3), maxabs(c, 3))));
    }
    for (int tr = 0; tr < trials; tr++) {
        random_rotation(R);
        double shift[3] = {5 * srand1(), 5 * srand1(), 5 * srand1()};
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(urand() * (i + 1)), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        for (int i = 0; i < n; i++) {
            rot_vec(R, x + 3 * perm[i], y + 3 * i);
            for (int a = 0; a < 3; a++) y[3 * i + a] += shift[a];
            sp2[i] = sp[perm[i]];
        }
        CHECK(eann_predict(m, w, n, sp2, y, o1) == 0, "predict");
        rot_out(m->spec.kind, R, base, o2);
        for (int k = 0; k < no; k++) worst = th_worst(worst, fabs(o1[k] - o2[k]) / scale);
    }
    free(y); free(sp2); free(perm);
    return worst;
}

/* ---- model text ------------------------------------------------------------ */

static int same_model(const eann_model *a, const eann_model *b) {
    if (a->ntheta != b->ntheta || memcmp(a->theta, b->theta, sizeof(double) * a->ntheta)) return 0;
    if (a->spec.kind != b->spec.kind || a->spec.nspecies != b->spec.nspecies) return 0;
    if (memcmp(a->spec.mass, b->spec.mass, sizeof a->spec.mass)) return 0;
    if (memcmp(&a->spec.cutoff, &b->spec.cutoff, sizeof(double)) ||
        memcmp(&a->spec.min_distance, &b->spec.min_distance, sizeof(double)))
        return 0;
    for (int t = 0; t < a->spec.nnets; t++)
        if (memcmp(&a->spec.net[t].ln_eps, &b->spec.net[t].ln_eps, sizeof(double)) ||
            a->spec.net[t].nhidden != b->spec.net[t].nhidden ||
            strcmp(a->spec.net[t].role, b->spec.net[t].role))
            return 0;
    return 1;
}

/* Replace line `line` (1-based) of text by `repl` (NULL: delete it; also
 * truncating everything after it when trunc). Returns a malloc'd string. */
static char *edit_line(const char *text, int line, const char *repl, int trunc) {
    size_t n = strlen(text);
    char *o = malloc(n + (repl ? strlen(repl) : 0) + 4);
    const char *p = text;
    size_t ol = 0;
    for (int l = 1; *p; l++) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p + 1) : strlen(p);
        if (l == line) {
            if (repl) { memcpy(o + ol, repl, strlen(repl)); ol += strlen(repl); o[ol++] = '\n'; }
            if (trunc) break;
        } else {
            memcpy(o + ol, p, len);
            ol += len;
        }
        p += len;
    }
    o[ol] = '\0';
    return o;
}

static int line_of(const char *text, const char *prefix) {
    int l = 1;
    for (const char *p = text; *p; l++) {
        if (!strncmp(p, prefix, strlen(prefix))) return l;
        const char *e = strchr(p, '\n');
        if (!e) break;
        p = e + 1;
    }
    return -1;
}

static void expect_bad(const char *text, int line, const char *needle, const char *what) {
    eann_model *m = NULL;
    eann_parse_error pe;
    int rc = eann_model_parse(text, strlen(text), &m, &pe);
    CHECK(rc == EANN_EFORMAT && !m, "%s: accepted (rc %d)", what, rc);
    CHECK(pe.line == line, "%s: error on line %d, expected %d (%s)", what, pe.line, line, pe.msg);
    CHECK(!needle || strstr(pe.msg, needle), "%s: message '%s' lacks '%s'", what, pe.msg, needle);
    eann_model_free(m);
}

static void test_text(const char *text, const char *what) {
    eann_model *m = NULL, *m2 = NULL;
    eann_parse_error pe;
    int rc = eann_model_parse(text, strlen(text), &m, &pe);
    CHECK(rc == 0, "%s: parse: line %d: %s", what, pe.line, pe.msg);
    if (rc) return;
    char *out;
    size_t len;
    CHECK(eann_model_write(m, &out, &len) == 0, "write");
    rc = eann_model_parse(out, len, &m2, &pe);
    CHECK(rc == 0 && same_model(m, m2), "%s: parse -> write -> parse not bit-identical", what);
    CHECK(len == strlen(text) && !memcmp(out, text, len), "%s: write(parse(text)) != text", what);
    free(out);
    eann_model_free(m2);

    /* damaged texts */
    char *t;
    int la = line_of(text, "array rs ");
    int ln = line_of(text, "narrays");
    t = edit_line(text, la + 5, NULL, 1); /* truncated inside rs: refused at the header */
    expect_bad(t, ln, "lines follow: truncated text", "truncated");
    free(t);
    t = edit_line(text, 1, "EANN_TEXT_V9", 0);
    expect_bad(t, 1, "EANN_TEXT_V1", "wrong version line");
    free(t);
    la = line_of(text, "array inta ");
    char buf[400];
    snprintf(buf, sizeof buf, "array inta 2 %d %d", m->spec.nspecies, m->spec.nwave + 1);
    t = edit_line(text, la, buf, 0);
    char need[64]; /* the shape it wants, whole */
    snprintf(need, sizeof need, "expected shape '2 %d %d'", m->spec.nspecies, m->spec.nwave);
    expect_bad(t, la, need, "wrong shape");
    free(t);
    la = line_of(text, "array params ");
    snprintf(buf, sizeof buf, "array parms 2 %d %d", m->spec.nspecies, m->spec.nwave);
    t = edit_line(text, la, buf, 0);
    expect_bad(t, la, "params", "wrong array name");
    free(t);
    la = line_of(text, "array net0.") + 7;
    t = edit_line(text, la, "nan", 0);
    expect_bad(t, la, "array 'net0.", "NaN weight");
    free(t);
    t = edit_line(text, la, "1e400", 0);
    expect_bad(t, la, "not a finite number", "overflowing weight");
    free(t);
    int le = line_of(text, "end");
    t = edit_line(text, le, NULL, 0);
    expect_bad(t, le, "missing 'end'", "missing end");
    free(t);
    t = edit_line(text, le, "end\nmore", 0);
    expect_bad(t, le + 1, "after 'end'", "text after end");
    free(t);
    la = line_of(text, "nwave");
    t = edit_line(text, la, "nwave 0", 0);
    expect_bad(t, la, "nwave", "nwave 0");
    free(t);
    la = line_of(text, "narrays");
    t = edit_line(text, la, "narrays 7", 0);
    expect_bad(t, la, "narrays", "wrong narrays");
    free(t);
    la = line_of(text, "kind");
    t = edit_line(text, la, "kind quadrupole", 0);
    expect_bad(t, la, "kind", "unknown kind");
    free(t);

    /* the last value line missing (the text still has enough lines, 'end'
     * is read as a value): named on the 'end' line */
    t = edit_line(text, le - 1, NULL, 0);
    expect_bad(t, le - 1, "values end after", "last value missing");
    free(t);
    /* F4: a symbol that is no element (H..Rn), named on the species line */
    const char *nosym[4] = {"Xx", "D", "Uuo", "o"};
    for (int q = 0; q < 4; q++) {
        la = line_of(text, "species ");
        snprintf(buf, sizeof buf, "species");
        for (int sp = 0; sp < m->spec.nspecies; sp++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " %s",
                     sp == 1 ? nosym[q] : m->spec.species[sp]);
        t = edit_line(text, la, buf, 0);
        expect_bad(t, la, "is not an element symbol", nosym[q]);
        free(t);
    }
    /* F5: consistency errors of a net line name that line */
    const eann_net_spec *ns = &m->spec.net[0];
    int lnet = line_of(text, "net 0 ");
    char sizes[128] = "";
    /* net line with sizes n_0 n_1 .. given by w0 (input), wh (every hidden width), wo (output) */
#define NET_LINE(role, w0, wh, wo)                                                              \
    do {                                                                                        \
        snprintf(sizes, sizeof sizes, "%d", (w0));                                              \
        for (int h = 1; h <= ns->nhidden; h++)                                                  \
            snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), " %d", (wh) ? (wh) : ns->sizes[h]); \
        snprintf(buf, sizeof buf, "net 0 role %s nhidden %d sizes %s %d layernorm_eps 1e-05 initpot 0", \
                 (role), ns->nhidden, sizes, (wo));                                               \
    } while (0)
    NET_LINE(ns->role, ns->sizes[0], 0, ns->sizes[ns->nhidden + 1]);
    t = edit_line(text, lnet, buf, 0);
    {
        /* the net line as written back (sanity of NET_LINE): parses */
        eann_model *m3 = NULL;
        eann_parse_error pe3;
        CHECK(eann_model_parse(t, strlen(t), &m3, &pe3) == 0, "%s: rebuilt net line: %d: %s", what,
              pe3.line, pe3.msg);
        eann_model_free(m3);
    }
    free(t);
    NET_LINE("bogus", ns->sizes[0], 0, ns->sizes[ns->nhidden + 1]);
    t = edit_line(text, lnet, buf, 0);
    expect_bad(t, lnet, "must have role", "wrong role");
    free(t);
    NET_LINE(ns->role, ns->sizes[0] + 1, 0, ns->sizes[ns->nhidden + 1]);
    t = edit_line(text, lnet, buf, 0);
    expect_bad(t, lnet, "!= ndensity", "input size");
    free(t);
    NET_LINE(ns->role, ns->sizes[0], 0, ns->sizes[ns->nhidden + 1] + 1);
    t = edit_line(text, lnet, buf, 0);
    expect_bad(t, lnet, "output(s)", "output size");
    free(t);
    la = line_of(text, "nnets");
    t = edit_line(text, la, m->spec.kind == EANN_POLARIZABILITY ? "nnets 1" : "nnets 2", 0);
    expect_bad(t, la, "net(s), got", "nnets for the kind");
    free(t);
    /* F8: huge declared widths are refused on the narrays line before any
     * allocation (65536^2 weights per layer: 32 GB that the text cannot hold) */
    if (ns->nhidden >= 1) {
        NET_LINE(ns->role, ns->sizes[0], 65536, ns->sizes[ns->nhidden + 1]);
        t = edit_line(text, lnet, buf, 0);
        expect_bad(t, ln, "lines follow", "huge widths");
        free(t);
    }
#undef NET_LINE
    eann_model_free(m);
}

/* F8 on the smallest text: a header alone, declaring 65536-wide layers, and
 * the narrays line as the last line (with and without its newline). */
static void test_header_only(void) {
    eann_model *m = random_model(EANN_DIPOLE, 2, 4);
    if (!m) return;
    char *txt;
    size_t len;
    CHECK(eann_model_write(m, &txt, &len) == 0, "write");
    int ln = line_of(txt, "narrays");
    int lnet = line_of(txt, "net 0 ");
    char buf[200];
    snprintf(buf, sizeof buf,
             "net 0 role charge nhidden 2 sizes %d 65536 65536 1 layernorm_eps 1e-05 initpot 0",
             m->ndensity);
    char *t = edit_line(txt, lnet, buf, 0);
    char nl[40], want[60];
    snprintf(nl, sizeof nl, "narrays %d", m->narrays); /* same number of arrays */
    char *h = edit_line(t, ln, nl, 1);
    expect_bad(h, ln, "but only 0 lines follow", "header only");
    h[strlen(h) - 1] = '\0'; /* no final newline */
    expect_bad(h, ln, "but only 0 lines follow", "header only, no final newline");
    free(h);
    snprintf(nl, sizeof nl, "narrays %d", m->narrays + 1);
    snprintf(want, sizeof want, "narrays '%d' != %d", m->narrays + 1, m->narrays);
    h = edit_line(t, ln, nl, 1);
    expect_bad(h, ln, want, "wrong narrays, header only");
    free(h);
    free(t);
    /* eann_model_new refuses unknown symbols too */
    eann_spec sp = m->spec;
    eann_model *m2 = NULL;
    char msg[200];
    strcpy(sp.species[1], "Xx");
    CHECK(eann_model_new(&sp, &m2, msg, sizeof msg) == EANN_ESPEC && !m2 && strstr(msg, "'Xx'"),
          "eann_model_new accepted species Xx (%s)", msg);
    /* every rule of the spec check, each spec one edit from a good one,
     * on both sides of a range (the reason names the rule) */
    const eann_spec good = m->spec;
    const int H = good.net[0].nhidden;
    for (int c = 0; c < 18; c++) {
        eann_spec s = good;
        const char *why = "";
        switch (c) {
        case 0: s.kind = 9, why = "unknown kind"; break;
        case 1: s.nspecies = 0, why = "nspecies"; break;
        case 2: s.nspecies = EANN_MAX_SPECIES + 1, why = "nspecies"; break;
        case 3: strcpy(s.species[1], s.species[0]), why = "listed twice"; break;
        case 4: s.mass[0] = 0, why = "mass"; break;
        case 5: s.cutoff = INFINITY, why = "cutoff"; break;
        case 6: s.min_distance = s.cutoff, why = "min_distance"; break;
        case 7: s.nipsin = 0, why = "nipsin 0"; break;
        case 8: s.nipsin = EANN_MAX_NIPSIN + 1, why = "nipsin 6"; break;
        case 9: s.nwave = 0, why = "nwave 0"; break;
        case 10: s.nwave = 4097, why = "nwave 4097"; break;
        case 11: s.nnets = 2, why = "net(s)"; break;
        case 12: s.net[0].nhidden = EANN_MAX_HIDDEN + 1, why = "nhidden"; break;
        case 13: s.net[0].sizes[0]++, why = "input size"; break;
        case 14: s.net[0].sizes[1] = 0, why = "width 0"; break;
        case 15: s.net[0].sizes[H + 1] = 2, why = "output(s)"; break;
        case 16: s.net[0].ln_eps = 0, why = "layernorm_eps"; break;
        case 17: s.net[0].initpot = NAN, why = "initpot"; break;
        }
        m2 = NULL;
        msg[0] = '\0';
        int rc = eann_model_new(&s, &m2, msg, sizeof msg);
        CHECK(rc == EANN_ESPEC && !m2 && strstr(msg, why),
              "eann_model_new, spec edit %d: rc %d, message '%s' (want one about '%s')", c, rc, msg,
              why);
        eann_model_free(m2);
    }
    CHECK(eann_model_new(&good, &m2, msg, sizeof msg) == EANN_OK, "the unedited spec: %s", msg);
    eann_model_free(m2);
    free(txt);
    eann_model_free(m);
}

/* ---- random models ---------------------------------------------------------- */

static void test_random_models(void) {
    int kinds[3] = {EANN_DIPOLE, EANN_TDM, EANN_POLARIZABILITY};
    for (int kk = 0; kk < 3; kk++) {
        int kind = kinds[kk];
        for (int H = 0; H <= 2; H += 2) {
            eann_model *m = random_model(kind, H, 99 + 7 * kk + H);
            if (!m) return;
            eann_work *w;
            const int n = 8;
            CHECK(eann_work_new(m, n, &w) == 0, "work_new");
            int sp[8];
            double x[24];
            random_molecule(n, sp, x);
            char what[64];
            snprintf(what, sizeof what, "random %s H=%d", eann_kind_name(kind), H);
            double e = fd_descriptor_positions(m, w, n, sp, x, 1e-5);
            CHECK(e <= 1e-7, "%s: descriptor d rho/dx vs finite differences: rel err %.3g", what, e);
            for (int t = 0; t < m->spec.nnets; t++) fd_network(m, w, t, n, sp, x, what);
            fd_descriptor_params(m, w, n, sp, x);
            if (kind != EANN_POLARIZABILITY) fd_training_gradient(m, w, n, sp, x, what);
            else CHECK(eann_head_backward(m, w, x, x) == EANN_EINVAL, "pol head_backward");
            if (kind == EANN_POLARIZABILITY)
                for (int t = 0; t < 3; t++) {
                    double sc;
                    e = fd_scalar_positions(m, w, t, n, sp, x, 1e-5, &sc);
                    CHECK(e <= 1e-7 && sc > 1e-6, "%s: dE_%d/dx vs finite differences: rel err %.3g (scale %.3g)",
                          what, t, e, sc);
                }
            e = symmetry_violation(m, w, n, sp, x, 10);
            CHECK(e <= 1e-12, "%s: symmetry violation %.3g", what, e);
            if (H == 2) {
                char *txt;
                size_t len;
                CHECK(eann_model_write(m, &txt, &len) == 0, "write");
                test_text(txt, what);
                free(txt);
            }
            /* an atom list with a too-large species index is refused */
            int bad[2] = {0, 3};
            double out[9];
            CHECK(eann_predict(m, w, 2, bad, x, out) == EANN_EINVAL, "bad species accepted");
            CHECK(eann_species_index(m, "C") == 1 && eann_species_index(m, "N") == -1, "species index");
            eann_work_free(w);
            eann_model_free(m);
        }
    }
    /* polarizability of the random model by hand: alpha = Pm + Pm^T + sum h h^T + E2 I */
    eann_model *m = random_model(EANN_POLARIZABILITY, 1, 5);
    eann_work *w;
    eann_work_new(m, 6, &w);
    int sp[6];
    double x[18], g[18], h[18], out[9];
    random_molecule(6, sp, x);
    eann_setup(m, w, 6, sp, x);
    eann_descriptor_forward(m, w);
    eann_scalar(m, w, 0, g);
    eann_scalar(m, w, 1, h);
    double E2 = eann_scalar(m, w, 2, NULL);
    double mt = 0, com[3] = {0, 0, 0};
    for (int i = 0; i < 6; i++) {
        mt += m->spec.mass[sp[i]];
        for (int a = 0; a < 3; a++) com[a] += m->spec.mass[sp[i]] * x[3 * i + a];
    }
    eann_predict(m, w, 6, sp, x, out);
    double worst = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double v = a == b ? E2 : 0;
            for (int i = 0; i < 6; i++)
                v += (x[3 * i + a] - com[a] / mt) * g[3 * i + b] + (x[3 * i + b] - com[b] / mt) * g[3 * i + a] +
                     h[3 * i + a] * h[3 * i + b];
            worst = th_worst(worst, fabs(v - out[3 * a + b]) / maxabs(out, 9));
        }
    CHECK(worst <= 1e-13, "polarizability head by hand: rel diff %.3g", worst);
    CHECK(maxabs(h, 18) > 1e-3, "random model's h term is non-zero");
    eann_work_free(w);
    eann_model_free(m);
}

/* Angular groups up to L = 4 and a deeper net; a large molecule whose pair
 * list outgrows the workspace's first allocation. */
static void test_variants(void) {
    g_nipsin = 5;
    g_nwave = 2;
    eann_model *m = random_model(EANN_TDM, 3, 77);
    g_nipsin = 3;
    g_nwave = 4;
    if (!m) return;
    CHECK(m->norbital == 121 && m->ndensity == 10, "nipsin 5: M %d D %d", m->norbital, m->ndensity);
    eann_work *w;
    eann_work_new(m, 7, &w);
    int sp[7];
    double x[21];
    random_molecule(7, sp, x);
    double e = fd_descriptor_positions(m, w, 7, sp, x, 1e-5);
    CHECK(e <= 1e-7, "nipsin 5: descriptor d rho/dx vs finite differences: rel err %.3g", e);
    fd_network(m, w, 0, 7, sp, x, "nipsin 5 H=3");
    e = symmetry_violation(m, w, 7, sp, x, 5);
    CHECK(e <= 1e-12, "nipsin 5: symmetry violation %.3g", e);
    char *txt;
    size_t len;
    eann_model_write(m, &txt, &len);
    test_text(txt, "nipsin 5 H=3");
    free(txt);
    eann_work_free(w);
    eann_model_free(m);

    m = random_model(EANN_POLARIZABILITY, 1, 78);
    enum { NB = 90 };
    static int spb[NB];
    static double xb[3 * NB];
    random_molecule_box(NB, spb, xb, 6.0);
    eann_work_new(m, NB, &w);
    double o1[9], o2[9];
    CHECK(eann_predict(m, w, NB, spb, xb, o1) == 0, "large molecule");
    CHECK(w->npairs > 4096, "large molecule has only %d pairs", w->npairs);
    CHECK(eann_predict(m, w, NB, spb, xb, o2) == 0 && !memcmp(o1, o2, sizeof o1),
          "large molecule: growing the pair list changed the result");
    e = symmetry_violation(m, w, NB, spb, xb, 2);
    CHECK(e <= 1e-12, "large molecule: symmetry violation %.3g", e);
    eann_work_free(w);
    eann_model_free(m);
}

/* ---- published models -------------------------------------------------------- */

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); fclose(f); return NULL; }
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

/* Agreement with the published models' own outputs (reference_20.xyz),
 * a.u.: measured 4.2e-15 (dipole), 1.1e-13 (TDM n->pi*), 2.3e-15 (TDM
 * pi->pi*), 3.6e-14 (polarizability) with gcc and clang, -O0 and -O2;
 * the tolerances are about ten times that. */
static const double published_tol[4] = {5e-14, 1.2e-12, 3e-14, 4e-13};

static void test_published(const char *dir) {
    const char *files[4] = {"dm.txt", "tdm_npi.txt", "tdm_pipi.txt", "pol.txt"};
    const char *keys[4] = {"eann_dipole", "eann_tdm_npi", "eann_tdm_pipi", "eann_polarizability"};
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/eann_nma_published/reference_20.xyz", dir);
    xyz_file xf;
    if (xyz_read(path, &xf, err, sizeof err)) {
        CHECK(0, "reading %s: %s", path, err);
        return;
    }
    for (int f = 0; f < 4; f++) {
        snprintf(path, sizeof path, "%s/eann_nma_published/%s", dir, files[f]);
        size_t len;
        char *text = read_text(path, &len);
        CHECK(text != NULL, "cannot read %s", path);
        if (!text) continue;
        eann_model *m = NULL;
        eann_parse_error pe;
        int rc = eann_model_parse(text, len, &m, &pe);
        CHECK(rc == 0, "%s:%d: %s", path, pe.line, pe.msg);
        if (rc) { free(text); continue; }
        if (f == 0) test_text(text, files[f]);
        if (f == 3) {
            /* write(parse) reproduces the published text byte for byte */
            char *out;
            size_t ol;
            eann_model_write(m, &out, &ol);
            CHECK(ol == len && !memcmp(out, text, len), "pol.txt: write(parse(text)) != text");
            free(out);
        }
        free(text);
        eann_work *w;
        eann_work_new(m, 64, &w);
        int no = eann_kind_outputs(m->spec.kind);
        double symw = 0;
        /* every output component of every frame, and the references */
        double *outs = calloc((size_t)xf.nframes * 9, sizeof(double));
        double *refs = calloc((size_t)xf.nframes * 9, sizeof(double));
        for (int fr = 0; fr < xf.nframes; fr++) {
            xyz_frame *F = &xf.frames[fr];
            int sp[64];
            for (int i = 0; i < F->natoms; i++) sp[i] = eann_species_index(m, xyz_z_to_symbol(F->z[i]));
            double *ref = refs + (size_t)fr * no, *out = outs + (size_t)fr * no;
            CHECK(xyz_get_info_real(F, "reference_20.xyz", keys[f], no, ref, err, sizeof err) == 0, "%s", err);
            CHECK(eann_predict(m, w, F->natoms, sp, F->pos, out) == 0, "predict");
            if (fr < 3) symw = th_worst(symw, symmetry_violation(m, w, F->natoms, sp, F->pos, 4));
            if (fr == 1) {
                double *x = malloc(sizeof(double) * 3 * (size_t)F->natoms);
                memcpy(x, F->pos, sizeof(double) * 3 * (size_t)F->natoms);
                if (f == 0 || f == 3) {
                    double e = fd_descriptor_positions(m, w, F->natoms, sp, x, 1e-5);
                    CHECK(e <= 1e-7, "%s: descriptor d rho/dx vs finite differences: rel err %.3g", files[f], e);
                }
                if (f == 3)
                    for (int t = 0; t < 3; t++) {
                        double sc;
                        double e = fd_scalar_positions(m, w, t, F->natoms, sp, x, 1e-5, &sc);
                        /* net 1's output layer is zero in the published model: h = 0 */
                        CHECK(t == 1 ? sc == 0 : e <= 1e-7,
                              "%s: dE_%d/dx vs finite differences: rel err %.3g (scale %.3g)", files[f], t,
                              e, sc);
                    }
                if (f == 1) fd_network(m, w, 0, F->natoms, sp, x, files[f]);
                free(x);
            }
        }
        size_t nout = (size_t)xf.nframes * no;
        double worst = th_max_abs_diff(outs, refs, nout);
        printf("%s: largest |difference| to reference_20 %.3g a.u. (%d frames), symmetry violation %.3g\n",
               files[f], worst, xf.nframes, symw);
        CHECK_ARRAY_CLOSE(outs, refs, nout, published_tol[f], files[f]);
        CHECK(symw <= 1e-12, "%s: symmetry violation %.3g", files[f], symw);
        /* mutation check: a NaN in any one output component (first, middle,
         * last) must make the same comparison fail */
        size_t where[3] = {0, nout / 2, nout - 1};
        for (int q = 0; q < 3; q++) {
            double keep = outs[where[q]];
            outs[where[q]] = NAN;
            double wm = th_max_abs_diff(outs, refs, nout);
            CHECK(!(wm <= published_tol[f]), "%s: a NaN in output %zu passes the comparison",
                  files[f], where[q]);
            outs[where[q]] = keep;
        }
        free(outs);
        free(refs);
        eann_work_free(w);
        eann_model_free(m);
    }
    xyz_free(&xf);
}

/* ---- the AVX2 copy of the hot loops gives the portable copy's bits ------- */

static int same_bits(const double *a, const double *b, size_t n) {
    return !memcmp(a, b, n * sizeof(double));
}

/* exp: random arguments, lengths that leave tails, and values outside the
 * fast range at positions in the vector part and in the tail. */
/* ---- the neighbour search: cell list = all pairs, in the same order ------ */

/* eann_setup's pairs of one frame against the definition (FORMAT.md 4.2):
 * for every row i in order, every row j != i in ascending order with
 * dmin < d < rc, d from v = x_i - x_j; pair_d and pair_v bit for bit. */
static int pairs_match(const eann_model *m, const eann_work *w) {
    const double rc = m->spec.cutoff, dmin = m->spec.min_distance, *x = w->x;
    int p = 0;
    for (int i = 0; i < w->natoms; i++) {
        if (w->pair_start[i] != p) return 0;
        for (int j = 0; j < w->natoms; j++) {
            double v[3] = {x[3 * i] - x[3 * j], x[3 * i + 1] - x[3 * j + 1], x[3 * i + 2] - x[3 * j + 2]};
            double d = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
            if (j == i || !(d > dmin && d < rc)) continue;
            if (p >= w->npairs || w->pair_j[p] != j || memcmp(&w->pair_d[p], &d, sizeof d) ||
                memcmp(w->pair_v + 3 * (size_t)p, v, sizeof v))
                return 0;
            p++;
        }
    }
    return p == w->npairs && w->pair_start[w->natoms] == p;
}

static void test_pair_search(void) {
    eann_model *m = random_model(EANN_DIPOLE, 1, 31);
    if (!m) return;
    enum { NMAX = 700 };
    int *sp = malloc(sizeof(int) * NMAX);
    double *x = malloc(sizeof(double) * 3 * NMAX), out[3], ref[3];
    eann_work *w = NULL, *w2 = NULL;
    CHECK(sp && x && eann_work_new(m, NMAX, &w) == 0 && eann_work_new(m, NMAX, &w2) == 0,
          "pair search: allocation");
    if (!sp || !x || !w || !w2) goto done;
    const double rc = m->spec.cutoff;
    /* frames: n atoms in a box of side L (cells of the cutoff, dense, sparse:
     * the cell edge grows), then a lattice of spacing exactly rc (pairs at
     * d == rc are out) and one just below, then a frame with one atom 1e13 A
     * away (too large for a grid: every pair tested) */
    const struct { int n; double L; } boxes[] = {{400, 25}, {200, 11}, {300, 2000}, {129, 9}, {128, 9}};
    for (int f = 0; f < 9; f++) {
        int n;
        if (f < 5) {
            n = boxes[f].n;
            random_molecule_box(n, sp, x, boxes[f].L);
        } else if (f < 7) {
            const double s = f == 5 ? rc : rc * (1 - 1e-15);
            n = 0;
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++)
                    for (int c = 0; c < 6; c++, n++) {
                        sp[n] = n % 3;
                        x[3 * n] = a * s; x[3 * n + 1] = b * s; x[3 * n + 2] = c * s;
                    }
        } else {
            n = 200;
            random_molecule_box(n, sp, x, 20);
            x[3 * 57] = f == 7 ? 1e13 : -1e300; /* -1e300: the extent overflows */
        }
        int rc1 = eann_setup(m, w, n, sp, x);
        CHECK(rc1 == 0 && pairs_match(m, w), "pair search frame %d (%d atoms, %d pairs): not the "
              "pairs of the definition in its order", f, n, w->npairs);
        /* a workspace that saw a larger frame first (arrays grown) gives the same bits */
        CHECK(eann_predict(m, w, n, sp, x, out) == 0 && eann_predict(m, w2, 12, sp, x, ref) == 0 &&
                  eann_predict(m, w2, n, sp, x, ref) == 0 && same_bits(out, ref, 3) &&
                  isfinite(out[0]),
              "pair search frame %d: workspace history changes the prediction", f);
    }
done:
    eann_work_free(w);
    eann_work_free(w2);
    free(sp);
    free(x);
    eann_model_free(m);
}

static void simd_exp(void) {
    enum { N = 1031 };
    static double x[N], y1[N], y2[N];
    const double special[4] = {709.5, -720.0, NAN, INFINITY};
    int diff = 0;
    for (int rep = 0; rep < 16; rep++) {
        double span = rep % 4 == 0 ? 708.0 : rep % 4 == 1 ? 30.0 : rep % 4 == 2 ? 1.0 : 1e-3;
        for (int i = 0; i < N; i++) x[i] = span * srand1();
        if (rep >= 8) x[rep % 2 ? N - 1 - rep % 3 : 37 * rep] = special[rep % 4];
        int n = rep < 4 ? N : rep < 8 ? rep : N - rep % 3;
        eann_exp_n_simd(EANN_SIMD_PORTABLE, n, x, y1);
        eann_exp_n_simd(EANN_SIMD_AVX2, n, x, y2);
        diff += !same_bits(y1, y2, (size_t)n);
        eann_exp_n_simd(EANN_SIMD_AVX2_ONLY, n, x, y2); /* 4 lanes only (no AVX-512) */
        diff += !same_bits(y1, y2, (size_t)n);
    }
    CHECK(diff == 0, "exp: AVX2 (8 or 4 lanes) and portable copies differ in %d of 32 arrays", diff);
    /* the edges of the range test (the 8-lane copies compare the largest
     * bits of |x| with those of 708, v8_within708): exactly +-708 and -0 stay
     * on the fast path; one step beyond 708, a NaN with its sign bit set and
     * -inf send the array to exp_one; at every lane of two vectors */
    const double edge[7] = {708.0, -708.0, -0.0, nextafter(708.0, 800.0),
                            nextafter(-708.0, -800.0), -NAN, -INFINITY};
    diff = 0;
    for (int e = 0; e < 7; e++)
        for (int p = 0; p < 16; p++) {
            for (int i = 0; i < 16; i++) x[i] = 700.0 * srand1();
            x[p] = edge[e];
            eann_exp_n_simd(EANN_SIMD_PORTABLE, 16, x, y1);
            eann_exp_n_simd(EANN_SIMD_AVX2, 16, x, y2);
            diff += !same_bits(y1, y2, 16);
            eann_exp_n_simd(EANN_SIMD_AVX2_ONLY, 16, x, y2);
            diff += !same_bits(y1, y2, 16);
        }
    CHECK(diff == 0, "exp at the range edges: %d of 224 arrays differ from the portable copy", diff);
    CHECK(eann_exp_n_simd(7, 1, x, y1) == EANN_EINVAL, "unknown simd mode accepted");
}

/* One model: predictions (and rho, and the training gradient) of molecules
 * of 1..40 atoms with both copies; returns the number of differences. */
/* The caches of net t after a prediction (y, zhat, sig, a, rstd, out of
 * every row) equal in two workspaces: eann_head_backward may follow
 * eann_predict, so the fast paths must fill them with the same bits. */
static int same_caches(const eann_model *m, const eann_work *a, const eann_work *b, int t) {
    const eann_net_spec *ns = &m->spec.net[t];
    const size_t n = (size_t)a->natoms;
    int d = 0;
    for (int h = 0; h < ns->nhidden; h++) {
        const size_t c = (size_t)ns->sizes[h + 1];
        d += !same_bits(a->y[t][h], b->y[t][h], n * c) + !same_bits(a->zhat[t][h], b->zhat[t][h], n * c);
        d += !same_bits(a->sig[t][h], b->sig[t][h], n * c) + !same_bits(a->a[t][h], b->a[t][h], n * c);
        d += !same_bits(a->rstd[t][h], b->rstd[t][h], n);
    }
    d += !same_bits(a->out[t], b->out[t], n * (size_t)ns->sizes[ns->nhidden + 1]);
    return d;
}

static int simd_model(eann_model *m, const char *what) {
    const int sizes[7] = {1, 2, 3, 5, 8, 13, 40};
    eann_work *w1, *w2, *w3;
    eann_trainws *t1, *t2;
    int diff = 0, no = eann_kind_outputs(m->spec.kind);
    if (eann_work_new(m, 40, &w1) || eann_work_new(m, 40, &w2) || eann_work_new(m, 40, &w3) ||
        eann_trainws_new(m, 40, &t1) || eann_trainws_new(m, 40, &t2)) {
        CHECK(0, "%s: workspaces", what);
        return 1;
    }
    CHECK(eann_work_set_simd(w1, EANN_SIMD_PORTABLE) == 0 && eann_work_set_simd(w2, EANN_SIMD_AVX2) == 0 &&
              eann_work_set_simd(eann_trainws_work(t1), EANN_SIMD_PORTABLE) == 0 &&
              eann_work_set_simd(eann_trainws_work(t2), EANN_SIMD_AVX2) == 0 &&
              eann_work_set_simd(w3, EANN_SIMD_AVX2_ONLY) == 0,
          "%s: set_simd", what);
    double *g1 = calloc(m->ntheta, sizeof(double)), *g2 = calloc(m->ntheta, sizeof(double));
    for (int k = 0; k < 7; k++) {
        int n = sizes[k], sp[40];
        double x[120], o1[9], o2[9];
        random_molecule_box(n, sp, x, n > 13 ? 6.0 : 3.2);
        double o3[9];
        CHECK(eann_predict(m, w1, n, sp, x, o1) == 0 && eann_predict(m, w2, n, sp, x, o2) == 0 &&
                  eann_predict(m, w3, n, sp, x, o3) == 0,
              "%s: predict", what);
        diff += !same_bits(o1, o2, (size_t)no) + !same_bits(o1, o3, (size_t)no);
        diff += !same_bits(w1->rho, w2->rho, (size_t)n * m->ndensity);
        diff += !same_bits(w1->rho, w3->rho, (size_t)n * m->ndensity);
        const size_t K = (size_t)m->spec.nwave, np = (size_t)w1->npairs;
        diff += w2->npairs != w1->npairs || !same_bits(w1->pair_r, w2->pair_r, np * K) ||
                !same_bits(w1->pair_w, w2->pair_w, np * K) || !same_bits(w1->pair_w, w3->pair_w, np * K);
        for (int t = 0; t < m->spec.nnets; t++) {
            if (m->spec.kind == EANN_POLARIZABILITY && t == 1) continue; /* skipped (zero output layer) */
            diff += same_caches(m, w1, w2, t) + same_caches(m, w1, w3, t);
        }
        if (m->spec.kind != EANN_POLARIZABILITY) {
            /* predict (no d fc / d d) then the input gradient, which fills it
             * first, against the plain sequence eann_setup, ... */
            double g1[120], g2[120];
            eann_net_gradient(m, w2, 0, g1);
            CHECK(eann_setup(m, w3, n, sp, x) == 0, "%s: setup", what);
            eann_descriptor_forward(m, w3);
            eann_net_forward(m, w3, 0);
            eann_net_gradient(m, w3, 0, g2);
            diff += !same_bits(g1, g2, 3 * (size_t)n) + same_caches(m, w2, w3, 0);
            diff += !same_bits(w2->pair_dfc, w3->pair_dfc, np);
        }
        eann_sample smp = {n, sp, x, {0}, 0.0};
        for (int c = 0; c < no; c++) smp.ref[c] = srand1();
        double p1[9], p2[9], e1[9], e2[9], l1, l2;
        memset(g1, 0, sizeof(double) * m->ntheta);
        memset(g2, 0, sizeof(double) * m->ntheta);
        CHECK(eann_sample_loss(m, t1, &smp, 0.5, 1.0, g1, p1, e1, &l1) == 0 &&
                  eann_sample_loss(m, t2, &smp, 0.5, 1.0, g2, p2, e2, &l2) == 0,
              "%s: sample_loss", what);
        diff += !same_bits(g1, g2, m->ntheta) + !same_bits(p1, p2, (size_t)no) + !same_bits(&l1, &l2, 1);
        diff += !same_bits(o1, p1, m->spec.kind == EANN_TDM ? 0 : (size_t)no); /* training forward = predict */
    }
    free(g1);
    free(g2);
    eann_work_free(w1);
    eann_work_free(w2);
    eann_work_free(w3);
    eann_trainws_free(t1);
    eann_trainws_free(t2);
    return diff;
}

/* The private kernels with their fast paths against the portable copy, by
 * memcmp: the packed matrix product (shapes with every tile and tail), the
 * pair sums of the density (eann_sum_atw), the radial values (copied pairs
 * skipped, arguments beyond [-708, 708] that send a pair to its redo path)
 * and LayerNorm + activation (rows with out-of-range exp arguments), each
 * for AVX2 with and without AVX-512. */
static void simd_kernels(void) {
    enum { NMAX = 9, KMAX = 70, JMAX = 70 };
    static double x[NMAX * KMAX], B[KMAX * JMAX], P[KMAX * JMAX], b[JMAX], z1[NMAX * JMAX],
        z2[NMAX * JMAX];
    const int modes[2] = {EANN_SIMD_AVX2, EANN_SIMD_AVX2_ONLY};
    /* njs: every count of packed blocks 0..8 (the 8-lane tiles take 4, 2
     * and 1 blocks; the 4-lane ones 1, or 4 for one row) with tails of
     * 0..7 columns; rows 1..9 (tiles of 4, 3, 2, 1 rows) */
    const int nks[5] = {1, 5, 36, 37, 64},
              njs[16] = {1, 3, 4, 7, 8, 9, 13, 16, 24, 33, 47, 52, 60, 64, 67, 70};
    int diff = 0, cases = 0;
    for (int i = 0; i < NMAX * KMAX; i++) x[i] = srand1();
    for (int i = 0; i < KMAX * JMAX; i++) B[i] = srand1();
    for (int i = 0; i < JMAX; i++) b[i] = srand1();
    for (int n = 1; n <= NMAX; n++)
        for (int a = 0; a < 5; a++)
            for (int c = 0; c < 16; c++) {
                const int nk = nks[a], nj = njs[c];
                eann_pack_b(nk, nj, B, P);
                eann_matmul(EANN_SIMD_PORTABLE, n, nk, nj, x, B, n % 2 ? b : NULL, z1);
                for (int md = 0; md < 2; md++) {
                    memset(z2, 0, sizeof z2);
                    eann_matmul_packed(modes[md], n, nk, nj, x, B, P, n % 2 ? b : NULL, z2);
                    diff += !same_bits(z1, z2, (size_t)n * nj);
                    cases++;
                }
            }
    CHECK(diff == 0, "packed matrix product: %d of %d cases differ from the portable one", diff, cases);

    /* the density sums S = A^T W over a centre's pairs (eann_sum_atw): every
     * row count of the 8-row tiles and tail (M 1..17), every column tail
     * (K 1..20: 8-lane blocks, a 4-lane block, single columns), 0..12 pairs */
    diff = 0;
    cases = 0;
    for (int np = 0; np <= 12; np += 3)
        for (int M = 1; M <= 17; M++)
            for (int K = 1; K <= 20; K++) {
                /* A [np][M] from x, W [np][K] from B (both hold 630+ values) */
                eann_sum_atw(EANN_SIMD_PORTABLE, np, M, K, x, B, z1);
                for (int md = 0; md < 2; md++) {
                    memset(z2, 0, sizeof z2);
                    eann_sum_atw(modes[md], np, M, K, x, B, z2);
                    diff += !same_bits(z1, z2, (size_t)M * K);
                    cases++;
                }
            }
    CHECK(diff == 0, "pair sums A^T W: %d of %d cases differ from the portable one", diff, cases);

    /* radial values: 3 species, K = 1..13, 30 pairs, some copies (skipped) */
    enum { NP = 30, S = 3, KR = 13 };
    static double d[NP], rs[S * KR], inta[S * KR], par[S * KR], R1[NP * KR], W1[NP * KR],
        R2[NP * KR], W2[NP * KR];
    int nbr[NP], spec[NP], src[NP];
    diff = 0;
    for (int K = 1; K <= KR; K++)
        for (int rep = 0; rep < 3; rep++) {
            for (int q = 0; q < S * K; q++) {
                rs[q] = 3.0 * urand();
                inta[q] = rep == 2 && q == 2 ? -900.0 : 2.0 * srand1(); /* -900: exp beyond 708 */
                par[q] = srand1();
            }
            for (int p = 0; p < NP; p++) {
                d[p] = 0.5 + 3.0 * urand();
                nbr[p] = p;
                spec[p] = p % S;
                src[p] = p % 7 == 3 ? 0 : -1;
            }
            memset(R1, 0, sizeof R1); memset(W1, 0, sizeof W1);
            eann_radial(EANN_SIMD_PORTABLE, NP, K, d, nbr, spec, src, rs, inta, par, R1, W1);
            for (int md = 0; md < 2; md++) {
                memset(R2, 0, sizeof R2); memset(W2, 0, sizeof W2);
                eann_radial(modes[md], NP, K, d, nbr, spec, src, rs, inta, par, R2, W2);
                diff += !same_bits(R1, R2, (size_t)NP * K) + !same_bits(W1, W2, (size_t)NP * K);
            }
        }
    CHECK(diff == 0, "radial values: %d arrays differ from the portable copy", diff);

    /* LayerNorm + activation: widths with every vector tail, rows 1..9; with
     * 3 rows, exp arguments leave [-708, 708] so that the rows take the redo
     * path: the last column has gain 0, bias 720 and beta 1, so y = 720 and
     * the argument is exactly -720 in every row (exp_one gives 1.8e-313 and
     * a sigmoid of 1; the vector core, outside its range, -inf: skipping the
     * redo shows), and the one before has beta -2000 (arguments of either
     * sign, far out); nzero counts the sigmoids that overflowed to 0, so the
     * test knows that side was reached too */
    enum { CM = 67 };
    static double zz[NMAX * CM], g[CM], bb[CM], al[CM], be[CM], out[2][6][NMAX * CM];
    const int cs[8] = {1, 3, 4, 5, 12, 13, 64, 67};
    int nzero = 0;
    diff = 0;
    for (int ci = 0; ci < 8; ci++)
        for (int n = 1; n <= NMAX; n++) {
            const int c = cs[ci];
            for (int i = 0; i < c; i++) {
                g[i] = 1.0 + 0.3 * srand1();
                bb[i] = 0.2 * srand1();
                al[i] = 1.0 + 0.3 * srand1();
                be[i] = n == 3 && i == c - 2 ? -2000.0 : 0.5 + urand();
                if (n == 3 && i == c - 1) g[i] = 0.0, bb[i] = 720.0, be[i] = 1.0;
            }
            for (int md = 0; md < 3; md++) {
                const int mode = md == 0 ? EANN_SIMD_PORTABLE : modes[md - 1];
                for (int i = 0; i < n * c; i++) zz[i] = 3.0 * sin(1.7 * i + c); /* same input */
                double *zh = out[md < 2 ? md : 1][0], *rr = out[md < 2 ? md : 1][1];
                double *yy = out[md < 2 ? md : 1][2], *sg = out[md < 2 ? md : 1][3];
                double *aa = out[md < 2 ? md : 1][4];
                eann_ln_act(mode, n, c, zz, g, bb, 1e-5, al, be, zh, rr, yy, sg, aa);
                if (md == 0) {
                    for (int i = 0; i < n * c; i++) nzero += sg[i] == 0.0;
                    continue;
                }
                for (int k = 0; k < 5; k++)
                    diff += !same_bits(out[0][k], out[1][k], k == 1 ? (size_t)n : (size_t)n * c);
            }
        }
    CHECK(diff == 0, "LayerNorm + activation: %d arrays differ from the portable copy", diff);
    CHECK(nzero >= 4, "LayerNorm + activation: %d sigmoids overflowed to 0 (want the redo path "
          "taken in several widths)", nzero);
}

/* The library's one PRNG and the initialisation it drives. Every training
 * run, and so every model shipped in models/ with its recorded command,
 * starts from these bits ("the same seed gives the same bits everywhere",
 * eann.h), so a change here must be deliberate:
 *   - eann_rand_u64 is splitmix64 (Steele, Lea & Flood 2014): from state
 *     1234567 its first five outputs are the reference values of Rosetta
 *     Code's "Pseudo-random numbers/Splitmix64" (checked here against an
 *     independent Python evaluation of the algorithm, 2026-12-07);
 *     eann_rand_uniform is the top 53 bits times 2^-53;
 *   - eann_model_init_random: every entry inside the range eann.c gives it
 *     (layer-norm and activation gains 1 +- 0.3, ...), the gains spread over
 *     most of it, and the whole theta of one model and seed pinned by its
 *     FNV-1a digest (recorded when this test was written, 2026-12-07). */
static void test_prng_init(void) {
    static const uint64_t want[5] = {6457827717110365317ULL, 3203168211198807973ULL,
                                     9817491932198370423ULL, 4593380528125082431ULL,
                                     16408922859458223821ULL};
    uint64_t st = 1234567, st2 = 1234567;
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        uint64_t u = eann_rand_u64(&st);
        ok &= u == want[i];
        ok &= eann_rand_uniform(&st2) == (double)(want[i] >> 11) * 0x1p-53;
    }
    CHECK(ok && st == st2, "PRNG: splitmix64 from 1234567 is not the reference sequence");

    g_nipsin = 3, g_nwave = 4, g_width = 0;
    eann_model *m = random_model(EANN_POLARIZABILITY, 2, 2026);
    if (!m) return;
    const int S = m->spec.nspecies, K = m->spec.nwave;
    const double *th = m->theta, rc = m->spec.cutoff;
    int out = 0;
    double gmin = 2, gmax = 0;
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            double r = th[m->off_rs + s * K + k], a = th[m->off_inta + s * K + k],
                   p = th[m->off_params + s * K + k];
            out += !(r >= rc * k / K && r < rc * (k + 0.5) / K) + !(a >= 0.3 && a < 1.5) +
                   !(p >= 0.1 && p < 0.5);
        }
    for (int i = 0; i < m->nlayers; i++) {
        const eann_layer *L = &m->layer[i];
        const double wmax = 1.7 / sqrt((double)L->nin);
        for (size_t q = 0; q < (size_t)L->nout * L->nin; q++) out += !(fabs(th[L->w + q]) <= wmax);
        for (int o = 0; o < L->nout; o++) {
            out += !(fabs(th[L->b + o]) <= 0.2);
            if (L->ln_g == (size_t)-1) continue;
            const double g = th[L->ln_g + o], aa = th[L->act_a + o];
            out += !(fabs(g - 1) <= 0.3) + !(fabs(th[L->ln_b + o]) <= 0.2) +
                   !(fabs(aa - 1) <= 0.3) + !(th[L->act_b + o] >= 0.5 && th[L->act_b + o] < 1.3);
            gmin = fmin(gmin, fmin(g, aa));
            gmax = fmax(gmax, fmax(g, aa));
        }
    }
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the bytes of theta */
    const unsigned char *b = (const unsigned char *)m->theta;
    for (size_t i = 0; i < m->ntheta * sizeof(double); i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    printf("init: %zu parameters, %d outside their ranges, gains in [%.3f, %.3f], digest %016llx\n",
           m->ntheta, out, gmin, gmax, (unsigned long long)h);
    CHECK(out == 0, "init: %d parameters outside the ranges of eann_model_init_random", out);
    CHECK(gmin < 0.75 && gmax > 1.25, "init: gains span [%.3f, %.3f], not most of 1 +- 0.3", gmin,
          gmax);
    CHECK(h == 0x4674d8313dfceeccULL,
          "init: theta of seed 2026 changed (digest %016llx): every trained model changes with it",
          (unsigned long long)h);
    eann_model_free(m);
}

/* eann_rho_squares against its definition (eann_kernels.h), written out
 * here: rho[L][k] = 0 + the squares S[q][k]^2 of group L's components in
 * ascending q; a group with no component is 0. The models' groups are
 * consecutive runs (eann_model_new, and the loader refuses any other
 * index_para), so these layouts, with a group met again after another
 * one, an empty group and runs of 1..4, run the copies' "met again" paths
 * that no model reaches. Every copy this CPU has, K 1..13 (vector blocks
 * of 12, 4, tails). */
static void rho_squares_layouts(void) {
    enum { MQ = 9, KQ = 13, NLQ = 4 };
    static const int grps[4][MQ] = {{0, 1, 1, 1, 2, 2, 2, 2, 2},   /* the models' layout */
                                    {0, 1, 0, 1, 1, 0, 3, 3, 0},   /* groups met again, 2 empty */
                                    {3, 3, 3, 3, 2, 1, 0, 0, 3},   /* descending, then 3 again */
                                    {1, 1, 1, 1, 1, 1, 1, 1, 1}};  /* one group, 0, 2, 3 empty */
    const int modes[3] = {EANN_SIMD_PORTABLE, EANN_SIMD_AVX2, EANN_SIMD_AVX2_ONLY};
    double probe = 0;
    const int nmodes = eann_exp_n_simd(EANN_SIMD_AVX2, 1, &probe, &probe) ? 1 : 3;
    static double S[MQ * KQ], want[NLQ * KQ], got[NLQ * KQ];
    int bad = 0, cases = 0;
    for (int i = 0; i < MQ * KQ; i++) S[i] = srand1();
    for (int gi = 0; gi < 4; gi++)
        for (int K = 1; K <= KQ; K++) {
            for (int L = 0; L < NLQ; L++)
                for (int k = 0; k < K; k++) {
                    double a = 0;
                    for (int q = 0; q < MQ; q++)
                        if (grps[gi][q] == L) a += S[q * K + k] * S[q * K + k];
                    want[L * K + k] = a;
                }
            for (int md = 0; md < nmodes; md++) {
                for (int i = 0; i < NLQ * K; i++) got[i] = NAN; /* every value must be written */
                eann_rho_squares(modes[md], MQ, K, S, grps[gi], NLQ, got);
                bad += !same_bits(want, got, (size_t)NLQ * K);
                cases++;
            }
        }
    CHECK(bad == 0, "density squares: %d of %d layouts/copies differ from the definition", bad,
          cases);
}

static void test_simd(const char *shared) {
    double probe = 0;
    if (eann_exp_n_simd(EANN_SIMD_AVX2, 1, &probe, &probe)) {
        th_skip("no AVX2 copy in this build or on this CPU: AVX2 vs portable not compared");
        return;
    }
    simd_exp();
    simd_kernels();
    /* random models: widths that leave tails (7, 9, ...), and wider ones that
     * use every matrix tile (13, 37, 64 + t), 4 or 5 radial functions */
    const int widths[4] = {0, 13, 37, 64};
    int kinds[3] = {EANN_DIPOLE, EANN_TDM, EANN_POLARIZABILITY}, models = 0, diff = 0;
    for (int wi = 0; wi < 4; wi++)
        for (int kk = 0; kk < 3; kk++)
            for (int H = 1; H <= 2; H++) {
                g_width = widths[wi];
                g_nwave = 4 + (wi + kk + H) % 2;
                eann_model *m = random_model(kinds[kk], H, 300 + 10 * wi + 3 * kk + H);
                g_width = 0;
                g_nwave = 4;
                if (!m) continue;
                char what[80];
                snprintf(what, sizeof what, "%s H=%d width %d", eann_kind_name(kinds[kk]), H, widths[wi]);
                int d = simd_model(m, what);
                CHECK(d == 0, "%s: AVX2 and portable copies differ (%d arrays)", what, d);
                diff += d;
                models++;
                eann_model_free(m);
            }
    printf("AVX2 vs portable: %d random models x 7 molecules, %d differences\n", models, diff);
    if (!shared) return;
    const char *files[4] = {"dm.txt", "tdm_npi.txt", "tdm_pipi.txt", "pol.txt"};
    for (int f = 0; f < 4; f++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/eann_nma_published/%s", shared, files[f]);
        size_t len;
        char *text = read_text(path, &len);
        eann_model *m = NULL;
        eann_parse_error pe;
        if (!text || eann_model_parse(text, len, &m, &pe)) {
            CHECK(0, "%s: cannot load", path);
            free(text);
            continue;
        }
        free(text);
        int d = simd_model(m, files[f]);
        CHECK(d == 0, "%s: AVX2 and portable copies differ (%d arrays)", files[f], d);
        eann_model_free(m);
    }
}

static double e_fd; /* keep the compiler quiet about unused helpers */

/* The model reader's number grammar is the xyz and kQEq readers' one:
 * C99 hexadecimal floats read exactly, CRLF line ends are accepted; a bare
 * carriage return inside a line, nan and inf are refused. */
static void test_text_grammar(void) {
    eann_model *m = random_model(EANN_POLARIZABILITY, 2, 7), *m2 = NULL;
    if (!m) return;
    char *text;
    size_t len;
    CHECK(eann_model_write(m, &text, &len) == 0, "write");
    /* every value line rewritten as %a, every line ending as \r\n */
    size_t cap = 3 * len + 64, n = 0;
    char *hex = malloc(cap);
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = (size_t)(e - p);
        char line[256], *end;
        memcpy(line, p, l < 255 ? l : 255);
        line[l < 255 ? l : 255] = '\0';
        double v = strtod(line, &end);
        if (end != line && !*end)
            n += (size_t)snprintf(hex + n, cap - n, "%a\r\n", v);
        else
            n += (size_t)snprintf(hex + n, cap - n, "%s\r\n", line);
        p = e + 1;
    }
    CHECK(strstr(hex, "0x") != NULL, "the hex text has hex floats");
    eann_parse_error pe;
    int rc = eann_model_parse(hex, n, &m2, &pe);
    CHECK(rc == 0, "hex floats + CRLF: line %d: %s", pe.line, pe.msg);
    if (!rc) {
        CHECK(same_model(m, m2), "hex floats + CRLF: theta not bit-identical");
        char *back;
        size_t bl;
        CHECK(eann_model_write(m2, &back, &bl) == 0 && bl == len && !memcmp(back, text, len),
              "hex/CRLF text writes back as the %%.17g text");
        free(back);
        eann_model_free(m2);
    }
    /* a carriage return inside a line, and non-finite values, are refused */
    char *bad = malloc(n + 1);
    memcpy(bad, hex, n);
    char *cr = strstr(bad, "kind");
    cr[2] = '\r';
    CHECK(eann_model_parse(bad, n, &m2, &pe) == EANN_EFORMAT && pe.line > 1,
          "bare CR inside a line refused with its line (%d: %s)", pe.line, pe.msg);
    const char *nonfinite[3] = {"nan", "inf", "1e999"};
    char *bad2 = malloc(n + 16);
    for (int q = 0; q < 3; q++) {
        /* the text with the cutoff's value replaced */
        const char *at = strstr(hex, "cutoff ") + 7, *eol = strchr(at, '\r');
        size_t pre = (size_t)(at - hex), k = strlen(nonfinite[q]), rest = n - (size_t)(eol - hex);
        memcpy(bad2, hex, pre);
        memcpy(bad2 + pre, nonfinite[q], k);
        memcpy(bad2 + pre + k, eol, rest);
        rc = eann_model_parse(bad2, pre + k + rest, &m2, &pe);
        CHECK(rc == EANN_EFORMAT && strstr(pe.msg, "cutoff"), "cutoff %s refused (%s)",
              nonfinite[q], pe.msg);
    }
    free(bad2);
    free(bad);
    free(hex);
    free(text);
    eann_model_free(m);
}

/* ---- eann_predict in blocks of rows = the whole frame at once ------------ */

/* A dipole and a tdm model on frames of more than EANN_CELL_MIN_ATOMS atoms
 * (cell list): a random box and a lattice (exact zero components of v, so
 * the signed zeros of the rebuilt mirrored pairs are exercised), predicted
 * with the whole frame's pairs (block_rows >= natoms) and in blocks of 1,
 * 7 (boundaries inside every species run), 64 (the default) and 150 rows:
 * outputs and rho memcmp-identical. */
static void test_predict_blocks(void) {
    enum { N = 400 };
    static int sp[N];
    static double x[3 * N], rho_ref[N * 12];
    for (int kind = EANN_DIPOLE; kind <= EANN_TDM; kind++) {
        eann_model *m = random_model(kind, 2, 91 + (uint64_t)kind);
        if (!m) return;
        eann_work *w = NULL;
        CHECK(eann_work_new(m, N, &w) == 0, "blocks: workspace");
        if (!w) { eann_model_free(m); return; }
        const int D = m->ndensity;
        for (int f = 0; f < 2; f++) {
            int n = N;
            if (f == 0) random_molecule_box(n, sp, x, 14);
            else
                for (int i = n = 0; i < 216; i++, n++) {
                    sp[i] = (i / 5) % 3; /* runs across block boundaries */
                    x[3 * i] = 1.5 * (i % 6);
                    x[3 * i + 1] = 1.5 * (i / 6 % 6);
                    x[3 * i + 2] = 1.5 * (i / 36);
                }
            double ref[3], out[3];
            w->block_rows = INT_MAX;
            CHECK(eann_predict(m, w, n, sp, x, ref) == 0 && isfinite(ref[0]) && isfinite(ref[1]) &&
                      isfinite(ref[2]), "blocks: whole-frame prediction");
            CHECK(w->npairs > 20 * n, "blocks frame %d: only %d pairs", f, w->npairs);
            memcpy(rho_ref, w->rho, sizeof(double) * (size_t)n * D);
            const int npairs = w->npairs;
            const int B[4] = {1, 7, 0, 150};
            for (int b = 0; b < 4; b++) {
                w->block_rows = B[b];
                memset(w->rho, 0xff, sizeof(double) * (size_t)n * D); /* NaNs */
                CHECK(eann_predict(m, w, n, sp, x, out) == 0 && same_bits(out, ref, 3) &&
                          same_bits(w->rho, rho_ref, (size_t)n * D),
                      "blocks: %s frame %d in blocks of %d rows: not the whole frame's bits",
                      eann_kind_name(kind), f, B[b]);
                CHECK(w->npairs < npairs, "blocks: %d rows per block did not block", B[b]);
            }
        }
        eann_work_free(w);
        eann_model_free(m);
    }
}

/* eann_angular without a tangent takes, for M = 13 (nipsin 3, the
 * published models), a path with the factors in registers; with a tangent
 * the general recursion. The same A bit for bit, signed zeros included. */
static void test_angular13(void) {
    eann_model *m = random_model(EANN_DIPOLE, 1, 77);
    if (!m) return;
    CHECK(m->norbital == 13, "nipsin 3: M = %d", m->norbital);
    int diff = 0;
    for (int t = 0; t < 200; t++) {
        double v[3], vd[3] = {0.1, -0.2, 0.3}, A1[13], A2[13], Ad[13];
        for (int a = 0; a < 3; a++) v[a] = t % 7 == a ? (t % 2 ? -0.0 : 0.0) : 4.0 * srand1();
        const double fc = t % 11 == 5 ? 0.0 : urand();
        eann_angular(m, fc, 0.0, v, NULL, A1, NULL);
        eann_angular(m, fc, 0.5, v, vd, A2, Ad);
        diff += memcmp(A1, A2, sizeof A1) != 0;
    }
    CHECK(diff == 0, "angular factors, M = 13: %d of 200 differ from the general recursion", diff);
    eann_model_free(m);
}

int main(void) {
    (void)e_fd;
    test_blocks();
    test_angular13();
    test_exp();
    test_random_models();
    test_variants();
    test_header_only();
    test_text_grammar();
    test_pair_search();
    test_predict_blocks();
    rho_squares_layouts();
    test_prng_init();
    const char *dir = shared_dir();
    if (!dir) th_skip("../shared absent: published NMA models not checked");
    else test_published(dir);
    test_simd(dir);
    return th_done("test_eann");
}
