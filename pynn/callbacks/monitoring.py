"""Seeing inside a network while it trains: ActivationMonitor.

Each epoch it runs the model once, in inference mode, on a fixed sample of inputs
(`model.activations`, one forward pass in a single batch) and records for every layer
that applies an activation:

  <layer>/active_fraction     the fraction of (sample, unit) pairs where the unit fired
  <layer>/dead_units          units that fired on no input of the sample
  <layer>/saturated_fraction  sigmoid/tanh layers only: the fraction of units that sit in
                              the flat part of their curve (sigmoid < 0.01 or > 0.99,
                              |tanh| > 0.99) on more than half of the sample
and for every layer with weights:
  <layer>/update_ratio        |W_end - W_start| / |W_start| over the epoch (all the layer's
                              weights together, Frobenius norms): how much the epoch moved it

"Fired" depends on the activation: output > 0 for relu, leaky_relu, gelu and tanh (the
side of zero a unit is on), > 0.5 for sigmoid, > 1/units for softmax (more than an
even share).  Layers without an activation of their own (linear Dense, Flatten, pooling)
get no activity entries.  For a convolution the units are its channels, counted over
every position.

The numbers go into the epoch's logs, so they land in the History beside the loss; the
per-unit firing rates (NumPy arrays, one per epoch) are kept in `monitor.unit_activity`.
It uses only epoch hooks, so `fit` keeps its fused C path.  Its cost is one forward pass
over the sample per epoch, two copies of the weights and a few NumPy reductions: about
0.2 ms per epoch for the digits MLP (64-128-64-10) with a 256-image sample, which is ~1%
of an epoch over 11,500 images but ~8% of an epoch over the 1,293 training images of the
bundled digits (2.3 ms); a smaller sample costs less (tests/test_inside.py measures it).
"""
import numpy as np

from .base import Callback

# activation name -> the test for "this unit fired"
_FIRED = {
    "relu": lambda y, units: y > 0,
    "leaky_relu": lambda y, units: y > 0,
    "gelu": lambda y, units: y > 0,
    "tanh": lambda y, units: y > 0,
    "sigmoid": lambda y, units: y > 0.5,
    "softmax": lambda y, units: y > 1.0 / units,
}
_SATURATED = {
    "sigmoid": lambda y: (y < 0.01) | (y > 0.99),
    "tanh": lambda y: np.abs(y) > 0.99,
}


def layer_activation(layer):
    """The activation a layer applies last (a name), or None."""
    act = getattr(layer, "activation", None)
    return act if isinstance(act, str) else None


def unit_firing(layer, output):
    """How often each unit of `layer` fired in `output` (the layer's output for a batch):
    (float32 count per unit (units,), rows), or None when the layer's activation has no notion of
    firing.  Rows are samples (times positions, for a convolution)."""
    act = layer_activation(layer)
    if act not in _FIRED:
        return None
    units = output.shape[-1]
    rows = output.reshape(-1, units)
    fired = _FIRED[act](rows, units).astype(np.float32)
    # a vector-matrix product counts per unit faster than a boolean sum over axis 0
    # (exact: float32 holds integers up to 2**24)
    return np.ones(rows.shape[0], np.float32) @ fired, rows.shape[0]


def _sum_squares(a):
    a = a.reshape(-1)
    return float(np.dot(a, a))


class ActivationMonitor(Callback):
    """Records per layer, each epoch, what its units do on `x_sample` (see the module
    docstring for the keys).  `x_sample`: inputs of the model's input shape; a few hundred
    are plenty (the cost is one forward pass over them per epoch).

        monitor = pynn.callbacks.ActivationMonitor(x_train[:256])
        history = model.fit(x, y, epochs=10, callbacks=[monitor])
        history.history["dense/dead_units"]      # one number per epoch
        monitor.unit_activity["dense"][-1]       # each unit's firing rate, last epoch
    """

    def __init__(self, x_sample):
        super().__init__()
        if x_sample is None:
            raise ValueError("ActivationMonitor: expected x_sample, a batch of inputs, received None")
        self.x_sample = x_sample
        self.unit_activity = {}
        self._before = None

    def on_train_begin(self, logs=None):
        # checked against the model once, so a bad sample fails before any training
        from ..models import validation
        model = self.model
        validation.model_inputs(model, self.x_sample, "ActivationMonitor", "x_sample")
        self._layers = model.activation_layers()
        model.activations(self.x_sample)
        self.unit_activity = {}
        # Where each layer's weights start in one flat copy of all of them: the update
        # sizes of every layer then take a handful of NumPy calls per epoch.
        sizes = [sum(v.size for v in layer.weights) for layer in self._layers]
        self._starts = np.cumsum([0] + sizes[:-1])
        self._has_weights = [n > 0 for n in sizes]
        self._firing = [layer_activation(layer) in _FIRED for layer in self._layers]

    def _flat_weights(self):
        # one copy: numpy() of each weight, concatenated
        arrays = [v.numpy().reshape(-1) for layer in self._layers for v in layer.weights]
        return np.concatenate(arrays) if arrays else np.zeros(0, np.float32)

    def on_epoch_begin(self, epoch, logs=None):
        self._before = self._flat_weights()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        layers = self._layers
        before, self._before = self._before, None       # squared in place below
        if before is not None and before.size:
            diff = self._flat_weights()
            np.subtract(diff, before, out=diff)
            np.multiply(diff, diff, out=diff)
            # squared norms per layer (layers without weights read a neighbour's; skipped below)
            moved = np.add.reduceat(diff, self._starts)
            np.multiply(before, before, out=before)
            size = np.add.reduceat(before, self._starts)
            for layer, has, m2, s2 in zip(layers, self._has_weights, moved, size):
                if has:
                    logs[f"{layer.name}/update_ratio"] = float(np.sqrt(m2 / s2) if s2 > 0 else np.sqrt(m2))
        if not any(self._firing):
            return
        outputs = self.model.activations(self.x_sample)
        for layer, output, firing in zip(layers, outputs, self._firing):
            if not firing:
                continue
            counts, rows = unit_firing(layer, output)
            logs[f"{layer.name}/active_fraction"] = float(counts.sum()) / counts.size / rows
            logs[f"{layer.name}/dead_units"] = int(np.count_nonzero(counts == 0))
            self.unit_activity.setdefault(layer.name, []).append(counts / rows)
            act = layer_activation(layer)
            if act in _SATURATED:
                flat = np.sum(_SATURATED[act](output.reshape(rows, -1)), axis=0, dtype=np.int64)
                logs[f"{layer.name}/saturated_fraction"] = float(np.mean(flat > rows / 2))
