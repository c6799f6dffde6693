/* gemm_kernel_avx2.c -- AVX2 + FMA micro-kernel, compiled with -mavx2 -mfma
 * (only this translation unit) and used at PYNN_LEVEL_AVX2 (dispatch.c).
 * Contract: see gemm_internal.h.
 *
 * 6 x 16 tile: each row of C is two ymm registers, 12 accumulators in all, plus
 * two registers of B and one broadcast of A: 15 of the 16 ymm registers.  Twelve
 * independent FMA chains cover the FMA latency (4-5 cycles) on two FMA ports.
 * Edge tiles use masked loads and stores, so they do the same arithmetic as full
 * ones. */
#include "internal.h"
#include "gemm_internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>
#include "simd_mask.h"

#define AVX2_MR 6
#define AVX2_NR 16
#define S256_COL_MIN_N 9                      /* the small path's column tiles */
#define S256_COL_MAX_N 12

static void gemm_ukernel_avx2(float *c, const float *a, const float *b,
                              int64_t m, int64_t n, int64_t kc,
                              float alpha, float beta, int64_t ldc) {
    __m256 acc[AVX2_MR][2];
    int64_t p;
    int i;
#pragma GCC unroll 6
    for (i = 0; i < AVX2_MR; i++) {           /* M: rows of the tile */
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }
    for (p = 0; p < kc; p++) {                /* K: one rank-1 update per step */
        const __m256 b0 = _mm256_load_ps(b);
        const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (i = 0; i < AVX2_MR; i++) {       /* M: rows of the tile */
            const __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += AVX2_MR;
        b += AVX2_NR;
    }

    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const __m256i mask0 = pynn_mask8(n), mask1 = pynn_mask8(n - 8);
    /* Unrolled over all MR rows so that acc[i] names a register; rows past m
     * do not exist in C. */
#pragma GCC unroll 6
    for (i = 0; i < AVX2_MR; i++) {           /* M: rows of C stored */
        float *ci = c + i * ldc;
        if (i >= m) break;
        __m256 t0 = _mm256_mul_ps(va, acc[i][0]);
        __m256 t1 = _mm256_mul_ps(va, acc[i][1]);
        if (n == AVX2_NR) {
            if (beta != 0.0f) {
                t0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), t0);
                t1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), t1);
            }
            _mm256_storeu_ps(ci, t0);
            _mm256_storeu_ps(ci + 8, t1);
        } else {
            if (beta != 0.0f) {
                t0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, mask0), t0);
                t1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, mask1), t1);
            }
            _mm256_maskstore_ps(ci, mask0, t0);
            _mm256_maskstore_ps(ci + 8, mask1, t1);
        }
    }
}

/* ---- packing with 8 x 8 transposes in registers -----------------------------
 * As in gemm_kernel_avx512.c: the two layouts that need a transpose (A as
 * stored, B transposed) are copied 8 x 8 floats at a time; the portable
 * routines handle the others. */

/* r[c] := column c of the 8 x 8 block whose rows are r[0..7]. */
static inline void avx2_transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    int g;
#pragma GCC unroll 4
    for (g = 0; g < 8; g += 2) {              /* row pairs: interleave floats */
        t[g] = _mm256_unpacklo_ps(r[g], r[g + 1]);
        t[g + 1] = _mm256_unpackhi_ps(r[g], r[g + 1]);
    }
#pragma GCC unroll 2
    for (g = 0; g < 8; g += 4) {              /* row quads: columns q of each lane */
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    /* Lane L of u[4h + q] holds rows 4h..4h+3 of column 4L + q. */
#pragma GCC unroll 4
    for (g = 0; g < 4; g++) {                 /* columns g and 4 + g */
        r[g] = _mm256_permute2f128_ps(u[g], u[4 + g], 0x20);
        r[4 + g] = _mm256_permute2f128_ps(u[g], u[4 + g], 0x31);
    }
}

