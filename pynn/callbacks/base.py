"""Callbacks with Keras's hooks and semantics.

  Callback            the base class (hooks: on_train_begin/end, on_epoch_begin/end,
                      on_train_batch_begin/end)
  History             what `fit` returns: per-epoch lists of every logged number
  ProgbarLogger       the progress output of `fit(verbose=...)` (Progbar draws it)
  EarlyStopping       stop when a monitored number stops improving
  ModelCheckpoint     save the model (or its weights) each epoch or at each new best
  LearningRateScheduler, ReduceLROnPlateau   change the optimizer's learning rate
  CSVLogger           one CSV row per epoch
  TerminateOnNaN      stop as soon as the loss is NaN or infinite
  BackupAndRestore    resume an interrupted fit from its last completed epoch
  LambdaCallback      a callback made of functions
  ActivationMonitor   what the hidden units do each epoch (monitoring.py)
"""
import collections
import csv
import math
import os
import sys
import time
import warnings

import numpy as np

from ..checks import is_int


class Callback:
    """Base class: override the hooks you need.  `self.model` and `self.params` are set
    by `fit` (evaluate, predict) before the first hook; `logs` is always a dict (`{}`
    where there is nothing yet): the loss and metrics so far (at epoch end also the `val_`
    ones), which a callback may add entries to.  fit's validation runs the on_test_*
    hooks, as Keras's does; predict's batch hooks get {"outputs": the batch's predictions}.

    Setting `self.model.stop_training = True` ends `fit` after the current epoch (after
    the current batch when training layer by layer).

    `fit` may train a whole epoch in one C call (the fused path).  It does so only when no
    callback overrides a per-batch hook, so a callback that does gets every batch.  A
    callback whose batch hook is happy with a call at the end of each *stretch* of steps,
    with the running-mean logs of the epoch so far (the progress bar, TerminateOnNaN),
    sets `coarse_batch_hooks = True` and keeps the fused path on.
    """

    coarse_batch_hooks = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass

    # Keras's older names: on_train_batch_* call them, so overriding either works.
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    # evaluate's hooks (also run by fit's validation) and predict's
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


