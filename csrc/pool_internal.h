/* pool_internal.h -- the contract between pooling's driver (pool.c: geometry, threads,
 * which output goes where) and its window loops (pool_kernel.h, compiled once per
 * instruction set).  Not installed.
 *
 * Each function works on one window of one image (ximg / dimg: w columns, c channels),
 * rows [r0, r1) x columns [q0, q1), not empty, all c channels:
 *   window_max:  yo[0:c] = the first position's value, then m = x > m ? x : m over the
 *                other positions in row-major order (the forward of max pooling), taken
 *                a whole output row at a time by max_row (window j's columns from
 *                j sw - pl, clipped; 0 for a window with no input position), which also
 *                prefetches the pf_rows input rows from r1 on (the next row's new ones);
 *   window_mean: yo[0:c] = (0 + the positions' sum in row-major order) / their count;
 *   route_max:   adds g[0:c] onto dimg at the first position (row-major) whose x equals
 *                the window's maximum (as window_max computes it: bitwise y), + 0 at the
 *                other positions (which changes no sum that starts from +0); a NaN
 *                maximum (a NaN first value) matches no position;
 *   backward_3x3s2: the max's backward of a whole image (dimg, from ximg and its dy gimg)
 *                under 3x3 windows at stride 2 that all lie in x: route_max's sums over
 *                the windows in row-major order, bitwise, by a gather (pool_kernel.h);
 *                at: oh ow c int32 of scratch; next: the image the thread does next
 *                (prefetched), or NULL.
 * Lanes are channels, independent of one another, so every instruction set computes the
 * same bits (-ffp-contract=off). */
#ifndef PYNN_POOL_INTERNAL_H
#define PYNN_POOL_INTERNAL_H

#include <stdint.h>
#include "internal.h"

typedef struct {
    void (*max_row)(float *yrow, const float *ximg, int64_t r0, int64_t r1, int64_t w,
                    int64_t c, int64_t ow, int64_t pw, int64_t sw, int64_t pl,
                    int64_t pf_rows);
    void (*window_mean)(float *yo, const float *ximg, int64_t r0, int64_t r1, int64_t q0,
                        int64_t q1, int64_t w, int64_t c);
    void (*route_max)(float *dimg, const float *ximg, const float *g, int64_t r0, int64_t r1,
                      int64_t q0, int64_t q1, int64_t w, int64_t c);
    void (*backward_3x3s2)(float *dimg, const float *ximg, const float *gimg, int32_t *at,
                           int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow,
                           const float *next);
    /* the 2x2 / stride-2 windows inside x, an output row at a time (pool_kernel.h) */
    void (*maxpool_2x2_row)(float *yrow, const float *x0, const float *x1, int64_t ow,
                            int64_t c);
    void (*maxpool_2x2_row_backward)(float *d0, float *d1, const float *x0, const float *x1,
                                     const float *dyrow, int64_t ow, int64_t c);
    void (*avgpool_2x2_row)(float *yrow, const float *x0, const float *x1, int64_t ow,
                            int64_t c);
    void (*avgpool_2x2_row_backward)(float *d0, float *d1, const float *dyrow, int64_t ow,
                                     int64_t c);
} pynn_pool_kernels;

extern const pynn_pool_kernels pynn_pool_generic;    /* pool_generic.c */
#ifdef PYNN_HAVE_X86_KERNELS
extern const pynn_pool_kernels pynn_pool_avx2;       /* pool_avx2.c */
extern const pynn_pool_kernels pynn_pool_avx512;     /* pool_avx512.c */
#endif

#endif /* PYNN_POOL_INTERNAL_H */
