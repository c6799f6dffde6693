/* conv_variants_kernel.h -- the depthwise convolution's loops (conv_variants_internal.h),
 * included once per instruction set with DW_KERNELS naming the table it defines. */
#include <string.h>
#include "conv_variants_internal.h"

/* the output column range [j0, j1) whose tap b column j*sw - pl + b*dw lies in [0, w) */
static void dw_columns(const pynn_dw_geometry *g, int64_t b, int64_t *j0, int64_t *j1) {
    const int64_t off = b * g->dw - g->pl;               /* q = j*sw + off */
    int64_t lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    int64_t hi = g->w - 1 - off < 0 ? 0 : (g->w - 1 - off) / g->sw + 1;
    if (hi > g->ow) hi = g->ow;
    if (lo > hi) lo = hi;
    *j0 = lo, *j1 = hi;
}

/* out[0:c] += a[0:c] * b[0:c] */
static inline void dw_madd(float *restrict out, const float *restrict a, const float *restrict b,
                           int64_t c) {
    int64_t m;
    for (m = 0; m < c; m++) out[m] += a[m] * b[m];
}

static void forward_rows(float *restrict z, const float *restrict x, const float *restrict wgt,
                         const float *restrict bias, int64_t t0, int64_t t1,
                         const pynn_dw_geometry *g) {
    const int64_t c = g->c;
    int64_t t, j, a, b;
    for (t = t0; t < t1; t++) {
        const int64_t img = t / g->oh, i = t % g->oh;
        for (j = 0; j < g->ow; j++) {
            float *restrict zp = z + (t * g->ow + j) * c;
            if (bias != NULL)
                memcpy(zp, bias, (size_t)c * sizeof(float));
            else
                memset(zp, 0, (size_t)c * sizeof(float));
            for (a = 0; a < g->kh; a++) {
                const int64_t r = i * g->sh - g->pt + a * g->dh;
                if (r < 0 || r >= g->h) continue;
                for (b = 0; b < g->kw; b++) {
                    const int64_t q = j * g->sw - g->pl + b * g->dw;
                    if (q < 0 || q >= g->w) continue;
                    dw_madd(zp, x + ((img * g->h + r) * g->w + q) * c,
                            wgt + (a * g->kw + b) * c, c);
                }
            }
        }
    }
}

static void input_grad_rows(float *restrict dx, const float *restrict dz,
                            const float *restrict wgt, int64_t t0, int64_t t1,
                            const pynn_dw_geometry *g) {
    const int64_t c = g->c;
    int64_t t, q, a, b;
    for (t = t0; t < t1; t++) {
        const int64_t img = t / g->h, r = t % g->h;
        for (q = 0; q < g->w; q++) {
            float *restrict dp = dx + (t * g->w + q) * c;
            memset(dp, 0, (size_t)c * sizeof(float));
            for (a = 0; a < g->kh; a++) {
                const int64_t si = r + g->pt - a * g->dh;
                int64_t i;
                if (si < 0 || si % g->sh != 0) continue;
                i = si / g->sh;
                if (i >= g->oh) continue;
                for (b = 0; b < g->kw; b++) {
                    const int64_t sj = q + g->pl - b * g->dw;
                    int64_t j;
                    if (sj < 0 || sj % g->sw != 0) continue;
                    j = sj / g->sw;
                    if (j >= g->ow) continue;
                    dw_madd(dp, dz + ((img * g->oh + i) * g->ow + j) * c,
                            wgt + (a * g->kw + b) * c, c);
                }
            }
        }
    }
}

static void filter_grad_part(float *restrict part, const float *restrict dz,
                             const float *restrict x, int64_t i0, int64_t i1,
                             const pynn_dw_geometry *g) {
    const int64_t c = g->c, kf = g->kh * g->kw * c;
    float *restrict pb = part + kf;
    int64_t img, i, j, a, b, m, j0, j1;
    memset(part, 0, (size_t)(kf + c) * sizeof(float));
    for (img = i0; img < i1; img++)
        for (i = 0; i < g->oh; i++) {
            const float *restrict zrow = dz + (img * g->oh + i) * g->ow * c;
            for (j = 0; j < g->ow; j++)
                for (m = 0; m < c; m++) pb[m] += zrow[j * c + m];
            for (a = 0; a < g->kh; a++) {
                const int64_t r = i * g->sh - g->pt + a * g->dh;
                if (r < 0 || r >= g->h) continue;
                for (b = 0; b < g->kw; b++) {
                    const float *restrict xrow = x + (img * g->h + r) * g->w * c;
                    const int64_t off = b * g->dw - g->pl;
                    float *restrict pw = part + (a * g->kw + b) * c;
                    dw_columns(g, b, &j0, &j1);
                    for (j = j0; j < j1; j++)
                        dw_madd(pw, xrow + (j * g->sw + off) * c, zrow + j * c, c);
                }
            }
        }
}

const pynn_dw_kernels DW_KERNELS = {forward_rows, input_grad_rows, filter_grad_part};
