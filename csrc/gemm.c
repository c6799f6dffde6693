/* gemm.c -- single-precision GEMM, the hot path of every Dense layer.
 *
 *   C = alpha op(A) op(B) + beta C          pynn_sgemm
 *   Z = op(A) op(B) + bias; Y = act(Z)      pynn_sgemm_bias_act
 *
 * Goto/BLIS structure (see gemm_internal.h for the micro-kernel contract):
 *
 *   for jc  N  in steps of NC      a panel of B, kc x nc, packed, in L3
 *    for pc  K  in steps of KC     always from 0 in increasing order: fixes every sum
 *     for ic  M  in steps of MC    a block of A, mc x kc, packed, in L2
 *      for jr  N  in steps of NR   a micro-panel of B, kc x NR, in L1
 *       for ir  M  in steps of MR  one micro-kernel call on an MR x NR tile of C
 *
 * Packing reads op(A) and op(B) through (row, column) strides, so the four
 * transpose cases differ only in those strides.
 *
 * Threads: C's tiles form a fixed grid (MR x NR tiles from the origin).  OpenMP
 * cuts that grid into one rectangle of whole tiles per thread (along N where
 * it balances as well, as in the usual case) and each thread runs the loop nest
 * above on its rectangle with its own packing buffers: no barrier inside, K is
 * never split.  Each element of C is written by one thread, and its sum runs
 * over the same K blocks, in the same order, with the same kernel arithmetic,
 * whatever the thread count: results are bitwise the same on 1 or N threads.
 *
 * The fused Dense epilogue (bias, elementwise activation) runs on each tile right
 * after its last K block, while the tile is still in L1.  Softmax needs whole
 * rows and runs after the product.
 */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "gemm_internal.h"
#include "act_elementwise.h"

static int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* ---- the micro-kernel of the dispatch level ----------------------------- */

/* The kernel table of a supported level (dispatch.c); the GEMM's results depend on it,
 * so a call reads the level once and keeps the table to the end. */
static const pynn_gemm_kernel_info *gemm_kernel_at(int level) {
    switch (level) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_gemm_kernel_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_gemm_kernel_avx2;
#endif
    default:
        return &pynn_gemm_kernel_generic;
    }
}

static const pynn_gemm_kernel_info *gemm_current_kernel(void) {
    return gemm_kernel_at(pynn_level());
}

/* The GEMM's names for the dispatch levels (pynn.h). */
int pynn_gemm_select_kernel(int which) { return pynn_select_level(which); }
int pynn_gemm_kernel(void) { return pynn_level(); }
int pynn_gemm_kernel_supported(int which) { return pynn_level_supported(which); }

const pynn_gemm_kernel_info *pynn_gemm_kernel_info_of(int which) {
    if (which == PYNN_KERNEL_AUTO) which = pynn_cpu_level();
    if (which < PYNN_LEVEL_GENERIC || !pynn_level_supported(which)) return NULL;
    return gemm_kernel_at(which);
}

/* ---- workspace: the packed panels --------------------------------------- */
/*
 * Training calls the GEMM thousands of times on the same shapes, so the packing
 * buffers are kept between calls and grown on demand: no allocation per step.
 * One cached buffer, taken with an atomic flag; a call that finds it busy (two
 * Python threads in the GEMM at once, the GIL being released) allocates its own
 * for the duration of the call.  The cache holds no results, so it cannot change
 * any number.  Without GNU atomics every call allocates.
 */
typedef struct {
    float *base;  /* 64-byte aligned */
    void *owned;  /* a per-call allocation to free, or NULL for the cache */
} gemm_workspace;

#if defined(__GNUC__)
static void *gemm_cache_raw = NULL;
static size_t gemm_cache_bytes = 0;
static int gemm_cache_busy = 0;
#define GEMM_HAVE_CACHE 1
#endif

/* 0 on success, PYNN_ENOMEM if no buffer of `floats` could be had. */
static int workspace_acquire(gemm_workspace *ws, size_t floats) {
    const size_t bytes = floats * sizeof(float) + 64;
#ifdef GEMM_HAVE_CACHE
    if (__atomic_exchange_n(&gemm_cache_busy, 1, __ATOMIC_ACQUIRE) == 0) {
        if (gemm_cache_bytes < bytes) {
            void *grown = malloc(bytes);
            if (grown == NULL) {
                __atomic_store_n(&gemm_cache_busy, 0, __ATOMIC_RELEASE);
                return PYNN_ENOMEM;
            }
            free(gemm_cache_raw);
            gemm_cache_raw = grown;
            gemm_cache_bytes = bytes;
        }
        ws->base = pynn_align64f(gemm_cache_raw);
        ws->owned = NULL;
        return PYNN_OK;
    }
#endif
    ws->owned = malloc(bytes);
    if (ws->owned == NULL) return PYNN_ENOMEM;
    ws->base = pynn_align64f(ws->owned);
    return PYNN_OK;
}

static void workspace_release(gemm_workspace *ws) {
    if (ws->owned != NULL) {
        free(ws->owned);
        return;
    }
#ifdef GEMM_HAVE_CACHE
    __atomic_store_n(&gemm_cache_busy, 0, __ATOMIC_RELEASE);
#endif
}

/* The same cache for the convolution's implicit GEMM (conv_gemm.c, gemm_internal.h). */
int pynn_gemm_workspace_acquire(float **base, void **owned, size_t floats) {
    gemm_workspace ws = {NULL, NULL};
    const int status = workspace_acquire(&ws, floats);
    *base = ws.base;
    *owned = ws.owned;
    return status;
}

void pynn_gemm_workspace_release(float *base, void *owned) {
    gemm_workspace ws;
    ws.base = base;
    ws.owned = owned;
    workspace_release(&ws);
}

