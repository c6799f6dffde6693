"""Metrics by their Keras names, and as objects with Keras's stateful API.

A compiled metric is a kernel of csrc/pynn.h's PYNN_METRIC_LIST (pynn.ids.METRICS): it
adds up one value per row of a batch, and the model divides by the rows it has seen, which
is the mean Keras's metrics report (RootMeanSquaredError: the root of that mean).

The metric objects (`SparseCategoricalAccuracy(name="acc")`, `AUC()`, ...) go into
`compile(metrics=[...])` (or `weighted_metrics=[...]`: the same kernels reading the sample
weights, a mean becoming Keras's weighted mean sum(w v) / sum(w) through the "count" kernel)
next to strings, logged under their `name`, and work on their own:
`update_state(y_true, y_pred, sample_weight=None)`, `result()`, `reset_state()`, computed by
the same kernels (the cpu backend's).  Mean and Sum aggregate values given to them.  The
confusion metrics at several thresholds and AUC read the "confusion" kernel: tp, fp, tn, fn
at each threshold (pynn_metric_confusion).
"""
import math
import re

import numpy as np

from . import ids
from .checks import check_name, is_int

_ALIASES = {
    "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "mae": "mean_absolute_error", "mean_absolute_error": "mean_absolute_error",
    "mse": "mean_squared_error", "mean_squared_error": "mean_squared_error",
}
NAMES = ("accuracy", "acc") + tuple(_ALIASES) + ("precision", "recall", "auc", "true_positives",
                                                 "false_positives", "true_negatives",
                                                 "false_negatives", "top_k_categorical_accuracy",
                                                 "sparse_top_k_categorical_accuracy")


def spec_for(identifier, key, loss, output_shape, where="compile", weighted=False):
    """The MetricSpec of a metric name or object in compile(metrics=[...]) (or, weighted,
    of weighted_metrics=[...]), logged as `key`."""
    if isinstance(identifier, Metric):
        if getattr(identifier, "parts", None) is None:
            raise ValueError(f"{where}: the metric {identifier!r} aggregates values given to "
                             "its update_state and cannot be computed from a model's outputs; "
                             "expected one of " + ", ".join(
                                 n for n, c in CLASSES.items() if getattr(c, "parts", None)))
        metric = identifier
    elif isinstance(identifier, str) and identifier.lower() in _OBJECT_NAMES:
        metric = _OBJECT_NAMES[identifier.lower()]()
    else:
        kind = resolve(identifier, loss, output_shape, where)
        if weighted:
            return MetricSpec(None, key, parts=[kind, "count"], combine="weighted_mean",
                              weighted=True)
        return MetricSpec(kind, key)
    kind = metric.parts[0]
    if kind in _ALIASES:
        resolve(kind, loss, output_shape, where)                # labels vs rows checked
    elif kind.endswith("top_k_categorical_accuracy"):
        sparse = loss is not None and loss.sparse
        if sparse != kind.startswith("sparse_"):
            other = kind[len("sparse_"):] if kind.startswith("sparse_") else "sparse_" + kind
            raise ValueError(f"{where}: '{metric.name}' ({type(metric).__name__}) needs "
                             f"{'integer labels' if not sparse else 'one-hot targets'} but the "
                             f"loss {getattr(loss, 'name', None)} takes "
                             f"{'integer labels' if sparse else 'target vectors'}; use {other}")
    if getattr(metric, "top_k", None) is not None or getattr(metric, "class_id", None) is not None:
        raise ValueError(f"{where}: {type(metric).__name__}(top_k={metric.top_k!r}, "
                         f"class_id={metric.class_id!r}) works in update_state but not in "
                         "compile yet (the plan's metric kernels read whole rows); use "
                         "top_k=None and class_id=None")
    return metric.spec(key, weighted)


def object_name(identifier):
    """The log name of a metric in compile(metrics=[...]): an object's `name`, else the
    string as given."""
    return identifier.name if isinstance(identifier, Metric) else identifier


