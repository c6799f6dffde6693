/* gemm_kernel_avx512.c -- AVX-512 micro-kernel, compiled with -mavx512f/vl/dq/bw
 * (only this translation unit) and chosen at run time when the CPU has them.
 * Contract: see gemm_internal.h.
 *
 * MR x NR = AVX512_MR x (16 * AVX512_NV): each row of C is AVX512_NV zmm
 * registers.  Every step of K loads AVX512_NV vectors of B and broadcasts MR
 * floats of A into MR x NV independent FMA chains, enough to cover the FMA
 * latency on two FMA pipes.  Edge tiles use masked loads and stores, so they
 * do the same arithmetic as full ones. */
#include "internal.h"
#include "gemm_internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>

#ifndef AVX512_MR
#define AVX512_MR 12
#endif
#ifndef AVX512_NV
#define AVX512_NV 2
#endif
#define AVX512_NR (16 * AVX512_NV)

/* Lanes [0, n) of a 16-float vector, n clamped to [0, 16]. */
static inline __mmask16 avx512_lane_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u));
}

static void gemm_ukernel_avx512(float *c, const float *a, const float *b,
                                int64_t m, int64_t n, int64_t kc,
                                float alpha, float beta, int64_t ldc) {
    __m512 acc[AVX512_MR][AVX512_NV];
    __m512 bv[AVX512_NV];
    int64_t p;
    int i, v;
#pragma GCC unroll 16
    for (i = 0; i < AVX512_MR; i++)           /* M: rows of the tile */
#pragma GCC unroll 4
        for (v = 0; v < AVX512_NV; v++)       /* N: vectors of a row */
            acc[i][v] = _mm512_setzero_ps();

    /* Fetch the C tile now so that its cache misses overlap the K loop instead
     * of stalling the stores at the end (C is swept once per K block).  A row
     * of the tile spans up to three cache lines. */
#pragma GCC unroll 16
    for (i = 0; i < AVX512_MR; i++) {         /* M: rows of the C tile */
        if (i >= m) break;
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + AVX512_NR - 1), _MM_HINT_T0);
    }

    for (p = 0; p < kc; p++) {                /* K: one rank-1 update per step */
#pragma GCC unroll 4
        for (v = 0; v < AVX512_NV; v++)       /* N: vectors of the B row */
            bv[v] = _mm512_load_ps(b + 16 * v);
#pragma GCC unroll 16
        for (i = 0; i < AVX512_MR; i++) {     /* M: rows of the tile */
            const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
            for (v = 0; v < AVX512_NV; v++)   /* N: vectors of a row */
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += AVX512_MR;
        b += AVX512_NR;
    }

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 mask[AVX512_NV];
    for (v = 0; v < AVX512_NV; v++)           /* N: vectors of a row */
        mask[v] = avx512_lane_mask(n - 16 * v);
    /* Unrolled over all MR rows so that acc[i] names a register; rows past m
     * do not exist in C. */
#pragma GCC unroll 16
    for (i = 0; i < AVX512_MR; i++) {         /* M: rows of C stored */
        float *ci = c + i * ldc;
        if (i >= m) break;
#pragma GCC unroll 4
        for (v = 0; v < AVX512_NV; v++) {     /* N: vectors of a row */
            __m512 t = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0.0f)
                t = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], ci + 16 * v), t);
            _mm512_mask_storeu_ps(ci + 16 * v, mask[v], t);
        }
    }
}

/* Blocking: kc x NR floats of B (32 KiB at kc = 256, NR = 32) in the 48 KiB L1,
 * a 432 x 256 block of A (432 KiB) in the 1 MiB L2, a 256 x 4096 panel of B
 * (4 MiB) in L3.  Measured on Zen 5 (2 cores): MC 432 beat 144 and 288 by 3-5%
 * at 1024-2048, more made no difference; KC 192 or 384 and the tiles 14x32,
 * 8x48 and 6x64 were no better than 12x32 at KC 256. */
#ifndef AVX512_MC
#define AVX512_MC 432
#endif
#ifndef AVX512_KC
#define AVX512_KC 256
#endif
#ifndef AVX512_NC
#define AVX512_NC 4096
#endif
const pynn_gemm_kernel_info pynn_gemm_kernel_avx512 = {
    PYNN_KERNEL_AVX512, "avx512", AVX512_MR, AVX512_NR, AVX512_MC, AVX512_KC, AVX512_NC,
    gemm_ukernel_avx512,
};

#endif /* PYNN_HAVE_X86_KERNELS */
