/* conv_variants.c -- convolution variants (engineer B, issue #16): dilated and grouped 2-D
 * convolution (Conv2D's dilation_rate and groups, DepthwiseConv2D, the depthwise half of
 * SeparableConv2D), and the batched transpose (Permute, channels_first).
 *
 * The convolution: NHWC x (n, h, w, c), kernel (kh, kw, c / groups, f) (Keras's layout),
 * output (n, oh, ow, f).  Output channel o lies in group g = o / (f / groups) and sees
 * input channels g * cg .. g * cg + cg - 1 (cg = c / groups).  Output (img, i, j) sees
 * input row i*sh - pad_top + a*dh and column j*sw - pad_left + b*dw for the tap (a, b);
 * positions outside the input are zero padding.  A depthwise convolution with depth
 * multiplier dm is the case groups = c, f = c * dm: Keras's (kh, kw, c, dm) kernel is the
 * very same array as (kh, kw, 1, c * dm), output channel c*dm + m.
 *
 * The loops are written so that the innermost one runs over contiguous channels.  The
 * depthwise case with dm = 1 (groups = c = f) takes its own loops, compiled per instruction
 * set (conv_variants_kernel.h): per-channel multiply-adds over whole pixels; -ffp-contract=off
 * keeps every level's arithmetic the same.
 *
 * Determinism: each output element of the forward and of dx is written by one thread
 * (forward: one (image, output row) per task; dx: one image per task), its sum in a
 * fixed order.  dw and db are summed per part of the batch (fixed parts that depend on
 * n only: pynn_conv2d_general_parts) into `work`, and the parts are added in part order.
 */
#include <string.h>
#include "internal.h"
#include "act_elementwise.h"
#include "conv_variants_internal.h"

/* The depthwise loops of the level in use (dispatch.c). */
static const pynn_dw_kernels *dw_kernels(void) {
    switch (pynn_level()) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_dw_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_dw_avx2;
#endif
    default:
        return &pynn_dw_generic;
    }
}

static pynn_dw_geometry dw_geometry(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                    int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                                    int64_t oh, int64_t ow, int64_t dh, int64_t dw) {
    pynn_dw_geometry g;
    g.n = n, g.h = h, g.w = w, g.c = c, g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw;
    g.pt = pt, g.pl = pl, g.oh = oh, g.ow = ow, g.dh = dh, g.dw = dw;
    return g;
}

#define CONV_GENERAL_MAX_PARTS 32

/* the parts of a batch of n images the weight gradient is summed over: ceil(n / per) parts of
 * `per` images (the last one shorter) */
static int64_t parts_per(int64_t n) {
    return n <= CONV_GENERAL_MAX_PARTS ? 1 : (n + CONV_GENERAL_MAX_PARTS - 1) / CONV_GENERAL_MAX_PARTS;
}

static int general_ok(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                      int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t oh, int64_t ow,
                      int64_t f, int64_t dh, int64_t dw, int64_t groups, int act) {
    return n >= 0 && h >= 0 && w >= 0 && c >= 1 && kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 &&
           pt >= 0 && pl >= 0 && oh >= 0 && ow >= 0 && f >= 1 && dh >= 1 && dw >= 1 &&
           groups >= 1 && c % groups == 0 && f % groups == 0 && act >= 0 &&
           act < PYNN_ACT_COUNT;
}

int64_t pynn_conv2d_general_work(int64_t n, int64_t c, int64_t kh, int64_t kw, int64_t f,
                                 int64_t groups) {
    /* ceil(n / parts_per(n)) <= min(n, MAX_PARTS) parts: a batch of n rows needs no more
     * than a batch of any larger capacity */
    const int64_t parts = n < 1 ? 1 : (n < CONV_GENERAL_MAX_PARTS ? n : CONV_GENERAL_MAX_PARTS);
    if (n < 0 || c < 1 || kh < 1 || kw < 1 || f < 1 || groups < 1 || c % groups != 0 ||
        f % groups != 0)
        return -1;
    return parts * (kh * kw * (c / groups) * f + f) + 1;
}

