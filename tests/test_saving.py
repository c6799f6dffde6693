"""model.save / pynn.load_model / save_weights / load_weights: a zip of JSON and .npy,
no pickle, atomic writes, clear errors for broken or foreign files."""
import io
import json
import os
import pickletools
import zipfile

import numpy as np
import pytest

import pynn
from pynn import callbacks, layers
from pynn.saving import ModelFileError


def digits(n=400):
    (xt, yt), (xs, ys) = pynn.datasets.digits.load_data()
    return ((xt[:n].reshape(-1, 64) / 16).astype(np.float32), yt[:n]), \
        ((xs.reshape(-1, 64) / 16).astype(np.float32), ys)


def make(optimizer=None, seed=0, compile=True, **compile_kw):
    pynn.utils.set_random_seed(seed)
    model = pynn.Sequential([
        layers.Input((64,)),
        layers.Dense(24, activation="tanh", kernel_initializer=pynn.initializers.HeNormal(seed=3)),
        layers.LeakyReLU(0.1),
        layers.Dense(16, activation="gelu", use_bias=False),
        layers.Activation("relu"),
        layers.Dense(10, activation="softmax"),
    ], name="saved_net")
    if compile:
        model.compile(optimizer=optimizer or pynn.optimizers.Adam(0.003, beta_1=0.8),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], **compile_kw)
    return model


OPTIMIZERS = [lambda: pynn.optimizers.Adam(0.003, beta_1=0.8, epsilon=1e-6),
              lambda: pynn.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
              lambda: pynn.optimizers.SGD(0.05),
              lambda: pynn.optimizers.RMSprop(0.002, rho=0.8, momentum=0.5)]


@pytest.mark.parametrize("opt", range(len(OPTIMIZERS)))
def test_round_trip_predicts_identically_and_continues_training_bitwise(tmp_path, opt):
    (x, y), (xs, ys) = digits()
    path = tmp_path / "model.pynn"
    straight = make(OPTIMIZERS[opt]())
    straight.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)

    model = make(OPTIMIZERS[opt]())
    model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    model.save(path)
    loaded = pynn.load_model(path)
    assert loaded.name == "saved_net"
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 26
    assert loaded.predict(xs, verbose=0).tobytes() == model.predict(xs, verbose=0).tobytes()
    assert loaded.evaluate(xs, ys, verbose=0) == model.evaluate(xs, ys, verbose=0)

    loaded.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), straight.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_continued_training_with_shuffling_matches_when_reseeded(tmp_path):
    (x, y), _ = digits(200)
    model = make()
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.pynn")
    loaded = pynn.load_model(tmp_path / "m.pynn")
    pynn.utils.set_random_seed(42)
    model.fit(x, y, epochs=1, verbose=0)
    pynn.utils.set_random_seed(42)
    loaded.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_file_holds_json_and_plain_npy_only(tmp_path):
    (x, y), _ = digits(64)
    model = make()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.pynn"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "pynn_model.json"
        assert set(names) == {"pynn_model.json"} | {f"weights/{i:03d}.npy" for i in range(5)} | \
            {"optimizer/000/m.npy", "optimizer/000/v.npy"}
        config = json.loads(zf.read("pynn_model.json"))
        assert config["format"] == "pynn-model" and config["version"] == 1
        assert config["compile"]["loss"]["class_name"] == "SparseCategoricalCrossentropy"
        assert config["compile"]["metrics"] == ["accuracy"]
        assert config["optimizer_state"] == {"iterations": 2, "slots": [["m", "v"]]}
        for name in names[1:]:
            data = zf.read(name)
            assert data.startswith(b"\x93NUMPY")
            arr = np.load(io.BytesIO(data), allow_pickle=False)     # would raise on pickled data
            assert arr.dtype == np.float32
            # no pickle opcodes anywhere: a pickle stream starts with PROTO (0x80)
            header_end = data.index(b"\n") + 1
            assert b"\x80\x04" not in data[:header_end] and b"\x80\x05" not in data[:header_end]
        with pytest.raises(Exception):
            pickletools.dis(zf.read("pynn_model.json"))       # the config is not a pickle either


def test_uncompiled_and_unbuilt_models_round_trip(tmp_path):
    model = make(compile=False)
    model.save(tmp_path / "u.pynn")
    loaded = pynn.load_model(tmp_path / "u.pynn")
    assert not loaded.compiled
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    lazy = pynn.Sequential([layers.Dense(4), layers.Dense(2)])
    lazy.compile(optimizer="sgd", loss="mse")
    lazy.save(tmp_path / "lazy.pynn")
    again = pynn.load_model(tmp_path / "lazy.pynn")
    assert not again.built and again.compiled and len(again.layers) == 2