/* ---- packing ------------------------------------------------------------ */

/* Floats in a 64-byte cache line: the step in which packing walks K when the
 * source rows are contiguous in K. */
#define PACK_CHUNK 16

/* One MR-tall micro-panel of op(A): ap[p*mr + i] = op(A)(i, p) for i < m, zero
 * for m <= i < mr.  op(A)(i, p) = a[i*rs + p*cs]. */
void pynn_gemm_pack_a_ref(float *ap, const float *a, int64_t rs, int64_t cs,
                          int64_t m, int64_t kc, int64_t mr) {
    int64_t i, p;
    if (cs == 1) {
        /* A not transposed: rows of A are contiguous in p.  Copy a cache line
         * of every row in turn, so that the panel's MR rows stream from memory
         * side by side instead of one short row after another (2-4% at 2048
         * on Zen 5). */
        int64_t p0;
        for (p0 = 0; p0 < kc; p0 += PACK_CHUNK) {     /* K: a cache line at a time */
            const int64_t p1 = min_i64(p0 + PACK_CHUNK, kc);
            for (i = 0; i < m; i++) {                 /* M: rows of the panel */
                const float *ai = a + i * rs;
                for (p = p0; p < p1; p++)             /* K: along the line */
                    ap[p * mr + i] = ai[p];
            }
        }
        for (i = m; i < mr; i++)                  /* M: padding rows */
            for (p = 0; p < kc; p++)              /* K: along the row */
                ap[p * mr + i] = 0.0f;
    } else {
        /* A transposed: the mr values of one p are contiguous in memory. */
        for (p = 0; p < kc; p++) {                /* K: columns of the panel */
            const float *ap_src = a + p * cs;
            for (i = 0; i < m; i++)               /* M: down the column */
                ap[p * mr + i] = ap_src[i * rs];
            for (i = m; i < mr; i++)              /* M: padding rows */
                ap[p * mr + i] = 0.0f;
        }
    }
}

/* One NR-wide micro-panel of op(B): bp[p*nr + j] = op(B)(p, j) for j < n, zero
 * for n <= j < nr.  op(B)(p, j) = b[p*rs + j*cs]. */
void pynn_gemm_pack_b_ref(float *bp, const float *b, int64_t rs, int64_t cs,
                          int64_t kc, int64_t n, int64_t nr) {
    int64_t p, j;
    if (cs == 1) {
        /* B not transposed: each row of the panel is a contiguous copy. */
        for (p = 0; p < kc; p++) {                /* K: rows of the panel */
            memcpy(bp + p * nr, b + p * rs, (size_t)n * sizeof(float));
            for (j = n; j < nr; j++)              /* N: padding columns */
                bp[p * nr + j] = 0.0f;
        }
    } else {
        /* B transposed: rows of B (columns of op(B)) are contiguous in p; copy
         * them a cache line of every row at a time, as for A above. */
        int64_t p0;
        for (p0 = 0; p0 < kc; p0 += PACK_CHUNK) {     /* K: a cache line at a time */
            const int64_t p1 = min_i64(p0 + PACK_CHUNK, kc);
            for (j = 0; j < n; j++) {                 /* N: columns of the panel */
                const float *bj = b + j * cs;
                for (p = p0; p < p1; p++)             /* K: along the line */
                    bp[p * nr + j] = bj[p * rs];
            }
        }
        for (p = 0; p < kc; p++)                  /* K: rows of the panel */
            for (j = n; j < nr; j++)              /* N: padding columns */
                bp[p * nr + j] = 0.0f;
    }
}

/* ---- the blocked product ------------------------------------------------- */

typedef struct {
    float *c;              /* C (m x n), row stride ldc */
    const float *a;        /* op(A)(i, p) = a[i*a_rs + p*a_cs] */
    const float *b;        /* op(B)(p, j) = b[p*b_rs + j*b_cs] */
    int64_t m, n, k;
    int64_t ldc, a_rs, a_cs, b_rs, b_cs;
    float alpha, beta;
    /* Dense epilogue, applied to each tile after its last K block:
     * C += bias (if bias), then y = act(C) (if y; softmax excluded). */
    const float *bias;
    float *y;              /* same row stride as C */
    int act;
    float act_alpha;
    /* op(B) packed beforehand (pynn_sgemm_pack_b), or NULL: K block pc's micro-panel js
     * lies at b_packed + pc * round_up(n, nr) + js * nr * kc. */
    const float *b_packed;
    /* B in PYNN_DENSE_PANEL_COLS-column panels (pynn_dense_pack_panels), or NULL: what the
     * few-rows small path reads instead of B. */
    const float *b_panels;
} gemm_problem;

static int gemm_has_epilogue(const gemm_problem *pr) {
    return pr->bias != NULL || (pr->y != NULL && !pynn_act_rowwise(pr->act));
}

/* Bias and elementwise activation on the m x n block of C at (i0, j0). */
static void gemm_epilogue(const gemm_problem *pr, int64_t i0, int64_t j0,
                          int64_t m, int64_t n) {
    int64_t i, j;
    for (i = 0; i < m; i++) {                     /* M: rows of the finished block */
        float *z = pr->c + (i0 + i) * pr->ldc + j0;
        if (pr->bias != NULL) {
            const float *bias = pr->bias + j0;
            for (j = 0; j < n; j++)               /* N: along the row */
                z[j] += bias[j];
        }
        if (pr->y != NULL && !pynn_act_rowwise(pr->act))
            (void)pynn_act_span(pr->y + (i0 + i) * pr->ldc + j0, z, n, pr->act, pr->act_alpha);
    }
}

/* A thread's share of C: the whole MR x NR tiles in micro-panel rows
 * [is0, is1) and micro-panel columns [js0, js1) of the global tile grid. */
