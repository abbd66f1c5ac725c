/* SPDX-License-Identifier: MIT */
/* kqeq_kernels.c - the fast SOAP kernels of kqeq.c (private header
 * kqeq_kernels.h): the same numbers as the plain kq_kernel and
 * kq_kernel_matrix of kqeq.c (Eq. 12 of the kQEq paper, specs/soap.md
 * "Kernel used by kQEq"), bit for bit, with species blocks skipped, packed
 * representatives and register tiles in a portable, an AVX2 and an AVX-512
 * copy. The physics (what the kernels are and how kQEq uses them) is in
 * kqeq.c; read its plain kernels first. -DTENSORIAL_NO_SIMD (make
 * PORTABLE=1) compiles the AVX2 and AVX-512 copies out.
 *
 * In order: 1. chunk layouts and masks (kqk_layout_soap, kqk_masks);
 * 2. packed representatives (kqk_pack_build); 3. the register tiles, plain,
 * AVX2 and AVX-512; 4. the tile driver and the dispatch (kqk_accumulate,
 * kq_kernel_accumulate); 5. the kernel column of farthest point sampling
 * (kqk_column, kq_kernel_column).
 *
 * What is faster, and why no bit changes (tests/test_kqeq_kernel.c compares
 * every routine here with kq_kernel by memcmp):
 *
 * 1. Species blocks. A SOAP vector is a run of species-pair blocks
 *    (specs/soap.md "Layout"); a pair of species absent from an atom's
 *    neighbourhood gives a block of exact zeros. A dot product p . q is
 *    summed t = 0, 1, ... from +0.0; a term p[t] q[t] with p[t] or q[t] equal
 *    to +-0 (and the other finite) is an exact +-0. Adding +-0 to a sum s
 *    leaves s unchanged unless s is -0 (-0 + +0 = +0); and s is never -0: it
 *    starts at +0.0, and in round-to-nearest x + y is -0 only when both x and
 *    y are -0 (x + (-x) gives +0), so by induction no partial sum is -0.
 *    Hence leaving out the terms of a block that is zero in either vector
 *    gives the same bits, whichever other terms are left out or kept: the
 *    kept terms are still added in ascending t. Blocks that are zero in only
 *    some vectors of a panel are computed for all of them (exact zeros,
 *    harmless by the same argument). The argument needs finite values (0 *
 *    Inf is NaN): a set with a non-finite value gets no skipping at all.
 * 2. Partial sums kept between blocks. The sum over t is split at block
 *    boundaries; the partial sum (a double) is stored and the next block
 *    continues from it, which is the same sequence of additions.
 * 3. Register tiles. Vector lanes run across independent outputs (8
 *    representatives per packed panel), never across t; every lane does
 *    the scalar code's multiply then add (no FMA: -ffp-contract=off, and
 *    "avx2"/"avx512f" do not enable it). The AVX2 and AVX-512 copies (GNU C
 *    vector types: 6 atoms x 2 x 4 lanes, 12 atoms x 8 lanes) and the
 *    portable copy (plain C) do the same operations in the same order.
 * The power (Eq. 12) and the weighted sum over descriptors are then applied
 * exactly as in kqeq.c's kernel_sum: out = 0.0, then out += delta_d *
 * (s_d)^zeta for d ascending. */
#include "kqeq_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define KB_INLINE static inline __attribute__((always_inline))
#else
#define KB_INLINE static inline
#endif
#if defined(__GNUC__) && defined(__x86_64__) && !defined(TENSORIAL_NO_SIMD)
#define KB_AVX2 1
#else
#define KB_AVX2 0
#endif

/* KQK_LANES, KQK_MR512 and KQK_MAXCH are in kqeq_kernels.h (the types use them) */
#define KB_MR 6      /* atoms per register tile (6 atoms x 8 representatives) */
#define KB_TILE 48   /* atoms whose partial sums stay in cache while the panels pass */
#define KB_TILE512 288 /* the same in the AVX-512 copy (measured best of 48..576 here) */

