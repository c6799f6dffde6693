/* conv_gemm_avx512.c -- the implicit GEMM's tiles and block copies at PYNN_LEVEL_AVX512
 * (conv_gemm.c), compiled with -mavx512f/vl/dq/bw.  Contracts: conv_gemm_internal.h. */
#include "internal.h"
#include "conv_gemm_internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#include <immintrin.h>
#include "simd_mask.h"

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The tile's rows of z (and y): acc, + c when accumulating, + bias, the activation.  FULL:
 * the tile's MR rows are all live (t->m == MR), so that the rows are a fixed sequence and
 * acc can stay in registers (a loop that may stop early puts it on the stack). */
static inline __attribute__((always_inline)) void tile_store(const pynn_conv_tile *t,
                                                             __m512 acc[12][3], const int MR,
                                                             const int NV, const int FULL) {
    int i, v;
    {
        const __m512 zero = _mm512_setzero_ps(), slope = _mm512_set1_ps(t->alpha);
        const int act_here = t->y != NULL && (t->act == PYNN_ACT_LINEAR ||
                                              t->act == PYNN_ACT_RELU ||
                                              t->act == PYNN_ACT_LEAKY_RELU);
        const int over_z = act_here && t->y == t->c;  /* y written over z: one store */
        __mmask16 mask[3];
        __m512 bias[3];
        for (v = 0; v < NV; v++) {            /* N: vectors of a row */
            mask[v] = pynn_mask16(t->n - 16 * v);
            bias[v] = t->bias != NULL ? _mm512_maskz_loadu_ps(mask[v], t->bias + 16 * v) : zero;
        }
#pragma GCC unroll 12
        for (i = 0; i < MR; i++) {            /* M: rows of z stored */
            float *ci, *yi;
            if (!FULL && i >= t->m) break;
            ci = t->c + t->rowpos[i] * t->ldc;
            yi = act_here ? t->y + t->rowpos[i] * t->ldc : NULL;
#pragma GCC unroll 3
            for (v = 0; v < NV; v++) {        /* N: vectors of a row */
                __m512 u = acc[i][v];
                if (t->accumulate) u = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[v], ci + 16 * v), u);
                if (t->bias != NULL) u = _mm512_add_ps(u, bias[v]);
                if (!over_z) _mm512_mask_storeu_ps(ci + 16 * v, mask[v], u);
                if (act_here) {
                    if (t->act == PYNN_ACT_RELU) {                 /* u > 0 ? u : 0 */
                        u = _mm512_max_ps(u, zero);
                    } else if (t->act == PYNN_ACT_LEAKY_RELU) {    /* u > 0 ? u : alpha u */
                        u = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(u, zero, _CMP_GT_OQ),
                                                 _mm512_mul_ps(slope, u), u);
                    }
                    _mm512_mask_storeu_ps(yi + 16 * v, mask[v], u);
                }
            }
        }
    }
}

/* ---- the forward's tiles: A broadcast straight from the window lines ---------------
 * No packed A: each step of K broadcasts the tile's MR values from the MR rows' current
 * window rows (one pointer per row, a shared index) and multiplies them into the
 * NV vectors of the packed weights' row, the FMA chain of gemm_kernel_avx512.c.  Only the
 * window rows [a_lo, a_hi) and entries [s_lo, s_hi) of each -- those in x -- are visited
 * (conv_gemm_internal.h). */
static inline __attribute__((always_inline)) void conv_tile_body(const pynn_conv_tile *t,
                                                                 const int MR, const int NV) {
    __m512 acc[12][3];
    __m512 bv[3];
    const int64_t NR = 16 * NV, end = t->pc + t->kc;
    int64_t a;
    int i, v;
#pragma GCC unroll 12
    for (i = 0; i < MR; i++)                  /* M: rows of the tile */
#pragma GCC unroll 3
        for (v = 0; v < NV; v++)              /* N: vectors of a row */
            acc[i][v] = _mm512_setzero_ps();
    for (a = t->a_lo; a < t->a_hi; a++) {     /* K: window rows in x */
        const int64_t row0 = a * t->span;     /* K index of the window row's entry 0 */
        const int64_t s0 = row0 + t->s_lo > t->pc ? t->s_lo : t->pc - row0;
        const int64_t s1 = row0 + t->s_hi < end ? t->s_hi : end - row0;
        const int64_t off = (a - t->a_lo) * t->ldx + (s0 - t->s_lo);
        const float *b = t->b + (row0 + s0 - t->pc) * NR;
        const float *r[12];
        int64_t s;
        if (s0 >= s1) continue;               /* outside this K block */
#pragma GCC unroll 12
        for (i = 0; i < MR; i++) r[i] = t->rows[i] + off;
        for (s = 0; s < s1 - s0; s++) {       /* K: along the window row */
#pragma GCC unroll 3
            for (v = 0; v < NV; v++)          /* N: vectors of the B row */
                bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 12
            for (i = 0; i < MR; i++) {        /* M: rows of the tile */
                const __m512 ai = _mm512_set1_ps(r[i][s]);
#pragma GCC unroll 3
                for (v = 0; v < NV; v++)      /* N: vectors of a row */
                    acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
            }
            b += NR;
        }
    }
    tile_store(t, acc, MR, NV, 0);
}

