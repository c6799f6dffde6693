"""Issue 11's metrics: per-sample weights in every kernel metric, Accuracy, thresholds other
than 0.5, confusion metrics at lists of thresholds, AUC, compile(weighted_metrics=...).

Values are checked against float64 NumPy formulas written here from Keras 3's definitions
(keras/src/metrics: accuracy_metrics, confusion_metrics.AUC.result/interpolate_pr_auc,
reduction_metrics.Mean) and Keras's docstring examples; the kernels against the NumPy
reference on every backend (confusion counts bitwise: integer counts times weights, added
in row order); the compiled metrics against the metric objects on the same predictions.
"""
import numpy as np
import pytest

import pynn
from pynn import ids, metrics
from pynn.backend import reference as ref

from conftest import EveryBatch, RTOL_SUMS, assert_bitwise, assert_close, usable_backend

RNG = np.random.default_rng(11)
Y = (RNG.random((23, 3)) > 0.55).astype(np.float32)
P = RNG.random((23, 3)).astype(np.float32)
W = RNG.random(23) * 2.0
W[::6] = 0.0


# ---- independent float64 formulas ------------------------------------------------------------
def confusion64(y, p, thresholds, w=None):
    """tp, fp, tn, fn (float64) at each threshold: predicted positive p > t, actual y != 0,
    each entry counting its sample's weight."""
    w = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
    pos = p[None] > np.asarray(thresholds, np.float32)[:, None, None]
    act = (y != 0)[None]
    ww = w[None, :, None]
    return [((pos & act) * ww).sum(axis=(1, 2)), ((pos & ~act) * ww).sum(axis=(1, 2)),
            ((~pos & ~act) * ww).sum(axis=(1, 2)), ((~pos & act) * ww).sum(axis=(1, 2))]


