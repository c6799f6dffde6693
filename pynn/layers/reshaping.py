"""Flatten and Reshape: new shapes for the same contiguous values (no kernel, no copy).

Flatten keeps the row-major (H, W, C) order of channels-last images, so the kernel of
a Dense layer after it is laid out exactly as in Keras and weights transfer unchanged.
"""
import numpy as np

from .base import Layer


def _shape_text(shape):
    return f"(None, {', '.join(map(str, shape))})"


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), row-major."""

    def __init__(self, data_format=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten '{self.name}': only data_format='channels_last' is "
                             f"supported, received data_format={data_format!r}")
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, backend, x, training=False, logits=False):
        if training:
            self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, backend, dy, need_dx=True):
        return dy.reshape(self._x_shape) if need_dx else None

    def get_config(self):
        return {"name": self.name, "data_format": self.data_format,
                "input_shape": None if self._input_shape_arg is None else list(self._input_shape_arg)}


class Reshape(Layer):
    """(N, *input_shape) -> (N, *target_shape); one entry of target_shape may be -1."""

    def __init__(self, target_shape, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        where = f"Reshape '{self.name}'"
        if isinstance(target_shape, (int, np.integer)) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        if not isinstance(target_shape, (tuple, list)) or not target_shape or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d >= 1 or d == -1)
                for d in target_shape) or list(target_shape).count(-1) > 1:
            raise ValueError(f"{where}: expected target_shape as a tuple of positive integers "
                             f"(at most one -1), received target_shape={target_shape!r}")
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        shape = self.target_shape
        if -1 in shape:
            if size % known:
                shape = None
            else:
                shape = tuple(size // known if d == -1 else d for d in shape)
        if shape is None or int(np.prod(shape)) != size:
            raise ValueError(f"Reshape '{self.name}': cannot reshape an input of shape "
                             f"{_shape_text(input_shape)} ({size} values per sample) to "
                             f"target_shape={self.target_shape}")
        return shape

    def forward(self, backend, x, training=False, logits=False):
        if training:
            self._x_shape = x.shape
        return x.reshape((x.shape[0],) + self.output_shape)

    def backward(self, backend, dy, need_dx=True):
        return dy.reshape(self._x_shape) if need_dx else None

    def get_config(self):
        return {"name": self.name, "target_shape": list(self.target_shape),
                "input_shape": None if self._input_shape_arg is None else list(self._input_shape_arg)}