typedef struct {
    int64_t is0, is1, js0, js1;
} gemm_region;

/* How to cut the m_panels x n_panels tile grid between up to nthreads threads:
 * tm bands of rows times tn bands of columns.  Picks the cut whose largest
 * region has the fewest tiles; on a tie, more cuts along N, where each thread
 * packs its own columns of B and only A's packing is repeated.  Then, when a cut
 * costs clearly less once packing is counted (each thread packs its band's rows of
 * A and columns of B: a tall, narrow product such as an RNN's input gradient,
 * 3200 x 64, cut along N has every thread pack all of A), that cut.  The cut never
 * changes a result: every tile's sum is the same on any thread.  A B packed ahead
 * (pynn_sgemm_prepacked) costs no thread any packing. */
#define GEMM_GRID_PACK_WEIGHT 16     /* multiply-adds one packed float costs, roughly */
static void gemm_grid(int *tm, int *tn, int64_t m_panels, int64_t n_panels, int nthreads,
                      int64_t mr, int64_t nr, int b_packed) {
    const int64_t b_weight = b_packed ? 0 : GEMM_GRID_PACK_WEIGHT;  /* none: packed ahead */
    int64_t best = -1, best_cost = -1, cost_of_best;
    int rows, cm = 1, cn = 1;
    *tm = *tn = 1;
    for (rows = 1; rows <= nthreads; rows++) {      /* candidate row bands */
        const int64_t r = rows < m_panels ? rows : m_panels;
        const int64_t c0 = nthreads / rows;
        const int64_t c = c0 < n_panels ? c0 : n_panels;
        const int64_t rp = (m_panels + r - 1) / r, cp = (n_panels + c - 1) / c;
        const int64_t largest = rp * cp;
        const int64_t cost = largest * mr * nr + rp * mr * GEMM_GRID_PACK_WEIGHT + cp * nr * b_weight;
        if (best < 0 || largest < best || (largest == best && c > *tn)) {
            best = largest;
            *tm = (int)r;
            *tn = (int)c;
        }
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            cm = (int)r;
            cn = (int)c;
        }
    }
    {
        const int64_t rp = (m_panels + *tm - 1) / *tm, cp = (n_panels + *tn - 1) / *tn;
        cost_of_best = rp * cp * mr * nr + rp * mr * GEMM_GRID_PACK_WEIGHT + cp * nr * b_weight;
    }
    if (best_cost * 10 < cost_of_best * 9) {        /* at least 10% less */
        *tm = cm;
        *tn = cn;
    }
}

/* Floats of one thread's B panel buffer (none when B comes packed) and of its whole
 * packing workspace (that and an A block), rounded to 64 bytes so that threads' buffers
 * share no cache line. */
static size_t gemm_b_floats(const gemm_problem *pr, const pynn_gemm_kernel_info *ki) {
    if (pr->b_packed != NULL) return 0;
    return (size_t)round_up(min_i64(pr->k, ki->kc) * round_up(min_i64(pr->n, ki->nc), ki->nr),
                            16);
}

static size_t gemm_thread_floats(const gemm_problem *pr, const pynn_gemm_kernel_info *ki) {
    const int64_t kc = min_i64(pr->k, ki->kc);
    const int64_t mc = round_up(min_i64(pr->m, ki->mc), ki->mr);
    return gemm_b_floats(pr, ki) + (size_t)round_up(kc * mc, 16);
}

/* The Goto loop nest on one region of C, with this thread's own buffers.
 * Blocks start at the region's corner, which lies on the global tile grid:
 * every tile, and the K blocks of its sum, are those of a one-thread run. */
static void gemm_region_run(const gemm_problem *pr, const pynn_gemm_kernel_info *ki,
                            const gemm_region *rg, float *b_buf, float *a_buf) {
    const int64_t MR = ki->mr, NR = ki->nr, MC = ki->mc, KC = ki->kc, NC = ki->nc;
    const int64_t row0 = rg->is0 * MR, row1 = min_i64(pr->m, rg->is1 * MR);
    const int64_t col0 = rg->js0 * NR, col1 = min_i64(pr->n, rg->js1 * NR);
    const int epilogue = gemm_has_epilogue(pr);
    const pynn_gemm_pack_a_fn pack_a = ki->pack_a ? ki->pack_a : pynn_gemm_pack_a_ref;
    const pynn_gemm_pack_b_fn pack_b = ki->pack_b ? ki->pack_b : pynn_gemm_pack_b_ref;
    int64_t jc, pc, ic, js, is;

    for (jc = col0; jc < col1; jc += NC) {                   /* N: panels of B and C (L3) */
        const int64_t nc = min_i64(NC, col1 - jc);
        const int64_t n_panels = (nc + NR - 1) / NR;
        for (pc = 0; pc < pr->k; pc += KC) {                 /* K: depth blocks, in order */
            const int64_t kc = min_i64(KC, pr->k - pc);
            const float beta = pc == 0 ? pr->beta : 1.0f;    /* later blocks accumulate */
            const int last_k = pc + kc == pr->k;

            if (pr->b_packed != NULL)                        /* packed once by the caller */
                b_buf = (float *)pr->b_packed + pc * round_up(pr->n, NR) + jc * kc;
            else
            for (js = 0; js < n_panels; js++)                /* N: micro-panels of B */
                pack_b(b_buf + js * NR * kc, pr->b + pc * pr->b_rs + (jc + js * NR) * pr->b_cs,
                       pr->b_rs, pr->b_cs, kc, min_i64(NR, nc - js * NR), NR);

            for (ic = row0; ic < row1; ic += MC) {           /* M: blocks of A (L2) */
                const int64_t mc = min_i64(MC, row1 - ic);
                const int64_t m_panels = (mc + MR - 1) / MR;

                for (is = 0; is < m_panels; is++)            /* M: micro-panels of A */
                    pack_a(a_buf + is * MR * kc, pr->a + (ic + is * MR) * pr->a_rs + pc * pr->a_cs,
                           pr->a_rs, pr->a_cs, min_i64(MR, mc - is * MR), kc, MR);

                for (js = 0; js < n_panels; js++) {          /* N: micro-panels of B (jr) */
                    for (is = 0; is < m_panels; is++) {      /* M: tiles down C (ir) */
                        const int64_t i0 = ic + is * MR, j0 = jc + js * NR;
                        const int64_t m = min_i64(MR, pr->m - i0);
                        const int64_t n = min_i64(NR, pr->n - j0);
                        ki->ukernel(pr->c + i0 * pr->ldc + j0, a_buf + is * MR * kc,
                                    b_buf + js * NR * kc, m, n, kc, pr->alpha, beta, pr->ldc);
                        if (last_k && epilogue)
                            gemm_epilogue(pr, i0, j0, m, n);
                    }
                }
            }
        }
    }
}

