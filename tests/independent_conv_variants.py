"""Float64 NumPy forwards of the convolution variants (engineer B) for the layer harness,
written from Keras's semantics and sharing no code with pynn: loops over output positions
and taps of an explicitly padded input.

  conv(x, kernel, bias, strides, padding, dilation, groups, act)   NHWC, kernel
      (kh, kw, c / groups, f), output channel o in group o // (f / groups)
  depthwise(x, kernel, bias, ...)   kernel (kh, kw, c, dm): output channel c*dm + m
  separable(x, dk, pk, bias, ...)   depthwise (no bias) then the 1x1 kernel pk
"""
import numpy as np

import independent as ind
from independent_cnn import geometry


def conv(x, kernel, bias, strides, padding, dilation=(1, 1), groups=1, act="linear"):
    kh, kw, cg, f = kernel.shape
    n, h, w, c = x.shape
    ekh, ekw = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    (oh, top, bottom), (ow, left, right) = geometry(h, ekh, strides[0], padding), \
        geometry(w, ekw, strides[1], padding)
    xp = np.zeros((n, h + top + bottom, w + left + right, c))
    xp[:, top:top + h, left:left + w, :] = x
    fg = f // groups
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    pix = xp[:, i * strides[0] + a * dilation[0], j * strides[1] + b * dilation[1], :]
                    for g in range(groups):
                        out[:, i, j, g * fg:(g + 1) * fg] += \
                            pix[:, g * cg:(g + 1) * cg] @ kernel[a, b, :, g * fg:(g + 1) * fg]
    if bias is not None:
        out = out + bias
    return ind.activation(act, out)


def depthwise(x, kernel, bias, strides, padding, dilation=(1, 1), act="linear"):
    kh, kw, c, dm = kernel.shape
    return conv(x, kernel.reshape(kh, kw, 1, c * dm), bias, strides, padding, dilation, c, act)


def separable(x, dk, pk, bias, strides, padding, dilation=(1, 1), act="linear"):
    d = depthwise(x, dk, None, strides, padding, dilation)
    return conv(d, pk, bias, (1, 1), "valid", act=act)


def nchw(fn):
    """fn on NHWC wrapped for NCHW inputs and outputs."""
    def wrapped(x, *args, **kwargs):
        return fn(x.transpose(0, 2, 3, 1), *args, **kwargs).transpose(0, 3, 1, 2)
    return wrapped
