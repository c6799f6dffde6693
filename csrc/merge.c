/* merge.c -- elementwise merges of k same-shaped arrays (the Add, Subtract, Multiply,
 * Average, Maximum and Minimum layers; the plan's sum of gradients that meet), their
 * gradients, concatenation along the last axis and scaling.
 *
 * Every output element is written by one thread and folds the inputs in input order,
 * as pynn/backend/reference.py does, so results do not depend on the thread count.  The
 * folds run over blocks of MERGE_BLOCK elements held on the stack: the inner loops walk
 * contiguous memory (they vectorise), and an output may be one of the inputs.
 */
#include <string.h>
#include "internal.h"

#define MERGE_BLOCK 1024

/* a NaN wins, as NumPy's maximum / minimum */
static inline float max_nan(float a, float b) { return (a >= b || a != a) ? a : b; }
static inline float min_nan(float a, float b) { return (a <= b || a != a) ? a : b; }

static int merge_args_ok(const float *const *xs, int64_t k, int64_t n, int kind) {
    int64_t j;
    if (k < 1 || n < 0 || xs == NULL || kind < 0 || kind >= PYNN_MERGE_COUNT) return 0;
    if (kind == PYNN_MERGE_SUBTRACT && k != 2) return 0;
    for (j = 0; j < k; j++)
        if (xs[j] == NULL && n > 0) return 0;
    return 1;
}

/* acc[0:len] = the merge of xs[0..k-1][e0 : e0 + len] (average: the sum, not yet divided) */
static void fold(float *acc, const float *const *xs, int64_t k, int64_t e0, int64_t len,
                 int kind) {
    int64_t j, e;
    memcpy(acc, xs[0] + e0, (size_t)len * sizeof(float));
    for (j = 1; j < k; j++) {                         /* inputs, in order */
        const float *x = xs[j] + e0;
        switch (kind) {
        case PYNN_MERGE_ADD:
        case PYNN_MERGE_AVERAGE: for (e = 0; e < len; e++) acc[e] = acc[e] + x[e]; break;
        case PYNN_MERGE_SUBTRACT: for (e = 0; e < len; e++) acc[e] = acc[e] - x[e]; break;
        case PYNN_MERGE_MULTIPLY: for (e = 0; e < len; e++) acc[e] = acc[e] * x[e]; break;
        case PYNN_MERGE_MAXIMUM: for (e = 0; e < len; e++) acc[e] = max_nan(acc[e], x[e]); break;
        default: for (e = 0; e < len; e++) acc[e] = min_nan(acc[e], x[e]); break;
        }
    }
}

/* y = x0 + x1, then relu(y) (act_elementwise.h's: s > 0 ? s : 0) when relu: straight
 * into y, no block on the stack (y[e] reads both inputs before it is written, so y may be
 * either of them); the sum of fold. */
static void add_two(float *y, const float *x0, const float *x1, int64_t n, int relu) {
    const int64_t nblocks = (n + MERGE_BLOCK - 1) / MERGE_BLOCK;
    int64_t b;
    PYNN_PARALLEL_FOR(pynn_threads_for(n * 2),
        for (b = 0; b < nblocks; b++) {
            const int64_t e0 = b * MERGE_BLOCK;
            const int64_t e1 = n - e0 < MERGE_BLOCK ? n : e0 + MERGE_BLOCK;
            int64_t e;
            if (relu)
                for (e = e0; e < e1; e++) {
                    const float s = x0[e] + x1[e];
                    y[e] = s > 0.0f ? s : 0.0f;
                }
            else
                for (e = e0; e < e1; e++) y[e] = x0[e] + x1[e];
        });
}

