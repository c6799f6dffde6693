/* test_batchnorm.c -- batch normalization (csrc/batchnorm.c: training forward with the
 * moving statistics, inference forward, backward; with and without gamma and beta) and
 * pynn_multiply (dropout's product), against plain loops in double, at every dispatch
 * level and on 1 and 2 threads (ctest.h); and the ReLU folded into the training forward
 * and backward (and into a two-input Add), bitwise against the ops one after the other.
 *
 * Shapes: one row (variance 0), rows around the 256-row chunks, more rows than 64 chunks
 * of 256 (chunks grow), partial sums too many for the stack (the heap path), more
 * columns than the inference path keeps on the stack, element counts past the 32768
 * where a second thread starts; 50 columns: a group of 3 column vectors at AVX-512
 * (batchnorm_kernel.h keeps up to 4 in registers) and 2 columns past the last vector.
 *
 * Bounds (u = 2^-24), following the float operations of batchnorm.c:
 *   mean: a float sum of rows terms and a divide: dm = (rows + 1) u sum |x| / rows.
 *   var: each (x - mean)^2 (3u) summed (rows u), around the float mean (which adds
 *     dm^2), then / rows: dv = (rows + 3) u var + dm^2.
 *   inv_std = 1 / sqrtf(var + eps): half of var's relative error, then 2.5u.
 *   y = (x - mean) inv gamma + beta: the error of mean times inv gamma, of inv_std
 *     relative, and four roundings.
 *   backward: the column sums of dy and dy xhat (xhat from the given mean and inv_std in
 *     two roundings): (rows + 3) u sum |terms|; dx carries their errors / rows and five
 *     roundings.
 *   moving statistics: three roundings and (1 - momentum) times the statistic's error.
 *   multiply: one product, the same bits as the float product. */
#include "ctest.h"

#define MOMENTUM 0.99f
#define EPSILON 1e-3f

typedef struct {
    const float *x, *gamma, *beta, *mm, *mv, *dy;
    int64_t rows, cols;
} bn_case;

/* out: train y (n), mean, inv_std, moving mean, moving variance (cols each); infer y (n);
 * backward dx (n), dgamma, dbeta (cols each) from the train outputs; backward with
 * gamma NULL and only dx; backward with only dgamma and dbeta */
static void run_batchnorm(void *ctx, unsigned char *out) {
    const bn_case *t = ctx;
    const int64_t n = t->rows * t->cols, c = t->cols;
    float *y = (float *)out, *mean = y + n, *inv = mean + c, *mm = inv + c, *mv = mm + c;
    float *yi = mv + c, *dx = yi + n, *dg = dx + n, *db = dg + c, *dx1 = db + c;
    float *dg2 = dx1 + n, *db2 = dg2 + c;
    int s[5];
    memcpy(mm, t->mm, (size_t)c * sizeof(float));
    memcpy(mv, t->mv, (size_t)c * sizeof(float));
    s[0] = pynn_batchnorm_forward_train(y, mean, inv, mm, mv, t->x, t->gamma, t->beta, t->rows,
                                        c, MOMENTUM, EPSILON);
    s[1] = pynn_batchnorm_forward_infer(yi, t->x, t->gamma, t->beta, t->mm, t->mv, t->rows, c,
                                        EPSILON);
    s[2] = pynn_batchnorm_backward(dx, dg, db, t->x, t->gamma, mean, inv, t->dy, t->rows, c);
    s[3] = pynn_batchnorm_backward(dx1, NULL, NULL, t->x, NULL, mean, inv, t->dy, t->rows, c);
    s[4] = pynn_batchnorm_backward(NULL, dg2, db2, t->x, t->gamma, mean, inv, t->dy, t->rows, c);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0,
          "status %d %d %d %d %d", s[0], s[1], s[2], s[3], s[4]);
}

static double col(const float *a, int64_t r, int64_t c, int64_t cols) { return a[r * cols + c]; }

