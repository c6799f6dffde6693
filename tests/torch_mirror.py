"""A pynn model's forward pass written again in PyTorch (float64), so torch's autograd gives
the gradients pynn's plan must reproduce.

It shares no code with pynn's computation: it walks the model's graph (nested models
inlined, shared layers called again with the same torch parameters) and applies each
layer from its Keras meaning and config.  Tensors stay channels-last (NHWC) as in pynn;
convolution and pooling convert to torch's NCHW and back.  Supported: Dense, Conv2D,
MaxPooling2D/AveragePooling2D ("valid"), GlobalAveragePooling2D, BatchNormalization
(training mode: batch statistics), Flatten, Reshape, Activation, the merge layers and
Concatenate; Dropout only with rate 0 or in inference; Conv1D (causal too), MaxPooling1D,
AveragePooling1D, GlobalMaxPooling1D/2D, GlobalAveragePooling1D (no mask) RepeatVector;
Embedding (torch's F.embedding), Masking, TimeDistributed (engineer G);
LayerNormalization, GroupNormalization, UnitNormalization (and the noise layers in
inference); Conv2DTranspose,
UpSampling2D, UpSampling1D, ZeroPadding2D and Cropping2D (part C).
"""
import numpy as np

torch = __import__("pytest").importorskip("torch")
F = torch.nn.functional

ACT = {
    "linear": lambda z: z, "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "softmax": lambda z: torch.softmax(z, dim=-1), "leaky_relu": None,
    "gelu": lambda z: F.gelu(z),
}


# activations (engineer A): torch's own functions where torch has the same one (its
# hardsigmoid is relu6(x + 3) / 6, its hardswish x of that; selu's constants are the same)
ACT.update({
    "elu": None, "selu": F.selu, "softplus": F.softplus, "softsign": F.softsign,
    "silu": F.silu, "hard_sigmoid": F.hardsigmoid, "hard_silu": F.hardswish,
    "relu6": F.relu6, "mish": F.mish, "exponential": torch.exp,
    "log_softmax": lambda z: torch.log_softmax(z, dim=-1),
})


def _act(layer, z):
    if layer.activation == "leaky_relu":
        return F.leaky_relu(z, layer.alpha)
    if layer.activation == "elu":                  # activations (engineer A)
        return F.elu(z, layer.alpha)
    return ACT[layer.activation](z)


def _activation_layer(layer, x, params):
    """activations (engineer A): Keras's ReLU, Softmax (any axis), ELU and PReLU."""
    name = type(layer).__name__
    if name == "ReLU":          # clip(x [x > t], 0, max_value) - negative_slope relu(t - x)
        t = layer.threshold
        y = torch.where(x > t, x, torch.zeros_like(x)).clamp(min=0.0, max=layer.max_value)
        return y - layer.negative_slope * F.relu(t - x)
    if name == "Softmax":
        axes = layer.axis if isinstance(layer.axis, list) else [layer.axis]
        dims = tuple(a % x.ndim for a in axes)
        return torch.exp(x - torch.logsumexp(x, dim=dims, keepdim=True))
    if name == "ELU":
        return F.elu(x, layer.alpha)
    if name == "PReLU":         # relu(x) - alpha relu(-x), alpha broadcast (Keras's call)
        return F.relu(x) - params[0] * F.relu(-x)
    raise NotImplementedError(name)


def _same_pad(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _conv(layer, x, params):
    w, b = params[0], params[1] if layer.use_bias else None
    xn = x.permute(0, 3, 1, 2)
    if layer.padding == "same":
        (t, bo), (l, r) = (_same_pad(x.shape[1], layer.kernel_size[0], layer.strides[0]),
                           _same_pad(x.shape[2], layer.kernel_size[1], layer.strides[1]))
        xn = F.pad(xn, (l, r, t, bo))
    z = F.conv2d(xn, w.permute(3, 2, 0, 1), b, stride=layer.strides).permute(0, 2, 3, 1)
    return _act(layer, z)


# ---- engineer D (#16): 1-D convolution and pooling, global max pooling, RepeatVector ----------
# Sequences (N, L, C) go to torch's (N, C, L) and back.  Conv1D's kernel: Keras's
# (K, C_in / groups, F) is torch's (F, C_in / groups, K) by permute(2, 1, 0).  Padding:
# "same" as TF (the odd one on the right), "causal" a left pad of dilation (K - 1).

def _conv1d(layer, x, params):
    w, b = params[0], params[1] if layer.use_bias else None
    k, s, d = layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0]
    span = d * (k - 1) + 1
    xn = x.permute(0, 2, 1)
    if layer.padding == "same":
        xn = F.pad(xn, _same_pad(x.shape[1], span, s))
    elif layer.padding == "causal":
        xn = F.pad(xn, (span - 1, 0))
    z = F.conv1d(xn, w.permute(2, 1, 0), b, stride=s, dilation=d, groups=layer.groups)
    return _act(layer, z.permute(0, 2, 1))


