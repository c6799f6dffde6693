/* test_layer_kernels.c -- the layer-level kernels of a plan's ops (csrc/layers.c, dropout.c,
 * merge.c, metrics.c, batchnorm.c's inference backward, optimizers.c's optimizer step) from C,
 * under ASan/UBSan, on edge shapes: nothing (n = 0), one element, and sizes large enough for
 * an OpenMP team (> 32768 elements).  Results against plain double-precision loops; large
 * shapes bitwise the same on 1 and 2 threads; NULL and out-of-range arguments refused.
 * (The Python tests compare the same kernels with the NumPy reference on many more shapes.)
 * Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static unsigned long long rng_state = 12345;
static float uniform(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

static float *rand_floats(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) p[i] = uniform() * 2.0f - 1.0f;
    return p;
}

static float *nan_floats(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* |a - b| <= tol * (1 + |b|) elementwise */
static int near(const float *a, const double *b, int64_t n, double tol) {
    int64_t i;
    for (i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= tol * (1.0 + fabs(b[i])))) return 0;
    return 1;
}

/* ---- dense backward ---------------------------------------------------------------- */
static void check_dense(int64_t m, int64_t in, int64_t out) {
    float *x = rand_floats(m * in), *w = rand_floats(in * out), *z = rand_floats(m * out);
    float *y = malloc((size_t)(m * out > 0 ? m * out : 1) * sizeof(float));
    float *dy = rand_floats(m * out), *dy0 = malloc((size_t)(m * out > 0 ? m * out : 1) * sizeof(float));
    float *dw = nan_floats(in * out), *db = nan_floats(out), *dx = nan_floats(m * in);
    double *rdz = calloc((size_t)(m * out + 1), sizeof(double)), *rdw = calloc((size_t)(in * out + 1), sizeof(double));
    double *rdb = calloc((size_t)(out + 1), sizeof(double)), *rdx = calloc((size_t)(m * in + 1), sizeof(double));
    int64_t i, j, p;
    for (i = 0; i < m * out; i++) y[i] = z[i] > 0 ? z[i] : 0.0f;
    memcpy(dy0, dy, (size_t)(m * out) * sizeof(float));
    for (i = 0; i < m * out; i++) rdz[i] = z[i] > 0 ? dy[i] : 0.0;
    for (i = 0; i < m; i++)
        for (j = 0; j < out; j++) {
            rdb[j] += rdz[i * out + j];
            for (p = 0; p < in; p++) rdw[p * out + j] += (double)x[i * in + p] * rdz[i * out + j];
            for (p = 0; p < in; p++) rdx[i * in + p] += rdz[i * out + j] * (double)w[p * out + j];
        }
    CHECK(pynn_dense_backward(dw, db, dx, dy, x, w, z, y, m, in, out, PYNN_ACT_RELU, 0.0f) == PYNN_OK,
          "dense_backward %ldx%ldx%ld", (long)m, (long)in, (long)out);
    CHECK(near(dy, rdz, m * out, 1e-6) && near(dw, rdw, in * out, 1e-4) && near(db, rdb, out, 1e-4) &&
          near(dx, rdx, m * in, 1e-4), "dense_backward %ldx%ldx%ld: wrong values", (long)m, (long)in,
          (long)out);
    /* without dw and db (a frozen layer): the same dx */
    {
        float *dx2 = nan_floats(m * in);
        memcpy(dy, dy0, (size_t)(m * out) * sizeof(float));
        CHECK(pynn_dense_backward(NULL, NULL, dx2, dy, x, w, z, y, m, in, out, PYNN_ACT_RELU, 0.0f) ==
              PYNN_OK && memcmp(dx, dx2, (size_t)(m * in) * sizeof(float)) == 0,
              "dense_backward without dw/db: dx differs");
        free(dx2);
    }
    free(x); free(w); free(z); free(y); free(dy); free(dy0); free(dw); free(db); free(dx);
    free(rdz); free(rdw); free(rdb); free(rdx);
}

static void test_dense(void) {
    float one = 1.0f, db[3] = {NAN, NAN, NAN}, dw[6];
    int i;
    check_dense(1, 1, 1);
    check_dense(7, 13, 5);
    check_dense(300, 97, 131);
    /* no rows: dw and db are zero, nothing is read */
    for (i = 0; i < 6; i++) dw[i] = NAN;
    CHECK(pynn_dense_backward(dw, db, NULL, NULL, NULL, &one, NULL, NULL, 0, 2, 3, PYNN_ACT_TANH,
                              0.0f) == PYNN_OK, "dense_backward of no rows refused");
    for (i = 0; i < 6; i++) CHECK(dw[i] == 0.0f, "dense_backward of no rows: dw[%d] = %g", i, dw[i]);
    for (i = 0; i < 3; i++) CHECK(db[i] == 0.0f, "dense_backward of no rows: db[%d] = %g", i, db[i]);
    CHECK(pynn_dense_backward(dw, NULL, NULL, &one, NULL, &one, &one, &one, 1, 1, 1, PYNN_ACT_RELU,
                              0.0f) == PYNN_EINVAL, "dense_backward: dw wanted without x");
    CHECK(pynn_dense_backward(NULL, NULL, NULL, &one, &one, &one, &one, &one, 1, 1, 1, 99, 0.0f) ==
          PYNN_EINVAL, "dense_backward: an unknown activation");
    CHECK(pynn_dense_backward(NULL, NULL, NULL, &one, &one, &one, &one, &one, -1, 1, 1,
                              PYNN_ACT_RELU, 0.0f) == PYNN_EINVAL, "dense_backward: m < 0");
}

