"""The pixel preprocessing kernels on the device (csrc/pynn.h, "pixel preprocessing";
reference.py's channel_affine, normalize, random_contrast, random_brightness).

The affine maps are one thread per element; the random layers draw each image's uniform
with random.uniform(key, image index), the stream of csrc/pynn.h, so the factors are those
of the C kernels and the reference (up to the FMA the GPU may contract lo + u (hi - lo)
into).  RandomContrast runs one thread per (image, channel): it sums the channel over the
image's positions in order, in float64 as the C kernel does, then writes them.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from .random import stream_key, uniform
from .runtime import F0, F1, as_1d, check_float32, check_shape, elementwise_config


@cuda.jit
def _affine_kernel(y, x, scale, offset, has_offset, n, c, inner):
    e = cuda.grid(1)
    if e < n:
        k = (e // inner) % c
        b = offset[k] if has_offset else F0
        y[e] = x[e] * scale[k] + b


@cuda.jit
def _normalize_kernel(y, x, mean, variance, has_mean, n, c, inner, invert, epsilon):
    e = cuda.grid(1)
    if e < n:
        k = (e // inner) % c
        sd = math.sqrt(variance[k])
        d = sd if sd > epsilon else epsilon
        m = mean[k] if has_mean else F0
        if invert:
            y[e] = m + x[e] * d
        else:
            y[e] = (x[e] - m) / d


@cuda.jit(device=True, inline=True)
def _channel_mean(x, img, hw, c, k):
    s = float64(0.0)
    base = img * hw * c + k
    for p in range(hw):
        s += float64(x[base + p * c])
    return float32(s / float64(hw))


@cuda.jit
def _contrast_kernel(y, factors, x, n, hw, c, key, lo, hi, vmin, vmax):
    t = cuda.grid(1)
    if t < n * c:
        img = t // c
        k = t % c
        f = lo + uniform(key, img) * (hi - lo)
        if k == 0:
            factors[img] = f
        m = _channel_mean(x, img, hw, c, k)
        base = img * hw * c + k
        for p in range(hw):
            v = (x[base + p * c] - m) * f + m
            y[base + p * c] = vmin if v < vmin else (vmax if v > vmax else v)


@cuda.jit
def _contrast_backward_kernel(dx, x, factors, dy, n, hw, c, vmin, vmax):
    t = cuda.grid(1)
    if t < n * c:
        img = t // c
        k = t % c
        f = factors[img]
        m = _channel_mean(x, img, hw, c, k)
        base = img * hw * c + k
        s = float64(0.0)
        for p in range(hw):
            e = base + p * c
            v = (x[e] - m) * f + m
            g = dy[e] if (v >= vmin and v <= vmax) else F0
            dx[e] = g
            s += float64(g)
        shared = float32((1.0 - float64(f)) * s / float64(hw))
        for p in range(hw):
            e = base + p * c
            dx[e] = dx[e] * f + shared


@cuda.jit
def _brightness_kernel(y, mask, has_mask, x, n, per_image, key, lo, hi, vmin, vmax):
    e = cuda.grid(1)
    if e < n:
        img = e // per_image
        delta = (lo + uniform(key, img) * (hi - lo)) * (vmax - vmin)
        v = x[e] + delta
        if has_mask:
            mask[e] = F1 if (v >= vmin and v <= vmax) else F0
        y[e] = vmin if v < vmin else (vmax if v > vmax else v)


def _launch(kernel, n, *args):
    if n:
        blocks, threads = elementwise_config(n)
        kernel[blocks, threads](*args)


def channel_affine(x, scale, offset, c, inner, y):
    where = "channel_affine"
    check_shape(where, "y", y, x.shape)
    check_float32(where, x=x, scale=scale, offset=offset, y=y)
    n = int(x.size)
    if n % (c * inner):
        raise ValueError(f"{where}: {n} values do not split into rows of c={c} x inner={inner}")
    _launch(_affine_kernel, n, as_1d(y), as_1d(x), as_1d(scale),
            as_1d(offset if offset is not None else scale), offset is not None, n, c, inner)


def normalize(x, mean, variance, c, inner, invert, epsilon, y):
    where = "normalize"
    check_shape(where, "y", y, x.shape)
    check_float32(where, x=x, mean=mean, variance=variance, y=y)
    n = int(x.size)
    if n % (c * inner):
        raise ValueError(f"{where}: {n} values do not split into rows of c={c} x inner={inner}")
    _launch(_normalize_kernel, n, as_1d(y), as_1d(x),
            as_1d(mean if mean is not None else variance), as_1d(variance), mean is not None,
            n, c, inner, bool(invert), np.float32(epsilon))


def _images(where, x):
    if x.ndim != 4:
        raise ValueError(f"{where}: expected images (N, H, W, C), received shape {x.shape}")
    n, h, w, c = (int(d) for d in x.shape)
    return n, h * w, c


def random_contrast(x, seed, counter, lower, upper, vmin, vmax, factors, y):
    where = "random_contrast"
    n, hw, c = _images(where, x)
    check_shape(where, "y", y, x.shape)
    check_float32(where, x=x, factors=factors, y=y)
    if int(factors.size) != n:
        raise ValueError(f"{where}: expected factors of {n} values, received {factors.size}")
    lo, hi = np.float32(1.0 - float(lower)), np.float32(1.0 + float(upper))
    _launch(_contrast_kernel, n * c, as_1d(y), as_1d(factors), as_1d(x), n, hw, c,
            stream_key(seed, counter), lo, hi, np.float32(vmin), np.float32(vmax))


def random_contrast_backward(x, factors, dy, vmin, vmax, dx):
    where = "random_contrast_backward"
    n, hw, c = _images(where, x)
    check_shape(where, "dy", dy, x.shape)
    check_shape(where, "dx", dx, x.shape)
    check_float32(where, x=x, factors=factors, dy=dy, dx=dx)
    _launch(_contrast_backward_kernel, n * c, as_1d(dx), as_1d(x), as_1d(factors), as_1d(dy),
            n, hw, c, np.float32(vmin), np.float32(vmax))


def random_brightness(x, seed, counter, lower, upper, vmin, vmax, mask, y):
    where = "random_brightness"
    check_shape(where, "y", y, x.shape)
    if mask is not None:
        check_shape(where, "mask", mask, x.shape)
    check_float32(where, x=x, mask=mask, y=y)
    n = int(x.size)
    per_image = n // int(x.shape[0]) if x.shape[0] else 0
    _launch(_brightness_kernel, n, as_1d(y), as_1d(mask if mask is not None else y),
            mask is not None, as_1d(x), n, per_image, stream_key(seed, counter),
            np.float32(lower), np.float32(upper), np.float32(vmin), np.float32(vmax))
