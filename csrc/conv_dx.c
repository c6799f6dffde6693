/* conv_dx.c -- the input gradient of a convolution, written straight into dx: no cols
 * buffer, no col2im.
 *
 * The forward is z(img, i, j, f) = sum over (a, b, c) of x(img, i sh - pt + a,
 * j sw - pl + b, c) w(a, b, c, f), so
 *
 *   dx(img, r, q, c) = sum over the taps (a, b) and f of dz(img, i, j, f) w(a, b, c, f)
 *                      where r = i sh - pt + a and q = j sw - pl + b.
 *
 * At stride 1 that is the correlation of the zero-padded dz with the kernel turned by
 * 180 degrees, C and F swapped: a GEMM of M = the batch's input positions, K = KH KW F
 * and N = C, whose rows of A are F floats of dz read where they lie (implicit GEMM) and
 * whose B is the kernel rearranged (packed once per call into `work`).  At a larger
 * stride the positions split into phases (sub-pixel decomposition): an input row r sees
 * only the kernel rows a = (r + pt) mod sh + sh u, u = 0, 1, .., through dz row
 * i = i0 - u, i0 = (r + pt - a0) / sh; columns likewise.  Each phase (a0, b0) is a GEMM
 * of its own, over the taps of that phase only: no multiply by an inserted zero.  A
 * phase without taps (stride larger than the kernel) gives zeros.
 *
 * Tiles: the positions of a phase, in (img, r, q) order, are cut into tiles of MR rows,
 * and the channels into panels of NR; the tile kernels (conv_dx_internal.h) take a tile's
 * row descriptors and broadcast dz from where it lies, so A is never packed.  The tile
 * shape is a fixed rule on C and the dispatch level.
 *
 * Threads: the tiles (phase by phase, row tiles, then panels) are cut into one contiguous
 * range per thread.  Each element of dx is written by one tile on one thread, summed in
 * the order of conv_dx_internal.h, which does not depend on the thread count or on the
 * tile it falls in: the results are bitwise the same on 1 or N threads, and the same at
 * AVX2 and AVX-512 (fused multiply-adds); the portable level rounds each product, as the
 * GEMM's portable kernel does.
 *
 * 3 x 3 kernels at stride 1 over at least 16 channels and filters go to Winograd's
 * F(2x2, 3x3) instead (conv_winograd.c: the same correlation, 16 products per 2 x 2
 * positions and filter where this takes 36), with the same promises.
 */
#include <string.h>
#include "internal.h"
#include "conv_dx_internal.h"
#include "conv_winograd_internal.h"

/* The tile kernels of the level in use (dispatch.c), taken once per call. */
static const conv_dx_kernels *conv_dx_kernels_at(int level) {
    switch (level) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_conv_dx_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_conv_dx_avx2;
#endif
    default:
        return &pynn_conv_dx_generic;
    }
}

/* The tile shape for c channels: the fewest padded channels (panels times NR), the
 * table's order on a tie. */
static const conv_dx_shape *conv_dx_pick(const conv_dx_kernels *kt, int64_t c) {
    const conv_dx_shape *best = &kt->shapes[0];
    int64_t best_pad = -1;
    int s;
    for (s = 0; s < kt->nshapes; s++) {
        const int64_t nr = kt->lanes * kt->shapes[s].nv;
        const int64_t pad = (c + nr - 1) / nr * nr;
        if (best_pad < 0 || pad < best_pad) {
            best_pad = pad;
            best = &kt->shapes[s];
        }
    }
    return best;
}

static int64_t padded_channels(const conv_dx_kernels *kt, int64_t c) {
    const int64_t nr = kt->lanes * conv_dx_pick(kt, c)->nv;
    return (c + nr - 1) / nr * nr;
}

/* A few channels: the filters in the lanes (conv_dx_flane.h) when the channel panels
 * would hold more lanes (a rule on the shape alone, the same at every level). */
static int use_filter_lanes(int64_t c, int64_t f) {
    return c >= 1 && c <= CONV_DX_FL_MAX_C && c * ((f + 15) / 16 * 16) < 16 * f;
}

