"""Ctrl-C (SIGINT) during fit, evaluate and predict: a KeyboardInterrupt within 0.2 s, also
inside a whole-epoch C call, with the model consistent (pynn/interrupts.py).  Each case
runs tests/interrupt_child.py in a child process and sends it SIGINT mid-run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def interrupt(task, arch, backend, *extra, after=0.3):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "interrupt_child.py"), task,
                              arch, backend, *extra], stdout=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(after)
        sent = time.perf_counter()           # CLOCK_MONOTONIC: the child's clock too
        child.send_signal(signal.SIGINT)
        report = json.loads(child.stdout.readline())
        assert child.wait(timeout=120) == 0
    finally:
        child.kill()
    assert report["landed"] is not None, "the run ended without a KeyboardInterrupt"
    report["latency"] = report["landed"] - sent
    return report


@pytest.mark.parametrize("arch,backend", [("mlp", "cpu"), ("cnn", "cpu"), ("mlp", "numpy")])
def test_ctrl_c_during_fit_lands_between_steps_with_every_step_counted(arch, backend):
    report = interrupt("fit", arch, backend)
    assert report["latency"] <= 0.2, report
    assert report["steps"] > 0, report
    # the steps applied are the steps counted: a replay of that many steps gives bitwise
    # the same weights (BatchNormalization's moving statistics included)
    assert report["replay_steps"] == report["steps"], report
    assert report["bitwise"], report
    assert report["resumed"] == 2, report
    # the History holds the epochs completed
    assert report["epochs"] >= 1, report
    assert report["history_epochs"] == list(range(report["epochs"])), report
    assert report["history_losses"] == report["epochs"], report


def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path):
    report = interrupt("backup", "mlp", "cpu", str(tmp_path / "backup"))
    assert report["latency"] <= 0.2, report
    assert report["done_epochs"] >= 1, report
    total = report["done_epochs"] + 2
    assert report["resumed_epochs"] == [total - 2, total - 1], report     # restored epoch on
    assert report["iterations"][0] == report["iterations"][1], report
    assert report["bitwise"], report
    assert not report["backup_left"], report             # deleted once training ended


def test_backup_every_n_batches_survives_sigkill_and_resumes_bitwise(tmp_path):
    """BackupAndRestore(save_freq=5), fit shuffled: the process is killed (SIGKILL, no
    chance to clean up) at some point of some epoch; the same fit started again resumes
    from the last backup and ends with bitwise the weights of an uninterrupted run."""
    folder = str(tmp_path / "backup")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "interrupt_child.py"),
                              "killed", "mlp", "cpu", folder], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
    with open(os.path.join(folder, "training_metadata.json"), encoding="utf-8") as f:
        position = json.load(f)["latest"]["position"]
    assert 1 <= position["epoch"] < 150, position        # killed in the middle of the run
    out = subprocess.run([sys.executable, os.path.join(HERE, "interrupt_child.py"), "resume",
                          "mlp", "cpu", folder], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["resumed_epochs"][0] == position["epoch"], (report, position)
    assert report["resumed_epochs"][-1] == 149
    assert report["iterations"][0] == report["iterations"][1] == 150 * 32, report
    assert report["bitwise"], report
    assert not os.path.exists(folder)


@pytest.mark.parametrize("task", ["evaluate", "predict"])
def test_ctrl_c_during_evaluate_and_predict(task):
    report = interrupt(task, "cnn", "cpu")
    assert report["latency"] <= 0.2, report


def test_ctrl_c_outside_pynn_is_python_s_own(tmp_path):
    # after a guarded call the default behaviour is back: a KeyboardInterrupt at once
    code = ("import time, numpy as np, pynn\n"
            "m = pynn.Sequential([pynn.Input((2,)), pynn.layers.Dense(1)])\n"
            "m.compile('sgd', 'mse'); m.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)\n"
            "import signal; assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN\n"
            "print('ready', flush=True)\n"
            "try:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print('caught', flush=True)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        assert child.stdout.readline().strip() == "caught"
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()


class _SigintAt(__import__("pynn").callbacks.Callback):
    """Sends this process SIGINT at the end of batch `batch` of epoch `epoch`."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("batch,epochs_done,steps", [(2, 1, 8 + 3), (7, 2, 16)])
def test_an_interrupt_in_an_epoch_s_last_step_finishes_that_epoch(batch, epochs_done, steps):
    import numpy as np
    import pynn
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((64, 4), dtype=np.float32), np.arange(64) % 3
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[_SigintAt(1, batch)])
    assert model.optimizer.iterations == steps
    assert model.history.epoch == list(range(epochs_done))
    # and Python's own handler is back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _SigintInValidation(__import__("pynn").callbacks.Callback):
    """Sends this process SIGINT after the first validation batch of epoch 1."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_test_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupt_during_validation_lands_there():
    import numpy as np
    import pynn
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((64, 4), dtype=np.float32), np.arange(64) % 3
    seen = []

    class Count(pynn.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            seen.append(batch)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=5, verbose=0, validation_data=(x, y),
                  callbacks=[_SigintInValidation(), Count()])
    assert model.optimizer.iterations == 16          # two epochs' steps
    assert model.history.epoch == [0]                # the second never ended
    assert seen == list(range(8)) + [0]              # stopped after one validation batch
