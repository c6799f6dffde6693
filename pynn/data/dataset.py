"""`pynn.data.Dataset`: the tf.data surface the TensorFlow tutorials use, in NumPy terms.

A Dataset is a re-startable iterable of elements; an element is one NumPy array or a
tuple of them.  Every operation returns a new Dataset and reads its parent lazily:

    ds = (pynn.data.Dataset.from_tensor_slices((x, y))
          .shuffle(1000, seed=1).map(augment, num_parallel_calls=pynn.data.AUTOTUNE)
          .batch(32).prefetch(pynn.data.AUTOTUNE))
    for xb, yb in ds: ...

Each pass (`for ... in ds`, or `ds.iterate(epoch)`) is one epoch.  A pass is keyed by its
epoch number, and everything random in it (shuffle) draws from a generator made from
(seed, epoch): the same seed and epoch give the same elements, whatever the number of
threads; `iter(ds)` uses an internal counter (0, 1, 2, ...) so `reshuffle_each_iteration`
gives a new order on each pass, and the same orders on the next run.
"""
import collections
import json
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..checks import check_bool, check_int, check_seed, invalid

AUTOTUNE = -1
INFINITE = -1          # cardinality() of a dataset that never ends (tf.data.INFINITE_CARDINALITY)
UNKNOWN = -2           # cardinality() that cannot be known without iterating (UNKNOWN_CARDINALITY)


def default_workers():
    """Threads used where a count is left to pynn (AUTOTUNE, workers=None): the CPU count,
    at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _derive_seed(seed, where):
    """seed, or one drawn from pynn.utils.rng() (so set_random_seed makes runs repeat)."""
    seed = check_seed(seed, "seed", where)
    if seed is None:
        from ..utils import rng
        seed = int(rng().integers(0, 2**63 - 1))
    return seed


def _as_element(value):
    """A list becomes a tuple; anything else that is not a tuple an array."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, tuple):
        return tuple(np.asarray(v) for v in value)
    return np.asarray(value)


def as_tuple(element):
    """An element as the trainer's protocol wants it: a tuple of C-contiguous arrays."""
    if not isinstance(element, tuple):
        element = (element,)
    return tuple(np.ascontiguousarray(v) for v in element)


# Background workers (decoding, a map's fn) run at a lower OS priority than the thread that
# trains: on a machine whose cores the model's OpenMP threads keep busy, the scheduler then
# lets the training threads finish their parallel regions (a preempted thread stalls its whole
# team at the next barrier) and gives the decoders the gaps.  On 2 cores, a small CNN's
# streamed epoch went from about 2.0x to 1.8x the in-memory epoch (2,000 images, 64x64).
WORKER_NICENESS = 10


