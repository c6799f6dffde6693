"""Convolution variants (engineer B): dilated and grouped convolution (Conv2D's
dilation_rate and groups, DepthwiseConv2D, SeparableConv2D's depthwise half) and the batched
transpose (Permute, channels_first).

Kernel (KH, KW, C / groups, F); output channel o lies in group g = o // (F / groups) and
sees input channels g*cg .. g*cg + cg - 1 (cg = C / groups); output (n, i, j) sees input
row i*sh - pt + a*dh and column j*sw - pl + b*dw for the tap (a, b).

One thread per output element (forward), per input element (dx: it gathers from the
windows that hold it, taps in increasing order, like convolution.py's col2im) and per
weight element (dw: it sums over the batch and the output positions in order): every
element is written once, without atomics, so the results repeat bitwise.
"""
from numba import cuda

from . import elementwise
from .convolution import nhwc, window_of
from .runtime import F0, check_float32, check_shape, elementwise_config


@cuda.jit
def _forward_kernel(z, x, wgt, bias, has_bias, total, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow,
                    f, dh, dw, groups):
    e = cuda.grid(1)
    if e < total:
        n, i, j, o = nhwc(e, oh, ow, f)
        cg = c // groups
        g = o // (f // groups)
        s = F0
        for a in range(kh):
            r = i * sh - pt + a * dh
            if r >= 0 and r < h:
                for b in range(kw):
                    q = j * sw - pl + b * dw
                    if q >= 0 and q < w:
                        for ci in range(cg):
                            s += x[n, r, q, g * cg + ci] * wgt[a, b, ci, o]
        if has_bias:
            s = bias[o] + s
        z[n, i, j, o] = s


@cuda.jit
def _input_grad_kernel(dx, dz, wgt, total, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, dh, dw,
                       groups):
    e = cuda.grid(1)
    if e < total:
        n, r, q, ch = nhwc(e, h, w, c)
        cg = c // groups
        fg = f // groups
        g = ch // cg
        ci = ch - g * cg
        s = F0
        for a in range(kh):
            i = window_of(r, pt, a * dh, sh, oh)
            if i >= 0:
                for b in range(kw):
                    j = window_of(q, pl, b * dw, sw, ow)
                    if j >= 0:
                        for m in range(fg):
                            s += dz[n, i, j, g * fg + m] * wgt[a, b, ci, g * fg + m]
        dx[n, r, q, ch] = s


@cuda.jit
def _filter_grad_kernel(dwgt, dz, x, total, batch, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f,
                        dh, dw, groups):
    e = cuda.grid(1)
    if e < total:
        cg = c // groups
        a, b, ci, o = nhwc(e, kw, cg, f)
        g = o // (f // groups)
        s = F0
        for n in range(batch):
            for i in range(oh):
                r = i * sh - pt + a * dh
                if r >= 0 and r < h:
                    for j in range(ow):
                        q = j * sw - pl + b * dw
                        if q >= 0 and q < w:
                            s += x[n, r, q, g * cg + ci] * dz[n, i, j, o]
        dwgt[a, b, ci, o] = s


def _check(where, x, w, z, groups):
    if x.ndim != 4 or w.ndim != 4 or groups < 1 or x.shape[3] % groups or w.shape[3] % groups \
            or w.shape[2] * groups != x.shape[3]:
        raise ValueError(f"{where}: expected x (N, H, W, C) and w (KH, KW, C / groups, F) with "
                         f"groups dividing C and F, received shapes {tuple(x.shape)} and "
                         f"{tuple(w.shape)}, groups={groups}")
    check_shape(where, "z", z, (x.shape[0], z.shape[1], z.shape[2], w.shape[3]))
    check_float32(where, x=x, w=w, z=z)


def conv2d_general_forward(x, w, b, strides, padding, dilation, groups, activation, alpha, z, y):
    _check("conv2d_general_forward", x, w, z, groups)
    check_shape("conv2d_general_forward", "y", y, z.shape)
    total = int(z.size)
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    if total:
        blocks, threads = elementwise_config(total)
        _forward_kernel[blocks, threads](z, x, w, w if b is None else b, b is not None, total, h,
                                         wd, c, kh, kw, strides[0], strides[1], padding[0],
                                         padding[1], z.shape[1], z.shape[2], f, dilation[0],
                                         dilation[1], groups)
    elementwise.activation_forward(z.reshape(-1, f), activation, alpha, y.reshape(-1, f))


def conv2d_general_work_size(x_shape, w_shape, groups):
    return 1


def conv2d_general_backward(x, w, z, y, dy, strides, padding, dilation, groups, activation,
                            alpha, work, dw, db, dx):
    where = "conv2d_general_backward"
    _check(where, x, w, z, groups)
    for name, arr in (("y", y), ("dy", dy)):
        check_shape(where, name, arr, z.shape)
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    oh, ow = z.shape[1], z.shape[2]
    geo = (kh, kw, strides[0], strides[1], padding[0], padding[1], oh, ow, f, dilation[0],
           dilation[1], groups)
    dz2 = dy.reshape(-1, f)
    elementwise.activation_backward(z.reshape(-1, f), y.reshape(-1, f), dz2, activation, alpha,
                                    dz2)
    if db is not None:
        elementwise.bias_grad(dz2, db)
    if dw is not None:
        check_shape(where, "dw", dw, w.shape)
        total = int(dw.size)
        if total:
            blocks, threads = elementwise_config(total)
            _filter_grad_kernel[blocks, threads](dw, dy, x, total, n, h, wd, c, *geo)
    if dx is not None:
        check_shape(where, "dx", dx, x.shape)
        total = int(dx.size)
        if total:
            blocks, threads = elementwise_config(total)
            _input_grad_kernel[blocks, threads](dx, dy, w, total, h, wd, c, *geo)


_MAX_DIMS = 6


@cuda.jit
def _transpose_kernel(y, x, total, size, d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5):
    """y (flat) element e = (row, o0 .. o5) in the output's dims d0 .. d5 reads x at row *
    size + sum o_k s_k (s_k the input stride of output axis k)."""
    e = cuda.grid(1)
    if e < total:
        t = e
        o5 = t % d5
        t //= d5
        o4 = t % d4
        t //= d4
        o3 = t % d3
        t //= d3
        o2 = t % d2
        t //= d2
        o1 = t % d1
        t //= d1
        o0 = t % d0
        row = t // d0
        y[e] = x[row * size + o0 * s0 + o1 * s1 + o2 * s2 + o3 * s3 + o4 * s4 + o5 * s5]


def transpose(x, perm, y):
    where = "transpose"
    ndim = x.ndim - 1
    if ndim < 1 or ndim > _MAX_DIMS or sorted(perm) != list(range(ndim)):
        raise ValueError(f"{where}: expected perm to be a permutation of the {ndim} non-batch "
                         f"axes, received {tuple(perm)}")
    dims = tuple(x.shape[1:])
    expect = (x.shape[0],) + tuple(dims[p] for p in perm)
    check_shape(where, "y", y, expect)
    strides, size = [0] * ndim, 1
    for k in range(ndim - 1, -1, -1):
        strides[k] = size
        size *= dims[k]
    out_dims = [dims[p] for p in perm] + [1] * (_MAX_DIMS - ndim)
    out_strides = [strides[p] for p in perm] + [0] * (_MAX_DIMS - ndim)
    total = int(y.size)
    if total:
        blocks, threads = elementwise_config(total)
        _transpose_kernel[blocks, threads](y.reshape(-1), x.reshape(-1), total, size, *out_dims,
                                           *out_strides)
