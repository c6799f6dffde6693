/* embedding.c -- Embedding (a gather, and its gradient scattered into the rows seen),
 * Masking, and nothing else (engineer G, issue #16).
 *
 * Ids arrive as float32 (pynn's input buffers are float32; every integer up to 2^24 is
 * exact).  Every id is checked before anything is written: an id that is not an integer
 * in [0, V) is refused with PYNN_EINDEX.
 *
 * The gradient of the table touches only the rows seen in the batch.  The n ids are
 * sorted as keys id * n + position (distinct, so the order is total and does not depend
 * on the sort), which groups the positions of each id in increasing order; each distinct
 * id is one row of the gradient, written by one thread as the sum of its dy rows in
 * position order.  So the result does not depend on the thread count.  The rows not seen
 * are not touched: the plan keeps them zero (OP_EMBEDDING_GRAD_CLEAR zeroes the rows seen,
 * from the same sorted keys, once the optimizer has read them).
 */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* 1 when every id is an integer in [0, V) (NaN fails) */
static int ids_ok(const float *ids, int64_t n, int64_t V) {
    int64_t i;
    for (i = 0; i < n; i++) {
        const float v = ids[i];
        if (!(v >= 0.0f && (double)v < (double)V) || v != (float)(int64_t)v) return 0;
    }
    return 1;
}

int pynn_embedding_forward(float *y, float *mask, const float *ids, const float *table,
                           int64_t n, int64_t V, int64_t D) {
    int64_t i;
    PYNN_RETURN_IF(n < 0 || V < 1 || D < 1 || n > INT64_MAX / D, PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || ids == NULL || table == NULL, PYNN_EINVAL);
    if (!ids_ok(ids, n, V)) return PYNN_EINDEX;
    PYNN_PARALLEL_FOR(pynn_threads_for(n * D),
        for (i = 0; i < n; i++) {
            const int64_t row = (int64_t)ids[i];
            memcpy(y + i * D, table + row * D, (size_t)D * sizeof(float));
            if (mask != NULL) mask[i] = row != 0 ? 1.0f : 0.0f;
        });
    return PYNN_OK;
}

/* Sorts the keys id * n + position of the n ids into keys[0..n), ascending, using tmp[0..n)
 * as scratch: a stable LSD radix sort on the id, 11 bits a pass, started from the keys in
 * position order, so the positions of one id stay in increasing order and the result is
 * the one total order of the keys (the same as any comparison sort's). */
#define EMB_RADIX_BITS 11
#define EMB_RADIX (1 << EMB_RADIX_BITS)
static void sort_keys(int64_t *keys, int64_t *tmp, const float *ids, int64_t n, int64_t V) {
    int64_t count[EMB_RADIX];
    int passes = 0, p, shift;
    int64_t i, *src, *dst, *t;
    while (passes * EMB_RADIX_BITS < 63 && ((V - 1) >> (passes * EMB_RADIX_BITS)) > 0) passes++;
    /* the pass count's parity picks where the keys start, so that they end in keys */
    src = (passes % 2 == 0) ? keys : tmp;
    dst = (passes % 2 == 0) ? tmp : keys;
    for (i = 0; i < n; i++) src[i] = (int64_t)ids[i] * n + i;
    for (p = 0; p < passes; p++) {
        int64_t sum = 0, c;
        shift = p * EMB_RADIX_BITS;
        memset(count, 0, sizeof(count));
        for (i = 0; i < n; i++) count[((src[i] / n) >> shift) & (EMB_RADIX - 1)]++;
        for (i = 0; i < EMB_RADIX; i++) {
            c = count[i];
            count[i] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++) dst[count[((src[i] / n) >> shift) & (EMB_RADIX - 1)]++] = src[i];
        t = src;
        src = dst;
        dst = t;
    }
}

int pynn_embedding_backward(float *dtable, int64_t *work, const float *ids, const float *dy,
                            int64_t n, int64_t V, int64_t D) {
    int64_t i, n_unique = 0;
    int64_t *keys = work, *starts = work + n;
    PYNN_RETURN_IF(n < 0 || V < 1 || D < 1 || n > INT64_MAX / D, PYNN_EINVAL);
    /* keys id * n + position must fit */
    PYNN_RETURN_IF(n > 0 && V > INT64_MAX / n, PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(dtable == NULL || work == NULL || ids == NULL || dy == NULL, PYNN_EINVAL);
    if (!ids_ok(ids, n, V)) return PYNN_EINDEX;
    sort_keys(keys, starts, ids, n, V);
    for (i = 0; i < n; i++)
        if (i == 0 || keys[i] / n != keys[i - 1] / n) starts[n_unique++] = i;
    /* one distinct id per iteration: its row written by one thread, summed in position
     * order */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * D),
        for (i = 0; i < n_unique; i++) {
            const int64_t s = starts[i], e = i + 1 < n_unique ? starts[i + 1] : n;
            float *g = dtable + (keys[s] / n) * D;
            int64_t k, j;
            memcpy(g, dy + (keys[s] % n) * D, (size_t)D * sizeof(float));
            for (k = s + 1; k < e; k++) {
                const float *d = dy + (keys[k] % n) * D;
                for (j = 0; j < D; j++) g[j] += d[j];
            }
        });
    return PYNN_OK;
}

