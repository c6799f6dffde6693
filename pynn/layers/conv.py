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


def check_conv_data_format(data_format, where):
    """Keras's data_format for the convolutions: None (the default, channels_last),
    "channels_last" or "channels_first" (NCHW at the layer's edges; pynn convolves NHWC
    inside)."""
    if data_format is None:
        return "channels_last"
    if not isinstance(data_format, str) or data_format.lower() not in ("channels_last",
                                                                      "channels_first"):
        raise invalid(where, "data_format", "one of 'channels_last' or 'channels_first'",
                      data_format)
    return data_format.lower()


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


def check_dilation(dilation_rate, strides, where):
    """Keras's dilation_rate, refused with strides > 1 as Keras refuses it."""
    dilation = positive_int_pair(dilation_rate, "dilation_rate", where)
    if max(strides) > 1 and max(dilation) > 1:
        raise ValueError(f"{where}: `strides > 1` not supported in conjunction with "
                         f"`dilation_rate > 1`. Received: strides={strides} and "
                         f"dilation_rate={dilation}")
    return dilation


def dilated_window(window, dilation):
    """The extent of a dilated window: (k - 1) * d + 1 along each axis."""
    return tuple((k - 1) * d + 1 for k, d in zip(window, dilation))


def to_nhwc_shape(shape, data_format):
    """An (N, H, W, C) shape from an input shape in `data_format`."""
    if data_format == "channels_first" and len(shape) == 4:
        return (shape[0], shape[2], shape[3], shape[1])
    return tuple(shape)


def from_nhwc_shape(shape, data_format):
    if data_format == "channels_first":
        return (shape[0], shape[3], shape[1], shape[2])
    return tuple(shape)


def plan_transpose(b, x, perm, label):
    """y = x with its non-batch axes permuted (OP_TRANSPOSE); the gradient goes back
    through the inverse permutation."""
    perm = tuple(int(p) for p in perm)
    shape = (x.shape[0],) + tuple(x.shape[1 + p] for p in perm)
    y = b.new(shape)
    b.op("transpose", [x.buf, y.buf], [len(perm)] + list(x.shape[1:]) + list(perm),
         label=label)
    inverse = [perm.index(k) for k in range(len(perm))]

    def backward(b, dys, need):
        dx = b.buffer(x.shape[1:], role="gradient")
        b.op("transpose", [dys[0], dx], [len(perm)] + list(shape[1:]) + inverse, label=label)
        return [dx]

    b.differentiate([x], [y], backward)
    return y


def to_nhwc(b, x, data_format, label):
    """x as an NHWC tensor (a transpose for channels_first).  Where x is the NCHW output
    of an earlier channels_first layer, that layer's NHWC tensor is used as it is: a chain
    of channels_first layers does not transpose back and forth (the unused transpose's
    backward gets no gradient and is not emitted)."""
    if data_format != "channels_first":
        return x
    known = getattr(b, "_pynn_nhwc_of", {}).get(id(x))
    if known is not None and known[0] is x:
        return known[1]
    return plan_transpose(b, x, (1, 2, 0), label)


def from_nhwc(b, y, data_format, label):
    if data_format != "channels_first":
        return y
    out = plan_transpose(b, y, (2, 0, 1), label)
    if not hasattr(b, "_pynn_nhwc_of"):
        b._pynn_nhwc_of = {}
    b._pynn_nhwc_of[id(out)] = (out, y)       # the NCHW tensor kept: its id stays unique
    return out


def plan_conv2d(b, x, kernel, bias, strides, pads, out_hw, activation, alpha, dilation=(1, 1),
                groups=1, label="", kernel_shape=None):
    """Plan a 2-D convolution of the NHWC tensor x (N, H, W, C) with the weight `kernel`
    (KH, KW, C / groups, F) and the optional weight `bias` (F,): the conv2d op with the ints
    [h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, filters, act, dilation_h,
    dilation_w, groups] and its backward rule.  Returns y (N, OH, OW, F).  Dilation 1 and
    groups 1 take the fast path (im2col GEMM / direct kernels); anything else the
    straightforward dilated, grouped kernels (csrc/conv_variants.c).  `kernel_shape`: the
    (KH, KW, C / groups, F) the op sees the kernel's values as, when the weight has another
    shape of the same size (DepthwiseConv2D's (KH, KW, C, dm) is (KH, KW, 1, C * dm))."""
    kernel_shape = tuple(kernel.shape) if kernel_shape is None else tuple(kernel_shape)
    kh, kw, _, filters = kernel_shape
    oh, ow = out_hw
    general = tuple(dilation) != (1, 1) or groups != 1
    shape = (x.shape[0], oh, ow, filters)
    z = b.new(shape)
    y = z if activations.shares_output(activation) else b.new(shape)
    cols = b.scratch((1,)) if general else \
        b.scratch((oh * ow, kh * kw * x.shape[-1]), batched=True)
    w, bias_buf = b.param(kernel), b.param_or_none(bias)
    reshaped = kernel_shape != tuple(kernel.shape)
    if reshaped:
        w = b.buffer(kernel_shape, batched=False, role="weight", base=b.root(w))
    geometry = window_ints(x.shape, (kh, kw), strides, pads, out_hw) + \
        [filters, ids.ACTIVATIONS[activation], dilation[0], dilation[1], groups]
    b.op("conv2d", [x.buf, w, bias_buf, cols, z.buf, y.buf], geometry, [alpha], label=label)

    def backward(b, dys, need):
        be = b.backend
        if general:
            sizer = lambda capacity: be.conv2d_general_work_size(  # noqa: E731
                (capacity,) + x.shape[1:], kernel_shape, groups)
        else:
            sizer = lambda capacity: be.conv2d_backward_work_size(  # noqa: E731
                (capacity,) + x.shape[1:], kernel_shape, strides, (oh, ow))
        work = b.scratch((0,), sizer=sizer)
        dx = b.buffer(x.shape[1:], role="gradient") if need[0] else -1
        dw = b.grad(kernel)
        if reshaped and dw >= 0:
            dw = b.buffer(kernel_shape, batched=False, role="gradient", base=b.root(dw))
        b.op("conv2d_backward", [x.buf, w, z.buf, y.buf, dys[0], cols, work,
                                 dw, b.grad(bias), dx],
             geometry, [alpha], label=label)
        return [None if dx < 0 else dx]

    b.differentiate([x], [y], backward, params=[kernel, bias], inplace=True)
    return y


