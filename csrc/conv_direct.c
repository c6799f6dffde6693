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
 */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "act_elementwise.h"

/* The two loops that do the arithmetic are compiled for AVX-512, AVX2 and the baseline,
 * picked once at load time by the CPU's features (GCC's function multiversioning).  All
 * clones do the same operations in the same order (lanes are independent positions,
 * -ffp-contract=off), so they give bitwise the same results. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CONV_DIRECT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef CONV_DIRECT_CLONES
#define CONV_DIRECT_CLONES
#endif

/* CONV_DIRECT_LANES floats as one value (GCC/Clang vector extension: a ymm register in
 * the AVX clones, two xmm in the baseline); loads and stores through memcpy. */
typedef float conv_vec __attribute__((vector_size(32)));
static inline conv_vec vload(const float *p) { conv_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, conv_vec v) { memcpy(p, &v, sizeof v); }

#define CONV_DIRECT_MAX_K 32          /* KH*KW*C */
#define CONV_DIRECT_MAX_F 16          /* filters */
#define CONV_DIRECT_JB 64             /* output positions per patch block */
#define CONV_DIRECT_LANES 8           /* positions per vector */
#define CONV_DIRECT_FT 4              /* filters per register tile */
#define CONV_DIRECT_BUF 256           /* positions of a gradient patch buffer */

int pynn_conv2d_direct_supported(int64_t kh, int64_t kw, int64_t c, int64_t f, int act) {
    return kh >= 1 && kw >= 1 && c >= 1 && f >= 1 && kh * kw * c <= CONV_DIRECT_MAX_K &&
           f <= CONV_DIRECT_MAX_F && act != PYNN_ACT_SOFTMAX && act >= PYNN_ACT_LINEAR &&
           act <= PYNN_ACT_GELU;
}

static int64_t round_up8(int64_t v) { return (v + CONV_DIRECT_LANES - 1) / CONV_DIRECT_LANES * CONV_DIRECT_LANES; }

/* patch[k * ld + jj] for the output positions j0 .. j0+jn-1 of output row i of image
 * ximg; lanes jn .. jp-1 are zero. */
static inline void build_patch(float *restrict patch, int64_t ld, const float *restrict ximg,
                               int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                               int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                               int64_t i, int64_t j0, int64_t jn, int64_t jp) {
    int64_t a, b, cc, jj;
    for (a = 0; a < kh; a++) {                            /* window rows */
        const int64_t r = i * sh - pad_top + a;
        for (b = 0; b < kw; b++) {                        /* window columns */
            /* positions jj in [lo, hi) read column (j0 + jj) sw - pad_left + b inside x */
            const int64_t q0 = j0 * sw - pad_left + b;
            int64_t lo = q0 >= 0 ? 0 : (-q0 + sw - 1) / sw;
            int64_t hi = q0 < w ? (w - 1 - q0) / sw + 1 : 0;
            if (hi > jn) hi = jn;
            if (lo > hi) lo = hi;
            if (r < 0 || r >= h) lo = hi = 0;
            for (cc = 0; cc < c; cc++) {                  /* channels */
                float *restrict dst = patch + ((a * kw + b) * c + cc) * ld;
                const float *restrict xs = ximg + (r * w + q0) * c + cc;
                for (jj = 0; jj < lo; jj++) dst[jj] = 0.0f;
                if (sw == 1 && c == 1)
                    for (; jj < hi; jj++) dst[jj] = xs[jj];
                else
                    for (; jj < hi; jj++) dst[jj] = xs[jj * sw * c];
                for (; jj < jp; jj++) dst[jj] = 0.0f;
            }
        }
    }
}

/* The kernel (K x F) padded with zero filters to fp = round_up(F, FT) columns. */
static void pad_kernel(float *wp, const float *wgt, int64_t k, int64_t f, int64_t fp) {
    int64_t p, e;
    for (p = 0; p < k; p++)
        for (e = 0; e < fp; e++) wp[p * fp + e] = e < f ? wgt[p * f + e] : 0.0f;
}

