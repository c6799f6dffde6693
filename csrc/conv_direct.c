/* conv_direct.c -- direct convolution for layers with a tiny kernel (few input values
 * per window and few filters, e.g. a first layer over 1 or 3 channels).
 *
 * There the im2col + GEMM route of conv.c is bound by memory, not arithmetic: cols is
 * KH*KW*C floats per output position (25 for LeNet's 5x5x1 first layer), written once
 * and read once, for only F multiply-adds per float, and the GEMM's tiles are mostly
 * empty with F = 6 columns.  Here each thread builds the windows of one output row (at
 * most CONV_DIRECT_JB positions at a time) in a small transposed buffer on its stack,
 * patch[k][j], k = (a, b, channel) in Keras order, and multiplies it with the kernel
 * straight from there, output positions in the vector lanes.
 *
 * Which layers: pynn_conv2d_direct_supported() -- a fixed rule on the kernel's shape
 * and the activation, never on the thread count or the batch.
 *
 * Determinism:
 *   forward: one thread per output row (image, i); z[.., f] = (sum over k = 0 .. K-1,
 *     in order, of patch[k] * w[k, f]) + bias[f].
 *   filter gradient: the output rows are cut into chunks of a fixed number of rows (a
 *     function of OW only); one thread per chunk computes the chunk's partial dW and db,
 *     each element accumulated in CONV_DIRECT_LANES lanes (lane l: the positions j with
 *     j % LANES == l, rows in order) that are then added in lane order; the chunk
 *     partials are added in chunk order.  None of it depends on the thread count.
 *
 * Instruction sets: the loops that do the arithmetic (conv_direct_kernel.h) are compiled
 * once per dispatch level (conv_direct_generic.c, conv_direct_avx2.c, conv_direct_avx512.c);
 * this file takes the level's table once per call and keeps the work split, the threads
 * and the partial sums.  Every level gives bitwise the same results.
 */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "act_elementwise.h"
#include "conv_direct_internal.h"

int pynn_conv2d_direct_supported(int64_t kh, int64_t kw, int64_t c, int64_t f, int act) {
    return kh >= 1 && kw >= 1 && c >= 1 && f >= 1 && kh * kw * c <= CONV_DIRECT_MAX_K &&
           f <= CONV_DIRECT_MAX_F && act != PYNN_ACT_SOFTMAX && act >= PYNN_ACT_LINEAR &&
           act <= PYNN_ACT_GELU;
}

/* The loops of the level in use (dispatch.c), taken once per call. */
static const pynn_conv_direct_kernels *conv_direct_kernels(void) {
    switch (pynn_level()) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_conv_direct_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_conv_direct_avx2;
#endif
    default:
        return &pynn_conv_direct_generic;
    }
}

/* The kernel (K x F) padded with zero filters to fp = round_up(F, FT) columns. */
static void pad_kernel(float *wp, const float *wgt, int64_t k, int64_t f, int64_t fp) {
    int64_t p, e;
    for (p = 0; p < k; p++)
        for (e = 0; e < fp; e++) wp[p * fp + e] = e < f ? wgt[p * f + e] : 0.0f;
}

/* ---- one input channel at stride 1 along the row: lanes over (position, filter) ----
 *
 * With C == 1 the patch route above spends more on building the patches (KH*KW floats
 * per position) and on its padded tiles (F rounded up to 4, OW to 16) than on the
 * arithmetic.  Here a row of z, ow x F floats, is itself the vector: lane e = j F + f.
 * Each input row is expanded once, xe[q F + f] = x[q - pad_left] (F copies of every
 * column, zeros outside), and then, since sw == 1, window column b of every lane is the
 * contiguous run xe[e + b F]:
 *   forward   z[i][e]  = sum over (a, b), in Keras order, of
 *                          xe_{row(i, a)}[e + b F] * wpat[a, b][e]
 *             with wpat[a, b][e] = w[a, b, 0, e mod F]  (then + bias[e mod F]),
 *             the patch route's products in the patch route's order: bitwise its results;
 *   filter    dW[a, b, f] = over the lanes j F + f, j < ow, folded in a fixed order
 *             (xe_fold_lanes), of (sum over the chunk's rows i, in order, of
 *             xe_{row(i, a)}[j F + f + b F] * dz[i][j F + f]); db likewise with dz alone.
 * Work units: an image's output rows in blocks of xe_block_rows() rows (a function of the
 * shape only); for the filter gradient each unit is one chunk, chunk partials added in
 * chunk order.  Buffers are on the thread's stack (at most about 90 KB, for the filter
 * gradient). */

