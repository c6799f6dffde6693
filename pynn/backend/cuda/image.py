"""The geometric image ops (csrc/image.c) on the device: affine resampling, resizing, flips,
crops and the random per-image parameters of the augmentation layers.

One thread per output pixel (image, row, column) with its channels, as the C kernels; the
coordinates and interpolation weights in float64, in csrc/image.c's order.  Nothing is summed
across threads, so a run repeats bitwise.  The parameters draw the counter-based uniforms of
random.py, so they are the C kernel's and the reference's numbers (up to the cos/sin of the
device's libm in a rotation's last bit).
"""
import math

import numpy as np
from numba import cuda, float32

from . import random as rnd
from .runtime import check_float32, check_shape, elementwise_config

IMAGE_PARAMS = 8
_INTERP = {"bilinear": 0, "nearest": 1}
_FILL = {"reflect": 0, "wrap": 1, "constant": 2, "nearest": 3}
_KINDS = {"rotation": 0, "zoom": 1, "translation": 2, "flip": 3, "crop": 4}


def _choice(table, value, what, where):
    if value not in table:
        raise ValueError(f"{where}: expected {what} in {tuple(table)}, received {value!r}")
    return table[value]


@cuda.jit(device=True, inline=True)
def _extend(k, n, fill_mode):
    """The index fill_mode reads for integer position k, or -1 (constant: the fill)."""
    if k >= 0 and k < n:
        return k
    if fill_mode == 0:                     # reflect: period 2n
        m = k % (2 * n)
        if m < 0:
            m += 2 * n
        return m if m < n else 2 * n - 1 - m
    if fill_mode == 1:                     # wrap
        m = k % n
        return m + n if m < 0 else m
    if fill_mode == 3:                     # nearest
        return 0 if k < 0 else n - 1
    return -1


@cuda.jit(device=True, inline=True)
def _tame(v, n):
    lim = 4.0 * n + 4.0
    if v != v:
        return -lim
    return min(max(v, -lim), lim)


@cuda.jit(device=True, inline=True)
def _read(x, b, r, q, ch, fv):
    if r < 0 or q < 0:
        return fv
    return float(x[b, r, q, ch])


@cuda.jit(device=True, inline=True)
def _blend4(y, x, b, i, j, c, r0, r1, q0, q1, fy, fx, fv):
    """y[b, i, j, :] = the bilinear blend, in double, of rows r0, r1 and columns q0, q1 of
    image b with fractions (fy, fx); an index -1 (outside the image) reads fv.  The twin of
    csrc/image.c's blend4."""
    w00 = (1.0 - fy) * (1.0 - fx)
    w01 = (1.0 - fy) * fx
    w10 = fy * (1.0 - fx)
    w11 = fy * fx
    for ch in range(c):
        s = w00 * _read(x, b, r0, q0, ch, fv) + w01 * _read(x, b, r0, q1, ch, fv) + \
            w10 * _read(x, b, r1, q0, ch, fv) + w11 * _read(x, b, r1, q1, ch, fv)
        y[b, i, j, ch] = float32(s)


