"""Saving and loading models: one zip file, JSON and .npy inside, no pickle.

`model.save(path)` writes everything needed to predict and to go on training:

    pynn_model.json            the description (below), UTF-8 JSON
    weights/000.npy ...        model.get_weights(), in `model.weights` order (Keras
                               layouts), float32
    optimizer/000/<slot>.npy   the optimizer's state: one flat array per slot, laid out
                               like the flat array of trainable weights

    {"format": "pynn-model", "version": 2,
     "model": {"module": "pynn", "class_name": "Functional" | "Sequential",
               "config": {...}},            Keras 3's serialization (below)
     "weights": [{"path": "dense/kernel", "shape": [64, 128]}, ...],
     "compile": null or {"optimizer": {"class_name": "Adam", "config": {...}},
                         "loss": a serialized loss, or a list / dict of them,
                         "loss_weights": ..., "metrics": ..., "backend": "cpu"},
     "optimizer_state": null or {"iterations": 90, "slots": [["m", "v"]],
                                 "weights": ["dense/kernel", ...]}}

The optimizer state covers the weights compile made trainable ("weights", in the order of
the slot arrays), which need not be the ones trainable when the file is loaded: a layer
frozen or unfrozen after compile takes effect at the next compile, as in Keras, and
loading compiles.  The state of each weight that is trainable both times is carried over
(as a recompile carries it), a newly trainable weight starts from zeros.

The model config follows Keras 3 (keras/src/models/functional.py, sequential.py): a
Sequential lists its layers (its InputLayer first); a functional model lists its layers,
each with the calls that made its nodes ("inbound_nodes": the input tensors as
{"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, tensor]}} and
the call's training argument), and its "input_layers" / "output_layers".  Nested models
are layers with their own config; shared layers have several inbound nodes; each layer
keeps its `trainable` flag.  `model.get_config()` / `Model.from_config()` and
`model.to_json()` / `pynn.models.model_from_json()` use the same format.  Files of the
first format (version 1, Sequential models only) still load.

`model.save_weights(path)` writes the same zip with only the weights and
{"format": "pynn-weights", "version": 2, "weights": [...]}; `model.load_weights(path)`
reads either kind of file, of either version.

Safety.  Nothing in a file is ever executed or imported: class names are looked up in
allow-lists of pynn's own layers, models, losses and optimizers, arrays are read with
`np.load(allow_pickle=False)` (so no object arrays), and every shape and dtype is checked
against the rebuilt model before anything is assigned.  A file that is truncated,
corrupt, not a zip, or not a pynn file raises ModelFileError (a ValueError) saying what
is wrong; a missing file raises FileNotFoundError.

Atomicity.  A save writes a temporary file `.<name>.<pid>.<random>.tmp` in the target's
folder, holding an exclusive lock on it (flock, where the system has it), flushes and
fsyncs it and then renames it over the target (`os.replace`, atomic on POSIX and
Windows), so a crash mid-save leaves the previous file intact.  A save killed before the
rename leaves its temporary file behind, unlocked: the next save to the same target
removes every such file no live save holds, so there is never more than one temporary
file per target and saving process.
"""
import errno
import io
import json
import os
import re
import secrets
import stat
import zipfile
import zlib

import numpy as np

try:
    import fcntl
except ImportError:          # Windows: a file another process has open cannot be removed
    fcntl = None

MODEL_FORMAT = "pynn-model"
WEIGHTS_FORMAT = "pynn-weights"
VERSION = 2
_READABLE_VERSIONS = (1, 2)
_CONFIG = "pynn_model.json"
_MAX_JSON_BYTES = 64 << 20


from .serialization import ModelFileError, deserialize, deserialize_layer, serialize
from . import serialization


# ---- writing -----------------------------------------------------------------------------------

def _weight_entries(model):
    """[(description, array)] for model.get_weights(): the same arrays in the same order
    that set_weights takes back."""
    return [({"path": v.path, "shape": list(v.shape)}, v.numpy()) for v in model.weights]


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _atomic_write_zip(path, members, overwrite):
    """Write `members` ([(name, bytes)]) as a zip at `path` through a temporary file in the
    same folder, locked while it is written, fsync'd and then renamed over `path`; first
    remove the temporary files that killed saves to `path` left behind."""
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_abandoned_temps(folder, base)
    tmp, f = _new_temp(folder, base)
    try:
        with f:
            with zipfile.ZipFile(f, "w") as zf:
                for name, data in members:
                    compress = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
                    zf.writestr(name, data, compress_type=compress)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:      # renamed while still locked: no cleaner can take it
                os.replace(tmp, path)
        if fcntl is None:              # Windows renames only closed files
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


