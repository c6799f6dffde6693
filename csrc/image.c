/* image.c -- the geometric image ops of Keras 3's preprocessing layers (csrc/pynn.h,
 * "geometric image ops"): affine resampling, resizing, flips, crops, and the random
 * per-image parameters of the augmentation layers.
 *
 * Every kernel walks the output pixels (image, row, column), each written by one thread
 * with its channels, from the input alone: nothing is summed across pixels, so the
 * results do not depend on the thread count.  Interpolation weights and coordinates are
 * computed in double, in the order pynn/backend/reference.py writes them.
 */
#include <math.h>
#include <string.h>
#include "internal.h"

/* The index the fill mode reads for integer position k of an axis of n (n >= 1), or -1
 * (constant: outside, read fill_value). */
static inline int64_t extend(int64_t k, int64_t n, int fill_mode) {
    if (k >= 0 && k < n) return k;
    switch (fill_mode) {
    case PYNN_FILL_REFLECT: {          /* d c b a | a b c d | d c b a: period 2n */
        int64_t m = k % (2 * n);
        if (m < 0) m += 2 * n;
        return m < n ? m : 2 * n - 1 - m;
    }
    case PYNN_FILL_WRAP: {
        int64_t m = k % n;
        return m < 0 ? m + n : m;
    }
    case PYNN_FILL_NEAREST:
        return k < 0 ? 0 : n - 1;
    default:                            /* constant */
        return -1;
    }
}

/* Coordinates far outside the image (a hostile transform, inf, NaN) are clamped to this
 * many image sizes away before they become integers: the fill modes are periodic or
 * constant out there, so nothing changes but the overflow. */
static inline double tame(double v, int64_t n) {
    const double lim = 4.0 * (double)n + 4.0;
    if (!(v == v)) return -lim;                 /* NaN: read the fill (constant) or an edge */
    return v < -lim ? -lim : v > lim ? lim : v;
}

static int image_sizes_ok(int64_t n, int64_t h, int64_t w, int64_t c) {
    return n >= 0 && h >= 0 && w >= 0 && c >= 0 && h <= INT32_MAX && w <= INT32_MAX &&
           c <= INT32_MAX && (h == 0 || w == 0 || c == 0 || n <= INT64_MAX / h / w / c);
}

/* Bilinear blend of four neighbours, channel by channel, in double: a NULL neighbour (outside
 * the image, fill mode "constant" or a pad) reads fill_value. */
static inline void blend4(float *out, const float *v00, const float *v01, const float *v10,
                          const float *v11, double w00, double w01, double w10, double w11,
                          int64_t c, float fill_value) {
    const double fv = (double)fill_value;
    int64_t ch;
    for (ch = 0; ch < c; ch++) {
        const double s = w00 * (v00 ? (double)v00[ch] : fv) + w01 * (v01 ? (double)v01[ch] : fv) +
                         w10 * (v10 ? (double)v10[ch] : fv) + w11 * (v11 ? (double)v11[ch] : fv);
        out[ch] = (float)s;
    }
}

