/* test_act_layers.c -- engineer A's kernels: the activations elu .. log_softmax through
 * pynn_activation_forward / _backward, and act_layers.c's ReLU(max_value, negative_slope,
 * threshold), softmax over a middle axis and PReLU, against plain loops in double, at every
 * dispatch level and on 1 and 2 threads (ctest.h: the same bytes every run), under
 * ASan/UBSan; then their refusals.
 *
 * Bounds: the formulas chain a handful of float operations (expf, log1pf, tanhf within an
 * ulp or two each), so each element is checked to 32 u (|want| + 1) with u = 2^-24 for the
 * activations (|x| <= 30), the sums of softmax over an axis and of PReLU's alpha gradient
 * to (len + 8) u times the sum of magnitudes.
 */
#include <float.h>
#include "ctest.h"

#define ALPHA 0.7f

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }
static double softplus(double v) { return (v > 0 ? v : 0.0) + log1p(exp(-fabs(v))); }
static double hsig(double v) { double t = (v + 3.0) / 6.0; return t < 0 ? 0 : t > 1 ? 1 : t; }

static double act_ref(int act, double v) {
    switch (act) {
    case PYNN_ACT_ELU: return v > 0 ? v : ALPHA * expm1(v);
    case PYNN_ACT_SELU: return 1.0507009873554805 * (v > 0 ? v : 1.6732632423543772 * expm1(v));
    case PYNN_ACT_SOFTPLUS: return softplus(v);
    case PYNN_ACT_SOFTSIGN: return v / (fabs(v) + 1.0);
    case PYNN_ACT_SILU: return v * sigm(v);
    case PYNN_ACT_HARD_SIGMOID: return hsig(v);
    case PYNN_ACT_HARD_SILU: return v * hsig(v);
    case PYNN_ACT_RELU6: return v < 0 ? 0 : v > 6 ? 6 : v;
    case PYNN_ACT_MISH: return v * tanh(softplus(v));
    default: return exp(v);   /* exponential */
    }
}

static double grad_ref(int act, double v) {
    switch (act) {
    case PYNN_ACT_ELU: return v > 0 ? 1.0 : ALPHA * exp(v);
    case PYNN_ACT_SELU: return 1.0507009873554805 * (v > 0 ? 1.0 : 1.6732632423543772 * exp(v));
    case PYNN_ACT_SOFTPLUS: return sigm(v);
    case PYNN_ACT_SOFTSIGN: return 1.0 / ((fabs(v) + 1.0) * (fabs(v) + 1.0));
    case PYNN_ACT_SILU: return sigm(v) * (1.0 + v * (1.0 - sigm(v)));
    case PYNN_ACT_HARD_SIGMOID: return v > -3 && v < 3 ? 1.0 / 6.0 : 0.0;
    case PYNN_ACT_HARD_SILU: return hsig(v) + (v > -3 && v < 3 ? v / 6.0 : 0.0);
    case PYNN_ACT_RELU6: return v > 0 && v < 6 ? 1.0 : 0.0;
    case PYNN_ACT_MISH: {
        const double t = tanh(softplus(v));
        return t + v * (1.0 - t * t) * sigm(v);
    }
    default: return exp(v);
    }
}

typedef struct {
    const float *x, *dy;
    int64_t rows, cols;
    int act;
} act_case;

static void run_act(void *ctx, unsigned char *out) {
    const act_case *t = ctx;
    const int64_t n = t->rows * t->cols;
    float *y = (float *)out, *dx = y + n;
    int s1 = pynn_activation_forward(y, t->x, t->rows, t->cols, t->act, ALPHA);
    int s2 = pynn_activation_backward(dx, t->x, y, t->dy, t->rows, t->cols, t->act, ALPHA);
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "status %d %d", s1, s2);
}

