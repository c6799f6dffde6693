/* conv_direct_internal.h -- the contract between the direct convolution's driver
 * (conv_direct.c: work split, threads, partial sums) and its arithmetic loops
 * (conv_direct_kernel.h, compiled once per instruction set).  Not installed.
 *
 * The loops of one instruction set form a table, pynn_conv_direct_kernels; the driver
 * takes the table of pynn_level() once per call (internal.h) and runs only its loops. */
#ifndef PYNN_CONV_DIRECT_INTERNAL_H
#define PYNN_CONV_DIRECT_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include "internal.h"

#define CONV_DIRECT_MAX_K 32          /* KH*KW*C */
#define CONV_DIRECT_MAX_F 16          /* filters */
#define CONV_DIRECT_JB 64             /* output positions per patch block */
#define CONV_DIRECT_LANES 8           /* positions per vector */
#define CONV_DIRECT_FT 4              /* filters per register tile */
#define CONV_DIRECT_BUF 256           /* positions of a gradient patch buffer */

/* The one-channel route (conv_direct.c explains it) */
#define XE_LANES 16
#define XE_MAX_E 192                  /* ow * F: lanes of one output row */
#define XE_MAX_KW 8
#define XE_MAX_XROWS 32               /* expanded input rows per unit */
#define XE_MAX_XL (XE_MAX_E + (XE_MAX_KW - 1) * CONV_DIRECT_MAX_F)
#define XE_ALIGNED __attribute__((aligned(64)))

static inline int64_t round_up8(int64_t v) {
    return (v + CONV_DIRECT_LANES - 1) / CONV_DIRECT_LANES * CONV_DIRECT_LANES;
}

/* lanes of a row rounded up to whole groups of 4 vectors (the forward's tile) */
static inline int64_t xe_lanes(int64_t ow, int64_t f) {
    const int64_t g = 4 * XE_LANES;
    return (ow * f + g - 1) / g * g;
}

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

/* The loops, one table per instruction set (arguments: conv_direct_kernel.h). */
typedef struct {
    /* z[j, 0:f] for the ow positions of output row i of image ximg (patch route) */
    void (*forward_row)(float *zrow, const float *ximg, const float *wp, const float *bias,
                        int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int64_t pad_top, int64_t pad_left, int64_t i, int64_t ow,
                        int64_t f, int64_t fp);
    /* the filter gradient's lane sums over one patch buffer (patch route) */
    void (*accumulate_filter_grad)(float *accw, float *accb, const float *patch,
                                   const float *dzt, int64_t len, int64_t k, int64_t fp);
    /* the expanded input rows of a unit (one-channel route) */
    void (*xe_expand)(float *xi, int64_t xl, const float *ximg, int64_t h, int64_t w,
                      int64_t r_lo, int64_t nrows, int64_t pad_left, int64_t nq, int64_t f);
    /* the z rows of a unit (one-channel route) */
    void (*xe_forward_rows)(float *zrow0, const float *xi, int64_t xl, const float *wpat,
                            const float *bpat, int64_t nrows, int64_t sh, int64_t kh,
                            int64_t kw, int64_t f, int64_t ow);
    /* one chunk's dW and db (one-channel route) */
    void (*xe_filter_grad_rows)(float *out, const float *xi, int64_t xl, const float *dzb,
                                int64_t nrows, int64_t sh, int64_t kh, int64_t kw, int64_t f,
                                int64_t ow);
} pynn_conv_direct_kernels;

extern const pynn_conv_direct_kernels pynn_conv_direct_generic;
#ifdef PYNN_HAVE_X86_KERNELS
extern const pynn_conv_direct_kernels pynn_conv_direct_avx2;
extern const pynn_conv_direct_kernels pynn_conv_direct_avx512;
#endif

#endif /* PYNN_CONV_DIRECT_INTERNAL_H */
