/* conv_gemm_internal.h -- the convolution's implicit GEMM (conv_gemm.c) and the packing
 * routines of each dispatch level it uses.  Not installed.
 *
 * The implicit GEMM is im2col + GEMM without the cols matrix: the GEMM's packing
 * routines read the windows straight from the NHWC image.  cols row g (output position
 * (img, i, j) = g in row-major order) holds the window of that position in (a, b, ch)
 * order (pynn.h), K = kh*kw*c entries; window row a is `span` = kw*c consecutive entries,
 * which for a window away from the left and right edges are kw*c consecutive floats of x.
 */
#ifndef PYNN_CONV_GEMM_INTERNAL_H
#define PYNN_CONV_GEMM_INTERNAL_H

#include <stdint.h>
#include <string.h>

/* The window geometry of pynn.h and the sizes derived from it. */
typedef struct {
    const float *x;
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f;
    int64_t k, span, rows;
} pynn_conv_geom;

static inline pynn_conv_geom pynn_conv_geom_of(const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                              int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt,
                              int64_t pl, int64_t oh, int64_t ow, int64_t f) {
    pynn_conv_geom g;
    g.x = x;
    g.n = n; g.h = h; g.w = w; g.c = c; g.kh = kh; g.kw = kw; g.sh = sh; g.sw = sw;
    g.pt = pt; g.pl = pl; g.oh = oh; g.ow = ow; g.f = f;
    g.span = kw * c;
    g.k = kh * g.span;
    g.rows = n * oh * ow;
    return g;
}

/* One output position: its image and the top-left corner of its window in x. */
typedef struct {
    int64_t img, r0, q0;
} pynn_conv_pos;

static inline pynn_conv_pos pynn_conv_pos_of(const pynn_conv_geom *g, int64_t pos) {
    pynn_conv_pos p;
    const int64_t per_img = g->oh * g->ow, rem = pos % per_img;
    p.img = pos / per_img;
    p.r0 = (rem / g->ow) * g->sh - g->pt;
    p.q0 = (rem % g->ow) * g->sw - g->pl;
    return p;
}

/* Window row a of position p as span floats: in x when the row lies in the image and the
 * window clear of the left and right edges; the zero line when the row is padding; else
 * scratch (span floats), filled with the row's values and zeros. */
static inline const float *pynn_conv_window_row(const pynn_conv_geom *g, const pynn_conv_pos *p, int64_t a,
                               float *scratch, const float *zeros) {
    const int64_t r = p->r0 + a;
    const float *xrow;
    int64_t b;
    if (r < 0 || r >= g->h) return zeros;
    xrow = g->x + (p->img * g->h + r) * g->w * g->c;
    if (p->q0 >= 0 && p->q0 + g->kw <= g->w) return xrow + p->q0 * g->c;
    for (b = 0; b < g->kw; b++) {                 /* window columns, at an edge */
        const int64_t q = p->q0 + b;
        if (q < 0 || q >= g->w)
            memset(scratch + b * g->c, 0, (size_t)g->c * sizeof(float));
        else
            memcpy(scratch + b * g->c, xrow + q * g->c, (size_t)g->c * sizeof(float));
    }
    return scratch;
}

/* 1 if p's whole window lies in the image (no padding). */
static inline int pynn_conv_pos_inside(const pynn_conv_geom *g, const pynn_conv_pos *p) {
    return p->r0 >= 0 && p->r0 + g->kh <= g->h && p->q0 >= 0 && p->q0 + g->kw <= g->w;
}

/* 1 if every window of g lies in the image (no padding reached): each window row is
 * then span consecutive floats of x. */
static inline int pynn_conv_all_inside(const pynn_conv_geom *g) {
    return g->pt == 0 && g->pl == 0 && (g->oh - 1) * g->sh + g->kh <= g->h &&
           (g->ow - 1) * g->sw + g->kw <= g->w;
}

/* The next output position after p (row-major: column, row, image). */
static inline void pynn_conv_pos_next(const pynn_conv_geom *g, pynn_conv_pos *p) {
    p->q0 += g->sw;
    if (p->q0 < g->ow * g->sw - g->pl) return;
    p->q0 = -g->pl;
    p->r0 += g->sh;
    if (p->r0 < g->oh * g->sh - g->pt) return;
    p->r0 = -g->pt;
    p->img++;
}


