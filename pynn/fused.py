"""The fused training path: a Sequential model of Dense layers trained by csrc/mlp.c.

`trainer(model, batch, max_steps)` describes the model to the C core once (layer sizes,
activations, loss, metrics, optimizer) and keeps the workspace for that batch size;
`run(...)` then trains any number of steps in one call.  The model keeps its weights,
gradients and optimizer state in the same flat arrays either way, so the fused and the
per-layer path can take turns.  Models this path cannot describe (other layers, other
backends, subclassed optimizers) return None and train layer by layer.
"""
from . import _core
from . import metrics as metrics_module
from . import optimizers
from .backend.cpu import ACTIVATION_IDS, LOSS_IDS
from .layers.core import Dense

_METRIC_IDS = {
    metrics_module._binary_accuracy: _core.METRIC_BINARY_ACCURACY,
    metrics_module._categorical_accuracy: _core.METRIC_CATEGORICAL_ACCURACY,
    metrics_module._sparse_categorical_accuracy: _core.METRIC_SPARSE_CATEGORICAL_ACCURACY,
    metrics_module._mean_absolute_error: _core.METRIC_MAE,
}
_OPTIMIZER_IDS = {optimizers.SGD: _core.OPT_SGD, optimizers.Adam: _core.OPT_ADAM,
                  optimizers.RMSprop: _core.OPT_RMSPROP}


def _description(model):
    """The network as csrc/mlp.c sees it (a hashable tuple), or None."""
    layers = model._layers
    if model._backend is None or model._backend.name != "cpu" or not model.use_fused_path:
        return None
    if not layers or len(layers) > _core.MLP_MAX_LAYERS or any(type(l) is not Dense for l in layers):
        return None
    if type(model.optimizer) not in _OPTIMIZER_IDS or len(model._metrics) > _core.MLP_MAX_METRICS:
        return None
    fused = model._fused_logits()
    acts = [ACTIVATION_IDS[l.activation] for l in layers]
    predict_act = _core.ACT_LINEAR
    if fused:
        acts[-1] = _core.ACT_LINEAR
        predict_act = ACTIVATION_IDS[layers[-1].activation]
    loss = model.loss
    return (
        tuple([layers[0].input_shape[-1]] + [l.units for l in layers]),
        tuple(acts), tuple(float(l.alpha) for l in layers), tuple(l.use_bias for l in layers),
        _core.LOSS_SPARSE_CCE if loss.sparse else LOSS_IDS[loss.kind],
        bool(fused or loss.from_logits), predict_act,
        tuple(_METRIC_IDS[m._fn] for m in model._metrics),
        _OPTIMIZER_IDS[type(model.optimizer)], bool(getattr(model.optimizer, "nesterov", False)),
    )


def trainer(model, batch, max_steps=1):
    """An MLPTrainer for `model` and batches of `batch` rows (cached), or None."""
    # The description only changes when the model is recompiled, rebuilt or switched.
    state = (model._backend, model.optimizer, model.loss, model._metrics, model._params,
             model.use_fused_path)
    cached = model.__dict__.get("_fused_description")
    if cached is None or any(a is not b for a, b in zip(cached[0], state)):
        desc = None
        if all(len(l.input_shape) == 1 for l in model._layers):
            desc = _description(model)
        cached = model._fused_description = (state, desc)
    desc = cached[1]
    if desc is None:
        return None
    key = (desc, batch, max_steps)
    t = model._trainers.get(key)
    if t is None:
        if len(model._trainers) > 8:
            model._trainers.clear()
        t = model._trainers[key] = _core.MLPTrainer(
            *desc[:2], desc[2], desc[3], desc[4], desc[5], desc[6], list(desc[7]), desc[8], desc[9],
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, batch, max_steps)
    return t


def run(model, t, x, targets, order, n_order, first_row, n_steps, check_inputs=False):
    """Train n_steps steps on (x, targets) through trainer t; returns the step losses and
    the per-step metric sums (NumPy views valid until the next call).  check_inputs: let C
    refuse non-finite data or bad labels (KernelInputError) for callers that skipped
    those checks."""
    opt = model.optimizer
    t.set_hyperparameters(opt.learning_rate, getattr(opt, "momentum", 0.0), getattr(opt, "beta_1", 0.0),
                          getattr(opt, "beta_2", 0.0), getattr(opt, "rho", 0.0),
                          getattr(opt, "epsilon", 0.0))
    slots = model._optimizer_slots()
    if isinstance(opt, optimizers.Adam):
        s1, s2 = slots["m"], slots["v"]
    elif isinstance(opt, optimizers.RMSprop):
        s1, s2 = slots["velocity"], slots.get("momentum")
    else:
        s1, s2 = slots.get("momentum"), None
    t.train(model._params, model._grads, s1, s2, x, targets, order, n_order, first_row, n_steps,
            opt.iterations, check_inputs)
    opt.iterations += n_steps
    return t.step_losses[:n_steps], t.step_metrics[:n_steps, :len(model._metrics)]
