"""Mapping a functional graph: which nodes lie between a model's inputs and outputs, in
which order, and which layers they call.  A port of the ordering rules of Keras 3's
`map_graph` (keras/src/ops/function.py), so `model.layers` and therefore
`model.get_weights()` come in Keras's order and weights transfer between the two.

Errors are ValueErrors that name the layers and shapes involved.
"""
from ..layers.base import shape_text
from ..layers.node import KerasTensor


def _history(t):
    return t._keras_history


def _describe(t):
    h = _history(t)
    return f"{t.name} {shape_text(t.shape)} from layer '{h[0].name}'" if h else repr(t)


def _build_map(inputs, outputs):
    """Nodes from the inputs to the outputs, by depth-first search from each output in
    turn (post-order), and each layer's first traversal index."""
    finished, in_progress = set(), set()
    ordered, layer_index = [], {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor):
        layer, node_index, _ = _history(tensor)
        node = layer._inbound_nodes[node_index]
        if node in finished:
            return
        if node in in_progress:
            raise ValueError(f"The graph has a cycle through layer '{layer.name}'")
        if layer not in layer_index:
            layer_index[layer] = len(layer_index)
        in_progress.add(node)
        if not node.is_input and id(tensor) not in input_ids:
            for t in node.graph_tensors:          # an explicit mask too (engineer G)
                visit(t)
        in_progress.discard(node)
        finished.add(node)
        ordered.append(node)

    for t in outputs:
        visit(t)
    return ordered, layer_index


def map_graph(inputs, outputs, model_name):
    """(nodes in execution order, layers in Keras's order) for a model from `inputs` to
    `outputs`, or a ValueError: a disconnected graph, an input that is not a pynn.Input,
    a layer name used twice."""
    for t in inputs:
        if not isinstance(t, KerasTensor):
            raise ValueError(f"Model '{model_name}': all inputs must be tensors made by "
                             f"pynn.Input(...); received {type(t).__name__} {t!r:.80}")
        layer, node_index, _ = _history(t)
        if not layer._inbound_nodes[node_index].is_input:
            raise ValueError(f"Model '{model_name}': input {_describe(t)} is not a pynn.Input "
                             "but the output of a layer; a model's inputs must be what "
                             "pynn.Input(shape) returns")
    for t in outputs:
        if not isinstance(t, KerasTensor) or _history(t) is None:
            raise ValueError(f"Model '{model_name}': all outputs must be tensors made by calling "
                             f"layers on pynn.Input tensors; received {type(t).__name__} "
                             f"{t!r:.80}")
    ordered, layer_index = _build_map(inputs, outputs)

    # depths: the longest path to an output (Keras's ordering key)
    in_graph = set(ordered)
    node_depth, layer_depth = {}, {}
    for node in reversed(ordered):
        depth = node_depth.setdefault(node, 0)
        depth = max(depth, layer_depth.get(node.layer, 0))
        layer_depth[node.layer] = depth
        node_depth[node] = depth
        for parent in node.parent_nodes:
            if parent in in_graph:
                node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for t in inputs:                   # inputs no output depends on still belong to the model
        layer = _history(t)[0]
        if layer not in layer_depth:
            layer_depth[layer] = 0
            layer_index[layer] = -1

    layers = []
    for depth in sorted(set(layer_depth.values()), reverse=True):
        group = [l for l, d in layer_depth.items() if d == depth]
        group.sort(key=lambda l: layer_index[l])
        layers.extend(group)

    # every tensor a node needs must come from the inputs
    computable = {id(t) for t in inputs}
    reached = []
    for node in ordered:
        if node.is_input:
            if not any(id(t) in computable for t in node.output_tensors):
                t = node.output_tensors[0]
                needed_by = _first_consumer(node, ordered)
                raise ValueError(
                    f"Model '{model_name}': graph disconnected: cannot obtain the value of "
                    f"input tensor {_describe(t)}, needed by layer '{needed_by}'. It is not "
                    "among the model's inputs; the layers reached from the inputs without "
                    f"issue were: {reached or 'none'}")
            continue
        for t in node.graph_tensors:
            if id(t) not in computable:
                raise ValueError(
                    f"Model '{model_name}': graph disconnected: layer '{node.layer.name}' needs "
                    f"tensor {_describe(t)}, which cannot be computed from the model's inputs; "
                    f"the layers reached from the inputs without issue were: {reached or 'none'}")
        for t in node.output_tensors:
            computable.add(id(t))
        reached.append(node.layer.name)
    for t in outputs:
        if id(t) not in computable:
            raise ValueError(f"Model '{model_name}': output {_describe(t)} is not connected to "
                             "the model's inputs")

    names = [l.name for l in layers]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"Model '{model_name}': the name '{name}' is used "
                             f"{names.count(name)} times in the model; all layer names must be "
                             "unique")
    return ordered, layers


def _first_consumer(node, ordered):
    outs = {id(t) for t in node.output_tensors}
    for n in ordered:
        if any(id(t) in outs for t in n.input_tensors):
            return n.layer.name
    return "?"
