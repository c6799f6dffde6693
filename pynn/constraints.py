"""Constraints: Keras 3's projections of a weight after each optimizer update
(keras/src/constraints), with its formulas and its epsilon (1e-7):

    MaxNorm(max_value=2, axis=0)        w * clip(n, 0, max_value) / (eps + n)
    MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0, axis=0)
                                        w * (rate * clip(n, min, max) + (1 - rate) n) / (eps + n)
    NonNeg()                            max(w, 0)
    UnitNorm(axis=0)                    w / (eps + n)

n = sqrt(sum(w^2)) over `axis` (an int or a list of ints).  A constraint is callable on an
array and has get_config; `get`, `serialize`, `deserialize` are Keras's, with its names.
In training the plan applies them (an OP_CONSTRAINT after OP_OPTIMIZER, csrc/regularizers.c)
to the weight viewed as (outer, red, inner): the axes must be contiguous (Dense's 0,
Conv2D's [0, 1, 2]).  Another callable is accepted by the layers, as Keras accepts it, but
a model that trains with it is refused when compiled into a plan.
"""
import inspect
import math

import numpy as np

from .checks import MAX_RANK, check_number, is_int, shown
from . import _keras_objects as _objects

EPSILON = np.float32(1e-7)


def _check_axis(axis, where):
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not axes or not all(is_int(a) and -MAX_RANK <= a < MAX_RANK for a in axes):
        raise ValueError(f"{where}: received an invalid value for `axis`, expected an integer "
                         f"or a list of integers. Received: axis={shown(axis)}")
    return list(axis) if isinstance(axis, (list, tuple)) else int(axis)


class Constraint:
    """Base class: callable on a weight array, returning its projection."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _norms(w, axis):
    w = np.asarray(w, dtype=np.float32)
    ax = tuple(axis) if isinstance(axis, list) else axis
    return w, np.sqrt(np.sum(np.square(w.astype(np.float64)), axis=ax,
                             keepdims=True)).astype(np.float32)


class MaxNorm(Constraint):
    def __init__(self, max_value=2, axis=0):
        check_number(max_value, "max_value", "MaxNorm", 0)
        self.max_value = max_value
        self.axis = _check_axis(axis, "MaxNorm")

    def __call__(self, w):
        w, n = _norms(w, self.axis)
        desired = np.clip(n, np.float32(0), np.float32(self.max_value))
        return (w * (desired / (EPSILON + n))).astype(np.float32)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        check_number(min_value, "min_value", "MinMaxNorm", 0)
        check_number(max_value, "max_value", "MinMaxNorm", float(min_value))
        check_number(rate, "rate", "MinMaxNorm", 0, 1)
        self.min_value, self.max_value, self.rate = min_value, max_value, rate
        self.axis = _check_axis(axis, "MinMaxNorm")

    def __call__(self, w):
        w, n = _norms(w, self.axis)
        rate = np.float32(self.rate)
        desired = rate * np.clip(n, np.float32(self.min_value), np.float32(self.max_value)) + \
            (np.float32(1) - rate) * n
        return (w * (desired / (EPSILON + n))).astype(np.float32)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


class NonNeg(Constraint):
    def __call__(self, w):
        return np.maximum(np.asarray(w, dtype=np.float32), np.float32(0))


class UnitNorm(Constraint):
    def __init__(self, axis=0):
        self.axis = _check_axis(axis, "UnitNorm")

    def __call__(self, w):
        w, n = _norms(w, self.axis)
        return (w / (EPSILON + n)).astype(np.float32)

    def get_config(self):
        return {"axis": self.axis}


max_norm = MaxNorm
min_max_norm = MinMaxNorm
non_neg = NonNeg
unit_norm = UnitNorm

CLASSES = {cls.__name__: cls for cls in (Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm)}
ALL_OBJECTS_DICT = dict(CLASSES)
ALL_OBJECTS_DICT.update({"constraint": Constraint, "max_norm": MaxNorm,
                         "min_max_norm": MinMaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm})


def _where(where, arg):
    return _objects.where_text(where, "constraints.get", arg)


def serialize(constraint):
    """Keras's serialized form: {"module": "keras.constraints", "class_name", "config",
    "registered_name": None}; None for None."""
    return _objects.serialize(constraint, Constraint, "constraint")


def deserialize(config, custom_objects=None, where=None, arg=None):
    """The constraint a serialize() dict (or Keras's) describes."""
    return _objects.deserialize(config, "constraint", CLASSES, ALL_OBJECTS_DICT, custom_objects,
                                _where(where, arg))


def get(identifier, where=None, arg=None):
    """Keras's constraints.get: None, a constraint (any callable), a class, a name or a
    serialized dict."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier, where=where, arg=arg)
    if isinstance(identifier, str):
        obj = ALL_OBJECTS_DICT.get(identifier)
        if obj is None:
            raise ValueError(f"{_where(where, arg)}: could not interpret constraint identifier "
                             f"{shown(identifier)}; expected one of "
                             f"{', '.join(sorted(ALL_OBJECTS_DICT))}, a dict or a callable")
    else:
        obj = identifier
    if inspect.isclass(obj):
        return obj()
    if callable(obj):
        return obj
    raise ValueError(f"{_where(where, arg)}: could not interpret constraint identifier "
                     f"{shown(identifier)} ({type(identifier).__name__}); expected a name, a dict "
                     "or a callable")


def plan_spec(constraint, shape, where):
    """(kind, outer, red, inner, a, b, rate) of the OP_CONSTRAINT applying `constraint` to a
    weight of `shape`; ValueError for a constraint the plan cannot apply."""
    if type(constraint) is NonNeg:
        return "non_neg", 1, math.prod(shape), 1, 0.0, 0.0, 1.0
    if type(constraint) not in (MaxNorm, MinMaxNorm, UnitNorm):
        raise ValueError(f"{where}: pynn trains with the MaxNorm, MinMaxNorm, NonNeg and UnitNorm "
                         f"constraints only; received {shown(constraint)}")
    rank = len(shape)
    axes = constraint.axis if isinstance(constraint.axis, list) else [constraint.axis]
    if not all(-rank <= a < rank for a in axes) or rank == 0:
        raise ValueError(f"{where}: {type(constraint).__name__} axis={constraint.axis} is out of "
                         f"range for a weight of shape {tuple(shape)}")
    axes = sorted({a % rank for a in axes})
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise ValueError(f"{where}: {type(constraint).__name__} axis={constraint.axis}: pynn "
                         "applies constraints over contiguous axes only")
    outer = math.prod(shape[:axes[0]])
    red = math.prod(shape[axes[0]:axes[-1] + 1])
    inner = math.prod(shape[axes[-1] + 1:])
    if type(constraint) is MaxNorm:
        return "max_norm", outer, red, inner, float(constraint.max_value), 0.0, 1.0
    if type(constraint) is UnitNorm:
        return "unit_norm", outer, red, inner, 0.0, 0.0, 1.0
    return ("min_max_norm", outer, red, inner, float(constraint.min_value),
            float(constraint.max_value), float(constraint.rate))


__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "max_norm",
           "min_max_norm", "non_neg", "unit_norm", "get", "serialize", "deserialize"]
