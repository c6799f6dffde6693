"""Bad input gets a clear ValueError/TypeError naming what was expected and received,
and a refused call leaves the model unchanged."""
import numpy as np
import pytest

import pynn
from pynn import layers


def compiled_model(loss="sparse_categorical_crossentropy"):
    pynn.utils.set_random_seed(1)
    model = pynn.Sequential([layers.Input((4,)), layers.Dense(5, activation="relu", name="hidden"),
                             layers.Dense(3, activation="softmax", name="out")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"])
    return model


def good_data(n=12):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, size=n)


def snapshot(model):
    return [w.copy() for w in model.get_weights()], model.optimizer.iterations


def assert_unchanged(model, snap):
    weights, iterations = snap
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == iterations


BAD_FIT = [
    ("wrong feature count", lambda x, y: (np.ones((12, 5)), y), ValueError, ["hidden", "4", "5"]),
    ("x/y length mismatch", lambda x, y: (x, y[:10]), ValueError, ["12", "10"]),
    ("label out of range", lambda x, y: (x, np.where(y == 0, 3, y)), ValueError, ["3", "[0, 2]"]),
    ("negative label", lambda x, y: (x, np.where(y == 0, -1, y)), ValueError, ["-1"]),
    ("fractional label", lambda x, y: (x, y + 0.5), ValueError, ["integer"]),
    ("NaN in x", lambda x, y: (np.where(x > 1, np.nan, x), y), ValueError, ["NaN"]),
    ("inf in x", lambda x, y: (np.where(x > 1, np.inf, x), y), ValueError, ["infinite"]),
    ("NaN in y", lambda x, y: (x, np.where(y == 0, np.nan, y)), ValueError, ["NaN"]),
    ("float64 overflow", lambda x, y: (np.where(x > 1, 1e300, x.astype(np.float64)), y), ValueError,
     ["float32"]),
    ("empty x", lambda x, y: (x[:0], y[:0]), ValueError, ["at least one sample"]),
    ("strings", lambda x, y: (np.array([["a"] * 4] * 12), y), TypeError, ["numeric"]),
    ("objects", lambda x, y: (np.array([[object()] * 4] * 12), y), TypeError, ["numeric"]),
    ("ragged list", lambda x, y: ([[1, 2, 3, 4], [1, 2]], y[:2]), TypeError, ["numeric"]),
    ("complex", lambda x, y: (x.astype(np.complex64), y), TypeError, ["complex"]),
    ("None x", lambda x, y: (None, y), ValueError, ["None"]),
    ("y wrong rank", lambda x, y: (x, np.zeros((12, 3, 2))), ValueError, ["(n,)"]),
]


@pytest.mark.parametrize("case,make,exc,words", BAD_FIT, ids=[c[0] for c in BAD_FIT])
def test_fit_refuses_bad_data_and_leaves_model_unchanged(case, make, exc, words):
    model = compiled_model()
    x, y = good_data()
    model.fit(x, y, epochs=1, verbose=0)        # optimizer state exists
    snap = snapshot(model)
    bx, by = make(x, y)
    for call in (lambda: model.fit(bx, by, verbose=0), lambda: model.train_on_batch(bx, by),
                 lambda: model.evaluate(bx, by, verbose=0)):
        with pytest.raises(exc) as info:
            call()
        for w in words:
            assert w in str(info.value), (case, str(info.value))
    assert_unchanged(model, snap)


def test_categorical_targets_must_match_outputs():
    model = compiled_model("categorical_crossentropy")
    x, _ = good_data()
    with pytest.raises(ValueError, match=r"\(n, 3\).*\(12, 4\)"):
        model.fit(x, np.zeros((12, 4)), verbose=0)


@pytest.mark.parametrize("kwargs,words", [
    (dict(batch_size=0), ["batch_size", "0"]),
    (dict(batch_size=-3), ["batch_size"]),
    (dict(batch_size=2.5), ["batch_size"]),
    (dict(epochs=-1), ["epochs"]),
    (dict(verbose=3), ["verbose"]),
    (dict(validation_split=1.0), ["validation_split"]),
    (dict(validation_data=(np.ones((3, 4)),)), ["validation_data"]),
    (dict(validation_data=(np.ones((3, 2)), np.zeros(3))), ["x_val"]),
])
def test_fit_refuses_bad_arguments(kwargs, words):
    model = compiled_model()
    x, y = good_data()
    snap = snapshot(model)
    with pytest.raises(ValueError) as info:
        model.fit(x, y, **kwargs)
    for w in words:
        assert w in str(info.value)
    assert_unchanged(model, snap)


def test_predict_and_evaluate_refuse_bad_batch_size():
    model = compiled_model()
    x, y = good_data()
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.evaluate(x, y, batch_size=0)


def test_fit_before_compile():
    model = pynn.Sequential([layers.Input((4,)), layers.Dense(2)])
    x, y = good_data()
    with pytest.raises(pynn.NotCompiledError, match="compile"):
        model.fit(x, y)
    with pytest.raises(RuntimeError):
        model.evaluate(x, y)
    with pytest.raises(ValueError):
        model.train_on_batch(x, y)


def test_set_weights_refuses_wrong_count_and_shapes():
    model = compiled_model()
    snap = snapshot(model)
    w = model.get_weights()
    with pytest.raises(ValueError, match="expected 4 arrays.*received 3"):
        model.set_weights(w[:3])
    bad = [a.copy() for a in w]
    bad[2] = np.zeros((5, 4), np.float32)
    bad[0] = np.full_like(w[0], 7.0)      # a valid first array must not be applied either
    with pytest.raises(ValueError, match=r"'out'.*\(5, 3\).*\(5, 4\)"):
        model.set_weights(bad)
    with pytest.raises(ValueError, match="NaN"):
        model.set_weights([np.full_like(a, np.nan) for a in w])
    with pytest.raises(TypeError):
        model.set_weights([np.array([["x"] * 5] * 4)] + w[1:])
    assert_unchanged(model, snap)
    with pytest.raises(ValueError, match=r"expected 2 arrays .*kernel, bias.*received 1"):
        model.layers[0].set_weights([w[0]])
    with pytest.raises(ValueError, match=r"kernel of shape \(4, 5\)"):
        model.layers[0].set_weights([w[0].T, w[1]])
    assert_unchanged(model, snap)


@pytest.mark.parametrize("make,exc,words", [
    (lambda: layers.Dense(0), ValueError, ["units", "units=0"]),
    (lambda: layers.Dense(-2), ValueError, ["units=-2"]),
    (lambda: layers.Dense(2.5), ValueError, ["units=2.5"]),
    (lambda: layers.Dense("8"), ValueError, ["units='8'"]),
    (lambda: layers.Dense(3, activation="relux"), ValueError, ["relux", "relu"]),
    (lambda: layers.Dense(3, activation=5), TypeError, ["activation"]),
    (lambda: layers.Activation("swishy"), ValueError, ["swishy"]),
    (lambda: layers.Dense(3, kernel_initializer="glorot"), ValueError, ["glorot", "glorot_uniform"]),
    (lambda: layers.Dense(3, bias_initializer=3.0), TypeError, ["initializer"]),
    (lambda: layers.Dense(3, input_shape=(0,)), ValueError, ["input_shape"]),
    (lambda: layers.Input((3, -1)), ValueError, ["shape"]),
    (lambda: pynn.optimizers.SGD(learning_rate=-1), ValueError, ["learning_rate"]),
    (lambda: pynn.optimizers.SGD(momentum=1.5), ValueError, ["momentum"]),
    (lambda: pynn.optimizers.Adam(beta_1=1.0), ValueError, ["beta_1"]),
    (lambda: pynn.optimizers.RMSprop(rho=-0.1), ValueError, ["rho"]),
    (lambda: pynn.Sequential([layers.Dense(2), "dense"]), TypeError, ["layer"]),
])
def test_constructors_refuse_bad_arguments(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(optimizer="adamw", loss="mse"), ValueError, ["adamw", "adam"]),
    (dict(optimizer="sgd", loss="hinge"), ValueError, ["hinge", "mse"]),
    (dict(optimizer="sgd", loss="mse", metrics=["precision"]), ValueError, ["precision"]),
    (dict(optimizer="sgd", loss="mse", backend="tpu"), ValueError, ["tpu", "cpu"]),
    (dict(optimizer=3, loss="mse"), TypeError, ["optimizer"]),
    (dict(optimizer="sgd", loss=len), TypeError, ["loss"]),
])
def test_compile_refuses_unknown_names_and_keeps_configuration(kwargs, exc, words):
    model = compiled_model()
    opt, loss = model.optimizer, model.loss
    with pytest.raises(exc) as info:
        model.compile(**kwargs)
    for w in words:
        assert w in str(info.value)
    assert model.optimizer is opt and model.loss is loss


