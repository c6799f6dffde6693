"""Conv2DTranspose, the upsampling backward and the pad/crop window copy on the device
(csrc/pynn.h, "transposed convolution, upsampling, padding, cropping"; issue 16, part C).

The transposed convolution is the convolution of convolution.py run backwards, as the C
path does: with the kernel w (KH, KW, F, C) read as (KH*KW*F, C),
  forward   cols (N*H*W, KH*KW*F) = x w^T (the SGEMM), z = col2im(cols) over the output
            (one thread per output element gathers its windows: no atomics), + bias,
            y = act(z);
  backward  dz = act'(z) dy and db by the fused column-sum kernel; cols = im2col(dz);
            dx = cols w and dw = cols^T x (the SGEMM).
cols lives in the op's `work` array (conv2d_transpose_work_size floats).

The upsampling backward has one thread per input element, which sums the output
elements that read it (output rows, then columns: a fixed order, no atomics).  The window
copy has one thread per output element.
"""
import math

import numpy as np
from numba import cuda

from . import convolution, elementwise, gemm
from .elementwise import activation_id
from .runtime import check_float32, check_shape, elementwise_config, same_array

_INTERP = {"bilinear": 0, "nearest": 1}


def conv2d_transpose_work_size(x_shape, w_shape, out_hw):
    """cols: one row of KH*KW*F per input position."""
    n, h, w, _ = x_shape
    kh, kw, f, _ = w_shape
    return max(int(n) * int(h) * int(w) * int(kh) * int(kw) * int(f), 1)


@cuda.jit
def _bias_kernel(z, b, total, f):
    e = cuda.grid(1)
    if e < total:
        z[e] += b[e % f]


def _shapes(where, x, w, z, work):
    if x.ndim != 4 or w.ndim != 4 or w.shape[3] != x.shape[3]:
        raise ValueError(f"{where}: expected x (N, H, W, C) and w (KH, KW, F, C), received "
                         f"shapes {tuple(x.shape)} and {tuple(w.shape)}")
    kh, kw, f, c = (int(d) for d in w.shape)
    n = int(x.shape[0])
    check_shape(where, "z", z, (n, int(z.shape[1]), int(z.shape[2]), f))
    need = conv2d_transpose_work_size(x.shape, w.shape, z.shape[1:3])
    if work.ndim != 1 or work.shape[0] < need:
        raise ValueError(f"{where}: expected work of at least {need} floats, received "
                         f"{tuple(work.shape)}")
    check_float32(where, x=x, w=w, z=z, work=work)
    return kh, kw, f, c


def conv2d_transpose_forward(x, w, b, strides, padding, activation, alpha, work, z, y,
                             sm_count):
    where = "conv2d_transpose_forward"
    kh, kw, f, c = _shapes(where, x, w, z, work)
    check_shape(where, "y", y, z.shape)
    n, h, wd = (int(d) for d in x.shape[:3])
    k = kh * kw * f
    act_id = activation_id(where, activation)
    if n * h * wd and k:
        cols = work[:n * h * wd * k].reshape(n * h * wd, k)
        gemm.matmul(x.reshape(n * h * wd, c), w.reshape(k, c), False, True, cols, sm_count)
        convolution.col2im(z, cols, (kh, kw), strides, padding, (h, wd))
    elif z.size:
        elementwise.fill(z, 0.0)
    total = int(z.size)
    if b is not None and total:
        check_shape(where, "bias", b, (f,))
        blocks, threads = elementwise_config(total)
        _bias_kernel[blocks, threads](z.reshape(-1), b, total, f)
    if total and not (act_id == 0 and same_array(y, z)):
        elementwise.activation_forward(z.reshape(-1, f), activation, alpha, y.reshape(-1, f))


def conv2d_transpose_backward(x, w, z, y, dy, strides, padding, activation, alpha, work, dw,
                              db, dx, sm_count):
    where = "conv2d_transpose_backward"
    kh, kw, f, c = _shapes(where, x, w, z, work)
    for name, arr in (("y", y), ("dy", dy)):
        check_shape(where, name, arr, z.shape)
    if dw is not None:
        check_shape(where, "dw", dw, w.shape)
    if dx is not None:
        check_shape(where, "dx", dx, x.shape)
    n, h, wd = (int(d) for d in x.shape[:3])
    m = int(z.size) // f if f else 0
    k = kh * kw * f
    # dz (in dy) and db: dense_backward's fused activation-backward + column sums
    gemm.dense_backward(None, None, z.reshape(m, f), y.reshape(m, f), dy.reshape(m, f),
                        activation, alpha, None, db, None, sm_count)
    rows = n * h * wd
    if rows == 0 or k == 0:
        if dw is not None and dw.size:
            elementwise.fill(dw, 0.0)
        return
    cols = work[:rows * k].reshape(rows, k)
    convolution.im2col(cols, dy, (kh, kw), strides, padding, (h, wd))
    if dw is not None:
        gemm.matmul(cols, x.reshape(rows, c), True, False, dw.reshape(k, c), sm_count)
    if dx is not None:
        gemm.matmul(cols, w.reshape(k, c), False, False, dx.reshape(rows, c), sm_count)