/* A micro-panel; the transpose path serves A as stored (cs == 1). */
static void avx2_pack_a(float *ap, const float *a, int64_t rs, int64_t cs,
                        int64_t m, int64_t kc, int64_t mr) {
    const __m256i panel_rows = pynn_mask8(AVX2_MR);
    int64_t p0;
    int i, p;
    if (cs != 1 || mr != AVX2_MR) {
        pynn_gemm_pack_a_ref(ap, a, rs, cs, m, kc, mr);
        return;
    }
    for (p0 = 0; p0 < kc; p0 += 8) {          /* K: 8 columns of the panel at a time */
        const int64_t w = kc - p0 < 8 ? kc - p0 : 8;
        const __m256i cols = pynn_mask8(w);
        __m256 r[8];
#pragma GCC unroll 8
        for (i = 0; i < 8; i++)               /* M: rows, zero past m */
            r[i] = i < m ? _mm256_maskload_ps(a + i * rs + p0, cols) : _mm256_setzero_ps();
        avx2_transpose8(r);
#pragma GCC unroll 8
        for (p = 0; p < 8; p++)               /* K: one packed column of MR floats */
            if (p < w) _mm256_maskstore_ps(ap + (p0 + p) * AVX2_MR, panel_rows, r[p]);
    }
}

/* A B micro-panel; the transpose path serves B transposed (rs == 1). */
static void avx2_pack_b(float *bp, const float *b, int64_t rs, int64_t cs,
                        int64_t kc, int64_t n, int64_t nr) {
    int64_t p0;
    int h, j, p;
    if (rs != 1 || nr != AVX2_NR) {
        pynn_gemm_pack_b_ref(bp, b, rs, cs, kc, n, nr);
        return;
    }
    for (p0 = 0; p0 < kc; p0 += 8) {          /* K: 8 rows of the panel at a time */
        const int64_t w = kc - p0 < 8 ? kc - p0 : 8;
        const __m256i rows = pynn_mask8(w);
        for (h = 0; h < AVX2_NR / 8; h++) {   /* N: 8 columns of the panel at a time */
            __m256 r[8];
#pragma GCC unroll 8
            for (j = 0; j < 8; j++)           /* N: columns of op(B), zero past n */
                r[j] = 8 * h + j < n ? _mm256_maskload_ps(b + (8 * h + j) * cs + p0, rows)
                                     : _mm256_setzero_ps();
            avx2_transpose8(r);
#pragma GCC unroll 8
            for (p = 0; p < 8; p++)           /* K: one packed row, 8 of its NR floats */
                if (p < w) _mm256_storeu_ps(bp + (p0 + p) * AVX2_NR + 8 * h, r[p]);
        }
    }
}

/* ---- the small-problem path (gemm_internal.h) --------------------------------
 * Tiles of MT rows x 8 NV columns, one ymm accumulator per row and vector, the same
 * FMA chain as the micro-kernel above; A is broadcast straight from memory, rows of B
 * loaded whole (masked only in the last tile of a band).  A band takes the narrowest
 * MT in {1, 2, 4, 6} that covers its rows (rows past m repeat row m - 1: computed,
 * not stored) and NV = 8, 4, 2, 2 (8 to 12 chains within the 16 registers), so that
 * a few rows stream B once.  The tile shape never changes an element's arithmetic. */

#define S256_MAXV 8