int pynn_affine_transform(float *y, const float *x, const float *params, int64_t n, int64_t h,
                          int64_t w, int64_t c, int interpolation, int fill_mode,
                          float fill_value) {
    int64_t p;
    const int64_t pixels = n * h * w;
    PYNN_RETURN_IF(!image_sizes_ok(n, h, w, c), PYNN_EINVAL);
    PYNN_RETURN_IF(interpolation != PYNN_INTERP_BILINEAR && interpolation != PYNN_INTERP_NEAREST,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(fill_mode < PYNN_FILL_REFLECT || fill_mode > PYNN_FILL_NEAREST, PYNN_EINVAL);
    if (pixels == 0 || c == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL || params == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(pixels * c * 8),
        for (p = 0; p < pixels; p++) {
            const int64_t b = p / (h * w), i = (p / w) % h, j = p % w;
            const float *t = params + b * PYNN_IMAGE_PARAMS;
            const float *img = x + b * h * w * c;
            float *out = y + p * c;
            const double k = (double)t[6] * (double)j + (double)t[7] * (double)i + 1.0;
            const double xs = tame(((double)t[0] * (double)j + (double)t[1] * (double)i +
                                    (double)t[2]) / k, w);
            const double ys = tame(((double)t[3] * (double)j + (double)t[4] * (double)i +
                                    (double)t[5]) / k, h);
            int64_t ch;
            if (interpolation == PYNN_INTERP_NEAREST) {
                const int64_t r = extend((int64_t)floor(ys + 0.5), h, fill_mode);
                const int64_t q = extend((int64_t)floor(xs + 0.5), w, fill_mode);
                if (r < 0 || q < 0) {
                    for (ch = 0; ch < c; ch++) out[ch] = fill_value;
                } else {
                    memcpy(out, img + (r * w + q) * c, (size_t)c * sizeof(float));
                }
            } else {
                const double y0 = floor(ys), x0 = floor(xs);
                const double fy = ys - y0, fx = xs - x0;
                const double w00 = (1.0 - fy) * (1.0 - fx), w01 = (1.0 - fy) * fx;
                const double w10 = fy * (1.0 - fx), w11 = fy * fx;
                const int64_t r0 = extend((int64_t)y0, h, fill_mode);
                const int64_t r1 = extend((int64_t)y0 + 1, h, fill_mode);
                const int64_t q0 = extend((int64_t)x0, w, fill_mode);
                const int64_t q1 = extend((int64_t)x0 + 1, w, fill_mode);
                const float *v00 = r0 >= 0 && q0 >= 0 ? img + (r0 * w + q0) * c : NULL;
                const float *v01 = r0 >= 0 && q1 >= 0 ? img + (r0 * w + q1) * c : NULL;
                const float *v10 = r1 >= 0 && q0 >= 0 ? img + (r1 * w + q0) * c : NULL;
                const float *v11 = r1 >= 0 && q1 >= 0 ? img + (r1 * w + q1) * c : NULL;
                blend4(out, v00, v01, v10, v11, w00, w01, w10, w11, c, fill_value);
            }
        });
    return PYNN_OK;
}

/* The two window indices and the weight of the second for output position i of an axis
 * resized from `in` to `out` (bilinear, half-pixel centres, clamped). */
static inline void bilinear_axis(int64_t i, int64_t in, int64_t out, int64_t *a0, int64_t *a1,
                                 double *f) {
    double s = ((double)i + 0.5) * ((double)in / (double)out) - 0.5;
    double fl;
    if (s < 0.0) s = 0.0;
    if (s > (double)(in - 1)) s = (double)(in - 1);
    fl = floor(s);
    *a0 = (int64_t)fl;
    *a1 = *a0 + 1 < in ? *a0 + 1 : in - 1;
    *f = s - fl;
}

static inline int64_t nearest_axis(int64_t i, int64_t in, int64_t out) {
    const int64_t k = (int64_t)floor(((double)i + 0.5) * (double)in / (double)out);
    return k < in ? k : in - 1;
}

int pynn_resize(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                int64_t oh, int64_t ow, int64_t top, int64_t left, int64_t wh, int64_t ww,
                int interpolation, float fill_value) {
    int64_t p;
    PYNN_RETURN_IF(!image_sizes_ok(n, h, w, c) || !image_sizes_ok(n, oh, ow, c), PYNN_EINVAL);
    PYNN_RETURN_IF(wh < 1 || ww < 1 || wh > INT32_MAX || ww > INT32_MAX ||
                   top < -(int64_t)INT32_MAX || top > INT32_MAX || left < -(int64_t)INT32_MAX ||
                   left > INT32_MAX, PYNN_EINVAL);
    PYNN_RETURN_IF(interpolation != PYNN_INTERP_BILINEAR && interpolation != PYNN_INTERP_NEAREST,
                   PYNN_EINVAL);
    if (n * oh * ow == 0 || c == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || (x == NULL && h * w > 0), PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * 8),
        for (p = 0; p < n * oh * ow; p++) {
            const int64_t b = p / (oh * ow), i = (p / ow) % oh, j = p % ow;
            const float *img = x + b * h * w * c;
            float *out = y + p * c;
            int64_t ch;
            if (interpolation == PYNN_INTERP_NEAREST) {
                const int64_t r = top + nearest_axis(i, wh, oh);
                const int64_t q = left + nearest_axis(j, ww, ow);
                if (r < 0 || r >= h || q < 0 || q >= w) {
                    for (ch = 0; ch < c; ch++) out[ch] = fill_value;
                } else {
                    memcpy(out, img + (r * w + q) * c, (size_t)c * sizeof(float));
                }
            } else {
                int64_t r0, r1, q0, q1;
                double fy, fx;
                bilinear_axis(i, wh, oh, &r0, &r1, &fy);
                bilinear_axis(j, ww, ow, &q0, &q1, &fx);
                r0 += top; r1 += top; q0 += left; q1 += left;
                {
                    const double w00 = (1.0 - fy) * (1.0 - fx), w01 = (1.0 - fy) * fx;
                    const double w10 = fy * (1.0 - fx), w11 = fy * fx;
                    const int in_r0 = r0 >= 0 && r0 < h, in_r1 = r1 >= 0 && r1 < h;
                    const int in_q0 = q0 >= 0 && q0 < w, in_q1 = q1 >= 0 && q1 < w;
                    const float *v00 = in_r0 && in_q0 ? img + (r0 * w + q0) * c : NULL;
                    const float *v01 = in_r0 && in_q1 ? img + (r0 * w + q1) * c : NULL;
                    const float *v10 = in_r1 && in_q0 ? img + (r1 * w + q0) * c : NULL;
                    const float *v11 = in_r1 && in_q1 ? img + (r1 * w + q1) * c : NULL;
                    blend4(out, v00, v01, v10, v11, w00, w01, w10, w11, c, fill_value);
                }
            }
        });
    return PYNN_OK;
}

