"""Executors: what runs a plan (pynn/models/plan.py) on a backend.

Both kinds take the same arguments and give the same results:

  run(inputs, targets, outputs, order, n_order, first_row, batch, n_steps, iterations)
      -> (step losses (n_steps x n_losses), step metric sums (n_steps x n_metrics),
          rows of each step (n_steps,))

Step s takes the rows order[first_row + s*batch : ...] (clipped to n_order; order None:
the rows in their stored order) of every input and target array, runs every op of the
plan, and (predict plans) writes its predictions to rows first_row + s*batch ... of the
`outputs` arrays.  The step number, iterations + s + 1, is Adam's step and dropout's
counter.

  CExecutor       the `cpu` backend: csrc/plan.c runs all n_steps in one C call
                  (pynn._core.PlanRunner); no Python and no allocation between steps.
  PythonExecutor  any backend (`numpy`, `cuda`, and `cpu` for checking): Python walks the
                  ops, calling the backend's method for each.  On `cpu` those methods call
                  the very C functions csrc/plan.c calls, so both give bitwise the same
                  weights (tests/test_determinism.py checks it).

Buffers are allocated once for `capacity` rows; a smaller batch uses a prefix of each.
An executor is used by one call at a time (the engine lends them out, engine.py).  A
Ctrl-C ends a run after the step it arrived in (pynn/interrupts.py); the results then
cover the steps that ran.
"""
import numpy as np

from .. import _core, ids, interrupts
from ..backend import reference as ref
from ..variables import values_changed, values_version

_ACT = {v: k for k, v in ids.ACTIVATIONS.items()}
_LOSS = {v: k for k, v in ids.LOSSES.items()}
_METRIC = {v: k for k, v in ids.METRICS.items()}
_MERGE = {v: k for k, v in ids.MERGES.items()}
_OPT = {v: k for k, v in ids.OPTIMIZERS.items()}
_INTERP = {v: k for k, v in _core.INTERPOLATIONS.items()}
_FILL = {v: k for k, v in _core.FILL_MODES.items()}
_RANDOM = {v: k for k, v in _core.RANDOM_KINDS.items()}


class _Storage:
    """The arrays behind a plan's buffers for `capacity` rows."""

    def __init__(self, plan, backend, store, optimizer, capacity):
        self.plan, self.backend, self.capacity = plan, backend, capacity
        arrays = []
        for buf in plan.buffers:
            arrays.append(self._array(buf, arrays, backend, store, optimizer, capacity))
        self.arrays = arrays            # one 1-D array per buffer (several may share memory)

    @staticmethod
    def _array(buf, arrays, be, store, optimizer, capacity):
        dtype = np.int64 if buf.dtype == "int64" else np.float32
        if buf.base is not None:
            return arrays[buf.base]
        if buf.batched or buf.sizer is not None:
            return be.zeros((max(buf.elements(capacity), 1),), dtype=dtype)
        src = buf.source
        if buf.role == "weight":
            return src.value.reshape(-1)
        if buf.role == "gradient" and src is not None:
            return store.grad_view(src).reshape(-1)
        if buf.role == "weights (flat)":
            return store.params
        if buf.role == "gradients (flat)":
            return store.grads
        if buf.role == "optimizer slot":
            return optimizer.slot(src)
        if buf.role == "constant":               # a layer's fixed values (Rescaling's scale)
            return be.from_host(np.ascontiguousarray(src.values, dtype=np.float32).reshape(-1))
        return be.zeros((max(buf.size, 1),), dtype=dtype)


class Executor:
    def __init__(self, plan, backend, store, optimizer, capacity):
        self.plan, self.backend, self.store, self.optimizer = plan, backend, store, optimizer
        self.capacity = capacity
        self._hyper = None
        self._bind()

    def _bind(self):
        self.storage = _Storage(self.plan, self.backend, self.store, self.optimizer,
                                self.capacity)
        self.generation = self.store.generation if self.store is not None else 0
        self.grad_hook = None
        if self.plan.count("grad_hook"):          # distributed training (reducer.py)
            from ..distributed import reducer
            from .. import distributed
            world = distributed.active()
            if world is not None:
                grads = self.storage.arrays[self.plan.ops[self.plan.optimizer_op].bufs[1]]
                old = getattr(self, "_reducer", None)     # rebinding: keep its thread
                if old is None or old.grads is not grads:
                    self._reducer = reducer.GradReducer(world, grads, self.backend,
                                                        self.plan.reduction)
                self.grad_hook = self._reducer.hook

    def run(self, inputs, targets, outputs, order, n_order, first_row, batch, n_steps,
            iterations, check_inputs=False):
        """n_steps steps of the plan (the subclass's _run); a training plan's weights count
        as changed afterwards (pynn.variables.values_changed), a raise midway too."""
        try:
            return self._run(inputs, targets, outputs, order, n_order, first_row, batch,
                             n_steps, iterations, check_inputs)
        finally:
            if self.plan.kind == "train":
                values_changed()

    def optimizer_only_step(self, step):
        """A step of a rank that has no rows in it (the last batch of an epoch smaller
        than the number of ranks): its gradient buckets (weight 0) take part in the
        exchange, then the optimizer applies the averaged gradients, as on the others."""
        plan = self.plan
        grads = self.storage.arrays[plan.ops[plan.optimizer_op].bufs[1]]
        self.backend.copy_from_host(grads, np.zeros(grads.shape[0], dtype=np.float32))
        for op in plan.ops:
            if op.name == "grad_hook" and self.grad_hook is not None:
                self.grad_hook(op.ints[0], op.ints[1], op.ints[2], 0, step)
        index = plan.optimizer_op
        op = plan.ops[index]
        v = {i: self.storage.arrays[i] for i in op.bufs if i >= 0}
        try:
            _optimizer(self, op, v, step, None, None, self.current_reals(index))
        finally:
            values_changed()                 # the weights changed (a raise midway too)

    def refresh(self):
        """Rebind when the store took variables back (their views did not change, but a
        runner may hold pointers into what another store bound meanwhile)."""
        if self.store is not None:
            self.store.ensure_bound()
            if self.store.generation != self.generation:
                self._bind()

    def set_hyper(self, hyper):
        """The optimizer's current settings (a callback may change the learning rate)."""
        if hyper is not self._hyper and self.plan.optimizer_op is not None:
            self._hyper = hyper
            self._set_reals(self.plan.optimizer_op, hyper)