class History(Callback):
    """Per-epoch lists of the loss and metrics: `history.history['loss']`, `history.epoch`."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self     # as Keras: the latest state, also mid-training


def _format_value(v):
    if isinstance(v, float) and v != 0.0 and math.isfinite(v) and abs(v) < 1e-3:
        return f"{v:.4e}"
    return f"{v:.4f}"


def _format_logs(logs):
    return " - ".join(f"{k}: {_format_value(v)}" for k, v in logs.items()
                      if isinstance(v, (int, float, np.number)))


def _format_time(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


class Progbar:
    """Keras-style progress: verbose=1 a bar redrawn in place on a terminal (only the final
    line of each epoch when output is not a terminal, so a log file gets one line per epoch
    and no redraws); verbose=2 one line per epoch; verbose=0 nothing.

    `stream` is where it writes (default: sys.stdout at the time of writing)."""

    width = 20
    interval = 0.05          # seconds between two redraws of the bar

    def __init__(self, target, verbose=1, stream=None):
        self.target = target
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interactive = is_terminal(self.stream)
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._drawn_width = 0

    def _line(self, current, logs, final):
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(current, 1)
        n = len(str(self.target))
        if self.target is None:            # a stream of unknown length (Keras: "Unknown")
            text = f"{current}/Unknown {_format_time(elapsed)} {_format_time(per_step)}/step"
        elif self.verbose == 2:
            text = f"{current}/{self.target} - {_format_time(elapsed)} - {_format_time(per_step)}/step"
        else:
            done = int(self.width * current / max(self.target, 1))
            bar = "━" * done + " " * (self.width - done)
            timing = _format_time(elapsed) if final else \
                f"{_format_time(per_step * (self.target - current))} eta"
            text = f"{current:>{n}}/{self.target} {bar} {timing} {_format_time(per_step)}/step"
        if logs:
            text += " - " + _format_logs(logs)
        return text

    def update(self, current, logs=None, final=False):
        if self.verbose == 0:
            return
        if not final and not (self.verbose == 1 and self.interactive):
            return
        now = time.perf_counter()
        if not final and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self._line(current, logs, final)
        if self.verbose == 1 and self.interactive:
            # pad over what a longer previous draw left on the line
            pad = " " * max(0, self._drawn_width - len(line))
            self._drawn_width = len(line)
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):     # no isatty, or a closed stream
        return False


class ProgbarLogger(Callback):
    """Prints `Epoch i/n` and a Progbar per epoch (added by fit when verbose > 0).
    `stream`: where to write (default: sys.stdout at the time of writing)."""

    coarse_batch_hooks = True     # a redraw per stretch of fused steps is all a bar needs

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self._stream = stream
        self._bar = None

    @property
    def stream(self):
        return self._stream or sys.stdout

    @property
    def redraws(self):
        """True when the bar is redrawn in place (verbose=1 on a terminal)."""
        return self.verbose == 1 and is_terminal(self.stream)

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            self.stream.write(f"Epoch {epoch + 1}/{self.params['epochs']}\n")
            self.stream.flush()
        # a stream of unknown length: "Unknown" in the first epoch, then what it gave
        self._bar = Progbar(self.params.get("steps") or self._learned, self.verbose,
                            self.stream)
        self._seen = 0

    _learned = None

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._bar.update(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps") or self._learned or self._seen
        if not self.params.get("steps"):
            self._learned = self._bar.target = self._seen
        self._bar.update(steps, logs, final=True)


_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


def _overrides(cb, hook):
    """True when `cb` has its own `hook`: its class overrides it, or it was given one (a
    LambdaCallback's functions)."""
    if hook in getattr(cb, "_given_hooks", ()):
        return True
    return getattr(type(cb), hook) is not getattr(Callback, hook)


class CallbackList:
    """The callbacks of one fit/evaluate/predict call.  Every hook gets a logs dict (`{}`
    where there is nothing yet), the same dict for every callback in turn, as Keras passes
    it (a callback may add entries that the next ones see)."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        takes_index = not hook.endswith(("_begin", "_end")) or "batch" in hook or \
            "epoch" in hook

        def call(*args, logs=None):
            args = list(args) + ([logs] if logs is not None else [])
            args += [None] * ((2 if takes_index else 1) - len(args))
            if args[-1] is None:
                args[-1] = {}
            for cb in self.callbacks:
                getattr(cb, hook)(*args)                # positional, as Keras calls them
        return call

    def wants_every_batch(self, kind="train"):
        """True when a callback needs the per-batch hooks of `kind` ("train", "test",
        "predict") at every batch: the fused path, a stretch of steps per C call, must then
        go step by step.  A callback content with a call per stretch (the progress bar)
        sets `coarse_batch_hooks`; one may also decide per instance (`needs_batch_hooks`)."""
        for cb in self.callbacks:
            decide = getattr(cb, "needs_batch_hooks", None)
            if decide is not None:
                if decide(kind):
                    return True
                continue
            if kind == "train" and cb.coarse_batch_hooks:
                continue
            if any(_overrides(cb, h) for h in _BATCH_HOOKS[kind]):
                return True
        return False

    @property
    def wants_batch_hooks(self):
        return self.wants_every_batch("train")


class LambdaCallback(Callback):
    """Keras's LambdaCallback: a callback made of functions, e.g.
    LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs)).  Epoch hooks take
    (epoch, logs), batch hooks (batch, logs), begin/end of train/test/predict (logs)."""

    _HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
              "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
              "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
              "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
              "on_predict_batch_end")

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        self._given_hooks = set()
        for name, fn in given.items():
            if name not in self._HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; expected one of "
                                f"{', '.join(self._HOOKS)}")
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: expected {name} to be a function, received "
                                f"{fn!r:.80}")
            setattr(self, name, fn)
            self._given_hooks.add(name)


# ---- the callbacks Keras users reach for -----------------------------------------------------

def _print(message):
    print(message, flush=True)


def _check_mode(mode, where):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{where}: expected mode 'auto', 'min' or 'max', received mode={mode!r}")
    return mode


def _maximizes(monitor, mode):
    """True when larger values of `monitor` are better.  mode "auto": Keras's rule, max for
    accuracies and AUC, min for everything else (losses, errors)."""
    if mode != "auto":
        return mode == "max"
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "acc" in name or "auc" in name


def check_folder(value, arg, where):
    """A folder path argument (BackupAndRestore's backup_dir, TensorBoard's log_dir): a
    non-empty str or os.PathLike."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{where}: expected {arg} to be a folder path, received {value!r}")


