/* gemm_kernel_avx512.c -- AVX-512 micro-kernel, compiled with -mavx512f/vl/dq/bw
 * (only this translation unit) and used at PYNN_LEVEL_AVX512 (dispatch.c).
 * Contract: see gemm_internal.h.
 *
 * MR x NR = AVX512_MR x (16 * AVX512_NV): each row of C is AVX512_NV zmm
 * registers.  Every step of K loads AVX512_NV vectors of B and broadcasts MR
 * floats of A into MR x NV independent FMA chains, enough to cover the FMA
 * latency on two FMA pipes.  Edge tiles use masked loads and stores, so they
 * do the same arithmetic as full ones. */
#include "internal.h"
#include "gemm_internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>
#include "simd_mask.h"

/* The shape and blocking can be overridden with -D for tuning experiments. */
#ifndef AVX512_MR
#define AVX512_MR 12
#endif
#ifndef AVX512_NV
#define AVX512_NV 2
#endif
#define AVX512_NR (16 * AVX512_NV)

static void gemm_ukernel_avx512(float *c, const float *a, const float *b,
                                int64_t m, int64_t n, int64_t kc,
                                float alpha, float beta, int64_t ldc) {
    __m512 acc[AVX512_MR][AVX512_NV];
    __m512 bv[AVX512_NV];
    int64_t p;
    int i, v;
#pragma GCC unroll 16
    for (i = 0; i < AVX512_MR; i++)           /* M: rows of the tile */
#pragma GCC unroll 4
        for (v = 0; v < AVX512_NV; v++)       /* N: vectors of a row */
            acc[i][v] = _mm512_setzero_ps();

    /* Fetch the C tile now so that its cache misses overlap the K loop instead
     * of stalling the stores at the end (C is swept once per K block).  A row
     * of the tile spans up to three cache lines. */
#pragma GCC unroll 16
    for (i = 0; i < AVX512_MR; i++) {         /* M: rows of the C tile */
        if (i >= m) break;
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + AVX512_NR - 1), _MM_HINT_T0);
    }

    for (p = 0; p < kc; p++) {                /* K: one rank-1 update per step */
#pragma GCC unroll 4
        for (v = 0; v < AVX512_NV; v++)       /* N: vectors of the B row */
            bv[v] = _mm512_load_ps(b + 16 * v);
#pragma GCC unroll 16
        for (i = 0; i < AVX512_MR; i++) {     /* M: rows of the tile */
            const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
            for (v = 0; v < AVX512_NV; v++)   /* N: vectors of a row */
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += AVX512_MR;
        b += AVX512_NR;
    }

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 mask[AVX512_NV];
    for (v = 0; v < AVX512_NV; v++)           /* N: vectors of a row */
        mask[v] = pynn_mask16(n - 16 * v);
    /* Unrolled over all MR rows so that acc[i] names a register; rows past m
     * do not exist in C. */
#pragma GCC unroll 16
    for (i = 0; i < AVX512_MR; i++) {         /* M: rows of C stored */
        float *ci = c + i * ldc;
        if (i >= m) break;
#pragma GCC unroll 4
        for (v = 0; v < AVX512_NV; v++) {     /* N: vectors of a row */
            __m512 t = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0.0f)
                t = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], ci + 16 * v), t);
            _mm512_mask_storeu_ps(ci + 16 * v, mask[v], t);
        }
    }
}

/* ---- packing with 16 x 16 transposes in registers ---------------------------
 * The layouts that need a transpose (A as stored: rows contiguous in K; B
 * transposed: columns of op(B) contiguous in K) are copied 16 x 16 floats at a
 * time: 16 row loads, 64 shuffles, 16 stores, instead of 256 scalar moves.
 * Packing only moves values, so results are the same as with the portable
 * routines, which handle the other layouts. */

#if AVX512_MR > 16
#error "the AVX-512 A packing transposes at most 16 rows"
#endif

