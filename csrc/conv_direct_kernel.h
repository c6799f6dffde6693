/* conv_direct_kernel.h -- the arithmetic loops of the direct convolution, written once
 * and compiled once per instruction set: conv_direct_generic.c, conv_direct_avx2.c and
 * conv_direct_avx512.c each define CONV_DIRECT_KERNELS, the name of their table
 * (conv_direct_internal.h), and include this file under their own -m flags.
 *
 * The vectors are GCC/Clang vector extensions, not intrinsics: the same source becomes
 * SSE2, AVX2 or AVX-512 code (the one-channel route's in registers of the set's own
 * width; only its AVX-512 expansion, which moves values and computes nothing, uses
 * intrinsics, for masked loads).  Every instruction set does the same operations in the
 * same order (lanes are independent positions or filters, -ffp-contract=off), so all
 * give bitwise the same results.  Which loop runs when, and why: conv_direct.c.
 */
#ifndef CONV_DIRECT_KERNELS
#error "conv_direct_kernel.h: define CONV_DIRECT_KERNELS (the table's name) first"
#endif

#include <string.h>
#include "internal.h"
#include "act_elementwise.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "conv_direct_internal.h"

/* CONV_DIRECT_LANES floats as one value (a ymm register with AVX, two xmm in the
 * baseline); loads and stores through memcpy. */
typedef float conv_vec __attribute__((vector_size(32)));
static inline conv_vec vload(const float *p) { conv_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, conv_vec v) { memcpy(p, &v, sizeof v); }


/* z[j, 0:f] for the ow positions of output row i of image ximg (zrow: ow x f). */
static void forward_row(float *zrow, const float *ximg, const float *wp, const float *bias,
                        int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int64_t pad_top, int64_t pad_left, int64_t i, int64_t ow,
                        int64_t f, int64_t fp) {
    const int64_t k = kh * kw * c;
    float patch[CONV_DIRECT_MAX_K * CONV_DIRECT_JB];
    int64_t j0;
    for (j0 = 0; j0 < ow; j0 += CONV_DIRECT_JB) {  /* blocks of output columns */
        const int64_t jn = ow - j0 < CONV_DIRECT_JB ? ow - j0 : CONV_DIRECT_JB;
        const int64_t jp = (jn + 2 * CONV_DIRECT_LANES - 1) / (2 * CONV_DIRECT_LANES) * (2 * CONV_DIRECT_LANES);
        int64_t f0, jv;
        build_patch(patch, CONV_DIRECT_JB, ximg, h, w, c, kh, kw, sh, sw,
                    pad_top, pad_left, i, j0, jn, jp);
        for (f0 = 0; f0 < fp; f0 += CONV_DIRECT_FT)        /* filter tiles */
            for (jv = 0; jv < jp; jv += 2 * CONV_DIRECT_LANES) { /* pairs of position vectors */
                float acc[CONV_DIRECT_FT][2 * CONV_DIRECT_LANES];
                conv_vec v0 = {0}, v1 = {0}, v2 = {0}, v3 = {0};
                conv_vec u0 = {0}, u1 = {0}, u2 = {0}, u3 = {0};
                int64_t p, e, l;
                for (p = 0; p < k; p++) {            /* window entries, in order */
                    const conv_vec pv = vload(patch + p * CONV_DIRECT_JB + jv);
                    const conv_vec pu = vload(patch + p * CONV_DIRECT_JB + jv + CONV_DIRECT_LANES);
                    const float *wk = wp + p * fp + f0;
                    v0 += wk[0] * pv;
                    u0 += wk[0] * pu;
                    v1 += wk[1] * pv;
                    u1 += wk[1] * pu;
                    v2 += wk[2] * pv;
                    u2 += wk[2] * pu;
                    v3 += wk[3] * pv;
                    u3 += wk[3] * pu;
                }
                vstore(acc[0], v0);
                vstore(acc[1], v1);
                vstore(acc[2], v2);
                vstore(acc[3], v3);
                vstore(acc[0] + CONV_DIRECT_LANES, u0);
                vstore(acc[1] + CONV_DIRECT_LANES, u1);
                vstore(acc[2] + CONV_DIRECT_LANES, u2);
                vstore(acc[3] + CONV_DIRECT_LANES, u3);
                for (l = 0; l < 2 * CONV_DIRECT_LANES && jv + l < jn; l++) {
                    float *zo = zrow + (j0 + jv + l) * f;
                    for (e = 0; e < CONV_DIRECT_FT && f0 + e < f; e++)
                        zo[f0 + e] = bias != NULL ? acc[e][l] + bias[f0 + e] : acc[e][l];
                }
            }
    }
}