/* Chunks from block boundaries boff [nblk+1] (0 = boff[0] < ... = len):
 * neighbouring blocks are merged so that at most 64 chunks remain. Bad
 * boundaries give one chunk (no skipping, still exact). */
static void kb_layout_from(int nblk, const size_t *boff, size_t len, kqk_layout *l) {
    int ok = nblk >= 1 && boff && boff[0] == 0 && boff[nblk] == len;
    for (int b = 0; ok && b < nblk; b++)
        if (boff[b + 1] <= boff[b]) ok = 0;
    if (!ok) {
        l->nch = 1;
        l->off[0] = 0;
        l->off[1] = len;
        return;
    }
    int g = (nblk + KQK_MAXCH - 1) / KQK_MAXCH;
    l->nch = 0;
    for (int b = 0; b < nblk; b += g) l->off[l->nch++] = boff[b];
    l->off[l->nch] = len;
}

/* The species-pair blocks of a SOAP vector (specs/soap.md "Layout"):
 * for s1, for s2 >= s1: (s1 == s2 ? nmax(nmax+1)/2 : nmax^2) (lmax+1). */
void kqk_layout_soap(const kq_soap_params *p, size_t len, kqk_layout *l) {
    size_t boff[KQ_MAX_SPECIES * (KQ_MAX_SPECIES + 1) / 2 + 1];
    int nb = 0;
    size_t at = 0, n = (size_t)p->nmax, nl = (size_t)p->lmax + 1;
    boff[0] = 0;
    for (int s1 = 0; s1 < p->nspecies && p->nspecies <= KQ_MAX_SPECIES; s1++)
        for (int s2 = s1; s2 < p->nspecies; s2++) {
            at += (s1 == s2 ? n * (n + 1) / 2 : n * n) * nl;
            boff[++nb] = at;
        }
    kb_layout_from(nb, boff, len, l);
}

/* Bit c set if chunk c of row x has a nonzero (or NaN) entry; *finite &= all
 * entries finite. */
static uint64_t kb_mask(const kqk_layout *l, const double *x, int *finite) {
    uint64_t m = 0;
    for (int c = 0; c < l->nch; c++) {
        int nz = 0;
        for (size_t t = l->off[c]; t < l->off[c + 1]; t++) {
            if (x[t] != 0.0) nz = 1;
            if (!isfinite(x[t])) *finite = 0;
        }
        if (nz) m |= (uint64_t)1 << c;
    }
    return m;
}

static uint64_t kb_all(const kqk_layout *l) {
    return l->nch >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << l->nch) - 1);
}

/* Masks of n rows x [n][len]: mask [n]; if any value is not finite every
 * mask is all ones (no skipping). Returns 1 if all finite. */
int kqk_masks(const kqk_layout *l, size_t n, const double *x, size_t len, uint64_t *mask) {
    int finite = 1;
    for (size_t i = 0; i < n; i++) mask[i] = kb_mask(l, x + i * len, &finite);
    if (!finite)
        for (size_t i = 0; i < n; i++) mask[i] = kb_all(l);
    return finite;
}

/* d^zeta as kq_ipow, for the lanes */
KB_INLINE double kb_pow(double d, int zeta) {
    double r = 1.0;
    for (int i = 0; i < zeta; i++) r = i == 0 ? d : r * d;
    return r;
}

void kqk_pack_free(kqk_pack *k) {
    free(k->slot);
    free(k->pmask);
    free(k->poff);
    free(k->data);
    memset(k, 0, sizeof *k);
}

