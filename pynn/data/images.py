"""Images from folders and files, as Keras 3's image_dataset_from_directory, load_img,
img_to_array, array_to_img and save_img (keras/src/utils/image_dataset_utils.py,
dataset_utils.py, image_utils.py).  Images are read with Pillow (`pip install "pynn[image]"`).

image_dataset_from_directory returns a streaming pynn.data.Dataset: the files are listed
(and split) as Keras lists them, and each batch is decoded and resized by a pool of threads
while earlier batches are consumed; at most `prefetch` batches exist decoded-but-not-consumed,
whatever the size of the folder.  load_image_arrays is the older loader that reads the whole
folder into one array scaled to [0, 1].

Sizes are bounded before anything is allocated or decoded: image_size may not exceed
pynn.data.MAX_IMAGE_PIXELS pixels (height * width), and an image file whose header declares
more pixels than that is refused before it is decoded (a decompression bomb costs nothing).
"""
import io
import os
import pathlib
import sys
import warnings
from collections import namedtuple

import numpy as np

from ..arrays import check_fits
from ..checks import check_bool, check_int, check_seed, shown
from .dataset import Dataset, default_workers, ordered_map

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
ALLOWLIST_FORMATS = IMAGE_EXTENSIONS
COLOR_MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1), "rgba": ("RGBA", 4)}
SUBSETS = ("training", "validation", "both")
LABEL_MODES = ("int", "categorical", "binary", None)
# Keras's interpolation names (and Pillow's own) that Pillow can resize with
INTERPOLATIONS = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC",
                  "area": "BOX", "lanczos3": "LANCZOS", "lanczos": "LANCZOS", "box": "BOX",
                  "hamming": "HAMMING"}
NOT_IN_PILLOW = ("lanczos5", "gaussian", "mitchellcubic")
ON_ERROR = ("raise", "skip")

ImageDataset = namedtuple("ImageDataset", ["x", "y", "class_names"])

_WHERE = "image_dataset_from_directory"
_LEGACY = "load_image_arrays"


class MissingDataError(FileNotFoundError, ValueError):
    """A folder or file to load data from is not there: a FileNotFoundError, and a
    ValueError like every other refused argument in pynn."""


def _max_pixels():
    """pynn.data.MAX_IMAGE_PIXELS, read when used (so a program may change it)."""
    return sys.modules[__package__].MAX_IMAGE_PIXELS


def _pillow(where=_WHERE):
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{where} reads images with Pillow, which is not installed: "
                          'pip install Pillow (or pip install "pynn[image]")') from None
    return Image


def _resample(Image, interpolation, where):
    if interpolation in NOT_IN_PILLOW:
        raise ValueError(f"{where}: interpolation={interpolation!r} is one of TensorFlow's "
                         "resize methods that Pillow, which pynn resizes with, does not have; "
                         f"use one of {sorted(INTERPOLATIONS)}")
    if not isinstance(interpolation, str) or interpolation.lower() not in INTERPOLATIONS:
        raise ValueError(f"{where}: argument `interpolation` should be one of "
                         f"{tuple(INTERPOLATIONS)}. Received: interpolation={shown(interpolation)}")
    name = INTERPOLATIONS[interpolation.lower()]
    return getattr(getattr(Image, "Resampling", Image), name)


def _open(Image, path, where):
    """The image at `path`, opened (header only), refused if its header declares more than
    pynn.data.MAX_IMAGE_PIXELS pixels.  Every failure is a ValueError naming the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingDataError(f"{where}: the image file {path!r} does not exist")
    if not os.path.isfile(path):             # a FIFO or a device would block
        raise ValueError(f"{where}: expected {path!r} to be a regular image file, found "
                         "a FIFO, device or other special file")
    try:
        with warnings.catch_warnings():      # the size is checked below, before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)           # reads the header only
    except Exception as exc:
        raise ValueError(f"{where}: cannot read the image file {path!r} "
                         f"({type(exc).__name__}: {exc})") from exc
    w, h = img.size
    if w * h > _max_pixels():
        img.close()
        raise ValueError(f"{where}: the image file {path!r} declares {w} x {h} pixels, "
                         f"more than the {_max_pixels()} pynn decodes from one file "
                         "(pynn.data.MAX_IMAGE_PIXELS); refused before decoding")
    return img


def _to_mode(img, color_mode):
    """Keras's conversions (load_img): grayscale keeps 16- and 32-bit gray."""
    if color_mode == "grayscale":
        return img if img.mode in ("L", "I;16", "I") else img.convert("L")
    mode = COLOR_MODES[color_mode][0]
    return img if img.mode == mode else img.convert(mode)


