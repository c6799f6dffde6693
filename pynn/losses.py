"""Losses with Keras names and semantics (mean over the batch of the per-sample loss).

A loss object says *which* loss (its `kind`, one of the backend's loss kernels) and
how to read targets; the numbers come from the backend's fused loss-and-gradient kernel.
"""
import numpy as np


class Loss:
    kind = None          # "mse" | "bce" | "cce" | "scce": the backend kernel
    sparse = False       # integer class labels instead of target vectors

    def __init__(self, from_logits=False, name=None):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: expected from_logits to be a bool, "
                            f"received {from_logits!r}")
        self.from_logits = bool(from_logits)
        self.name = name or _NAMES[type(self)]

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    def prepare_targets(self, y, output_dim, where="fit"):
        """Check `y` (already a numeric NumPy array with a first axis) against the model's
        output width and return what the loss kernel reads: float32 (n, output_dim)."""
        y = np.asarray(y)
        if y.ndim == 1 and output_dim == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != output_dim:
            raise ValueError(
                f"{where}: {self.name} expects targets of shape (n, {output_dim}) to match the "
                f"model's output, received y with shape {y.shape}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def __call__(self, y_true, y_pred):
        """The loss value for one batch, computed by the NumPy reference."""
        from .backend import reference
        y_pred = np.asarray(y_pred, dtype=np.float32)
        if y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1)
        y = self.prepare_targets(np.asarray(y_true), y_pred.shape[1], where=self.name)
        if self.sparse:
            value, _ = reference.sparse_cce(y_pred, y, self.from_logits)
        else:
            value, _ = reference.loss(y_pred, y, self.kind, self.from_logits)
        return float(value)


class MeanSquaredError(Loss):
    kind = "mse"

    def __init__(self, name=None):
        super().__init__(False, name)

    def get_config(self):
        return {"name": self.name}


class BinaryCrossentropy(Loss):
    kind = "bce"


class CategoricalCrossentropy(Loss):
    kind = "cce"


class SparseCategoricalCrossentropy(Loss):
    kind = "scce"
    sparse = True

    def prepare_targets(self, y, output_dim, where="fit"):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1:
            raise ValueError(
                f"{where}: {self.name} expects integer class labels of shape (n,) or (n, 1), "
                f"received y with shape {y.shape}")
        if y.dtype.kind not in "iu" and y.size and not (np.mod(y, 1) == 0).all():
            raise ValueError(f"{where}: {self.name} expects integer class labels, "
                             f"received non-integer values of dtype {y.dtype}")
        labels = y.astype(np.int64, copy=False)
        if labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= output_dim:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{where}: {self.name} expects labels in [0, {output_dim - 1}] for a model with "
                    f"{output_dim} outputs, received label {bad}")
        return np.ascontiguousarray(labels)


_NAMES = {
    MeanSquaredError: "mean_squared_error",
    BinaryCrossentropy: "binary_crossentropy",
    CategoricalCrossentropy: "categorical_crossentropy",
    SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
}

_BY_NAME = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def get(identifier, where="compile"):
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"{where}: unknown loss {identifier!r}; expected one of "
                             f"{', '.join(sorted(_BY_NAME))} or a pynn.losses.Loss instance")
        return cls()
    raise TypeError(f"{where}: expected a loss name or pynn.losses.Loss instance, received "
                    f"{type(identifier).__name__} {identifier!r}")
