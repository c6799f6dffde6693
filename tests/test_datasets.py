"""pynn.data: the NumPy tf.data Dataset, the streaming image_dataset_from_directory (Keras's
file order and split, label and color modes, resizing, determinism over workers, bounded
memory, errors from workers), PyDataset and load_img & co., on small folders of images
written with Pillow."""
import threading

import numpy as np
import pytest

import pynn
from pynn.data import Dataset

Image = pytest.importorskip("PIL.Image")


def solid(path, rgb, size=(4, 5)):
    """A PNG (lossless) of one colour, size (height, width)."""
    Image.fromarray(np.full(size + (3,), rgb, np.uint8)).save(path)


def tiny_tree(root):
    """root/a: 10.png 2.jpg B.PNG notes.txt; root/b: x.png sub/a.png; root/.hidden/h.png"""
    for d in ["a", "b/sub", ".hidden"]:
        (root / d).mkdir(parents=True)
    solid(root / "a" / "10.png", (10, 10, 10))
    Image.fromarray(np.full((4, 5, 3), 20, np.uint8)).save(root / "a" / "2.jpg", quality=100)
    solid(root / "a" / "B.PNG", (30, 30, 30))
    (root / "a" / "notes.txt").write_text("not an image")
    solid(root / "b" / "x.png", (200, 200, 200))
    solid(root / "b" / "sub" / "a.png", (210, 210, 210))
    solid(root / ".hidden" / "h.png", (0, 0, 0))
    return root


def rel(root, paths):
    return [str(p)[len(str(root)) + 1:] for p in paths]


def load(root, **kwargs):
    kwargs.setdefault("verbose", False)
    kwargs.setdefault("image_size", (4, 5))
    return pynn.utils.image_dataset_from_directory(root, **kwargs)


def batches(ds, epoch=0):
    return list(ds.iterate(epoch))


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert len(u) == len(v)
        for p, q in zip(u, v):
            assert p.dtype == q.dtype and p.shape == q.shape and p.tobytes() == q.tobytes()


# -- Keras's listing and split -----------------------------------------------------------

SORTED = ["a/10.png", "a/2.jpg", "a/B.PNG", "b/x.png", "b/sub/a.png"]


def test_files_are_listed_in_keras_order_and_split_as_keras(tmp_path, capsys):
    root = tiny_tree(tmp_path)
    ds = load(root, shuffle=False, batch_size=2, verbose=True)
    assert capsys.readouterr().out == "Found 5 files belonging to 2 classes.\n"
    assert ds.class_names == ["a", "b"]          # .hidden skipped
    assert rel(root, ds.file_paths) == SORTED
    assert len(ds) == 3 and ds.cardinality() == 3
    (x0, y0), (x1, y1), (x2, y2) = batches(ds)
    assert y0.dtype == np.int64 and list(np.concatenate([y0, y1, y2])) == [0, 0, 0, 1, 1]
    assert x0.dtype == np.float32 and x0.shape == (2, 4, 5, 3) and x0.flags.c_contiguous
    assert x0[0, 0, 0, 0] == 10.0 and x2[0, 0, 0, 0] == 210.0       # 0..255, not scaled
    # shuffle: Keras shuffles the sorted list with np.random.RandomState(seed)
    shuffled = list(SORTED)
    np.random.RandomState(3).shuffle(shuffled)
    labels = [0 if p.startswith("a") else 1 for p in shuffled]
    train = load(root, seed=3, validation_split=0.4, subset="training", verbose=True)
    assert capsys.readouterr().out == ("Found 5 files belonging to 2 classes.\n"
                                       "Using 3 files for training.\n")
    assert rel(root, train.file_paths) == shuffled[:3]
    tr, va = load(root, seed=3, validation_split=0.4, subset="both")
    assert rel(root, tr.file_paths) == shuffled[:3] and rel(root, va.file_paths) == shuffled[3:]
    assert tr.class_names == va.class_names == ["a", "b"]
    # the validation half of "both" is not reshuffled (Keras: shuffle=False there)
    (xv, yv), = batches(va, 5)
    assert list(yv) == labels[3:]
    assert [v[0, 0, 0] for v in xv] == [{"a/10.png": 10, "a/2.jpg": 20, "a/B.PNG": 30,
                                         "b/x.png": 200, "b/sub/a.png": 210}[p]
                                        for p in shuffled[3:]]


