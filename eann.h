/* SPDX-License-Identifier: MIT */
/* eann.h - embedded atom neural network (EANN) for tensorial molecular
 * properties: the embedded density descriptor, element-wise networks
 * (Linear -> LayerNorm -> alpha*SiLU(beta*x) stacks), the dipole /
 * transition-dipole / polarizability heads, exact analytic gradients with
 * respect to positions, and the EANN_TEXT_V1 model text (parser and writer).
 * Training (losses, parameter gradients, optimisers) is declared in
 * eann_train.h and implemented in eann_train.c, built from these pieces.
 *
 * Sources: ../shared/eann_nma_published/FORMAT.md (the exact forward pass
 * and text format; "FORMAT.md sect. N") and the EANN chapter
 * (../shared/papers/eann-tensorial-chapter.txt, "EANN chapter Eq. N":
 * Eq. 1 dipole of charges, Eqs. 7-8 transition dipole, Eqs. 9-12
 * polarizability, Eqs. 15-16 embedded density). Where the chapter and the
 * published models differ (network sizes, the polarizability's networks,
 * Eq. 15's multinomial factor) the code follows the published models: see
 * the top of eann.c.
 *
 * Vendoring: copy eann.c and eann.h (prediction); add eann_train.c and
 * eann_train.h for training. C11, libc and libm. The library never
 * prints, exits, reads files or keeps global state; functions that can fail
 * return EANN_OK (0) or a positive EANN_E* code (eann_strerror()).
 *
 * Units: positions in angstrom (as the published models expect); outputs in
 * whatever units the model was trained on (atomic units for the published
 * NMA models: dipole e*bohr, polarizability e^2*bohr^2/hartree).
 *
 * ---------------------------------------------------------------------------
 * Typical use (prediction):
 *     eann_model *m; eann_parse_error pe;
 *     eann_model_parse(text, len, &m, &pe);      // or eann_model_new + fill theta
 *     eann_work *w; eann_work_new(m, natoms, &w);
 *     eann_predict(m, w, natoms, species, pos, out);  // out[3] or out[9]
 *     eann_work_free(w); eann_model_free(m);
 *
 * Training (eann_train.h: eann_train_init, eann_train_run,
 * eann_sample_loss) uses the same pieces, forward/backward in pairs:
 *     eann_setup()                 COM shift, species sort, pair list, radial caches
 *     eann_descriptor_forward()    angular terms, S and rho      (FORMAT.md 4.3-4.5)
 *     eann_net_forward(t)          net t on every atom, caches   (FORMAT.md 4.6)
 *     eann_head_backward()         dL/d(output) -> dL/d(atomic outputs) (dipole, tdm)
 *     eann_net_backward(t, dy)     -> w->drho, += dtheta (weights)
 *     eann_descriptor_backward()   drho -> += dpos, += dtheta (rs, inta, params)
 * ---------------------------------------------------------------------------
 *
 * PARAMETER LAYOUT. Every trainable number of a model is one element of the
 * flat array m->theta[m->ntheta]; a gradient array of the same length uses
 * the same layout. The order is exactly the array order of the model text
 * (FORMAT.md sect. 3), each array row-major as in the text:
 *     rs [S][K], inta [S][K], params [S][K]          (m->off_rs, off_inta, off_params)
 *     for t in nets, for species s, for h = 0..H-1:
 *         linear{h}.weight [n_{h+1}][n_h], linear{h}.bias [n_{h+1}],
 *         layernorm{h}.weight [n_{h+1}], layernorm{h}.bias [n_{h+1}],
 *         act{h}.alpha [n_{h+1}], act{h}.beta [n_{h+1}]
 *     then linear{H}.weight [n_{H+1}][n_H], linear{H}.bias [n_{H+1}].
 * eann_layer_of(m, t, s, h) gives the offsets of layer h of net t for species
 * s; m->arrays[] lists every array (name, shape, offset) in order.
 * After changing theta call eann_model_sync(m): the forward pass uses a
 * transposed copy of the linear weights (m->wt) that it refreshes.
 */
