/* SPDX-License-Identifier: MIT */
/* spectra.h - vibrational spectra from molecular-dynamics time series:
 * our own FFT (radix 2 and Bluestein, any length), autocorrelation by
 * zero-padded FFT, lag windows, the IR line shape from a dipole time series
 * and Raman isotropic / anisotropic spectra from a polarizability time series.
 *
 * Vendoring: copy spectra.c and spectra.h. C11, libc and libm. The library
 * never prints, exits, reads files or keeps global state; functions that can
 * fail return SPECTRA_OK (0) or a positive SPECTRA_E* code
 * (spectra_strerror()).
 *
 * UNITS (stated once, used everywhere):
 *   time          fs; the time step dt of a series in fs
 *   wavenumber    cm^-1:  nu~ = f / c  with f in fs^-1 and
 *                 c = SPECTRA_C_CM_PER_FS = 2.99792458e-5 cm/fs,
 *                 so nu~[cm^-1] = f[fs^-1] / 2.99792458e-5
 *   frequency     THz = 1e-3 fs^-1;  1 THz = 33.35640952 cm^-1
 *   angular freq  omega = 2 pi c nu~ (rad/fs)
 * Resolution of a series of N frames: 1/(N dt) (spectra_resolution_cm), the
 * grid spacing of the spectra below is half of it (lags padded to 2N).
 *
 * SOURCES of the equations (named again where they are used):
 *   [FFT]   Cooley & Tukey, Math. Comp. 19, 297 (1965) (radix 2); Bluestein,
 *           IEEE Trans. Audio Electroacoust. 18, 451 (1970) (chirp z, any N).
 *   [WK]    Wiener-Khinchin: the autocorrelation of a zero-padded series is
 *           the inverse FFT of |FFT|^2 when the padded length is >= 2N-1.
 *   [QCF]   R. Ramirez, T. Lopez-Ciudad, P. Kumar P, D. Marx, J. Chem. Phys.
 *           121, 3973 (2004), doi:10.1063/1.1774986: quantum correction
 *           factors Q(omega) that turn a classical line shape into an
 *           approximate quantum one (standard, harmonic, Schofield).
 *   [IR]    Absorption cross section from the dipole autocorrelation, e.g.
 *           McQuarrie, Statistical Mechanics (1976), ch. 21; in the harmonic
 *           limit its band integral is the harmonic IR intensity
 *           A = N_A / (12 eps0 c^2) |d mu / d Q|^2 (km/mol), as printed by
 *           xtb --hess and other quantum chemistry codes.
 *   [RAMAN] Orientational averages of the polarizability tensor (Long, The
 *           Raman Effect (2002), ch. 5): with a = tr(alpha)/3 and the
 *           traceless beta = alpha - a 1, gamma^2 = (3/2) tr(beta beta):
 *           parallel-polarised (VV) <alpha_zz^2> = a^2 + (4/45) gamma^2,
 *           depolarised (VH) <alpha_zx^2> = gamma^2 / 15, natural light at
 *           90 degrees VV + VH = (45 a^2 + 7 gamma^2) / 45 (the "Raman
 *           activity" combination); the time-correlation form is e.g.
 *           M. Thomas, M. Brehm, R. Fligg, P. Voehringer, B. Kirchner,
 *           Phys. Chem. Chem. Phys. 15, 6608 (2013).
 */
#ifndef SPECTRA_H
#define SPECTRA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SPECTRA_OK = 0,
    SPECTRA_EINVAL = 1, /* bad argument: NULL, size 0, dt <= 0, non-finite input, unknown option */
    SPECTRA_ENOMEM = 2  /* allocation failed or a size would overflow */
};
const char *spectra_strerror(int code);

/* --- units ---------------------------------------------------------------- */
#define SPECTRA_C_CM_PER_FS 2.99792458e-5 /* speed of light, cm/fs (exact SI value) */
double spectra_fs_inv_to_cm(double f_per_fs); /* f / c */
double spectra_cm_to_thz(double nu_cm);       /* nu~ c * 1e3 */
double spectra_thz_to_cm(double thz);
/* Resolution 1/(N dt) of a series of n frames dt fs apart, in cm^-1. */
double spectra_resolution_cm(size_t n, double dt_fs);

