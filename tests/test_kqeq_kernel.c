/* SPDX-License-Identifier: MIT */
/* test_kqeq_kernel - the fast kernel paths of kqeq_kernels.c (called by kqeq.c) against
 * the plain kq_kernel, bit for bit (memcmp):
 * - kq_kernel_accumulate (packed register tiles, species-block skipping),
 *   portable, AVX2 and AVX-512 copies, on random vectors with zero blocks (also blocks
 *   of -0.0 and whole zero rows), odd sizes, zeta 1, 2, 3, more than 64
 *   blocks (merged chunks), a NaN in a block that is zero in the other
 *   vector (no skipping then), a wrong block layout (one chunk);
 * - kq_kernel_column (farthest point sampling) with scattered, repeated rows;
 * - the representatives of sparse training (farthest point sampling with
 *   both prunings) against plain farthest point sampling;
 * - kq_predict_many against kq_predict per molecule (charges, dipoles,
 *   polarizabilities) and kq_set_predict, for a small trained model.
 * zeta must be an integer (kq_model.zeta is an int). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kqeq.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift64, [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* n rows [n][len] of blocks boff [nblk+1]: each block zero (+0.0 or -0.0)
 * with probability pz, else random signed values; row 1 entirely zero. */
static void fill(double *x, size_t n, size_t len, int nblk, const size_t *boff, double pz) {
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < nblk; b++) {
            double u = urand();
            for (size_t t = boff[b]; t < boff[b + 1]; t++) {
                double v = urand() - 0.4;
                if (u < pz) v = u < pz / 2 ? 0.0 : -0.0;
                if (i == 1 && n > 2) v = 0.0;
                x[i * len + t] = v;
            }
        }
}

static size_t make_blocks(int nblk, size_t *boff) {
    boff[0] = 0;
    for (int b = 0; b < nblk; b++) boff[b + 1] = boff[b] + 1 + (size_t)(urand() * 9.0);
    return boff[nblk];
}

/* k = k0 + delta * kq_kernel(a_i, b_j) for every pair, compared by memcmp */
static int same_as_plain(size_t na, const double *a, size_t nb, const double *b, size_t len,
                         int nblk, const size_t *boff, int zeta, double delta, int simd) {
    double *k = malloc(na * nb * sizeof *k), *want = malloc(na * nb * sizeof *want);
    if (!k || !want) {
        free(k);
        free(want);
        return 0;
    }
    for (size_t e = 0; e < na * nb; e++) k[e] = want[e] = e % 3 == 0 ? 0.0 : urand() - 0.5;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            want[i * nb + j] += delta * kq_kernel(a + i * len, b + j * len, len, zeta);
    int rc = kq_kernel_accumulate(na, a, nb, b, len, nblk, boff, zeta, delta, simd, k);
    int same = rc == KQ_OK && memcmp(k, want, na * nb * sizeof *k) == 0;
    free(k);
    free(want);
    return same;
}

static void test_accumulate(void) {
    static const size_t nas[] = {1, 5, 47, 49, 100};
    static const size_t nbs[] = {1, 7, 8, 9, 23};
    /* the copies this build and CPU have (portable always) */
    int simds[3] = {KQ_SIMD_PORTABLE, 0, 0}, nsimd = 1;
    const int want[2] = {KQ_SIMD_AVX2, KQ_SIMD_AVX512};
    const char *names[2] = {"AVX2", "AVX-512"};
    for (int v = 0; v < 2; v++) {
        double one = 1.0;
        if (kq_kernel_accumulate(1, &one, 1, &one, 1, 0, NULL, 1, 1.0, want[v], &one) == KQ_OK) {
            simds[nsimd++] = want[v];
        } else {
            printf("test_kqeq_kernel: no %s copy in this build or CPU\n", names[v]);
            th_skip(names[v]);
        }
    }
    for (int s = 0; s < nsimd; s++)
        for (int zeta = 1; zeta <= 3; zeta++)
            for (int c = 0; c < 5; c++) {
                size_t boff[130];
                int nblk = c == 4 ? 100 : 3 + c * 4; /* 100: more than 64 blocks */
                size_t len = make_blocks(nblk, boff);
                size_t na = nas[c], nb = nbs[(c + zeta) % 5];
                double *a = malloc(na * len * sizeof *a), *b = malloc(nb * len * sizeof *b);
                if (!a || !b) {
                    CHECK(0, "out of memory");
                    free(a);
                    free(b);
                    return;
                }
                fill(a, na, len, nblk, boff, 0.4);
                fill(b, nb, len, nblk, boff, 0.5);
                if (c % 2) {
                    kq_normalize_rows(na, len, a);
                    kq_normalize_rows(nb, len, b);
                }
                CHECK(same_as_plain(na, a, nb, b, len, nblk, boff, zeta, c == 2 ? 0.7 : 1.0,
                                    simds[s]),
                      "kq_kernel_accumulate != kq_kernel (simd %d, zeta %d, %zu x %zu, len %zu, "
                      "%d blocks)", simds[s], zeta, na, nb, len, nblk);
                /* a NaN in a block of a that is zero in b: the plain sum is NaN */
                if (na > 2 && nb > 1) {
                    for (size_t t = boff[0]; t < boff[1]; t++) b[t] = 0.0;
                    a[2 * len] = NAN;
                    CHECK(same_as_plain(na, a, nb, b, len, nblk, boff, zeta, 1.0, simds[s]),
                          "NaN row: fast kernel skipped a block (simd %d, zeta %d)", simds[s],
                          zeta);
                    a[2 * len] = 0.5;
                }
                /* a layout that does not fit: one chunk, still exact */
                CHECK(same_as_plain(na, a, nb, b, len, nblk, boff, zeta, 1.0, simds[s]) &&
                          same_as_plain(na, a, nb, b, len + 0, 1, NULL, zeta, 1.0, simds[s]),
                      "one-chunk layout (simd %d)", simds[s]);
                free(a);
                free(b);
            }
    double x = 1.0;
    CHECK(kq_kernel_accumulate(1, &x, 1, &x, 1, 0, NULL, 1, 1.0, 7, &x) == KQ_EINVAL,
          "bad simd mode refused");
}