static void check_act(int64_t rows, int64_t cols, int act) {
    const int64_t n = rows * cols;
    float *x = ctest_floats(n, -6.0f, 6.0f), *dy = ctest_floats(n, -1.0f, 1.0f), *y, *dx;
    double *want = ctest_new_doubles(2 * n), *bound = ctest_new_doubles(2 * n);
    act_case c;
    int64_t i, r, j;
    unsigned char *out;
    for (i = 0; i < n; i += 89) x[i] = (i / 89) % 2 ? 30.0f : -30.0f;
    c.x = x; c.dy = dy; c.rows = rows; c.cols = cols; c.act = act;
    CTEST_CONTEXT("%s %lld x %lld", pynn_id_name(PYNN_TABLE_ACTIVATION, act), (long long)rows,
                  (long long)cols);
    out = ctest_everywhere(run_act, &c, (size_t)(2 * n) * sizeof(float), "activation");
    y = (float *)out;
    dx = y + n;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *yr = y + r * cols, *gr = dy + r * cols;
        if (act == PYNN_ACT_LOG_SOFTMAX) {
            double m = xr[0], s = 0.0, gs = 0.0, ga = 0.0;
            for (j = 1; j < cols; j++) m = xr[j] > m ? xr[j] : m;
            for (j = 0; j < cols; j++) s += exp((double)xr[j] - m);
            for (j = 0; j < cols; j++) { gs += gr[j]; ga += fabs((double)gr[j]); }
            for (j = 0; j < cols; j++) {
                const double w = (double)xr[j] - m - log(s), p = exp((double)yr[j]);
                want[r * cols + j] = w;
                bound[r * cols + j] = 8.0 * CTEST_U * (fabs(w) + fabs((double)xr[j] - m) +
                                                       (double)cols + 4.0);
                want[n + r * cols + j] = gr[j] - p * gs;
                bound[n + r * cols + j] = CTEST_U * (4.0 * fabs(gr[j]) + p * ((double)cols + 8.0) *
                                                     ga) + FLT_MIN;
            }
            continue;
        }
        for (j = 0; j < cols; j++) {
            const double v = xr[j], w = act_ref(act, v), d = grad_ref(act, v) * gr[j];
            want[r * cols + j] = w;
            bound[r * cols + j] = 32.0 * CTEST_U * (fabs(w) + 1.0);
            want[n + r * cols + j] = d;
            bound[n + r * cols + j] = 32.0 * CTEST_U * (fabs(d) + fabs((double)gr[j]));
        }
    }
    ctest_close("y", y, want, bound, n);
    ctest_close("dx", dx, want + n, bound + n, n);
    free(out); free(x); free(dy); free(want); free(bound);
}

/* ---- ReLU(max_value, negative_slope, threshold) ------------------------------------- */

typedef struct {
    const float *x, *dy;
    int64_t n;
    float slope, thr, top;
} relu_case;

static void run_relu(void *ctx, unsigned char *out) {
    const relu_case *t = ctx;
    float *y = (float *)out, *dx = y + t->n;
    CHECK(pynn_relu_forward(y, t->x, t->n, t->slope, t->thr, t->top) == PYNN_OK, "relu");
    CHECK(pynn_relu_backward(dx, t->x, t->dy, t->n, t->slope, t->thr, t->top) == PYNN_OK,
          "relu backward");
}

static void check_relu(int64_t n, float slope, float thr, float top) {
    float *x = ctest_floats(n, -3.0f, 3.0f), *dy = ctest_floats(n, -1.0f, 1.0f);
    double *want = ctest_new_doubles(2 * n), *bound = ctest_new_doubles(2 * n);
    relu_case c;
    unsigned char *out;
    int64_t i;
    c.x = x; c.dy = dy; c.n = n; c.slope = slope; c.thr = thr; c.top = top;
    CTEST_CONTEXT("relu n %lld slope %g threshold %g max %g", (long long)n, slope, thr, top);
    out = ctest_everywhere(run_relu, &c, (size_t)(2 * n) * sizeof(float), "relu");
    for (i = 0; i < n; i++) {
        const double v = x[i], kept = v > thr ? v : 0.0;
        const double clipped = kept < 0 ? 0 : kept > top ? top : kept;
        want[i] = clipped - slope * (thr - v > 0 ? thr - v : 0.0);
        bound[i] = 4.0 * CTEST_U * (fabs(want[i]) + fabs(v) + thr);
        want[n + i] = (v > thr && v > 0 && v < top ? dy[i] : 0.0) +
                      (v < thr ? (double)slope * dy[i] : 0.0);
        bound[n + i] = 2.0 * CTEST_U * fabs(want[n + i]);
    }
    ctest_close("relu y", (float *)out, want, bound, n);
    ctest_close("relu dx", (float *)out + n, want + n, bound + n, n);
    free(out); free(x); free(dy); free(want); free(bound);
}

