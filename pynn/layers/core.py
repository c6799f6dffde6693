"""Dense, Activation and LeakyReLU: the layers of a fully connected network (ReLU, Softmax,
ELU and PReLU: pynn/layers/activations.py)."""
from .. import activations, ids, initializers
from ..checks import check_bool, check_int, check_number
from ..models.plan import Tensor
from .base import KernelBiasLayer, Layer
from .input_layer import Input, InputLayer  # noqa: F401  (re-exported: pynn.layers.Input)


class Dense(KernelBiasLayer):
    """y = activation(x @ kernel + bias) on the last axis; kernel (in, units), bias (units,)."""

    supports_masking = True      # Keras's (masks: engineer G)

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        units = check_int(units, "units", "Dense")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = f"Dense '{self.name}'"
        self._kernel_bias_options(where, kernel_regularizer, bias_regularizer,
                                  kernel_constraint, bias_constraint)   # engineer F
        self.units = units
        self.activation, self.alpha = activations.get(activation, where)
        self.use_bias = check_bool(use_bias, "use_bias", where)
        self.kernel_initializer = initializers.get(kernel_initializer, where,
                                                   "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, where,
                                                 "bias_initializer")

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, min_rank=True)
        if self._build_input_shape is not None and input_shape[-1] != self._build_input_shape[-1]:
            raise ValueError(
                f"Input of layer '{self.name}' (Dense) is incompatible with the layer: expected "
                f"axis -1 of input shape to have value {self._build_input_shape[-1]}, but "
                f"received input with shape {tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def build(self, input_shape):
        self._create_kernel_bias((input_shape[-1], self.units), self.units)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        act = "linear" if logits else self.activation
        shape = x.shape[:-1] + (self.units,)
        z = b.new(shape)
        y = z if activations.shares_output(act) else b.new(shape)
        w, bias = b.param(self._kernel), b.param_or_none(self._bias)
        geometry = [x.shape[-1], self.units, ids.ACTIVATIONS[act]]
        b.op("dense", [x.buf, w, bias, z.buf, y.buf], geometry, [self.alpha], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient") if need[0] else -1
            b.op("dense_backward", [x.buf, w, z.buf, y.buf, dys[0], b.grad(self._kernel),
                                    b.grad(self._bias), dx], geometry, [self.alpha],
                 label=self.name)
            return [None if dx < 0 else dx]

        b.differentiate([x], [y], backward, params=[self._kernel, self._bias], inplace=True)
        return y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **self._kernel_bias_config()}


class Activation(Layer):
    """Applies an activation function to its input (softmax over the last axis)."""

    supports_masking = True      # Keras's (masks: engineer G)

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation, self.alpha = activations.get(activation, f"Activation '{self.name}'")

    @property
    def output_activation(self):
        return self.activation

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        if logits:                    # the loss applies the softmax/sigmoid itself
            return x
        cols = x.shape[-1]
        act = ids.ACTIVATIONS[self.activation]
        # relu(x) over x where the plan allows it (its backward reads x's sign, which
        # relu(x) keeps): one buffer instead of two
        y = Tensor(x.buf, x.shape) if self.activation == "relu" and b.write_over_input \
            else b.new(x.shape)
        b.op("activation", [x.buf, y.buf], [cols, act], [self.alpha], label=self.name)

        def backward(b, dys, need):
            b.op("activation_backward", [x.buf, y.buf, dys[0], dys[0]], [cols, act],
                 [self.alpha], label=self.name)
            return [dys[0]]

        b.differentiate([x], [y], backward, inplace=True)
        return y

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class LeakyReLU(Activation):
    """Keras's LeakyReLU layer: x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__("leaky_relu", **kwargs)
        self.alpha = check_number(negative_slope, "negative_slope", f"LeakyReLU '{self.name}'", 0)

    @property
    def output_activation(self):
        return None  # not a softmax/sigmoid: never fused with a loss

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "negative_slope": self.alpha}


# ReLU and Softmax: pynn/layers/activations.py (engineer A)