int pynn_merge_forward(float *y, const float *const *xs, int64_t k, int64_t n, int kind) {
    const int64_t nblocks = (n + MERGE_BLOCK - 1) / MERGE_BLOCK;
    int64_t b;
    PYNN_RETURN_IF(!merge_args_ok(xs, k, n, kind) || (y == NULL && n > 0), PYNN_EINVAL);
    if (k == 2 && kind == PYNN_MERGE_ADD) {   /* a residual connection's sum */
        add_two(y, xs[0], xs[1], n, 0);
        return PYNN_OK;
    }
    /* blocks of elements: each block of y written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * k),
        for (b = 0; b < nblocks; b++) {
            const int64_t e0 = b * MERGE_BLOCK;
            const int64_t len = n - e0 < MERGE_BLOCK ? n - e0 : MERGE_BLOCK;
            float acc[MERGE_BLOCK];
            int64_t e;
            fold(acc, xs, k, e0, len, kind);
            if (kind == PYNN_MERGE_AVERAGE) {
                const float fk = (float)k;
                for (e = 0; e < len; e++) acc[e] = acc[e] / fk;
            }
            memcpy(y + e0, acc, (size_t)len * sizeof(float));
        });
    return PYNN_OK;
}

int pynn_merge_add_relu(float *y, const float *x0, const float *x1, int64_t n) {
    PYNN_RETURN_IF(n < 0 || ((y == NULL || x0 == NULL || x1 == NULL) && n > 0), PYNN_EINVAL);
    add_two(y, x0, x1, n, 1);
    return PYNN_OK;
}

int pynn_merge_backward(float *dx, const float *dy, const float *const *xs, int64_t k,
                        int64_t n, int kind, int64_t i) {
    const int64_t nblocks = (n + MERGE_BLOCK - 1) / MERGE_BLOCK;
    int64_t b;
    PYNN_RETURN_IF(!merge_args_ok(xs, k, n, kind) || i < 0 || i >= k, PYNN_EINVAL);
    PYNN_RETURN_IF((dx == NULL || dy == NULL) && n > 0, PYNN_EINVAL);
    /* blocks of elements: each block of dx written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n * k),
        for (b = 0; b < nblocks; b++) {
            const int64_t e0 = b * MERGE_BLOCK;
            const int64_t len = n - e0 < MERGE_BLOCK ? n - e0 : MERGE_BLOCK;
            const float *g = dy + e0;
            float *d = dx + e0;
            float acc[MERGE_BLOCK];
            int64_t e, j;
            switch (kind) {
            case PYNN_MERGE_ADD:
                if (d != g) memcpy(d, g, (size_t)len * sizeof(float));
                break;
            case PYNN_MERGE_SUBTRACT:
                if (i == 0) {
                    if (d != g) memcpy(d, g, (size_t)len * sizeof(float));
                } else {
                    for (e = 0; e < len; e++) d[e] = -g[e];
                }
                break;
            case PYNN_MERGE_AVERAGE: {
                const float fk = (float)k;
                for (e = 0; e < len; e++) d[e] = g[e] / fk;
                break;
            }
            case PYNN_MERGE_MULTIPLY:
                /* dy times the other inputs, in input order */
                memcpy(acc, g, (size_t)len * sizeof(float));
                for (j = 0; j < k; j++) {
                    const float *x = xs[j] + e0;
                    if (j == i) continue;
                    for (e = 0; e < len; e++) acc[e] = acc[e] * x[e];
                }
                memcpy(d, acc, (size_t)len * sizeof(float));
                break;
            default: {
                /* maximum / minimum: dy to the first input that holds the extreme */
                const float *xi = xs[i] + e0;
                fold(acc, xs, k, e0, len, kind);
                for (e = 0; e < len; e++) {
                    int first = xi[e] == acc[e];
                    for (j = 0; j < i && first; j++) first = xs[j][e0 + e] != acc[e];
                    d[e] = first ? g[e] : 0.0f;
                }
                break;
            }
            }
        });
    return PYNN_OK;
}

int pynn_concat(float *y, const float *const *xs, const int64_t *widths, int64_t k,
                int64_t outer) {
    int64_t i, r, total = 0;
    PYNN_RETURN_IF(k < 1 || outer < 0 || xs == NULL || widths == NULL, PYNN_EINVAL);
    for (i = 0; i < k; i++) {
        PYNN_RETURN_IF(widths[i] < 0 || (xs[i] == NULL && widths[i] * outer > 0), PYNN_EINVAL);
        total += widths[i];
    }
    PYNN_RETURN_IF(y == NULL && total * outer > 0, PYNN_EINVAL);
    /* rows: each row of y written by one thread, the inputs' blocks in input order */
    PYNN_PARALLEL_FOR(pynn_threads_for(outer * total),
        for (r = 0; r < outer; r++) {
            float *yr = y + r * total;
            int64_t j, at = 0;
            for (j = 0; j < k; j++) {
                memcpy(yr + at, xs[j] + r * widths[j], (size_t)widths[j] * sizeof(float));
                at += widths[j];
            }
        });
    return PYNN_OK;
}

int pynn_concat_backward(float *const *dxs, const float *dy, const int64_t *widths, int64_t k,
                         int64_t outer) {
    int64_t i, r, total = 0;
    PYNN_RETURN_IF(k < 1 || outer < 0 || dxs == NULL || widths == NULL, PYNN_EINVAL);
    for (i = 0; i < k; i++) {
        PYNN_RETURN_IF(widths[i] < 0, PYNN_EINVAL);
        total += widths[i];
    }
    PYNN_RETURN_IF(dy == NULL && total * outer > 0, PYNN_EINVAL);
    /* rows: each row of every dxs[i] written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(outer * total),
        for (r = 0; r < outer; r++) {
            const float *gr = dy + r * total;
            int64_t j, at = 0;
            for (j = 0; j < k; j++) {
                if (dxs[j] != NULL)
                    memcpy(dxs[j] + r * widths[j], gr + at, (size_t)widths[j] * sizeof(float));
                at += widths[j];
            }
        });
    return PYNN_OK;
}

int pynn_scale(float *y, const float *x, int64_t n, float alpha) {
    int64_t i;
    PYNN_RETURN_IF(n < 0 || ((y == NULL || x == NULL) && n > 0), PYNN_EINVAL);
    /* elements: each written by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) y[i] = x[i] * alpha;);
    return PYNN_OK;
}