def div(a, b):
    return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def auc64(y, p, num_thresholds=200, curve="ROC", summation="interpolation", w=None,
          thresholds=None):
    inner = sorted(thresholds) if thresholds is not None else \
        [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    tp, fp, tn, fn = confusion64(y, p, [-1e-7] + inner + [1 + 1e-7], w)
    if curve == "PR" and summation == "interpolation":        # Davis & Goadrich, as Keras
        total = 0.0
        for i in range(len(tp) - 1):
            dtp, pa, pb = tp[i] - tp[i + 1], tp[i] + fp[i], tp[i + 1] + fp[i + 1]
            slope = dtp / (pa - pb) if pa - pb > 0 else 0.0
            intercept = tp[i + 1] - slope * pb
            ratio = pa / pb if pa > 0 and pb > 0 else 1.0
            denom = tp[i + 1] + fn[i + 1]
            total += slope * (dtp + intercept * np.log(ratio)) / denom if denom > 0 else 0.0
        return total
    if curve == "ROC":
        x, yy = div(fp, fp + tn), div(tp, tp + fn)
    else:
        x, yy = div(tp, tp + fn), div(tp, tp + fp)
    h = {"interpolation": (yy[:-1] + yy[1:]) / 2, "minoring": np.minimum(yy[:-1], yy[1:]),
         "majoring": np.maximum(yy[:-1], yy[1:])}[summation]
    return float(np.sum((x[:-1] - x[1:]) * h))


def wmean(values, w):
    return float(np.sum(values * w) / np.sum(w)) if np.sum(w) else 0.0


# ---- Keras's docstring examples ---------------------------------------------------------------
@pytest.mark.parametrize("make,args,sw,expected", [
    (metrics.Accuracy, ([[1], [2], [3], [4]], [[0], [2], [3], [4]]), None, 0.75),
    (metrics.Accuracy, ([[1], [2], [3], [4]], [[0], [2], [3], [4]]), [1, 1, 0, 0], 0.5),
    (metrics.BinaryAccuracy, ([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]]), None, 0.75),
    (metrics.BinaryAccuracy, ([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]]), [1, 0, 0, 1], 0.5),
    (lambda: metrics.AUC(num_thresholds=3), ([0, 0, 1, 1], [0, 0.5, 0.3, 0.9]), None, 0.75),
    (lambda: metrics.AUC(num_thresholds=3), ([0, 0, 1, 1], [0, 0.5, 0.3, 0.9]), [1, 0, 0, 1], 1.0),
    (metrics.Precision, ([0, 1, 1, 1], [1, 0, 1, 1]), None, 2 / 3),
    (metrics.Precision, ([0, 1, 1, 1], [1, 0, 1, 1]), [0, 0, 1, 0], 1.0),
    (lambda: metrics.Precision(top_k=2), ([0, 0, 1, 1], [1, 1, 1, 1]), None, 0.0),
    (lambda: metrics.Precision(top_k=4), ([0, 0, 1, 1], [1, 1, 1, 1]), None, 0.5),
    (metrics.Recall, ([0, 1, 1, 1], [1, 0, 1, 1]), None, 2 / 3),
    (metrics.Recall, ([0, 1, 1, 1], [1, 0, 1, 1]), [0, 0, 1, 0], 1.0),
    (lambda: metrics.Recall(class_id=2), ([[0, 0, 1], [0, 1, 0]], [[0.1, 0.2, 0.9], [0.1, 0.9, 0.6]]),
     None, 1.0),
    (lambda: metrics.Precision(class_id=2), ([[0, 0, 1], [0, 1, 0]], [[0.1, 0.2, 0.9], [0.1, 0.9, 0.6]]),
     None, 0.5),
    (metrics.TruePositives, ([0, 1, 1, 1], [1, 0, 1, 1]), None, 2.0),
    (metrics.TruePositives, ([0, 1, 1, 1], [1, 0, 1, 1]), [0, 0, 1, 0], 1.0),
    (metrics.FalsePositives, ([0, 1, 0, 0], [0, 0, 1, 1]), [0, 0, 1, 0], 1.0),
    (metrics.TrueNegatives, ([0, 1, 0, 0], [1, 1, 0, 0]), [0, 0, 1, 0], 1.0),
    (metrics.FalseNegatives, ([0, 1, 1, 1], [0, 1, 0, 0]), [0, 0, 1, 0], 1.0),
])
def test_keras_docstring_examples(make, args, sw, expected):
    m = make()
    y_true, y_pred = (np.asarray(a, np.float32) for a in args)
    m.update_state(y_true, y_pred, sample_weight=sw)
    assert float(m.result()) == pytest.approx(expected, rel=1e-6)
    m.reset_state()
    assert float(m.result()) == 0.0


