"""Keras's activation layers (engineer A): ReLU (max_value, negative_slope, threshold),
Softmax (any axis), ELU and PReLU.

ReLU with neither max_value nor threshold is the relu / leaky_relu activation (and
max_value=6 alone is relu6); otherwise OP_RELU.  Softmax over the last axis is the softmax
activation (a loss may take its logits); over another axis, OP_SOFTMAX_AXIS with the
geometry (outer, axis length, inner); with a plan mask of the inputs' shape (Keras's `mask`,
pynn.models.plan) the op takes it as a third buffer.  PReLU is OP_PRELU with a weight `alpha` of the
input's shape (without the batch axis), the shared axes set to 1.
"""
from .. import constraints, ids, initializers, regularizers
from ..checks import MAX_RANK, check_number, is_int
from .base import Layer, shape_text
from .core import Activation


class ReLU(Activation):
    """Keras's ReLU layer:
    y = clip(x [x > threshold], 0, max_value) - negative_slope max(threshold - x, 0)."""

    supports_masking = True

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        where = "ReLU"
        if max_value is not None:
            max_value = check_number(max_value, "max_value", where, 0)
        negative_slope = check_number(negative_slope, "negative_slope", where, 0)
        threshold = check_number(threshold, "threshold", where, 0)
        if max_value is None and threshold == 0:
            act = "leaky_relu" if negative_slope > 0 else "relu"
        elif max_value == 6 and threshold == 0 and negative_slope == 0:
            act = "relu6"
        else:
            act = None                  # OP_RELU
        super().__init__(act or "linear", **kwargs)
        self._op = act is None
        self.alpha = float(negative_slope) if act == "leaky_relu" else 0.0
        self.max_value = max_value
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    @property
    def output_activation(self):
        return None

    def plan_forward(self, b, inputs, training, logits=False):
        if not self._op:
            return super().plan_forward(b, inputs, training, logits=False)
        (x,) = inputs
        y = b.new(x.shape)
        reals = [self.negative_slope, self.threshold,
                 float("inf") if self.max_value is None else self.max_value]
        b.op("relu", [x.buf, y.buf], [], reals, label=self.name)

        def backward(b, dys, need):
            b.op("relu_backward", [x.buf, dys[0], dys[0]], [], reals, label=self.name)
            return [dys[0]]

        b.differentiate([x], [y], backward, inplace=True)
        return y

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


def _softmax_axes(axis, rank, where):
    """The sorted, non-negative axes of `axis` (an int or a list/tuple of ints) for inputs of
    rank `rank` (with the batch axis); ValueError naming `axis` for one out of range."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(f"{where}: received an invalid value for `axis`, expected axes in "
                             f"[{-rank}, {rank - 1}] for inputs of rank {rank}. Received: "
                             f"axis={axis!r}")
        out.append(a % rank)
    return sorted(set(out))


class Softmax(Activation):
    """Keras's Softmax layer: softmax over `axis` (an int, or a list/tuple of adjacent axes),
    any axis but the batch axis."""

    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        where = "Softmax"
        items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not items or not all(is_int(a) and -MAX_RANK <= a < MAX_RANK for a in items):
            raise ValueError(f"{where}: received an invalid value for `axis`, expected an "
                             f"integer in [{-MAX_RANK}, {MAX_RANK - 1}] or a non-empty list of "
                             f"them. Received: axis={axis!r}")
        super().__init__("softmax", **kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)

    def _geometry(self, shape):
        """(length, inner) of the softmax for inputs of `shape` (with the batch axis); inner
        is 1 for the last axis."""
        where = f"Softmax '{self.name}'"
        axes = _softmax_axes(self.axis, len(shape), where)
        if axes[0] == 0:
            raise ValueError(f"{where}: received an invalid value for `axis`: the softmax "
                             f"cannot run over the batch axis 0 of inputs of shape "
                             f"{shape_text(shape)}. Received: axis={self.axis!r}")
        if axes != list(range(axes[0], axes[-1] + 1)):
            raise ValueError(f"{where}: received an invalid value for `axis`: the axes must "
                             f"be adjacent (pynn has no kernel for others). Received: "
                             f"axis={self.axis!r}")
        length = inner = 1
        for d in shape[axes[0]:axes[-1] + 1]:
            length *= d
        for d in shape[axes[-1] + 1:]:
            inner *= d
        return length, inner

    def check_input_shape(self, input_shape):
        super().check_input_shape(input_shape)
        self._geometry(input_shape)

    @property
    def output_activation(self):
        shape = self._build_input_shape
        if shape is not None and self._geometry(shape)[1] == 1:
            return "softmax"
        return None

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        length, inner = self._geometry(x.shape)
        mask = getattr(x, "mask", None)    # a (batch, T) mask (pynn.models.plan), if any
        if mask is not None:
            return self._masked(b, x, mask, length, inner, logits)
        if inner == 1:
            if logits:                # the loss applies the softmax itself
                return x
            cols = length
            act = ids.ACTIVATIONS["softmax"]
            y = b.new(x.shape)
            b.op("activation", [x.buf, y.buf], [cols, act], [0.0], label=self.name)

            def backward(b, dys, need):
                b.op("activation_backward", [x.buf, y.buf, dys[0], dys[0]], [cols, act],
                     [0.0], label=self.name)
                return [dys[0]]
        else:
            y = b.new(x.shape)
            b.op("softmax_axis", [x.buf, y.buf], [length, inner], [], label=self.name)

            def backward(b, dys, need):
                b.op("softmax_axis_backward", [y.buf, dys[0], dys[0]], [length, inner], [],
                     label=self.name)
                return [dys[0]]

        b.differentiate([x], [y], backward, inplace=True)
        return y

    def _masked(self, b, x, mask, length, inner, logits):
        """Keras's Softmax(inputs, mask): where the mask is not > 0.5 the input counts as
        -1e9 and the output is 0.  pynn takes a mask of the inputs' own shape (Keras: any
        shape broadcastable to them)."""
        where = f"Softmax '{self.name}'"
        if tuple(mask.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"{where}: the `mask` must have the shape of `inputs` (pynn does "
                             f"not broadcast it). Received: inputs.shape={shape_text(x.shape)}, "
                             f"mask.shape={shape_text(mask.shape)}")
        if logits:
            raise ValueError(f"{where}: a masked softmax cannot hand its logits to the loss; "
                             "compute the loss from its probabilities")
        y = b.new(x.shape)
        b.op("softmax_axis", [x.buf, y.buf, mask.buf], [length, inner], [], label=self.name)

        def backward(b, dys, need):       # y is 0 where masked, so is the gradient
            b.op("softmax_axis_backward", [y.buf, dys[0], dys[0]], [length, inner], [],
                 label=self.name)
            return [dys[0]]

        b.differentiate([x], [y], backward, inplace=True)
        return y

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "axis": self.axis}


class ELU(Activation):
    """Keras's ELU layer: x if x > 0 else alpha (exp(x) - 1)."""

    supports_masking = True

    def __init__(self, alpha=1.0, **kwargs):
        alpha = check_number(alpha, "alpha", "ELU")
        super().__init__("elu", **kwargs)
        self.alpha = float(alpha)

    @property
    def output_activation(self):
        return None

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "alpha": self.alpha}


