/* exp_span.c -- expf over a span of floats, vectorised, bitwise equal to glibc's expf.
 *
 * Softmax (activations.c, and through it the GEMM's softmax epilogue) and the softmax
 * cross-entropy (losses.c) spend most of their time in expf, one call per element;
 * pynn_exp_span computes the same values 4 (AVX2) or 8 (AVX-512) at a time.
 *
 * On x86-64 with FMA, glibc's expf is __expf_fma (sysdeps/ieee754/flt-32/e_expf.c, the
 * ARM optimized-routines algorithm, built with FMA contraction): in double,
 *   kd = fma(N/ln2, x, SHIFT); ki = bits(kd); kd -= SHIFT; r = fma(N/ln2, x, -kd);
 *   s = double(tab[ki % 32] + (ki << 47));
 *   y = fma(fma(C0, r, C1), r*r, fma(r, C2, 1)) * s;  expf(x) = (float)y
 * with the special cases of |x| >= 88.  exp_span_avx2.c and exp_span_avx512.c do exactly
 * these operations on 4 or 8 lanes, so they return what expf returns (checked on every
 * float against this glibc), without a call per element.  Below AVX2 + FMA (where glibc
 * does not use FMA either) the generic level calls expf.
 */
#include <math.h>
#include <stdint.h>
#include "internal.h"
#include "exp_span_internal.h"

const uint64_t pynn_exp2f_tab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

static void exp_span_generic(float *y, const float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) y[i] = expf(x[i]);
}

/* y[0:n] = expf(x[0:n]); y may equal x.  The level: dispatch.c. */
void pynn_exp_span(float *y, const float *x, int64_t n) {
    switch (pynn_level()) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        pynn_exp_span_avx512(y, x, n);
        return;
    case PYNN_LEVEL_AVX2:
        pynn_exp_span_avx2(y, x, n);
        return;
#endif
    default:
        exp_span_generic(y, x, n);
    }
}
