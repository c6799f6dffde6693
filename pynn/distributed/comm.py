"""The communication layer of pynn.distributed: MPI (mpi4py) point-to-point messages with a
deadline, and the collectives pynn builds from them.

Why point-to-point and not MPI's own collectives:
  * Determinism.  MPI does not promise the order in which MPI_Allreduce adds the ranks'
    values (it depends on the algorithm the library picks for the size and the number of
    ranks).  `allreduce_sum` here is a reduce-scatter (each rank receives every rank's
    copy of its own chunk: an Alltoallv, written as Isend/Irecv pairs), a local sum in rank
    order 0, 1, ..., N-1, and an allgather of the summed chunks.  Each chunk is added by
    one rank, in one order, so a run with a fixed number of ranks repeats bitwise.  It
    moves 2 (N-1)/N of the array per rank, as a ring allreduce does.
  * Faults.  Every wait has a deadline (`timeout`, default 60 s, PYNN_DIST_TIMEOUT): the
    requests are polled with MPI_Testsome, so a rank that waits too long knows exactly
    which peers it has not heard from, says so on stderr naming them, and calls
    MPI_Abort, which ends every rank of the job.  No rank hangs in a collective.

The polling sleeps between tests (20 us, doubling to 100 us) rather than spinning, so a
communication thread waiting for its peers leaves the core to the computing thread.
"""
import os
import pickle
import sys
import time

import numpy as np

DEFAULT_TIMEOUT = 60.0
_TAG = 7
# the longest sleep between two polls of a wait (seconds)
MAX_PAUSE = float(os.environ.get("PYNN_DIST_MAX_PAUSE", 1e-4))


def fail(rank, message, comm=None):
    """Say what went wrong, naming the ranks, and end the whole job (MPI_Abort)."""
    try:
        sys.stderr.write(f"pynn.distributed: rank {rank}: {message}; aborting the job "
                         "(MPI_Abort)\n")
        sys.stderr.flush()
    finally:
        if comm is not None:
            comm.Abort(1)
        os._exit(1)                      # pragma: no cover (Abort does not return)


class Comm:
    """One MPI communicator, used by one thread at a time."""

    def __init__(self, mpi, comm, timeout, name):
        self.MPI, self.comm, self.name = mpi, comm, name
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = timeout

    # ---- the one primitive: messages to and from peers, with a deadline ---------------------
    def exchange(self, sends, recvs, what):
        """Post every receive (peer, buffer) and send (peer, buffer), then wait for all of
        them until the deadline; on the deadline, name the peers still missing and abort."""
        reqs, peers = [], []
        for peer, buf in recvs:
            reqs.append(self.comm.Irecv(buf, source=peer, tag=_TAG))
            peers.append(peer)
        for peer, buf in sends:
            reqs.append(self.comm.Isend(buf, dest=peer, tag=_TAG))
            peers.append(peer)
        self.wait(reqs, peers, what)

    def wait(self, reqs, peers, what):
        if not reqs:
            return
        Request = self.MPI.Request
        done = [False] * len(reqs)
        left = len(reqs)
        start = time.monotonic()
        pause = 0.0
        spins = 0
        while True:
            idx = Request.Testsome(reqs)
            if idx:
                for i in idx:
                    if not done[i]:
                        done[i] = True
                        left -= 1
                if left == 0:
                    return
                pause, spins = 0.0, 0
                continue
            if idx is None:             # every request is inactive: all done
                return
            now = time.monotonic()
            if self.timeout and now - start > self.timeout:
                missing = sorted({peers[i] for i in range(len(reqs)) if not done[i]})
                names = ", ".join(str(p) for p in missing)
                fail(self.rank, f"no message from rank {names} for {self.timeout:g} s in "
                                f"{what} (rank {names} died, hangs, or stopped taking part); "
                                "set PYNN_DIST_TIMEOUT to wait longer", self.comm)
            spins += 1
            if spins > 50:              # a short spin first: most peers answer at once
                time.sleep(pause)
                pause = min(pause * 2 or 2e-5, MAX_PAUSE)

    # ---- collectives ------------------------------------------------------------------------
    def allreduce_sum(self, x, scratch=None, what="an allreduce", scale=None):
        """x (1-D, contiguous) replaced in place by the sum over the ranks, added in rank
        order (module docstring), times `scale` if given (each rank scales the part it
        summed, before sending it back: a pass over 1/size of x instead of all of it).
        scratch: a 1-D array of x's dtype with at least size * ceil(len(x) / size)
        elements, or None."""
        n, size, me = x.shape[0], self.size, self.rank
        if size == 1 or n == 0:
            return x
        bounds = [n * p // size for p in range(size + 1)]
        lo, hi = bounds[me], bounds[me + 1]
        m = hi - lo
        if scratch is None or scratch.shape[0] < size * m:
            scratch = np.empty(size * max(m, 1), dtype=x.dtype)
        parts = scratch[:size * m].reshape(size, m)
        self.exchange([(p, x[bounds[p]:bounds[p + 1]]) for p in range(size) if p != me],
                      [(q, parts[q]) for q in range(size) if q != me], what)
        mine = x[lo:hi]
        # ((x0 + x1) + x2) + ... in place (IEEE addition commutes: x0 + x1 == x1 + x0)
        if me == 1:
            np.add(parts[0], mine, out=mine)
        elif me > 1:
            parts[me] = mine
            np.add(parts[0], parts[1], out=mine)
        for q in range(1 if me == 0 else 2, size):
            np.add(mine, parts[q], out=mine)
        if scale is not None:
            np.multiply(mine, x.dtype.type(scale), out=mine)
        self.exchange([(p, mine) for p in range(size) if p != me],
                      [(q, x[bounds[q]:bounds[q + 1]]) for q in range(size) if q != me], what)
        return x

    def allgather(self, x, what="an allgather"):
        """Every rank's 1-D array x (the same length everywhere): (size, len) array."""
        out = np.empty((self.size,) + x.shape, dtype=x.dtype)
        out[self.rank] = x
        self.exchange([(p, x) for p in range(self.size) if p != self.rank],
                      [(q, out[q]) for q in range(self.size) if q != self.rank], what)
        return out

    def bcast(self, x, root=0, what="a broadcast"):
        """x (contiguous) replaced in place by root's."""
        if self.size == 1:
            return x
        if self.rank == root:
            self.exchange([(p, x) for p in range(self.size) if p != root], [], what)
        else:
            self.exchange([], [(root, x)], what)
        return x

    def bcast_object(self, obj, root=0, what="a broadcast"):
        """root's picklable object, on every rank."""
        if self.size == 1:
            return obj
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if self.rank == root else None
        length = np.array([0 if data is None else data.size], dtype=np.int64)
        self.bcast(length, root, what)
        if data is None:
            data = np.empty(int(length[0]), dtype=np.uint8)
        self.bcast(data, root, what)
        return obj if self.rank == root else pickle.loads(data.tobytes())

    def allgather_object(self, obj, what="an allgather"):
        """Every rank's picklable object, as a list in rank order."""
        if self.size == 1:
            return [obj]
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        lengths = self.allgather(np.array([data.size], dtype=np.int64), what)[:, 0]
        parts = [np.empty(int(k), dtype=np.uint8) for k in lengths]
        parts[self.rank] = data
        self.exchange([(p, data) for p in range(self.size) if p != self.rank],
                      [(q, parts[q]) for q in range(self.size) if q != self.rank], what)
        return [pickle.loads(p.tobytes()) for p in parts]

    def barrier(self, what="a barrier"):
        token = np.zeros(1, dtype=np.int8)
        self.allgather(token, what)