/* A tile over the whole window, KH rows of SPAN entries all in x, in one K block (a
 * first layer's short K): the same FMA chain, its KH * SPAN steps unrolled -- the row
 * pointers stay put, each step's entry a compile-time offset in its window row, the rows
 * ldx apart: none of the generic loop's set-up per window row (~10% of such a tile). */
static inline __attribute__((always_inline)) void whole_window_body(const pynn_conv_tile *t,
                                                                    const int MR, const int NV,
                                                                    const int KH,
                                                                    const int SPAN) {
    __m512 acc[12][3];
    __m512 bv[3];
    const int64_t NR = 16 * NV;
    int i, v;
    if (t->m < MR) {                          /* the batch's last, partial tile */
        conv_tile_body(t, MR, NV);
        return;
    }
#pragma GCC unroll 12
    for (i = 0; i < MR; i++)                  /* M: rows of the tile */
#pragma GCC unroll 3
        for (v = 0; v < NV; v++)              /* N: vectors of a row */
            acc[i][v] = _mm512_setzero_ps();
    {
        const float *const b = t->b;
        const int64_t ldx = t->ldx;
        const float *const *const r = t->rows;
        int k;
#pragma GCC unroll 64
        for (k = 0; k < KH * SPAN; k++) {    /* K: the window's entries, in order */
            const int64_t o = (k / SPAN) * ldx + k % SPAN;
#pragma GCC unroll 3
            for (v = 0; v < NV; v++)          /* N: vectors of the B row */
                bv[v] = _mm512_loadu_ps(b + k * NR + 16 * v);
#pragma GCC unroll 12
            for (i = 0; i < MR; i++) {        /* M: rows of the tile */
                const __m512 ai = _mm512_set1_ps(r[i][o]);
#pragma GCC unroll 3
                for (v = 0; v < NV; v++)      /* N: vectors of a row */
                    acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
            }
        }
    }
    tile_store(t, acc, MR, NV, 1);
}

void pynn_conv_tile_avx512_12x32(const pynn_conv_tile *t) { conv_tile_body(t, 12, 2); }
void pynn_conv_tile_avx512_8x48(const pynn_conv_tile *t) { conv_tile_body(t, 8, 3); }
void pynn_conv_tile_avx512_12x32_3x3x3(const pynn_conv_tile *t) { whole_window_body(t, 12, 2, 3, 9); }
void pynn_conv_tile_avx512_12x32_3x3x1(const pynn_conv_tile *t) { whole_window_body(t, 12, 2, 3, 3); }

/* ---- tiles of unpacked operands (the filter gradient) --------------------------- */
/* LINES = 0: row p of A at t->a + p*lda (a block of cols rows); LINES = 1: at
 * lt->lines[p*lt->kh + lt->a] + lt->s0, a window row of x (or its zero-padded copy), so
 * that the block of cols rows is never made.  The same FMA chains either way. */