class PythonExecutor(Executor):
    """Walks the plan op by op through the backend's methods."""

    def current_reals(self, index):
        return self._reals.get(index, self.plan.ops[index].reals)

    def _bind(self):
        super()._bind()
        self._views = {}
        self._reals = {}

    def _set_reals(self, index, values):
        self._reals[index] = tuple(float(v) for v in values)

    def _view_table(self, rows):
        table = self._views.get(rows)
        if table is None:
            if len(self._views) > 4:
                self._views.clear()
            table = []
            for buf, arr in zip(self.plan.buffers, self.storage.arrays):
                if buf.batched:
                    n = rows * buf.row_size
                    table.append(arr[:n].reshape((rows * buf.mult,) + buf.shape))
                else:
                    table.append(arr if buf.role in ("weights (flat)", "gradients (flat)",
                                                     "optimizer slot") or buf.sizer is not None
                                 else arr[:buf.size].reshape(buf.shape))
            self._views[rows] = table
        return table

    def _run(self, inputs, targets, outputs, order, n_order, first_row, batch, n_steps,
             iterations, check_inputs):
        plan, be = self.plan, self.backend
        losses = np.zeros((n_steps, plan.n_losses))
        metrics = np.zeros((n_steps, plan.n_metrics))
        rows_done = np.zeros(n_steps, dtype=np.int64)
        for s in range(n_steps):
            r0 = first_row + s * batch
            r1 = min(r0 + batch, n_order)
            rows = r1 - r0
            idx = slice(r0, r1) if order is None else order[r0:r1]
            v = self._view_table(rows)
            for buf, src in zip(plan.input_bufs, inputs):
                be.copy_from_host(v[buf], np.ascontiguousarray(src[idx]))
            for buf, src in zip(plan.target_bufs, targets):
                be.copy_from_host(v[buf], np.ascontiguousarray(src[idx]))
            step = iterations + s + 1
            for index, op in enumerate(plan.ops):
                _OPS[op.name](self, op, v, step, losses[s], metrics[s],
                              self._reals.get(index, op.reals))
            for buf, out in zip(plan.output_bufs, outputs or ()):
                out[r0:r1] = be.to_host(v[buf]).reshape(out[r0:r1].shape)
            rows_done[s] = rows
            if s + 1 < n_steps and interrupts.stop_requested():   # Ctrl-C: as the C runner
                return losses[:s + 1], metrics[:s + 1], rows_done[:s + 1]
        return losses, metrics, rows_done


# An inference plan keeps each Dense layer's weights (up to this many floats) packed in
# column panels between calls (csrc/pynn.h, pynn_dense_pack_panels): a product of a few
# rows then streams contiguous memory instead of rows of W a whole row apart (the
# 784-512-256-10 MLP's predict_on_batch at batch 16: ~75 -> ~45 us).  The same bits.  The
# panels are packed when the weights have stayed the same for two calls (values_version),
# so a loop that trains between predictions never pays for packing.
PANEL_MAX_FLOATS = 1 << 22


# The ops an inference plan's input may go into while it is read where the caller holds
# it (csrc/pynn.h, input_direct): each op kind and the operand positions it only reads.
# An input that any other op (or another position) touches is copied into its buffer.
_READ_ONLY_OPERANDS = {
    "dense": (0,), "conv2d": (0,), "maxpool2d": (0,), "avgpool2d": (0,),
    "global_avgpool2d": (0,), "batchnorm_infer": (0,), "activation": (0,), "relu": (0,),
    "scale": (1,), "channel_affine": (0,), "normalize": (0,), "resize": (0,),
    "pad_crop": (0,), "embedding": (0,), "masking": (0,), "rnn": (0,), "transpose": (0,),
    "dropout": (0,),
}


def input_direct_flags(plan):
    """Per input of an inference plan: True when every op that touches its memory (its
    buffer or one sharing it) only reads it, at a position _READ_ONLY_OPERANDS lists, and
    no output shares it.  None for a training plan (its backward ops are not listed)."""
    if plan.kind == "train":
        return None
    def root(i):
        base = plan.buffers[i].base
        return i if base is None else base
    output_roots = {root(b) for b in plan.output_bufs}
    flags = []
    for b in plan.input_bufs:
        r = root(b)
        ok = r not in output_roots
        for op in plan.ops:
            if not ok:
                break
            at = [k for k, i in enumerate(op.bufs) if i >= 0 and root(i) == r]
            ok = not at or set(at) <= set(_READ_ONLY_OPERANDS.get(op.name, ()))
        flags.append(ok)
    return flags


