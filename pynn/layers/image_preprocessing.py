"""Keras 3's geometric image preprocessing and augmentation layers, on NHWC float32 images.

  Resizing(height, width, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio,
           fill_mode, fill_value)                            always: OP_RESIZE
  CenterCrop(height, width)                                  always: OP_CROP, or OP_RESIZE
                                                             (smart resize) when the image
                                                             is smaller than the target
  RandomCrop(height, width, seed)                            training: OP_IMAGE_RANDOM + OP_CROP
  RandomFlip(mode, seed)                                     training: OP_IMAGE_RANDOM + OP_FLIP
  RandomRotation / RandomZoom / RandomTranslation(...)       training: OP_IMAGE_RANDOM + OP_AFFINE

The pixel work is csrc/image.c (and its NumPy and CUDA twins); the conventions, the fill
modes and the parameters drawn are documented with it in csrc/pynn.h.

Randomness.  A random layer's seed is its `seed` argument, or drawn from pynn's generator
when the layer is built (its config then carries the seed drawn), as Dropout's.  Each
image's parameters are drawn by OP_IMAGE_RANDOM from (seed, step number, image index) with
the counter-based generator: a run repeats bitwise on any thread count, step by step or a
whole epoch per C call.  Differences from Keras 3 (whose draws come from its own
SeedGenerator, so no sequence of numbers is shared anyway): RandomCrop draws an offset per
image (Keras: one per batch).

Training and inference.  The random layers act in training only (fit, or a call with
training=True); in inference RandomFlip / RandomRotation / RandomZoom / RandomTranslation
are the identity, and RandomCrop takes the largest window of the target aspect ratio at the
centre, resized to (height, width): the behaviour Keras 3 documents (and Keras 2 had), also
what it does in training when the image is not larger than the target in both dimensions.
(Keras 3's code returns the input unchanged at inference, at odds with its own
compute_output_shape; pynn does not copy that.)

Gradients.  These layers compute no gradient: they belong at the input of a model, where
none is needed (the plan skips backward rules there).  Placed after a layer that trains,
compiling a training plan through them raises a ValueError naming the layer.

Refused (ValueError naming the argument): interpolations other than "bilinear" and
"nearest" (Keras's "bicubic", "lanczos3", "lanczos5", "area"), Resizing's antialias=True,
data_format "channels_first", unbatched (3-D) inputs.
"""
from .. import utils
from ..checks import FLOAT32_MAX, check_bool, check_int, check_number, check_seed, shown
from .base import Layer

_INTERPOLATIONS = ("bilinear", "nearest")
_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_KERAS_ONLY_INTERPOLATIONS = ("bicubic", "lanczos3", "lanczos5", "area")


def _where(layer):
    return f"{type(layer).__name__} '{layer.name}'"


def _check_interpolation(value, where):
    if value not in _INTERPOLATIONS:
        extra = " (Keras's other interpolations are not implemented in pynn)" \
            if value in _KERAS_ONLY_INTERPOLATIONS else ""
        raise ValueError(f"{where}: expected `interpolation` in {_INTERPOLATIONS}{extra}. "
                         f"Received: interpolation={shown(value)}")
    return value


def _check_fill_mode(value, where, modes=_FILL_MODES):
    if value not in modes:
        raise ValueError(f"{where}: expected `fill_mode` in {modes}. "
                         f"Received: fill_mode={shown(value)}")
    return value


