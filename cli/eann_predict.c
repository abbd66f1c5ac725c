/* SPDX-License-Identifier: MIT */
/* eann_predict.c - `eann predict` (model outputs per frame into an XYZ file,
 * or a timing with --repeat) and `eann check` (rotation, translation and
 * permutation symmetry of a model's outputs on the frames of a file). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "eann_cmds.h"

static const char predict_usage[] =
    "usage: eann predict -m MODEL IN.xyz -o OUT.xyz [--prefix P] [--overwrite] [--repeat K]\n"
    "                    [--simd auto|portable|avx2]\n"
    "  Evaluates an EANN model on every frame of IN.xyz (positions in angstrom)\n"
    "  and writes OUT.xyz: the input plus, per frame, according to the model's kind\n"
    "    eann_dipole (3) | eann_tdm (3) | eann_polarizability (9, row-major)\n"
    "  in atomic units (e*bohr; polarizability e^2*bohr^2/hartree = bohr^3), and\n"
    "  eann_units naming them (e.g. \"dipole:e*bohr\"; the entries of other kinds\n"
    "  already there are kept, so a chain of predictions lists all units).\n"
    "  -m MODEL     EANN_TEXT_V1 model file\n"
    "  -o OUT.xyz   output file; '-' or /dev/stdout = standard output; an existing\n"
    "               device or FIFO is written in place; a regular file (or the\n"
    "               file a symlink points to) is replaced atomically; never an input\n"
    "  --prefix P   name the keys P_dipole | P_tdm | P_polarizability and P_units\n"
    "               (default eann), e.g. to keep two models' predictions apart\n"
    "  --overwrite  replace the output key if the input frame already has it\n"
    "               (default: refused, naming the frame)\n"
    "  --repeat K   evaluate every frame K times and print only timings:\n"
    "               'us_per_molecule X' (mean wall-clock microseconds per\n"
    "               evaluation) and, if K >= 2, 'min_cpu_us_per_molecule M'\n"
    "               (processor time per molecule of the fastest of passes 2..K\n"
    "               over the file, as the benchmark's peers are timed);\n"
    "               -o is then optional\n"
    "  --simd S     copy of the inner loops: auto (default: AVX2 where the CPU\n"
    "               has it), portable or avx2; all give the same bits (for\n"
    "               benchmarks)\n";

static const char check_usage[] =
    "usage: eann check -m MODEL IN.xyz [--trials N] [--seed S]\n"
    "  For every frame, applies N random rotations, translations (up to 10 A)\n"
    "  and atom permutations (separately) and reports the largest deviation of\n"
    "  the outputs from the transformed original (vectors rotate as R v, the\n"
    "  polarizability as R A R^T, translation and permutation change nothing),\n"
    "  relative to the output's scale (max |component|; for a transition dipole\n"
    "  the larger of that and the terms u, v, W u x v it is summed from).\n"
    "  Positions in angstrom; a non-finite output is refused (FILE:LINE).\n"
    "  -m MODEL     EANN_TEXT_V1 model file\n"
    "  --trials N   transformations of each type per frame (default 10)\n"
    "  --seed S     seed of the random transformations (default 1)\n";

typedef struct {
    const char *model, *in, *out, *prefix;
    long repeat, trials;
    int simd, overwrite;
    unsigned long long seed;
} opts;

static void parse_opts(int argc, char **argv, const char *cmd, const char *usage, opts *o) {
    memset(o, 0, sizeof *o);
    o->trials = 10;
    o->seed = 1;
    o->prefix = "eann";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(cli_exit(0));
        }
        if (!strcmp(cmd, "predict") && !strcmp(a, "--overwrite")) {
            o->overwrite = 1;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            if (i + 1 >= argc) cli_fail("%s: %s needs a value (see eann %s --help)", cmd, a, cmd);
            const char *v = argv[++i];
            if (!strcmp(a, "-m")) o->model = v;
            else if (!strcmp(cmd, "predict") && !strcmp(a, "-o")) o->out = v;
            else if (!strcmp(cmd, "predict") && !strcmp(a, "--prefix")) {
                cli_check_prefix(v);
                o->prefix = v;
            }
            else if (!strcmp(cmd, "predict") && !strcmp(a, "--repeat"))
                o->repeat = cli_parse_long(a, v, 1, 100000000);
            else if (!strcmp(cmd, "predict") && !strcmp(a, "--simd")) {
                if (!strcmp(v, "auto")) o->simd = EANN_SIMD_AUTO;
                else if (!strcmp(v, "portable")) o->simd = EANN_SIMD_PORTABLE;
                else if (!strcmp(v, "avx2")) o->simd = EANN_SIMD_AVX2;
                else cli_fail("%s: --simd must be auto, portable or avx2, not '%s'", cmd, v);
            } else if (!strcmp(cmd, "check") && !strcmp(a, "--trials"))
                o->trials = cli_parse_long(a, v, 1, 1000000);
            else if (!strcmp(cmd, "check") && !strcmp(a, "--seed"))
                o->seed = (unsigned long long)cli_parse_long(a, v, 0, 0x7fffffffL);
            else cli_fail("%s: unknown option '%s' (see eann %s --help)", cmd, a, cmd);
        } else {
            if (o->in) cli_fail("%s: more than one input file ('%s', '%s')", cmd, o->in, a);
            o->in = a;
        }
    }
    if (!o->model) cli_fail("%s: -m MODEL is required (see eann %s --help)", cmd, cmd);
    if (!o->in) cli_fail("%s: no input file (see eann %s --help)", cmd, cmd);
}

/* An atom's x coordinate and index, sorted by x (then index) for the sweep of
 * eann_cli_check_distances. */
