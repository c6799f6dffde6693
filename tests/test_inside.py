"""Seeing inside: model.activations(x) and the ActivationMonitor callback, checked against
NumPy computations of the same quantities; the monitor's cost relative to an epoch is a
timing (marked slow, not in the default run)."""
import time

import numpy as np
import pytest

import pynn
from pynn import callbacks, layers

from conftest import assert_close


def digits():
    (xt, yt), _ = pynn.datasets.digits.load_data()
    return xt.reshape(len(xt), -1).astype(np.float32) / 16, yt


def numpy_forward(model, x):
    """Each layer's output computed with NumPy from the model's weights."""
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
            "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "linear": lambda z: z,
            "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True)) /
            np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)}
    outs, h = [], x.astype(np.float64)
    for layer in model.layers:
        w = layer.get_weights()
        h = acts[layer.activation](h @ w[0] + (w[1] if len(w) > 1 else 0))
        outs.append(h)
    return outs


def model_of(acts=("relu", "tanh", "sigmoid", "softmax"), seed=0):
    pynn.utils.set_random_seed(seed)
    model = pynn.Sequential([layers.Input((64,))] +
                            [layers.Dense(u, activation=a, name=f"l{i}")
                             for i, (u, a) in enumerate(zip((40, 30, 20, 10), acts))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_activations_for_one_image_and_for_a_batch():
    x, y = digits()
    model = model_of()
    model.fit(x, y, epochs=2, verbose=0)
    one = model.activations(x[5])
    assert [a.shape for a in one] == [(40,), (30,), (20,), (10,)]
    batch = model.activations(x[:7])
    assert [a.shape for a in batch] == [(7, 40), (7, 30), (7, 20), (7, 10)]
    for a, b in zip(one, batch):
        np.testing.assert_allclose(a, b[5], rtol=1e-6, atol=1e-7)
    for got, want in zip(batch, numpy_forward(model, x[:7])):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    np.testing.assert_array_equal(batch[-1], model.predict(x[:7], verbose=0))
    assert one[0].min() >= 0 and np.count_nonzero(one[0]) < 40      # relu: some fired, some not
    # the arrays are the caller's: a later call does not change them
    keep = [a.copy() for a in one]
    model.activations(x[6])
    for a, b in zip(one, keep):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"activations.*'l0'.*\(None, 64\).*\(2, 63\)"):
        model.activations(np.zeros((2, 63)))


def test_activations_of_a_graph_follow_its_calls():
    """One array per layer call of the graph, in execution order: a shared layer's two
    calls, a nested model's calls (its output), no InputLayers."""
    pynn.utils.set_random_seed(0)
    inner = pynn.Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh", name="in1"),
                             layers.Dense(3, activation="relu", name="in2")], name="inner")
    a, b = layers.Input((5,), name="a"), layers.Input((5,), name="b")
    shared = layers.Dense(5, activation="sigmoid", name="shared")
    out = layers.Add(name="sum")([inner(shared(a)), inner(shared(b))])
    model = pynn.Model([a, b], out)
    rng = np.random.default_rng(0)
    xa, xb = rng.random((2, 5), dtype=np.float32), rng.random((2, 5), dtype=np.float32)
    acts = model.activations([xa, xb])
    names = [l.name for l in model.activation_layers()]
    assert names == ["shared", "inner", "shared", "inner", "sum"] and len(acts) == 5
    w = {v.path: v.numpy().astype(np.float64) for v in model.weights}
    sig = lambda z: 1 / (1 + np.exp(-z))
    ha, hb = (sig(x @ w["shared/kernel"] + w["shared/bias"]) for x in (xa, xb))
    inner_of = lambda h: np.maximum(np.tanh(h @ w["in1/kernel"] + w["in1/bias"]) @
                                    w["in2/kernel"] + w["in2/bias"], 0)
    for got, want in zip(acts, [ha, inner_of(ha), hb, inner_of(hb), inner_of(ha) + inner_of(hb)]):
        assert_close(got, want)
    np.testing.assert_array_equal(acts[-1], model.predict([xa, xb], verbose=0))
    with pytest.raises(ValueError, match=r"activations.*2 inputs"):
        model.activations(xa)


