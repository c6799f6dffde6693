"""Regularizers and constraints on every layer with weights besides Dense / Conv (#16):
DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, SimpleRNN, LSTM, GRU, Bidirectional,
PReLU, LayerNormalization, GroupNormalization and BatchNormalization, with Keras 3's
argument names (Dense and Conv2D: tests/test_regularizers.py).

  * one SGD step with an L1L2 penalty on each weight kind (and an activity penalty):
    the loss is the twin model's without the penalties (same weights, no regularizer) plus
    the penalties computed by hand in NumPy, and the weights move by the twin's step plus
    lr * the penalty's gradient (l1 sign(w) + 2 l2 w); on cpu and numpy, and cuda (the
    simulator) for two layers;
  * constraints (NonNeg, MaxNorm) applied after a step;
  * get_config round trips and .keras save / load for every layer;
  * Keras itself (PYNN_KERAS_PYTHON) reading pynn's files and computing the same losses;
  * bad values refused, naming the argument and the value.
"""
import json

import numpy as np
import pytest

import pynn
from pynn import constraints as C
from pynn import layers as L
from pynn import regularizers as R

from conftest import assert_close, usable_backend

LR = 0.1
REG = (0.01, 0.02)          # l1, l2 of every weight penalty


def reg():
    return R.L1L2(*REG)


# name -> (input shape, make(), the regularized argument of each weight, in weight order)
LAYERS = {
    "depthwise": ((5, 5, 2), lambda: L.DepthwiseConv2D(
        3, depth_multiplier=2, bias_initializer="random_normal",
        depthwise_regularizer=reg(), bias_regularizer=reg())),
    "separable": ((5, 5, 2), lambda: L.SeparableConv2D(
        3, 3, bias_initializer="random_normal", depthwise_regularizer=reg(),
        pointwise_regularizer=reg(), bias_regularizer=reg())),
    "transpose": ((3, 3, 2), lambda: L.Conv2DTranspose(
        2, 3, strides=2, bias_initializer="random_normal", kernel_regularizer=reg(),
        bias_regularizer=reg())),
    "simple_rnn": ((4, 3), lambda: L.SimpleRNN(
        3, bias_initializer="random_normal", kernel_regularizer=reg(),
        recurrent_regularizer=reg(), bias_regularizer=reg())),
    "lstm": ((4, 3), lambda: L.LSTM(
        3, bias_initializer="random_normal", kernel_regularizer=reg(),
        recurrent_regularizer=reg(), bias_regularizer=reg())),
    "gru": ((4, 3), lambda: L.GRU(
        3, bias_initializer="random_normal", kernel_regularizer=reg(),
        recurrent_regularizer=reg(), bias_regularizer=reg())),
    # the activity penalty on the sublayers (Keras calls them: each adds its own)
    "bidirectional": ((4, 3), lambda: L.Bidirectional(L.LSTM(
        2, bias_initializer="random_normal", kernel_regularizer=reg(),
        recurrent_regularizer=reg(), bias_regularizer=reg(), activity_regularizer=R.L2(0.03)))),
    "prelu": ((6,), lambda: L.PReLU(alpha_initializer="random_normal",
                                    alpha_regularizer=reg())),
    "layer_norm": ((6,), lambda: L.LayerNormalization(
        beta_initializer="random_normal", gamma_initializer="random_normal",
        beta_regularizer=reg(), gamma_regularizer=reg())),
    "group_norm": ((3, 4), lambda: L.GroupNormalization(
        2, beta_initializer="random_normal", gamma_initializer="random_normal",
        beta_regularizer=reg(), gamma_regularizer=reg())),
    "batch_norm": ((5,), lambda: L.BatchNormalization(
        beta_initializer="random_normal", gamma_initializer="random_normal",
        beta_regularizer=reg(), gamma_regularizer=reg())),
}

# every layer on cpu and numpy; cuda (the simulator) for two, to keep the suite quick
STEP_CASES = [(name, b) for name in LAYERS for b in ("cpu", "numpy")] + \
    [("depthwise", "cuda"), ("layer_norm", "cuda")]