static inline __attribute__((always_inline)) void
s256_tile(const pynn_gemm_small_problem *pr, const float *const ar[AVX2_MR], int64_t m,
          int64_t i0, int64_t j0, int64_t n, const int MT, const int NV, const int full,
          const int act_here) {
    const int64_t k = pr->k, ldb = pr->ldb, a_cs = pr->a_cs;
    const float *b = pr->b + j0;
    __m256 acc[AVX2_MR][S256_MAXV];
    __m256i mask[S256_MAXV];
    int64_t p;
    int i, v;
#pragma GCC unroll 8
    for (v = 0; v < NV; v++)                  /* N: lanes of each vector that exist */
        mask[v] = pynn_mask8(full ? 8 : n - 8 * v);
#pragma GCC unroll 6
    for (i = 0; i < MT; i++)                  /* M: rows of the tile */
#pragma GCC unroll 8
        for (v = 0; v < NV; v++)              /* N: vectors of a row */
            acc[i][v] = _mm256_setzero_ps();

    for (p = 0; p < k; p++) {                 /* K: one rank-1 update per step, in order */
        __m256 bv[S256_MAXV];
#pragma GCC unroll 8
        for (v = 0; v < NV; v++)              /* N: vectors of the B row */
            bv[v] = full ? _mm256_loadu_ps(b + 8 * v) : _mm256_maskload_ps(b + 8 * v, mask[v]);
#pragma GCC unroll 6
        for (i = 0; i < MT; i++) {            /* M: rows of the tile */
            const __m256 ai = _mm256_broadcast_ss(ar[i] + p * a_cs);
#pragma GCC unroll 8
            for (v = 0; v < NV; v++)          /* N: vectors of a row */
                acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        b += ldb;
    }

    {
        const __m256 va = _mm256_set1_ps(pr->alpha), vb = _mm256_set1_ps(pr->beta);
        const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(pr->act_alpha);
#pragma GCC unroll 6
        for (i = 0; i < MT; i++) {            /* M: rows of C stored */
            float *ci = pr->c + (i0 + i) * pr->ldc + j0;
            if (i >= m) break;
#pragma GCC unroll 8
            for (v = 0; v < NV; v++) {        /* N: vectors of a row */
                __m256 t = _mm256_mul_ps(va, acc[i][v]);
                if (pr->beta != 0.0f)
                    t = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8 * v, mask[v]), t);
                if (pr->bias != NULL)
                    t = _mm256_add_ps(t, _mm256_maskload_ps(pr->bias + j0 + 8 * v, mask[v]));
                _mm256_maskstore_ps(ci + 8 * v, mask[v], t);
                if (act_here) {
                    float *yi = pr->y + (i0 + i) * pr->ldc + j0 + 8 * v;
                    if (pr->act == PYNN_ACT_RELU) {           /* t > 0 ? t : 0 */
                        t = _mm256_max_ps(t, zero);
                    } else if (pr->act == PYNN_ACT_LEAKY_RELU) { /* t > 0 ? t : alpha t */
                        t = _mm256_blendv_ps(_mm256_mul_ps(slope, t), t,
                                             _mm256_cmp_ps(t, zero, _CMP_GT_OQ));
                    }
                    _mm256_maskstore_ps(yi, mask[v], t);
                }
            }
        }
    }
}

/* One band of MT rows: whole tiles of NV vectors, then the last columns in the
 * narrowest power-of-two width that holds them. */
static inline __attribute__((always_inline)) void
s256_band_t(const pynn_gemm_small_problem *pr, const float *const ar[AVX2_MR], int64_t m,
            int64_t i0, const int MT, const int NV, const int act_here) {
    const int64_t w = 8 * NV;
    int64_t j0, rest;
    for (j0 = 0; j0 + w <= pr->n; j0 += w)    /* N: whole tiles */
        s256_tile(pr, ar, m, i0, j0, w, MT, NV, 1, act_here);
    rest = pr->n - j0;
    if (rest <= 0) return;
    if (rest <= 8 || NV == 1)                 /* N: the last columns, masked */
        s256_tile(pr, ar, m, i0, j0, rest, MT, 1, 0, act_here);
    else if (rest <= 16 || NV == 2)
        s256_tile(pr, ar, m, i0, j0, rest, MT, NV < 2 ? NV : 2, 0, act_here);
    else if (rest <= 32 || NV == 4)
        s256_tile(pr, ar, m, i0, j0, rest, MT, NV < 4 ? NV : 4, 0, act_here);
    else
        s256_tile(pr, ar, m, i0, j0, rest, MT, NV, 0, act_here);
}

