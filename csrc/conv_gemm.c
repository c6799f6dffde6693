/* conv_gemm.c -- a convolution's forward and filter gradient as an implicit GEMM: the
 * products of im2col + GEMM (conv.c, gemm.c) without the cols matrix.
 *
 *   forward          z (rows x f) = cols (rows x K) wgt (K x f) + bias, y = act(z)
 *   filter gradient  dW^T (f x K) = dz^T (f x rows) cols (rows x K), K split
 *
 * rows = n*oh*ow output positions, K = kh*kw*c window entries.  The operand cols is never
 * made: it was a hundred megabytes for a VGG layer at batch 64, written by im2col and read
 * back from memory by the GEMM; x is a few, read from cache.
 *
 * At PYNN_LEVEL_AVX512 (conv_gemm_avx512.c, contracts in conv_gemm_internal.h):
 *   forward: tiles of 12 positions x 32 filters (8 x 48 when f is a multiple of 48 but not
 *     of 32) broadcast A straight from x, so A is never packed; the positions are grouped
 *     by how far their windows reach into the padding, and a tile multiplies only the
 *     window entries that lie in x (a zero-padded copy of x for layers over <= 4
 *     channels); wgt is packed once per call; bias and ReLU / leaky ReLU / linear are
 *     applied in the tile's store.  Where every window lies wholly in x (that copy, or
 *     "valid" windows), in one K block and one panel of wgt -- a first layer -- the tiles
 *     run in raster order, each set up just before it runs, and a 3 x 3 window over 3 or
 *     1 channels takes a tile with its 27 (9) steps unrolled.
 *   filter gradient: each K block of positions is copied into an L2-sized block of cols
 *     rows (im2col of kc positions) and multiplied, unpacked, with dz's rows in tiles of mr
 *     window entries (mr in [6, 12] chosen to divide K) x 16-48 filters, skipping the
 *     positions whose entries for a tile's rows all lie in the padding; for at most one
 *     tile's width of filters, with mr dividing a window row, the tiles broadcast from
 *     x's window lines instead (a table of line pointers per block, copies only for the
 *     windows across an edge).  dz and db are made block by block in the same pass (the
 *     ReLU's backward folded in), the next block's dy and z prefetched meanwhile.
 * At the other levels the GEMM's loops and micro-kernel (gemm.c: MR, NR, MC, KC, NC) run on
 * panels packed straight from x: the forward's A micro-panels from the window lines, the
 * filter gradient's B micro-panels (kc positions x NR entries) line by line.
 *
 * Determinism: every element of z is summed by one micro-kernel call per K block, the K
 * blocks in order, as in gemm.c, with the same packed values: the forward gives bitwise
 * the numbers of im2col + pynn_sgemm_bias_act on the blocked path, whatever the thread
 * count (threads take fixed ranges of whole tiles; the rows of a tile change nothing in
 * an element's arithmetic).  Products with the padding's zeros left out change no bit: a
 * sum that starts at +0 is never -0, and adding an exact zero to it changes nothing.  The filter gradient cuts the positions into the
 * chunks of pynn_sgemm_ksplit (fixed by the shape), one thread per chunk, its partial
 * summed over KC blocks of positions in order; the partials are then added in chunk order
 * into dW's (K x f) layout: bitwise pynn_sgemm_ksplit's result on cols, transposed, when
 * that splits (more than 256 positions).  The AVX-512 tiles compute every element with
 * the same FMA chain as the packed micro-kernel (a product's factors commute exactly), so
 * they give the same numbers too.  The level changes the results as it changes the GEMM's
 * (its micro-kernel's arithmetic and blocking).
 */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "gemm_internal.h"
#include "conv_gemm_internal.h"
#include "act_elementwise.h"

static int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* ---- packing ------------------------------------------------------------------ */

/* ap[s*mr + i] = src[i][off + s] for s < len, i < m; zero for m <= i < mr. */
static void pack_rows(float *ap, const float *const *src, int64_t off, int64_t m, int64_t len,
                      int64_t mr) {
    int64_t s, i;
    for (s = 0; s < len; s++) {                   /* K: columns of the panel */
        for (i = 0; i < m; i++)                   /* M: down the column */
            ap[s * mr + i] = src[i][off + s];
        for (i = m; i < mr; i++)                  /* M: padding rows */
            ap[s * mr + i] = 0.0f;
    }
}

/* The forward's A micro-panel: cols rows [g0, g0 + m), entries [pc, pc + kc), as
 * ap[p*mr + i] (gemm_internal.h).  scratch: mr * span floats; zeros: span zeros. */
static void pack_a_windows(float *ap, const pynn_conv_geom *g, int64_t g0, int64_t m, int64_t pc,
                           int64_t kc, int64_t mr, float *scratch, const float *zeros) {
    pynn_conv_pos pos[16];
    const float *src[16];
    const int64_t a0 = pc / g->span, a1 = (pc + kc - 1) / g->span;
    int64_t a, i;
    for (i = 0; i < m; i++) pos[i] = pynn_conv_pos_of(g, g0 + i);
    for (a = a0; a <= a1; a++) {                  /* K: window rows in the block */
        const int64_t s0 = max_i64(pc, a * g->span) - a * g->span;
        const int64_t s1 = min_i64(pc + kc, (a + 1) * g->span) - a * g->span;
        for (i = 0; i < m; i++)                   /* M: the panel's positions */
            src[i] = pynn_conv_window_row(g, &pos[i], a, scratch + i * g->span, zeros);
        pack_rows(ap + (a * g->span + s0 - pc) * mr, src, s0, m, s1 - s0, mr);
    }
}

/* The filter gradient's B panel: positions [q0, q0 + kc) (rows of the panel) by cols
 * entries [jc, jc + nc), cut into NR-wide micro-panels bp[js*nr*kc + p*nr + j]
 * (gemm_internal.h), zero past nc.  scratch: span floats; zeros: span zeros. */
static void pack_b_windows(float *bp, const pynn_conv_geom *g, int64_t q0, int64_t kc, int64_t jc,
                           int64_t nc, int64_t nr, float *scratch, const float *zeros) {
    const int64_t a0 = jc / g->span, a1 = (jc + nc - 1) / g->span;
    const int64_t last = (nc - 1) / nr, filled = nc - last * nr;
    int64_t q, a, t, j;
    for (q = 0; q < kc; q++) {                    /* K: positions, rows of the panels */
        const pynn_conv_pos pos = pynn_conv_pos_of(g, q0 + q);
        for (a = a0; a <= a1; a++) {              /* N: window rows in the panel */
            const float *src = pynn_conv_window_row(g, &pos, a, scratch, zeros) - a * g->span;
            const int64_t t1 = min_i64(jc + nc, (a + 1) * g->span);
            for (t = max_i64(jc, a * g->span); t < t1;) {   /* N: runs within a micro-panel */
                const int64_t js = (t - jc) / nr, off = (t - jc) - js * nr;
                const int64_t run = min_i64(t1 - t, nr - off);
                float *dst = bp + js * nr * kc + q * nr + off;
                const float *s = src + t;
                for (j = 0; j < run; j++) dst[j] = s[j];
                t += run;
            }
        }
        for (j = filled; j < nr; j++)             /* N: padding columns */
            bp[last * nr * kc + q * nr + j] = 0.0f;
    }
}