/* m, n, k >= 1.  ws holds nthreads * gemm_thread_floats(pr, ki) floats, 64-byte
 * aligned.  Each thread owns a rectangle of whole tiles and packs what it needs
 * into its own buffers: no barrier inside, and a thread held up by the OS delays
 * only its own share. */
static void gemm_blocked(const gemm_problem *pr, const pynn_gemm_kernel_info *ki,
                         float *ws, int nthreads) {
    const int64_t m_panels = (pr->m + ki->mr - 1) / ki->mr;
    const int64_t n_panels = (pr->n + ki->nr - 1) / ki->nr;
    const size_t per_thread = gemm_thread_floats(pr, ki);
    const size_t b_floats = gemm_b_floats(pr, ki);
    int tm, tn, t;
    gemm_grid(&tm, &tn, m_panels, n_panels, nthreads, ki->mr, ki->nr, pr->b_packed != NULL);

    /* One region: no OpenMP region either (libgomp sets up a team even for one
     * thread, with an `if` clause too). */
    if (tm * tn == 1) {
        gemm_region rg;
        rg.is0 = 0;
        rg.is1 = m_panels;
        rg.js0 = 0;
        rg.js1 = n_panels;
        gemm_region_run(pr, ki, &rg, ws, ws + b_floats);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(tm * tn)
#endif
    for (t = 0; t < tm * tn; t++) {                          /* regions, one per thread */
        gemm_region rg;
        float *mine = ws + (size_t)t * per_thread;
        rg.is0 = m_panels * (t / tn) / tm;
        rg.is1 = m_panels * (t / tn + 1) / tm;
        rg.js0 = n_panels * (t % tn) / tn;
        rg.js1 = n_panels * (t % tn + 1) / tn;
        gemm_region_run(pr, ki, &rg, mine, mine + b_floats);
    }
}

/* Below this many multiply-adds a team costs more than it saves; the thread
 * count never changes a result. */
#define GEMM_MIN_PARALLEL_MACS ((int64_t)1 << 17)

static int gemm_threads(int64_t m, int64_t n, int64_t k) {
    return m * n * k < GEMM_MIN_PARALLEL_MACS ? 1 : pynn_threads();
}

/* C = beta C (beta == 0: C = 0 without reading it): the whole product when K == 0
 * or alpha == 0, as in the reference BLAS. */
static void gemm_scale_c(const gemm_problem *pr) {
    int64_t i, j;
    for (i = 0; i < pr->m; i++) {                 /* M: rows of C */
        float *ci = pr->c + i * pr->ldc;
        if (pr->beta == 0.0f) {
            for (j = 0; j < pr->n; j++)           /* N: along the row */
                ci[j] = 0.0f;
        } else {
            for (j = 0; j < pr->n; j++)           /* N: along the row */
                ci[j] *= pr->beta;
        }
    }
}

/* ---- the small-problem path ------------------------------------------------- */
/*
 * Up to this many multiply-adds a product skips packing and the blocked loop nest:
 * the kernel's small routine reads A and B where they lie (a transposed B is first
 * transposed into a small buffer) on one thread.  Which path runs depends only on
 * the shape, never on the thread count, so results stay independent of it.  The
 * small path sums each element's K products in one chain (no K blocks): for
 * K <= KC it gives the packed path's results bitwise, and beyond that it differs
 * only in rounding (K is then <= GEMM_SMALL_MACS / (M N)).
 */
#define GEMM_SMALL_MACS PYNN_GEMM_SMALL_MACS
/* A transposed B of up to this many floats is transposed into a stack buffer. */
#define GEMM_SMALL_STACK_FLOATS 4096

static int gemm_is_small(int64_t m, int64_t n, int64_t k) {
    /* m, n, k >= 1 and each fits in the product test without overflow below 2^21 */
    if (m > GEMM_SMALL_MACS || n > GEMM_SMALL_MACS || k > GEMM_SMALL_MACS) return 0;
    return m * n * k <= GEMM_SMALL_MACS;
}

/* Does the small routine apply act itself (in registers)? */
static int gemm_small_does_act(int act) {
    return act == PYNN_ACT_LINEAR || act == PYNN_ACT_RELU || act == PYNN_ACT_LEAKY_RELU;
}

/* ---- few rows: the small path on column blocks ------------------------------
 *
 * A product of at most GEMM_SMALL_M rows (a Dense layer at batch 1..16: X W with X
 * 1 x 784, W 784 x 512) would spend most of its time packing B, which it reads only
 * once per MR rows anyway; the small routine instead streams B's rows straight from
 * where they lie.  Not for a transposed B: transposing it into a buffer first cost more
 * than packing it (16 x 784 x 512 on AVX-512: 110 against 197 GFLOP/s), so it keeps the
 * packed path (or the small one, below GEMM_SMALL_MACS).  Large ones are cut into blocks of whole GEMM_SMALL_M_COLS columns,
 * one per thread: each element is still summed by one thread, with the small routine's
 * arithmetic, which does not depend on which columns it is computed with, so the
 * results do not depend on the thread count. */
#ifndef GEMM_SMALL_M
#define GEMM_SMALL_M 16
#endif
#define GEMM_SMALL_M_COLS 64
#if GEMM_SMALL_M_COLS != PYNN_DENSE_PANEL_COLS
#error "a thread's column block must be whole panels of pynn_dense_pack_panels"
#endif
/* Below this many multiply-adds the small-M path runs on one thread. */
#ifndef GEMM_SMALL_M_PARALLEL_MACS
#define GEMM_SMALL_M_PARALLEL_MACS ((int64_t)1 << 17)
#endif

/* The small routine on columns [j0, j1) of pr; bt: B transposed into rows (ldbt), or
 * NULL when B's rows are contiguous. */
static void gemm_small_cols(const gemm_problem *pr, const pynn_gemm_kernel_info *ki,
                            float *bt, int64_t ldbt, int64_t j0, int64_t j1) {
    pynn_gemm_small_problem sp;
    if (pr->b_panels != NULL && j1 - j0 > PYNN_DENSE_PANEL_COLS) {   /* one panel at a time */
        int64_t q;
        for (q = j0; q < j1; q += PYNN_DENSE_PANEL_COLS)
            gemm_small_cols(pr, ki, bt, ldbt, q, min_i64(j1, q + PYNN_DENSE_PANEL_COLS));
        return;
    }
    sp.c = pr->c + j0;
    sp.ldc = pr->ldc;
    sp.a = pr->a;
    sp.a_rs = pr->a_rs;
    sp.a_cs = pr->a_cs;
    sp.m = pr->m;
    sp.n = j1 - j0;
    sp.k = pr->k;
    sp.alpha = pr->alpha;
    sp.beta = pr->beta;
    sp.bias = pr->bias != NULL ? pr->bias + j0 : NULL;
    sp.y = pr->y != NULL && gemm_small_does_act(pr->act) ? pr->y + j0 : NULL;
    sp.act = pr->act;
    sp.act_alpha = pr->act_alpha;
    if (bt != NULL) {
        /* B transposed (op(B) columns contiguous in K): make this block's rows contiguous. */
        ki->transpose(bt + j0, ldbt, pr->b + j0 * pr->b_cs, pr->b_cs, pr->k, j1 - j0);
        sp.b = bt + j0;
        sp.ldb = ldbt;
    } else if (pr->b_panels != NULL) {   /* j0 starts a panel (blocks are whole panels) */
        sp.b = pr->b_panels + j0 * pr->k;
        sp.ldb = PYNN_DENSE_PANEL_COLS;
    } else {
        sp.b = pr->b + j0;
        sp.ldb = pr->b_rs;
    }
    ki->small(&sp);
}

static int gemm_small(const gemm_problem *pr, const pynn_gemm_kernel_info *ki, int nthreads) {
    float stack_bt[GEMM_SMALL_STACK_FLOATS + 16];
    gemm_workspace ws;
    float *bt = NULL;
    int64_t i, ldbt = 0;
    ws.owned = NULL;
    ws.base = NULL;
    if (pr->b_cs != 1) {
        ldbt = round_up(pr->n, 16);
        if (pr->k * ldbt <= GEMM_SMALL_STACK_FLOATS) {
            bt = pynn_align64f(stack_bt);
        } else {
            const int status = workspace_acquire(&ws, (size_t)(pr->k * ldbt));
            if (status != PYNN_OK) return status;
            bt = ws.base;
        }
    }
    if (nthreads <= 1) {
        gemm_small_cols(pr, ki, bt, ldbt, 0, pr->n);
    } else {
        const int64_t blocks = (pr->n + GEMM_SMALL_M_COLS - 1) / GEMM_SMALL_M_COLS;
        int t;
        if (nthreads > blocks) nthreads = (int)blocks;
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nthreads)
#endif
        for (t = 0; t < nthreads; t++) {                 /* column blocks, one per thread */
            const int64_t j0 = GEMM_SMALL_M_COLS * (blocks * t / nthreads);
            const int64_t j1 = min_i64(pr->n, GEMM_SMALL_M_COLS * (blocks * (t + 1) / nthreads));
            if (j0 < j1) gemm_small_cols(pr, ki, bt, ldbt, j0, j1);
        }
    }
    if (ws.base != NULL) workspace_release(&ws);
    /* The activations the small routine leaves to us (softmax: after the product). */
    if (pr->y != NULL && !gemm_small_does_act(pr->act) && !pynn_act_rowwise(pr->act))
        for (i = 0; i < pr->m; i++)               /* M: finished rows */
            (void)pynn_act_span(pr->y + i * pr->ldc, pr->c + i * pr->ldc, pr->n, pr->act,
                                pr->act_alpha);
    return PYNN_OK;
}

