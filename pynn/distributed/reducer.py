"""The gradient reducer: what a training plan's OP_GRAD_HOOK ops call.

How a step hands its gradients over (the plan is compiled with the hooks when
pynn.distributed runs on more than one rank, pynn/models/plan.py insert_grad_hooks):

    forward ... loss ... dense_backward (last layer)   -> grads[o2 .. n) are final
                         grad_hook phase 0 (o2, n - o2)  -> bucket 1 queued, returns at once
                         dense_backward (layer 2)        <- runs while bucket 1 is reduced
                         ...
                         grad_hook phase 0 (0, o2)       -> the last bucket queued
                         grad_hook phase 1               -> waits for every bucket
                         optimizer                        <- reads the averaged gradients

csrc/plan.c calls the hook (a C function pointer, pynn_plan.hook) between two kernels of
the step; pynn/_core_plan.pxi's _plan_hook takes the GIL and calls GradReducer.hook.  Phase 0
only puts the bucket on a queue; a communication thread does the MPI work (mpi4py releases
the GIL in its calls, and the kernels of the step run with the GIL released), so the
reduction of the last layers' gradients overlaps the backward of the earlier ones.  The
Python executor (numpy, cuda) calls the same hook from its grad_hook op; on cuda the bucket
is copied to the host first and the reduced gradients copied back at phase 1.

Averaging.  Each rank's loss is the mean over its rows b_r of the step, so its gradient is
(1/b_r) sum_i g_i.  The first hook of a step exchanges the ranks' row counts (R = sum b_r);
each rank then scales its buckets by b_r / R before the sum, which gives (1/R) sum over all
rows: the gradient of the global batch, also when the batch does not divide evenly (a rank
may even have no rows: b_r = 0).  A loss of reduction "sum" is scaled by 1.
"""
import queue
import threading
import time

import numpy as np


class GradReducer:
    """Reduces the flat gradient array `grads` of one executor, bucket by bucket."""

    def __init__(self, world, grads, backend, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError("pynn.distributed: the model's losses mix reduction 'sum' with "
                             "mean reductions; distributed training weighs each rank's "
                             "gradient by one rule: compile with one kind of reduction")
        self.world = world
        self.comm = world.grad_comm
        self.backend = backend
        self.reduction = reduction
        self.on_host = isinstance(grads, np.ndarray)
        self.grads = grads
        self.host = grads if self.on_host else np.zeros(grads.shape[0], dtype=np.float32)
        self.scratch = None
        self.overlap = world.overlap and world.threaded
        self._step = None
        self._weight = None
        self._scale_after = None
        self._jobs = []                  # buckets not yet reduced (no overlap)
        self._queue = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._submitted = self._finished = 0
        self._error = None
        self._thread = None
        self.stats = world.stats

    # ---- what the plan calls ------------------------------------------------------------------
    def hook(self, phase, offset, count, rows, step):
        if phase == 0:
            if step != self._step:           # the step's first bucket: exchange the rows
                self._step = step
                self._submit(("rows", rows))
            if not self.on_host:
                self.host[offset:offset + count] = self.backend.to_host(
                    self.grads[offset:offset + count])
            self._submit(("bucket", offset, count))
        else:
            t0 = time.perf_counter()
            if not self.overlap:
                for job in self._jobs:
                    self._run(job)
                self._jobs.clear()
            else:
                self._wait()
            if not self.on_host:
                self.backend.copy_from_host(self.grads, self.host)
            self.stats["blocked_s"] += time.perf_counter() - t0
            self.stats["steps"] += 1
            self._step = None

    # ---- the communication thread -------------------------------------------------------------
    def _submit(self, job):
        if not self.overlap:
            self._jobs.append(job)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pynn-grad-comm",
                                            daemon=True)
            self._thread.start()
        with self._lock:
            self._submitted += 1
        self._queue.put(job)

    def _loop(self):
        while True:
            job = self._queue.get()
            try:
                self._run(job)
            except BaseException as e:       # reported by _wait on the training thread
                self._error = e
            with self._lock:
                self._finished += 1
                self._lock.notify_all()

    def _wait(self):
        with self._lock:
            while self._finished < self._submitted:
                self._lock.wait(1.0)
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("pynn.distributed: the gradient exchange failed") from error

    def _run(self, job):
        t0 = time.perf_counter()
        if job[0] == "rows":
            counts = self.comm.allgather(np.array([job[1]], dtype=np.int64),
                                         "the exchange of the step's row counts")[:, 0]
            total = int(counts.sum())
            mine = int(counts[self.comm.rank])
            self._weight = 1.0 if self.reduction == "sum" else (mine / total if total else 0.0)
            # Every rank the same rows (all but a short last batch): the weights are all
            # 1/size, and the sum is scaled once, by each rank on its own part, after the
            # sum instead of every gradient before it: one pass over 1/size of the bucket
            # instead of all of it.  For a power-of-two size the scaling is exact, so the
            # two orders give the same bits; for others each is a fixed order, so a run
            # still repeats bitwise.
            self._scale_after = None
            if self.reduction != "sum" and total and bool(np.all(counts == counts[0])):
                self._weight, self._scale_after = 1.0, 1.0 / self.comm.size
        else:
            _, offset, count = job
            x = self.host[offset:offset + count]
            if self._weight != 1.0:
                np.multiply(x, np.float32(self._weight), out=x)
            need = self.comm.size * (-(-count // self.comm.size))
            if self.scratch is None or self.scratch.shape[0] < need:
                self.scratch = np.empty(need, dtype=np.float32)
            self.comm.allreduce_sum(x, self.scratch, "the gradient exchange",
                                    scale=self._scale_after)
            self.stats["buckets"] += 1
            self.stats["bytes"] += 4 * count
        self.stats["comm_s"] += time.perf_counter() - t0
