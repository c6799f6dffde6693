"""The Keras-style model API: construction, shapes, weights, fit/evaluate/predict results."""
import io
import contextlib

import numpy as np
import pytest

import pynn
from pynn import layers


def small_model(**compile_kwargs):
    pynn.utils.set_random_seed(3)
    model = pynn.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                             layers.Dense(3, activation="softmax")])
    if compile_kwargs:
        model.compile(**compile_kwargs)
    return model


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y


def test_sequential_structure_and_shapes():
    model = pynn.Sequential(name="net")
    model.add(layers.Dense(4, input_shape=(3,), activation="tanh"))
    model.add(layers.Dense(2))
    assert model.built and model.input_shape == (None, 3) and model.output_shape == (None, 2)
    assert [type(l).__name__ for l in model.layers] == ["Dense", "Dense"]
    k, b, k2, b2 = model.get_weights()
    assert k.shape == (3, 4) and b.shape == (4,) and k2.shape == (4, 2) and b2.shape == (2,)
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    np.testing.assert_array_equal(b, 0)      # bias_initializer="zeros"


def test_a_compiled_sequential_trains_on_after_pop_and_add():
    """The losses follow the new output (Keras resolves them on the next call): the new
    head's targets are taken, the old head's refused, and the kept layers go on training."""
    model = small_model(optimizer="adam", loss="mse")
    x = np.ones((4, 6), np.float32)
    model.fit(x, np.zeros((4, 3)), verbose=0)
    model.pop()
    model.add(layers.Dense(5, name="new_head"))
    assert model.output_shape == (None, 5)
    kept = model.layers[0].get_weights()[0]
    model.fit(x, np.zeros((4, 5)), verbose=0)
    assert not np.array_equal(kept, model.layers[0].get_weights()[0])
    with pytest.raises(ValueError, match=r"\(None, 5\).*\(4, 3\)"):
        model.fit(x, np.zeros((4, 3)), verbose=0)


def test_lazy_build_from_data():
    model = pynn.Sequential([layers.Dense(5, activation="relu"), layers.Dense(1)])
    assert not model.built
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 7), np.float32)
    model.fit(x, np.zeros(4), verbose=0)
    assert model.built and model.layers[0].get_weights()[0].shape == (7, 5)


def test_summary_lists_layers_and_total():
    model = small_model()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.summary()
    text = out.getvalue()
    assert "Dense" in text and "(None, 8)" in text and "(None, 3)" in text
    assert f"Total params: {6 * 8 + 8 + 8 * 3 + 3:,}" in text


