"""Embedding, Masking and TimeDistributed (engineer G, issue #16), with Keras 3's names,
arguments, weights and configs.

Embedding's inputs are integer ids.  pynn's input buffers are float32, which holds every
integer up to 2^24 exactly: `Input(shape=(T,), dtype="int32")` is accepted and its data
fed as float32 (ids beyond 2^24 are not supported).  The kernels check every id: one that
is not an integer in [0, input_dim) stops the step with an error (Keras's TF backend
errors too) before anything changes.

Embedding's gradient is sparse: the backward writes only the table rows of the ids seen
in the batch (each the sum of its positions' gradients, in position order), keeping the
sorted keys id * n + position in a workspace; the rest of the table's gradient stays zero
without ever being written, because the rows seen are zeroed again after the update.

The update (engineer S).  Keras 3 applies an Embedding's gradient (an IndexedSlices on its
TF backend) sparsely for plain SGD only; momentum SGD, Adam, RMSprop and the others move
every row (their moments decay on every row).  pynn does the same:
- Plain SGD (pynn_optimizer_sparse_ok / reference.sparse_sgd_ok: SGD with float32 momentum
  and weight decay 0, no clipnorm / clipvalue / global_clipnorm, no EMA), the table's
  gradient written by one call: PlanBuilder.sparse_update flags the table's segment of
  OP_OPTIMIZER PYNN_SEGMENT_SPARSE (next to PYNN_SEGMENT_DECAY) and the layer emits an
  OP_EMBEDDING_SGD after the optimizer in place of OP_EMBEDDING_GRAD_CLEAR.  In a step whose
  settings are plain SGD, the optimizer's rule runs over the runs of segments not flagged
  (pynn_optimizer_apply; reference / CUDA optimizer_step alike), so the table is neither
  read nor written there, and OP_OPTIMIZER hands the learning rate its rule used this step
  (the schedule's, computed once, by the optimizer op's own code; a callback's change to
  the reals included) to the ops after it: in C the step context (sparse_left,
  sparse_lr), in the Python executor `ex.sparse_lr`.  OP_EMBEDDING_SGD then applies
  w[r] -= lr * g[r] to each distinct row r of the sorted keys with pynn_sgd_update itself
  (reference.sgd_update, the CUDA SGD kernel's expression), so the bits are the dense
  update's (w - lr * 0 = w for the rows not seen), and zeroes those gradient rows.  The
  flag is a permission, not an order: a step whose settings are not plain SGD (changed
  after compile) updates the whole table and OP_EMBEDDING_SGD only clears.
- Anything else (momentum, weight decay, clipping, EMA, another optimizer; an Embedding
  called more than once, whose calls add scratch rows into one gradient): no flag, the
  dense update over the whole table, then OP_EMBEDDING_GRAD_CLEAR: Keras's numbers.
- Distributed training (pynn/distributed): the hooked plan sums every rank's gradient, so
  the table's gradient holds rows other ranks saw, which are not in this rank's keys.
  insert_grad_hooks clears the SPARSE flags and turns each OP_EMBEDDING_SGD into a whole
  OP_EMBEDDING_GRAD_CLEAR: the dense update there (the union of the rows would need the
  ids exchanged as well).

TimeDistributed(layer) applies `layer` to each of the T steps of (N, T, ...) inputs.  The
plan views the (N, T, ...) buffer as N * T rows of the step's shape (a buffer's row
multiplier, pynn.models.plan.Buffer.mult), plans the inner layer on that view with
PlanBuilder.row_mult = T (its batched buffers get the multiplier too), and wraps its ops,
forward and backward, in an OP_ROWS_SCOPE (T, count): the C executor runs those ops with
rows * T rows (the ops that read the step's row count, as the convolution does), while
every buffer's size still counts the step's rows.  The Python executor needs no scope: its
views of a buffer with multiplier T already have rows * T rows.
"""
import numpy as np

from .. import constraints, initializers, regularizers
from ..checks import check_bool, check_number, is_int, shown
from .base import Layer, shape_text
from .node import KerasTensor


def _check_dim(value, arg, where):
    """Keras's check: a positive int (Keras: "`input_dim` must be a positive integer.
    Received: input_dim=0 (of type int)")."""
    if not is_int(value) or value <= 0:
        raise ValueError(f"{where}: `{arg}` must be a positive integer. Received: "
                         f"{arg}={shown(value)} (of type {type(value).__name__})")
    return int(value)


def _refuse(where, **options):
    for key, value in options.items():
        if value is not None:
            raise ValueError(f"{where}: `{key}` is not supported yet, received "
                             f"{key}={shown(value)}")


