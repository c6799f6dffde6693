/* conv_dx_internal.h -- the contract between the input-gradient driver (conv_dx.c: phases,
 * tiles, threads, the packed kernel) and its tile kernels (conv_dx_kernel.h, compiled once
 * per instruction set).  Not installed.
 *
 * A tile is up to MR input positions of one phase (conv_dx.c) by NR = LANES * NV channels
 * of one panel.  The kernel computes, for each row i < m and channel j < n,
 *
 *   dx[i][j] = sum over the phase's taps (u, v) in row-major order, then f = 0 .. F-1,
 *              of dz(row i, tap (u, v))[f] * bp[((u * tv + v) * F + f) * NR + j]
 *
 * where dz(row i, tap (u, v)) is the F floats of dz at offset off[i] - (u * ow + v) F when
 * 0 <= i0[i] - u < oh and 0 <= j0[i] - v < ow, else absent (no term).  Each element is
 * one accumulator, fused multiply-adds in that order (plain multiply and add in the
 * portable kernel), so its value does not depend on which rows or columns share its tile:
 * AVX2 and AVX-512 give bitwise the same dx, and no level depends on the thread count. */
#ifndef PYNN_CONV_DX_INTERNAL_H
#define PYNN_CONV_DX_INTERNAL_H

#include <stdint.h>

#define CONV_DX_MAX_MR 16             /* rows of a tile, at most */
#define CONV_DX_MAX_SHAPES 4          /* tile shapes of one instruction set */

/* The rows of one tile: m input positions of one phase. */
typedef struct {
    float *c[CONV_DX_MAX_MR];         /* dx at the position, at the panel's first channel */
    int64_t off[CONV_DX_MAX_MR];      /* ((img * oh + i0) * ow + j0) f: dz of tap (0, 0) */
    int64_t i0[CONV_DX_MAX_MR];       /* dz row and column of tap (0, 0); may lie past */
    int64_t j0[CONV_DX_MAX_MR];       /* the end of dz (the taps decide); i0 = -1 past m */
    int64_t m;                        /* 1 <= m <= the shape's MR */
} conv_dx_rows;

/* What the tiles of one phase share. */
typedef struct {
    const float *dz;                  /* (n, oh, ow, f) */
    const float *zeros;               /* f zeros: the row of an absent term */
    int64_t oh, ow, f;
    int64_t tu, tv;                   /* the phase's taps: u < tu rows, v < tv columns */
} conv_dx_phase;

/* One tile: dx rows[i].c[0 .. n) for i < rows->m, from bp (the phase's taps, one panel:
 * tu * tv * f rows of NR floats, 64-byte aligned); 1 <= n <= NR. */
typedef void (*conv_dx_tile_fn)(const conv_dx_rows *rows, const conv_dx_phase *ph,
                                const float *bp, int64_t n);

typedef struct {
    int64_t mr, nv;                   /* MR rows x NV vectors of LANES channels */
    conv_dx_tile_fn tile;
} conv_dx_shape;

/* The largest channel count of the filter-lanes tiles (conv_dx_flane.h: the filters in
 * the lanes of 16-float vectors, the whole of C in one tile). */
#define CONV_DX_FL_MAX_C 4

/* The tile shapes of one instruction set: channels in the lanes, best first (conv_dx.c
 * picks by the channels); filters in the lanes, by channels ([c - 1]: mr rows). */
typedef struct {
    int64_t lanes;
    int nshapes;
    conv_dx_shape shapes[CONV_DX_MAX_SHAPES];
    conv_dx_shape flane[CONV_DX_FL_MAX_C];
} conv_dx_kernels;

extern const conv_dx_kernels pynn_conv_dx_generic;
#ifdef PYNN_HAVE_X86_KERNELS
extern const conv_dx_kernels pynn_conv_dx_avx2;
extern const conv_dx_kernels pynn_conv_dx_avx512;
#endif

#endif /* PYNN_CONV_DX_INTERNAL_H */
