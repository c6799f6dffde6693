/* optimizers.c -- Keras 3 update rules, elementwise over n parameters.
 *
 * Each rule is written in float32 in the order of the comments in pynn.h (which
 * follow Keras 3's ops), so the NumPy reference, which spells the same expressions
 * in the array's dtype, agrees to the last bit or nearly.  Elementwise: each
 * parameter is updated by one thread, results do not depend on the thread count.
 */
#include <math.h>
#include "internal.h"

/* momentum == 0: w -= lr g.  Otherwise m = momentum m - lr g; w += m, or with
 * nesterov w += momentum m - lr g.  m may be NULL when momentum == 0. */
int pynn_sgd_update(float *w, float *m, const float *g, int64_t n,
                    float lr, float momentum, int nesterov) {
    int64_t i;
    PYNN_RETURN_IF(n < 0 || w == NULL || g == NULL, PYNN_EINVAL);
    if (momentum == 0.0f) {
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (i = 0; i < n; i++) w[i] -= lr * g[i];);
        return PYNN_OK;
    }
    PYNN_RETURN_IF(m == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            m[i] = momentum * m[i] - lr * g[i];
            if (nesterov)
                w[i] += momentum * m[i] - lr * g[i];
            else
                w[i] += m[i];
        });
    return PYNN_OK;
}

/* m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2); w -= lr_t m / (sqrt(v) + eps).
 * The bias correction is folded into lr_t by the caller. */
int pynn_adam_update(float *w, float *m, float *v, const float *g, int64_t n,
                     float lr_t, float beta1, float beta2, float epsilon) {
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
    int64_t i;
    PYNN_RETURN_IF(n < 0 || w == NULL || m == NULL || v == NULL || g == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            m[i] += (g[i] - m[i]) * one_minus_beta1;
            v[i] += (g[i] * g[i] - v[i]) * one_minus_beta2;
            w[i] -= lr_t * m[i] / (sqrtf(v[i]) + epsilon);
        });
    return PYNN_OK;
}

/* v = rho v + (1 - rho) g^2; inc = lr g / sqrt(v + eps);
 * momentum == 0: w -= inc; else mom = momentum mom + inc; w -= mom. */
int pynn_rmsprop_update(float *w, float *v, float *mom, const float *g, int64_t n,
                        float lr, float rho, float momentum, float epsilon) {
    const float one_minus_rho = 1.0f - rho;
    int64_t i;
    PYNN_RETURN_IF(n < 0 || w == NULL || v == NULL || g == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(momentum != 0.0f && mom == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            float inc;
            v[i] = rho * v[i] + one_minus_rho * (g[i] * g[i]);
            inc = lr * g[i] / sqrtf(v[i] + epsilon);
            if (momentum == 0.0f) {
                w[i] -= inc;
            } else {
                mom[i] = momentum * mom[i] + inc;
                w[i] -= mom[i];
            }
        });
    return PYNN_OK;
}

/* One optimizer step over a flat parameter array: the settings come as doubles (as
 * Python holds them) and reach the update rules as float, except Adam's step size,
 * whose bias correction is computed in double first, term for term as
 * pynn.backend.reference.adam_lr_t does. */
int pynn_optimizer_step(float *w, float *slot1, float *slot2, const float *g, int64_t n,
                        int kind, int64_t step, const double *hyper) {
    PYNN_RETURN_IF(hyper == NULL || n < 0 || step < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(kind < 0 || kind >= PYNN_OPT_COUNT, PYNN_EINVAL);
    if (n == 0) return PYNN_OK;   /* nothing to update (the rules refuse NULL arrays) */
    switch (kind) {
    case PYNN_OPT_SGD: {
        const float momentum = (float)hyper[PYNN_HYPER_MOMENTUM];
        return pynn_sgd_update(w, momentum != 0.0f ? slot1 : NULL, g, n,
                               (float)hyper[PYNN_HYPER_LEARNING_RATE], momentum,
                               hyper[PYNN_HYPER_NESTEROV] != 0.0);
    }
    case PYNN_OPT_ADAM: {
        const double beta1 = hyper[PYNN_HYPER_BETA_1], beta2 = hyper[PYNN_HYPER_BETA_2];
        const double lr_t = hyper[PYNN_HYPER_LEARNING_RATE] * sqrt(1.0 - pow(beta2, (double)step)) /
                            (1.0 - pow(beta1, (double)step));
        return pynn_adam_update(w, slot1, slot2, g, n, (float)lr_t, (float)beta1, (float)beta2,
                                (float)hyper[PYNN_HYPER_EPSILON]);
    }
    case PYNN_OPT_RMSPROP: {
        const float momentum = (float)hyper[PYNN_HYPER_MOMENTUM];
        return pynn_rmsprop_update(w, slot1, momentum != 0.0f ? slot2 : NULL, g, n,
                                   (float)hyper[PYNN_HYPER_LEARNING_RATE],
                                   (float)hyper[PYNN_HYPER_RHO], momentum,
                                   (float)hyper[PYNN_HYPER_EPSILON]);
    }
    default:
        return PYNN_EINVAL;
    }
}