/* ---- a zero-padded copy of x, for layers over few channels ----------------------
 * Over c <= PAD_COPY_MAX_C channels (a first layer over images) a window row is a few
 * entries (9 for 3x3 over 3 channels): the windows at the image's edges, assembled in
 * scratch for the filter gradient or cut to their entries in x by the forward's padding
 * classes, cost about as much per product as the whole window.  A copy of x with the
 * padding's zeros written out, n x hp x wp x c with hp = (oh - 1) sh + kh and
 * wp = (ow - 1) sw + kw, puts every window inside the image: each window row is then a
 * pointer into the copy.  The same values in the same places, so the same results; the
 * copy is a few hundred kilobytes for such a layer (888 KB at batch 64 for 32 x 32 x 3),
 * a twentieth of the pass's time. */
#define PAD_COPY_MAX_C 4

/* Floats of the padded copy of g's input, 0 when none is made. */
static int64_t padded_floats(const pynn_conv_geom *g) {
    if (g->c > PAD_COPY_MAX_C || pynn_conv_all_inside(g)) return 0;
    return g->n * ((g->oh - 1) * g->sh + g->kh) * ((g->ow - 1) * g->sw + g->kw) * g->c;
}

/* Fills xp (padded_floats(g) floats) and returns the geometry over it: the same windows
 * with no padding. */
static pynn_conv_geom padded_geom(const pynn_conv_geom *g, float *xp) {
    const int64_t hp = (g->oh - 1) * g->sh + g->kh, wp = (g->ow - 1) * g->sw + g->kw;
    const int64_t c = g->c, q_lo = min_i64(g->pl, wp), q_hi = min_i64(g->pl + g->w, wp);
    int64_t img;
    PYNN_PARALLEL_FOR(pynn_threads_for(g->n * hp * wp * c),
        for (img = 0; img < g->n; img++) {        /* images */
            int64_t r;
            for (r = 0; r < hp; r++) {            /* rows of the copy */
                float *dst = xp + (img * hp + r) * wp * c;
                const int64_t xr = r - g->pt;
                if (xr < 0 || xr >= g->h || q_hi <= q_lo) {   /* a row of padding */
                    memset(dst, 0, (size_t)(wp * c) * sizeof(float));
                    continue;
                }
                memset(dst, 0, (size_t)(q_lo * c) * sizeof(float));
                memcpy(dst + q_lo * c, g->x + ((img * g->h + xr) * g->w + q_lo - g->pl) * c,
                       (size_t)((q_hi - q_lo) * c) * sizeof(float));
                memset(dst + q_hi * c, 0, (size_t)((wp - q_hi) * c) * sizeof(float));
            }
        });
    return pynn_conv_geom_of(xp, g->n, hp, wp, c, g->kh, g->kw, g->sh, g->sw, 0, 0, g->oh,
                             g->ow, g->f);
}

/* ---- the forward ------------------------------------------------------------- */

/* Below this many multiply-adds the product runs on one thread (gemm.c's rule). */
#define CONV_GEMM_MIN_PARALLEL_MACS ((int64_t)1 << 17)

static const pynn_gemm_kernel_info *conv_kernel(void) {
    return pynn_gemm_kernel_info_of(pynn_level());
}

/* z = bias (or 0), y = act(z): the product when K == 0. */
static void forward_no_k(float *z, float *y, const float *bias, int64_t rows, int64_t f,
                         int act, float alpha) {
    int64_t i, j;
    for (i = 0; i < rows; i++) {                  /* M: rows of z */
        for (j = 0; j < f; j++) z[i * f + j] = bias != NULL ? bias[j] : 0.0f;
        if (y != NULL && !pynn_act_rowwise(act))
            (void)pynn_act_span(y + i * f, z + i * f, f, act, alpha);
    }
}

/* ---- the forward on the AVX-512 tiles: no packed A, no products with the padding ----
 * Tiles of MR output positions by NR filters (conv_gemm_internal.h, pynn_conv_tile): each
 * tile's rows read their windows where they lie in x, so A is never packed; wgt is packed
 * once per call.  Blocks of TILE_BLOCK tiles share their line pointers, built once per
 * block, and each K block of a micro-panel of wgt (kc x NR, in L1) is used by all the
 * block's tiles in turn.
 *
 * The positions are grouped by how their windows overlap the padding: the window rows
 * above and below the image (the same along an output row) and the window columns left
 * and right of it (the same down an output column).  Both change monotonically along the
 * rows and the columns, so the classes are runs of output rows by runs of output columns:
 * for a 3x3 "same" layer the interior, four edges and four corners.  A tile takes MR
 * positions of one class (in raster order within it), so its rows share the window rows
 * and the entries that lie in x: it multiplies only those.  The products with the
 * padding -- exact zeros, 18% of a 7x7 image's under a 3x3 window, 4% of a 32x32 one's --
 * are never made; a sum that starts at +0 is never -0, so leaving out zero terms changes
 * no bit: every element of z is the FMA chain of the packed path over its window's
 * entries in K order, K blocks (the GEMM's KC) in order.  The tile writes each row to its
 * own place in z. */
#define TILE_BLOCK 8

#ifdef PYNN_HAVE_X86_KERNELS
/* A window of k rows (columns) starting at row `start` of an image of `in`: how many of
 * them lie before the image and how many after it (together at most k). */
static inline void window_reach(int64_t start, int64_t k, int64_t in, int64_t *before,
                                int64_t *after) {
    *before = min_i64(k, max_i64(0, -start));
    *after = min_i64(k - *before, max_i64(0, start + k - in));
}

/* Entry s_lo = clo c of window row a_lo of output position (img, oi, oj)'s window, in x. */
static inline const float *first_entry(const pynn_conv_geom *g, int64_t img, int64_t oi,
                                       int64_t oj, int64_t a_lo, int64_t clo) {
    return g->x + ((img * g->h + oi * g->sh - g->pt + a_lo) * g->w + oj * g->sw - g->pl + clo) *
                      g->c;
}

/* A walk over output positions in raster order, where every window lies in x (one class,
 * a_lo = clo = 0): p, the first entry of the current position's window, moves sw c along
 * an output row and is recomputed at the next row.  The forward's whole tiles and the
 * filter gradient's line pointers both take their pointers from it. */
typedef struct {
    const float *p;
    int64_t img, oi, oj;
} window_walk;

static inline window_walk window_walk_at(const pynn_conv_geom *g, int64_t pos) {
    window_walk w;
    const int64_t per_img = g->oh * g->ow;
    w.img = pos / per_img;
    w.oi = pos % per_img / g->ow;
    w.oj = pos % g->ow;
    w.p = first_entry(g, w.img, w.oi, w.oj, 0, 0);
    return w;
}

/* On to the next position (call it only while one follows). */
static inline void window_walk_next(const pynn_conv_geom *g, window_walk *w) {
    if (++w->oj < g->ow) {                        /* along the output row */
        w->p += g->sw * g->c;
        return;
    }
    w->oj = 0;                                    /* the next output row */
    if (++w->oi == g->oh) {
        w->oi = 0;
        w->img++;
    }
    w->p = first_entry(g, w->img, w->oi, 0, 0, 0);
}