/* ---- convolution ------------------------------------------------------------------ */
/* naive z (double) of a valid, stride-1 convolution */
static void conv_ref(double *z, const float *x, const float *k, const float *b, int64_t n,
                     int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t f) {
    const int64_t oh = h - kh + 1, ow = w - kw + 1;
    int64_t img, i, j, a, bb, ch, q;
    for (img = 0; img < n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (q = 0; q < f; q++) {
                    double s = b[q];
                    for (a = 0; a < kh; a++)
                        for (bb = 0; bb < kw; bb++)
                            for (ch = 0; ch < c; ch++)
                                s += (double)x[((img * h + i + a) * w + j + bb) * c + ch] *
                                     (double)k[((a * kw + bb) * c + ch) * f + q];
                    z[((img * oh + i) * ow + j) * f + q] = s;
                }
}

static void check_conv(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t f) {
    const int64_t oh = h - kh + 1, ow = w - kw + 1, k = kh * kw * c;
    const int64_t work_size = pynn_conv2d_backward_work(n, h, w, c, kh, kw, 1, 1, oh, ow, f);
    float *x = rand_floats(n * h * w * c), *wg = rand_floats(k * f), *b = rand_floats(f);
    float *z = nan_floats(n * oh * ow * f), *y = nan_floats(n * oh * ow * f);
    float *cols = nan_floats(n * oh * ow * k), *work = nan_floats(work_size);
    float *dy = rand_floats(n * oh * ow * f), *dy2 = malloc((size_t)(n * oh * ow * f + 1) * sizeof(float));
    float *dw = nan_floats(k * f), *db = nan_floats(f), *dx = nan_floats(n * h * w * c);
    float *db2 = nan_floats(f), *dx2 = nan_floats(n * h * w * c);
    double *rz = calloc((size_t)(n * oh * ow * f + 1), sizeof(double));
    double *rdw = calloc((size_t)(k * f + 1), sizeof(double)), *rdb = calloc((size_t)(f + 1), sizeof(double));
    double *rdx = calloc((size_t)(n * h * w * c + 1), sizeof(double));
    int64_t e, img, i, j, a, bb, ch, q;
    conv_ref(rz, x, wg, b, n, h, w, c, kh, kw, f);
    CHECK(work_size >= 1, "conv work size %ld", (long)work_size);
    CHECK(pynn_conv2d_forward(z, y, cols, x, wg, b, n, h, w, c, kh, kw, 1, 1, 0, 0, oh, ow, f,
                              PYNN_ACT_RELU, 0.0f) == PYNN_OK, "conv2d_forward");
    CHECK(near(z, rz, n * oh * ow * f, 1e-4), "conv2d_forward %ldx%ldx%ldx%ld k%ldx%ld f%ld: z",
          (long)n, (long)h, (long)w, (long)c, (long)kh, (long)kw, (long)f);
    for (e = 0; e < n * oh * ow * f; e++) CHECK(y[e] == (z[e] > 0 ? z[e] : 0.0f), "relu(z)");
    /* reference gradients from dz = relu'(z) dy */
    for (img = 0; img < n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (q = 0; q < f; q++) {
                    const int64_t o = ((img * oh + i) * ow + j) * f + q;
                    const double dz = z[o] > 0 ? dy[o] : 0.0;
                    rdb[q] += dz;
                    for (a = 0; a < kh; a++)
                        for (bb = 0; bb < kw; bb++)
                            for (ch = 0; ch < c; ch++) {
                                rdw[((a * kw + bb) * c + ch) * f + q] +=
                                    dz * x[((img * h + i + a) * w + j + bb) * c + ch];
                                rdx[((img * h + i + a) * w + j + bb) * c + ch] +=
                                    dz * wg[((a * kw + bb) * c + ch) * f + q];
                            }
                }
    memcpy(dy2, dy, (size_t)(n * oh * ow * f) * sizeof(float));
    CHECK(pynn_conv2d_backward(dw, db, dx, dy, cols, work, work_size, x, wg, z, y, n, h, w, c, kh,
                               kw, 1, 1, 0, 0, oh, ow, f, PYNN_ACT_RELU, 0.0f) == PYNN_OK,
          "conv2d_backward");
    CHECK(near(dw, rdw, k * f, 1e-4) && near(db, rdb, f, 1e-4), "conv2d_backward: dw or db");
    CHECK(near(dx, rdx, n * h * w * c, 1e-4), "conv2d_backward: dx");
    /* frozen (dw NULL): the same db and dx, bitwise; cols must be refilled by a forward */
    CHECK(pynn_conv2d_forward(z, y, cols, x, wg, b, n, h, w, c, kh, kw, 1, 1, 0, 0, oh, ow, f,
                              PYNN_ACT_RELU, 0.0f) == PYNN_OK, "conv2d_forward again");
    CHECK(pynn_conv2d_backward(NULL, db2, dx2, dy2, cols, work, work_size, x, wg, z, y, n, h, w, c,
                               kh, kw, 1, 1, 0, 0, oh, ow, f, PYNN_ACT_RELU, 0.0f) == PYNN_OK,
          "conv2d_backward without dw");
    CHECK(memcmp(db, db2, (size_t)f * sizeof(float)) == 0 &&
          memcmp(dx, dx2, (size_t)(n * h * w * c) * sizeof(float)) == 0 &&
          memcmp(dy, dy2, (size_t)(n * oh * ow * f) * sizeof(float)) == 0,
          "conv2d_backward without dw: db, dx or dz differ");
    CHECK(pynn_conv2d_backward(dw, db, dx, dy, cols, work, work_size - 1, x, wg, z, y, n, h, w, c,
                               kh, kw, 1, 1, 0, 0, oh, ow, f, PYNN_ACT_RELU, 0.0f) == PYNN_EINVAL,
          "conv2d_backward with a work array too small");
    free(x); free(wg); free(b); free(z); free(y); free(cols); free(work); free(dy); free(dy2);
    free(dw); free(db); free(dx); free(db2); free(dx2); free(rz); free(rdw); free(rdb); free(rdx);
}

static void test_conv(void) {
    float dw[8], db[2], one = 1.0f, work[64];
    int64_t i, need = pynn_conv2d_backward_work(0, 4, 4, 1, 2, 2, 1, 1, 3, 3, 2);
    check_conv(1, 1, 1, 1, 1, 1, 1);
    check_conv(2, 8, 8, 1, 3, 3, 8);       /* the direct kernel */
    check_conv(3, 7, 9, 5, 3, 2, 7);       /* im2col + GEMM */
    check_conv(16, 14, 14, 6, 5, 5, 16);   /* 16000 positions x 150: K split, an OpenMP team */
    /* no images: zero gradients */
    for (i = 0; i < 8; i++) dw[i] = NAN;
    db[0] = db[1] = NAN;
    CHECK(need >= 1 && need <= 64, "work for no images: %ld", (long)need);
    CHECK(pynn_conv2d_forward(NULL, NULL, NULL, NULL, &one, NULL, 0, 4, 4, 1, 2, 2, 1, 1, 0, 0, 3,
                              3, 2, PYNN_ACT_RELU, 0.0f) == PYNN_OK, "conv2d_forward of no images");
    CHECK(pynn_conv2d_backward(dw, db, NULL, NULL, NULL, work, 64, NULL, &one, NULL, NULL, 0, 4, 4,
                               1, 2, 2, 1, 1, 0, 0, 3, 3, 2, PYNN_ACT_RELU, 0.0f) == PYNN_OK,
          "conv2d_backward of no images");
    for (i = 0; i < 8; i++) CHECK(dw[i] == 0.0f, "no images: dw[%ld] = %g", (long)i, dw[i]);
    CHECK(db[0] == 0.0f && db[1] == 0.0f, "no images: db");
    CHECK(pynn_conv2d_backward_work(1, 4, 4, 1, 0, 2, 1, 1, 3, 3, 2) == PYNN_EINVAL,
          "a kernel of height 0");
    CHECK(pynn_conv2d_forward(&one, &one, &one, &one, &one, NULL, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1,
                              1, PYNN_ACT_RELU, 0.0f) == PYNN_EINVAL, "stride 0");
}

/* ---- batch norm's inference backward ------------------------------------------------ */
static void check_bn_infer(int64_t rows, int64_t cols, int with_gamma) {
    float *x = rand_floats(rows * cols), *dy = rand_floats(rows * cols), *gamma = rand_floats(cols);
    float *mm = rand_floats(cols), *mv = rand_floats(cols);
    float *dx = nan_floats(rows * cols), *dg = nan_floats(cols), *db = nan_floats(cols);
    double *rdx = malloc((size_t)(rows * cols + 1) * sizeof(double));
    double *rdg = calloc((size_t)(cols + 1), sizeof(double)), *rdb = calloc((size_t)(cols + 1), sizeof(double));
    int64_t r, j;
    for (j = 0; j < cols; j++) mv[j] = fabsf(mv[j]) + 0.5f;
    for (r = 0; r < rows; r++)
        for (j = 0; j < cols; j++) {
            const double inv = 1.0 / sqrt((double)mv[j] + 1e-3), g = with_gamma ? gamma[j] : 1.0;
            const double d = dy[r * cols + j];
            rdb[j] += d;
            rdg[j] += d * ((double)x[r * cols + j] - mm[j]) * inv;
            rdx[r * cols + j] = d * g * inv;
        }
    CHECK(pynn_batchnorm_infer_backward(dx, dg, db, x, with_gamma ? gamma : NULL, mm, mv, dy, rows,
                                        cols, 1e-3f) == PYNN_OK, "batchnorm_infer_backward");
    CHECK(near(dx, rdx, rows * cols, 1e-5) && near(dg, rdg, cols, 1e-4) && near(db, rdb, cols, 1e-4),
          "batchnorm_infer_backward %ldx%ld: wrong values", (long)rows, (long)cols);
    free(x); free(dy); free(gamma); free(mm); free(mv); free(dx); free(dg); free(db);
    free(rdx); free(rdg); free(rdb);
}

static void test_bn_infer(void) {
    float dg[2] = {NAN, NAN}, db[2] = {NAN, NAN}, one[2] = {1.0f, 1.0f};
    check_bn_infer(1, 1, 1);
    check_bn_infer(257, 5, 0);
    check_bn_infer(1000, 40, 1);     /* 40000 values: an OpenMP team */
    check_bn_infer(3, 3000, 1);      /* more channels than the stack holds */
    CHECK(pynn_batchnorm_infer_backward(NULL, dg, db, NULL, NULL, one, one, NULL, 0, 2, 1e-3f) ==
          PYNN_OK && dg[0] == 0.0f && db[1] == 0.0f, "batchnorm_infer_backward of no rows");
    CHECK(pynn_batchnorm_infer_backward(NULL, dg, db, NULL, NULL, NULL, one, one, 1, 2, 1e-3f) ==
          PYNN_EINVAL, "batchnorm_infer_backward without moving_mean");
}

/* ---- dropout ------------------------------------------------------------------------ */
static uint64_t mix64(uint64_t z) {   /* the specification in pynn.h, written again here */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static float spec_uniform(uint64_t seed, uint64_t counter, uint64_t e) {
    const uint64_t g = 0x9E3779B97F4A7C15ULL, key = mix64(seed + g * (counter + 1));
    return (float)((double)(mix64(key + g * (e + 1)) >> 40) * (1.0 / 16777216.0));
}

static void test_dropout(void) {
    enum { R = 50, A = 31, B = 29 };       /* 44950 elements */
    const int64_t dims[2] = {A, B}, none[3] = {0, 0, 0}, middle[3] = {0, 1, 0};
    float *x = rand_floats(R * A * B), *y = nan_floats(R * A * B), *mask = nan_floats(R * A * B);
    float *y1 = nan_floats(R * A * B), *mask1 = nan_floats(R * A * B);
    const float scale = (float)(1.0 / (1.0 - 0.3));
    int64_t i, r, a, b, bad = 0;
    pynn_set_num_threads(2);
    CHECK(pynn_dropout_forward(y, mask, x, R, dims, none, 2, 42, 9, 0.3) == PYNN_OK, "dropout");
    for (i = 0; i < R * A * B; i++) {
        const float want = spec_uniform(42, 9, (uint64_t)i) >= 0.3f ? scale : 0.0f;
        bad += mask[i] != want || y[i] != x[i] * want;
    }
    CHECK(bad == 0, "dropout: %ld elements differ from the specification", (long)bad);
    /* broadcast over the middle axis: element (r, a, b) draws u at (r, 0, b) of (R, 1, B) */
    CHECK(pynn_dropout_forward(y, mask, x, R, dims, middle, 2, 42, 9, 0.3) == PYNN_OK, "dropout bc");
    bad = 0;
    for (r = 0; r < R; r++)
        for (a = 0; a < A; a++)
            for (b = 0; b < B; b++) {
                const float u = spec_uniform(42, 9, (uint64_t)(r * B + b));
                bad += mask[(r * A + a) * B + b] != (u >= 0.3f ? scale : 0.0f);
            }
    CHECK(bad == 0, "dropout with a broadcast axis: %ld elements differ", (long)bad);
    pynn_set_num_threads(1);
    CHECK(pynn_dropout_forward(y1, mask1, x, R, dims, middle, 2, 42, 9, 0.3) == PYNN_OK, "dropout 1t");
    pynn_set_num_threads(2);
    CHECK(memcmp(mask, mask1, sizeof(float) * R * A * B) == 0 &&
          memcmp(y, y1, sizeof(float) * R * A * B) == 0, "dropout: 1 and 2 threads differ");
    /* one element, rows only (ndim 0), and nothing */
    CHECK(pynn_dropout_forward(y, mask, x, 1, NULL, none, 0, 1, 0, 0.5) == PYNN_OK &&
          mask[0] == (spec_uniform(1, 0, 0) >= 0.5f ? 2.0f : 0.0f), "dropout of one element");
    CHECK(pynn_dropout_forward(NULL, NULL, NULL, 0, dims, none, 2, 1, 0, 0.5) == PYNN_OK,
          "dropout of no rows");
    CHECK(pynn_dropout_forward(y, mask, x, 1, dims, none, 2, 1, 0, 1.0) == PYNN_EINVAL, "rate 1");
    CHECK(pynn_dropout_forward(y, mask, x, 1, dims, none, 2, 1, 0, NAN) == PYNN_EINVAL, "rate NaN");
    CHECK(pynn_dropout_forward(y, mask, x, 1, dims, NULL, 2, 1, 0, 0.5) == PYNN_EINVAL, "no broadcast");
    free(x); free(y); free(mask); free(y1); free(mask1);
}

/* ---- merges, concatenation, scaling ------------------------------------------------- */
static void test_merges(void) {
    enum { M = 40000 };
    float *a = rand_floats(M), *b = rand_floats(M), *c = rand_floats(M), *y = nan_floats(M);
    float *d = nan_floats(M), *d1 = nan_floats(M);
    const float *xs[3] = {a, b, c};
    int64_t i, bad = 0;
    b[5] = a[5] = 2.0f;   /* a tie: the first input takes the gradient */
    c[5] = -1.0f;
    CHECK(pynn_merge_forward(y, xs, 3, M, PYNN_MERGE_AVERAGE) == PYNN_OK, "average");
    for (i = 0; i < M; i++) bad += y[i] != (a[i] + b[i] + c[i]) / 3.0f;
    CHECK(bad == 0, "average: %ld elements wrong", (long)bad);
    CHECK(pynn_merge_backward(d, a, xs, 3, M, PYNN_MERGE_MAXIMUM, 1) == PYNN_OK, "max backward");
    CHECK(d[5] == 0.0f, "maximum: a tie's gradient went to the second input");
    CHECK(pynn_merge_backward(d, a, xs, 3, M, PYNN_MERGE_MAXIMUM, 0) == PYNN_OK && d[5] == a[5],
          "maximum: a tie's gradient did not go to the first input");
    CHECK(pynn_merge_backward(d, a, xs, 3, M, PYNN_MERGE_MULTIPLY, 1) == PYNN_OK, "multiply backward");
    pynn_set_num_threads(1);
    CHECK(pynn_merge_backward(d1, a, xs, 3, M, PYNN_MERGE_MULTIPLY, 1) == PYNN_OK, "1 thread");
    pynn_set_num_threads(2);
    CHECK(memcmp(d, d1, sizeof(float) * M) == 0, "multiply backward: 1 and 2 threads differ");
    for (i = 0, bad = 0; i < M; i++) bad += d[i] != a[i] * a[i] * c[i];
    CHECK(bad == 0, "multiply backward: %ld elements wrong", (long)bad);
    /* in place, one input, nothing, refusals */
    memcpy(d, a, sizeof(float) * M);
    xs[0] = d;
    CHECK(pynn_merge_forward(d, xs, 2, M, PYNN_MERGE_SUBTRACT) == PYNN_OK, "subtract in place");
    for (i = 0, bad = 0; i < M; i++) bad += d[i] != a[i] - b[i];
    CHECK(bad == 0, "subtract in place: %ld elements wrong", (long)bad);
    CHECK(pynn_merge_forward(y, xs, 1, 1, PYNN_MERGE_MINIMUM) == PYNN_OK && y[0] == d[0], "one input");
    CHECK(pynn_merge_forward(NULL, xs, 2, 0, PYNN_MERGE_ADD) == PYNN_OK, "a merge of nothing");
    CHECK(pynn_merge_forward(y, xs, 3, M, PYNN_MERGE_SUBTRACT) == PYNN_EINVAL, "subtract of 3");
    CHECK(pynn_merge_forward(y, xs, 0, M, PYNN_MERGE_ADD) == PYNN_EINVAL, "a merge of no inputs");
    CHECK(pynn_merge_forward(y, xs, 2, M, PYNN_MERGE_COUNT) == PYNN_EINVAL, "an unknown merge");
    CHECK(pynn_merge_backward(d, a, xs, 2, M, PYNN_MERGE_ADD, 2) == PYNN_EINVAL, "input 2 of 2");
    {
        const float *cx[2] = {a, b};
        float *dxs[2] = {d, NULL};
        const int64_t widths[2] = {3, 0}, w2[2] = {-1, 1};
        CHECK(pynn_concat(y, cx, widths, 2, 7) == PYNN_OK && memcmp(y, a, 21 * sizeof(float)) == 0,
              "concat with an empty input");
        CHECK(pynn_concat_backward(dxs, y, widths, 2, 7) == PYNN_OK &&
              memcmp(d, a, 21 * sizeof(float)) == 0, "concat_backward");
        CHECK(pynn_concat(NULL, cx, widths, 2, 0) == PYNN_OK, "concat of no rows");
        CHECK(pynn_concat(y, cx, w2, 2, 7) == PYNN_EINVAL, "a negative width");
    }
    CHECK(pynn_scale(y, a, M, -0.5f) == PYNN_OK, "scale");
    for (i = 0, bad = 0; i < M; i++) bad += y[i] != a[i] * -0.5f;
    CHECK(bad == 0, "scale: %ld elements wrong", (long)bad);
    CHECK(pynn_scale(NULL, NULL, 0, 2.0f) == PYNN_OK && pynn_scale(NULL, a, 1, 2.0f) == PYNN_EINVAL,
          "scale of nothing / without an output");
    free(a); free(b); free(c); free(y); free(d); free(d1);
}

/* ---- metrics --------------------------------------------------------------------------- */
static void test_metrics(void) {
    const float pred[6] = {0.1f, 0.7f, 0.2f, 0.6f, 0.3f, 0.1f};      /* 2 rows of 3 */
    const float onehot[6] = {0, 1, 0, 0, 0, 1};
    const int64_t labels[2] = {1, 2}, bad[2] = {1, 3};
    double s = -1.0;
    CHECK(pynn_metric_sum(&s, pred, NULL, labels, 2, 3, PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, 1, 0.5f, NULL, 1) ==
          PYNN_OK && s == 1.0, "accuracy of labels: %g", s);
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_CATEGORICAL_ACCURACY, 1, 0.5f, NULL, 1) == PYNN_OK &&
          s == 1.0, "accuracy of one-hot rows: %g", s);
    CHECK(pynn_metric_sum(&s, pred, NULL, labels, 2, 3, PYNN_METRIC_BINARY_ACCURACY, 1, 0.5f, NULL, 1) == PYNN_OK &&
          s == (double)(3.0f / 3.0f) + (double)(1.0f / 3.0f), "binary accuracy of labels: %g", s);
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_MSE, 1, 0.5f, NULL, 1) == PYNN_OK &&
          fabs(s - ((0.01 + 0.09 + 0.04) / 3 + (0.36 + 0.09 + 0.81) / 3)) < 1e-6, "mse: %g", s);
    CHECK(pynn_metric_sum(&s, pred, NULL, labels, 2, 3, PYNN_METRIC_MAE, 1, 0.5f, NULL, 1) == PYNN_OK &&
          fabs(s - ((0.1 + 0.3 + 0.2) / 3 + (0.6 + 0.3 + 0.9) / 3)) < 1e-6, "mae of labels: %g", s);
    /* confusion counts: predicted positive p > 0.5 (0.7 and 0.6), actual one-hot 1s at
     * (0,1) and (1,2): TP 1, FP 1, TN 3, FN 1 */
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_TRUE_POSITIVES, 1, 0.5f, NULL, 1) == PYNN_OK &&
          s == 1.0, "true positives: %g", s);
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_FALSE_POSITIVES, 1, 0.5f, NULL, 1) == PYNN_OK &&
          s == 1.0, "false positives: %g", s);
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_TRUE_NEGATIVES, 1, 0.5f, NULL, 1) == PYNN_OK &&
          s == 3.0, "true negatives: %g", s);
    CHECK(pynn_metric_sum(&s, pred, NULL, labels, 2, 3, PYNN_METRIC_FALSE_NEGATIVES, 1, 0.5f, NULL, 1) == PYNN_OK &&
          s == 1.0, "false negatives of labels: %g", s);
    /* top-k: row 0's label 1 holds the largest value, row 1's label 2 the smallest */
    CHECK(pynn_metric_sum(&s, pred, NULL, labels, 2, 3, PYNN_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY,
                          2, 0.5f, NULL, 1) == PYNN_OK && s == 1.0, "top-2 of labels: %g", s);
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_TOP_K_CATEGORICAL_ACCURACY, 3, 0.5f, NULL, 1) ==
          PYNN_OK && s == 2.0, "top-3 of one-hot rows: %g", s);
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_TOP_K_CATEGORICAL_ACCURACY, 0, 0.5f, NULL, 1) ==
          PYNN_EINVAL, "k = 0");
    CHECK(pynn_metric_sum(&s, NULL, NULL, NULL, 0, 3, PYNN_METRIC_MAE, 1, 0.5f, NULL, 1) == PYNN_OK && s == 0.0,
          "a metric over no rows");
    CHECK(pynn_metric_sum(&s, pred, NULL, bad, 2, 3, PYNN_METRIC_MAE, 1, 0.5f, NULL, 1) == PYNN_ELABEL, "label 3 of 3");
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 0, PYNN_METRIC_MAE, 1, 0.5f, NULL, 1) == PYNN_EINVAL, "0 columns");
    CHECK(pynn_metric_sum(&s, pred, onehot, NULL, 2, 3, PYNN_METRIC_COUNT, 1, 0.5f, NULL, 1) == PYNN_EINVAL,
          "an unknown metric");
}