#ifndef EANN_H
#define EANN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    EANN_OK = 0,
    EANN_EINVAL = 1,   /* bad argument (sizes, NULL, species index, non-finite input) */
    EANN_ENOMEM = 2,   /* allocation failed or a size would overflow */
    EANN_ESPECIES = 3, /* an element that the model does not know */
    EANN_EFORMAT = 4,  /* a model text is damaged (see eann_parse_error) */
    EANN_ESPEC = 5     /* an inconsistent model specification (sizes, roles) */
};
const char *eann_strerror(int code);

#define EANN_MAX_SPECIES 16
#define EANN_MAX_NETS 8
#define EANN_MAX_HIDDEN 32   /* hidden layers per net */
#define EANN_MAX_NIPSIN 5    /* angular groups L = 0..4 */
#define EANN_MAX_ORBITAL 121 /* sum_{L<5} 3^L */
#define EANN_NAME_LEN 32

typedef enum { EANN_DIPOLE = 1, EANN_TDM = 2, EANN_POLARIZABILITY = 3 } eann_kind;
const char *eann_kind_name(int kind);       /* "dipole", "tdm", "polarizability" */
int eann_kind_outputs(int kind);            /* 3, 3, 9 */

/* One element-wise network (FORMAT.md sect. 2, line `net`). */
typedef struct {
    char role[EANN_NAME_LEN];     /* charge | tdm3 | grad_sym | grad_outer | trace */
    int nhidden;                  /* H >= 0 */
    int sizes[EANN_MAX_HIDDEN + 2]; /* n_0 = ndensity, n_1..n_H hidden, n_{H+1} outputs */
    double ln_eps;                /* LayerNorm epsilon > 0 */
    double initpot;               /* unused buffer of the original model (kept for the text) */
} eann_net_spec;

/* The header of a model: everything but the trainable numbers. */
typedef struct {
    int kind;                     /* eann_kind */
    int nspecies;                 /* S, 1..EANN_MAX_SPECIES */
    char species[EANN_MAX_SPECIES][4]; /* element symbols, e.g. "O"; index = species index */
    double mass[EANN_MAX_SPECIES];/* amu, for the centre of mass (FORMAT.md 4.1) */
    double cutoff;                /* rc, angstrom */
    double min_distance;          /* dmin, angstrom */
    int nipsin;                   /* P, angular groups L = 0..P-1 (1..EANN_MAX_NIPSIN) */
    int nwave;                    /* K radial functions */
    int nnets;                    /* T */
    eann_net_spec net[EANN_MAX_NETS];
} eann_spec;

/* Offsets (into theta) of one layer of one net of one species. For the
 * output layer (h == H) the LayerNorm/activation offsets are (size_t)-1. */
typedef struct {
    int nin, nout;
    size_t w, b;          /* linear weight [nout][nin], bias [nout] */
    size_t ln_g, ln_b;    /* LayerNorm weight (gamma) and bias [nout] */
    size_t act_a, act_b;  /* activation alpha and beta [nout] */
    size_t wt;            /* offset of the transposed weight [nin][nout] in m->wt */
} eann_layer;

/* One array of the model text (FORMAT.md sect. 3). */
typedef struct {
    char name[64];
    int ndim;             /* 1 or 2 */
    int dim[2];
    size_t off, n;        /* position in theta, number of elements */
} eann_array;

