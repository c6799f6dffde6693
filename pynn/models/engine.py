"""The engine of a model: what `compile` fixes and what running needs.

  backend, optimizer, losses/metrics (compile_spec.CompiledLosses)
  trainable      the weights the optimizer updates, taken at compile (Keras: a change of
                 `layer.trainable` takes effect at the next compile)
  store          the parameter store (params.py), made once the model is built
  plans          one per kind ("train", "test", "predict", "forward"), compiled on first use;
                 "train+weights" and "test+weights" read a per-sample weight (fit and
                 evaluate given sample_weight or class_weight)
  executors      the training executor, grown to the largest batch seen; for inference,
                 a pool per kind: each call borrows one and gives it back, so calls from
                 several threads each run in their own buffers (one executor per
                 concurrent call, reused: nothing is allocated in steady state)

Threads: `train_lock` lets one training call (fit, train_on_batch) run at a time on a
model; a second waits for it.  Inference calls (predict, evaluate, model(x)) run
concurrently with each other and with training: they read the weights but write only
their own buffers, so a fit's weights are bitwise those of the same fit alone (the
predictions of a predict that overlaps a fit may mix weights of consecutive steps).
`lock` guards the engine's structure (plans, store, pools) while an executor is fetched.

A model that was never compiled gets an engine without optimizer or losses, for
`predict` and eager calls, on the default backend.
"""
import ast
import threading
from contextlib import contextmanager

import numpy as np

from .. import backend as backends
from . import compile_spec
from .executor import make_executor
from .. import distributed
from .plan import compile_plan, insert_grad_hooks


