"""Regularizers and constraints on the device (engineer F): the L1/L2 penalty of an array
with its gradient, and Keras 3's weight constraints, as csrc/regularizers.c computes them.

Determinism: the penalty's value is summed over the same fixed chunks as the C kernel,
each by one thread in index order (float64), the chunk sums then added in order on the
host; every other output element is written by one thread."""
import math

import numpy as np
from numba import cuda, float64

from .runtime import as_1d, check_float32, check_shape, elementwise_config

CHUNKS = 256
MIN_CHUNK = 4096
KINDS = {"max_norm": 0, "min_max_norm": 1, "non_neg": 2, "unit_norm": 3}
EPSILON = np.float32(1e-7)


@cuda.jit
def _chunk_sums_kernel(partial, x, n, chunk, l1, l2):
    c = cuda.grid(1)
    if c < partial.shape[0]:
        lo = c * chunk
        hi = min(lo + chunk, n)
        s1 = float64(0.0)
        s2 = float64(0.0)
        for j in range(lo, hi):
            v = float64(x[j])
            s1 += abs(v)
            s2 += v * v
        partial[c] = l1 * s1 + l2 * s2


@cuda.jit
def _penalty_grad_kernel(dx, x, n, a, b, accumulate):
    i = cuda.grid(1)
    if i < n:
        v = x[i]
        s = v * 0                     # float32 zero
        if v > 0:
            s = s + 1
        elif v < 0:
            s = s - 1
        g = a * s + b * v
        if accumulate:
            dx[i] = dx[i] + g
        else:
            dx[i] = g


def penalty(x, dx, l1, l2, scale=1.0, accumulate=True):
    """scale * (l1 sum|x| + l2 sum x^2) as a Python float; the gradient scale * (l1 sign(x)
    + 2 l2 x) added into (accumulate) or written to dx when dx is given."""
    check_float32("penalty", x=x, dx=dx)
    if dx is not None:
        check_shape("penalty", "dx", dx, x.shape)
    n = int(x.size)
    chunks = max(1, min(CHUNKS, (n + MIN_CHUNK - 1) // MIN_CHUNK))
    chunk = (n + chunks - 1) // chunks
    value = 0.0
    if n:
        partial = cuda.device_array(chunks, dtype=np.float64)
        blocks, threads = elementwise_config(chunks)
        _chunk_sums_kernel[blocks, threads](partial, as_1d(x), n, chunk, float(l1), float(l2))
        for s in partial.copy_to_host():
            value += float(s)
        if dx is not None:
            blocks, threads = elementwise_config(n)
            _penalty_grad_kernel[blocks, threads](as_1d(dx), as_1d(x), n,
                                                  np.float32(scale * l1),
                                                  np.float32(2.0 * scale * l2),
                                                  1 if accumulate else 0)
    return float(scale) * value


@cuda.jit
def _non_neg_kernel(w, n):
    i = cuda.grid(1)
    if i < n:
        if not w[i] > 0:
            w[i] = 0


@cuda.jit
def _norm_kernel(w, outer, red, inner, kind, a, b, rate, eps):
    col = cuda.grid(1)
    if col < outer * inner:
        o = col // inner
        k = col % inner
        base = o * red * inner + k
        s = float64(0.0)
        for r in range(red):
            v = float64(w[base + r * inner])
            s += v * v
        norm = np.float32(math.sqrt(s))
        if kind == 3:
            d = eps + norm
            for r in range(red):
                w[base + r * inner] = w[base + r * inner] / d
            return
        if kind == 0:
            desired = min(max(norm, np.float32(0.0)), a)
        else:
            clipped = min(max(norm, a), b)
            desired = rate * clipped + (np.float32(1.0) - rate) * norm
        factor = desired / (eps + norm)
        for r in range(red):
            w[base + r * inner] = w[base + r * inner] * factor


def constraint(w, outer, red, inner, kind, a=0.0, b=0.0, rate=1.0):
    """Keras's constraint `kind` in place on w viewed as (outer, red, inner), the norms over
    `red` (csrc/pynn.h pynn_constraint)."""
    check_float32("constraint", w=w)
    if kind not in KINDS:
        raise ValueError(f"constraint: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    n = int(w.size)
    if n != outer * red * inner:
        raise ValueError(f"constraint: {n} values are not ({outer}, {red}, {inner})")
    if not n:
        return
    flat = as_1d(w)
    if kind == "non_neg":
        blocks, threads = elementwise_config(n)
        _non_neg_kernel[blocks, threads](flat, n)
        return
    cols = outer * inner
    blocks, threads = elementwise_config(cols)
    _norm_kernel[blocks, threads](flat, outer, red, inner, KINDS[kind], np.float32(a),
                                  np.float32(b), np.float32(rate), EPSILON)
