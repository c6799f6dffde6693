"""Regularizers, constraints, ActivityRegularization and model.losses (engineer F, #16).

  * the objects: Keras 3's formulas, defaults, names, configs, get/serialize/deserialize;
  * the kernels: pynn_penalty and pynn_constraint on cpu and cuda (simulator) against the
    NumPy reference on awkward sizes, the penalty's gradient against torch autograd;
  * training: one SGD step of an L1/L2/L1L2-regularised Conv2D + Dense model (weight and
    activity penalties, ActivityRegularization) on cpu, numpy and cuda against torch
    autograd with the penalties added to the loss by hand, the loss value included;
    constraints after a step against their NumPy formulas; whole-epoch fit against
    step-by-step training and 1 against 2 threads, bitwise;
  * model.losses / layer.losses as Keras lists them (Keras's docstring example);
  * saving: get_config round trips, pynn's format and .keras files, and Keras itself
    (PYNN_KERAS_PYTHON, as tests/test_keras_files.py) reading pynn's files and pynn reading
    Keras's, the penalties included;
  * bad arguments, refused naming the argument and the value, the model left unchanged.
"""
import json

import numpy as np
import pytest

import pynn
from pynn import backend as backends
from pynn import constraints as C
from pynn import layers as L
from pynn import regularizers as R
from pynn.backend import reference as ref

from conftest import RTOL_ELEMENTWISE, assert_bitwise, assert_close, assert_step_close

torch = pytest.importorskip("torch")


# ---- the objects -----------------------------------------------------------------------------

def test_regularizer_formulas_defaults_and_configs_are_keras():
    x = np.array([[1.0, -2.0], [0.0, 3.0]], np.float32)
    assert_close(R.L1()(x), 0.01 * 6.0)
    assert_close(R.L2()(x), 0.01 * 14.0)
    assert_close(R.L1L2(l1=0.1, l2=0.2)(x), 0.1 * 6 + 0.2 * 14)
    assert float(R.L1L2()(x)) == 0.0
    assert R.L1().get_config() == {"l1": float(np.float32(0.01))}   # Keras: 0.009999999776482582
    assert R.L2().get_config() == {"l2": 0.01}
    assert R.L1L2(l2=0.1).get_config() == {"l1": 0.0, "l2": 0.1}
    assert R.L2(None).get_config() == {"l2": 0.01}
    # names and aliases (Keras's ALL_OBJECTS_DICT), and the documented "l1_l2"
    for name, cls in (("l1", R.L1), ("L1", R.L1), ("l2", R.L2), ("L2", R.L2), ("l1l2", R.L1L2),
                      ("L1L2", R.L1L2), ("orthogonal_regularizer", R.OrthogonalRegularizer)):
        assert type(R.get(name)) is cls, name
    assert R.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}
    assert R.l2 is R.L2 and R.l1_l2 is R.L1L2
    assert type(R.get(R.L2)) is R.L2 and R.get(None) is None
    reg = R.L2(0.3)
    assert R.get(reg) is reg
    assert R.serialize(reg) == {"module": "keras.regularizers", "class_name": "L2",
                                "config": {"l2": 0.3}, "registered_name": None}
    again = R.deserialize(json.loads(json.dumps(R.serialize(reg))))
    assert type(again) is R.L2 and again.l2 == 0.3
    fn = lambda w: 0.5 * np.sum(w)      # noqa: E731  any callable, as Keras
    assert R.get(fn) is fn
    # OrthogonalRegularizer: orthogonal rows cost nothing, equal rows the most
    assert float(R.OrthogonalRegularizer(0.1)(np.eye(3, dtype=np.float32))) == 0.0
    assert_close(R.OrthogonalRegularizer(0.1)(np.ones((3, 2), np.float32)), 0.1 * 0.5 * 6 / 3)


