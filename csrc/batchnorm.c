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
 * These kernels move many bytes and do little arithmetic on each, so they are written
 * to read each array as few times as the computation allows:
 * - the training forward reads x once for its statistics and once to normalize.  Each
 *   chunk's sum and its squared deviations around its own mean are two passes over the
 *   chunk while it sits in the cache; the chunks combine (Chan et al.) as
 *     sum((x - mean)^2) = sum over chunks of [ sum((x - m_c)^2) + n_c (m_c - mean)^2 ],
 *   m_c the chunk's mean, in chunk order.
 * - the backward reads x and dy once for both of its column sums and once for dx.
 * - the row loops are batchnorm_kernel.h's, compiled per instruction set: the column
 *   sums keep a few vectors of sums in registers over a chunk's rows (added one row at a
 *   time, in row order), so each row costs one load and one add per vector.
 *
 * The arithmetic follows pynn/backend/reference.py expression by expression (but for the
 * variance's sum, gathered by chunks as above):
 *   mean = sum(x) / rows;  var = sum((x - mean)^2) / rows  (biased, as Keras 3);
 *   inv_std = 1 / sqrt(var + eps);  y = (x - mean) * inv_std * gamma + beta;
 *   moving = moving * momentum + stat * (1 - momentum).
 */
#include <math.h>
#include <stdlib.h>
#include "internal.h"
#include "batchnorm_internal.h"

#define BN_MAX_CHUNKS 64
#define BN_STACK_COLS 64              /* columns whose chunk partials stay on the stack */
#define BN_STACK_PARTIALS (BN_MAX_CHUNKS * 3 * BN_STACK_COLS)
/* per-channel temporaries on the stack up to this many channels */
#define BN_STACK_TEMPS 2048

enum { BN_STATISTICS, BN_GRADIENTS };

/* The row loops of the level in use (dispatch.c), taken once per call. */
static const pynn_bn_kernels *bn_kernels(void) {
    switch (pynn_level()) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_bn_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_bn_avx2;
#endif
    default:
        return &pynn_bn_generic;
    }
}

/* Rows per call of a row loop in the parallel loops over rows */
#define BN_ROW_BLOCK 64

/* BN_STATISTICS: out0 = column sums of x, out1 = column sums of (x - out0 / rows)^2,
 *   gathered by chunks as the top of the file says;
 * BN_GRADIENTS: out0 = column sums of dy, out1 = of dy * (x - mean) * inv_std. */
static int chunked_column_sums(float *out0, float *out1, const float *x, const float *dy,
                               const float *mask, const float *mean, const float *inv_std,
                               int64_t rows, int64_t cols, int mode) {
    const int64_t chunk = rows > BN_MAX_CHUNKS * PYNN_REDUCE_CHUNK
                              ? (rows + BN_MAX_CHUNKS - 1) / BN_MAX_CHUNKS : PYNN_REDUCE_CHUNK;
    const int64_t nchunks = (rows + chunk - 1) / chunk;
    const int64_t nsums = mode == BN_STATISTICS ? 3 : 2;   /* sum, chunk mean, squares */
    const pynn_bn_kernels *kernels = bn_kernels();
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
            int64_t e;
            for (e = 0; e < nsums * cols; e++) p0[e] = 0.0f;
            if (mode == BN_STATISTICS) {
                /* the chunk is still in the cache for its second pass */
                float *p2 = p1 + cols;
                kernels->add_rows(p0, x, r0, r1, cols);
                for (e = 0; e < cols; e++) p1[e] = p0[e] / (float)(r1 - r0);
                kernels->add_squared_deviations(p2, x, p1, r0, r1, cols);
            } else {
                kernels->add_gradient_rows(p0, p1, x, dy, mask, mean, inv_std, r0, r1, cols);
            }
        });
    for (j = 0; j < cols; j++) {                          /* columns: chunk order */
        float s0 = 0.0f, s1 = 0.0f;
        for (ch = 0; ch < nchunks; ch++) s0 += partials[ch * nsums * cols + j];
        if (mode == BN_STATISTICS) {
            const float m = s0 / (float)rows;
            for (ch = 0; ch < nchunks; ch++) {
                const float *p = partials + ch * nsums * cols;
                const int64_t n_c = (ch + 1) * chunk < rows ? chunk : rows - ch * chunk;
                const float d = p[cols + j] - m;
                s1 = s1 + p[2 * cols + j] + (float)n_c * (d * d);
            }
        } else {
            for (ch = 0; ch < nchunks; ch++) s1 += partials[ch * nsums * cols + cols + j];
        }
        out0[j] = s0;
        out1[j] = s1;
    }
    if (partials != stack_partials) free(partials);
    return PYNN_OK;
}

