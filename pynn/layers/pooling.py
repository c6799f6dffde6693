"""MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D over NHWC images.

Windows and output sizes follow Keras (see conv.py); strides default to pool_size.
With padding="same", max pooling never picks a padded position and average pooling
divides by the number of real input positions in the window, as Keras/TF do.
"""
from .base import Layer
from .conv import check_data_format, check_padding, positive_int_pair, window_geometry


class _Pooling2D(Layer):
    _kind = None   # "max" or "avg": which backend kernels

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 name=None, input_shape=None):
        cls = type(self).__name__
        where = cls if name is None else f"{cls} '{name}'"
        pool_size = positive_int_pair(pool_size, "pool_size", where)
        strides = pool_size if strides is None else positive_int_pair(strides, "strides", where)
        padding = check_padding(padding, where)
        data_format = check_data_format(data_format, where)
        super().__init__(name=name, input_shape=input_shape)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding
        self.data_format = data_format

    def _geometry(self, input_shape):
        return window_geometry(input_shape, self.pool_size, self.strides, self.padding,
                               f"{type(self).__name__} '{self.name}'")

    def compute_output_shape(self, input_shape):
        (oh, ow), _ = self._geometry(input_shape)
        return (oh, ow, input_shape[-1])

    def build(self, input_shape):
        super().build(input_shape)
        self._out_hw, self._pads = self._geometry(self.input_shape)

    def forward(self, backend, x, training=False, logits=False):
        y = self._buffer(backend, "y" if training else "inference", (x.shape[0],) + self.output_shape)
        getattr(backend, f"{self._kind}pool2d_forward")(x, self.pool_size, self.strides,
                                                         self._pads, y)
        if training:
            self._saved = (x, y)
        return y

    def backward(self, backend, dy, need_dx=True):
        if not need_dx:
            return None
        x, y = self._saved
        dx = self._buffer(backend, "dx", x.shape)
        if self._kind == "max":
            backend.maxpool2d_backward(x, y, dy, self.pool_size, self.strides, self._pads, dx)
        else:
            backend.avgpool2d_backward(dy, self.pool_size, self.strides, self._pads, dx)
        return dx

    def get_config(self):
        return {"name": self.name, "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format,
                "input_shape": None if self._input_shape_arg is None else list(self._input_shape_arg)}


class MaxPooling2D(_Pooling2D):
    """The maximum over each pool_size window (padding never wins)."""
    _kind = "max"


class AveragePooling2D(_Pooling2D):
    """The mean over each pool_size window (padded positions not counted)."""
    _kind = "avg"


class GlobalAveragePooling2D(Layer):
    """(N, H, W, C) -> (N, C): the mean over all positions (keepdims: (N, 1, 1, C))."""

    def __init__(self, data_format=None, keepdims=False, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.data_format = check_data_format(data_format, f"GlobalAveragePooling2D '{self.name}'")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAveragePooling2D '{self.name}': expected inputs of shape "
                             "(batch, height, width, channels), received input shape "
                             f"(None, {', '.join(map(str, input_shape))})")
        c = input_shape[-1]
        return (1, 1, c) if self.keepdims else (c,)

    def forward(self, backend, x, training=False, logits=False):
        n, c = x.shape[0], self.input_shape[-1]
        y = self._buffer(backend, "y" if training else "inference", (n, c))
        backend.global_avgpool2d_forward(x, y)
        if training:
            self._x_shape = x.shape
        return y.reshape((n,) + self.output_shape)

    def backward(self, backend, dy, need_dx=True):
        if not need_dx:
            return None
        dx = self._buffer(backend, "dx", self._x_shape)
        backend.global_avgpool2d_backward(dy.reshape(self._x_shape[0], -1), dx)
        return dx

    def get_config(self):
        return {"name": self.name, "data_format": self.data_format, "keepdims": self.keepdims,
                "input_shape": None if self._input_shape_arg is None else list(self._input_shape_arg)}