static inline __attribute__((always_inline)) void ktile_body(const pynn_conv_ktile *t,
                                                             const pynn_conv_ltile *lt,
                                                             const int MR, const int NV,
                                                             const int LINES, const int TAPS) {
    __m512 acc[12][3];
    __m512 bv[3];
    __mmask16 mask[3];
    const float *a = LINES ? NULL : t->a, *b = LINES ? lt->b : t->b;
    const float *const *line = LINES ? lt->lines + lt->a : NULL;
    const int64_t kc = LINES ? lt->kc : t->kc, ldb = LINES ? lt->ldb : t->ldb;
    const int64_t n = LINES ? lt->n : t->n;
    const char *const pf = LINES ? lt->pf : t->pf;
    const int64_t pf_lines = LINES ? lt->pf_lines : t->pf_lines;
    const uint64_t *const taps = TAPS ? t->taps : NULL;
    const uint64_t tap_bits = TAPS ? t->tap_bits : 0;
    int64_t p;
    int i, v;
#pragma GCC unroll 3
    for (v = 0; v < NV; v++) mask[v] = pynn_mask16(n - 16 * v);
#pragma GCC unroll 12
    for (i = 0; i < MR; i++)                  /* M: rows of the tile */
#pragma GCC unroll 3
        for (v = 0; v < NV; v++)              /* N: vectors of a row */
            acc[i][v] = _mm512_setzero_ps();
    for (p = 0; p < kc; p++) {                /* K: one rank-1 update per step */
        const float *ap = LINES ? line[p * lt->kh] + lt->s0 : a;
        if (p < pf_lines) _mm_prefetch(pf + 64 * p, _MM_HINT_T1);
        if (p + kc < pf_lines) _mm_prefetch(pf + 64 * (p + kc), _MM_HINT_T1);
        if (TAPS && (taps[p] & tap_bits) == 0) {   /* the padding's zeros only */
            if (!LINES) a += t->lda;
            b += ldb;
            continue;
        }
#pragma GCC unroll 3
        for (v = 0; v < NV; v++)              /* N: vectors of the B row */
            bv[v] = _mm512_maskz_loadu_ps(mask[v], b + 16 * v);
#pragma GCC unroll 12
        for (i = 0; i < MR; i++) {            /* M: rows of the tile */
            const __m512 ai = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 3
            for (v = 0; v < NV; v++)          /* N: vectors of a row */
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        if (!LINES) a += t->lda;
        b += ldb;
    }
    {
        float *const c = LINES ? lt->c : t->c;
        const int64_t ldc = LINES ? lt->ldc : t->ldc, m = LINES ? lt->m : t->m;
        const int accumulate = LINES ? lt->accumulate : t->accumulate;
#pragma GCC unroll 12
        for (i = 0; i < MR; i++) {            /* M: rows of c stored */
            float *ci = c + i * ldc;
            if (i >= m) break;
#pragma GCC unroll 3
            for (v = 0; v < NV; v++) {        /* N: vectors of a row */
                __m512 u = acc[i][v];
                if (accumulate) u = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[v], ci + 16 * v), u);
                _mm512_mask_storeu_ps(ci + 16 * v, mask[v], u);
            }
        }
    }
}

#define KTILE(MR, NV)                                                                     \
    static void ktile_##MR##_##NV(const pynn_conv_ktile *t) {                             \
        if (t->taps != NULL) ktile_body(t, NULL, MR, NV, 0, 1);                           \
        else ktile_body(t, NULL, MR, NV, 0, 0);                                           \
    }                                                                                     \
    static void ltile_##MR##_##NV(const pynn_conv_ltile *t) { ktile_body(NULL, t, MR, NV, 1, 0); }
KTILE(6, 1) KTILE(7, 1) KTILE(8, 1) KTILE(9, 1) KTILE(10, 1) KTILE(11, 1) KTILE(12, 1)
KTILE(6, 2) KTILE(7, 2) KTILE(8, 2) KTILE(9, 2) KTILE(10, 2) KTILE(11, 2) KTILE(12, 2)
KTILE(6, 3) KTILE(7, 3) KTILE(8, 3)
/* five rows: a window row of 15 entries (5x5 windows over 3 channels) read in place */
static void ltile_5_1(const pynn_conv_ltile *t) { ktile_body(NULL, t, 5, 1, 1, 0); }
static void ltile_5_2(const pynn_conv_ltile *t) { ktile_body(NULL, t, 5, 2, 1, 0); }
static void ltile_5_3(const pynn_conv_ltile *t) { ktile_body(NULL, t, 5, 3, 1, 0); }
#undef KTILE

int pynn_conv_ktile_avx512(const pynn_conv_ktile *t, int mr, int nv) {
    static void (*const table[3][7])(const pynn_conv_ktile *) = {
        {ktile_6_1, ktile_7_1, ktile_8_1, ktile_9_1, ktile_10_1, ktile_11_1, ktile_12_1},
        {ktile_6_2, ktile_7_2, ktile_8_2, ktile_9_2, ktile_10_2, ktile_11_2, ktile_12_2},
        {ktile_6_3, ktile_7_3, ktile_8_3, NULL, NULL, NULL, NULL},
    };
    if (nv < 1 || nv > 3 || mr < PYNN_CONV_KTILE_MR_LO || mr > 12) return PYNN_EINVAL;
    if (table[nv - 1][mr - PYNN_CONV_KTILE_MR_LO] == NULL) return PYNN_EINVAL;
    table[nv - 1][mr - PYNN_CONV_KTILE_MR_LO](t);
    return PYNN_OK;
}

