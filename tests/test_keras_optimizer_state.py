"""Optimizer state in Keras 3's `.keras` files, checked against Keras 3 itself: for every
pynn optimizer (and the options that change Keras's variables: momentum, nesterov,
amsgrad, use_ema, a learning-rate schedule), a model trained 3 steps on one side, saved,
loaded on the other, then trained ONE more step on the same batch on both sides ends
with the same weights, which holds only when the step count, the learning rate and every
slot (in Keras's order and meaning) came across.  One Keras subprocess does all of them
(PYNN_KERAS_PYTHON, as tests/test_keras_files.py; skipped with a message without Keras)."""
import io
import json
import zipfile

import numpy as np
import pytest

import pynn
from pynn import layers as L

h5py = pytest.importorskip("h5py", reason='Keras files need h5py: pip install "pynn[keras]"')
from test_keras_files import keras_python, run_keras  # noqa: E402,F401  (the fixture)

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5}}
# (pynn/Keras class name, its config): the same on both sides
CASES = [("SGD", {"learning_rate": 0.05}),
         ("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
         ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
         ("SGD", {"learning_rate": SCHEDULE, "momentum": 0.9}),
         ("Adam", {"learning_rate": 0.01}),
         ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
         ("Adam", {"learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.9}),
         ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.05, "amsgrad": True}),
         ("RMSprop", {"learning_rate": 0.01}),
         ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "use_ema": True,
                      "ema_momentum": 0.8, "ema_overwrite_frequency": 3}),
         ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.3}),
         ("Adadelta", {"learning_rate": 1.0, "rho": 0.9}),
         ("Adamax", {"learning_rate": 0.01}),
         ("Nadam", {"learning_rate": 0.01}),
         ("Nadam", {"learning_rate": SCHEDULE, "beta_1": 0.8}),
         ("Lion", {"learning_rate": 0.003})]

KERAS_SIDE = """
import json
cases = json.load(open("cases.json"))
x, y = np.load("x.npy"), np.load("y.npy")

def optimizer(name, config):
    config = dict(config)
    if isinstance(config["learning_rate"], dict):
        config["learning_rate"] = keras.optimizers.schedules.deserialize(config["learning_rate"])
    return getattr(keras.optimizers, name)(**config)

for i, (name, config) in enumerate(cases):
    # Keras -> pynn: 3 steps, saved, then the 4th
    keras.utils.set_random_seed(i)
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"),
                          keras.layers.Dense(2)])
    m.compile(optimizer=optimizer(name, config), loss="mse")
    for _ in range(3):
        m.train_on_batch(x, y)
    m.save(f"k{i}.keras")
    m.train_on_batch(x, y)
    np.savez(f"k{i}_next.npz", *[np.asarray(w) for w in m.get_weights()])
    # pynn -> Keras: loaded, the 4th step
    m = keras.saving.load_model(f"p{i}.keras")
    print(i, "iterations", int(m.optimizer.iterations.numpy()), len(m.optimizer.variables))
    m.train_on_batch(x, y)
    np.savez(f"p{i}_next.npz", *[np.asarray(w) for w in m.get_weights()])
"""


def _pynn_optimizer(name, config):
    config = dict(config)
    if isinstance(config["learning_rate"], dict):
        config["learning_rate"] = pynn.optimizers.schedules.deserialize(config["learning_rate"])
    return pynn.optimizers.CLASSES[name](**config)


def _same(got, expected, what):
    assert len(got) == len(expected), what
    for g, e in zip(got, expected):
        scale = max(float(np.abs(e).max()), 1e-30)
        assert np.abs(np.asarray(g) - e).max() <= 1e-5 * scale, \
            f"{what}: max |diff| {np.abs(np.asarray(g) - e).max()} (max |w| {scale})"


def test_optimizer_state_round_trips_with_keras_for_every_optimizer(keras_python, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "cases.json").write_text(json.dumps(CASES))
    pynn_next = []
    for i, (name, config) in enumerate(CASES):
        pynn.utils.set_random_seed(100 + i)
        m = pynn.Sequential([L.Input((5,)), L.Dense(4, activation="tanh"), L.Dense(2)])
        m.compile(optimizer=_pynn_optimizer(name, config), loss="mse")
        for _ in range(3):
            m.train_on_batch(x, y)
        m.save(tmp_path / f"p{i}.keras")
        m.train_on_batch(x, y)
        pynn_next.append(m.get_weights())
    out = run_keras(keras_python, tmp_path, KERAS_SIDE)
    for i, (name, config) in enumerate(CASES):
        what = f"{name} {config}"
        # pynn's file in Keras: the step count and every variable loaded
        assert f"{i} iterations 3 " in out, f"{what}: {out}"
        with np.load(tmp_path / f"p{i}_next.npz") as f:
            _same([f[f"arr_{k}"] for k in range(len(f.files))], pynn_next[i],
                  f"{what}: pynn -> Keras, the step after loading")
        # Keras's file in pynn
        m = pynn.load_model(tmp_path / f"k{i}.keras")
        assert m.optimizer.iterations == 3 and type(m.optimizer).__name__ == name, what
        m.train_on_batch(x, y)
        with np.load(tmp_path / f"k{i}_next.npz") as f:
            _same(m.get_weights(), [f[f"arr_{k}"] for k in range(len(f.files))],
                  f"{what}: Keras -> pynn, the step after loading")


