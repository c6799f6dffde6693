"""The plan: a model compiled into one flat list of ops, the only definition of a step.

A model is a graph of layer calls (pynn/models/functional.py).  `compile_plan` turns it
into a Plan, in the spirit of tinygrad's schedule: data you can print (`model.plan`),
count and test, which executors only follow.

    buffers  every array a step touches, by index: the inputs and targets of a batch,
             each layer's outputs, their gradients, workspaces, and views of the weights,
             their gradients and the optimizer's state.  A buffer is *batched* (rows x
             row_size for a batch of `rows`: one allocation for the largest batch, a
             prefix of it for a smaller one) or *fixed*.  A buffer may share another's
             memory (a Reshape's output is its input).
    ops      (kind, buffer indices, ints, reals) in execution order, kinds from
             csrc/pynn.h's PYNN_OP_LIST (ids shared with C through pynn.ids):
               1. the forward ops, the graph's layer calls in topological order, nested
                  models inlined;
               2. the losses (one OP_LOSS per output that has one) and the metrics;
               3. the backward ops, in reverse order;
               4. one OP_OPTIMIZER over the flat array of trainable weights: its ints
                  the optimizer kind and the weights' segments (offset, size, flags: weight
                  decay applies), its reals the settings, schedule and options (clipping,
                  EMA), its buffers the weights, gradients, slots and the EMA (or -1).
             Train plans have all four; test plans 1-2 without gradients; predict plans 1.
             Regularizers and constraints (engineer F, pynn/models/penalties.py): an
             OP_PENALTY per activity-regularized output in 1 (and its gradient in 3), one
             per regularized weight between 3 and 4 (test plans: after 2), their values in
             extra loss slots weighted 1; an OP_CONSTRAINT per constrained weight after 4.

Executors (pynn/models/executor.py): on `cpu`, csrc/plan.c runs the list for a step or a
whole epoch per C call; on `numpy` and `cuda`, Python walks it through the backend's
methods.  Either way each op is one backend kernel, written once per backend: a loss,
metric or optimizer is never written a second time inside an executor.

How the backward pass is made.  Each layer's `plan_forward` adds its forward ops and
registers a backward rule with `PlanBuilder.differentiate(inputs, outputs, rule,
params)`.  After the losses, the rules run in reverse order of registration.  A rule
receives the gradient buffers of its outputs and returns buffers holding its
contributions to its inputs' gradients; it writes its weights' gradients into
`b.grad(variable)`.  Where a tensor feeds several layers (a branch, a residual
connection) its contributions are added by one OP_MERGE "add", in the order the
contributions arrived (reverse topological order: fixed by the graph).  A shared layer's
second call writes its weight gradients into a scratch buffer, added into the first by an
in-place OP_MERGE right after: the sums run in a fixed order, so results repeat bitwise.
Rules are skipped where no gradient is needed (a frozen base model at the bottom of a
network costs no backward ops at all); a frozen layer above trainable ones still passes
gradients down (its ops get -1 for the weight gradients).

The losses.  When a model output is produced by a softmax (or sigmoid) whose only use is a
categorical (binary) cross-entropy, the producing layer leaves the activation out and the
loss takes logits, the numerically stable fused form (as Keras's TF backend does through
`_keras_logits`); an OP_ACTIVATION then makes the probabilities the metrics read.  The
reported loss is the weighted sum of the output losses; each output's unweighted loss is
logged under "<output>_loss" (Keras 3's names).  A loss of reduction "sum" sets its
OP_LOSS's reduce_sum: its value and gradient are sum_i w_i l_i over the batch, not divided
by the rows (Keras 3's).

Masks and row multipliers (engineer G).  A plan Tensor's `mask` is None or a (batch, T)
float32 1/0 plan Tensor (Tensor's docstring): made by Embedding(mask_zero=True), Masking,
or an explicit `layer(x, mask=m)`, passed on by layers whose `supports_masking` is True
(Layer.plan_mask), read by the layers that consume it.  A batched buffer may hold `mult`
rows of its shape per batch row (Buffer.mult): TimeDistributed plans its layer on the
(N, T, ...) buffer seen as N * T rows, with PlanBuilder.row_mult = T so that the layer's
own buffers are sized likewise, and wraps the layer's forward and backward ops in an
OP_ROWS_SCOPE (T, count), under which csrc/plan.c runs them with rows * T rows.  Ops to run
after the optimizer (Embedding's gradient rows back to zero) register with
PlanBuilder.after_update.
"""
import numpy as np

from .. import _core, ids
from ..backend import reference

_OP_NAMES = {v: k for k, v in ids.OPS.items()}


