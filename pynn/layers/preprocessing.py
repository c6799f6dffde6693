"""The pixel-value preprocessing layers, with Keras 3's arguments, defaults and semantics.

    Rescaling(scale, offset=0.0)          y = x * scale + offset; scale and offset scalars
                                          or per-channel lists (the last axis)
    Normalization(axis=-1, mean=None, variance=None, invert=False)
                                          y = (x - mean) / max(sqrt(variance), 1e-7), or
                                          mean + x * max(...) with invert; statistics given
                                          or learnt by `adapt` (non-trainable weights mean,
                                          variance, count, saved with the model)
    RandomContrast(factor, value_range=(0, 255), seed=None)
    RandomBrightness(factor, value_range=(0, 255), seed=None)
                                          random per image, in training only (identity in
                                          inference)

Each is one plan op (csrc/pynn.h: OP_CHANNEL_AFFINE, OP_NORMALIZE, OP_RANDOM_CONTRAST,
OP_RANDOM_BRIGHTNESS), so a model that starts with them still trains a whole epoch in one C
call, and each is usable eagerly on NumPy arrays (`layer(images, training=True)`, a
dataset's `.map`).  Gradients pass through all four (they may sit after trainable layers):
Rescaling and Normalization are linear (dx = dy * scale per channel); RandomContrast's
backward is f g + (1 - f) mean(g) per image and channel and RandomBrightness's is dy, with
g = dy where the value was not clipped to value_range and 0 where it was.

The random layers draw one factor per image from the counter-based generator of
csrc/pynn.h ("randomness"), keyed by the layer's seed and the step number, with the image's
index in the batch as the element: every backend draws the same factors, whatever the
thread count, and a whole epoch in C draws what step-by-step training draws.  The seed is
the `seed` argument or drawn from pynn's generator when the layer is built; the config
carries the seed drawn, as Dropout's does.

Factors, as Keras 3's BaseImagePreprocessingLayer._set_factor defines them:
RandomContrast's factor lies in [0, 1]: a number f gives (lower, upper) = (0, f) (Keras 3
clips -f to the lower bound 0, so the contrast factor is drawn from [1, 1 + f]), a pair
(a, b) is sorted and refused when a > 1 or b < 0; the contrast factor is uniform in
[1 - lower, 1 + upper].  RandomBrightness's factor lies in [-1, 1]: a number f gives
(-|f|, |f|), a pair is sorted and refused when a > 1 or b < -1; the delta is uniform in
[lower, upper] times (value_range[1] - value_range[0]).
"""
import math
import numbers

import numpy as np

from .. import utils
from ..checks import check_bool, check_seed, is_int, shown
from .base import Layer, shape_text

KERAS_EPSILON = 1e-7          # keras.config.epsilon(): Normalization's floor on sqrt(variance)


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _per_channel(value, arg, where):
    """A finite number or a non-empty flat list of finite numbers, as a float or a tuple."""
    if _real(value):
        if not math.isfinite(float(value)):
            raise ValueError(f"{where}: expected {arg} to be a finite number or a list of finite "
                             f"numbers (one per channel), received {arg}={shown(value)}")
        return float(value)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or \
            np.any(np.abs(arr) > np.finfo(np.float32).max):
        raise ValueError(f"{where}: expected {arg} to be a finite number or a list of finite "
                         f"numbers (one per channel), received {arg}={shown(value)}")
    return float(arr.reshape(())) if arr.ndim == 0 else tuple(float(v) for v in arr)


