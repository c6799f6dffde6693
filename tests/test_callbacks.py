"""Callbacks with Keras semantics, with fit running a whole epoch per C call (no callback
needs each batch) or a step per call (one does), and the progress output of
fit(verbose=...)."""
import csv
import io
import math
import json
import os

import numpy as np
import pytest

import pynn
from pynn import callbacks, layers
from pynn.models import executor as executor_module

from conftest import StopAtBatch


def digits(n=None):
    (xt, yt), (xs, ys) = pynn.datasets.digits.load_data()
    xt = xt.reshape(len(xt), -1).astype(np.float32) / 16
    xs = xs.reshape(len(xs), -1).astype(np.float32) / 16
    return (xt[:n], yt[:n]), (xs, ys)


def mlp(seed=0, lr=0.001, hidden=32):
    pynn.utils.set_random_seed(seed)
    model = pynn.Sequential([layers.Input((64,)), layers.Dense(hidden, activation="relu"),
                             layers.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class Recorder(callbacks.Callback):
    """A user's custom callback: records every hook call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))
        logs["custom"] = 10.0 + epoch            # a callback may add to the logs

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))
        self.end_logs = dict(logs)


def test_history_keys_and_custom_callback_gets_every_batch():
    (x, y), _ = digits(200)
    model = mlp()
    rec = Recorder()
    hist = model.fit(x, y, batch_size=32, epochs=2, validation_split=0.2, callbacks=[rec], verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "custom"}
    assert hist.epoch == [0, 1] and model.history is hist
    assert hist.history["custom"] == [10.0, 11.0]
    steps = math.ceil(160 / 32)
    batches = [c[1] for c in rec.calls if c[0] == "batch_end"]
    assert batches == list(range(steps)) * 2
    assert [c[1] for c in rec.calls if c[0] == "batch_begin"] == list(range(steps)) * 2
    assert rec.calls[0] == ("train_begin",) and rec.calls[-1] == ("train_end",)
    assert rec.end_logs == {k: v[-1] for k, v in hist.history.items()}    # the last epoch's logs
    epoch_logs = [c[2] for c in rec.calls if c[0] == "epoch_end"]
    assert epoch_logs[1]["loss"] == hist.history["loss"][1]
    # batch logs are running means: the last one of an epoch is the epoch's loss
    last = [c[2] for c in rec.calls if c[0] == "batch_end"][steps - 1]
    assert last["loss"] == pytest.approx(hist.history["loss"][0])


def test_keras_old_hook_names_work_and_force_every_batch():
    class OldStyle(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.n = 0

        def on_batch_end(self, batch, logs=None):
            self.n += 1

    (x, y), _ = digits(96)
    cb = OldStyle()
    mlp().fit(x, y, batch_size=32, epochs=2, callbacks=[cb], verbose=0)
    assert cb.n == 6


class EveryBatch(callbacks.Callback):
    """Overrides a per-batch hook, so fit runs one step per executor call."""

    def on_train_batch_end(self, batch, logs=None):
        pass


@pytest.fixture
def c_calls(monkeypatch):
    """(plan kind, n_steps) of each call made to the C runner (CExecutor.run)."""
    calls = []
    real = executor_module.CExecutor.run

    def counting(self, *args, **kwargs):
        calls.append((self.plan.kind, args[7]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(executor_module.CExecutor, "run", counting)
    return calls


def test_epoch_level_callbacks_keep_one_c_call_per_epoch(tmp_path, c_calls):
    """EarlyStopping, ModelCheckpoint, the schedulers, CSVLogger, TerminateOnNaN and the
    ActivationMonitor only need epoch hooks (or coarse batch hooks): fit still runs each
    epoch's training steps in one C call."""
    (x, y), _ = digits(256)
    model = mlp()
    cbs = [callbacks.EarlyStopping(patience=5), callbacks.ModelCheckpoint(str(tmp_path / "m.pynn")),
           callbacks.LearningRateScheduler(lambda e, lr: lr), callbacks.ReduceLROnPlateau(),
           callbacks.CSVLogger(str(tmp_path / "log.csv")), callbacks.TerminateOnNaN(),
           callbacks.ActivationMonitor(x[:64])]
    model.fit(x, y, epochs=3, validation_split=0.25, callbacks=cbs, verbose=0)
    # 192 training rows in batches of 32: 6 steps per epoch (the validation and the
    # monitor's forward pass are one call each too)
    assert [n for kind, n in c_calls if kind == "train"] == [6, 6, 6]
    assert [n for kind, n in c_calls if kind == "test"] == [2, 2, 2]
    assert model.optimizer.iterations == 18
    # ... and a callback that watches each batch gets one call per step
    c_calls.clear()
    model.fit(x, y, epochs=1, batch_size=64, callbacks=[Recorder()], verbose=0)
    assert c_calls == [("train", 1)] * 4


def test_whole_epoch_and_step_by_step_histories_agree_with_callbacks():
    (x, y), _ = digits(300)
    results = []
    for per_step in (False, True):
        model = mlp()
        pynn.utils.set_random_seed(1)
        extra = [EveryBatch()] if per_step else []
        hist = model.fit(x, y, epochs=4, validation_split=0.2, verbose=0,
                         callbacks=[callbacks.LearningRateScheduler(lambda e, lr: 0.01 / (1 + e))]
                         + extra)
        results.append((hist.history, model.get_weights()))
    assert results[0][0]["learning_rate"] == [0.01, 0.005, 0.01 / 3, 0.0025]
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert a.tobytes() == b.tobytes()


# ---- EarlyStopping ---------------------------------------------------------------------------

class Scripted(callbacks.Callback):
    """Replaces the monitored value with a scripted sequence (runs before EarlyStopping)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


@pytest.mark.parametrize("values,patience,min_delta,mode,stopped_after", [
    ([1.0, 0.9, 0.95, 0.96, 0.5, 0.4], 2, 0, "auto", 4),          # no improvement at 2, 3 -> stop
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 0, 0, "auto", 6),            # always improving
    ([1.0, 0.99, 0.98, 0.97, 0.96, 0.95], 1, 0.05, "min", 2),     # improvements below min_delta
    ([1.0, 1.0, 1.0, 1.0], 0, 0, "min", 2),                       # patience 0: stop at first miss
    ([0.1, 0.2, 0.3, 0.25, 0.2, 0.1], 1, 0, "max", 4),            # mode max
])
def test_early_stopping_wait_counting(values, patience, min_delta, mode, stopped_after):
    (x, y), _ = digits(64)
    es = callbacks.EarlyStopping(monitor="score", patience=patience, min_delta=min_delta, mode=mode)
    hist = mlp().fit(x, y, epochs=len(values), callbacks=[Scripted("score", values), es], verbose=0)
    assert len(hist.epoch) == stopped_after
    assert es.stopped_epoch == (stopped_after - 1 if stopped_after < len(values) else 0)


def test_early_stopping_auto_mode_maximizes_accuracy():
    (x, y), _ = digits(64)
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    hist = mlp().fit(x, y, epochs=4, verbose=0,
                     callbacks=[Scripted("val_accuracy", [0.5, 0.6, 0.55, 0.9]), es])
    assert len(hist.epoch) == 3 and es.best == 0.6


def test_early_stopping_restores_best_weights_even_without_stopping():
    (x, y), _ = digits(64)
    model = mlp()
    snapshots = []

    class Snap(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    es = callbacks.EarlyStopping(monitor="score", patience=10, restore_best_weights=True)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[Scripted("score", [3.0, 1.0, 2.0, 2.5]), Snap(), es])
    assert es.stopped_epoch == 0 and es.best_epoch == 1
    for a, b in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_missing_monitor_warns_and_does_not_stop():
    (x, y), _ = digits(64)
    with pytest.warns(UserWarning, match="val_loss"):
        hist = mlp().fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.EarlyStopping(patience=0)])
    assert len(hist.epoch) == 3


def test_early_stopping_on_real_data_stops_and_keeps_the_best():
    """Digits with a learning rate high enough to overfit: val_loss turns up, training
    stops well before 200 epochs, and the restored weights are the best epoch's."""
    (x, y), _ = digits()
    model = mlp(lr=0.01, hidden=64)
    es = callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True, verbose=1)
    hist = model.fit(x, y, epochs=200, batch_size=32, validation_split=0.2, callbacks=[es], verbose=0)
    n = len(hist.epoch)
    assert n < 200 and es.stopped_epoch == n - 1
    val = hist.history["val_loss"]
    best = int(np.argmin(val))
    assert es.best_epoch == best and n - 1 - best == 3
    split = int(len(x) * 0.8)
    restored = model.evaluate(x[split:], y[split:], verbose=0)[0]
    assert restored == pytest.approx(val[best], rel=1e-5)


# ---- ModelCheckpoint, schedulers, CSVLogger, TerminateOnNaN ----------------------------------

def test_model_checkpoint_every_epoch_and_best_only(tmp_path):
    (x, y), _ = digits(64)
    model = mlp()
    every = callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch:02d}-{score:.1f}.pynn"), monitor="score")
    best = callbacks.ModelCheckpoint(str(tmp_path / "best" / "model.pynn"), monitor="score",
                                     save_best_only=True)
    weights = callbacks.ModelCheckpoint(str(tmp_path / "w{epoch}.weights"), save_weights_only=True)
    saved = []

    class Watch(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if os.path.exists(tmp_path / "best" / "model.pynn"):
                saved.append(os.path.getmtime(tmp_path / "best" / "model.pynn"))

    model.fit(x, y, epochs=3, verbose=0,
              callbacks=[Scripted("score", [2.0, 1.0, 3.0]), every, best, weights, Watch()])
    names = sorted(os.listdir(tmp_path))
    assert names == ["best", "ep01-2.0.pynn", "ep02-1.0.pynn", "ep03-3.0.pynn",
                     "w1.weights", "w2.weights", "w3.weights"]
    assert best.best == 1.0
    # the best-only file holds epoch 2's model, not epoch 3's
    ep2 = pynn.load_model(tmp_path / "ep02-1.0.pynn")
    kept = pynn.load_model(tmp_path / "best" / "model.pynn")
    for a, b in zip(ep2.get_weights(), kept.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert kept.optimizer.iterations == ep2.optimizer.iterations == 4
    w = mlp(seed=5)
    w.load_weights(tmp_path / "w3.weights")
    for a, b in zip(w.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    (x, y), _ = digits(64)
    model = mlp()
    seen = []

    class Peek(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.optimizer.learning_rate)

    hist = model.fit(x, y, epochs=3, verbose=0,
                     callbacks=[callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5), Peek()])
    assert seen == [0.0005, 0.00025, 0.000125]
    assert hist.history["learning_rate"] == seen
    old_api = callbacks.LearningRateScheduler(lambda epoch: 0.1 * (epoch + 1))
    hist = model.fit(x, y, epochs=2, verbose=0, callbacks=[old_api])
    assert hist.history["learning_rate"] == [0.1, 0.2]
    with pytest.raises(ValueError, match="float"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.LearningRateScheduler(lambda e, lr: "fast")])


def test_reduce_lr_on_plateau_with_cooldown_and_min_lr():
    (x, y), _ = digits(64)
    model = mlp(lr=1.0)
    scores = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    rl = callbacks.ReduceLROnPlateau(monitor="score", factor=0.5, patience=2, cooldown=1, min_lr=0.3)
    hist = model.fit(x, y, epochs=len(scores), verbose=0, callbacks=[Scripted("score", scores), rl])
    # The logged rate is the one the epoch trained with.  Misses at epochs 1, 2 -> halved
    # after epoch 2; epoch 3 ends the 1-epoch cooldown and (as in Keras) already counts as a
    # miss, epoch 4 is the second -> 0.25, clipped to min_lr 0.3; then it stays at min_lr.
    assert hist.history["learning_rate"] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3]
    assert model.optimizer.learning_rate == 0.3
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.5)