/* r[c] := column c of the 16 x 16 block whose rows are r[0..15]. */
static inline void avx512_transpose16(__m512 r[16]) {
    __m512 t[16];
    int g, q;
#pragma GCC unroll 8
    for (g = 0; g < 16; g += 2) {             /* row pairs: interleave floats */
        t[g] = _mm512_unpacklo_ps(r[g], r[g + 1]);
        t[g + 1] = _mm512_unpackhi_ps(r[g], r[g + 1]);
    }
#pragma GCC unroll 4
    for (g = 0; g < 16; g += 4) {             /* row quads: interleave pairs */
        const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
        const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
        r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    /* Now 128-bit lane L of r[4g + q] holds rows 4g..4g+3 of column 4L + q:
     * a 4 x 4 transpose of lanes finishes the job. */
#pragma GCC unroll 4
    for (q = 0; q < 4; q++) {                 /* columns q, 4 + q, 8 + q, 12 + q */
        const __m512 u0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x44);
        const __m512 u1 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x44);
        const __m512 u3 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xEE);
        t[q] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + q] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        t[8 + q] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + q] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
#pragma GCC unroll 16
    for (g = 0; g < 16; g++)                  /* columns of the block */
        r[g] = t[g];
}

/* A micro-panel; the transpose path serves A as stored (cs == 1), a masked copy of each
 * column A transposed (rs == 1: the column's m floats lie side by side, as an RNN's
 * weight gradient x^T dgates reads them). */
static void avx512_pack_a(float *ap, const float *a, int64_t rs, int64_t cs,
                          int64_t m, int64_t kc, int64_t mr) {
    const __mmask16 panel_rows = (__mmask16)((1u << AVX512_MR) - 1u);
    int64_t p0;
    int i, p;
    if (rs == 1 && cs != 1 && mr == AVX512_MR) {
        const __mmask16 rows = pynn_mask16(m);
        for (p0 = 0; p0 < kc; p0++)           /* K: one packed column, zero past m */
            _mm512_mask_storeu_ps(ap + p0 * AVX512_MR, panel_rows,
                                  _mm512_maskz_loadu_ps(rows, a + p0 * cs));
        return;
    }
    if (cs != 1 || mr != AVX512_MR) {
        pynn_gemm_pack_a_ref(ap, a, rs, cs, m, kc, mr);
        return;
    }
    for (p0 = 0; p0 < kc; p0 += 16) {         /* K: 16 columns of the panel at a time */
        const int64_t w = kc - p0 < 16 ? kc - p0 : 16;
        const __mmask16 cols = pynn_mask16(w);
        __m512 r[16];
#pragma GCC unroll 16
        for (i = 0; i < 16; i++)              /* M: rows, zero past m */
            r[i] = i < m ? _mm512_maskz_loadu_ps(cols, a + i * rs + p0) : _mm512_setzero_ps();
        avx512_transpose16(r);
#pragma GCC unroll 16
        for (p = 0; p < 16; p++)              /* K: one packed column of MR floats */
            if (p < w) _mm512_mask_storeu_ps(ap + (p0 + p) * AVX512_MR, panel_rows, r[p]);
    }
}

/* A B micro-panel; the transpose path serves B transposed (rs == 1). */
static void avx512_pack_b(float *bp, const float *b, int64_t rs, int64_t cs,
                          int64_t kc, int64_t n, int64_t nr) {
    int64_t p0;
    int h, j, p;
    if (rs != 1 || nr != AVX512_NR) {
        pynn_gemm_pack_b_ref(bp, b, rs, cs, kc, n, nr);
        return;
    }
    for (p0 = 0; p0 < kc; p0 += 16) {         /* K: 16 rows of the panel at a time */
        const int64_t w = kc - p0 < 16 ? kc - p0 : 16;
        const __mmask16 rows = pynn_mask16(w);
        for (h = 0; h < AVX512_NV; h++) {     /* N: 16 columns of the panel at a time */
            __m512 r[16];
#pragma GCC unroll 16
            for (j = 0; j < 16; j++)          /* N: columns of op(B), zero past n */
                r[j] = 16 * h + j < n ? _mm512_maskz_loadu_ps(rows, b + (16 * h + j) * cs + p0)
                                      : _mm512_setzero_ps();
            avx512_transpose16(r);
#pragma GCC unroll 16
            for (p = 0; p < 16; p++)          /* K: one packed row, 16 of its NR floats */
                if (p < w) _mm512_storeu_ps(bp + (p0 + p) * AVX512_NR + 16 * h, r[p]);
        }
    }
}