/* One tile of the forward without a packed A (AVX-512): rows i < m, columns j < n (n <=
 * nr), summed over the window entries [pc, pc + kc) that lie in x, in order:
 *   acc[i][j] = sum_p A(i, p) b[(p - pc)*nr + j]  over p = a*span + s with a in [a_lo,
 *   a_hi) and s in [s_lo, s_hi),  A(i, p) = rows[i][(a - a_lo)*ldx + s - s_lo]
 * (rows[i]: window row a_lo of the tile's row i from entry s_lo on, the next window rows
 * ldx floats apart -- x's rows; rows past m may repeat any row; the entries left out are
 * the padding's zeros).
 * Then t = acc, t = c_i + t when accumulate (the K blocks after the first), and on the
 * last block t = t + bias[j] (bias not NULL), where c_i = c + rowpos[i]*ldc is row i's
 * place in z; z = t is stored, and y = act(t) too (at y + rowpos[i]*ldc) for act
 * LINEAR, RELU and LEAKY_RELU when y is not NULL (other activations: the caller's).  The
 * roundings of gemm.c's micro-kernel and epilogue (alpha = 1, beta = 1): bitwise its
 * results for the same K blocks. */
typedef struct {
    const float *const *rows;    /* per row of the tile, its first entry in x */
    int64_t ldx, span, pc, kc;
    int64_t a_lo, a_hi, s_lo, s_hi;   /* the window rows and entries in x */
    const float *b;
    const int64_t *rowpos;       /* row i of the tile is row rowpos[i] of z and y */
    float *c;
    int64_t ldc, m, n;
    int accumulate;
    const float *bias;
    float *y;
    int act;
    float alpha;
} pynn_conv_tile;

/* One tile of a product with neither operand packed (AVX-512; the filter gradient on a
 * block of cols rows):  rows i < m, columns j < n (n <= 16 nv) of c (row stride ldc),
 *   acc[i][j] = sum_{p < kc} a[p*lda + i] b[p*ldb + j]   (in increasing p, one FMA chain),
 * then c = acc, or c = c + acc when accumulate: gemm.c's micro-kernel with alpha = 1 and
 * beta = 0 or 1, bitwise.  a[p*lda + i] for m <= i < mr must be readable (not used). */
typedef struct {
    const float *a, *b;
    int64_t lda, ldb;
    float *c;
    int64_t ldc, m, n, kc;
    int accumulate;
    /* a hint, no effect on the results: cache lines pf[0 .. pf_lines) (pf_lines <= 2 kc)
     * to prefetch into L2 during the tile, lines p and kc + p at step p (the next block's
     * dy and z, read from memory while this block's FMAs run) */
    const char *pf;
    int64_t pf_lines;
    /* NULL, or per step p the window taps (bit a*kw + b) of position p that lie in x: a
     * step none of whose tap_bits (the taps of the tile's rows) does is skipped -- its
     * entries are the padding's zeros, and leaving out exact zero terms changes no bit */
    const uint64_t *taps;
    uint64_t tap_bits;
} pynn_conv_ktile;

/* The same product with A read from window rows of x instead of a block of cols rows:
 *   acc[i][j] = sum_{p < kc} lines[p*kh + a][s0 + i] b[p*ldb + j]
 * (window row a, entries s0 .. s0 + mr of it: the tile's rows must lie in one window row,
 * mr dividing span), stored as pynn_conv_ktile's: the same FMA chains, bitwise. */
typedef struct {
    const float *const *lines;   /* per position of the block, kh window rows */
    int64_t kh, a, s0;
    const float *b;
    int64_t ldb;
    float *c;
    int64_t ldc, m, n, kc;
    int accumulate;
    const char *pf;              /* as pynn_conv_ktile's */
    int64_t pf_lines;
} pynn_conv_ltile;

#ifdef PYNN_HAVE_X86_KERNELS
/* The tile shapes pynn_conv_ktile_avx512 has: mr in [lo, 12] for nv = 1 and 2, mr in
 * [lo, 8] for nv = 3 (lo = PYNN_CONV_KTILE_MR_LO); it returns PYNN_EINVAL for others. */
#define PYNN_CONV_KTILE_MR_LO 6
int pynn_conv_ktile_avx512(const pynn_conv_ktile *t, int mr, int nv);
/* pynn_conv_ltile_avx512's shapes: those of the ktiles and mr = 5 (PYNN_CONV_LTILE_MR_LO). */
#define PYNN_CONV_LTILE_MR_LO 5
int pynn_conv_ltile_avx512(const pynn_conv_ltile *t, int mr, int nv);
/* lines[q*kh + a] = window row a of position q0 + q (span floats), for q < kc: in x for a
 * window inside the image, the zero line for a row in the padding, else a copy with zeros
 * in scratch (kc*K floats at most), the copies packed one after the other so that they
 * share cache lines; zeros: span zeros. */