def _fit(Image, img, height, width, resample, crop, pad):
    """img resized to (height, width): stretched, or its largest centred window of the
    target aspect ratio (crop), or padded with zeros to that ratio first (pad), with the
    window and padding Keras computes (keras/src/backend/numpy/image.py resize)."""
    w, h = img.size
    if crop:
        ch = max(min(h, int(float(w * height) / width)), 1)
        cw = max(min(w, int(float(h * width) / height)), 1)
        top, left = int(float(h - ch) / 2), int(float(w - cw) / 2)
        if (cw, ch) != (w, h):
            img = img.crop((left, top, left + cw, top + ch))
    elif pad:
        ph = max(h, int(float(w * height) / width))
        pw = max(w, int(float(h * width) / height))
        top, left = int(float(ph - h) / 2), int(float(pw - w) / 2)
        if top > 0 or left > 0:          # Keras pads the same amount on both sides
            canvas = Image.new(img.mode, (w + 2 * left, h + 2 * top), 0)
            canvas.paste(img, (left, top))
            img = canvas
    if img.size != (width, height):
        img = img.resize((width, height), resample)
    return img


# A JPEG much larger than its target is decoded at a reduced scale (its DCT scaled by 1/2,
# 1/4 or 1/8, Pillow's `draft`), never below REDUCING_GAP times the target, then resized
# as usual: what Pillow's thumbnail() does with its reducing_gap.  The decode is several
# times cheaper (256x256 photos to 64x64: decoded at 128x128); the pixels differ from a
# full decode by a fraction of a level on average (tests/test_datasets.py measures it).
# "nearest" keeps the full decode, its pixels being exact source pixels.
REDUCING_GAP = 2


def _draft(img, height, width, interpolation, color_mode):
    if img.format != "JPEG" or interpolation == "nearest":
        return
    w, h = img.size
    if w >= 2 * REDUCING_GAP * width and h >= 2 * REDUCING_GAP * height:
        mode = "L" if color_mode == "grayscale" else "RGB"
        img.draft(mode, (REDUCING_GAP * width, REDUCING_GAP * height))


def decode_image(path, image_size, color_mode="rgb", interpolation="bilinear",
                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, where=_WHERE):
    """One image file as float32 (height, width, channels), pixels 0..255 (not scaled).
    A file that cannot be read or decoded is a ValueError naming it."""
    Image = _pillow(where)
    resample = _resample(Image, interpolation, where)
    height, width = int(image_size[0]), int(image_size[1])
    channels = COLOR_MODES[color_mode][1]
    path = os.fspath(path)
    img = _open(Image, path, where)
    with img:
        try:
            _draft(img, height, width, interpolation, color_mode)
            img.load()                       # decode now: a corrupt file fails here
            pic = _fit(Image, _to_mode(img, color_mode), height, width, resample,
                       crop_to_aspect_ratio, pad_to_aspect_ratio)
            pixels = np.asarray(pic, dtype=np.float32)
        except Exception as exc:
            raise ValueError(f"{where}: cannot read the image file {path!r} "
                             f"({type(exc).__name__}: {exc})") from exc
    return pixels.reshape(height, width, channels)


# -- listing files as Keras does (keras/src/utils/dataset_utils.py) ------------------------

def _iter_valid_files(directory, follow_links, formats):
    walk = os.walk(directory, followlinks=follow_links)
    for root, _, files in sorted(walk, key=lambda x: x[0]):
        for fname in sorted(files):
            if fname.lower().endswith(formats):
                yield root, fname


