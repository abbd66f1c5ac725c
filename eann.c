/* SPDX-License-Identifier: MIT */
/* eann.c - embedded atom neural network for tensorial properties (see eann.h):
 * model, descriptor, element networks, heads, forward pass and input
 * gradients, model text. Training (parameter gradients, optimisers) is in
 * eann_train.c, which calls the pieces here.
 *
 * Everything here follows ../shared/eann_nma_published/FORMAT.md ("FORMAT.md
 * sect. N") and the EANN chapter ../shared/papers/eann-tensorial-chapter.txt
 * ("EANN chapter Eq. N"). Equations implemented, and where:
 *   Eq. 1      dipole of atomic charges, mu = sum_i q_i r_i   eann_dipole_parts
 *   Eq. 6      dipole loss with the total-charge term          eann_train.c dipole_loss
 *   Eqs. 7-8   transition dipole t = u + v + W (u x v)         eann_tdm_parts, eann_tdm_combine
 *   Eqs. 9-12  polarizability from coordinate gradients        eann_pol_parts
 *   Eq. 15     embedded density rho_i (L, k)                   eann_angular, eann_descriptor_forward
 *   Eq. 16     Gaussian-type orbitals (radial part)            build_pairs, radial_values
 *   cutoff fc = (0.5 cos(pi r / rc) + 0.5)^2                   FORMAT.md 4.2 (the chapter only
 *                                                               says "a cutoff function")
 *   LayerNorm, alpha*SiLU(beta*x) networks, centre of mass     FORMAT.md 4.1, 4.6
 *
 * WHERE THE SOURCES DIFFER, the code follows the published models
 * (FORMAT.md), because those are what it reproduces to 1e-13:
 *   - Network sizes: the chapter's text (section "Case studies") says
 *     thirty-three density features (L <= 2) and three hidden layers
 *     64x32x16; the published models have nipsin 3 with nwave 12 (36
 *     features: dipole, both transition dipoles) or nwave 5 (15 features:
 *     polarizability) and two hidden layers 64x64. Sizes are read from the
 *     model text, so either works; `eann train` defaults to 64,64.
 *   - Polarizability: the chapter (Eqs. 10-12) describes one network whose
 *     coordinate gradients D build alpha = D D^T + (r D^T + D r^T) + a scalar
 *     term. The published polarizability model uses separate networks: net 0
 *     (grad_sym) for r D^T + D r^T, net 2 (trace) for the scalar term, and a
 *     net 1 (grad_outer, D D^T) whose output layer is all zero, so in effect
 *     two networks. We implement the three-net form of FORMAT.md sect. 5 and
 *     skip net 1 when its output layer is zero (exactly the same numbers).
 *   - Eq. 15's multinomial factor L!/(lx! ly! lz!) is not written anywhere:
 *     the angular factors are all 3^L ordered products v_a1 ... v_aL
 *     (FORMAT.md 4.3), and each distinct monomial lx, ly, lz appears exactly
 *     L!/(lx! ly! lz!) times among them, so the sum of squares in rho carries
 *     the factor (eann_angular).
 *
 * Pure C11 + libm. Summation orders are fixed in the source (some sums use
 * four explicit partial sums so that they vectorise without the compiler
 * reordering anything); build with -ffp-contract=off and never -ffast-math.
 * The hot loops (exp, matrix products, the descriptor sum, LayerNorm +
 * activation) are in eann_kernels.c, in a portable and an AVX2 copy with
 * the same bits; the plain LayerNorm and activation they match are here.
 */
#include "eann.h"
#include "eann_kernels.h" /* the hot loops (eann_kernels.c) */

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EANN_PI 3.14159265358979323846

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
/* building blocks: linear, LayerNorm, activation (FORMAT.md 4.6)            */
/* ------------------------------------------------------------------------ */

void eann_linear_forward(int n, int nin, int nout, const double *x, const double *wt,
                         const double *b, double *z) {
    /* z[a][o] = b[o] + sum_{c = 0..nin-1} x[a][c] W[o][c], in this order of c */
    eann_matmul(EANN_SIMD_PORTABLE, n, nin, nout, x, wt, b, z);
}

/* eann_linear_backward with the chosen copy of the matrix loops */
void eann_linear_backward_simd(int simd, int n, int nin, int nout, const double *x,
                            const double *w, const double *dz, double *dx, double *dw,
                            double *db) {
    /* dx[a][c] = 0 + sum_{o = 0..nout-1} dz[a][o] W[o][c] */
    if (dx) eann_matmul(simd, n, nout, nin, dz, w, NULL, dx);
    /* dw[o][c] += dz[a][o] x[a][c], a = 0, 1, ... */
    if (dw) eann_weight_grad(simd, n, nin, nout, x, dz, dw);
    if (db) {
        for (int a = 0; a < n; a++)
            for (int o = 0; o < nout; o++) db[o] += dz[(size_t)a * nout + o];
    }
}

