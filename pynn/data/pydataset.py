"""keras.utils.PyDataset (keras/src/trainers/data_adapters/py_dataset_adapter.py), and the
iterator that runs its __getitem__ on a pool of threads (or processes) with results in
index order."""
import itertools
import random
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..checks import check_bool, check_int
from .dataset import as_tuple, ordered_map


class PyDataset:
    """Base class for a dataset written in Python, as Keras 3's: a subclass implements
    __getitem__(index) -> one whole batch ((x,), (x, y) or (x, y, w), or x) and __len__
    (the number of batches) or the num_batches property (None: infinite), and may implement
    on_epoch_begin / on_epoch_end.  workers, use_multiprocessing and max_queue_size say how
    PyDatasetIterator (what fit uses) runs __getitem__; iterating the object yourself runs
    it in the loop, as in Keras."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    def _warn_if_super_not_called(self):
        warn = False
        for name, default in (("_workers", 1), ("_use_multiprocessing", False),
                              ("_max_queue_size", 10)):
            if not hasattr(self, name):
                setattr(self, name, default)
                warn = True
        if warn:
            warnings.warn("Your `PyDataset` class should call `super().__init__(**kwargs)` in "
                          "its constructor. `**kwargs` can include `workers`, "
                          "`use_multiprocessing`, `max_queue_size`. Do not pass these "
                          "arguments to `fit()`, as they will be ignored.", stacklevel=3)

    @property
    def workers(self):
        self._warn_if_super_not_called()
        return self._workers

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        self._warn_if_super_not_called()
        return self._use_multiprocessing

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = value

    @property
    def max_queue_size(self):
        self._warn_if_super_not_called()
        return self._max_queue_size

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    def __getitem__(self, index):
        raise NotImplementedError

    def __iter__(self):
        num_batches = None
        try:
            num_batches = self.num_batches
        except NotImplementedError:
            pass
        for index in itertools.count() if num_batches is None else range(num_batches):
            yield self[index]

    @property
    def num_batches(self):
        """The number of batches, or None for an infinite dataset (defaults to __len__)."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError("You need to implement the `num_batches` property:\n\n"
                                  "@property\ndef num_batches(self):\n  return ...")

    def on_epoch_begin(self):
        """Called at the beginning of every epoch."""

    def on_epoch_end(self):
        """Called at the end of every epoch."""


def standardize_batch(batch):
    """A batch as the trainer's protocol wants it: (x,), (x, y) or (x, y, w) of
    C-contiguous NumPy arrays (Keras's PyDatasetAdapter._standardize_batch)."""
    if isinstance(batch, dict):
        raise TypeError("PyDataset.__getitem__() returned a dict; pynn takes a batch as a "
                        "tuple (x,), (x, y) or (x, y, w) of arrays")
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        batch = (batch,)
    if len(batch) not in (1, 2, 3):
        raise ValueError("PyDataset.__getitem__() must return a tuple. It must be ordered "
                         "either (input,) or (inputs, targets) or (inputs, targets, "
                         f"sample_weights). Received: {str(batch)[:100]}... of type "
                         f"{type(batch)}")
    return as_tuple(tuple(np.asarray(v) for v in batch))


_PROCESS_DATASET = None


def _process_init(dataset):
    global _PROCESS_DATASET
    _PROCESS_DATASET = dataset


def _process_get(index):
    return standardize_batch(_PROCESS_DATASET[index])


class PyDatasetIterator:
    """Runs a PyDataset's __getitem__ on `workers` threads (processes with
    use_multiprocessing, the dataset pickled once into each), at most max_queue_size
    batches computed ahead, the batches handed out in index order.  The trainer's protocol:
    iterate(epoch) yields standardized batches; len() the number of batches (TypeError
    when infinite); on_epoch_begin/on_epoch_end call the dataset's."""

    def __init__(self, py_dataset, shuffle=False):
        if not isinstance(py_dataset, PyDataset):
            raise TypeError(f"PyDatasetIterator: expected a pynn.utils.PyDataset, received "
                            f"{type(py_dataset).__name__}")
        self.py_dataset = py_dataset
        self.shuffle = check_bool(shuffle, "shuffle", "PyDatasetIterator")
        self.workers = check_int(py_dataset.workers, "workers", "PyDataset", low=0, high=1024)
        self.use_multiprocessing = check_bool(py_dataset.use_multiprocessing,
                                              "use_multiprocessing", "PyDataset")
        self.max_queue_size = check_int(py_dataset.max_queue_size, "max_queue_size",
                                        "PyDataset", high=1 << 20)
        self._passes = 0

    @property
    def num_batches(self):
        return self.py_dataset.num_batches

    def __len__(self):
        n = self.num_batches
        if n is None:
            raise TypeError("The PyDataset is infinite (num_batches is None).")
        return n

    def on_epoch_begin(self):
        self.py_dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.py_dataset.on_epoch_end()

    def _indices(self, epoch):
        n = self.num_batches
        if n is None:
            return itertools.count()
        indices = list(range(n))
        if self.shuffle:                      # Keras: random.Random(epoch).shuffle
            random.Random(epoch).shuffle(indices)
        return iter(indices)

    def iterate(self, epoch=0):
        """The batches of epoch `epoch`, standardized, in index order (or the epoch's
        shuffled order with shuffle=True)."""
        indices = self._indices(epoch)
        if self.use_multiprocessing and self.workers > 0:
            yield from self._processes(indices)
            return

        def get(index):
            return standardize_batch(self.py_dataset[index])
        workers = max(1, self.workers)
        depth = 1 if workers == 1 else max(workers, self.max_queue_size)
        yield from ordered_map(get, indices, workers, depth)

    def _processes(self, indices):
        import collections
        import multiprocessing
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        depth = max(self.workers, self.max_queue_size)
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_process_init,
                                 initargs=(self.py_dataset,)) as pool:
            pending = collections.deque()
            try:
                for index in indices:
                    pending.append(pool.submit(_process_get, index))
                    if len(pending) >= depth:
                        break
                while pending:
                    yield pending.popleft().result()
                    for index in indices:
                        pending.append(pool.submit(_process_get, index))
                        break
            finally:
                for future in pending:
                    future.cancel()

    def __iter__(self):
        epoch = self._passes
        self._passes += 1
        return self.iterate(epoch)
