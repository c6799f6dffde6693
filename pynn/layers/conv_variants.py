"""DepthwiseConv2D, SeparableConv2D and Permute (engineer B, issue #16), with Keras 3's
names, arguments, defaults, weight layouts and get_config keys.

DepthwiseConv2D's kernel `depthwise_kernel` is Keras's (KH, KW, C, depth_multiplier):
output channel c * depth_multiplier + m convolves input channel c with
depthwise_kernel[:, :, c, m].  The very same values read as (KH, KW, 1, C * dm) are the
kernel of a grouped convolution with groups = C, which is what the plan runs (the conv2d op
with groups = C: csrc/conv_variants.c's per-channel loops).

SeparableConv2D is that depthwise convolution (no bias, no activation) followed by a 1x1
convolution, `pointwise_kernel` (1, 1, C * dm, filters), with the bias and the activation:
the 1x1 convolution takes Conv2D's fast path (the GEMM).

Torch equivalents (tests/test_layers_conv_variants.py): a depthwise kernel (KH, KW, C, dm)
is torch's (C * dm, 1, KH, KW) weight of a Conv2d with groups=C (permute (2, 3, 0, 1) then
reshape); a pointwise kernel (1, 1, C * dm, F) is torch's (F, C * dm, 1, 1).
"""
from .. import activations, constraints, initializers, regularizers
from ..checks import check_bool, check_int, is_int, shown
from .base import Layer, shape_text
from .conv import Window2D, from_nhwc, plan_conv2d, plan_transpose, to_nhwc


def _options(layer, where, **options):
    """Keep the regularizers (*_regularizer) and constraints (*_constraint), resolved with
    regularizers.get / constraints.get as Keras resolves them; a refusal names the argument."""
    for key, value in options.items():
        module = regularizers if key.endswith("_regularizer") else constraints
        setattr(layer, key, module.get(value, where, key))


def _options_config(layer, *keys):
    """Keras's get_config entries for those arguments, in Keras's order."""
    out = {}
    for key in keys:
        if key == "activity_regularizer":
            out[key] = regularizers.serialize(layer.activity_regularizer)
        else:
            module = regularizers if key.endswith("_regularizer") else constraints
            out[key] = module.serialize(getattr(layer, key))
    return out


class _DepthwiseBase(Window2D, Layer):
    """What DepthwiseConv2D and SeparableConv2D share: the window (conv.py's Window2D), the
    depth multiplier and the depthwise kernel."""

    _class = "DepthwiseConv2D"

    def _init_depthwise(self, kernel_size, strides, padding, data_format, dilation_rate,
                        depth_multiplier, where):
        self.depth_multiplier = check_int(depth_multiplier, "depth_multiplier", where)
        self._init_window(kernel_size, strides, padding, data_format, dilation_rate, where)

    def _out_channels(self, channels):
        raise NotImplementedError

    def _plan_depthwise(self, b, x, bias, activation):
        """The depthwise convolution of the NHWC tensor x: groups = C."""
        (oh, ow), pads = self._geometry(x.shape)
        kh, kw = self.kernel_size
        c, dm = x.shape[-1], self.depth_multiplier
        return plan_conv2d(b, x, self._depthwise_kernel, bias, self.strides, pads, (oh, ow),
                           activation, self.alpha, self.dilation_rate, c,
                           label=self.name, kernel_shape=(kh, kw, 1, c * dm))

    def _window_config(self):
        return {"depth_multiplier": self.depth_multiplier,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate), "activation": self.activation,
                "use_bias": self.use_bias,
                "depthwise_initializer": initializers.serialize(self.depthwise_initializer)}

    @property
    def depthwise_kernel(self):
        return self._depthwise_kernel

    @property
    def bias(self):
        return self._bias

    @property
    def output_activation(self):
        return self.activation


class DepthwiseConv2D(_DepthwiseBase):
    """Each input channel convolved with its own depth_multiplier filters:
    y[..., c*dm + m] = activation(conv(x[..., c], depthwise_kernel[:, :, c, m]) + bias)."""

    _class = "DepthwiseConv2D"

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = f"DepthwiseConv2D '{self.name}'"
        _options(self, where, depthwise_regularizer=depthwise_regularizer,
                 bias_regularizer=bias_regularizer, depthwise_constraint=depthwise_constraint,
                 bias_constraint=bias_constraint)
        self._init_depthwise(kernel_size, strides, padding, data_format, dilation_rate,
                             depth_multiplier, where)
        self.activation, self.alpha = activations.get(activation, where)
        self.use_bias = check_bool(use_bias, "use_bias", where)
        self.depthwise_initializer = initializers.get(depthwise_initializer, where,
                                                      "depthwise_initializer")
        self.bias_initializer = initializers.get(bias_initializer, where, "bias_initializer")

    def _out_channels(self, channels):
        return channels * self.depth_multiplier

    def build(self, input_shape):
        c = self._channels(input_shape)
        self._depthwise_kernel = self.add_weight(
            shape=self.kernel_size + (c, self.depth_multiplier),
            initializer=self.depthwise_initializer, name="depthwise_kernel",
            regularizer=self.depthwise_regularizer, constraint=self.depthwise_constraint)
        self._bias = self.add_weight(shape=(c * self.depth_multiplier,),
                                     initializer=self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint) if self.use_bias else None

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        x = to_nhwc(b, x, self.data_format, self.name)
        act = "linear" if logits else self.activation
        y = self._plan_depthwise(b, x, self._bias, act)
        return from_nhwc(b, y, self.data_format, self.name)

    def get_config(self):
        return {**super().get_config(), **self._window_config(),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **_options_config(self, "depthwise_regularizer", "bias_regularizer",
                                  "activity_regularizer", "depthwise_constraint",
                                  "bias_constraint")}


