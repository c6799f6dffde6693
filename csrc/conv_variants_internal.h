/* conv_variants_internal.h -- the contract between conv_variants.c (geometry, threads,
 * which output goes where) and the depthwise loops of conv_variants_kernel.h, compiled once
 * per instruction set (engineer B).  Not installed.
 *
 * The depthwise convolution with depth multiplier 1 (groups = c = f, kernel (kh, kw, 1, c)):
 * every channel is independent, so the loops run over blocks of DW_BLOCK contiguous
 * channels held in local arrays (registers), the taps and positions in a fixed order:
 *   forward_rows:     z rows t in [t0, t1) of the n*oh output rows: z = bias (or 0) + the
 *                     taps (a, b) in order;
 *   input_grad_rows:  dx rows t in [t0, t1) of the n*h input rows: each element gathers
 *                     dz * w over the taps (a, b) in order that reach it (overwritten);
 *   filter_grad_part: part[(a*kw + b)*c + ch] = the sum over images [i0, i1), output rows
 *                     and columns in order of x * dz; part[kh*kw*c + ch] = the sum of dz.
 * Lanes are channels, so every instruction set computes the same bits (-ffp-contract=off). */
#ifndef PYNN_CONV_VARIANTS_INTERNAL_H
#define PYNN_CONV_VARIANTS_INTERNAL_H

#include <stdint.h>
#include "internal.h"

typedef struct {
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, dh, dw;
} pynn_dw_geometry;

typedef struct {
    void (*forward_rows)(float *z, const float *x, const float *wgt, const float *bias,
                         int64_t t0, int64_t t1, const pynn_dw_geometry *g);
    void (*input_grad_rows)(float *dx, const float *dz, const float *wgt, int64_t t0,
                            int64_t t1, const pynn_dw_geometry *g);
    void (*filter_grad_part)(float *part, const float *dz, const float *x, int64_t i0,
                             int64_t i1, const pynn_dw_geometry *g);
} pynn_dw_kernels;

extern const pynn_dw_kernels pynn_dw_generic;      /* conv_variants_generic.c */
#ifdef PYNN_HAVE_X86_KERNELS
extern const pynn_dw_kernels pynn_dw_avx2;         /* conv_variants_avx2.c */
extern const pynn_dw_kernels pynn_dw_avx512;       /* conv_variants_avx512.c */
#endif

#endif /* PYNN_CONV_VARIANTS_INTERNAL_H */