/* Pack nr rows b [nr][len] with layout l. */
int kqk_pack_build(const kqk_layout *l, size_t nr, const double *b, size_t len, kqk_pack *k) {
    memset(k, 0, sizeof *k);
    k->l = *l;
    k->len = len;
    k->nr = nr;
    k->npan = (nr + KQK_LANES - 1) / KQK_LANES;
    uint64_t *mask = malloc((nr + 1) * sizeof *mask);
    size_t *ord = malloc((nr + 1) * sizeof *ord);
    k->slot = malloc((k->npan * KQK_LANES + 1) * sizeof *k->slot);
    k->pmask = malloc((k->npan + 1) * sizeof *k->pmask);
    k->poff = malloc((k->npan * (size_t)l->nch + 1) * sizeof *k->poff);
    if (!mask || !ord || !k->slot || !k->pmask || !k->poff) {
        free(mask);
        free(ord);
        kqk_pack_free(k);
        return KQ_ENOMEM;
    }
    k->finite = kqk_masks(l, nr, b, len, mask);
    /* stable insertion sort of the rows by mask (equal masks keep their order) */
    for (size_t j = 0; j < nr; j++) {
        size_t i = j;
        while (i > 0 && mask[ord[i - 1]] > mask[j]) {
            ord[i] = ord[i - 1];
            i--;
        }
        ord[i] = j;
    }
    size_t total = 0;
    for (size_t p = 0; p < k->npan; p++) {
        uint64_t u = 0;
        for (int e = 0; e < KQK_LANES; e++) {
            size_t s = p * KQK_LANES + e;
            k->slot[s] = s < nr ? ord[s] : SIZE_MAX;
            if (s < nr) u |= mask[ord[s]];
        }
        k->pmask[p] = u;
        for (int c = 0; c < l->nch; c++) {
            k->poff[p * l->nch + c] = SIZE_MAX;
            if (u >> c & 1) {
                k->poff[p * l->nch + c] = total;
                total += (l->off[c + 1] - l->off[c]) * KQK_LANES;
            }
        }
    }
    k->data = malloc((total + 1) * sizeof *k->data);
    if (!k->data) {
        free(mask);
        free(ord);
        kqk_pack_free(k);
        return KQ_ENOMEM;
    }
    for (size_t p = 0; p < k->npan; p++)
        for (int c = 0; c < l->nch; c++) {
            if (k->poff[p * l->nch + c] == SIZE_MAX) continue;
            double *dst = k->data + k->poff[p * l->nch + c];
            for (size_t t = l->off[c]; t < l->off[c + 1]; t++)
                for (int e = 0; e < KQK_LANES; e++) {
                    size_t r = k->slot[p * KQK_LANES + e];
                    *dst++ = r == SIZE_MAX ? 0.0 : b[r * len + t];
                }
        }
    free(mask);
    free(ord);
    return KQ_OK;
}

/* The register tile, plain C (portable copy): for the 6 atom rows a[r]
 * (pointers to the chunk's first value) and one panel chunk pp [n][8]:
 * s[r][e] += sum_t a[r][t] pp[t][e], t ascending, continuing the partial
 * sums s[r] [8]. */
KB_INLINE void kb_tile_plain(const double *const *a, const double *restrict pp, size_t n,
                             double *const *s) {
    double acc[KB_MR][KQK_LANES];
    for (int r = 0; r < KB_MR; r++)
        for (int e = 0; e < KQK_LANES; e++) acc[r][e] = s[r][e];
    for (size_t t = 0; t < n; t++) {
        const double *x = pp + t * KQK_LANES;
        for (int r = 0; r < KB_MR; r++) {
            double v = a[r][t];
            for (int e = 0; e < KQK_LANES; e++) acc[r][e] += v * x[e];
        }
    }
    for (int r = 0; r < KB_MR; r++)
        for (int e = 0; e < KQK_LANES; e++) s[r][e] = acc[r][e];
}

#if KB_AVX2
/* The same tile with GNU C vectors (2 x 4 lanes per atom; 12 accumulators):
 * each lane does acc += v * x, as kb_tile_plain. */
