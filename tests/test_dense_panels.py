"""An inference plan keeps its Dense layers' weights packed in column panels between calls
(pynn/models/executor.py, csrc/pynn.h pynn_dense_pack_panels): the same bits as reading the
weights, packed only once the weights have been seen unchanged twice, and never stale
after anything that writes a weight."""
import numpy as np
import pytest

import pynn
from pynn import _core
from pynn.models import executor as executor_module


def _mlp(seed=0, frozen=False):
    pynn.utils.set_random_seed(seed)
    model = pynn.Sequential([pynn.layers.Input((30,)), pynn.layers.Dense(70, activation="relu"),
                             pynn.layers.Dense(130, activation="relu"),
                             pynn.layers.Dense(5, activation="softmax")])
    if frozen:
        model.layers[1].trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def _expected(model, x):
    """The MLP's forward in float64 NumPy from its current weights."""
    w1, b1, w2, b2, w3, b3 = (np.asarray(w, np.float64) for w in model.get_weights())
    h = np.maximum(x @ w1 + b1, 0)
    h = np.maximum(h @ w2 + b2, 0)
    z = h @ w3 + b3
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def packs(monkeypatch):
    """Counts the packings."""
    calls = []
    original = _core.dense_pack_panels

    def counting(*args):
        calls.append(args[2:])
        return original(*args)

    monkeypatch.setattr(_core, "dense_pack_panels", counting)
    return calls


@pytest.mark.parametrize("rows", [1, 3, 16, 17])
def test_panels_give_the_bits_of_the_weights(rows, monkeypatch):
    x = np.random.default_rng(rows).standard_normal((rows, 30)).astype(np.float32)
    packed = _mlp()
    got = [packed.predict_on_batch(x) for _ in range(3)]      # the 2nd and 3rd: panels
    monkeypatch.setattr(executor_module, "PANEL_MAX_FLOATS", 0)
    plain = _mlp()
    want = plain.predict_on_batch(x)
    for g in got:
        np.testing.assert_array_equal(g, want)
    np.testing.assert_allclose(got[-1], _expected(packed, x), rtol=1e-5, atol=1e-7)


def test_packed_when_seen_twice_and_not_in_a_training_loop(packs):
    model = _mlp()
    x = np.random.default_rng(0).standard_normal((4, 30)).astype(np.float32)
    model.predict_on_batch(x)
    assert packs == []                        # the first call reads the weights
    model.predict_on_batch(x)
    assert sorted(packs) == [(30, 70), (70, 130), (130, 5)]
    for _ in range(3):
        model.predict_on_batch(x)
    assert len(packs) == 3                    # unchanged weights: packed once
    y = np.zeros(4, np.int64)
    for _ in range(3):                        # training between predictions: never packed
        model.train_on_batch(x, y)
        model.predict_on_batch(x)
    assert len(packs) == 3


def test_predictions_follow_every_weight_write(tmp_path):
    model = _mlp(frozen=True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 30)).astype(np.float32)
    y = rng.integers(0, 5, 8)

    def check(what):
        for _ in range(3):                    # read, packed, packed
            np.testing.assert_allclose(model.predict_on_batch(x), _expected(model, x),
                                       rtol=1e-5, atol=1e-7, err_msg=what)
            np.testing.assert_allclose(model.predict(x, verbose=0), _expected(model, x),
                                       rtol=1e-5, atol=1e-7, err_msg=what)

    check("fresh")
    model.set_weights([w * 1.5 for w in model.get_weights()])
    check("set_weights")
    model.train_on_batch(x, y)
    check("train_on_batch")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    check("fit")
    model.layers[0].kernel.assign(rng.standard_normal((30, 70)).astype(np.float32) * .1)
    check("assign to a frozen kernel (non-trainable state)")
    path = str(tmp_path / "w.weights.pynn")           # pynn's own weights file
    saved = model.get_weights()
    model.save_weights(path)
    model.set_weights([w * 0.5 for w in saved])
    check("set_weights again")
    model.load_weights(path)
    check("load_weights")
    for a, b in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(a, b)
