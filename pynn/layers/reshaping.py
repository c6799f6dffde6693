"""Flatten and Reshape: new shapes for the same contiguous values (no kernel, no copy).

Flatten keeps the row-major (H, W, C) order of channels-last images, so the kernel of
a Dense layer after it is laid out exactly as in Keras and weights transfer unchanged.
"""
import math

from ..checks import MAX_SIZE, is_int, shown
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
        if any(d is None for d in input_shape[1:]):
            return (input_shape[0], None)          # a free axis: the plan has the size
        return (input_shape[0], math.prod(input_shape[1:]))

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
        if is_int(target_shape):
            target_shape = (target_shape,)
        if not isinstance(target_shape, (tuple, list)) or not target_shape or not all(
                is_int(d) and (1 <= d <= MAX_SIZE or d == -1) for d in target_shape) or \
                list(target_shape).count(-1) > 1 or \
                math.prod(int(d) for d in target_shape if d != -1) > MAX_SIZE:
            raise ValueError(f"{where}: expected target_shape as a tuple of positive integers "
                             f"(at most one -1, at most {MAX_SIZE} values in all), received "
                             f"target_shape={shown(target_shape)}")
        self.target_shape = tuple(int(d) for d in target_shape)

    def check_input_shape(self, input_shape):
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        shape = self.target_shape
        if -1 in shape:
            shape = None if size % known else tuple(size // known if d == -1 else d for d in shape)
        if shape is None or math.prod(shape) != size:
            raise ValueError(f"Reshape '{self.name}': cannot reshape an input of shape "
                             f"{shape_text(input_shape)} ({size} values per sample) to "
                             f"target_shape={self.target_shape}")
        return (input_shape[0],) + tuple(shape)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        return b.alias(x, self.compute_output_shape(x.shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
