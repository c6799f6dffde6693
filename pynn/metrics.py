"""Metrics with Keras names: each returns per-sample values for a batch; the model
averages them over every sample of the epoch, as Keras's Mean metrics do."""
import numpy as np


def _binary_accuracy(y_true, y_pred):
    return np.mean((y_pred > 0.5).astype(np.float32) == y_true, axis=-1)


def _categorical_accuracy(y_true, y_pred):
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float32)


def _sparse_categorical_accuracy(labels, y_pred):
    return (labels == np.argmax(y_pred, axis=-1)).astype(np.float32)


def _mean_absolute_error(y_true, y_pred):
    return np.mean(np.abs(y_true - y_pred), axis=-1)


_FUNCTIONS = {
    "binary_accuracy": _binary_accuracy,
    "categorical_accuracy": _categorical_accuracy,
    "sparse_categorical_accuracy": _sparse_categorical_accuracy,
    "mae": _mean_absolute_error,
    "mean_absolute_error": _mean_absolute_error,
}
NAMES = ("accuracy", "acc") + tuple(_FUNCTIONS)


class Metric:
    """A named per-sample function; `name` is the key it gets in History."""

    def __init__(self, name, fn, sparse_targets):
        self.name, self._fn, self._sparse = name, fn, sparse_targets

    def per_sample(self, targets, y_pred):
        """targets as the loss reads them (labels for sparse losses), predictions as
        probabilities (or values) of shape (n, k)."""
        if self._sparse and self._fn is not _sparse_categorical_accuracy:
            onehot = np.zeros(y_pred.shape, dtype=np.float32)
            onehot[np.arange(len(targets)), targets] = 1.0
            targets = onehot
        return self._fn(targets, y_pred)


def resolve(identifiers, loss, output_dim, where="compile"):
    """Turn compile's `metrics` into Metric objects; "accuracy" is resolved from the loss
    and output width as Keras does (binary, sparse categorical or categorical)."""
    if identifiers is None:
        return []
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    if not isinstance(identifiers, (list, tuple)):
        raise TypeError(f"{where}: expected metrics as a list of names, received "
                        f"{type(identifiers).__name__} {identifiers!r}")
    out = []
    for ident in identifiers:
        if not isinstance(ident, str):
            raise TypeError(f"{where}: expected a metric name, received {type(ident).__name__} {ident!r}")
        key = ident.lower()
        if key in ("accuracy", "acc"):
            if loss.sparse:
                fn = _sparse_categorical_accuracy
            elif output_dim == 1 or loss.kind == "bce":
                fn = _binary_accuracy
            else:
                fn = _categorical_accuracy
        elif key in _FUNCTIONS:
            fn = _FUNCTIONS[key]
            if key == "categorical_accuracy" and loss.sparse:
                raise ValueError(f"{where}: 'categorical_accuracy' needs one-hot targets but the loss "
                                 f"{loss.name} takes integer labels; use 'sparse_categorical_accuracy'")
            if key == "sparse_categorical_accuracy" and not loss.sparse:
                raise ValueError(f"{where}: 'sparse_categorical_accuracy' needs integer labels but the "
                                 f"loss {loss.name} takes target vectors; use 'categorical_accuracy'")
        else:
            raise ValueError(f"{where}: unknown metric {ident!r}; expected one of {', '.join(NAMES)}")
        out.append(Metric(ident, fn, loss.sparse))
    return out
