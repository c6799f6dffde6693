/* conv_winograd.c -- 3 x 3, stride-1 convolutions by Winograd's minimal filtering,
 * F(2x2, 3x3): the forward of such a Conv2D, and its input gradient (at stride 1 the
 * correlation of dz with the kernel turned by 180 degrees, C and F swapped, conv_dx.c),
 * with 16 products per 2 x 2 outputs and channel where the direct sum takes 36.
 *
 * On the VGG- and ResNet-style nets of bench/compare.py (3 x 3 over 32 to 128 channels)
 * the implicit GEMM (conv_gemm.c, conv_dx.c) already runs at 85-95% of the machine's
 * GEMM peak: only fewer products make those passes faster.  The transforms add a few
 * vector additions per tile and channel; the products stay GEMMs over the channels, in
 * the same register tiles as the GEMM's.  The algorithm, the order of every sum and why
 * the result does not depend on the thread count or the lane width: conv_winograd_internal.h.
 *
 * Which layers: pynn_conv2d_winograd_supported() -- a fixed rule on the shape (3 x 3,
 * stride 1, at least 8 channels and filters for the forward and 16 for the gradients, up
 * to the bounds below, outputs of at least 4 x 4, at least WG_MIN_TILES tiles in the
 * batch), never on the thread count or the level.  A NaN or an infinity in a tile's 4 x 4
 * window reaches all four of its outputs (the transforms add it where the direct sum would
 * not multiply it at all).  The error:
 * that of a sum of C products of the transformed values, which are sums of up to 9 inputs
 * (B^T d B) and of up to 9 kernel entries over 4 (G g G^T: 4 roundings in float), then
 * up to 9 of those sums (A^T M A): a few times the direct sum's bound on the same
 * magnitudes (tests/c/test_conv_gemm.c checks it against double-precision loops). */
#include <string.h>
#include "internal.h"
#include "act_elementwise.h"
#include "gemm_internal.h"
#include "conv_winograd_internal.h"

/* The largest channel and filter counts: a chunk's transformed kernel (16 C x 32 floats,
 * 512 KB at C = 256) is read once per block of tiles and should stay in L2. */
#define WG_MAX_C 256
#define WG_MAX_F 512

/* Fewer tiles than this (a batch of one 7 x 7, 14 x 14 or 16 x 16 image: 16, 49, 64)
 * take the implicit GEMM: the kernel's transform, 16 c f values per call, and the few
 * blocks per thread then cost more than the products saved (batch 1 on Zen 4: 7 x 7 x 128
 * -> 128, 413 us by Winograd (kernel transform in double then), 223 us by the implicit
 * GEMM; 16 x 16 x 64 -> 64, 160 against 132 us; 32 x 32 x 32 -> 32, 256 tiles: 71 against
 * 104 us).  Like the GEMM's small-M path, the rule reads the batch: a row's result may
 * differ in rounding between batches of 1 and of 64. */
#define WG_MIN_TILES 128

/* Below about this many multiply-adds of the direct sum, one thread (as the GEMM). */
#define WG_MIN_PARALLEL_MACS ((int64_t)1 << 18)

/* The shapes F(2x2, 3x3) takes, with at least min_c channels and filters.  Any counts,
 * not only multiples of 16: layers of 20, 24, 40 or 50 channels or filters took the
 * implicit GEMM, whose 32-wide tiles then compute 20-60% more columns than there are
 * filters (VGG-style nets of 40-40-80-80 filters: 0.89x torch's step, 72% of the GEMM
 * peak; 24-24-48-48: 0.83x, 60%; 20-20-50-50: 0.94x). */
static int wg_shape_ok(int64_t n, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t c,
                       int64_t f, int64_t oh, int64_t ow, int act, int64_t min_c) {
    return kh == 3 && kw == 3 && sh == 1 && sw == 1 && c >= min_c && c <= WG_MAX_C &&
           f >= min_c && f <= WG_MAX_F && oh >= 4 && ow >= 4 &&
           n >= 1 && n * ((oh + 1) / 2) * ((ow + 1) / 2) >= WG_MIN_TILES &&
           act >= PYNN_ACT_LINEAR && act < PYNN_ACT_COUNT && !pynn_act_rowwise(act);
}

