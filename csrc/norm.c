/* norm.c -- layer and group normalization, unit normalization, Gaussian noise (engineer E,
 * issue #16).  The formulas are csrc/pynn.h's ("normalization and noise layers").
 *
 * Determinism: every output element is written by one thread.  A (row, group)'s statistics
 * are summed by one thread in double, in GN_LANES lanes (element j of a row into lane
 * j % GN_LANES, the lanes then added in a fixed tree): a fixed order, with eight
 * independent chains instead of one; the weight gradients are column
 * sums over the rows, each column summed by one thread in row order.  Nothing depends on
 * the thread count.  The Gaussian noise is a pure function of (seed, counter, index).
 */
#include <math.h>

#include "internal.h"

#define GN_COL_BLOCK 64   /* columns per task of the weight-gradient sums */

static int gn_sizes_ok(int64_t n, int64_t s, int64_t groups, int64_t k, int64_t *total) {
    int64_t per;
    if (n < 0 || s < 1 || groups < 1 || k < 1) return 0;
    if (groups > INT64_MAX / k) return 0;
    per = groups * k;
    if (s > INT64_MAX / per) return 0;
    per *= s;
    if (n > 0 && per > INT64_MAX / n) return 0;
    *total = n * per;
    return 1;
}

#define GN_LANES 8         /* independent double accumulators of a row's sums */

/* sum of a[j] (mode 0), (a[j] - mu)^2 (mode 1) over j < k, in GN_LANES double lanes (lane
 * j % GN_LANES) added into acc: a fixed order that does not depend on the thread count,
 * and eight independent chains instead of one (the sums' latency bound the kernel) */
static inline void lanes_add(double *acc, const float *a, int64_t k, double mu, int mode) {
    int64_t j = 0, l;
    if (mode == 0) {
        for (; j + GN_LANES <= k; j += GN_LANES)
            for (l = 0; l < GN_LANES; l++) acc[l] += a[j + l];
        for (; j < k; j++) acc[j % GN_LANES] += a[j];
    } else {
        for (; j + GN_LANES <= k; j += GN_LANES)
            for (l = 0; l < GN_LANES; l++) {
                const double d = a[j + l] - mu;
                acc[l] += d * d;
            }
        for (; j < k; j++) {
            const double d = a[j] - mu;
            acc[j % GN_LANES] += d * d;
        }
    }
}