def test_mean_and_sum_with_sample_weight():
    m, s = metrics.Mean(), metrics.Sum()
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    s.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert float(m.result()) == 2.0 and float(s.result()) == 4.0
    m.reset_state()
    m.update_state([[1.0, 3.0], [5.0, 7.0]], sample_weight=[0.5, 0.0])
    assert float(m.result()) == 2.0                            # Keras: per sample mean
    m.reset_state()
    m.update_state([1.0, 2.0], sample_weight=[0.0, 0.0])
    assert float(m.result()) == 0.0                            # no weight: 0, as Keras
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.Mean().update_state([1.0, 2.0], sample_weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.Mean().update_state([1.0, 2.0], sample_weight=[1.0, 2.0, 3.0])


# ---- every kernel metric against float64 formulas, with and without weights -------------------
def _rows_values(kind, y, p, threshold=0.5):
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    return {"accuracy": (y64 == p64).mean(axis=1),
            "binary_accuracy": ((p > np.float32(threshold)) == (y != 0)).mean(axis=1),
            "mean_squared_error": ((y64 - p64) ** 2).mean(axis=1),
            "mean_absolute_error": np.abs(y64 - p64).mean(axis=1),
            "categorical_accuracy": (p.argmax(1) == y.argmax(1)).astype(np.float64)}[kind]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("make,kind,threshold,root", [
    (metrics.Accuracy, "accuracy", 0.5, False),
    (lambda: metrics.BinaryAccuracy(threshold=0.3), "binary_accuracy", 0.3, False),
    (lambda: metrics.BinaryAccuracy(threshold=0.7), "binary_accuracy", 0.7, False),
    (metrics.MeanSquaredError, "mean_squared_error", 0.5, False),
    (metrics.RootMeanSquaredError, "mean_squared_error", 0.5, True),
    (metrics.MeanAbsoluteError, "mean_absolute_error", 0.5, False),
    (metrics.CategoricalAccuracy, "categorical_accuracy", 0.5, False),
])
def test_mean_metrics_weighted_and_not(make, kind, threshold, root, weighted):
    y = Y.copy()
    p = np.round(P * 2) / 2 if kind == "accuracy" else P      # some equal entries
    y[:, :] = np.round(y * 2) / 2 if kind == "accuracy" else y
    w = W if weighted else np.ones(len(y))
    m = make()
    m.update_state(y[:10], p[:10], sample_weight=w[:10] if weighted else None)
    m.update_state(y[10:], p[10:], sample_weight=w[10:] if weighted else None)
    expected = wmean(_rows_values(kind, y, p, threshold), w)
    assert float(m.result()) == pytest.approx(np.sqrt(expected) if root else expected, rel=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_confusion_metrics_at_threshold_lists(weighted):
    w = W if weighted else None
    sw = w if weighted else None
    thresholds = [0.0, 0.25, 0.5, 0.9]
    tp, fp, tn, fn = confusion64(Y, P, thresholds, w)
    for cls, want in [(metrics.TruePositives, tp), (metrics.FalsePositives, fp),
                      (metrics.TrueNegatives, tn), (metrics.FalseNegatives, fn),
                      (metrics.Precision, div(tp, tp + fp)), (metrics.Recall, div(tp, tp + fn))]:
        m = cls(thresholds=thresholds)
        m.update_state(Y, P, sample_weight=sw)
        got = m.result()
        assert got.shape == (4,), cls
        assert_close(got, want.astype(np.float32), rtol=1e-6, err_msg=cls.__name__)
        one = cls(thresholds=0.25)
        one.update_state(Y, P, sample_weight=sw)
        assert float(one.result()) == pytest.approx(float(want[1]), rel=1e-6), cls


@pytest.mark.parametrize("curve,summation", [("ROC", "interpolation"), ("ROC", "minoring"),
                                             ("ROC", "majoring"), ("PR", "interpolation"),
                                             ("PR", "minoring"), ("PR", "majoring")])
@pytest.mark.parametrize("weighted", [False, True])
def test_auc_against_float64_formulas(curve, summation, weighted):
    y, p = Y[:, :1], P[:, :1]
    w = W if weighted else None
    for num, thresholds in [(200, None), (7, None), (200, [0.3, 0.1, 0.8])]:
        m = metrics.AUC(num_thresholds=num, curve=curve, summation_method=summation,
                        thresholds=thresholds)
        m.update_state(y[:12], p[:12], sample_weight=None if w is None else w[:12])
        m.update_state(y[12:], p[12:], sample_weight=None if w is None else w[12:])
        want = auc64(y, p, num, curve, summation, w, thresholds)
        assert float(m.result()) == pytest.approx(want, rel=1e-6, abs=1e-7), (num, thresholds)
    # logits: the thresholds of sigmoid(x) > t
    logits = np.log(p / (1 - p)).astype(np.float32)
    m = metrics.AUC(curve=curve, summation_method=summation, from_logits=True)
    m.update_state(y, logits, sample_weight=w)
    assert float(m.result()) == pytest.approx(auc64(y, p, 200, curve, summation, w), abs=1e-6)


def test_roc_auc_is_the_rank_statistic_when_every_value_has_its_own_bucket():
    """With 200 thresholds and predictions in distinct buckets, the trapezoid ROC AUC is the
    Mann-Whitney probability that a positive outranks a negative."""
    rng = np.random.default_rng(3)
    p = ((rng.permutation(150)[:60] + 0.5) / 199).astype(np.float32)
    y = (rng.random(60) < 0.4).astype(np.float32)
    pos, neg = p[y == 1], p[y == 0]
    rank = np.mean(pos[:, None] > neg[None, :])
    m = metrics.AUC()
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx(rank, abs=1e-6)
    try:
        import torch  # noqa: F401   (optional: torch has no AUC; the rank statistic suffices)
    except ImportError:
        pass


# ---- kernels: C and CUDA against the reference ---------------------------------------------
@pytest.mark.parametrize("kind", ["accuracy", "binary_accuracy", "mean_squared_error",
                                  "true_positives", "false_negatives", "count",
                                  "categorical_accuracy"])
def test_metric_sum_weights_parity(kernel_backend, kind):
    be = kernel_backend
    p, y = P[:7], Y[:7]
    w = np.ascontiguousarray(W[:4], np.float32)               # per_weight 2: 7 rows, 4 weights
    for weights, per in [(None, 1), (w, 2)]:
        want = ref.metric_sum(kind, p, y, 5, 0.3, weights, per)
        got = be.metric_sum(kind, be.from_host(p), be.from_host(y), 5, 0.3,
                            None if weights is None else be.from_host(weights), per)
        if kind in ("true_positives", "false_negatives", "count") and weights is None:
            assert got == want
        else:
            assert got == pytest.approx(want, rel=RTOL_SUMS)


def test_metric_confusion_is_bitwise_the_reference(kernel_backend):
    be = kernel_backend
    thresholds = np.array([-1e-7, 0.1, 0.5, 0.5000001, 0.99, 1 + 1e-7], np.float32)
    labels = np.array([0, 2, 1, 1, 0, 2, 2], np.int64)
    w = np.ascontiguousarray(W[:7], np.float32)
    for target in (Y[:7], labels):
        for weights, per in [(None, 1), (w, 1), (np.ascontiguousarray(w[:4]), 2)]:
            want = ref.metric_confusion(P[:7], target, thresholds, weights, per)
            got = be.metric_confusion(be.from_host(P[:7]), be.from_host(target), thresholds,
                                      None if weights is None else be.from_host(weights), per)
            assert_bitwise(np.asarray(got), want)
            assert_close(want, np.array(confusion64(
                np.eye(3, dtype=np.float32)[target] if target.ndim == 1 else target, P[:7],
                thresholds, None if weights is None else np.repeat(weights, per)[:7])),
                rtol=1e-12)


def test_kernel_refusals():
    from pynn import _core
    cpu = pynn.backend.get("cpu")
    with pytest.raises(ValueError):
        cpu.metric_sum("mean_squared_error", P, Y, 5, 0.5, np.full(23, -1.0, np.float32))
    with pytest.raises(ValueError):
        cpu.metric_sum("mean_squared_error", P, Y, 5, 0.5, np.ones(22, np.float32))
    with pytest.raises(ValueError):
        cpu.metric_confusion(P, Y, np.array([np.nan], np.float32))
    with pytest.raises(ValueError):
        _core.metric_sum(P, Y, ids.METRICS["confusion"])


# ---- compiled: the history equals the objects on the same predictions --------------------------
def _binary_model(backend, lr=0.0):
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(2, activation="sigmoid")])
    m.compile(pynn.optimizers.SGD(lr), "binary_crossentropy", backend=backend,
              metrics=["auc", metrics.AUC(curve="PR", name="pr"), "precision",
                       metrics.Recall(thresholds=[0.3, 0.6], name="recalls"), "accuracy",
                       metrics.BinaryAccuracy(threshold=0.4, name="acc4")])
    return m


