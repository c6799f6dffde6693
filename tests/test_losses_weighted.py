"""The losses' Keras 3 options end to end: per-sample weights, label smoothing, ignore_class,
axis and reduction (issue 11).

  * the reference (pynn/backend/reference.py) against Keras's formulas written here
    independently in float64 (keras/src/losses/losses.py and loss.py: smoothing of y_true,
    the ignore_class mask of reduce_weighted_values/apply_mask, "sum_over_batch_size"
    dividing by the number of values, not by the weights);
  * a loss object called directly, `loss(y_true, y_pred, sample_weight)`, through the kernels,
    for every reduction, against the same formulas;
  * arguments refused naming them, configs and saved models keeping the options;
  * models compiled with BinaryCrossentropy(label_smoothing=...) and
    SparseCategoricalCrossentropy(ignore_class=...) train in one C call per epoch, bitwise as
    step by step, and agree with the numpy backend.
The kernels' parity with the reference (cpu, cuda), thread-count determinism and refusals are
in tests/test_kernels.py (test_loss_options*), the reference's gradients against finite
differences in tests/test_reference.py.
"""
import math

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn import losses
from pynn.backend import reference as ref

from conftest import RTOL_SUMS, assert_bitwise, assert_close

EPS = 1e-7


# ---- Keras's formulas, float64, per sample --------------------------------------------------

def keras_bce(t, p, from_logits, ls):
    t = t * (1 - ls) + 0.5 * ls
    if from_logits:
        p = 1 / (1 + np.exp(-p))
    p = np.clip(p, EPS, 1 - EPS)
    return (-(t * np.log(p) + (1 - t) * np.log(1 - p))).mean(axis=-1)


def keras_cce(t, p, from_logits, ls):
    t = t * (1 - ls) + ls / t.shape[-1]
    if from_logits:
        p = np.exp(p - p.max(axis=-1, keepdims=True))
    p = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
    return -(t * np.log(p)).sum(axis=-1)


def keras_scce(labels, p, from_logits, ignore_class=None):
    """(per-sample losses, the mask's weights for "sum_over_batch_size": 0 for ignored
    samples, total / valid for the others; None without ignore_class)."""
    labels = np.asarray(labels)
    valid = np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    safe = np.where(valid, labels, 0)
    values = keras_cce(np.eye(p.shape[-1])[safe], p, from_logits, 0.0)
    values = np.where(valid, values, 0.0)
    if ignore_class is None:
        return values, None
    return values, np.where(valid, valid.size / max(valid.sum(), 1), 0.0)


def keras_reduce(values, weights, reduction):
    values = values if weights is None else values * weights
    if reduction in (None, "none"):
        return values
    return values.sum() if reduction == "sum" else values.sum() / values.size


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


# ---- the reference against Keras -------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bce", "cce"])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.1, 1.0])
def test_reference_smoothing_and_weights_follow_keras(kind, from_logits, ls):
    rng = np.random.default_rng(len(kind) + 3 * from_logits + int(ls * 10))
    p = rng.standard_normal((6, 4)) * 2 if from_logits else rng.uniform(0.05, 1.0, (6, 4))
    t = rng.uniform(0, 1, (6, 4)) if kind == "bce" else np.eye(4)[rng.integers(0, 4, 6)]
    w = np.array([0.5, 0.0, 2.0, 1.0, 3.0, 0.25])
    keras = (keras_bce if kind == "bce" else keras_cce)(t, p, from_logits, ls)
    value, _ = ref.loss(p, t, kind, from_logits, weights=w, label_smoothing=ls)
    assert value == pytest.approx(keras_reduce(keras, w, "sum_over_batch_size"), rel=1e-12)
    # per position: 2 weights for 6 rows of 3 positions each
    value, _ = ref.loss(p, t, kind, from_logits, weights=w[:2], label_smoothing=ls)
    assert value == pytest.approx((keras * np.repeat(w[:2], 3)).sum() / 6, rel=1e-12)


@pytest.mark.parametrize("ignore_class,labels", [(None, [0, 2, 1, 1]), (1, [0, 2, 1, 1]),
                                                 (-1, [0, -1, 2, -1]), (255, [255, 0, 255, 2]),
                                                 (-1, [-1, -1, -1, -1])])
