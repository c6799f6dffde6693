"""Sequential: a chain of layers, the special case of a functional model.

Once its input shape is known (an Input first, `input_shape=` on the first layer,
`build(input_shape)`, or the first data it sees) the layers are called one after the
other on an Input tensor, which makes an ordinary graph; `add` and `pop` rebuild it.
"""
from ..layers.base import Layer
from ..layers.input_layer import InputLayer
from ..layers.node import KerasTensor
from . import config as model_config
from .functional import Model


class Sequential(Model):
    """A linear stack of layers, with Keras's `compile` / `fit` / `evaluate` / `predict`."""

    def __init__(self, layers=None, trainable=True, name=None, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._layers = []            # the InputLayer (if any) first, then the added layers
        if layers is not None:
            if not isinstance(layers, (list, tuple)):
                raise TypeError(f"Sequential: expected a list of layers, received "
                                f"{type(layers).__name__}")
            for layer in layers:
                self.add(layer, rebuild=False)
            self._maybe_rebuild()

    _counts_own_node = False

    @staticmethod
    def _default_name():
        return "sequential"

    # ---- structure ---------------------------------------------------------------------
    @property
    def layers(self):
        """The added layers (the InputLayer is left out, as in Keras)."""
        return [l for l in self._layers if not isinstance(l, InputLayer)]

    @property
    def layers_with_input(self):
        """The InputLayer (when the model has one) and then the added layers: what the
        config lists."""
        return list(self._layers)

    def _sublayers(self):
        return self.layers

    def add(self, layer, rebuild=True):
        """Append a layer (or an Input tensor / InputLayer, as the first element)."""
        where = f"Sequential.add ('{self.name}')"
        if isinstance(layer, KerasTensor):
            origin = layer._keras_history[0] if layer._keras_history else None
            if not isinstance(origin, InputLayer):
                raise ValueError(f"{where}: only an Input tensor (what pynn.Input returns) can "
                                 f"be added to a Sequential model, received {layer!r}")
            layer = origin
        if not isinstance(layer, Layer):
            raise ValueError(f"{where}: expected a pynn layer, received "
                             f"{type(layer).__name__} {layer!r:.80}")
        before = list(self._layers)
        if isinstance(layer, InputLayer):
            if self._layers:
                raise ValueError(f"{where}: an Input can only be the first element of a "
                                 "Sequential model")
        elif not self._layers and layer._input_shape_arg is not None:
            self._layers.append(InputLayer(shape=layer._input_shape_arg))
        if any(layer is l or layer.name == l.name for l in self._layers):
            self._layers = before
            raise ValueError(f"{where}: all layers added to a Sequential model should have "
                             f"unique names; '{layer.name}' is already in the model")
        self._layers.append(layer)
        if rebuild:
            try:
                self._maybe_rebuild()
            except Exception:
                # a layer that cannot take the model's output is refused: the model stays
                self._layers = before
                self._maybe_rebuild()
                raise

    def pop(self, rebuild=True):
        """Remove the last layer; returns it."""
        if not self.layers:
            raise ValueError(f"Sequential.pop: model '{self.name}' has no layers to remove")
        layer = self._layers.pop()
        if rebuild:
            self._maybe_rebuild()
        return layer

    def _maybe_rebuild(self):
        self._graph_ready = False
        self.built = False
        if self._layers and isinstance(self._layers[0], InputLayer) and len(self._layers) > 1:
            self._build_graph(self._layers[0]._tensor)

    def _build_graph(self, input_tensor):
        x = input_tensor
        for layer in self._layers:
            if isinstance(layer, InputLayer):
                continue
            x = layer(x)
        self._set_graph(input_tensor, x)

    def build(self, input_shape=None):
        """Create every layer's weights for `input_shape` ((None, *features), as Keras)."""
        if input_shape is None:
            if self._layers and isinstance(self._layers[0], InputLayer):
                input_shape = (None,) + self._layers[0].shape
            else:
                raise ValueError(f"Sequential.build: the input shape of model '{self.name}' is "
                                 "unknown; pass input_shape or start the model with "
                                 "pynn.Input(shape)")
        if not self.layers:
            raise ValueError(f"Sequential model '{self.name}' cannot be built because it has "
                             "no layers. Call `model.add(layer)`.")
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2:
            raise ValueError(f"Sequential.build: expected input_shape with the batch axis, "
                             f"e.g. (None, 784), received {input_shape!r}")
        shape = tuple(input_shape[1:])
        if self._graph_ready and tuple(self._inputs[0].shape[1:]) == shape:
            return
        inp = InputLayer(shape=shape)
        had_input = self._layers and isinstance(self._layers[0], InputLayer)
        old = list(self._layers)
        self._layers = [inp] + (self._layers[1:] if had_input else self._layers)
        try:
            self._maybe_rebuild()
        except Exception:
            self._layers = old
            self._maybe_rebuild()
            raise

    def ensure_graph(self, x, where):
        """Build from the first data seen, like Keras's deferred build."""
        if self._graph_ready:
            return
        if not self.layers:
            raise ValueError(f"{where}: model '{self.name}' has no layers")
        if x is None:
            self._require_graph("graph")
        from . import validation
        arr = validation.as_features(x if not isinstance(x, (list, tuple, dict)) else
                                     next(iter(x.values())) if isinstance(x, dict) else x[0],
                                     where)
        self.build((None,) + arr.shape[1:])

    # ---- a Sequential as a layer -------------------------------------------------------------
    def _input_shapes(self, flat):
        if not self._graph_ready:
            if len(flat) != 1:
                raise ValueError(f"Sequential '{self.name}' takes 1 input, received {len(flat)}")
            self.build(flat[0].shape)
        return super()._input_shapes(flat)

    def _call_arrays(self, x, training):
        self.ensure_graph(x, f"Sequential '{self.name}' called on arrays")
        return super()._call_arrays(x, training)

    # ---- configuration -------------------------------------------------------------------------
    def get_config(self):
        """{"name", "trainable", "layers", "build_input_shape"}, as Keras 3 writes it."""
        return model_config.sequential_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if not isinstance(config, dict):
            raise ValueError(f"{cls.__name__}.from_config: expected a dict, received "
                             f"{type(config).__name__}")
        return model_config.sequential_from_config(cls, config, f"{cls.__name__}.from_config")

    def __repr__(self):
        return f"<Sequential name={self.name}, built={self.built}>"
