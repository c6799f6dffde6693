"""LayerNormalization, GroupNormalization, UnitNormalization, SpatialDropout2D,
GaussianNoise and GaussianDropout, with Keras 3's names, arguments, weights and formulas
(engineer E, issue #16).

LayerNormalization normalizes each sample over the trailing axes named by `axis` (the last
by default): with mean and the biased variance of those values,
    inv = gamma / sqrt(var + epsilon);  y = x * inv + (beta - mean * inv)
(keras.ops.layer_normalization); rms_scaling (deprecated in Keras 3) gives y = x * gamma /
sqrt(var + epsilon), without centring.  gamma and beta have the shape of the normalized
axes.  GroupNormalization splits the channels (the last axis) into `groups` groups and
normalizes each sample's group over its channels and every spatial position; gamma and
beta are per channel.  Both run as one plan op, OP_GROUP_NORM (csrc/norm.c), on x viewed
as (n, s, groups * k): LayerNormalization is groups = s = 1.

UnitNormalization: y = x / sqrt(max(sum x^2, 1e-24)) over the trailing axes `axis`
(keras.ops.normalize with epsilon 1e-12 on the norm).

The noise layers act only in training, the identity in inference.  Their normals come from
the counter-based generator (csrc/pynn.h, "randomness"): element e of a step draws the
uniforms 2e and 2e + 1 of (seed, step) and z = sqrt(-2 log(1 - u1)) cos(2 pi u2), so every
backend, thread count and whole-epoch run draws the same noise.  GaussianNoise adds
stddev * z (backward: dy passes); GaussianDropout multiplies by 1 + sqrt(rate / (1 - rate)) z
(backward: dy times the same noise).  SpatialDropout2D is Dropout with the noise shape
(N, 1, 1, C) (channels_first: (N, C, 1, 1)): whole feature maps are dropped.
"""
import math
import warnings

from .. import constraints, initializers, regularizers, utils
from ..checks import MAX_RANK, check_bool, check_choice, check_number, check_seed, invalid, \
    is_int, shown
from .base import Layer, shape_text
from .regularization import Dropout


