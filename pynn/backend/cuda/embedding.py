"""Embedding and Masking on the device (engineer G, issue #16); csrc/embedding.c's twins.

Embedding's gradient touches only the rows of the ids seen.  The ids (batch x T floats)
are sorted on the host as keys id * n + position, as the C kernel does (a small transfer;
the gradient kernel then needs no atomics): one thread per (distinct id, column) sums the
dy rows of that id in position order, so the result repeats bitwise and equals the cpu
backend's.  The keys stay in `work` on the device for embedding_grad_clear.
"""
import numpy as np

from .runtime import F0, check_float32, check_shape, cuda, elementwise_config

F1 = np.float32(1.0)


@cuda.jit
def _gather_kernel(y, mask, ids, table, n, D, has_mask):
    t = cuda.grid(1)
    if t < n * D:
        i = t // D
        j = t - i * D
        row = int(ids[i])
        y[i, j] = table[row, j]
        if has_mask and j == 0:
            mask[i] = F1 if row != 0 else F0


@cuda.jit
def _check_kernel(flag, ids, n, V):
    i = cuda.grid(1)
    if i < n:
        v = ids[i]
        if not (v >= F0 and v < V) or v != np.float32(int(v)):
            flag[0] = 1                    # every writer writes the same value


@cuda.jit
def _scatter_kernel(dtable, keys, starts, dy, n, n_unique, D):
    t = cuda.grid(1)
    if t < n_unique * D:
        u = t // D
        j = t - u * D
        s = starts[u]
        e = starts[u + 1] if u + 1 < n_unique else n
        row = keys[s] // n
        acc = dy[keys[s] % n, j]
        for k in range(s + 1, e):
            acc += dy[keys[k] % n, j]
        dtable[row, j] = acc


@cuda.jit
def _clear_kernel(dtable, keys, n, D):
    t = cuda.grid(1)
    if t < n * D:
        i = t // D
        j = t - i * D
        row = keys[i] // n
        if i == 0 or keys[i - 1] // n != row:   # each row cleared by its first key's threads
            dtable[row, j] = F0


@cuda.jit
def _masking_kernel(y, mask, x, rows, D, mask_value, has_mask):
    r = cuda.grid(1)
    if r < rows:
        keep = F0
        for j in range(D):
            if x[r, j] != mask_value:
                keep = F1
        for j in range(D):
            y[r, j] = x[r, j] * keep
        if has_mask:
            mask[r] = keep


@cuda.jit
def _masking_backward_kernel(dx, dy, mask, rows, D):
    t = cuda.grid(1)
    if t < rows * D:
        r = t // D
        j = t - r * D
        dx[r, j] = dy[r, j] * mask[r]


def _check_ids(ids, V, where):
    n = int(ids.shape[0])
    if n == 0:
        return
    flag = cuda.to_device(np.zeros(1, dtype=np.int32))
    blocks, threads = elementwise_config(n)
    _check_kernel[blocks, threads](flag, ids, n, np.float32(V))
    if flag.copy_to_host()[0]:
        raise ValueError(f"{where}: an Embedding input id is not an integer in [0, input_dim="
                         f"{V})")


def embedding_forward(ids, table, y, mask):
    where = "embedding_forward"
    n, (V, D) = int(ids.shape[0]), table.shape
    check_float32(where, ids=ids, table=table, y=y, mask=mask)
    check_shape(where, "y", y, (n, D))
    _check_ids(ids, V, where)
    if n:
        blocks, threads = elementwise_config(n * D)
        _gather_kernel[blocks, threads](y, mask if mask is not None else y.reshape(-1), ids,
                                        table, n, D, mask is not None)


def embedding_backward(ids, dy, dtable, work):
    where = "embedding_backward"
    n, (V, D) = int(ids.shape[0]), dtable.shape
    check_float32(where, ids=ids, dy=dy, dtable=dtable)
    check_shape(where, "dy", dy, (n, D))
    if n == 0:
        return
    host = ids.copy_to_host()
    from .. import reference
    rows = reference.embedding_check_ids(host, V)
    keys = np.sort(rows * n + np.arange(n, dtype=np.int64))
    first = np.ones(n, dtype=bool)
    first[1:] = keys[1:] // n != keys[:-1] // n
    starts = np.flatnonzero(first).astype(np.int64)
    packed = np.zeros(2 * n, dtype=np.int64)
    packed[:n], packed[n:n + len(starts)] = keys, starts
    work[:2 * n].copy_to_device(packed)
    blocks, threads = elementwise_config(len(starts) * D)
    _scatter_kernel[blocks, threads](dtable, work[:n], work[n:2 * n], dy, n, len(starts), D)


@cuda.jit
def _zero_kernel(a, n):
    i = cuda.grid(1)
    if i < n:
        a[i] = F0


def embedding_grad_clear(dtable, work, n, whole=False):
    if whole:
        size = int(dtable.size)
        blocks, threads = elementwise_config(size)
        _zero_kernel[blocks, threads](dtable.reshape(-1), size)
        return
    n = int(n)
    if n == 0:
        return
    D = dtable.shape[1]
    blocks, threads = elementwise_config(n * D)
    _clear_kernel[blocks, threads](dtable, work[:n], n, D)


@cuda.jit
def _sgd_rows_kernel(table, dtable, keys, n, D, lr, apply):
    t = cuda.grid(1)
    if t < n * D:
        i = t // D
        j = t - i * D
        row = keys[i] // n
        if i == 0 or keys[i - 1] // n != row:   # each row by its first key's threads
            if apply:
                table[row, j] -= lr * dtable[row, j]    # the dense SGD kernel's expression
            dtable[row, j] = F0


def embedding_sgd(table, dtable, work, n, lr):
    """Plain SGD on the rows seen only (lr not None), then those gradient rows zeroed
    (csrc's pynn_embedding_sgd)."""
    n = int(n)
    if n == 0:
        return
    D = dtable.shape[1]
    blocks, threads = elementwise_config(n * D)
    _sgd_rows_kernel[blocks, threads](table, dtable, work[:n], n, D,
                                      np.float32(0.0 if lr is None else lr), lr is not None)


def masking_forward(x, mask_value, y, mask):
    where = "masking_forward"
    rows, D = x.shape
    check_float32(where, x=x, y=y, mask=mask)
    check_shape(where, "y", y, (rows, D))
    if rows:
        blocks, threads = elementwise_config(rows)
        _masking_kernel[blocks, threads](y, mask if mask is not None else y.reshape(-1), x, rows,
                                         D, np.float32(mask_value), mask is not None)


def masking_backward(dy, mask, dx):
    rows, D = dy.shape
    check_float32("masking_backward", dy=dy, mask=mask, dx=dx)
    if rows:
        blocks, threads = elementwise_config(rows * D)
        _masking_backward_kernel[blocks, threads](dx, dy, mask, rows, D)
