/* activations.c -- activation forward and backward over (rows x cols) arrays.
 *
 * The elementwise forward activations come from act_elementwise.h, the same code
 * the GEMM epilogue runs, so the fused and the stand-alone paths agree bitwise.
 * Softmax is row-wise and lives here (max-subtracted expf, a float sum in index
 * order, then e_j / s); the GEMM's softmax epilogue calls it once the rows are complete.
 *
 * Every output element is written by one thread and every sum runs along one row
 * in index order, so results do not depend on the thread count.
 */
#include <math.h>
#include <string.h>
#include "internal.h"
#include "act_elementwise.h"

/* Elementwise work is cut into spans of this many elements, so a tall thin array
 * (N x 1) parallelises as well as a wide one. */
#define PYNN_ACT_SPAN 4096

/* y[r, :] = softmax(x[r, :]) for one row of n values; y may equal x.
 * m = max, e_j = expf(x_j - m) (vectorised, pynn_exp_span), s = sum of e in index
 * order, y_j = e_j / s. */
static void softmax_row(float *y, const float *x, int64_t n) {
    float m = x[0], s = 0.0f;
    int64_t j;
    for (j = 1; j < n; j++) m = x[j] > m ? x[j] : m;
    for (j = 0; j < n; j++) y[j] = x[j] - m;
    pynn_exp_span(y, y, n);
    for (j = 0; j < n; j++) s += y[j];
    for (j = 0; j < n; j++) y[j] = y[j] / s;
}

/* y = act(x); x and y are (rows x cols), y may equal x. */
int pynn_activation_forward(float *y, const float *x, int64_t rows, int64_t cols,
                            int act, float alpha) {
    int64_t n, nspans, s, r;
    PYNN_RETURN_IF(rows < 0 || cols < 0 || y == NULL || x == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(act < PYNN_ACT_LINEAR || act > PYNN_ACT_GELU, PYNN_EINVAL);
    n = rows * cols;
    if (n == 0) return PYNN_OK;

    if (act == PYNN_ACT_SOFTMAX) {
        /* rows: one row per iteration, each row summed by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (r = 0; r < rows; r++) softmax_row(y + r * cols, x + r * cols, cols););
        return PYNN_OK;
    }

    /* The array is contiguous, so the elementwise forms run over the whole buffer. */
    nspans = (n + PYNN_ACT_SPAN - 1) / PYNN_ACT_SPAN;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (s = 0; s < nspans; s++) {
            int64_t start = s * PYNN_ACT_SPAN;
            int64_t len = n - start < PYNN_ACT_SPAN ? n - start : PYNN_ACT_SPAN;
            /* cannot fail: act was checked above and softmax handled */
            (void)pynn_act_span(y + start, x + start, len, act, alpha);
        });
    return PYNN_OK;
}

/* dx[r, :] = softmax'(x) dy for one row: y_i (dy_i - sum_j dy_j y_j); dx may equal dy.
 * The dot product is accumulated in double: dy_i - dot cancels when dy is nearly
 * constant along the row, and a float sum of a wide row would lose digits there. */
static void softmax_backward_row(float *dx, const float *y, const float *dy, int64_t n) {
    double dot = 0.0;
    float dotf;
    int64_t j;
    for (j = 0; j < n; j++) dot += (double)(dy[j] * y[j]);
    dotf = (float)dot;
    for (j = 0; j < n; j++) dx[j] = y[j] * (dy[j] - dotf);
}

/* dx = act'(x) dy; x the pre-activation, y = act(x); dx may equal dy. */
int pynn_activation_backward(float *dx, const float *x, const float *y, const float *dy,
                             int64_t rows, int64_t cols, int act, float alpha) {
    int64_t n, nspans, s, r;
    PYNN_RETURN_IF(rows < 0 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(dx == NULL || x == NULL || y == NULL || dy == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(act < PYNN_ACT_LINEAR || act > PYNN_ACT_GELU, PYNN_EINVAL);
    n = rows * cols;
    if (n == 0) return PYNN_OK;

    if (act == PYNN_ACT_SOFTMAX) {
        /* rows: the dot product of a row is summed by one thread in index order */
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (r = 0; r < rows; r++)
                softmax_backward_row(dx + r * cols, y + r * cols, dy + r * cols, cols););
        return PYNN_OK;
    }

    nspans = (n + PYNN_ACT_SPAN - 1) / PYNN_ACT_SPAN;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (s = 0; s < nspans; s++) {
            int64_t start = s * PYNN_ACT_SPAN;
            int64_t len = n - start < PYNN_ACT_SPAN ? n - start : PYNN_ACT_SPAN;
            pynn_act_backward_span(dx + start, x + start, y + start, dy + start, len, act, alpha);
        });
    return PYNN_OK;
}
