"""model.save / pynn.load_model / save_weights / load_weights: a zip of JSON and .npy,
no pickle, atomic writes, clear errors for broken or foreign files.  Sequential models and
functional graphs (shared layers, nested models, frozen layers, training=False calls) load
to predict bitwise alike and go on training bitwise as if never interrupted; the files of
the previous release (format version 1, tests/data) still load, predict and train."""
import io
import json
import os
import pathlib
import pickletools
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import pynn
from pynn import callbacks, layers
from pynn.saving import ModelFileError

from conftest import RTOL_ELEMENTWISE, assert_bitwise, assert_close

DATA = pathlib.Path(__file__).parent / "data"


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
              lambda: pynn.optimizers.RMSprop(0.002, rho=0.8, momentum=0.5),
              lambda: pynn.optimizers.AdamW(0.003, weight_decay=0.01, amsgrad=True),
              lambda: pynn.optimizers.Adagrad(0.05, initial_accumulator_value=0.2),
              lambda: pynn.optimizers.Adadelta(1.0, rho=0.9),
              lambda: pynn.optimizers.Adamax(0.003),
              lambda: pynn.optimizers.Nadam(0.003),
              lambda: pynn.optimizers.Lion(0.0005, weight_decay=0.1)]


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
        assert config["format"] == "pynn-model" and config["version"] == 2
        assert config["model"]["class_name"] == "Sequential"
        assert [w["path"] for w in config["weights"]] == [v.path for v in model.weights]
        assert config["compile"]["loss"]["class_name"] == "SparseCategoricalCrossentropy"
        assert config["compile"]["metrics"] == ["accuracy"]
        assert config["optimizer_state"] == {"iterations": 2, "slots": [["m", "v"]],
                                             "weights": [v.path for v in model.weights]}
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