typedef struct {
    eann_spec spec;
    int norbital;                       /* M = sum_{L<P} 3^L */
    int ndensity;                       /* D = P*K */
    int index_para[EANN_MAX_ORBITAL];   /* L group of each angular component */
    int orb_parent[EANN_MAX_ORBITAL];   /* A_m = A_parent * v[orb_axis] (m >= 1) */
    int orb_axis[EANN_MAX_ORBITAL];
    size_t ntheta;
    double *theta;                      /* [ntheta] all trainable parameters */
    size_t off_rs, off_inta, off_params;/* [S][K] blocks in theta */
    int nlayers;                        /* entries of layer[] */
    eann_layer *layer;                  /* see eann_layer_of */
    int layer_base[EANN_MAX_NETS];
    int narrays;
    eann_array *arrays;                 /* [narrays] in text order */
    size_t nwt;
    double *wt;                         /* transposed linear weights (derived; eann_model_sync) */
    char *comments;                     /* header comment lines ("# ...\n"...), kept by
                                           parse and write; NULL if none */
    /* Room for later format versions (e.g. descriptor normalisation mean/std
     * per descriptor component, EANN_TEXT_V2): add fields here, keep theta's
     * layout for the V1 arrays and append new trainable arrays after them. */
} eann_model;

/* Layer h (0..H) of net t for species s. */
const eann_layer *eann_layer_of(const eann_model *m, int t, int s, int h);

/* A model with the given header and theta = 0 (norbital, ndensity,
 * index_para, layout derived from spec). Checks the spec (EANN_ESPEC):
 * species must be element symbols H..Rn, listed once. A network whose size
 * does not fit a size_t gives EANN_ENOMEM before any allocation.
 * If msg != NULL, a reason is written there on error (msglen bytes; "" if
 * none). */
int eann_model_new(const eann_spec *spec, eann_model **out, char *msg, size_t msglen);
void eann_model_free(eann_model *m);
/* Recompute derived data (transposed weights) after theta changed. */
void eann_model_sync(eann_model *m);
/* Fill theta with a seeded random initialisation that gives O(1) outputs
 * (our own PRNG; the same seed gives the same bits everywhere), then sync. */
void eann_model_init_random(eann_model *m, uint64_t seed);
/* Species index of an element symbol, or -1 if the model lacks it. */
int eann_species_index(const eann_model *m, const char *symbol);

/* --- model text (EANN_TEXT_V1, FORMAT.md) -------------------------------- */
typedef struct {
    int line;            /* 1-based line of the problem (0 if not line-specific) */
    char msg[256];       /* what is wrong, e.g. "array 'rs': expected shape '2 4 12'" */
} eann_parse_error;

/* Parse a model text from memory (buf need not be NUL-terminated). Every
 * name, shape, count and number is checked; non-finite values are refused;
 * species must be element symbols H..Rn (line `species`); a net's role and
 * sizes are checked against kind and ndensity on its own `net` line. The
 * `narrays` line is refused when the declared arrays need more lines
 * (one per array and per value) than the rest of the text has, so memory
 * is allocated only for what the text can hold (a truncated text is
 * reported there too). On error *out is NULL, EANN_EFORMAT (or EANN_ENOMEM) is returned and err
 * says where. The first line selects the grammar (only EANN_TEXT_V1 so far;
 * a V2 with extra optional header keys would get its own branch in
 * eann_model_parse). Header comment lines are kept in m->comments. */
int eann_model_parse(const char *buf, size_t len, eann_model **out, eann_parse_error *err);
/* Write the model as EANN_TEXT_V1 (every real with %.17g) into a malloc'd
 * NUL-terminated buffer (*len excludes the NUL); the caller frees it.
 * parse(write(m)) has bit-identical theta and header; write(parse(text))
 * gives back the published texts byte for byte (comments included). */
int eann_model_write(const eann_model *m, char **buf, size_t *len);

/* --- per-molecule workspace and caches ----------------------------------- */
/* eann_setup finds the pairs of molecules with more atoms than this through
 * a cell list (time and memory linear in the number of atoms), of smaller
 * ones by testing all pairs; both give the same pairs in the same order. */
#define EANN_CELL_MIN_ATOMS 128
/* rows per block of eann_predict for large molecules (dipole, tdm): ~5000
 * pairs of ~350 bytes at 75 pairs per row, so that a block's pair arrays
 * stay within a 2 MB L2 cache (eann.c, descriptor_blocked) */
