"""Same seed + same data = bitwise-identical weights on 1 or 2 threads; and a real
training run on the bundled digits reaches the accuracy the main job promises."""
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import layers


def digits():
    (xt, yt), (xs, ys) = pynn.datasets.digits.load_data()
    return (xt.reshape(len(xt), -1) / 16.0, yt), (xs.reshape(len(xs), -1) / 16.0, ys)


def train(threads, backend="cpu", optimizer="adam", hidden=(128, 64), epochs=3):
    old = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        pynn.utils.set_random_seed(7)
        (x, y), _ = digits()
        model = pynn.Sequential([layers.Input((64,))] +
                                [layers.Dense(h, activation="relu") for h in hidden] +
                                [layers.Dense(10, activation="softmax")])
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", backend=backend)
        # a large batch so the kernels take their multi-threaded paths
        model.fit(x, y, batch_size=300, epochs=epochs, verbose=0)
        return model.get_weights()
    finally:
        pynn.set_num_threads(old)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_one_and_two_threads_give_bitwise_identical_weights(optimizer):
    a = train(1, optimizer=optimizer, hidden=(600, 300))
    b = train(2, optimizer=optimizer, hidden=(600, 300))
    for wa, wb in zip(a, b):
        assert wa.tobytes() == wb.tobytes()


def test_same_seed_same_weights_and_different_seed_differs():
    a, b = train(2), train(2)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    pynn.utils.set_random_seed(8)
    c = pynn.Sequential([layers.Input((64,)), layers.Dense(128)]).get_weights()[0]
    assert not np.array_equal(a[0], c)


def test_digits_mlp_reaches_high_test_accuracy():
    pynn.utils.set_random_seed(0)
    (x, y), (xs, ys) = digits()
    model = pynn.Sequential([layers.Input((64,)), layers.Dense(128, activation="relu"),
                             layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] / 5
    loss, acc = model.evaluate(xs, ys, verbose=0)
    assert acc > 0.95, acc
    pred = np.argmax(model.predict(xs, verbose=0), axis=1)
    assert np.mean(pred == ys) == pytest.approx(acc)


def test_digits_trains_on_numpy_backend_too():
    pynn.utils.set_random_seed(0)
    (x, y), (xs, ys) = digits()
    model = pynn.Sequential([layers.Input((64,)), layers.Dense(64, activation="tanh"),
                             layers.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert model.evaluate(xs, ys, verbose=0)[1] > 0.93


def test_main_job_runs_and_reports_accuracy(tmp_path):
    # run in a scratch folder: the job writes its outputs to ./pynn_output by default
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
