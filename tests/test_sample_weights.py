"""fit / evaluate / train_on_batch / test_on_batch with sample_weight and class_weight
(Keras 3's semantics), and weighted metrics.

Keras's definitions, which the float64 formulas below restate independently:
  loss         "sum_over_batch_size": each batch's loss is sum_i w_i l_i / batch rows (not
               divided by the sum of the weights), and an epoch's logged loss is the mean
               of the batch losses weighted by their rows;
  class_weight a sample of class c weighs class_weight.get(c, 1) (its label, the argmax of a
               one-hot row, a rounded single value), then as sample_weight;
  metrics      compile(metrics=...) ignore the weights; compile(weighted_metrics=...) are
               weighted means sum w v / sum w.
The fused whole-epoch path stays: a weighted fit is one C call per epoch and bitwise the
same step by step, op by op from Python, and on 1 or 2 threads."""
import numpy as np
import pytest

import pynn
from pynn import layers as L

from conftest import EveryBatch, RTOL_SUMS, assert_bitwise, assert_close

ROWS, BATCH, EPOCHS, CLASSES = 48, 16, 3, 3
STEPS = ROWS // BATCH


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 5)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=ROWS)
    w = rng.uniform(0.0, 3.0, size=ROWS).astype(np.float32)
    w[::7] = 0.0                                  # some samples count for nothing
    return x, y, w


def model(backend="cpu", loss="sparse_categorical_crossentropy", out=CLASSES,
          activation="softmax", optimizer=None, weighted_metrics=None):
    pynn.utils.set_random_seed(4)
    m = pynn.Sequential([L.Input((5,)), L.Dense(8, activation="tanh"),
                         L.Dense(out, activation=activation)])
    m.compile(optimizer=optimizer or pynn.optimizers.Adam(0.01), loss=loss, backend=backend,
              metrics=["accuracy"], weighted_metrics=weighted_metrics)
    return m




