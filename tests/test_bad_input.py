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
    ("float64 overflow in y", lambda x, y: (x, np.where(y == 0, -1e300, y.astype(np.float64))),
     ValueError, ["y holds values beyond the float32 range", "-1e+300"]),
    ("masked x hiding NaN", lambda x, y: (np.ma.masked_array(np.where(x > 1, np.nan, x), x > 1), y),
     TypeError, ["x", "masked array", ".filled("]),
    ("masked y", lambda x, y: (x, np.ma.masked_array(y, y == 0)), TypeError, ["y", ".filled("]),
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


def test_values_beyond_float32_are_refused_naming_where():
    """float64 values that are finite but become inf in float32 are refused like NaN, with
    the argument and the index of the first one; the largest float32 itself is accepted."""
    model = compiled_model("mean_squared_error")
    x, labels = good_data()
    y = np.eye(3)[labels]
    model.fit(x, y, verbose=0)
    snap = snapshot(model)
    big = np.finfo(np.float32).max
    fine = x.astype(np.float64)
    fine[0, 0] = float(big)                  # exactly representable: accepted
    model.predict(fine, verbose=0)
    bad_x = x.astype(np.float64)
    bad_x[3, 2] = 1e39
    bad_y = y.copy()
    bad_y[5, 1] = -4e38
    for call, words in [
            (lambda: model.fit(bad_x, y, verbose=0), ["fit", "x holds values beyond the float32",
                                                      "(3, 2)", "1e+39"]),
            (lambda: model.evaluate(x, bad_y, verbose=0), ["evaluate", "y holds", "(5, 1)"]),
            (lambda: model.train_on_batch(x, bad_y), ["train_on_batch", "(5, 1)", "-4e+38"]),
            (lambda: model.predict(bad_x, verbose=0), ["predict", "(3, 2)"]),
            (lambda: model.predict_on_batch(bad_x[3]), ["predict_on_batch", "2"])]:
        with pytest.raises(ValueError) as info:
            call()
        for w in words:
            assert w in str(info.value), (w, str(info.value))
    assert_unchanged(model, snap)


def test_set_weights_and_assign_refuse_float32_overflow_and_masked_arrays():
    model = compiled_model()
    model.fit(*good_data(), verbose=0)
    snap = snapshot(model)
    w = [a.astype(np.float64) for a in model.get_weights()]
    w[2][4, 1] = 1e300
    with pytest.raises(ValueError, match=r"out/kernel holds values beyond the float32 range.*"
                                         r"\(4, 1\): 1e\+300"):
        model.set_weights(w)
    w = model.get_weights()
    w[1] = np.ma.masked_array(np.full(5, np.nan), mask=np.ones(5, bool))
    with pytest.raises(TypeError, match=r"hidden/bias.*masked array.*\.filled\("):
        model.set_weights(w)
    kernel = model.layers[0].kernel
    with pytest.raises(ValueError, match="float32"):
        kernel.assign(np.full((4, 5), -1e40))
    with pytest.raises(TypeError, match="filled"):
        kernel.assign(np.ma.masked_array(np.zeros((4, 5)), mask=np.zeros((4, 5), bool)))
    assert_unchanged(model, snap)
    model.set_weights([np.ma.masked_array(a).filled() for a in model.get_weights()])
    assert_unchanged(model, snap)             # .filled() arrays are accepted


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