typedef struct { double x; int i; } xkey;
static int cmp_xkey(const void *pa, const void *pb) {
    const xkey *a = pa, *b = pb;
    if (a->x < b->x) return -1;
    if (a->x > b->x) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Refuses a frame with two atoms closer than the model's min_distance (or
 * 1e-6 angstrom if that is smaller): the model ignores such pairs
 * (FORMAT.md 4.2, pairs need d > dmin), so its output for that input would
 * silently describe another molecule. The library keeps the published
 * behaviour; the programs refuse the input. cli_fail()s with
 * "FILE:LINE: atoms I and J of the frame are D angstrom apart ..." naming the
 * frame's count line and the first such pair (lowest i, then lowest j).
 * Cost O(N log N) for spread-out atoms (sweep along x), O(N^2) only on error.
 * Also used by `eann train` / `eann eval` (declared in eann_cmds.h). */
void eann_cli_check_distances(const eann_model *m, const char *file, const xyz_frame *fr) {
    const int n = fr->natoms;
    if (n < 2) return;
    const double dmin = m->spec.min_distance > 1e-6 ? m->spec.min_distance : 1e-6;
    const double *x = fr->pos;
    xkey *order = malloc(sizeof(xkey) * (size_t)n);
    if (!order) cli_fail("out of memory");
    for (int i = 0; i < n; i++) order[i] = (xkey){x[3 * i], i};
    qsort(order, (size_t)n, sizeof(xkey), cmp_xkey);
    int found = 0;
    for (int p = 0; p < n && !found; p++) {
        const double *a = x + 3 * order[p].i;
        for (int q = p + 1; q < n && order[q].x - order[p].x <= dmin; q++) {
            const double *b = x + 3 * order[q].i;
            double d2 = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
                        (a[2] - b[2]) * (a[2] - b[2]);
            if (sqrt(d2) <= dmin) { found = 1; break; }
        }
    }
    free(order);
    if (!found) return;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const double *a = x + 3 * i, *b = x + 3 * j;
            double d = sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
                            (a[2] - b[2]) * (a[2] - b[2]));
            if (d <= dmin)
                cli_fail("%s:%d: atoms %d and %d of the frame are %.3g angstrom apart, not "
                         "more than the model's min_distance %.3g (the model would ignore "
                         "the pair)", file, fr->line, i + 1, j + 1, d, dmin);
        }
}

/* Reads the input, maps the species of every frame (species [nframes][maxat]),
 * refuses frames with overlapping atoms and makes a workspace for the
 * largest frame. */
static int *load_frames(const eann_model *m, const opts *o, xyz_file *xf, eann_work **w,
                        int *maxat_out) {
    cli_read_xyz(o->in, xf);
    int maxat = 1;
    for (int f = 0; f < xf->nframes; f++)
        if (xf->frames[f].natoms > maxat) maxat = xf->frames[f].natoms;
    int *sp = malloc(sizeof(int) * (size_t)maxat * (size_t)(xf->nframes ? xf->nframes : 1));
    if (!sp) cli_fail("out of memory");
    for (int f = 0; f < xf->nframes; f++) {
        eann_cli_species(m, o->model, o->in, &xf->frames[f], sp + (size_t)f * maxat);
        eann_cli_check_distances(m, o->in, &xf->frames[f]);
    }
    int rc = eann_work_new(m, maxat, w);
    if (rc) cli_fail("%s: %s", o->in, eann_strerror(rc));
    if (eann_work_set_simd(*w, o->simd))
        cli_fail("--simd avx2: this build or CPU has no AVX2 copy (use auto or portable)");
    *maxat_out = maxat;
    return sp;
}