class SeparableConv2D(_DepthwiseBase):
    """A depthwise convolution (depthwise_kernel (KH, KW, C, dm), no bias) followed by a 1x1
    convolution (pointwise_kernel (1, 1, C*dm, filters)) with the bias and activation."""

    _class = "SeparableConv2D"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        filters = check_int(filters, "filters", "SeparableConv2D")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = f"SeparableConv2D '{self.name}'"
        _options(self, where, depthwise_regularizer=depthwise_regularizer,
                 pointwise_regularizer=pointwise_regularizer, bias_regularizer=bias_regularizer,
                 depthwise_constraint=depthwise_constraint,
                 pointwise_constraint=pointwise_constraint, bias_constraint=bias_constraint)
        self.filters = filters
        self._init_depthwise(kernel_size, strides, padding, data_format, dilation_rate,
                             depth_multiplier, where)
        self.activation, self.alpha = activations.get(activation, where)
        self.use_bias = check_bool(use_bias, "use_bias", where)
        self.depthwise_initializer = initializers.get(depthwise_initializer, where,
                                                      "depthwise_initializer")
        self.pointwise_initializer = initializers.get(pointwise_initializer, where,
                                                      "pointwise_initializer")
        self.bias_initializer = initializers.get(bias_initializer, where, "bias_initializer")

    def _out_channels(self, channels):
        return self.filters

    def build(self, input_shape):
        c, dm = self._channels(input_shape), self.depth_multiplier
        self._depthwise_kernel = self.add_weight(
            shape=self.kernel_size + (c, dm), initializer=self.depthwise_initializer,
            name="depthwise_kernel", regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint)
        self._pointwise_kernel = self.add_weight(
            shape=(1, 1, c * dm, self.filters), initializer=self.pointwise_initializer,
            name="pointwise_kernel", regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint)
        self._bias = self.add_weight(shape=(self.filters,), initializer=self.bias_initializer,
                                     name="bias", regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint) if self.use_bias else None

    @property
    def pointwise_kernel(self):
        return self._pointwise_kernel

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        x = to_nhwc(b, x, self.data_format, self.name)
        act = "linear" if logits else self.activation
        d = self._plan_depthwise(b, x, None, "linear")
        y = plan_conv2d(b, d, self._pointwise_kernel, self._bias, (1, 1), (0, 0), d.shape[1:3],
                        act, self.alpha, label=self.name)
        return from_nhwc(b, y, self.data_format, self.name)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, **self._window_config(),
                "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **_options_config(self, "depthwise_regularizer", "pointwise_regularizer",
                                  "bias_regularizer", "activity_regularizer",
                                  "depthwise_constraint", "pointwise_constraint",
                                  "bias_constraint")}


class Permute(Layer):
    """Keras's Permute(dims): the non-batch axes reordered, dims a permutation of 1 .. k
    (1-indexed, as Keras); one OP_TRANSPOSE, its gradient the inverse permutation."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        where = f"Permute '{self.name}'"
        if not isinstance(dims, (tuple, list)) or not dims or not all(is_int(d) for d in dims) \
                or sorted(int(d) for d in dims) != list(range(1, len(dims) + 1)) or \
                len(dims) > 6:
            raise ValueError(f"{where}: invalid permutation argument `dims`: expected a "
                             f"permutation of 1 .. k (k <= 6, the batch axis 0 left out), "
                             f"received dims={shown(dims)}")
        self.dims = tuple(int(d) for d in dims)

    def check_input_shape(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Permute '{self.name}': expected inputs of rank "
                             f"{len(self.dims) + 1} for dims={self.dims}, received input shape "
                             f"{shape_text(input_shape)}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        return plan_transpose(b, x, [d - 1 for d in self.dims], self.name)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


__all__ = ["DepthwiseConv2D", "SeparableConv2D", "Permute"]