@pytest.mark.parametrize("huge", [13, 10 ** 12, 2 ** 63 - 1, np.int64(2 ** 62)])
def test_batch_size_beyond_the_data_is_one_batch(huge):
    """As in Keras, a batch_size larger than the data set is legal and gives one batch of
    every sample; buffers are sized for the samples, so even 2**63 - 1 allocates nothing
    more (it used to raise MemoryError)."""
    x, y = good_data()
    one = compiled_model()
    h1 = one.fit(x, y, batch_size=12, epochs=2, validation_data=(x, y), verbose=0)
    big = compiled_model()                  # the same seed: the same weights and shuffles
    h2 = big.fit(x, y, batch_size=huge, epochs=2, validation_data=(x, y),
                 validation_batch_size=huge, verbose=0)
    for a, b in zip(one.get_weights(), big.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert big.optimizer.iterations == 2                    # one step per epoch
    assert h1.history == h2.history
    assert big.evaluate(x, y, batch_size=huge, verbose=0) == one.evaluate(x, y, batch_size=12,
                                                                          verbose=0)
    np.testing.assert_array_equal(big.predict(x, batch_size=huge, verbose=0),
                                  one.predict(x, batch_size=12, verbose=0))


@pytest.mark.parametrize("value", [2 ** 63, 2 ** 64 + 5, 10 ** 30])
def test_batch_size_beyond_int64_is_refused_naming_it(value):
    model = compiled_model()
    x, y = good_data()
    model.fit(x, y, verbose=0)
    snap = snapshot(model)
    for call, name in [(lambda: model.fit(x, y, batch_size=value, verbose=0), "batch_size"),
                       (lambda: model.fit(x, y, validation_split=0.25, verbose=0,
                                          validation_batch_size=value), "validation_batch_size"),
                       (lambda: model.evaluate(x, y, batch_size=value, verbose=0), "batch_size"),
                       (lambda: model.predict(x, batch_size=value, verbose=0), "batch_size")]:
        with pytest.raises(ValueError) as info:
            call()
        text = str(info.value)
        assert f"expected {name} to be an integer between 1 and {2 ** 63 - 1}" in text, text
        assert f"received {name}={value}" in text, text
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
    (lambda: pynn.optimizers.AdamW(weight_decay=-0.1), ValueError, ["weight_decay", "-0.1"]),
    (lambda: pynn.optimizers.AdamW(weight_decay=None), ValueError, ["weight_decay=None"]),
    (lambda: pynn.optimizers.SGD(weight_decay="0.1"), ValueError, ["weight_decay='0.1'"]),
    (lambda: pynn.optimizers.Adagrad(initial_accumulator_value=-1.0), ValueError,
     ["initial_accumulator_value", "-1.0"]),
    (lambda: pynn.optimizers.Adagrad(learning_rate=-0.5), ValueError, ["learning_rate", "-0.5"]),
    (lambda: pynn.optimizers.Adadelta(rho=1.5), ValueError, ["rho", "1.5"]),
    (lambda: pynn.optimizers.Adamax(beta_2=-0.2), ValueError, ["beta_2", "-0.2"]),
    (lambda: pynn.optimizers.Nadam(beta_1=1.0), ValueError, ["beta_1", "1.0"]),
    (lambda: pynn.optimizers.Nadam(epsilon=-1e-7), ValueError, ["epsilon", "-1e-07"]),
    (lambda: pynn.optimizers.Lion(beta_1=0.0), ValueError, ["beta_1", "0.0"]),
    (lambda: pynn.optimizers.Lion(beta_2=2.0), ValueError, ["beta_2", "2.0"]),
    (lambda: pynn.losses.BinaryCrossentropy(from_logits="no"), ValueError,
     ["from_logits", "from_logits='no'"]),
    (lambda: pynn.losses.MeanSquaredError(name=["mse"]), ValueError, ["name=['mse']"]),
    (lambda: pynn.losses.Huber(delta=0), ValueError, ["delta", "delta=0"]),
    (lambda: pynn.losses.Huber(delta=-1.5), ValueError, ["delta", "delta=-1.5"]),
    (lambda: pynn.losses.Huber(delta=float("nan")), ValueError, ["delta", "delta=nan"]),
    (lambda: pynn.losses.Huber(delta=1e-50), ValueError, ["delta", "delta=1e-50"]),
    (lambda: pynn.losses.Huber(delta="1"), ValueError, ["delta", "delta='1'"]),
    (lambda: pynn.losses.CosineSimilarity(axis="1"), TypeError, ["axis", "axis='1'"]),
    (lambda: pynn.losses.MeanAbsoluteError(reduction="avg"), ValueError, ["reduction='avg'"]),
    (lambda: pynn.losses.BinaryCrossentropy(label_smoothing=1.5), ValueError,
     ["label_smoothing=1.5"]),
    (lambda: pynn.losses.SparseCategoricalCrossentropy(ignore_class="x"), TypeError,
     ["ignore_class='x'"]),
    (lambda: pynn.losses.Poisson(dtype="float16"), ValueError, ["dtype", "dtype='float16'"]),
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
    (dict(optimizer="adafactor", loss="mse"), ValueError, ["adafactor", "adamw"]),
    (dict(optimizer="sgd", loss="dice"), ValueError, ["dice", "mse"]),
    (dict(optimizer="sgd", loss="mse", metrics=["f1_score"]), ValueError, ["f1_score"]),
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


@pytest.mark.parametrize("make,words", [
    # sizes each argument's own bound allows (pynn/checks.py), products that cannot fit
    (lambda: pynn.Sequential([layers.Input((2 ** 31 - 1,)), layers.Dense(2 ** 20, name="wide")]),
     ["wide", "kernel", "(2147483647, 1048576)", "more than this machine's memory"]),
    (lambda: pynn.Sequential([layers.Input((2 ** 20,)), layers.Dense(2 ** 31 - 1, name="tall")]),
     ["tall", "kernel", "(1048576, 2147483647)"]),
    (lambda: pynn.Sequential([layers.Input((3, 3, 2 ** 20)), layers.Conv2D(2 ** 20, 3, name="c")]),
     ["'c'", "kernel"]),
])
def test_weights_that_cannot_fit_are_refused_before_allocating(make, words):
    """A layer whose weights cannot fit in memory is refused naming the layer and the
    weight's shape (it used to raise MemoryError, or NumPy's 'array is too big')."""
    with pytest.raises(ValueError) as info:
        make()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_to_categorical_refuses_bad_num_classes_and_sizes_that_cannot_fit():
    np.testing.assert_array_equal(pynn.utils.to_categorical([2, 0], np.int64(3)),
                                  [[0, 0, 1], [1, 0, 0]])
    for bad in ["x", 2.5, -1, True]:
        with pytest.raises(ValueError, match="num_classes"):
            pynn.utils.to_categorical([1, 2], bad)
    with pytest.raises(ValueError, match=r"one-hot array of 2 labels x 1000000000000 classes"):
        pynn.utils.to_categorical([1, 2], 10 ** 12)
    with pytest.raises(ValueError, match=r"one-hot array of 1 labels x 1000000000001 classes"):
        pynn.utils.to_categorical([10 ** 12])
    with pytest.raises(TypeError, match="filled"):
        pynn.utils.to_categorical(np.ma.masked_array([1.0, np.nan], [0, 1]))
    for labels in ([1e300], np.array([2 ** 64 - 1], np.uint64)):     # used to wrap around
        with pytest.raises(ValueError, match=r"labels below 2\*\*63"):
            pynn.utils.to_categorical(labels)
    with pytest.raises(ValueError, match="not whole numbers"):
        pynn.utils.to_categorical([np.inf])


def test_train_on_batch_checks_its_options_before_the_lean_step():
    """A clean float32 batch takes train_on_batch's lean path; its options used to be read
    only after the step (return_dict) or not at all (sample_weight, class_weight ignored
    silently).  Now they are checked first, and a refused one leaves the model unchanged."""
    model = compiled_model()
    x, y = good_data()
    model.train_on_batch(x, y)
    snap = snapshot(model)
    for kwargs, words in [(dict(sample_weight=np.ones(7)), "sample_weight"),
                          (dict(sample_weight=-np.ones(len(x))), "sample_weight"),
                          (dict(class_weight={99: 2.0}), "class_weight"),
                          (dict(class_weight={0: 1.0}, sample_weight=np.ones(len(x))),
                           "class_weight and sample_weight"),
                          (dict(return_dict=np.array([1, 0])), "return_dict")]:
        with pytest.raises(ValueError, match=words):
            model.train_on_batch(x, y, **kwargs)
        assert_unchanged(model, snap)
    for call in (lambda: model.test_on_batch(x, y, return_dict="yes"),
                 lambda: model.evaluate(x, y, return_dict=[], verbose=0)):
        with pytest.raises(ValueError, match="expected return_dict to be True or False"):
            call()
    assert isinstance(model.train_on_batch(x, y, return_dict=np.bool_(True)), dict)
