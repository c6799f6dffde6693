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

_ALIASES = {
    "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "mae": "mean_absolute_error", "mean_absolute_error": "mean_absolute_error",
    "mse": "mean_squared_error", "mean_squared_error": "mean_squared_error",
}
NAMES = ("accuracy", "acc") + tuple(_ALIASES)


def resolve_object(metric, loss, output_shape, where="compile"):
    """(kernel kind, log name) of a metric object in compile(metrics=[...])."""
    kind = getattr(metric, "kind", None)
    if kind is None:
        raise ValueError(f"{where}: the metric {metric!r} aggregates values given to its "
                         "update_state and cannot be computed from a model's outputs; expected "
                         "one of " + ", ".join(n for n, c in CLASSES.items()
                                               if getattr(c, "kind", None)))
    return resolve(kind, loss, output_shape, where), metric.name


class MetricSpec:
    """One compiled metric: the kernel (`kind`) and the key it is logged under."""

    def __init__(self, kind, key, root=False):
        assert kind in ids.METRICS
        self.kind, self.key, self.root = kind, key, root

    def __repr__(self):
        return f"<metric {self.key}: {self.kind}>"


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
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{type(self).__name__}: expected name to be a non-empty string, "
                             f"received name={name!r}")
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
    """A metric computed by kernel `kind` (pynn.ids.METRICS): the mean over rows (and the
    positions of image outputs) of a per-row value."""
    kind = None

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
        if self.kind == "sparse_categorical_accuracy":
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
        self._total += float(backends.get("cpu").metric_sum(self.kind, pred, target))
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
    root = True

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def result(self):
        return np.float32(math.sqrt(self._total / self._count) if self._count else 0.0)


CLASSES = {cls.__name__: cls for cls in (Mean, Sum, BinaryAccuracy, CategoricalAccuracy,
                                         SparseCategoricalAccuracy, MeanSquaredError,
                                         MeanAbsoluteError, RootMeanSquaredError)}
