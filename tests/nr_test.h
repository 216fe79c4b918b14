/*
 * nr_test: a small test harness. Each tests/test_*.c is one executable with
 * a list of test functions; checks record failures with file and line and
 * the run ends with "N passed, N failed" (and ", N skipped").
 *
 *     static void test_thing(void) { NR_CHECK(x == 1); NR_CHECK_NEAR(a, b, 1e-6); }
 *     int main(void) { NR_RUN(test_thing); return nr_test_summary(); }
 *
 * A test that cannot run here (no model files, no GPU) calls
 * NR_SKIP("why") and returns; skips are reported, never counted as passes.
 */
#ifndef NR_TEST_H
#define NR_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>

extern int nr_test_failed_checks;
extern int nr_test_skipped_flag;

void nr_test_run(const char *name, void (*fn)(void));
int nr_test_summary(void);
void nr_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Path of a file under the source tree / models dir (static buffer, rotated). */
const char *nr_test_src_path(const char *rel);
const char *nr_test_model_path(const char *rel);

#define NR_RUN(fn) nr_test_run(#fn, fn)

#define NR_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            nr_test_fail(__FILE__, __LINE__, "check failed: %s", #cond);                           \
    } while (0)

#define NR_CHECK_MSG(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            nr_test_fail(__FILE__, __LINE__, __VA_ARGS__);                                         \
    } while (0)

#define NR_CHECK_INT(a, b)                                                                         \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        if (va_ != vb_)                                                                            \
            nr_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, va_, vb_);          \
    } while (0)

#define NR_CHECK_NEAR(a, b, tol)                                                                   \
    do {                                                                                           \
        double va_ = (double)(a), vb_ = (double)(b);                                               \
        if (!(fabs(va_ - vb_) <= (tol)))                                                           \
            nr_test_fail(__FILE__, __LINE__, "%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, va_, vb_,  \
                         (double)(tol));                                                           \
    } while (0)

#define NR_SKIP(...)                                                                               \
    do {                                                                                           \
        printf("  skip: ");                                                                        \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        nr_test_skipped_flag = 1;                                                                  \
    } while (0)

#endif