static int gemm_run(const gemm_problem *pr) {
    const pynn_gemm_kernel_info *ki = gemm_current_kernel();
    gemm_workspace ws;
    int status, nthreads;
    if (pr->m == 0 || pr->n == 0) return PYNN_OK;
    if (pr->k == 0 || pr->alpha == 0.0f) {
        gemm_scale_c(pr);
        if (gemm_has_epilogue(pr)) gemm_epilogue(pr, 0, 0, pr->m, pr->n);
        return PYNN_OK;
    }
    if (pr->m <= GEMM_SMALL_M && pr->b_cs == 1)
        return gemm_small(pr, ki, pr->m * pr->n * pr->k < GEMM_SMALL_M_PARALLEL_MACS
                                      ? 1 : pynn_threads());
    if (gemm_is_small(pr->m, pr->n, pr->k)) return gemm_small(pr, ki, 1);
    nthreads = gemm_threads(pr->m, pr->n, pr->k);
    status = workspace_acquire(&ws, (size_t)nthreads * gemm_thread_floats(pr, ki));
    if (status != PYNN_OK) return status;
    gemm_blocked(pr, ki, ws.base, nthreads);
    workspace_release(&ws);
    return PYNN_OK;
}

/* Fills the stride fields of pr from the BLAS-style arguments. */
static void gemm_set_strides(gemm_problem *pr, int trans_a, int trans_b,
                             int64_t lda, int64_t ldb, int64_t ldc) {
    pr->ldc = ldc;
    pr->a_rs = trans_a ? 1 : lda;    /* op(A)(i, p) = A[p][i] if trans_a, else A[i][p] */
    pr->a_cs = trans_a ? lda : 1;
    pr->b_rs = trans_b ? 1 : ldb;    /* op(B)(p, j) = B[j][p] if trans_b, else B[p][j] */
    pr->b_cs = trans_b ? ldb : 1;
}