def _divide(a, b):
    """a / b, 0 where b is 0 (Keras's ops.divide_no_nan), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def auc_value(tp, fp, tn, fn, curve="ROC", summation_method="interpolation"):
    """Keras 3's AUC.result() from the confusion counts at the (ascending) thresholds, in
    float64: a Riemann sum of the ROC (x: false positive rate, y: recall) or PR (x: recall,
    y: precision) curve with interpolation (trapezoids), minoring or majoring heights, and for
    PR with interpolation Keras's interpolate_pr_auc (Davis & Goadrich 2006)."""
    tp, fp, tn, fn = (np.asarray(a, np.float64) for a in (tp, fp, tn, fn))
    if curve == "PR" and summation_method == "interpolation":
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        prec_slope = _divide(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - prec_slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        safe_p_ratio = np.where(both, _divide(p[:-1], np.maximum(p[1:], 0)), 1.0)
        with np.errstate(divide="ignore"):
            log_ratio = np.log(np.where(safe_p_ratio > 0, safe_p_ratio, 1.0))
        increment = _divide(prec_slope * (dtp + intercept * log_ratio),
                            np.maximum(tp[1:] + fn[1:], 0))
        return float(np.sum(increment))
    recall = _divide(tp, tp + fn)
    if curve == "ROC":
        x, y = _divide(fp, fp + tn), recall
    else:
        x, y = recall, _divide(tp, tp + fp)
    if summation_method == "interpolation":
        heights = (y[:-1] + y[1:]) / 2.0
    elif summation_method == "minoring":
        heights = np.minimum(y[:-1], y[1:])
    else:
        heights = np.maximum(y[:-1], y[1:])
    return float(np.sum((x[:-1] - x[1:]) * heights))


class MetricSpec:
    """One compiled metric: the kernels whose sums it reads (`parts`, one plan op each;
    "confusion" writes 4 x len(thresholds) slots: tp, fp, tn, fn at each threshold), how it
    combines them (`combine`) and the key it is logged under.  `weighted`: its ops read the
    plan's sample weights (compile(weighted_metrics=...)).

      "mean"           parts[0]'s sum / the values seen (rows x positions): the accuracies,
                       errors
      "root"           the square root of that mean (RootMeanSquaredError)
      "weighted_mean"  parts [kind, "count"]: sums[0] / sums[1], 0 when the weights sum to 0
                       (Keras's weighted mean sum(w v) / sum(w)); "weighted_root" its root
      "sum"            parts[0]'s sum (the confusion counts at one threshold)
      "ratio"          a / (a + b) of the two parts' sums, 0 when both are 0 (Precision,
                       Recall at one threshold)
      "tp", "fp", "tn", "fn", "precision", "recall"
                       from one "confusion" part at several thresholds: an array, one value
                       per threshold (Keras's list result)
      "auc"            from one "confusion" part: Keras's AUC.result() (auc_value) for
                       `curve` and `summation_method`"""

    def __init__(self, kind, key, root=False, parts=None, combine=None, k=1, threshold=0.5,
                 thresholds=None, weighted=False, curve="ROC", summation_method="interpolation"):
        self.k = int(k)                          # the top-k accuracies' k
        self.parts = list(parts) if parts is not None else [kind]
        assert all(p in ids.METRICS for p in self.parts)
        self.kind, self.key = self.parts[0], key
        self.combine = combine or ("root" if root else "mean")
        self.threshold = float(threshold)        # binary accuracy's, the counts' (one op)
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.weighted = bool(weighted)
        self.curve, self.summation_method = curve, summation_method

    @property
    def root(self):
        return self.combine in ("root", "weighted_root")

    def width(self, part):
        """The metric slots the op of `part` writes."""
        return 4 * len(self.thresholds) if part == "confusion" else 1

    def reals(self, part):
        """The op's reals: its threshold, or the confusion op's thresholds."""
        return list(self.thresholds) if part == "confusion" else [self.threshold]

    def value(self, sums, seen, positions):
        """The logged value from the parts' sums over `seen` rows (an array for the
        confusion metrics at several thresholds)."""
        c = self.combine
        if c == "sum":
            return float(sums[0])
        if c == "ratio":
            total = sums[0] + sums[1]
            return float(sums[0] / total) if total else 0.0
        if c in ("weighted_mean", "weighted_root"):
            mean = float(sums[0] / sums[1]) if sums[1] else 0.0
            return math.sqrt(mean) if c == "weighted_root" else mean
        if c in ("tp", "fp", "tn", "fn", "precision", "recall", "auc"):
            tp, fp, tn, fn = np.asarray(sums, np.float64).reshape(4, -1)
            if c == "auc":
                return auc_value(tp, fp, tn, fn, self.curve, self.summation_method)
            if c == "precision":
                return _divide(tp, tp + fp)
            if c == "recall":
                return _divide(tp, tp + fn)
            return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}[c].copy()
        mean = sums[0] / (max(seen, 1) * positions)
        return math.sqrt(mean) if c == "root" else mean

    def __repr__(self):
        return f"<metric {self.key}: {self.combine} of {self.parts}" + \
            (" weighted" if self.weighted else "") + ">"