@cuda.jit
def _affine_kernel(y, x, params, pixels, h, w, c, interp, fill_mode, fill_value):
    p = cuda.grid(1)
    if p < pixels:
        b = p // (h * w)
        i = (p // w) % h
        j = p % w
        fi = float(i)
        fj = float(j)
        k = float(params[b, 6]) * fj + float(params[b, 7]) * fi + 1.0
        xs = _tame((float(params[b, 0]) * fj + float(params[b, 1]) * fi + float(params[b, 2])) / k, w)
        ys = _tame((float(params[b, 3]) * fj + float(params[b, 4]) * fi + float(params[b, 5])) / k, h)
        fv = float(fill_value)
        if interp == 1:
            r = _extend(int(math.floor(ys + 0.5)), h, fill_mode)
            q = _extend(int(math.floor(xs + 0.5)), w, fill_mode)
            for ch in range(c):
                y[b, i, j, ch] = float32(_read(x, b, r, q, ch, fv))
        else:
            y0 = math.floor(ys)
            x0 = math.floor(xs)
            _blend4(y, x, b, i, j, c, _extend(int(y0), h, fill_mode),
                    _extend(int(y0) + 1, h, fill_mode), _extend(int(x0), w, fill_mode),
                    _extend(int(x0) + 1, w, fill_mode), ys - y0, xs - x0, fv)


@cuda.jit(device=True, inline=True)
def _inside(r, q, h, w):
    return r >= 0 and r < h and q >= 0 and q < w


@cuda.jit
def _resize_kernel(y, x, pixels, h, w, c, oh, ow, top, left, wh, ww, interp, fill_value):
    p = cuda.grid(1)
    if p < pixels:
        b = p // (oh * ow)
        i = (p // ow) % oh
        j = p % ow
        fv = float(fill_value)
        if interp == 1:
            r = int(math.floor((i + 0.5) * float(wh) / float(oh)))
            q = int(math.floor((j + 0.5) * float(ww) / float(ow)))
            r = top + min(r, wh - 1)
            q = left + min(q, ww - 1)
            ok = _inside(r, q, h, w)
            for ch in range(c):
                y[b, i, j, ch] = x[b, r, q, ch] if ok else float32(fv)
        else:
            sy = min(max((i + 0.5) * (float(wh) / float(oh)) - 0.5, 0.0), float(wh - 1))
            sx = min(max((j + 0.5) * (float(ww) / float(ow)) - 0.5, 0.0), float(ww - 1))
            fly = math.floor(sy)
            flx = math.floor(sx)
            fy = sy - fly
            fx = sx - flx
            r0 = int(fly)
            q0 = int(flx)
            r1 = min(r0 + 1, wh - 1) + top
            q1 = min(q0 + 1, ww - 1) + left
            r0 += top
            q0 += left
            # window positions outside the image (a pad) read the fill value
            _blend4(y, x, b, i, j, c, r0 if 0 <= r0 < h else -1, r1 if 0 <= r1 < h else -1,
                    q0 if 0 <= q0 < w else -1, q1 if 0 <= q1 < w else -1, fy, fx, fv)


@cuda.jit
def _flip_kernel(y, x, params, use_params, pixels, h, w, c, horizontal, vertical):
    p = cuda.grid(1)
    if p < pixels:
        b = p // (h * w)
        i = (p // w) % h
        j = p % w
        flip = use_params == 0 or params[b, 0] != 0
        r = h - 1 - i if flip and vertical else i
        q = w - 1 - j if flip and horizontal else j
        for ch in range(c):
            y[b, i, j, ch] = x[b, r, q, ch]


@cuda.jit
def _crop_kernel(y, x, params, use_params, pixels, oh, ow, c, top, left):
    p = cuda.grid(1)
    if p < pixels:
        b = p // (oh * ow)
        i = (p // ow) % oh
        j = p % ow
        t = int(params[b, 0]) if use_params else top
        l = int(params[b, 1]) if use_params else left
        for ch in range(c):
            y[b, i, j, ch] = x[b, t + i, l + j, ch]


@cuda.jit
def _random_kernel(params, n, h, w, oh, ow, kind, r0, r1, r2, r3, r4, key):
    b = cuda.grid(1)
    if b < n:
        u0 = float(rnd.uniform(key, b * 8))
        u1 = float(rnd.uniform(key, b * 8 + 1))
        for j in range(8):
            params[b, j] = 0.0
        if kind == 0:
            lo = r0 * 360.0
            hi = r1 * 360.0
            angle = (lo + u0 * (hi - lo)) * (math.pi / 180.0)
            cs = math.cos(angle)
            sn = math.sin(angle)
            cx = 0.5 * (w - 1)
            cy = 0.5 * (h - 1)
            params[b, 0] = cs
            params[b, 1] = -sn
            params[b, 3] = sn
            params[b, 4] = cs
            params[b, 2] = cx - cx * cs - cy * (-sn)
            params[b, 5] = cy - cx * sn - cy * cs
        elif kind == 1:
            zh = (1.0 + r0) + u0 * ((1.0 + r1) - (1.0 + r0))
            zw = zh
            if r4 != 0.0:
                zw = (1.0 + r2) + u1 * ((1.0 + r3) - (1.0 + r2))
            params[b, 0] = zw
            params[b, 2] = 0.5 * (w - 1) * (1.0 - zw)
            params[b, 4] = zh
            params[b, 5] = 0.5 * (h - 1) * (1.0 - zh)
        elif kind == 2:
            params[b, 0] = 1.0
            params[b, 4] = 1.0
            params[b, 5] = -((r0 + u0 * (r1 - r0)) * h)
            params[b, 2] = -((r2 + u1 * (r3 - r2)) * w)
        elif kind == 3:
            params[b, 0] = 1.0 if u0 <= 0.5 else 0.0
        else:
            params[b, 0] = min(math.floor(u0 * (h - oh + 1)), h - oh)
            params[b, 1] = min(math.floor(u1 * (w - ow + 1)), w - ow)


def _launch(kernel, n, *args):
    if n > 0:
        blocks, threads = elementwise_config(n)
        kernel[blocks, threads](*args)


def _params(params, n, where):
    if params is None:
        return cuda.device_array((1, IMAGE_PARAMS), dtype=np.float32), 0
    check_shape(where, "params", params, (n, IMAGE_PARAMS))
    check_float32(where, params=params)
    return params, 1


def affine_transform(x, params, interpolation, fill_mode, fill_value, y):
    where = "affine_transform"
    n, h, w, c = (int(d) for d in x.shape)
    check_shape(where, "y", y, x.shape)
    check_shape(where, "params", params, (n, IMAGE_PARAMS))
    check_float32(where, x=x, params=params, y=y)
    interp = _choice(_INTERP, interpolation, "interpolation", where)
    fill = _choice(_FILL, fill_mode, "fill_mode", where)
    if c:
        _launch(_affine_kernel, n * h * w, y, x, params, n * h * w, h, w, c, interp, fill,
                np.float32(fill_value))


def resize(x, window, interpolation, fill_value, y):
    where = "resize"
    n, h, w, c = (int(d) for d in x.shape)
    oh, ow = int(y.shape[1]), int(y.shape[2])
    check_shape(where, "y", y, (n, oh, ow, c))
    check_float32(where, x=x, y=y)
    top, left, wh, ww = (int(v) for v in window)
    if wh < 1 or ww < 1:
        raise ValueError(f"{where}: expected a window of positive size, received {window}")
    interp = _choice(_INTERP, interpolation, "interpolation", where)
    if c:
        _launch(_resize_kernel, n * oh * ow, y, x, n * oh * ow, h, w, c, oh, ow, top, left, wh,
                ww, interp, np.float32(fill_value))


def flip(x, params, horizontal, vertical, y):
    where = "flip"
    n, h, w, c = (int(d) for d in x.shape)
    check_shape(where, "y", y, x.shape)
    check_float32(where, x=x, y=y)
    p, use = _params(params, n, where)
    if c:
        _launch(_flip_kernel, n * h * w, y, x, p, use, n * h * w, h, w, c, int(bool(horizontal)),
                int(bool(vertical)))


def crop(x, params, top, left, y):
    where = "crop"
    n, h, w, c = (int(d) for d in x.shape)
    oh, ow = int(y.shape[1]), int(y.shape[2])
    check_shape(where, "y", y, (n, oh, ow, c))
    check_float32(where, x=x, y=y)
    p, use = _params(params, n, where)
    if use:
        host = p.copy_to_host()
        ok = (host[:, 0] >= 0) & (host[:, 0] <= h - oh) & (host[:, 1] >= 0) & \
            (host[:, 1] <= w - ow) & (host[:, 0] == np.floor(host[:, 0])) & \
            (host[:, 1] == np.floor(host[:, 1]))
        if not ok.all():
            raise ValueError(f"{where}: an offset puts the window outside the image")
    elif not (0 <= top <= h - oh and 0 <= left <= w - ow):
        raise ValueError(f"{where}: offsets ({top}, {left}) put the window outside the image")
    if c:
        _launch(_crop_kernel, n * oh * ow, y, x, p, use, n * oh * ow, oh, ow, c, int(top),
                int(left))


def image_random(kind, seed, counter, h, w, out_hw, ranges, params):
    where = "image_random"
    k = _choice(_KINDS, kind, "kind", where)
    n = int(params.shape[0])
    check_shape(where, "params", params, (n, IMAGE_PARAMS))
    check_float32(where, params=params)
    r = [float(v) for v in ranges]
    if len(r) != 5:
        raise ValueError(f"{where}: expected 5 ranges, received {len(r)}")
    oh, ow = (int(v) for v in out_hw)
    _launch(_random_kernel, n, params, n, int(h), int(w), oh, ow, k, *r,
            rnd.stream_key(seed, counter))
