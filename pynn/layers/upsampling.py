"""Conv2DTranspose, UpSampling2D, UpSampling1D, ZeroPadding2D and Cropping2D, with Keras 3's
names, arguments, defaults, weight layouts and output sizes (issue 16, part C).

Images are channels-last (N, H, W, C).

Conv2DTranspose's kernel is Keras's (KH, KW, filters, C_in).  Its geometry is Keras 3's
(keras/src/backend/common/backend_utils.py, the JAX form): along one axis of input size n,
kernel k, stride s, the input dilated by s is padded by (left, right)
  "valid": left = k - 1, right = k - 1 + output_padding (None: max(k, s) - k);
  "same":  pad_len = s + k - 2 (output_padding None) or k + k % 2 - 2 + output_padding,
           left = min(ceil(pad_len / 2), k - 1), right = pad_len - left;
so the output size is (n - 1) s + left + right + 2 - k, and output row r receives input
row i through kernel row a where r = i s - (k - 1 - left) + a.  That is the adjoint of a
Conv2D with pad_top = k - 1 - left over the output (csrc/pynn.h, "transposed
convolution"), which is how every backend computes it.

UpSampling2D "nearest" repeats rows and columns (ops.repeat); "bilinear" is
ops.image.resize (half-pixel centres, no antialiasing when enlarging), both the resize op
of the plan (pynn_resize, as Resizing).  A dilation_rate (strides 1, as Keras requires) runs
as the transposed convolution with the kernel's zeros put in (op kernel_dilate), its
gradient gathered back from the dilated kernel's.  UpSampling1D is the nearest case with a width
of 1.  ZeroPadding2D and Cropping2D are one window copy (op pad_crop), whose backward is
the window copy back.
"""
from .. import _core, activations, ids, initializers, regularizers
from ..checks import MAX_SIZE, check_bool, check_int, invalid, is_int, shown
from .base import KernelBiasLayer, Layer, shape_text
from .conv import check_data_format, check_padding, positive_int_pair

INTERPOLATIONS = ("nearest", "bilinear")


def _where(cls, kwargs):
    name = kwargs.get("name")
    return cls if not isinstance(name, str) else f"{cls} '{name}'"


