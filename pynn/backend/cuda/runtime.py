"""What every kernel module of the cuda backend shares: numba's cuda (real or simulated),
float constants, launch sizes, argument checks and the per-backend device workspace.

Arithmetic is float32 everywhere except where the C core uses double (the loss sums and the
softmax-backward row dot product).  Python float literals would make Numba compute in float64,
so every constant in a kernel is a module-level np.float32 (these, or the kernel module's own)
and every scalar argument is passed as np.float32.
"""
import numpy as np
from numba import cuda

SIMULATOR = bool(getattr(cuda, "simulator_enabled", False)) or \
    cuda.__name__.endswith("simulator") or type(cuda).__module__.startswith("numba.cuda.simulator")
try:   # the simulator replaces numba.cuda by numba.cuda.simulator (NUMBA_ENABLE_CUDASIM=1)
    from numba import config as _numba_config
    SIMULATOR = SIMULATOR or bool(_numba_config.ENABLE_CUDASIM)
except ImportError:   # pragma: no cover
    pass

F0 = np.float32(0.0)
F1 = np.float32(1.0)
F2 = np.float32(2.0)
HALF = np.float32(0.5)
D0 = np.float64(0.0)

ELEMENTWISE_THREADS = 256    # at most; fewer for tiny arrays


# ---- launch sizes ------------------------------------------------------------------------

def pow2_at_least(n, cap):
    """The smallest power of two >= n, at most cap: a block no wider than the work (tiny
    arrays get tiny blocks, which also keeps the simulator quick) and a tree-friendly size."""
    p = 1
    while p < n and p < cap:
        p *= 2
    return p


def elementwise_config(n):
    """(blocks, threads) for one thread per element of n."""
    threads = pow2_at_least(n, ELEMENTWISE_THREADS)
    return (n + threads - 1) // threads, threads


# ---- array views and checks -----------------------------------------------------------------

def as_2d(a):
    """a as (rows, last axis); a 1-D array is one row."""
    return a if a.ndim == 2 else a.reshape(-1, a.shape[-1] if a.ndim else 1)


def as_1d(a):
    return a if a.ndim == 1 else a.reshape(-1)


def same_array(a, b):
    """True when a and b are the same device memory with the same shape."""
    if a is b:
        return True
    try:
        return (a.__cuda_array_interface__["data"][0] == b.__cuda_array_interface__["data"][0]
                and a.shape == b.shape)
    except (AttributeError, KeyError, TypeError):
        return False


def check_shape(where, name, arr, shape):
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{where}: expected {name} of shape {tuple(shape)}, received shape "
                         f"{tuple(arr.shape)}")


def check_float32(where, **arrays):
    for name, arr in arrays.items():
        if arr is not None and arr.dtype != np.float32:
            raise TypeError(f"{where}: expected {name} as a float32 device array, received "
                            f"dtype {arr.dtype}")


# ---- workspace -------------------------------------------------------------------------------

class Workspace:
    """Device (and pinned host) arrays a backend keeps between calls, one per key: the
    partial sums of the reductions, small index tables.  Allocated on first use, so a
    training step that repeats its shapes allocates nothing after the first step."""

    def __init__(self):
        self._arrays = {}

    def device(self, key, shape, dtype=np.float32):
        full_key = ("device", key, tuple(np.atleast_1d(shape)), np.dtype(dtype).str)
        if full_key not in self._arrays:
            self._arrays[full_key] = cuda.device_array(shape, dtype=dtype)
        return self._arrays[full_key]

    def pinned(self, key, shape, dtype=np.float64):
        full_key = ("pinned", key, tuple(np.atleast_1d(shape)), np.dtype(dtype).str)
        if full_key not in self._arrays:
            self._arrays[full_key] = cuda.pinned_array(shape, dtype=dtype)
        return self._arrays[full_key]

    def table(self, key, values, dtype=np.int64):
        """A constant device array holding `values` (copied once per distinct values): the
        dropout kernel's shape tables, the labels argument of a kernel given none."""
        values = tuple(values)
        full_key = ("table", key, values, np.dtype(dtype).str)
        if full_key not in self._arrays:
            self._arrays[full_key] = cuda.to_device(np.array(values, dtype=dtype))
        return self._arrays[full_key]
