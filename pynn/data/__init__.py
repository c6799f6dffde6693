"""Datasets that stream: pynn.data.Dataset (tf.data's surface in NumPy terms), the image
folder loader, and Keras's PyDataset.

    train, val = pynn.data.image_dataset_from_directory(
        "photos", image_size=(64, 64), batch_size=32, validation_split=0.2, subset="both",
        seed=1)                                   # same as pynn.utils.image_dataset_from_directory
    train.class_names, train.file_paths
    for images, labels in train: ...              # float32 (32, 64, 64, 3) in 0..255, int64 (32,)

    ds = pynn.data.Dataset.from_tensor_slices((x, y)).shuffle(1000).batch(32).prefetch(
        pynn.data.AUTOTUNE)

    x, y, class_names = pynn.data.load_image_arrays("photos", image_size=(64, 64))
                                                  # pynn 0.1's loader: whole arrays in [0, 1]

The protocol a trainer relies on
--------------------------------
Every data object here, after `source = pynn.data.adapt(obj, shuffle=...)` (which returns a
Dataset as is and wraps a PyDataset in a PyDatasetIterator), offers:

    source.iterate(epoch)    the batches of that epoch, each a tuple (x,), (x, y) or (x, y, w)
                             of C-contiguous NumPy arrays (images float32).  Everything random
                             in an epoch is drawn from (seed, epoch): the same epoch number
                             gives the same batches, bitwise, whatever the number of workers;
                             a new epoch number reshuffles.  Leaving the loop early is fine
                             (workers stop, nothing hangs); an error in a worker is raised in
                             the loop, as the original exception.
    len(source)              the number of batches per epoch where it is known; TypeError
                             otherwise (infinite, or unknown as after unbatch), as Python's
                             len() does.  pynn.data.num_batches(obj) returns it or None.
    source.on_epoch_begin(), source.on_epoch_end()
                             call them around each epoch (a PyDataset's hooks; no-ops on a
                             Dataset).

`for element in dataset` (tf.data style) yields elements as they are (a bare array for a
dataset of single arrays, or with label_mode=None) and counts passes as epochs 0, 1, 2, ...
A directory dataset with batch_size=None yields single samples (its batch_size attribute is
None): batch it with .batch(n) before training.
"""
from .dataset import AUTOTUNE, INFINITE, UNKNOWN, Dataset, default_workers, ordered_map
from .images import (IMAGE_EXTENSIONS, ImageDataset, ImageFolderDataset, MissingDataError,
                     array_to_img, image_dataset_from_directory, img_to_array, index_directory,
                     load_image_arrays, load_img, save_img)
from .pydataset import PyDataset, PyDatasetIterator, standardize_batch

# Pillow's own decompression-bomb threshold (PIL.Image.MAX_IMAGE_PIXELS by default,
# about 9459 x 9459): the most pixels pynn decodes from one file, or asks one image
# to be resized to.  Read where it is used, so it may be changed at run time.
MAX_IMAGE_PIXELS = 89_478_485

Sequence = PyDataset            # keras.utils.Sequence, Keras 3's other name for it


def adapt(data, shuffle=False):
    """`data` as an object of the trainer's protocol (see the module's docstring): a Dataset
    as is, a PyDataset wrapped in a PyDatasetIterator (shuffle: the batch order reshuffled
    per epoch, as Keras's fit(shuffle=True) does with a PyDataset)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, PyDataset):
        return PyDatasetIterator(data, shuffle=shuffle)
    if isinstance(data, PyDatasetIterator):
        return data
    raise TypeError(f"pynn.data.adapt: expected a pynn.data.Dataset or a PyDataset, received "
                    f"{type(data).__name__}")


def is_dataset(data):
    """Whether `data` is one of the objects adapt() takes."""
    return isinstance(data, (Dataset, PyDataset, PyDatasetIterator))


def num_batches(data):
    """The number of batches per epoch of `data`, or None where it is not known."""
    try:
        return len(adapt(data))
    except TypeError:
        return None


__all__ = ["AUTOTUNE", "INFINITE", "UNKNOWN", "Dataset", "ImageFolderDataset", "ImageDataset",
           "PyDataset", "PyDatasetIterator", "Sequence", "MissingDataError", "MAX_IMAGE_PIXELS",
           "IMAGE_EXTENSIONS", "adapt", "is_dataset", "num_batches", "default_workers",
           "image_dataset_from_directory", "load_image_arrays", "load_img", "img_to_array",
           "array_to_img", "save_img", "index_directory", "standardize_batch", "ordered_map"]