class Buffer:
    """One entry of a plan's buffer table (see the module docstring)."""

    __slots__ = ("index", "shape", "batched", "dtype", "base", "role", "source", "sizer",
                 "mult")

    def __init__(self, index, shape, batched, dtype, base, role, source, sizer=None, mult=1):
        self.index, self.shape, self.batched, self.dtype = index, tuple(shape), batched, dtype
        self.base, self.role, self.source = base, role, source
        self.sizer = sizer       # fixed buffers sized by the batch capacity: capacity -> elements
        # the row multiplier (TimeDistributed; engineer G): a batched buffer of `mult` rows
        # of `shape` per batch row, which the executors see as (rows * mult, *shape)
        self.mult = int(mult)

    def elements(self, capacity):
        """Elements to allocate for batches of up to `capacity` rows."""
        if self.batched:
            return capacity * self.row_size
        return self.sizer(capacity) if self.sizer is not None else self.size

    @property
    def row_size(self):
        """Elements per batch row (batched buffers; times the row multiplier), else 0."""
        return self.mult * int(np.prod(self.shape, dtype=np.int64)) if self.batched else 0

    @property
    def size(self):
        """Elements of a fixed buffer."""
        return 0 if self.batched else int(np.prod(self.shape, dtype=np.int64))

    def __repr__(self):
        src = getattr(self.source, "path", self.source)
        where = f" = {src}" if src is not None else ""
        shape = (f"(rows{'' if self.mult == 1 else f' * {self.mult}'}, " + ", ".join(map(str, self.shape)) + ")") if self.batched else str(self.shape)
        share = f" shares #{self.base}" if self.base is not None else ""
        return f"#{self.index} {self.role} {self.dtype} {shape}{share}{where}"


class Constant:
    """The values of a "constant" buffer (PlanBuilder.constant), with a name for printing."""

    __slots__ = ("values", "path")

    def __init__(self, values, path):
        self.values, self.path = values, path


class Op:
    __slots__ = ("kind", "bufs", "ints", "reals", "label")

    def __init__(self, kind, bufs, ints, reals, label):
        self.kind = kind                      # PYNN_OP_* id
        self.bufs = tuple(int(b) for b in bufs)
        self.ints = tuple(int(i) for i in ints)
        self.reals = tuple(float(r) for r in reals)
        self.label = label

    @property
    def name(self):
        return _OP_NAMES[self.kind]

    def __repr__(self):
        bufs = ", ".join("-" if b < 0 else f"#{b}" for b in self.bufs)
        return f"{self.name:<26} {self.label:<22} [{bufs}]" + \
            (f" ints={list(self.ints)}" if self.ints else "") + \
            (f" reals=[{', '.join(f'{r:g}' for r in self.reals)}]" if self.reals else "")


class Tensor:
    """A value flowing through the plan while it is built: its buffer, its shape (batch
    axis first, None) and whether a gradient must reach it.

    `mask` (engineer G, masks): None, or a plan Tensor of shape (batch, T) holding float32
    1.0 (a valid step) or 0.0 (a masked step) for a (batch, T, ...) sequence.  A layer
    reads its input's as `getattr(x, "mask", None)`; a mask-making layer (Embedding with
    mask_zero=True, Masking) sets its output's in plan_forward; compile_plan passes it on
    through layers whose `supports_masking` is True (Layer.plan_mask) and drops it
    elsewhere, as Keras 3 does.  Masks take no gradient."""

    __slots__ = ("buf", "shape", "requires_grad", "mask")

    def __init__(self, buf, shape, requires_grad=False, mask=None):
        self.buf, self.shape, self.requires_grad = buf, tuple(shape), requires_grad
        self.mask = mask

    def __repr__(self):
        return f"<plan tensor #{self.buf} {self.shape}>"


class Plan:
    """The compiled step: buffers, ops and what feeds and reads them."""

    def __init__(self, kind):
        self.kind = kind                 # "train", "test", "predict" or "forward"
        self.buffers = []
        self.ops = []
        self.input_bufs = []             # one per model input
        self.target_bufs = []            # one per output that has a loss
        self.target_classes = []         # labels' class count, 0 for float targets
        self.target_ignore = []          # per target: its loss's ignore_class, or None
        self.target_outputs = []         # which model output each target belongs to
        self.sample_weight_bufs = []     # weighted plans: per target, its samples' weights
                                         # (fed after the targets, rows of 1 float32)
        self.output_bufs = []            # predictions (predict/forward plans)
        self.loss_names = []             # log key of each OP_LOSS index ("dense_1_loss")
        self.loss_weights = []
        self.metric_names = []           # name of each OP_METRIC slot (a sum, or one of
                                         # a confusion op's 4 x n counts)
        self.metric_groups = []          # per logged metric: (MetricSpec, its op indices,
                                         # positions per batch row it averages over)
        self.optimizer_op = None         # index of OP_OPTIMIZER in ops
        self.reduction = "mean"          # the losses' reductions: "mean", "sum" or "mixed"
                                         # (how distributed training weighs a rank's gradient)
        self.layers = []                 # the (flattened) layer calls, for printing
        self.activity_slots = []         # (layer, loss slot) of each activity penalty
                                         # (pynn/models/penalties.py; engineer F)

    @property
    def n_losses(self):
        return len(self.loss_names)

    @property
    def n_metrics(self):
        return len(self.metric_names)

    def count(self, kind_name):
        return sum(1 for op in self.ops if op.name == kind_name)

    def __str__(self):
        lines = [f"plan ({self.kind}): {len(self.ops)} ops, {len(self.buffers)} buffers",
                 "buffers:"]
        lines += ["  " + repr(b) for b in self.buffers]
        lines.append("ops:")
        lines += [f"  {i:3d} {op!r}" for i, op in enumerate(self.ops)]
        return "\n".join(lines)

    __repr__ = __str__


