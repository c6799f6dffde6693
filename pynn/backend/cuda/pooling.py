"""Pooling (NHWC): max, average and global-average, forward and backward.

The geometry and the gather-style backwards are convolution.py's (see its docstring): a
backward kernel has one thread per input element and adds what reaches it from the windows
holding it, in the reference's order, with no atomics.  Max pooling recomputes each window's
argmax from x in the backward (shared device function, so forward and backward pick the same
element) instead of keeping an index buffer.
"""
import numpy as np
from numba import cuda, float32

from .convolution import nhwc, window_of
from .runtime import F0, check_float32, check_shape, elementwise_config

_NEG_INF = np.float32(-np.inf)            # where a running maximum starts


@cuda.jit(device=True, inline=True)
def _window_max(x, n, i, j, ch, h, w, ph, pw, sh, sw, pt, pl):
    """(max, p) over the input elements of window (i, j) (padding never wins): p = a * pw + b
    is the first maximum in row-major window order (np.argmax's ties), and a NaN wins as in
    np.max / np.argmax; p = -1 for a window with no input element.  Shared by the forward
    and the backward, so both pick the same element."""
    row0 = i * sh - pt
    col0 = j * sw - pl
    best = _NEG_INF
    p = -1
    for a in range(ph):
        for b in range(pw):
            row = row0 + a
            col = col0 + b
            if row >= 0 and row < h and col >= 0 and col < w:
                v = x[n, row, col, ch]
                if p < 0 or v > best or (v != v and best == best):
                    best = v
                    p = a * pw + b
    return best, p


