"""Run by tests/test_interrupts.py in a child process: start a long fit/evaluate/predict,
print "ready", and on the KeyboardInterrupt that the parent's SIGINT causes, print a JSON
line: the time it landed and what the model looks like then (for fit: the steps counted,
the History's epochs, and whether the weights are bitwise those of a replay of exactly
that many steps)."""
import json
import sys
import time

import numpy as np

import pynn
from pynn import layers

task, arch, backend = sys.argv[1:4]      # (task "backup": sys.argv[4] is the folder)
pynn.utils.set_random_seed(0)
if arch == "cnn":
    make = lambda: pynn.Sequential([pynn.Input((10, 10, 1)),                      # noqa: E731
                                    layers.Conv2D(4, 3, activation="relu"),
                                    layers.MaxPooling2D(), layers.Flatten(),
                                    layers.Dense(10, activation="softmax")])
    x = np.random.default_rng(0).random((1024, 10, 10, 1), dtype=np.float32)
else:
    make = lambda: pynn.Sequential([pynn.Input((32,)), layers.Dense(32, activation="relu"),  # noqa: E731
                                    layers.BatchNormalization(),
                                    layers.Dense(10, activation="softmax")])
    x = np.random.default_rng(0).random((1024, 32), dtype=np.float32)
y = np.random.default_rng(1).integers(0, 10, len(x))


def compiled(seed):
    pynn.utils.set_random_seed(seed)
    m = make()
    m.compile(pynn.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
              metrics=["accuracy"], backend=backend)
    return m


model = compiled(0)
big_x = np.concatenate([x] * 64) if task != "fit" else x
big_y = np.concatenate([y] * 64) if task != "fit" else y


class Ready(pynn.callbacks.Callback):
    """Says "ready" once the first epoch is done: the fit is under way (an epoch-end hook
    keeps the whole-epoch C path)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            print("ready", flush=True)


def backed_up_fit(m, folder):
    """The fit of the SIGKILL test: shuffled, backed up every 5 batches."""
    return m.fit(x, y, batch_size=32, epochs=150, shuffle=True, verbose=0,
                 callbacks=[Ready(), pynn.callbacks.BackupAndRestore(folder, save_freq=5)])


if task == "killed":             # runs until the parent kills it (SIGKILL)
    backed_up_fit(model, sys.argv[4])
    print(json.dumps({"finished": True}), flush=True)
    sys.exit(0)
if task == "resume":             # the same call again, then an uninterrupted run: bitwise?
    resumed = compiled(0)
    history = backed_up_fit(resumed, sys.argv[4])
    straight = compiled(0)
    straight.fit(x, y, batch_size=32, epochs=150, shuffle=True, verbose=0)
    print(json.dumps({"resumed_epochs": history.epoch,
                      "iterations": [int(resumed.optimizer.iterations),
                                     int(straight.optimizer.iterations)],
                      "bitwise": all(np.array_equal(a, b) for a, b in
                                     zip(resumed.get_weights(), straight.get_weights()))}),
          flush=True)
    sys.exit(0)

report = {}
try:
    if task == "fit":
        model.fit(x, y, batch_size=32, epochs=100000, shuffle=False, verbose=0,
                  callbacks=[Ready()])
    elif task == "backup":
        model.fit(x, y, batch_size=32, epochs=100000, shuffle=False, verbose=0,
                  callbacks=[Ready(), pynn.callbacks.BackupAndRestore(sys.argv[4])])
    elif task == "evaluate":
        for i in range(1000):
            model.evaluate(big_x, big_y, batch_size=32, verbose=0)
            if i == 0:
                print("ready", flush=True)
    else:
        for i in range(1000):
            model.predict(big_x, batch_size=32, verbose=0)
            if i == 0:
                print("ready", flush=True)
    report["landed"] = None
except KeyboardInterrupt:
    report["landed"] = time.perf_counter()
if task == "fit":
    steps = int(model.optimizer.iterations)
    per_epoch = len(x) // 32
    epochs, partial = divmod(steps, per_epoch)
    report["steps"] = steps
    history = getattr(model, "history", None)   # as Keras: set at each epoch's end
    report["history_epochs"] = list(history.epoch) if history is not None else []
    report["history_losses"] = len(history.history.get("loss", [])) if history else 0
    report["epochs"] = epochs
    replay = compiled(0)
    if epochs:
        replay.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0)
    if partial:
        replay.fit(x[:partial * 32], y[:partial * 32], batch_size=32, epochs=1, shuffle=False,
                   verbose=0)
    report["replay_steps"] = int(replay.optimizer.iterations)
    report["bitwise"] = all(np.array_equal(a, b) for a, b in
                            zip(model.get_weights(), replay.get_weights()))
    # the model goes on training from where it stopped
    before = model.optimizer.iterations
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    report["resumed"] = int(model.optimizer.iterations - before)
if task == "backup":
    # the same call again, to a few epochs past the interruption, resumes from the backup:
    # bitwise the weights of one uninterrupted run
    import os
    done_epochs = len(model.history.epoch)
    total = done_epochs + 2
    resumed = compiled(0)
    history = resumed.fit(x, y, batch_size=32, epochs=total, shuffle=False, verbose=0,
                          callbacks=[pynn.callbacks.BackupAndRestore(sys.argv[4])])
    straight = compiled(0)
    straight.fit(x, y, batch_size=32, epochs=total, shuffle=False, verbose=0)
    report.update(done_epochs=done_epochs, resumed_epochs=history.epoch,
                  iterations=[int(resumed.optimizer.iterations),
                              int(straight.optimizer.iterations)],
                  bitwise=all(np.array_equal(a, b) for a, b in
                              zip(resumed.get_weights(), straight.get_weights())),
                  backup_left=os.path.exists(sys.argv[4]))
print(json.dumps(report), flush=True)