#define EANN_BLOCK_ROWS 64

/* All arrays are allocated once for natoms_max atoms (eann_work_new) and
 * indexed by ROW r = position of the atom after a stable sort by species
 * (atoms of one species are consecutive rows: rows sp_start[s] ..
 * sp_start[s+1]-1), so each species block goes through its network as one
 * matrix-matrix product. atom_of_row[r] gives the original atom index. */
typedef struct {
    int cap_atoms;            /* allocated for this many atoms */
    size_t cap_pairs;         /* pair arrays' capacity (grows in eann_setup, never shrinks) */
    int natoms, npairs;
    int *row_species;         /* [natoms] species of each row */
    int *atom_of_row;         /* [natoms] original atom index of each row */
    int *row_of_atom;         /* [natoms] inverse of atom_of_row */
    int sp_start[EANN_MAX_SPECIES + 1];
    double *x;                /* [natoms][3] COM-shifted positions by row (angstrom) */
    /* pair list, ordered pairs (i, j) i != j, grouped by centre row i
     * (pairs of row i: pair_start[i] .. pair_start[i+1]-1) */
    int *pair_start;          /* [natoms+1] */
    int *cursor;              /* [natoms] scratch of eann_setup */
    int *pair_j;              /* [npairs] neighbour row */
    int *pair_src;            /* [npairs] -1, or the earlier pair (j, i) whose R, W this
                                 pair (i, j) of equal species copies (eann_setup) */
    double *pair_v;           /* [npairs][3] v = x_i - x_j */
    double *pair_d;           /* [npairs] distance */
    double *pair_fc, *pair_dfc;  /* [npairs] cutoff and d fc / d d */
    double *pair_r;           /* [npairs][K] radial R_k (exp cached) */
    double *pair_w;           /* [npairs][K] params[s_j][k] * R_k */
    double *pair_a;           /* [npairs][M] angular components A_m (descriptor_forward) */
    double *S;                /* [natoms][M][K] FORMAT.md 4.4 */
    double *rho;              /* [natoms][D] descriptor, net input */
    /* network caches, per net t and hidden layer h: [natoms][n_{h+1}] */
    double *y[EANN_MAX_NETS][EANN_MAX_HIDDEN];     /* LayerNorm output (activation input) */
    double *zhat[EANN_MAX_NETS][EANN_MAX_HIDDEN];  /* normalised pre-activation */
    double *sig[EANN_MAX_NETS][EANN_MAX_HIDDEN];   /* sigmoid(beta*y) */
    double *a[EANN_MAX_NETS][EANN_MAX_HIDDEN];     /* activation output */
    double *rstd[EANN_MAX_NETS][EANN_MAX_HIDDEN];  /* [natoms] 1/sqrt(var+eps) */
    double *out[EANN_MAX_NETS];                    /* [natoms][n_{H+1}] atomic outputs */
    /* backward scratch */
    double *g1, *g2;          /* [natoms][max width] */
    double *dout;             /* [natoms][max width] dL/d out used by the heads */
    double *drho;             /* [natoms][D] set by eann_net_backward */
    double *dS;               /* [natoms][M][K] */
    double *dst, *bu, *bga;   /* scratch of eann_descriptor_backward: [K][M], [natoms][K], [natoms][M] */
    double *dpos;             /* [natoms][3] scratch for gradients (original atom order) */
    double *dpos2;            /* [natoms][3] */
    int simd;                 /* EANN_SIMD_PORTABLE or EANN_SIMD_AVX2 (eann_work_set_simd) */
    /* neighbour search of eann_setup (cell list for molecules of more than
     * EANN_CELL_MIN_ATOMS atoms; the pairs come out in the same order) */
    size_t cap_nbr;           /* capacity of pair_j and pair_d (cap_pairs: the others) */
    int *cell_start;          /* [ncells+1] cell_rows[cell_start[c] ..] belong to cell c */
    int *cell_rows;           /* [<= 27 natoms] for each cell, the rows of the cells around
                                 it (itself included), ascending */
    int *cell_of_row;         /* [natoms] */
    /* eann_predict of a dipole or tdm model builds the pairs and rho of a
     * molecule of more than this many atoms (0: EANN_BLOCK_ROWS) a block of
     * rows at a time, with the same bits; tests set it to force or avoid blocks */
    int block_rows;
} eann_work;