def test_constraint_formulas_are_keras():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32) * 2
    n = np.sqrt((w.astype(np.float64) ** 2).sum(0, keepdims=True))
    eps = 1e-7
    assert_close(C.MaxNorm(1.5)(w), w * np.clip(n, 0, 1.5) / (eps + n))
    assert_close(C.MinMaxNorm(0.5, 1.0, rate=0.3)(w),
                 w * (0.3 * np.clip(n, 0.5, 1.0) + 0.7 * n) / (eps + n))
    assert_close(C.UnitNorm()(w), w / (eps + n))
    assert_close(C.NonNeg()(w), np.maximum(w, 0))
    k = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    nk = np.sqrt((k.astype(np.float64) ** 2).sum((0, 1, 2), keepdims=True))
    assert_close(C.UnitNorm(axis=[0, 1, 2])(k), k / (eps + nk))
    assert C.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert C.MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0, "rate": 1.0,
                                           "axis": 0}
    for name, cls in (("max_norm", C.MaxNorm), ("MaxNorm", C.MaxNorm), ("non_neg", C.NonNeg),
                      ("unit_norm", C.UnitNorm), ("min_max_norm", C.MinMaxNorm)):
        assert type(C.get(name)) is cls, name
    entry = C.serialize(C.MaxNorm(3, [0, 1, 2]))
    assert entry == {"module": "keras.constraints", "class_name": "MaxNorm",
                     "config": {"max_value": 3, "axis": [0, 1, 2]}, "registered_name": None}
    assert C.deserialize(entry).get_config() == entry["config"]


# ---- the kernels -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 4097, 9001])
def test_penalty_kernel_matches_the_reference(kernel_backend, n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n).astype(np.float32)
    x[0] = 0.0                                           # sign(0) = 0
    be = kernel_backend
    for l1, l2, scale, accumulate in ((0.01, 0.0, 1.0, False), (0.0, 0.3, 0.25, True),
                                      (0.02, 0.05, 1.0, True)):
        start = rng.normal(size=n).astype(np.float32)
        d = be.from_host(start.copy())
        value = be.penalty(be.from_host(x), d, l1, l2, scale, accumulate)
        want, grad = ref.penalty(x, l1, l2, scale)
        assert_close(value, want, rtol=1e-12)
        assert_close(be.to_host(d), grad + start if accumulate else grad)
    assert be.penalty(be.from_host(x), None, 0.1, 0.1) == pytest.approx(ref.penalty(x, .1, .1)[0])


def test_penalty_gradient_matches_torch_autograd():
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    (0.03 * t.abs().sum() + 0.2 * (t * t).sum()).backward()
    _, grad = ref.penalty(x, 0.03, 0.2)
    assert_close(grad, t.grad.numpy())


@pytest.mark.parametrize("kind,shape,geometry,args", [
    ("max_norm", (5, 3), (1, 5, 3), (0.8, 0, 1)),
    ("min_max_norm", (2, 2, 3, 4), (1, 12, 4), (0.5, 1.1, 0.6)),
    ("unit_norm", (7,), (1, 7, 1), (0, 0, 1)),
    ("unit_norm", (3, 4), (3, 4, 1), (0, 0, 1)),
    ("non_neg", (4, 5), (1, 20, 1), (0, 0, 1)),
])
def test_constraint_kernel_matches_the_reference(kernel_backend, kind, shape, geometry, args):
    w = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    be = kernel_backend
    d = be.from_host(w.copy())
    be.constraint(d, *geometry, kind, *args)
    assert_close(be.to_host(d), ref.constraint(w, *geometry, kind, *args))


def test_constraint_reference_matches_the_keras_objects():
    w = np.random.default_rng(4).normal(size=(3, 3, 2, 5)).astype(np.float32)
    for obj in (C.MaxNorm(0.7, [0, 1, 2]), C.UnitNorm([0, 1, 2]),
                C.MinMaxNorm(0.2, 0.9, 0.5, [0, 1, 2]), C.NonNeg(), C.UnitNorm(-1)):
        kind, outer, red, inner, a, b, rate = C.plan_spec(obj, w.shape, "test")
        assert_close(ref.constraint(w, outer, red, inner, kind, a, b, rate), obj(w),
                     err_msg=repr(obj))


# ---- training against torch -----------------------------------------------------------------

LR = 0.1


def _reg_model():
    pynn.utils.set_random_seed(5)
    inputs = L.Input((5, 5, 2))
    conv = L.Conv2D(3, 3, activation="tanh", kernel_regularizer=R.L1(0.01),
                    bias_regularizer=R.L2(0.02), activity_regularizer=R.L2(0.01),
                    bias_initializer="random_normal")
    h = L.Flatten()(conv(inputs))
    dense = L.Dense(4, activation="relu", kernel_regularizer=R.L1L2(0.01, 0.02),
                    activity_regularizer=R.L1(0.03), bias_initializer="random_normal")
    act = L.ActivityRegularization(l1=0.02, l2=0.01)
    head = L.Dense(2, kernel_regularizer="l2")
    model = pynn.Model(inputs, head(act(dense(h))))
    return model, conv, dense, head


