/* conv_winograd_kernel.h -- the Winograd convolution's block kernel (contract:
 * conv_winograd_internal.h), written once and compiled once per instruction set:
 * conv_winograd_generic.c, conv_winograd_avx2.c and conv_winograd_avx512.c each define
 * WG_KERNELS, the name of their table, and include this file under their own -m flags.
 *
 * The channels (input transform) and the filters (products, output transform) are in the
 * vector lanes; the last vector of either may be partial (WG_LOADN / WG_STOREN: zeros
 * past the end, stored up to it).  The vector
 * primitives are the set's own: AVX-512 and AVX2 with fused multiply-adds (intrinsics),
 * the baseline with GCC/Clang vectors and a separate multiply and add (-ffp-contract=off
 * keeps them apart). */
#ifndef WG_KERNELS
#error "conv_winograd_kernel.h: define WG_KERNELS (the table's name) first"
#endif

#include <string.h>
#include "internal.h"
#include "act_elementwise.h"
#include "conv_winograd_internal.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#include "simd_mask.h"
#define WG_LANES 16
#define WG_MR 12                       /* 12 tiles x 2 vectors: 24 accumulators of 32 */
#define WG_NV 2
#define WG_DW_MR 8                     /* dW: 8 channels x 2 vectors of filters */
typedef __m512 wg_vec;
#define WG_LOADU(p) _mm512_loadu_ps(p)
#define WG_STOREU(p, v) _mm512_storeu_ps((p), (v))
#define WG_SET1(x) _mm512_set1_ps(x)
#define WG_ZERO() _mm512_setzero_ps()
#define WG_ADD(a, b) _mm512_add_ps((a), (b))
#define WG_SUB(a, b) _mm512_sub_ps((a), (b))
#define WG_MUL(a, b) _mm512_mul_ps((a), (b))
#define WG_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define WG_LOADN(p, n) _mm512_maskz_loadu_ps(pynn_mask16(n), (p))
#define WG_STOREN(p, v, n) _mm512_mask_storeu_ps((p), pynn_mask16(n), (v))
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include "simd_mask.h"
#define WG_LANES 8
#define WG_MR 6                        /* 6 tiles x 2 vectors: 12 accumulators of 16 */
#define WG_NV 2
#define WG_DW_MR 4                     /* dW: 4 channels x 2 vectors of filters */
typedef __m256 wg_vec;
#define WG_LOADU(p) _mm256_loadu_ps(p)
#define WG_STOREU(p, v) _mm256_storeu_ps((p), (v))
#define WG_SET1(x) _mm256_set1_ps(x)
#define WG_ZERO() _mm256_setzero_ps()
#define WG_ADD(a, b) _mm256_add_ps((a), (b))
#define WG_SUB(a, b) _mm256_sub_ps((a), (b))
#define WG_MUL(a, b) _mm256_mul_ps((a), (b))
#define WG_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define WG_LOADN(p, n) _mm256_maskload_ps((p), pynn_mask8(n))
#define WG_STOREN(p, v, n) _mm256_maskstore_ps((p), pynn_mask8(n), (v))
#else
#define WG_LANES 4
#define WG_MR 3                        /* 3 tiles x 4 vectors: 12 accumulators of 16 */
#define WG_NV 4
#define WG_DW_MR 4                     /* dW: 4 channels x 4 vectors of filters */
typedef float wg_vec __attribute__((vector_size(16)));
static inline wg_vec wg_loadu(const float *p) {
    wg_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void wg_storeu(float *p, wg_vec v) { memcpy(p, &v, sizeof v); }
#define WG_LOADU(p) wg_loadu(p)
#define WG_STOREU(p, v) wg_storeu((p), (v))
#define WG_SET1(x) ((wg_vec){(x), (x), (x), (x)})
#define WG_ZERO() ((wg_vec){0.0f, 0.0f, 0.0f, 0.0f})
#define WG_ADD(a, b) ((a) + (b))
#define WG_SUB(a, b) ((a) - (b))
#define WG_MUL(a, b) ((a) * (b))
#define WG_FMA(a, b, c) ((a) * (b) + (c))
static inline wg_vec wg_loadn(const float *p, int64_t n) {
    wg_vec v = {0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(&v, p, (size_t)(n < 4 ? n : 4) * sizeof(float));
    return v;
}
static inline void wg_storen(float *p, wg_vec v, int64_t n) {
    memcpy(p, &v, (size_t)(n < 4 ? n : 4) * sizeof(float));
}
#define WG_LOADN(p, n) wg_loadn((p), (n))
#define WG_STOREN(p, v, n) wg_storen((p), (v), (n))
#endif

#define WG_CHUNK (WG_LANES * WG_NV)    /* filters of a full chunk */

/* The first n (>= 1) floats at p as a vector, zeros past them: a plain load when whole. */
static inline wg_vec wg_load_upto(const float *p, int64_t n) {
    return n >= WG_LANES ? WG_LOADU(p) : WG_LOADN(p, n);
}

/* v's first n (>= 1) lanes stored at p. */
static inline void wg_store_upto(float *p, wg_vec v, int64_t n) {
    if (n >= WG_LANES)
        WG_STOREU(p, v);
    else
        WG_STOREN(p, v, n);
}

/* Floats of a row of channels in the scratch: C rounded up to whole vectors. */
static inline int64_t wg_cp(int64_t c) { return wg_round_up(c, WG_LANES); }

/* The width of the chunk of filters from f0 (a multiple of WG_CHUNK): WG_CHUNK, or the
 * last chunk's filters rounded up to whole vectors. */
static inline int64_t wg_chunk_width(int64_t f, int64_t f0) {
    return f - f0 >= WG_CHUNK ? WG_CHUNK : wg_round_up(f - f0, WG_LANES);
}

/* Tile t's image, and its first output row *r and column *q (tiles in (image, tile row,
 * tile column) order) */
static inline int64_t wg_tile_at(const wg_problem *p, int64_t t, int64_t *r, int64_t *q) {
    const int64_t per_image = p->th * p->tw, in_image = t % per_image;
    *r = 2 * (in_image / p->tw);
    *q = 2 * (in_image % p->tw);
    return t / per_image;
}

/* ---- the input transform: V[xi][i][c] = (B^T d B)[xi] of tile t0 + i ------------------
 * for i < rows (the block's tiles; zeros for i >= m) */
static void wg_input(const wg_problem *p, int64_t t0, int64_t m, int64_t rows, float *v) {
    const int64_t c = p->c, cp = wg_cp(c), xi_stride = rows * cp;
    int64_t i, cv;
    for (i = 0; i < rows; i++) {                       /* tiles of the block */
        float *vt = v + i * cp;
        int64_t img, r0, q0;
        const float *rowp[4];
        int rok[4], qok[4], a, b;
        if (i >= m) {                                  /* past the last tile: zeros */
            int xi;
            for (xi = 0; xi < 16; xi++) memset(vt + xi * xi_stride, 0, (size_t)cp * sizeof(float));
            continue;
        }
        img = wg_tile_at(p, t0 + i, &r0, &q0);
        r0 -= p->pt;                                   /* the window's first row and column */
        q0 -= p->pl;
        for (a = 0; a < 4; a++) {
            rok[a] = r0 + a >= 0 && r0 + a < p->h;
            qok[a] = q0 + a >= 0 && q0 + a < p->w;
            rowp[a] = rok[a] ? p->x + ((img * p->h + r0 + a) * p->w + q0) * c : NULL;
        }
        for (cv = 0; cv < c; cv += WG_LANES) {         /* C: vectors of channels */
            wg_vec d[4][4], t[4][4];
            for (a = 0; a < 4; a++)                    /* the window, zero outside x */
                for (b = 0; b < 4; b++)
                    d[a][b] = rok[a] && qok[b] ? wg_load_upto(rowp[a] + b * c + cv, c - cv)
                                               : WG_ZERO();
            for (b = 0; b < 4; b++) {                  /* rows: t = B^T d */
                t[0][b] = WG_SUB(d[0][b], d[2][b]);
                t[1][b] = WG_ADD(d[1][b], d[2][b]);
                t[2][b] = WG_SUB(d[2][b], d[1][b]);
                t[3][b] = WG_SUB(d[1][b], d[3][b]);
            }
            for (a = 0; a < 4; a++) {                  /* columns: V = t B */
                float *va = vt + 4 * a * xi_stride + cv;
                WG_STOREU(va, WG_SUB(t[a][0], t[a][2]));
                WG_STOREU(va + xi_stride, WG_ADD(t[a][1], t[a][2]));
                WG_STOREU(va + 2 * xi_stride, WG_SUB(t[a][2], t[a][1]));
                WG_STOREU(va + 3 * xi_stride, WG_SUB(t[a][1], t[a][3]));
            }
        }
    }
}

/* ---- the products: M[xi][i][0 .. NV LANES) = V[xi][i][:] U[xi][:][chunk] -------------- */
static inline __attribute__((always_inline)) void wg_products(const float *v, const float *u,
                                                              float *mb, int64_t c,
                                                              int64_t nr, const int NV) {
    const int64_t cp = wg_cp(c);
    int xi;
    for (xi = 0; xi < 16; xi++) {                      /* the 16 points */
        const float *vx = v + xi * WG_MR * cp, *b = u + xi * c * nr;
        const float *r[WG_MR];
        wg_vec acc[WG_MR][WG_NV], bv[WG_NV];
        float *mx = mb + xi * WG_MR * nr;
        int64_t k;
        int i, j;
#pragma GCC unroll 12
        for (i = 0; i < WG_MR; i++) {
            r[i] = vx + i * cp;
#pragma GCC unroll 4
            for (j = 0; j < NV; j++) acc[i][j] = WG_ZERO();
        }
        for (k = 0; k < c; k++) {                      /* K: the channels, in order */
#pragma GCC unroll 4
            for (j = 0; j < NV; j++) bv[j] = WG_LOADU(b + j * WG_LANES);
#pragma GCC unroll 12
            for (i = 0; i < WG_MR; i++) {
                const wg_vec ai = WG_SET1(r[i][k]);
#pragma GCC unroll 4
                for (j = 0; j < NV; j++) acc[i][j] = WG_FMA(ai, bv[j], acc[i][j]);
            }
            b += nr;
        }
#pragma GCC unroll 12
        for (i = 0; i < WG_MR; i++)
#pragma GCC unroll 4
            for (j = 0; j < NV; j++) WG_STOREU(mx + i * nr + j * WG_LANES, acc[i][j]);
    }
}

/* ---- the output transform: z = A^T M A (+ bias) for filters f0 .. f0 + nr ------------ */
static void wg_output(const wg_problem *p, int64_t t0, int64_t m, const float *mb,
                      int64_t f0, int64_t nr) {
    const int64_t f = p->f, xi_stride = WG_MR * nr;
    int64_t i, fv;
    for (i = 0; i < m; i++) {                          /* tiles of the block */
        int64_t r, q;
        const int64_t img = wg_tile_at(p, t0 + i, &r, &q);
        const int row2 = r + 1 < p->oh, col2 = q + 1 < p->ow;
        float *z0 = p->z + ((img * p->oh + r) * p->ow + q) * f + f0;
        for (fv = 0; fv < nr && f0 + fv < f; fv += WG_LANES) {   /* N: vectors of filters */
            const int64_t live = f - f0 - fv;          /* filters of the vector in z */
            const float *mt = mb + i * nr + fv;
            wg_vec mm[4][4], s[2][4], y00, y01, y10, y11;
            int a, b;
            for (a = 0; a < 4; a++)
                for (b = 0; b < 4; b++) mm[a][b] = WG_LOADU(mt + (4 * a + b) * xi_stride);
            for (b = 0; b < 4; b++) {                  /* rows: s = A^T M */
                s[0][b] = WG_ADD(WG_ADD(mm[0][b], mm[1][b]), mm[2][b]);
                s[1][b] = WG_SUB(WG_SUB(mm[1][b], mm[2][b]), mm[3][b]);
            }
            y00 = WG_ADD(WG_ADD(s[0][0], s[0][1]), s[0][2]);   /* columns: Y = s A */
            y01 = WG_SUB(WG_SUB(s[0][1], s[0][2]), s[0][3]);
            y10 = WG_ADD(WG_ADD(s[1][0], s[1][1]), s[1][2]);
            y11 = WG_SUB(WG_SUB(s[1][1], s[1][2]), s[1][3]);
            if (p->bias != NULL) {
                const wg_vec bb = wg_load_upto(p->bias + f0 + fv, live);
                y00 = WG_ADD(y00, bb);
                y01 = WG_ADD(y01, bb);
                y10 = WG_ADD(y10, bb);
                y11 = WG_ADD(y11, bb);
            }
            wg_store_upto(z0 + fv, y00, live);
            if (col2) wg_store_upto(z0 + f + fv, y01, live);
            if (row2) {
                wg_store_upto(z0 + p->ow * f + fv, y10, live);
                if (col2) wg_store_upto(z0 + p->ow * f + f + fv, y11, live);
            }
        }
    }
}

/* ---- one block: every chunk of filters, then the activation over the block's rows ---- */
static void wg_block(const wg_problem *p, int64_t t0, int64_t m, float *scratch) {
    const int64_t c = p->c, f = p->f;
    float *v = scratch, *mb = scratch + 16 * WG_MR * wg_cp(c);
    int64_t f0, i;
    wg_input(p, t0, m, WG_MR, v);
    for (f0 = 0; f0 < f; f0 += WG_CHUNK) {             /* N: chunks of filters */
        const float *u = p->u + f0 * 16 * c;
        const int64_t nr = wg_chunk_width(f, f0);
        switch (nr / WG_LANES) {                       /* vectors: a last chunk's fewer */
#if WG_NV >= 4
        case 3: wg_products(v, u, mb, c, nr, 3); break;
#endif
#if WG_NV >= 3
        case 2: wg_products(v, u, mb, c, nr, 2); break;
#endif
        case 1: wg_products(v, u, mb, c, nr, 1); break;
        default: wg_products(v, u, mb, c, nr, WG_NV); break;
        }
        wg_output(p, t0, m, mb, f0, nr);
    }
    if (p->y == NULL || (p->y == p->z && p->act == PYNN_ACT_LINEAR)) return;
    for (i = 0; i < m; i++) {                          /* the activation, row by row */
        int64_t r, q, rr;
        const int64_t img = wg_tile_at(p, t0 + i, &r, &q);
        const int64_t cols = q + 1 < p->ow ? 2 : 1;
        for (rr = r; rr < r + 2 && rr < p->oh; rr++) {
            const int64_t at = ((img * p->oh + rr) * p->ow + q) * f;
            (void)pynn_act_span(p->y + at, p->z + at, cols * f, p->act, p->alpha);
        }
    }
}

/* ---- the filter gradient ----------------------------------------------------------- */

/* H[xi][i][f] = (G2 g G2^T)[xi] of the 2 x 2 block of dz of tile t0 + i, i < m */
static void wg_dz_transform(const wg_problem *p, int64_t t0, int64_t m, float *hb) {
    const int64_t f = p->f, fp = wg_filters_padded(f, WG_CHUNK, WG_LANES), xi_stride = m * fp;
    const wg_vec half = WG_SET1(0.5f), zero = WG_ZERO();
    int64_t i, fv;
    for (i = 0; i < m; i++) {                          /* tiles of the block */
        int64_t r, q;
        const int64_t img = wg_tile_at(p, t0 + i, &r, &q);
        const int row2 = r + 1 < p->oh, col2 = q + 1 < p->ow;
        const float *g0 = p->dz + ((img * p->oh + r) * p->ow + q) * f;
        float *ht = hb + i * fp;
        for (fv = 0; fv < f; fv += WG_LANES) {         /* N: vectors of filters */
            const int64_t live = f - fv;
            wg_vec g[2][2], s[4][2];
            int a;
            g[0][0] = wg_load_upto(g0 + fv, live);
            g[0][1] = col2 ? wg_load_upto(g0 + f + fv, live) : zero;
            g[1][0] = row2 ? wg_load_upto(g0 + p->ow * f + fv, live) : zero;
            g[1][1] = row2 && col2 ? wg_load_upto(g0 + p->ow * f + f + fv, live) : zero;
            for (a = 0; a < 2; a++) {                  /* rows: s = G2 g */
                s[0][a] = g[0][a];
                s[1][a] = WG_MUL(WG_ADD(g[0][a], g[1][a]), half);
                s[2][a] = WG_MUL(WG_SUB(g[0][a], g[1][a]), half);
                s[3][a] = WG_SUB(zero, g[1][a]);
            }
            for (a = 0; a < 4; a++) {                  /* columns: H = s G2^T */
                float *ha = ht + 4 * a * xi_stride + fv;
                WG_STOREU(ha, s[a][0]);
                WG_STOREU(ha + xi_stride, WG_MUL(WG_ADD(s[a][0], s[a][1]), half));
                WG_STOREU(ha + 2 * xi_stride, WG_MUL(WG_SUB(s[a][0], s[a][1]), half));
                WG_STOREU(ha + 3 * xi_stride, WG_SUB(zero, s[a][1]));
            }
        }
    }
}

/* P[xi][c0 + i][f0 + j] (=, or += when add) the sum over the block's m tiles of
 * V[xi][t][c0 + i] H[xi][t][f0 + j]: WG_DW_MR channels by NV vectors of filters (c, f:
 * the rows' lengths, V's and those of H and P) */
static inline __attribute__((always_inline)) void wg_dw_tile(const float *v, const float *hb,
                                                             float *pp, int64_t m, int64_t c,
                                                             int64_t f, int add, const int NV) {
    wg_vec acc[WG_DW_MR][4], bv[4];
    int64_t t;
    int i, j;
#pragma GCC unroll 8
    for (i = 0; i < WG_DW_MR; i++)
#pragma GCC unroll 4
        for (j = 0; j < NV; j++) acc[i][j] = WG_ZERO();
    for (t = 0; t < m; t++) {                          /* K: the block's tiles, in order */
#pragma GCC unroll 4
        for (j = 0; j < NV; j++) bv[j] = WG_LOADU(hb + t * f + j * WG_LANES);
#pragma GCC unroll 8
        for (i = 0; i < WG_DW_MR; i++) {
            const wg_vec ai = WG_SET1(v[t * c + i]);
#pragma GCC unroll 4
            for (j = 0; j < NV; j++) acc[i][j] = WG_FMA(ai, bv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (i = 0; i < WG_DW_MR; i++)
#pragma GCC unroll 4
        for (j = 0; j < NV; j++) {
            float *at = pp + i * f + j * WG_LANES;
            WG_STOREU(at, add ? WG_ADD(WG_LOADU(at), acc[i][j]) : acc[i][j]);
        }
}

static void wg_filter_chunk(const wg_problem *p, int64_t t0, int64_t t1, float *partial,
                            float *scratch) {
    const int64_t c = p->c, f = p->f, cp = wg_cp(c), fp = wg_filters_padded(f, WG_CHUNK, WG_LANES);
    const int64_t cr = wg_round_up(c, WG_DW_MR);      /* P's rows: whole tiles of channels */
    float *v = scratch, *hb = scratch + 16 * WG_DW_BLOCK * cp;
    int64_t b0;
    for (b0 = t0; b0 < t1; b0 += WG_DW_BLOCK) {        /* K: blocks of tiles, in order */
        const int64_t m = t1 - b0 < WG_DW_BLOCK ? t1 - b0 : WG_DW_BLOCK;
        const int add = b0 > t0;
        int xi;
        wg_input(p, b0, m, m, v);
        wg_dz_transform(p, b0, m, hb);
        for (xi = 0; xi < 16; xi++) {                  /* the 16 points */
            const float *vx = v + xi * m * cp, *hx = hb + xi * m * fp;
            float *px = partial + xi * cr * fp;
            int64_t c0, f0;
            for (c0 = 0; c0 < c; c0 += WG_DW_MR)       /* M: channels (the last tile's rows
                                                          past c: V's zeros, within cp) */
                for (f0 = 0; f0 < f; f0 += WG_CHUNK) { /* N: filters */
                    const float *vc = vx + c0, *hf = hx + f0;
                    float *pc = px + c0 * fp + f0;
                    switch (wg_chunk_width(f, f0) / WG_LANES) {   /* a last chunk's fewer */
#if WG_NV >= 4
                    case 3: wg_dw_tile(vc, hf, pc, m, cp, fp, add, 3); break;
#endif
#if WG_NV >= 3
                    case 2: wg_dw_tile(vc, hf, pc, m, cp, fp, add, 2); break;
#endif
                    case 1: wg_dw_tile(vc, hf, pc, m, cp, fp, add, 1); break;
                    default: wg_dw_tile(vc, hf, pc, m, cp, fp, add, WG_NV); break;
                    }
                }
        }
    }
}

/* ---- the kernel's transform, filters in the lanes ---------------------------------- */
static void wg_transform(float *u, const float *wgt, int64_t c, int64_t f, int64_t c0,
                         int64_t c1) {
    const wg_vec half = WG_SET1(0.5f);
    int64_t ci, fo;
    for (ci = c0; ci < c1; ci++)                       /* channels */
        for (fo = 0; fo < f; fo += WG_LANES) {         /* vectors of filters */
            const int64_t f0 = fo / WG_CHUNK * WG_CHUNK;
            const int64_t nr = wg_chunk_width(f, f0);
            float *uo = u + f0 * 16 * c + ci * nr + (fo - f0);
            wg_vec g[3][3], s[4][3];
            int a, b;
            for (a = 0; a < 3; a++)
                for (b = 0; b < 3; b++)
                    g[a][b] = wg_load_upto(wgt + ((3 * a + b) * c + ci) * f + fo, f - fo);
            for (b = 0; b < 3; b++) {                  /* rows: s = G g */
                s[0][b] = g[0][b];
                s[1][b] = WG_MUL(WG_ADD(WG_ADD(g[0][b], g[1][b]), g[2][b]), half);
                s[2][b] = WG_MUL(WG_ADD(WG_SUB(g[0][b], g[1][b]), g[2][b]), half);
                s[3][b] = g[2][b];
            }
            for (a = 0; a < 4; a++) {                  /* columns: U = s G^T */
                WG_STOREU(uo + (4 * a + 0) * c * nr, s[a][0]);
                WG_STOREU(uo + (4 * a + 1) * c * nr,
                          WG_MUL(WG_ADD(WG_ADD(s[a][0], s[a][1]), s[a][2]), half));
                WG_STOREU(uo + (4 * a + 2) * c * nr,
                          WG_MUL(WG_ADD(WG_SUB(s[a][0], s[a][1]), s[a][2]), half));
                WG_STOREU(uo + (4 * a + 3) * c * nr, s[a][2]);
            }
        }
}

const wg_kernels WG_KERNELS = {WG_MR, WG_CHUNK, WG_LANES, WG_DW_MR, wg_block, wg_filter_chunk,
                               wg_transform};