/* A workspace for molecules of up to natoms_max atoms, for model m (or any
 * model with the same header sizes). The pair arrays grow on demand inside
 * eann_setup; nothing else is allocated after eann_work_new. One workspace
 * per thread; the model is only read. */
int eann_work_new(const eann_model *m, int natoms_max, eann_work **out);
void eann_work_free(eann_work *w);
/* Which copy of the hot loops a workspace uses. EANN_SIMD_AUTO (what
 * eann_work_new picks): the AVX2 copy if this build has it (gcc or clang on
 * x86-64) and the CPU runs it, else the portable one. Both give the same
 * bits (no FMA; every lane does the scalar code's operations in its order),
 * which tests/test_eann.c checks; forcing one is for those tests and for
 * benchmarks. EANN_EINVAL for an unknown mode or AVX2 where it is absent. */
enum { EANN_SIMD_AUTO = 0, EANN_SIMD_PORTABLE = 1, EANN_SIMD_AVX2 = 2 };
int eann_work_set_simd(eann_work *w, int mode);

/* Load one molecule: species[i] in 0..S-1, pos [natoms][3] angstrom.
 * Centre of mass shift, species sort, pair list, cutoff, angular
 * components and radial values.
 * EANN_EINVAL for a bad species index, non-finite position, or more atoms
 * than the workspace holds. */
int eann_setup(const eann_model *m, eann_work *w, int natoms, const int *species,
               const double *pos);
/* S and rho (FORMAT.md 4.4-4.5, EANN chapter Eq. 15). */
void eann_descriptor_forward(const eann_model *m, eann_work *w);
/* Net t on every atom: fills the caches and w->out[t]. */
void eann_net_forward(const eann_model *m, eann_work *w, int t);
/* Backward through net t: dout [natoms rows][n_{H+1}] = dL/d out (row
 * order). Sets w->drho = dL/drho. If dtheta != NULL, ADDS dL/d(weights of
 * net t) into dtheta (theta layout). */
void eann_net_backward(const eann_model *m, eann_work *w, int t, const double *dout,
                       double *dtheta);
/* Backward through the descriptor (after eann_descriptor_forward, whose S
 * and angular components it uses): drho [rows][D]. ADDS dL/dx_i into
 * dpos [natoms][3] (ORIGINAL atom order, units of L per angstrom) if
 * dpos != NULL, and dL/d(rs, inta, params) into dtheta if != NULL.
 * Uses w->dS as scratch (it then holds dL/dS). */
void eann_descriptor_backward(const eann_model *m, eann_work *w, const double *drho,
                              double *dpos, double *dtheta);

/* Sum over atoms of output 0 of net t after eann_net_forward (an "energy"). */
double eann_net_sum(const eann_model *m, const eann_work *w, int t);
/* 1 if the output layer of net t is zero for every species present in w
 * (after eann_setup): its outputs and input gradient are then exactly zero
 * and need not be computed (eann_pol_parts, the batched trainer). */
int eann_output_layer_zero(const eann_model *m, const eann_work *w, int t);
/* Scalar head: E = sum_i y_i of net t (output 0) and, if grad != NULL,
 * grad [natoms][3] (original atom order) = dE/dx_i, forces are -grad.
 * Call eann_setup and eann_descriptor_forward first; runs net t forward
 * (and backward for grad). The pair list is held fixed (FORMAT.md 5). */
double eann_scalar(const eann_model *m, eann_work *w, int t, double *grad);