def _saved_vars(path):
    with zipfile.ZipFile(path) as z:
        data = z.read("model.weights.h5")
    with h5py.File(io.BytesIO(data), "r") as f:
        g = f["optimizer/vars"]
        return [np.asarray(g[str(k)]) for k in range(len(g))]


def test_optimizer_variables_are_written_in_keras_order(tmp_path):
    """Without Keras: the count and order of optimizer/vars for the options that change
    them, and the state read back equal to the state written."""
    x = np.ones((4, 3), np.float32)
    y = np.zeros((4, 2), np.float32)
    for name, config, per_weight, scalars in [
            ("SGD", {}, 0, 2), ("SGD", {"momentum": 0.5}, 1, 2),
            ("Adam", {"amsgrad": True, "use_ema": True}, 4, 2),
            ("RMSprop", {"momentum": 0.5}, 2, 2),
            ("Nadam", {"learning_rate": SCHEDULE}, 2, 2),     # iterations, u_product
            ("Adadelta", {}, 2, 2), ("Lion", {}, 1, 2)]:
        m = pynn.Sequential([L.Input((3,)), L.Dense(2)])
        m.compile(optimizer=_pynn_optimizer(name, {"learning_rate": 0.01, **config}),
                  loss="mse")
        for _ in range(2):
            m.train_on_batch(x, y)
        m.save(tmp_path / "m.keras")
        saved = _saved_vars(tmp_path / "m.keras")
        assert len(saved) == scalars + per_weight * 2, (name, config, len(saved))
        assert int(saved[0]) == 2
        again = pynn.load_model(tmp_path / "m.keras")
        for k, v in m.optimizer.state_arrays().items():
            np.testing.assert_array_equal(again.optimizer.state_arrays()[k], v)
    # before the first step: Keras's initial values (Adagrad's initial_accumulator_value)
    m = pynn.Sequential([L.Input((3,)), L.Dense(2)])
    m.compile(optimizer=pynn.optimizers.Adagrad(0.01, initial_accumulator_value=0.25),
              loss="mse")
    m.save(tmp_path / "a.keras")
    saved = _saved_vars(tmp_path / "a.keras")
    assert len(saved) == 4 and int(saved[0]) == 0
    assert all(np.all(a == np.float32(0.25)) for a in saved[2:])
    assert pynn.load_model(tmp_path / "a.keras").optimizer.iterations == 0
    # RMSprop with momentum: every velocity, then every momentum (two build() calls)
    m = pynn.Sequential([L.Input((3,)), L.Dense(2)])
    m.compile(optimizer=pynn.optimizers.RMSprop(0.01, momentum=0.5), loss="mse")
    m.train_on_batch(x, y)
    m.save(tmp_path / "r.keras")
    saved = _saved_vars(tmp_path / "r.keras")
    state = m.optimizer.state_arrays()
    kernel, bias = m.layers[0].kernel, m.layers[0].bias
    np.testing.assert_array_equal(saved[2].reshape(-1), state["velocity"][:kernel.size]
                                  if m.optimizer.state_paths()[0] == kernel.path else
                                  state["velocity"][bias.size:])
    assert saved[2].shape == kernel.shape and saved[3].shape == bias.shape
    assert saved[4].shape == kernel.shape and saved[5].shape == bias.shape


def test_a_nadam_u_product_that_disagrees_with_the_step_count_is_refused(tmp_path):
    from pynn.serialization import ModelFileError
    m = pynn.Sequential([L.Input((3,)), L.Dense(2)])
    m.compile(optimizer=pynn.optimizers.Nadam(0.01), loss="mse")
    m.train_on_batch(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    m.save(tmp_path / "n.keras")
    with zipfile.ZipFile(tmp_path / "n.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "r+") as f:
        g = f["optimizer/vars"]
        last = str(len(g) - 1)
        assert abs(float(g[last][()]) - 0.9 * (1 - 0.5 * 0.96)) < 1e-6   # u_product, step 1
        g[last][()] = np.float32(0.5)
    members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ModelFileError, match="u_product"):
        pynn.load_model(tmp_path / "bad.keras")


def test_optimizer_state_without_a_keras_layout_is_refused_not_written(tmp_path):
    class Odd(pynn.optimizers.SGD):            # a slot Keras's SGD does not have
        def slot_names(self):
            return ("velocity", None, None)
    m = pynn.Sequential([L.Input((3,)), L.Dense(2)])
    m.compile(optimizer=Odd(0.01, momentum=0.5), loss="mse")
    m.train_on_batch(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="Odd.*no Keras layout"):
        m.save_weights(tmp_path / "o.weights.h5")
    assert not (tmp_path / "o.weights.h5").exists()

    class MyAdam(pynn.optimizers.Adam):        # Adam's state: Adam's layout
        pass
    m.compile(optimizer=MyAdam(0.01), loss="mse")
    m.train_on_batch(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    m.save_weights(tmp_path / "a.weights.h5")
    with h5py.File(tmp_path / "a.weights.h5", "r") as f:
        saved = [np.asarray(f["optimizer/vars"][str(k)]) for k in range(len(f["optimizer/vars"]))]
    assert len(saved) == 6 and int(saved[0]) == 1          # iterations, lr, m/v per weight
    state = m.optimizer.state_arrays()
    kernel = m.layers[0].kernel
    o = 0 if m.optimizer.state_paths()[0] == kernel.path else m.layers[0].bias.size
    np.testing.assert_array_equal(saved[2].reshape(-1), state["m"][o:o + kernel.size])
    np.testing.assert_array_equal(saved[3].reshape(-1), state["v"][o:o + kernel.size])