/* Runs of output rows (or columns) whose windows reach the same number of rows (columns)
 * into the padding before and after the image: bounds[r] .. bounds[r + 1] is run r, with
 * lo[r] window rows (columns) before the image and hi[r] after it, each at most k.
 * Returns the number of runs; bounds (out + 1 entries), lo and hi (out entries) may be
 * NULL: the count alone. */
static int64_t padding_runs(int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t in,
                            int64_t *bounds, int64_t *lo, int64_t *hi) {
    int64_t o, runs = 0, prev_before = -1, prev_after = -1;
    for (o = 0; o < out; o++) {                   /* output rows (columns) in order */
        int64_t before, after;
        window_reach(o * stride - pad, k, in, &before, &after);
        if (before != prev_before || after != prev_after) {
            if (bounds != NULL) {
                bounds[runs] = o;
                lo[runs] = before;
                hi[runs] = after;
            }
            runs++;
            prev_before = before;
            prev_after = after;
        }
    }
    if (bounds != NULL) bounds[runs] = out;
    return runs;
}

/* The tiles of positions [p0, p1) in raster order, every window wholly in x (one class, no
 * padding to leave out): each tile's MR row pointers and places in z set up as the
 * positions advance along the output rows, then the tile run.  tl: the fixed fields. */
static void whole_tiles(pynn_conv_tile *tl, const pynn_conv_geom *g, int64_t p0, int64_t p1,
                        int64_t MR, void (*fn)(const pynn_conv_tile *)) {
    const float **ln = (const float **)tl->rows;
    int64_t *rp = (int64_t *)tl->rowpos;
    window_walk walk = window_walk_at(g, p0);
    int64_t pos = p0, i;
    while (pos < p1) {                            /* M: tiles */
        const int64_t m = min_i64(MR, p1 - pos);
        for (i = 0; i < m; i++) {                 /* M: the tile's rows */
            ln[i] = walk.p;
            rp[i] = pos++;
            if (pos < p1) window_walk_next(g, &walk);
        }
        for (; i < MR; i++) {                     /* M: rows past the end */
            ln[i] = ln[0];
            rp[i] = -1;
        }
        tl->m = m;
        fn(tl);
    }
}

