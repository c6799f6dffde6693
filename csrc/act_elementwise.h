/* act_elementwise.h -- elementwise activations on a contiguous span.
 *
 * Static inline so that every kernel that applies an activation or its derivative
 * (activations.c, the GEMM epilogue in gemm.c, bias.c, the convolutions) compiles the
 * same arithmetic into its own loops: the fused paths and the stand-alone activation
 * kernels give bitwise-identical results.
 * Softmax is not elementwise and lives in activations.c.
 */
#ifndef PYNN_ACT_ELEMENTWISE_H
#define PYNN_ACT_ELEMENTWISE_H

#include <math.h>
#include <string.h>
#include <stdint.h>
#include "pynn.h"

#define PYNN_SQRT1_2 0.70710678118654752440f
#define PYNN_INV_SQRT_2PI 0.39894228040143267794f

/* y[0:n] = act(z[0:n]); y may equal z.  Returns PYNN_EINVAL for softmax or an
 * unknown id (callers handle softmax row-wise). */
static inline int pynn_act_span(float *y, const float *z, int64_t n, int act, float alpha) {
    int64_t i;
    switch (act) {
    case PYNN_ACT_LINEAR:
        if (y != z) memcpy(y, z, (size_t)n * sizeof(float));
        return PYNN_OK;
    case PYNN_ACT_RELU:
        for (i = 0; i < n; i++) y[i] = z[i] > 0.0f ? z[i] : 0.0f;
        return PYNN_OK;
    case PYNN_ACT_LEAKY_RELU:
        for (i = 0; i < n; i++) y[i] = z[i] > 0.0f ? z[i] : alpha * z[i];
        return PYNN_OK;
    case PYNN_ACT_SIGMOID:
        /* exp(-z) overflows to inf for z << 0, giving exactly 0: no NaN. */
        for (i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-z[i]));
        return PYNN_OK;
    case PYNN_ACT_TANH:
        for (i = 0; i < n; i++) y[i] = tanhf(z[i]);
        return PYNN_OK;
    case PYNN_ACT_GELU:
        /* x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2: the textbook 1 + erf(x / sqrt 2)
         * cancels for x << 0 (all of Phi lost below x = -5.5), erfc keeps its relative
         * accuracy down to the underflow of the result. */
        for (i = 0; i < n; i++) y[i] = 0.5f * z[i] * erfcf(-z[i] * PYNN_SQRT1_2);
        return PYNN_OK;
    default:
        return PYNN_EINVAL;
    }
}

/* dx[0:n] = f'(x) dy elementwise, x the pre-activation and y = f(x); dx may equal dy.
 * Softmax is not elementwise (activations.c); an unknown id leaves dx untouched. */
static inline void pynn_act_backward_span(float *dx, const float *x, const float *y, const float *dy,
                              int64_t n, int act, float alpha) {
    int64_t i;
    switch (act) {
    case PYNN_ACT_LINEAR:
        if (dx != dy) memcpy(dx, dy, (size_t)n * sizeof(float));
        break;
    /* dy[i] is read unconditionally: a load under the condition compiles to a branch,
     * which random signs mispredict half the time; a select vectorises. */
    case PYNN_ACT_RELU:
        for (i = 0; i < n; i++) {
            const float g = dy[i];
            dx[i] = x[i] > 0.0f ? g : 0.0f;
        }
        break;
    case PYNN_ACT_LEAKY_RELU:
        for (i = 0; i < n; i++) {
            const float g = dy[i];
            dx[i] = x[i] > 0.0f ? g : alpha * g;
        }
        break;
    case PYNN_ACT_SIGMOID:
        for (i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case PYNN_ACT_TANH:
        for (i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case PYNN_ACT_GELU:
        /* d/dx [x Phi(x)] = Phi(x) + x phi(x), Phi the normal CDF, phi its pdf */
        for (i = 0; i < n; i++) {
            float cdf = 0.5f * erfcf(-x[i] * PYNN_SQRT1_2);
            float pdf = PYNN_INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
            dx[i] = dy[i] * (cdf + x[i] * pdf);
        }
        break;
    default:
        break; /* unreachable: the caller checked act */
    }
}

#endif /* PYNN_ACT_ELEMENTWISE_H */
