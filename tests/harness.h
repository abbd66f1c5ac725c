/* harness.h - the project's tiny test harness (header only, no framework).
 *
 * Usage in a test program:
 *     #include "harness.h"
 *     int main(void) {
 *         CHECK(x == 1, "x is %d", x);
 *         CHECK_CLOSE(a, b, 1e-12, "energy");     // |a-b| <= tol
 *         CHECK_REL(a, b, 1e-12, "energy");       // |a-b| <= tol*max(|a|,|b|,tiny)
 *         return th_done("test_name");            // prints "test_name: N passed, N failed"
 *     }
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

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) { th_pass_count++; }                                          \
        else {                                                                  \
            th_fail_count++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
        }                                                                       \
    } while (0)

#define CHECK_CLOSE(a, b, tol, what)                                            \
    do {                                                                        \
        double th_a_ = (a), th_b_ = (b);                                        \
        CHECK(fabs(th_a_ - th_b_) <= (tol), "%s: %.17g vs %.17g (|diff| %.3g > %.3g)", \
              (what), th_a_, th_b_, fabs(th_a_ - th_b_), (double)(tol));       \
    } while (0)

#define CHECK_REL(a, b, tol, what)                                              \
    do {                                                                        \
        double th_a_ = (a), th_b_ = (b);                                        \
        double th_s_ = fmax(fmax(fabs(th_a_), fabs(th_b_)), 1e-300);            \
        CHECK(fabs(th_a_ - th_b_) <= (tol) * th_s_,                             \
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
