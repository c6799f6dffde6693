"""Regularizers: Keras 3's penalties on weights and activations (keras/src/regularizers).

    L1(l1=0.01)          l1 * sum(|x|)
    L2(l2=0.01)          l2 * sum(x^2)
    L1L2(l1=0.0, l2=0.0) both (the string "l1_l2" gives l1 = l2 = 0.01, as Keras documents)
    OrthogonalRegularizer(factor=0.01, mode="rows")   callable on arrays only (see below)

A regularizer is callable on an array (a NumPy float32 result, as Keras computes it) and
has get_config / from_config; `get`, `serialize` and `deserialize` are Keras's, with its
names ("l1", "L1", "l2", "L2", "l1l2", "L1L2", "orthogonal_regularizer", ...).

In training the plan computes the L1/L2 penalties itself (csrc/regularizers.c, an
OP_PENALTY per regularized weight after the backward, one per activity-regularized layer
output): `penalty_factors` gives the (l1, l2) pair a regularizer stands for.  Any other
callable (OrthogonalRegularizer, a function, a subclass of Regularizer) is accepted by
the layers, as Keras accepts it, and works in `layer.losses`, but a model that trains
with it is refused when compiled into a plan: pynn has no kernel for its gradient.
"""
import inspect

import numpy as np

from .checks import check_number, shown
from . import _keras_objects as _objects


class Regularizer:
    """Base class: callable on an array, returning a scalar penalty."""

    def __call__(self, x):
        return np.float32(0.0)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        raise NotImplementedError(f"{self} does not implement get_config()")


def _factor(value, arg, where, default):
    value = default if value is None else value
    return check_number(value, arg, where, 0)


def _l1l2(x, l1, l2):
    x = np.asarray(x, dtype=np.float32)
    out = np.float32(0.0)
    if l1 != 0.0:
        out = out + np.float32(l1) * np.sum(np.abs(x), dtype=np.float32)
    if l2 != 0.0:
        out = out + np.float32(l2) * np.sum(np.square(x), dtype=np.float32)
    return np.float32(out)


class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x^2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1", "L1L2", 0.0)
        self.l2 = _factor(l2, "l2", "L1L2", 0.0)

    def __call__(self, x):
        return _l1l2(x, self.l1, self.l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """l1 * sum(|x|); l1 is kept in float32, as Keras keeps it (its config shows
    0.009999999776482582 for the default)."""

    def __init__(self, l1=0.01):
        self.l1 = float(np.float32(_factor(l1, "l1", "L1", 0.01)))

    def __call__(self, x):
        return _l1l2(x, self.l1, 0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(x^2)."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2", "L2", 0.01)

    def __call__(self, x):
        return _l1l2(x, 0.0, self.l2)

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * 0.5 * sum(|P - diag(P)|) / (n (n - 1) / 2), P the products of the
    L2-normalized rows (mode "rows") or columns of a rank-2 input.  Callable on arrays and
    serializable; training with it is refused (no pynn kernel)."""

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = float(np.float32(check_number(factor, "factor", "OrthogonalRegularizer",
                                                    0)))
        if mode not in ("rows", "columns"):
            raise ValueError('OrthogonalRegularizer: received an invalid value for `mode`, '
                             f'expected one of {{"rows", "columns"}}. Received: mode={shown(mode)}')
        self.mode = mode

    def __call__(self, inputs):
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError("Inputs to OrthogonalRegularizer must have rank 2. Received: "
                             f"inputs.shape={x.shape}")
        axis = 1 if self.mode == "rows" else 0
        norm = np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), np.float32(1e-12)))
        x = x / norm
        product = x @ x.T if self.mode == "rows" else x.T @ x
        size = product.shape[0]
        off = product * (np.float32(1) - np.eye(size, dtype=np.float32))
        pairs = size * (size - 1.0) / 2.0
        return np.float32(self.factor * 0.5 * np.sum(np.abs(off)) / pairs)

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer

CLASSES = {cls.__name__: cls for cls in (Regularizer, L1, L2, L1L2, OrthogonalRegularizer)}
# Keras's names: the class names and their snake case ("l1l2", "orthogonal_regularizer")
ALL_OBJECTS_DICT = dict(CLASSES)
ALL_OBJECTS_DICT.update({"regularizer": Regularizer, "l1": L1, "l2": L2, "l1l2": L1L2,
                         "orthogonal_regularizer": OrthogonalRegularizer})


def _where(where, arg):
    return _objects.where_text(where, "regularizers.get", arg)


def serialize(regularizer):
    """Keras's serialized form: {"module": "keras.regularizers", "class_name", "config",
    "registered_name": None}; None for None."""
    return _objects.serialize(regularizer, Regularizer, "regularizer")


def deserialize(config, custom_objects=None, where=None, arg=None):
    """The regularizer a serialize() dict (or Keras's) describes."""
    return _objects.deserialize(config, "regularizer", CLASSES, ALL_OBJECTS_DICT, custom_objects,
                                _where(where, arg))


def get(identifier, where=None, arg=None):
    """Keras's regularizers.get: None, a regularizer (any callable), a class (made with its
    defaults), a name or a serialized dict.  where/arg: the layer and the constructor
    argument, which a refusal names beside the value."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier, where=where, arg=arg)
    if isinstance(identifier, str):
        if identifier == "l1_l2":            # Keras's documented default for the string
            return L1L2(l1=0.01, l2=0.01)
        obj = ALL_OBJECTS_DICT.get(identifier)
        if obj is None:
            raise ValueError(f"{_where(where, arg)}: could not interpret regularizer identifier "
                             f"{shown(identifier)}; expected one of "
                             f"{', '.join(sorted(ALL_OBJECTS_DICT) + ['l1_l2'])}, a dict or a "
                             "callable")
    else:
        obj = identifier
    if inspect.isclass(obj):
        return obj()
    if callable(obj):
        return obj
    raise ValueError(f"{_where(where, arg)}: could not interpret regularizer identifier "
                     f"{shown(identifier)} ({type(identifier).__name__}); expected a name, a dict "
                     "or a callable")


def penalty_factors(regularizer, where):
    """(l1, l2) of a regularizer the plan computes (L1, L2, L1L2); ValueError otherwise."""
    if type(regularizer) is L1:
        return regularizer.l1, 0.0
    if type(regularizer) is L2:
        return 0.0, regularizer.l2
    if type(regularizer) is L1L2:
        return regularizer.l1, regularizer.l2
    raise ValueError(f"{where}: pynn trains with the L1, L2 and L1L2 regularizers only (their "
                     f"penalty and gradient are pynn kernels); received {shown(regularizer)}")


__all__ = ["Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "l1", "l2", "l1_l2",
           "orthogonal_regularizer", "get", "serialize", "deserialize"]
