"""Keras 3's own files, both ways: `.keras` archives and `.weights.h5` weights files.

A `.keras` file (keras/src/saving/saving_lib.py) is a zip of
    metadata.json      {"keras_version", "date_saved"}
    config.json        the model serialized as Keras does (serialization_lib.py): pynn's
                       model config is already Keras's format; only the modules change
                       ("keras.layers", "keras.src.models.functional", ...), plus the
                       model's "compile_config"
    model.weights.h5   the weights: one group per layer, named as Keras names them (the
                       class name in snake case, made unique in the order of model.layers:
                       layers/dense, layers/dense_1, layers/sequential/layers/conv2d, ...),
                       each holding vars/0, vars/1, ... in the layer's variable order; then
                       optimizer/vars/0 (iterations), /1 (learning rate) and the
                       optimizer's variables (below)
A `.weights.h5` file is that h5 alone.  h5py is needed (pip install "pynn[keras]").

Reading is for files of layers pynn has.  Nothing in a file is run, imported or
unpickled: class names are looked up in pynn's allow-lists (a Lambda layer, which holds
code, is refused), options pynn does not support are refused with a ValueError naming
the layer and the option, the zip may hold only the three members above (no paths with
"..", no directories), its size limits are pynn's own (saving._Archive), every h5 object
must be a plain group or dataset of this file (no external, soft or virtual links), and
every dataset's shape and dtype are checked against the rebuilt model before it is read.
While the model is rebuilt, a layer may create only weights the h5 file holds with that
shape (so a config with bigger layers than the file's weights allocates nothing).

The optimizer state carried is all of it, as Keras 3 writes it (save_own_variables:
optimizer/vars/0.. in the order of Optimizer.variables): iterations; the learning rate
when it is a number (a schedule has no variable); with use_ema the moving average of
every trainable weight; then each optimizer's slots in the order its build() creates
them (_keras_slot_groups: SGD with momentum: momentum; Adam, AdamW: momentum and
velocity per weight, then with amsgrad every velocity_hat; RMSprop: every velocity, then
with momentum every momentum; Adagrad: accumulator (starting at
initial_accumulator_value); Adadelta: accumulated_grad and accumulated_delta_var;
Adamax: momentum and norm; Nadam: momentum and velocity, then the scalar u_product;
Lion: momentum).  pynn's update rules are Keras's, so each slot means what Keras's
variable means and is copied as is; Nadam's u_product, which pynn recomputes from the
step count and beta_1, is written as that value and, read, must agree with it (else
ModelFileError).  Before the first step the slots are written at their initial values,
as Keras builds them.  Read, a file must hold exactly the variables its optimizer's
options give (a count of Keras options pynn does not carry, such as
gradient_accumulation_steps, is refused), or the step count alone (pynn's earlier
files).  RMSprop(centered=True) is refused when its config is read (pynn lacks it).
"""
import datetime
import io
import json
import os
import re

import numpy as np

from ..serialization import ModelFileError

METADATA, CONFIG, WEIGHTS = "metadata.json", "config.json", "model.weights.h5"
MEMBERS = (METADATA, CONFIG, WEIGHTS)
KERAS_VERSION = "3.15.1"        # the Keras whose files these are checked against

# Keras 3's optimizer variables (keras/src/optimizers/*.py build()), after `iterations` and
# the learning rate (a float's variable; none for a schedule): groups of pynn slot names,
# one group per add_optimizer_variables call, in build()'s order (the base class first:
# use_ema's "average"); within a group the slots are interleaved per trainable variable
# (v0's m, v0's v, v1's m, ...).  Every slot named here holds what Keras's variable holds
# (the update rules are Keras's: pynn/backend/reference.py), so nothing is converted;
# Nadam's scalar u_product, which pynn recomputes from the step count, ends its list.
def _keras_slot_groups(optimizer):
    """([groups of slot names], whether Nadam's u_product follows) for `optimizer`;
    ValueError for an optimizer whose state has no Keras layout here."""
    from ..optimizers import CLASSES
    # a subclass keeps its pynn base class's state (checked against its slots below)
    name = next((c.__name__ for c in type(optimizer).__mro__
                 if CLASSES.get(c.__name__) is c), None)
    if name is None:
        raise ValueError(f"Keras file: the optimizer {type(optimizer).__name__} is not one of "
                         f"pynn's ({', '.join(CLASSES)}) nor a subclass of one; its state has "
                         f"no Keras layout")
    groups = [("average",)] if optimizer.use_ema else []
    if name == "SGD":
        groups += [("momentum",)] if optimizer.momentum != 0 else []
    elif name in ("Adam", "AdamW"):
        groups += [("m", "v")] + ([("v_hat",)] if optimizer.amsgrad else [])
    elif name == "RMSprop":
        groups += [("velocity",)] + ([("momentum",)] if optimizer.momentum > 0 else [])
    elif name == "Adagrad":
        groups += [("accumulator",)]
    elif name == "Adadelta":
        groups += [("accumulated_grad", "accumulated_delta_var")]
    elif name == "Adamax":
        groups += [("m", "u")]
    elif name == "Nadam":
        groups += [("m", "v")]
    else:
        groups += [("m",)]                                    # Lion
    have = {n for n in tuple(optimizer.slot_names()) + (optimizer.ema_slot(),) if n}
    if {n for g in groups for n in g} != have:
        raise ValueError(f"Keras file: the state of optimizer {type(optimizer).__name__} "
                         f"(slots {sorted(have)}) has no Keras layout here")
    return groups, name == "Nadam"


def _nadam_u_product(beta_1, step):
    """Keras's Nadam u_product after `step` updates: prod_{s=1..step} beta_1 (1 - 0.5 *
    0.96^s) (1.0 before the first), as pynn_nadam_factors computes it (in double)."""
    d = q = 1.0
    for _ in range(min(step, 1000)):
        d *= 0.96
        q *= 1.0 - 0.5 * d
    return float(beta_1) ** step * q


# a layer's weights by name, in Keras's variable order (trainable then non-trainable)
_WEIGHT_NAMES = {"Dense": ("kernel", "bias"), "Conv2D": ("kernel", "bias"),
                 "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
                 "Normalization": ("mean", "variance", "count")}
_WEIGHT_NAMES["PReLU"] = ("alpha",)     # activations (engineer A)
_WEIGHT_NAMES["Conv1D"] = ("kernel", "bias")          # engineer D (#16)
_WEIGHT_NAMES["Embedding"] = ("embeddings",)            # engineer G
# engineer E: normalization layers (gamma and beta, each only where the config keeps it)
_WEIGHT_NAMES.update({"LayerNormalization": ("gamma", "beta"),
                      "GroupNormalization": ("gamma", "beta")})
# transposed convolution (issue 16, part C)
_WEIGHT_NAMES["Conv2DTranspose"] = ("kernel", "bias")

# Keras-only options pynn drops when they hold Keras's default (anything else is refused)
_DEFAULTS = {"kernel_regularizer": None, "bias_regularizer": None,
             "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
             "quantization_config": None, "lora_rank": None, "lora_alpha": None,
             "sparse": False, "ragged": False, "optional": False, "renorm": False,
             "renorm_clipping": None, "autocast": True}
_IGNORED = {"renorm_momentum"}          # meaningful only with renorm=True
# engineer F: regularizers and constraints pynn now takes (the layer's constructor checks them)
_WEIGHT_OPTIONS = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                   "kernel_constraint", "bias_constraint"}
# convolution variants (engineer B)
_WEIGHT_NAMES.update({"DepthwiseConv2D": ("depthwise_kernel", "bias"),
                      "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel", "bias")})
_DEFAULTS.update({"depthwise_regularizer": None, "pointwise_regularizer": None,
                  "depthwise_constraint": None, "pointwise_constraint": None})
# their regularizers and constraints are taken now (issue #16: every layer with weights)
_WEIGHT_OPTIONS.update({"depthwise_regularizer", "pointwise_regularizer",
                        "depthwise_constraint", "pointwise_constraint"})


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError('Keras .keras / .weights.h5 files need h5py: pip install "pynn[keras]"') \
            from None
    return h5py


