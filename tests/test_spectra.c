/* SPDX-License-Identifier: MIT */
/* test_spectra.c - spectra.c against references: the FFT against the plain
 * DFT, the FFT autocorrelation against the direct sum, Parseval, synthetic
 * dipoles made of cosines at known wavenumbers (peak positions, intensity
 * ratios and the absolute harmonic IR intensity in km/mol), rotation
 * invariance of the IR and Raman spectra, and the Raman isotropic /
 * anisotropic separation. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include "harness.h"
#include "spectra.h"
#include "xyz.h"

static const double PI = 3.14159265358979323846;

/* our own PRNG (splitmix64), uniform in [-1, 1) */
static uint64_t rng_state = 12345;
static double urand(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double max_abs_cplx(const spectra_cplx *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = th_worst(m, hypot(x[i].re, x[i].im));
    return m;
}

/* FFT vs DFT for one length and sign; returns the error relative to max |X|. */
static double fft_vs_dft(size_t n, int sign) {
    spectra_cplx *x = calloc(n, sizeof *x), *ref = calloc(n, sizeof *ref);
    for (size_t i = 0; i < n; i++) { x[i].re = urand(); x[i].im = urand(); }
    spectra_dft(x, ref, n, sign);
    int rc = spectra_fft(x, n, sign);
    double worst = rc == SPECTRA_OK ? 0 : NAN;
    for (size_t i = 0; i < n; i++)
        worst = th_worst(worst, hypot(x[i].re - ref[i].re, x[i].im - ref[i].im));
    double scale = max_abs_cplx(ref, n);
    free(x); free(ref);
    return worst / (scale > 1 ? scale : 1);
}

static void test_fft(void) {
    double worst = 0;
    for (size_t n = 1; n <= 64; n++) {
        worst = th_worst(worst, fft_vs_dft(n, -1));
        worst = th_worst(worst, fft_vs_dft(n, +1));
    }
    CHECK(worst <= 1e-12, "FFT vs DFT, n = 1..64: relative error %.3g", worst);
    const size_t primes[] = {67, 97, 101, 127, 251, 509, 1009};
    worst = 0;
    for (size_t i = 0; i < sizeof primes / sizeof *primes; i++)
        worst = th_worst(worst, fft_vs_dft(primes[i], -1));
    CHECK(worst <= 1e-12, "FFT vs DFT, primes to 1009: relative error %.3g", worst);
    worst = th_worst(fft_vs_dft(1000, -1), fft_vs_dft(1024, -1));
    CHECK(worst <= 1e-12, "FFT vs DFT, n = 1000 and 1024: relative error %.3g", worst);

    /* a delta at j = 1 transforms to exp(-2 pi i k / n) exactly (n = 7) */
    spectra_cplx d[7] = {{0, 0}};
    d[1].re = 1;
    spectra_fft(d, 7, -1);
    worst = 0;
    for (int k = 0; k < 7; k++)
        worst = th_worst(worst, hypot(d[k].re - cos(2 * PI * k / 7), d[k].im + sin(2 * PI * k / 7)));
    CHECK(worst <= 1e-14, "FFT of a delta (n = 7): error %.3g", worst);

    /* forward then backward gives n x (any length) */
    const size_t n = 300;
    spectra_cplx x[300], y[300];
    for (size_t i = 0; i < n; i++) { x[i].re = urand(); x[i].im = urand(); y[i] = x[i]; }
    spectra_fft(y, n, -1);
    spectra_fft(y, n, +1);
    worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = th_worst(worst, hypot(y[i].re / n - x[i].re, y[i].im / n - x[i].im));
    CHECK(worst <= 1e-13, "FFT round trip (n = 300): error %.3g", worst);

    /* Parseval: sum |x|^2 = (1/n) sum |X|^2 */
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    spectra_fft(y, n, -1);
    double sx = 0, sy = 0;
    for (size_t i = 0; i < n; i++) {
        sx += x[i].re * x[i].re + x[i].im * x[i].im;
        sy += y[i].re * y[i].re + y[i].im * y[i].im;
    }
    CHECK_REL(sx, sy / n, 1e-13, "Parseval for the FFT (n = 300)");

    CHECK(spectra_fft(x, 0, -1) == SPECTRA_EINVAL, "n = 0 is refused");
    CHECK(spectra_fft(x, 4, 2) == SPECTRA_EINVAL, "sign 2 is refused");
}

static void test_autocorr(void) {
    double worst = 0;
    const size_t ns[] = {1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 64, 100, 257, 1000};
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++) {
        size_t n = ns[t];
        double *x = malloc(2 * n * sizeof *x), *r1 = malloc(n * sizeof *r1), *r2 = malloc(n * sizeof *r2);
        for (size_t i = 0; i < 2 * n; i++) x[i] = urand();
        spectra_autocorr_direct(x + 1, n, 2, r1); /* stride 2 (odd elements) */
        spectra_autocorr(x + 1, n, 2, r2);
        for (size_t k = 0; k < n; k++) worst = th_worst(worst, fabs(r1[k] - r2[k]) / r1[0]);
        free(x); free(r1); free(r2);
    }
    CHECK(worst <= 1e-12, "FFT autocorrelation vs direct sum: relative error %.3g", worst);
    /* no circular wrap: a series 1, 0, ..., 0, 1 of length n has r_{n-1} = 1, r_k = 0 between */
    double x[10] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1}, r[10];
    spectra_autocorr(x, 10, 1, r);
    CHECK(fabs(r[0] - 2) < 1e-14 && fabs(r[9] - 1) < 1e-14 && fabs(r[1]) < 1e-14 && fabs(r[8]) < 1e-14,
          "autocorrelation without wrap: r0 %g r1 %g r8 %g r9 %g", r[0], r[1], r[8], r[9]);
}

