/* pool.c -- max, average and global average pooling over NHWC images, forward and
 * backward.
 *
 * Window geometry as in conv.c: output (n, i, j) pools input rows i*sh - pad_top + a
 * (a in [0, PH)) and columns j*sw - pad_left + b (b in [0, PW)); positions outside the
 * input are padding, which max pooling treats as -inf and average pooling does not
 * count (Keras/TF's "same").  A window with no input position gives 0.
 *
 * Channels are innermost (NHWC), so every loop ends in a contiguous run over C that
 * the compiler vectorises; max pooling's backward keeps a running maximum and its
 * position per channel, in blocks of POOL_C_BLOCK channels on the stack.
 *
 * Determinism: forwards are parallel over output rows (one thread per row of y).
 * Backwards scatter dy onto dx one image at a time (one thread per image, outputs
 * visited in row-major order), so overlapping windows add in a fixed order.
 */
#include <math.h>
#include <string.h>
#include "internal.h"

#define POOL_C_BLOCK 64

static int pool_geometry_ok(int64_t n, int64_t h, int64_t w, int64_t c, int64_t ph, int64_t pw,
                            int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                            int64_t oh, int64_t ow) {
    return n >= 0 && h >= 0 && w >= 0 && c >= 0 && ph >= 1 && pw >= 1 && sh >= 1 && sw >= 1 &&
           pad_top >= 0 && pad_left >= 0 && oh >= 0 && ow >= 0;
}

/* The input rows [*lo, *hi) of a window starting at `start` of `size` positions. */
static inline void window_range(int64_t start, int64_t size, int64_t extent, int64_t *lo,
                                int64_t *hi) {
    *lo = start < 0 ? 0 : start;
    *hi = start + size > extent ? extent : start + size;
    if (*hi < *lo) *hi = *lo;
}

/* The usual max pooling, 2x2 windows at stride 2 that all lie inside the input
 * (no padding): handled by the loops below with the window unrolled, channels innermost
 * (same comparisons, in the same order, as the general loops). */
static int pool_is_2x2_s2(int64_t h, int64_t w, int64_t ph, int64_t pw, int64_t sh,
                          int64_t sw, int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow) {
    return ph == 2 && pw == 2 && sh == 2 && sw == 2 && pad_top == 0 && pad_left == 0 &&
           oh >= 1 && ow >= 1 && 2 * oh <= h && 2 * ow <= w;
}

/* One output row of the 2x2/2 max: yrow (ow x c) from input rows x0, x1. */
static inline void maxpool_2x2_row(float *restrict yrow, const float *restrict x0,
                                   const float *restrict x1, int64_t ow, int64_t c) {
    int64_t j, e;
    for (j = 0; j < ow; j++) {                            /* output columns */
        const float *restrict a = x0 + 2 * j * c, *restrict b = a + c;
        const float *restrict p = x1 + 2 * j * c, *restrict q = p + c;
        float *restrict yo = yrow + j * c;
        for (e = 0; e < c; e++) {                         /* channels */
            float m = a[e];
            m = b[e] > m ? b[e] : m;
            m = p[e] > m ? p[e] : m;
            m = q[e] > m ? q[e] : m;
            yo[e] = m;
        }
    }
}

/* The backward of one output row of the 2x2/2 max: each dy to the first window position
 * (row-major) that holds the maximum, 0 to the others; writes all of the two input
 * rows' windowed columns. */
static inline void maxpool_2x2_row_backward(float *restrict d0, float *restrict d1,
                                            const float *restrict x0, const float *restrict x1,
                                            const float *restrict yrow,
                                            const float *restrict dyrow, int64_t ow,
                                            int64_t c) {
    int64_t j, e;
    for (j = 0; j < ow; j++) {                            /* output columns */
        const int64_t o = 2 * j * c;
        for (e = 0; e < c; e++) {                         /* channels */
            const float m = yrow[j * c + e], g = dyrow[j * c + e];
            /* bitwise, not short-circuit: ties are common and random, no branches */
            const int ea = x0[o + e] == m;
            const int eb = (x0[o + c + e] == m) & !ea;
            const int ep = (x1[o + e] == m) & !(ea | eb);
            const int eq = (x1[o + c + e] == m) & !(ea | eb | ep);
            d0[o + e] = ea ? g : 0.0f;
            d0[o + c + e] = eb ? g : 0.0f;
            d1[o + e] = ep ? g : 0.0f;
            d1[o + c + e] = eq ? g : 0.0f;
        }
    }
}