int pynn_flip(float *y, const float *x, const float *params, int64_t n, int64_t h, int64_t w,
              int64_t c, int horizontal, int vertical) {
    int64_t p;
    PYNN_RETURN_IF(!image_sizes_ok(n, h, w, c), PYNN_EINVAL);
    if (n * h * w == 0 || c == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL || y == x, PYNN_EINVAL);
    /* rows of the output: each copied by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * h * w * c),
        for (p = 0; p < n * h; p++) {
            const int64_t b = p / h, i = p % h;
            const int flip = params == NULL || params[b * PYNN_IMAGE_PARAMS] != 0.0f;
            const int64_t r = flip && vertical ? h - 1 - i : i;
            const float *src = x + (b * h + r) * w * c;
            float *dst = y + p * w * c;
            int64_t j;
            if (flip && horizontal) {
                for (j = 0; j < w; j++)
                    memcpy(dst + j * c, src + (w - 1 - j) * c, (size_t)c * sizeof(float));
            } else {
                memcpy(dst, src, (size_t)(w * c) * sizeof(float));
            }
        });
    return PYNN_OK;
}

int pynn_crop(float *y, const float *x, const float *params, int64_t n, int64_t h, int64_t w,
              int64_t c, int64_t oh, int64_t ow, int64_t top, int64_t left) {
    int64_t p, b;
    PYNN_RETURN_IF(!image_sizes_ok(n, h, w, c) || oh < 0 || ow < 0 || oh > h || ow > w,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(params == NULL && (top < 0 || left < 0 || top > h - oh || left > w - ow),
                   PYNN_EINVAL);
    if (n * oh * ow == 0 || c == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL, PYNN_EINVAL);
    if (params != NULL)        /* every offset checked before anything is written */
        for (b = 0; b < n; b++) {
            const float t = params[b * PYNN_IMAGE_PARAMS], l = params[b * PYNN_IMAGE_PARAMS + 1];
            PYNN_RETURN_IF(!(t >= 0.0f && t <= (float)(h - oh) && t == floorf(t)), PYNN_EINVAL);
            PYNN_RETURN_IF(!(l >= 0.0f && l <= (float)(w - ow) && l == floorf(l)), PYNN_EINVAL);
        }
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c),
        for (p = 0; p < n * oh; p++) {
            const int64_t bb = p / oh, i = p % oh;
            const int64_t t = params ? (int64_t)params[bb * PYNN_IMAGE_PARAMS] : top;
            const int64_t l = params ? (int64_t)params[bb * PYNN_IMAGE_PARAMS + 1] : left;
            memcpy(y + p * ow * c, x + ((bb * h + t + i) * w + l) * c,
                   (size_t)(ow * c) * sizeof(float));
        });
    return PYNN_OK;
}