def to_snake_case(name):
    """keras/src/utils/naming.py to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _is_model(layer):
    from ..serialization import model_base_class
    return isinstance(layer, model_base_class())


def _keras_class(layer):
    from ..serialization import class_name
    return class_name(layer)


# ---- the weights layout --------------------------------------------------------------------

def _layer_groups(model, prefix):
    """[(h5 group, layer)] for the layers of `model` and of the models nested in it, in
    Keras's order and with Keras's names."""
    from ..layers.input_layer import InputLayer
    used, out = {}, []
    layers = model.layers
    if _keras_class(model) == "Sequential":
        layers = [l for l in layers if not isinstance(l, InputLayer)]
    for layer in layers:
        base = to_snake_case(_keras_class(layer))
        if base in used:
            used[base] += 1
            name = f"{base}_{used[base]}"
        else:
            used[base] = 0
            name = base
        path = f"{prefix}/{name}"
        rnn = _rnn_groups(path, layer)          # recurrent layers (engineer H)
        if rnn is not None:
            out += rnn
            continue
        out.append((path, layer))
        if _is_model(layer):
            out += _layer_groups(layer, f"{path}/layers")
        if _keras_class(layer) == "TimeDistributed":   # Keras 3: the wrapped layer's group
            out.append((f"{path}/layer", layer.layer))   # (engineer G)
    return out


# ---- recurrent layers (engineer H): Keras keeps an RNN's weights in its cell ---------------
_RNN_CLASSES = ("SimpleRNN", "LSTM", "GRU")


def _rnn_groups(path, layer):
    """[(h5 group, layer)] of a recurrent layer (<path>/cell) or a Bidirectional
    (<path>/forward_layer/cell, <path>/backward_layer/cell); None for other layers."""
    cls = _keras_class(layer)
    if cls in _RNN_CLASSES:
        return [(f"{path}/cell", layer)]
    if cls == "Bidirectional":
        return [(f"{path}/forward_layer/cell", layer.forward_layer),
                (f"{path}/backward_layer/cell", layer.backward_layer)]
    return None


def _rnn_file_weights(cls, lcfg, path):
    """[(pynn layer name, weight names, h5 group)] of a recurrent or Bidirectional entry of
    a file's config; None for other classes."""
    def one(cfg, group):
        cfg = cfg if isinstance(cfg, dict) else {}
        names = ["kernel", "recurrent_kernel"] + (["bias"] if cfg.get("use_bias", True)
                                                  is not False else [])
        return (cfg.get("name"), names, group)
    if cls in _RNN_CLASSES:
        return [one(lcfg, f"{path}/cell")]
    if cls == "Bidirectional":
        fwd = lcfg.get("layer") if isinstance(lcfg.get("layer"), dict) else {}
        bwd = lcfg.get("backward_layer") if isinstance(lcfg.get("backward_layer"), dict) else None
        fcfg = fwd.get("config") if isinstance(fwd.get("config"), dict) else {}
        fname = fcfg.get("name") if isinstance(fcfg.get("name"), str) else ""
        base = fname[len("forward_"):] if fname.startswith("forward_") else fname
        fcfg = {**fcfg, "name": f"forward_{base}"}
        if bwd is not None and isinstance(bwd.get("config"), dict):
            bcfg = bwd["config"]
        else:
            bcfg = {**fcfg, "name": f"backward_{base}"}
        return [one(fcfg, f"{path}/forward_layer/cell"),
                one(bcfg, f"{path}/backward_layer/cell")]
    return None


def _own_weights(layer):
    if _is_model(layer) or _keras_class(layer) == "TimeDistributed":
        return []
    return list(layer.weights)


def _trainable_in_keras_order(model):
    return [v for _, layer in _layer_groups(model, "layers") for v in _own_weights(layer)
            if v.trainable]


# ---- pynn -> Keras ---------------------------------------------------------------------------

_MODULES = {"pynn.layers": "keras.layers", "pynn.losses": "keras.losses",
            "pynn.metrics": "keras.metrics", "pynn.optimizers": "keras.optimizers",
            "pynn.initializers": "keras.initializers"}