def _model(name, regularized, activity=None):
    """The model Input -> layer -> Flatten; regularized=False: the same layer without its
    weight penalties (the activity penalty kept)."""
    shape, make = LAYERS[name]
    pynn.utils.set_random_seed(17)
    layer = make()
    if not regularized:
        config = layer.get_config()
        for key in list(config):
            if key.endswith("_regularizer") and key != "activity_regularizer":
                config[key] = None
        if name == "bidirectional":
            for sub in ("layer", "backward_layer"):
                inner = config[sub]["config"]
                for key in list(inner):
                    if key.endswith("_regularizer") and key != "activity_regularizer":
                        inner[key] = None
        layer = type(layer).from_config(config)
    if activity is not None and name != "bidirectional":
        layer.activity_regularizer = activity
    model = pynn.Sequential([L.Input(shape), layer, L.Flatten()])
    return model, layer


def _data(name, model):
    rng = np.random.default_rng(5)
    shape = LAYERS[name][0]
    x = rng.normal(size=(4,) + shape).astype(np.float32)
    y = rng.normal(size=(4,) + model.output_shape[1:]).astype(np.float32)
    return x, y


def _penalty(w):
    w = w.astype(np.float64)
    return REG[0] * np.abs(w).sum() + REG[1] * (w * w).sum()


def _penalty_grad(w):
    return REG[0] * np.sign(w) + 2 * REG[1] * w


@pytest.mark.parametrize("name,backend_name", STEP_CASES)
def test_one_sgd_step_adds_the_penalties(name, backend_name):
    backend_name = usable_backend(backend_name)
    model, layer = _model(name, True, activity=R.L2(0.03))
    twin, twin_layer = _model(name, False, activity=R.L2(0.03))
    twin.set_weights(model.get_weights())
    x, y = _data(name, model)
    weights = [v.numpy() for v in model.trainable_weights]
    assert all(v.regularizer is not None for v in model.trainable_weights)
    assert all(v.regularizer is None for v in twin.trainable_weights)
    # the layer's output in training mode (BatchNormalization: the batch statistics)
    if name == "batch_norm":
        xs = x.astype(np.float64)
        gamma, beta = weights
        out = (xs - xs.mean(0)) / np.sqrt(xs.var(0) + layer.epsilon) * gamma + beta
    else:
        out = model.predict(x, verbose=0, batch_size=4).astype(np.float64)
    # Keras: divided by the batch size (Bidirectional: its two sublayers' penalties, whose
    # outputs the concatenation puts side by side, so the same sum)
    activity = 0.03 * float((out ** 2).sum()) / 4
    penalties = sum(_penalty(w) for w in weights)
    # the twin (no weight penalties) on the reference backend: the data + activity loss
    # and step; the penalties' own gradient is then added by hand
    twin.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend="numpy")
    twin_loss = twin.train_on_batch(x, y)
    assert_close(twin_loss, float(((out - y) ** 2).mean()) + activity, rtol=2e-5,
                 err_msg=f"{name}: data + activity loss")
    stepped = [v.numpy() for v in twin.trainable_weights]
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend=backend_name)
    loss = model.train_on_batch(x, y)
    assert_close(loss, twin_loss + penalties, rtol=2e-5, err_msg=f"{name}: loss")
    # model.losses after the step: the activity penalties of that forward, then the
    # weights' penalties at their new values
    losses = model.losses
    n_act = len(losses) - len(weights)
    assert n_act == (2 if name == "bidirectional" else 1)
    after = [v.numpy() for v in model.trainable_weights]
    for got, w in zip(losses[n_act:], after):
        assert_close(got, _penalty(w), rtol=2e-5, err_msg=f"{name}: weight penalty")
    assert_close(sum(losses[:n_act]), activity, rtol=2e-5, err_msg=f"{name}: activity")
    assert_close(float(np.sum(np.asarray(losses, np.float64))),
                 activity + sum(_penalty(w) for w in after), rtol=2e-5)
    for v, w, s in zip(model.trainable_weights, weights, stepped):
        want = s - LR * _penalty_grad(w)
        assert_close(v.numpy(), want, rtol=1e-4, err_msg=f"{name} {backend_name}: {v.path}")