/* ---- the small-problem path (gemm_internal.h) --------------------------------
 * Tiles of MT rows x 16 NV columns, one zmm accumulator per row and vector, the same
 * FMA chain as the micro-kernel above; A is broadcast straight from memory, rows of B
 * loaded whole (masked only in the last tile of a band).  A band of rows takes the
 * narrowest MT in {1, 2, 4, 8} that covers it (rows past m repeat row m - 1: computed,
 * not stored) and the widest NV its registers allow, so that there are at least 8
 * chains (the FMA latency on two pipes) and B is streamed once per band: for a few
 * rows (a Dense layer at batch 1..16) the product is a stream of B's rows.  The tile
 * shape changes only which elements are computed together, never an element's
 * arithmetic: every element is the same FMA chain in increasing p. */

#ifndef S512_MR
#define S512_MR 8
#endif
#define S512_COL_MAX_N 16                     /* the column tiles' widest (gemm_internal.h) */
/* Tiles of 1 or 2 rows do 8 or 16 FMAs per row of B they load (a Dense layer at batch 1 or
 * 2 is a stream of B from L2): the hardware prefetchers alone left them at ~60 GFLOP/s on
 * 1x784x512; prefetching the row S512_PF steps ahead took them to ~80 (2 threads, medians
 * of 3 runs each: 4 steps gave ~73, 16 was no better).  A prefetch changes no result. */
#ifndef S512_PF
#define S512_PF 8
#endif
/* Taller tiles (4 and 8 rows: a Dense layer at batch 4..16) read each row of B with more
 * FMAs, but when B is not in L2 (the layers of a network take turns in it: 784x512 and
 * 512x256 floats are 2.1 MB) its rows, a whole row of B apart, are one L3 miss each that
 * no hardware prefetcher foresees: prefetched S512_PF_TALL rows ahead.  The 784-512-256-10
 * MLP's predict_on_batch at batch 16 went from 214 to ~125 us on one thread and from ~120
 * to ~98 on two (Xeon, AVX-512; 12 and 24 rows ahead gave the same, 48 less).  Into L1:
 * from an inference plan's packed panels (contiguous, L2-resident) the three layers at
 * batch 4 took 16 us against 19 with the prefetch into L2 only, and B as stored gained too. */
#ifndef S512_PF_TALL
#define S512_PF_TALL 16
#endif
#define S512_MAXV 8                           /* the widest tile, in vectors */