def resolve(identifier, loss, output_shape, where="compile"):
    """The kernel kind for a metric name on an output of `output_shape` trained with
    `loss`; "accuracy" is resolved from the loss and output width as Keras does (binary,
    sparse categorical or categorical)."""
    if not isinstance(identifier, str):
        raise TypeError(f"{where}: expected a metric name, received {type(identifier).__name__} "
                        f"{identifier!r}")
    key = identifier.lower()
    sparse = loss is not None and loss.sparse
    if key in ("accuracy", "acc"):
        if sparse:
            return "sparse_categorical_accuracy"
        if output_shape[-1] == 1 or (loss is not None and loss.kind == "bce"):
            return "binary_accuracy"
        return "categorical_accuracy"
    kind = _ALIASES.get(key)
    if kind is None:
        raise ValueError(f"{where}: unknown metric {identifier!r}; expected one of "
                         f"{', '.join(NAMES)}")
    if kind == "categorical_accuracy" and sparse:
        raise ValueError(f"{where}: 'categorical_accuracy' needs one-hot targets but the loss "
                         f"{loss.name} takes integer labels; use 'sparse_categorical_accuracy'")
    if kind == "sparse_categorical_accuracy" and not sparse:
        raise ValueError(f"{where}: 'sparse_categorical_accuracy' needs integer labels but the "
                         f"loss {getattr(loss, 'name', None)} takes target vectors; use "
                         "'categorical_accuracy'")
    return kind


# ---- metric objects ------------------------------------------------------------------------