typedef double kb_v4 __attribute__((vector_size(32)));
/* (macros, not functions: a vector argument or result outside an AVX2
 * function would change the ABI) */
#define KB_LD(v, p) memcpy(&(v), (p), sizeof(kb_v4))
#define KB_ST(p, v) memcpy((p), &(v), sizeof(kb_v4))
KB_INLINE void kb_tile_vec(const double *const *a, const double *restrict pp, size_t n,
                           double *const *s) {
    const double *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    kb_v4 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    KB_LD(c00, s[0]); KB_LD(c01, s[0] + 4); KB_LD(c10, s[1]); KB_LD(c11, s[1] + 4);
    KB_LD(c20, s[2]); KB_LD(c21, s[2] + 4); KB_LD(c30, s[3]); KB_LD(c31, s[3] + 4);
    KB_LD(c40, s[4]); KB_LD(c41, s[4] + 4); KB_LD(c50, s[5]); KB_LD(c51, s[5] + 4);
    for (size_t t = 0; t < n; t++) {
        kb_v4 x0, x1;
        KB_LD(x0, pp + t * KQK_LANES);
        KB_LD(x1, pp + t * KQK_LANES + 4);
        kb_v4 v;
        v = (kb_v4){a0[t], a0[t], a0[t], a0[t]}; c00 += v * x0; c01 += v * x1;
        v = (kb_v4){a1[t], a1[t], a1[t], a1[t]}; c10 += v * x0; c11 += v * x1;
        v = (kb_v4){a2[t], a2[t], a2[t], a2[t]}; c20 += v * x0; c21 += v * x1;
        v = (kb_v4){a3[t], a3[t], a3[t], a3[t]}; c30 += v * x0; c31 += v * x1;
        v = (kb_v4){a4[t], a4[t], a4[t], a4[t]}; c40 += v * x0; c41 += v * x1;
        v = (kb_v4){a5[t], a5[t], a5[t], a5[t]}; c50 += v * x0; c51 += v * x1;
    }
    KB_ST(s[0], c00); KB_ST(s[0] + 4, c01); KB_ST(s[1], c10); KB_ST(s[1] + 4, c11);
    KB_ST(s[2], c20); KB_ST(s[2] + 4, c21); KB_ST(s[3], c30); KB_ST(s[3] + 4, c31);
    KB_ST(s[4], c40); KB_ST(s[4] + 4, c41); KB_ST(s[5], c50); KB_ST(s[5] + 4, c51);
}

/* The AVX-512 tile: 12 atoms x 8 lanes (one 8-wide vector per atom), each
 * lane acc += v * x as kb_tile_plain. */
typedef double kb_v8 __attribute__((vector_size(64)));
KB_INLINE void kb_tile_vec8(const double *const *a, const double *restrict pp, size_t n,
                            double *const *s) {
    kb_v8 c[KQK_MR512];
    for (int r = 0; r < KQK_MR512; r++) memcpy(&c[r], s[r], sizeof(kb_v8));
    for (size_t t = 0; t < n; t++) {
        kb_v8 x;
        memcpy(&x, pp + t * KQK_LANES, sizeof x);
#define KB_ROW8(r)                                                                   \
    do {                                                                             \
        double v = a[r][t];                                                          \
        c[r] += (kb_v8){v, v, v, v, v, v, v, v} * x;                                 \
    } while (0)
        KB_ROW8(0); KB_ROW8(1); KB_ROW8(2); KB_ROW8(3); KB_ROW8(4); KB_ROW8(5);
        KB_ROW8(6); KB_ROW8(7); KB_ROW8(8); KB_ROW8(9); KB_ROW8(10); KB_ROW8(11);
#undef KB_ROW8
    }
    for (int r = 0; r < KQK_MR512; r++) memcpy(s[r], &c[r], sizeof(kb_v8));
}
#endif

void kqk_scratch_free(kqk_scratch *w) {
    free(w->s);
    free(w->zero);
    memset(w, 0, sizeof *w);
}

