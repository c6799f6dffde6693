/* ctest.h -- what the C kernel tests (tests/c/test_*.c) share.  Each test is one program
 * built with ASan and UBSan (CMakeLists.txt); everything here is static (inline: a
 * program need not use all of it).
 *
 *   CHECK(cond, fmt, ...)     one check; the first failures are printed with the context
 *   ctest_rand, ctest_floats  a seeded generator: the same data on every run and machine
 *   ctest_close               float results against a double reference, within a bound
 *                             the caller states per element
 *   ctest_everywhere          a kernel run at every dispatch level this CPU supports, on 1
 *                             and on 2 threads: all runs must give the same bytes
 *   ctest_finish              the summary line and the exit status
 *
 * Bounds: u = 2^-24 is float32's unit roundoff.  A float sum of n terms, in any order, is
 * within (n - 1) u sum|terms| of the exact sum, and each correctly rounded operation adds
 * at most u of its result; the tests add those up per element (CTEST_U below) and say
 * which operations they count.  A wrong, missing or repeated term is off by about the
 * term itself, far above such bounds for the sizes used here.
 */
#ifndef PYNN_CTEST_H
#define PYNN_CTEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

#define CTEST_U 5.9604644775390625e-08 /* 2^-24 */

static int ctest_checks = 0, ctest_failures = 0;
static char ctest_context[160] = "-";

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        ctest_checks++;                                                     \
        if (!(cond)) {                                                      \
            ctest_failures++;                                               \
            if (ctest_failures <= 30) {                                     \
                printf("FAIL [%s] %s:%d: ", ctest_context, __FILE__, __LINE__); \
                printf(__VA_ARGS__);                                        \
                printf("\n");                                               \
            }                                                               \
        }                                                                   \
    } while (0)

/* What the following checks are about, printed with their failures. */
#define CTEST_CONTEXT(...) snprintf(ctest_context, sizeof ctest_context, __VA_ARGS__)

/* ---- data ------------------------------------------------------------------ */

static uint64_t ctest_state = 0x9E3779B97F4A7C15ull;

static inline void ctest_seed(uint64_t seed) { ctest_state = seed * 0x9E3779B97F4A7C15ull + 1; }

/* uniform in [0, 1), 24 random bits (xorshift64*) */
static inline float ctest_rand(void) {
    ctest_state ^= ctest_state >> 12;
    ctest_state ^= ctest_state << 25;
    ctest_state ^= ctest_state >> 27;
    return (float)((ctest_state * 0x2545F4914F6CDD1Dull) >> 40) * (1.0f / 16777216.0f);
}

static inline void *ctest_alloc(size_t bytes) {
    void *p = malloc(bytes > 0 ? bytes : 1);
    if (p == NULL) {
        printf("out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

static inline float *ctest_new_floats(int64_t n) {
    return (float *)ctest_alloc((size_t)n * sizeof(float));
}
static inline double *ctest_new_doubles(int64_t n) {
    return (double *)ctest_alloc((size_t)n * sizeof(double));
}

/* n floats uniform in [lo, hi) */
static inline float *ctest_floats(int64_t n, float lo, float hi) {
    float *x = ctest_new_floats(n);
    int64_t i;
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * ctest_rand();
    return x;
}

static inline float *ctest_copy(const float *x, int64_t n) {
    float *y = ctest_new_floats(n);
    if (n > 0) memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

/* ---- comparison -------------------------------------------------------------- */

/* got[i] within bound[i] of want[i] for every i < n (a NaN fails); `what` names the
 * output.  Reports the number of misses and the first one. */
static inline void ctest_close(const char *what, const float *got, const double *want,
                        const double *bound, int64_t n) {
    int64_t i, bad = 0, first = -1;
    for (i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= bound[i])) {
            if (bad++ == 0) first = i;
        }
    CHECK(bad == 0, "%s: %lld of %lld elements off, first [%lld] = %.9g, expected %.9g +- %.3g",
          what, (long long)bad, (long long)n, (long long)first,
          first >= 0 ? (double)got[first] : 0.0, first >= 0 ? want[first] : 0.0,
          first >= 0 ? bound[first] : 0.0);
}

/* The same bits in a and b (n floats): results that must not depend on anything. */
static inline void ctest_same_bits(const char *what, const float *a, const float *b,
                                   int64_t n) {
    int64_t i, bad = 0, first = -1;
    for (i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0) {
            if (bad++ == 0) first = i;
        }
    CHECK(bad == 0, "%s: %lld of %lld elements differ, first [%lld]: %.9g vs %.9g", what,
          (long long)bad, (long long)n, (long long)first, first >= 0 ? (double)a[first] : 0.0,
          first >= 0 ? (double)b[first] : 0.0);
}

/* ---- every dispatch level, 1 and 2 threads --------------------------------------- */

static inline const char *ctest_level_name(int level) {
    switch (level) {
    case PYNN_LEVEL_GENERIC: return "generic";
    case PYNN_LEVEL_AVX2: return "avx2";
    case PYNN_LEVEL_AVX512: return "avx512";
    default: return "?";
    }
}

/* run(ctx, out): one case's outputs, all of them, into out (the caller's `bytes` bytes),
 * from inputs the call leaves as they were (a kernel that works in place copies its
 * initial state into out first). */
typedef void (*ctest_run_fn)(void *ctx, unsigned char *out);

/* Runs `run` at every dispatch level this CPU supports, each on 1 and on 2 threads, and
 * checks that every run leaves the same bytes: outside the GEMM no kernel's result
 * depends on the level, and none depends on the thread count.  The output buffer is
 * filled with a different byte pattern (NaN floats) before each run, so an output that
 * a run leaves unwritten shows up as a difference too.  Returns the first run's bytes
 * (the caller checks them against its reference, then frees them); the level and the
 * thread count are left at the detected level and 1 thread. */
static inline unsigned char *ctest_everywhere(ctest_run_fn run, void *ctx, size_t bytes,
                                       const char *what) {
    unsigned char *first = (unsigned char *)ctest_alloc(bytes);
    unsigned char *again = (unsigned char *)ctest_alloc(bytes);
    int level, threads, runs = 0;
    for (level = PYNN_LEVEL_GENERIC; level <= pynn_cpu_level(); level++) {
        CHECK(pynn_select_level(level) == PYNN_OK, "%s: select level %s", what,
              ctest_level_name(level));
        for (threads = 1; threads <= 2; threads++) {
            unsigned char *out = runs == 0 ? first : again;
            pynn_set_num_threads(threads);
            memset(out, runs % 2 ? 0xFF : 0xFE, bytes);
            run(ctx, out);
            if (runs > 0 && bytes > 0)
                CHECK(memcmp(first, again, bytes) == 0,
                      "%s: level %s on %d thread(s) differs from level %s on 1 thread", what,
                      ctest_level_name(level), threads, ctest_level_name(PYNN_LEVEL_GENERIC));
            runs++;
        }
    }
    pynn_select_level(PYNN_LEVEL_AUTO);
    pynn_set_num_threads(1);
    free(again);
    return first;
}

/* 0 when every check passed, else 1, after a summary line. */
static inline int ctest_finish(const char *name) {
    printf("%s: levels up to %s, %d checks, %d failures\n", name,
           ctest_level_name(pynn_cpu_level()), ctest_checks, ctest_failures);
    return ctest_failures == 0 ? 0 : 1;
}

#endif /* PYNN_CTEST_H */