def _to_keras(value):
    """A serialized pynn object tree with Keras's module names."""
    if isinstance(value, list):
        return [_to_keras(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _to_keras(v) for k, v in value.items()}
    seed = out.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 2**32:
        out["seed"] = seed % 2**32          # Keras's seeds are 32-bit (pynn draws 63-bit ones)
    if "class_name" in out and "config" in out and out["class_name"] != "__keras_tensor__":
        cls, module = out["class_name"], out.get("module")
        if cls in ("Functional", "Model"):
            out.update(module="keras.src.models.functional", class_name="Functional",
                       registered_name="Functional")
        elif cls == "Sequential":
            out.update(module="keras", registered_name=None)
        elif isinstance(module, str) and module.startswith("pynn."):
            top = ".".join(module.split(".")[:2])
            out["module"] = _MODULES.get(top, "keras")
            if "schedules" in module or "Decay" in cls or cls == "PiecewiseConstantDecay":
                out["module"] = "keras.optimizers.schedules"
            out.setdefault("registered_name", None)
        elif module is None and isinstance(out["config"], dict) and \
                set(out) == {"class_name", "config"}:          # an initializer
            out["module"] = "keras.initializers"
            out["registered_name"] = None
            if out["class_name"] in ("Zeros", "Ones", "Constant", "Identity"):
                out["config"] = {k: v for k, v in out["config"].items() if k != "seed"}
    return out


def keras_config(model):
    """The model as Keras's config.json holds it."""
    from ..serialization import serialize
    entry = _to_keras(serialize(model))
    entry["build_config"] = {"input_shape": None if _keras_class(model) != "Sequential"
                             else entry["config"].get("build_input_shape")}
    compiled = keras_compile_config(model)
    if compiled is not None:
        entry["compile_config"] = compiled
    return entry


def keras_compile_config(model):
    from .. import saving
    from ..serialization import serialize
    compiled = model.compile_config()
    if compiled is None:
        return None
    loss, loss_weights, metrics, _, optimizer = compiled
    saving.check_savable_optimizer(optimizer)
    weighted = model.compile_weighted_metrics()
    return _to_keras({"optimizer": serialize(optimizer), "loss": saving.serialize_losses(loss),
                      "loss_weights": loss_weights,
                      "metrics": saving.serialize_metrics(metrics),
                      "weighted_metrics": (saving.serialize_metrics(weighted)
                                           if weighted is not None else None),
                      "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False})


def _optimizer_vars(model):
    """[arrays] of optimizer/vars as Keras 3 writes them (save_own_variables): iterations,
    the learning rate (not for a schedule), then the slot groups of _keras_slot_groups
    (Nadam: then u_product); None for a model that is not compiled.  Before the
    optimizer's first step its slots are written at their initial values, as Keras builds
    them.  ValueError for an optimizer whose state has no Keras layout."""
    compiled = model.compile_config()
    if compiled is None:
        return None
    optimizer = compiled[4]
    groups, u_product = _keras_slot_groups(optimizer)
    iterations = int(optimizer.iterations)
    out = [np.asarray(iterations, np.int64)]
    lr = optimizer.__dict__.get("_learning_rate")
    if not callable(lr):
        out.append(np.asarray(lr, np.float32))
    trainable = _trainable_in_keras_order(model)
    state = optimizer.state_arrays()
    if state is None:
        def part(slot, v):
            init = 0.0 if slot == "average" else optimizer.slot_initial_value(slot)
            return np.full(v.shape, init, np.float32)
    else:
        offsets, at = {}, 0
        sizes = {v.path: v.size for v in model.weights}
        for p in optimizer.state_paths():
            offsets[p] = at
            at += sizes[p]
        if any(v.path not in offsets for v in trainable) and groups:
            # trainable weights changed since the optimizer was built (not recompiled):
            # the step count alone (Keras then keeps its own fresh state)
            return out[:1]

        def part(slot, v):
            o = offsets[v.path]
            return state[slot][o:o + v.size].reshape(v.shape)
    for group in groups:
        for v in trainable:
            for slot in group:
                out.append(part(slot, v))
    if u_product:
        out.append(np.asarray(_nadam_u_product(optimizer.beta_1, iterations), np.float32))
    return out


def weights_h5_bytes(model, include_optimizer=True):
    h5py = _h5py()
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("vars").attrs["name"] = model.name
        for path, layer in _layer_groups(model, "layers"):
            group = f.require_group(path).create_group("vars")
            group.attrs["name"] = layer.name
            for i, v in enumerate(_own_weights(layer)):
                group.create_dataset(str(i), data=np.asarray(v.numpy(), np.float32))
        opt = _optimizer_vars(model) if include_optimizer else None
        if opt:
            group = f.create_group("optimizer").create_group("vars")
            group.attrs["name"] = model.optimizer.name
            for i, a in enumerate(opt):
                group.create_dataset(str(i), data=a)
    return buf.getvalue()


def save_keras(model, path, overwrite=True):
    from .. import saving
    if not model.built:
        raise ValueError(f"save: model '{model.name}' is not built yet; Keras files need its "
                         "input shape")
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    members = [(METADATA, json.dumps(metadata).encode()),
               (CONFIG, json.dumps(keras_config(model)).encode()),
               (WEIGHTS, weights_h5_bytes(model))]
    saving._atomic_write_zip(path, members, overwrite)


def save_keras_weights(model, path, overwrite=True):
    from .. import saving
    if not model.built:
        raise ValueError(f"save_weights: model '{model.name}' is not built yet, it has no weights")
    saving._atomic_write_bytes(path, weights_h5_bytes(model), overwrite)


# ---- Keras -> pynn ---------------------------------------------------------------------------

def _from_keras(value, where, classes):
    """A Keras config tree as pynn's from_config takes it: Keras-only options at their
    default dropped, anything else pynn lacks refused by name."""
    from ..checks import shown
    if isinstance(value, list):
        return [_from_keras(v, where, classes) for v in value]
    if not isinstance(value, dict):
        return value
    cls = value.get("class_name")
    if cls == "__keras_tensor__" or not isinstance(value.get("config"), (dict, str)) or \
            not isinstance(cls, str):
        return {k: _from_keras(v, where, classes) for k, v in value.items()}
    module = value.get("module")
    if module is not None and not (isinstance(module, str) and
                                   (module == "keras" or module.startswith(("keras.", "pynn.")))):
        raise ModelFileError(f"{where}: class {shown(cls)} comes from module {shown(module)}; "
                             "pynn reads only Keras's and its own classes")
    if cls == "Lambda":
        raise ModelFileError(f"{where}: layer {shown(value['config'].get('name'))} is a Lambda "
                             "layer, which holds Python code; pynn never runs code from a file")
    out = {k: _from_keras(v, where, classes) for k, v in value.items()
           if k not in ("module", "registered_name", "shared_object_id", "compile_config")}
    build = out.get("build_config")
    if isinstance(build, dict) and isinstance(build.get("input_shape"), list) and \
            any(isinstance(d, list) for d in build["input_shape"]):
        del out["build_config"]        # a merge layer's shapes: the graph's replay builds it
    config = out.get("config")
    if cls in classes and isinstance(config, dict):
        name = config.get("name")
        config = dict(config)
        dtype = config.get("dtype")
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name")
        from ..layers.input_layer import _integer_dtype       # int ids (engineer G)
        if cls == "InputLayer" and _integer_dtype(dtype):
            config["dtype"] = dtype
        elif dtype not in (None, "float32"):
            raise ModelFileError(f"{where}: layer {shown(name)} ({cls}) computes in "
                                 f"{shown(dtype)}; pynn computes in float32")
        if not (cls == "InputLayer" and _integer_dtype(dtype)):
            config.pop("dtype", None)
        for key, default in _DEFAULTS.items():
            if key in config:
                if config[key] != default and key in _WEIGHT_OPTIONS:   # engineer F
                    continue
                if config[key] != default:
                    raise ModelFileError(f"{where}: layer {shown(name)} ({cls}) sets {key}="
                                         f"{shown(config[key])}, which pynn does not support")
                del config[key]
        for key in _IGNORED:
            config.pop(key, None)
        if cls == "Dropout" and config.get("noise_shape") is not None:
            raise ModelFileError(f"{where}: layer {shown(name)} (Dropout) sets noise_shape, "
                                 "which pynn does not support")
        out["config"] = config
    elif isinstance(config, dict) and module in ("keras.initializers",) or cls in (
            "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
            "LecunNormal", "RandomUniform", "RandomNormal", "TruncatedNormal"):
        if isinstance(config, dict):
            out["config"] = {k: v for k, v in config.items()
                             if not (k in ("input_axes", "output_axes") and v is None)}
    return out


def _read_members(archive):
    """metadata.json, config.json and model.weights.h5 of a checked Keras zip."""
    from ..checks import shown
    names = archive.zip.namelist()
    for n in names:
        if n not in MEMBERS:
            why = " (a path leaving the archive)" if ".." in n.split("/") or n.startswith("/") \
                else ""
            raise ModelFileError(f"{archive.path}: unexpected member {shown(n)}{why}; a .keras "
                                 f"file pynn reads holds only {', '.join(MEMBERS)}")
    if len(set(names)) != len(names):
        raise ModelFileError(f"{archive.path}: a member is stored twice")
    for n in (CONFIG, WEIGHTS):
        if n not in names:
            raise ModelFileError(f"{archive.path}: member {n} is missing; not a complete .keras file")
    limit = min(64 << 20, (2 << 20) + archive.size // 4)
    try:
        config = json.loads(archive.read(CONFIG, limit).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{archive.path}: {CONFIG} is not valid JSON ({exc})") from None
    if METADATA in names:
        try:
            json.loads(archive.read(METADATA, 1 << 16).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelFileError(f"{archive.path}: {METADATA} is not valid JSON ({exc})") from None
    info = archive.info(WEIGHTS)
    weights = archive.read(WEIGHTS, max(info.file_size, 0))
    return config, weights


class _H5:
    """A Keras weights file opened from bytes, read only through checked paths."""

    def __init__(self, data, where):
        h5py = _h5py()
        self.h5py, self.where = h5py, where
        if not data.startswith(b"\x89HDF\r\n\x1a\n"):
            raise ModelFileError(f"{where}: not an HDF5 file (a Keras weights file is one)")
        try:
            self.file = h5py.File(io.BytesIO(data), "r")
        except Exception as exc:          # h5py reports damage as OSError, ValueError, ...
            raise ModelFileError(f"{where}: the HDF5 file is damaged or truncated "
                                 f"({type(exc).__name__}: {exc})") from None
        self.seen = set()

    def close(self):
        self.file.close()

    def _link(self, group, name):
        link = group.get(name, getlink=True)
        if link is None:
            return None
        if not isinstance(link, self.h5py.HardLink):
            raise ModelFileError(f"{self.where}: {group.name}/{name} is a "
                                 f"{type(link).__name__}; pynn reads only plain groups and "
                                 "datasets of the file itself")
        return group[name]

    def group(self, path):
        node = self.file
        for part in path.split("/"):
            if not part:
                continue
            if not isinstance(node, self.h5py.Group):
                return None
            node = self._link(node, part)
            if node is None:
                return None
        return node if isinstance(node, self.h5py.Group) else None

    def vars(self, path):
        """{index: dataset} of group path/vars (empty when absent)."""
        g = self.group(f"{path}/vars" if path else "vars")
        if g is None:
            return {}
        out = {}
        for name in g.keys():
            d = self._link(g, name)
            if not isinstance(d, self.h5py.Dataset) or not name.isdigit():
                raise ModelFileError(f"{self.where}: unexpected object {g.name}/{name}")
            out[int(name)] = d
        return out

    def read(self, dataset, shape, what, dtypes="f"):
        if tuple(dataset.shape) != tuple(shape):
            raise ModelFileError(f"{self.where}: {dataset.name} ({what}) has shape "
                                 f"{list(dataset.shape)}, the model expects {list(shape)}")
        if dataset.dtype.kind not in dtypes or dataset.dtype.itemsize > 8:
            raise ModelFileError(f"{self.where}: {dataset.name} ({what}) holds {dataset.dtype}, "
                                 "expected floats")
        if dataset.is_virtual or dataset.external:
            raise ModelFileError(f"{self.where}: {dataset.name} keeps its data outside the file")
        try:
            arr = np.asarray(dataset[()], dtype=np.float32 if dtypes == "f" else np.int64)
        except Exception as exc:
            raise ModelFileError(f"{self.where}: {dataset.name} is damaged ({exc})") from None
        if dtypes == "f" and not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{self.where}: {dataset.name} contains NaN or infinite values")
        self.seen.add(dataset.name)
        return arr.reshape(shape)

    def datasets(self):
        """Every dataset name in the file (for refusing unexpected ones)."""
        found = []

        def walk(group):
            for name in group.keys():
                obj = self._link(group, name)
                if isinstance(obj, self.h5py.Group):
                    walk(obj)
                elif isinstance(obj, self.h5py.Dataset):
                    found.append(obj.name)
                else:
                    raise ModelFileError(f"{self.where}: unexpected object {group.name}/{name}")
        walk(self.file)
        return found


def _file_weight_pool(config, h5, where):
    """[(pynn weight path, shape)] the h5 file holds, found from the config's layers and
    Keras's group names, for weights_from_file (nothing is read yet)."""
    pool = []

    def walk(entry, prefix):
        cfg = entry.get("config") if isinstance(entry, dict) else None
        layers = cfg.get("layers") if isinstance(cfg, dict) else None
        if not isinstance(layers, list):
            return
        used = {}
        for layer in layers:
            if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
                continue
            cls = layer["class_name"]
            if entry.get("class_name") == "Sequential" and cls == "InputLayer":
                continue
            base = to_snake_case(cls)
            used[base] = used.get(base, -1) + 1
            path = f"{prefix}/{base}" + (f"_{used[base]}" if used[base] else "")
            lcfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
            name = lcfg.get("name") if isinstance(lcfg.get("name"), str) else layer.get("name")
            rnn = _rnn_file_weights(cls, lcfg, path)        # recurrent layers (engineer H)
            if rnn is not None:
                for lname, names, group in rnn:
                    for i, d in sorted(h5.vars(group).items()):
                        if i < len(names) and isinstance(lname, str):
                            pool.append((f"{lname}/{names[i]}",
                                         tuple(int(s) for s in d.shape)))
                continue
            names = list(_WEIGHT_NAMES.get(cls, ()))
            if cls in ("BatchNormalization", "GroupNormalization"):
                names = [n for n in names if not (n == "gamma" and lcfg.get("scale") is False or
                                                  n == "beta" and lcfg.get("center") is False)]
            if cls == "LayerNormalization":   # engineer E: rms_scaling keeps gamma, drops beta
                rms = lcfg.get("rms_scaling") is True
                names = [n for n in names if not (
                    n == "gamma" and lcfg.get("scale") is False and not rms or
                    n == "beta" and (lcfg.get("center") is False or rms))]
            if cls in ("Dense", "Conv2D", "Conv1D", "Conv2DTranspose") and lcfg.get("use_bias") is False:
                names = names[:1]
            if cls in ("DepthwiseConv2D", "SeparableConv2D") and lcfg.get("use_bias") is False:
                names = names[:-1]   # engineer B
            for i, d in sorted(h5.vars(path).items()):
                if i < len(names) and isinstance(name, str):
                    pool.append((f"{name}/{names[i]}", tuple(int(s) for s in d.shape)))
            inner = lcfg.get("layer")
            if cls == "TimeDistributed" and isinstance(inner, dict) and isinstance(name, str):
                # engineer G: the wrapped layer's weights, "time_distributed/dense/kernel"
                icfg = inner.get("config") if isinstance(inner.get("config"), dict) else {}
                icls, iname = inner.get("class_name"), icfg.get("name")
                inames = list(_WEIGHT_NAMES.get(icls, ()))
                if icls in ("Dense", "Conv2D") and icfg.get("use_bias") is False:
                    inames = inames[:1]
                for i, d in sorted(h5.vars(f"{path}/layer").items()):
                    if i < len(inames) and isinstance(iname, str):
                        pool.append((f"{name}/{iname}/{inames[i]}",
                                     tuple(int(s) for s in d.shape)))
            if cls in ("Functional", "Sequential", "Model"):
                walk(layer, f"{path}/layers")

    walk(config, "layers")
    return pool


def _load_h5_into(model, h5, where, read_optimizer):
    """The weights of `model` from h5 (all checked first, then set); returns the optimizer
    datasets found ({index: dataset})."""
    values, expected = {}, set()
    for path, layer in _layer_groups(model, "layers"):
        weights = _own_weights(layer)
        found = h5.vars(path)
        if len(found) != len(weights) or sorted(found) != list(range(len(found))):
            raise ModelFileError(f"{where}: layer '{layer.name}' ({type(layer).__name__}) has "
                                 f"{len(weights)} weights, the file holds {len(found)} at "
                                 f"{path}/vars")
        for i, v in enumerate(weights):
            values[id(v)] = h5.read(found[i], v.shape, f"weight {v.path}")
    opt = h5.vars("optimizer") if read_optimizer else {}
    for d in opt.values():
        expected.add(d.name)
    extra = [n for n in h5.datasets() if n not in h5.seen and n not in expected
             and not n.startswith("/optimizer/")]
    if extra:
        from ..checks import shown
        raise ModelFileError(f"{where}: the weights file holds datasets the model does not have: "
                             f"{shown(extra, 200)}")
    model.set_weights([values[id(v)] for v in model.weights])
    return opt


def _restore_optimizer(model, h5, opt, where):
    """The optimizer state of optimizer/vars (as _optimizer_vars writes it, and Keras 3):
    all read and checked, then set.  A file holding the step count alone (pynn's files
    before the slots were carried) sets only the step count."""
    optimizer = model.optimizer
    if not opt:
        return
    name = type(optimizer).__name__
    if sorted(opt) != list(range(len(opt))):
        raise ModelFileError(f"{where}: optimizer/vars holds {sorted(opt)[:20]}, expected "
                             f"0, 1, 2, ...")
    iterations = h5.read(opt[0], (), "optimizer iterations", dtypes="iuf")
    iterations = int(iterations)
    if not 0 <= iterations <= 2**53:
        raise ModelFileError(f"{where}: optimizer iterations {iterations} out of range")
    if len(opt) == 1:
        optimizer.iterations = iterations
        return
    try:
        groups, u_product = _keras_slot_groups(optimizer)
    except ValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    has_lr = not callable(optimizer.__dict__.get("_learning_rate"))
    trainable = _trainable_in_keras_order(model)
    expected = 1 + has_lr + sum(len(g) for g in groups) * len(trainable) + u_product
    if len(opt) != expected:
        layout = ", ".join(["iterations"] + ["learning_rate"] * has_lr +
                           [f"{'/'.join(g)} of each of the {len(trainable)} trainable weights"
                            for g in groups] + ["u_product"] * u_product)
        raise ModelFileError(f"{where}: the optimizer {name} as configured has {expected} "
                             f"Keras variables ({layout}), the file holds {len(opt)} (saved with "
                             f"other options, or options pynn does not carry such as "
                             f"gradient_accumulation_steps)")
    lr = float(h5.read(opt[1], (), "optimizer learning rate")) if has_lr else None
    model.optimizer_state_shapes()                  # builds the state
    state = optimizer.state_arrays()
    offsets, at = {}, 0
    sizes = {v.path: v.size for v in model.weights}
    for p in optimizer.state_paths():
        offsets[p] = at
        at += sizes[p]
    k = 1 + has_lr
    for group in groups:
        for v in trainable:
            for slot in group:
                arr = h5.read(opt[k], v.shape, f"optimizer slot {slot} of {v.path}")
                k += 1
                if v.path not in offsets:
                    raise ModelFileError(f"{where}: weight {v.path} is not among the weights "
                                         f"the optimizer updates")
                state[slot][offsets[v.path]:offsets[v.path] + v.size] = arr.reshape(-1)
    if u_product:
        found = float(h5.read(opt[k], (), "Nadam u_product"))
        want = _nadam_u_product(optimizer.beta_1, iterations)
        if not np.isclose(found, want, rtol=1e-4, atol=1e-6):
            raise ModelFileError(f"{where}: Nadam's u_product is {found!r}, but after "
                                 f"{iterations} steps with beta_1={optimizer.beta_1} it is "
                                 f"{want!r}; pynn recomputes it from the step count and "
                                 f"cannot hold another value")
    if lr is not None:
        optimizer.learning_rate = lr
    optimizer.set_state_arrays(state)
    optimizer.iterations = iterations


def _compile_from_keras(model, compile_config, where, backend):
    from .. import serialization
    from ..serialization import deserialize

    def de_loss(entry):
        if entry is None or isinstance(entry, str):
            return entry
        if isinstance(entry, list):
            return [de_loss(e) for e in entry]
        if isinstance(entry, dict) and "class_name" not in entry:
            return {k: de_loss(v) for k, v in entry.items()}
        if isinstance(entry, dict) and entry.get("class_name") == "function":
            return entry.get("config")
        return deserialize(entry, serialization.loss_classes(), "loss", where)

    def de_metrics(entry, depth=0):
        if isinstance(entry, dict) and entry.get("class_name") == "function":
            return entry.get("config")
        if isinstance(entry, dict) and "class_name" in entry:
            return deserialize(entry, serialization.metric_classes(), "metric", where)
        if depth < 2 and isinstance(entry, dict):
            return {k: de_metrics(v, depth + 1) for k, v in entry.items()}
        if depth < 2 and isinstance(entry, list):
            return [de_metrics(v, depth + 1) for v in entry]
        return entry

    classes = serialization.layer_classes()
    cfg = _from_keras(compile_config, where, classes)
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{where}: compile_config must be an object")
    optimizer = cfg.get("optimizer")
    if isinstance(optimizer, str):
        optimizer = {"class_name": optimizer, "config": {}}
    optimizer = deserialize(optimizer, serialization.optimizer_classes(), "optimizer", where)
    try:
        model.compile(optimizer=optimizer, loss=de_loss(cfg.get("loss")),
                      loss_weights=cfg.get("loss_weights"), metrics=de_metrics(cfg.get("metrics")),
                      weighted_metrics=de_metrics(cfg.get("weighted_metrics")), backend=backend)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: cannot compile the saved model as its compile_config "
                             f"says ({exc}); load it with compile=False") from None


def load_keras(archive, compile=True, backend=None):
    """The model of an opened Keras archive (saving._Archive)."""
    where = f"{archive.path} ({CONFIG})"
    config, data = _read_members(archive)
    if not isinstance(config, dict) or config.get("class_name") not in ("Functional", "Sequential",
                                                                         "Model"):
        from ..checks import shown
        raise ModelFileError(f"{where}: expected a Functional or Sequential model, found "
                             f"{shown(config.get('class_name') if isinstance(config, dict) else config)}"
                             " (subclassed Keras models hold code and are not read)")
    h5 = _H5(data, f"{archive.path} ({WEIGHTS})")
    try:
        return _load_keras(archive, config, h5, where, compile, backend)
    except ModelFileError as exc:
        if str(exc).startswith(archive.path):
            raise
        raise ModelFileError(f"{where}: {exc}") from None
    finally:
        h5.close()


def _load_keras(archive, config, h5, where, compile, backend):
    from .. import serialization
    from ..layers.base import weights_from_file
    if True:
        classes = serialization.layer_classes()
        compile_config = config.get("compile_config")
        entry = _from_keras(config, where, classes)
        pool = _file_weight_pool(config, h5, where)
        with weights_from_file(pool, where):
            model = serialization.deserialize_layer(entry, where=where)
        if compile and compile_config:
            _compile_from_keras(model, compile_config, where, backend)
        elif backend is not None:
            model.set_backend(backend)
        opt = _load_h5_into(model, h5, f"{archive.path} ({WEIGHTS})",
                            read_optimizer=bool(compile and compile_config))
        if compile and compile_config and model.built:
            _restore_optimizer(model, h5, opt, f"{archive.path} ({WEIGHTS})")
    return model


def load_keras_weights(model, path):
    """Set `model`'s weights from a Keras .weights.h5 file (checked first)."""
    from .. import saving
    where = os.fsdecode(os.fspath(path))
    f, size = saving._open_regular_file(where)
    with f:
        if size > (4 << 30):
            raise ModelFileError(f"{where}: {size} bytes is more than a pynn model's weights")
        data = f.read(size + 1)
    if len(data) != size:
        raise ModelFileError(f"{where}: the file changed while it was read")
    h5 = _H5(data, where)
    try:
        _load_h5_into(model, h5, where, read_optimizer=True)
    finally:
        h5.close()


def is_h5(path):
    """Whether `path` is an HDF5 file; anything but a regular file (a FIFO, a device) is
    refused without being read, as saving refuses it."""
    from .. import saving
    f, _ = saving._open_regular_file(os.fsdecode(os.fspath(path)))
    with f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def load_keras_archive_weights(model, archive):
    """Set `model`'s weights from the model.weights.h5 of a .keras archive."""
    _, data = _read_members(archive)
    h5 = _H5(data, f"{archive.path} ({WEIGHTS})")
    try:
        _load_h5_into(model, h5, f"{archive.path} ({WEIGHTS})", read_optimizer=True)
    finally:
        h5.close()