/* ---- optimizer steps ----------------------------------------------------------------- */
static void test_optimizer_step(void) {
    enum { M = 40000 };
    const double adam[PYNN_HYPER_COUNT] = {0.001, 0.0, 0.0, 0.9, 0.999, 0.9, 1e-7};
    float *w = rand_floats(M), *g = rand_floats(M), *m = calloc(M, sizeof(float));
    float *v = calloc(M, sizeof(float)), *w2 = malloc(M * sizeof(float));
    float *m2 = calloc(M, sizeof(float)), *v2 = calloc(M, sizeof(float));
    const double lr_t = 0.001 * sqrt(1.0 - pow(0.999, 3.0)) / (1.0 - pow(0.9, 3.0));
    memcpy(w2, w, M * sizeof(float));
    CHECK(pynn_optimizer_step(w, (float *[]){m, v, NULL}, g, M, PYNN_OPT_ADAM, 3, adam) == PYNN_OK, "adam step");
    CHECK(pynn_adam_update(w2, m2, v2, g, M, (float)lr_t, 0.9f, 0.999f, 1e-7f) == PYNN_OK, "adam");
    CHECK(memcmp(w, w2, M * sizeof(float)) == 0, "adam step: lr_t not the documented one");
    CHECK(pynn_optimizer_step(w, NULL, g, 0, PYNN_OPT_ADAM, 1, adam) == PYNN_OK, "no parameters");
    CHECK(pynn_optimizer_step(w, (float *[]){m, v, NULL}, g, M, PYNN_OPT_ADAM, 0, adam) == PYNN_EINVAL, "step 0");
    CHECK(pynn_optimizer_step(w, (float *[]){m, v, NULL}, g, M, PYNN_OPT_COUNT, 1, adam) == PYNN_EINVAL, "unknown kind");
    CHECK(pynn_optimizer_step(w, (float *[]){m, v, NULL}, g, M, PYNN_OPT_ADAM, 1, NULL) == PYNN_EINVAL, "no settings");
    CHECK(pynn_optimizer_step(w, (float *[]){NULL, v, NULL}, g, M, PYNN_OPT_ADAM, 1, adam) == PYNN_EINVAL, "Adam without m");
    CHECK(pynn_optimizer_step(w, NULL, g, M, PYNN_OPT_ADAM, 1, adam) == PYNN_EINVAL, "Adam without slots");
    CHECK(pynn_optimizer_step(w, NULL, g, M, PYNN_OPT_SGD, 1, adam) == PYNN_OK,
          "SGD without momentum needs no state");
    free(w); free(g); free(m); free(v); free(w2); free(m2); free(v2);
}