static inline __attribute__((always_inline)) void
s512_tile(const pynn_gemm_small_problem *pr, const float *const ar[S512_MR], int64_t m,
          int64_t i0, int64_t j0, int64_t n, const int MT, const int NV, const int full,
          const int act_here) {
    const int64_t k = pr->k, ldb = pr->ldb, a_cs = pr->a_cs;
    const float *b = pr->b + j0;
    __m512 acc[S512_MR][S512_MAXV];
    __mmask16 mask[S512_MAXV];
    int64_t p;
    int i, v;
#pragma GCC unroll 8
    for (v = 0; v < NV; v++)                  /* N: lanes of each vector that exist */
        mask[v] = full ? (__mmask16)0xFFFF : pynn_mask16(n - 16 * v);
#pragma GCC unroll 8
    for (i = 0; i < MT; i++)                  /* M: rows of the tile */
#pragma GCC unroll 8
        for (v = 0; v < NV; v++)              /* N: vectors of a row */
            acc[i][v] = _mm512_setzero_ps();

    for (p = 0; p < k; p++) {                 /* K: one rank-1 update per step, in order */
        __m512 bv[S512_MAXV];
        if (MT <= 2 && p + S512_PF < k) {     /* K: B's row S512_PF steps ahead, to L1 */
#pragma GCC unroll 8
            for (v = 0; v < NV; v++)          /* N: the row's cache lines */
                _mm_prefetch((const char *)(b + S512_PF * ldb + 16 * v), _MM_HINT_T0);
        } else if (MT > 2 && p + S512_PF_TALL < k) {   /* K: further ahead, to L2 */
#pragma GCC unroll 8
            for (v = 0; v < NV; v++)          /* N: the row's cache lines */
                _mm_prefetch((const char *)(b + S512_PF_TALL * ldb + 16 * v), _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (v = 0; v < NV; v++)              /* N: vectors of the B row */
            bv[v] = full ? _mm512_loadu_ps(b + 16 * v) : _mm512_maskz_loadu_ps(mask[v], b + 16 * v);
#pragma GCC unroll 8
        for (i = 0; i < MT; i++) {            /* M: rows of the tile */
            const __m512 ai = _mm512_set1_ps(ar[i][p * a_cs]);
#pragma GCC unroll 8
            for (v = 0; v < NV; v++)          /* N: vectors of a row */
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        b += ldb;
    }

    {
        const __m512 va = _mm512_set1_ps(pr->alpha), vb = _mm512_set1_ps(pr->beta);
        const __m512 zero = _mm512_setzero_ps(), slope = _mm512_set1_ps(pr->act_alpha);
#pragma GCC unroll 8
        for (i = 0; i < MT; i++) {            /* M: rows of C stored */
            float *ci = pr->c + (i0 + i) * pr->ldc + j0;
            if (i >= m) break;
#pragma GCC unroll 8
            for (v = 0; v < NV; v++) {        /* N: vectors of a row */
                __m512 t = _mm512_mul_ps(va, acc[i][v]);
                if (pr->beta != 0.0f)
                    t = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], ci + 16 * v), t);
                if (pr->bias != NULL)
                    t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(mask[v], pr->bias + j0 + 16 * v));
                _mm512_mask_storeu_ps(ci + 16 * v, mask[v], t);
                if (act_here) {
                    float *yi = pr->y + (i0 + i) * pr->ldc + j0 + 16 * v;
                    if (pr->act == PYNN_ACT_RELU) {           /* t > 0 ? t : 0 */
                        t = _mm512_max_ps(t, zero);
                    } else if (pr->act == PYNN_ACT_LEAKY_RELU) { /* t > 0 ? t : alpha t */
                        t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, zero, _CMP_GT_OQ),
                                                 _mm512_mul_ps(slope, t), t);
                    }
                    _mm512_mask_storeu_ps(yi, mask[v], t);
                }
            }
        }
    }
}

/* One band of MT rows: whole tiles of NV vectors, then the last 1..16 NV - 1 columns
 * in the narrowest power-of-two width that holds them. */
static inline __attribute__((always_inline)) void
s512_band_t(const pynn_gemm_small_problem *pr, const float *const ar[S512_MR], int64_t m,
            int64_t i0, const int MT, const int NV, const int act_here) {
    const int64_t w = 16 * NV;
    int64_t j0, rest;
    for (j0 = 0; j0 + w <= pr->n; j0 += w)    /* N: whole tiles */
        s512_tile(pr, ar, m, i0, j0, w, MT, NV, 1, act_here);
    rest = pr->n - j0;
    if (rest <= 0) return;
    if (rest <= 16 || NV == 1)                /* N: the last columns, masked */
        s512_tile(pr, ar, m, i0, j0, rest, MT, 1, 0, act_here);
    else if (rest <= 32 || NV == 2)
        s512_tile(pr, ar, m, i0, j0, rest, MT, NV < 2 ? NV : 2, 0, act_here);
    else if (rest <= 64 || NV == 4)
        s512_tile(pr, ar, m, i0, j0, rest, MT, NV < 4 ? NV : 4, 0, act_here);
    else
        s512_tile(pr, ar, m, i0, j0, rest, MT, NV, 0, act_here);
}

/* A band of m rows (1 <= m): the tile height that covers it, at most S512_MR; returns
 * the rows done. */
