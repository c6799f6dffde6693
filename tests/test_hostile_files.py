"""Hostile model files: whatever a file holds, pynn.load_model and model.load_weights
return a model or raise ModelFileError naming the file, and nothing else, in bounded
memory and time.

  - config values of the wrong type or out of range are refused by the constructors they
    go through, and the refusal names the file, its config member and the value;
  - a config that would build layers bigger than the file's weights is refused before the
    layers are built (no memory is spent on them);
  - zip members are checked before they are inflated: size against what the config and
    the file's size allow, compression method, encryption;
  - a path that is not a regular file (a FIFO, /dev/zero) is refused without being read;
  - a seeded fuzz of saved files (a Sequential MLP and CNN, a functional graph with shared
    and nested layers): flipped bytes, truncations, JSON edits, zip bombs, foreign
    compression methods, encryption flags; only ModelFileError, peak traced memory far
    below 200 MB, and no load takes long.
Refused constructor arguments as such: tests/test_layers.py, tests/test_bad_input.py.
"""
import contextlib
import io
import json
import os
import signal
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import pynn
from pynn import layers
from pynn.saving import ModelFileError

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"),
                                reason="the hang guard needs POSIX timers")


class Hang(BaseException):
    """Raised by deadline: a BaseException, so no `except OSError` (TimeoutError is one)
    or `except Exception` in the code under test can swallow it."""


@contextlib.contextmanager
def deadline(seconds):
    """Fail with Hang instead of hanging (a blocking open() is interrupted too); the
    alarm repeats every second until the block ends."""
    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- the models -------------------------------------------------------------------------------

def mlp():
    model = pynn.Sequential([layers.Input((12,)), layers.Dense(16, activation="relu"),
                             layers.Dropout(0.1, seed=4), layers.Dense(5, activation="softmax")],
                            name="mlp")
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model, np.ones((4, 12), np.float32), np.arange(4) % 5


def cnn():
    model = pynn.Sequential([layers.Input((8, 8, 2)),
                             layers.Conv2D(4, 3, padding="same", activation="relu"),
                             layers.BatchNormalization(), layers.MaxPooling2D(),
                             layers.Flatten(), layers.Dense(3, activation="sigmoid")], name="cnn")
    model.compile(optimizer=pynn.optimizers.SGD(0.05, momentum=0.9), loss="binary_crossentropy")
    return model, np.ones((4, 8, 8, 2), np.float32), np.ones((4, 3), np.float32)


def graph():
    a, b = pynn.Input((6,), name="a"), pynn.Input((6,), name="b")
    shared = layers.Dense(6, activation="tanh", name="shared")
    inner_in = pynn.Input((12,))
    inner = pynn.Model(inner_in, layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    joined = layers.Concatenate(name="joined")([shared(a), shared(b)])
    out = layers.Add(name="plus")([inner(joined), layers.Dense(4, name="skip")(joined)])
    model = pynn.Model([a, b], {"out": out, "score": layers.Dense(1, name="score")(joined)},
                       name="graph")
    model.compile(optimizer=pynn.optimizers.RMSprop(0.01),
                  loss={"out": "mse", "score": "mse"}, loss_weights={"out": 1.0, "score": 0.5})
    x = [np.ones((4, 6), np.float32), np.zeros((4, 6), np.float32)]
    return model, x, {"out": np.ones((4, 4), np.float32), "score": np.ones((4, 1), np.float32)}


MODELS = {"mlp": mlp, "cnn": cnn, "graph": graph}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (file bytes, {member: bytes}, a fresh model of the same architecture)}."""
    folder = tmp_path_factory.mktemp("saved")
    out = {}
    for name, make in MODELS.items():
        pynn.utils.set_random_seed(0)
        model, x, y = make()
        model.train_on_batch(x, y)                   # the file holds optimizer state
        path = folder / f"{name}.pynn"
        model.save(path)
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        out[name] = (path.read_bytes(), members, make()[0])
    return out


# ---- writing files by hand ------------------------------------------------------------------

def member(name, data, method=zipfile.ZIP_STORED, flags=0, declared=None, crc=None,
           raw=None):
    """One member for raw_zip: `data` compressed by `method` (stored or deflate), or the
    bytes `raw` as they are; `declared` overrides the size the directory gives."""
    if raw is None:
        if method == zipfile.ZIP_DEFLATED:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = c.compress(data) + c.flush()
        else:
            raw = data
    return (name.encode() if isinstance(name, str) else name, raw, method, flags,
            len(data) if declared is None else declared,
            zlib.crc32(data) if crc is None else crc)


def raw_zip(members, offsets=None):
    """A zip archive written by hand, so it can say what zipfile never writes: any
    compression method, flag or size.  offsets: where each central entry points (default:
    its own local header)."""
    out, central = io.BytesIO(), []
    for i, (name, raw, method, flags, size, crc) in enumerate(members):
        at = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc,
                              len(raw), size, len(name), 0) + name + raw)
        at = at if offsets is None else offsets[i]
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0,
                                   0x21, crc, len(raw), size, len(name), 0, 0, 0, 0, 0, at) + name)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def rezip(members, **override):
    """The members (a dict) written again by hand, JSON deflated as pynn writes it."""
    members = {**members, **override}
    return raw_zip([member(n, d, zipfile.ZIP_DEFLATED if n.endswith(".json") else
                           zipfile.ZIP_STORED) for n, d in members.items()])


def with_config(members, edit):
    config = json.loads(members["pynn_model.json"])
    edit(config)
    return rezip(members, **{"pynn_model.json": json.dumps(config).encode()})


def zero_bomb(gigabytes=2):
    """A raw deflate stream of `gigabytes` GiB of zeros in about 2 MB: one fully flushed
    block of 1 MiB of zeros repeated (each flushed block stands alone)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (gigabytes << 10) + c.flush()