def _pool1d(layer, x, params):
    p, s = layer.pool_size[0], layer.strides[0]
    xn = x.permute(0, 2, 1)
    pads = _same_pad(x.shape[1], p, s) if layer.padding == "same" else (0, 0)
    if type(layer).__name__ == "MaxPooling1D":
        y = F.max_pool1d(F.pad(xn, pads, value=-float("inf")), p, s)
    else:   # the mean over the real steps of each window (padding not counted)
        ones = torch.ones_like(xn[:1, :1])
        y = F.avg_pool1d(F.pad(xn, pads), p, s) / F.avg_pool1d(F.pad(ones, pads), p, s)
    return y.permute(0, 2, 1)


def _global_pool(reduce):
    def apply(layer, x, params):
        axes = tuple(range(1, x.ndim - 1))
        return reduce(x, axes, layer.keepdims)
    return apply


_SEQUENCE_LAYERS = {
    "Conv1D": _conv1d, "MaxPooling1D": _pool1d, "AveragePooling1D": _pool1d,
    "GlobalMaxPooling1D": _global_pool(lambda x, a, k: x.amax(dim=a, keepdim=k)),
    "GlobalMaxPooling2D": _global_pool(lambda x, a, k: x.amax(dim=a, keepdim=k)),
    "GlobalAveragePooling1D": _global_pool(lambda x, a, k: x.mean(dim=a, keepdim=k)),
    "RepeatVector": lambda layer, x, params: x[:, None, :].expand(-1, layer.n, -1),
}


# ---- convolution variants (engineer B) ----
# Keras -> torch weight conversions:
#   Conv2D kernel (KH, KW, C / groups, F)     -> (F, C / groups, KH, KW): permute(3, 2, 0, 1),
#                                                F.conv2d(groups=groups, dilation=dilation)
#   DepthwiseConv2D kernel (KH, KW, C, dm)    -> (C * dm, 1, KH, KW): permute(2, 3, 0, 1) then
#                                                reshape (output channel c * dm + m), groups=C
#   SeparableConv2D pointwise (1, 1, C*dm, F) -> (F, C * dm, 1, 1): permute(3, 2, 0, 1)
#   channels_first: the layer's input and output are NCHW (torch's own layout).
def _conv_any(layer, x, w_torch, b, groups):
    """layer's padding, strides and dilation applied by torch to x (NHWC or NCHW as the
    layer's data_format says); returns the same layout."""
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    xn = x if first else x.permute(0, 3, 1, 2)
    dil = tuple(getattr(layer, "dilation_rate", (1, 1)))
    if layer.padding == "same":
        ek = [(k - 1) * d + 1 for k, d in zip(layer.kernel_size, dil)]
        (t, bo), (l, r) = (_same_pad(xn.shape[2], ek[0], layer.strides[0]),
                           _same_pad(xn.shape[3], ek[1], layer.strides[1]))
        xn = F.pad(xn, (l, r, t, bo))
    z = F.conv2d(xn, w_torch, b, stride=layer.strides, dilation=dil, groups=groups)
    return z if first else z.permute(0, 2, 3, 1)


def _depthwise_torch(k):
    kh, kw, c, dm = k.shape
    return k.permute(2, 3, 0, 1).reshape(c * dm, 1, kh, kw)


