/* eann.c - embedded atom neural network for tensorial properties (see eann.h).
 *
 * Everything here follows ../shared/eann_nma_published/FORMAT.md ("FORMAT.md
 * sect. N") and the EANN chapter ("EANN chapter Eq. N"). Pure C11 + libm.
 * Summation orders are fixed in the source (some sums use four explicit
 * partial sums so that they vectorise without the compiler reordering
 * anything); build with -ffp-contract=off and never -ffast-math.
 */
#include "eann.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EANN_PI 3.14159265358979323846

/* gcc and clang on x86-64 also compile AVX2 copies of the hot loops (see
 * "AVX2 copies of the hot loops" below); v4d is a GNU C vector of 4 doubles. */
#if defined(__GNUC__) && defined(__x86_64__)
#define EANN_HAVE_AVX2 1
#define EANN_AVX2 __attribute__((target("avx2")))
#define EANN_AVX2_INLINE static inline __attribute__((always_inline, target("avx2")))
typedef double v4d __attribute__((vector_size(32)));
typedef uint64_t v4u __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));
#else
#define EANN_HAVE_AVX2 0
#endif

/* The loops that have both copies, each called with simd = EANN_SIMD_PORTABLE
 * or EANN_SIMD_AVX2 (a workspace's `simd`); defined after the AVX2 copies. */
static void gemm_sel(int simd, int n, int nk, int nj, const double *x, const double *B,
                     const double *b, double *z);
static void dw_sel(int simd, int n, int nin, int nout, const double *x, const double *dz,
                   double *dw);
static void exp_sel(int simd, int n, const double *x, double *y);
static void sum_atw_sel(int simd, int np, int M, int K, const double *A, const double *W,
                        double *S);

const char *eann_strerror(int code) {
    switch (code) {
    case EANN_OK: return "success";
    case EANN_EINVAL: return "invalid argument";
    case EANN_ENOMEM: return "out of memory";
    case EANN_ESPECIES: return "element not in the model";
    case EANN_EFORMAT: return "damaged model text";
    case EANN_ESPEC: return "inconsistent model specification";
    default: return "unknown error";
    }
}

const char *eann_kind_name(int kind) {
    switch (kind) {
    case EANN_DIPOLE: return "dipole";
    case EANN_TDM: return "tdm";
    case EANN_POLARIZABILITY: return "polarizability";
    default: return NULL;
    }
}

int eann_kind_outputs(int kind) {
    return kind == EANN_POLARIZABILITY ? 9 : (kind == EANN_DIPOLE || kind == EANN_TDM) ? 3 : 0;
}

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */
/* ------------------------------------------------------------------------ */

static void msgf(char *msg, size_t len, const char *fmt, ...) {
    if (!msg || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
}

/* y[0..n) += s * x[0..n); unrolled by four so that gcc -O2 vectorises it.
 * Each y[i] gets exactly one add, so the order of every sum is unchanged. */
static inline void axpy(int n, double s, const double *restrict x, double *restrict y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        y[i] += s * x[i];
        y[i + 1] += s * x[i + 1];
        y[i + 2] += s * x[i + 2];
        y[i + 3] += s * x[i + 3];
    }
    for (; i < n; i++) y[i] += s * x[i];
}

/* Fixed-order sum with four partial sums: ((s0+s1)+(s2+s3)) + tail. */
static inline double sum4(int n, const double *x) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    double s = (s0 + s1) + (s2 + s3);
    for (; i < n; i++) s += x[i];
    return s;
}

static inline double dot4(int n, const double *x, const double *y) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    double s = (s0 + s1) + (s2 + s3);
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

/* ------------------------------------------------------------------------ */
/* exp of an array                                                           */
/* ------------------------------------------------------------------------ */

/* 2^(j/32), j = 0..31, correctly rounded (computed with 60-digit decimals). */
static const double exp_t32[32] = {
    0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
    0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
    0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
    0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
    0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
    0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
    0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
    0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0};

/* exp(x) for |x| <= 708: x = (32 k + j) ln2/32 + r with |r| <= ln2/64
 * (kk = 32 k + j rounded to nearest by the 1.5*2^52 shift, ln2/32 split in
 * a 33-bit head, exact for |kk| < 2^20, and a tail), exp(r) - 1 by its
 * Taylor polynomial to r^6 (truncation < 4e-18), exp(x) = 2^k 2^(j/32)
 * (1 + q) with 2^k built from the exponent bits. Within 1 ulp of a correctly
 * rounded exp (tests compare with libm). Plain operations only, so the same
 * bits with every compiler and C library. */
static inline double exp_core(double x) {
    const double s32 = 0x1.71547652b82fep5, shift = 0x1.8p52;
    const double h = 0x1.62e42fef00000p-6, l = 0x1.473de6af278edp-39; /* ln2/32 = h + l */
    double kd = x * s32 + shift;
    uint64_t b;
    memcpy(&b, &kd, sizeof b); /* low bits: kk in two's complement */
    kd -= shift;
    double r = (x - kd * h) - kd * l;
    double q = r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720))))));
    double t = exp_t32[b & 31];
    uint64_t e = ((b >> 5) + 1023) << 52; /* 2^floor(kk/32) */
    double sc;
    memcpy(&sc, &e, sizeof sc);
    return (t + t * q) * sc;
}

static inline double exp_one(double x) {
    return (x >= -708.0 && x <= 708.0) ? exp_core(x) : exp(x);
}

void eann_exp_n(int n, const double *x, double *y) {
    /* Each y[i] depends on x[i] only: exp_core for |x| <= 708, libm exp
     * beyond (overflow, subnormal results, NaN). x may equal y. */
    int bad = 0; /* any x outside [-708, 708] or NaN; four independent flags */
    {
        int b0 = 0, b1 = 0, b2 = 0, b3 = 0, i = 0;
        for (; i + 4 <= n; i += 4) {
            b0 |= !(fabs(x[i]) <= 708.0);
            b1 |= !(fabs(x[i + 1]) <= 708.0);
            b2 |= !(fabs(x[i + 2]) <= 708.0);
            b3 |= !(fabs(x[i + 3]) <= 708.0);
        }
        for (; i < n; i++) b0 |= !(fabs(x[i]) <= 708.0);
        bad = b0 | b1 | b2 | b3;
    }
    if (bad) {
        for (int i = 0; i < n; i++) y[i] = exp_one(x[i]);
        return;
    }
    int i = 0;
    /* four at a time: gcc pairs the independent evaluations into SSE registers */
    for (; i + 4 <= n; i += 4) {
        double a = exp_core(x[i]), b = exp_core(x[i + 1]);
        double c = exp_core(x[i + 2]), d = exp_core(x[i + 3]);
        y[i] = a;
        y[i + 1] = b;
        y[i + 2] = c;
        y[i + 3] = d;
    }
    for (; i < n; i++) y[i] = exp_core(x[i]);
}

/* ------------------------------------------------------------------------ */
/* building blocks: linear, LayerNorm, activation (FORMAT.md 4.6)            */
/* ------------------------------------------------------------------------ */

/* The matrix kernel of the linear layers:
 *     z[a][j] = b[j] + sum_{c = 0..nk-1} x[a][c] B[c][j]   (b == NULL: 0 + ...)
 * for a < n, j < nj; x [n][nk], B [nk][nj], z [n][nj]; every sum in the
 * order of c. Blocks of 2 rows x 8 (then 4) columns are kept in scalars
 * that gcc's SLP vectoriser pairs into SSE registers, so the sums stay in
 * registers instead of memory; the last columns go one at a time. */
static void block8(int two, int nk, int nj, const double *restrict x0, const double *restrict x1,
                   const double *restrict B, const double *restrict b, double *restrict z0,
                   double *restrict z1) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    if (b) { a0 = b[0]; a1 = b[1]; a2 = b[2]; a3 = b[3]; a4 = b[4]; a5 = b[5]; a6 = b[6]; a7 = b[7]; }
    if (two) {
        double c0 = a0, c1 = a1, c2 = a2, c3 = a3, c4 = a4, c5 = a5, c6 = a6, c7 = a7;
        for (int c = 0; c < nk; c++) {
            const double *w = B + (size_t)c * nj;
            double p = x0[c], q = x1[c];
            a0 += p * w[0]; a1 += p * w[1]; a2 += p * w[2]; a3 += p * w[3];
            a4 += p * w[4]; a5 += p * w[5]; a6 += p * w[6]; a7 += p * w[7];
            c0 += q * w[0]; c1 += q * w[1]; c2 += q * w[2]; c3 += q * w[3];
            c4 += q * w[4]; c5 += q * w[5]; c6 += q * w[6]; c7 += q * w[7];
        }
        z1[0] = c0; z1[1] = c1; z1[2] = c2; z1[3] = c3;
        z1[4] = c4; z1[5] = c5; z1[6] = c6; z1[7] = c7;
    } else {
        for (int c = 0; c < nk; c++) {
            const double *w = B + (size_t)c * nj;
            double p = x0[c];
            a0 += p * w[0]; a1 += p * w[1]; a2 += p * w[2]; a3 += p * w[3];
            a4 += p * w[4]; a5 += p * w[5]; a6 += p * w[6]; a7 += p * w[7];
        }
    }
    z0[0] = a0; z0[1] = a1; z0[2] = a2; z0[3] = a3;
    z0[4] = a4; z0[5] = a5; z0[6] = a6; z0[7] = a7;
}

static void block4(int two, int nk, int nj, const double *restrict x0, const double *restrict x1,
                   const double *restrict B, const double *restrict b, double *restrict z0,
                   double *restrict z1) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (b) { a0 = b[0]; a1 = b[1]; a2 = b[2]; a3 = b[3]; }
    double c0 = a0, c1 = a1, c2 = a2, c3 = a3;
    for (int c = 0; c < nk; c++) {
        const double *w = B + (size_t)c * nj;
        double p = x0[c], q = two ? x1[c] : 0.0;
        a0 += p * w[0]; a1 += p * w[1]; a2 += p * w[2]; a3 += p * w[3];
        c0 += q * w[0]; c1 += q * w[1]; c2 += q * w[2]; c3 += q * w[3];
    }
    z0[0] = a0; z0[1] = a1; z0[2] = a2; z0[3] = a3;
    if (two) { z1[0] = c0; z1[1] = c1; z1[2] = c2; z1[3] = c3; }
}

static void gemm_rows(int n, int nk, int nj, const double *x, const double *B, const double *b,
                      double *z) {
    int j8 = nj - nj % 8, j4 = nj - nj % 4;
    for (int a = 0; a < n; a += 2) {
        int two = a + 1 < n;
        const double *xa = x + (size_t)a * nk;
        double *za = z + (size_t)a * nj;
        for (int j = 0; j < j8; j += 8)
            block8(two, nk, nj, xa, xa + nk, B + j, b ? b + j : NULL, za + j, za + nj + j);
        if (j8 < j4)
            block4(two, nk, nj, xa, xa + nk, B + j8, b ? b + j8 : NULL, za + j8, za + nj + j8);
        for (int r = 0; r <= two; r++)
            for (int j = j4; j < nj; j++) {
                double s = b ? b[j] : 0.0;
                for (int c = 0; c < nk; c++) s += xa[(size_t)r * nk + c] * B[(size_t)c * nj + j];
                za[(size_t)r * nj + j] = s;
            }
    }
}

void eann_linear_forward(int n, int nin, int nout, const double *x, const double *wt,
                         const double *b, double *z) {
    /* z[a][o] = b[o] + sum_{c = 0..nin-1} x[a][c] W[o][c], in this order of c */
    gemm_rows(n, nin, nout, x, wt, b, z);
}

/* eann_linear_backward with the chosen copy of the matrix loops */
static void linear_backward(int simd, int n, int nin, int nout, const double *x,
                            const double *w, const double *dz, double *dx, double *dw,
                            double *db) {
    /* dx[a][c] = 0 + sum_{o = 0..nout-1} dz[a][o] W[o][c] */
    if (dx) gemm_sel(simd, n, nout, nin, dz, w, NULL, dx);
    /* dw[o][c] += dz[a][o] x[a][c], a = 0, 1, ... */
    if (dw) dw_sel(simd, n, nin, nout, x, dz, dw);
    if (db) {
        for (int a = 0; a < n; a++)
            for (int o = 0; o < nout; o++) db[o] += dz[(size_t)a * nout + o];
    }
}

void eann_linear_backward(int n, int nin, int nout, const double *x, const double *w,
                          const double *dz, double *dx, double *dw, double *db) {
    linear_backward(EANN_SIMD_PORTABLE, n, nin, nout, x, w, dz, dx, dw, db);
}

void eann_layernorm_forward(int n, int c, const double *z, const double *g, const double *b,
                            double eps, double *zhat, double *rstd, double *y) {
    for (int a = 0; a < n; a++) {
        const double *zr = z + (size_t)a * c;
        double *hr = zhat + (size_t)a * c, *yr = y + (size_t)a * c;
        double mu = sum4(c, zr) / c;
        for (int i = 0; i < c; i++) hr[i] = zr[i] - mu;
        double var = dot4(c, hr, hr) / c; /* biased variance */
        double rs = 1.0 / sqrt(var + eps);
        rstd[a] = rs;
        for (int i = 0; i < c; i++) {
            hr[i] *= rs;
            yr[i] = hr[i] * g[i] + b[i];
        }
    }
}

void eann_layernorm_backward(int n, int c, const double *zhat, const double *rstd,
                             const double *g, const double *dy, double *dz, double *dg,
                             double *db) {
    /* G = g*dy; dz = (G - mean(G) - zhat mean(G zhat)) rstd (FORMAT.md 5). */
    for (int a = 0; a < n; a++) {
        const double *hr = zhat + (size_t)a * c, *dyr = dy + (size_t)a * c;
        double *dzr = dz + (size_t)a * c;
        if (dg)
            for (int i = 0; i < c; i++) dg[i] += dyr[i] * hr[i];
        if (db)
            for (int i = 0; i < c; i++) db[i] += dyr[i];
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        int i = 0;
        for (; i + 4 <= c; i += 4) {
            double G0 = g[i] * dyr[i], G1 = g[i + 1] * dyr[i + 1];
            double G2 = g[i + 2] * dyr[i + 2], G3 = g[i + 3] * dyr[i + 3];
            s0 += G0; s1 += G1; s2 += G2; s3 += G3;
            t0 += G0 * hr[i]; t1 += G1 * hr[i + 1]; t2 += G2 * hr[i + 2]; t3 += G3 * hr[i + 3];
        }
        double sg = (s0 + s1) + (s2 + s3), sgh = (t0 + t1) + (t2 + t3);
        for (; i < c; i++) {
            double G = g[i] * dyr[i];
            sg += G;
            sgh += G * hr[i];
        }
        double mg = sg / c, mgh = sgh / c, rs = rstd[a];
        for (i = 0; i < c; i++) dzr[i] = (g[i] * dyr[i] - mg - hr[i] * mgh) * rs;
    }
}

void eann_act_forward(int n, int c, const double *y, const double *alpha, const double *beta,
                      double *sig, double *a) {
    /* a = alpha * (beta*y) * sigmoid(beta*y) (FORMAT.md sect. 2, `activation`) */
    for (int r = 0; r < n; r++) {
        const double *yr = y + (size_t)r * c;
        double *sr = sig + (size_t)r * c, *ar = a + (size_t)r * c;
        for (int i = 0; i < c; i++) sr[i] = -(beta[i] * yr[i]);
        eann_exp_n(c, sr, sr);
        for (int i = 0; i < c; i++) {
            double t = beta[i] * yr[i];
            double s = 1.0 / (1.0 + sr[i]);
            sr[i] = s;
            ar[i] = alpha[i] * t * s;
        }
    }
}

