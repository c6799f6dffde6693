"""ONNX export: `model.export(path, format="onnx", opset=None, input_signature=None)`.

The graph is the model's inference graph (Dropout and the random augmentation layers are
identities, BatchNormalization uses its moving statistics), built with the `onnx`
package's helper API (pip install "pynn[onnx]") and checked with
`onnx.checker.check_model(full_check=True)` before anything is written.

  - Inputs and outputs carry the model's names (`model.input_names`, `model.output_names`);
    the batch dimension is dynamic (the symbol "batch") unless input_signature fixes it.
  - Tensors stay channels-last (NHWC) as in pynn: Conv2D and the pooling layers transpose
    to ONNX's NCHW and back around their op (ONNX Runtime's optimizer cancels the pairs),
    so a Flatten after a convolution flattens in pynn's (h, w, c) order.
  - Every layer is matched by its exact class: a layer without an ONNX form (a subclass
    with its own call, say) raises ValueError naming it, and no file is written.
The file is written through a temporary file renamed over the target, so a failed
export leaves nothing behind and never a partial file.
"""
import os

import numpy as np

DEFAULT_OPSET = 17
MIN_OPSET = 13          # Softmax over one axis, Resize with sizes, Split/Squeeze forms


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError('model.export(format="onnx") needs the onnx package: '
                          'pip install "pynn[onnx]"') from None
    return onnx, helper, numpy_helper


class _Graph:
    """The nodes and initializers being built, with unique tensor names."""

    def __init__(self, opset, reserved):
        self.onnx, self.helper, self.numpy_helper = _onnx()
        self.opset = opset
        self.nodes, self.initializers = [], []
        self.names = set(reserved)

    def fresh(self, base):
        name, i = base, 1
        while name in self.names:
            name = f"{base}_{i}"
            i += 1
        self.names.add(name)
        return name

    def const(self, array, base, dtype=np.float32):
        name = self.fresh(base)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array, dtype), name))
        return name

    def ints(self, values, base):
        return self.const(np.asarray(values, np.int64), base, np.int64)

    def op(self, op_type, inputs, base, **attrs):
        out = self.fresh(base)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out],
                                                name=self.fresh(f"{base}:{op_type}"), **attrs))
        return out


# ---- layers ------------------------------------------------------------------------------------

def _activation(g, x, name, alpha, base):
    if name == "linear":
        return x
    if name == "relu":
        return g.op("Relu", [x], f"{base}/relu")
    if name == "leaky_relu":
        return g.op("LeakyRelu", [x], f"{base}/leaky_relu", alpha=float(alpha))
    if name == "sigmoid":
        return g.op("Sigmoid", [x], f"{base}/sigmoid")
    if name == "tanh":
        return g.op("Tanh", [x], f"{base}/tanh")
    if name == "softmax":
        return g.op("Softmax", [x], f"{base}/softmax", axis=-1)
    if name == "gelu":                 # exact: x * 0.5 * (1 + erf(x / sqrt 2))
        e = g.op("Erf", [g.op("Div", [x, g.const(np.sqrt(2.0), f"{base}/sqrt2")], f"{base}/gelu_s")],
                 f"{base}/gelu_erf")
        half = g.op("Mul", [g.op("Add", [e, g.const(1.0, f"{base}/one")], f"{base}/gelu_a"),
                            g.const(0.5, f"{base}/half")], f"{base}/gelu_h")
        return g.op("Mul", [x, half], f"{base}/gelu")
    if name in _MORE_ACTIVATIONS:      # activations (engineer A)
        return _MORE_ACTIVATIONS[name](g, x, alpha, base)
    raise ValueError(f"activation {name!r} has no ONNX form in pynn's exporter")


# ---- activations (engineer A) ------------------------------------------------------------------
def _silu(g, x, alpha, base):
    return g.op("Mul", [x, g.op("Sigmoid", [x], f"{base}/silu_s")], f"{base}/silu")


def _hard_silu(g, x, alpha, base):
    if g.opset >= 14:
        return g.op("HardSwish", [x], f"{base}/hard_silu")
    hs = g.op("HardSigmoid", [x], f"{base}/hard_silu_s", alpha=1.0 / 6.0, beta=0.5)
    return g.op("Mul", [x, hs], f"{base}/hard_silu")


def _mish(g, x, alpha, base):
    if g.opset >= 18:
        return g.op("Mish", [x], f"{base}/mish")
    t = g.op("Tanh", [g.op("Softplus", [x], f"{base}/mish_sp")], f"{base}/mish_t")
    return g.op("Mul", [x, t], f"{base}/mish")


def _clip(g, x, low, high, base):
    """Clip(x, low, high); high None: no upper bound."""
    inputs = [x, g.const(np.float32(low), f"{base}/clip_min")]
    if high is not None:
        inputs.append(g.const(np.float32(high), f"{base}/clip_max"))
    return g.op("Clip", inputs, f"{base}/clip")


_MORE_ACTIVATIONS = {
    "elu": lambda g, x, a, base: g.op("Elu", [x], f"{base}/elu", alpha=float(a)),
    "selu": lambda g, x, a, base: g.op("Selu", [x], f"{base}/selu",
                                       alpha=1.6732632423543772848170429916717,
                                       gamma=1.0507009873554804934193349852946),
    "softplus": lambda g, x, a, base: g.op("Softplus", [x], f"{base}/softplus"),
    "softsign": lambda g, x, a, base: g.op("Softsign", [x], f"{base}/softsign"),
    "silu": _silu,
    "hard_sigmoid": lambda g, x, a, base: g.op("HardSigmoid", [x], f"{base}/hard_sigmoid",
                                               alpha=1.0 / 6.0, beta=0.5),
    "hard_silu": _hard_silu,
    "relu6": lambda g, x, a, base: _clip(g, x, 0.0, 6.0, f"{base}/relu6"),
    "mish": _mish,
    "exponential": lambda g, x, a, base: g.op("Exp", [x], f"{base}/exp"),
    "log_softmax": lambda g, x, a, base: g.op("LogSoftmax", [x], f"{base}/log_softmax",
                                              axis=-1),
}


