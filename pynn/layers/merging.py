"""The merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum and Concatenate,
with Keras's functional shorthands (`pynn.layers.add([a, b])`, ...).

Elementwise merges take inputs of one shape (no broadcasting) and fold them left to right
in input order (pynn_merge_forward); their gradients follow the same order, and Maximum /
Minimum send the gradient to the first input holding the extreme value, as TF's maximum
does on ties.  Concatenate joins along `axis` (not the batch axis) through 2-D views:
outer = the axes before `axis`, width = the rest.
"""
import numpy as np

from .. import ids
from ..checks import MAX_RANK, check_int
from .base import Layer, shape_text
from .node import KerasTensor


def _producer(t):
    history = t._keras_history
    return "?" if history is None else history[0].name


class Merge(Layer):
    """Base class of the merge layers: several inputs, one output."""

    _single_input = False
    _kind = None
    _min_inputs = 2
    _max_inputs = None

    def _input_shapes(self, flat):
        cls = type(self).__name__
        if len(flat) < self._min_inputs or (self._max_inputs and len(flat) > self._max_inputs):
            count = f"exactly {self._max_inputs}" if self._max_inputs == self._min_inputs else \
                f"at least {self._min_inputs}"
            raise ValueError(f"Layer '{self.name}' ({cls}) should be called on a list of {count} "
                             f"inputs, received {len(flat)}")
        shapes = [tuple(t.shape) for t in flat]
        self._check_shapes(shapes, [_producer(t) for t in flat])
        return shapes

    def check_input_shape(self, input_shape):
        if not isinstance(input_shape, list):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) should be called on a "
                             f"list of inputs, received one input of shape {input_shape}")
        self._check_shapes(input_shape, ["?"] * len(input_shape))

    def _check_shapes(self, shapes, producers):
        first = shapes[0]
        for shape, who in zip(shapes[1:], producers[1:]):
            if tuple(shape[1:]) != tuple(first[1:]):
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}): inputs have incompatible "
                    f"shapes; received {shape_text(first)} from layer '{producers[0]}' and "
                    f"{shape_text(shape)} from layer '{who}' (the merge layers need equal "
                    "shapes)")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def plan_forward(self, b, inputs, training, logits=False):
        kind = ids.MERGES[self._kind]
        y = b.new(inputs[0].shape)
        xs = [x.buf for x in inputs]
        b.op("merge", [y.buf] + xs, [kind], label=self.name)

        def backward(b, dys, need):
            if self._kind == "add":        # the gradient of every input is dy itself
                return [dys[0]] * len(inputs)
            grads = []
            for i, (x, n) in enumerate(zip(inputs, need)):
                if not n:
                    grads.append(None)
                    continue
                dx = b.buffer(x.shape[1:], role="gradient")
                b.op("merge_backward", [dx, dys[0]] + xs, [kind, i], label=self.name)
                grads.append(dx)
            return grads

        b.differentiate(inputs, [y], backward)
        return y

    def get_config(self):
        return super().get_config()

    # masks (engineer G): Keras's base_merge.compute_mask, the AND of the masks present
    supports_masking = True
    _mask_merge = "minimum"        # AND of 1/0 masks; Concatenate: OR (maximum)

    def compute_mask(self, inputs, previous_mask):
        masks = [m for m in (previous_mask if isinstance(previous_mask, (list, tuple))
                             else [previous_mask]) if m is not None]
        if not masks:
            return None
        if isinstance(masks[0], KerasTensor):
            return KerasTensor(masks[0].shape, dtype="bool")
        if self._mask_merge == "maximum":
            return np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])
        return np.logical_and.reduce([np.asarray(m, dtype=bool) for m in masks])

    def plan_mask(self, b, inputs):
        masks = [getattr(x, "mask", None) for x in inputs]
        present = [m for m in masks if m is not None]
        if not present or (self._mask_merge == "maximum" and len(present) < len(masks)):
            return None          # Concatenate: an input without a mask is all valid
        if len(present) == 1:
            return present[0]
        out = b.new(present[0].shape, role="mask")
        b.op("merge", [out.buf] + [m.buf for m in present], [ids.MERGES[self._mask_merge]],
             label=f"{self.name} mask")
        return out