void eann_act_backward(int n, int c, const double *y, const double *sig, const double *alpha,
                       const double *beta, const double *da, double *dy, double *dalpha,
                       double *dbeta) {
    /* da/dt = alpha (sig + t sig (1-sig)), t = beta y; da/dy = beta da/dt,
     * da/dbeta = y da/dt, da/dalpha = t sig. */
    for (int r = 0; r < n; r++) {
        const double *yr = y + (size_t)r * c, *sr = sig + (size_t)r * c;
        const double *dar = da + (size_t)r * c;
        double *dyr = dy + (size_t)r * c;
        for (int i = 0; i < c; i++) {
            double t = beta[i] * yr[i], s = sr[i];
            double dadt = alpha[i] * (s + t * s * (1.0 - s));
            double d = dar[i];
            if (dalpha) dalpha[i] += d * (t * s);
            if (dbeta) dbeta[i] += d * (yr[i] * dadt);
            dyr[i] = d * (beta[i] * dadt);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* model layout                                                              */
/* ------------------------------------------------------------------------ */

const eann_layer *eann_layer_of(const eann_model *m, int t, int s, int h) {
    return &m->layer[m->layer_base[t] + s * (m->spec.net[t].nhidden + 1) + h];
}

/* Element symbols H..Rn (Z = 1..86), the table of xyz.c repeated here so
 * that the library does not depend on xyz.c. */
static const char *const element_symbols[86] = {
    "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",
    "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh",
    "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
    "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re",
    "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn"};

/* 1 if s is one of the element symbols H..Rn (exact case: "O", "Cl"). */
static int valid_symbol(const char *s) {
    for (int z = 0; z < 86; z++)
        if (!strcmp(element_symbols[z], s)) return 1;
    return 0;
}

static const char *const kind_roles[4][3] = {
    {NULL, NULL, NULL}, {"charge", NULL, NULL}, {"tdm3", NULL, NULL},
    {"grad_sym", "grad_outer", "trace"}};

/* Checks net t of a spec whose kind, nipsin and nwave are valid (role,
 * depth, sizes, epsilon); returns 0 or EANN_ESPEC with a reason in msg.
 * Also used by the parser on each `net` line, so that its message names
 * that line. */
static int check_net(const eann_spec *sp, int t, char *msg, size_t msglen) {
    int nout = sp->kind == EANN_TDM ? 3 : 1;
    const eann_net_spec *ns = &sp->net[t];
    if (strcmp(ns->role, kind_roles[sp->kind][t]))
        return msgf(msg, msglen, "net %d of kind %s must have role %s, got '%s'", t,
                    eann_kind_name(sp->kind), kind_roles[sp->kind][t], ns->role), EANN_ESPEC;
    if (ns->nhidden < 0 || ns->nhidden > EANN_MAX_HIDDEN)
        return msgf(msg, msglen, "net %d: nhidden %d not in 0..%d", t, ns->nhidden,
                    EANN_MAX_HIDDEN), EANN_ESPEC;
    if (ns->sizes[0] != sp->nipsin * sp->nwave)
        return msgf(msg, msglen, "net %d: input size %d != ndensity %d", t, ns->sizes[0],
                    sp->nipsin * sp->nwave), EANN_ESPEC;
    for (int h = 1; h <= ns->nhidden; h++)
        if (ns->sizes[h] < 1 || ns->sizes[h] > 65536)
            return msgf(msg, msglen, "net %d: width %d not in 1..65536", t, ns->sizes[h]),
                   EANN_ESPEC;
    if (ns->sizes[ns->nhidden + 1] != nout)
        return msgf(msg, msglen, "net %d (role %s) must have %d output(s), got %d", t, ns->role,
                    nout, ns->sizes[ns->nhidden + 1]), EANN_ESPEC;
    if (!(ns->ln_eps > 0) || !isfinite(ns->ln_eps))
        return msgf(msg, msglen, "net %d: layernorm_eps must be positive", t), EANN_ESPEC;
    if (!isfinite(ns->initpot)) return msgf(msg, msglen, "net %d: initpot not finite", t), EANN_ESPEC;
    return EANN_OK;
}

/* Numbers of arrays, of values (theta) and of transposed weights (wt) that
 * a spec declares (FORMAT.md sect. 3: A = 3 + T*S*(6H+2)), for a spec
 * within the limits of check_spec/check_net. In 64 bits these cannot
 * overflow: one layer has at most 65536 * 65536 + 5 * 65536 values, a net
 * at most 33 such layers per species, times S <= 16 and T <= 8 nets: below
 * 2^48. */
static void spec_counts(const eann_spec *sp, uint64_t *narr, uint64_t *ntheta, uint64_t *nwt) {
    uint64_t S = (uint64_t)sp->nspecies, A = 3, th = 3 * S * (uint64_t)sp->nwave, wt = 0;
    for (int t = 0; t < sp->nnets; t++) {
        const eann_net_spec *ns = &sp->net[t];
        A += S * (uint64_t)(6 * ns->nhidden + 2);
        for (int h = 0; h <= ns->nhidden; h++) {
            uint64_t nin = (uint64_t)ns->sizes[h], no = (uint64_t)ns->sizes[h + 1];
            /* linear weight and bias; LayerNorm and activation (4 per neuron) */
            th += S * (no * nin + no + (h < ns->nhidden ? 4 * no : 0));
            wt += S * no * nin;
        }
    }
    *narr = A;
    *ntheta = th;
    *nwt = wt;
}

/* Checks a spec; returns 0 or EANN_ESPEC with a reason in msg. */
static int check_spec(const eann_spec *sp, char *msg, size_t msglen) {
    int nnets = sp->kind == EANN_POLARIZABILITY ? 3 : 1;
    if (!eann_kind_name(sp->kind)) return msgf(msg, msglen, "unknown kind %d", sp->kind), EANN_ESPEC;
    if (sp->nspecies < 1 || sp->nspecies > EANN_MAX_SPECIES)
        return msgf(msg, msglen, "nspecies %d not in 1..%d", sp->nspecies, EANN_MAX_SPECIES), EANN_ESPEC;
    for (int s = 0; s < sp->nspecies; s++) {
        if (!memchr(sp->species[s], '\0', sizeof sp->species[s]))
            return msgf(msg, msglen, "species %d: symbol not terminated", s), EANN_ESPEC;
        if (!valid_symbol(sp->species[s]))
            return msgf(msg, msglen, "'%s' is not an element symbol (H..Rn)", sp->species[s]),
                   EANN_ESPEC;
        for (int q = 0; q < s; q++)
            if (!strcmp(sp->species[q], sp->species[s]))
                return msgf(msg, msglen, "species '%s' listed twice", sp->species[s]), EANN_ESPEC;
        if (!(sp->mass[s] > 0) || !isfinite(sp->mass[s]))
            return msgf(msg, msglen, "mass of '%s' must be positive", sp->species[s]), EANN_ESPEC;
    }
    if (!(sp->cutoff > 0) || !isfinite(sp->cutoff))
        return msgf(msg, msglen, "cutoff must be positive"), EANN_ESPEC;
    if (!(sp->min_distance >= 0) || !(sp->min_distance < sp->cutoff))
        return msgf(msg, msglen, "min_distance must be in [0, cutoff)"), EANN_ESPEC;
    if (sp->nipsin < 1 || sp->nipsin > EANN_MAX_NIPSIN)
        return msgf(msg, msglen, "nipsin %d not in 1..%d", sp->nipsin, EANN_MAX_NIPSIN), EANN_ESPEC;
    if (sp->nwave < 1 || sp->nwave > 4096)
        return msgf(msg, msglen, "nwave %d not in 1..4096", sp->nwave), EANN_ESPEC;
    if (sp->nnets != nnets)
        return msgf(msg, msglen, "kind %s needs %d net(s), got %d", eann_kind_name(sp->kind), nnets,
                    sp->nnets), EANN_ESPEC;
    for (int t = 0; t < sp->nnets; t++) {
        int rc = check_net(sp, t, msg, msglen);
        if (rc) return rc;
    }
    return EANN_OK;
}

static void add_array(eann_model *m, const char *name, int d0, int d1, size_t *off) {
    eann_array *a = &m->arrays[m->narrays++];
    snprintf(a->name, sizeof a->name, "%s", name);
    a->ndim = d1 > 0 ? 2 : 1;
    a->dim[0] = d0;
    a->dim[1] = d1 > 0 ? d1 : 0;
    a->n = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    a->off = *off;
    *off += a->n;
}

int eann_model_new(const eann_spec *spec, eann_model **out, char *msg, size_t msglen) {
    if (!spec || !out) return EANN_EINVAL;
    *out = NULL;
    if (msg && msglen) msg[0] = '\0';
    int rc = check_spec(spec, msg, msglen);
    if (rc) return rc;
    /* every size below fits a size_t and its byte count too (32-bit hosts) */
    uint64_t narr64, ntheta64, nwt64;
    spec_counts(spec, &narr64, &ntheta64, &nwt64);
    if (ntheta64 > SIZE_MAX / sizeof(double) || nwt64 > SIZE_MAX / sizeof(double) ||
        narr64 > SIZE_MAX / sizeof(eann_array))
        return msgf(msg, msglen, "network of %.3g values is too large", (double)ntheta64),
               EANN_ENOMEM;
    eann_model *m = calloc(1, sizeof *m);
    if (!m) return EANN_ENOMEM;
    m->spec = *spec;
    const int S = spec->nspecies, K = spec->nwave, P = spec->nipsin;
    /* angular components, FORMAT.md 4.3: group L holds 3^L products; the
     * component 3*c_local + axis of group L = (component c_local of group
     * L-1) * v[axis]. */
    int M = 0, prev_start = 0, prev_n = 0;
    for (int L = 0; L < P; L++) {
        int nL = L == 0 ? 1 : prev_n * 3, start = M;
        for (int q = 0; q < nL; q++) {
            m->index_para[M] = L;
            m->orb_parent[M] = L == 0 ? -1 : prev_start + q / 3;
            m->orb_axis[M] = L == 0 ? -1 : q % 3;
            M++;
        }
        prev_start = start;
        prev_n = nL;
    }
    m->norbital = M;
    m->ndensity = P * K;
    int nlay = 0, narr = 3;
    for (int t = 0; t < spec->nnets; t++) {
        m->layer_base[t] = nlay;
        nlay += S * (spec->net[t].nhidden + 1);
        narr += S * (6 * spec->net[t].nhidden + 2);
    }
    m->nlayers = nlay;
    m->layer = calloc((size_t)nlay, sizeof *m->layer);
    m->arrays = calloc((size_t)narr, sizeof *m->arrays);
    if (!m->layer || !m->arrays) {
        eann_model_free(m);
        return EANN_ENOMEM;
    }
    size_t off = 0, wtoff = 0;
    m->off_rs = 0;
    add_array(m, "rs", S, K, &off);
    m->off_inta = off;
    add_array(m, "inta", S, K, &off);
    m->off_params = off;
    add_array(m, "params", S, K, &off);
    char name[64];
    for (int t = 0; t < spec->nnets; t++) {
        const eann_net_spec *ns = &spec->net[t];
        for (int s = 0; s < S; s++) {
            const char *X = spec->species[s];
            for (int h = 0; h <= ns->nhidden; h++) {
                eann_layer *L = &m->layer[m->layer_base[t] + s * (ns->nhidden + 1) + h];
                int nin = ns->sizes[h], no = ns->sizes[h + 1];
                L->nin = nin;
                L->nout = no;
                L->w = off;
                snprintf(name, sizeof name, "net%d.%s.linear%d.weight", t, X, h);
                add_array(m, name, no, nin, &off);
                L->b = off;
                snprintf(name, sizeof name, "net%d.%s.linear%d.bias", t, X, h);
                add_array(m, name, no, 0, &off);
                L->wt = wtoff;
                wtoff += (size_t)no * (size_t)nin;
                L->ln_g = L->ln_b = L->act_a = L->act_b = (size_t)-1;
                if (h == ns->nhidden) break;
                L->ln_g = off;
                snprintf(name, sizeof name, "net%d.%s.layernorm%d.weight", t, X, h);
                add_array(m, name, no, 0, &off);
                L->ln_b = off;
                snprintf(name, sizeof name, "net%d.%s.layernorm%d.bias", t, X, h);
                add_array(m, name, no, 0, &off);
                L->act_a = off;
                snprintf(name, sizeof name, "net%d.%s.act%d.alpha", t, X, h);
                add_array(m, name, no, 0, &off);
                L->act_b = off;
                snprintf(name, sizeof name, "net%d.%s.act%d.beta", t, X, h);
                add_array(m, name, no, 0, &off);
            }
        }
    }
    m->ntheta = off;
    m->nwt = wtoff;
    m->theta = calloc(off, sizeof(double));
    m->wt = calloc(wtoff ? wtoff : 1, sizeof(double));
    if (!m->theta || !m->wt) {
        eann_model_free(m);
        return EANN_ENOMEM;
    }
    *out = m;
    return EANN_OK;
}

void eann_model_free(eann_model *m) {
    if (!m) return;
    free(m->layer);
    free(m->arrays);
    free(m->theta);
    free(m->wt);
    free(m->comments);
    free(m);
}

void eann_model_sync(eann_model *m) {
    for (int i = 0; i < m->nlayers; i++) {
        const eann_layer *L = &m->layer[i];
        const double *w = m->theta + L->w;
        double *wt = m->wt + L->wt;
        for (int o = 0; o < L->nout; o++)
            for (int c = 0; c < L->nin; c++) wt[(size_t)c * L->nout + o] = w[(size_t)o * L->nin + c];
    }
}

/* splitmix64 and a uniform double in [0, 1) from its top 53 bits. */
static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double urand(uint64_t *s) { return (double)(sm64(s) >> 11) * (1.0 / 9007199254740992.0); }

void eann_model_init_random(eann_model *m, uint64_t seed) {
    uint64_t st = seed;
    const int S = m->spec.nspecies, K = m->spec.nwave;
    double *th = m->theta;
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            /* centres spread over [0, rc), exponents O(1), coefficients O(0.3) */
            th[m->off_rs + (size_t)s * K + k] =
                m->spec.cutoff * ((k + 0.5 * urand(&st)) / K);
            th[m->off_inta + (size_t)s * K + k] = 0.3 + 1.2 * urand(&st);
            th[m->off_params + (size_t)s * K + k] = 0.1 + 0.4 * urand(&st);
        }
    for (int i = 0; i < m->nlayers; i++) {
        const eann_layer *L = &m->layer[i];
        double sc = 1.0 / sqrt((double)L->nin);
        for (size_t q = 0; q < (size_t)L->nout * L->nin; q++)
            th[L->w + q] = sc * (2.0 * urand(&st) - 1.0) * 1.7;
        for (int o = 0; o < L->nout; o++) {
            th[L->b + o] = 0.2 * (2.0 * urand(&st) - 1.0);
            if (L->ln_g == (size_t)-1) continue;
            th[L->ln_g + o] = 1.0 + 0.3 * (2.0 * urand(&st) - 1.0);
            th[L->ln_b + o] = 0.2 * (2.0 * urand(&st) - 1.0);
            th[L->act_a + o] = 1.0 + 0.3 * (2.0 * urand(&st) - 1.0);
            th[L->act_b + o] = 0.5 + 0.8 * urand(&st);
        }
    }
    eann_model_sync(m);
}

int eann_species_index(const eann_model *m, const char *symbol) {
    if (!m || !symbol) return -1;
    for (int s = 0; s < m->spec.nspecies; s++)
        if (!strcmp(m->spec.species[s], symbol)) return s;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* workspace                                                                 */
/* ------------------------------------------------------------------------ */

void eann_work_free(eann_work *w) {
    if (!w) return;
    free(w->row_species);
    free(w->atom_of_row);
    free(w->row_of_atom);
    free(w->cursor);
    free(w->x);
    free(w->pair_start);
    free(w->pair_j);
    free(w->pair_v);
    free(w->pair_d);
    free(w->pair_fc);
    free(w->pair_dfc);
    free(w->pair_src);
    free(w->pair_r);
    free(w->pair_w);
    free(w->pair_a);
    free(w->S);
    free(w->rho);
    for (int t = 0; t < EANN_MAX_NETS; t++) {
        for (int h = 0; h < EANN_MAX_HIDDEN; h++) {
            free(w->y[t][h]);
            free(w->zhat[t][h]);
            free(w->sig[t][h]);
            free(w->a[t][h]);
            free(w->rstd[t][h]);
        }
        free(w->out[t]);
    }
    free(w->g1);
    free(w->g2);
    free(w->dout);
    free(w->drho);
    free(w->dS);
    free(w->dst);
    free(w->bu);
    free(w->bga);
    free(w->dpos);
    free(w->dpos2);
    free(w);
}

static void *alloc_arr(size_t n, size_t sz, int *fail) {
    if (n == 0) n = 1;
    if (n > ((size_t)-1) / 2 / sz) { *fail = 1; return NULL; }
    void *p = calloc(n, sz);
    if (!p) *fail = 1;
    return p;
}

static int grow_pairs(const eann_model *m, eann_work *w, size_t need) {
    if (need <= w->cap_pairs) return EANN_OK;
    size_t cap = w->cap_pairs ? w->cap_pairs : 64;
    while (cap < need) cap *= 2;
    const size_t K = (size_t)m->spec.nwave, M = (size_t)m->norbital;
    int fail = 0;
    int *pj = alloc_arr(cap, sizeof(int), &fail);
    int *psrc = alloc_arr(cap, sizeof(int), &fail);
    double *pv = alloc_arr(cap * 3, sizeof(double), &fail);
    double *pd = alloc_arr(cap, sizeof(double), &fail);
    double *pfc = alloc_arr(cap, sizeof(double), &fail);
    double *pdfc = alloc_arr(cap, sizeof(double), &fail);
    double *pr = alloc_arr(cap * K, sizeof(double), &fail);
    double *pw = alloc_arr(cap * K, sizeof(double), &fail);
    double *pa = alloc_arr(cap * M, sizeof(double), &fail);
    if (fail) {
        free(pj); free(psrc); free(pv); free(pd); free(pfc); free(pdfc); free(pr); free(pw);
        free(pa);
        return EANN_ENOMEM;
    }
    /* keep the pairs built so far (eann_setup grows the arrays mid-way) */
    size_t o = w->cap_pairs;
    if (o) {
        memcpy(pj, w->pair_j, o * sizeof(int));
        memcpy(psrc, w->pair_src, o * sizeof(int));
        memcpy(pv, w->pair_v, o * 3 * sizeof(double));
        memcpy(pd, w->pair_d, o * sizeof(double));
        memcpy(pfc, w->pair_fc, o * sizeof(double));
        memcpy(pdfc, w->pair_dfc, o * sizeof(double));
        memcpy(pr, w->pair_r, o * K * sizeof(double));
        memcpy(pw, w->pair_w, o * K * sizeof(double));
        memcpy(pa, w->pair_a, o * M * sizeof(double));
    }
    free(w->pair_j); free(w->pair_src); free(w->pair_v); free(w->pair_d); free(w->pair_fc);
    free(w->pair_dfc); free(w->pair_r); free(w->pair_w); free(w->pair_a);
    w->pair_a = pa;
    w->pair_src = psrc;
    w->pair_j = pj; w->pair_v = pv; w->pair_d = pd; w->pair_fc = pfc;
    w->pair_dfc = pdfc; w->pair_r = pr; w->pair_w = pw;
    w->cap_pairs = cap;
    return EANN_OK;
}

static int best_simd(void);

int eann_work_new(const eann_model *m, int natoms_max, eann_work **out) {
    if (!m || !out || natoms_max < 1) return EANN_EINVAL;
    *out = NULL;
    eann_work *w = calloc(1, sizeof *w);
    if (!w) return EANN_ENOMEM;
    const size_t N = (size_t)natoms_max, M = (size_t)m->norbital, K = (size_t)m->spec.nwave;
    const size_t D = (size_t)m->ndensity;
    int fail = 0, maxw = (int)D;
    w->cap_atoms = natoms_max;
    w->row_species = alloc_arr(N, sizeof(int), &fail);
    w->atom_of_row = alloc_arr(N, sizeof(int), &fail);
    w->row_of_atom = alloc_arr(N, sizeof(int), &fail);
    w->cursor = alloc_arr(N, sizeof(int), &fail);
    w->x = alloc_arr(N * 3, sizeof(double), &fail);
    w->pair_start = alloc_arr(N + 1, sizeof(int), &fail);
    w->S = alloc_arr(N * M * K, sizeof(double), &fail);
    w->dS = alloc_arr(N * M * K, sizeof(double), &fail);
    w->dst = alloc_arr(M * K, sizeof(double), &fail);
    w->bu = alloc_arr(N * K, sizeof(double), &fail);
    w->bga = alloc_arr(N * M, sizeof(double), &fail);
    w->rho = alloc_arr(N * D, sizeof(double), &fail);
    w->drho = alloc_arr(N * D, sizeof(double), &fail);
    w->dpos = alloc_arr(N * 3, sizeof(double), &fail);
    w->dpos2 = alloc_arr(N * 3, sizeof(double), &fail);
    for (int t = 0; t < m->spec.nnets && !fail; t++) {
        const eann_net_spec *ns = &m->spec.net[t];
        for (int h = 0; h < ns->nhidden; h++) {
            size_t c = (size_t)ns->sizes[h + 1];
            if ((int)c > maxw) maxw = (int)c;
            w->y[t][h] = alloc_arr(N * c, sizeof(double), &fail);
            w->zhat[t][h] = alloc_arr(N * c, sizeof(double), &fail);
            w->sig[t][h] = alloc_arr(N * c, sizeof(double), &fail);
            w->a[t][h] = alloc_arr(N * c, sizeof(double), &fail);
            w->rstd[t][h] = alloc_arr(N, sizeof(double), &fail);
        }
        int no = ns->sizes[ns->nhidden + 1];
        if (no > maxw) maxw = no;
        w->out[t] = alloc_arr(N * (size_t)no, sizeof(double), &fail);
    }
    w->g1 = alloc_arr(N * (size_t)maxw, sizeof(double), &fail);
    w->g2 = alloc_arr(N * (size_t)maxw, sizeof(double), &fail);
    w->dout = alloc_arr(N * (size_t)maxw, sizeof(double), &fail);
    if (!fail && grow_pairs(m, w, N * (N - 1) < 4096 ? N * (N - 1) : 4096)) fail = 1;
    if (fail) {
        eann_work_free(w);
        return EANN_ENOMEM;
    }
    w->simd = best_simd();
    *out = w;
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* AVX2 copies of the hot loops                                              */
/* ------------------------------------------------------------------------ */

/* With gcc or clang on x86-64 the loops that dominate prediction and
 * training (matrix products and weight gradients, LayerNorm + activation
 * and their backward, exp, the descriptor sums) have a second
 * copy compiled with __attribute__((target("avx2"))), used when the CPU has
 * AVX2 (w->simd, eann_work_set_simd; the choice is made per call, so one
 * binary runs everywhere). The copies use GNU C vector types of 4 doubles
 * (v4d). Same-bits rule: a vector only ever runs across INDEPENDENT results
 * (columns of a matrix product, elements of a row, or the four partial sums
 * s0..s3 of sum4/dot4), and each lane performs exactly the IEEE operations
 * of the scalar code for its element, in the same order; "avx2" does not
 * enable FMA and we build with -ffp-contract=off, so no a*b+c is fused.
 * Hence the portable and AVX2 copies give identical bits (tests/test_eann.c
 * compares them on the published models and on random models with sizes
 * that leave tails, including training gradients). Vector width: 4 doubles
 * on AVX2 versus 2 (SSE2) in the portable copy; the matrix tiles keep up to
 * 8 independent vector sums in flight. Measured on NMA (bench/bench_eann.sh):
 * the AVX2 copy is 1.6-1.8x faster than the portable one. */
#if EANN_HAVE_AVX2

EANN_AVX2_INLINE v4d v_load(const double *p) {
    v4d v;
    memcpy(&v, p, sizeof v);
    return v;
}
EANN_AVX2_INLINE void v_store(double *p, v4d v) { memcpy(p, &v, sizeof v); }
EANN_AVX2_INLINE v4d v_splat(double s) { return (v4d){s, s, s, s}; }
/* ((s0 + s1) + (s2 + s3)): the combination of the four partial sums of sum4/dot4 */
EANN_AVX2_INLINE double v_sum4(v4d s) { return (s[0] + s[1]) + (s[2] + s[3]); }

/* exp_core on four lanes (the same operations; |x| <= 708 only) */
EANN_AVX2_INLINE v4d v_exp_core(v4d x) {
    const double s32 = 0x1.71547652b82fep5, shift = 0x1.8p52;
    const double h = 0x1.62e42fef00000p-6, l = 0x1.473de6af278edp-39;
    v4d kd = x * s32 + shift;
    v4u b = (v4u)kd;
    kd -= shift;
    v4d r = (x - kd * h) - kd * l;
    v4d q = r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720))))));
    v4d t = {exp_t32[b[0] & 31], exp_t32[b[1] & 31], exp_t32[b[2] & 31], exp_t32[b[3] & 31]};
    v4u e = ((b >> 5) + 1023) << 52;
    return (t + t * q) * (v4d)e;
}

/* eann_exp_n (same bits): if every x is within [-708, 708] (checked first,
 * four lanes at a time; NaN fails), exp_core four at a time, else exp_one
 * element by element as eann_exp_n does. */
EANN_AVX2_INLINE void exp_n_avx2_body(int n, const double *x, double *y) {
    const int n4 = n - n % 4;
    v4i ok = {-1, -1, -1, -1};
    for (int i = 0; i < n4; i += 4) {
        v4d v = v_load(x + i);
        ok &= (v >= -708.0) & (v <= 708.0);
    }
    int good = (ok[0] & ok[1] & ok[2] & ok[3]) != 0;
    for (int i = n4; i < n; i++) good &= fabs(x[i]) <= 708.0;
    if (!good) {
        for (int i = 0; i < n; i++) y[i] = exp_one(x[i]);
        return;
    }
    for (int i = 0; i < n4; i += 4) v_store(y + i, v_exp_core(v_load(x + i)));
    for (int i = n4; i < n; i++) y[i] = exp_core(x[i]);
}

EANN_AVX2 static void exp_n_avx2(int n, const double *x, double *y) { exp_n_avx2_body(n, x, y); }

/* gemm_rows on AVX2 (same arguments, same sums: each z[a][j] starts from
 * b[j] (or 0) and adds x[a][c] B[c][j] for c = 0, 1, ... in turn). The
 * tiles keep up to eight vector sums in registers: 4 (or the last 3 or 2)
 * rows x 8 columns, or 1 row x 32 columns for a single row (a species with
 * one atom is a matrix-vector product). Narrower column tails: one vector per row, then
 * single columns. Written out by hand: compilers keep named variables, not
 * small arrays, in registers. */
EANN_AVX2_INLINE v4d v_init(const double *b, int j) { return b ? v_load(b + j) : v_splat(0.0); }

/* columns j..j+7 of rows 0..R-1 (R <= 4; R is a constant at every call,
 * so the unused sums vanish) */
EANN_AVX2_INLINE void tile_rx8(int R, int nk, int nj, const double *x, const double *B,
                               const double *b, int j, double *z) {
    const double *x0 = x, *x1 = x + nk, *x2 = x + 2 * (size_t)nk, *x3 = x + 3 * (size_t)nk;
    v4d a0 = v_init(b, j), a1 = v_init(b, j + 4);
    v4d b0 = a0, b1 = a1, c0 = a0, c1 = a1, d0 = a0, d1 = a1;
    for (int c = 0; c < nk; c++) {
        const double *w = B + (size_t)c * nj + j;
        v4d w0 = v_load(w), w1 = v_load(w + 4), p;
        p = v_splat(x0[c]); a0 += p * w0; a1 += p * w1;
        if (R > 1) { p = v_splat(x1[c]); b0 += p * w0; b1 += p * w1; }
        if (R > 2) { p = v_splat(x2[c]); c0 += p * w0; c1 += p * w1; }
        if (R > 3) { p = v_splat(x3[c]); d0 += p * w0; d1 += p * w1; }
    }
    v_store(z + j, a0); v_store(z + j + 4, a1);
    if (R > 1) { z += nj; v_store(z + j, b0); v_store(z + j + 4, b1); }
    if (R > 2) { z += nj; v_store(z + j, c0); v_store(z + j + 4, c1); }
    if (R > 3) { z += nj; v_store(z + j, d0); v_store(z + j + 4, d1); }
}