def _lower_priority():
    """Run in each worker thread as it starts: nice it by WORKER_NICENESS (Linux threads
    have their own niceness; elsewhere, or where it is refused, nothing changes)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) +
                       WORKER_NICENESS)
    except (AttributeError, OSError):
        pass


def ordered_map(fn, items, workers, depth, on_result=None):
    """fn(item) for each item, on `workers` threads, yielded in the order of `items`
    (never in completion order).  At most `depth` results are computed-but-not-yet-taken
    at any time (the one the consumer holds included), so memory is bounded by `depth`
    results.  An exception in fn is raised here, in the consumer, when its turn comes.
    Leaving the loop early cancels what is not started."""
    items = iter(items)
    if workers <= 1 and depth <= 1:
        for item in items:
            yield fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="pynn-data",
                              initializer=_lower_priority)
    pending = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            yield result
            del result
            for item in items:              # refill one, after the consumer took one
                pending.append(pool.submit(fn, item))
                break
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


class Dataset:
    """A re-startable iterable of elements (an array, or a tuple of arrays).  Build one
    with Dataset.from_tensor_slices, or with pynn.data.image_dataset_from_directory."""

    def __init__(self):
        self._passes = 0

    # -- what a subclass defines --------------------------------------------------------
    def _elements(self, key):
        """The elements of the pass keyed by `key` (a tuple of ints: the epoch, then the
        repetition numbers of enclosing repeat()s)."""
        raise NotImplementedError

    def cardinality(self):
        """The number of elements, or pynn.data.INFINITE (-1), or pynn.data.UNKNOWN (-2)."""
        return UNKNOWN

    # -- iteration ------------------------------------------------------------------------
    def iterate(self, epoch=0):
        """The elements of epoch `epoch` as tuples of C-contiguous NumPy arrays (`(x,)`
        for a dataset of single arrays): the trainer's protocol.  The same epoch gives the
        same elements; a new epoch reshuffles (where reshuffle_each_iteration)."""
        epoch = check_int(epoch, "epoch", "Dataset.iterate", low=0)
        for element in self._elements((epoch,)):
            yield as_tuple(element)

    def __iter__(self):
        """As tf.data: each element as is (an array, or a tuple of arrays).  Pass k (from 0)
        over this object is epoch k."""
        epoch = self._passes
        self._passes += 1
        return iter(self._elements((epoch,)))

    def __len__(self):
        n = self.cardinality()
        if n == INFINITE:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN:
            raise TypeError("The dataset length is unknown.")
        return n

    def on_epoch_begin(self):
        """Nothing: here so that every pynn data object has the PyDataset hooks."""

    def on_epoch_end(self):
        """Nothing (see on_epoch_begin)."""

    def as_numpy_iterator(self):
        return iter(self)

    # -- sources ----------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors):
        """Elements x[i] (or (x[i], y[i]), (x[i], y[i], w[i])) along the first axis."""
        return _Slices(tensors)

    # -- transformations -------------------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None):
        """map_func(*element) (or map_func(element) for a single array) for each element.
        num_parallel_calls: None runs it in the loop; an int or AUTOTUNE on that many threads,
        the results still in the order of the elements."""
        return _Map(self, map_func, num_parallel_calls)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        """tf.data's buffered shuffle: a buffer of buffer_size elements, each output drawn
        uniformly from it.  seed=None: drawn from pynn.utils.rng() now."""
        return _Shuffle(self, buffer_size, seed, reshuffle_each_iteration)

    def batch(self, batch_size, drop_remainder=False):
        """Stack batch_size consecutive elements along a new first axis."""
        return _Batch(self, batch_size, drop_remainder)

    def unbatch(self):
        """Split each element along its first axis."""
        return _Unbatch(self)

    def take(self, count):
        """The first `count` elements (-1: all)."""
        return _Take(self, count)

    def skip(self, count):
        """All but the first `count` elements (-1: none)."""
        return _Skip(self, count)

    def prefetch(self, buffer_size):
        """Compute up to buffer_size elements ahead on a background thread (AUTOTUNE: 2)."""
        return _Prefetch(self, buffer_size)

    def cache(self, filename=""):
        """Keep the elements of the first complete pass (in memory, or with a filename in
        .npy files named filename.<element>.<part>.npy plus filename.index.json) and replay
        them on later passes."""
        return _Cache(self, filename)

    def repeat(self, count=None):
        """The elements `count` times (None or -1: forever); each repetition is a new pass,
        so a shuffle inside reshuffles."""
        return _Repeat(self, count)


def _check_parent(parent, where):
    if not isinstance(parent, Dataset):
        raise TypeError(f"{where}: expected a pynn.data.Dataset, received "
                        f"{type(parent).__name__}")


class _Slices(Dataset):
    def __init__(self, tensors):
        super().__init__()
        if isinstance(tensors, dict):
            raise TypeError("Dataset.from_tensor_slices: expected an array or a tuple of "
                            "arrays (x, y[, w]); dicts are not supported")
        self._single = not isinstance(tensors, (tuple, list))
        parts = (tensors,) if self._single else tuple(tensors)
        if not parts:
            raise ValueError("Dataset.from_tensor_slices: received an empty tuple")
        self._parts = tuple(np.ascontiguousarray(p) for p in parts)
        for p in self._parts:
            if p.ndim == 0:
                raise ValueError("Dataset.from_tensor_slices: expected arrays with a first "
                                 f"axis to slice, received a scalar {p!r}")
        lengths = {len(p) for p in self._parts}
        if len(lengths) != 1:
            raise ValueError("Dataset.from_tensor_slices: expected arrays with the same "
                             f"first dimension, received lengths {[len(p) for p in self._parts]}")
        self._n = lengths.pop()

    def cardinality(self):
        return self._n

    def _elements(self, key):
        for i in range(self._n):
            if self._single:
                yield self._parts[0][i]
            else:
                yield tuple(p[i] for p in self._parts)


class _Map(Dataset):
    def __init__(self, parent, fn, num_parallel_calls):
        super().__init__()
        _check_parent(parent, "Dataset.map")
        if not callable(fn):
            raise TypeError(f"Dataset.map: expected a callable, received {type(fn).__name__}")
        if num_parallel_calls is not None and num_parallel_calls != AUTOTUNE:
            check_int(num_parallel_calls, "num_parallel_calls", "Dataset.map")
        self._parent, self._fn = parent, fn
        self._workers = (1 if num_parallel_calls is None else default_workers()
                         if num_parallel_calls == AUTOTUNE else num_parallel_calls)

    def cardinality(self):
        return self._parent.cardinality()

    def _call(self, element):
        out = self._fn(*element) if isinstance(element, tuple) else self._fn(element)
        return _as_element(out)

    def _elements(self, key):
        source = self._parent._elements(key)
        if self._workers <= 1:
            for element in source:
                yield self._call(element)
        else:
            yield from ordered_map(self._call, source, self._workers, 2 * self._workers)


class _Shuffle(Dataset):
    def __init__(self, parent, buffer_size, seed, reshuffle):
        super().__init__()
        _check_parent(parent, "Dataset.shuffle")
        self._parent = parent
        self._size = check_int(buffer_size, "buffer_size", "Dataset.shuffle")
        self._seed = _derive_seed(seed, "Dataset.shuffle")
        self._reshuffle = check_bool(reshuffle, "reshuffle_each_iteration", "Dataset.shuffle")

    def cardinality(self):
        return self._parent.cardinality()

    def _elements(self, key):
        gen = np.random.default_rng([self._seed, *(key if self._reshuffle else (0,) * len(key))])
        buffer = []
        for element in self._parent._elements(key):
            if len(buffer) < self._size:
                buffer.append(element)
                continue
            i = int(gen.integers(len(buffer)))
            out, buffer[i] = buffer[i], element
            yield out
        while buffer:
            i = int(gen.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()


def _stack(elements, where):
    first = elements[0]
    try:
        if isinstance(first, tuple):
            return tuple(np.stack([e[k] for e in elements]) for k in range(len(first)))
        return np.stack(elements)
    except ValueError as exc:
        raise ValueError(f"{where}: cannot stack elements of different shapes into a batch "
                         f"({exc})") from exc


class _Batch(Dataset):
    def __init__(self, parent, batch_size, drop_remainder):
        super().__init__()
        _check_parent(parent, "Dataset.batch")
        self._parent = parent
        self._size = check_int(batch_size, "batch_size", "Dataset.batch")
        self._drop = check_bool(drop_remainder, "drop_remainder", "Dataset.batch")

    def cardinality(self):
        n = self._parent.cardinality()
        if n < 0:
            return n
        return n // self._size if self._drop else -(-n // self._size)

    def _elements(self, key):
        chunk = []
        for element in self._parent._elements(key):
            chunk.append(element)
            if len(chunk) == self._size:
                yield _stack(chunk, "Dataset.batch")
                chunk = []
        if chunk and not self._drop:
            yield _stack(chunk, "Dataset.batch")


class _Unbatch(Dataset):
    def __init__(self, parent):
        super().__init__()
        _check_parent(parent, "Dataset.unbatch")
        self._parent = parent

    def cardinality(self):
        return INFINITE if self._parent.cardinality() == INFINITE else UNKNOWN

    def _elements(self, key):
        for element in self._parent._elements(key):
            if isinstance(element, tuple):
                for row in zip(*element):
                    yield tuple(row)
            else:
                yield from element


def _check_count(count, where):
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) \
            or count < -1:
        raise invalid(where, "count", "an integer >= -1", count)
    return int(count)


class _Take(Dataset):
    def __init__(self, parent, count):
        super().__init__()
        _check_parent(parent, "Dataset.take")
        self._parent, self._count = parent, _check_count(count, "Dataset.take")

    def cardinality(self):
        n = self._parent.cardinality()
        if self._count == -1:
            return n
        if n == INFINITE:
            return self._count
        return n if n == UNKNOWN else min(n, self._count)

    def _elements(self, key):
        if self._count == 0:
            return
        for i, element in enumerate(self._parent._elements(key)):
            yield element
            if i + 1 == self._count:
                return


class _Skip(Dataset):
    def __init__(self, parent, count):
        super().__init__()
        _check_parent(parent, "Dataset.skip")
        self._parent, self._count = parent, _check_count(count, "Dataset.skip")

    def cardinality(self):
        n = self._parent.cardinality()
        if n < 0:
            return n
        return 0 if self._count == -1 else max(0, n - self._count)

    def _elements(self, key):
        if self._count == -1:
            return
        for i, element in enumerate(self._parent._elements(key)):
            if i >= self._count:
                yield element


_END = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


class _Prefetch(Dataset):
    def __init__(self, parent, buffer_size):
        super().__init__()
        _check_parent(parent, "Dataset.prefetch")
        if buffer_size != AUTOTUNE:
            check_int(buffer_size, "buffer_size", "Dataset.prefetch", low=0)
        self._parent = parent
        self._size = 2 if buffer_size == AUTOTUNE else int(buffer_size)

    def cardinality(self):
        return self._parent.cardinality()

    def _elements(self, key):
        if self._size == 0:
            yield from self._parent._elements(key)
            return
        box = queue.Queue(self._size)
        stop = threading.Event()

        def put(item):
            while not stop.is_set():
                try:
                    box.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False

        def produce():
            source = self._parent._elements(key)
            try:
                for element in source:
                    if not put(element):
                        return
                put(_END)
            except BaseException as exc:      # noqa: BLE001 (handed to the consumer)
                put(_Failure(exc))
            finally:
                source.close()

        thread = threading.Thread(target=produce, daemon=True, name="pynn-prefetch")
        thread.start()
        try:
            while True:
                item = box.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join()


class _Cache(Dataset):
    def __init__(self, parent, filename):
        super().__init__()
        _check_parent(parent, "Dataset.cache")
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"Dataset.cache: expected filename as a path or '', received "
                            f"{type(filename).__name__}")
        self._parent, self._file = parent, os.fspath(filename)
        self._memory = None
        self._lock = threading.Lock()

    def cardinality(self):
        return self._parent.cardinality()

    def _index(self):
        return self._file + ".index.json"

    def _elements(self, key):
        if self._file:
            if os.path.exists(self._index()):
                yield from self._read()
                return
        elif self._memory is not None:
            yield from self._memory
            return
        kept = []
        for element in self._parent._elements(key):
            kept.append(element)
            yield element
        # only a complete pass is kept (tf.data discards a partial cache the same way)
        if self._file:
            self._write(kept)
        else:
            self._memory = kept

    def _write(self, elements):
        single = bool(elements) and not isinstance(elements[0], tuple)
        width = 1 if single or not elements else len(elements[0])
        for k in range(width):
            parts = [e if single else e[k] for e in elements]
            np.save(f"{self._file}.{len(elements)}.{k}.npy",
                    np.stack(parts) if parts else np.zeros((0,)))
        with open(self._index(), "w") as f:
            json.dump({"count": len(elements), "width": width, "single": single}, f)

    def _read(self):
        with open(self._index()) as f:
            meta = json.load(f)
        n = meta["count"]
        parts = [np.load(f"{self._file}.{n}.{k}.npy", mmap_mode="r") for k in range(meta["width"])]
        for i in range(n):
            if meta["single"]:
                yield np.array(parts[0][i])
            else:
                yield tuple(np.array(p[i]) for p in parts)


class _Repeat(Dataset):
    def __init__(self, parent, count):
        super().__init__()
        _check_parent(parent, "Dataset.repeat")
        self._parent = parent
        self._count = -1 if count is None else _check_count(count, "Dataset.repeat")

    def cardinality(self):
        n = self._parent.cardinality()
        if self._count == 0 or n == 0:
            return 0
        if self._count == -1 or n == INFINITE:
            return INFINITE
        return n if n == UNKNOWN else n * self._count

    def _elements(self, key):
        k = 0
        while self._count == -1 or k < self._count:
            empty = True
            for element in self._parent._elements(key + (k,)):
                empty = False
                yield element
            if empty:
                return
            k += 1
