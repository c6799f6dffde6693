/* dropout.c -- inverted dropout with counter-based uniforms (csrc/pynn.h, "randomness").
 *
 * Why counter-based: the uniform of an element is a pure function of (seed, counter, its
 * index in the noise shape), so any thread may draw any element, the mask does not depend
 * on the thread count, and the NumPy reference (reference.random_uniform) and the CUDA
 * backend draw the very same numbers.  No generator state crosses between calls: the
 * plan passes the step number as the counter.
 */
#include "internal.h"

/* The shape is (rows, dims[0], ..., dims[ndim-1]): below, axis 0 is the batch axis and
 * axis a >= 1 is dims[a - 1]. */
static inline int64_t axis_len(int64_t rows, const int64_t *dims, int64_t a) {
    return a == 0 ? rows : dims[a - 1];
}

int pynn_dropout_forward(float *y, float *mask, const float *x, int64_t rows,
                         const int64_t *dims, const int64_t *broadcast, int64_t ndim,
                         uint64_t seed, uint64_t counter, double rate) {
    const uint64_t key = pynn_stream_key(seed, counter);
    const float rate_f = (float)rate;
    int64_t a, n = rows, inner, outer, t;
    float scale;
    PYNN_RETURN_IF(ndim < 0 || rows < 0 || broadcast == NULL || (dims == NULL && ndim > 0),
                   PYNN_EINVAL);
    PYNN_RETURN_IF(!(rate >= 0.0 && rate < 1.0), PYNN_EINVAL);     /* NaN fails too */
    for (a = 0; a < ndim; a++) {
        PYNN_RETURN_IF(dims[a] < 0, PYNN_EINVAL);
        PYNN_RETURN_IF(dims[a] > 0 && n > INT64_MAX / dims[a], PYNN_EINVAL);
        n *= dims[a];
    }
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || mask == NULL || x == NULL, PYNN_EINVAL);
    scale = (float)(1.0 / (1.0 - rate));
    /* the last axis is walked by the inner loop, the others by the outer index */
    inner = axis_len(rows, dims, ndim);
    outer = n / inner;

    /* outer rows (every axis but the last): each row of mask and y written by one thread;
     * an element's uniform depends on its noise index alone */
    PYNN_PARALLEL_FOR(pynn_threads_for(n < INT64_MAX / 8 ? n * 8 : n),   /* ~8 ops: the hash */
        for (t = 0; t < outer; t++) {
            /* the noise index of (i_0, ..., i_{ndim-1}, 0): t decomposed from the last outer
             * axis up, each kept axis contributing i_a times its noise-shape stride */
            const int64_t inner_step = broadcast[ndim] ? 0 : 1;
            int64_t rest = t, base = 0, stride = broadcast[ndim] ? 1 : inner, ax, j;
            float *yr = y + t * inner, *mr = mask + t * inner;
            const float *xr = x + t * inner;
            for (ax = ndim - 1; ax >= 0; ax--) {
                const int64_t len = axis_len(rows, dims, ax);
                const int64_t i = rest % len;
                rest /= len;
                if (!broadcast[ax]) {
                    base += i * stride;
                    stride *= len;
                }
            }
            for (j = 0; j < inner; j++) {              /* the last axis */
                const float u = pynn_uniform_at(key, (uint64_t)(base + j * inner_step));
                mr[j] = u >= rate_f ? scale : 0.0f;
                yr[j] = xr[j] * mr[j];
            }
        });
    return PYNN_OK;
}