EANN_AVX2_INLINE void tile_1x32(int nk, int nj, const double *x, const double *B,
                                const double *b, int j, double *z) {
    v4d a0 = v_init(b, j), a1 = v_init(b, j + 4), a2 = v_init(b, j + 8), a3 = v_init(b, j + 12);
    v4d a4 = v_init(b, j + 16), a5 = v_init(b, j + 20), a6 = v_init(b, j + 24);
    v4d a7 = v_init(b, j + 28);
    for (int c = 0; c < nk; c++) {
        const double *w = B + (size_t)c * nj + j;
        v4d p = v_splat(x[c]);
        a0 += p * v_load(w); a1 += p * v_load(w + 4); a2 += p * v_load(w + 8);
        a3 += p * v_load(w + 12); a4 += p * v_load(w + 16); a5 += p * v_load(w + 20);
        a6 += p * v_load(w + 24); a7 += p * v_load(w + 28);
    }
    v_store(z + j, a0); v_store(z + j + 4, a1); v_store(z + j + 8, a2);
    v_store(z + j + 12, a3); v_store(z + j + 16, a4); v_store(z + j + 20, a5);
    v_store(z + j + 24, a6); v_store(z + j + 28, a7);
}

/* columns j..j+3 of rows 0..R-1, one vector sum per row (R <= 4) */
EANN_AVX2_INLINE void tile_rx4(int R, int nk, int nj, const double *x, const double *B,
                               const double *b, int j, double *z) {
    v4d a0 = v_init(b, j), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < nk; c++) {
        v4d w = v_load(B + (size_t)c * nj + j);
        a0 += v_splat(x[c]) * w;
        if (R > 1) a1 += v_splat(x[nk + c]) * w;
        if (R > 2) a2 += v_splat(x[2 * (size_t)nk + c]) * w;
        if (R > 3) a3 += v_splat(x[3 * (size_t)nk + c]) * w;
    }
    v_store(z + j, a0);
    if (R > 1) v_store(z + nj + j, a1);
    if (R > 2) v_store(z + 2 * (size_t)nj + j, a2);
    if (R > 3) v_store(z + 3 * (size_t)nj + j, a3);
}

/* column j of rows 0..R-1 (R <= 4), the rows' sums interleaved */
EANN_AVX2_INLINE void tile_rx1(int R, int nk, int nj, const double *x, const double *B,
                               const double *b, int j, double *z) {
    double a0 = b ? b[j] : 0.0, a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < nk; c++) {
        double w = B[(size_t)c * nj + j];
        a0 += x[c] * w;
        if (R > 1) a1 += x[nk + c] * w;
        if (R > 2) a2 += x[2 * (size_t)nk + c] * w;
        if (R > 3) a3 += x[3 * (size_t)nk + c] * w;
    }
    z[j] = a0;
    if (R > 1) z[nj + j] = a1;
    if (R > 2) z[2 * (size_t)nj + j] = a2;
    if (R > 3) z[3 * (size_t)nj + j] = a3;
}

/* rows 0..R-1 (R = 2..4), all columns */
EANN_AVX2_INLINE void rows_avx2(int R, int nk, int nj, const double *x, const double *B,
                                const double *b, double *z) {
    int j = 0;
    for (; j + 8 <= nj; j += 8) tile_rx8(R, nk, nj, x, B, b, j, z);
    for (; j + 4 <= nj; j += 4) tile_rx4(R, nk, nj, x, B, b, j, z);
    for (; j < nj; j++) tile_rx1(R, nk, nj, x, B, b, j, z);
}

/* one row, all columns */
EANN_AVX2_INLINE void row1_avx2(int nk, int nj, const double *x, const double *B,
                                const double *b, double *z) {
    int j = 0;
    for (; j + 32 <= nj; j += 32) tile_1x32(nk, nj, x, B, b, j, z);
    for (; j + 4 <= nj; j += 4) tile_rx4(1, nk, nj, x, B, b, j, z);
    for (; j < nj; j++) tile_rx1(1, nk, nj, x, B, b, j, z);
}

EANN_AVX2 static void gemm_avx2(int n, int nk, int nj, const double *x, const double *B,
                                const double *b, double *z) {
    int a = 0;
    for (; a + 4 <= n; a += 4) rows_avx2(4, nk, nj, x + (size_t)a * nk, B, b, z + (size_t)a * nj);
    const double *xa = x + (size_t)a * nk;
    double *za = z + (size_t)a * nj;
    switch (n - a) { /* the last 0..3 rows */
    case 3: rows_avx2(3, nk, nj, xa, B, b, za); break;
    case 2: rows_avx2(2, nk, nj, xa, B, b, za); break;
    case 1: row1_avx2(nk, nj, xa, B, b, za); break;
    default: break;
    }
}

/* The weight gradient of a linear layer (same bits as linear_backward's
 * axpy loop): dw[o][c] += dz[a][o] x[a][c] for a = 0, 1, ... in turn; a
 * block of 16 (then 4, then 1) entries of dw[o] stays in registers while
 * all rows a are added. */
EANN_AVX2 static void dw_avx2(int n, int nin, int nout, const double *x, const double *dz,
                              double *dw) {
    for (int o = 0; o < nout; o++) {
        double *d = dw + (size_t)o * nin;
        int c = 0;
        for (; c + 16 <= nin; c += 16) {
            v4d a0 = v_load(d + c), a1 = v_load(d + c + 4), a2 = v_load(d + c + 8);
            v4d a3 = v_load(d + c + 12);
            for (int a = 0; a < n; a++) {
                const double *xa = x + (size_t)a * nin + c;
                v4d g = v_splat(dz[(size_t)a * nout + o]);
                a0 += g * v_load(xa);
                a1 += g * v_load(xa + 4);
                a2 += g * v_load(xa + 8);
                a3 += g * v_load(xa + 12);
            }
            v_store(d + c, a0); v_store(d + c + 4, a1);
            v_store(d + c + 8, a2); v_store(d + c + 12, a3);
        }
        for (; c + 4 <= nin; c += 4) {
            v4d a0 = v_load(d + c);
            for (int a = 0; a < n; a++)
                a0 += v_splat(dz[(size_t)a * nout + o]) * v_load(x + (size_t)a * nin + c);
            v_store(d + c, a0);
        }
        for (; c < nin; c++) {
            double a0 = d[c];
            for (int a = 0; a < n; a++) a0 += dz[(size_t)a * nout + o] * x[(size_t)a * nin + c];
            d[c] = a0;
        }
    }
}

/* eann_layernorm_forward followed by eann_act_forward (same bits), row by
 * row: z [n][c] (may alias y), y [n][c] LayerNorm output, zhat, rstd [n],
 * sig [n][c], a [n][c]. */
EANN_AVX2 static void ln_act_avx2(int n, int c, const double *z, const double *g,
                                  const double *bb, double eps, const double *alpha,
                                  const double *beta, double *zhat, double *rstd, double *y,
                                  double *sig, double *a) {
    const int c4 = c - c % 4;
    for (int r = 0; r < n; r++) {
        const double *zr = z + (size_t)r * c;
        double *hr = zhat + (size_t)r * c, *yr = y + (size_t)r * c;
        double *sr = sig + (size_t)r * c, *ar = a + (size_t)r * c;
        v4d s = v_splat(0.0);
        for (int i = 0; i < c4; i += 4) s += v_load(zr + i); /* sum4 */
        double sum = v_sum4(s);
        for (int i = c4; i < c; i++) sum += zr[i];
        const double mu = sum / c;
        for (int i = 0; i < c4; i += 4) v_store(hr + i, v_load(zr + i) - mu);
        for (int i = c4; i < c; i++) hr[i] = zr[i] - mu;
        s = v_splat(0.0);
        for (int i = 0; i < c4; i += 4) { /* dot4(hr, hr) */
            v4d h = v_load(hr + i);
            s += h * h;
        }
        double var = v_sum4(s);
        for (int i = c4; i < c; i++) var += hr[i] * hr[i];
        var /= c;
        const double rs = 1.0 / sqrt(var + eps);
        rstd[r] = rs;
        /* LayerNorm output, then the sigmoid's exp argument -(beta y) into sig */
        for (int i = 0; i < c4; i += 4) {
            v4d h = v_load(hr + i) * rs;
            v4d yy = h * v_load(g + i) + v_load(bb + i);
            v_store(hr + i, h);
            v_store(yr + i, yy);
            v_store(sr + i, -(v_load(beta + i) * yy));
        }
        for (int i = c4; i < c; i++) {
            hr[i] *= rs;
            yr[i] = hr[i] * g[i] + bb[i];
            sr[i] = -(beta[i] * yr[i]);
        }
        exp_n_avx2_body(c, sr, sr);
        /* a = alpha * (beta y) * sigmoid(beta y) (eann_act_forward) */
        for (int i = 0; i < c4; i += 4) {
            v4d t = v_load(beta + i) * v_load(yr + i);
            v4d sg = 1.0 / (1.0 + v_load(sr + i));
            v_store(sr + i, sg);
            v_store(ar + i, v_load(alpha + i) * t * sg);
        }
        for (int i = c4; i < c; i++) {
            double t = beta[i] * yr[i];
            double sg = 1.0 / (1.0 + sr[i]);
            sr[i] = sg;
            ar[i] = alpha[i] * t * sg;
        }
    }
}

/* eann_act_backward then eann_layernorm_backward without parameter
 * gradients (same bits): da [n][c] -> dy [n][c] (scratch) -> dz [n][c]. */
EANN_AVX2 static void act_ln_backward_avx2(int n, int c, const double *y, const double *sig,
                                           const double *alpha, const double *beta,
                                           const double *zhat, const double *rstd,
                                           const double *g, const double *da, double *dy,
                                           double *dz) {
    const int c4 = c - c % 4;
    for (int r = 0; r < n; r++) {
        const double *yr = y + (size_t)r * c, *sr = sig + (size_t)r * c;
        const double *dar = da + (size_t)r * c, *hr = zhat + (size_t)r * c;
        double *dyr = dy + (size_t)r * c, *dzr = dz + (size_t)r * c;
        v4d sg = v_splat(0.0), sgh = v_splat(0.0);
        for (int i = 0; i < c4; i += 4) {
            v4d bt = v_load(beta + i), s = v_load(sr + i);
            v4d t = bt * v_load(yr + i);
            v4d dadt = v_load(alpha + i) * (s + t * s * (1.0 - s));
            v4d d = v_load(dar + i) * (bt * dadt);
            v_store(dyr + i, d);
            v4d G = v_load(g + i) * d;
            sg += G;
            sgh += G * v_load(hr + i);
        }
        double ssg = v_sum4(sg), ssgh = v_sum4(sgh);
        for (int i = c4; i < c; i++) {
            double t = beta[i] * yr[i], s = sr[i];
            double dadt = alpha[i] * (s + t * s * (1.0 - s));
            dyr[i] = dar[i] * (beta[i] * dadt);
            double G = g[i] * dyr[i];
            ssg += G;
            ssgh += G * hr[i];
        }
        const double mg = ssg / c, mgh = ssgh / c, rs = rstd[r];
        for (int i = 0; i < c4; i += 4)
            v_store(dzr + i, (v_load(g + i) * v_load(dyr + i) - mg - v_load(hr + i) * mgh) * rs);
        for (int i = c4; i < c; i++) dzr[i] = (g[i] * dyr[i] - mg - hr[i] * mgh) * rs;
    }
}

/* sum_atw (same bits): S[q][k] = sum_p A[p][q] W[p][k], pairs of q, k in
 * vectors of 4 (two q x two vectors = 4 sums in flight), tails as sum_atw. */
EANN_AVX2 static void sum_atw_avx2(int np, int M, int K, const double *A, const double *W,
                                   double *S) {
    const int K4 = K - K % 4;
    int q = 0;
    for (; q + 2 <= M; q += 2) {
        int k = 0;
        for (; k + 8 <= K4; k += 8) {
            v4d a0 = v_splat(0.0), a1 = a0, b0 = a0, b1 = a0;
            for (int p = 0; p < np; p++) {
                const double *w = W + (size_t)p * K + k;
                v4d x = v_splat(A[(size_t)p * M + q]), y = v_splat(A[(size_t)p * M + q + 1]);
                v4d w0 = v_load(w), w1 = v_load(w + 4);
                a0 += x * w0;
                a1 += x * w1;
                b0 += y * w0;
                b1 += y * w1;
            }
            v_store(S + (size_t)q * K + k, a0);
            v_store(S + (size_t)q * K + k + 4, a1);
            v_store(S + (size_t)(q + 1) * K + k, b0);
            v_store(S + (size_t)(q + 1) * K + k + 4, b1);
        }
        for (; k < K4; k += 4) {
            v4d a0 = v_splat(0.0), b0 = a0;
            for (int p = 0; p < np; p++) {
                v4d w0 = v_load(W + (size_t)p * K + k);
                a0 += v_splat(A[(size_t)p * M + q]) * w0;
                b0 += v_splat(A[(size_t)p * M + q + 1]) * w0;
            }
            v_store(S + (size_t)q * K + k, a0);
            v_store(S + (size_t)(q + 1) * K + k, b0);
        }
        for (; k < K; k++) {
            double a0 = 0, b0 = 0;
            for (int p = 0; p < np; p++) {
                double w = W[(size_t)p * K + k];
                a0 += A[(size_t)p * M + q] * w;
                b0 += A[(size_t)p * M + q + 1] * w;
            }
            S[(size_t)q * K + k] = a0;
            S[(size_t)(q + 1) * K + k] = b0;
        }
    }
    for (; q < M; q++) {
        int k = 0;
        for (; k < K4; k += 4) {
            v4d a0 = v_splat(0.0);
            for (int p = 0; p < np; p++)
                a0 += v_splat(A[(size_t)p * M + q]) * v_load(W + (size_t)p * K + k);
            v_store(S + (size_t)q * K + k, a0);
        }
        for (; k < K; k++) {
            double a0 = 0;
            for (int p = 0; p < np; p++) a0 += A[(size_t)p * M + q] * W[(size_t)p * K + k];
            S[(size_t)q * K + k] = a0;
        }
    }
}
#endif /* EANN_HAVE_AVX2 */

/* The dispatchers (prototypes at the top of the file). */
static void sum_atw(int np, int M, int K, const double *restrict A, const double *restrict W,
                    double *restrict S);

static void gemm_sel(int simd, int n, int nk, int nj, const double *x, const double *B,
                     const double *b, double *z) {
#if EANN_HAVE_AVX2
    if (simd == EANN_SIMD_AVX2) {
        gemm_avx2(n, nk, nj, x, B, b, z);
        return;
    }
#endif
    (void)simd;
    gemm_rows(n, nk, nj, x, B, b, z);
}

static void dw_sel(int simd, int n, int nin, int nout, const double *x, const double *dz,
                   double *dw) {
#if EANN_HAVE_AVX2
    if (simd == EANN_SIMD_AVX2) {
        dw_avx2(n, nin, nout, x, dz, dw);
        return;
    }
#endif
    (void)simd;
    for (int o = 0; o < nout; o++)
        for (int a = 0; a < n; a++)
            axpy(nin, dz[(size_t)a * nout + o], x + (size_t)a * nin, dw + (size_t)o * nin);
}

static void exp_sel(int simd, int n, const double *x, double *y) {
#if EANN_HAVE_AVX2
    if (simd == EANN_SIMD_AVX2) {
        exp_n_avx2(n, x, y);
        return;
    }
#endif
    (void)simd;
    eann_exp_n(n, x, y);
}

static void sum_atw_sel(int simd, int np, int M, int K, const double *A, const double *W,
                        double *S) {
#if EANN_HAVE_AVX2
    if (simd == EANN_SIMD_AVX2) {
        sum_atw_avx2(np, M, K, A, W, S);
        return;
    }
#endif
    (void)simd;
    sum_atw(np, M, K, A, W, S);
}

/* eann_layernorm_forward then eann_act_forward (arguments as ln_act_avx2) */
static void ln_act_sel(int simd, int n, int c, const double *z, const double *g,
                       const double *bb, double eps, const double *alpha, const double *beta,
                       double *zhat, double *rstd, double *y, double *sig, double *a) {
#if EANN_HAVE_AVX2
    if (simd == EANN_SIMD_AVX2) {
        ln_act_avx2(n, c, z, g, bb, eps, alpha, beta, zhat, rstd, y, sig, a);
        return;
    }
#endif
    (void)simd;
    eann_layernorm_forward(n, c, z, g, bb, eps, zhat, rstd, y);
    eann_act_forward(n, c, y, alpha, beta, sig, a);
}

/* eann_act_backward then eann_layernorm_backward without parameter
 * gradients (arguments as act_ln_backward_avx2) */
static void act_ln_backward_sel(int simd, int n, int c, const double *y, const double *sig,
                                const double *alpha, const double *beta, const double *zhat,
                                const double *rstd, const double *g, const double *da,
                                double *dy, double *dz) {
#if EANN_HAVE_AVX2
    if (simd == EANN_SIMD_AVX2) {
        act_ln_backward_avx2(n, c, y, sig, alpha, beta, zhat, rstd, g, da, dy, dz);
        return;
    }
#endif
    (void)simd;
    eann_act_backward(n, c, y, sig, alpha, beta, da, dy, NULL, NULL);
    eann_layernorm_backward(n, c, zhat, rstd, g, dy, dz, NULL, NULL);
}

static int best_simd(void) {
#if EANN_HAVE_AVX2
    if (__builtin_cpu_supports("avx2")) return EANN_SIMD_AVX2;
#endif
    return EANN_SIMD_PORTABLE;
}

/* EANN_SIMD_PORTABLE or EANN_SIMD_AVX2 for a requested mode, or -1 if the
 * mode is unknown or its copy is not available */
static int resolve_simd(int mode) {
    if (mode == EANN_SIMD_AUTO) return best_simd();
    if (mode == EANN_SIMD_PORTABLE) return mode;
    if (mode == EANN_SIMD_AVX2 && best_simd() == EANN_SIMD_AVX2) return mode;
    return -1;
}

int eann_exp_n_simd(int mode, int n, const double *x, double *y) {
    int simd = resolve_simd(mode);
    if (simd < 0) return EANN_EINVAL;
    exp_sel(simd, n, x, y);
    return EANN_OK;
}

