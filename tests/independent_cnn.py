"""An independent float64 implementation of small CNNs' forward pass, for checking
pynn's backpropagation through convolution, pooling and flattening end to end.

Written from Keras's documented semantics, sharing no code with pynn (not even its
padding arithmetic): every layer loops over output positions and slices explicit
windows of a padded copy of the input.  Gradients come from central finite
differences of the float64 loss (independent.gradients' approach), so no backward
pass is involved.

A network is a list of layer specs:
  ("conv", filters, (kh, kw), (sh, sw), padding, activation)   weights: kernel, bias
  ("maxpool", (ph, pw), (sh, sw), padding)
  ("avgpool", (ph, pw), (sh, sw), padding)
  ("gap",)                                                     global average pooling
  ("batchnorm", epsilon)                                       training mode; weights: gamma, beta
  ("flatten",)
  ("dense", units, activation)                                 weights: kernel, bias
"""
import math

import numpy as np

import independent as ind


def same_padding(size, window, stride):
    """TensorFlow's documented SAME rule: out = ceil(size / stride), padding split
    with the odd one at the end."""
    out = -(-size // stride)
    needed = max(0, (out - 1) * stride + window - size)
    return out, needed // 2, needed - needed // 2


def geometry(size, window, stride, padding):
    if padding == "same":
        return same_padding(size, window, stride)
    return (size - window) // stride + 1, 0, 0


def padded(x, windows, strides, padding, fill):
    """x (n, h, w, c) with TF's padding around it, and the output size."""
    (oh, top, bottom), (ow, left, right) = (geometry(x.shape[1 + i], windows[i], strides[i], padding)
                                            for i in range(2))
    xp = np.full((x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3]),
                 fill, dtype=np.float64)
    valid = np.zeros(xp.shape[1:3], dtype=bool)
    xp[:, top:top + x.shape[1], left:left + x.shape[2], :] = x
    valid[top:top + x.shape[1], left:left + x.shape[2]] = True
    return xp, valid, oh, ow


def conv(x, kernel, bias, strides, padding, act):
    kh, kw, _, f = kernel.shape
    xp, _, oh, ow = padded(x, (kh, kw), strides, padding, 0.0)
    out = np.empty((x.shape[0], oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw, :]
            out[:, i, j, :] = np.tensordot(window, kernel, axes=([1, 2, 3], [0, 1, 2])) + bias
    return ind.activation(act, out)


def pool(x, size, strides, padding, kind):
    xp, valid, oh, ow = padded(x, size, strides, padding, -math.inf if kind == "max" else 0.0)
    out = np.empty((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            rows = slice(i * strides[0], i * strides[0] + size[0])
            cols = slice(j * strides[1], j * strides[1] + size[1])
            window = xp[:, rows, cols, :]
            if kind == "max":
                out[:, i, j, :] = window.max(axis=(1, 2))
            else:   # TF averages over the real (unpadded) positions only
                out[:, i, j, :] = window.sum(axis=(1, 2)) / valid[rows, cols].sum()
    return out


def forward(spec, weights, x):
    a, k = x, 0
    for layer in spec:
        kind = layer[0]
        if kind == "conv":
            a = conv(a, weights[k], weights[k + 1], layer[3], layer[4], layer[5])
            k += 2
        elif kind in ("maxpool", "avgpool"):
            a = pool(a, layer[1], layer[2], layer[3], kind[:3])
        elif kind == "gap":
            a = a.mean(axis=(1, 2))
        elif kind == "batchnorm":
            mean = a.mean(axis=tuple(range(a.ndim - 1)))
            var = ((a - mean) ** 2).mean(axis=tuple(range(a.ndim - 1)))
            a = (a - mean) / np.sqrt(var + layer[1]) * weights[k] + weights[k + 1]
            k += 2
        elif kind == "flatten":
            a = a.reshape(a.shape[0], -1)
        elif kind == "dense":
            a = ind.activation(layer[2], a @ weights[k] + weights[k + 1])
            k += 2
        else:
            raise ValueError(kind)
    return a


def loss_of(spec, weights, x, target, kind, from_logits=False):
    return ind.loss(kind, forward(spec, weights, x), target, from_logits)


def gradients(spec, weights, x, target, kind, h=1e-6):
    """d loss / d weight for every weight, by central differences in float64."""
    grads = []
    for w in weights:
        g = np.zeros_like(w)
        flat, gflat = w.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = loss_of(spec, weights, x, target, kind)
            flat[i] = old - h
            down = loss_of(spec, weights, x, target, kind)
            flat[i] = old
            gflat[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads
