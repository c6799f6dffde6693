/* pool.c -- max, average and global average pooling over NHWC images, forward and
 * backward.
 *
 * Window geometry as in conv.c: output (n, i, j) pools input rows i*sh - pad_top + a
 * (a in [0, PH)) and columns j*sw - pad_left + b (b in [0, PW)); positions outside the
 * input are padding, which max pooling treats as -inf and average pooling does not
 * count (Keras/TF's "same").  A window with no input position gives 0.
 *
 * These kernels move many bytes and do a few operations on each, so they are written to
 * read and write each array once, at the speed of a copy:
 * - channels are innermost (NHWC), so every loop ends in a contiguous run over C that the
 *   compiler vectorises; a window's running maximum or sum is kept for POOL_LANES channels
 *   at a time (in registers), not read and written back for every window position;
 * - the usual 2x2 windows at stride 2 have their own loops with the window unrolled, and
 *   AlexNet's 3x3 at stride 2 its own backward (a gather); these and the window loops are
 *   compiled once per instruction set (pool_kernel.h), this file keeps the geometry, the
 *   threads and which output goes where;
 * - max pooling's backward recomputes each window's maximum from x, with the forward's
 *   comparisons in the forward's order (so it is y's value bitwise, NaN included), rather
 *   than reading y as well: it finds the first window position holding the maximum.
 *
 * Determinism: forwards are parallel over output rows (one thread per row of y).
 * Backwards whose windows cannot overlap write each input row from one output row;
 * overlapping windows add dy into dx one image at a time (one thread per image), over the
 * windows in row-major order: 3x3/2 windows inside x (AlexNet's) by a gather per input
 * element (pool_kernel.h, backward_3x3s2), the others by a scatter.
 */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "gemm_internal.h"
#include "pool_internal.h"

#define POOL_C_BLOCK 64
#define POOL_LANES 16     /* channels of a window's running maximum or sum, in registers */

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

/* The window loops of the level in use (dispatch.c), taken once per call. */
static const pynn_pool_kernels *pool_kernels(void) {
    switch (pynn_level()) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_pool_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_pool_avx2;
#endif
    default:
        return &pynn_pool_generic;
    }
}