/* ---- softmax over the middle axis ----------------------------------------------------- */

typedef struct {
    const float *x, *dy;
    int64_t outer, len, inner;
} sm_case;

static void run_softmax_axis(void *ctx, unsigned char *out) {
    const sm_case *t = ctx;
    const int64_t n = t->outer * t->len * t->inner;
    float *y = (float *)out, *dx = y + n;
    CHECK(pynn_softmax_axis_forward(y, t->x, t->outer, t->len, t->inner) == PYNN_OK, "fwd");
    CHECK(pynn_softmax_axis_backward(dx, y, t->dy, t->outer, t->len, t->inner) == PYNN_OK,
          "bwd");
}

static void check_softmax_axis(int64_t outer, int64_t len, int64_t inner) {
    const int64_t n = outer * len * inner;
    float *x = ctest_floats(n, -6.0f, 6.0f), *dy = ctest_floats(n, -1.0f, 1.0f), *y;
    double *want = ctest_new_doubles(2 * n), *bound = ctest_new_doubles(2 * n);
    sm_case c;
    unsigned char *out;
    int64_t o, i, j;
    c.x = x; c.dy = dy; c.outer = outer; c.len = len; c.inner = inner;
    CTEST_CONTEXT("softmax axis %lld x %lld x %lld", (long long)outer, (long long)len,
                  (long long)inner);
    out = ctest_everywhere(run_softmax_axis, &c, (size_t)(2 * n) * sizeof(float), "softmax");
    y = (float *)out;
    for (o = 0; o < outer; o++)
        for (i = 0; i < inner; i++) {
            const int64_t base = o * len * inner + i;
            double m = x[base], s = 0.0, dot = 0.0, mag = 0.0;
            for (j = 1; j < len; j++) m = x[base + j * inner] > m ? x[base + j * inner] : m;
            for (j = 0; j < len; j++) s += exp((double)x[base + j * inner] - m);
            for (j = 0; j < len; j++) {
                const int64_t k = base + j * inner;
                want[k] = exp((double)x[k] - m) / s;
                bound[k] = CTEST_U * want[k] * (fabs((double)x[k] - m) + 6.0 * (double)len + 8.0) +
                           FLT_MIN;
                dot += (double)dy[k] * y[k];
                mag += fabs((double)dy[k] * y[k]);
            }
            for (j = 0; j < len; j++) {
                const int64_t k = base + j * inner;
                want[n + k] = y[k] * ((double)dy[k] - dot);
                bound[n + k] = fabs((double)y[k]) * CTEST_U * (mag + fabs(dot) +
                                                               2.0 * fabs(dy[k] - dot)) + FLT_MIN;
            }
        }
    ctest_close("softmax y", y, want, bound, n);
    ctest_close("softmax dx", y + n, want + n, bound + n, n);
    free(out); free(x); free(dy); free(want); free(bound);
}

/* Keras's masked softmax: where(mask, softmax(where(mask, x, -1e9)), 0) */
static void run_softmax_masked(void *ctx, unsigned char *out) {
    const float *const *p = ctx;   /* x, mask */
    CHECK(pynn_softmax_axis_masked_forward((float *)out, p[0], p[1], 4, 7, 3) == PYNN_OK,
          "masked");
}

static void check_softmax_masked(void) {
    const int64_t outer = 4, len = 7, inner = 3, n = outer * len * inner;
    float *x = ctest_floats(n, -6.0f, 6.0f), *mask = ctest_floats(n, 0.0f, 1.0f), *y;
    double *want = ctest_new_doubles(n), *bound = ctest_new_doubles(n);
    const float *ctx[2];
    unsigned char *out;
    int64_t o, i, j;
    for (j = 0; j < len; j++) mask[j * inner + 1] = 0.0f;      /* a column masked throughout */
    ctx[0] = x;
    ctx[1] = mask;
    CTEST_CONTEXT("softmax masked");
    out = ctest_everywhere(run_softmax_masked, ctx, (size_t)n * sizeof(float), "masked");
    y = (float *)out;
    for (o = 0; o < outer; o++)
        for (i = 0; i < inner; i++) {
            const int64_t base = o * len * inner + i;
            double m = -1e300, s = 0.0;
            for (j = 0; j < len; j++) {
                const int64_t k = base + j * inner;
                const double v = mask[k] > 0.5f ? (double)x[k] : -1e9;
                m = v > m ? v : m;
            }
            for (j = 0; j < len; j++) {
                const int64_t k = base + j * inner;
                s += exp((mask[k] > 0.5f ? (double)x[k] : -1e9) - m);
            }
            for (j = 0; j < len; j++) {
                const int64_t k = base + j * inner;
                want[k] = mask[k] > 0.5f ? exp((double)x[k] - m) / s : 0.0;
                bound[k] = CTEST_U * want[k] * (fabs((double)x[k] - m) + 6.0 * (double)len + 8.0) +
                           FLT_MIN;
            }
        }
    ctest_close("masked softmax y", y, want, bound, n);
    CHECK(pynn_softmax_axis_masked_forward(y, x, NULL, 4, 7, 3) == PYNN_OK, "no mask");
    free(out); free(x); free(mask); free(want); free(bound);
}

