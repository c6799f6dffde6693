"""Training steps through the public API against independent float64 implementations.

  Dense networks   tests/independent.py: finite-difference gradients of a float64 forward
                   pass and Keras 3's update rules.  The activation x loss x optimizer cross
                   product (7 x 19 x 6 = 798 combinations) is covered pairwise (PAIRWISE below:
                   every pair of values of any two factors appears in at least one case),
                   each case two steps on every backend.
  CNNs             tests/independent_cnn.py: convolution, pooling, global pooling, batch
                   normalization and flattening written with explicit windows; one SGD step
                   of each network on every backend.
  whole fits       two epochs of fit (shuffling, dropout and batch normalization included),
                   then predict and evaluate, where a finite-difference reference would be
                   too slow: cpu and cuda agree with the numpy backend to float32
                   rounding.

Tolerances are conftest's policy: a training step is a long sum (RTOL_SUMS), compared on
the weight changes (`assert_step_close`).
"""
import functools
import itertools
import zlib

import numpy as np
import pytest

import pynn
import independent as ind
import independent_cnn as icnn
from pynn import layers as L

from conftest import RTOL_ELEMENTWISE, RTOL_SUMS, assert_close, assert_step_close

# ---- the factors ----------------------------------------------------------------------------

HIDDEN = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"]

# (id, loss object factory, output activation, output width, reference kind, from_logits)
LOSSES = [
    ("mse", lambda: pynn.losses.MeanSquaredError(), "linear", 3, "mse", False),
    ("mse_tanh", lambda: "mse", "tanh", 2, "mse", False),
    ("bce_sigmoid", lambda: "binary_crossentropy", "sigmoid", 1, "bce", False),
    ("bce_multilabel", lambda: pynn.losses.BinaryCrossentropy(), "sigmoid", 3, "bce", False),
    ("bce_logits", lambda: pynn.losses.BinaryCrossentropy(from_logits=True), "linear", 2, "bce",
     True),
    ("cce_softmax", lambda: "categorical_crossentropy", "softmax", 4, "cce", False),
    ("cce_logits", lambda: pynn.losses.CategoricalCrossentropy(from_logits=True), "linear", 4,
     "cce", True),
    ("scce_softmax", lambda: "sparse_categorical_crossentropy", "softmax", 4, "scce", False),
    ("scce_logits", lambda: pynn.losses.SparseCategoricalCrossentropy(from_logits=True),
     "linear", 3, "scce", True),
    # Keras 3's other losses (issue 11), by name and by object
    ("mae", lambda: "mae", "linear", 3, "mae", False),
    ("mape", lambda: pynn.losses.MeanAbsolutePercentageError(), "linear", 2, "mape", False),
    ("huber", lambda: pynn.losses.Huber(delta=0.5), "linear", 3, "huber/0.5", False),
    ("log_cosh", lambda: "logcosh", "tanh", 2, "log_cosh", False),
    ("kld", lambda: "kl_divergence", "softmax", 3, "kld", False),
    ("hinge", lambda: "hinge", "linear", 2, "hinge", False),
    ("squared_hinge", lambda: pynn.losses.SquaredHinge(), "tanh", 3, "squared_hinge", False),
    ("categorical_hinge", lambda: "categorical_hinge", "linear", 3, "categorical_hinge", False),
    ("poisson", lambda: pynn.losses.Poisson(), "sigmoid", 2, "poisson", False),
    ("cosine_similarity", lambda: pynn.losses.CosineSimilarity(axis=-1), "linear", 3,
     "cosine_similarity", False),
]

# (id, optimizer factory, the reference's settings)
OPTIMIZERS = [
    ("sgd", lambda: pynn.optimizers.SGD(learning_rate=0.1), dict(kind="sgd", lr=0.1)),
    ("sgd_momentum", lambda: pynn.optimizers.SGD(0.1, momentum=0.9),
     dict(kind="sgd", lr=0.1, momentum=0.9)),
    ("sgd_nesterov", lambda: pynn.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
     dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True)),
    ("adam", lambda: pynn.optimizers.Adam(learning_rate=0.01), dict(kind="adam", lr=0.01)),
    ("rmsprop", lambda: pynn.optimizers.RMSprop(learning_rate=0.01),
     dict(kind="rmsprop", lr=0.01)),
    ("rmsprop_momentum", lambda: pynn.optimizers.RMSprop(0.01, momentum=0.5),
     dict(kind="rmsprop", lr=0.01, momentum=0.5)),
]
LOSS = {entry[0]: entry[1:] for entry in LOSSES}
OPTIMIZER = {entry[0]: entry[1:] for entry in OPTIMIZERS}


