"""Independent float64 forwards of Conv2DTranspose, UpSampling2D, UpSampling1D,
ZeroPadding2D and Cropping2D (issue 16, part C), for the layer harness (test_layers.py).

Written from Keras 3's definitions, sharing no code with pynn: the transposed convolution
is JAX's (keras/src/backend/jax/nn.py conv_transpose): the input dilated by the strides,
padded by Keras's (left, right) (backend_utils.py), convolved with the spatially flipped
kernel; bilinear upsampling is jax.image.resize's (a triangle kernel at half-pixel centres,
its weights normalised over the pixels inside the image).
"""
import numpy as np

import independent as ind


def _pads(k, s, padding, output_padding):
    if padding == "valid":
        extra = max(k, s) - k if output_padding is None else output_padding
        return k - 1, k - 1 + extra
    pad_len = s + k - 2 if output_padding is None else k + k % 2 - 2 + output_padding
    left = min(pad_len // 2 + pad_len % 2, k - 1)
    return left, pad_len - left


def conv_transpose(x, kernel, bias, strides, padding, output_padding, act, dilation=(1, 1)):
    """x (N, H, W, C), kernel (KH, KW, F, C) -> (N, OH, OW, F); a dilation puts zeros
    between the kernel's taps (JAX's rhs_dilation)."""
    if dilation != (1, 1):
        kh, kw = kernel.shape[:2]
        wide = np.zeros(((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1) +
                        kernel.shape[2:])
        wide[::dilation[0], ::dilation[1]] = kernel
        kernel = wide
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    (sh, sw) = strides
    op = output_padding or (None, None)
    (t, b), (l, r) = _pads(kh, sh, padding, op[0]), _pads(kw, sw, padding, op[1])
    dil = np.zeros((n, (h - 1) * sh + 1, (w - 1) * sw + 1, c))
    dil[:, ::sh, ::sw, :] = x
    # negative padding would crop; Keras's never is
    big = np.zeros((n, dil.shape[1] + t + b, dil.shape[2] + l + r, c))
    big[:, t:t + dil.shape[1], l:l + dil.shape[2], :] = dil
    flipped = kernel[::-1, ::-1]                                  # (KH, KW, F, C)
    oh, ow = big.shape[1] - kh + 1, big.shape[2] - kw + 1
    y = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            window = big[:, i:i + kh, j:j + kw, :]                 # (N, KH, KW, C)
            y[:, i, j, :] = np.einsum("nabc,abfc->nf", window, flipped)
    y = y + (0.0 if bias is None else bias)
    return ind.activation(act, y)


def _bilinear_weights(size, factor):
    """(size * factor, size): jax.image.resize's linear weights."""
    out = size * factor
    m = np.zeros((out, size))
    for i in range(out):
        s = (i + 0.5) / factor - 0.5
        for q in range(size):
            m[i, q] = max(0.0, 1.0 - abs(s - q))
        m[i] /= m[i].sum()
    return m


def upsampling2d(x, size, interpolation):
    if interpolation == "nearest":
        return np.repeat(np.repeat(x, size[0], axis=1), size[1], axis=2)
    mh = _bilinear_weights(x.shape[1], size[0])
    mw = _bilinear_weights(x.shape[2], size[1])
    return np.einsum("ih,nhwc,jw->nijc", mh, x, mw)


def zero_padding2d(x, padding):
    (t, b), (l, r) = padding
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))


def cropping2d(x, cropping):
    (t, b), (l, r) = cropping
    return x[:, t:x.shape[1] - b, l:x.shape[2] - r, :]
