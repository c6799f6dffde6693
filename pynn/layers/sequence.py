"""Engineer D's part of #16: 1-D convolution and pooling, global max pooling, the 1-D global
average pooling (with Keras's masked mean) and RepeatVector.

Sequences are channels-last, (N, L, C).  The 1-D window layers run on the 2-D plan path:
the input is seen as an image of one row, (N, 1, L, C) (a plan alias: no copy), and the
window is (1, k) wide.  Conv1D's kernel is Keras's (K, C_in, filters); the 2-D conv op
reads the same memory as the (1, K, C_in, filters) kernel of that one-row image.  So
dilation_rate and groups go straight through to the 2-D convolution (on a branch where
Conv2D refuses them, so does Conv1D).  In torch's and ONNX's layout the kernel is
(filters, C_in / groups, K): kernel.transpose(2, 1, 0) (tests/torch_mirror.py, export/onnx.py).

Padding, as Keras:
  "valid"   out = floor((L - span) / stride) + 1, span = dilation (k - 1) + 1;
  "same"    out = ceil(L / stride), the smaller half of the padding on the left;
  "causal"  (Conv1D only) a left pad of dilation (k - 1) and "valid"'s rule on the padded
            input: out = floor((L - 1) / stride) + 1, and step t sees inputs <= t only.

Global pooling: GlobalMaxPooling1D/2D take the maximum over the steps (positions); the
gradient goes to the first maximum of each (sample, channel), so it is deterministic.
GlobalAveragePooling1D averages the steps; given a mask (a plan tensor's `mask`, (N, L) of
1.0 / 0.0), it is Keras 3's masked mean sum(mask x) / sum(mask) (a sample whose steps are
all masked gives 0 / 0, as in Keras).  `keepdims` keeps the pooled axes as size 1.
"""
import math

from .. import activations, initializers
from ..checks import MAX_SIZE, check_bool, check_int, invalid, is_int, shown
from .base import Layer, shape_text
from .conv import Conv2D, check_data_format, output_size
from .pooling import _Pooling2D

CONV1D_PADDINGS = ("valid", "same", "causal")


def single_int(value, arg, where):
    """An int or a tuple/list of 1 int, in [1, MAX_SIZE], as a Python int."""
    one = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if not is_int(one) or not 1 <= one <= MAX_SIZE:
        raise invalid(where, arg, f"a positive integer or a tuple of 1 positive integer (at most "
                      f"{MAX_SIZE})", value)
    return int(one)


def check_padding_1d(padding, where, allowed):
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise invalid(where, "padding", "one of " + ", ".join(repr(p) for p in allowed), padding)
    return padding.lower()


def geometry_1d(length, window, stride, dilation, padding, where, window_arg):
    """(out, pad_left) along a sequence of `length`, or ValueError naming the window."""
    span = dilation * (window - 1) + 1
    if padding == "causal":
        out, pad = (length - 1) // stride + 1 if length >= 1 else 0, span - 1
    else:
        out, pad = output_size(length, span, stride, padding)
    if out < 1:
        extra = f" and dilation_rate={dilation} (span {span})" if dilation != 1 else ""
        raise ValueError(f"{where}: {window_arg}={window}{extra} does not fit in the input of "
                         f"length {length} with padding='{padding}' (output length {out}); use "
                         "a smaller window or padding='same'")
    return out, pad


def _check_sequence(layer, input_shape):
    layer._require_rank(input_shape, 3, what=" (batch, steps, channels)")


# ---- the 2-D views the 1-D layers are planned through ----------------------------------------

class _KernelView:
    """A (K, C, F) kernel seen as the (1, K, C, F) kernel of a one-row image."""

    def __init__(self, variable):
        self.variable = variable
        self.shape = (1,) + tuple(variable.shape)


def _real(v):
    return v.variable if isinstance(v, _KernelView) else v


class _Builder2D:
    """A PlanBuilder that hands out a _KernelView's value and gradient as 4-D aliases of the
    kernel's buffers (same memory, no op); everything else is the builder's."""

    def __init__(self, b):
        self._b = b

    def __getattr__(self, name):
        return getattr(self._b, name)

    def _alias(self, buf, shape, role):
        if buf < 0:
            return buf
        return self._b.buffer(shape, batched=False, role=role, base=self._b.root(buf))

    def param(self, v):
        if isinstance(v, _KernelView):
            return self._alias(self._b.param(v.variable), v.shape, "weight")
        return self._b.param(v)

    def param_or_none(self, v):
        return -1 if v is None else self.param(v)

    def grad(self, v):
        if isinstance(v, _KernelView):
            return self._alias(self._b.grad(v.variable), v.shape, "gradient")
        return self._b.grad(v)

    def is_trainable(self, v):
        return self._b.is_trainable(_real(v))

    def differentiate(self, inputs, outputs, rule, params=(), inplace=False):
        def wrapped(b, dys, need):
            return rule(_Builder2D(b), dys, need)
        return self._b.differentiate(inputs, outputs, wrapped,
                                     [_real(p) for p in params if p is not None], inplace)


