/* SPDX-License-Identifier: MIT */
/* kqeq.h - kernel charge equilibration (kQEq): classical QEq with Gaussian
 * charges, SOAP kernels, and the kQEq model built on them: training (closed
 * form and sparse), prediction of charges, dipoles and polarizabilities,
 * model text. The SOAP descriptors themselves are in soap.h (included).
 *
 * Sources: Staacke et al., "Kernel charge equilibration" (2021) (equation
 * numbers "Eq. N" refer to it), ../shared/specs/kqeq.md and
 * ../shared/specs/soap.md.
 *
 * Vendoring: copy kqeq.c, kqeq.h, soap.c, soap.h, linalg.c, linalg.h. C11,
 * libc and libm. The library never prints, exits or keeps global state;
 * every function that can fail returns KQ_OK (0) or a positive KQ_E* code
 * (kq_strerror(), soap.h). Every function below that returns numbers returns
 * KQ_ERANGE instead of a NaN or Inf result (kq_qeq_solve, kq_predict,
 * kq_set_predict, kq_train, kq_train_qeq_eta); kq_model_write refuses a model
 * holding one (KQ_EINVAL).
 *
 * Units at this interface: positions in angstrom (as in files); everything
 * else in atomic units: charges e, dipoles e*bohr (names end in _au),
 * electronegativities chi hartree/e, hardness eta hartree/e^2, energies
 * hartree, polarizabilities bohr^3. 1 angstrom = 1/0.529177210903 bohr.
 */
#ifndef KQEQ_H
#define KQEQ_H

#include <stddef.h>

#include "soap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* SOAP kernels (specs/soap.md, "Kernel used by kQEq"; kQEq paper Eq. 11)    */
/* ------------------------------------------------------------------------ */

/* Normalise each of n rows of length len to unit Euclidean length (a zero row
 * stays zero). */
void kq_normalize_rows(size_t n, size_t len, double *p);
/* Kernel of two normalised vectors: (p . q)^zeta (Eq. 12, zeta = 2 there). */
double kq_kernel(const double *p, const double *q, size_t len, int zeta);
/* Kernel matrix between two sets of normalised vectors:
 * k[i*nb + j] = (a_i . b_j)^zeta for a [na][len], b [nb][len], k [na][nb].
 * Every entry is bitwise equal to kq_kernel(a_i, b_j, len, zeta): each dot
 * product is summed in ascending t from 0.0 and raised to zeta by repeated
 * multiplication (zeta <= 0 gives 1). Blocked (4 x 2 dot products share
 * loads), so it is several times faster than calling kq_kernel per pair. a and
 * b may be the same array; k must not overlap them. */
void kq_kernel_matrix(size_t na, const double *a, size_t nb, const double *b, size_t len,
                      int zeta, double *k);

/* Fast path of the kernels (kqeq.c "Fast kernels"), bitwise equal to the
 * plain functions above: blocks that are zero in either vector are skipped
 * (exact: the reason is in kqeq.c), register and cache tiles, vector lanes
 * across independent outputs only. blk_off [nblk+1] are the boundaries of the
 * vectors' blocks (0 = blk_off[0] < ... < blk_off[nblk] = len; any other
 * value means one block, no skipping); for SOAP vectors the species-pair
 * blocks of specs/soap.md "Layout".
 * kq_kernel_accumulate: k[i*nb + j] += delta * kq_kernel(a_i, b_j, len, zeta)
 * for a [na][len], b [nb][len], k [na][nb], bit for bit. simd: KQ_SIMD_AUTO
 * (the widest copy), KQ_SIMD_PORTABLE, KQ_SIMD_AVX2 or KQ_SIMD_AVX512 (soap.h)
 * (KQ_EINVAL if this build or CPU has no such copy).
 * KQ_ENOMEM if scratch space cannot be allocated. */
int kq_kernel_accumulate(size_t na, const double *a, size_t nb, const double *b, size_t len,
                         int nblk, const size_t *blk_off, int zeta, double delta, int simd,
                         double *k);
/* out[i] += delta * kq_kernel(x + idx[i]*len, q, len, zeta) for i < n, bit for
 * bit (the kernel column of farthest point sampling). */
int kq_kernel_column(size_t n, const double *x, const size_t *idx, const double *q, size_t len,
                     int nblk, const size_t *blk_off, int zeta, double delta, double *out);

