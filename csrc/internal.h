/* internal.h -- helpers shared by pynn's C translation units (not installed). */
#ifndef PYNN_INTERNAL_H
#define PYNN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "pynn.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Threads a parallel region should use: pynn_set_num_threads' value, else OpenMP's. */
int pynn_threads(void);

/* Threads for a loop of `work` scalar operations: 1 below a size where starting
 * the team costs more than it saves.  Only the thread count changes, never the
 * order of any sum, so results do not depend on it. */
static inline int pynn_threads_for(int64_t work) {
    return work < (int64_t)32768 ? 1 : pynn_threads();
}

/* PYNN_PARALLEL_FOR(nthreads, for (...) ...): the loop split between `nthreads`
 * threads (OpenMP, static schedule), or a plain loop when that is 1.  An OpenMP
 * region costs about 0.25 us even on one thread (libgomp sets up a team), which the
 * dozen small kernels of a small network's training step would otherwise pay every
 * step.  The loop's variable must be declared before the macro. */
#ifdef _OPENMP
#define PYNN_PARALLEL_FOR(nthreads, ...)                                              \
    do {                                                                               \
        const int pynn_nt_ = (nthreads);                                               \
        if (pynn_nt_ > 1) {                                                            \
            _Pragma("omp parallel for schedule(static) num_threads(pynn_nt_)")        \
            __VA_ARGS__                                                                \
        } else {                                                                       \
            __VA_ARGS__                                                                \
        }                                                                              \
    } while (0)
#else
#define PYNN_PARALLEL_FOR(nthreads, ...) do { __VA_ARGS__ } while (0)
#endif

/* Reductions over rows are split in chunks of this many rows, each summed in order,
 * and the partial sums are combined in chunk order: the thread count never changes
 * the result. */
#define PYNN_REDUCE_CHUNK 256

/* y[0:n] = expf(x[0:n]), vectorised where the CPU allows and bitwise equal to glibc's
 * expf (exp_span.c); y may equal x.  pynn_exp_level: 2 AVX-512, 1 AVX2 + FMA, 0 scalar. */
void pynn_exp_span(float *y, const float *x, int64_t n);
int pynn_exp_level(void);

#define PYNN_RETURN_IF(cond, status) do { if (cond) return (status); } while (0)

#endif /* PYNN_INTERNAL_H */