def _relu_layer(g, layer, xs, shapes):
    """Keras's ReLU: clip(x [x > t], 0, max_value) - negative_slope relu(t - x)."""
    if not layer._op:
        return _activation_layer(g, layer, xs, shapes)
    base, x = layer.name, xs[0]
    t = g.const(np.float32(layer.threshold), f"{base}/threshold")
    kept = g.op("Where", [g.op("Greater", [x, t], f"{base}/above"), x,
                          g.const(np.float32(0.0), f"{base}/zero")], f"{base}/kept")
    y = _clip(g, kept, 0.0, layer.max_value, base)
    if layer.negative_slope != 0:
        neg = g.op("Relu", [g.op("Sub", [t, x], f"{base}/t_minus_x")], f"{base}/neg")
        scaled = g.op("Mul", [neg, g.const(np.float32(layer.negative_slope), f"{base}/slope")],
                      f"{base}/neg_scaled")
        y = g.op("Sub", [y, scaled], f"{base}/relu")
    return [y]


def _softmax_layer(g, layer, xs, shapes):
    from ..layers.activations import _softmax_axes
    axes = _softmax_axes(layer.axis, len(shapes[0]), f"Softmax '{layer.name}'")
    base, x = layer.name, xs[0]
    if len(axes) == 1:
        return [g.op("Softmax", [x], f"{base}/softmax", axis=int(axes[0]))]
    # several (adjacent) axes: exp(x - logsumexp over them)
    if g.opset >= 18:
        lse = g.op("ReduceLogSumExp", [x, g.ints(axes, f"{base}/axes")], f"{base}/lse",
                   keepdims=1)
    else:
        lse = g.op("ReduceLogSumExp", [x], f"{base}/lse", axes=list(axes), keepdims=1)
    return [g.op("Exp", [g.op("Sub", [x, lse], f"{base}/shifted")], f"{base}/softmax")]


def _prelu(g, layer, xs, shapes):
    base = layer.name
    slope = g.const(layer._alpha.numpy(), f"{base}/alpha")
    return [g.op("PRelu", [xs[0], slope], f"{base}/prelu")]


def _nchw(g, x, base):
    return g.op("Transpose", [x], f"{base}/to_nchw", perm=[0, 3, 1, 2])


def _nhwc(g, x, base):
    return g.op("Transpose", [x], f"{base}/to_nhwc", perm=[0, 2, 3, 1])


def _window_pads(layer, shape, window):
    from ..layers.conv import window_geometry
    (oh, ow), (pt, pl) = window_geometry(shape, window, layer.strides, layer.padding,
                                         f"{type(layer).__name__} '{layer.name}'")
    if layer.padding == "valid":
        return [0, 0, 0, 0]
    total_h = max((oh - 1) * layer.strides[0] + window[0] - shape[1], 0)
    total_w = max((ow - 1) * layer.strides[1] + window[1] - shape[2], 0)
    return [pt, pl, total_h - pt, total_w - pl]


def _dense(g, layer, xs, shapes):
    base = layer.name
    y = g.op("MatMul", [xs[0], g.const(layer._kernel.numpy(), f"{base}/kernel")], f"{base}/matmul")
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer._bias.numpy(), f"{base}/bias")], f"{base}/bias_add")
    return [_activation(g, y, layer.activation, layer.alpha, base)]


def _conv2d(g, layer, xs, shapes):
    base = layer.name
    kernel = np.ascontiguousarray(layer._kernel.numpy().transpose(3, 2, 0, 1))
    inputs = [_nchw(g, xs[0], base), g.const(kernel, f"{base}/kernel")]
    if layer.use_bias:
        inputs.append(g.const(layer._bias.numpy(), f"{base}/bias"))
    y = g.op("Conv", inputs, f"{base}/conv", kernel_shape=list(layer.kernel_size),
             strides=list(layer.strides), pads=_window_pads(layer, shapes[0], layer.kernel_size),
             dilations=[1, 1], group=1)
    return [_activation(g, _nhwc(g, y, base), layer.activation, layer.alpha, base)]


def _pooling(op_type):
    def emit(g, layer, xs, shapes):
        base = layer.name
        attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides),
                 "pads": _window_pads(layer, shapes[0], layer.pool_size)}
        if op_type == "AveragePool":
            attrs["count_include_pad"] = 0          # Keras: the padding is not averaged
        y = g.op(op_type, [_nchw(g, xs[0], base)], f"{base}/pool", **attrs)
        return [_nhwc(g, y, base)]
    return emit


def _reduce_mean(g, x, axes, keepdims, base):
    if g.opset >= 18:
        return g.op("ReduceMean", [x, g.ints(axes, f"{base}/axes")], base, keepdims=keepdims)
    return g.op("ReduceMean", [x], base, axes=list(axes), keepdims=keepdims)


def _global_average_pooling(g, layer, xs, shapes):
    return [_reduce_mean(g, xs[0], [1, 2], int(layer.keepdims), f"{layer.name}/mean")]


def _channel_shape(rank, axis, size):
    """The shape that broadcasts a vector of `size` along `axis` of a tensor of `rank`
    (batch axis included) in ONNX's right-aligned broadcasting."""
    axis %= rank
    return [size] + [1] * (rank - 1 - axis)


