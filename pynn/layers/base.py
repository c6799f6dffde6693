"""The Layer base class: names, lazy weight creation, get/set_weights, buffers.

A layer is a forward/backward pair written against the backend interface:
  forward(backend, x, training)  -> output      (keeps what backward needs)
  backward(backend, dy)          -> dx          (fills self.grads)
Weights are created as float32 NumPy arrays in `build(input_shape)` (Keras's lazy
build); the model then gathers every layer's weights into one flat array on its
backend and hands each layer views into it (`bind`), so an optimizer update is one
kernel call over all parameters.  Non-trainable weights (BatchNormalization's moving
statistics) are kept out of that array, in one of their own that no optimizer sees;
their entry in `grads` is None.  `weights` / `get_weights()` keep Keras's order, the
order the layer created them in.
"""
import re

import numpy as np

_name_counts = {}


def unique_name(base):
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _snake(name):
    """Keras's default layer names: Dense -> dense, Conv2D -> conv2d,
    MaxPooling2D -> max_pooling2d, LeakyReLU -> leaky_re_lu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def check_shape_arg(shape, what, where):
    """A feature shape given by the user: a tuple of positive ints (an int is accepted)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"{where}: expected {what} as a tuple of positive integers "
                         f"(without the batch axis), received {shape!r}")
    return tuple(int(d) for d in shape)


class Layer:
    def __init__(self, name=None, input_shape=None):
        cls = type(self).__name__
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{cls}: expected name to be a non-empty string, received {name!r}")
        self.name = name or unique_name(_snake(cls))
        self._input_shape_arg = None if input_shape is None else \
            check_shape_arg(input_shape, "input_shape", f"{cls} '{self.name}'")
        self.built = False
        self.input_shape = None      # feature shape, without the batch axis
        self.output_shape = None
        self._weight_names = []
        self._weight_trainable = []  # per weight: updated by the optimizer?
        self.weights = []            # backend arrays once bound, NumPy arrays before
        self.grads = []              # per weight: its gradient, None if not trainable
        self._backend = None
        self._buffers = {}

    # ---- shapes and weights ---------------------------------------------------------
    def compute_output_shape(self, input_shape):
        return input_shape

    def build(self, input_shape):
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        self.built = True

    def add_weight(self, name, shape, initializer, trainable=True):
        value = np.ascontiguousarray(initializer(tuple(shape)), dtype=np.float32)
        self._weight_names.append(name)
        self._weight_trainable.append(bool(trainable))
        self.weights.append(value)
        return value

    @property
    def weight_trainable(self):
        """One bool per weight (in `weights` order): is it updated by the optimizer?"""
        return list(self._weight_trainable)

    def bind(self, backend, weights, grads):
        """Use `weights` and `grads` (backend arrays holding this layer's values, views
        into the model's flat parameter and gradient arrays; None as the gradient of a
        non-trainable weight) from now on."""
        self.weights, self.grads = list(weights), list(grads)
        self._backend = backend
        self._buffers = {}

    def get_weights(self):
        if self._backend is None:
            return [w.copy() for w in self.weights]
        return [np.array(self._backend.to_host(w), dtype=np.float32, copy=True) for w in self.weights]

    def set_weights(self, weights):
        where = f"layer '{self.name}' ({type(self).__name__}).set_weights"
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"{where}: expected a list of {len(self.weights)} arrays, received "
                            f"{type(weights).__name__}")
        if len(weights) != len(self.weights):
            raise ValueError(f"{where}: expected {len(self.weights)} arrays "
                             f"({', '.join(self._weight_names) or 'none'}), received {len(weights)}")
        new = []
        for name, cur, w in zip(self._weight_names, self.weights, weights):
            w = _numeric_array(w, f"{where} ({name})")
            if w.shape != tuple(cur.shape):
                raise ValueError(f"{where}: expected {name} of shape {tuple(cur.shape)}, "
                                 f"received shape {w.shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError(f"{where}: {name} contains NaN or infinite values")
            new.append(np.ascontiguousarray(w, dtype=np.float32))
        # Everything checked: only now change the layer.
        for i, w in enumerate(new):
            if self._backend is None:
                self.weights[i] = w
            else:
                self._backend.copy_from_host(self.weights[i], w)

    def count_params(self, trainable=None):
        """The number of weight values (only trainable or non-trainable ones if asked)."""
        return int(sum(int(np.prod(w.shape)) for w, t in zip(self.weights, self._weight_trainable)
                       if trainable is None or t == trainable))

    # ---- computation ---------------------------------------------------------------
    @property
    def output_activation(self):
        """The activation this layer applies last, if a loss may fuse with it."""
        return None

    def forward(self, backend, x, training=False, logits=False):
        raise NotImplementedError

    def backward(self, backend, dy, need_dx=True):
        raise NotImplementedError

    def _buffer(self, backend, tag, shape):
        """A reusable backend array per (tag, shape): steps after the first allocate nothing."""
        key = (tag, tuple(shape))
        buf = self._buffers.get(key)
        if buf is None:
            if len(self._buffers) > 16:   # many batch sizes seen: start over
                self._buffers = {}
            buf = self._buffers[key] = backend.empty(shape)
        return buf

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


def _numeric_array(value, where):
    """`value` as a NumPy array of real numbers (bool, int, uint or float), else TypeError."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{where}: expected a numeric array, received {type(value).__name__} "
                            f"that NumPy cannot convert ({exc})") from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        if kind == "c":
            raise TypeError(f"{where}: expected real numbers, received complex dtype {arr.dtype}")
        raise TypeError(f"{where}: expected a numeric array, received dtype {arr.dtype}")
    return arr


class KernelBiasLayer(Layer):
    """A layer whose weights are a kernel and an optional bias, followed by an activation
    (Dense, Conv2D): the accessors they share."""

    @property
    def kernel(self):
        return self.weights[0]

    @property
    def bias(self):
        return self.weights[1] if self.use_bias else None

    @property
    def output_activation(self):
        return self.activation