def _value_range(value, where, sort):
    """Keras's value_range: a list or tuple of two numbers (RandomBrightness sorts it)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or \
            not all(_real(v) and math.isfinite(float(v)) for v in value):
        raise ValueError(f"{where}: the `value_range` argument should be a list of two numbers. "
                         f"Received: value_range={shown(value)}")
    low, high = float(value[0]), float(value[1])
    if sort:
        low, high = min(low, high), max(low, high)
    elif low > high:
        raise ValueError(f"{where}: expected value_range as [low, high] with low <= high. "
                         f"Received: value_range={shown(value)}")
    if not math.isfinite(np.float32(high) - np.float32(low)):
        raise ValueError(f"{where}: value_range spans more than float32 holds. "
                         f"Received: value_range={shown(value)}")
    return (low, high)


def _factor(value, bounds, where):
    """(lower, upper) as Keras 3's BaseImagePreprocessingLayer._set_factor makes them."""
    msg = (f"{where}: the `factor` argument should be a number (or a list of two numbers) in "
           f"the range [{bounds[0]}, {bounds[1]}]. Received: factor={shown(value)}")
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(_real(v) and math.isfinite(float(v)) for v in value):
            raise ValueError(msg)
        if value[0] > bounds[1] or value[1] < bounds[0]:
            raise ValueError(msg)
        lower, upper = sorted(float(v) for v in value)
    elif _real(value):
        f = float(value)
        if not math.isfinite(f) or f < bounds[0] or f > bounds[1]:
            raise ValueError(msg)
        f = abs(f)
        lower, upper = max(-f, bounds[0]), f
    else:
        raise ValueError(msg)
    return (lower, upper)