def transpose_pads(size, kernel, stride, padding, output_padding):
    """(output size, pad_top of the adjoint convolution) along one axis, as Keras 3."""
    if padding == "valid":
        extra = max(kernel, stride) - kernel if output_padding is None else output_padding
        left, right = kernel - 1, kernel - 1 + extra
    else:
        pad_len = stride + kernel - 2 if output_padding is None else \
            kernel + kernel % 2 - 2 + output_padding
        left = min(pad_len // 2 + pad_len % 2, kernel - 1)
        right = pad_len - left
    return (size - 1) * stride + left + right + 2 - kernel, kernel - 1 - left


class Conv2DTranspose(KernelBiasLayer):
    """Transposed 2-D convolution over NHWC images: y = activation(conv_transpose(x) + b)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        where = _where("Conv2DTranspose", kwargs)
        filters = check_int(filters, "filters", where)
        kernel_size = positive_int_pair(kernel_size, "kernel_size", where)
        strides = positive_int_pair(strides, "strides", where)
        padding = check_padding(padding, where)
        if output_padding is not None:
            pair = (output_padding, output_padding) if is_int(output_padding) else output_padding
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(
                    is_int(v) and 0 <= v <= MAX_SIZE for v in pair):
                raise invalid(where, "output_padding", "None, a non-negative integer or a "
                              "tuple of 2 non-negative integers", output_padding)
            output_padding = (int(pair[0]), int(pair[1]))
            for i, (op, s) in enumerate(zip(output_padding, strides)):
                if op >= s:
                    raise ValueError(
                        f"{where}: `output_padding` must be strictly less than `strides` for "
                        f"all dimensions. At dimension {i}, `output_padding` is {op} but "
                        f"`strides` is {s}. Received: output_padding={output_padding}, "
                        f"strides={strides}")
        if data_format == "channels_first":
            raise ValueError(f"{where}: data_format='channels_first' is not supported yet "
                             "(only 'channels_last', NHWC), received "
                             f"data_format={shown(data_format)}")
        data_format = check_data_format(data_format, where)
        dilation_rate = positive_int_pair(dilation_rate, "dilation_rate", where)
        if max(strides) > 1 and max(dilation_rate) > 1:
            raise ValueError(f"{where}: `strides > 1` not supported in conjunction with "
                             f"`dilation_rate > 1`. Received: strides={strides} and "
                             f"dilation_rate={dilation_rate}")
        activation, alpha = activations.get(activation, where)
        use_bias = check_bool(use_bias, "use_bias", where)
        kernel_initializer = initializers.get(kernel_initializer, where, "kernel_initializer")
        bias_initializer = initializers.get(bias_initializer, where, "bias_initializer")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._kernel_bias_options(f"Conv2DTranspose '{self.name}'", kernel_regularizer,
                                  bias_regularizer,
                                  kernel_constraint, bias_constraint)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.dilation_rate = dilation_rate
        self.padding, self.output_padding, self.data_format = padding, output_padding, data_format
        self.activation, self.alpha, self.use_bias = activation, alpha, use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def _geometry(self, input_shape):
        """((oh, ow), (pad_top, pad_left)) of the adjoint convolution."""
        out, pads = [], []
        for i in range(2):
            o, p = transpose_pads(input_shape[1 + i], self._dilated_size()[i], self.strides[i],
                                  self.padding, None if self.output_padding is None
                                  else self.output_padding[i])
            out.append(o)
            pads.append(p)
        return tuple(out), tuple(pads)

    def _dilated_size(self):
        """The kernel's extent with its dilation (Keras: (k - 1) * d + 1)."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 4, what=" (batch, height, width, channels)")
        if self._build_input_shape is not None and input_shape[-1] != self._build_input_shape[-1]:
            raise ValueError(
                f"Input of layer '{self.name}' (Conv2DTranspose) is incompatible with the "
                f"layer: expected axis -1 of input shape to have value "
                f"{self._build_input_shape[-1]} (channels), but received input with shape "
                f"{shape_text(input_shape)}")
        (oh, ow), _ = self._geometry(input_shape)
        if oh < 1 or ow < 1:
            raise ValueError(f"Conv2DTranspose '{self.name}': the output size {(oh, ow)} of "
                             f"input shape {shape_text(input_shape)} is empty")

    def compute_output_shape(self, input_shape):
        (oh, ow), _ = self._geometry(input_shape)
        return (input_shape[0], oh, ow, self.filters)

    def build(self, input_shape):
        self._create_kernel_bias(self.kernel_size + (self.filters, input_shape[-1]),
                                 self.filters)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        (oh, ow), pads = self._geometry(x.shape)
        act = "linear" if logits else self.activation
        kh, kw = self._dilated_size()
        _, h, w, c = x.shape
        shape = (x.shape[0], oh, ow, self.filters)
        z = b.new(shape)
        y = z if act == "linear" else b.new(shape)
        be, kernel_shape = b.backend, (kh, kw, self.filters, c)
        work = b.scratch((0,), sizer=lambda capacity: be.conv2d_transpose_work_size(
            (capacity,) + x.shape[1:], kernel_shape, (oh, ow)))
        wt, bias = b.param(self._kernel), b.param_or_none(self._bias)
        dilated = self.dilation_rate != (1, 1)
        dilate_ints = list(self.kernel_size) + [self.filters * c] + list(self.dilation_rate)
        if dilated:     # the transposed convolution with the kernel's zeros put in
            wide = b.scratch(kernel_shape)
            b.op("kernel_dilate", [wt, wide], dilate_ints + [0], label=self.name)
            wt = wide
        geometry = [h, w, c, kh, kw, self.strides[0], self.strides[1], pads[0], pads[1],
                    oh, ow, self.filters, ids.ACTIVATIONS[act]]
        b.op("conv2d_transpose", [x.buf, wt, bias, work, z.buf, y.buf], geometry,
             [self.alpha], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient") if need[0] else -1
            dw = b.grad(self._kernel)
            wide_grad = b.scratch(kernel_shape) if dilated and dw >= 0 else dw
            b.op("conv2d_transpose_backward", [x.buf, wt, z.buf, y.buf, dys[0], work,
                                               wide_grad, b.grad(self._bias), dx],
                 geometry, [self.alpha], label=self.name)
            if wide_grad != dw:
                b.op("kernel_dilate", [wide_grad, dw], dilate_ints + [1], label=self.name)
            return [None if dx < 0 else dx]

        b.differentiate([x], [y], backward, params=[self._kernel, self._bias], inplace=True)
        return y

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding,
                "output_padding": None if self.output_padding is None
                else list(self.output_padding),
                "data_format": self.data_format, "dilation_rate": list(self.dilation_rate),
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **self._kernel_bias_config(),
                # Keras's Conv2DTranspose always lists its activity regularizer (null or not)
                "activity_regularizer": regularizers.serialize(self.activity_regularizer)}


def _upsample(b, layer, x, size, interpolation):
    """The plan ops of an upsampling of the NHWC tensor x by integer factors `size`."""
    _, h, w, c = x.shape
    oh, ow = h * size[0], w * size[1]
    interp = _core.INTERPOLATIONS[interpolation]
    y = b.new((x.shape[0], oh, ow, c))
    b.op("resize", [x.buf, y.buf], [h, w, c, oh, ow, 0, 0, h, w, interp], [0.0],
         label=layer.name)

    def backward(b, dys, need):
        dx = b.buffer(x.shape[1:], role="gradient")
        b.op("upsample2d_backward", [dys[0], dx], [h, w, c, size[0], size[1], interp],
             label=layer.name)
        return [dx]

    b.differentiate([x], [y], backward)
    return y


def _check_spatial(layer, input_shape, factors):
    for d, f in zip(input_shape[1:-1], factors):
        if d * f > MAX_SIZE:
            raise ValueError(f"{type(layer).__name__} '{layer.name}': the output of input "
                             f"shape {shape_text(input_shape)} would be larger than {MAX_SIZE}")


class UpSampling2D(Layer):
    """Repeats (nearest) or interpolates (bilinear) rows and columns by `size`."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        where = _where("UpSampling2D", kwargs)
        size = positive_int_pair(size, "size", where)
        if data_format == "channels_first":
            raise ValueError(f"{where}: data_format='channels_first' is not supported yet "
                             "(only 'channels_last', NHWC), received "
                             f"data_format={shown(data_format)}")
        data_format = check_data_format(data_format, where)
        if not isinstance(interpolation, str) or interpolation.lower() not in INTERPOLATIONS:
            raise invalid(where, "interpolation", "one of 'nearest' or 'bilinear'",
                          interpolation)
        super().__init__(**kwargs)
        self.size, self.data_format = size, data_format
        self.interpolation = interpolation.lower()

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 4, what=" (batch, height, width, channels)")
        _check_spatial(self, input_shape, self.size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, h * self.size[0], w * self.size[1], c)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        return _upsample(b, self, x, self.size, self.interpolation)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size),
                "data_format": self.data_format, "interpolation": self.interpolation}


class UpSampling1D(Layer):
    """Repeats each step of (batch, steps, features) `size` times."""

    def __init__(self, size=2, **kwargs):
        where = _where("UpSampling1D", kwargs)
        if not is_int(size):
            raise TypeError(f"{where}: expected an integer value for `size`, received "
                            f"size={shown(size)} of type {type(size).__name__}")
        size = check_int(size, "size", where)
        super().__init__(**kwargs)
        self.size = size

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 3, what=" (batch, steps, features)")
        _check_spatial(self, input_shape, (self.size,))

    def compute_output_shape(self, input_shape):
        n, steps, c = input_shape
        return (n, steps * self.size, c)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        n, steps, c = x.shape
        image = b.alias(x, (n, steps, 1, c))
        y = _upsample(b, self, image, (self.size, 1), "nearest")
        return b.alias(y, (n, steps * self.size, c))

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _pairs(value, arg, where):
    """Keras's int / (sym_h, sym_w) / ((top, bottom), (left, right)) as two pairs of
    non-negative ints."""
    def nonneg(v):
        return is_int(v) and 0 <= v <= MAX_SIZE

    expected = ("a non-negative integer, a tuple of 2 non-negative integers, or a tuple of "
                "2 tuples of 2 non-negative integers ((top, bottom), (left, right))")
    if is_int(value):
        if not nonneg(value):
            raise invalid(where, arg, expected, value)
        return ((int(value),) * 2,) * 2
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise invalid(where, arg, expected, value)
    out = []
    for v in value:
        if is_int(v) and nonneg(v):
            out.append((int(v), int(v)))
        elif isinstance(v, (tuple, list)) and len(v) == 2 and all(nonneg(u) for u in v):
            out.append((int(v[0]), int(v[1])))
        else:
            raise invalid(where, arg, expected, value)
    return tuple(out)


class _WindowCopy(Layer):
    """ZeroPadding2D / Cropping2D: one pad_crop op each way."""

    _arg = None

    def __init__(self, amounts, data_format=None, **kwargs):
        cls = type(self).__name__
        where = _where(cls, kwargs)
        amounts = _pairs(amounts, self._arg, where)
        if data_format == "channels_first":
            raise ValueError(f"{where}: data_format='channels_first' is not supported yet "
                             "(only 'channels_last', NHWC), received "
                             f"data_format={shown(data_format)}")
        data_format = check_data_format(data_format, where)
        super().__init__(**kwargs)
        setattr(self, self._arg, amounts)
        self.data_format = data_format

    def _offsets(self):
        """(top, left) of the window copy and the signed change of height and width."""
        (t, bt), (l, r) = getattr(self, self._arg)
        sign = 1 if self._arg == "padding" else -1
        return sign * t, sign * l, sign * (t + bt), sign * (l + r)

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 4, what=" (batch, height, width, channels)")
        _, _, dh, dw = self._offsets()
        h, w = input_shape[1] + dh, input_shape[2] + dw
        if h < 1 or w < 1:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': values in `{self._arg}` should be "
                "smaller than the corresponding spatial dimension of the input. Received: "
                f"input_shape={shape_text(input_shape)}, "
                f"{self._arg}={getattr(self, self._arg)}")
        if h > MAX_SIZE or w > MAX_SIZE:
            raise ValueError(f"{type(self).__name__} '{self.name}': the output of input shape "
                             f"{shape_text(input_shape)} would be larger than {MAX_SIZE}")

    def compute_output_shape(self, input_shape):
        _, _, dh, dw = self._offsets()
        n, h, w, c = input_shape
        return (n, h + dh, w + dw, c)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        top, left, _, _ = self._offsets()
        _, h, w, c = x.shape
        shape = self.compute_output_shape(x.shape)
        oh, ow = shape[1], shape[2]
        y = b.new(shape)
        b.op("pad_crop", [x.buf, y.buf], [h, w, c, oh, ow, top, left], label=self.name)

        def backward(b, dys, need):
            dx = b.buffer(x.shape[1:], role="gradient")
            b.op("pad_crop", [dys[0], dx], [oh, ow, c, h, w, -top, -left], label=self.name)
            return [dx]

        b.differentiate([x], [y], backward)
        return y

    def get_config(self):
        return {**super().get_config(),
                self._arg: [list(p) for p in getattr(self, self._arg)],
                "data_format": self.data_format}


class ZeroPadding2D(_WindowCopy):
    """Rows and columns of zeros around each image: int, (h, w) or ((t, b), (l, r))."""

    _arg = "padding"

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class Cropping2D(_WindowCopy):
    """Rows and columns cut from each image's edges: int, (h, w) or ((t, b), (l, r))."""

    _arg = "cropping"

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)


__all__ = ["Conv2DTranspose", "UpSampling2D", "UpSampling1D", "ZeroPadding2D", "Cropping2D"]
