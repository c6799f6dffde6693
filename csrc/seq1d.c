/* seq1d.c -- the kernels of the sequence layers of engineer D's part of #16: global max
 * pooling (GlobalMaxPooling1D/2D), the masked mean over steps (GlobalAveragePooling1D
 * with a mask) and RepeatVector, forward and backward.
 *
 * Every output row (a sample) is written by one thread, and every sum runs over the steps
 * in order 0, 1, 2, ..., so results do not depend on the thread count.  No allocation.
 */
#include <string.h>
#include "internal.h"

/* x takes the place of best: greater, or the first NaN (which then stays), as NumPy's
 * max and argmax */
static inline int beats(float x, float best) { return x > best || (x != x && best == best); }

/* y (n, c) = max of x (n, s, c) over its s steps. */
int pynn_global_maxpool_forward(float *y, const float *x, int64_t n, int64_t s, int64_t c) {
    int64_t r;
    PYNN_RETURN_IF(n < 0 || s < 1 || c < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL) && n * c > 0, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * s * c),
        for (r = 0; r < n; r++) {
            float *restrict yo = y + r * c;
            const float *restrict xr = x + r * s * c;
            int64_t t, e;
            memcpy(yo, xr, (size_t)c * sizeof(float));
            for (t = 1; t < s; t++)
                for (e = 0; e < c; e++)
                    if (beats(xr[t * c + e], yo[e])) yo[e] = xr[t * c + e];
        });
    return PYNN_OK;
}

/* dx (n, s, c): dy (n, c) at the first maximum of each (sample, channel) of x, 0 elsewhere. */
int pynn_global_maxpool_backward(float *dx, const float *x, const float *dy, int64_t n, int64_t s,
                                 int64_t c) {
    int64_t r;
    PYNN_RETURN_IF(n < 0 || s < 1 || c < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || x == NULL || dy == NULL) && n * c > 0, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * s * c),
        for (r = 0; r < n; r++) {
            float *restrict d = dx + r * s * c;
            const float *restrict xr = x + r * s * c;
            int64_t t, e;
            memset(d, 0, (size_t)(s * c) * sizeof(float));
            for (e = 0; e < c; e++) {
                int64_t at = 0;
                float best = xr[e];
                for (t = 1; t < s; t++)
                    if (beats(xr[t * c + e], best)) {
                        best = xr[t * c + e];
                        at = t;
                    }
                d[at * c + e] = dy[r * c + e];
            }
        });
    return PYNN_OK;
}

/* y (n, c) = sum_t mask[n, t] x[n, t, c] / sum_t mask[n, t] (Keras 3's masked mean: a
 * sample with every step masked gives 0 / 0). */
int pynn_masked_mean_forward(float *y, const float *x, const float *mask, int64_t n, int64_t s,
                             int64_t c) {
    int64_t r;
    PYNN_RETURN_IF(n < 0 || s < 1 || c < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL || mask == NULL) && n * c > 0, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * s * c),
        for (r = 0; r < n; r++) {
            float *restrict yo = y + r * c;
            const float *restrict xr = x + r * s * c;
            const float *restrict m = mask + r * s;
            float count = 0.0f;
            int64_t t, e;
            memset(yo, 0, (size_t)c * sizeof(float));
            for (t = 0; t < s; t++) {
                const float mt = m[t];
                count += mt;
                for (e = 0; e < c; e++) yo[e] += mt * xr[t * c + e];
            }
            for (e = 0; e < c; e++) yo[e] /= count;
        });
    return PYNN_OK;
}

/* dx (n, s, c) = mask[n, t] dy[n, c] / sum_t mask[n, t]. */
int pynn_masked_mean_backward(float *dx, const float *dy, const float *mask, int64_t n, int64_t s,
                              int64_t c) {
    int64_t r;
    PYNN_RETURN_IF(n < 0 || s < 1 || c < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || dy == NULL || mask == NULL) && n * c > 0, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * s * c),
        for (r = 0; r < n; r++) {
            float *restrict d = dx + r * s * c;
            const float *restrict g = dy + r * c;
            const float *restrict m = mask + r * s;
            float count = 0.0f;
            int64_t t, e;
            for (t = 0; t < s; t++) count += m[t];
            for (t = 0; t < s; t++)
                for (e = 0; e < c; e++) d[t * c + e] = m[t] * (g[e] / count);
        });
    return PYNN_OK;
}

/* y (n, times, f): times copies of x (n, f). */
int pynn_repeat_vector_forward(float *y, const float *x, int64_t n, int64_t times, int64_t f) {
    int64_t r;
    PYNN_RETURN_IF(n < 0 || times < 1 || f < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL) && n * f > 0, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * times * f),
        for (r = 0; r < n; r++) {
            int64_t t;
            for (t = 0; t < times; t++)
                memcpy(y + (r * times + t) * f, x + r * f, (size_t)f * sizeof(float));
        });
    return PYNN_OK;
}

/* dx (n, f) = sum over t = 0, 1, ... of dy (n, times, f). */
int pynn_repeat_vector_backward(float *dx, const float *dy, int64_t n, int64_t times, int64_t f) {
    int64_t r;
    PYNN_RETURN_IF(n < 0 || times < 1 || f < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || dy == NULL) && n * f > 0, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * times * f),
        for (r = 0; r < n; r++) {
            float *restrict d = dx + r * f;
            const float *restrict g = dy + r * times * f;
            int64_t t, e;
            memcpy(d, g, (size_t)f * sizeof(float));
            for (t = 1; t < times; t++)
                for (e = 0; e < f; e++) d[e] += g[t * f + e];
        });
    return PYNN_OK;
}