/* Floats of the packed kernel and the zero row, at any level (the caller's buffer is
 * sized once, the level may change between calls), plus 15 to align the start. */
int64_t pynn_conv2d_input_grad_work(int64_t kh, int64_t kw, int64_t c, int64_t f) {
    int64_t cpad;
    if (kh < 1 || kw < 1 || c < 0 || f < 0) return PYNN_EINVAL;
    cpad = padded_channels(&pynn_conv_dx_generic, c);
#ifdef PYNN_HAVE_X86_KERNELS
    {
        const int64_t c2 = padded_channels(&pynn_conv_dx_avx2, c);
        const int64_t c5 = padded_channels(&pynn_conv_dx_avx512, c);
        if (c2 > cpad) cpad = c2;
        if (c5 > cpad) cpad = c5;
    }
#endif
    {
        const int64_t fpad = (f + 15) / 16 * 16;
        const int64_t per_tap = use_filter_lanes(c, f) ? c * fpad : f * cpad;
        return kh * kw * per_tap + fpad + 15;
    }
}

/* The input rows or columns of one phase along one dimension: the first position
 * (r + pad) mod s == rho, how many there are below `size`, and the taps it sees. */
typedef struct {
    int64_t first, count, taps;
} phase_dim;

static phase_dim phase_along(int64_t rho, int64_t size, int64_t s, int64_t pad, int64_t k) {
    phase_dim d;
    d.first = ((rho - pad) % s + s) % s;
    d.count = d.first < size ? (size - 1 - d.first) / s + 1 : 0;
    d.taps = rho < k ? (k - rho + s - 1) / s : 0;
    return d;
}

typedef struct {
    float *dx;
    const float *dz, *wp, *zeros;
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f;
    int64_t mr, nr, panels;
    int filter_lanes;              /* conv_dx_flane.h's tiles: one panel of all c */
    int64_t panel_tap_floats;      /* packed floats of one tap in one panel */
    conv_dx_tile_fn tile;
} conv_dx_problem;

/* bp of phase (rh, rw): the phases before it, each tu tv f rows of all panels */
static int64_t phase_offset(const conv_dx_problem *pb, int64_t rh, int64_t rw) {
    int64_t before = 0, a;
    /* taps of the rows before rh, times all columns; then columns before rw in row rh */
    for (a = 0; a < rh; a++) before += phase_along(a, 1, pb->sh, 0, pb->kh).taps * pb->kw;
    for (a = 0; a < rw; a++)
        before += phase_along(rh, 1, pb->sh, 0, pb->kh).taps *
                  phase_along(a, 1, pb->sw, 0, pb->kw).taps;
    return before * pb->panel_tap_floats * pb->panels;
}

/* The kernel, phase by phase, panel by panel: wp[((u tv + v) f + e) NR + j] =
 * w(a0 + sh u, b0 + sw v, c0 + j, e), zero past the channels.  One kernel row a per
 * iteration: each packed float is written once. */
static void pack_kernel(const conv_dx_problem *pb, const float *wgt, float *wp) {
    const int64_t kh = pb->kh, kw = pb->kw, c = pb->c, f = pb->f, nr = pb->nr;
    int64_t a;
    PYNN_PARALLEL_FOR(pynn_threads_for(kh * kw * c * f),
        for (a = 0; a < kh; a++) {                    /* kernel rows */
            const int64_t rh = a % pb->sh, u = a / pb->sh;
            const int64_t tu = phase_along(rh, 1, pb->sh, 0, kh).taps;
            int64_t b, jp, e, j;
            for (b = 0; b < kw; b++) {                /* kernel columns */
                const int64_t rw = b % pb->sw, v = b / pb->sw;
                const int64_t tv = phase_along(rw, 1, pb->sw, 0, kw).taps;
                float *phase = wp + phase_offset(pb, rh, rw);
                const float *tap = wgt + (a * kw + b) * c * f;
                if (pb->filter_lanes) {               /* per tap: c rows of fpad filters */
                    const int64_t fpad = pb->panel_tap_floats / c;
                    float *dst = phase + (u * tv + v) * pb->panel_tap_floats;
                    for (j = 0; j < c; j++)           /* channels */
                        for (e = 0; e < fpad; e++)    /* filters */
                            dst[j * fpad + e] = e < f ? tap[j * f + e] : 0.0f;
                    continue;
                }
                for (jp = 0; jp < pb->panels; jp++) { /* channel panels */
                    float *dst = phase + (jp * tu * tv + u * tv + v) * f * nr;
                    const int64_t c0 = jp * nr;
                    for (e = 0; e < f; e++)           /* filters: rows of the panel */
                        for (j = 0; j < nr; j++)      /* channels */
                            dst[e * nr + j] = c0 + j < c ? tap[(c0 + j) * f + e] : 0.0f;
                }
            }
        });
}

