"""The Layer base class: Keras 3's layer API over pynn's plan.

What a layer is, to the user (Keras's API):
  layer = Dense(64, activation="relu")
  y = layer(x)                  x a KerasTensor: records a Node, returns a KerasTensor
                                x a NumPy array: computes now, returns a NumPy array
  layer.build((None, 784))      creates the weights (shapes with the batch axis, as Keras)
  layer.weights / trainable_weights / non_trainable_weights / get_weights() / set_weights()
  layer.trainable = False       frozen: the optimizer leaves its weights alone (from the
                                next compile), BatchNormalization runs in inference mode
  layer.get_config() / Layer.from_config(config)

What a layer is, to pynn: a description of computation.  `plan_forward(b, inputs,
training, logits)` adds the layer's forward ops to a plan being built (b, a
pynn.models.plan.PlanBuilder) and tells it how to differentiate them; the plan, not the
layer, owns every buffer, so a layer holds no state between calls besides its weights.
Each op is one kernel that every backend implements (pynn/backend/base.py).

Regularizers and constraints (Keras's; pynn/regularizers.py, pynn/constraints.py).  A layer
gives a weight a penalty or a constraint by passing them to add_weight:
  self.embeddings = self.add_weight(shape=..., initializer=...,
                                    regularizer=self.embeddings_regularizer,
                                    constraint=self.embeddings_constraint, name="embeddings")
(a name, dict, class or instance; resolved with regularizers.get / constraints.get, checked
against the weight's shape) and keeps them for its get_config (regularizers.serialize /
constraints.serialize).  Nothing else is needed: the plan adds each trainable weight's
penalty to the loss and its gradient to the weight's gradient (an OP_PENALTY after the
backward), and applies its constraint after each optimizer update (an OP_CONSTRAINT after
OP_OPTIMIZER).  `activity_regularizer=` is a Layer argument (every layer takes it, as in
Keras): the plan adds its penalty on the layer's output, divided by the batch size.
`layer.losses` lists the current penalties.  KernelBiasLayer does all this for
kernel_/bias_regularizer and kernel_/bias_constraint (_kernel_bias_options).
"""
import contextlib
import math
import re
import threading

import numpy as np

from ..arrays import check_fits, finite_float32
from ..arrays import numeric_array  # noqa: F401  (re-exported for the layers)
from ..checks import MAX_SIZE, check_bool, is_int, shown
from ..variables import Variable
from .node import KerasTensor, Node, flatten_structure, pack_like

_name_counts = {}