/* z[0:f] += the taps of output position (img, i, j) */
static void forward_pixel(float *zp, const float *x, const float *wgt, int64_t img, int64_t i,
                          int64_t j, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                          int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t f, int64_t dh,
                          int64_t dw, int64_t groups) {
    const int64_t cg = c / groups, fg = f / groups;
    int64_t a, b, g, ci, m;
    for (a = 0; a < kh; a++) {
        const int64_t r = i * sh - pt + a * dh;
        if (r < 0 || r >= h) continue;
        for (b = 0; b < kw; b++) {
            const int64_t q = j * sw - pl + b * dw;
            const float *xp, *wp;
            if (q < 0 || q >= w) continue;
            xp = x + ((img * h + r) * w + q) * c;
            wp = wgt + (a * kw + b) * cg * f;
            for (g = 0; g < groups; g++)
                for (ci = 0; ci < cg; ci++) {
                    const float xv = xp[g * cg + ci];
                    const float *wr = wp + ci * f + g * fg;
                    float *zg = zp + g * fg;
                    for (m = 0; m < fg; m++) zg[m] += xv * wr[m];
                }
        }
    }
}

int pynn_conv2d_general_forward(float *z, float *y, const float *x, const float *wgt,
                                const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt,
                                int64_t pl, int64_t oh, int64_t ow, int64_t f, int64_t dh,
                                int64_t dw, int64_t groups, int act, float alpha) {
    int64_t t;
    PYNN_RETURN_IF(!general_ok(n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, dh, dw, groups, act),
                   PYNN_EINVAL);
    PYNN_RETURN_IF(n * oh * ow > 0 && (z == NULL || y == NULL || wgt == NULL), PYNN_EINVAL);
    PYNN_RETURN_IF(n * h * w > 0 && x == NULL, PYNN_EINVAL);
    if (groups == c && f == c) {   /* depthwise, multiplier 1: the per-ISA channel loops */
        const pynn_dw_kernels *k = dw_kernels();
        const pynn_dw_geometry g = dw_geometry(n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, dh, dw);
        PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * kh * kw * f),
            for (t = 0; t < n * oh; t++) {
                k->forward_rows(z, x, wgt, bias, t, t + 1, &g);
                if (act != PYNN_ACT_SOFTMAX)
                    (void)pynn_act_span(y + t * ow * f, z + t * ow * f, ow * f, act, alpha);
            });
        if (act == PYNN_ACT_SOFTMAX)
            return pynn_activation_forward(y, z, n * oh * ow, f, act, alpha);
        return PYNN_OK;
    }
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * kh * kw * (c / groups) * f),
        for (t = 0; t < n * oh; t++) {
            const int64_t img = t / oh, i = t % oh;
            int64_t j;
            for (j = 0; j < ow; j++) {
                float *zp = z + (t * ow + j) * f;
                if (bias != NULL)
                    memcpy(zp, bias, (size_t)f * sizeof(float));
                else
                    memset(zp, 0, (size_t)f * sizeof(float));
                forward_pixel(zp, x, wgt, img, i, j, h, w, c, kh, kw, sh, sw, pt, pl, f, dh, dw,
                              groups);
                if (act != PYNN_ACT_SOFTMAX) (void)pynn_act_span(y + (t * ow + j) * f, zp, f, act, alpha);
            }
        });
    if (act == PYNN_ACT_SOFTMAX) return pynn_activation_forward(y, z, n * oh * ow, f, act, alpha);
    return PYNN_OK;
}

/* dx of image img (overwritten): every output position's dz spread back over its taps, in
 * the fixed order (i, j, a, b) */