class Add(Merge):
    """The sum of the inputs."""
    _kind = "add"


class Subtract(Merge):
    """inputs[0] - inputs[1] (exactly two inputs)."""
    _kind = "subtract"
    _max_inputs = 2


class Multiply(Merge):
    """The elementwise product of the inputs."""
    _kind = "multiply"


class Average(Merge):
    """The elementwise mean of the inputs."""
    _kind = "average"


class Maximum(Merge):
    """The elementwise maximum of the inputs."""
    _kind = "maximum"


class Minimum(Merge):
    """The elementwise minimum of the inputs."""
    _kind = "minimum"


class Concatenate(Merge):
    """The inputs joined along `axis` (default -1); the other axes must agree."""

    _min_inputs = 1
    _mask_merge = "maximum"

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = check_int(axis, "axis", f"Concatenate '{self.name}'", -MAX_RANK, MAX_RANK)

    def _axis(self, rank):
        axis = self.axis % rank if -rank <= self.axis < rank else None
        if axis is None or axis == 0:
            raise ValueError(f"Concatenate '{self.name}': axis={self.axis} is not a feature axis "
                             f"of inputs of rank {rank} (the batch axis cannot be concatenated)")
        return axis

    def _check_shapes(self, shapes, producers):
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(f"Layer '{self.name}' (Concatenate): inputs have incompatible "
                             f"ranks; received shapes {', '.join(map(shape_text, shapes))} from "
                             f"layers {', '.join(repr(p) for p in producers)}")
        axis = self._axis(len(shapes[0]))
        first = shapes[0]
        for shape, who in zip(shapes[1:], producers[1:]):
            if any(a != b for i, (a, b) in enumerate(zip(first, shape)) if i not in (0, axis)):
                raise ValueError(
                    f"Layer '{self.name}' (Concatenate): a Concatenate layer requires inputs with "
                    f"matching shapes except for the concatenation axis {self.axis}; received "
                    f"{shape_text(first)} from layer '{producers[0]}' and {shape_text(shape)} "
                    f"from layer '{who}'")

    def compute_output_shape(self, input_shape):
        axis = self._axis(len(input_shape[0]))
        out = list(input_shape[0])
        out[axis] = sum(s[axis] for s in input_shape)
        return tuple(out)

    def plan_forward(self, b, inputs, training, logits=False):
        axis = self._axis(len(inputs[0].shape))
        y = b.new(self.compute_output_shape([x.shape for x in inputs]))
        widths = [int(np.prod(x.shape[axis:], dtype=np.int64)) for x in inputs]
        b.op("concat", [y.buf] + [x.buf for x in inputs], widths, label=self.name)

        def backward(b, dys, need):
            dxs = [b.buffer(x.shape[1:], role="gradient") if n else -1
                   for x, n in zip(inputs, need)]
            b.op("concat_backward", [dys[0]] + dxs, widths, label=self.name)
            return [None if d < 0 else d for d in dxs]

        b.differentiate(inputs, [y], backward)
        return y

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _functional(cls, doc):
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)
    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = doc
    return merge


add = _functional(Add, "add([a, b, ...]): Add()([a, b, ...]).")
subtract = _functional(Subtract, "subtract([a, b]): Subtract()([a, b]).")
multiply = _functional(Multiply, "multiply([a, b, ...]): Multiply()([a, b, ...]).")
average = _functional(Average, "average([a, b, ...]): Average()([a, b, ...]).")
maximum = _functional(Maximum, "maximum([a, b, ...]): Maximum()([a, b, ...]).")
minimum = _functional(Minimum, "minimum([a, b, ...]): Minimum()([a, b, ...]).")


def concatenate(inputs, axis=-1, **kwargs):
    """concatenate([a, b, ...], axis=-1): Concatenate(axis)([a, b, ...])."""
    return Concatenate(axis=axis, **kwargs)(inputs)