/* accw[(p fp + e) LANES + l] += sum over the positions v = l, l + LANES, .. < len (in
 * order) of patch[p][v] dzt[e][v]; accb likewise with dzt alone.  Rows of patch and dzt
 * are CONV_DIRECT_BUF apart; len is a multiple of LANES. */
static void accumulate_filter_grad(float *restrict accw, float *restrict accb,
                                   const float *restrict patch, const float *restrict dzt,
                                   int64_t len, int64_t k, int64_t fp) {
    int64_t p, f0, e, jv;
    for (e = 0; e < fp; e++) {                            /* bias: filters */
        conv_vec acc = vload(accb + e * CONV_DIRECT_LANES);
        for (jv = 0; jv < len; jv += CONV_DIRECT_LANES)
            acc += vload(dzt + e * CONV_DIRECT_BUF + jv);
        vstore(accb + e * CONV_DIRECT_LANES, acc);
    }
    for (p = 0; p + 1 < k; p += 2)                        /* pairs of window entries */
        for (f0 = 0; f0 < fp; f0 += CONV_DIRECT_FT) {     /* filter tiles */
            float *a = accw + (p * fp + f0) * CONV_DIRECT_LANES;
            float *b = accw + ((p + 1) * fp + f0) * CONV_DIRECT_LANES;
            const float *d = dzt + f0 * CONV_DIRECT_BUF;
            conv_vec v0 = vload(a), v1 = vload(a + CONV_DIRECT_LANES);
            conv_vec v2 = vload(a + 2 * CONV_DIRECT_LANES), v3 = vload(a + 3 * CONV_DIRECT_LANES);
            conv_vec u0 = vload(b), u1 = vload(b + CONV_DIRECT_LANES);
            conv_vec u2 = vload(b + 2 * CONV_DIRECT_LANES), u3 = vload(b + 3 * CONV_DIRECT_LANES);
            for (jv = 0; jv < len; jv += CONV_DIRECT_LANES) {   /* positions, in order */
                const conv_vec pv = vload(patch + p * CONV_DIRECT_BUF + jv);
                const conv_vec pu = vload(patch + (p + 1) * CONV_DIRECT_BUF + jv);
                const conv_vec d0 = vload(d + jv), d1 = vload(d + CONV_DIRECT_BUF + jv);
                const conv_vec d2 = vload(d + 2 * CONV_DIRECT_BUF + jv);
                const conv_vec d3 = vload(d + 3 * CONV_DIRECT_BUF + jv);
                v0 += pv * d0;
                u0 += pu * d0;
                v1 += pv * d1;
                u1 += pu * d1;
                v2 += pv * d2;
                u2 += pu * d2;
                v3 += pv * d3;
                u3 += pu * d3;
            }
            vstore(a, v0);
            vstore(a + CONV_DIRECT_LANES, v1);
            vstore(a + 2 * CONV_DIRECT_LANES, v2);
            vstore(a + 3 * CONV_DIRECT_LANES, v3);
            vstore(b, u0);
            vstore(b + CONV_DIRECT_LANES, u1);
            vstore(b + 2 * CONV_DIRECT_LANES, u2);
            vstore(b + 3 * CONV_DIRECT_LANES, u3);
        }
    for (; p < k; p++)                                    /* the last window entry */
        for (f0 = 0; f0 < fp; f0 += CONV_DIRECT_FT) {     /* filter tiles */
            float *a = accw + (p * fp + f0) * CONV_DIRECT_LANES;
            const float *d = dzt + f0 * CONV_DIRECT_BUF;
            conv_vec v0 = vload(a), v1 = vload(a + CONV_DIRECT_LANES);
            conv_vec v2 = vload(a + 2 * CONV_DIRECT_LANES), v3 = vload(a + 3 * CONV_DIRECT_LANES);
            for (jv = 0; jv < len; jv += CONV_DIRECT_LANES) {   /* positions, in order */
                const conv_vec pv = vload(patch + p * CONV_DIRECT_BUF + jv);
                v0 += pv * vload(d + jv);
                v1 += pv * vload(d + CONV_DIRECT_BUF + jv);
                v2 += pv * vload(d + 2 * CONV_DIRECT_BUF + jv);
                v3 += pv * vload(d + 3 * CONV_DIRECT_BUF + jv);
            }
            vstore(a, v0);
            vstore(a + CONV_DIRECT_LANES, v1);
            vstore(a + 2 * CONV_DIRECT_LANES, v2);
            vstore(a + 3 * CONV_DIRECT_LANES, v3);
        }
}

