/* SPDX-License-Identifier: MIT */
/* kqeq_kernels.h - PRIVATE to kqeq.c and kqeq_kernels.c (not an API; the
 * public entry points kq_kernel_accumulate and kq_kernel_column are in
 * kqeq.h). The fast SOAP kernels (Eq. 12): SOAP vectors split into chunks of
 * species-pair blocks, representatives packed in panels of KQK_LANES, and
 * sums that skip the chunks that are zero, bit for bit the values of
 * kq_kernel (see the top of kqeq_kernels.c). Row-major arrays, shapes in
 * brackets. */
#ifndef KQEQ_KERNELS_H
#define KQEQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kqeq.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KQK_LANES 8   /* representatives per packed panel (vector lanes) */
#define KQK_MR512 12  /* atoms per AVX-512 register tile (12 atoms x 8 representatives) */
#define KQK_MAXCH 64  /* chunks per vector (one bit each in a uint64_t mask) */

/* Chunks of a vector: chunk c is [off[c], off[c+1]); nch <= 64. */
typedef struct {
    int nch;
    size_t off[KQK_MAXCH + 1];
} kqk_layout;

/* Representatives of one descriptor packed in panels of 8: panel p holds
 * the representatives slot[8p .. 8p+7] (sorted by mask, so that a panel's
 * union mask stays tight; SIZE_MAX = empty lane, zeros), and for each chunk
 * c set in pmask[p] the chunk's values interleaved, data + poff[p*nch + c]:
 * [t][8] for t in the chunk. */
typedef struct {
    kqk_layout l;
    size_t len, nr, npan;
    size_t *slot;      /* [npan*8] */
    uint64_t *pmask;   /* [npan] */
    size_t *poff;      /* [npan*nch] */
    double *data;
    int finite;        /* every representative value finite */
} kqk_pack;

/* Scratch of kqk_accumulate for tiles of atoms against a pack (KB_TILE,
 * KB_TILE512 in kqeq_kernels.c) */
typedef struct {
    double *s;        /* [KB_TILE512][npan*8] partial sums */
    double *zero;     /* [len] zeros: the padding rows of a tile */
    double dummy[KQK_MR512 * KQK_LANES];
    size_t cap_s, cap_z;
} kqk_scratch;

/* The chunks of a SOAP vector of len values with parameters p: its
 * species-pair blocks (specs/soap.md "Layout"), merged to at most 64. */
void kqk_layout_soap(const kq_soap_params *p, size_t len, kqk_layout *l);
/* Chunk masks of n rows x [n][len]: mask [n], bit c set if chunk c has a
 * nonzero (or NaN) value; if any value is not finite every mask is all ones
 * (no skipping). Returns 1 if all values are finite. */
int kqk_masks(const kqk_layout *l, size_t n, const double *x, size_t len, uint64_t *mask);
/* Pack nr representatives b [nr][len] with layout l (KQ_OK or KQ_ENOMEM;
 * free with kqk_pack_free). */
int kqk_pack_build(const kqk_layout *l, size_t nr, const double *b, size_t len, kqk_pack *k);
void kqk_pack_free(kqk_pack *k);
/* Free the scratch of kqk_accumulate (a zeroed kqk_scratch is empty). */
void kqk_scratch_free(kqk_scratch *w);
/* out[i*ostride + r] += delta * (a_i . b_r)^zeta for na atom rows a[i]
 * [len] against the packed representatives k (b: the same rows unpacked,
 * [nr][len]); simd as kq_kernel_accumulate; am [na] and w scratch. */
int kqk_accumulate(const kqk_pack *k, size_t na, const double *const *a, int zeta, double delta,
                   double *out, size_t ostride, int simd, const double *b, uint64_t *am,
                   kqk_scratch *w);
/* out[i] += delta * (x_{idx[i]} . q)^zeta for i < n: rows x [.][len] with
 * masks xm [.] (kqk_masks), q [len] with mask qm. */
void kqk_column(const kqk_layout *l, const double *x, const uint64_t *xm, size_t len,
                const size_t *idx, size_t n, const double *q, uint64_t qm, int zeta, double delta,
                double *out);

#ifdef __cplusplus
}
#endif
#endif