/* integral of y over [lo, hi] cm^-1 on the grid nu (trapezoid) */
static double band(const double *nu, const double *y, size_t n1, double lo, double hi) {
    double s = 0;
    for (size_t m = 0; m + 1 < n1; m++)
        if (nu[m] >= lo && nu[m + 1] <= hi) s += 0.5 * (y[m] + y[m + 1]) * (nu[m + 1] - nu[m]);
    return s;
}

/* Synthetic dipole: cosines at known wavenumbers along different directions. */
static void test_ir_cosines(void) {
    const size_t n = 6000;
    const double dt = 1.0, T = 300;
    const double wn[3] = {1000.0, 1650.0, 3000.0};      /* cm^-1 */
    const double amp[3] = {0.05, 0.02, 0.01};           /* e*bohr */
    const double dir[3][3] = {{1, 0, 0}, {0, 0.6, 0.8}, {0, 0, 1}};
    double *mu = malloc(3 * n * sizeof *mu), *nu = malloc((n + 1) * sizeof *nu),
           *a = malloc((n + 1) * sizeof *a);
    for (size_t t = 0; t < n; t++)
        for (int c = 0; c < 3; c++) {
            double v = 0.3 * (c + 1); /* a permanent dipole (removed as the mean) */
            for (int i = 0; i < 3; i++)
                v += amp[i] * dir[i][c] * cos(2 * PI * SPECTRA_C_CM_PER_FS * wn[i] * dt * (double)t + i);
            mu[3 * t + c] = v;
        }
    int rc = spectra_ir(mu, n, dt, T, SPECTRA_WINDOW_HANN, SPECTRA_QCF_HARMONIC, nu, a);
    CHECK(rc == SPECTRA_OK, "spectra_ir: %s", spectra_strerror(rc));
    double res = spectra_resolution_cm(n, dt);
    CHECK_REL(res, 1.0 / (n * dt * SPECTRA_C_CM_PER_FS), 1e-15, "resolution 1/(N dt)");
    CHECK_REL(nu[n], 0.5 / (dt * SPECTRA_C_CM_PER_FS), 1e-14, "last grid point is the Nyquist wavenumber");
    /* peaks: local maxima above 10 % of the largest */
    double amax = 0;
    for (size_t m = 0; m <= n; m++) amax = th_worst(amax, a[m]);
    int npeaks = 0, found[3] = {0, 0, 0};
    for (size_t m = 1; m < n; m++) {
        if (!(a[m] > a[m - 1] && a[m] >= a[m + 1] && a[m] > 0.1 * amax)) continue;
        npeaks++;
        for (int i = 0; i < 3; i++)
            if (fabs(nu[m] - wn[i]) <= res) found[i] = 1;
    }
    CHECK(npeaks == 3 && found[0] && found[1] && found[2], "3 peaks at 1000, 1650, 3000 cm^-1 (found %d: %d %d %d)",
          npeaks, found[0], found[1], found[2]);
    /* absolute band intensities: a mode mu(t) = m0 cos(omega t) has <dmu/dt^2> = m0^2 omega^2 / 2,
     * i.e. the harmonic intensity A = N_A |dmu/dQ|^2 / (12 eps0 c^2) of a thermal mode with
     * |dmu/dQ|^2 kT = <dmu/dt^2>:  A = N_A m0^2 omega^2 / (24 eps0 c^2 k T)  (SI, m/mol).
     * SI constants (CODATA 2018) written here, not taken from spectra.c: */
    const double NA = 6.02214076e23, EBOHR = 8.4783536255e-30, EPS0 = 8.8541878128e-12,
                 CL = 299792458.0, KB = 1.380649e-23;
    for (int i = 0; i < 3; i++) {
        double omega = 2 * PI * CL * 100.0 * wn[i];
        double m0 = amp[i] * EBOHR;
        double ref = NA * m0 * m0 * omega * omega / (24 * EPS0 * CL * CL * KB * T) / 1000.0;
        double got = band(nu, a, n + 1, wn[i] - 60, wn[i] + 60);
        char what[64];
        snprintf(what, sizeof what, "IR band integral at %g cm^-1 (km/mol)", wn[i]);
        CHECK_REL(got, ref, 2e-3, what);
    }
    /* The band integrals above hold to 3e-4..1.5e-3 (the lag window's tails), too loose to
     * pin the unit conversion (a mutant that divided by 100.1 instead of 100 passed them).
     * Point by point it is exact: with the harmonic factor (1), a(nu~) = N_A e_bohr^2
     * omega^2 S(nu~) / (6 eps0 c^2 k T) / 1000 in km/mol per cm^-1, S the density in
     * (e bohr)^2 per cm^-1 (spectra_density of the same dipoles), omega = 2 pi c 100 nu~
     * (measured: 1.1e-16 of the peak; tolerance 1e-13, far below a constant's last digit). */
    {
        double *sd = malloc((n + 1) * sizeof *sd), worst = 0;
        spectra_density(mu, n, 3, dt, SPECTRA_WINDOW_HANN, NULL, sd);
        for (size_t m = 1; m <= n; m++) {
            double omega = 2 * PI * CL * 100.0 * nu[m];
            double want = NA * EBOHR * EBOHR * omega * omega * sd[m] / (6 * EPS0 * CL * CL * KB * T) /
                          1000.0;
            worst = th_worst(worst, fabs(a[m] - want) / amax);
        }
        CHECK(worst <= 1e-13, "IR = prefactor x omega^2 x density, point by point: %.3g of the peak",
              worst);
        free(sd);
    }
    /* ratio of bands = (amp omega)^2 ratio */
    double r = band(nu, a, n + 1, 2940, 3060) / band(nu, a, n + 1, 940, 1060);
    CHECK_REL(r, pow(0.01 * 3000 / (0.05 * 1000), 2), 2e-3, "IR intensity ratio 3000 / 1000 cm^-1");

    /* Parseval / sum rule of the density: the positive-frequency integral of S is C(0)/2 */
    double *s = malloc((n + 1) * sizeof *s);
    for (int w = 0; w <= 2; w++) {
        spectra_density(mu, n, 3, dt, w, nu, s);
        double c0 = 0;
        for (int c = 0; c < 3; c++) {
            double mean = 0, var = 0;
            for (size_t t = 0; t < n; t++) mean += mu[3 * t + c];
            mean /= n;
            for (size_t t = 0; t < n; t++) var += (mu[3 * t + c] - mean) * (mu[3 * t + c] - mean);
            c0 += var / n;
        }
        char what[64];
        snprintf(what, sizeof what, "sum rule int S dnu = C(0) (window %s)", spectra_window_name(w));
        CHECK_REL(2 * band(nu, s, n + 1, -1, 1e9), c0, 1e-12, what);
    }
    free(s);
    /* quantum correction factors: harmonic = 1; the others -> 1 at low frequency, and
     * their values at x = hbar omega / kT = 1 */
    double nu1 = SPECTRA_KB_CM_PER_K * T; /* x = 1 */
    CHECK_CLOSE(spectra_qcf_ir_factor(SPECTRA_QCF_HARMONIC, 1650, T), 1.0, 0, "harmonic F = 1");
    CHECK_CLOSE(spectra_qcf_ir_factor(SPECTRA_QCF_NONE, nu1, T), 1 - exp(-1.0), 1e-15, "none F(x=1)");
    CHECK_CLOSE(spectra_qcf_ir_factor(SPECTRA_QCF_STANDARD, nu1, T), 2 / (1 + exp(-1.0)) * (1 - exp(-1.0)), 1e-15,
                "standard F(x=1)");
    CHECK_CLOSE(spectra_qcf_ir_factor(SPECTRA_QCF_SCHOFIELD, nu1, T), exp(0.5) * (1 - exp(-1.0)), 1e-15,
                "Schofield F(x=1)");
    CHECK_CLOSE(spectra_qcf_ir_factor(SPECTRA_QCF_STANDARD, 1e-6, T), 1.0, 1e-9, "standard F -> 1 at nu -> 0");
    CHECK(spectra_ir(mu, n, dt, 0, SPECTRA_WINDOW_HANN, SPECTRA_QCF_HARMONIC, nu, a) == SPECTRA_EINVAL,
          "T = 0 K is refused for IR");
    mu[7] = NAN;
    CHECK(spectra_ir(mu, n, dt, T, SPECTRA_WINDOW_HANN, SPECTRA_QCF_HARMONIC, nu, a) == SPECTRA_EINVAL,
          "a NaN dipole is refused");
    free(mu); free(nu); free(a);
}