def npy_claiming(shape, npy):
    """The .npy bytes `npy` with a header that claims `shape` (np.load would allocate it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": shape})
    header_end = npy.index(b"\n") + 1
    return buf.getvalue() + npy[header_end:]


def layer_configs(config):
    """Every layer config dict in a saved config (nested models included)."""
    found = []

    def walk(entry):
        if isinstance(entry, dict):
            if "class_name" in entry and isinstance(entry.get("config"), dict):
                found.append(entry)
            for v in entry.values():
                walk(v)
        elif isinstance(entry, list):
            for v in entry:
                walk(v)

    walk(config["model"])
    return found


def set_in_layers(key, value, class_name=None):
    def edit(config):
        hits = [e for e in layer_configs(config) if key in e["config"] and
                (class_name is None or e["class_name"] == class_name)]
        assert hits, (key, class_name)
        for e in hits:
            e["config"][key] = value
    return edit


def set_key(*path, value):
    def edit(config):
        at = config
        for k in path[:-1]:
            at = at[k]
        at[path[-1]] = value
    return edit


def load_both(path, fresh):
    """Load `path` both ways; return the ModelFileErrors raised (anything else fails)."""
    refused = []
    for load in (lambda: pynn.load_model(path), lambda: fresh.load_weights(path)):
        try:
            load()
        except ModelFileError as exc:
            assert str(path) in str(exc), str(exc)
            refused.append(exc)
    return refused


# ---- targeted cases -----------------------------------------------------------------------------

HOSTILE_CONFIGS = [
    ("mlp", "huge units", set_in_layers("units", 10**7, "Dense"),
     ["layer 'dense", "would create weight", "10000000", "pynn_model.json"]),
    ("cnn", "huge filters", set_in_layers("filters", 10**6, "Conv2D"),
     ["would create weight", "1000000", "pynn_model.json"]),
    ("cnn", "huge input", lambda c: [c["model"]["config"]["layers"][0]["config"].update(
        batch_shape=[None, 4096, 4096, 2])] + [e.pop("build_config", None) for e in
                                               c["model"]["config"]["layers"]],
     ["layer 'dense", "would create weight", "[16777216, 3]", "pynn_model.json"]),
    ("cnn", "input shape 2**40", lambda c: c["model"]["config"]["layers"][0]["config"].update(
        batch_shape=[None, 2**20, 2**20, 2]), ["shape", "at most 2147483647 values"]),
    ("mlp", "use_bias a string", set_in_layers("use_bias", "no", "Dense"),
     ["use_bias", "'no'", "boolean", "pynn_model.json", "Dense"]),
    ("cnn", "keepdims-like bool as int", set_in_layers("center", 1, "BatchNormalization"),
     ["center", "boolean", "Received: center=1"]),
    ("mlp", "units a float", set_in_layers("units", 16.0, "Dense"), ["units", "16.0"]),
    ("mlp", "units a bool", set_in_layers("units", True, "Dense"), ["units", "True"]),
    ("mlp", "trainable a string", set_in_layers("trainable", "yes", "Dense"),
     ["trainable", "'yes'"]),
    ("graph", "model trainable a string", set_key("model", "config", "trainable", value="no"),
     ["trainable", "'no'"]),
    ("mlp", "dropout rate NaN", set_in_layers("rate", float("nan"), "Dropout"), ["rate", "nan"]),
    ("mlp", "dropout seed 2**70", set_in_layers("seed", 2**70, "Dropout"), ["seed"]),
    ("cnn", "kernel_size a string", set_in_layers("kernel_size", "3", "Conv2D"),
     ["kernel_size", "'3'"]),
    ("cnn", "epsilon 1e308", set_in_layers("epsilon", 1e308, "BatchNormalization"),
     ["epsilon", "1e+308"]),
    ("mlp", "unknown backend", set_key("compile", "backend", value="tpu"),
     ["unknown backend 'tpu'", "'cpu'"]),
    ("mlp", "backend not a string", set_key("compile", "backend", value=["cpu"]),
     ["unknown backend"]),
    ("mlp", "iterations 2**70", set_key("optimizer_state", "iterations", value=2**70),
     ["iterations", str(2**70)]),
    ("mlp", "iterations a float", set_key("optimizer_state", "iterations", value=3.0),
     ["iterations", "3.0"]),
    ("mlp", "learning rate 1e308",
     set_key("compile", "optimizer", "config", "learning_rate", value=1e308),
     ["learning_rate", "1e+308"]),
    ("cnn", "nesterov a string", set_key("compile", "optimizer", "config", "nesterov", value="no"),
     ["nesterov", "'no'"]),
    ("graph", "loss weight 1e308", set_key("compile", "loss_weights", "score", value=1e308),
     ["loss_weights", "1e+308"]),
    ("mlp", "from_logits a string", set_key("compile", "loss", "config", "from_logits", value="no"),
     ["from_logits", "'no'"]),
    ("mlp", "weight shape huge", set_key("weights", 0, "shape", value=[10**5, 10**4]),
     ["weight 0", "[100000, 10000]", "weights/000.npy"]),
    ("mlp", "weight shape negative", set_key("weights", 0, "shape", value=[-12, 16]),
     ["weight 0", "-12"]),
    ("graph", "tensor reference garbage",
     lambda c: c["model"]["config"]["layers"][5]["inbound_nodes"][0]["args"][0].update(
         config={"keras_history": "x"}), ["tensor reference"]),
    ("graph", "call on numbers, not tensors",
     lambda c: c["model"]["config"]["layers"][5]["inbound_nodes"][0].update(args=[[1.0] * 6]),
     ["input tensors"]),
    ("graph", "a call waiting on itself",
     lambda c: c["model"]["config"]["layers"][5]["inbound_nodes"][0]["args"][0]["config"].update(
         keras_history=["skip", 5, 0]), ["unresolved"]),
    ("mlp", "version a bool", set_key("version", value=True), ["version"]),
    ("mlp", "model is a plain layer", set_key("model", value={
        "class_name": "Dense", "config": {"units": 3}}), ["expected a model"]),
]


@pytest.mark.parametrize("model,case,edit,words", HOSTILE_CONFIGS,
                         ids=[c[1] for c in HOSTILE_CONFIGS])
def test_hostile_config_values_are_refused_naming_file_member_and_value(tmp_path, saved, model,
                                                                        case, edit, words):
    _, members, fresh = saved[model]
    path = tmp_path / "hostile.pynn"
    path.write_bytes(with_config(members, edit))
    tracemalloc.start()
    try:
        with deadline(10), pytest.raises(ModelFileError) as info:
            pynn.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    for w in [str(path)] + words:
        assert w in message, (w, message)
    assert peak < 16 << 20, f"{case}: {peak / 2**20:.0f} MiB traced while refusing a small file"


def test_the_untouched_rewritten_files_load(tmp_path, saved):
    """The hand-written zips of the tests are valid: a refusal above is the edit's doing."""
    for name, (_, members, fresh) in saved.items():
        path = tmp_path / f"{name}.pynn"
        path.write_bytes(rezip(members))
        model = pynn.load_model(path)
        assert model.optimizer.iterations == 1
        fresh.load_weights(path)
        for a, b in zip(fresh.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


def zip_cases(members):
    """(case, file bytes, words the refusal must contain) for each zip-level attack."""
    npy = members["weights/000.npy"]
    others = {n: d for n, d in members.items() if n != "weights/000.npy"}
    entries = [member(n, d) for n, d in others.items()]
    bomb = zero_bomb(2)
    lying_bomb = member("weights/000.npy", npy, zipfile.ZIP_DEFLATED, raw=bomb)
    return [
        ("bomb declared 2 GiB", raw_zip(entries + [member(
            "weights/000.npy", b"", zipfile.ZIP_DEFLATED, declared=2 << 30, raw=bomb)]),
         ["inflate to", "more than the"]),
        ("bomb declared small", raw_zip(entries + [lying_bomb]), ["weights/000.npy"]),
        ("bomb config", raw_zip([member("pynn_model.json", b"", zipfile.ZIP_DEFLATED,
                                        declared=(2 << 30) - 1, raw=bomb)] + entries[1:]),
         ["inflate to"]),
        ("bzip2 member", raw_zip(entries + [member("weights/000.npy", npy, method=12)]),
         ["compression method 12"]),
        ("lzma member", raw_zip(entries + [member("weights/000.npy", npy, method=14)]),
         ["compression method 14"]),
        ("aes member", raw_zip(entries + [member("weights/000.npy", npy, method=99)]),
         ["compression method 99"]),
        ("encrypted member", raw_zip(entries + [member("weights/000.npy", npy, flags=1)]),
         ["encrypted"]),
        ("encrypted config", raw_zip([member("pynn_model.json", members["pynn_model.json"],
                                             flags=1)] + entries[1:] + [member("weights/000.npy", npy)]),
         ["encrypted"]),
        ("stored size lie", raw_zip(entries + [member("weights/000.npy", npy,
                                                      declared=len(npy) * 1000)]),
         ["weights/000.npy"]),
        ("bad UTF-8 config", rezip(members, **{"pynn_model.json": b"{\"format\": \"\xff\xfe\"}"}),
         ["not valid JSON"]),
        ("bad UTF-8 member name", raw_zip(entries + [member(b"weights/\xff\xfe.npy", npy,
                                                            flags=0x800)]), []),
        ("overlapping members", raw_zip(entries + [member("weights/000.npy", npy)] * 30,
                                        offsets=[0] * (len(entries) + 30)), []),
        ("member beyond the end", raw_zip(entries + [member("weights/000.npy", npy)],
                                          offsets=list(range(len(entries))) + [10**8]),
         ["beyond the end"]),
        ("deeply nested JSON", rezip(members, **{"pynn_model.json": b"[" * 100000 + b"]" * 100000}),
         []),
        ("npy header claims a huge array", rezip(members, **{"weights/000.npy": npy_claiming(
            (10**5, 10**4), npy)}), ["shape (100000, 10000)"]),
        ("empty file", b"", ["not a zip"]),
    ]


@pytest.mark.parametrize("model", list(MODELS))
def test_zip_level_attacks_are_refused_before_inflating(tmp_path, saved, model):
    _, members, fresh = saved[model]
    tracemalloc.start()
    try:
        for case, data, words in zip_cases(members):
            path = tmp_path / "attack.pynn"
            path.write_bytes(data)
            del data
            tracemalloc.reset_peak()
            with deadline(10):
                refused = load_both(path, fresh)
            peak = tracemalloc.get_traced_memory()[1]
            assert len(refused) == 2, f"{case}: loaded"
            for w in words:
                assert all(w in str(e) for e in refused), (case, w, [str(e) for e in refused])
            assert peak < 32 << 20, f"{case}: {peak / 2**20:.0f} MiB traced"
    finally:
        tracemalloc.stop()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_paths_that_are_not_regular_files_are_refused_without_reading(tmp_path, saved):
    fresh = saved["mlp"][2]
    fifo = tmp_path / "pipe.pynn"
    os.mkfifo(fifo)                       # opening it for reading would wait for a writer
    zero_link = tmp_path / "zero.pynn"
    zero_link.symlink_to("/dev/zero")     # reading it never ends
    for path, kind in ((fifo, "FIFO"), ("/dev/zero", "character device"),
                       (zero_link, "character device"), (tmp_path, "directory")):
        with deadline(5):
            refused = load_both(path, fresh)
        assert len(refused) == 2
        for exc in refused:
            assert "regular file" in str(exc) and kind in str(exc), str(exc)


# ---- the fuzz -----------------------------------------------------------------------------------

HOSTILE_VALUES = [None, True, False, 0, -1, 1, 3, 2**31, 2**70, -2**70, 10**7, 0.5, 1e308,
                  -1e308, float("nan"), float("inf"), "", "no", "relu", "x" * 5000, [], [None],
                  [1, 2, 3], [10**6, 10**6], [[1]], {}, {"class_name": "Dense"},
                  {"class_name": "__keras_tensor__", "config": {"keras_history": ["a", 9, 0]}}]


def json_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_paths(v, prefix + (i,))


def random_edit(rng, config):
    """Replace (or delete) one randomly chosen value anywhere in the config."""
    paths = [p for p in json_paths(config) if p]
    path = paths[rng.integers(len(paths))]
    at = config
    for k in path[:-1]:
        at = at[k]
    if isinstance(at, dict) and rng.random() < 0.15:
        del at[path[-1]]
    else:
        at[path[-1]] = HOSTILE_VALUES[rng.integers(len(HOSTILE_VALUES))]


TARGETED_EDITS = [
    set_in_layers("units", 10**6), set_in_layers("units", 2**40), set_in_layers("units", -3),
    set_in_layers("use_bias", "no"), set_in_layers("activation", "relux"),
    set_in_layers("kernel_initializer", {"class_name": "RandomNormal",
                                         "config": {"stddev": "big"}}),
    set_key("compile", "backend", value="tpu"), set_key("compile", "metrics", value=[5]),
    set_key("optimizer_state", "iterations", value=2**70),
    set_key("optimizer_state", "iterations", value=-1),
    set_key("optimizer_state", "slots", value=[["m", {"x": 1}]]),
    set_key("compile", "optimizer", "config", "learning_rate", value=1e308),
    set_key("compile", "optimizer", "class_name", value="Optimizer"),
    set_key("weights", 0, "shape", value=[2**31, 2**31]),
    set_key("weights", 0, value="dense/kernel"),
    set_key("model", "config", "layers", value=[{"class_name": "Flatten", "config": {}}] * 20000),
]


def mutations(rng, data, members):
    """The fuzz cases of one model file: (kind, bytes)."""
    for _ in range(50):
        buf = bytearray(data)
        for at in rng.integers(0, len(buf), size=rng.integers(1, 9)):
            buf[at] = rng.integers(256)
        yield "flip", bytes(buf)
    for cut in rng.integers(0, len(data), size=15):
        yield "truncate", data[:cut]
    for _ in range(60):
        config = json.loads(members["pynn_model.json"])
        for _ in range(rng.integers(1, 3)):
            random_edit(rng, config)
        yield "json edit", rezip(members, **{"pynn_model.json": json.dumps(config).encode()})
    for edit in TARGETED_EDITS:
        try:
            yield "targeted edit", with_config(members, edit)
        except (KeyError, IndexError, TypeError, AssertionError):
            pass                                   # not in this model's config
    names = sorted(members)
    for _ in range(10):                            # a member replaced by another's bytes
        a, b = rng.choice(len(names), size=2, replace=False)
        yield "member swap", rezip(members, **{names[a]: members[names[b]]})


@pytest.mark.parametrize("model", list(MODELS))
def test_fuzzed_files_raise_only_model_file_error_in_bounded_memory(tmp_path, saved, model):
    data, members, fresh = saved[model]
    rng = np.random.default_rng(["mlp", "cnn", "graph"].index(model) + 2024)
    path = tmp_path / "fuzzed.pynn"
    counts, worst = {}, (0, None)
    tracemalloc.start()
    try:
        for i, (kind, mutated) in enumerate(mutations(rng, data, members)):
            path.write_bytes(mutated)
            tracemalloc.reset_peak()
            try:
                with deadline(10):
                    refused = load_both(path, fresh)
            except Exception as exc:
                raise AssertionError(f"case {i} ({kind}): {type(exc).__name__}: {exc}") from exc
            peak = tracemalloc.get_traced_memory()[1]
            worst = max(worst, (peak, f"case {i} ({kind})"))
            counts[kind, bool(refused)] = counts.get((kind, bool(refused)), 0) + 1
    finally:
        tracemalloc.stop()
    assert worst[0] < 32 << 20, f"{worst[1]}: {worst[0] / 2**20:.0f} MiB traced"
    # the fuzz reaches the config checks, not just the zip layer
    assert counts.get(("json edit", True), 0) >= 20 and counts.get(("flip", True), 0) >= 30, counts