def _check_data_format(value, where):
    if value not in (None, "channels_last"):
        raise ValueError(f"{where}: pynn's images are channels_last; expected `data_format` "
                         f"None or 'channels_last'. Received: data_format={shown(value)}")
    return "channels_last"


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _factor(value, arg, where, low, high, low_open=False):
    """Keras's factor: a number f (the range (-|f|, |f|), clipped at `low`), or a pair
    (lower, upper) in any order; every value in [low, high] ((low, high] if low_open)."""
    interval = f"{'(' if low_open else '['}{low}, {high}]"

    def ok(v):
        return _is_number(v) and (v > low if low_open else v >= low) and v <= high

    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(ok(v) for v in value):
            raise ValueError(f"{where}: expected `{arg}` as a number or a pair of numbers in "
                             f"{interval}. Received: {arg}={shown(value)}")
        lower, upper = sorted(float(v) for v in value)
        return lower, upper
    if not ok(value):
        raise ValueError(f"{where}: expected `{arg}` as a number or a pair of numbers in "
                         f"{interval}. Received: {arg}={shown(value)}")
    f = abs(float(value))
    return max(-f, low) if not low_open else -f, f


def _crop_window(h, w, th, tw):
    """Keras's crop_to_aspect_ratio (and smart_resize) window: (top, left, height, width)."""
    ch = max(min(h, int(float(w * th) / tw)), 1)
    cw = max(min(w, int(float(h * tw) / th)), 1)
    return int(float(h - ch) / 2), int(float(w - cw) / 2), ch, cw


def _pad_window(h, w, th, tw):
    """Keras's pad_to_aspect_ratio: the image padded by the same amount on both sides of
    one dimension, as a window reaching outside the image."""
    ph = max(h, int(float(w * th) / tw))
    pw = max(w, int(float(h * tw) / th))
    hs, ws = int(float(ph - h) / 2), int(float(pw - w) / 2)
    if hs > 0:
        return -hs, 0, h + 2 * hs, w
    if ws > 0:
        return 0, -ws, h, w + 2 * ws
    return 0, 0, h, w


