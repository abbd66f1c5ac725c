/* SPDX-License-Identifier: MIT */
/* targets.c - the bodies of the fuzz targets, shared by the libFuzzer
 * entry points (fuzz/fuzz_*.c, `make fuzz`) and by the regression test
 * (tests/test_fuzz_regress.c), which replays every saved input.
 *
 * Each target feeds arbitrary bytes to one reader and, when the reader
 * accepts them, checks a property that must hold for any accepted input:
 * writing the parsed object and reading it back gives the same object.
 * A violated property abort()s, which libFuzzer reports as a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eann.h"
#include "kqeq.h"
#include "xyz.h"

/* Two parsed files hold the same data: counts, atomic numbers, every
 * number bit for bit, every string, types, names, in order. */
static int same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}
static int xyz_same(const xyz_file *a, const xyz_file *b, int strict) {
    if (a->nframes != b->nframes) return 0;
    for (int i = 0; i < a->nframes; i++) {
        const xyz_frame *p = &a->frames[i], *q = &b->frames[i];
        size_t n = (size_t)p->natoms;
        if (p->natoms != q->natoms || p->ninfo != q->ninfo || p->narrays != q->narrays) return 0;
        if (n && (memcmp(p->z, q->z, n * sizeof(int)) != 0 ||
                  memcmp(p->pos, q->pos, 3 * n * sizeof(double)) != 0))
            return 0;
        for (int k = 0; k < p->ninfo; k++) {
            const xyz_info *x = &p->info[k], *y = &q->info[k];
            /* xyz.h: "a string that looks like a number or boolean ("12",
             * "T") reads back as one, as in ASE". Only the plain-comment
             * fallback (key "comment") makes such strings; after one write
             * and read the data must be a fixpoint (strict). */
            if (!strict && x->type == XYZ_STR && y->type != XYZ_STR && strcmp(x->key, y->key) == 0)
                continue;
            if (strcmp(x->key, y->key) != 0 || x->type != y->type || x->n != y->n ||
                !same_str(x->str, y->str))
                return 0;
            if (x->num && memcmp(x->num, y->num, (size_t)x->n * sizeof(double)) != 0) return 0;
        }
        for (int k = 0; k < p->narrays; k++) {
            const xyz_array *x = &p->arrays[k], *y = &q->arrays[k];
            size_t m = n * (size_t)x->ncols;
            if (strcmp(x->name, y->name) != 0 || x->type != y->type || x->ncols != y->ncols)
                return 0;
            if (x->num && m && memcmp(x->num, y->num, m * sizeof(double)) != 0) return 0;
            if (x->str)
                for (size_t t = 0; t < m; t++)
                    if (!same_str(x->str[t], y->str[t])) return 0;
        }
    }
    return 1;
}

/* The bytes of a file (malloc'd), or NULL. */
static char *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 12, len = 0, got;
    char *b = malloc(cap);
    while (b && (got = fread(b + len, 1, cap - len, fp)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(fp);
    *n = len;
    return b;
}

/* Extended XYZ: parse from memory; accepted files must have finite
 * positions and known elements (the reader's promises), and writing them
 * (xyz_write, to a temporary file) and reading that back must give the
 * same data (the writer's promise: "a read gives identical bits"), and
 * writing that again the same bytes. */
int fuzz_xyz(const uint8_t *data, size_t size) {
    xyz_file f;
    char err[512];
    if (xyz_parse((const char *)data, size, "fuzz", &f, err, sizeof err) != 0) return 0;
    for (int i = 0; i < f.nframes; i++) {
        const xyz_frame *fr = &f.frames[i];
        for (int a = 0; a < fr->natoms; a++) {
            if (fr->z[a] < 1 || fr->z[a] > 86) abort();
            for (int k = 0; k < 3; k++)
                if (!(fr->pos[3 * a + k] == fr->pos[3 * a + k]) ||
                    fr->pos[3 * a + k] - fr->pos[3 * a + k] != 0.0)
                    abort(); /* NaN or Inf slipped through */
        }
    }
    char path[256], path2[sizeof path + 8];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/fuzz_xyz_roundtrip.%ld.xyz", dir && *dir ? dir : "/tmp",
             (long)getpid());
    snprintf(path2, sizeof path2, "%s.2", path);
    if (xyz_write(path, &f, err, sizeof err) == 0) {
        xyz_file g;
        if (xyz_read(path, &g, err, sizeof err) != 0) abort(); /* written, not readable */
        if (!xyz_same(&f, &g, 0)) abort();                   /* read back differently */
        /* after one write and read: a fixpoint, same data and same bytes */
        xyz_file h;
        if (xyz_write(path2, &g, err, sizeof err) != 0) abort();
        if (xyz_read(path2, &h, err, sizeof err) != 0) abort();
        if (!xyz_same(&g, &h, 1)) abort();
        size_t n1 = 0, n2 = 0;
        char *b1 = read_all(path2, &n1), *b2 = NULL;
        if (xyz_write(path, &h, err, sizeof err) != 0) abort();
        b2 = read_all(path, &n2);
        if (!b1 || !b2 || n1 != n2 || memcmp(b1, b2, n1) != 0) abort();
        free(b1);
        free(b2);
        xyz_free(&h);
        xyz_free(&g);
        remove(path);
        remove(path2);
    } else {
        /* refusing data it cannot write is fine ("PATH: frame N: ..."); file
         * system trouble is not the data's fault: make it visible */
        size_t pl = strlen(path);
        if (strncmp(err, path, pl) == 0 &&
            (strncmp(err + pl, ": cannot create", 15) == 0 || strncmp(err + pl, ": write failed", 14) == 0))
            abort();
    }
    xyz_free(&f);
    return 0;
}

