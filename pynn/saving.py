"""Saving and loading models: one zip file, JSON and .npy inside, no pickle.

`model.save(path)` writes everything needed to predict and to go on training:

    pynn_model.json            the description (below), UTF-8 JSON
    weights/000.npy ...        model.get_weights(), in order (Keras layouts), float32
    optimizer/000/<slot>.npy   the optimizer's state arrays, per parameter array of the
                               model (pynn trains one flat array, so there is one: 000)

    {"format": "pynn-model", "version": 1,
     "model": {"class_name": "Sequential", "name": "...", "input_shape": [64] or null,
               "layers": [{"class_name": "Dense", "config": {...layer.get_config()}}, ...]},
     "weights": [{"layer": "dense", "name": "kernel", "shape": [64, 128]}, ...],
     "compile": null or {"optimizer": {"class_name": "Adam", "config": {...}},
                         "loss": {"class_name": "SparseCategoricalCrossentropy", "config": {...}},
                         "metrics": ["accuracy"] or null, "backend": "cpu"},
     "optimizer_state": null or {"iterations": 90, "slots": [["m", "v"]]}}

`model.save_weights(path)` writes the same zip with only the weights and
{"format": "pynn-weights", "version": 1, "weights": [...]}; `model.load_weights(path)`
reads either kind of file.

Safety.  Nothing in a file is ever executed or imported: class names are looked up in
allow-lists of pynn's own layers, losses and optimizers, arrays are read with
`np.load(allow_pickle=False)` (so no object arrays), and every shape and dtype is checked
against the rebuilt model before anything is assigned.  A file that is truncated,
corrupt, not a zip, or not a pynn file raises ModelFileError (a ValueError) saying what
is wrong; a missing file raises FileNotFoundError.

Atomicity.  A save writes a temporary file in the target's folder, flushes and fsyncs it
and then renames it over the target (`os.replace`, atomic on POSIX and Windows), so a
crash mid-save leaves the previous file intact.
"""
import io
import json
import os
import secrets
import zipfile
import zlib

import numpy as np

MODEL_FORMAT = "pynn-model"
WEIGHTS_FORMAT = "pynn-weights"
VERSION = 1
_CONFIG = "pynn_model.json"
_MAX_JSON_BYTES = 64 << 20


class ModelFileError(ValueError):
    """A file that is not a readable pynn model or weights file (truncated, corrupt,
    foreign, or describing something this pynn cannot rebuild)."""


# ---- allow-lists: the only classes a file can name ---------------------------------------------

def _layer_classes():
    from . import layers
    from .layers.base import Layer
    found = {}
    for name in getattr(layers, "__all__", dir(layers)):
        cls = getattr(layers, name, None)
        if isinstance(cls, type) and issubclass(cls, Layer) and cls is not Layer:
            found[cls.__name__] = cls
    return found


def _optimizer_classes():
    from . import optimizers
    return {cls.__name__: cls for cls in (optimizers.SGD, optimizers.Adam, optimizers.RMSprop)}


def _loss_classes():
    from . import losses
    return {cls.__name__: cls for cls in losses._NAMES}


