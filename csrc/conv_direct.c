/* conv_direct.c -- direct convolution for layers with a tiny kernel (few input values
 * per window and few filters, e.g. a first layer over 1 or 3 channels).
 *
 * There the im2col + GEMM route of conv.c is bound by memory, not arithmetic: cols is
 * KH*KW*C floats per output position (25 for LeNet's 5x5x1 first layer), written once
 * and read once, for only F multiply-adds per float, and the GEMM's tiles are mostly
 * empty with F = 6 columns.  Here each thread builds the windows of one output row (at
 * most CONV_DIRECT_JB positions at a time) in a small transposed buffer on its stack,
 * patch[k][j], k = (a, b, channel) in Keras order, and multiplies it with the kernel
 * straight from there, output positions in the vector lanes (the patch route).  A layer
 * over one channel at column stride 1 (a first layer over grey images: LeNet's, a tiny
 * CNN's) takes the lane route further down instead: a row of z is the vector, positions
 * and filters in its lanes.
 *
 * Which layers: pynn_conv2d_direct_supported() -- a fixed rule on the kernel's shape
 * and the activation, never on the thread count or the batch; which route, likewise.
 *
 * Determinism (the patch route; the lane route's is in its section):
 *   forward: one thread per output row (image, i); z[.., f] = (sum over k = 0 .. K-1,
 *     in order, of patch[k] * w[k, f]) + bias[f].
 *   filter gradient: the output rows are cut into chunks of a fixed number of rows (a
 *     function of OW only); one thread per chunk computes the chunk's partial dW and db,
 *     each element accumulated in CONV_DIRECT_LANES lanes (lane l: the positions j with
 *     j % LANES == l, rows in order) that are then added in lane order; the chunk
 *     partials are added in chunk order.  None of it depends on the thread count, which
 *     is 1 below CONV_DIRECT_MIN_PARALLEL_MACS.
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
           f <= CONV_DIRECT_MAX_F && !pynn_act_rowwise(act) && act >= PYNN_ACT_LINEAR &&
           act < PYNN_ACT_COUNT;
}

/* Threads for a convolution of `macs` multiply-adds: one below about 10 us of work.  The
 * direct kernels do some 20 multiply-adds a nanosecond, so smaller calls (a tiny CNN's
 * layer: 83K) lose more to starting and joining a team (microseconds, far more when the
 * other core is busy) than they gain.  Never changes a result. */
#define CONV_DIRECT_MIN_PARALLEL_MACS ((int64_t)1 << 18)

