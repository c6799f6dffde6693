"""Losses with Keras names and semantics: the mean over the batch (and over every position
but the last axis) of the per-sample loss.

A loss object says *which* loss (its `kind`, one of the loss kernels of csrc/pynn.h) and
how to read targets; the numbers come from the backend's fused loss-and-gradient kernel.
"""
import numpy as np

from .checks import check_bool, check_name, check_number, invalid, is_int, shown


def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


class Loss:
    kind = None          # "mse" | "bce" | "cce" | "scce" | "mae" | ...: the kernel (pynn.ids.LOSSES)
    sparse = False       # integer class labels instead of target vectors
    fused_activation = None   # the output activation whose logits the loss can take
    param = 1.0          # the kernel's parameter (Huber's delta; ignored by the others)

    def __init__(self, from_logits=False, name=None, reduction="sum_over_batch_size"):
        where = type(self).__name__
        self.from_logits = check_bool(from_logits, "from_logits", where)
        if reduction not in ("sum_over_batch_size", "auto", None):
            raise ValueError(f"{where}: only reduction='sum_over_batch_size' is "
                             f"supported, received reduction={shown(reduction)}")
        self.name = _NAMES[type(self)] if name in (None, "") else check_name(name, "name", where)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def fuses_with(self, activation):
        """Whether a model output made by `activation` can hand this loss its logits."""
        return self.fused_activation is not None and activation == self.fused_activation

    def target_spec(self, output_shape):
        """(target shape with the batch axis, dtype, classes) for an output of this shape;
        classes is 0 for float targets."""
        return tuple(output_shape), "float32", 0

    def prepare_targets(self, y, output_shape, where="fit"):
        """Check `y` (a numeric NumPy array with a batch axis) against the output's shape
        (with the batch axis) and return what the loss kernel reads: float32 of that shape."""
        y = np.asarray(y)
        want = tuple(output_shape[1:])
        if want[-1:] == (1,) and y.shape[1:] == want[:-1]:     # (n,) targets of a 1-unit output
            y = y.reshape((y.shape[0],) + want)
        if y.shape[1:] != want:
            raise ValueError(
                f"{where}: {self.name} expects targets of shape "
                f"{_shape_text((None,) + want)} to match the model's output, received y with "
                f"shape {y.shape}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss value for one batch (a float), computed by the default backend's kernel."""
        if sample_weight is not None:
            raise ValueError(f"{self.name}: sample_weight is not supported yet")
        from .backend import get as get_backend
        y_pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        if y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1)
        target = self.prepare_targets(np.asarray(y_true), (None,) + y_pred.shape[1:],
                                      where=self.name)
        be = get_backend(None)
        cols = y_pred.shape[-1]
        pred2 = y_pred.reshape(-1, cols)
        target2 = target.reshape(-1) if self.sparse else target.reshape(-1, cols)
        return float(be.loss(self.kind, be.from_host(pred2), be.from_host(target2),
                             self.from_logits, None, self.param))


class MeanSquaredError(Loss):
    kind = "mse"

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        super().__init__(False, name, reduction)

    def get_config(self):
        return {"name": self.name}


class BinaryCrossentropy(Loss):
    kind = "bce"
    fused_activation = "sigmoid"


class CategoricalCrossentropy(Loss):
    kind = "cce"
    fused_activation = "softmax"


class SparseCategoricalCrossentropy(Loss):
    kind = "scce"
    sparse = True
    fused_activation = "softmax"

    def target_spec(self, output_shape):
        return tuple(output_shape[:-1]), "int64", int(output_shape[-1])

    def prepare_targets(self, y, output_shape, where="fit"):
        y = np.asarray(y)
        want = tuple(output_shape[1:-1])
        if y.shape[1:] == want + (1,):
            y = y.reshape(y.shape[:-1])
        if y.shape[1:] != want:
            raise ValueError(
                f"{where}: {self.name} expects integer class labels of shape "
                f"{_shape_text((None,) + want)} or {_shape_text((None,) + want + (1,))}, "
                f"received y with shape {y.shape}")
        if y.dtype.kind not in "iu" and y.size and not (np.mod(y, 1) == 0).all():
            raise ValueError(f"{where}: {self.name} expects integer class labels, "
                             f"received non-integer values of dtype {y.dtype}")
        classes = output_shape[-1]
        labels = y.astype(np.int64, copy=False)
        if labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{where}: {self.name} expects labels in [0, {classes - 1}] for a model "
                    f"output of {classes} classes, received label {bad}")
        return np.ascontiguousarray(labels)