/* Full prediction (FORMAT.md sect. 5): out[3] dipole (EANN chapter Eq. 1),
 * out[3] transition dipole (Eqs. 7-8) or out[9] polarizability, row-major
 * (Eqs. 10-12). */
int eann_predict(const eann_model *m, eann_work *w, int natoms, const int *species,
                 const double *pos, double *out);

/* The three vectors of a transition dipole (EANN chapter Eqs. 7-8) after
 * eann_predict (or eann_net_forward of net 0) of a tdm model: u = sum q1 x',
 * v = sum q2 x', W = sum w. The outputs may be much smaller than these
 * terms (u and v nearly cancel for NMA n->pi*), so max(|u|, |v|, |W u x v|)
 * is the scale of its rounding errors. */
void eann_tdm_parts(const eann_model *m, const eann_work *w, double u[3], double v[3], double *W);

/* Backward of the dipole / transition-dipole head for training: given
 * gout[3] = dL/d(output) after eann_predict (or eann_setup,
 * eann_descriptor_forward, eann_net_forward(0)), writes dout [rows][n_out] =
 * dL/d(atomic outputs of net 0) in the row order eann_net_backward takes.
 * Then eann_net_backward(m, w, 0, dout, dtheta) and
 * eann_descriptor_backward(m, w, w->drho, NULL, dtheta) give dL/dtheta.
 * EANN_EINVAL for a polarizability model: its output already holds first
 * derivatives, so its parameter gradient needs second derivatives (see
 * eann_sample_loss in eann_train.h). */
int eann_head_backward(const eann_model *m, const eann_work *w, const double *gout,
                       double *dout);

/* --- building blocks (exported for tests and training) -------------------
 * Row-major batches of n rows. Backward functions ADD into dw/db/dg/...
 * (which may be NULL) and SET dx/dz/dy. */
/* y[i] = exp(x[i]) (x may equal y). Our own table + polynomial evaluation
 * for |x| <= 708 (within 1 ulp of the exact value, same bits with every
 * compiler and C library, ~3x faster than libm here), libm exp beyond. Used
 * for the radial functions and the sigmoid. */
void eann_exp_n(int n, const double *x, double *y);
/* The same with a chosen copy of the loop (EANN_SIMD_PORTABLE / _AVX2 /
 * _AUTO, see eann_work_set_simd): identical bits; for tests. EANN_EINVAL if
 * the copy is not available. */
int eann_exp_n_simd(int mode, int n, const double *x, double *y);
/* z[n][nout] = x[n][nin] W^T + b, with wt = W^T [nin][nout]. */
void eann_linear_forward(int n, int nin, int nout, const double *x, const double *wt,
                         const double *b, double *z);
/* dx[n][nin] = dz W (W [nout][nin]); dw[nout][nin] += dz^T x; db += sum dz. */
void eann_linear_backward(int n, int nin, int nout, const double *x, const double *w,
                          const double *dz, double *dx, double *dw, double *db);
/* LayerNorm over the c features of each row (biased variance). z may alias y. */
void eann_layernorm_forward(int n, int c, const double *z, const double *g, const double *b,
                            double eps, double *zhat, double *rstd, double *y);
void eann_layernorm_backward(int n, int c, const double *zhat, const double *rstd,
                             const double *g, const double *dy, double *dz, double *dg,
                             double *db);
/* a = alpha * (beta*y) * sigmoid(beta*y) per feature; sig = sigmoid(beta*y). */
void eann_act_forward(int n, int c, const double *y, const double *alpha, const double *beta,
                      double *sig, double *a);
void eann_act_backward(int n, int c, const double *y, const double *sig, const double *alpha,
                       const double *beta, const double *da, double *dy, double *dalpha,
                       double *dbeta);

/* --- pieces shared by prediction and training ---------------------------
 * Each piece of physics is written once, here in eann.c; eann_train.c
 * (losses and parameter gradients) calls these rather than its own copies. */