@cuda.jit(device=True, inline=True)
def _up_weight(i, r, size, factor, interp):
    """The weight of input r in output i of an upsampling by `factor` (csrc/upsampling.c)."""
    if interp == 1:
        return 1.0 if i // factor == r else 0.0
    s = (i + 0.5) * (size / (size * factor)) - 0.5
    if s < 0.0:
        s = 0.0
    if s > size - 1.0:
        s = size - 1.0
    i0 = int(math.floor(s))
    i1 = i0 + 1 if i0 + 1 < size else size - 1
    t = s - i0
    wgt = 0.0
    if i0 == r:
        wgt += 1.0 - t
    if i1 == r:
        wgt += t
    return np.float32(wgt)


@cuda.jit
def _upsample_backward_kernel(dx, dy, total, h, w, c, fh, fw, interp):
    e = cuda.grid(1)
    if e < total:
        ch = e % c
        p = e // c
        q = p % w
        r = (p // w) % h
        img = p // (w * h)
        oh, ow = h * fh, w * fw
        if interp == 1:
            i_lo, i_hi, j_lo, j_hi = r * fh, (r + 1) * fh, q * fw, (q + 1) * fw
        else:
            i_lo = (r - 1) * fh if r > 0 else 0
            i_hi = min((r + 2) * fh, oh)
            j_lo = (q - 1) * fw if q > 0 else 0
            j_hi = min((q + 2) * fw, ow)
        acc = np.float32(0.0)
        for i in range(i_lo, i_hi):
            wr = _up_weight(i, r, h, fh, interp)
            if wr == 0.0:
                continue
            for j in range(j_lo, j_hi):
                wc = _up_weight(j, q, w, fw, interp)
                if wc == 0.0:
                    continue
                acc += np.float32(wr * wc) * dy[img, i, j, ch]
        dx[img, r, q, ch] = acc


def upsample2d_backward(dy, size, interpolation, dx):
    where = "upsample2d_backward"
    if interpolation not in _INTERP:
        raise ValueError(f"{where}: expected interpolation in {tuple(_INTERP)}, received "
                         f"{interpolation!r}")
    fh, fw = (int(s) for s in size)
    if fh < 1 or fw < 1:
        raise ValueError(f"{where}: expected size of positive integers, received {size}")
    n, h, w, c = (int(d) for d in dx.shape)
    check_shape(where, "dy", dy, (n, h * fh, w * fw, c))
    check_float32(where, dy=dy, dx=dx)
    total = n * h * w * c
    if total:
        blocks, threads = elementwise_config(total)
        _upsample_backward_kernel[blocks, threads](dx, dy, total, h, w, c, fh, fw,
                                                   _INTERP[interpolation])


@cuda.jit
def _pad_crop_kernel(y, x, total, h, w, oh, ow, c, top, left):
    e = cuda.grid(1)
    if e < total:
        ch = e % c
        p = e // c
        j = p % ow
        i = (p // ow) % oh
        img = p // (ow * oh)
        r, q = i - top, j - left
        if 0 <= r < h and 0 <= q < w:
            y[img, i, j, ch] = x[img, r, q, ch]
        else:
            y[img, i, j, ch] = 0.0


def pad_crop(x, top, left, y):
    where = "pad_crop"
    n, h, w, c = (int(d) for d in x.shape)
    oh, ow = int(y.shape[1]), int(y.shape[2])
    check_shape(where, "y", y, (n, oh, ow, c))
    check_float32(where, x=x, y=y)
    total = n * oh * ow * c
    if total:
        blocks, threads = elementwise_config(total)
        _pad_crop_kernel[blocks, threads](y, x, total, h, w, oh, ow, c, int(top), int(left))


@cuda.jit
def _dilate_kernel(dst, src, total, kw, cols, dh, dw, ew, inverse):
    e = cuda.grid(1)
    if e < total:           # one thread per element of the small kernel
        col = e % cols
        tap = e // cols
        a, b = tap // kw, tap % kw
        wide = (a * dh * ew + b * dw) * cols + col
        if inverse:
            dst[e] = src[wide]
        else:
            dst[wide] = src[e]


def kernel_dilate(src, dilation, inverse, dst):
    where = "kernel_dilate"
    dh, dw = (int(d) for d in dilation)
    small = dst if inverse else src
    wide = src if inverse else dst
    kh, kw = int(small.shape[0]), int(small.shape[1])
    cols = int(small.size) // max(kh * kw, 1)
    ew = (kw - 1) * dw + 1
    check_shape(where, "dilated kernel", wide,
                ((kh - 1) * dh + 1, ew) + tuple(int(d) for d in small.shape[2:]))
    check_float32(where, src=src, dst=dst)
    if not inverse and wide.size:
        elementwise.fill(wide, 0.0)
    total = int(small.size)
    if total:
        blocks, threads = elementwise_config(total)
        _dilate_kernel[blocks, threads](dst.reshape(-1), src.reshape(-1), total, kw, cols, dh,
                                        dw, ew, bool(inverse))
