"""Direct access to pynn's kernels on NumPy arrays."""
import numpy as np

from . import _core
from .arrays import numeric_array


def _matrix(a, name):
    a = numeric_array(a, f"pynn.ops.matmul: {name}")
    if a.ndim != 2:
        raise ValueError(f"pynn.ops.matmul: expected {name} to be a 2-D matrix, received shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


_F32 = np.dtype(np.float32)


def matmul(a, b, transpose_a=False, transpose_b=False, out=None):
    """op(a) @ op(b) in float32 by pynn's C GEMM (op = transpose when asked).

    `out`, if given, must be a float32 C-contiguous array of the result's shape; it is
    written in place and returned."""
    # The common case first: plain C-contiguous float32 matrices need no conversion and
    # no checks beyond the shapes (a batch-1 Dense product takes ~10 us, so the checks of
    # the general path, ~1 us, would show).
    if (out is None and type(a) is np.ndarray and type(b) is np.ndarray
            and a.dtype is _F32 and b.dtype is _F32 and a.ndim == 2 and b.ndim == 2
            and a.flags.c_contiguous and b.flags.c_contiguous):
        m, k = (a.shape[1], a.shape[0]) if transpose_a else a.shape
        k2, n = (b.shape[1], b.shape[0]) if transpose_b else b.shape
        if k == k2:
            out = np.empty((m, n), dtype=_F32)
            _core.sgemm(out, a, b, bool(transpose_a), bool(transpose_b))
            return out
    a, b = _matrix(a, "a"), _matrix(b, "b")
    m, k = (a.shape[1], a.shape[0]) if transpose_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if transpose_b else b.shape
    if k != k2:
        raise ValueError(f"pynn.ops.matmul: inner dimensions differ: op(a) is {m}x{k}, op(b) is "
                         f"{k2}x{n} (transpose_a={transpose_a}, transpose_b={transpose_b})")
    if out is None:
        out = np.empty((m, n), dtype=np.float32)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or not out.flags.c_contiguous \
                or not out.flags.writeable:
            raise TypeError("pynn.ops.matmul: expected out to be a writeable float32 C-contiguous "
                            f"NumPy array, received {type(out).__name__} "
                            f"{getattr(out, 'dtype', '')}")
        if out.shape != (m, n):
            raise ValueError(f"pynn.ops.matmul: expected out of shape {(m, n)}, received {out.shape}")
        if np.shares_memory(out, a) or np.shares_memory(out, b):
            raise ValueError("pynn.ops.matmul: out must not overlap a or b")
    _core.sgemm(out, a, b, bool(transpose_a), bool(transpose_b))
    return out


def ones(shape, dtype="float32"):
    """An array of ones (as keras.ops.ones; pynn's ops return NumPy arrays)."""
    return np.ones(shape, dtype=dtype)


def zeros(shape, dtype="float32"):
    """An array of zeros (as keras.ops.zeros)."""
    return np.zeros(shape, dtype=dtype)


def convert_to_numpy(x):
    """x as a NumPy array (pynn's arrays already are)."""
    return np.asarray(x)


def convert_to_tensor(x, dtype=None):
    return np.asarray(x, dtype=dtype)


def expand_dims(x, axis):
    """x with a new axis of length 1 at `axis` (as keras.ops.expand_dims)."""
    return np.expand_dims(np.asarray(x), axis)


def softmax(x, axis=-1):
    """softmax along `axis` (as keras.ops.softmax), by pynn's C activation kernel
    (row-wise, max-subtracted) on float32."""
    from . import ids
    arr = numeric_array(x, "pynn.ops.softmax: x")
    if arr.ndim == 0:
        raise ValueError("pynn.ops.softmax: expected an array with at least one axis, "
                         "received a scalar")
    moved = np.moveaxis(np.asarray(arr, dtype=np.float32), axis, -1)
    rows = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    out = np.empty_like(rows)
    if rows.size:
        _core.activation_forward(out, rows, ids.ACTIVATIONS["softmax"])
    return np.moveaxis(out.reshape(moved.shape), -1, axis)
