/* pixel.c -- the pixel-value preprocessing kernels (Rescaling, Normalization,
 * RandomContrast, RandomBrightness; csrc/pynn.h, "pixel preprocessing").
 *
 * Why these are kernels of their own and not merges or scales: the per-channel affine map
 * and the normalization read per-channel coefficients (a broadcast the merges lack), and the
 * random layers draw one factor per image from the counter-based generator of dropout.c, so
 * the draws are a pure function of (seed, step, image index): any thread may handle any
 * image, and the NumPy reference and the CUDA kernels draw the very same numbers.
 *
 * Determinism: each image (or each row of the outer loop) is handled by one thread, and the
 * one sum (a channel's mean over an image's positions) runs in position order in double.
 */
#include <math.h>
#include "internal.h"

/* Channel blocks whose sums live on the stack in the contrast kernels. */
#define PIXEL_CHANNEL_BLOCK 64

static int sizes_ok(int64_t a, int64_t b, int64_t c) {
    if (a < 0 || b < 0 || c < 0) return 0;
    if (b != 0 && a > INT64_MAX / b) return 0;
    if (c != 0 && a * b > INT64_MAX / c) return 0;
    return 1;
}

static inline float clip_value(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

int pynn_channel_affine(float *y, const float *x, const float *scale, const float *offset,
                        int64_t outer, int64_t c, int64_t inner) {
    int64_t t;
    PYNN_RETURN_IF(!sizes_ok(outer, c, inner), PYNN_EINVAL);
    if (outer * c * inner == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL || scale == NULL, PYNN_EINVAL);
    /* rows (o, k) of `inner` values: each written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(outer * c * inner * 2),
        for (t = 0; t < outer * c; t++) {
            const int64_t k = t % c;
            const float s = scale[k], b = offset != NULL ? offset[k] : 0.0f;
            const float *xr = x + t * inner;
            float *yr = y + t * inner;
            int64_t i;
            for (i = 0; i < inner; i++) yr[i] = xr[i] * s + b;
        });
    return PYNN_OK;
}

int pynn_normalize(float *y, const float *x, const float *mean, const float *variance,
                   int64_t outer, int64_t c, int64_t inner, int invert, float epsilon) {
    int64_t t;
    PYNN_RETURN_IF(!sizes_ok(outer, c, inner) || (invert != 0 && invert != 1), PYNN_EINVAL);
    if (outer * c * inner == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL || variance == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(outer * c * inner * 2),
        for (t = 0; t < outer * c; t++) {
            const int64_t k = t % c;
            const float sd = sqrtf(variance[k]);
            const float d = sd > epsilon ? sd : epsilon;     /* max(sqrt(var), eps); NaN: eps */
            const float m = mean != NULL ? mean[k] : 0.0f;
            const float *xr = x + t * inner;
            float *yr = y + t * inner;
            int64_t i;
            if (invert)
                for (i = 0; i < inner; i++) yr[i] = m + xr[i] * d;
            else
                for (i = 0; i < inner; i++) yr[i] = (xr[i] - m) / d;
        });
    return PYNN_OK;
}

/* The channel means of image `img` for channels k0 .. k0 + nk - 1 (nk <= the block). */
static void channel_means(float *means, const float *xi, int64_t hw, int64_t c, int64_t k0,
                          int64_t nk) {
    double sums[PIXEL_CHANNEL_BLOCK];
    int64_t p, k;
    for (k = 0; k < nk; k++) sums[k] = 0.0;
    for (p = 0; p < hw; p++)
        for (k = 0; k < nk; k++) sums[k] += (double)xi[p * c + k0 + k];
    for (k = 0; k < nk; k++) means[k] = (float)(sums[k] / (double)hw);
}

