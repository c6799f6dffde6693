"""The metrics: each row's value (csrc/pynn.h's PYNN_METRIC_LIST, reference.metric_values),
summed over the rows in a fixed order by reduction.py (rows in blocks, blocks in order, no
atomics), so a metric sum repeats bitwise.

A row's value is computed in float32 where the reference does (the count of binary hits, the
sums of absolute or squared errors along the row, in index order, divided by the number of
columns) and added in double.  Targets are float32 rows or int64 labels (one-hot rows for the
metrics that compare values).  Labels are not range-checked on the device (that would cost a
second copy back per call; the C core returns PYNN_ELABEL): as in the loss kernel, a label
outside [0, cols) matches no column.  Likewise the sample weights (row i counts weights[i //
per_weight] times) are not checked for being finite and >= 0 on the device: the callers
(pynn.metrics, the trainer's feed) check them on the host.

metric_confusion: the confusion counts at a list of thresholds (AUC, the confusion metrics
with several thresholds), one thread per threshold walking the rows in order, adding
weight * (the row's integer count) in double: bitwise csrc/metrics.c's sums.
"""
import numpy as np
from numba import cuda, float32, float64

from ...ids import METRICS
from .reduction import (ROWS_PER_BLOCK, THREADS, _sum_in_order_kernel, store_block_sum,
                        target_at)
from .runtime import D0, F0, F1, check_float32, check_shape, pow2_at_least

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
METRIC_ACCURACY = METRICS["accuracy"]
METRIC_ROWS = METRICS["count"]
METRIC_CONFUSION = METRICS["confusion"]


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
def _metric_row(pred, target, labels, r, cols, kind, k, thr, sparse):
    if kind == METRIC_ROWS:
        return float64(1.0)
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
    if kind >= METRIC_TRUE_POSITIVES and kind <= METRIC_FALSE_NEGATIVES:   # counts
        want_pred = kind == METRIC_TRUE_POSITIVES or kind == METRIC_FALSE_POSITIVES
        want_true = kind == METRIC_TRUE_POSITIVES or kind == METRIC_FALSE_NEGATIVES
        count = 0
        for j in range(cols):
            t = target_at(target, labels, r, j, sparse)
            if (pred[r, j] > thr) == want_pred and (t != F0) == want_true:
                count += 1
        return float64(count)
    s = F0
    for j in range(cols):
        p = pred[r, j]
        t = target_at(target, labels, r, j, sparse)
        if kind == METRIC_BINARY_ACCURACY:
            if (F1 if p > thr else F0) == t:
                s += F1
        elif kind == METRIC_ACCURACY:
            if p == t:
                s += F1
        elif kind == METRIC_MAE:
            s += abs(t - p)
        else:
            d = t - p
            s += d * d
    return float64(s / float32(cols))


