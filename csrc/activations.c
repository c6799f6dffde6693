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

/* y[r, :] = softmax(x[r, :]) for rows r < rows of n values; y may equal x.
 * Per row: m = max, e_j = expf(x_j - m) (vectorised, pynn_exp_span), s = sum of e in
 * index order, y_j = e_j / s.  Rows of a few values are done SOFTMAX_BLOCK_FLOATS
 * at a time, each step over all of them (one expf span): one row's chain of dependent
 * steps (max, exp, sum, divide) is short of work, many rows' keep the core busy.  Every
 * value is computed as it would be alone. */
#define SOFTMAX_BLOCK_FLOATS 1024

static void softmax_rows(float *y, const float *x, int64_t rows, int64_t n) {
    const int64_t per_block = n < SOFTMAX_BLOCK_FLOATS ? SOFTMAX_BLOCK_FLOATS / n : 1;
    int64_t r0, r, j;
    for (r0 = 0; r0 < rows; r0 += per_block) {        /* blocks of rows */
        const int64_t r1 = r0 + per_block < rows ? r0 + per_block : rows;
        for (r = r0; r < r1; r++) {                   /* rows: x - max */
            const float *xr = x + r * n;
            float *yr = y + r * n, m = xr[0];
            for (j = 1; j < n; j++) m = xr[j] > m ? xr[j] : m;
            for (j = 0; j < n; j++) yr[j] = xr[j] - m;
        }
        pynn_exp_span(y + r0 * n, y + r0 * n, (r1 - r0) * n);
        for (r = r0; r < r1; r++) {                   /* rows: e / sum e */
            float *yr = y + r * n, s = 0.0f;
            for (j = 0; j < n; j++) s += yr[j];
            for (j = 0; j < n; j++) yr[j] = yr[j] / s;
        }
    }
}

/* activations (engineer A): y[r, :] = log_softmax(x[r, :]) = x - m - log(sum_j exp(x_j - m)),
 * m the row's max (jax.nn.log_softmax), the sum a float in index order; y may equal x.
 * The exps go to a span of the caller's stack, SOFTMAX_BLOCK_FLOATS at a time. */
static void log_softmax_row(float *y, const float *x, int64_t n) {
    float e[SOFTMAX_BLOCK_FLOATS], m = x[0], s = 0.0f, ls;
    int64_t j, j0, len;
    for (j = 1; j < n; j++) m = x[j] > m ? x[j] : m;
    for (j0 = 0; j0 < n; j0 += SOFTMAX_BLOCK_FLOATS) {
        len = n - j0 < SOFTMAX_BLOCK_FLOATS ? n - j0 : SOFTMAX_BLOCK_FLOATS;
        for (j = 0; j < len; j++) e[j] = x[j0 + j] - m;
        pynn_exp_span(e, e, len);
        for (j = 0; j < len; j++) s += e[j];
    }
    ls = logf(s);
    for (j = 0; j < n; j++) y[j] = (x[j] - m) - ls;
}

/* y = act(x); x and y are (rows x cols), y may equal x. */
int pynn_activation_forward(float *y, const float *x, int64_t rows, int64_t cols,
                            int act, float alpha) {
    int64_t n, nspans, s, r;
    PYNN_RETURN_IF(rows < 0 || cols < 0 || y == NULL || x == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(!pynn_act_valid(act), PYNN_EINVAL);
    n = rows * cols;
    if (n == 0) return PYNN_OK;

    if (act == PYNN_ACT_SOFTMAX) {
        /* chunks of rows: each row normalised by one thread */
        const int64_t chunk = PYNN_ACT_SPAN / cols > 1 ? PYNN_ACT_SPAN / cols : 1;
        const int64_t nchunks = (rows + chunk - 1) / chunk;
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (r = 0; r < nchunks; r++) {
                const int64_t r0 = r * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
                softmax_rows(y + r0 * cols, x + r0 * cols, r1 - r0, cols);
            });
        return PYNN_OK;
    }

    if (act == PYNN_ACT_LOG_SOFTMAX) {   /* engineer A: each row by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (r = 0; r < rows; r++) log_softmax_row(y + r * cols, x + r * cols, cols););
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

/* engineer A: dx[r, :] = log_softmax'(x) dy = dy_i - exp(y_i) sum_j dy_j, the sum in double
 * in index order; dx may equal dy. */
static void log_softmax_backward_row(float *dx, const float *y, const float *dy, int64_t n) {
    double sum = 0.0;
    float sumf;
    int64_t j;
    for (j = 0; j < n; j++) sum += (double)dy[j];
    sumf = (float)sum;
    for (j = 0; j < n; j++) dx[j] = dy[j] - expf(y[j]) * sumf;
}

/* dx = act'(x) dy; x the pre-activation, y = act(x); dx may equal dy. */
int pynn_activation_backward(float *dx, const float *x, const float *y, const float *dy,
                             int64_t rows, int64_t cols, int act, float alpha) {
    int64_t n, nspans, s, r;
    PYNN_RETURN_IF(rows < 0 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(dx == NULL || x == NULL || y == NULL || dy == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(!pynn_act_valid(act), PYNN_EINVAL);
    n = rows * cols;
    if (n == 0) return PYNN_OK;

    if (act == PYNN_ACT_SOFTMAX) {
        /* rows: the dot product of a row is summed by one thread in index order */
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (r = 0; r < rows; r++)
                softmax_backward_row(dx + r * cols, y + r * cols, dy + r * cols, cols););
        return PYNN_OK;
    }

    if (act == PYNN_ACT_LOG_SOFTMAX) {   /* engineer A */
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (r = 0; r < rows; r++)
                log_softmax_backward_row(dx + r * cols, y + r * cols, dy + r * cols, cols););
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