/* y (n, oh, ow, c) = max of x (n, h, w, c) over each window. */
int pynn_maxpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow) {
    const pynn_pool_kernels *kernels = pool_kernels();
    int64_t t;
    PYNN_RETURN_IF(!pool_geometry_ok(n, h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL) && n * oh * ow * c > 0, PYNN_EINVAL);
    if (pool_is_2x2_s2(h, w, ph, pw, sh, sw, pad_top, pad_left, oh, ow)) {
        /* output rows (image, i): each row of y is written by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * 4),
            for (t = 0; t < n * oh; t++) {
                const float *x0 = x + ((t / oh) * h + 2 * (t % oh)) * w * c;
                kernels->maxpool_2x2_row(y + t * ow * c, x0, x0 + w * c, ow, c);
            });
        return PYNN_OK;
    }
    /* output rows (image, i): each row of y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * ph * pw),
        for (t = 0; t < n * oh; t++) {
            int64_t r0, r1;
            window_range((t % oh) * sh - pad_top, ph, h, &r0, &r1);
            kernels->max_row(y + t * ow * c, x + (t / oh) * h * w * c, r0, r1, w, c, ow, pw,
                             sw, pad_left, t % oh + 1 < oh ? (sh < h - r1 ? sh : h - r1) : 0);
        });
    return PYNN_OK;
}

/* dx (n, h, w, c) = dy routed to the first maximum of each window, summed where windows
 * overlap (x and y are the forward's input and output: the argmax is the first window
 * position holding y, which is recomputed from x rather than read).
 * Windows that cannot overlap (strides >= pool size, the usual case) touch disjoint
 * inputs, so the output rows are spread over the threads; overlapping ones are summed
 * one image per thread, outputs in row-major order. */
/* The 2x2/2 backward's input positions no window covers (an odd last column or row):
 * zero.  d0, d1: input rows 2i and 2i+1 of image im, which the row's thread owns; the
 * image's last output row's thread also zeroes the rows below. */
static void zero_past_2x2_windows(float *dx, float *d0, float *d1, int64_t im, int64_t i,
                                  int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow) {
    if (2 * ow < w) {
        memset(d0 + 2 * ow * c, 0, (size_t)((w - 2 * ow) * c) * sizeof(float));
        memset(d1 + 2 * ow * c, 0, (size_t)((w - 2 * ow) * c) * sizeof(float));
    }
    if (i == oh - 1 && 2 * oh < h)
        memset(dx + (im * h + 2 * oh) * w * c, 0, (size_t)((h - 2 * oh) * w * c) * sizeof(float));
}

int pynn_maxpool2d_backward(float *dx, const float *x, const float *y, const float *dy,
                            int64_t n, int64_t h,
                            int64_t w, int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                            int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow) {
    const int nthreads = pynn_threads_for(n * oh * ow * c * ph * pw);
    const pynn_pool_kernels *kernels = pool_kernels();
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
                kernels->maxpool_2x2_row_backward(d0, d1, x + r, x + r + w * c, dy + t * ow * c,
                                                  ow, c);
                zero_past_2x2_windows(dx, d0, d1, im, i, h, w, c, oh, ow);
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
                    kernels->route_max(dx + im * h * w * c, x + im * h * w * c,
                                        dy + (t * ow + j) * c, r0, r1, q0, q1, w, c);
                }
            });
        return PYNN_OK;
    }
    if (ph == 3 && pw == 3 && sh == 2 && sw == 2 && pad_top == 0 && pad_left == 0 &&
        oh >= 1 && ow >= 1 && 2 * oh + 1 <= h && 2 * ow + 1 <= w && n * c > 0) {
        /* 3x3/2 windows inside x: a gather, with each window's argmax kept (oh ow c int32
         * a thread) -- images: each image of dx is written by one thread */
        const int nt = n > 1 ? nthreads : 1;
        const int64_t per = (oh * ow * c + 15) / 16 * 16;
        float *base;
        void *owned;
        int t;
        const int status = pynn_gemm_workspace_acquire(&base, &owned, (size_t)(nt * per));
        if (status != PYNN_OK) return status;
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nt) if (nt > 1)
#endif
        for (t = 0; t < nt; t++) {                            /* threads: runs of images */
            /* the image index is the thread's own: the function's img is shared between
             * the threads of this region, and with it the threads skipped each other's
             * images, leaving them unwritten (nondeterministic dx; found by a family
             * network's first step against torch, bench/compare.py --only families) */
            int64_t im;
            for (im = n * t / nt; im < n * (t + 1) / nt; im++)
                kernels->backward_3x3s2(dx + im * h * w * c, x + im * h * w * c,
                                        dy + im * oh * ow * c,
                                        (int32_t *)(void *)(base + t * per), h, w, c, oh, ow,
                                        im + 1 < n * (t + 1) / nt ? x + (im + 1) * h * w * c
                                                                  : NULL);
        }
        pynn_gemm_workspace_release(base, owned);
        return PYNN_OK;
    }
    /* images: each image of dx is written by one thread */
    PYNN_PARALLEL_FOR(n > 1 ? nthreads : 1,
        for (img = 0; img < n; img++) {
            float *dimg = dx + img * h * w * c;
            int64_t i, j, zeroed = 0;                         /* rows [0, zeroed) are */
            for (i = 0; i < oh; i++) {                        /* output rows, in order */
                int64_t r0, r1;
                window_range(i * sh - pad_top, ph, h, &r0, &r1);
                /* zero the rows this output row reaches first just before it adds to
                 * them, while they are in the cache */
                if (r1 > zeroed) {
                    memset(dimg + zeroed * w * c, 0, (size_t)((r1 - zeroed) * w * c) * sizeof(float));
                    zeroed = r1;
                }
                for (j = 0; j < ow; j++) {                    /* output columns, in order */
                    int64_t q0, q1;
                    window_range(j * sw - pad_left, pw, w, &q0, &q1);
                    if (r0 == r1 || q0 == q1) continue;
                    const int64_t o = ((img * oh + i) * ow + j) * c;
                    kernels->route_max(dimg, x + img * h * w * c, dy + o, r0, r1, q0, q1, w, c);
                }
            }
            if (zeroed < h)                                   /* rows no window reaches */
                memset(dimg + zeroed * w * c, 0, (size_t)((h - zeroed) * w * c) * sizeof(float));
        });
    return PYNN_OK;
}

