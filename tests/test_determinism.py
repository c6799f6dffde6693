"""Same seed + same data = bitwise the same weights, whichever way the plan runs:

  whole epoch     fit without per-batch callbacks: one C call (pynn_plan_run) per epoch;
  step by step    fit with a callback overriding on_train_batch_end: one C call per step;
  op by op        the cpu plan walked from Python (`model.engine.force_python = True`),
                  calling the very C functions plan.c calls;
  1 or 2 threads  every output element written by one thread, every sum in a fixed order;

for an MLP, LeNet-5 (28x28x1 with max pooling), a ResNet-style graph (two residual blocks
with Add and BatchNormalization) and a CNN with Dropout (its masks drawn from the step
number, so every path draws the same), with their losses, metrics and validation split
between them.  Sizes are large enough for the kernels' threaded paths (32768 values and
more per op).  Every backend repeats a seeded fit bitwise.  Then the digits accuracy that
the main job promises.
"""
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.models import executor as executor_module

from conftest import assert_bitwise


def digits(n=None, shape=(64,)):
    (x, y), (xt, yt) = pynn.datasets.digits.load_data()
    x = (x.reshape((-1,) + shape) / 16).astype(np.float32)
    xt = (xt.reshape((-1,) + shape) / 16).astype(np.float32)
    return (x[:n], y[:n].astype(np.int64)), (xt, yt.astype(np.int64))


def digits_28x28(n):
    """The 8x8 digits scaled 3x and padded to LeNet-5's 28x28."""
    (x, y), _ = digits(n, (8, 8))
    big = np.kron(x, np.ones((3, 3), np.float32))
    return np.pad(big, ((0, 0), (2, 2), (2, 2)))[..., None], y


def mlp():
    return pynn.Sequential([L.Input((64,)), L.Dense(600, activation="relu"),
                            L.Dense(300, activation="tanh"), L.Dense(10, activation="softmax")])


def lenet5():
    return pynn.Sequential([
        L.Input((28, 28, 1)), L.Conv2D(6, 5, padding="same", activation="tanh"),
        L.MaxPooling2D(2), L.Conv2D(16, 5, activation="tanh"), L.MaxPooling2D(2), L.Flatten(),
        L.Dense(120, activation="tanh"), L.Dense(84, activation="tanh"),
        L.Dense(10, activation="softmax")], name="lenet5")


