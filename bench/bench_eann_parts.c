/* SPDX-License-Identifier: MIT */
/* bench_eann_parts.c - the speed of EANN's two costliest kernels alone, and
 * what they imply for one NMA molecule of the published dipole model.
 *
 * Why it exists: bench_eann.sh times whole predictions; this program says
 * how much of that time the arithmetic itself needs. It includes
 * eann_kernels.c directly so that it can call the file's static kernels
 * (gemm_rows and its AVX2 copy gemm_avx2; the exp copies through
 * eann_exp_n_simd); nothing of the library is changed.
 *
 * Prints, single thread, best of 5 timings each:
 *   - dense layer 64 x 64, rows 1 and 4: GMAC/s (multiply-adds per second),
 *     portable and AVX2 copies;
 *   - exp over 1024 values: ns per value, portable, AVX2 with 4 lanes and
 *     (where the CPU has AVX-512F) with 8 lanes;
 *   - the dipole model's per-molecule arithmetic (one NMA, 12 atoms, 132
 *     ordered pairs of which 108 need their own radial values): 77,568
 *     multiply-adds in the networks (12 x (36x64 + 64x64 + 64)), 20,592 in
 *     the descriptor sum S (132 x 13 x 12), 2,832 exp (1,296 radial, 1,536
 *     activations), 1,536 divisions (the sigmoids), 66 cos; and the time
 *     the multiply-adds and exp alone need at the rates above, against the
 *     6.8 us that 100x PyTorch's 0.68 ms would need.
 * With two arguments (MODEL FRAMES.xyz): processor time per molecule of
 * eann_predict and of its stages.
 * No peer: the ratio that matters is printed by bench_eann.sh. */
#include "../eann_kernels.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../xyz.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { NK = 64, NJ = 64, NEXP = 1024 };
static double x[4 * NK], B[NK * NJ], b[NJ], z[4 * NJ], ex[NEXP], ey[NEXP];
static volatile double sink;

