/* gemm_kernel_avx2.c -- AVX2 + FMA micro-kernel, compiled with -mavx2 -mfma
 * (only this translation unit) and chosen at run time when the CPU has both.
 * Contract: see gemm_internal.h.
 *
 * 6 x 16 tile: each row of C is two ymm registers, 12 accumulators in all, plus
 * two registers of B and one broadcast of A: 15 of the 16 ymm registers.  Twelve
 * independent FMA chains cover the FMA latency (4-5 cycles) on two FMA ports.
 * Edge tiles use masked loads and stores, so they do the same arithmetic as full
 * ones. */
#include "internal.h"
#include "gemm_internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>

#define AVX2_MR 6
#define AVX2_NR 16

/* Lanes [0, n) of an 8-float vector, n clamped to [0, 8], as a maskload mask. */
static inline __m256i avx2_lane_mask(int64_t n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int k = n < 0 ? 0 : (n > 8 ? 8 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), lanes);
}

static void gemm_ukernel_avx2(float *c, const float *a, const float *b,
                              int64_t m, int64_t n, int64_t kc,
                              float alpha, float beta, int64_t ldc) {
    __m256 acc[AVX2_MR][2];
    int64_t p;
    int i;
#pragma GCC unroll 6
    for (i = 0; i < AVX2_MR; i++) {           /* M: rows of the tile */
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }
    for (p = 0; p < kc; p++) {                /* K: one rank-1 update per step */
        const __m256 b0 = _mm256_load_ps(b);
        const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (i = 0; i < AVX2_MR; i++) {       /* M: rows of the tile */
            const __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += AVX2_MR;
        b += AVX2_NR;
    }

    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const __m256i mask0 = avx2_lane_mask(n), mask1 = avx2_lane_mask(n - 8);
    /* Unrolled over all MR rows so that acc[i] names a register; rows past m
     * do not exist in C. */
#pragma GCC unroll 6
    for (i = 0; i < AVX2_MR; i++) {           /* M: rows of C stored */
        float *ci = c + i * ldc;
        if (i >= m) break;
        __m256 t0 = _mm256_mul_ps(va, acc[i][0]);
        __m256 t1 = _mm256_mul_ps(va, acc[i][1]);
        if (n == AVX2_NR) {
            if (beta != 0.0f) {
                t0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), t0);
                t1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), t1);
            }
            _mm256_storeu_ps(ci, t0);
            _mm256_storeu_ps(ci + 8, t1);
        } else {
            if (beta != 0.0f) {
                t0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, mask0), t0);
                t1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, mask1), t1);
            }
            _mm256_maskstore_ps(ci, mask0, t0);
            _mm256_maskstore_ps(ci + 8, mask1, t1);
        }
    }
}

/* Blocking: kc x 16 floats of B (16 KiB at kc = 256) in L1, a 120 x 256 block
 * of A (120 KiB) in L2, a 256 x 4096 panel of B (4 MiB) in L3. */
const pynn_gemm_kernel_info pynn_gemm_kernel_avx2 = {
    PYNN_KERNEL_AVX2, "avx2", AVX2_MR, AVX2_NR, 120, 256, 4096,
    gemm_ukernel_avx2, NULL, NULL,
};

#endif /* PYNN_HAVE_X86_KERNELS */
