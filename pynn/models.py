"""Sequential: Keras's model API over pynn's backends.

A training step is: forward through the layers (`Layer.forward`), the loss and its
gradient (one backend kernel), backward through the layers in reverse
(`Layer.backward`), and the optimizer's update of every weight.  When the last
activation is softmax (or sigmoid) and the loss is a cross-entropy, the last layer
emits logits and the loss takes them (the fused, numerically stable form).

Every public method checks its input completely before it changes anything, so a
refused call leaves the model as it was.
"""
import math
import time

import numpy as np

from . import backend as backends
from . import _core, fused
from . import callbacks as callbacks_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .layers.base import Layer, _numeric_array, unique_name
from .layers.core import InputLayer


class NotCompiledError(RuntimeError, ValueError):
    """A model method that needs `compile()` was called first (a RuntimeError as in
    Keras, and a ValueError like every other refused call in pynn)."""


# ---- input checking -------------------------------------------------------------------

_FLOAT32_MAX = float(np.finfo(np.float32).max)

def _as_features(x, where, what="x"):
    """User data -> float32 C-contiguous array with a batch axis; refuses what it cannot
    convert exactly (strings, objects, complex), empty data and non-finite values."""
    if x is None:
        raise ValueError(f"{where}: expected {what} as an array of numbers, received None")
    arr = _numeric_array(x, f"{where}: {what}")
    if arr.ndim == 0:
        raise ValueError(f"{where}: expected {what} with a batch axis, received a scalar")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{where}: expected at least one sample in {what}, received shape {arr.shape}")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: {what} contains NaN or infinite values; expected finite numbers")
        if arr.dtype.itemsize > 4 and np.abs(arr).max() > _FLOAT32_MAX:
            raise ValueError(f"{where}: {what} holds values beyond the float32 range (|x| > 3.4e38)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_targets(y, where):
    if y is None:
        raise ValueError(f"{where}: expected targets y, received None")
    arr = _numeric_array(y, f"{where}: y")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"{where}: expected at least one target in y, received shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{where}: y contains NaN or infinite values; expected finite numbers")
    return arr


def _check_int(value, name, where, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: expected {name} to be an integer >= {minimum}, received "
                         f"{name}={value!r}")
    return int(value)


def _check_verbose(verbose, where):
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"{where}: expected verbose to be 'auto', 0, 1 or 2, received {verbose!r}")
    return int(verbose)


