/* exp_span.c -- expf over a span of floats, vectorised, bitwise equal to glibc's expf.
 *
 * Softmax and the softmax cross-entropy spend most of their time in expf, one call per
 * element; pynn_exp_span computes the same values 8 or 16 at a time.  Used by the loss
 * (losses.c), the softmax activation (activations.c) and the GEMM's softmax epilogue
 * (gemm.c), which therefore agree bitwise with each other as before.
 */
#include <math.h>
#include <stdint.h>
#include "internal.h"

/*
 * Softmax cross-entropy spends most of its time in expf, one call per element.  On
 * x86-64 with FMA, glibc's expf is __expf_fma (sysdeps/ieee754/flt-32/e_expf.c, the
 * ARM optimized-routines algorithm, built with FMA contraction): in double,
 *   kd = fma(N/ln2, x, SHIFT); ki = bits(kd); kd -= SHIFT; r = fma(N/ln2, x, -kd);
 *   s = double(tab[ki % 32] + (ki << 47));
 *   y = fma(fma(C0, r, C1), r*r, fma(r, C2, 1)) * s;  expf(x) = (float)y
 * with the special cases of |x| >= 88.  exp_span below does exactly these
 * operations on 8 (AVX-512) or 4 (AVX2) lanes at a time, so it returns what expf
 * returns (checked on every float against this glibc), without a call per element.
 * Without AVX2 + FMA it calls expf. */

static const uint64_t exp2f_tab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};
#define EXPF_INVLN2N 0x1.71547652b82fep+5      /* 32 / ln 2 */
#define EXPF_SHIFT 0x1.8p+52
#define EXPF_C0 0x1.c6af84b912394p-20           /* poly_scaled: C / 32^3, / 32^2, / 32 */
#define EXPF_C1 0x1.ebfce50fac4f3p-13
#define EXPF_C2 0x1.62e42ff0c52d6p-6
#define EXPF_OFLOW 0x1.62e42ep6f                /* above: +inf */
#define EXPF_UFLOW (-0x1.9fe368p6f)             /* below: 0 */
#define EXPF_MAY_UFLOW (-0x1.9d1d9ep6f)         /* below (down to EXPF_UFLOW): 0x1p-149 */

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PYNN_EXP_X86 1
#include <immintrin.h>

__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
static void exp_span_avx512(float *y, const float *x, int64_t n) {
    const __m512d inv = _mm512_set1_pd(EXPF_INVLN2N), shift = _mm512_set1_pd(EXPF_SHIFT);
    const __m512d c0 = _mm512_set1_pd(EXPF_C0), c1 = _mm512_set1_pd(EXPF_C1);
    const __m512d c2 = _mm512_set1_pd(EXPF_C2), one = _mm512_set1_pd(1.0);
    const __m512d t0 = _mm512_loadu_pd((const double *)exp2f_tab);
    const __m512d t1 = _mm512_loadu_pd((const double *)exp2f_tab + 8);
    const __m512d t2 = _mm512_loadu_pd((const double *)exp2f_tab + 16);
    const __m512d t3 = _mm512_loadu_pd((const double *)exp2f_tab + 24);
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

__attribute__((target("avx2,fma")))
static void exp_span_avx2(float *y, const float *x, int64_t n) {
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
        tab = _mm256_i64gather_pd((const double *)exp2f_tab,
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

#endif

/* 2: AVX-512, 1: AVX2 + FMA, 0: neither (expf per element); -1 until resolved.
 * Racing resolutions store the same value. */
static int exp_level = -1;

int pynn_exp_level(void) {
    int level = __atomic_load_n(&exp_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = 0;
#ifdef PYNN_EXP_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = 1;
        if (level == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
            level = 2;
#endif
        __atomic_store_n(&exp_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

/* y[0:n] = expf(x[0:n]); y may equal x. */
void pynn_exp_span(float *y, const float *x, int64_t n) {
    int64_t i;
#ifdef PYNN_EXP_X86
    const int level = pynn_exp_level();
    if (level == 2) {
        exp_span_avx512(y, x, n);
        return;
    }
    if (level == 1) {
        exp_span_avx2(y, x, n);
        return;
    }
#endif
    for (i = 0; i < n; i++) y[i] = expf(x[i]);
}

