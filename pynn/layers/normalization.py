"""BatchNormalization over the last axis, with Keras 3's rules.

Training: normalize with the batch mean and biased variance over every axis but the
last, and move the running statistics
    moving = moving * momentum + batch_stat * (1 - momentum);
inference: normalize with the running statistics.  A frozen layer (trainable=False) always
runs in inference mode and keeps its statistics, as in Keras 3; so does a call made with
training=False (`base_model(x, training=False)`), whose gamma and beta still train when
the layer is trainable.  Weights, in get_weights order:
gamma (scale=True), beta (center=True), moving_mean, moving_variance; the last two are
not trainable (no optimizer touches them; they live outside the model's trainable
parameter array).
"""
from .. import constraints, initializers, regularizers
from ..checks import MAX_RANK, check_bool, check_int, check_number
from .base import Layer, shape_text


class BatchNormalization(Layer):
    supports_masking = True      # Keras's (masks: engineer G)

    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        where = f"BatchNormalization '{self.name}'"
        axis = check_int(axis, "axis", where, -MAX_RANK, MAX_RANK)
        momentum = check_number(momentum, "momentum", where, 0, 1)
        epsilon = check_number(epsilon, "epsilon", where, 0, low_open=True)
        center = check_bool(center, "center", where)
        scale = check_bool(scale, "scale", where)
        self.synchronized = check_bool(synchronized, "synchronized", where)
        self.beta_regularizer = regularizers.get(beta_regularizer, where, "beta_regularizer")
        self.gamma_regularizer = regularizers.get(gamma_regularizer, where, "gamma_regularizer")
        self.beta_constraint = constraints.get(beta_constraint, where, "beta_constraint")
        self.gamma_constraint = constraints.get(gamma_constraint, where, "gamma_constraint")
        self.axis = axis
        self.momentum, self.epsilon = momentum, epsilon
        self.center, self.scale = center, scale
        self.beta_initializer = initializers.get(beta_initializer, where,
                                                 "beta_initializer")
        self.gamma_initializer = initializers.get(gamma_initializer, where,
                                                  "gamma_initializer")
        self.moving_mean_initializer = initializers.get(moving_mean_initializer, where,
                                                        "moving_mean_initializer")
        self.moving_variance_initializer = initializers.get(moving_variance_initializer, where,
                                                            "moving_variance_initializer")

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, min_rank=True)
        rank = len(input_shape)
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"BatchNormalization '{self.name}': only the last axis can be "
                             f"normalized (axis=-1 or {rank - 1} for inputs of rank {rank}), "
                             f"received axis={self.axis}")
        if self._build_input_shape is not None and input_shape[-1] != self._build_input_shape[-1]:
            raise ValueError(f"Input of layer '{self.name}' (BatchNormalization) is incompatible "
                             f"with the layer: expected axis -1 of input shape to have value "
                             f"{self._build_input_shape[-1]}, received {shape_text(input_shape)}")

    def build(self, input_shape):
        c = (input_shape[-1],)
        self.gamma = self.add_weight(shape=c, initializer=self.gamma_initializer, name="gamma",
                                     regularizer=self.gamma_regularizer,
                                     constraint=self.gamma_constraint) if self.scale else None
        self.beta = self.add_weight(shape=c, initializer=self.beta_initializer, name="beta",
                                    regularizer=self.beta_regularizer,
                                    constraint=self.beta_constraint) if self.center else None
        self.moving_mean = self.add_weight(shape=c, initializer=self.moving_mean_initializer,
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=c,
                                               initializer=self.moving_variance_initializer,
                                               trainable=False, name="moving_variance")

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        c = x.shape[-1]
        gamma, beta = b.param_or_none(self.gamma), b.param_or_none(self.beta)
        mm, mv = b.param(self.moving_mean), b.param(self.moving_variance)
        y = b.new(x.shape)
        if training and id(self) not in b.frozen_layers:
            mean, inv_std = b.scratch((c,)), b.scratch((c,))
            b.op("batchnorm_train", [x.buf, gamma, beta, mm, mv, mean, inv_std, y.buf], [c],
                 [self.momentum, self.epsilon], label=self.name)

            def backward(b, dys, need):
                # dx over dy where nothing else reads dy (each element of dx is made from
                # its own dy after both column sums): one gradient buffer fewer, and a ReLU
                # before it in the backward folds into it in the C plan (plan.c's
                # run_fused); where dy is shared (a residual connection's sum), a buffer of
                # its own rather than a copy of dy
                dx = -1 if not need[0] else \
                    dys[0] if b.free_to_write(dys[0]) else b.buffer(x.shape[1:], role="gradient")
                b.op("batchnorm_train_backward", [x.buf, gamma, mean, inv_std, dys[0],
                                                  b.grad(self.gamma), b.grad(self.beta), dx],
                     [c], label=self.name)
                return [None if dx < 0 else dx]
        else:
            b.op("batchnorm_infer", [x.buf, gamma, beta, mm, mv, y.buf], [c], [self.epsilon],
                 label=self.name)

            def backward(b, dys, need):
                dx = b.buffer(x.shape[1:], role="gradient") if need[0] else -1
                b.op("batchnorm_infer_backward", [x.buf, gamma, mm, mv, dys[0],
                                                  b.grad(self.gamma), b.grad(self.beta), dx],
                     [c], [self.epsilon], label=self.name)
                return [None if dx < 0 else dx]

        b.differentiate([x], [y], backward, params=[self.gamma, self.beta])
        return y

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "gamma_constraint": constraints.serialize(self.gamma_constraint),
                "synchronized": self.synchronized}