/* c = a x b */
void eann_cross(const double a[3], const double b[3], double c[3]);
/* The library's one PRNG (splitmix64): next 64 bits, and a uniform double in
 * [0, 1) from its top 53 bits. The same seed gives the same bits everywhere. */
uint64_t eann_rand_u64(uint64_t *state);
double eann_rand_uniform(uint64_t *state);
/* The matrix kernel with a chosen copy of the loop (simd = a workspace's
 * `simd`): z[a][j] = b[j] + sum_{c = 0..nk-1} x[a][c] B[c][j] in the order
 * of c (b == NULL: 0 + ...); x [n][nk], B [nk][nj], z [n][nj]. */
void eann_matmul(int simd, int n, int nk, int nj, const double *x, const double *B,
                 const double *b, double *z);
/* eann_linear_backward with a chosen copy of the loops (same bits). */
void eann_linear_backward_simd(int simd, int n, int nin, int nout, const double *x,
                               const double *w, const double *dz, double *dx, double *dw,
                               double *db);
/* Angular factors of one pair (FORMAT.md 4.3): A [M]; with Ad != NULL also
 * their tangent for d fc = fcd, d v = vd [3]. */
void eann_angular(const eann_model *m, double fc, double fcd, const double *v, const double *vd,
                  double *A, double *Ad);
/* grad [natoms][3] (original atom order) = d(sum_i out_i[0] of net t)/dx
 * after eann_net_forward(t) (the pair list held fixed, FORMAT.md sect. 5). */
void eann_net_gradient(const eann_model *m, eann_work *w, int t, double *grad);
/* Dipole head after eann_net_forward(0): mu = sum_i q_i x'_i (EANN
 * chapter Eq. 1) and, if qsum != NULL, sum_i q_i. */
void eann_dipole_parts(const eann_model *m, const eann_work *w, double mu[3], double *qsum);
/* t = u + v + W (u x v) (EANN chapter Eqs. 7-8), from eann_tdm_parts. */
void eann_tdm_combine(const double u[3], const double v[3], double W, double t[3]);
/* Polarizability head (EANN chapter Eqs. 10-12, FORMAT.md sect. 5) after
 * eann_setup and eann_descriptor_forward: runs nets 0..2 and gives
 * g = dE_0/dx, h = dE_1/dx [natoms][3] (original order), Psym = Pm + Pm^T,
 * Hh = sum_i h_i h_i^T, *E2; alpha = Psym + Hh + E2 I. */
void eann_pol_parts(const eann_model *m, eann_work *w, double *g, double *h, double Psym[9],
                    double Hh[9], double *E2);
/* The sums of eann_pol_parts from given g, h [natoms][3] (original order)
 * and the centred positions w->x: Psym = Pm + Pm^T, Pm[a][b] = sum_i
 * x'_ia g_ib, and Hh = sum_i h_i h_i^T (atoms in order, so the bits match). */
void eann_pol_moments(const eann_work *w, const double *g, const double *h, double Psym[9],
                      double Hh[9]);
/* Adjoint of the charge head: dout[r] = s * (a * (e . x'_r) + c) for every
 * row r (dL/dq_r for a loss with dL/dmu = a e plus a charge term c).
 * eann_head_backward uses a = s = 1, c = 0. */
void eann_charge_head_backward(const eann_work *w, const double e[3], double a, double c,
                               double s, double *dout);
/* Adjoint of the transition-dipole head: given u, v, W (eann_tdm_parts) and
 * g = dL/dt, dout [rows][3] = dL/d(q1, q2, w) of every row. */
void eann_tdm_head_backward(const eann_work *w, const double u[3], const double v[3], double W,
                            const double g[3], double *dout);
/* The one growable text buffer (start with {NULL, 0, 0, 0}; oom set on
 * failure, further appends are ignored). */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} eann_text;
void eann_text_printf(eann_text *b, const char *fmt, ...);

#ifdef __cplusplus
}
#endif
#endif