int eann_work_set_simd(eann_work *w, int mode) {
    int simd = resolve_simd(mode);
    if (!w || simd < 0) return EANN_EINVAL;
    w->simd = simd;
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* molecule setup and the descriptor (FORMAT.md 4.1-4.5, EANN chapter Eq. 15-16) */
/* ------------------------------------------------------------------------ */

/* z[k] = x[k] * y[k] */
static inline void mul_n(int n, const double *restrict x, const double *restrict y,
                         double *restrict z) {
    for (int k = 0; k < n; k++) z[k] = x[k] * y[k];
}

int eann_setup(const eann_model *m, eann_work *w, int natoms, const int *species,
               const double *pos) {
    if (!m || !w || natoms < 0 || natoms > w->cap_atoms || (natoms && (!species || !pos)))
        return EANN_EINVAL;
    const int S = m->spec.nspecies, K = m->spec.nwave;
    for (int i = 0; i < natoms; i++) {
        if (species[i] < 0 || species[i] >= S) return EANN_EINVAL;
        for (int a = 0; a < 3; a++)
            if (!isfinite(pos[3 * i + a])) return EANN_EINVAL;
    }
    w->natoms = natoms;
    /* 1. centre of mass with the header masses (FORMAT.md 4.1) */
    double mt = 0, com[3] = {0, 0, 0};
    for (int i = 0; i < natoms; i++) {
        double mi = m->spec.mass[species[i]];
        mt += mi;
        for (int a = 0; a < 3; a++) com[a] += mi * pos[3 * i + a];
    }
    if (natoms)
        for (int a = 0; a < 3; a++) com[a] /= mt;
    /* stable sort by species: rows of one species are consecutive */
    int r = 0;
    for (int s = 0; s < S; s++) {
        w->sp_start[s] = r;
        for (int i = 0; i < natoms; i++)
            if (species[i] == s) {
                w->atom_of_row[r] = i;
                w->row_of_atom[i] = r;
                w->row_species[r] = s;
                for (int a = 0; a < 3; a++) w->x[3 * r + a] = pos[3 * i + a] - com[a];
                r++;
            }
    }
    w->sp_start[S] = r;
    /* 2. ordered pairs with dmin < d < rc (strict) */
    const double rc = m->spec.cutoff, dmin = m->spec.min_distance, f = EANN_PI / rc;
    const double *rs = m->theta + m->off_rs, *inta = m->theta + m->off_inta;
    const double *par = m->theta + m->off_params;
    /* The pair (i, j), j < i, mirrors (j, i) built earlier: same d, fc,
     * dfc (and R if both atoms have the same species), v negated - all
     * bitwise what a recomputation would give. cursor[j] walks row j's
     * pairs with neighbours > j in order (each is mirrored exactly once). */
    int *cursor = w->cursor;
    size_t np = 0;
    for (int i = 0; i < natoms; i++) {
        w->pair_start[i] = (int)np;
        const int si = w->row_species[i];
        for (int j = 0; j < natoms; j++) {
            if (j == i) continue;
            const int sj = w->row_species[j];
            size_t mirror = (size_t)-1;
            double v0 = w->x[3 * i] - w->x[3 * j], v1 = w->x[3 * i + 1] - w->x[3 * j + 1];
            double v2 = w->x[3 * i + 2] - w->x[3 * j + 2];
            double d;
            if (j < i) {
                if (cursor[j] >= w->pair_start[j + 1] || w->pair_j[cursor[j]] != i) continue;
                mirror = (size_t)cursor[j]++;
                d = w->pair_d[mirror];
            } else {
                d = sqrt(v0 * v0 + v1 * v1 + v2 * v2);
                if (!(d > dmin && d < rc)) continue;
            }
            if (np == w->cap_pairs) {
                int rcg = grow_pairs(m, w, np + 1);
                if (rcg) return rcg;
            }
            w->pair_j[np] = j;
            w->pair_v[3 * np] = v0;
            w->pair_v[3 * np + 1] = v1;
            w->pair_v[3 * np + 2] = v2;
            w->pair_d[np] = d;
            double *R = w->pair_r + np * K;
            if (mirror != (size_t)-1) {
                w->pair_fc[np] = w->pair_fc[mirror];
                w->pair_dfc[np] = w->pair_dfc[mirror];
            } else {
                /* 3. cutoff fc = (0.5 cos(pi d/rc) + 0.5)^2 and its derivative */
                double c = 0.5 * cos(d * f) + 0.5;
                w->pair_fc[np] = c * c;
                w->pair_dfc[np] = 2.0 * c * (-0.5 * sin(d * f) * f);
            }
            if (mirror != (size_t)-1 && si == sj) {
                w->pair_src[np] = (int)mirror; /* R, W copied below */
            } else {
                /* argument of the radial R_k = exp(-inta (d - rs)^2), neighbour's species */
                const double *rsj = rs + (size_t)sj * K, *inj = inta + (size_t)sj * K;
                for (int k = 0; k < K; k++) {
                    double x = d - rsj[k];
                    R[k] = -inj[k] * (x * x);
                }
                w->pair_src[np] = -1;
            }
            np++;
        }
        cursor[i] = w->pair_start[i];
        while (cursor[i] < (int)np && w->pair_j[cursor[i]] < i) cursor[i]++;
    }
    w->pair_start[natoms] = (int)np;
    w->npairs = (int)np;
    /* radial values: one exp call per run of fresh pairs (long vectors), then
     * W_k = params[s_j][k] R_k; a mirrored pair of equal species copies its
     * source's R and W (built earlier: a source is always a fresh pair) */
    for (size_t p = 0; p < np;) {
        size_t e = p; /* pairs p .. e-1 are fresh, pair e (if e < np) is a copy */
        while (e < np && w->pair_src[e] < 0) e++;
        if (e > p) exp_sel(w->simd, (int)((e - p) * (size_t)K), w->pair_r + p * K, w->pair_r + p * K);
        p = e + 1;
    }
    for (size_t p = 0; p < np; p++) {
        double *R = w->pair_r + p * K, *W = w->pair_w + p * K;
        if (w->pair_src[p] >= 0) {
            memcpy(R, w->pair_r + (size_t)w->pair_src[p] * K, sizeof(double) * (size_t)K);
            memcpy(W, w->pair_w + (size_t)w->pair_src[p] * K, sizeof(double) * (size_t)K);
        } else {
            mul_n(K, par + (size_t)w->row_species[w->pair_j[p]] * K, R, W);
        }
    }
    return EANN_OK;
}

/* rl[k] += Sq[k]^2 (restrict: separate arrays, so the compiler vectorises) */
static inline void add_squares(int K, const double *restrict Sq, double *restrict rl) {
    for (int k = 0; k < K; k++) rl[k] += Sq[k] * Sq[k];
}

/* A[m] for one pair: A_0 = fc, A_m = A_parent * v[axis] (FORMAT.md 4.3). */
static inline void angular(const eann_model *m, double fc, const double *v, double *A) {
    const double v0 = v[0], v1 = v[1], v2 = v[2];
    A[0] = fc;
    int start = 0, n = 1, o = 1; /* group L-1 starts at start and has n members */
    for (int L = 1; L < m->spec.nipsin; L++) {
        for (int c = 0; c < n; c++) { /* component o = 3 c + axis of group L */
            double a = A[start + c];
            A[o] = a * v0;
            A[o + 1] = a * v1;
            A[o + 2] = a * v2;
            o += 3;
        }
        start += n;
        n *= 3;
    }
}

/* S[q][k] = sum_{p = 0..np-1} A[p][q] W[p][k] (sum in the order of p, from
 * 0), A [np][M], W [np][K], S [M][K]. Blocks of 2 q x 4 k stay in registers
 * (written as scalars so that gcc pairs them into SSE registers). */
static void sum_atw(int np, int M, int K, const double *restrict A, const double *restrict W,
                    double *restrict S) {
    int q = 0;
    for (; q + 2 <= M; q += 2) {
        int k = 0;
        for (; k + 4 <= K; k += 4) {
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
            for (int p = 0; p < np; p++) {
                const double *w = W + (size_t)p * K + k;
                double x = A[(size_t)p * M + q], y = A[(size_t)p * M + q + 1];
                a0 += x * w[0]; a1 += x * w[1]; a2 += x * w[2]; a3 += x * w[3];
                b0 += y * w[0]; b1 += y * w[1]; b2 += y * w[2]; b3 += y * w[3];
            }
            double *s0 = S + (size_t)q * K + k, *s1 = s0 + K;
            s0[0] = a0; s0[1] = a1; s0[2] = a2; s0[3] = a3;
            s1[0] = b0; s1[1] = b1; s1[2] = b2; s1[3] = b3;
        }
        for (; k < K; k++) {
            double a0 = 0, b0 = 0;
            for (int p = 0; p < np; p++) {
                double w = W[(size_t)p * K + k];
                a0 += A[(size_t)p * M + q] * w;
                b0 += A[(size_t)p * M + q + 1] * w;
            }
            S[(size_t)q * K + k] = a0;
            S[(size_t)(q + 1) * K + k] = b0;
        }
    }
    for (; q < M; q++)
        for (int k = 0; k < K; k++) {
            double a0 = 0;
            for (int p = 0; p < np; p++) a0 += A[(size_t)p * M + q] * W[(size_t)p * K + k];
            S[(size_t)q * K + k] = a0;
        }
}

void eann_descriptor_forward(const eann_model *m, eann_work *w) {
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    /* 3. angular components of every pair, cached for the backward pass */
    for (int p = 0; p < w->npairs; p++)
        angular(m, w->pair_fc[p], w->pair_v + 3 * (size_t)p, w->pair_a + (size_t)p * M);
    for (int i = 0; i < w->natoms; i++) {
        double *S = w->S + (size_t)i * M * K;
        /* 4. S_i[m][k] = sum_j A_m(v_ij) (params[s_j][k] R_k(d_ij)) */
        int p0 = w->pair_start[i];
        sum_atw_sel(w->simd, w->pair_start[i + 1] - p0, M, K, w->pair_a + (size_t)p0 * M,
                  w->pair_w + (size_t)p0 * K, S);
        /* 5. rho[L K + k] = sum_{m in group L} S[m][k]^2 */
        double *rho = w->rho + (size_t)i * D;
        memset(rho, 0, sizeof(double) * (size_t)D);
        for (int q = 0; q < M; q++)
            add_squares(K, S + (size_t)q * K, rho + (size_t)m->index_para[q] * K);
    }
}

void eann_descriptor_backward(const eann_model *m, eann_work *w, const double *drho,
                              double *dpos, double *dtheta) {
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    const double *rs = m->theta + m->off_rs, *inta = m->theta + m->off_inta;
    for (int i = 0; i < w->natoms; i++) {
        /* drho/dS[m][k] = 2 S[m][k] */
        const double *S = w->S + (size_t)i * M * K, *dr = drho + (size_t)i * D;
        double *dS = w->dS + (size_t)i * M * K;
        for (int q = 0; q < M; q++) {
            const double *g = dr + (size_t)m->index_para[q] * K;
            for (int k = 0; k < K; k++) dS[q * K + k] = 2.0 * S[q * K + k] * g[k];
        }
        /* for all pairs p of centre i at once (S = sum_p A_p^T W_p):
         *   u[p][k]  = dL/dW_pk = sum_m A_p[m] dS[m][k]
         *   gA[p][m] = dL/dA_pm = sum_k W_p[k] dS[m][k]  (needs dS^T [K][M]) */
        const int p0 = w->pair_start[i], np = w->pair_start[i + 1] - p0;
        gemm_sel(w->simd, np, M, K, w->pair_a + (size_t)p0 * M, dS, NULL, w->bu);
        if (dpos) {
            for (int q = 0; q < M; q++)
                for (int k = 0; k < K; k++) w->dst[(size_t)k * M + q] = dS[(size_t)q * K + k];
            gemm_sel(w->simd, np, K, M, w->pair_w + (size_t)p0 * K, w->dst, NULL, w->bga);
        }
        for (int p = p0; p < p0 + np; p++) {
            const double *v = w->pair_v + 3 * (size_t)p;
            const double *W = w->pair_w + (size_t)p * K, *R = w->pair_r + (size_t)p * K;
            const double *u = w->bu + (size_t)(p - p0) * K;
            const double d = w->pair_d[p];
            const int j = w->pair_j[p], sj = w->row_species[j];
            /* through R_k(d): dR/dd = -2 inta (d - rs) R; W_k = params_k R_k */
            const double *rsj = rs + (size_t)sj * K, *inj = inta + (size_t)sj * K;
            if (dtheta) {
                double *dr_s = dtheta + m->off_rs + (size_t)sj * K;
                double *di = dtheta + m->off_inta + (size_t)sj * K;
                double *dp = dtheta + m->off_params + (size_t)sj * K;
                for (int k = 0; k < K; k++) {
                    double x = d - rsj[k];
                    dp[k] += u[k] * R[k];
                    dr_s[k] += u[k] * W[k] * (2.0 * inj[k] * x);
                    di[k] += u[k] * W[k] * (-(x * x));
                }
            }
            if (!dpos) continue;
            double gd = 0;
            for (int k = 0; k < K; k++) gd += u[k] * W[k] * (-2.0 * inj[k] * (d - rsj[k]));
            /* reverse through the angular recursion A_q = A_parent v[axis] */
            const double *A = w->pair_a + (size_t)p * M;
            double *gA = w->bga + (size_t)(p - p0) * M;
            double gv[3] = {0, 0, 0};
            for (int q = M - 1; q >= 1; q--) {
                int par = m->orb_parent[q], ax = m->orb_axis[q];
                gA[par] += gA[q] * v[ax];
                gv[ax] += gA[q] * A[par];
            }
            gd += gA[0] * w->pair_dfc[p]; /* A_0 = fc */
            for (int a = 0; a < 3; a++) gv[a] += gd * (v[a] / d);
            /* v = x_i - x_j */
            int ai = w->atom_of_row[i], aj = w->atom_of_row[j];
            for (int a = 0; a < 3; a++) {
                dpos[3 * ai + a] += gv[a];
                dpos[3 * aj + a] -= gv[a];
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* element networks (FORMAT.md 4.6)                                          */
/* ------------------------------------------------------------------------ */

void eann_net_forward(const eann_model *m, eann_work *w, int t) {
    const eann_net_spec *ns = &m->spec.net[t];
    const int H = ns->nhidden, D = m->ndensity;
    const double *th = m->theta;
    for (int s = 0; s < m->spec.nspecies; s++) {
        int r0 = w->sp_start[s], n = w->sp_start[s + 1] - r0;
        if (n == 0) continue;
        const double *in = w->rho + (size_t)r0 * D;
        for (int h = 0; h < H; h++) {
            const eann_layer *L = eann_layer_of(m, t, s, h);
            size_t c = (size_t)L->nout;
            double *y = w->y[t][h] + r0 * c, *a = w->a[t][h] + r0 * c;
            gemm_sel(w->simd, n, L->nin, L->nout, in, m->wt + L->wt, th + L->b, y);
            ln_act_sel(w->simd, n, L->nout, y, th + L->ln_g, th + L->ln_b, ns->ln_eps,
                       th + L->act_a, th + L->act_b, w->zhat[t][h] + r0 * c, w->rstd[t][h] + r0,
                       y, w->sig[t][h] + r0 * c, a);
            in = a;
        }
        const eann_layer *L = eann_layer_of(m, t, s, H);
        gemm_sel(w->simd, n, L->nin, L->nout, in, m->wt + L->wt, th + L->b,
               w->out[t] + (size_t)r0 * L->nout);
    }
}

void eann_net_backward(const eann_model *m, eann_work *w, int t, const double *dout,
                       double *dtheta) {
    const eann_net_spec *ns = &m->spec.net[t];
    const int H = ns->nhidden, D = m->ndensity;
    const double *th = m->theta;
#define DT(off) (dtheta ? dtheta + (off) : NULL)
    for (int s = 0; s < m->spec.nspecies; s++) {
        int r0 = w->sp_start[s], n = w->sp_start[s + 1] - r0;
        if (n == 0) continue;
        double *ga = w->g1, *gb = w->g2;
        const eann_layer *L = eann_layer_of(m, t, s, H);
        const double *x = H ? w->a[t][H - 1] + (size_t)r0 * L->nin : w->rho + (size_t)r0 * D;
        double *dx = H ? ga : w->drho + (size_t)r0 * D;
        linear_backward(w->simd, n, L->nin, L->nout, x, th + L->w, dout + (size_t)r0 * L->nout, dx,
                        DT(L->w), DT(L->b));
        for (int h = H - 1; h >= 0; h--) {
            L = eann_layer_of(m, t, s, h);
            size_t c = (size_t)L->nout;
            /* ga = dL/da -> gb = dL/dy -> ga = dL/dz -> dx */
            if (!dtheta) {
                act_ln_backward_sel(w->simd, n, L->nout, w->y[t][h] + r0 * c,
                                    w->sig[t][h] + r0 * c, th + L->act_a, th + L->act_b,
                                    w->zhat[t][h] + r0 * c, w->rstd[t][h] + r0, th + L->ln_g, ga,
                                    gb, ga);
            } else {
                eann_act_backward(n, L->nout, w->y[t][h] + r0 * c, w->sig[t][h] + r0 * c,
                                  th + L->act_a, th + L->act_b, ga, gb, DT(L->act_a),
                                  DT(L->act_b));
                eann_layernorm_backward(n, L->nout, w->zhat[t][h] + r0 * c, w->rstd[t][h] + r0,
                                        th + L->ln_g, gb, ga, DT(L->ln_g), DT(L->ln_b));
            }
            x = h ? w->a[t][h - 1] + (size_t)r0 * L->nin : w->rho + (size_t)r0 * D;
            dx = h ? gb : w->drho + (size_t)r0 * D;
            linear_backward(w->simd, n, L->nin, L->nout, x, th + L->w, ga, dx, DT(L->w), DT(L->b));
            double *tmp = ga;
            ga = gb;
            gb = tmp;
        }
    }
#undef DT
}

double eann_net_sum(const eann_model *m, const eann_work *w, int t) {
    const eann_net_spec *ns = &m->spec.net[t];
    int no = ns->sizes[ns->nhidden + 1];
    double e = 0;
    for (int i = 0; i < w->natoms; i++) e += w->out[t][(size_t)w->row_of_atom[i] * no];
    return e;
}

/* True if the output layer of net t is zero for every species present: then
 * the input gradient of that net is exactly zero and need not be computed. */
static int output_layer_zero(const eann_model *m, const eann_work *w, int t) {
    for (int s = 0; s < m->spec.nspecies; s++) {
        if (w->sp_start[s + 1] == w->sp_start[s]) continue;
        const eann_layer *L = eann_layer_of(m, t, s, m->spec.net[t].nhidden);
        const double *W = m->theta + L->w;
        for (size_t q = 0; q < (size_t)L->nout * L->nin; q++)
            if (W[q] != 0.0) return 0;
    }
    return 1;
}

/* grad [natoms][3] = d(sum_i out_i[0] of net t)/dx (net t already run;
 * the pair list is held fixed, FORMAT.md sect. 5). */
static void net_gradient(const eann_model *m, eann_work *w, int t, double *grad) {
    const eann_net_spec *ns = &m->spec.net[t];
    const int no = ns->sizes[ns->nhidden + 1];
    memset(grad, 0, sizeof(double) * 3 * (size_t)w->natoms);
    if (output_layer_zero(m, w, t)) return;
    double *dout = w->dout;
    memset(dout, 0, sizeof(double) * (size_t)w->natoms * no);
    for (int r = 0; r < w->natoms; r++) dout[(size_t)r * no] = 1.0;
    eann_net_backward(m, w, t, dout, NULL);
    eann_descriptor_backward(m, w, w->drho, grad, NULL);
}

double eann_scalar(const eann_model *m, eann_work *w, int t, double *grad) {
    eann_net_forward(m, w, t);
    if (grad) net_gradient(m, w, t, grad);
    return eann_net_sum(m, w, t);
}

/* ------------------------------------------------------------------------ */
/* heads (FORMAT.md sect. 5)                                                 */
/* ------------------------------------------------------------------------ */

void eann_tdm_parts(const eann_model *m, const eann_work *w, double u[3], double v[3],
                    double *W) {
    (void)m;
    u[0] = u[1] = u[2] = v[0] = v[1] = v[2] = *W = 0;
    for (int i = 0; i < w->natoms; i++) {
        int r = w->row_of_atom[i];
        const double *y = w->out[0] + 3 * (size_t)r;
        for (int a = 0; a < 3; a++) {
            u[a] += y[0] * w->x[3 * r + a];
            v[a] += y[1] * w->x[3 * r + a];
        }
        *W += y[2];
    }
}

int eann_head_backward(const eann_model *m, const eann_work *w, const double *gout,
                       double *dout) {
    if (!m || !w || !gout || !dout) return EANN_EINVAL;
    const int N = w->natoms;
    const double *x = w->x;
    if (m->spec.kind == EANN_DIPOLE) {
        /* mu = sum_i q_i x'_i: dL/dq_i = gout . x'_i */
        for (int r = 0; r < N; r++)
            dout[r] = gout[0] * x[3 * r] + gout[1] * x[3 * r + 1] + gout[2] * x[3 * r + 2];
        return EANN_OK;
    }
    if (m->spec.kind != EANN_TDM) return EANN_EINVAL;
    /* tdm = u + v + W (u x v); g.(u x v) = u.(v x g) = v.(g x u) */
    double u[3], v[3], W;
    eann_tdm_parts(m, w, u, v, &W);
    const double *g = gout;
    double vg[3] = {v[1] * g[2] - v[2] * g[1], v[2] * g[0] - v[0] * g[2], v[0] * g[1] - v[1] * g[0]};
    double gu[3] = {g[1] * u[2] - g[2] * u[1], g[2] * u[0] - g[0] * u[2], g[0] * u[1] - g[1] * u[0]};
    double du[3], dv[3];
    for (int a = 0; a < 3; a++) {
        du[a] = g[a] + W * vg[a];
        dv[a] = g[a] + W * gu[a];
    }
    double dW = g[0] * (u[1] * v[2] - u[2] * v[1]) + g[1] * (u[2] * v[0] - u[0] * v[2]) +
                g[2] * (u[0] * v[1] - u[1] * v[0]);
    for (int r = 0; r < N; r++) {
        const double *xr = x + 3 * r;
        dout[3 * r] = du[0] * xr[0] + du[1] * xr[1] + du[2] * xr[2];
        dout[3 * r + 1] = dv[0] * xr[0] + dv[1] * xr[1] + dv[2] * xr[2];
        dout[3 * r + 2] = dW;
    }
    return EANN_OK;
}

int eann_predict(const eann_model *m, eann_work *w, int natoms, const int *species,
                 const double *pos, double *out) {
    if (!out) return EANN_EINVAL;
    int rc = eann_setup(m, w, natoms, species, pos);
    if (rc) return rc;
    eann_descriptor_forward(m, w);
    const int N = natoms;
    if (m->spec.kind == EANN_DIPOLE) {
        /* mu = sum_i q_i x'_i (EANN chapter Eq. 1) */
        eann_net_forward(m, w, 0);
        double mu[3] = {0, 0, 0};
        for (int i = 0; i < N; i++) {
            int r = w->row_of_atom[i];
            double q = w->out[0][r];
            for (int a = 0; a < 3; a++) mu[a] += q * w->x[3 * r + a];
        }
        memcpy(out, mu, sizeof mu);
    } else if (m->spec.kind == EANN_TDM) {
        /* u = sum q1 x', v = sum q2 x', W = sum w; tdm = u + v + W (u x v)
         * (EANN chapter Eqs. 7-8) */
        eann_net_forward(m, w, 0);
        double u[3], v[3], W;
        eann_tdm_parts(m, w, u, v, &W);
        double c[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                       u[0] * v[1] - u[1] * v[0]};
        for (int a = 0; a < 3; a++) out[a] = u[a] + v[a] + W * c[a];
    } else {
        /* alpha = Pm + Pm^T + sum_i h_i h_i^T + E_2 I, Pm[a][b] = sum_i x'_ia g_ib,
         * g = dE_0/dx, h = dE_1/dx (EANN chapter Eqs. 10-12) */
        double *g = w->dpos, *h = w->dpos2;
        eann_net_forward(m, w, 0);
        net_gradient(m, w, 0, g);
        /* E_1 itself is not used: when net 1's output layer is zero (the
         * published model) h = 0 exactly and net 1 need not run at all. */
        if (output_layer_zero(m, w, 1)) {
            memset(h, 0, sizeof(double) * 3 * (size_t)N);
        } else {
            eann_net_forward(m, w, 1);
            net_gradient(m, w, 1, h);
        }
        eann_net_forward(m, w, 2);
        double E2 = eann_net_sum(m, w, 2);
        double Pm[9] = {0}, Hh[9] = {0};
        for (int i = 0; i < N; i++) {
            const double *x = w->x + 3 * (size_t)w->row_of_atom[i];
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    Pm[3 * a + b] += x[a] * g[3 * i + b];
                    Hh[3 * a + b] += h[3 * i + a] * h[3 * i + b];
                }
        }
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                out[3 * a + b] = Pm[3 * a + b] + Pm[3 * b + a] + Hh[3 * a + b] + (a == b ? E2 : 0.0);
    }
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* model text EANN_TEXT_V1 (FORMAT.md sect. 1-3)                             */
/* ------------------------------------------------------------------------ */

#define MAX_TOK 160 /* tokens per line: index_para holds up to EANN_MAX_ORBITAL + 1 */

typedef struct {
    const char *buf;
    size_t len, pos;
    int line;               /* line number of the current line */
    const char *tok[MAX_TOK];
    int toklen[MAX_TOK];
    int ntok;               /* tokens of the current line (more than MAX_TOK: MAX_TOK + 1) */
    int eof;
    size_t nlines;          /* lines of the whole text (counted once) */
    eann_parse_error *err;
} lexer;

static int perr(lexer *lx, const char *fmt, ...) {
    if (lx->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(lx->err->msg, sizeof lx->err->msg, fmt, ap);
        va_end(ap);
        lx->err->line = lx->line;
    }
    return EANN_EFORMAT;
}

/* Next line into tokens. Returns 0 at the end of the text (ntok = 0, eof),
 * 1 for a line, or EANN_EFORMAT (negated: -EANN_EFORMAT) for a bad byte. */
static int next_line(lexer *lx) {
    lx->ntok = 0;
    if (lx->pos >= lx->len) {
        lx->eof = 1;
        lx->line++;
        return 0;
    }
    lx->line++;
    size_t p = lx->pos;
    while (p < lx->len && lx->buf[p] != '\n') {
        unsigned char c = (unsigned char)lx->buf[p];
        if (c == ' ' || c == '\t') { p++; continue; }
        if (c < 32 || c > 126) {
            lx->pos = lx->len;
            return perr(lx, c == '\r' ? "carriage return (lines must end in \\n only)"
                                      : "byte 0x%02x is not printable ASCII", c), -EANN_EFORMAT;
        }
        size_t q = p;
        while (q < lx->len && lx->buf[q] != '\n' && lx->buf[q] != ' ' && lx->buf[q] != '\t' &&
               (unsigned char)lx->buf[q] >= 32 && (unsigned char)lx->buf[q] <= 126)
            q++;
        if (lx->ntok < MAX_TOK) {
            lx->tok[lx->ntok] = lx->buf + p;
            lx->toklen[lx->ntok] = (int)(q - p);
            lx->ntok++;
        } else {
            lx->ntok = MAX_TOK + 1;
        }
        p = q;
    }
    lx->pos = p < lx->len ? p + 1 : p;
    return 1;
}

static int tok_is(const lexer *lx, int i, const char *s) {
    return i < lx->ntok && lx->toklen[i] == (int)strlen(s) && !memcmp(lx->tok[i], s, strlen(s));
}

/* token i as a C string (truncated to cap-1 chars) for messages and parsing */
static const char *tok_str(const lexer *lx, int i, char *out, size_t cap) {
    if (i >= lx->ntok) { snprintf(out, cap, "%s", ""); return out; }
    size_t n = (size_t)lx->toklen[i] < cap - 1 ? (size_t)lx->toklen[i] : cap - 1;
    memcpy(out, lx->tok[i], n);
    out[n] = '\0';
    return out;
}

/* A real: [+-] digits [. digits] [(e|E) [+-] digits], finite. */
static int tok_real(lexer *lx, int i, double *v) {
    char s[80];
    if (lx->toklen[i] >= (int)sizeof s) return 0;
    tok_str(lx, i, s, sizeof s);
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int nd = 0;
    while (*p >= '0' && *p <= '9') p++, nd++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, nd++;
    }
    if (!nd) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return 0;
    double x = strtod(s, NULL);
    if (!isfinite(x)) return 0;
    *v = x;
    return 1;
}

static int tok_int(lexer *lx, int i, long lo, long hi, int *v) {
    char s[32];
    if (lx->toklen[i] >= 20) return 0;
    tok_str(lx, i, s, sizeof s);
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (!*p) return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    long x = strtol(s, NULL, 10);
    if (x < lo || x > hi) return 0;
    *v = (int)x;
    return 1;
}

/* Next header line (skipping blank and comment lines, which are kept in
 * *comments) that must start with key and have exactly ntok tokens
 * (ntok < 0: any number >= 1). */
static int header_line(lexer *lx, const char *key, int ntok, char **comments, size_t *clen) {
    for (;;) {
        int r = next_line(lx);
        if (r < 0) return EANN_EFORMAT;
        if (r == 0) return perr(lx, "unexpected end of text: expected header line '%s'", key);
        if (lx->ntok == 0) continue;
        if (lx->tok[0][0] == '#') {
            /* keep the comment line verbatim (from its '#') */
            const char *b = lx->tok[0];
            const char *e = lx->buf + lx->pos;
            if (e > b && e[-1] == '\n') e--;
            size_t n = (size_t)(e - b);
            char *nc = realloc(*comments, *clen + n + 2);
            if (!nc) return EANN_ENOMEM;
            memcpy(nc + *clen, b, n);
            nc[*clen + n] = '\n';
            *clen += n + 1;
            nc[*clen] = '\0';
            *comments = nc;
            continue;
        }
        break;
    }
    char got[40];
    if (!tok_is(lx, 0, key))
        return perr(lx, "expected header line '%s', got '%s'", key, tok_str(lx, 0, got, sizeof got));
    if (lx->ntok > MAX_TOK) return perr(lx, "'%s': too many values", key);
    if (ntok >= 0 && lx->ntok != ntok)
        return perr(lx, "'%s' needs %d value(s), got %d", key, ntok - 1, lx->ntok - 1);
    return EANN_OK;
}

static int header_real(lexer *lx, const char *key, double *v) {
    char s[40];
    if (!tok_real(lx, 1, v))
        return perr(lx, "'%s': '%s' is not a finite number", key, tok_str(lx, 1, s, sizeof s));
    return EANN_OK;
}

static int header_int(lexer *lx, const char *key, int i, long lo, long hi, int *v) {
    char s[40];
    if (!tok_int(lx, i, lo, hi, v))
        return perr(lx, "'%s': '%s' is not an integer in [%ld, %ld]", key,
                    tok_str(lx, i, s, sizeof s), lo, hi);
    return EANN_OK;
}

static int parse_v1(lexer *lx, eann_model **out) {
    eann_spec sp;
    memset(&sp, 0, sizeof sp);
    char *comments = NULL, s[80];
    size_t clen = 0;
    int rc, v;
#define TRY(x) do { if ((rc = (x)) != EANN_OK) goto fail; } while (0)
    TRY(header_line(lx, "kind", 2, &comments, &clen));
    sp.kind = tok_is(lx, 1, "dipole") ? EANN_DIPOLE : tok_is(lx, 1, "tdm") ? EANN_TDM
            : tok_is(lx, 1, "polarizability") ? EANN_POLARIZABILITY : 0;
    if (!sp.kind) {
        rc = perr(lx, "unknown kind '%s' (dipole, tdm or polarizability)", tok_str(lx, 1, s, sizeof s));
        goto fail;
    }
    TRY(header_line(lx, "nspecies", 2, &comments, &clen));
    TRY(header_int(lx, "nspecies", 1, 1, EANN_MAX_SPECIES, &sp.nspecies));
    TRY(header_line(lx, "species", sp.nspecies + 1, &comments, &clen));
    for (int q = 0; q < sp.nspecies; q++) {
        tok_str(lx, q + 1, s, sizeof s);
        if (lx->toklen[q + 1] > 2 || !valid_symbol(s)) {
            rc = perr(lx, "species: '%s' is not an element symbol (H..Rn)", s);
            goto fail;
        }
        memcpy(sp.species[q], s, strlen(s) + 1);
        for (int r = 0; r < q; r++)
            if (!strcmp(sp.species[r], s)) {
                rc = perr(lx, "species: '%s' listed twice", s);
                goto fail;
            }
    }
    TRY(header_line(lx, "masses", sp.nspecies + 1, &comments, &clen));
    for (int q = 0; q < sp.nspecies; q++)
        if (!tok_real(lx, q + 1, &sp.mass[q]) || !(sp.mass[q] > 0)) {
            rc = perr(lx, "masses: '%s' is not a positive number", tok_str(lx, q + 1, s, sizeof s));
            goto fail;
        }
    TRY(header_line(lx, "cutoff", 2, &comments, &clen));
    TRY(header_real(lx, "cutoff", &sp.cutoff));
    if (!(sp.cutoff > 0)) { rc = perr(lx, "cutoff must be positive"); goto fail; }
    TRY(header_line(lx, "min_distance", 2, &comments, &clen));
    TRY(header_real(lx, "min_distance", &sp.min_distance));
    if (!(sp.min_distance >= 0 && sp.min_distance < sp.cutoff)) {
        rc = perr(lx, "min_distance must be in [0, cutoff)");
        goto fail;
    }
    TRY(header_line(lx, "nipsin", 2, &comments, &clen));
    TRY(header_int(lx, "nipsin", 1, 1, EANN_MAX_NIPSIN, &sp.nipsin));
    TRY(header_line(lx, "nwave", 2, &comments, &clen));
    TRY(header_int(lx, "nwave", 1, 1, 4096, &sp.nwave));
    int M = 0, p3 = 1;
    for (int L = 0; L < sp.nipsin; L++, p3 *= 3) M += p3;
    TRY(header_line(lx, "norbital", 2, &comments, &clen));
    TRY(header_int(lx, "norbital", 1, 1, EANN_MAX_ORBITAL, &v));
    if (v != M) { rc = perr(lx, "norbital %d != sum of 3^L for L < nipsin (%d)", v, M); goto fail; }
    TRY(header_line(lx, "index_para", M + 1, &comments, &clen));
    for (int q = 0, L = 0, n = 1, c = 0; q < M; q++) {
        TRY(header_int(lx, "index_para", q + 1, 0, EANN_MAX_NIPSIN, &v));
        if (v != L) { rc = perr(lx, "index_para: value %d is %d, expected %d", q, v, L); goto fail; }
        if (++c == n) { L++; n *= 3; c = 0; }
    }
    TRY(header_line(lx, "ndensity", 2, &comments, &clen));
    TRY(header_int(lx, "ndensity", 1, 1, 1 << 30, &v));
    if (v != sp.nipsin * sp.nwave) {
        rc = perr(lx, "ndensity %d != nipsin * nwave (%d)", v, sp.nipsin * sp.nwave);
        goto fail;
    }
    TRY(header_line(lx, "activation", 2, &comments, &clen));
    if (!tok_is(lx, 1, "alpha_silu_beta")) {
        rc = perr(lx, "activation '%s' unknown (only alpha_silu_beta)", tok_str(lx, 1, s, sizeof s));
        goto fail;
    }
    TRY(header_line(lx, "nnets", 2, &comments, &clen));
    TRY(header_int(lx, "nnets", 1, 1, EANN_MAX_NETS, &sp.nnets));
    if (sp.nnets != (sp.kind == EANN_POLARIZABILITY ? 3 : 1)) {
        rc = perr(lx, "kind %s needs %d net(s), got %d", eann_kind_name(sp.kind),
                  sp.kind == EANN_POLARIZABILITY ? 3 : 1, sp.nnets);
        goto fail;
    }
    for (int t = 0; t < sp.nnets; t++) {
        eann_net_spec *ns = &sp.net[t];
        TRY(header_line(lx, "net", -1, &comments, &clen));
        /* net t role R nhidden H sizes n_0 .. n_{H+1} layernorm_eps e initpot v */
        if (lx->ntok < 6 || !tok_is(lx, 2, "role") || !tok_is(lx, 4, "nhidden")) {
            rc = perr(lx, "net line must read 'net T role R nhidden H sizes ... layernorm_eps E initpot V'");
            goto fail;
        }
        TRY(header_int(lx, "net", 1, t, t, &v));
        if (lx->toklen[3] >= EANN_NAME_LEN) { rc = perr(lx, "net %d: role too long", t); goto fail; }
        tok_str(lx, 3, ns->role, sizeof ns->role);
        TRY(header_int(lx, "nhidden", 5, 0, EANN_MAX_HIDDEN, &ns->nhidden));
        int H = ns->nhidden, want = 6 + 1 + (H + 2) + 4;
        if (lx->ntok != want || !tok_is(lx, 6, "sizes") || !tok_is(lx, 7 + H + 2, "layernorm_eps") ||
            !tok_is(lx, 7 + H + 4, "initpot")) {
            rc = perr(lx, "net %d: expected 'sizes' with %d numbers, then 'layernorm_eps E initpot V'",
                      t, H + 2);
            goto fail;
        }
        for (int h = 0; h < H + 2; h++) TRY(header_int(lx, "sizes", 7 + h, 1, 65536, &ns->sizes[h]));
        if (!tok_real(lx, 7 + H + 3, &ns->ln_eps) || !(ns->ln_eps > 0)) {
            rc = perr(lx, "net %d: layernorm_eps '%s' is not a positive number", t,
                      tok_str(lx, 7 + H + 3, s, sizeof s));
            goto fail;
        }
        if (!tok_real(lx, 7 + H + 5, &ns->initpot)) {
            rc = perr(lx, "net %d: initpot '%s' is not a finite number", t,
                      tok_str(lx, 7 + H + 5, s, sizeof s));
            goto fail;
        }
        /* role, input and output sizes against kind and ndensity: named here,
         * on the net's own line */
        char why[200] = "";
        if (check_net(&sp, t, why, sizeof why)) { rc = perr(lx, "%s", why); goto fail; }
    }
    TRY(header_line(lx, "narrays", 2, &comments, &clen));
    /* Before allocating anything: the declared arrays need one line each plus
     * one line per value (FORMAT.md 3), so a header declaring more than the
     * rest of the text holds (huge widths, or a truncated text) is refused
     * here; the allocation is then bounded by the text's length. */
    {
        uint64_t narr, ntheta, nwt;
        spec_counts(&sp, &narr, &ntheta, &nwt);
        if (!tok_int(lx, 1, (long)narr, (long)narr, &v)) {
            rc = perr(lx, "narrays '%s' != %d (3 + nnets * nspecies * (6 nhidden + 2))",
                      tok_str(lx, 1, s, sizeof s), (int)narr);
            goto fail;
        }
        uint64_t left = lx->nlines - (size_t)lx->line;
        if (ntheta > left || narr > left - ntheta) {
            rc = perr(lx, "the %d arrays declared need %.0f lines (%.0f values), but only %.0f "
                          "lines follow: truncated text or wrong network sizes",
                      (int)narr, (double)(ntheta + narr), (double)ntheta, (double)left);
            goto fail;
        }
    }
    eann_model *m = NULL;
    {
        char why[200] = "";
        rc = eann_model_new(&sp, &m, why, sizeof why);
        if (rc == EANN_ENOMEM) goto fail;
        if (rc) { rc = perr(lx, "%s", why); goto fail; }
    }
    m->comments = comments;
    comments = NULL;
    for (int ia = 0; ia < m->narrays; ia++) {
        const eann_array *A = &m->arrays[ia];
        int r = next_line(lx);
        if (r < 0) { rc = EANN_EFORMAT; goto fail_m; }
        if (r == 0) {
            rc = perr(lx, "unexpected end of text: expected 'array %s'", A->name);
            goto fail_m;
        }
        if (!tok_is(lx, 0, "array") || lx->ntok < 2) {
            rc = perr(lx, "expected 'array %s ...', got '%s'", A->name, tok_str(lx, 0, s, sizeof s));
            goto fail_m;
        }
        if (!tok_is(lx, 1, A->name)) {
            rc = perr(lx, "array %d: expected name '%s', got '%s'", ia + 1, A->name,
                      tok_str(lx, 1, s, sizeof s));
            goto fail_m;
        }
        int nd, d0 = -1, d1 = -1;
        if (lx->ntok < 3 || !tok_int(lx, 2, 1, 2, &nd) || lx->ntok != 3 + nd ||
            !tok_int(lx, 3, 0, 1 << 30, &d0) || (nd == 2 && !tok_int(lx, 4, 0, 1 << 30, &d1)) ||
            nd != A->ndim || d0 != A->dim[0] || (nd == 2 && d1 != A->dim[1])) {
            if (A->ndim == 2)
                rc = perr(lx, "array '%s': expected shape '2 %d %d'", A->name, A->dim[0], A->dim[1]);
            else
                rc = perr(lx, "array '%s': expected shape '1 %d'", A->name, A->dim[0]);
            goto fail_m;
        }
        for (size_t q = 0; q < A->n; q++) {
            r = next_line(lx);
            if (r < 0) { rc = EANN_EFORMAT; goto fail_m; }
            if (r == 0 || lx->ntok == 0 || tok_is(lx, 0, "array") || tok_is(lx, 0, "end")) {
                rc = perr(lx, "array '%s': %s after %zu of %zu values", A->name,
                          r == 0 ? "text ends" : "values end", q, A->n);
                goto fail_m;
            }
            if (lx->ntok != 1) {
                rc = perr(lx, "array '%s' value %zu: one number per line expected", A->name, q);
                goto fail_m;
            }
            if (!tok_real(lx, 0, &m->theta[A->off + q])) {
                rc = perr(lx, "array '%s' value %zu: '%s' is not a finite number", A->name, q,
                          tok_str(lx, 0, s, sizeof s));
                goto fail_m;
            }
        }
    }
    {
        int r = next_line(lx);
        if (r < 0) { rc = EANN_EFORMAT; goto fail_m; }
        if (r == 0 || !tok_is(lx, 0, "end") || lx->ntok != 1) {
            rc = perr(lx, r == 0 ? "missing 'end' line" : "expected 'end' after the last array");
            goto fail_m;
        }
        while ((r = next_line(lx)) == 1)
            if (lx->ntok) { rc = perr(lx, "text after 'end'"); goto fail_m; }
        if (r < 0) { rc = EANN_EFORMAT; goto fail_m; }
    }
    eann_model_sync(m);
    *out = m;
    return EANN_OK;
fail_m:
    eann_model_free(m);
fail:
    free(comments);
    return rc;
#undef TRY
}

int eann_model_parse(const char *buf, size_t len, eann_model **out, eann_parse_error *err) {
    eann_parse_error dummy;
    if (!err) err = &dummy;
    err->line = 0;
    err->msg[0] = '\0';
    if (!out || (!buf && len)) {
        snprintf(err->msg, sizeof err->msg, "invalid argument");
        return EANN_EINVAL;
    }
    *out = NULL;
    lexer lx;
    memset(&lx, 0, sizeof lx);
    lx.buf = buf;
    lx.len = len;
    lx.err = err;
    /* lines of the text, counted once: the parser refuses a header that
     * declares more values than there are lines left (no huge allocation) */
    for (const char *p = buf, *e = buf + len; p && p < e; lx.nlines++) {
        p = memchr(p, '\n', (size_t)(e - p));
        if (p) p++;
    }
    int r = next_line(&lx);
    if (r < 0) return EANN_EFORMAT;
    /* The version line selects the grammar; a later EANN_TEXT_V2 adds a
     * parse_v2 (or optional keys) here. */
    if (r == 1 && lx.ntok == 1 && tok_is(&lx, 0, "EANN_TEXT_V1") && lx.tok[0] == buf) {
        int rc = parse_v1(&lx, out);
        if (rc == EANN_ENOMEM) {
            err->line = 0;
            snprintf(err->msg, sizeof err->msg, "out of memory");
        }
        return rc;
    }
    return perr(&lx, "first line must be exactly 'EANN_TEXT_V1'");
}

/* growable text buffer for the writer */
typedef struct { char *s; size_t len, cap; int oom; } wbuf;

static void wprintf(wbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t cap = b->cap * 2 + (size_t)n + 64;
        char *ns = realloc(b->s, cap);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = cap;
    }
}

int eann_model_write(const eann_model *m, char **buf, size_t *len) {
    if (!m || !buf || !len) return EANN_EINVAL;
    *buf = NULL;
    *len = 0;
    wbuf b = {malloc(1 << 16), 0, 1 << 16, 0};
    if (!b.s) return EANN_ENOMEM;
    const eann_spec *sp = &m->spec;
    wprintf(&b, "EANN_TEXT_V1\n");
    if (m->comments) wprintf(&b, "%s", m->comments);
    wprintf(&b, "kind %s\nnspecies %d\nspecies", eann_kind_name(sp->kind), sp->nspecies);
    for (int s = 0; s < sp->nspecies; s++) wprintf(&b, " %s", sp->species[s]);
    wprintf(&b, "\nmasses");
    for (int s = 0; s < sp->nspecies; s++) wprintf(&b, " %.17g", sp->mass[s]);
    wprintf(&b, "\ncutoff %.17g\nmin_distance %.17g\nnipsin %d\nnwave %d\nnorbital %d\nindex_para",
            sp->cutoff, sp->min_distance, sp->nipsin, sp->nwave, m->norbital);
    for (int q = 0; q < m->norbital; q++) wprintf(&b, " %d", m->index_para[q]);
    wprintf(&b, "\nndensity %d\nactivation alpha_silu_beta\nnnets %d\n", m->ndensity, sp->nnets);
    for (int t = 0; t < sp->nnets; t++) {
        const eann_net_spec *ns = &sp->net[t];
        wprintf(&b, "net %d role %s nhidden %d sizes", t, ns->role, ns->nhidden);
        for (int h = 0; h < ns->nhidden + 2; h++) wprintf(&b, " %d", ns->sizes[h]);
        wprintf(&b, " layernorm_eps %.17g initpot %.17g\n", ns->ln_eps, ns->initpot);
    }
    wprintf(&b, "narrays %d\n", m->narrays);
    for (int ia = 0; ia < m->narrays; ia++) {
        const eann_array *A = &m->arrays[ia];
        if (A->ndim == 2) wprintf(&b, "array %s 2 %d %d\n", A->name, A->dim[0], A->dim[1]);
        else wprintf(&b, "array %s 1 %d\n", A->name, A->dim[0]);
        for (size_t q = 0; q < A->n; q++) wprintf(&b, "%.17g\n", m->theta[A->off + q]);
    }
    wprintf(&b, "end\n");
    if (b.oom) {
        free(b.s);
        return EANN_ENOMEM;
    }
    *buf = b.s;
    *len = b.len;
    return EANN_OK;
}

/* TRAINING: losses, exact gradients, normalisation and optimisers for EANN
 * tensorial models (declared in eann.h, section TRAINING).
 *
 * ===========================================================================
 * GRADIENT DERIVATION
 * ===========================================================================
 * Notation: theta = all trainable numbers (eann.h PARAMETER LAYOUT); per
 * frame the loss l_f (eann.h, section TRAINING). Positions are data, so nothing below
 * needs derivatives with respect to positions except where the model output
 * itself is a coordinate gradient (polarizability).
 *
 * Dipole (FORMAT.md sect. 5, EANN chapter Eq. 1 and Eq. 6):
 *   mu = sum_i q_i x'_i, l = |mu - mu_ref|^2/3 + w_q (sum_i q_i - Q)^2
 *   dl/dq_i = (2/3)(mu - mu_ref).x'_i + 2 w_q (sum q - Q); then ordinary
 *   backpropagation through net 0 (eann_net_backward) and the descriptor.
 *
 * Transition dipole (FORMAT.md sect. 5, EANN chapter Eqs. 7-8):
 *   t = u + v + W (u x v), u = sum q1_i x'_i, v = sum q2_i x'_i, W = sum w_i.
 *   l = min_s |t - s t_ref|^2/3 (s = +-1). Away from the switch surface
 *   t.t_ref = 0 the minimum is one smooth branch, so dl/dt = (2/3)(t - s t_ref)
 *   with the active s. With g = dl/dt:
 *     dl/du = g + W (v x g)   (because g.(u x v) = u.(v x g))
 *     dl/dv = g + W (g x u)   (g.(u x v) = v.(g x u))
 *     dl/dW = g.(u x v)
 *   and dl/dq1_i = dl/du . x'_i, dl/dq2_i = dl/dv . x'_i, dl/dw_i = dl/dW.
 *
 * Polarizability (FORMAT.md sect. 5, EANN chapter Eqs. 10-12):
 *   alpha = Pm + Pm^T + sum_i h_i h_i^T + E_2 I,  Pm[a][b] = sum_i x'_ia g_ib,
 *   g_i = dE_0/dx_i, h_i = dE_1/dx_i, E_t = sum_i y_i^(t).
 *   With G = dl/dalpha (= (2/9)(alpha - alpha_ref)) and Gs = G + G^T:
 *     dl/dg_i = Gs x'_i =: gamma_i,  dl/dh_i = Gs h_i =: gamma'_i,  dl/dE_2 = tr G.
 *   The E_2 part is ordinary backpropagation of net 2 with dl/dy_i = tr G.
 *   For net 0 (and likewise net 1 with gamma'):
 *     dl/dtheta (through g) = sum_i gamma_i . d g_i/dtheta = d Phi/dtheta,
 *     Phi(theta) = sum_i gamma_i . g_i = d/de E_0(x + e gamma) at e = 0,
 *   with gamma held fixed (it is the upstream adjoint). Phi is the FORWARD
 *   TANGENT of E_0 along the position direction gamma, so dl/dtheta is the
 *   reverse-mode gradient of a forward-mode (tangent) computation. We write
 *   the tangent pass explicitly (dotted quantities) and then backpropagate
 *   through both the primal and the tangent pass (barred quantities; p_ is
 *   the adjoint of the primal p, pd_ that of the tangent pd).
 *
 *   Descriptor tangent, per pair (i, j) (FORMAT.md 4.2-4.5; the pair list
 *   is held fixed as FORMAT.md sect. 5 says):
 *     vd = gamma_i - gamma_j, dd = v.vd/d, fcd = fc'(d) dd,
 *     Rd_k = -2 inta_k (d - rs_k) R_k dd,  Wd_k = c_k Rd_k  (c = params[s_j]),
 *     Ad_0 = fcd, Ad_m = Ad_par v[ax] + A_par vd[ax],
 *     Sd_i[m][k] = sum_j (Ad_m W_k + A_m Wd_k),
 *     rhod_i[L,k] = sum_{m in L} 2 S[m][k] Sd[m][k].
 *   Network tangent, per hidden layer (FORMAT.md 4.6):
 *     zd = W xd;  zhatd = J zd with the LayerNorm Jacobian
 *       J = r (I - 11^T/c - zhat zhat^T/c), r = 1/sqrt(var+eps)
 *       (J is symmetric: the LayerNorm backward routine with gamma = 1 applies it);
 *     yd = gamma_ln * zhatd;  ad = alpha beta phi'(beta y) yd, with
 *       phi(t) = t sig(t), phi' = sig + t sig (1-sig),
 *       phi'' = sig (1-sig) (2 + t (1 - 2 sig));
 *     output: outd = W_H ad_{H-1};  Phi = sum_i outd_i[0].
 *   Reverse pass, seeds outd_ = 1 (column 0), out_ = 0:
 *     linear z = W x + b, zd = W xd:
 *       x_ = W^T z_, xd_ = W^T zd_, W_ += z_ x^T + zd_ xd^T, b_ += z_
 *     activation a = alpha phi(t), ad = alpha beta phi'(t) yd, t = beta y:
 *       yd_ = ad_ alpha beta phi'
 *       y_  = a_ alpha beta phi' + ad_ alpha beta^2 phi'' yd
 *       alpha_ += a_ phi + ad_ beta phi' yd
 *       beta_  += a_ alpha phi' y + ad_ alpha (phi' + t phi'') yd
 *     LayerNorm y = g zhat + b, yd = g zhatd:
 *       g_ += y_ zhat + yd_ zhatd, b_ += y_,
 *       zd_ = J (g yd_)   (J symmetric),
 *       z_  = J (g y_) + [d/dz of F = Ab . zhatd(z, zd), Ab = g yd_]:
 *         write zhatd = r (u - zhat m), u = zd - mean(zd), m = mean(zhat u);
 *         F = r a1 - r m a2, a1 = Ab.u, a2 = Ab.zhat;
 *         dF/dzhat_i = -r (u_i a2/c + m Ab_i) =: Zb_i, dF/dr (explicit) = a1 - m a2 =: rb;
 *         through zhat = (z - mu) r, r = (var+eps)^(-1/2):
 *         z_ += r (Zb - mean(Zb)) - (r^2 zhat / c) (rb + sum_i Zb_i zhat_i / r).
 *   Descriptor reverse (A, Ad depend on positions only; R, Rd also on rs, inta):
 *     S_[m][k] = 2 S rho_[L,k] + 2 Sd rhod_[L,k],  Sd_[m][k] = 2 S rhod_[L,k],
 *     u1_k = sum_m (S_[m][k] A_m + Sd_[m][k] Ad_m), u2_k = sum_m Sd_[m][k] A_m,
 *     c_[s_j][k] += R_k u1_k + Rd_k u2_k,  R_k_ = c_k u1_k,  Rd_k_ = c_k u2_k,
 *     with x = d - rs: dR/drs = 2 inta x R, dR/dinta = -x^2 R,
 *     dRd/drs = dd 2 inta R (1 - 2 inta x^2), dRd/dinta = -dd 2 x R (1 - inta x^2).
 *   (For the dipole, tdm and E_2 parts the same formulas with Sd_ = rhod_ = 0.)
 *   tests/test_eann_train.c checks every target against central finite
 *   differences of the loss (relative error < 1e-6).
 * ===========================================================================
 */

/* ------------------------------------------------------------------------ */
/* workspace                                                                 */
/* ------------------------------------------------------------------------ */

struct eann_trainws {
    eann_work *w;
    int cap, maxw, maxh;
    double *gam;                 /* [N][3] tangent direction, by row */
    double *gpos, *hpos;         /* [N][3] g = dE_0/dx, h = dE_1/dx (original order) */
    double *Sd, *Sb, *Sdb;       /* [N][M][K] */
    double *rhod, *rhob, *rhodb; /* [N][D] */
    double *zd[EANN_MAX_HIDDEN], *zhd[EANN_MAX_HIDDEN], *yd[EANN_MAX_HIDDEN],
        *ad[EANN_MAX_HIDDEN];            /* [N][width] tangent caches of one net */
    double *outd;                        /* [N][maxw] */
    double *b1, *b2, *b3, *b4, *b5, *b6; /* [N][maxw] adjoint scratch */
    double *dout;                        /* [N][maxw] */
    double *zeros, *ones;                /* [maxw] */
};

eann_work *eann_trainws_work(eann_trainws *tw) { return tw ? tw->w : NULL; }

void eann_trainws_free(eann_trainws *tw) {
    if (!tw) return;
    eann_work_free(tw->w);
    free(tw->gam);
    free(tw->gpos);
    free(tw->hpos);
    free(tw->Sd);
    free(tw->Sb);
    free(tw->Sdb);
    free(tw->rhod);
    free(tw->rhob);
    free(tw->rhodb);
    for (int h = 0; h < EANN_MAX_HIDDEN; h++) {
        free(tw->zd[h]);
        free(tw->zhd[h]);
        free(tw->yd[h]);
        free(tw->ad[h]);
    }
    free(tw->outd);
    free(tw->b1);
    free(tw->b2);
    free(tw->b3);
    free(tw->b4);
    free(tw->b5);
    free(tw->b6);
    free(tw->dout);
    free(tw->zeros);
    free(tw->ones);
    free(tw);
}

/* Training workspace arrays: alloc_arr with its overflow guard, typed. */
static double *dalloc(size_t n, int *fail) { return alloc_arr(n, sizeof(double), fail); }

int eann_trainws_new(const eann_model *m, int natoms_max, eann_trainws **out) {
    if (!m || !out || natoms_max < 1) return EANN_EINVAL;
    *out = NULL;
    eann_trainws *tw = calloc(1, sizeof *tw);
    if (!tw) return EANN_ENOMEM;
    int rc = eann_work_new(m, natoms_max, &tw->w);
    if (rc) {
        free(tw);
        return rc;
    }
    const size_t N = (size_t)natoms_max, M = (size_t)m->norbital, K = (size_t)m->spec.nwave;
    const size_t D = (size_t)m->ndensity;
    int maxw = (int)D, maxh = 0, fail = 0;
    for (int t = 0; t < m->spec.nnets; t++) {
        const eann_net_spec *ns = &m->spec.net[t];
        if (ns->nhidden > maxh) maxh = ns->nhidden;
        for (int h = 0; h <= ns->nhidden + 1; h++)
            if (ns->sizes[h] > maxw) maxw = ns->sizes[h];
    }
    tw->cap = natoms_max;
    tw->maxw = maxw;
    tw->maxh = maxh;
    const size_t NW = N * (size_t)maxw;
    tw->gam = dalloc(N * 3, &fail);
    tw->gpos = dalloc(N * 3, &fail);
    tw->hpos = dalloc(N * 3, &fail);
    tw->Sd = dalloc(N * M * K, &fail);
    tw->Sb = dalloc(N * M * K, &fail);
    tw->Sdb = dalloc(N * M * K, &fail);
    tw->rhod = dalloc(N * D, &fail);
    tw->rhob = dalloc(N * D, &fail);
    tw->rhodb = dalloc(N * D, &fail);
    for (int h = 0; h < maxh; h++) {
        tw->zd[h] = dalloc(NW, &fail);
        tw->zhd[h] = dalloc(NW, &fail);
        tw->yd[h] = dalloc(NW, &fail);
        tw->ad[h] = dalloc(NW, &fail);
    }
    tw->outd = dalloc(NW, &fail);
    tw->b1 = dalloc(NW, &fail);
    tw->b2 = dalloc(NW, &fail);
    tw->b3 = dalloc(NW, &fail);
    tw->b4 = dalloc(NW, &fail);
    tw->b5 = dalloc(NW, &fail);
    tw->b6 = dalloc(NW, &fail);
    tw->dout = dalloc(NW, &fail);
    tw->zeros = dalloc((size_t)maxw, &fail);
    tw->ones = dalloc((size_t)maxw, &fail);
    if (fail) {
        eann_trainws_free(tw);
        return EANN_ENOMEM;
    }
    for (int i = 0; i < maxw; i++)
        tw->ones[i] = 1.0;
    *out = tw;
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* descriptor: tangent forward and parameter backward                        */
/* ------------------------------------------------------------------------ */

/* A[m] (and its tangent Ad[m] if Ad != NULL) of one pair, FORMAT.md 4.3. */
static void angular_t(const eann_model *m, double fc, double fcd, const double *v, const double *vd,
                      double *A, double *Ad) {
    A[0] = fc;
    if (Ad) Ad[0] = fcd;
    for (int q = 1; q < m->norbital; q++) {
        int par = m->orb_parent[q], ax = m->orb_axis[q];
        A[q] = A[par] * v[ax];
        if (Ad) Ad[q] = Ad[par] * v[ax] + A[par] * vd[ax];
    }
}

/* Tangent of one pair: dd = d d along gamma, Rd [K]. */
static double pair_tangent(const eann_model *m, const eann_work *w, const double *gam, int i, int p,
                           double *vd, double *Rd) {
    const int K = m->spec.nwave, j = w->pair_j[p], sj = w->row_species[j];
    const double *v = w->pair_v + 3 * (size_t)p, d = w->pair_d[p];
    for (int a = 0; a < 3; a++)
        vd[a] = gam[3 * i + a] - gam[3 * j + a];
    double dd = (v[0] * vd[0] + v[1] * vd[1] + v[2] * vd[2]) / d;
    const double *rs = m->theta + m->off_rs + (size_t)sj * K;
    const double *inta = m->theta + m->off_inta + (size_t)sj * K;
    const double *R = w->pair_r + (size_t)p * K;
    for (int k = 0; k < K; k++)
        Rd[k] = -2.0 * inta[k] * (d - rs[k]) * R[k] * dd;
    return dd;
}

/* Sd and rhod of every row for the direction tw->gam (rows). */
static void descriptor_tangent(const eann_model *m, eann_trainws *tw) {
    const eann_work *w = tw->w;
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    const double *par = m->theta + m->off_params;
    double A[EANN_MAX_ORBITAL], Ad[EANN_MAX_ORBITAL], vd[3];
    double *Rd = tw->b1, *Wd = tw->b2; /* [K] scratch (K <= maxw since D = P K) */
    for (int i = 0; i < w->natoms; i++) {
        double *Sd = tw->Sd + (size_t)i * M * K;
        memset(Sd, 0, sizeof(double) * (size_t)M * K);
        for (int p = w->pair_start[i]; p < w->pair_start[i + 1]; p++) {
            double dd = pair_tangent(m, w, tw->gam, i, p, vd, Rd);
            angular_t(m, w->pair_fc[p], w->pair_dfc[p] * dd, w->pair_v + 3 * (size_t)p, vd, A, Ad);
            const double *W = w->pair_w + (size_t)p * K;
            const double *c = par + (size_t)w->row_species[w->pair_j[p]] * K;
            for (int k = 0; k < K; k++)
                Wd[k] = c[k] * Rd[k];
            for (int q = 0; q < M; q++) {
                double *Sq = Sd + (size_t)q * K;
                for (int k = 0; k < K; k++)
                    Sq[k] += Ad[q] * W[k] + A[q] * Wd[k];
            }
        }
        const double *S = w->S + (size_t)i * M * K;
        double *rd = tw->rhod + (size_t)i * D;
        memset(rd, 0, sizeof(double) * (size_t)D);
        for (int q = 0; q < M; q++) {
            double *rl = rd + (size_t)m->index_para[q] * K;
            for (int k = 0; k < K; k++)
                rl[k] += 2.0 * S[q * K + k] * Sd[q * K + k];
        }
    }
}

/* ADD dl/d(params, rs, inta) into dtheta from rho_ [rows][D] and (if rhodb != NULL)
 * rhod_ of the tangent pass (tw->gam, tw->Sd valid). */
static void descriptor_param_backward(const eann_model *m, eann_trainws *tw, const double *rhob,
                                      const double *rhodb, double *dtheta) {
    const eann_work *w = tw->w;
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    double A[EANN_MAX_ORBITAL], Ad[EANN_MAX_ORBITAL], vd[3];
    double *Rd = tw->b1, *u1 = tw->b2, *u2 = tw->b3;
    for (int i = 0; i < w->natoms; i++) {
        const double *S = w->S + (size_t)i * M * K, *Sd = tw->Sd + (size_t)i * M * K;
        double *Sb = tw->Sb + (size_t)i * M * K, *Sdb = tw->Sdb + (size_t)i * M * K;
        const double *rb = rhob + (size_t)i * D, *rdb = rhodb ? rhodb + (size_t)i * D : NULL;
        for (int q = 0; q < M; q++) {
            size_t L = (size_t)m->index_para[q] * K;
            for (int k = 0; k < K; k++) {
                size_t e = (size_t)q * K + k;
                Sb[e] = 2.0 * S[e] * rb[L + k];
                if (rdb) {
                    Sb[e] += 2.0 * Sd[e] * rdb[L + k];
                    Sdb[e] = 2.0 * S[e] * rdb[L + k];
                }
            }
        }
        for (int p = w->pair_start[i]; p < w->pair_start[i + 1]; p++) {
            const double *R = w->pair_r + (size_t)p * K;
            double *dc = dtheta + m->off_params + (size_t)w->row_species[w->pair_j[p]] * K;
            const int sj = w->row_species[w->pair_j[p]];
            const double *c = m->theta + m->off_params + (size_t)sj * K;
            const double *rs = m->theta + m->off_rs + (size_t)sj * K;
            const double *inta = m->theta + m->off_inta + (size_t)sj * K;
            double *drs = dtheta + m->off_rs + (size_t)sj * K;
            double *dinta = dtheta + m->off_inta + (size_t)sj * K;
            const double d = w->pair_d[p];
            if (!rdb) {
                angular_t(m, w->pair_fc[p], 0, w->pair_v + 3 * (size_t)p, NULL, A, NULL);
                for (int k = 0; k < K; k++)
                    u1[k] = 0;
                for (int q = 0; q < M; q++)
                    for (int k = 0; k < K; k++)
                        u1[k] += Sb[q * K + k] * A[q];
                for (int k = 0; k < K; k++) {
                    /* dR/drs = 2 inta (d - rs) R, dR/dinta = -(d - rs)^2 R */
                    double x = d - rs[k];
                    dc[k] += R[k] * u1[k];
                    drs[k] += c[k] * u1[k] * (2.0 * inta[k] * x * R[k]);
                    dinta[k] += c[k] * u1[k] * (-(x * x) * R[k]);
                }
                continue;
            }
            double dd = pair_tangent(m, w, tw->gam, i, p, vd, Rd);
            angular_t(m, w->pair_fc[p], w->pair_dfc[p] * dd, w->pair_v + 3 * (size_t)p, vd, A, Ad);
            for (int k = 0; k < K; k++)
                u1[k] = u2[k] = 0;
            for (int q = 0; q < M; q++)
                for (int k = 0; k < K; k++) {
                    u1[k] += Sb[q * K + k] * A[q] + Sdb[q * K + k] * Ad[q];
                    u2[k] += Sdb[q * K + k] * A[q];
                }
            for (int k = 0; k < K; k++) {
                /* R_ = c u1, Rd_ = c u2; Rd = -2 inta x R dd (x = d - rs):
                 * dRd/drs = dd 2 inta R (1 - 2 inta x^2), dRd/dinta = -dd 2 x R (1 - inta x^2) */
                double x = d - rs[k];
                dc[k] += R[k] * u1[k] + Rd[k] * u2[k];
                drs[k] +=
                    c[k] * (u1[k] * (2.0 * inta[k] * x * R[k]) +
                            u2[k] * (dd * 2.0 * inta[k] * R[k] * (1.0 - 2.0 * inta[k] * x * x)));
                dinta[k] += c[k] * (u1[k] * (-(x * x) * R[k]) +
                                    u2[k] * (-dd * 2.0 * x * R[k] * (1.0 - inta[k] * x * x)));
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* network: tangent forward and reverse through primal + tangent             */
/* ------------------------------------------------------------------------ */

/* Tangent of net t (eann_net_forward(t) done) for input tangent tw->rhod:
 * fills tw->zd/zhd/yd/ad and tw->outd [rows][n_out]. */
static void net_tangent(const eann_model *m, eann_trainws *tw, int t) {
    eann_work *w = tw->w;
    const eann_net_spec *ns = &m->spec.net[t];
    const int H = ns->nhidden, D = m->ndensity;
    const double *th = m->theta;
    for (int s = 0; s < m->spec.nspecies; s++) {
        int r0 = w->sp_start[s], n = w->sp_start[s + 1] - r0;
        if (n == 0) continue;
        const double *xd = tw->rhod + (size_t)r0 * D;
        for (int h = 0; h < H; h++) {
            const eann_layer *L = eann_layer_of(m, t, s, h);
            size_t c = (size_t)L->nout, o = (size_t)r0 * c;
            gemm_sel(tw->w->simd, n, L->nin, L->nout, xd, m->wt + L->wt, tw->zeros, tw->zd[h] + o);
            /* zhatd = J zd (LayerNorm Jacobian, symmetric) */
            eann_layernorm_backward(n, L->nout, w->zhat[t][h] + o, w->rstd[t][h] + r0, tw->ones,
                                    tw->zd[h] + o, tw->zhd[h] + o, NULL, NULL);
            const double *g = th + L->ln_g;
            for (int r = 0; r < n; r++)
                for (size_t q = 0; q < c; q++)
                    tw->yd[h][o + r * c + q] = g[q] * tw->zhd[h][o + r * c + q];
            /* ad = alpha beta phi'(beta y) yd (diagonal Jacobian of the activation) */
            eann_act_backward(n, L->nout, w->y[t][h] + o, w->sig[t][h] + o, th + L->act_a,
                              th + L->act_b, tw->yd[h] + o, tw->ad[h] + o, NULL, NULL);
            xd = tw->ad[h] + o;
        }
        const eann_layer *L = eann_layer_of(m, t, s, H);
        gemm_sel(tw->w->simd, n, L->nin, L->nout, xd, m->wt + L->wt, tw->zeros,
                            tw->outd + (size_t)r0 * L->nout);
    }
}

/* Reverse through net t's primal and tangent passes: outb (may be NULL =
 * zero) and outdb [rows][n_out] are the adjoints of out and outd. ADDS the
 * weight gradients into dtheta, SETS tw->rhob and tw->rhodb. */
static void net_tangent_backward(const eann_model *m, eann_trainws *tw, int t, const double *outb,
                                 const double *outdb, double *dtheta) {
    eann_work *w = tw->w;
    const eann_net_spec *ns = &m->spec.net[t];
    const int H = ns->nhidden, D = m->ndensity;
    const double *th = m->theta;
    for (int s = 0; s < m->spec.nspecies; s++) {
        int r0 = w->sp_start[s], n = w->sp_start[s + 1] - r0;
        if (n == 0) continue;
        double *ab = tw->b1, *adb = tw->b2, *yb = tw->b3, *ydb = tw->b4, *zb = tw->b5,
               *zdb = tw->b6;
        const eann_layer *L = eann_layer_of(m, t, s, H);
        size_t no = (size_t)L->nout;
        const double *x = H ? w->a[t][H - 1] + (size_t)r0 * L->nin : w->rho + (size_t)r0 * D;
        const double *xd = H ? tw->ad[H - 1] + (size_t)r0 * L->nin : tw->rhod + (size_t)r0 * D;
        double *xb = H ? ab : tw->rhob + (size_t)r0 * D;
        double *xdb = H ? adb : tw->rhodb + (size_t)r0 * D;
        if (outb)
            linear_backward(tw->w->simd, n, L->nin, L->nout, x, th + L->w, outb + (size_t)r0 * no, xb,
                                 dtheta + L->w, dtheta + L->b);
        else
            memset(xb, 0, sizeof(double) * (size_t)n * L->nin);
        linear_backward(tw->w->simd, n, L->nin, L->nout, xd, th + L->w, outdb + (size_t)r0 * no, xdb,
                             dtheta + L->w, NULL);
        for (int h = H - 1; h >= 0; h--) {
            L = eann_layer_of(m, t, s, h);
            const int c = L->nout;
            const size_t o = (size_t)r0 * c;
            const double *al = th + L->act_a, *be = th + L->act_b, *g = th + L->ln_g;
            double *dal = dtheta + L->act_a, *dbe = dtheta + L->act_b;
            double *dg = dtheta + L->ln_g, *dbl = dtheta + L->ln_b;
            /* activation */
            for (int r = 0; r < n; r++)
                for (int q = 0; q < c; q++) {
                    size_t e = (size_t)r * c + q;
                    double y = w->y[t][h][o + e], sg = w->sig[t][h][o + e], yd = tw->yd[h][o + e];
                    double tt = be[q] * y, ph = tt * sg, ph1 = sg + tt * sg * (1.0 - sg);
                    double ph2 = sg * (1.0 - sg) * (2.0 + tt * (1.0 - 2.0 * sg));
                    double A_ = ab[e], Ad_ = adb[e];
                    ydb[e] = Ad_ * (al[q] * be[q] * ph1);
                    yb[e] = A_ * (al[q] * be[q] * ph1) + Ad_ * (al[q] * be[q] * be[q] * ph2 * yd);
                    dal[q] += A_ * ph + Ad_ * (be[q] * ph1 * yd);
                    dbe[q] += A_ * (al[q] * ph1 * y) + Ad_ * (al[q] * (ph1 + tt * ph2) * yd);
                }
            /* LayerNorm affine part: g_ += y_ zhat + yd_ zhatd, b_ += y_ */
            for (int r = 0; r < n; r++)
                for (int q = 0; q < c; q++) {
                    size_t e = (size_t)r * c + q;
                    dg[q] += yb[e] * w->zhat[t][h][o + e] + ydb[e] * tw->zhd[h][o + e];
                    dbl[q] += yb[e];
                }
            /* zd_ = J (g yd_), z_ = J (g y_) + second-order term */
            eann_layernorm_backward(n, c, w->zhat[t][h] + o, w->rstd[t][h] + r0, g, ydb, zdb, NULL,
                                    NULL);
            eann_layernorm_backward(n, c, w->zhat[t][h] + o, w->rstd[t][h] + r0, g, yb, zb, NULL,
                                    NULL);
            for (int r = 0; r < n; r++) {
                const double *zh = w->zhat[t][h] + o + (size_t)r * c;
                const double *zdr = tw->zd[h] + o + (size_t)r * c;
                const double *ydbr = ydb + (size_t)r * c;
                double *zbr = zb + (size_t)r * c;
                double rr = w->rstd[t][h][r0 + r];
                double mzd = 0;
                for (int q = 0; q < c; q++)
                    mzd += zdr[q];
                mzd /= c;
                double a1 = 0, a2 = 0, mm = 0;
                for (int q = 0; q < c; q++) {
                    double Ab = g[q] * ydbr[q], u = zdr[q] - mzd;
                    a1 += Ab * u;
                    a2 += Ab * zh[q];
                    mm += zh[q] * u;
                }
                mm /= c;
                double rb = a1 - mm * a2, mZb = 0, sZz = 0;
                /* Zb_q = -r (u_q a2 / c + mm Ab_q), recomputed in both loops */
                for (int q = 0; q < c; q++) {
                    double Zb = -rr * ((zdr[q] - mzd) * a2 / c + mm * g[q] * ydbr[q]);
                    mZb += Zb;
                    sZz += Zb * zh[q];
                }
                mZb /= c;
                double rbt = rb + sZz / rr;
                for (int q = 0; q < c; q++) {
                    double Zb = -rr * ((zdr[q] - mzd) * a2 / c + mm * g[q] * ydbr[q]);
                    zbr[q] += rr * (Zb - mZb) - (rr * rr * zh[q] / c) * rbt;
                }
            }
            /* linear: x_ = W^T z_, xd_ = W^T zd_, W_ += z_ x^T + zd_ xd^T, b_ += z_ */
            x = h ? w->a[t][h - 1] + (size_t)r0 * L->nin : w->rho + (size_t)r0 * D;
            xd = h ? tw->ad[h - 1] + (size_t)r0 * L->nin : tw->rhod + (size_t)r0 * D;
            xb = h ? ab : tw->rhob + (size_t)r0 * D;
            xdb = h ? adb : tw->rhodb + (size_t)r0 * D;
            linear_backward(tw->w->simd, n, L->nin, c, x, th + L->w, zb, xb, dtheta + L->w, dtheta + L->b);
            linear_backward(tw->w->simd, n, L->nin, c, xd, th + L->w, zdb, xdb, dtheta + L->w, NULL);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* heads and per-molecule loss                                               */
/* ------------------------------------------------------------------------ */

double eann_phase_free_sq(const double t[3], const double r[3], int *sign) {
    double ep = 0, em = 0;
    for (int a = 0; a < 3; a++) {
        ep += (t[a] - r[a]) * (t[a] - r[a]);
        em += (t[a] + r[a]) * (t[a] + r[a]);
    }
    if (sign) *sign = em < ep ? -1 : 1;
    return em < ep ? em : ep;
}

/* grad [natoms][3] (original order) = d(sum_i out_i[0] of net t)/dx after
 * eann_net_forward(t). Uses w->drho, w->dS, tw->dout. */
static void position_gradient(const eann_model *m, eann_trainws *tw, int t, double *grad) {
    eann_work *w = tw->w;
    const int no = m->spec.net[t].sizes[m->spec.net[t].nhidden + 1];
    memset(grad, 0, sizeof(double) * 3 * (size_t)w->natoms);
    memset(tw->dout, 0, sizeof(double) * (size_t)w->natoms * no);
    for (int r = 0; r < w->natoms; r++)
        tw->dout[(size_t)r * no] = 1.0;
    eann_net_backward(m, w, t, tw->dout, NULL);
    eann_descriptor_backward(m, w, w->drho, grad, NULL);
}

/* Polarizability parts after setup + descriptor: runs nets 0..2, fills
 * tw->gpos, tw->hpos, Psym = Pm + Pm^T, Hh = sum h h^T, *E2. */
static void pol_forward(const eann_model *m, eann_trainws *tw, double *Psym, double *Hh,
                        double *E2) {
    eann_work *w = tw->w;
    const int N = w->natoms;
    eann_net_forward(m, w, 0);
    position_gradient(m, tw, 0, tw->gpos);
    eann_net_forward(m, w, 1);
    position_gradient(m, tw, 1, tw->hpos);
    eann_net_forward(m, w, 2);
    *E2 = eann_net_sum(m, w, 2);
    double Pm[9] = {0};
    for (int q = 0; q < 9; q++)
        Hh[q] = 0;
    for (int i = 0; i < N; i++) {
        const double *x = w->x + 3 * (size_t)w->row_of_atom[i];
        const double *g = tw->gpos + 3 * (size_t)i, *h = tw->hpos + 3 * (size_t)i;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                Pm[3 * a + b] += x[a] * g[b];
                Hh[3 * a + b] += h[a] * h[b];
            }
    }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            Psym[3 * a + b] = Pm[3 * a + b] + Pm[3 * b + a];
}

/* Gradient through the coordinate-gradient head of net t: dl/dtheta of
 * sum_i gamma_i . (dE_t/dx_i), gamma = tw->gam (rows), set by the caller. */
static void grad_head_backward(const eann_model *m, eann_trainws *tw, int t, double *grad) {
    eann_work *w = tw->w;
    const int no = m->spec.net[t].sizes[m->spec.net[t].nhidden + 1];
    descriptor_tangent(m, tw);
    net_tangent(m, tw, t);
    memset(tw->dout, 0, sizeof(double) * (size_t)w->natoms * no);
    for (int r = 0; r < w->natoms; r++)
        tw->dout[(size_t)r * no] = 1.0;
    net_tangent_backward(m, tw, t, NULL, tw->dout, grad);
    descriptor_param_backward(m, tw, tw->rhob, tw->rhodb, grad);
}

int eann_sample_loss(const eann_model *m, eann_trainws *tw, const eann_sample *smp,
                     double charge_weight, double scale, double *grad, double *pred, double *sqerr,
                     double *loss) {
    if (!m || !tw || !smp || !pred) return EANN_EINVAL;
    eann_work *w = tw->w;
    int rc = eann_setup(m, w, smp->natoms, smp->species, smp->pos);
    if (rc) return rc;
    eann_descriptor_forward(m, w);
    const int N = smp->natoms;
    double sq = 0, l = 0;
    if (m->spec.kind == EANN_DIPOLE) {
        /* mu = sum q_i x'_i (EANN chapter Eq. 1), penalty (sum q - Q)^2 (Eq. 6) */
        const int no = m->spec.net[0].sizes[m->spec.net[0].nhidden + 1];
        eann_net_forward(m, w, 0);
        double mu[3] = {0, 0, 0}, qs = 0;
        for (int i = 0; i < N; i++) {
            int r = w->row_of_atom[i];
            double q = w->out[0][(size_t)r * no];
            qs += q;
            for (int a = 0; a < 3; a++)
                mu[a] += q * w->x[3 * r + a];
        }
        double e[3], pen = qs - smp->charge;
        for (int a = 0; a < 3; a++) {
            pred[a] = mu[a];
            e[a] = mu[a] - smp->ref[a];
            sq += e[a] * e[a];
        }
        l = sq / 3.0 + charge_weight * pen * pen;
        if (grad) {
            memset(tw->dout, 0, sizeof(double) * (size_t)N * no);
            for (int r = 0; r < N; r++) {
                const double *x = w->x + 3 * (size_t)r;
                tw->dout[(size_t)r * no] =
                    scale * ((2.0 / 3.0) * (e[0] * x[0] + e[1] * x[1] + e[2] * x[2]) +
                             2.0 * charge_weight * pen);
            }
            eann_net_backward(m, w, 0, tw->dout, grad);
            descriptor_param_backward(m, tw, w->drho, NULL, grad);
        }
    } else if (m->spec.kind == EANN_TDM) {
        /* t = u + v + W (u x v) (EANN chapter Eqs. 7-8), phase-free loss */
        eann_net_forward(m, w, 0);
        double u[3], v[3], W;
        eann_tdm_parts(m, w, u, v, &W);
        double c[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                       u[0] * v[1] - u[1] * v[0]};
        double t[3];
        for (int a = 0; a < 3; a++)
            t[a] = u[a] + v[a] + W * c[a];
        int sg;
        sq = eann_phase_free_sq(t, smp->ref, &sg);
        for (int a = 0; a < 3; a++)
            pred[a] = sg * t[a];
        l = sq / 3.0;
        if (grad) {
            double g[3], ub[3], vb[3];
            for (int a = 0; a < 3; a++)
                g[a] = scale * (2.0 / 3.0) * (t[a] - sg * smp->ref[a]);
            double vxg[3] = {v[1] * g[2] - v[2] * g[1], v[2] * g[0] - v[0] * g[2],
                             v[0] * g[1] - v[1] * g[0]};
            double gxu[3] = {g[1] * u[2] - g[2] * u[1], g[2] * u[0] - g[0] * u[2],
                             g[0] * u[1] - g[1] * u[0]};
            for (int a = 0; a < 3; a++) {
                ub[a] = g[a] + W * vxg[a];
                vb[a] = g[a] + W * gxu[a];
            }
            double Wb = g[0] * c[0] + g[1] * c[1] + g[2] * c[2];
            for (int r = 0; r < N; r++) {
                const double *x = w->x + 3 * (size_t)r;
                tw->dout[3 * (size_t)r] = ub[0] * x[0] + ub[1] * x[1] + ub[2] * x[2];
                tw->dout[3 * (size_t)r + 1] = vb[0] * x[0] + vb[1] * x[1] + vb[2] * x[2];
                tw->dout[3 * (size_t)r + 2] = Wb;
            }
            eann_net_backward(m, w, 0, tw->dout, grad);
            descriptor_param_backward(m, tw, w->drho, NULL, grad);
        }
    } else {
        /* alpha = Pm + Pm^T + sum h h^T + E_2 I (EANN chapter Eqs. 10-12) */
        double Ps[9], Hh[9], E2;
        pol_forward(m, tw, Ps, Hh, &E2);
        double e[9];
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                int q = 3 * a + b;
                pred[q] = Ps[q] + Hh[q] + (a == b ? E2 : 0.0);
                e[q] = pred[q] - smp->ref[q];
                sq += e[q] * e[q];
            }
        l = sq / 9.0;
        if (grad) {
            double G[9], Gs[9];
            for (int q = 0; q < 9; q++)
                G[q] = scale * (2.0 / 9.0) * e[q];
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++)
                    Gs[3 * a + b] = G[3 * a + b] + G[3 * b + a];
            /* net 2: dl/dy_i = tr G */
            const int no2 = m->spec.net[2].sizes[m->spec.net[2].nhidden + 1];
            memset(tw->dout, 0, sizeof(double) * (size_t)N * no2);
            for (int r = 0; r < N; r++)
                tw->dout[(size_t)r * no2] = G[0] + G[4] + G[8];
            eann_net_backward(m, w, 2, tw->dout, grad);
            descriptor_param_backward(m, tw, w->drho, NULL, grad);
            /* net 0: gamma_i = Gs x'_i */
            for (int r = 0; r < N; r++) {
                const double *x = w->x + 3 * (size_t)r;
                for (int b = 0; b < 3; b++)
                    tw->gam[3 * r + b] = Gs[b] * x[0] + Gs[3 + b] * x[1] + Gs[6 + b] * x[2];
            }
            grad_head_backward(m, tw, 0, grad);
            /* net 1: gamma'_i = Gs h_i (skipped when h = 0: then it is zero) */
            int hz = 1;
            for (int q = 0; q < 3 * N; q++)
                if (tw->hpos[q] != 0.0) hz = 0;
            if (!hz) {
                for (int r = 0; r < N; r++) {
                    const double *h = tw->hpos + 3 * (size_t)w->atom_of_row[r];
                    for (int b = 0; b < 3; b++)
                        tw->gam[3 * r + b] = Gs[b] * h[0] + Gs[3 + b] * h[1] + Gs[6 + b] * h[2];
                }
                grad_head_backward(m, tw, 1, grad);
            }
        }
    }
    if (sqerr) *sqerr = sq;
    if (loss) *loss = l;
    return EANN_OK;
}

int eann_evaluate(const eann_model *m, eann_trainws *tw, const eann_sample *smp, int n,
                  double charge_weight, double *mean_loss, double *rmse) {
    double L = 0, SQ = 0, pred[9];
    int nc = eann_kind_outputs(m->spec.kind);
    for (int f = 0; f < n; f++) {
        double sq, l;
        int rc = eann_sample_loss(m, tw, &smp[f], charge_weight, 0, NULL, pred, &sq, &l);
        if (rc) return rc;
        L += l;
        SQ += sq;
    }
    if (mean_loss) *mean_loss = n ? L / n : 0;
    if (rmse) *rmse = n ? sqrt(SQ / ((double)n * nc)) : 0;
    return EANN_OK;
}

/* ------------------------------------------------------------------------ */
/* normalisation (folded into the first linear layer)                        */
/* ------------------------------------------------------------------------ */

void eann_norm_free(eann_norm *nm) {
    if (!nm) return;
    free(nm->mean);
    free(nm->std);
    nm->mean = nm->std = NULL;
}

static int norm_alloc(const eann_model *m, eann_norm *nm) {
    size_t n = (size_t)m->spec.nspecies * m->ndensity;
    nm->nspecies = m->spec.nspecies;
    nm->ndensity = m->ndensity;
    nm->mean = calloc(n, sizeof(double));
    nm->std = calloc(n, sizeof(double));
    if (!nm->mean || !nm->std) {
        eann_norm_free(nm);
        return EANN_ENOMEM;
    }
    return EANN_OK;
}

static int max_atoms(const eann_sample *smp, int n) {
    int mx = 1;
    for (int f = 0; f < n; f++)
        if (smp[f].natoms > mx) mx = smp[f].natoms;
    return mx;
}

int eann_norm_compute(const eann_model *m, const eann_sample *smp, int n, eann_norm *out) {
    if (!m || !out || (n && !smp)) return EANN_EINVAL;
    int rc = norm_alloc(m, out);
    if (rc) return rc;
    const int S = m->spec.nspecies, D = m->ndensity;
    eann_work *w;
    rc = eann_work_new(m, max_atoms(smp, n), &w);
    if (rc) {
        eann_norm_free(out);
        return rc;
    }
    long cnt[EANN_MAX_SPECIES] = {0};
    /* two passes: mean, then the variance about it */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        for (int f = 0; f < n && !rc; f++) {
            rc = eann_setup(m, w, smp[f].natoms, smp[f].species, smp[f].pos);
            if (rc) break;
            eann_descriptor_forward(m, w);
            for (int r = 0; r < w->natoms; r++) {
                int s = w->row_species[r];
                const double *rho = w->rho + (size_t)r * D;
                double *mu = out->mean + (size_t)s * D, *sd = out->std + (size_t)s * D;
                if (pass == 0) {
                    cnt[s]++;
                    for (int k = 0; k < D; k++)
                        mu[k] += rho[k];
                } else {
                    for (int k = 0; k < D; k++)
                        sd[k] += (rho[k] - mu[k]) * (rho[k] - mu[k]);
                }
            }
        }
        if (pass == 0)
            for (int s = 0; s < S; s++)
                for (int k = 0; k < D; k++)
                    if (cnt[s]) out->mean[(size_t)s * D + k] /= (double)cnt[s];
    }
    eann_work_free(w);
    if (rc) {
        eann_norm_free(out);
        return rc;
    }
    for (int s = 0; s < S; s++)
        for (int k = 0; k < D; k++) {
            double *mu = out->mean + (size_t)s * D + k, *sd = out->std + (size_t)s * D + k;
            *sd = cnt[s] ? sqrt(*sd / (double)cnt[s]) : 0.0;
            if (!(*sd >= 1e-12 * (1.0 + fabs(*mu)))) {
                *mu = 0.0;
                *sd = 1.0;
            }
        }
    return EANN_OK;
}

/* Call fn for the first linear layer of every net and species. */
#define FOR_FIRST_LAYERS(m, L, s)                                                                  \
    for (int t_ = 0; t_ < (m)->spec.nnets; t_++)                                                   \
        for (int s = 0; s < (m)->spec.nspecies; s++)                                               \
            for (const eann_layer *L = eann_layer_of((m), t_, s, 0); L; L = NULL)

void eann_norm_fold(const eann_model *m, const eann_norm *nm, const double *phi, double *theta) {
    const int D = m->ndensity;
    if (theta != phi) memcpy(theta, phi, sizeof(double) * m->ntheta);
    FOR_FIRST_LAYERS(m, L, s) {
        const double *mu = nm->mean + (size_t)s * D, *sd = nm->std + (size_t)s * D;
        for (int o = 0; o < L->nout; o++) {
            const double *wp = phi + L->w + (size_t)o * D;
            double *wq = theta + L->w + (size_t)o * D;
            double b = phi[L->b + o];
            for (int c = 0; c < D; c++)
                b -= wp[c] * (mu[c] / sd[c]);
            for (int c = 0; c < D; c++)
                wq[c] = wp[c] / sd[c];
            theta[L->b + o] = b;
        }
    }
}

void eann_norm_unfold(const eann_model *m, const eann_norm *nm, const double *theta, double *phi) {
    const int D = m->ndensity;
    if (theta != phi) memcpy(phi, theta, sizeof(double) * m->ntheta);
    FOR_FIRST_LAYERS(m, L, s) {
        const double *mu = nm->mean + (size_t)s * D, *sd = nm->std + (size_t)s * D;
        for (int o = 0; o < L->nout; o++) {
            const double *wq = theta + L->w + (size_t)o * D;
            double *wp = phi + L->w + (size_t)o * D;
            double b = theta[L->b + o];
            for (int c = 0; c < D; c++)
                b += wq[c] * mu[c];
            for (int c = 0; c < D; c++)
                wp[c] = wq[c] * sd[c];
            phi[L->b + o] = b;
        }
    }
}

void eann_norm_grad(const eann_model *m, const eann_norm *nm, const double *gtheta, double *gphi) {
    const int D = m->ndensity;
    if (gtheta != gphi) memcpy(gphi, gtheta, sizeof(double) * m->ntheta);
    FOR_FIRST_LAYERS(m, L, s) {
        const double *mu = nm->mean + (size_t)s * D, *sd = nm->std + (size_t)s * D;
        for (int o = 0; o < L->nout; o++) {
            double gb = gtheta[L->b + o];
            const double *gw = gtheta + L->w + (size_t)o * D;
            double *gp = gphi + L->w + (size_t)o * D;
            for (int c = 0; c < D; c++)
                gp[c] = gw[c] / sd[c] - gb * (mu[c] / sd[c]);
        }
    }
}

/* Growable text for the comment block. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} tbuf;
static void tput(tbuf *b, const char *txt) {
    size_t n = strlen(txt);
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, txt, n + 1);
    b->len += n;
}

int eann_norm_to_comments(eann_model *m, const eann_norm *nm, const char *prefix) {
    if (!m || !nm || nm->nspecies != m->spec.nspecies || nm->ndensity != m->ndensity)
        return EANN_EINVAL;
    tbuf b = {0, 0, 0, 0};
    char num[64];
    if (prefix) tput(&b, prefix);
    tput(
        &b,
        "# descriptor normalisation (folded into linear0 of every net): rho_mean and rho_std\n"
        "# per centre species, lines '# rho_mean|rho_std SPECIES FIRST v ...' (6 values a line)\n");
    for (int which = 0; which < 2; which++)
        for (int s = 0; s < nm->nspecies; s++)
            for (int c0 = 0; c0 < nm->ndensity; c0 += 6) {
                snprintf(num, sizeof num, "# %s %s %d", which ? "rho_std" : "rho_mean",
                         m->spec.species[s], c0);
                tput(&b, num);
                for (int c = c0; c < c0 + 6 && c < nm->ndensity; c++) {
                    const double *a = which ? nm->std : nm->mean;
                    snprintf(num, sizeof num, " %.17g", a[(size_t)s * nm->ndensity + c]);
                    tput(&b, num);
                }
                tput(&b, "\n");
            }
    if (b.oom) {
        free(b.s);
        return EANN_ENOMEM;
    }
    free(m->comments);
    m->comments = b.s;
    return EANN_OK;
}

int eann_norm_from_comments(const eann_model *m, eann_norm *out) {
    if (!m || !out) return EANN_EINVAL;
    out->mean = out->std = NULL;
    if (!m->comments) return EANN_EFORMAT;
    int rc = norm_alloc(m, out);
    if (rc) return rc;
    const int D = m->ndensity;
    size_t n = (size_t)m->spec.nspecies * D;
    char *seen = calloc(2 * n, 1);
    if (!seen) {
        eann_norm_free(out);
        return EANN_ENOMEM;
    }
    const char *p = m->comments;
    while (*p) {
        const char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        char line[1024];
        size_t len = (size_t)(e - p) < sizeof line - 1 ? (size_t)(e - p) : sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p = *e ? e + 1 : e;
        char what[16], sp[8];
        int c0, used;
        if (sscanf(line, "# %15s %7s %d%n", what, sp, &c0, &used) != 3) continue;
        int which = !strcmp(what, "rho_mean") ? 0 : !strcmp(what, "rho_std") ? 1 : -1;
        if (which < 0) continue;
        int s = eann_species_index(m, sp);
        if (s < 0 || c0 < 0 || c0 >= D) {
            rc = EANN_EFORMAT;
            break;
        }
        const char *q = line + used;
        for (int c = c0; c < D; c++) {
            char *end;
            while (*q == ' ')
                q++;
            if (!*q) break;
            double v = strtod(q, &end);
            if (end == q || !isfinite(v)) {
                rc = EANN_EFORMAT;
                break;
            }
            q = end;
            (which ? out->std : out->mean)[(size_t)s * D + c] = v;
            seen[which * n + (size_t)s * D + c] = 1;
        }
        if (rc) break;
    }
    for (size_t q = 0; q < 2 * n && !rc; q++)
        if (!seen[q]) rc = EANN_EFORMAT;
    for (size_t q = 0; q < n && !rc; q++)
        if (!(out->std[q] > 0)) rc = EANN_EFORMAT;
    free(seen);
    if (rc) eann_norm_free(out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* initialisation and output scale                                           */
/* ------------------------------------------------------------------------ */

static uint64_t tr_sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void eann_train_opts_default(eann_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->optimizer = EANN_OPT_ADAM;
    o->epochs = 100;
    o->batch = 32;
    o->lr = 1e-3;
    o->lr_decay = 0.5;
    o->patience = 20;
    o->lr_min = 1e-5;
    o->lbfgs_m = 10;
    o->charge_weight = 0;
    o->seed = 1;
}

/* Multiply the output layer of net t (all species; rows r0..r1-1 of its
 * weight and bias) by f in phi. */
static void scale_output(const eann_model *m, double *phi, int t, int r0, int r1, double f) {
    int H = m->spec.net[t].nhidden;
    for (int s = 0; s < m->spec.nspecies; s++) {
        const eann_layer *L = eann_layer_of(m, t, s, H);
        for (int o = r0; o < r1 && o < L->nout; o++) {
            for (int c = 0; c < L->nin; c++)
                phi[L->w + (size_t)o * L->nin + c] *= f;
            phi[L->b + o] *= f;
        }
    }
}

static double rms(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i] * x[i];
    return n ? sqrt(s / n) : 0;
}

/* Output scale (so that training starts with outputs of the size of the
 * labels), using up to 256 training samples:
 *   dipole: the charge net's output layer is scaled so that the RMS of the
 *     predicted dipoles equals the RMS of the labels;
 *   tdm: rows q1, q2 so that RMS(u + v) = RMS(labels), row w so that the
 *     cross term W (u x v) starts at 0.1 of it;
 *   polarizability: net 0 so that the traceless part of Pm + Pm^T matches
 *     the RMS of the labels' traceless part; net 1 so that sum h h^T starts
 *     at 0.1 of it; net 2's output layer (bias per species b, weights
 *     scale k) fitted by least squares so that E_2 = k E_2^0 + b N matches
 *     the isotropic remainder tr(alpha_ref - Pm - Pm^T - hh^T)/3. */
static int output_scale(eann_model *m, const eann_norm *nm, double *phi, const eann_sample *smp,
                        int n) {
    if (n > 256) n = 256;
    if (n < 1) return EANN_OK;
    eann_trainws *tw;
    int rc = eann_trainws_new(m, max_atoms(smp, n), &tw);
    if (rc) return rc;
    eann_work *w = tw->w;
    const int kind = m->spec.kind, nc = eann_kind_outputs(kind);
    double *ref = calloc((size_t)n * 9, sizeof(double)),
           *p1 = calloc((size_t)n * 9, sizeof(double));
    double *p2 = calloc((size_t)n * 9, sizeof(double)), *p3 = calloc((size_t)n * 2, sizeof(double));
    if (!ref || !p1 || !p2 || !p3) {
        rc = EANN_ENOMEM;
        goto done;
    }
    for (int pass = 0; pass < 2; pass++) {
        eann_norm_fold(m, nm, phi, m->theta);
        eann_model_sync(m);
        for (int f = 0; f < n; f++) {
            rc = eann_setup(m, w, smp[f].natoms, smp[f].species, smp[f].pos);
            if (rc) goto done;
            eann_descriptor_forward(m, w);
            if (kind == EANN_DIPOLE) {
                double out[3];
                rc = eann_predict(m, w, smp[f].natoms, smp[f].species, smp[f].pos, out);
                if (rc) goto done;
                for (int a = 0; a < 3; a++) {
                    p1[3 * f + a] = out[a];
                    ref[3 * f + a] = smp[f].ref[a];
                }
            } else if (kind == EANN_TDM) {
                double u[3], v[3], W;
                eann_net_forward(m, w, 0);
                eann_tdm_parts(m, w, u, v, &W);
                double c[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                               u[0] * v[1] - u[1] * v[0]};
                for (int a = 0; a < 3; a++) {
                    p1[3 * f + a] = u[a] + v[a];
                    p2[3 * f + a] = W * c[a];
                    ref[3 * f + a] = smp[f].ref[a];
                }
            } else {
                double Ps[9], Hh[9], E2;
                pol_forward(m, tw, Ps, Hh, &E2);
                double tp = (Ps[0] + Ps[4] + Ps[8]) / 3,
                       tr = (smp[f].ref[0] + smp[f].ref[4] + smp[f].ref[8]) / 3;
                for (int q = 0; q < 9; q++) {
                    int dg = q % 4 == 0;
                    p1[9 * f + q] = Ps[q] - (dg ? tp : 0); /* traceless parts */
                    ref[9 * f + q] = smp[f].ref[q] - (dg ? tr : 0);
                    p2[9 * f + q] = Hh[q];
                }
                p3[2 * f] = E2;
                p3[2 * f + 1] = tr - tp - (Hh[0] + Hh[4] + Hh[8]) / 3; /* isotropic remainder */
            }
        }
        double rr = rms(ref, n * nc), r1 = rms(p1, n * nc), r2 = rms(p2, n * nc);
        if (pass == 1) break;
        if (kind == EANN_DIPOLE) {
            if (r1 > 0 && rr > 0) scale_output(m, phi, 0, 0, 1, rr / r1);
            break;
        } else if (kind == EANN_TDM) {
            double s = r1 > 0 && rr > 0 ? rr / r1 : 1.0;
            scale_output(m, phi, 0, 0, 2, s);
            if (r2 > 0 && rr > 0) scale_output(m, phi, 0, 2, 3, 0.1 * rr / (r2 * s * s));
            break;
        } else {
            double s0 = r1 > 0 && rr > 0 ? rr / r1 : 1.0;
            scale_output(m, phi, 0, 0, 1, s0);
            if (r2 > 0 && rr > 0) scale_output(m, phi, 1, 0, 1, sqrt(0.1 * rr / r2));
            /* net 2: zero bias, then pass 1 recomputes E2^0 and the remainder */
            for (int s = 0; s < m->spec.nspecies; s++) {
                const eann_layer *L = eann_layer_of(m, 2, s, m->spec.net[2].nhidden);
                phi[L->b] = 0;
            }
        }
    }
    if (kind == EANN_POLARIZABILITY) {
        /* least squares for E2 = k e_f + b N_f against the remainder r_f */
        double see = 0, sen = 0, snn = 0, ser = 0, snr = 0, srr = 0, sr = 0;
        for (int f = 0; f < n; f++) {
            double e = p3[2 * f], r = p3[2 * f + 1], N = smp[f].natoms;
            see += e * e;
            sen += e * N;
            snn += N * N;
            ser += e * r;
            snr += N * r;
            srr += r * r;
            sr += r;
        }
        double det = see * snn - sen * sen, k, b;
        if (det > 1e-12 * see * snn) {
            k = (ser * snn - snr * sen) / det;
            b = (see * snr - sen * ser) / det;
        } else {
            k = 0;
            b = snn > 0 ? snr / snn : 0;
        }
        /* keep some variation in net 2 (a zero output layer has zero gradients below it) */
        double re = sqrt(see / n), rres = sqrt(fmax(srr / n - (sr / n) * (sr / n), 0));
        if (re > 0 && fabs(k) * re < 0.01 * rres) k = (k < 0 ? -0.01 : 0.01) * rres / re;
        if (re > 0 && k == 0) k = 0.01;
        int H = m->spec.net[2].nhidden;
        for (int s = 0; s < m->spec.nspecies; s++) {
            const eann_layer *L = eann_layer_of(m, 2, s, H);
            for (int c = 0; c < L->nin; c++)
                phi[L->w + c] *= k;
            phi[L->b] = b;
        }
    }
    eann_norm_fold(m, nm, phi, m->theta);
    eann_model_sync(m);
done:
    free(ref);
    free(p1);
    free(p2);
    free(p3);
    eann_trainws_free(tw);
    return rc;
}

int eann_train_init(eann_model *m, const eann_sample *train, int ntrain, const eann_train_opts *o,
                    eann_norm *nm, double *phi) {
    if (!m || !o || !nm || !phi || ntrain < 1 || !train) return EANN_EINVAL;
    nm->mean = nm->std = NULL;
    eann_model_init_random(m, o->seed);
    /* fixed radial grid: rs_k = k rc / K, inta = 1 / (2 spacing^2) */
    const int S = m->spec.nspecies, K = m->spec.nwave;
    const double rc = m->spec.cutoff, sp = rc / K;
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            m->theta[m->off_rs + (size_t)s * K + k] = k * sp;
            m->theta[m->off_inta + (size_t)s * K + k] = 0.5 / (sp * sp);
        }
    eann_model_sync(m);
    int rc2 = eann_norm_compute(m, train, ntrain, nm);
    if (rc2) return rc2;
    /* the random weights are taken as normalised-space weights phi */
    memcpy(phi, m->theta, sizeof(double) * m->ntheta);
    rc2 = output_scale(m, nm, phi, train, ntrain);
    if (rc2) eann_norm_free(nm);
    return rc2;
}

/* ------------------------------------------------------------------------ */
/* optimisers                                                                */
/* ------------------------------------------------------------------------ */

/* Mean loss, sum of squared errors and gradient (in phi, rs/inta zeroed)
 * over samples idx[0..n) (rs, inta entries zeroed unless train_radial). */
static int batch_grad(eann_model *m, const eann_norm *nm, eann_trainws *tw, const eann_sample *smp,
                      const int *idx, int n, double cw, int train_radial, double *gth, double *gphi,
                      double *loss, double *sq) {
    double pred[9], L = 0, SQ = 0;
    memset(gth, 0, sizeof(double) * m->ntheta);
    for (int q = 0; q < n; q++) {
        double s, l;
        int rc = eann_sample_loss(m, tw, &smp[idx ? idx[q] : q], cw, 1.0 / n, gth, pred, &s, &l);
        if (rc) return rc;
        L += l;
        SQ += s;
    }
    eann_norm_grad(m, nm, gth, gphi);
    if (!train_radial) {
        size_t SK = (size_t)m->spec.nspecies * m->spec.nwave;
        memset(gphi + m->off_rs, 0, sizeof(double) * SK);
        memset(gphi + m->off_inta, 0, sizeof(double) * SK);
    }
    *loss = L / (n ? n : 1);
    *sq = SQ;
    return EANN_OK;
}

static void set_params(eann_model *m, const eann_norm *nm, const double *phi) {
    eann_norm_fold(m, nm, phi, m->theta);
    eann_model_sync(m);
}

int eann_train_run(eann_model *m, const eann_norm *nm, double *phi, const eann_sample *train,
                   int ntrain, const eann_sample *valid, int nvalid, const eann_train_opts *o,
                   int *epochs_run, long *ngrad) {
    if (!m || !nm || !phi || !o || ntrain < 1 || !train || (nvalid && !valid)) return EANN_EINVAL;
    const size_t P = m->ntheta;
    const int nc = eann_kind_outputs(m->spec.kind);
    int mx = max_atoms(train, ntrain), mv = max_atoms(valid, nvalid);
    eann_trainws *tw;
    int rc = eann_trainws_new(m, mx > mv ? mx : mv, &tw);
    if (rc) return rc;
    const int hist = o->lbfgs_m > 0 ? o->lbfgs_m : 10;
    double *gth = calloc(P, sizeof(double)), *gphi = calloc(P, sizeof(double));
    double *m1 = calloc(P, sizeof(double)), *m2 = calloc(P, sizeof(double));
    double *best = calloc(P, sizeof(double)), *trial = calloc(P, sizeof(double));
    double *g2 = calloc(P, sizeof(double)), *dir = calloc(P, sizeof(double));
    double *sh = calloc(P * (size_t)hist, sizeof(double)),
           *yh = calloc(P * (size_t)hist, sizeof(double));
    double *rho_h = calloc((size_t)hist, sizeof(double)),
           *al_h = calloc((size_t)hist, sizeof(double));
    int *idx = calloc((size_t)ntrain, sizeof(int));
    long ng = 0;
    int ep = 0;
    if (!gth || !gphi || !m1 || !m2 || !best || !trial || !g2 || !dir || !sh || !yh || !rho_h ||
        !al_h || !idx) {
        rc = EANN_ENOMEM;
        goto done;
    }
    for (int i = 0; i < ntrain; i++)
        idx[i] = i;
    uint64_t st = o->seed ^ 0x5DEECE66DULL;
    double lr = o->lr > 0 ? o->lr : 1e-3, bestval = INFINITY, b1t = 1, b2t = 1;
    const double B1 = 0.9, B2 = 0.999, EPS = 1e-8;
    int bad = 0, nh = 0, hstart = 0;
    double f = 0, fsq = 0, step = 0;
    memcpy(best, phi, sizeof(double) * P);
    set_params(m, nm, phi);
    if (o->optimizer == EANN_OPT_LBFGS) {
        rc = batch_grad(m, nm, tw, train, NULL, ntrain, o->charge_weight, o->train_radial, gth,
                        gphi, &f, &fsq);
        if (rc) goto done;
        ng += ntrain;
    }
    for (ep = 1; ep <= o->epochs; ep++) {
        double trsq = 0;
        if (o->optimizer == EANN_OPT_LBFGS) {
            /* two-loop recursion: dir = -H g (Nocedal & Wright Alg. 7.4) */
            trsq = fsq;
            for (size_t q = 0; q < P; q++)
                dir[q] = -gphi[q];
            for (int k = nh - 1; k >= 0; k--) {
                int j = (hstart + k) % hist;
                double a = 0;
                for (size_t q = 0; q < P; q++)
                    a += sh[j * P + q] * dir[q];
                a *= rho_h[j];
                al_h[j] = a;
                for (size_t q = 0; q < P; q++)
                    dir[q] -= a * yh[j * P + q];
            }
            double gam = 1.0;
            if (nh) {
                int j = (hstart + nh - 1) % hist;
                double sy = 0, yy = 0;
                for (size_t q = 0; q < P; q++) {
                    sy += sh[j * P + q] * yh[j * P + q];
                    yy += yh[j * P + q] * yh[j * P + q];
                }
                gam = sy / yy;
            }
            for (size_t q = 0; q < P; q++)
                dir[q] *= gam;
            for (int k = 0; k < nh; k++) {
                int j = (hstart + k) % hist;
                double bb = 0;
                for (size_t q = 0; q < P; q++)
                    bb += yh[j * P + q] * dir[q];
                bb *= rho_h[j];
                for (size_t q = 0; q < P; q++)
                    dir[q] += sh[j * P + q] * (al_h[j] - bb);
            }
            double gd = 0, dn = 0;
            for (size_t q = 0; q < P; q++) {
                gd += gphi[q] * dir[q];
                dn += dir[q] * dir[q];
            }
            if (!(gd < 0) || nh == 0) {
                /* first step or not a descent direction: steepest descent, |step| = lr */
                nh = 0;
                dn = 0;
                for (size_t q = 0; q < P; q++) {
                    dir[q] = -gphi[q];
                    dn += dir[q] * dir[q];
                }
                gd = -dn;
                step = dn > 0 ? lr / sqrt(dn) : 0;
            } else {
                step = 1.0;
            }
            /* backtracking (Armijo) line search */
            double fn = 0, fnsq = 0;
            int ok = 0;
            for (int ls = 0; ls < 40 && dn > 0; ls++) {
                for (size_t q = 0; q < P; q++)
                    trial[q] = phi[q] + step * dir[q];
                set_params(m, nm, trial);
                rc = batch_grad(m, nm, tw, train, NULL, ntrain, o->charge_weight, o->train_radial,
                                gth, g2, &fn, &fnsq);
                if (rc) goto done;
                ng += ntrain;
                if (isfinite(fn) && fn <= f + 1e-4 * step * gd) {
                    ok = 1;
                    break;
                }
                step *= 0.5;
            }
            if (!ok) {
                set_params(m, nm, phi);
                ep--;
                break;
            }
            double sy = 0;
            for (size_t q = 0; q < P; q++)
                sy += (trial[q] - phi[q]) * (g2[q] - gphi[q]);
            if (sy > 1e-300) {
                /* ring buffer: slot of the newest pair; drop the oldest when full */
                int j = (hstart + nh) % hist;
                if (nh == hist)
                    hstart = (hstart + 1) % hist;
                else
                    nh++;
                for (size_t q = 0; q < P; q++) {
                    sh[j * P + q] = trial[q] - phi[q];
                    yh[j * P + q] = g2[q] - gphi[q];
                }
                rho_h[j] = 1.0 / sy;
            }
            memcpy(phi, trial, sizeof(double) * P);
            memcpy(gphi, g2, sizeof(double) * P);
            f = fn;
            fsq = fnsq;
        } else {
            /* Fisher-Yates shuffle with our PRNG */
            for (int i = ntrain - 1; i > 0; i--) {
                int j = (int)(tr_sm64(&st) % (uint64_t)(i + 1));
                int t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
            int B = o->batch > 0 ? o->batch : 32;
            for (int b0 = 0; b0 < ntrain; b0 += B) {
                int nb = ntrain - b0 < B ? ntrain - b0 : B;
                double l, sq;
                rc = batch_grad(m, nm, tw, train, idx + b0, nb, o->charge_weight, o->train_radial,
                                gth, gphi, &l, &sq);
                if (rc) goto done;
                ng += nb;
                trsq += sq;
                /* Adam (Kingma & Ba 2015) */
                b1t *= B1;
                b2t *= B2;
                for (size_t q = 0; q < P; q++) {
                    double g = gphi[q];
                    m1[q] = B1 * m1[q] + (1 - B1) * g;
                    m2[q] = B2 * m2[q] + (1 - B2) * g * g;
                    double mh = m1[q] / (1 - b1t), vh = m2[q] / (1 - b2t);
                    phi[q] -= lr * mh / (sqrt(vh) + EPS);
                }
                set_params(m, nm, phi);
            }
        }
        eann_progress pr;
        pr.epoch = ep;
        pr.epochs = o->epochs;
        pr.train_rmse = sqrt(trsq / ((double)ntrain * nc));
        pr.valid_rmse = -1;
        pr.lr = o->optimizer == EANN_OPT_LBFGS ? step : lr;
        double monitor;
        if (nvalid) {
            double vl, vr;
            rc = eann_evaluate(m, tw, valid, nvalid, o->charge_weight, &vl, &vr);
            if (rc) goto done;
            pr.valid_rmse = vr;
            monitor = vl;
        } else {
            monitor = o->optimizer == EANN_OPT_LBFGS ? f : trsq;
        }
        pr.improved = monitor < bestval;
        if (pr.improved) {
            bestval = monitor;
            memcpy(best, phi, sizeof(double) * P);
            bad = 0;
        } else {
            bad++;
        }
        pr.ngrad = ng;
        int stop = o->progress ? o->progress(o->ctx, &pr) : 0;
        if (stop) break;
        if (o->optimizer == EANN_OPT_ADAM) {
            /* learning-rate decay on plateau; early stop below lr_min */
            if (bad > o->patience) {
                lr *= o->lr_decay;
                bad = 0;
                if (lr < o->lr_min) break;
            }
        } else if (bad > o->patience) {
            break;
        }
    }
    if (ep > o->epochs) ep = o->epochs;
    memcpy(phi, best, sizeof(double) * P);
    set_params(m, nm, phi);
done:
    if (epochs_run) *epochs_run = ep;
    if (ngrad) *ngrad = ng;
    free(gth);
    free(gphi);
    free(m1);
    free(m2);
    free(best);
    free(trial);
    free(g2);
    free(dir);
    free(sh);
    free(yh);
    free(rho_h);
    free(al_h);
    free(idx);
    eann_trainws_free(tw);
    return rc;
}