static int forward_tiles(const pynn_conv_geom *g_in, float *z, float *y, const float *wgt,
                         const float *bias, int act, float alpha, int64_t KC) {
    /* over few channels the edge classes' window rows are a few entries long (6 of 9 for
     * 3x3 over 3 channels): the zero-padded copy (padded_geom), one class, is faster */
    const int64_t xp_floats = round_up(padded_floats(g_in), 16);
    pynn_conv_geom g_padded;
    const pynn_conv_geom *g = g_in;
    const int wide = g->f % 32 != 0 && g->f % 48 == 0;   /* 48, 144, ...: 8 x 48 tiles */
    void (*const tile_fn)(const pynn_conv_tile *) =
        wide ? pynn_conv_tile_avx512_8x48 : pynn_conv_tile_avx512_12x32;
    const int64_t MR = wide ? 8 : 12, NR = wide ? 48 : 32;
    /* a 3 x 3 window over 3 or 1 channels (a first layer), for the tiles that take all of
     * it: its steps unrolled */
    void (*const whole_fn)(const pynn_conv_tile *) =
        wide || g->kh != 3 || g->kw != 3 ? NULL
        : g->c == 3 ? pynn_conv_tile_avx512_12x32_3x3x3
        : g->c == 1 ? pynn_conv_tile_avx512_12x32_3x3x1 : NULL;
    const int64_t M = g->rows, N = g->f, K = g->k;
    const int64_t n_panels = (N + NR - 1) / NR;
    const int64_t b_floats = round_up(K * n_panels * NR, 16);
    const int64_t line_ptrs = TILE_BLOCK * MR;
    /* per thread: the block's line pointers, then its rows' places in z (2 floats each) */
    const int64_t per_thread = round_up(2 * (line_ptrs + TILE_BLOCK * MR), 16);
    /* the runs (padding_runs) and the classes' first tiles, as int64 (2 floats each) */
    const int64_t run_ints = 3 * (g->oh + 1) + 3 * (g->ow + 1);
    const int fused_act = act == PYNN_ACT_LINEAR || act == PYNN_ACT_RELU ||
                          act == PYNN_ACT_LEAKY_RELU;
    int64_t *rb, *rlo, *rhi, *cb, *clo, *chi, *first_tile;
    int64_t n_rr, n_cr, n_cls, tiles, cls;
    int whole;
    float *base, *bbuf, *zeros, *thread_base;
    void *owned;
    int nthreads, status, t;
    int64_t pc, js;
    /* the classes: runs of rows by runs of columns (at most this many: the table of their
     * tiles is sized for g_in's, one class when the windows are in a padded copy) */
    n_cls = padding_runs(g->oh, g->kh, g->sh, g->pt, g->h, NULL, NULL, NULL) *
            padding_runs(g->ow, g->kw, g->sw, g->pl, g->w, NULL, NULL, NULL);
    nthreads = M * N * K < CONV_GEMM_MIN_PARALLEL_MACS ? 1 : pynn_threads();
    status = pynn_gemm_workspace_acquire(
        &base, &owned,
        (size_t)(b_floats + round_up(g->span, 16) + round_up(2 * (run_ints + n_cls + 1), 16) +
                 nthreads * per_thread + xp_floats));
    if (status != PYNN_OK) return status;
    if (xp_floats > 0) {                          /* a first layer: windows in a copy */
        g_padded = padded_geom(g_in, base + (b_floats + round_up(g->span, 16) +
                                             round_up(2 * (run_ints + n_cls + 1), 16) +
                                             nthreads * per_thread));
        g = &g_padded;
    }
    bbuf = base;
    zeros = base + b_floats;
    rb = (int64_t *)(void *)(zeros + round_up(g->span, 16));
    rlo = rb + g->oh + 1;
    rhi = rlo + g->oh + 1;
    cb = rhi + g->oh + 1;
    clo = cb + g->ow + 1;
    chi = clo + g->ow + 1;
    first_tile = chi + g->ow + 1;
    thread_base = zeros + round_up(g->span, 16) + round_up(2 * (run_ints + n_cls + 1), 16);
    memset(zeros, 0, (size_t)g->span * sizeof(float));
    n_rr = padding_runs(g->oh, g->kh, g->sh, g->pt, g->h, rb, rlo, rhi);
    n_cr = padding_runs(g->ow, g->kw, g->sw, g->pl, g->w, cb, clo, chi);
    n_cls = n_rr * n_cr;
    tiles = 0;
    for (cls = 0; cls < n_cls; cls++) {           /* classes: row run major */
        const int64_t rr = cls / n_cr, cr = cls % n_cr;
        first_tile[cls] = tiles;
        tiles += (g->n * (rb[rr + 1] - rb[rr]) * (cb[cr + 1] - cb[cr]) + MR - 1) / MR;
    }
    first_tile[n_cls] = tiles;
    if (nthreads > tiles) nthreads = (int)max_i64(1, tiles);
    /* one class whose windows lie wholly in x (a padded copy, or "valid" windows), one K
     * block, one micro-panel of wgt, the activation in the tiles' store (a first layer):
     * the positions in raster order, each tile's rows set up just before it runs */
    whole = n_cls == 1 && rlo[0] == 0 && rhi[0] == 0 && clo[0] == 0 && chi[0] == 0 &&
            K <= KC && n_panels == 1 && (y == NULL || fused_act);
    for (pc = 0; pc < K; pc += KC) {              /* K: depth blocks */
        const int64_t kc = min_i64(KC, K - pc);
        for (js = 0; js < n_panels; js++)         /* N: micro-panels of wgt */
            pynn_gemm_pack_b_ref(bbuf + pc * n_panels * NR + js * NR * kc, wgt + pc * N + js * NR,
                                 N, 1, kc, min_i64(NR, N - js * NR), NR);
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nthreads) if (nthreads > 1)
#endif
    for (t = 0; t < nthreads; t++) {              /* bands of whole tiles */
        const float **lines = (const float **)(void *)(thread_base + t * per_thread);
        int64_t *rowpos = (int64_t *)(void *)(thread_base + t * per_thread + 2 * line_ptrs);
        const int64_t t0 = tiles * t / nthreads, t1 = tiles * (t + 1) / nthreads;
        int64_t tb, ti, i, pc2, js2, tc = 0;
        int64_t st_cls = -1, st_img = 0, st_ri = 0, st_ci = 0;   /* positions carried on */
        int64_t a_lo[TILE_BLOCK], a_hi[TILE_BLOCK], s_lo[TILE_BLOCK], s_hi[TILE_BLOCK];
        int64_t live[TILE_BLOCK];
        if (whole) {                                  /* every tile the whole window */
            pynn_conv_tile tl = {.rows = lines, .ldx = g->w * g->c, .span = g->span,
                                 .pc = 0, .kc = K, .a_lo = 0, .a_hi = g->kh, .s_lo = 0,
                                 .s_hi = g->span, .b = bbuf, .rowpos = rowpos, .c = z,
                                 .ldc = N, .n = N, .accumulate = 0, .bias = bias, .y = y,
                                 .act = act, .alpha = alpha};
            whole_tiles(&tl, g, t0 * MR, min_i64(t1 * MR, M), MR,
                        whole_fn != NULL ? whole_fn : tile_fn);
            continue;
        }
        for (tb = t0; tb < t1; tb += TILE_BLOCK) {            /* M: blocks of tiles */
            const int64_t nt = min_i64(TILE_BLOCK, t1 - tb);
            for (ti = 0; ti < nt; ti++) {                     /* M: the block's tiles */
                const int64_t tile = tb + ti;
                int64_t rr, cr, nr, nc, k0, img, ri, ci;
                while (first_tile[tc + 1] <= tile) tc++;      /* the tile's class */
                rr = tc / n_cr;
                cr = tc % n_cr;
                nr = rb[rr + 1] - rb[rr];
                nc = cb[cr + 1] - cb[cr];
                k0 = (tile - first_tile[tc]) * MR;            /* its first position */
                if (tc == st_cls) {                           /* where the last tile ended */
                    img = st_img;
                    ri = st_ri;
                    ci = st_ci;
                } else {                                      /* a class's first tile here */
                    img = k0 / (nr * nc);
                    ri = k0 % (nr * nc) / nc;
                    ci = k0 % nc;
                    st_cls = tc;
                }
                a_lo[ti] = rlo[rr];
                a_hi[ti] = g->kh - rhi[rr];
                s_lo[ti] = clo[cr] * g->c;
                s_hi[ti] = g->span - chi[cr] * g->c;
                live[ti] = min_i64(MR, g->n * nr * nc - k0);
                {
                    /* row i's window row a_lo from entry s_lo on (rows past the class:
                     * the first row's; the zero line when no entry lies in x), p moving sw c
                     * along an output row */
                    const int64_t step = g->sw * g->c;
                    const int empty = a_lo[ti] >= a_hi[ti] || s_lo[ti] >= s_hi[ti];
                    int64_t oi = rb[rr] + ri, oj = cb[cr] + ci;
                    int64_t pos = (img * g->oh + oi) * g->ow + oj;
                    const float *p = empty ? zeros
                                           : first_entry(g, img, oi, oj, a_lo[ti], clo[cr]);
                    const float **ln = lines + ti * MR;
                    int64_t *rp = rowpos + ti * MR;
                    for (i = 0; i < MR; i++) {                /* M: the tile's rows */
                        const int past = i >= live[ti];
                        ln[i] = past ? ln[0] : p;
                        rp[i] = past ? -1 : pos;
                        if (++ci < nc) {                      /* along the output row */
                            pos++;
                            if (!empty) p += step;
                            continue;
                        }
                        ci = 0;                               /* the class's next row */
                        if (++ri == nr) {
                            ri = 0;
                            img++;
                        }
                        if (img == g->n) continue;            /* past the class */
                        oi = rb[rr] + ri;
                        oj = cb[cr];
                        pos = (img * g->oh + oi) * g->ow + oj;
                        if (!empty) p = first_entry(g, img, oi, oj, a_lo[ti], clo[cr]);
                    }
                }
                st_img = img;                                 /* the next tile's first row */
                st_ri = ri;
                st_ci = ci;
            }
            for (pc2 = 0; pc2 < K; pc2 += KC) {               /* K: depth blocks, in order */
                const int64_t kc = min_i64(KC, K - pc2);
                const int last_k = pc2 + kc == K;
                for (js2 = 0; js2 < n_panels; js2++) {        /* N: micro-panels of wgt */
                    const int64_t j0 = js2 * NR, nn = min_i64(NR, N - j0);
                    for (ti = 0; ti < nt; ti++) {             /* M: the block's tiles */
                        pynn_conv_tile tl;
                        tl.rows = lines + ti * MR;
                        tl.ldx = g->w * g->c;
                        tl.span = g->span;
                        tl.a_lo = a_lo[ti];
                        tl.a_hi = a_hi[ti];
                        tl.s_lo = s_lo[ti];
                        tl.s_hi = s_hi[ti];
                        tl.pc = pc2;
                        tl.kc = kc;
                        tl.b = bbuf + pc2 * n_panels * NR + js2 * NR * kc;
                        tl.rowpos = rowpos + ti * MR;
                        tl.c = z + j0;
                        tl.ldc = N;
                        tl.m = live[ti];
                        tl.n = nn;
                        tl.accumulate = pc2 > 0;
                        tl.bias = last_k && bias != NULL ? bias + j0 : NULL;
                        tl.y = last_k && y != NULL && fused_act ? y + j0 : NULL;
                        tl.act = act;
                        tl.alpha = alpha;
                        if (whole_fn != NULL && kc == K && a_lo[ti] == 0 && a_hi[ti] == g->kh &&
                            s_lo[ti] == 0 && s_hi[ti] == g->span)
                            whole_fn(&tl);                    /* the whole window, unrolled */
                        else
                            tile_fn(&tl);
                        if (last_k && y != NULL && !fused_act && !pynn_act_rowwise(act))
                            for (i = 0; i < tl.m; i++) {      /* M: the finished rows */
                                const int64_t row = tl.rowpos[i];
                                (void)pynn_act_span(y + row * N + j0, z + row * N + j0, nn,
                                                    act, alpha);
                            }
                    }
                }
            }
        }
    }
    pynn_gemm_workspace_release(base, owned);
    return PYNN_OK;
}
#endif