def _snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class Metric:
    """Keras's metric API: update_state(...), result(), reset_state(), name, dtype."""

    def __init__(self, name=None, dtype=None):
        if name is not None:
            check_name(name, "name", type(self).__name__)
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"{type(self).__name__}: only dtype='float32' is supported, "
                             f"received dtype={dtype!r}")
        self.name = name or _snake(type(self).__name__)
        self.dtype = "float32"
        self.reset_state()

    def reset_state(self):
        self._total, self._count = 0.0, 0.0

    def result(self):
        return np.float32(self._total / self._count if self._count else 0.0)

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _sample_weights(sample_weight, rows, samples, where):
    """Per-sample weights for `rows` kernel rows of `samples` samples: (float32 weights,
    per_weight).  As Keras broadcasts them: a scalar, one weight per sample ((batch,) or
    (batch, 1)), or one per row (y_pred's shape without its last axis)."""
    if sample_weight is None:
        return None, 1
    from .arrays import numeric_array
    w = numeric_array(sample_weight, where)
    if w.dtype.kind not in "iuf":
        raise ValueError(f"{where}: expected sample_weight as numbers, received dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.ndim == 0:
        w = np.full(samples, float(w))
    elif w.size == samples and (w.ndim == 1 or (w.ndim == 2 and w.shape[1] == 1)):
        w = w.reshape(samples)
    elif w.size == rows and w.shape[0] == samples:
        per_row = w.reshape(rows)
        if not np.all(np.isfinite(per_row)) or np.any(per_row < 0):
            raise ValueError(f"{where}: expected finite sample_weight values >= 0, received "
                             f"values from {per_row.min()} to {per_row.max()}")
        return np.ascontiguousarray(per_row, dtype=np.float32), 1
    else:
        raise ValueError(f"{where}: expected sample_weight with one value per sample "
                         f"({samples}), received shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{where}: expected finite sample_weight values >= 0, received "
                         f"values from {w.min()} to {w.max()}")
    return np.ascontiguousarray(w, dtype=np.float32), max(rows // max(samples, 1), 1)


class Mean(Metric):
    """The running (weighted) mean of the values given to update_state: sum(w v) / sum(w)
    (Keras: 0 while the weights sum to 0)."""

    def update_state(self, values, sample_weight=None):
        where = f"{type(self).__name__}.update_state"
        v = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            self._total += float(v.sum())
            self._count += v.size if v.ndim else 1
            return
        w = np.asarray(sample_weight, dtype=np.float64)
        try:
            wb = np.broadcast_to(w.reshape(w.shape + (1,) * (v.ndim - w.ndim)), v.shape) \
                if w.ndim <= v.ndim else None
        except ValueError:
            wb = None
        if wb is None:
            raise ValueError(f"{where}: expected sample_weight broadcastable to the values' "
                             f"shape {v.shape}, received shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"{where}: expected finite sample_weight values >= 0")
        # Keras's reduce_to_samplewise_values: per sample, the mean over the axes the weight
        # does not have, times the weight; the count is the sum of the weights
        axes = tuple(range(max(w.ndim, 1), v.ndim))
        vw = (v * wb)
        if axes:
            vw = vw.mean(axis=axes)
            wb = wb.mean(axis=axes)
        self._total += float(vw.sum())
        self._count += float(wb.sum()) if wb.ndim else float(wb)


class Sum(Metric):
    """The running sum of the values given to update_state (weighted: sum(w v))."""

    def update_state(self, values, sample_weight=None):
        v = np.asarray(values, dtype=np.float64)
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(f"{type(self).__name__}.update_state: expected finite "
                                 "sample_weight values >= 0")
            try:
                v = v * w.reshape(w.shape + (1,) * (v.ndim - w.ndim))
            except ValueError:
                raise ValueError(f"{type(self).__name__}.update_state: expected sample_weight "
                                 f"broadcastable to the values' shape {v.shape}, received shape "
                                 f"{w.shape}") from None
        self._total += float(v.sum())

    def result(self):
        return np.float32(self._total)


class _KernelMetric(Metric):
    """A metric computed by the kernels `parts` (pynn.ids.METRICS), combined as
    MetricSpec.value does: the (weighted) mean over rows (and the positions of image outputs)
    of a per-row value, its root, a count, a ratio of two counts, or values from the
    confusion counts at several thresholds (AUC; Precision, Recall, ... with a list)."""
    kind = None
    combine = "mean"
    threshold = 0.5

    @property
    def parts(self):
        return [self.kind]

    def _spec_args(self):
        """MetricSpec's arguments besides the key: parts, combine, k, thresholds, ..."""
        return {"parts": self.parts, "combine": self.combine, "k": getattr(self, "k", 1),
                "threshold": self.threshold}

    def spec(self, key=None, weighted=False):
        """The MetricSpec computing this metric in a plan (weighted: reading the sample
        weights; a mean becomes Keras's weighted mean, sum(w v) / sum(w))."""
        args = self._spec_args()
        if weighted and args["combine"] in ("mean", "root"):
            args["parts"] = list(args["parts"]) + ["count"]
            args["combine"] = "weighted_" + args["combine"]
        return MetricSpec(None, key or self.name, weighted=weighted, **args)

    def reset_state(self):
        super().reset_state()
        self._spec = self.spec(weighted=True)     # the objects always keep sum(w) as count
        self._sums = [0.0] * sum(self._spec.width(p) for p in self._spec.parts)

    def result(self):
        value = self._spec.value(self._sums, 0, 1)
        if isinstance(value, np.ndarray):
            return value.astype(np.float32)
        return np.float32(value)

    def _prepare(self, y_true, y_pred, where):
        """(pred (rows, cols) float32, target float32 rows or int64 labels, samples)."""
        from .arrays import finite_float32, numeric_array
        pred = finite_float32(numeric_array(y_pred, where), where, "y_pred")
        if pred.ndim == 0:
            raise ValueError(f"{where}: expected y_pred with a batch axis, received a scalar")
        samples = pred.shape[0]
        if pred.ndim == 1:
            pred = pred[:, None]
        cols = pred.shape[-1]
        pred = np.ascontiguousarray(pred.reshape(-1, cols))
        if self.kind.startswith("sparse_"):
            labels = np.asarray(y_true)
            if labels.size != pred.shape[0] or labels.dtype.kind not in "iuf" or \
                    not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise ValueError(f"{where}: expected one integer label per row of y_pred "
                                 f"({pred.shape[0]}), received y_true of shape "
                                 f"{labels.shape} and dtype {labels.dtype}")
            target = np.ascontiguousarray(labels.reshape(-1), dtype=np.int64)
            if np.any(target < 0) or np.any(target >= cols):
                raise ValueError(f"{where}: labels must lie in [0, {cols}), received values "
                                 f"from {target.min()} to {target.max()}")
        else:
            target = finite_float32(numeric_array(y_true, where), where, "y_true")
            if target.size != pred.size:
                raise ValueError(f"{where}: expected y_true of the shape of y_pred "
                                 f"{pred.shape}, received shape {np.shape(y_true)}")
            target = np.ascontiguousarray(target.reshape(pred.shape))
        return pred, target, samples

    def _transform(self, pred, target):
        """pred and target as the kernels read them (top_k, class_id: Precision, Recall)."""
        return pred, target

    def update_state(self, y_true, y_pred, sample_weight=None):
        from . import backend as backends
        where = f"{type(self).__name__}.update_state"
        pred, target, samples = self._prepare(y_true, y_pred, where)
        weights, per_weight = _sample_weights(sample_weight, pred.shape[0], samples, where)
        pred, target = self._transform(pred, target)
        cpu = backends.get("cpu")
        spec, i = self._spec, 0
        for part in spec.parts:
            if part == "confusion":
                counts = cpu.metric_confusion(pred, target,
                                              np.asarray(spec.thresholds, np.float32),
                                              weights, per_weight).reshape(-1)
                for j, c in enumerate(counts):
                    self._sums[i + j] += float(c)
                i += len(counts)
            else:
                self._sums[i] += float(cpu.metric_sum(part, pred, target, spec.k, spec.threshold,
                                                      weights, per_weight))
                i += 1


def _check_threshold(value, where, arg="threshold"):
    from .checks import invalid
    if not isinstance(value, (int, float, np.integer, np.floating)) or \
            isinstance(value, (bool, np.bool_)) or not math.isfinite(float(value)):
        raise invalid(where, arg, "a finite number", value)
    return float(value)


class Accuracy(_KernelMetric):
    """How often y_pred equals y_true, entry by entry (Keras's Accuracy)."""
    kind = "accuracy"

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name, dtype)


class BinaryAccuracy(_KernelMetric):
    """How often (y_pred > threshold) matches y_true (Keras: threshold 0.5)."""
    kind = "binary_accuracy"

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        self.threshold = _check_threshold(threshold, "BinaryAccuracy")
        super().__init__(name, dtype)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(_KernelMetric):
    """How often argmax y_pred matches argmax of the one-hot y_true."""
    kind = "categorical_accuracy"

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name, dtype)


class SparseCategoricalAccuracy(_KernelMetric):
    """How often argmax y_pred matches the integer label y_true."""
    kind = "sparse_categorical_accuracy"

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name, dtype)