/* The rows of row tile rt of a phase: positions rt mr .. rt mr + m - 1 of the phase's
 * (img, rr, qq) order, for panel 0.  One division for the tile; then each row steps on. */
static void tile_rows(conv_dx_rows *tr, const conv_dx_problem *pb, const phase_dim *dr,
                      const phase_dim *dc, int64_t rh, int64_t rw, int64_t rows, int64_t rt) {
    const int64_t r0 = rt * pb->mr;
    const int64_t i_first = (dr->first + pb->pt - rh) / pb->sh;   /* dz row of rr = 0 */
    const int64_t j_first = (dc->first + pb->pl - rw) / pb->sw;   /* dz column of qq = 0 */
    int64_t qq = r0 % dc->count, rr = r0 / dc->count % dr->count;
    int64_t img = r0 / dc->count / dr->count, i;
    tr->m = rows - r0 < pb->mr ? rows - r0 : pb->mr;
    for (i = 0; i < pb->mr; i++) {                    /* the tile's input positions */
        if (i >= tr->m) {                             /* no position: no tap */
            tr->c[i] = NULL;
            tr->i0[i] = -1;
            tr->j0[i] = 0;
            tr->off[i] = 0;
            continue;
        }
        tr->c[i] = pb->dx + ((img * pb->h + dr->first + rr * pb->sh) * pb->w + dc->first +
                             qq * pb->sw) * pb->c;
        tr->i0[i] = i_first + rr;
        tr->j0[i] = j_first + qq;
        tr->off[i] = ((img * pb->oh + tr->i0[i]) * pb->ow + tr->j0[i]) * pb->f;
        if (++qq == dc->count) {                      /* next position of the phase */
            qq = 0;
            if (++rr == dr->count) rr = 0, img++;
        }
    }
}

/* Tiles [t0, t1) of the global order (phases row-major, row tiles, panels). */
static void run_tiles(const conv_dx_problem *pb, int64_t t0, int64_t t1) {
    int64_t rh, rw, base = 0;
    for (rh = 0; rh < pb->sh; rh++) {                 /* phases: kernel row residue */
        const phase_dim dr = phase_along(rh, pb->h, pb->sh, pb->pt, pb->kh);
        for (rw = 0; rw < pb->sw; rw++) {             /* phases: kernel column residue */
            const phase_dim dc = phase_along(rw, pb->w, pb->sw, pb->pl, pb->kw);
            const int64_t rows = pb->n * dr.count * dc.count;
            const int64_t tiles = (rows + pb->mr - 1) / pb->mr * pb->panels;
            const int64_t panel_floats = dr.taps * dc.taps * pb->panel_tap_floats;
            conv_dx_phase ph;
            conv_dx_rows tr;
            const float *bp;
            int64_t t, end;
            if (base + tiles <= t0 || base >= t1) {
                base += tiles;
                continue;
            }
            ph.dz = pb->dz;
            ph.zeros = pb->zeros;
            ph.oh = pb->oh;
            ph.ow = pb->ow;
            ph.f = pb->f;
            ph.tu = dr.taps;
            ph.tv = dc.taps;
            bp = pb->wp + phase_offset(pb, rh, rw);
            t = t0 > base ? t0 - base : 0;
            end = t1 - base < tiles ? t1 - base : tiles;
            while (t < end) {                         /* row tiles */
                const int64_t rt = t / pb->panels;
                int64_t jp = t % pb->panels, i;
                tile_rows(&tr, pb, &dr, &dc, rh, rw, rows, rt);
                for (i = 0; i < tr.m; i++) tr.c[i] += jp * pb->nr;
                for (; jp < pb->panels && t < end; jp++, t++) {   /* its panels */
                    pb->tile(&tr, &ph, bp + jp * panel_floats,
                             pb->c - jp * pb->nr < pb->nr ? pb->c - jp * pb->nr : pb->nr);
                    for (i = 0; i < tr.m; i++) tr.c[i] += pb->nr;
                }
            }
            base += tiles;
        }
    }
}