/* ---- the one-channel route ----
 *
 * Vectors of the width the instruction set has (FL_NL floats: a zmm, a ymm, an xmm), so
 * that every value lives in registers; a logical vector of conv_direct.c (FL_LANES
 * lanes) is FL_NS of them.  Each lane is computed by the same operations in the same
 * order whatever FL_NL is, so every level gives the same bits.  Expanded input rows lie
 * FL_MAX_XL floats apart and the kernel's lane patterns FL_WSTRIDE floats apart whatever
 * the shape, so that in the unrolled loops below every operand is a register plus a
 * constant. */
#if defined(__AVX512F__)
#define FL_NL 16
#elif defined(__AVX__)
#define FL_NL 8
#else
#define FL_NL 4
#endif
#define FL_NS (FL_LANES / FL_NL)
#define FL_XS FL_MAX_XL
typedef float fl_vec __attribute__((vector_size(FL_NL * sizeof(float))));
typedef int32_t fl_ivec __attribute__((vector_size(FL_NL * sizeof(int32_t))));
static inline fl_vec fload(const float *p) { fl_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void fstore(float *p, fl_vec v) { memcpy(p, &v, sizeof v); }
/* v in every lane: v * 1 (exact, and a plain broadcast; 0 + v would turn -0 into +0) */
static inline fl_vec fsplat(float v) { return ((fl_vec){0} + 1.0f) * v; }
/* v > 0 ? v : 0 lane by lane (pynn_act_span's ReLU: NaN and -0 give +0) */
static inline fl_vec frelu(fl_vec v) {
    fl_ivec bits;
    memcpy(&bits, &v, sizeof v);
    bits &= (v > (fl_vec){0});
    memcpy(&v, &bits, sizeof v);
    return v;
}
/* dy where z > 0, else 0 (pynn_act_backward_span's ReLU) */
static inline fl_vec frelu_grad(fl_vec z, fl_vec dy) {
    fl_ivec bits;
    memcpy(&bits, &dy, sizeof dy);
    bits &= (z > (fl_vec){0});
    memcpy(&dy, &bits, sizeof dy);
    return dy;
}

/* xi[rr * FL_XS + q f + ff] = x[r_lo + rr][q - pad_left] for q < ow + kw - 1 (0 outside
 * the image), then 0 up to g->xl; rows rr < nrows.  Stores are whole vectors: zeros
 * first, each value's copies overwriting the previous value's spill, the trailing zeros
 * last (xi has FL_NL floats of slack past its last row).  Where f divides the vector,
 * one permute of FL_NL consecutive values of x fills a vector with FL_NL / f of them
 * (while those FL_NL floats are inside x, which ends at x_end).  FC: f, when a
 * constant (else 0). */
static inline __attribute__((always_inline)) void
fl_expand(float *restrict xi, const float *restrict ximg, const float *x_end,
          const fl_geometry *g, int64_t r_lo, int64_t nrows, const int FC) {
    const int64_t xl = g->xl, f = FC ? FC : g->f, w = g->w, pad_left = g->pad_left;
    const int64_t nq = g->ow + g->kw - 1;
    const int64_t q_lo = pad_left < nq ? pad_left : nq;              /* first column in x */
    const int64_t q_hi = w + pad_left < nq ? w + pad_left : nq;      /* past the last */
    const int64_t per = f < FL_NL && FL_NL % f == 0 && FL_NL >= 8 ? FL_NL / f : 1;
#if !defined(__AVX512F__)
    /* values of a row that go in whole permuted vectors, and the last vector's start:
     * its FL_NL floats must lie inside x (for every row but the batch's last few) */
    const int64_t grouped = per > 1 ? (q_hi - q_lo) / per * per : 0;
    const int64_t last_load = grouped > 0 ? grouped - per + FL_NL : 0;
#endif
    const int64_t hi_zero = q_hi * f < xl ? q_hi * f : xl;          /* the trailing zeros */
    const fl_vec zero = {0};
    fl_ivec spread;                                       /* lane e takes value e / f */
    int64_t rr, q, e;
    for (e = 0; e < FL_NL; e++) spread[e] = (int32_t)(e / f);
    for (rr = 0; rr < nrows; rr++) {                      /* input rows */
        const int64_t r = r_lo + rr;
        float *restrict d = xi + rr * FL_XS;
        float *restrict dq = d + q_lo * f;
        const float *restrict xr;
        if (r < 0 || r >= g->h) {
            for (e = 0; e < xl; e += FL_NL) fstore(d + e, zero);
            continue;
        }
        xr = ximg + r * w - pad_left + q_lo;             /* column q_lo */
        for (e = 0; e < q_lo * f; e += FL_NL) fstore(d + e, zero);  /* left padding */
        q = 0;                                            /* values from column q_lo */
#if defined(__AVX512F__)
        /* 16 values a masked load (nothing read past the row), FL_NL / f of them a
         * permute; values past the row load as 0, which is what those columns hold */
        if (per > 1) {
            for (; q < q_hi - q_lo; q += 16) {            /* columns of x, 16 at a time */
                const int64_t left = q_hi - q_lo - q;
                const __m512 v = _mm512_maskz_loadu_ps(
                    left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u), xr + q);
                __m512i idx;
                int64_t k;
                memcpy(&idx, &spread, sizeof idx);
#pragma GCC unroll 8
                for (k = 0; k < 16 && k < left; k += per) {  /* vectors of the 16 */
                    fstore(dq + (q + k) * f, _mm512_permutexvar_ps(idx, v));
                    idx = _mm512_add_epi32(idx, _mm512_set1_epi32((int)per));
                }
            }
        }
#else
        if (grouped > 0 && xr + last_load <= x_end)      /* FL_NL / f values a vector */
            for (; q < grouped; q += per)
                fstore(dq + q * f, __builtin_shuffle(fload(xr + q), spread));
#endif
        if (f <= FL_NL) {
#pragma GCC unroll 4
            for (; q < q_hi - q_lo; q++) fstore(dq + q * f, fsplat(xr[q]));
        } else {
            for (; q < q_hi - q_lo; q++) {                /* columns of x */
                const fl_vec v = fsplat(xr[q]);
                for (e = 0; e < f; e += FL_NL) fstore(dq + q * f + e, v);
            }
        }
        for (e = hi_zero; e < xl; e += FL_NL) fstore(d + e, zero);  /* the rest */
    }
}

