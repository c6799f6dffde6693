/* batchnorm_internal.h -- the contract between batch normalization's driver (batchnorm.c:
 * chunks, threads, the per-column constants) and its row loops (batchnorm_kernel.h,
 * compiled once per instruction set).  Not installed.
 *
 * Each function works on rows [r0, r1) of a (rows x cols) array, all cols columns, the
 * rows in order; a column's arithmetic is that of batchnorm.c's header, expression by
 * expression, whatever the vector width (columns are lanes, independent of one another;
 * -ffp-contract=off), so every instruction set computes the same bits:
 *   add_rows:               acc[e] += x[r, e], one row at a time;
 *   add_squared_deviations: acc[e] += (x[r, e] - m[e])^2, one row at a time;
 *   add_gradient_rows:      sdy[e] += g[r, e] and
 *                           sxh[e] += g[r, e] * ((x[r, e] - mean[e]) * inv_std[e]),
 *                           g = dy, or relu'(dy) = (mask > 0 ? dy : 0) where mask (the
 *                           output of a ReLU that follows the layer) is not NULL;
 *   normalize_rows:         y = (x - mean) * inv_std [* gamma] [+ beta] (gamma, beta
 *                           may be NULL), then y = y > 0 ? y : 0 when relu;
 *   backward_rows:          dx = scale * ((g - mean_dy) - xhat * mean_dy_xhat), with
 *                           xhat = (x - mean) * inv_std and g as in add_gradient_rows;
 *                           dx may be dy. */
#ifndef PYNN_BATCHNORM_INTERNAL_H
#define PYNN_BATCHNORM_INTERNAL_H

#include <stdint.h>
#include "internal.h"

typedef struct {
    void (*add_rows)(float *acc, const float *x, int64_t r0, int64_t r1, int64_t cols);
    void (*add_squared_deviations)(float *acc, const float *x, const float *m, int64_t r0,
                                   int64_t r1, int64_t cols);
    void (*add_gradient_rows)(float *sdy, float *sxh, const float *x, const float *dy,
                              const float *mask, const float *mean, const float *inv_std,
                              int64_t r0, int64_t r1, int64_t cols);
    void (*normalize_rows)(float *y, const float *x, const float *mean, const float *inv_std,
                           const float *gamma, const float *beta, int64_t r0, int64_t r1,
                           int64_t cols, int relu);
    void (*backward_rows)(float *dx, const float *x, const float *dy, const float *mask,
                          const float *mean, const float *inv_std, const float *scale,
                          const float *mean_dy, const float *mean_dy_xhat, int64_t r0,
                          int64_t r1, int64_t cols);
} pynn_bn_kernels;

extern const pynn_bn_kernels pynn_bn_generic;        /* batchnorm_generic.c */
#ifdef PYNN_HAVE_X86_KERNELS
extern const pynn_bn_kernels pynn_bn_avx2;           /* batchnorm_avx2.c */
extern const pynn_bn_kernels pynn_bn_avx512;         /* batchnorm_avx512.c */
#endif

#endif /* PYNN_BATCHNORM_INTERNAL_H */
