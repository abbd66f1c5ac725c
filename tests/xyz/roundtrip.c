/* SPDX-License-Identifier: MIT */
/* roundtrip.c - driver for tests/test_xyz_ase.sh (not built by make).
 *   roundtrip dump IN        read IN, print every value exactly (reals as %a)
 *   roundtrip copy IN OUT    read IN, write OUT with xyz_write
 *   roundtrip gen OUT        write random frames (subnormals, -0, huge and tiny
 *                            exponents, every value type) to OUT, print the dump
 * Dump lines: "frame NATOMS", "z Z...", "pos X...", "info KEY T N V..." (T one of
 * R I L; strings: "info KEY S TEXT"), "array NAME T NCOLS V...". */
#include "xyz.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(xyz_type t, double x) {
    if (t == XYZ_REAL) printf(" %a", x);
    else printf(" %lld", (long long)x);
}

static void dump(const xyz_file *f) {
    for (int k = 0; k < f->nframes; k++) {
        const xyz_frame *fr = &f->frames[k];
        printf("frame %d\nz", fr->natoms);
        for (int i = 0; i < fr->natoms; i++) printf(" %d", fr->z[i]);
        printf("\npos");
        for (int i = 0; i < 3 * fr->natoms; i++) put(XYZ_REAL, fr->pos[i]);
        printf("\n");
        for (int j = 0; j < fr->ninfo; j++) {
            const xyz_info *in = &fr->info[j];
            if (in->type == XYZ_STR) { printf("info %s S %s\n", in->key, in->str); continue; }
            printf("info %s %c %d", in->key, (char)in->type, in->n);
            for (int i = 0; i < in->n; i++) put(in->type, in->num[i]);
            printf("\n");
        }
        for (int j = 0; j < fr->narrays; j++) {
            const xyz_array *a = &fr->arrays[j];
            size_t n = (size_t)fr->natoms * (size_t)a->ncols;
            printf("array %s %c %d", a->name, (char)a->type, a->ncols);
            for (size_t i = 0; i < n; i++) {
                if (a->type == XYZ_STR) printf(" %s", a->str[i]);
                else put(a->type, a->num[i]);
            }
            printf("\n");
        }
    }
}

static uint64_t s = 0x2545F4914F6CDD1Dull;
static uint64_t rng(void) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}
static double rnd(void) {
    static const double special[] = {0.0, -0.0, 4.9406564584124654e-324, -2.2250738585072009e-308, DBL_MIN,
                                     DBL_MAX, -DBL_MAX, 1e-300, 1e300, 0.1, 1.0 / 3, 2.0, -7.0, 1e22, 123456.789};
    uint64_t r = rng();
    if (r % 4 == 0) return special[(r >> 8) % (sizeof special / sizeof *special)];
    if (r % 4 == 1) return ((double)(rng() >> 11) / 9007199254740992.0 - 0.5) * 20; /* ordinary coordinates */
    for (;;) {
        uint64_t b = rng();
        double d;
        memcpy(&d, &b, sizeof d);
        if (isfinite(d)) return d;
    }
}

static int gen(const char *out, char *err, size_t errlen) {
    xyz_file f = {0, NULL};
    for (int k = 0; k < 12; k++) {
        int n = k == 3 ? 0 : 1 + (int)(rng() % 5), z[8];
        double pos[24], v[64];
        for (int i = 0; i < n; i++) z[i] = 1 + (int)(rng() % 86);
        for (int i = 0; i < 3 * n; i++) pos[i] = fmod(rnd(), XYZ_MAX_COORD); /* reader's bound */
        xyz_frame fr;
        if (xyz_frame_init(&fr, n, z, pos)) return -1;
        for (int i = 0; i < 9; i++) v[i] = rnd();
        xyz_set_info_real(&fr, "energy", v, 1);
        if (k % 2) xyz_set_info_real(&fr, "Lattice", v, 9);
        double pbc[3] = {(double)(k & 1), 0, 1}, ints[3] = {-5, 0, 9007199254740991.0}, t = 1, two = 2.0;
        xyz_set_info_num(&fr, "pbc", XYZ_BOOL, pbc, 3);
        xyz_set_info_num(&fr, "n_steps", XYZ_INT, ints, 1);
        xyz_set_info_num(&fr, "steps", XYZ_INT, ints, 3);
        xyz_set_info_real(&fr, "tvec", v + 3, 3);
        xyz_set_info_real(&fr, "two", &two, 1);
        xyz_set_info_num(&fr, "converged", XYZ_BOOL, &t, 1);
        xyz_set_info_str(&fr, "name", k % 2 ? "water" : "a \"quoted\" name, with = and \\ backslash");
        for (int i = 0; i < n; i++) v[i] = rnd();
        xyz_set_array_real(&fr, "q", 1, v);
        for (int i = 0; i < 3 * n; i++) v[i] = rnd();
        xyz_set_array_real(&fr, "vel", 3, v);
        for (int i = 0; i < n; i++) v[i] = (double)((int64_t)(rng() % 200001) - 100000);
        xyz_set_array_num(&fr, "idx", XYZ_INT, 1, v);
        for (int i = 0; i < n; i++) v[i] = (double)(rng() % 2);
        xyz_set_array_num(&fr, "mask", XYZ_BOOL, 1, v);
        if (xyz_append_frame(&f, &fr)) return -1;
    }
    int rc = xyz_write(out, &f, err, errlen);
    if (rc == 0) dump(&f);
    xyz_free(&f);
    return rc;
}

int main(int argc, char **argv) {
    char err[512];
    xyz_file f;
    if (argc == 3 && strcmp(argv[1], "dump") == 0) {
        if (xyz_read(argv[2], &f, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        dump(&f);
        xyz_free(&f);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "copy") == 0) {
        if (xyz_read(argv[2], &f, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        int rc = xyz_write(argv[3], &f, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        xyz_free(&f);
        return rc ? 1 : 0;
    }
    if (argc == 3 && strcmp(argv[1], "gen") == 0) {
        if (gen(argv[2], err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        return 0;
    }
    fprintf(stderr, "usage: roundtrip dump IN | copy IN OUT | gen OUT\n");
    return 2;
}