/* --- FFT ------------------------------------------------------------------ */
typedef struct { double re, im; } spectra_cplx;

/* The discrete Fourier transform
 *     X_k = sum_{j=0}^{n-1} x_j exp(sign * 2 pi i j k / n),  k = 0..n-1,
 * sign = -1 (forward) or +1 (backward, NOT divided by n).
 * spectra_dft: the plain O(n^2) sum (the reference; out must not alias in).
 * spectra_fft: in place, any n >= 1: radix-2 Cooley-Tukey when n is a power
 * of two, Bluestein's chirp-z otherwise (allocates 3 arrays of a power of two
 * >= 2n-1). Agrees with spectra_dft to ~1e-15 relative (tests/test_spectra.c
 * checks 1e-12 for n = 1..64 and primes). Twiddle factors are computed
 * directly from cos/sin of exactly reduced angles, never by recurrence. */
int spectra_dft(const spectra_cplx *in, spectra_cplx *out, size_t n, int sign);
int spectra_fft(spectra_cplx *x, size_t n, int sign);

/* --- autocorrelation ------------------------------------------------------ */
/* Sum autocorrelation of a real series x [n] (element j at x[j*stride]):
 *     r_k = sum_{j=0}^{n-1-k} x_j x_{j+k},   k = 0..n-1  (out r [n]),
 * no circular wrap. _direct: the O(n^2) sum (reference). spectra_autocorr:
 * by [WK] with zero padding to a power of two >= 2n-1 (O(n log n)). */
int spectra_autocorr_direct(const double *x, size_t n, size_t stride, double *r);
int spectra_autocorr(const double *x, size_t n, size_t stride, double *r);

/* --- windows -------------------------------------------------------------- */
/* Lag windows applied to the autocorrelation before its Fourier transform:
 * w(k) for lags k = 0..n-1, w(0) = 1, falling to 0 at k = n:
 *   none      w = 1
 *   hann      w = 0.5 (1 + cos(pi k / n))          (half of a Hann window)
 *   blackman  w = 0.42 + 0.5 cos(pi k/n) + 0.08 cos(2 pi k/n)
 * (Blackman & Tukey, The Measurement of Power Spectra (1958).) */
typedef enum { SPECTRA_WINDOW_NONE = 0, SPECTRA_WINDOW_HANN = 1, SPECTRA_WINDOW_BLACKMAN = 2 } spectra_window;
const char *spectra_window_name(int window);   /* "none", "hann", "blackman" */
int spectra_window_parse(const char *name);    /* -1 if unknown */
double spectra_window_value(int window, size_t k, size_t n);

/* --- spectral density ----------------------------------------------------- */
/* The spectral density of a mean-removed series set:
 *   C(k) = 1/(N-k) sum_c sum_{j} dx_c(j) dx_c(j+k)       (unbiased, summed over
 *          the ncomp components c, dx = x - mean(x))
 *   S(nu~_m) = c dt sum_{k=-(N-1)}^{N-1} w(|k|) C(|k|) cos(2 pi m k / (2N))
 * on the grid nu~_m = m / (2 N dt c), m = 0..N (cm^-1). Normalisation: the
 * two-sided integral int S dnu~ over (-inf, inf) equals C(0) = <dx . dx>
 * (Parseval), so S has units of x^2 per cm^-1.
 * x: [N][ncomp] row-major (frame-major, as read from a trajectory).
 * out: nu [N+1] cm^-1 (may be NULL), s [N+1]. */
int spectra_density(const double *x, size_t n, int ncomp, double dt_fs, int window,
                    double *nu, double *s);

/* --- quantum correction factors [QCF] --------------------------------------- */
/* x = hbar omega / (k T). The quantum line shape is approximated as
 * Q(omega) times the classical one; Ramirez et al. 2004 Eqs. for:
 *   none       Q = 1
 *   harmonic   Q = x / (1 - exp(-x))        (fulfils the fluctuation-dissipation
 *                                            theorem; the default)
 *   standard   Q = 2 / (1 + exp(-x))
 *   schofield  Q = exp(x / 2)
 * spectra_ir below multiplies the classical IR cross section by
 *   F = Q(x) (1 - exp(-x)) / x,
 * the ratio of the quantum absorption formula alpha n ~ omega (1 - exp(-x))
 * Q I_cl to its classical limit beta omega^2 I_cl. So harmonic gives F = 1:
 * the plain classical omega^2 |FT mu|^2 spectrum IS the harmonic-corrected
 * one; none gives (1 - e^-x)/x, standard 2 tanh(x/2)/x, schofield 2 sinh(x/2)/x. */
