/* batchnorm.c -- batch normalization over the rows of a (rows x c) array, and the
 * dropout product.
 *
 * A BatchNormalization layer over NHWC images reshapes them to (N*H*W, C): the
 * statistics are per column.  Batches of images have many rows and few columns, so
 * the column sums are parallel over chunks of rows: each chunk's partial sums (one per
 * column) are written by one thread, and the partials are added in chunk order
 * afterwards, so the result does not depend on the thread count.  A chunk is
 * PYNN_REDUCE_CHUNK rows, or longer for tall arrays so that there are at most
 * BN_MAX_CHUNKS of them (the chunking depends on the shape alone): then the partials of
 * up to 64 channels fit on the stack and a training step allocates nothing.  Wider
 * layers allocate their partials for the call.
 *
 * The arithmetic follows pynn/backend/reference.py expression by expression:
 *   mean = sum(x) / rows;  var = sum((x - mean)^2) / rows  (biased, as Keras 3);
 *   inv_std = 1 / sqrt(var + eps);  y = (x - mean) * inv_std * gamma + beta;
 *   moving = moving * momentum + stat * (1 - momentum).
 */
#include <math.h>
#include <stdlib.h>
#include "internal.h"

#define BN_MAX_CHUNKS 64
#define BN_STACK_PARTIALS (BN_MAX_CHUNKS * 2 * 64)
/* per-channel temporaries of the inference backward on the stack up to this many channels */
#define BN_STACK_COLS 2048

enum { BN_SUM, BN_SQUARED_DEVIATION, BN_GRADIENTS };

/* out0 (and out1 for BN_GRADIENTS) = column sums over the rows of:
 *   BN_SUM: x;  BN_SQUARED_DEVIATION: (x - mean)^2;
 *   BN_GRADIENTS: dy into out0 and dy * (x - mean) * inv_std into out1. */
static int chunked_column_sums(float *out0, float *out1, const float *x, const float *dy,
                               const float *mean, const float *inv_std, int64_t rows,
                               int64_t cols, int mode) {
    const int64_t chunk = rows > BN_MAX_CHUNKS * PYNN_REDUCE_CHUNK
                              ? (rows + BN_MAX_CHUNKS - 1) / BN_MAX_CHUNKS : PYNN_REDUCE_CHUNK;
    const int64_t nchunks = (rows + chunk - 1) / chunk;
    const int64_t nsums = mode == BN_GRADIENTS ? 2 : 1;
    float stack_partials[BN_STACK_PARTIALS], *partials = stack_partials;
    int64_t ch, j;
    if (nchunks * nsums * cols > BN_STACK_PARTIALS) {
        partials = (float *)malloc((size_t)(nchunks * nsums * cols) * sizeof(float));
        PYNN_RETURN_IF(partials == NULL, PYNN_ENOMEM);
    }
    /* chunks of rows: each chunk's partial sums are written by one thread */
    PYNN_PARALLEL_FOR(nchunks > 1 ? pynn_threads_for(rows * cols) : 1,
        for (ch = 0; ch < nchunks; ch++) {
            const int64_t r0 = ch * chunk;
            const int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
            float *p0 = partials + ch * nsums * cols, *p1 = p0 + cols;
            int64_t r, e;
            for (e = 0; e < nsums * cols; e++) p0[e] = 0.0f;
            for (r = r0; r < r1; r++) {                       /* rows of the chunk, in order */
                const float *xr = x + r * cols;
                if (mode == BN_SUM) {
                    for (e = 0; e < cols; e++) p0[e] += xr[e];
                } else if (mode == BN_SQUARED_DEVIATION) {
                    for (e = 0; e < cols; e++) {
                        const float d = xr[e] - mean[e];
                        p0[e] += d * d;
                    }
                } else {
                    const float *gr = dy + r * cols;
                    for (e = 0; e < cols; e++) {
                        p0[e] += gr[e];
                        p1[e] += gr[e] * ((xr[e] - mean[e]) * inv_std[e]);
                    }
                }
            }
        });
    for (j = 0; j < cols; j++) {
        out0[j] = 0.0f;
        if (mode == BN_GRADIENTS) out1[j] = 0.0f;
    }
    for (ch = 0; ch < nchunks; ch++)                      /* chunk order */
        for (j = 0; j < cols; j++) {
            out0[j] += partials[ch * nsums * cols + j];
            if (mode == BN_GRADIENTS) out1[j] += partials[ch * nsums * cols + cols + j];
        }
    if (partials != stack_partials) free(partials);
    return PYNN_OK;
}