/* A band of rows from i0: the tile height that covers them, at most AVX2_MR; returns
 * the rows done. */
static int64_t s256_band(const pynn_gemm_small_problem *pr, int64_t i0, const int act_here) {
    const int64_t left = pr->m - i0;
    const int64_t mt = left <= 1 ? 1 : left <= 2 ? 2 : left <= 4 ? 4 : AVX2_MR;
    const int64_t m = left < mt ? left : mt;
    const float *ar[AVX2_MR];
    int i;
    for (i = 0; i < AVX2_MR; i++)             /* M: rows, the last repeated */
        ar[i] = pr->a + (i0 + (i < m ? i : m - 1)) * pr->a_rs;
#define S256_BAND(MT, NV)                                                              \
    do {                                                                               \
        if (act_here) s256_band_t(pr, ar, m, i0, MT, NV, 1);                           \
        else s256_band_t(pr, ar, m, i0, MT, NV, 0);                                    \
    } while (0)
    if (mt == 1) S256_BAND(1, 8);
    else if (mt == 2) S256_BAND(2, 4);
    else if (mt == 4) S256_BAND(4, 2);
    else S256_BAND(AVX2_MR, 2);
#undef S256_BAND
    return m;
}

/* Column tiles, for 9 to 12 columns (where a row tile's second vector is mostly empty)
 * with A transposed (a_rs == 1): 8 rows of C are the lanes of NJ = n accumulators, one
 * a column, acc[j] += op(A)(i0.., p) * B(p, j) for p in order: each element the row
 * tiles' FMA chain.  The 8 x NJ block is transposed in registers (two 8 x 8 blocks)
 * and finished as in s256_tile. */
static inline __attribute__((always_inline)) void
s256_col_tile(const pynn_gemm_small_problem *pr, int64_t i0, int64_t m, const int NJ,
              const int act_here) {
    const int64_t k = pr->k, ldb = pr->ldb, a_cs = pr->a_cs;
    const float *a = pr->a + i0, *b = pr->b;
    const __m256i rows = pynn_mask8(m);
    __m256i mask[2];
    __m256 acc[16];
    int64_t p;
    int i, j, v;
    mask[0] = pynn_mask8(NJ);
    mask[1] = pynn_mask8(NJ - 8);
#pragma GCC unroll 16
    for (j = 0; j < 16; j++) acc[j] = _mm256_setzero_ps();
    for (p = 0; p < k; p++) {                 /* K: one rank-1 update per step, in order */
        const __m256 av = _mm256_maskload_ps(a + p * a_cs, rows);
#pragma GCC unroll 16
        for (j = 0; j < NJ; j++)              /* N: columns of the tile */
            acc[j] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(b + j), acc[j]);
        b += ldb;
    }
    avx2_transpose8(acc);                     /* acc[i]: columns 0..7 of row i */
    avx2_transpose8(acc + 8);                 /* acc[8 + i]: columns 8..15 of row i */
    {
        const __m256 va = _mm256_set1_ps(pr->alpha), vb = _mm256_set1_ps(pr->beta);
        const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(pr->act_alpha);
        __m256 bias[2];
#pragma GCC unroll 2
        for (v = 0; v < 2; v++)               /* N: vectors of the bias */
            bias[v] = pr->bias != NULL ? _mm256_maskload_ps(pr->bias + 8 * v, mask[v]) : zero;
#pragma GCC unroll 8
        for (i = 0; i < 8; i++) {             /* M: rows of C stored */
            if (i >= m) break;
#pragma GCC unroll 2
            for (v = 0; v < 2; v++) {         /* N: vectors of a row */
                float *ci = pr->c + (i0 + i) * pr->ldc + 8 * v;
                __m256 t = _mm256_mul_ps(va, acc[8 * v + i]);
                if (pr->beta != 0.0f) t = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, mask[v]), t);
                if (pr->bias != NULL) t = _mm256_add_ps(t, bias[v]);
                _mm256_maskstore_ps(ci, mask[v], t);
                if (act_here) {
                    float *yi = pr->y + (i0 + i) * pr->ldc + 8 * v;
                    if (pr->act == PYNN_ACT_RELU) {           /* t > 0 ? t : 0 */
                        t = _mm256_max_ps(t, zero);
                    } else if (pr->act == PYNN_ACT_LEAKY_RELU) { /* t > 0 ? t : alpha t */
                        t = _mm256_blendv_ps(_mm256_mul_ps(slope, t), t,
                                             _mm256_cmp_ps(t, zero, _CMP_GT_OQ));
                    }
                    _mm256_maskstore_ps(yi, mask[v], t);
                }
            }
        }
    }
}

