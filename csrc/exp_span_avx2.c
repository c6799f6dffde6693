/* exp_span_avx2.c -- expf on 4 floats at a time with AVX2 and FMA, compiled with
 * -mavx2 -mfma (only this translation unit) and reached through pynn_exp_span at
 * PYNN_LEVEL_AVX2.  The algorithm, and why it equals glibc's expf: exp_span.c. */
#include <math.h>
#include "internal.h"
#include "exp_span_internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>

/* Doubles hold the reduction exactly as glibc's does; the table is gathered; the last
 * 0..3 elements call expf itself. */
void pynn_exp_span_avx2(float *y, const float *x, int64_t n) {
    const __m256d inv = _mm256_set1_pd(EXPF_INVLN2N), shift = _mm256_set1_pd(EXPF_SHIFT);
    const __m256d c0 = _mm256_set1_pd(EXPF_C0), c1 = _mm256_set1_pd(EXPF_C1);
    const __m256d c2 = _mm256_set1_pd(EXPF_C2), one = _mm256_set1_pd(1.0);
    const __m128 oflow = _mm_set1_ps(EXPF_OFLOW), uflow = _mm_set1_ps(EXPF_UFLOW);
    const __m128 may_uflow = _mm_set1_ps(EXPF_MAY_UFLOW);
    int64_t i;
    for (i = 0; i + 4 <= n; i += 4) {             /* elements, 4 at a time */
        const __m128 xf = _mm_loadu_ps(x + i);
        const __m256d xd = _mm256_cvtps_pd(xf);
        __m256d kd = _mm256_fmadd_pd(inv, xd, shift);
        const __m256i ki = _mm256_castpd_si256(kd);
        __m256d r, tab, z, r2, p;
        __m128 out;
        kd = _mm256_sub_pd(kd, shift);
        r = _mm256_fmsub_pd(inv, xd, kd);
        tab = _mm256_i64gather_pd((const double *)pynn_exp2f_tab,
                                  _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8);
        tab = _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(tab),
                                                   _mm256_slli_epi64(ki, 47)));
        z = _mm256_fmadd_pd(c0, r, c1);
        r2 = _mm256_mul_pd(r, r);
        p = _mm256_fmadd_pd(r, c2, one);
        p = _mm256_fmadd_pd(z, r2, p);
        p = _mm256_mul_pd(p, tab);
        out = _mm256_cvtpd_ps(p);
        out = _mm_blendv_ps(out, _mm_set1_ps(INFINITY), _mm_cmpgt_ps(xf, oflow));
        out = _mm_blendv_ps(out, _mm_set1_ps(0x1p-149f), _mm_cmplt_ps(xf, may_uflow));
        out = _mm_blendv_ps(out, _mm_setzero_ps(), _mm_cmplt_ps(xf, uflow));
        out = _mm_blendv_ps(out, _mm_add_ps(xf, xf), _mm_cmpunord_ps(xf, xf));
        _mm_storeu_ps(y + i, out);
    }
    for (; i < n; i++) y[i] = expf(x[i]);         /* the last 0..3 */
}

#endif /* PYNN_HAVE_X86_KERNELS */