def _index_subdirectory(directory, class_indices, follow_links, formats):
    dirname = os.path.basename(directory)
    filenames, labels = [], []
    for root, fname in _iter_valid_files(directory, follow_links, formats):
        labels.append(class_indices[dirname])
        absolute_path = os.path.join(root, fname)
        filenames.append(os.path.join(dirname, os.path.relpath(absolute_path, directory)))
    return filenames, labels


def index_directory(directory, labels, formats=IMAGE_EXTENSIONS, class_names=None,
                    shuffle=True, seed=None, follow_links=False, verbose=True, where=_WHERE):
    """(file_paths, labels, class_names) as keras.src.utils.dataset_utils.index_directory:
    class folders in sorted order (names starting with "." skipped), the files of each
    folder walked recursively in sorted order, then (shuffle) all shuffled together by
    np.random.RandomState(seed)."""
    directory = os.fspath(directory)
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names).issubset(set(subdirs)):
                raise ValueError(
                    f"{where}: the `class_names` passed did not match the names of the "
                    f"subdirectories of the target directory {directory!r}. Expected: "
                    f"{subdirs} (or a subset of it), but received: class_names={class_names}")
            subdirs = list(class_names)
    else:
        subdirs = [""]
    class_names = subdirs
    class_indices = dict(zip(class_names, range(len(class_names))))
    filenames, per_class = [], []
    for subdir in subdirs:
        names, labs = _index_subdirectory(os.path.join(directory, subdir), class_indices,
                                          follow_links, formats)
        filenames += names
        per_class.append((subdir, len(names)))
    if labels == "inferred":
        empty = [os.path.join(directory, d) for d, n in per_class if n == 0]
        if empty and len(empty) < len(subdirs):
            raise ValueError(f"{where}: the class folder {empty[0]!r} holds no images "
                             f"(allowed formats: {IMAGE_EXTENSIONS}); remove it or add images")
        labels = np.repeat(np.arange(len(subdirs), dtype=np.int64), [n for _, n in per_class])
    elif labels is None:
        class_names = None
    else:
        if len(labels) != len(filenames):
            raise ValueError(
                f"{where}: expected the lengths of `labels` to match the number of files in "
                f"the target directory. len(labels) is {len(labels)} while we found "
                f"{len(filenames)} files in directory {directory!r}.")
        class_names = [str(label) for label in sorted(set(int(v) for v in labels))]
        labels = np.asarray(labels, dtype=np.int64)
    if verbose:
        if labels is None:
            print(f"Found {len(filenames)} files.")
        else:
            print(f"Found {len(filenames)} files belonging to {len(class_names)} classes.")
    file_paths = [os.path.join(directory, fname) for fname in filenames]
    if shuffle:
        if seed is None:                      # Keras: np.random.randint(1e6); pynn's generator
            from ..utils import rng
            seed = int(rng().integers(0, 10**6))
        np.random.RandomState(seed).shuffle(file_paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return file_paths, labels, class_names


def get_training_or_validation_split(samples, labels, validation_split, subset, verbose=True):
    """Keras's split: the last int(validation_split * n) samples are the validation ones."""
    if not validation_split:
        return samples, labels
    num_val_samples = int(validation_split * len(samples))
    num_train_samples = len(samples) - num_val_samples
    if subset == "training":
        if verbose:
            print(f"Using {num_train_samples} files for training.")
        samples = samples[:num_train_samples]
        if labels is not None:
            labels = labels[:num_train_samples]
    elif subset == "validation":
        if verbose:
            print(f"Using {num_val_samples} files for validation.")
        samples = samples[num_train_samples:]
        if labels is not None:
            labels = labels[num_train_samples:]
    else:
        raise ValueError(f'`subset` must be either "training" or "validation", received: {subset}')
    return samples, labels


# -- the streaming dataset -----------------------------------------------------------------

class ImageFolderDataset(Dataset):
    """The images of a list of files, decoded in background threads batch by batch.

    Elements: (images, labels) batches, or images alone (label_mode=None); one sample per
    element with batch_size=None.  images float32 (batch, height, width, channels), pixels
    0..255; labels int64 (batch,) for "int", float32 (batch, 1) for "binary", float32
    one-hot (batch, classes) for "categorical".  Attributes: class_names, file_paths (in
    Keras's order, before the per-epoch shuffle), batch_size, workers, prefetch.

    Epoch e visits the files in the order np.random.default_rng([seed, e]).permutation
    (when shuffle) and the batch boundaries follow that order; each batch is decoded by one
    worker into its own array, and the batches are handed out in order, so the same seed
    gives bitwise the same batches whatever `workers` is."""

    def __init__(self, file_paths, labels, label_mode, class_names, image_size, color_mode,
                 interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, batch_size, shuffle,
                 seed, workers, prefetch, on_error):
        super().__init__()
        self.file_paths = list(file_paths)
        self.class_names = class_names
        self.batch_size = batch_size
        self.workers = workers
        self.prefetch = prefetch
        self.on_error = on_error
        self._labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self._label_mode = label_mode
        self._num_classes = len(class_names) if class_names else 0
        self._decode = dict(image_size=image_size, color_mode=color_mode,
                            interpolation=interpolation,
                            crop_to_aspect_ratio=crop_to_aspect_ratio,
                            pad_to_aspect_ratio=pad_to_aspect_ratio)
        self._shape = (int(image_size[0]), int(image_size[1]), COLOR_MODES[color_mode][1])
        self._shuffle = shuffle
        self._seed = seed
        self._warned = set()

    def cardinality(self):
        n = len(self.file_paths)
        return n if self.batch_size is None else -(-n // self.batch_size)

    def _order(self, key):
        n = len(self.file_paths)
        if not self._shuffle:
            return np.arange(n)
        return np.random.default_rng([self._seed, *key]).permutation(n)

    def _load_chunk(self, indices):
        """(images, the indices decoded, [(path, message) skipped]) for one batch."""
        x = np.empty((len(indices),) + self._shape, dtype=np.float32)
        kept, skipped = [], []
        for i in indices:
            path = self.file_paths[i]
            try:
                x[len(kept)] = decode_image(path, **self._decode)
            except ValueError as exc:
                if self.on_error != "skip":
                    raise
                skipped.append((path, str(exc)))
                continue
            kept.append(i)
        if len(kept) < len(indices):
            x = np.ascontiguousarray(x[:len(kept)])
        return x, np.asarray(kept, dtype=np.int64), skipped

    def _encode(self, indices):
        y = self._labels[indices]
        if self._label_mode == "binary":
            return y.astype(np.float32).reshape(-1, 1)
        if self._label_mode == "categorical":
            out = np.zeros((len(y), self._num_classes), dtype=np.float32)
            inside = (y >= 0) & (y < self._num_classes)     # tf.one_hot: zeros outside
            out[np.nonzero(inside)[0], y[inside]] = 1.0
            return out
        return np.ascontiguousarray(y)

    def _elements(self, key):
        order = self._order(key)
        size = self.batch_size or 1
        chunks = (order[i:i + size] for i in range(0, len(order), size))
        for x, kept, skipped in ordered_map(self._load_chunk, chunks, self.workers,
                                            self.prefetch):
            for path, message in skipped:
                if path not in self._warned:
                    self._warned.add(path)
                    warnings.warn(f"{_WHERE}: skipped {path!r} (on_error='skip'): {message}",
                                  stacklevel=3)
            if not len(kept):
                continue
            if self.batch_size is None:
                x = x[0]
            if self._labels is None:
                yield x
                continue
            y = self._encode(kept)
            yield (x, y[0] if self.batch_size is None else y)


def _check_size(image_size, where):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
            for d in image_size):
        raise ValueError(f"{where}: invalid `image_size` value. Expected a tuple of 2 positive "
                         f"integers (height, width). Received: image_size={shown(image_size)}")
    if int(image_size[0]) * int(image_size[1]) > _max_pixels():
        raise ValueError(f"{where}: expected image_size of at most {_max_pixels()} pixels "
                         f"(height * width, pynn.data.MAX_IMAGE_PIXELS), received "
                         f"image_size={tuple(image_size)!r}")
    return int(image_size[0]), int(image_size[1])


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, verbose=True, *,
                                 workers=None, prefetch=None, on_error="raise"):
    """keras.utils.image_dataset_from_directory, streaming: a pynn.data.Dataset (an
    ImageFolderDataset) of batches decoded in background threads, or a (training,
    validation) pair with subset="both".  Keras's arguments and file order; pixels float32
    0..255 resized by Pillow.  pynn's own, keyword-only:
      workers   threads that decode (None: pynn.data.default_workers(), the CPU count up to 8)
      prefetch  batches decoded ahead, at most (None: 2 * workers); memory is bounded by it
      on_error  "raise" (an unreadable file is a ValueError naming it) or "skip" (the file is
                left out of its batch, with one warning naming it)."""
    where = _WHERE
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"{where}: expected directory as a path, received "
                        f"{type(directory).__name__} {shown(directory)}")
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple)) or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
            raise ValueError(
                f"{where}: `labels` argument should be a list/tuple of integer labels, of the "
                "same size as the number of image files in the target directory. If you wish "
                'to infer the labels from the subdirectory names in the target directory, pass '
                '`labels="inferred"`. If you wish to get a dataset that only contains images '
                f"(no labels), pass `labels=None`. Received: labels={shown(labels)}")
        if class_names:
            raise ValueError(f'{where}: you can only pass `class_names` if `labels="inferred"`. '
                             f"Received: labels={shown(labels)}, and "
                             f"class_names={shown(class_names)}")
    if label_mode not in LABEL_MODES:
        raise ValueError(f'{where}: `label_mode` argument must be one of "int", "categorical", '
                         f'"binary", or None. Received: label_mode={shown(label_mode)}')
    if class_names is not None and (not isinstance(class_names, (list, tuple)) or not all(
            isinstance(c, str) for c in class_names) or len(set(class_names)) != len(class_names)):
        raise ValueError(f"{where}: expected class_names as a list of distinct folder names, "
                         f"received class_names={shown(class_names)}")
    if labels is None or label_mode is None:
        if class_names is not None and labels is None:
            raise ValueError(f"{where}: when `labels=None` (no labels), argument `class_names` "
                             "cannot be specified.")
        labels, label_mode = None, None
    if color_mode not in COLOR_MODES:
        raise ValueError(f'{where}: `color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. '
                         f"Received: color_mode={shown(color_mode)}")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", where)
    image_size = _check_size(image_size, where)
    shuffle = check_bool(shuffle, "shuffle", where)
    seed = check_seed(seed, "seed", where)
    if validation_split is not None and (
            isinstance(validation_split, bool) or not isinstance(validation_split, (int, float))):
        raise ValueError(f"{where}: `validation_split` must be between 0 and 1, "
                         f"received: {shown(validation_split)}")
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"{where}: `validation_split` must be between 0 and 1, "
                         f"received: {validation_split}")
    if not isinstance(subset, (str, type(None))) or subset not in SUBSETS + (None,):
        raise ValueError(f'{where}: `subset` must be either "training", "validation" or '
                         f'"both", received: {shown(subset)}')
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError(f"{where}: if `subset` is set, `validation_split` must be set, and "
                         f"inversely (received validation_split={validation_split!r}, "
                         f"subset={subset!r}).")
    if validation_split and shuffle and seed is None:
        raise ValueError(f"{where}: if using `validation_split` and shuffling the data, you "
                         "must provide a `seed` argument, to make sure that there is no overlap "
                         "between the training and validation subset.")
    if not isinstance(interpolation, str):
        raise ValueError(f"{where}: argument `interpolation` should be one of "
                         f"{tuple(INTERPOLATIONS)}. Received: interpolation={shown(interpolation)}")
    interpolation = interpolation.lower()
    follow_links = check_bool(follow_links, "follow_links", where)
    crop_to_aspect_ratio = check_bool(crop_to_aspect_ratio, "crop_to_aspect_ratio", where)
    pad_to_aspect_ratio = check_bool(pad_to_aspect_ratio, "pad_to_aspect_ratio", where)
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError(f"{where}: only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` "
                         "can be set to `True`.")
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{where}: pynn's images are channels-last (NHWC) only; expected "
                         f"data_format None or 'channels_last', received "
                         f"data_format={shown(data_format)}")
    verbose = check_bool(verbose, "verbose", where)
    workers = default_workers() if workers is None else check_int(workers, "workers", where,
                                                                   high=1024)
    prefetch = 2 * workers if prefetch is None else check_int(prefetch, "prefetch", where,
                                                              high=1 << 20)
    if on_error not in ON_ERROR:
        raise ValueError(f"{where}: expected on_error 'raise' or 'skip', received "
                         f"on_error={shown(on_error)}")
    Image = _pillow(where)
    _resample(Image, interpolation, where)
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise MissingDataError(f"{where}: directory {directory!r} does not exist or is not a "
                               "folder")
    if seed is None:
        from ..utils import rng
        seed = int(rng().integers(0, 10**6))
    image_paths, labels, class_names = index_directory(
        directory, labels, formats=IMAGE_EXTENSIONS, class_names=class_names, shuffle=shuffle,
        seed=seed, follow_links=follow_links, verbose=verbose, where=where)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f'{where}: when passing `label_mode="binary"`, there must be exactly 2 '
                         f"class_names. Received: class_names={class_names}")

    def make(paths, labs, shuffled):
        return ImageFolderDataset(paths, labs, label_mode, class_names, image_size, color_mode,
                                  interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio,
                                  batch_size, shuffled, seed, workers, prefetch, on_error)

    if subset == "both":
        train = get_training_or_validation_split(image_paths, labels, validation_split,
                                                 "training", verbose)
        val = get_training_or_validation_split(image_paths, labels, validation_split,
                                               "validation", verbose)
        if not train[0]:
            raise ValueError(f"{where}: no training images found in directory {directory!r}. "
                             f"Allowed formats: {IMAGE_EXTENSIONS}")
        if not val[0]:
            raise ValueError(f"{where}: no validation images found in directory {directory!r}. "
                             f"Allowed formats: {IMAGE_EXTENSIONS}")
        return make(*train, shuffle), make(*val, False)
    image_paths, labels = get_training_or_validation_split(image_paths, labels,
                                                           validation_split, subset, verbose)
    if not image_paths:
        raise ValueError(f"{where}: no images found in directory {directory!r}. "
                         f"Allowed formats: {IMAGE_EXTENSIONS}")
    return make(image_paths, labels, shuffle)


