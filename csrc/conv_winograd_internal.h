/* conv_winograd_internal.h -- the contract between the Winograd convolution's driver
 * (conv_winograd.c: which layers, the transformed kernel, blocks and threads) and its block
 * kernels (conv_winograd_kernel.h, compiled once per instruction set).  Not installed.
 *
 * F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
 * each 2 x 2 block of outputs (a tile) of a 3 x 3, stride-1 convolution is
 *
 *   Y = A^T [ sum over c of (G g_cf G^T) .* (B^T d_c B) ] A
 *
 * where d_c is the tile's 4 x 4 input window in channel c (zero outside x), g_cf the 3 x 3
 * kernel of channel c and filter f, and
 *
 *   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
 *         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |        | 0    0    1   |
 *
 * 16 products of the 4 x 4 transformed values (points xi = 4 u + v) replace the 36 of the
 * 2 x 2 outputs' windows: per point a GEMM over the channels, V_xi (tiles x C) times
 * U_xi (C x F).  The kernel's transform U is computed once per call, in float by the
 * level's kernel, the same sums at every level (an input gradient's kernel turned and
 * transposed first, conv_winograd.c); the input's V and the products M live in a block's
 * scratch.
 *
 * A block is MR consecutive tiles in (image, tile row, tile column) order.  For each tile
 * t, point xi and filter f the kernel computes, in this order:
 *   V[xi][t][c]  = the B^T d B sums, rows first, in the order written in the kernel;
 *   M[xi][t][f]  = sum over c = 0 .. C-1, in order, of V[xi][t][c] U[xi][c][f]
 *                  (fused multiply-adds from 0; a multiply and an add in the portable
 *                  kernel);
 *   Y            = the A^T M A sums, rows first, then + bias[f] where there is one;
 * and writes the outputs of Y that lie in z, then the activation.  Nothing depends on the
 * block a tile falls in, the thread or the lane width: AVX2 and AVX-512 give bitwise the
 * same z, and no level depends on the thread count.
 *
 * The filter gradient dW(a, b, c, f) = sum over positions of x(pos + (a, b), c) dz(pos, f)
 * is F(3x3, 2x2) over the same tiles: each 2 x 2 block of dz (zero past dz) and the 4 x 4
 * window of x under it give
 *
 *   dW_tile = A2^T [ (G2 g G2^T) .* (B^T d B) ] A2,   G2 = | 1    0   |   A2^T = | 1 1  1 0 |
 *                                                         | 1/2  1/2 |          | 0 1 -1 0 |
 *                                                         | 1/2 -1/2 |          | 0 1  1 1 |
 *                                                         | 0   -1   |
 *
 * (B^T as above: the input transform is the forward's), and the transforms being linear,
 * the tiles' products are summed before A2: per point, M_xi = V_xi^T H_xi, a GEMM over the
 * tiles.  The tiles are cut into blocks of WG_DW_BLOCK and the blocks into chunks fixed by
 * the shape (conv_winograd.c); for each chunk, point, channel c and filter f:
 *   H[xi][t][f]  = the G2 g G2^T sums, rows first, in the kernel's order;
 *   P[xi][c][f]  = over the chunk's blocks in order: (sum over the block's tiles t in
 *                  order of V[xi][t][c] H[xi][t][f], fused multiply-adds from 0), the
 *                  first block's sum stored, the next ones added;
 * then (the driver) the chunks' P added in chunk order, A2^T P A2 in double, rounded
 * once.  Again nothing depends on the thread count or the lane width. */
#ifndef PYNN_CONV_WINOGRAD_INTERNAL_H
#define PYNN_CONV_WINOGRAD_INTERNAL_H

#include <stdint.h>

/* What the blocks of one call share. */
typedef struct {
    const float *x;                   /* (n, h, w, c) */
    int64_t n, h, w, c;
    int64_t pt, pl;                   /* padding above and left of x */
    int64_t oh, ow, f;                /* z (and y): (n, oh, ow, f) */
    int64_t th, tw;                   /* tiles per image: ceil(oh / 2) x ceil(ow / 2) */
    const float *u;                   /* the transformed kernel, in chunks (below) */
    const float *bias;                /* f, or NULL */
    const float *dz;                  /* the filter gradient's (n, oh, ow, f) */
    float *z, *y;                     /* y: NULL, z (written over z) or its own array */
    int act;                          /* elementwise (not a row-wise one) */
    float alpha;
} wg_problem;