/* y = (x - mean) * inv_std * gamma + beta, rows in parallel (gamma, beta may be NULL). */
static void normalize_rows(float *y, const float *x, const float *mean, const float *inv_std,
                           const float *gamma, const float *beta, int64_t rows, int64_t cols) {
    int64_t r;
    /* rows: each row of y is written by one thread (a plain OpenMP region here: through
     * PYNN_PARALLEL_FOR, GCC's inlining into forward_infer warns about inv_std falsely
     * when built without OpenMP) */
#pragma omp parallel for schedule(static) num_threads(pynn_threads_for(rows * cols))
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        int64_t e;
        for (e = 0; e < cols; e++) {
            float v = (xr[e] - mean[e]) * inv_std[e];
            if (gamma != NULL) v = v * gamma[e];
            if (beta != NULL) v = v + beta[e];
            yr[e] = v;
        }
    }
}

int pynn_batchnorm_forward_train(float *y, float *mean, float *inv_std, float *moving_mean,
                                 float *moving_variance, const float *x, const float *gamma,
                                 const float *beta, int64_t rows, int64_t cols, float momentum,
                                 float epsilon) {
    const float frows = (float)rows;
    int64_t j;
    int status;
    PYNN_RETURN_IF(rows < 1 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(y == NULL || mean == NULL || inv_std == NULL || moving_mean == NULL ||
                   moving_variance == NULL || x == NULL, PYNN_EINVAL);
    status = chunked_column_sums(mean, NULL, x, NULL, NULL, NULL, rows, cols, BN_SUM);
    if (status != PYNN_OK) return status;
    for (j = 0; j < cols; j++) mean[j] = mean[j] / frows;
    /* the variance's sums go to inv_std, which then becomes 1 / sqrt(var + eps) */
    status = chunked_column_sums(inv_std, NULL, x, NULL, mean, NULL, rows, cols,
                                 BN_SQUARED_DEVIATION);
    if (status != PYNN_OK) return status;
    for (j = 0; j < cols; j++) {
        const float var = inv_std[j] / frows;
        inv_std[j] = 1.0f / sqrtf(var + epsilon);
        moving_mean[j] = moving_mean[j] * momentum + mean[j] * (1.0f - momentum);
        moving_variance[j] = moving_variance[j] * momentum + var * (1.0f - momentum);
    }
    normalize_rows(y, x, mean, inv_std, gamma, beta, rows, cols);
    return PYNN_OK;
}

int pynn_batchnorm_forward_infer(float *y, const float *x, const float *gamma, const float *beta,
                                 const float *moving_mean, const float *moving_variance,
                                 int64_t rows, int64_t cols, float epsilon) {
    float stack_inv[BN_STACK_PARTIALS], *inv_std = stack_inv;
    int64_t j;
    PYNN_RETURN_IF(rows < 0 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(y == NULL || x == NULL || moving_mean == NULL || moving_variance == NULL,
                   PYNN_EINVAL);
    if (cols > BN_STACK_PARTIALS) {
        inv_std = (float *)malloc((size_t)cols * sizeof(float));
        PYNN_RETURN_IF(inv_std == NULL, PYNN_ENOMEM);
    }
    for (j = 0; j < cols; j++) inv_std[j] = 1.0f / sqrtf(moving_variance[j] + epsilon);
    normalize_rows(y, x, moving_mean, inv_std, gamma, beta, rows, cols);
    if (inv_std != stack_inv) free(inv_std);
    return PYNN_OK;
}

int pynn_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                            const float *gamma, const float *mean, const float *inv_std,
                            const float *dy, int64_t rows, int64_t cols) {
    float stack_sums[2 * BN_STACK_PARTIALS], *sum_dy = stack_sums, *sum_dy_xhat;
    const float frows = (float)rows;
    int64_t r;
    int status;
    PYNN_RETURN_IF(rows < 1 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(x == NULL || mean == NULL || inv_std == NULL || dy == NULL, PYNN_EINVAL);
    if (cols > BN_STACK_PARTIALS) {
        sum_dy = (float *)malloc((size_t)(2 * cols) * sizeof(float));
        PYNN_RETURN_IF(sum_dy == NULL, PYNN_ENOMEM);
    }
    sum_dy_xhat = sum_dy + cols;
    status = chunked_column_sums(sum_dy, sum_dy_xhat, x, dy, mean, inv_std, rows, cols,
                                 BN_GRADIENTS);
    if (status == PYNN_OK && dx != NULL) {
        /* rows: each row of dx is written by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(rows * cols),
            for (r = 0; r < rows; r++) {
                const float *xr = x + r * cols, *gr = dy + r * cols;
                float *dr = dx + r * cols;
                int64_t e;
                for (e = 0; e < cols; e++) {
                    const float scale = gamma != NULL ? gamma[e] * inv_std[e] : inv_std[e];
                    const float xhat = (xr[e] - mean[e]) * inv_std[e];
                    dr[e] = scale * (gr[e] - sum_dy[e] / frows - xhat * (sum_dy_xhat[e] / frows));
                }
            });
    }
    if (status == PYNN_OK) {
        int64_t j;
        for (j = 0; j < cols; j++) {
            if (dbeta != NULL) dbeta[j] = sum_dy[j];
            if (dgamma != NULL) dgamma[j] = sum_dy_xhat[j];
        }
    }
    if (sum_dy != stack_sums) free(sum_dy);
    return status;
}

/* Backward of the inference form: the statistics are constants, so
 *   dbeta = column sums of dy;  dgamma = column sums of dy * xhat;  dx = dy * gamma * inv_std
 * with inv_std = 1 / sqrt(moving_variance + eps) and xhat = (x - moving_mean) * inv_std,
 * the same expressions as forward_infer.  The column sums are the chunked ones of
 * batchnorm_backward (BN_GRADIENTS with the moving statistics in place of the batch's). */
int pynn_batchnorm_infer_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                                  const float *gamma, const float *moving_mean,
                                  const float *moving_variance, const float *dy, int64_t rows,
                                  int64_t cols, float epsilon) {
    float stack_buf[3 * BN_STACK_COLS], *inv_std = stack_buf, *sum_dy, *sum_dy_xhat;
    int64_t r, j;
    int status = PYNN_OK;
    PYNN_RETURN_IF(rows < 0 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((moving_mean == NULL || moving_variance == NULL) && cols > 0, PYNN_EINVAL);
    PYNN_RETURN_IF((x == NULL || dy == NULL) && rows * cols > 0, PYNN_EINVAL);
    if (cols == 0) return PYNN_OK;
    if (cols > BN_STACK_COLS) {
        inv_std = (float *)malloc((size_t)(3 * cols) * sizeof(float));
        PYNN_RETURN_IF(inv_std == NULL, PYNN_ENOMEM);
    }
    sum_dy = inv_std + cols;
    sum_dy_xhat = sum_dy + cols;
    for (j = 0; j < cols; j++) inv_std[j] = 1.0f / sqrtf(moving_variance[j] + epsilon);
    if (dgamma != NULL || dbeta != NULL) {
        if (rows > 0)
            status = chunked_column_sums(sum_dy, sum_dy_xhat, x, dy, moving_mean, inv_std, rows,
                                         cols, BN_GRADIENTS);
        else
            for (j = 0; j < cols; j++) sum_dy[j] = sum_dy_xhat[j] = 0.0f;
        if (status == PYNN_OK)
            for (j = 0; j < cols; j++) {
                if (dbeta != NULL) dbeta[j] = sum_dy[j];
                if (dgamma != NULL) dgamma[j] = sum_dy_xhat[j];
            }
    }
    if (status == PYNN_OK && dx != NULL && rows * cols > 0) {
        /* rows: each row of dx is written by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(rows * cols),
            for (r = 0; r < rows; r++) {
                const float *gr = dy + r * cols;
                float *dr = dx + r * cols;
                int64_t e;
                for (e = 0; e < cols; e++)
                    dr[e] = gr[e] * (gamma != NULL ? gamma[e] * inv_std[e] : inv_std[e]);
            });
    }
    if (inv_std != stack_buf) free(inv_std);
    return status;
}

/* y = x * mask elementwise (n values): dropout's forward and backward. y may be x. */
int pynn_multiply(float *y, const float *x, const float *mask, int64_t n) {
    int64_t i;
    PYNN_RETURN_IF(n < 0 || ((y == NULL || x == NULL || mask == NULL) && n > 0), PYNN_EINVAL);
    /* elements: each written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) y[i] = x[i] * mask[i];);
    return PYNN_OK;
}