def _data():
    rng = np.random.default_rng(7)
    return (rng.normal(size=(4, 5, 5, 2)).astype(np.float32),
            rng.normal(size=(4, 2)).astype(np.float32))


def _torch_step(model, conv, dense, head, x, y):
    """(loss, weights after one SGD step) of the model in float64 torch, its penalties
    added to the loss by hand (Keras: weight penalties + activity penalties / batch)."""
    p = {id(v): torch.tensor(v.numpy().astype(np.float64), requires_grad=True)
         for v in model.trainable_weights}
    kc, bc = p[id(conv.kernel)], p[id(conv.bias)]
    kd, bd = p[id(dense.kernel)], p[id(dense.bias)]
    kh, bh = p[id(head.kernel)], p[id(head.bias)]
    xt = torch.tensor(x.astype(np.float64))
    n = xt.shape[0]
    # Conv2D: NHWC -> NCHW; Keras kernel (kh, kw, cin, cout) -> torch (cout, cin, kh, kw)
    z = torch.nn.functional.conv2d(xt.permute(0, 3, 1, 2), kc.permute(3, 2, 0, 1), bc)
    a1 = torch.tanh(z.permute(0, 2, 3, 1))
    a2 = torch.relu(a1.reshape(n, -1) @ kd + bd)
    out = a2 @ kh + bh
    loss = ((out - torch.tensor(y.astype(np.float64))) ** 2).mean()
    loss = loss + 0.01 * kc.abs().sum() + 0.02 * (bc ** 2).sum() \
        + 0.01 * kd.abs().sum() + 0.02 * (kd ** 2).sum() + 0.01 * (kh ** 2).sum() \
        + 0.01 * (a1 ** 2).sum() / n + 0.03 * a2.abs().sum() / n \
        + (0.02 * a2.abs().sum() + 0.01 * (a2 ** 2).sum()) / n
    loss.backward()
    return float(loss.detach()), [(p[id(v)] - LR * p[id(v)].grad).detach().numpy()
                         for v in model.trainable_weights]


def test_one_step_matches_torch_autograd_with_the_penalties(backend_name):
    model, conv, dense, head = _reg_model()
    x, y = _data()
    before = [v.numpy() for v in model.trainable_weights]
    want_loss, want = _torch_step(model, conv, dense, head, x, y)
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend=backend_name)
    loss = model.train_on_batch(x, y)
    if isinstance(loss, list):
        loss = loss[0]
    assert_close(loss, want_loss, rtol=RTOL_ELEMENTWISE, err_msg=f"{backend_name}: loss")
    assert_step_close(before, [v.numpy() for v in model.trainable_weights], want,
                      err_msg=f"{backend_name} vs torch")


def test_the_loss_is_the_data_loss_plus_model_losses(backend_name):
    model, conv, dense, head = _reg_model()
    x, y = _data()
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend=backend_name)
    total = model.evaluate(x, y, verbose=0, batch_size=4)
    penalties = model.losses                    # activity penalties of that forward + weights
    assert len(penalties) == 3 + 4 and all(np.ndim(p) == 0 for p in penalties)
    data = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    assert total > data
    assert_close(total, data + float(np.sum(np.asarray(penalties, np.float64))),
                 rtol=RTOL_ELEMENTWISE)
    # the weight penalties, as the regularizers compute them from the weights
    assert_close(penalties[-4], R.L1(0.01)(conv.kernel.numpy()))
    assert_close(penalties[-1], R.L2()(head.kernel.numpy()))


