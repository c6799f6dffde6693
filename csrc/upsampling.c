/* upsampling.c -- Conv2DTranspose, the backward of UpSampling2D / UpSampling1D, and the
 * window copy behind ZeroPadding2D and Cropping2D (csrc/pynn.h, "transposed convolution,
 * upsampling, padding, cropping").
 *
 * The transposed convolution is the adjoint of a convolution, and is computed by the
 * convolution's own kernels with the roles swapped.  Call C the convolution (pynn.h's
 * window geometry) whose input is the transposed convolution's OUTPUT (n, oh, ow, f) and
 * whose output is its INPUT (n, h, w, c), with kernel wgt (kh, kw, f, c), exactly Keras's
 * Conv2DTranspose kernel layout read as a Conv2D kernel of C.  Then
 *   forward   z = C's input gradient applied to x (conv_dx.c), + bias, y = act(z);
 *   backward  dz = act'(z) dy, db = column sums of dz (bias.c);
 *             dx = C's forward applied to dz (layers.c: direct kernel or implicit GEMM);
 *             dw = C's filter gradient with x as C's output gradient (conv_gemm.c).
 * Every sum is one of those kernels', which are independent of the thread count; the bias
 * addition is elementwise.
 *
 * The upsampling backward is a gather: each input pixel sums, in a fixed order (output
 * rows, then output columns), the output pixels whose interpolation reads it, with their
 * weights; one thread writes each input pixel.  The window copy writes every output
 * element once.
 */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "conv_gemm_internal.h"

static int convt_args_ok(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left, int64_t oh,
                         int64_t ow, int64_t f, int act) {
    return n >= 0 && h >= 0 && w >= 0 && c >= 0 && kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 &&
           pad_top >= 0 && pad_left >= 0 && oh >= 0 && ow >= 0 && f >= 0 &&
           act >= PYNN_ACT_LINEAR && act <= PYNN_ACT_GELU;
}

int64_t pynn_conv2d_transpose_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                   int64_t kw, int64_t oh, int64_t ow, int64_t f) {
    int64_t need, partials;
    if (!convt_args_ok(n, h, w, c, kh, kw, 1, 1, 0, 0, oh, ow, f, PYNN_ACT_LINEAR))
        return PYNN_EINVAL;
    /* the forward: C's input gradient, its packed kernel (C's c = f, C's f = c) */
    need = pynn_conv2d_input_grad_work(kh, kw, f, c);
    /* the backward: C's filter gradient over n h w output positions, K = kh kw f */
    partials = pynn_conv_gemm_filter_partials(n * h * w, kh * kw * f, c);
    if (partials > need) need = partials;
    (void)oh;
    (void)ow;
    return need > 1 ? need : 1;
}

