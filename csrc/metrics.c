/* metrics.c -- the sum over a batch's rows of a metric's per-row value (pynn/metrics.py
 * divides by the rows seen, over an epoch).
 *
 * Per-row values are computed in float as pynn/backend/reference.py's metric_values
 * spells them (a row's terms added in index order), and the rows are added in order in
 * double.  One thread: a metric reads each prediction once, a small fraction of the
 * step's work, and a fixed order needs no chunking.
 */
#include <math.h>
#include "internal.h"

/* target[j], or the one-hot row of `label` when target is NULL */
static inline float target_at(const float *target, int64_t label, int64_t j) {
    return target != NULL ? target[j] : (j == label ? 1.0f : 0.0f);
}

/* np.argmax: the first maximum, and the first NaN if there is one */
static int64_t argmax(const float *p, int64_t n) {
    int64_t j, best = 0;
    if (p[0] != p[0]) return 0;
    for (j = 1; j < n; j++) {
        if (p[j] != p[j]) return j;
        if (p[j] > p[best]) best = j;
    }
    return best;
}

/* 1 when column `truth` is among the k largest of p (TF's in_top_k: the classes tied
 * with the k-th value count as in; a non-finite p_truth is not) */
static int in_top_k(const float *p, int64_t cols, int64_t truth, int64_t k) {
    const float v = p[truth];
    int64_t j, above = 0;
    if (!isfinite(v)) return 0;
    for (j = 0; j < cols; j++) above += p[j] > v;
    return above < k;
}

static double row_value(int metric, const float *p, const float *t, int64_t label,
                        int64_t cols, int64_t k) {
    float acc = 0.0f;
    int64_t j;
    switch (metric) {
    case PYNN_METRIC_BINARY_ACCURACY:
        for (j = 0; j < cols; j++)
            acc += (float)((p[j] > 0.5f ? 1.0f : 0.0f) == target_at(t, label, j));
        return (double)(acc / (float)cols);
    case PYNN_METRIC_TOP_K_CATEGORICAL_ACCURACY:
    case PYNN_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY:
        return in_top_k(p, cols, t != NULL ? argmax(t, cols) : label, k) ? 1.0 : 0.0;
    case PYNN_METRIC_CATEGORICAL_ACCURACY:
    case PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY:
        /* a label row's argmax is the label */
        return argmax(p, cols) == (t != NULL ? argmax(t, cols) : label) ? 1.0 : 0.0;
    case PYNN_METRIC_MAE:
        for (j = 0; j < cols; j++) acc += fabsf(target_at(t, label, j) - p[j]);
        return (double)(acc / (float)cols);
    case PYNN_METRIC_TRUE_POSITIVES:
    case PYNN_METRIC_FALSE_POSITIVES:
    case PYNN_METRIC_TRUE_NEGATIVES:
    case PYNN_METRIC_FALSE_NEGATIVES: {
        /* a count of the row's entries (Keras's confusion metrics at threshold 0.5) */
        const int want_pred = metric == PYNN_METRIC_TRUE_POSITIVES ||
                              metric == PYNN_METRIC_FALSE_POSITIVES;
        const int want_true = metric == PYNN_METRIC_TRUE_POSITIVES ||
                              metric == PYNN_METRIC_FALSE_NEGATIVES;
        int64_t count = 0;
        for (j = 0; j < cols; j++)
            count += (p[j] > 0.5f) == want_pred && (target_at(t, label, j) != 0.0f) == want_true;
        return (double)count;
    }
    default: /* PYNN_METRIC_MSE */
        for (j = 0; j < cols; j++) {
            const float d = target_at(t, label, j) - p[j];
            acc += d * d;
        }
        return (double)(acc / (float)cols);
    }
}

int pynn_metric_sum(double *sum, const float *pred, const float *target,
                    const int64_t *labels, int64_t rows, int64_t cols, int metric, int64_t k) {
    double total = 0.0;
    int64_t r;
    PYNN_RETURN_IF(sum == NULL || rows < 0 || cols < 1 || k < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(metric < 0 || metric >= PYNN_METRIC_COUNT, PYNN_EINVAL);
    PYNN_RETURN_IF(rows > 0 && (pred == NULL || (target == NULL && labels == NULL)), PYNN_EINVAL);
    if (target == NULL)
        for (r = 0; r < rows; r++)
            PYNN_RETURN_IF(labels[r] < 0 || labels[r] >= cols, PYNN_ELABEL);
    for (r = 0; r < rows; r++)                            /* rows, in order */
        total += row_value(metric, pred + r * cols, target != NULL ? target + r * cols : NULL,
                           target != NULL ? -1 : labels[r], cols, k);
    *sum = total;
    return PYNN_OK;
}
