"""pynn.datasets.mnist.load_data on IDX files the tests write (raw and gzipped)."""
import gzip
import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest

import pynn
from pynn.datasets import mnist


def idx_bytes(array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + \
        struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_set(folder, n_train=50, n_test=20, gz=False, names=mnist.FILES):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    os.makedirs(folder, exist_ok=True)
    for key, arr in arrays.items():
        data = idx_bytes(arr)
        name = names[key]
        if gz:
            data, name = gzip.compress(data), name + ".gz"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_reads_raw_and_gzipped_idx_files(tmp_path, gz):
    arrays = write_set(tmp_path, gz=gz)
    (xt, yt), (xs, ys) = pynn.datasets.mnist.load_data(tmp_path)
    for got, key in ((xt, "x_train"), (yt, "y_train"), (xs, "x_test"), (ys, "y_test")):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[key])
    assert xt.shape == (50, 28, 28) and ys.shape == (20,)


def test_mirror_spelling_and_mixed_compression(tmp_path):
    names = {k: v.replace("-idx", ".idx") for k, v in mnist.FILES.items()}
    arrays = write_set(tmp_path, names=names)
    os.rename(tmp_path / names["x_test"], tmp_path / "t10k-images.idx3-ubyte.tmp")
    data = open(tmp_path / "t10k-images.idx3-ubyte.tmp", "rb").read()
    (tmp_path / (mnist.FILES["x_test"] + ".gz")).write_bytes(gzip.compress(data))
    os.remove(tmp_path / "t10k-images.idx3-ubyte.tmp")
    (_, _), (xs, _) = mnist.load_data(str(tmp_path))
    np.testing.assert_array_equal(xs, arrays["x_test"])