def pairwise_table():
    """(hidden, loss, optimizer) cases covering every pair of values of any two factors.
    Every (hidden, loss) pair appears once, with optimizer number (i + j) mod 6: for a
    fixed activation i the 19 losses j run through all 6 residues, and for a fixed loss the
    7 activations do too.  133 cases, the fewest possible (the 7 x 19 pairs of the two largest
    factors must each appear)."""
    return [(hidden, loss[0], OPTIMIZERS[(i + j) % len(OPTIMIZERS)][0])
            for i, hidden in enumerate(HIDDEN) for j, loss in enumerate(LOSSES)]


PAIRWISE = pairwise_table()
PAIRWISE_IDS = ["/".join(case) for case in PAIRWISE]


def test_the_table_covers_every_pair_of_factor_values():
    factors = [HIDDEN, list(LOSS), list(OPTIMIZER)]
    for a, b in itertools.combinations(range(3), 2):
        seen = {(case[a], case[b]) for case in PAIRWISE}
        assert seen == set(itertools.product(factors[a], factors[b])), (a, b)
    assert len(PAIRWISE) == len(HIDDEN) * len(LOSSES) < \
        len(HIDDEN) * len(LOSSES) * len(OPTIMIZERS)


# ---- Dense networks --------------------------------------------------------------------------

def targets(rng, kind, n, out_dim):
    if kind in ("mse", "mae", "mape", "log_cosh", "cosine_similarity") or kind.startswith("huber"):
        return rng.normal(size=(n, out_dim))
    if kind == "kld":
        return rng.dirichlet(np.ones(out_dim), size=n)
    if kind in ("hinge", "squared_hinge"):
        return (rng.random(size=(n, out_dim)) > 0.5).astype(np.float64)
    if kind == "categorical_hinge":
        return np.eye(out_dim)[rng.integers(0, out_dim, size=n)]
    if kind == "poisson":
        return rng.poisson(0.7, size=(n, out_dim)).astype(np.float64)
    if kind == "bce":
        return (rng.random(size=(n, out_dim)) > 0.5).astype(np.float64)
    if kind == "cce":
        return np.eye(out_dim)[rng.integers(0, out_dim, size=n)]
    return rng.integers(0, out_dim, size=n)


def make_problem(seed, out_dim, kind):
    """x, y and the initial weights of a 4-5-out MLP (x and the weights float32 values held
    in float64, so both sides start from the same numbers)."""
    rng = np.random.default_rng(seed)
    n, d, h = 6, 4, 5
    x = rng.normal(size=(n, d)).astype(np.float32).astype(np.float64)
    weights = [rng.normal(0, 0.7, size=(d, h)), rng.normal(0, 0.3, size=(h,)),
               rng.normal(0, 0.7, size=(h, out_dim)), rng.normal(0, 0.3, size=(out_dim,))]
    return x, targets(rng, kind, n, out_dim), [w.astype(np.float32).astype(np.float64)
                                                for w in weights]


def reference_steps(hidden, out_act, kind, from_logits, opt_kwargs, x, y, weights, steps):
    """(weights after the steps, loss before each step, gradients of each step), by finite
    differences in float64 and Keras 3's update rules (tests/independent.py)."""
    weights = [w.copy() for w in weights]
    opt = ind.Optimizer(**opt_kwargs)
    acts = [hidden, out_act]
    losses, all_grads = [], []
    for _ in range(steps):
        losses.append(ind.loss_of(weights, acts, x, y, kind, from_logits))
        grads = ind.gradients(weights, acts, x, y, kind, from_logits)
        all_grads.append(grads)
        opt.step(weights, grads)
    return weights, losses, all_grads