#define KQ_BOHR_ANGSTROM 0.529177210903   /* 1 bohr in angstrom (CODATA 2018) */
#define KQ_AU_DEBYE 2.541746473           /* 1 e*bohr in debye (specs/kqeq.md) */
#define KQ_HARTREE_EV 27.211386245988     /* 1 hartree in eV (CODATA 2018) */

/* ------------------------------------------------------------------------ */
/* Element data                                                              */
/* ------------------------------------------------------------------------ */

/* Rappe-Goddard (1991, Table I) QEq radius R_A in angstrom for H, C, N, O, F,
 * S, Cl (specs/kqeq.md); 0 for any other element (unsupported). */
double kq_qeq_radius(int z);
/* Standard atomic weight (IUPAC conventional values) for the same elements:
 * H 1.008, C 12.011, N 14.007, O 15.999, F 18.998403163, S 32.06, Cl 35.45;
 * 0 for any other element. */
double kq_atomic_mass(int z);
/* Default electronegativity chi (eV) of Rappe & Goddard 1991 Table I for the
 * same elements (H 4.528, C 5.343, N 6.899, O 8.741, F 10.874, S 6.928,
 * Cl 8.564); 0 for others. Only a starting point for `kqeq qeq`. */
double kq_qeq_default_chi_ev(int z);

/* ------------------------------------------------------------------------ */
/* Classical QEq (kQEq paper Eqs. 1-10, 13, 17)                              */
/* ------------------------------------------------------------------------ */

/* Shift positions to the centre of mass and convert to bohr.
 * pos [n*3] angstrom -> r_au [n*3] bohr. KQ_ESPECIES for an element without
 * a mass, KQ_EINVAL for non-finite input. */
int kq_com_positions_au(int n, const int *z, const double *pos, double *r_au);

/* Hardness matrix of Eq. 9, H [n*n] hartree/e^2, from positions r_au [n*3]
 * (bohr), Gaussian widths alpha_A = s_at * R_A, per-atom eta [n] (hartree/e^2,
 * NULL = 0). KQ_EOVERLAP if two atoms are closer than 1e-6 angstrom,
 * KQ_ESPECIES for an element without a radius. */
int kq_qeq_hardness(int n, const int *z, const double *r_au, double s_at, const double *eta,
                    double *h);

/* Constrained inverse from H (SPD): the n x n block A [n*n] of the inverse of
 * the bordered matrix of Eq. 10, and its last column b [n] (entries sum to
 * 1), so that q = -A chi + Q_tot b (Eq. 13 plus the total-charge part).
 * A is symmetric and A 1 = 0. h is not modified. KQ_ELINALG if H is not SPD.
 * Allocates n*n doubles of workspace. */
int kq_qeq_constrained_inverse(int n, const double *h, double *a, double *b);

/* One QEq solution.
 *   z [n], pos [n*3] angstrom, qtot (e), chi [n] (hartree/e), eta [n]
 *   (hartree/e^2, NULL = 0), s_at radius scale (0.75 in the paper).
 * Outputs (each may be NULL):
 *   q [n] e; dipole_au [3] e*bohr about the centre of mass (Eq. 17);
 *   energy (hartree): E(q) of Eq. 5 with E_0 = 0;
 *   a [n*n], b [n]: as kq_qeq_constrained_inverse.
 * Path (KQ_QEQ_DIRECT_MAX_ATOMS below): the explicit inverse for n up to that
 * size or when a or b is asked for, the factor path above it. */
int kq_qeq_solve(int n, const int *z, const double *pos, double qtot, const double *chi,
                 const double *eta, double s_at, double *q, double *dipole_au, double *energy,
                 double *a, double *b);

