"""Losses of reduction "sum" train a model (issue 11, Keras 3's semantics).

Keras 3 (keras/src/losses/loss.py, reduce_values and apply_mask), restated here in float64:
  "sum"        each batch's loss is sum_i w_i l_i over its rows: not divided by the rows
               (nor by the weights); with ignore_class the mask zeroes the ignored rows and
               nothing is rescaled; the gradient is that sum's;
  fit/evaluate an epoch's logged loss is the mean of the batch losses weighted by their rows
               (pynn's trainer does that with whatever the loss op returns).
The loss op (OP_LOSS's reduce_sum) computes it: train_on_batch / test_on_batch / evaluate
against the formulas, a weighted fit one C call per epoch and bitwise the same step by step
and op by op, cpu, numpy and cuda (the simulator without a GPU) agreeing, and one SGD step
with "sum" n times the step with "sum_over_batch_size" (n the batch rows, the rows not
ignored for ignore_class).  The kernels' reduce_sum against the reference is
tests/test_kernels.py's test_loss_reduce_sum, the C kernels' tests/c/test_losses.c.
"""
import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn import losses

from conftest import EveryBatch, RTOL_SUMS, assert_bitwise, assert_close

ROWS, BATCH, EPOCHS, CLASSES, OUT = 48, 16, 3, 3, 2
STEPS = ROWS // BATCH
IGNORE = -1


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 5)).astype(np.float32)
    y_reg = rng.normal(size=(ROWS, OUT)).astype(np.float32)
    y_cls = rng.integers(0, CLASSES, size=ROWS)
    y_cls[rng.random(ROWS) < 0.3] = IGNORE         # some samples ignored
    w = rng.uniform(0.0, 3.0, size=ROWS).astype(np.float32)
    w[::7] = 0.0                                   # some samples count for nothing
    return x, y_reg, y_cls, w


# (the loss with "sum", the same loss with "sum_over_batch_size", the output's units and
# activation, the targets of data())
CASES = {
    "mse": (lambda r: losses.MeanSquaredError(reduction=r), OUT, "linear", 1),
    "scce-ignore": (lambda r: losses.SparseCategoricalCrossentropy(reduction=r,
                                                                    ignore_class=IGNORE),
                    CLASSES, "softmax", 2),
}


def model(case, backend="cpu", reduction="sum", optimizer=None):
    make, units, activation, _ = CASES[case]
    pynn.utils.set_random_seed(4)
    m = pynn.Sequential([L.Input((5,)), L.Dense(8, activation="tanh"),
                         L.Dense(units, activation=activation)])
    m.compile(optimizer=optimizer or pynn.optimizers.Adam(0.01), loss=make(reduction),
              backend=backend)
    return m


def targets(case, seed=0):
    return data(seed)[CASES[case][3]]


def per_sample(case, pred, y):
    """float64 per-sample losses of the model's outputs (probabilities for scce, clipped as
    Keras clips them); 0 for the ignored samples."""
    pred = pred.astype(np.float64)
    if case == "mse":
        return ((pred - y) ** 2).mean(axis=1)
    keep = y != IGNORE
    p = np.clip(pred, 1e-7, 1 - 1e-7)
    p = p / p.sum(axis=1, keepdims=True)
    return np.where(keep, -np.log(p[np.arange(len(y)), np.where(keep, y, 0)]), 0.0)


def keras_sum(values, w=None):
    """Keras's "sum": sum_i w_i l_i (the mask already zeroed the ignored l_i)."""
    return float(values.sum() if w is None else (w.astype(np.float64) * values).sum())


# ---- one batch: train_on_batch / test_on_batch / evaluate against the formula -----------------
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_a_batch_loss_is_the_sum_over_the_batch(case, backend, weighted):
    x, *_, w = data()
    y = targets(case)
    sw = w if weighted else None
    m = model(case, backend)
    values = per_sample(case, m.predict(x, verbose=0), y)
    want = keras_sum(values, sw)
    loss = m.test_on_batch(x, y, sample_weight=sw)
    assert_close(loss, want, rtol=1e-5)
    # evaluate in batches of 20, 20 and 8 rows: the batch sums' mean weighted by their rows
    logs = m.evaluate(x, y, sample_weight=sw, batch_size=20, verbose=0, return_dict=True)
    sums = [keras_sum(values[i:i + 20], None if sw is None else sw[i:i + 20])
            for i in range(0, ROWS, 20)]
    assert_close(logs["loss"], np.average(sums, weights=[20, 20, 8]), rtol=1e-5)
    # train_on_batch reports the loss before its update, then the weights move
    before = m.get_weights()
    assert_close(m.train_on_batch(x, y, sample_weight=sw), loss, rtol=1e-6)
    assert any(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))


def test_the_sum_is_the_rows_times_the_mean():
    """The same model's batch loss with "sum" is n times its loss with "sum_over_batch_size"
    (n the rows; for ignore_class the rows not ignored, Keras's mask rescales the mean)."""
    x, *_, w = data()
    for case in CASES:
        y = targets(case)
        n = ROWS if case == "mse" else int(np.count_nonzero(y != IGNORE))
        for sw in (None, w):
            total = model(case).test_on_batch(x, y, sample_weight=sw)
            mean = model(case, reduction="sum_over_batch_size").test_on_batch(x, y,
                                                                              sample_weight=sw)
            assert_close(total, n * mean, rtol=1e-5, err_msg=case)