int pynn_embedding_grad_clear(float *dtable, const int64_t *work, int64_t n, int64_t V,
                              int64_t D) {
    int64_t i;
    PYNN_RETURN_IF(V < 1 || D < 1 || V > INT64_MAX / D, PYNN_EINVAL);
    if (work == NULL) {          /* every row (a distributed step: other ranks' rows too) */
        PYNN_RETURN_IF(dtable == NULL, PYNN_EINVAL);
        memset(dtable, 0, (size_t)(V * D) * sizeof(float));
        return PYNN_OK;
    }
    PYNN_RETURN_IF(n < 0 || (n > 0 && V > INT64_MAX / n), PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(dtable == NULL, PYNN_EINVAL);
    for (i = 0; i < n; i++) {
        const int64_t row = work[i] / n;
        PYNN_RETURN_IF(work[i] < 0 || row >= V, PYNN_EINVAL);
        if (i == 0 || row != work[i - 1] / n) memset(dtable + row * D, 0, (size_t)D * sizeof(float));
    }
    return PYNN_OK;
}

int pynn_embedding_sgd(float *table, float *dtable, const int64_t *work, int64_t n, int64_t V,
                       int64_t D, float lr, int apply) {
    int64_t i, row;
    int status;
    PYNN_RETURN_IF(V < 1 || D < 1 || V > INT64_MAX / D, PYNN_EINVAL);
    PYNN_RETURN_IF(n < 0 || (n > 0 && V > INT64_MAX / n), PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    PYNN_RETURN_IF(table == NULL || dtable == NULL || work == NULL, PYNN_EINVAL);
    for (i = 0; i < n; i++)          /* every key checked before anything changes */
        PYNN_RETURN_IF(work[i] < 0 || work[i] / n >= V || (i > 0 && work[i] < work[i - 1]),
                       PYNN_EINVAL);
    for (i = 0; i < n; i++) {
        row = work[i] / n;
        if (i > 0 && row == work[i - 1] / n) continue;
        if (apply) {     /* the dense rule's own kernel, on the row: the same bits */
            status = pynn_sgd_update(table + row * D, NULL, dtable + row * D, D, lr, 0.0f, 0);
            if (status != PYNN_OK) return status;
        }
        memset(dtable + row * D, 0, (size_t)D * sizeof(float));
    }
    return PYNN_OK;
}

int pynn_masking_forward(float *y, float *mask, const float *x, int64_t rows, int64_t D,
                         float mask_value) {
    int64_t r;
    PYNN_RETURN_IF(rows < 0 || D < 1 || rows > INT64_MAX / D, PYNN_EINVAL);
    if (rows == 0) return PYNN_OK;
    PYNN_RETURN_IF(y == NULL || x == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(rows * D),
        for (r = 0; r < rows; r++) {
            const float *xr = x + r * D;
            float *yr = y + r * D, keep = 0.0f;
            int64_t j;
            for (j = 0; j < D; j++)
                if (xr[j] != mask_value) keep = 1.0f;
            for (j = 0; j < D; j++) yr[j] = xr[j] * keep;
            if (mask != NULL) mask[r] = keep;
        });
    return PYNN_OK;
}

int pynn_masking_backward(float *dx, const float *dy, const float *mask, int64_t rows,
                          int64_t D) {
    int64_t r;
    PYNN_RETURN_IF(rows < 0 || D < 1 || rows > INT64_MAX / D, PYNN_EINVAL);
    if (rows == 0) return PYNN_OK;
    PYNN_RETURN_IF(dx == NULL || dy == NULL || mask == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(rows * D),
        for (r = 0; r < rows; r++) {
            int64_t j;
            for (j = 0; j < D; j++) dx[r * D + j] = dy[r * D + j] * mask[r];
        });
    return PYNN_OK;
}
