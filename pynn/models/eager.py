"""Eager calls: a layer or model called on arrays computes now and returns NumPy arrays.

A model runs its own forward plan (`model(x)` is predict on one batch, in training mode
with training=True).  A plain layer gets a one-call plan of its own, cached per input
shape, run op by op on the backend its weights live on (the default backend for a layer
that is in no compiled model).
"""
import threading

import numpy as np

from .. import backend as backends
from ..variables import bindings_version
from ..layers.node import KerasTensor, flatten_structure, pack_like
from . import validation
from .executor import PythonExecutor
from .plan import compile_plan


class _Call:
    """One eager call as a graph: the layer on placeholder inputs (no Node is recorded on
    the layer, so its `input`/`output` stay those of its symbolic calls)."""

    def __init__(self, layer, input_shapes, training, mask_shape=None):
        self.layer = layer
        self.input_tensors = [KerasTensor(s) for s in input_shapes]
        # an explicit mask (masks: engineer G): one more input of the one-call graph
        self.mask_tensor = None if mask_shape is None else KerasTensor(mask_shape)
        shape_arg = input_shapes[0] if layer._single_input else list(input_shapes)
        out = layer.compute_output_shape(shape_arg)
        # a layer with several outputs (a recurrent layer's return_state) gives a list
        self.output_tensors = [KerasTensor(o) for o in out] if isinstance(out, list) else \
            [KerasTensor(out)]
        self.training = training
        self.is_input = False


class _OneCallGraph:
    """What the plan compiler reads of a model: inputs, outputs, nodes."""

    def __init__(self, call):
        self.inputs = call.input_tensors + ([call.mask_tensor] if call.mask_tensor is not None
                                            else [])
        self.outputs = call.output_tensors
        self.nodes = [call]


def eager_call(layer, inputs, training=False, mask=None):
    if hasattr(layer, "_call_arrays"):
        return layer._call_arrays(inputs, training)
    where = f"Layer '{layer.name}' ({type(layer).__name__}) called on arrays"
    flat = [validation.as_features(a, where, "inputs") for a in flatten_structure(inputs)]
    mask_shape = None
    if mask is not None:                    # fed as float32 1/0, as plan masks are
        mask = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.float32)
        mask_shape = (None,) + mask.shape[1:]
    shapes = [(None,) + a.shape[1:] for a in flat]
    if layer._single_input and len(flat) != 1:
        raise ValueError(f"{where}: the layer takes 1 input, received {len(flat)}")
    if len({a.shape[0] for a in flat}) > 1:
        raise ValueError(f"{where}: all inputs must have the same number of samples, received "
                         f"{[a.shape[0] for a in flat]}")
    layer._maybe_build(shapes[0] if layer._single_input else shapes)
    variables = layer.weights
    be = variables[0]._backend if variables and variables[0]._backend is not None \
        else backends.get(None)
    key = (tuple(shapes), bool(training), be.name, mask_shape)
    n = flat[0].shape[0]
    # one eager call of a layer at a time: its cached executor's buffers are one call's
    with layer.__dict__.setdefault("_eager_lock", threading.Lock()):
        cache = layer.__dict__.setdefault("_eager_cache", {})
        entry = cache.get(key)
        if entry is None or entry[1].capacity < n:
            graph = _OneCallGraph(_Call(layer, shapes, bool(training), mask_shape))
            plan = compile_plan(graph, "forward" if training else "predict", be)
            entry = (graph, PythonExecutor(plan, be, None, None, n))
            if len(cache) > 8:
                cache.clear()
            cache[key] = entry
        graph, ex = entry
        if ex.__dict__.get("_bindings") != bindings_version():
            ex._bind()                     # the weights moved (into a compiled model's store)
            ex._bindings = bindings_version()
        outs = [np.empty((n,) + tuple(t.shape[1:]), dtype=np.float32) for t in graph.outputs]
        ex.run(flat + ([mask] if mask is not None else []), [], outs, None, n, 0, n, 1,
               _next_counter(layer))
    return outs[0] if len(outs) == 1 else outs


def _next_counter(layer):
    count = layer.__dict__.get("_eager_calls", 0) + 1
    layer._eager_calls = count
    return count


__all__ = ["eager_call", "pack_like"]
