"""A pynn model's forward pass written again in PyTorch (float64), so torch's autograd gives
the gradients pynn's plan must reproduce.

It shares no code with pynn's computation: it walks the model's graph (nested models
inlined, shared layers called again with the same torch parameters) and applies each
layer from its Keras meaning and config.  Tensors stay channels-last (NHWC) as in pynn;
convolution and pooling convert to torch's NCHW and back.  Supported: Dense, Conv2D,
MaxPooling2D/AveragePooling2D ("valid"), GlobalAveragePooling2D, BatchNormalization
(training mode: batch statistics), Flatten, Reshape, Activation, the merge layers and
Concatenate; Dropout only with rate 0 or in inference.
"""
import numpy as np

torch = __import__("pytest").importorskip("torch")
F = torch.nn.functional

ACT = {
    "linear": lambda z: z, "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "softmax": lambda z: torch.softmax(z, dim=-1), "leaky_relu": None,
    "gelu": lambda z: F.gelu(z),
}


def _act(layer, z):
    if layer.activation == "leaky_relu":
        return F.leaky_relu(z, layer.alpha)
    return ACT[layer.activation](z)


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
    raise NotImplementedError(name)


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