int pynn_conv_gemm_forward(float *z, float *y, const float *x, const float *wgt,
                           const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                           float alpha) {
    const pynn_conv_geom g = pynn_conv_geom_of(x, n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh,
                                     ow, f);
    const pynn_gemm_kernel_info *ki = conv_kernel();
    const int64_t M = g.rows, N = f, K = g.k;
    int64_t MR, NR, MC, KC, n_panels, m_panels, a_floats, per_thread, b_floats;
    float *base, *bbuf, *zeros;
    void *owned;
    int nthreads, status;
    if (M == 0 || N == 0) return PYNN_OK;
    if (ki == NULL || ki->mr > 16) return PYNN_EINVAL;
    if (K == 0) {
        forward_no_k(z, y, bias, M, N, act, alpha);
#ifdef PYNN_HAVE_X86_KERNELS
    } else if (ki->id == PYNN_LEVEL_AVX512) {
        status = forward_tiles(&g, z, y, wgt, bias, act, alpha, ki->kc);
        if (status != PYNN_OK) return status;
#endif
    } else {
        MR = ki->mr; NR = ki->nr; MC = ki->mc; KC = ki->kc;
        n_panels = (N + NR - 1) / NR;
        m_panels = (M + MR - 1) / MR;
        b_floats = round_up(K * n_panels * NR, 16);
        a_floats = round_up(round_up(min_i64(M, MC), MR) * min_i64(K, KC), 16);
        per_thread = round_up(a_floats + MR * g.span, 16);
        nthreads = M * N * K < CONV_GEMM_MIN_PARALLEL_MACS ? 1 : pynn_threads();
        if (nthreads > m_panels) nthreads = (int)m_panels;
        status = pynn_gemm_workspace_acquire(
            &base, &owned,
            (size_t)(b_floats + round_up(g.span, 16) + nthreads * per_thread));
        if (status != PYNN_OK) return status;
        bbuf = base;
        zeros = base + b_floats;
        memset(zeros, 0, (size_t)g.span * sizeof(float));
        {
            /* B = wgt, once: K block pc's micro-panel js at bbuf + pc*n_panels*NR + js*NR*kc */
            const pynn_gemm_pack_b_fn pack_b = ki->pack_b ? ki->pack_b : pynn_gemm_pack_b_ref;
            int64_t pc, js;
            for (pc = 0; pc < K; pc += KC) {      /* K: depth blocks */
                const int64_t kc = min_i64(KC, K - pc);
                for (js = 0; js < n_panels; js++) /* N: micro-panels */
                    pack_b(bbuf + pc * n_panels * NR + js * NR * kc, wgt + pc * N + js * NR, N,
                           1, kc, min_i64(NR, N - js * NR), NR);
            }
        }
        {
            float *const thread_base = zeros + round_up(g.span, 16);
            const int has_epilogue = bias != NULL || (y != NULL && !pynn_act_rowwise(act));
            int t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nthreads) if (nthreads > 1)
#endif
            for (t = 0; t < nthreads; t++) {      /* bands of whole MR-row panels */
                float *abuf = thread_base + t * per_thread, *scratch = abuf + a_floats;
                const int64_t row0 = m_panels * t / nthreads * MR;
                const int64_t row1 = min_i64(M, m_panels * (t + 1) / nthreads * MR);
                int64_t ic, pc, is, js, i;
                for (ic = row0; ic < row1; ic += MC) {          /* M: blocks of A (L2) */
                    const int64_t mc = min_i64(MC, row1 - ic), mp = (mc + MR - 1) / MR;
                    for (pc = 0; pc < K; pc += KC) {             /* K: depth blocks, in order */
                        const int64_t kc = min_i64(KC, K - pc);
                        const float beta = pc == 0 ? 0.0f : 1.0f;
                        const int last_k = pc + kc == K;
                        const float *bblock = bbuf + pc * n_panels * NR;
                        for (is = 0; is < mp; is++)              /* M: micro-panels of A */
                            pack_a_windows(abuf + is * MR * kc, &g, ic + is * MR,
                                           min_i64(MR, mc - is * MR), pc, kc, MR, scratch, zeros);
                        for (js = 0; js < n_panels; js++) {      /* N: micro-panels of B */
                            const int64_t j0 = js * NR, nn = min_i64(NR, N - j0);
                            for (is = 0; is < mp; is++) {        /* M: tiles down z */
                                const int64_t i0 = ic + is * MR, m = min_i64(MR, M - i0);
                                ki->ukernel(z + i0 * N + j0, abuf + is * MR * kc,
                                            bblock + js * NR * kc, m, nn, kc, 1.0f, beta, N);
                                if (!(last_k && has_epilogue)) continue;
                                for (i = 0; i < m; i++) {        /* M: the finished tile's rows */
                                    float *zi = z + (i0 + i) * N + j0;
                                    int64_t j;
                                    if (bias != NULL)
                                        for (j = 0; j < nn; j++) zi[j] += bias[j0 + j];
                                    if (y != NULL && !pynn_act_rowwise(act))
                                        (void)pynn_act_span(y + (i0 + i) * N + j0, zi, nn, act,
                                                            alpha);
                                }
                            }
                        }
                    }
                }
            }
        }
        pynn_gemm_workspace_release(base, owned);
    }
    /* softmax needs whole rows (as in pynn_sgemm_bias_act) */
    if (y != NULL && pynn_act_rowwise(act))
        return pynn_activation_forward(y, z, M, N, act, 0.0f);
    return PYNN_OK;
}

/* ---- the filter gradient ------------------------------------------------------- */

int64_t pynn_conv_gemm_filter_partials(int64_t rows, int64_t k, int64_t f) {
    /* each chunk's partial dW, then its partial bias gradient (the folded pass) */
    return pynn_sgemm_ksplit_chunks(f, k, rows) * (k * f + f);
}

#ifdef PYNN_HAVE_X86_KERNELS
/* ---- the filter gradient on the AVX-512 tiles: dW = cols^T dz, nothing packed -------
 * Each chunk's K blocks (KC positions) are copied into a block of cols rows (kc x K
 * floats, in L2: im2col of the block) and multiplied in tiles of mr window entries by
 * 16 nv filters (pynn_conv_ktile), broadcasting from the block's rows and loading dz's
 * rows where they lie.  dW's rows (window entries) are on the tile's rows, so mr is
 * chosen to divide K (or waste least); the filters fill the vectors.  Each element is
 * the FMA chain over the chunk's positions, K blocks in order, of the packed path: the
 * same numbers (a product's two factors commute exactly). */

/* The tile for k window entries by f filters: 16 nv columns fill f's vectors (1 for
 * f <= 16, 3 for multiples of 48 that are not of 32, else 2), mr rows waste least of k. */