/* ---- PReLU -------------------------------------------------------------------------- */

typedef struct {
    const float *x, *dy, *alpha;
    int64_t rows, rank, na;
    const int64_t *dims, *shared;
} prelu_case;

static void run_prelu(void *ctx, unsigned char *out) {
    const prelu_case *t = ctx;
    int64_t per = 1, k;
    float *y, *dx, *da;
    for (k = 0; k < t->rank; k++) per *= t->dims[k];
    y = (float *)out;
    dx = y + t->rows * per;
    da = dx + t->rows * per;
    CHECK(pynn_prelu_forward(y, t->x, t->alpha, t->rows, t->rank, t->dims, t->shared) == PYNN_OK,
          "prelu");
    CHECK(pynn_prelu_backward(dx, da, t->x, t->alpha, t->dy, t->rows, t->rank, t->dims,
                              t->shared) == PYNN_OK, "prelu backward");
}

static void check_prelu(int64_t rows, int64_t rank, const int64_t *dims, const int64_t *shared) {
    int64_t per = 1, na = 1, k, r, p;
    float *x, *dy, *alpha, *got;
    double *want, *bound, *mag;
    prelu_case c;
    unsigned char *out;
    for (k = 0; k < rank; k++) {
        per *= dims[k];
        if (!shared[k]) na *= dims[k];
    }
    x = ctest_floats(rows * per, -2.0f, 2.0f);
    dy = ctest_floats(rows * per, -1.0f, 1.0f);
    alpha = ctest_floats(na, -0.5f, 0.5f);
    want = ctest_new_doubles(2 * rows * per + na);
    bound = ctest_new_doubles(2 * rows * per + na);
    mag = ctest_new_doubles(na);
    c.x = x; c.dy = dy; c.alpha = alpha; c.rows = rows; c.rank = rank; c.na = na;
    c.dims = dims; c.shared = shared;
    CTEST_CONTEXT("prelu rows %lld rank %lld", (long long)rows, (long long)rank);
    out = ctest_everywhere(run_prelu, &c, (size_t)(2 * rows * per + na) * sizeof(float),
                           "prelu");
    got = (float *)out;
    for (k = 0; k < na; k++) want[2 * rows * per + k] = mag[k] = 0.0;
    for (r = 0; r < rows; r++)
        for (p = 0; p < per; p++) {
            /* alpha's index of p: the non-shared coordinates, row-major */
            int64_t rem = p, a = 0, stride = 1, kk;
            for (kk = rank - 1; kk >= 0; kk--) {
                const int64_t coord = rem % dims[kk];
                rem /= dims[kk];
                if (!shared[kk]) {
                    a += coord * stride;
                    stride *= dims[kk];
                }
            }
            {
                const int64_t i = r * per + p;
                const double v = x[i], g = dy[i];
                want[i] = v > 0 ? v : (double)alpha[a] * v;
                bound[i] = CTEST_U * fabs(want[i]);
                want[rows * per + i] = v > 0 ? g : (double)alpha[a] * g;
                bound[rows * per + i] = CTEST_U * fabs(want[rows * per + i]);
                if (v < 0) {
                    want[2 * rows * per + a] += g * v;
                    mag[a] += fabs(g * v);
                }
            }
        }
    for (k = 0; k < na; k++)
        bound[2 * rows * per + k] = 4.0 * CTEST_U * mag[k] + FLT_MIN;
    ctest_close("prelu", got, want, bound, 2 * rows * per + na);
    free(out); free(x); free(dy); free(alpha); free(want); free(bound); free(mag);
}