def test_whole_epoch_fit_equals_step_by_step_and_threads_do_not_change_bits():
    x = np.random.default_rng(8).normal(size=(12, 5, 5, 2)).astype(np.float32)
    y = np.random.default_rng(9).normal(size=(12, 2)).astype(np.float32)

    def trained(way, threads=None):
        if threads is not None:
            pynn.set_num_threads(threads)
        model, conv, dense, _ = _reg_model()
        conv.kernel.constraint = C.MaxNorm(0.4, [0, 1, 2])
        dense.bias.constraint = C.NonNeg()
        model.compile(optimizer=pynn.optimizers.Adam(0.05), loss="mse", backend="cpu")
        if way == "fit":
            h = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
            loss = h.history["loss"][0]
        else:
            losses = [model.train_on_batch(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
            loss = float(np.mean(losses))
        return [v.numpy() for v in model.weights], loss

    old = pynn.get_num_threads()
    try:
        fit, fit_loss = trained("fit", 1)
        steps, steps_loss = trained("steps", 1)
        two, two_loss = trained("fit", 2)
    finally:
        pynn.set_num_threads(old)
    for a, b, c in zip(fit, steps, two):
        assert_bitwise(a, b)
        assert_bitwise(a, c)
    assert fit_loss == two_loss
    assert_close(fit_loss, steps_loss, rtol=1e-12)


def _constraint_model(constrained):
    pynn.utils.set_random_seed(11)
    kw = dict(kernel_constraint=C.MaxNorm(0.3), bias_constraint=C.NonNeg()) if constrained \
        else {}
    kc = dict(kernel_constraint=C.UnitNorm(axis=[0, 1, 2]),
              bias_constraint=C.MinMaxNorm(0.1, 0.5, rate=0.7)) if constrained else {}
    conv = L.Conv2D(3, 3, bias_initializer="random_normal", **kc)
    dense = L.Dense(2, bias_initializer="random_normal", **kw)
    model = pynn.Sequential([L.Input((5, 5, 2)), conv, L.Flatten(), dense])
    return model, conv, dense


def test_constraints_apply_after_each_update(backend_name):
    x, y = _data()
    free, _, _ = _constraint_model(False)
    free.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend=backend_name)
    free.train_on_batch(x, y)
    model, conv, dense = _constraint_model(True)
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend=backend_name)
    model.train_on_batch(x, y)
    ck, cb, dk, db = (v.numpy() for v in free.weights)
    eps = np.float32(1e-7)
    n = np.sqrt((ck.astype(np.float64) ** 2).sum((0, 1, 2), keepdims=True))
    nb = np.sqrt((cb.astype(np.float64) ** 2).sum())
    nd = np.sqrt((dk.astype(np.float64) ** 2).sum(0, keepdims=True))
    expected = [ck / (eps + n), cb * (0.7 * np.clip(nb, 0.1, 0.5) + 0.3 * nb) / (eps + nb),
                dk * np.clip(nd, 0, 0.3) / (eps + nd), np.maximum(db, 0)]
    for v, e in zip(model.weights, expected):
        assert_close(v.numpy(), e, rtol=RTOL_ELEMENTWISE, err_msg=f"{backend_name}: {v.path}")
    assert (np.sqrt((model.layers[-1].kernel.numpy() ** 2).sum(0)) <= 0.3 + 1e-6).all()


def test_the_plan_places_the_ops():
    model, *_ = _reg_model()
    model.layers[1].kernel.constraint = C.NonNeg()
    model.compile(optimizer="sgd", loss="mse")
    plan = model.plan
    names = [op.name for op in plan.ops]
    # 4 weight penalties before the optimizer; 3 activity penalties forward and backward
    opt = names.index("optimizer")
    assert names.count("penalty") == 4 + 3 + 3
    assert [i for i, n in enumerate(names) if n == "penalty"][-4:] == list(range(opt - 4, opt))
    assert names[opt + 1:] == ["constraint"]
    assert plan.loss_names[1:] == [f"{model.layers[1].name}/activity_regularization",
                                   f"{model.layers[3].name}/activity_regularization",
                                   f"{model.layers[4].name}/activity_regularization",
                                   "regularization"]
    assert model.metrics_names == ["loss"] or "regularization" not in model.metrics_names


# ---- model.losses -----------------------------------------------------------------------------

def test_layer_losses_follow_the_keras_docstring_example():
    # keras/src/regularizers/regularizers.py: "ops.sum(layer.losses) == 5.25"
    layer = L.Dense(5, input_dim=5, kernel_initializer="ones", kernel_regularizer=R.L1(0.01),
                    activity_regularizer=R.L2(0.01))
    layer(np.ones((5, 5), np.float32) * 2.0)
    assert_close(np.sum(layer.losses), 5.25)
    # and a weight penalty alone, before any call
    dense = L.Dense(5, kernel_initializer="ones", kernel_regularizer=R.L2(0.5))
    dense.build((None, 5))
    assert_close(dense.losses, [12.5])
    frozen = L.Dense(5, kernel_initializer="ones", kernel_regularizer=R.L2(0.5), trainable=False)
    frozen.build((None, 5))
    assert frozen.losses == []                  # Keras: trainable weights only