def test_csv_logger_writes_a_row_per_epoch_and_appends(tmp_path):
    (x, y), _ = digits(64)
    path = tmp_path / "log.csv"
    model = mlp()
    model.fit(x, y, epochs=2, validation_split=0.25, verbose=0, callbacks=[callbacks.CSVLogger(path)])
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert float(rows[1]["loss"]) == pytest.approx(model.history.history["loss"][1])
    model.fit(x, y, epochs=1, validation_split=0.25, verbose=0,
              callbacks=[callbacks.CSVLogger(path, separator=";", append=True)])
    lines = open(path).read().splitlines()
    assert len(lines) == 4 and lines[3].startswith("0;")


@pytest.mark.parametrize("per_step", [False, True])
def test_terminate_on_nan_stops_training(per_step, capsys):
    (x, y), _ = digits(256)
    model = pynn.Sequential([layers.Input((64,)), layers.Dense(16, activation="relu"),
                             layers.Dense(1)])
    model.compile(optimizer=pynn.optimizers.SGD(1e6), loss="mse")
    seen = []

    class Epochs(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs["loss"])

    hist = model.fit(x, y.astype(np.float32) * 1e3, epochs=20, batch_size=16, verbose=0,
                     callbacks=[callbacks.TerminateOnNaN(), Epochs()] +
                     ([EveryBatch()] if per_step else []))
    assert len(hist.epoch) == 1 and not math.isfinite(seen[0])
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    assert model.optimizer.iterations <= 16