def _data(n=40):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (rng.random((n, 2)) > 0.5).astype(np.float32)
    return x, y


def _objects_on(y, p):
    out = {}
    for key, m in [("auc", metrics.AUC()), ("pr", metrics.AUC(curve="PR")),
                   ("precision", metrics.Precision()),
                   ("recalls", metrics.Recall(thresholds=[0.3, 0.6])),
                   ("accuracy", metrics.BinaryAccuracy()),
                   ("acc4", metrics.BinaryAccuracy(threshold=0.4))]:
        m.update_state(y, p)
        out[key] = m.result()
    return out


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_compiled_auc_precision_recall_equal_the_objects(backend):
    usable_backend(backend)
    x, y = _data(24 if backend == "cuda" else 40)
    m = _binary_model(backend)
    history = m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                    validation_data=(x[:16], y[:16]))
    want = _objects_on(y, m.predict(x, verbose=0))                   # lr 0: same weights
    val = _objects_on(y[:16], m.predict(x[:16], verbose=0))
    for key in want:
        assert_close(np.asarray(history.history[key][0], np.float64),
                     np.asarray(want[key], np.float64), rtol=1e-6, err_msg=key)
        assert_close(np.asarray(history.history["val_" + key][0], np.float64),
                     np.asarray(val[key], np.float64), rtol=1e-6, err_msg=key)
    logs = m.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "auc", "pr", "precision", "recalls", "accuracy", "acc4"]
    assert logs["recalls"].shape == (2,)