void pynn_conv_lines_block(const float **lines, float *scratch, const pynn_conv_geom *g,
                           int64_t q0, int64_t kc, const float *zeros);
/* dz[q*f + j] = (relu ? (z[q*f + j] > 0 ? dz : 0) : dz) for q < kc, j < f (dz holds dy:
 * act_elementwise.h's relu derivative), and db[j] += dz[q*f + j] for q in order when db
 * is not NULL. */
void pynn_conv_dz_block_avx512(float *dz, const float *z, int64_t kc, int64_t f, int relu,
                               float *db);
/* bp[js*kc*nr + q*nr + j] = dz[q*f + js*nr + j] for q < kc, j < min(nr, f - js*nr): the
 * block's dz rows cut into panels of nr filters, each panel's rows contiguous. */
void pynn_conv_pack_dz_avx512(float *bp, const float *dz, int64_t kc, int64_t f, int64_t nr);
/* cb[q*ld + e] = cols row q0 + q, entry e, for q < kc (im2col of a block of positions),
 * zeros in entries [K, ld) (ld >= K). */
void pynn_conv_cols_block_avx512(float *cb, int64_t ld, const pynn_conv_geom *g, int64_t q0,
                                 int64_t kc);
/* mr x nr = 12 x 32 and 8 x 48 (conv_gemm_avx512.c). */
void pynn_conv_tile_avx512_12x32(const pynn_conv_tile *t);
void pynn_conv_tile_avx512_8x48(const pynn_conv_tile *t);
/* 12 x 32 for a whole 3 x 3 window over 3 (1) channels, the tile's a_lo = 0, a_hi = 3,
 * s_lo = 0, s_hi = span = 9 (3), one K block (pc = 0, kc = 27 (9)): the same arithmetic
 * as pynn_conv_tile_avx512_12x32, bitwise, with the window's 27 (9) steps unrolled (a
 * first layer's short K, where the generic tile's per-window-row set-up costs ~10%). */
void pynn_conv_tile_avx512_12x32_3x3x3(const pynn_conv_tile *t);
void pynn_conv_tile_avx512_12x32_3x3x1(const pynn_conv_tile *t);
#endif

/* The convolution's forward and filter gradient by the implicit GEMM (conv_gemm.c); the
 * argument conventions of pynn_conv2d_forward (pynn.h), checked by the caller.
 *   forward: z (n*oh*ow x f) = cols wgt + bias, y = act(z) (softmax: after the product);
 *   filter gradient: dw (kh*kw*c x f) = cols^T dz, through `partials`, which holds
 *     pynn_conv_gemm_filter_partials(...) floats. */
int pynn_conv_gemm_forward(float *z, float *y, const float *x, const float *wgt,
                           const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                           float alpha);
int64_t pynn_conv_gemm_filter_partials(int64_t rows, int64_t k, int64_t f);
/* The filter gradient with the activation's backward and the bias gradient folded into
 * its pass over the positions (the AVX-512 level only; act LINEAR or RELU): dy is
 * overwritten with dz = act'(z) dy one block of positions at a time, just before that
 * block's tiles read it from cache, and db (f floats, may be NULL) receives the column
 * sums of dz, one chain per filter over each K-split chunk's positions in order, the
 * chunks added in order.  dw as pynn_conv_gemm_filter_grad; when it is NULL (a frozen
 * layer) only dz and db are made, with the same chunks, so db has the same bits either
 * way.  PYNN_EINVAL, nothing changed, where it does not apply (or neither dw nor db is
 * wanted): the caller then makes the passes one by one. */
int pynn_conv_gemm_filter_grad_act(float *dw, float *db, float *partials, float *dy,
                                   const float *z, int act, const float *x, int64_t n,
                                   int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                                   int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                                   int64_t oh, int64_t ow, int64_t f);
int pynn_conv_gemm_filter_grad(float *dw, float *partials, const float *dz, const float *x,
                               int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                               int64_t pad_left, int64_t oh, int64_t ow, int64_t f);

#endif /* PYNN_CONV_GEMM_INTERNAL_H */