class MeanSquaredError(_KernelMetric):
    kind = "mean_squared_error"

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name, dtype)


class MeanAbsoluteError(_KernelMetric):
    kind = "mean_absolute_error"

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name, dtype)


class RootMeanSquaredError(_KernelMetric):
    """sqrt of the mean squared error (Keras: of all values seen)."""
    kind = "mean_squared_error"
    combine = "root"

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)


class TopKCategoricalAccuracy(_KernelMetric):
    """How often the one-hot y_true's class is among the k largest y_pred (Keras k=5;
    classes tied with the k-th value count, as TF's in_top_k)."""
    kind = "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None, dtype=None):
        from .checks import check_int
        self.k = check_int(k, "k", type(self).__name__, 1)
        super().__init__(name or self.kind, dtype)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """How often the integer label y_true is among the k largest y_pred (Keras k=5)."""
    kind = "sparse_top_k_categorical_accuracy"


def _parse_thresholds(thresholds, default, where):
    """Keras's parse_init_thresholds: a number or a list of numbers in [0, 1] (the default
    when None), as a list of floats."""
    if thresholds is None:
        return [default]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    if not values:
        from .checks import invalid
        raise invalid(where, "thresholds", "a number or a non-empty list of numbers in [0, 1]",
                      thresholds)
    out = []
    for t in values:
        t = _check_threshold(t, where, "thresholds")
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{where}: threshold values must be in [0, 1]. Received: "
                             f"thresholds={thresholds!r}")
        out.append(t)
    return out