/* the lanes added in a fixed tree order */
static inline double lanes_total(const double *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

int pynn_group_norm_forward(float *y, float *mean, float *inv_std, const float *x,
                            const float *gamma, const float *beta, int64_t n, int64_t s,
                            int64_t groups, int64_t k, float epsilon, int rms) {
    int64_t total, t;
    const int64_t c = groups * k, tasks = n * groups;
    PYNN_RETURN_IF(!gn_sizes_ok(n, s, groups, k, &total), PYNN_EINVAL);
    PYNN_RETURN_IF(!(epsilon >= 0.0f) || (rms != 0 && rms != 1), PYNN_EINVAL);
    if (total == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || mean == NULL || inv_std == NULL || x == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(total * 4),
        for (t = 0; t < tasks; t++) {
            const int64_t b = t / groups, g = t % groups;
            const float *xb = x + b * s * c + g * k;
            float *yb = y + b * s * c + g * k;
            const double m = (double)(s * k);
            const float *gm = gamma ? gamma + g * k : NULL, *bt = beta ? beta + g * k : NULL;
            double acc[GN_LANES] = {0}, mu, var;
            float mu_f, istd;
            int64_t i, j;
            for (i = 0; i < s; i++) lanes_add(acc, xb + i * c, k, 0.0, 0);
            mu = lanes_total(acc) / m;
            for (j = 0; j < GN_LANES; j++) acc[j] = 0.0;
            for (i = 0; i < s; i++) lanes_add(acc, xb + i * c, k, mu, 1);
            var = lanes_total(acc) / m;
            mu_f = (float)mu;
            istd = (float)(1.0 / sqrt((double)(float)var + (double)epsilon));
            mean[t] = mu_f;
            inv_std[t] = istd;
            for (i = 0; i < s; i++) {
                const float *xr = xb + i * c;
                float *yr = yb + i * c;
                if (rms) {   /* no centring; beta (Keras passes none here) is added */
                    for (j = 0; j < k; j++) {
                        const float v = xr[j] * istd * (gm ? gm[j] : 1.0f);
                        yr[j] = bt ? v + bt[j] : v;
                    }
                } else {
                    /* Keras 3: inv = rsqrt(var + eps) * gamma; y = x inv + (beta - mean inv) */
                    for (j = 0; j < k; j++) {
                        const float inv = istd * (gm ? gm[j] : 1.0f);
                        const float res = (bt ? bt[j] : 0.0f) - mu_f * inv;
                        yr[j] = xr[j] * inv + res;
                    }
                }
            }
        });
    return PYNN_OK;
}

int pynn_group_norm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                             const float *gamma, const float *mean, const float *inv_std,
                             const float *dy, int64_t n, int64_t s, int64_t groups, int64_t k,
                             int rms) {
    int64_t total, t;
    const int64_t c = groups * k, tasks = n * groups, rows = n * s;
    const int64_t col_tasks = (c + GN_COL_BLOCK - 1) / GN_COL_BLOCK;
    PYNN_RETURN_IF(!gn_sizes_ok(n, s, groups, k, &total), PYNN_EINVAL);
    PYNN_RETURN_IF(rms != 0 && rms != 1, PYNN_EINVAL);
    if (total == 0) {
        if (dgamma) for (t = 0; t < c; t++) dgamma[t] = 0.0f;
        if (dbeta) for (t = 0; t < c; t++) dbeta[t] = 0.0f;
        return PYNN_OK;
    }
    PYNN_RETURN_IF(x == NULL || mean == NULL || inv_std == NULL || dy == NULL, PYNN_EINVAL);
    if (dgamma != NULL || dbeta != NULL) {
        /* each column's sums over the rows, in row order, by one thread (before dx: dx may
         * be dy) */
        PYNN_PARALLEL_FOR(pynn_threads_for(total * 4),
            for (t = 0; t < col_tasks; t++) {
                const int64_t c0 = t * GN_COL_BLOCK;
                const int64_t c1 = c0 + GN_COL_BLOCK < c ? c0 + GN_COL_BLOCK : c;
                double sg[GN_COL_BLOCK], sb[GN_COL_BLOCK];
                int64_t grp[GN_COL_BLOCK];   /* each column's group: no division per value */
                int64_t r, j;
                for (j = 0; j < c1 - c0; j++) {
                    sg[j] = sb[j] = 0.0;
                    grp[j] = (c0 + j) / k;
                }
                for (r = 0; r < rows; r++) {
                    const int64_t b = r / s;
                    const float *xr = x + r * c, *dyr = dy + r * c;
                    const float *mr = mean + b * groups, *ir = inv_std + b * groups;
                    for (j = c0; j < c1; j++) {
                        const int64_t gj = grp[j - c0];
                        const double xh = rms ? (double)xr[j] * ir[gj]
                                              : ((double)xr[j] - mr[gj]) * ir[gj];
                        sg[j - c0] += (double)dyr[j] * xh;
                        sb[j - c0] += dyr[j];
                    }
                }
                for (j = c0; j < c1; j++) {
                    if (dgamma) dgamma[j] = (float)sg[j - c0];
                    if (dbeta) dbeta[j] = (float)sb[j - c0];
                }
            });
    }
    if (dx != NULL) {
        /* per (row, group): two sums over its elements, then dx, in one task */
        PYNN_PARALLEL_FOR(pynn_threads_for(total * 6),
            for (t = 0; t < tasks; t++) {
                const int64_t b = t / groups, g = t % groups, off = b * s * c + g * k;
                const float *xb = x + off, *dyb = dy + off;
                float *dxb = dx + off;
                const double mu = mean[t], istd = inv_std[t], m = (double)(s * k);
                const float *gm = gamma ? gamma + g * k : NULL;
                double a1[GN_LANES] = {0}, a2[GN_LANES] = {0}, s1, s2, q1, q2;
                int64_t i, j, l;
                /* the sums of gd = dy gamma and gd xhat (rms: gd x) in lanes, as the forward */
                for (i = 0; i < s; i++) {
                    const float *xr = xb + i * c, *dr = dyb + i * c;
                    for (j = 0; j < k; j += GN_LANES) {
                        const int64_t w = k - j < GN_LANES ? k - j : GN_LANES;
                        for (l = 0; l < w; l++) {
                            const double gd = (double)dr[j + l] * (gm ? gm[j + l] : 1.0f);
                            const double xv = xr[j + l];
                            a1[l] += gd;
                            a2[l] += gd * (rms ? xv : (xv - mu) * istd);
                        }
                    }
                }
                s1 = lanes_total(a1);
                s2 = lanes_total(a2);
                q1 = s1 / m;
                q2 = rms ? s2 * istd * istd * istd / m : istd * s2 / m;
                for (i = 0; i < s; i++) {
                    const float *xr = xb + i * c, *dr = dyb + i * c;
                    float *dxr = dxb + i * c;
                    for (j = 0; j < k; j++) {
                        const double gd = (double)dr[j] * (gm ? gm[j] : 1.0f);
                        const double xv = xr[j];
                        /* rms: y = x r gamma, r = (var + eps)^-1/2 */
                        const double v = rms ? gd * istd - q2 * (xv - mu)
                                             : istd * (gd - q1 - (xv - mu) * q2);
                        dxr[j] = (float)v;
                    }
                }
            });
    }
    return PYNN_OK;
}

