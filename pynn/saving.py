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
against the rebuilt model before anything is assigned.  A missing file raises
FileNotFoundError; any other file that is not a valid pynn file raises ModelFileError (a
ValueError) saying what is wrong, where (file, member, layer), what was expected and what
was found, and nothing else: a hostile file costs memory and time in proportion to its
size, never more.  Before anything is read:
  - the path must be a regular file (a FIFO or a device such as /dev/zero is refused
    without being read, so loading never hangs on one);
  - every member the load reads must be stored or deflated, unencrypted, lie inside the
    file, and not claim more than deflate can inflate; the members together may inflate
    to at most 16 MiB + 4 times the file's size, pynn_model.json to at most 2 MiB + a
    quarter of the file's size (each member is inflated only up to its declared size);
  - each weight the config lists must be backed by its member's size, and while the
    model is rebuilt a layer may create only weights the file lists with that path and
    shape (pynn.layers.base.weights_from_file), so a config that would build bigger
    layers than the file holds is refused before any memory is allocated for them;
  - every config value goes through the constructor of its layer, initializer, loss or
    optimizer, which refuse wrong types and out-of-range values (pynn/checks.py), and the
    backend, step count and compile settings are checked alike.

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
import struct
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
_MAX_JSON_BYTES = 64 << 20           # pynn_model.json: 2 MiB + a quarter of the file, at most this
_MAX_ITERATIONS = 2**53              # an optimizer's step count (exact as a double)
_NPY_HEADER = 4096                   # the most a .npy header of a weight may take
_DEFLATE_RATIO = 1032                # deflate never inflates more than this (plus a little)

from .checks import check_int, shown
from .layers.base import check_shape_arg, weights_from_file
from .serialization import ModelFileError, deserialize, deserialize_layer, serialize
from . import serialization

# what a damaged file makes zipfile, zlib, json, np.load or a constructor raise; a load
# turns any of them into ModelFileError (RuntimeError covers NotImplementedError and
# RecursionError, ValueError covers UnicodeDecodeError, OSError read errors)
_BROKEN = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, OSError, ValueError,
           LookupError, TypeError, AttributeError, ArithmeticError, RuntimeError, MemoryError)


# ---- writing -----------------------------------------------------------------------------------

def _weight_entries(model):
    """[(description, array)] for model.get_weights(): the same arrays in the same order
    that set_weights takes back."""
    return [({"path": v.path, "shape": list(v.shape)}, v.numpy()) for v in model.weights]


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array).reshape(np.shape(array)), allow_pickle=False)   # 0-d stays 0-d
    return buf.getvalue()


def _atomic_write_zip(path, members, overwrite):
    """Write `members` ([(name, bytes)]) as a zip at `path` through a temporary file in the
    same folder, locked while it is written, fsync'd and then renamed over `path`; first
    remove the temporary files that killed saves to `path` left behind."""
    def write(f):
        with zipfile.ZipFile(f, "w") as zf:
            for name, data in members:
                compress = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
                zf.writestr(name, data, compress_type=compress)
    _atomic_write(path, write, overwrite)


def _atomic_write_bytes(path, data, overwrite):
    """`data` written at `path` as _atomic_write_zip writes a zip."""
    _atomic_write(path, lambda f: f.write(data), overwrite)


def _atomic_write(path, write, overwrite):
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    os.makedirs(folder, exist_ok=True)       # "training_2/cp-0000.weights.h5" (TF tutorial)
    _remove_abandoned_temps(folder, base)
    tmp, f = _new_temp(folder, base)
    try:
        with f:
            write(f)
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