/* How an output row's z reaches y: stored by the caller afterwards (act_span), or here. */
enum { FL_Y_LATER = 0, FL_Y_COPY = 1, FL_Y_RELU = 2 };

/* The first n < FL_NL lanes of z (and of y per ymode) stored: a row's last lanes. */
static __attribute__((noinline)) void fl_store_part(float *zo, float *yo, int ymode, fl_vec z,
                                                    int64_t n) {
    float zt[FL_NL], yt[FL_NL];
    int64_t e;
    fstore(zt, z);
    fstore(yt, ymode == FL_Y_RELU ? frelu(z) : z);
    for (e = 0; e < n; e++) zo[e] = zt[e];
    if (ymode != FL_Y_LATER)
        for (e = 0; e < n; e++) yo[e] = yt[e];
}

/* The NB vectors v0 .. v0+NB-1 of NR output rows: z = sum over (a, b), in Keras order, of
 * x * w, then + bias; of each row the first `len` floats from lane v0 FL_NL on are
 * stored (to z, and per ymode to y), rows `span` floats apart from zrow / yrow.  xr: the
 * first row's first expanded input row (row r's is rstep floats further).  voff[v]: where
 * vector v's lanes start in a pattern of wpat, (v FL_NL) mod (period FL_LANES).  P1: the
 * pattern is one logical vector (period 1) and v0 a multiple of FL_NS.  wreg: the
 * kernel's vectors, when the same for every vector (WR: P1 and f divides FL_NL). */