def test_a_fit_with_auc_is_one_c_call_per_epoch_and_the_same_bits_step_by_step(c_calls):
    x, y = _data()
    runs = {}
    for path, calls in [("epoch", [5, 5]), ("step", [1] * 10), ("op by op", [])]:
        c_calls.clear()
        m = _binary_model("cpu", lr=0.1)
        m.engine.force_python = path == "op by op"
        h = m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                  callbacks=[EveryBatch()] if path == "step" else [])
        assert c_calls == calls, path
        runs[path] = (m.get_weights(), h.history)
    for path, (weights, hist) in runs.items():
        for a, b in zip(weights, runs["epoch"][0]):
            assert_bitwise(a, b, err_msg=path)
        for key, values in hist.items():
            assert_bitwise(np.asarray(values, np.float64),
                           np.asarray(runs["epoch"][1][key], np.float64), err_msg=key)


# ---- weighted_metrics -------------------------------------------------------------------------
def test_weighted_metrics_log_names_and_values_without_sample_weights():
    x, y = _data()
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(2, activation="sigmoid")])
    m.compile("sgd", "binary_crossentropy", metrics=["accuracy", "mse"],
              weighted_metrics=["accuracy", "accuracy", metrics.AUC(name="wauc"), "mae"])
    logs = m.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    # Keras 3 (compile_utils.CompileMetrics.result): a taken name gets "weighted_"
    assert list(logs) == ["loss", "accuracy", "mse", "weighted_accuracy", "weighted_accuracy_1",
                          "wauc", "mae"]
    p = m.predict(x, verbose=0)
    assert logs["weighted_accuracy"] == logs["accuracy"] == logs["weighted_accuracy_1"]
    assert logs["mae"] == pytest.approx(float(np.abs(y - p).mean()), rel=1e-6)
    auc = metrics.AUC()
    auc.update_state(y, p)
    assert logs["wauc"] == pytest.approx(float(auc.result()), rel=1e-6)
    ops = [op for op in m.engine.plan("test").ops if op.name == "metric"]
    assert len(ops) == 2 + 2 * 2 + 1 + 2           # weighted means read [kind, "count"]
    for op in ops:
        assert op.bufs[2] == -1                    # no sample-weight buffer yet: weights 1
    with pytest.raises(TypeError, match="weighted_metrics"):
        m.compile("sgd", "mse", weighted_metrics="accuracy")


def test_weighted_metrics_multi_output_names():
    a = pynn.Input((3,))
    o1 = pynn.layers.Dense(1, activation="sigmoid", name="p")(a)
    o2 = pynn.layers.Dense(2, name="q")(a)
    m = pynn.Model(a, [o1, o2])
    m.compile("sgd", ["binary_crossentropy", "mse"], metrics=[["accuracy"], ["mae"]],
              weighted_metrics=[["accuracy"], ["mse"]])
    assert m.engine.losses.log_keys() == ["loss", "p_accuracy", "q_mae", "p_weighted_accuracy",
                                          "q_mse", "p_loss", "q_loss"]