int pynn_conv2d_transpose_forward(float *z, float *y, float *work, int64_t work_size,
                                  const float *x, const float *wgt, const float *bias,
                                  int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                  int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                  int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                                  float alpha) {
    const int64_t rows = n * oh * ow;
    int64_t r;
    int status;
    PYNN_RETURN_IF(!convt_args_ok(n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, f,
                                  act), PYNN_EINVAL);
    if (rows * f == 0) return PYNN_OK;
    PYNN_RETURN_IF(z == NULL || y == NULL || work == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF((x == NULL && n * h * w * c > 0) || (wgt == NULL && kh * kw * f * c > 0),
                   PYNN_EINVAL);
    PYNN_RETURN_IF(work_size < pynn_conv2d_transpose_work(n, h, w, c, kh, kw, oh, ow, f),
                   PYNN_EINVAL);
    if (n * h * w * c == 0) {
        memset(z, 0, (size_t)(rows * f) * sizeof(float));
    } else {
        status = pynn_conv2d_input_grad(z, x, wgt, work, work_size, n, oh, ow, f, kh, kw, sh,
                                        sw, pad_top, pad_left, h, w, c);
        if (status != PYNN_OK) return status;
    }
    if (bias != NULL) {
        PYNN_PARALLEL_FOR(pynn_threads_for(rows * f),
            for (r = 0; r < rows; r++) {
                float *zr = z + r * f;
                int64_t j;
                for (j = 0; j < f; j++) zr[j] += bias[j];
            });
    }
    if (act == PYNN_ACT_LINEAR && y == z) return PYNN_OK;
    return pynn_activation_forward(y, z, rows, f, act, alpha);
}

int pynn_conv2d_transpose_backward(float *dw, float *db, float *dx, float *dy, float *work,
                                   int64_t work_size, const float *x, const float *wgt,
                                   const float *z, const float *y, int64_t n, int64_t h,
                                   int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                                   int64_t sw, int64_t pad_top, int64_t pad_left, int64_t oh,
                                   int64_t ow, int64_t f, int act, float alpha) {
    const int64_t rows = n * oh * ow, in_n = n * h * w * c, k = kh * kw * f;
    int status;
    PYNN_RETURN_IF(!convt_args_ok(n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, f,
                                  act), PYNN_EINVAL);
    PYNN_RETURN_IF(work == NULL ||
                   work_size < pynn_conv2d_transpose_work(n, h, w, c, kh, kw, oh, ow, f),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((dy == NULL || z == NULL || y == NULL) && rows * f > 0, PYNN_EINVAL);
    PYNN_RETURN_IF((x == NULL && in_n > 0) || (wgt == NULL && k * c > 0), PYNN_EINVAL);
    if (rows * f == 0) {
        if (db != NULL && f > 0) memset(db, 0, (size_t)f * sizeof(float));
    } else if (db != NULL) {
        status = pynn_activation_backward_bias_grad(dy, db, z, y, dy, rows, f, act, alpha);
        if (status != PYNN_OK) return status;
    } else {
        status = pynn_activation_backward(dy, z, y, dy, rows, f, act, alpha);
        if (status != PYNN_OK) return status;
    }
    if (dw != NULL && k * c > 0) {
        if (rows * f == 0 || in_n == 0) {
            memset(dw, 0, (size_t)(k * c) * sizeof(float));
        } else {
            status = pynn_conv_gemm_filter_grad(dw, work, x, dy, n, oh, ow, f, kh, kw, sh, sw,
                                                pad_top, pad_left, h, w, c);
            if (status != PYNN_OK) return status;
        }
    }
    if (dx != NULL && in_n > 0) {
        if (rows * f == 0) {
            memset(dx, 0, (size_t)in_n * sizeof(float));
            return PYNN_OK;
        }
        return pynn_conv2d_forward(dx, dx, NULL, dy, wgt, NULL, n, oh, ow, f, kh, kw, sh, sw,
                                   pad_top, pad_left, h, w, c, PYNN_ACT_LINEAR, 0.0f);
    }
    return PYNN_OK;
}

/* Along one axis of an upsampling by `factor` from `size` to size * factor: output i reads
 * input i0 with weight 1 - t and i1 with weight t (pynn_resize's half-pixel bilinear, or
 * nearest: i / factor with t = 0).  Returns the weight of input r in output i. */
static float up_weight(int64_t i, int64_t r, int64_t size, int64_t factor, int interp) {
    double s, t;
    int64_t i0, i1;
    if (interp == PYNN_INTERP_NEAREST) return i / factor == r ? 1.0f : 0.0f;
    s = ((double)i + 0.5) * ((double)size / (double)(size * factor)) - 0.5;
    if (s < 0.0) s = 0.0;
    if (s > (double)(size - 1)) s = (double)(size - 1);
    i0 = (int64_t)floor(s);
    i1 = i0 + 1 < size ? i0 + 1 : size - 1;
    t = s - (double)i0;
    return (float)((i0 == r ? 1.0 - t : 0.0) + (i1 == r ? t : 0.0));
}

int pynn_upsample2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                             int64_t c, int64_t fh, int64_t fw, int interp) {
    const int64_t oh = h * fh, ow = w * fw, pixels = n * h * w;
    int64_t p;
    PYNN_RETURN_IF(n < 0 || h < 0 || w < 0 || c < 0 || fh < 1 || fw < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(interp != PYNN_INTERP_NEAREST && interp != PYNN_INTERP_BILINEAR,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(fh > INT32_MAX || fw > INT32_MAX || h > INT32_MAX || w > INT32_MAX,
                   PYNN_EINVAL);
    if (pixels * c == 0) return PYNN_OK;
    PYNN_RETURN_IF(dx == NULL || dy == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(pixels * c * fh * fw * 4),
        for (p = 0; p < pixels; p++) {
            const int64_t img = p / (h * w), r = (p / w) % h, q = p % w;
            /* the outputs that can read input row r / column q */
            const int64_t i_lo = interp == PYNN_INTERP_NEAREST ? r * fh
                                                               : (r > 0 ? (r - 1) * fh : 0);
            const int64_t i_hi = interp == PYNN_INTERP_NEAREST ? (r + 1) * fh
                                 : ((r + 2) * fh < oh ? (r + 2) * fh : oh);
            const int64_t j_lo = interp == PYNN_INTERP_NEAREST ? q * fw
                                                               : (q > 0 ? (q - 1) * fw : 0);
            const int64_t j_hi = interp == PYNN_INTERP_NEAREST ? (q + 1) * fw
                                 : ((q + 2) * fw < ow ? (q + 2) * fw : ow);
            float *out = dx + p * c;
            int64_t i, j, ch;
            for (ch = 0; ch < c; ch++) out[ch] = 0.0f;
            for (i = i_lo; i < i_hi; i++) {
                const float wr = up_weight(i, r, h, fh, interp);
                if (wr == 0.0f) continue;
                for (j = j_lo; j < j_hi; j++) {
                    const float wc = up_weight(j, q, w, fw, interp);
                    const float wt = wr * wc;
                    const float *g = dy + ((img * oh + i) * ow + j) * c;
                    if (wc == 0.0f) continue;
                    for (ch = 0; ch < c; ch++) out[ch] += wt * g[ch];
                }
            }
        });
    return PYNN_OK;
}

int pynn_pad_crop(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                  int64_t oh, int64_t ow, int64_t top, int64_t left) {
    const int64_t out_rows = n * oh;
    int64_t t;
    PYNN_RETURN_IF(n < 0 || h < 0 || w < 0 || c < 0 || oh < 0 || ow < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(top > INT32_MAX || top < -(int64_t)INT32_MAX || left > INT32_MAX ||
                       left < -(int64_t)INT32_MAX, PYNN_EINVAL);
    if (out_rows * ow * c == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || (x == NULL && n * h * w * c > 0), PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(out_rows * ow * c),
        for (t = 0; t < out_rows; t++) {
            const int64_t img = t / oh, i = t % oh, r = i - top;
            float *yrow = y + t * ow * c;
            int64_t j0, j1;
            if (r < 0 || r >= h) {
                memset(yrow, 0, (size_t)(ow * c) * sizeof(float));
                continue;
            }
            /* output columns j with 0 <= j - left < w */
            j0 = left > 0 ? (left < ow ? left : ow) : 0;
            j1 = w + left < ow ? (w + left > j0 ? w + left : j0) : ow;
            if (j0 > 0) memset(yrow, 0, (size_t)(j0 * c) * sizeof(float));
            if (j1 > j0)
                memcpy(yrow + j0 * c, x + ((img * h + r) * w + (j0 - left)) * c,
                       (size_t)((j1 - j0) * c) * sizeof(float));
            if (j1 < ow) memset(yrow + j1 * c, 0, (size_t)((ow - j1) * c) * sizeof(float));
        });
    return PYNN_OK;
}

int pynn_kernel_dilate(float *dst, const float *src, int64_t kh, int64_t kw, int64_t cols,
                       int64_t dh, int64_t dw, int inverse) {
    const int64_t eh = (kh - 1) * dh + 1, ew = (kw - 1) * dw + 1;
    int64_t a, b;
    PYNN_RETURN_IF(kh < 1 || kw < 1 || cols < 0 || dh < 1 || dw < 1 ||
                       (inverse != 0 && inverse != 1), PYNN_EINVAL);
    PYNN_RETURN_IF(kh > INT32_MAX || kw > INT32_MAX || dh > INT32_MAX || dw > INT32_MAX,
                   PYNN_EINVAL);
    if (cols == 0) return PYNN_OK;
    PYNN_RETURN_IF(dst == NULL || src == NULL, PYNN_EINVAL);
    if (!inverse) memset(dst, 0, (size_t)(eh * ew * cols) * sizeof(float));
    for (a = 0; a < kh; a++)
        for (b = 0; b < kw; b++) {
            const int64_t tap = a * kw + b, wide = (a * dh) * ew + b * dw;
            if (inverse)
                memcpy(dst + tap * cols, src + wide * cols, (size_t)cols * sizeof(float));
            else
                memcpy(dst + wide * cols, src + tap * cols, (size_t)cols * sizeof(float));
        }
    return PYNN_OK;
}
