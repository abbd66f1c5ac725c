/* SPDX-License-Identifier: MIT */
/* spectra.c - vibrational spectra from time series (see spectra.h for the
 * units, the sources [FFT] [WK] [QCF] [IR] [RAMAN] and the API).
 *
 * Reading order: the plain DFT and the direct autocorrelation first (what the
 * fast paths must reproduce), then the radix-2 FFT, Bluestein's algorithm for
 * any length, the FFT autocorrelation, the spectral density, and the IR and
 * Raman line shapes built on it.
 */
#include "spectra.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const double PI = 3.14159265358979323846;

const char *spectra_strerror(int code) {
    switch (code) {
    case SPECTRA_OK: return "ok";
    case SPECTRA_EINVAL: return "invalid argument";
    case SPECTRA_ENOMEM: return "out of memory";
    default: return "unknown error";
    }
}

/* ------------------------------------------------------------------------ */
/* units                                                                     */

double spectra_fs_inv_to_cm(double f_per_fs) { return f_per_fs / SPECTRA_C_CM_PER_FS; }
double spectra_cm_to_thz(double nu_cm) { return nu_cm * SPECTRA_C_CM_PER_FS * 1e3; }
double spectra_thz_to_cm(double thz) { return thz * 1e-3 / SPECTRA_C_CM_PER_FS; }
double spectra_resolution_cm(size_t n, double dt_fs) {
    return spectra_fs_inv_to_cm(1.0 / ((double)n * dt_fs));
}

/* ------------------------------------------------------------------------ */
/* the plain DFT (reference)                                                 */

/* X_k = sum_j x_j exp(sign 2 pi i j k / n). The angle uses (j k mod n), reduced
 * exactly in integers, so large j k lose no accuracy. */
int spectra_dft(const spectra_cplx *in, spectra_cplx *out, size_t n, int sign) {
    if (!in || !out || n == 0 || (sign != 1 && sign != -1) || in == out) return SPECTRA_EINVAL;
    if (n > ((size_t)1 << 31)) return SPECTRA_EINVAL; /* j*k must fit in 64 bits */
    for (size_t k = 0; k < n; k++) {
        double re = 0, im = 0;
        for (size_t j = 0; j < n; j++) {
            uint64_t jk = ((uint64_t)j * (uint64_t)k) % (uint64_t)n;
            double ang = sign * 2.0 * PI * (double)jk / (double)n;
            double c = cos(ang), s = sin(ang);
            re += in[j].re * c - in[j].im * s;
            im += in[j].re * s + in[j].im * c;
        }
        out[k].re = re;
        out[k].im = im;
    }
    return SPECTRA_OK;
}

/* ------------------------------------------------------------------------ */
/* radix-2 FFT [FFT: Cooley-Tukey 1965], iterative, in place                 */

static int is_pow2(size_t n) { return n && !(n & (n - 1)); }

static size_t next_pow2(size_t n) {
    size_t p = 1;
    while (p < n) {
        if (p > SIZE_MAX / 2) return 0;
        p <<= 1;
    }
    return p;
}

/* n a power of two. Step 1: reorder the input to bit-reversed index order.
 * Step 2: log2(n) stages of butterflies; a stage of span len combines two
 * transforms of length len/2 (even part E, odd part O) into one of length len:
 *     X_k = E_k + w^k O_k,  X_{k+len/2} = E_k - w^k O_k,  w = exp(sign 2 pi i / len).
 * w^k is computed directly as cos/sin(sign 2 pi k / len) (no recurrence). */