@cuda.jit
def _metric_rows(partials, pred, target, labels, weights, rows, cols, kind, k, thr, per_weight,
                 sparse, weighted):
    """reduction.make_row_sum_kernel's fixed-order sum, of the weighted row values."""
    part = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    r0 = cuda.blockIdx.x * ROWS_PER_BLOCK
    r1 = min(r0 + ROWS_PER_BLOCK, rows)
    s = D0
    for r in range(r0 + tid, r1, nthreads):
        v = _metric_row(pred, target, labels, r, cols, kind, k, thr, sparse)
        if weighted:
            v *= float64(weights[r // per_weight])
        s += v
    store_block_sum(partials, part, tid, nthreads, s)


@cuda.jit
def _confusion_kernel(counts, pred, target, labels, weights, thresholds, rows, cols, n,
                      per_weight, sparse, weighted):
    """counts (4, n): thread i counts threshold i over the rows in order."""
    i = cuda.grid(1)
    if i >= n:
        return
    thr = thresholds[i]
    tp = D0
    fp = D0
    tn = D0
    fn = D0
    for r in range(rows):
        w = float64(weights[r // per_weight]) if weighted else float64(1.0)
        a = 0
        b = 0
        c = 0
        d = 0
        for j in range(cols):
            predicted = pred[r, j] > thr
            actual = target_at(target, labels, r, j, sparse) != F0
            if predicted and actual:
                a += 1
            elif predicted:
                b += 1
            elif actual:
                d += 1
            else:
                c += 1
        tp += w * float64(a)
        fp += w * float64(b)
        tn += w * float64(c)
        fn += w * float64(d)
    counts[0, i] = tp
    counts[1, i] = fp
    counts[2, i] = tn
    counts[3, i] = fn


def _operands(where, pred, target, weights, per_weight, workspace):
    if pred.ndim != 2 or pred.shape[1] == 0:
        raise ValueError(f"{where}: expected pred of shape (rows, cols >= 1), received "
                         f"{tuple(pred.shape)}")
    check_float32(where, pred=pred)
    rows = pred.shape[0]
    sparse = target.ndim == 1
    if sparse:
        check_shape(where, "labels", target, (rows,))
        if target.dtype != np.int64:
            raise TypeError(f"{where}: expected int64 labels, received dtype {target.dtype}")
        labels, target2 = target, pred
    else:
        check_shape(where, "target", target, pred.shape)
        check_float32(where, target=target)
        labels, target2 = workspace.table("no_labels", (0,)), target
    if per_weight < 1:
        raise ValueError(f"{where}: expected per_weight >= 1, received {per_weight}")
    weighted = weights is not None
    if weighted:
        check_shape(where, "weights", weights, ((rows + per_weight - 1) // per_weight,))
        check_float32(where, weights=weights)
    else:
        weights = workspace.table("no_weights", (0.0,), np.float32)
    return rows, sparse, labels, target2, weights, weighted


def metric_sum(kind, pred, target, workspace, k=5, threshold=0.5, weights=None, per_weight=1):
    """The sum over the rows of pred (rows, cols) of the metric's per-row value, row i
    weighted by weights[i // per_weight] (None: 1), a float."""
    if kind not in METRICS or kind == "confusion":
        raise ValueError(f"metric_sum: expected kind in {tuple(METRICS)} but 'confusion', "
                         f"received kind={kind!r}")
    if k < 1:
        raise ValueError(f"metric_sum: expected k >= 1, received k={k}")
    if threshold != threshold:
        raise ValueError("metric_sum: expected a threshold that is not NaN")
    rows, sparse, labels, target2, weights, weighted = _operands(
        "metric_sum", pred, target, weights, per_weight, workspace)
    if rows == 0:
        return 0.0
    cols = pred.shape[1]
    nblocks = (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    threads = pow2_at_least(min(rows, ROWS_PER_BLOCK), THREADS)
    partials = workspace.device("metric_partials", nblocks, np.float64)
    _metric_rows[nblocks, threads](partials, pred, target2, labels, weights, rows, cols,
                                   METRICS[kind], int(k), np.float32(threshold), int(per_weight),
                                   sparse, weighted)
    total = partials
    if nblocks > 1:
        total = workspace.device("metric_total", 1, np.float64)
        _sum_in_order_kernel[1, 1](total, partials, nblocks)
    host = workspace.pinned("metric_host", 1, np.float64)
    total[0:1].copy_to_host(host)
    return float(host[0])


def metric_confusion(pred, target, thresholds, workspace, weights=None, per_weight=1):
    """(4, n) float64 host array: tp, fp, tn, fn at each threshold (pynn_metric_confusion)."""
    thr = np.asarray(thresholds, dtype=np.float32).reshape(-1)
    if thr.size < 1 or np.any(np.isnan(thr)):
        raise ValueError("metric_confusion: expected at least one threshold, none NaN")
    rows, sparse, labels, target2, weights, weighted = _operands(
        "metric_confusion", pred, target, weights, per_weight, workspace)
    n = thr.size
    counts = workspace.device("confusion_counts", (4, n), np.float64)
    table = workspace.table("thresholds", thr.tolist(), np.float32)
    threads = min(128, pow2_at_least(n, 128))
    _confusion_kernel[(n + threads - 1) // threads, threads](
        counts, pred, target2, labels, weights, table, rows, pred.shape[1], n, int(per_weight),
        sparse, weighted)
    return counts.copy_to_host()