class _Record:
    __slots__ = ("inputs", "outputs", "rule", "params", "inplace")

    def __init__(self, inputs, outputs, rule, params, inplace):
        self.inputs, self.outputs, self.rule = inputs, outputs, rule
        self.params, self.inplace = params, inplace


class PlanBuilder:
    """What a layer's `plan_forward` builds with (see the module docstring)."""

    def __init__(self, plan, backend, trainable, frozen_layers):
        self.plan = plan
        self.backend = backend
        self.training = plan.kind == "train"
        self._trainable = trainable           # ids of the variables the optimizer updates
        self.frozen_layers = frozen_layers    # ids of frozen layers (BatchNorm: inference)
        self._params = {}                     # id(variable) -> buffer index
        self._records = []
        self._contributions = {}              # id(Tensor) -> [buffer index]
        self._pending = {}                    # root buffer -> contributions not yet taken
        self._grad_views = {}                 # id(variable) -> its gradient view, once written
        self._deferred_sums = []              # (view, scratch) to add after a rule's ops
        self.call_counts = {}                 # id(layer) -> calls planned so far
        self.row_mult = 1                     # TimeDistributed's T while its layer plans
        # set while a call plans whose output may overwrite its input (compile_plan's
        # _relu_over_input_calls: Activation("relu") after a layer that never reads its
        # output again)
        self.write_over_input = False
        self._after_update = []               # ops to add after OP_OPTIMIZER (engineer G)
        self._grad_calls = {}                 # id(variable) -> calls of grad() for it
        self.trainable_order = []             # ids of the trainable variables, in the
        #                                       order of the optimizer's segments

    # ---- buffers -----------------------------------------------------------------------
    def buffer(self, shape, batched=True, dtype="float32", role="activation", base=None,
               source=None, sizer=None, mult=None):
        # a layer planned inside a TimeDistributed makes its batched buffers with the
        # wrapper's row multiplier (self.row_mult; engineer G)
        mult = (self.row_mult if batched else 1) if mult is None else mult
        if sizer is not None and not batched and self.row_mult != 1:     # sized for rows * T
            sizer = (lambda f, t: lambda capacity: f(capacity * t))(sizer, self.row_mult)
        buf = Buffer(len(self.plan.buffers), shape, batched, dtype, base, role, source, sizer,
                     mult)
        self.plan.buffers.append(buf)
        return buf.index

    def root(self, index):
        base = self.plan.buffers[index].base
        return index if base is None else base

    def new(self, shape, role="activation"):
        """A new batched float32 tensor of `shape` (batch axis first)."""
        return Tensor(self.buffer(shape[1:], role=role), shape)

    def alias(self, t, shape):
        """`t`'s memory seen with another shape (same number of values per row); the
        gradient passes back the same way (Flatten, Reshape: no op, no copy)."""
        out = Tensor(self._alias_buffer(t.buf, shape[1:]), shape)
        self.differentiate([t], [out], lambda b, dys, need: [b._alias_buffer(dys[0], t.shape[1:])])
        return out

    def _alias_buffer(self, index, row_shape, mult=None):
        src = self.plan.buffers[index]
        return self.buffer(row_shape, True, src.dtype, src.role, base=self.root(index),
                           mult=src.mult if mult is None else mult)

    def after_update(self, emit):
        """Register `emit(b)`, called once the optimizer op is added: ops that must run
        after the update (Embedding's gradient rows back to zero; engineer G)."""
        if self.training:
            self._after_update.append(emit)

    def sparse_update(self, variable):
        """Called by an after_update emit: True when the optimizer op may leave `variable`
        (an Embedding table) to an OP_EMBEDDING_SGD, its segment then flagged
        PYNN_SEGMENT_SPARSE; False: the dense update (the caller clears its rows).  Sparse
        when the optimizer is plain SGD by its settings at compile time (reference
        .sparse_sgd_ok: no momentum, weight decay, clipping or EMA) and one call wrote
        the variable's gradient (a shared Embedding's calls add scratch rows into it).  The
        flag is a permission: a step whose settings are not plain SGD (a setting changed
        after compile) updates the table densely and the OP_EMBEDDING_SGD only clears."""
        plan = self.plan
        if plan.optimizer_op is None or self._grad_calls.get(id(variable)) != 1 or \
                id(variable) not in self.trainable_order:
            return False
        op = plan.ops[plan.optimizer_op]
        hyper = dict(zip(ids.HYPER, op.reals))
        hyper.update(zip(ids.OPTIONS, op.reals[_core.OPT_REALS:]))
        kind = {v: k for k, v in ids.OPTIMIZERS.items()}[op.ints[0]]
        has_ema = len(op.bufs) > 2 + _core.OPT_SLOTS and op.bufs[-1] >= 0
        at = 2 + 3 * self.trainable_order.index(id(variable)) + 2   # the segment's flags
        if not reference.sparse_sgd_ok(kind, hyper, has_ema) or len(op.ints) <= at:
            return False
        ints = list(op.ints)
        ints[at] |= reference.SEGMENT_SPARSE
        plan.ops[plan.optimizer_op] = Op(op.kind, op.bufs, ints, op.reals, op.label)
        return True

    def scratch(self, shape, batched=False, sizer=None):
        """A workspace: batched (rows x shape), fixed, or fixed with a size that depends on
        the largest batch (sizer(capacity) -> elements)."""
        return self.buffer(shape, batched=batched, role="workspace", sizer=sizer)

    def param(self, variable):
        """The buffer holding a weight's value."""
        key = id(variable)
        if key not in self._params:
            self._params[key] = self.buffer(variable.shape, batched=False, role="weight",
                                            source=variable)
        return self._params[key]

    def constant(self, values, name):
        """A fixed buffer holding `values` (float32), a layer's constants (Rescaling's scale,
        Normalization's given statistics): copied to the backend when the plan is bound."""
        arr = np.ascontiguousarray(values, dtype=np.float32)
        return self.buffer(arr.shape, batched=False, role="constant", source=Constant(arr, name))

    def param_or_none(self, variable):
        return -1 if variable is None else self.param(variable)

    def is_trainable(self, variable):
        return variable is not None and self.training and id(variable) in self._trainable

    # ---- ops -----------------------------------------------------------------------------
    def op(self, kind, bufs, ints=(), reals=(), label=""):
        self.plan.ops.append(Op(ids.OPS[kind], bufs, ints, reals, label))
        return len(self.plan.ops) - 1

    def differentiate(self, inputs, outputs, rule, params=(), inplace=False):
        """Register how to differentiate the ops just added: `rule(b, dys, need)` gets the
        gradient buffers of `outputs` (a list) and which `inputs` need a gradient, adds
        backward ops and returns one buffer per input (or None).  `params`: the weights
        the ops read (their gradients go to b.grad(variable)).  `inplace`: the rule
        overwrites the output gradients it receives."""
        params = [p for p in params if p is not None]
        rg = any(t.requires_grad for t in inputs) or any(self.is_trainable(p) for p in params)
        for t in outputs:
            t.requires_grad = rg
        if self.training:
            self._records.append(_Record(list(inputs), list(outputs), rule, params, inplace))

    # ---- gradients -------------------------------------------------------------------------
    def grad(self, variable):
        """Where this call's gradient of `variable` goes: its view in the flat gradient
        array the first time, a scratch buffer added into it afterwards (a shared layer);
        -1 for a weight the optimizer does not update."""
        if not self.is_trainable(variable):
            return -1
        key = id(variable)
        self._grad_calls[key] = self._grad_calls.get(key, 0) + 1
        if key not in self._grad_views:
            self._grad_views[key] = self.buffer(variable.shape, batched=False, role="gradient",
                                                source=variable)
            return self._grad_views[key]
        extra = self.buffer(variable.shape, batched=False, role="workspace")
        self._deferred_sums.append((self._grad_views[key], extra))
        return extra

    def contribute(self, t, buf):
        self._contributions.setdefault(id(t), []).append(buf)
        root = self.root(buf)
        self._pending[root] = self._pending.get(root, 0) + 1

    def take_grad(self, t, writable):
        """The gradient of `t`: its contributions summed in arrival order; a private copy
        when `writable` and the buffer still has other readers."""
        bufs = self._contributions.pop(id(t), [])
        for buf in bufs:
            self._pending[self.root(buf)] -= 1
        if not bufs:
            return None
        if len(bufs) == 1 and (not writable or self.free_to_write(bufs[0])):
            return bufs[0]
        # the sum goes over one of its terms that nothing else reads (a residual block's
        # two gradients: one 8 MB buffer fewer), else into a buffer of its own.  Only the
        # first term, or the second of two, and one whose memory no other term shares:
        # the backends' merges fold left to right and read every later term after
        # writing the output (the cuda merge does); a single term left here is read
        # elsewhere, so never free
        roots = [self.root(b) for b in bufs]
        free = [b for i, b in enumerate(bufs) if (i == 0 or len(bufs) == 2) and
                roots.count(roots[i]) == 1 and self.free_to_write(b)]
        total = free[0] if free else \
            self.buffer(t.shape[1:], role="gradient", mult=self.plan.buffers[t.buf].mult)
        self.op("merge", [total] + list(bufs), [ids.MERGES["add"]], label="sum of gradients")
        return total

    def free_to_write(self, buf):
        """Whether a backward rule may write over the gradient buffer `buf` it received:
        no gradient still to be taken reads it (take_grad's test for a private copy).  A
        rule that asks this instead of declaring `inplace` writes in place when that is
        free and into a buffer of its own when not, where `inplace` would copy."""
        return self._pending.get(self.root(buf), 0) == 0

    def emit_backward(self):
        for rec in reversed(self._records):
            dys = [self.take_grad(t, rec.inplace) for t in rec.outputs]
            if all(d is None for d in dys):
                continue
            need = [t.requires_grad for t in rec.inputs]
            if not any(need) and not any(self.is_trainable(p) for p in rec.params):
                continue
            # a layer call with several outputs (a recurrent layer's return_state) may have
            # no gradient for some: its rule receives None for those (a one-output call
            # always has its gradient here)
            self._deferred_sums = []
            grads = rec.rule(self, dys, need)
            for view, extra in self._deferred_sums:
                self.op("merge", [view, view, extra], [ids.MERGES["add"]],
                        label="shared weight gradient")
            for t, g, n in zip(rec.inputs, grads, need):
                if n and g is not None:
                    self.contribute(t, g)



