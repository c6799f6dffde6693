/* batchnorm_kernel.h -- batch normalization's row loops (batchnorm_internal.h), written once
 * and compiled once per instruction set: batchnorm_generic.c, batchnorm_avx2.c and
 * batchnorm_avx512.c each define BN_KERNELS, the name of their table, and include this file
 * under their own -m flags.
 *
 * The column sums keep up to BK_NV vectors of columns' sums in registers while they walk the
 * rows (one load per row and vector, the sums written back once per range of rows), rather
 * than loading and storing the sums every few rows: the adds of a column are still one row
 * at a time, in row order.  The vectors are GCC/Clang vector extensions of the set's width
 * (16, 8 or 4 floats); the columns past the last whole vector take the scalar loops. */
#ifndef BN_KERNELS
#error "batchnorm_kernel.h: define BN_KERNELS (the table's name) first"
#endif

#include <string.h>
#include "batchnorm_internal.h"

#if defined(__AVX512F__)
#define BK_NL 16
#define BK_NV 4                 /* column vectors of sums kept in registers */
#elif defined(__AVX2__)
#define BK_NL 8
#define BK_NV 2
#else
#define BK_NL 4
#define BK_NV 2
#endif
typedef float bk_vec __attribute__((vector_size(BK_NL * sizeof(float))));
typedef int32_t bk_ivec __attribute__((vector_size(BK_NL * sizeof(int32_t))));

