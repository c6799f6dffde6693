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
size per dimension, then the values in row-major order.  The header's dims bound what is
read: a file that holds (or inflates to) more than they promise, or dims beyond what the
file could hold or this machine's memory, is refused with a ValueError naming the file
(see read_idx); a .npz is checked the same way from its zip directory and .npy headers.
"""
import gzip
import os
import stat
import zipfile
import zlib

import numpy as np

from ..arrays import check_fits
from ..data import MissingDataError

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


# DEFLATE cannot expand data more than 1032 times (RFC 1951's longest match, 258 bytes, in
# a code of at least 2 bits): a gzipped IDX file whose header promises more than this many bytes
# per compressed byte cannot hold them, whatever it inflates to.
_MAX_GZIP_RATIO = 1032
_CHUNK = 1 << 22


def _read_into(stream, buffer):
    """Fill `buffer` (a writable memoryview) from `stream` in bounded chunks; the number of
    bytes read (less than len(buffer) at the end of the stream)."""
    got = 0
    while got < len(buffer):
        n = stream.readinto(buffer[got:got + _CHUNK])
        if not n:
            break
        got += n
    return got


def _file_kind(mode):
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def read_idx(filename):
    """The array stored in one IDX file (raw or gzipped), as a NumPy array of the stored
    type (uint8 for MNIST) and shape.

    What is read is bounded by the header: its dims fix the size of the data, a raw file
    must be exactly that long, and a gzipped one is inflated in chunks into an array of that
    size and refused as soon as it holds more (a decompression bomb costs one chunk, not
    its inflated size).  Dims that promise more than the file could hold (more than 1032
    times its compressed size, DEFLATE's limit) or more than this machine's memory are
    refused before anything is allocated."""
    filename = os.fspath(filename)
    info = os.stat(filename)
    if not stat.S_ISREG(info.st_mode):       # a FIFO or a device would block or never end
        raise IDXFormatError(f"{filename}: expected a regular IDX file, found "
                             f"{_file_kind(info.st_mode)}")
    size = info.st_size
    with open(filename, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            return _read_idx_stream(stream, filename, size, gzipped)
        except (OSError, EOFError, zlib.error) as exc:
            if not gzipped:
                raise
            raise IDXFormatError(f"{filename}: a gzip file that cannot be decompressed ({exc}); "
                                 "is it truncated?") from None


def _read_idx_stream(stream, filename, size, gzipped):
    head = stream.read(4)
    if len(head) < 4:
        raise IDXFormatError(f"{filename}: {len(head)} bytes, too short for an IDX header")
    if head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES or head[3] == 0:
        raise IDXFormatError(f"{filename}: not an IDX file (header bytes {head.hex()}, expected "
                             "00 00, a type code such as 08, and a number of dimensions)")
    ndim = head[3]
    header = 4 + 4 * ndim
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IDXFormatError(f"{filename}: truncated header ({4 + len(dims)} bytes, a {ndim}-d "
                             f"IDX header needs {header})")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    dtype = np.dtype(_DTYPES[head[2]])
    payload = dtype.itemsize
    for d in shape:
        payload *= d                      # Python ints: no overflow, however absurd the dims
    expected = header + payload
    if not gzipped and size != expected:
        raise IDXFormatError(f"{filename}: the header promises shape {shape} ({expected} bytes in "
                             f"all), the file has {size} bytes; it is truncated or not this data")
    if gzipped and expected > _MAX_GZIP_RATIO * size:
        raise IDXFormatError(f"{filename}: the header promises shape {shape} ({expected} bytes in "
                             f"all), more than a gzip file of {size} bytes can inflate to; the "
                             "header is corrupt or this is not an IDX file")
    check_fits(payload, filename, f"the IDX header's shape {shape}")
    out = np.empty(payload, dtype=np.uint8)
    got = _read_into(stream, memoryview(out))
    if got < payload:
        raise IDXFormatError(f"{filename}: the header promises shape {shape} ({expected} bytes in "
                             f"all), the file has {header + got} bytes; it is truncated or not "
                             "this data")
    if stream.read(1):
        raise IDXFormatError(f"{filename}: inflates to more than the {expected} bytes its header "
                             f"promises (shape {shape}); it is corrupt or not this data "
                             "(a decompression bomb?)")
    return out.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


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
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"mnist.load_data: expected path as a folder name (str or path-like), "
                        f"received {type(path).__name__} {path!r:.80}")
    path = os.path.expanduser(os.fsdecode(path))
    if os.path.isfile(path) and path.endswith(".npz"):
        return _load_npz(path)
    if not os.path.isdir(path):
        raise MissingDataError(f"mnist.load_data: {path!r} is not a folder; expected the folder holding "
                               f"{', '.join(FILES.values())} (optionally .gz). pynn downloads nothing: "
                               "get the files from the MNIST distribution first")
    found = {key: _find(path, base) for key, base in FILES.items()}
    missing = [FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise MissingDataError(f"mnist.load_data: {path!r} lacks {', '.join(missing)} (raw or .gz); "
                               f"it holds {', '.join(sorted(os.listdir(path))) or 'nothing'}. pynn "
                               "downloads nothing: put the four MNIST IDX files there")
    arrays = {key: read_idx(p) for key, p in found.items()}
    return _checked(arrays, found)


def _checked(arrays, sources):
    """The four arrays as load_data returns them, once they look like images and labels."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise IDXFormatError(f"{sources[f'x_{split}']}: expected images, a 3-d array of unsigned bytes, "
                                 f"found a {x.ndim}-d array of {x.dtype}")
        if y.ndim != 1 or y.dtype != np.uint8:
            raise IDXFormatError(f"{sources[f'y_{split}']}: expected labels, a 1-d array of unsigned bytes, "
                                 f"found a {y.ndim}-d array of {y.dtype}")
        if len(x) != len(y):
            raise IDXFormatError(f"mnist.load_data: {len(x)} {split} images but {len(y)} {split} labels "
                                 f"({os.path.basename(sources[f'x_{split}'])}, "
                                 f"{os.path.basename(sources[f'y_{split}'])})")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _load_npz(path):
    """The four arrays of a Keras-style mnist.npz.  Each member's size is checked before it
    is inflated: its .npy header must describe exactly the bytes the zip directory says the
    member holds (zipfile never inflates a member beyond that), and they must fit in memory."""
    try:
        with zipfile.ZipFile(path) as archive:
            for key in FILES:
                try:
                    info = archive.getinfo(key + ".npy")
                except KeyError:
                    raise IDXFormatError(f"{path}: expected arrays x_train, y_train, x_test, "
                                         f"y_test; it has no {key}") from None
                _check_npy_member(archive, info, path, key)
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in FILES}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, IDXFormatError):
            raise
        raise IDXFormatError(f"{path}: not a readable .npz file ({exc})") from None
    return _checked(out, {k: f"{path} ({k})" for k in FILES})


def _check_npy_member(archive, info, path, key):
    check_fits(info.file_size, path, f"array {key} ({info.file_size} bytes once inflated)")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        header = f.tell()
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    if dtype.hasobject or header + nbytes != info.file_size:
        raise IDXFormatError(f"{path}: array {key} claims shape {shape} of {dtype} "
                             f"({header + nbytes} bytes with its header), the archive holds "
                             f"{info.file_size} bytes for it; it is corrupt or not this data")