def apply_conv_variant(layer, x, params):
    name = type(layer).__name__
    if name == "Conv2D":
        w, b = params[0], params[1] if layer.use_bias else None
        return _act(layer, _conv_any(layer, x, w.permute(3, 2, 0, 1), b, layer.groups))
    if name == "DepthwiseConv2D":
        w, b = params[0], params[1] if layer.use_bias else None
        return _act(layer, _conv_any(layer, x, _depthwise_torch(w), b, w.shape[2]))
    if name == "SeparableConv2D":
        dk, pk, b = params[0], params[1], params[2] if layer.use_bias else None
        d = _conv_any(layer, x, _depthwise_torch(dk), None, dk.shape[2])
        first = layer.data_format == "channels_first"
        z = F.conv2d(d if first else d.permute(0, 3, 1, 2), pk.permute(3, 2, 0, 1), b)
        return _act(layer, z if first else z.permute(0, 2, 3, 1))
    if name == "Permute":
        return x.permute((0,) + tuple(layer.dims))
    return None
# ---- end of convolution variants (engineer B) ----


def apply_layer(layer, inputs, params, training):
    from pynn import layers as L
    x = inputs[0]
    name = type(layer).__name__
    if name in ("DepthwiseConv2D", "SeparableConv2D", "Permute") or (   # engineer B
            name == "Conv2D" and (layer.groups != 1 or tuple(layer.dilation_rate) != (1, 1)
                                  or layer.data_format == "channels_first")):
        return apply_conv_variant(layer, x, params)
    if name == "Dense":
        return _act(layer, x @ params[0] + (params[1] if layer.use_bias else 0))
    if name == "Conv2D":
        return _conv(layer, x, params)
    if name in ("MaxPooling2D", "AveragePooling2D"):
        assert layer.padding == "valid"
        pool = F.max_pool2d if name == "MaxPooling2D" else F.avg_pool2d
        return pool(x.permute(0, 3, 1, 2), layer.pool_size, layer.strides).permute(0, 2, 3, 1)
    if name == "GlobalAveragePooling2D":
        y = x.mean(dim=(1, 2))
        return y[:, None, None, :] if layer.keepdims else y
    if name == "BatchNormalization":
        gamma = params[0] if layer.scale else 1.0
        beta = params[1 if layer.scale else 0] if layer.center else 0.0
        axes = tuple(range(x.ndim - 1))
        if training and layer.trainable:
            mean = x.mean(dim=axes)
            var = ((x - mean) ** 2).mean(dim=axes)
        else:
            mean, var = params[-2], params[-1]
        return (x - mean) / torch.sqrt(var + layer.epsilon) * gamma + beta
    if name in ("Flatten", "Reshape"):
        return x.reshape((x.shape[0],) + tuple(layer.compute_output_shape(
            (None,) + tuple(x.shape[1:])))[1:])
    if name in ("ReLU", "Softmax", "ELU", "PReLU"):    # activations (engineer A)
        return _activation_layer(layer, x, params)
    if name in ("Activation", "LeakyReLU", "ReLU", "Softmax"):
        return _act(layer, x)
    if name == "Dropout":
        assert layer.rate == 0 or not training
        return x
    if name == "Add":
        return sum(inputs[1:], inputs[0])
    if name == "Subtract":
        return inputs[0] - inputs[1]
    if name == "Multiply":
        y = inputs[0]
        for t in inputs[1:]:
            y = y * t
        return y
    if name == "Average":
        return sum(inputs[1:], inputs[0]) / len(inputs)
    if name in ("Maximum", "Minimum"):
        y = inputs[0]
        for t in inputs[1:]:
            y = torch.maximum(y, t) if name == "Maximum" else torch.minimum(y, t)
        return y
    if name == "Concatenate":
        return torch.cat(inputs, dim=layer.axis)
    if name in _SEQUENCE_LAYERS:          # engineer D (#16)
        return _SEQUENCE_LAYERS[name](layer, x, params)
    # ---- engineer G: Embedding, Masking, TimeDistributed ----
    if name == "Embedding":          # ids arrive as float64 holding integers
        return F.embedding(x.long(), params[0])
    if name == "Masking":
        return x * (x != layer.mask_value).any(dim=-1, keepdim=True).to(x.dtype)
    if name == "TimeDistributed":    # the inner layer on N * T rows, then back
        n, t = x.shape[0], x.shape[1]
        y = apply_layer(layer.layer, [x.reshape((n * t,) + tuple(x.shape[2:]))], params,
                        training)
        return y.reshape((n, t) + tuple(y.shape[1:]))
    # engineer E: normalization and noise layers.  Keras's gamma/beta have the normalized
    # axes' shape (LayerNormalization) or one per channel (GroupNormalization), which is
    # torch's layout for F.layer_norm and F.group_norm (channels moved to dim 1).
    if name == "LayerNormalization":
        axes = sorted(a % x.ndim for a in ([layer.axis] if isinstance(layer.axis, int)
                                           else layer.axis))
        shape = tuple(x.shape[a] for a in axes)
        gamma = params[0] if (layer.scale or layer.rms_scaling) else None
        if layer.rms_scaling:   # Keras 3's deprecated form: x / sqrt(var + eps) * gamma
            var = x.var(dim=tuple(axes), unbiased=False, keepdim=True)
            y = x / torch.sqrt(var + layer.epsilon)
            return y * gamma if gamma is not None else y
        beta = params[-1] if layer.center else None
        return F.layer_norm(x, shape, gamma, beta, layer.epsilon)
    if name == "GroupNormalization":
        xn = x.movedim(-1, 1)
        # (torch's group_norm backward fails without a weight: ones stand for scale=False)
        gamma = params[0] if layer.scale else torch.ones(x.shape[-1], dtype=x.dtype)
        beta = params[-1] if layer.center else None
        return F.group_norm(xn, layer.groups, gamma, beta, layer.epsilon).movedim(1, -1)
    if name == "UnitNormalization":
        axes = sorted(a % x.ndim for a in ([layer.axis] if isinstance(layer.axis, int)
                                           else layer.axis))
        flat = x.reshape(x.shape[:axes[0]] + (-1,))
        return F.normalize(flat, p=2, dim=-1, eps=1e-12).reshape(x.shape)
    if name in ("SpatialDropout2D", "GaussianNoise", "GaussianDropout"):
        # the noise of a training call is drawn by pynn's generator: a test that trains
        # through these layers writes the noise into its torch model itself
        assert not training or getattr(layer, "rate", getattr(layer, "stddev", 0)) == 0
        return x
    # transposed convolution, upsampling, padding, cropping (issue 16, part C)
    if name in _PART_C:
        return _PART_C[name](layer, x, params)
    raise NotImplementedError(name)


