"""MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D over NHWC images.

Windows and output sizes follow Keras (see conv.py); strides default to pool_size.
With padding="same", max pooling never picks a padded position and average pooling
divides by the number of real input positions in the window, as Keras/TF do.
"""
from ..checks import check_bool
from .base import Layer, shape_text
from .conv import (check_data_format, check_padding, positive_int_pair, window_geometry,
                   window_ints)


class _Pooling2D(Layer):
    _kind = None   # "maxpool2d" or "avgpool2d": which ops

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        cls = type(self).__name__
        name = kwargs.get("name")
        where = cls if name is None else f"{cls} '{name}'"
        pool_size = positive_int_pair(pool_size, "pool_size", where)
        strides = pool_size if strides is None else positive_int_pair(strides, "strides", where)
        padding = check_padding(padding, where)
        data_format = check_data_format(data_format, where)
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding
        self.data_format = data_format

    def _geometry(self, input_shape):
        return window_geometry(input_shape, self.pool_size, self.strides, self.padding,
                               f"{type(self).__name__} '{self.name}'")

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 4, what=" (batch, height, width, channels)")
        self._geometry(input_shape)

    def compute_output_shape(self, input_shape):
        (oh, ow), _ = self._geometry(input_shape)
        return (input_shape[0], oh, ow, input_shape[-1])

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        (oh, ow), pads = self._geometry(x.shape)
        y = b.new((x.shape[0], oh, ow, x.shape[-1]))
        geometry = window_ints(x.shape, self.pool_size, self.strides, pads, (oh, ow))
        b.op(self._kind, [x.buf, y.buf], geometry, label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient")
            operands = [x.buf, y.buf, dys[0], dx] if self._kind == "maxpool2d" else [dys[0], dx]
            b.op(self._kind + "_backward", operands, geometry, label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return y

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format}


class MaxPooling2D(_Pooling2D):
    """The maximum over each pool_size window (padding never wins)."""
    _kind = "maxpool2d"


class AveragePooling2D(_Pooling2D):
    """The mean over each pool_size window (padded positions not counted)."""
    _kind = "avgpool2d"


class GlobalAveragePooling2D(Layer):
    """(N, H, W, C) -> (N, C): the mean over all positions (keepdims: (N, 1, 1, C))."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, f"GlobalAveragePooling2D '{self.name}'")
        self.keepdims = check_bool(keepdims, "keepdims", f"GlobalAveragePooling2D '{self.name}'")

    def check_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Input of layer '{self.name}' (GlobalAveragePooling2D) is "
                             "incompatible with the layer: expected inputs of shape (batch, "
                             f"height, width, channels), received {shape_text(input_shape)}")

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (input_shape[0], 1, 1, c) if self.keepdims else (input_shape[0], c)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        _, h, w, c = x.shape
        y = b.new((x.shape[0], c))
        b.op("global_avgpool2d", [x.buf, y.buf], [h, w, c], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("global_avgpool2d_backward", [dys[0], dx], [h, w, c], label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return b.alias(y, self.compute_output_shape(x.shape)) if self.keepdims else y

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}
