"""Keras 3's own files, both ways, checked against Keras 3 itself.

Keras is not a dependency of pynn: the cross-checks run Keras in a subprocess with the
interpreter named by PYNN_KERAS_PYTHON (a venv with `pip install keras jax[cpu] h5py`),
or this interpreter when it imports keras, and skip with a message otherwise.  The
bad-file tests need only h5py."""
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.serialization import ModelFileError

h5py = pytest.importorskip("h5py", reason='Keras files need h5py: pip install "pynn[keras]"')


def _keras_env():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("KERAS_BACKEND", "jax")
    return env


def _keras_python():
    candidates = [os.environ.get("PYNN_KERAS_PYTHON"), sys.executable]
    for python in candidates:
        if not python:
            continue
        try:
            ok = subprocess.run([python, "-c", "import keras"], capture_output=True,
                                timeout=120, env=_keras_env()).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return python
    return None


@pytest.fixture(scope="module")
def keras_python():
    python = _keras_python()
    if python is None:
        pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to the python of a venv "
                    "with `pip install keras jax[cpu] h5py` to run the Keras cross-checks")
    return python


def run_keras(python, folder, code):
    """Run `code` under Keras (JAX backend unless KERAS_BACKEND says otherwise) in `folder`."""
    script = "import numpy as np, keras\n" + textwrap.dedent(code)
    env = _keras_env()
    run = subprocess.run([python, "-c", script], cwd=folder, capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, f"Keras failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return run.stdout


def _pynn_model():
    """Dense, Conv2D, both poolings, BatchNormalization, Dropout, merges and a nested
    model, trained a little so that nothing is at its initial value."""
    pynn.utils.set_random_seed(3)
    inputs = L.Input((8, 8, 2), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = L.BatchNormalization()(x)
    a = L.MaxPooling2D(2)(x)
    b = L.AveragePooling2D(2)(x)
    x = L.Concatenate()([a, b])
    x = L.Flatten()(x)
    x = L.Dense(12, activation="relu")(x)
    x = L.Dropout(0.25)(x)
    inner = pynn.Sequential([L.Input((12,)), L.Dense(8, activation="tanh"), L.Dense(3)],
                            name="head")
    y = L.Add()([inner(x), L.Dense(3)(x)])
    outputs = L.Activation("softmax")(y)
    model = pynn.Model(inputs, outputs, name="pynn_net")
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 2), np.float32)
    y = rng.integers(0, 3, 40)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model, x, y


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pynn_saved_models_load_in_keras_and_predict_the_same(keras_python, tmp_path):
    model, x, y = _pynn_model()
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    out = run_keras(keras_python, tmp_path, """
        m = keras.saving.load_model("m.keras")          # no custom objects
        x = np.load("x.npy")
        np.save("keras_pred.npy", np.asarray(m.predict(x, verbose=0)))
        print("iterations", int(m.optimizer.iterations.numpy()))
        print("layers", sorted(type(l).__name__ for l in m.layers))
        # weights-only: a fresh copy of the architecture takes the .weights.h5
        fresh = keras.models.clone_model(m)
        fresh.load_weights("w.weights.h5")
        np.save("keras_pred_w.npy", np.asarray(fresh.predict(x, verbose=0)))
        # and it trains on from the restored state
        h = m.fit(x, np.load("y.npy"), epochs=1, batch_size=8, verbose=0)
        print("loss", h.history["loss"][-1])
        m.save("back.keras")
        m.save_weights("back.weights.h5")
        np.save("keras_pred_back.npy", np.asarray(m.predict(x, verbose=0)))
        """)
    expected = model.predict(x, verbose=0)
    _close(np.load(tmp_path / "keras_pred.npy"), expected)
    _close(np.load(tmp_path / "keras_pred_w.npy"), expected)
    assert f"iterations {model.optimizer.iterations}" in out
    assert "Sequential" in out and "BatchNormalization" in out
    assert np.isfinite(float(out.split("loss ")[1].split()[0]))
    # and back: Keras's files of the model Keras trained on load in pynn
    back = pynn.load_model(tmp_path / "back.keras")
    _close(back.predict(x, verbose=0), np.load(tmp_path / "keras_pred_back.npy"))
    model.load_weights(tmp_path / "back.weights.h5")
    _close(model.predict(x, verbose=0), np.load(tmp_path / "keras_pred_back.npy"))