/* y = (x - mean) * inv_std * gamma + beta, then relu(y) when relu, rows in parallel
 * (gamma, beta may be NULL). */
static void normalize_rows(float *y, const float *x, const float *mean, const float *inv_std,
                           const float *gamma, const float *beta, int64_t rows, int64_t cols,
                           int relu) {
    const pynn_bn_kernels *kernels = bn_kernels();
    const int64_t nblocks = (rows + BN_ROW_BLOCK - 1) / BN_ROW_BLOCK;
    int64_t b;
    /* blocks of rows: each row of y is written by one thread (a plain OpenMP region here:
     * through PYNN_PARALLEL_FOR, GCC's inlining into forward_infer warns about inv_std
     * falsely when built without OpenMP) */
#pragma omp parallel for schedule(static) num_threads(pynn_threads_for(rows * cols))
    for (b = 0; b < nblocks; b++) {
        const int64_t r0 = b * BN_ROW_BLOCK;
        kernels->normalize_rows(y, x, mean, inv_std, gamma, beta, r0,
                                r0 + BN_ROW_BLOCK < rows ? r0 + BN_ROW_BLOCK : rows, cols, relu);
    }
}

int pynn_batchnorm_forward_train(float *y, float *mean, float *inv_std, float *moving_mean,
                                 float *moving_variance, const float *x, const float *gamma,
                                 const float *beta, int64_t rows, int64_t cols, float momentum,
                                 float epsilon) {
    return pynn_batchnorm_forward_train_act(y, mean, inv_std, moving_mean, moving_variance, x,
                                            gamma, beta, rows, cols, momentum, epsilon,
                                            PYNN_ACT_LINEAR);
}

