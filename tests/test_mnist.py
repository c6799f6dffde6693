"""pynn.datasets.mnist.load_data on IDX files the tests write (raw and gzipped)."""
import gzip
import os
import struct

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