def _serialize(obj):
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def _deserialize(entry, classes, what, path):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
            not isinstance(entry.get("config", {}), dict):
        raise ModelFileError(f"{path}: expected {what} as {{'class_name': ..., 'config': {{...}}}}, "
                             f"found {entry!r:.200}")
    cls = classes.get(entry["class_name"])
    if cls is None:
        raise ModelFileError(f"{path}: unknown {what} class {entry['class_name']!r:.100}; this pynn "
                             f"knows {', '.join(sorted(classes))}")
    try:
        return cls(**entry.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot rebuild {what} {entry['class_name']}: {exc}") from None


# ---- writing -----------------------------------------------------------------------------------

def _weight_names(layer, count):
    """Names for a layer's `count` arrays of get_weights (kernel, bias, ...)."""
    names = list(getattr(layer, "_weight_names", []))[:count]
    return names + [f"weight_{i}" for i in range(len(names), count)]


def _weight_entries(model):
    """[(description, array)] for model.get_weights(), layer by layer: the same arrays in
    the same order that set_weights takes back."""
    out = []
    for layer in model.layers:
        arrays = layer.get_weights()
        for name, w in zip(_weight_names(layer, len(arrays)), arrays):
            out.append(({"layer": layer.name, "name": name, "shape": list(w.shape)}, w))
    return out


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _atomic_write_zip(path, members, overwrite):
    """Write `members` ([(name, bytes)]) as a zip at `path` through a temporary file in the
    same folder, fsync'd and then renamed over `path`."""
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    # A fresh name opened with "x" (not mkstemp, whose 0600 mode would outlive the rename):
    # the saved file gets the permissions any other new file of the user gets.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            with zipfile.ZipFile(f, "w") as zf:
                for name, data in members:
                    compress = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
                    zf.writestr(name, data, compress_type=compress)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                               # make the rename itself durable (POSIX; best effort)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def model_config(model):
    """The architecture as JSON-ready data (what pynn_model.json holds under "model")."""
    return {"class_name": type(model).__name__, "name": model.name,
            "input_shape": None if model._input_shape is None else list(model._input_shape),
            "layers": [_serialize(layer) for layer in model.layers]}


def save_model(model, path, overwrite=True):
    entries = _weight_entries(model) if model.built else []
    compile_cfg = opt_state = None
    members = []
    if model.compiled:
        compile_cfg = {"optimizer": _serialize(model.optimizer),
                       "loss": None if model.loss is None else _serialize(model.loss),
                       "metrics": None if model._metric_names is None else list(model._metric_names),
                       "backend": model._backend.name if model._backend is not None else None}
        opt = model.optimizer
        if opt.built:
            be = model._backend
            slots = []
            for i, per_param in enumerate(opt._slots):
                slots.append(sorted(per_param))
                for name in sorted(per_param):
                    members.append((f"optimizer/{i:03d}/{name}.npy",
                                    _npy_bytes(np.asarray(be.to_host(per_param[name]), np.float32))))
            opt_state = {"iterations": int(opt.iterations), "slots": slots}
        else:
            opt_state = {"iterations": int(opt.iterations), "slots": None}
    config = {"format": MODEL_FORMAT, "version": VERSION, "model": model_config(model),
              "weights": [e for e, _ in entries], "compile": compile_cfg,
              "optimizer_state": opt_state}
    members = ([(_CONFIG, json.dumps(config, indent=1).encode("utf-8"))] +
               [(f"weights/{i:03d}.npy", _npy_bytes(w)) for i, (_, w) in enumerate(entries)] + members)
    _atomic_write_zip(path, members, overwrite)


def save_weights(model, path, overwrite=True):
    if not model.built:
        raise ValueError(f"save_weights: model '{model.name}' is not built yet, it has no weights")
    entries = _weight_entries(model)
    config = {"format": WEIGHTS_FORMAT, "version": VERSION, "weights": [e for e, _ in entries]}
    members = [(_CONFIG, json.dumps(config, indent=1).encode("utf-8"))] + \
              [(f"weights/{i:03d}.npy", _npy_bytes(w)) for i, (_, w) in enumerate(entries)]
    _atomic_write_zip(path, members, overwrite)


# ---- reading -----------------------------------------------------------------------------------

class _Archive:
    """Read access to a pynn zip that turns every way of being broken into ModelFileError."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"No such file: {self.path!r}")
        try:
            self.zip = zipfile.ZipFile(self.path, "r")
        except zipfile.BadZipFile:
            with open(self.path, "rb") as f:
                starts_like_zip = f.read(4) == b"PK\x03\x04"
            if starts_like_zip:
                raise ModelFileError(f"{self.path}: the file is truncated or damaged (a zip archive "
                                     "whose directory at the end is missing or unreadable)") from None
            raise ModelFileError(f"{self.path}: not a pynn model file (not a zip archive)") from None
        except OSError as exc:
            raise ModelFileError(f"{self.path}: cannot be read as a pynn model file ({exc})") from None

    def close(self):
        self.zip.close()

    def read(self, name, limit):
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise ModelFileError(f"{self.path}: member {name!r} is missing; the file is incomplete "
                                 "or not a pynn file") from None
        if info.file_size > limit:
            raise ModelFileError(f"{self.path}: member {name!r} is {info.file_size} bytes, more than "
                                 f"the {limit} it can be")
        try:
            return self.zip.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise ModelFileError(f"{self.path}: member {name!r} is corrupt ({exc})") from None

    def config(self, formats):
        raw = self.read(_CONFIG, _MAX_JSON_BYTES) if _CONFIG in self.zip.namelist() else None
        if raw is None:
            raise ModelFileError(f"{self.path}: not a pynn file ({_CONFIG} is missing)")
        try:
            config = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelFileError(f"{self.path}: {_CONFIG} is not valid JSON ({exc})") from None
        if not isinstance(config, dict) or config.get("format") not in formats:
            found = config.get("format") if isinstance(config, dict) else type(config).__name__
            raise ModelFileError(f"{self.path}: expected a file of format {' or '.join(formats)}, "
                                 f"found {found!r:.100}")
        if config.get("version") != VERSION:
            raise ModelFileError(f"{self.path}: format version {config.get('version')!r:.50} is not "
                                 f"one this pynn reads (version {VERSION})")
        return config

    def array(self, name, shape):
        """The float32 array `name`, which must have `shape`."""
        shape = tuple(int(d) for d in shape)
        expected = int(np.prod(shape, dtype=np.int64)) * 4
        data = self.read(name, expected + 4096)       # .npy header is at most a few hundred bytes
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise ModelFileError(f"{self.path}: {name} is not a valid .npy array ({exc})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
            raise ModelFileError(f"{self.path}: {name} holds {getattr(arr, 'dtype', type(arr))}, "
                                 "expected float32")
        if arr.shape != shape:
            raise ModelFileError(f"{self.path}: {name} has shape {arr.shape}, the model expects {shape}")
        if not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{self.path}: {name} contains NaN or infinite values")
        return arr


def _read_weights(archive, config, model):
    """The weight arrays of `archive`, checked against the built `model`."""
    listed = config.get("weights")
    expected = [(e["layer"], e["name"], tuple(e["shape"])) for e, _ in _weight_entries(model)]
    if not isinstance(listed, list) or len(listed) != len(expected):
        n = len(listed) if isinstance(listed, list) else "no"
        raise ModelFileError(f"{archive.path}: the file holds {n} weight arrays, model "
                             f"'{model.name}' has {len(expected)}")
    arrays = []
    for i, (entry, (layer, name, shape)) in enumerate(zip(listed, expected)):
        if not isinstance(entry, dict) or tuple(entry.get("shape") or ()) != shape:
            got = entry.get("shape") if isinstance(entry, dict) else entry
            raise ModelFileError(f"{archive.path}: weight {i} ({layer} {name}) has shape {got!r:.100} "
                                 f"in the file, the model expects {list(shape)}")
        arrays.append(archive.array(f"weights/{i:03d}.npy", shape))
    return arrays


def _rebuild(config, path):
    from .models import Sequential
    from .layers.base import check_shape_arg
    spec = config.get("model")
    if not isinstance(spec, dict) or spec.get("class_name") != "Sequential" or \
            not isinstance(spec.get("layers"), list):
        raise ModelFileError(f"{path}: expected a Sequential model description, found {spec!r:.200}")
    classes = _layer_classes()
    layers = [_deserialize(entry, classes, "layer", path) for entry in spec["layers"]]
    name = spec.get("name")
    try:
        model = Sequential(name=name if isinstance(name, str) and name else None)
        for layer in layers:
            model.add(layer)
        if spec.get("input_shape") is not None and not model.built:
            shape = check_shape_arg(spec["input_shape"], "input_shape", f"{path}: model")
            model.build((None,) + shape)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot rebuild the model: {exc}") from None
    return model


def load_model(path, compile=True, backend=None):
    """Rebuild the model saved at `path` by `model.save`: same layers, weights and (with
    compile=True) the same optimizer, loss, metrics and optimizer state, so it predicts
    identically and `fit` continues where it stopped.  backend: where it computes (default:
    the one it was saved from when it can run here, else pynn's default)."""
    from . import backend as backends
    archive = _Archive(path)
    try:
        config = archive.config((MODEL_FORMAT,))
        model = _rebuild(config, archive.path)
        if config.get("weights") and not model.built:
            raise ModelFileError(f"{archive.path}: the file holds weights but no input shape")
        weights = _read_weights(archive, config, model) if model.built else []
        cfg = config.get("compile")
        if compile and cfg is not None:
            if not isinstance(cfg, dict):
                raise ModelFileError(f"{archive.path}: 'compile' must be an object, found {cfg!r:.100}")
            optimizer = _deserialize(cfg.get("optimizer"), _optimizer_classes(), "optimizer", archive.path)
            loss = None if cfg.get("loss") is None else \
                _deserialize(cfg["loss"], _loss_classes(), "loss", archive.path)
            if backend is None:
                saved = cfg.get("backend")
                backend = saved if saved in ("cpu", "numpy") else None
                if saved == "cuda" and backends.cuda_available():
                    backend = "cuda"
            try:
                model.compile(optimizer=optimizer, loss=loss, metrics=cfg.get("metrics"), backend=backend)
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"{archive.path}: cannot compile the saved model: {exc}") from None
            if weights:
                model.set_weights(weights)
            _load_optimizer_state(archive, config, model)
        else:
            if backend is not None:
                model._bind(backends.get(backend, "load_model"))
            if weights:
                model.set_weights(weights)
    finally:
        archive.close()
    return model


def _load_optimizer_state(archive, config, model):
    """Restore the optimizer's step count and state arrays, checked against the state the
    compiled model's optimizer creates (names and shapes)."""
    state = config.get("optimizer_state")
    if state is None:
        return
    if not isinstance(state, dict) or isinstance(state.get("iterations"), bool) or \
            not isinstance(state.get("iterations"), int) or state["iterations"] < 0:
        raise ModelFileError(f"{archive.path}: optimizer_state must hold a non-negative integer "
                             f"'iterations', found {state!r:.200}")
    optimizer = model.optimizer
    saved = state.get("slots")
    if saved is not None and model.built:
        model._optimizer_slots()                 # creates the state for this model, zeroed
        wanted = [sorted(per_param) for per_param in optimizer._slots]
        if not isinstance(saved, list) or \
                [sorted(s) if isinstance(s, list) else s for s in saved] != wanted:
            raise ModelFileError(f"{archive.path}: the optimizer state holds slots {saved!r:.200}, a "
                                 f"{type(optimizer).__name__} with this configuration has {wanted}")
        be = model._backend
        values = [{name: archive.array(f"optimizer/{i:03d}/{name}.npy", per_param[name].shape)
                   for name in per_param} for i, per_param in enumerate(optimizer._slots)]
        for per_param, arrays in zip(optimizer._slots, values):
            for name, value in arrays.items():
                be.copy_from_host(per_param[name], value)
    optimizer.iterations = state["iterations"]


def load_weights(model, path):
    """Set `model`'s weights from a file written by save_weights or save (checked first:
    a refused file leaves the model unchanged)."""
    if not model.built:
        raise ValueError(f"load_weights: model '{model.name}' is not built yet; give it an input "
                         "shape (Input(shape) or build()) first")
    archive = _Archive(path)
    try:
        config = archive.config((WEIGHTS_FORMAT, MODEL_FORMAT))
        weights = _read_weights(archive, config, model)
    finally:
        archive.close()
    model.set_weights(weights)