# ---- one SGD step: the gradient is n times the mean's ----------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_one_sgd_step_with_sum_is_n_times_the_step_with_the_mean(case):
    x, *_, w = data()
    y = targets(case)
    n = BATCH if case == "mse" else int(np.count_nonzero(y[:BATCH] != IGNORE))
    steps = {}
    for reduction in ("sum", "sum_over_batch_size"):
        m = model(case, reduction=reduction, optimizer=pynn.optimizers.SGD(0.05))
        before = m.get_weights()
        m.train_on_batch(x[:BATCH], y[:BATCH], sample_weight=w[:BATCH])
        steps[reduction] = [after.astype(np.float64) - b for after, b in
                            zip(m.get_weights(), before)]
    for got, mean in zip(steps["sum"], steps["sum_over_batch_size"]):
        assert_close(got, n * mean, rtol=1e-4, err_msg=case)
    assert any(np.abs(s).max() > 0 for s in steps["sum"])


# ---- a weighted fit: the fused path, step by step, op by op; the backends agree ---------------


def weighted_fit(case, path="whole epoch", threads=None, backend="cpu", rows=ROWS,
                 batch=BATCH, epochs=EPOCHS):
    x, *_, w = data()
    y = targets(case)
    m = model(case, backend)
    m.engine.force_python = path == "op by op"
    before = pynn.get_num_threads()
    if threads:
        pynn.set_num_threads(threads)
    try:
        h = m.fit(x[:rows], y[:rows], batch_size=batch, epochs=epochs, verbose=0,
                  sample_weight=w[:rows],
                  callbacks=[EveryBatch()] if path == "step by step" else [])
    finally:
        pynn.set_num_threads(before)
    return m.get_weights(), h.history


@pytest.mark.parametrize("case", list(CASES))
def test_a_weighted_fit_is_one_c_call_per_epoch_and_the_same_bits_on_every_path(case, c_calls):
    runs = {}
    for path, calls, threads in [("whole epoch", [STEPS] * EPOCHS, 2),
                                 ("step by step", [1] * STEPS * EPOCHS, 2),
                                 ("op by op", [], 2), ("one thread", [STEPS] * EPOCHS, 1)]:
        c_calls.clear()
        runs[path] = weighted_fit(case, "whole epoch" if path == "one thread" else path,
                                  threads)
        assert c_calls == calls, path
    weights, history = runs["whole epoch"]
    for path, (other, other_history) in runs.items():
        for a, b in zip(other, weights):
            assert_bitwise(a, b, err_msg=path)
        assert other_history == history, path
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("case", list(CASES))
def test_cpu_and_numpy_agree_on_a_weighted_fit(case):
    cpu, hc = weighted_fit(case)
    ref, hr = weighted_fit(case, backend="numpy")
    for a, b in zip(cpu, ref):
        assert_close(a, b, rtol=RTOL_SUMS, err_msg=case)
    assert_close(np.array(hc["loss"]), np.array(hr["loss"]), rtol=RTOL_SUMS, err_msg=case)


@pytest.mark.parametrize("case", list(CASES))
def test_cuda_agrees_with_numpy_and_cpu_on_a_weighted_fit(case):
    pytest.importorskip("numba")
    runs = {backend: weighted_fit(case, backend=backend, rows=16, batch=8, epochs=1)
            for backend in ("cuda", "numpy", "cpu")}
    for other in ("numpy", "cpu"):
        for a, b in zip(runs["cuda"][0], runs[other][0]):
            assert_close(a, b, rtol=RTOL_SUMS, err_msg=f"{case}: cuda vs {other}")
        assert_close(np.array(runs["cuda"][1]["loss"]), np.array(runs[other][1]["loss"]),
                     rtol=RTOL_SUMS, err_msg=f"{case}: cuda vs {other}")


# ---- what compile still refuses, and direct calls --------------------------------------------
@pytest.mark.parametrize("reduction", [None, "none", "mean_with_sample_weight"])
def test_compile_refuses_reductions_that_give_no_one_number_per_batch(reduction):
    m = pynn.Sequential([L.Input((5,)), L.Dense(OUT)])
    with pytest.raises(ValueError, match=f"reduction={reduction!r}.*training needs one "
                                         "number per batch"):
        m.compile(optimizer="sgd", loss=losses.MeanSquaredError(reduction=reduction))


def test_a_direct_call_with_sum_is_still_the_formula():
    x, y_reg, y_cls, w = data()
    rng = np.random.default_rng(5)
    pred = rng.normal(size=(ROWS, OUT)).astype(np.float32)
    got = losses.MeanSquaredError(reduction="sum")(y_reg, pred, sample_weight=w)
    assert_close(got, keras_sum(per_sample("mse", pred, y_reg), w), rtol=1e-6)
    probs = rng.uniform(0.05, 1.0, size=(ROWS, CLASSES)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    got = losses.SparseCategoricalCrossentropy(reduction="sum", ignore_class=IGNORE)(
        y_cls, probs, sample_weight=w)
    assert_close(got, keras_sum(per_sample("scce-ignore", probs, y_cls), w), rtol=1e-6)
