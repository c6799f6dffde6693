"""The fused training path (csrc/mlp.c: a whole epoch in one C call) against the
per-layer path: bitwise-identical weights, the same History, no allocation per step."""
import tracemalloc

import numpy as np
import pytest

import pynn
from pynn import layers


def make_model(fused, hidden_act, out_units, out_act, loss, optimizer, metrics, use_bias=True):
    pynn.utils.set_random_seed(11)
    model = pynn.Sequential([layers.Input((9,)),
                             layers.Dense(13, activation=hidden_act, use_bias=use_bias),
                             layers.Dense(7, activation="leaky_relu"),
                             layers.Dense(out_units, activation=out_act)])
    model.compile(optimizer=optimizer(), loss=loss, metrics=metrics)
    model.use_fused_path = fused
    return model


def data(kind, out_units, n=103):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 9)).astype(np.float32)
    if kind == "sparse":
        y = rng.integers(0, out_units, size=n)
    elif kind == "onehot":
        y = np.eye(out_units, dtype=np.float32)[rng.integers(0, out_units, size=n)]
    elif kind == "binary":
        y = (rng.random(size=(n, out_units)) > 0.5).astype(np.float32)
    else:
        y = rng.normal(size=(n, out_units)).astype(np.float32)
    return x, y


CASES = [
    ("relu", 4, "softmax", "sparse_categorical_crossentropy", "sparse", ["accuracy"]),
    ("tanh", 4, "softmax", "categorical_crossentropy", "onehot", ["accuracy", "mae"]),
    ("gelu", 3, "sigmoid", "binary_crossentropy", "binary", ["accuracy"]),
    ("sigmoid", 2, "linear", "mse", "real", ["mae"]),
    ("softmax", 5, "linear", pynn.losses.SparseCategoricalCrossentropy(from_logits=True), "sparse",
     ["sparse_categorical_accuracy"]),
]
OPTIMIZERS = [
    lambda: pynn.optimizers.SGD(0.05),
    lambda: pynn.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: pynn.optimizers.Adam(0.01),
    lambda: pynn.optimizers.RMSprop(0.01, momentum=0.3),
]


@pytest.mark.parametrize("opt_index", range(len(OPTIMIZERS)))
@pytest.mark.parametrize("hidden,out_units,out_act,loss,kind,metrics", CASES)
def test_fit_fused_equals_per_layer_bitwise(hidden, out_units, out_act, loss, kind, metrics, opt_index):
    x, y = data(kind, out_units)
    results = []
    for fused in (True, False):
        model = make_model(fused, hidden, out_units, out_act, loss, OPTIMIZERS[opt_index], metrics)
        pynn.utils.set_random_seed(5)       # the same shuffles for both
        hist = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.2, verbose=0)
        results.append((model.get_weights(), hist.history, model.optimizer.iterations))
    (w_f, h_f, it_f), (w_p, h_p, it_p) = results
    for a, b in zip(w_f, w_p):
        assert a.tobytes() == b.tobytes()
    assert it_f == it_p == 3 * 6
    assert h_f.keys() == h_p.keys()
    for key in h_f:
        np.testing.assert_allclose(h_f[key], h_p[key], rtol=1e-6, err_msg=key)


def test_train_on_batch_fused_equals_per_layer():
    x, y = data("sparse", 4, n=32)
    out = []
    for fused in (True, False):
        model = make_model(fused, "relu", 4, "softmax", "sparse_categorical_crossentropy",
                           OPTIMIZERS[2], ["accuracy"], use_bias=False)
        losses = [model.train_on_batch(x, y) for _ in range(4)]
        out.append((model.get_weights(), losses))
    for a, b in zip(out[0][0], out[1][0]):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_paths_can_take_turns():
    """Weights, gradients and optimizer state are shared, so switching path mid-training
    changes nothing."""
    x, y = data("sparse", 4)
    a = make_model(True, "relu", 4, "softmax", "sparse_categorical_crossentropy", OPTIMIZERS[2], [])
    b = make_model(True, "relu", 4, "softmax", "sparse_categorical_crossentropy", OPTIMIZERS[2], [])
    for i in range(4):
        b.use_fused_path = i % 2 == 0
        a.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
        b.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert wa.tobytes() == wb.tobytes()


def test_batch_callbacks_use_the_per_layer_path_and_see_every_batch():
    seen = []

    class Count(pynn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, logs["loss"]))

    x, y = data("sparse", 4)
    m1 = make_model(True, "relu", 4, "softmax", "sparse_categorical_crossentropy", OPTIMIZERS[0], [])
    m2 = make_model(True, "relu", 4, "softmax", "sparse_categorical_crossentropy", OPTIMIZERS[0], [])
    m1.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0, callbacks=[Count()])
    m2.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
    assert [b for b, _ in seen] == list(range(6))
    for wa, wb in zip(m1.get_weights(), m2.get_weights()):
        assert wa.tobytes() == wb.tobytes()


def test_fused_epoch_allocates_nothing_per_step():
    """After the first epoch (which creates the workspace), an epoch of steps runs in
    the preallocated arrays: Python-side allocations do not grow with the steps.  (The
    C side is checked by tests/c/test_mlp.c, which counts malloc calls.)"""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=4000)
    model = pynn.Sequential([layers.Input((64,)), layers.Dense(32, activation="relu"),
                             layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)          # first epoch: workspaces
    assert len(model._trainers) == 1
    trainer = next(iter(model._trainers.values()))
    order = rng.permutation(4000)
    before = [w.copy() for w in model.get_weights()]
    tracemalloc.start()
    pynn.fused.run(model, trainer, x, y, order, 4000, 0, 125)   # a whole epoch, 125 steps
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # a single per-step buffer of the smallest kind (the 32 x 10 float32 loss gradient,
    # 1280 bytes) would pass this bound after 8 steps
    assert peak < 10_000, peak
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert len(model._trainers) == 1


@pytest.mark.parametrize("problem", ["nan_x", "inf_x", "label_high", "label_negative", "nan_target"])
def test_clean_batch_with_bad_values_is_refused_by_the_fused_step(problem):
    """A float32 C-contiguous batch skips the Python value checks; the fused C step checks
    the values before it changes anything, and the refusal carries the general message."""
    sparse = problem != "nan_target"
    x, y = data("sparse" if sparse else "onehot", 4, n=16)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = y.astype(np.int64) if sparse else y.astype(np.float32)
    if problem == "nan_x":
        x[3, 2] = np.nan
    elif problem == "inf_x":
        x[15, 0] = -np.inf
    elif problem == "label_high":
        y[7] = 4
    elif problem == "label_negative":
        y[0] = -1
    else:
        y[2, 1] = np.nan
    loss = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
    model = make_model(True, "relu", 4, "softmax", loss, OPTIMIZERS[2], ["accuracy"])
    good_x, good_y = data("sparse" if sparse else "onehot", 4, n=16)
    model.train_on_batch(good_x.astype(np.float32),
                         good_y.astype(np.int64) if sparse else good_y.astype(np.float32))
    before = [w.copy() for w in model.get_weights()]
    iterations = model.optimizer.iterations
    words = {"nan_x": "NaN", "inf_x": "infinite", "label_high": "received label 4",
             "label_negative": "received label -1", "nan_target": "NaN"}[problem]
    with pytest.raises(ValueError, match=words):
        model.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), before):
        assert a.tobytes() == b.tobytes()
    assert model.optimizer.iterations == iterations