def test_stop_training_from_a_custom_callback():
    class StopAt(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    class StopBatch(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    (x, y), _ = digits(64)
    model = mlp()
    assert len(model.fit(x, y, epochs=5, verbose=0, callbacks=[StopAt()]).epoch) == 2
    model.optimizer.iterations = 0
    assert len(model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[StopBatch()]).epoch) == 1
    assert model.optimizer.iterations == 3


# ---- progress output -------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_redraws_in_place_on_a_terminal_only(monkeypatch):
    (x, y), _ = digits(320)
    monkeypatch.setattr(callbacks.Progbar, "interval", 0.0)      # draw every chance it gets
    tty = Terminal()
    monkeypatch.setattr("sys.stdout", tty)
    mlp().fit(x, y, batch_size=16, epochs=2, verbose=1)
    out = tty.getvalue()
    assert out.count("\r") > 4                                    # redrawn within each epoch
    assert out.count("Epoch ") == 2 and out.count("\n") == 4      # Epoch line + final line each
    assert "20/20" in out and " eta " in out

    log = io.StringIO()                                           # a log file: no redraws
    monkeypatch.setattr("sys.stdout", log)
    mlp().fit(x, y, batch_size=16, epochs=2, verbose=1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and " eta " not in log.getvalue()
    assert len(lines) == 4 and lines[0] == "Epoch 1/2" and lines[1].startswith("20/20 ━")

    monkeypatch.setattr("sys.stdout", tty)                        # verbose=2: a line per epoch
    tty.seek(0)
    tty.truncate()
    mlp().fit(x, y, batch_size=16, epochs=2, verbose=2)
    assert "\r" not in tty.getvalue() and len(tty.getvalue().splitlines()) == 4
    tty.seek(0)
    tty.truncate()
    mlp().fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert tty.getvalue() == ""


def test_progbar_logger_writes_to_the_stream_it_is_given():
    stream = Terminal()
    logger = callbacks.ProgbarLogger(verbose=1, stream=stream)
    assert logger.redraws
    logger.set_params({"epochs": 1, "steps": 3})
    logger.on_epoch_begin(0)
    logger.on_epoch_end(0, {"loss": 0.5})
    assert stream.getvalue().startswith("Epoch 1/1\n\r3/3") and "loss: 0.5000" in stream.getvalue()
    assert not callbacks.ProgbarLogger(verbose=1, stream=io.StringIO()).redraws


# ---- BackupAndRestore ----------------------------------------------------------------------

class _StopAt(callbacks.Callback):
    """Raises KeyboardInterrupt at the start of epoch `epoch` (an interrupted run)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("double", [False, True])
def test_backup_and_restore_resumes_where_the_run_stopped(tmp_path, double):
    (x, y), _ = digits(256)
    folder = tmp_path / "backup"
    first = mlp()
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=5, shuffle=False, verbose=0,
                  callbacks=[callbacks.BackupAndRestore(folder, double_checkpoint=double),
                             _StopAt(3)])
    meta = json.loads((folder / "training_metadata.json").read_text())
    files = [meta["latest"]["file"]] + ([meta["previous"]["file"]] if double else [])
    assert sorted(os.listdir(folder)) == sorted(files + ["training_metadata.json"])
    assert meta["latest"]["position"]["epoch"] == 3
    if double:      # a latest backup that cannot be read: the previous one is used
        (folder / meta["latest"]["file"]).write_bytes(b"not a zip")
    again = mlp(seed=5)                          # another instance, other initial weights
    with pytest.warns(UserWarning, match="cannot restore") if double else _nothing():
        history = again.fit(x, y, epochs=5, shuffle=False, verbose=0,
                            callbacks=[callbacks.BackupAndRestore(folder,
                                                                  double_checkpoint=double)])
    start = 2 if double else 3
    assert history.epoch == list(range(start, 5))
    straight = mlp()
    straight.fit(x, y, epochs=5, shuffle=False, verbose=0)
    assert again.optimizer.iterations == straight.optimizer.iterations
    for a, b in zip(again.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not folder.exists()                   # delete_checkpoint: gone after a whole run



@pytest.mark.filterwarnings("ignore:Your input ran out of data")
@pytest.mark.parametrize("shuffle,steps_per_epoch", [(True, None), (False, 3)])
def test_backup_every_n_batches_resumes_mid_epoch_bitwise(tmp_path, shuffle, steps_per_epoch):
    """save_freq=<int>: a run stopped in the middle of an epoch resumes after the last
    backed-up batch, with the epoch's shuffled order and running logs, and ends with
    bitwise the weights and History of an uninterrupted run."""
    (x, y), _ = digits(320)                      # 10 batches of 32 an epoch
    folder = tmp_path / "backup"
    args = dict(epochs=4, shuffle=shuffle, verbose=0, steps_per_epoch=steps_per_epoch)
    straight = mlp()
    reference = straight.fit(x, y, **args)
    first = mlp()
    with pytest.raises(KeyboardInterrupt):       # backups after batches 2, 5, 8 of each epoch
        first.fit(x, y, callbacks=[callbacks.BackupAndRestore(folder, save_freq=3),
                                   StopAtBatch(1, 2 if steps_per_epoch else 6)], **args)
    meta = json.loads((folder / "training_metadata.json").read_text())
    assert meta["latest"]["position"]["epoch"] == 1
    again = mlp(seed=5)                          # another generator state, other weights
    history = again.fit(x, y, callbacks=[callbacks.BackupAndRestore(folder, save_freq=3)],
                        **args)
    assert history.epoch == [1, 2, 3]
    assert again.optimizer.iterations == straight.optimizer.iterations
    for a, b in zip(again.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    for key, values in history.history.items():
        assert values == reference.history[key][1:], key
    assert not folder.exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_backup_and_restore_keeps_the_backup_when_asked_and_refuses_what_it_lacks(tmp_path):
    (x, y), _ = digits(64)
    model = mlp()
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[callbacks.BackupAndRestore(tmp_path, delete_checkpoint=False)])
    meta = json.loads((tmp_path / "training_metadata.json").read_text())
    assert {meta["latest"]["file"], "training_metadata.json"} == set(os.listdir(tmp_path))
    # a finished run's backup: the next fit of as many epochs has nothing left to do
    again = mlp()
    history = again.fit(x, y, epochs=2, verbose=0,
                        callbacks=[callbacks.BackupAndRestore(tmp_path)])
    assert history.epoch == []
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for bad in (0, -1, 1.5, "batch", True):
        with pytest.raises(ValueError, match="save_freq"):
            callbacks.BackupAndRestore(tmp_path, save_freq=bad)
    with pytest.raises(ValueError, match="backup_dir"):
        callbacks.BackupAndRestore("")


def test_model_checkpoint_every_n_batches(tmp_path):
    (x, y), _ = digits(320)                      # 10 batches of 32 an epoch
    model = mlp()
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.pynn"), save_freq=4)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[ckpt])
    # batches counted across epochs: saves after 4, 8 (epoch 1), then 12 = epoch 2's 2nd, ...
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["m-1-4.pynn", "m-1-8.pynn", "m-2-2.pynn", "m-2-6.pynn", "m-2-10.pynn"])
    # the file after epoch 2's last batch holds the final weights
    saved = pynn.load_model(tmp_path / "m-2-10.pynn")
    for a, b in zip(saved.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for bad in (0, -3, 2.5, "batch", True):
        with pytest.raises(ValueError, match="save_freq"):
            callbacks.ModelCheckpoint(str(tmp_path / "x.pynn"), save_freq=bad)


def test_an_epoch_checkpoint_keeps_the_fused_path(tmp_path, monkeypatch):
    (x, y), _ = digits(320)
    calls = []
    real = executor_module.CExecutor.run
    monkeypatch.setattr(executor_module.CExecutor, "run",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    mlp().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[
        callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}.pynn")),
        callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: None)])
    assert len(calls) == 2                       # one C call per epoch
    calls.clear()
    mlp().fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[
        callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: None)])
    assert len(calls) == 10                      # a batch hook: every batch


def test_evaluate_and_predict_take_steps_and_callbacks():
    (x, y), _ = digits(100)
    model = mlp()
    full = model.evaluate(x[:64], y[:64], batch_size=32, verbose=0)
    assert model.evaluate(x, y, batch_size=32, steps=2, verbose=0) == pytest.approx(full)
    np.testing.assert_array_equal(model.predict(x, batch_size=32, steps=2, verbose=0),
                                  model.predict(x[:64], batch_size=32, verbose=0))
    for call in (lambda: model.evaluate(x, y, steps=0, verbose=0),
                 lambda: model.predict(x, steps=-1, verbose=0),
                 lambda: model.evaluate(x, y, verbose=0, callbacks=[object()]),
                 lambda: model.predict(x, verbose=0, callbacks=callbacks.History())):
        with pytest.raises((ValueError, TypeError)):
            call()
    with pytest.raises(TypeError, match="on_epoch_ends"):
        callbacks.LambdaCallback(on_epoch_ends=print)


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    return ({t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]},
            {t: acc.Histograms(t) for t in tags["histograms"]})


def test_tensorboard_writes_what_tensorboard_reads(tmp_path):
    pytest.importorskip("tensorboard")          # the test extra installs it
    (x, y), (xs, ys) = digits(256)
    model = mlp()
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, validation_data=(xs, ys),
                        callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=1)])
    train, hist = _scalars(tmp_path / "train")
    assert set(train) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], history.history["loss"],
                               rtol=1e-6)
    np.testing.assert_allclose([v for _, v in train["epoch_learning_rate"]], [0.001] * 3,
                               rtol=1e-6)
    assert len(hist) == 4 and all(len(h) == 3 for h in hist.values())   # 2 kernels, 2 biases
    kernel = model.weights[0]
    h = hist[f"{kernel.path}/histogram"][-1].histogram_value
    assert h.num == kernel.size and h.min == pytest.approx(float(kernel.numpy().min()))
    val, _ = _scalars(tmp_path / "validation")
    np.testing.assert_allclose([v for _, v in val["epoch_loss"]], history.history["val_loss"],
                               rtol=1e-6)
    assert [s for s, _ in val["evaluation_loss_vs_iterations"]] == [8, 16, 24]


def test_tensorboard_per_batch_and_bad_arguments(tmp_path):
    pytest.importorskip("tensorboard")
    (x, y), _ = digits(256)
    mlp().fit(x, y, epochs=2, batch_size=32, verbose=0,
              callbacks=[callbacks.TensorBoard(tmp_path, update_freq=3)])
    train, _ = _scalars(tmp_path / "train")
    assert [s for s, _ in train["batch_loss"]] == [3, 6, 9, 12, 15]    # 16 batches in all
    for kwargs in ({"update_freq": 0}, {"histogram_freq": -1}, {"write_images": True},
                   {"log_dir": ""}):
        with pytest.raises(ValueError):
            callbacks.TensorBoard(**{"log_dir": tmp_path, **kwargs})


def test_steps_per_epoch_goes_on_through_the_data_as_keras_does():
    (x, y), (xs, ys) = digits(320)               # 10 batches of 32
    model = mlp()
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(x, y, batch_size=32, epochs=4, steps_per_epoch=3, shuffle=False,
                            verbose=0, validation_data=(xs, ys), validation_steps=2)
    assert model.optimizer.iterations == 3 + 3 + 3 + 1
    whole = mlp()
    whole.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)      # one pass, cut in four epochs
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xs[:64], ys[:64], batch_size=32, verbose=0)[0], rel=1e-6)
    # a fifth epoch starts a new pass
    model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=3, verbose=0)
    assert model.optimizer.iterations == 13
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="steps_per_epoch"):
            model.fit(x, y, steps_per_epoch=bad, verbose=0)
        with pytest.raises(ValueError, match="validation_steps"):
            model.fit(x, y, validation_steps=bad, verbose=0)
