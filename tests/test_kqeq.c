/* SPDX-License-Identifier: MIT */
/* test_kqeq.c - kQEq training and prediction (kqeq.h) on small
 * synthetic molecules whose reference dipoles come from a QEq model with an
 * environment-dependent electronegativity (so kQEq can learn them).
 * Checks: one-molecule fit, the closed form (Eq. 20) and the sparse form
 * minimise their losses (gradient zero), sparse with M = all atoms equals
 * the full form, charge constraint, rotation equivariance, polarizability
 * symmetric PSD, model text round trip and damaged texts, unknown elements,
 * the classical QEq fit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kqeq.h"
#include "linalg.h"

typedef struct {
    const char *name;
    int n;
    int charge;
    int z[6];
    double pos[18];
} tmpl;

static const tmpl templates[] = {
    {"water", 3, 0, {8, 1, 1}, {0, 0, 0, 0.757, 0.586, 0, -0.757, 0.586, 0}},
    {"methanol", 6, 0, {6, 8, 1, 1, 1, 1},
     {-0.047, 0.665, 0, -0.047, -0.758, 0, -1.09, 0.94, 0, 0.44, 1.08, 0.89, 0.44, 1.08, -0.89,
      0.87, -1.06, 0}},
    {"ammonia", 4, 0, {7, 1, 1, 1},
     {0, 0, 0.1, 0.94, 0, -0.27, -0.47, 0.81, -0.27, -0.47, -0.81, -0.27}},
    {"formaldehyde", 4, 0, {6, 8, 1, 1}, {0, 0, 0, 0, 0, 1.21, 0, 0.94, -0.59, 0, -0.94, -0.59}},
    {"HF", 2, 0, {1, 9}, {0, 0, 0, 0, 0, 0.92}},
    {"hydronium", 4, 1, {8, 1, 1, 1},
     {0, 0, 0.1, 0.95, 0, -0.2, -0.47, 0.82, -0.2, -0.47, -0.82, -0.2}},
    {"hydroxide", 2, -1, {8, 1}, {0, 0, 0, 0, 0, 0.97}},
    {"HCN", 3, 0, {1, 6, 7}, {0, 0, -1.07, 0, 0, 0, 0, 0, 1.16}},
    {"fluoromethane", 5, 0, {6, 9, 1, 1, 1},
     {0, 0, 0, 0, 0, 1.38, 1.03, 0, -0.36, -0.51, 0.89, -0.36, -0.51, -0.89, -0.36}},
};
#define NTEMPL ((int)(sizeof templates / sizeof templates[0]))
#define MAXMOL 40

typedef struct {
    int n;
    int z[6];
    double pos[18];
    double charge;
    double dip[3];
} mol;

static unsigned long long rng_state = 12345;
static double urand(void) { /* our own LCG-based uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* Synthetic reference: QEq with chi = RG chi + 0.01 * (number of neighbours
 * within 1.6 angstrom), hartree. */
static void make_mol(mol *m, int t, double noise) {
    const tmpl *tp = &templates[t];
    m->n = tp->n;
    m->charge = tp->charge;
    for (int i = 0; i < tp->n; i++) {
        m->z[i] = tp->z[i];
        for (int k = 0; k < 3; k++) m->pos[3 * i + k] = tp->pos[3 * i + k] + noise * urand();
    }
    double chi[6];
    for (int i = 0; i < m->n; i++) {
        int cn = 0;
        for (int j = 0; j < m->n; j++) {
            double dx = m->pos[3 * i] - m->pos[3 * j], dy = m->pos[3 * i + 1] - m->pos[3 * j + 1],
                   dz = m->pos[3 * i + 2] - m->pos[3 * j + 2];
            if (j != i && dx * dx + dy * dy + dz * dz < 1.6 * 1.6) cn++;
        }
        chi[i] = kq_qeq_default_chi_ev(m->z[i]) / KQ_HARTREE_EV + 0.01 * cn;
    }
    kq_qeq_solve(m->n, m->z, m->pos, m->charge, chi, NULL, 0.75, NULL, m->dip, NULL, NULL, NULL);
}

static void to_kq(const mol *ms, int n, kq_mol *out) {
    for (int k = 0; k < n; k++) {
        out[k].natoms = ms[k].n;
        out[k].z = ms[k].z;
        out[k].pos = ms[k].pos;
        out[k].charge = ms[k].charge;
        for (int c = 0; c < 3; c++) out[k].dipole_au[c] = ms[k].dip[c];
    }
}

static kq_model_config config(int kind, int ndesc) {
    kq_model_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.nspecies = 5;
    int sp[5] = {8, 1, 6, 9, 7};
    for (int i = 0; i < 5; i++) c.species[i] = sp[i];
    c.ndesc = ndesc;
    c.soap[0].rcut = 3.0;
    c.soap[0].nmax = 3;
    c.soap[0].lmax = 2;
    c.soap[1].rcut = 1.7;
    c.soap[1].nmax = 2;
    c.soap[1].lmax = 2;
    c.delta[0] = 1.0;
    c.delta[1] = 0.5;
    return c;
}

/* Independent loss of Eq. 19 (sparse form: chi = K_NM w, regulariser
 * w^T K_MM w) for model m's representative vectors, recomputed from scratch
 * with kq_qeq_solve's A and b and explicit kernels. */
typedef struct {
    int nmol;
    const mol *ms;
    const kq_model *m;
    double *pn[KQ_MAX_DESC]; /* normalised SOAP of all training atoms */
    int natoms;
    double *knm; /* [natoms][nrep] */
    double *kmm; /* [nrep][nrep] */
} loss_ctx;

static double kern(const kq_model *m, const double *const *pa, size_t ia, const double *const *pb,
                   size_t ib) {
    double k = 0.0;
    for (int d = 0; d < m->ndesc; d++) {
        double dot = 0.0;
        for (size_t t = 0; t < m->len[d]; t++)
            dot += pa[d][ia * m->len[d] + t] * pb[d][ib * m->len[d] + t];
        k += m->delta[d] * pow(dot, m->zeta);
    }
    return k;
}

