"""A model's architecture as JSON-ready data, and back: Keras 3's format
(keras/src/models/functional.py `get_config` / `functional_from_config`, sequential.py).

  Sequential   {"name", "trainable", "layers": [each layer serialized, the InputLayer
               first], "build_input_shape": [None, ...]}
  functional   {"name", "trainable", "layers": [each layer serialized, with "name" and
               "inbound_nodes": one {"args": [...], "kwargs": {...}} per call, the input
               tensors written {"class_name": "__keras_tensor__", "config": {"shape",
               "dtype", "keras_history": [layer, node index, tensor index]}}],
               "input_layers": [[layer, node, tensor], ...], "output_layers": ...}
A functional model used as a layer counts one node of its own first (Keras's convention),
so node indices match Keras's.  Nested models are layers with their own config, shared
layers have several inbound nodes, and every layer keeps its `trainable` flag.
"""
from collections import deque

from .. import serialization
from ..checks import check_bool, is_int, shown
from ..layers.node import KerasTensor, flatten_structure
from ..serialization import ModelFileError


def _own_nodes(layer):
    """1 for a functional model used as a layer (Keras counts a node of its own first)."""
    return 1 if getattr(layer, "_counts_own_node", False) else 0


def sequential_config(model):
    config = {"name": model.name, "trainable": model.trainable,
              "layers": [serialization.serialize(l) for l in model.layers_with_input]}
    if model.inputs is not None:
        config["build_input_shape"] = list(model.inputs[0].shape)
    return config


def functional_config(model):
    nodes = set(model.nodes)

    def index(layer, node_index):
        kept = [n for n in layer.inbound_nodes[:node_index] if n in nodes]
        return len(kept) + _own_nodes(layer)

    def tensor(t):
        layer, node_index, tensor_index = t._keras_history
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": "float32",
                           "keras_history": [layer.name, index(layer, node_index), tensor_index]}}

    def args_of(node):
        s = node.call_structure
        if isinstance(s, dict):
            return [{k: tensor(v) for k, v in s.items()}]
        if isinstance(s, (list, tuple)):
            return [[tensor(t) for t in node.input_tensors]]
        # an op's further arguments (NotEqual's value; engineer G)
        return [tensor(node.input_tensors[0])] + list(getattr(node, "extra_args", ()))

    def kwargs_of(node):
        kwargs = {} if node.training is None else {"training": node.training}
        m = getattr(node, "mask_tensor", None)     # an explicit mask made in the graph
        if m is not None and getattr(m, "_keras_history", None) is not None:
            kwargs["mask"] = tensor(m)
        return kwargs

    layers = []
    for layer in model.operations:
        entry = serialization.serialize(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [
            {"args": args_of(n), "kwargs": kwargs_of(n)}
            for n in layer.inbound_nodes if n in nodes and not n.is_input]
        layers.append(entry)

    def refs(struct):
        if isinstance(struct, dict):
            return {k: refs(v) for k, v in struct.items()}
        if isinstance(struct, (list, tuple)):
            return [refs(v) for v in struct]
        layer, node_index, tensor_index = struct._keras_history
        return [layer.name, index(layer, node_index), tensor_index]

    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": refs(model.input_structure),
            "output_layers": refs(model.output_structure)}


def _trainable(config, where):
    try:
        return check_bool(config.get("trainable", True), "trainable", where)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None


def sequential_from_config(cls, config, where):
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise ModelFileError(f"{where}: a Sequential config needs a list of layers, found "
                             f"{shown(layers)}")
    serialization.check_layer_count(layers, where)
    trainable = _trainable(config, where)
    model = cls(name=config.get("name") or None)
    for entry in layers:
        model.add(serialization.deserialize_layer(entry, where), rebuild=False)
    model._maybe_rebuild()
    shape = config.get("build_input_shape")
    if model.inputs is None and isinstance(shape, list) and model.layers:
        model.build(tuple(shape))
    if not trainable:
        model.trainable = False
    return model


class _NotYet(Exception):
    """A tensor reference to a call not replayed yet: (layer name, node index)."""


