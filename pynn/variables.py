"""Variable: one weight of a layer (Keras's `keras.Variable`).

A variable has a name ("kernel"), a path ("dense/kernel"), a shape, a dtype (float32) and
a `trainable` flag, and it holds its value on a backend: a NumPy array until the model
that owns it is compiled, then a view into that model's flat parameter array
(pynn/models/params.py), on whichever backend the model trains.  `numpy()` copies the
value to the host; `assign` writes a new one, checked first.
"""
import numpy as np

from .arrays import finite_float32, numeric_array


class Variable:
    def __init__(self, value, name, path, trainable=True):
        self._value = value           # a NumPy array, or a backend array once bound
        self._backend = None          # None: a host NumPy array
        self._store = None            # the ParameterStore whose flat array holds the value
        self.name = name
        self.path = path
        self.trainable = bool(trainable)
        self.shape = tuple(int(d) for d in value.shape)
        self.regularizer = None       # Keras's variable.regularizer / constraint (add_weight)
        self.constraint = None

    dtype = "float32"

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def value(self):
        """The value as the backend keeps it (a NumPy array on cpu/numpy)."""
        return self._value

    def numpy(self):
        """A NumPy copy of the value."""
        if self._backend is None:
            return np.array(self._value, dtype=np.float32, copy=True)
        return np.array(self._backend.to_host(self._value), dtype=np.float32, copy=True)

    def __array__(self, dtype=None, copy=None):
        value = self.numpy()
        return value if dtype is None else value.astype(dtype)

    def assign(self, value):
        """Set the value (same shape, finite numbers); returns the variable."""
        where = f"Variable '{self.path}'.assign"
        arr = numeric_array(value, where)
        if arr.shape != self.shape:
            raise ValueError(f"{where}: expected a value of shape {self.shape}, received shape "
                             f"{arr.shape}")
        self._write(finite_float32(arr, where, "the value"))     # NaN, inf, beyond float32
        return self

    def _write(self, host):
        """Copy a checked float32 host array of the right shape into the value."""
        if self._backend is None:
            self._value[...] = host
        else:
            self._backend.copy_from_host(self._value, host)
        values_changed()

    def _bind(self, backend, value, store):
        """Hold the value in `value` (a backend array, e.g. a view into a store's flat array)
        from now on; the caller has copied the current value there."""
        self._backend, self._value, self._store = backend, value, store
        _bindings.count += 1
        values_changed()

    def __repr__(self):
        return (f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, "
                f"trainable={self.trainable}>")


class _BindingCounter:
    """Counts variable rebindings, so a store can tell cheaply that none of its variables
    moved since it last looked."""
    count = 0


_bindings = _BindingCounter()


def bindings_version():
    return _bindings.count


class _ValuesCounter:
    """Counts the writes that may have changed any weight's value: Variable writes and
    rebindings, training steps (pynn/models/executor.py), the distributed broadcast and
    averaging.  What keeps a copy derived from weights (an inference plan's packed Dense
    weights) compares it with the count it saw; a count that moved means "recompute"."""
    count = 0


_values = _ValuesCounter()


def values_changed():
    _values.count += 1


def values_version():
    return _values.count