/* Two ways to the same QEq solution, like LAPACK's blocked/unblocked
 * crossover:
 *   inverse path: Cholesky of H, then H^-1 from the identity (n right-hand
 *     sides), A and b of kq_qeq_constrained_inverse, q = -A chi + Q b, RA.
 *     ~5n^3/3 flops (n^3/3 factor, n^3/3 forward solve after skipping the
 *     identity's leading zeros, n^3 backward solve), 3 n*n doubles.
 *   factor path: Cholesky of H in place and solves for the few right-hand
 *     sides needed (1, R^T, chi): Eq. 10 by its Schur complement s = 1^T H^-1 1,
 *     never forming A. n^3/3 flops, one n*n buffer (H and its factor share it).
 * Both are exact in exact arithmetic; in floating point they round differently
 * and agree to ~1e-13 relative (charges, dipoles, energies; tests/test_qeq.c
 * measures and bounds it). kq_qeq_solve, kq_predict, kq_set_build and the QEq
 * training take the inverse path up to KQ_QEQ_DIRECT_MAX_ATOMS atoms, so that
 * every molecule of that size gives the same bits as before the factor path
 * existed (all test and reference molecules are far smaller), and the factor
 * path above it, where the inverse would cost five times the flops and three
 * times the memory. Expected time of the factor path: n^3/3 flops of the
 * Cholesky (la_cholesky, ~15-30 GFLOP/s on one x86-64 core with AVX2) plus
 * O(n^2) for H and the solves, i.e. t ~ 2.2e-11 n^3 s here, memory 8 n^2 bytes.
 * Measured (`kqeq qeq` on bench/data/make_water_frame.py clusters, one core,
 * processor time of the whole program, best of 3 on a loaded 2-core AMD EPYC):
 * 1002 atoms 0.05 s, 2001 0.25 s, 4002 1.7 s (128 MB), 10002 22 s (785 MB);
 * the inverse path alone (kq_qeq_solve_path) 0.22 s at 999 atoms, 1.5 s at
 * 2001; before the factor path and the faster solves, `kqeq qeq` took 0.54,
 * 4.2 and 49 s at 1002, 2001 and 4002 atoms. */
#define KQ_QEQ_DIRECT_MAX_ATOMS 1000
enum {
    KQ_QEQ_PATH_AUTO = 0,    /* inverse up to KQ_QEQ_DIRECT_MAX_ATOMS atoms, factor above */
    KQ_QEQ_PATH_INVERSE = 1, /* always the explicit inverse */
    KQ_QEQ_PATH_FACTOR = 2   /* always factor once (KQ_EINVAL if a or b is asked for) */
};
/* kq_qeq_solve with the path chosen by the caller (tests compare the two). */
int kq_qeq_solve_path(int path, int n, const int *z, const double *pos, double qtot,
                      const double *chi, const double *eta, double s_at, double *q,
                      double *dipole_au, double *energy, double *a, double *b);

/* ------------------------------------------------------------------------ */
/* kQEq / QEq models                                                         */
/* ------------------------------------------------------------------------ */

#define KQ_MAX_DESC 4

enum { KQ_KIND_KQEQ = 0, KQ_KIND_QEQ = 1 };

/* A trained model. All arrays are owned by the model (kq_model_free).
 * chi_A of atom A (kQEq, Eq. 11 with a multi-SOAP kernel):
 *   chi_A = chi_elem[Z_A] + sum_m w_m sum_d delta_d (p_d(A) . rep_d[m])^zeta
 * where p_d(A) is A's normalised SOAP vector of descriptor d. For a QEq model
 * ndesc = nrep = 0 and chi_A = chi_elem[Z_A]. For kQEq chi_elem is 0. */
typedef struct {
    int kind;                           /* KQ_KIND_KQEQ or KQ_KIND_QEQ */
    double s_at;                        /* radius scale (Gaussian width = s_at * R_A) */
    int nspecies;                       /* elements the model knows, ascending Z */
    int species[KQ_MAX_SPECIES];
    double chi[KQ_MAX_SPECIES];         /* hartree/e, per species */
    double eta[KQ_MAX_SPECIES];         /* hartree/e^2, per species */
    int zeta;                           /* kernel exponent (2) */
    int ndesc;                          /* number of SOAP descriptors (0 for QEq) */
    kq_soap_params soap[KQ_MAX_DESC];   /* species = the model's species; sigma resolved */
    double delta[KQ_MAX_DESC];          /* kernel weights */
    size_t len[KQ_MAX_DESC];            /* SOAP vector lengths */
    double reg;                         /* regularisation sigma used ((e*bohr)^2 units of loss) */
    int nrep;                           /* M representative atoms */
    double *w;                          /* [nrep] hartree/e */
    double *rep[KQ_MAX_DESC];           /* [nrep][len[d]] normalised SOAP vectors */
    kq_soap *calc[KQ_MAX_DESC];         /* SOAP calculators (not part of the text) */
} kq_model;