def _temp_pattern(base):
    """The names of the temporary files of saves to `base` (this release's and the
    previous one's): .<base>.<pid>.<8 hex digits>.tmp"""
    return re.compile(re.escape(f".{base}.") + r"(\d+)\.[0-9a-f]{8}\.tmp\Z")


def _new_temp(folder, base):
    """(path, open binary file) of a fresh temporary file for a save to folder/base,
    locked.  A fresh name opened exclusively (not mkstemp, whose 0600 mode would outlive
    the rename): the saved file gets the permissions any other new file of the user gets."""
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        if _lock(fd, wait=True) == "locked" and not _same_file(tmp, fd):
            os.close(fd)    # a cleaner took it for abandoned before the lock: another name
            continue
        return tmp, os.fdopen(fd, "wb")
    raise FileExistsError(f"cannot create a temporary file for {base!r} in {folder!r}")


def _lock(fd, wait):
    """Lock `fd` exclusively: "locked", "busy" (another open file holds the lock; only
    when not waiting) or "unsupported" (no flock here, or not on this file system)."""
    if fcntl is None:
        return "unsupported"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return "locked"
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return "busy"
        return "unsupported"


def _same_file(path, fd):
    """Whether `path` still names the regular file open as `fd`."""
    try:
        a, b = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISREG(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _remove_abandoned_temps(folder, base):
    """Remove the temporary files of earlier saves to folder/base that no live save
    holds: those of saves killed before their rename (kill -9, power loss)."""
    pattern = _temp_pattern(base)
    try:
        found = [(e.name, int(m.group(1))) for e in os.scandir(folder)
                 for m in [pattern.match(e.name)] if m]
    except OSError:
        return
    for name, pid in found:
        tmp = os.path.join(folder, name)
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) |
                         getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        try:
            state = _lock(fd, wait=False)
            if state == "busy":
                continue                               # a save in progress
            if state == "unsupported" and fcntl is not None and _process_alive(pid):
                continue                               # no locks here: trust a live pid
            if fcntl is None:
                os.close(fd)
                fd = None                              # Windows: removable only if nobody has it open
            elif not _same_file(tmp, fd):
                continue
            os.unlink(tmp)
        except OSError:
            pass
        finally:
            if fd is not None:
                os.close(fd)


def _process_alive(pid):
    """POSIX only (on Windows os.kill would end the process)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def save_model(model, path, overwrite=True):
    entries = _weight_entries(model) if model.built else []
    compile_cfg = opt_state = None
    members = []
    compiled = model.compile_config()
    if compiled is not None:
        loss, loss_weights, metrics, backend_name, optimizer = compiled

        def ser_loss(l):
            from . import losses as losses_module
            if l is None:
                return None
            if isinstance(l, dict):
                return {k: ser_loss(v) for k, v in l.items()}
            if isinstance(l, (list, tuple)):
                return [ser_loss(v) for v in l]
            return serialize(losses_module.get(l))

        compile_cfg = {"optimizer": serialize(optimizer), "loss": ser_loss(loss),
                       "loss_weights": loss_weights, "metrics": metrics, "backend": backend_name}
        state = optimizer.state_arrays()
        if state is not None:
            names = sorted(state)
            for name in names:
                members.append((f"optimizer/000/{name}.npy", _npy_bytes(state[name])))
            opt_state = {"iterations": int(optimizer.iterations), "slots": [names],
                         "weights": optimizer.state_paths()}
        else:
            opt_state = {"iterations": int(optimizer.iterations), "slots": None}
    config = {"format": MODEL_FORMAT, "version": VERSION, "model": serialize(model),
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
        if config.get("version") not in _READABLE_VERSIONS:
            raise ModelFileError(f"{self.path}: format version {config.get('version')!r:.50} is not "
                                 f"one this pynn reads (versions {list(_READABLE_VERSIONS)})")
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
    expected = [(v.path, v.shape) for v in model.weights]
    if not isinstance(listed, list) or len(listed) != len(expected):
        n = len(listed) if isinstance(listed, list) else "no"
        raise ModelFileError(f"{archive.path}: the file holds {n} weight arrays, model "
                             f"'{model.name}' has {len(expected)}")
    arrays = []
    for i, (entry, (path, shape)) in enumerate(zip(listed, expected)):
        if not isinstance(entry, dict) or tuple(entry.get("shape") or ()) != shape:
            got = entry.get("shape") if isinstance(entry, dict) else entry
            raise ModelFileError(f"{archive.path}: weight {i} ({path}) has shape {got!r:.100} "
                                 f"in the file, the model expects {list(shape)}")
        arrays.append(archive.array(f"weights/{i:03d}.npy", shape))
    return arrays


def _rebuild_v1(config, path):
    """A model of the first format: a Sequential and its layers' configs."""
    from .layers.base import check_shape_arg
    spec = config.get("model")
    if not isinstance(spec, dict) or spec.get("class_name") != "Sequential" or \
            not isinstance(spec.get("layers"), list):
        raise ModelFileError(f"{path}: expected a Sequential model description, found {spec!r:.200}")
    classes = serialization.layer_classes()
    layers = [deserialize(entry, classes, "layer", path) for entry in spec["layers"]]
    name = spec.get("name")
    try:
        model = classes["Sequential"](name=name if isinstance(name, str) and name else None)
        for layer in layers:
            model.add(layer, rebuild=False)
        model._maybe_rebuild()
        if spec.get("input_shape") is not None and not model.built:
            shape = check_shape_arg(spec["input_shape"], "input_shape", f"{path}: model")
            model.build((None,) + shape)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot rebuild the model: {exc}") from None
    return model