static int conv_direct_threads(int64_t macs) {
    return macs < CONV_DIRECT_MIN_PARALLEL_MACS ? 1 : pynn_threads();
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
 * arithmetic.  Here a row of z, ow x F floats, is itself the vector: lane e = j F + f,
 * filter e mod F.  Each input row is expanded once, xe[q F + f] = x[q - pad_left] (F
 * copies of every column, zeros outside), and then, since sw == 1, window column b of
 * every lane is the contiguous run xe[e + b F]; the kernel's values per lane come from
 * wpat[a, b][e] = w[a, b, 0, e mod F], which repeats every `period` logical vectors of
 * FL_LANES lanes (period = F / gcd(F, FL_LANES): 1 when F divides 16):
 *   forward   z[i][e]  = sum over (a, b), in Keras order, of
 *                          xe_{row(i, a)}[e + b F] * wpat[a, b][e],  then + bias[e mod F]
 *             (the patch route's products in the patch route's order);
 *   filter    per lane l of the pattern (l < period FL_LANES) and window entry (a, b):
 *             S[a, b][l] = sum over the chunk's units, rows i and logical vectors u with
 *             u mod period == l / FL_LANES, in that order, of
 *                          xe_{row(i, a)}[u FL_LANES + l' + b F] * dz[i][u FL_LANES + l']
 *             (l' = l mod FL_LANES; dz is 0 past ow F), db's S[l] likewise with dz alone;
 *             then dW[a, b, f] = 0 + the S[a, b][l] with l mod F == f, l in increasing
 *             order (fl_fold), and the chunk partials added in chunk order.
 * The instruction sets differ only in how many lanes a register holds; each lane's sums
 * are the same operations in the same order on all of them.
 * Work units: an image's output rows in blocks of rb rows (as many as FL_MAX_XROWS
 * expanded input rows allow: a function of the shape); the forward runs units on the
 * threads, the filter gradient chunks of fl_chunk_units() consecutive units.  Buffers are
 * on the thread's stack (at most about 100 KB, for the filter gradient). */

/* at least this many multiply-adds per chunk of the filter gradient */
#define FL_CHUNK_MACS 65536
#define FL_MAX_CHUNK_UNITS 64

static int64_t gcd_i64(int64_t a, int64_t b) {
    while (b != 0) {
        const int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int64_t fl_row_lanes(int64_t ow, int64_t f) {
    return (ow * f + FL_LANES - 1) / FL_LANES * FL_LANES;
}

static int fl_supported(int64_t c, int64_t kh, int64_t kw, int64_t sw, int64_t ow, int64_t f) {
    return c == 1 && sw == 1 && kw <= FL_MAX_KW && kh <= FL_MAX_XROWS && ow >= 1 &&
           fl_row_lanes(ow, f) <= FL_MAX_E;
}

static void fl_set_geometry(fl_geometry *g, int64_t n, int64_t h, int64_t w, int64_t kh,
                            int64_t kw, int64_t sh, int64_t pad_top, int64_t pad_left,
                            int64_t oh, int64_t ow, int64_t f, int act, float alpha) {
    const int64_t rb = (FL_MAX_XROWS - kh) / sh + 1;      /* output rows per unit */
    g->n = n;
    g->h = h;
    g->w = w;
    g->kh = kh;
    g->kw = kw;
    g->sh = sh;
    g->pad_top = pad_top;
    g->pad_left = pad_left;
    g->oh = oh;
    g->ow = ow;
    g->f = f;
    g->el = fl_row_lanes(ow, f);
    g->xl = (g->el + (kw - 1) * f + FL_LANES - 1) / FL_LANES * FL_LANES;
    g->period = f / gcd_i64(f, FL_LANES);
    g->rb = rb < oh ? rb : oh;
    g->blocks = oh > 0 ? (oh + g->rb - 1) / g->rb : 0;
    g->act = act;
    g->alpha = alpha;
}

/* Units per chunk of the filter gradient: a power of two, a function of the shape only. */
static int64_t fl_chunk_units(const fl_geometry *g) {
    const int64_t unit_macs = g->rb * g->ow * g->kh * g->kw * g->f;
    int64_t units = 1;
    while (units < FL_MAX_CHUNK_UNITS && 2 * units * unit_macs <= FL_CHUNK_MACS) units *= 2;
    return units;
}

static int fl_forward(const pynn_conv_direct_kernels *kern, float *z, float *y, const float *x,
                      const float *wgt, const float *bias, int64_t n, int64_t h, int64_t w,
                      int64_t kh, int64_t kw, int64_t sh, int64_t pad_top, int64_t pad_left,
                      int64_t oh, int64_t ow, int64_t f, int act, float alpha) {
    fl_geometry g;
    float wpat[CONV_DIRECT_MAX_K * FL_WSTRIDE] FL_ALIGNED;
    float bpat[FL_WSTRIDE] FL_ALIGNED;
    int64_t pl, p, e0, ff, u;
    fl_set_geometry(&g, n, h, w, kh, kw, sh, pad_top, pad_left, oh, ow, f, act, alpha);
    pl = g.period * FL_LANES;                             /* a multiple of f */
    for (p = 0; p < kh * kw; p++)                         /* w[a, b, 0, e mod f] */
        for (e0 = 0; e0 < pl; e0 += f)
            for (ff = 0; ff < f; ff++) wpat[p * FL_WSTRIDE + e0 + ff] = wgt[p * f + ff];
    if (bias != NULL)
        for (e0 = 0; e0 < pl; e0 += f)
            for (ff = 0; ff < f; ff++) bpat[e0 + ff] = bias[ff];
    /* units (image, block of output rows): each row of z and y is written by one thread */
    PYNN_PARALLEL_FOR(conv_direct_threads(n * oh * ow * kh * kw * f),
        for (u = 0; u < n * g.blocks; u++)
            kern->fl_forward_unit(z, y, x, wpat, bias != NULL ? bpat : NULL, &g, u););
    return PYNN_OK;
}

/* out[p f + ff] (p < k) = 0 + the lane sums accw[p][l] of filter ff (l mod f == ff), l
 * in increasing order; then out[k f + ff] likewise from accb.  pl (the pattern's lanes)
 * is a multiple of f. */
static void fl_fold(float *out, const float *accw, const float *accb, int64_t k, int64_t f,
                    int64_t pl) {
    int64_t p, l0, ff;
    for (p = 0; p <= k; p++) {                            /* window entries, then the bias */
        const float *s = p < k ? accw + p * FL_WSTRIDE : accb;
        float *o = out + p * f;
        for (ff = 0; ff < f; ff++) o[ff] = 0.0f;
        for (l0 = 0; l0 < pl; l0 += f)                    /* copies of the filters, in order */
            for (ff = 0; ff < f; ff++) o[ff] += s[l0 + ff];
    }
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

static int fl_filter_grad(const pynn_conv_direct_kernels *kern, float *dw, float *db, float *dz,
                          const float *x, const float *z, const float *y, const float *dy,
                          int64_t n, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                          int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                          int act, float alpha, float *work, int64_t work_size) {
    fl_geometry g;
    int64_t units, per_chunk, nchunks, k = kh * kw, part = k * f + f, ch;
    float *partials;
    fl_set_geometry(&g, n, h, w, kh, kw, sh, pad_top, pad_left, oh, ow, f, act, alpha);
    units = n * g.blocks;
    per_chunk = fl_chunk_units(&g);
    nchunks = (units + per_chunk - 1) / per_chunk;
    partials = partials_buffer(work, work_size, nchunks * part);
    PYNN_RETURN_IF(partials == NULL, PYNN_ENOMEM);
    /* chunks of units: each chunk's partial is written by one thread */
    PYNN_PARALLEL_FOR(conv_direct_threads(n * oh * ow * k * f),
        for (ch = 0; ch < nchunks; ch++) {
            const int64_t pl = g.period * FL_LANES;
            const int64_t u1 = (ch + 1) * per_chunk < units ? (ch + 1) * per_chunk : units;
            float accw[CONV_DIRECT_MAX_K * FL_WSTRIDE] FL_ALIGNED;
            float accb[FL_WSTRIDE] FL_ALIGNED;
            int64_t p, e;
            for (p = 0; p < k; p++)
                for (e = 0; e < pl; e++) accw[p * FL_WSTRIDE + e] = 0.0f;
            for (e = 0; e < pl; e++) accb[e] = 0.0f;
            kern->fl_filter_grad_units(accw, accb, dz, x, z, y, dy, &g, ch * per_chunk, u1);
            fl_fold(partials + ch * part, accw, accb, k, f, pl);
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
    if (fl_supported(c, kh, kw, sw, ow, f))
        return fl_forward(kern, z, y, x, wgt, bias, n, h, w, kh, kw, sh, pad_top, pad_left, oh,
                          ow, f, act, alpha);
    pad_kernel(wp, wgt, k, f, fp);
    /* output rows (image, i): each row of z and y is written by one thread */
    PYNN_PARALLEL_FOR(conv_direct_threads(n * oh * ow * k * f),
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
    if (fl_supported(c, kh, kw, sw, ow, f))
        return fl_filter_grad(kern, dw, db, dz, x, z, y, dy, n, h, w, kh, kw, sh, pad_top,
                              pad_left, oh, ow, f, act, alpha, work, work_size);
    partials = partials_buffer(work, work_size, nchunks * part);
    PYNN_RETURN_IF(partials == NULL, PYNN_ENOMEM);
    /* chunks of output rows: each chunk's partial is written by one thread */
    PYNN_PARALLEL_FOR(conv_direct_threads(n * oh * ow * k * f),
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
    if (fl_supported(c, kh, kw, sw, ow, f)) {
        fl_geometry g;
        int64_t per_chunk;
        fl_set_geometry(&g, n, h, w, kh, kw, sh, 0, 0, oh, ow, f, PYNN_ACT_LINEAR, 0.0f);
        per_chunk = fl_chunk_units(&g);
        return (n * g.blocks + per_chunk - 1) / per_chunk * (kh * kw * f + f);
    }
    rows_per_chunk = ow > CONV_DIRECT_JB ? 1 : CONV_DIRECT_BUF / round_up8(ow);
    return (rows + rows_per_chunk - 1) / rows_per_chunk * (kh * kw * c * f + f);
}
