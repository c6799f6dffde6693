"""Conv2D, and the window geometry it shares with the pooling layers.

Images are channels-last (N, H, W, C); the kernel is Keras's (KH, KW, C_in, filters).
Output sizes and padding are exactly Keras's:
  "valid": out = floor((in - k) / stride) + 1, no padding;
  "same":  out = ceil(in / stride), padding max((out - 1) * stride + k - in, 0) in
           total, the smaller half on the top/left and the extra on the bottom/right.
The layer hands the backend (pad_top, pad_left) and the output size; the backend
convolves by whatever means it likes (cpu: im2col into the GEMM).
"""
import math

import numpy as np

from .. import activations, initializers
from .base import KernelBiasLayer

PADDINGS = ("valid", "same")


def positive_int_pair(value, arg, where):
    """An int or a pair of ints, each >= 1, as a tuple of two Python ints."""
    pair = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
        else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{where}: received an invalid value for `{arg}`, expected a positive "
                         f"integer or a tuple of 2 positive integers. Received: {arg}={value!r}")
    return int(pair[0]), int(pair[1])


def check_padding(padding, where):
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(f"{where}: received an invalid value for `padding`, expected one of "
                         f"'valid' or 'same'. Received: padding={padding!r}")
    return padding.lower()


def check_data_format(data_format, where):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{where}: only data_format='channels_last' (NHWC) is supported, "
                         f"received data_format={data_format!r}")
    return "channels_last"


def output_size(size, window, stride, padding):
    """(output size, padding before) along one axis, as Keras computes them."""
    if padding == "valid":
        return (size - window) // stride + 1 if size >= window else 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2


def window_geometry(input_shape, window, strides, padding, where):
    """((out_h, out_w), (pad_top, pad_left)) for an (H, W, C) input, or ValueError."""
    if len(input_shape) != 3:
        raise ValueError(f"{where}: expected inputs of shape (batch, height, width, channels), "
                         f"received input shape (None, {', '.join(map(str, input_shape))})")
    (oh, pt), (ow, pl) = (output_size(input_shape[i], window[i], strides[i], padding)
                          for i in range(2))
    if oh < 1 or ow < 1:
        raise ValueError(f"{where}: the window {window} does not fit in the input of size "
                         f"{tuple(input_shape[:2])} with padding='{padding}' (output size "
                         f"{(oh, ow)}); use a smaller window or padding='same'")
    return (oh, ow), (pt, pl)


class Conv2D(KernelBiasLayer):
    """2-D convolution over NHWC images: y = activation(conv(x, kernel) + bias)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 input_shape=None, name=None):
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError("Conv2D: received an invalid value for `filters`, expected a "
                             f"positive integer. Received: filters={filters!r}")
        super().__init__(name=name, input_shape=input_shape)
        where = f"Conv2D '{self.name}'"
        self.filters = int(filters)
        self.kernel_size = positive_int_pair(kernel_size, "kernel_size", where)
        self.strides = positive_int_pair(strides, "strides", where)
        self.padding = check_padding(padding, where)
        self.data_format = check_data_format(data_format, where)
        if positive_int_pair(dilation_rate, "dilation_rate", where) != (1, 1):
            raise ValueError(f"{where}: only dilation_rate=(1, 1) is supported, received "
                             f"dilation_rate={dilation_rate!r}")
        if groups != 1:
            raise ValueError(f"{where}: only groups=1 is supported, received groups={groups!r}")
        self.activation, self.alpha = activations.get(activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, where)
        self.bias_initializer = initializers.get(bias_initializer, where)

    def _geometry(self, input_shape):
        return window_geometry(input_shape, self.kernel_size, self.strides, self.padding,
                               f"Conv2D '{self.name}'")

    def compute_output_shape(self, input_shape):
        (oh, ow), _ = self._geometry(input_shape)
        return (oh, ow, self.filters)

    def build(self, input_shape):
        super().build(input_shape)
        self._out_hw, self._pads = self._geometry(self.input_shape)
        self.add_weight("kernel", self.kernel_size + (input_shape[-1], self.filters),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def forward(self, backend, x, training=False, logits=False):
        n = x.shape[0]
        kh, kw = self.kernel_size
        out_shape = (n,) + self.output_shape
        act = "linear" if logits else self.activation
        cols = self._buffer(backend, "cols", (n * out_shape[1] * out_shape[2],
                                               kh * kw * self.input_shape[-1]))
        if training:
            z = self._buffer(backend, "z", out_shape)
            y = z if act == "linear" else self._buffer(backend, "y", out_shape)
            self._saved = (x, z, y, act, cols)
        else:
            z = y = self._buffer(backend, "inference", out_shape)
        backend.conv2d_forward(x, self.kernel, self.bias, self.strides, self._pads, act,
                               self.alpha, cols, z, y)
        return y

    def backward(self, backend, dy, need_dx=True):
        x, z, y, act, cols = self._saved
        dx = self._buffer(backend, "dx", x.shape) if need_dx else None
        backend.conv2d_backward(x, self.kernel, z, y, dy, self.strides, self._pads, act,
                                self.alpha, cols, self.grads[0],
                                self.grads[1] if self.use_bias else None, dx)
        return dx

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format, "dilation_rate": [1, 1], "groups": 1,
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "input_shape": None if self._input_shape_arg is None else list(self._input_shape_arg)}