/* Configuration of a new, untrained model. */
typedef struct {
    int kind;                           /* KQ_KIND_KQEQ or KQ_KIND_QEQ */
    double s_at;                        /* <= 0 means 0.75 */
    int nspecies;
    int species[KQ_MAX_SPECIES];        /* any order; sorted by kq_model_init */
    int zeta;                           /* <= 0 means 2 */
    int ndesc;                          /* 1..KQ_MAX_DESC for kQEq, ignored for QEq */
    kq_soap_params soap[KQ_MAX_DESC];   /* rcut, nmax, lmax, sigma used; species ignored */
    double delta[KQ_MAX_DESC];          /* kernel weights, <= 0 means 1 */
} kq_model_config;

/* Initialise m from a configuration (no training: nrep = 0, chi = eta = 0).
 * KQ_ESPECIES if a species has no QEq radius or mass. */
int kq_model_init(kq_model *m, const kq_model_config *c);
void kq_model_free(kq_model *m);

/* A molecule with its reference data. */
typedef struct {
    int natoms;
    const int *z;          /* [natoms] atomic numbers */
    const double *pos;     /* [natoms*3] angstrom */
    double charge;         /* total charge, e */
    double dipole_au[3];   /* reference dipole e*bohr about the centre of mass */
} kq_mol;

/* A prepared set of molecules for training / validation / evaluation: what
 * the model needs of each molecule, computed once:
 *   RA = R A (3 x n per molecule, bohr*e^2/hartree), Rb = R b (3 per molecule)
 *   and the normalised SOAP vectors of every atom (kQEq models only).
 * Built for one model configuration (s_at, eta, SOAP settings). */
typedef struct {
    int nmol;
    size_t natoms;          /* total */
    size_t *first;          /* [nmol+1] index of each molecule's first atom */
    int *z;                 /* [natoms] */
    double *ra;             /* [natoms*3]: molecule m's 3 x n block at ra + 3*first[m] */
    double *rb;             /* [nmol*3] e*bohr per unit total charge */
    double *charge;         /* [nmol] */
    double *dipole_au;      /* [nmol*3] reference */
    int ndesc;
    size_t len[KQ_MAX_DESC];
    double *p[KQ_MAX_DESC]; /* [natoms][len[d]] normalised SOAP (NULL for QEq) */
} kq_set;

/* Optional progress report: stage name, done out of total units. */
typedef void (*kq_progress_fn)(void *ctx, const char *stage, size_t done, size_t total);

/* Build a set (m gives s_at, eta, SOAP settings, species). KQ_ESPECIES for
 * an element the model does not know. */
int kq_set_build(kq_model *m, int nmol, const kq_mol *mols, kq_set *s, kq_progress_fn progress,
                 void *ctx);
void kq_set_free(kq_set *s);

typedef struct {
    int sparse;             /* M > 0: sparse form with M representative atoms
                             * (farthest point sampling in the kernel metric,
                             * start at the first atom, ties to the lower index);
                             * 0: full form of Eq. 20 */
    int nreg;               /* number of regularisation values to try (>= 1) */
    const double *reg;      /* [nreg] sigma values; with a validation set the
                             * one with the lowest validation MAE of |mu| wins
                             * (ties: the larger sigma), else reg[0] is used */
} kq_train_opts;

/* Errors of a training run (-1 where not available). */
typedef struct {
    double train_mae_debye, train_rrmse_percent; /* training molecules */
    double valid_mae_debye, valid_rrmse_percent; /* validation set, chosen sigma */
} kq_train_report;

/* Train m (initialised by kq_model_init, species/SOAP as used to build the
 * sets) on the molecules sel[0..nsel-1] of train (sel NULL = all), choosing
 * sigma on valid (may be NULL). kQEq: the weights minimise the loss of Eq. 19,
 * |mu - mu_ref|^2 + sigma w^T K w with mu of Eq. 18; the full form solves
 * Eq. 20, the sparse form its representative-atom version (specs/kqeq.md). For QEq models the per-species chi are fitted
 * by linear least squares (eta kept); opts->reg and sparse are then unused.
 * report (may be NULL) receives the training / validation errors. */
int kq_train(kq_model *m, const kq_set *train, const int *sel, int nsel, const kq_set *valid,
             const kq_train_opts *opts, kq_train_report *report, kq_progress_fn progress,
             void *ctx);