# ---- compiling a model -------------------------------------------------------------------

def _flatten_calls(model, input_tensors, training, calls, call_masks=None):
    """Map `model`'s graph onto plan tensors: `input_tensors` are the plan tensors of its
    inputs; returns those of its outputs.  Nested models are inlined; `training` is the
    call's mode (None: the plan's).  Appends (layer, node, in, out-placeholders, training)
    to `calls`; `call_masks` (a dict) receives, per index in `calls`, the explicit mask a
    call was given (`layer(x, mask=m)`): a value of the plan or _MaskOf one."""
    values = {id(k): v for k, v in zip(model.inputs, input_tensors)}
    call_masks = {} if call_masks is None else call_masks
    for node in model.nodes:
        if node.is_input:
            continue
        node_training = training if node.training is None else node.training
        ins = [values[id(t)] for t in node.input_tensors]
        if hasattr(node.layer, "nodes"):                   # a nested model: inline it
            outs = _flatten_calls(node.layer, ins, node_training, calls, call_masks)
        else:
            outs = [_Pending(t.shape) for t in node.output_tensors]
            calls.append((node.layer, ins, outs, node_training))
            explicit = getattr(node, "mask_tensor", None)      # masks: engineer G
            if explicit is not None:
                if id(explicit) not in values:
                    raise ValueError(
                        f"Layer '{node.layer.name}' was called with mask={explicit!r}, which "
                        "this model does not compute: pass a model input, a layer output of "
                        "the model, or the `_keras_mask` of one")
                call_masks[len(calls) - 1] = values[id(explicit)]
        for t, v in zip(node.output_tensors, outs):
            values[id(t)] = v
            derived = getattr(t, "_keras_mask", None)         # its mask, as a tensor
            if derived is not None:
                values.setdefault(id(derived), _MaskOf(v))
    return [values[id(t)] for t in model.outputs]