/* EANN model text: parse; accepted models must round-trip exactly and
 * evaluate a small molecule to finite numbers without crashing. */
int fuzz_eann_model(const uint8_t *data, size_t size) {
    eann_model *m = NULL;
    eann_parse_error pe;
    if (eann_model_parse((const char *)data, size, &m, &pe) != EANN_OK) return 0;
    char *text = NULL;
    size_t len = 0;
    if (eann_model_write(m, &text, &len) != EANN_OK) abort();
    eann_model *m2 = NULL;
    if (eann_model_parse(text, len, &m2, &pe) != EANN_OK) abort();
    if (m2->ntheta != m->ntheta || memcmp(m2->theta, m->theta, m->ntheta * sizeof(double)) != 0)
        abort();
    /* A three-atom molecule of the model's first species, if the model is
     * small enough to evaluate quickly. */
    if (m->ntheta < 200000) {
        eann_work *w = NULL;
        if (eann_work_new(m, 3, &w) == EANN_OK) {
            int sp[3] = {0, 0, 0};
            double pos[9] = {0, 0, 0, 1.1, 0, 0, 0, 1.3, 0.2};
            double out[9];
            eann_predict(m, w, 3, sp, pos, out);
            eann_work_free(w);
        }
    }
    eann_model_free(m2);
    eann_model_free(m);
    free(text);
    return 0;
}

/* kQEq model text: parse; a refused text must come with a line number and
 * a reason (kq_model_read_msg); accepted models must round-trip exactly and
 * predict a small molecule of their own elements either with an error code
 * or with finite charges, dipole and polarizability (a model the reader
 * accepts must never give NaN or Inf silently: kq_predict returns KQ_ERANGE
 * instead). */
int fuzz_kqeq_model(const uint8_t *data, size_t size) {
    kq_model m;
    int line = 0;
    char msg[256];
    int rc = kq_model_read_msg((const char *)data, size, &m, &line, msg, sizeof msg);
    if (rc == KQ_EFORMAT && (line < 1 || msg[0] == '\0' || strchr(msg, '\n'))) abort();
    if (rc != KQ_OK) return 0;
    char *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (kq_model_write(&m, &t1, &l1) != KQ_OK) abort();
    kq_model m2;
    if (kq_model_read(t1, l1, &m2, &line) != KQ_OK) abort();
    if (kq_model_write(&m2, &t2, &l2) != KQ_OK) abort();
    if (l1 != l2 || memcmp(t1, t2, l1) != 0) abort();
    size_t work = 1;
    for (int d = 0; d < m.ndesc; d++) work += m.len[d];
    if ((double)work * (m.nrep + 1) < 2e6) {
        /* three atoms 0.9 and 1.1 angstrom apart: species 0, last, 0 */
        int z[3] = {m.species[0], m.species[m.nspecies - 1], m.species[0]};
        double pos[9] = {0, 0, 0, 0.9, 0, 0, 0.2, 1.1, 0.1};
        double q[3], mu[3], alpha[9];
        if (kq_predict(&m, 3, z, pos, 0.0, q, mu, alpha, NULL) == KQ_OK) {
            /* each value on its own (a sum of finite values may overflow) */
            for (int i = 0; i < 3; i++)
                if (!(q[i] - q[i] == 0.0) || !(mu[i] - mu[i] == 0.0)) abort(); /* NaN or Inf */
            for (int i = 0; i < 9; i++)
                if (!(alpha[i] - alpha[i] == 0.0)) abort();
        }
    }
    kq_model_free(&m2);
    kq_model_free(&m);
    free(t1);
    free(t2);
    return 0;
}