int pynn_random_contrast(float *y, float *factors, const float *x, int64_t n, int64_t hw,
                         int64_t c, uint64_t seed, uint64_t counter, double lower, double upper,
                         float vmin, float vmax) {
    const uint64_t key = pynn_random_key(seed, counter);
    const float lo = (float)(1.0 - lower), hi = (float)(1.0 + upper);
    int64_t img;
    PYNN_RETURN_IF(!sizes_ok(n, hw, c) || hw < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(!isfinite(lo) || !isfinite(hi), PYNN_EINVAL);
    PYNN_RETURN_IF(!(vmin <= vmax), PYNN_EINVAL);
    if (n * hw * c == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || factors == NULL || x == NULL, PYNN_EINVAL);
    /* images: each written by one thread; its factor depends on its index alone */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * hw * c * 4),
        for (img = 0; img < n; img++) {
            const float f = lo + pynn_uniform_at(key, (uint64_t)img) * (hi - lo);
            const float *xi = x + img * hw * c;
            float *yi = y + img * hw * c;
            float means[PIXEL_CHANNEL_BLOCK];
            int64_t k0, p, k;
            factors[img] = f;
            for (k0 = 0; k0 < c; k0 += PIXEL_CHANNEL_BLOCK) {
                const int64_t nk = c - k0 < PIXEL_CHANNEL_BLOCK ? c - k0 : PIXEL_CHANNEL_BLOCK;
                channel_means(means, xi, hw, c, k0, nk);
                for (p = 0; p < hw; p++)
                    for (k = 0; k < nk; k++) {
                        const int64_t e = p * c + k0 + k;
                        yi[e] = clip_value((xi[e] - means[k]) * f + means[k], vmin, vmax);
                    }
            }
        });
    return PYNN_OK;
}

int pynn_random_contrast_backward(float *dx, const float *x, const float *factors,
                                  const float *dy, int64_t n, int64_t hw, int64_t c,
                                  float vmin, float vmax) {
    int64_t img;
    PYNN_RETURN_IF(!sizes_ok(n, hw, c) || hw < 1 || !(vmin <= vmax), PYNN_EINVAL);
    if (n * hw * c == 0) return PYNN_OK;
    PYNN_RETURN_IF(dx == NULL || x == NULL || factors == NULL || dy == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * hw * c * 6),
        for (img = 0; img < n; img++) {
            const float f = factors[img];
            const float *xi = x + img * hw * c, *gi = dy + img * hw * c;
            float *di = dx + img * hw * c;
            float means[PIXEL_CHANNEL_BLOCK], shared[PIXEL_CHANNEL_BLOCK];
            double sums[PIXEL_CHANNEL_BLOCK];
            int64_t k0, p, k;
            for (k0 = 0; k0 < c; k0 += PIXEL_CHANNEL_BLOCK) {
                const int64_t nk = c - k0 < PIXEL_CHANNEL_BLOCK ? c - k0 : PIXEL_CHANNEL_BLOCK;
                channel_means(means, xi, hw, c, k0, nk);
                /* g = dy where the value was not clipped (vmin <= v <= vmax), else 0 */
                for (k = 0; k < nk; k++) sums[k] = 0.0;
                for (p = 0; p < hw; p++)
                    for (k = 0; k < nk; k++) {
                        const int64_t e = p * c + k0 + k;
                        const float v = (xi[e] - means[k]) * f + means[k];
                        const float g = v >= vmin && v <= vmax ? gi[e] : 0.0f;
                        di[e] = g;
                        sums[k] += (double)g;
                    }
                /* dx_j = f g_j + (1 - f) / hw sum_i g_i  (the mean's share) */
                for (k = 0; k < nk; k++)
                    shared[k] = (float)((1.0 - (double)f) * sums[k] / (double)hw);
                for (p = 0; p < hw; p++)
                    for (k = 0; k < nk; k++) {
                        const int64_t e = p * c + k0 + k;
                        di[e] = di[e] * f + shared[k];
                    }
            }
        });
    return PYNN_OK;
}

int pynn_random_brightness(float *y, float *mask, const float *x, int64_t n, int64_t per_image,
                           uint64_t seed, uint64_t counter, double lower, double upper,
                           float vmin, float vmax) {
    const uint64_t key = pynn_random_key(seed, counter);
    const float lo = (float)lower, hi = (float)upper, range = vmax - vmin;
    int64_t img;
    PYNN_RETURN_IF(!sizes_ok(n, per_image, 1), PYNN_EINVAL);
    PYNN_RETURN_IF(!(lower <= upper) || !isfinite(lo) || !isfinite(hi), PYNN_EINVAL);
    PYNN_RETURN_IF(!(vmin <= vmax) || !isfinite(range), PYNN_EINVAL);
    if (n * per_image == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * per_image * 2),
        for (img = 0; img < n; img++) {
            const float delta = (lo + pynn_uniform_at(key, (uint64_t)img) * (hi - lo)) * range;
            const float *xi = x + img * per_image;
            float *yi = y + img * per_image;
            float *mi = mask != NULL ? mask + img * per_image : NULL;
            int64_t e;
            for (e = 0; e < per_image; e++) {
                const float v = xi[e] + delta;
                if (mi != NULL) mi[e] = v >= vmin && v <= vmax ? 1.0f : 0.0f;
                yi[e] = clip_value(v, vmin, vmax);
            }
        });
    return PYNN_OK;
}
