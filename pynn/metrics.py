"""Metrics by their Keras names, and as objects with Keras's stateful API.

A compiled metric is a kernel of csrc/pynn.h's PYNN_METRIC_LIST (pynn.ids.METRICS): it
adds up one value per row of a batch, and the model divides by the rows it has seen, which
is the mean Keras's metrics report (RootMeanSquaredError: the root of that mean).

The metric objects (`SparseCategoricalAccuracy(name="acc")`, ...) go into
`compile(metrics=[...])` next to strings, logged under their `name`, and work on their own:
`update_state(y_true, y_pred)`, `result()`, `reset_state()`, computed by the same kernels
(the cpu backend's).  Mean and Sum aggregate values given to them.
"""
import math
import re

import numpy as np

from . import ids
from .checks import check_name

_ALIASES = {
    "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "mae": "mean_absolute_error", "mean_absolute_error": "mean_absolute_error",
    "mse": "mean_squared_error", "mean_squared_error": "mean_squared_error",
}
NAMES = ("accuracy", "acc") + tuple(_ALIASES) + ("precision", "recall", "true_positives",
                                                 "false_positives", "true_negatives",
                                                 "false_negatives")


def spec_for(identifier, key, loss, output_shape, where="compile"):
    """The MetricSpec of a metric name or object in compile(metrics=[...]), logged as
    `key`."""
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
        return MetricSpec(resolve(identifier, loss, output_shape, where), key)
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
    return MetricSpec(None, key, parts=metric.parts, combine=metric.combine,
                      k=getattr(metric, "k", 1))


def object_name(identifier):
    """The log name of a metric in compile(metrics=[...]): an object's `name`, else the
    string as given."""
    return identifier.name if isinstance(identifier, Metric) else identifier


class MetricSpec:
    """One compiled metric: the kernels whose sums it reads (`parts`, one plan op each),
    how it combines them (`combine`) and the key it is logged under.

      "mean"   parts[0]'s sum / the values seen (rows x positions): the accuracies, errors
      "root"   the square root of that mean (RootMeanSquaredError)
      "sum"    parts[0]'s sum (the confusion counts)
      "ratio"  a / (a + b) of the two parts' sums, 0 when both are 0 (Precision, Recall)"""

    def __init__(self, kind, key, root=False, parts=None, combine=None, k=1):
        self.k = int(k)                          # the top-k accuracies' k
        self.parts = list(parts) if parts is not None else [kind]
        assert all(p in ids.METRICS for p in self.parts)
        self.kind, self.key = self.parts[0], key
        self.combine = combine or ("root" if root else "mean")

    @property
    def root(self):
        return self.combine == "root"

    def value(self, sums, seen, positions):
        """The logged value from the parts' sums over `seen` rows."""
        if self.combine == "sum":
            return float(sums[0])
        if self.combine == "ratio":
            total = sums[0] + sums[1]
            return float(sums[0] / total) if total else 0.0
        mean = sums[0] / (max(seen, 1) * positions)
        return math.sqrt(mean) if self.combine == "root" else mean

    def __repr__(self):
        return f"<metric {self.key}: {self.combine} of {self.parts}>"


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


def _refuse_sample_weight(metric, sample_weight):
    if sample_weight is not None:
        raise ValueError(f"{type(metric).__name__}.update_state: sample_weight is not "
                         "supported yet, received an array")


class Mean(Metric):
    """The running mean of the values given to update_state."""

    def update_state(self, values, sample_weight=None):
        _refuse_sample_weight(self, sample_weight)
        v = np.asarray(values, dtype=np.float64)
        self._total += float(v.sum())
        self._count += v.size


class Sum(Metric):
    """The running sum of the values given to update_state."""

    def update_state(self, values, sample_weight=None):
        _refuse_sample_weight(self, sample_weight)
        self._total += float(np.asarray(values, dtype=np.float64).sum())

    def result(self):
        return np.float32(self._total)


