"""Metrics by their Keras names.  A metric is a kernel of csrc/pynn.h's PYNN_METRIC_LIST
(pynn.ids.METRICS): it adds up one value per row of a batch, and the model divides by the
rows it has seen, which is the mean Keras's metrics report."""
from . import ids

_ALIASES = {
    "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "mae": "mean_absolute_error", "mean_absolute_error": "mean_absolute_error",
    "mse": "mean_squared_error", "mean_squared_error": "mean_squared_error",
}
NAMES = ("accuracy", "acc") + tuple(_ALIASES)


class MetricSpec:
    """One compiled metric: the kernel (`kind`) and the key it is logged under."""

    def __init__(self, kind, key):
        assert kind in ids.METRICS
        self.kind, self.key = kind, key

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