class CExecutor(Executor):
    """The cpu backend: the plan handed to csrc/plan.c once, then run in one call per
    stretch of steps."""

    def _bind(self):
        from .. import _core
        super()._bind()
        plan = self.plan
        ops = [(op.kind, list(op.bufs), list(op.ints), list(op.reals)) for op in plan.ops]
        buffers = [(arr, buf.row_size) for buf, arr in zip(plan.buffers, self.storage.arrays)]
        self._panels, self._panels_at, self._panels_seen = [], None, None
        if plan.kind != "train":
            for i, op in enumerate(plan.ops):
                if op.name != "dense":
                    continue
                k, n = op.ints[0], op.ints[1]
                if k * n > PANEL_MAX_FLOATS or \
                        plan.buffers[op.bufs[1]].role not in ("weight", "constant"):
                    continue
                wp = np.zeros(_core.dense_panels_floats(k, n), dtype=np.float32)
                ops[i] = (op.kind, list(op.bufs) + [len(buffers)], list(op.ints),
                          list(op.reals))
                buffers.append((wp, 0))
                self._panels.append((wp, self.storage.arrays[op.bufs[1]].reshape(-1), k, n))
        self.runner = _core.PlanRunner(ops, buffers, self.capacity, plan.input_bufs,
                                       plan.target_bufs, plan.target_classes, plan.output_bufs,
                                       plan.n_losses, plan.n_metrics, self._max_steps,
                                       plan.target_ignore, input_direct_flags(plan))
        if self._hyper is not None and plan.optimizer_op is not None:
            self.runner.set_reals(plan.optimizer_op, self._hyper)
        self.runner.set_hook(self.grad_hook)

    _max_steps = 1

    def current_reals(self, index):
        return self.runner.reals(index)

    def ensure_steps(self, n_steps):
        if n_steps > self._max_steps:
            self._max_steps = n_steps
            self._bind()

    def _set_reals(self, index, values):
        self.runner.set_reals(index, list(values))

    def _refresh_panels(self):
        """The Dense panels marked current when the weights are those packed; stale ones
        marked so (the op then reads W), and packed anew once the weights have been seen
        unchanged twice."""
        version = values_version()
        if version == self._panels_at:
            return
        if version == self._panels_seen:
            for wp, w, k, n in self._panels:
                _core.dense_pack_panels(wp, w, k, n)      # marks them current
            self._panels_at = version
        else:
            for wp, _, _, _ in self._panels:
                wp[0] = 0.0                               # stale: the op reads w
            self._panels_seen, self._panels_at = version, None

    def _run(self, inputs, targets, outputs, order, n_order, first_row, batch, n_steps,
             iterations, check_inputs):
        self.ensure_steps(n_steps)
        if self._panels:                     # inference plans only
            self._refresh_panels()
        return self.runner.run(inputs, targets, outputs, order, n_order, first_row, batch,
                               n_steps, iterations, check_inputs)


def make_executor(plan, backend, store, optimizer, capacity, force_python=False):
    if backend.name == "cpu" and not force_python:
        return CExecutor(plan, backend, store, optimizer, capacity)
    return PythonExecutor(plan, backend, store, optimizer, capacity)


# ---- the ops, for the Python executor: one backend method each ------------------------------
# Operands as csrc/pynn.h documents them; `v` maps buffer index -> array for this step.

def _opt(v, i):
    return None if i < 0 else v[i]


def _rows2(a, cols):
    return a.reshape(-1, cols)


def _dense(ex, op, v, step, losses, metrics, reals):
    x, w, b, z, y = op.bufs
    n_in, n_out, act = op.ints
    ex.backend.dense_forward(_rows2(v[x], n_in), v[w], _opt(v, b), _ACT[act], reals[0],
                             _rows2(v[z], n_out), _rows2(v[y], n_out))


def _dense_backward(ex, op, v, step, losses, metrics, reals):
    x, w, z, y, dy, dw, db, dx = op.bufs
    n_in, n_out, act = op.ints
    ex.backend.dense_backward(_rows2(v[x], n_in), v[w], _rows2(v[z], n_out), _rows2(v[y], n_out),
                              _rows2(v[dy], n_out), _ACT[act], reals[0], _opt(v, dw),
                              _opt(v, db), None if dx < 0 else _rows2(v[dx], n_in))


def _geometry(ints):
    h, w, c, kh, kw, sh, sw, pt, pl, oh, ow = ints[:11]
    return (kh, kw), (sh, sw), (pt, pl), (oh, ow)


def _conv2d(ex, op, v, step, losses, metrics, reals):
    x, w, b, cols, z, y = op.bufs
    window, strides, pads, (oh, ow) = _geometry(op.ints)
    if _conv_general(op.ints):   # convolution variants (engineer B)
        dilation, groups = _conv_general(op.ints)
        ex.backend.conv2d_general_forward(v[x], v[w], _opt(v, b), strides, pads, dilation, groups,
                                          _ACT[op.ints[12]], reals[0], v[z], v[y])
        return
    k = window[0] * window[1] * op.ints[2]
    ex.backend.conv2d_forward(v[x], v[w], _opt(v, b), strides, pads, _ACT[op.ints[12]], reals[0],
                              v[cols].reshape(-1, k), v[z], v[y])