class _MaskOf:
    """The mask of a plan value (the `_keras_mask` of a KerasTensor), found once planned."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _mask_value(v):
    """The plan Tensor an explicit mask argument names (None: the value carries no mask)."""
    if isinstance(v, _MaskOf):
        return _resolve(v.value).mask
    return _resolve(v)


class _Pending:
    """A layer call's output before the plan has made it (flattening comes first)."""

    __slots__ = ("shape", "value")

    def __init__(self, shape):
        self.shape, self.value = shape, None


def _resolve(v):
    while isinstance(v, _Pending):
        v = v.value
    return v


def _call_uses(calls):
    """id(value) -> how many of the flattened calls take it as an input."""
    uses = {}
    for _, ins, _, _ in calls:
        for v in ins:
            uses[id(v)] = uses.get(id(v), 0) + 1
    return uses


def _relu_over_input_calls(calls, call_masks, outputs):
    """Indices of the calls of Activation("relu") (or ReLU()) that may write their output
    over their input (PlanBuilder.write_over_input): the input is another call's output
    that nothing else reads (no other call, mask or model output) and whose producer's
    backward never reads that output (BatchNormalization, Add, a linear Conv2D or Dense,
    none with an activity regularizer).  ReLU's own backward reads the sign of its input,
    which relu(x) keeps.  A ResNet-style block's BN -> ReLU then keeps one 8 MB buffer instead
    of two: its training step went from ~51.5 to ~49 ms."""
    from ..layers.conv import Conv2D
    from ..layers.core import Activation, Dense
    from ..layers.merging import Add
    from ..layers.normalization import BatchNormalization
    uses = _call_uses(calls)
    for v in list(call_masks.values()) + list(outputs):
        uses[id(v)] = uses.get(id(v), 0) + 2          # read elsewhere: never written over
    producer = {}
    for layer, _, outs, _ in calls:
        for o in outs:
            producer[id(o)] = layer
    chosen = set()
    for c, (layer, ins, _, _) in enumerate(calls):
        if not isinstance(layer, Activation) or layer.activation != "relu" or \
                getattr(layer, "_op", False) or len(ins) != 1:      # ReLU() is one too
            continue
        src = producer.get(id(ins[0]))
        if src is None or uses.get(id(ins[0])) != 1 or \
                getattr(src, "activity_regularizer", None) is not None:
            continue
        if type(src) in (BatchNormalization, Add) or \
                (type(src) in (Conv2D, Dense) and src.activation == "linear"):
            chosen.add(c)
    return chosen


