/* SPDX-License-Identifier: MIT */
/* soap.h - SOAP descriptors (DScribe's GTO definition, ../shared/specs/soap.md).
 *
 * The power spectrum p^(Z1 Z2)_(n n' l) of every atom of a molecule: the
 * descriptor the kQEq model (kqeq.h) is built on, usable on its own.
 * Vendoring: copy soap.c, soap.h, linalg.c, linalg.h. C11, libc and libm.
 * The library never prints, exits or keeps global state; every function that
 * can fail returns KQ_OK (0) or a positive KQ_E* code (kq_strerror()); the
 * codes are shared with kqeq.h.
 *
 * Units: positions in angstrom, rcut and sigma in angstrom, descriptors
 * dimensionless (unnormalised Gaussian densities, spec "Density").
 */
#ifndef KQ_SOAP_H
#define KQ_SOAP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    KQ_OK = 0,
    KQ_EINVAL = 1,    /* bad argument (sizes, NULL, non-finite input, ...) */
    KQ_ENOMEM = 2,    /* allocation failed or a size computation would overflow */
    KQ_ESPECIES = 3,  /* an element that the descriptor/model does not know */
    KQ_EOVERLAP = 4,  /* two atoms closer than 1e-6 angstrom */
    KQ_ELINALG = 5,   /* a linear system was not SPD / singular */
    KQ_EFORMAT = 6,   /* a model text is damaged (see the parser's line number) */
    KQ_ERANGE = 7     /* a result is not a finite number (inputs or model out of range):
                       * refused instead of returned */
};
const char *kq_strerror(int code);

#define KQ_MAX_SPECIES 16
#define KQ_MAX_LMAX 20
/* The one n_max limit of the library: kq_soap_new refuses a larger nmax
 * (KQ_EINVAL) and the model reader refuses a model text with one (useful bases
 * have n_max <= ~20: the GTO overlap reaches cond 1e8 at n_max 8). */
#define KQ_SOAP_MAX_NMAX 64
#define KQ_SOAP_MIN_SIGMA 1e-3 /* angstrom: smallest explicit Gaussian width (KQ_EINVAL below) */

typedef struct {
    double rcut;    /* angstrom, > 1 */
    int nmax;       /* 1..KQ_SOAP_MAX_NMAX */
    int lmax;       /* 0..KQ_MAX_LMAX */
    double sigma;   /* Gaussian width in angstrom, >= KQ_SOAP_MIN_SIGMA; <= 0 means rcut / 8 */
    int nspecies;   /* 1..KQ_MAX_SPECIES */
    int species[KQ_MAX_SPECIES]; /* atomic numbers; sorted ascending by kq_soap_new */
} kq_soap_params;

/* A SOAP calculator: the radial basis (alpha, beta) precomputed once, plus
 * scratch space that grows as needed (so one calculator must not be used by
 * two threads at once). */
typedef struct kq_soap kq_soap;

/* KQ_EINVAL for bad parameters (rcut not finite or <= 1, nmax outside 1..KQ_SOAP_MAX_NMAX, lmax
 * outside 0..KQ_MAX_LMAX, non-finite sigma, 0 < sigma < KQ_SOAP_MIN_SIGMA,
 * nspecies outside 1..KQ_MAX_SPECIES, Z outside 1..118 or given twice, or any
 * table of the radial basis (alpha, beta, eta = 1/(2 sigma^2), gamma, the
 * prefactors B) not finite: such parameters would give NaN/Inf descriptors,
 * so they are refused here), KQ_ENOMEM if the sizes overflow or memory runs
 * out, KQ_ELINALG if the basis overlap is not positive definite in double
 * precision (very large nmax). */
int kq_soap_new(const kq_soap_params *p, kq_soap **out);
void kq_soap_free(kq_soap *s);
/* Length of one atom's vector: (S nmax)(S nmax + 1)/2 (lmax + 1). */
size_t kq_soap_length(const kq_soap *s);
/* The parameters actually used (species sorted, sigma resolved). */
const kq_soap_params *kq_soap_get_params(const kq_soap *s);
/* DScribe's radial basis tables: alpha [lmax+1][nmax] and beta
 * [lmax+1][nmax][nmax] (row n, column k), for comparison with soap_ref. */
const double *kq_soap_alpha(const kq_soap *s);
const double *kq_soap_beta(const kq_soap *s);

/* Raw (unnormalised) power spectra of every atom of one molecule.
 * z [natoms], pos [natoms*3] angstrom, out [natoms * kq_soap_length(s)].
 * KQ_ESPECIES if an atom's element is not in the species list, KQ_EINVAL for
 * a non-finite position, KQ_EOVERLAP for two atoms closer than 1e-6 A,
 * KQ_ENOMEM if natoms * length would overflow; on error out is untouched.
 * Contributions are summed in ascending neighbour index, so the result is the
 * same bits whichever neighbour search runs. An out larger than
 * KQ_SOAP_AHEAD_BYTES (12 MB, soap.c) is written as too large for the cache:
 * its zero blocks (species absent around an atom) by streaming stores, which
 * go to memory without passing through the cache. */
int kq_soap_compute(kq_soap *s, int natoms, const int *z, const double *pos, double *out);

/* The checks of kq_soap_compute without computing anything (KQ_EINVAL for
 * non-finite positions, KQ_ESPECIES, KQ_EOVERLAP): lets a program reject a
 * bad frame before it prints any output. Cost linear in natoms. */
int kq_soap_check(kq_soap *s, int natoms, const int *z, const double *pos);

/* The plain reference (soap.c, top): the same power spectra as
 * kq_soap_compute, computed equation by equation from the spec without any
 * tables, buffers or vector kernels, in the same summation order, so the
 * results are the same bits (tests/test_soap.c compares them with memcmp).
 * O(natoms^2); for reading and testing, not for speed. p as for
 * kq_soap_new, z [natoms], pos [natoms*3] angstrom, out [natoms * length].
 * Errors as kq_soap_new and kq_soap_compute. */
int kq_soap_reference(const kq_soap_params *p, int natoms, const int *z, const double *pos,
                      double *out);

/* Neighbour search used by kq_soap_compute. AUTO (the default) uses brute
 * force up to 64 atoms and cell lists (cost linear in N) above, and computes
 * the radial and angular factors of each atom pair once for both centres;
 * CELLS forces cell lists; BRUTE is the plain reference path (O(N^2) search,
 * every pair computed from both sides). All give the same neighbour lists in
 * ascending index order and bitwise identical descriptors (tests/test_soap.c
 * checks it). KQ_EINVAL for another mode. */
enum { KQ_SEARCH_AUTO = 0, KQ_SEARCH_BRUTE = 1, KQ_SEARCH_CELLS = 2 };
int kq_soap_set_search(kq_soap *s, int mode);

/* Instruction set of kq_soap_compute's inner loops. AUTO (the default) picks
 * AVX-512 (F, VL, DQ), else AVX2, when the library was built by gcc/clang for
 * x86-64 and the CPU has it, else PORTABLE (plain C: SSE2 on x86-64). All
 * copies are the same C code without FMA, so they give bitwise identical
 * descriptors (tests/test_soap.c checks it); the switch exists for that test
 * and for timing. KQ_EINVAL for another mode, or for one that this build or
 * CPU does not have. */
enum { KQ_SIMD_AUTO = 0, KQ_SIMD_PORTABLE = 1, KQ_SIMD_AVX2 = 2, KQ_SIMD_AVX512 = 3 };
int kq_soap_set_simd(kq_soap *s, int mode);

#ifdef __cplusplus
}
#endif
#endif