static void loss_init(loss_ctx *L, const kq_model *m, const mol *ms, int nmol) {
    L->m = m;
    L->ms = ms;
    L->nmol = nmol;
    L->natoms = 0;
    for (int k = 0; k < nmol; k++) L->natoms += ms[k].n;
    for (int d = 0; d < m->ndesc; d++) {
        L->pn[d] = malloc((size_t)L->natoms * m->len[d] * sizeof(double));
        int a = 0;
        for (int k = 0; k < nmol; k++) {
            kq_soap_compute(m->calc[d], ms[k].n, ms[k].z, ms[k].pos, L->pn[d] + a * m->len[d]);
            a += ms[k].n;
        }
        kq_normalize_rows((size_t)L->natoms, m->len[d], L->pn[d]);
    }
    int M = m->nrep;
    L->knm = malloc((size_t)L->natoms * M * sizeof(double));
    L->kmm = malloc((size_t)M * M * sizeof(double));
    for (int i = 0; i < L->natoms; i++)
        for (int r = 0; r < M; r++)
            L->knm[i * M + r] = kern(m, (const double *const *)L->pn, i,
                                     (const double *const *)m->rep, r);
    for (int i = 0; i < M; i++)
        for (int r = 0; r < M; r++)
            L->kmm[i * M + r] = kern(m, (const double *const *)m->rep, i,
                                     (const double *const *)m->rep, r);
}

static void loss_free(loss_ctx *L) {
    for (int d = 0; d < L->m->ndesc; d++) free(L->pn[d]);
    free(L->knm);
    free(L->kmm);
}

static double loss_eval(const loss_ctx *L, const double *w, double sigma) {
    const kq_model *m = L->m;
    int M = m->nrep, a = 0;
    double loss = 0.0;
    for (int k = 0; k < L->nmol; k++) {
        const mol *mo = &L->ms[k];
        double chi[6], mu[3];
        for (int i = 0; i < mo->n; i++) {
            double c = 0.0;
            for (int r = 0; r < M; r++) c += L->knm[(a + i) * M + r] * w[r];
            chi[i] = c;
        }
        kq_qeq_solve(mo->n, mo->z, mo->pos, mo->charge, chi, NULL, m->s_at, NULL, mu, NULL, NULL,
                     NULL);
        for (int c = 0; c < 3; c++) loss += (mu[c] - mo->dip[c]) * (mu[c] - mo->dip[c]);
        a += mo->n;
    }
    double reg = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) reg += w[i] * L->kmm[i * M + j] * w[j];
    return loss + sigma * reg;
}

/* max over components of the central-difference gradient of the loss at w */
static double grad_max(const loss_ctx *L, const double *w, double sigma, double h) {
    int M = L->m->nrep;
    double *wp = malloc((size_t)M * sizeof *wp), gmax = 0.0;
    for (int i = 0; i < M; i++) {
        memcpy(wp, w, (size_t)M * sizeof *wp);
        wp[i] = w[i] + h;
        double lp = loss_eval(L, wp, sigma);
        wp[i] = w[i] - h;
        double lm = loss_eval(L, wp, sigma);
        double g = fabs(lp - lm) / (2.0 * h);
        if (g > gmax) gmax = g;
    }
    free(wp);
    return gmax;
}

/* The representatives of a sparse model are plain farthest point sampling
 * (the library prunes with the triangle inequality; the choice must not
 * change): start at atom 0, then the atom farthest from the chosen ones in
 * the kernel metric, ties to the lower index. */
static void fps_check(const kq_model *sp, const mol *ms, int nmol) {
    loss_ctx L;
    loss_init(&L, sp, ms, nmol);
    int N = L.natoms, M = sp->nrep, ok = 1;
    double *mind = malloc((size_t)N * sizeof *mind);
    int *taken = calloc((size_t)N, sizeof *taken), cur = 0;
    const double *const *pn = (const double *const *)L.pn;
    for (int i = 0; i < N; i++) mind[i] = HUGE_VAL;
    for (int r = 0; r < M; r++) {
        taken[cur] = 1;
        for (int d = 0; d < sp->ndesc; d++)
            ok &= !memcmp(sp->rep[d] + (size_t)r * sp->len[d], pn[d] + (size_t)cur * sp->len[d],
                          sp->len[d] * sizeof(double));
        int best = 0;
        double bd = -1.0;
        for (int i = 0; i < N; i++) {
            double d2 = kern(sp, pn, i, pn, i) + kern(sp, pn, cur, pn, cur) -
                        2.0 * kern(sp, pn, i, pn, cur);
            if (d2 < mind[i]) mind[i] = d2;
            if (!taken[i] && mind[i] > bd) {
                bd = mind[i];
                best = i;
            }
        }
        cur = best;
    }
    CHECK(ok, "sparse representatives (M = %d) = plain farthest point sampling", M);
    free(mind);
    free(taken);
    loss_free(&L);
}

static int train(kq_model *m, int kind, int ndesc, const mol *ms, int nmol, int sparse,
                 double sigma) {
    kq_model_config c = config(kind, ndesc);
    int rc = kq_model_init(m, &c);
    if (rc) return rc;
    kq_mol km[MAXMOL];
    to_kq(ms, nmol, km);
    kq_set s;
    rc = kq_set_build(m, nmol, km, &s, NULL, NULL);
    if (rc) return rc;
    kq_train_opts o = {sparse, 1, &sigma};
    rc = kq_train(m, &s, NULL, 0, NULL, &o, NULL, NULL, NULL);
    kq_set_free(&s);
    return rc;
}

static void rotate(const double *rm, int n, const double *in, double *out, double shift) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            double s = shift * (k + 1);
            for (int l = 0; l < 3; l++) s += rm[3 * k + l] * in[3 * i + l];
            out[3 * i + k] = s;
        }
}

static double norm3(const double *v) { return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }

int main(void) {
    (void)shared_dir;
    (void)th_skip;
    mol train_set[MAXMOL], test_set[NTEMPL];
    int ntrain = 18;
    for (int k = 0; k < ntrain; k++) make_mol(&train_set[k], k % NTEMPL, 0.08);
    for (int k = 0; k < NTEMPL; k++) make_mol(&test_set[k], k, 0.08);

    /* 1. one molecule: the fit reproduces its dipole */
    {
        kq_model m;
        CHECK(train(&m, KQ_KIND_KQEQ, 1, &train_set[1], 1, 0, 1e-9) == KQ_OK, "train one");
        double mu[3];
        CHECK(kq_predict(&m, train_set[1].n, train_set[1].z, train_set[1].pos,
                         train_set[1].charge, NULL, mu, NULL, NULL) == KQ_OK,
              "predict one");
        double e[3] = {mu[0] - train_set[1].dip[0], mu[1] - train_set[1].dip[1],
                       mu[2] - train_set[1].dip[2]};
        CHECK(norm3(e) < 2e-9 * norm3(train_set[1].dip), "one-molecule fit: |err| %g, |mu| %g",
              norm3(e), norm3(train_set[1].dip));
        kq_model_free(&m);
    }

    /* 2. closed form (Eq. 20) minimises the loss of Eq. 19; sparse form its loss */
    const double sigma = 1e-3;
    kq_model full, sp_all, sp;
    CHECK(train(&full, KQ_KIND_KQEQ, 2, train_set, ntrain, 0, sigma) == KQ_OK, "train full");
    int natoms = 0;
    for (int k = 0; k < ntrain; k++) natoms += train_set[k].n;
    CHECK(full.nrep == natoms, "full form uses all %d atoms (%d)", natoms, full.nrep);
    CHECK(train(&sp_all, KQ_KIND_KQEQ, 2, train_set, ntrain, natoms, sigma) == KQ_OK,
          "train sparse M = N");
    CHECK(train(&sp, KQ_KIND_KQEQ, 2, train_set, ntrain, 12, sigma) == KQ_OK, "train sparse M=12");
    CHECK(sp.nrep == 12, "sparse nrep %d", sp.nrep);
    {
        loss_ctx L;
        loss_init(&L, &full, train_set, ntrain);
        double *w0 = calloc((size_t)full.nrep, sizeof *w0);
        double g0 = grad_max(&L, w0, sigma, 1e-3);
        double g = grad_max(&L, full.w, sigma, 1e-3);
        CHECK(g < 1e-13 * g0, "full form: |dL/dw| %g at the solution (%g at w = 0)", g, g0);
        /* and the loss is larger a step away in each direction */
        double l0 = loss_eval(&L, full.w, sigma);
        double *wp = malloc((size_t)full.nrep * sizeof *wp);
        memcpy(wp, full.w, (size_t)full.nrep * sizeof *wp);
        wp[3] += 1e-2;
        CHECK(loss_eval(&L, wp, sigma) > l0, "loss increases away from the minimum");
        free(wp);
        free(w0);
        loss_free(&L);
        loss_init(&L, &sp, train_set, ntrain);
        w0 = calloc((size_t)sp.nrep, sizeof *w0);
        g0 = grad_max(&L, w0, sigma, 1e-3);
        g = grad_max(&L, sp.w, sigma, 1e-3);
        CHECK(g < 5e-15 * g0, "sparse form: |dL/dw| %g at the solution (%g at w = 0)", g, g0);
        fps_check(&sp, train_set, ntrain);
        fps_check(&sp_all, train_set, ntrain);
        free(w0);
        loss_free(&L);
    }

    /* 3. sparse with M = all atoms equals the full form; charges; symmetry */
    double rm[9];
    {
        double a = 0.4, b = -1.1, c = 2.3;
        double ca = cos(a), sa = sin(a), cb = cos(b), sb = sin(b), cc = cos(c), sc = sin(c);
        double rz[9] = {ca, -sa, 0, sa, ca, 0, 0, 0, 1}, ry[9] = {cb, 0, sb, 0, 1, 0, -sb, 0, cb},
               rx[9] = {1, 0, 0, 0, cc, -sc, 0, sc, cc}, t[9];
        la_matmul(3, 3, 3, rz, 3, ry, 3, t, 3);
        la_matmul(3, 3, 3, t, 3, rx, 3, rm, 3);
    }
    double mae_full = 0.0, mae_qeqref = 0.0, typical = 0.0;
    for (int k = 0; k < NTEMPL; k++) typical += norm3(test_set[k].dip) / NTEMPL;
    for (int k = 0; k < NTEMPL; k++) {
        const mol *mo = &test_set[k];
        double q1[6], q2[6], mu1[3], mu2[3], al[9], pr[18], qr[6], mur[3];
        CHECK(kq_predict(&full, mo->n, mo->z, mo->pos, mo->charge, q1, mu1, al, NULL) == KQ_OK,
              "predict full %s", templates[k].name);
        CHECK(kq_predict(&sp_all, mo->n, mo->z, mo->pos, mo->charge, q2, mu2, NULL, NULL) ==
                  KQ_OK,
              "predict sparse");
        /* relative to the typical dipole of the set: K of near-equivalent H
         * atoms is ill-conditioned, so the two solves differ at ~1e-9 */
        double scale = typical;
        for (int c = 0; c < 3; c++)
            CHECK(fabs(mu1[c] - mu2[c]) <= 1e-8 * scale, "sparse(M=N) vs full %s: %.17g %.17g",
                  templates[k].name, mu1[c], mu2[c]);
        double qs = 0.0;
        for (int i = 0; i < mo->n; i++) qs += q1[i];
        CHECK_CLOSE(qs, mo->charge, 1e-15, "charges sum to the frame's charge");
        mae_full += fabs(norm3(mu1) - norm3(mo->dip));
        mae_qeqref += norm3(mo->dip);
        /* rotation (and translation): dipole rotates, charges stay */
        rotate(rm, mo->n, mo->pos, pr, 2.5);
        CHECK(kq_predict(&full, mo->n, mo->z, pr, mo->charge, qr, mur, NULL, NULL) == KQ_OK,
              "predict rotated");
        for (int c = 0; c < 3; c++) {
            double s = 0.0;
            for (int l = 0; l < 3; l++) s += rm[3 * c + l] * mu1[l];
            CHECK_CLOSE(mur[c], s, 3e-14, "dipole equivariance");
        }
        for (int i = 0; i < mo->n; i++) CHECK_CLOSE(qr[i], q1[i], 5e-14, "charge invariance");
        /* polarizability symmetric PSD */
        int sym = al[1] == al[3] && al[2] == al[6] && al[5] == al[7];
        CHECK(sym, "polarizability symmetric");
        double ev[3], vv[9];
        CHECK(la_sym_eig(3, al, 3, ev, vv, 3) == LA_OK, "eig alpha");
        CHECK(ev[0] >= -1e-12 * fabs(ev[2]), "polarizability PSD: %g %g %g", ev[0], ev[1], ev[2]);
        CHECK(ev[2] > 0.0, "polarizability nonzero");
    }
    mae_full /= NTEMPL;
    mae_qeqref /= NTEMPL;
    CHECK(mae_full < 0.2 * mae_qeqref, "kQEq learns the synthetic dipoles: MAE %g vs mean |mu| %g",
          mae_full, mae_qeqref);

    /* 4. model text round trip: save -> load -> predict bitwise identical */
    {
        char *text = NULL, *text2 = NULL;
        size_t len = 0, len2 = 0;
        CHECK(kq_model_write(&sp, &text, &len) == KQ_OK, "write");
        kq_model back;
        int line = -1;
        int rc = kq_model_read(text, len, &back, &line);
        CHECK(rc == KQ_OK, "read back rc %d line %d", rc, line);
        CHECK(kq_model_write(&back, &text2, &len2) == KQ_OK && len2 == len &&
                  memcmp(text, text2, len) == 0,
              "write(read(write)) identical text");
        for (int k = 0; k < NTEMPL; k++) {
            const mol *mo = &test_set[k];
            double q1[6], q2[6], mu1[3], mu2[3], a1[9], a2[9];
            kq_predict(&sp, mo->n, mo->z, mo->pos, mo->charge, q1, mu1, a1, NULL);
            kq_predict(&back, mo->n, mo->z, mo->pos, mo->charge, q2, mu2, a2, NULL);
            CHECK(!memcmp(q1, q2, (size_t)mo->n * sizeof(double)) &&
                      !memcmp(mu1, mu2, sizeof mu1) &&
                      !memcmp(a1, a2, sizeof a1),
                  "loaded model predicts bitwise identically (%s)", templates[k].name);
        }
        kq_model_free(&back);

        /* numbers as a person writes them: single digits, signs, 0 (the
         * reader's shortcut for "0" must leave every other token to strtod) */
        {
            const char *l6 = strstr(text, "\nchi ") + 1, *l7 = strchr(l6, '\n') + 1;
            const char *chi = "chi 5 1 2 -3 0 9\n";
            size_t a = (size_t)(l6 - text), c = strlen(chi), rest = len - (size_t)(l7 - text);
            char *ed = malloc(a + c + rest + 1);
            memcpy(ed, text, a);
            memcpy(ed + a, chi, c);
            memcpy(ed + a + c, l7, rest + 1);
            rc = kq_model_read(ed, a + c + rest, &back, &line);
            CHECK(rc == KQ_OK && back.chi[0] == 1 && back.chi[1] == 2 && back.chi[2] == -3 &&
                      back.chi[3] == 0 && !signbit(back.chi[3]) && back.chi[4] == 9,
                  "chi '1 2 -3 0 9' read as %g %g %g %g %g (rc %d, line %d)", back.chi[0],
                  back.chi[1], back.chi[2], back.chi[3], back.chi[4], rc, line);
            if (rc == KQ_OK) kq_model_free(&back);
            free(ed);
        }

        /* spaces and tabs as a person types them between the tokens: the same model */
        {
            char *ws = malloc(3 * len + 1), *o = ws;
            for (size_t i = 0; i < len; i++) {
                if (text[i] == ' ') *o++ = ' ', *o++ = '\t', *o++ = ' ';
                else *o++ = text[i];
            }
            *o = '\0';
            char *again = NULL;
            size_t alen = 0;
            rc = kq_model_read(ws, (size_t)(o - ws), &back, &line);
            CHECK(rc == KQ_OK && kq_model_write(&back, &again, &alen) == KQ_OK && alen == len &&
                      !memcmp(again, text, len),
                  "a model text with ' \\t ' between tokens: rc %d, line %d, not the same model",
                  rc, line);
            if (rc == KQ_OK) kq_model_free(&back);
            free(again);
            free(ws);
            CHECK(kq_model_read(NULL, 10, &back, &line) == KQ_EINVAL &&
                      kq_model_read(text, len, NULL, &line) == KQ_EINVAL,
                  "kq_model_read without a text or a model");
        }

        /* Damaged texts: the error names the line. Line numbers of this text:
         * 1 version, 2 kind, 3 comment, 4 s_at, 5 species, 6 chi, 7 eta, 8 zeta,
         * 9 reg, 10 ndesc, 11-12 desc, 13 nrep, 14 rep 0, 15-16 v, ... */
        struct {
            const char *what;
            int line;
        } cases[] = {{"truncated", 0},   {"wrong version", 1}, {"wrong chi count", 6},
                     {"NaN weight", 14}, {"short vector", 15}, {"wrong length", 11},
                     {"bad nrep", 13},   {"trailing junk", 0}, {"empty", 1}};
        int ncases = (int)(sizeof cases / sizeof cases[0]);
        for (int ci = 0; ci < ncases; ci++) {
            char *bad = malloc(len + 64);
            size_t bl = len;
            memcpy(bad, text, len + 1);
            /* find the start of line L (1-based) */
            const char *what = cases[ci].what;
            int expect = cases[ci].line;
            if (!strcmp(what, "truncated")) {
                /* cut in the middle of the vectors: error one past the last line */
                bl = len / 2;
                while (bad[bl - 1] != '\n') bl--;
                int nl = 0;
                for (size_t i = 0; i < bl; i++) nl += bad[i] == '\n';
                expect = nl + 1;
            } else if (!strcmp(what, "wrong version")) {
                bad[11] = '2'; /* KQEQ_MODEL_V2 */
            } else if (!strcmp(what, "wrong chi count")) {
                char *p = strstr(bad, "\nchi 5");
                p[5] = '4';
            } else if (!strcmp(what, "NaN weight")) {
                char *p = strstr(bad, "\nrep 0 ") + 7;
                memcpy(p, "nan   ", 6);
                p[6] = p[6] == ' ' ? ' ' : p[6];
                /* rebuild: replace the whole number with nan */
                char *e = strchr(p, '\n');
                memmove(p + 3, e, strlen(e) + 1);
                bl = strlen(bad);
            } else if (!strcmp(what, "short vector")) {
                char *p = strstr(bad, "\nv 0 ") + 1;
                char *e = strchr(p, '\n');
                char *lastsp = e;
                while (*lastsp != ' ') lastsp--;
                memmove(lastsp, e, strlen(e) + 1);
                bl = strlen(bad);
            } else if (!strcmp(what, "wrong length")) {
                char *p = strstr(bad, "length ") + 7;
                *p = (char)(*p == '9' ? '1' : *p + 1);
            } else if (!strcmp(what, "bad nrep")) {
                char *p = strstr(bad, "\nnrep ") + 6;
                memcpy(p, "x", 1);
            } else if (!strcmp(what, "trailing junk")) {
                memcpy(bad + len, "extra\n", 7);
                bl = len + 6;
                int nl = 0;
                for (size_t i = 0; i < len; i++) nl += bad[i] == '\n';
                expect = nl + 1;
            } else if (!strcmp(what, "empty")) {
                bl = 0;
            }
            line = -1;
            rc = kq_model_read(bad, bl, &back, &line);
            CHECK(rc == KQ_EFORMAT && line == expect, "damaged (%s): rc %d line %d, expected %d",
                  what, rc, line, expect);
            /* F7: the same with the reason */
            char msg[256];
            int line2 = -1;
            rc = kq_model_read_msg(bad, bl, &back, &line2, msg, sizeof msg);
            CHECK(rc == KQ_EFORMAT && line2 == expect && msg[0] != '\0' && !strchr(msg, '\n'),
                  "damaged (%s): reason '%s' line %d", what, msg, line2);
            free(bad);
        }

        /* F7: specific reasons, one edit of the good text each */
        struct {
            const char *find, *repl, *reason;
        } why[] = {
            {"\nchi 5", "\nchi 4", "chi count: expected 5, found '4'"},
            {"\nzeta 2", "\nzetx 2", "expected 'zeta', found 'zetx'"},
            {"\nzeta 2", "\nzeta 2 3", "zeta: unexpected text '3' at the end of the line"},
            {"\nreg ", "\nreg nan ", "reg: 'nan' is not a finite number"},
            {"\nnrep ", "\nnrep 2000000000\n#", "nrep 2000000000 is larger than the text can hold"},
            {"\nkind kqeq", "\nkind eann", "kind: unknown kind 'eann'"},
            {"\nspecies 5 1", "\nspecies 5 10", "species: element 10 has no QEq radius"},
            {"lmax 2 sigma ", "lmax 2 sigma 1e-200 x", "sigma: 1e-200 angstrom is below 0.001"},
            {"\nend", "\nend\nmore", "text after 'end'"},
        };
        for (size_t wi = 0; wi < sizeof why / sizeof why[0]; wi++) {
            const char *at = strstr(text, why[wi].find);
            CHECK(at != NULL, "edit '%s' found", why[wi].find);
            if (!at) continue;
            size_t pre = (size_t)(at - text), fl = strlen(why[wi].find), rl = strlen(why[wi].repl);
            char *bad = malloc(len + rl + 1);
            memcpy(bad, text, pre);
            memcpy(bad + pre, why[wi].repl, rl);
            /* "sigma 1e-200 x": the x swallows the old value's token */
            const char *rest = at + fl;
            if (why[wi].repl[rl - 1] == 'x') {
                bad[pre + rl - 1] = ' ';
                while (*rest != ' ') rest++;
            }
            strcpy(bad + pre + rl, rest);
            char msg[256];
            int ln = -1;
            rc = kq_model_read_msg(bad, strlen(bad), &back, &ln, msg, sizeof msg);
            CHECK(rc == KQ_EFORMAT && ln > 0 && strstr(msg, why[wi].reason) != NULL,
                  "reason: rc %d line %d '%s', expected '%s'", rc, ln, msg, why[wi].reason);
            free(bad);
        }
        /* a NULL message buffer is fine, and so is a tiny one */
        {
            char tiny[8];
            int ln = -1;
            CHECK(kq_model_read_msg("KQEQ", 4, &back, &ln, NULL, 0) == KQ_EFORMAT && ln == 1,
                  "NULL msg");
            CHECK(kq_model_read_msg("KQEQ", 4, &back, &ln, tiny, sizeof tiny) == KQ_EFORMAT &&
                      strlen(tiny) == sizeof tiny - 1,
                  "truncated msg '%s'", tiny);
        }
        free(text);
        free(text2);
    }

    /* F11: representative vectors must have unit length (or be zero);
     * F2: kq_model_write refuses non-finite numbers; kq_predict refuses
     * non-finite results */
    {
        char *text = NULL;
        size_t len = 0;
        kq_model back;
        int line = -1;
        char msg[256];
        size_t l0 = sp.len[0];
        double *v0 = malloc(l0 * sizeof *v0);
        memcpy(v0, sp.rep[0], l0 * sizeof *v0);
        const double scale[4] = {1.0 + 1e-7, 2.0, 1.0 + 1e-10, 0.0};
        const int ok[4] = {0, 0, 1, 1};
        for (int k = 0; k < 4; k++) {
            for (size_t t = 0; t < l0; t++) sp.rep[0][t] = v0[t] * scale[k];
            CHECK(kq_model_write(&sp, &text, &len) == KQ_OK, "write scaled vector");
            int rc = kq_model_read_msg(text, len, &back, &line, msg, sizeof msg);
            if (ok[k]) {
                CHECK(rc == KQ_OK, "vector scaled by %.17g accepted: %s", scale[k], msg);
                if (rc == KQ_OK) kq_model_free(&back);
            } else {
                /* line 15: v 0 of representative 0 */
                CHECK(rc == KQ_EFORMAT && line == 15 && strstr(msg, "not 1 (nor 0)"),
                      "vector scaled by %.17g refused: rc %d line %d '%s'", scale[k], rc, line,
                      msg);
            }
            free(text);
            text = NULL;
        }
        memcpy(sp.rep[0], v0, l0 * sizeof *v0);
        /* non-finite numbers: no text */
        double w0 = sp.w[0];
        sp.w[0] = NAN;
        CHECK(kq_model_write(&sp, &text, &len) == KQ_EINVAL && text == NULL, "write NaN weight");
        sp.w[0] = w0;
        sp.rep[0][1] = INFINITY;
        CHECK(kq_model_write(&sp, &text, &len) == KQ_EINVAL && text == NULL, "write Inf vector");
        sp.rep[0][1] = v0[1];
        double c0 = sp.chi[0];
        sp.chi[0] = NAN;
        CHECK(kq_model_write(&sp, &text, &len) == KQ_EINVAL && text == NULL, "write NaN chi");
        sp.chi[0] = c0;
        CHECK(kq_model_write(&sp, &text, &len) == KQ_OK, "write restored model");
        free(text);
        /* huge (finite) weights: the prediction overflows, KQ_ERANGE, and
         * the outputs stay untouched */
        double *wsave = malloc((size_t)sp.nrep * sizeof *wsave);
        memcpy(wsave, sp.w, (size_t)sp.nrep * sizeof *wsave);
        for (int r = 0; r < sp.nrep; r++) sp.w[r] = 1e308;
        const mol *mo = &test_set[0];
        double q[6] = {42}, mu[3] = {42}, al[9] = {42};
        CHECK(kq_predict(&sp, mo->n, mo->z, mo->pos, mo->charge, q, mu, al, NULL) == KQ_ERANGE,
              "weights 1e308: KQ_ERANGE");
        CHECK(q[0] == 42 && mu[0] == 42 && al[0] == 42, "outputs untouched on KQ_ERANGE");
        memcpy(sp.w, wsave, (size_t)sp.nrep * sizeof *wsave);
        CHECK(kq_predict(&sp, mo->n, mo->z, mo->pos, mo->charge, q, mu, al, NULL) == KQ_OK &&
                  isfinite(mu[0]),
              "restored weights predict");
        free(wsave);
        free(v0);
        /* F3 through a model: a width that gives NaN descriptors */
        kq_model_config c = config(KQ_KIND_KQEQ, 1);
        c.soap[0].sigma = 1e-100;
        kq_model bad;
        CHECK(kq_model_init(&bad, &c) == KQ_EINVAL, "model with sigma 1e-100 refused");
    }

    /* F2: training never returns a model with NaN/Inf numbers: reference
     * dipoles near the largest double overflow the fit */
    {
        mol huge[NTEMPL];
        for (int k = 0; k < NTEMPL; k++) {
            huge[k] = train_set[k];
            for (int c = 0; c < 3; c++) huge[k].dip[c] = (c == 1 ? -1.7e308 : 1.7e308);
        }
        for (int kind = 0; kind < 2; kind++) {
            kq_model hm;
            int rc = train(&hm, kind == 0 ? KQ_KIND_KQEQ : KQ_KIND_QEQ, 1, huge, NTEMPL, 0, 1e-3);
            CHECK(rc == KQ_ERANGE || rc == KQ_ELINALG, "kind %d: dipoles 1.7e308: rc %d", kind,
                  rc);
            CHECK(hm.nrep == 0 && hm.w == NULL, "kind %d: no weights kept after a failed fit",
                  kind);
            int fin = 1;
            for (int s2 = 0; s2 < hm.nspecies; s2++) fin &= isfinite(hm.chi[s2]);
            CHECK(fin, "kind %d: chi stay finite", kind);
            kq_model_free(&hm);
        }
        kq_model qm;
        kq_model_config c = config(KQ_KIND_QEQ, 0);
        kq_mol km[NTEMPL];
        to_kq(huge, NTEMPL, km);
        CHECK(kq_model_init(&qm, &c) == KQ_OK, "init qeq");
        int rc = kq_train_qeq_eta(&qm, NTEMPL, km, NULL, 0, 5, NULL, NULL, NULL);
        CHECK(rc == KQ_ERANGE || rc == KQ_ELINALG, "QEq+eta, dipoles 1.7e308: rc %d", rc);
        kq_model_free(&qm);
    }

    /* 5. unknown elements are errors */
    {
        int z[3] = {8, 1, 16};
        double pos[9] = {0, 0, 0, 0.96, 0, 0, -0.3, 0.9, 0};
        double mu[3];
        CHECK(kq_predict(&sp, 3, z, pos, 0.0, NULL, mu, NULL, NULL) == KQ_ESPECIES,
              "S unknown to the model");
        z[2] = 14;
        CHECK(kq_predict(&sp, 3, z, pos, 0.0, NULL, mu, NULL, NULL) == KQ_ESPECIES,
              "Si unknown");
        kq_model_config c = config(KQ_KIND_KQEQ, 1);
        c.species[0] = 14;
        kq_model bad;
        CHECK(kq_model_init(&bad, &c) == KQ_ESPECIES, "model with Si refused");
    }

    /* 6. classical QEq fit recovers the chi of QEq-generated data (up to a
     * common shift), and sigma selection on a validation set */
    {
        mol qs[MAXMOL];
        const double chi_true[10] = {[1] = 0.17, [6] = 0.20, [7] = 0.25, [8] = 0.32, [9] = 0.40};
        const int elz[5] = {1, 6, 7, 8, 9};
        for (int k = 0; k < ntrain; k++) {
            make_mol(&qs[k], k % NTEMPL, 0.08);
            double chi[6];
            for (int i = 0; i < qs[k].n; i++) chi[i] = chi_true[qs[k].z[i]];
            kq_qeq_solve(qs[k].n, qs[k].z, qs[k].pos, qs[k].charge, chi, NULL, 0.75, NULL,
                         qs[k].dip, NULL, NULL, NULL);
        }
        kq_model q;
        CHECK(train(&q, KQ_KIND_QEQ, 0, qs, ntrain, 0, 1.0) == KQ_OK, "train QEq");
        for (int e = 1; e < 5; e++) {
            double d_fit = q.chi[e] - q.chi[0], d_true = chi_true[elz[e]] - chi_true[elz[0]];
            CHECK_CLOSE(d_fit, d_true, 2e-10, "QEq chi difference");
        }
        /* eta as well: data from QEq with non-zero eta, recovered by the
         * golden-section search */
        {
            const double eta_true[10] = {[1] = 0.30, [6] = 0.10, [7] = 0.20, [8] = 0.25,
                                         [9] = 0.40};
            mol qe[MAXMOL];
            for (int k = 0; k < ntrain; k++) {
                qe[k] = qs[k];
                double chi[6], eta[6];
                for (int i = 0; i < qe[k].n; i++) {
                    chi[i] = chi_true[qe[k].z[i]];
                    eta[i] = eta_true[qe[k].z[i]];
                }
                kq_qeq_solve(qe[k].n, qe[k].z, qe[k].pos, qe[k].charge, chi, eta, 0.75, NULL,
                             qe[k].dip, NULL, NULL, NULL);
            }
            kq_model_config c = config(KQ_KIND_QEQ, 0);
            kq_model qm;
            kq_mol km[MAXMOL];
            to_kq(qe, ntrain, km);
            kq_train_report rep;
            CHECK(kq_model_init(&qm, &c) == KQ_OK, "init qeq eta");
            CHECK(kq_train_qeq_eta(&qm, ntrain, km, NULL, 0, 50, &rep, NULL, NULL) == KQ_OK,
                  "train qeq eta");
            for (int e = 0; e < 5; e++)
                CHECK_CLOSE(qm.eta[e], eta_true[elz[e]], 5e-14, "fitted eta");
            CHECK(rep.train_mae_debye < 1e-6, "QEq+eta fits QEq data: MAE %g D",
                  rep.train_mae_debye);
            kq_model_free(&qm);
        }
        char *text;
        size_t len;
        kq_model back;
        int line;
        CHECK(kq_model_write(&q, &text, &len) == KQ_OK &&
                  kq_model_read(text, len, &back, &line) == KQ_OK,
              "QEq model round trip");
        double d1[3], d2[3];
        kq_predict(&q, test_set[2].n, test_set[2].z, test_set[2].pos, 0, NULL, d1, NULL, NULL);
        kq_predict(&back, test_set[2].n, test_set[2].z, test_set[2].pos, 0, NULL, d2, NULL, NULL);
        CHECK(!memcmp(d1, d2, sizeof d1), "QEq loaded model bitwise");
        free(text);
        kq_model_free(&back);
        kq_model_free(&q);

        /* sigma from a grid on a validation set */
        kq_model_config c = config(KQ_KIND_KQEQ, 1);
        kq_model m;
        kq_mol km[MAXMOL], kv[NTEMPL];
        to_kq(train_set, ntrain, km);
        to_kq(test_set, NTEMPL, kv);
        kq_set st, sv;
        CHECK(kq_model_init(&m, &c) == KQ_OK, "init");
        CHECK(kq_set_build(&m, ntrain, km, &st, NULL, NULL) == KQ_OK, "set train");
        CHECK(kq_set_build(&m, NTEMPL, kv, &sv, NULL, NULL) == KQ_OK, "set valid");
        double grid[5] = {1e-6, 1e-4, 1e-2, 1, 100};
        kq_train_opts o = {10, 5, grid};
        kq_train_report rep = {0, 0, 0, 0};
        CHECK(kq_train(&m, &st, NULL, 0, &sv, &o, &rep, NULL, NULL) == KQ_OK, "train grid");
        double vmae = rep.valid_mae_debye;
        int ingrid = 0;
        for (int g = 0; g < 5; g++) ingrid |= m.reg == grid[g];
        CHECK(ingrid && m.reg < 100, "chosen sigma %g from the grid", m.reg);
        double *pd = malloc((size_t)NTEMPL * 3 * sizeof *pd), mae, rr;
        CHECK(kq_set_predict(&m, &sv, pd) == KQ_OK, "set predict");
        kq_dipole_metrics(NTEMPL, pd, sv.dipole_au, &mae, &rr);
        CHECK_REL(mae, vmae, 3e-14, "validation MAE reported = recomputed");
        double *pt = malloc((size_t)ntrain * 3 * sizeof *pt), tmae, trr;
        CHECK(kq_set_predict(&m, &st, pt) == KQ_OK, "set predict train");
        kq_dipole_metrics(ntrain, pt, st.dipole_au, &tmae, &trr);
        CHECK_REL(tmae, rep.train_mae_debye, 3e-14, "training MAE reported = recomputed");
        CHECK_REL(trr, rep.train_rrmse_percent, 3e-14, "training RRMSE reported = recomputed");
        free(pt);
        /* set prediction = per-molecule prediction, bitwise */
        int same = 1;
        for (int k = 0; k < NTEMPL; k++) {
            double mu[3];
            kq_predict(&m, test_set[k].n, test_set[k].z, test_set[k].pos, test_set[k].charge,
                       NULL, mu, NULL, NULL);
            same &= !memcmp(mu, pd + 3 * k, sizeof mu);
        }
        CHECK(same, "kq_set_predict == kq_predict bitwise");
        /* F11: huge weights overflow the set prediction: KQ_ERANGE */
        {
            double *ws = malloc((size_t)m.nrep * sizeof *ws);
            memcpy(ws, m.w, (size_t)m.nrep * sizeof *ws);
            for (int r = 0; r < m.nrep; r++) m.w[r] = 1e308;
            double *tmp = malloc((size_t)NTEMPL * 3 * sizeof *tmp);
            CHECK(kq_set_predict(&m, &sv, tmp) == KQ_ERANGE, "set predict, weights 1e308");
            memcpy(m.w, ws, (size_t)m.nrep * sizeof *ws);
            free(tmp);
            free(ws);
        }
        /* training on a subset selection equals training on that subset */
        int sel[5] = {2, 3, 5, 7, 11};
        kq_train_opts o1 = {0, 1, &grid[2]};
        CHECK(kq_train(&m, &st, sel, 5, NULL, &o1, NULL, NULL, NULL) == KQ_OK, "train subset");
        mol sub[5];
        for (int i = 0; i < 5; i++) sub[i] = train_set[sel[i]];
        kq_model m2;
        CHECK(train(&m2, KQ_KIND_KQEQ, 1, sub, 5, 0, grid[2]) == KQ_OK, "train copy");
        double mu1[3], mu2[3];
        kq_predict(&m, test_set[0].n, test_set[0].z, test_set[0].pos, 0, NULL, mu1, NULL, NULL);
        kq_predict(&m2, test_set[0].n, test_set[0].z, test_set[0].pos, 0, NULL, mu2, NULL, NULL);
        CHECK(!memcmp(mu1, mu2, sizeof mu1), "subset selection = copied subset");
        /* metrics on a known case: |mu| 2 D vs 1.5 D, 0.5 D vs 0 (error over the 1 D
         * floor) and 1.25 D vs 1.05 D (just above the floor: over 1.05) */
        double pa[9] = {2.0 / KQ_AU_DEBYE, 0, 0, 0.5 / KQ_AU_DEBYE, 0, 0, 0, 1.25 / KQ_AU_DEBYE, 0};
        double ra[9] = {1.5 / KQ_AU_DEBYE, 0, 0, 0, 0, 0, 0, 1.05 / KQ_AU_DEBYE, 0};
        kq_dipole_metrics(3, pa, ra, &mae, &rr);
        CHECK_CLOSE(mae, (0.5 + 0.5 + 0.2) / 3.0, 1e-12, "MAE metric");
        const double t1 = 0.5 / 1.5, t2 = 0.5 / 1.0, t3 = 0.2 / 1.05;
        CHECK_CLOSE(rr, 100.0 * sqrt((t1 * t1 + t2 * t2 + t3 * t3) / 3.0), 1e-10, "RRMSE metric");
        free(pd);
        kq_model_free(&m);
        kq_model_free(&m2);
        kq_set_free(&st);
        kq_set_free(&sv);
    }
    /* 7. a singular sparse system: three copies of one molecule and M = all
     * their atoms, so two thirds of the representatives repeat an earlier
     * one (farthest point sampling takes the distinct atoms first, then
     * atoms at distance 0) and K_MM and the normal matrix have equal rows.
     * The solve must take its jitter path (Cholesky fails without it) and
     * give the function of M = one copy's atoms (the same span of kernels,
     * the same loss): the dipoles agree to the jitter's size (measured
     * 2.7e-7 of the largest component; tolerance 3e-6). */
    {
        const mol *one = &train_set[2];
        mol three[3] = {*one, *one, *one};
        kq_model dup, dis;
        const int n = one->n;
        CHECK(train(&dup, KQ_KIND_KQEQ, 1, three, 3, 3 * n, sigma) == KQ_OK,
              "sparse M = 3n with repeated representatives: training failed");
        CHECK(train(&dis, KQ_KIND_KQEQ, 1, three, 3, n, sigma) == KQ_OK, "sparse M = n");
        double worst = 0.0, size = 0.0;
        for (int k = 0; k < NTEMPL; k++) {
            const mol *mo = &test_set[k];
            double mu1[3], mu2[3];
            int rc1 = kq_predict(&dup, mo->n, mo->z, mo->pos, mo->charge, NULL, mu1, NULL, NULL),
                rc2 = kq_predict(&dis, mo->n, mo->z, mo->pos, mo->charge, NULL, mu2, NULL, NULL);
            CHECK(rc1 == KQ_OK && rc2 == KQ_OK, "predict with repeated representatives");
            for (int c = 0; c < 3; c++) {
                worst = th_worst(worst, fabs(mu1[c] - mu2[c]));
                size = th_worst(size, fabs(mu2[c]));
            }
        }
        printf("repeated representatives (jitter path): M %d vs %d, max |mu diff| %.2e, |mu| up to "
               "%.3g\n", dup.nrep, dis.nrep, worst, size);
        CHECK(dup.nrep == 3 * n && dis.nrep == n && size > 0 && worst <= 3e-6 * size,
              "repeated representatives: M %d / %d, max |mu diff| %.3g (|mu| up to %.3g)",
              dup.nrep, dis.nrep, worst, size);
        kq_model_free(&dup);
        kq_model_free(&dis);
    }
    /* 8. edges of the API: missing arguments, one species, a chosen atomic
     * width, selections that name no molecule, QEq of one atom */
    {
        kq_model m;
        kq_model_config c = config(KQ_KIND_KQEQ, 1);
        CHECK(kq_model_init(NULL, &c) == KQ_EINVAL && kq_model_init(&m, NULL) == KQ_EINVAL,
              "kq_model_init without a model or a configuration");
        c.nspecies = 1; /* O only */
        c.s_at = 0.05;  /* any positive width is the user's (0: the default) */
        CHECK(kq_model_init(&m, &c) == KQ_OK && m.nspecies == 1 && m.s_at == 0.05,
              "one species, s_at 0.05: init");
        kq_model_free(&m);
        c = config(KQ_KIND_KQEQ, 1);
        CHECK(kq_model_init(&m, &c) == KQ_OK, "init");
        kq_mol km[NTEMPL];
        to_kq(test_set, NTEMPL, km);
        kq_set st;
        CHECK(kq_set_build(&m, NTEMPL, km, &st, NULL, NULL) == KQ_OK, "set");
        const int bad_sel[2][2] = {{0, NTEMPL}, {-1, 1}};
        kq_train_opts o = {0, 1, &sigma};
        /* a regularisation must be a positive number; without validation data
         * the report's validation fields stay -1 (kqeq.h) */
        const double bad_reg[4] = {0.0, -1e-3, INFINITY, NAN};
        for (int b = 0; b < 4; b++) {
            kq_train_opts ob = {0, 1, &bad_reg[b]};
            CHECK(kq_train(&m, &st, NULL, 0, NULL, &ob, NULL, NULL, NULL) == KQ_EINVAL,
                  "kq_train: regularisation %g accepted", bad_reg[b]);
        }
        kq_train_report rep = {0, 0, 0, 0};
        CHECK(kq_train(&m, &st, NULL, 0, NULL, &o, &rep, NULL, NULL) == KQ_OK &&
                  rep.valid_mae_debye == -1.0 && rep.valid_rrmse_percent == -1.0 &&
                  rep.train_mae_debye >= 0 && rep.train_rrmse_percent >= 0,
              "kq_train without validation: report %g %g %g %g", rep.train_mae_debye,
              rep.train_rrmse_percent, rep.valid_mae_debye, rep.valid_rrmse_percent);
        for (int b = 0; b < 2; b++)
            CHECK(kq_train(&m, &st, bad_sel[b], 2, NULL, &o, NULL, NULL, NULL) == KQ_EINVAL,
                  "kq_train: a selection with molecule %d of %d accepted", bad_sel[b][b ? 0 : 1],
                  NTEMPL);
        kq_set_free(&st);
        kq_model_free(&m);
        kq_model qm;
        c = config(KQ_KIND_QEQ, 0);
        CHECK(kq_model_init(&qm, &c) == KQ_OK, "init qeq");
        for (int b = 0; b < 2; b++)
            CHECK(kq_train_qeq_eta(&qm, NTEMPL, km, bad_sel[b], 2, 5, NULL, NULL, NULL) ==
                      KQ_EINVAL,
                  "kq_train_qeq_eta: a selection with molecule %d of %d accepted",
                  bad_sel[b][b ? 0 : 1], NTEMPL);
        kq_model_free(&qm);
        /* one atom (an ion): all of the charge on it, no dipole about its
         * own centre of mass */
        const int z1 = 8;
        const double r1[3] = {0.3, -1.2, 2.0}, chi1 = 0.1, eta1 = 0.2;
        double q1 = 0, mu1[3] = {1, 1, 1};
        CHECK(kq_qeq_solve(1, &z1, r1, 1.0, &chi1, &eta1, 1.0, &q1, mu1, NULL, NULL, NULL) ==
                      KQ_OK &&
                  q1 == 1.0 && mu1[0] == 0.0 && mu1[1] == 0.0 && mu1[2] == 0.0,
              "QEq of one atom: q %.17g, dipole %g %g %g", q1, mu1[0], mu1[1], mu1[2]);
    }
    kq_model_free(&full);
    kq_model_free(&sp_all);
    kq_model_free(&sp);
    return th_done("test_kqeq");
}