def compile_plan(model, kind, backend, compiled=None, trainable=(), frozen_layers=(),
                 optimizer_spec=None, sample_weighted=False, input_shapes=None):
    """The plan of `kind` ("train", "test", "predict", "forward" = predict in training
    mode) for the built model.  compiled: the CompiledLosses of the model's compile (train
    and test plans); trainable: ids of the variables the optimizer updates (train plans);
    optimizer_spec: (kind name, reals, slot names, EMA slot name or None, flat segment
    triples) of the optimizer (Optimizer.spec); sample_weighted (train and test plans):
    each loss (and weighted metric) reads a per-sample weight, fed as an extra target
    after the others (Keras's sample_weight and class_weight); input_shapes: the inputs'
    feature shapes (without the batch axis) where the model's have free axes (None), the
    shapes of the batches this plan runs (Engine.shaped), else None."""
    plan = Plan(kind)
    b = PlanBuilder(plan, backend, set(trainable), set(frozen_layers))
    b.trainable_order = list(trainable)
    mode_training = kind in ("train", "forward")

    inputs = []
    for i, t in enumerate(model.inputs):
        shape = tuple(t.shape[1:]) if input_shapes is None else tuple(input_shapes[i])
        buf = b.buffer(shape, role="input")
        plan.input_bufs.append(buf)
        inputs.append(Tensor(buf, (t.shape[0],) + shape))

    calls, call_masks = [], {}
    outputs = _flatten_calls(model, inputs, None, calls, call_masks)

    # which layer calls may leave their softmax/sigmoid to the loss (see the docstring)
    logits_calls = set()
    if compiled is not None and kind in ("train", "test"):
        uses = _call_uses(calls)
        for i, out in enumerate(outputs):
            spec = compiled.outputs[i]
            if spec.loss is None or spec.loss.from_logits or uses.get(id(out), 0) or \
                    sum(1 for o in outputs if o is out) > 1:
                continue
            for c, (layer, _, outs, _) in enumerate(calls):
                if any(o is out for o in outs) and spec.loss.fuses_with(layer.output_activation) \
                        and getattr(layer, "activity_regularizer", None) is None:  # engineer F
                    logits_calls.add(c)

    over_input = _relu_over_input_calls(calls, call_masks, outputs)

    for c, (layer, ins, outs, call_training) in enumerate(calls):
        ins = [_resolve(v) for v in ins]
        training = mode_training if call_training is None else call_training
        # masks (engineer G): an explicit mask replaces the first input's for this call
        saved = None
        if c in call_masks and ins:
            saved = ins[0].mask
            ins[0].mask = _mask_value(call_masks[c])
        b.write_over_input = c in over_input
        try:
            result = layer.plan_forward(b, ins, training, logits=c in logits_calls)
            result = result if isinstance(result, (list, tuple)) else [result]
            if kind in ("train", "test") and \
                    getattr(layer, "activity_regularizer", None) is not None:
                from . import penalties                 # engineer F: activity penalties
                result = [penalties.activity(b, layer, t) for t in result]
            for r in result:
                if getattr(r, "mask", None) is None and not any(r is t for t in ins):
                    r.mask = layer.plan_mask(b, ins)
        finally:
            b.write_over_input = False
            if c in call_masks and ins:
                ins[0].mask = saved
        for placeholder, value in zip(outs, result):
            placeholder.value = value
        b.call_counts[id(layer)] = b.call_counts.get(id(layer), 0) + 1
        plan.layers.append((layer, c in logits_calls))
    outputs = [_resolve(v) for v in outputs]

    if kind in ("predict", "forward"):
        plan.output_bufs = [o.buf for o in outputs]
        return plan

    # losses and metrics
    fused_activation = {}          # id(output tensor) -> the activation its loss absorbed
    for c in logits_calls:
        layer, _, outs, _ = calls[c]
        fused_activation[id(_resolve(outs[0]))] = layer.output_activation
    for i, (out, spec) in enumerate(zip(outputs, compiled.outputs)):
        fused = id(out) in fused_activation
        if spec.loss is None:
            continue
        target_shape, dtype, classes = spec.loss.target_spec(out.shape)
        target = b.buffer(target_shape[1:], dtype=dtype, role="target")
        plan.target_bufs.append(target)
        plan.target_classes.append(classes)
        plan.target_outputs.append(i)
        sample_weights = -1
        if sample_weighted:
            sample_weights = b.buffer((1,), role="sample weight")
            plan.sample_weight_bufs.append(sample_weights)
        cols = out.shape[-1]
        grad = b.buffer(out.shape[1:], role="gradient") if kind == "train" and out.requires_grad \
            else -1
        ignore = spec.loss.ignore_class
        plan.target_ignore.append(ignore)
        b.op("loss", [out.buf, target, grad, sample_weights],
             [ids.LOSSES[spec.loss.kind], int(fused or spec.loss.from_logits), cols,
              len(plan.loss_names), int(ignore is not None), 0 if ignore is None else ignore,
              int(spec.loss.reduction == "sum")],
             [spec.weight, spec.loss.param, spec.loss.label_smoothing], label=spec.loss_key)
        plan.loss_names.append(spec.loss_key)
        plan.loss_weights.append(spec.weight)
        if grad >= 0:
            if spec.weight != 1.0:
                b.op("scale", [grad, grad], reals=[spec.weight], label="loss weight")
            b.contribute(out, grad)
        if spec.metrics:
            pred = out.buf
            if fused:
                pred = b.buffer(out.shape[1:], role="probabilities")
                act = fused_activation[id(out)]
                b.op("activation", [out.buf, pred], [cols, ids.ACTIVATIONS[act]], [0.0],
                     label=f"{act} for the metrics")
            positions = int(np.prod(out.shape[1:-1], dtype=np.int64))
            # weighted metrics read the per-sample weights (unweighted plans: all 1)
            for metric in spec.metrics:
                first = len(plan.metric_names)
                weights = sample_weights if metric.weighted else -1
                for part in metric.parts:             # one op per part: its sum or counts
                    width = metric.width(part)
                    index = len(plan.metric_names)
                    b.op("metric", [pred, target, weights],
                         [ids.METRICS[part], cols, index, metric.k, width, max(positions, 1)],
                         metric.reals(part),
                         label=metric.key if len(metric.parts) == 1 else
                         f"{metric.key} ({part})")
                    name = metric.key if len(metric.parts) == 1 else f"{metric.key}/{part}"
                    plan.metric_names += [name] if width == 1 else \
                        [f"{name}[{j}]" for j in range(width)]
                plan.metric_groups.append(
                    (metric, list(range(first, len(plan.metric_names))), positions))

    reductions = {spec.loss.reduction == "sum" for spec in compiled.outputs
                  if spec.loss is not None}
    plan.reduction = "mixed" if len(reductions) > 1 else "sum" if reductions == {True} \
        else "mean"
    for i, weights in enumerate(plan.sample_weight_bufs):   # fed after the targets
        plan.target_bufs.append(weights)
        plan.target_classes.append(0)
        plan.target_outputs.append(plan.target_outputs[i])
        plan.target_ignore.append(None)

    from . import penalties                             # engineer F: weight penalties
    if kind == "train":
        b.emit_backward()
        penalties.emit_weight_penalties(b, plan)
        if optimizer_spec is not None and trainable:
            opt_kind, hyper, slot_names, ema_name, segments = optimizer_spec
            flat = b.buffer((0,), batched=False, role="weights (flat)", source="trainable")
            flat_grads = b.buffer((0,), batched=False, role="gradients (flat)", source="trainable")
            slots = [b.buffer((0,), batched=False, role="optimizer slot", source=name)
                     if name is not None else -1 for name in slot_names + (ema_name,)]
            plan.optimizer_op = b.op("optimizer", [flat, flat_grads] + slots,
                                     [ids.OPTIMIZERS[opt_kind], len(segments) // 3] +
                                     list(segments), hyper, label=opt_kind)
        # after the update: Embedding's rows-seen SGD update and gradient clear, then the
        # constraints, which must see the weights' final values of the step
        for emit in b._after_update:
            emit(b)
        if optimizer_spec is not None and trainable:
            penalties.emit_constraints(b, plan)
    else:
        penalties.emit_weight_penalties(b, plan)        # engineer F: test plans
    penalties.assign_slots(plan)
    return plan


def insert_grad_hooks(plan, starts, cap):
    """Hand the gradients over in buckets while the backward goes on (distributed
    training, pynn/distributed/reducer.py): after the op that writes a weight's gradient
    for the last time in the step, the gradients known final form a suffix [frontier, n)
    of the flat array (the backward runs from the last layer to the first, whose weights
    come first); each time it has grown by `cap` elements an OP_GRAD_HOOK phase 0 hands
    the new part over.  The rest goes at the end of the backward, then an OP_GRAD_HOOK
    phase 1 (wait for all) comes right before OP_OPTIMIZER.

    starts: id(variable) -> its offset in the flat gradient array."""
    if plan.optimizer_op is None or plan.count("grad_hook"):
        return plan
    opt = plan.ops[plan.optimizer_op]
    flat_grads = opt.bufs[1]
    region = {}                              # buffer index -> (offset, size) of its gradient
    for buf in plan.buffers:
        if buf.role == "gradient" and buf.source is not None and id(buf.source) in starts:
            region[buf.index] = (starts[id(buf.source)], buf.size)
    for buf in plan.buffers:                 # views of those views
        if buf.base is not None and buf.base in region:
            region[buf.index] = region[buf.base]
    n_total = max([o + k for o, k in region.values()], default=0)
    last = {}                                # region -> index of the last op writing it
    for i, op in enumerate(plan.ops[:plan.optimizer_op]):
        for b in op.bufs:
            if b in region:
                last[region[b]] = i
    finished_at = {}
    for reg, i in last.items():
        finished_at.setdefault(i, []).append(reg)
    ops, done, frontier, sent = [], {}, n_total, n_total
    hook = ids.OPS["grad_hook"]
    for i, op in enumerate(plan.ops[:plan.optimizer_op]):
        ops.append(op)
        for offset, size in finished_at.get(i, ()):
            done[offset + size] = offset     # end -> start
        while frontier in done:
            frontier = done.pop(frontier)
        if sent - frontier >= cap:
            ops.append(Op(hook, [flat_grads], [0, frontier, sent - frontier], [],
                          "gradient bucket"))
            sent = frontier
    if sent > 0:
        ops.append(Op(hook, [flat_grads], [0, 0, sent], [], "gradient bucket"))
    ops.append(Op(hook, [flat_grads], [1, 0, 0], [], "wait for the buckets"))
    # the summed gradient holds the rows other ranks' Embeddings saw too: clear every row
    # (engineer G), and update every row (the dense update: no segment left to an
    # OP_EMBEDDING_SGD, which becomes the whole clear; the rows another rank saw are not in
    # this rank's keys, so the union would need the ids exchanged too)
    clear, sgd = ids.OPS["embedding_grad_clear"], ids.OPS["embedding_sgd"]
    if len(opt.ints) > 2:
        dense = list(opt.ints[:2]) + [f & ~reference.SEGMENT_SPARSE if i % 3 == 2 else f
                                      for i, f in enumerate(opt.ints[2:])]
        plan.ops[plan.optimizer_op] = Op(opt.kind, opt.bufs, dense, opt.reals, opt.label)
    rest = [Op(clear, op.bufs[1:4], op.ints[:2] + (1,), op.reals,
               op.label) if op.kind == sgd else
            Op(op.kind, op.bufs, op.ints[:2] + (1,), op.reals, op.label)
            if op.kind == clear else op for op in plan.ops[plan.optimizer_op:]]
    plan.optimizer_op = len(ops)
    plan.ops = ops + rest
    return plan


def dropout_seed(layer_seed, call_index):
    """The seed of one call of a Dropout layer (a shared layer's calls draw differently)."""
    return (int(layer_seed) + call_index * 0x9E3779B97F4A7C15) % (1 << 63)


__all__ = ["Plan", "PlanBuilder", "Tensor", "Buffer", "Op", "compile_plan", "dropout_seed",
           "insert_grad_hooks"]
