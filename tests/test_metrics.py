"""pynn.metrics objects: Keras's stateful API (update_state / result / reset_state) on
fixed arrays, against values written out by hand (independent of the kernels)."""
import numpy as np
import pytest

import pynn
from pynn import metrics

from conftest import usable_backend

P = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]], np.float32)
LABELS = np.array([1, 1, 2, 0])                      # right, wrong, right, wrong
ONE_HOT = np.eye(3, dtype=np.float32)[LABELS]


# a multi-label batch: predicted positive p > 0.5, actually positive t != 0
YB = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], np.float32)
PB = np.array([[0.9, 0.6, 0.4], [0.2, 0.5, 0.7], [0.51, 0.1, 0.8]], np.float32)
TP, FP, TN, FN = 3, 2, 2, 2        # (0,0) (1,2) (2,0); (0,1) (2,2); (1,0) (1,1); (0,2) (2,1)


@pytest.mark.parametrize("metric,args,expected", [
    (metrics.TruePositives(), (YB, PB), TP),
    (metrics.FalsePositives(), (YB, PB), FP),
    (metrics.TrueNegatives(), (YB, PB), TN),
    (metrics.FalseNegatives(), (YB, PB), FN),
    (metrics.SparseTopKCategoricalAccuracy(k=2), (LABELS, P), 1.0),     # every label in 2
    (metrics.TopKCategoricalAccuracy(k=1), (ONE_HOT, P), 0.5),
    (metrics.SparseTopKCategoricalAccuracy(k=1), ([0], [[0.4, 0.4, 0.2]]), 1.0),  # a tie counts
    (metrics.Precision(), (YB, PB), TP / (TP + FP)),
    (metrics.Recall(), (YB, PB), TP / (TP + FN)),
    (metrics.SparseCategoricalAccuracy(), (LABELS, P), 0.5),
    (metrics.CategoricalAccuracy(), (ONE_HOT, P), 0.5),
    (metrics.BinaryAccuracy(), ([[1], [0], [1], [0]], [[0.9], [0.6], [0.4], [0.1]]), 0.5),
    (metrics.MeanSquaredError(), ([[0.0, 1.0], [2.0, 2.0]], [[1.0, 1.0], [2.0, 4.0]]),
     (1 + 0 + 0 + 4) / 4),
    (metrics.MeanAbsoluteError(), ([[0.0, 1.0], [2.0, 2.0]], [[1.0, 1.0], [2.0, 4.0]]),
     (1 + 0 + 0 + 2) / 4),
    (metrics.RootMeanSquaredError(), ([[0.0, 1.0], [2.0, 2.0]], [[1.0, 1.0], [2.0, 4.0]]),
     np.sqrt(5 / 4)),
])
def test_values_on_fixed_arrays_accumulate_and_reset(metric, args, expected):
    metric.reset_state()
    metric.update_state(*args)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
    metric.update_state(*args)                       # the same again: the same mean
    counts = isinstance(metric, (metrics.TruePositives, metrics.FalsePositives,
                                 metrics.TrueNegatives, metrics.FalseNegatives))
    assert float(metric.result()) == pytest.approx(2 * expected if counts else expected,
                                                   rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert float(metric(*args)) == pytest.approx(expected, rel=1e-6)   # __call__


def test_mean_and_sum():
    m, s = metrics.Mean(), metrics.Sum()
    for values in ([1.0, 2.0], [6.0]):
        m.update_state(values)
        s.update_state(values)
    assert float(m.result()) == 3.0 and float(s.result()) == 9.0


def test_names_configs_and_bad_input():
    assert metrics.SparseCategoricalAccuracy().name == "sparse_categorical_accuracy"
    assert metrics.RootMeanSquaredError().name == "root_mean_squared_error"
    acc = metrics.SparseCategoricalAccuracy(name="acc")
    again = type(acc).from_config(acc.get_config())
    assert again.name == "acc"
    for call, error in [
        (lambda: metrics.SparseCategoricalAccuracy().update_state([0, 5, 1, 1], P), ValueError),
        (lambda: metrics.SparseCategoricalAccuracy().update_state([0, 1], P), ValueError),
        (lambda: metrics.CategoricalAccuracy().update_state(ONE_HOT[:2], P), ValueError),
        (lambda: metrics.MeanSquaredError().update_state([[np.nan]], [[1.0]]), ValueError),
        (lambda: metrics.MeanSquaredError().update_state([[1.0]], [[1.0]], [2.0, 1.0]),
         ValueError),
        (lambda: metrics.MeanSquaredError().update_state([[1.0]], [[1.0]], [-1.0]), ValueError),
        (lambda: metrics.BinaryAccuracy(threshold=float("nan")), ValueError),
        (lambda: metrics.Mean(name=""), ValueError),
        (lambda: pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(3)]).compile(
            "sgd", "mse", metrics=[object()]), TypeError),
    ]:
        with pytest.raises(error):
            call()



@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_precision_and_recall_in_compile_match_an_independent_count(backend):
    usable_backend(backend)
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(2, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy",
                  metrics=["precision", metrics.Recall(name="rec"), "true_positives"],
                  backend=backend)
    rng = np.random.default_rng(0)
    x = rng.random((90, 4), dtype=np.float32)
    y = (rng.random((90, 2)) > 0.5).astype(np.float32)
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "precision", "rec", "true_positives"}
    pred = model.predict(x, verbose=0) > 0.5
    tp, fp, fn = (pred & (y != 0)).sum(), (pred & (y == 0)).sum(), (~pred & (y != 0)).sum()
    assert logs["true_positives"] == tp
    assert logs["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0, rel=1e-12)
    assert logs["rec"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0, rel=1e-12)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_split=0.2)
    assert set(history.history) == {"loss", "precision", "rec", "true_positives", "val_loss",
                                    "val_precision", "val_rec", "val_true_positives"}
    with pytest.raises(ValueError, match="threshold"):
        metrics.Precision(thresholds=1.3)


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_top_k_in_compile_matches_an_independent_count(backend):
    usable_backend(backend)
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((6,)), pynn.layers.Dense(7, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend,
                  metrics=[metrics.SparseTopKCategoricalAccuracy(3, name="top-3-accuracy"),
                           "sparse_top_k_categorical_accuracy"])
    rng = np.random.default_rng(1)
    x, y = rng.random((50, 6), dtype=np.float32), rng.integers(0, 7, 50)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)
    rank = (p > p[np.arange(50), y][:, None]).sum(axis=1)     # classes above the true one
    assert logs["top-3-accuracy"] == pytest.approx((rank < 3).mean(), abs=1e-12)
    assert logs["sparse_top_k_categorical_accuracy"] == pytest.approx((rank < 5).mean(),
                                                                      abs=1e-12)
    with pytest.raises(ValueError, match="integer labels"):
        model.compile("adam", "categorical_crossentropy",
                      metrics=[metrics.SparseTopKCategoricalAccuracy()])
    with pytest.raises(ValueError, match="k"):
        metrics.TopKCategoricalAccuracy(k=0)