/* The forward from 8 channels and filters: with 8 the implicit GEMM's 32-wide tiles
 * compute 4x the columns (64 x 32 x 32 x 8 -> 8 at batch 64, Zen 4, 2 threads: 1.3-1.8 ms
 * by the GEMM, 0.9-1.3 ms by Winograd).  The gradients from 16: below, their per-tile
 * transforms outweigh the products saved (8 -> 16 over 16 x 16: the backward 0.66 ms by
 * the GEMM, 0.74-0.76 by Winograd). */
#define WG_MIN_C 8
#define WG_MIN_C_GRAD 16

int pynn_conv2d_winograd_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                   int64_t c, int64_t f, int64_t oh, int64_t ow, int act) {
    return wg_shape_ok(n, kh, kw, sh, sw, c, f, oh, ow, act, WG_MIN_C);
}

/* The kernels of the level in use (dispatch.c), taken once per call. */
static const wg_kernels *wg_kernels_at(int level) {
    switch (level) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_conv_winograd_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_conv_winograd_avx2;
#endif
    default:
        return &pynn_conv_winograd_generic;
    }
}

/* The input gradient's kernel laid out as a forward's, (3, 3, c, f): kt(a, b, ci, fo) =
 * the forward's kernel (f x c per tap) at (2 - a, 2 - b, fo, ci), turned by 180 degrees
 * and transposed, so that the level's transform reads it as it reads any kernel. */
static void turn_kernel(float *kt, const float *wgt, int64_t c, int64_t f) {
    int64_t tap;
    PYNN_PARALLEL_FOR(pynn_threads_for(9 * c * f),
    for (tap = 0; tap < 9; tap++) {                    /* the taps (a, b), row-major */
        const float *src = wgt + (8 - tap) * f * c;
        float *dst = kt + tap * c * f;
        int64_t ci, fo;
        for (ci = 0; ci < c; ci++)
            for (fo = 0; fo < f; fo++) dst[ci * f + fo] = src[fo * c + ci];
    });
}

/* z (n, oh, ow, f) = the 3 x 3 correlation of x (n, h, w, c), zero outside it, padded
 * pt above and pl left, with the kernel (+ bias), and y = act(z) as
 * pynn_conv2d_forward (y NULL, z, or its own array).  turned: the kernel is the
 * forward's of an input gradient (turn_kernel). */
static int winograd(float *z, float *y, const float *x, const float *wgt, const float *bias,
                    int64_t n, int64_t h, int64_t w, int64_t c, int64_t pt, int64_t pl,
                    int64_t oh, int64_t ow, int64_t f, int act, float alpha, int turned) {
    const wg_kernels *kt = wg_kernels_at(pynn_level());
    const int64_t th = (oh + 1) / 2, tw = (ow + 1) / 2, tiles = n * th * tw;
    const int64_t blocks = (tiles + kt->mr - 1) / kt->mr;
    const int64_t fp = wg_filters_padded(f, kt->chunk, kt->lanes);
    const int64_t u_floats = wg_round_up(16 * c * fp, 16);
    const int64_t per_thread = wg_round_up(wg_scratch_floats(kt, c), 16);
    const int64_t turned_floats = turned ? wg_round_up(9 * c * f, 16) : 0;
    const int tt = pynn_threads_for(16 * c * f);
    wg_problem p;
    float *base;
    void *owned;
    int nthreads, status, t;
    nthreads = n * oh * ow * 9 * c * f < WG_MIN_PARALLEL_MACS ? 1 : pynn_threads();
    if (nthreads > blocks) nthreads = (int)blocks;
    status = pynn_gemm_workspace_acquire(
        &base, &owned, (size_t)(u_floats + nthreads * per_thread + turned_floats));
    if (status != PYNN_OK) return status;
    if (turned) {
        float *kturned = base + u_floats + nthreads * per_thread;
        turn_kernel(kturned, wgt, c, f);
        wgt = kturned;
    }
    /* the kernel's transform: filters in the vector lanes, channels split between threads */
    PYNN_PARALLEL_FOR(tt,
    for (t = 0; t < tt; t++) kt->transform(base, wgt, c, f, c * t / tt, c * (t + 1) / tt););
    memset(&p, 0, sizeof p);
    p.x = x, p.n = n, p.h = h, p.w = w, p.c = c, p.pt = pt, p.pl = pl;
    p.oh = oh, p.ow = ow, p.f = f, p.th = th, p.tw = tw;
    p.u = base, p.bias = bias, p.z = z, p.y = y, p.act = act, p.alpha = alpha;
    PYNN_PARALLEL_FOR(nthreads,
    for (t = 0; t < nthreads; t++) {                   /* a contiguous range of blocks */
        float *scratch = base + u_floats + t * per_thread;
        const int64_t b0 = blocks * t / nthreads, b1 = blocks * (t + 1) / nthreads;
        int64_t bk;
        for (bk = b0; bk < b1; bk++) {
            const int64_t t0 = bk * kt->mr;
            kt->block(&p, t0, tiles - t0 < kt->mr ? tiles - t0 : kt->mr, scratch);
        }
    });
    pynn_gemm_workspace_release(base, owned);
    return PYNN_OK;
}

