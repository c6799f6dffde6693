"""Merges of same-shaped arrays (add, subtract, multiply, average, maximum, minimum) and
concatenation along the last axis, forward and backward.

A Numba kernel takes a fixed number of arrays, so a merge of k inputs is folded pairwise,
left to right: y = x0 op x1, then y = y op x2, ... -- the order of reference.merge_forward,
one float32 operation per element and step, so the results are bitwise the reference's (no
multiply-add to contract).  The common case, two inputs, is one launch.

The gradient of maximum / minimum goes to the first input holding the extreme value.  In
pairwise form: x_i gets dy exactly when it beats every earlier input strictly (x_i > x_j,
j < i) and every later one or ties it (x_i >= x_j, j > i), which is "x_i equals the extreme
and no earlier input does"; every comparison with a NaN fails, so a NaN anywhere routes no
gradient, as the reference's x_j == max(...) test.  One launch per other input, each keeping
dy or writing 0.
"""
import numpy as np
from numba import cuda

from ...ids import MERGES
from .elementwise import copy, scale
from .runtime import F0, as_1d, as_2d, check_float32, check_shape, elementwise_config

MERGE_ADD = MERGES["add"]
MERGE_SUBTRACT = MERGES["subtract"]
MERGE_MULTIPLY = MERGES["multiply"]
MERGE_AVERAGE = MERGES["average"]
MERGE_MAXIMUM = MERGES["maximum"]
MERGE_MINIMUM = MERGES["minimum"]

# The pair kernel's operations: a merge's own, and "first" (y = a, then maybe divided).
_OP_FIRST = -1


@cuda.jit
def _merge_pair_kernel(y, a, b, n, op, divisor, divide):
    """y = a op b (NumPy's maximum / minimum: a NaN in either wins), then / divisor when
    divide; y may be a."""
    i = cuda.grid(1)
    if i < n:
        u = a[i]
        v = b[i]
        if op == MERGE_ADD or op == MERGE_AVERAGE:
            r = u + v
        elif op == MERGE_SUBTRACT:
            r = u - v
        elif op == MERGE_MULTIPLY:
            r = u * v
        elif op == MERGE_MAXIMUM:
            r = u if (u >= v or u != u) else v
        elif op == MERGE_MINIMUM:
            r = u if (u <= v or u != u) else v
        else:
            r = u
        if divide:
            r = r / divisor
        y[i] = r


@cuda.jit
def _route_extreme_kernel(dx, g, xi, xj, n, maximum, strict):
    """dx = g where x_i beats x_j (maximum: x_i > x_j when strict, else >=; minimum: <,
    <=), else 0; dx may be g."""
    k = cuda.grid(1)
    if k < n:
        u = xi[k]
        v = xj[k]
        if maximum:
            wins = u > v if strict else u >= v
        else:
            wins = u < v if strict else u <= v
        dx[k] = g[k] if wins else F0


def _kind_id(where, kind):
    if kind not in MERGES:
        raise ValueError(f"{where}: expected kind in {tuple(MERGES)}, received kind={kind!r}")
    return MERGES[kind]


def _check_inputs(where, xs, *outputs):
    if len(xs) == 0:
        raise ValueError(f"{where}: expected at least one input, received none")
    for i, x in enumerate(xs):
        check_shape(where, f"xs[{i}]", x, xs[0].shape)
    for name, arr in outputs:
        check_shape(where, name, arr, xs[0].shape)
    check_float32(where, **{f"xs[{i}]": x for i, x in enumerate(xs)}, **dict(outputs))


def _pair(y, a, b, op, divisor=1, divide=False):
    n = int(y.size)
    if n:
        blocks, threads = elementwise_config(n)
        _merge_pair_kernel[blocks, threads](as_1d(y), as_1d(a), as_1d(b), n, op,
                                            np.float32(divisor), divide)


def merge_forward(kind, xs, y):
    """y = the merge of xs folded left to right; y may be xs[0], or xs[1] of two (each
    element of the pair is read before it is written)."""
    op = _kind_id("merge_forward", kind)
    _check_inputs("merge_forward", xs, ("y", y))
    k = len(xs)
    if op == MERGE_SUBTRACT and k != 2:
        raise ValueError(f"merge_forward: subtract takes 2 inputs, received {k}")
    if k == 1:                       # x0 alone (x0 / 1 for average: the same bits)
        copy(y, xs[0])
        return
    for j in range(1, k):
        last = j == k - 1
        _pair(y, xs[0] if j == 1 else y, xs[j], op, k, op == MERGE_AVERAGE and last)