static int kb_scratch_need(kqk_scratch *w, const kqk_pack *k) {
    size_t ns = (size_t)KB_TILE512 * k->npan * KQK_LANES + 1, nz = k->len + 1;
    if (ns > w->cap_s) {
        free(w->s);
        w->s = malloc(ns * sizeof *w->s);
        w->cap_s = w->s ? ns : 0;
        if (!w->s) return KQ_ENOMEM;
    }
    if (nz > w->cap_z) {
        free(w->zero);
        w->zero = calloc(nz, sizeof *w->zero);
        w->cap_z = w->zero ? nz : 0;
        if (!w->zero) return KQ_ENOMEM;
    }
    return KQ_OK;
}

/* One tile body, compiled into each copy: atom rows a[i] (i < na <= KB_TILE512)
 * with masks am[i], against pack k; then out[i*ostride + r] += delta *
 * s^zeta for every representative r. mode: 0 plain, 1 AVX2, 2 AVX-512 tiles
 * (a constant in each copy). */
KB_INLINE void kb_tile_body(const kqk_pack *k, size_t na, const double *const *a,
                            const uint64_t *am, int zeta, double delta, double *out,
                            size_t ostride, kqk_scratch *w, const int mode) {
    const int mr = mode == 2 ? KQK_MR512 : KB_MR;
    const size_t ns = k->npan * KQK_LANES;
    const int nch = k->l.nch;
    double *s = w->s;
    for (size_t e = 0; e < na * ns; e++) s[e] = 0.0;
    for (int c = 0; c < nch; c++) {
        size_t c0 = k->l.off[c], n = k->l.off[c + 1] - c0;
        /* atoms with chunk c, in groups of mr padded with zero rows */
        size_t list[KB_TILE512 + KQK_MR512];
        size_t nl = 0;
        for (size_t i = 0; i < na; i++)
            if (am[i] >> c & 1) list[nl++] = i;
        if (nl == 0) continue;
        for (size_t p = 0; p < k->npan; p++) {
            if (!(k->pmask[p] >> c & 1)) continue;
            const double *pp = k->data + k->poff[p * nch + c];
            for (size_t g = 0; g < nl; g += (size_t)mr) {
                const double *ar[KQK_MR512];
                double *sr[KQK_MR512];
                for (int r = 0; r < mr; r++) {
                    if (g + r < nl) {
                        ar[r] = a[list[g + r]] + c0;
                        sr[r] = s + list[g + r] * ns + p * KQK_LANES;
                    } else {
                        ar[r] = w->zero;
                        sr[r] = w->dummy + r * KQK_LANES;
                    }
                }
#if KB_AVX2
                if (mode == 2)
                    kb_tile_vec8(ar, pp, n, sr);
                else if (mode == 1)
                    kb_tile_vec(ar, pp, n, sr);
                else
#endif
                    kb_tile_plain(ar, pp, n, sr);
            }
        }
    }
    for (size_t i = 0; i < na; i++)
        for (size_t q = 0; q < ns; q++) {
            size_t r = k->slot[q];
            if (r != SIZE_MAX) out[i * ostride + r] += delta * kb_pow(s[i * ns + q], zeta);
        }
}

static void kb_run_plain(const kqk_pack *k, size_t na, const double *const *a, const uint64_t *am,
                         int zeta, double delta, double *out, size_t ostride, kqk_scratch *w) {
    for (size_t i0 = 0; i0 < na; i0 += KB_TILE) {
        size_t nt = na - i0 < KB_TILE ? na - i0 : KB_TILE;
        kb_tile_body(k, nt, a + i0, am + i0, zeta, delta, out + i0 * ostride, ostride, w, 0);
    }
}