static int64_t s512_band(const pynn_gemm_small_problem *pr, int64_t i0, const int act_here) {
    const int64_t left = pr->m - i0;
    const int64_t mt = left <= 1 ? 1 : left <= 2 ? 2 : left <= 4 ? 4 : S512_MR;
    const int64_t m = left < mt ? left : mt;
    const float *ar[S512_MR];
    int i;
    for (i = 0; i < S512_MR; i++)             /* M: rows, the last repeated */
        ar[i] = pr->a + (i0 + (i < m ? i : m - 1)) * pr->a_rs;
#define S512_BAND(MT, NV)                                                              \
    do {                                                                               \
        if (act_here) s512_band_t(pr, ar, m, i0, MT, NV, 1);                           \
        else s512_band_t(pr, ar, m, i0, MT, NV, 0);                                    \
    } while (0)
    if (mt == 1) S512_BAND(1, 8);
    else if (mt == 2) S512_BAND(2, 8);
    else if (mt == 4) S512_BAND(4, 4);
    else S512_BAND(S512_MR, 2);
#undef S512_BAND
    return m;
}

/* Column tiles, for n <= 16 columns with A transposed (a_rs == 1: the rows of a column
 * of op(A) contiguous): 16 rows of C are the lanes of NJ = n accumulators, one a column,
 * acc[j] += op(A)(i0.., p) * B(p, j) for p in order (B broadcast from memory): each
 * element the row tiles' FMA chain, for 16 rows per step instead of 8 and no lanes past
 * n.  The 16 x NJ block is then transposed in registers and finished as in s512_tile. */
static inline __attribute__((always_inline)) void
s512_col_tile(const pynn_gemm_small_problem *pr, int64_t i0, int64_t m, const int NJ,
              const int act_here) {
    const int64_t k = pr->k, ldb = pr->ldb, a_cs = pr->a_cs;
    const float *a = pr->a + i0, *b = pr->b;
    const __mmask16 rows = pynn_mask16(m), cols = pynn_mask16(NJ);
    __m512 acc[16];
    int64_t p;
    int i, j;
#pragma GCC unroll 16
    for (j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
    for (p = 0; p < k; p++) {                 /* K: one rank-1 update per step, in order */
        const __m512 av = _mm512_maskz_loadu_ps(rows, a + p * a_cs);
#pragma GCC unroll 16
        for (j = 0; j < NJ; j++)              /* N: columns of the tile */
            acc[j] = _mm512_fmadd_ps(av, _mm512_set1_ps(b[j]), acc[j]);
        b += ldb;
    }
    avx512_transpose16(acc);                  /* acc[i]: row i of the tile */
    {
        const __m512 va = _mm512_set1_ps(pr->alpha), vb = _mm512_set1_ps(pr->beta);
        const __m512 zero = _mm512_setzero_ps(), slope = _mm512_set1_ps(pr->act_alpha);
        const __m512 bias = pr->bias != NULL ? _mm512_maskz_loadu_ps(cols, pr->bias) : zero;
#pragma GCC unroll 16
        for (i = 0; i < 16; i++) {            /* M: rows of C stored */
            float *ci = pr->c + (i0 + i) * pr->ldc;
            __m512 t;
            if (i >= m) break;
            t = _mm512_mul_ps(va, acc[i]);
            if (pr->beta != 0.0f) t = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cols, ci), t);
            if (pr->bias != NULL) t = _mm512_add_ps(t, bias);
            _mm512_mask_storeu_ps(ci, cols, t);
            if (act_here) {
                float *yi = pr->y + (i0 + i) * pr->ldc;
                if (pr->act == PYNN_ACT_RELU) {               /* t > 0 ? t : 0 */
                    t = _mm512_max_ps(t, zero);
                } else if (pr->act == PYNN_ACT_LEAKY_RELU) {  /* t > 0 ? t : alpha t */
                    t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, zero, _CMP_GT_OQ),
                                             _mm512_mul_ps(slope, t), t);
                }
                _mm512_mask_storeu_ps(yi, cols, t);
            }
        }
    }
}