KERAS_MODEL = """
    L = keras.layers
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((16,)), L.Dense(8, activation="relu"),
                              L.BatchNormalization(), L.Dense(4)], name="inner")
    a = keras.Input((10, 10, 1), name="pixels")
    b = keras.Input((5,), name="extra")
    x = L.Conv2D(4, 3, activation="relu")(a)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(4, 3, padding="same", strides=2)(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.3)(x)
    x = L.Concatenate()([x, L.Dense(12)(b)])
    x = L.Dense(16, activation="relu")(x)
    y = L.Subtract()([inner(x), L.Dense(4)(x)])
    y = L.Multiply()([y, L.Dense(4, activation="sigmoid")(x)])
    out = L.Dense(3, activation="softmax", name="probs")(y)
    model = keras.Model([a, b], out)
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(1)
    xa = rng.random((48, 10, 10, 1)).astype("float32")
    xb = rng.random((48, 5)).astype("float32")
    y = rng.integers(0, 3, 48)
    model.fit([xa, xb], y, epochs=3, batch_size=8, verbose=0)
    for name, arr in (("xa", xa), ("xb", xb), ("y", y)):
        np.save(name + ".npy", arr)
    np.save("pred.npy", np.asarray(model.predict([xa, xb], verbose=0)))
    model.save("k.keras")
    model.save_weights("k.weights.h5")
    print("iterations", int(model.optimizer.iterations.numpy()))
"""


def test_keras_trained_models_load_in_pynn_predict_the_same_and_train_on(keras_python, tmp_path):
    out = run_keras(keras_python, tmp_path, KERAS_MODEL)
    xa, xb, y = (np.load(tmp_path / f"{n}.npy") for n in ("xa", "xb", "y"))
    expected = np.load(tmp_path / "pred.npy")
    model = pynn.load_model(tmp_path / "k.keras")
    assert model.input_names == ["pixels", "extra"] and model.output_names == ["probs"]
    assert any(isinstance(l, pynn.Sequential) for l in model.layers)
    _close(model.predict([xa, xb], verbose=0), expected)
    assert f"iterations {model.optimizer.iterations}" in out
    assert type(model.optimizer).__name__ == "Adam"
    assert np.any(model.optimizer.state_arrays()["m"] != 0)        # Keras's moments carried
    # it trains on: the loss goes down from where Keras left it
    before = model.evaluate([xa, xb], y, verbose=0)[0]
    model.fit([xa, xb], y, epochs=5, batch_size=8, verbose=0)
    after = model.evaluate([xa, xb], y, verbose=0)[0]
    assert np.isfinite(after) and after < before
    # weights-only: a fresh copy of the architecture takes Keras's .weights.h5
    fresh = pynn.load_model(tmp_path / "k.keras", compile=False)
    fresh.set_weights([np.zeros(v.shape, np.float32) for v in fresh.weights])
    fresh.load_weights(tmp_path / "k.weights.h5")
    _close(fresh.predict([xa, xb], verbose=0), expected)
    # pynn's weights-only file of the model it trained goes back to Keras
    model.save_weights(tmp_path / "p.weights.h5")
    np.save(tmp_path / "pynn_pred.npy", model.predict([xa, xb], verbose=0))
    run_keras(keras_python, tmp_path, """
        m = keras.saving.load_model("k.keras")
        m.load_weights("p.weights.h5")
        got = np.asarray(m.predict([np.load("xa.npy"), np.load("xb.npy")], verbose=0))
        np.testing.assert_allclose(got, np.load("pynn_pred.npy"), rtol=1e-5, atol=1e-6)
        """)


def test_pynn_format_stays_the_default_for_pynn_names(tmp_path):
    model, x, _ = _pynn_model()
    model.save(tmp_path / "m.pynn")
    with zipfile.ZipFile(tmp_path / "m.pynn") as zf:
        assert "pynn_model.json" in zf.namelist()
    loaded = pynn.load_model(tmp_path / "m.pynn")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # the .keras round trip inside pynn keeps the weights and the Adam state
    model.save(tmp_path / "m.keras")
    again = pynn.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert again.optimizer.iterations == model.optimizer.iterations
    for name, value in model.optimizer.state_arrays().items():
        np.testing.assert_array_equal(again.optimizer.state_arrays()[name], value)