@cuda.jit
def _maxpool_forward_kernel(y, x, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """y = the window max; 0 for a window of padding only, as the reference."""
    e = cuda.grid(1)
    if e < total:
        n, i, j, ch = nhwc(e, oh, ow, c)
        best, p = _window_max(x, n, i, j, ch, h, w, ph, pw, sh, sw, pt, pl)
        y[n, i, j, ch] = F0 if p < 0 else best


@cuda.jit
def _maxpool_backward_kernel(dx, x, dy, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """dx[n, row, col, ch] = the sum of dy over the windows whose first maximum is this
    element.  Each candidate window's argmax is recomputed from x (PH*PW reads per window
    containing the element: cheap for pooling-sized windows, and no index buffer)."""
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = nhwc(e, h, w, c)
        s = F0
        for a in range(ph):
            i = window_of(row, pt, a, sh, oh)
            if i >= 0:
                for b in range(pw):
                    j = window_of(col, pl, b, sw, ow)
                    if j >= 0:
                        best, p = _window_max(x, n, i, j, ch, h, w, ph, pw, sh, sw, pt, pl)
                        if p == a * pw + b:
                            s += dy[n, i, j, ch]
        dx[n, row, col, ch] = s


@cuda.jit(device=True, inline=True)
def _window_count(i, j, h, w, ph, pw, sh, sw, pt, pl):
    """How many input (non-padding) elements window (i, j) holds."""
    row0 = i * sh - pt
    col0 = j * sw - pl
    rows = min(row0 + ph, h) - max(row0, 0)
    cols = min(col0 + pw, w) - max(col0, 0)
    if rows <= 0 or cols <= 0:
        return 0
    return rows * cols


@cuda.jit
def _avgpool_forward_kernel(y, x, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """y = (sum of the window's input elements, row-major) / their count; 0 if none."""
    e = cuda.grid(1)
    if e < total:
        n, i, j, ch = nhwc(e, oh, ow, c)
        row0 = i * sh - pt
        col0 = j * sw - pl
        s = F0
        for a in range(ph):
            row = row0 + a
            if row >= 0 and row < h:
                for b in range(pw):
                    col = col0 + b
                    if col >= 0 and col < w:
                        s += x[n, row, col, ch]
        count = _window_count(i, j, h, w, ph, pw, sh, sw, pt, pl)
        y[n, i, j, ch] = s / float32(count) if count > 0 else F0


@cuda.jit
def _avgpool_backward_kernel(dx, dy, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """dx[n, row, col, ch] = the sum over the windows holding it of dy / that window's
    count (the quotient first, as the reference: same float32 values)."""
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = nhwc(e, h, w, c)
        s = F0
        for a in range(ph):
            i = window_of(row, pt, a, sh, oh)
            if i >= 0:
                for b in range(pw):
                    j = window_of(col, pl, b, sw, ow)
                    if j >= 0:
                        count = _window_count(i, j, h, w, ph, pw, sh, sw, pt, pl)
                        s += dy[n, i, j, ch] / float32(count)
        dx[n, row, col, ch] = s


@cuda.jit
def _global_avgpool_forward_kernel(y, x, nc, h, w, c, area):
    """y[n, ch] = (sum over rows, then columns, in order) / (h*w); one thread per (n, ch),
    consecutive threads on consecutive channels (coalesced)."""
    e = cuda.grid(1)
    if e < nc:
        n = e // c
        ch = e - n * c
        s = F0
        for row in range(h):
            for col in range(w):
                s += x[n, row, col, ch]
        y[n, ch] = s / area


@cuda.jit
def _global_avgpool_backward_kernel(dx, dy, total, h, w, c, area):
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = nhwc(e, h, w, c)
        dx[n, row, col, ch] = dy[n, ch] / area


def _pool_shapes(where, x_shape, y_shape):
    if len(x_shape) != 4 or len(y_shape) != 4 or y_shape[0] != x_shape[0] \
            or y_shape[3] != x_shape[3]:
        raise ValueError(f"{where}: expected input (N, H, W, C) and output (N, OH, OW, C), "
                         f"received shapes {tuple(x_shape)} and {tuple(y_shape)}")
    return tuple(y_shape[1:3])


def _pool_launch(where, kernel, out, x_shape, window, strides, padding, out_hw, *arrays):
    """One thread per element of `out`; the kernel gets the arrays, then the geometry."""
    check_float32(where, out=out, **{f"input{i}": a for i, a in enumerate(arrays)})
    total = int(out.size)
    if total:
        blocks, threads = elementwise_config(total)
        kernel[blocks, threads](out, *arrays, total, x_shape[1], x_shape[2], x_shape[3],
                                window[0], window[1], strides[0], strides[1], padding[0],
                                padding[1], out_hw[0], out_hw[1])


def maxpool2d_forward(x, pool_size, strides, padding, y):
    out_hw = _pool_shapes("maxpool2d_forward", x.shape, y.shape)
    _pool_launch("maxpool2d_forward", _maxpool_forward_kernel, y, x.shape, pool_size, strides,
                 padding, out_hw, x)


def maxpool2d_backward(x, y, dy, pool_size, strides, padding, dx):
    # the argmax is recomputed from x (y is not needed: the forward's kernel shares it)
    out_hw = _pool_shapes("maxpool2d_backward", x.shape, dy.shape)
    check_shape("maxpool2d_backward", "dx", dx, x.shape)
    _pool_launch("maxpool2d_backward", _maxpool_backward_kernel, dx, x.shape, pool_size, strides,
                 padding, out_hw, x, dy)


def avgpool2d_forward(x, pool_size, strides, padding, y):
    out_hw = _pool_shapes("avgpool2d_forward", x.shape, y.shape)
    _pool_launch("avgpool2d_forward", _avgpool_forward_kernel, y, x.shape, pool_size, strides,
                 padding, out_hw, x)


def avgpool2d_backward(dy, pool_size, strides, padding, dx):
    out_hw = _pool_shapes("avgpool2d_backward", dx.shape, dy.shape)
    _pool_launch("avgpool2d_backward", _avgpool_backward_kernel, dx, dx.shape, pool_size, strides,
                 padding, out_hw, dy)


def global_avgpool2d_forward(x, y):
    if x.ndim != 4:
        raise ValueError(f"global_avgpool2d_forward: expected x (N, H, W, C), received shape "
                         f"{tuple(x.shape)}")
    n, h, w, c = x.shape
    check_shape("global_avgpool2d_forward", "y", y, (n, c))
    check_float32("global_avgpool2d_forward", x=x, y=y)
    if n * c:
        blocks, threads = elementwise_config(n * c)
        _global_avgpool_forward_kernel[blocks, threads](y, x, n * c, h, w, c, np.float32(h * w))


def global_avgpool2d_backward(dy, dx):
    if dx.ndim != 4:
        raise ValueError(f"global_avgpool2d_backward: expected dx (N, H, W, C), received shape "
                         f"{tuple(dx.shape)}")
    n, h, w, c = dx.shape
    check_shape("global_avgpool2d_backward", "dy", dy, (n, c))
    check_float32("global_avgpool2d_backward", dy=dy, dx=dx)
    total = int(dx.size)
    if total:
        blocks, threads = elementwise_config(total)
        _global_avgpool_backward_kernel[blocks, threads](dx, dy, total, h, w, c, np.float32(h * w))