/* y (n, oh, ow, c) = max of x (n, h, w, c) over each window. */
int pynn_maxpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow) {
    int64_t t;
    PYNN_RETURN_IF(!pool_geometry_ok(n, h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL) && n * oh * ow * c > 0, PYNN_EINVAL);
    if (pool_is_2x2_s2(h, w, ph, pw, sh, sw, pad_top, pad_left, oh, ow)) {
        /* output rows (image, i): each row of y is written by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * 4),
            for (t = 0; t < n * oh; t++) {
                const float *x0 = x + ((t / oh) * h + 2 * (t % oh)) * w * c;
                maxpool_2x2_row(y + t * ow * c, x0, x0 + w * c, ow, c);
            });
        return PYNN_OK;
    }
    /* output rows (image, i): each row of y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * ph * pw),
        for (t = 0; t < n * oh; t++) {
            const int64_t img = t / oh, i = t % oh;
            int64_t r0, r1, j, r, q, e;
            window_range(i * sh - pad_top, ph, h, &r0, &r1);
            for (j = 0; j < ow; j++) {                        /* output columns */
                float *yo = y + (t * ow + j) * c;
                int64_t q0, q1;
                window_range(j * sw - pad_left, pw, w, &q0, &q1);
                if (r0 == r1 || q0 == q1) {
                    memset(yo, 0, (size_t)c * sizeof(float));
                    continue;
                }
                memcpy(yo, x + ((img * h + r0) * w + q0) * c, (size_t)c * sizeof(float));
                for (r = r0; r < r1; r++)                     /* window rows */
                    for (q = r == r0 ? q0 + 1 : q0; q < q1; q++) {   /* window columns */
                        const float *restrict xs = x + ((img * h + r) * w + q) * c;
                        float *restrict ym = yo;
                        for (e = 0; e < c; e++) ym[e] = xs[e] > ym[e] ? xs[e] : ym[e];
                    }
            }
        });
    return PYNN_OK;
}

/* Adds each channel of g (c,) onto dimg at the first position of the window (rows
 * [r0, r1) x columns [q0, q1) of one image, w columns, c channels) where ximg equals the
 * window's maximum ymax (c,), the forward's output; the other window positions get
 * + 0.  Two passes of selects over the window, channels innermost (the data never
 * steers a branch: ties, e.g. the zeros after a ReLU, are common and random). */
static void route_to_window_max(float *restrict dimg, const float *restrict ximg,
                                const float *restrict ymax, const float *restrict g, int64_t r0,
                                int64_t r1, int64_t q0, int64_t q1, int64_t w, int64_t c) {
    int32_t first[POOL_C_BLOCK];
    float grad[POOL_C_BLOCK];
    int64_t r, q, e, c0;
    for (c0 = 0; c0 < c; c0 += POOL_C_BLOCK) {            /* channel blocks */
        const int64_t cb = c - c0 < POOL_C_BLOCK ? c - c0 : POOL_C_BLOCK;
        int32_t pos = 0;
        for (e = 0; e < cb; e++) {
            first[e] = INT32_MAX;
            grad[e] = g[c0 + e];
        }
        for (r = r0; r < r1; r++)                         /* window rows: find the first max */
            for (q = q0; q < q1; q++, pos++) {            /* window columns */
                const float *xs = ximg + (r * w + q) * c + c0;
                for (e = 0; e < cb; e++) {
                    const int32_t candidate = xs[e] == ymax[c0 + e] ? pos : INT32_MAX;
                    first[e] = candidate < first[e] ? candidate : first[e];
                }
            }
        pos = 0;
        for (r = r0; r < r1; r++)                         /* window rows: route the gradient */
            for (q = q0; q < q1; q++, pos++) {            /* window columns */
                float *restrict ds = dimg + (r * w + q) * c + c0;
                for (e = 0; e < cb; e++) {
                    const float add = first[e] == pos ? grad[e] : 0.0f;
                    ds[e] += add;
                }
            }
    }
}

/* dx (n, h, w, c) = dy routed to the first maximum of each window, summed where windows
 * overlap (x and y are the forward's input and output: the argmax is the first window
 * position holding y).
 * Windows that cannot overlap (strides >= pool size, the usual case) touch disjoint
 * inputs, so the output rows are spread over the threads; overlapping ones are summed
 * one image per thread, outputs in row-major order. */