int pynn_conv_winograd_forward(float *z, float *y, const float *x, const float *wgt,
                               const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                               int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow,
                               int64_t f, int act, float alpha) {
    /* supported: n >= 1, so every array is read or written */
    PYNN_RETURN_IF(!pynn_conv2d_winograd_supported(n, 3, 3, 1, 1, c, f, oh, ow, act) ||
                       h < 0 || w < 0 || pad_top < 0 || pad_left < 0,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(z == NULL || x == NULL || wgt == NULL, PYNN_EINVAL);
    return winograd(z, y, x, wgt, bias, n, h, w, c, pad_top, pad_left, oh, ow, f, act, alpha, 0);
}

/* The filter gradient's chunks: at most WG_DW_CHUNKS, of whole blocks, fixed by the
 * shape (the tile count) alone, so that the sums do not depend on the thread count. */
#define WG_DW_CHUNKS 16

/* The filter gradient adds each block's products into its chunk's 16 C F sums: beyond
 * C F = 4096 (256 KB of sums, beside the block's transforms) they no longer stay in L2
 * and the implicit GEMM is faster (AlexNet-style 48 x 96 and 96 x 128 layers on Zen 4:
 * 0.9x its rate; VGG-style 32 x 32 to 64 x 64: 1.35-1.5x). */
#define WG_DW_MAX_CF 4096

int pynn_conv2d_winograd_filter_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh,
                                          int64_t sw, int64_t c, int64_t f, int64_t oh,
                                          int64_t ow, int act) {
    return wg_shape_ok(n, kh, kw, sh, sw, c, f, oh, ow, act, WG_MIN_C_GRAD) &&
           c * f <= WG_DW_MAX_CF;
}

