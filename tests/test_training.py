"""Training steps through the public API, checked against an independent float64
implementation (finite-difference gradients + Keras 3 update rules) and cpu against numpy."""
import zlib

import numpy as np
import pytest

import pynn
import independent as ind

HIDDEN = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"]

# (id, loss object factory, output activation, output width, kind, from_logits)
LOSSES = [
    ("mse", lambda: pynn.losses.MeanSquaredError(), "linear", 3, "mse", False),
    ("mse_tanh", lambda: "mse", "tanh", 2, "mse", False),
    ("bce_sigmoid", lambda: "binary_crossentropy", "sigmoid", 1, "bce", False),
    ("bce_multilabel", lambda: pynn.losses.BinaryCrossentropy(), "sigmoid", 3, "bce", False),
    ("bce_logits", lambda: pynn.losses.BinaryCrossentropy(from_logits=True), "linear", 2, "bce", True),
    ("cce_softmax", lambda: "categorical_crossentropy", "softmax", 4, "cce", False),
    ("cce_logits", lambda: pynn.losses.CategoricalCrossentropy(from_logits=True), "linear", 4, "cce", True),
    ("scce_softmax", lambda: "sparse_categorical_crossentropy", "softmax", 4, "scce", False),
    ("scce_logits", lambda: pynn.losses.SparseCategoricalCrossentropy(from_logits=True), "linear", 3,
     "scce", True),
]

OPTIMIZERS = [
    ("sgd", lambda: pynn.optimizers.SGD(learning_rate=0.1), dict(kind="sgd", lr=0.1)),
    ("sgd_momentum", lambda: pynn.optimizers.SGD(0.1, momentum=0.9),
     dict(kind="sgd", lr=0.1, momentum=0.9)),
    ("sgd_nesterov", lambda: pynn.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
     dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True)),
    ("adam", lambda: pynn.optimizers.Adam(learning_rate=0.01), dict(kind="adam", lr=0.01)),
    ("rmsprop", lambda: pynn.optimizers.RMSprop(learning_rate=0.01), dict(kind="rmsprop", lr=0.01)),
    ("rmsprop_momentum", lambda: pynn.optimizers.RMSprop(0.01, momentum=0.5),
     dict(kind="rmsprop", lr=0.01, momentum=0.5)),
]


def make_problem(seed, out_dim, kind):
    rng = np.random.default_rng(seed)
    n, d, h = 6, 4, 5
    x = rng.normal(size=(n, d))
    weights = [rng.normal(0, 0.7, size=(d, h)), rng.normal(0, 0.3, size=(h,)),
               rng.normal(0, 0.7, size=(h, out_dim)), rng.normal(0, 0.3, size=(out_dim,))]
    if kind == "mse":
        y = rng.normal(size=(n, out_dim))
    elif kind == "bce":
        y = (rng.random(size=(n, out_dim)) > 0.5).astype(np.float64)
    elif kind == "cce":
        y = np.eye(out_dim)[rng.integers(0, out_dim, size=n)]
    else:
        y = rng.integers(0, out_dim, size=n)
    return x, y, [w.astype(np.float32).astype(np.float64) for w in weights]


def pynn_steps(backend, hidden, out_act, out_dim, loss, optimizer, x, y, weights, steps):
    model = pynn.Sequential([pynn.layers.Input((x.shape[1],)),
                             pynn.layers.Dense(5, activation=hidden),
                             pynn.layers.Dense(out_dim, activation=out_act)])
    model.compile(optimizer=optimizer, loss=loss, backend=backend)
    model.set_weights([w.astype(np.float32) for w in weights])
    losses = [model.train_on_batch(x, y) for _ in range(steps)]
    return model.get_weights(), losses


def reference_steps(hidden, out_act, kind, from_logits, opt_kwargs, x, y, weights, steps):
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


def assert_update_matches(w0, w_pynn, w_ref, grads, opt_kind, label):
    """Compare the weight *changes*: float32 arithmetic leaves a relative error of about
    1e-5 in each gradient, so the change must agree to 1e-3 of the largest change.
    Adam and RMSprop divide each gradient by its own magnitude (a sign-like first step):
    where the gradient is below 1e-4 of the largest one its float32 value carries no
    reliable sign, so those few entries are compared loosely (bounded by the step)."""
    for i, (a, p, r) in enumerate(zip(w0, w_pynn, w_ref)):
        d_pynn, d_ref = p.astype(np.float64) - a, r - a
        scale = np.abs(d_ref).max() + 1e-12
        err = np.abs(d_pynn - d_ref)
        if opt_kind in ("adam", "rmsprop"):
            g = np.abs(np.stack([gr[i] for gr in grads])).max(axis=0)
            reliable = g > 1e-4 * max(np.abs(gr[i]).max() for gr in grads)
            assert np.all(err[reliable] <= 1e-3 * scale + 1e-7), f"{label} weight {i}"
            assert np.all(err <= 4 * scale + 1e-7), f"{label} weight {i}"
        else:
            assert np.all(err <= 1e-3 * scale + 1e-7), \
                f"{label} weight {i}: max error {err.max():.3g} vs largest change {scale:.3g}"


@pytest.mark.parametrize("opt_id,opt_factory,opt_kwargs", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
@pytest.mark.parametrize("loss_id,loss_factory,out_act,out_dim,kind,from_logits", LOSSES,
                         ids=[l[0] for l in LOSSES])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_two_steps_match_independent_backprop(hidden, loss_id, loss_factory, out_act, out_dim, kind,
                                              from_logits, opt_id, opt_factory, opt_kwargs):
    seed = zlib.crc32(f"{hidden}/{loss_id}/{opt_id}".encode())
    x, y, w0 = make_problem(seed, out_dim, kind)
    steps = 2
    w_ref, loss_ref, grads = reference_steps(hidden, out_act, kind, from_logits, opt_kwargs,
                                             x, y, w0, steps)
    results = {}
    for backend in ("cpu", "numpy"):
        w_pynn, loss_pynn = pynn_steps(backend, hidden, out_act, out_dim, loss_factory(),
                                       opt_factory(), x, y, w0, steps)
        label = f"{backend} {hidden}/{loss_id}/{opt_id}"
        np.testing.assert_allclose(loss_pynn, loss_ref, rtol=1e-4, atol=1e-6, err_msg=label)
        assert_update_matches(w0, w_pynn, w_ref, grads, opt_kwargs["kind"], label)
        results[backend] = (w_pynn, loss_pynn)
    # The C core and the NumPy reference agree far more closely than either does with
    # the finite-difference reference: only float32 rounding differs.
    for a, b in zip(results["cpu"][0], results["numpy"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(results["cpu"][1], results["numpy"][1], rtol=1e-5, atol=1e-7)


def test_activation_layer_matches_dense_activation():
    x, y, w0 = make_problem(1, 4, "scce")
    a = pynn.Sequential([pynn.layers.Input((4,)), pynn.layers.Dense(5, activation="tanh"),
                         pynn.layers.Dense(4), pynn.layers.Activation("softmax")])
    b = pynn.Sequential([pynn.layers.Input((4,)), pynn.layers.Dense(5, activation="tanh"),
                         pynn.layers.Dense(4, activation="softmax")])
    for m in (a, b):
        m.compile(optimizer=pynn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        m.set_weights([w.astype(np.float32) for w in w0])
        m.train_on_batch(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