def test_explicit_labels_no_labels_and_class_names(tmp_path, capsys):
    root = tiny_tree(tmp_path)
    ds = load(root, labels=[1, 0, 1, 0, 1, 1], shuffle=False, batch_size=None)
    assert ds.class_names == ["0", "1"]
    # labels=list: every file from the top folder down (hidden folders too, as Keras),
    # sorted by folder then name
    assert rel(root, ds.file_paths) == [".hidden/h.png"] + SORTED
    assert [int(y) for _, y in ds] == [1, 0, 1, 0, 1, 1]
    only = load(root, labels=None, shuffle=False, batch_size=6, verbose=True)
    assert capsys.readouterr().out == "Found 6 files.\n"
    (x,), = batches(only)                 # the protocol: a 1-tuple
    assert isinstance(next(iter(only)), np.ndarray) and x.shape == (6, 4, 5, 3)
    picked = load(root, class_names=["b", "a"], shuffle=False, batch_size=None)
    assert rel(root, picked.file_paths) == SORTED[3:] + SORTED[:3]
    assert [int(y) for _, y in picked] == [0, 0, 1, 1, 1]
    sub = load(root, class_names=["b"], shuffle=False)
    assert len(sub.file_paths) == 2


@pytest.mark.parametrize("mode,dtype,shape,first", [
    ("int", np.int64, (5,), 0), ("binary", np.float32, (5, 1), [0.0]),
    ("categorical", np.float32, (5, 2), [1.0, 0.0])])
def test_label_modes(tmp_path, mode, dtype, shape, first):
    ds = load(tiny_tree(tmp_path), label_mode=mode, shuffle=False, batch_size=8)
    (x, y), = batches(ds)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y[0], first)
    if mode == "categorical":
        np.testing.assert_array_equal(y.argmax(1), [0, 0, 0, 1, 1])


@pytest.mark.parametrize("color_mode,channels", [("grayscale", 1), ("rgb", 3), ("rgba", 4)])
def test_color_modes(tmp_path, color_mode, channels):
    (tmp_path / "c").mkdir()
    solid(tmp_path / "c" / "p.png", (10, 200, 30))
    (x, _), = batches(load(tmp_path, color_mode=color_mode, shuffle=False))
    assert x.shape == (1, 4, 5, channels) and x.dtype == np.float32
    expected = {"grayscale": [np.asarray(Image.new("RGB", (1, 1), (10, 200, 30)).convert("L"))
                              [0, 0]],
                "rgb": [10, 200, 30], "rgba": [10, 200, 30, 255]}[color_mode]
    np.testing.assert_array_equal(x[0, 2, 3], expected)


def test_resize_crop_and_pad_to_aspect_ratio(tmp_path):
    (tmp_path / "c").mkdir()
    columns = np.array([10, 20, 30, 40, 50, 60], np.uint8)
    Image.fromarray(np.tile(columns, (2, 1))).save(tmp_path / "c" / "strip.png")   # 2 x 6

    def one(**kwargs):
        kwargs.setdefault("interpolation", "nearest")
        (x, _), = batches(load(tmp_path, color_mode="grayscale", shuffle=False, **kwargs))
        return x[0, :, :, 0]
    np.testing.assert_array_equal(one(image_size=(2, 3)), [[20, 40, 60]] * 2)
    # the largest centred window of the target ratio: columns 2..3
    np.testing.assert_array_equal(one(image_size=(2, 2), crop_to_aspect_ratio=True),
                                  [[30, 40]] * 2)
    # padded with two zero rows above and below (to 6 x 6), then resized to 3 x 3
    np.testing.assert_array_equal(one(image_size=(3, 3), pad_to_aspect_ratio=True),
                                  [[0, 0, 0], [20, 40, 60], [0, 0, 0]])
    big = one(image_size=6, interpolation="bilinear")
    assert big.shape == (6, 6) and 10 <= big.min() and big.max() <= 60


