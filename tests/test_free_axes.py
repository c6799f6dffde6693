"""Inputs with a free axis besides the batch, Keras's `Input(shape=(None,))` (sequences of
any length) and `Input(shape=(None, None, 3))` (images of any size): the model is built
once, its weights fixed by the known axes; each shape of batch it runs gets its own plan
(pynn/models/engine.py: Engine.shaped), and a batch of a given shape computes exactly what
a model built for that shape computes with the same weights."""
import numpy as np
import pytest

import pynn
from pynn import layers

from conftest import assert_bitwise


def conv_net(input_shape):
    pynn.utils.set_random_seed(3)
    inp = pynn.Input(shape=input_shape)
    x = layers.Conv2D(4, 3, activation="relu", padding="same")(inp)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(5, 3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(3, activation="softmax")(x)
    return pynn.Model(inp, out)


def data(h, w, n=12, seed=0):
    rng = np.random.default_rng(seed + 17 * h + w)
    return rng.normal(size=(n, h, w, 3)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_training_on_two_sizes_matches_fixed_shape_models(backend):
    """fit on 8x8 images, then on 12x10 images: each step's weights are bitwise those of a
    model built for that size, fed the same batches."""
    (xa, ya), (xb, yb) = data(8, 8), data(12, 10)
    free = conv_net((None, None, 3))
    free.compile(pynn.optimizers.SGD(0.1), "sparse_categorical_crossentropy", backend=backend)
    fixed_a, fixed_b = conv_net((8, 8, 3)), conv_net((12, 10, 3))
    for m in (fixed_a, fixed_b):
        m.compile(pynn.optimizers.SGD(0.1), "sparse_categorical_crossentropy", backend=backend)
    fixed_a.set_weights(free.get_weights())

    hist = free.fit(xa, ya, batch_size=4, epochs=1, shuffle=False, verbose=0)
    ref = fixed_a.fit(xa, ya, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert hist.history["loss"] == ref.history["loss"]
    for a, b in zip(free.get_weights(), fixed_a.get_weights()):
        assert_bitwise(a, b)

    fixed_b.set_weights(free.get_weights())
    assert free.train_on_batch(xb, yb) == fixed_b.train_on_batch(xb, yb)
    for a, b in zip(free.get_weights(), fixed_b.get_weights()):
        assert_bitwise(a, b)
    # evaluate and predict on either size read the current weights
    fixed_a.set_weights(free.get_weights())
    assert free.evaluate(xa, ya, verbose=0) == fixed_a.evaluate(xa, ya, verbose=0)
    assert_bitwise(free.predict(xb, verbose=0), fixed_b.predict(xb, verbose=0))
    assert_bitwise(free.predict(xa[:5], verbose=0), fixed_a.predict(xa[:5], verbose=0))
    assert_bitwise(free(xb[:2]), fixed_b(xb[:2]))


def test_sequence_outputs_keep_the_batch_length():
    """An output with a free axis (a per-step output) has the batch's length."""
    pynn.utils.set_random_seed(0)
    inp = pynn.Input(shape=(None, 4))
    out = layers.Dense(2)(layers.Dense(6, activation="tanh")(inp))
    model = pynn.Model(inp, out)
    assert model.output_shape == (None, None, 2)
    model.compile("sgd", "mse")
    for steps in (3, 7):
        x = np.random.default_rng(steps).normal(size=(5, steps, 4)).astype(np.float32)
        y = model.predict(x, verbose=0)
        assert y.shape == (5, steps, 2)
        w1, b1, w2, b2 = model.get_weights()
        np.testing.assert_allclose(y, np.tanh(x @ w1 + b1) @ w2 + b2, rtol=1e-5, atol=1e-6)
        loss = model.train_on_batch(x, np.zeros((5, steps, 2), np.float32))
        assert np.isfinite(loss)


def test_saving_and_config_keep_the_free_axes(tmp_path):
    model = conv_net((None, None, 3))
    x, _ = data(9, 7)
    expected = model.predict(x, verbose=0)
    for name in ("m.keras", "m.pynn"):
        loaded = pynn.models.load_model(tmp_path / name) if model.save(tmp_path / name) is None \
            else None
        assert loaded.inputs[0].shape == (None, None, None, 3)
        assert_bitwise(loaded.predict(x, verbose=0), expected)
    again = pynn.Model.from_config(model.get_config())
    assert again.inputs[0].shape == (None, None, None, 3)


def test_onnx_export_takes_the_free_axes_from_the_signature(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = conv_net((None, None, 3))
    with pytest.raises(ValueError, match="free axis"):
        model.export(tmp_path / "m.onnx", format="onnx")
    with pytest.raises(ValueError, match="free axis 1"):
        model.export(tmp_path / "m.onnx", format="onnx", input_signature=[(None, None, 6, 3)])
    model.export(tmp_path / "m.onnx", format="onnx", input_signature=[(None, 10, 6, 3)])
    x, _ = data(10, 6)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_free_axes_are_refused_where_a_weight_depends_on_them():
    with pytest.raises(ValueError, match=r"Dense .*kernel.*free \(None\)"):
        pynn.Sequential([pynn.Input((3, None)), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Dense .*free \(None\)"):
        pynn.Sequential([pynn.Input((None, 3)), layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ValueError, match="positive integers or None"):
        pynn.Input((0, 3))
    model = conv_net((None, None, 3))
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="free axis"):
        model.plan
    with pytest.raises(ValueError, match=r"expected x of shape \(None, None, None, 3\)"):
        model.predict(np.zeros((2, 5, 5, 4), np.float32), verbose=0)


def test_targets_must_have_the_length_the_inputs_gave():
    pynn.utils.set_random_seed(0)
    inp = pynn.Input(shape=(None, 4))
    model = pynn.Model(inp, layers.Dense(2)(inp))
    model.compile("sgd", "mse")
    x = np.zeros((5, 3, 4), np.float32)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"target 0 has shape \(None, 3, 2\), received targets "
                                         r"of shape \(5, 4, 2\)"):
        model.train_on_batch(x, np.zeros((5, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"target 0 has shape \(None, 3, 2\)"):
        model.fit(x, np.zeros((5, 4, 2), np.float32), verbose=0)
    for a, b in zip(before, model.get_weights()):
        assert_bitwise(a, b)
