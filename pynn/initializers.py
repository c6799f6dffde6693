"""Weight initializers with Keras 3's formulas and names.

Each draws from pynn's seeded generator (`pynn.utils.set_random_seed`) unless it was
given its own `seed`, and returns a float32 array of the requested shape.
"""
import numpy as np

from . import utils
from .checks import check_choice, check_number, check_seed, shown


def _fans(shape):
    """(fan_in, fan_out) as Keras computes them: Dense (in, out); Conv (kh, kw, cin, cout)."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    def __init__(self, seed=None):
        self.seed = check_seed(seed, "seed", type(self).__name__)

    def _rng(self):
        return utils.rng() if self.seed is None else np.random.default_rng(self.seed)

    def __call__(self, shape, dtype=np.float32):
        raise NotImplementedError

    def get_config(self):
        return {"seed": self.seed}


class Zeros(Initializer):
    def __call__(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype=np.float32):
        return np.ones(shape, dtype=dtype)


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = check_number(mean, "mean", "RandomNormal")
        self.stddev = check_number(stddev, "stddev", "RandomNormal", 0)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}

    def __call__(self, shape, dtype=np.float32):
        return self._rng().normal(self.mean, self.stddev, size=shape).astype(dtype)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = check_number(minval, "minval", "RandomUniform")
        self.maxval = check_number(maxval, "maxval", "RandomUniform", self.minval)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}

    def __call__(self, shape, dtype=np.float32):
        return self._rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)


def _truncated_normal(rng, stddev, shape):
    """Normal(0, stddev) with values beyond two standard deviations redrawn."""
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: the family Glorot and He belong to."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        self.scale = check_number(scale, "scale", "VarianceScaling", 0, low_open=True)
        self.mode = check_choice(mode, "mode", "VarianceScaling", ("fan_in", "fan_out", "fan_avg"))
        self.distribution = check_choice(distribution, "distribution", "VarianceScaling",
                                         ("truncated_normal", "untruncated_normal", "uniform"))

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}

    def __call__(self, shape, dtype=np.float32):
        fan_in, fan_out = _fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            # 0.8796... is the stddev of a standard normal truncated at two stddevs.
            out = _truncated_normal(rng, np.sqrt(variance) / 0.87962566103423978, shape)
        elif self.distribution == "untruncated_normal":
            out = rng.normal(0.0, np.sqrt(variance), size=shape)
        else:
            limit = np.sqrt(3.0 * variance)
            out = rng.uniform(-limit, limit, size=shape)
        return out.astype(dtype)


class _Named(VarianceScaling):
    """A VarianceScaling with fixed settings: only the seed is configurable."""

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_Named):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(_Named):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeNormal(_Named):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


class HeUniform(_Named):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)


# ---- Orthogonal (engineer H: the recurrent kernels' default) ----------------------------
class Orthogonal(Initializer):
    """Keras 3's Orthogonal: a (rows, cols) matrix with orthonormal rows or columns (the QR
    of a normal draw, signs fixed by R's diagonal), times `gain`; rows = prod(shape[:-1])."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = check_number(gain, "gain", "Orthogonal")

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}

    def __call__(self, shape, dtype=np.float32):
        if len(shape) < 2:
            raise ValueError("Orthogonal: the shape must have at least 2 dimensions, received "
                             f"{tuple(shape)}")
        rows = int(np.prod(shape[:-1]))
        cols = int(shape[-1])
        a = self._rng().normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q[:rows, :cols]).reshape(shape).astype(dtype)


_BY_NAME = {
    "zeros": Zeros, "ones": Ones,
    "random_normal": RandomNormal, "random_uniform": RandomUniform,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform,
    "orthogonal": Orthogonal,   # engineer H
}


_CLASSES = {cls.__name__: cls for cls in (Zeros, Ones, RandomNormal, RandomUniform, VarianceScaling,
                                          GlorotUniform, GlorotNormal, HeNormal, HeUniform,
                                          Orthogonal)}


def serialize(initializer):
    """{"class_name": ..., "config": {...}}: JSON that `get` turns back into an initializer."""
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}


def get(identifier, where="initializer", arg=None):
    """Resolve a name, class, instance or serialized dict to an Initializer instance.
    `arg`: the constructor argument it came from (kernel_initializer, ...), which a refusal
    names beside `where`."""
    if arg is not None:
        where = f"{where}: received an invalid value for `{arg}`"
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        cls = _CLASSES.get(name) if isinstance(name, str) else None
        config = identifier.get("config", {})
        if cls is None or not isinstance(config, dict):
            raise ValueError(f"{where}: unknown initializer description {shown(identifier)}; "
                             f"expected class_name one of {', '.join(sorted(_CLASSES))} and a "
                             "config dict")
        try:
            return cls(**config)
        except (TypeError, ValueError) as exc:    # a key it does not take, a value refused
            raise ValueError(f"{where}: {exc}") from None
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"{where}: unknown initializer {identifier!r}; expected one of "
                             f"{', '.join(sorted(_BY_NAME))} or an Initializer instance")
        return cls()
    raise TypeError(f"{where}: expected an initializer name or Initializer instance, received "
                    f"{type(identifier).__name__} {identifier!r}")
