/* test_activations.c -- pynn_activation_forward / _backward for every activation
 * (softmax row by row), pynn_bias_grad and pynn_activation_backward_bias_grad, against
 * plain loops in double, at every dispatch level and on 1 and 2 threads (ctest.h).
 *
 * Shapes: empty, 1 x 1, primes, spans around the kernels' 4096-element blocks, rows
 * around the 256-row reduction chunks and the 64-column blocks of the column sums,
 * element counts around the 32768 where a second thread starts.  Inputs mostly in
 * [-6, 6] with a few at +-30 and +-100 (exp over- and underflow).
 *
 * Bounds per element (u = 2^-24, counting the float operations of each formula):
 *   relu, linear: exact.  leaky_relu: one product, u |y|.
 *   sigmoid 1 / (1 + expf(-x)): expf's ulp, the add and the divide, each within u of the
 *     result's relative error: 4u |y|.  tanhf: glibc's is within 2 ulps: 4u |y|.
 *   gelu 0.5 x (1 + erff(x / sqrt 2)): erff's 1-ulp and the argument's rounding (erf' <=
 *     1.13) are absolute errors of 1 + erf, scaled by x / 2: 0.5 |x| u (6 + |x|) + 2u |y|.
 *   softmax: x_j - m rounds (u |x_j - m|, which expf turns into a relative error), expf,
 *     the float row sum (cols u, plus the weighted errors of its terms), the divide:
 *     u y_j (|x_j - m| + sum_k y_k |x_k - m| + cols + 4).
 *   Results below FLT_MIN may flush to 0 where the exact value is subnormal (an expf
 *   that underflows): an absolute FLT_MIN more.
 *   backward: the same counting on the formulas of act_elementwise.h, from the forward's
 *   own y (see each case below).
 *   column sums of n rows: (n + 1) u sum |dz| (any order of n float additions).
 */
#include <float.h>
#include "ctest.h"

static const char *act_names[] = {"linear", "relu", "leaky_relu", "sigmoid", "tanh",
                                  "softmax", "gelu"};
#define N_ACTS 7
#define ALPHA 0.2f

static float *activation_inputs(int64_t n) {
    float *x = ctest_floats(n, -6.0f, 6.0f);
    static const float extremes[] = {30.0f, -30.0f, 100.0f, -100.0f, 0.0f, -0.0f};
    int64_t i;
    for (i = 0; i < n; i += 97) x[i] = extremes[(i / 97) % 6];   /* a few extremes */
    return x;
}

/* ---- forward and backward of one activation ------------------------------------ */

typedef struct {
    const float *x, *dy;
    int64_t rows, cols;
    int act, in_place;
} act_case;

/* out: y (n floats), then dx (n floats) */
static void run_activation(void *ctx, unsigned char *out) {
    const act_case *t = ctx;
    const int64_t n = t->rows * t->cols;
    float *y = (float *)out, *dx = y + n;
    int s1, s2;
    if (t->in_place) {
        memcpy(y, t->x, (size_t)n * sizeof(float));
        s1 = pynn_activation_forward(y, y, t->rows, t->cols, t->act, ALPHA);
        memcpy(dx, t->dy, (size_t)n * sizeof(float));
        s2 = pynn_activation_backward(dx, t->x, y, dx, t->rows, t->cols, t->act, ALPHA);
    } else {
        s1 = pynn_activation_forward(y, t->x, t->rows, t->cols, t->act, ALPHA);
        s2 = pynn_activation_backward(dx, t->x, y, t->dy, t->rows, t->cols, t->act, ALPHA);
    }
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "status %d %d", s1, s2);
}

/* want/bound of the forward, row by row */
static void forward_reference(double *want, double *bound, const float *x, int64_t rows,
                              int64_t cols, int act) {
    const double u = CTEST_U;
    int64_t r, j;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double *wr = want + r * cols, *br = bound + r * cols;
        if (act == PYNN_ACT_SOFTMAX && cols > 0) {
            double m = xr[0], s = 0.0, spread = 0.0;
            for (j = 1; j < cols; j++) m = xr[j] > m ? xr[j] : m;
            for (j = 0; j < cols; j++) s += exp((double)xr[j] - m);
            for (j = 0; j < cols; j++) {
                wr[j] = exp((double)xr[j] - m) / s;
                spread += wr[j] * fabs((double)xr[j] - m);
            }
            for (j = 0; j < cols; j++)
                br[j] = u * wr[j] * (fabs((double)xr[j] - m) + spread + (double)cols + 4.0) +
                        FLT_MIN;
            continue;
        }
        for (j = 0; j < cols; j++) {
            const double v = xr[j];
            switch (act) {
            case PYNN_ACT_LINEAR: wr[j] = v; br[j] = 0.0; break;
            case PYNN_ACT_RELU: wr[j] = v > 0 ? v : 0.0; br[j] = 0.0; break;
            case PYNN_ACT_LEAKY_RELU:
                wr[j] = v > 0 ? v : (double)ALPHA * v;
                br[j] = u * fabs(wr[j]);
                break;
            case PYNN_ACT_SIGMOID:
                wr[j] = 1.0 / (1.0 + exp(-v));
                br[j] = 4.0 * u * wr[j] + FLT_MIN;
                break;
            case PYNN_ACT_TANH:
                wr[j] = tanh(v);
                br[j] = 4.0 * u * fabs(wr[j]) + FLT_MIN;
                break;
            default: /* gelu */
                wr[j] = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
                br[j] = 0.5 * fabs(v) * u * (6.0 + fabs(v)) + 2.0 * u * fabs(wr[j]) + FLT_MIN;
                break;
            }
        }
    }
}