static void check_batchnorm(int64_t rows, int64_t cols, int affine) {
    const int64_t n = rows * cols, c = cols, total = 4 * n + 8 * c;
    const double u = CTEST_U, eps = EPSILON, mom = MOMENTUM;
    float *x = ctest_floats(n, -1.0f, 3.0f), *gamma = ctest_floats(c, 0.5f, 2.0f);
    float *beta = ctest_floats(c, -1.0f, 1.0f), *mm = ctest_floats(c, -1.0f, 1.0f);
    float *mv = ctest_floats(c, 0.5f, 2.0f), *dy = ctest_floats(n, -1.0f, 1.0f), *got;
    double *want = ctest_new_doubles(total), *bound = ctest_new_doubles(total);
    bn_case t = {x, affine ? gamma : NULL, affine ? beta : NULL, mm, mv, dy, rows, cols};
    int64_t r, j;
    CTEST_CONTEXT("batch norm %lld x %lld%s", (long long)rows, (long long)cols,
                  affine ? ", gamma and beta" : "");
    got = (float *)ctest_everywhere(run_batchnorm, &t, (size_t)total * sizeof(float), "batch norm");
    for (j = 0; j < c; j++) {
        const float *gm = got + n, *gi = gm + c;            /* the kernel's mean, inv_std */
        const double g = affine ? gamma[j] : 1.0, b = affine ? beta[j] : 0.0;
        double s = 0.0, mag = 0.0, var = 0.0, mean, dm, dv, inv, di, inv_i;
        double sdy = 0.0, sdy_mag = 0.0, sxh = 0.0, sxh_mag = 0.0;
        for (r = 0; r < rows; r++) {
            s += col(x, r, j, c);
            mag += fabs(col(x, r, j, c));
        }
        mean = s / (double)rows;
        for (r = 0; r < rows; r++) var += (col(x, r, j, c) - mean) * (col(x, r, j, c) - mean);
        var /= (double)rows;
        dm = (double)(rows + 1) * u * mag / (double)rows;
        dv = (double)(rows + 3) * u * var + dm * dm;
        inv = 1.0 / sqrt(var + eps);
        di = inv * (0.5 * dv / (var + eps) + 2.5 * u);
        /* training forward */
        want[n + j] = mean;
        bound[n + j] = dm;
        want[n + c + j] = inv;
        bound[n + c + j] = di;
        want[n + 2 * c + j] = mm[j] * mom + mean * (1.0 - mom);
        bound[n + 2 * c + j] = u * (fabs(mm[j] * mom) + fabs(want[n + 2 * c + j])) +
                               (1.0 - mom) * (dm + u * fabs(mean));
        want[n + 3 * c + j] = mv[j] * mom + var * (1.0 - mom);
        bound[n + 3 * c + j] = u * (fabs(mv[j] * mom) + fabs(want[n + 3 * c + j])) +
                               (1.0 - mom) * (dv + u * var);
        for (r = 0; r < rows; r++) {
            const double xm = col(x, r, j, c) - mean;
            want[r * c + j] = xm * inv * g + b;
            bound[r * c + j] = fabs(g) * inv * (dm + u * fabs(xm)) +
                               fabs(xm * inv * g) * (di / inv + 2.0 * u) +
                               u * fabs(want[r * c + j]);
        }
        /* inference forward: (x - mm) / sqrt(mv + eps) */
        inv_i = 1.0 / sqrt((double)mv[j] + eps);
        for (r = 0; r < rows; r++) {
            const double xm = col(x, r, j, c) - mm[j];
            want[4 * c + n + r * c + j] = xm * inv_i * g + b;
            bound[4 * c + n + r * c + j] = fabs(g) * inv_i * u * fabs(xm) +
                                           fabs(xm * inv_i * g) * 5.0 * u +
                                           u * fabs(want[4 * c + n + r * c + j]);
        }
        /* backward, from the kernel's mean and inv_std */
        for (r = 0; r < rows; r++) {
            const double xh = (col(x, r, j, c) - gm[j]) * gi[j], d = col(dy, r, j, c);
            sdy += d;
            sdy_mag += fabs(d);
            sxh += d * xh;
            sxh_mag += fabs(d * xh);
        }
        want[4 * c + 2 * n + n + j] = sxh;                       /* dgamma */
        bound[4 * c + 2 * n + n + j] = (double)(rows + 3) * u * sxh_mag;
        want[4 * c + 2 * n + n + c + j] = sdy;                   /* dbeta */
        bound[4 * c + 2 * n + n + c + j] = (double)(rows + 3) * u * sdy_mag;
        for (r = 0; r < rows; r++) {
            const double xh = (col(x, r, j, c) - gm[j]) * gi[j], d = col(dy, r, j, c);
            const double a = sdy / (double)rows, bb = xh * (sxh / (double)rows);
            const double da = (double)(rows + 4) * u * sdy_mag / (double)rows;
            const double dbb = fabs(xh) * (double)(rows + 4) * u * sxh_mag / (double)rows +
                               3.0 * u * fabs(bb);
            const double scale = g * gi[j];
            const double v = scale * (d - a - bb);
            want[4 * c + 2 * n + r * c + j] = v;                 /* dx */
            bound[4 * c + 2 * n + r * c + j] =
                fabs(scale) * (da + dbb + u * fabs(d - a) + u * fabs(d - a - bb)) +
                2.0 * u * fabs(v);
            want[4 * c + 3 * n + 2 * c + r * c + j] = gi[j] * (d - a - bb);   /* gamma NULL */
            bound[4 * c + 3 * n + 2 * c + r * c + j] =
                fabs((double)gi[j]) * (da + dbb + u * fabs(d - a) + u * fabs(d - a - bb)) +
                u * fabs(gi[j] * (d - a - bb));
        }
    }
    ctest_close("train y", got, want, bound, n);
    ctest_close("mean", got + n, want + n, bound + n, c);
    ctest_close("inv_std", got + n + c, want + n + c, bound + n + c, c);
    ctest_close("moving mean", got + n + 2 * c, want + n + 2 * c, bound + n + 2 * c, c);
    ctest_close("moving variance", got + n + 3 * c, want + n + 3 * c, bound + n + 3 * c, c);
    ctest_close("infer y", got + n + 4 * c, want + n + 4 * c, bound + n + 4 * c, n);
    ctest_close("dx", got + 2 * n + 4 * c, want + 2 * n + 4 * c, bound + 2 * n + 4 * c, n);
    ctest_close("dgamma", got + 3 * n + 4 * c, want + 3 * n + 4 * c, bound + 3 * n + 4 * c, c);
    ctest_close("dbeta", got + 3 * n + 5 * c, want + 3 * n + 5 * c, bound + 3 * n + 5 * c, c);
    ctest_close("dx, gamma NULL", got + 3 * n + 6 * c, want + 3 * n + 6 * c, bound + 3 * n + 6 * c,
                n);
    /* the sums do not depend on which outputs are asked for */
    ctest_same_bits("dgamma alone", got + 4 * n + 6 * c, got + 3 * n + 4 * c, c);
    ctest_same_bits("dbeta alone", got + 4 * n + 7 * c, got + 3 * n + 5 * c, c);
    free(got);
    free(x);
    free(gamma);
    free(beta);
    free(mm);
    free(mv);
    free(dy);
    free(want);
    free(bound);
}

