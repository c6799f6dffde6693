"""Model: Keras 3's functional model, a graph of layer calls from Inputs to outputs.

    inputs = pynn.Input((784,))
    x = pynn.layers.Dense(64, activation="relu")(inputs)
    outputs = pynn.layers.Dense(10, activation="softmax")(x)
    model = pynn.Model(inputs, outputs)

The model is small parts with one job each, talking through public methods:
  the graph         this class: layers, nodes, building, config, introspection
                    (graph.py maps the nodes; Sequential is the special case of a chain)
  the engine        engine.py: what compile fixed, the parameter store (params.py), the
                    plans (plan.py) and their executors (executor.py)
  the trainer       trainer.py: fit / evaluate / predict, callbacks, progress
  input validation  validation.py
A model is a layer: call it on tensors to nest it in another model (its layers are
inlined into the outer plan and train end to end), or on arrays to compute.
"""
import json

import numpy as np

from .. import distributed, saving, serialization
from ..layers.base import Layer, shape_text, unique_name
from ..layers.input_layer import InputLayer
from ..layers.node import KerasTensor, flatten_structure, pack_like
from .. import backend as backends
from .. import optimizers as optimizers_module
from . import config as model_config
from . import summary as summary_module
from .engine import Engine
from .graph import map_graph
from .trainer import NotCompiledError, Trainer


def _flatten_sorted(struct):
    """Keras's flattening of inputs/outputs: dict values in sorted key order."""
    if isinstance(struct, dict):
        return [t for k in sorted(struct) for t in _flatten_sorted(struct[k])]
    if isinstance(struct, (list, tuple)):
        return [t for v in struct for t in _flatten_sorted(v)]
    return [struct]


