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
#define FL_LANES 16                   /* lanes of a logical vector: the unit of the sums */
#define FL_MAX_E 192                  /* ow * F rounded up to FL_LANES: lanes of a row */
#define FL_MAX_KW 8
#define FL_MAX_XROWS 32               /* expanded input rows per unit */
#define FL_MAX_XL (FL_MAX_E + (FL_MAX_KW - 1) * CONV_DIRECT_MAX_F)
#define FL_MAX_PERIOD 15              /* F / gcd(F, FL_LANES) for F <= 16 */
#define FL_WSTRIDE (FL_MAX_PERIOD * FL_LANES)  /* floats between window entries' patterns */
#define FL_ALIGNED __attribute__((aligned(64)))

static inline int64_t round_up8(int64_t v) {
    return (v + CONV_DIRECT_LANES - 1) / CONV_DIRECT_LANES * CONV_DIRECT_LANES;
}

/* The shape of a one-channel convolution as the route walks it (conv_direct.c):
 * n images, units of rb output rows of one image (blocks units per image), each row ow f lanes
 * rounded up to el = a multiple of FL_LANES, expanded input rows of xl floats; the
 * filter of lane l of a row is l mod f, so the lane pattern repeats every `period`
 * logical vectors (period = f / gcd(f, FL_LANES)). */
typedef struct {
    int64_t n, h, w, kh, kw, sh, pad_top, pad_left, oh, ow, f;
    int64_t el, xl, period, rb, blocks;
    int act;
    float alpha;
} fl_geometry;

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
    /* z and y = act(z) of unit u (one-channel route); wpat (kh kw entries FL_WSTRIDE
     * apart, period FL_LANES floats each) and bpat (period FL_LANES floats, or NULL) the
     * kernel and bias in the lane pattern */
    void (*fl_forward_unit)(float *z, float *y, const float *x, const float *wpat,
                            const float *bpat, const fl_geometry *g, int64_t u);
    /* dz = act'(z) dy on units [u0, u1), and their terms added to the lane sums accw
     * (kh kw entries FL_WSTRIDE apart, period FL_LANES floats each) and accb (period
     * FL_LANES floats) (one-channel route) */
    void (*fl_filter_grad_units)(float *accw, float *accb, float *dz, const float *x,
                                 const float *z, const float *y, const float *dy,
                                 const fl_geometry *g, int64_t u0, int64_t u1);
} pynn_conv_direct_kernels;

extern const pynn_conv_direct_kernels pynn_conv_direct_generic;
#ifdef PYNN_HAVE_X86_KERNELS
extern const pynn_conv_direct_kernels pynn_conv_direct_avx2;
extern const pynn_conv_direct_kernels pynn_conv_direct_avx512;
#endif

#endif /* PYNN_CONV_DIRECT_INTERNAL_H */