int pynn_conv_ltile_avx512(const pynn_conv_ltile *t, int mr, int nv) {
    static void (*const table[3][8])(const pynn_conv_ltile *) = {
        {ltile_5_1, ltile_6_1, ltile_7_1, ltile_8_1, ltile_9_1, ltile_10_1, ltile_11_1, ltile_12_1},
        {ltile_5_2, ltile_6_2, ltile_7_2, ltile_8_2, ltile_9_2, ltile_10_2, ltile_11_2, ltile_12_2},
        {ltile_5_3, ltile_6_3, ltile_7_3, ltile_8_3, NULL, NULL, NULL, NULL},
    };
    if (nv < 1 || nv > 3 || mr < PYNN_CONV_LTILE_MR_LO || mr > 12) return PYNN_EINVAL;
    if (table[nv - 1][mr - PYNN_CONV_LTILE_MR_LO] == NULL) return PYNN_EINVAL;
    table[nv - 1][mr - PYNN_CONV_LTILE_MR_LO](t);
    return PYNN_OK;
}

/* ---- a block of cols rows ------------------------------------------------------------ */
static inline void copy_floats(float *dst, const float *src, int64_t n) {
    int64_t e;
    for (e = 0; e + 16 <= n; e += 16)         /* whole vectors */
        _mm512_storeu_ps(dst + e, _mm512_loadu_ps(src + e));
    if (e < n) {                              /* the rest, masked */
        const __mmask16 rest = pynn_mask16(n - e);
        _mm512_mask_storeu_ps(dst + e, rest, _mm512_maskz_loadu_ps(rest, src + e));
    }
}

void pynn_conv_pack_dz_avx512(float *bp, const float *dz, int64_t kc, int64_t f, int64_t nr) {
    int64_t j0, q;
    for (j0 = 0; j0 < f; j0 += nr) {          /* N: panels of nr filters */
        const int64_t n = min_i64(nr, f - j0);
        float *panel = bp + j0 * kc;
        for (q = 0; q < kc; q++)              /* positions */
            copy_floats(panel + q * nr, dz + q * f + j0, n);
    }
}

static inline void zero_floats(float *dst, int64_t n) {
    int64_t e;
    for (e = 0; e + 16 <= n; e += 16) _mm512_storeu_ps(dst + e, _mm512_setzero_ps());
    if (e < n) _mm512_mask_storeu_ps(dst + e, pynn_mask16(n - e), _mm512_setzero_ps());
}

/* A window row across the left or right edge (or both) of x's row xrow, its window at
 * column q0: the columns in x copied in one piece, zeros for the others, into dst (span
 * floats).  The values pynn_conv_window_row gives, without a library call per column. */
static inline const float *edge_row(float *dst, const pynn_conv_geom *g, const float *xrow,
                                    int64_t q0) {
    const int64_t lo = q0 > 0 ? q0 : 0, hi = min_i64(q0 + g->kw, g->w);
    if (hi <= lo) {                           /* no column in x */
        zero_floats(dst, g->span);
        return dst;
    }
    zero_floats(dst, (lo - q0) * g->c);
    copy_floats(dst + (lo - q0) * g->c, xrow + lo * g->c, (hi - lo) * g->c);
    zero_floats(dst + (hi - q0) * g->c, (q0 + g->kw - hi) * g->c);
    return dst;
}

void pynn_conv_cols_block_avx512(float *cb, int64_t ld, const pynn_conv_geom *g, int64_t q0,
                                 int64_t kc) {
    pynn_conv_pos pos = pynn_conv_pos_of(g, q0);
    int64_t q, a;
    for (q = 0; q < kc; q++) {                /* positions */
        if (pynn_conv_pos_inside(g, &pos)) {  /* the window in the image */
            const float *w0 = g->x + ((pos.img * g->h + pos.r0) * g->w + pos.q0) * g->c;
            for (a = 0; a < g->kh; a++)       /* window rows */
                copy_floats(cb + q * ld + a * g->span, w0 + a * g->w * g->c, g->span);
        } else {
            for (a = 0; a < g->kh; a++) {     /* window rows, some in the padding */
                float *dst = cb + q * ld + a * g->span;
                const int64_t r = pos.r0 + a;
                if (r < 0 || r >= g->h)
                    zero_floats(dst, g->span);
                else if (pos.q0 >= 0 && pos.q0 + g->kw <= g->w)
                    copy_floats(dst, g->x + ((pos.img * g->h + r) * g->w + pos.q0) * g->c,
                                g->span);
                else
                    (void)edge_row(dst, g, g->x + (pos.img * g->h + r) * g->w * g->c, pos.q0);
            }
        }
        zero_floats(cb + q * ld + g->k, ld - g->k);   /* the row's padding: read, unused */
        pynn_conv_pos_next(g, &pos);
    }
}