class _Confusion(_KernelMetric):
    """Keras's confusion metrics (y_pred > threshold is predicted positive, a non-zero y_true
    is actually positive), counted over every entry: at one threshold (Keras's default 0.5) a
    number, at a list of thresholds an array with one count per threshold."""
    combine = "sum"
    condition = None                 # "tp", "fp", "tn", "fn"

    def __init__(self, thresholds=None, name=None, dtype=None, default=0.5):
        where = type(self).__name__
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, default, where)
        super().__init__(name or _snake(type(self).__name__), dtype)

    def _spec_args(self):
        if len(self.thresholds) == 1:
            return {**super()._spec_args(), "threshold": self.thresholds[0]}
        return {"parts": ["confusion"], "combine": self.condition, "thresholds": self.thresholds}

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_Confusion):
    kind, condition = "true_positives", "tp"


class FalsePositives(_Confusion):
    kind, condition = "false_positives", "fp"


class TrueNegatives(_Confusion):
    kind, condition = "true_negatives", "tn"


class FalseNegatives(_Confusion):
    kind, condition = "false_negatives", "fn"


NEG_INF = -1e10          # Keras's metrics_utils.NEG_INF: top_k's default threshold


class Precision(_Confusion):
    """TP / (TP + FP): how many predicted positives are positives (0 when none is), at each
    threshold.  top_k: only each row's k largest predictions may count as positive (the
    others set to -1e10, Keras's _filter_top_k); class_id: only that column counts.  Both
    work in update_state; compile refuses them (the plan's kernels read whole rows)."""
    kind = "true_positives"
    condition = "precision"
    second = "false_positives"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        from .checks import check_optional_int
        where = type(self).__name__
        self.top_k = check_optional_int(top_k, "top_k", where, 1)
        self.class_id = check_optional_int(class_id, "class_id", where, 0)
        _Confusion.__init__(self, thresholds, name, dtype,
                            0.5 if self.top_k is None else NEG_INF)

    def _spec_args(self):
        if len(self.thresholds) == 1:
            return {"parts": ["true_positives", self.second], "combine": "ratio",
                    "threshold": self.thresholds[0]}
        return {"parts": ["confusion"], "combine": self.condition, "thresholds": self.thresholds}

    def _transform(self, pred, target):
        if target.ndim == 1:                              # labels: their one-hot rows
            target = np.eye(pred.shape[1], dtype=np.float32)[target]
        if self.top_k is not None:
            order = np.argsort(-pred, axis=-1, kind="stable")[:, :self.top_k]
            keep = np.zeros(pred.shape, bool)
            np.put_along_axis(keep, order, True, axis=-1)
            pred = np.where(keep, pred, np.float32(NEG_INF)).astype(np.float32)
        if self.class_id is not None:
            if self.class_id >= pred.shape[1]:
                raise ValueError(f"{type(self).__name__}.update_state: class_id="
                                 f"{self.class_id} but y_pred has {pred.shape[1]} columns")
            pred = np.ascontiguousarray(pred[:, self.class_id:self.class_id + 1])
            target = np.ascontiguousarray(target[:, self.class_id:self.class_id + 1])
        return np.ascontiguousarray(pred), np.ascontiguousarray(target)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.top_k is not None and np.ndim(y_pred) == 1:     # one sample's predictions
            y_true, y_pred = np.asarray(y_true)[None], np.asarray(y_pred)[None]
        super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k, "class_id": self.class_id}


class Recall(Precision):
    """TP / (TP + FN): how many positives are predicted positive (0 when there are none),
    at each threshold; top_k and class_id as Precision's."""
    condition = "recall"
    second = "false_negatives"


_CURVES = ("ROC", "PR")
_SUMMATIONS = ("interpolation", "minoring", "majoring")
_EPSILON = 1e-7                  # Keras's backend.epsilon(): the padded end thresholds