static void ktile_shape(int64_t k, int64_t f, int *mr, int *nv) {
    int m, hi;
    int64_t best = -1;
    *nv = f <= 16 ? 1 : (f % 32 != 0 && f % 48 == 0) ? 3 : 2;
    hi = *nv == 3 ? 8 : 12;
    *mr = hi;
    for (m = hi; m >= PYNN_CONV_KTILE_MR_LO; m--) {   /* fewest padded rows, then widest */
        const int64_t padded = (k + m - 1) / m * m;
        if (best < 0 || padded < best) {
            best = padded;
            *mr = m;
        }
    }
}

/* The share of tile t (of ntiles, in the order they run) of the next block's rows to
 * prefetch while this block's tiles run: that block's dz rows (dy before the fold) and,
 * when z is not NULL, z's rows -- `floats` each -- read from memory once, while the FMAs
 * of this block keep the cores busy (the block's dz pass then finds them in L2: without
 * it, that pass waited on memory, a tenth of a 32-filter layer's filter gradient and
 * half of a first layer's).  The dz lines go to the first half of the tiles, z's to the
 * rest, each tile at most 2 kc lines (pynn_conv_ltile's pf).  A hint: no effect on any
 * result. */
static void prefetch_share(const char **pf, int64_t *pf_lines, int64_t t, int64_t ntiles,
                           const float *dz, const float *z, int64_t floats, int64_t kc) {
    const int64_t t_dz = z == NULL ? ntiles : max_i64(1, ntiles / 2);
    const int in_dz = t < t_dz;
    const int64_t t_r = in_dz ? t_dz : ntiles - t_dz, local = in_dz ? t : t - t_dz;
    const uintptr_t start = (uintptr_t)(in_dz ? dz : z);
    const uintptr_t first = start / 64 * 64, end = start + (uintptr_t)floats * sizeof(float);
    const int64_t lines = (int64_t)((end - first + 63) / 64);
    const int64_t share = min_i64((lines + t_r - 1) / t_r, 2 * kc);
    *pf = (const char *)first + 64 * local * share;
    *pf_lines = (!in_dz && z == NULL) || floats == 0 ? 0
                : max_i64(0, min_i64(share, lines - local * share));
}

/* taps[q] = the window taps of position q0 + q that lie in x (bit a*kw + b), q < kc, for
 * a layer with kh*kw <= 64 taps. */
static void block_taps(uint64_t *taps, const pynn_conv_geom *g, int64_t q0, int64_t kc) {
    pynn_conv_pos pos = pynn_conv_pos_of(g, q0);
    int64_t q, a;
    for (q = 0; q < kc; q++) {                    /* positions */
        int64_t a0, a_after, b0, b_after, b1;
        uint64_t bits = 0, cols = 0;
        window_reach(pos.r0, g->kh, g->h, &a0, &a_after);
        window_reach(pos.q0, g->kw, g->w, &b0, &b_after);
        b1 = g->kw - b_after;
        if (b1 > b0) cols = (b1 - b0 >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << (b1 - b0)) - 1)) << b0;
        for (a = a0; a < g->kh - a_after; a++) bits |= cols << (a * g->kw);   /* rows in x */
        taps[q] = bits;
        pynn_conv_pos_next(g, &pos);
    }
}

/* The taps (bit a*kw + b) that window entries [e0, e1) of K cover, c entries a tap. */
static uint64_t entry_taps(int64_t e0, int64_t e1, int64_t c) {
    const int64_t t0 = e0 / c, t1 = (e1 - 1) / c;
    const uint64_t upto = t1 >= 63 ? ~(uint64_t)0 : (((uint64_t)1 << (t1 + 1)) - 1);
    return upto & ~((((uint64_t)1) << t0) - 1);
}

/* lines[q] = the first entry of position q0 + q's window in x, q < kc, for a geometry
 * whose windows all lie in x (pynn_conv_all_inside): window row a is lines[q] + a w c. */
static void window_starts(const float **lines, const pynn_conv_geom *g, int64_t q0,
                          int64_t kc) {
    const int64_t step = g->sw * g->c;
    window_walk walk = window_walk_at(g, q0);
    int64_t q = 0, e;
    for (;;) {                                    /* runs along an output row */
        const int64_t run = min_i64(g->ow - walk.oj, kc - q);
        for (e = 0; e < run; e++) lines[q++] = walk.p + e * step;   /* its positions */
        if (q == kc) break;
        walk.oj = g->ow - 1;                      /* the run ended its row: the next */
        window_walk_next(g, &walk);
    }
}

/* fold: dz is dy, overwritten block by block with act'(z) dy (act LINEAR or RELU) just
 * before the block's tiles read it, and db (may be NULL) gets its column sums: one chain
 * per filter over each chunk's positions in order, the chunks added in order (the
 * partials' tail).  Without fold dz is final and db untouched. */
