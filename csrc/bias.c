/* bias.c -- the gradient of a bias added to every row (column sums), alone or fused
 * with the activation's backward.  (The bias itself is added in the GEMM's epilogue.)
 *
 * Both are reductions over rows, kept independent of the thread count as column_sums
 * (below) explains.
 */
#include "internal.h"
#include "act_elementwise.h"

/* Columns per block of bias_grad: wide enough for the inner loop to vectorise,
 * small enough for the block's partial sums to live on the stack. */
#define PYNN_BIAS_COL_BLOCK 64

/* The column sums behind bias_grad and activation_backward_bias_grad.
 *
 * Work is split over blocks of PYNN_BIAS_COL_BLOCK columns (one thread each, so a
 * column is never shared).  Inside a block the rows are walked in chunks of
 * PYNN_REDUCE_CHUNK: each chunk's partial starts from zero and sums its rows in
 * order, and the partials are added in chunk order.  No workspace: a block's partial
 * lives on the stack.  When act >= 0 each row segment is first turned into
 * dz = act'(z) dy (written to dz), so the derivative and the sum share one pass. */
/* Narrow matrices (one column block, many rows: a convolution's dz is (N*OH*OW x F))
 * would leave all but one thread idle, so they are split by chunks of rows instead.
 * Each chunk's partial sums are the very ones column_sums computes (from zero, rows in
 * order) and they are combined in the same chunk order, so both give bitwise the same
 * db.  The partials live on the stack: at most this many floats. */
#define PYNN_BIAS_STACK_PARTIALS 8192

static void column_sums_by_chunks(float *db, float *dz, const float *z, const float *y,
                                  const float *dy, int64_t rows, int64_t cols, int act,
                                  float alpha) {
    const int64_t nchunks = (rows + PYNN_REDUCE_CHUNK - 1) / PYNN_REDUCE_CHUNK;
    float partials[PYNN_BIAS_STACK_PARTIALS];
    int64_t c, j;
    /* chunks of rows: each chunk's partial sums are written by one thread */
#pragma omp parallel for schedule(static) num_threads(pynn_threads_for(rows * cols))
    for (c = 0; c < nchunks; c++) {
        const int64_t r0 = c * PYNN_REDUCE_CHUNK;
        const int64_t r1 = r0 + PYNN_REDUCE_CHUNK < rows ? r0 + PYNN_REDUCE_CHUNK : rows;
        const float *src = dy + r0 * cols;
        float *part = partials + c * cols;
        int64_t r, e;
        if (act >= 0) {   /* the chunk's rows are contiguous: one span */
            pynn_act_backward_span(dz + r0 * cols, z + r0 * cols, y + r0 * cols, dy + r0 * cols,
                                   (r1 - r0) * cols, act, alpha);
            src = dz + r0 * cols;
        }
        for (e = 0; e < cols; e++) part[e] = 0.0f;
        for (r = 0; r < r1 - r0; r++)                     /* rows of the chunk, in order */
            for (e = 0; e < cols; e++) part[e] += src[r * cols + e];
    }
    for (j = 0; j < cols; j++) db[j] = partials[j];
    for (c = 1; c < nchunks; c++)                         /* chunk order */
        for (j = 0; j < cols; j++) db[j] += partials[c * cols + j];
}

static void column_sums(float *db, float *dz, const float *z, const float *y, const float *dy,
                        int64_t rows, int64_t cols, int act, float alpha) {
    const int64_t nblocks = (cols + PYNN_BIAS_COL_BLOCK - 1) / PYNN_BIAS_COL_BLOCK;
    const int64_t nchunks = (rows + PYNN_REDUCE_CHUNK - 1) / PYNN_REDUCE_CHUNK;
    int64_t b;
    if (nblocks == 1 && nchunks > 1 && nchunks * cols <= PYNN_BIAS_STACK_PARTIALS) {
        column_sums_by_chunks(db, dz, z, y, dy, rows, cols, act, alpha);
        return;
    }
    /* column blocks: each block of db is written by one thread */
    PYNN_PARALLEL_FOR(nblocks > 1 ? pynn_threads_for(rows * cols) : 1,
        for (b = 0; b < nblocks; b++) {
            const int64_t j0 = b * PYNN_BIAS_COL_BLOCK;
            const int64_t w = cols - j0 < PYNN_BIAS_COL_BLOCK ? cols - j0 : PYNN_BIAS_COL_BLOCK;
            float total[PYNN_BIAS_COL_BLOCK], part[PYNN_BIAS_COL_BLOCK];
            int64_t r0, r, j;
            /* chunks of rows, in order */
            for (r0 = 0; r0 < rows; r0 += PYNN_REDUCE_CHUNK) {
                const int64_t r1 = r0 + PYNN_REDUCE_CHUNK < rows ? r0 + PYNN_REDUCE_CHUNK : rows;
                for (j = 0; j < w; j++) part[j] = 0.0f;
                /* rows of the chunk, in order */
                for (r = r0; r < r1; r++) {
                    const int64_t at = r * cols + j0;
                    const float *row = dy + at;
                    if (act >= 0) {
                        pynn_act_backward_span(dz + at, z + at, y + at, dy + at, w, act, alpha);
                        row = dz + at;
                    }
                    for (j = 0; j < w; j++) part[j] += row[j];
                }
                if (r0 == 0)
                    for (j = 0; j < w; j++) total[j] = part[j];
                else
                    for (j = 0; j < w; j++) total[j] += part[j];
            }
            for (j = 0; j < w; j++) db[j0 + j] = rows > 0 ? total[j] : 0.0f;
        });
}

/* db (cols,) = column sums of dz (rows x cols) */
int pynn_bias_grad(float *db, const float *dz, int64_t rows, int64_t cols) {
    PYNN_RETURN_IF(rows < 0 || cols < 0 || db == NULL || dz == NULL, PYNN_EINVAL);
    column_sums(db, NULL, NULL, NULL, dz, rows, cols, -1, 0.0f);
    return PYNN_OK;
}

/* dz = act'(z) dy and db = column sums of dz: the backward of a dense layer's
 * epilogue in one pass over the data.  Softmax couples a whole row, so it takes
 * two passes (activation_backward, then the sums). */
int pynn_activation_backward_bias_grad(float *dz, float *db, const float *z, const float *y,
                                       const float *dy, int64_t rows, int64_t cols, int act,
                                       float alpha) {
    int status;
    PYNN_RETURN_IF(rows < 0 || cols < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(dz == NULL || db == NULL || z == NULL || y == NULL || dy == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(act < PYNN_ACT_LINEAR || act >= PYNN_ACT_COUNT, PYNN_EINVAL);
    if (pynn_act_rowwise(act)) {   /* softmax, log_softmax */
        status = pynn_activation_backward(dz, z, y, dy, rows, cols, act, alpha);
        if (status != PYNN_OK) return status;
        column_sums(db, NULL, NULL, NULL, dz, rows, cols, -1, 0.0f);
        return PYNN_OK;
    }
    column_sums(db, dz, z, y, dy, rows, cols, act, alpha);
    return PYNN_OK;
}
