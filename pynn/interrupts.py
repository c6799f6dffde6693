"""Ctrl-C during fit, evaluate and predict: a KeyboardInterrupt between steps.

Two things go wrong with Python's own handling of SIGINT here.  A whole epoch runs in one
C call (csrc/plan.c), and Python runs its handler only when that call returns, seconds
later.  And a KeyboardInterrupt raised between a step and its bookkeeping (the
optimizer's `iterations`, the History) leaves the two disagreeing.  So while a pynn call
runs on the main thread:

  - SIGINT's Python handler is `_record`, which notes the signal instead of raising;
  - pynn._core's C handler, in front of Python's, raises the flag the plan runner reads
    after each step (pynn_plan_feed.stop): a C run ends after the step the signal arrived
    in, its steps applied, and the Python executor stops at the same place;
  - the trainer, once it has counted the steps that ran, calls `check()`, which raises
    KeyboardInterrupt.

An epoch whose steps have all run gets its end-of-epoch callbacks before the
KeyboardInterrupt (they run under `hold()`), so without validation the History and the
backups agree with the steps counted.  Validation is interrupted between its steps like
training: the epoch then has not ended (no History entry), though its steps are counted.

When the outermost guarded call ends, Python's handler is put back.  A handler the user
installed is left alone (runs then go to their end), and so are other threads: only the
main thread gets SIGINT's KeyboardInterrupt in Python.  train_on_batch and test_on_batch,
one step each, are not guarded (a KeyboardInterrupt lands as Python places it, after the
step's C call).
"""
import signal
import threading

from . import _core

_MAIN_IDENT = threading.main_thread().ident
_depth = 0              # nesting of guarded calls on the main thread (fit -> evaluate)
_pending = False        # a SIGINT arrived during a guarded call and is not raised yet
_held = 0               # nesting of hold(): a SIGINT waits for its end


def _record(signum, frame):
    global _pending
    if _depth == 0:
        _core.sigint_clear()
        raise KeyboardInterrupt
    _pending = True


class _Guard:
    __slots__ = ("armed",)

    def __enter__(self):
        global _depth, _pending
        self.armed = False
        if threading.get_ident() != _MAIN_IDENT:
            return self
        if _depth == 0:
            if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
                return self              # the user's own handler: theirs to handle
            signal.signal(signal.SIGINT, _record)
            _pending = False
            _core.sigint_arm(True)
        _depth += 1
        self.armed = True
        return self

    def __exit__(self, exc_type, exc, tb):
        global _depth, _pending
        if not self.armed:
            return False
        if _depth == 1:
            _core.run_signal_handlers()   # a signal's queued handler records it here
        _depth -= 1
        if _depth == 0:
            _core.sigint_arm(False)
            # Python's handler back as it was (which also takes pynn's C handler out)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _core.sigint_clear()
            if _pending:
                _pending = False
                if exc_type is None:
                    raise KeyboardInterrupt
        return False


def guard():
    """`with guard():` around a fit/evaluate/predict, from where it starts changing state."""
    return _Guard()


class _Hold:
    __slots__ = ("on",)

    def __enter__(self):
        global _held
        self.on = _depth > 0 and threading.get_ident() == _MAIN_IDENT
        if self.on:
            _held += 1
            _core.sigint_hold(True)
        return self

    def __exit__(self, exc_type, exc, tb):
        global _held
        if self.on:
            _held -= 1
            if _held == 0:
                _core.sigint_hold(False)
        return False


def hold():
    """`with hold():` a SIGINT arriving meanwhile waits for the block's end (runs inside
    go to their end, check() does nothing)."""
    return _Hold()


def stop_requested():
    """True on the main thread of a guarded call once a SIGINT arrived: the Python
    executor stops after the current step, as the C runner does."""
    return _depth > 0 and not _held and bool(_core.sigint_flag()) and \
        threading.get_ident() == _MAIN_IDENT


def check():
    """Raise KeyboardInterrupt if a SIGINT arrived during the guarded call (on the main
    thread); the caller has counted the steps that ran."""
    global _pending
    if _depth == 0 or _held or threading.get_ident() != _MAIN_IDENT:
        return
    if _core.sigint_flag():
        _core.run_signal_handlers()
    if _pending:
        _pending = False
        _core.sigint_clear()
        raise KeyboardInterrupt