static int filter_grad_tiles(const pynn_conv_geom *g_in, float *dw, float *partials, float *dz,
                             int64_t KC, int fold, const float *z, int act, float *db) {
    pynn_conv_geom g_padded;
    const pynn_conv_geom *g = g_in;
    int64_t xp_floats;
    const int64_t K = g->k, F = g->f, rows = g->rows;
    int64_t chunks, chunk_k, per_thread, lda, dz_offset, taps_offset;
    float *base, *zeros;
    void *owned;
    int mr, nv, nthreads, status;
    int from_lines, packed_dz, use_taps, inside;
    ktile_shape(K, F, &mr, &nv);
    /* The tiles read x's window rows in place (pynn_conv_ltile) when each tile lies in one
     * window row and the filters fill one tile's width: the block of cols rows, copied
     * for one pass over the filters, was a tenth of the filter gradient of a 32-filter
     * layer (VGG-style conv2: 291 -> 320 GFLOP/s, its first layer's K = 27: 112 -> 129).
     * With more filters the copy serves several passes and the copied block, contiguous,
     * is read as fast as x's lines: no gain measured (64 to 128 filters).  Five-row tiles
     * exist for this path only: 5x5 windows over 3 channels, 15 entries a row (the
     * AlexNet-style first layer: 218 -> 227 GFLOP/s). */
    from_lines = 0;
    if (F <= 16 * nv) {                  /* the widest mr dividing a window row */
        int m;
        for (m = nv == 3 ? 8 : 12; m >= PYNN_CONV_LTILE_MR_LO && !from_lines; m--)
            if (g->span % m == 0) {
                mr = m;
                from_lines = 1;
            }
    }
    chunk_k = pynn_gemm_ksplit_chunk_len(F, K, rows, &chunks);
    use_taps = !from_lines && !pynn_conv_all_inside(g) && g->kh * g->kw <= 64;
    /* The copied block's rows are an odd number of cache lines apart: a tile steps down
     * a column of the block, one row a step, and with K = 1152 (72 lines, the
     * AlexNet-style conv4) those steps fell in 8 of L1's 64 sets, missing L1 on every
     * pass over the filters (its filter gradient: 77 -> 82% of the GEMM peak). */
    lda = from_lines ? K : ((K + 15) / 16 | 1) * 16;
    /* With more than 64 filters the copied block's tiles read dz from a packed copy, each
     * panel of NR filters' rows contiguous: dz's own rows, F floats apart (8 cache lines
     * for 128 filters), put a tile's steps in few of L1's sets as the block's columns did
     * (AlexNet-style conv4: 82 -> 84% of the GEMM peak; at 64 filters the copy cost more
     * than it saved, 90 -> 88%). */
    packed_dz = !from_lines && F > 64;
    /* On a copied block, a layer whose windows reach into the padding skips, tile by
     * tile, the positions whose entries for the tile's rows are all padding (block_taps):
     * a sixth of a 7x7 image's under a 3x3 window (AlexNet-style conv3: 87 -> 100% of the
     * GEMM peak).  The tiles on x's lines do not: for a 32x32 image the check per step
     * cost more than the 2-4% of steps it saved (90 -> 85%). */
    /* the block of cols rows, or the edge windows' copies and the block's line pointers;
     * then the packed dz */
    per_thread = round_up(min_i64(chunk_k, KC) * (lda + (from_lines ? 2 * g->kh : 0)) + 16, 16);
    dz_offset = per_thread;
    if (packed_dz) per_thread += round_up(min_i64(chunk_k, KC) * round_up(F, 16 * nv), 16);
    taps_offset = per_thread;
    if (use_taps) per_thread += round_up(2 * min_i64(chunk_k, KC), 16);
    nthreads = pynn_threads_for(F * K * rows);
    if (nthreads > chunks) nthreads = (int)chunks;
    xp_floats = from_lines ? round_up(padded_floats(g_in), 16) : 0;
    status = pynn_gemm_workspace_acquire(
        &base, &owned,
        (size_t)(round_up(g->span, 16) + nthreads * per_thread + xp_floats));
    if (status != PYNN_OK) return status;
    zeros = base;
    memset(zeros, 0, (size_t)g->span * sizeof(float));
    if (xp_floats > 0) {                          /* a first layer: windows in a copy */
        g_padded = padded_geom(g_in, base + round_up(g->span, 16) + nthreads * per_thread);
        g = &g_padded;
    }
    /* every window wholly in x (or the copy): a tile's line is its window's first line
     * plus a fixed offset, so one pointer a position does (window_starts), not kh */
    inside = from_lines && pynn_conv_all_inside(g);
    {
        float *const thread_base = base + round_up(g->span, 16);
        const int64_t NR = 16 * nv;
        int64_t ch;
        /* chunks of positions: each partial dW by one thread, with that thread's block */
        PYNN_PARALLEL_FOR(nthreads,
            for (ch = 0; ch < chunks; ch++) {
#ifdef _OPENMP
                float *cb = thread_base + (nthreads > 1 ? omp_get_thread_num() : 0) * per_thread;
#else
                float *cb = thread_base;
#endif
                float *cpart = partials + ch * K * F;
                float *dbpart = partials + chunks * K * F + ch * F;
                /* the line pointers after the edge copies (from_lines) */
                const float **lines =
                    (const float **)(cb + round_up(min_i64(chunk_k, KC) * lda, 16));
                const int64_t p0 = ch * chunk_k, ck = min_i64(chunk_k, rows - p0);
                const int64_t n_row = (K + mr - 1) / mr, n_col = (F + NR - 1) / NR;
                int64_t pc, i0, j0, next_kc;
                if (fold && db != NULL) memset(dbpart, 0, (size_t)F * sizeof(float));
                for (pc = 0; pc < ck; pc += KC) {                /* K: positions, in order */
                    const int64_t kc = min_i64(KC, ck - pc);
                    if (fold && (act == PYNN_ACT_RELU || db != NULL))   /* dz, db: the block */
                        pynn_conv_dz_block_avx512(dz + (p0 + pc) * F,
                                                  z != NULL ? z + (p0 + pc) * F : NULL, kc,
                                                  F, act == PYNN_ACT_RELU,
                                                  db != NULL ? dbpart : NULL);
                    if (from_lines && inside) {                  /* the windows' first */
                        window_starts(lines, g, p0 + pc, kc);    /* lines, or each line */
                    } else if (from_lines) {                     /* of x (or a copy), or */
                        pynn_conv_lines_block(lines, cb, g, p0 + pc, kc, zeros);
                    } else {                                     /* a copied block */
                        memset(cb + kc * lda, 0, 16 * sizeof(float));  /* read past K, unused */
                        pynn_conv_cols_block_avx512(cb, lda, g, p0 + pc, kc);
                        if (packed_dz)
                            pynn_conv_pack_dz_avx512(cb + dz_offset, dz + (p0 + pc) * F, kc, F,
                                                     NR);
                    }
                    if (use_taps) block_taps((uint64_t *)(void *)(cb + taps_offset), g, p0 + pc, kc);
                    next_kc = min_i64(KC, max_i64(0, ck - pc - KC));
                    for (i0 = 0; i0 < K; i0 += mr)               /* M: window entries */
                        for (j0 = 0; j0 < F; j0 += NR) {         /* N: filters */
                            const float *b = dz + (p0 + pc) * F + j0;
                            float *c = cpart + i0 * F + j0;
                            const int64_t n = min_i64(NR, F - j0);
                            const char *pf;
                            int64_t pf_lines;
                            prefetch_share(&pf, &pf_lines, i0 / mr * n_col + j0 / NR,
                                           n_row * n_col, dz + (p0 + pc + KC) * F,
                                           fold && act == PYNN_ACT_RELU
                                               ? z + (p0 + pc + KC) * F : NULL,
                                           next_kc * F, kc);
                            if (from_lines) {
                                pynn_conv_ltile t;
                                const int64_t a = i0 / g->span;
                                t.lines = lines;
                                t.kh = inside ? 1 : g->kh;      /* lines a position */
                                t.a = inside ? 0 : a;
                                t.s0 = (inside ? a * g->w * g->c : 0) + i0 - a * g->span;
                                t.b = b;
                                t.ldb = F;
                                t.c = c;
                                t.ldc = F;
                                t.m = mr;                        /* mr divides span */
                                t.n = n;
                                t.kc = kc;
                                t.accumulate = pc > 0;
                                t.pf = pf;
                                t.pf_lines = pf_lines;
                                (void)pynn_conv_ltile_avx512(&t, mr, nv);
                            } else {
                                pynn_conv_ktile t;
                                t.a = cb + i0;
                                t.lda = lda;
                                t.b = packed_dz ? cb + dz_offset + j0 * kc : b;
                                t.ldb = packed_dz ? NR : F;
                                t.c = c;
                                t.ldc = F;
                                t.m = min_i64(mr, K - i0);
                                t.n = n;
                                t.kc = kc;
                                t.accumulate = pc > 0;
                                t.pf = pf;
                                t.pf_lines = pf_lines;
                                t.taps = use_taps ? (const uint64_t *)(void *)(cb + taps_offset)
                                                  : NULL;
                                t.tap_bits = entry_taps(i0, min_i64(i0 + mr, K), g->c);
                                (void)pynn_conv_ktile_avx512(&t, mr, nv);
                            }
                        }
                }
            });
    }
    pynn_gemm_workspace_release(base, owned);
    /* dW (K x F) and db: the chunk partials added in chunk order */
    pynn_gemm_sum_partials(dw, F, partials, chunks, K, F, 0);
    if (fold && db != NULL) pynn_gemm_sum_partials(db, F, partials + chunks * K * F, chunks, 1, F, 0);
    return PYNN_OK;
}
#endif