/* ---- pynn_multiply ------------------------------------------------------------------- */

typedef struct {
    const float *x, *mask;
    int64_t n;
} mul_case;

/* out: y = x mask, then the same in place */
static void run_multiply(void *ctx, unsigned char *out) {
    const mul_case *t = ctx;
    float *y = (float *)out, *y2 = y + t->n;
    int s1, s2;
    s1 = pynn_multiply(y, t->x, t->mask, t->n);
    memcpy(y2, t->x, (size_t)t->n * sizeof(float));
    s2 = pynn_multiply(y2, y2, t->mask, t->n);
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "status %d %d", s1, s2);
}

static void check_multiply(int64_t n) {
    float *x = ctest_floats(n, -3.0f, 3.0f), *mask = ctest_floats(n, 0.0f, 1.0f);
    float *want = ctest_new_floats(n), *got;
    mul_case t = {x, mask, n};
    int64_t i;
    CTEST_CONTEXT("multiply n = %lld", (long long)n);
    for (i = 0; i < n; i++) {
        if (i % 3 == 0) mask[i] = 0.0f;           /* dropped */
        else if (i % 3 == 1) mask[i] = 1.25f;     /* kept, scaled by 1 / (1 - 0.2) */
        want[i] = x[i] * mask[i];
    }
    got = (float *)ctest_everywhere(run_multiply, &t, (size_t)(2 * n) * sizeof(float), "multiply");
    ctest_same_bits("y = x mask", got, want, n);
    ctest_same_bits("in place", got + n, want, n);
    free(got);
    free(x);
    free(mask);
    free(want);
}