# ---- transposed convolution, upsampling, padding, cropping (issue 16, part C) -----------------

def _keras_transpose_crop(size, k, s, padding, output_padding):
    """(rows cropped from the top of torch's full conv_transpose2d output, output size),
    from Keras 3's JAX padding (keras/src/backend/common/backend_utils.py,
    _convert_conv_transpose_padding_args_from_keras_to_jax): JAX pads the input dilated by
    s with (left, right) and convolves with the flipped kernel, so its output is torch's
    full output ((size - 1) s + k rows) cropped by k - 1 - left on top, extended or
    cropped at the bottom to (size - 1) s + left + right + 2 - k rows."""
    if padding == "valid":
        extra = max(k, s) - k if output_padding is None else output_padding
        left, right = k - 1, k - 1 + extra
    else:
        pad_len = s + k - 2 if output_padding is None else k + k % 2 - 2 + output_padding
        left = min(pad_len // 2 + pad_len % 2, k - 1)
        right = pad_len - left
    return k - 1 - left, (size - 1) * s + left + right + 2 - k


def _conv_transpose(layer, x, params):
    """F.conv_transpose2d with the Keras kernel (KH, KW, F, C_in) as torch's weight
    (C_in, F, KH, KW) (w.permute(3, 2, 0, 1)), stride = strides, dilation = dilation_rate
    (Keras's padding sees the dilated extent (k - 1) d + 1), no padding; then the
    rows and columns Keras keeps (F.pad with negative amounts crops), + bias, activation."""
    w, b = params[0], params[1] if layer.use_bias else None
    xn = x.permute(0, 3, 1, 2)
    full = F.conv_transpose2d(xn, w.permute(3, 2, 0, 1).contiguous(), None,
                              stride=layer.strides, dilation=layer.dilation_rate)
    op = layer.output_padding or (None, None)
    extent = [(k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.dilation_rate)]
    (ct, oh), (cl, ow) = (_keras_transpose_crop(x.shape[1 + i], extent[i], layer.strides[i],
                                                layer.padding, op[i])
                          for i in range(2))
    y = F.pad(full, (-cl, ow + cl - full.shape[3], -ct, oh + ct - full.shape[2]))
    y = y.permute(0, 2, 3, 1)
    return _act(layer, y + b if b is not None else y)


def _upsampling2d(layer, x, params):
    """F.interpolate by scale_factor=size: "nearest" repeats (Keras: ops.repeat), "bilinear"
    with align_corners=False is half-pixel centres clamped at the edges, which is Keras 3's
    ops.image.resize (jax.image.resize, no antialiasing when enlarging)."""
    mode = {"nearest": "nearest", "bilinear": "bilinear"}[layer.interpolation]
    kw = {} if mode == "nearest" else {"align_corners": False}
    y = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=tuple(float(s) for s in layer.size),
                      mode=mode, **kw)
    return y.permute(0, 2, 3, 1)


