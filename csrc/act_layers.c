/* act_layers.c -- the activation layers that are not one activation id (engineer A):
 * Keras's ReLU with max_value / threshold, softmax over a middle axis, PReLU.
 *
 * Every output element is written by one thread; the one reduction (PReLU's alpha
 * gradient) gives each alpha element to one thread, which sums rows outer and the shared
 * positions inner, in index order, into a double: results do not depend on the thread
 * count.
 */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "act_elementwise.h"

#define ACT_LAYERS_SPAN 4096
#define PRELU_MAX_RANK 16

static int64_t spans_of(int64_t n) { return (n + ACT_LAYERS_SPAN - 1) / ACT_LAYERS_SPAN; }

/* ---- ReLU(max_value, negative_slope, threshold) ------------------------------------ */

static int relu_args_ok(float slope, float threshold, float max_value) {
    return slope >= 0.0f && !isnan(threshold) && isfinite(slope) && max_value >= 0.0f &&
           !isinf(threshold);
}

int pynn_relu_forward(float *y, const float *x, int64_t n, float negative_slope,
                      float threshold, float max_value) {
    int64_t s, nspans;
    PYNN_RETURN_IF(n < 0 || ((y == NULL || x == NULL) && n > 0), PYNN_EINVAL);
    PYNN_RETURN_IF(!relu_args_ok(negative_slope, threshold, max_value), PYNN_EINVAL);
    nspans = spans_of(n);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (s = 0; s < nspans; s++) {
            const int64_t i0 = s * ACT_LAYERS_SPAN;
            const int64_t i1 = n - i0 < ACT_LAYERS_SPAN ? n : i0 + ACT_LAYERS_SPAN;
            int64_t i;
            for (i = i0; i < i1; i++) {
                const float v = x[i];
                const float kept = v > threshold ? v : 0.0f;
                const float neg = threshold - v > 0.0f ? threshold - v : 0.0f;
                y[i] = pynn_clampf(kept, 0.0f, max_value) - negative_slope * neg;
            }
        });
    return PYNN_OK;
}

int pynn_relu_backward(float *dx, const float *x, const float *dy, int64_t n,
                       float negative_slope, float threshold, float max_value) {
    int64_t s, nspans;
    PYNN_RETURN_IF(n < 0 || ((dx == NULL || x == NULL || dy == NULL) && n > 0), PYNN_EINVAL);
    PYNN_RETURN_IF(!relu_args_ok(negative_slope, threshold, max_value), PYNN_EINVAL);
    nspans = spans_of(n);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (s = 0; s < nspans; s++) {
            const int64_t i0 = s * ACT_LAYERS_SPAN;
            const int64_t i1 = n - i0 < ACT_LAYERS_SPAN ? n : i0 + ACT_LAYERS_SPAN;
            int64_t i;
            for (i = i0; i < i1; i++) {
                const float v = x[i], g = dy[i];
                const float pos = v > threshold && v > 0.0f && v < max_value ? g : 0.0f;
                const float neg = v < threshold ? negative_slope * g : 0.0f;
                dx[i] = pos + neg;
            }
        });
    return PYNN_OK;
}

/* ---- softmax over the middle axis of (outer, len, inner) ---------------------------- */

int pynn_softmax_axis_forward(float *y, const float *x, int64_t outer, int64_t len,
                              int64_t inner) {
    return pynn_softmax_axis_masked_forward(y, x, NULL, outer, len, inner);
}

/* Keras's Softmax(mask=): a value whose mask is not > 0.5 counts as -1e9 (Keras's
 * _large_negative_number for float32) and its output is 0. */
#define SOFTMAX_MASKED_VALUE (-1e9f)
/* x[k] of a slab, or the masked value (ms: the slab's mask, NULL for none) */
#define SOFTMAX_IN(k) (ms == NULL || ms[k] > 0.5f ? xs[k] : SOFTMAX_MASKED_VALUE)

int pynn_softmax_axis_masked_forward(float *y, const float *x, const float *mask,
                                     int64_t outer, int64_t len, int64_t inner) {
    int64_t o, n;
    PYNN_RETURN_IF(outer < 0 || len < 0 || inner < 0, PYNN_EINVAL);
    n = outer * len * inner;
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL, PYNN_EINVAL);
    /* one (outer) slab per iteration; within it the inner columns run side by side, each
     * column's max, sum and division in index order along the axis */
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (o = 0; o < outer; o++) {
            const float *xs = x + o * len * inner;
            float *ys = y + o * len * inner;
            int64_t i, j;
            const float *ms = mask != NULL ? mask + o * len * inner : NULL;
            for (i = 0; i < inner; i++) {
                float m = SOFTMAX_IN(i), s = 0.0f;
                for (j = 1; j < len; j++) {
                    const float v = SOFTMAX_IN(j * inner + i);
                    m = v > m ? v : m;
                }
                for (j = 0; j < len; j++) {
                    const float e = expf(SOFTMAX_IN(j * inner + i) - m);
                    ys[j * inner + i] = e;
                    s += e;
                }
                for (j = 0; j < len; j++) {
                    const int64_t k = j * inner + i;
                    ys[k] = ms == NULL || ms[k] > 0.5f ? ys[k] / s : 0.0f;
                }
            }
        });
    return PYNN_OK;
}