/* One block: tiles t0 .. t0 + m - 1 (1 <= m <= mr) into z and y; scratch holds
 * wg_scratch_floats(level's table, c, f) floats, 64-byte aligned. */
typedef void (*wg_block_fn)(const wg_problem *p, int64_t t0, int64_t m, float *scratch);

/* Tiles of a filter-gradient block. */
#define WG_DW_BLOCK 48

/* One chunk of the filter gradient: tiles t0 .. t1 - 1 (blocks of WG_DW_BLOCK from t0),
 * into partial (P: 16 cr fp floats, [xi][cr][fp]: cr = c rounded up to the level's dw_mr,
 * fp = wg_filters_padded; the rows past c hold the products of zeros); scratch holds
 * wg_dw_scratch_floats floats, 64-byte aligned. */
typedef void (*wg_filter_chunk_fn)(const wg_problem *p, int64_t t0, int64_t t1, float *partial,
                                   float *scratch);

/* The kernels of one instruction set.  Where C or F is not a multiple of the level's
 * lanes the last vector of channels or filters is loaded with zeros past the end and
 * stored only up to it: the scratch's rows of channels are rounded up to whole vectors
 * (the products still run over the C real channels), and so are the last chunk's filters
 * (their lanes past F hold the transforms of zeros, computed and never stored).  The
 * filters are cut into chunks of `chunk` (a multiple of 16), the last of them possibly
 * narrower: its width rounded up to `lanes`; u holds chunk after chunk, each
 * [xi][c][its width] (16 C times its width floats). */
typedef struct {
    int64_t mr;                       /* tiles of a block */
    int64_t chunk;                    /* filters of a full chunk */
    int64_t lanes;                    /* floats of a vector */
    int64_t dw_mr;                    /* channels of a filter-gradient tile (divides lanes) */
    wg_block_fn block;
    wg_filter_chunk_fn filter_chunk;
    /* u's channels [c0, c1) from wgt (3, 3, c, f, Keras's layout): U = G g G^T in float,
     * rows first, in the kernel's order */
    void (*transform)(float *u, const float *wgt, int64_t c, int64_t f, int64_t c0, int64_t c1);
} wg_kernels;

static inline int64_t wg_round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

/* f rounded up as the chunks lay it out: whole chunks, then the last one's width rounded
 * up to whole vectors (the row length of u, of the filter gradient's P and H). */
static inline int64_t wg_filters_padded(int64_t f, int64_t chunk, int64_t lanes) {
    return f / chunk * chunk + wg_round_up(f % chunk, lanes);
}

/* Scratch floats of one block: V (16 mr c, rows rounded up to whole vectors) and M (16 mr
 * chunk). */
static inline int64_t wg_scratch_floats(const wg_kernels *k, int64_t c) {
    return 16 * k->mr * wg_round_up(c, k->lanes) + 16 * k->mr * k->chunk;
}

/* Scratch floats of one filter-gradient chunk: a block's V and H, rows rounded up. */
static inline int64_t wg_dw_scratch_floats(const wg_kernels *k, int64_t c, int64_t f) {
    return 16 * WG_DW_BLOCK * (wg_round_up(c, k->lanes) + wg_filters_padded(f, k->chunk, k->lanes));
}

/* The drivers (conv_winograd.c), for pynn_conv2d_forward (layers.c) and
 * pynn_conv2d_input_grad (conv_dx.c): PYNN_EINVAL for a shape they do not take. */
int pynn_conv_winograd_forward(float *z, float *y, const float *x, const float *wgt,
                               const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                               int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow,
                               int64_t f, int act, float alpha);
int pynn_conv_winograd_filter_grad(float *dw, const float *dz, const float *x, int64_t n,
                                   int64_t h, int64_t w, int64_t c, int64_t pad_top,
                                   int64_t pad_left, int64_t oh, int64_t ow, int64_t f);
int pynn_conv_winograd_input_grad_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh,
                                            int64_t sw, int64_t pad_top, int64_t pad_left,
                                            int64_t h, int64_t w, int64_t c, int64_t f);
int pynn_conv_winograd_input_grad(float *dx, const float *dz, const float *wgt, int64_t n,
                                  int64_t h, int64_t w, int64_t c, int64_t pad_top,
                                  int64_t pad_left, int64_t oh, int64_t ow, int64_t f);

extern const wg_kernels pynn_conv_winograd_generic;
#ifdef PYNN_HAVE_X86_KERNELS
extern const wg_kernels pynn_conv_winograd_avx2;
extern const wg_kernels pynn_conv_winograd_avx512;
#endif

#endif