def test_save_and_load_keep_the_new_metrics(tmp_path):
    x, y = _data()
    m = _binary_model("cpu", lr=0.05)
    m.compile(pynn.optimizers.SGD(0.05), "binary_crossentropy",
              metrics=[metrics.AUC(num_thresholds=50, curve="PR", summation_method="majoring"),
                       metrics.Precision(thresholds=[0.2, 0.7]), metrics.Accuracy()],
              weighted_metrics=[metrics.AUC(thresholds=[0.1, 0.5], name="wauc")])
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = m.evaluate(x, y, verbose=0, return_dict=True)
    path = tmp_path / "m.keras"
    m.save(path)
    again = pynn.load_model(path)
    after = again.evaluate(x, y, verbose=0, return_dict=True)
    assert list(after) == list(before)
    for key in before:
        assert_bitwise(np.asarray(after[key], np.float64), np.asarray(before[key], np.float64),
                       err_msg=key)


# ---- refusals name the argument and the value -------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: metrics.AUC(num_thresholds=1), "num_thresholds=1"),
    (lambda: metrics.AUC(curve="ROCK"), "curve"),
    (lambda: metrics.AUC(summation_method="mid"), "summation_method"),
    (lambda: metrics.AUC(multi_label=True), "multi_label"),
    (lambda: metrics.AUC(thresholds=[0.2, float("nan")]), "thresholds"),
    (lambda: metrics.Precision(thresholds=[0.2, 1.5]), "1.5"),
    (lambda: metrics.Recall(thresholds=-0.1), "-0.1"),
    (lambda: metrics.TruePositives(thresholds="a"), "thresholds"),
    (lambda: metrics.BinaryAccuracy(threshold="x"), "threshold"),
    (lambda: metrics.Precision(top_k=0), "top_k"),
    (lambda: metrics.AUC().update_state([0, 1], [0.1, 0.2], sample_weight=[1, 2, 3]),
     "sample_weight"),
    (lambda: metrics.Accuracy().update_state([0, 1], [0, 1], sample_weight=[1, -2]),
     "sample_weight"),
    (lambda: pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(1)]).compile(
        "sgd", "mse", metrics=["aucc"]), "aucc"),
    (lambda: pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(2)]).compile(
        "sgd", "mse", metrics=[metrics.Precision(top_k=1)]), "top_k"),
    (lambda: pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(2)]).compile(
        "sgd", "mse", weighted_metrics=["aucc"]), "aucc"),
])
def test_refusals(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_configs_round_trip():
    for m in [metrics.AUC(num_thresholds=9, curve="PR", from_logits=True),
              metrics.AUC(thresholds=[0.4, 0.2]), metrics.Precision(thresholds=[0.1, 0.3]),
              metrics.Recall(top_k=2, class_id=1), metrics.BinaryAccuracy(threshold=0.2),
              metrics.TruePositives(thresholds=[0.5, 0.6]), metrics.Accuracy(name="eq")]:
        again = type(m).from_config(m.get_config())
        assert again.get_config() == m.get_config()
    assert metrics.AUC(num_thresholds=3).thresholds == [-1e-7, 0.5, 1 + 1e-7]


def test_weighted_ops_read_the_sample_weight_buffer_when_the_plan_has_one():
    """A weighted plan (fit/evaluate given sample weights) has a sample-weight buffer per
    loss output: the weighted metric ops read it (with the output's positions per weight),
    the plain ones do not; an unweighted plan's weighted metrics read none (weights 1)."""
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(2, activation="sigmoid")])
    m.compile("sgd", "binary_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    plan = m.engine.plan("test+weights")
    [sw] = plan.sample_weight_bufs
    assert plan.buffers[sw].role == "sample weight" and plan.target_bufs[-1] == sw
    reads = [(op.label, op.bufs[2], op.ints[5]) for op in plan.ops if op.name == "metric"]
    assert reads == [("accuracy", -1, 1), ("weighted_accuracy (binary_accuracy)", sw, 1),
                     ("weighted_accuracy (count)", sw, 1)]
    assert [op.bufs[3] for op in plan.ops if op.name == "loss"] == [sw]
    plain = m.engine.plan("test")
    assert plain.sample_weight_bufs == []
    assert all(op.bufs[2] == -1 for op in plain.ops if op.name == "metric")