@pytest.mark.parametrize("from_logits", [False, True])
def test_reference_ignore_class_follows_keras_mask(ignore_class, labels, from_logits):
    rng = np.random.default_rng(7)
    p = rng.standard_normal((4, 3)) if from_logits else rng.uniform(0.05, 1.0, (4, 3))
    w = np.array([1.5, 0.5, 0.0, 2.0])
    values, mask = keras_scce(labels, p, from_logits, ignore_class)
    weights = w if mask is None else w * mask
    value, grad = ref.sparse_cce(p, np.array(labels), from_logits, weights=w,
                                 ignore_class=ignore_class)
    assert value == pytest.approx(keras_reduce(values, weights, "sum_over_batch_size"),
                                  rel=1e-12, abs=1e-15)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if ignore_class is not None:
        assert not grad[np.array(labels) == ignore_class].any()


# ---- a loss called directly: every reduction, through the kernels -----------------------------

def smoothed_case():
    rng = np.random.default_rng(11)
    p = rng.uniform(0.05, 0.95, (5, 3, 4))       # per-position outputs: 5 samples, 3 positions
    t = (rng.random((5, 3, 4)) > 0.5) * 1.0
    return t, p


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean", "sum", None, "none",
                                       "mean_with_sample_weight"])
@pytest.mark.parametrize("sample_weight", [None, "per sample", "per position", "scalar"])
def test_direct_call_reductions_with_sample_weight(reduction, sample_weight):
    t, p = smoothed_case()
    sw = {None: None, "per sample": np.array([1.0, 0.0, 2.0, 0.5, 3.0]),
          "per position": np.arange(15.0).reshape(5, 3) / 7, "scalar": 2.5}[sample_weight]
    loss = losses.BinaryCrossentropy(label_smoothing=0.2, reduction=reduction)
    got = loss(t, p, sample_weight=sw)
    values = keras_bce(t, p, False, 0.2)                        # (5, 3)
    w = None if sw is None else np.broadcast_to(
        np.reshape(sw, np.shape(sw) + (1,) * (2 - np.ndim(sw))), (5, 3))
    if reduction == "mean_with_sample_weight":
        want = keras_reduce(values, w, "sum") / (15 if w is None else w.sum())
    else:
        want = keras_reduce(values, w, reduction)
    assert isinstance(got, (np.ndarray, np.float32)) and got.dtype == np.float32
    assert got.shape == (() if reduction not in (None, "none") else (5, 3))
    assert_close(got, want, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", None])
def test_direct_call_ignore_class(reduction):
    rng = np.random.default_rng(5)
    p = rng.uniform(0.05, 1.0, (6, 4))
    labels = np.array([3, -1, 0, -1, 2, 2])
    sw = np.array([1.0, 4.0, 0.5, 2.0, 0.0, 1.5])
    loss = losses.SparseCategoricalCrossentropy(ignore_class=-1, reduction=reduction)
    values, mask = keras_scce(labels, p, False, -1)
    if reduction == "sum_over_batch_size":
        want = keras_reduce(values, sw * mask, reduction)
    else:                     # Keras scales the mask by total / valid for the means only
        want = keras_reduce(values, sw * (labels != -1), reduction)
    assert_close(loss(labels, p, sample_weight=sw), want, rtol=1e-6)
    # every sample ignored: 0, not NaN
    assert loss(np.full(6, -1), p) == 0.0 if reduction is not None else \
        not loss(np.full(6, -1), p).any()


def test_direct_call_moves_another_axis_last():
    rng = np.random.default_rng(9)
    p = rng.uniform(0.05, 1.0, (4, 5, 3))
    t = np.eye(5)[rng.integers(0, 5, (4, 3))].transpose(0, 2, 1)      # classes on axis 1
    for axis in (1, -2):
        got = losses.CategoricalCrossentropy(axis=axis, label_smoothing=0.1)(t, p)
        want = keras_cce(np.moveaxis(t, 1, -1), np.moveaxis(p, 1, -1), False, 0.1).mean()
        assert_close(got, want, rtol=1e-6)
    cos = losses.CosineSimilarity(axis=0, reduction=None)
    assert cos(t, p).shape == (5, 3)


def test_hinge_per_sample_values_keep_keras_batch_mapping():
    """Hinge maps {0, 1} targets only when the whole batch is 0 or 1; per-sample values (one
    kernel call per row) keep that."""
    p = np.array([[0.5, -0.2], [-0.5, 0.3]], np.float32)
    t = np.array([[1.0, 0.0], [0.5, 1.0]], np.float32)     # not all 0/1: row 0 stays as it is
    per = losses.Hinge(reduction=None)(t, p)
    want = np.maximum(1 - t * p, 0).mean(axis=-1)
    assert_close(per, want, rtol=1e-6)
    assert_close(losses.Hinge()(t, p), want.mean(), rtol=1e-6)


# ---- arguments, configs, saving ------------------------------------------------------------

@pytest.mark.parametrize("make,arg,value,error", [
    (lambda: losses.BinaryCrossentropy(label_smoothing=1.5), "label_smoothing", "1.5", ValueError),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=-0.1), "label_smoothing", "-0.1",
     ValueError),
    (lambda: losses.BinaryCrossentropy(label_smoothing="x"), "label_smoothing", "x", ValueError),
    (lambda: losses.MeanSquaredError(reduction="avg"), "reduction", "avg", ValueError),
    (lambda: losses.Huber(reduction="avg"), "reduction", "avg", ValueError),
    (lambda: losses.SparseCategoricalCrossentropy(ignore_class="x"), "ignore_class", "x",
     TypeError),
    (lambda: losses.SparseCategoricalCrossentropy(ignore_class=1.5), "ignore_class", "1.5",
     TypeError),
    (lambda: losses.CategoricalCrossentropy(axis="last"), "axis", "last", TypeError),
    (lambda: losses.MeanSquaredError()([[1.0], [2.0]], [[1.0], [1.0]], sample_weight=[1, 2, 3]),
     "sample_weight", "(3,)", ValueError),
    (lambda: losses.MeanSquaredError()([[1.0], [2.0]], [[1.0], [1.0]], sample_weight=[1, -2]),
     "sample_weight", "-2", ValueError),
    (lambda: losses.MeanSquaredError()([[1.0], [2.0]], [[1.0], [1.0]], sample_weight=["a", "b"]),
     "sample_weight", "<U1", TypeError),
    (lambda: losses.SparseCategoricalCrossentropy(ignore_class=-1)([0, 5], [[0.5, 0.5]] * 2),
     "label", "5", ValueError),
])
def test_bad_arguments_are_refused_naming_them(make, arg, value, error):
    with pytest.raises(error) as info:
        make()
    assert arg in str(info.value) and value in str(info.value)


