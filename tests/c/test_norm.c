/* test_norm.c -- the normalization and noise kernels (csrc/norm.c; engineer E) from C under
 * ASan/UBSan: group / layer normalization forward and backward against double loops and
 * central differences, unit normalization (a zero row: the clamp), the Box-Muller noise
 * (statistics, the uniforms it is made of); nothing (n = 0), one element, shapes large
 * enough for an OpenMP team and more channels than a block of column sums (67 > 64);
 * bitwise the same on 1 and 2 threads; bad arguments refused.  Exits non-zero on failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static unsigned long long rng_state = 4242;
static float uniform(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

static float *floats(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) p[i] = lo + (hi - lo) * uniform();
    return p;
}

static int near(double a, double b, double tol) { return fabs(a - b) <= tol * (1.0 + fabs(b)); }

/* y of group norm in double, for the loss sum(y * w) */
static double gn_loss(const double *x, const double *gamma, const double *beta,
                      const double *w, int64_t n, int64_t s, int64_t groups, int64_t k,
                      double eps, int rms) {
    const int64_t c = groups * k;
    double total = 0.0;
    int64_t b, g, i, j;
    for (b = 0; b < n; b++)
        for (g = 0; g < groups; g++) {
            double mu = 0.0, var = 0.0;
            for (i = 0; i < s; i++)
                for (j = 0; j < k; j++) mu += x[b * s * c + i * c + g * k + j];
            mu /= (double)(s * k);
            for (i = 0; i < s; i++)
                for (j = 0; j < k; j++) {
                    const double d = x[b * s * c + i * c + g * k + j] - mu;
                    var += d * d;
                }
            var /= (double)(s * k);
            for (i = 0; i < s; i++)
                for (j = 0; j < k; j++) {
                    const int64_t e = b * s * c + i * c + g * k + j, ch = g * k + j;
                    const double xv = rms ? x[e] : x[e] - mu;
                    total += w[e] * (xv / sqrt(var + eps) * gamma[ch] + beta[ch]);
                }
        }
    return total;
}

