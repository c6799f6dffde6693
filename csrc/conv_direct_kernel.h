/* conv_direct_kernel.h -- the arithmetic loops of the direct convolution, written once
 * and compiled once per instruction set: conv_direct_generic.c, conv_direct_avx2.c and
 * conv_direct_avx512.c each define CONV_DIRECT_KERNELS, the name of their table
 * (conv_direct_internal.h), and include this file under their own -m flags.
 *
 * The vectors are GCC/Clang vector extensions, not intrinsics: the same source becomes
 * SSE2, AVX2 or AVX-512 code.  Every instruction set does the same operations in the
 * same order (lanes are independent positions or filters, -ffp-contract=off), so all
 * give bitwise the same results.  Which loop runs when, and why: conv_direct.c.
 */
#ifndef CONV_DIRECT_KERNELS
#error "conv_direct_kernel.h: define CONV_DIRECT_KERNELS (the table's name) first"
#endif

#include <string.h>
#include "internal.h"
#include "conv_direct_internal.h"

/* CONV_DIRECT_LANES floats as one value (a ymm register with AVX, two xmm in the
 * baseline); loads and stores through memcpy. */
typedef float conv_vec __attribute__((vector_size(32)));
static inline conv_vec vload(const float *p) { conv_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, conv_vec v) { memcpy(p, &v, sizeof v); }

/* XE_LANES floats as one value (a zmm register with AVX-512). */
typedef float xe_vec __attribute__((vector_size(64)));
static inline xe_vec xload(const float *p) { xe_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void xstore(float *p, xe_vec v) { memcpy(p, &v, sizeof v); }

/* z[j, 0:f] for the ow positions of output row i of image ximg (zrow: ow x f). */
static void forward_row(float *zrow, const float *ximg, const float *wp, const float *bias,
                        int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int64_t pad_top, int64_t pad_left, int64_t i, int64_t ow,
                        int64_t f, int64_t fp) {
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

/* accw[(p fp + e) LANES + l] += sum over the positions v = l, l + LANES, .. < len (in
 * order) of patch[p][v] dzt[e][v]; accb likewise with dzt alone.  Rows of patch and dzt
 * are CONV_DIRECT_BUF apart; len is a multiple of LANES. */
static void accumulate_filter_grad(float *restrict accw, float *restrict accb,
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

/* ---- the one-channel route ---- */

/* xi[rr * xl + q f + ff] = x[r_lo + rr][q - pad_left] for q < nq (0 outside the image),
 * the rest of each row 0; rows rr < nrows.  Each value is stored as a whole vector of
 * copies, the next value's vector overwriting all but the first f lanes (xi has
 * XE_LANES floats of slack past the last row). */
static void xe_expand(float *restrict xi, int64_t xl, const float *restrict ximg, int64_t h,
                      int64_t w, int64_t r_lo, int64_t nrows, int64_t pad_left, int64_t nq,
                      int64_t f) {
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
static void xe_forward_rows(float *zrow0, const float *xi, int64_t xl, const float *wpat,
                            const float *bpat, int64_t nrows, int64_t sh, int64_t kh, int64_t kw,
                            int64_t f, int64_t ow) {
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
static void xe_filter_grad_rows(float *out, const float *xi, int64_t xl, const float *dzb,
                                int64_t nrows, int64_t sh, int64_t kh, int64_t kw, int64_t f,
                                int64_t ow) {
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

const pynn_conv_direct_kernels CONV_DIRECT_KERNELS = {
    forward_row, accumulate_filter_grad, xe_expand, xe_forward_rows, xe_filter_grad_rows,
};