/* Classical QEq with fitted hardness (the paper's QEq baseline with both
 * chi and eta per element): eta_s in [0, 1] hartree/e^2 by Levenberg-Marquardt
 * on the dipole residuals (forward-difference Jacobian, step 1e-6 (1 + eta);
 * damping starts at 1e-3, /10 on success, x10 on failure; eta projected
 * onto 0 <= eta <= 1 hartree/e^2; at most max_iter iterations, from the model's eta), each
 * trial eta solving the chi least squares exactly (variable projection).
 * Deterministic; the objective is the training loss sum |mu - mu_ref|^2.
 * m must be a QEq model (kq_model_init); mols/sel as in kq_set_build /
 * kq_train. report: training errors (validation fields -1). */
int kq_train_qeq_eta(kq_model *m, int nmol, const kq_mol *mols, const int *sel, int nsel,
                     int max_iter, kq_train_report *report, kq_progress_fn progress, void *ctx);

/* Predict one molecule: z [n], pos [n*3] angstrom, total charge (e).
 * Uses the model's SOAP scratch space: one model per thread.
 * Outputs (each may be NULL): q [n] e, dipole_au [3] e*bohr about the centre
 * of mass, alpha_au [9] polarizability R A R^T (bohr^3, row-major 3x3,
 * specs/kqeq.md), chi [n] hartree/e. KQ_ESPECIES for an unknown element. */
int kq_predict(kq_model *m, int n, const int *z, const double *pos, double charge, double *q,
               double *dipole_au, double *alpha_au, double *chi);

/* kq_predict for many molecules at once, the same bits (molecules in chunks
 * of about 1000 atoms: SOAP, one fast kernel block against the
 * representatives, then each molecule as kq_predict). Outputs (each may be
 * NULL): q [sum of natoms] e, concatenated in molecule order; dipole_au
 * [nmol*3]; alpha_au [nmol*9]. On an error the code of the first molecule
 * that fails (kq_predict's code for it) is returned and *bad (may be NULL)
 * gets its index; the outputs of the molecules before it are written, those
 * from it on are undefined. */
int kq_predict_many(kq_model *m, int nmol, const kq_mol *mols, double *q, double *dipole_au,
                    double *alpha_au, int *bad);

/* Dipoles of every molecule of a prepared set (same configuration as m):
 * out [s->nmol*3] e*bohr. */
int kq_set_predict(const kq_model *m, const kq_set *s, double *out);

/* Metrics of specs/kqeq.md over nmol dipoles (e*bohr, [nmol*3]):
 * MAE of |mu| in debye, and RRMSE in percent (Hait & Head-Gordon, threshold 1 D). */
void kq_dipole_metrics(int nmol, const double *pred_au, const double *ref_au, double *mae_debye,
                       double *rrmse_percent);

/* Model text (first line KQEQ_MODEL_V1, values %.17g), into a malloc'd
 * NUL-terminated buffer *text of length *len (caller frees). KQ_EINVAL (and
 * no text) if any number of the model is not finite: the reader would refuse
 * it. */
int kq_model_write(const kq_model *m, char **text, size_t *len);
/* Parse a model text. On KQ_EFORMAT *line (may be NULL) gets the 1-based
 * line number of the problem (0 if not line-specific). On success m is a
 * ready model (SOAP calculators created). Besides the syntax the reader
 * checks: numbers finite, counts consistent, SOAP settings accepted by
 * kq_soap_new (explicit sigma >= KQ_SOAP_MIN_SIGMA) with the declared length,
 * nrep not larger than the text can hold, and every representative vector of
 * unit Euclidean length within 1e-8 (or all zero, as kq_normalize_rows leaves
 * a zero row). */
int kq_model_read(const char *text, size_t len, kq_model *m, int *line);
/* The same, and on error msg [msglen] (may be NULL) gets the reason in one
 * line without the line number, e.g. "chi: expected 5 values, found 4",
 * "'nan' is not a finite number", "nrep 2000000000 is larger than the text
 * can hold", "v 0 of representative 3: length 1e+308, not 1". Programs print
 * "FILE:LINE: msg". */
int kq_model_read_msg(const char *text, size_t len, kq_model *m, int *line, char *msg,
                      size_t msglen);

#ifdef __cplusplus
}
#endif
#endif
