/* SPDX-License-Identifier: MIT */
/* harness.h - the project's tiny test harness (header only, no framework).
 *
 * Usage in a test program:
 *     #include "harness.h"
 *     int main(void) {
 *         CHECK(x == 1, "x is %d", x);
 *         CHECK_CLOSE(a, b, 1e-12, "energy");     // |a-b| <= tol
 *         CHECK_REL(a, b, 1e-12, "energy");       // |a-b| <= tol*max(|a|,|b|,tiny)
 *         CHECK_ARRAY_CLOSE(x, ref, n, 1e-12, "dipoles");   // every |x[i]-ref[i]| <= tol
 *         worst = th_worst(worst, err);           // running maximum that keeps NaN
 *         return th_done("test_name");            // prints "test_name: N passed, N failed"
 *     }
 * NaN and Inf never pass: CHECK_CLOSE / CHECK_REL require both values finite, and every
 * error comparison is written err <= tol, which is false for a NaN error. Use th_worst, never fmax, for "worst error so far":
 * fmax(worst, NaN) returns worst and would hide a NaN output (tests/test_harness.c checks
 * this harness itself).
 * Every check counts; a failing check prints one line with the file and line.
 * th_skip("why") prints a SKIP line (counted separately, never a pass).
 * shared_dir() gives ../shared (or $TENSORIAL_SHARED) or NULL if absent.
 */
#ifndef HARNESS_H
#define HARNESS_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int th_pass_count, th_fail_count, th_skip_count;
static int th_quiet; /* test_harness.c sets it while it checks that bad values fail */

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) { th_pass_count++; }                                          \
        else {                                                                  \
            th_fail_count++;                                                    \
            if (!th_quiet) {                                                    \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
                fprintf(stderr, __VA_ARGS__);                                   \
                fprintf(stderr, "\n");                                          \
            }                                                                   \
        }                                                                       \
    } while (0)

#define CHECK_CLOSE(a, b, tol, what)                                            \
    do {                                                                        \
        double th_a_ = (a), th_b_ = (b);                                        \
        CHECK(isfinite(th_a_) && isfinite(th_b_) && fabs(th_a_ - th_b_) <= (tol), "%s: %.17g vs %.17g (|diff| %.3g > %.3g)", \
              (what), th_a_, th_b_, fabs(th_a_ - th_b_), (double)(tol));       \
    } while (0)

/* Running maximum for "worst error so far" that propagates NaN (and Inf): once any
 * err is NaN the result stays NaN, so a following CHECK(worst <= tol) fails. */
static inline double th_worst(double worst, double err) {
    if (err != err || worst != worst) return NAN;
    return err > worst ? err : worst;
}

/* Largest |a[i]-b[i]| over n values; NaN if any difference is NaN (or a/b has NaN). */
static inline double th_max_abs_diff(const double *a, const double *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = th_worst(w, fabs(a[i] - b[i]));
    return w;
}

/* Every element within tol (fails on NaN/Inf anywhere): one check for the array. */
#define CHECK_ARRAY_CLOSE(a, b, n, tol, what)                                   \
    do {                                                                        \
        double th_w_ = th_max_abs_diff((a), (b), (size_t)(n));                  \
        CHECK(th_w_ <= (tol), "%s: max |diff| %.3g > %.3g over %zu values",     \
              (what), th_w_, (double)(tol), (size_t)(n));                       \
    } while (0)

#define CHECK_REL(a, b, tol, what)                                              \
    do {                                                                        \
        double th_a_ = (a), th_b_ = (b);                                        \
        double th_s_ = fmax(fmax(fabs(th_a_), fabs(th_b_)), 1e-300);            \
        CHECK(isfinite(th_a_) && isfinite(th_b_) && fabs(th_a_ - th_b_) <= (tol) * th_s_,                             \
              "%s: %.17g vs %.17g (rel diff %.3g > %.3g)", (what), th_a_, th_b_, \
              fabs(th_a_ - th_b_) / th_s_, (double)(tol));                     \
    } while (0)

static inline void th_skip(const char *why) {
    th_skip_count++;
    printf("SKIP: %s\n", why);
}

/* ../shared beside the repository (tests run from the repository root). */
static inline const char *shared_dir(void) {
    const char *d = getenv("TENSORIAL_SHARED");
    struct stat st;
    if (!d) d = "../shared";
    if (stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return d;
    return NULL;
}

static inline int th_done(const char *name) {
    if (th_skip_count)
        printf("%s: %d passed, %d failed, %d skipped\n", name, th_pass_count, th_fail_count,
               th_skip_count);
    else
        printf("%s: %d passed, %d failed\n", name, th_pass_count, th_fail_count);
    return th_fail_count ? 1 : 0;
}
#endif