class _KernelMetric(Metric):
    """A metric computed by the kernels `parts` (pynn.ids.METRICS), combined as
    MetricSpec.value does: the mean over rows (and the positions of image outputs) of a
    per-row value, its root, a count, or a ratio of two counts."""
    kind = None
    combine = "mean"

    @property
    def parts(self):
        return [self.kind]

    def reset_state(self):
        super().reset_state()
        self._sums = [0.0] * len(self.parts)

    def result(self):
        spec = MetricSpec(None, self.name, parts=self.parts, combine=self.combine)
        return np.float32(spec.value(self._sums, self._count, 1) if self._count or
                          self.combine in ("sum", "ratio") else 0.0)

    def update_state(self, y_true, y_pred, sample_weight=None):
        from . import backend as backends
        from .arrays import finite_float32, numeric_array
        _refuse_sample_weight(self, sample_weight)
        where = f"{type(self).__name__}.update_state"
        pred = finite_float32(numeric_array(y_pred, where), where, "y_pred")
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
        cpu = backends.get("cpu")
        for i, part in enumerate(self.parts):
            self._sums[i] += float(cpu.metric_sum(part, pred, target, getattr(self, "k", 1)))
        self._count += pred.shape[0]


class BinaryAccuracy(_KernelMetric):
    """How often (y_pred > threshold) matches y_true (Keras: threshold 0.5)."""
    kind = "binary_accuracy"

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if threshold != 0.5:
            raise ValueError(f"BinaryAccuracy: only threshold=0.5 is supported yet, received "
                             f"threshold={threshold!r}")
        self.threshold = 0.5
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


class _Confusion(_KernelMetric):
    """Keras's confusion metrics at its default threshold 0.5 (y_pred > 0.5 is predicted
    positive, a non-zero y_true is actually positive), counted over every entry."""
    combine = "sum"

    def __init__(self, thresholds=None, name=None, dtype=None):
        if thresholds not in (None, 0.5, [0.5], (0.5,)):
            raise ValueError(f"{type(self).__name__}: only the default threshold 0.5 is "
                             f"supported yet, received thresholds={thresholds!r}")
        self.thresholds = 0.5
        super().__init__(name or _snake(type(self).__name__), dtype)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.thresholds}


class TruePositives(_Confusion):
    kind = "true_positives"


class FalsePositives(_Confusion):
    kind = "false_positives"


class TrueNegatives(_Confusion):
    kind = "true_negatives"


class FalseNegatives(_Confusion):
    kind = "false_negatives"


class Precision(_Confusion):
    """TP / (TP + FP): how many predicted positives are positives."""
    combine = "ratio"
    kind = "true_positives"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        if top_k is not None or class_id is not None:
            raise ValueError(f"{type(self).__name__}: top_k and class_id are not supported "
                             f"yet, received top_k={top_k!r}, class_id={class_id!r}")
        super().__init__(thresholds, name, dtype)

    @property
    def parts(self):
        return ["true_positives", "false_positives"]


class Recall(Precision):
    """TP / (TP + FN): how many positives are predicted positive."""

    @property
    def parts(self):
        return ["true_positives", "false_negatives"]


CLASSES = {cls.__name__: cls for cls in (Mean, Sum, BinaryAccuracy, CategoricalAccuracy,
                                         SparseCategoricalAccuracy, MeanSquaredError,
                                         MeanAbsoluteError, RootMeanSquaredError,
                                         TruePositives, FalsePositives, TrueNegatives,
                                         FalseNegatives, Precision, Recall,
                                         TopKCategoricalAccuracy,
                                         SparseTopKCategoricalAccuracy)}
# metric names that stand for these objects (Keras: "precision" is Precision())
_OBJECT_NAMES = {"precision": Precision, "recall": Recall, "true_positives": TruePositives,
                 "false_positives": FalsePositives, "true_negatives": TrueNegatives,
                 "false_negatives": FalseNegatives,
                 "top_k_categorical_accuracy": TopKCategoricalAccuracy,
                 "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy}