def test_history_keys_and_lengths():
    model = small_model(optimizer="adam", loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"])
    x, y = data()
    hist = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert hist.epoch == [0, 1, 2] and all(len(v) == 3 for v in hist.history.values())
    assert model.history is hist


def test_epoch_loss_is_sample_weighted_mean_of_batches():
    model = small_model(optimizer=pynn.optimizers.SGD(0.0 + 1e-12), loss="sparse_categorical_crossentropy")
    x, y = data(n=10)
    hist = model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    # with a negligible learning rate the weights do not move: the epoch loss is the
    # loss over all 10 samples, whatever the batches (4, 4, 2)
    full = model.evaluate(x, y, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(full, rel=1e-5)


def test_evaluate_return_forms_and_predict_shape():
    model = small_model(optimizer="sgd", loss="sparse_categorical_crossentropy",
                        metrics=["accuracy", "mae"])
    x, y = data()
    res = model.evaluate(x, y, verbose=0)
    assert isinstance(res, list) and len(res) == 3
    d = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(d) == ["loss", "accuracy", "mae"] and d["loss"] == pytest.approx(res[0])
    p = model.predict(x, verbose=0, batch_size=7)
    assert p.shape == (40, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    acc = np.mean(np.argmax(p, axis=1) == y)
    assert d["accuracy"] == pytest.approx(acc)


def test_accuracy_resolution_follows_the_loss():
    x, y = data()
    onehot = pynn.utils.to_categorical(y, 3)
    m = small_model(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    acc_cat = m.evaluate(x, onehot, verbose=0)[1]
    m2 = small_model(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    acc_sparse = m2.evaluate(x, y, verbose=0)[1]
    assert acc_cat == pytest.approx(acc_sparse)
    binary = pynn.Sequential([layers.Input((6,)), layers.Dense(1, activation="sigmoid")])
    binary.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    yb = (x[:, 0] > 0).astype(np.float32)
    acc = binary.evaluate(x, yb, verbose=0)[1]
    p = binary.predict(x, verbose=0)[:, 0]
    assert acc == pytest.approx(np.mean((p > 0.5) == yb))


def test_train_on_batch_returns_loss_before_update():
    model = small_model(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = data(n=8)
    before = model.evaluate(x, y, verbose=0, batch_size=8)
    got = model.train_on_batch(x, y)
    assert isinstance(got, float) and got == pytest.approx(before, rel=1e-6)
    assert model.evaluate(x, y, verbose=0, batch_size=8) < before
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    out = model.train_on_batch(x, y)
    assert isinstance(out, list) and len(out) == 2 and 0 <= out[1] <= 1


def test_the_plan_is_data_to_print_and_count():
    """One step is the plan's op list: forward ops, the loss (taking the softmax's logits),
    the softmax the metric reads, backward ops in reverse order, one optimizer update."""
    with pytest.raises(pynn.NotCompiledError, match="compile"):
        small_model().plan
    model = small_model(optimizer="adam", loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"])
    plan = model.plan
    assert [op.name for op in plan.ops] == ["dense", "dense", "loss", "activation", "metric",
                                            "dense_backward", "dense_backward", "optimizer"]
    assert plan.count("dense") == 2 and plan.loss_names == ["loss"]
    text = str(plan)
    assert text.startswith("plan (train): 8 ops") and f"= {model.layers[1].kernel.path}" in text
    assert [op.name for op in model.engine.plan("predict").ops] == ["dense", "dense"]


def test_get_set_weights_roundtrip_changes_predictions():
    model = small_model()
    x, _ = data()
    w = model.get_weights()
    p0 = model.predict(x, verbose=0)
    model.set_weights([np.zeros_like(a) for a in w])
    np.testing.assert_allclose(model.predict(x, verbose=0), 1 / 3, rtol=1e-6)
    model.set_weights(w)
    np.testing.assert_array_equal(model.predict(x, verbose=0), p0)
    w[0][0, 0] += 1.0                  # get_weights returns copies
    np.testing.assert_array_equal(model.predict(x, verbose=0), p0)


def test_layer_get_set_weights_keras_layout():
    d = layers.Dense(3, input_shape=(2,))
    pynn.Sequential([d])
    k = np.arange(6, dtype=np.float32).reshape(2, 3)
    d.set_weights([k, np.array([1, 2, 3], np.float32)])
    kk, bb = d.get_weights()
    np.testing.assert_array_equal(kk, k)
    np.testing.assert_array_equal(bb, [1, 2, 3])


def test_accepts_float64_fortran_strided_and_lists():
    model = small_model(optimizer=pynn.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    x, y = data()
    base = model.predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x.astype(np.float64), verbose=0), base)
    np.testing.assert_allclose(model.predict(np.asfortranarray(x), verbose=0), base)
    wide = np.zeros((40, 12), np.float32)
    wide[:, ::2] = x
    np.testing.assert_allclose(model.predict(wide[:, ::2], verbose=0), base)
    np.testing.assert_allclose(model.predict(x.tolist(), verbose=0), base, rtol=1e-6)
    model.fit(x.tolist(), y.tolist(), epochs=1, verbose=0)
    model.train_on_batch(np.asfortranarray(x[:8].astype(np.float64)), y[:8].astype(np.float64))


def test_initializers_by_name_and_statistics():
    pynn.utils.set_random_seed(0)
    shape = (400, 300)
    for name, check in [
        ("glorot_uniform", lambda w: np.abs(w).max() <= np.sqrt(6 / 700) + 1e-7),
        ("he_uniform", lambda w: np.abs(w).max() <= np.sqrt(6 / 400) + 1e-7),
        ("he_normal", lambda w: abs(w.std() - np.sqrt(2 / 400)) < 0.05 * np.sqrt(2 / 400)),
        ("glorot_normal", lambda w: abs(w.std() - np.sqrt(1 / 350)) < 0.05 * np.sqrt(1 / 350)),
        ("random_normal", lambda w: abs(w.std() - 0.05) < 0.003 and abs(w.mean()) < 0.002),
        ("random_uniform", lambda w: np.abs(w).max() <= 0.05 and w.std() > 0.025),
        ("zeros", lambda w: not w.any()),
        ("ones", lambda w: np.all(w == 1)),
    ]:
        w = pynn.initializers.get(name)(shape)
        assert w.dtype == np.float32 and w.shape == shape and check(w), name
    w = pynn.initializers.RandomNormal(mean=1.0, stddev=0.5)((1000,))
    assert abs(w.mean() - 1.0) < 0.05


def test_seed_makes_weights_repeatable():
    def weights():
        pynn.utils.set_random_seed(42)
        return pynn.Sequential([layers.Input((5,)), layers.Dense(4)]).get_weights()[0]
    np.testing.assert_array_equal(weights(), weights())


def test_matmul_op():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(pynn.ops.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pynn.ops.matmul(a.T, b, transpose_a=True), a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pynn.ops.matmul(a, b.T, transpose_b=True), a @ b, rtol=1e-5, atol=1e-5)
    out = np.empty((7, 3), np.float32)
    r = pynn.ops.matmul(a, b, out=out)
    assert r is out and np.shares_memory(r, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_threads_setting():
    old = pynn.get_num_threads()
    try:
        pynn.set_num_threads(1)
        assert pynn.get_num_threads() == 1
        pynn.set_num_threads(2)
        assert pynn.get_num_threads() == 2
    finally:
        pynn.set_num_threads(old)


def test_backend_selection():
    assert pynn.get_backend() == "cpu"
    try:
        pynn.set_backend("numpy")
        m = small_model(optimizer="sgd", loss="mse")
        assert m.engine.backend.name == "numpy"
        assert pynn.Sequential([layers.Input((2,)), layers.Dense(1)]).engine.backend.name == \
            "numpy"
    finally:
        pynn.set_backend("cpu")
    m = small_model(optimizer="sgd", loss="mse", backend="numpy")
    x, _ = data()
    p_np = m.predict(x, verbose=0)
    m.compile(optimizer="sgd", loss="mse", backend="cpu")
    np.testing.assert_allclose(m.predict(x, verbose=0), p_np, rtol=1e-5, atol=1e-6)


def test_progress_output_modes(capsys):
    model = small_model(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=2)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and "loss:" in out and "accuracy:" in out
    assert out.count("5/5") == 2
    model.fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr().out   # not a terminal: one line per epoch, no redraws
    assert out.count("5/5") == 2 and "\r" not in out
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_digits_dataset_shapes():
    (xt, yt), (xs, ys) = pynn.datasets.digits.load_data()
    assert xt.shape == (1437, 8, 8) and xs.shape == (360, 8, 8)
    assert yt.shape == (1437,) and ys.shape == (360,)
    assert xt.min() == 0 and xt.max() == 16 and set(np.unique(yt)) == set(range(10))


# ---- Keras 3's other losses (issue 11): names, configs, files, calls -----------------------

KERAS_LOSS_NAMES = {
    "mae": "MeanAbsoluteError", "mean_absolute_error": "MeanAbsoluteError",
    "mape": "MeanAbsolutePercentageError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "huber": "Huber", "log_cosh": "LogCosh", "logcosh": "LogCosh",
    "kld": "KLDivergence", "kl_divergence": "KLDivergence", "KLD": "KLDivergence",
    "hinge": "Hinge", "squared_hinge": "SquaredHinge", "categorical_hinge": "CategoricalHinge",
    "poisson": "Poisson", "cosine_similarity": "CosineSimilarity",
}


@pytest.mark.parametrize("name", list(KERAS_LOSS_NAMES))
def test_keras_loss_names_resolve(name):
    assert type(pynn.losses.get(name)).__name__ == KERAS_LOSS_NAMES[name]


def test_new_losses_keep_keras_defaults_and_round_trip_their_configs(tmp_path):
    huber = pynn.losses.Huber(delta=0.25)
    assert (pynn.losses.Huber().delta, pynn.losses.Huber().name) == (1.0, "huber_loss")
    assert huber.get_config() == {"name": "huber_loss", "reduction": "sum_over_batch_size",
                                  "delta": 0.25}
    assert pynn.losses.Huber.from_config(huber.get_config()).delta == 0.25
    cos = pynn.losses.CosineSimilarity()
    assert cos.get_config() == {"name": "cosine_similarity", "reduction": "sum_over_batch_size",
                                "axis": -1}
    assert pynn.losses.KLDivergence().name == "kl_divergence"
    # a saved model keeps its loss and the loss's parameter
    model = pynn.Sequential([pynn.layers.Input((3,)), pynn.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=huber)
    path = tmp_path / "huber.keras"
    model.save(path)
    loaded = pynn.models.load_model(path)
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))


def test_new_loss_objects_are_callable_with_keras_values():
    """Keras 3's docstring value (Huber) and hand-computed ones."""
    y_true = np.array([[0.0, 1.0], [0.0, 0.0]])
    y_pred = np.array([[0.6, 0.4], [0.4, 0.6]])
    assert pynn.losses.MeanAbsoluteError()(y_true, y_pred) == pytest.approx(0.55)
    assert pynn.losses.Huber()(y_true, y_pred) == pytest.approx(0.155)
    log_cosh = np.log(np.cosh(y_pred - y_true)).mean()
    assert pynn.losses.LogCosh()(y_true, y_pred) == pytest.approx(log_cosh, rel=1e-6)
    assert pynn.losses.Hinge()(y_true, y_pred) == pytest.approx(1.3, abs=1e-6)
    assert pynn.losses.SquaredHinge()(y_true, y_pred) == pytest.approx(1.86, abs=1e-6)
    poisson = ((1.0 - np.log(0.4 + 1e-7)) / 2 + 0.5) / 2
    assert pynn.losses.Poisson()(y_true, y_pred) == pytest.approx(poisson, rel=1e-6)
    cos = pynn.losses.CosineSimilarity()(np.array([[0.0, 1.0], [1.0, 1.0]]),
                                         np.array([[1.0, 0.0], [1.0, 1.0]]))
    assert cos == pytest.approx(-0.5, abs=1e-6)


def test_ops_softmax_and_expand_dims_as_keras_ops():
    """keras.ops.softmax / expand_dims, which the TensorFlow tutorials call on predictions."""
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32) * 10
    for axis in (-1, 0, 1):
        z = x.astype(np.float64) - x.max(axis=axis, keepdims=True)
        expected = np.exp(z) / np.exp(z).sum(axis=axis, keepdims=True)
        got = pynn.ops.softmax(x, axis=axis)
        assert got.shape == x.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert pynn.ops.expand_dims(x[0], 0).shape == (1, 3, 4)
    with pytest.raises(ValueError, match="scalar"):
        pynn.ops.softmax(np.float32(1.0))
