"""Bad input gets a clear ValueError/TypeError naming what was expected and received,
and a refused call leaves the model unchanged: its weights, its optimizer's step count and
state.  (Refused layer and model constructor arguments: tests/test_layers.py.)"""
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
    state = model.optimizer.state_arrays() if model.optimizer.built else None
    return ([w.copy() for w in model.get_weights()], model.optimizer.iterations,
            None if state is None else {k: np.array(v, copy=True) for k, v in state.items()})


def assert_unchanged(model, snap):
    weights, iterations, state = snap
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == iterations
    if state is not None:
        now = model.optimizer.state_arrays()
        for k, v in state.items():
            np.testing.assert_array_equal(now[k], v)


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
    ("y wrong rank", lambda x, y: (x, np.zeros((12, 3, 2))), ValueError,
     ["(None,)", "(12, 3, 2)"]),
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
    snap = snapshot(model)
    with pytest.raises(ValueError, match=r"\(None, 3\).*\(12, 4\)"):
        model.fit(x, np.zeros((12, 4)), verbose=0)
    assert_unchanged(model, snap)


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
    with pytest.raises(ValueError, match=r"out/kernel of shape \(5, 3\).*\(5, 4\)"):
        model.set_weights(bad)
    with pytest.raises(ValueError, match="NaN"):
        model.set_weights([np.full_like(a, np.nan) for a in w])
    with pytest.raises(TypeError):
        model.set_weights([np.array([["x"] * 5] * 4)] + w[1:])
    assert_unchanged(model, snap)
    with pytest.raises(ValueError,
                       match=r"expected 2 arrays \(hidden/kernel, hidden/bias\), received 1"):
        model.layers[0].set_weights([w[0]])
    with pytest.raises(ValueError,
                       match=r"hidden/kernel of shape \(4, 5\), received shape \(5, 4\)"):
        model.layers[0].set_weights([w[0].T, w[1]])
    assert_unchanged(model, snap)


@pytest.mark.parametrize("make,exc,words", [
    (lambda: pynn.optimizers.SGD(learning_rate=-1), ValueError, ["learning_rate", "-1"]),
    (lambda: pynn.optimizers.SGD(momentum=1.5), ValueError, ["momentum", "1.5"]),
    (lambda: pynn.optimizers.Adam(beta_1=1.0), ValueError, ["beta_1", "1.0"]),
    (lambda: pynn.optimizers.RMSprop(rho=-0.1), ValueError, ["rho", "-0.1"]),
    # types are checked, not coerced; numbers must be finite in float32
    (lambda: pynn.optimizers.SGD(learning_rate=1e308), ValueError, ["learning_rate", "1e+308"]),
    (lambda: pynn.optimizers.SGD(learning_rate=2**2000), ValueError, ["learning_rate"]),
    (lambda: pynn.optimizers.Adam(learning_rate="0.1"), ValueError, ["learning_rate='0.1'"]),
    (lambda: pynn.optimizers.SGD(nesterov="no"), ValueError, ["nesterov", "nesterov='no'"]),
    (lambda: pynn.optimizers.Adam(amsgrad="no"), ValueError, ["amsgrad='no'"]),
    (lambda: pynn.optimizers.RMSprop(centered=0), ValueError, ["centered=0"]),
    (lambda: pynn.optimizers.Adam(epsilon=float("inf")), ValueError, ["epsilon=inf"]),
    (lambda: pynn.optimizers.Adam(name=5), ValueError, ["name", "name=5"]),
    (lambda: pynn.losses.BinaryCrossentropy(from_logits="no"), ValueError,
     ["from_logits", "from_logits='no'"]),
    (lambda: pynn.losses.MeanSquaredError(name=["mse"]), ValueError, ["name=['mse']"]),
    (lambda: pynn.initializers.VarianceScaling(scale=float("inf")), ValueError, ["scale=inf"]),
    (lambda: pynn.initializers.VarianceScaling(mode=["fan_in"]), ValueError, ["mode"]),
    (lambda: pynn.initializers.RandomUniform(1.0, 0.0), ValueError, ["maxval=0.0"]),
    (lambda: pynn.initializers.GlorotUniform(seed=True), ValueError, ["seed=True"]),
])
def test_optimizers_losses_and_initializers_refuse_bad_arguments(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(optimizer="adamw", loss="mse"), ValueError, ["adamw", "adam"]),
    (dict(optimizer="sgd", loss="hinge"), ValueError, ["hinge", "mse"]),
    (dict(optimizer="sgd", loss="mse", metrics=["precision"]), ValueError, ["precision"]),
    (dict(optimizer="sgd", loss="mse", backend="tpu"), ValueError, ["tpu", "cpu"]),
    (dict(optimizer="sgd", loss="mse", loss_weights=float("inf")), ValueError, ["loss_weights"]),
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


# ---- models with several inputs and outputs -------------------------------------------------

def two_by_two():
    """Inputs a (3,) and b (2,); outputs cls (4 classes) and score (1 value)."""
    pynn.utils.set_random_seed(2)
    a, b = layers.Input((3,), name="a"), layers.Input((2,), name="b")
    joined = layers.Concatenate(name="joined")([a, b])
    model = pynn.Model([a, b], [layers.Dense(4, activation="softmax", name="cls")(joined),
                                layers.Dense(1, name="score")(joined)])
    model.compile(optimizer="adam", loss={"cls": "sparse_categorical_crossentropy",
                                          "score": "mse"},
                  metrics={"cls": ["accuracy"]})
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(5, 3)), rng.normal(size=(5, 2))]
    ys = [np.array([0, 1, 2, 3, 0]), rng.normal(size=(5, 1))]
    model.fit(xs, ys, verbose=0)                # optimizer state exists
    return model, xs, ys


