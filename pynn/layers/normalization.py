"""BatchNormalization over the last axis, with Keras 3's rules.

Training: normalize with the batch mean and biased variance over every axis but the
last, and move the running statistics
    moving = moving * momentum + batch_stat * (1 - momentum);
inference: normalize with the running statistics.  Weights, in get_weights order:
gamma (scale=True), beta (center=True), moving_mean, moving_variance; the last two are
not trainable (no optimizer touches them; they live outside the model's trainable
parameter array).
"""
import numbers

from .. import initializers
from .base import Layer


class BatchNormalization(Layer):
    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        where = f"BatchNormalization '{self.name}'"
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"{where}: expected axis to be an integer, received axis={axis!r}")
        for arg, value, low, high in (("momentum", momentum, 0.0, 1.0), ("epsilon", epsilon, 0.0, None)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                    (low <= value <= high) if high is not None else value > low):
                expected = "a float in [0, 1]" if high is not None else "a positive float"
                raise ValueError(f"{where}: received an invalid value for `{arg}`, expected "
                                 f"{expected}. Received: {arg}={value!r}")
        self.axis = axis
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer, where)
        self.gamma_initializer = initializers.get(gamma_initializer, where)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer, where)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer, where)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) + 1   # with the batch axis
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"BatchNormalization '{self.name}': only the last axis can be "
                             f"normalized (axis=-1 or {rank - 1} for inputs of rank {rank}), "
                             f"received axis={self.axis}")
        return input_shape

    def build(self, input_shape):
        super().build(input_shape)
        c = (input_shape[-1],)
        if self.scale:
            self.add_weight("gamma", c, self.gamma_initializer)
        if self.center:
            self.add_weight("beta", c, self.beta_initializer)
        self.add_weight("moving_mean", c, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", c, self.moving_variance_initializer, trainable=False)

    def _parts(self):
        """(gamma or None, beta or None, moving_mean, moving_variance, dgamma, dbeta)."""
        w, g = list(self.weights), list(self.grads) + [None] * len(self.weights)
        gamma = w.pop(0) if self.scale else None
        dgamma = g.pop(0) if self.scale else None
        beta = w.pop(0) if self.center else None
        dbeta = g.pop(0) if self.center else None
        return gamma, beta, w[0], w[1], dgamma, dbeta

    def forward(self, backend, x, training=False, logits=False):
        c = self.input_shape[-1]
        x2 = x.reshape(-1, c)
        gamma, beta, moving_mean, moving_variance, _, _ = self._parts()
        if not training:
            y = self._buffer(backend, "inference", x2.shape)
            backend.batchnorm_forward_infer(x2, gamma, beta, moving_mean, moving_variance,
                                            self.epsilon, y)
            return y.reshape(x.shape)
        y = self._buffer(backend, "y", x2.shape)
        mean = self._buffer(backend, "mean", (c,))
        inv_std = self._buffer(backend, "inv_std", (c,))
        backend.batchnorm_forward_train(x2, gamma, beta, moving_mean, moving_variance,
                                        self.momentum, self.epsilon, mean, inv_std, y)
        self._saved = (x, x2, mean, inv_std)
        return y.reshape(x.shape)

    def backward(self, backend, dy, need_dx=True):
        x, x2, mean, inv_std = self._saved
        gamma, _, _, _, dgamma, dbeta = self._parts()
        dx = self._buffer(backend, "dx", x2.shape) if need_dx else None
        backend.batchnorm_backward(x2, gamma, mean, inv_std, dy.reshape(x2.shape), dgamma,
                                   dbeta, dx)
        return None if dx is None else dx.reshape(x.shape)

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                "input_shape": None if self._input_shape_arg is None else list(self._input_shape_arg)}