static void test_group_norm(int64_t n, int64_t s, int64_t groups, int64_t k, int rms) {
    const int64_t c = groups * k, total = n * s * c, stats = n * groups;
    float *x = floats(total, -2.0f, 3.0f), *gm = floats(c, 0.5f, 1.5f), *bt = floats(c, -1, 1);
    float *dy = floats(total, -1, 1), *y1 = floats(total, 0, 1), *y2 = floats(total, 0, 1);
    float *m1 = floats(stats, 0, 1), *m2 = floats(stats, 0, 1), *i1 = floats(stats, 0, 1);
    float *i2 = floats(stats, 0, 1), *dx1 = floats(total, 0, 1), *dx2 = floats(total, 0, 1);
    float *dg1 = floats(c, 0, 1), *dg2 = floats(c, 0, 1), *db1 = floats(c, 0, 1);
    float *db2 = floats(c, 0, 1);
    const float eps = 1e-3f;
    int64_t e;
    pynn_set_num_threads(1);
    CHECK(pynn_group_norm_forward(y1, m1, i1, x, gm, bt, n, s, groups, k, eps, rms) == PYNN_OK,
          "forward");
    CHECK(pynn_group_norm_backward(dx1, dg1, db1, x, gm, m1, i1, dy, n, s, groups, k, rms) ==
          PYNN_OK, "backward");
    pynn_set_num_threads(2);
    CHECK(pynn_group_norm_forward(y2, m2, i2, x, gm, bt, n, s, groups, k, eps, rms) == PYNN_OK,
          "forward, 2 threads");
    CHECK(pynn_group_norm_backward(dx2, dg2, db2, x, gm, m2, i2, dy, n, s, groups, k, rms) ==
          PYNN_OK, "backward, 2 threads");
    CHECK(total == 0 || (memcmp(y1, y2, (size_t)total * 4) == 0 &&
                         memcmp(dx1, dx2, (size_t)total * 4) == 0), "threads differ (x)");
    CHECK(memcmp(dg1, dg2, (size_t)c * 4) == 0 && memcmp(db1, db2, (size_t)c * 4) == 0,
          "threads differ (weights)");
    if (total > 0 && total <= 4096) {   /* gradients against central differences in double */
        double *xd = malloc((size_t)total * sizeof(double)), *gd = malloc((size_t)c * 8);
        double *bd = malloc((size_t)c * 8), *wd = malloc((size_t)total * 8);
        const double h = 1e-5;
        int64_t probe;
        for (e = 0; e < total; e++) { xd[e] = x[e]; wd[e] = dy[e]; }
        for (e = 0; e < c; e++) { gd[e] = gm[e]; bd[e] = rms ? 0.0 : bt[e]; }
        for (probe = 0; probe < 5; probe++) {
            const int64_t at = (probe * 7919) % total, ch = (probe * 31) % c;
            double plus, minus, saved = xd[at];
            xd[at] = saved + h; plus = gn_loss(xd, gd, bd, wd, n, s, groups, k, eps, rms);
            xd[at] = saved - h; minus = gn_loss(xd, gd, bd, wd, n, s, groups, k, eps, rms);
            xd[at] = saved;
            CHECK(near(dx1[at], (plus - minus) / (2 * h), 2e-3), "dx at %lld: %g vs %g",
                  (long long)at, dx1[at], (plus - minus) / (2 * h));
            saved = gd[ch];
            gd[ch] = saved + h; plus = gn_loss(xd, gd, bd, wd, n, s, groups, k, eps, rms);
            gd[ch] = saved - h; minus = gn_loss(xd, gd, bd, wd, n, s, groups, k, eps, rms);
            gd[ch] = saved;
            CHECK(near(dg1[ch], (plus - minus) / (2 * h), 2e-3), "dgamma at %lld",
                  (long long)ch);
            if (!rms) {
                saved = bd[ch];
                bd[ch] = saved + h; plus = gn_loss(xd, gd, bd, wd, n, s, groups, k, eps, rms);
                bd[ch] = saved - h; minus = gn_loss(xd, gd, bd, wd, n, s, groups, k, eps, rms);
                bd[ch] = saved;
                CHECK(near(db1[ch], (plus - minus) / (2 * h), 2e-3), "dbeta at %lld",
                      (long long)ch);
            }
        }
        free(xd); free(gd); free(bd); free(wd);
    }
    /* dx over dy (in place) gives the same numbers; NULL gamma/beta/outputs accepted */
    if (total > 0) {
        float *dyc = malloc((size_t)total * 4);
        memcpy(dyc, dy, (size_t)total * 4);
        CHECK(pynn_group_norm_backward(dyc, NULL, NULL, x, gm, m1, i1, dyc, n, s, groups, k,
                                       rms) == PYNN_OK, "in place");
        CHECK(memcmp(dyc, dx1, (size_t)total * 4) == 0, "in place differs");
        free(dyc);
        CHECK(pynn_group_norm_forward(y2, m2, i2, x, NULL, NULL, n, s, groups, k, eps, rms) ==
              PYNN_OK, "no gamma, beta");
    }
    free(x); free(gm); free(bt); free(dy); free(y1); free(y2); free(m1); free(m2); free(i1);
    free(i2); free(dx1); free(dx2); free(dg1); free(dg2); free(db1); free(db2);
}

