/* simd_mask.h -- the first n lanes of a vector as a mask, for the translation units
 * compiled with AVX-512 or AVX2 (the GEMM's and the convolutions' kernels): one definition
 * where each unit had its own.  Not installed. */
#ifndef PYNN_SIMD_MASK_H
#define PYNN_SIMD_MASK_H

#include <stdint.h>
#include <immintrin.h>

#if defined(__AVX512F__)
/* Lanes [0, n) of a 16-float vector, n clamped to [0, 16]. */
static inline __mmask16 pynn_mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u));
}
#endif

#if defined(__AVX2__)
/* Lanes [0, n) of an 8-float vector, n clamped to [0, 8], as a maskload / maskstore mask. */
static inline __m256i pynn_mask8(int64_t n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int k = n < 0 ? 0 : (n > 8 ? 8 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), lanes);
}
#endif

#endif
