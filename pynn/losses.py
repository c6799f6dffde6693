"""Losses with Keras names and semantics: the mean over the batch (and over every position
but the last axis) of the per-sample loss.

A loss object says *which* loss (its `kind`, one of the loss kernels of csrc/pynn.h) and
how to read targets; the numbers come from the backend's fused loss-and-gradient kernel.
"""
import numpy as np

from .checks import check_bool, check_name, check_number, invalid, is_int, resolve_named, shown


def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


# Keras 3's reductions (keras.src.losses.loss.standardize_reduction); "auto" is taken as
# "sum_over_batch_size" (older Keras's default).
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
# the reductions compile takes: one number per batch, computed by the loss op
TRAINING_REDUCTIONS = ("sum_over_batch_size", "mean", "sum")


def _check_reduction(reduction, where):
    if reduction == "auto":
        return "sum_over_batch_size"
    if not (reduction is None or isinstance(reduction, str)) or reduction not in REDUCTIONS:
        raise invalid(where, "reduction", "one of " + ", ".join(repr(r) for r in REDUCTIONS),
                      reduction)
    return reduction


def _check_axis(axis, where):
    if not is_int(axis):
        raise TypeError(f"{where}: expected axis to be an int, received axis={shown(axis)}")
    return int(axis)


def _check_smoothing(label_smoothing, where):
    return check_number(label_smoothing, "label_smoothing", where, 0.0, 1.0)



def _fits(shape, want):
    """Whether a target's feature shape is `want`, where None (a free axis of the model's
    output) matches any size: the plan the batch runs under checks that size
    (Engine.shaped)."""
    return len(shape) == len(want) and all(w is None or w == d for d, w in zip(shape, want))

