"""Engineer D (#16): the sequence ops as CUDA kernels -- global max pooling, the masked mean
over steps (GlobalAveragePooling1D with a mask) and RepeatVector, forward and backward.

x is (N, S, C): S steps (or the H*W positions of an image) of C channels.  One thread per
output element; every sum runs over the steps in order 0, 1, ... (csrc/seq1d.c's order),
with no atomics, so results repeat bitwise.
"""
import numpy as np
from numba import cuda

from .runtime import F0, check_float32, check_shape, elementwise_config


def _check3(where, name, a):
    if a.ndim != 3:
        raise ValueError(f"{where}: expected {name} (N, S, C), received shape {tuple(a.shape)}")


@cuda.jit(device=True, inline=True)
def _first_max(x, n, ch, s):
    """(max, t): the first maximum of x[n, :, ch] (a NaN wins, as np.max / np.argmax)."""
    best = x[n, 0, ch]
    at = 0
    for t in range(1, s):
        v = x[n, t, ch]
        if v > best or (v != v and best == best):
            best = v
            at = t
    return best, at


@cuda.jit
def _global_maxpool_forward_kernel(y, x, nc, s, c):
    e = cuda.grid(1)
    if e < nc:
        n = e // c
        ch = e - n * c
        best, at = _first_max(x, n, ch, s)
        y[n, ch] = best


@cuda.jit
def _global_maxpool_backward_kernel(dx, x, dy, total, s, c):
    """One thread per element of dx: dy where this step is the first maximum, else 0."""
    e = cuda.grid(1)
    if e < total:
        n = e // (s * c)
        rest = e - n * s * c
        t = rest // c
        ch = rest - t * c
        best, at = _first_max(x, n, ch, s)
        dx[n, t, ch] = dy[n, ch] if at == t else F0


@cuda.jit
def _masked_mean_forward_kernel(y, x, mask, nc, s, c):
    e = cuda.grid(1)
    if e < nc:
        n = e // c
        ch = e - n * c
        acc = F0
        count = F0
        for t in range(s):
            m = mask[n, t]
            count += m
            acc += m * x[n, t, ch]
        y[n, ch] = acc / count


@cuda.jit
def _masked_mean_backward_kernel(dx, dy, mask, total, s, c):
    e = cuda.grid(1)
    if e < total:
        n = e // (s * c)
        rest = e - n * s * c
        t = rest // c
        ch = rest - t * c
        count = F0
        for k in range(s):
            count += mask[n, k]
        dx[n, t, ch] = mask[n, t] * (dy[n, ch] / count)


@cuda.jit
def _repeat_vector_forward_kernel(y, x, total, times, f):
    e = cuda.grid(1)
    if e < total:
        n = e // (times * f)
        j = e - (e // f) * f
        t = (e - n * times * f) // f
        y[n, t, j] = x[n, j]


@cuda.jit
def _repeat_vector_backward_kernel(dx, dy, nf, times, f):
    e = cuda.grid(1)
    if e < nf:
        n = e // f
        j = e - n * f
        acc = dy[n, 0, j]
        for t in range(1, times):
            acc += dy[n, t, j]
        dx[n, j] = acc


def _launch(kernel, total, *args):
    if total:
        blocks, threads = elementwise_config(total)
        kernel[blocks, threads](*args)


def global_maxpool_forward(x, y):
    _check3("global_maxpool_forward", "x", x)
    n, s, c = x.shape
    check_shape("global_maxpool_forward", "y", y, (n, c))
    check_float32("global_maxpool_forward", x=x, y=y)
    if s < 1:
        raise ValueError("global_maxpool_forward: x has no steps")
    _launch(_global_maxpool_forward_kernel, n * c, y, x, n * c, s, c)


def global_maxpool_backward(x, dy, dx):
    _check3("global_maxpool_backward", "x", x)
    n, s, c = x.shape
    check_shape("global_maxpool_backward", "dy", dy, (n, c))
    check_shape("global_maxpool_backward", "dx", dx, x.shape)
    check_float32("global_maxpool_backward", x=x, dy=dy, dx=dx)
    _launch(_global_maxpool_backward_kernel, int(dx.size), dx, x, dy, int(dx.size), s, c)


def masked_mean_forward(x, mask, y):
    _check3("masked_mean_forward", "x", x)
    n, s, c = x.shape
    check_shape("masked_mean_forward", "mask", mask, (n, s))
    check_shape("masked_mean_forward", "y", y, (n, c))
    check_float32("masked_mean_forward", x=x, mask=mask, y=y)
    _launch(_masked_mean_forward_kernel, n * c, y, x, mask, n * c, s, c)


def masked_mean_backward(dy, mask, dx):
    _check3("masked_mean_backward", "dx", dx)
    n, s, c = dx.shape
    check_shape("masked_mean_backward", "mask", mask, (n, s))
    check_shape("masked_mean_backward", "dy", dy, (n, c))
    check_float32("masked_mean_backward", dy=dy, mask=mask, dx=dx)
    _launch(_masked_mean_backward_kernel, int(dx.size), dx, dy, mask, int(dx.size), s, c)


def repeat_vector_forward(x, y):
    _check3("repeat_vector_forward", "y", y)
    n, times, f = y.shape
    check_shape("repeat_vector_forward", "x", x, (n, f))
    check_float32("repeat_vector_forward", x=x, y=y)
    _launch(_repeat_vector_forward_kernel, int(y.size), y, x, int(y.size), times, f)


def repeat_vector_backward(dy, dx):
    _check3("repeat_vector_backward", "dy", dy)
    n, times, f = dy.shape
    check_shape("repeat_vector_backward", "dx", dx, (n, f))
    check_float32("repeat_vector_backward", dy=dy, dx=dx)
    if times < 1:
        raise ValueError("repeat_vector_backward: dy has no copies")
    _launch(_repeat_vector_backward_kernel, n * f, dx, dy, n * f, times, f)
