"""Engineer S (issue #16): Embedding's sparse update under plain SGD.

With plain SGD (no momentum, weight decay, clipping or EMA) the optimizer op skips the
Embedding table's segment (PYNN_SEGMENT_SPARSE) and an OP_EMBEDDING_SGD after it updates
only the rows seen, at the optimizer's learning rate of the step, then clears them.  The
numbers are the dense update's, bit for bit (w - lr * 0 = w); every other optimizer keeps
the dense update (Keras's numbers)."""
import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn import optimizers as O
from pynn.backend import reference as ref
from pynn.models import plan as plan_module

V, D, T = 30, 4, 5


def _model(seed=3):
    pynn.utils.set_random_seed(seed)
    ids = pynn.Input((T,))
    h = L.GlobalAveragePooling1D()(L.Embedding(V, D)(ids))
    return pynn.Model(ids, L.Dense(1)(h))


def _data(n=40, high=V // 2):
    rng = np.random.default_rng(0)      # ids below V / 2: the upper rows are never seen
    return rng.integers(0, high, size=(n, T)).astype(np.float32), \
        rng.normal(size=(n, 1)).astype(np.float32)


def _ops(model):
    return [op.name for op in model.engine._compile("train").ops]


def _host(backend, arr):
    return arr if isinstance(arr, np.ndarray) else pynn.backend.get(backend).to_host(arr)


def _dense_only(monkeypatch):
    monkeypatch.setattr(plan_module.PlanBuilder, "sparse_update", lambda self, v: False)


SPARSE = {"sgd": lambda: O.SGD(0.1),
          "sgd_schedule": lambda: O.SGD(O.schedules.ExponentialDecay(0.2, 2, 0.5)),
          "sgd_cosine": lambda: O.SGD(O.schedules.CosineDecay(0.2, 5)),
          "sgd_nesterov_no_momentum": lambda: O.SGD(0.1, nesterov=True)}
DENSE = {"adam": lambda: O.Adam(0.01), "sgd_momentum": lambda: O.SGD(0.1, momentum=0.9),
         "sgd_weight_decay": lambda: O.SGD(0.1, weight_decay=0.01),
         "sgd_clipnorm": lambda: O.SGD(0.1, clipnorm=1.0),
         "sgd_global_clipnorm": lambda: O.SGD(0.1, global_clipnorm=1.0),
         "sgd_ema": lambda: O.SGD(0.1, use_ema=True), "rmsprop": lambda: O.RMSprop(0.01)}


@pytest.mark.parametrize("name", sorted(SPARSE) + sorted(DENSE))
def test_the_plan_takes_the_sparse_path_for_plain_sgd_only(name):
    model = _model()
    model.compile(optimizer=(SPARSE.get(name) or DENSE[name])(), loss="mse")
    ops = _ops(model)
    plan = model.engine._compile("train")
    flags = plan.ops[plan.optimizer_op].ints[4::3]
    if name in SPARSE:
        assert "embedding_sgd" in ops and "embedding_grad_clear" not in ops
        assert ops.index("embedding_sgd") > ops.index("optimizer")
        assert [bool(f & ref.SEGMENT_SPARSE) for f in flags] == [True, False, False]
    else:
        assert "embedding_grad_clear" in ops and "embedding_sgd" not in ops
        assert not any(f & ref.SEGMENT_SPARSE for f in flags)


def test_a_shared_embedding_keeps_the_dense_path():
    pynn.utils.set_random_seed(1)
    a, b = pynn.Input((T,)), pynn.Input((T,))
    emb = L.Embedding(V, D)
    h = L.Add()([L.GlobalAveragePooling1D()(emb(a)), L.GlobalAveragePooling1D()(emb(b))])
    model = pynn.Model([a, b], L.Dense(1)(h))
    model.compile(optimizer=O.SGD(0.1), loss="mse")
    assert "embedding_sgd" not in _ops(model)
    x, y = _data()
    model.fit([x, x[::-1].copy()], y, epochs=1, batch_size=8, verbose=0)


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_rows_not_seen_are_not_even_read(backend):
    """A NaN in the gradient of a row no id names: the sparse update never reads it (the
    dense one would write NaN into the table)."""
    model = _model()
    model.compile(optimizer=O.SGD(0.1), loss="mse", backend=backend)
    x, y = _data(8)
    model.train_on_batch(x, y)
    table = model.layers[1].embeddings
    start = dict((id(v), s) for v, s in model.engine.store.layout.trainable_offsets)[id(table)]
    row = V - 1                                    # ids < V / 2: never seen
    store = model.engine.store
    grads = _host(backend, store.grads).copy()
    grads[start + row * D:start + (row + 1) * D] = np.nan
    if isinstance(store.grads, np.ndarray):
        store.grads[...] = grads
    else:
        store.grads.copy_to_device(grads)
    before = table.numpy().copy()
    model.train_on_batch(x, y)
    after = table.numpy()
    assert np.isfinite(after).all()
    np.testing.assert_array_equal(after[row], before[row])
    assert not np.array_equal(after[:V // 2], before[:V // 2])


def _fit(monkeypatch, backend, make_opt, dense, force_python=False, threads=None, epochs=2):
    with monkeypatch.context() as mp:
        if dense:
            _dense_only(mp)
        if threads is not None:
            pynn.set_num_threads(threads)
        model = _model()
        model.compile(optimizer=make_opt(), loss="mse", backend=backend)
        model.engine.force_python = force_python
        assert ("embedding_sgd" in _ops(model)) != dense
        x, y = _data()
        model.fit(x, y, epochs=epochs, batch_size=16, shuffle=True, verbose=0)
        return model.get_weights()


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
@pytest.mark.parametrize("name", sorted(SPARSE))
def test_sparse_equals_the_dense_update_bitwise(monkeypatch, backend, name):
    sparse = _fit(monkeypatch, backend, SPARSE[name], dense=False)
    dense = _fit(monkeypatch, backend, SPARSE[name], dense=True)
    for a, b in zip(sparse, dense):
        np.testing.assert_array_equal(a, b)


def test_a_learning_rate_callback_reaches_the_sparse_update(monkeypatch):
    def run(dense):
        with monkeypatch.context() as mp:
            if dense:
                _dense_only(mp)
            model = _model()
            model.compile(optimizer=O.SGD(0.1), loss="mse")
            x, y = _data()
            cb = pynn.callbacks.LearningRateScheduler(lambda epoch, lr: 0.3 / (epoch + 1))
            model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[cb])
            return model.get_weights()
    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


def test_whole_epoch_in_c_matches_step_by_step_and_threads_bitwise(monkeypatch, threads):
    make = SPARSE["sgd_schedule"]
    base = _fit(monkeypatch, "cpu", make, dense=False, threads=1)
    for got in (_fit(monkeypatch, "cpu", make, dense=False, force_python=True, threads=1),
                _fit(monkeypatch, "cpu", make, dense=False, threads=2)):
        for a, b in zip(got, base):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_momentum_and_adam_still_move_rows_not_seen(backend):
    """Keras's dense semantics: a row seen at step 1 only moves at step 2 too (momentum
    m2 = 0.9 m1; Adam's moments)."""
    for make in (DENSE["sgd_momentum"], DENSE["adam"]):
        model = _model()
        model.compile(optimizer=make(), loss="mse", backend=backend)
        table = model.layers[1].embeddings
        w0 = table.numpy().copy()
        y = np.ones((2, 1), np.float32)
        model.train_on_batch(np.array([[1, 2, 3, 1, 2]] * 2, np.float32), y)
        w1 = table.numpy().copy()
        model.train_on_batch(np.array([[7, 8, 9, 7, 8]] * 2, np.float32), y)
        w2 = table.numpy()
        assert not np.array_equal(w2[1:4], w1[1:4])
        if make is DENSE["sgd_momentum"]:
            m1 = w1[1:4].astype(np.float64) - w0[1:4]
            np.testing.assert_allclose(w2[1:4] - w1[1:4], 0.9 * m1, rtol=1e-4, atol=1e-7)
        np.testing.assert_array_equal(w2[20:], w0[20:])    # never seen, zero moments


def test_distributed_plans_keep_the_dense_update():
    """The hooked plan sums every rank's gradient: the table's rows are other ranks' too,
    not in this rank's keys, so the dense update and the whole clear (the union would need
    the ids exchanged)."""
    model = _model()
    model.compile(optimizer=O.SGD(0.1), loss="mse")
    plan = model.engine._compile("train")
    starts = {id(v): s for v, s in model.engine.store.layout.trainable_offsets}
    plan_module.insert_grad_hooks(plan, starts, 64)
    names = [op.name for op in plan.ops]
    assert "embedding_sgd" not in names and "grad_hook" in names
    clears = [op for op in plan.ops if op.name == "embedding_grad_clear"]
    assert len(clears) == 1 and clears[0].ints[2] == 1
    opt = plan.ops[plan.optimizer_op]
    assert not any(f & ref.SEGMENT_SPARSE for f in opt.ints[4::3])


# ---- kernels: every backend against the reference -------------------------------------------

def test_the_c_predicate_is_the_references():
    from pynn import _core, ids
    rng = np.random.default_rng(4)
    for _ in range(200):
        kind = ["sgd", "adam", "rmsprop"][rng.integers(3)]
        hyper = {k: 0.0 for k in ids.HYPER + ids.OPTIONS}
        hyper["learning_rate"] = 0.1
        for k in ("momentum", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
            if rng.random() < 0.2:
                hyper[k] = [1e-46, 0.5][rng.integers(2)]   # 1e-46: 0 as float32
        ema = bool(rng.random() < 0.2)
        assert _core.optimizer_sparse_ok(
            ids.OPTIMIZERS[kind], [hyper[k] for k in ids.HYPER],
            [hyper[k] for k in ids.OPTIONS], ema) == ref.sparse_sgd_ok(kind, hyper, ema), \
            (kind, hyper, ema)


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_embedding_sgd_and_the_skipped_segment_kernels(backend):
    be = pynn.backend.get(backend)
    rng = np.random.default_rng(7)
    n, v, d = 11, 13, 3
    ids_ = rng.integers(0, 6, size=n).astype(np.float32)
    dy = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(v, d)).astype(np.float32)
    seen, grad = ref.embedding_backward(ids_, dy, v)
    g = np.zeros((v, d), np.float32)
    g[seen] = grad
    want = w.copy()
    ref.sgd_update(want, None, g, 0.25, 0.0, False)
    g[9] = np.nan                                          # not seen: never read
    table, dtable = be.from_host(w), be.from_host(np.zeros((v, d), np.float32))
    work = be.from_host(np.zeros(2 * n, np.int64))
    be.embedding_backward(be.from_host(ids_), be.from_host(dy), dtable, work)
    poisoned = be.to_host(dtable).copy()
    poisoned[9] = np.nan
    dtable = be.from_host(poisoned)
    be.embedding_sgd(table, dtable, work, n, 0.25)
    np.testing.assert_array_equal(be.to_host(table), want)
    left = be.to_host(dtable)
    assert np.isnan(left[9]).all() and (np.delete(left, 9, axis=0) == 0).all()
    be.embedding_sgd(table, dtable, work, n, None)         # the dense step's: clear only
    np.testing.assert_array_equal(be.to_host(table), want)

    # the optimizer skips a SEGMENT_SPARSE segment for plain SGD only
    hyper = {k: 0.0 for k in pynn.ids.HYPER}
    hyper["learning_rate"] = 0.5
    flat_w, flat_g = np.ones(10, np.float32), np.full(10, 2.0, np.float32)
    flat_g[4:] = np.nan
    segments = [0, 4, ref.SEGMENT_DECAY, 4, 6, ref.SEGMENT_SPARSE | ref.SEGMENT_DECAY]
    wd, gd = be.from_host(flat_w), be.from_host(flat_g)
    be.optimizer_step("sgd", wd, [], gd, 1, hyper, segments)
    np.testing.assert_array_equal(be.to_host(wd), [0.0] * 4 + [1.0] * 6)
    hyper["momentum"] = 0.5                                 # not plain SGD: dense
    m = be.from_host(np.zeros(10, np.float32))
    be.optimizer_step("sgd", wd, [m], gd, 1, hyper, segments)
    assert np.isnan(be.to_host(wd)[4:]).all()