void eann_linear_backward(int n, int nin, int nout, const double *x, const double *w,
                          const double *dz, double *dx, double *dw, double *db) {
    eann_linear_backward_simd(EANN_SIMD_PORTABLE, n, nin, nout, x, w, dz, dx, dw, db);
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

/* A zeroed block of `bytes` bytes on a 64-byte boundary (a cache line), and
 * its free. Why: with AVX-512 the packed product loads the weights (m->wt)
 * and the workspace rows 8 doubles at a time; an 8-lane load that straddles
 * two cache lines costs two, which made the same tiles 5-25 % slower.
 * aligned_alloc would do, but MSVC lacks it and strict C11 wants the size
 * a multiple of the alignment, so the library aligns by hand: calloc 64
 * bytes + one pointer more than asked, round the address up to the next
 * multiple of 64 past the pointer slot, and keep calloc's pointer in the
 * slot just before the block for free_64 (the slot is 8-byte aligned, as
 * the block is 64-byte aligned). Every block from calloc_64 is freed with
 * free_64, never free. */
static void *calloc_64(size_t bytes) {
    if (bytes > (size_t)-1 - 128 - sizeof(void *)) return NULL;
    bytes = (bytes + 63) / 64 * 64; /* whole lines */
    unsigned char *base = calloc(1, bytes + 64 + sizeof(void *));
    if (!base) return NULL;
    uintptr_t a = ((uintptr_t)(base + sizeof(void *)) + 63) & ~(uintptr_t)63;
    void **p = (void **)a;
    p[-1] = base;
    return p;
}

static void free_64(void *p) {
    if (p) free(((void **)p)[-1]);
}

/* Adds the array "net{t}.{X}.{layer}{h}.{what}" [d0][d1] (d1 = 0: [d0]);
 * returns its offset in theta. */
static size_t net_array(eann_model *m, int t, const char *X, const char *layer, int h,
                        const char *what, int d0, int d1, size_t *off) {
    char name[64];
    size_t at = *off;
    snprintf(name, sizeof name, "net%d.%s.%s%d.%s", t, X, layer, h, what);
    add_array(m, name, d0, d1, off);
    return at;
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
    if (ntheta64 > SIZE_MAX / sizeof(double) || nwt64 > SIZE_MAX / 2 / sizeof(double) ||
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
    for (int t = 0; t < spec->nnets; t++) {
        const eann_net_spec *ns = &spec->net[t];
        for (int s = 0; s < S; s++) {
            const char *X = spec->species[s];
            for (int h = 0; h <= ns->nhidden; h++) {
                eann_layer *L = &m->layer[m->layer_base[t] + s * (ns->nhidden + 1) + h];
                int nin = ns->sizes[h], no = ns->sizes[h + 1];
                L->nin = nin;
                L->nout = no;
                L->w = net_array(m, t, X, "linear", h, "weight", no, nin, &off);
                L->b = net_array(m, t, X, "linear", h, "bias", no, 0, &off);
                L->wt = wtoff;
                wtoff += (size_t)no * (size_t)nin;
                L->ln_g = L->ln_b = L->act_a = L->act_b = (size_t)-1;
                if (h == ns->nhidden) break;
                L->ln_g = net_array(m, t, X, "layernorm", h, "weight", no, 0, &off);
                L->ln_b = net_array(m, t, X, "layernorm", h, "bias", no, 0, &off);
                L->act_a = net_array(m, t, X, "act", h, "alpha", no, 0, &off);
                L->act_b = net_array(m, t, X, "act", h, "beta", no, 0, &off);
            }
        }
    }
    m->ntheta = off;
    m->nwt = wtoff;
    m->theta = calloc(off, sizeof(double));
    /* wt holds the transposed weights [nin][nout] of every layer (L->wt),
     * then the same packed for the AVX2 matrix kernel (eann_pack_b) at
     * nwt + L->wt; eann_model_sync fills both */
    {
        /* on a 64-byte boundary (a cache line): the packed blocks' rows of 8
         * doubles then never straddle two lines when nwt and the layer
         * offsets are multiples of 8 (the published models); whole lines */
        m->wt = calloc_64((wtoff ? 2 * wtoff : 1) * sizeof(double));
    }
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
    free_64(m->wt);
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
        eann_pack_b(L->nin, L->nout, wt, m->wt + m->nwt + L->wt);
    }
}

/* The one PRNG of the library (initialisation here, shuffling in
 * eann_train.c): splitmix64 (Steele, Lea & Flood 2014), and a uniform double
 * in [0, 1) from its top 53 bits. */
uint64_t eann_rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
double eann_rand_uniform(uint64_t *state) {
    return (double)(eann_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
}

void eann_model_init_random(eann_model *m, uint64_t seed) {
    uint64_t st = seed;
    const int S = m->spec.nspecies, K = m->spec.nwave;
    double *th = m->theta;
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            /* centres spread over [0, rc), exponents O(1), coefficients O(0.3) */
            th[m->off_rs + (size_t)s * K + k] =
                m->spec.cutoff * ((k + 0.5 * eann_rand_uniform(&st)) / K);
            th[m->off_inta + (size_t)s * K + k] = 0.3 + 1.2 * eann_rand_uniform(&st);
            th[m->off_params + (size_t)s * K + k] = 0.1 + 0.4 * eann_rand_uniform(&st);
        }
    for (int i = 0; i < m->nlayers; i++) {
        const eann_layer *L = &m->layer[i];
        double sc = 1.0 / sqrt((double)L->nin);
        for (size_t q = 0; q < (size_t)L->nout * L->nin; q++)
            th[L->w + q] = sc * (2.0 * eann_rand_uniform(&st) - 1.0) * 1.7;
        for (int o = 0; o < L->nout; o++) {
            th[L->b + o] = 0.2 * (2.0 * eann_rand_uniform(&st) - 1.0);
            if (L->ln_g == (size_t)-1) continue;
            th[L->ln_g + o] = 1.0 + 0.3 * (2.0 * eann_rand_uniform(&st) - 1.0);
            th[L->ln_b + o] = 0.2 * (2.0 * eann_rand_uniform(&st) - 1.0);
            th[L->act_a + o] = 1.0 + 0.3 * (2.0 * eann_rand_uniform(&st) - 1.0);
            th[L->act_b + o] = 0.5 + 0.8 * eann_rand_uniform(&st);
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
    void *arr[] = {w->row_species, w->atom_of_row, w->row_of_atom, w->cursor,  w->x,
                   w->pair_start,  w->pair_v,      w->pair_fc,
                   w->pair_dfc,    w->pair_src,    w->pair_r,      w->pair_w,  w->pair_a,
                   w->S,           w->rho,         w->g1,          w->g2,      w->dout,
                   w->drho,        w->dS,          w->dst,         w->bu,      w->bga,
                   w->dpos,        w->dpos2,       w->cell_start,  w->cell_rows,
                   w->cell_of_row};
    for (size_t q = 0; q < sizeof arr / sizeof arr[0]; q++) free_64(arr[q]);
    free(w->pair_j); /* these two grow with realloc (grow_neighbours) */
    free(w->pair_d);
    for (int t = 0; t < EANN_MAX_NETS; t++) {
        for (int h = 0; h < EANN_MAX_HIDDEN; h++) {
            free_64(w->y[t][h]);
            free_64(w->zhat[t][h]);
            free_64(w->sig[t][h]);
            free_64(w->a[t][h]);
            free_64(w->rstd[t][h]);
        }
        free_64(w->out[t]);
    }
    free(w);
}

/* n zeroed elements of sz bytes on a 64-byte boundary (a cache line: the
 * rows of 8 doubles of the kernels' vectors then stay within one line
 * where the row lengths allow) */
static void *alloc_arr(size_t n, size_t sz, int *fail) {
    if (n == 0) n = 1;
    if (n > ((size_t)-1) / 2 / sz) { *fail = 1; return NULL; }
    void *p = calloc_64(n * sz);
    if (!p) *fail = 1;
    return p;
}

/* The pair arrays for `need` pairs. pair_j and pair_d are filled first
 * (find_neighbours) and grow with realloc, keeping what they hold (large
 * blocks are remapped, not copied); the other per-pair arrays are filled
 * only once the number of pairs is known, so they are allocated at most
 * once per growth and never copied. */
static int grow_neighbours(eann_work *w, size_t need) {
    if (need <= w->cap_nbr) return EANN_OK;
    size_t cap = w->cap_nbr ? w->cap_nbr : 64;
    while (cap < need) cap *= 2;
    if (cap > ((size_t)-1) / 2 / sizeof(double)) return EANN_ENOMEM;
    int *pj = realloc(w->pair_j, cap * sizeof(int));
    if (!pj) return EANN_ENOMEM;
    w->pair_j = pj;
    double *pd = realloc(w->pair_d, cap * sizeof(double));
    if (!pd) return EANN_ENOMEM;
    w->pair_d = pd;
    w->cap_nbr = cap;
    return EANN_OK;
}

static int grow_pairs(const eann_model *m, eann_work *w, size_t need) {
    if (need <= w->cap_pairs) return EANN_OK;
    const size_t K = (size_t)m->spec.nwave, M = (size_t)m->norbital;
    free_64(w->pair_src); free_64(w->pair_v); free_64(w->pair_fc); free_64(w->pair_dfc);
    free_64(w->pair_r); free_64(w->pair_w); free_64(w->pair_a);
    int fail = 0;
    w->pair_src = alloc_arr(need, sizeof(int), &fail);
    w->pair_v = alloc_arr(need * 3, sizeof(double), &fail);
    w->pair_fc = alloc_arr(need, sizeof(double), &fail);
    w->pair_dfc = alloc_arr(need, sizeof(double), &fail);
    w->pair_r = alloc_arr(need * K, sizeof(double), &fail);
    w->pair_w = alloc_arr(need * K, sizeof(double), &fail);
    w->pair_a = alloc_arr(need * M, sizeof(double), &fail);
    w->cap_pairs = fail ? 0 : need;
    return fail ? EANN_ENOMEM : EANN_OK;
}

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
    w->cell_start = alloc_arr(N + 1, sizeof(int), &fail);
    /* the neighbourhood lists of make_cells (27 per row at most), only for
     * molecules that use a cell list */
    w->cell_rows = alloc_arr(N > EANN_CELL_MIN_ATOMS ? 27 * N : 1, sizeof(int), &fail);
    w->cell_of_row = alloc_arr(N, sizeof(int), &fail);
    const size_t np0 = N * (N - 1) < 4096 ? N * (N - 1) : 4096;
    if (!fail && (grow_neighbours(w, np0) || grow_pairs(m, w, np0))) fail = 1;
    if (fail) {
        eann_work_free(w);
        return EANN_ENOMEM;
    }
    w->simd = eann_simd_best();
    *out = w;
    return EANN_OK;
}

static inline void mul_n(int n, const double *restrict x, const double *restrict y,
                         double *restrict z) {
    int k = 0;
    for (; k + 4 <= n; k += 4) { /* four at a time: gcc pairs them into SSE registers */
        z[k] = x[k] * y[k];
        z[k + 1] = x[k + 1] * y[k + 1];
        z[k + 2] = x[k + 2] * y[k + 2];
        z[k + 3] = x[k + 3] * y[k + 3];
    }
    for (; k < n; k++) z[k] = x[k] * y[k];
}

/* 2. ordered pairs (i, j), i != j, with dmin < d < rc (strict), grouped by
 * centre row i and, within a row, in ascending order of the neighbour row j
 * (the order of every sum over pairs). find_neighbours lists them (pair_j,
 * pair_d, pair_start); pair_terms adds v = x_i - x_j, the cutoff fc (3.)
 * and its derivative, the angular components (3., FORMAT.md 4.3) and the
 * argument -inta (d - rs)^2 of every radial function (FORMAT.md 4.2). */

/* The distance test of a pair (the same bits for (i, j) and (j, i): v is
 * negated exactly). 1 and *d if dmin < d < rc. rc2 = rc^2 (1 + 1e-12): a
 * pair with d^2 > rc2 has sqrt(d^2) > rc (sqrt is correctly rounded), so it
 * is rejected without the sqrt, as the test on d would reject it; most
 * candidates of a cell list are such pairs. */
static inline int pair_distance(const double *x, int i, int j, double dmin, double rc,
                                double rc2, double *d) {
    double v0 = x[3 * i] - x[3 * j], v1 = x[3 * i + 1] - x[3 * j + 1];
    double v2 = x[3 * i + 2] - x[3 * j + 2];
    const double d2 = v0 * v0 + v1 * v1 + v2 * v2;
    if (d2 > rc2) return 0;
    *d = sqrt(d2);
    return *d > dmin && *d < rc;
}

/* A cell list for molecules of more than EANN_CELL_MIN_ATOMS atoms: cubic
 * cells of edge h >= rc (so a pair closer than rc lies in the same or
 * adjacent cells), at most natoms cells (h grows for sparse frames, so
 * memory stays linear). For each cell c, cell_rows[cell_start[c] ..
 * cell_start[c+1]-1] lists the rows of c and of its up to 26 neighbour
 * cells in ascending order (at most 27 natoms entries in all): the
 * candidates of a row in c come out already in the order of the pair list,
 * with no sorting per row. 0 if the molecule is small or its extent too
 * large for a grid (then every pair is tested). */
typedef struct { int n[3]; double lo[3], h; } cell_grid;

/* The cells around cell c (itself included, fewer at the grid's faces):
 * their indices into nb[27], returns their number. */
static int cells_around(const cell_grid *g, int c, int nb[27]) {
    int ci[3], k = 0;
    for (int a = 0; a < 3; a++) {
        ci[a] = c % g->n[a];
        c /= g->n[a];
    }
    for (int z = ci[2] - 1; z <= ci[2] + 1; z++)
        for (int y = ci[1] - 1; y <= ci[1] + 1; y++)
            for (int x = ci[0] - 1; x <= ci[0] + 1; x++)
                if (x >= 0 && y >= 0 && z >= 0 && x < g->n[0] && y < g->n[1] && z < g->n[2])
                    nb[k++] = (z * g->n[1] + y) * g->n[0] + x;
    return k;
}

static int make_cells(const eann_model *m, eann_work *w, cell_grid *g) {
    const int N = w->natoms;
    if (N <= EANN_CELL_MIN_ATOMS) return 0;
    double hi[3];
    for (int a = 0; a < 3; a++) g->lo[a] = hi[a] = w->x[a];
    for (int r = 1; r < N; r++)
        for (int a = 0; a < 3; a++) {
            double v = w->x[3 * r + a];
            if (v < g->lo[a]) g->lo[a] = v;
            if (v > hi[a]) hi[a] = v;
        }
    /* 1.001: a margin for the rounding of (x - lo) / h near a cell edge */
    g->h = 1.001 * m->spec.cutoff;
    for (;;) {
        double cells = 1;
        for (int a = 0; a < 3; a++) {
            double na = floor((hi[a] - g->lo[a]) / g->h) + 1;
            if (!(na < 1e9)) return 0; /* extent of 1e9 cutoffs (or overflow) */
            g->n[a] = (int)na;
            cells *= na;
        }
        if (cells <= N) break;
        g->h *= 2;
    }
    /* counting sort: each row counts in the lists of the cells around its
     * cell, then is appended to them in ascending row order */
    const int nc = g->n[0] * g->n[1] * g->n[2];
    int nb[27];
    memset(w->cell_start, 0, sizeof(int) * (size_t)(nc + 1));
    for (int r = 0; r < N; r++) {
        int c = 0;
        for (int a = 2; a >= 0; a--) {
            int k = (int)((w->x[3 * r + a] - g->lo[a]) / g->h);
            c = c * g->n[a] + (k < g->n[a] ? k : g->n[a] - 1);
        }
        w->cell_of_row[r] = c;
        const int nk = cells_around(g, c, nb);
        for (int k = 0; k < nk; k++) w->cell_start[nb[k] + 1]++;
    }
    for (int c = 0; c < nc; c++) w->cell_start[c + 1] += w->cell_start[c];
    int *next = w->cursor; /* scratch: the next free place of each list */
    memcpy(next, w->cell_start, sizeof(int) * (size_t)nc);
    for (int r = 0; r < N; r++) {
        const int nk = cells_around(g, w->cell_of_row[r], nb);
        for (int k = 0; k < nk; k++) w->cell_rows[next[nb[k]]++] = r;
    }
    return 1;
}

/* Row i's neighbours (j ascending, with their distances) appended at
 * pair_j + np, pair_d + np; returns their number. The caller has made room
 * for natoms - 1 more. */
static int row_neighbours(const eann_model *m, eann_work *w, const cell_grid *g, int i,
                          size_t np) {
    const double rc = m->spec.cutoff, dmin = m->spec.min_distance;
    const double rc2 = rc * rc * (1 + 1e-12);
    int *nj = w->pair_j + np, n = 0;
    double *nd = w->pair_d + np, d;
    if (!g) {
        /* j < i: the pair exists if row j (listed before) has i, with the
         * same d; cursor[j] walks row j's neighbours > j in order */
        for (int j = 0; j < i; j++) {
            int *cj = &w->cursor[j];
            if (*cj < w->pair_start[j + 1] && w->pair_j[*cj] == i)
                nj[n] = j, nd[n++] = w->pair_d[(*cj)++];
        }
        w->cursor[i] = (int)np + n;
        for (int j = i + 1; j < w->natoms; j++)
            if (pair_distance(w->x, i, j, dmin, rc, rc2, &d)) nj[n] = j, nd[n++] = d;
        return n;
    }
    /* the candidates: the rows of the 27 cells around row i's, ascending */
    const int c = w->cell_of_row[i];
    for (int q = w->cell_start[c]; q < w->cell_start[c + 1]; q++) {
        const int j = w->cell_rows[q];
        if (j != i && pair_distance(w->x, i, j, dmin, rc, rc2, &d)) nj[n] = j, nd[n++] = d;
    }
    return n;
}

/* The angular factors of one pair (FORMAT.md 4.3, EANN chapter Eq. 15):
 * A_0 = fc, A_m = A_parent(m) v[axis(m)], so group L holds the 3^L products
 * fc v_a1 ... v_aL (the chapter's multinomial factor L!/(lx! ly! lz!) is not
 * written anywhere: each distinct monomial appears that many times among
 * the 3^L ordered products, and rho sums their squares). A [M]; if Ad !=
 * NULL also the tangent along (fcd, vd): Ad_0 = fcd, Ad_m = Ad_parent v[ax] +
 * A_parent vd[ax] (used by the polarizability training, eann_train.c). */
static inline void angular(int M, double fc, double fcd, const double *v, const double *vd,
                           double *A, double *Ad) {
    /* the groups L = 0, 1, ... one after the other: member m >= 1 is
     * A_parent v[axis] with parent (m - 1) / 3, axis (m - 1) % 3
     * (m->orb_parent, m->orb_axis) */
    /* (v in locals: a store to A may alias v, so the compiler would
     * reload v after each one) */
    const double v0 = v[0], v1 = v[1], v2 = v[2];
    A[0] = fc;
    if (Ad) Ad[0] = fcd;
    if (M == 13 && !Ad) {
        /* L <= 2 (the published models), in registers: A_1..3 = fc v,
         * A_{4+3a}..A_{6+3a} = A_{1+a} v */
        const double a1 = fc * v0, a2 = fc * v1, a3 = fc * v2;
        A[1] = a1, A[2] = a2, A[3] = a3;
        A[4] = a1 * v0, A[5] = a1 * v1, A[6] = a1 * v2;
        A[7] = a2 * v0, A[8] = a2 * v1, A[9] = a2 * v2;
        A[10] = a3 * v0, A[11] = a3 * v1, A[12] = a3 * v2;
        return;
    }
    for (int o = 1; o < M; o += 3) {
        const int par = (o - 1) / 3;
        const double a = A[par];
        A[o] = a * v0;
        A[o + 1] = a * v1;
        A[o + 2] = a * v2;
        if (!Ad) continue;
        for (int ax = 0; ax < 3; ax++) Ad[o + ax] = Ad[par] * v[ax] + a * vd[ax];
    }
}

/* d fc / d d for c = 0.5 cos(d f) + 0.5, f = pi / rc (fc = c^2) */
static inline double dfc_of(double c, double d, double f) {
    return 2.0 * c * (-0.5 * sin(d * f) * f);
}

/* pair_dfc of every pair, after a setup that skipped it (the same bits as
 * pair_terms: mirrored pairs have the same d) */
static void fill_dfc(const eann_model *m, eann_work *w) {
    const double f = EANN_PI / m->spec.cutoff;
    for (int p = 0; p < w->npairs; p++) {
        const double d = w->pair_d[p], c = 0.5 * cos(d * f) + 0.5;
        w->pair_dfc[p] = dfc_of(c, d, f);
    }
}

/* v, the cutoff, the angular components and the radial arguments of every
 * pair. The pair (i, j), j < i, mirrors (j, i) built earlier: same d, fc,
 * dfc (and R if both atoms have the same species), v negated, A with the
 * signs (-1)^L - all bitwise what a recomputation would give. cursor[j] walks row j's pairs with neighbours > j in order
 * (each is mirrored exactly once, by row i in ascending order). */
/* (always_inline: so that pair_terms_fc below really has no sin call) */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void pair_terms(const eann_model *m, eann_work *w, int r0, int r1,
                              const int need_dfc) {
    const int M = m->norbital;
    double sign[EANN_MAX_ORBITAL]; /* (-1)^L of each angular component */
    for (int q = 0; q < M; q++) sign[q] = m->index_para[q] % 2 ? -1.0 : 1.0;
    const double f = EANN_PI / m->spec.cutoff;
    const double *x = w->x;
    int *cursor = w->cursor;
    for (int i = r0; i < r1; i++) {
        const int si = w->row_species[i], end = w->pair_start[i + 1];
        for (int p = w->pair_start[i]; p < end; p++) {
            const int j = w->pair_j[p], sj = w->row_species[j];
            const int mirror = j < i && j >= r0 ? cursor[j]++ : -1;
            const double d = w->pair_d[p];
            double *v = w->pair_v + 3 * (size_t)p;
            for (int a = 0; a < 3; a++) v[a] = x[3 * i + a] - x[3 * j + a];
            double *A = w->pair_a + (size_t)p * M;
            if (mirror >= 0) {
                /* A_m(-v) = (-1)^L A_m(v): each product fc v_a1 .. v_aL changes
                 * sign L times, and IEEE products are exactly sign-symmetric */
                mul_n(M, sign, w->pair_a + (size_t)mirror * M, A);
                w->pair_fc[p] = w->pair_fc[mirror];
                if (need_dfc) w->pair_dfc[p] = w->pair_dfc[mirror];
            } else if (j < i) {
                /* (blocked path only: r0 > 0) the mirror (j, i) lies in an
                 * earlier block, already gone: build its A from its own v =
                 * x_j - x_i (not -v: x - x is +0 both ways) as row j did and
                 * flip it as above, so A has the copy's bits, signed zeros
                 * included; d, hence fc, is the same for (i, j) and (j, i) */
                double vj[3], Aj[EANN_MAX_ORBITAL], c = 0.5 * cos(d * f) + 0.5;
                for (int a = 0; a < 3; a++) vj[a] = x[3 * j + a] - x[3 * i + a];
                w->pair_fc[p] = c * c;
                if (need_dfc) w->pair_dfc[p] = dfc_of(c, d, f);
                angular(M, w->pair_fc[p], 0.0, vj, NULL, Aj, NULL);
                mul_n(M, sign, Aj, A);
            } else {
                /* 3. cutoff fc = (0.5 cos(pi d/rc) + 0.5)^2 and its derivative,
                 * the angular components A_m (cached for the backward pass) */
                double c = 0.5 * cos(d * f) + 0.5;
                w->pair_fc[p] = c * c;
                if (need_dfc) w->pair_dfc[p] = dfc_of(c, d, f);
                angular(M, w->pair_fc[p], 0.0, v, NULL, A, NULL);
            }
            /* R, W of a mirrored pair of equal species are copied in radial_values */
            w->pair_src[p] = mirror >= 0 && si == sj ? mirror : -1;
        }
        cursor[i] = w->pair_start[i];
        while (cursor[i] < end && w->pair_j[cursor[i]] < i) cursor[i]++;
    }
}

/* pair_terms with and without d fc / d d: two functions, so that in the
 * second no sin call is left for the compiler to merge with the cos into a
 * sincos call (the sin would then be paid for anyway) */
static void pair_terms_dfc(const eann_model *m, eann_work *w) {
    pair_terms(m, w, 0, w->natoms, 1);
}
static void pair_terms_fc(const eann_model *m, eann_work *w, int r0, int r1) {
    pair_terms(m, w, r0, r1, 0);
}

static int build_pairs(const eann_model *m, eann_work *w, int need_dfc) {
    const int N = w->natoms;
    cell_grid grid;
    const cell_grid *g = make_cells(m, w, &grid) ? &grid : NULL;
    size_t np = 0;
    for (int i = 0; i < N; i++) {
        if (np + (size_t)N > (size_t)INT_MAX) return EANN_ENOMEM; /* int pair indices */
        int rc = grow_neighbours(w, np + (size_t)N);
        if (rc) return rc;
        w->pair_start[i] = (int)np;
        np += (size_t)row_neighbours(m, w, g, i, np);
    }
    w->pair_start[N] = (int)np;
    w->npairs = (int)np;
    int rc = grow_pairs(m, w, np);
    if (rc) return rc;
    if (need_dfc) pair_terms_dfc(m, w);
    else pair_terms_fc(m, w, 0, N);
    /* without d fc / d d, pair_dfc[0] = NaN says so (a real one is finite):
     * eann_descriptor_backward then calls fill_dfc first */
    if (!need_dfc && np) w->pair_dfc[0] = NAN;
    return EANN_OK;
}

/* The radial functions R_k = exp(-inta (d - rs)^2) of every pair (FORMAT.md
 * 4.2) and W_k = params[s_j][k] R_k. */
static void radial_values(const eann_model *m, eann_work *w) {
    const int K = m->spec.nwave;
    const size_t np = (size_t)w->npairs;
    /* the fresh pairs (pair_src < 0) in one pass (eann_kernels.c), then a
     * mirrored pair of equal species copies its source's R and W (built
     * there: a source is always a fresh pair) */
    eann_radial(w->simd, w->npairs, K, w->pair_d, w->pair_j, w->row_species, w->pair_src,
                m->theta + m->off_rs, m->theta + m->off_inta, m->theta + m->off_params,
                w->pair_r, w->pair_w);
    for (size_t p = 0; p < np; p++) {
        if (w->pair_src[p] < 0) continue;
        const size_t q = (size_t)w->pair_src[p] * K;
        memcpy(w->pair_r + p * K, w->pair_r + q, sizeof(double) * (size_t)K);
        memcpy(w->pair_w + p * K, w->pair_w + q, sizeof(double) * (size_t)K);
    }
}

/* 1. the rows of eann_setup: checks, centre of mass, species sort (x, sp_start,
 * row_species, atom_of_row, row_of_atom) */
static int setup_rows(const eann_model *m, eann_work *w, int natoms, const int *species,
                      const double *pos) {
    if (!m || !w || natoms < 0 || natoms > w->cap_atoms || (natoms && (!species || !pos)))
        return EANN_EINVAL;
    const int S = m->spec.nspecies;
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
    return EANN_OK;
}

/* eann_setup; need_dfc = 0 skips d fc/d d (a sin per pair), which only the
 * input gradients use (eann_predict of a polarizability model) */
static int setup(const eann_model *m, eann_work *w, int natoms, const int *species,
                 const double *pos, int need_dfc) {
    int rc = setup_rows(m, w, natoms, species, pos);
    if (rc) return rc;
    rc = build_pairs(m, w, need_dfc);
    if (rc) return rc;
    radial_values(m, w);
    return EANN_OK;
}

int eann_setup(const eann_model *m, eann_work *w, int natoms, const int *species,
               const double *pos) {
    return setup(m, w, natoms, species, pos, 1);
}

void eann_angular(const eann_model *m, double fc, double fcd, const double *v, const double *vd,
                  double *A, double *Ad) {
    angular(m->norbital, fc, fcd, v, vd, A, Ad);
}

/* S [M][K] and rho [D] of row i from its pairs (pair_start[i] ..) */
static void descriptor_row(const eann_model *m, eann_work *w, int i, double *S) {
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    /* 4. S_i[m][k] = sum_j A_m(v_ij) (params[s_j][k] R_k(d_ij)) */
    int p0 = w->pair_start[i];
    eann_sum_atw(w->simd, w->pair_start[i + 1] - p0, M, K, w->pair_a + (size_t)p0 * M,
                 w->pair_w + (size_t)p0 * K, S);
    /* 5. rho[L K + k] = sum_{m in group L} S[m][k]^2, in the order of m
     * (group L = index_para[m]) */
    eann_rho_squares(w->simd, M, K, S, m->index_para, m->spec.nipsin, w->rho + (size_t)i * D);
}

void eann_descriptor_forward(const eann_model *m, eann_work *w) {
    const size_t MK = (size_t)m->norbital * m->spec.nwave;
    /* (3. the angular components of every pair come from eann_setup) */
    for (int i = 0; i < w->natoms; i++) descriptor_row(m, w, i, w->S + (size_t)i * MK);
}

/* rho of a large molecule for eann_predict without input gradients (dipole,
 * tdm), a block of rows at a time. The whole frame's pair arrays take ~350
 * bytes per pair (M + 2K + 6 numbers; 13 + 24 + 6 for the published models,
 * ~75 pairs per atom in water at 6 A: ~26 KB per atom), so beyond a few
 * thousand atoms they outgrow every cache and each pass over them (pair
 * terms, radial values, S) streams main memory. Here pair_j .. pair_a hold
 * one block of rows r0 .. r1-1 at a time (pair_start[r0 .. r1] counts from
 * 0), and rho [natoms][D] is filled row by row; S is a scratch row [M][K].
 * Every row gets the same pairs in the same order through the same
 * expressions as in eann_setup + eann_descriptor_forward, so rho has the
 * same bits: a pair whose mirror lies in an earlier block is built afresh
 * (pair_terms) where eann_setup copies it, with the copy's bits.
 * Afterwards the pair arrays and S hold only the last block. Does the
 * work of eann_setup (without d fc / d d) + eann_descriptor_forward. */
static int descriptor_blocked(const eann_model *m, eann_work *w, int natoms,
                              const int *species, const double *pos, int B) {
    int rc = setup_rows(m, w, natoms, species, pos);
    if (rc) return rc;
    cell_grid grid;
    if (!make_cells(m, w, &grid)) {
        /* no cell list (a small molecule, or too wide for a grid): all
         * pairs of the frame at once, as eann_setup */
        rc = build_pairs(m, w, 0);
        if (rc) return rc;
        radial_values(m, w);
        eann_descriptor_forward(m, w);
        return EANN_OK;
    }
    const int N = w->natoms;
    for (int r0 = 0; r0 < N; r0 += B) {
        const int r1 = r0 + B < N ? r0 + B : N;
        size_t np = 0;
        for (int i = r0; i < r1; i++) {
            if (np + (size_t)N > (size_t)INT_MAX) return EANN_ENOMEM;
            rc = grow_neighbours(w, np + (size_t)N);
            if (rc) return rc;
            w->pair_start[i] = (int)np;
            np += (size_t)row_neighbours(m, w, &grid, i, np);
        }
        w->pair_start[r1] = (int)np;
        w->npairs = (int)np;
        /* a quarter more than this block needs: the next blocks seldom grow it */
        rc = grow_pairs(m, w, np > w->cap_pairs ? np + np / 4 : np);
        if (rc) return rc;
        pair_terms_fc(m, w, r0, r1);
        radial_values(m, w);
        for (int i = r0; i < r1; i++) descriptor_row(m, w, i, w->S);
    }
    if (w->npairs) w->pair_dfc[0] = NAN; /* as build_pairs without d fc / d d */
    return EANN_OK;
}

void eann_descriptor_backward(const eann_model *m, eann_work *w, const double *drho,
                              double *dpos, double *dtheta) {
    const int K = m->spec.nwave, M = m->norbital, D = m->ndensity;
    const double *rs = m->theta + m->off_rs, *inta = m->theta + m->off_inta;
    if (dpos && w->npairs && isnan(w->pair_dfc[0])) fill_dfc(m, w); /* setup skipped it */
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
        eann_matmul(w->simd, np, M, K, w->pair_a + (size_t)p0 * M, dS, NULL, w->bu);
        if (dpos) {
            for (int q = 0; q < M; q++)
                for (int k = 0; k < K; k++) w->dst[(size_t)k * M + q] = dS[(size_t)q * K + k];
            eann_matmul(w->simd, np, K, M, w->pair_w + (size_t)p0 * K, w->dst, NULL, w->bga);
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
                /* W_k = c_k R_k (c = params[s_j]): dL/dc_k = u_k R_k, and with
                 * x = d - rs: dR/drs = 2 inta x R, dR/dinta = -x^2 R */
                const double *c = m->theta + m->off_params + (size_t)sj * K;
                double *dr_s = dtheta + m->off_rs + (size_t)sj * K;
                double *di = dtheta + m->off_inta + (size_t)sj * K;
                double *dp = dtheta + m->off_params + (size_t)sj * K;
                for (int k = 0; k < K; k++) {
                    double x = d - rsj[k];
                    dp[k] += R[k] * u[k];
                    dr_s[k] += c[k] * u[k] * (2.0 * inj[k] * x * R[k]);
                    di[k] += c[k] * u[k] * (-(x * x) * R[k]);
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

/* Layer by layer over all species (each species' rows through its own
 * weights; every value as a species at a time would give it): the LayerNorm
 * statistics and the one-output last layer are chains of dependent adds per
 * row, and rows of different species can then overlap them (12 NMA rows in
 * 4 species blocks of 1, 7, 3, 1). */
void eann_net_forward(const eann_model *m, eann_work *w, int t) {
    const eann_net_spec *ns = &m->spec.net[t];
    const int H = ns->nhidden, D = m->ndensity;
    const double *th = m->theta;
    /* the species present: nb blocks of rows start[b] .. start[b+1]-1 */
    int nb = 0, start[EANN_MAX_SPECIES + 1], spec[EANN_MAX_SPECIES];
    for (int s = 0; s < m->spec.nspecies; s++)
        if (w->sp_start[s + 1] > w->sp_start[s]) {
            spec[nb] = s;
            start[nb++] = w->sp_start[s];
            start[nb] = w->sp_start[s + 1];
        }
    if (nb == 0) return;
    const double *g[EANN_MAX_SPECIES], *bb[EANN_MAX_SPECIES], *al[EANN_MAX_SPECIES];
    const double *be[EANN_MAX_SPECIES];
    for (int h = 0; h < H; h++) {
        const int nin = h ? ns->sizes[h] : D;
        const size_t c = (size_t)ns->sizes[h + 1];
        for (int b = 0; b < nb; b++) {
            const eann_layer *L = eann_layer_of(m, t, spec[b], h);
            const int r0 = start[b];
            const double *in = h ? w->a[t][h - 1] + (size_t)r0 * nin : w->rho + (size_t)r0 * D;
            eann_matmul_packed(w->simd, start[b + 1] - r0, L->nin, L->nout, in, m->wt + L->wt,
                               m->wt + m->nwt + L->wt, th + L->b, w->y[t][h] + r0 * c);
            g[b] = th + L->ln_g;
            bb[b] = th + L->ln_b;
            al[b] = th + L->act_a;
            be[b] = th + L->act_b;
        }
        eann_ln_act_blocks(w->simd, nb, start, (int)c, w->y[t][h], g, bb, ns->ln_eps, al, be,
                           w->zhat[t][h], w->rstd[t][h], w->y[t][h], w->sig[t][h], w->a[t][h]);
    }
    const int nin = H ? ns->sizes[H] : D, nout = ns->sizes[H + 1];
    const double *in = H ? w->a[t][H - 1] : w->rho;
    if (nout == 1) {
        /* (g, bb reused: the weights and biases of the output layer) */
        for (int b = 0; b < nb; b++) {
            const eann_layer *L = eann_layer_of(m, t, spec[b], H);
            g[b] = m->wt + L->wt;
            bb[b] = th + L->b;
        }
        eann_out1_blocks(w->simd, nb, start, nin, in, g, bb, w->out[t]);
        return;
    }
    for (int b = 0; b < nb; b++) {
        const eann_layer *L = eann_layer_of(m, t, spec[b], H);
        const int r0 = start[b];
        eann_matmul_packed(w->simd, start[b + 1] - r0, L->nin, L->nout, in + (size_t)r0 * nin,
                           m->wt + L->wt, m->wt + m->nwt + L->wt, th + L->b,
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
        eann_linear_backward_simd(w->simd, n, L->nin, L->nout, x, th + L->w, dout + (size_t)r0 * L->nout, dx,
                        DT(L->w), DT(L->b));
        for (int h = H - 1; h >= 0; h--) {
            L = eann_layer_of(m, t, s, h);
            size_t c = (size_t)L->nout;
            /* ga = dL/da -> gb = dL/dy -> ga = dL/dz -> dx */
            if (!dtheta) {
                eann_act_ln_backward(w->simd, n, L->nout, w->y[t][h] + r0 * c,
                                     w->sig[t][h] + r0 * c, th + L->act_a, th + L->act_b,
                                     w->zhat[t][h] + r0 * c, w->rstd[t][h] + r0, th + L->ln_g,
                                     ga, gb, ga);
            } else {
                eann_act_backward(n, L->nout, w->y[t][h] + r0 * c, w->sig[t][h] + r0 * c,
                                  th + L->act_a, th + L->act_b, ga, gb, DT(L->act_a),
                                  DT(L->act_b));
                eann_layernorm_backward(n, L->nout, w->zhat[t][h] + r0 * c, w->rstd[t][h] + r0,
                                        th + L->ln_g, gb, ga, DT(L->ln_g), DT(L->ln_b));
            }
            x = h ? w->a[t][h - 1] + (size_t)r0 * L->nin : w->rho + (size_t)r0 * D;
            dx = h ? gb : w->drho + (size_t)r0 * D;
            eann_linear_backward_simd(w->simd, n, L->nin, L->nout, x, th + L->w, ga, dx, DT(L->w), DT(L->b));
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
int eann_output_layer_zero(const eann_model *m, const eann_work *w, int t) {
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
void eann_net_gradient(const eann_model *m, eann_work *w, int t, double *grad) {
    const eann_net_spec *ns = &m->spec.net[t];
    const int no = ns->sizes[ns->nhidden + 1];
    memset(grad, 0, sizeof(double) * 3 * (size_t)w->natoms);
    if (eann_output_layer_zero(m, w, t)) return;
    double *dout = w->dout;
    memset(dout, 0, sizeof(double) * (size_t)w->natoms * no);
    for (int r = 0; r < w->natoms; r++) dout[(size_t)r * no] = 1.0;
    eann_net_backward(m, w, t, dout, NULL);
    eann_descriptor_backward(m, w, w->drho, grad, NULL);
}

double eann_scalar(const eann_model *m, eann_work *w, int t, double *grad) {
    eann_net_forward(m, w, t);
    if (grad) eann_net_gradient(m, w, t, grad);
    return eann_net_sum(m, w, t);
}

/* ------------------------------------------------------------------------ */
/* heads (FORMAT.md sect. 5): each written once, used by eann_predict and by  */
/* the training losses (eann_train.c)                                         */
/* ------------------------------------------------------------------------ */

void eann_cross(const double a[3], const double b[3], double c[3]) {
    c[0] = a[1] * b[2] - a[2] * b[1];
    c[1] = a[2] * b[0] - a[0] * b[2];
    c[2] = a[0] * b[1] - a[1] * b[0];
}

/* Dipole of atomic charges q_i (output 0 of net 0), EANN chapter Eq. 1:
 * mu = sum_i q_i x'_i (x' = COM-shifted positions, angstrom, as the
 * published models); *qsum = sum_i q_i (for the charge term of Eq. 6). */
void eann_dipole_parts(const eann_model *m, const eann_work *w, double mu[3], double *qsum) {
    (void)m;
    double qs = 0;
    mu[0] = mu[1] = mu[2] = 0;
    for (int i = 0; i < w->natoms; i++) {
        int r = w->row_of_atom[i];
        double q = w->out[0][r];
        qs += q;
        for (int a = 0; a < 3; a++) mu[a] += q * w->x[3 * r + a];
    }
    if (qsum) *qsum = qs;
}

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

void eann_tdm_combine(const double u[3], const double v[3], double W, double t[3]) {
    /* EANN chapter Eqs. 7-8: t = u + v + W (u x v) */
    double c[3];
    eann_cross(u, v, c);
    for (int a = 0; a < 3; a++) t[a] = u[a] + v[a] + W * c[a];
}

void eann_charge_head_backward(const eann_work *w, const double e[3], double a, double c,
                               double s, double *dout) {
    /* mu = sum_i q_i x'_i, so d(e.mu)/dq_r = e.x'_r */
    for (int r = 0; r < w->natoms; r++) {
        const double *x = w->x + 3 * (size_t)r;
        dout[r] = s * (a * (e[0] * x[0] + e[1] * x[1] + e[2] * x[2]) + c);
    }
}

void eann_tdm_head_backward(const eann_work *w, const double u[3], const double v[3], double W,
                            const double g[3], double *dout) {
    /* t = u + v + W (u x v); g.(u x v) = u.(v x g) = v.(g x u), so
     * dL/du = g + W (v x g), dL/dv = g + W (g x u), dL/dW = g.(u x v) */
    double vg[3], gu[3], uv[3], du[3], dv[3];
    eann_cross(v, g, vg);
    eann_cross(g, u, gu);
    eann_cross(u, v, uv);
    for (int a = 0; a < 3; a++) {
        du[a] = g[a] + W * vg[a];
        dv[a] = g[a] + W * gu[a];
    }
    double dW = g[0] * uv[0] + g[1] * uv[1] + g[2] * uv[2];
    /* u = sum_r q1_r x'_r, v = sum_r q2_r x'_r, W = sum_r w_r */
    for (int r = 0; r < w->natoms; r++) {
        const double *xr = w->x + 3 * (size_t)r;
        dout[3 * r] = du[0] * xr[0] + du[1] * xr[1] + du[2] * xr[2];
        dout[3 * r + 1] = dv[0] * xr[0] + dv[1] * xr[1] + dv[2] * xr[2];
        dout[3 * r + 2] = dW;
    }
}

int eann_head_backward(const eann_model *m, const eann_work *w, const double *gout,
                       double *dout) {
    if (!m || !w || !gout || !dout) return EANN_EINVAL;
    if (m->spec.kind == EANN_DIPOLE) {
        eann_charge_head_backward(w, gout, 1.0, 0.0, 1.0, dout);
        return EANN_OK;
    }
    if (m->spec.kind != EANN_TDM) return EANN_EINVAL;
    double u[3], v[3], W;
    eann_tdm_parts(m, w, u, v, &W);
    eann_tdm_head_backward(w, u, v, W, gout, dout);
    return EANN_OK;
}

void eann_pol_parts(const eann_model *m, eann_work *w, double *g, double *h, double Psym[9],
                    double Hh[9], double *E2) {
    /* EANN chapter Eqs. 10-12 in the published models' form (FORMAT.md
     * sect. 5): alpha = Pm + Pm^T + sum_i h_i h_i^T + E_2 I with
     * Pm[a][b] = sum_i x'_ia g_ib, g = dE_0/dx, h = dE_1/dx, E_t = sum_i
     * y_i^(t). The chapter text describes one network; the published models
     * (which we reproduce) use these three (roles grad_sym, grad_outer,
     * trace). */
    const int N = w->natoms;
    eann_net_forward(m, w, 0);
    eann_net_gradient(m, w, 0, g);
    /* E_1 itself is not used: when net 1's output layer is zero (the
     * published model) h = 0 exactly and net 1 need not run at all. */
    if (eann_output_layer_zero(m, w, 1)) {
        memset(h, 0, sizeof(double) * 3 * (size_t)N);
    } else {
        eann_net_forward(m, w, 1);
        eann_net_gradient(m, w, 1, h);
    }
    eann_net_forward(m, w, 2);
    *E2 = eann_net_sum(m, w, 2);
    eann_pol_moments(w, g, h, Psym, Hh);
}

void eann_pol_moments(const eann_work *w, const double *g, const double *h, double Psym[9],
                      double Hh[9]) {
    /* Pm [3][3] and Hh [3][3] summed over atoms i in original order, so the
     * batched trainer (eann_train.c), which calls this too, gets the same bits. */
    const int N = w->natoms;
    double Pm[9] = {0};
    for (int q = 0; q < 9; q++) Hh[q] = 0;
    for (int i = 0; i < N; i++) {
        const double *x = w->x + 3 * (size_t)w->row_of_atom[i];
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                Pm[3 * a + b] += x[a] * g[3 * i + b];
                Hh[3 * a + b] += h[3 * i + a] * h[3 * i + b];
            }
    }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) Psym[3 * a + b] = Pm[3 * a + b] + Pm[3 * b + a];
}

int eann_predict(const eann_model *m, eann_work *w, int natoms, const int *species,
                 const double *pos, double *out) {
    if (!out) return EANN_EINVAL;
    /* only the polarizability needs input gradients (d fc / d d) */
    const int pol = m && m->spec.kind == EANN_POLARIZABILITY;
    const int B = w && w->block_rows > 0 ? w->block_rows : EANN_BLOCK_ROWS;
    int rc;
    if (pol || !w || natoms <= B || natoms > w->cap_atoms) {
        /* every pair of the molecule at once, then rho */
        rc = setup(m, w, natoms, species, pos, pol);
        if (!rc) eann_descriptor_forward(m, w);
    } else {
        /* a large frame, dipole or tdm: the same rho, a block of rows at a
         * time (bounded memory, the pair arrays stay in cache) */
        rc = descriptor_blocked(m, w, natoms, species, pos, B);
    }
    if (rc) return rc;
    if (m->spec.kind == EANN_DIPOLE) {
        eann_net_forward(m, w, 0);
        eann_dipole_parts(m, w, out, NULL);
    } else if (m->spec.kind == EANN_TDM) {
        eann_net_forward(m, w, 0);
        double u[3], v[3], W;
        eann_tdm_parts(m, w, u, v, &W);
        eann_tdm_combine(u, v, W, out);
    } else {
        double Ps[9], Hh[9], E2;
        eann_pol_parts(m, w, w->dpos, w->dpos2, Ps, Hh, &E2);
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                out[3 * a + b] = Ps[3 * a + b] + Hh[3 * a + b] + (a == b ? E2 : 0.0);
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
        /* CRLF line ends are accepted (as by the xyz and kQEq readers) */
        if (c == '\r' && (p + 1 == lx->len || lx->buf[p + 1] == '\n')) { p++; continue; }
        if (c < 32 || c > 126) {
            lx->pos = lx->len;
            return perr(lx, c == '\r' ? "carriage return inside a line (lines end in \\n or \\r\\n)"
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

/* A real: the whole token as strtod reads it, finite. This is the number
 * grammar of the xyz and kQEq readers too: decimal ("1", "-2.5e-3", ".5")
 * and C99 hexadecimal floats ("0x1.8p+1", exact); strtod rounds correctly,
 * so "%.17g" text reads back to the same bits. nan and inf are refused. */
static int tok_real(lexer *lx, int i, double *v) {
    char s[80], *end;
    if (lx->toklen[i] >= (int)sizeof s) return 0;
    tok_str(lx, i, s, sizeof s);
    double x = strtod(s, &end);
    if (end == s || *end || !isfinite(x)) return 0;
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
            if (e > b && e[-1] == '\r') e--;
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

#define TRY(x) do { if ((rc = (x)) != EANN_OK) return rc; } while (0)

/* Header lines `kind` .. `ndensity` and `activation` (FORMAT.md sect. 2)
 * into sp; comment lines met on the way are kept in *comments. */
static int parse_header(lexer *lx, eann_spec *sp, char **comments, size_t *clen) {
    char s[80];
    int rc, v;
    TRY(header_line(lx, "kind", 2, comments, clen));
    sp->kind = tok_is(lx, 1, "dipole") ? EANN_DIPOLE : tok_is(lx, 1, "tdm") ? EANN_TDM
             : tok_is(lx, 1, "polarizability") ? EANN_POLARIZABILITY : 0;
    if (!sp->kind)
        return perr(lx, "unknown kind '%s' (dipole, tdm or polarizability)", tok_str(lx, 1, s, sizeof s));
    TRY(header_line(lx, "nspecies", 2, comments, clen));
    TRY(header_int(lx, "nspecies", 1, 1, EANN_MAX_SPECIES, &sp->nspecies));
    TRY(header_line(lx, "species", sp->nspecies + 1, comments, clen));
    for (int q = 0; q < sp->nspecies; q++) {
        tok_str(lx, q + 1, s, sizeof s);
        if (lx->toklen[q + 1] > 2 || !valid_symbol(s))
            return perr(lx, "species: '%s' is not an element symbol (H..Rn)", s);
        memcpy(sp->species[q], s, strlen(s) + 1);
        for (int r = 0; r < q; r++)
            if (!strcmp(sp->species[r], s)) return perr(lx, "species: '%s' listed twice", s);
    }
    TRY(header_line(lx, "masses", sp->nspecies + 1, comments, clen));
    for (int q = 0; q < sp->nspecies; q++)
        if (!tok_real(lx, q + 1, &sp->mass[q]) || !(sp->mass[q] > 0))
            return perr(lx, "masses: '%s' is not a positive number", tok_str(lx, q + 1, s, sizeof s));
    TRY(header_line(lx, "cutoff", 2, comments, clen));
    TRY(header_real(lx, "cutoff", &sp->cutoff));
    if (!(sp->cutoff > 0)) return perr(lx, "cutoff must be positive");
    TRY(header_line(lx, "min_distance", 2, comments, clen));
    TRY(header_real(lx, "min_distance", &sp->min_distance));
    if (!(sp->min_distance >= 0 && sp->min_distance < sp->cutoff))
        return perr(lx, "min_distance must be in [0, cutoff)");
    TRY(header_line(lx, "nipsin", 2, comments, clen));
    TRY(header_int(lx, "nipsin", 1, 1, EANN_MAX_NIPSIN, &sp->nipsin));
    TRY(header_line(lx, "nwave", 2, comments, clen));
    TRY(header_int(lx, "nwave", 1, 1, 4096, &sp->nwave));
    int M = 0, p3 = 1;
    for (int L = 0; L < sp->nipsin; L++, p3 *= 3) M += p3;
    TRY(header_line(lx, "norbital", 2, comments, clen));
    TRY(header_int(lx, "norbital", 1, 1, EANN_MAX_ORBITAL, &v));
    if (v != M) return perr(lx, "norbital %d != sum of 3^L for L < nipsin (%d)", v, M);
    TRY(header_line(lx, "index_para", M + 1, comments, clen));
    for (int q = 0, L = 0, n = 1, c = 0; q < M; q++) {
        TRY(header_int(lx, "index_para", q + 1, 0, EANN_MAX_NIPSIN, &v));
        if (v != L) return perr(lx, "index_para: value %d is %d, expected %d", q, v, L);
        if (++c == n) { L++; n *= 3; c = 0; }
    }
    TRY(header_line(lx, "ndensity", 2, comments, clen));
    TRY(header_int(lx, "ndensity", 1, 1, 1 << 30, &v));
    if (v != sp->nipsin * sp->nwave)
        return perr(lx, "ndensity %d != nipsin * nwave (%d)", v, sp->nipsin * sp->nwave);
    TRY(header_line(lx, "activation", 2, comments, clen));
    if (!tok_is(lx, 1, "alpha_silu_beta"))
        return perr(lx, "activation '%s' unknown (only alpha_silu_beta)", tok_str(lx, 1, s, sizeof s));
    return EANN_OK;
}

/* The current line as `net t role R nhidden H sizes n_0 .. n_{H+1}
 * layernorm_eps e initpot v` into sp->net[t], checked against the header. */
static int parse_net_line(lexer *lx, eann_spec *sp, int t) {
    eann_net_spec *ns = &sp->net[t];
    char s[80];
    int rc, v;
    if (lx->ntok < 6 || !tok_is(lx, 2, "role") || !tok_is(lx, 4, "nhidden"))
        return perr(lx, "net line must read 'net T role R nhidden H sizes ... layernorm_eps E initpot V'");
    TRY(header_int(lx, "net", 1, t, t, &v));
    if (lx->toklen[3] >= EANN_NAME_LEN) return perr(lx, "net %d: role too long", t);
    tok_str(lx, 3, ns->role, sizeof ns->role);
    TRY(header_int(lx, "nhidden", 5, 0, EANN_MAX_HIDDEN, &ns->nhidden));
    int H = ns->nhidden, want = 6 + 1 + (H + 2) + 4;
    if (lx->ntok != want || !tok_is(lx, 6, "sizes") || !tok_is(lx, 7 + H + 2, "layernorm_eps") ||
        !tok_is(lx, 7 + H + 4, "initpot"))
        return perr(lx, "net %d: expected 'sizes' with %d numbers, then 'layernorm_eps E initpot V'",
                    t, H + 2);
    for (int h = 0; h < H + 2; h++) TRY(header_int(lx, "sizes", 7 + h, 1, 65536, &ns->sizes[h]));
    if (!tok_real(lx, 7 + H + 3, &ns->ln_eps) || !(ns->ln_eps > 0))
        return perr(lx, "net %d: layernorm_eps '%s' is not a positive number", t,
                    tok_str(lx, 7 + H + 3, s, sizeof s));
    if (!tok_real(lx, 7 + H + 5, &ns->initpot))
        return perr(lx, "net %d: initpot '%s' is not a finite number", t,
                    tok_str(lx, 7 + H + 5, s, sizeof s));
    /* role, input and output sizes against kind and ndensity: named here,
     * on the net's own line */
    char why[200] = "";
    if (check_net(sp, t, why, sizeof why)) return perr(lx, "%s", why);
    return EANN_OK;
}

/* The `narrays` line (current line). Before anything is allocated: the
 * declared arrays need one line each plus one line per value (FORMAT.md 3),
 * so a header declaring more than the rest of the text holds (huge widths,
 * or a truncated text) is refused here; the allocation is then bounded by
 * the text's length. */
static int check_narrays(lexer *lx, const eann_spec *sp) {
    uint64_t narr, ntheta, nwt;
    char s[80];
    int v;
    spec_counts(sp, &narr, &ntheta, &nwt);
    if (!tok_int(lx, 1, (long)narr, (long)narr, &v))
        return perr(lx, "narrays '%s' != %d (3 + nnets * nspecies * (6 nhidden + 2))",
                    tok_str(lx, 1, s, sizeof s), (int)narr);
    uint64_t left = lx->nlines - (size_t)lx->line;
    if (ntheta > left || narr > left - ntheta)
        return perr(lx, "the %d arrays declared need %.0f lines (%.0f values), but only %.0f "
                        "lines follow: truncated text or wrong network sizes",
                    (int)narr, (double)(ntheta + narr), (double)ntheta, (double)left);
    return EANN_OK;
}

/* Array ia (FORMAT.md sect. 3): the line `array NAME ndim d0 [d1]`, then
 * one value per line into theta. */
static int parse_array(lexer *lx, eann_model *m, int ia) {
    const eann_array *A = &m->arrays[ia];
    char s[80];
    int r = next_line(lx);
    if (r < 0) return EANN_EFORMAT;
    if (r == 0) return perr(lx, "unexpected end of text: expected 'array %s'", A->name);
    if (!tok_is(lx, 0, "array") || lx->ntok < 2)
        return perr(lx, "expected 'array %s ...', got '%s'", A->name, tok_str(lx, 0, s, sizeof s));
    if (!tok_is(lx, 1, A->name))
        return perr(lx, "array %d: expected name '%s', got '%s'", ia + 1, A->name,
                    tok_str(lx, 1, s, sizeof s));
    int nd, d0 = -1, d1 = -1;
    if (lx->ntok < 3 || !tok_int(lx, 2, 1, 2, &nd) || lx->ntok != 3 + nd ||
        !tok_int(lx, 3, 0, 1 << 30, &d0) || (nd == 2 && !tok_int(lx, 4, 0, 1 << 30, &d1)) ||
        nd != A->ndim || d0 != A->dim[0] || (nd == 2 && d1 != A->dim[1])) {
        if (A->ndim == 2)
            return perr(lx, "array '%s': expected shape '2 %d %d'", A->name, A->dim[0], A->dim[1]);
        return perr(lx, "array '%s': expected shape '1 %d'", A->name, A->dim[0]);
    }
    for (size_t q = 0; q < A->n; q++) {
        r = next_line(lx);
        if (r < 0) return EANN_EFORMAT;
        if (r == 0 || lx->ntok == 0 || tok_is(lx, 0, "array") || tok_is(lx, 0, "end"))
            return perr(lx, "array '%s': %s after %zu of %zu values", A->name,
                        r == 0 ? "text ends" : "values end", q, A->n);
        if (lx->ntok != 1)
            return perr(lx, "array '%s' value %zu: one number per line expected", A->name, q);
        if (!tok_real(lx, 0, &m->theta[A->off + q]))
            return perr(lx, "array '%s' value %zu: '%s' is not a finite number", A->name, q,
                        tok_str(lx, 0, s, sizeof s));
    }
    return EANN_OK;
}

/* The `end` line and nothing but blank lines after it. */
static int parse_end(lexer *lx) {
    int r = next_line(lx);
    if (r < 0) return EANN_EFORMAT;
    if (r == 0 || !tok_is(lx, 0, "end") || lx->ntok != 1)
        return perr(lx, r == 0 ? "missing 'end' line" : "expected 'end' after the last array");
    while ((r = next_line(lx)) == 1)
        if (lx->ntok) return perr(lx, "text after 'end'");
    return r < 0 ? EANN_EFORMAT : EANN_OK;
}

/* The grammar EANN_TEXT_V1 after its first line: header, nets, arrays, end. */
static int parse_v1_body(lexer *lx, eann_model **out, char **comments, size_t *clen) {
    eann_spec sp;
    memset(&sp, 0, sizeof sp);
    int rc;
    TRY(parse_header(lx, &sp, comments, clen));
    TRY(header_line(lx, "nnets", 2, comments, clen));
    TRY(header_int(lx, "nnets", 1, 1, EANN_MAX_NETS, &sp.nnets));
    if (sp.nnets != (sp.kind == EANN_POLARIZABILITY ? 3 : 1))
        return perr(lx, "kind %s needs %d net(s), got %d", eann_kind_name(sp.kind),
                    sp.kind == EANN_POLARIZABILITY ? 3 : 1, sp.nnets);
    for (int t = 0; t < sp.nnets; t++) {
        TRY(header_line(lx, "net", -1, comments, clen));
        TRY(parse_net_line(lx, &sp, t));
    }
    TRY(header_line(lx, "narrays", 2, comments, clen));
    TRY(check_narrays(lx, &sp));
    eann_model *m = NULL;
    char why[200] = "";
    rc = eann_model_new(&sp, &m, why, sizeof why);
    if (rc == EANN_ENOMEM) return rc;
    if (rc) return perr(lx, "%s", why);
    m->comments = *comments;
    *comments = NULL;
    for (int ia = 0; ia < m->narrays && !rc; ia++) rc = parse_array(lx, m, ia);
    if (!rc) rc = parse_end(lx);
    if (rc) {
        eann_model_free(m);
        return rc;
    }
    eann_model_sync(m);
    *out = m;
    return EANN_OK;
}
#undef TRY

static int parse_v1(lexer *lx, eann_model **out) {
    char *comments = NULL;
    size_t clen = 0;
    int rc = parse_v1_body(lx, out, &comments, &clen);
    free(comments);
    return rc;
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

/* The library's one growable text buffer (model writer here, the
 * normalisation comments and checkpoints in eann_train.c). */
void eann_text_printf(eann_text *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        size_t room = b->s ? b->cap - b->len : 0;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if ((size_t)n < room) { b->len += (size_t)n; return; }
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
    eann_text b = {malloc(1 << 16), 0, 1 << 16, 0};
    if (!b.s) return EANN_ENOMEM;
    const eann_spec *sp = &m->spec;
    eann_text_printf(&b, "EANN_TEXT_V1\n");
    if (m->comments) eann_text_printf(&b, "%s", m->comments);
    eann_text_printf(&b, "kind %s\nnspecies %d\nspecies", eann_kind_name(sp->kind), sp->nspecies);
    for (int s = 0; s < sp->nspecies; s++) eann_text_printf(&b, " %s", sp->species[s]);
    eann_text_printf(&b, "\nmasses");
    for (int s = 0; s < sp->nspecies; s++) eann_text_printf(&b, " %.17g", sp->mass[s]);
    eann_text_printf(&b, "\ncutoff %.17g\nmin_distance %.17g\nnipsin %d\nnwave %d\nnorbital %d\nindex_para",
            sp->cutoff, sp->min_distance, sp->nipsin, sp->nwave, m->norbital);
    for (int q = 0; q < m->norbital; q++) eann_text_printf(&b, " %d", m->index_para[q]);
    eann_text_printf(&b, "\nndensity %d\nactivation alpha_silu_beta\nnnets %d\n", m->ndensity, sp->nnets);
    for (int t = 0; t < sp->nnets; t++) {
        const eann_net_spec *ns = &sp->net[t];
        eann_text_printf(&b, "net %d role %s nhidden %d sizes", t, ns->role, ns->nhidden);
        for (int h = 0; h < ns->nhidden + 2; h++) eann_text_printf(&b, " %d", ns->sizes[h]);
        eann_text_printf(&b, " layernorm_eps %.17g initpot %.17g\n", ns->ln_eps, ns->initpot);
    }
    eann_text_printf(&b, "narrays %d\n", m->narrays);
    for (int ia = 0; ia < m->narrays; ia++) {
        const eann_array *A = &m->arrays[ia];
        if (A->ndim == 2) eann_text_printf(&b, "array %s 2 %d %d\n", A->name, A->dim[0], A->dim[1]);
        else eann_text_printf(&b, "array %s 1 %d\n", A->name, A->dim[0]);
        for (size_t q = 0; q < A->n; q++) eann_text_printf(&b, "%.17g\n", m->theta[A->off + q]);
    }
    eann_text_printf(&b, "end\n");
    if (b.oom) {
        free(b.s);
        return EANN_ENOMEM;
    }
    *buf = b.s;
    *len = b.len;
    return EANN_OK;
}
