"""Loading image datasets from folders, as `keras.utils.image_dataset_from_directory`.

    data = pynn.data.image_dataset_from_directory("photos", image_size=(64, 64))
    data.x            float32 (N, 64, 64, 3), values in [0, 1]
    data.y            int64 (N,): the index of each image's class in data.class_names
    data.class_names  the subfolder names, in alphabetical order

One subfolder per class (searched recursively); files that are not images by their
extension (.png, .jpg, .jpeg, .bmp, .gif) are ignored, and an image that cannot be
decoded raises an error naming the file.  Images are read with Pillow (the optional
extra `pynn[image]`), converted to RGB or grayscale, and resized with bilinear
interpolation.  With validation_split, the files are shuffled by `seed` (as Keras does)
and the last fraction forms the "validation" subset, the rest the "training" subset:
the two never share a file and are the same for the same seed.

Sizes are bounded before anything is allocated or decoded: image_size may not exceed
MAX_IMAGE_PIXELS pixels (height * width), an image file whose header declares more pixels
than that is refused before it is decoded (a decompression bomb costs nothing), and the
whole x array must fit in this machine's memory.  Each is a ValueError naming what was
too big.
"""
import os
import warnings
from collections import namedtuple

import numpy as np

from .arrays import check_fits

# Pillow's own decompression-bomb threshold (PIL.Image.MAX_IMAGE_PIXELS by default,
# about 9459 x 9459): the most pixels pynn decodes from one file, or asks one image
# to be resized to.
MAX_IMAGE_PIXELS = 89_478_485

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
COLOR_MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1), "rgba": ("RGBA", 4)}
SUBSETS = ("training", "validation", "both")

ImageDataset = namedtuple("ImageDataset", ["x", "y", "class_names"])

_WHERE = "image_dataset_from_directory"


class MissingDataError(FileNotFoundError, ValueError):
    """A folder or file to load data from is not there: a FileNotFoundError, and a
    ValueError like every other refused argument in pynn."""


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{_WHERE} reads images with Pillow, which is not installed: "
                          "pip install Pillow (or pip install 'pynn[image]')") from None
    return Image


def _check_args(directory, image_size, color_mode, validation_split, subset, seed, shuffle):
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"{_WHERE}: expected directory as a path, received "
                        f"{type(directory).__name__} {directory!r}")
    if not os.path.isdir(directory):
        raise MissingDataError(f"{_WHERE}: directory {os.fspath(directory)!r} does not exist "
                               "or is not a folder")
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
            for d in image_size):
        raise ValueError(f"{_WHERE}: expected image_size as (height, width) of positive "
                         f"integers, received image_size={image_size!r}")
    if int(image_size[0]) * int(image_size[1]) > MAX_IMAGE_PIXELS:
        raise ValueError(f"{_WHERE}: expected image_size of at most {MAX_IMAGE_PIXELS} pixels "
                         f"(height * width, pynn.data.MAX_IMAGE_PIXELS), received "
                         f"image_size={tuple(image_size)!r}")
    if color_mode not in COLOR_MODES:
        raise ValueError(f"{_WHERE}: expected color_mode one of 'rgb', 'grayscale' or 'rgba', "
                         f"received color_mode={color_mode!r}")
    if validation_split is not None and (
            isinstance(validation_split, bool) or not isinstance(validation_split, (int, float))
            or not 0 < validation_split < 1):
        raise ValueError(f"{_WHERE}: expected validation_split as a float between 0 and 1 "
                         f"(exclusive), received validation_split={validation_split!r}")
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f"{_WHERE}: expected subset one of None, 'training', 'validation' or "
                         f"'both', received subset={subset!r}")
    if bool(validation_split) != (subset is not None):
        raise ValueError(f"{_WHERE}: validation_split and subset go together: set both or "
                         f"neither (received validation_split={validation_split!r}, "
                         f"subset={subset!r})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(f"{_WHERE}: expected seed to be a non-negative integer or None, "
                         f"received seed={seed!r}")
    if validation_split and shuffle and seed is None:
        raise ValueError(f"{_WHERE}: with validation_split and shuffle=True, pass a seed so that "
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
    Image = _pillow()
    mode, channels = COLOR_MODES[color_mode]
    height, width = int(image_size[0]), int(image_size[1])
    check_fits(len(paths) * height * width * channels * 4, _WHERE,
               f"x for {len(paths)} images of image_size={(height, width)} with {channels} "
               "channels (float32)")
    x = np.empty((len(paths), height, width, channels), dtype=np.float32)
    for i, path in enumerate(paths):
        if not os.path.isfile(path):             # a FIFO or a device would block
            raise ValueError(f"{_WHERE}: expected {path!r} to be a regular image file, found "
                             "a FIFO, device or other special file")
        try:
            with warnings.catch_warnings():      # the size is checked below, before decoding
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(path)           # reads the header only
        except Exception as exc:
            raise ValueError(f"{_WHERE}: cannot read the image file {path!r} "
                             f"({type(exc).__name__}: {exc})") from exc
        with img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ValueError(f"{_WHERE}: the image file {path!r} declares {w} x {h} pixels, "
                                 f"more than the {MAX_IMAGE_PIXELS} pynn decodes from one file "
                                 "(pynn.data.MAX_IMAGE_PIXELS); refused before decoding")
            try:
                img.load()                       # decode now: a corrupt file fails here
                pic = img.convert(mode)          # GIF: the first frame
                if pic.size != (width, height):
                    pic = pic.resize((width, height), Image.BILINEAR)
                pixels = np.asarray(pic, dtype=np.float32)
            except Exception as exc:
                raise ValueError(f"{_WHERE}: cannot read the image file {path!r} "
                                 f"({type(exc).__name__}: {exc})") from exc
        x[i] = pixels.reshape(height, width, channels) / np.float32(255.0)
    return x


def image_dataset_from_directory(directory, image_size=(256, 256), color_mode="rgb",
                                 validation_split=None, subset=None, seed=None, shuffle=True,
                                 class_names=None):
    """Images under directory/<class name>/... as an ImageDataset (x, y, class_names).

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
            raise ValueError(f"{_WHERE}: expected class_names as a list of folder names, "
                             f"received {class_names!r}")
        missing = [c for c in class_names if c not in folders]
        if missing or sorted(class_names) != folders:
            raise ValueError(f"{_WHERE}: class_names {list(class_names)} must name exactly the "
                             f"subfolders of {directory!r}: {folders}")
    if not class_names:
        raise ValueError(f"{_WHERE}: found no class subfolders in {directory!r}; expected one "
                         "folder per class holding its images")
    paths, labels = _list_files(directory, class_names)
    if not paths:
        raise ValueError(f"{_WHERE}: found no images ({', '.join(IMAGE_EXTENSIONS)}) in the "
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
            raise ValueError(f"{_WHERE}: validation_split={validation_split} leaves no "
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
