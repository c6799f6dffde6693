"""What fit / evaluate / predict read when `x` is not arrays: a stream of batches.

Keras 3 takes, besides arrays, a dataset (pynn.data.Dataset and what
image_dataset_from_directory returns), a `keras.utils.PyDataset`, or a Python generator,
each yielding batches `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` (Keras's
unpack_x_y_sample_weight).  `Stream` wraps any of them:

  length()        batches per pass, or None when unknown (a generator, a repeated dataset)
  epoch(i)        an iterator over pass i's batches: for pynn's datasets and PyDatasets,
                  the protocol of pynn/data/__init__.py (`iterate(i)`: the shuffle order is a
                  function of the seed and i, so a run, and a resumed run, repeats; the
                  PyDataset's workers; on_epoch_begin / on_epoch_end around the pass); for
                  any other iterable, iter()
  once            True for a generator: it can be iterated only once

The trainer converts and checks each batch as it does arrays (validation.py) and runs it
as one step of the same plans, so a stream and the same batches as arrays give bitwise
the same weights.  Decoding and prefetching are the dataset's business (pynn/data/): the
next batches are being prepared while the C core trains on this one.
"""
import types

import numpy as np


def _is_pydataset(x):
    return any(c.__name__ == "PyDataset" for c in type(x).__mro__)


def is_stream(x):
    """True for a dataset, a PyDataset or a generator (anything iterable that is not an
    array or a structure of arrays)."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    if hasattr(x, "numpy") and hasattr(x, "path"):          # a pynn.Variable
        return False
    if isinstance(x, types.GeneratorType) or _is_pydataset(x):
        return True
    return hasattr(x, "__iter__") and not hasattr(x, "__array__")


def kind_of(x):
    if isinstance(x, types.GeneratorType):
        return "generator"
    if _is_pydataset(x):
        return "PyDataset"
    return "dataset"


def unpack(batch, where):
    """(x, y, sample_weight) of one batch, as Keras's unpack_x_y_sample_weight."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if len(batch) == 1:
        return batch[0], None, None
    if len(batch) == 2:
        return batch[0], batch[1], None
    if len(batch) == 3:
        return batch
    raise ValueError(f"{where}: expected each batch as x, (x,), (x, y) or (x, y, sample_weight), "
                     f"received a tuple of {len(batch)} items")


class Stream:
    def __init__(self, source, where, what="x", shuffle=False):
        from .. import data
        self.where, self.what = where, what
        self.kind = kind_of(source)
        self.once = self.kind == "generator"
        self._used = False
        # pynn's datasets and PyDatasets speak the trainer's protocol (pynn/data/__init__.py);
        # fit(shuffle=True) reorders a PyDataset's batches per epoch, as Keras does
        self.adapted = data.adapt(source, shuffle=bool(shuffle)) if data.is_dataset(source) \
            else None
        self.source = source

    def length(self):
        src = self.source
        if self.once:
            return None
        if self.adapted is not None:
            try:
                return len(self.adapted)
            except TypeError:
                return None
        if self.kind == "PyDataset":
            n = getattr(src, "num_batches", None)
            if n is None:
                try:
                    n = len(src)
                except TypeError:
                    return None
            return None if n is None else int(n)
        try:
            n = len(src)
        except (TypeError, ValueError):
            return None
        return int(n) if n is not None and n >= 0 else None

    def epoch(self, i):
        src = self.source
        if self.adapted is not None:
            return _protocol_pass(self.adapted, i)
        if self.once:
            if self._used:
                return iter(())
            self._used = True
            return src
        if self.kind == "PyDataset":
            return _pydataset_pass(src, i)
        iterate = getattr(src, "iterate", None)
        return iter(iterate(i)) if callable(iterate) else iter(src)


def _protocol_pass(src, epoch):
    src.on_epoch_begin()
    yield from src.iterate(epoch)
    src.on_epoch_end()


def _pydataset_pass(ds, epoch):
    """One pass over an object shaped like a PyDataset that is not pynn's (Keras's own,
    say): its batches in index order, with its epoch hooks around the pass."""
    begin = getattr(ds, "on_epoch_begin", None)
    if callable(begin):
        begin()
    n = getattr(ds, "num_batches", None)
    n = len(ds) if n is None else n
    for index in range(n):
        yield ds[index]
    end = getattr(ds, "on_epoch_end", None)
    if callable(end):
        end()