def merge_backward(kind, i, xs, dy, dx):
    """dx = d merge(xs) / d xs[i] applied to dy; dx may be dy."""
    op = _kind_id("merge_backward", kind)
    _check_inputs("merge_backward", xs, ("dy", dy), ("dx", dx))
    k = len(xs)
    if not 0 <= i < k:
        raise ValueError(f"merge_backward: expected an input index in [0, {k}), received i={i}")
    if op == MERGE_SUBTRACT and k != 2:
        raise ValueError(f"merge_backward: subtract takes 2 inputs, received {k}")
    if op == MERGE_ADD or (op == MERGE_SUBTRACT and i == 0):
        copy(dx, dy)
    elif op == MERGE_SUBTRACT:
        scale(dy, -1.0, dx)           # -dy: a sign flip, exact
    elif op == MERGE_AVERAGE:
        _pair(dx, dy, dy, _OP_FIRST, k, True)
    elif op == MERGE_MULTIPLY:        # dy times the other inputs, in input order
        others = [x for j, x in enumerate(xs) if j != i]
        if not others:
            copy(dx, dy)
        for j, x in enumerate(others):
            _pair(dx, dy if j == 0 else dx, x, MERGE_MULTIPLY)
    else:
        n = int(dx.size)
        if n == 0:
            return
        blocks, threads = elementwise_config(n)
        # k == 1: x_i against itself, so that a NaN routes nothing as in the reference
        others = [(j, x) for j, x in enumerate(xs) if j != i] or [(i, xs[i])]
        for step, (j, x) in enumerate(others):
            _route_extreme_kernel[blocks, threads](
                as_1d(dx), as_1d(dy if step == 0 else dx), as_1d(xs[i]), as_1d(x), n,
                op == MERGE_MAXIMUM, j < i)


# ---- concatenation along the last axis ------------------------------------------------------

@cuda.jit
def _copy_columns_kernel(dst, src, rows, width, dst_col0, src_col0):
    """dst[r, dst_col0 + c] = src[r, src_col0 + c] for c < width: a block of columns."""
    e = cuda.grid(1)
    if e < rows * width:
        r = e // width
        c = e - r * width
        dst[r, dst_col0 + c] = src[r, src_col0 + c]


def _copy_columns(dst, src, width, dst_col0, src_col0):
    rows = dst.shape[0]
    if rows * width:
        blocks, threads = elementwise_config(rows * width)
        _copy_columns_kernel[blocks, threads](dst, src, rows, width, dst_col0, src_col0)


def concat_forward(xs, y):
    """y (outer, sum of widths) = the arrays xs[i] (outer, width_i) side by side."""
    y2 = as_2d(y)
    xs2 = [as_2d(x) for x in xs]
    widths = [x.shape[1] for x in xs2]
    check_shape("concat_forward", "y", y2, (y2.shape[0], sum(widths)))
    for i, x in enumerate(xs2):
        check_shape("concat_forward", f"xs[{i}]", x, (y2.shape[0], widths[i]))
    check_float32("concat_forward", y=y, **{f"xs[{i}]": x for i, x in enumerate(xs)})
    col0 = 0
    for x, width in zip(xs2, widths):
        _copy_columns(y2, x, width, col0, 0)
        col0 += width


def concat_backward(dy, widths, dxs):
    """dxs[i] (outer, widths[i]) = dy's columns that came from input i; None: not wanted."""
    dy2 = as_2d(dy)
    widths = [int(w) for w in widths]
    check_shape("concat_backward", "dy", dy2, (dy2.shape[0], sum(widths)))
    if len(dxs) != len(widths):
        raise ValueError(f"concat_backward: expected {len(widths)} gradients (one per width), "
                         f"received {len(dxs)}")
    col0 = 0
    for i, (dx, width) in enumerate(zip(dxs, widths)):
        if dx is not None:
            dx2 = as_2d(dx)
            check_shape("concat_backward", f"dxs[{i}]", dx2, (dy2.shape[0], width))
            check_float32("concat_backward", dy=dy, **{f"dxs[{i}]": dx})
            _copy_columns(dx2, dy2, width, 0, col0)
        col0 += width