static inline __attribute__((always_inline)) void
fl_forward_block(float *zrow, float *yrow, int ymode, const float *xr, const float *wpat,
                 const float *bpat, const fl_vec *wreg, const int64_t *voff, int64_t f,
                 int64_t span, int64_t rstep, int64_t v0, int64_t len, const int NR,
                 const int NB, const int KH, const int KW, const int P1, const int WR) {
    fl_vec acc[3][4];
    int64_t off[4];                                       /* each vector's lanes in wpat */
    int r, t, a, b;
#pragma GCC unroll 4
    for (t = 0; t < NB; t++) off[t] = P1 ? t * FL_NL % FL_LANES : voff[v0 + t];
#pragma GCC unroll 3
    for (r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (t = 0; t < NB; t++) acc[r][t] = (fl_vec){0};
    xr += v0 * FL_NL;
#pragma GCC unroll 5
    for (a = 0; a < KH; a++)                              /* window rows, in order */
#pragma GCC unroll 5
        for (b = 0; b < KW; b++)                          /* window columns, in order */
#pragma GCC unroll 4
            for (t = 0; t < NB; t++) {                    /* vectors */
                const fl_vec wv = WR ? wreg[a * KW + b]
                                     : fload(wpat + (a * KW + b) * FL_WSTRIDE + off[t]);
#pragma GCC unroll 3
                for (r = 0; r < NR; r++)                  /* rows */
                    acc[r][t] += fload(xr + r * rstep + a * FL_XS + b * f + t * FL_NL) * wv;
            }
#pragma GCC unroll 4
    for (t = 0; t < NB; t++) {
        const fl_vec bv = bpat != NULL ? fload(bpat + off[t]) : (fl_vec){0};
#pragma GCC unroll 3
        for (r = 0; r < NR; r++) {
            const int64_t at = r * span + (v0 + t) * FL_NL;
            if (bpat != NULL) acc[r][t] += bv;
            if ((t + 1) * FL_NL <= len) {
                fstore(zrow + at, acc[r][t]);
                if (ymode != FL_Y_LATER)
                    fstore(yrow + at, ymode == FL_Y_RELU ? frelu(acc[r][t]) : acc[r][t]);
            } else if (t * FL_NL < len) {                 /* the row's last lanes */
                fl_store_part(zrow + at, yrow + at, ymode, acc[r][t], len - t * FL_NL);
            }
        }
    }
}

/* Output rows ii0 .. ii0+NR-1, all their vectors: 4 at a time, then the last 1 to 3. */
static inline __attribute__((always_inline)) void
fl_forward_band(float *z, float *y, int ymode, const float *xi, const float *wpat,
                const float *bpat, const fl_vec *wreg, const int64_t *voff,
                const fl_geometry *g, int64_t ii0, const int NR, const int KH, const int KW,
                const int P1, const int WR, const int FC) {
    const int64_t f = FC ? FC : g->f, span = g->ow * f, nv = (span + FL_NL - 1) / FL_NL;
    const int64_t rstep = g->sh * FL_XS;
    const float *xr = xi + ii0 * rstep;
    float *zrow = z + ii0 * span, *yrow = y + ii0 * span;
    int64_t v0;
#define FL_BLOCK(NB)                                                                        \
    fl_forward_block(zrow, yrow, ymode, xr, wpat, bpat, wreg, voff, f, span, rstep, v0,     \
                     span - v0 * FL_NL, NR, NB, KH, KW, P1, WR)
    for (v0 = 0; v0 + 4 <= nv; v0 += 4) FL_BLOCK(4);     /* vectors, 4 at a time */
    switch (nv - v0) {                                    /* the last 1 to 3 */
    case 3: FL_BLOCK(3); break;
    case 2: FL_BLOCK(2); break;
    case 1: FL_BLOCK(1); break;
    default: break;
    }
#undef FL_BLOCK
}

/* The nr output rows of a unit from its expanded rows xi; z, y: the unit's first row.
 * Rows in bands, vectors in blocks, of as many as keep 4 to 12 sums in registers beside
 * the kernel's vectors (WR) and the operands: enough to hide the adds' latency. */
#if FL_NL == 16
#define FL_REGS 32
#else
#define FL_REGS 16
#endif

static inline __attribute__((always_inline)) void
fl_forward_rows(float *z, float *y, int ymode, const float *xi, const float *wpat,
                const float *bpat, const fl_geometry *g, int64_t nr, const int KH,
                const int KW, const int P1, const int WR, const int FC) {
    const int64_t nv = (g->ow * g->f + FL_NL - 1) / FL_NL, pl = g->period * FL_LANES;
    const int sums = FL_REGS - (WR ? KH * KW : 1) - 2;   /* registers left for the sums */
    /* rows per band (4 vectors a block); a kernel read from memory in a 5x5 window stays
     * one row a band: GCC hoists its loads, and 25 of them beside 8 or 12 sums spill */
    const int band = !WR && KH * KW > 9 ? 1 : sums >= 12 ? 3 : sums >= 8 ? 2 : 1;
    fl_vec wreg[WR ? KH * KW : 1];
    int64_t voff[FL_MAX_E / FL_NL];
    int64_t ii = 0, p, v, o = 0;
    if (WR)
        for (p = 0; p < KH * KW; p++) wreg[p] = fload(wpat + p * FL_WSTRIDE);
    for (v = 0; v < nv; v++) {                            /* (v FL_NL) mod pl, counted up */
        voff[v] = o;
        o = o + FL_NL < pl ? o + FL_NL : o + FL_NL - pl;
    }
#define FL_BAND(NR) fl_forward_band(z, y, ymode, xi, wpat, bpat, wreg, voff, g, ii, NR, KH, KW, P1, WR, FC)
    if (band >= 3)
        for (; ii + 3 <= nr; ii += 3) FL_BAND(3);
    if (band >= 2)
        for (; ii + 2 <= nr; ii += 2) FL_BAND(2);
    for (; ii < nr; ii++) FL_BAND(1);
#undef FL_BAND
}

static void fl_forward_unit(float *z, float *y, const float *x, const float *wpat,
                            const float *bpat, const fl_geometry *g, int64_t u) {
    const int64_t img = u / g->blocks, i0 = u % g->blocks * g->rb;
    const int64_t nr = g->oh - i0 < g->rb ? g->oh - i0 : g->rb, span = g->ow * g->f;
    const int64_t o = (img * g->oh + i0) * span;
    const int p1 = g->period == 1, wr = p1 && FL_NL % g->f == 0;
    const int ymode = g->act == PYNN_ACT_RELU ? FL_Y_RELU
                      : g->act == PYNN_ACT_LINEAR && y != z ? FL_Y_COPY : FL_Y_LATER;
    const float *ximg = x + img * g->h * g->w, *x_end = x + g->n * g->h * g->w;
    const int64_t r_lo = i0 * g->sh - g->pad_top, nrows = (nr - 1) * g->sh + g->kh;
    float xi[FL_MAX_XROWS * FL_XS + FL_NL] FL_ALIGNED;
    /* the shapes with loops of their own: 3x3 and 5x5, and among them 8 or 16 filters
     * (and LeNet's 6 at 5x5: every offset a constant), the kernel's vectors in
     * registers where they fit */
#define FL_ROWS(KH, KW, P1, WR, FC)                                                  \
    do {                                                                             \
        fl_expand(xi, ximg, x_end, g, r_lo, nrows, FC);                              \
        fl_forward_rows(z + o, y + o, ymode, xi, wpat, bpat, g, nr, KH, KW, P1, WR, FC); \
    } while (0)
    if (g->kh == 3 && g->kw == 3 && wr && g->f == 8)
        FL_ROWS(3, 3, 1, 1, 8);
    else if (g->kh == 3 && g->kw == 3 && wr && g->f == 16)
        FL_ROWS(3, 3, 1, 1, 16);
    else if (g->kh == 3 && g->kw == 3)
        FL_ROWS(3, 3, p1, 0, 0);
    else if (g->kh == 5 && g->kw == 5 && wr && g->f == 8 && FL_NL == 16)
        FL_ROWS(5, 5, 1, 1, 8);
    else if (g->kh == 5 && g->kw == 5 && g->f == 6)
        FL_ROWS(5, 5, 0, 0, 6);
    else if (g->kh == 5 && g->kw == 5)
        FL_ROWS(5, 5, p1, 0, 0);
    else
        FL_ROWS((int)g->kh, (int)g->kw, 0, 0, 0);
#undef FL_ROWS
    if (ymode == FL_Y_LATER && (y != z || g->act != PYNN_ACT_LINEAR))
        (void)pynn_act_span(y + o, z + o, nr * span, g->act, g->alpha);
}

/* How the filter gradient's first pass gets dz: read (computed before), or computed from
 * z and dy here and stored (ReLU; linear: dy itself, stored when dz is elsewhere). */
enum { FL_DZ_READ = 0, FL_DZ_RELU = 1, FL_DZ_COPY = 2 };

/* Window rows a0 .. a0+KA-1 of the filter gradient on the vectors of one lane class
 * (vectors v = v_first, v_first + v_step, ... < nv of every row): the lane sums
 * accw[(a, b)] at `lane` += over the rows ii, in order, and those vectors, in order, of
 * x(ii sh + a, v FL_NL + b f) dz(ii, v FL_NL).  FIRST (the pass with a0 = 0) also adds
 * dz to accb at `lane` and, per dzmode, makes the class's dz from zr and dyr. */
static inline __attribute__((always_inline)) void
fl_grad_pass(float *accw, float *accb, const float *xi, float *dzr, const float *zr,
             const float *dyr, int dzmode, const fl_geometry *g, int64_t nrows, int64_t a0,
             int64_t lane, int64_t v_first, int64_t v_step, int64_t nv, const int KA,
             const int KW, const int FIRST, const int FC) {
    const int64_t step = g->sh * FL_XS, f = FC ? FC : g->f, el = g->el;
    fl_vec acc[5][5], accbias = {0};
    int64_t ii, v;
    int a, b;
    for (a = 0; a < KA; a++)
        for (b = 0; b < KW; b++) acc[a][b] = fload(accw + ((a0 + a) * KW + b) * FL_WSTRIDE + lane);
    if (FIRST) accbias = fload(accb + lane);
    for (ii = 0; ii < nrows; ii++) {                      /* the unit's rows, in order */
        const float *xr = xi + ii * step + a0 * FL_XS;
        for (v = v_first; v < nv; v += v_step) {          /* the class's vectors, in order */
            const int64_t at = ii * el + v * FL_NL;
            fl_vec d;
            if (FIRST && dzmode == FL_DZ_RELU) {
                d = frelu_grad(fload(zr + at), fload(dyr + at));
                fstore(dzr + at, d);
            } else if (FIRST && dzmode == FL_DZ_COPY) {
                d = fload(dyr + at);
                fstore(dzr + at, d);
            } else {
                d = fload(dzr + at);
            }
            if (FIRST) accbias += d;
            for (a = 0; a < KA; a++)                      /* window rows */
                for (b = 0; b < KW; b++)                  /* window columns */
                    acc[a][b] += fload(xr + a * FL_XS + b * f + v * FL_NL) * d;
        }
    }
    for (a = 0; a < KA; a++)
        for (b = 0; b < KW; b++) fstore(accw + ((a0 + a) * KW + b) * FL_WSTRIDE + lane, acc[a][b]);
    if (FIRST) fstore(accb + lane, accbias);
}

/* All window entries for one lane class, in passes of at most FL_GRAD_ACC lane sums
 * (what the registers hold beside the operands). */
#if FL_NL == 16
#define FL_GRAD_ACC 25
#else
#define FL_GRAD_ACC 12
#endif

static inline __attribute__((always_inline)) void
fl_grad_class(float *accw, float *accb, const float *xi, float *dzr, const float *zr,
              const float *dyr, int dzmode, const fl_geometry *g, int64_t nrows, int64_t lane,
              int64_t v_first, int64_t v_step, int64_t nv, const int KW, const int FC) {
    const int ka_max = FL_GRAD_ACC / KW < 5 ? FL_GRAD_ACC / KW : 5;
    int64_t a0 = 0;
#define FL_PASS(KA)                                                                          \
    do {                                                                                     \
        if (a0 == 0)                                                                         \
            fl_grad_pass(accw, accb, xi, dzr, zr, dyr, dzmode, g, nrows, a0, lane, v_first,  \
                         v_step, nv, KA, KW, 1, FC);                                         \
        else                                                                                 \
            fl_grad_pass(accw, accb, xi, dzr, zr, dyr, FL_DZ_READ, g, nrows, a0, lane,       \
                         v_first, v_step, nv, KA, KW, 0, FC);                                \
        a0 += KA;                                                                            \
    } while (0)
    if (ka_max >= 5)
        while (a0 + 5 <= g->kh) FL_PASS(5);
    if (ka_max >= 3)
        while (a0 + 3 <= g->kh) FL_PASS(3);
    if (ka_max >= 2)
        while (a0 + 2 <= g->kh) FL_PASS(2);
    while (a0 < g->kh) FL_PASS(1);
#undef FL_PASS
}

/* One window row at a time, for widths without a loop of their own (at most FL_MAX_KW);
 * dz read, the bias sum included. */
static void fl_grad_class_any(float *accw, float *accb, const float *xi, const float *dzr,
                              const fl_geometry *g, int64_t nrows, int64_t lane,
                              int64_t v_first, int64_t v_step, int64_t nv) {
    const int64_t step = g->sh * FL_XS, f = g->f, el = g->el, kw = g->kw;
    int64_t a, b, ii, v;
    fl_vec sb = fload(accb + lane);
    for (ii = 0; ii < nrows; ii++)                        /* bias: rows, vectors in order */
        for (v = v_first; v < nv; v += v_step) sb += fload(dzr + ii * el + v * FL_NL);
    fstore(accb + lane, sb);
    for (a = 0; a < g->kh; a++) {                         /* window rows */
        fl_vec acc[FL_MAX_KW];
        for (b = 0; b < kw; b++) acc[b] = fload(accw + (a * kw + b) * FL_WSTRIDE + lane);
        for (ii = 0; ii < nrows; ii++)                    /* the unit's rows, in order */
            for (v = v_first; v < nv; v += v_step) {      /* the class's vectors, in order */
                const fl_vec d = fload(dzr + ii * el + v * FL_NL);
                const float *xr = xi + ii * step + a * FL_XS + v * FL_NL;
                for (b = 0; b < kw; b++) acc[b] += fload(xr + b * f) * d;
            }
        for (b = 0; b < kw; b++) fstore(accw + (a * kw + b) * FL_WSTRIDE + lane, acc[b]);
    }
}

static void fl_filter_grad_units(float *accw, float *accb, float *dz, const float *x,
                                 const float *z, const float *y, const float *dy,
                                 const fl_geometry *g, int64_t u0, int64_t u1) {
    const int64_t span = g->ow * g->f, el = g->el, nv = el / FL_NL;
    const int64_t classes = g->period * FL_NS;            /* lane classes of a row */
    /* dz made in the first pass (no padded copy of its rows needed, an act it knows) */
    const int fused = el == span && (g->kw == 3 || g->kw == 5) &&
                      (g->act == PYNN_ACT_RELU || g->act == PYNN_ACT_LINEAR);
    float xi[FL_MAX_XROWS * FL_XS + FL_NL] FL_ALIGNED;
    float dzb[FL_MAX_XROWS * FL_MAX_E] FL_ALIGNED;
    int64_t u;
    for (u = u0; u < u1; u++) {                           /* units, in order */
        const int64_t img = u / g->blocks, i0 = u % g->blocks * g->rb;
        const int64_t nr = g->oh - i0 < g->rb ? g->oh - i0 : g->rb;
        const int64_t o = (img * g->oh + i0) * span;
        float *dzr = dz + o;
        int dzmode = FL_DZ_READ;
        int64_t c, ii;
        if (fused) {
            dzmode = g->act == PYNN_ACT_RELU ? FL_DZ_RELU : dz != dy ? FL_DZ_COPY : FL_DZ_READ;
        } else {
            /* the unit's rows of dz are contiguous: one span */
            pynn_act_backward_span(dz + o, z + o, y + o, dy + o, nr * span, g->act, g->alpha);
            if (el != span) {                             /* rows of dz, zero padded */
                for (ii = 0; ii < nr; ii++) {
                    memcpy(dzb + ii * el, dz + o + ii * span, (size_t)span * sizeof(float));
                    memset(dzb + ii * el + span, 0, (size_t)(el - span) * sizeof(float));
                }
                dzr = dzb;
            }
        }
        if (g->f == 8)
            fl_expand(xi, x + img * g->h * g->w, x + g->n * g->h * g->w, g,
                      i0 * g->sh - g->pad_top, (nr - 1) * g->sh + g->kh, 8);
        else if (g->f == 6)
            fl_expand(xi, x + img * g->h * g->w, x + g->n * g->h * g->w, g,
                      i0 * g->sh - g->pad_top, (nr - 1) * g->sh + g->kh, 6);
        else
            fl_expand(xi, x + img * g->h * g->w, x + g->n * g->h * g->w, g,
                      i0 * g->sh - g->pad_top, (nr - 1) * g->sh + g->kh, 0);
        /* lane class c: the vectors v = c, c + classes, ... of every row, whose lanes are
         * lanes c FL_NL .. + FL_NL of the pattern */
        for (c = 0; c < classes; c++) {
            const int64_t lane = c * FL_NL;
#define FL_CLASS(KW, FC) \
    fl_grad_class(accw, accb, xi, dzr, z + o, dy + o, dzmode, g, nr, lane, c, classes, nv, KW, FC)
            if (g->kw == 3 && g->f == 8)
                FL_CLASS(3, 8);
            else if (g->kw == 3)
                FL_CLASS(3, 0);
            else if (g->kw == 5 && g->f == 8)
                FL_CLASS(5, 8);
            else if (g->kw == 5 && g->f == 6)
                FL_CLASS(5, 6);
            else if (g->kw == 5)
                FL_CLASS(5, 0);
#undef FL_CLASS
            else
                fl_grad_class_any(accw, accb, xi, dzr, g, nr, lane, c, classes, nv);
        }
    }
}

const pynn_conv_direct_kernels CONV_DIRECT_KERNELS = {
    forward_row, accumulate_filter_grad, fl_forward_unit, fl_filter_grad_units,
};