class Rescaling(Layer):
    """y = x * scale + offset (Keras 3's Rescaling); scale and offset broadcast over the
    last axis when they are lists."""

    supports_masking = True      # Keras's (masks: engineer G)

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        where = f"Rescaling '{self.name}'"
        self.scale = _per_channel(scale, "scale", where)
        self.offset = _per_channel(offset, "offset", where)

    def _channels(self):
        return max(len(v) if isinstance(v, tuple) else 1 for v in (self.scale, self.offset))

    def check_input_shape(self, input_shape):
        super().check_input_shape(input_shape)
        self._require_rank(input_shape, 2, min_rank=True)
        for arg, v in (("scale", self.scale), ("offset", self.offset)):
            if isinstance(v, tuple) and len(v) not in (1, input_shape[-1]):
                raise ValueError(f"Rescaling '{self.name}': {arg} of {len(v)} values does not "
                                 f"broadcast to the last axis of the input shape "
                                 f"{shape_text(input_shape)}")

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        per_channel = isinstance(self.scale, tuple) and len(self.scale) > 1 or \
            isinstance(self.offset, tuple) and len(self.offset) > 1
        c = x.shape[-1] if per_channel else 1
        inner = 1 if per_channel else int(np.prod(x.shape[1:], dtype=np.int64))

        def values(v):
            return np.broadcast_to(np.asarray(v, np.float32).reshape(-1), (c,)).copy()

        scale = b.constant(values(self.scale), f"{self.name}/scale")
        offset = b.constant(values(self.offset), f"{self.name}/offset")
        y = b.new(x.shape)
        b.op("channel_affine", [x.buf, scale, offset, y.buf], [c, inner], label=self.name)

        def backward(b, dys, need):       # dx = dy * scale
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("channel_affine", [dys[0], scale, -1, dx], [c, inner], label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return y

    def get_config(self):
        def out(v):
            return list(v) if isinstance(v, tuple) else v
        return {**super().get_config(), "scale": out(self.scale), "offset": out(self.offset)}


class Normalization(Layer):
    """Keras 3's Normalization: per position of the kept `axis` (an int, a tuple, or None
    for one mean and variance over everything), y = (x - mean) / max(sqrt(variance), 1e-7),
    or mean + x * max(sqrt(variance), 1e-7) with invert.  The statistics are the `mean` and
    `variance` arguments (constants: the layer then has no weights, as in Keras), or
    non-trainable weights mean, variance and count (zeros, ones, 0 until `adapt`), saved and
    loaded with the model.  The kept axes must be consecutive and exclude the batch axis
    (the kernel's (outer, c, inner) layout)."""

    supports_masking = True      # Keras's (masks: engineer G)

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        where = f"Normalization '{self.name}'"
        if axis is None:
            axis = ()
        elif is_int(axis):
            axis = (int(axis),)
        elif isinstance(axis, (tuple, list)) and all(is_int(a) for a in axis):
            axis = tuple(int(a) for a in axis)
        else:
            raise ValueError(f"{where}: expected axis to be an int, a tuple of ints or None, "
                             f"received axis={shown(axis)}")
        self.axis = axis
        self.invert = check_bool(invert, "invert", where)
        if (mean is None) != (variance is None):
            raise ValueError(f"{where}: when setting values directly, both `mean` and "
                             f"`variance` must be set. Received: mean={shown(mean)} and "
                             f"variance={shown(variance)}")
        self.input_mean = self.input_variance = None
        if mean is not None:
            m, v = (np.asarray(a, dtype=np.float64) if not isinstance(a, str) else None
                    for a in (mean, variance))
            for arg, a, raw in (("mean", m, mean), ("variance", v, variance)):
                if a is None or a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
                    raise ValueError(f"{where}: expected {arg} as finite numbers, received "
                                     f"{arg}={shown(raw)}")
            if m.shape != v.shape:
                raise ValueError(f"{where}: when setting values directly, `mean` and "
                                 f"`variance` must have the same shape. Received: mean shape "
                                 f"{m.shape} and variance shape {v.shape}")
            if m.ndim > len(self.axis):
                raise ValueError(f"{where}: the rank of `mean` must be less than or equal to "
                                 f"the number of axes ({len(self.axis)}). Received: mean shape "
                                 f"{m.shape} for axis {self.axis}")
            if np.any(v < 0):
                raise ValueError(f"{where}: expected variance >= 0, received "
                                 f"variance={shown(variance)}")
            self.input_mean, self.input_variance = m, v
        self.adapt_mean = self.adapt_variance = self.count = None

    # ---- shapes ---------------------------------------------------------------------------
    def _keep(self, input_shape):
        """The kept axes (sorted, non-negative) for inputs of `input_shape`."""
        where = f"Normalization '{self.name}'"
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"{where}: all `axis` values must be in the range [-ndim, ndim). "
                             f"Received inputs with ndim={ndim}, while axis={self.axis}")
        keep = tuple(sorted({a % ndim for a in self.axis}))
        if 0 in keep:
            raise ValueError(f"{where}: the batch axis (0) cannot be a kept axis; received "
                             f"axis={self.axis} for inputs of shape {shape_text(input_shape)}")
        if keep and keep != tuple(range(keep[0], keep[-1] + 1)):
            raise ValueError(f"{where}: pynn normalizes over consecutive kept axes only; "
                             f"received axis={self.axis} for inputs of shape "
                             f"{shape_text(input_shape)}")
        return keep

    def _stat_shape(self, input_shape):
        return tuple(int(input_shape[d]) for d in self._keep(input_shape))

    def check_input_shape(self, input_shape):
        super().check_input_shape(input_shape)
        self._require_rank(input_shape, 2, min_rank=True)
        shape = self._stat_shape(input_shape)
        if self.input_mean is not None:
            try:
                self._constants(shape)
            except ValueError:
                raise ValueError(f"Normalization '{self.name}': mean of shape "
                                 f"{self.input_mean.shape} does not broadcast to the kept axes "
                                 f"{shape} of the input shape {shape_text(input_shape)}") from None

    def build(self, input_shape):
        shape = self._stat_shape(input_shape)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(shape=shape, initializer="zeros", trainable=False,
                                              name="mean")
            self.adapt_variance = self.add_weight(shape=shape, initializer="ones",
                                                  trainable=False, name="variance")
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                         name="count")

    def _constants(self, shape):
        """The given mean and variance broadcast to the kept axes' shape (Keras aligns them
        with the last kept axes)."""
        out = []
        for a in (self.input_mean, self.input_variance):
            a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
            out.append(np.ascontiguousarray(np.broadcast_to(a, shape), dtype=np.float32))
        return out

    # ---- the plan ----------------------------------------------------------------------------
    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        keep = self._keep(x.shape)
        c = int(np.prod([x.shape[d] for d in keep], dtype=np.int64))
        inner = int(np.prod(x.shape[keep[-1] + 1:] if keep else x.shape[1:], dtype=np.int64))
        if self.input_mean is None:
            mean, variance = b.param(self.adapt_mean), b.param(self.adapt_variance)
        else:
            m, v = self._constants(tuple(x.shape[d] for d in keep))
            mean = b.constant(m, f"{self.name}/mean")
            variance = b.constant(v, f"{self.name}/variance")
        y = b.new(x.shape)
        b.op("normalize", [x.buf, mean, variance, y.buf], [c, inner, int(self.invert)],
             [KERAS_EPSILON], label=self.name)

        def backward(b, dys, need):       # dx = dy / d, or dy * d inverted
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("normalize", [dys[0], -1, variance, dx], [c, inner, int(self.invert)],
                 [KERAS_EPSILON], label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return y

    # ---- adapt -------------------------------------------------------------------------------
    def adapt(self, data, batch_size=None, steps=None):
        """Learn mean and variance from `data`: a NumPy array (batch axis first), or any
        iterable of batches (a dataset; a tuple or list element counts by its first item,
        the features, as Keras does for datasets).  batch_size (arrays only): the array is
        read in slices of that many rows; steps: read at most that many batches.  The
        statistics are the mean and the biased variance over every axis but the kept ones,
        combined across batches with Keras's running formula in float64."""
        where = f"Normalization '{self.name}'.adapt"
        if self.input_mean is not None:
            raise ValueError(f"{where}: the layer was given mean and variance; adapt learns them "
                             "only for a layer created without")
        if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
            raise ValueError(f"{where}: expected batch_size a positive integer or None, "
                             f"received batch_size={shown(batch_size)}")
        if steps is not None and (not is_int(steps) or steps < 1):
            raise ValueError(f"{where}: expected steps a positive integer or None, received "
                             f"steps={shown(steps)}")
        if isinstance(data, np.ndarray):
            if batch_size is None and steps is None:
                batches = iter([data])
            else:
                size = batch_size or 32
                batches = (data[i:i + size] for i in range(0, max(len(data), 1), size))
        elif batch_size is not None:
            raise ValueError(f"{where}: batch_size applies to an array; an iterable of batches "
                             f"is read batch by batch (received {type(data).__name__})")
        elif isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
            raise TypeError(f"{where}: expected a NumPy array or an iterable of batches, "
                            f"received {type(data).__name__}")
        else:
            batches = iter(data)
        total_mean = total_var = None
        total_count = 0
        seen = 0
        for batch in batches:
            if steps is not None and seen >= steps:
                break
            if isinstance(batch, (tuple, list)):
                if not batch:
                    raise ValueError(f"{where}: received an empty tuple as a batch")
                batch = batch[0]
            arr = self._check_batch(batch, where)
            reduce = self._reduce_axes(arr.shape)
            batch_count = int(np.prod([arr.shape[d] for d in reduce], dtype=np.int64))
            if batch_count == 0:
                continue
            bmean = arr.mean(axis=reduce)
            bvar = arr.var(axis=reduce)
            if total_mean is None:
                total_mean, total_var, total_count = bmean, bvar, batch_count
            else:
                total_count += batch_count
                w = batch_count / total_count
                new_mean = total_mean * (1 - w) + bmean * w
                total_var = (total_var + (total_mean - new_mean) ** 2) * (1 - w) + \
                    (bvar + (bmean - new_mean) ** 2) * w
                total_mean = new_mean
            seen += 1
        if total_mean is None:
            raise ValueError(f"{where}: received no data (an empty array or iterable); expected "
                             "at least one batch with at least one sample")
        self.adapt_mean._write(np.asarray(total_mean, np.float32).reshape(self.adapt_mean.shape))
        self.adapt_variance._write(np.asarray(total_var, np.float32)
                                   .reshape(self.adapt_variance.shape))
        self.count._write(np.asarray(total_count, np.float32).reshape(self.count.shape))

    def _reduce_axes(self, shape):
        keep = self._keep(shape)
        return tuple(d for d in range(len(shape)) if d not in keep)

    def _check_batch(self, batch, where):
        try:
            arr = np.asarray(batch)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.dtype.kind not in "fiub":
            raise ValueError(f"{where}: expected batches of numbers, received "
                             f"{type(batch).__name__}")
        if arr.ndim < 2:
            raise ValueError(f"{where}: expected batches with a batch axis and at least one "
                             f"feature axis (ndim >= 2), received a batch of shape {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: the data holds NaN or infinity")
        shape = (None,) + arr.shape[1:]
        if not self.built:
            self._maybe_build(shape)
        elif self._build_input_shape is not None and \
                tuple(self._build_input_shape[1:]) != tuple(arr.shape[1:]):
            raise ValueError(f"{where}: the layer was built for inputs of shape "
                             f"{shape_text(self._build_input_shape)}, but adapt received a "
                             f"batch of shape {arr.shape}")
        return arr

    def get_config(self):
        def out(a):
            return None if a is None else np.asarray(a).tolist()
        axis = self.axis
        return {**super().get_config(), "axis": list(axis) if len(axis) != 1 else axis[0],
                "invert": self.invert, "mean": out(self.input_mean),
                "variance": out(self.input_variance)}


class _RandomImageLayer(Layer):
    """What RandomContrast and RandomBrightness share: factor, value_range, seed, images
    (N, H, W, C), training only."""

    _BOUNDS = (0, 1)
    _SORT_RANGE = False

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} '{self.name}'"
        self.factor = _factor(factor, self._BOUNDS, where)
        self.value_range = _value_range(value_range, where, self._SORT_RANGE)
        self.seed = check_seed(seed, "seed", where)
        self._seed = None

    def check_input_shape(self, input_shape):
        super().check_input_shape(input_shape)
        self._require_rank(input_shape, 4, what=" (images: batch, height, width, channels)")

    def build(self, input_shape):
        self._seed = self.seed if self.seed is not None else \
            int(utils.rng().integers(0, 1 << 62))

    def _call_seed(self, b):
        from ..models.plan import dropout_seed
        return dropout_seed(self._seed, b.call_counts.get(id(self), 0))

    def get_config(self):
        seed = self.seed if self.seed is not None else self._seed
        return {**super().get_config(), "factor": list(self.factor),
                "value_range": list(self.value_range), "seed": seed}