/* want/bound of the backward from the kernel's own y (float), row by row */
static void backward_reference(double *want, double *bound, const float *x, const float *y,
                               const float *dy, int64_t rows, int64_t cols, int act) {
    const double u = CTEST_U;
    int64_t r, j;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *yr = y + r * cols, *gr = dy + r * cols;
        double *wr = want + r * cols, *br = bound + r * cols;
        if (act == PYNN_ACT_SOFTMAX) {
            /* dx = y (dy - dot): each product dy_k y_k rounds, then dot, the
             * difference and the product */
            double dot = 0.0, mag = 0.0;
            for (j = 0; j < cols; j++) {
                dot += (double)gr[j] * yr[j];
                mag += fabs((double)gr[j] * yr[j]);
            }
            for (j = 0; j < cols; j++) {
                wr[j] = yr[j] * ((double)gr[j] - dot);
                br[j] = fabs((double)yr[j]) * u * (mag + fabs(dot) + 2.0 * fabs(gr[j] - dot)) +
                        FLT_MIN;
            }
            continue;
        }
        for (j = 0; j < cols; j++) {
            const double v = xr[j], yv = yr[j], g = gr[j];
            switch (act) {
            case PYNN_ACT_LINEAR: wr[j] = g; br[j] = 0.0; break;
            case PYNN_ACT_RELU: wr[j] = v > 0 ? g : 0.0; br[j] = 0.0; break;
            case PYNN_ACT_LEAKY_RELU:
                wr[j] = v > 0 ? g : (double)ALPHA * g;
                br[j] = u * fabs(wr[j]);
                break;
            case PYNN_ACT_SIGMOID: /* dy y (1 - y): three roundings */
                wr[j] = g * yv * (1.0 - yv);
                br[j] = 4.0 * u * fabs(wr[j]) + FLT_MIN;
                break;
            case PYNN_ACT_TANH: /* dy (1 - y y): y y rounds before the cancellation */
                wr[j] = g * (1.0 - yv * yv);
                br[j] = fabs(g) * u * (yv * yv + 2.0 * fabs(1.0 - yv * yv)) +
                        u * fabs(wr[j]) + FLT_MIN;
                break;
            default: { /* gelu: dy (Phi(x) + x phi(x)); erff and expf as in the forward */
                const double pdf = exp(-0.5 * v * v) * 0.39894228040143267794;
                wr[j] = g * (0.5 * (1.0 + erf(v / sqrt(2.0))) + v * pdf);
                br[j] = fabs(g) * u * (8.0 + fabs(v) + fabs(v * v * v) * pdf) +
                        2.0 * u * fabs(wr[j]) + FLT_MIN;
                break;
            }
            }
        }
    }
}

static void check_activation(int64_t rows, int64_t cols, int act) {
    const int64_t n = rows * cols;
    float *x = activation_inputs(n), *dy = ctest_floats(n, -1.0f, 1.0f);
    double *want = ctest_new_doubles(n), *bound = ctest_new_doubles(n);
    act_case t = {x, dy, rows, cols, act, 0};
    float *out, *out_in_place;
    CTEST_CONTEXT("%s %lld x %lld", act_names[act], (long long)rows, (long long)cols);
    out = (float *)ctest_everywhere(run_activation, &t, (size_t)(2 * n) * sizeof(float),
                                    "activation");
    forward_reference(want, bound, x, rows, cols, act);
    ctest_close("forward", out, want, bound, n);
    backward_reference(want, bound, x, out, dy, rows, cols, act);
    ctest_close("backward", out + n, want, bound, n);
    t.in_place = 1;                       /* y = x and dx = dy: the same bits */
    out_in_place = (float *)ctest_everywhere(run_activation, &t, (size_t)(2 * n) * sizeof(float),
                                             "activation in place");
    ctest_same_bits("in place", out_in_place, out, 2 * n);
    free(out);
    free(out_in_place);
    free(x);
    free(dy);
    free(want);
    free(bound);
}