def _conv2d_backward(ex, op, v, step, losses, metrics, reals):
    x, w, z, y, dy, cols, work, dw, db, dx = op.bufs
    window, strides, pads, (oh, ow) = _geometry(op.ints)
    if _conv_general(op.ints):   # convolution variants (engineer B)
        dilation, groups = _conv_general(op.ints)
        ex.backend.conv2d_general_backward(v[x], v[w], v[z], v[y], v[dy], strides, pads,
                                           dilation, groups, _ACT[op.ints[12]], reals[0],
                                           v[work].reshape(-1), _opt(v, dw), _opt(v, db),
                                           _opt(v, dx))
        return
    k = window[0] * window[1] * op.ints[2]
    ex.backend.conv2d_backward(v[x], v[w], v[z], v[y], v[dy], strides, pads, _ACT[op.ints[12]],
                               reals[0], v[cols].reshape(-1, k), v[work].reshape(-1),
                               _opt(v, dw), _opt(v, db), _opt(v, dx))


# ---- convolution variants (engineer B) ----
def _conv_general(ints):
    """((dh, dw), groups) of a conv2d op with dilation or groups, else None."""
    if len(ints) == 16 and tuple(ints[13:16]) != (1, 1, 1):
        return (ints[13], ints[14]), ints[15]
    return None