#if KB_AVX2
__attribute__((target("avx2"))) static void kb_run_avx2(const kqk_pack *k, size_t na,
                                                        const double *const *a, const uint64_t *am,
                                                        int zeta, double delta, double *out,
                                                        size_t ostride, kqk_scratch *w) {
    for (size_t i0 = 0; i0 < na; i0 += KB_TILE) {
        size_t nt = na - i0 < KB_TILE ? na - i0 : KB_TILE;
        kb_tile_body(k, nt, a + i0, am + i0, zeta, delta, out + i0 * ostride, ostride, w, 1);
    }
}

__attribute__((target("avx512f"))) static void kb_run_avx512(const kqk_pack *k, size_t na,
                                                             const double *const *a,
                                                             const uint64_t *am, int zeta,
                                                             double delta, double *out,
                                                             size_t ostride, kqk_scratch *w) {
    for (size_t i0 = 0; i0 < na; i0 += KB_TILE512) {
        size_t nt = na - i0 < KB_TILE512 ? na - i0 : KB_TILE512;
        kb_tile_body(k, nt, a + i0, am + i0, zeta, delta, out + i0 * ostride, ostride, w, 2);
    }
}
#endif

/* The widest copy this build has and the CPU runs: KQ_SIMD_AVX512,
 * KQ_SIMD_AVX2 or KQ_SIMD_PORTABLE */
static int kb_best_simd(void) {
#if KB_AVX2
    if (__builtin_cpu_supports("avx512f")) return KQ_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2")) return KQ_SIMD_AVX2;
#endif
    return KQ_SIMD_PORTABLE;
}

/* out[i*ostride + r] += delta * (a_i . b_r)^zeta for na atom rows a[i]
 * [len] against the packed representatives k (b: the same rows unpacked,
 * [nr][len]), with am [na] scratch. If an atom or a representative has a
 * non-finite value there is no skipping: kq_kernel for every pair. */
int kqk_accumulate(const kqk_pack *k, size_t na, const double *const *a, int zeta, double delta,
                   double *out, size_t ostride, int simd, const double *b, uint64_t *am,
                   kqk_scratch *w) {
    if (kb_scratch_need(w, k)) return KQ_ENOMEM;
    int finite = 1;
    for (size_t i = 0; i < na; i++) am[i] = kb_mask(&k->l, a[i], &finite);
    if (!finite || !k->finite) {
        for (size_t i = 0; i < na; i++)
            for (size_t r = 0; r < k->nr; r++)
                out[i * ostride + r] += delta * kq_kernel(a[i], b + r * k->len, k->len, zeta);
        return KQ_OK;
    }
    if (simd == KQ_SIMD_AUTO) simd = kb_best_simd();
#if KB_AVX2
    if (simd == KQ_SIMD_AVX512) {
        kb_run_avx512(k, na, a, am, zeta, delta, out, ostride, w);
        return KQ_OK;
    }
    if (simd == KQ_SIMD_AVX2) {
        kb_run_avx2(k, na, a, am, zeta, delta, out, ostride, w);
        return KQ_OK;
    }
#endif
    kb_run_plain(k, na, a, am, zeta, delta, out, ostride, w);
    return KQ_OK;
}