int pynn_conv_gemm_filter_grad_act(float *dw, float *db, float *partials, float *dy,
                                   const float *z, int act, const float *x, int64_t n,
                                   int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                                   int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                                   int64_t oh, int64_t ow, int64_t f) {
#ifdef PYNN_HAVE_X86_KERNELS
    const pynn_conv_geom g = pynn_conv_geom_of(x, n, h, w, c, kh, kw, sh, sw, pad_top, pad_left,
                                               oh, ow, f);
    const pynn_gemm_kernel_info *ki = conv_kernel();
    if (ki == NULL || ki->id != PYNN_LEVEL_AVX512 || f == 0 || g.k == 0 || g.rows == 0 ||
        (act != PYNN_ACT_LINEAR && act != PYNN_ACT_RELU) || (dw == NULL && db == NULL) ||
        dy == NULL || (act == PYNN_ACT_RELU && z == NULL))
        return PYNN_EINVAL;
    if (dw == NULL) {
        /* dz and db alone, in the chunks the filter gradient would use: db bitwise the
         * same whether or not dW is wanted (a frozen layer) */
        int64_t chunks, ch;
        const int64_t chunk_k = pynn_gemm_ksplit_chunk_len(f, g.k, g.rows, &chunks);
        float *const dbparts = partials + chunks * g.k * f;
        PYNN_PARALLEL_FOR(pynn_threads_for(g.rows * f) < chunks ? pynn_threads_for(g.rows * f)
                                                                 : (int)chunks,
            for (ch = 0; ch < chunks; ch++) {
                const int64_t p0 = ch * chunk_k, ck = min_i64(chunk_k, g.rows - p0);
                memset(dbparts + ch * f, 0, (size_t)f * sizeof(float));
                pynn_conv_dz_block_avx512(dy + p0 * f, z != NULL ? z + p0 * f : NULL, ck, f,
                                          act == PYNN_ACT_RELU, dbparts + ch * f);
            });
        pynn_gemm_sum_partials(db, f, dbparts, chunks, 1, f, 0);
        return PYNN_OK;
    }
    return filter_grad_tiles(&g, dw, partials, dy, ki->kc, 1, z, act, db);
#else
    (void)dw; (void)db; (void)partials; (void)dy; (void)z; (void)act; (void)x; (void)n;
    (void)h; (void)w; (void)c; (void)kh; (void)kw; (void)sh; (void)sw; (void)pad_top;
    (void)pad_left; (void)oh; (void)ow; (void)f;
    return PYNN_EINVAL;
#endif
}

int pynn_conv_gemm_filter_grad(float *dw, float *partials, const float *dz, const float *x,
                               int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                               int64_t pad_left, int64_t oh, int64_t ow, int64_t f) {
    const pynn_conv_geom g = pynn_conv_geom_of(x, n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh,
                                     ow, f);
    const pynn_gemm_kernel_info *ki = conv_kernel();
    const int64_t M = f, N = g.k, rows = g.rows;
    int64_t MR, NR, MC, KC, NC, chunks, chunk_k, a_floats, b_floats, per_thread;
    float *base, *zeros;
    void *owned;
    int nthreads, status;
    if (M == 0 || N == 0) return PYNN_OK;
    if (rows == 0) {
        memset(dw, 0, (size_t)(N * M) * sizeof(float));
        return PYNN_OK;
    }
    if (ki == NULL) return PYNN_EINVAL;
#ifdef PYNN_HAVE_X86_KERNELS
    if (ki->id == PYNN_LEVEL_AVX512)
        return filter_grad_tiles(&g, dw, partials, (float *)dz, ki->kc, 0, NULL, 0, NULL);
#endif
    MR = ki->mr; NR = ki->nr; MC = ki->mc; KC = ki->kc; NC = ki->nc;
    chunk_k = pynn_gemm_ksplit_chunk_len(M, N, rows, &chunks);
    a_floats = round_up(round_up(min_i64(M, MC), MR) * min_i64(chunk_k, KC), 16);
    b_floats = min_i64(chunk_k, KC) * round_up(min_i64(N, NC), NR);
    per_thread = round_up(a_floats + b_floats + g.span, 16);
    nthreads = pynn_threads_for(M * N * rows);
    if (nthreads > chunks) nthreads = (int)chunks;
    status = pynn_gemm_workspace_acquire(&base, &owned,
                                         (size_t)(round_up(g.span, 16) + nthreads * per_thread));
    if (status != PYNN_OK) return status;
    zeros = base;
    memset(zeros, 0, (size_t)g.span * sizeof(float));
    {
        const pynn_gemm_pack_a_fn pack_a = ki->pack_a ? ki->pack_a : pynn_gemm_pack_a_ref;
        float *const thread_base = base + round_up(g.span, 16);
        int64_t ch;
        /* chunks of positions: each partial dW^T by one thread, with that thread's buffers */
        PYNN_PARALLEL_FOR(nthreads,
            for (ch = 0; ch < chunks; ch++) {
#ifdef _OPENMP
                float *abuf = thread_base +
                              (nthreads > 1 ? omp_get_thread_num() : 0) * per_thread;
#else
                float *abuf = thread_base;
#endif
                float *bbuf = abuf + a_floats, *scratch = bbuf + b_floats;
                float *cpart = partials + ch * M * N;
                const int64_t p0 = ch * chunk_k, ck = min_i64(chunk_k, rows - p0);
                int64_t jc, pc, ic, is, js;
                for (jc = 0; jc < N; jc += NC) {                 /* N: panels of B (L3) */
                    const int64_t nc = min_i64(NC, N - jc), np = (nc + NR - 1) / NR;
                    for (pc = 0; pc < ck; pc += KC) {            /* K: positions, in order */
                        const int64_t kc = min_i64(KC, ck - pc);
                        const float beta = pc == 0 ? 0.0f : 1.0f;
                        pack_b_windows(bbuf, &g, p0 + pc, kc, jc, nc, NR, scratch, zeros);
                        for (ic = 0; ic < M; ic += MC) {         /* M: blocks of dz^T (L2) */
                            const int64_t mc = min_i64(MC, M - ic), mp = (mc + MR - 1) / MR;
                            for (is = 0; is < mp; is++)          /* M: micro-panels of dz^T */
                                pack_a(abuf + is * MR * kc, dz + (p0 + pc) * M + ic + is * MR, 1,
                                       M, min_i64(MR, mc - is * MR), kc, MR);
                            for (js = 0; js < np; js++)          /* N: micro-panels of B */
                                for (is = 0; is < mp; is++) {    /* M: tiles down dW^T */
                                    const int64_t i0 = ic + is * MR, j0 = jc + js * NR;
                                    ki->ukernel(cpart + i0 * N + j0, abuf + is * MR * kc,
                                                bbuf + js * NR * kc, min_i64(MR, M - i0),
                                                min_i64(NR, N - j0), kc, 1.0f, beta, N);
                                }
                        }
                    }
                }
            });
    }
    pynn_gemm_workspace_release(base, owned);
    /* dW (K x f): the chunk partials of dW^T (f x K) added in chunk order, transposed */
    pynn_gemm_sum_partials(dw, M, partials, chunks, M, N, 1);
    return PYNN_OK;
}
