/* losses_avx512.c -- the softmax cross-entropy's gradient rows with AVX-512, compiled
 * with -mavx512f/vl/dq/bw (only this translation unit) and reached from cce_logits_block
 * (losses.c) at PYNN_LEVEL_AVX512. */
#include <math.h>
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>

/* g[j] = (g[j] / s * t_sum - t_j) / rows: the same four operations per element as the
 * portable loop of cce_logits_block, 16 lanes at a time, the tail masked. */
void pynn_cce_grad_rows_avx512(float *grad, const float *target, const int64_t *labels,
                               const float *s, const float *t_sum, int64_t r0, int64_t r1,
                               int64_t cols, float rows) {
    const __m512 vrows = _mm512_set1_ps(rows), iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                     10, 11, 12, 13, 14, 15);
    const float inv = 1.0f / rows;
    const int pow2 = inv * rows == 1.0f && frexpf(inv, &(int){0}) == 0.5f;
    const __m512 inv_rows = _mm512_set1_ps(inv);
    int64_t r, j;
    for (r = r0; r < r1; r++) {                   /* rows */
        float *g = grad + r * cols;
        const __m512 vs = _mm512_set1_ps(s[r - r0]), vt = _mm512_set1_ps(t_sum[r - r0]);
        for (j = 0; j < cols; j += 16) {          /* N: 16 columns at a time */
            const __mmask16 lanes =
                cols - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - j)) - 1u);
            __m512 q = _mm512_div_ps(_mm512_maskz_loadu_ps(lanes, g + j), vs), tj;
            if (target != NULL)
                tj = _mm512_maskz_loadu_ps(lanes, target + r * cols + j);
            else                                  /* one-hot: 1 at the label */
                tj = _mm512_maskz_mov_ps(
                    _mm512_cmp_ps_mask(iota, _mm512_set1_ps((float)(labels[r] - j)), _CMP_EQ_OQ),
                    _mm512_set1_ps(1.0f));
            q = _mm512_sub_ps(_mm512_mul_ps(q, vt), tj);
            /* / rows: rows a power of two divides exactly as its reciprocal multiplies */
            q = pow2 ? _mm512_mul_ps(q, inv_rows) : _mm512_div_ps(q, vrows);
            _mm512_mask_storeu_ps(g + j, lanes, q);
        }
    }
}

#endif /* PYNN_HAVE_X86_KERNELS */