def _batch_normalization(g, layer, xs, shapes):
    base, shape = layer.name, shapes[0]
    c = shape[layer.axis]
    mean = layer.moving_mean.numpy().astype(np.float64)
    var = layer.moving_variance.numpy().astype(np.float64)
    gamma = layer.gamma.numpy().astype(np.float64) if layer.gamma is not None else np.ones(c)
    beta = layer.beta.numpy().astype(np.float64) if layer.beta is not None else np.zeros(c)
    scale = gamma / np.sqrt(var + layer.epsilon)
    target = _channel_shape(len(shape), layer.axis, c)
    y = g.op("Sub", [xs[0], g.const(mean.reshape(target), f"{base}/moving_mean")], f"{base}/center")
    y = g.op("Mul", [y, g.const(scale.reshape(target), f"{base}/scale")], f"{base}/scale_mul")
    return [g.op("Add", [y, g.const(beta.reshape(target), f"{base}/beta")], f"{base}/shift")]


def _identity(g, layer, xs, shapes):
    return [xs[0]]


def _flatten(g, layer, xs, shapes):
    return [g.op("Flatten", [xs[0]], f"{layer.name}/flatten", axis=1)]


def _reshape(g, layer, xs, shapes):
    target = g.ints([0] + list(layer.target_shape), f"{layer.name}/shape")
    return [g.op("Reshape", [xs[0], target], f"{layer.name}/reshape")]


def _chain(op_type):
    def emit(g, layer, xs, shapes):
        y = xs[0]
        for x in xs[1:]:
            y = g.op(op_type, [y, x], f"{layer.name}/{op_type.lower()}")
        return [y]
    return emit


def _average(g, layer, xs, shapes):
    return [g.op("Mean", list(xs), f"{layer.name}/mean")]


def _concatenate(g, layer, xs, shapes):
    return [g.op("Concat", list(xs), f"{layer.name}/concat", axis=int(layer.axis))]


def _activation_layer(g, layer, xs, shapes):
    return [_activation(g, xs[0], layer.activation, layer.alpha, layer.name)]


def _rescaling(g, layer, xs, shapes):
    base = layer.name

    def value(v):
        return np.asarray(v, np.float32).reshape(-1) if isinstance(v, tuple) else np.float32(v)

    y = g.op("Mul", [xs[0], g.const(value(layer.scale), f"{base}/scale")], f"{base}/mul")
    return [g.op("Add", [y, g.const(value(layer.offset), f"{base}/offset")], f"{base}/add")]


def _normalization(g, layer, xs, shapes):
    base, shape = layer.name, shapes[0]
    stat_shape = layer._stat_shape(shape)
    keep = layer._keep(shape)
    if layer.input_mean is not None:
        mean, var = layer._constants(stat_shape)
    else:
        mean, var = layer.adapt_mean.numpy(), layer.adapt_variance.numpy()
    full = [1] * len(shape)
    for axis, size in zip(keep, stat_shape):
        full[axis] = size
    target = full[1:] if full[1:] else [1]
    std = np.maximum(np.sqrt(np.asarray(var, np.float32)), np.float32(1e-7)).reshape(target)
    mean = np.asarray(mean, np.float32).reshape(target)
    if layer.invert:
        y = g.op("Mul", [xs[0], g.const(std, f"{base}/std")], f"{base}/mul")
        return [g.op("Add", [y, g.const(mean, f"{base}/mean")], f"{base}/add")]
    y = g.op("Sub", [xs[0], g.const(mean, f"{base}/mean")], f"{base}/sub")
    return [g.op("Div", [y, g.const(std, f"{base}/std")], f"{base}/div")]


def _resize(g, layer, x, shape, window, out_hw, interpolation):
    """The (top, left, height, width) `window` of NHWC `x` resized to out_hw."""
    base = layer.name
    top, left, ch, cw = window
    _, h, w, c = shape
    if top < 0 or left < 0 or top + ch > h or left + cw > w:
        raise ValueError(f"layer '{layer.name}' ({type(layer).__name__}) pads to the aspect "
                         "ratio, which has no ONNX form in pynn's exporter")
    if (top, left, ch, cw) != (0, 0, h, w):
        x = g.op("Slice", [x, g.ints([top, left], f"{base}/starts"),
                           g.ints([top + ch, left + cw], f"{base}/ends"),
                           g.ints([1, 2], f"{base}/axes")], f"{base}/crop")
    if (ch, cw) == tuple(out_hw):
        return x
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"layer '{layer.name}' ({type(layer).__name__}): interpolation "
                         f"{interpolation!r} has no ONNX form in pynn's exporter (bilinear and "
                         "nearest have)")
    batch = g.op("Slice", [g.op("Shape", [x], f"{base}/shape"), g.ints([0], f"{base}/b0"),
                           g.ints([1], f"{base}/b1")], f"{base}/batch")
    sizes = g.op("Concat", [batch, g.ints([c, out_hw[0], out_hw[1]], f"{base}/chw")],
                 f"{base}/sizes", axis=0)
    attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"} \
        if interpolation == "bilinear" else \
        {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
         "nearest_mode": "round_prefer_ceil"}
    y = g.op("Resize", [_nchw(g, x, base), "", "", sizes], f"{base}/resize", **attrs)
    return _nhwc(g, y, base)


def _resizing(g, layer, xs, shapes):
    _, h, w, _ = shapes[0]
    return [_resize(g, layer, xs[0], shapes[0], layer._window(h, w), (layer.height, layer.width),
                    layer.interpolation)]