static void s512_col_band(const pynn_gemm_small_problem *pr, int64_t i0, const int act_here) {
    const int64_t m = pr->m - i0 < 16 ? pr->m - i0 : 16;
    switch (pr->n) {                          /* N: one instance per column count */
#define S512_COL(NJ) case NJ: s512_col_tile(pr, i0, m, NJ, act_here); break
    S512_COL(1); S512_COL(2); S512_COL(3); S512_COL(4); S512_COL(5); S512_COL(6);
    S512_COL(7); S512_COL(8); S512_COL(9); S512_COL(10); S512_COL(11); S512_COL(12);
    S512_COL(13); S512_COL(14); S512_COL(15); S512_COL(16);
#undef S512_COL
    default: break;
    }
}

static void gemm_small_avx512(const pynn_gemm_small_problem *pr) {
    const int act_here = pr->y != NULL && (pr->act == PYNN_ACT_LINEAR || pr->act == PYNN_ACT_RELU ||
                                           pr->act == PYNN_ACT_LEAKY_RELU);
    int64_t i0;
    if (pr->a_rs == 1 && pr->n <= S512_COL_MAX_N) {
        for (i0 = 0; i0 < pr->m; i0 += 16)    /* M: bands of 16 rows */
            if (act_here)
                s512_col_band(pr, i0, 1);
            else
                s512_col_band(pr, i0, 0);
        return;
    }
    for (i0 = 0; i0 < pr->m;)                 /* M: bands of rows */
        i0 += s512_band(pr, i0, act_here);
}

/* bt[p*ldbt + j] = b[j*ldb + p], 16 x 16 blocks transposed in registers. */
static void transpose_avx512(float *bt, int64_t ldbt, const float *b, int64_t ldb,
                             int64_t k, int64_t n) {
    int64_t j0, p0;
    int j, p;
    for (j0 = 0; j0 < n; j0 += 16) {          /* N: 16 rows of b at a time */
        const int64_t h = n - j0 < 16 ? n - j0 : 16;
        const __mmask16 cols = pynn_mask16(h);
        for (p0 = 0; p0 < k; p0 += 16) {      /* K: 16 columns of b at a time */
            const int64_t w = k - p0 < 16 ? k - p0 : 16;
            const __mmask16 rows = pynn_mask16(w);
            __m512 r[16];
#pragma GCC unroll 16
            for (j = 0; j < 16; j++)          /* N: rows of b, zero past n */
                r[j] = j < h ? _mm512_maskz_loadu_ps(rows, b + (j0 + j) * ldb + p0)
                             : _mm512_setzero_ps();
            avx512_transpose16(r);
#pragma GCC unroll 16
            for (p = 0; p < 16; p++)          /* K: rows of bt */
                if (p < w) _mm512_mask_storeu_ps(bt + (p0 + p) * ldbt + j0, cols, r[p]);
        }
    }
}

/* ---- the table the driver reads ------------------------------------------- */

/* Blocking: kc x NR floats of B (32 KiB at kc = 256, NR = 32) in the 48 KiB L1,
 * a 432 x 256 block of A (432 KiB) in the 1 MiB L2, a 256 x 4096 panel of B
 * (4 MiB) in L3.  Measured on Zen 5 (2 cores): MC 432 beat 144 and 288 by 3-5%
 * at 1024-2048, more made no difference; KC 192 or 384 and the tiles 14x32,
 * 8x48 and 6x64 were no better than 12x32 at KC 256. */
#ifndef AVX512_MC
#define AVX512_MC 432
#endif
#ifndef AVX512_KC
#define AVX512_KC 256
#endif
#ifndef AVX512_NC
#define AVX512_NC 4096
#endif
const pynn_gemm_kernel_info pynn_gemm_kernel_avx512 = {
    PYNN_KERNEL_AVX512, AVX512_MR, AVX512_NR, AVX512_MC, AVX512_KC, AVX512_NC,
    gemm_ukernel_avx512, avx512_pack_a, avx512_pack_b, gemm_small_avx512, transpose_avx512,
    S512_COL_MAX_N, 1,
};

#endif /* PYNN_HAVE_X86_KERNELS */