def pynn_steps(backend, hidden, out_act, out_dim, loss, optimizer, x, y, weights, steps):
    """pynn's weights after `steps` train_on_batch calls, and the losses they returned."""
    model = pynn.Sequential([L.Input((x.shape[1],)), L.Dense(5, activation=hidden),
                             L.Dense(out_dim, activation=out_act)])
    model.compile(optimizer=optimizer, loss=loss, backend=backend)
    model.set_weights([w.astype(np.float32) for w in weights])
    losses = [model.train_on_batch(x.astype(np.float32), y) for _ in range(steps)]
    return model.get_weights(), losses


def dense_problem(case):
    _, _, out_dim, kind, _ = LOSS[case[1]]
    return make_problem(zlib.crc32("/".join(case).encode()), out_dim, kind)


@functools.lru_cache(maxsize=None)
def dense_reference(case, steps):
    hidden, loss_id, opt_id = case
    _, out_act, _, kind, from_logits = LOSS[loss_id]
    x, y, w0 = dense_problem(case)
    return reference_steps(hidden, out_act, kind, from_logits, OPTIMIZER[opt_id][1], x, y, w0,
                           steps)[:2]


@pytest.mark.parametrize("case", PAIRWISE, ids=PAIRWISE_IDS)
def test_two_steps_match_independent_backprop(case, backend_name):
    hidden, loss_id, opt_id = case
    loss_factory, out_act, out_dim, _, _ = LOSS[loss_id]
    steps = 2
    w_ref, loss_ref = dense_reference(case, steps)
    x, y, w0 = dense_problem(case)
    w_pynn, loss_pynn = pynn_steps(backend_name, hidden, out_act, out_dim, loss_factory(),
                                   OPTIMIZER[opt_id][0](), x, y, w0, steps)
    label = f"{backend_name} {'/'.join(case)}"
    # the loss of 6 samples is a short sum; the step, through two layers, a long one
    assert_close(loss_pynn, loss_ref, rtol=RTOL_ELEMENTWISE, err_msg=f"{label}: loss")
    assert_step_close(w0, w_pynn, w_ref, RTOL_SUMS, label)


# ---- CNNs ------------------------------------------------------------------------------------

LR = 0.1
LOSS_NAMES = {"mse": "mse", "bce": "binary_crossentropy", "cce": "categorical_crossentropy",
              "scce": "sparse_categorical_crossentropy"}

# id -> (input shape, spec (tests/independent_cnn.py's notation), loss kind, output width)
NETWORKS = {
    "conv_same_stride2_maxpool": (
        (7, 6, 2), [("conv", 3, (3, 3), (2, 2), "same", "relu"),
                    ("maxpool", (2, 2), (2, 2), "same"), ("flatten",), ("dense", 3, "softmax")],
        "scce", 3),
    "conv_valid_strides12_avgpool_same": (
        (6, 7, 1), [("conv", 2, (2, 3), (1, 2), "valid", "tanh"),
                    ("avgpool", (2, 2), (1, 1), "same"), ("flatten",), ("dense", 1, "sigmoid")],
        "bce", 1),
    "two_convs_stride3_maxpool_overlap": (
        (8, 8, 3), [("conv", 4, (3, 3), (3, 3), "same", "linear"),
                    ("conv", 3, (2, 2), (1, 1), "valid", "relu"),
                    ("maxpool", (2, 2), (1, 1), "valid"), ("flatten",), ("dense", 2, "linear")],
        "mse", 2),
    "conv_avgpool_valid_stride3_dense_relu": (
        (9, 7, 2), [("conv", 3, (3, 2), (1, 1), "same", "relu"),
                    ("avgpool", (3, 3), (3, 2), "valid"), ("flatten",), ("dense", 4, "relu"),
                    ("dense", 3, "softmax")],
        "cce", 3),
    "conv_gap": (
        (5, 5, 2), [("conv", 4, (3, 3), (2, 1), "same", "tanh"), ("gap",),
                    ("dense", 2, "softmax")],
        "scce", 2),
    "conv_batchnorm": (
        (5, 4, 2), [("conv", 3, (2, 2), (1, 1), "valid", "linear"), ("batchnorm", 1e-3),
                    ("flatten",), ("dense", 2, "softmax")],
        "scce", 2),
    # an image output with a per-position loss (Keras: the mean over every position)
    "conv_image_output_mse": (
        (5, 6, 2), [("conv", 3, (3, 3), (1, 2), "same", "sigmoid"),
                    ("conv", 2, (2, 2), (1, 1), "valid", "linear")],
        "mse", None),
}