static void test_column(void) {
    size_t boff[20];
    int nblk = 11;
    size_t len = make_blocks(nblk, boff);
    enum { NX = 40, N = 29 };
    double *x = malloc(NX * len * sizeof *x), q[200], out[N], want[N];
    size_t idx[N];
    if (!x || len > 200) {
        CHECK(0, "setup");
        free(x);
        return;
    }
    fill(x, NX, len, nblk, boff, 0.45);
    fill(q, 1, len, nblk, boff, 0.3);
    for (int i = 0; i < N; i++) idx[i] = (size_t)(urand() * NX); /* scattered, repeats */
    for (int zeta = 1; zeta <= 3; zeta++) {
        for (int i = 0; i < N; i++) {
            out[i] = want[i] = i % 2 ? 0.25 : 0.0;
            want[i] += 0.5 * kq_kernel(x + idx[i] * len, q, len, zeta);
        }
        CHECK(kq_kernel_column(N, x, idx, q, len, nblk, boff, zeta, 0.5, out) == KQ_OK &&
                  memcmp(out, want, sizeof out) == 0,
              "kq_kernel_column != kq_kernel (zeta %d)", zeta);
    }
    free(x);
}

/* random molecules of H, C, N, O (some without N or O: zero species blocks) */
enum { NMOL = 14, MAXAT = 12 };
static int mz[NMOL][MAXAT];
static double mpos[NMOL][MAXAT * 3];

static void make_mols(kq_mol *mols) {
    static const int el[4] = {1, 6, 7, 8};
    for (int k = 0; k < NMOL; k++) {
        int n = 3 + k % (MAXAT - 3), nel = k % 3 == 0 ? 2 : 4;
        for (int i = 0; i < n; i++) {
            mz[k][i] = el[(int)(urand() * nel)];
            for (;;) { /* at least 0.9 angstrom from the others */
                for (int c = 0; c < 3; c++) mpos[k][3 * i + c] = 3.0 * urand();
                int ok = 1;
                for (int j = 0; j < i; j++) {
                    double d2 = 0.0;
                    for (int c = 0; c < 3; c++) {
                        double dd = mpos[k][3 * i + c] - mpos[k][3 * j + c];
                        d2 += dd * dd;
                    }
                    if (d2 < 0.81) ok = 0;
                }
                if (ok) break;
            }
        }
        mols[k].natoms = n;
        mols[k].z = mz[k];
        mols[k].pos = mpos[k];
        mols[k].charge = k % 5 == 0 ? 1.0 : 0.0;
        for (int c = 0; c < 3; c++) mols[k].dipole_au[c] = urand() - 0.5;
    }
}

/* combined kernel of rows i of pa and j of pb (sum_d delta_d kq_kernel) */
static double kern(const kq_model *m, const double *const *pa, size_t i, const double *const *pb,
                   size_t j) {
    double k = 0.0;
    for (int d = 0; d < m->ndesc; d++)
        k += m->delta[d] * kq_kernel(pa[d] + i * m->len[d], pb[d] + j * m->len[d], m->len[d],
                                     m->zeta);
    return k;
}

/* The representatives of sparse model m trained on all of set s are plain
 * farthest point sampling (no pruning): start at atom 0, then the atom
 * farthest from the chosen ones, ties to the lower index. */
static int plain_fps_same(const kq_model *m, const kq_set *s) {
    size_t n = s->natoms;
    double *mind = malloc(n * sizeof *mind);
    int *taken = calloc(n, sizeof *taken), ok = mind && taken;
    const double *const *p = (const double *const *)s->p;
    size_t cur = 0;
    for (size_t i = 0; ok && i < n; i++) mind[i] = HUGE_VAL;
    for (int r = 0; ok && r < m->nrep; r++) {
        taken[cur] = 1;
        for (int d = 0; d < m->ndesc; d++)
            ok &= !memcmp(m->rep[d] + (size_t)r * m->len[d], p[d] + cur * m->len[d],
                          m->len[d] * sizeof(double));
        size_t best = 0;
        double bd = -1.0;
        for (size_t i = 0; i < n; i++) {
            double d2 = kern(m, p, i, p, i) + kern(m, p, cur, p, cur) - 2.0 * kern(m, p, i, p, cur);
            if (d2 < mind[i]) mind[i] = d2;
            if (!taken[i] && mind[i] > bd) {
                bd = mind[i];
                best = i;
            }
        }
        cur = best;
    }
    free(mind);
    free(taken);
    return ok;
}