static void fft_radix2(spectra_cplx *x, size_t n, int sign) {
    for (size_t i = 1, j = 0; i < n; i++) {
        size_t bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            spectra_cplx t = x[i];
            x[i] = x[j];
            x[j] = t;
        }
    }
    for (size_t len = 2; len <= n; len <<= 1) {
        size_t half = len / 2;
        for (size_t k = 0; k < half; k++) {
            double ang = sign * 2.0 * PI * (double)k / (double)len;
            double wr = cos(ang), wi = sin(ang);
            for (size_t i = k; i < n; i += len) {
                spectra_cplx *a = &x[i], *b = &x[i + half];
                double tr = wr * b->re - wi * b->im;
                double ti = wr * b->im + wi * b->re;
                b->re = a->re - tr;
                b->im = a->im - ti;
                a->re += tr;
                a->im += ti;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Bluestein's chirp-z transform [FFT: Bluestein 1970], any n               */

/* With j k = (j^2 + k^2 - (k-j)^2) / 2 and the chirp w_m = exp(sign pi i m^2 / n):
 *     X_k = w_k sum_j (x_j w_j) conj(w_{k-j}),
 * a convolution of a_j = x_j w_j with b_m = conj(w_m) (b_{-m} = b_m), done
 * exactly by radix-2 FFTs of a length M >= 2n-1 (no wrap into the n outputs).
 * m^2 is reduced modulo 2n in integers, so the chirp angle is exact. */
static int fft_bluestein(spectra_cplx *x, size_t n, int sign) {
    size_t m = next_pow2(2 * n - 1);
    if (m == 0 || n > ((size_t)1 << 31)) return SPECTRA_ENOMEM;
    spectra_cplx *w = malloc(n * sizeof *w);
    spectra_cplx *a = calloc(m, sizeof *a);
    spectra_cplx *b = calloc(m, sizeof *b);
    if (!w || !a || !b) {
        free(w); free(a); free(b);
        return SPECTRA_ENOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        uint64_t j2 = ((uint64_t)j * (uint64_t)j) % (2 * (uint64_t)n);
        double ang = sign * PI * (double)j2 / (double)n;
        w[j].re = cos(ang);
        w[j].im = sin(ang);
    }
    for (size_t j = 0; j < n; j++) { /* a_j = x_j w_j */
        a[j].re = x[j].re * w[j].re - x[j].im * w[j].im;
        a[j].im = x[j].re * w[j].im + x[j].im * w[j].re;
    }
    for (size_t j = 0; j < n; j++) { /* b_m = conj(w_m) at m and at -m (index M - m) */
        b[j].re = w[j].re;
        b[j].im = -w[j].im;
        if (j > 0) b[m - j] = b[j];
    }
    fft_radix2(a, m, -1);
    fft_radix2(b, m, -1);
    for (size_t k = 0; k < m; k++) { /* pointwise product = convolution */
        double re = a[k].re * b[k].re - a[k].im * b[k].im;
        double im = a[k].re * b[k].im + a[k].im * b[k].re;
        a[k].re = re;
        a[k].im = im;
    }
    fft_radix2(a, m, +1);
    const double inv = 1.0 / (double)m;
    for (size_t k = 0; k < n; k++) { /* X_k = w_k (a * b)_k */
        double cr = a[k].re * inv, ci = a[k].im * inv;
        x[k].re = w[k].re * cr - w[k].im * ci;
        x[k].im = w[k].re * ci + w[k].im * cr;
    }
    free(w); free(a); free(b);
    return SPECTRA_OK;
}

int spectra_fft(spectra_cplx *x, size_t n, int sign) {
    if (!x || n == 0 || (sign != 1 && sign != -1)) return SPECTRA_EINVAL;
    if (is_pow2(n)) {
        fft_radix2(x, n, sign);
        return SPECTRA_OK;
    }
    return fft_bluestein(x, n, sign);
}

/* ------------------------------------------------------------------------ */
/* autocorrelation                                                           */

int spectra_autocorr_direct(const double *x, size_t n, size_t stride, double *r) {
    if (!x || !r || n == 0 || stride == 0) return SPECTRA_EINVAL;
    for (size_t k = 0; k < n; k++) {
        double s = 0;
        for (size_t j = 0; j + k < n; j++) s += x[j * stride] * x[(j + k) * stride];
        r[k] = s;
    }
    return SPECTRA_OK;
}

/* [WK]: pad x with zeros to P >= 2n-1 (a power of two), X = FFT(x),
 * r = IFFT(|X|^2) / P. The padding makes the circular correlation of the
 * padded series equal the linear one for lags 0..n-1 (no wrap-around). */
int spectra_autocorr(const double *x, size_t n, size_t stride, double *r) {
    if (!x || !r || n == 0 || stride == 0) return SPECTRA_EINVAL;
    size_t p = next_pow2(2 * n - 1);
    if (p == 0 || p > SIZE_MAX / sizeof(spectra_cplx)) return SPECTRA_ENOMEM;
    spectra_cplx *b = calloc(p, sizeof *b);
    if (!b) return SPECTRA_ENOMEM;
    for (size_t j = 0; j < n; j++) b[j].re = x[j * stride];
    fft_radix2(b, p, -1);
    for (size_t k = 0; k < p; k++) {
        b[k].re = b[k].re * b[k].re + b[k].im * b[k].im;
        b[k].im = 0;
    }
    fft_radix2(b, p, +1);
    for (size_t k = 0; k < n; k++) r[k] = b[k].re / (double)p;
    free(b);
    return SPECTRA_OK;
}

/* ------------------------------------------------------------------------ */
/* windows                                                                   */

const char *spectra_window_name(int window) {
    switch (window) {
    case SPECTRA_WINDOW_NONE: return "none";
    case SPECTRA_WINDOW_HANN: return "hann";
    case SPECTRA_WINDOW_BLACKMAN: return "blackman";
    default: return NULL;
    }
}

int spectra_window_parse(const char *name) {
    if (!name) return -1;
    for (int w = 0; w <= 2; w++)
        if (!strcmp(name, spectra_window_name(w))) return w;
    return -1;
}

double spectra_window_value(int window, size_t k, size_t n) {
    double t = PI * (double)k / (double)n; /* 0 at lag 0, pi at lag n */
    switch (window) {
    case SPECTRA_WINDOW_HANN: return 0.5 * (1.0 + cos(t));
    case SPECTRA_WINDOW_BLACKMAN: return 0.42 + 0.5 * cos(t) + 0.08 * cos(2.0 * t);
    default: return 1.0;
    }
}

/* ------------------------------------------------------------------------ */
/* spectral density                                                          */

/* Steps (spectra.h for the formulas):
 *   1. per component c: remove the mean, autocorrelate (FFT), add into C
 *   2. C(k) /= N - k (unbiased), times the lag window w(k)
 *   3. lay the even lag sequence out on 2N points: g[k] = g[2N-k] = w C(k),
 *      g[N] = 0, Fourier transform (Bluestein unless 2N is a power of two)
 *   4. S_m = c dt Re G_m (G is real up to rounding: g is even). */
int spectra_density(const double *x, size_t n, int ncomp, double dt_fs, int window,
                    double *nu, double *s) {
    if (!x || !s || n == 0 || ncomp < 1 || !(dt_fs > 0) || !isfinite(dt_fs) ||
        !spectra_window_name(window))
        return SPECTRA_EINVAL;
    if (n > SIZE_MAX / 4 / sizeof(spectra_cplx)) return SPECTRA_ENOMEM;
    for (size_t i = 0; i < n * (size_t)ncomp; i++)
        if (!isfinite(x[i])) return SPECTRA_EINVAL;
    double *dx = malloc(n * sizeof *dx), *r = malloc(n * sizeof *r), *c = calloc(n, sizeof *c);
    spectra_cplx *g = calloc(2 * n, sizeof *g);
    int rc = SPECTRA_ENOMEM;
    if (!dx || !r || !c || !g) goto done;
    for (int comp = 0; comp < ncomp; comp++) { /* step 1 */
        double mean = 0;
        for (size_t j = 0; j < n; j++) mean += x[j * (size_t)ncomp + (size_t)comp];
        mean /= (double)n;
        for (size_t j = 0; j < n; j++) dx[j] = x[j * (size_t)ncomp + (size_t)comp] - mean;
        if ((rc = spectra_autocorr(dx, n, 1, r)) != SPECTRA_OK) goto done;
        for (size_t k = 0; k < n; k++) c[k] += r[k];
    }
    for (size_t k = 0; k < n; k++) /* step 2 */
        c[k] = c[k] / (double)(n - k) * spectra_window_value(window, k, n);
    g[0].re = c[0]; /* step 3 */
    for (size_t k = 1; k < n; k++) g[k].re = g[2 * n - k].re = c[k];
    if ((rc = spectra_fft(g, 2 * n, -1)) != SPECTRA_OK) goto done;
    const double scale = SPECTRA_C_CM_PER_FS * dt_fs; /* step 4: cm^-1 density */
    for (size_t m = 0; m <= n; m++) {
        s[m] = scale * g[m].re;
        if (nu) nu[m] = spectra_fs_inv_to_cm((double)m / (2.0 * (double)n * dt_fs));
    }
    rc = SPECTRA_OK;
done:
    free(dx); free(r); free(c); free(g);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* quantum correction factors [QCF]                                          */

const char *spectra_qcf_name(int qcf) {
    switch (qcf) {
    case SPECTRA_QCF_NONE: return "none";
    case SPECTRA_QCF_HARMONIC: return "harmonic";
    case SPECTRA_QCF_STANDARD: return "standard";
    case SPECTRA_QCF_SCHOFIELD: return "schofield";
    default: return NULL;
    }
}

int spectra_qcf_parse(const char *name) {
    if (!name) return -1;
    for (int q = 0; q <= 3; q++)
        if (!strcmp(name, spectra_qcf_name(q))) return q;
    return -1;
}

/* F = Q(x) (1 - e^-x) / x with x = hbar omega / kT = nu~ / (k_B/(hc) T);
 * every F -> 1 as x -> 0 (classical limit). -expm1(-x) = 1 - e^-x without
 * cancellation at small x. */
double spectra_qcf_ir_factor(int qcf, double nu_cm, double temperature_k) {
    double x = fabs(nu_cm) / (SPECTRA_KB_CM_PER_K * temperature_k);
    if (x == 0 || qcf == SPECTRA_QCF_HARMONIC) return 1.0;
    switch (qcf) {
    case SPECTRA_QCF_NONE: return -expm1(-x) / x;
    case SPECTRA_QCF_STANDARD: return 2.0 * tanh(0.5 * x) / x;
    case SPECTRA_QCF_SCHOFIELD: return 2.0 * sinh(0.5 * x) / x;
    default: return NAN;
    }
}

/* ------------------------------------------------------------------------ */
/* IR [IR]                                                                   */

/* SI constants (CODATA 2018; N_A, c, k exact). */
#define SI_NA 6.02214076e23        /* 1/mol */
#define SI_EPS0 8.8541878128e-12   /* F/m */
#define SI_C 299792458.0           /* m/s */
#define SI_KB 1.380649e-23         /* J/K */
#define SI_EBOHR 8.4783536255e-30  /* C m (atomic unit of dipole) */

int spectra_ir(const double *mu_au, size_t n, double dt_fs, double temperature_k, int window,
               int qcf, double *nu, double *a) {
    if (!a || !(temperature_k > 0) || !isfinite(temperature_k) || !spectra_qcf_name(qcf))
        return SPECTRA_EINVAL;
    double *grid = nu ? nu : malloc((n + 1) * sizeof *grid);
    if (!grid) return SPECTRA_ENOMEM;
    int rc = spectra_density(mu_au, n, 3, dt_fs, window, grid, a);
    if (rc == SPECTRA_OK) {
        /* a[m] holds S_mu in (e bohr)^2 per cm^-1. In SI: S_SI = S (e bohr in C m)^2 / 100
         * per m^-1; omega = 2 pi c nu~ (rad/s, nu~ in m^-1 = 100 nu~ in cm^-1);
         * A_SI = N_A / (6 eps0 c^2 k T) omega^2 S_SI in m/mol per m^-1; per cm^-1 and
         * in km/mol: * 100 / 1000. */
        const double pref = SI_NA / (6.0 * SI_EPS0 * SI_C * SI_C * SI_KB * temperature_k) *
                            SI_EBOHR * SI_EBOHR / 100.0 * 100.0 / 1000.0;
        for (size_t m = 0; m <= n; m++) {
            double omega = 2.0 * PI * SI_C * 100.0 * grid[m];
            a[m] *= pref * omega * omega * spectra_qcf_ir_factor(qcf, grid[m], temperature_k);
        }
    }
    if (!nu) free(grid);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Raman [RAMAN]                                                             */

int spectra_raman(const double *alpha, size_t n, double dt_fs, double temperature_k,
                  double excitation_nm, int window, double *nu, double *iso, double *aniso,
                  double *total) {
    if (!alpha || !iso || !aniso || !total || n == 0 || !isfinite(temperature_k) ||
        !isfinite(excitation_nm))
        return SPECTRA_EINVAL;
    if (n > SIZE_MAX / 9 / sizeof(double)) return SPECTRA_ENOMEM;
    double *am = malloc(n * sizeof *am), *beta = malloc(9 * n * sizeof *beta);
    double *grid = nu ? nu : malloc((n + 1) * sizeof *grid);
    int rc = SPECTRA_ENOMEM;
    if (!am || !beta || !grid) goto done;
    for (size_t t = 0; t < n; t++) {
        const double *A = alpha + 9 * t;
        double sym[9];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) sym[3 * i + j] = 0.5 * (A[3 * i + j] + A[3 * j + i]);
        double mean = (sym[0] + sym[4] + sym[8]) / 3.0; /* a = tr alpha / 3 */
        am[t] = mean;
        for (int k = 0; k < 9; k++) /* diagonal: k = 0, 4, 8 */
            beta[9 * t + k] = sym[k] - ((k % 4 == 0) ? mean : 0.0);
    }
    if ((rc = spectra_density(am, n, 1, dt_fs, window, grid, iso)) != SPECTRA_OK) goto done;
    if ((rc = spectra_density(beta, n, 9, dt_fs, window, grid, aniso)) != SPECTRA_OK) goto done;
    const double nu0 = excitation_nm > 0 ? 1e7 / excitation_nm : 0; /* cm^-1 */
    for (size_t m = 0; m <= n; m++) {
        double f = 1.0;
        if (temperature_k > 0) { /* B = x / (1 - e^-x) */
            double x = grid[m] / (SPECTRA_KB_CM_PER_K * temperature_k);
            if (x > 0) f = x / -expm1(-x);
        }
        if (nu0 > 0) { /* E = ((nu0 - nu) / nu0)^4, 0 beyond nu0 */
            double e = grid[m] < nu0 ? (nu0 - grid[m]) / nu0 : 0.0;
            f *= e * e * e * e;
        }
        iso[m] *= f;
        aniso[m] *= f * (2.0 / 15.0);
        total[m] = iso[m] + 1.75 * aniso[m];
    }
    rc = SPECTRA_OK;
done:
    free(am); free(beta);
    if (!nu) free(grid);
    return rc;
}