class Model(Layer):
    """A functional model: `Model(inputs, outputs, name=None)`; inputs and outputs are
    tensors, lists of tensors, or dicts keyed by name."""

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if inputs is None and outputs is None and self._defines_call():
            inputs = None          # a subclassed model: its graph is traced from call()
        elif type(self) is Model and (inputs is None or outputs is None):
            raise ValueError("Model: expected Model(inputs, outputs) with tensors made by "
                             "pynn.Input and layer calls; received inputs="
                             f"{inputs!r:.80}, outputs={outputs!r:.80}")
        super().__init__(name=name or unique_name(self._default_name()), trainable=trainable,
                         **kwargs)
        self._engine = None
        self._trainer = Trainer(self)
        self.history = None
        self.stop_training = False
        self._graph_ready = False
        if inputs is not None:
            self._set_graph(inputs, outputs)

    @staticmethod
    def _default_name():
        return "functional"

    def _set_graph(self, inputs, outputs):
        flat_in, flat_out = _flatten_sorted(inputs), _flatten_sorted(outputs)
        if not flat_in or not flat_out:
            raise ValueError(f"Model '{self.name}': inputs and outputs must not be empty")
        nodes, layers = map_graph(flat_in, flat_out, self.name)
        self._inputs_struct, self._outputs_struct = inputs, outputs
        self._inputs, self._outputs = flat_in, flat_out
        self._ordered_nodes = nodes
        self._operations = layers
        self.built = True
        self._graph_ready = True
        self._build_input_shape = [tuple(t.shape) for t in flat_in]
        if self._engine is not None:
            self._engine.invalidate()

    # ---- the graph --------------------------------------------------------------------
    @property
    def layers(self):
        """The model's layers in Keras's order (its InputLayers included)."""
        return list(self._operations) if self._graph_ready else []

    def _sublayers(self):
        return [l for l in self.layers if not isinstance(l, InputLayer)]

    @property
    def inputs(self):
        return list(self._inputs) if self._graph_ready else None

    @property
    def nodes(self):
        """The graph's layer calls (Nodes), in the order a forward pass runs them."""
        return list(self._ordered_nodes) if self._graph_ready else []

    @property
    def operations(self):
        """The layers of the graph, in Keras's order (InputLayers included)."""
        return list(self._operations) if self._graph_ready else []

    @property
    def input_structure(self):
        """The inputs as the model was given them (a tensor, list or dict)."""
        return self._inputs_struct

    @property
    def output_structure(self):
        """The outputs as the model was given them (a tensor, list or dict)."""
        return self._outputs_struct

    @property
    def outputs(self):
        return list(self._outputs) if self._graph_ready else None

    @property
    def input(self):
        self._require_graph("input")
        s = self._inputs_struct
        return s[0] if isinstance(s, (list, tuple)) and len(s) == 1 else s

    @property
    def output(self):
        self._require_graph("output")
        s = self._outputs_struct
        return s[0] if isinstance(s, (list, tuple)) and len(s) == 1 else s

    @property
    def input_shape(self):
        self._require_graph("input_shape")
        shapes = [tuple(t.shape) for t in self._inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        self._require_graph("output_shape")
        shapes = [tuple(t.shape) for t in self._outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_names(self):
        if isinstance(self._inputs_struct, dict):
            return sorted(self._inputs_struct)
        return [t._keras_history[0].name for t in self._inputs]

    @property
    def output_names(self):
        if isinstance(self._outputs_struct, dict):
            return sorted(self._outputs_struct)
        return [t._keras_history[0].name for t in self._outputs]

    def _require_graph(self, what):
        if not self._graph_ready:
            raise ValueError(f"Model '{self.name}' has no {what} yet: it is not built. Give "
                             "it an input shape (pynn.Input(shape) first, or build()), or "
                             "call it on data")

    def ensure_graph(self, x, where):
        """Make sure the graph exists: functional models always have it (see Sequential); a
        subclassed model traces its call() on the first data it sees (x); `where` names the
        caller in errors."""
        if self._graph_ready:
            return
        if self._defines_call() and x is not None:
            self._trace(x, where)
            return
        self._require_graph("graph")

    @classmethod
    def _defines_call(cls):
        return "call" in {k for c in cls.__mro__ if c not in (Model, Layer, object)
                          for k in vars(c)}

    def _trace(self, x, where):
        """Keras's subclassed models: call(inputs) on pynn.Input tensors shaped like x (an
        array, a list or a dict of them) records the graph once; layers assigned in
        __init__ keep their weights across calls.  (Python control flow inside call() is
        fixed by that one trace.)"""
        from . import validation
        from ..layers.input_layer import Input

        def placeholder(value, name=None):
            arr = validation.as_features(value, where)
            return Input(arr.shape[1:], name=name)

        if isinstance(x, dict):
            inputs = {k: placeholder(v, k) for k, v in x.items()}
        elif isinstance(x, (list, tuple)) and x and all(hasattr(v, "shape") for v in x):
            inputs = [placeholder(v) for v in x]
        else:
            inputs = placeholder(x)
        import inspect
        kwargs = {}
        if "training" in inspect.signature(self.call).parameters:
            kwargs["training"] = None      # the calls inside follow fit / predict's mode
        try:
            outputs = self.call(inputs, **kwargs)
        except TypeError as exc:
            raise ValueError(f"{where}: tracing {type(self).__name__}.call on inputs of shape "
                             f"{getattr(inputs, 'shape', None)} failed: {exc}") from exc
        self._set_graph(inputs, outputs)

    def build(self, input_shape):
        """Functional models are built by their graph; a subclassed model traces call() on
        inputs of `input_shape` (with the batch axis)."""
        if self._graph_ready or not self._defines_call():
            return
        self._trace(np.zeros((1,) + tuple(input_shape[1:]), np.float32), "build")

    def get_layer(self, name=None, index=None):
        """A layer by name or by index in `layers`."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: provide exactly one of name or index, received "
                             f"name={name!r}, index={index!r}")
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                    not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: was asked to retrieve layer at index {index} but "
                                 f"model '{self.name}' only has {len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no such layer: {name!r}. Existing layers are: "
                         f"{[l.name for l in layers]}")

    # ---- a model as a layer ----------------------------------------------------------------
    _single_input = False
    _counts_own_node = True        # in a config, Keras numbers a nested functional model's
                                   # calls from 1: node 0 is the model's own graph

    def _input_shapes(self, flat):
        self._require_graph("inputs")
        if len(flat) != len(self._inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self._inputs)} input(s) "
                             f"({self.input_names}), but it received {len(flat)} input tensors")
        for t, ref, name in zip(flat, self._inputs, self.input_names):
            if len(t.shape) != len(ref.shape) or any(
                    a is not None and b is not None and a != b
                    for a, b in zip(t.shape[1:], ref.shape[1:])):
                raise ValueError(f"Model '{self.name}': input '{name}' expects shape "
                                 f"{shape_text(ref.shape)}, received a tensor of shape "
                                 f"{shape_text(t.shape)}")
        return [tuple(t.shape) for t in flat]

    def _maybe_build(self, input_shape):
        pass

    def compute_output_shape(self, input_shape):
        return [tuple(t.shape) for t in self._outputs]

    def _make_outputs(self, output_shapes):
        tensors = [KerasTensor(s) for s in output_shapes]
        return pack_like(self._outputs_struct, tensors) if not isinstance(
            self._outputs_struct, KerasTensor) else tensors[0]

    def _call_arrays(self, x, training):
        """model(x): the outputs for arrays x, computed now (training=True: training mode,
        without a weight update)."""
        out = self._trainer._lean_predict(x, "forward" if training else "predict")
        if out is not None:
            return out
        where = f"Model '{self.name}' called on arrays"
        self.ensure_graph(x, where)
        from . import validation
        inputs = validation.model_inputs(self, x, where)
        return self._trainer._predict_arrays(inputs, inputs[0].shape[0], 0,
                                             "forward" if training else "predict")

    def pack_outputs(self, arrays):
        """Arrays of the outputs (in `outputs` order) in the structure the model was built
        with: one array, a list, or a dict by name, as Keras's predict returns them."""
        struct = self._outputs_struct
        if isinstance(struct, KerasTensor):
            return arrays[0]
        if isinstance(struct, dict):
            return {name: a for name, a in zip(sorted(struct), arrays)}
        return pack_like(struct, arrays)

    # ---- compile -------------------------------------------------------------------------
    @property
    def engine(self):
        """pynn's compiled state: backend, optimizer, losses, parameter store, plans."""
        if self._engine is None:
            self._engine = Engine(self, backends.get(None))
        return self._engine

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True, backend=None):
        """Configure training: optimizer, loss(es) per output, loss_weights, metrics and the
        backend that computes ("cpu", "numpy" or "cuda").  Layer `trainable` flags are
        taken now."""
        where = f"{type(self).__name__}.compile ('{self.name}')"
        if weighted_metrics is not None and not isinstance(weighted_metrics, (list, tuple, dict)):
            raise TypeError(f"{where}: expected weighted_metrics as a list, tuple or dict, "
                            f"received {type(weighted_metrics).__name__} {weighted_metrics!r:.80}")
        opt = optimizers_module.get(optimizer, where)
        be = backends.get(backend, where)
        args = (loss, loss_weights, metrics, where)
        engine = Engine(self, be, opt, args)
        engine.weighted_metrics = weighted_metrics
        if self._graph_ready:
            engine.losses             # resolves now: a bad argument is refused before any change
        else:
            self._check_loss_args(loss, loss_weights, metrics, where)
            self._check_loss_args(None, None, weighted_metrics, where)
        old = self._engine
        self._engine = engine
        if old is not None and old.store is not None and old.backend is not be:
            old.store.ensure_bound()
        self.compiled = True

    @staticmethod
    def _check_loss_args(loss, loss_weights, metrics, where):
        """What can be checked of compile's arguments before the outputs are known."""
        from .. import losses as losses_module
        from .. import metrics as metrics_module
        for l in (loss.values() if isinstance(loss, dict) else
                  loss if isinstance(loss, (list, tuple)) else [loss]):
            if l is not None:
                losses_module.get(l, where)
        names = [metrics] if isinstance(metrics, str) else metrics
        if names is not None and not isinstance(names, (list, tuple, dict)):
            raise TypeError(f"{where}: expected metrics as a list of names, received "
                            f"{type(names).__name__} {names!r}")
        for m in (names or []):
            if isinstance(m, str) and m.lower() not in metrics_module.NAMES:
                raise ValueError(f"{where}: unknown metric {m!r}; expected one of "
                                 f"{', '.join(metrics_module.NAMES)}")

    compiled = False

    @property
    def optimizer(self):
        return self._engine.optimizer if self._engine is not None else None

    @property
    def loss(self):
        if self._engine is None or not self._engine.compiled:
            return None
        losses = [o.loss for o in self._engine.losses.outputs] if self._graph_ready else None
        if losses is None:
            return self._engine._loss_args[0]
        return losses[0] if len(losses) == 1 else losses

    @property
    def metrics_names(self):
        if self._engine is None or not self._engine.compiled or not self._graph_ready:
            return []
        return self._engine.losses.log_keys()

    @property
    def plan(self):
        """The training plan (pynn/models/plan.py) of the compiled model: print it."""
        if not self.compiled:
            raise NotCompiledError(f"Model '{self.name}' has no training plan: call compile() "
                                   "first")
        self.ensure_graph(None, "plan")
        return self.engine.plan("train")

    # ---- the trainer ---------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, **kwargs):
        return self._trainer.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                                 callbacks=callbacks, validation_split=validation_split,
                                 validation_data=validation_data, shuffle=shuffle, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", **kwargs):
        return self._trainer.evaluate(x, y, batch_size=batch_size, verbose=verbose, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        return self._trainer.predict(x, batch_size=batch_size, verbose=verbose, **kwargs)

    def train_on_batch(self, x, y=None, **kwargs):
        return self._trainer.train_on_batch(x, y, **kwargs)

    def test_on_batch(self, x, y=None, **kwargs):
        return self._trainer.test_on_batch(x, y, **kwargs)

    def predict_on_batch(self, x):
        return self._trainer.predict_on_batch(x)

    # ---- weights ---------------------------------------------------------------------------
    def set_weights(self, weights):
        if not self.built:
            raise ValueError(f"{type(self).__name__}.set_weights: model '{self.name}' is not "
                             "built yet; give it an input shape (Input(shape) or build()) first")
        super().set_weights(weights)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print the layers (type, output shape, parameters; connections for graphs) and the
        parameter counts with their sizes, as Keras's summary does."""
        summary_module.print_summary(self, line_length=line_length, positions=positions,
                                     print_fn=print_fn, expand_nested=expand_nested,
                                     show_trainable=show_trainable, layer_range=layer_range)

    # ---- looking inside ----------------------------------------------------------------------
    def activations(self, x):
        """Every layer's output for input `x`, in inference mode: a list of NumPy arrays, one
        per layer call in execution order (InputLayers left out).  `x` is one sample (the
        model's input shape, e.g. (64,)) -- each array then has no batch axis -- or a
        batch."""
        from . import validation
        where = f"Model '{self.name}'.activations"
        self.ensure_graph(x, where)
        single = len(self._inputs) == 1 and np.shape(x) == tuple(self._inputs[0].shape[1:])
        if single:
            x = np.asarray(x)[None]
        # checked against this model (the inner model's name would mean nothing to the caller)
        inputs = validation.model_inputs(self, x, where)
        inner = self._activation_model()
        outputs = inner.predict(inputs if len(inputs) > 1 else inputs[0],
                                batch_size=inputs[0].shape[0], verbose=0)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        outputs = [np.array(o, copy=True) for o in outputs]
        return [o[0] for o in outputs] if single else outputs

    def _activation_model(self):
        """A model on this graph whose outputs are every layer call's output."""
        cached = self.__dict__.get("_activations_model")
        if cached is None or cached[0] is not self._ordered_nodes:
            outs = [n.output_tensors[0] for n in self._ordered_nodes if not n.is_input]
            inner = Model(self._inputs_struct, outs, name=f"{self.name}_activations")
            inner._engine = Engine(inner, self.engine.backend)
            inner._engine.share_store(self.engine)
            cached = self._activations_model = (self._ordered_nodes, inner,
                                                [n.layer for n in self._ordered_nodes
                                                 if not n.is_input])
        return cached[1]

    def activation_layers(self):
        """The layers whose outputs `activations` returns, in the same order."""
        self._activation_model()
        return list(self._activations_model[2])

    # ---- saving and configuration (the file format: pynn/saving.py) -------------------------
    def get_config(self):
        """The architecture as JSON-ready data, Keras 3's format (config.py)."""
        return model_config.functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A model with the architecture of `config` (new weights)."""
        if not isinstance(config, dict):
            raise ValueError(f"{cls.__name__}.from_config: expected a dict, received "
                             f"{type(config).__name__}")
        return model_config.functional_from_config(cls, config, f"{cls.__name__}.from_config")

    def to_json(self, **kwargs):
        """The architecture as a JSON string (`pynn.models.model_from_json` reads it)."""
        return json.dumps(serialization.serialize(self), **kwargs)

    def save(self, filepath, overwrite=True, **kwargs):
        """Write the architecture, compile configuration, weights and optimizer state to one
        file (atomic, no pickle): Keras 3's .keras archive for a .keras name (Keras's
        `load_model` opens it; needs h5py), pynn's own zip (JSON and .npy) for any other,
        such as .pynn.  `pynn.load_model` reads both back.  Distributed (pynn.distributed):
        rank 0 writes, the other ranks do nothing, unless
        pynn.distributed.set_save_on_all_ranks(True)."""
        if not distributed.saves_here():
            return
        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        """Write only the weights (atomic): Keras's weights-only h5 layout for a
        .weights.h5 name (needs h5py), pynn's zip for any other; rank 0 only when
        distributed, as `save`."""
        if not distributed.saves_here():
            return
        saving.save_weights(self, filepath, overwrite=overwrite)

    def export(self, filepath, format="onnx", opset=None, input_signature=None, verbose=None,
               **kwargs):
        """Write the inference graph for serving: format="onnx" (pip install "pynn[onnx]"),
        an ONNX model with the model's input and output names, a dynamic batch dimension
        and NHWC inputs as here (pynn/export/onnx.py).  A layer with no ONNX form raises
        ValueError naming it, and no file is written.  `opset_version` is Keras 3's name for
        `opset` (keras/src/export/onnx.py takes it through **kwargs); give one or the other."""
        from ..export import export_model
        opset_version = kwargs.pop("opset_version", None)
        if kwargs:
            raise TypeError(f"Model '{self.name}'.export: unexpected arguments {sorted(kwargs)}")
        if opset is not None and opset_version is not None:
            raise ValueError(f"Model '{self.name}'.export: expected opset or opset_version (Keras's "
                             f"name for it), not both; received opset={opset!r}, "
                             f"opset_version={opset_version!r}")
        return export_model(self, filepath, format=format,
                            opset=opset if opset_version is None else opset_version,
                            input_signature=input_signature)

    def load_weights(self, filepath, skip_mismatch=False):
        """Set the weights from a file of `save_weights` or `save`; every shape is checked
        first, so a refused file leaves the model unchanged."""
        saving.load_weights(self, filepath)

    def compile_config(self):
        """(loss, loss_weights, metrics, backend name, optimizer) as compile received them,
        or None for a model that was not compiled (what `save` writes)."""
        engine = self._engine
        if engine is None or not engine.compiled:
            return None
        loss, loss_weights, metrics, _ = engine.loss_arguments
        return loss, loss_weights, metrics, engine.backend.name, engine.optimizer

    def compile_weighted_metrics(self):
        """compile's weighted_metrics as it received them (None when not given or not
        compiled): what `save` writes beside compile_config()."""
        engine = self._engine
        if engine is None or not engine.compiled:
            return None
        return engine.weighted_metrics

    def optimizer_state_shapes(self):
        """{slot name: shape} of the optimizer state this compiled model trains with."""
        engine = self.engine
        engine.optimizer.build(engine.ensure_store())
        return engine.optimizer.state_shapes()

    def set_backend(self, backend):
        """The backend an uncompiled model predicts on (compile(backend=...) sets it for a
        compiled one)."""
        if self._engine is not None and self._engine.compiled:
            raise ValueError(f"Model '{self.name}' is compiled; pass backend= to compile()")
        self._engine = Engine(self, backends.get(backend, f"Model '{self.name}'.set_backend"))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