/* rotation R (row-major) from an axis and angle (Rodrigues) */
static void rotation(const double axis[3], double ang, double R[9]) {
    double l = sqrt(axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]);
    double x = axis[0] / l, y = axis[1] / l, z = axis[2] / l, c = cos(ang), s = sin(ang), C = 1 - c;
    double r[9] = {c + x * x * C, x * y * C - z * s, x * z * C + y * s,
                   y * x * C + z * s, c + y * y * C, y * z * C - x * s,
                   z * x * C - y * s, z * y * C + x * s, c + z * z * C};
    memcpy(R, r, sizeof r);
}

static double max_abs(const double *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = th_worst(m, fabs(x[i]));
    return m;
}

static void test_rotation_and_raman(void) {
    const size_t n = 2000;
    const double dt = 0.5, T = 300;
    double *mu = malloc(3 * n * sizeof *mu), *mur = malloc(3 * n * sizeof *mur);
    double *al = malloc(9 * n * sizeof *al), *alr = malloc(9 * n * sizeof *alr);
    /* a "molecule": random-phase oscillations plus noise in every component */
    for (size_t t = 0; t < n; t++) {
        double tt = 2 * PI * SPECTRA_C_CM_PER_FS * dt * (double)t;
        for (int c = 0; c < 3; c++)
            mu[3 * t + c] = 0.5 * c + 0.03 * cos(1200 * tt + c) + 0.01 * sin(2900 * tt * (1 + 0.01 * c)) + 1e-3 * urand();
        double s[9];
        for (int i = 0; i < 3; i++)
            for (int j = i; j < 3; j++)
                s[3 * i + j] = s[3 * j + i] = (i == j ? 50 : 2) + 0.4 * cos(900 * tt + i + 2 * j) + 0.05 * urand();
        memcpy(al + 9 * t, s, sizeof s);
    }
    double R[9];
    const double axis[3] = {0.3, -0.5, 0.8};
    rotation(axis, 1.234, R);
    for (size_t t = 0; t < n; t++) {
        for (int i = 0; i < 3; i++) {
            mur[3 * t + i] = 0;
            for (int k = 0; k < 3; k++) mur[3 * t + i] += R[3 * i + k] * mu[3 * t + k];
        }
        for (int i = 0; i < 3; i++) /* R alpha R^T */
            for (int j = 0; j < 3; j++) {
                double v = 0;
                for (int k = 0; k < 3; k++)
                    for (int l = 0; l < 3; l++) v += R[3 * i + k] * al[9 * t + 3 * k + l] * R[3 * j + l];
                alr[9 * t + 3 * i + j] = v;
            }
    }
    double *a1 = malloc((n + 1) * sizeof *a1), *a2 = malloc((n + 1) * sizeof *a2);
    spectra_ir(mu, n, dt, T, SPECTRA_WINDOW_BLACKMAN, SPECTRA_QCF_STANDARD, NULL, a1);
    spectra_ir(mur, n, dt, T, SPECTRA_WINDOW_BLACKMAN, SPECTRA_QCF_STANDARD, NULL, a2);
    CHECK(th_max_abs_diff(a1, a2, n + 1) <= 1e-10 * max_abs(a1, n + 1),
          "IR spectrum unchanged by a rotation (max diff %.3g of %.3g)", th_max_abs_diff(a1, a2, n + 1),
          max_abs(a1, n + 1));
    double *iso1 = malloc((n + 1) * sizeof(double)), *an1 = malloc((n + 1) * sizeof(double)),
           *to1 = malloc((n + 1) * sizeof(double)), *iso2 = malloc((n + 1) * sizeof(double)),
           *an2 = malloc((n + 1) * sizeof(double)), *to2 = malloc((n + 1) * sizeof(double));
    spectra_raman(al, n, dt, T, 532, SPECTRA_WINDOW_HANN, NULL, iso1, an1, to1);
    spectra_raman(alr, n, dt, T, 532, SPECTRA_WINDOW_HANN, NULL, iso2, an2, to2);
    CHECK(th_max_abs_diff(iso1, iso2, n + 1) <= 1e-10 * max_abs(iso1, n + 1), "Raman iso unchanged by a rotation");
    CHECK(th_max_abs_diff(an1, an2, n + 1) <= 1e-10 * max_abs(an1, n + 1), "Raman aniso unchanged by a rotation");
    CHECK(th_max_abs_diff(to1, to2, n + 1) <= 1e-10 * max_abs(to1, n + 1), "Raman total unchanged by a rotation");

    /* isotropic only: alpha(t) = (a0 + a1 cos w t) 1  ->  aniso = 0, iso band = a1^2/4 */
    double *nu = malloc((n + 1) * sizeof *nu);
    const double w1 = 1500, a1v = 0.7;
    for (size_t t = 0; t < n; t++) {
        double v = 40 + a1v * cos(2 * PI * SPECTRA_C_CM_PER_FS * w1 * dt * (double)t);
        for (int k = 0; k < 9; k++) al[9 * t + k] = (k % 4 == 0) ? v : 0.0;
    }
    spectra_raman(al, n, dt, 0, 0, SPECTRA_WINDOW_HANN, nu, iso1, an1, to1);
    CHECK(max_abs(an1, n + 1) <= 1e-12 * max_abs(iso1, n + 1), "isotropic signal: aniso %.3g (iso max %.3g)",
          max_abs(an1, n + 1), max_abs(iso1, n + 1));
    CHECK_REL(band(nu, iso1, n + 1, w1 - 100, w1 + 100), a1v * a1v / 4, 3e-3,
              "isotropic band integral = <da^2>/2");
    CHECK_REL(band(nu, to1, n + 1, w1 - 100, w1 + 100), a1v * a1v / 4, 3e-3, "total = iso for an isotropic signal");
    /* anisotropic only: alpha(t) = a0 1 + b cos(w t) diag(1, -1, 0) -> iso = 0,
     * aniso = (2/15) tr(beta beta): two-sided integral (2/15) b^2, positive half b^2 / 15 */
    const double b = 0.9;
    for (size_t t = 0; t < n; t++) {
        double v = b * cos(2 * PI * SPECTRA_C_CM_PER_FS * w1 * dt * (double)t);
        for (int k = 0; k < 9; k++) al[9 * t + k] = 0;
        al[9 * t + 0] = 40 + v;
        al[9 * t + 4] = 40 - v;
        al[9 * t + 8] = 40;
    }
    spectra_raman(al, n, dt, 0, 0, SPECTRA_WINDOW_HANN, nu, iso1, an1, to1);
    CHECK(max_abs(iso1, n + 1) <= 1e-12 * max_abs(an1, n + 1), "anisotropic signal: iso %.3g (aniso max %.3g)",
          max_abs(iso1, n + 1), max_abs(an1, n + 1));
    CHECK_REL(band(nu, an1, n + 1, w1 - 100, w1 + 100), b * b / 15, 3e-3, "anisotropic band integral = b^2/15");
    CHECK_REL(band(nu, to1, n + 1, w1 - 100, w1 + 100), 1.75 * b * b / 15, 3e-3, "total = 7/4 aniso");
    /* Stokes factors at the band: B = x/(1-e^-x), E = ((nu0-nu)/nu0)^4 */
    spectra_raman(al, n, dt, 300, 532, SPECTRA_WINDOW_HANN, nu, iso2, an2, to2);
    size_t m = 0;
    while (nu[m] < w1) m++;
    double x = nu[m] / (SPECTRA_KB_CM_PER_K * 300), nu0 = 1e7 / 532;
    CHECK_REL(an2[m] / an1[m], x / (1 - exp(-x)) * pow((nu0 - nu[m]) / nu0, 4), 1e-12, "Bose and excitation factors");
    free(nu); free(iso1); free(an1); free(to1); free(iso2); free(an2); free(to2);
    free(a1); free(a2); free(mu); free(mur); free(al); free(alr);
}