static int64_t xe_row_len(int64_t ow, int64_t kw, int64_t f) {
    return (xe_lanes(ow, f) + (kw - 1) * f + XE_LANES - 1) / XE_LANES * XE_LANES;
}

static int xe_supported(int64_t c, int64_t kh, int64_t kw, int64_t sw, int64_t ow, int64_t f) {
    return c == 1 && sw == 1 && kw <= XE_MAX_KW && kh <= XE_MAX_XROWS && ow >= 1 &&
           xe_lanes(ow, f) <= XE_MAX_E;
}

/* output rows per unit: as many as XE_MAX_XROWS expanded input rows allow */
static int64_t xe_block_rows(int64_t oh, int64_t sh, int64_t kh) {
    const int64_t rb = (XE_MAX_XROWS - kh) / sh + 1;
    return rb < oh ? rb : oh;
}

static int xe_forward(const pynn_conv_direct_kernels *kern, float *z, float *y, const float *x,
                      const float *wgt, const float *bias, int64_t n, int64_t h, int64_t w,
                      int64_t kh, int64_t kw, int64_t sh, int64_t pad_top, int64_t pad_left,
                      int64_t oh, int64_t ow, int64_t f, int act, float alpha) {
    const int64_t el = xe_lanes(ow, f), xl = xe_row_len(ow, kw, f);
    const int64_t rb = xe_block_rows(oh, sh, kh), blocks = (oh + rb - 1) / rb;
    float wpat[CONV_DIRECT_MAX_K * XE_MAX_E] XE_ALIGNED;
    float bpat[XE_MAX_E];
    int64_t p, e, u;
    for (p = 0; p < kh * kw; p++)                         /* w[a, b, 0, e mod f] */
        for (e = 0; e < el; e++) wpat[p * el + e] = wgt[p * f + e % f];
    if (bias != NULL)
        for (e = 0; e < ow * f; e++) bpat[e] = bias[e % f];
    /* units (image, block of output rows): each row of z and y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * kh * kw * f),
        for (u = 0; u < n * blocks; u++) {
            const int64_t img = u / blocks, i0 = (u % blocks) * rb;
            const int64_t nr = oh - i0 < rb ? oh - i0 : rb;
            float xi[XE_MAX_XROWS * XE_MAX_XL + XE_LANES] XE_ALIGNED;
            float *zb = z + (img * oh + i0) * ow * f;
            kern->xe_expand(xi, xl, x + img * h * w, h, w, i0 * sh - pad_top, (nr - 1) * sh + kh,
                            pad_left, ow + kw - 1, f);
            kern->xe_forward_rows(zb, xi, xl, wpat, bias != NULL ? bpat : NULL, nr, sh, kh, kw,
                                  f, ow);
            if (y != z || act != PYNN_ACT_LINEAR)
                pynn_act_span(y + (img * oh + i0) * ow * f, zb, nr * ow * f, act, alpha);
        });
    return PYNN_OK;
}

/* The caller's buffer for the chunks' partial sums when it is big enough, else one
 * allocated for this call (the caller frees it when it is not `work`). */
static float *partials_buffer(float *work, int64_t work_size, int64_t need) {
    if (work != NULL && work_size >= need) return work;
    return (float *)malloc((size_t)(need > 0 ? need : 1) * sizeof(float));
}

/* dw (kf values) and db (f values, may be NULL) = the sums of the chunks' partials, each
 * chunk a block of `part` floats (its dw, then its db), added in chunk order. */
static void add_partials(float *dw, float *db, const float *partials, int64_t nchunks,
                         int64_t part, int64_t kf, int64_t f) {
    int64_t ch, e;
    for (e = 0; e < kf; e++) dw[e] = partials[e];
    for (ch = 1; ch < nchunks; ch++)                      /* chunk order */
        for (e = 0; e < kf; e++) dw[e] += partials[ch * part + e];
    if (db != NULL) {
        for (e = 0; e < f; e++) db[e] = partials[kf + e];
        for (ch = 1; ch < nchunks; ch++)
            for (e = 0; e < f; e++) db[e] += partials[ch * part + kf + e];
    }
}

static int xe_filter_grad(const pynn_conv_direct_kernels *kern, float *dw, float *db, float *dz,
                          const float *x, const float *z, const float *y, const float *dy,
                          int64_t n, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                          int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                          int act, float alpha, float *work, int64_t work_size) {
    const int64_t el = xe_lanes(ow, f), xl = xe_row_len(ow, kw, f), span = ow * f;
    const int64_t rb = xe_block_rows(oh, sh, kh), blocks = (oh + rb - 1) / rb;
    const int64_t nchunks = n * blocks, k = kh * kw;
    const int64_t part = k * f + f;                       /* one chunk's dW and db */
    float *partials = partials_buffer(work, work_size, nchunks * part);
    int64_t ch;
    PYNN_RETURN_IF(partials == NULL, PYNN_ENOMEM);
    /* chunks (image, block of output rows): each chunk's partial is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * k * f),
        for (ch = 0; ch < nchunks; ch++) {
            const int64_t img = ch / blocks, i0 = (ch % blocks) * rb;
            const int64_t nr = oh - i0 < rb ? oh - i0 : rb;
            const int64_t o = (img * oh + i0) * span;
            float xi[XE_MAX_XROWS * XE_MAX_XL + XE_LANES] XE_ALIGNED;
            float dzb[XE_MAX_XROWS * XE_MAX_E] XE_ALIGNED;
            int64_t ii;
            /* the chunk's rows of dz are contiguous: one span */
            pynn_act_backward_span(dz + o, z + o, y + o, dy + o, nr * span, act, alpha);
            for (ii = 0; ii < nr; ii++) {                 /* rows of dz, zero padded */
                memcpy(dzb + ii * el, dz + o + ii * span, (size_t)span * sizeof(float));
                memset(dzb + ii * el + span, 0, (size_t)(el - span) * sizeof(float));
            }
            kern->xe_expand(xi, xl, x + img * h * w, h, w, i0 * sh - pad_top, (nr - 1) * sh + kh,
                            pad_left, ow + kw - 1, f);
            kern->xe_filter_grad_rows(partials + ch * part, xi, xl, dzb, nr, sh, kh, kw, f, ow);
        });
    add_partials(dw, db, partials, nchunks, part, k * f, f);
    if (partials != work) free(partials);
    return PYNN_OK;
}