BAD_MULTI = [
    ("one array for two inputs", lambda xs, ys: (xs[0], ys),
     ["2 inputs", "['a', 'b']", "received one ndarray"]),
    ("too few inputs", lambda xs, ys: (xs[:1], ys), ["2 inputs", "received a list of 1"]),
    ("too many inputs", lambda xs, ys: (xs + xs[:1], ys), ["2 inputs", "received a list of 3"]),
    ("wrong input shape", lambda xs, ys: ([xs[0], np.ones((5, 3))], ys),
     ["input 'b'", "layer 'joined'", "(None, 2)", "(5, 3)"]),
    ("input rows differ", lambda xs, ys: ([xs[0], xs[1][:4]], ys),
     ["same number of samples", "x['a']: 5", "x['b']: 4"]),
    ("unknown input key", lambda xs, ys: ({"a": xs[0], "c": xs[1]}, ys),
     ["['a', 'b']", "missing ['b']", "unexpected ['c']"]),
    ("missing target", lambda xs, ys: (xs, {"cls": ys[0]}),
     ["targets for output 'score'", "mean_squared_error", "received none"]),
    ("unknown target key", lambda xs, ys: (xs, {"cls": ys[0], "scores": ys[1]}),
     ["['scores']", "['cls', 'score']"]),
    ("one target for two outputs", lambda xs, ys: (xs, ys[0]),
     ["2 outputs", "received one ndarray"]),
    ("wrong target shape", lambda xs, ys: (xs, [ys[0], np.ones((5, 2))]),
     ["y['score']", "(None, 1)", "(5, 2)"]),
    ("label out of range", lambda xs, ys: (xs, [ys[0] + 1, ys[1]]),
     ["y['cls']", "[0, 3]", "received label 4"]),
]


@pytest.mark.parametrize("case,make,words", BAD_MULTI, ids=[c[0] for c in BAD_MULTI])
def test_multi_input_output_data_refused_and_model_unchanged(case, make, words):
    model, xs, ys = two_by_two()
    snap = snapshot(model)
    bx, by = make(xs, ys)
    for call in (lambda: model.fit(bx, by, verbose=0), lambda: model.train_on_batch(bx, by),
                 lambda: model.evaluate(bx, by, verbose=0)):
        with pytest.raises(ValueError) as info:
            call()
        for w in words:
            assert w in str(info.value), (case, w, str(info.value))
    assert_unchanged(model, snap)


@pytest.mark.parametrize("kwargs,words", [
    (dict(loss={"cls": "sparse_categorical_crossentropy", "scor": "mse"}),
     ["loss", "['scor']", "['cls', 'score']"]),
    (dict(loss=["mse"]), ["one entry per output", "received a list of 1"]),
    (dict(loss="mse", loss_weights={"sc": 1.0}), ["loss_weights", "['sc']"]),
    (dict(loss="mse", metrics={"clss": ["accuracy"]}), ["metrics", "['clss']"]),
])
def test_multi_output_compile_refuses_bad_keys_and_keeps_configuration(kwargs, words):
    model, xs, ys = two_by_two()
    opt, loss = model.optimizer, model.loss
    snap = snapshot(model)
    with pytest.raises(ValueError) as info:
        model.compile(optimizer="sgd", **kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert model.optimizer is opt and model.loss == loss
    model.fit(xs, ys, verbose=0)                # still trains with what it had
    assert model.optimizer.iterations == snap[1] + 1


def test_predict_refuses_missing_inputs():
    model, xs, _ = two_by_two()
    with pytest.raises(ValueError, match=r"2 inputs.*received a list of 1"):
        model.predict(xs[:1], verbose=0)
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        model.predict({"a": xs[0]}, verbose=0)


def test_image_input_ranks():
    """An image input takes (n, 6, 6, 1) or, as Keras adjusts the rank of a channel axis of
    1, (n, 6, 6); a flat (n, 36) is refused naming both shapes."""
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([layers.Input((6, 6, 1)), layers.Conv2D(2, 3, name="conv"),
                             layers.Flatten(), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    snap = snapshot(model)
    with pytest.raises(ValueError, match=r"'conv'.*\(None, 6, 6, 1\).*\(4, 36\)"):
        model.fit(np.zeros((4, 36), np.float32), np.zeros((4, 2), np.float32), verbose=0)
    assert_unchanged(model, snap)
    x = np.random.default_rng(0).random((4, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  model.predict(x[..., None], verbose=0))


@pytest.mark.parametrize("problem", ["nan_x", "inf_x", "label_high", "label_negative",
                                     "nan_target"])
def test_clean_batch_with_bad_values_is_refused_by_the_c_step(problem):
    """A float32 C-contiguous batch skips the Python value checks (train_on_batch's lean
    path); the C step checks the values before it changes anything, and the refusal carries
    the general message."""
    sparse = problem != "nan_target"
    model = compiled_model("sparse_categorical_crossentropy" if sparse else
                           "categorical_crossentropy")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    y = y if sparse else np.eye(3, dtype=np.float32)[y]
    model.train_on_batch(x, y)
    snap = snapshot(model)
    x, y = x.copy(), y.copy()
    if problem == "nan_x":
        x[3, 2] = np.nan
    elif problem == "inf_x":
        x[15, 0] = -np.inf
    elif problem == "label_high":
        y[7] = 3
    elif problem == "label_negative":
        y[0] = -1
    else:
        y[2, 1] = np.nan
    words = {"nan_x": "NaN", "inf_x": "infinite", "label_high": "received label 3",
             "label_negative": "received label -1", "nan_target": "NaN"}[problem]
    with pytest.raises(ValueError, match=words):
        model.train_on_batch(x, y)
    assert_unchanged(model, snap)


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
