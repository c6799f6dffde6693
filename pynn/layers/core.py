"""Input, Dense and Activation: the layers of a fully connected network."""
import numpy as np

from .. import activations, initializers
from .base import KernelBiasLayer, Layer, check_shape_arg, unique_name


class InputLayer:
    """What `Input(shape)` returns: it tells a Sequential model its input shape."""

    def __init__(self, shape, name=None):
        self.shape = check_shape_arg(shape, "shape", "Input")
        self.name = name or unique_name("input_layer")

    def __repr__(self):
        return f"<Input shape=(None, {', '.join(map(str, self.shape))})>"


def Input(shape, batch_size=None, name=None):
    """The input of a model: `shape` excludes the batch axis, as in Keras."""
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"Input: expected batch_size to be a positive integer or None, "
                         f"received {batch_size!r}")
    return InputLayer(shape, name)


class Dense(KernelBiasLayer):
    """y = activation(x @ kernel + bias) on the last axis; kernel (in, out), bias (out,)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_shape=None, name=None):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError("Dense: received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units!r}")
        super().__init__(name=name, input_shape=input_shape)
        where = f"Dense '{self.name}'"
        self.units = int(units)
        self.activation, self.alpha = activations.get(activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, where)
        self.bias_initializer = initializers.get(bias_initializer, where)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def build(self, input_shape):
        super().build(input_shape)
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)

    def forward(self, backend, x, training=False, logits=False):
        batch = x.shape[0]
        x2 = x.reshape(-1, self.input_shape[-1])
        rows = x2.shape[0]
        act = "linear" if logits else self.activation
        if training:
            z = self._buffer(backend, "z", (rows, self.units))
            y = z if act == "linear" else self._buffer(backend, "y", (rows, self.units))
            self._saved = (x, x2, z, y, act)
        else:
            z = y = self._buffer(backend, "inference", (rows, self.units))
        backend.dense_forward(x2, self.kernel, self.bias, act, self.alpha, z, y)
        return y.reshape((batch,) + self.output_shape)

    def backward(self, backend, dy, need_dx=True):
        x, x2, z, y, act = self._saved
        dz = dy.reshape(z.shape)
        dx = self._buffer(backend, "dx", x2.shape) if need_dx else None
        backend.dense_backward(x2, self.kernel, z, y, dz, act, self.alpha, self.grads[0],
                               self.grads[1] if self.use_bias else None, dx)
        return None if dx is None else dx.reshape(x.shape)

    def get_config(self):
        return {"name": self.name, "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "input_shape": self._input_shape_arg}


class Activation(Layer):
    """Applies an activation function to its input (softmax over the last axis)."""

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.activation, self.alpha = activations.get(activation, f"Activation '{self.name}'")

    @property
    def output_activation(self):
        return self.activation

    def forward(self, backend, x, training=False, logits=False):
        x2 = x.reshape(-1, x.shape[-1])
        if logits:
            if training:
                self._saved = (x, x2, x2, "linear")
            return x
        y = self._buffer(backend, "y" if training else "inference", x2.shape)
        backend.activation_forward(x2, self.activation, self.alpha, y)
        if training:
            self._saved = (x, x2, y, self.activation)
        return y.reshape(x.shape)

    def backward(self, backend, dy, need_dx=True):
        x, x2, y, act = self._saved
        dy2 = dy.reshape(x2.shape)
        backend.activation_backward(x2, y, dy2, act, self.alpha, dy2)
        return dy

    def get_config(self):
        return {"name": self.name, "activation": self.activation, "input_shape": self._input_shape_arg}


class LeakyReLU(Activation):
    """Keras's LeakyReLU layer: x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.2, name=None, input_shape=None):
        super().__init__("leaky_relu", name=name, input_shape=input_shape)
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float, np.floating)) \
                or not np.isfinite(negative_slope) or negative_slope < 0:
            raise ValueError("LeakyReLU: expected negative_slope to be a non-negative number, "
                             f"received {negative_slope!r}")
        self.alpha = float(negative_slope)

    @property
    def output_activation(self):
        return None  # not a softmax/sigmoid: never fused with a loss

    def get_config(self):
        return {"name": self.name, "negative_slope": self.alpha, "input_shape": self._input_shape_arg}
