"""The activation layers that are not one activation id (engineer A): Keras's ReLU with
max_value / threshold, softmax over a middle axis, PReLU -- csrc/act_layers.c's kernels.

Every output element is written by one thread.  PReLU's alpha gradient gives each alpha
element to one thread, which sums rows outer and shared positions inner, in index order,
into a double (the C core's order): no atomics, the same bits every run.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from .runtime import D0, F0, as_1d, elementwise_config

PRELU_MAX_RANK = 16


@cuda.jit
def _relu_kernel(y, x, n, slope, threshold, top):
    i = cuda.grid(1)
    if i < n:
        v = x[i]
        kept = v if v > threshold else F0
        neg = threshold - v if threshold - v > F0 else F0
        y[i] = min(max(kept, F0), top) - slope * neg


@cuda.jit
def _relu_backward_kernel(dx, x, dy, n, slope, threshold, top):
    i = cuda.grid(1)
    if i < n:
        v = x[i]
        g = dy[i]
        pos = g if v > threshold and v > F0 and v < top else F0
        neg = slope * g if v < threshold else F0
        dx[i] = pos + neg


def _relu_reals(negative_slope, threshold, max_value):
    top = np.inf if max_value is None else max_value
    return np.float32(negative_slope), np.float32(threshold), np.float32(top)


def relu_forward(x, negative_slope, threshold, max_value, y):
    x1, y1 = as_1d(x), as_1d(y)
    n = int(x1.size)
    if n:
        blocks, threads = elementwise_config(n)
        _relu_kernel[blocks, threads](y1, x1, n, *_relu_reals(negative_slope, threshold,
                                                                max_value))


def relu_backward(x, dy, negative_slope, threshold, max_value, dx):
    x1, dy1, dx1 = as_1d(x), as_1d(dy), as_1d(dx)
    n = int(x1.size)
    if n:
        blocks, threads = elementwise_config(n)
        _relu_backward_kernel[blocks, threads](dx1, x1, dy1, n,
                                               *_relu_reals(negative_slope, threshold,
                                                            max_value))


_MASKED = np.float32(-1e9)     # Keras's _large_negative_number for float32
_HALF = np.float32(0.5)


@cuda.jit(device=True, inline=True)
def _masked_in(x, mask, has_mask, k):
    return x[k] if not has_mask or mask[k] > _HALF else _MASKED


@cuda.jit
def _softmax_axis_kernel(y, x, mask, has_mask, outer, length, inner):
    """one thread per (o, i) column: max, exp, a float sum in index order, e / s; where a
    mask is given and <= 0.5, x counts as -1e9 and y is 0 (csrc/act_layers.c)"""
    t = cuda.grid(1)
    if t < outer * inner:
        o = t // inner
        i = t - o * inner
        base = o * length * inner + i
        m = _masked_in(x, mask, has_mask, base)
        for j in range(1, length):
            v = _masked_in(x, mask, has_mask, base + j * inner)
            if v > m:
                m = v
        s = F0
        for j in range(length):
            e = math.exp(_masked_in(x, mask, has_mask, base + j * inner) - m)
            y[base + j * inner] = e
            s += e
        for j in range(length):
            k = base + j * inner
            y[k] = y[k] / s if not has_mask or mask[k] > _HALF else F0


@cuda.jit
def _softmax_axis_backward_kernel(dx, y, dy, outer, length, inner):
    t = cuda.grid(1)
    if t < outer * inner:
        o = t // inner
        i = t - o * inner
        base = o * length * inner + i
        dot = D0
        for j in range(length):
            k = base + j * inner
            dot += float64(dy[k] * y[k])
        dotf = float32(dot)
        for j in range(length):
            k = base + j * inner
            dx[k] = y[k] * (dy[k] - dotf)


def softmax_axis_forward(x, outer, length, inner, y, mask=None):
    n = outer * inner
    if n and length:
        blocks, threads = elementwise_config(n)
        m = as_1d(x) if mask is None else as_1d(mask)      # x: a placeholder, never read
        _softmax_axis_kernel[blocks, threads](as_1d(y), as_1d(x), m, mask is not None, outer,
                                              length, inner)


def softmax_axis_backward(y, dy, outer, length, inner, dx):
    n = outer * inner
    if n and length:
        blocks, threads = elementwise_config(n)
        _softmax_axis_backward_kernel[blocks, threads](as_1d(dx), as_1d(y), as_1d(dy), outer,
                                                       length, inner)


def _prelu_geometry(dims, shared):
    """(per, na, xstride, astride, sdims, sstride) as host int64 arrays."""
    rank = len(dims)
    if not 1 <= rank <= PRELU_MAX_RANK or len(shared) != rank:
        raise ValueError(f"prelu: expected 1 to {PRELU_MAX_RANK} dims and as many shared "
                         f"flags, received dims={tuple(dims)}, shared={tuple(shared)}")
    xstride = np.zeros(rank, np.int64)
    astride = np.zeros(rank, np.int64)
    p = a = 1
    for k in range(rank - 1, -1, -1):
        xstride[k] = p
        astride[k] = 0 if shared[k] else a
        p *= int(dims[k])
        if not shared[k]:
            a *= int(dims[k])
    keep = np.array([not s for s in shared])
    return p, a, xstride, astride, np.asarray(dims, np.int64), keep.astype(np.int64)


@cuda.jit(device=True, inline=True)
def _alpha_index(p, rank, xstride, astride):
    a = 0
    for k in range(rank):
        c = p // xstride[k]
        p -= c * xstride[k]
        a += c * astride[k]
    return a


@cuda.jit
def _prelu_kernel(y, x, alpha, total, per, rank, xstride, astride):
    i = cuda.grid(1)
    if i < total:
        p = i % per
        v = x[i]
        y[i] = v if v > F0 else alpha[_alpha_index(p, rank, xstride, astride)] * v


@cuda.jit
def _prelu_dx_kernel(dx, x, alpha, dy, total, per, rank, xstride, astride):
    i = cuda.grid(1)
    if i < total:
        p = i % per
        g = dy[i]
        dx[i] = g if x[i] > F0 else alpha[_alpha_index(p, rank, xstride, astride)] * g


@cuda.jit
def _prelu_dalpha_kernel(dalpha, x, dy, rows, per, na, rank, dims, keep, xstride):
    """one thread per alpha element: rows outer, shared positions inner in index order,
    into a double (csrc/act_layers.c's order)"""
    a = cuda.grid(1)
    if a < na:
        base = 0
        rem = a
        ns = 1
        for kk in range(rank - 1, -1, -1):
            if keep[kk]:
                base += (rem % dims[kk]) * xstride[kk]
                rem //= dims[kk]
            else:
                ns *= dims[kk]
        acc = D0
        for r in range(rows):
            for s in range(ns):
                off = base
                q = s
                for kk in range(rank - 1, -1, -1):
                    if not keep[kk]:
                        off += (q % dims[kk]) * xstride[kk]
                        q //= dims[kk]
                v = x[r * per + off]
                if v < F0:
                    acc += float64(dy[r * per + off] * v)
        dalpha[a] = float32(acc)


def prelu_forward(x, alpha, dims, shared, y):
    per, na, xstride, astride, _, _ = _prelu_geometry(dims, shared)
    x1 = as_1d(x)
    total = int(x1.size)
    if total:
        blocks, threads = elementwise_config(total)
        _prelu_kernel[blocks, threads](as_1d(y), x1, as_1d(alpha), total, per, len(dims),
                                       cuda.to_device(xstride), cuda.to_device(astride))


def prelu_backward(x, alpha, dy, dims, shared, dalpha, dx):
    per, na, xstride, astride, dv, keep = _prelu_geometry(dims, shared)
    x1, dy1 = as_1d(x), as_1d(dy)
    total = int(x1.size)
    rows = total // per
    xs = cuda.to_device(xstride)
    blocks, threads = elementwise_config(na)
    # dalpha first: dx may be dy
    if dalpha is not None:
        _prelu_dalpha_kernel[blocks, threads](as_1d(dalpha), x1, dy1, rows, per, na, len(dims),
                                              cuda.to_device(dv), cuda.to_device(keep), xs)
    if dx is not None and total:
        blocks, threads = elementwise_config(total)
        _prelu_dx_kernel[blocks, threads](as_1d(dx), x1, as_1d(alpha), dy1, total, per,
                                          len(dims), xs, cuda.to_device(astride))