def test_model_call_refreshes_the_activity_penalties():
    inner = pynn.Sequential([L.Input((3,)), L.Dense(2, activity_regularizer=R.L2(0.5))])
    inputs = L.Input((4,))
    h = L.Dense(3, kernel_initializer="ones", activity_regularizer=R.L1(0.1))(inputs)
    model = pynn.Model(inputs, L.ActivityRegularization(l2=0.2)(inner(h)))
    assert model.losses == []                    # no forward yet, no weight regularizer
    x = np.ones((2, 4), np.float32)
    y = model(x)
    losses = model.losses
    assert len(losses) == 3
    assert_close(losses[0], 0.1 * 8 * 3 / 2)     # |h| = 4 everywhere, divided by the batch
    assert_close(losses[2], 0.2 * np.sum(y.astype(np.float64) ** 2) / 2)
    assert_close(losses[1], 0.5 / 0.2 * losses[2])
    model(2 * x)                                  # a new call, new values
    assert_close(model.losses[0], 2 * losses[0])


# ---- saving ---------------------------------------------------------------------------------

def test_configs_round_trip_and_files_keep_the_penalties(tmp_path):
    model, conv, dense, head = _reg_model()
    dense.kernel.constraint = None
    config = dense.get_config()
    assert config["kernel_regularizer"] == R.serialize(R.L1L2(0.01, 0.02))
    assert config["activity_regularizer"] == R.serialize(R.L1(0.03))
    assert config["kernel_constraint"] is None
    again = L.Dense.from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config
    ar = L.ActivityRegularization(l1=0.5).get_config()
    assert ar["l1"] == 0.5 and ar["l2"] == 0.0 and "activity_regularizer" not in ar
    c2 = L.Conv2D(2, 3, kernel_constraint=C.MaxNorm(2, [0, 1, 2]), bias_constraint="non_neg")
    cc = c2.get_config()
    assert cc["kernel_constraint"]["config"] == {"max_value": 2, "axis": [0, 1, 2]}
    assert L.Conv2D.from_config(cc).get_config() == cc
    x, y = _data()
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse")
    model.fit(x, y, verbose=0)
    expected = model.evaluate(x, y, verbose=0)
    for name in ("m.pynn", "m.keras"):
        loaded = pynn.load_model(tmp_path / name) if (model.save(tmp_path / name) or True) \
            else None
        assert_close(loaded.evaluate(x, y, verbose=0), expected, rtol=1e-6, err_msg=name)
        assert [type(layer).__name__ for layer in loaded.layers] == \
            [type(layer).__name__ for layer in model.layers]
        assert loaded.layers[3].get_config()["kernel_regularizer"] == \
            config["kernel_regularizer"]


KERAS_CHECK = """
m = keras.saving.load_model("m.keras")
x, y = np.load("x.npy"), np.load("y.npy")
print("losses", float(sum(float(l) for l in m.losses)))
dense = [l for l in m.layers if type(l).__name__ == "Dense"][0]
print("reg", type(dense.kernel_regularizer).__name__, dense.kernel_regularizer.get_config())
print("con", type(dense.kernel.constraint).__name__)
print("eval", float(m.evaluate(x, y, verbose=0, batch_size=4)))
inputs = keras.Input((3,))
h = keras.layers.Dense(4, kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                       bias_regularizer="l2", activity_regularizer="l1",
                       kernel_constraint=keras.constraints.MaxNorm(1.5),
                       bias_constraint="non_neg")(inputs)
out = keras.layers.ActivityRegularization(l2=0.1)(h)
k = keras.Model(inputs, keras.layers.Dense(1, kernel_regularizer="l2")(out))
k.compile(optimizer="sgd", loss="mse")
xs = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
ys = np.random.default_rng(1).normal(size=(8, 1)).astype("float32")
np.save("xs.npy", xs); np.save("ys.npy", ys)
print("keval", float(k.evaluate(xs, ys, verbose=0, batch_size=8)))
k.save("k.keras")
"""