class Window2D:
    """What the 2-D convolution layers (Conv2D, DepthwiseConv2D, SeparableConv2D) share: the
    window's arguments, its geometry on an NHWC shape, the channels axis of data_format and
    the input check.  A subclass sets `_class` (its name in messages) and defines
    `_out_channels(channels)`; `_check_channels` may refuse a channel count."""

    _class = "Conv2D"

    def _init_window(self, kernel_size, strides, padding, data_format, dilation_rate, where):
        self.kernel_size = positive_int_pair(kernel_size, "kernel_size", where)
        self.strides = positive_int_pair(strides, "strides", where)
        self.padding = check_padding(padding, where)
        self.data_format = check_conv_data_format(data_format, where)
        self.dilation_rate = check_dilation(dilation_rate, self.strides, where)

    def _geometry(self, input_shape):
        """((oh, ow), (pad_top, pad_left)) for an NHWC input shape."""
        return window_geometry(input_shape, dilated_window(self.kernel_size, self.dilation_rate),
                               self.strides, self.padding, f"{self._class} '{self.name}'")

    def _channels(self, input_shape):
        return input_shape[1] if self.data_format == "channels_first" else input_shape[-1]

    def _check_channels(self, channels, input_shape):
        pass

    def check_input_shape(self, input_shape):
        what = " (batch, channels, height, width)" if self.data_format == "channels_first" \
            else " (batch, height, width, channels)"
        self._require_rank(input_shape, 4, what=what)
        axis = 1 if self.data_format == "channels_first" else -1
        if self._build_input_shape is not None and \
                input_shape[axis] != self._build_input_shape[axis]:
            raise ValueError(
                f"Input of layer '{self.name}' ({self._class}) is incompatible with the layer: "
                f"expected axis {axis} of input shape to have value "
                f"{self._build_input_shape[axis]} (channels), but received input with shape "
                f"{shape_text(input_shape)}")
        self._check_channels(self._channels(input_shape), input_shape)
        self._geometry(to_nhwc_shape(input_shape, self.data_format))

    def compute_output_shape(self, input_shape):
        nhwc = to_nhwc_shape(input_shape, self.data_format)
        (oh, ow), _ = self._geometry(nhwc)
        return from_nhwc_shape((nhwc[0], oh, ow, self._out_channels(nhwc[-1])),
                               self.data_format)


class Conv2D(Window2D, KernelBiasLayer):
    """2-D convolution: y = activation(conv(x, kernel) + bias), with Keras's strides,
    padding, dilation_rate, groups (kernel (KH, KW, C / groups, filters)) and data_format
    (channels_first: NCHW at the layer's edges, transposed to NHWC around the op)."""

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
        self._init_window(kernel_size, strides, padding, data_format, dilation_rate, where)
        self.groups = check_int(groups, "groups", where)
        if filters % self.groups:
            raise ValueError(f"{where}: groups that do not divide the channels: the number of "
                             f"filters must be evenly divisible by the number of groups. "
                             f"Received: groups={self.groups}, filters={filters}")
        self.activation, self.alpha = activations.get(activation, where)
        self.use_bias = check_bool(use_bias, "use_bias", where)
        self.kernel_initializer = initializers.get(kernel_initializer, where,
                                                   "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, where,
                                                 "bias_initializer")

    def _out_channels(self, channels):
        return self.filters

    def _check_channels(self, channels, input_shape):
        if channels % self.groups:
            raise ValueError(
                f"Conv2D '{self.name}': groups that do not divide the channels: the number of "
                f"input channels must be evenly divisible by the number of groups. Received "
                f"groups={self.groups}, but the input has {channels} channels (full input "
                f"shape is {shape_text(input_shape)})")

    def build(self, input_shape):
        self._create_kernel_bias(
            self.kernel_size + (self._channels(input_shape) // self.groups, self.filters),
            self.filters)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        x = to_nhwc(b, x, self.data_format, self.name)
        (oh, ow), pads = self._geometry(x.shape)
        act = "linear" if logits else self.activation
        y = plan_conv2d(b, x, self._kernel, self._bias, self.strides, pads, (oh, ow), act,
                        self.alpha, self.dilation_rate, self.groups, label=self.name)
        return from_nhwc(b, y, self.data_format, self.name)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate), "groups": self.groups,
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **self._kernel_bias_config(activity=True)}


def window_ints(input_shape, window, strides, pads, out_hw):
    """The geometry ints of the convolution and pooling ops (csrc/pynn.h): h, w, c, kh, kw,
    sh, sw, pad_top, pad_left, oh, ow."""
    _, h, w, c = input_shape
    return [h, w, c, window[0], window[1], strides[0], strides[1], pads[0], pads[1],
            out_hw[0], out_hw[1]]
