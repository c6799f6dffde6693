/* act_elementwise.h -- elementwise activations on a contiguous span.
 *
 * Static inline so that every kernel that applies an activation or its derivative
 * (activations.c, the GEMM epilogue in gemm.c, bias.c, the convolutions) compiles the
 * same arithmetic into its own loops: the fused paths and the stand-alone activation
 * kernels give bitwise-identical results.
 * Softmax and log_softmax are not elementwise and live in activations.c.
 */
#ifndef PYNN_ACT_ELEMENTWISE_H
#define PYNN_ACT_ELEMENTWISE_H

#include <math.h>
#include <string.h>
#include <stdint.h>
#include "pynn.h"

#define PYNN_SQRT1_2 0.70710678118654752440f
#define PYNN_INV_SQRT_2PI 0.39894228040143267794f
/* activations (engineer A): SELU's constants, as jax.nn.selu's */
#define PYNN_SELU_ALPHA 1.6732632423543772848170429916717f
#define PYNN_SELU_SCALE 1.0507009873554804934193349852946f

/* An id in PYNN_ACTIVATION_LIST (the ids run 0 .. PYNN_ACT_COUNT - 1). */
static inline int pynn_act_valid(int act) { return act >= 0 && act < PYNN_ACT_COUNT; }
/* softmax and log_softmax need whole rows: the fused paths apply them once the rows are
 * complete, with the stand-alone kernel (pynn_activation_forward). */
static inline int pynn_act_rowwise(int act) {
    return act == PYNN_ACT_SOFTMAX || act == PYNN_ACT_LOG_SOFTMAX;
}
/* min(max(v, lo), hi) as selects: they vectorise (fminf/fmaxf do not, without
 * -ffast-math) and a NaN stays NaN, as jnp.clip leaves it. */
static inline float pynn_clampf(float v, float lo, float hi) {
    const float a = v < lo ? lo : v;
    return a > hi ? hi : a;
}
/* 1 / (1 + exp(-z)): exp(-z) overflows to inf for z << 0, giving exactly 0. */
static inline float pynn_sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }
/* log(1 + exp(z)) as jax.nn.softplus (logaddexp(z, 0)): max(z, 0) + log1p(exp(-|z|)). */
static inline float pynn_softplusf(float z) {
    return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)));
}

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
    /* activations (engineer A).  Both sides of a select are computed, so the loops
     * have no branches (expm1f of min(z, 0) cannot overflow). */
    case PYNN_ACT_ELU:
        for (i = 0; i < n; i++) {
            const float e = alpha * expm1f(fminf(z[i], 0.0f));
            y[i] = z[i] > 0.0f ? z[i] : e;
        }
        return PYNN_OK;
    case PYNN_ACT_SELU:
        for (i = 0; i < n; i++) {
            const float e = PYNN_SELU_ALPHA * expm1f(fminf(z[i], 0.0f));
            y[i] = PYNN_SELU_SCALE * (z[i] > 0.0f ? z[i] : e);
        }
        return PYNN_OK;
    case PYNN_ACT_SOFTPLUS:
        for (i = 0; i < n; i++) y[i] = pynn_softplusf(z[i]);
        return PYNN_OK;
    case PYNN_ACT_SOFTSIGN:
        for (i = 0; i < n; i++) y[i] = z[i] / (fabsf(z[i]) + 1.0f);
        return PYNN_OK;
    case PYNN_ACT_SILU:
        for (i = 0; i < n; i++) y[i] = z[i] * pynn_sigmoidf(z[i]);
        return PYNN_OK;
    case PYNN_ACT_HARD_SIGMOID:
        for (i = 0; i < n; i++) y[i] = pynn_clampf(z[i] + 3.0f, 0.0f, 6.0f) / 6.0f;
        return PYNN_OK;
    case PYNN_ACT_HARD_SILU:
        for (i = 0; i < n; i++) y[i] = z[i] * (pynn_clampf(z[i] + 3.0f, 0.0f, 6.0f) / 6.0f);
        return PYNN_OK;
    case PYNN_ACT_RELU6:
        for (i = 0; i < n; i++) y[i] = pynn_clampf(z[i], 0.0f, 6.0f);
        return PYNN_OK;
    case PYNN_ACT_MISH:
        for (i = 0; i < n; i++) y[i] = z[i] * tanhf(pynn_softplusf(z[i]));
        return PYNN_OK;
    case PYNN_ACT_EXPONENTIAL:
        for (i = 0; i < n; i++) y[i] = expf(z[i]);
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
    /* activations (engineer A): the derivative at a kink is the one jax.grad gives */
    case PYNN_ACT_ELU:
        for (i = 0; i < n; i++) {
            const float g = dy[i], e = alpha * expf(fminf(x[i], 0.0f));
            dx[i] = x[i] > 0.0f ? g : g * e;
        }
        break;
    case PYNN_ACT_SELU:
        for (i = 0; i < n; i++) {
            const float g = dy[i], e = PYNN_SELU_ALPHA * expf(fminf(x[i], 0.0f));
            dx[i] = PYNN_SELU_SCALE * (x[i] > 0.0f ? g : g * e);
        }
        break;
    case PYNN_ACT_SOFTPLUS:
        for (i = 0; i < n; i++) dx[i] = dy[i] * pynn_sigmoidf(x[i]);
        break;
    case PYNN_ACT_SOFTSIGN:
        for (i = 0; i < n; i++) {
            const float d = fabsf(x[i]) + 1.0f;
            dx[i] = dy[i] / (d * d);
        }
        break;
    case PYNN_ACT_SILU:
        for (i = 0; i < n; i++) {
            const float s = pynn_sigmoidf(x[i]);
            dx[i] = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
        }
        break;
    case PYNN_ACT_HARD_SIGMOID:
        for (i = 0; i < n; i++) {
            const float q = dy[i] / 6.0f;
            dx[i] = x[i] > -3.0f && x[i] < 3.0f ? q : 0.0f;
        }
        break;
    case PYNN_ACT_HARD_SILU:
        /* hard_sigmoid(x) + x hard_sigmoid'(x) */
        for (i = 0; i < n; i++) {
            const float hs = pynn_clampf(x[i] + 3.0f, 0.0f, 6.0f) / 6.0f;
            const float d = x[i] > -3.0f && x[i] < 3.0f ? hs + x[i] / 6.0f : hs;
            dx[i] = dy[i] * d;
        }
        break;
    case PYNN_ACT_RELU6:
        for (i = 0; i < n; i++) {
            const float g = dy[i];
            dx[i] = x[i] > 0.0f && x[i] < 6.0f ? g : 0.0f;
        }
        break;
    case PYNN_ACT_MISH:
        /* tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x), sp = softplus(x) */
        for (i = 0; i < n; i++) {
            const float t = tanhf(pynn_softplusf(x[i]));
            dx[i] = dy[i] * (t + x[i] * (1.0f - t * t) * pynn_sigmoidf(x[i]));
        }
        break;
    case PYNN_ACT_EXPONENTIAL:
        for (i = 0; i < n; i++) dx[i] = dy[i] * y[i];
        break;
    default:
        break; /* unreachable: the caller checked act */
    }
}

#endif /* PYNN_ACT_ELEMENTWISE_H */
