"""Callbacks with Keras's hooks, the History that `fit` returns, and the progress bar."""
import sys
import time


class Callback:
    """Base class: override the hooks you need.  `self.model` and `self.params` are set
    by `fit` before `on_train_begin`."""

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
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass


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


def _format_logs(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def _format_time(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


class Progbar:
    """Keras-style progress: verbose=1 a bar redrawn in place on a terminal (only the final
    line of each epoch when output is not a terminal, so logs stay readable); verbose=2
    one line per epoch; verbose=0 nothing."""

    width = 20

    def __init__(self, target, verbose=1, stream=None):
        self.target = target
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def _line(self, current, logs, final):
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(current, 1)
        n = len(str(self.target))
        if self.verbose == 2:
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
        if not final and now - self._last_draw < 0.05:
            return
        self._last_draw = now
        line = self._line(current, logs, final)
        if self.verbose == 1 and self.interactive:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class ProgbarLogger(Callback):
    """Prints `Epoch i/n` and a Progbar per epoch (added by fit when verbose > 0)."""

    def __init__(self, verbose=1):
        super().__init__()
        self.verbose = verbose
        self._bar = None

    @property
    def redraws(self):
        """True when the bar is redrawn in place (verbose=1 on a terminal)."""
        return self.verbose == 1 and hasattr(sys.stdout, "isatty") and sys.stdout.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.params['epochs']}", flush=True)
        self._bar = Progbar(self.params["steps"], self.verbose)

    def on_train_batch_end(self, batch, logs=None):
        self._bar.update(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._bar.update(self.params["steps"], logs, final=True)


class CallbackList:
    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook):
        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)
        return call

    @property
    def wants_batch_hooks(self):
        """True when a callback overrides a per-batch hook (the fused epoch path must not
        skip them)."""
        return any(type(cb).on_train_batch_end is not Callback.on_train_batch_end or
                   type(cb).on_train_batch_begin is not Callback.on_train_batch_begin
                   for cb in self.callbacks if not isinstance(cb, ProgbarLogger))