class _ImageLayer(Layer):
    """Shared parts: rank-4 input, static height and width, no gradient."""

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 4, what=" (batch, height, width, channels)")
        if any(d is None for d in input_shape[1:]):
            raise ValueError(f"{_where(self)}: expected a fully defined height, width and "
                             f"channels, received input shape {tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _no_gradient(self, b, x):
        if b.training and x.requires_grad:
            raise ValueError(f"{_where(self)}: a gradient would have to flow through this "
                             "layer (it follows a layer that trains), and pynn's image "
                             "preprocessing layers compute none: place it at the input of "
                             "the model")

    def _resize_op(self, b, x, out_hw, window, interpolation, fill_value):
        _, h, w, c = x.shape
        y = b.new((x.shape[0], out_hw[0], out_hw[1], c))
        b.op("resize", [x.buf, y.buf],
             [h, w, c, out_hw[0], out_hw[1]] + list(window) +
             [_core_ids()["interp"][interpolation]], [fill_value], label=self.name)
        return y


def _core_ids():
    from .. import _core
    return {"interp": _core.INTERPOLATIONS, "fill": _core.FILL_MODES,
            "random": _core.RANDOM_KINDS, "reals": _core.RANDOM_REALS}


class _RandomLayer(_ImageLayer):
    """A layer drawing per-image parameters: its seed as Dropout's."""

    def _init_seed(self, seed):
        self.seed = check_seed(seed, "seed", _where(self))
        self._seed = None

    def build(self, input_shape):
        self._seed = self.seed if self.seed is not None else \
            int(utils.rng().integers(0, 1 << 62))

    def _draw(self, b, x, kind, ranges=(), out_hw=(0, 0)):
        from ..models.plan import dropout_seed
        _, h, w, _ = x.shape
        params = b.scratch((8,), batched=True)
        seed = dropout_seed(self._seed, b.call_counts.get(id(self), 0))
        ids = _core_ids()
        reals = list(ranges) + [0.0] * (ids["reals"] - len(ranges))
        b.op("image_random", [params], [ids["random"][kind], seed, h, w, out_hw[0], out_hw[1]],
             reals, label=self.name)
        return params

    def _seed_config(self):
        return self.seed if self.seed is not None else self._seed


# ---- deterministic layers ------------------------------------------------------------------

class Resizing(_ImageLayer):
    """Resize to (height, width): Keras 3's Resizing (half-pixel centres, antialias=False)."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0,
                 antialias=False, data_format=None, **kwargs):
        super().__init__(**kwargs)
        where = _where(self)
        self.height = check_int(height, "height", where)
        self.width = check_int(width, "width", where)
        self.interpolation = _check_interpolation(interpolation, where)
        self.crop_to_aspect_ratio = check_bool(crop_to_aspect_ratio, "crop_to_aspect_ratio",
                                               where)
        self.pad_to_aspect_ratio = check_bool(pad_to_aspect_ratio, "pad_to_aspect_ratio", where)
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError(f"{where}: only one of `pad_to_aspect_ratio` and "
                             "`crop_to_aspect_ratio` can be True")
        self.fill_mode = _check_fill_mode(fill_mode, where, ("constant",))
        self.fill_value = check_number(fill_value, "fill_value", where)
        if check_bool(antialias, "antialias", where):
            raise ValueError(f"{where}: antialias=True is not implemented in pynn (Keras 3's "
                             "default, antialias=False, is)")
        self.antialias = False
        self.data_format = _check_data_format(data_format, where)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def _window(self, h, w):
        if self.crop_to_aspect_ratio:
            return _crop_window(h, w, self.height, self.width)
        if self.pad_to_aspect_ratio:
            return _pad_window(h, w, self.height, self.width)
        return 0, 0, h, w

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        self._no_gradient(b, x)
        return self._resize_op(b, x, (self.height, self.width), self._window(*x.shape[1:3]),
                               self.interpolation, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias,
                "data_format": self.data_format}


class CenterCrop(_ImageLayer):
    """The centre (height, width) window; an image smaller than that in a dimension is
    smart-resized (the largest centred window of the target aspect ratio, resized), as
    Keras 3's CenterCrop."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        where = _where(self)
        self.height = check_int(height, "height", where)
        self.width = check_int(width, "width", where)
        self.data_format = _check_data_format(data_format, where)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        self._no_gradient(b, x)
        _, h, w, c = x.shape
        if h >= self.height and w >= self.width:
            y = b.new((x.shape[0], self.height, self.width, c))
            b.op("crop", [x.buf, -1, y.buf],
                 [h, w, c, self.height, self.width, (h - self.height) // 2,
                  (w - self.width) // 2], label=self.name)
            return y
        return self._resize_op(b, x, (self.height, self.width),
                               _crop_window(h, w, self.height, self.width), "bilinear", 0.0)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "data_format": self.data_format}


# ---- random layers -------------------------------------------------------------------------

class RandomCrop(_RandomLayer):
    """Training: a random (height, width) window of each image (an offset per image).
    Inference, or an image not larger than the target in both dimensions: the centred
    window of the target aspect ratio resized to (height, width) (see the module doc)."""

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        where = _where(self)
        self.height = check_int(height, "height", where)
        self.width = check_int(width, "width", where)
        self.data_format = _check_data_format(data_format, where)
        self._init_seed(seed)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        self._no_gradient(b, x)
        _, h, w, c = x.shape
        if training and h > self.height and w > self.width:
            params = self._draw(b, x, "crop", out_hw=(self.height, self.width))
            y = b.new((x.shape[0], self.height, self.width, c))
            b.op("crop", [x.buf, params, y.buf], [h, w, c, self.height, self.width, 0, 0],
                 label=self.name)
            return y
        return self._resize_op(b, x, (self.height, self.width),
                               _crop_window(h, w, self.height, self.width), "bilinear", 0.0)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "seed": self._seed_config(), "data_format": self.data_format}


class RandomFlip(_RandomLayer):
    """Training: each image flipped with probability 1/2 (Keras 3: one draw per image;
    "horizontal_and_vertical" flips both ways together)."""

    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        where = _where(self)
        if mode not in self._MODES:
            raise ValueError(f"{where}: expected `mode` in {self._MODES}. "
                             f"Received: mode={shown(mode)}")
        self.mode = mode
        self.data_format = _check_data_format(data_format, where)
        self._init_seed(seed)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        if not training:
            return x
        self._no_gradient(b, x)
        _, h, w, c = x.shape
        params = self._draw(b, x, "flip")
        y = b.new(x.shape)
        b.op("flip", [x.buf, params, y.buf],
             [h, w, c, int(self.mode != "vertical"), int(self.mode != "horizontal")],
             label=self.name)
        return y

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "seed": self._seed_config(),
                "data_format": self.data_format}


