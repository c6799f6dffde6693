"""Dropout: inverted dropout, active only in training.

In training each value is kept with probability 1 - rate and scaled by 1 / (1 - rate)
(so inference needs no rescaling), else set to 0.  The mask comes from the counter-based
generator of csrc/pynn.h ("randomness"), keyed by the layer's seed and the step number,
so every backend draws the same mask, whatever the thread count, and a whole epoch in C
draws what step-by-step training draws.  The layer's seed is its `seed` argument, or
drawn from pynn's generator (`pynn.utils.set_random_seed`) when the layer is built; its
config carries the seed drawn, so a saved and loaded model draws the masks it would have.  In
inference the layer is the identity.
"""
from .. import utils
from ..checks import MAX_SIZE, check_number, check_seed, is_int, shown
from .base import Layer


class Dropout(Layer):

    supports_masking = True      # Keras's (masks: engineer G)
    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        where = f"Dropout '{self.name}'"
        self.rate = check_number(rate, "rate", where, 0, 1, high_open=True)
        if noise_shape is not None and (not isinstance(noise_shape, (tuple, list)) or not all(
                d is None or (is_int(d) and 1 <= d <= MAX_SIZE) for d in noise_shape)):
            raise ValueError(f"{where}: expected noise_shape as a tuple of positive integers or "
                             f"None entries (batch axis included), received {shown(noise_shape)}")
        self.noise_shape = None if noise_shape is None else \
            tuple(None if d is None else int(d) for d in noise_shape)
        self.seed = check_seed(seed, "seed", where)
        self._seed = None

    def check_input_shape(self, input_shape):
        if self.noise_shape is not None:
            if len(self.noise_shape) != len(input_shape) or any(
                    d is not None and d != 1 and d != f
                    for d, f in zip(self.noise_shape[1:], input_shape[1:])):
                raise ValueError(f"Dropout '{self.name}': noise_shape {self.noise_shape} does not "
                                 f"broadcast to the input shape {tuple(input_shape)}")

    def build(self, input_shape):
        self._seed = self.seed if self.seed is not None else \
            int(utils.rng().integers(0, 1 << 62))

    def _broadcast(self, shape):
        """Per axis (batch first): does the noise shape collapse it to 1?"""
        if self.noise_shape is None:
            return [False] * len(shape)
        return [d == 1 and s != 1 for d, s in zip(self.noise_shape, shape)]

    def plan_forward(self, b, inputs, training, logits=False):
        from ..models.plan import dropout_seed
        (x,) = inputs
        if not training or self.rate == 0:
            return x
        mask, y = b.new(x.shape, role="mask"), b.new(x.shape)
        seed = dropout_seed(self._seed, b.call_counts.get(id(self), 0))
        dims = list(x.shape[1:])
        b.op("dropout", [x.buf, mask.buf, y.buf],
             [seed, len(dims)] + dims + [int(f) for f in self._broadcast(x.shape)],
             [self.rate], label=self.name)

        def backward(b, dys, need):
            b.op("dropout_backward", [dys[0], mask.buf, dys[0]], label=self.name)
            return [dys[0]]

        b.differentiate([x], [y], backward, inplace=True)
        return y

    def get_config(self):
        # a built layer writes the seed it drew, so a saved model resumes with the same masks
        seed = self.seed if self.seed is not None else self._seed
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": seed}