int pynn_conv_winograd_filter_grad(float *dw, const float *dz, const float *x, int64_t n,
                                   int64_t h, int64_t w, int64_t c, int64_t pad_top,
                                   int64_t pad_left, int64_t oh, int64_t ow, int64_t f) {
    const wg_kernels *kt = wg_kernels_at(pynn_level());
    const int64_t th = (oh + 1) / 2, tw = (ow + 1) / 2, tiles = n * th * tw;
    const int64_t blocks = (tiles + WG_DW_BLOCK - 1) / WG_DW_BLOCK;
    const int64_t per_chunk = (blocks + WG_DW_CHUNKS - 1) / WG_DW_CHUNKS;   /* blocks */
    const int64_t chunks = (blocks + per_chunk - 1) / per_chunk;   /* supported: blocks >= 1 */
    /* P (wg_filter_chunk_fn): [xi][cr][fp], its rows and their length rounded up */
    const int64_t fp = wg_filters_padded(f, kt->chunk, kt->lanes), cr = wg_round_up(c, kt->dw_mr);
    const int64_t p_floats = 16 * cr * fp;
    const int64_t per_thread = wg_round_up(wg_dw_scratch_floats(kt, c, f), 16);
    wg_problem p;
    float *base, *partials;
    void *owned;
    int nthreads, status, t;
    int64_t e;
    PYNN_RETURN_IF(!pynn_conv2d_winograd_filter_supported(n, 3, 3, 1, 1, c, f, oh, ow,
                                                          PYNN_ACT_LINEAR) ||
                       h < 0 || w < 0 || pad_top < 0 || pad_left < 0,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(dw == NULL || dz == NULL || x == NULL, PYNN_EINVAL);
    nthreads = n * oh * ow * 9 * c * f < WG_MIN_PARALLEL_MACS ? 1 : pynn_threads();
    if (nthreads > chunks) nthreads = (int)chunks;
    status = pynn_gemm_workspace_acquire(
        &base, &owned, (size_t)(wg_round_up(chunks * p_floats, 16) + nthreads * per_thread));
    if (status != PYNN_OK) return status;
    partials = base + nthreads * per_thread;
    memset(&p, 0, sizeof p);
    p.x = x, p.n = n, p.h = h, p.w = w, p.c = c, p.pt = pad_top, p.pl = pad_left;
    p.oh = oh, p.ow = ow, p.f = f, p.th = th, p.tw = tw, p.dz = dz;
    PYNN_PARALLEL_FOR(nthreads,
    for (t = 0; t < nthreads; t++) {                   /* a contiguous range of chunks */
        float *scratch = base + t * per_thread;
        const int64_t k0 = chunks * t / nthreads, k1 = chunks * (t + 1) / nthreads;
        int64_t k;
        for (k = k0; k < k1; k++) {
            const int64_t t0 = k * per_chunk * WG_DW_BLOCK;
            const int64_t t1 = (k + 1) * per_chunk * WG_DW_BLOCK < tiles
                                   ? (k + 1) * per_chunk * WG_DW_BLOCK : tiles;
            kt->filter_chunk(&p, t0, t1, partials + k * p_floats, scratch);
        }
    });
    PYNN_PARALLEL_FOR(chunks > 1 ? pynn_threads_for(chunks * p_floats) : 1,
    for (e = 0; e < p_floats; e++) {                   /* the chunks' sums, in chunk order */
        float sum = partials[e];
        int64_t k;
        for (k = 1; k < chunks; k++) sum += partials[k * p_floats + e];
        partials[e] = sum;
    });
    {
        /* dW = A2^T P A2 per (c, f), in double, rounded once */
        int64_t cf;
        PYNN_PARALLEL_FOR(pynn_threads_for(16 * c * f),
        for (cf = 0; cf < c * f; cf++) {
            const int64_t at = cf / f * fp + cf % f;   /* (ci, fo) in P's rows of fp */
            double m[4][4], q[3][4];
            int a, b;
            for (a = 0; a < 4; a++)
                for (b = 0; b < 4; b++) m[a][b] = partials[(4 * a + b) * cr * fp + at];
            for (b = 0; b < 4; b++) {                  /* rows: q = A2^T P */
                q[0][b] = m[0][b] + m[1][b] + m[2][b];
                q[1][b] = m[1][b] - m[2][b];
                q[2][b] = m[1][b] + m[2][b] + m[3][b];
            }
            for (a = 0; a < 3; a++) {                  /* columns: dW = q A2 */
                dw[(3 * a + 0) * c * f + cf] = (float)(q[a][0] + q[a][1] + q[a][2]);
                dw[(3 * a + 1) * c * f + cf] = (float)(q[a][1] - q[a][2]);
                dw[(3 * a + 2) * c * f + cf] = (float)(q[a][1] + q[a][2] + q[a][3]);
            }
        });
    }
    pynn_gemm_workspace_release(base, owned);
    return PYNN_OK;
}

int pynn_conv_winograd_input_grad_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh,
                                            int64_t sw, int64_t pad_top, int64_t pad_left,
                                            int64_t h, int64_t w, int64_t c, int64_t f) {
    /* dx is the forward of dz (c = f filters over f channels) padded 2 - pad */
    return pad_top <= 2 && pad_left <= 2 &&
           wg_shape_ok(n, kh, kw, sh, sw, f, c, h, w, PYNN_ACT_LINEAR, WG_MIN_C_GRAD);
}

int pynn_conv_winograd_input_grad(float *dx, const float *dz, const float *wgt, int64_t n,
                                  int64_t h, int64_t w, int64_t c, int64_t pad_top,
                                  int64_t pad_left, int64_t oh, int64_t ow, int64_t f) {
    PYNN_RETURN_IF(!pynn_conv_winograd_input_grad_supported(n, 3, 3, 1, 1, pad_top, pad_left, h,
                                                            w, c, f) || oh < 0 || ow < 0,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(dx == NULL || dz == NULL || wgt == NULL, PYNN_EINVAL);
    return winograd(dx, NULL, dz, wgt, NULL, n, oh, ow, f, 2 - pad_top, 2 - pad_left, h, w, c,
                    PYNN_ACT_LINEAR, 0.0f, 1);
}