class _Conv2DView:
    """Conv1D seen as the Conv2D of a one-row image: what Conv2D.plan_forward reads."""

    def __init__(self, layer):
        self._layer = layer
        self.kernel_size = (1, layer.kernel_size[0])
        self.strides = (1, layer.strides[0])
        self.dilation_rate = (1, layer.dilation_rate[0])
        self._kernel = _KernelView(layer._kernel)

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def _geometry(self, shape4):
        out, pad = self._layer._geometry_1d(shape4[2])
        return (1, out), (0, pad)


class Conv1D(Conv2D):
    """1-D convolution over (N, L, C) sequences: y = activation(conv(x, kernel) + bias),
    kernel (kernel_size, C_in / groups, filters) as Keras."""

    _class = "Conv1D"

    def __init__(self, filters, kernel_size, strides=1, padding="valid",
                 data_format="channels_last", dilation_rate=1, groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        name = kwargs.get("name")
        where = "Conv1D" if name is None else f"Conv1D '{name}'"
        check_int(filters, "filters", where)
        k = single_int(kernel_size, "kernel_size", where)
        s = single_int(strides, "strides", where)
        d = single_int(dilation_rate, "dilation_rate", where)
        pad = check_padding_1d(padding, where, CONV1D_PADDINGS)
        check_data_format(data_format, where)
        check_int(groups, "groups", where)
        activations.get(activation, where)
        check_bool(use_bias, "use_bias", where)
        initializers.get(kernel_initializer, where, "kernel_initializer")
        initializers.get(bias_initializer, where, "bias_initializer")
        # the 2-D convolution of a one-row image: its checks (dilation, groups) are Conv1D's
        try:
            super().__init__(filters, (1, k), (1, s), "valid" if pad == "causal" else pad,
                             data_format, (1, d), groups, activation, use_bias,
                             kernel_initializer, bias_initializer, kernel_regularizer,
                             bias_regularizer, activity_regularizer, kernel_constraint,
                             bias_constraint, **kwargs)
        except ValueError as exc:
            if d == 1 and groups == 1:
                raise
            raise ValueError(f"{where}: received dilation_rate={d}, groups={groups}, which the "
                             f"2-D convolution it runs on refuses ({exc})") from None
        self.kernel_size, self.strides, self.dilation_rate = (k,), (s,), (d,)
        self.padding, self.groups = pad, int(groups)

    def _geometry_1d(self, length):
        return geometry_1d(length, self.kernel_size[0], self.strides[0], self.dilation_rate[0],
                           self.padding, f"Conv1D '{self.name}'", "kernel_size")

    def check_input_shape(self, input_shape):
        _check_sequence(self, input_shape)
        if self._build_input_shape is not None and input_shape[-1] != self._build_input_shape[-1]:
            raise ValueError(
                f"Input of layer '{self.name}' (Conv1D) is incompatible with the layer: expected "
                f"axis -1 of input shape to have value {self._build_input_shape[-1]} (channels), "
                f"but received input with shape {shape_text(input_shape)}")
        if input_shape[-1] % self.groups:
            raise ValueError(f"Conv1D '{self.name}': the input channels ({input_shape[-1]}) must "
                             f"be divisible by groups, received groups={self.groups}")
        self._geometry_1d(input_shape[1])

    def compute_output_shape(self, input_shape):
        out, _ = self._geometry_1d(input_shape[1])
        return (input_shape[0], out, self.filters)

    def build(self, input_shape):
        self._create_kernel_bias((self.kernel_size[0], input_shape[-1] // self.groups,
                                  self.filters), self.filters)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        n, length, c = x.shape
        x4 = b.alias(x, (n, 1, length, c))
        y4 = Conv2D.plan_forward(_Conv2DView(self), _Builder2D(b), [x4], training, logits)
        return b.alias(y4, (n, y4.shape[2], self.filters))

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": list(self.kernel_size), "strides": list(self.strides),
                       "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                       "groups": self.groups})
        return config


class _PoolView:
    """A 1-D pooling layer seen as the 2-D pooling of a one-row image."""

    def __init__(self, layer):
        self._layer = layer
        self.pool_size = (1, layer.pool_size[0])
        self.strides = (1, layer.strides[0])

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def _geometry(self, shape4):
        out, pad = self._layer._geometry_1d(shape4[2])
        return (1, out), (0, pad)


class _Pooling1D(Layer):
    _kind = None   # "maxpool2d" or "avgpool2d"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format="channels_last",
                 **kwargs):
        cls = type(self).__name__
        name = kwargs.get("name")
        where = cls if name is None else f"{cls} '{name}'"
        p = single_int(pool_size, "pool_size", where)
        s = p if strides is None else single_int(strides, "strides", where)
        padding = check_padding_1d(padding, where, ("valid", "same"))
        check_data_format(data_format, where)
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = (p,), (s,), padding
        self.data_format = "channels_last"

    def _geometry_1d(self, length):
        return geometry_1d(length, self.pool_size[0], self.strides[0], 1, self.padding,
                           f"{type(self).__name__} '{self.name}'", "pool_size")

    def check_input_shape(self, input_shape):
        _check_sequence(self, input_shape)
        self._geometry_1d(input_shape[1])

    def compute_output_shape(self, input_shape):
        out, _ = self._geometry_1d(input_shape[1])
        return (input_shape[0], out, input_shape[-1])

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        n, length, c = x.shape
        x4 = b.alias(x, (n, 1, length, c))
        y4 = _Pooling2D.plan_forward(_PoolView(self), b, [x4], training, logits)
        return b.alias(y4, (n, y4.shape[2], c))

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "padding": self.padding, "strides": list(self.strides),
                "data_format": self.data_format}