def _transpose(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    ndim = op.ints[0]
    dims, perm = tuple(op.ints[1:1 + ndim]), tuple(op.ints[1 + ndim:1 + 2 * ndim])
    size = int(np.prod(dims))
    rows = v[x].size // size
    ex.backend.transpose(v[x].reshape((rows,) + dims), perm,
                         v[y].reshape((rows,) + tuple(dims[p] for p in perm)))
# ---- end of convolution variants (engineer B) ----


def _pool(kind):
    def forward(ex, op, v, step, losses, metrics, reals):
        x, y = op.bufs
        window, strides, pads, _ = _geometry(op.ints)
        getattr(ex.backend, f"{kind}_forward")(v[x], window, strides, pads, v[y])

    def backward(ex, op, v, step, losses, metrics, reals):
        window, strides, pads, _ = _geometry(op.ints)
        if kind == "maxpool2d":
            x, y, dy, dx = op.bufs
            ex.backend.maxpool2d_backward(v[x], v[y], v[dy], window, strides, pads, v[dx])
        else:
            dy, dx = op.bufs
            ex.backend.avgpool2d_backward(v[dy], window, strides, pads, v[dx])
    return forward, backward


def _gap(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    ex.backend.global_avgpool2d_forward(v[x], _rows2(v[y], op.ints[2]))


def _gap_backward(ex, op, v, step, losses, metrics, reals):
    dy, dx = op.bufs
    ex.backend.global_avgpool2d_backward(_rows2(v[dy], op.ints[2]), v[dx])


def _bn_train(ex, op, v, step, losses, metrics, reals):
    x, gamma, beta, mm, mv, mean, inv_std, y = op.bufs
    c = op.ints[0]
    ex.backend.batchnorm_forward_train(_rows2(v[x], c), _opt(v, gamma), _opt(v, beta), v[mm],
                                       v[mv], reals[0], reals[1], v[mean], v[inv_std],
                                       _rows2(v[y], c))


def _bn_train_backward(ex, op, v, step, losses, metrics, reals):
    x, gamma, mean, inv_std, dy, dgamma, dbeta, dx = op.bufs
    c = op.ints[0]
    ex.backend.batchnorm_backward(_rows2(v[x], c), _opt(v, gamma), v[mean], v[inv_std],
                                  _rows2(v[dy], c), _opt(v, dgamma), _opt(v, dbeta),
                                  None if dx < 0 else _rows2(v[dx], c))


def _bn_infer(ex, op, v, step, losses, metrics, reals):
    x, gamma, beta, mm, mv, y = op.bufs
    c = op.ints[0]
    ex.backend.batchnorm_forward_infer(_rows2(v[x], c), _opt(v, gamma), _opt(v, beta), v[mm],
                                       v[mv], reals[0], _rows2(v[y], c))


def _bn_infer_backward(ex, op, v, step, losses, metrics, reals):
    x, gamma, mm, mv, dy, dgamma, dbeta, dx = op.bufs
    c = op.ints[0]
    ex.backend.batchnorm_infer_backward(_rows2(v[x], c), _opt(v, gamma), v[mm], v[mv], reals[0],
                                        _rows2(v[dy], c), _opt(v, dgamma), _opt(v, dbeta),
                                        None if dx < 0 else _rows2(v[dx], c))


def _dropout(ex, op, v, step, losses, metrics, reals):
    x, mask, y = op.bufs
    seed, ndim = op.ints[0], op.ints[1]
    broadcast = [bool(f) for f in op.ints[2 + ndim:3 + 2 * ndim]]
    ex.backend.dropout_forward(v[x], seed, step, reals[0], broadcast, v[mask], v[y])


def _dropout_backward(ex, op, v, step, losses, metrics, reals):
    dy, mask, dx = op.bufs
    ex.backend.dropout_backward(v[dy], v[mask], v[dx])


def _activation(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    cols, act = op.ints
    ex.backend.activation_forward(_rows2(v[x], cols), _ACT[act], reals[0], _rows2(v[y], cols))


def _activation_backward(ex, op, v, step, losses, metrics, reals):
    x, y, dy, dx = op.bufs
    cols, act = op.ints
    ex.backend.activation_backward(_rows2(v[x], cols), _rows2(v[y], cols), _rows2(v[dy], cols),
                                   _ACT[act], reals[0], _rows2(v[dx], cols))


def _merge(ex, op, v, step, losses, metrics, reals):
    y, *xs = op.bufs
    ex.backend.merge_forward(_MERGE[op.ints[0]], [v[i] for i in xs], v[y])


def _merge_backward(ex, op, v, step, losses, metrics, reals):
    dx, dy, *xs = op.bufs
    kind, i = op.ints
    ex.backend.merge_backward(_MERGE[kind], i, [v[j] for j in xs], v[dy], v[dx])


def _concat(ex, op, v, step, losses, metrics, reals):
    y, *xs = op.bufs
    widths = op.ints
    ex.backend.concat_forward([_rows2(v[x], w) for x, w in zip(xs, widths)],
                              _rows2(v[y], sum(widths)))


def _concat_backward(ex, op, v, step, losses, metrics, reals):
    dy, *dxs = op.bufs
    widths = op.ints
    ex.backend.concat_backward(_rows2(v[dy], sum(widths)), list(widths),
                               [None if d < 0 else _rows2(v[d], w) for d, w in zip(dxs, widths)])


def _scale(ex, op, v, step, losses, metrics, reals):
    y, x = op.bufs
    ex.backend.scale(v[x], reals[0], v[y])


def _channel_affine(ex, op, v, step, losses, metrics, reals):
    x, scale, offset, y = op.bufs
    c, inner = op.ints
    ex.backend.channel_affine(v[x], v[scale], _opt(v, offset), c, inner, v[y])


def _normalize(ex, op, v, step, losses, metrics, reals):
    x, mean, variance, y = op.bufs
    c, inner, invert = op.ints
    ex.backend.normalize(v[x], _opt(v, mean), v[variance], c, inner, bool(invert), reals[0],
                         v[y])


def _random_contrast(ex, op, v, step, losses, metrics, reals):
    x, factors, y = op.bufs
    ex.backend.random_contrast(v[x], op.ints[0], step, reals[0], reals[1], reals[2], reals[3],
                               v[factors], v[y])


def _random_contrast_backward(ex, op, v, step, losses, metrics, reals):
    x, factors, dy, dx = op.bufs
    ex.backend.random_contrast_backward(v[x], v[factors], v[dy], reals[0], reals[1], v[dx])


def _random_brightness(ex, op, v, step, losses, metrics, reals):
    x, mask, y = op.bufs
    ex.backend.random_brightness(v[x], op.ints[0], step, reals[0], reals[1], reals[2],
                                 reals[3], _opt(v, mask), v[y])


def _loss(ex, op, v, step, losses, metrics, reals):
    pred, target, grad, weights = op.bufs
    kind, from_logits, cols, index, has_ignore, ignore, reduce_sum = op.ints
    t = v[target]
    t = t.reshape(-1) if t.dtype == np.int64 else _rows2(t, cols)
    losses[index] = ex.backend.loss(_LOSS[kind], _rows2(v[pred], cols), t, bool(from_logits),
                                    None if grad < 0 else _rows2(v[grad], cols), reals[1],
                                    None if weights < 0 else v[weights].reshape(-1),
                                    reals[2], ignore if has_ignore else None, bool(reduce_sum))


def _metric(ex, op, v, step, losses, metrics, reals):
    pred, target, weights = op.bufs
    kind, cols, index, k, width, per_weight = op.ints
    t = v[target]
    t = t.reshape(-1) if t.dtype == np.int64 else _rows2(t, cols)
    p = _rows2(v[pred], cols)
    w = None
    if weights >= 0:                                  # the step's per-sample weights
        w = v[weights].reshape(-1)[:(p.shape[0] + per_weight - 1) // per_weight]
    if _METRIC[kind] == "confusion":
        metrics[index:index + width] = ex.backend.metric_confusion(
            p, t, np.asarray(reals, dtype=np.float32), w, per_weight).reshape(-1)
    else:
        metrics[index] = ex.backend.metric_sum(_METRIC[kind], p, t, k, reals[0], w, per_weight)


def _optimizer(ex, op, v, step, losses, metrics, reals):
    params, grads, *slots = op.bufs
    ema = slots.pop() if len(slots) > ids.OPT_SLOTS else -1
    hyper = dict(zip(ids.HYPER, reals))
    n = len(ids.HYPER)
    if len(reals) > n and reals[n] != 0.0:      # a schedule: this step's learning rate
        hyper["learning_rate"] = _core.schedule_lr(int(reals[n]), reals[n + 1:n + 1 +
                                                   _core.SCHEDULE_PARAMS], step - 1)
    hyper.update(zip(ids.OPTIONS, reals[_core.OPT_REALS:]))
    segments = op.ints[2:] if len(op.ints) > 1 else None
    # the learning rate the OP_EMBEDDING_SGD ops after it apply, when this step is plain
    # SGD (the rule skipped their PYNN_SEGMENT_SPARSE segments); None: dense this step
    ex.sparse_lr = hyper["learning_rate"] if ref.sparse_sgd_ok(
        _OPT[op.ints[0]], hyper, ema >= 0) else None
    ex.backend.optimizer_step(_OPT[op.ints[0]], v[params], [_opt(v, s) for s in slots],
                              v[grads], step, hyper, segments, _opt(v, ema))


def _grad_hook(ex, op, v, step, losses, metrics, reals):
    if ex.grad_hook is not None:
        phase, offset, count = op.ints
        rows = v[ex.plan.input_bufs[0]].shape[0] if ex.plan.input_bufs else 0
        ex.grad_hook(phase, offset, count, rows, step)


def _image(v, index, shape):
    """Buffer `index` as NHWC images of `shape` (h, w, c) for this step's rows."""
    a = v[index]
    return a.reshape((-1,) + tuple(shape))


def _image_params(v, index):
    return None if index < 0 else v[index].reshape(-1, _core.IMAGE_PARAMS)


def _resize(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    h, w, c, oh, ow, top, left, wh, ww, interp = op.ints
    ex.backend.resize(_image(v, x, (h, w, c)), (top, left, wh, ww), _INTERP[interp], reals[0],
                      _image(v, y, (oh, ow, c)))


def _affine(ex, op, v, step, losses, metrics, reals):
    x, params, y = op.bufs
    h, w, c, interp, fill = op.ints
    ex.backend.affine_transform(_image(v, x, (h, w, c)), _image_params(v, params),
                                _INTERP[interp], _FILL[fill], reals[0], _image(v, y, (h, w, c)))


def _image_random(ex, op, v, step, losses, metrics, reals):
    (params,) = op.bufs
    kind, seed, h, w, oh, ow = op.ints
    ex.backend.image_random(_RANDOM[kind], seed, step, h, w, (oh, ow), reals,
                            _image_params(v, params))


def _flip(ex, op, v, step, losses, metrics, reals):
    x, params, y = op.bufs
    h, w, c, horizontal, vertical = op.ints
    ex.backend.flip(_image(v, x, (h, w, c)), _image_params(v, params), bool(horizontal),
                    bool(vertical), _image(v, y, (h, w, c)))


def _crop(ex, op, v, step, losses, metrics, reals):
    x, params, y = op.bufs
    h, w, c, oh, ow, top, left = op.ints
    ex.backend.crop(_image(v, x, (h, w, c)), _image_params(v, params), top, left,
                    _image(v, y, (oh, ow, c)))


# activations (engineer A): Keras's ReLU layer, softmax over any axis, PReLU
def _relu(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    ex.backend.relu_forward(v[x], reals[0], reals[1], reals[2], v[y])


def _relu_backward(ex, op, v, step, losses, metrics, reals):
    x, dy, dx = op.bufs
    ex.backend.relu_backward(v[x], v[dy], reals[0], reals[1], reals[2], v[dx])


def _softmax_axis(ex, op, v, step, losses, metrics, reals):
    x, y, *mask = op.bufs
    length, inner = op.ints
    outer = v[x].size // (length * inner)
    ex.backend.softmax_axis_forward(v[x], outer, length, inner, v[y],
                                    v[mask[0]] if mask else None)


def _softmax_axis_backward(ex, op, v, step, losses, metrics, reals):
    y, dy, dx = op.bufs
    length, inner = op.ints
    outer = v[y].size // (length * inner)
    ex.backend.softmax_axis_backward(v[y], v[dy], outer, length, inner, v[dx])


def _prelu_geometry(ints):
    rank = ints[0]
    return list(ints[1:1 + rank]), [bool(s) for s in ints[1 + rank:1 + 2 * rank]]


def _prelu(ex, op, v, step, losses, metrics, reals):
    x, alpha, y = op.bufs
    dims, shared = _prelu_geometry(op.ints)
    ex.backend.prelu_forward(v[x], v[alpha], dims, shared, v[y])


def _prelu_backward(ex, op, v, step, losses, metrics, reals):
    x, alpha, dy, dalpha, dx = op.bufs
    dims, shared = _prelu_geometry(op.ints)
    ex.backend.prelu_backward(v[x], v[alpha], v[dy], dims, shared, _opt(v, dalpha), _opt(v, dx))


# ---- engineer D (#16): sequence ops; ints (s, c) / (times, f) ----
def _seq(v, i, s, c):
    return v[i].reshape(-1, s, c)


def _global_maxpool(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    s, c = op.ints
    ex.backend.global_maxpool_forward(_seq(v, x, s, c), _rows2(v[y], c))


def _global_maxpool_backward(ex, op, v, step, losses, metrics, reals):
    x, dy, dx = op.bufs
    s, c = op.ints
    ex.backend.global_maxpool_backward(_seq(v, x, s, c), _rows2(v[dy], c), _seq(v, dx, s, c))


def _masked_mean(ex, op, v, step, losses, metrics, reals):
    x, mask, y = op.bufs
    s, c = op.ints
    ex.backend.masked_mean_forward(_seq(v, x, s, c), _rows2(v[mask], s), _rows2(v[y], c))


def _masked_mean_backward(ex, op, v, step, losses, metrics, reals):
    dy, mask, dx = op.bufs
    s, c = op.ints
    ex.backend.masked_mean_backward(_rows2(v[dy], c), _rows2(v[mask], s), _seq(v, dx, s, c))


def _repeat_vector(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    times, f = op.ints
    ex.backend.repeat_vector_forward(_rows2(v[x], f), _seq(v, y, times, f))


def _repeat_vector_backward(ex, op, v, step, losses, metrics, reals):
    dy, dx = op.bufs
    times, f = op.ints
    ex.backend.repeat_vector_backward(_seq(v, dy, times, f), _rows2(v[dx], f))


# ---- regularizers and constraints (engineer F) ----
_CONSTRAINT = {v: k for k, v in _core.CONSTRAINT_KINDS.items()}


def _penalty(ex, op, v, step, losses, metrics, reals):
    x, dx = op.bufs
    slot, accumulate, per_row = op.ints
    a = v[x]
    scale = 1.0 / a.shape[0] if per_row else 1.0
    value = ex.backend.penalty(a, _opt(v, dx), reals[0], reals[1], scale, bool(accumulate))
    if slot >= 0:
        losses[slot] += value


def _constraint(ex, op, v, step, losses, metrics, reals):
    (w,) = op.bufs
    kind, outer, red, inner = op.ints
    ex.backend.constraint(v[w], outer, red, inner, _CONSTRAINT[kind], reals[0], reals[1],
                          reals[2])


# ---- Embedding, Masking, TimeDistributed (engineer G) ----

def _embedding(ex, op, v, step, losses, metrics, reals):
    ids, table, y, mask = op.bufs
    V, D = op.ints
    ex.backend.embedding_forward(v[ids].reshape(-1), v[table].reshape(V, D),
                                 _rows2(v[y], D), None if mask < 0 else v[mask].reshape(-1))


def _embedding_backward(ex, op, v, step, losses, metrics, reals):
    ids, dy, dtable, work = op.bufs
    V, D = op.ints
    ex.backend.embedding_backward(v[ids].reshape(-1), _rows2(v[dy], D), v[dtable].reshape(V, D),
                                  v[work].reshape(-1))


def _embedding_grad_clear(ex, op, v, step, losses, metrics, reals):
    dtable, work, ids = op.bufs
    V, D, whole = op.ints
    ex.backend.embedding_grad_clear(v[dtable].reshape(V, D), v[work].reshape(-1),
                                    v[ids].size, bool(whole))


def _embedding_sgd(ex, op, v, step, losses, metrics, reals):
    table, dtable, work, ids_ = op.bufs
    V, D = op.ints
    ex.backend.embedding_sgd(v[table].reshape(V, D), v[dtable].reshape(V, D),
                             v[work].reshape(-1), v[ids_].size, getattr(ex, "sparse_lr", None))


def _masking(ex, op, v, step, losses, metrics, reals):
    x, y, mask = op.bufs
    D = op.ints[0]
    ex.backend.masking_forward(_rows2(v[x], D), reals[0], _rows2(v[y], D),
                               None if mask < 0 else v[mask].reshape(-1))


def _masking_backward(ex, op, v, step, losses, metrics, reals):
    dy, mask, dx = op.bufs
    D = op.ints[0]
    ex.backend.masking_backward(_rows2(v[dy], D), v[mask].reshape(-1), _rows2(v[dx], D))


def _rows_scope(ex, op, v, step, losses, metrics, reals):
    """Nothing to do here: the Python executor's views already have rows * T rows for
    the buffers of the ops in the scope (Buffer.mult)."""


# ---- transposed convolution, upsampling, padding, cropping (issue 16, part C) ----------------
def _conv2d_transpose(ex, op, v, step, losses, metrics, reals):
    x, w, b, work, z, y = op.bufs
    h, wd, c, kh, kw, sh, sw, pt, pl, oh, ow, f, act = op.ints
    ex.backend.conv2d_transpose_forward(_image(v, x, (h, wd, c)), v[w], _opt(v, b), (sh, sw),
                                        (pt, pl), _ACT[act], reals[0], v[work].reshape(-1),
                                        _image(v, z, (oh, ow, f)), _image(v, y, (oh, ow, f)))


def _conv2d_transpose_backward(ex, op, v, step, losses, metrics, reals):
    x, w, z, y, dy, work, dw, db, dx = op.bufs
    h, wd, c, kh, kw, sh, sw, pt, pl, oh, ow, f, act = op.ints
    ex.backend.conv2d_transpose_backward(
        _image(v, x, (h, wd, c)), v[w], _image(v, z, (oh, ow, f)), _image(v, y, (oh, ow, f)),
        _image(v, dy, (oh, ow, f)), (sh, sw), (pt, pl), _ACT[act], reals[0],
        v[work].reshape(-1), _opt(v, dw), _opt(v, db),
        None if dx < 0 else _image(v, dx, (h, wd, c)))


def _upsample2d_backward(ex, op, v, step, losses, metrics, reals):
    dy, dx = op.bufs
    h, w, c, fh, fw, interp = op.ints
    ex.backend.upsample2d_backward(_image(v, dy, (h * fh, w * fw, c)), (fh, fw), _INTERP[interp],
                                   _image(v, dx, (h, w, c)))


def _kernel_dilate(ex, op, v, step, losses, metrics, reals):
    src, dst = op.bufs
    kh, kw, cols, dh, dw, inverse = op.ints
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    small, wide = (kh, kw, cols, 1), (eh, ew, cols, 1)
    ex.backend.kernel_dilate(v[src].reshape(wide if inverse else small), (dh, dw), bool(inverse),
                             v[dst].reshape(small if inverse else wide))


def _pad_crop(ex, op, v, step, losses, metrics, reals):
    x, y = op.bufs
    h, w, c, oh, ow, top, left = op.ints
    ex.backend.pad_crop(_image(v, x, (h, w, c)), top, left, _image(v, y, (oh, ow, c)))


_maxpool, _maxpool_backward = _pool("maxpool2d")
_avgpool, _avgpool_backward = _pool("avgpool2d")
_OPS = {
    "dense": _dense, "dense_backward": _dense_backward,
    "conv2d": _conv2d, "conv2d_backward": _conv2d_backward,
    "maxpool2d": _maxpool, "maxpool2d_backward": _maxpool_backward,
    "avgpool2d": _avgpool, "avgpool2d_backward": _avgpool_backward,
    "global_avgpool2d": _gap, "global_avgpool2d_backward": _gap_backward,
    "batchnorm_train": _bn_train, "batchnorm_train_backward": _bn_train_backward,
    "batchnorm_infer": _bn_infer, "batchnorm_infer_backward": _bn_infer_backward,
    "dropout": _dropout, "dropout_backward": _dropout_backward,
    "activation": _activation, "activation_backward": _activation_backward,
    "merge": _merge, "merge_backward": _merge_backward,
    "concat": _concat, "concat_backward": _concat_backward,
    "scale": _scale, "loss": _loss, "metric": _metric, "optimizer": _optimizer,
    "resize": _resize, "affine": _affine, "image_random": _image_random, "flip": _flip,
    "crop": _crop,
    "channel_affine": _channel_affine, "normalize": _normalize,
    "random_contrast": _random_contrast, "random_contrast_backward": _random_contrast_backward,
    "random_brightness": _random_brightness,
    "grad_hook": _grad_hook,
    # activations (engineer A)
    "relu": _relu, "relu_backward": _relu_backward,
    "softmax_axis": _softmax_axis, "softmax_axis_backward": _softmax_axis_backward,
    "prelu": _prelu, "prelu_backward": _prelu_backward,
    # engineer D (#16): sequence ops
    "global_maxpool": _global_maxpool, "global_maxpool_backward": _global_maxpool_backward,
    "masked_mean": _masked_mean, "masked_mean_backward": _masked_mean_backward,
    "repeat_vector": _repeat_vector, "repeat_vector_backward": _repeat_vector_backward,
    "penalty": _penalty, "constraint": _constraint,   # engineer F
    # engineer G
    "embedding": _embedding, "embedding_backward": _embedding_backward,
    "embedding_grad_clear": _embedding_grad_clear, "embedding_sgd": _embedding_sgd,
    "masking": _masking,
    "masking_backward": _masking_backward, "rows_scope": _rows_scope,
    # transposed convolution, upsampling, padding, cropping (issue 16, part C)
    "conv2d_transpose": _conv2d_transpose, "conv2d_transpose_backward": _conv2d_transpose_backward,
    "upsample2d_backward": _upsample2d_backward, "pad_crop": _pad_crop,
    "kernel_dilate": _kernel_dilate,
    "transpose": _transpose,   # convolution variants (engineer B)
}


# ---- engineer E: normalization and noise layers ---------------------------------------------
def _group_norm(ex, op, v, step, losses, metrics, reals):
    x, gamma, beta, mean, inv_std, y = op.bufs
    s, groups, k, rms = op.ints
    ex.backend.group_norm_forward(v[x], _opt(v, gamma), _opt(v, beta), s, groups, k, reals[0],
                                  bool(rms), v[mean], v[inv_std], v[y])


def _group_norm_backward(ex, op, v, step, losses, metrics, reals):
    x, gamma, mean, inv_std, dy, dgamma, dbeta, dx = op.bufs
    s, groups, k, rms = op.ints
    ex.backend.group_norm_backward(v[x], _opt(v, gamma), v[mean], v[inv_std], v[dy], s, groups,
                                   k, bool(rms), _opt(v, dgamma), _opt(v, dbeta), _opt(v, dx))


def _unit_norm(ex, op, v, step, losses, metrics, reals):
    x, inv_norm, y = op.bufs
    ex.backend.unit_norm_forward(v[x], op.ints[0], v[inv_norm], v[y])


def _unit_norm_backward(ex, op, v, step, losses, metrics, reals):
    x, inv_norm, dy, dx = op.bufs
    ex.backend.unit_norm_backward(v[x], v[inv_norm], v[dy], op.ints[0], v[dx])


def _gaussian_noise(ex, op, v, step, losses, metrics, reals):
    x, noise, y = op.bufs
    ex.backend.gaussian_noise(v[x], op.ints[0], step, op.ints[1], reals[0], _opt(v, noise), v[y])


_OPS.update({"group_norm": _group_norm, "group_norm_backward": _group_norm_backward,
             "unit_norm": _unit_norm, "unit_norm_backward": _unit_norm_backward,
             "gaussian_noise": _gaussian_noise})

# ---- recurrent layers (engineer H) ----------------------------------------------------------
_RNN_CELLS = {0: "simple", 1: "lstm", 2: "gru"}


def _rnn_ints(op):
    T, f, u, cell, act, rec_act, go_backwards, time_order, zero_output, gate_masks = op.ints
    return dict(T=T, f=f, u=u, cell=cell, act=_ACT[act], rec_act=_ACT[rec_act],
                go_backwards=bool(go_backwards), time_order=bool(time_order),
                zero_output=bool(zero_output), gate_masks=bool(gate_masks))


def _rnn(ex, op, v, step, losses, metrics, reals):
    x, k, rk, b, m, rm, seq, cs, gates, hprev, aux, work, hl, cl, out, im = op.bufs
    ex.backend.rnn_forward(v[x], v[k], v[rk], _opt(v, b), _opt(v, m), _opt(v, rm), v[seq],
                           _opt(v, cs), v[gates], v[hprev], _opt(v, aux), v[work], _opt(v, hl),
                           _opt(v, cl), out=_opt(v, out), in_mask=_opt(v, im),
                           **_rnn_ints(op))


def _rnn_backward(ex, op, v, step, losses, metrics, reals):
    (x, k, rk, seq, cs, gates, hprev, aux, m, rm, dseq, dhl, dcl, dg, dgr, work, dk, drk, db,
     dx, im) = op.bufs
    ex.backend.rnn_backward(v[x], v[k], v[rk], v[seq], _opt(v, cs), v[gates], v[hprev],
                            _opt(v, aux), _opt(v, m), _opt(v, rm), _opt(v, dseq), _opt(v, dhl),
                            _opt(v, dcl), v[dg], _opt(v, dgr), v[work], _opt(v, dk),
                            _opt(v, drk), _opt(v, db), _opt(v, dx), in_mask=_opt(v, im),
                            **_rnn_ints(op))


_OPS.update({"rnn": _rnn, "rnn_backward": _rnn_backward})


assert set(_OPS) == set(ids.OPS), "every op kind of csrc/pynn.h has a Python implementation"