int eann_cmd_predict(int argc, char **argv) {
    opts o;
    parse_opts(argc, argv, "predict", predict_usage, &o);
    if (!o.out && !o.repeat) cli_fail("predict: -o OUT.xyz is required (see eann predict --help)");
    {
        const char *ins[2] = {o.model, o.in};
        cli_check_output("-o", o.out, ins, 2);
    }
    eann_model *m = eann_cli_load_model(o.model);
    xyz_file xf;
    eann_work *w;
    int maxat;
    int *sp = load_frames(m, &o, &xf, &w, &maxat);
    const int no = eann_kind_outputs(m->spec.kind);
    double out[9];
    if (o.repeat) {
        /* wall time in all, and each pass over the file in processor time */
        const double t0 = cli_now();
        double tp = cli_cpu_now(), best = HUGE_VAL;
        for (long r = 0; r < o.repeat; r++) {
            for (int f = 0; f < xf.nframes; f++) {
                const xyz_frame *fr = &xf.frames[f];
                int rc = eann_predict(m, w, fr->natoms, sp + (size_t)f * maxat, fr->pos, out);
                if (rc) cli_fail("%s:%d: %s", o.in, fr->line, eann_strerror(rc));
                cli_check_finite(out, (size_t)no, o.in, fr->line, "the model's output");
            }
            const double t = cli_cpu_now();
            if (r > 0 && t - tp < best) best = t - tp;
            tp = t;
        }
        double dt = cli_now() - t0;
        double n = (double)o.repeat * (double)xf.nframes;
        printf("us_per_molecule %.3f\n", n > 0 ? dt * 1e6 / n : 0.0);
        if (o.repeat >= 2 && xf.nframes > 0)
            printf("min_cpu_us_per_molecule %.3f\n", best * 1e6 / (double)xf.nframes);
    }
    if (o.out) {
        /* keys PREFIX_dipole | PREFIX_tdm | PREFIX_polarizability and the
         * units key PREFIX_units (eann_dipole, eann_units by default) */
        char key[96], ukey[80];
        const char *kind_key = eann_cli_key(m); /* "eann_dipole", ... */
        snprintf(key, sizeof key, "%s%s", o.prefix, strchr(kind_key, '_'));
        snprintf(ukey, sizeof ukey, "%s_units", o.prefix);
        for (int f = 0; f < xf.nframes; f++) cli_check_new_key(&xf.frames[f], o.in, key, o.overwrite);
        for (int f = 0; f < xf.nframes; f++) {
            xyz_frame *fr = &xf.frames[f];
            int rc = eann_predict(m, w, fr->natoms, sp + (size_t)f * maxat, fr->pos, out);
            if (rc) cli_fail("%s:%d: %s", o.in, fr->line, eann_strerror(rc));
            cli_check_finite(out, (size_t)no, o.in, fr->line, "the model's output");
            if (xyz_set_info_real(fr, key, out, no)) cli_fail("out of memory");
            cli_merge_units(fr, ukey, eann_cli_units(m));
        }
        char err[1024];
        if (xyz_write(o.out, &xf, err, sizeof err)) cli_fail("%s", err);
    }
    free(sp);
    xyz_free(&xf);
    eann_work_free(w);
    eann_model_free(m);
    return 0;
}

/* splitmix64 -> [0, 1) */
static double urand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static void random_rotation(uint64_t *s, double R[9]) {
    double q[4], n = 0;
    do {
        n = 0;
        for (int i = 0; i < 4; i++) { q[i] = 2 * urand(s) - 1; n += q[i] * q[i]; }
    } while (n > 1 || n < 1e-6);
    n = sqrt(n);
    double a = q[0] / n, b = q[1] / n, c = q[2] / n, d = q[3] / n;
    double M[9] = {a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c),
                   2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b),
                   2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d};
    memcpy(R, M, sizeof M);
}

/* out of the model transformed by R: vector R v, tensor R A R^T */
static void rotate_output(int kind, const double R[9], const double *in, double *o) {
    if (kind != EANN_POLARIZABILITY) {
        for (int a = 0; a < 3; a++) o[a] = R[3 * a] * in[0] + R[3 * a + 1] * in[1] + R[3 * a + 2] * in[2];
        return;
    }
    double T[9];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            T[3 * a + b] = R[3 * a] * in[b] + R[3 * a + 1] * in[3 + b] + R[3 * a + 2] * in[6 + b];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            o[3 * a + b] = T[3 * a] * R[3 * b] + T[3 * a + 1] * R[3 * b + 1] + T[3 * a + 2] * R[3 * b + 2];
}