static void check_refusals(void) {
    float a[8] = {0}, b[8] = {0}, c[8] = {0};
    const int64_t dims[2] = {2, 4}, shared[2] = {0, 1}, bad_dims[2] = {2, 0};
    CHECK(pynn_relu_forward(a, b, 8, -0.1f, 0.0f, INFINITY) == PYNN_EINVAL, "slope < 0");
    CHECK(pynn_relu_forward(a, b, 8, 0.1f, 0.0f, -1.0f) == PYNN_EINVAL, "max < 0");
    CHECK(pynn_relu_forward(a, b, 8, 0.1f, NAN, 1.0f) == PYNN_EINVAL, "threshold NaN");
    CHECK(pynn_relu_forward(NULL, b, 8, 0.1f, 0.0f, 1.0f) == PYNN_EINVAL, "y NULL");
    CHECK(pynn_relu_backward(a, b, NULL, 8, 0.1f, 0.0f, 1.0f) == PYNN_EINVAL, "dy NULL");
    CHECK(pynn_relu_forward(NULL, NULL, 0, 0.1f, 0.0f, 1.0f) == PYNN_OK, "empty");
    CHECK(pynn_softmax_axis_forward(a, b, -1, 2, 2) == PYNN_EINVAL, "outer < 0");
    CHECK(pynn_softmax_axis_forward(NULL, b, 1, 2, 2) == PYNN_EINVAL, "y NULL");
    CHECK(pynn_softmax_axis_backward(a, b, NULL, 1, 2, 2) == PYNN_EINVAL, "dy NULL");
    CHECK(pynn_softmax_axis_forward(NULL, NULL, 0, 2, 2) == PYNN_OK, "empty");
    CHECK(pynn_prelu_forward(a, b, c, 1, 2, bad_dims, shared) == PYNN_EINVAL, "dim 0");
    CHECK(pynn_prelu_forward(a, b, c, 1, 0, dims, shared) == PYNN_EINVAL, "rank 0");
    CHECK(pynn_prelu_forward(a, b, c, 1, 17, dims, shared) == PYNN_EINVAL, "rank 17");
    CHECK(pynn_prelu_forward(a, b, NULL, 1, 2, dims, shared) == PYNN_EINVAL, "alpha NULL");
    CHECK(pynn_prelu_backward(a, b, NULL, c, a, 1, 2, dims, shared) == PYNN_EINVAL, "x NULL");
    CHECK(pynn_prelu_backward(NULL, NULL, b, c, a, 1, 2, dims, shared) == PYNN_OK,
          "neither gradient wanted");
    CHECK(pynn_activation_forward(a, b, 2, 4, PYNN_ACT_COUNT, 0.0f) == PYNN_EINVAL,
          "act past the list");
    CHECK(pynn_activation_backward(a, b, c, a, 2, 4, PYNN_ACT_COUNT, 0.0f) == PYNN_EINVAL,
          "act past the list");
}

int main(void) {
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {2, 4097}, {9, 1031}, {40, 1000}};
    static const int64_t d1[1] = {37}, s1[1] = {0};
    static const int64_t d3[3] = {5, 6, 7}, s3a[3] = {1, 1, 0}, s3b[3] = {0, 1, 0};
    static const int64_t s3c[3] = {1, 1, 1};
    size_t s;
    int act;
    ctest_seed(7);
    check_refusals();
    for (act = PYNN_ACT_ELU; act <= PYNN_ACT_LOG_SOFTMAX; act++)
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            check_act(shapes[s][0], shapes[s][1], act);
    check_relu(1, 0.0f, 0.0f, 1.5f);
    check_relu(9001, 0.2f, 0.5f, INFINITY);
    check_relu(40000, 0.3f, 1.0f, 2.0f);
    check_softmax_axis(1, 5, 1);
    check_softmax_axis(3, 4, 7);
    check_softmax_axis(200, 13, 20);
    check_softmax_axis(2, 1, 3);
    check_softmax_masked();
    check_prelu(3, 1, d1, s1);
    check_prelu(70, 3, d3, s3a);
    check_prelu(160, 3, d3, s3b);
    check_prelu(5, 3, d3, s3c);
    return ctest_finish("test_act_layers");
}