#define UNIT_NORM_MIN_SQUARE 1e-24   /* Keras 3: epsilon 1e-12, clamped on the square sum */

int pynn_unit_norm_forward(float *y, float *inv_norm, const float *x, int64_t rows,
                           int64_t cols) {
    int64_t r;
    PYNN_RETURN_IF(rows < 0 || cols < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(rows > 0 && cols > INT64_MAX / rows, PYNN_EINVAL);
    if (rows == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || inv_norm == NULL || x == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(rows * cols * 3),
        for (r = 0; r < rows; r++) {
            const float *xr = x + r * cols;
            float *yr = y + r * cols;
            double acc[GN_LANES] = {0}, ss;
            float inv;
            int64_t j;
            lanes_add(acc, xr, cols, 0.0, 1);        /* sum x^2, in lanes */
            ss = lanes_total(acc);
            inv = (float)(1.0 / sqrt((double)fmax((double)(float)ss, UNIT_NORM_MIN_SQUARE)));
            /* a clamped row is marked by a negative inverse norm: its gradient skips the
             * square sum's term, as max() passes none to the clamped side */
            inv_norm[r] = (float)ss > UNIT_NORM_MIN_SQUARE ? inv : -inv;
            for (j = 0; j < cols; j++) yr[j] = xr[j] * inv;
        });
    return PYNN_OK;
}

int pynn_unit_norm_backward(float *dx, const float *x, const float *inv_norm, const float *dy,
                            int64_t rows, int64_t cols) {
    int64_t r;
    PYNN_RETURN_IF(rows < 0 || cols < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(rows > 0 && cols > INT64_MAX / rows, PYNN_EINVAL);
    if (rows == 0) return PYNN_OK;
    PYNN_RETURN_IF(dx == NULL || inv_norm == NULL || x == NULL || dy == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(rows * cols * 4),
        for (r = 0; r < rows; r++) {
            const float *xr = x + r * cols, *dyr = dy + r * cols;
            float *dxr = dx + r * cols;
            const int clamped = inv_norm[r] < 0.0f;
            const double inv = fabs((double)inv_norm[r]);
            double dot = 0.0;
            int64_t j;
            if (!clamped)
                for (j = 0; j < cols; j++) dot += (double)dyr[j] * xr[j];
            /* y = x inv, inv = ss^-1/2: dx = inv dy - inv^3 x (dy . x) */
            for (j = 0; j < cols; j++)
                dxr[j] = (float)(inv * dyr[j] - inv * inv * inv * xr[j] * dot);
        });
    return PYNN_OK;
}

/* z_e: Box-Muller from the uniforms 2e and 2e + 1, in double */
static inline double normal_at(uint64_t key, int64_t e) {
    const double u1 = pynn_uniform_at(key, (uint64_t)(2 * e));
    const double u2 = pynn_uniform_at(key, (uint64_t)(2 * e + 1));
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

int pynn_gaussian_noise(float *y, float *noise, const float *x, int64_t n, uint64_t seed,
                        uint64_t counter, int mode, double scale) {
    const uint64_t key = pynn_random_key(seed, counter);
    int64_t e;
    PYNN_RETURN_IF(n < 0 || n > INT64_MAX / 2 || (mode != 0 && mode != 1), PYNN_EINVAL);
    PYNN_RETURN_IF(!(scale >= 0.0) || !isfinite(scale), PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n < INT64_MAX / 40 ? n * 40 : n),
        for (e = 0; e < n; e++) {
            const double z = normal_at(key, e);
            const float v = mode == 0 ? (float)(scale * z) : (float)(1.0 + scale * z);
            if (noise) noise[e] = v;
            y[e] = mode == 0 ? x[e] + v : x[e] * v;
        });
    return PYNN_OK;
}