/* z, y (n, oh, ow, f) = act(conv(x, wgt) + bias); x (n, h, w, c), wgt (kh, kw, c, f),
 * bias (f,) or NULL; y may equal z (then act must be linear). */
int pynn_conv2d_direct_forward(float *z, float *y, const float *x, const float *wgt,
                               const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                               int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                               int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                               float alpha) {
    const pynn_conv_direct_kernels *kern = conv_direct_kernels();
    const int64_t k = kh * kw * c;
    const int64_t fp = (f + CONV_DIRECT_FT - 1) / CONV_DIRECT_FT * CONV_DIRECT_FT;
    float wp[CONV_DIRECT_MAX_K * CONV_DIRECT_MAX_F];
    int64_t t;
    PYNN_RETURN_IF(!pynn_conv2d_direct_supported(kh, kw, c, f, act), PYNN_EINVAL);
    PYNN_RETURN_IF(n < 0 || h < 0 || w < 0 || sh < 1 || sw < 1 || pad_top < 0 || pad_left < 0 ||
                   oh < 0 || ow < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((z == NULL || y == NULL || x == NULL || wgt == NULL) && n * oh * ow > 0,
                   PYNN_EINVAL);
    if (n * oh * ow == 0) return PYNN_OK;
    if (xe_supported(c, kh, kw, sw, ow, f))
        return xe_forward(kern, z, y, x, wgt, bias, n, h, w, kh, kw, sh, pad_top, pad_left, oh,
                          ow, f, act, alpha);
    pad_kernel(wp, wgt, k, f, fp);
    /* output rows (image, i): each row of z and y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * k * f),
        for (t = 0; t < n * oh; t++) {
            const int64_t img = t / oh, i = t % oh;
            kern->forward_row(z + t * ow * f, x + img * h * w * c, wp, bias, h, w, c, kh, kw, sh,
                              sw, pad_top, pad_left, i, ow, f, fp);
            if (y != z || act != PYNN_ACT_LINEAR) pynn_act_span(y + t * ow * f, z + t * ow * f, ow * f, act, alpha);
        });
    return PYNN_OK;
}

/* dz = act'(z) dy (may be dy itself), dw (kh, kw, c, f) = sum over output positions of
 * window (x) outer dz, db (f,) = sum of dz (db may be NULL).  z, y the forward's. */
int pynn_conv2d_direct_backward_filter(float *dw, float *db, float *dz, const float *x,
                                       const float *z, const float *y, const float *dy,
                                       int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                       int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                       int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                                       int act, float alpha, float *work, int64_t work_size) {
    const pynn_conv_direct_kernels *kern = conv_direct_kernels();
    const int64_t k = kh * kw * c;
    const int64_t rows = n * oh;
    /* whole rows per patch buffer (one row, in blocks, when a row is wider than a block) */
    const int64_t rows_per_chunk = ow > CONV_DIRECT_JB || ow == 0 ? 1 : CONV_DIRECT_BUF / round_up8(ow);
    const int64_t nchunks = rows > 0 ? (rows + rows_per_chunk - 1) / rows_per_chunk : 0;
    const int64_t fp = (f + CONV_DIRECT_FT - 1) / CONV_DIRECT_FT * CONV_DIRECT_FT;
    const int64_t part = k * f + f;                       /* one chunk's dW and db */
    float *partials;
    int64_t ch;
    PYNN_RETURN_IF(!pynn_conv2d_direct_supported(kh, kw, c, f, act), PYNN_EINVAL);
    PYNN_RETURN_IF(n < 0 || h < 0 || w < 0 || sh < 1 || sw < 1 || pad_top < 0 || pad_left < 0 ||
                   oh < 0 || ow < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(dw == NULL || dz == NULL || dy == NULL || z == NULL || y == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(x == NULL && n * h * w * c > 0, PYNN_EINVAL);
    if (nchunks == 0 || ow == 0) {
        memset(dw, 0, (size_t)(k * f) * sizeof(float));
        if (db != NULL) memset(db, 0, (size_t)f * sizeof(float));
        return PYNN_OK;
    }
    if (xe_supported(c, kh, kw, sw, ow, f))
        return xe_filter_grad(kern, dw, db, dz, x, z, y, dy, n, h, w, kh, kw, sh, pad_top,
                              pad_left, oh, ow, f, act, alpha, work, work_size);
    partials = partials_buffer(work, work_size, nchunks * part);
    PYNN_RETURN_IF(partials == NULL, PYNN_ENOMEM);
    /* chunks of output rows: each chunk's partial is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * k * f),
        for (ch = 0; ch < nchunks; ch++) {
            const int64_t t0 = ch * rows_per_chunk;
            const int64_t t1 = t0 + rows_per_chunk < rows ? t0 + rows_per_chunk : rows;
            float patch[CONV_DIRECT_MAX_K * CONV_DIRECT_BUF];
            float dzt[CONV_DIRECT_MAX_F * CONV_DIRECT_BUF];
            float accw[CONV_DIRECT_MAX_K * CONV_DIRECT_MAX_F * CONV_DIRECT_LANES];
            float accb[CONV_DIRECT_MAX_F * CONV_DIRECT_LANES];
            float *out = partials + ch * part;
            int64_t t, p, q, l, pos = 0;
            memset(accw, 0, (size_t)(k * fp * CONV_DIRECT_LANES) * sizeof(float));
            memset(accb, 0, (size_t)(fp * CONV_DIRECT_LANES) * sizeof(float));
            /* the chunk's rows of dz are contiguous: one span */
            pynn_act_backward_span(dz + t0 * ow * f, z + t0 * ow * f, y + t0 * ow * f,
                                   dy + t0 * ow * f, (t1 - t0) * ow * f, act, alpha);
            for (t = t0; t < t1; t++) {                   /* output rows, in order */
                const int64_t img = t / oh, i = t % oh;
                int64_t j0;
                for (j0 = 0; j0 < ow; j0 += CONV_DIRECT_JB) {   /* column blocks, in order */
                    const int64_t jn = ow - j0 < CONV_DIRECT_JB ? ow - j0 : CONV_DIRECT_JB;
                    const int64_t jp = round_up8(jn);
                    int64_t jj;
                    if (pos + jp > CONV_DIRECT_BUF) {
                        kern->accumulate_filter_grad(accw, accb, patch, dzt, pos, k, fp);
                        pos = 0;
                    }
                    build_patch(patch + pos, CONV_DIRECT_BUF, x + img * h * w * c, h, w, c, kh,
                                kw, sh, sw, pad_top, pad_left, i, j0, jn, jp);
                    for (q = 0; q < fp; q++) {            /* dz transposed, zero padded */
                        float *restrict d = dzt + q * CONV_DIRECT_BUF + pos;
                        const float *src = dz + (t * ow + j0) * f + q;
                        if (q >= f) {
                            for (jj = 0; jj < jp; jj++) d[jj] = 0.0f;
                            continue;
                        }
                        for (jj = 0; jj < jn; jj++) d[jj] = src[jj * f];
                        for (; jj < jp; jj++) d[jj] = 0.0f;
                    }
                    pos += jp;
                }
            }
            kern->accumulate_filter_grad(accw, accb, patch, dzt, pos, k, fp);
            for (p = 0; p < k; p++)                       /* lanes, in order */
                for (q = 0; q < f; q++) {
                    const float *a = accw + (p * fp + q) * CONV_DIRECT_LANES;
                    float s = a[0];
                    for (l = 1; l < CONV_DIRECT_LANES; l++) s += a[l];
                    out[p * f + q] = s;
                }
            for (q = 0; q < f; q++) {
                const float *a = accb + q * CONV_DIRECT_LANES;
                float s = a[0];
                for (l = 1; l < CONV_DIRECT_LANES; l++) s += a[l];
                out[k * f + q] = s;
            }
        });
    add_partials(dw, db, partials, nchunks, part, k * f, f);
    if (partials != work) free(partials);
    return PYNN_OK;
}

/* Floats of partial sums pynn_conv2d_direct_backward_filter needs for this shape: one
 * (kernel + bias) gradient per chunk, the chunks fixed by the shape as in the function. */
int64_t pynn_conv2d_direct_filter_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                       int64_t kw, int64_t sh, int64_t sw, int64_t oh, int64_t ow,
                                       int64_t f) {
    const int64_t rows = n * oh;
    int64_t rows_per_chunk;
    (void)h;
    (void)w;
    if (n < 0 || oh < 0 || ow < 0 || f < 0 || kh < 1 || kw < 1 || c < 1 || sh < 1 || sw < 1)
        return PYNN_EINVAL;
    if (rows == 0 || ow == 0) return 0;
    if (xe_supported(c, kh, kw, sw, ow, f)) {
        const int64_t rb = xe_block_rows(oh, sh, kh);
        return n * ((oh + rb - 1) / rb) * (kh * kw * f + f);
    }
    rows_per_chunk = ow > CONV_DIRECT_JB ? 1 : CONV_DIRECT_BUF / round_up8(ow);
    return (rows + rows_per_chunk - 1) / rows_per_chunk * (kh * kw * c * f + f);
}
