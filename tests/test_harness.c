/* SPDX-License-Identifier: MIT */
/* test_harness.c - the harness itself must see NaN and Inf (issue 12: a NaN written into
 * a compared output once passed because the worst error was kept with fmax).
 * The checks below run the harness's comparisons on known-bad values and count how many
 * of them fail; every one must fail, and the good values must pass. */
#include "harness.h"

int main(void) {
    double ref[4] = {1.0, -2.0, 3.0, 0.5};
    double good[4] = {1.0, -2.0, 3.0 + 1e-15, 0.5};
    double bad_nan[4] = {NAN, -2.0, 3.0, 0.5};      /* NaN first: the old fmax case */
    double bad_inf[4] = {1.0, -2.0, 3.0, INFINITY};
    double bad_big[4] = {1.0, -2.0, 3.1, 0.5};

    /* th_worst keeps NaN wherever it appears in the sequence. */
    double w = 0;
    w = th_worst(w, NAN);
    w = th_worst(w, 1.0);
    CHECK(w != w, "th_worst lost a leading NaN: %g", w);
    w = th_worst(0.0, 1e-3);
    w = th_worst(w, NAN);
    CHECK(w != w, "th_worst lost a trailing NaN: %g", w);
    CHECK(th_worst(2.0, 1.0) == 2.0 && th_worst(1.0, 2.0) == 2.0, "th_worst is not a max");
    CHECK(isinf(th_worst(0.0, INFINITY)), "th_worst lost Inf");

    /* Run the comparisons on bad data with the counters saved: each must add one failure. */
    int saved_pass = th_pass_count, saved_fail = th_fail_count;
    th_quiet = 1;
    CHECK_ARRAY_CLOSE(bad_nan, ref, 4, 1e-12, "NaN array");
    CHECK_ARRAY_CLOSE(bad_inf, ref, 4, 1e-12, "Inf array");
    CHECK_ARRAY_CLOSE(bad_big, ref, 4, 1e-12, "wrong array");
    CHECK_CLOSE(NAN, 1.0, 1e-12, "NaN close");
    CHECK_CLOSE(1.0, NAN, 1e-12, "close NaN");
    CHECK_CLOSE(INFINITY, INFINITY, 1e-12, "Inf - Inf");
    CHECK_REL(NAN, 1.0, 1e-12, "NaN rel");
    CHECK_REL(1.0, INFINITY, 1e-12, "Inf rel");
    int failed = th_fail_count - saved_fail, passed = th_pass_count - saved_pass;
    th_quiet = 0;
    th_fail_count = saved_fail;
    th_pass_count = saved_pass;
    CHECK(failed == 8 && passed == 0, "bad values: %d of 8 comparisons failed, %d passed",
          failed, passed);

    CHECK_ARRAY_CLOSE(good, ref, 4, 1e-12, "good array");
    CHECK_CLOSE(1.0, 1.0 + 1e-14, 1e-12, "good close");
    CHECK_REL(1e10, 1e10 * (1 + 1e-14), 1e-12, "good rel");
    return th_done("test_harness");
}