static void test_units(void) {
    CHECK_REL(spectra_thz_to_cm(1.0), 33.35640951981521, 1e-14, "1 THz in cm^-1");
    CHECK_REL(spectra_cm_to_thz(spectra_thz_to_cm(7.5)), 7.5, 1e-15, "THz round trip");
    CHECK_REL(spectra_fs_inv_to_cm(0.1), 3335.640951981521, 1e-14, "0.1 fs^-1 in cm^-1");
    CHECK(spectra_window_parse("hann") == SPECTRA_WINDOW_HANN && spectra_window_parse("x") == -1, "window names");
    CHECK(spectra_qcf_parse("schofield") == SPECTRA_QCF_SCHOFIELD && spectra_qcf_parse("") == -1, "QCF names");
    CHECK_CLOSE(spectra_window_value(SPECTRA_WINDOW_BLACKMAN, 0, 10), 1.0, 1e-15, "Blackman w(0) = 1");
    CHECK_CLOSE(spectra_window_value(SPECTRA_WINDOW_HANN, 10, 10), 0.0, 1e-15, "Hann w(n) = 0");
}

/* ---- the streaming XYZ reader (xyz_stream_*, end of xyz.c) against xyz_read ---- */

static int same_frame(const xyz_frame *a, const xyz_frame *b) {
    if (a->natoms != b->natoms || a->ninfo != b->ninfo || a->narrays != b->narrays || a->line != b->line)
        return 0;
    size_t na = (size_t)a->natoms;
    if (na && (memcmp(a->z, b->z, na * sizeof(int)) || memcmp(a->pos, b->pos, 3 * na * sizeof(double))))
        return 0;
    for (int i = 0; i < a->ninfo; i++) {
        const xyz_info *p = &a->info[i], *q = &b->info[i];
        if (strcmp(p->key, q->key) || p->type != q->type || p->n != q->n) return 0;
        if (p->str ? (!q->str || strcmp(p->str, q->str)) : !!q->str) return 0;
        if (p->num && memcmp(p->num, q->num, (size_t)p->n * sizeof(double))) return 0;
    }
    for (int i = 0; i < a->narrays; i++) {
        const xyz_array *p = &a->arrays[i], *q = &b->arrays[i];
        if (strcmp(p->name, q->name) || p->type != q->type || p->ncols != q->ncols) return 0;
        if (p->num && memcmp(p->num, q->num, na * (size_t)p->ncols * sizeof(double))) return 0;
    }
    return 1;
}

