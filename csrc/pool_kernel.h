/* pool_kernel.h -- pooling's window loops (pool_internal.h), written once and compiled once
 * per instruction set: pool_generic.c, pool_avx2.c and pool_avx512.c each define
 * POOL_KERNELS, the name of their table, and include this file under their own -m flags.
 *
 * A window's running maximum, sum or first-maximum position is kept for a vector of
 * channels in registers while the loops walk the window's positions (one load per
 * position and vector, nothing written back until the end), instead of being read and
 * written back for every position.  The vectors are GCC/Clang vector extensions of the
 * set's width (16, 8 or 4 floats); the channels past the last whole vector take the
 * scalar loops, which define the results.  Selects are bit masks: the data never steers
 * a branch (ties, e.g. the zeros after a ReLU, are common and random).  A running maximum
 * is x86's MAXPS (pk_max), which is the select v > m ? v : m in one instruction.  Only
 * route_max's AVX-512 loops are intrinsics otherwise: there GCC's lowering of the
 * vector-extension selects costs a second comparison per position, where one mask
 * register serves both moves.  The 2x2 / stride-2 rows are plain loops over the channels,
 * which the compiler vectorises at the set's width (they were compiled for the baseline
 * alone, 4 lanes, before they moved here). */
#ifndef POOL_KERNELS
#error "pool_kernel.h: define POOL_KERNELS (the table's name) first"
#endif

#include <string.h>
#include "pool_internal.h"
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define PK_NL 16
#elif defined(__AVX2__)
#define PK_NL 8
#else
#define PK_NL 4
#endif
#define POOL_MAX_WINDOW 64      /* positions of a window the vector loops take */
typedef float pk_vec __attribute__((vector_size(PK_NL * sizeof(float))));
typedef int32_t pk_ivec __attribute__((vector_size(PK_NL * sizeof(int32_t))));

