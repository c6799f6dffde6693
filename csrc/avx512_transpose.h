/* avx512_transpose.h -- the 16 x 16 float transpose in registers that the AVX-512
 * packing routines share (gemm_kernel_avx512.c, conv_gemm_avx512.c).  Include only from
 * translation units compiled with -mavx512f. */
#ifndef PYNN_AVX512_TRANSPOSE_H
#define PYNN_AVX512_TRANSPOSE_H

#include <immintrin.h>

/* r[c] := column c of the 16 x 16 block whose rows are r[0..15]. */
static inline void avx512_transpose16(__m512 r[16]) {
    __m512 t[16];
    int g, q;
#pragma GCC unroll 8
    for (g = 0; g < 16; g += 2) {             /* row pairs: interleave floats */
        t[g] = _mm512_unpacklo_ps(r[g], r[g + 1]);
        t[g + 1] = _mm512_unpackhi_ps(r[g], r[g + 1]);
    }
#pragma GCC unroll 4
    for (g = 0; g < 16; g += 4) {             /* row quads: interleave pairs */
        const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
        const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
        r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    /* Now 128-bit lane L of r[4g + q] holds rows 4g..4g+3 of column 4L + q:
     * a 4 x 4 transpose of lanes finishes the job. */
#pragma GCC unroll 4
    for (q = 0; q < 4; q++) {                 /* columns q, 4 + q, 8 + q, 12 + q */
        const __m512 u0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x44);
        const __m512 u1 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x44);
        const __m512 u3 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xEE);
        t[q] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + q] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        t[8 + q] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + q] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
#pragma GCC unroll 16
    for (g = 0; g < 16; g++)                  /* columns of the block */
        r[g] = t[g];
}

#endif /* PYNN_AVX512_TRANSPOSE_H */