/* z[j, 0:f] for the ow positions of output row i of image ximg (zrow: ow x f). */
static CONV_DIRECT_CLONES void forward_row(float *zrow, const float *ximg, const float *wp,
                                           const float *bias, int64_t h, int64_t w, int64_t c,
                                           int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                           int64_t pad_top, int64_t pad_left, int64_t i,
                                           int64_t ow, int64_t f, int64_t fp) {
    const int64_t k = kh * kw * c;
    float patch[CONV_DIRECT_MAX_K * CONV_DIRECT_JB];
    int64_t j0;
    for (j0 = 0; j0 < ow; j0 += CONV_DIRECT_JB) {  /* blocks of output columns */
        const int64_t jn = ow - j0 < CONV_DIRECT_JB ? ow - j0 : CONV_DIRECT_JB;
        const int64_t jp = (jn + 2 * CONV_DIRECT_LANES - 1) / (2 * CONV_DIRECT_LANES) * (2 * CONV_DIRECT_LANES);
        int64_t f0, jv;
        build_patch(patch, CONV_DIRECT_JB, ximg, h, w, c, kh, kw, sh, sw,
                    pad_top, pad_left, i, j0, jn, jp);
        for (f0 = 0; f0 < fp; f0 += CONV_DIRECT_FT)        /* filter tiles */
            for (jv = 0; jv < jp; jv += 2 * CONV_DIRECT_LANES) { /* pairs of position vectors */
                float acc[CONV_DIRECT_FT][2 * CONV_DIRECT_LANES];
                conv_vec v0 = {0}, v1 = {0}, v2 = {0}, v3 = {0};
                conv_vec u0 = {0}, u1 = {0}, u2 = {0}, u3 = {0};
                int64_t p, e, l;
                for (p = 0; p < k; p++) {            /* window entries, in order */
                    const conv_vec pv = vload(patch + p * CONV_DIRECT_JB + jv);
                    const conv_vec pu = vload(patch + p * CONV_DIRECT_JB + jv + CONV_DIRECT_LANES);
                    const float *wk = wp + p * fp + f0;
                    v0 += wk[0] * pv;
                    u0 += wk[0] * pu;
                    v1 += wk[1] * pv;
                    u1 += wk[1] * pu;
                    v2 += wk[2] * pv;
                    u2 += wk[2] * pu;
                    v3 += wk[3] * pv;
                    u3 += wk[3] * pu;
                }
                vstore(acc[0], v0);
                vstore(acc[1], v1);
                vstore(acc[2], v2);
                vstore(acc[3], v3);
                vstore(acc[0] + CONV_DIRECT_LANES, u0);
                vstore(acc[1] + CONV_DIRECT_LANES, u1);
                vstore(acc[2] + CONV_DIRECT_LANES, u2);
                vstore(acc[3] + CONV_DIRECT_LANES, u3);
                for (l = 0; l < 2 * CONV_DIRECT_LANES && jv + l < jn; l++) {
                    float *zo = zrow + (j0 + jv + l) * f;
                    for (e = 0; e < CONV_DIRECT_FT && f0 + e < f; e++)
                        zo[f0 + e] = bias != NULL ? acc[e][l] + bias[f0 + e] : acc[e][l];
                }
            }
    }
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
#define XE_LANES 16
#define XE_MAX_E 192                  /* ow * F: lanes of one output row */
#define XE_MAX_KW 8
#define XE_MAX_XROWS 32               /* expanded input rows per unit */
#define XE_MAX_XL (XE_MAX_E + (XE_MAX_KW - 1) * CONV_DIRECT_MAX_F)

typedef float xe_vec __attribute__((vector_size(64)));
#define XE_ALIGNED __attribute__((aligned(64)))
static inline xe_vec xload(const float *p) { xe_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void xstore(float *p, xe_vec v) { memcpy(p, &v, sizeof v); }

/* lanes of a row rounded up to whole groups of 4 vectors (the forward's tile) */
static int64_t xe_lanes(int64_t ow, int64_t f) {
    const int64_t g = 4 * XE_LANES;
    return (ow * f + g - 1) / g * g;
}

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

/* xi[rr * xl + q f + ff] = x[r_lo + rr][q - pad_left] for q < nq (0 outside the image),
 * the rest of each row 0; rows rr < nrows.  Each value is stored as a whole vector of
 * copies, the next value's vector overwriting all but the first f lanes (xi has
 * XE_LANES floats of slack past the last row). */
static CONV_DIRECT_CLONES void xe_expand(float *restrict xi, int64_t xl,
                                         const float *restrict ximg, int64_t h, int64_t w,
                                         int64_t r_lo, int64_t nrows, int64_t pad_left,
                                         int64_t nq, int64_t f) {
    int64_t rr, q, e;
    for (rr = 0; rr < nrows; rr++) {                      /* input rows */
        const int64_t r = r_lo + rr;
        float *restrict d = xi + rr * xl;
        if (r < 0 || r >= h) {
            memset(d, 0, (size_t)xl * sizeof(float));
            continue;
        }
        for (q = 0; q < nq; q++) {                        /* input columns, padded */
            const int64_t col = q - pad_left;
            const float v = col >= 0 && col < w ? ximg[r * w + col] : 0.0f;
            xstore(d + q * f, (xe_vec){0} + v);           /* f copies (and some spill) */
        }
        for (e = nq * f; e < xl; e++) d[e] = 0.0f;
    }
}

/* z rows [0, nrows) of a unit (zrow0: its first row, ow f floats each) from the
 * expanded rows xi (row ii*sh + a for output row ii, window row a). */
static CONV_DIRECT_CLONES void xe_forward_rows(float *zrow0, const float *xi, int64_t xl,
                                               const float *wpat, const float *bpat,
                                               int64_t nrows, int64_t sh, int64_t kh,
                                               int64_t kw, int64_t f, int64_t ow) {
    const int64_t el = xe_lanes(ow, f), span = ow * f;
    float zr[XE_MAX_E] XE_ALIGNED;
    int64_t ii, v0, a, b, e;
    for (ii = 0; ii < nrows; ii++) {                      /* output rows */
        for (v0 = 0; v0 < el; v0 += 4 * XE_LANES) {       /* groups of 4 lane vectors */
            xe_vec s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
            for (a = 0; a < kh; a++) {                    /* window rows, in order */
                const float *xr = xi + (ii * sh + a) * xl + v0;
                const float *wr = wpat + a * kw * el + v0;
                for (b = 0; b < kw; b++) {                /* window columns, in order */
                    const float *xb = xr + b * f, *wb = wr + b * el;
                    s0 += xload(wb) * xload(xb);
                    s1 += xload(wb + XE_LANES) * xload(xb + XE_LANES);
                    s2 += xload(wb + 2 * XE_LANES) * xload(xb + 2 * XE_LANES);
                    s3 += xload(wb + 3 * XE_LANES) * xload(xb + 3 * XE_LANES);
                }
            }
            xstore(zr + v0, s0);
            xstore(zr + v0 + XE_LANES, s1);
            xstore(zr + v0 + 2 * XE_LANES, s2);
            xstore(zr + v0 + 3 * XE_LANES, s3);
        }
        {
            float *restrict zo = zrow0 + ii * span;
            if (bpat != NULL)
                for (e = 0; e < span; e++) zo[e] = zr[e] + bpat[e];
            else
                memcpy(zo, zr, (size_t)span * sizeof(float));
        }
    }
}

/* r[0 .. f) = the sum over j < nj of r[j f .. j f + f), in a fixed order (a function of
 * nj only): the upper terms folded onto the lower ones, halving each time, contiguous
 * vector adds.  r is scratch. */
static inline void xe_fold_lanes(float *restrict r, int64_t nj, int64_t f) {
    while (nj > 1) {
        const int64_t half = nj / 2, keep = nj - half;
        float *restrict hi = r + keep * f;
        int64_t e;
        for (e = 0; e < half * f; e++) r[e] += hi[e];    /* j + keep onto j, j < half */
        nj = keep;
    }
}

/* acc[b * el + v ..] for b < KW: the chunk's sums over its rows (in order) of
 * xi_{row(ii, a)}[v + b f] dz[ii][v], one window row a, lane vector v. */
static inline __attribute__((always_inline)) void
xe_grad_window_row(float *acc, const float *xi, int64_t xl, const float *dzb, int64_t el,
                   int64_t nrows, int64_t sh, int64_t a, int64_t f, const int64_t KW) {
    int64_t v, ii, b;
    for (v = 0; v < el; v += XE_LANES) {                  /* lane vectors */
        xe_vec s[XE_MAX_KW];
        for (b = 0; b < KW; b++) s[b] = (xe_vec){0};
        for (ii = 0; ii < nrows; ii++) {                  /* the chunk's rows, in order */
            const xe_vec d = xload(dzb + ii * el + v);
            const float *xr = xi + (ii * sh + a) * xl + v;
            for (b = 0; b < KW; b++)                      /* window columns */
                s[b] += xload(xr + b * f) * d;
        }
        for (b = 0; b < KW; b++) xstore(acc + b * el + v, s[b]);
    }
}

/* Row stride 1, a 5x5 window (LeNet's): the loop of xe_grad_window_row turned inside
 * out so that each loaded input vector serves all 5 window rows: per lane vector, 25
 * accumulators, input rows r in order, output row ii = r - a for window row a.  Each
 * accumulator still sums its rows ii in increasing order: the same results. */
static inline __attribute__((always_inline)) void
xe_grad_5x5_term(xe_vec s[5][5], const xe_vec xb[5], const float *dzb, int64_t el,
                 int64_t v, int64_t r, int64_t nrows, int guarded) {
    int64_t a, b;
    for (a = 0; a < 5; a++) {                             /* window rows */
        const int64_t ii = r - a;
        xe_vec d;
        if (guarded && (ii < 0 || ii >= nrows)) continue;
        d = xload(dzb + ii * el + v);
        for (b = 0; b < 5; b++) s[a][b] += xb[b] * d;    /* window columns */
    }
}

static inline __attribute__((always_inline)) void
xe_grad_5x5(float *acc, const float *xi, int64_t xl, const float *dzb, int64_t el,
            int64_t nrows, int64_t f) {
    int64_t v, r, a, b;
    for (v = 0; v < el; v += XE_LANES) {                  /* lane vectors */
        xe_vec s[5][5];
        for (a = 0; a < 5; a++)
            for (b = 0; b < 5; b++) s[a][b] = (xe_vec){0};
        for (r = 0; r < nrows + 4; r++) {                 /* input rows, in order */
            xe_vec xb[5];
            const float *xr = xi + r * xl + v;
            for (b = 0; b < 5; b++) xb[b] = xload(xr + b * f);
            if (r >= 4 && r < nrows)
                xe_grad_5x5_term(s, xb, dzb, el, v, r, nrows, 0);
            else
                xe_grad_5x5_term(s, xb, dzb, el, v, r, nrows, 1);
        }
        for (a = 0; a < 5; a++)
            for (b = 0; b < 5; b++) xstore(acc + (a * 5 + b) * el + v, s[a][b]);
    }
}

/* One chunk's dW (kh, kw, 1, f) and db (f,) into out (kh kw f + f floats): dzb holds the
 * chunk's nrows rows of dz, el lanes each (zero past ow f), xi its expanded rows.
 * Each element: per lane, the rows in order; then the lanes of its filter folded by
 * xe_fold_lanes. */
static CONV_DIRECT_CLONES void xe_filter_grad_rows(float *out, const float *xi, int64_t xl,
                                                   const float *dzb, int64_t nrows,
                                                   int64_t sh, int64_t kh, int64_t kw,
                                                   int64_t f, int64_t ow) {
    const int64_t el = xe_lanes(ow, f);
    float acc[CONV_DIRECT_MAX_K * XE_MAX_E] XE_ALIGNED;
    int64_t a, b, v, ii, ff;
    if (kh == 5 && kw == 5 && sh == 1) {
        xe_grad_5x5(acc, xi, xl, dzb, el, nrows, f);
        for (b = 0; b < 25; b++) {                        /* lanes of each filter */
            xe_fold_lanes(acc + b * el, ow, f);
            for (ff = 0; ff < f; ff++) out[b * f + ff] = acc[b * el + ff];
        }
    }
    for (a = 0; a < kh && !(kh == 5 && kw == 5 && sh == 1); a++) {  /* window rows */
        if (kw == 5)
            xe_grad_window_row(acc, xi, xl, dzb, el, nrows, sh, a, f, 5);
        else if (kw == 3)
            xe_grad_window_row(acc, xi, xl, dzb, el, nrows, sh, a, f, 3);
        else
            xe_grad_window_row(acc, xi, xl, dzb, el, nrows, sh, a, f, kw);
        for (b = 0; b < kw; b++) {                        /* lanes of each filter */
            xe_fold_lanes(acc + b * el, ow, f);
            for (ff = 0; ff < f; ff++) out[(a * kw + b) * f + ff] = acc[b * el + ff];
        }
    }
    for (v = 0; v < el; v += XE_LANES) {                  /* bias: rows in order */
        xe_vec t = {0};
        for (ii = 0; ii < nrows; ii++) t += xload(dzb + ii * el + v);
        xstore(acc + v, t);
    }
    xe_fold_lanes(acc, ow, f);
    for (ff = 0; ff < f; ff++) out[kh * kw * f + ff] = acc[ff];
}

static int xe_forward(float *z, float *y, const float *x, const float *wgt, const float *bias,
                      int64_t n, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                      int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                      int act, float alpha) {
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
            xe_expand(xi, xl, x + img * h * w, h, w, i0 * sh - pad_top, (nr - 1) * sh + kh,
                      pad_left, ow + kw - 1, f);
            xe_forward_rows(zb, xi, xl, wpat, bias != NULL ? bpat : NULL, nr, sh, kh, kw, f, ow);
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

static int xe_filter_grad(float *dw, float *db, float *dz, const float *x, const float *z,
                          const float *y, const float *dy, int64_t n, int64_t h, int64_t w,
                          int64_t kh, int64_t kw, int64_t sh, int64_t pad_top, int64_t pad_left,
                          int64_t oh, int64_t ow, int64_t f, int act, float alpha,
                          float *work, int64_t work_size) {
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
            xe_expand(xi, xl, x + img * h * w, h, w, i0 * sh - pad_top, (nr - 1) * sh + kh,
                      pad_left, ow + kw - 1, f);
            xe_filter_grad_rows(partials + ch * part, xi, xl, dzb, nr, sh, kh, kw, f, ow);
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
        return xe_forward(z, y, x, wgt, bias, n, h, w, kh, kw, sh, pad_top, pad_left, oh, ow,
                          f, act, alpha);
    pad_kernel(wp, wgt, k, f, fp);
    /* output rows (image, i): each row of z and y is written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * oh * ow * k * f),
        for (t = 0; t < n * oh; t++) {
            const int64_t img = t / oh, i = t % oh;
            forward_row(z + t * ow * f, x + img * h * w * c, wp, bias, h, w, c, kh, kw, sh, sw,
                        pad_top, pad_left, i, ow, f, fp);
            if (y != z || act != PYNN_ACT_LINEAR) pynn_act_span(y + t * ow * f, z + t * ow * f, ow * f, act, alpha);
        });
    return PYNN_OK;
}

/* accw[(p fp + e) LANES + l] += sum over the positions v = l, l + LANES, .. < len (in
 * order) of patch[p][v] dzt[e][v]; accb likewise with dzt alone.  Rows of patch and dzt
 * are CONV_DIRECT_BUF apart; len is a multiple of LANES. */
static CONV_DIRECT_CLONES void accumulate_filter_grad(float *restrict accw, float *restrict accb,
                                   const float *restrict patch, const float *restrict dzt,
                                   int64_t len, int64_t k, int64_t fp) {
    int64_t p, f0, e, jv;
    for (e = 0; e < fp; e++) {                            /* bias: filters */
        conv_vec acc = vload(accb + e * CONV_DIRECT_LANES);
        for (jv = 0; jv < len; jv += CONV_DIRECT_LANES)
            acc += vload(dzt + e * CONV_DIRECT_BUF + jv);
        vstore(accb + e * CONV_DIRECT_LANES, acc);
    }
    for (p = 0; p + 1 < k; p += 2)                        /* pairs of window entries */
        for (f0 = 0; f0 < fp; f0 += CONV_DIRECT_FT) {     /* filter tiles */
            float *a = accw + (p * fp + f0) * CONV_DIRECT_LANES;
            float *b = accw + ((p + 1) * fp + f0) * CONV_DIRECT_LANES;
            const float *d = dzt + f0 * CONV_DIRECT_BUF;
            conv_vec v0 = vload(a), v1 = vload(a + CONV_DIRECT_LANES);
            conv_vec v2 = vload(a + 2 * CONV_DIRECT_LANES), v3 = vload(a + 3 * CONV_DIRECT_LANES);
            conv_vec u0 = vload(b), u1 = vload(b + CONV_DIRECT_LANES);
            conv_vec u2 = vload(b + 2 * CONV_DIRECT_LANES), u3 = vload(b + 3 * CONV_DIRECT_LANES);
            for (jv = 0; jv < len; jv += CONV_DIRECT_LANES) {   /* positions, in order */
                const conv_vec pv = vload(patch + p * CONV_DIRECT_BUF + jv);
                const conv_vec pu = vload(patch + (p + 1) * CONV_DIRECT_BUF + jv);
                const conv_vec d0 = vload(d + jv), d1 = vload(d + CONV_DIRECT_BUF + jv);
                const conv_vec d2 = vload(d + 2 * CONV_DIRECT_BUF + jv);
                const conv_vec d3 = vload(d + 3 * CONV_DIRECT_BUF + jv);
                v0 += pv * d0;
                u0 += pu * d0;
                v1 += pv * d1;
                u1 += pu * d1;
                v2 += pv * d2;
                u2 += pu * d2;
                v3 += pv * d3;
                u3 += pu * d3;
            }
            vstore(a, v0);
            vstore(a + CONV_DIRECT_LANES, v1);
            vstore(a + 2 * CONV_DIRECT_LANES, v2);
            vstore(a + 3 * CONV_DIRECT_LANES, v3);
            vstore(b, u0);
            vstore(b + CONV_DIRECT_LANES, u1);
            vstore(b + 2 * CONV_DIRECT_LANES, u2);
            vstore(b + 3 * CONV_DIRECT_LANES, u3);
        }
    for (; p < k; p++)                                    /* the last window entry */
        for (f0 = 0; f0 < fp; f0 += CONV_DIRECT_FT) {     /* filter tiles */
            float *a = accw + (p * fp + f0) * CONV_DIRECT_LANES;
            const float *d = dzt + f0 * CONV_DIRECT_BUF;
            conv_vec v0 = vload(a), v1 = vload(a + CONV_DIRECT_LANES);
            conv_vec v2 = vload(a + 2 * CONV_DIRECT_LANES), v3 = vload(a + 3 * CONV_DIRECT_LANES);
            for (jv = 0; jv < len; jv += CONV_DIRECT_LANES) {   /* positions, in order */
                const conv_vec pv = vload(patch + p * CONV_DIRECT_BUF + jv);
                v0 += pv * vload(d + jv);
                v1 += pv * vload(d + CONV_DIRECT_BUF + jv);
                v2 += pv * vload(d + 2 * CONV_DIRECT_BUF + jv);
                v3 += pv * vload(d + 3 * CONV_DIRECT_BUF + jv);
            }
            vstore(a, v0);
            vstore(a + CONV_DIRECT_LANES, v1);
            vstore(a + 2 * CONV_DIRECT_LANES, v2);
            vstore(a + 3 * CONV_DIRECT_LANES, v3);
        }
}

/* dz = act'(z) dy (may be dy itself), dw (kh, kw, c, f) = sum over output positions of
 * window (x) outer dz, db (f,) = sum of dz (db may be NULL).  z, y the forward's. */
int pynn_conv2d_direct_backward_filter(float *dw, float *db, float *dz, const float *x,
                                       const float *z, const float *y, const float *dy,
                                       int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                       int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                       int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                                       int act, float alpha, float *work, int64_t work_size) {
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
        return xe_filter_grad(dw, db, dz, x, z, y, dy, n, h, w, kh, kw, sh, pad_top, pad_left,
                              oh, ow, f, act, alpha, work, work_size);
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
                        accumulate_filter_grad(accw, accb, patch, dzt, pos, k, fp);
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
            accumulate_filter_grad(accw, accb, patch, dzt, pos, k, fp);
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