static inline pk_vec pk_load(const float *p) { pk_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void pk_store(float *p, pk_vec v) { memcpy(p, &v, sizeof v); }
/* keep ? a : b, lane by lane (keep: all ones or all zeros) */
static inline pk_vec pk_select(pk_ivec keep, pk_vec a, pk_vec b) {
    pk_ivec ab, bb;
    memcpy(&ab, &a, sizeof a);
    memcpy(&bb, &b, sizeof b);
    ab = (ab & keep) | (bb & ~keep);
    memcpy(&a, &ab, sizeof a);
    return a;
}

/* v > m ? v : m, lane by lane: x86's MAXPS is exactly this (m where either is a NaN or
 * both are zeros of either sign), one instruction for a comparison and a select */
static inline pk_vec pk_max(pk_vec v, pk_vec m) {
#if defined(__AVX512F__)
    return (pk_vec)_mm512_max_ps((__m512)v, (__m512)m);
#elif defined(__AVX2__)
    return (pk_vec)_mm256_max_ps((__m256)v, (__m256)m);
#elif defined(__SSE2__)
    return (pk_vec)_mm_max_ps((__m128)v, (__m128)m);
#else
    return pk_select(v > m, v, m);
#endif
}

/* The nine positions of a 3 x 3 window from its first, x0 (input rows `row` floats
 * apart, positions c apart), row-major, and their maximum in window_max's order: the
 * running max m = x > m ? x : m from the first position.  The forward and the 3x3/2
 * backward's argmax both take the maximum from here, so that they agree bitwise. */
static inline void pk_load_3x3(pk_vec v[9], const float *x0, int64_t row, int64_t c) {
    int p;
#pragma GCC unroll 9
    for (p = 0; p < 9; p++) v[p] = pk_load(x0 + (p / 3) * row + (p % 3) * c);
}

static inline pk_vec pk_max_3x3(const pk_vec v[9]) {
    pk_vec m = v[0];
    int p;
#pragma GCC unroll 8
    for (p = 1; p < 9; p++) m = pk_max(v[p], m);
    return m;
}

static inline __attribute__((always_inline)) void window_max(
    float *restrict yo, const float *restrict ximg, int64_t r0, int64_t r1, int64_t q0,
    int64_t q1, int64_t w, int64_t c) {
    const float *restrict first = ximg + (r0 * w + q0) * c;
    int64_t c0 = 0, r, q, e;
    if (r1 - r0 == 3 && q1 - q0 == 3) {
        /* a whole 3 x 3 window (AlexNet's 3x3/2 pools): the same maxima in the same
         * row-major order, unrolled -- the general loops' bounds and the first position's
         * test cost more than the nine loads */
        const int64_t row = w * c;
        for (; c0 + PK_NL <= c; c0 += PK_NL) {            /* channel vectors */
            pk_vec v[9];
            pk_load_3x3(v, first + c0, row, c);
            pk_store(yo + c0, pk_max_3x3(v));
        }
    }
    for (; c0 + PK_NL <= c; c0 += PK_NL) {                /* channel vectors */
        pk_vec m = pk_load(first + c0);
        for (r = r0; r < r1; r++)                         /* window rows */
            for (q = r == r0 ? q0 + 1 : q0; q < q1; q++) {        /* window columns */
                const pk_vec v = pk_load(ximg + (r * w + q) * c + c0);
                m = pk_max(v, m);
            }
        pk_store(yo + c0, m);
    }
    for (e = c0; e < c; e++) yo[e] = first[e];            /* the last channels */
    for (r = r0; r < r1; r++)
        for (q = r == r0 ? q0 + 1 : q0; q < q1; q++) {
            const float *restrict xs = ximg + (r * w + q) * c;
            for (e = c0; e < c; e++) yo[e] = xs[e] > yo[e] ? xs[e] : yo[e];
        }
}

/* The arrays the next output row reads (or writes), fetched into L2 a share a window while
 * this row's windows run: `lines` cache lines from p, `per` of them a window.  A hint only
 * (a prefetch never faults, even past an array's end). */
typedef struct {
    const float *p;
    int64_t lines, per;
} pk_ahead;

static inline pk_ahead pk_ahead_of(const float *p, int64_t floats, int64_t windows) {
    pk_ahead a;
    a.p = p;
    a.lines = floats / 16;
    a.per = windows > 0 ? (a.lines + windows - 1) / windows : 0;
    return a;
}

/* Window j's share of a, for reading or (rw) for writing. */
static inline void pk_prefetch(const pk_ahead *a, int64_t j, int rw) {
    int64_t l;
    for (l = j * a->per; l < (j + 1) * a->per && l < a->lines; l++) {
        if (rw)
            __builtin_prefetch(a->p + 16 * l, 1, 2);
        else
            __builtin_prefetch(a->p + 16 * l, 0, 2);
    }
}

/* window_max along one output row: window j over input rows [r0, r1) and columns from
 * j sw - pl (clipped; 0 where no column is left) -- one call a row, so that one window's
 * loads overlap the last one's maxima */
static void max_row(float *restrict yrow, const float *restrict ximg, int64_t r0, int64_t r1,
                    int64_t w, int64_t c, int64_t ow, int64_t pw, int64_t sw, int64_t pl,
                    int64_t pf_rows) {
    /* the next output row's new input rows: pf_rows of them from r1, in the image */
    const pk_ahead next = pk_ahead_of(ximg + r1 * w * c, pf_rows * w * c, ow);
    int64_t j;
    for (j = 0; j < ow; j++) {                            /* output columns */
        const int64_t start = j * sw - pl;
        const int64_t q0 = start < 0 ? 0 : start, q1 = start + pw > w ? w : start + pw;
        pk_prefetch(&next, j, 0);
        if (q1 <= q0 || r1 <= r0)
            memset(yrow + j * c, 0, (size_t)c * sizeof(float));
        else
            window_max(yrow + j * c, ximg, r0, r1, q0, q1, w, c);
    }
}

/* One output row of the 2x2/2 max: yrow (ow x c) from input rows x0, x1. */
static void maxpool_2x2_row(float *restrict yrow, const float *restrict x0,
                            const float *restrict x1, int64_t ow, int64_t c) {
    /* the next output row's two input rows: those after x1 (where the next image starts
     * past an odd last row, a row later: a hint either way) */
    const pk_ahead next = pk_ahead_of(x1 + (x1 - x0), 2 * (x1 - x0), ow);
    int64_t j, e;
    for (j = 0; j < ow; j++) {                            /* output columns */
        const float *restrict a = x0 + 2 * j * c, *restrict b = a + c;
        const float *restrict p = x1 + 2 * j * c, *restrict q = p + c;
        float *restrict yo = yrow + j * c;
        pk_prefetch(&next, j, 0);
        for (e = 0; e < c; e++) {                         /* channels */
            float m = a[e];
            m = b[e] > m ? b[e] : m;
            m = p[e] > m ? p[e] : m;
            m = q[e] > m ? q[e] : m;
            yo[e] = m;
        }
    }
}

/* The backward of one output row of the 2x2/2 max: each dy to the first window position
 * (row-major) that holds the maximum (recomputed as maxpool_2x2_row computes it), 0 to
 * the others; writes all of the two input rows' windowed columns. */
static void maxpool_2x2_row_backward(float *restrict d0, float *restrict d1,
                                     const float *restrict x0, const float *restrict x1,
                                     const float *restrict dyrow, int64_t ow, int64_t c) {
    /* the next output row's input rows of x (read) and of dx (written) */
    const pk_ahead next_x = pk_ahead_of(x1 + (x1 - x0), 2 * (x1 - x0), ow);
    const pk_ahead next_d = pk_ahead_of(d1 + (d1 - d0), 2 * (d1 - d0), ow);
    int64_t j, e;
    for (j = 0; j < ow; j++) {                            /* output columns */
        const float *restrict a = x0 + 2 * j * c, *restrict b = a + c;
        const float *restrict p = x1 + 2 * j * c, *restrict q = p + c;
        float *restrict da = d0 + 2 * j * c, *restrict db = da + c;
        float *restrict dp = d1 + 2 * j * c, *restrict dq = dp + c;
        pk_prefetch(&next_x, j, 0);
        pk_prefetch(&next_d, j, 1);
        for (e = 0; e < c; e++) {                         /* channels */
            const float g = dyrow[j * c + e];
            float m = a[e];
            m = b[e] > m ? b[e] : m;
            m = p[e] > m ? p[e] : m;
            m = q[e] > m ? q[e] : m;
            {
                /* bitwise, not short-circuit: ties are common and random, no branches */
                const int ea = a[e] == m;
                const int eb = (b[e] == m) & !ea;
                const int ep = (p[e] == m) & !(ea | eb);
                const int eq = (q[e] == m) & !(ea | eb | ep);
                da[e] = ea ? g : 0.0f;
                db[e] = eb ? g : 0.0f;
                dp[e] = ep ? g : 0.0f;
                dq[e] = eq ? g : 0.0f;
            }
        }
    }
}

/* One output row of the 2x2/2 average: the general loops' sum from 0 in row-major order
 * and divide, unrolled. */
static void avgpool_2x2_row(float *restrict yrow, const float *restrict x0,
                            const float *restrict x1, int64_t ow, int64_t c) {
    const pk_ahead next = pk_ahead_of(x1 + (x1 - x0), 2 * (x1 - x0), ow);   /* as the max's */
    int64_t j, e;
    for (j = 0; j < ow; j++) {                            /* output columns */
        const float *restrict a = x0 + 2 * j * c, *restrict b = a + c;
        const float *restrict p = x1 + 2 * j * c, *restrict q = p + c;
        float *restrict yo = yrow + j * c;
        pk_prefetch(&next, j, 0);
        for (e = 0; e < c; e++) yo[e] = ((((0.0f + a[e]) + b[e]) + p[e]) + q[e]) / 4.0f;
    }
}

/* The backward of one output row of the 2x2/2 average: every position of a window gets
 * 0 + dy / 4 (the general loops' sum of one share); writes all of the two input rows'
 * windowed columns. */
static void avgpool_2x2_row_backward(float *restrict d0, float *restrict d1,
                                     const float *restrict dyrow, int64_t ow, int64_t c) {
    /* the next output row's rows of dx (written) */
    const pk_ahead next_d = pk_ahead_of(d1 + (d1 - d0), 2 * (d1 - d0), ow);
    int64_t j, e;
    for (j = 0; j < ow; j++) {                            /* output columns */
        float *restrict da = d0 + 2 * j * c, *restrict db = da + c;
        float *restrict dp = d1 + 2 * j * c, *restrict dq = dp + c;
        pk_prefetch(&next_d, j, 1);
        for (e = 0; e < c; e++) {                         /* channels */
            const float share = 0.0f + dyrow[j * c + e] / 4.0f;
            da[e] = share;
            db[e] = share;
            dp[e] = share;
            dq[e] = share;
        }
    }
}

static void window_mean(float *restrict yo, const float *restrict ximg, int64_t r0, int64_t r1,
                        int64_t q0, int64_t q1, int64_t w, int64_t c) {
    const float count = (float)((r1 - r0) * (q1 - q0));
    int64_t c0 = 0, r, q, e;
    for (; c0 + PK_NL <= c; c0 += PK_NL) {                /* channel vectors */
        pk_vec s = {0};
        for (r = r0; r < r1; r++)                         /* window rows */
            for (q = q0; q < q1; q++)                     /* window columns */
                s += pk_load(ximg + (r * w + q) * c + c0);
        pk_store(yo + c0, s / count);
    }
    for (e = c0; e < c; e++) yo[e] = 0.0f;                /* the last channels */
    for (r = r0; r < r1; r++)
        for (q = q0; q < q1; q++) {
            const float *restrict xs = ximg + (r * w + q) * c;
            for (e = c0; e < c; e++) yo[e] += xs[e];
        }
    for (e = c0; e < c; e++) yo[e] /= count;
}

/* route_max on channels c0 .. c0+cb-1, cb = min(PK_NL, c - c0) (the last channels, or a
 * block of a window too large for the vector loops' table), scalar */
static void route_max_tail(float *restrict dimg, const float *restrict ximg,
                           const float *restrict g, int64_t r0, int64_t r1, int64_t q0,
                           int64_t q1, int64_t w, int64_t c, int64_t c0) {
    float m[PK_NL];
    int32_t at[PK_NL];
    const float *restrict first = ximg + (r0 * w + q0) * c + c0;
    const int64_t cb = c - c0 < PK_NL ? c - c0 : PK_NL;   /* m and at hold PK_NL */
    int32_t pos = 0;
    int64_t r, q, e;
    for (e = 0; e < cb; e++) {
        m[e] = first[e];
        at[e] = 0;
    }
    for (r = r0; r < r1; r++)                             /* window rows: the first max */
        for (q = r == r0 ? q0 + 1 : q0; q < q1; q++) {
            const float *restrict xs = ximg + (r * w + q) * c + c0;
            pos++;
            for (e = 0; e < cb; e++) {
                const int above = xs[e] > m[e];
                m[e] = above ? xs[e] : m[e];
                at[e] = above ? pos : at[e];
            }
        }
    for (e = 0; e < cb; e++) at[e] = m[e] == m[e] ? at[e] : -1;
    pos = 0;
    for (r = r0; r < r1; r++)                             /* window rows: route */
        for (q = q0; q < q1; q++, pos++) {
            float *restrict ds = dimg + (r * w + q) * c + c0;
            for (e = 0; e < cb; e++) ds[e] += at[e] == pos ? g[c0 + e] : 0.0f;
        }
}

static void route_max(float *restrict dimg, const float *restrict ximg, const float *restrict g,
                      int64_t r0, int64_t r1, int64_t q0, int64_t q1, int64_t w, int64_t c) {
    /* the window's positions as offsets from its first, row-major: one flat loop */
    int64_t off[POOL_MAX_WINDOW];
    const int64_t npos = (r1 - r0) * (q1 - q0);
    const float *restrict first = ximg + (r0 * w + q0) * c;
    float *restrict dfirst = dimg + (r0 * w + q0) * c;
    int64_t c0 = 0, r, q, p;
    if (npos > POOL_MAX_WINDOW) {                         /* large windows: scalar */
        for (; c0 < c; c0 += PK_NL)                       /* channel blocks */
            route_max_tail(dimg, ximg, g, r0, r1, q0, q1, w, c, c0);
        return;
    }
    for (r = 0, p = 0; r < r1 - r0; r++)
        for (q = 0; q < q1 - q0; q++, p++) off[p] = (r * w + q) * c;
#if defined(__AVX512F__)
    /* the same steps with AVX-512's mask registers: the comparison's mask moves both the
     * maximum and its position, and the route is a masked add (ds + g where the mask is
     * set, ds elsewhere: the + 0 of the other lanes) */
    for (; c0 + PK_NL <= c; c0 += PK_NL) {                /* channel vectors */
        __m512 m = _mm512_loadu_ps(first + c0);
        const __m512 grad = _mm512_loadu_ps(g + c0);
        const __m512i one = _mm512_set1_epi32(1);
        __m512i at = _mm512_setzero_si512(), pos = _mm512_setzero_si512();
        for (p = 1; p < npos; p++) {                      /* window positions: the first max */
            const __m512 v = _mm512_loadu_ps(first + off[p] + c0);
            const __mmask16 above = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ);
            pos = _mm512_add_epi32(pos, one);
            m = _mm512_mask_mov_ps(m, above, v);
            at = _mm512_mask_mov_epi32(at, above, pos);
        }
        /* a NaN maximum: -1, no position */
        at = _mm512_mask_mov_epi32(at, _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q),
                                   _mm512_set1_epi32(-1));
        pos = _mm512_setzero_si512();
        for (p = 0; p < npos; p++) {                      /* window positions: route */
            float *restrict ds = dfirst + off[p] + c0;
            const __m512 d = _mm512_loadu_ps(ds);
            _mm512_storeu_ps(ds, _mm512_mask_add_ps(d, _mm512_cmpeq_epi32_mask(at, pos), d, grad));
            pos = _mm512_add_epi32(pos, one);
        }
    }