class RandomContrast(_RandomImageLayer):
    """Keras 3's RandomContrast: in training, per image a factor f uniform in
    [1 - lower, 1 + upper] and per channel y = clip((x - m) f + m, *value_range), m the
    channel's mean over the image's height and width; in inference the identity."""

    _BOUNDS = (0, 1)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        if not training:
            return x
        _, h, w, c = x.shape
        factors = b.buffer((1,), role="workspace")
        y = b.new(x.shape)
        lower, upper = self.factor
        b.op("random_contrast", [x.buf, factors, y.buf], [self._call_seed(b), h, w, c],
             [lower, upper, *self.value_range], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("random_contrast_backward", [x.buf, factors, dys[0], dx], [h, w, c],
                 list(self.value_range), label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return y


class RandomBrightness(_RandomImageLayer):
    """Keras 3's RandomBrightness: in training, per image a delta uniform in
    [lower, upper] times (value_range[1] - value_range[0]), y = clip(x + delta,
    *value_range); in inference the identity."""

    _BOUNDS = (-1, 1)
    _SORT_RANGE = True

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        if not training:
            return x
        mask = b.new(x.shape, role="mask").buf if x.requires_grad else -1
        y = b.new(x.shape)
        lower, upper = self.factor
        b.op("random_brightness", [x.buf, mask, y.buf], [self._call_seed(b)],
             [lower, upper, *self.value_range], label=self.name)

        def backward(b, dys, need):
            b.op("dropout_backward", [dys[0], mask, dys[0]], label=self.name)
            return [dys[0]]

        b.differentiate([x], [y], backward, inplace=True)
        return y


__all__ = ["Rescaling", "Normalization", "RandomContrast", "RandomBrightness"]