static void check_refusals(void) {
    float a[8] = {0}, b[8] = {0}, c[8] = {0}, d[8] = {0}, e[8] = {0}, f[8] = {1, 1, 1, 1};
    CTEST_CONTEXT("refusals");
    /* train: y mean inv mm mv x gamma beta rows cols momentum eps */
    CHECK(pynn_batchnorm_forward_train(a, b, c, d, e, f, NULL, NULL, 0, 2, 0.9f, 1e-3f)
          == PYNN_EINVAL, "0 rows");
    CHECK(pynn_batchnorm_forward_train(a, b, c, d, e, f, NULL, NULL, 2, -1, 0.9f, 1e-3f)
          == PYNN_EINVAL, "cols < 0");
    CHECK(pynn_batchnorm_forward_train(NULL, b, c, d, e, f, NULL, NULL, 2, 2, 0.9f, 1e-3f)
          == PYNN_EINVAL, "y NULL");
    CHECK(pynn_batchnorm_forward_train(a, NULL, c, d, e, f, NULL, NULL, 2, 2, 0.9f, 1e-3f)
          == PYNN_EINVAL, "mean NULL");
    CHECK(pynn_batchnorm_forward_train(a, b, NULL, d, e, f, NULL, NULL, 2, 2, 0.9f, 1e-3f)
          == PYNN_EINVAL, "inv NULL");
    CHECK(pynn_batchnorm_forward_train(a, b, c, NULL, e, f, NULL, NULL, 2, 2, 0.9f, 1e-3f)
          == PYNN_EINVAL, "mm NULL");
    CHECK(pynn_batchnorm_forward_train(a, b, c, d, NULL, f, NULL, NULL, 2, 2, 0.9f, 1e-3f)
          == PYNN_EINVAL, "mv NULL");
    CHECK(pynn_batchnorm_forward_train(a, b, c, d, e, NULL, NULL, NULL, 2, 2, 0.9f, 1e-3f)
          == PYNN_EINVAL, "x NULL");
    /* infer: y x gamma beta mm mv rows cols eps */
    CHECK(pynn_batchnorm_forward_infer(a, b, NULL, NULL, d, f, -1, 2, 1e-3f) == PYNN_EINVAL,
          "rows < 0");
    CHECK(pynn_batchnorm_forward_infer(NULL, b, NULL, NULL, d, f, 2, 2, 1e-3f) == PYNN_EINVAL,
          "y NULL");
    CHECK(pynn_batchnorm_forward_infer(a, NULL, NULL, NULL, d, f, 2, 2, 1e-3f) == PYNN_EINVAL,
          "x NULL");
    CHECK(pynn_batchnorm_forward_infer(a, b, NULL, NULL, NULL, f, 2, 2, 1e-3f) == PYNN_EINVAL,
          "mm NULL");
    CHECK(pynn_batchnorm_forward_infer(a, b, NULL, NULL, d, NULL, 2, 2, 1e-3f) == PYNN_EINVAL,
          "mv NULL");
    CHECK(pynn_batchnorm_forward_infer(a, b, NULL, NULL, d, f, 0, 2, 1e-3f) == PYNN_OK, "0 rows");
    /* backward: dx dgamma dbeta x gamma mean inv dy rows cols */
    CHECK(pynn_batchnorm_backward(a, b, c, d, NULL, e, f, a, 0, 2) == PYNN_EINVAL, "0 rows");
    CHECK(pynn_batchnorm_backward(a, b, c, NULL, NULL, e, f, a, 2, 2) == PYNN_EINVAL, "x NULL");
    CHECK(pynn_batchnorm_backward(a, b, c, d, NULL, NULL, f, a, 2, 2) == PYNN_EINVAL, "mean NULL");
    CHECK(pynn_batchnorm_backward(a, b, c, d, NULL, e, NULL, a, 2, 2) == PYNN_EINVAL, "inv NULL");
    CHECK(pynn_batchnorm_backward(a, b, c, d, NULL, e, f, NULL, 2, 2) == PYNN_EINVAL, "dy NULL");
    CHECK(pynn_batchnorm_backward(a, b, c, d, NULL, e, f, a, 2, -2) == PYNN_EINVAL, "cols < 0");
    /* multiply */
    CHECK(pynn_multiply(a, b, c, -1) == PYNN_EINVAL, "n < 0");
    CHECK(pynn_multiply(NULL, b, c, 2) == PYNN_EINVAL, "y NULL");
    CHECK(pynn_multiply(a, NULL, c, 2) == PYNN_EINVAL, "x NULL");
    CHECK(pynn_multiply(a, b, NULL, 2) == PYNN_EINVAL, "mask NULL");
    CHECK(pynn_multiply(NULL, NULL, NULL, 0) == PYNN_OK, "n = 0");
}

