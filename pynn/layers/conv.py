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

from .. import activations, ids, initializers
from ..checks import MAX_SIZE, check_bool, check_int, invalid, is_int, shown
from .base import KernelBiasLayer, shape_text

PADDINGS = ("valid", "same")


def positive_int_pair(value, arg, where):
    """An int or a pair of ints, each in [1, MAX_SIZE], as a tuple of two Python ints."""
    pair = (value, value) if is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(
            is_int(v) and 1 <= v <= MAX_SIZE for v in pair):
        raise invalid(where, arg, "a positive integer or a tuple of 2 positive integers (at "
                      f"most {MAX_SIZE})", value)
    return int(pair[0]), int(pair[1])


def check_padding(padding, where):
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise invalid(where, "padding", "one of 'valid' or 'same'", padding)
    return padding.lower()


def check_data_format(data_format, where):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{where}: only data_format='channels_last' (NHWC) is supported, "
                         f"received data_format={shown(data_format)}")
    return "channels_last"


def output_size(size, window, stride, padding):
    """(output size, padding before) along one axis, as Keras computes them; (None, 0)
    for a free axis (a model input of shape (None, None, C): its plan has the size)."""
    if size is None:
        return None, 0
    if padding == "valid":
        return (size - window) // stride + 1 if size >= window else 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2


def window_geometry(input_shape, window, strides, padding, where):
    """((out_h, out_w), (pad_top, pad_left)) for an (N, H, W, C) input, or ValueError."""
    if len(input_shape) != 4:
        raise ValueError(f"{where}: expected inputs of shape (batch, height, width, channels), "
                         f"received input shape {shape_text(input_shape)} (ndim="
                         f"{len(input_shape)}, expected ndim=4)")
    input_shape = input_shape[1:]
    (oh, pt), (ow, pl) = (output_size(input_shape[i], window[i], strides[i], padding)
                          for i in range(2))
    if (oh is not None and oh < 1) or (ow is not None and ow < 1):
        raise ValueError(f"{where}: the window {window} does not fit in the input of size "
                         f"{tuple(input_shape[:2])} with padding='{padding}' (output size "
                         f"{(oh, ow)}); use a smaller window or padding='same'")
    return (oh, ow), (pt, pl)


class Conv2D(KernelBiasLayer):
    """2-D convolution over NHWC images: y = activation(conv(x, kernel) + bias)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        filters = check_int(filters, "filters", "Conv2D")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = f"Conv2D '{self.name}'"
        self._kernel_bias_options(where, kernel_regularizer, bias_regularizer,
                                  kernel_constraint, bias_constraint)   # engineer F
        self.filters = filters
        self.kernel_size = positive_int_pair(kernel_size, "kernel_size", where)
        self.strides = positive_int_pair(strides, "strides", where)
        self.padding = check_padding(padding, where)
        self.data_format = check_data_format(data_format, where)
        if positive_int_pair(dilation_rate, "dilation_rate", where) != (1, 1):
            raise ValueError(f"{where}: only dilation_rate=(1, 1) is supported, received "
                             f"dilation_rate={dilation_rate!r}")
        if check_int(groups, "groups", where) != 1:
            raise ValueError(f"{where}: only groups=1 is supported, received groups={groups!r}")
        self.activation, self.alpha = activations.get(activation, where)
        self.use_bias = check_bool(use_bias, "use_bias", where)
        self.kernel_initializer = initializers.get(kernel_initializer, where,
                                                   "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, where,
                                                 "bias_initializer")

    def _geometry(self, input_shape):
        return window_geometry(input_shape, self.kernel_size, self.strides, self.padding,
                               f"Conv2D '{self.name}'")

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 4, what=" (batch, height, width, channels)")
        if self._build_input_shape is not None and input_shape[-1] != self._build_input_shape[-1]:
            raise ValueError(
                f"Input of layer '{self.name}' (Conv2D) is incompatible with the layer: expected "
                f"axis -1 of input shape to have value {self._build_input_shape[-1]} (channels), "
                f"but received input with shape {shape_text(input_shape)}")
        self._geometry(input_shape)

    def compute_output_shape(self, input_shape):
        (oh, ow), _ = self._geometry(input_shape)
        return (input_shape[0], oh, ow, self.filters)

    def build(self, input_shape):
        self._create_kernel_bias(self.kernel_size + (input_shape[-1], self.filters), self.filters)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        (oh, ow), pads = self._geometry(x.shape)
        act = "linear" if logits else self.activation
        kh, kw = self.kernel_size
        shape = (x.shape[0], oh, ow, self.filters)
        z = b.new(shape)
        y = z if act == "linear" else b.new(shape)
        cols = b.scratch((oh * ow, kh * kw * x.shape[-1]), batched=True)
        w, bias = b.param(self._kernel), b.param_or_none(self._bias)
        geometry = window_ints(x.shape, self.kernel_size, self.strides, pads, (oh, ow)) + \
            [self.filters, ids.ACTIVATIONS[act]]
        b.op("conv2d", [x.buf, w, bias, cols, z.buf, y.buf], geometry, [self.alpha],
             label=self.name)

        def backward(b, dys, need):
            be, kernel_shape = b.backend, self._kernel.shape
            work = b.scratch((0,), sizer=lambda capacity: be.conv2d_backward_work_size(
                (capacity,) + x.shape[1:], kernel_shape, self.strides, (oh, ow)))
            dx = b.buffer(x.shape[1:], role="gradient") if need[0] else -1
            b.op("conv2d_backward", [x.buf, w, z.buf, y.buf, dys[0], cols, work,
                                     b.grad(self._kernel), b.grad(self._bias), dx],
                 geometry, [self.alpha], label=self.name)
            return [None if dx < 0 else dx]

        b.differentiate([x], [y], backward, params=[self._kernel, self._bias], inplace=True)
        return y

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": [1, 1], "groups": 1, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **self._kernel_bias_config()}


def window_ints(input_shape, window, strides, pads, out_hw):
    """The geometry ints of the convolution and pooling ops (csrc/pynn.h): h, w, c, kh, kw,
    sh, sw, pad_top, pad_left, oh, ow."""
    _, h, w, c = input_shape
    return [h, w, c, window[0], window[1], strides[0], strides[1], pads[0], pads[1],
            out_hw[0], out_hw[1]]