int pynn_maxpool2d_backward(float *dx, const float *x, const float *y, const float *dy,
                            int64_t n, int64_t h,
                            int64_t w, int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                            int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow) {
    const int nthreads = pynn_threads_for(n * oh * ow * c * ph * pw);
    int64_t t, img;
    (void)nthreads;                               /* unused when built without OpenMP */
    PYNN_RETURN_IF(!pool_geometry_ok(n, h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || x == NULL || y == NULL || dy == NULL) && n * h * w * c > 0,
                   PYNN_EINVAL);
    if (pool_is_2x2_s2(h, w, ph, pw, sh, sw, pad_top, pad_left, oh, ow)) {
        /* output rows (image, i): each owns input rows 2i and 2i+1 (all their windowed
         * columns written, a last odd column zeroed); a last odd input row is zeroed by
         * the image's last output row */
        PYNN_PARALLEL_FOR(nthreads,
            for (t = 0; t < n * oh; t++) {
                const int64_t im = t / oh, i = t % oh;
                const int64_t r = (im * h + 2 * i) * w * c;
                float *d0 = dx + r, *d1 = d0 + w * c;
                maxpool_2x2_row_backward(d0, d1, x + r, x + r + w * c, y + t * ow * c,
                                         dy + t * ow * c, ow, c);
                if (2 * ow < w) {
                    memset(d0 + 2 * ow * c, 0, (size_t)((w - 2 * ow) * c) * sizeof(float));
                    memset(d1 + 2 * ow * c, 0, (size_t)((w - 2 * ow) * c) * sizeof(float));
                }
                if (i == oh - 1 && 2 * oh < h)
                    memset(dx + (im * h + 2 * oh) * w * c, 0,
                           (size_t)((h - 2 * oh) * w * c) * sizeof(float));
            });
        return PYNN_OK;
    }
    if (sh >= ph && sw >= pw) {
        /* input rows: zeroed by one thread each */
        PYNN_PARALLEL_FOR(nthreads,
            for (t = 0; t < n * h; t++) memset(dx + t * w * c, 0, (size_t)(w * c) * sizeof(float)););
        /* output rows (image, i): their windows are disjoint, so each input element is
         * written by one thread */
        PYNN_PARALLEL_FOR(nthreads,
            for (t = 0; t < n * oh; t++) {
                const int64_t im = t / oh, i = t % oh;
                int64_t r0, r1, j;
                window_range(i * sh - pad_top, ph, h, &r0, &r1);
                if (r0 == r1) continue;
                for (j = 0; j < ow; j++) {                    /* output columns */
                    int64_t q0, q1;
                    window_range(j * sw - pad_left, pw, w, &q0, &q1);
                    if (q0 == q1) continue;
                    route_to_window_max(dx + im * h * w * c, x + im * h * w * c,
                                        y + (t * ow + j) * c, dy + (t * ow + j) * c, r0, r1, q0, q1,
                                        w, c);
                }
            });
        return PYNN_OK;
    }
    /* images: each image of dx is written by one thread */
    PYNN_PARALLEL_FOR(n > 1 ? nthreads : 1,
        for (img = 0; img < n; img++) {
            float *dimg = dx + img * h * w * c;
            int64_t i, j;
            memset(dimg, 0, (size_t)(h * w * c) * sizeof(float));
            for (i = 0; i < oh; i++) {                        /* output rows, in order */
                int64_t r0, r1;
                window_range(i * sh - pad_top, ph, h, &r0, &r1);
                for (j = 0; j < ow; j++) {                    /* output columns, in order */
                    int64_t q0, q1;
                    window_range(j * sw - pad_left, pw, w, &q0, &q1);
                    if (r0 == r1 || q0 == q1) continue;
                    const int64_t o = ((img * oh + i) * ow + j) * c;
                    route_to_window_max(dimg, x + img * h * w * c, y + o, dy + o, r0, r1, q0, q1, w, c);
                }
            }
        });
    return PYNN_OK;
}

