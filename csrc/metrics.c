/* metrics.c -- the sum over a batch's rows of a metric's per-row value (pynn/metrics.py
 * divides by the rows seen, over an epoch).
 *
 * Per-row values are computed in float as pynn/backend/reference.py's metric_values
 * spells them (a row's terms added in index order), multiplied by the row's weight in
 * double (the sample weights: Keras's weighted mean is sum(w v) / sum(w), the denominator
 * METRIC_ROWS's sum), and the rows are added in order in double.  One thread: a metric
 * reads each prediction once, a small fraction of the step's work, and a fixed order needs
 * no chunking.  pynn_metric_confusion counts the four confusion conditions at each of a
 * list of thresholds (AUC's, the confusion metrics with several thresholds) the same way.
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
                        int64_t cols, int64_t k, float thr) {
    float acc = 0.0f;
    int64_t j;
    switch (metric) {
    case PYNN_METRIC_BINARY_ACCURACY:
        for (j = 0; j < cols; j++)
            acc += (float)((p[j] > thr ? 1.0f : 0.0f) == target_at(t, label, j));
        return (double)(acc / (float)cols);
    case PYNN_METRIC_ACCURACY:
        for (j = 0; j < cols; j++) acc += (float)(p[j] == target_at(t, label, j));
        return (double)(acc / (float)cols);
    case PYNN_METRIC_ROWS:
        return 1.0;
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
        /* a count of the row's entries (Keras's confusion metrics at one threshold) */
        const int want_pred = metric == PYNN_METRIC_TRUE_POSITIVES ||
                              metric == PYNN_METRIC_FALSE_POSITIVES;
        const int want_true = metric == PYNN_METRIC_TRUE_POSITIVES ||
                              metric == PYNN_METRIC_FALSE_NEGATIVES;
        int64_t count = 0;
        for (j = 0; j < cols; j++)
            count += (p[j] > thr) == want_pred && (target_at(t, label, j) != 0.0f) == want_true;
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

/* The common checks of pynn_metric_sum and pynn_metric_confusion, before anything is
 * written: sizes, operands, labels in range, weights finite and >= 0. */
static int check_rows(const float *pred, const float *target, const int64_t *labels,
                      int64_t rows, int64_t cols, const float *weights, int64_t per_weight) {
    int64_t r;
    PYNN_RETURN_IF(rows < 0 || cols < 1 || per_weight < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(rows > 0 && (pred == NULL || (target == NULL && labels == NULL)), PYNN_EINVAL);
    if (target == NULL)
        for (r = 0; r < rows; r++)
            PYNN_RETURN_IF(labels[r] < 0 || labels[r] >= cols, PYNN_ELABEL);
    if (weights != NULL) {
        const int64_t n = rows / per_weight + (rows % per_weight != 0);
        for (r = 0; r < n; r++)
            PYNN_RETURN_IF(!(weights[r] >= 0.0f) || !isfinite(weights[r]), PYNN_EINVAL);
    }
    return PYNN_OK;
}

int pynn_metric_sum(double *sum, const float *pred, const float *target,
                    const int64_t *labels, int64_t rows, int64_t cols, int metric, int64_t k,
                    float threshold, const float *weights, int64_t per_weight) {
    double total = 0.0;
    int64_t r;
    int status;
    PYNN_RETURN_IF(sum == NULL || k < 1 || threshold != threshold, PYNN_EINVAL);
    PYNN_RETURN_IF(metric < 0 || metric >= PYNN_METRIC_COUNT || metric == PYNN_METRIC_CONFUSION,
                   PYNN_EINVAL);
    status = check_rows(pred, target, labels, rows, cols, weights, per_weight);
    if (status != PYNN_OK) return status;
    for (r = 0; r < rows; r++) {                          /* rows, in order */
        const double v = row_value(metric, pred + r * cols,
                                   target != NULL ? target + r * cols : NULL,
                                   target != NULL ? -1 : labels[r], cols, k, threshold);
        total += weights != NULL ? v * (double)weights[r / per_weight] : v;
    }
    *sum = total;
    return PYNN_OK;
}

/* Per row, the thresholds are counted in blocks of CONFUSION_BLOCK (integer counts on the
 * stack), then weight * count is added to the sums: the sums are the same for any block. */
#define CONFUSION_BLOCK 64

int pynn_metric_confusion(double *counts, const float *pred, const float *target,
                          const int64_t *labels, int64_t rows, int64_t cols,
                          const float *thresholds, int64_t n_thresholds,
                          const float *weights, int64_t per_weight) {
    const int64_t n = n_thresholds;
    int64_t r, i, j, t0;
    int status;
    PYNN_RETURN_IF(counts == NULL || thresholds == NULL || n < 1 || n > INT64_MAX / 4,
                   PYNN_EINVAL);
    for (i = 0; i < n; i++) PYNN_RETURN_IF(thresholds[i] != thresholds[i], PYNN_EINVAL);
    status = check_rows(pred, target, labels, rows, cols, weights, per_weight);
    if (status != PYNN_OK) return status;
    for (i = 0; i < 4 * n; i++) counts[i] = 0.0;
    for (r = 0; r < rows; r++) {                          /* rows, in order */
        const float *p = pred + r * cols;
        const float *t = target != NULL ? target + r * cols : NULL;
        const int64_t label = target != NULL ? -1 : labels[r];
        const double w = weights != NULL ? (double)weights[r / per_weight] : 1.0;
        int64_t positives = 0;
        for (j = 0; j < cols; j++) positives += target_at(t, label, j) != 0.0f;
        for (t0 = 0; t0 < n; t0 += CONFUSION_BLOCK) {
            const int64_t m = n - t0 < CONFUSION_BLOCK ? n - t0 : CONFUSION_BLOCK;
            int64_t tp[CONFUSION_BLOCK] = {0}, fp[CONFUSION_BLOCK] = {0};
            for (j = 0; j < cols; j++) {
                const float v = p[j];
                const int actual = target_at(t, label, j) != 0.0f;
                for (i = 0; i < m; i++) {
                    const int predicted = v > thresholds[t0 + i];
                    tp[i] += predicted & actual;
                    fp[i] += predicted & !actual;
                }
            }
            for (i = 0; i < m; i++) {
                counts[t0 + i] += w * (double)tp[i];
                counts[n + t0 + i] += w * (double)fp[i];
                counts[2 * n + t0 + i] += w * (double)(cols - positives - fp[i]);
                counts[3 * n + t0 + i] += w * (double)(positives - tp[i]);
            }
        }
    }
    return PYNN_OK;
}
