"""Backends: one interface (base.Backend), three implementations.

  cpu    the C/OpenMP kernels of csrc/ (default)
  numpy  the plain NumPy reference, the truth the others are tested against
  cuda   Numba CUDA kernels (optional extra)
"""
from .base import Backend

_NAMES = ("cpu", "numpy", "cuda")
_default = "cpu"
_instances = {}


def _create(name):
    if name == "cpu":
        from .cpu import CpuBackend
        return CpuBackend()
    if name == "numpy":
        from .numpy import NumpyBackend
        return NumpyBackend()
    if name == "cuda":
        raise ValueError("backend 'cuda' is not available in this version of pynn: "
                         "use 'cpu' or 'numpy'")
    raise AssertionError(name)


def get(name=None, where="backend"):
    """The Backend instance for a name (None: the default set by set_backend)."""
    if name is None:
        name = _default
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"{where}: expected a backend name ('cpu', 'numpy'), received "
                        f"{type(name).__name__} {name!r}")
    key = name.lower()
    if key not in _NAMES:
        raise ValueError(f"{where}: unknown backend {name!r}; expected one of 'cpu', 'numpy'")
    if key not in _instances:
        _instances[key] = _create(key)
    return _instances[key]


def set_backend(name):
    """Set the backend that `compile` uses when given none."""
    global _default
    _default = get(name, where="set_backend").name


def get_backend():
    """The name of the default backend."""
    return _default