def _axis_arg(axis, where):
    """Keras's axis argument: an int, or a list/tuple of ints (kept as a list).  Another
    type is a TypeError (as Keras 3), an int beyond any rank a ValueError."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if not axes or not all(is_int(a) for a in axes):
        raise TypeError(f"{where}: expected an int or a non-empty list/tuple of ints for the "
                        f"argument 'axis', but received: axis={shown(axis)}")
    if not all(-MAX_RANK <= a < MAX_RANK for a in axes):
        raise invalid(where, "axis", f"integers in [{-MAX_RANK}, {MAX_RANK - 1}]", axis)
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)


def _trailing_axes(layer, axis, input_shape):
    """The sorted positive axes of `axis` for inputs of `input_shape` (batch axis first);
    they must be in range, distinct, not the batch axis and the trailing axes."""
    rank = len(input_shape)
    where = f"{type(layer).__name__} '{layer.name}'"
    axes = axis if isinstance(axis, list) else [axis]
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(f"{where}: axis {a} is out of bounds for input shape "
                             f"{shape_text(input_shape)}. Received: axis={shown(axis)}")
    pos = sorted(a % rank for a in axes)
    if len(set(pos)) != len(pos):
        raise ValueError(f"{where}: duplicate axes are not allowed. Received: axis={shown(axis)}")
    if pos[0] == 0:
        raise ValueError(f"{where}: the batch axis (0) cannot be normalized. "
                         f"Received: axis={shown(axis)}")
    if pos != list(range(rank - len(pos), rank)):
        raise ValueError(f"{where}: only the trailing axes can be normalized (the last axis, "
                         f"or a list ending with it, e.g. [{rank - 2}, {rank - 1}]) for inputs of "
                         f"shape {shape_text(input_shape)}. Received: axis={shown(axis)}")
    return pos


def _size(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


class _GroupNormBase(Layer):
    """The plan of OP_GROUP_NORM for x viewed as (n, s, groups * k)."""

    def _norm_geometry(self, shape):
        raise NotImplementedError

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        s, groups, k = self._norm_geometry(x.shape)
        rms = int(getattr(self, "rms_scaling", False))
        gamma, beta = b.param_or_none(self.gamma), b.param_or_none(self.beta)
        rows = _size(x.shape[1:]) // (s * groups * k)   # per sample
        mean, inv_std = b.scratch((rows * groups,), batched=True), \
            b.scratch((rows * groups,), batched=True)
        y = b.new(x.shape)
        ints = [s, groups, k, rms]
        b.op("group_norm", [x.buf, gamma, beta, mean, inv_std, y.buf], ints, [self.epsilon],
             label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient") if need[0] else -1
            b.op("group_norm_backward", [x.buf, gamma, mean, inv_std, dys[0],
                                         b.grad(self.gamma), b.grad(self.beta), dx], ints,
                 label=self.name)
            return [None if dx < 0 else dx]

        b.differentiate([x], [y], backward, params=[self.gamma, self.beta])
        return y

    def _init_affine(self, where, epsilon, center, scale, beta_initializer, gamma_initializer,
                     beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint):
        # > 0, as BatchNormalization's (0 would divide 0 by 0 on a constant group)
        self.epsilon = check_number(epsilon, "epsilon", where, 0, low_open=True)
        self.center = check_bool(center, "center", where)
        self.scale = check_bool(scale, "scale", where)
        self.beta_regularizer = regularizers.get(beta_regularizer, where, "beta_regularizer")
        self.gamma_regularizer = regularizers.get(gamma_regularizer, where, "gamma_regularizer")
        self.beta_constraint = constraints.get(beta_constraint, where, "beta_constraint")
        self.gamma_constraint = constraints.get(gamma_constraint, where, "gamma_constraint")
        self.beta_initializer = initializers.get(beta_initializer, where, "beta_initializer")
        self.gamma_initializer = initializers.get(gamma_initializer, where, "gamma_initializer")
        self.gamma = self.beta = None

    def _affine_config(self):
        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "gamma_constraint": constraints.serialize(self.gamma_constraint)}


class LayerNormalization(_GroupNormBase):
    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        where = f"LayerNormalization '{self.name}'"
        self.axis = _axis_arg(axis, where)
        self.rms_scaling = check_bool(rms_scaling, "rms_scaling", where)
        if self.rms_scaling:
            warnings.warn("You passed `rms_scaling=True`, which is deprecated. This argument "
                          "incorrectly scales the input by the variance, not the root mean "
                          "square (as Keras 3 warns).", stacklevel=2)
        self._init_affine(where, epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint)

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, min_rank=True)
        _trailing_axes(self, self.axis, input_shape)
        super().check_input_shape(input_shape)

    def build(self, input_shape):
        axes = _trailing_axes(self, self.axis, input_shape)
        self.axis = axes          # Keras 3 keeps the sorted, positive axes once built
        shape = tuple(int(input_shape[a]) for a in axes)
        if self.scale or self.rms_scaling:
            self.gamma = self.add_weight(shape=shape, initializer=self.gamma_initializer,
                                         name="gamma", regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint)
        if self.center and not self.rms_scaling:
            self.beta = self.add_weight(shape=shape, initializer=self.beta_initializer,
                                        name="beta", regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint)

    def _norm_geometry(self, shape):
        axes = _trailing_axes(self, self.axis, shape)
        return 1, 1, _size(shape[a] for a in axes)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, **self._affine_config(),
                "rms_scaling": self.rms_scaling}


class GroupNormalization(_GroupNormBase):
    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        where = f"GroupNormalization '{self.name}'"
        if not is_int(groups) or not (groups >= 1 or groups == -1) or groups > 2**31 - 1:
            raise invalid(where, "groups", "a positive integer (or -1 for instance "
                          "normalization)", groups)
        self.groups = int(groups)
        if not is_int(axis) or not -MAX_RANK <= axis <= MAX_RANK:
            raise invalid(where, "axis", f"an integer in [{-MAX_RANK}, {MAX_RANK}]", axis)
        self.axis = int(axis)
        self._init_affine(where, epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint)

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, min_rank=True)
        rank = len(input_shape)
        where = f"GroupNormalization '{self.name}'"
        if not -rank <= self.axis < rank:
            raise ValueError(f"{where}: axis {self.axis} is out of bounds for input shape "
                             f"{shape_text(input_shape)}. Received: axis={self.axis}")
        if self.axis % rank != rank - 1:
            raise ValueError(f"{where}: only the channels axis last is supported (axis=-1 or "
                             f"{rank - 1} for inputs of rank {rank}), received axis={self.axis}")
        dim = int(input_shape[-1])
        groups = dim if self.groups == -1 else self.groups
        if dim < groups:
            raise ValueError(f"{where}: number of groups ({groups}) cannot be more than the "
                             f"number of channels ({dim}). Received: groups={self.groups}")
        if dim % groups != 0:
            raise ValueError(f"{where}: number of groups ({groups}) must divide the number of "
                             f"channels ({dim}). Received: groups={self.groups}")
        super().check_input_shape(input_shape)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if self.groups == -1:
            self.groups = dim
        if self.scale:
            self.gamma = self.add_weight(shape=(dim,), initializer=self.gamma_initializer,
                                         name="gamma", regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight(shape=(dim,), initializer=self.beta_initializer,
                                        name="beta", regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint)

    def _norm_geometry(self, shape):
        c = int(shape[-1])
        return _size(shape[1:-1]), self.groups, c // self.groups

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis,
                **self._affine_config()}


class UnitNormalization(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis_arg(axis, f"UnitNormalization '{self.name}'")

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, min_rank=True)
        _trailing_axes(self, self.axis, input_shape)
        super().check_input_shape(input_shape)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        cols = _size(x.shape[a] for a in _trailing_axes(self, self.axis, x.shape))
        inv_norm = b.scratch((_size(x.shape[1:]) // cols,), batched=True)
        y = b.new(x.shape)
        b.op("unit_norm", [x.buf, inv_norm, y.buf], [cols], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("unit_norm_backward", [x.buf, inv_norm, dys[0], dx], [cols], label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return y

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class SpatialDropout2D(Dropout):
    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None, **kwargs):
        super().__init__(rate, seed=seed, name=name, dtype=dtype, **kwargs)
        where = f"SpatialDropout2D '{self.name}'"
        self.data_format = "channels_last" if data_format is None else \
            check_choice(data_format, "data_format", where, ("channels_last", "channels_first"))

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 4)
        Layer.check_input_shape(self, input_shape)

    def _broadcast(self, shape):
        # noise shape (N, 1, 1, C), or (N, C, 1, 1) channels first: the mask repeats over
        # the spatial axes
        if self.data_format == "channels_first":
            return [False, False, shape[2] != 1, shape[3] != 1]
        return [False, shape[1] != 1, shape[2] != 1, False]

    def get_config(self):
        # Keras 3's BaseSpatialDropout writes only these (and its __init__ takes only these)
        seed = self.seed if self.seed is not None else self._seed
        return {"rate": self.rate, "seed": seed, "name": self.name, "dtype": "float32",
                "data_format": self.data_format}


class _GaussianBase(Layer):
    _mode = 0

    def _scale(self):
        raise NotImplementedError

    def build(self, input_shape):
        self._seed = self.seed if self.seed is not None else \
            int(utils.rng().integers(0, 1 << 62))

    def plan_forward(self, b, inputs, training, logits=False):
        from ..models.plan import dropout_seed
        (x,) = inputs
        scale = self._scale()
        if not training or scale == 0:
            return x
        noise, y = b.new(x.shape, role="mask"), b.new(x.shape)
        seed = dropout_seed(self._seed, b.call_counts.get(id(self), 0))
        b.op("gaussian_noise", [x.buf, noise.buf, y.buf], [seed, self._mode], [scale],
             label=self.name)

        if self._mode == 0:
            def backward(b, dys, need):          # y = x + noise: dy passes
                return [dys[0]]
            b.differentiate([x], [y], backward)
        else:
            def backward(b, dys, need):          # y = x * noise
                b.op("dropout_backward", [dys[0], noise.buf, dys[0]], label=self.name)
                return [dys[0]]
            b.differentiate([x], [y], backward, inplace=True)
        return y

    def _seed_config(self):
        # a built layer writes the seed it drew, so a saved model resumes with the same noise
        return self.seed if self.seed is not None else getattr(self, "_seed", None)


class GaussianNoise(_GaussianBase):
    _mode = 0

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        where = f"GaussianNoise '{self.name}'"
        self.stddev = check_number(stddev, "stddev", where, 0, 1)
        self.seed = check_seed(seed, "seed", where)
        self._seed = None

    def _scale(self):
        return self.stddev

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self._seed_config()}


class GaussianDropout(_GaussianBase):
    _mode = 1

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        where = f"GaussianDropout '{self.name}'"
        self.rate = check_number(rate, "rate", where, 0, 1, high_open=True)
        self.seed = check_seed(seed, "seed", where)
        self._seed = None

    def _scale(self):
        return math.sqrt(self.rate / (1.0 - self.rate))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self._seed_config()}