def cnn_layers(spec):
    out = []
    for layer in spec:
        kind = layer[0]
        if kind == "conv":
            out.append(L.Conv2D(layer[1], layer[2], strides=layer[3], padding=layer[4],
                                activation=layer[5]))
        elif kind == "maxpool":
            out.append(L.MaxPooling2D(layer[1], strides=layer[2], padding=layer[3]))
        elif kind == "avgpool":
            out.append(L.AveragePooling2D(layer[1], strides=layer[2], padding=layer[3]))
        elif kind == "gap":
            out.append(L.GlobalAveragePooling2D())
        elif kind == "batchnorm":
            out.append(L.BatchNormalization(epsilon=layer[1]))
        elif kind == "flatten":
            out.append(L.Flatten())
        else:
            out.append(L.Dense(layer[1], activation=layer[2]))
    return out


def cnn_model(name):
    input_shape, spec, _, _ = NETWORKS[name]
    return pynn.Sequential([L.Input(input_shape)] + cnn_layers(spec))


def cnn_problem(name, n=4):
    """x, y, the trained weights (float32 values in float64, in the reference's order) and
    the full list for set_weights (BatchNormalization's moving statistics included)."""
    input_shape, spec, kind, out_dim = NETWORKS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.normal(size=(n,) + input_shape).astype(np.float32).astype(np.float64)
    model = cnn_model(name)
    trained, full = [], []
    for layer in model.layers:
        for v in layer.weights:
            if v.name in ("moving_mean", "moving_variance"):
                full.append(v.numpy())
                continue
            mean, std = (1.0, 0.3) if v.name == "gamma" else (0.0, 0.6 if v.ndim > 1 else 0.3)
            w = rng.normal(mean, std, size=v.shape).astype(np.float32)
            trained.append(w.astype(np.float64))
            full.append(w)
    out_shape = model.output_shape[1:] if out_dim is None else (out_dim,)
    if kind == "mse":
        y = rng.normal(size=(n,) + tuple(out_shape))
    else:
        y = targets(rng, kind, n, out_dim)
    return x, y, trained, full


@functools.lru_cache(maxsize=None)
def cnn_reference(name):
    _, spec, kind, _ = NETWORKS[name]
    x, y, w0, _ = cnn_problem(name)
    loss = icnn.loss_of(spec, w0, x, y, kind)
    grads = icnn.gradients(spec, [w.copy() for w in w0], x, y, kind)
    return [w - LR * g for w, g in zip(w0, grads)], loss


def cnn_step(backend, name):
    _, _, kind, _ = NETWORKS[name]
    x, y, _, full = cnn_problem(name)
    model = cnn_model(name)
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss=LOSS_NAMES[kind], backend=backend)
    model.set_weights(full)
    loss = model.train_on_batch(x.astype(np.float32), y)
    trained = [v.numpy() for v in model.weights if v.trainable]
    return trained, loss


@pytest.mark.parametrize("name", list(NETWORKS))
def test_cnn_step_matches_independent_backprop(name, backend_name):
    w_ref, loss_ref = cnn_reference(name)
    w_pynn, loss = cnn_step(backend_name, name)
    label = f"{backend_name} {name}"
    assert_close(loss, loss_ref, rtol=RTOL_SUMS, err_msg=f"{label}: loss")
    assert_step_close(cnn_problem(name)[2], w_pynn, w_ref, RTOL_SUMS, label)


def test_cnn_image_output_takes_image_targets():
    """A model ending in images trains against targets of the output's shape; any other
    shape is refused naming both."""
    model = cnn_model("conv_image_output_mse")
    assert model.output_shape == (None, 4, 2, 2)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"\(None, 4, 2, 2\).*\(4, 16\)"):
        model.fit(np.zeros((4, 5, 6, 2)), np.zeros((4, 16)), verbose=0)


# ---- whole fits against the reference ----------------------------------------------------

def digits_images(n):
    (x, y), _ = pynn.datasets.digits.load_data()
    return x[:n].reshape(-1, 8, 8, 1).astype(np.float32) / 16, y[:n].astype(np.int64)