/* ---- column sums: bias_grad, activation_backward_bias_grad ---------------------- */

typedef struct {
    const float *z, *y, *dy;
    int64_t rows, cols;
    int act, in_place;
} sums_case;

/* out: db (cols floats) from bias_grad(dy) */
static void run_bias_grad(void *ctx, unsigned char *out) {
    const sums_case *t = ctx;
    const int status = pynn_bias_grad((float *)out, t->dy, t->rows, t->cols);
    CHECK(status == PYNN_OK, "bias_grad status %d", status);
}

/* out: dz (rows cols floats), then db (cols) */
static void run_backward_bias_grad(void *ctx, unsigned char *out) {
    const sums_case *t = ctx;
    float *dz = (float *)out, *db = dz + t->rows * t->cols;
    int status;
    if (t->in_place) {
        memcpy(dz, t->dy, (size_t)(t->rows * t->cols) * sizeof(float));
        status = pynn_activation_backward_bias_grad(dz, db, t->z, t->y, dz, t->rows, t->cols,
                                                    t->act, ALPHA);
    } else {
        status = pynn_activation_backward_bias_grad(dz, db, t->z, t->y, t->dy, t->rows, t->cols,
                                                    t->act, ALPHA);
    }
    CHECK(status == PYNN_OK, "activation_backward_bias_grad status %d", status);
}

static void column_sums_reference(double *want, double *bound, const float *a, int64_t rows,
                                  int64_t cols) {
    int64_t r, j;
    for (j = 0; j < cols; j++) want[j] = bound[j] = 0.0;
    for (r = 0; r < rows; r++)
        for (j = 0; j < cols; j++) {
            want[j] += a[r * cols + j];
            bound[j] += fabs((double)a[r * cols + j]);
        }
    for (j = 0; j < cols; j++) bound[j] *= (double)(rows + 1) * CTEST_U;
}

static void check_column_sums(int64_t rows, int64_t cols, int act) {
    const int64_t n = rows * cols;
    float *z = activation_inputs(n), *dy = ctest_floats(n, -1.0f, 1.0f), *y = ctest_new_floats(n);
    float *dz = ctest_new_floats(n), *db, *out, *out_in_place;
    double *want = ctest_new_doubles(cols), *bound = ctest_new_doubles(cols);
    sums_case t = {z, y, dy, rows, cols, act, 0};
    CTEST_CONTEXT("column sums %lld x %lld, %s", (long long)rows, (long long)cols,
                  act_names[act]);
    CHECK(pynn_activation_forward(y, z, rows, cols, act, ALPHA) == PYNN_OK, "forward");

    db = (float *)ctest_everywhere(run_bias_grad, &t, (size_t)cols * sizeof(float), "bias_grad");
    column_sums_reference(want, bound, dy, rows, cols);
    ctest_close("bias_grad", db, want, bound, cols);

    /* dz: bitwise activation_backward's (the same formulas); db: dz's column sums */
    out = (float *)ctest_everywhere(run_backward_bias_grad, &t, (size_t)(n + cols) * sizeof(float),
                                    "activation_backward_bias_grad");
    CHECK(pynn_activation_backward(dz, z, y, dy, rows, cols, act, ALPHA) == PYNN_OK, "backward");
    ctest_same_bits("dz against activation_backward", out, dz, n);
    column_sums_reference(want, bound, out, rows, cols);
    ctest_close("db of activation_backward_bias_grad", out + n, want, bound, cols);
    t.in_place = 1;
    out_in_place = (float *)ctest_everywhere(run_backward_bias_grad, &t,
                                             (size_t)(n + cols) * sizeof(float), "in place");
    ctest_same_bits("activation_backward_bias_grad in place", out_in_place, out, n + cols);
    free(out_in_place);
    free(out);
    free(db);
    free(z);
    free(dy);
    free(y);
    free(dz);
    free(want);
    free(bound);
}

/* ---- refusals ---------------------------------------------------------------------- */