static void test_unit_norm(int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    float *x = floats(n, -1, 1), *dy = floats(n, -1, 1), *y = floats(n, 0, 1);
    float *y2 = floats(n, 0, 1), *inv = floats(rows, 0, 1), *inv2 = floats(rows, 0, 1);
    float *dx = floats(n, 0, 1), *dx2 = floats(n, 0, 1);
    int64_t r, j;
    if (rows > 0) memset(x, 0, (size_t)cols * 4);            /* a zero row: the clamp */
    pynn_set_num_threads(1);
    CHECK(pynn_unit_norm_forward(y, inv, x, rows, cols) == PYNN_OK, "unit forward");
    CHECK(pynn_unit_norm_backward(dx, x, inv, dy, rows, cols) == PYNN_OK, "unit backward");
    for (r = 0; r < rows; r++) {
        double ss = 0.0, dot = 0.0;
        for (j = 0; j < cols; j++) ss += (double)x[r * cols + j] * x[r * cols + j];
        for (j = 0; j < cols; j++) {
            const double want = x[r * cols + j] / sqrt(fmax(ss, 1e-24));
            CHECK(near(y[r * cols + j], want, 1e-6), "unit y at %lld", (long long)r);
        }
        if (ss > 1e-24)
            for (j = 0; j < cols; j++) dot += (double)dy[r * cols + j] * x[r * cols + j];
        for (j = 0; j < cols; j++) {
            const double inv_n = 1.0 / sqrt(fmax(ss, 1e-24));
            const double want = inv_n * dy[r * cols + j] - inv_n * inv_n * inv_n *
                                x[r * cols + j] * dot;
            CHECK(near(dx[r * cols + j], want, 1e-5) && isfinite(dx[r * cols + j]),
                  "unit dx at %lld", (long long)r);
        }
    }
    pynn_set_num_threads(2);
    CHECK(pynn_unit_norm_forward(y2, inv2, x, rows, cols) == PYNN_OK, "unit forward 2");
    CHECK(pynn_unit_norm_backward(dx2, x, inv2, dy, rows, cols) == PYNN_OK, "unit backward 2");
    CHECK(n == 0 || (memcmp(y, y2, (size_t)n * 4) == 0 && memcmp(dx, dx2, (size_t)n * 4) == 0),
          "unit threads differ");
    free(x); free(dy); free(y); free(y2); free(inv); free(inv2); free(dx); free(dx2);
}

static void test_noise(void) {
    const int64_t n = 200000;
    float *x = calloc((size_t)n, 4), *y = malloc((size_t)n * 4), *z = malloc((size_t)n * 4);
    float *y2 = malloc((size_t)n * 4);
    double sum = 0.0, sq = 0.0;
    int64_t e;
    pynn_set_num_threads(1);
    CHECK(pynn_gaussian_noise(y, z, x, n, 17, 3, 0, 1.0) == PYNN_OK, "noise");
    for (e = 0; e < n; e++) { sum += z[e]; sq += (double)z[e] * z[e]; }
    CHECK(fabs(sum / n) < 0.01 && fabs(sqrt(sq / n - (sum / n) * (sum / n)) - 1.0) < 0.01,
          "noise mean %g std %g", sum / n, sqrt(sq / n));
    CHECK(memcmp(y, z, (size_t)n * 4) == 0, "x = 0: y is the noise");
    pynn_set_num_threads(2);
    CHECK(pynn_gaussian_noise(y2, NULL, x, n, 17, 3, 0, 1.0) == PYNN_OK, "noise 2 threads");
    CHECK(memcmp(y, y2, (size_t)n * 4) == 0, "noise threads differ");
    /* in place, multiplicative: x = 1 gives the multiplier 1 + scale z */
    for (e = 0; e < n; e++) y2[e] = 1.0f;
    CHECK(pynn_gaussian_noise(y2, NULL, y2, n, 17, 3, 1, 0.5) == PYNN_OK, "multiplicative");
    for (e = 0; e < 1000; e++) CHECK(y2[e] == (float)(1.0 + 0.5 * (double)z[e]) ||
                                     fabs(y2[e] - (1.0 + 0.5 * z[e])) < 1e-6, "mult at %lld",
                                     (long long)e);
    CHECK(pynn_gaussian_noise(y, z, x, 0, 1, 1, 0, 1.0) == PYNN_OK, "nothing");
    free(x); free(y); free(z); free(y2);
}