static void s256_col_band(const pynn_gemm_small_problem *pr, int64_t i0, const int act_here) {
    const int64_t m = pr->m - i0 < 8 ? pr->m - i0 : 8;
    switch (pr->n) {                          /* N: one instance per column count */
#define S256_COL(NJ) case NJ: s256_col_tile(pr, i0, m, NJ, act_here); break
    S256_COL(9); S256_COL(10); S256_COL(11); S256_COL(12);
#undef S256_COL
    default: break;
    }
}

static void gemm_small_avx2(const pynn_gemm_small_problem *pr) {
    const int act_here = pr->y != NULL && (pr->act == PYNN_ACT_LINEAR || pr->act == PYNN_ACT_RELU ||
                                           pr->act == PYNN_ACT_LEAKY_RELU);
    int64_t i0;
    if (pr->a_rs == 1 && pr->n >= S256_COL_MIN_N && pr->n <= S256_COL_MAX_N) {
        for (i0 = 0; i0 < pr->m; i0 += 8)     /* M: bands of 8 rows */
            if (act_here)
                s256_col_band(pr, i0, 1);
            else
                s256_col_band(pr, i0, 0);
        return;
    }
    for (i0 = 0; i0 < pr->m;)                 /* M: bands of rows */
        i0 += s256_band(pr, i0, act_here);
}

/* bt[p*ldbt + j] = b[j*ldb + p], 8 x 8 blocks transposed in registers. */
static void transpose_avx2(float *bt, int64_t ldbt, const float *b, int64_t ldb,
                           int64_t k, int64_t n) {
    int64_t j0, p0;
    int j, p;
    for (j0 = 0; j0 < n; j0 += 8) {           /* N: 8 rows of b at a time */
        const int64_t h = n - j0 < 8 ? n - j0 : 8;
        const __m256i cols = pynn_mask8(h);
        for (p0 = 0; p0 < k; p0 += 8) {       /* K: 8 columns of b at a time */
            const int64_t w = k - p0 < 8 ? k - p0 : 8;
            const __m256i rows = pynn_mask8(w);
            __m256 r[8];
#pragma GCC unroll 8
            for (j = 0; j < 8; j++)           /* N: rows of b, zero past n */
                r[j] = j < h ? _mm256_maskload_ps(b + (j0 + j) * ldb + p0, rows)
                             : _mm256_setzero_ps();
            avx2_transpose8(r);
#pragma GCC unroll 8
            for (p = 0; p < 8; p++)           /* K: rows of bt */
                if (p < w) _mm256_maskstore_ps(bt + (p0 + p) * ldbt + j0, cols, r[p]);
        }
    }
}

/* Blocking: kc x 16 floats of B (16 KiB at kc = 256) in L1, a 120 x 256 block
 * of A (120 KiB) in L2, a 256 x 4096 panel of B (4 MiB) in L3. */
const pynn_gemm_kernel_info pynn_gemm_kernel_avx2 = {
    PYNN_KERNEL_AVX2, AVX2_MR, AVX2_NR, 120, 256, 4096,
    gemm_ukernel_avx2, avx2_pack_a, avx2_pack_b, gemm_small_avx2, transpose_avx2,
    S256_COL_MAX_N, S256_COL_MIN_N,
};

#endif /* PYNN_HAVE_X86_KERNELS */
