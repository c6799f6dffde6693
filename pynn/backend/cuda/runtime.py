"""What every kernel module of the cuda backend shares: numba's cuda (real or simulated),
float constants, launch sizes, argument checks and the per-backend device workspace.

Arithmetic is float32 everywhere except where the C core uses double (the loss sums and the
softmax-backward row dot product).  Python float literals would make Numba compute in float64,
so every constant in a kernel is a module-level np.float32 (these, or the kernel module's own)
and every scalar argument is passed as np.float32.

Under the simulator this module also makes the creation of shared arrays atomic (see
_one_shared_array_per_block): the simulator's own check-then-set could hand two threads of a
block different arrays.
"""
import copy
import sys
import threading

import numpy as np
from numba import cuda

SIMULATOR = bool(getattr(cuda, "simulator_enabled", False)) or \
    cuda.__name__.endswith("simulator") or type(cuda).__module__.startswith("numba.cuda.simulator")
try:   # the simulator replaces numba.cuda by numba.cuda.simulator (NUMBA_ENABLE_CUDASIM=1)
    from numba import config as _numba_config
    SIMULATOR = SIMULATOR or bool(_numba_config.ENABLE_CUDASIM)
except ImportError:   # pragma: no cover
    pass


# ---- the simulator's shared memory ---------------------------------------------------------

_SHARED_ARRAY_LOCK = threading.Lock()


def _one_shared_array_per_block():
    """Make every thread of a simulated block get the same array from a cuda.shared.array
    call site, as on a GPU; returns whether the simulator was patched.

    Invariant: within a block, one call site of cuda.shared.array is one array that every
    thread sees.  Each kernel here relies on it: the GEMM's double-buffered panels, the lane
    partials of the bias gradient and of batch normalization, the reductions' trees.

    The simulator (numba-cuda 0.30.4; numba's older built-in one has the same code) creates a
    block's shared array lazily, keyed by the caller's file and line, with an unlocked
    check-then-set in FakeCUDAShared.array: `res = allocations.get(key); if res is None:
    res = np.empty(...); allocations[key] = res`.  Every GPU thread is a Python thread, and
    the GIL can pass to another between the look-up and the store (more often with a short
    switch interval, which tests/conftest.py sets, and on a loaded machine).  A second thread
    reaching the same line then creates an array too, one of the two stores is lost, and the
    thread left with its own array reads np.empty garbage where the others' panel elements or
    partial sums belong, while they read garbage where its own belong: intermittently a NaN
    loss or a weight off by hundreds, from kernels that are right.  Here the look-up and the
    store are done under one lock.  The key is the simulator's (the caller's file and line,
    what its traceback.extract_stack(...)[-2][0:2] gives), taken from one frame instead of
    the whole stack, which is also faster.  Dynamic shared memory (shape 0: one buffer made
    with the launch) still goes to the original method."""
    try:
        from numba.cuda.simulator import kernelapi
        cls = kernelapi.FakeCUDAShared
        as_dtype, numba_type = kernelapi.numpy_support.as_dtype, kernelapi.types.Type
    except (ImportError, AttributeError):       # pragma: no cover -- another simulator layout
        return False
    if getattr(cls.array, "_pynn_one_array_per_block", False):
        return True
    probe = cls(0)
    if not isinstance(getattr(probe, "_allocations", None), dict):   # pragma: no cover
        return False
    original = cls.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:      # dynamic shared memory; unsupported option
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, numba_type):
            dtype = as_dtype(dtype)
        frame = sys._getframe(1)
        key = (frame.f_code.co_filename, frame.f_lineno)
        with _SHARED_ARRAY_LOCK:
            res = self._allocations.get(key)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[key] = res
        return res

    array._pynn_one_array_per_block = True
    array.__doc__ = original.__doc__
    cls.array = array
    return True


_LAUNCH_LOCK = threading.Lock()


def _one_launch_at_a_time():
    """Let host threads launch simulated kernels side by side, one launch at a time, as a
    GPU's one stream orders them; returns whether the simulator was patched.

    The simulator (numba-cuda 0.30.4) supports no concurrent launch: a launch pushes one
    global kernel context (asserting there is none), and `kernel[grid, block]` stores the
    configuration on the kernel object that `(...)` then reads, so two host threads
    launching (two models trained in two threads, or predict beside fit) would mix their
    configurations and contexts.  Here `kernel[grid, block]` returns a configured copy,
    and a launch holds a lock while its blocks run.  Device functions called from inside
    a kernel take the simulator's own path, without the lock."""
    try:
        from numba.cuda.simulator import kernel as simkernel
        cls = simkernel.FakeCUDAKernel
    except (ImportError, AttributeError):       # pragma: no cover -- another simulator layout
        return False
    if getattr(cls.__call__, "_pynn_one_launch", False):
        return True
    original_call, original_getitem = cls.__call__, cls.__getitem__

    def call(self, *args):
        if self._device:                          # a device function, inside a kernel
            return original_call(self, *args)
        with _LAUNCH_LOCK:
            return original_call(self, *args)

    def getitem(self, configuration):
        clone = copy.copy(self)
        return original_getitem(clone, configuration)

    call._pynn_one_launch = True
    cls.__call__ = call
    cls.__getitem__ = getitem
    return True


if SIMULATOR:
    _one_shared_array_per_block()
    _one_launch_at_a_time()

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