typedef enum { SPECTRA_QCF_NONE = 0, SPECTRA_QCF_HARMONIC = 1, SPECTRA_QCF_STANDARD = 2,
               SPECTRA_QCF_SCHOFIELD = 3 } spectra_qcf;
const char *spectra_qcf_name(int qcf);
int spectra_qcf_parse(const char *name); /* -1 if unknown */
double spectra_qcf_ir_factor(int qcf, double nu_cm, double temperature_k);

/* Physical constants (CODATA 2018, exact where SI fixes them). */
#define SPECTRA_KB_CM_PER_K 0.6950348004 /* k_B / (h c), cm^-1 per K: x = nu~ / (0.695... T) */
#define SPECTRA_DEBYE_PER_AU 2.541746473   /* e*bohr in debye */
#define SPECTRA_EA_PER_AU 0.529177210903   /* e*bohr in e*angstrom */
#define SPECTRA_A3_PER_AU 0.1481847114806  /* bohr^3 in angstrom^3 */

/* --- IR ------------------------------------------------------------------- */
/* IR absorption line shape of a dipole series mu [N][3] in e*bohr, frames
 * dt fs apart, at temperature T (K). With the classical cross section [IR]
 *   sigma(omega) = (pi beta / (3 c eps0)) omega^2 I_cl(omega)
 * written per mole and per cm^-1 of wavenumber:
 *   A(nu~) = F(nu~) * N_A / (6 eps0 c^2 k T) * omega^2 S_mu(nu~)
 * (S_mu from spectra_density, omega = 2 pi c nu~), in km mol^-1 per cm^-1:
 * its integral over a band (cm^-1) is the band's IR intensity in km/mol, the
 * harmonic value for a harmonic, thermalised mode (tests/test_spectra.c). The
 * omega^2 factor makes this the Fourier transform of the dipole-DERIVATIVE
 * autocorrelation, without a finite difference. F: spectra_qcf_ir_factor.
 * out: nu [N+1] (may be NULL), a [N+1]. */
int spectra_ir(const double *mu_au, size_t n, double dt_fs, double temperature_k, int window,
               int qcf, double *nu, double *a);

/* --- Raman ---------------------------------------------------------------- */
/* Raman spectra of a polarizability series alpha [N][9] (row-major 3x3, any
 * unit U, symmetrised here as (alpha + alpha^T)/2), frames dt fs apart, per
 * [RAMAN]: a(t) = tr alpha / 3, beta(t) = alpha - a 1,
 *   iso(nu~)   = B E S_a(nu~)                       (S of the series a)
 *   aniso(nu~) = B E (2/15) S_beta(nu~)             (S of the 9 beta components:
 *                                                    sum_ij beta_ij beta_ij = tr beta beta)
 *   total      = iso + (7/4) aniso
 * so iso + aniso is the parallel-polarised (VV) spectrum, (3/4) aniso the
 * depolarised (VH) one and total = VV + VH is proportional to 45 a'^2 +
 * 7 gamma'^2 per mode (the Raman activity). Units U^2 per cm^-1.
 * Stokes factors (1 when switched off, see below):
 *   B = x / (1 - exp(-x)), x = hbar omega / kT: the Bose factor n + 1 of the
 *       Stokes line times x, the ratio of the quantum (hbar/(2 omega)) to the
 *       classical (kT/omega^2) squared amplitude of a mode (this is the
 *       harmonic correction [QCF]); temperature_k <= 0 switches it off;
 *   E = ((nu0 - nu~) / nu0)^4 with nu0 = 1e7 / lambda_nm the excitation
 *       wavenumber; excitation_nm <= 0 switches it off.
 * out: nu [N+1] (may be NULL), iso, aniso, total [N+1] each. */
int spectra_raman(const double *alpha, size_t n, double dt_fs, double temperature_k,
                  double excitation_nm, int window, double *nu, double *iso, double *aniso,
                  double *total);

#ifdef __cplusplus
}
#endif
#endif