class PReLU(Layer):
    """Keras's PReLU layer: x if x > 0 else alpha x, alpha a weight of the input's shape
    (without the batch axis) with the `shared_axes` set to 1."""

    supports_masking = True

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        where = f"PReLU '{self.name}'"
        self.alpha_regularizer = regularizers.get(alpha_regularizer, where, "alpha_regularizer")
        self.alpha_constraint = constraints.get(alpha_constraint, where, "alpha_constraint")
        self.alpha_initializer = initializers.get(alpha_initializer, where, "alpha_initializer")
        if shared_axes is None:
            axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(is_int(a) and 1 <= a < MAX_RANK for a in axes):
                raise ValueError(f"{where}: received an invalid value for `shared_axes`, "
                                 f"expected None, an axis >= 1 or a list of them (the batch "
                                 f"axis 0 is always shared). Received: "
                                 f"shared_axes={shared_axes!r}")
            axes = [int(a) for a in axes]
        self.shared_axes = axes
        self._alpha = None

    @property
    def alpha(self):
        return self._alpha

    def check_input_shape(self, input_shape):
        super().check_input_shape(input_shape)
        self._require_rank(input_shape, 2, min_rank=True)
        where = f"PReLU '{self.name}'"
        for a in self.shared_axes or ():
            if a >= len(input_shape):
                raise ValueError(f"{where}: received an invalid value for `shared_axes`, "
                                 f"expected axes in [1, {len(input_shape) - 1}] for inputs of "
                                 f"shape {shape_text(input_shape)}. Received: "
                                 f"shared_axes={self.shared_axes!r}")
        if any(d is None for d in input_shape[1:]):
            raise ValueError(f"Input of layer '{self.name}' (PReLU) is incompatible with the "
                             f"layer: every axis but the batch axis must be known, received "
                             f"inputs of shape {shape_text(input_shape)}")

    def _shared(self, rank):
        """The shared flags of the per-sample axes 1 .. rank - 1."""
        return [1 if k in (self.shared_axes or ()) else 0 for k in range(1, rank)]

    def build(self, input_shape):
        shared = self._shared(len(input_shape))
        shape = tuple(1 if s else int(d) for d, s in zip(input_shape[1:], shared))
        self._alpha = self.add_weight(shape=shape, initializer=self.alpha_initializer,
                                      name="alpha", regularizer=self.alpha_regularizer,
                                      constraint=self.alpha_constraint)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        dims = [int(d) for d in x.shape[1:]]
        shared = self._shared(len(x.shape))
        ints = [len(dims)] + dims + shared
        alpha = b.param(self._alpha)
        y = b.new(x.shape)
        b.op("prelu", [x.buf, alpha, y.buf], ints, [], label=self.name)

        def backward(b, dys, need):
            dx = dys[0] if need[0] else -1
            b.op("prelu_backward", [x.buf, alpha, dys[0], b.grad(self._alpha), dx], ints, [],
                 label=self.name)
            return [None if dx < 0 else dx]

        b.differentiate([x], [y], backward, params=[self._alpha], inplace=True)
        return y

    def get_config(self):
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": constraints.serialize(self.alpha_constraint),
                "shared_axes": self.shared_axes}
