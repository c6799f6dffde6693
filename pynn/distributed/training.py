"""What fit / evaluate do differently on more than one rank (the trainer calls these when
pynn.distributed.active() gives a world; on one rank none of this runs).

  Shard            one rank's part of a pass over n rows in global batches of B
  run_steps        a stretch of steps of a Shard through an executor (a rank without rows
                   in the last batch still takes part in its gradient exchange)
  slice_batch      one rank's part of a streamed batch
  sum_logs         an accumulator's sums added over the ranks, in rank order
  sync_position    rank 0's generator state, step count and resume position on every
                   rank, at the start of fit
  sync_weights     rank 0's weights and optimizer state on every rank, before the first step
  check_data       the data's shapes agree across ranks (else an error naming the rank)
  rank0_only       the callbacks that print or write files, muted on the other ranks
  average_state    the non-trainable state (BatchNormalization's moving statistics)
                   averaged over the ranks at the end of each epoch
"""
import numpy as np

from .. import callbacks as callbacks_module
from ..utils import rng
from ..variables import values_changed


def bounds(rows, rank, size):
    """Rank `rank`'s rows [lo, hi) of a batch of `rows` rows: the batch split as evenly as
    it goes, in rank order (the first ranks get the smaller parts)."""
    return rows * rank // size, rows * (rank + 1) // size


class Shard:
    """One rank's part of a pass over n rows (in the order `order`, None: 0 .. n-1) in
    global batches of `batch` rows: for every batch, the rank's slice of it (bounds).
    Laid out as one local order whose step s is rows [s * local_batch, ...): every full
    batch gives the same local_batch rows; the last (shorter) batch comes at the end, and
    may give this rank no rows at all (`empty_last`)."""

    def __init__(self, order, n, batch, world):
        r, size = world.rank, world.size
        idx = np.arange(n, dtype=np.int64) if order is None else order
        full = n // batch
        lo, hi = bounds(batch, r, size)
        self.batch = hi - lo
        parts = [idx[:full * batch].reshape(full, batch)[:, lo:hi].reshape(-1)]
        tail = n - full * batch
        self.num_batches = full + (1 if tail else 0)
        self.empty_last = False
        if tail:
            a, b = bounds(tail, r, size)
            parts.append(idx[full * batch + a:full * batch + b])
            self.empty_last = b == a
        self.order = np.ascontiguousarray(np.concatenate(parts), dtype=np.int64)
        self.n = self.order.shape[0]


class _EmptyStep:
    """A streamed batch that gave this rank no rows: one step, without rows."""
    order, n, batch, num_batches, empty_last = None, 0, 1, 1, True


EMPTY_STEP = _EmptyStep()


def run_steps(ex, inputs, targets, outputs, shard, first_step, k, iterations, train):
    """Steps first_step .. first_step + k - 1 of the pass, through `ex`: (losses, metrics,
    rows) as Executor.run gives them, the step of a rank without rows (the last, when the
    batch is smaller than the ranks) with rows 0.  A training step without rows still
    exchanges its (zero) gradients and applies the optimizer, as every rank must."""
    plan = ex.plan
    k_run = k - 1 if shard.empty_last and first_step + k == shard.num_batches else k
    if k_run > 0:
        losses, metrics, rows = ex.run(inputs, targets, outputs, shard.order, shard.n,
                                       first_step * shard.batch, shard.batch, k_run,
                                       iterations)
        if len(rows) < k_run or k_run == k:
            return losses, metrics, rows
        losses, metrics, rows = losses.copy(), metrics.copy(), rows.copy()
    else:
        losses = np.zeros((0, plan.n_losses))
        metrics = np.zeros((0, plan.n_metrics))
        rows = np.zeros(0, dtype=np.int64)
    if train and plan.optimizer_op is not None:
        ex.optimizer_only_step(iterations + k_run + 1)
    return (np.vstack([losses, np.zeros((1, plan.n_losses))]),
            np.vstack([metrics, np.zeros((1, plan.n_metrics))]),
            np.concatenate([rows, np.zeros(1, dtype=np.int64)]))


def slice_batch(world, arrays):
    """This rank's rows of a streamed batch (a list of arrays of equal rows)."""
    n = arrays[0].shape[0]
    lo, hi = bounds(n, world.rank, world.size)
    return [a[lo:hi] for a in arrays]


def sum_logs(world, values):
    """The float64 vector `values` summed over the ranks, in rank order (one allgather)."""
    every = world.comm.allgather(np.ascontiguousarray(values, dtype=np.float64),
                                 "the averaging of the logs")
    total = every[0].copy()
    for r in range(1, world.size):
        total += every[r]
    return total