class Engine:
    def __init__(self, model, backend, optimizer=None, loss_args=None):
        self.model = model
        self.backend = backend
        self.optimizer = optimizer
        self._loss_args = loss_args             # (loss, loss_weights, metrics, where) or None
        self._losses = None
        self.weighted_metrics = None            # compile(weighted_metrics=...) as given
        self.trainable = {id(v) for v in model.trainable_weights}
        self._known = {id(v) for v in model.weights}
        self.frozen_layers = set()
        _collect_frozen(model, True, self.frozen_layers)
        self.store = None
        self._store_owner = None              # an engine whose store this one uses
        self._plans = {}
        self._executors = {}                  # "train" -> the training executor
        self._pools = {}                      # inference kind -> executors not in use
        self._pool_epoch = 0                  # bumped when the plans are forgotten
        self.lock = threading.RLock()
        self.train_lock = threading.RLock()
        self.force_python = False             # run the cpu plans op by op from Python (checks)

    # ---- what compile fixed --------------------------------------------------------------
    @property
    def loss_arguments(self):
        """(loss, loss_weights, metrics, where) as compile received them."""
        return self._loss_args

    @property
    def compiled(self):
        return self._loss_args is not None

    @property
    def losses(self):
        """The per-output losses and metrics (resolved once the outputs are known)."""
        if self._losses is None and self._loss_args is not None:
            loss, loss_weights, metrics, where = self._loss_args
            self._losses = compile_spec.resolve(self.model.output_names,
                                                [tuple(t.shape) for t in self.model.outputs],
                                                loss, loss_weights, metrics, where,
                                                self.weighted_metrics)
        return self._losses

    def fast_batch_signature(self):
        """(x dtype, x shape without the batch axis, y dtype, y shape likewise) of a training
        batch that needs no conversion, for a compiled model of one input and one loss
        (else None); worked out once."""
        sig = self.__dict__.get("_fast_signature", False)
        if sig is False:
            sig = None
            model = self.model
            # cpu only: its C step checks the values itself (labels, NaN) before any change;
            # the other backends' batches go through the general checks
            if self.compiled and self.backend.name == "cpu" and model.inputs is not None and \
                    len(model.inputs) == 1 and \
                    len(model.outputs) == 1 and self.losses.outputs[0].loss is not None:
                spec = self.losses.outputs[0]
                shape, dtype, _ = spec.loss.target_spec(spec.shape)
                sig = (np.dtype(np.float32), tuple(model.inputs[0].shape[1:]),
                       np.dtype(np.int64 if dtype == "int64" else np.float32), tuple(shape[1:]))
            self._fast_signature = sig
        return sig

    def lean_predict_shape(self):
        """The input shape (without the batch axis) of a prediction batch that needs no
        conversion, for a built single-input model on the cpu backend (else None); worked
        out once (forgotten with the plans)."""
        shape = self.__dict__.get("_lean_predict_shape", False)
        if shape is False:
            model = self.model
            shape = None
            if not getattr(model, "_graph_ready", False):
                return None                 # not built yet: decide once it is
            if self.backend.name == "cpu" and model.inputs is not None and \
                    len(model.inputs) == 1:
                shape = tuple(model.inputs[0].shape[1:])
            self._lean_predict_shape = shape
        return shape

    # ---- running ---------------------------------------------------------------------------
    def share_store(self, owner):
        """Use `owner`'s parameter store (a model over the same weights, e.g. the model
        behind `Model.activations`), instead of binding the weights to a store of its own."""
        self._store_owner = owner

    def ensure_store(self):
        with self.lock:
            return self._ensure_store()

    def _ensure_store(self):
        from .params import ParameterStore
        if self._store_owner is not None:
            self.store = self._store_owner.ensure_store()
            return self.store
        if self.store is None:
            self.store = ParameterStore(self.backend, self.model.weights,
                                        self.trainable & {id(v) for v in self.model.weights})
        self.store.ensure_bound()
        return self.store

    # ---- free axes (Input(shape=(None,))) ----------------------------------------------------
    def free_axes(self):
        """True when a model input has a free axis besides the batch (Keras's
        Input(shape=(None,)) for sequences of any length): a plan holds concrete shapes, so
        such a model has one plan per shape of the batches it runs, worked out from them."""
        inputs = self.model.inputs
        return bool(inputs) and any(d is None for t in inputs for d in t.shape[1:])

    def shaped(self, kind, inputs, targets=None, where="fit"):
        """The plan kind to run batches `inputs` (arrays, batch axis first) under: `kind`
        itself, or for a model with free axes `kind` with the batch's feature shapes after
        an "@" (one plan, executor and pool per shape).  `targets` (the arrays the plan's
        targets read): checked against that plan's, whose free axes the inputs fixed."""
        if not self.free_axes():
            return kind
        shapes = tuple(tuple(int(d) for d in a.shape[1:]) for a in inputs)
        self._last_shapes = shapes
        kind = f"{kind}@{shapes!r}"
        if targets:
            plan = self.plan(kind)
            for i, (y, buf) in enumerate(zip(targets, plan.target_bufs)):
                want = plan.buffers[buf].shape
                if tuple(y.shape[1:]) != want:
                    raise ValueError(
                        f"{where}: for inputs of shapes {[(None,) + s for s in shapes]} the "
                        f"model's target {i} has shape {(None,) + want}, received targets of "
                        f"shape {tuple(y.shape)}")
        return kind

    def _input_shapes(self, kind):
        """(kind without its shapes, the input feature shapes to plan for or None)."""
        base, at, shapes = kind.partition("@")
        if at:
            return base, ast.literal_eval(shapes)
        shapes = None
        if self.free_axes():
            shapes = getattr(self, "_last_shapes", None)
            if shapes is None:
                free = [tuple(t.shape) for t in self.model.inputs]
                raise ValueError(
                    f"model '{self.model.name}': its inputs have a free axis (shapes {free}); "
                    "its plan exists for a concrete shape, once data of that shape has run "
                    "through it (fit, evaluate, predict or a call on arrays)")
        return base, shapes

    def plan(self, kind):
        plan = self._plans.get(kind)
        if plan is None:
            with self.lock:
                return self._compile(kind)
        return plan

    def _compile(self, kind):
        plan = self._plans.get(kind)
        if plan is None:
            store = self.ensure_store()
            unshaped, input_shapes = self._input_shapes(kind)
            base, weighted = _split_kind(unshaped)
            optimizer_spec = None
            if base == "train":
                self.optimizer.build(store)
                optimizer_spec = self.optimizer.spec(store)
            frozen = self.frozen_layers if base == "train" else _frozen_now(self.model)
            plan = compile_plan(self.model, base, self.backend, self.losses,
                                trainable=[id(v) for v in store.layout.trainable_variables]
                                if base == "train" else (),
                                frozen_layers=frozen, optimizer_spec=optimizer_spec,
                                sample_weighted=weighted, input_shapes=input_shapes)
            dist = distributed.active()
            if dist is not None and base == "train":
                starts = {id(v): start for v, start in store.layout.trainable_offsets}
                insert_grad_hooks(plan, starts, max(1, int(dist.bucket_cap_mb * 2**20 / 4)))
            self._plans[kind] = plan
        return plan

    def executor(self, kind, capacity):
        """The training executor (kind "train") for batches of up to `capacity` rows; the
        caller holds `train_lock`."""
        ex = self._executors.get(kind)
        store = self.store
        if ex is not None and ex.capacity >= capacity and store is not None and \
                store.is_current() and ex.generation == store.generation:
            if ex.plan.kind == "train":   # the common case of a training step: nothing to redo
                ex.set_hyper(self.optimizer.hyper())
            return ex
        with self.lock:
            ex = self._ready(kind, self._executors.get(kind), capacity)
            self._executors[kind] = ex
            return ex

    @contextmanager
    def borrow(self, kind, capacity):
        """An inference executor of plan `kind` for batches of up to `capacity` rows, this
        call's alone until the block ends (then back in the pool)."""
        ex, epoch = self.take(kind, capacity)
        try:
            yield ex
        finally:
            self.put_back(kind, ex, epoch)

    def take(self, kind, capacity):
        """(executor, pool epoch): what borrow() lends, for a caller that gives it back with
        put_back() itself (the lean predict path, which cannot afford a generator).  The
        executor on top of the pool is taken as it is when nothing it depends on has moved
        (the store current, its generation the executor's, the capacity enough), as
        executor() does for the training step; otherwise it is made ready by _ready()."""
        with self.lock:
            pool = self._pools.get(kind)
            store = self.store
            if pool and store is not None and self._store_owner is None and \
                    pool[-1].capacity >= capacity and store.is_current() and \
                    pool[-1].generation == store.generation and pool[-1].plan.kind != "train":
                return pool.pop(), self._pool_epoch
            pool = self._pools.setdefault(kind, [])
            ex = pool.pop() if pool else None
            return self._ready(kind, ex, capacity), self._pool_epoch

    def put_back(self, kind, ex, epoch):
        """Return an executor from take() to its pool (dropped if the plans were forgotten
        meanwhile)."""
        with self.lock:
            if epoch == self._pool_epoch:
                self._pools.setdefault(kind, []).append(ex)

    def _ready(self, kind, ex, capacity):
        """`ex` made ready to run plan `kind` on `capacity` rows: rebound if the store
        moved, replaced by a larger one if too small, made if None."""
        plan = self.plan(kind)
        self.ensure_store()
        if ex is None or ex.capacity < capacity:
            if plan.kind == "train":
                self.optimizer.build(self.store)
            ex = make_executor(plan, self.backend, self.store, self.optimizer,
                               max(capacity, ex.capacity if ex else 0), self.force_python)
        else:
            ex.refresh()
        if plan.kind == "train":
            ex.set_hyper(self.optimizer.hyper())
        return ex

    def invalidate(self):
        """Forget the plans: the graph changed (Sequential.add / pop).  Weights that came with
        the change follow their layers' current `trainable`; the others keep what compile
        took.  The losses are resolved again against the new outputs (their shapes and names
        may have changed), as Keras builds its loss container on the next call."""
        self._plans.clear()
        self._losses = None
        self._executors.clear()
        self._pools.clear()
        self._pool_epoch += 1
        self.store = None
        self._fast_signature = False
        self._lean_predict_shape = False
        self._last_shapes = None
        current = {id(v) for v in self.model.trainable_weights} if self.model.inputs else set()
        weights = {id(v) for v in self.model.weights} if self.model.inputs else set()
        self.trainable = (self.trainable & self._known) | (current - self._known)
        self._known |= weights
        self.frozen_layers = set()
        _collect_frozen(self.model, True, self.frozen_layers)


def _split_kind(kind):
    """("train", True) for "train+weights": a plan kind and whether it reads sample weights."""
    base, _, extra = kind.partition("+")
    return base, extra == "weights"


def _collect_frozen(layer, parent_trainable, out):
    trainable = parent_trainable and layer.trainable
    if not trainable:
        out.add(id(layer))
    for sub in getattr(layer, "layers", ()):
        _collect_frozen(sub, trainable, out)


def _frozen_now(model):
    out = set()
    _collect_frozen(model, True, out)
    return out


def default_engine(model):
    return Engine(model, backends.get(None))