def test_save_and_load_weights(tmp_path):
    (x, y), (xs, _) = digits(64)
    model = make()
    model.fit(x, y, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.weights")
    other = make(seed=9)
    assert not np.array_equal(other.predict(xs, verbose=0), model.predict(xs, verbose=0))
    other.load_weights(tmp_path / "w.weights")
    np.testing.assert_array_equal(other.predict(xs, verbose=0), model.predict(xs, verbose=0))
    # a full model file works too, and a model of another shape is refused unchanged
    model.save(tmp_path / "full.pynn")
    make(seed=4).load_weights(tmp_path / "full.pynn")
    small = pynn.Sequential([layers.Input((64,)), layers.Dense(10)])
    before = small.get_weights()
    with pytest.raises(ValueError, match="weight arrays"):
        small.load_weights(tmp_path / "w.weights")
    for a, b in zip(small.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelFileError, match="pynn-model"):
        pynn.load_model(tmp_path / "w.weights")


def test_truncated_file_raises_a_clear_error(tmp_path):
    model = make()
    path = tmp_path / "m.pynn"
    model.save(path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 30):
        broken = tmp_path / f"cut{cut}.pynn"
        broken.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated" if cut >= 4 else "not a zip") as info:
            pynn.load_model(broken)
        assert str(broken) in str(info.value)
        assert isinstance(info.value, ValueError)


def test_corrupt_and_foreign_files_raise_clear_errors(tmp_path):
    model = make()
    (x, y), _ = digits(64)
    model.fit(x, y, epochs=1, verbose=0)                  # so the file holds optimizer state
    path = tmp_path / "m.pynn"
    model.save(path)
    data = bytearray(path.read_bytes())

    def write(name, members):
        p = tmp_path / name
        with zipfile.ZipFile(p, "w") as zf:
            for member, content in members.items():
                zf.writestr(member, content)
        return p

    with zipfile.ZipFile(path) as zf:
        original = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(original["pynn_model.json"])

    # flipped bytes inside a stored weight array: the zip CRC check catches it
    start = bytes(data).index(b"\x93NUMPY", 200)
    data[start + 300:start + 310] = b"\xff" * 10
    flipped = tmp_path / "flipped.pynn"
    flipped.write_bytes(bytes(data))
    cases = {
        flipped: "corrupt",
        (tmp_path / "text.pynn"): "not a zip",
        write("keras.keras", {"config.json": "{}", "model.weights.h5": b"x"}): "pynn_model.json",
        write("badjson.pynn", {**original, "pynn_model.json": b"{not json"}): "not valid JSON",
        write("format.pynn", {**original, "pynn_model.json": json.dumps({**config, "format": "x"})}): "format",
        write("version.pynn", {**original, "pynn_model.json": json.dumps({**config, "version": 7})}): "version",
        write("missing.pynn", {k: v for k, v in original.items() if k != "weights/002.npy"}): "missing",
        write("shape.pynn", {**original, "weights/000.npy": _npy(np.zeros((3, 3), np.float32))}): "shape",
        write("dtype.pynn", {**original, "weights/000.npy": _npy(np.zeros((64, 24), np.float16))}): "float32",
        write("big.pynn", {**original, "weights/000.npy": _npy(np.zeros((64, 24)))}): "more than",
        write("nan.pynn", {**original, "weights/001.npy": _npy(np.full(24, np.nan, np.float32))}): "NaN",
        write("notnpy.pynn", {**original, "weights/000.npy": b"garbage" * 10}): "npy",
        write("opt.pynn", {**original, "optimizer/000/v.npy": _npy(np.zeros(5, np.float32))}): "shape",
    }
    (tmp_path / "text.pynn").write_text("hello, not a model")
    for p, words in cases.items():
        with pytest.raises(ModelFileError, match=words):
            pynn.load_model(p)
    with pytest.raises(FileNotFoundError):
        pynn.load_model(tmp_path / "nothing-here.pynn")


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_loading_never_executes_code_from_the_file(tmp_path):
    """Class names come from allow-lists; a pickled object array is refused by np.load."""
    model = make()
    model.save(tmp_path / "m.pynn")
    with zipfile.ZipFile(tmp_path / "m.pynn") as zf:
        original = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(original["pynn_model.json"])

    def write(name, cfg=None, **replace):
        p = tmp_path / name
        with zipfile.ZipFile(p, "w") as zf:
            if cfg is not None:
                replace["pynn_model.json"] = json.dumps(cfg)
            for member, content in {**original, **replace}.items():
                zf.writestr(member, content)
        return p

    evil_layer = json.loads(json.dumps(config))
    evil_layer["model"]["layers"][0]["class_name"] = "os.system"
    with pytest.raises(ModelFileError, match="unknown layer class 'os.system'"):
        pynn.load_model(write("evil1.pynn", evil_layer))
    evil_opt = json.loads(json.dumps(config))
    evil_opt["compile"]["optimizer"]["class_name"] = "Optimizer"
    with pytest.raises(ModelFileError, match="unknown optimizer class"):
        pynn.load_model(write("evil2.pynn", evil_opt))
    evil_kw = json.loads(json.dumps(config))
    evil_kw["model"]["layers"][0]["config"]["__class__"] = "x"
    with pytest.raises(ModelFileError, match="cannot rebuild layer"):
        pynn.load_model(write("evil3.pynn", evil_kw))

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    buf = io.BytesIO()
    np.save(buf, np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError):
        pynn.load_model(write("pickle.pynn", **{"weights/000.npy": buf.getvalue()}))
    assert not (tmp_path / "pwned").exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    model = make()
    path = tmp_path / "m.pynn"
    model.save(path)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    (x, y), _ = digits(64)
    model.fit(x, y, epochs=1, verbose=0)
    monkeypatch.setattr(os, "fsync", crash)            # dies after writing, before the rename
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.pynn"]          # the temporary file was removed
    pynn.load_model(path)
    model.save(path)
    assert path.read_bytes() != good
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)


def test_checkpoint_resume_after_interruption(tmp_path):
    """The Keras workflow: ModelCheckpoint each epoch, load the last file, fit on."""
    (x, y), _ = digits(200)
    model = make()
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.pynn"))
    model.fit(x, y, epochs=2, shuffle=False, verbose=0, callbacks=[ckpt])
    resumed = pynn.load_model(tmp_path / "ckpt-02.pynn")
    resumed.fit(x, y, epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_model_config_round_trip():
    model = make()
    config = json.loads(json.dumps(model.get_config()))
    clone = pynn.Sequential.from_config(config)
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()