/* y (n, oh, ow, c) = mean of x over the input positions of each window. */
int pynn_avgpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow) {
    int64_t t;
    PYNN_RETURN_IF(!pool_geometry_ok(n, h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL) && n * oh * ow * c > 0, PYNN_EINVAL);
    /* output rows (image, i): each row of y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * ph * pw),
        for (t = 0; t < n * oh; t++) {
            const int64_t img = t / oh, i = t % oh;
            int64_t r0, r1, j, r, q, e;
            window_range(i * sh - pad_top, ph, h, &r0, &r1);
            for (j = 0; j < ow; j++) {                        /* output columns */
                float *yo = y + (t * ow + j) * c;
                int64_t q0, q1;
                float count;
                window_range(j * sw - pad_left, pw, w, &q0, &q1);
                memset(yo, 0, (size_t)c * sizeof(float));
                if (r0 == r1 || q0 == q1) continue;
                for (r = r0; r < r1; r++)                     /* window rows */
                    for (q = q0; q < q1; q++) {               /* window columns */
                        const float *xs = x + ((img * h + r) * w + q) * c;
                        for (e = 0; e < c; e++) yo[e] += xs[e];
                    }
                count = (float)((r1 - r0) * (q1 - q0));
                for (e = 0; e < c; e++) yo[e] /= count;
            }
        });
    return PYNN_OK;
}

/* dx (n, h, w, c) = each dy spread evenly over the input positions of its window. */
int pynn_avgpool2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                            int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                            int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow) {
    int64_t img;
    PYNN_RETURN_IF(!pool_geometry_ok(n, h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || dy == NULL) && n * h * w * c > 0, PYNN_EINVAL);
    /* images: each image of dx is written by one thread */
    PYNN_PARALLEL_FOR(n > 1 ? pynn_threads_for(n * oh * ow * c * ph * pw) : 1,
        for (img = 0; img < n; img++) {
            float *dimg = dx + img * h * w * c;
            float share[POOL_C_BLOCK];
            int64_t i, j, r, q, e, c0;
            memset(dimg, 0, (size_t)(h * w * c) * sizeof(float));
            for (i = 0; i < oh; i++) {                        /* output rows, in order */
                int64_t r0, r1;
                window_range(i * sh - pad_top, ph, h, &r0, &r1);
                for (j = 0; j < ow; j++) {                    /* output columns, in order */
                    const float *g = dy + ((img * oh + i) * ow + j) * c;
                    int64_t q0, q1;
                    float count;
                    window_range(j * sw - pad_left, pw, w, &q0, &q1);
                    if (r0 == r1 || q0 == q1) continue;
                    count = (float)((r1 - r0) * (q1 - q0));
                    for (c0 = 0; c0 < c; c0 += POOL_C_BLOCK) {      /* channel blocks */
                        const int64_t cb = c - c0 < POOL_C_BLOCK ? c - c0 : POOL_C_BLOCK;
                        for (e = 0; e < cb; e++) share[e] = g[c0 + e] / count;
                        for (r = r0; r < r1; r++)             /* window rows */
                            for (q = q0; q < q1; q++) {       /* window columns */
                                float *d = dimg + (r * w + q) * c + c0;
                                for (e = 0; e < cb; e++) d[e] += share[e];
                            }
                    }
                }
            }
        });
    return PYNN_OK;
}

/* y (n, c) = mean of x (n, h, w, c) over h and w (the positions summed in order). */
int pynn_global_avgpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w,
                                  int64_t c) {
    const int64_t hw = h * w;
    int64_t img;
    PYNN_RETURN_IF(n < 0 || h < 1 || w < 1 || c < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL) && n * c > 0, PYNN_EINVAL);
    /* images: each row of y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * hw * c),
        for (img = 0; img < n; img++) {
            float *yo = y + img * c;
            int64_t p, e;
            memset(yo, 0, (size_t)c * sizeof(float));
            for (p = 0; p < hw; p++) {                        /* positions, in order */
                const float *xs = x + (img * hw + p) * c;
                for (e = 0; e < c; e++) yo[e] += xs[e];
            }
            for (e = 0; e < c; e++) yo[e] /= (float)hw;
        });
    return PYNN_OK;
}

/* dx (n, h, w, c) = dy (n, c) / (h * w) at every position. */
int pynn_global_avgpool2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                                   int64_t c) {
    const int64_t hw = h * w;
    int64_t img;
    PYNN_RETURN_IF(n < 0 || h < 1 || w < 1 || c < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || dy == NULL) && n * c > 0, PYNN_EINVAL);
    /* images: each image of dx is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * hw * c),
        for (img = 0; img < n; img++) {
            float *dimg = dx + img * hw * c;
            int64_t p, e;
            for (e = 0; e < c; e++) dimg[e] = dy[img * c + e] / (float)hw;
            for (p = 1; p < hw; p++) memcpy(dimg + p * c, dimg, (size_t)c * sizeof(float));
        });
    return PYNN_OK;
}