class Loss:
    """The base of pynn's losses.  A loss is callable, `loss(y_true, y_pred,
    sample_weight=None)`, computed by the default backend's kernel (Keras 3's semantics):
    the per-sample loss l_i over the last axis (or `axis`), weighted by sample_weight
    (broadcast to the per-sample shape, Keras's rules), then reduced: "sum_over_batch_size"
    (and "mean") sum_i w_i l_i / n, "sum" sum_i w_i l_i, "mean_with_sample_weight"
    sum_i w_i l_i / sum_i w_i, None / "none" the per-sample values w_i l_i."""
    kind = None          # "mse" | "bce" | "cce" | "scce" | "mae" | ...: the kernel (pynn.ids.LOSSES)
    sparse = False       # integer class labels instead of target vectors
    fused_activation = None   # the output activation whose logits the loss can take
    param = 1.0          # the kernel's parameter (Huber's delta; ignored by the others)
    label_smoothing = 0.0     # BinaryCrossentropy, CategoricalCrossentropy
    ignore_class = None       # SparseCategoricalCrossentropy
    axis = -1                 # the axis the per-sample loss runs over

    def __init__(self, from_logits=False, name=None, reduction="sum_over_batch_size"):
        where = type(self).__name__
        self.from_logits = check_bool(from_logits, "from_logits", where)
        self.reduction = _check_reduction(reduction, where)
        self.name = _NAMES[type(self)] if name in (None, "") else check_name(name, "name", where)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def fuses_with(self, activation):
        """Whether a model output made by `activation` can hand this loss its logits."""
        return self.fused_activation is not None and activation == self.fused_activation

    def check_output(self, output_shape, where="compile"):
        """A ValueError unless a model output of this shape (with the batch axis) can be
        trained with this loss: its per-sample loss over the last axis, and a reduction that
        gives one number per batch the training step can take: "sum_over_batch_size" (or
        "mean", the same) or "sum" (Keras 3's: sum_i w_i l_i, not divided by the rows)."""
        rank = len(output_shape)
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"{where}: {type(self).__name__} with axis={self.axis} cannot "
                             f"train an output of shape {_shape_text(output_shape)}: pynn "
                             f"computes losses over the last axis (axis=-1 or {rank - 1})")
        if self.reduction not in TRAINING_REDUCTIONS:
            why = ("gives one loss per sample" if self.reduction in (None, "none") else
                   "divides by the batch's total sample weight, which pynn's training step "
                   "does not")
            raise ValueError(f"{where}: {type(self).__name__} with reduction="
                             f"{shown(self.reduction)} cannot train a model: training needs "
                             f"one number per batch and that reduction {why}; use "
                             "reduction='sum_over_batch_size' (the mean over the batch) or "
                             "'sum'")

    def target_spec(self, output_shape):
        """(target shape with the batch axis, dtype, classes) for an output of this shape;
        classes is 0 for float targets."""
        return tuple(output_shape), "float32", 0

    def prepare_targets(self, y, output_shape, where="fit"):
        """Check `y` (a numeric NumPy array with a batch axis) against the output's shape
        (with the batch axis) and return what the loss kernel reads: float32 of that shape."""
        y = np.asarray(y)
        want = tuple(output_shape[1:])
        if want[-1:] == (1,) and _fits(y.shape[1:], want[:-1]):     # (n,) targets of a 1-unit output
            y = y.reshape((y.shape[0],) + want)
        if not _fits(y.shape[1:], want):
            raise ValueError(
                f"{where}: {self.name} expects targets of shape "
                f"{_shape_text((None,) + want)} to match the model's output, received y with "
                f"shape {y.shape}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def _sample_weights(self, sample_weight, sample_shape):
        """One float32 weight per per-sample loss (Keras's broadcasting: trailing axes of 1
        dropped, missing trailing axes added), or None."""
        if sample_weight is None:
            return None
        where = self.name
        sw = np.asarray(sample_weight)
        if sw.dtype.kind not in "biuf":
            raise TypeError(f"{where}: expected sample_weight as numbers, received dtype "
                            f"{sw.dtype}")
        sw = sw.astype(np.float64)
        if not np.all(np.isfinite(sw)) or np.any(sw < 0):
            bad = sw[~(np.isfinite(sw) & (sw >= 0))].reshape(-1)[0]
            raise ValueError(f"{where}: expected finite sample_weight >= 0, received "
                             f"sample_weight with the value {bad!r}")
        while sw.ndim > len(sample_shape) and sw.shape[-1] == 1:
            sw = sw[..., 0]
        try:
            if sw.ndim > len(sample_shape):
                raise ValueError
            sw = np.broadcast_to(sw.reshape(sw.shape + (1,) * (len(sample_shape) - sw.ndim)),
                                 sample_shape)
        except ValueError:
            raise ValueError(f"{where}: expected sample_weight of shape "
                             f"{_shape_text(sample_shape)} (or a prefix of it, e.g. one weight "
                             f"per sample), received sample_weight with shape "
                             f"{np.shape(sample_weight)}") from None
        return np.ascontiguousarray(sw.reshape(-1), dtype=np.float32)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss of one batch, computed by the default backend's kernel: a NumPy float32
        scalar, or for reduction None / "none" the per-sample values (shape y_pred.shape[:-1])."""
        from .backend import get as get_backend
        y_pred = np.asarray(y_pred, dtype=np.float32)
        y_true = np.asarray(y_true)
        if y_pred.ndim == 0:
            raise ValueError(f"{self.name}: expected y_pred with a batch axis, received a scalar")
        if y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1)
        if self.axis not in (-1, y_pred.ndim - 1):     # Keras's axis, moved last
            if not -y_pred.ndim <= self.axis < y_pred.ndim:
                raise ValueError(f"{self.name}: axis={self.axis} is out of range for y_pred "
                                 f"of shape {y_pred.shape}")
            if not self.sparse and y_true.ndim == y_pred.ndim:
                y_true = np.moveaxis(y_true, self.axis, -1)
            y_pred = np.moveaxis(y_pred, self.axis, -1)
        y_pred = np.ascontiguousarray(y_pred)
        target = self.prepare_targets(y_true, (None,) + y_pred.shape[1:], where=self.name)
        be = get_backend(None)
        cols = y_pred.shape[-1]
        sample_shape = y_pred.shape[:-1]
        pred2 = y_pred.reshape(-1, cols)
        target2 = target.reshape(-1) if self.sparse else target.reshape(-1, cols)
        weights = self._sample_weights(sample_weight, sample_shape)
        if self.reduction in (None, "none"):
            return self._per_sample(be, pred2, target2, weights).reshape(sample_shape)
        value = be.loss(self.kind, be.from_host(pred2), be.from_host(target2), self.from_logits,
                        None, self.param,
                        weights=None if weights is None else be.from_host(weights),
                        label_smoothing=self.label_smoothing, ignore_class=self.ignore_class,
                        reduce_sum=self.reduction == "sum")
        # the kernel's value is sum_i w_i l_i / n, n the rows (not ignored), or for "sum"
        # sum_i w_i l_i
        n = pred2.shape[0] if self.ignore_class is None else \
            int(np.count_nonzero(target2 != self.ignore_class))
        if self.reduction == "mean_with_sample_weight" and weights is not None:
            kept = weights if self.ignore_class is None else weights[target2 != self.ignore_class]
            total = float(kept.astype(np.float64).sum())
            value = value * n / total if total > 0 else 0.0
        return np.float32(value)

    def _per_sample(self, be, pred2, target2, weights):
        """w_i l_i per row, each row one call of the kernel (float32)."""
        rows, cols = pred2.shape
        out = np.empty(rows, np.float64)
        # Keras maps hinge targets {0, 1} to {-1, 1} when the whole batch is 0 or 1; the
        # kernel decides it per call, so a row of 0s and 1s in a batch that is not gets a
        # column of target 2 and prediction 1 (hinge 0) that keeps it as it is
        hinge_rows = self.kind in ("hinge", "squared_hinge") and \
            not np.all((target2 == 0) | (target2 == 1))
        for i in range(rows):
            p, t, scale = pred2[i:i + 1], target2[i:i + 1], 1.0
            if hinge_rows and np.all((t == 0) | (t == 1)):
                p = np.append(p, np.ones((1, 1), np.float32), axis=1)
                t = np.append(t, np.full((1, 1), 2, np.float32), axis=1)
                scale = (cols + 1) / cols
            out[i] = scale * be.loss(
                self.kind, be.from_host(np.ascontiguousarray(p)),
                be.from_host(np.ascontiguousarray(t)), self.from_logits, None, self.param,
                weights=None if weights is None else be.from_host(weights[i:i + 1]),
                label_smoothing=self.label_smoothing, ignore_class=self.ignore_class)
        return out.astype(np.float32)


class MeanSquaredError(Loss):
    kind = "mse"

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(False, name, reduction)
        _check_dtype(dtype, type(self).__name__)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


class _Crossentropy(Loss):
    """Keras 3's constructor of BinaryCrossentropy and CategoricalCrossentropy."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(from_logits, name, reduction)
        where = type(self).__name__
        self.label_smoothing = _check_smoothing(label_smoothing, where)
        self.axis = _check_axis(axis, where)
        _check_dtype(dtype, where)

    def get_config(self):
        return dict(super().get_config(), label_smoothing=self.label_smoothing, axis=self.axis)


class BinaryCrossentropy(_Crossentropy):
    """Keras 3's: the mean over the last axis of the binary cross-entropy per sample;
    label_smoothing in [0, 1] reads targets t as t (1 - ls) + ls / 2."""
    kind = "bce"
    fused_activation = "sigmoid"


class CategoricalCrossentropy(_Crossentropy):
    """Keras 3's: -sum_j t_j log p_j per sample (pred rows normalised to sum 1);
    label_smoothing in [0, 1] reads targets t as t (1 - ls) + ls / classes."""
    kind = "cce"
    fused_activation = "softmax"


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy against integer labels; ignore_class (None or an int, which
    may lie outside [0, classes), e.g. -1): samples of that label count for nothing and the
    mean is over the others (Keras 3's)."""
    kind = "scce"
    sparse = True
    fused_activation = "softmax"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(from_logits, name, reduction)
        where = type(self).__name__
        if ignore_class is not None and not is_int(ignore_class):
            raise TypeError(f"{where}: expected ignore_class None or an int, received "
                            f"ignore_class={shown(ignore_class)}")
        if ignore_class is not None and not -2 ** 63 <= ignore_class < 2 ** 63:
            raise invalid(where, "ignore_class", "an int64", ignore_class)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        _check_dtype(dtype, where)

    def get_config(self):
        return dict(super().get_config(), ignore_class=self.ignore_class)

    def target_spec(self, output_shape):
        return tuple(output_shape[:-1]), "int64", int(output_shape[-1])

    def prepare_targets(self, y, output_shape, where="fit"):
        y = np.asarray(y)
        want = tuple(output_shape[1:-1])
        if _fits(y.shape[1:], want + (1,)):
            y = y.reshape(y.shape[:-1])
        if not _fits(y.shape[1:], want):
            raise ValueError(
                f"{where}: {self.name} expects integer class labels of shape "
                f"{_shape_text((None,) + want)} or {_shape_text((None,) + want + (1,))}, "
                f"received y with shape {y.shape}")
        if y.dtype.kind not in "iu" and y.size and not (np.mod(y, 1) == 0).all():
            raise ValueError(f"{where}: {self.name} expects integer class labels, "
                             f"received non-integer values of dtype {y.dtype}")
        classes = output_shape[-1]
        labels = y.astype(np.int64, copy=False)
        checked = labels if self.ignore_class is None else labels[labels != self.ignore_class]
        if checked.size:
            lo, hi = int(checked.min()), int(checked.max())
            if lo < 0 or hi >= classes:
                bad = lo if lo < 0 else hi
                also = "" if self.ignore_class is None else \
                    f" (or ignore_class={self.ignore_class})"
                raise ValueError(
                    f"{where}: {self.name} expects labels in [0, {classes - 1}]{also} for a "
                    f"model output of {classes} classes, received label {bad}")
        return np.ascontiguousarray(labels)


def _check_dtype(dtype, where):
    if dtype not in (None, "float32"):
        raise invalid(where, "dtype", "None or 'float32'", dtype)


class _KerasLoss(Loss):
    """A loss of Keras 3's LossFunctionWrapper kind: no logits form, the constructor
    (reduction="sum_over_batch_size", name=..., dtype=None)."""

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(False, name, reduction)
        _check_dtype(dtype, type(self).__name__)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


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
        return dict(super().get_config(), delta=self.delta)


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
    sqrt(max(sum x^2, 1e-14)); over `axis` (training: the last axis)."""
    kind = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction, name, dtype)
        self.axis = _check_axis(axis, type(self).__name__)

    def get_config(self):
        return dict(super().get_config(), axis=self.axis)


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
    """A Loss from an instance, a Loss class or a Keras name."""
    return resolve_named(identifier, Loss, _BY_NAME, "a loss", "pynn.losses.Loss", where)


def mean_squared_error(y_true, y_pred):
    """Keras's functional form (the batch mean here): MeanSquaredError()(y_true, y_pred)."""
    return MeanSquaredError()(y_true, y_pred)


mse = mean_squared_error