/* ---- a ReLU folded into the layer (plan.c's run_fused) ------------------------------
 * pynn_batchnorm_forward_train_act and pynn_batchnorm_backward_act against the layer and
 * pynn_activation_forward / _backward one after the other, as a plan runs them op by op
 * (the ReLU written over the layer's output; dx written over dy), bitwise; and
 * pynn_merge_add_relu against pynn_merge_forward then the ReLU.  Half the values are
 * negative, so the ReLU and its mask bite; some are zero, where relu' is 0. */
typedef struct {
    const float *x, *gamma, *beta, *dy, *x1;
    int64_t rows, cols;
} fold_case;

/* out, per way (folded, then op by op): y, mean, inv_std, mm, mv, dx (over dy), dgamma,
 * dbeta, add_relu (n) */
static void run_folded(void *ctx, unsigned char *out) {
    const fold_case *t = ctx;
    const int64_t n = t->rows * t->cols, c = t->cols, per = 3 * n + 6 * c;
    int way;
    for (way = 0; way < 2; way++) {
        float *y = (float *)out + way * per, *mean = y + n, *inv = mean + c, *mm = inv + c;
        float *mv = mm + c, *g = mv + c, *dg = g + n, *db = dg + c, *sum = db + c;
        const float *xs[2];
        int64_t j;
        for (j = 0; j < c; j++) {
            mm[j] = 0.0f;
            mv[j] = 1.0f;
        }
        memcpy(g, t->dy, (size_t)n * sizeof(float));
        memcpy(sum, t->x, (size_t)n * sizeof(float));
        xs[0] = sum;
        xs[1] = t->x1;
        if (way == 0) {
            CHECK(pynn_batchnorm_forward_train_act(y, mean, inv, mm, mv, t->x, t->gamma,
                                                   t->beta, t->rows, c, MOMENTUM, EPSILON,
                                                   PYNN_ACT_RELU) == PYNN_OK, "forward_train_act");
            CHECK(pynn_batchnorm_backward_act(g, dg, db, t->x, t->gamma, mean, inv, g, y,
                                              t->rows, c) == PYNN_OK, "backward_act");
            CHECK(pynn_merge_add_relu(sum, sum, t->x1, n) == PYNN_OK, "merge_add_relu");
        } else {
            CHECK(pynn_batchnorm_forward_train(y, mean, inv, mm, mv, t->x, t->gamma, t->beta,
                                               t->rows, c, MOMENTUM, EPSILON) == PYNN_OK &&
                  pynn_activation_forward(y, y, t->rows, c, PYNN_ACT_RELU, 0.0f) == PYNN_OK,
                  "forward_train, relu");
            CHECK(pynn_activation_backward(g, y, y, g, t->rows, c, PYNN_ACT_RELU, 0.0f) ==
                  PYNN_OK && pynn_batchnorm_backward(g, dg, db, t->x, t->gamma, mean, inv, g,
                                                     t->rows, c) == PYNN_OK,
                  "relu backward, backward");
            CHECK(pynn_merge_forward(sum, xs, 2, n, PYNN_MERGE_ADD) == PYNN_OK &&
                  pynn_activation_forward(sum, sum, t->rows, c, PYNN_ACT_RELU, 0.0f) == PYNN_OK,
                  "merge, relu");
        }
    }
}