def test_a_model_trains_on_it(tmp_path):
    write_set(tmp_path, n_train=64)
    (xt, yt), _ = mnist.load_data(tmp_path)
    model = pynn.Sequential([pynn.layers.Input((784,)), pynn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(xt.reshape(-1, 784) / 255.0, yt, epochs=1, verbose=0)


def test_missing_folder_and_files_say_what_is_needed(tmp_path):
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        mnist.load_data(tmp_path / "nowhere")
    write_set(tmp_path)
    os.remove(tmp_path / mnist.FILES["y_test"])
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        mnist.load_data(tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)     # lists what the folder holds
    with pytest.raises(ValueError, match="folder"):
        mnist.load_data(None)


@pytest.mark.parametrize("damage,words", [
    (lambda d: d[:len(d) - 100], "truncated"),
    (lambda d: d[:6], "truncated header"),
    (lambda d: b"\x00\x00\x08", "too short"),
    (lambda d: b"PK\x03\x04" + d[4:], "not an IDX file"),
    (lambda d: d + b"\x00" * 10, "bytes"),
    (lambda d: gzip.compress(d)[:200], "gzip"),
])
def test_malformed_files_raise_clear_errors(tmp_path, damage, words):
    write_set(tmp_path)
    path = tmp_path / mnist.FILES["x_train"]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=words) as info:
        mnist.load_data(tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_swapped_or_mismatched_files_are_refused(tmp_path):
    write_set(tmp_path)
    images, labels = tmp_path / mnist.FILES["x_test"], tmp_path / mnist.FILES["y_test"]
    swapped = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(swapped)
    with pytest.raises(ValueError, match="expected images"):
        mnist.load_data(tmp_path)
    write_set(tmp_path)
    labels.write_bytes(idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(ValueError, match="20 test images but 19 test labels"):
        mnist.load_data(tmp_path)


def test_keras_npz_is_accepted(tmp_path):
    arrays = write_set(tmp_path / "idx")
    np.savez(tmp_path / "mnist.npz", **arrays)
    (xt, _), (_, ys) = mnist.load_data(tmp_path / "mnist.npz")
    np.testing.assert_array_equal(xt, arrays["x_train"])
    np.testing.assert_array_equal(ys, arrays["y_test"])


def gzip_stream(parts):
    """The gzip bytes of the concatenation of `parts` (bytes, or (byte, count) runs written
    a MiB at a time), compressed as a stream so the test never holds the inflated data."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(comp.compress(part))
            continue
        byte, count = part
        block = byte * (1 << 20)
        for start in range(0, count, len(block)):
            out.append(comp.compress(block[:count - start]))
    out.append(comp.flush())
    return b"".join(out)


def test_a_gzip_bomb_is_refused_after_what_its_header_promises(tmp_path):
    """A gzipped IDX file whose header promises 10 images but which inflates to 64 MiB:
    refused as soon as it holds more than the header says, having inflated one bounded
    chunk (it used to be inflated whole)."""
    import tracemalloc
    arrays = write_set(tmp_path, gz=True)
    head = idx_bytes(arrays["x_train"][:10])
    path = tmp_path / (mnist.FILES["x_train"] + ".gz")
    path.write_bytes(gzip_stream([head, (b"\x00", 64 << 20)]))
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"inflates to more than the 7856 bytes its header "
                                             r"promises \(shape \(10, 28, 28\)\)") as info:
            mnist.load_data(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert peak < 8 << 20, peak


def test_absurd_header_dims_are_refused_before_reading(tmp_path):
    """Dims no file of this size could hold (a gzip stream inflates at most 1032 times) and
    dims beyond this machine's memory are refused before anything is allocated."""
    write_set(tmp_path)
    path = tmp_path / mnist.FILES["x_train"]
    huge = struct.pack(">BBBB3I", 0, 0, 0x08, 3, 2 ** 32 - 1, 2 ** 16, 2 ** 16) + b"\x00" * 784
    path.write_bytes(huge)                                    # raw: the size must match
    with pytest.raises(ValueError, match=r"promises shape \(4294967295, 65536, 65536\)"):
        mnist.load_data(tmp_path)
    path.unlink()
    gz = tmp_path / (mnist.FILES["x_train"] + ".gz")
    gz.write_bytes(gzip_stream([huge]))
    with pytest.raises(ValueError, match=r"more than a gzip file of \d+ bytes can inflate to"):
        mnist.load_data(tmp_path)


def test_data_beyond_memory_is_refused_naming_the_file(tmp_path, monkeypatch):
    write_set(tmp_path, gz=True)
    monkeypatch.setattr(pynn.arrays, "memory_bytes", lambda: 10_000)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: the IDX header's shape "
                                         r"\(50, 28, 28\) needs 38.3 KiB, more than this "
                                         r"machine's memory"):
        mnist.load_data(tmp_path)


def test_npz_whose_header_claims_more_than_it_holds_is_refused(tmp_path):
    """A Keras-style .npz whose x_train header claims a billion images it does not hold:
    refused from the headers (it used to allocate the claimed size)."""
    arrays = write_set(tmp_path / "idx")
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    fake = io.BytesIO()
    np.lib.format.write_array_header_1_0(fake, {"descr": "|u1", "fortran_order": False,
                                                "shape": (10 ** 9, 28, 28)})
    members["x_train.npy"] = fake.getvalue() + b"\x00" * 784
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match=r"x_train claims shape \(1000000000, 28, 28\)"):
        mnist.load_data(path)


def test_missing_data_is_a_file_not_found_and_a_value_error(tmp_path):
    for call in (lambda: mnist.load_data(tmp_path / "nowhere"), lambda: mnist.load_data(tmp_path)):
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert isinstance(info.value, ValueError)
    with pytest.raises(TypeError, match="path"):
        mnist.load_data(3.5)


def _within(seconds, fn):
    """fn()'s exception (or None), failing the test if it takes longer (a hang)."""
    import threading
    box = []

    def run():
        try:
            fn()
            box.append(None)
        except BaseException as exc:            # noqa: BLE001 (returned)
            box.append(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert box, f"still running after {seconds} s"
    return box[0]


def test_a_fifo_or_a_device_is_refused_not_read(tmp_path):
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        exc = _within(5, lambda p=path: mnist.read_idx(p))
        assert isinstance(exc, ValueError) and "regular" in str(exc), exc