/* 1 if the stream gives the frames and the error message of xyz_read */
static int stream_matches_read(const char *path) {
    char e1[512], e2[512];
    xyz_file f;
    int rc1 = xyz_read(path, &f, e1, sizeof e1);
    xyz_stream *s;
    if (xyz_stream_open(path, &s, e2, sizeof e2) != 0) return 0;
    int ok = 1, rc, k = 0;
    xyz_frame fr;
    while ((rc = xyz_stream_next(s, &fr, e2, sizeof e2)) == 1) {
        /* before an error the stream returns the good frames; xyz_read returns none */
        if (rc1 == 0 && (k >= f.nframes || !same_frame(&fr, &f.frames[k]))) ok = 0;
        k++;
        xyz_frame_free(&fr);
    }
    if (rc1 == 0) ok = ok && rc == 0 && k == f.nframes && xyz_stream_frames(s) == k;
    else ok = ok && rc == -1 && strcmp(e1, e2) == 0;
    if (!ok) fprintf(stderr, "stream vs read on %s: rc %d/%d, '%s' vs '%s'\n", path, rc1, rc, rc1 ? e1 : "", e2);
    CHECK(xyz_stream_next(s, &fr, e2, sizeof e2) == 0, "%s: the stream stays at its end", path);
    xyz_stream_close(s);
    if (rc1 == 0) xyz_free(&f);
    return ok;
}

static void test_stream(void) {
    const char *dirs[] = {"tests/bad", "fuzz/seeds/xyz"};
    int nfiles = 0, nbad = 0;
    for (int d = 0; d < 2; d++) {
        DIR *dp = opendir(dirs[d]);
        if (!dp) continue;
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            size_t l = strlen(de->d_name);
            if (l < 5 || strcmp(de->d_name + l - 4, ".xyz")) continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dirs[d], de->d_name);
            nfiles++;
            nbad += !stream_matches_read(path);
        }
        closedir(dp);
    }
    CHECK(nfiles >= 30 && nbad == 0, "streaming reader = xyz_read (frames, messages) on %d files: %d differ",
          nfiles, nbad);
    CHECK(stream_matches_read("data/nma/test.xyz"), "streaming reader = xyz_read on data/nma/test.xyz");
    char err[256];
    xyz_stream *s;
    CHECK(xyz_stream_open("no/such/file.xyz", &s, err, sizeof err) == -1 && strstr(err, "cannot open"),
          "missing file: '%s'", err);
}

int main(void) {
    test_stream();
    test_fft();
    test_autocorr();
    test_ir_cosines();
    test_rotation_and_raman();
    test_units();
    return th_done("test_spectra");
}