# -- determinism, epochs, memory ----------------------------------------------------------

def noisy_tree(root, classes=3, per_class=14, size=(6, 7)):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(
                root / f"class{c}" / f"{i:04d}.png")
    return root


def test_same_seed_same_batches_whatever_the_workers_and_new_order_per_epoch(tmp_path):
    root = noisy_tree(tmp_path)
    runs = {w: load(root, image_size=(5, 5), batch_size=4, seed=11, workers=w, prefetch=w + 1)
            for w in (1, 2, 4)}
    for epoch in (0, 1):
        ref = batches(runs[1], epoch)
        assert len(ref) == 11 and ref[-1][0].shape[0] == 2
        for w in (2, 4):
            assert_same(batches(runs[w], epoch), ref)
    e0, e1 = batches(runs[1], 0), batches(runs[1], 1)
    assert not all(a[1].tobytes() == b[1].tobytes() for a, b in zip(e0, e1))
    assert sorted(np.concatenate([b[1] for b in e0])) == sorted(np.concatenate([b[1] for b in e1]))
    # `for` passes are epochs 0, 1, ...
    ds = load(root, image_size=(5, 5), batch_size=4, seed=11, workers=2)
    assert_same([tuple(b) for b in ds], e0)
    assert_same([tuple(b) for b in ds], e1)
    # seed=None: drawn from pynn.utils.rng(), so set_random_seed repeats the run
    pynn.utils.set_random_seed(5)
    one = batches(load(root, image_size=(5, 5), batch_size=4))
    pynn.utils.set_random_seed(5)
    assert_same(batches(load(root, image_size=(5, 5), batch_size=4)), one)


def test_decoded_but_unconsumed_batches_never_exceed_the_prefetch_depth(tmp_path, monkeypatch):
    root = tmp_path / "many"
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    for i in range(2000):
        Image.fromarray(pixels).save(root / "xy"[i % 2] / f"{i:05d}.png", compress_level=0)
    depth = 3
    state = {"decoded": 0, "consumed": 0, "worst": 0}
    lock = threading.Lock()
    real = pynn.data.ImageFolderDataset._load_chunk

    def counted(self, indices):
        out = real(self, indices)
        with lock:
            state["decoded"] += 1
            state["worst"] = max(state["worst"], state["decoded"] - state["consumed"])
        return out
    monkeypatch.setattr(pynn.data.ImageFolderDataset, "_load_chunk", counted)
    ds = load(root, image_size=(4, 4), batch_size=16, seed=1, workers=3, prefetch=depth)
    n = 0
    for x, y in ds.iterate(0):
        with lock:
            state["consumed"] += 1
            state["worst"] = max(state["worst"], state["decoded"] - state["consumed"] + 1)
        n += len(x)
    assert n == 2000 and state["decoded"] == len(ds) == 125
    assert 1 <= state["worst"] <= depth, state


# -- errors --------------------------------------------------------------------------------

def run_with_timeout(fn, seconds=20):
    box = []

    def target():
        try:
            box.append(("ok", fn()))
        except BaseException as exc:      # noqa: BLE001 (inspected by the test)
            box.append(("error", exc))
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert box, "hangs"
    return box[0]