#endif
    for (; c0 + PK_NL <= c; c0 += PK_NL) {                /* channel vectors */
        pk_vec m = pk_load(first + c0);
        const pk_vec grad = pk_load(g + c0);
        pk_ivec at = {0}, pos = {0};
        for (p = 1; p < npos; p++) {                      /* window positions: the first max */
            const pk_vec v = pk_load(first + off[p] + c0);
            const pk_ivec above = v > m;
            pos += 1;
            m = pk_select(above, v, m);
            at = (pos & above) | (at & ~above);
        }
        at |= ~(m == m);                                  /* a NaN maximum: -1, no position */
        pos = (pk_ivec){0};
        for (p = 0; p < npos; p++) {                      /* window positions: route */
            float *restrict ds = dfirst + off[p] + c0;
            pk_store(ds, pk_load(ds) + pk_select(at == pos, grad, (pk_vec){0}));
            pos += 1;
        }
    }
    if (c0 < c) route_max_tail(dimg, ximg, g, r0, r1, q0, q1, w, c, c0);
}

/* The max's backward of one image under 3x3 windows at stride 2 that all lie in x (no
 * padding; AlexNet's pools): in two sweeps instead of route_max's scatter, whose
 * read-modify-writes of dx wait on the previous window's stores where windows overlap.
 * 1. Each window's first maximum (row-major), found as window_max finds y (the running
 *    max, then the first position equal to it, scanned back from the last: the running
 *    max rises only strictly, so the last rise is the first position holding it; a NaN
 *    maximum -- a NaN first value -- equals nothing): at[(i ow + j) c + e] = a 3 + b, or
 *    -1; meanwhile dx's lines are fetched for sweep 2.
 * 2. Each input element gathers the dy of the windows (at most 2 x 2) whose maximum it
 *    holds, in a sum from +0 over them in row-major order: route_max's sums, bitwise, with
 *    dx written once (positions no window covers: 0); meanwhile the next image's x
 *    (next, or NULL) is fetched into L2 for its first sweep. */