int pynn_image_random(float *params, int64_t n, int64_t h, int64_t w, int64_t oh, int64_t ow,
                      int kind, const double *r, uint64_t seed, uint64_t counter) {
    const uint64_t key = pynn_random_key(seed, counter);
    const double pi = 3.14159265358979323846;
    int64_t b;
    PYNN_RETURN_IF(n < 0 || h < 0 || w < 0 || kind < 0 || kind >= PYNN_RANDOM_KINDS || r == NULL,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(n > INT64_MAX / PYNN_IMAGE_PARAMS, PYNN_EINVAL);
    PYNN_RETURN_IF(kind == PYNN_RANDOM_CROP && (oh < 0 || ow < 0 || oh > h || ow > w),
                   PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(params == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n * 64),
        for (b = 0; b < n; b++) {
            float *t = params + b * PYNN_IMAGE_PARAMS;
            const uint64_t e = (uint64_t)b * PYNN_IMAGE_PARAMS;
            const double u0 = (double)pynn_uniform_at(key, e);
            const double u1 = (double)pynn_uniform_at(key, e + 1);
            double m[PYNN_IMAGE_PARAMS] = {0, 0, 0, 0, 0, 0, 0, 0};
            int j;
            switch (kind) {
            case PYNN_RANDOM_ROTATION: {
                const double lo = r[0] * 360.0, hi = r[1] * 360.0;
                const double angle = (lo + u0 * (hi - lo)) * (pi / 180.0);
                const double cs = cos(angle), sn = sin(angle);
                const double cx = 0.5 * (double)(w - 1), cy = 0.5 * (double)(h - 1);
                m[0] = cs; m[1] = -sn; m[3] = sn; m[4] = cs;
                m[2] = cx - cx * m[0] - cy * m[1];
                m[5] = cy - cx * m[3] - cy * m[4];
                break;
            }
            case PYNN_RANDOM_ZOOM: {
                const double zh = (1.0 + r[0]) + u0 * ((1.0 + r[1]) - (1.0 + r[0]));
                const double zw = r[4] != 0.0 ? (1.0 + r[2]) + u1 * ((1.0 + r[3]) - (1.0 + r[2]))
                                              : zh;
                m[0] = zw; m[2] = 0.5 * (double)(w - 1) * (1.0 - zw);
                m[4] = zh; m[5] = 0.5 * (double)(h - 1) * (1.0 - zh);
                break;
            }
            case PYNN_RANDOM_TRANSLATION:
                m[0] = 1.0; m[4] = 1.0;
                m[5] = -((r[0] + u0 * (r[1] - r[0])) * (double)h);
                m[2] = -((r[2] + u1 * (r[3] - r[2])) * (double)w);
                break;
            case PYNN_RANDOM_FLIP:
                m[0] = u0 <= 0.5 ? 1.0 : 0.0;
                break;
            default: {                  /* crop */
                const double top = floor(u0 * (double)(h - oh + 1));
                const double left = floor(u1 * (double)(w - ow + 1));
                m[0] = top < (double)(h - oh) ? top : (double)(h - oh);
                m[1] = left < (double)(w - ow) ? left : (double)(w - ow);
                break;
            }
            }
            for (j = 0; j < PYNN_IMAGE_PARAMS; j++) t[j] = (float)m[j];
        });
    return PYNN_OK;
}