def resnet():
    # 16 filters: the blocks' 3x3 convolutions take Winograd's F(2x2, 3x3) and F(3x3, 2x2)
    # (conv_winograd.c), so their sums too are checked across threads and executors
    inp = pynn.Input((8, 8, 1))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    for _ in range(2):
        y = L.Conv2D(16, 3, padding="same", use_bias=False)(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.Conv2D(16, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization()(y)
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return pynn.Model(inp, L.Dense(10, activation="softmax")(x), name="resnet")


def dropout_net():
    return pynn.Sequential([
        L.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same", activation="relu"),
        L.AveragePooling2D(2), L.Flatten(), L.Dropout(0.25),
        L.Dense(512, activation="relu"), L.Dropout(0.5, seed=7),
        L.Dense(10, activation="sigmoid")], name="dropout")


def one_hot(data):
    x, y = data
    return x, np.eye(10, dtype=np.float32)[y]


# name -> (model, data, optimizer, compile arguments, batch size, validation split)
NETWORKS = {
    "mlp": (mlp, lambda: digits(900)[0], lambda: pynn.optimizers.Adam(0.003),
            dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"]), 300, 0.0),
    "mlp_adamw": (mlp, lambda: digits(900)[0],
                  lambda: pynn.optimizers.AdamW(0.003, weight_decay=0.05, amsgrad=True),
                  dict(loss="sparse_categorical_crossentropy"), 300, 0.0),
    "mlp_nadam": (mlp, lambda: digits(900)[0], lambda: pynn.optimizers.Nadam(0.003),
                  dict(loss="sparse_categorical_crossentropy"), 300, 0.0),
    "mlp_lion": (mlp, lambda: digits(900)[0], lambda: pynn.optimizers.Lion(3e-4),
                 dict(loss="sparse_categorical_crossentropy"), 300, 0.0),
    "lenet5": (lenet5, lambda: one_hot(digits_28x28(240)),
               lambda: pynn.optimizers.SGD(0.05, momentum=0.9),
               dict(loss="categorical_crossentropy", metrics=["accuracy", "mae"]), 64, 0.2),
    "resnet": (resnet, lambda: digits(256, (8, 8, 1))[0],
               lambda: pynn.optimizers.RMSprop(0.003, momentum=0.5),
               dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"]), 100, 0.0),
    "dropout": (dropout_net, lambda: one_hot(digits(700, (8, 8, 1))[0]),
                lambda: pynn.optimizers.SGD(0.05, nesterov=True, momentum=0.8),
                dict(loss="binary_crossentropy", metrics=["accuracy"]), 150, 0.1),
    # Keras 3's other losses (issue 11): a parameter (Huber's delta) through the plan, and a
    # per-row sum (KLD) over batches of two 256-row chunks
    "mlp_huber": (mlp, lambda: one_hot(digits(900)[0]), lambda: pynn.optimizers.Adam(0.003),
                  dict(loss=pynn.losses.Huber(delta=0.05), metrics=["mae"]), 300, 0.0),
    "mlp_kld": (mlp, lambda: one_hot(digits(700)[0]), lambda: pynn.optimizers.SGD(0.1),
                dict(loss="kld"), 300, 0.1),
}
EPOCHS = 2


class EveryBatch(pynn.callbacks.Callback):
    """Overrides a per-batch hook: fit runs one step per executor call (and counts them)."""

    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def train(name, threads, path):
    """(weights, history, optimizer steps) of a seeded fit of network `name` on cpu."""
    make, data, optimizer, compile_args, batch, split = NETWORKS[name]
    x, y = data()
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        pynn.utils.set_random_seed(7)
        model = make()
        model.compile(optimizer=optimizer(), backend="cpu", **compile_args)
        model.engine.force_python = path == "op by op"
        callbacks = [EveryBatch()] if path == "step by step" else []
        history = model.fit(x, y, batch_size=batch, epochs=EPOCHS, validation_split=split,
                            verbose=0, callbacks=callbacks)
        return model.get_weights(), history.history, model.optimizer.iterations
    finally:
        pynn.set_num_threads(before)


def steps_per_epoch(name):
    _, data, _, _, batch, split = NETWORKS[name]
    rows = len(data()[0])
    return -(-int(rows * (1 - split)) // batch)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_path_and_thread_count_gives_bitwise_the_same_weights(name, c_calls):
    steps = steps_per_epoch(name)
    runs = {}
    for path, threads, c_calls in [("whole epoch", 2, [steps] * EPOCHS),
                                   ("step by step", 2, [1] * (steps * EPOCHS)),
                                   ("op by op", 2, []),
                                   ("whole epoch", 1, [steps] * EPOCHS)]:
        c_calls.clear()
        runs[path, threads] = train(name, threads, path)
        assert c_calls == c_calls, (path, threads)
    weights, history, iterations = runs["whole epoch", 2]
    assert iterations == steps * EPOCHS
    assert len(history["loss"]) == EPOCHS and ("val_loss" in history) == (NETWORKS[name][5] > 0)
    for key, (w, h, it) in runs.items():
        assert it == iterations, key
        assert h == history, key                # the logs are summed in step order on every path
        for a, b in zip(w, weights):
            assert_bitwise(a, b, err_msg=f"{name}: {key[0]} on {key[1]} thread(s)")


def test_paths_can_take_turns():
    """Weights, gradients and optimizer state live in one store, so switching between
    whole-epoch and step-by-step mid-training changes nothing; train_on_batch is a step
    like any other, in C or op by op from Python."""
    (x, y), _ = digits(300)
    models = []
    for _ in range(3):
        pynn.utils.set_random_seed(1)
        model = pynn.Sequential([L.Input((64,)), L.Dense(32, activation="relu"),
                                 L.Dropout(0.2), L.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        models.append(model)
    a, b, c = models
    c.engine.force_python = True
    for epoch in range(4):
        a.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
        b.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0,
              callbacks=[EveryBatch()] if epoch % 2 else [])
        c.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    losses = []
    for m in (a, c):
        losses.append([m.train_on_batch(x[i:i + 64], y[i:i + 64]) for i in range(0, 300, 64)])
    b.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    assert losses[0] == losses[1]
    assert a.optimizer.iterations == b.optimizer.iterations == c.optimizer.iterations == 25
    for wa, wb, wc in zip(a.get_weights(), b.get_weights(), c.get_weights()):
        assert_bitwise(wa, wb)
        assert_bitwise(wa, wc)


def test_same_seed_same_weights_and_another_seed_differs():
    a, b = (train("dropout", 2, "whole epoch")[0] for _ in range(2))
    for wa, wb in zip(a, b):
        assert_bitwise(wa, wb)
    pynn.utils.set_random_seed(8)
    other = dropout_net().get_weights()
    assert not np.array_equal(a[0], other[0])
    (x, y), _ = digits(64)
    fits = []
    for seed in (1, 1, 2):          # the seed also draws the shuffles and the dropout masks
        pynn.utils.set_random_seed(0)
        model = pynn.Sequential([L.Input((64,)), L.Dense(16, activation="relu"),
                                 L.Dropout(0.3), L.Dense(10, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        pynn.utils.set_random_seed(seed)
        model.fit(x, y, batch_size=16, verbose=0)
        fits.append(model.get_weights()[0])
    assert_bitwise(fits[0], fits[1])
    assert not np.array_equal(fits[0], fits[2])


def test_a_seeded_fit_repeats_bitwise_on_every_backend(backend_name):
    """Dense, batch normalization (reductions over the batch) and dropout, shuffled: the
    same seed twice gives the same bits on each backend (cuda: tiny, for the simulator)."""
    (x, y), _ = digits(12)
    runs = []
    for _ in range(2):
        pynn.utils.set_random_seed(4)
        model = pynn.Sequential([L.Input((64,)), L.Dense(16, activation="relu"),
                                 L.BatchNormalization(), L.Dropout(0.3),
                                 L.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      backend=backend_name)
        history = model.fit(x, y, batch_size=5, epochs=2, verbose=0).history
        runs.append((model.get_weights(), history))
    (w1, h1), (w2, h2) = runs
    assert h1 == h2
    for a, b in zip(w1, w2):
        assert_bitwise(a, b)


def test_a_whole_epoch_allocates_nothing_per_step():
    """After the first epoch (which sizes the buffers), an epoch of 125 steps in one C call
    allocates no Python memory per step.  (tests/c/test_plan.c counts the C side's
    allocations.)"""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=4000)
    model = pynn.Sequential([L.Input((64,)), L.Dense(32, activation="relu"),
                             L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    executor = model.engine.executor("train", 32)
    assert isinstance(executor, executor_module.CExecutor)
    order = rng.permutation(4000).astype(np.int64)
    before = model.get_weights()
    tracemalloc.start()
    executor.run([x], [y], None, order, 4000, 0, 32, 125, model.optimizer.iterations)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # three small result arrays per call; a single per-step buffer of the smallest kind
    # (the 32 x 10 float32 loss gradient, 1280 bytes) would pass this bound after 8 steps
    assert peak < 10_000, peak
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert model.engine.executor("train", 32) is executor       # reused, not rebuilt


# ---- the digits --------------------------------------------------------------------------

def test_main_job_reaches_095_on_unseen_digits(tmp_path):
    # in a scratch folder: the job writes its outputs to ./pynn_output by default
    out = subprocess.run([sys.executable, "-m", "pynn", "--epochs", "20", "--verbose", "2"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = [l for l in out.stdout.splitlines() if l.startswith("Test accuracy:")]
    assert line, out.stdout
    assert float(line[0].split()[2]) > 0.95
    assert "Epoch 20/20" in out.stdout


def test_main_job_rejects_bad_options():
    out = subprocess.run([sys.executable, "-m", "pynn", "--epochs", "0"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--epochs" in out.stderr


def test_digits_mlp_learns_and_evaluate_agrees_with_predict():
    pynn.utils.set_random_seed(0)
    (x, y), (xt, yt) = digits()
    model = pynn.Sequential([L.Input((64,)), L.Dense(128, activation="relu"),
                             L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    _, accuracy = model.evaluate(xt, yt, verbose=0)
    assert accuracy > 0.95, accuracy
    predicted = np.argmax(model.predict(xt, verbose=0), axis=1)
    assert np.mean(predicted == yt) == pytest.approx(accuracy)


def test_digits_cnn_reaches_097_on_unseen_digits(threads):
    # one thread: 1,350 steps of OpenMP regions whose barriers spin, on a machine shared
    # with other jobs, took from 1 s to over 2 minutes (the threads were checked above)
    threads(1)
    from pynn.__main__ import build_cnn
    pynn.utils.set_random_seed(0)
    (x, y), (xt, yt) = digits(shape=(8, 8, 1))
    model = build_cnn(pynn)
    model.compile(optimizer=pynn.optimizers.Adam(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=30, validation_split=0.1, verbose=0)
    _, accuracy = model.evaluate(xt, yt, verbose=0)
    assert accuracy >= 0.97, accuracy


def test_digits_train_on_the_numpy_backend_too():
    pynn.utils.set_random_seed(0)
    (x, y), (xt, yt) = digits()
    model = pynn.Sequential([L.Input((64,)), L.Dense(64, activation="tanh"),
                             L.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert model.evaluate(xt, yt, verbose=0)[1] > 0.93