/* GMAC/s of z = b + x B for `rows` rows, best of 5 */
static double gemm_rate(int rows, int avx2) {
    double best = 1e300;
    long reps = 400000 / rows;
    for (int t = 0; t < 5; t++) {
        double t0 = now();
        for (long r = 0; r < reps; r++) {
#if EANN_HAVE_AVX2
            if (avx2) gemm_avx2(rows, NK, NJ, x, B, b, z);
            else
#endif
                gemm_rows(rows, NK, NJ, x, B, b, z);
            sink = z[r % (rows * NJ)];
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    (void)avx2;
    return (double)reps * rows * NK * NJ / best * 1e-9;
}

/* ns per exp value, best of 5 */
static double exp_ns(int mode) {
    double best = 1e300;
    const long reps = 4000;
    for (int t = 0; t < 5; t++) {
        double t0 = now();
        for (long r = 0; r < reps; r++) {
            eann_exp_n_simd(mode, NEXP, ex, ey);
            sink = ey[r % NEXP];
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best / reps / NEXP * 1e9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Processor microseconds per molecule of the stages of eann_predict on the
 * frames of a file: passes that stop after stage 1, 2, 3 (setup: COM, sort,
 * pairs, radial values; descriptor; networks + head), 200 evaluations of
 * every frame each, best of 5 (after a warm-up); a stage's cost is the
 * difference of two passes. */
static void stages(const char *model_path, const char *xyz_path) {
    FILE *f = fopen(model_path, "rb");
    if (!f) { printf("stages: %s absent, skipped\n", model_path); return; }
    static char buf[1 << 22];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    eann_model *m = NULL;
    eann_parse_error pe;
    xyz_file xf;
    char err[256];
    if (eann_model_parse(buf, len, &m, &pe) || xyz_read(xyz_path, &xf, err, sizeof err)) {
        printf("stages: cannot read %s or %s\n", model_path, xyz_path);
        eann_model_free(m);
        return;
    }
    int nf = xf.nframes, maxat = 1;
    for (int k = 0; k < nf; k++) if (xf.frames[k].natoms > maxat) maxat = xf.frames[k].natoms;
    int *sp = malloc(sizeof(int) * (size_t)maxat * (size_t)nf);
    eann_work *w = NULL;
    if (!sp || eann_work_new(m, maxat, &w)) { printf("stages: out of memory\n"); goto done; }
    for (int k = 0; k < nf; k++)
        for (int i = 0; i < xf.frames[k].natoms; i++)
            sp[k * maxat + i] = eann_species_index(m, xyz_z_to_symbol(xf.frames[k].z[i]));
    double best[3] = {1e300, 1e300, 1e300}, bestp = 1e300, out[9];
    const int reps = 200;
    for (int pass = 0; pass < 6; pass++) { /* eann_predict itself */
        double t0 = cpu_now();
        for (int r = 0; r < reps; r++)
            for (int k = 0; k < nf; k++)
                eann_predict(m, w, xf.frames[k].natoms, sp + k * maxat, xf.frames[k].pos, out);
        double t = cpu_now() - t0;
        if (pass > 0 && t < bestp) bestp = t;
    }
    for (int pass = 0; pass < 6; pass++)
        for (int upto = 0; upto < 3; upto++) {
            double t0 = cpu_now();
            for (int r = 0; r < reps; r++)
                for (int k = 0; k < nf; k++) {
                    const xyz_frame *fr = &xf.frames[k];
                    eann_setup(m, w, fr->natoms, sp + k * maxat, fr->pos);
                    if (upto == 0) continue;
                    eann_descriptor_forward(m, w);
                    if (upto == 1) continue;
                    if (m->spec.kind == EANN_POLARIZABILITY) {
                        double Ps[9], Hh[9], E2;
                        eann_pol_parts(m, w, w->dpos, w->dpos2, Ps, Hh, &E2);
                    } else {
                        eann_net_forward(m, w, 0);
                        eann_dipole_parts(m, w, out, NULL);
                    }
                }
            double t = cpu_now() - t0;
            if (pass > 0 && t < best[upto]) best[upto] = t;
        }
    const double u = 1e6 / (reps * nf);
    printf("eann_predict, %s on %s: %.2f processor us per molecule (best of 5)\n", model_path,
           xyz_path, bestp * u);
    printf("stages (eann_setup with d fc/d d, which predict skips for dipole/tdm): setup %.2f, "
           "descriptor %.2f, networks + head %.2f, all %.2f\n", best[0] * u,
           (best[1] - best[0]) * u, (best[2] - best[1]) * u, best[2] * u);
done:
    eann_work_free(w);
    free(sp);
    xyz_free(&xf);
    eann_model_free(m);
}

int main(int argc, char **argv) {
    if (argc == 3) { /* bench_eann_parts MODEL FRAMES.xyz: the stages only */
        stages(argv[1], argv[2]);
        return 0;
    }
    for (int i = 0; i < 4 * NK; i++) x[i] = 0.01 * (i % 17) - 0.08;
    for (int i = 0; i < NK * NJ; i++) B[i] = 1e-3 * (i % 29) - 0.014;
    for (int i = 0; i < NJ; i++) b[i] = 0.1 * i;
    for (int i = 0; i < NEXP; i++) ex[i] = -8.0 + 16.0 * i / NEXP;
    double probe = 0;
    const int have = eann_exp_n_simd(EANN_SIMD_AVX2, 1, &probe, &probe) == 0;
#if EANN_HAVE_AVX2
    const int have512 = have && __builtin_cpu_supports("avx512f");
#else
    const int have512 = 0;
#endif
    printf("%-34s %10s %10s %10s\n", "kernel", "portable", have ? "avx2" : "(no avx2)",
           have512 ? "avx-512" : "");
    double g[2][2], e[3] = {0, 0, 0};
    for (int r = 0; r < 2; r++)
        for (int a = 0; a <= have; a++) g[r][a] = gemm_rate(r ? 4 : 1, a);
    e[0] = exp_ns(EANN_SIMD_PORTABLE);
    if (have) e[1] = exp_ns(EANN_SIMD_AVX2_ONLY);
    if (have512) e[2] = exp_ns(EANN_SIMD_AVX2);
    for (int r = 0; r < 2; r++) {
        printf("dense 64x64, %d row%s (GMAC/s)       %10.2f", r ? 4 : 1, r ? "s" : " ", g[r][0]);
        if (have) printf(" %10.2f", g[r][1]);
        printf("\n");
    }
    printf("exp, 1024 values (ns per value)    %10.2f", e[0]);
    if (have) printf(" %10.2f", e[1]);
    if (have512) printf(" %10.2f", e[2]);
    printf("\n");
    const int a = have;
    const double macs = 12.0 * (36 * 64 + 64 * 64 + 64), macs_s = 132.0 * 13 * 12;
    const double nexp = 1296 + 1536, ebest = have512 ? e[2] : e[a];
    /* the 12 rows of NMA come in species blocks of 1, 7, 3, 1: average the rates */
    const double rate = 0.5 * (g[0][a] + g[1][a]) * 1e9;
    const double t_mm = (macs + macs_s) / rate * 1e6, t_exp = nexp * ebest * 1e-3;
    printf("dipole model, one NMA molecule: %.0f + %.0f multiply-adds -> %.2f us, %.0f exp -> %.2f us;\n"
           "together %.2f us of the 6.8 us that 100x PyTorch (0.68 ms) would allow; not counted:\n"
           "1536 divisions, 66 cos, LayerNorm, pair list, angular terms, and that the 200 kB of\n"
           "weights stream from L2 (a species of one atom reads each weight once)\n",
           macs, macs_s, t_mm, nexp, t_exp, t_mm + t_exp);
    return 0;
}