def small_cnn():
    """Convolutions, both poolings, batch normalization and dropout: every CNN op kind."""
    return pynn.Sequential([
        L.Input((8, 8, 1)), L.Conv2D(6, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(8, 3, strides=2, padding="same", activation="relu"), L.BatchNormalization(),
        L.AveragePooling2D(2, padding="same"), L.Flatten(), L.Dropout(0.3),
        L.Dense(10, activation="softmax")])


def small_mlp():
    return pynn.Sequential([L.Input((8, 8, 1)), L.Flatten(), L.Dense(32, activation="gelu"),
                            L.Dropout(0.2), L.Dense(16, activation="tanh"),
                            L.Dense(10, activation="softmax")])


def fit_results(make, optimizer, backend, rows, batch):
    x, y = digits_images(rows)
    pynn.utils.set_random_seed(3)
    model = make()
    w0 = model.get_weights()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    history = model.fit(x, y, batch_size=batch, epochs=2, verbose=0).history
    return (w0, model.get_weights(), history, model.predict(x, batch_size=batch - 1, verbose=0),
            model.evaluate(x, y, batch_size=batch + 1, verbose=0))


# (network, optimizer, backend, rows, batch size): the CNN's fit costs a minute in the CUDA
# simulator, so cuda fits the MLP only (its CNN steps are checked network by network above
# and layer by layer in tests/test_layers.py)
FITS = [(small_cnn, "adam", "cpu", 160, 28), (small_mlp, "rmsprop", "cpu", 160, 28),
        (small_mlp, "rmsprop", "cuda", 9, 4)]


@pytest.mark.parametrize("make,optimizer,backend,rows,batch", FITS,
                         ids=[f"{f[0].__name__}-{f[2]}" for f in FITS])
def test_fit_predict_evaluate_agree_with_numpy(make, optimizer, backend, rows, batch):
    """Two shuffled epochs (the last batch short): the same shuffles and dropout masks on
    every backend, so the weights, the History, predict and evaluate differ from the numpy
    backend's by float32 rounding only."""
    w0, weights, history, predicted, evaluated = fit_results(make, optimizer, backend, rows,
                                                             batch)
    _, ref_weights, ref_history, ref_predicted, ref_evaluated = fit_results(
        make, optimizer, "numpy", rows, batch)
    label = f"{make.__name__} {backend} vs numpy"
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float32 for w in weights)
    assert_step_close(w0, weights, ref_weights, RTOL_SUMS, label)
    assert history.keys() == ref_history.keys()
    assert_close(history["loss"], ref_history["loss"], rtol=RTOL_SUMS, err_msg=label)
    assert history["accuracy"] == ref_history["accuracy"]
    assert predicted.shape == (rows, 10) and predicted.dtype == np.float32
    assert_close(predicted, ref_predicted, rtol=RTOL_SUMS, err_msg=label)
    assert_close(evaluated, ref_evaluated, rtol=RTOL_SUMS, err_msg=label)


# ---- the other optimizers: three steps (their state exercised) against tests/independent.py ----

O = pynn.optimizers
# id -> (pynn optimizer, independent.Optimizer arguments)
MORE_OPTIMIZERS = {
    "adamw": (lambda: O.AdamW(0.01, weight_decay=0.1),
              dict(kind="adam", lr=0.01, weight_decay=0.1)),
    "adam_amsgrad": (lambda: O.Adam(0.01, amsgrad=True), dict(kind="adam", lr=0.01, amsgrad=True)),
    "sgd_weight_decay": (lambda: O.SGD(0.1, momentum=0.5, weight_decay=0.2),
                         dict(kind="sgd", lr=0.1, momentum=0.5, weight_decay=0.2)),
    "adagrad": (lambda: O.Adagrad(0.05), dict(kind="adagrad", lr=0.05)),
    "adadelta": (lambda: O.Adadelta(1.0, rho=0.9), dict(kind="adadelta", lr=1.0, rho=0.9)),
    "adamax": (lambda: O.Adamax(0.01), dict(kind="adamax", lr=0.01)),
    "nadam": (lambda: O.Nadam(0.01), dict(kind="nadam", lr=0.01)),
    "lion": (lambda: O.Lion(0.01, weight_decay=0.05),
             dict(kind="lion", lr=0.01, beta_2=0.99, weight_decay=0.05)),
}