@pytest.mark.parametrize("make,shape,check", [
    (lambda: L.PReLU(alpha_initializer="random_normal", alpha_constraint="non_neg"), (6,),
     lambda w, free: np.maximum(free, 0)),
    (lambda: L.LSTM(3, kernel_constraint=C.MaxNorm(0.3)), (4, 3),
     lambda w, free: free * np.clip(n := np.sqrt((free.astype(np.float64) ** 2).sum(
         0, keepdims=True)), 0, 0.3) / (1e-7 + n)),
], ids=["prelu_non_neg", "lstm_max_norm"])
def test_constraints_apply_after_a_step(make, shape, check):
    pynn.utils.set_random_seed(3)
    layer = make()
    model = pynn.Sequential([L.Input(shape), layer, L.Flatten()])
    config = layer.get_config()
    for key in config:
        if key.endswith("_constraint"):
            config[key] = None
    free_layer = type(layer).from_config(config)
    free = pynn.Sequential([L.Input(shape), free_layer, L.Flatten()])
    free.set_weights(model.get_weights())
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4,) + shape).astype(np.float32)
    y = rng.normal(size=(4,) + model.output_shape[1:]).astype(np.float32) * 3
    for m in (model, free):
        m.compile(optimizer=pynn.optimizers.SGD(1.0), loss="mse")
        m.train_on_batch(x, y)
    w, fw = model.trainable_weights[0].numpy(), free.trainable_weights[0].numpy()
    assert not np.allclose(w, fw)           # the constraint did something
    assert_close(w, check(w, fw), rtol=1e-5)


# ---- saving ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(LAYERS))
def test_config_and_keras_file_round_trips(name, tmp_path):
    model, layer = _model(name, True, activity="l1")
    layer.get_config()
    config = json.loads(json.dumps(layer.get_config()))
    regs = {k: v for k, v in config.items() if k.endswith("_regularizer") and v is not None}
    if name == "bidirectional":
        inner = config["layer"]["config"]
        assert inner["kernel_regularizer"] == R.serialize(reg())
        assert inner["activity_regularizer"] == R.serialize(R.L2(0.03))
        assert inner["recurrent_regularizer"]["class_name"] == "L1L2"
    else:
        assert regs.pop("activity_regularizer") == R.serialize(R.L1())
        assert regs and all(v == R.serialize(reg()) for v in regs.values()), regs
    again = type(layer).from_config(config)
    assert again.get_config() == config
    x, _ = _data(name, model)
    model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = pynn.load_model(tmp_path / "m.keras")
    mine, theirs = layer.get_config(), loaded.layers[0].get_config()
    for key in mine:
        if key.endswith("_regularizer") or key.endswith("_constraint"):
            assert theirs[key] == mine[key], key
    assert [type(v.regularizer) for v in loaded.trainable_weights] == \
        [type(v.regularizer) for v in model.trainable_weights]
    assert_close(np.float64(sum(loaded.losses[-len(model.trainable_weights):])),
                 np.float64(sum(model.losses[-len(model.trainable_weights):])))


def test_constraints_round_trip():
    layers = [
        L.DepthwiseConv2D(3, depthwise_constraint=C.MaxNorm(2, [0, 1]), bias_constraint="non_neg"),
        L.SeparableConv2D(2, 3, depthwise_constraint="unit_norm",
                          pointwise_constraint=C.MaxNorm(1.0, [0, 1, 2]),
                          bias_constraint=C.NonNeg()),
        L.Conv2DTranspose(2, 3, kernel_constraint=C.MinMaxNorm(0.1, 0.9), bias_constraint="NonNeg"),
        L.GRU(2, kernel_constraint="max_norm", recurrent_constraint="unit_norm",
              bias_constraint="non_neg"),
        L.PReLU(alpha_constraint={"class_name": "NonNeg", "config": {}}),
        L.LayerNormalization(beta_constraint="non_neg", gamma_constraint=C.MaxNorm(3)),
        L.GroupNormalization(2, beta_constraint="non_neg", gamma_constraint="non_neg"),
        L.BatchNormalization(beta_constraint="non_neg", gamma_constraint=C.UnitNorm()),
    ]
    for layer in layers:
        config = json.loads(json.dumps(layer.get_config()))
        cons = {k: v for k, v in config.items() if k.endswith("_constraint")}
        assert cons and all(v is not None and v["module"] == "keras.constraints"
                            for v in cons.values()), (type(layer).__name__, cons)
        assert type(layer).from_config(config).get_config() == config


# ---- Keras ----------------------------------------------------------------------------------

KERAS_CHECK = """
import json
x = np.load("x.npy")
out = {}
for name in ("sep", "lstm", "ln"):
    m = keras.saving.load_model(name + ".keras")
    m.predict(x if name == "sep" else x.reshape(4, 5, 10)[:, :, :3] if name == "lstm"
              else x.reshape(4, -1)[:, :6], verbose=0)
    layer = m.layers[0]
    cfg = layer.get_config()
    out[name] = {"losses": float(sum(float(l) for l in m.losses)),
                 "config": {k: v for k, v in cfg.items()
                            if k.endswith("_regularizer") or k.endswith("_constraint")}}
print("JSON" + json.dumps(out))
"""


