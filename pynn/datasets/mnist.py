"""MNIST from IDX files you already have (nothing is downloaded).

    (x_train, y_train), (x_test, y_test) = pynn.datasets.mnist.load_data("~/data/mnist")

`path` is a folder holding the four files of the MNIST distribution, raw or gzipped
(the gzip magic number decides, not the name):

    train-images-idx3-ubyte    train-labels-idx1-ubyte
    t10k-images-idx3-ubyte     t10k-labels-idx1-ubyte

each optionally ending in ".gz"; the spelling "train-images.idx3-ubyte" of some mirrors is
accepted too.  Fashion-MNIST and other data sets in the same layout load the same way.
Keras's "mnist.npz" (arrays x_train, y_train, x_test, y_test) is accepted as `path` too.

The IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes,
a type code (0x08: unsigned byte), the number of dimensions, then one 32-bit big-endian
size per dimension, then the values in row-major order.
"""
import gzip
import os
import zipfile
import zlib

import numpy as np

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IDXFormatError(ValueError):
    """A file that is not a well-formed IDX file (or not the one expected)."""


def read_idx(filename):
    """The array stored in one IDX file (raw or gzipped), as a NumPy array of the stored
    type (uint8 for MNIST) and shape."""
    filename = os.fspath(filename)
    with open(filename, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXFormatError(f"{filename}: a gzip file that cannot be decompressed ({exc}); "
                                 "is it truncated?") from None
    if len(data) < 4:
        raise IDXFormatError(f"{filename}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or data[3] == 0:
        raise IDXFormatError(f"{filename}: not an IDX file (header bytes {data[:4].hex()}, expected "
                             "00 00, a type code such as 08, and a number of dimensions)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{filename}: truncated header ({len(data)} bytes, a {ndim}-d IDX header "
                             f"needs {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise IDXFormatError(f"{filename}: the header promises shape {shape} ({expected} bytes in all), "
                             f"the file has {len(data)} bytes; it is truncated or not this data")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder, base):
    variants = [base, base.replace("-idx", ".idx")]
    for name in variants:
        for candidate in (name, name + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


def load_data(path):
    """((x_train, y_train), (x_test, y_test)) as keras.datasets.mnist.load_data() returns
    them: uint8 images (n, 28, 28) and uint8 labels (n,), read from the IDX files in the
    folder `path` (or from a Keras-style mnist.npz file)."""
    if path is None:
        raise ValueError("mnist.load_data: expected the folder holding the MNIST IDX files; pynn "
                         "downloads nothing")
    path = os.path.expanduser(os.fspath(path))
    if os.path.isfile(path) and path.endswith(".npz"):
        return _load_npz(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"mnist.load_data: {path!r} is not a folder; expected the folder holding "
                                f"{', '.join(FILES.values())} (optionally .gz). pynn downloads nothing: "
                                "get the files from the MNIST distribution first")
    found = {key: _find(path, base) for key, base in FILES.items()}
    missing = [FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise FileNotFoundError(f"mnist.load_data: {path!r} lacks {', '.join(missing)} (raw or .gz); "
                                f"it holds {', '.join(sorted(os.listdir(path))) or 'nothing'}. pynn "
                                "downloads nothing: put the four MNIST IDX files there")
    arrays = {key: read_idx(p) for key, p in found.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise IDXFormatError(f"{found[f'x_{split}']}: expected images, a 3-d array of unsigned bytes, "
                                 f"found a {x.ndim}-d array of {x.dtype}")
        if y.ndim != 1 or y.dtype != np.uint8:
            raise IDXFormatError(f"{found[f'y_{split}']}: expected labels, a 1-d array of unsigned bytes, "
                                 f"found a {y.ndim}-d array of {y.dtype}")
        if len(x) != len(y):
            raise IDXFormatError(f"mnist.load_data: {len(x)} {split} images but {len(y)} {split} labels "
                                 f"({os.path.basename(found[f'x_{split}'])}, "
                                 f"{os.path.basename(found[f'y_{split}'])})")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in FILES}
    except KeyError as exc:
        raise IDXFormatError(f"{path}: expected arrays x_train, y_train, x_test, y_test; {exc}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise IDXFormatError(f"{path}: not a readable .npz file ({exc})") from None
    return (out["x_train"], out["y_train"]), (out["x_test"], out["y_test"])