static inline bk_vec bk_load(const float *p) { bk_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void bk_store(float *p, bk_vec v) { memcpy(p, &v, sizeof v); }

#define BK_INLINE static inline __attribute__((always_inline))

/* The column groups [c0, c0 + nv * BK_NL), nv at most BK_NV, of the whole vectors of
 * columns: CALL(nv) with nv a constant, so each group's sums are registers. */
#define BK_FOR_GROUPS(cols, c0, CALL)                                                     \
    for (c0 = 0; c0 + BK_NL <= (cols);) {                                                 \
        const int64_t bk_left_ = ((cols) - c0) / BK_NL;                                   \
        const int bk_nv_ = bk_left_ >= BK_NV ? BK_NV : (int)bk_left_;                     \
        switch (bk_nv_) {                                                                 \
        case 1: CALL(1); break;                                                           \
        case 2: CALL(2); break;                                                           \
        case 3: CALL(3 < BK_NV ? 3 : BK_NV); break;                                       \
        default: CALL(BK_NV); break;                                                      \
        }                                                                                 \
        c0 += bk_nv_ * BK_NL;                                                             \
    }

BK_INLINE void add_rows_group(float *restrict acc, const float *restrict x, int64_t r0,
                              int64_t r1, int64_t cols, int64_t c0, int nv) {
    bk_vec s[BK_NV];
    int64_t r;
    int v;
    for (v = 0; v < nv; v++) s[v] = bk_load(acc + c0 + v * BK_NL);
    for (r = r0; r < r1; r++) {                           /* rows, in order */
        const float *restrict xr = x + r * cols + c0;
        for (v = 0; v < nv; v++) s[v] += bk_load(xr + v * BK_NL);
    }
    for (v = 0; v < nv; v++) bk_store(acc + c0 + v * BK_NL, s[v]);
}

static void add_rows(float *restrict acc, const float *restrict x, int64_t r0, int64_t r1,
                     int64_t cols) {
    int64_t c0, r, e;
#define BK_CALL(nv) add_rows_group(acc, x, r0, r1, cols, c0, nv)
    BK_FOR_GROUPS(cols, c0, BK_CALL)
#undef BK_CALL
    for (r = r0; r < r1; r++)                             /* the last columns */
        for (e = c0; e < cols; e++) acc[e] += x[r * cols + e];
}

BK_INLINE void add_squared_deviations_group(float *restrict acc, const float *restrict x,
                                            const float *restrict m, int64_t r0, int64_t r1,
                                            int64_t cols, int64_t c0, int nv) {
    bk_vec s[BK_NV], mv[BK_NV];
    int64_t r;
    int v;
    for (v = 0; v < nv; v++) {
        s[v] = bk_load(acc + c0 + v * BK_NL);
        mv[v] = bk_load(m + c0 + v * BK_NL);
    }
    for (r = r0; r < r1; r++) {                           /* rows, in order */
        const float *restrict xr = x + r * cols + c0;
        for (v = 0; v < nv; v++) {
            const bk_vec d = bk_load(xr + v * BK_NL) - mv[v];
            s[v] += d * d;
        }
    }
    for (v = 0; v < nv; v++) bk_store(acc + c0 + v * BK_NL, s[v]);
}

static void add_squared_deviations(float *restrict acc, const float *restrict x,
                                   const float *restrict m, int64_t r0, int64_t r1,
                                   int64_t cols) {
    int64_t c0, r, e;
#define BK_CALL(nv) add_squared_deviations_group(acc, x, m, r0, r1, cols, c0, nv)
    BK_FOR_GROUPS(cols, c0, BK_CALL)
#undef BK_CALL
    for (r = r0; r < r1; r++)                             /* the last columns */
        for (e = c0; e < cols; e++) {
            const float d = x[r * cols + e] - m[e];
            acc[e] += d * d;
        }
}

/* The ReLU's derivative applied to a vector of dy where `mask` (the ReLU's output) says:
 * act_elementwise.h's relu backward, y > 0 ? dy : 0, as a bit mask (+0 where not). */
BK_INLINE bk_vec bk_relu_grad(bk_vec g, bk_vec y) {
    const bk_vec zero = {0};
    return (bk_vec)((bk_ivec)g & (bk_ivec)(y > zero));
}

BK_INLINE void add_gradient_group(float *restrict sdy, float *restrict sxh,
                                  const float *restrict x, const float *restrict dy,
                                  const float *mask, const float *restrict mean,
                                  const float *restrict inv_std, int64_t r0, int64_t r1,
                                  int64_t cols, int64_t c0, int nv, int has_mask) {
    bk_vec s0[BK_NV], s1[BK_NV], mv[BK_NV], iv[BK_NV];
    int64_t r;
    int v;
    for (v = 0; v < nv; v++) {
        s0[v] = bk_load(sdy + c0 + v * BK_NL);
        s1[v] = bk_load(sxh + c0 + v * BK_NL);
        mv[v] = bk_load(mean + c0 + v * BK_NL);
        iv[v] = bk_load(inv_std + c0 + v * BK_NL);
    }
    for (r = r0; r < r1; r++) {                           /* rows, in order */
        const float *restrict xr = x + r * cols + c0, *restrict gr = dy + r * cols + c0;
        for (v = 0; v < nv; v++) {
            bk_vec g = bk_load(gr + v * BK_NL);
            if (has_mask) g = bk_relu_grad(g, bk_load(mask + r * cols + c0 + v * BK_NL));
            s0[v] += g;
            s1[v] += g * ((bk_load(xr + v * BK_NL) - mv[v]) * iv[v]);
        }
    }
    for (v = 0; v < nv; v++) {
        bk_store(sdy + c0 + v * BK_NL, s0[v]);
        bk_store(sxh + c0 + v * BK_NL, s1[v]);
    }
}

/* the scalar relu derivative: y > 0 ? dy : 0 (act_elementwise.h) */
static inline float bk_relu_grad1(float g, const float *mask, int64_t i) {
    return mask == NULL ? g : (mask[i] > 0.0f ? g : 0.0f);
}

static void add_gradient_rows(float *restrict sdy, float *restrict sxh, const float *restrict x,
                              const float *restrict dy, const float *mask,
                              const float *restrict mean, const float *restrict inv_std,
                              int64_t r0, int64_t r1, int64_t cols) {
    int64_t c0, r, e;
    if (mask != NULL) {
#define BK_CALL(nv) add_gradient_group(sdy, sxh, x, dy, mask, mean, inv_std, r0, r1, cols, c0, nv, 1)
        BK_FOR_GROUPS(cols, c0, BK_CALL)
#undef BK_CALL
    } else {
#define BK_CALL(nv) add_gradient_group(sdy, sxh, x, dy, mask, mean, inv_std, r0, r1, cols, c0, nv, 0)
        BK_FOR_GROUPS(cols, c0, BK_CALL)
#undef BK_CALL
    }
    for (r = r0; r < r1; r++)                             /* the last columns */
        for (e = c0; e < cols; e++) {
            const float g = bk_relu_grad1(dy[r * cols + e], mask, r * cols + e);
            sdy[e] += g;
            sxh[e] += g * ((x[r * cols + e] - mean[e]) * inv_std[e]);
        }
}

/* y = (x - mean) * inv_std [* gamma] [+ beta] [then relu]: HAS_GAMMA, HAS_BETA, RELU
 * constants; the ReLU is act_elementwise.h's, v > 0 ? v : 0, as a bit mask. */
/* (y may be x: no restrict on them, each element is read before it is written) */
BK_INLINE void normalize_rows_as(float *y, const float *x,
                                 const float *restrict mean, const float *restrict inv_std,
                                 const float *restrict gamma, const float *restrict beta,
                                 int64_t r0, int64_t r1, int64_t cols, int has_gamma,
                                 int has_beta, int relu) {
    const bk_vec zero = {0};
    int64_t r, c0, e;
    for (r = r0; r < r1; r++) {                           /* rows */
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        for (c0 = 0; c0 + BK_NL <= cols; c0 += BK_NL) {   /* column vectors */
            bk_vec v = (bk_load(xr + c0) - bk_load(mean + c0)) * bk_load(inv_std + c0);
            if (has_gamma) v = v * bk_load(gamma + c0);
            if (has_beta) v = v + bk_load(beta + c0);
            if (relu) v = (bk_vec)((bk_ivec)v & (bk_ivec)(v > zero));
            bk_store(yr + c0, v);
        }
        for (e = c0; e < cols; e++) {                     /* the last columns */
            float v = (xr[e] - mean[e]) * inv_std[e];
            if (has_gamma) v = v * gamma[e];
            if (has_beta) v = v + beta[e];
            if (relu) v = v > 0.0f ? v : 0.0f;
            yr[e] = v;
        }
    }
}

static void normalize_rows(float *y, const float *x,
                           const float *restrict mean, const float *restrict inv_std,
                           const float *restrict gamma, const float *restrict beta, int64_t r0,
                           int64_t r1, int64_t cols, int relu) {
#define BK_NORMALIZE(G, B)                                                                       do {                                                                                             if (relu) normalize_rows_as(y, x, mean, inv_std, gamma, beta, r0, r1, cols, G, B, 1);         else normalize_rows_as(y, x, mean, inv_std, gamma, beta, r0, r1, cols, G, B, 0);          } while (0)
    if (gamma != NULL && beta != NULL)
        BK_NORMALIZE(1, 1);
    else if (gamma != NULL)
        BK_NORMALIZE(1, 0);
    else if (beta != NULL)
        BK_NORMALIZE(0, 1);
    else
        BK_NORMALIZE(0, 0);
#undef BK_NORMALIZE
}

/* (dx may be dy: no restrict on them, each element is read before it is written) */
BK_INLINE void backward_rows_as(float *dx, const float *restrict x, const float *dy,
                                const float *mask, const float *restrict mean,
                                const float *restrict inv_std, const float *restrict scale,
                                const float *restrict mean_dy,
                                const float *restrict mean_dy_xhat, int64_t r0, int64_t r1,
                                int64_t cols, int has_mask) {
    int64_t r, c0, e;
    for (r = r0; r < r1; r++) {                           /* rows */
        const float *restrict xr = x + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        for (c0 = 0; c0 + BK_NL <= cols; c0 += BK_NL) {   /* column vectors */
            const bk_vec xhat = (bk_load(xr + c0) - bk_load(mean + c0)) * bk_load(inv_std + c0);
            bk_vec g = bk_load(gr + c0);
            if (has_mask) g = bk_relu_grad(g, bk_load(mask + r * cols + c0));
            bk_store(dr + c0, bk_load(scale + c0) * (g - bk_load(mean_dy + c0) -
                                                     xhat * bk_load(mean_dy_xhat + c0)));
        }
        for (e = c0; e < cols; e++) {                     /* the last columns */
            const float xhat = (xr[e] - mean[e]) * inv_std[e];
            const float g = bk_relu_grad1(gr[e], has_mask ? mask : NULL, r * cols + e);
            dr[e] = scale[e] * (g - mean_dy[e] - xhat * mean_dy_xhat[e]);
        }
    }
}

static void backward_rows(float *dx, const float *restrict x, const float *dy,
                          const float *mask, const float *restrict mean,
                          const float *restrict inv_std, const float *restrict scale,
                          const float *restrict mean_dy, const float *restrict mean_dy_xhat,
                          int64_t r0, int64_t r1, int64_t cols) {
    if (mask != NULL)
        backward_rows_as(dx, x, dy, mask, mean, inv_std, scale, mean_dy, mean_dy_xhat, r0, r1,
                         cols, 1);
    else
        backward_rows_as(dx, x, dy, mask, mean, inv_std, scale, mean_dy, mean_dy_xhat, r0, r1,
                         cols, 0);
}

const pynn_bn_kernels BN_KERNELS = {add_rows, add_squared_deviations, add_gradient_rows,
                                    normalize_rows, backward_rows};
