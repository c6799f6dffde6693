"""Layer / group normalization, unit normalization and Gaussian noise on the device
(engineer E; the formulas are csrc/pynn.h's, "normalization and noise layers").

One thread per (row, group) sums its s * k values in float64, in element order, as the C
kernel and the reference do; the weight gradients are column sums, one thread per column
adding the rows in order.  Nothing depends on the launch shape, so results repeat bitwise.
The Gaussian noise is Box-Muller on the counter-based uniforms of random.py, in float64,
rounded to float32: the numbers of the C kernel and of reference.random_normal.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from .random import stream_key, uniform
from .runtime import as_1d, check_float32, check_shape, elementwise_config

_TWO_PI = 6.283185307179586
_MIN_SQUARE = 1e-24      # reference.UNIT_NORM_MIN_SQUARE


@cuda.jit
def _gn_forward_kernel(y, mean, inv_std, x, gamma, beta, n, s, groups, k, epsilon, rms,
                       has_gamma, has_beta):
    t = cuda.grid(1)
    if t < n * groups:
        b = t // groups
        g = t - b * groups
        c = groups * k
        base = b * s * c + g * k
        m = float64(s * k)
        total = float64(0.0)
        for i in range(s):
            for j in range(k):
                total += float64(x[base + i * c + j])
        mu = total / m
        sq = float64(0.0)
        for i in range(s):
            for j in range(k):
                d = float64(x[base + i * c + j]) - mu
                sq += d * d
        var32 = float32(sq / m)
        mu32 = float32(mu)
        istd = float32(1.0 / math.sqrt(float64(var32) + float64(epsilon)))
        mean[t] = mu32
        inv_std[t] = istd
        for i in range(s):
            for j in range(k):
                ch = g * k + j
                gm = gamma[ch] if has_gamma else float32(1.0)
                e = base + i * c + j
                if rms:
                    v = x[e] * istd * gm
                    y[e] = v + beta[ch] if has_beta else v
                else:
                    inv = istd * gm
                    bt = beta[ch] if has_beta else float32(0.0)
                    y[e] = x[e] * inv + (bt - mu32 * inv)


@cuda.jit
def _gn_param_grad_kernel(dgamma, dbeta, x, mean, inv_std, dy, rows, s, groups, k, rms,
                          want_gamma, want_beta):
    j = cuda.grid(1)
    c = groups * k
    if j < c:
        sg = float64(0.0)
        sb = float64(0.0)
        for r in range(rows):
            st = (r // s) * groups + j // k
            xv = float64(x[r * c + j])
            if rms:
                xh = xv * float64(inv_std[st])
            else:
                xh = (xv - float64(mean[st])) * float64(inv_std[st])
            g = float64(dy[r * c + j])
            sg += g * xh
            sb += g
        if want_gamma:
            dgamma[j] = float32(sg)
        if want_beta:
            dbeta[j] = float32(sb)


@cuda.jit
def _gn_dx_kernel(dx, x, gamma, mean, inv_std, dy, n, s, groups, k, rms, has_gamma):
    t = cuda.grid(1)
    if t < n * groups:
        b = t // groups
        g = t - b * groups
        c = groups * k
        base = b * s * c + g * k
        m = float64(s * k)
        mu = float64(mean[t])
        istd = float64(inv_std[t])
        s1 = float64(0.0)
        s2 = float64(0.0)
        for i in range(s):
            for j in range(k):
                e = base + i * c + j
                gm = float64(gamma[g * k + j]) if has_gamma else float64(1.0)
                gd = float64(dy[e]) * gm
                xv = float64(x[e])
                s1 += gd
                if rms:
                    s2 += gd * xv
                else:
                    s2 += gd * ((xv - mu) * istd)
        for i in range(s):
            for j in range(k):
                e = base + i * c + j
                gm = float64(gamma[g * k + j]) if has_gamma else float64(1.0)
                gd = float64(dy[e]) * gm
                xv = float64(x[e])
                if rms:
                    v = gd * istd - s2 * istd * istd * istd * (xv - mu) / m
                else:
                    v = istd * (gd - s1 / m - (xv - mu) * istd * s2 / m)
                dx[e] = float32(v)


@cuda.jit
def _unit_forward_kernel(y, inv_norm, x, rows, cols):
    r = cuda.grid(1)
    if r < rows:
        ss = float64(0.0)
        for j in range(cols):
            v = float64(x[r * cols + j])
            ss += v * v
        ss = float64(float32(ss))
        inv = float32(1.0 / math.sqrt(max(ss, _MIN_SQUARE)))
        inv_norm[r] = inv if ss > _MIN_SQUARE else -inv
        for j in range(cols):
            y[r * cols + j] = x[r * cols + j] * inv


@cuda.jit
def _unit_backward_kernel(dx, x, inv_norm, dy, rows, cols):
    r = cuda.grid(1)
    if r < rows:
        clamped = inv_norm[r] < float32(0.0)
        inv = abs(float64(inv_norm[r]))
        dot = float64(0.0)
        if not clamped:
            for j in range(cols):
                dot += float64(dy[r * cols + j]) * float64(x[r * cols + j])
        for j in range(cols):
            e = r * cols + j
            dx[e] = float32(inv * float64(dy[e]) - inv * inv * inv * float64(x[e]) * dot)


@cuda.jit
def _gaussian_kernel(y, noise, x, n, key, mode, scale, has_noise):
    e = cuda.grid(1)
    if e < n:
        u1 = float64(uniform(key, 2 * e))
        u2 = float64(uniform(key, 2 * e + 1))
        z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(_TWO_PI * u2)
        if mode == 0:
            v = float32(scale * z)
            y[e] = x[e] + v
        else:
            v = float32(1.0 + scale * z)
            y[e] = x[e] * v
        if has_noise:
            noise[e] = v


def _rows(where, n_x, per):
    if per < 1 or n_x % per != 0:
        raise ValueError(f"{where}: {n_x} values do not split into rows of {per}")
    return n_x // per


def _sized(where, name, arr, size):
    if arr is not None and int(arr.size) != size:
        raise ValueError(f"{where}: expected {name} of {size} values, received {int(arr.size)}")


def group_norm_forward(x, gamma, beta, s, groups, k, epsilon, rms, mean, inv_std, y):
    where = "group_norm_forward"
    check_shape(where, "y", y, x.shape)
    check_float32(where, x=x, y=y, mean=mean, inv_std=inv_std)
    n = _rows(where, int(x.size), s * groups * k)
    for name, arr, size in (("mean", mean, n * groups), ("inv_std", inv_std, n * groups),
                            ("gamma", gamma, groups * k), ("beta", beta, groups * k)):
        _sized(where, name, arr, size)
    if n == 0:
        return
    x1 = as_1d(x)
    blocks, threads = elementwise_config(n * groups)
    _gn_forward_kernel[blocks, threads](
        as_1d(y), as_1d(mean), as_1d(inv_std), x1,
        x1 if gamma is None else as_1d(gamma), x1 if beta is None else as_1d(beta),
        n, s, groups, k, np.float32(epsilon), 1 if rms else 0,
        gamma is not None, beta is not None)


def group_norm_backward(x, gamma, mean, inv_std, dy, s, groups, k, rms, dgamma, dbeta, dx):
    where = "group_norm_backward"
    check_shape(where, "dy", dy, x.shape)
    check_float32(where, x=x, dy=dy, mean=mean, inv_std=inv_std)
    n = _rows(where, int(x.size), s * groups * k)
    for name, arr, size in (("mean", mean, n * groups), ("inv_std", inv_std, n * groups),
                            ("gamma", gamma, groups * k), ("dgamma", dgamma, groups * k),
                            ("dbeta", dbeta, groups * k)):
        _sized(where, name, arr, size)
    x1, dy1 = as_1d(x), as_1d(dy)
    c = groups * k
    if dgamma is not None or dbeta is not None:   # before dx: dx may be dy
        blocks, threads = elementwise_config(c)
        _gn_param_grad_kernel[blocks, threads](
            x1 if dgamma is None else as_1d(dgamma), x1 if dbeta is None else as_1d(dbeta),
            x1, as_1d(mean), as_1d(inv_std), dy1, n * s, s, groups, k, 1 if rms else 0,
            dgamma is not None, dbeta is not None)
    if dx is not None and n > 0:
        check_shape(where, "dx", dx, x.shape)
        blocks, threads = elementwise_config(n * groups)
        _gn_dx_kernel[blocks, threads](as_1d(dx), x1, x1 if gamma is None else as_1d(gamma),
                                       as_1d(mean), as_1d(inv_std), dy1, n, s, groups, k,
                                       1 if rms else 0, gamma is not None)


def unit_norm_forward(x, cols, inv_norm, y):
    where = "unit_norm_forward"
    check_shape(where, "y", y, x.shape)
    check_float32(where, x=x, y=y, inv_norm=inv_norm)
    rows = _rows(where, int(x.size), cols)
    _sized(where, "inv_norm", inv_norm, rows)
    if rows:
        blocks, threads = elementwise_config(rows)
        _unit_forward_kernel[blocks, threads](as_1d(y), as_1d(inv_norm), as_1d(x), rows, cols)


def unit_norm_backward(x, inv_norm, dy, cols, dx):
    where = "unit_norm_backward"
    check_shape(where, "dy", dy, x.shape)
    check_shape(where, "dx", dx, x.shape)
    check_float32(where, x=x, dy=dy, dx=dx, inv_norm=inv_norm)
    rows = _rows(where, int(x.size), cols)
    _sized(where, "inv_norm", inv_norm, rows)
    if rows:
        blocks, threads = elementwise_config(rows)
        _unit_backward_kernel[blocks, threads](as_1d(dx), as_1d(x), as_1d(inv_norm), as_1d(dy),
                                               rows, cols)


def gaussian_noise(x, seed, counter, mode, scale, noise, y):
    where = "gaussian_noise"
    check_shape(where, "y", y, x.shape)
    if noise is not None:
        check_shape(where, "noise", noise, x.shape)
    check_float32(where, x=x, y=y)
    if mode not in (0, 1) or not (0 <= float(scale) < math.inf):
        raise ValueError(f"{where}: expected mode 0 or 1 and a finite scale >= 0, received "
                         f"mode={mode!r}, scale={scale!r}")
    n = int(x.size)
    if n:
        x1 = as_1d(x)
        blocks, threads = elementwise_config(n)
        _gaussian_kernel[blocks, threads](as_1d(y), x1 if noise is None else as_1d(noise), x1,
                                          n, stream_key(seed, counter), int(mode),
                                          float(scale), noise is not None)
