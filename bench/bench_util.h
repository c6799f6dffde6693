/* bench_util.h -- what every C benchmark needs: clocks, a comparison for qsort (medians),
 * and operands filled from a fixed seed.  Header-only (static functions), included by each
 * bench_*.c; not part of the library. */
#ifndef PYNN_BENCH_UTIL_H
#define PYNN_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Wall-clock seconds (monotonic). */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all threads): a busy machine spoils it less than
 * wall time. */
static inline double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort's comparison of doubles (for medians). */
static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* n bytes (at least 64) starting on a 64-byte boundary, as a plan's buffers do
 * (pynn/backend/base.py, aligned_zeros): the kernels see their arrays laid out as in a
 * training step, not at malloc's 16-byte offset, which splits every vector across two cache
 * lines.  Freed with free(); NULL if none could be had. */
static inline void *bench_alloc(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n > 64 ? n : 64) == 0 ? p : NULL;
}

/* n floats (at least one allocated) uniform in [-scale, scale), from *seed (an LCG), or
 * NULL if malloc fails; 64-byte aligned (bench_alloc). */
static inline float *filled(int64_t n, unsigned *seed, float scale) {
    float *x = bench_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; x != NULL && i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = ((float)((*seed >> 8) * (1.0 / 8388608.0)) - 1.0f) * scale;
    }
    return x;
}

#endif /* PYNN_BENCH_UTIL_H */