class Sequential:
    """A linear stack of layers, with Keras's `compile` / `fit` / `evaluate` / `predict`."""

    def __init__(self, layers=None, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Sequential: expected name to be a non-empty string, received {name!r}")
        self.name = name or unique_name("sequential")
        self._layers = []
        self._input_shape = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self._metric_names = None
        self._metrics = None
        self._backend = None
        self._params = self._grads = self._non_trainable = None
        self._trainers = {}
        self.use_fused_path = True   # False: always train layer by layer (for checking)
        self.compiled = False
        self.history = None
        self.stop_training = False
        if layers is not None:
            if not isinstance(layers, (list, tuple)):
                raise TypeError(f"Sequential: expected a list of layers, received {type(layers).__name__}")
            for layer in layers:
                self.add(layer)

    # ---- structure ---------------------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        if isinstance(layer, InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError("Sequential.add: an Input can only be the first element of a "
                                 "Sequential model")
            self._input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a pynn layer, received {type(layer).__name__} "
                            f"{layer!r}")
        if any(layer is l or layer.name == l.name for l in self._layers):
            raise ValueError(f"Sequential.add: all layers must have unique names; '{layer.name}' "
                             "is already in the model")
        if layer.built and self.built and layer.input_shape != self._output_shape():
            raise ValueError(f"Sequential.add: layer '{layer.name}' was built for input shape "
                             f"{layer.input_shape}, the model's output shape is {self._output_shape()}")
        first = not self._layers and self._input_shape is None
        self._layers.append(layer)
        try:
            if first and layer._input_shape_arg is not None:
                self._input_shape = layer._input_shape_arg
            if self.built:
                if not layer.built:
                    layer.build(self._output_shape(upto=-1))
                if self._backend is not None:
                    self._bind(self._backend)
            elif self._input_shape is not None:
                self.build((None,) + self._input_shape)
        except Exception:
            # a layer that cannot take the model's output is refused: the model stays as it was
            self._layers.pop()
            if first:
                self._input_shape = None
            raise

    def _output_shape(self, upto=None):
        layers = self._layers if upto is None else self._layers[:upto]
        shape = self._input_shape
        for layer in layers:
            shape = layer.output_shape if layer.built else layer.compute_output_shape(shape)
        return shape

    def _infer_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            if layer.built and layer.input_shape != shape:
                raise ValueError(
                    f"Input of layer '{layer.name}' is incompatible with the layer: expected shape "
                    f"(None, {', '.join(map(str, layer.input_shape))}), received (None, "
                    f"{', '.join(map(str, shape))})")
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def build(self, input_shape=None):
        """Create every layer's weights for `input_shape` ((None, *features), as Keras)."""
        if input_shape is None:
            if self._input_shape is None:
                raise ValueError("Sequential.build: the input shape is unknown; pass input_shape "
                                 "or start the model with pynn.layers.Input(shape)")
            input_shape = (None,) + self._input_shape
        features = tuple(input_shape[1:])
        self._infer_output_shape(features)     # raises before anything is created
        self._input_shape = features
        shape = features
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.output_shape
        self.built = True
        if self._backend is not None:
            self._bind(self._backend)

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None,) + self._input_shape

    @property
    def output_shape(self):
        return None if not self.built else (None,) + tuple(self._output_shape())

    # ---- weights -------------------------------------------------------------------------
    def get_weights(self):
        """All weights, layer by layer (Dense: kernel (in, out), then bias), as NumPy copies."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights):
        if not self.built:
            raise ValueError(f"Sequential.set_weights: model '{self.name}' is not built yet; give it "
                             "an input shape (Input(shape) or build()) first")
        if not isinstance(weights, (list, tuple)):
            raise TypeError("Sequential.set_weights: expected a list of arrays, received "
                            f"{type(weights).__name__}")
        counts = [len(layer.weights) for layer in self._layers]
        if len(weights) != sum(counts):
            raise ValueError(f"Sequential.set_weights: expected {sum(counts)} arrays for model "
                             f"'{self.name}', received {len(weights)}")
        # Check every layer's arrays before changing any layer.
        for layer, chunk in self._chunks(weights, counts):
            for name, cur, w in zip(layer._weight_names, layer.weights, chunk):
                w = _numeric_array(w, f"Sequential.set_weights: layer '{layer.name}' {name}")
                if w.shape != tuple(cur.shape):
                    raise ValueError(f"Sequential.set_weights: layer '{layer.name}' expected {name} of "
                                     f"shape {tuple(cur.shape)}, received shape {w.shape}")
                if not np.all(np.isfinite(w)):
                    raise ValueError(f"Sequential.set_weights: layer '{layer.name}' {name} contains "
                                     "NaN or infinite values")
        for layer, chunk in self._chunks(weights, counts):
            layer.set_weights(list(chunk))

    def _chunks(self, weights, counts):
        """(layer, that layer's slice of `weights`) in model order."""
        start = 0
        for layer, c in zip(self._layers, counts):
            yield layer, weights[start:start + c]
            start += c

    def count_params(self):
        return sum(layer.count_params() for layer in self._layers)

    def summary(self, print_fn=None):
        print_fn = print_fn or print
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self._layers:
            shape = "?" if not layer.built else "(None, " + ", ".join(map(str, layer.output_shape)) + ")"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape,
                         f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        rule = "=" * sum(widths)
        print_fn(f'Model: "{self.name}"')
        print_fn(rule)
        print_fn(rows[0][0].ljust(widths[0]) + rows[0][1].ljust(widths[1]) + rows[0][2].rjust(widths[2]))
        print_fn(rule)
        for r in rows[1:]:
            print_fn(r[0].ljust(widths[0]) + r[1].ljust(widths[1]) + r[2].rjust(widths[2]))
        print_fn(rule)
        total = self.count_params()
        frozen = sum(layer.count_params(trainable=False) for layer in self._layers)
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {total - frozen:,}")
        print_fn(f"Non-trainable params: {frozen:,}")

    # ---- compile ---------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, backend=None):
        """Configure training: optimizer, loss, metrics and the backend that computes."""
        where = f"Sequential.compile ('{self.name}')"
        opt = optimizers_module.get(optimizer, where)
        loss_obj = None if loss is None else losses_module.get(loss, where)
        if metrics is not None:
            # names are checked now; "accuracy" is resolved once the output width is known
            names = [metrics] if isinstance(metrics, str) else metrics
            if not isinstance(names, (list, tuple)):
                raise TypeError(f"{where}: expected metrics as a list of names, received "
                                f"{type(metrics).__name__} {metrics!r}")
            for m in names:
                if not isinstance(m, str) or m.lower() not in metrics_module.NAMES:
                    raise ValueError(f"{where}: unknown metric {m!r}; expected one of "
                                     f"{', '.join(metrics_module.NAMES)}")
            if loss_obj is not None:
                metrics_module.resolve(names, loss_obj, 2, where)
            metrics = list(names)
        be = backends.get(backend, where)
        # All arguments accepted: configure the model.
        self.optimizer, self.loss, self._metric_names = opt, loss_obj, metrics
        self._metrics = None
        self._bind(be)
        self.compiled = True

    def _bind(self, be):
        """Put every trainable weight into one flat array on backend `be` (layer by layer,
        in get_weights order), with a flat gradient array beside it, and the
        non-trainable weights (BatchNormalization's moving statistics) into a flat array
        of their own that the optimizer never sees; give each layer views into them.
        The optimizer's state follows the trainable layout and starts anew."""
        self._backend = be
        self._trainers = {}
        if not self.built:
            return
        host = [[np.asarray(w, dtype=np.float32) for w in layer.get_weights()] for layer in self._layers]
        flags = [layer.weight_trainable for layer in self._layers]

        def flat_of(trainable):
            values = [w.reshape(-1) for ws, fs in zip(host, flags) for w, f in zip(ws, fs)
                      if f == trainable]
            return be.from_host(np.concatenate(values) if values else np.zeros(0, np.float32))

        flat, frozen = flat_of(True), flat_of(False)
        grads = be.zeros((int(flat.shape[0]),))
        start = frozen_start = 0
        for layer, ws, fs in zip(self._layers, host, flags):
            views, gviews = [], []
            for w, trainable in zip(ws, fs):
                if trainable:
                    views.append(be.view(flat, start, w.shape))
                    gviews.append(be.view(grads, start, w.shape))
                    start += w.size
                else:
                    views.append(be.view(frozen, frozen_start, w.shape))
                    gviews.append(None)
                    frozen_start += w.size
            layer.bind(be, views, gviews)
        self._params, self._grads, self._non_trainable = flat, grads, frozen
        if self.optimizer is not None:
            self.optimizer._slots = None

    def _require_backend(self):
        if self._backend is None:
            self._bind(backends.get(None))
        return self._backend

    def _require_compiled(self, where):
        if not self.compiled:
            raise NotCompiledError(f"{where}: you must call compile() before using model "
                                   f"'{self.name}' to train or evaluate")
        if self.loss is None:
            raise ValueError(f"{where}: model '{self.name}' was compiled without a loss; "
                             "pass loss= to compile()")

    # ---- data checks -----------------------------------------------------------------------
    def _check_x(self, x, where, what="x"):
        if not self._layers:
            raise ValueError(f"{where}: model '{self.name}' has no layers")
        x = _as_features(x, where, what)
        features = tuple(x.shape[1:])
        if self._input_shape is not None and features != self._input_shape:
            first = self._layers[0]
            raise ValueError(
                f"{where}: input of layer '{first.name}' is incompatible with the layer: expected "
                f"{what} of shape (None, {', '.join(map(str, self._input_shape))}), received "
                f"{what} with shape {x.shape}")
        out_shape = self._infer_output_shape(features)
        return x, out_shape

    def _check_xy(self, x, y, where, names=("x", "y")):
        x, out_shape = self._check_x(x, where, names[0])
        y = _as_targets(y, where)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{where}: {names[0]} and {names[1]} must have the same number of "
                             f"samples, received {x.shape[0]} and {y.shape[0]}")
        if len(out_shape) != 1:
            raise ValueError(f"{where}: the model's output shape (None, {out_shape}) is not "
                             "(None, units); add a Flatten or Dense layer at the end")
        targets = self.loss.prepare_targets(y, out_shape[0], where)
        return x, targets

    def _clean_batch(self, x, y):
        """True when a training step needs no conversion of its data: a compiled, built
        model, x a float32 C-contiguous batch of the input's shape, and targets already in
        the loss's form (int64 labels, or float32 rows of the output's width).  The values
        (finite numbers, labels in range) are then checked by the fused C step itself,
        before it changes anything; whatever it refuses, or this does not accept, goes
        through the general checks (_check_xy) and their error messages.  So a training
        step of a small model is not dominated by input checking."""
        if not (self.compiled and self.built and self._metrics is not None and self.loss is not None
                and type(x) is np.ndarray and type(y) is np.ndarray):
            return False
        out = self._layers[-1].output_shape
        if x.dtype != np.float32 or x.ndim != 2 or not x.flags.c_contiguous or len(out) != 1 \
                or x.shape[1:] != self._input_shape or not 0 < x.shape[0] == y.shape[0] \
                or not y.flags.c_contiguous:
            return False
        if self.loss.sparse:
            return y.dtype == np.int64 and y.ndim == 1
        return y.dtype == np.float32 and y.shape == (x.shape[0], out[0])

    def _ensure_built(self, x):
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))
        self._require_backend()
        if self._metrics is None and self.loss is not None:
            self._metrics = metrics_module.resolve(self._metric_names, self.loss,
                                                   self._output_shape()[-1])

    # ---- the computation ---------------------------------------------------------------------
    def _fused_logits(self):
        """True when the last activation and the loss combine into the logits form."""
        if self.loss is None or self.loss.from_logits or not self._layers:
            return False
        act = self._layers[-1].output_activation
        return (act == "softmax" and self.loss.kind in ("cce", "scce")) or \
               (act == "sigmoid" and self.loss.kind == "bce")

    def _forward(self, x, training, logits):
        be = self._backend
        out = x
        for layer in self._layers[:-1]:
            out = layer.forward(be, out, training)
        return self._layers[-1].forward(be, out, training, logits=logits)

    def _loss_and_outputs(self, xb, tb, training):
        """Forward + loss on one batch; returns (loss, backend output, grad buffer or None,
        probabilities on the host for the metrics, or None)."""
        be = self._backend
        fused = self._fused_logits()
        x = be.from_host(xb)
        t = be.from_host(tb)
        out = self._forward(x, training, logits=fused)
        grad = self._grad_buffer(out.shape) if training else None
        value = be.loss(self.loss.kind, out, t, fused or self.loss.from_logits, grad)
        probs = None
        if self._metrics:
            if fused:
                act_out = self._grad_buffer(out.shape, tag="metric_probs")
                be.activation_forward(out, self._layers[-1].output_activation, 0.0, act_out)
                probs = be.to_host(act_out)
            else:
                probs = be.to_host(out)
        return value, out, grad, probs

    def _grad_buffer(self, shape, tag="loss_grad"):
        key = (tag, tuple(shape))
        cache = self.__dict__.setdefault("_buffers", {})
        if key not in cache:
            if len(cache) > 16:
                cache.clear()
            cache[key] = self._backend.empty(shape)
        return cache[key]

    def _train_step(self, xb, tb):
        be = self._backend
        value, out, grad, probs = self._loss_and_outputs(xb, tb, training=True)
        g = grad
        last = len(self._layers) - 1
        for i in range(last, -1, -1):
            g = self._layers[i].backward(be, g, need_dx=i > 0)
        self._optimizer_slots()
        self.optimizer.apply(be, [self._params], [self._grads])
        return value, probs

    def _optimizer_slots(self):
        if not self.optimizer.built:
            self.optimizer.build(self._backend, [self._params])
        return self.optimizer._slots[0]

    def _metric_sums(self, tb, probs):
        return [float(np.sum(m.per_sample(tb, probs))) for m in self._metrics]

    # ---- training ------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True):
        where = f"Sequential.fit ('{self.name}')"
        self._require_compiled(where)
        batch_size = 32 if batch_size is None else _check_int(batch_size, "batch_size", where, 1)
        epochs = _check_int(epochs, "epochs", where, 0)
        verbose = _check_verbose(verbose, where)
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"{where}: expected validation_split in [0, 1), received {validation_split!r}")
        callbacks = [] if callbacks is None else list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, callbacks_module.Callback):
                raise TypeError(f"{where}: expected pynn.callbacks.Callback instances, received "
                                f"{type(cb).__name__}")
        x, t = self._check_xy(x, y, where)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(f"{where}: expected validation_data as a tuple (x_val, y_val)")
            val = self._check_xy(validation_data[0], validation_data[1], where, ("x_val", "y_val"))
        elif validation_split > 0:
            # Keras takes the validation samples from the end, before any shuffling.
            split = int(x.shape[0] * (1.0 - validation_split))
            if split < 1 or split >= x.shape[0]:
                raise ValueError(f"{where}: validation_split={validation_split} leaves "
                                 f"{split} training and {x.shape[0] - split} validation samples "
                                 f"out of {x.shape[0]}; both must be at least one")
            val = (x[split:], t[split:])
            x, t = x[:split], t[:split]
        # Everything is checked: from here on the model changes.
        self._ensure_built(x)
        from .utils import rng
        n = x.shape[0]
        steps = math.ceil(n / batch_size)
        history = callbacks_module.History()
        progbar = callbacks_module.ProgbarLogger(verbose) if verbose else None
        cbs = ([progbar] if progbar else []) + callbacks + [history]
        cb_list = callbacks_module.CallbackList(
            cbs, self, {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        self.stop_training = False
        cb_list.on_train_begin()
        logs = None
        # One C call per epoch (or per stretch of it, to redraw a progress bar) when the
        # model is a stack of Dense layers and no callback needs each batch.
        trainer = None if cb_list.wants_batch_hooks else fused.trainer(self, batch_size, steps)
        for epoch in range(epochs):
            cb_list.on_epoch_begin(epoch)
            order = rng().permutation(n) if shuffle else None
            loss_sum, metric_sums, seen = 0.0, [0.0] * len(self._metrics), 0
            if trainer is not None:
                stretch = max(1, steps // 20) if progbar is not None and progbar.redraws else steps
                for s0 in range(0, steps, stretch):
                    s1 = min(steps, s0 + stretch)
                    losses, sums = fused.run(self, trainer, x, t, order, n, s0 * batch_size, s1 - s0)
                    for i in range(s1 - s0):
                        rows = min(batch_size, n - (s0 + i) * batch_size)
                        loss_sum += float(losses[i]) * rows
                        seen += rows
                        metric_sums = [a + float(b) for a, b in zip(metric_sums, sums[i])]
                    cb_list.on_train_batch_end(s1 - 1, self._logs(loss_sum, metric_sums, seen))
                    if self.stop_training:      # e.g. TerminateOnNaN: the rest of the epoch is skipped
                        break
            for step in range(0 if trainer is not None else steps):
                cb_list.on_train_batch_begin(step)
                lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                idx = slice(lo, hi) if order is None else order[lo:hi]
                xb, tb = x[idx], t[idx]
                value, probs = self._train_step(xb, tb)
                rows = hi - lo
                loss_sum += value * rows
                seen += rows
                if self._metrics:
                    metric_sums = [a + b for a, b in zip(metric_sums, self._metric_sums(tb, probs))]
                logs = self._logs(loss_sum, metric_sums, seen)
                cb_list.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            logs = self._logs(loss_sum, metric_sums, seen)
            if val is not None:
                val_logs = self._evaluate_arrays(val[0], val[1], batch_size)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cb_list.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb_list.on_train_end(logs)          # the last epoch's logs, as Keras passes them
        if trainer is not None:
            trainer.release()
        self.history = history
        return history

    def _logs(self, loss_sum, metric_sums, seen):
        logs = {"loss": loss_sum / max(seen, 1)}
        for m, s in zip(self._metrics, metric_sums):
            logs[m.name] = s / max(seen, 1)
        return logs

    def train_on_batch(self, x, y):
        """One training step on one batch; returns the loss (before the update), or
        [loss, *metrics] when metrics were compiled."""
        sums = None
        if self._clean_batch(x, y):
            trainer = fused.trainer(self, x.shape[0])
            if trainer is not None:
                try:
                    losses, step_sums = fused.run(self, trainer, x, y, None, x.shape[0], 0, 1,
                                                  check_inputs=True)
                    value, sums = float(losses[0]), [float(v) for v in step_sums[0]]
                except _core.KernelInputError:
                    pass        # NaN or a bad label, refused before any change: the checks below say where
        if sums is None:
            where = f"Sequential.train_on_batch ('{self.name}')"
            self._require_compiled(where)
            x, t = self._check_xy(x, y, where)
            self._ensure_built(x)
            trainer = fused.trainer(self, x.shape[0])
            if trainer is not None:
                losses, step_sums = fused.run(self, trainer, x, t, None, x.shape[0], 0, 1)
                value, sums = float(losses[0]), [float(v) for v in step_sums[0]]
            else:
                value, probs = self._train_step(x, t)
                sums = self._metric_sums(t, probs) if self._metrics else []
        if not self._metrics:
            return float(value)
        return [float(value)] + [s / x.shape[0] for s in sums]

    # ---- inference -------------------------------------------------------------------------------
    def _evaluate_arrays(self, x, t, batch_size, progbar=None):
        n = x.shape[0]
        loss_sum, sums = 0.0, [0.0] * len(self._metrics)
        steps = math.ceil(n / batch_size)
        for step in range(steps):
            lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
            value, _, _, probs = self._loss_and_outputs(x[lo:hi], t[lo:hi], training=False)
            loss_sum += value * (hi - lo)
            if self._metrics:
                sums = [a + b for a, b in zip(sums, self._metric_sums(t[lo:hi], probs))]
            if progbar is not None:
                progbar.update(step + 1, self._logs(loss_sum, sums, hi))
        logs = self._logs(loss_sum, sums, n)
        if progbar is not None:
            progbar.update(steps, logs, final=True)
        return logs

    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", return_dict=False):
        """Loss (and metrics) over (x, y): a float, a list [loss, *metrics], or a dict."""
        where = f"Sequential.evaluate ('{self.name}')"
        self._require_compiled(where)
        batch_size = 32 if batch_size is None else _check_int(batch_size, "batch_size", where, 1)
        verbose = _check_verbose(verbose, where)
        x, t = self._check_xy(x, y, where)
        self._ensure_built(x)
        bar = callbacks_module.Progbar(math.ceil(x.shape[0] / batch_size), verbose) if verbose else None
        logs = self._evaluate_arrays(x, t, batch_size, bar)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=32, verbose="auto"):
        """The model's outputs for x, as a float32 NumPy array (batched)."""
        where = f"Sequential.predict ('{self.name}')"
        batch_size = 32 if batch_size is None else _check_int(batch_size, "batch_size", where, 1)
        verbose = _check_verbose(verbose, where)
        x, out_shape = self._check_x(x, where)
        self._ensure_built(x)
        be = self._backend
        n = x.shape[0]
        result = np.empty((n,) + tuple(out_shape), dtype=np.float32)
        steps = math.ceil(n / batch_size)
        bar = callbacks_module.Progbar(steps, verbose) if verbose else None
        for step in range(steps):
            lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
            out = self._forward(be.from_host(x[lo:hi]), training=False, logits=False)
            result[lo:hi] = be.to_host(out)
            if bar is not None:
                bar.update(step + 1, final=step + 1 == steps)
        return result

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=max(1, len(x)), verbose=0)

    def __call__(self, x):
        return self.predict(x, batch_size=max(1, len(x)) if hasattr(x, "__len__") else 32, verbose=0)

    # ---- looking inside ----------------------------------------------------------------------------
    def activations(self, x):
        """Every layer's output for input `x`, in inference mode: a list of NumPy arrays, one
        per layer in order.  `x` is one sample (the model's input shape, e.g. (64,)) -- each
        array then has no batch axis -- or a batch (n, ...)."""
        where = f"Sequential.activations ('{self.name}')"
        single = self._input_shape is not None and np.shape(x) == self._input_shape
        if single:
            x = np.asarray(x)[None]
        x, _ = self._check_x(x, where)
        self._ensure_built(x)
        result = self._layer_outputs(x, copy=True)
        return [r[0] for r in result] if single else result

    def _layer_outputs(self, x, copy):
        """Each layer's inference output for a checked float32 batch x; with copy=False the
        arrays may be the layers' reused buffers (valid until the next forward pass)."""
        be = self._backend
        out, result = be.from_host(x), []
        for layer in self._layers:
            out = layer.forward(be, out, training=False)
            host = be.to_host(out)
            result.append(np.array(host, dtype=np.float32, copy=True) if copy else host)
        return result

    # ---- saving (the file format is described in pynn/saving.py) -------------------------------------
    def get_config(self):
        """The architecture as JSON-ready data; `Sequential.from_config` rebuilds it."""
        from . import saving
        return saving.model_config(self)

    @classmethod
    def from_config(cls, config):
        from . import saving
        return saving._rebuild({"model": config}, "Sequential.from_config")

    def save(self, filepath, overwrite=True):
        """Write the architecture, compile configuration, weights and optimizer state to one
        file (a zip of JSON and .npy, no pickle; atomic).  `pynn.load_model` reads it back."""
        from . import saving
        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        """Write only the weights (same container as `save`; atomic)."""
        from . import saving
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        """Set the weights from a file of `save_weights` or `save`; every shape is checked
        first, so a refused file leaves the model unchanged."""
        from . import saving
        saving.load_weights(self, filepath)


def load_model(filepath, compile=True, backend=None):
    """`pynn.load_model`: the model saved at `filepath` by `model.save` (see pynn/saving.py)."""
    from . import saving
    return saving.load_model(filepath, compile=compile, backend=backend)