def test_keras_reads_the_regularizers_and_constraints(tmp_path):
    from test_keras_files import _keras_python, run_keras
    python = _keras_python()
    if python is None:
        pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to the python of a venv "
                    "with `pip install keras jax[cpu] h5py` to run the Keras cross-checks")
    pynn.utils.set_random_seed(4)
    models = {
        "sep": pynn.Sequential([L.Input((5, 5, 2)), L.SeparableConv2D(
            3, 3, depthwise_regularizer="l2", pointwise_regularizer=R.L1L2(0.01, 0.02),
            bias_regularizer=R.L1(0.05), bias_initializer="random_normal",
            pointwise_constraint=C.MaxNorm(2.0, [0, 1, 2]), bias_constraint="non_neg")]),
        "lstm": pynn.Sequential([L.Input((5, 3)), L.LSTM(
            4, kernel_regularizer="l1", recurrent_regularizer=R.L2(0.03),
            bias_regularizer=R.L1L2(0.01, 0.01), recurrent_constraint="unit_norm")]),
        "ln": pynn.Sequential([L.Input((6,)), L.LayerNormalization(
            gamma_initializer="random_normal", beta_initializer="random_normal",
            beta_regularizer="l2", gamma_regularizer=R.L1(0.2), gamma_constraint="non_neg")]),
    }
    for name, m in models.items():
        m.save(tmp_path / f"{name}.keras")
    x = np.random.default_rng(1).normal(size=(4, 5, 5, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = run_keras(python, tmp_path, KERAS_CHECK)
    got = json.loads(out[out.index("JSON") + 4:].strip().splitlines()[0])
    for name, m in models.items():
        config = m.layers[0].get_config()
        mine = {k: v for k, v in config.items()
                if k.endswith("_regularizer") or k.endswith("_constraint")}
        assert got[name]["config"] == json.loads(json.dumps(mine)), name
        assert_close(got[name]["losses"], float(sum(m.losses)), rtol=1e-5, err_msg=name)


# ---- bad values -----------------------------------------------------------------------------

@pytest.mark.parametrize("make,words", [
    (lambda: L.DepthwiseConv2D(3, depthwise_regularizer="l3"), ["depthwise_regularizer", "'l3'"]),
    (lambda: L.DepthwiseConv2D(3, bias_constraint=2.5), ["bias_constraint", "2.5"]),
    (lambda: L.SeparableConv2D(2, 3, pointwise_regularizer=7), ["pointwise_regularizer", "7"]),
    (lambda: L.SeparableConv2D(2, 3, depthwise_constraint="max"), ["depthwise_constraint",
                                                                   "'max'"]),
    (lambda: L.SeparableConv2D(2, 3, activity_regularizer="zz"), ["activity_regularizer",
                                                                  "'zz'"]),
    (lambda: L.Conv2DTranspose(2, 3, kernel_regularizer="l5"), ["kernel_regularizer", "'l5'"]),
    (lambda: L.Conv2DTranspose(2, 3, bias_constraint="nn"), ["bias_constraint", "'nn'"]),
    (lambda: L.SimpleRNN(2, recurrent_regularizer="l0"), ["recurrent_regularizer", "'l0'"]),
    (lambda: L.LSTM(2, recurrent_constraint=1), ["recurrent_constraint", "1"]),
    (lambda: L.GRU(2, activity_regularizer="q"), ["activity_regularizer", "'q'"]),
    (lambda: L.GRU(2, bias_regularizer={"class_name": "L7", "config": {}}),
     ["bias_regularizer", "L7"]),
    (lambda: L.PReLU(alpha_regularizer="l3"), ["alpha_regularizer", "'l3'"]),
    (lambda: L.LayerNormalization(gamma_constraint="pos"), ["gamma_constraint", "'pos'"]),
    (lambda: L.GroupNormalization(2, beta_regularizer=0.1), ["beta_regularizer", "0.1"]),
    (lambda: L.BatchNormalization(gamma_regularizer="l9"), ["gamma_regularizer", "'l9'"]),
    (lambda: L.BatchNormalization(beta_constraint=[1]), ["beta_constraint", "[1]"]),
])
def test_bad_values_are_refused_naming_the_argument(make, words):
    with pytest.raises(ValueError) as info:
        make()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("backend_name", ["cpu", "numpy", "cuda"])
def test_embedding_penalties_over_two_steps(backend_name):
    """Embedding's embeddings_regularizer and activity_regularizer: the penalty's gradient
    reaches every row of the table (the rows the batch did not use included), and the next
    step starts from a clean gradient (two steps on different ids, each against a twin
    without the weight penalty stepped on the reference backend plus the penalty's step)."""
    backend_name = usable_backend(backend_name)

    def make(regularized):
        pynn.utils.set_random_seed(4)
        layer = L.Embedding(30, 4, embeddings_regularizer=reg() if regularized else None,
                            activity_regularizer=R.L2(0.03))
        model = pynn.Sequential([L.Input((5,), dtype="int32"), layer, L.Flatten()])
        return model

    model, twin = make(True), make(False)
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend=backend_name)
    twin.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend="numpy")
    rng = np.random.default_rng(8)
    for step, ids in enumerate((rng.integers(0, 15, (4, 5)), rng.integers(15, 30, (4, 5)))):
        y = rng.normal(size=(4, 20)).astype(np.float32)
        before = model.get_weights()[0]
        twin.set_weights([before])
        twin_loss = twin.train_on_batch(ids, y)
        loss = model.train_on_batch(ids, y)
        assert_close(loss, twin_loss + _penalty(before), rtol=2e-5, err_msg=f"step {step}")
        want = twin.get_weights()[0] - LR * _penalty_grad(before)
        assert_close(model.get_weights()[0], want, rtol=1e-4, err_msg=f"step {step} table")
    config = model.layers[0].get_config()
    assert config["embeddings_regularizer"]["class_name"] == "L1L2"
    assert config["activity_regularizer"]["class_name"] == "L2"
    again = L.Embedding.from_config(config)
    assert again.embeddings_regularizer.get_config() == model.layers[0].embeddings_regularizer.get_config()