static void check_folded(int64_t rows, int64_t cols, int affine) {
    const int64_t n = rows * cols, per = 3 * n + 6 * cols;
    fold_case t;
    float *x = ctest_floats(n, -2.0f, 2.0f), *dy = ctest_floats(n, -1.0f, 1.0f);
    float *x1 = ctest_floats(n, -2.0f, 2.0f);
    float *gamma = ctest_floats(cols, 0.5f, 1.5f), *beta = ctest_floats(cols, -0.5f, 0.5f);
    float *out;
    int64_t e, positive = 0;
    for (e = 0; e < n; e += 7) x1[e] = -x[e];             /* exact zeros for add_relu */
    t.x = x; t.x1 = x1; t.dy = dy; t.rows = rows; t.cols = cols;
    t.gamma = affine ? gamma : NULL;
    t.beta = affine ? beta : NULL;
    CTEST_CONTEXT("relu folded %ldx%ld%s", (long)rows, (long)cols, affine ? " affine" : "");
    out = (float *)ctest_everywhere(run_folded, &t, (size_t)(2 * per) * sizeof(float), "folded");
    ctest_same_bits("folded against op by op", out, out + per, per);
    for (e = 0; e < n; e++) positive += out[e] > 0.0f;
    CHECK(positive > 0 && positive < n, "the ReLU bites: %ld of %ld positive", (long)positive,
          (long)n);
    free(out); free(x); free(dy); free(x1); free(gamma); free(beta);
}

int main(void) {
    static const int64_t shapes[][2] = {{1, 3}, {2, 1}, {7, 5}, {255, 64}, {256, 65}, {257, 3},
                                        {16385, 8}, {16385, 65}, {40000, 2}, {300, 130},
                                        {3, 8200}, {5, 0}, {300, 50}};
    static const int64_t sizes[] = {0, 1, 7, 32767, 32769, 100003};
    size_t s;
    ctest_seed(6);
    check_refusals();
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_batchnorm(shapes[s][0], shapes[s][1], (int)(s % 2));
    check_batchnorm(257, 3, 1);
    check_folded(300, 50, 1);     /* 3 vectors and 2 columns past them at AVX-512 */
    check_folded(2049, 32, 0);    /* a ResNet-style layer's width, two threads */
    check_folded(5, 3, 1);        /* the scalar columns only */
    CHECK(pynn_batchnorm_forward_train_act(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2, 2,
                                           MOMENTUM, EPSILON, PYNN_ACT_TANH) == PYNN_EINVAL,
          "forward_train_act refuses an activation other than linear and relu");
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) check_multiply(sizes[s]);
    return ctest_finish("test_batchnorm");
}
