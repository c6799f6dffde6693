/* bias.c -- adding a bias row to every row, and its gradient (column sums).
 *
 * bias_grad is a reduction over rows.  To keep it independent of the thread count
 * the rows are cut into chunks of PYNN_REDUCE_CHUNK: each column's chunk partial
 * sums its rows in order starting from 0, and the partials are added in chunk order.
 * Work is split over (chunk, column block) tiles, never inside a column's chunk.
 */
#include <stdlib.h>
#include "internal.h"

/* Columns per tile of bias_grad: wide enough for the inner loop to vectorise,
 * narrow enough that a few hundred rows of a tile stay in L1/L2. */
#define PYNN_BIAS_COL_BLOCK 512

/* y (rows x cols) += bias (cols,) */
int pynn_bias_add(float *y, const float *bias, int64_t rows, int64_t cols) {
    int64_t r;
    PYNN_RETURN_IF(rows < 0 || cols < 0 || y == NULL || bias == NULL, PYNN_EINVAL);
    /* rows: each row is written by one thread */
#pragma omp parallel for schedule(static) num_threads(pynn_threads_for(rows * cols))
    for (r = 0; r < rows; r++) {
        float *yr = y + r * cols;
        int64_t j;
        for (j = 0; j < cols; j++) yr[j] += bias[j];
    }
    return PYNN_OK;
}

/* db (cols,) = column sums of dz (rows x cols) */
int pynn_bias_grad(float *db, const float *dz, int64_t rows, int64_t cols) {
    int64_t nchunks, nblocks, t, j;
    float *partial;
    PYNN_RETURN_IF(rows < 0 || cols < 0 || db == NULL || dz == NULL, PYNN_EINVAL);
    if (cols == 0) return PYNN_OK;
    if (rows == 0) {
        for (j = 0; j < cols; j++) db[j] = 0.0f;
        return PYNN_OK;
    }
    nchunks = (rows + PYNN_REDUCE_CHUNK - 1) / PYNN_REDUCE_CHUNK;
    nblocks = (cols + PYNN_BIAS_COL_BLOCK - 1) / PYNN_BIAS_COL_BLOCK;

    /* One chunk (the common batch size): its partial is the answer, no workspace. */
    partial = db;
    if (nchunks > 1) {
        partial = (float *)malloc((size_t)nchunks * (size_t)cols * sizeof(float));
        PYNN_RETURN_IF(partial == NULL, PYNN_ENOMEM);
    }

    /* tiles (chunk c, column block b): partial[c, block] = sum of the chunk's rows */
#pragma omp parallel for schedule(static) num_threads(pynn_threads_for(rows * cols))
    for (t = 0; t < nchunks * nblocks; t++) {
        int64_t c = t / nblocks, b = t % nblocks;
        int64_t r0 = c * PYNN_REDUCE_CHUNK;
        int64_t r1 = r0 + PYNN_REDUCE_CHUNK < rows ? r0 + PYNN_REDUCE_CHUNK : rows;
        int64_t j0 = b * PYNN_BIAS_COL_BLOCK;
        int64_t j1 = j0 + PYNN_BIAS_COL_BLOCK < cols ? j0 + PYNN_BIAS_COL_BLOCK : cols;
        float *acc = partial + c * cols;
        int64_t r, jj;
        for (jj = j0; jj < j1; jj++) acc[jj] = 0.0f;
        for (r = r0; r < r1; r++) {
            const float *row = dz + r * cols;
            for (jj = j0; jj < j1; jj++) acc[jj] += row[jj];
        }
    }

    if (nchunks > 1) {
        /* columns: each column adds its chunk partials in chunk order */
#pragma omp parallel for schedule(static) num_threads(pynn_threads_for(nchunks * cols))
        for (j = 0; j < cols; j++) {
            float sum = partial[j];
            int64_t c;
            for (c = 1; c < nchunks; c++) sum += partial[c * cols + j];
            db[j] = sum;
        }
        free(partial);
    }
    return PYNN_OK;
}
