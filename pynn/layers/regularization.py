"""Dropout: inverted dropout, active only in training.

In training each value is kept with probability 1 - rate and scaled by 1 / (1 - rate)
(so inference needs no rescaling), else set to 0.  The mask is drawn on the host from
pynn's seeded generator (`pynn.utils.set_random_seed`), or from the layer's own
generator when it was given a `seed`, and copied to the backend; the backend only
multiplies.  In inference the layer is the identity.
"""
import numbers

import numpy as np

from .. import utils
from ..backend import reference
from .base import Layer


class Dropout(Layer):
    def __init__(self, rate, noise_shape=None, seed=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        where = f"Dropout '{self.name}'"
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"{where}: received an invalid value for `rate`, expected a float "
                             f"in [0, 1). Received: rate={rate!r}")
        if noise_shape is not None and (not isinstance(noise_shape, (tuple, list)) or not all(
                d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1)
                for d in noise_shape)):
            raise ValueError(f"{where}: expected noise_shape as a tuple of positive integers or "
                             f"None entries (batch axis included), received {noise_shape!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"{where}: expected seed to be a non-negative integer or None, "
                             f"received seed={seed!r}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = None if seed is None else int(seed)
        self._generator = None if seed is None else np.random.default_rng(self.seed)

    def compute_output_shape(self, input_shape):
        if self.noise_shape is not None:
            full = (None,) + tuple(input_shape)
            if len(self.noise_shape) != len(full) or any(
                    d is not None and d != 1 and d != f for d, f in zip(self.noise_shape[1:], full[1:])):
                raise ValueError(f"Dropout '{self.name}': noise_shape {self.noise_shape} does not "
                                 f"broadcast to the input shape {full}")
        return input_shape

    def _mask(self, shape):
        generator = self._generator if self._generator is not None else utils.rng()
        draw_shape = shape if self.noise_shape is None else tuple(
            s if d is None else d for d, s in zip(self.noise_shape, shape))
        mask = reference.dropout_mask(draw_shape, self.rate, generator)
        return np.ascontiguousarray(np.broadcast_to(mask, shape))

    def forward(self, backend, x, training=False, logits=False):
        self._active = training and self.rate > 0
        if not self._active:
            return x
        mask = self._buffer(backend, "mask", x.shape)
        backend.copy_from_host(mask, self._mask(tuple(x.shape)))
        y = self._buffer(backend, "y", x.shape)
        backend.dropout_forward(x, mask, y)
        self._saved_mask = mask
        return y

    def backward(self, backend, dy, need_dx=True):
        if not need_dx or not self._active:
            return dy if need_dx else None
        backend.dropout_backward(dy, self._saved_mask, dy)
        return dy

    def get_config(self):
        return {"name": self.name, "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self.seed,
                "input_shape": None if self._input_shape_arg is None else list(self._input_shape_arg)}