def test_monitor_numbers_match_numpy():
    x, y = digits()
    sample = x[:100]
    model = model_of()
    snaps = []

    class Snap(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            snaps.append([l.get_weights() for l in self.model.layers])

        def on_epoch_end(self, epoch, logs=None):
            snaps.append([l.get_weights() for l in self.model.layers])

    monitor = callbacks.ActivationMonitor(sample)
    hist = model.fit(x, y, epochs=3, validation_split=0.1, verbose=0, callbacks=[Snap(), monitor])
    h = hist.history
    expected_keys = {f"l{i}/{k}" for i in range(4) for k in ("active_fraction", "dead_units", "update_ratio")}
    expected_keys |= {"l1/saturated_fraction", "l2/saturated_fraction"}
    assert {k for k in h if "/" in k} == expected_keys
    assert all(len(v) == 3 for v in h.values())
    outs = numpy_forward(model, sample)                # weights at the end of the last epoch
    fired = [outs[0] > 0, outs[1] > 0, outs[2] > 0.5, outs[3] > 0.1]
    for i, f in enumerate(fired):
        assert h[f"l{i}/active_fraction"][-1] == pytest.approx(f.mean(), abs=2e-3)
        assert h[f"l{i}/dead_units"][-1] == int(np.sum(~f.any(axis=0)))
        np.testing.assert_allclose(monitor.unit_activity[f"l{i}"][-1], f.mean(axis=0), atol=2e-2)
    sat_tanh = np.mean(np.mean(np.abs(outs[1]) > 0.99, axis=0) > 0.5)
    assert h["l1/saturated_fraction"][-1] == pytest.approx(sat_tanh)
    for epoch in range(3):
        before, after = snaps[2 * epoch], snaps[2 * epoch + 1]
        for i in range(4):
            moved = np.sqrt(sum(np.sum((a.astype(np.float64) - b) ** 2) for a, b in zip(after[i], before[i])))
            size = np.sqrt(sum(np.sum(b.astype(np.float64) ** 2) for b in before[i]))
            assert h[f"l{i}/update_ratio"][epoch] == pytest.approx(moved / size, rel=1e-3)
            assert h[f"l{i}/update_ratio"][epoch] > 0


def test_monitor_sees_dead_and_saturated_units():
    x, y = digits()
    model = model_of(acts=("relu", "sigmoid", "tanh", "softmax"))
    w = model.get_weights()
    w[1][:5] = -100.0                       # l0 units 0..4 can never fire (inputs are >= 0)
    w[2] *= 0                               # l1: sigmoid of a huge bias -> saturated
    w[3][:] = 50.0
    w[4] *= 0                               # l2: tanh of a huge negative bias -> saturated
    w[5][:] = -50.0
    model.set_weights(w)
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    hist = model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ActivationMonitor(x[:64])])
    h = hist.history
    never = ~(numpy_forward(model, x[:64])[0] > 0).any(axis=0)
    assert never[:5].all() and h["l0/dead_units"] == [int(never.sum())]
    assert h["l1/saturated_fraction"] == [1.0] and h["l2/saturated_fraction"] == [1.0]
    assert h["l1/active_fraction"] == [1.0] and h["l2/active_fraction"] == [0.0]
    assert h["l2/dead_units"] == [20]
    assert h["l0/update_ratio"] == [0.0]                 # learning rate 0: nothing moved


def test_monitor_refuses_a_sample_of_the_wrong_shape_before_training():
    x, y = digits()
    model = model_of()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"ActivationMonitor.*'l0'.*x_sample of shape "
                                         r"\(None, 64\).*\(10, 30\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ActivationMonitor(x[:10, :30])])
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def monitor_overhead(x, y, sample=256, epochs=6, repeats=5):
    """Fit time with an ActivationMonitor over fit time without, minus 1, and the epoch
    time without it: the best of interleaved runs of the main job's MLP (the minimum is
    the estimate least disturbed by other work on a shared machine)."""
    def run(with_monitor):
        pynn.utils.set_random_seed(0)
        model = pynn.Sequential([layers.Input((64,)), layers.Dense(128, activation="relu"),
                                 layers.Dense(64, activation="relu"),
                                 layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        cbs = [callbacks.ActivationMonitor(x[:sample])] if with_monitor else []
        start = time.perf_counter()
        model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.1, verbose=0, callbacks=cbs)
        return time.perf_counter() - start

    plain, monitored = [], []
    for _ in range(repeats):
        plain.append(run(False))
        monitored.append(run(True))
    return min(monitored) / min(plain) - 1, min(plain) / epochs


@pytest.mark.slow
def test_monitor_costs_little_of_an_epoch():
    """The monitor costs one forward pass over its sample plus two weight copies per epoch.
    Against an epoch of 8 copies of the digits (11,500 images, ~15 ms) a 256-image sample
    is ~1%: asserted below 5%.  The bundled digits alone make an epoch of only ~2 ms (1,293
    training images), against which the same sample costs ~8% (printed with pytest -s, bounded
    generously: this shared machine is noisy)."""
    x, y = digits()
    big_x, big_y = np.concatenate([x] * 8), np.concatenate([y] * 8)
    threads = pynn.get_num_threads()
    pynn.set_num_threads(1)       # OpenMP threads on a busy shared machine: timing noise
    try:
        overhead, epoch = monitor_overhead(big_x, big_y, epochs=4)
        print(f"\nActivationMonitor(256 images): {100 * overhead:.1f}% of a {1e3 * epoch:.1f} ms "
              f"epoch ({len(big_x)} images)")
        small, small_epoch = monitor_overhead(x, y, repeats=9)
        print(f"ActivationMonitor(256 images): {100 * small:.1f}% of a {1e3 * small_epoch:.2f} ms "
              f"epoch ({len(x)} images)")
    finally:
        pynn.set_num_threads(threads)
    assert overhead < 0.05
    assert small < 0.5
