/* exp_span_avx512.c -- expf on 8 floats at a time with AVX-512, compiled with
 * -mavx512f/vl/dq/bw (only this translation unit) and reached through pynn_exp_span at
 * PYNN_LEVEL_AVX512.  The algorithm, and why it equals glibc's expf: exp_span.c. */
#include <math.h>
#include "internal.h"
#include "exp_span_internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>

/* Doubles hold the reduction exactly as glibc's does; the 32-entry table is looked up
 * with two-register permutes (bit 4 of ki picks the half), and the tail is masked, so
 * every element takes the same path. */
void pynn_exp_span_avx512(float *y, const float *x, int64_t n) {
    const __m512d inv = _mm512_set1_pd(EXPF_INVLN2N), shift = _mm512_set1_pd(EXPF_SHIFT);
    const __m512d c0 = _mm512_set1_pd(EXPF_C0), c1 = _mm512_set1_pd(EXPF_C1);
    const __m512d c2 = _mm512_set1_pd(EXPF_C2), one = _mm512_set1_pd(1.0);
    const __m512d t0 = _mm512_loadu_pd((const double *)pynn_exp2f_tab);
    const __m512d t1 = _mm512_loadu_pd((const double *)pynn_exp2f_tab + 8);
    const __m512d t2 = _mm512_loadu_pd((const double *)pynn_exp2f_tab + 16);
    const __m512d t3 = _mm512_loadu_pd((const double *)pynn_exp2f_tab + 24);
    const __m256 oflow = _mm256_set1_ps(EXPF_OFLOW), uflow = _mm256_set1_ps(EXPF_UFLOW);
    const __m256 may_uflow = _mm256_set1_ps(EXPF_MAY_UFLOW);
    int64_t i;
    for (i = 0; i < n; i += 8) {                  /* elements, 8 at a time */
        const __mmask8 lanes = n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1u);
        const __m256 xf = _mm256_maskz_loadu_ps(lanes, x + i);
        const __m512d xd = _mm512_cvtps_pd(xf);
        __m512d kd = _mm512_fmadd_pd(inv, xd, shift);
        const __m512i ki = _mm512_castpd_si512(kd);
        __m512d r, tab, z, r2, p;
        __m256 out;
        kd = _mm512_sub_pd(kd, shift);
        r = _mm512_fmsub_pd(inv, xd, kd);
        /* tab[ki % 32]: bits 0-3 pick within a half, bit 4 the half */
        tab = _mm512_mask_blend_pd(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)),
                                   _mm512_permutex2var_pd(t0, ki, t1),
                                   _mm512_permutex2var_pd(t2, ki, t3));
        tab = _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(tab),
                                                   _mm512_slli_epi64(ki, 47)));
        z = _mm512_fmadd_pd(c0, r, c1);
        r2 = _mm512_mul_pd(r, r);
        p = _mm512_fmadd_pd(r, c2, one);
        p = _mm512_fmadd_pd(z, r2, p);
        p = _mm512_mul_pd(p, tab);
        out = _mm512_cvtpd_ps(p);
        /* |x| >= 88, inf, NaN: glibc's special cases */
        out = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(xf, oflow, _CMP_GT_OQ), out,
                                   _mm256_set1_ps(INFINITY));
        out = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(xf, may_uflow, _CMP_LT_OQ), out,
                                   _mm256_set1_ps(0x1p-149f));
        out = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(xf, uflow, _CMP_LT_OQ), out,
                                   _mm256_setzero_ps());
        out = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(xf, xf, _CMP_UNORD_Q), out,
                                   _mm256_add_ps(xf, xf));
        _mm256_mask_storeu_ps(y + i, lanes, out);
    }
}

#endif /* PYNN_HAVE_X86_KERNELS */
