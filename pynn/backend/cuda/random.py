"""Counter-based randomness on the device (csrc/pynn.h, "randomness"), and dropout.

mix64 is splitmix64's finaliser in uint64 arithmetic (wrapping mod 2^64); G = 0x9E3779B97F4A7C15.
A (seed, counter) pair gives key = mix64(seed + G (counter + 1)), computed once per call on
the host in Python integers; element e draws u_e = (mix64(key + G (e + 1)) >> 40) 2^-24, a
float32 in [0, 1) with 24 random bits.  There is no state: each thread draws its own element
from its index, so the numbers are bitwise those of reference.random_uniform whatever the
launch shape, the device or the backend.

Every constant below is an np.uint64 and the element index is cast to uint64 before use:
Numba types an expression mixing uint64 with a signed integer as float64.
"""
import functools

import numpy as np
from numba import cuda, float32, uint64

from .runtime import F0, SIMULATOR, as_1d, check_float32, check_shape, elementwise_config

_MASK64 = (1 << 64) - 1
_GOLDEN_INT = 0x9E3779B97F4A7C15
_GOLDEN = np.uint64(_GOLDEN_INT)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S40 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(40)
_ONE = np.uint64(1)
_TWO_POW_M24 = np.float32(2.0 ** -24)


def _mix64_host(z):
    """mix64 on a Python integer (the key: once per call, on the host)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed, counter):
    """key = mix64(seed + G (counter + 1)) mod 2^64, as an np.uint64."""
    return np.uint64(_mix64_host((int(seed) + _GOLDEN_INT * (int(counter) + 1)) & _MASK64))


@cuda.jit(device=True, inline=True)
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def _wrapping(device_function):
    """A GPU wraps uint64 arithmetic silently, as the generator intends; the simulator runs
    the same code on NumPy scalars, which warn when they wrap: hush that warning there."""
    if not SIMULATOR:
        return device_function

    @functools.wraps(device_function)
    def quiet(*args):
        with np.errstate(over="ignore"):
            return device_function(*args)
    return quiet


@cuda.jit(device=True, inline=True)
@_wrapping
def uniform(key, e):
    """u_e of the stream `key`, e >= 0 a (signed) element index."""
    bits = _mix64(key + _GOLDEN * (uint64(e) + _ONE)) >> _S40
    return float32(bits) * _TWO_POW_M24


@cuda.jit
def _uniform_kernel(u, n, key):
    e = cuda.grid(1)
    if e < n:
        u[e] = uniform(key, e)


@cuda.jit
def _dropout_kernel(y, mask, x, n, dims, noise_strides, ndim, key, rate, scale):
    """Element e of x (row-major over dims) draws the uniform at its index in the noise
    shape: sum over the axes of index_a * noise_strides[a], the stride 0 on a broadcast
    axis.  mask = u >= rate ? scale : 0 and y = x * mask; y may be x."""
    e = cuda.grid(1)
    if e < n:
        rest = e
        noise_index = 0
        for a in range(ndim - 1, -1, -1):
            d = dims[a]
            noise_index += (rest % d) * noise_strides[a]
            rest //= d
        m = scale if uniform(key, noise_index) >= rate else F0
        mask[e] = m
        y[e] = x[e] * m


def random_uniform(seed, counter, u):
    """u (a 1-D float32 device array) = the first u.size uniforms of (seed, counter)."""
    n = int(u.size)
    if n:
        blocks, threads = elementwise_config(n)
        _uniform_kernel[blocks, threads](u, n, stream_key(seed, counter))


def dropout_forward(x, seed, counter, rate, broadcast, mask, y, workspace):
    """Inverted dropout: mask = 0 where the element's uniform is below rate, else
    1 / (1 - rate) (rounded to float32); y = x * mask.  broadcast: a bool per axis of x,
    true where the noise shape is 1."""
    where = "dropout_forward"
    for name, arr in (("mask", mask), ("y", y)):
        check_shape(where, name, arr, x.shape)
    check_float32(where, x=x, mask=mask, y=y)
    broadcast = tuple(bool(b) for b in broadcast)
    if len(broadcast) != x.ndim:
        raise ValueError(f"{where}: expected one broadcast flag per axis of x {tuple(x.shape)}, "
                         f"received {broadcast}")
    if not 0 <= rate < 1:
        raise ValueError(f"{where}: expected rate in [0, 1), received rate={rate!r}")
    n = int(x.size)
    if n == 0:
        return
    dims = tuple(int(d) for d in x.shape)
    strides, stride = [0] * len(dims), 1
    for a in range(len(dims) - 1, -1, -1):     # row-major strides of the noise shape
        if not broadcast[a]:
            strides[a] = stride
            stride *= dims[a]
    blocks, threads = elementwise_config(n)
    _dropout_kernel[blocks, threads](as_1d(y), as_1d(mask), as_1d(x), n,
                                     workspace.table("dropout_dims", dims),
                                     workspace.table("dropout_noise_strides", strides),
                                     len(dims), stream_key(seed, counter), np.float32(rate),
                                     np.float32(1.0 / (1.0 - float(rate))))
