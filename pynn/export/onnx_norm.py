"""ONNX forms of the normalization and noise layers (engineer E; pynn/export/onnx.py calls
`handlers()`).  Tensors stay channels-last, as in the rest of the export.

  LayerNormalization  ONNX's LayerNormalization (opset >= 17; axis = the first normalized
                      axis, Scale = gamma, B = beta), or its decomposition (ReduceMean,
                      Sub, Mul, Sqrt, Div) below opset 17 and for rms_scaling;
  GroupNormalization  reshape to (N, S, groups, k), mean and variance over S and k, back to
                      the input's shape, then * gamma + beta per channel;
  UnitNormalization   x * 1 / sqrt(max(ReduceSumSquare(x), 1e-24));
  SpatialDropout2D, GaussianNoise, GaussianDropout: the identity (inference).
"""
import numpy as np


def _reduce(g, op_type, x, axes, base):
    """op_type over `axes`, keeping them; the axes as an input from opset 18 on (ReduceSum
    since 13)."""
    if g.opset >= 18 or op_type == "ReduceSum":
        return g.op(op_type, [x, g.ints(axes, f"{base}/axes")], base, keepdims=1)
    return g.op(op_type, [x], base, axes=list(axes), keepdims=1)


def _standardize(g, x, axes, epsilon, base, center=True):
    """(x - mean) / sqrt(var + eps), or x / sqrt(var + eps) when not centring (the
    variance is always about the mean)."""
    mean = _reduce(g, "ReduceMean", x, axes, f"{base}/mean")
    d = g.op("Sub", [x, mean], f"{base}/center")
    var = _reduce(g, "ReduceMean", g.op("Mul", [d, d], f"{base}/square"), axes, f"{base}/var")
    std = g.op("Sqrt", [g.op("Add", [var, g.const(np.float32(epsilon), f"{base}/epsilon")],
                             f"{base}/var_eps")], f"{base}/std")
    return g.op("Div", [d if center else x, std], f"{base}/normalized")


def _weight(layer, v, shape, base, g):
    return g.const(v.numpy().reshape(shape), f"{base}/{v.name}")


def _layer_normalization(g, layer, xs, shapes):
    base, shape = layer.name, shapes[0]
    rank = len(shape)
    axes = sorted(a % rank for a in ([layer.axis] if isinstance(layer.axis, int)
                                     else layer.axis))
    wshape = [shape[a] for a in axes]
    if g.opset >= 17 and not layer.rms_scaling:
        scale = _weight(layer, layer.gamma, wshape, base, g) if layer.gamma is not None else \
            g.const(np.ones(wshape, np.float32), f"{base}/ones")
        ins = [xs[0], scale]
        if layer.beta is not None:
            ins.append(_weight(layer, layer.beta, wshape, base, g))
        return [g.op("LayerNormalization", ins, f"{base}/layer_norm", axis=int(axes[0]),
                     epsilon=float(layer.epsilon))]
    y = _standardize(g, xs[0], axes, layer.epsilon, base, center=not layer.rms_scaling)
    if layer.gamma is not None:
        y = g.op("Mul", [y, _weight(layer, layer.gamma, wshape, base, g)], f"{base}/gamma_mul")
    if layer.beta is not None:
        y = g.op("Add", [y, _weight(layer, layer.beta, wshape, base, g)], f"{base}/beta_add")
    return [y]


def _group_normalization(g, layer, xs, shapes):
    base, shape = layer.name, shapes[0]
    c = shape[-1]
    k = c // layer.groups
    grouped = g.op("Reshape", [xs[0], g.ints([0, -1, layer.groups, k], f"{base}/group_shape")],
                   f"{base}/groups")
    y = _standardize(g, grouped, [1, 3], layer.epsilon, base)
    y = g.op("Reshape", [y, g.op("Shape", [xs[0]], f"{base}/shape")], f"{base}/ungroup")
    if layer.gamma is not None:
        y = g.op("Mul", [y, _weight(layer, layer.gamma, [c], base, g)], f"{base}/gamma_mul")
    if layer.beta is not None:
        y = g.op("Add", [y, _weight(layer, layer.beta, [c], base, g)], f"{base}/beta_add")
    return [y]


def _unit_normalization(g, layer, xs, shapes):
    base, rank = layer.name, len(shapes[0])
    axes = sorted(a % rank for a in ([layer.axis] if isinstance(layer.axis, int)
                                     else layer.axis))
    squares = g.op("Mul", [xs[0], xs[0]], f"{base}/square")
    ss = _reduce(g, "ReduceSum", squares, axes, f"{base}/sum_squares")
    ss = g.op("Max", [ss, g.const(np.float32(1e-24), f"{base}/min_square")], f"{base}/clamp")
    inv = g.op("Reciprocal", [g.op("Sqrt", [ss], f"{base}/norm")], f"{base}/inv_norm")
    return [g.op("Mul", [xs[0], inv], f"{base}/normalized")]


def _identity(g, layer, xs, shapes):
    return [xs[0]]


def handlers():
    from .. import layers as L
    return {L.LayerNormalization: _layer_normalization,
            L.GroupNormalization: _group_normalization,
            L.UnitNormalization: _unit_normalization,
            L.SpatialDropout2D: _identity, L.GaussianNoise: _identity,
            L.GaussianDropout: _identity}