class MaxPooling1D(_Pooling1D):
    """The maximum over each pool_size window of steps (padding never wins)."""
    _kind = "maxpool2d"


class AveragePooling1D(_Pooling1D):
    """The mean over each pool_size window of steps (padded steps not counted)."""
    _kind = "avgpool2d"

    def __init__(self, pool_size, strides=None, padding="valid", data_format="channels_last",
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


# ---- global pooling ----------------------------------------------------------------------------

class _GlobalPooling(Layer):
    _rank = None   # 3 (sequences) or 4 (images)

    def __init__(self, data_format="channels_last", keepdims=False, **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} '{self.name}'"
        self.data_format = check_data_format(data_format, where)
        self.keepdims = check_bool(keepdims, "keepdims", where)

    def check_input_shape(self, input_shape):
        what = " (batch, steps, channels)" if self._rank == 3 else \
            " (batch, height, width, channels)"
        self._require_rank(input_shape, self._rank, what=what)
        if any(d is not None and d < 1 for d in input_shape[1:-1]):
            raise ValueError(f"Input of layer '{self.name}' ({type(self).__name__}) has no "
                             f"positions to pool: input shape {shape_text(input_shape)}")

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        if self.keepdims:
            return (input_shape[0],) + (1,) * (self._rank - 2) + (c,)
        return (input_shape[0], c)

    def _finish(self, b, x, y):
        return b.alias(y, self.compute_output_shape(x.shape)) if self.keepdims else y

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class _GlobalMaxPooling(_GlobalPooling):
    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        s, c = math.prod(x.shape[1:-1]), x.shape[-1]
        y = b.new((x.shape[0], c))
        b.op("global_maxpool", [x.buf, y.buf], [s, c], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("global_maxpool_backward", [x.buf, dys[0], dx], [s, c], label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return self._finish(b, x, y)


class GlobalMaxPooling1D(_GlobalMaxPooling):
    """(N, L, C) -> (N, C): the maximum over the steps (keepdims: (N, 1, C))."""
    _rank = 3


class GlobalMaxPooling2D(_GlobalMaxPooling):
    """(N, H, W, C) -> (N, C): the maximum over all positions (keepdims: (N, 1, 1, C))."""
    _rank = 4


class GlobalAveragePooling1D(_GlobalPooling):
    """(N, L, C) -> (N, C): the mean over the steps; with a mask, the mean over the valid
    steps (Keras 3's masked mean).  keepdims: (N, 1, C)."""
    _rank = 3
    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None          # Keras: the pooled output carries no mask

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        n, length, c = x.shape
        mask = getattr(x, "mask", None)
        y = b.new((n, c))
        if mask is not None:
            b.op("masked_mean", [x.buf, mask.buf, y.buf], [length, c], label=self.name)

            def backward(b, dys, need):
                dx = b.buffer(x.shape[1:], role="gradient")
                b.op("masked_mean_backward", [dys[0], mask.buf, dx], [length, c],
                     label=self.name)
                return [dx]

            b.differentiate([x], [y], backward)
            return self._finish(b, x, y)
        x4 = b.alias(x, (n, 1, length, c))          # the 2-D op on a one-row image

        def backward(b, dys, need):
            dx = b.buffer(x4.shape[1:], role="gradient")
            b.op("global_avgpool2d_backward", [dys[0], dx], [1, length, c], label=self.name)
            return [dx]

        b.op("global_avgpool2d", [x4.buf, y.buf], [1, length, c], label=self.name)
        b.differentiate([x4], [y], backward)
        return self._finish(b, x, y)


# ---- RepeatVector ------------------------------------------------------------------------------

class RepeatVector(Layer):
    """(N, F) -> (N, n, F): the input repeated n times; its gradient is the sum of the n
    copies' gradients, added in order."""

    def __init__(self, n, **kwargs):
        name = kwargs.get("name")
        where = "RepeatVector" if name is None else f"RepeatVector '{name}'"
        if not is_int(n):
            raise TypeError(f"{where}: expected an integer value for `n`, received "
                            f"n={shown(n)} of type {type(n).__name__}")
        self.n = check_int(n, "n", where)
        super().__init__(**kwargs)

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, what=" (batch, features)")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        f = x.shape[1]
        y = b.new((x.shape[0], self.n, f))
        b.op("repeat_vector", [x.buf, y.buf], [self.n, f], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("repeat_vector_backward", [dys[0], dx], [self.n, f], label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return y

    def get_config(self):
        return {**super().get_config(), "n": self.n}