def _monitor_value(logs, monitor, who):
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{who} conditioned on metric `{monitor}` which is not available. Available "
                      f"metrics are: {','.join(logs or {})}", stacklevel=3)
        return None
    return float(value)


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved by more than `min_delta` for
    `patience` epochs (Keras semantics).

    mode: "min", "max" or "auto" (max for accuracies/AUC, min otherwise).  baseline: stop
    unless the monitored value gets better than it within `patience` epochs.
    restore_best_weights: at the end of training (stopped early or not) set the weights of
    the best epoch.  start_from_epoch: epochs to wait before watching.  A monitor missing
    from the logs warns and never stops.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        where = "EarlyStopping"
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"{where}: expected patience to be an integer >= 0, received {patience!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _check_mode(mode, where)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if _maximizes(self.monitor, self.mode):
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitor_value(logs, self.monitor, "Early stopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # the first epoch watched is the best so far
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model at the end of each epoch, or only when `monitor` improves
    (save_best_only).  `filepath` may hold `{epoch:02d}` (1-based, as Keras) and any log
    key, e.g. "ckpt/model-{epoch:02d}-{val_loss:.3f}.pynn"; missing folders are created.
    save_weights_only=True writes `model.save_weights`, otherwise `model.save` (the whole
    model with its optimizer state; see pynn/saving.py).  Writes are atomic.
    save_freq: "epoch", or N to save every N training batches (counted across epochs; the
    path may then hold `{batch}`, 1-based; fit then runs step by step)."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"ModelCheckpoint: expected filepath to be a path, received {filepath!r}")
        if save_freq != "epoch" and not (is_int(save_freq) and save_freq >= 1):
            raise ValueError(f"ModelCheckpoint: expected save_freq to be 'epoch' or a positive "
                             f"integer (a number of batches), received save_freq={save_freq!r}")
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self._current_epoch = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _check_mode(mode, "ModelCheckpoint")
        self._max = _maximizes(monitor, self.mode)
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = -math.inf if self._max else math.inf

    def _path(self, epoch, logs, batch=None):
        logs = dict(logs or {})
        if batch is not None and "batch" not in logs:
            logs["batch"] = batch + 1             # 1-based, as Keras
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise KeyError(f"ModelCheckpoint: filepath {self.filepath!r} names {exc}, which is not "
                           f"in the logs; available: epoch, {', '.join(logs)}") from None

    def needs_batch_hooks(self, kind):
        """Saving every `save_freq` batches needs every training batch."""
        return kind == "train" and self.save_freq != "epoch"

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        """save_freq=N: a save every N batches, counted across epochs (Keras 3)."""
        if self.save_freq == "epoch":
            return
        added = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            self._save(self._current_epoch, logs, batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, logs, None)

    def _save(self, epoch, logs, batch):
        path = self._path(epoch, logs, batch)
        if self.save_best_only:
            current = (logs or {}).get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available, skipping.",
                              stacklevel=2)
                return
            current = float(current)
            better = current > self.best if self._max else current < self.best
            if not better:
                if self.verbose > 0:
                    _print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                _print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                       f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            _print(f"Epoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class BackupAndRestore(Callback):
    """Keras's BackupAndRestore: the whole training state (weights, optimizer state and step
    count, where the fit is) is saved in `backup_dir` at the end of each epoch, or every
    `save_freq` batches when save_freq is an int; a `fit` that starts with a backup there
    restores it and goes on from there, so a run interrupted (Ctrl-C, a crash, SIGKILL) and
    started again with the same call finishes the same epochs.  The backup is deleted when
    training ends normally (delete_checkpoint).  double_checkpoint keeps the previous
    backup too, used when the latest cannot be read.

    Beyond Keras (which restarts an epoch backed up in its middle from its first batch),
    the resumed run ends with bitwise the weights of an uninterrupted one, also with
    shuffle=True and mid-epoch backups: the backup holds the step reached in the epoch,
    the random generator's state the epoch's order was drawn from, and the epoch's
    running log sums."""

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False,
                 delete_checkpoint=True):
        super().__init__()
        check_folder(backup_dir, "backup_dir", "BackupAndRestore")
        if save_freq != "epoch" and not (is_int(save_freq) and save_freq >= 1):
            raise ValueError("BackupAndRestore: expected save_freq to be 'epoch' or an integer "
                             f">= 1 (batches between backups), received save_freq={save_freq!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._metadata = os.path.join(self.backup_dir, "training_metadata.json")
        self._batches = 0

    # A backup is a model file backup-<k>.pynn (k counts up) and training_metadata.json,
    # which names the file and the position saved with it: {"latest": {"file", "position"},
    # "previous": ...}.  The file is written first, then the metadata is replaced in one
    # rename, then files it no longer names are removed: a run killed at any point leaves a
    # metadata file whose files exist and match it.

    def needs_batch_hooks(self, kind):
        """Backing up every `save_freq` batches needs every training batch."""
        return kind == "train" and self.save_freq != "epoch"

    def _read_metadata(self):
        import json
        try:
            with open(self._metadata, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _entry(self, meta, name):
        """(file path, position) of a backup the metadata lists, or None."""
        entry = meta.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or \
                os.path.basename(entry["file"]) != entry["file"]:
            return None
        position = entry.get("position")
        if not isinstance(position, dict):
            return None
        for key in ("epoch", "step", "seen"):
            value = position.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return None
        path = os.path.join(self.backup_dir, entry["file"])
        return (path, position) if os.path.isfile(path) else None

    def on_train_begin(self, logs=None):
        from ..saving import restore_training_state
        from ..saving import ModelFileError
        from ..models.trainer import Resume
        self._batches = 0
        position = getattr(self.model, "_fit_position", None)
        if position is not None:
            position.wanted = True
        meta = self._read_metadata()
        for name in ("latest", "previous") if self.double_checkpoint else ("latest",):
            entry = self._entry(meta, name)
            if entry is None:
                continue
            path, saved = entry
            try:
                restore_training_state(self.model, path)
            except ModelFileError as exc:
                warnings.warn(f"BackupAndRestore: cannot restore from {path}: {exc}",
                              stacklevel=2)
                continue
            self.model._initial_epoch = saved["epoch"]
            try:
                self.model._resume = Resume(saved)
            except (KeyError, TypeError, ValueError):
                pass
            return

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches += 1
        if self._batches >= self.save_freq:
            self._batches = 0
            self._backup()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._backup()

    def _backup(self):
        import json
        position = getattr(self.model, "_fit_position", None)
        if position is None:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        meta = self._read_metadata()
        latest = self._entry(meta, "latest")
        counter = meta.get("counter", 0)
        counter = counter + 1 if isinstance(counter, int) and counter >= 0 else 1
        name = f"backup-{counter}.pynn"
        self.model.save(os.path.join(self.backup_dir, name))
        new = {"counter": counter, "latest": {"file": name, "position": position.snapshot()}}
        if self.double_checkpoint and latest is not None:
            new["previous"] = meta["latest"]
        tmp = self._metadata + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(new, f)
        os.replace(tmp, self._metadata)
        self._remove_unlisted(new)

    def _remove_unlisted(self, meta):
        keep = {e["file"] for e in (meta.get("latest"), meta.get("previous")) if e}
        for entry in os.listdir(self.backup_dir):
            if entry.startswith("backup-") and entry.endswith(".pynn") and entry not in keep:
                try:
                    os.remove(os.path.join(self.backup_dir, entry))
                except OSError:
                    pass

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            self._remove_unlisted({})
            for path in (self._metadata, self._metadata + ".tmp"):
                if os.path.exists(path):
                    os.remove(path)
            try:
                os.rmdir(self.backup_dir)
            except OSError:
                pass                  # not empty (the user's files) or gone: leave it


class LearningRateScheduler(Callback):
    """At the start of each epoch set the optimizer's learning rate to
    `schedule(epoch, lr)` (epoch from 0, lr the current rate; a one-argument
    `schedule(epoch)` works too).  Logs the rate as "learning_rate"."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: expected schedule to be a function, "
                            f"received {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.model.optimizer.learning_rate)
        try:
            new = self.schedule(epoch, lr)
        except TypeError:        # Keras's old one-argument schedules
            new = self.schedule(epoch)
        if isinstance(new, bool) or not isinstance(new, (int, float, np.floating, np.integer)):
            raise ValueError('LearningRateScheduler: the output of the "schedule" function should '
                             f"be a float, received {new!r}")
        self.model.optimizer.learning_rate = float(new)
        if self.verbose > 0:
            _print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved by more than
    `min_delta` for `patience` epochs; then wait `cooldown` epochs; never below `min_lr`
    (Keras semantics).  Logs the rate as "learning_rate"."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not 0 <= factor < 1:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0 (or < 0); "
                             f"received factor={factor!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _check_mode(mode, "ReduceLROnPlateau")
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self):
        # Keras's rule here: "auto" maximizes when "acc" is in the monitor's name
        self._max = self.mode == "max" or (self.mode == "auto" and "acc" in self.monitor)
        self.best = -math.inf if self._max else math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def _improved(self, current):
        if self._max:
            return current > self.best + self.min_delta
        return current < self.best - self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        opt = self.model.optimizer
        logs["learning_rate"] = float(opt.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which "
                          f"is not available. Available metrics are: {','.join(logs)}.", stacklevel=2)
            return
        current = float(current)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(opt.learning_rate)
                if old > float(np.float32(self.min_lr)):
                    new = max(old * self.factor, self.min_lr)
                    opt.learning_rate = new
                    if self.verbose > 0:
                        _print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class CSVLogger(Callback):
    """Streams epoch results to a CSV file: a header row (epoch and the sorted log keys),
    then one row per epoch, flushed as it is written (Keras's layout, including its
    "NA" val_ columns when there is no validation data).  append=True continues a file."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self.writer = None
        self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        self.keys = None
        self.writer = None
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, "r", newline="") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            self.append_header = True
            mode = "w"
        self.csv_file = open(self.filename, mode, newline="")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}

        def value(key):
            v = logs.get(key, "NA")
            return v if isinstance(v, (str, int, float)) else float(v)

        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend("val_" + k for k in list(self.keys))
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys, dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = collections.OrderedDict({"epoch": epoch})
        row.update((k, value(k)) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
        self.csv_file = None
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training as soon as the loss is NaN or infinite.

    Keras checks the loss after every batch.  Here the check is the same batch hook, but
    marked `coarse_batch_hooks`, so the fused path keeps running whole stretches of steps
    in C and calls it at the end of each stretch (the end of the epoch when no progress
    bar is redrawn).  That loses nothing: the hook reads the epoch's *running mean* loss
    (Keras's batch logs are running means too), and a mean stays NaN or infinite once one
    step's loss was (losses are >= 0, so an inf cannot cancel), so the first non-finite
    step is always seen, at most one stretch later.  On the layer-by-layer path it runs
    every batch, exactly as in Keras.
    """

    coarse_batch_hooks = True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            _print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True