static void input_grad_image(float *dx, const float *dz, const float *wgt, int64_t img,
                             int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                             int64_t sw, int64_t pt, int64_t pl, int64_t oh, int64_t ow,
                             int64_t f, int64_t dh, int64_t dw, int64_t groups) {
    const int64_t cg = c / groups, fg = f / groups;
    float *dimg = dx + img * h * w * c;
    int64_t i, j, a, b, g, ci, m;
    memset(dimg, 0, (size_t)(h * w * c) * sizeof(float));
    for (i = 0; i < oh; i++)
        for (j = 0; j < ow; j++) {
            const float *dzp = dz + ((img * oh + i) * ow + j) * f;
            for (a = 0; a < kh; a++) {
                const int64_t r = i * sh - pt + a * dh;
                if (r < 0 || r >= h) continue;
                for (b = 0; b < kw; b++) {
                    const int64_t q = j * sw - pl + b * dw;
                    const float *wp;
                    float *dxp;
                    if (q < 0 || q >= w) continue;
                    dxp = dimg + (r * w + q) * c;
                    wp = wgt + (a * kw + b) * cg * f;
                    for (g = 0; g < groups; g++)
                        for (ci = 0; ci < cg; ci++) {
                            const float *wr = wp + ci * f + g * fg, *dzg = dzp + g * fg;
                            float s = 0.0f;
                            for (m = 0; m < fg; m++) s += dzg[m] * wr[m];
                            dxp[g * cg + ci] += s;
                        }
                }
            }
        }
}

/* part[kh*kw*cg*f] += the weight gradient of images i0 .. i1-1, part[k*f ..] += their bias
 * gradient (part zeroed first) */
static void filter_grad_part(float *part, const float *dz, const float *x, int64_t i0,
                             int64_t i1, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                             int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t oh,
                             int64_t ow, int64_t f, int64_t dh, int64_t dw, int64_t groups) {
    const int64_t cg = c / groups, fg = f / groups, kf = kh * kw * cg * f;
    float *pb = part + kf;
    int64_t img, i, j, a, b, g, ci, m;
    memset(part, 0, (size_t)(kf + f) * sizeof(float));
    for (img = i0; img < i1; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++) {
                const float *dzp = dz + ((img * oh + i) * ow + j) * f;
                for (m = 0; m < f; m++) pb[m] += dzp[m];
                for (a = 0; a < kh; a++) {
                    const int64_t r = i * sh - pt + a * dh;
                    if (r < 0 || r >= h) continue;
                    for (b = 0; b < kw; b++) {
                        const int64_t q = j * sw - pl + b * dw;
                        const float *xp;
                        float *pw;
                        if (q < 0 || q >= w) continue;
                        xp = x + ((img * h + r) * w + q) * c;
                        pw = part + (a * kw + b) * cg * f;
                        for (g = 0; g < groups; g++)
                            for (ci = 0; ci < cg; ci++) {
                                const float xv = xp[g * cg + ci];
                                float *pr = pw + ci * f + g * fg;
                                const float *dzg = dzp + g * fg;
                                for (m = 0; m < fg; m++) pr[m] += xv * dzg[m];
                            }
                    }
                }
            }
}