int pynn_conv2d_input_grad(float *dx, const float *dz, const float *wgt, float *work,
                           int64_t work_size, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow, int64_t f) {
    const conv_dx_kernels *kt;
    const conv_dx_shape *shape;
    conv_dx_problem pb;
    int64_t tiles = 0, rh, rw, need;
    int nthreads;
    PYNN_RETURN_IF(n < 0 || h < 0 || w < 0 || c < 0 || kh < 1 || kw < 1 || sh < 1 || sw < 1 ||
                       pad_top < 0 || pad_left < 0 || oh < 0 || ow < 0 || f < 0,
                   PYNN_EINVAL);
    if (n * h * w * c == 0) return PYNN_OK;
    PYNN_RETURN_IF(dx == NULL, PYNN_EINVAL);
    if (n * oh * ow * f == 0) {                       /* no terms: dx is zero */
        memset(dx, 0, (size_t)(n * h * w * c) * sizeof(float));
        return PYNN_OK;
    }
    need = pynn_conv2d_input_grad_work(kh, kw, c, f);
    PYNN_RETURN_IF(dz == NULL || wgt == NULL || work == NULL || work_size < need, PYNN_EINVAL);
    if (pynn_conv_winograd_input_grad_supported(n, kh, kw, sh, sw, pad_top, pad_left, h, w, c, f))
        return pynn_conv_winograd_input_grad(dx, dz, wgt, n, h, w, c, pad_top, pad_left, oh, ow, f);

    kt = conv_dx_kernels_at(pynn_level());
    memset(&pb, 0, sizeof pb);
    pb.filter_lanes = use_filter_lanes(c, f);
    shape = pb.filter_lanes ? &kt->flane[c - 1] : conv_dx_pick(kt, c);
    pb.dx = dx;
    pb.dz = dz;
    pb.n = n, pb.h = h, pb.w = w, pb.c = c, pb.kh = kh, pb.kw = kw, pb.sh = sh, pb.sw = sw;
    pb.pt = pad_top, pb.pl = pad_left, pb.oh = oh, pb.ow = ow, pb.f = f;
    pb.mr = shape->mr;
    pb.nr = pb.filter_lanes ? c : kt->lanes * shape->nv;
    pb.panels = (c + pb.nr - 1) / pb.nr;
    pb.panel_tap_floats = pb.filter_lanes ? c * ((f + 15) / 16 * 16) : f * pb.nr;
    pb.tile = shape->tile;
    {
        /* the packed kernel at a 64-byte boundary, the zero row after it */
        float *wp = pynn_align64f(work);
        float *zeros = wp + kh * kw * pb.panel_tap_floats * pb.panels;
        memset(zeros, 0, (size_t)((f + 15) / 16 * 16) * sizeof(float));
        pb.wp = wp;
        pb.zeros = zeros;
        pack_kernel(&pb, wgt, wp);
    }
    for (rh = 0; rh < sh; rh++)
        for (rw = 0; rw < sw; rw++) {
            const int64_t rows = n * phase_along(rh, h, sh, pad_top, kh).count *
                                 phase_along(rw, w, sw, pad_left, kw).count;
            tiles += (rows + pb.mr - 1) / pb.mr * pb.panels;
        }
    nthreads = pynn_threads_for(n * h * w * c * kh * kw * f / (sh * sw));
    if (nthreads > tiles) nthreads = (int)tiles;
    {
        int64_t t;
        /* contiguous ranges of tiles, one per thread */
        PYNN_PARALLEL_FOR(nthreads,
            for (t = 0; t < nthreads; t++)
                run_tiles(&pb, tiles * t / nthreads, tiles * (t + 1) / nthreads););
    }
    return PYNN_OK;
}
