"""Flatten and Reshape: new shapes for the same contiguous values (no kernel, no copy).

Flatten keeps the row-major (H, W, C) order of channels-last images, so the kernel of
a Dense layer after it is laid out exactly as in Keras and weights transfer unchanged.
"""
import numpy as np

from .base import Layer, shape_text


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), row-major."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten '{self.name}': only data_format='channels_last' is "
                             f"supported, received data_format={data_format!r}")
        self.data_format = "channels_last"

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, min_rank=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:], dtype=np.int64)))

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        return b.alias(x, self.compute_output_shape(x.shape))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """(N, *input_shape) -> (N, *target_shape); one entry of target_shape may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        where = f"Reshape '{self.name}'"
        if isinstance(target_shape, (int, np.integer)) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        if not isinstance(target_shape, (tuple, list)) or not target_shape or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d >= 1 or d == -1)
                for d in target_shape) or list(target_shape).count(-1) > 1:
            raise ValueError(f"{where}: expected target_shape as a tuple of positive integers "
                             f"(at most one -1), received target_shape={target_shape!r}")
        self.target_shape = tuple(int(d) for d in target_shape)

    def check_input_shape(self, input_shape):
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape[1:], dtype=np.int64))
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        shape = self.target_shape
        if -1 in shape:
            shape = None if size % known else tuple(size // known if d == -1 else d for d in shape)
        if shape is None or int(np.prod(shape, dtype=np.int64)) != size:
            raise ValueError(f"Reshape '{self.name}': cannot reshape an input of shape "
                             f"{shape_text(input_shape)} ({size} values per sample) to "
                             f"target_shape={self.target_shape}")
        return (input_shape[0],) + tuple(shape)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        return b.alias(x, self.compute_output_shape(x.shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