def _center_crop(g, layer, xs, shapes):
    from ..layers.image_preprocessing import _crop_window
    _, h, w, _ = shapes[0]
    if h >= layer.height and w >= layer.width:
        window = ((h - layer.height) // 2, (w - layer.width) // 2, layer.height, layer.width)
    else:
        window = _crop_window(h, w, layer.height, layer.width)
    return [_resize(g, layer, xs[0], shapes[0], window, (layer.height, layer.width), "bilinear")]


def _random_crop(g, layer, xs, shapes):         # inference: the centred window, resized
    from ..layers.image_preprocessing import _crop_window
    _, h, w, _ = shapes[0]
    return [_resize(g, layer, xs[0], shapes[0], _crop_window(h, w, layer.height, layer.width),
                    (layer.height, layer.width), "bilinear")]


# ---- engineer D (#16): 1-D convolution and pooling, global max pooling, RepeatVector ----------
# Sequences (N, L, C) transpose to ONNX's (N, C, L) around a 1-D Conv / pool and back.

def _ncl(g, x, base, name):
    return g.op("Transpose", [x], f"{base}/{name}", perm=[0, 2, 1])


def _pads_1d(layer, length, window, dilation=1):
    out, pad = layer._geometry_1d(length)
    span = dilation * (window - 1) + 1
    total = max((out - 1) * layer.strides[0] + span - length, 0) if layer.padding != "valid" else 0
    return [pad, max(total - pad, 0)]


def _conv1d(g, layer, xs, shapes):
    base = layer.name
    # Keras's (K, C_in / groups, F) -> ONNX's (F, C_in / groups, K), as torch's conv1d
    kernel = np.ascontiguousarray(layer._kernel.numpy().transpose(2, 1, 0))
    inputs = [_ncl(g, xs[0], base, "to_ncl"), g.const(kernel, f"{base}/kernel")]
    if layer.use_bias:
        inputs.append(g.const(layer._bias.numpy(), f"{base}/bias"))
    k, d = layer.kernel_size[0], layer.dilation_rate[0]
    y = g.op("Conv", inputs, f"{base}/conv", kernel_shape=[k], strides=list(layer.strides),
             pads=_pads_1d(layer, shapes[0][1], k, d), dilations=[d], group=layer.groups)
    return [_activation(g, _ncl(g, y, base, "to_nlc"), layer.activation, layer.alpha, base)]


def _pooling1d(op_type):
    def emit(g, layer, xs, shapes):
        base = layer.name
        attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides),
                 "pads": _pads_1d(layer, shapes[0][1], layer.pool_size[0])}
        if op_type == "AveragePool":
            attrs["count_include_pad"] = 0
        y = g.op(op_type, [_ncl(g, xs[0], base, "to_ncl")], f"{base}/pool", **attrs)
        return [_ncl(g, y, base, "to_nlc")]
    return emit


def _reduce(g, op_type, x, axes, keepdims, base):
    if op_type == "ReduceMean":
        return _reduce_mean(g, x, axes, keepdims, base)
    if g.opset >= 18:                       # ReduceMax's axes: an input from opset 18 on
        return g.op(op_type, [x, g.ints(axes, f"{base}/axes")], base, keepdims=keepdims)
    return g.op(op_type, [x], base, axes=list(axes), keepdims=keepdims)


def _global_pooling(op_type):
    def emit(g, layer, xs, shapes):
        axes = list(range(1, len(shapes[0]) - 1))
        return [_reduce(g, op_type, xs[0], axes, int(layer.keepdims),
                        f"{layer.name}/{op_type[6:].lower()}")]
    return emit


def _repeat_vector(g, layer, xs, shapes):
    base = layer.name
    x = g.op("Unsqueeze", [xs[0], g.ints([1], f"{base}/axis")], f"{base}/unsqueeze")
    return [g.op("Tile", [x, g.ints([1, layer.n, 1], f"{base}/repeats")], f"{base}/tile")]


# ---- Embedding, Masking, TimeDistributed (engineer G) -------------------------------------

def _embedding(g, layer, xs, shapes):
    """Gather of the table's rows: the ids (float32 or an integer input) cast to int64."""
    base = layer.name
    ids = g.op("Cast", [xs[0]], f"{base}/ids", to=g.onnx.TensorProto.INT64)
    return [g.op("Gather", [g.const(layer.embeddings.numpy(), f"{base}/embeddings"), ids],
                 f"{base}/gather", axis=0)]


def _reduce_max_last(g, x, base):
    if g.opset >= 18:
        return g.op("ReduceMax", [x, g.ints([-1], f"{base}/axes")], base, keepdims=1)
    return g.op("ReduceMax", [x], base, axes=[-1], keepdims=1)


def _masking(g, layer, xs, shapes):
    """x * Cast(ReduceMax(Cast(Not(Equal(x, mask_value))))) over the last axis."""
    base = layer.name
    differs = g.op("Not", [g.op("Equal", [xs[0], g.const(layer.mask_value, f"{base}/value")],
                                f"{base}/equal")], f"{base}/differs")
    keep = _reduce_max_last(g, g.op("Cast", [differs], f"{base}/as_float",
                                    to=g.onnx.TensorProto.FLOAT), f"{base}/any")
    return [g.op("Mul", [xs[0], keep], f"{base}/mul")]


def _time_distributed(g, layer, xs, shapes):
    """Reshape (N, T, ...) to (N * T, ...), the wrapped layer, and back."""
    base, shape = layer.name, shapes[0]
    handler = _handlers().get(type(layer.layer))
    if handler is None:
        raise ValueError(f"layer '{layer.layer.name}' ({type(layer.layer).__name__}) inside "
                         f"'{layer.name}' has no ONNX form in pynn's exporter")
    rows = g.op("Reshape", [xs[0], g.ints([-1] + list(shape[2:]), f"{base}/rows_shape")],
                f"{base}/to_rows")
    child = (None,) + tuple(shape[2:])
    (y,) = handler(g, layer.layer, [rows], [child])
    out = layer.layer.compute_output_shape(child)
    return [g.op("Reshape", [y, g.ints([-1, shape[1]] + list(out[1:]), f"{base}/steps_shape")],
                 f"{base}/to_steps")]


