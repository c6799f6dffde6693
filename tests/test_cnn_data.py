"""pynn.data.load_image_arrays (pynn 0.1's array-returning image_dataset_from_directory)
on a tree of real image files written with Pillow: PNG, JPEG, BMP and GIF, a text file to
ignore, a corrupt image, seeded splits."""
import os
import struct
import zlib

import numpy as np
import pytest

import pynn

Image = pytest.importorskip("PIL.Image")


def write_tree(root, per_class=6, corrupt=False):
    """root/cat (dark images) and root/dog (bright ones), each format in turn."""
    rng = np.random.default_rng(0)
    formats = ["png", "jpg", "bmp", "gif", "jpeg", "PNG"]
    for label, name in enumerate(["dog", "cat"]):      # created out of order on purpose
        os.makedirs(root / name / "more")
        for i in range(per_class):
            level = 40 if name == "cat" else 215
            pixels = np.clip(rng.normal(level, 10, size=(12 + i, 10, 3)), 0, 255).astype(np.uint8)
            folder = root / name / ("more" if i == 0 else "")
            Image.fromarray(pixels).save(folder / f"{name}{i}.{formats[i % len(formats)]}")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "stray.png").write_bytes(b"")               # outside any class folder: ignored
    if corrupt:
        (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_loads_every_format_with_alphabetical_labels(tmp_path):
    write_tree(tmp_path)
    data = pynn.data.load_image_arrays(tmp_path, image_size=(8, 6), shuffle=False)
    assert data.class_names == ["cat", "dog"]
    assert data.x.shape == (12, 8, 6, 3) and data.x.dtype == np.float32
    assert data.y.dtype == np.int64 and list(data.y) == [0] * 6 + [1] * 6
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    # cats are dark, dogs bright: labels follow the folder, whatever the format
    brightness = data.x.mean(axis=(1, 2, 3))
    assert np.all(brightness[data.y == 0] < 0.3) and np.all(brightness[data.y == 1] > 0.7)
    gray = pynn.data.load_image_arrays(tmp_path, image_size=(5, 5),
                                                  color_mode="grayscale", shuffle=False)
    assert gray.x.shape == (12, 5, 5, 1)
    x, y, names = gray                                   # a named tuple
    assert names == ["cat", "dog"]


def test_splits_are_disjoint_complete_and_repeatable(tmp_path):
    write_tree(tmp_path, per_class=10)
    load = pynn.data.load_image_arrays

    def fingerprint(d):
        return {d.x[i].tobytes() for i in range(len(d.x))}

    train = load(tmp_path, image_size=(6, 6), validation_split=0.3, subset="training", seed=7)
    val = load(tmp_path, image_size=(6, 6), validation_split=0.3, subset="validation", seed=7)
    assert len(train.x) == 14 and len(val.x) == 6
    assert not fingerprint(train) & fingerprint(val)
    everything = load(tmp_path, image_size=(6, 6), shuffle=False)
    assert fingerprint(train) | fingerprint(val) == fingerprint(everything)
    again = load(tmp_path, image_size=(6, 6), validation_split=0.3, subset="validation", seed=7)
    np.testing.assert_array_equal(again.x, val.x)
    np.testing.assert_array_equal(again.y, val.y)
    both = load(tmp_path, image_size=(6, 6), validation_split=0.3, subset="both", seed=7)
    np.testing.assert_array_equal(both[1].x, val.x)
    other = load(tmp_path, image_size=(6, 6), validation_split=0.3, subset="validation", seed=8)
    assert fingerprint(other) != fingerprint(val)


def test_a_corrupt_image_is_named_in_the_error(tmp_path):
    write_tree(tmp_path, corrupt=True)
    with pytest.raises(ValueError, match="broken.png"):
        pynn.data.load_image_arrays(tmp_path, image_size=(4, 4))


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_size=(0, 4)), "image_size"),
    (dict(color_mode="cmyk"), "color_mode"),
    (dict(validation_split=0.2), "subset"),
    (dict(subset="training"), "validation_split"),
    (dict(validation_split=1.5, subset="training", seed=1), "validation_split"),
    (dict(validation_split=0.2, subset="training"), "seed"),
    (dict(validation_split=0.2, subset="testing", seed=1), "subset"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    write_tree(tmp_path)
    with pytest.raises(ValueError, match=match):
        pynn.data.load_image_arrays(tmp_path, **kwargs)


def test_missing_or_empty_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pynn.data.load_image_arrays(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no class subfolders"):
        pynn.data.load_image_arrays(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        pynn.data.load_image_arrays(tmp_path)


def test_clear_error_without_pillow(tmp_path, monkeypatch):
    import builtins
    write_tree(tmp_path)
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(ImportError, match="Pillow"):
        pynn.data.load_image_arrays(tmp_path, image_size=(4, 4))


def test_a_cnn_learns_from_the_folder(tmp_path):
    write_tree(tmp_path, per_class=10)
    data = pynn.data.load_image_arrays(tmp_path, image_size=(8, 8), seed=1)
    pynn.utils.set_random_seed(0)
    L = pynn.layers
    model = pynn.Sequential([L.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu"),
                             L.GlobalAveragePooling2D(), L.Dense(1, activation="sigmoid")])
    model.compile(optimizer=pynn.optimizers.Adam(0.05), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x, data.y, epochs=30, verbose=0)
    assert model.evaluate(data.x, data.y, verbose=0)[1] == 1.0


def bomb_png(width, height):
    """A valid black 1-bit PNG of width x height pixels, a few KB on disk: its decoded
    image would take width * height bytes or more (Pillow keeps a byte per pixel)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)             # filter byte, then the packed pixels
    idat = b"".join(comp.compress(row * 100) for _ in range(height // 100)) + \
        comp.compress(row * (height % 100)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_an_image_bomb_is_refused_from_its_header(tmp_path, side):
    """A PNG of a few KB declaring 10000 x 10000 pixels (over pynn.data.MAX_IMAGE_PIXELS,
    under Pillow's own error threshold) or 20000 x 20000 (over both) is refused naming the
    file, before it is decoded; it used to be decoded whole (hundreds of MB)."""
    write_tree(tmp_path)
    bomb = tmp_path / "dog" / "bomb.png"
    bomb.write_bytes(bomb_png(side, side))
    assert bomb.stat().st_size < 100_000
    assert struct.unpack(">II", bomb.read_bytes()[16:24]) == (side, side)    # IHDR
    with pytest.raises(ValueError, match="bomb.png") as info:
        pynn.data.load_image_arrays(tmp_path, image_size=(4, 4))
    assert f"{side} x {side}" in str(info.value) or "decompression bomb" in str(info.value)
    if side == 10_000:
        assert "refused before decoding" in str(info.value)


def test_the_decode_bound_is_pynn_data_max_image_pixels(tmp_path, monkeypatch):
    write_tree(tmp_path)                     # images of 12..17 x 10 pixels
    monkeypatch.setattr(pynn.data, "MAX_IMAGE_PIXELS", 139)
    with pytest.raises(ValueError, match=r"cat2.bmp' declares 10 x 14 pixels, more than the 139"):
        pynn.data.load_image_arrays(tmp_path, image_size=(4, 4), shuffle=False)
    with pytest.raises(ValueError, match=r"image_size of at most 139 pixels.*received "
                                         r"image_size=\(10, 14\)"):
        pynn.data.load_image_arrays(tmp_path, image_size=(10, 14))
    monkeypatch.setattr(pynn.data, "MAX_IMAGE_PIXELS", 17 * 10)
    data = pynn.data.load_image_arrays(tmp_path, image_size=(17, 10))
    assert data.x.shape == (12, 17, 10, 3)


def test_image_sizes_that_cannot_fit_are_refused_naming_image_size(tmp_path, monkeypatch):
    """image_size=(30000, 30000) used to raise MemoryError (or fill the memory); it is refused
    before any allocation, as is an x array larger than this machine's memory."""
    write_tree(tmp_path)
    for size in [(30000, 30000), (2 ** 40, 1), (1, 2 ** 63)]:
        with pytest.raises(ValueError, match=r"image_size of at most 89478485 pixels.*"
                                             rf"image_size=\({size[0]}, {size[1]}\)"):
            pynn.data.load_image_arrays(tmp_path, image_size=size)
    monkeypatch.setattr(pynn.arrays, "memory_bytes", lambda: 10_000)
    with pytest.raises(ValueError, match=r"x for 12 images of image_size=\(8, 6\) with 3 "
                                         r"channels \(float32\) needs 6.8 KiB|x for 12 images of "
                                         r"image_size=\(20, 20\) with 3 channels"):
        pynn.data.load_image_arrays(tmp_path, image_size=(20, 20))


def test_a_missing_directory_is_a_file_not_found_and_a_value_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        pynn.data.load_image_arrays(tmp_path / "nowhere")
    assert isinstance(info.value, ValueError)


def test_a_fifo_named_like_an_image_is_refused_not_read(tmp_path):
    import threading
    write_tree(tmp_path, per_class=2)
    os.mkfifo(tmp_path / "cat" / "zz_fifo.png")
    box = []

    def run():
        try:
            pynn.data.load_image_arrays(tmp_path, image_size=(8, 8))
            box.append(None)
        except BaseException as exc:            # noqa: BLE001 (checked below)
            box.append(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert box, "image_dataset_from_directory hangs on a FIFO"
    assert isinstance(box[0], ValueError) and "zz_fifo.png" in str(box[0]), box[0]


def test_the_hot_dog_example_streams_augments_and_saves(tmp_path, capsys):
    """examples/hotdog_classifier.py on its synthetic folder: it prints the validation
    accuracy and where the model and the history plot are, and the model it saved loads."""
    pytest.importorskip("PIL")
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "hotdog_classifier.py")
    spec = importlib.util.spec_from_file_location("hotdog_classifier", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out_dir = tmp_path / "out"
    with pytest.warns(UserWarning, match="shuffle=True"):        # Keras 3 warns the same
        assert example.main(["--epochs", "2", "--size", "24", "--output", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy:" in out and str(out_dir / "hotdog.pynn") in out
    model = pynn.load_model(out_dir / "hotdog.pynn")
    assert [type(l).__name__ for l in model.layers][:2] == ["Sequential", "Rescaling"]
    try:
        import matplotlib  # noqa: F401
        assert (out_dir / "history.png").exists()
    except ImportError:
        assert "no history plot" in out