@functools.lru_cache(maxsize=None)
def more_optimizer_reference(opt_id):
    x, y, w0 = make_problem(zlib.crc32(opt_id.encode()), 3, "mse")
    return reference_steps("tanh", "linear", "mse", False, MORE_OPTIMIZERS[opt_id][1], x, y, w0,
                           3)[:2]


@pytest.mark.parametrize("opt_id", list(MORE_OPTIMIZERS))
def test_three_steps_of_each_optimizer_match_keras_rules(opt_id, backend_name):
    x, y, w0 = make_problem(zlib.crc32(opt_id.encode()), 3, "mse")
    w_ref, loss_ref = more_optimizer_reference(opt_id)
    w_pynn, loss_pynn = pynn_steps(backend_name, "tanh", "linear", 3, "mse",
                                   MORE_OPTIMIZERS[opt_id][0](), x, y, w0, 3)
    label = f"{backend_name} {opt_id}"
    assert_close(loss_pynn, loss_ref, rtol=RTOL_ELEMENTWISE, err_msg=f"{label}: loss")
    assert_step_close(w0, w_pynn, w_ref, RTOL_SUMS, label)


def test_small_predictions_take_the_lean_path_and_agree_with_the_general_one():
    """predict_on_batch and model(x) on a float32 C-contiguous batch of the input's shape
    run the C step with nothing around it (issue 13's small batches); they give bitwise
    what the general path gives, and what they cannot take (NaN, float64, a wrong shape)
    goes the general way with its messages."""
    from pynn.models import validation
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([L.Input((12,)), L.Dense(16, activation="relu"),
                         L.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(4, 12)).astype(np.float32)
    general = m._trainer._predict_arrays(validation.model_inputs(m, x, "t"), 4, 0, "predict")
    lean = m._trainer._lean_predict(x)
    assert lean is not None
    np.testing.assert_array_equal(lean, general)
    np.testing.assert_array_equal(m.predict_on_batch(x), general)
    np.testing.assert_array_equal(m(x), general)
    np.testing.assert_array_equal(m.predict_on_batch(x.astype(np.float64)), general)
    bad = x.copy()
    bad[1, 2] = np.nan
    assert m._trainer._lean_predict(bad) is None
    with pytest.raises(ValueError, match="NaN"):
        m.predict_on_batch(bad)
    with pytest.raises(ValueError, match="shape|expected"):
        m.predict_on_batch(x[:, :5].copy())


def test_a_quiet_predict_of_one_batch_takes_the_lean_path(monkeypatch, capsys):
    """predict(x, verbose=0) on at most one batch of a float32 array, without callbacks or
    steps, is predict_on_batch's call: the same bits, no progress bar; anything else (a
    NaN, more rows than a batch, verbose, a list) takes the general path with its output
    and messages."""
    pynn.utils.set_random_seed(1)
    m = pynn.Sequential([L.Input((12,)), L.Dense(16, activation="relu"),
                         L.Dense(3, activation="softmax")])
    x = np.random.default_rng(2).normal(size=(40, 12)).astype(np.float32)
    calls = []
    lean = m._trainer._lean_predict
    monkeypatch.setattr(m._trainer, "_lean_predict", lambda *a: calls.append(1) or lean(*a))
    np.testing.assert_array_equal(m.predict(x[:5], verbose=0), m.predict_on_batch(x[:5]))
    assert len(calls) == 2                       # predict's and predict_on_batch's
    np.testing.assert_array_equal(m.predict(x, batch_size=40, verbose=0),
                                  m.predict_on_batch(x))
    calls.clear()
    full = m.predict(x, verbose=0)               # 40 rows: two batches of 32, general
    np.testing.assert_array_equal(full[:5], m.predict(x[:5], verbose=0))
    m.predict(x[:5], verbose=1)                  # the progress bar: general
    m.predict(x[:5].tolist(), verbose=0)         # a list: converted by the general path
    assert len(calls) == 1
    assert "1/1" in capsys.readouterr().out
    bad = x[:5].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.predict(bad, verbose=0)
