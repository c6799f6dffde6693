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

/* p rounded up to the next 64-byte boundary (a cache line, a zmm register's width): where
 * packed panels start in a buffer allocated with 16 floats to spare. */
static inline float *pynn_align64f(void *p) {
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

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

/* ---- counter-based uniforms (csrc/pynn.h, "randomness"; dropout.c, pixel.c, image.c) -- */
#define PYNN_GOLDEN 0x9E3779B97F4A7C15ULL

/* splitmix64's finaliser */
static inline uint64_t pynn_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* the key of a (seed, counter) pair: mix64(seed + G (counter + 1)) */
static inline uint64_t pynn_random_key(uint64_t seed, uint64_t counter) {
    return pynn_mix64(seed + PYNN_GOLDEN * (counter + 1));
}

/* u_e = (mix64(key + G (e + 1)) >> 40) 2^-24: 24 random bits, exact in float */
static inline float pynn_uniform_at(uint64_t key, uint64_t e) {
    return (float)(pynn_mix64(key + PYNN_GOLDEN * (e + 1)) >> 40) * 0x1p-24f;
}

/* Reductions over rows are split in chunks of this many rows, each summed in order,
 * and the partial sums are combined in chunk order: the thread count never changes
 * the result. */
#define PYNN_REDUCE_CHUNK 256

/* ---- CPU-feature dispatch (dispatch.c) ------------------------------------------
 *
 * Code for a wider instruction set lives in its own translation unit, <family>_<isa>.c,
 * compiled with that set's -m flags and only where CMake defines PYNN_HAVE_X86_KERNELS
 * (x86 targets).  A kernel reaches it through one switch on pynn_level() per call: the
 * level detected once at first use (pynn_cpu_level), or the one a test forced for every
 * family at once (pynn_select_level).  No other CPU check, `target` attribute or
 * target_clones anywhere:
 *
 *   switch (pynn_level()) {
 *   #ifdef PYNN_HAVE_X86_KERNELS
 *   case PYNN_LEVEL_AVX512: return family_avx512(...);
 *   case PYNN_LEVEL_AVX2:   return family_avx2(...);
 *   #endif
 *   default:                return family_generic(...);
 *   }
 *
 * A family with several functions per level keeps them in a table (gemm_internal.h,
 * conv_direct_internal.h) and the switch picks the table.  Outside the GEMM, the SIMD code
 * of a family computes bitwise the values of its portable code (the same operations in
 * the same order, -ffp-contract=off everywhere, fused multiply-adds only where written
 * as intrinsics), so the level changes no result but the GEMM's.  Entry points: */

/* y[0:n] = expf(x[0:n]), bitwise equal to glibc's expf (exp_span.c); y may equal x. */
void pynn_exp_span(float *y, const float *x, int64_t n);

/* op(B) (K x N; trans_b, ldb as pynn_sgemm) packed once for several products with it
 * (gemm.c): pynn_sgemm_pack_b_floats(N, K) floats (0 when N or K is 0).
 * pynn_sgemm_prepacked is pynn_sgemm, bitwise, reading B's panels from bp (packed by the
 * same kernel level, from the same B) where it would pack them. */
int64_t pynn_sgemm_pack_b_floats(int64_t N, int64_t K);
int pynn_sgemm_pack_b(float *bp, const float *B, int trans_b, int64_t N, int64_t K,
                      int64_t ldb);
int pynn_sgemm_prepacked(float *C, const float *A, const float *B, const float *bp,
                         int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc);
/* Rows of a product with B packed ahead, on the calling thread only (no team, no
 * allocation): C (M x N, row stride ldc) = op(A) op(B) + beta C, A and C already offset to
 * the rows wanted, a_buf the thread's own pynn_sgemm_rows_floats(M, K) floats, 64-byte
 * aligned.  Each element is summed as pynn_sgemm's blocked path sums it, whichever rows
 * are passed together, so threads that split one product's rows between them get results
 * that do not depend on the split. */
int64_t pynn_sgemm_rows_floats(int64_t M, int64_t K);
void pynn_sgemm_rows(float *C, const float *A, const float *bp, int trans_a, int64_t M,
                     int64_t N, int64_t K, float beta, int64_t lda, int64_t ldc, float *a_buf);
#ifdef PYNN_HAVE_X86_KERNELS
void pynn_exp_span_avx2(float *y, const float *x, int64_t n);    /* exp_span_avx2.c */
void pynn_exp_span_avx512(float *y, const float *x, int64_t n);  /* exp_span_avx512.c */
/* The softmax cross-entropy's gradient on rows r0 .. r1-1 (cce_logits_block in losses.c):
 * g = (g / s[r - r0] * t_sum[r - r0] - t) / rows, t the target row, or the one-hot row
 * of labels[r] when target is NULL (losses_avx512.c). */
void pynn_cce_grad_rows_avx512(float *grad, const float *target, const int64_t *labels,
                               const float *s, const float *t_sum, int64_t r0, int64_t r1,
                               int64_t cols, float rows);
#endif

#define PYNN_RETURN_IF(cond, status) do { if (cond) return (status); } while (0)

#endif /* PYNN_INTERNAL_H */
