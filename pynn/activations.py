"""Activations by name: the names Keras uses, each computed by one kernel per backend.

A layer stores its activation as a name (and, for leaky_relu, its negative slope); the
plan hands the kernels the name's id from csrc/pynn.h (pynn.ids.ACTIVATIONS).  The
functions below (`pynn.activations.relu(x)`, ...) compute on NumPy arrays with the cpu
kernels and can be passed as `activation=` like Keras's.
"""
import numpy as np

from . import ids

# name -> default parameter (the negative slope for leaky_relu, elu's alpha; unused by the
# others)
_DEFAULT_ALPHA = {"leaky_relu": 0.2,   # keras.activations.leaky_relu(negative_slope=0.2)
                  "elu": 1.0}          # keras.activations.elu(alpha=1.0)  (engineer A)

# Keras's aliases (keras/src/activations/__init__.py): the name they stand for
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

ROWWISE = ("softmax", "log_softmax")
ELEMENTWISE = tuple(n for n in ids.ACTIVATIONS if n not in ROWWISE)

# Activations whose derivative the backward kernels can read off the output as well as off
# the pre-activation z (csrc/act_elementwise.h: relu's is z > 0, and relu(z) > 0 exactly
# where z > 0, NaN included): a Dense or Conv2D layer with one of them keeps a single
# buffer, f(z) written over z, instead of z and y.  Half the forward's output traffic
# and memory; the same gradients, bit for bit.
SHARES_OUTPUT = ("linear", "relu")


def shares_output(name):
    """True when a layer with activation `name` may write its output over z."""
    return name in SHARES_OUTPUT


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
        key = ALIASES.get(key, key)
        if key in ids.ACTIVATIONS:
            return key, _DEFAULT_ALPHA.get(key, 0.0)
        raise ValueError(
            f"{where}: unknown activation {identifier!r}; expected one of "
            f"{', '.join(sorted(set(ids.ACTIVATIONS) | set(ALIASES)))} or None")
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
sigmoid = _make("sigmoid")
tanh = _make("tanh")
# relu, leaky_relu, softmax: below, with their arguments (engineer A)
gelu = _make("gelu")


# ---- activations (engineer A) -----------------------------------------------------------------
selu = _make("selu")
softplus = _make("softplus")
softsign = _make("softsign")
silu = _make("silu")
swish = silu                    # Keras's alias: the same function
hard_sigmoid = _make("hard_sigmoid")
hard_silu = _make("hard_silu")
hard_swish = hard_silu
relu6 = _make("relu6")
mish = _make("mish")
exponential = _make("exponential")


def _array(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def _axis(axis, ndim, where):
    from .checks import is_int
    if not is_int(axis) or not -max(ndim, 1) <= axis < max(ndim, 1):
        raise ValueError(f"{where}: received an invalid value for `axis`, expected an integer "
                         f"in [{-max(ndim, 1)}, {max(ndim, 1) - 1}] for an array of rank "
                         f"{ndim}. Received: axis={axis!r}")
    return int(axis) % max(ndim, 1)


def _rowwise(name, where):
    def fn(x, axis=-1):
        x = _array(x)
        a = _axis(axis, x.ndim, where)
        if x.ndim == 0:
            return _apply(name, x)
        moved = np.ascontiguousarray(np.moveaxis(x, a, -1))
        return np.ascontiguousarray(np.moveaxis(_apply(name, moved), -1, a))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"The {name} of x (a NumPy array) over `axis`, by the cpu kernel."
    fn._pynn_activation = name
    return fn


softmax = _rowwise("softmax", "softmax")
log_softmax = _rowwise("log_softmax", "log_softmax")


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """keras.activations.relu: max(x, 0), or with its options
    clip(x [x > threshold], 0, max_value) - negative_slope max(threshold - x, 0)."""
    from .backend import get as get_backend
    from .checks import check_number
    where = "relu"
    negative_slope = check_number(negative_slope, "negative_slope", where)
    threshold = check_number(threshold, "threshold", where)
    if max_value is not None:
        max_value = check_number(max_value, "max_value", where, 0)
    x = _array(x)
    if negative_slope == 0 and threshold == 0 and max_value is None:
        return _apply("relu", x)
    if negative_slope < 0 or threshold < 0:
        # outside the kernel's domain (Keras's layer refuses them too): Keras's formula
        kept = np.where(x > np.float32(threshold), x, np.float32(0))
        if max_value is not None:
            kept = np.clip(kept, np.float32(0), np.float32(max_value))
        neg = np.maximum(np.float32(threshold) - x, np.float32(0))
        return (kept - np.float32(negative_slope) * neg).astype(np.float32)
    out = np.empty_like(x)
    get_backend("cpu").relu_forward(x, negative_slope, threshold, max_value, out)
    return out


relu._pynn_activation = "relu"


def leaky_relu(x, negative_slope=0.2):
    """keras.activations.leaky_relu."""
    from .checks import check_number
    return _apply("leaky_relu", x, check_number(negative_slope, "negative_slope",
                                                "leaky_relu"))


leaky_relu._pynn_activation = "leaky_relu"


def elu(x, alpha=1.0):
    """keras.activations.elu: x if x > 0 else alpha (exp(x) - 1)."""
    from .checks import check_number
    return _apply("elu", x, check_number(alpha, "alpha", "elu"))


elu._pynn_activation = "elu"