int pynn_softmax_axis_backward(float *dx, const float *y, const float *dy, int64_t outer,
                               int64_t len, int64_t inner) {
    int64_t o, n;
    PYNN_RETURN_IF(outer < 0 || len < 0 || inner < 0, PYNN_EINVAL);
    n = outer * len * inner;
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(dx == NULL || y == NULL || dy == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (o = 0; o < outer; o++) {
            const int64_t base = o * len * inner;
            int64_t i, j;
            for (i = 0; i < inner; i++) {
                double dot = 0.0;
                float dotf;
                for (j = 0; j < len; j++) {
                    const int64_t k = base + j * inner + i;
                    dot += (double)(dy[k] * y[k]);
                }
                dotf = (float)dot;
                for (j = 0; j < len; j++) {
                    const int64_t k = base + j * inner + i;
                    dx[k] = y[k] * (dy[k] - dotf);
                }
            }
        });
    return PYNN_OK;
}

/* ---- PReLU ---------------------------------------------------------------------- */

/* per-sample size, alpha size and the strides of x's and alpha's per-sample shapes;
 * 0 on a bad geometry */
static int prelu_geometry(int64_t rank, const int64_t *dims, const int64_t *shared,
                          int64_t *per, int64_t *na, int64_t *xstride, int64_t *astride) {
    int64_t k, p = 1, a = 1;
    if (rank < 1 || rank > PRELU_MAX_RANK || dims == NULL || shared == NULL) return 0;
    for (k = rank - 1; k >= 0; k--) {
        if (dims[k] < 1 || p > INT64_MAX / dims[k]) return 0;
        xstride[k] = p;
        astride[k] = shared[k] ? 0 : a;
        p *= dims[k];
        if (!shared[k]) a *= dims[k];
    }
    *per = p;
    *na = a;
    return 1;
}

/* alpha's index of per-sample position p */
static int64_t prelu_alpha_index(int64_t p, int64_t rank, const int64_t *xstride,
                                 const int64_t *astride) {
    int64_t k, a = 0;
    for (k = 0; k < rank; k++) {
        const int64_t c = p / xstride[k];
        p -= c * xstride[k];
        a += c * astride[k];
    }
    return a;
}

int pynn_prelu_forward(float *y, const float *x, const float *alpha, int64_t rows,
                       int64_t rank, const int64_t *dims, const int64_t *shared) {
    int64_t xstride[PRELU_MAX_RANK], astride[PRELU_MAX_RANK], per, na, p;
    PYNN_RETURN_IF(rows < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(!prelu_geometry(rank, dims, shared, &per, &na, xstride, astride),
                   PYNN_EINVAL);
    if (rows == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL || alpha == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(rows > INT64_MAX / per, PYNN_EINVAL);
    /* per-sample positions split among the threads; each runs down the rows */
    PYNN_PARALLEL_FOR(pynn_threads_for(rows * per),
        for (p = 0; p < per; p++) {
            const float a = alpha[prelu_alpha_index(p, rank, xstride, astride)];
            int64_t r;
            for (r = 0; r < rows; r++) {
                const float v = x[r * per + p];
                y[r * per + p] = v > 0.0f ? v : a * v;
            }
        });
    return PYNN_OK;
}

int pynn_prelu_backward(float *dx, float *dalpha, const float *x, const float *alpha,
                        const float *dy, int64_t rows, int64_t rank, const int64_t *dims,
                        const int64_t *shared) {
    int64_t xstride[PRELU_MAX_RANK], astride[PRELU_MAX_RANK], per, na, a, p, k;
    int64_t sdims[PRELU_MAX_RANK], sstride[PRELU_MAX_RANK], nshared = 0, ns = 1;
    PYNN_RETURN_IF(rows < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(!prelu_geometry(rank, dims, shared, &per, &na, xstride, astride),
                   PYNN_EINVAL);
    PYNN_RETURN_IF(alpha == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(rows > 0 && (x == NULL || dy == NULL), PYNN_EINVAL);
    PYNN_RETURN_IF(rows > INT64_MAX / per, PYNN_EINVAL);
    /* the shared axes, outer to inner: a shared offset s walks them in index order */
    for (k = 0; k < rank; k++)
        if (shared[k]) {
            sdims[nshared] = dims[k];
            sstride[nshared] = xstride[k];
            nshared++;
            ns *= dims[k];
        }
    /* dalpha (unless NULL: a frozen alpha): one thread per alpha element, rows outer,
     * shared positions inner */
    if (dalpha != NULL) PYNN_PARALLEL_FOR(pynn_threads_for(rows * per),
        for (a = 0; a < na; a++) {
            int64_t base = 0, rem = a, kk, r, s;
            double acc = 0.0;
            /* a's position with every shared coordinate 0 */
            for (kk = rank - 1; kk >= 0; kk--)
                if (!shared[kk]) {
                    base += (rem % dims[kk]) * xstride[kk];
                    rem /= dims[kk];
                }
            for (r = 0; r < rows; r++)
                for (s = 0; s < ns; s++) {
                    int64_t off = base, q = s, j;
                    for (j = nshared - 1; j >= 0; j--) {
                        off += (q % sdims[j]) * sstride[j];
                        q /= sdims[j];
                    }
                    {
                        const float v = x[r * per + off];
                        if (v < 0.0f) acc += (double)(dy[r * per + off] * v);
                    }
                }
            dalpha[a] = (float)acc;
        });
    if (dx != NULL && rows > 0) {
        PYNN_PARALLEL_FOR(pynn_threads_for(rows * per),
            for (p = 0; p < per; p++) {
                const float al = alpha[prelu_alpha_index(p, rank, xstride, astride)];
                int64_t r;
                for (r = 0; r < rows; r++) {
                    const float v = x[r * per + p], g = dy[r * per + p];
                    dx[r * per + p] = v > 0.0f ? g : al * g;
                }
            });
    }
    return PYNN_OK;
}