static void test_refusals(void) {
    float a[8] = {0}, b[8] = {0}, m[8] = {0}, s[8] = {0};
    CHECK(pynn_group_norm_forward(a, m, s, b, NULL, NULL, 1, 0, 1, 1, 1e-3f, 0) == PYNN_EINVAL, "s 0");
    CHECK(pynn_group_norm_forward(a, m, s, b, NULL, NULL, 1, 1, 0, 1, 1e-3f, 0) == PYNN_EINVAL, "groups 0");
    CHECK(pynn_group_norm_forward(a, m, s, b, NULL, NULL, -1, 1, 1, 1, 1e-3f, 0) == PYNN_EINVAL, "n < 0");
    CHECK(pynn_group_norm_forward(a, m, s, b, NULL, NULL, 1, 1, 1, 1, -1.0f, 0) == PYNN_EINVAL, "eps < 0");
    CHECK(pynn_group_norm_forward(a, m, s, b, NULL, NULL, 1, 1, 1, 1, NAN, 0) == PYNN_EINVAL, "eps NaN");
    CHECK(pynn_group_norm_forward(a, m, s, b, NULL, NULL, 1, 1, 1, 1, 1e-3f, 2) == PYNN_EINVAL, "rms 2");
    CHECK(pynn_group_norm_forward(NULL, m, s, b, NULL, NULL, 1, 1, 1, 1, 1e-3f, 0) == PYNN_EINVAL, "y NULL");
    CHECK(pynn_group_norm_forward(a, m, s, b, NULL, NULL, INT64_MAX, 2, 2, 2, 1e-3f, 0) == PYNN_EINVAL,
          "overflow");
    CHECK(pynn_group_norm_backward(a, NULL, NULL, NULL, NULL, m, s, b, 1, 1, 1, 2, 0) == PYNN_EINVAL,
          "x NULL");
    CHECK(pynn_unit_norm_forward(a, m, b, 1, 0) == PYNN_EINVAL, "cols 0");
    CHECK(pynn_unit_norm_forward(a, NULL, b, 1, 2) == PYNN_EINVAL, "inv NULL");
    CHECK(pynn_unit_norm_backward(a, b, m, NULL, 1, 2) == PYNN_EINVAL, "dy NULL");
    CHECK(pynn_gaussian_noise(a, NULL, b, 4, 1, 1, 2, 1.0) == PYNN_EINVAL, "mode 2");
    CHECK(pynn_gaussian_noise(a, NULL, b, 4, 1, 1, 0, -1.0) == PYNN_EINVAL, "scale < 0");
    CHECK(pynn_gaussian_noise(a, NULL, b, 4, 1, 1, 0, INFINITY) == PYNN_EINVAL, "scale inf");
    CHECK(pynn_gaussian_noise(a, NULL, b, -1, 1, 1, 0, 1.0) == PYNN_EINVAL, "n < 0");
    CHECK(strcmp(pynn_id_name(PYNN_TABLE_OP, PYNN_OP_GROUP_NORM), "group_norm") == 0, "op name");
}

int main(void) {
    test_group_norm(0, 1, 1, 3, 0);
    test_group_norm(1, 1, 1, 1, 0);
    test_group_norm(3, 1, 1, 7, 0);            /* layer norm */
    test_group_norm(2, 5, 3, 2, 1);            /* rms, groups */
    test_group_norm(4, 3, 1, 67, 0);           /* more channels than a column block */
    test_group_norm(64, 64, 4, 8, 0);          /* an OpenMP team */
    test_group_norm(40, 1, 1, 300, 1);
    test_unit_norm(0, 3);
    test_unit_norm(1, 1);
    test_unit_norm(5, 7);
    test_unit_norm(300, 129);
    test_noise();
    test_refusals();
    if (failures) printf("%d failure(s)\n", failures);
    return failures != 0;
}
