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

/* ---- packing with 8 x 8 transposes in registers -----------------------------
 * As in gemm_kernel_avx512.c: the two layouts that need a transpose (A as
 * stored, B transposed) are copied 8 x 8 floats at a time; the portable
 * routines handle the others. */

/* r[c] := column c of the 8 x 8 block whose rows are r[0..7]. */
static inline void avx2_transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    int g;
#pragma GCC unroll 4
    for (g = 0; g < 8; g += 2) {              /* row pairs: interleave floats */
        t[g] = _mm256_unpacklo_ps(r[g], r[g + 1]);
        t[g + 1] = _mm256_unpackhi_ps(r[g], r[g + 1]);
    }
#pragma GCC unroll 2
    for (g = 0; g < 8; g += 4) {              /* row quads: columns q of each lane */
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    /* Lane L of u[4h + q] holds rows 4h..4h+3 of column 4L + q. */
#pragma GCC unroll 4
    for (g = 0; g < 4; g++) {                 /* columns g and 4 + g */
        r[g] = _mm256_permute2f128_ps(u[g], u[4 + g], 0x20);
        r[4 + g] = _mm256_permute2f128_ps(u[g], u[4 + g], 0x31);
    }
}

/* A micro-panel; the transpose path serves A as stored (cs == 1). */
static void avx2_pack_a(float *ap, const float *a, int64_t rs, int64_t cs,
                        int64_t m, int64_t kc, int64_t mr) {
    const __m256i panel_rows = avx2_lane_mask(AVX2_MR);
    int64_t p0;
    int i, p;
    if (cs != 1 || mr != AVX2_MR) {
        pynn_gemm_pack_a_ref(ap, a, rs, cs, m, kc, mr);
        return;
    }
    for (p0 = 0; p0 < kc; p0 += 8) {          /* K: 8 columns of the panel at a time */
        const int64_t w = kc - p0 < 8 ? kc - p0 : 8;
        const __m256i cols = avx2_lane_mask(w);
        __m256 r[8];
#pragma GCC unroll 8
        for (i = 0; i < 8; i++)               /* M: rows, zero past m */
            r[i] = i < m ? _mm256_maskload_ps(a + i * rs + p0, cols) : _mm256_setzero_ps();
        avx2_transpose8(r);
#pragma GCC unroll 8
        for (p = 0; p < 8; p++)               /* K: one packed column of MR floats */
            if (p < w) _mm256_maskstore_ps(ap + (p0 + p) * AVX2_MR, panel_rows, r[p]);
    }
}

/* A B micro-panel; the transpose path serves B transposed (rs == 1). */
static void avx2_pack_b(float *bp, const float *b, int64_t rs, int64_t cs,
                        int64_t kc, int64_t n, int64_t nr) {
    int64_t p0;
    int h, j, p;
    if (rs != 1 || nr != AVX2_NR) {
        pynn_gemm_pack_b_ref(bp, b, rs, cs, kc, n, nr);
        return;
    }
    for (p0 = 0; p0 < kc; p0 += 8) {          /* K: 8 rows of the panel at a time */
        const int64_t w = kc - p0 < 8 ? kc - p0 : 8;
        const __m256i rows = avx2_lane_mask(w);
        for (h = 0; h < AVX2_NR / 8; h++) {   /* N: 8 columns of the panel at a time */
            __m256 r[8];
#pragma GCC unroll 8
            for (j = 0; j < 8; j++)           /* N: columns of op(B), zero past n */
                r[j] = 8 * h + j < n ? _mm256_maskload_ps(b + (8 * h + j) * cs + p0, rows)
                                     : _mm256_setzero_ps();
            avx2_transpose8(r);
#pragma GCC unroll 8
            for (p = 0; p < 8; p++)           /* K: one packed row, 8 of its NR floats */
                if (p < w) _mm256_storeu_ps(bp + (p0 + p) * AVX2_NR + 8 * h, r[p]);
        }
    }
}

/* Blocking: kc x 16 floats of B (16 KiB at kc = 256) in L1, a 120 x 256 block
 * of A (120 KiB) in L2, a 256 x 4096 panel of B (4 MiB) in L3. */
const pynn_gemm_kernel_info pynn_gemm_kernel_avx2 = {
    PYNN_KERNEL_AVX2, "avx2", AVX2_MR, AVX2_NR, 120, 256, 4096,
    gemm_ukernel_avx2, avx2_pack_a, avx2_pack_b,
};

#endif /* PYNN_HAVE_X86_KERNELS */