def functional_from_config(cls, config, where):
    created, pending = {}, {}
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ModelFileError(f"{where}: a functional config needs a list of layers")
    serialization.check_layer_count(entries, where)
    trainable = _trainable(config, where)
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ModelFileError(f"{where}: a layer entry needs a name, found {shown(entry)}")
        if entry["name"] in created:
            raise ModelFileError(f"{where}: the config lists layer {shown(entry['name'])} twice")
        layer = serialization.deserialize_layer(
            {k: v for k, v in entry.items() if k not in ("inbound_nodes", "name")}, where)
        created[entry["name"]] = layer
        calls = entry.get("inbound_nodes") or []
        if not isinstance(calls, list):
            raise ModelFileError(f"{where}: inbound_nodes of {entry['name']} must be a list")
        pending[entry["name"]] = deque(calls)

    def tensor(ref):
        if not (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)
                and all(is_int(i) for i in ref[1:])):
            raise ModelFileError(f"{where}: expected a tensor reference [layer, node, tensor], "
                                 f"found {shown(ref)}")
        layer = created.get(ref[0])
        if layer is None:
            raise ModelFileError(f"{where}: unknown layer {shown(ref[0])} in a tensor reference")
        node_index = ref[1] - _own_nodes(layer)
        nodes = layer.inbound_nodes
        if not 0 <= node_index < len(nodes):
            raise _NotYet((ref[0], ref[1]))     # not made yet: try again after that call
        outs = nodes[node_index].output_tensors
        if not 0 <= ref[2] < len(outs):
            raise ModelFileError(f"{where}: tensor reference {shown(ref)} is out of range")
        return outs[ref[2]]

    def decode(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            history = value.get("config")
            return tensor(history.get("keras_history") if isinstance(history, dict) else None)
        if isinstance(value, list):
            return [decode(v) for v in value]
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        return value

    # replay the calls as they become possible (a shared layer's later calls may need
    # tensors made further down the list), as Keras's functional_from_config does; a call
    # that waits for another is retried once that call has been made, so the replay takes
    # time in proportion to the number of calls
    ready, waiting = deque(created), {}
    while ready:
        name = ready.popleft()
        layer, queue = created[name], pending[name]
        while queue:
            call = queue[0]
            if not isinstance(call, dict) or not isinstance(call.get("kwargs") or {}, dict):
                raise ModelFileError(f"{where}: a call of {name} must be an object "
                                     "{'args': [...], 'kwargs': {...}}")
            try:
                args = decode(call.get("args", []))
                mask = decode((call.get("kwargs") or {}).get("mask"))   # engineer G
            except _NotYet as missing:
                waiting.setdefault(missing.args[0], []).append(name)
                break
            extra = []
            if getattr(layer, "takes_extra_args", False) and isinstance(args, list):
                args, extra = args[:1], args[1:]    # an op's value (NotEqual(x, 0))
            if not isinstance(args, list) or len(args) != 1 or not all(
                    isinstance(t, KerasTensor) for t in flatten_structure(args[0])):
                raise ModelFileError(f"{where}: a call of {name} must have one argument (its "
                                     f"input tensors), found {shown(call.get('args'))}")
            if mask is not None and not isinstance(mask, KerasTensor):
                raise ModelFileError(f"{where}: the mask of a call of {name} must be a tensor, "
                                     f"found {shown(mask)}")
            try:
                if extra:
                    layer(args[0], *extra)
                elif mask is not None:
                    layer(args[0], training=(call.get("kwargs") or {}).get("training"),
                          mask=mask)
                else:
                    layer(args[0], training=(call.get("kwargs") or {}).get("training"))
            except (TypeError, ValueError) as exc:
                if not extra and mask is None:
                    raise
                raise ModelFileError(f"{where}: cannot replay a call of {name}: {exc}") from None
            queue.popleft()
            made = (name, len(layer.inbound_nodes) - 1 + _own_nodes(layer))
            ready.extend(waiting.pop(made, []))
    stuck = [n for n, q in pending.items() if q]
    if stuck:
        raise ModelFileError(f"{where}: the graph has loops or calls that refer to tensors "
                             f"no layer makes; unresolved layers: {shown(stuck, 200)}")

    def struct(refs):
        if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
            return tensor(refs)
        if isinstance(refs, dict):
            return {k: struct(v) for k, v in refs.items()}
        if isinstance(refs, list):
            return [struct(v) for v in refs]
        raise ModelFileError(f"{where}: bad input/output reference {shown(refs)}")

    try:
        inputs = struct(config.get("input_layers"))
        outputs = struct(config.get("output_layers"))
    except _NotYet as exc:
        raise ModelFileError(f"{where}: input/output reference {list(exc.args[0])} names a call "
                             "that does not exist") from None
    model = cls(inputs, outputs, name=config.get("name") or None)
    if not trainable:
        model.trainable = False
    return model
