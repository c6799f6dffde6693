/* conv.c -- im2col and col2im: a 2-D convolution as one GEMM.
 *
 * pynn convolves NHWC images with a Keras (KH, KW, C, F) kernel by packing every
 * output position's input window into one row of a matrix (im2col), so that the
 * forward pass is  Z = cols (N*OH*OW x KH*KW*C) @ W (KH*KW*C x F) + b  -- one call of
 * the fast GEMM with bias and activation in its epilogue -- and the backward pass is
 *   dW = cols^T dZ      (the GEMM's transpose flag, no copy)
 *   dX = col2im(dZ W^T) (the adjoint of im2col: window entries summed back).
 *
 * Window geometry (see pynn/backend/base.py): output (n, i, j) sees input rows
 * i*sh - pad_top + a, a in [0, KH), and columns j*sw - pad_left + b, b in [0, KW);
 * positions outside the input are zero padding.  Within a window row the KW
 * positions are KW*C consecutive floats of x, so an interior window row is one
 * memcpy.
 *
 * Determinism: im2col writes each row of cols from one thread.  col2im gathers: each
 * row of dx (one image row, all W*C values) is owned by one thread, which adds its
 * contributions in a fixed (a, j, b) order, so the sums do not depend on the thread
 * count.
 */
#include <string.h>
#include "internal.h"

static int conv_geometry_ok(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                            int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                            int64_t oh, int64_t ow) {
    return n >= 0 && h >= 0 && w >= 0 && c >= 0 && kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 &&
           pad_top >= 0 && pad_left >= 0 && oh >= 0 && ow >= 0;
}

/* cols (n*oh*ow x kh*kw*c) = the windows of x (n, h, w, c), zeros for padding. */
int pynn_im2col(float *cols, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                int64_t pad_left, int64_t oh, int64_t ow) {
    const int64_t k = kh * kw * c, span = kw * c;
    int64_t t;
    PYNN_RETURN_IF(!conv_geometry_ok(n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((cols == NULL || x == NULL) && n * oh * ow * k > 0, PYNN_EINVAL);
    /* output rows (image, i): each row of cols is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * k),
        for (t = 0; t < n * oh; t++) {
            const int64_t img = t / oh, i = t % oh;
            const float *ximg = x + img * h * w * c;
            int64_t j, a, b;
            for (j = 0; j < ow; j++) {                        /* output columns */
                float *dst = cols + (t * ow + j) * k;
                const int64_t q0 = j * sw - pad_left;
                for (a = 0; a < kh; a++) {                    /* window rows */
                    const int64_t r = i * sh - pad_top + a;
                    float *d = dst + a * span;
                    const float *xrow = ximg + r * w * c;
                    if (r < 0 || r >= h) {
                        memset(d, 0, (size_t)span * sizeof(float));
                    } else if (q0 >= 0 && q0 + kw <= w) {
                        memcpy(d, xrow + q0 * c, (size_t)span * sizeof(float));
                    } else {
                        for (b = 0; b < kw; b++) {            /* window columns, at an edge */
                            const int64_t q = q0 + b;
                            if (q < 0 || q >= w)
                                memset(d + b * c, 0, (size_t)c * sizeof(float));
                            else
                                memcpy(d + b * c, xrow + q * c, (size_t)c * sizeof(float));
                        }
                    }
                }
            }
        });
    return PYNN_OK;
}

/* dx (n, h, w, c) = col2im(cols): every entry of cols added onto the input position
 * it was copied from by im2col (padding entries are dropped).  dx is overwritten. */
int pynn_col2im(float *dx, const float *cols, int64_t n, int64_t h, int64_t w, int64_t c,
                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                int64_t pad_left, int64_t oh, int64_t ow) {
    const int64_t k = kh * kw * c, span = kw * c;
    int64_t t;
    PYNN_RETURN_IF(!conv_geometry_ok(n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((cols == NULL || dx == NULL) && n * h * w * c > 0, PYNN_EINVAL);
    /* input rows (image, r): each row of dx is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * k),
        for (t = 0; t < n * h; t++) {
            const int64_t img = t / h, r = t % h;
            float *drow = dx + t * w * c;
            int64_t a, j, b, e;
            memset(drow, 0, (size_t)(w * c) * sizeof(float));
            for (a = 0; a < kh; a++) {                        /* window rows that land on r */
                const int64_t shifted = r + pad_top - a;
                int64_t i;
                if (shifted < 0 || shifted % sh != 0) continue;
                i = shifted / sh;
                if (i >= oh) continue;
                for (j = 0; j < ow; j++) {                    /* output columns, in order */
                    const float *src = cols + ((img * oh + i) * ow + j) * k + a * span;
                    const int64_t q0 = j * sw - pad_left;
                    if (q0 >= 0 && q0 + kw <= w) {
                        float *d = drow + q0 * c;
                        for (e = 0; e < span; e++) d[e] += src[e];
                    } else {
                        for (b = 0; b < kw; b++) {            /* window columns, at an edge */
                            const int64_t q = q0 + b;
                            if (q < 0 || q >= w) continue;
                            for (e = 0; e < c; e++) drow[q * c + e] += src[b * c + e];
                        }
                    }
                }
            }
        });
    return PYNN_OK;
}