class Embedding(Layer):
    """Turns integer ids (N, ...) into vectors (N, ..., output_dim): rows of the
    `embeddings` weight (input_dim, output_dim)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, lora_alpha=None, quantization_config=None,
                 activity_regularizer=None, input_length=None, **kwargs):
        input_dim = _check_dim(input_dim, "input_dim", "Embedding")
        output_dim = _check_dim(output_dim, "output_dim", "Embedding")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = f"Embedding '{self.name}'"
        _refuse(where, lora_rank=lora_rank, lora_alpha=lora_alpha,
                quantization_config=quantization_config)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer, where,
                                                       "embeddings_regularizer")
        self.embeddings_constraint = constraints.get(embeddings_constraint, where,
                                                     "embeddings_constraint")
        self.input_dim, self.output_dim = input_dim, output_dim
        if isinstance(embeddings_initializer, str) and embeddings_initializer.lower() == \
                "uniform":                        # Keras's alias of RandomUniform
            embeddings_initializer = initializers.RandomUniform()
        self.embeddings_initializer = initializers.get(embeddings_initializer, where,
                                                       "embeddings_initializer")
        self.mask_zero = check_bool(mask_zero, "mask_zero", where)
        self.supports_masking = self.mask_zero          # as Keras 3
        self._embeddings = None
        if weights is not None:
            self.build()
            self.built = True
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.set_weights(weights)

    def build(self, input_shape=None):
        if self._embeddings is None:
            self._embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                               initializer=self.embeddings_initializer,
                                               name="embeddings",
                                               regularizer=self.embeddings_regularizer,
                                               constraint=self.embeddings_constraint)

    @property
    def embeddings(self):
        if self._embeddings is None:
            raise AttributeError("You must build the layer before accessing `embeddings`.")
        return self._embeddings

    def check_input_shape(self, input_shape):
        """Any ids shape (N, ...): the weights do not depend on it (Keras's)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _make_outputs(self, output_shape):
        return KerasTensor(output_shape, name=None)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        if isinstance(inputs, KerasTensor):
            return KerasTensor(inputs.shape, dtype="bool")
        return np.asarray(inputs) != 0

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        V, D = self.input_dim, self.output_dim
        y = b.new(x.shape + (D,))
        mask = b.new(x.shape, role="mask") if self.mask_zero else None
        table = b.param(self._embeddings)
        b.op("embedding", [x.buf, table, y.buf, -1 if mask is None else mask.buf], [V, D],
             label=self.name)
        y.mask = mask

        def backward(b, dys, need):
            g = b.grad(self._embeddings)
            if g < 0:
                return [None]
            work = b.buffer((2 * int(np.prod(x.shape[1:], dtype=np.int64)),), dtype="int64",
                            role="workspace")
            b.op("embedding_backward", [x.buf, dys[0], g, work], [V, D], label=self.name)
            view = b._grad_views[id(self._embeddings)]

            def clear(b):
                # a weight penalty writes its gradient into every row: then the update and
                # the clear are the whole table's
                whole = int(self._embeddings.regularizer is not None)
                if g == view and not whole and b.sparse_update(self._embeddings):
                    # plain SGD: the optimizer skips the table; the rows seen are
                    # updated, then cleared, here
                    b.op("embedding_sgd", [table, g, work, x.buf], [V, D],
                         label=f"{self.name} rows seen (SGD)")
                    return
                # the rows written go back to zero once the optimizer has read them (a
                # shared layer's scratch rows were also added into the view)
                for target in ([g] if g == view else [g, view]):
                    b.op("embedding_grad_clear", [target, work, x.buf], [V, D, whole],
                         label=f"{self.name} gradient rows")
            b.after_update(clear)
            return [None]

        b.differentiate([x], [y], backward, params=[self._embeddings])
        return y

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
                "mask_zero": self.mask_zero}


class Masking(Layer):
    """Masks the steps of (N, T, ..., F) whose features all equal `mask_value`: output
    x * any(x != mask_value over the last axis), and that as the output's mask."""

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = check_number(mask_value, "mask_value", f"Masking '{self.name}'")

    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 2, min_rank=True)

    def compute_mask(self, inputs, mask=None):
        if isinstance(inputs, KerasTensor):
            return KerasTensor(inputs.shape[:-1], dtype="bool")
        return np.any(np.asarray(inputs) != np.float32(self.mask_value), axis=-1)

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        D = x.shape[-1]
        y = b.new(x.shape)
        mask = b.new(x.shape[:-1], role="mask")
        b.op("masking", [x.buf, y.buf, mask.buf], [D], [self.mask_value], label=self.name)
        y.mask = mask

        def backward(b, dys, need):
            b.op("masking_backward", [dys[0], mask.buf, dys[0]], [D], label=self.name)
            return [dys[0]]

        b.differentiate([x], [y], backward, inplace=True)
        return y

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