/* Every rule and setting once over an odd size (ASan/UBSan see every branch), the slots
 * each reads, and float64 checks of one step of each from known state. */
static void test_optimizer_rules(void) {
    enum { M = 1031 };
    static const struct { int kind; double lr, mom, nest, b1, b2, rho, eps, wd, ams; int slots; } R[] = {
        {PYNN_OPT_SGD, 0.01, 0.0, 0, 0.9, 0.999, 0.9, 1e-7, 0.1, 0, 0},
        {PYNN_OPT_SGD, 0.01, 0.9, 1, 0.9, 0.999, 0.9, 1e-7, 0.0, 0, 1},
        {PYNN_OPT_ADAM, 0.01, 0.0, 0, 0.9, 0.999, 0.9, 1e-7, 0.004, 1, 7},
        {PYNN_OPT_ADAM, 0.01, 0.0, 0, 0.9, 0.999, 0.9, 1e-7, 0.0, 0, 3},
        {PYNN_OPT_RMSPROP, 0.01, 0.5, 0, 0.9, 0.999, 0.9, 1e-7, 0.0, 0, 3},
        {PYNN_OPT_ADAGRAD, 0.01, 0.0, 0, 0.9, 0.999, 0.9, 1e-7, 0.0, 0, 1},
        {PYNN_OPT_ADADELTA, 1.0, 0.0, 0, 0.9, 0.999, 0.95, 1e-7, 0.0, 0, 3},
        {PYNN_OPT_ADAMAX, 0.01, 0.0, 0, 0.9, 0.999, 0.9, 1e-7, 0.0, 0, 3},
        {PYNN_OPT_NADAM, 0.01, 0.0, 0, 0.9, 0.999, 0.9, 1e-7, 0.0, 0, 3},
        {PYNN_OPT_LION, 0.01, 0.0, 0, 0.9, 0.99, 0.9, 1e-7, 0.01, 0, 1},
    };
    float *w = rand_floats(M), *g = rand_floats(M);
    float *s0 = calloc(M, sizeof(float)), *s1 = calloc(M, sizeof(float)), *s2 = calloc(M, sizeof(float));
    size_t r;
    int step;
    for (r = 0; r < sizeof R / sizeof R[0]; r++) {
        double h[PYNN_HYPER_COUNT];
        float *all[PYNN_OPT_SLOTS] = {s0, s1, s2}, *some[PYNN_OPT_SLOTS];
        int j;
        h[PYNN_HYPER_LEARNING_RATE] = R[r].lr; h[PYNN_HYPER_MOMENTUM] = R[r].mom;
        h[PYNN_HYPER_NESTEROV] = R[r].nest; h[PYNN_HYPER_BETA_1] = R[r].b1;
        h[PYNN_HYPER_BETA_2] = R[r].b2; h[PYNN_HYPER_RHO] = R[r].rho;
        h[PYNN_HYPER_EPSILON] = R[r].eps; h[PYNN_HYPER_WEIGHT_DECAY] = R[r].wd;
        h[PYNN_HYPER_AMSGRAD] = R[r].ams;
        CHECK(pynn_optimizer_slots(R[r].kind, h) == R[r].slots, "the slots a rule reads");
        for (j = 0; j < PYNN_OPT_SLOTS; j++) some[j] = (R[r].slots >> j) & 1 ? all[j] : NULL;
        for (step = 1; step <= 3; step++)
            CHECK(pynn_optimizer_step(w, some, g, M, R[r].kind, step, h) == PYNN_OK, "a rule's step");
        for (j = 0; j < PYNN_OPT_SLOTS; j++) {
            if (!((R[r].slots >> j) & 1)) continue;
            some[j] = NULL;
            CHECK(pynn_optimizer_step(w, some, g, M, R[r].kind, 1, h) == PYNN_EINVAL,
                  "a slot the rule reads is missing");
            some[j] = all[j];
        }
        memset(s0, 0, M * sizeof(float)); memset(s1, 0, M * sizeof(float));
        memset(s2, 0, M * sizeof(float));
    }
    CHECK(pynn_optimizer_slots(PYNN_OPT_COUNT, NULL) == 0 && pynn_optimizer_slots(-1, NULL) == 0,
          "unknown kinds read no slot");
    {   /* one Nadam step from zero state, g = 1: m = 0.1, v = 0.001, float64 by hand */
        const double h[PYNN_HYPER_COUNT] = {0.01, 0, 0, 0.9, 0.999, 0.9, 1e-7, 0, 0};
        const double u1 = 0.9 * (1 - 0.5 * 0.96), u2 = 0.9 * (1 - 0.5 * 0.96 * 0.96);
        const double m_hat = u2 * 0.1 / (1 - u1 * u2) + (1 - u1) * 1.0 / (1 - u1);
        const double want = 1.0 - 0.01 * m_hat / (sqrt(0.001 / (1 - 0.999)) + 1e-7);
        double f[3];
        float w1 = 1.0f, g1 = 1.0f, m1 = 0.0f, v1 = 0.0f;
        CHECK(pynn_optimizer_step(&w1, (float *[]){&m1, &v1, NULL}, &g1, 1, PYNN_OPT_NADAM, 1, h) == PYNN_OK,
              "nadam");
        CHECK(fabs(w1 - want) < 1e-6, "nadam's first step");
        pynn_nadam_factors(f, 0.9, 0.999, 100000);   /* u_product and beta_2^t underflow */
        CHECK(fabs(f[0] - 0.9) < 1e-12 && fabs(f[1] - 0.1) < 1e-12 && f[2] == 1.0,
              "nadam's factors late in training");
    }
    {   /* Lion: sign, and the weight decay before it */
        const double h[PYNN_HYPER_COUNT] = {0.1, 0, 0, 0.9, 0.99, 0.9, 1e-7, 0.5, 0};
        float w1[3] = {1.0f, 1.0f, 1.0f}, g1[3] = {2.0f, -3.0f, 0.0f}, m1[3] = {0, 0, 0};
        CHECK(pynn_optimizer_step(w1, (float *[]){m1, NULL, NULL}, g1, 3, PYNN_OPT_LION, 1, h) == PYNN_OK,
              "lion");
        CHECK(w1[0] == 0.95f - 0.1f && w1[1] == 0.95f + 0.1f && w1[2] == 0.95f, "lion's signs");
    }
    free(w); free(g); free(s0); free(s1); free(s2);
}

int main(void) {
    test_dense();
    test_conv();
    test_bn_infer();
    test_dropout();
    test_merges();
    test_metrics();
    test_optimizer_step();
    test_optimizer_rules();
    printf("test_layer_kernels: %s (%d failure%s)\n", failures ? "FAILED" : "passed", failures,
           failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
