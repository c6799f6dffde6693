"""Backends: one interface (base.Backend), three implementations.

  cpu    the C/OpenMP kernels of csrc/ (default)
  numpy  the plain NumPy reference, the truth the others are tested against
  cuda   Numba CUDA kernels (optional extra `pynn[cuda]`); the package pynn.backend.cuda is
         the only place that imports numba, and only when this backend is asked for
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
        reason = cuda_unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError(f"backend 'cuda' cannot run here: {reason}. Use "
                                          "backend='cpu' or 'numpy' instead")
        from .cuda import CudaBackend
        return CudaBackend()
    raise AssertionError(name)


class BackendUnavailableError(RuntimeError, ValueError):
    """A known backend cannot run on this machine (a RuntimeError: the environment lacks
    something; a ValueError like every other refused argument in pynn)."""


def cuda_unavailable_reason():
    """None when backend 'cuda' can run here (an NVIDIA GPU with its driver and numba-cuda,
    or Numba's CUDA simulator with NUMBA_ENABLE_CUDASIM=1), else a sentence saying why not.
    Imports numba (through pynn.backend.cuda) the first time it is called."""
    try:
        from . import cuda as cuda_module
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing.split(".")[0] in ("numba", "llvmlite"):
            return ("numba-cuda is not installed (install pynn's CUDA extra: "
                    'pip install "pynn[cuda]")')
        return (f"numba-cuda could not be imported ({exc}); reinstall it with "
                'pip install "pynn[cuda]"')
    except Exception as exc:   # numba raises other errors too, e.g. for a NumPy it does not support
        return f"numba-cuda could not be imported ({type(exc).__name__}: {exc})"
    return cuda_module.unavailable_reason()


def cuda_available():
    """True when backend 'cuda' can run here; never raises (see cuda_unavailable_reason
    for why not)."""
    try:
        return cuda_unavailable_reason() is None
    except Exception:
        return False


def get(name=None, where="backend"):
    """The Backend instance for a name (None: the default set by set_backend)."""
    if name is None:
        name = _default
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"{where}: expected a backend name ('cpu', 'numpy', 'cuda'), received "
                        f"{type(name).__name__} {name!r}")
    key = name.lower()
    if key not in _NAMES:
        raise ValueError(f"{where}: unknown backend {name!r}; expected one of 'cpu', 'numpy', 'cuda'")
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