# ---- bad files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_keras(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    model = pynn.Sequential([L.Input((4,)), L.Dense(3, name="d1"), L.Dense(2, name="d2")],
                            name="small")
    path = folder / "good.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    return path, members, model


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _h5_with(members, change):
    """model.weights.h5 rewritten by `change(h5 file)`."""
    buf = io.BytesIO(members["model.weights.h5"])
    out = io.BytesIO()
    with h5py.File(buf, "r") as src, h5py.File(out, "w") as dst:
        for key in src:
            src.copy(src[key], dst, key)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        change(dst)
    return out.getvalue()


def _config_with(members, change):
    config = json.loads(members["config.json"])
    change(config)
    return json.dumps(config)


def test_bad_keras_files_are_refused_clearly_and_write_nothing(tmp_path, good_keras):
    path, members, model = good_keras
    data = path.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()

    def layer(config, i):
        return config["config"]["layers"][i]

    def wrong_shape(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = np.zeros((5, 3), np.float32)

    def huge_shape(f):
        del f["layers/dense/vars/0"]
        f.create_dataset("layers/dense/vars/0", shape=(4, 10**9), dtype="f4")   # never written

    def external_link(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = h5py.ExternalLink("/etc/passwd", "/x")

    cases = {
        "truncated.keras": (data[:len(data) // 2], "truncated"),
        "truncated_end.keras": (data[:-30], "truncated"),
        "lambda.keras": (_zip(bad / "l.zip", {**members, "config.json": _config_with(
            members, lambda c: layer(c, 1).update(class_name="Lambda"))}), "Lambda"),
        "foreign_class.keras": (_zip(bad / "f.zip", {**members, "config.json": _config_with(
            members, lambda c: layer(c, 1).update(class_name="Evil"))}), "unknown layer class 'Evil'"),
        "foreign_module.keras": (_zip(bad / "m.zip", {**members, "config.json": _config_with(
            members, lambda c: layer(c, 1).update(module="os"))}), "module 'os'"),
        "option.keras": (_zip(bad / "o.zip", {**members, "config.json": _config_with(
            members, lambda c: layer(c, 1)["config"].update(quantization_config={
                "mode": "int8"}))}), "quantization_config"),   # (regularizers load: engineer F)
        "big_config.keras": (_zip(bad / "b.zip", {**members, "config.json": _config_with(
            members, lambda c: layer(c, 1)["config"].update(units=10**8))}), "does not match"),
        "wrong_shape.keras": (_zip(bad / "s.zip", {**members, "model.weights.h5": _h5_with(
            members, wrong_shape)}), "shape"),
        "huge_shape.keras": (_zip(bad / "h.zip", {**members, "model.weights.h5": _h5_with(
            members, huge_shape)}), "shape"),
        "link.keras": (_zip(bad / "x.zip", {**members, "model.weights.h5": _h5_with(
            members, external_link)}), "ExternalLink"),
        "dotdot.keras": (_zip(bad / "d.zip", {**members, "../evil.py": "print(1)"}), "\\.\\."),
        "extra.keras": (_zip(bad / "e.zip", {**members, "assets/x.txt": "x"}), "unexpected member"),
        "not_h5.keras": (_zip(bad / "n.zip", {**members, "model.weights.h5": b"garbage"}), "HDF5"),
        "no_weights.keras": (_zip(bad / "w.zip", {k: v for k, v in members.items()
                                                  if k != "model.weights.h5"}), "missing"),
    }
    for name, (content, words) in cases.items():
        target = tmp_path / name
        target.write_bytes(content if isinstance(content, bytes) else content.read_bytes())
        before = sorted(os.listdir(tmp_path)), sorted(os.listdir(os.getcwd()))
        with pytest.raises(ModelFileError, match=words):
            pynn.load_model(target)
        assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(os.getcwd()))) == before, name
    # weights-only files: wrong shapes and foreign datasets are refused, the model unchanged
    weights = model.get_weights()
    (tmp_path / "w.weights.h5").write_bytes(_h5_with(members, wrong_shape))
    with pytest.raises(ModelFileError, match="shape"):
        model.load_weights(tmp_path / "w.weights.h5")
    (tmp_path / "x.weights.h5").write_bytes(_h5_with(
        members, lambda f: f.create_dataset("layers/extra/vars/0", data=np.zeros(2, "f4"))))
    with pytest.raises(ModelFileError, match="does not have"):
        model.load_weights(tmp_path / "x.weights.h5")
    (tmp_path / "t.weights.h5").write_bytes(members["model.weights.h5"][:200])
    with pytest.raises(ModelFileError, match="damaged or truncated"):
        model.load_weights(tmp_path / "t.weights.h5")
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    shutil.rmtree(bad)