static int64_t max1(int64_t x) { return x > 1 ? x : 1; }

/* pynn_sgemm and pynn_sgemm_prepacked: the BLAS-style arguments checked, then the product
 * (bp: op(B) packed by pynn_sgemm_pack_b, or NULL). */
static int gemm_entry(float *C, const float *A, const float *B, const float *bp,
                      int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                      float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc) {
    gemm_problem pr;
    PYNN_RETURN_IF(M < 0 || N < 0 || K < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(C == NULL && M > 0 && N > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(A == NULL && M > 0 && K > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(B == NULL && K > 0 && N > 0, PYNN_EINVAL);
    /* Leading dimensions: at least the stored row length (BLAS's rule, row-major). */
    PYNN_RETURN_IF(lda < max1(trans_a ? M : K), PYNN_EINVAL);
    PYNN_RETURN_IF(ldb < max1(trans_b ? K : N), PYNN_EINVAL);
    PYNN_RETURN_IF(ldc < max1(N), PYNN_EINVAL);

    memset(&pr, 0, sizeof pr);
    pr.c = C;
    pr.a = A;
    pr.b = B;
    pr.b_packed = bp;
    pr.m = M;
    pr.n = N;
    pr.k = K;
    pr.alpha = alpha;
    pr.beta = beta;
    gemm_set_strides(&pr, trans_a, trans_b, lda, ldb, ldc);
    return gemm_run(&pr);
}

int pynn_sgemm(float *C, const float *A, const float *B,
               int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
               float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc) {
    return gemm_entry(C, A, B, NULL, trans_a, trans_b, M, N, K, alpha, beta, lda, ldb, ldc);
}

/* ---- B packed once, used by several products ---------------------------- */
/*
 * A recurrent layer multiplies by the same recurrent kernel at every step; packing it
 * once per sequence saves packing it each time.  The packed panels are bitwise those the
 * blocked path would pack (every K block's micro-panels, all N blocks one after another),
 * and a product that does not take the blocked path ignores them, so results are those of
 * pynn_sgemm.
 */
int64_t pynn_sgemm_pack_b_floats(int64_t N, int64_t K) {
    const pynn_gemm_kernel_info *ki = gemm_current_kernel();
    if (N < 1 || K < 1) return 0;
    return K * round_up(N, ki->nr);
}

int pynn_sgemm_pack_b(float *bp, const float *B, int trans_b, int64_t N, int64_t K,
                      int64_t ldb) {
    const pynn_gemm_kernel_info *ki = gemm_current_kernel();
    const pynn_gemm_pack_b_fn pack_b = ki->pack_b ? ki->pack_b : pynn_gemm_pack_b_ref;
    const int64_t NR = ki->nr, KC = ki->kc, np = round_up(N, NR);
    const int64_t b_rs = trans_b ? 1 : ldb, b_cs = trans_b ? ldb : 1;
    int64_t pc, js;
    PYNN_RETURN_IF(bp == NULL || B == NULL || pynn_sgemm_pack_b_floats(N, K) == 0,
                   PYNN_EINVAL);
    for (pc = 0; pc < K; pc += KC) {                         /* K: depth blocks */
        const int64_t kc = min_i64(KC, K - pc);
        for (js = 0; js * NR < N; js++)                      /* N: micro-panels of B */
            pack_b(bp + pc * np + js * NR * kc, B + pc * b_rs + js * NR * b_cs, b_rs, b_cs,
                   kc, min_i64(NR, N - js * NR), NR);
    }
    return PYNN_OK;
}

int pynn_sgemm_prepacked(float *C, const float *A, const float *B, const float *bp,
                         int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc) {
    return gemm_entry(C, A, B, bp, trans_a, trans_b, M, N, K, alpha, beta, lda, ldb, ldc);
}

/* ---- rows of one product, on the caller's thread -------------------------- */
/*
 * A recurrent layer's rows are independent through the whole sequence: each thread can
 * own some rows and run every step on them, its product rows then its cell update, with
 * no barrier between the steps (rnn.c).  These are the blocked path's tiles and K blocks
 * for the rows passed, so each element is summed as in any split of the rows.
 */
int64_t pynn_sgemm_rows_floats(int64_t M, int64_t K) {
    const pynn_gemm_kernel_info *ki = gemm_current_kernel();
    if (M < 1 || K < 1) return 0;
    return round_up(min_i64(K, ki->kc) * round_up(min_i64(M, ki->mc), ki->mr), 16);
}

void pynn_sgemm_rows(float *C, const float *A, const float *bp, int trans_a, int64_t M,
                     int64_t N, int64_t K, float beta, int64_t lda, int64_t ldc, float *a_buf) {
    const pynn_gemm_kernel_info *ki = gemm_current_kernel();
    gemm_problem pr;
    gemm_region rg;
    if (M < 1 || N < 1 || K < 1) return;
    memset(&pr, 0, sizeof pr);
    pr.c = C;
    pr.a = A;
    pr.b_packed = bp;
    pr.m = M;
    pr.n = N;
    pr.k = K;
    pr.alpha = 1.0f;
    pr.beta = beta;
    gemm_set_strides(&pr, trans_a, 0, lda, N, ldc);
    rg.is0 = 0;
    rg.is1 = (M + ki->mr - 1) / ki->mr;
    rg.js0 = 0;
    rg.js1 = (N + ki->nr - 1) / ki->nr;
    gemm_region_run(&pr, ki, &rg, NULL, a_buf);
}

/* ---- K split: long reductions into a small output ----------------------- */
/*
 * The M x N tile grid of a filter gradient (16 x 150 for LeNet's second layer) has
 * too few tiles for the threads, and every thread of an M/N split would pack the
 * whole of B (K x N, K = the batch's output positions).  Here K is cut instead, into
 * chunks fixed by the shape: each chunk is a whole blocked product on one thread (its
 * own packing buffers, its own partial C), and the partials are added in chunk order.
 */
#define KSPLIT_MIN_CHUNK 256      /* at least this many p per chunk */
#define KSPLIT_MAX_CHUNKS 8
/* ... and at least M N / this many p: the AlexNet-style net's 3x3x128 -> 128 filter
 * gradient (3136 positions) took 8 chunks of 392 with 590 KB partials each; 2 chunks
 * made it ~5% faster. */
#define KSPLIT_PARTIAL_RATIO 128

void pynn_gemm_sum_partials(float *c, int64_t ldc, const float *partials, int64_t chunks,
                            int64_t m, int64_t n, int transpose) {
    const int64_t rows = transpose ? n : m, cols = transpose ? m : n;
    const int64_t rs = transpose ? 1 : n, cs = transpose ? n : 1;   /* partial (row, col) */
    int64_t r;
    PYNN_PARALLEL_FOR(pynn_threads_for(chunks * m * n * 8),
        for (r = 0; r < rows; r++) {                      /* rows of C */
            float *cr = c + r * ldc;
            int64_t q, ch;
            for (q = 0; q < cols; q++) cr[q] = partials[r * rs + q * cs];
            for (ch = 1; ch < chunks; ch++) {             /* chunk order */
                const float *part = partials + ch * m * n + r * rs;
                for (q = 0; q < cols; q++) cr[q] += part[q * cs];
            }
        });
}

int64_t pynn_sgemm_ksplit_chunks(int64_t M, int64_t N, int64_t K) {
    int64_t chunks, min_chunk, pow2;
    if (M <= 0 || N <= 0 || K <= 0) return 1;
    /* a chunk's partial (M N floats, written, read back and added) is worth its FMAs only
     * over enough p: at least KSPLIT_MIN_CHUNK, and M N / KSPLIT_PARTIAL_RATIO */
    min_chunk = M > INT64_MAX / N ? K : M * N / KSPLIT_PARTIAL_RATIO;
    if (min_chunk < KSPLIT_MIN_CHUNK) min_chunk = KSPLIT_MIN_CHUNK;
    chunks = K / min_chunk;
    if (chunks >= KSPLIT_MAX_CHUNKS) return KSPLIT_MAX_CHUNKS;
    /* a power of two: chunks of equal size share 2, 4 or 8 threads evenly */
    pow2 = 1;
    while (pow2 * 2 <= chunks) pow2 *= 2;
    return pow2;
}

int64_t pynn_gemm_ksplit_chunk_len(int64_t M, int64_t N, int64_t K, int64_t *chunks) {
    const int64_t n = pynn_sgemm_ksplit_chunks(M, N, K);
    const int64_t len = (K + n - 1) / n;
    *chunks = (K + len - 1) / len;                        /* no empty chunk */
    return len;
}

int pynn_sgemm_ksplit(float *C, float *partials, const float *A, const float *B,
                      int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                      int64_t lda, int64_t ldb, int64_t ldc) {
    const pynn_gemm_kernel_info *ki;
    gemm_problem pr;
    gemm_workspace ws;
    size_t per_thread;
    int64_t chunks, chunk_k;
    int nthreads, status;
    PYNN_RETURN_IF(M < 0 || N < 0 || K < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(C == NULL && M > 0 && N > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(A == NULL && M > 0 && K > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(B == NULL && K > 0 && N > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(lda < max1(trans_a ? M : K), PYNN_EINVAL);
    PYNN_RETURN_IF(ldb < max1(trans_b ? K : N), PYNN_EINVAL);
    PYNN_RETURN_IF(ldc < max1(N), PYNN_EINVAL);
    chunks = pynn_sgemm_ksplit_chunks(M, N, K);
    if (chunks <= 1 || M == 0 || N == 0)
        return pynn_sgemm(C, A, B, trans_a, trans_b, M, N, K, 1.0f, 0.0f, lda, ldb, ldc);
    PYNN_RETURN_IF(partials == NULL, PYNN_EINVAL);
    chunk_k = pynn_gemm_ksplit_chunk_len(M, N, K, &chunks);

    memset(&pr, 0, sizeof pr);
    pr.a = A;
    pr.b = B;
    pr.m = M;
    pr.n = N;
    pr.k = chunk_k;
    pr.alpha = 1.0f;
    pr.beta = 0.0f;
    gemm_set_strides(&pr, trans_a, trans_b, lda, ldb, N);
    ki = gemm_current_kernel();
    per_thread = gemm_thread_floats(&pr, ki);             /* the largest chunk's */
    nthreads = pynn_threads_for(M * N * K);
    if (nthreads > chunks) nthreads = (int)chunks;
    status = workspace_acquire(&ws, (size_t)nthreads * per_thread);
    if (status != PYNN_OK) return status;
    {
        const size_t b_floats = gemm_b_floats(&pr, ki);
        const gemm_problem base = pr;
        const int64_t m_panels = (M + ki->mr - 1) / ki->mr;
        const int64_t n_panels = (N + ki->nr - 1) / ki->nr;
        float *wsb = ws.base;
        int64_t t;
        /* chunks of K: each partial product by one thread, with that thread's buffers */
        PYNN_PARALLEL_FOR(nthreads,
            for (t = 0; t < chunks; t++) {
                gemm_problem cp = base;
                gemm_region rg;
#ifdef _OPENMP
                float *mine = wsb + (size_t)(nthreads > 1 ? omp_get_thread_num() : 0) * per_thread;
#else
                float *mine = wsb;
#endif
                const int64_t p0 = t * chunk_k;
                cp.k = min_i64(chunk_k, K - p0);
                cp.a = base.a + p0 * base.a_cs;
                cp.b = base.b + p0 * base.b_rs;
                cp.c = partials + t * M * N;
                rg.is0 = 0;
                rg.is1 = m_panels;
                rg.js0 = 0;
                rg.js1 = n_panels;
                gemm_region_run(&cp, ki, &rg, mine, mine + b_floats);
            });
        pynn_gemm_sum_partials(C, ldc, partials, chunks, M, N, 0);
    }
    workspace_release(&ws);
    return PYNN_OK;
}

static int gemm_bias_act(float *Z, float *Y, const float *A, const float *B,
                         const float *panels, const float *bias, int trans_a, int trans_b,
                         int64_t M, int64_t N, int64_t K, int act, float act_alpha);

int pynn_sgemm_bias_act(float *Z, float *Y, const float *A, const float *B,
                        const float *bias, int trans_a, int trans_b,
                        int64_t M, int64_t N, int64_t K, int act, float act_alpha) {
    return gemm_bias_act(Z, Y, A, B, NULL, bias, trans_a, trans_b, M, N, K, act, act_alpha);
}

int pynn_sgemm_bias_act_panels(float *Z, float *Y, const float *A, const float *W,
                               const float *wp, const float *bias, int64_t M, int64_t N,
                               int64_t K, int act, float act_alpha) {
    return gemm_bias_act(Z, Y, A, W, wp, bias, 0, 0, M, N, K, act, act_alpha);
}

int64_t pynn_dense_panels_floats(int64_t K, int64_t N) {
    if (K < 1 || N < 1) return 0;
    return 1 + 15 + K * round_up(N, PYNN_DENSE_PANEL_COLS);     /* flag, alignment, panels */
}

const float *pynn_dense_panels(const float *buf) {
    return buf != NULL && buf[0] == 1.0f ? pynn_align64f((void *)(buf + 1)) : NULL;
}

int pynn_dense_pack_panels(float *buf, const float *w, int64_t K, int64_t N) {
    const int64_t P = PYNN_DENSE_PANEL_COLS;
    float *wp;
    int64_t q, p;
    PYNN_RETURN_IF(buf == NULL || w == NULL || K < 1 || N < 1, PYNN_EINVAL);
    wp = pynn_align64f(buf + 1);        /* rows of a panel on whole cache lines */
    for (q = 0; q < N; q += P) {                         /* N: panels */
        const int64_t cols = min_i64(P, N - q);
        float *panel = wp + q * K;
        for (p = 0; p < K; p++) {                        /* K: the panel's rows */
            memcpy(panel + p * P, w + p * N + q, (size_t)cols * sizeof(float));
            if (cols < P) memset(panel + p * P + cols, 0, (size_t)(P - cols) * sizeof(float));
        }
    }
    buf[0] = 1.0f;
    return PYNN_OK;
}

static int gemm_bias_act(float *Z, float *Y, const float *A, const float *B,
                         const float *panels, const float *bias, int trans_a, int trans_b,
                         int64_t M, int64_t N, int64_t K, int act, float act_alpha) {
    gemm_problem pr;
    int status;
    PYNN_RETURN_IF(M < 0 || N < 0 || K < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(act < PYNN_ACT_LINEAR || act >= PYNN_ACT_COUNT, PYNN_EINVAL);
    PYNN_RETURN_IF(Z == NULL && M > 0 && N > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(A == NULL && M > 0 && K > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(B == NULL && K > 0 && N > 0, PYNN_EINVAL);

    memset(&pr, 0, sizeof pr);
    pr.c = Z;
    pr.a = A;
    pr.b = B;
    pr.m = M;
    pr.n = N;
    pr.k = K;
    pr.alpha = 1.0f;
    pr.beta = 0.0f;
    pr.bias = bias;
    pr.y = Y;
    pr.act = act;
    pr.act_alpha = act_alpha;
    pr.b_panels = panels;
    /* Contiguous operands: the leading dimension is the stored row length. */
    gemm_set_strides(&pr, trans_a, trans_b, max1(trans_a ? M : K), max1(trans_b ? K : N), max1(N));
    status = gemm_run(&pr);
    /* softmax needs whole rows: the stand-alone kernel runs once the rows are complete
     * (the same code, so the fused and separate paths agree bitwise) */
    if (status == PYNN_OK && Y != NULL && pynn_act_rowwise(act) && M > 0 && N > 0)
        status = pynn_activation_forward(Y, Z, M, N, act, 0.0f);
    return status;
}