def softmax_ce(probs, y):
    """float64 per-sample cross-entropy of probabilities, clipped as Keras clips them."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    p = p / p.sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(y)), y])


# ---- the loss and the metrics of one batch ----------------------------------------------------
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_a_weighted_batch_loss_is_the_weighted_sum_over_the_batch_rows(backend):
    x, y, w = data()
    m = model(backend, weighted_metrics=["accuracy"])
    probs = m.predict(x, verbose=0)
    per_sample = softmax_ce(probs, y)
    correct = (probs.argmax(1) == y).astype(np.float64)
    loss, acc, weighted_acc = m.test_on_batch(x, y, sample_weight=w)
    assert_close(loss, (w * per_sample).sum() / ROWS, rtol=1e-5)
    assert acc == pytest.approx(correct.mean(), rel=1e-12)      # metrics=: unweighted
    assert weighted_acc == pytest.approx((w * correct).sum() / w.sum(), rel=1e-6)
    logs = m.evaluate(x, y, sample_weight=w, batch_size=BATCH, verbose=0, return_dict=True)
    batch_losses = [(w[i:i + BATCH] * per_sample[i:i + BATCH]).sum() / BATCH
                    for i in range(0, ROWS, BATCH)]
    assert_close(logs["loss"], np.mean(batch_losses), rtol=1e-5)
    # train_on_batch reports the loss before its update
    assert_close(m.train_on_batch(x, y, sample_weight=w)[0], loss, rtol=1e-6)


def test_weights_of_one_are_no_weights():
    x, y, _ = data()
    a = model()
    b = model()
    ha = a.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    hb = b.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
               sample_weight=np.ones(ROWS))
    for u, v in zip(a.get_weights(), b.get_weights()):
        assert_close(u, v, rtol=1e-6)
    assert_close(np.array(ha.history["loss"]), np.array(hb.history["loss"]), rtol=1e-6)


def test_class_weight_is_sample_weight_by_class():
    x, y, _ = data()
    table = {0: 0.5, 1: 2.0}                      # class 2 missing: weight 1 (Keras)
    a = model()
    a.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, class_weight=table)
    b = model()
    b.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
          sample_weight=np.array([table.get(c, 1.0) for c in y], np.float32))
    for u, v in zip(a.get_weights(), b.get_weights()):
        assert_bitwise(u, v)
    # one-hot targets: the class is the argmax; one sigmoid unit: the rounded target
    onehot = np.eye(CLASSES, dtype=np.float32)[y]
    c = model(loss="categorical_crossentropy")
    c.fit(x, onehot, batch_size=BATCH, epochs=EPOCHS, verbose=0, class_weight=table)
    d = model(loss="categorical_crossentropy")
    d.fit(x, onehot, batch_size=BATCH, epochs=EPOCHS, verbose=0,
          sample_weight=np.array([table.get(c, 1.0) for c in y], np.float32))
    for u, v in zip(c.get_weights(), d.get_weights()):
        assert_bitwise(u, v)
    yb = (y == 1).astype(np.float32).reshape(-1, 1)
    e = model(loss="binary_crossentropy", out=1, activation="sigmoid")
    e.fit(x, yb, batch_size=BATCH, epochs=EPOCHS, verbose=0, class_weight={0: 1.0, 1: 5.0})
    f = model(loss="binary_crossentropy", out=1, activation="sigmoid")
    f.fit(x, yb, batch_size=BATCH, epochs=EPOCHS, verbose=0,
          sample_weight=np.where(yb[:, 0] > 0.5, 5.0, 1.0))
    for u, v in zip(e.get_weights(), f.get_weights()):
        assert_bitwise(u, v)


def test_validation_data_with_weights_is_evaluate_with_weights():
    x, y, w = data()
    vx, vy, vw = data(1)
    m = model(weighted_metrics=["accuracy"])
    h = m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, sample_weight=w,
              validation_data=(vx, vy, vw))
    logs = m.evaluate(vx, vy, sample_weight=vw, batch_size=BATCH, verbose=0, return_dict=True)
    assert len(logs) == 3 and set(h.history) == set(logs) | {"val_" + k for k in logs}
    for key, value in logs.items():
        assert h.history["val_" + key][-1] == value, key
    # validation_split splits the weights with the data
    m2 = model()
    h2 = m2.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, sample_weight=w,
                validation_split=0.25, shuffle=False)
    split = int(ROWS * 0.75)
    m3 = model()
    m3.fit(x[:split], y[:split], batch_size=BATCH, epochs=1, verbose=0, sample_weight=w[:split],
           shuffle=False)
    for u, v in zip(m2.get_weights(), m3.get_weights()):
        assert_bitwise(u, v)
    assert h2.history["val_loss"][-1] == m3.evaluate(x[split:], y[split:], batch_size=BATCH,
                                                     sample_weight=w[split:], verbose=0)[0]


# ---- the fused path ------------------------------------------------------------------------
def weighted_fit(path, threads=None, backend="cpu", how="sample_weight"):
    x, y, w = data()
    m = model(backend, weighted_metrics=["accuracy"])
    m.engine.force_python = path == "op by op"
    kwargs = {"sample_weight": w} if how == "sample_weight" else \
        {"class_weight": {0: 0.25, 1: 1.5, 2: 3.0}}
    before = pynn.get_num_threads()
    if threads:
        pynn.set_num_threads(threads)
    try:
        h = m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, **kwargs,
                  callbacks=[EveryBatch()] if path == "step by step" else [])
    finally:
        pynn.set_num_threads(before)
    return m.get_weights(), h.history


@pytest.mark.parametrize("how", ["sample_weight", "class_weight"])
def test_a_weighted_fit_is_one_c_call_per_epoch_and_the_same_bits_on_every_path(how, c_calls):
    runs = {}
    for path, calls, threads in [("whole epoch", [STEPS] * EPOCHS, 2),
                                 ("step by step", [1] * STEPS * EPOCHS, 2),
                                 ("op by op", [], 2), ("one thread", [STEPS] * EPOCHS, 1)]:
        c_calls.clear()
        runs[path] = weighted_fit("whole epoch" if path == "one thread" else path, threads,
                                  how=how)
        assert c_calls == calls, path
    weights, history = runs["whole epoch"]
    for path, (other, other_history) in runs.items():
        for a, b in zip(other, weights):
            assert_bitwise(a, b, err_msg=path)
        assert other_history == history, path


def test_cpu_numpy_and_cuda_agree_on_a_weighted_fit():
    cpu, hc = weighted_fit("whole epoch")
    ref, hr = weighted_fit("whole epoch", backend="numpy")
    for a, b in zip(cpu, ref):
        assert_close(a, b, rtol=RTOL_SUMS)
    for key in hc:
        assert_close(np.array(hc[key]), np.array(hr[key]), rtol=RTOL_SUMS, err_msg=key)


def test_cuda_weighted_fit_agrees_with_numpy():
    pytest.importorskip("numba")
    x, y, w = data()
    runs = {}
    for backend in ("cuda", "numpy"):
        m = model(backend)
        m.fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0, sample_weight=w[:16])
        runs[backend] = m.get_weights()
    for a, b in zip(runs["cuda"], runs["numpy"]):
        assert_close(a, b, rtol=RTOL_SUMS)


# ---- refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,words", [
    (dict(sample_weight=np.ones(ROWS - 1)), "sample_weight"),
    (dict(sample_weight=np.ones((ROWS, 2))), "sample_weight"),
    (dict(sample_weight=-np.ones(ROWS)), "sample_weight"),
    (dict(sample_weight=np.full(ROWS, np.nan)), "sample_weight"),
    (dict(class_weight={3: 1.0}), "class_weight.*3"),
    (dict(class_weight={"a": 1.0}), "class_weight.*'a'"),
    (dict(class_weight={0: -1.0}), "class_weight"),
    (dict(class_weight={0: 1.0}, sample_weight=np.ones(ROWS)), "class_weight and sample_weight"),
    (dict(validation_data=(np.ones((4, 5)), np.zeros(4, int), np.ones(3))),
     "val_sample_weight"),
])
def test_bad_weights_are_refused_before_anything_changes(kwargs, words):
    x, y, _ = data()
    m = model()
    before = m.get_weights()
    with pytest.raises((ValueError, TypeError), match=words):
        m.fit(x, y, verbose=0, **kwargs)
    for a, b in zip(before, m.get_weights()):
        assert_bitwise(a, b)
    assert m.optimizer.iterations == 0
    with pytest.raises(TypeError, match="class_weight"):
        m.fit(x, y, verbose=0, class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="sample_weight"):
        m.evaluate(x, y, verbose=0, sample_weight=np.ones(3))


# ---- several outputs ----------------------------------------------------------------------
def two_outputs():
    pynn.utils.set_random_seed(6)
    inp = pynn.Input((5,))
    h = L.Dense(8, activation="tanh")(inp)
    a = L.Dense(CLASSES, activation="softmax", name="a")(h)
    b = L.Dense(1, name="b")(h)
    m = pynn.Model(inp, [a, b])
    m.compile(optimizer="sgd", loss={"a": "sparse_categorical_crossentropy", "b": "mse"},
              loss_weights={"a": 1.0, "b": 0.5})
    return m


def test_per_output_sample_weights_as_keras_takes_them():
    """A dict or list gives each output its own weights; one array weighs every output
    (Keras repeats it); an output left out of a dict weighs its samples 1."""
    x, y, w = data()
    yb = x[:, :1] * 2.0
    wb = np.linspace(0.0, 2.0, ROWS).astype(np.float32)
    m = two_outputs()
    pa, pb = m.predict(x, verbose=0)
    la, lb = softmax_ce(pa, y), ((pb.astype(np.float64) - yb) ** 2)[:, 0]

    def expected(wa, wb_):
        a, b = (wa * la).sum() / ROWS, (wb_ * lb).sum() / ROWS
        return {"loss": a + 0.5 * b, "a_loss": a, "b_loss": b}

    ones = np.ones(ROWS)
    for given, (wa, wb_) in [({"a": w, "b": wb}, (w, wb)), ([w, wb], (w, wb)), (w, (w, w)),
                             ({"b": wb}, (ones, wb))]:
        logs = m.evaluate(x, {"a": y, "b": yb}, sample_weight=given, batch_size=ROWS,
                          verbose=0, return_dict=True)
        for key, value in expected(wa, wb_).items():
            assert_close(logs[key], value, rtol=1e-5, err_msg=f"{key} {type(given)}")
    with pytest.raises(ValueError, match="class_weight"):
        m.fit(x, {"a": y, "b": yb}, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight\['b'\]"):
        m.fit(x, {"a": y, "b": yb}, sample_weight={"a": w, "b": np.ones(3)}, verbose=0)