int kq_kernel_accumulate(size_t na, const double *a, size_t nb, const double *b, size_t len,
                         int nblk, const size_t *blk_off, int zeta, double delta, int simd,
                         double *k) {
    if ((na && !a) || (nb && !b) || !k || len == 0) return KQ_EINVAL;
    if (simd != KQ_SIMD_AUTO && simd != KQ_SIMD_PORTABLE && simd != KQ_SIMD_AVX2 &&
        simd != KQ_SIMD_AVX512)
        return KQ_EINVAL;
#if KB_AVX2
    if (simd == KQ_SIMD_AVX2 && !__builtin_cpu_supports("avx2")) return KQ_EINVAL;
    if (simd == KQ_SIMD_AVX512 && !__builtin_cpu_supports("avx512f")) return KQ_EINVAL;
#else
    if (simd != KQ_SIMD_AUTO && simd != KQ_SIMD_PORTABLE) return KQ_EINVAL;
#endif
    if (na == 0 || nb == 0) return KQ_OK;
    kqk_layout l;
    kb_layout_from(nblk, blk_off, len, &l);
    kqk_pack pk;
    kqk_scratch w;
    memset(&w, 0, sizeof w);
    int rc = kqk_pack_build(&l, nb, b, len, &pk);
    uint64_t *am = rc ? NULL : malloc(na * sizeof *am);
    const double **ar = rc ? NULL : malloc(na * sizeof *ar);
    if (!rc && (!am || !ar)) rc = KQ_ENOMEM;
    for (size_t i = 0; !rc && i < na; i++) ar[i] = a + i * len;
    if (!rc) rc = kqk_accumulate(&pk, na, ar, zeta, delta, k, nb, simd, b, am, &w);
    free(am);
    free(ar);
    kqk_pack_free(&pk);
    kqk_scratch_free(&w);
    return rc;
}

/* Kernel column against one vector q (farthest point sampling): out[i] +=
 * delta * (x_{idx[i]} . q)^zeta for rows x [.][len] with masks xm [.], q's
 * mask qm. Eight dot products side by side (scalar: the rows are scattered);
 * each skips the chunks that are zero in all eight rows or in q. */
void kqk_column(const kqk_layout *l, const double *x, const uint64_t *xm, size_t len,
                const size_t *idx, size_t n, const double *q, uint64_t qm, int zeta, double delta,
                double *out) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const double *r[8];
        uint64_t u = 0;
        for (int k = 0; k < 8; k++) {
            r[k] = x + idx[i + k] * len;
            u |= xm[idx[i + k]];
        }
        u &= qm;
        double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        for (int c = 0; c < l->nch; c++) {
            if (!(u >> c & 1)) continue;
            for (size_t t = l->off[c]; t < l->off[c + 1]; t++) {
                double v = q[t];
                acc[0] += r[0][t] * v;
                acc[1] += r[1][t] * v;
                acc[2] += r[2][t] * v;
                acc[3] += r[3][t] * v;
                acc[4] += r[4][t] * v;
                acc[5] += r[5][t] * v;
                acc[6] += r[6][t] * v;
                acc[7] += r[7][t] * v;
            }
        }
        for (int k = 0; k < 8; k++) out[i + k] += delta * kb_pow(acc[k], zeta);
    }
    for (; i < n; i++) {
        const double *r = x + idx[i] * len;
        uint64_t u = xm[idx[i]] & qm;
        double acc = 0.0;
        for (int c = 0; c < l->nch; c++) {
            if (!(u >> c & 1)) continue;
            for (size_t t = l->off[c]; t < l->off[c + 1]; t++) acc += r[t] * q[t];
        }
        out[i] += delta * kb_pow(acc, zeta);
    }
}

int kq_kernel_column(size_t n, const double *x, const size_t *idx, const double *q, size_t len,
                     int nblk, const size_t *blk_off, int zeta, double delta, double *out) {
    if ((n && (!x || !idx || !out)) || !q || len == 0) return KQ_EINVAL;
    if (n == 0) return KQ_OK;
    kqk_layout l;
    kb_layout_from(nblk, blk_off, len, &l);
    size_t nx = 0;
    for (size_t i = 0; i < n; i++)
        if (idx[i] + 1 > nx) nx = idx[i] + 1;
    uint64_t *xm = malloc(nx * sizeof *xm);
    if (!xm) return KQ_ENOMEM;
    int finite = kqk_masks(&l, nx, x, len, xm);
    uint64_t qm = kb_mask(&l, q, &finite);
    if (!finite) {
        for (size_t i = 0; i < nx; i++) xm[i] = kb_all(&l);
        qm = kb_all(&l);
    }
    kqk_column(&l, x, xm, len, idx, n, q, qm, zeta, delta, out);
    free(xm);
    return KQ_OK;
}