def _zero_padding2d(layer, x, params):
    (t, b), (l, r) = layer.padding
    return F.pad(x.permute(0, 3, 1, 2), (l, r, t, b)).permute(0, 2, 3, 1)


def _cropping2d(layer, x, params):
    (t, b), (l, r) = layer.cropping
    return x[:, t:x.shape[1] - b, l:x.shape[2] - r, :]


_PART_C = {
    "Conv2DTranspose": _conv_transpose,
    "UpSampling2D": _upsampling2d,
    "UpSampling1D": lambda layer, x, params: x.repeat_interleave(layer.size, dim=1),
    "ZeroPadding2D": _zero_padding2d,
    "Cropping2D": _cropping2d,
}


def forward(model, inputs, params, training=True):
    """The model's outputs (a list) for torch `inputs`, with `params` {id(variable): tensor}."""
    values = {id(t): v for t, v in zip(model.inputs, inputs)}
    for node in model._ordered_nodes:
        if node.is_input:
            continue
        ins = [values[id(t)] for t in node.input_tensors]
        call_training = training if node.training is None else node.training
        if hasattr(node.layer, "_ordered_nodes"):
            outs = forward(node.layer, ins, params, call_training)
        else:
            outs = [apply_layer(node.layer, ins, [params[id(v)] for v in node.layer.weights],
                                call_training)]
        for t, v in zip(node.output_tensors, outs):
            values[id(t)] = v
    return [values[id(t)] for t in model.outputs]


def loss_value(loss, pred, target):
    """Keras's loss (mean over rows) in float64."""
    if loss.kind == "mse":
        return ((pred - target) ** 2).mean(dim=-1).mean()
    if loss.kind == "bce":
        p = pred.clamp(1e-7, 1 - 1e-7)
        return (-(target * torch.log(p) + (1 - target) * torch.log(1 - p))).mean(dim=-1).mean()
    if loss.kind == "cce":
        p = pred / pred.sum(dim=-1, keepdim=True)
        return -(target * torch.log(p.clamp(1e-7, 1 - 1e-7))).sum(dim=-1).mean()
    if loss.kind == "scce":
        p = pred / pred.sum(dim=-1, keepdim=True)
        return -torch.log(p.clamp(1e-7, 1 - 1e-7).gather(-1, target[:, None]).squeeze(-1)).mean()
    raise NotImplementedError(loss.kind)


def gradients(model, x_list, y_list, losses, loss_weights, training=True):
    """(total loss, {id(variable): gradient}) in float64 through torch autograd."""
    params = {id(v): torch.tensor(v.numpy().astype(np.float64), requires_grad=True)
              for v in model.weights}
    outs = forward(model, [torch.tensor(np.asarray(x, np.float64)) for x in x_list], params,
                   training)
    total = 0
    for out, y, loss, w in zip(outs, y_list, losses, loss_weights):
        if loss is None:
            continue
        target = torch.tensor(y) if loss.kind == "scce" else torch.tensor(np.asarray(y, np.float64))
        total = total + w * loss_value(loss, out, target)
    total.backward()
    return float(total.detach()), {k: (p.grad.numpy() if p.grad is not None else np.zeros(p.shape))
                          for k, p in params.items()}