int pynn_conv2d_general_backward(float *dwgt, float *db, float *dx, float *dy, float *work,
                                 int64_t work_size, const float *x, const float *wgt,
                                 const float *z, const float *y, int64_t n, int64_t h, int64_t w,
                                 int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                 int64_t pt, int64_t pl, int64_t oh, int64_t ow, int64_t f,
                                 int64_t dh, int64_t dw, int64_t groups, int act, float alpha) {
    const int64_t out_n = n * oh * ow * f;
    const int64_t kf = kh * kw * (c / groups) * f, stride = kf + f;
    const int64_t per = parts_per(n), parts = n == 0 ? 0 : (n + per - 1) / per;
    int64_t t;
    int status;
    PYNN_RETURN_IF(!general_ok(n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, dh, dw, groups, act),
                   PYNN_EINVAL);
    PYNN_RETURN_IF(out_n > 0 && (dy == NULL || z == NULL || y == NULL || wgt == NULL),
                   PYNN_EINVAL);
    PYNN_RETURN_IF(n * h * w > 0 && x == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF((dwgt != NULL || db != NULL) &&
                   (work == NULL || work_size < pynn_conv2d_general_work(n, c, kh, kw, f, groups)),
                   PYNN_EINVAL);
    /* dz = act'(z) dy, in place */
    status = pynn_activation_backward(dy, z, y, dy, n * oh * ow, f, act, alpha);
    if (status != PYNN_OK) return status;
    if (groups == c && f == c) {   /* depthwise, multiplier 1: the per-ISA channel loops */
        const pynn_dw_kernels *k = dw_kernels();
        const pynn_dw_geometry g = dw_geometry(n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, dh, dw);
        if (dx != NULL)
            PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * kh * kw * f),
                for (t = 0; t < n * h; t++) k->input_grad_rows(dx, dy, wgt, t, t + 1, &g););
        if (dwgt == NULL && db == NULL) return PYNN_OK;
        PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * kf),
            for (t = 0; t < parts; t++) {
                const int64_t i1 = (t + 1) * per < n ? (t + 1) * per : n;
                k->filter_grad_part(work + t * stride, dy, x, t * per, i1, &g);
            });
    } else {
    if (dx != NULL)
        PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * kh * kw * (c / groups) * f),
            for (t = 0; t < n; t++)
                input_grad_image(dx, dy, wgt, t, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, dh,
                                 dw, groups););
    if (dwgt == NULL && db == NULL) return PYNN_OK;
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * kf),
        for (t = 0; t < parts; t++) {
            const int64_t i1 = (t + 1) * per < n ? (t + 1) * per : n;
            filter_grad_part(work + t * stride, dy, x, t * per, i1, h, w, c, kh, kw, sh, sw, pt,
                             pl, oh, ow, f, dh, dw, groups);
        });
    }
    /* the parts added in part order */
    PYNN_PARALLEL_FOR(pynn_threads_for(parts * stride),
        for (t = 0; t < stride; t++) {
            float s = 0.0f;
            int64_t p;
            for (p = 0; p < parts; p++) s += work[p * stride + t];
            if (t < kf) {
                if (dwgt != NULL) dwgt[t] = s;
            } else if (db != NULL) {
                db[t - kf] = s;
            }
        });
    return PYNN_OK;
}

/* ---- batched transpose ------------------------------------------------------------ */

int pynn_transpose(float *y, const float *x, int64_t rows, int64_t ndim, const int64_t *dims,
                   const int64_t *perm) {
    int64_t size = 1, in_stride[PYNN_TRANSPOSE_MAX_DIMS], out_dims[PYNN_TRANSPOSE_MAX_DIMS];
    int64_t k, t, seen = 0;
    PYNN_RETURN_IF(rows < 0 || ndim < 1 || ndim > PYNN_TRANSPOSE_MAX_DIMS || dims == NULL ||
                   perm == NULL, PYNN_EINVAL);
    for (k = 0; k < ndim; k++) {
        PYNN_RETURN_IF(dims[k] < 0 || perm[k] < 0 || perm[k] >= ndim, PYNN_EINVAL);
        PYNN_RETURN_IF(seen & ((int64_t)1 << perm[k]), PYNN_EINVAL);
        seen |= (int64_t)1 << perm[k];
    }
    for (k = ndim - 1; k >= 0; k--) {
        in_stride[k] = size;
        size *= dims[k];
    }
    for (k = 0; k < ndim; k++) out_dims[k] = dims[perm[k]];
    PYNN_RETURN_IF(rows * size > 0 && (x == NULL || y == NULL), PYNN_EINVAL);
    PYNN_RETURN_IF(size > 0 && x == y, PYNN_EINVAL);
    /* one task per (row, leading output index): each writes its own span of y */
    {
        const int64_t lead = size == 0 ? 0 : out_dims[0], inner = lead == 0 ? 0 : size / lead;
        PYNN_PARALLEL_FOR(pynn_threads_for(rows * size),
            for (t = 0; t < rows * lead; t++) {
                const int64_t row = t / lead, i0 = t % lead;
                const float *xr = x + row * size + i0 * in_stride[perm[0]];
                float *yr = y + t * inner;
                int64_t e;
                for (e = 0; e < inner; e++) {
                    int64_t rem = e, off = 0, d;
                    for (d = ndim - 1; d >= 1; d--) {
                        const int64_t idx = rem % out_dims[d];
                        rem /= out_dims[d];
                        off += idx * in_stride[perm[d]];
                    }
                    yr[e] = xr[off];
                }
            });
    }
    return PYNN_OK;
}