/* dz and db for filters [j0, j0 + 16 NV): the NV vectors of a position side by side, so
 * that the NV chains of db's sums (each over the positions in order) overlap. */
static inline __attribute__((always_inline)) void dz_block_cols(float *dz, const float *z,
                                                                int64_t kc, int64_t f,
                                                                int64_t j0, int relu,
                                                                float *db, const int NV) {
    const __m512 zero = _mm512_setzero_ps();
    __mmask16 m[4];
    __m512 acc[4];
    int64_t q;
    int v;
#pragma GCC unroll 4
    for (v = 0; v < NV; v++) {
        m[v] = pynn_mask16(f - j0 - 16 * v);
        acc[v] = db != NULL ? _mm512_maskz_loadu_ps(m[v], db + j0 + 16 * v) : zero;
    }
    for (q = 0; q < kc; q++) {                /* positions, in order */
#pragma GCC unroll 4
        for (v = 0; v < NV; v++) {            /* the position's vectors */
            float *d = dz + q * f + j0 + 16 * v;
            __m512 g = _mm512_maskz_loadu_ps(m[v], d);
            if (relu) {                       /* z > 0 ? g : 0 */
                g = _mm512_maskz_mov_ps(
                    _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m[v], z + q * f + j0 + 16 * v),
                                       zero, _CMP_GT_OQ), g);
                _mm512_mask_storeu_ps(d, m[v], g);
            }
            if (db != NULL) acc[v] = _mm512_add_ps(acc[v], g);
        }
    }
    if (db != NULL)
#pragma GCC unroll 4
        for (v = 0; v < NV; v++) _mm512_mask_storeu_ps(db + j0 + 16 * v, m[v], acc[v]);
}

void pynn_conv_dz_block_avx512(float *dz, const float *z, int64_t kc, int64_t f, int relu,
                               float *db) {
    int64_t j0;
    for (j0 = 0; j0 < f; j0 += 64) {          /* N: 64 filters at a time */
        switch ((f - j0 + 15) / 16) {
        case 1: dz_block_cols(dz, z, kc, f, j0, relu, db, 1); break;
        case 2: dz_block_cols(dz, z, kc, f, j0, relu, db, 2); break;
        case 3: dz_block_cols(dz, z, kc, f, j0, relu, db, 3); break;
        default: dz_block_cols(dz, z, kc, f, j0, relu, db, 4); break;
        }
    }
}

void pynn_conv_lines_block(const float **lines, float *scratch, const pynn_conv_geom *g,
                           int64_t q0, int64_t kc, const float *zeros) {
    const int64_t row = g->w * g->c, end_q0 = g->ow * g->sw - g->pl;
    pynn_conv_pos pos = pynn_conv_pos_of(g, q0);
    float *next = scratch;                    /* edge copies, one after the other */
    int64_t q = 0, a;
    while (q < kc) {                          /* a run of positions along an output row */
        const int64_t run = min_i64((end_q0 - pos.q0) / g->sw, kc - q);
        const float *img = g->x + pos.img * g->h * row;
        const int rows_inside = pos.r0 >= 0 && pos.r0 + g->kh <= g->h;
        int64_t e, wq = pos.q0;
        for (e = 0; e < run; e++, q++, wq += g->sw) {     /* positions of the run */
            const float **lq = lines + q * g->kh;
            if (rows_inside && wq >= 0 && wq + g->kw <= g->w) {   /* x itself */
                const float *w0 = img + pos.r0 * row + wq * g->c;
                for (a = 0; a < g->kh; a++) lq[a] = w0 + a * row;
                continue;
            }
            for (a = 0; a < g->kh; a++) {     /* window rows: padding, x, or a copy */
                const int64_t r = pos.r0 + a;
                if (r < 0 || r >= g->h)
                    lq[a] = zeros;
                else if (wq >= 0 && wq + g->kw <= g->w)
                    lq[a] = img + r * row + wq * g->c;
                else {
                    lq[a] = edge_row(next, g, img + r * row, wq);
                    next += g->span;
                }
            }
        }
        pos.q0 = -g->pl;                      /* the next output row */
        pos.r0 += g->sh;
        if (pos.r0 >= g->oh * g->sh - g->pt) {
            pos.r0 = -g->pt;
            pos.img++;
        }
    }
}

#endif /* PYNN_HAVE_X86_KERNELS */