class TimeDistributed(Layer):
    """Applies `layer` to every step of (N, T, ...) inputs (the same weights at each step):
    outputs (N, T, ...layer's output without its batch axis)."""

    supports_masking = True          # Keras 3.15's: the input's mask passes on

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError("TimeDistributed: please initialize `TimeDistributed` layer with a "
                             f"`keras.layers.Layer` instance. Received: layer={shown(layer)}")
        if hasattr(layer, "nodes"):
            raise ValueError(f"TimeDistributed: a model as the wrapped layer is not supported "
                             f"yet, received layer={layer.name!r} ({type(layer).__name__})")
        super().__init__(**kwargs)
        self.layer = layer

    def _sublayers(self):
        return [self.layer]

    @property
    def output_activation(self):
        return self.layer.output_activation

    def _child_shape(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"TimeDistributed '{self.name}': `TimeDistributed` Layer should be "
                             "passed an `input_shape` with at least 3 dimensions, received: "
                             f"{shape_text(input_shape)}")
        return (input_shape[0],) + tuple(input_shape[2:])

    def check_input_shape(self, input_shape):
        child = self._child_shape(input_shape)
        super().check_input_shape(input_shape)
        if self.layer.built:
            self.layer.check_input_shape(child)

    def build(self, input_shape):
        if not self.layer.built:          # its weights: "time_distributed/dense/kernel"
            self.layer._path_prefix = f"{self.name}/"
        self.layer._maybe_build(self._child_shape(input_shape))

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_shape(input_shape))
        return (child[0], input_shape[1]) + tuple(child[1:])

    def plan_forward(self, b, inputs, training, logits=False):
        from ..models.plan import Tensor
        (x,) = inputs
        T = x.shape[1]
        if b.row_mult != 1:
            raise ValueError(f"TimeDistributed '{self.name}': a TimeDistributed inside another "
                             "is not supported yet")
        # the (N, T, ...) buffer seen as N * T rows
        xi = Tensor(b._alias_buffer(x.buf, x.shape[2:], mult=T), (None,) + x.shape[2:])
        b.differentiate([x], [xi], lambda b, dys, need:
                        [b._alias_buffer(dys[0], x.shape[1:], mult=1)])
        first_record = len(b._records)
        scope = self._open_scope(b, T)
        try:
            yi = self.layer.plan_forward(b, [xi], training, logits=logits)
        finally:
            self._close_scope(b, scope, T)
        for rec in b._records[first_record:]:           # the inner backward: in scope too
            rec.rule = self._scoped_rule(rec.rule, T)
        yo = Tensor(b._alias_buffer(yi.buf, (T,) + yi.shape[1:], mult=1),
                    (x.shape[0], T) + yi.shape[1:])
        b.differentiate([yi], [yo], lambda b, dys, need:
                        [b._alias_buffer(dys[0], yi.shape[1:], mult=T)])
        return yo

    @staticmethod
    def _open_scope(b, T):
        b.row_mult = T
        return b.op("rows_scope", [], [T, 0], label="TimeDistributed rows * T")

    @staticmethod
    def _close_scope(b, scope, T):
        from ..models.plan import Op
        b.row_mult = 1
        op = b.plan.ops[scope]
        b.plan.ops[scope] = Op(op.kind, [], [T, len(b.plan.ops) - scope - 1], [], op.label)

    def _scoped_rule(self, rule, T):
        def scoped(b, dys, need):
            scope = self._open_scope(b, T)
            try:
                return rule(b, dys, need)
            finally:
                self._close_scope(b, scope, T)
        return scoped

    def get_config(self):
        from ..serialization import serialize
        # without the inner layer's build_config: this layer builds it (from its own)
        inner = {k: v for k, v in serialize(self.layer).items() if k != "build_config"}
        return {**super().get_config(), "layer": inner}

    @classmethod
    def from_config(cls, config):
        from ..serialization import deserialize_layer
        config = dict(config)
        layer = config.pop("layer", None)
        if isinstance(layer, dict):
            # built later, by this layer, so its weights get this layer's path prefix
            layer = deserialize_layer({k: v for k, v in layer.items() if k != "build_config"},
                                      "TimeDistributed.from_config")
        return cls(layer, **config)


class NotEqual(Layer):
    """Keras 3's `keras.ops.not_equal(x, value)` as it appears in a saved functional graph:
    Keras records the mask of Embedding(mask_zero=True) as a NotEqual node whose output
    is passed to the next layer as `mask=`.  Called as NotEqual()(x, value); its output is
    float32 1.0 where x != value, else 0.0 (a plan mask), with no gradient.  Not exported
    from pynn.layers (Keras has no such layer): registered for loading files only."""

    takes_extra_args = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.value = 0.0

    def __call__(self, inputs, value=0, **kwargs):
        self.value = check_number(value, "value", f"NotEqual '{self.name}'")
        out = super().__call__(inputs, **kwargs)
        if isinstance(out, KerasTensor):
            out.dtype = "bool"
            self._inbound_nodes[-1].extra_args = (value,)
        return out

    def plan_forward(self, b, inputs, training, logits=False):
        (x,) = inputs
        scratch, mask = b.new(x.shape, role="workspace"), b.new(x.shape, role="mask")
        b.op("masking", [x.buf, scratch.buf, mask.buf], [1], [self.value],
             label=f"{self.name} (x != {self.value:g})")
        return mask