def test_keras_reads_pynn_files_and_pynn_reads_keras_files_with_penalties(tmp_path):
    from test_keras_files import _keras_python, run_keras
    python = _keras_python()
    if python is None:
        pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to the python of a venv "
                    "with `pip install keras jax[cpu] h5py` to run the Keras cross-checks")
    pynn.utils.set_random_seed(2)
    model = pynn.Sequential([L.Input((3,)),
                             L.Dense(4, activation="relu", kernel_regularizer=R.L2(0.05),
                                     activity_regularizer=R.L1(0.01),
                                     kernel_constraint=C.MaxNorm(1.0)),
                             L.ActivityRegularization(l1=0.02, l2=0.03), L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(3).normal(size=(8, 3)).astype(np.float32)
    y = np.random.default_rng(4).normal(size=(8, 1)).astype(np.float32)
    model.fit(x, y, verbose=0, batch_size=4)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = run_keras(python, tmp_path, KERAS_CHECK)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
    assert lines["reg"] == "L2 {'l2': 0.05}"
    assert lines["con"] == "MaxNorm"
    assert_close(float(lines["eval"]), model.evaluate(x, y, verbose=0, batch_size=4),
                 rtol=1e-5)
    # Keras's model, with every option, loads in pynn and evaluates the same
    k = pynn.load_model(tmp_path / "k.keras")
    dense = k.layers[1]
    assert type(dense.kernel_regularizer) is R.L1L2 and type(dense.bias_constraint) is C.NonNeg
    assert type(dense.kernel.constraint) is C.MaxNorm and dense.kernel.constraint.max_value == 1.5
    xs, ys = np.load(tmp_path / "xs.npy"), np.load(tmp_path / "ys.npy")
    k.compile(optimizer="sgd", loss="mse")
    assert_close(k.evaluate(xs, ys, verbose=0, batch_size=8), float(lines["keval"]), rtol=1e-5)


# ---- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("make,exc,words", [
    (lambda: R.L1(-0.1), ValueError, ["l1", "-0.1"]),
    (lambda: R.L2(float("nan")), ValueError, ["l2", "nan"]),
    (lambda: R.L1L2(l1=0.1, l2=-2), ValueError, ["l2", "-2"]),
    (lambda: R.L1L2(l1="0.1"), ValueError, ["l1", "'0.1'"]),
    (lambda: L.Dense(3, kernel_regularizer="l3"), ValueError, ["kernel_regularizer", "'l3'"]),
    (lambda: L.Dense(3, bias_regularizer=3), ValueError, ["bias_regularizer", "3"]),
    (lambda: L.Conv2D(3, 2, activity_regularizer="nope"), ValueError,
     ["activity_regularizer", "'nope'"]),
    (lambda: L.Dense(3, kernel_constraint="max"), ValueError, ["kernel_constraint", "'max'"]),
    (lambda: L.Conv2D(3, 2, bias_constraint=1.5), ValueError, ["bias_constraint", "1.5"]),
    (lambda: setattr(L.Dense(2), "activity_regularizer", "zz"), ValueError,
     ["activity_regularizer", "'zz'"]),
    (lambda: L.ActivityRegularization(l1=-1), ValueError, ["l1", "-1"]),
    (lambda: L.ActivityRegularization(l2="x"), ValueError, ["l2", "'x'"]),
    (lambda: C.MaxNorm(-1), ValueError, ["max_value", "-1"]),
    (lambda: C.UnitNorm(axis="0"), ValueError, ["axis", "'0'"]),
    (lambda: C.MinMaxNorm(rate=2), ValueError, ["rate", "2"]),
    (lambda: R.OrthogonalRegularizer(mode="diag"), ValueError, ["mode", "'diag'"]),
    (lambda: R.deserialize({"class_name": "L7", "config": {}}), ValueError, ["L7"]),
    (lambda: L.Dense(3, kernel_constraint=C.MaxNorm(axis=2)).build((None, 4)), ValueError,
     ["axis=2", "(4, 3)"]),
])
def test_bad_arguments_are_refused_naming_them(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_a_penalty_pynn_cannot_train_is_refused_and_the_model_is_unchanged():
    pynn.utils.set_random_seed(1)
    model = pynn.Sequential([L.Input((3,)),
                             L.Dense(4, kernel_regularizer=R.OrthogonalRegularizer(0.1)),
                             L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="OrthogonalRegularizer"):
        model.fit(x, np.ones((4, 1), np.float32), verbose=0)
    for a, b in zip(model.get_weights(), before):
        assert_bitwise(a, b)
    # but layer.losses computes it, as Keras does
    assert len(model.losses) == 1 and float(model.losses[0]) >= 0.0


# ---- ONNX ------------------------------------------------------------------------------------

def test_onnx_export_leaves_the_penalties_out(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, *_ = _reg_model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = _data()
    model.fit(x, y, verbose=0)
    model.export(tmp_path / "r.onnx")
    got = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {model.input_names[0]: x})[0]
    assert_close(got, model.predict(x, verbose=0), rtol=1e-5)