static void scalar_argmax_3x3(int32_t *restrict at, const float *restrict x0, int64_t row,
                              int64_t c, int64_t e0) {
    int64_t e;
    int p;
    for (e = e0; e < c; e++) {                            /* the last channels */
        float v[9], m;
        int32_t arg = -1;
        for (p = 0; p < 9; p++) v[p] = x0[(p / 3) * row + (p % 3) * c + e];
        m = v[0];
        for (p = 1; p < 9; p++) m = v[p] > m ? v[p] : m;
        for (p = 8; p >= 0; p--) arg = v[p] == m ? p : arg;
        at[e] = arg;
    }
}

/* The windows of a 3-wide, stride-2 pool over `out` outputs (all inside the input) that
 * cover input row (column) r: how many (0-2), the first *lo and the last *hi (the same
 * when one; both 0 when none). */
static inline int cover_3s2(int64_t r, int64_t out, int64_t *lo, int64_t *hi) {
    *hi = r / 2 < out ? r / 2 : r / 2 - 1;        /* windows i cover rows 2i .. 2i + 2 */
    *lo = r % 2 == 0 && r >= 2 ? r / 2 - 1 : *hi;
    if (*hi < 0 || r > 2 * out) {
        *lo = *hi = 0;
        return 0;
    }
    return *lo == *hi ? 1 : 2;
}

