"""The fixed-order sum over rows shared by the losses and the metrics.

A row function gives each row's value in double.  The rows are cut into blocks of
ROWS_PER_BLOCK; thread q of a block takes rows q, q + T, q + 2T, ... of its block in order,
the T thread sums are then added by a fixed tree in shared memory, and the block sums are
added in block order by one thread.  T depends on the number of rows alone and there are no
atomics, so the sum -- and the float64 result -- repeats bitwise.  One double is copied back
to the host.
"""
import numpy as np
from numba import cuda, float64

from .runtime import D0, F0, F1, pow2_at_least

ROWS_PER_BLOCK = 1024
THREADS = 256                # at most; fewer for small batches


@cuda.jit(device=True, inline=True)
def target_at(target, labels, r, j, sparse):
    """target[r, j], or (sparse) the one-hot row of labels[r]."""
    if sparse:
        return F1 if labels[r] == j else F0
    return target[r, j]


@cuda.jit(device=True, inline=True)
def store_block_sum(partials, part, tid, nthreads, s):
    """The block's thread sums s added by a fixed tree in shared memory `part` (THREADS
    doubles; nthreads a power of two): part[i] += part[i + half], halving; thread 0 writes
    the block's sum to partials[block]."""
    part[tid] = s
    cuda.syncthreads()
    half = nthreads // 2
    while half > 0:
        if tid < half:
            part[tid] += part[tid + half]
        cuda.syncthreads()
        half //= 2
    if tid == 0:
        partials[cuda.blockIdx.x] = part[0]


def make_row_sum_kernel(row_value, name):
    """A kernel summing row_value(out, pred, target, labels, r, rows, cols, kind, option,
    sparse, write_out) (a double) over the rows of its block into partials[block];
    row_value may write row r of `out` (a loss's gradient) when write_out."""

    def row_sum(partials, out, pred, target, labels, rows, cols, kind, option, sparse,
                write_out):
        part = cuda.shared.array(THREADS, float64)
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        r0 = cuda.blockIdx.x * ROWS_PER_BLOCK
        r1 = min(r0 + ROWS_PER_BLOCK, rows)
        s = D0
        for r in range(r0 + tid, r1, nthreads):
            s += row_value(out, pred, target, labels, r, rows, cols, kind, option, sparse,
                           write_out)
        store_block_sum(partials, part, tid, nthreads, s)

    row_sum.__name__ = row_sum.__qualname__ = name
    return cuda.jit(row_sum)


@cuda.jit
def _sum_in_order_kernel(out, partials, n):
    """out[0] = partials[0] + partials[1] + ... in index order (one thread)."""
    if cuda.grid(1) == 0:
        s = D0
        for i in range(n):
            s += partials[i]
        out[0] = s


def sum_rows(kernel, workspace, out, pred, target, labels, kind, option, sparse, write_out):
    """The sum over the rows of pred of the kernel's row values, a Python float."""
    rows, cols = pred.shape
    nblocks = (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    threads = pow2_at_least(min(rows, ROWS_PER_BLOCK), THREADS)
    partials = workspace.device("row_sum_partials", nblocks, np.float64)
    kernel[nblocks, threads](partials, out, pred, target, labels, rows, cols, kind, option,
                             sparse, write_out)
    total = partials
    if nblocks > 1:
        total = workspace.device("row_sum_total", 1, np.float64)
        _sum_in_order_kernel[1, 1](total, partials, nblocks)
    host = workspace.pinned("row_sum_host", 1, np.float64)
    total[0:1].copy_to_host(host)
    return float(host[0])