class _KerasLoss(Loss):
    """A loss of Keras 3's LossFunctionWrapper kind: no logits form, the constructor
    (reduction="sum_over_batch_size", name=..., dtype=None)."""

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(False, name, reduction)
        if dtype not in (None, "float32"):
            raise invalid(type(self).__name__, "dtype", "None or 'float32'", dtype)

    def get_config(self):
        return {"name": self.name}


class MeanAbsoluteError(_KerasLoss):
    """mean_j |y_true - y_pred| per sample."""
    kind = "mae"


class MeanAbsolutePercentageError(_KerasLoss):
    """100 mean_j |(y_true - y_pred) / max(|y_true|, 1e-7)| per sample."""
    kind = "mape"


class Huber(_KerasLoss):
    """mean_j of e^2 / 2 where |e| <= delta, delta |e| - delta^2 / 2 elsewhere (e = y_pred -
    y_true) per sample."""
    kind = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction, name, dtype)
        where = type(self).__name__
        delta = check_number(delta, "delta", where, low=0.0, low_open=True)
        if np.float32(delta) == 0:      # the kernels read it as a float32
            raise invalid(where, "delta", "a number > 0 as a float32", delta)
        self.delta = delta

    @property
    def param(self):
        return self.delta

    def get_config(self):
        return {"name": self.name, "delta": self.delta}


class LogCosh(_KerasLoss):
    """mean_j log(cosh(y_pred - y_true)) per sample."""
    kind = "log_cosh"


class KLDivergence(_KerasLoss):
    """sum_j t log(t / p) per sample, t and p clipped to [1e-7, 1]."""
    kind = "kld"


class Hinge(_KerasLoss):
    """mean_j max(1 - t y_pred, 0) per sample; targets are -1 or 1, or all 0 or 1 (then
    mapped to -1 and 1, as Keras checks it: over the whole batch)."""
    kind = "hinge"


class SquaredHinge(_KerasLoss):
    """mean_j max(1 - t y_pred, 0)^2 per sample, targets as Hinge's."""
    kind = "squared_hinge"


class CategoricalHinge(_KerasLoss):
    """max(max_j (1 - t_j) p_j - sum_j t_j p_j + 1, 0) per sample."""
    kind = "categorical_hinge"


class Poisson(_KerasLoss):
    """mean_j y_pred - y_true log(y_pred + 1e-7) per sample."""
    kind = "poisson"


class CosineSimilarity(_KerasLoss):
    """-sum_j (t / |t|)_j (p / |p|)_j per sample, each vector divided by
    sqrt(max(sum x^2, 1e-14)); only the last axis (axis=-1)."""
    kind = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction, name, dtype)
        if not is_int(axis) or axis != -1:
            raise invalid(type(self).__name__, "axis", "-1 (the last axis; the only one "
                          "supported)", axis)
        self.axis = -1

    def get_config(self):
        return {"name": self.name, "axis": self.axis}


_NAMES = {
    MeanSquaredError: "mean_squared_error",
    BinaryCrossentropy: "binary_crossentropy",
    CategoricalCrossentropy: "categorical_crossentropy",
    SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
    MeanAbsoluteError: "mean_absolute_error",
    MeanAbsolutePercentageError: "mean_absolute_percentage_error",
    Huber: "huber_loss",
    LogCosh: "log_cosh",
    KLDivergence: "kl_divergence",
    Hinge: "hinge",
    SquaredHinge: "squared_hinge",
    CategoricalHinge: "categorical_hinge",
    Poisson: "poisson",
    CosineSimilarity: "cosine_similarity",
}

_BY_NAME = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    # the names Keras 3's losses.get resolves (its functions and aliases, legacy "logcosh"
    # and "kullback_leibler_divergence" included)
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "huber": Huber,
    "log_cosh": LogCosh, "logcosh": LogCosh,
    "kld": KLDivergence, "kl_divergence": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "poisson": Poisson, "cosine_similarity": CosineSimilarity,
}

CLASSES = {cls.__name__: cls for cls in _NAMES}


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


def mean_squared_error(y_true, y_pred):
    """Keras's functional form (a float here): MeanSquaredError()(y_true, y_pred)."""
    return MeanSquaredError()(y_true, y_pred)


mse = mean_squared_error