@pytest.mark.parametrize("change", ["freeze", "unfreeze"])
def test_flags_changed_after_compile_load_with_the_state_carried_over(tmp_path, change):
    """Keras's transfer-learning steps: train, freeze (or unfreeze) a layer, save before
    compiling again.  The flag takes effect at the next compile, which loading does; the
    state of every weight trainable both times is carried over, as a recompile carries it,
    so the loaded model and the recompiled original go on bitwise alike."""
    (x, y), _ = digits(96)
    model = make()
    first = model.layers[0]
    if change == "unfreeze":
        first.trainable = False
        model.compile(optimizer=model.optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    first.trainable = change == "unfreeze"
    model.save(tmp_path / "m.pynn")
    loaded = pynn.load_model(tmp_path / "m.pynn")
    assert loaded.layers[0].trainable is first.trainable
    assert [v.path for v in loaded.trainable_weights] == [v.path for v in model.trainable_weights]
    model.compile(optimizer=model.optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    for m in (model, loaded):
        m.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 6
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert_bitwise(a, b)


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
        with pytest.raises(ModelFileError, match="the file is truncated" if cut >= 4 else "not a zip") as info:
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
        write("keras.keras", {"config.json": "{}", "model.weights.h5": b"x"}): "Functional or Sequential",
        write("other.pynn", {"readme.txt": "hi"}): "pynn_model.json",
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
    evil_layer["model"]["config"]["layers"][1]["class_name"] = "os.system"
    with pytest.raises(ModelFileError, match="unknown layer class 'os.system'"):
        pynn.load_model(write("evil1.pynn", evil_layer))
    evil_opt = json.loads(json.dumps(config))
    evil_opt["compile"]["optimizer"]["class_name"] = "Optimizer"
    with pytest.raises(ModelFileError, match="unknown optimizer class"):
        pynn.load_model(write("evil2.pynn", evil_opt))
    evil_kw = json.loads(json.dumps(config))
    evil_kw["model"]["config"]["layers"][1]["config"]["__class__"] = "x"
    with pytest.raises(ModelFileError, match="cannot rebuild layer"):
        pynn.load_model(write("evil3.pynn", evil_kw))
    evil_model = json.loads(json.dumps(config))
    evil_model["model"]["class_name"] = "subprocess.Popen"
    with pytest.raises(ModelFileError, match="unknown layer class 'subprocess.Popen'"):
        pynn.load_model(write("evil4.pynn", evil_model))

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


SAVER = r"""
import os, sys, time
import pynn
from pynn import layers
target, mode = sys.argv[1], sys.argv[2]
pynn.utils.set_random_seed(0)
model = pynn.Sequential([layers.Input((256,)), layers.Dense(512), layers.Dense(256)])
if mode == "stall":           # a slow disk: the save stops in fsync, its temporary file written
    def stall(fd):
        print("in save", flush=True)
        time.sleep(120)
    os.fsync = stall
else:
    print("saving", flush=True)
while True:
    model.save(target)
"""


def _temps(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


def test_saves_killed_mid_write_leave_one_temp_file_which_the_next_save_removes(tmp_path):
    """kill -9 during a save leaves its temporary file (nothing can remove it then); the
    next save to the same target removes it, so there is never more than one."""
    target = tmp_path / "m.pynn"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(pathlib.Path(pynn.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    rng = np.random.default_rng(7)
    stale = []
    for mode in ["stall", "stall", "stall", "loop", "loop", "loop"]:
        child = subprocess.Popen([sys.executable, "-c", SAVER, str(target), mode],
                                 stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert child.stdout.readline().strip() in ("in save", "saving")
            if mode == "stall" and not stale:   # a live save's file is not touched by another
                live = _temps(tmp_path)
                make().save(target)
                assert _temps(tmp_path) == live and len(live) == 1, (live, _temps(tmp_path))
            if mode == "loop":              # saving over and over: one temporary file at a time
                end = time.monotonic() + rng.uniform(0.05, 0.3)
                while time.monotonic() < end:
                    assert len(_temps(tmp_path)) <= 1, _temps(tmp_path)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        left = _temps(tmp_path)
        assert len(left) <= 1, left
        if mode == "stall":                 # killed inside a save: its file is left, alone
            assert len(left) == 1 and left[0] not in stale, (left, stale)
            stale += left
        if target.exists():                 # the target is always a whole model
            pynn.load_model(target, compile=False)
    make().save(target)
    assert os.listdir(tmp_path) == ["m.pynn"]
    pynn.load_model(target)


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


# ---- functional graphs ---------------------------------------------------------------------

def graph(seed=0, dropout_seed=11):
    """Two inputs, a shared layer, a nested functional base (batch normalization) called
    with training=False, a frozen nested Sequential, a frozen layer, a seeded Dropout, and
    two outputs."""
    pynn.utils.set_random_seed(seed)
    base_in = pynn.Input((6,), name="base_in")
    base = pynn.Model(base_in, layers.BatchNormalization(name="base_bn")(
        layers.Dense(6, activation="tanh", name="base_dense")(base_in)), name="base")
    frozen = pynn.Sequential([layers.Input((6,)), layers.Dense(6, activation="relu",
                                                                name="frozen_dense")],
                             name="frozen")
    frozen.trainable = False
    a, b = pynn.Input((8,), name="a"), pynn.Input((8,), name="b")
    shared = layers.Dense(6, activation="gelu", name="shared")
    ha, hb = shared(a), shared(b)
    mixed = layers.Concatenate(name="mixed")([base(ha, training=False), frozen(hb),
                                              layers.Subtract(name="diff")([ha, hb])])
    mixed = layers.BatchNormalization(name="bn")(mixed)
    fixed = layers.Dense(8, activation="relu", name="fixed")
    fixed.trainable = False
    h = layers.Dropout(0.3, seed=dropout_seed, name="drop")(fixed(mixed))
    model = pynn.Model({"a": a, "b": b},
                       {"digit": layers.Dense(10, activation="softmax", name="digit")(h),
                        "ink": layers.Dense(1, name="ink")(h)}, name="graph")
    model.compile(optimizer=pynn.optimizers.Adam(0.003),
                  loss={"digit": "sparse_categorical_crossentropy", "ink": "mse"},
                  loss_weights={"ink": 0.5}, metrics={"digit": ["accuracy"]})
    return model


def graph_data(n=200):
    (x, y), _ = digits(n)
    return {"a": x[:, :8], "b": x[:, 8:16]}, {"digit": y, "ink": x.mean(axis=1, keepdims=True)}


@pytest.mark.parametrize("dropout_seed", [11, None])
def test_graph_round_trip_continues_training_bitwise(tmp_path, dropout_seed):
    """2 epochs + save + load + 1 epoch == 3 epochs, bitwise, for a graph with every kind
    of structure a file must keep (a Dropout without a seed keeps the one it drew)."""
    x, y = graph_data()
    straight = graph(dropout_seed=dropout_seed)
    straight.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    model = graph(dropout_seed=dropout_seed)
    model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    model.save(tmp_path / "graph.pynn")
    loaded = pynn.load_model(tmp_path / "graph.pynn")
    assert type(loaded) is pynn.Model and loaded.get_config() == model.get_config()
    assert [(l.name, l.trainable) for l in loaded.layers] == \
        [(l.name, l.trainable) for l in model.layers]
    assert loaded.get_layer("frozen").trainable is False
    assert loaded.get_layer("frozen").layers[0].trainable is False
    assert [v.path for v in loaded.trainable_weights] == [v.path for v in model.trainable_weights]
    assert loaded.optimizer.iterations == model.optimizer.iterations == 14
    for name in ("digit", "ink"):
        assert_bitwise(loaded.predict(x, verbose=0)[name], model.predict(x, verbose=0)[name])
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    frozen = {v.path: v.numpy() for v in loaded.non_trainable_weights
              if not v.path.startswith("bn/")}
    loaded.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), straight.get_weights()):
        assert_bitwise(a, b)
    for v in loaded.non_trainable_weights:      # frozen layers and the base's statistics
        if v.path in frozen:
            assert_bitwise(v.numpy(), frozen[v.path], err_msg=v.path)


def test_graph_weights_file_and_to_json(tmp_path):
    x, _ = graph_data(16)
    model = graph()
    model.save_weights(tmp_path / "g.weights.pynn")
    rebuilt = pynn.models.model_from_json(model.to_json())
    rebuilt.load_weights(tmp_path / "g.weights.pynn")
    for name in ("digit", "ink"):
        assert_bitwise(rebuilt.predict(x, verbose=0)[name], model.predict(x, verbose=0)[name])


# ---- files of the previous release -----------------------------------------------------------

def _file_arrays(path, prefix):
    with zipfile.ZipFile(path) as zf:
        return {name[len(prefix):-4]: np.load(io.BytesIO(zf.read(name)), allow_pickle=False)
                for name in zf.namelist() if name.startswith(prefix)}


@pytest.mark.parametrize("name,optimizer,slots", [("mlp", "Adam", ["m", "v"]),
                                                  ("cnn", "SGD", ["momentum"])])
def test_version_1_files_load_predict_and_go_on_training(name, optimizer, slots):
    path = DATA / f"v1_{name}.pynn"
    x = np.load(DATA / f"v1_{name}_x.npy")
    saved = np.load(DATA / f"v1_{name}_pred.npy")
    model = pynn.load_model(path)
    assert type(model.optimizer).__name__ == optimizer and model.optimizer.iterations == 6
    assert_close(model.predict(x, verbose=0), saved, rtol=RTOL_ELEMENTWISE)
    state = _file_arrays(path, "optimizer/000/")
    assert sorted(state) == slots
    now = model.optimizer.state_arrays()
    for slot in slots:
        assert_bitwise(now[slot], state[slot])
    # the next step reads the saved state: a fresh optimizer steps elsewhere
    y = saved.argmax(axis=1) if name == "mlp" else (saved > 0.5).astype(np.float32)
    fresh = pynn.load_model(path, compile=False)
    fresh.compile(optimizer=type(model.optimizer).from_config(model.optimizer.get_config()),
                  loss=model.loss, metrics=["accuracy"])
    model.train_on_batch(x, y)
    fresh.train_on_batch(x, y)
    assert model.optimizer.iterations == 7
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(),
                                                        fresh.get_weights()))
    first = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=30, batch_size=5, verbose=0)
    assert model.evaluate(x, y, verbose=0)[0] < first


def test_version_1_weights_file_loads():
    model = pynn.load_model(DATA / "v1_cnn.pynn", compile=False)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(DATA / "v1_cnn.weights.pynn")
    x = np.load(DATA / "v1_cnn_x.npy")
    assert_close(model.predict(x, verbose=0), np.load(DATA / "v1_cnn_pred.npy"),
                 rtol=RTOL_ELEMENTWISE)


@pytest.mark.parametrize("name,cls", [("adamw", "AdamW"), ("Adagrad", "Adagrad"),
                                      ("adadelta", "Adadelta"), ("ADAMAX", "Adamax"),
                                      ("nadam", "Nadam"), ("lion", "Lion")])
def test_optimizer_names_resolve_as_keras_does_and_configs_round_trip(name, cls):
    opt = pynn.optimizers.get(name)
    assert type(opt).__name__ == cls
    config = opt.get_config()
    clone = type(opt).from_config(config)
    assert clone.get_config() == config and clone.hyper() == opt.hyper()
    assert config["weight_decay"] == (0.004 if cls == "AdamW" else None)