int eann_cmd_check(int argc, char **argv) {
    opts o;
    parse_opts(argc, argv, "check", check_usage, &o);
    eann_model *m = eann_cli_load_model(o.model);
    xyz_file xf;
    eann_work *w;
    int maxat;
    int *sp = load_frames(m, &o, &xf, &w, &maxat);
    const int no = eann_kind_outputs(m->spec.kind), kind = m->spec.kind;
    double *y = malloc(sizeof(double) * 3 * (size_t)maxat);
    int *sp2 = malloc(sizeof(int) * (size_t)maxat), *perm = malloc(sizeof(int) * (size_t)maxat);
    if (!y || !sp2 || !perm) cli_fail("out of memory");
    uint64_t st = o.seed;
    double all[3] = {0, 0, 0};
    printf("# frame natoms rotation translation permutation (largest violation / output scale)\n");
    for (int f = 0; f < xf.nframes; f++) {
        const xyz_frame *fr = &xf.frames[f];
        const int n = fr->natoms, *s = sp + (size_t)f * maxat;
        double base[9], o1[9], o2[9], R[9];
        int rc = eann_predict(m, w, n, s, fr->pos, base);
        if (rc) cli_fail("%s:%d: %s", o.in, fr->line, eann_strerror(rc));
        /* a NaN output would compare as "no violation": refuse it */
        cli_check_finite(base, (size_t)no, o.in, fr->line, "the model's output");
        double scale = 0;
        for (int k = 0; k < no; k++) scale = fmax(scale, fabs(base[k]));
        if (kind == EANN_TDM) {
            double u[3], v[3], W;
            eann_tdm_parts(m, w, u, v, &W);
            double c[3] = {W * (u[1] * v[2] - u[2] * v[1]), W * (u[2] * v[0] - u[0] * v[2]),
                           W * (u[0] * v[1] - u[1] * v[0])};
            for (int a = 0; a < 3; a++)
                scale = fmax(scale, fmax(fabs(u[a]), fmax(fabs(v[a]), fabs(c[a]))));
            cli_check_finite(c, 3, o.in, fr->line, "a term of the transition dipole");
        }
        if (scale == 0) scale = 1e-300;
        double viol[3] = {0, 0, 0};
        for (long tr = 0; tr < o.trials; tr++) {
            for (int kindt = 0; kindt < 3; kindt++) {
                /* 0 rotation about the origin, 1 translation, 2 permutation */
                double shift[3] = {0, 0, 0};
                random_rotation(&st, R);
                for (int a = 0; a < 3; a++) shift[a] = 20 * urand(&st) - 10;
                for (int i = 0; i < n; i++) perm[i] = i;
                if (kindt == 2)
                    for (int i = n - 1; i > 0; i--) {
                        int j = (int)(urand(&st) * (i + 1)), t = perm[i];
                        perm[i] = perm[j];
                        perm[j] = t;
                    }
                for (int i = 0; i < n; i++) {
                    const double *x = fr->pos + 3 * perm[i];
                    for (int a = 0; a < 3; a++)
                        y[3 * i + a] = kindt == 0 ? R[3 * a] * x[0] + R[3 * a + 1] * x[1] + R[3 * a + 2] * x[2]
                                     : kindt == 1 ? x[a] + shift[a] : x[a];
                    sp2[i] = s[perm[i]];
                }
                rc = eann_predict(m, w, n, sp2, y, o1);
                if (rc) cli_fail("%s:%d: %s", o.in, fr->line, eann_strerror(rc));
                cli_check_finite(o1, (size_t)no, o.in, fr->line,
                                 "the model's output for a transformed frame");
                if (kindt == 0) rotate_output(kind, R, base, o2);
                else memcpy(o2, base, sizeof o2);
                for (int k = 0; k < no; k++) viol[kindt] = fmax(viol[kindt], fabs(o1[k] - o2[k]) / scale);
            }
        }
        printf("%d %d %.3g %.3g %.3g\n", f, n, viol[0], viol[1], viol[2]);
        for (int k = 0; k < 3; k++) all[k] = fmax(all[k], viol[k]);
    }
    printf("overall rotation %.3g translation %.3g permutation %.3g (%d frames, %ld trials each)\n",
           all[0], all[1], all[2], xf.nframes, o.trials);
    free(y); free(sp2); free(perm); free(sp);
    xyz_free(&xf);
    eann_work_free(w);
    eann_model_free(m);
    return 0;
}