def test_compile_refuses_what_training_cannot_do():
    def model():
        return pynn.Sequential([L.Input((3,)), L.Dense(4, activation="softmax")])
    with pytest.raises(ValueError, match="axis=0"):
        model().compile(loss=losses.CategoricalCrossentropy(axis=0))
    for reduction in (None, "none", "mean_with_sample_weight"):
        with pytest.raises(ValueError, match=f"reduction={reduction!r}.*one number per batch"):
            model().compile(loss=losses.CategoricalCrossentropy(reduction=reduction))
    with pytest.raises(ValueError, match="ignore_class=-1"):
        model().compile(loss=losses.SparseCategoricalCrossentropy(ignore_class=-1),
                        metrics=["accuracy"])
    model().compile(loss=losses.CategoricalCrossentropy(axis=1))          # the last axis
    model().compile(loss=losses.CategoricalCrossentropy(reduction="sum"))   # Keras 3 trains it
    model().compile(loss=losses.SparseCategoricalCrossentropy(ignore_class=2),
                    metrics=["accuracy"])                                  # a class in range


def test_configs_and_saved_models_keep_the_options(tmp_path):
    made = [losses.BinaryCrossentropy(True, 0.25, -1, "sum", "b"),
            losses.CategoricalCrossentropy(label_smoothing=0.5, axis=1),
            losses.SparseCategoricalCrossentropy(ignore_class=-1, reduction=None),
            losses.Huber(0.5, reduction="mean"), losses.CosineSimilarity(axis=1)]
    for loss in made:
        again = type(loss).from_config(loss.get_config())
        assert again.get_config() == loss.get_config()
    assert made[0].get_config() == {"name": "b", "reduction": "sum", "from_logits": True,
                                    "label_smoothing": 0.25, "axis": -1}
    assert made[2].get_config()["ignore_class"] == -1
    model = pynn.Sequential([L.Input((3,)), L.Dense(4)])
    model.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=255))
    model.save(tmp_path / "m.keras")
    loaded = pynn.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    y = np.array([0, 255, 1, 3, 255, 2, 0, 1])
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    model2 = pynn.Sequential([L.Input((3,)), L.Dense(2, activation="sigmoid")])
    model2.compile(optimizer="sgd", loss=losses.BinaryCrossentropy(label_smoothing=0.3))
    model2.save(tmp_path / "b.keras")
    loss = pynn.load_model(tmp_path / "b.keras").engine.losses.outputs[0].loss
    assert (type(loss), loss.label_smoothing) == (losses.BinaryCrossentropy, 0.3)