int pynn_batchnorm_forward_train_act(float *y, float *mean, float *inv_std, float *moving_mean,
                                     float *moving_variance, const float *x, const float *gamma,
                                     const float *beta, int64_t rows, int64_t cols,
                                     float momentum, float epsilon, int act) {
    const float frows = (float)rows;
    int64_t j;
    int status;
    PYNN_RETURN_IF(rows < 1 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(act != PYNN_ACT_LINEAR && act != PYNN_ACT_RELU, PYNN_EINVAL);
    PYNN_RETURN_IF(y == NULL || mean == NULL || inv_std == NULL || moving_mean == NULL ||
                   moving_variance == NULL || x == NULL, PYNN_EINVAL);
    /* the sums of squared deviations go to inv_std, which then becomes 1 / sqrt(var + eps) */
    status = chunked_column_sums(mean, inv_std, x, NULL, NULL, NULL, NULL, rows, cols,
                                 BN_STATISTICS);
    if (status != PYNN_OK) return status;
    for (j = 0; j < cols; j++) {
        const float var = inv_std[j] / frows;
        mean[j] = mean[j] / frows;
        inv_std[j] = 1.0f / sqrtf(var + epsilon);
        moving_mean[j] = moving_mean[j] * momentum + mean[j] * (1.0f - momentum);
        moving_variance[j] = moving_variance[j] * momentum + var * (1.0f - momentum);
    }
    normalize_rows(y, x, mean, inv_std, gamma, beta, rows, cols, act == PYNN_ACT_RELU);
    return PYNN_OK;
}

int pynn_batchnorm_forward_infer(float *y, const float *x, const float *gamma, const float *beta,
                                 const float *moving_mean, const float *moving_variance,
                                 int64_t rows, int64_t cols, float epsilon) {
    float stack_inv[BN_STACK_TEMPS], *inv_std = stack_inv;
    int64_t j;
    PYNN_RETURN_IF(rows < 0 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(y == NULL || x == NULL || moving_mean == NULL || moving_variance == NULL,
                   PYNN_EINVAL);
    if (cols > BN_STACK_TEMPS) {
        inv_std = (float *)malloc((size_t)cols * sizeof(float));
        PYNN_RETURN_IF(inv_std == NULL, PYNN_ENOMEM);
    }
    for (j = 0; j < cols; j++) inv_std[j] = 1.0f / sqrtf(moving_variance[j] + epsilon);
    normalize_rows(y, x, moving_mean, inv_std, gamma, beta, rows, cols, 0);
    if (inv_std != stack_inv) free(inv_std);
    return PYNN_OK;
}

int pynn_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                            const float *gamma, const float *mean, const float *inv_std,
                            const float *dy, int64_t rows, int64_t cols) {
    return pynn_batchnorm_backward_act(dx, dgamma, dbeta, x, gamma, mean, inv_std, dy, NULL,
                                       rows, cols);
}

int pynn_batchnorm_backward_act(float *dx, float *dgamma, float *dbeta, const float *x,
                                const float *gamma, const float *mean, const float *inv_std,
                                const float *dy, const float *relu_y, int64_t rows,
                                int64_t cols) {
    /* per column: the two sums, then dx's constants scale, sum_dy / rows and
     * sum_dy_xhat / rows (the expressions of the loop below, taken out of it) */
    float stack_temps[5 * BN_STACK_TEMPS], *sum_dy = stack_temps, *sum_dy_xhat;
    float *scale, *mean_dy, *mean_dy_xhat;
    const float frows = (float)rows;
    int64_t j;
    int status;
    PYNN_RETURN_IF(rows < 1 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(x == NULL || mean == NULL || inv_std == NULL || dy == NULL, PYNN_EINVAL);
    if (cols > BN_STACK_TEMPS) {
        sum_dy = (float *)malloc((size_t)(5 * cols) * sizeof(float));
        PYNN_RETURN_IF(sum_dy == NULL, PYNN_ENOMEM);
    }
    sum_dy_xhat = sum_dy + cols;
    scale = sum_dy_xhat + cols;
    mean_dy = scale + cols;
    mean_dy_xhat = mean_dy + cols;
    status = chunked_column_sums(sum_dy, sum_dy_xhat, x, dy, relu_y, mean, inv_std, rows, cols,
                                 BN_GRADIENTS);
    if (status == PYNN_OK && dx != NULL) {
        const pynn_bn_kernels *kernels = bn_kernels();
        const int64_t nblocks = (rows + BN_ROW_BLOCK - 1) / BN_ROW_BLOCK;
        int64_t b;
        for (j = 0; j < cols; j++) {
            scale[j] = gamma != NULL ? gamma[j] * inv_std[j] : inv_std[j];
            mean_dy[j] = sum_dy[j] / frows;
            mean_dy_xhat[j] = sum_dy_xhat[j] / frows;
        }
        /* blocks of rows: each row of dx is written by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(rows * cols),
            for (b = 0; b < nblocks; b++) {
                const int64_t r0 = b * BN_ROW_BLOCK;
                kernels->backward_rows(dx, x, dy, relu_y, mean, inv_std, scale, mean_dy,
                                       mean_dy_xhat,
                                       r0, r0 + BN_ROW_BLOCK < rows ? r0 + BN_ROW_BLOCK : rows,
                                       cols);
            });
    }
    if (status == PYNN_OK) {
        for (j = 0; j < cols; j++) {
            if (dbeta != NULL) dbeta[j] = sum_dy[j];
            if (dgamma != NULL) dgamma[j] = sum_dy_xhat[j];
        }
    }
    if (sum_dy != stack_temps) free(sum_dy);
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
    float stack_buf[3 * BN_STACK_TEMPS], *inv_std = stack_buf, *sum_dy, *sum_dy_xhat;
    int64_t r, j;
    int status = PYNN_OK;
    PYNN_RETURN_IF(rows < 0 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF((moving_mean == NULL || moving_variance == NULL) && cols > 0, PYNN_EINVAL);
    PYNN_RETURN_IF((x == NULL || dy == NULL) && rows * cols > 0, PYNN_EINVAL);
    if (cols == 0) return PYNN_OK;
    if (cols > BN_STACK_TEMPS) {
        inv_std = (float *)malloc((size_t)(3 * cols) * sizeof(float));
        PYNN_RETURN_IF(inv_std == NULL, PYNN_ENOMEM);
    }
    sum_dy = inv_std + cols;
    sum_dy_xhat = sum_dy + cols;
    for (j = 0; j < cols; j++) inv_std[j] = 1.0f / sqrtf(moving_variance[j] + epsilon);
    if (dgamma != NULL || dbeta != NULL) {
        if (rows > 0)
            status = chunked_column_sums(sum_dy, sum_dy_xhat, x, dy, NULL, moving_mean, inv_std,
                                         rows, cols, BN_GRADIENTS);
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
