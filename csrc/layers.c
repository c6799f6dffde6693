/* layers.c -- the layer-level kernels of Dense and Conv2D: one call per forward or
 * backward of a layer, composed from the GEMM, activation, im2col and direct-convolution
 * kernels.
 *
 * These used to be sequences of calls in pynn/backend/cpu.py.  They live in C so that
 * the plan runner (plan.c) and the cpu backend (one call per method) run the very same
 * sequence, and give bitwise the same numbers.  Nothing here computes on its own: every
 * sum is one of the called kernels', so determinism is theirs (see gemm.c, bias.c,
 * conv.c, conv_direct.c).
 */
#include <string.h>
#include "internal.h"
#include "conv_gemm_internal.h"
#include "conv_winograd_internal.h"

/* Dense backward: dz = act'(z) dy (in place, with the bias gradient in the same pass when
 * there is one), then dW = x^T dz and dx = dz W^T. */
int pynn_dense_backward(float *dw, float *db, float *dx, float *dy, const float *x,
                        const float *w, const float *z, const float *y, int64_t m, int64_t in,
                        int64_t out, int act, float alpha) {
    int status;
    PYNN_RETURN_IF(m < 0 || in < 0 || out < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(act < PYNN_ACT_LINEAR || act >= PYNN_ACT_COUNT, PYNN_EINVAL);
    PYNN_RETURN_IF((dy == NULL || z == NULL || y == NULL) && m * out > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(dw != NULL && x == NULL && m * in > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(dx != NULL && w == NULL && in * out > 0, PYNN_EINVAL);
    if (m * out == 0) {
        /* no dz: the activation kernels refuse NULL operands even when empty */
        if (db != NULL && out > 0) memset(db, 0, (size_t)out * sizeof(float));
    } else if (db != NULL) {
        status = pynn_activation_backward_bias_grad(dy, db, z, y, dy, m, out, act, alpha);
        if (status != PYNN_OK) return status;
    } else {
        status = pynn_activation_backward(dy, z, y, dy, m, out, act, alpha);
        if (status != PYNN_OK) return status;
    }
    if (dw != NULL) {   /* dW (in x out) = x^T dz: K = m, the batch */
        status = pynn_sgemm(dw, x, dy, 1, 0, in, out, m, 1.0f, 0.0f, in > 0 ? in : 1,
                            out > 0 ? out : 1, out > 0 ? out : 1);
        if (status != PYNN_OK) return status;
    }
    if (dx != NULL) {   /* dx (m x in) = dz W^T */
        status = pynn_sgemm(dx, dy, w, 0, 1, m, in, out, 1.0f, 0.0f, out > 0 ? out : 1,
                            out > 0 ? out : 1, in > 0 ? in : 1);
        if (status != PYNN_OK) return status;
    }
    return PYNN_OK;
}

static int conv_args_ok(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                        int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left, int64_t oh,
                        int64_t ow, int64_t f, int act) {
    return n >= 0 && h >= 0 && w >= 0 && c >= 0 && kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 &&
           pad_top >= 0 && pad_left >= 0 && oh >= 0 && ow >= 0 && f >= 0 &&
           act >= PYNN_ACT_LINEAR && act < PYNN_ACT_COUNT;
}

/* Conv2D forward: the direct kernel for tiny kernels, Winograd's F(2x2, 3x3) for 3 x 3
 * stride-1 layers of at least 8 channels and filters (conv_winograd.c), else the
 * implicit GEMM (conv_gemm.c) with bias and activation in its epilogue: z (n*oh*ow x f) =
 * cols @ wgt (kh*kw*c x f), the windows read from x, not from cols, which the forward no
 * longer writes. */
int pynn_conv2d_forward(float *z, float *y, float *cols, const float *x, const float *wgt,
                        const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                        int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                        int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                        float alpha) {
    PYNN_RETURN_IF(!conv_args_ok(n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, f, act),
                   PYNN_EINVAL);
    if (pynn_conv2d_direct_supported(kh, kw, c, f, act))
        return pynn_conv2d_direct_forward(z, y, x, wgt, bias, n, h, w, c, kh, kw, sh, sw,
                                          pad_top, pad_left, oh, ow, f, act, alpha);
    PYNN_RETURN_IF(z == NULL && n * oh * ow * f > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(x == NULL && n * oh * ow * kh * kw * c > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(wgt == NULL && kh * kw * c * f > 0, PYNN_EINVAL);
    (void)cols;
    if (pynn_conv2d_winograd_supported(n, kh, kw, sh, sw, c, f, oh, ow, act))
        return pynn_conv_winograd_forward(z, y, x, wgt, bias, n, h, w, c, pad_top, pad_left, oh,
                                          ow, f, act, alpha);
    return pynn_conv_gemm_forward(z, y, x, wgt, bias, n, h, w, c, kh, kw, sh, sw, pad_top,
                                  pad_left, oh, ow, f, act, alpha);
}

/* Floats of work for the GEMM path: the filter gradient's K-split partial products. */
static int64_t gemm_path_work(int64_t rows, int64_t k, int64_t f) {
    return pynn_conv_gemm_filter_partials(rows, k, f);
}

/* Floats of work for the direct path: the filter gradient's chunk partials, and a dW to
 * compute into when the caller wants db without dw (so db is the same either way). */
static int64_t direct_path_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                int64_t kw, int64_t sh, int64_t sw, int64_t oh, int64_t ow,
                                int64_t f) {
    return pynn_conv2d_direct_filter_work(n, h, w, c, kh, kw, sh, sw, oh, ow, f) + kh * kw * c * f;
}

/* The activation is not an argument, so the size covers both paths for shapes the direct
 * kernel takes with an elementwise activation (softmax sends them to the GEMM path). */
int64_t pynn_conv2d_backward_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                  int64_t kw, int64_t sh, int64_t sw, int64_t oh, int64_t ow,
                                  int64_t f) {
    int64_t need;
    if (!conv_args_ok(n, h, w, c, kh, kw, sh, sw, 0, 0, oh, ow, f, PYNN_ACT_LINEAR))
        return PYNN_EINVAL;
    need = gemm_path_work(n * oh * ow, kh * kw * c, f);
    if (pynn_conv2d_direct_supported(kh, kw, c, f, PYNN_ACT_LINEAR)) {
        const int64_t direct = direct_path_work(n, h, w, c, kh, kw, sh, sw, oh, ow, f);
        need = direct > need ? direct : need;
    }
    if (n * h * w * c > 0 && n * oh * ow * f > 0) {
        /* the input gradient runs after the filter gradient, in the same work (without
         * input or output positions it needs none) */
        const int64_t input_grad = pynn_conv2d_input_grad_work(kh, kw, c, f);
        need = input_grad > need ? input_grad : need;
    }
    return need > 1 ? need : 1;
}

/* Conv2D backward.
 *   direct: the filter gradient (dz, dW and db in one pass) by conv_direct.c, its chunk
 *     partials in work;
 *   GEMM: dz (and db) by the activation kernels, then dW^T (f x k) = dz^T (the windows of
 *     x) by the implicit GEMM (conv_gemm.c: the windows read from x, no im2col matrix).  That orientation puts the
 *     long side (the kernel's rows) on N, where the micro-kernel's wide NR tile is filled,
 *     instead of the few filters; K (the batch's output positions) is long and the output
 *     small, so the product is cut along K into chunks fixed by the shape (those of
 *     sgemm_ksplit, their partials in work), then added into dW.  At the AVX-512 level,
 *     for a linear or ReLU activation with dW wanted, dz and db are folded into that
 *     product's pass over the positions (pynn_conv_gemm_filter_grad_act): each block of
 *     dy becomes dz in cache just before the tiles read it, instead of a pass of its own
 *     over memory (the VGG-style net's four layers: ~1 ms of its ~28 ms step);
 *   Winograd (pynn_conv2d_winograd_filter_supported: 3 x 3, stride 1, c f <= 4096): dz
 *     (and db) by the activation kernels, then dW by F(3x3, 2x2) (conv_winograd.c).
 * All then compute dx straight from dz and the kernel (conv_dx.c, which hands 3 x 3
 * stride-1 shapes to Winograd's F(2x2, 3x3)), its packed kernel in work.  None reads or
 * writes cols (kept in the signature; may be NULL). */
int pynn_conv2d_backward(float *dw, float *db, float *dx, float *dy, float *cols, float *work,
                         int64_t work_size, const float *x, const float *wgt, const float *z,
                         const float *y, int64_t n, int64_t h, int64_t w, int64_t c,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                         int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                         float alpha) {
    const int64_t k = kh * kw * c, rows = n * oh * ow;
    /* the filter gradient by Winograd's F(3x3, 2x2), after dz and db by the activation
     * kernels (the fallback's pass), instead of the implicit GEMM */
    const int winograd_dw =
        k > 0 && dw != NULL &&
        pynn_conv2d_winograd_filter_supported(n, kh, kw, sh, sw, c, f, oh, ow, act);
    int status;
    (void)cols;
    PYNN_RETURN_IF(!conv_args_ok(n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, f, act),
                   PYNN_EINVAL);
    PYNN_RETURN_IF(work == NULL ||
                   work_size < pynn_conv2d_backward_work(n, h, w, c, kh, kw, sh, sw, oh, ow, f),
                   PYNN_EINVAL);
    PYNN_RETURN_IF((dy == NULL || z == NULL || y == NULL) && rows * f > 0, PYNN_EINVAL);
    PYNN_RETURN_IF((x == NULL && n * h * w * c > 0) || (wgt == NULL && k * f > 0), PYNN_EINVAL);

    if (rows * f == 0) {
        /* no output positions: every gradient is zero (the kernels below refuse NULLs) */
        if (dw != NULL && k * f > 0) memset(dw, 0, (size_t)(k * f) * sizeof(float));
        if (db != NULL && f > 0) memset(db, 0, (size_t)f * sizeof(float));
        if (dx != NULL && n * h * w * c > 0) memset(dx, 0, (size_t)(n * h * w * c) * sizeof(float));
        return PYNN_OK;
    }

    if (pynn_conv2d_direct_supported(kh, kw, c, f, act)) {
        if (dw != NULL || db != NULL) {
            /* a dW nobody wants goes to the end of work, after the chunk partials */
            const int64_t partials = work_size - k * f;
            float *dw_to = dw != NULL ? dw : work + partials;
            status = pynn_conv2d_direct_backward_filter(dw_to, db, dy, x, z, y, dy, n, h, w, c,
                                                        kh, kw, sh, sw, pad_top, pad_left, oh,
                                                        ow, f, act, alpha, work, partials);
        } else {
            status = pynn_activation_backward(dy, z, y, dy, rows, f, act, alpha);
        }
        if (status != PYNN_OK) return status;
    } else if (!winograd_dw && k > 0 && (dw != NULL || db != NULL) &&
               pynn_conv_gemm_filter_grad_act(dw, db, work, dy, z, act, x, n, h, w, c, kh, kw,
                                              sh, sw, pad_top, pad_left, oh, ow, f) == PYNN_OK) {
        /* dz and db folded into the filter gradient's pass (AVX-512, linear or ReLU) */
    } else {
        if (db != NULL)
            status = pynn_activation_backward_bias_grad(dy, db, z, y, dy, rows, f, act, alpha);
        else
            status = pynn_activation_backward(dy, z, y, dy, rows, f, act, alpha);
        if (status != PYNN_OK) return status;
        if (dw != NULL && k > 0) {
            status = winograd_dw
                         ? pynn_conv_winograd_filter_grad(dw, dy, x, n, h, w, c, pad_top, pad_left,
                                                          oh, ow, f)
                         : pynn_conv_gemm_filter_grad(dw, work, dy, x, n, h, w, c, kh, kw, sh,
                                                      sw, pad_top, pad_left, oh, ow, f);
            if (status != PYNN_OK) return status;
        }
    }
    if (dx != NULL) {
        if (k == 0) {
            if (n * h * w * c > 0) memset(dx, 0, (size_t)(n * h * w * c) * sizeof(float));
            return PYNN_OK;
        }
        return pynn_conv2d_input_grad(dx, dy, wgt, work, work_size, n, h, w, c, kh, kw, sh, sw,
                                      pad_top, pad_left, oh, ow, f);
    }
    return PYNN_OK;
}