def sync_position(world, optimizer, start, resume):
    """Rank 0's optimizer step count, random generator state (so every rank draws the same
    permutation of each epoch) and the epoch / position a callback restored there
    (BackupAndRestore), on every rank: returns (start, resume) as rank 0 has them."""
    meta = world.comm.bcast_object(
        (int(optimizer.iterations), rng().bit_generator.state, start, resume), 0,
        "the broadcast of rank 0's training position")
    optimizer.iterations, state, start, resume = meta
    rng().bit_generator.state = state
    return start, resume


def sync_weights(world, engine):
    """Rank 0's weights (trainable and not) and optimizer state on every rank (the model
    built; the sizes checked first, naming a rank that differs)."""
    store = engine.ensure_store()
    optimizer = engine.optimizer
    optimizer.build(store)
    be = store.backend
    shapes = (tuple(store.params.shape), tuple(store.state.shape),
              sorted(optimizer.state_shapes().items()))
    check_same(world, shapes, "the model's weights and optimizer state (sizes)")
    for arr in (store.params, store.state):
        host = np.ascontiguousarray(be.to_host(arr), dtype=np.float32).reshape(-1)
        world.comm.bcast(host, 0, "the broadcast of rank 0's weights")
        be.copy_from_host(arr, host)
    values_changed()
    slots = optimizer.state_arrays()
    if slots:
        for name in sorted(slots):
            world.comm.bcast(slots[name].reshape(-1), 0, "the broadcast of the optimizer state")
        optimizer.set_state_arrays(slots)


def check_same(world, value, what):
    """Raise the same ValueError on every rank, naming the first rank whose `value`
    differs from rank 0's."""
    every = world.comm.allgather_object(value, f"the check of {what}")
    for r, v in enumerate(every):
        if v != every[0]:
            raise ValueError(f"pynn.distributed: {what} differ across ranks: rank {r} has "
                             f"{v!r}, rank 0 has {every[0]!r}; every rank must run the same "
                             "script on the same data")


def check_same_batch(world, arrays, kind):
    """The first batch of an epoch of a stream is the same on every rank (a fingerprint of
    its bytes): each rank keeps its part of every batch, so the ranks must read the same
    batches in the same order."""
    import zlib
    prints = [(tuple(a.shape), zlib.crc32(np.ascontiguousarray(a).view(np.uint8))) for a in arrays]
    every = world.comm.allgather_object(prints, f"the check of the {kind}'s batches")
    for r, v in enumerate(every):
        if v != every[0]:
            raise ValueError(f"pynn.distributed: the {kind} gave rank {r} another first batch "
                             f"than rank 0; every rank must read the same batches in the same "
                             "order (each keeps its part of every batch): give the shuffle a "
                             "seed, or build the dataset after pynn.distributed.init()")


def check_data(world, arrays, batch_size, where):
    """Every rank holds the same data (rows and shapes) and the global batch gives every
    rank a row."""
    if batch_size is not None and batch_size < world.size:
        raise ValueError(f"{where}: batch_size={batch_size} is smaller than the {world.size} "
                         f"ranks; batch_size is the global batch, split over the ranks: pass "
                         f"batch_size >= {world.size}")
    shapes = [(tuple(a.shape), a.dtype.str) for a in arrays]
    check_same(world, shapes, "the shapes of the data (inputs, targets, sample weights)")


_WRITERS = (callbacks_module.ProgbarLogger, callbacks_module.ModelCheckpoint,
            callbacks_module.CSVLogger, callbacks_module.TensorBoard,
            callbacks_module.BackupAndRestore)


class _Muted(callbacks_module.Callback):
    """A callback that prints or writes, on a rank other than 0: its hooks do nothing, but
    it asks for the per-batch hooks as the original does, so every rank runs the same
    steps per call (and so the same exchanges)."""

    def __init__(self, original):
        super().__init__()
        self.original = original
        self.coarse_batch_hooks = getattr(original, "coarse_batch_hooks", False)

    def needs_batch_hooks(self, kind):
        one = object.__new__(callbacks_module.CallbackList)
        one.callbacks = [self.original]
        return one.wants_every_batch(kind)


def rank0_only(world, callbacks):
    """The callbacks, those that print or write files muted on ranks other than 0."""
    if world.rank == 0:
        return callbacks
    return [_Muted(cb) if isinstance(cb, _WRITERS) else cb for cb in callbacks]


def average_state(world, engine):
    """The non-trainable weights (moving statistics) averaged over the ranks, in float64
    and rank order (identical values stay bitwise identical)."""
    store = engine.store
    if store is None or store.layout.n_state == 0:
        return
    be = store.backend
    host = np.asarray(be.to_host(store.state), dtype=np.float64).reshape(-1)
    world.comm.allreduce_sum(host, None, "the averaging of the moving statistics")
    be.copy_from_host(store.state, (host / world.size).astype(np.float32))
    values_changed()