# ---- transposed convolution, upsampling, padding, cropping (issue 16, part C) -----------------

def _conv2d_transpose(g, layer, xs, shapes):
    """ConvTranspose over NCHW: the Keras kernel (KH, KW, F, C_in) is ONNX's (C_in, F, KH,
    KW); ONNX's full output ((in - 1) s + k) loses pad_top at the start and is cut (pads) or
    extended with zeros (output_padding) at the end to Keras's size."""
    base = layer.name
    (oh, ow), (pt, pl) = layer._geometry(shapes[0])
    _, h, w, _ = shapes[0]
    (kh, kw), (sh, sw) = layer._dilated_size(), layer.strides
    end = [(h - 1) * sh + kh - pt - oh, (w - 1) * sw + kw - pl - ow]
    kernel = np.ascontiguousarray(layer._kernel.numpy().transpose(3, 2, 0, 1))
    inputs = [_nchw(g, xs[0], base), g.const(kernel, f"{base}/kernel")]
    if layer.use_bias:
        inputs.append(g.const(layer._bias.numpy(), f"{base}/bias"))
    y = g.op("ConvTranspose", inputs, f"{base}/conv_transpose",
             kernel_shape=list(layer.kernel_size), strides=[sh, sw],
             pads=[pt, pl, max(end[0], 0), max(end[1], 0)],
             output_padding=[max(-end[0], 0), max(-end[1], 0)],
             dilations=list(layer.dilation_rate), group=1)
    return [_activation(g, _nhwc(g, y, base), layer.activation, layer.alpha, base)]


