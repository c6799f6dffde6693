"""Input validation: user data in, checked float32 / int64 arrays out, or a ValueError /
TypeError that says what was expected, what was received and where.  Nothing here
changes a model, so a refused call leaves it as it was.

Structures follow Keras: a model with one input takes an array; with several, a list in
`model.inputs` order or a dict by input name.  Targets likewise, by output.
"""
import numpy as np

from ..arrays import finite_float32, numeric_array
from ..layers.base import shape_text

INT64_MAX = int(np.iinfo(np.int64).max)


def check_int(value, name, where, minimum, maximum=INT64_MAX):
    """An int (Python or NumPy, not bool) in [minimum, maximum], else a ValueError naming it.
    The default maximum is what an int64 holds: counts and sizes cross into C as int64_t."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: expected {name} to be an integer >= {minimum}, received "
                         f"{name}={value!r:.80}")
    if value > maximum:
        raise ValueError(f"{where}: expected {name} to be an integer between {minimum} and "
                         f"{maximum}, received {name}={value!r}")
    return int(value)


def check_batch_size(batch_size, where, name="batch_size"):
    """batch_size for fit / evaluate / predict: None means 32, as in Keras.  Any positive
    int64 is accepted, even one larger than the data: as in Keras that is one batch of all
    the samples, and the buffers are sized for min(batch_size, samples), never for
    batch_size itself."""
    return 32 if batch_size is None else check_int(batch_size, name, where, 1)


def check_bool(value, name, where):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: expected {name} to be True or False, received "
                         f"{name}={value!r:.80}")
    return bool(value)


def check_verbose(verbose, where):
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"{where}: expected verbose to be 'auto', 0, 1 or 2, received {verbose!r}")
    return int(verbose)


def as_features(x, where, what="x"):
    """User data -> a float32 C-contiguous array with a batch axis; refuses what it cannot
    convert exactly (strings, objects, complex, masked arrays), empty data, non-finite
    values and values that overflow float32."""
    if x is None:
        raise ValueError(f"{where}: expected {what} as an array of numbers, received None")
    arr = numeric_array(x, f"{where}: {what}")
    if arr.ndim == 0:
        raise ValueError(f"{where}: expected {what} with a batch axis, received a scalar")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{where}: expected at least one sample in {what}, received shape "
                         f"{arr.shape}")
    return finite_float32(arr, where, what)


def _by_structure(data, names, what, where):
    """`data` as a list with one entry per name (a model's inputs or outputs)."""
    k = len(names)
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        unknown = [key for key in data if key not in names]
        if missing or unknown:
            raise ValueError(f"{where}: {what} given as a dict must have the keys {names}; "
                             f"missing {missing}, unexpected {unknown}")
        return [data[n] for n in names]
    if isinstance(data, (list, tuple)) and k > 1:
        if len(data) != k:
            raise ValueError(f"{where}: the model has {k} {what}s ({names}); expected a list of "
                             f"{k} arrays or a dict by name, received a list of {len(data)}")
        return list(data)
    if isinstance(data, (list, tuple)) and len(data) == 1 and isinstance(data[0], np.ndarray):
        return [data[0]]          # [x] for a model of one input, as Keras flattens it
    if k > 1:
        raise ValueError(f"{where}: the model has {k} {what}s ({names}); expected a list of "
                         f"{k} arrays or a dict by name, received one {type(data).__name__}")
    return [data]


def _fit_rank(arr, shape):
    """Keras's rank adjustment: (n,) for a (None, 1) input, or (n, ..., 1) squeezed."""
    if arr.ndim == len(shape) - 1 and shape[-1] == 1:
        return arr.reshape(arr.shape + (1,))
    if arr.ndim == len(shape) + 1 and arr.shape[-1] == 1:
        return arr.reshape(arr.shape[:-1])
    return arr


def model_inputs(model, x, where, what="x"):
    """One checked float32 array per model input, all with the same number of rows."""
    names = model.input_names
    arrays = []
    for name, t, value in zip(names, model.inputs, _by_structure(x, names, "input", where)):
        label = what if len(names) == 1 else f"{what}['{name}']"
        arr = _fit_rank(as_features(value, where, label), t.shape)
        if len(arr.shape) != len(t.shape) or any(
                d is not None and d != a for d, a in zip(t.shape[1:], arr.shape[1:])):
            consumer = _consumer(model, t)
            raise ValueError(f"{where}: input '{name}' of model '{model.name}' is incompatible "
                             f"with {consumer}: expected {label} of shape {shape_text(t.shape)}, "
                             f"received {label} with shape {arr.shape}")
        arrays.append(arr)
    _same_rows(arrays, [f"{what}['{n}']" if len(names) > 1 else what for n in names], where)
    return arrays


def _consumer(model, tensor):
    for node in model.nodes:
        if any(t is tensor for t in node.input_tensors):
            return f"layer '{node.layer.name}'"
    return "the model"


def _same_rows(arrays, labels, where):
    rows = {a.shape[0] for a in arrays}
    if len(rows) > 1:
        counts = ", ".join(f"{l}: {a.shape[0]}" for l, a in zip(labels, arrays))
        raise ValueError(f"{where}: all arrays must have the same number of samples, received "
                         f"{counts}")


def model_targets(model, losses, y, n_rows, where, what="y"):
    """One checked target array per output that has a loss (in output order)."""
    if y is None:
        raise ValueError(f"{where}: expected targets {what}, received None")
    names = model.output_names
    wanted = [spec for spec in losses.outputs]
    values = _by_targets(y, names, [s.loss is not None for s in wanted], what, where)
    arrays = []
    for spec, value in zip(wanted, values):
        if spec.loss is None:
            continue
        label = what if len(names) == 1 else f"{what}['{spec.name}']"
        if value is None:
            raise ValueError(f"{where}: expected targets for output '{spec.name}' (it has the "
                             f"loss {spec.loss.name}), received none")
        arr = numeric_array(value, f"{where}: {label}")
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise ValueError(f"{where}: expected at least one target in {label}, received shape "
                             f"{arr.shape}")
        if arr.dtype.kind == "f":
            finite_float32(arr, where, label)      # NaN, inf, or beyond float32: refused
        if arr.shape[0] != n_rows:
            raise ValueError(f"{where}: x and {label} must have the same number of samples, "
                             f"received {n_rows} and {arr.shape[0]}")
        arrays.append(spec.loss.prepare_targets(arr, spec.shape, f"{where} ({label})"))
    return arrays


def _by_targets(y, names, has_loss, what, where):
    k = len(names)
    if isinstance(y, dict):
        unknown = [key for key in y if key not in names]
        if unknown:
            raise ValueError(f"{where}: {what} names outputs {unknown} the model does not have; "
                             f"its outputs are {names}")
        return [y.get(n) for n in names]
    if isinstance(y, (list, tuple)) and k > 1:
        if len(y) == k:
            return list(y)
        if len(y) == sum(has_loss):
            it = iter(y)
            return [next(it) if h else None for h in has_loss]
        raise ValueError(f"{where}: the model has {k} outputs ({names}); expected {what} as a "
                         f"list of {k} arrays or a dict by output name, received a list of "
                         f"{len(y)}")
    if k > 1:
        if sum(has_loss) == 1:
            return [y if h else None for h in has_loss]
        raise ValueError(f"{where}: the model has {k} outputs ({names}); expected {what} as a "
                         f"list of {k} arrays or a dict by output name, received one "
                         f"{type(y).__name__}")
    return [y]


def sample_weights(model, losses, targets, sample_weight, class_weight, n_rows, where,
                   what="sample_weight"):
    """Keras's sample_weight / class_weight as one (n_rows, 1) float32 array per target
    (the outputs that have a loss, in order), or None when neither is given.

    sample_weight: one array of n_rows weights (every output reads it, as Keras repeats
    it), or a list / dict by output name.  class_weight (models with one loss output):
    {class: weight}; a sample of class c weighs class_weight.get(c, 1.0), its class read
    as Keras reads it: the label, the argmax of a one-hot row, a rounded single value.
    Weights are finite and >= 0; a class is an int in [0, classes)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError(f"{where}: you cannot use class_weight and sample_weight at the same "
                         "time; give one of them")
    specs = [s for s in losses.outputs if s.loss is not None]
    if sample_weight is not None:
        names = model.output_names
        if isinstance(sample_weight, (dict, list, tuple)) and not (
                isinstance(sample_weight, (list, tuple)) and len(names) == 1):
            values = _by_targets(sample_weight, names,
                                 [s.loss is not None for s in losses.outputs], what, where)
            values = [v for s, v in zip(losses.outputs, values) if s.loss is not None]
        else:
            values = [sample_weight] * len(specs)
        out, seen = [], {}
        for spec, value in zip(specs, values):
            label = what if len(specs) == 1 else f"{what}['{spec.name}']"
            if value is None:
                out.append(np.ones((n_rows, 1), np.float32))
            elif id(value) in seen:
                out.append(seen[id(value)])
            else:
                seen[id(value)] = _weights(value, n_rows, where, label)
                out.append(seen[id(value)])
        return out
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise TypeError(f"{where}: expected class_weight as a dict {{class index: weight}}, "
                        f"received {type(class_weight).__name__} {class_weight!r:.80}")
    if len(specs) != 1 or len(losses.outputs) != 1:
        raise ValueError(f"{where}: class_weight is only supported for models with a single "
                         f"output; model '{model.name}' has {len(losses.outputs)}")
    spec, y = specs[0], targets[0]
    width = int(spec.shape[-1]) if spec.shape[-1] is not None else 1
    classes = width if (spec.loss.sparse or width > 1) else 2
    table = np.ones(classes, dtype=np.float32)
    for key, value in class_weight.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) or \
                not 0 <= key < classes:
            raise ValueError(f"{where}: class_weight keys must be class indices, integers in "
                             f"[0, {classes}) for output '{spec.name}', received the key "
                             f"{key!r:.80}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)) or not np.isfinite(value) or \
                value < 0:
            raise ValueError(f"{where}: class_weight values must be finite numbers >= 0, "
                             f"received class_weight[{key!r}]={value!r:.80}")
        table[int(key)] = value
    if spec.loss.sparse:
        if y.ndim != 1:
            raise ValueError(f"{where}: class_weight needs one label per sample, received "
                             f"labels of shape {y.shape}")
        cls = y
    else:
        if y.ndim != 2:
            raise ValueError(f"{where}: class_weight needs one target row per sample, "
                             f"received targets of shape {y.shape}")
        cls = np.argmax(y, axis=1) if y.shape[1] > 1 else np.round(y[:, 0]).astype(np.int64)
    known = (cls >= 0) & (cls < classes)
    w = np.ones(n_rows, dtype=np.float32)         # a class outside the table weighs 1 (Keras)
    w[known] = table[cls[known]]
    return [w.reshape(-1, 1)]


def _weights(value, n_rows, where, label):
    arr = numeric_array(value, f"{where}: {label}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(f"{where}: expected {label} as one weight per sample, shape "
                         f"({n_rows},), received shape {arr.shape}")
    arr = finite_float32(arr, where, label)
    if (arr < 0).any():
        i = int(np.argmax(arr < 0))
        raise ValueError(f"{where}: expected {label} >= 0, received {label}[{i}]={float(arr[i])!r}")
    return np.ascontiguousarray(arr.reshape(-1, 1))


def slice_rows(arrays, lo, hi):
    return [a[lo:hi] for a in arrays]