def _keras_format_available(path, what):
    """Whether a save to `path` writes Keras's own format: a .keras (or, for weights,
    .weights.h5) name and h5py installed.  Without h5py such a name gets pynn's own zip,
    which pynn.load_model reads but Keras does not, and a warning says so."""
    name = os.fspath(path)
    name = name.decode() if isinstance(name, bytes) else name
    if not name.endswith((".keras",) if what == "model" else (".weights.h5",)):
        return False
    try:
        import h5py  # noqa: F401
    except ImportError:
        import warnings
        warnings.warn(f"{name}: h5py is not installed, so this file is written in pynn's own "
                      'format, which Keras cannot open; pip install "pynn[keras]" for Keras\'s',
                      stacklevel=3)
        return False
    return True


def save_model(model, path, overwrite=True):
    """`model.save(path)`: Keras 3's .keras archive for a .keras name (pynn/export/
    keras_format.py), pynn's own zip (this module's format) for any other name."""
    if _keras_format_available(path, "model"):
        from .export import keras_format
        keras_format.save_keras(model, path, overwrite)
        return
    _save_pynn_model(model, path, overwrite)


def serialize_losses(loss):
    """compile()'s loss argument (one, a list or a dict of losses) as configs."""
    from . import losses as losses_module
    if loss is None:
        return None
    if isinstance(loss, dict):
        return {k: serialize_losses(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [serialize_losses(v) for v in loss]
    return serialize(losses_module.get(loss))


def serialize_metrics(metrics):
    """compile()'s metrics (names, Metric objects, lists or dicts of them): Metric objects as
    configs, names as they are."""
    from . import metrics as metrics_module
    if isinstance(metrics, metrics_module.Metric):
        return serialize(metrics)
    if isinstance(metrics, dict):
        return {k: serialize_metrics(v) for k, v in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [serialize_metrics(v) for v in metrics]
    return metrics                            # a name


def check_savable_optimizer(optimizer):
    """TypeError for an optimizer a model file cannot hold (a Python-callable learning rate)."""
    if getattr(optimizer, "steps_in_python", False):
        raise TypeError(f"save: the optimizer's learning_rate is a Python callable "
                        f"({shown(optimizer._learning_rate)}), which a model file cannot "
                        f"hold; give it a number or a pynn.optimizers.schedules schedule, "
                        f"or save with model.save_weights")


def _save_pynn_model(model, path, overwrite=True):
    entries = _weight_entries(model) if model.built else []
    compile_cfg = opt_state = None
    members = []
    compiled = model.compile_config()
    if compiled is not None:
        loss, loss_weights, metrics, backend_name, optimizer = compiled

        check_savable_optimizer(optimizer)
        compile_cfg = {"optimizer": serialize(optimizer), "loss": serialize_losses(loss),
                       "loss_weights": loss_weights, "metrics": serialize_metrics(metrics),
                       "backend": backend_name}
        weighted = model.compile_weighted_metrics()
        if weighted is not None:
            compile_cfg["weighted_metrics"] = serialize_metrics(weighted)
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
    if _keras_format_available(path, "weights"):
        from .export import keras_format
        keras_format.save_keras_weights(model, path, overwrite)
        return
    entries = _weight_entries(model)
    config = {"format": WEIGHTS_FORMAT, "version": VERSION, "weights": [e for e, _ in entries]}
    members = [(_CONFIG, json.dumps(config, indent=1).encode("utf-8"))] + \
              [(f"weights/{i:03d}.npy", _npy_bytes(w)) for i, (_, w) in enumerate(entries)]
    _atomic_write_zip(path, members, overwrite)


# ---- reading -----------------------------------------------------------------------------------

def _open_regular_file(path):
    """(binary file, size) of the regular file at `path`: anything else (a directory, a FIFO,
    a device such as /dev/zero) is refused before it is read, so nothing blocks or reads
    forever.  The file is opened without blocking and checked again once open, in case the
    path changed in between."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"No such file: {path!r}") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot be read as a pynn model file ({exc})") from None
    _require_regular(path, st)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) |
                     getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"No such file: {path!r}") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read as a pynn model file ({exc})") from None
    try:
        st = os.fstat(fd)
        _require_regular(path, st)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


def _require_regular(path, st):
    if stat.S_ISREG(st.st_mode):
        return
    kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
            else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket"
            if stat.S_ISSOCK(st.st_mode) else "not a regular file")
    raise ModelFileError(f"{path}: expected a pynn model file (a regular file), found {kind}")


def _inflate_budget(size):
    """The most the members of a file of `size` bytes may inflate to, together: what any
    pynn file needs (its arrays are stored, not deflated) with room for a re-zipped one."""
    return (16 << 20) + 4 * size


class _Archive:
    """Read access to a pynn zip that turns every way of being broken into ModelFileError
    and inflates nothing beyond what the file's size and config allow."""

    def __init__(self, path):
        self.path = os.fsdecode(os.fspath(path))      # a str, for the messages
        self.file, self.size = _open_regular_file(self.path)
        try:
            self.zip = zipfile.ZipFile(self.file, "r")
            self._check_directory()
        except BaseException as exc:
            zip_like = isinstance(exc, zipfile.BadZipFile) and self._starts_like_zip()
            self.file.close()
            if isinstance(exc, ModelFileError):
                raise
            if isinstance(exc, zipfile.BadZipFile):
                if zip_like:
                    raise ModelFileError(f"{self.path}: the file is truncated or damaged (a zip "
                                         "archive whose directory at the end is missing or "
                                         f"unreadable: {exc})") from None
                raise ModelFileError(f"{self.path}: not a pynn model file (not a zip "
                                     "archive)") from None
            if isinstance(exc, _BROKEN):
                raise ModelFileError(f"{self.path}: the zip directory is unreadable "
                                     f"({type(exc).__name__}: {shown(str(exc), 200)})") from None
            raise

    def _starts_like_zip(self):
        try:
            self.file.seek(0)
            return self.file.read(4) == b"PK\x03\x04"
        except (OSError, ValueError):
            return False

    def _check_directory(self):
        """Members lie inside the file and do not overlap (their compressed sizes add up to
        no more than the file), and all of them together inflate to at most
        _inflate_budget: checked on the directory, before any member is read."""
        packed = inflated = 0
        for info in self.zip.infolist():
            if info.header_offset + info.compress_size > self.size:
                raise ModelFileError(f"{self.path}: member {shown(info.filename)} claims "
                                     f"{info.compress_size} bytes at offset {info.header_offset}, "
                                     f"beyond the end of the file ({self.size} bytes); the file is "
                                     "truncated or corrupt")
            packed += info.compress_size
            inflated += info.file_size
        if packed > self.size:
            raise ModelFileError(f"{self.path}: the members claim {packed} compressed bytes in a "
                                 f"file of {self.size} bytes: they overlap (a zip bomb) or the "
                                 "zip directory is corrupt")
        if inflated > _inflate_budget(self.size):
            raise ModelFileError(f"{self.path}: the members would inflate to {inflated} bytes, "
                                 f"more than the {_inflate_budget(self.size)} a file of "
                                 f"{self.size} bytes may hold (a zip bomb, or a corrupt zip "
                                 "directory)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.zip.close()
        self.file.close()

    def info(self, name):
        """The checked directory entry of member `name`: present, unencrypted, stored or
        deflated, and claiming no more than deflate can inflate."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise ModelFileError(f"{self.path}: member {name!r} is missing; the file is incomplete "
                                 "or not a pynn file") from None
        if info.flag_bits & 0x61:          # encrypted, strongly encrypted, patch data
            raise ModelFileError(f"{self.path}: member {name!r} is encrypted (zip flags "
                                 f"{info.flag_bits:#x}); pynn files are not")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(f"{self.path}: member {name!r} uses zip compression method "
                                 f"{info.compress_type}; pynn files use stored (0) or deflate (8)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size or \
                info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
            raise ModelFileError(f"{self.path}: member {name!r} claims {info.compress_size} "
                                 f"bytes that inflate to {info.file_size}, which "
                                 f"{'stored data' if info.compress_type == 0 else 'deflate'} "
                                 "cannot: the zip directory is corrupt (or a zip bomb)")
        return info

    def read(self, name, limit):
        """The bytes of member `name`, which may inflate to at most `limit` bytes; it is
        inflated only up to its declared size, so a member that lies inflates no further."""
        info = self.info(name)
        if info.file_size > limit:
            raise ModelFileError(f"{self.path}: member {name!r} is {info.file_size} bytes, more than "
                                 f"the {limit} it can be")
        try:
            with self.zip.open(info) as f:
                data = f.read(info.file_size)      # bounded reads: never a whole-stream inflate
        except _BROKEN as exc:
            raise ModelFileError(f"{self.path}: member {name!r} is corrupt ({type(exc).__name__}: "
                                 f"{shown(str(exc), 200)})") from None
        if len(data) != info.file_size:
            raise ModelFileError(f"{self.path}: member {name!r} holds {len(data)} bytes, its "
                                 f"directory entry says {info.file_size}; the file is corrupt")
        return data

    def config(self, formats):
        if _CONFIG not in self.zip.namelist():
            raise ModelFileError(f"{self.path}: not a pynn file ({_CONFIG} is missing)")
        # about 2000 layers' worth for a small file: parsed, a JSON of n bytes can take
        # some 20 n bytes of Python objects ("[]," repeated), so this bounds the memory too
        limit = min(_MAX_JSON_BYTES, (2 << 20) + self.size // 4)
        raw = self.read(_CONFIG, limit)
        try:
            config = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelFileError(f"{self.path}: {_CONFIG} is not valid JSON ({exc})") from None
        if not isinstance(config, dict) or config.get("format") not in formats:
            found = config.get("format") if isinstance(config, dict) else type(config).__name__
            raise ModelFileError(f"{self.path}: expected a file of format {' or '.join(formats)}, "
                                 f"found {shown(found, 100)}")
        version = config.get("version")
        if type(version) is not int or version not in _READABLE_VERSIONS:
            raise ModelFileError(f"{self.path}: format version {shown(version, 50)} is not "
                                 f"one this pynn reads (versions {list(_READABLE_VERSIONS)})")
        return config

    def array(self, name, shape):
        """The float32 array `name`, which must have `shape`."""
        shape = tuple(int(d) for d in shape)
        expected = int(np.prod(shape, dtype=np.int64)) * 4
        data = self.read(name, expected + _NPY_HEADER)
        buf = io.BytesIO(data)
        try:   # the header first: np.load would allocate whatever shape it claims
            version = np.lib.format.read_magic(buf)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            claimed, _, dtype = read_header(buf)
        except _BROKEN as exc:
            raise ModelFileError(f"{self.path}: {name} is not a valid .npy array ({exc})") from None
        if dtype != np.float32:
            raise ModelFileError(f"{self.path}: {name} holds {dtype}, expected float32")
        if tuple(claimed) != shape:
            raise ModelFileError(f"{self.path}: {name} has shape {tuple(claimed)}, the model "
                                 f"expects {shape}")
        try:
            buf.seek(0)
            arr = np.load(buf, allow_pickle=False)
        except _BROKEN as exc:
            raise ModelFileError(f"{self.path}: {name} is not a valid .npy array ({exc})") from None
        del data, buf
        if arr.dtype != np.float32 or arr.shape != shape:
            raise ModelFileError(f"{self.path}: {name} is not a float32 array of shape {shape}")
        if not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{self.path}: {name} contains NaN or infinite values")
        return arr


def _file_weights(archive, config):
    """[(path, shape)] of the weights the file lists, each checked before any layer is
    built: a list of positive sizes, backed by a member of matching size (so the config
    cannot promise more weight values than the file holds)."""
    listed = config.get("weights")
    if listed is None:
        return []
    if not isinstance(listed, list):
        raise ModelFileError(f"{archive.path} ({_CONFIG}): expected 'weights' as a list of "
                             f"{{'path', 'shape'}}, found {shown(listed)}")
    entries = []
    for i, entry in enumerate(listed):
        where = f"{archive.path} ({_CONFIG}): weight {i}"
        path = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and path is None and isinstance(entry.get("layer"), str) and \
                isinstance(entry.get("name"), str):
            path = f"{entry['layer']}/{entry['name']}"            # version 1
        if not isinstance(path, str) or not isinstance(entry.get("shape"), list):
            raise ModelFileError(f"{where}: expected {{'path': str, 'shape': [...]}}, found "
                                 f"{shown(entry)}")
        try:
            shape = check_shape_arg(entry["shape"], "shape", f"{where} ({shown(path)})") \
                if entry["shape"] else ()
        except ValueError as exc:
            raise ModelFileError(str(exc)) from None
        member = f"weights/{i:03d}.npy"
        size = archive.info(member).file_size
        need = 4 * int(np.prod(shape, dtype=np.int64))
        if not need < size <= need + _NPY_HEADER:
            bound = f"more than the {need + _NPY_HEADER}" if size > need else \
                f"fewer than the {need + 1}"
            raise ModelFileError(f"{where} ({shown(path)}) has shape {list(shape)} in the file "
                                 f"({need} bytes of float32), but member {member} holds "
                                 f"{size} bytes, {bound} it needs")
        entries.append((path, shape))
    return entries


def _read_weights(archive, listed, model):
    """The weight arrays of `archive` (`listed`: its checked (path, shape) list), checked
    against the built `model`."""
    expected = [(v.path, v.shape) for v in model.weights]
    if len(listed) != len(expected):
        raise ModelFileError(f"{archive.path}: the file holds {len(listed)} weight arrays, model "
                             f"'{model.name}' has {len(expected)}")
    arrays = []
    for i, ((_, got), (path, shape)) in enumerate(zip(listed, expected)):
        if tuple(got) != tuple(shape):
            raise ModelFileError(f"{archive.path}: weight {i} ({path}) has shape {list(got)} "
                                 f"in the file, the model expects {list(shape)}")
        arrays.append(archive.array(f"weights/{i:03d}.npy", shape))
    return arrays


def _rebuild_v1(config, where):
    """A model of the first format: a Sequential and its layers' configs."""
    spec = config.get("model")
    if not isinstance(spec, dict) or spec.get("class_name") != "Sequential" or \
            not isinstance(spec.get("layers"), list):
        raise ModelFileError(f"{where}: expected a Sequential model description, found "
                             f"{shown(spec, 200)}")
    classes = serialization.layer_classes()
    serialization.check_layer_count(spec["layers"], where)
    layers = [deserialize(entry, classes, "layer", where) for entry in spec["layers"]]
    name = spec.get("name")
    try:
        model = classes["Sequential"](name=name if isinstance(name, str) and name else None)
        for layer in layers:
            model.add(layer, rebuild=False)
        model._maybe_rebuild()
        if spec.get("input_shape") is not None and not model.built:
            shape = check_shape_arg(spec["input_shape"], "input_shape", f"{where}: model",
                                    allow_none=True)
            model.build((None,) + shape)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: cannot rebuild the model: {exc}") from None
    return model


def _rebuild(config, where):
    if config.get("version") == 1:
        return _rebuild_v1(config, where)
    return deserialize_layer(config.get("model"), where=where)


class _Refusing:
    """Around a load: any error a damaged file provokes becomes a ModelFileError that
    names the file (and its config member, for errors from rebuilding the model)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            return False
        if isinstance(exc, ModelFileError):
            if str(exc).startswith(self.path):
                return False
            raise ModelFileError(f"{self.path} ({_CONFIG}): {exc}") from None
        if isinstance(exc, _BROKEN):
            raise ModelFileError(f"{self.path}: not a valid pynn file ({type(exc).__name__}: "
                                 f"{shown(str(exc), 300)})") from None
        return False


_BACKENDS = ("cpu", "numpy", "cuda")


def load_model(path, compile=True, backend=None):
    """Rebuild the model saved at `path` by `model.save`: same layers, weights and (with
    compile=True) the same optimizer, loss, metrics and optimizer state, so it predicts
    identically and `fit` continues where it stopped.  backend: where it computes (default:
    the one it was saved from when it can run here, else pynn's default)."""
    from . import backend as backends
    if backend is not None:          # the caller's argument: refused as such, not as the file's
        backends.get(backend, "load_model")
    with _Archive(path) as archive, _Refusing(archive.path):
        if _CONFIG not in archive.zip.namelist() and "config.json" in archive.zip.namelist():
            from .export import keras_format          # a Keras 3 .keras archive
            return keras_format.load_keras(archive, compile=compile, backend=backend)
        where = f"{archive.path} ({_CONFIG})"
        config = archive.config((MODEL_FORMAT,))
        listed = _file_weights(archive, config)
        with weights_from_file(listed, where):
            model = _rebuild(config, where)
        if not isinstance(model, serialization.model_base_class()):
            raise ModelFileError(f"{where}: expected a model, found a "
                                 f"{type(model).__name__} layer")
        if listed and not model.built:
            raise ModelFileError(f"{archive.path}: the file holds weights but no input shape")
        weights = _read_weights(archive, listed, model) if model.built else []
        cfg = config.get("compile")
        if compile and cfg is not None:
            if not isinstance(cfg, dict):
                raise ModelFileError(f"{where}: 'compile' must be an object, found {shown(cfg)}")
            optimizer = deserialize(cfg.get("optimizer"), serialization.optimizer_classes(),
                                    "optimizer", where)

            def de_loss(entry):
                if entry is None:
                    return None
                if isinstance(entry, list):
                    return [de_loss(e) for e in entry]
                if isinstance(entry, dict) and "class_name" not in entry:
                    return {k: de_loss(v) for k, v in entry.items()}
                return deserialize(entry, serialization.loss_classes(), "loss", where)

            loss = de_loss(cfg.get("loss"))
            saved = cfg.get("backend")
            if saved is not None and saved not in _BACKENDS:
                raise ModelFileError(f"{where}: unknown backend {shown(saved)} in 'compile'; "
                                     f"expected one of {', '.join(map(repr, _BACKENDS))}")
            if backend is None and saved is not None:
                backend = saved if saved != "cuda" or backends.cuda_available() else None
            def de_metrics(entry, depth=0):
                if isinstance(entry, dict) and "class_name" in entry:
                    return deserialize(entry, serialization.metric_classes(), "metric",
                                       archive.path)
                if depth < 2 and isinstance(entry, dict):
                    return {k: de_metrics(v, depth + 1) for k, v in entry.items()}
                if depth < 2 and isinstance(entry, list):
                    return [de_metrics(v, depth + 1) for v in entry]
                return entry                  # a name (compile checks it)

            metrics = de_metrics(cfg.get("metrics"))
            weighted_metrics = de_metrics(cfg.get("weighted_metrics"))
            try:
                model.compile(optimizer=optimizer, loss=loss, loss_weights=cfg.get("loss_weights"),
                              metrics=metrics, weighted_metrics=weighted_metrics,
                              backend=backend)
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"{archive.path}: cannot compile the saved model: {exc}") from None
            if weights:
                model.set_weights(weights)
            _load_optimizer_state(archive, config, listed, model)
        else:
            if backend is not None:
                model.set_backend(backend)
            if weights:
                model.set_weights(weights)
    return model


def _load_optimizer_state(archive, config, listed, model):
    """Restore the optimizer's step count and state arrays, checked against the state the
    compiled model's optimizer creates (names and shapes)."""
    state = config.get("optimizer_state")
    if state is None:
        return
    where = f"{archive.path} ({_CONFIG})"
    if not isinstance(state, dict):
        raise ModelFileError(f"{where}: expected 'optimizer_state' as an object, found "
                             f"{shown(state, 200)}")
    try:
        iterations = check_int(state.get("iterations"), "iterations", f"{where}: optimizer_state",
                               0, _MAX_ITERATIONS)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    optimizer = model.optimizer
    saved = state.get("slots")
    if saved is not None and model.built:
        wanted = model.optimizer_state_shapes()
        if not isinstance(saved, list) or len(saved) != 1 or not isinstance(saved[0], list) or \
                not all(isinstance(n, str) for n in saved[0]) or sorted(saved[0]) != sorted(wanted):
            raise ModelFileError(f"{archive.path}: the optimizer state holds slots "
                                 f"{shown(saved, 200)}, a {type(optimizer).__name__} with this "
                                 f"configuration has {[sorted(wanted)]}")
        covered = state.get("weights")
        if covered is None:                    # files before "weights": the same layout
            values = {name: archive.array(f"optimizer/000/{name}.npy", shape)
                      for name, shape in wanted.items()}
        else:
            values = _carried_state(archive, listed, covered, model, wanted)
        optimizer.set_state_arrays(values)
    optimizer.iterations = iterations


def _carried_state(archive, listed, saved_paths, model, wanted):
    """The slot arrays for the loaded model's trainable weights (`wanted`: their shapes)
    from a file whose slots cover the weights `saved_paths`: each weight in both keeps its
    state, the others start from zeros."""
    sizes = {path: int(np.prod(shape, dtype=np.int64)) for path, shape in listed}
    if not isinstance(saved_paths, list) or \
            not all(isinstance(p, str) and p in sizes for p in saved_paths) or \
            len(set(saved_paths)) != len(saved_paths):
        raise ModelFileError(f"{archive.path}: the optimizer state covers {shown(saved_paths, 200)}, "
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
    from .export import keras_format
    if keras_format.is_h5(path):                     # Keras's weights-only .weights.h5
        with _Refusing(os.fsdecode(os.fspath(path))):
            keras_format.load_keras_weights(model, path)
        return
    with _Archive(path) as archive, _Refusing(archive.path):
        if _CONFIG not in archive.zip.namelist() and "config.json" in archive.zip.namelist():
            keras_format.load_keras_archive_weights(model, archive)
            return
        config = archive.config((WEIGHTS_FORMAT, MODEL_FORMAT))
        weights = _read_weights(archive, _file_weights(archive, config), model)
    model.set_weights(weights)


def model_from_json(json_string):
    """The model described by `model.to_json()` (new weights)."""
    try:
        spec = json.loads(json_string)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"model_from_json: not valid JSON ({exc})") from None
    return deserialize_layer(spec, where="model_from_json")


def restore_training_state(model, path):
    """Set a compiled `model`'s weights and its optimizer's state (step count and slots)
    from a file written by `model.save` (BackupAndRestore's backups), both checked before
    either changes."""
    archive = _Archive(path)
    try:
        config = archive.config((MODEL_FORMAT,))
        listed = _file_weights(archive, config)
        weights = _read_weights(archive, listed, model)
        # the weights are matched by position (a new instance of the model has new layer
        # names); the optimizer state names the weights it covers by path: rename those
        renamed = {saved: v.path for (saved, _), v in zip(listed, model.weights)}
        listed = [(v.path, shape) for (_, shape), v in zip(listed, model.weights)]
        state = config.get("optimizer_state")
        if isinstance(state, dict) and isinstance(state.get("weights"), list):
            config = dict(config, optimizer_state=dict(state, weights=[
                renamed.get(p, p) if isinstance(p, str) else p for p in state["weights"]]))
        iterations, slots = model.optimizer.iterations, model.optimizer.state_arrays()
        model_weights = model.get_weights()
        try:
            _load_optimizer_state(archive, config, listed, model)
            model.set_weights(weights)
        except BaseException:
            model.optimizer.iterations = iterations           # refused: as it was
            if slots is not None:
                model.optimizer.set_state_arrays(slots)
            model.set_weights(model_weights)
            raise
    finally:
        archive.close()