class AUC(_KernelMetric):
    """The area under the ROC or PR curve, Keras 3's AUC: the confusion counts at
    num_thresholds thresholds (evenly spaced in (0, 1), or `thresholds` sorted, padded with
    -1e-7 and 1 + 1e-7), then a Riemann sum (auc_value).  from_logits=True: y_pred are
    logits; instead of taking their sigmoid, the thresholds become logit(threshold) (the same
    test, sigmoid(x) > t iff x > logit(t), up to rounding at the boundary).  multi_label=True,
    num_labels and label_weights (per-label AUCs) are not supported (refused)."""
    kind = "confusion"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        from .checks import check_bool, check_int, invalid
        where = "AUC"
        if not isinstance(curve, str) or curve.upper() not in _CURVES:
            raise invalid(where, "curve", f"one of {', '.join(map(repr, _CURVES))}", curve)
        if not isinstance(summation_method, str) or summation_method.lower() not in _SUMMATIONS:
            raise invalid(where, "summation_method",
                          f"one of {', '.join(map(repr, _SUMMATIONS))}", summation_method)
        self.curve, self.summation_method = curve.upper(), summation_method.lower()
        self.multi_label = check_bool(multi_label, "multi_label", where)
        self.from_logits = check_bool(from_logits, "from_logits", where)
        if self.multi_label or num_labels is not None or label_weights is not None:
            raise ValueError(f"{where}: multi_label=True, num_labels and label_weights are not "
                             f"supported yet, received multi_label={multi_label!r}, "
                             f"num_labels={num_labels!r}, label_weights={label_weights!r}")
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            if not isinstance(thresholds, (list, tuple, np.ndarray)) or len(thresholds) == 0:
                raise invalid(where, "thresholds", "a non-empty list of numbers", thresholds)
            inner = sorted(_check_threshold(t, where, "thresholds") for t in thresholds)
            self.num_thresholds = len(inner) + 2
        else:
            if not is_int(num_thresholds) or num_thresholds <= 1:
                raise ValueError(f"{where}: argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds!r}")
            self.num_thresholds = check_int(num_thresholds, "num_thresholds", where, 2, 1 << 13)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1)
                     for i in range(self.num_thresholds - 2)]
        if self.num_thresholds > 8192:
            raise invalid(where, "thresholds", "at most 8190 thresholds", thresholds)
        self._thresholds = [0.0 - _EPSILON] + inner + [1.0 + _EPSILON]
        super().__init__(name or "auc", dtype)

    @property
    def thresholds(self):
        """The thresholds, padded ends included (Keras's AUC.thresholds)."""
        return list(self._thresholds)

    def _kernel_thresholds(self):
        if not self.from_logits:
            return list(self._thresholds)
        out = []
        for t in self._thresholds:
            out.append(-math.inf if t <= 0 else math.inf if t >= 1 else math.log(t / (1 - t)))
        return out

    def _spec_args(self):
        return {"parts": ["confusion"], "combine": "auc", "thresholds": self._kernel_thresholds(),
                "curve": self.curve, "summation_method": self.summation_method}

    def get_config(self):
        config = {**super().get_config(), "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": self.multi_label, "num_labels": None, "label_weights": None,
                  "from_logits": self.from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self._thresholds[1:-1]
        return config


CLASSES = {cls.__name__: cls for cls in (Mean, Sum, Accuracy, BinaryAccuracy,
                                         CategoricalAccuracy, SparseCategoricalAccuracy,
                                         MeanSquaredError, MeanAbsoluteError,
                                         RootMeanSquaredError, TruePositives, FalsePositives,
                                         TrueNegatives, FalseNegatives, Precision, Recall, AUC,
                                         TopKCategoricalAccuracy,
                                         SparseTopKCategoricalAccuracy)}
# metric names that stand for these objects (Keras: "precision" is Precision(), "auc" AUC())
_OBJECT_NAMES = {"precision": Precision, "recall": Recall, "auc": AUC,
                 "true_positives": TruePositives,
                 "false_positives": FalsePositives, "true_negatives": TrueNegatives,
                 "false_negatives": FalseNegatives,
                 "top_k_categorical_accuracy": TopKCategoricalAccuracy,
                 "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy}
