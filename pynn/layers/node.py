"""The symbolic side of the functional API: KerasTensor and Node.

`pynn.Input(shape)` returns a KerasTensor: a shape (batch axis first, None) and the
history of where it came from.  Calling a layer on KerasTensors records a Node (one call
event: the layer, the tensors it was called on, the tensors it returned, the `training`
argument) and returns new KerasTensors.  Nothing is computed; a Model later maps the
nodes between its inputs and outputs into a graph and compiles that into a plan.

As in Keras (keras/src/ops/node.py), nodes are call events, not layers: a layer called
twice (a shared layer) has two nodes and one set of weights.
"""
import itertools

_tensor_ids = itertools.count()


class KerasHistory(tuple):
    """(layer, node_index, tensor_index): which call of which layer made a tensor."""

    __slots__ = ()

    def __new__(cls, layer, node_index, tensor_index):
        return super().__new__(cls, (layer, node_index, tensor_index))

    @property
    def operation(self):
        return self[0]

    @property
    def node_index(self):
        return self[1]

    @property
    def tensor_index(self):
        return self[2]


class KerasTensor:
    """A symbolic tensor: a shape with the batch axis first (None), a dtype and a name."""

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = dtype
        self.name = name or f"keras_tensor_{next(_tensor_ids)}"
        self._keras_history = None
        self._keras_mask = None      # its (batch, T) boolean mask, a KerasTensor (masks: G)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic (a placeholder of a functional model): it has no "
                        "values. Build a pynn.Model from it and call the model on data instead")

    def __bool__(self):
        raise TypeError(f"{self!r} is symbolic and has no truth value")


class Node:
    """One call of `layer` on `input_tensors`, giving `output_tensors`.

    `call_structure` is how the inputs were passed (one tensor, or a list / tuple / dict of
    them) so a model's config can write the call back; `training` is the call's training
    argument (None: follow the model's mode)."""

    def __init__(self, layer, call_structure, input_tensors, output_tensors, training=None):
        self.layer = layer
        self.call_structure = call_structure
        self.input_tensors = list(input_tensors)
        self.output_tensors = list(output_tensors)
        self.training = training
        self.mask_tensor = None      # the explicit mask= of the call (masks: engineer G)
        layer._inbound_nodes.append(self)
        index = len(layer._inbound_nodes) - 1
        for i, t in enumerate(self.output_tensors):
            t._keras_history = KerasHistory(layer, index, i)

    @property
    def operation(self):
        return self.layer

    @property
    def is_input(self):
        return not self.input_tensors

    @property
    def parent_nodes(self):
        """The nodes that made this node's inputs."""
        out = []
        for t in self.graph_tensors:
            layer, index, _ = t._keras_history
            out.append(layer._inbound_nodes[index])
        return out

    @property
    def graph_tensors(self):
        """The tensors the call reads: its inputs, then an explicit mask made in the graph
        (`layer(x, mask=m)`, a kwarg Keras 3 counts as an input too; engineer G)."""
        m = self.mask_tensor
        extra = [m] if m is not None and getattr(m, "_keras_history", None) is not None else []
        return list(self.input_tensors) + extra

    def __repr__(self):
        return f"<Node {self.layer.name}[{self.layer._inbound_nodes.index(self)}]>"


def flatten_structure(value):
    """The leaves of a tensor/array structure: a single value, or list / tuple / dict
    values (dicts in key order as given)."""
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(flatten_structure(v))
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out.extend(flatten_structure(v))
        return out
    return [value]


def pack_like(structure, flat):
    """`flat` put back into the shape of `structure` (the inverse of flatten_structure)."""
    flat = list(flat)

    def pack(s):
        if isinstance(s, (list, tuple)):
            return type(s)(pack(v) for v in s)
        if isinstance(s, dict):
            return {k: pack(v) for k, v in s.items()}
        return flat.pop(0)

    return pack(structure)