def test_embedding_constraint_after_the_update():
    pynn.utils.set_random_seed(2)
    model = pynn.Sequential([L.Input((3,), dtype="int32"),
                             L.Embedding(10, 4, embeddings_initializer="ones",
                                         embeddings_constraint=pynn.constraints.MaxNorm(1.5, axis=1)),
                             L.Flatten()])
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse")
    model.train_on_batch(np.array([[1, 2, 3]]), np.zeros((1, 12), np.float32))
    norms = np.linalg.norm(model.get_weights()[0], axis=1)
    np.testing.assert_allclose(norms, 1.5, rtol=1e-5)    # every row of norm 2 clipped to 1.5
    with pytest.raises(ValueError, match="embeddings_regularizer"):
        L.Embedding(10, 4, embeddings_regularizer="l3")


def test_a_regularized_embedding_keeps_the_dense_sgd_update():
    """Plain SGD updates only the rows seen (OP_EMBEDDING_SGD), but a weight penalty's
    gradient is on every row: such a table takes the optimizer's dense update."""
    for regularizer, sparse in ((None, True), (reg(), False)):
        model = pynn.Sequential([L.Input((3,), dtype="int32"),
                                 L.Embedding(10, 2, embeddings_regularizer=regularizer)])
        model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse")
        model.train_on_batch(np.array([[1, 2, 3]]), np.zeros((1, 3, 2), np.float32))
        assert (model.plan.count("embedding_sgd") == 1) is sparse


def test_config_keys_as_keras_lists_them():
    """Keras 3's Conv2D config lists activity_regularizer even when unset (null), its Dense
    only when set; BatchNormalization's lists synchronized.  from_config takes them back."""
    conv = pynn.layers.Conv2D(2, 3).get_config()
    assert "activity_regularizer" in conv and conv["activity_regularizer"] is None
    assert list(conv).index("activity_regularizer") == list(conv).index("bias_regularizer") + 1
    assert "activity_regularizer" not in pynn.layers.Dense(2).get_config()
    dense = pynn.layers.Dense(2, activity_regularizer="l2").get_config()
    assert dense["activity_regularizer"]["class_name"] == "L2"
    bn = pynn.layers.BatchNormalization().get_config()
    assert bn["synchronized"] is False
    assert pynn.layers.BatchNormalization.from_config(bn).get_config() == bn
    assert pynn.layers.Conv2D.from_config(conv).get_config()["activity_regularizer"] is None
