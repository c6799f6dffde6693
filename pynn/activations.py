"""Activation names: the one place that maps a Keras name to a kernel.

A layer stores an activation as its name (and, for leaky_relu, its negative slope);
every backend receives that name and computes it with its own kernel.
"""

# name -> default parameter (the negative slope for leaky_relu; unused by the others)
_ACTIVATIONS = {
    "linear": 0.0,
    "relu": 0.0,
    "leaky_relu": 0.2,   # keras.activations.leaky_relu(negative_slope=0.2)
    "sigmoid": 0.0,
    "tanh": 0.0,
    "softmax": 0.0,
    "gelu": 0.0,         # exact (erf) form, Keras's default approximate=False
}

ELEMENTWISE = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu")


def names():
    return tuple(_ACTIVATIONS)


def get(identifier, where="activation"):
    """Resolve `identifier` (None, a name) to (name, alpha).

    Raises ValueError naming the accepted names for an unknown one.
    """
    if identifier is None:
        return "linear", 0.0
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _ACTIVATIONS:
            return key, _ACTIVATIONS[key]
        raise ValueError(
            f"{where}: unknown activation {identifier!r}; expected one of "
            f"{', '.join(sorted(_ACTIVATIONS))} or None")
    raise TypeError(
        f"{where}: expected an activation name (str) or None, received "
        f"{type(identifier).__name__} {identifier!r}")