def _nearest_repeat(g, layer, x, scales):
    """Resize "nearest" by integer scales on any axes: output i reads input floor(i / s)
    (asymmetric coordinates, floor), a repeat."""
    base = layer.name
    return g.op("Resize", [x, "", g.const(np.asarray(scales, np.float32), f"{base}/scales")],
                f"{base}/repeat", mode="nearest", coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")


def _up_sampling2d(g, layer, xs, shapes):
    _, h, w, _ = shapes[0]
    if layer.interpolation == "nearest":
        return [_nearest_repeat(g, layer, xs[0], [1.0, layer.size[0], layer.size[1], 1.0])]
    return [_resize(g, layer, xs[0], shapes[0], (0, 0, h, w),
                    (h * layer.size[0], w * layer.size[1]), "bilinear")]


def _up_sampling1d(g, layer, xs, shapes):
    return [_nearest_repeat(g, layer, xs[0], [1.0, layer.size, 1.0])]


def _zero_padding2d(g, layer, xs, shapes):
    base = layer.name
    (t, b), (l, r) = layer.padding
    return [g.op("Pad", [xs[0], g.ints([0, t, l, 0, 0, b, r, 0], f"{base}/pads")], f"{base}/pad",
                 mode="constant")]


def _cropping2d(g, layer, xs, shapes):
    base = layer.name
    (t, b), (l, r) = layer.cropping
    _, h, w, _ = shapes[0]
    return [g.op("Slice", [xs[0], g.ints([t, l], f"{base}/starts"),
                           g.ints([h - b, w - r], f"{base}/ends"),
                           g.ints([1, 2], f"{base}/axes")], f"{base}/crop")]


def _part_c_handlers(L):
    return {L.Conv2DTranspose: _conv2d_transpose, L.UpSampling2D: _up_sampling2d,
            L.UpSampling1D: _up_sampling1d, L.ZeroPadding2D: _zero_padding2d,
            L.Cropping2D: _cropping2d}


# ---- convolution variants (engineer B) ----
def _conv_any(g, layer, x, shape, kernel_onnx, bias, group):
    """A Conv node with the layer's strides, padding and dilation on x (NHWC, or NCHW for
    channels_first: then no transposes), the kernel in ONNX's (F, C / group, KH, KW)."""
    from ..layers.conv import dilated_window, to_nhwc_shape
    base = layer.name
    first = layer.data_format == "channels_first"
    nhwc = to_nhwc_shape(shape, layer.data_format)
    inputs = [x if first else _nchw(g, x, base), g.const(kernel_onnx, f"{base}/kernel")]
    if bias is not None:
        inputs.append(g.const(bias, f"{base}/bias"))
    dil = list(getattr(layer, "dilation_rate", (1, 1)))
    return g.op("Conv", inputs, f"{base}/conv", kernel_shape=list(kernel_onnx.shape[2:]),
                strides=list(layer.strides),
                pads=_window_pads(layer, nhwc, dilated_window(layer.kernel_size, dil)),
                dilations=dil, group=int(group))


def _out(g, layer, y):
    base = layer.name
    y = y if layer.data_format == "channels_first" else _nhwc(g, y, base)
    return [_activation(g, y, layer.activation, layer.alpha, base)]


def _conv2d_variant(g, layer, xs, shapes):
    """Conv2D with dilation, groups or channels_first (Conv's dilations and group)."""
    kernel = np.ascontiguousarray(layer._kernel.numpy().transpose(3, 2, 0, 1))
    bias = layer._bias.numpy() if layer.use_bias else None
    return _out(g, layer, _conv_any(g, layer, xs[0], shapes[0], kernel, bias, layer.groups))


def _depthwise_onnx(layer):
    k = layer._depthwise_kernel.numpy()                   # (KH, KW, C, dm)
    kh, kw, c, dm = k.shape
    return np.ascontiguousarray(k.transpose(2, 3, 0, 1).reshape(c * dm, 1, kh, kw)), c


def _depthwise_conv2d(g, layer, xs, shapes):
    """DepthwiseConv2D: one Conv with group = C."""
    kernel, c = _depthwise_onnx(layer)
    bias = layer._bias.numpy() if layer.use_bias else None
    return _out(g, layer, _conv_any(g, layer, xs[0], shapes[0], kernel, bias, c))


def _separable_conv2d(g, layer, xs, shapes):
    """SeparableConv2D: the depthwise Conv (group = C), then a 1x1 Conv with the bias."""
    kernel, c = _depthwise_onnx(layer)
    d = _conv_any(g, layer, xs[0], shapes[0], kernel, None, c)
    pk = np.ascontiguousarray(layer._pointwise_kernel.numpy().transpose(3, 2, 0, 1))
    inputs = [d, g.const(pk, f"{layer.name}/pointwise_kernel")]
    if layer.use_bias:
        inputs.append(g.const(layer._bias.numpy(), f"{layer.name}/bias"))
    y = g.op("Conv", inputs, f"{layer.name}/pointwise", kernel_shape=[1, 1], strides=[1, 1],
             pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
    return _out(g, layer, y)


def _permute(g, layer, xs, shapes):
    return [g.op("Transpose", [xs[0]], f"{layer.name}/transpose", perm=[0] + list(layer.dims))]


def _conv_variant_handlers(L):
    return {L.Conv2D: lambda g, layer, xs, shapes: (
        _conv2d(g, layer, xs, shapes) if layer.groups == 1 and
        tuple(layer.dilation_rate) == (1, 1) and layer.data_format == "channels_last"
        else _conv2d_variant(g, layer, xs, shapes)),
        L.DepthwiseConv2D: _depthwise_conv2d, L.SeparableConv2D: _separable_conv2d,
        L.Permute: _permute}
# ---- end of convolution variants (engineer B) ----


# ---- recurrent layers (engineer H): ONNX's LSTM, GRU and RNN ops --------------------------------
# Keras's weights to ONNX's: W = kernel^T (gates, features), R = recurrent_kernel^T, one
# direction; LSTM gate blocks i, f, c, o -> ONNX's i, o, f, c; GRU z, r, h is ONNX's order,
# with linear_before_reset=1 for reset_after; B = [input bias, recurrent bias] (LSTM and
# SimpleRNN: the recurrent half 0).  ONNX's ops run time-major: the input is transposed in and
# the sequence out; go_backwards runs direction "reverse", whose sequence ONNX gives in time
# order, so it is flipped into Keras's processing order (unless a Bidirectional wants time
# order).
_ONNX_RNN_ACTS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def _rnn_core(g, layer, x, shape, time_order):
    """(sequence (batch, T, units) or None, h (batch, units), c or None) of one recurrent
    layer on x."""
    base, u, steps = layer.name, layer.units, shape[1]
    cell = layer._cell
    k, rk = layer._kernel.numpy(), layer._recurrent_kernel.numpy()
    blocks = {1: [0, 3, 1, 2], 2: [0, 1, 2], 0: [0]}[cell]

    def reorder(a):
        return np.concatenate([a[..., j * u:(j + 1) * u] for j in blocks], axis=-1)

    # ONNX's activation lists: LSTM f, g, h; GRU f, g; RNN f
    names = {1: [layer.recurrent_activation, layer.activation, layer.activation],
             2: [layer.recurrent_activation, layer.activation], 0: [layer.activation]}[cell]
    if any(a not in _ONNX_RNN_ACTS for a in names):
        raise ValueError(f"export: {type(layer).__name__} '{base}': activation "
                         f"{[a for a in names if a not in _ONNX_RNN_ACTS][0]!r} has no form in "
                         "ONNX's recurrent ops here (sigmoid, tanh and relu do)")
    w = g.const(reorder(k).T[None], f"{base}/W")
    r = g.const(reorder(rk).T[None], f"{base}/R")
    inputs = [g.op("Transpose", [x], f"{base}/time_major", perm=[1, 0, 2]), w, r]
    if layer._bias is not None:
        b = layer._bias.numpy()
        b = np.concatenate([b[0], b[1]]) if cell == 2 else \
            np.concatenate([b, np.zeros_like(b)])
        inputs.append(g.const(reorder(b.reshape(2, -1)).reshape(1, -1), f"{base}/B"))
    op_type = {0: "RNN", 1: "LSTM", 2: "GRU"}[cell]
    outs = [g.fresh(f"{base}/Y"), g.fresh(f"{base}/Y_h")] + \
        ([g.fresh(f"{base}/Y_c")] if cell == 1 else [])
    attrs = dict(hidden_size=u, direction="reverse" if layer.go_backwards else "forward",
                 activations=[_ONNX_RNN_ACTS[a] for a in names])
    if cell == 2:
        attrs["linear_before_reset"] = 1
    g.nodes.append(g.helper.make_node(op_type, inputs, outs, name=g.fresh(f"{base}:{op_type}"),
                                      **attrs))
    flat = g.ints([-1, u], f"{base}/state_shape")
    h = g.op("Reshape", [outs[1], flat], f"{base}/h")
    c = g.op("Reshape", [outs[2], flat], f"{base}/c") if cell == 1 else None
    seq = None
    if layer.return_sequences:
        y = g.op("Reshape", [outs[0], g.ints([0, -1, u], f"{base}/seq_shape")], f"{base}/y3")
        seq = g.op("Transpose", [y], f"{base}/seq", perm=[1, 0, 2])
        if layer.go_backwards and not time_order:
            seq = g.op("Gather", [seq, g.ints(list(range(steps - 1, -1, -1)), f"{base}/flip")],
                       f"{base}/processing_order", axis=1)
    return seq, h, c


def _rnn_layer(g, layer, xs, shapes):
    seq, h, c = _rnn_core(g, layer, xs[0], shapes[0], layer._time_order)
    outs = [seq if layer.return_sequences else h]
    if layer.return_state:
        outs += [h] + ([c] if c is not None else [])
    return outs


def _bidirectional(g, layer, xs, shapes):
    f = _rnn_core(g, layer.forward_layer, xs[0], shapes[0], False)
    b = _rnn_core(g, layer.backward_layer, xs[0], shapes[0], True)
    fo, bo = (f[0], b[0]) if layer.return_sequences else (f[1], b[1])
    base, mode = layer.name, layer.merge_mode
    if mode is None:
        outs = [fo, bo]
    elif mode == "concat":
        outs = [g.op("Concat", [fo, bo], f"{base}/concat", axis=-1)]
    elif mode == "sum":
        outs = [g.op("Add", [fo, bo], f"{base}/sum")]
    elif mode == "mul":
        outs = [g.op("Mul", [fo, bo], f"{base}/mul")]
    else:
        outs = [g.op("Mul", [g.op("Add", [fo, bo], f"{base}/sum"),
                             g.const(0.5, f"{base}/half")], f"{base}/ave")]
    if layer.return_state:
        outs += [s for s in f[1:] + b[1:] if s is not None]
    return outs


def _handlers():
    from .. import layers as L
    from .onnx_norm import handlers as _norm_handlers   # engineer E
    return {
        L.Embedding: _embedding, L.Masking: _masking,          # engineer G
        L.TimeDistributed: _time_distributed,
        L.Dense: _dense, L.Conv2D: _conv2d,
        L.MaxPooling2D: _pooling("MaxPool"), L.AveragePooling2D: _pooling("AveragePool"),
        L.GlobalAveragePooling2D: _global_average_pooling,
        L.BatchNormalization: _batch_normalization, L.Dropout: _identity,
        L.Flatten: _flatten, L.Reshape: _reshape,
        L.Add: _chain("Add"), L.Subtract: _chain("Sub"), L.Multiply: _chain("Mul"),
        L.Maximum: _chain("Max"), L.Minimum: _chain("Min"), L.Average: _average,
        L.Concatenate: _concatenate,
        L.Activation: _activation_layer, L.ReLU: _activation_layer,
        L.LeakyReLU: _activation_layer, L.Softmax: _activation_layer,
        L.Rescaling: _rescaling, L.Normalization: _normalization,
        L.Resizing: _resizing, L.CenterCrop: _center_crop, L.RandomCrop: _random_crop,
        # augmentation: the identity at inference, as in Keras
        L.RandomFlip: _identity, L.RandomRotation: _identity, L.RandomZoom: _identity,
        L.RandomTranslation: _identity, L.RandomContrast: _identity,
        L.RandomBrightness: _identity,
        # activations (engineer A)
        L.ReLU: _relu_layer, L.Softmax: _softmax_layer, L.ELU: _activation_layer,
        L.PReLU: _prelu,
        # engineer D (#16)
        L.Conv1D: _conv1d, L.MaxPooling1D: _pooling1d("MaxPool"),
        L.AveragePooling1D: _pooling1d("AveragePool"),
        L.GlobalMaxPooling1D: _global_pooling("ReduceMax"),
        L.GlobalMaxPooling2D: _global_pooling("ReduceMax"),
        L.GlobalAveragePooling1D: _global_pooling("ReduceMean"),
        L.RepeatVector: _repeat_vector,
        L.ActivityRegularization: _identity,   # engineer F: a training-only penalty
        # engineer E: normalization and noise layers (onnx_norm.py)
        **_norm_handlers(),
        # transposed convolution, upsampling, padding, cropping (issue 16, part C)
        **_part_c_handlers(L),
        **_conv_variant_handlers(L),   # engineer B: convolution variants
        # recurrent layers (engineer H)
        L.LSTM: _rnn_layer, L.GRU: _rnn_layer, L.SimpleRNN: _rnn_layer,
        L.Bidirectional: _bidirectional,
    }


def _unsupported(model, handlers):
    """The layers (recursively, nested models included) that have no ONNX form."""
    from ..layers.input_layer import InputLayer
    from ..models import Model
    found = []
    for node in model.nodes:
        layer = node.layer
        if node.is_input or isinstance(layer, InputLayer):
            continue
        if isinstance(layer, Model) and layer.nodes:
            found += _unsupported(layer, handlers)
        elif type(layer) not in handlers:
            found.append(f"'{layer.name}' ({type(layer).__name__})")
    return found


def _emit(g, model, env, handlers, shapes):
    """Add the nodes of `model`'s graph; env: id(tensor) -> ONNX value name, shapes:
    id(tensor) -> its shape in the exported graph (the model's, or where the model has free
    axes the concrete sizes the signature gave, carried through compute_output_shape)."""
    from ..models import Model
    for node in model.nodes:
        if node.is_input:
            continue
        layer = node.layer
        xs = [env[id(t)] for t in node.input_tensors]
        in_shapes = [shapes.get(id(t), tuple(t.shape)) for t in node.input_tensors]
        if isinstance(layer, Model):
            inner = {id(t): x for t, x in zip(layer.inputs, xs)}
            inner_shapes = {id(t): s for t, s in zip(layer.inputs, in_shapes)}
            _emit(g, layer, inner, handlers, inner_shapes)
            outs = [inner[id(t)] for t in layer.outputs]
            out_shapes = [inner_shapes[id(t)] for t in layer.outputs]
        else:
            outs = handlers[type(layer)](g, layer, xs, in_shapes)
            out_shapes = _output_shapes(layer, node, in_shapes)
        for t, name, shape in zip(node.output_tensors, outs, out_shapes):
            env[id(t)] = name
            shapes[id(t)] = shape


def _output_shapes(layer, node, in_shapes):
    """The shapes of a node's outputs for inputs of `in_shapes`: the node's own where they
    are the node's input shapes, else the layer's compute_output_shape of them."""
    if all(tuple(t.shape) == s for t, s in zip(node.input_tensors, in_shapes)):
        return [tuple(t.shape) for t in node.output_tensors]
    out = layer.compute_output_shape(in_shapes if len(in_shapes) > 1 else in_shapes[0])
    if len(node.output_tensors) == 1:
        return [tuple(out)]
    return [tuple(o) for o in out]


def _signature_shapes(model, input_signature):
    """The (batch, *features) shape of each input: the batch None (dynamic) unless the
    signature fixes it; the features the model's, a free axis (None) the signature's size
    (an ONNX graph of pynn's is exported for concrete feature sizes)."""
    shapes = [tuple(t.shape) for t in model.inputs]
    if input_signature is None:
        for t, shape in zip(model.inputs, shapes):
            if any(d is None for d in shape[1:]):
                raise ValueError(
                    f"export: model '{model.name}' has an input of shape {shape} with a free "
                    "axis; pass input_signature with its size, e.g. input_signature="
                    f"[{(None,) + tuple(8 if d is None else d for d in shape[1:])}]")
        return shapes
    sig = input_signature
    if not isinstance(sig, (list, tuple)) or sig and all(isinstance(d, (int, type(None)))
                                                          for d in sig):
        sig = [sig]
    if len(sig) != len(shapes):
        raise ValueError(f"export: input_signature describes {len(sig)} inputs, model "
                         f"'{model.name}' has {len(shapes)}")
    out = []
    for spec, shape in zip(sig, shapes):
        given = tuple(getattr(spec, "shape", spec))
        if len(given) != len(shape) or any(
                d is not None and m is not None and int(d) != m for d, m in zip(given, shape)) \
                or given[0] is not None and int(given[0]) < 1:
            raise ValueError(f"export: input_signature shape {given} does not match the model's "
                             f"input shape {shape}")
        free = [i for i, (d, m) in enumerate(zip(given, shape)) if i and m is None and
                (d is None or int(d) < 1)]
        if free:
            raise ValueError(f"export: input_signature shape {given} leaves the model's free "
                             f"axis {free[0]} of input shape {shape} without a positive size")
        out.append((None if given[0] is None else int(given[0]),) +
                   tuple(int(d) if m is None else m for d, m in zip(given[1:], shape[1:])))
    return out


def build_onnx(model, opset=None, input_signature=None):
    """The onnx.ModelProto of `model`'s inference graph, checked."""
    onnx, helper, _ = _onnx()
    from ..models import Model
    if not isinstance(model, Model) or not model.built or not model.inputs:
        raise ValueError("export: the model must be built (give it an Input) before export")
    latest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ValueError(f"export: opset must be an int from {MIN_OPSET} to {latest} (the "
                         f"installed onnx's newest), received opset={opset!r}")
    handlers = _handlers()
    missing = _unsupported(model, handlers)
    if missing:
        raise ValueError(f"export: model '{model.name}' has layers with no ONNX form: "
                         f"{', '.join(missing)}")
    shapes = _signature_shapes(model, input_signature)
    in_names, out_names = list(model.input_names), list(model.output_names)
    seen = set(in_names)
    for i, n in enumerate(out_names):           # two outputs of one layer: distinct names
        name, k = n, 1
        while name in seen:
            name = f"{n}_{k}"
            k += 1
        out_names[i] = name
        seen.add(name)
    g = _Graph(opset, seen)
    env = {id(t): name for t, name in zip(model.inputs, in_names)}
    env_shapes = {id(t): (None,) + tuple(s[1:]) for t, s in zip(model.inputs, shapes)}
    _emit(g, model, env, handlers, env_shapes)

    def value_info(name, shape, dtype="float32"):
        dims = ["batch" if d is None else int(d) for d in shape]
        # integer inputs (Embedding's ids; engineer G) keep their dtype
        elem = {"int32": onnx.TensorProto.INT32, "int64": onnx.TensorProto.INT64}.get(
            dtype, onnx.TensorProto.FLOAT)
        return helper.make_tensor_value_info(name, elem, dims)

    for t, name in zip(model.outputs, out_names):
        g.nodes.append(helper.make_node("Identity", [env[id(t)]], [name],
                                        name=g.fresh(f"{name}:Identity")))
    batch = {s[0] for s in shapes}
    out_batch = batch.pop() if len(batch) == 1 else None
    graph = helper.make_graph(
        g.nodes, model.name, [value_info(n, s, getattr(t, "dtype", "float32"))
                              for n, s, t in zip(in_names, shapes, model.inputs)],
        [value_info(n, (out_batch,) + tuple(env_shapes[id(t)][1:]))
         for n, t in zip(out_names, model.outputs)],
        initializer=g.initializers)
    from .. import __version__ as version
    proto = helper.make_model(graph, producer_name="pynn", producer_version=version,
                              opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = min(proto.ir_version, _max_ir_version(onnx, opset))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _max_ir_version(onnx, opset):
    """The IR version of the ONNX release that introduced `opset` (so older runtimes read
    the file), from onnx's own table."""
    best = None
    for _, ir, ops, *_ in onnx.helper.VERSION_TABLE:
        if ops == opset and (best is None or ir < best):
            best = ir
    return best if best is not None else onnx.IR_VERSION


def export_onnx(model, filepath, opset=None, input_signature=None):
    proto = build_onnx(model, opset=opset, input_signature=input_signature)
    path = os.fspath(filepath)
    from .. import saving
    saving._atomic_write_bytes(path, proto.SerializeToString(), overwrite=True)   # as save()
    return path