# ---- training: the fused whole-epoch path, step by step, and the numpy backend ---------------

def digits(n=200):
    (x, y), _ = pynn.datasets.digits.load_data()
    return (x[:n].reshape(n, 64) / 16).astype(np.float32), y[:n].astype(np.int64)


class EveryBatch(pynn.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


def fit(loss_fn, y, backend, step_by_step=False, calls=None, epochs=2):
    x, _ = digits()
    pynn.utils.set_random_seed(4)
    out = 10 if y.ndim == 1 else y.shape[1]
    model = pynn.Sequential([L.Input((64,)), L.Dense(24, activation="tanh"),
                             L.Dense(out, activation="softmax" if y.ndim == 1 else "sigmoid")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss=loss_fn(), backend=backend)
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0,
                        callbacks=[EveryBatch()] if step_by_step else [])
    return model.get_weights(), history.history["loss"], model.evaluate(x, y, verbose=0)


TRAININGS = {
    "bce-smoothing": (lambda: losses.BinaryCrossentropy(label_smoothing=0.1),
                      lambda y: np.eye(10, dtype=np.float32)[y]),
    "scce-ignore-outside": (lambda: losses.SparseCategoricalCrossentropy(ignore_class=-1),
                            lambda y: np.where(np.arange(len(y)) % 3 == 0, -1, y)),
    "scce-ignore-class": (lambda: losses.SparseCategoricalCrossentropy(ignore_class=3),
                          lambda y: y),
}


@pytest.mark.parametrize("name", list(TRAININGS))
def test_training_takes_the_fused_path_and_matches_numpy(name, c_calls):
    loss_fn, targets = TRAININGS[name]
    y = targets(digits()[1])
    calls = c_calls
    weights, history, evaluated = fit(loss_fn, y, "cpu")
    assert calls == [7, 7]                                  # one C call per epoch of 7 steps
    calls.clear()
    step_weights, step_history, _ = fit(loss_fn, y, "cpu", step_by_step=True)
    assert calls == [1] * 14
    for a, b in zip(step_weights, weights):
        assert_bitwise(a, b, name)
    assert step_history == history
    ref_weights, ref_history, ref_evaluated = fit(loss_fn, y, "numpy")
    for a, b in zip(weights, ref_weights):
        assert_close(a, b, rtol=RTOL_SUMS, err_msg=name)
    assert_close(history, ref_history, rtol=RTOL_SUMS, err_msg=name)
    assert_close(evaluated, ref_evaluated, rtol=RTOL_SUMS, err_msg=name)
    assert all(math.isfinite(v) for v in history) and history[-1] < history[0]


def test_training_ignores_the_ignored_samples():
    """Samples labelled ignore_class change nothing: their inputs may be anything (finite)."""
    x, y = digits()
    y = np.where(np.arange(len(y)) % 4 == 0, -1, y)
    results = []
    for scramble in (False, True):
        xs = x.copy()
        if scramble:
            xs[y == -1] = np.random.default_rng(1).uniform(-5, 5, xs[y == -1].shape)
        pynn.utils.set_random_seed(4)
        model = pynn.Sequential([L.Input((64,)), L.Dense(10, activation="softmax")])
        model.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(ignore_class=-1))
        model.fit(xs, y, batch_size=50, epochs=1, verbose=0, shuffle=False)
        results.append(model.get_weights())
    for a, b in zip(*results):
        assert_bitwise(a, b)
