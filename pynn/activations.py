"""Activations by name: the names Keras uses, each computed by one kernel per backend.

A layer stores its activation as a name (and, for leaky_relu, its negative slope); the
plan hands the kernels the name's id from csrc/pynn.h (pynn.ids.ACTIVATIONS).  The
functions below (`pynn.activations.relu(x)`, ...) compute on NumPy arrays with the cpu
kernels and can be passed as `activation=` like Keras's.
"""
import numpy as np

from . import ids

# name -> default parameter (the negative slope for leaky_relu; unused by the others)
_DEFAULT_ALPHA = {"leaky_relu": 0.2}   # keras.activations.leaky_relu(negative_slope=0.2)

ELEMENTWISE = tuple(n for n in ids.ACTIVATIONS if n != "softmax")


def names():
    return tuple(ids.ACTIVATIONS)


def get(identifier, where="activation"):
    """Resolve `identifier` (None, a name, or one of the functions below) to (name, alpha).
    Raises ValueError naming the accepted names for an unknown one."""
    if identifier is None:
        return "linear", 0.0
    if callable(identifier) and getattr(identifier, "_pynn_activation", None):
        identifier = identifier._pynn_activation
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ids.ACTIVATIONS:
            return key, _DEFAULT_ALPHA.get(key, 0.0)
        raise ValueError(
            f"{where}: unknown activation {identifier!r}; expected one of "
            f"{', '.join(sorted(ids.ACTIVATIONS))} or None")
    raise TypeError(
        f"{where}: expected an activation name (str), a pynn.activations function or None, "
        f"received {type(identifier).__name__} {identifier!r}")


def _apply(name, x, alpha=None):
    from .backend import get as get_backend
    x = np.ascontiguousarray(x, dtype=np.float32)
    flat = x.reshape(-1, x.shape[-1] if x.ndim else 1)
    out = np.empty_like(flat)
    get_backend("cpu").activation_forward(flat, name, _DEFAULT_ALPHA.get(name, 0.0)
                                          if alpha is None else alpha, out)
    return out.reshape(x.shape)


def _make(name):
    def fn(x, **kwargs):
        return _apply(name, x, kwargs.get("negative_slope"))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"The {name} activation of x (a NumPy array), by the cpu kernel."
    fn._pynn_activation = name
    return fn


linear = _make("linear")
relu = _make("relu")
leaky_relu = _make("leaky_relu")
sigmoid = _make("sigmoid")
tanh = _make("tanh")
softmax = _make("softmax")
gelu = _make("gelu")