def test_duplicate_layer_names_refused():
    with pytest.raises(ValueError, match="unique"):
        pynn.Sequential([layers.Dense(2, name="a"), layers.Dense(2, name="a")])


def test_matmul_refuses_bad_operands():
    with pytest.raises(ValueError, match="inner dimensions"):
        pynn.ops.matmul(np.ones((3, 4)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="2-D"):
        pynn.ops.matmul(np.ones(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        pynn.ops.matmul(np.ones((3, 4)), np.ones((4, 2)), out=np.empty((2, 3), np.float32))
    with pytest.raises(TypeError, match="float32"):
        pynn.ops.matmul(np.ones((3, 4)), np.ones((4, 2)), out=np.empty((3, 2)))


def test_no_input_crashes_the_process():
    """Degenerate but legal shapes go through the C kernels without harm."""
    model = pynn.Sequential([layers.Input((1,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(np.zeros((1, 1)), np.ones(1), batch_size=1000, epochs=2, verbose=0)
    assert model.predict(np.zeros((1, 1)), verbose=0).shape == (1, 1)
    assert pynn.ops.matmul(np.ones((1, 0)), np.ones((0, 1))).tolist() == [[0.0]]
    with pytest.raises(ValueError):
        pynn.set_num_threads(0)
    with pytest.raises(ValueError):
        pynn.utils.set_random_seed(-1)