def _rebuild(config, path):
    if config.get("version") == 1:
        return _rebuild_v1(config, path)
    return deserialize_layer(config.get("model"), where=path)


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
            optimizer = deserialize(cfg.get("optimizer"), serialization.optimizer_classes(),
                                    "optimizer", archive.path)

            def de_loss(entry):
                if entry is None:
                    return None
                if isinstance(entry, list):
                    return [de_loss(e) for e in entry]
                if isinstance(entry, dict) and "class_name" not in entry:
                    return {k: de_loss(v) for k, v in entry.items()}
                return deserialize(entry, serialization.loss_classes(), "loss", archive.path)

            loss = de_loss(cfg.get("loss"))
            if backend is None:
                saved = cfg.get("backend")
                backend = saved if saved in ("cpu", "numpy") else None
                if saved == "cuda" and backends.cuda_available():
                    backend = "cuda"
            try:
                model.compile(optimizer=optimizer, loss=loss, loss_weights=cfg.get("loss_weights"),
                              metrics=cfg.get("metrics"), backend=backend)
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"{archive.path}: cannot compile the saved model: {exc}") from None
            if weights:
                model.set_weights(weights)
            _load_optimizer_state(archive, config, model)
        else:
            if backend is not None:
                model.set_backend(backend)
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
        wanted = model.optimizer_state_shapes()
        if not isinstance(saved, list) or len(saved) != 1 or not isinstance(saved[0], list) or \
                sorted(saved[0]) != sorted(wanted):
            raise ModelFileError(f"{archive.path}: the optimizer state holds slots {saved!r:.200}, a "
                                 f"{type(optimizer).__name__} with this configuration has "
                                 f"{[sorted(wanted)]}")
        covered = state.get("weights")
        if covered is None:                    # files before "weights": the same layout
            values = {name: archive.array(f"optimizer/000/{name}.npy", shape)
                      for name, shape in wanted.items()}
        else:
            values = _carried_state(archive, config, covered, model, wanted)
        optimizer.set_state_arrays(values)
    optimizer.iterations = state["iterations"]


def _carried_state(archive, config, saved_paths, model, wanted):
    """The slot arrays for the loaded model's trainable weights (`wanted`: their shapes)
    from a file whose slots cover the weights `saved_paths`: each weight in both keeps its
    state, the others start from zeros."""
    sizes = {}
    for entry in config.get("weights") or []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            sizes[entry["path"]] = int(np.prod(entry.get("shape") or (), dtype=np.int64))
    if not isinstance(saved_paths, list) or \
            not all(isinstance(p, str) and p in sizes for p in saved_paths) or \
            len(set(saved_paths)) != len(saved_paths):
        raise ModelFileError(f"{archive.path}: the optimizer state covers {saved_paths!r:.200}, "
                             "which are not the paths of distinct weights in the file")
    model_sizes = {v.path: v.size for v in model.weights}
    saved_at, start = {}, 0
    for p in saved_paths:
        saved_at[p] = (start, sizes[p])
        start += sizes[p]
    values = {}
    for name, shape in wanted.items():
        saved = archive.array(f"optimizer/000/{name}.npy", (max(start, 1),))
        value = np.zeros(shape, np.float32)
        at = 0
        for p in model.optimizer.state_paths():
            size = model_sizes[p]
            if p in saved_at and saved_at[p][1] == size:
                o = saved_at[p][0]
                value[at:at + size] = saved[o:o + size]
            at += size
        values[name] = value
    return values


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


def model_from_json(json_string):
    """The model described by `model.to_json()` (new weights)."""
    try:
        spec = json.loads(json_string)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"model_from_json: not valid JSON ({exc})") from None
    return deserialize_layer(spec, where="model_from_json")