def test_a_corrupt_file_is_named_from_the_worker_or_skipped_with_one_warning(tmp_path):
    root = noisy_tree(tmp_path, classes=2, per_class=6)
    (root / "class1" / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ds = load(root, image_size=(5, 5), batch_size=3, seed=2, workers=3)
    kind, exc = run_with_timeout(lambda: batches(ds))
    assert kind == "error" and isinstance(exc, ValueError)
    assert "0003.png" in str(exc) and "class1" in str(exc) and "cannot read" in str(exc)
    skip = load(root, image_size=(5, 5), batch_size=3, seed=2, workers=3, on_error="skip")
    with pytest.warns(UserWarning, match="0003.png") as record:
        first = batches(skip, 0)
        batches(skip, 1)                 # the second epoch does not warn again
    assert len([w for w in record if "0003.png" in str(w.message)]) == 1
    assert sum(len(b[1]) for b in first) == 11


def test_an_exception_in_a_worker_propagates_without_a_hang():
    def boom(x):
        if x == 7:
            raise RuntimeError("seven is bad")
        return x
    ds = Dataset.from_tensor_slices(np.arange(50)).map(boom, num_parallel_calls=4).prefetch(3)
    kind, exc = run_with_timeout(lambda: list(ds))
    assert kind == "error" and isinstance(exc, RuntimeError) and "seven" in str(exc)


@pytest.mark.parametrize("kwargs,match", [
    (dict(label_mode="sparse"), "label_mode"),
    (dict(validation_split=0.2), "subset"),
    (dict(validation_split=0.2, subset="training"), "seed"),
    (dict(subset="training"), "validation_split"),
    (dict(validation_split=1.5, subset="training", seed=1), "validation_split"),
    (dict(interpolation="gaussian"), "Pillow"),
    (dict(interpolation="cubic-ish"), "interpolation"),
    (dict(data_format="channels_first"), "channels-last"),
    (dict(crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), "only one of"),
    (dict(label_mode="binary", class_names=["a"]), "exactly 2"),
    (dict(labels=[0, 1]), "len\\(labels\\)"),
    (dict(labels="folders"), "labels"),
    (dict(class_names=["a", "zebra"]), "class_names"),
    (dict(on_error="ignore"), "on_error"),
    (dict(workers=0), "workers"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_arguments_name_the_argument(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load(tiny_tree(tmp_path), **kwargs)


def test_bad_folders_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no images found in directory"):
        load(tmp_path)
    noisy_tree(tmp_path, classes=1, per_class=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty' holds no images"):
        load(tmp_path)


def test_pillow_missing_is_a_clear_import_error(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    for call in (lambda: pynn.utils.load_img(tmp_path / "x.png"),
                 lambda: pynn.utils.array_to_img(np.zeros((2, 2, 3))),
                 lambda: load(tmp_path)):
        with pytest.raises(ImportError, match=r'pynn\[image\]'):
            call()


# -- Dataset ------------------------------------------------------------------------------

def test_dataset_chaining_against_hand_results(tmp_path):
    x, y = np.arange(10), np.arange(10) * 10
    ds = Dataset.from_tensor_slices((x, y))
    assert len(ds) == 10
    b = ds.map(lambda a, c: (a * 2, c + 1), num_parallel_calls=pynn.data.AUTOTUNE).batch(4)
    got = list(b)
    assert len(b) == 3 and [list(p) for p, _ in got] == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]
    assert list(got[2][1]) == [81, 91]
    assert len(ds.batch(4, drop_remainder=True)) == 2
    assert [int(v) for v, _ in ds.batch(3).unbatch()] == list(range(10))
    with pytest.raises(TypeError, match="unknown"):
        len(ds.batch(3).unbatch())
    assert [int(v) for v, _ in ds.skip(3).take(4)] == [3, 4, 5, 6]
    assert len(ds.skip(3).take(4)) == 4 and len(ds.take(20)) == 10 and len(ds.skip(20)) == 0
    single = Dataset.from_tensor_slices(x)
    assert [int(v) for v in single.repeat(2)] == list(range(10)) * 2
    assert len(single.repeat(3)) == 30
    with pytest.raises(TypeError, match="infinite"):
        len(single.repeat())
    assert [int(v) for v in single.repeat().take(13)] == list(range(10)) + [0, 1, 2]
    assert [int(v) for v in single.prefetch(2)] == list(range(10))
    assert [t for t in single.take(2).iterate(0)] == [(0,), (1,)]
    # shuffle: a permutation, the same for the same seed and epoch, new per epoch
    sh = single.shuffle(4, seed=3)
    e0 = [int(v) for v in sh]
    e1 = [int(v) for v in sh]
    assert sorted(e0) == sorted(e1) == list(range(10)) and e0 != e1
    assert [t[0] for t in Dataset.from_tensor_slices(x).shuffle(4, seed=3).iterate(0)] == e0
    fixed = single.shuffle(10, seed=3, reshuffle_each_iteration=False)
    assert [int(v) for v in fixed] == [int(v) for v in fixed]
    # repeat reshuffles each repetition, identically on the next run
    twice = [int(v) for v in single.shuffle(10, seed=4).repeat(2)]
    assert sorted(twice[:10]) == sorted(twice[10:]) and twice[:10] != twice[10:]
    assert [int(v) for v in single.shuffle(10, seed=4).repeat(2)] == twice
    # cache: the first complete pass is kept (in memory or on disk)
    calls = []
    counted = single.map(lambda v: calls.append(int(v)) or v)
    mem = counted.shuffle(10, seed=1).cache()
    first = [int(v) for v in mem]
    assert [int(v) for v in mem] == first and len(calls) == 10
    disk = Dataset.from_tensor_slices((x, y)).map(lambda a, c: (calls.append(1) or a, c)) \
        .cache(str(tmp_path / "shards"))
    n = len(calls)
    one = [(int(a), int(c)) for a, c in disk]
    assert len(calls) == n + 10 and list(tmp_path.glob("shards*.npy"))
    again = Dataset.from_tensor_slices((x, y)).map(lambda a, c: (calls.append(1) or a, c)) \
        .cache(str(tmp_path / "shards"))
    assert [(int(a), int(c)) for a, c in again] == one and len(calls) == n + 10


def test_dataset_refuses_mismatched_slices_and_bad_counts():
    with pytest.raises(ValueError, match="same first dimension"):
        Dataset.from_tensor_slices((np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="batch_size"):
        Dataset.from_tensor_slices(np.zeros(3)).batch(0)
    with pytest.raises(ValueError, match="count"):
        Dataset.from_tensor_slices(np.zeros(3)).take(-2)


def test_directory_datasets_chain_like_any_dataset(tmp_path):
    ds = load(tiny_tree(tmp_path), shuffle=False, batch_size=None)
    scaled = ds.map(lambda img, label: (img / 255.0, label)).batch(2).prefetch(1)
    got = list(scaled.iterate(0))
    assert len(scaled) == 3 and got[0][0].shape == (2, 4, 5, 3)
    assert got[0][0].max() <= 1.0 and list(got[2][1]) == [1]


# -- PyDataset ----------------------------------------------------------------------------

class Squares(pynn.utils.PyDataset):
    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = n
        self.epochs = 0

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        x = np.full((2, 3), index, np.float32)
        return x, np.array([index * index, 1], np.int64)

    def on_epoch_end(self):
        self.epochs += 1


def test_py_dataset_batches_in_index_order_whatever_the_workers():
    plain = [tuple(b) for b in Squares(9)]
    assert len(plain) == 9
    for workers in (1, 3):
        source = pynn.data.adapt(Squares(9, workers=workers, max_queue_size=2))
        assert len(source) == 9
        got = list(source.iterate(0))
        assert_same(got, plain)
        assert all(isinstance(b, tuple) and b[0].flags.c_contiguous for b in got)
    shuffled = pynn.data.adapt(Squares(9, workers=3), shuffle=True)
    order = list(range(9))
    import random
    random.Random(4).shuffle(order)
    assert [int(b[1][0]) for b in shuffled.iterate(4)] == [i * i for i in order]
    ds = Squares(2)
    pynn.data.adapt(ds).on_epoch_end()
    assert ds.epochs == 1 and pynn.data.num_batches(ds) == 2


def test_py_dataset_errors_and_infinite_length():
    class Bad(pynn.utils.PyDataset):
        def __len__(self):
            return 6

        def __getitem__(self, index):
            if index == 4:
                raise KeyError("no batch four")
            return np.zeros(2)

    kind, exc = run_with_timeout(lambda: list(pynn.data.adapt(Bad(workers=3)).iterate(0)))
    assert kind == "error" and isinstance(exc, KeyError)

    class Endless(pynn.utils.PyDataset):
        @property
        def num_batches(self):
            return None

        def __getitem__(self, index):
            return (np.array([index]),)

    source = pynn.data.adapt(Endless(workers=2))
    with pytest.raises(TypeError, match="infinite"):
        len(source)
    assert pynn.data.num_batches(Endless()) is None
    it = source.iterate(0)
    assert [int(next(it)[0][0]) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()


# -- single images ------------------------------------------------------------------------

def test_load_img_img_to_array_array_to_img_save_img_round_trip(tmp_path):
    U = pynn.utils
    pixels = np.random.default_rng(0).integers(0, 256, (6, 8, 3)).astype(np.float32)
    U.save_img(tmp_path / "p.png", pixels, scale=False)
    img = U.load_img(tmp_path / "p.png")
    assert img.size == (8, 6) and img.mode == "RGB"
    x = U.img_to_array(img)
    assert x.dtype == np.float32 and x.shape == (6, 8, 3)
    np.testing.assert_array_equal(x, pixels)
    assert U.img_to_array(img, data_format="channels_first").shape == (3, 6, 8)
    gray = U.img_to_array(U.load_img(tmp_path / "p.png", color_mode="grayscale"))
    assert gray.shape == (6, 8, 1)
    small = U.load_img(tmp_path / "p.png", target_size=(3, 4))
    assert small.size == (4, 3)
    np.testing.assert_array_equal(U.img_to_array(small), pixels[1::2, 1::2])   # nearest
    assert U.load_img(tmp_path / "p.png", target_size=(3, 3), keep_aspect_ratio=True).size == (3, 3)
    scaled = U.img_to_array(U.array_to_img(pixels / 255.0))       # scale=True: min..max to 0..255
    assert scaled.min() == 0 and scaled.max() == 255
    assert U.array_to_img(np.zeros((2, 2, 4))).mode == "RGBA"
    with pytest.warns(UserWarning, match="RGBA"):
        U.save_img(tmp_path / "q.jpg", np.ones((2, 2, 4)))
    with pytest.raises(ValueError, match="rank 3"):
        U.array_to_img(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="interpolation"):
        U.load_img(tmp_path / "p.png", target_size=(3, 3), interpolation="area")


def test_large_jpegs_are_decoded_at_a_reduced_scale_close_to_a_full_decode(tmp_path):
    """A 256x256 JPEG resized to 32x32 is decoded at 64x64 (Pillow's draft, at least
    REDUCING_GAP times the target) before the resize: within a fraction of a level of the
    full decode on average; "nearest" keeps the full decode."""
    from PIL import Image
    from pynn.data import images
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    pic = np.stack([np.sin(7 * xx), np.cos(5 * yy), np.sin(9 * xx * yy)], -1) * 100 + 128
    pic = (pic + rng.normal(0, 8, pic.shape)).clip(0, 255).astype(np.uint8)
    path = tmp_path / "p.jpg"
    Image.fromarray(pic).save(path, quality=92)
    got = images.decode_image(path, (32, 32))
    with Image.open(path) as im:
        full = np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR), np.float32)
    diff = np.abs(got - full)
    assert 0 < diff.mean() < 1.0 and diff.max() <= 8
    with Image.open(path) as im:
        near = np.asarray(im.convert("RGB").resize((32, 32), Image.NEAREST), np.float32)
    np.testing.assert_array_equal(images.decode_image(path, (32, 32), interpolation="nearest"),
                                  near)


def test_decoding_workers_run_below_the_training_thread_priority(tmp_path):
    """The pool's threads are niced by WORKER_NICENESS (Linux: per-thread niceness), so the
    training threads keep their cores; the caller's own priority is untouched."""
    import os
    import threading
    from pynn.data import dataset as dataset_module
    if not hasattr(os, "getpriority") or not hasattr(threading, "get_native_id"):
        pytest.skip("no per-thread niceness on this platform")
    me = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def niceness(_):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen = list(dataset_module.ordered_map(niceness, range(4), workers=2, depth=2))
    assert seen == [min(me + dataset_module.WORKER_NICENESS, 19)] * 4
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == me