# -- single images (keras/src/utils/image_utils.py) ----------------------------------------

def _standardize_data_format(data_format, where):
    if data_format is None:
        return "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"{where}: expected data_format 'channels_last' or 'channels_first', "
                         f"received data_format={shown(data_format)}")
    return data_format


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """keras.utils.load_img: the image at `path` (or an io.BytesIO) as a PIL Image."""
    Image = _pillow("load_img")
    if isinstance(path, io.BytesIO):
        img = Image.open(path)
    elif isinstance(path, (pathlib.Path, bytes, str)):
        if isinstance(path, pathlib.Path):
            path = str(path.resolve())
        if not os.path.exists(path):
            raise MissingDataError(f"load_img: the image file {path!r} does not exist")
        with open(path, "rb") as f:
            img = Image.open(io.BytesIO(f.read()))
    else:
        raise TypeError(f"path should be path-like or io.BytesIO, not {type(path)}")
    if color_mode not in COLOR_MODES:
        raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')
    img = _to_mode(img, color_mode)
    if target_size is not None:
        width_height_tuple = (target_size[1], target_size[0])
        if img.size != width_height_tuple:
            keras_names = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")
            if interpolation not in keras_names:
                raise ValueError(f"Invalid interpolation method {interpolation} specified. "
                                 f"Supported methods are {', '.join(keras_names)}")
            resample = _resample(Image, interpolation, "load_img")
            if keep_aspect_ratio:
                width, height = img.size
                target_width, target_height = width_height_tuple
                crop_height = min(height, (width * target_height) // target_width)
                crop_width = min(width, (height * target_width) // target_height)
                top, left = (height - crop_height) // 2, (width - crop_width) // 2
                img = img.resize(width_height_tuple, resample,
                                 box=[left, top, left + crop_width, top + crop_height])
            else:
                img = img.resize(width_height_tuple, resample)
    return img


def img_to_array(img, data_format=None, dtype=None):
    """keras.utils.img_to_array: a PIL Image as a (height, width, channels) array (float32)."""
    data_format = _standardize_data_format(data_format, "img_to_array")
    x = np.asarray(img, dtype=dtype or "float32")
    if x.ndim == 3:
        if data_format == "channels_first":
            x = x.transpose(2, 0, 1)
    elif x.ndim == 2:
        x = x.reshape((1,) + x.shape if data_format == "channels_first" else x.shape + (1,))
    else:
        raise ValueError(f"Unsupported image shape: {x.shape}")
    return np.ascontiguousarray(x)


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """keras.utils.array_to_img: a 3-D array as a PIL Image (scale: min..max to 0..255)."""
    data_format = _standardize_data_format(data_format, "array_to_img")
    Image = _pillow("array_to_img")
    x = np.array(x, dtype=dtype or "float32")
    if x.ndim != 3:
        raise ValueError("Expected image array to have rank 3 (single image). "
                         f"Got array with shape: {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x /= x_max
        x *= 255
    if x.shape[2] == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if x.shape[2] == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if x.shape[2] == 1:
        if np.max(x) > 255:
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {x.shape[2]}")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """keras.utils.save_img: write the array x as an image (format from the extension)."""
    data_format = _standardize_data_format(data_format, "save_img")
    if file_format is None and isinstance(path, (str, pathlib.Path)):
        file_format = pathlib.Path(path).suffix[1:].lower()
    if file_format and file_format.lower() == "jpg":
        file_format = "jpeg"
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and file_format == "jpeg":
        warnings.warn("The JPEG format does not support RGBA images, converting to RGB.")
        img = img.convert("RGB")
    img.save(path, format=file_format, **kwargs)


# -- the array loader of pynn 0.1 ------------------------------------------------------------

def _check_args(directory, image_size, color_mode, validation_split, subset, seed, shuffle):
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"{_LEGACY}: expected directory as a path, received "
                        f"{type(directory).__name__} {directory!r}")
    if not os.path.isdir(directory):
        raise MissingDataError(f"{_LEGACY}: directory {os.fspath(directory)!r} does not exist "
                               "or is not a folder")
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
            for d in image_size):
        raise ValueError(f"{_LEGACY}: expected image_size as (height, width) of positive "
                         f"integers, received image_size={image_size!r}")
    if int(image_size[0]) * int(image_size[1]) > _max_pixels():
        raise ValueError(f"{_LEGACY}: expected image_size of at most {_max_pixels()} pixels "
                         f"(height * width, pynn.data.MAX_IMAGE_PIXELS), received "
                         f"image_size={tuple(image_size)!r}")
    if color_mode not in COLOR_MODES:
        raise ValueError(f"{_LEGACY}: expected color_mode one of 'rgb', 'grayscale' or 'rgba', "
                         f"received color_mode={color_mode!r}")
    if validation_split is not None and (
            isinstance(validation_split, bool) or not isinstance(validation_split, (int, float))
            or not 0 < validation_split < 1):
        raise ValueError(f"{_LEGACY}: expected validation_split as a float between 0 and 1 "
                         f"(exclusive), received validation_split={validation_split!r}")
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f"{_LEGACY}: expected subset one of None, 'training', 'validation' or "
                         f"'both', received subset={subset!r}")
    if bool(validation_split) != (subset is not None):
        raise ValueError(f"{_LEGACY}: validation_split and subset go together: set both or "
                         f"neither (received validation_split={validation_split!r}, "
                         f"subset={subset!r})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(f"{_LEGACY}: expected seed to be a non-negative integer or None, "
                         f"received seed={seed!r}")
    if validation_split and shuffle and seed is None:
        raise ValueError(f"{_LEGACY}: with validation_split and shuffle=True, pass a seed so that "
                         "the training and validation subsets do not overlap")


def _list_files(directory, class_names):
    """(paths, labels) of the image files under each class folder, in sorted order."""
    paths, labels = [], []
    for label, name in enumerate(class_names):
        root = os.path.join(directory, name)
        found = []
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            found += [os.path.join(folder, f) for f in files
                      if f.lower().endswith(IMAGE_EXTENSIONS)]
        found.sort()
        paths += found
        labels += [label] * len(found)
    return paths, np.array(labels, dtype=np.int64)


def _load(paths, image_size, color_mode):
    _pillow(_LEGACY)
    mode, channels = COLOR_MODES[color_mode]
    height, width = int(image_size[0]), int(image_size[1])
    check_fits(len(paths) * height * width * channels * 4, _LEGACY,
               f"x for {len(paths)} images of image_size={(height, width)} with {channels} "
               "channels (float32)")
    x = np.empty((len(paths), height, width, channels), dtype=np.float32)
    for i, path in enumerate(paths):
        x[i] = decode_image(path, (height, width), color_mode, "bilinear", where=_LEGACY)
        x[i] /= np.float32(255.0)
    return x


def load_image_arrays(directory, image_size=(256, 256), color_mode="rgb", validation_split=None,
                      subset=None, seed=None, shuffle=True, class_names=None):
    """Images under directory/<class name>/... read whole into an ImageDataset (x, y,
    class_names): pynn 0.1's image_dataset_from_directory, kept under this explicit name.

    x is float32 (N, height, width, channels) scaled to [0, 1]; y the int64 index of each
    image's class in class_names (the subfolders in alphabetical order, or the given
    class_names list, which picks and orders them).  shuffle: the files in a random order
    drawn from `seed` (else sorted by class, then path).  validation_split with subset
    "training" or "validation" returns that part of the shuffled files (the validation
    part is the last int(validation_split * N)); subset "both" returns both as a tuple."""
    _check_args(directory, image_size, color_mode, validation_split, subset, seed, shuffle)
    directory = os.fspath(directory)
    folders = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if class_names is None:
        class_names = folders
    else:
        if not isinstance(class_names, (list, tuple)) or not all(isinstance(c, str) for c in class_names):
            raise ValueError(f"{_LEGACY}: expected class_names as a list of folder names, "
                             f"received {class_names!r}")
        missing = [c for c in class_names if c not in folders]
        if missing or sorted(class_names) != folders:
            raise ValueError(f"{_LEGACY}: class_names {list(class_names)} must name exactly the "
                             f"subfolders of {directory!r}: {folders}")
    if not class_names:
        raise ValueError(f"{_LEGACY}: found no class subfolders in {directory!r}; expected one "
                         "folder per class holding its images")
    paths, labels = _list_files(directory, class_names)
    if not paths:
        raise ValueError(f"{_LEGACY}: found no images ({', '.join(IMAGE_EXTENSIONS)}) in the "
                         f"class folders of {directory!r}")
    order = np.arange(len(paths))
    if shuffle:
        generator = np.random.default_rng(np.random.SeedSequence(seed) if seed is not None else None)
        order = generator.permutation(len(paths))
    paths = [paths[i] for i in order]
    labels = labels[order]
    names = list(class_names)

    def part(lo, hi, what):
        if hi <= lo:
            raise ValueError(f"{_LEGACY}: validation_split={validation_split} leaves no "
                             f"{what} images out of {len(paths)}")
        return ImageDataset(_load(paths[lo:hi], image_size, color_mode), labels[lo:hi], names)

    if not validation_split:
        return part(0, len(paths), "")
    n_val = int(validation_split * len(paths))
    split = len(paths) - n_val
    if subset == "training":
        return part(0, split, "training")
    if subset == "validation":
        return part(split, len(paths), "validation")
    return part(0, split, "training"), part(split, len(paths), "validation")
