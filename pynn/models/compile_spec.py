"""What `compile(loss=..., loss_weights=..., metrics=...)` means for each model output, as
Keras 3 resolves it (keras/src/trainers/compile_utils.py):

  loss          one loss for every output, a list (one per output, None allowed) or a dict
                by output name (missing outputs get none);
  loss_weights  None, a list or a dict likewise (default 1.0);
  metrics       a list of names for a single output; for several outputs a list with one
                entry (a name, a list of names or None) per output, or a dict by output
                name.
  weighted_metrics  the same forms as metrics; these read the sample weights (weights 1
                when none are given), plain metrics never do (Keras 3).
Log keys: "loss" is the weighted sum of the output losses; with more than one loss, each
output's unweighted loss is "<output>_loss"; with more than one output, metrics are
"<output>_<metric>".  Keras logs the metrics (every output's), then the weighted metrics,
before the per-output losses; a repeated metric key gets "_1", "_2", ..., and a weighted
metric whose key is taken is logged as "weighted_<name>" (with its output's prefix)
(keras/src/trainers/compile_utils.py, CompileMetrics.result).
"""
from .. import losses as losses_module
from .. import metrics as metrics_module
from ..checks import check_number


class OutputSpec:
    """The loss, its weight and the metrics of one model output."""

    def __init__(self, name, shape, loss, weight, loss_key, metrics):
        self.name, self.shape = name, shape
        self.loss, self.weight, self.loss_key, self.metrics = loss, weight, loss_key, metrics


class CompiledLosses:
    """Every output's OutputSpec, and the log keys in Keras's order."""

    def __init__(self, outputs):
        self.outputs = outputs

    @property
    def has_loss(self):
        return any(o.loss is not None for o in self.outputs)

    def log_keys(self):
        keys = ["loss"] + [m.key for o in self.outputs for m in o.metrics if not m.weighted]
        keys += [m.key for o in self.outputs for m in o.metrics if m.weighted]
        if sum(o.loss is not None for o in self.outputs) > 1:
            keys += [o.loss_key for o in self.outputs if o.loss is not None]
        return keys


def _per_output(value, names, what, where, allow_single):
    """`value` spread over the outputs: a list with one entry per output."""
    n = len(names)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"{where}: {what} names outputs {unknown} that the model does not "
                             f"have; its outputs are {names}")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)) and not allow_single:
        if len(value) != n:
            raise ValueError(f"{where}: expected {what} as a list with one entry per output "
                             f"({n}: {names}) or a dict by output name, received a list of "
                             f"{len(value)}")
        return list(value)
    if isinstance(value, (list, tuple)) and n > 1 and len(value) == n:
        return list(value)
    if isinstance(value, (list, tuple)) and n > 1:
        raise ValueError(f"{where}: the model has {n} outputs ({names}); expected {what} as a "
                         f"list with one entry per output or a dict by output name, received "
                         f"{value!r:.200}")
    return [value] * n


def resolve(output_names, output_shapes, loss, loss_weights, metrics, where,
            weighted_metrics=None):
    """The CompiledLosses of a model's outputs, or a ValueError/TypeError naming the
    argument."""
    n = len(output_names)
    if isinstance(loss, (list, tuple, dict)):
        per_loss = _per_output(loss, output_names, "loss", where, allow_single=False)
    else:
        per_loss = [loss] * n
    per_loss = [None if l is None else losses_module.get(l, where) for l in per_loss]
    for l, shape in zip(per_loss, output_shapes):
        if l is not None:
            l.check_output(tuple(shape), where)
    if loss_weights is None:
        weights = [1.0] * n
    elif isinstance(loss_weights, (int, float)) and not isinstance(loss_weights, bool):
        weights = [loss_weights] * n
    elif isinstance(loss_weights, (list, tuple, dict)):
        weights = _per_output(loss_weights, output_names, "loss_weights", where,
                              allow_single=False)
        weights = [1.0 if w is None else w for w in weights]
    else:
        raise ValueError(f"{where}: expected loss_weights as a float, a list or a dict, "
                         f"received {loss_weights!r}")
    weights = [check_number(w, "loss_weights", where, 0) for w in weights]

    per_metrics = _metrics_per_output(metrics, output_names, "metrics", where)
    per_weighted = _metrics_per_output(weighted_metrics, output_names, "weighted_metrics", where)

    for name, shape, l, names in zip(output_names, output_shapes, per_loss, per_metrics):
        ignore = getattr(l, "ignore_class", None)
        if names and ignore is not None and not 0 <= ignore < shape[-1]:
            # the metric kernels read the same labels and accept only classes
            raise ValueError(f"{where}: output {name!r} has metrics {names!r} and a loss with "
                             f"ignore_class={ignore} outside its classes [0, {shape[-1] - 1}]; "
                             "pynn's metrics read labels in range only: use an ignore_class "
                             "in range or compile without metrics for this output")
    several_losses = sum(l is not None for l in per_loss) > 1
    seen = {}
    plain = []
    for name, shape, loss_obj, names in zip(output_names, output_shapes, per_loss, per_metrics):
        compiled_metrics = []
        for ident in names:
            label = metrics_module.object_name(ident)        # a metric object: its name
            key = label if n == 1 else f"{name}_{label}"
            if key in seen:
                seen[key] += 1
                key = f"{key}_{seen[key] - 1}"
            else:
                seen[key] = 1
            compiled_metrics.append(metrics_module.spec_for(ident, key, loss_obj, shape, where))
        plain.append(compiled_metrics)
    for i, (name, shape, loss_obj, names) in enumerate(zip(output_names, output_shapes, per_loss,
                                                           per_weighted)):
        for ident in names:
            label = metrics_module.object_name(ident)
            key = label if n == 1 else f"{name}_{label}"
            if key in seen:                                  # Keras: "weighted_<name>"
                key = f"weighted_{label}" if n == 1 else f"{name}_weighted_{label}"
                if key in seen:
                    seen[key] += 1
                    key = f"{key}_{seen[key] - 1}"
                else:
                    seen[key] = 1
            else:
                seen[key] = 1
            plain[i].append(metrics_module.spec_for(ident, key, loss_obj, shape,
                                                    f"{where} (weighted_metrics)", weighted=True))
    specs = []
    for name, shape, loss_obj, weight, compiled_metrics in zip(output_names, output_shapes,
                                                               per_loss, weights, plain):
        loss_key = f"{name}_loss" if several_losses else "loss"
        specs.append(OutputSpec(name, shape, loss_obj, weight, loss_key, compiled_metrics))
    return CompiledLosses(specs)


def _metrics_per_output(metrics, output_names, arg, where):
    """compile's `metrics` (or `weighted_metrics`) as one list per output."""
    n = len(output_names)
    if metrics is None:
        return [[] for _ in range(n)]
    if n == 1:
        if isinstance(metrics, dict):
            return [_as_list(_per_output(metrics, output_names, arg, where,
                                         allow_single=False)[0])]
        return [_as_list(metrics)]
    if isinstance(metrics, str):
        raise ValueError(f"{where}: the model has {n} outputs ({output_names}); expected "
                         f"{arg} as a list with one entry per output or a dict by output "
                         f"name, received {metrics!r}")
    return [_as_list(m) for m in _per_output(metrics, output_names, arg, where,
                                             allow_single=False)]


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (str, metrics_module.Metric)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"expected metric names (strings) or pynn.metrics objects, received "
                    f"{type(value).__name__} {value!r:.80}")