class _RandomAffine(_RandomLayer):
    """Training: each image resampled through a random transform (OP_AFFINE)."""

    _kind = None

    def _init_affine(self, fill_mode, interpolation, seed, fill_value, data_format):
        where = _where(self)
        self.fill_mode = _check_fill_mode(fill_mode, where)
        self.interpolation = _check_interpolation(interpolation, where)
        self.fill_value = check_number(fill_value, "fill_value", where, -FLOAT32_MAX,
                                       FLOAT32_MAX)
        self.data_format = _check_data_format(data_format, where)
        self._init_seed(seed)

    def _ranges(self):
        raise NotImplementedError

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        if not training:
            return x
        self._no_gradient(b, x)
        _, h, w, c = x.shape
        params = self._draw(b, x, self._kind, self._ranges())
        y = b.new(x.shape)
        ids = _core_ids()
        b.op("affine", [x.buf, params, y.buf],
             [h, w, c, ids["interp"][self.interpolation], ids["fill"][self.fill_mode]],
             [self.fill_value], label=self.name)
        return y

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "seed": self._seed_config(),
                "fill_value": self.fill_value, "data_format": self.data_format}


class RandomRotation(_RandomAffine):
    """Training: each image rotated by a random angle in factor x 2 pi (counter-clockwise
    for positive angles, as Keras 3), about its centre."""

    _kind = "rotation"

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = _factor(factor, "factor", _where(self), -1.0, 1.0)
        self._init_affine(fill_mode, interpolation, seed, fill_value, data_format)

    def _ranges(self):
        return list(self.factor)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


class RandomZoom(_RandomAffine):
    """Training: each image zoomed by 1 + a random value of height_factor (and of
    width_factor, or the same zoom): positive values zoom out, negative zoom in (Keras 3)."""

    _kind = "zoom"

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        where = _where(self)
        self.height_factor = _factor(height_factor, "height_factor", where, -1.0, 1.0,
                                     low_open=True)
        self.width_factor = None if width_factor is None else \
            _factor(width_factor, "width_factor", where, -1.0, 1.0, low_open=True)
        self._init_affine(fill_mode, interpolation, seed, fill_value, data_format)

    def _ranges(self):
        wf = self.width_factor or (0.0, 0.0)
        return [*self.height_factor, *wf, 1.0 if self.width_factor is not None else 0.0]

    def get_config(self):
        return {**super().get_config(), "height_factor": list(self.height_factor),
                "width_factor": None if self.width_factor is None else list(self.width_factor)}


class RandomTranslation(_RandomAffine):
    """Training: each image shifted by a random fraction of its height and width (Keras 3:
    positive values move the content down / right)."""

    _kind = "translation"

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        where = _where(self)
        self.height_factor = _factor(height_factor, "height_factor", where, -1.0, 1.0)
        self.width_factor = _factor(width_factor, "width_factor", where, -1.0, 1.0)
        self._init_affine(fill_mode, interpolation, seed, fill_value, data_format)

    def _ranges(self):
        return [*self.height_factor, *self.width_factor]

    def get_config(self):
        return {**super().get_config(), "height_factor": list(self.height_factor),
                "width_factor": list(self.width_factor)}