def unique_name(base):
    """Keras's automatic names: dense, dense_1, dense_2, ..."""
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def snake_case(name):
    """Keras's default layer names: Dense -> dense, Conv2D -> conv2d,
    MaxPooling2D -> max_pooling2d, LeakyReLU -> leaky_re_lu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def check_shape_arg(shape, what, where, allow_none=False):
    """A feature shape given by the user: a tuple of positive ints (an int is accepted),
    with at most MAX_SIZE values in all.  allow_none (Input's shape): an axis may be None,
    a free axis whose size each batch gives (Keras's Input(shape=(None,)) for sequences
    of any length)."""
    if is_int(shape):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape or not all(
            (allow_none and d is None) or (is_int(d) and 0 < d <= MAX_SIZE) for d in shape) or \
            math.prod(int(d) for d in shape if d is not None) > MAX_SIZE:
        free = " or None" if allow_none else ""
        raise ValueError(f"{where}: expected {what} as a tuple of positive integers{free} "
                         f"(without the batch axis, at most {MAX_SIZE} values in all), "
                         f"received {shown(shape)}")
    return tuple(None if d is None else int(d) for d in shape)


def check_dtype(dtype, where):
    config = dtype.get("config") if isinstance(dtype, dict) else None
    if dtype not in (None, "float32", np.float32) and getattr(dtype, "name", None) != "float32" \
            and not (isinstance(config, dict) and config.get("name") == "float32"):
        raise ValueError(f"{where}: pynn computes in float32; received dtype={shown(dtype)}")


_loading = threading.local()


@contextlib.contextmanager
def weights_from_file(entries, where):
    """While a model is rebuilt from a file: every weight a layer creates must be one the
    file lists, with the same path and shape (`entries`: [(path, shape)], each matched at
    most once), checked in add_weight before the weight's memory is allocated.  So a config
    whose layers would be bigger than the file's weights (Dense units=10**7 in a 4 KB file)
    is refused (ModelFileError naming `where`) before it costs anything."""
    pool = {}
    for path, shape in entries:
        pool.setdefault(path, []).append(tuple(shape))
    previous = getattr(_loading, "expected", None)
    _loading.expected = (pool, where)
    try:
        yield
    finally:
        _loading.expected = previous


def _claim_file_weight(layer, path, shape):
    expected = getattr(_loading, "expected", None)
    if expected is None:
        return
    pool, where = expected
    shapes = pool.get(path, [])
    if shape in shapes:
        shapes.remove(shape)
        return
    from ..serialization import ModelFileError
    held = f"{path} of shape {list(shapes[0])}" if shapes else f"no (further) weight {path}"
    raise ModelFileError(f"{where}: layer '{layer.name}' ({type(layer).__name__}) would create "
                         f"weight {path} of shape {list(shape)} "
                         f"({math.prod(shape)} values), but the file holds {held}: the config "
                         "does not match the weights")


class Layer:
    """Base class of every layer (and of Model, which is a layer)."""

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None, input_dim=None,
                 activity_regularizer=None, **kwargs):
        cls = type(self).__name__
        if kwargs:
            raise TypeError(f"{cls}: unrecognized keyword arguments {sorted(kwargs)}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{cls}: expected name to be a non-empty string, received "
                             f"{shown(name)}")
        check_bool(trainable, "trainable", cls)
        check_dtype(dtype, cls)
        self.name = name or unique_name(snake_case(cls))
        self._trainable = bool(trainable)
        self.built = False
        self._weights = []            # Variables, in creation order (Keras's weight order)
        self._inbound_nodes = []      # Nodes: one per symbolic call
        self._build_input_shape = None
        if input_dim is not None:
            input_shape = (input_dim,)
        # Keras 2 style `input_shape=` on a Sequential's first layer
        self._input_shape_arg = None if input_shape is None else \
            check_shape_arg(input_shape, "input_shape", f"{cls} '{self.name}'")
        # engineer F: Keras's activity regularizer (every layer takes it)
        self.activity_regularizer = activity_regularizer
        self._activity_losses = []    # the last forward's activity penalties (layer.losses)

    # ---- weights -----------------------------------------------------------------------
    def add_weight(self, shape=None, initializer="glorot_uniform", dtype=None, trainable=True,
                   name=None, **kwargs):
        """Create a weight of `shape`, initialised now by `initializer` (a pynn initializer
        or a name; drawn from pynn's seeded generator); returns the Variable."""
        from .. import initializers
        where = f"{type(self).__name__} '{self.name}'.add_weight"
        from .. import constraints, regularizers          # engineer F
        regularizer = regularizers.get(kwargs.pop("regularizer", None), where, "regularizer")
        constraint = constraints.get(kwargs.pop("constraint", None), where, "constraint")
        kwargs.pop("autocast", None)
        kwargs.pop("aggregation", None)
        if kwargs:
            raise TypeError(f"{where}: unrecognized keyword arguments {sorted(kwargs)}")
        check_dtype(dtype, where)
        if shape is not None and any(d is None for d in shape):
            raise ValueError(f"{where}: weight '{name or 'variable'}' would have shape "
                             f"{shape_text(tuple(shape))}: an input axis it depends on is free "
                             "(None); give that axis of the model's Input a size")
        shape = () if shape is None else tuple(int(d) for d in shape)
        if isinstance(constraint, constraints.Constraint) and type(constraint) is not \
                constraints.Constraint:
            constraints.plan_spec(constraint, shape, where)     # its axes fit the shape
        init = initializers.get(initializer, where, "initializer")
        name = name or f"variable_{len(self._weights)}"
        # a wrapped layer's weights live under its wrapper ("time_distributed/dense/kernel",
        # as Keras 3; engineer G)
        path = self.__dict__.get("_path_prefix", "") + f"{self.name}/{name}"
        _claim_file_weight(self, path, shape)
        size = 1
        for d in shape:
            size *= d
        # drawn in float64, then kept in float32: refused before a MemoryError
        check_fits(12 * size, where, f"weight '{name}' of shape {shape}")
        value = np.ascontiguousarray(init(shape), dtype=np.float32).reshape(shape)   # () stays 0-d
        variable = Variable(value, name, path, trainable=trainable)
        variable.regularizer, variable.constraint = regularizer, constraint
        self._weights.append(variable)
        return variable

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Freeze (False) or unfreeze the layer, and every layer inside it.  Training
        follows the new value from the next `compile`, as in Keras."""
        self._trainable = bool(value)
        for layer in self._sublayers():
            layer.trainable = value

    def _sublayers(self):
        """Layers directly inside this one (a model's layers); none for a plain layer."""
        return []

    @property
    def weights(self):
        """Every weight (Variables): the layer's own in creation order, then its sublayers'."""
        out, seen = [], set()
        for v in self._weights:
            if id(v) not in seen:
                out.append(v)
                seen.add(id(v))
        for layer in self._sublayers():
            for v in layer.weights:
                if id(v) not in seen:
                    out.append(v)
                    seen.add(id(v))
        return out

    @property
    def variables(self):
        return self.weights

    @property
    def trainable_weights(self):
        """The weights the optimizer updates (none when the layer is frozen)."""
        return self._weights_by_trainable(True)

    @property
    def non_trainable_weights(self):
        return self._weights_by_trainable(False)

    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    def _weights_by_trainable(self, want):
        out = [v for v in self._weights if (self._trainable and v.trainable) == want]
        seen = {id(v) for v in out}
        for layer in self._sublayers():
            for v in layer._weights_by_trainable(want) if self._trainable else \
                    (layer.weights if not want else []):
                if id(v) not in seen:
                    out.append(v)
                    seen.add(id(v))
        return out

    def get_weights(self):
        """The values of `weights`, as NumPy copies (Keras's layouts)."""
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        """Set every weight from a list of arrays in `weights` order.  Everything is checked
        before anything changes."""
        where = f"{type(self).__name__} '{self.name}'.set_weights"
        current = self.weights
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"{where}: expected a list of {len(current)} arrays, received "
                            f"{type(weights).__name__}")
        if len(weights) != len(current):
            raise ValueError(f"{where}: expected {len(current)} arrays "
                             f"({', '.join(v.path for v in current) or 'none'}), received "
                             f"{len(weights)}")
        values = []
        for v, w in zip(current, weights):
            arr = numeric_array(w, f"{where} ({v.path})")
            if arr.shape != v.shape:
                raise ValueError(f"{where}: expected {v.path} of shape {v.shape}, received "
                                 f"shape {arr.shape}")
            values.append(finite_float32(arr, where, v.path))   # NaN, inf, beyond float32
        for v, value in zip(current, values):
            v._write(value)

    @property
    def activity_regularizer(self):
        """The penalty on the layer's output (Keras: settable on every layer; a name, dict,
        class or callable, resolved by pynn.regularizers.get).  Training follows a new
        value from the next compile."""
        return self._activity_regularizer

    @activity_regularizer.setter
    def activity_regularizer(self, value):
        from .. import regularizers
        self._activity_regularizer = regularizers.get(
            value, f"{type(self).__name__} '{self.name}'", "activity_regularizer")

    @property
    def losses(self):
        """Keras's layer.losses: the activity penalties of the last forward (an eager call,
        or the last step of fit / evaluate), this layer's then its sublayers', then the
        current penalties of the trainable weights that have a regularizer; float32
        scalars."""
        out = []
        for layer in [self] + self._all_sublayers():
            out += [np.float32(v) for v in layer._activity_losses]
        for v in self.trainable_weights:
            if v.regularizer is not None:
                out.append(np.float32(v.regularizer(v.numpy())))
        return out

    def _all_sublayers(self):
        out = []
        for layer in self._sublayers():
            out += [layer] + layer._all_sublayers()
        return out

    def count_params(self):
        """The number of weight values."""
        if not self.built and not self._weights:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', but the "
                             "layer isn't built. Build it first (call it on data, or call "
                             "build(input_shape))")
        return int(sum(v.size for v in self.weights))

    # ---- shapes and building ------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights for inputs of `input_shape` (batch axis first, as Keras)."""
        self.built = True

    def compute_output_shape(self, input_shape):
        """The output shape for `input_shape` (both with the batch axis)."""
        return tuple(input_shape)

    def check_input_shape(self, input_shape):
        """Raise ValueError if the layer cannot take inputs of `input_shape` (wrong rank, or
        not what it was built for); `input_shape` has the batch axis."""
        if self._build_input_shape is not None and not self._single_input:
            return
        if self._build_input_shape is not None and \
                tuple(input_shape[1:]) != tuple(self._build_input_shape[1:]):
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible with the "
                f"layer: it was built for inputs of shape {shape_text(self._build_input_shape)}, "
                f"received shape {shape_text(input_shape)}")

    _single_input = True         # merge layers and models take several inputs

    def _maybe_build(self, input_shape):
        self.check_input_shape(input_shape)
        if not self.built:
            self.build(input_shape)
            self.built = True
            self._build_input_shape = input_shape

    def _require_rank(self, input_shape, rank, min_rank=False, what=None):
        ok = len(input_shape) >= rank if min_rank else len(input_shape) == rank
        if not ok:
            expected = f"at least {rank}" if min_rank else f"{rank}"
            what = what or ""
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible with the "
                f"layer: expected ndim={expected}{what}, found ndim={len(input_shape)}. Full shape "
                f"received: {shape_text(input_shape)}")

    # ---- masks (engineer G) ----------------------------------------------------------------
    # Keras 3's masking: a (batch, T) boolean mask of the valid steps of a (batch, T, ...)
    # sequence travels with a tensor (KerasTensor._keras_mask; in the plan, Tensor.mask as
    # float32 1/0).  A layer whose `supports_masking` is True passes its first input's mask
    # on (compute_mask); a mask-making layer (Embedding, Masking) overrides compute_mask;
    # any other layer drops the mask.
    @property
    def supports_masking(self):
        """Whether the layer computes an output mask with `compute_mask` (Keras's default:
        True when the class overrides compute_mask)."""
        value = self.__dict__.get("_supports_masking")
        if value is None:
            return type(self).compute_mask is not Layer.compute_mask
        return value

    @supports_masking.setter
    def supports_masking(self, value):
        self._supports_masking = bool(value)

    def compute_mask(self, inputs, previous_mask):
        """The output mask for `inputs` given the input mask `previous_mask` (Keras's)."""
        return previous_mask

    def plan_mask(self, b, inputs):
        """The plan Tensor of the output mask of a call on plan tensors `inputs` (called by
        compile_plan after plan_forward, when plan_forward set none): the first input's
        mask where the layer supports masking, else None."""
        if not self.supports_masking or len(inputs) != 1:
            return None
        return getattr(inputs[0], "mask", None)

    def _check_mask(self, mask, flat, where):
        """An explicit mask argument: a (batch, T) tensor or array matching the first
        input's first two axes."""
        if mask is None:
            return None
        shape = getattr(mask, "shape", None)
        if shape is None:
            mask = np.asarray(mask)
            shape = mask.shape
        x_shape = tuple(flat[0].shape)
        expected = x_shape[:2]
        shape = tuple(shape)
        ok = len(x_shape) >= 2 and len(shape) == 2 and all(
            a is None or b is None or a == b for a, b in zip(shape, expected))
        if not ok:
            raise ValueError(f"{where}: expected a mask of shape {shape_text(expected)} (the "
                             f"first two axes of the input of shape {shape_text(x_shape)}), "
                             f"received a mask of shape {shape_text(shape)}")
        return mask

    # ---- calling -------------------------------------------------------------------------
    def __call__(self, inputs, *args, training=None, mask=None, **kwargs):
        """On KerasTensors: record a call (a Node) and return the output KerasTensor(s).
        On arrays: compute the layer now (building it if needed) and return NumPy array(s)."""
        if args or kwargs:
            raise TypeError(f"Layer '{self.name}' ({type(self).__name__}) takes one inputs "
                            f"argument (a tensor or a list of tensors) and training=; received "
                            f"{len(args)} more positional and keyword arguments {sorted(kwargs)}")
        if training is not None and not isinstance(training, (bool, np.bool_)):
            raise ValueError(f"Layer '{self.name}': expected training to be True, False or None, "
                             f"received {training!r}")
        flat = flatten_structure(inputs)
        symbolic = [isinstance(t, KerasTensor) for t in flat]
        mask = self._check_mask(mask, flat, f"Layer '{self.name}' ({type(self).__name__})")
        if any(symbolic):
            if not all(symbolic):
                raise ValueError(f"Layer '{self.name}' was called on a mix of symbolic tensors "
                                 "(from pynn.Input) and arrays; pass only one kind")
            if mask is not None and not isinstance(mask, KerasTensor):
                raise TypeError(f"Layer '{self.name}' was called on symbolic tensors with "
                                f"mask={type(mask).__name__}; a symbolic call takes a "
                                "symbolic mask (a KerasTensor)")
            return self._symbolic_call(inputs, flat, None if training is None else bool(training),
                                       mask)
        from ..models.eager import eager_call
        if mask is None and self._single_input and len(flat) == 1:
            mask = getattr(flat[0], "_keras_mask", None)      # an eager output's mask
        if mask is None:
            out = eager_call(self, inputs, training=bool(training))
        else:
            out = eager_call(self, inputs, training=bool(training), mask=mask)
        if self.activity_regularizer is not None and not self._sublayers():   # engineer F
            self._activity_losses = [
                float(self.activity_regularizer(o)) / max(o.shape[0], 1) if o.ndim else
                float(self.activity_regularizer(o)) for o in flatten_structure(out)]
        elif hasattr(self, "nodes") and not isinstance(inputs, dict) and any(
                layer.activity_regularizer is not None for layer in self._all_sublayers()):
            self._record_activity_losses(inputs, bool(training))
        # the output's mask, as Keras 3 attaches it to eager outputs (masks: engineer G)
        if self.supports_masking and isinstance(out, np.ndarray):
            out_mask = self.compute_mask(inputs, mask)
            if out_mask is not None:
                out = out.view(MaskedArray)
                out._keras_mask = np.asarray(out_mask, dtype=bool)
        return out

    def _record_activity_losses(self, inputs, training):
        """model(x) with activity regularizers inside (engineer F): walk the graph once more
        layer by layer on the arrays, so that each layer's losses hold this call's activity
        penalties, as Keras's do after a call (random layers draw anew)."""
        values = {id(t): a for t, a in zip(self.inputs, flatten_structure(inputs))}
        for node in self.nodes:
            if node.is_input:
                continue
            ins = [values[id(t)] for t in node.input_tensors]
            mode = training if node.training is None else node.training
            out = node.layer(ins[0] if node.layer._single_input else ins, training=mode)
            for t, o in zip(node.output_tensors, flatten_structure(out)):
                values[id(t)] = o

    def _input_shapes(self, flat):
        """The shape(s) this layer's build/compute_output_shape receive for these inputs."""
        if self._single_input:
            if len(flat) != 1:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects 1 input, "
                                 f"but it received {len(flat)} input tensors")
            return tuple(flat[0].shape)
        return [tuple(t.shape) for t in flat]

    def _symbolic_call(self, inputs, flat, training, mask=None):
        for t in flat:
            if t._keras_history is None:
                raise ValueError(f"Layer '{self.name}' was called on {t!r}, which does not come "
                                 "from pynn.Input or from a layer call")
        input_shape = self._input_shapes(flat)
        self._maybe_build(input_shape)
        output_shape = self.compute_output_shape(input_shape)
        outputs = self._make_outputs(output_shape)
        node = Node(self, inputs, flat, flatten_structure(outputs), training)
        node.mask_tensor = mask
        # the output mask (Keras 3: only layers that support masking compute one)
        if self.supports_masking:
            if mask is not None:
                previous = mask
            elif self._single_input:
                previous = getattr(flat[0], "_keras_mask", None)
            else:
                previous = [getattr(t, "_keras_mask", None) for t in flat]
            out_mask = self.compute_mask(inputs, previous)
            if isinstance(outputs, KerasTensor) and isinstance(out_mask, KerasTensor):
                outputs._keras_mask = out_mask
        return outputs

    def _make_outputs(self, output_shape):
        return KerasTensor(output_shape, name=None)

    @property
    def inbound_nodes(self):
        """The layer's calls on symbolic tensors (Nodes), in the order they were made."""
        return list(self._inbound_nodes)

    @property
    def build_input_shape(self):
        """The input shape (with the batch axis) the layer was built for, or None."""
        return self._build_input_shape

    @property
    def input(self):
        """The input tensor(s) of the layer's first call."""
        return self._node_attribute("input")

    @property
    def output(self):
        """The output tensor(s) of the layer's first call."""
        return self._node_attribute("output")

    def _node_attribute(self, attr):
        if not self._inbound_nodes:
            raise AttributeError(f"The layer '{self.name}' has never been called and thus has no "
                                 f"defined {attr}.")
        node = self._inbound_nodes[0]
        if attr == "input":
            return node.call_structure if not isinstance(node.call_structure, KerasTensor) \
                else node.input_tensors[0]
        outs = node.output_tensors
        return outs[0] if len(outs) == 1 else list(outs)

    # ---- computation: the plan ------------------------------------------------------------
    def plan_forward(self, b, inputs, training, logits=False):
        """Add this layer's forward computation to the plan being built by `b`
        (pynn.models.plan.PlanBuilder) and return the output plan tensor(s).
        `inputs`: plan tensors (one per input); `training`: whether this call runs in
        training mode; `logits`: leave out a final softmax/sigmoid (the loss takes
        logits: pynn.models.plan, "the losses")."""
        raise NotImplementedError(f"{type(self).__name__} has no pynn computation")

    @property
    def output_activation(self):
        """The activation this layer applies last, if a loss may take its logits instead."""
        return None

    # ---- configuration -------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments, JSON-ready; `type(layer).from_config(config)` makes an
        equivalent layer (new weights)."""
        config = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        if self.activity_regularizer is not None:                  # engineer F
            from .. import regularizers
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class KernelBiasLayer(Layer):
    """A layer whose weights are a kernel and an optional bias, followed by an activation
    (Dense, Conv2D): the accessors they share."""

    @property
    def kernel(self):
        return self._kernel

    @property
    def bias(self):
        return self._bias

    @property
    def output_activation(self):
        return self.activation

    def _kernel_bias_options(self, where, kernel_regularizer=None, bias_regularizer=None,
                             kernel_constraint=None, bias_constraint=None):
        """Keep the kernel's and the bias's regularizers and constraints (engineer F)."""
        from .. import constraints, regularizers
        self.kernel_regularizer = regularizers.get(kernel_regularizer, where,
                                                   "kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, where, "bias_regularizer")
        self.kernel_constraint = constraints.get(kernel_constraint, where, "kernel_constraint")
        self.bias_constraint = constraints.get(bias_constraint, where, "bias_constraint")

    def _kernel_bias_config(self, activity=False):
        """Keras's config entries of the regularizers and constraints, in its order;
        activity: with activity_regularizer (null when unset), as Keras's convolutions list
        it (its Dense leaves it to Layer's config, which lists it only when set)."""
        from .. import constraints, regularizers
        config = {"kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                  "bias_regularizer": regularizers.serialize(self.bias_regularizer)}
        if activity:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        config.update({"kernel_constraint": constraints.serialize(self.kernel_constraint),
                       "bias_constraint": constraints.serialize(self.bias_constraint)})
        return config

    def _create_kernel_bias(self, kernel_shape, units):
        self._kernel = self.add_weight(shape=kernel_shape, initializer=self.kernel_initializer,
                                       name="kernel",
                                       regularizer=getattr(self, "kernel_regularizer", None),
                                       constraint=getattr(self, "kernel_constraint", None))
        self._bias = self.add_weight(shape=(units,), initializer=self.bias_initializer,
                                     name="bias",
                                     regularizer=getattr(self, "bias_regularizer", None),
                                     constraint=getattr(self, "bias_constraint", None)) \
            if self.use_bias else None


class MaskedArray(np.ndarray):
    """An eager layer output (a float32 ndarray) carrying the `_keras_mask` Keras 3 gives
    it; everything else is NumPy's."""

    _keras_mask = None

    def __array_finalize__(self, obj):
        # a view or slice of a masked output is a plain result: no mask follows it
        self._keras_mask = None


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


__all__ = ["Layer", "KernelBiasLayer", "KerasTensor", "Node", "unique_name", "numeric_array",
           "shape_text", "check_shape_arg", "flatten_structure", "pack_like", "as_list",
           "weights_from_file"]