static void check_refusals(void) {
    float a[6] = {0}, b[6] = {0}, c[6] = {0}, d[6] = {0};
    CTEST_CONTEXT("refusals");
    CHECK(pynn_activation_forward(a, b, -1, 3, 0, 0) == PYNN_EINVAL, "rows < 0");
    CHECK(pynn_activation_forward(a, b, 2, -3, 0, 0) == PYNN_EINVAL, "cols < 0");
    CHECK(pynn_activation_forward(NULL, b, 2, 3, 0, 0) == PYNN_EINVAL, "y NULL");
    CHECK(pynn_activation_forward(a, NULL, 2, 3, 0, 0) == PYNN_EINVAL, "x NULL");
    CHECK(pynn_activation_forward(a, b, 2, 3, -1, 0) == PYNN_EINVAL, "act -1");
    /* the activations past gelu (engineer A) are tested in test_act_layers.c */
    CHECK(pynn_activation_forward(a, b, 2, 3, PYNN_ACT_COUNT, 0) == PYNN_EINVAL,
          "act past the last");
    CHECK(pynn_activation_backward(a, b, c, d, -1, 3, 0, 0) == PYNN_EINVAL, "rows < 0");
    CHECK(pynn_activation_backward(NULL, b, c, d, 2, 3, 0, 0) == PYNN_EINVAL, "dx NULL");
    CHECK(pynn_activation_backward(a, NULL, c, d, 2, 3, 0, 0) == PYNN_EINVAL, "x NULL");
    CHECK(pynn_activation_backward(a, b, NULL, d, 2, 3, 0, 0) == PYNN_EINVAL, "y NULL");
    CHECK(pynn_activation_backward(a, b, c, NULL, 2, 3, 0, 0) == PYNN_EINVAL, "dy NULL");
    CHECK(pynn_activation_backward(a, b, c, d, 2, 3, 99, 0) == PYNN_EINVAL, "act 99");
    CHECK(pynn_bias_grad(NULL, b, 2, 3) == PYNN_EINVAL, "db NULL");
    CHECK(pynn_bias_grad(a, NULL, 2, 3) == PYNN_EINVAL, "dz NULL");
    CHECK(pynn_bias_grad(a, b, -2, 3) == PYNN_EINVAL, "rows < 0");
    CHECK(pynn_bias_grad(a, b, 2, -3) == PYNN_EINVAL, "cols < 0");
    CHECK(pynn_activation_backward_bias_grad(NULL, a, b, c, d, 2, 3, 0, 0) == PYNN_EINVAL,
          "dz NULL");
    CHECK(pynn_activation_backward_bias_grad(a, NULL, b, c, d, 2, 3, 0, 0) == PYNN_EINVAL,
          "db NULL");
    CHECK(pynn_activation_backward_bias_grad(a, b, NULL, c, d, 2, 3, 0, 0) == PYNN_EINVAL,
          "z NULL");
    CHECK(pynn_activation_backward_bias_grad(a, b, c, NULL, d, 2, 3, 0, 0) == PYNN_EINVAL,
          "y NULL");
    CHECK(pynn_activation_backward_bias_grad(a, b, c, d, NULL, 2, 3, 0, 0) == PYNN_EINVAL,
          "dy NULL");
    CHECK(pynn_activation_backward_bias_grad(a, b, c, d, a, -2, 3, 0, 0) == PYNN_EINVAL,
          "rows < 0");
    CHECK(pynn_activation_backward_bias_grad(a, b, c, d, a, 2, 3, -1, 0) == PYNN_EINVAL, "act -1");
    /* empty arrays: nothing to do, nothing read */
    CHECK(pynn_activation_forward(a, b, 0, 3, PYNN_ACT_SOFTMAX, 0) == PYNN_OK, "0 rows");
    CHECK(pynn_activation_backward(a, b, c, d, 3, 0, PYNN_ACT_SOFTMAX, 0) == PYNN_OK, "0 cols");
    a[0] = a[1] = 5.0f;
    CHECK(pynn_bias_grad(a, b, 0, 2) == PYNN_OK && a[0] == 0.0f && a[1] == 0.0f,
          "bias_grad of 0 rows is 0");
}

int main(void) {
    /* rows x cols */
    static const int64_t shapes[][2] = {{0, 5}, {5, 0}, {1, 1}, {3, 7}, {1, 4095}, {1, 4097},
                                        {4097, 1}, {255, 128}, {128, 256}, {257, 129},
                                        {2, 16411}, {31, 1061}};
    static const int64_t sum_shapes[][2] = {{0, 3}, {1, 1}, {7, 5}, {255, 64}, {256, 65},
                                            {257, 63}, {513, 1}, {40000, 3}, {3000, 129},
                                            {300000, 1}, {2100000, 1}};
    size_t s;
    int act;
    ctest_seed(1);
    check_refusals();
    for (act = 0; act < N_ACTS; act++)
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            check_activation(shapes[s][0], shapes[s][1], act);
    for (s = 0; s < sizeof sum_shapes / sizeof sum_shapes[0]; s++)
        check_column_sums(sum_shapes[s][0], sum_shapes[s][1], (int)(s % N_ACTS));
    check_column_sums(300, 70, PYNN_ACT_SOFTMAX);   /* softmax: two passes */
    return ctest_finish("test_activations");
}