/* y (n, oh, ow, c) = mean of x over the input positions of each window. */
int pynn_avgpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow) {
    const pynn_pool_kernels *kernels = pool_kernels();
    int64_t t;
    PYNN_RETURN_IF(!pool_geometry_ok(n, h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((y == NULL || x == NULL) && n * oh * ow * c > 0, PYNN_EINVAL);
    if (pool_is_2x2_s2(h, w, ph, pw, sh, sw, pad_top, pad_left, oh, ow)) {
        /* output rows (image, i): each row of y is written by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * 4),
            for (t = 0; t < n * oh; t++) {
                const float *x0 = x + ((t / oh) * h + 2 * (t % oh)) * w * c;
                kernels->avgpool_2x2_row(y + t * ow * c, x0, x0 + w * c, ow, c);
            });
        return PYNN_OK;
    }
    /* output rows (image, i): each row of y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * ph * pw),
        for (t = 0; t < n * oh; t++) {
            const int64_t img = t / oh, i = t % oh;
            int64_t r0, r1, j;
            window_range(i * sh - pad_top, ph, h, &r0, &r1);
            for (j = 0; j < ow; j++) {                        /* output columns */
                float *yo = y + (t * ow + j) * c;
                int64_t q0, q1;
                window_range(j * sw - pad_left, pw, w, &q0, &q1);
                if (r0 == r1 || q0 == q1)
                    memset(yo, 0, (size_t)c * sizeof(float));
                else
                    kernels->window_mean(yo, x + img * h * w * c, r0, r1, q0, q1, w, c);
            }
        });
    return PYNN_OK;
}

/* dx (n, h, w, c) = each dy spread evenly over the input positions of its window. */
int pynn_avgpool2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                            int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                            int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow) {
    const pynn_pool_kernels *kernels = pool_kernels();
    int64_t img;
    PYNN_RETURN_IF(!pool_geometry_ok(n, h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || dy == NULL) && n * h * w * c > 0, PYNN_EINVAL);
    if (pool_is_2x2_s2(h, w, ph, pw, sh, sw, pad_top, pad_left, oh, ow)) {
        int64_t t;
        /* output rows (image, i): each owns input rows 2i and 2i+1, as in the max's */
        PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * c * 4),
            for (t = 0; t < n * oh; t++) {
                const int64_t im = t / oh, i = t % oh;
                float *d0 = dx + (im * h + 2 * i) * w * c, *d1 = d0 + w * c;
                kernels->avgpool_2x2_row_backward(d0, d1, dy + t * ow * c, ow, c);
                zero_past_2x2_windows(dx, d0, d1, im, i, h, w, c, oh, ow);
            });
        return PYNN_OK;
    }
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
            float *restrict yo = y + img * c;
            int64_t p, e;
            memset(yo, 0, (size_t)c * sizeof(float));
            for (p = 0; p + 4 <= hw; p += 4) {                /* positions, in order: four per */
                const float *restrict a = x + (img * hw + p) * c;    /* load/store of yo */
                const float *restrict b = a + c, *restrict d = b + c, *restrict f = d + c;
                for (e = 0; e < c; e++) yo[e] = (((yo[e] + a[e]) + b[e]) + d[e]) + f[e];
            }
            for (; p < hw; p++) {                             /* the last positions */
                const float *restrict xs = x + (img * hw + p) * c;
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
            float *restrict dimg = dx + img * hw * c;
            int64_t p, e;
            for (e = 0; e < c; e++) dimg[e] = dy[img * c + e] / (float)hw;
            for (p = 1; p < hw; p++)                          /* positions: copies of the first */
                for (e = 0; e < c; e++) dimg[p * c + e] = dimg[e];
        });
    return PYNN_OK;
}