static void test_predict_many(void) {
    kq_mol mols[NMOL];
    make_mols(mols);
    kq_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = KQ_KIND_KQEQ;
    cfg.nspecies = 4;
    cfg.species[0] = 1;
    cfg.species[1] = 6;
    cfg.species[2] = 7;
    cfg.species[3] = 8;
    cfg.ndesc = 2;
    cfg.soap[0].rcut = 3.0;
    cfg.soap[0].nmax = 3;
    cfg.soap[0].lmax = 2;
    cfg.soap[1].rcut = 2.0;
    cfg.soap[1].nmax = 2;
    cfg.soap[1].lmax = 3;
    cfg.delta[0] = 1.0;
    cfg.delta[1] = 0.3;
    kq_model m;
    kq_set s;
    CHECK(kq_model_init(&m, &cfg) == KQ_OK, "model init");
    CHECK(kq_set_build(&m, NMOL, mols, &s, NULL, NULL) == KQ_OK, "set build");
    double reg = 1e-3;
    kq_train_opts o = {25, 1, &reg};
    for (int mm = 5; mm <= 80; mm += 15) { /* FPS (both prunings) = plain FPS */
        kq_train_opts om = {mm, 1, &reg};
        CHECK(kq_train(&m, &s, NULL, 0, NULL, &om, NULL, NULL, NULL) == KQ_OK &&
                  plain_fps_same(&m, &s),
              "sparse representatives (M = %d) != plain farthest point sampling", mm);
    }
    CHECK(kq_train(&m, &s, NULL, 0, NULL, &o, NULL, NULL, NULL) == KQ_OK, "sparse training");
    size_t nat = s.natoms;
    double *q1 = malloc(nat * sizeof *q1), *q2 = malloc(nat * sizeof *q2);
    double mu1[NMOL * 3], mu2[NMOL * 3], mu3[NMOL * 3], al1[NMOL * 9], al2[NMOL * 9];
    int ok = q1 && q2, bad = -1;
    size_t at = 0;
    for (int k = 0; k < NMOL && ok; k++) {
        ok = kq_predict(&m, mols[k].natoms, mols[k].z, mols[k].pos, mols[k].charge, q1 + at,
                        mu1 + 3 * k, al1 + 9 * k, NULL) == KQ_OK;
        at += (size_t)mols[k].natoms;
    }
    CHECK(ok, "kq_predict");
    CHECK(kq_predict_many(&m, NMOL, mols, q2, mu2, al2, &bad) == KQ_OK, "kq_predict_many");
    CHECK(ok && memcmp(q1, q2, nat * sizeof *q1) == 0 && memcmp(mu1, mu2, sizeof mu1) == 0 &&
              memcmp(al1, al2, sizeof al1) == 0,
          "kq_predict_many != kq_predict bitwise");
    CHECK(kq_set_predict(&m, &s, mu3) == KQ_OK && memcmp(mu1, mu3, sizeof mu1) == 0,
          "kq_set_predict != kq_predict bitwise");
    double mu1k[3];
    CHECK(kq_predict_many(&m, 1, mols + 3, NULL, mu1k, NULL, NULL) == KQ_OK &&
              memcmp(mu1k, mu1 + 9, sizeof mu1k) == 0,
          "one molecule, NULL outputs");
    /* an unknown element in molecule 5: its code and index, the earlier ones written */
    int zbad[MAXAT];
    memcpy(zbad, mols[5].z, sizeof zbad);
    zbad[1] = 9;
    kq_mol mb[NMOL];
    memcpy(mb, mols, sizeof mb);
    mb[5].z = zbad;
    for (int e = 0; e < NMOL * 3; e++) mu2[e] = 0.0;
    CHECK(kq_predict_many(&m, NMOL, mb, NULL, mu2, NULL, &bad) == KQ_ESPECIES && bad == 5,
          "unknown element: KQ_ESPECIES at molecule 5 (bad %d)", bad);
    CHECK(memcmp(mu1, mu2, 15 * sizeof *mu1) == 0, "molecules before the bad one written");
    /* ... and in the first molecule: index 0 is an index too */
    mb[5].z = mols[5].z;
    mb[0].z = zbad;
    bad = -1;
    CHECK(kq_predict_many(&m, NMOL, mb, NULL, mu2, NULL, &bad) == KQ_ESPECIES && bad == 0,
          "unknown element: KQ_ESPECIES at molecule 0 (bad %d)", bad);
    free(q1);
    free(q2);
    kq_set_free(&s);
    kq_model_free(&m);
}

int main(void) {
    test_accumulate();
    test_column();
    test_predict_many();
    return th_done("test_kqeq_kernel");
}
