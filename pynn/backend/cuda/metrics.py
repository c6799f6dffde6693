"""The metrics: each row's value (csrc/pynn.h's PYNN_METRIC_LIST, reference.metric_values),
summed over the rows in a fixed order by reduction.py (rows in blocks, blocks in order, no
atomics), so a metric sum repeats bitwise.

A row's value is computed in float32 where the reference does (the count of binary hits, the
sums of absolute or squared errors along the row, in index order, divided by the number of
columns) and added in double.  Targets are float32 rows or int64 labels (one-hot rows for the
metrics that compare values).  Labels are not range-checked on the device (that would cost a
second copy back per call; the C core returns PYNN_ELABEL): as in the loss kernel, a label
outside [0, cols) matches no column.
"""
import numpy as np
from numba import cuda, float32, float64

from ...ids import METRICS
from .reduction import make_row_sum_kernel, sum_rows, target_at
from .runtime import F0, F1, HALF, check_float32, check_shape

METRIC_BINARY_ACCURACY = METRICS["binary_accuracy"]
METRIC_CATEGORICAL_ACCURACY = METRICS["categorical_accuracy"]
METRIC_SPARSE_CATEGORICAL_ACCURACY = METRICS["sparse_categorical_accuracy"]
METRIC_MAE = METRICS["mean_absolute_error"]
METRIC_MSE = METRICS["mean_squared_error"]
METRIC_TRUE_POSITIVES = METRICS["true_positives"]
METRIC_FALSE_POSITIVES = METRICS["false_positives"]
METRIC_TRUE_NEGATIVES = METRICS["true_negatives"]
METRIC_FALSE_NEGATIVES = METRICS["false_negatives"]
METRIC_TOP_K = METRICS["top_k_categorical_accuracy"]
METRIC_SPARSE_TOP_K = METRICS["sparse_top_k_categorical_accuracy"]


@cuda.jit(device=True, inline=True)
def _first_argmax(a, r, cols):
    """np.argmax of row r: the first maximum, or the first NaN."""
    best = a[r, 0]
    idx = 0
    for j in range(1, cols):
        v = a[r, j]
        if v > best or (v != v and best == best):
            best = v
            idx = j
    return idx


@cuda.jit(device=True, inline=True)
def _metric_row(unused, pred, target, labels, r, rows, cols, kind, k, sparse, unused_write):
    if kind == METRIC_TOP_K or kind == METRIC_SPARSE_TOP_K:    # TF's in_top_k (k: option)
        truth = labels[r] if sparse else _first_argmax(target, r, cols)
        v = pred[r, truth]
        if not (v == v and abs(v) < float32(np.inf)):
            return float64(0.0)
        above = 0
        for j in range(cols):
            if pred[r, j] > v:
                above += 1
        return float64(1.0) if above < k else float64(0.0)
    if kind == METRIC_CATEGORICAL_ACCURACY or kind == METRIC_SPARSE_CATEGORICAL_ACCURACY:
        truth = labels[r] if sparse else _first_argmax(target, r, cols)
        return float64(1.0) if _first_argmax(pred, r, cols) == truth else float64(0.0)
    if kind >= METRIC_TRUE_POSITIVES:          # counts (threshold 0.5, t != 0 positive)
        want_pred = kind == METRIC_TRUE_POSITIVES or kind == METRIC_FALSE_POSITIVES
        want_true = kind == METRIC_TRUE_POSITIVES or kind == METRIC_FALSE_NEGATIVES
        count = 0
        for j in range(cols):
            t = target_at(target, labels, r, j, sparse)
            if (pred[r, j] > HALF) == want_pred and (t != F0) == want_true:
                count += 1
        return float64(count)
    s = F0
    for j in range(cols):
        p = pred[r, j]
        t = target_at(target, labels, r, j, sparse)
        if kind == METRIC_BINARY_ACCURACY:
            if (F1 if p > HALF else F0) == t:
                s += F1
        elif kind == METRIC_MAE:
            s += abs(t - p)
        else:
            d = t - p
            s += d * d
    return float64(s / float32(cols))


_metric_kernel = make_row_sum_kernel(_metric_row, "metric_rows")


def metric_sum(kind, pred, target, workspace, k=5):
    """The sum over the rows of pred (rows, cols) of the metric's per-row value, a float."""
    if kind not in METRICS:
        raise ValueError(f"metric_sum: expected kind in {tuple(METRICS)}, received kind={kind!r}")
    if k < 1:
        raise ValueError(f"metric_sum: expected k >= 1, received k={k}")
    if pred.ndim != 2 or pred.shape[1] == 0:
        raise ValueError(f"metric_sum: expected pred of shape (rows, cols >= 1), received "
                         f"{tuple(pred.shape)}")
    check_float32("metric_sum", pred=pred)
    rows = pred.shape[0]
    sparse = target.ndim == 1
    if sparse:
        check_shape("metric_sum", "labels", target, (rows,))
        if target.dtype != np.int64:
            raise TypeError(f"metric_sum: expected int64 labels, received dtype {target.dtype}")
        labels, target2 = target, pred
    else:
        check_shape("metric_sum", "target", target, pred.shape)
        check_float32("metric_sum", target=target)
        labels, target2 = workspace.table("no_labels", (0,)), target
    if rows == 0:
        return 0.0
    return sum_rows(_metric_kernel, workspace, pred, pred, target2, labels, METRICS[kind], int(k),
                    sparse, False)
