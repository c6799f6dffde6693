"""Convolution (NHWC, Keras's kernel layout (KH, KW, C, F)) as im2col into the SGEMM of
gemm.py with its bias + activation epilogue, and back: dz and db by the fused
activation-backward + column-sum kernel, dW = cols^T dz and dcols = dz W^T by the SGEMM,
then col2im.

Geometry as pynn/backend/base.py: output (n, i, j) sees input rows i*sh - pt + a, a in
[0, KH), and columns j*sw - pl + b, b in [0, KW); what falls outside the input is padding.
A forward kernel has one thread per output element and reads its window.  A backward
kernel has one thread per INPUT element and gathers from the windows that contain it:
element row h lies at offset a of window row i exactly when h + pt - a = i*sh, so the
thread walks a (and b) in increasing order and keeps the offsets that divide evenly and
land inside the output.  That visits the contributions in the order in which the
reference's _scatter_windows adds them, writes each element once, and needs no atomics.
Flat indices are decomposed in NHWC (or row-major (r, q)) order, so consecutive threads
touch consecutive channels: coalesced loads and stores.
"""
from numba import cuda

from . import gemm
from .runtime import F0, check_float32, check_shape, elementwise_config


@cuda.jit(device=True, inline=True)
def nhwc(e, h, w, c):
    """(n, row, col, channel) of flat element e of an (N, h, w, c) array."""
    ch = e % c
    t = e // c
    col = t % w
    t = t // w
    return t // h, t % h, col, ch


@cuda.jit(device=True, inline=True)
def window_of(pos, pad, offset, stride, out):
    """The output index whose window holds input position `pos` at `offset`, or -1."""
    t = pos + pad - offset
    if t < 0 or t % stride != 0:
        return -1
    o = t // stride
    return o if o < out else -1


@cuda.jit
def _im2col_kernel(cols, x, total, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow):
    """cols[(n, i, j), (a, b, ch)] = x[n, i*sh - pt + a, j*sw - pl + b, ch], 0 for padding;
    one thread per element of cols, consecutive threads along a row of cols."""
    e = cuda.grid(1)
    if e < total:
        k = kh * kw * c
        r = e // k
        q = e - r * k
        ch = q % c
        b = (q // c) % kw
        a = q // (c * kw)
        j = r % ow
        i = (r // ow) % oh
        n = r // (ow * oh)
        row = i * sh - pt + a
        col = j * sw - pl + b
        v = F0
        if row >= 0 and row < h and col >= 0 and col < w:
            v = x[n, row, col, ch]
        cols[r, q] = v


@cuda.jit
def _col2im_kernel(dx, cols, total, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow):
    """dx[n, row, col, ch] = the sum of the cols entries that im2col copied from it, in
    (a, b) order (the adjoint of _im2col_kernel; 0 where no window reaches)."""
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = nhwc(e, h, w, c)
        s = F0
        for a in range(kh):
            i = window_of(row, pt, a, sh, oh)
            if i >= 0:
                for b in range(kw):
                    j = window_of(col, pl, b, sw, ow)
                    if j >= 0:
                        s += cols[(n * oh + i) * ow + j, (a * kw + b) * c + ch]
        dx[n, row, col, ch] = s


def _conv_geometry(where, x, w, cols, out):
    """(kh, kw, c, f, oh, ow) after checking every shape against x and w."""
    if x.ndim != 4 or w.ndim != 4 or w.shape[2] != x.shape[3]:
        raise ValueError(f"{where}: expected x (N, H, W, C) and w (KH, KW, C, F), received "
                         f"shapes {tuple(x.shape)} and {tuple(w.shape)}")
    kh, kw, c, f = w.shape
    n, oh, ow = x.shape[0], out.shape[1], out.shape[2]
    check_shape(where, "output", out, (n, oh, ow, f))
    check_shape(where, "cols", cols, (n * oh * ow, kh * kw * c))
    check_float32(where, x=x, w=w, cols=cols, out=out)
    return kh, kw, c, f, oh, ow


def im2col(cols, x, window, strides, padding, out_hw):
    total = int(cols.size)
    if total:
        blocks, threads = elementwise_config(total)
        _im2col_kernel[blocks, threads](cols, x, total, x.shape[1], x.shape[2], x.shape[3],
                                        window[0], window[1], strides[0], strides[1],
                                        padding[0], padding[1], out_hw[0], out_hw[1])


def col2im(dx, cols, window, strides, padding, out_hw):
    total = int(dx.size)
    if total:
        blocks, threads = elementwise_config(total)
        _col2im_kernel[blocks, threads](dx, cols, total, dx.shape[1], dx.shape[2], dx.shape[3],
                                        window[0], window[1], strides[0], strides[1],
                                        padding[0], padding[1], out_hw[0], out_hw[1])


def conv2d_forward(x, w, b, strides, padding, activation, alpha, cols, z, y, sm_count):
    kh, kw, c, f, oh, ow = _conv_geometry("conv2d_forward", x, w, cols, z)
    check_shape("conv2d_forward", "y", y, z.shape)
    im2col(cols, x, (kh, kw), strides, padding, (oh, ow))
    # z = cols @ W + b and y = act(z): dense_forward's GEMM with its fused epilogue (and its
    # softmax path), on 2-D views sharing the 4-D arrays' memory
    m = x.shape[0] * oh * ow
    gemm.dense_forward(cols, w.reshape(kh * kw * c, f), b, activation, alpha, z.reshape(m, f),
                       y.reshape(m, f), sm_count)


def conv2d_backward_work_size(x_shape, w_shape, strides, out_hw):
    """The backward needs no workspace beyond cols (dcols overwrites it)."""
    return 1


def conv2d_backward(x, w, z, y, dy, strides, padding, activation, alpha, cols, work, dw, db,
                    dx, sm_count):
    kh, kw, c, f, oh, ow = _conv_geometry("conv2d_backward", x, w, cols, z)
    for name, arr in (("y", y), ("dy", dy)):
        check_shape("conv2d_backward", name, arr, z.shape)
    if dw is not None:
        check_shape("conv2d_backward", "dw", dw, w.shape)
    if dx is not None:
        check_shape("conv2d_backward", "dx", dx, x.shape)
    m, k = cols.shape
    # cols still holds im2col(x) from the forward: dz (in dy) and db by the fused
    # activation-backward + column-sum kernel, dW = cols^T dz by the transposed-A SGEMM
    w2 = w.reshape(k, f)
    dz = dy.reshape(m, f)
    gemm.dense_backward(cols, w2, z.reshape(m, f), y.reshape(m, f), dz, activation, alpha,
                        None if dw is None else dw.reshape(k, f), db, None, sm_count)
    if dx is not None:
        # dcols = dz W^T overwrites cols (its im2col is no longer needed), then each input
        # element gathers its column entries
        gemm.matmul(dz, w2, False, True, cols, sm_count)
        col2im(dx, cols, (kh, kw), strides, padding, (oh, ow))