static void backward_3x3s2(float *restrict dimg, const float *restrict ximg,
                           const float *restrict gimg, int32_t *restrict at, int64_t h,
                           int64_t w, int64_t c, int64_t oh, int64_t ow,
                           const float *next) {
    const int64_t row = w * c;
    int64_t i, j, r, q, c0, e;
    int p;
    for (i = 0; i < oh; i++) {                            /* 1: output rows */
        /* dx's rows 2i, 2i + 1 (at the last output row, the rest), fetched while the
         * argmax is computed, so that sweep 2's stores find their lines in the cache
         * instead of each waiting on memory: from memory (64 x 30 x 30 x 48, 2 threads,
         * interleaved runs) the pass went from a median of ~0.83-1.1 ms to ~0.66 ms, and
         * bench_bandwidth's ratio to the copy from 0.60-0.65 to 0.87-0.88; fetching dx two
         * rows ahead within sweep 2 instead gave ~10% */
        const int64_t d_rows = (i + 1 < oh ? 2 * i + 2 : h) - 2 * i;
        const pk_ahead dx_rows = pk_ahead_of(dimg + 2 * i * row, d_rows * row, ow);
        for (j = 0; j < ow; j++) {                        /* output columns */
            const float *restrict x0 = ximg + (2 * i * w + 2 * j) * c;
            int32_t *restrict ao = at + (i * ow + j) * c;
            pk_prefetch(&dx_rows, j, 1);
            for (c0 = 0; c0 + PK_NL <= c; c0 += PK_NL) {  /* channel vectors */
                pk_vec v[9], m;
                pk_ivec arg = (pk_ivec){0} - 1;
                pk_load_3x3(v, x0 + c0, row, c);
                m = pk_max_3x3(v);
#pragma GCC unroll 9
                for (p = 8; p >= 0; p--) {                /* the first that holds it */
                    const pk_ivec hit = v[p] == m;
                    arg = (hit & p) | (arg & ~hit);
                }
                memcpy(ao + c0, &arg, sizeof arg);
            }
            scalar_argmax_3x3(ao, x0, row, c, c0);
        }
    }
    for (r = 0; r < h; r++) {                             /* 2: input rows */
        /* the window rows covering r, in order, and r's row in each: i0 (a0), i1 (a1) */
        int64_t i0, i1;
        const int ni = cover_3s2(r, oh, &i0, &i1);
        const int32_t a0 = (int32_t)(r - 2 * i0) * 3, a1 = (int32_t)(r - 2 * i1) * 3;
        const int32_t *restrict at0 = at + i0 * ow * c, *restrict at1 = at + i1 * ow * c;
        const float *restrict g0 = gimg + i0 * ow * c, *restrict g1 = gimg + i1 * ow * c;
        /* the next image's row r into L2 for its first sweep, spread over the columns */
        const pk_ahead ahead = pk_ahead_of(next != NULL ? next + r * row : ximg,
                                           next != NULL ? row : 0, w);
        for (q = 0; q < w; q++) {                         /* input columns */
            int64_t j0 = 0, j1 = 0;
            const int nj = ni == 0 ? 0 : cover_3s2(q, ow, &j0, &j1);
            const int32_t b0 = (int32_t)(q - 2 * j0), b1 = (int32_t)(q - 2 * j1);
            const int64_t o0 = j0 * c, o1 = j1 * c;
            float *restrict d = dimg + (r * w + q) * c;
            pk_prefetch(&ahead, q, 0);
            if (nj == 0) {                                /* no window covers it */
                memset(d, 0, (size_t)c * sizeof(float));
                continue;
            }
            for (c0 = 0; c0 + PK_NL <= c; c0 += PK_NL) {  /* channel vectors */
                pk_vec acc = {0};
                pk_ivec a;
                memcpy(&a, at0 + o0 + c0, sizeof a);
                acc = pk_select(a == a0 + b0, acc + pk_load(g0 + o0 + c0), acc);
                if (nj == 2) {
                    memcpy(&a, at0 + o1 + c0, sizeof a);
                    acc = pk_select(a == a0 + b1, acc + pk_load(g0 + o1 + c0), acc);
                }
                if (ni == 2) {
                    memcpy(&a, at1 + o0 + c0, sizeof a);
                    acc = pk_select(a == a1 + b0, acc + pk_load(g1 + o0 + c0), acc);
                    if (nj == 2) {
                        memcpy(&a, at1 + o1 + c0, sizeof a);
                        acc = pk_select(a == a1 + b1, acc + pk_load(g1 + o1 + c0), acc);
                    }
                }
                pk_store(d + c0, acc);
            }
            for (e = c0; e < c; e++) {                    /* the last channels */
                float acc = 0.0f;
                acc = at0[o0 + e] == a0 + b0 ? acc + g0[o0 + e] : acc;
                if (nj == 2) acc = at0[o1 + e] == a0 + b1 ? acc + g0[o1 + e] : acc;
                if (ni == 2) {
                    acc = at1[o0 + e] == a1 + b0 ? acc + g1[o0 + e] : acc;
                    if (nj == 2) acc = at1[o1 + e] == a1 + b1 ? acc + g1[o1 + e] : acc;
                }
                d[e] = acc;
            }
        }
    }
}

const pynn_pool_kernels POOL_KERNELS = {max_row, window_mean, route_max, backward_3x3s2,
                                        maxpool_2x2_row, maxpool_2x2_row_backward,
                                        avgpool_2x2_row, avgpool_2x2_row_backward};
