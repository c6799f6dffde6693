"""Batch normalization over the rows of a (rows, C) array, per column (Keras 3's rules):
training forward with the moving statistics updated on the device, inference forward, and
the backwards through the batch statistics and through the inference form.

The statistics are column sums over many rows (N*H*W) and few columns, so one block per
column would leave most of the GPU idle.  The rows are cut into chunks of
BN_ROWS_PER_CHUNK: block (column group, chunk) sums its chunk like the bias gradient does
(lane q takes rows q, q + TY, ... in order, the lanes are then added in lane order) into a
(chunks, C) array of partials, and a second kernel adds each column's partials in chunk
order.  Chunk size and TY depend on nothing but `rows`, so the sums repeat bitwise.  The
statistic is computed in two passes over x, as the reference does: the mean, then the mean
of (x - mean)^2, which does not cancel catastrophically as E[x^2] - mean^2 would.
"""
import math

import numpy as np
from numba import cuda, float32

from .runtime import F0, F1, check_float32, check_shape, elementwise_config, pow2_at_least

# Batch-norm column sums: rows are cut into chunks of this many rows, one block per chunk
# and group of BN_TX columns; the chunks' partial sums are then added in chunk order.  A
# constant (not derived from the GPU) so the float32 result is the same on every device.
BN_ROWS_PER_CHUNK = 256
BN_TX, BN_TY = 32, 8         # columns x row lanes per block, at most

BN_SUM, BN_SQUARED_DEVIATION, BN_GRADIENTS = range(3)


@cuda.jit
def _bn_partials_kernel(p0, p1, x, dy, mean, inv_std, rows, cols, mode):
    """Partial column sums of one chunk of rows (blockIdx.y) for blockDim.x columns:
      BN_SUM: x into p0;  BN_SQUARED_DEVIATION: (x - mean)^2 into p0;
      BN_GRADIENTS: dy into p0 and dy * xhat into p1, xhat = (x - mean) * inv_std."""
    part0 = cuda.shared.array((BN_TY, BN_TX), float32)
    part1 = cuda.shared.array((BN_TY, BN_TX), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    lanes = cuda.blockDim.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    chunk = cuda.blockIdx.y
    r1 = min((chunk + 1) * BN_ROWS_PER_CHUNK, rows)
    s0 = F0
    s1 = F0
    if j < cols:
        if mode == BN_SUM:
            for r in range(chunk * BN_ROWS_PER_CHUNK + ty, r1, lanes):
                s0 += x[r, j]
        elif mode == BN_SQUARED_DEVIATION:
            m = mean[j]
            for r in range(chunk * BN_ROWS_PER_CHUNK + ty, r1, lanes):
                d = x[r, j] - m
                s0 += d * d
        else:
            m = mean[j]
            istd = inv_std[j]
            for r in range(chunk * BN_ROWS_PER_CHUNK + ty, r1, lanes):
                g = dy[r, j]
                s0 += g
                s1 += g * ((x[r, j] - m) * istd)
    part0[ty, tx] = s0
    part1[ty, tx] = s1
    cuda.syncthreads()
    if ty == 0 and j < cols:
        t0 = part0[0, tx]
        t1 = part1[0, tx]
        for q in range(1, lanes):
            t0 += part0[q, tx]
            t1 += part1[q, tx]
        p0[chunk, j] = t0
        if mode == BN_GRADIENTS:
            p1[chunk, j] = t1


@cuda.jit(device=True, inline=True)
def _sum_chunks(p, nchunks, j):
    s = F0
    for ch in range(nchunks):
        s += p[ch, j]
    return s


@cuda.jit
def _bn_mean_kernel(mean, p0, nchunks, cols, frows):
    j = cuda.grid(1)
    if j < cols:
        mean[j] = _sum_chunks(p0, nchunks, j) / frows


@cuda.jit
def _bn_variance_kernel(inv_std, moving_mean, moving_variance, mean, p0, nchunks, cols, frows,
                        momentum, one_minus_momentum, epsilon):
    """The biased variance -> inv_std, and the moving statistics updated on the device
    (moving = moving * momentum + stat * (1 - momentum), Keras 3)."""
    j = cuda.grid(1)
    if j < cols:
        var = _sum_chunks(p0, nchunks, j) / frows
        inv_std[j] = F1 / math.sqrt(var + epsilon)
        moving_mean[j] = moving_mean[j] * momentum + mean[j] * one_minus_momentum
        moving_variance[j] = moving_variance[j] * momentum + var * one_minus_momentum


@cuda.jit
def _bn_gradient_sums_kernel(sum_dy, sum_dy_xhat, p0, p1, nchunks, cols):
    j = cuda.grid(1)
    if j < cols:
        sum_dy[j] = _sum_chunks(p0, nchunks, j)
        sum_dy_xhat[j] = _sum_chunks(p1, nchunks, j)


@cuda.jit
def _bn_normalize_kernel(y, x, mean, stat, gamma, beta, rows, cols, stat_is_variance, epsilon,
                         has_gamma, has_beta):
    """y = (x - mean) * inv_std * gamma + beta, inv_std = stat (training), or
    1 / sqrt(stat + epsilon) with stat the moving variance (inference)."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        j = i - r * cols
        s = stat[j]
        if stat_is_variance:
            s = F1 / math.sqrt(s + epsilon)
        v = (x[r, j] - mean[j]) * s
        if has_gamma:
            v = v * gamma[j]
        if has_beta:
            v = v + beta[j]
        y[r, j] = v


@cuda.jit
def _bn_backward_dx_kernel(dx, x, dy, gamma, mean, inv_std, sum_dy, sum_dy_xhat, rows, cols,
                           frows, has_gamma):
    """dx = gamma * inv_std * (dy - sum(dy) / rows - xhat * sum(dy * xhat) / rows)."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        j = i - r * cols
        istd = inv_std[j]
        xhat = (x[r, j] - mean[j]) * istd
        scale = gamma[j] * istd if has_gamma else istd
        dx[r, j] = scale * (dy[r, j] - sum_dy[j] / frows - xhat * (sum_dy_xhat[j] / frows))


@cuda.jit
def _bn_inv_std_kernel(inv_std, variance, cols, epsilon):
    """inv_std = 1 / sqrt(variance + epsilon) (the inference form's, from the moving
    variance)."""
    j = cuda.grid(1)
    if j < cols:
        inv_std[j] = F1 / math.sqrt(variance[j] + epsilon)


@cuda.jit
def _bn_infer_backward_dx_kernel(dx, dy, gamma, inv_std, rows, cols, has_gamma):
    """dx = dy * (gamma * inv_std): the statistics are constants in the inference form."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        j = i - r * cols
        scale = gamma[j] * inv_std[j] if has_gamma else inv_std[j]
        dx[r, j] = dy[r, j] * scale



# ---- launches ------------------------------------------------------------------------------

def _scratch(workspace, rows, cols):
    """(nchunks, partials0, partials1, sums0, sums1, per_channel): the chunk partials, column
    sums for a backward that wants no dgamma / dbeta, and one more per-channel array."""
    nchunks = (rows + BN_ROWS_PER_CHUNK - 1) // BN_ROWS_PER_CHUNK
    shape = (max(nchunks, 1), cols)
    return (nchunks, workspace.device("bn_partials0", shape), workspace.device("bn_partials1", shape),
            workspace.device("bn_sums0", cols), workspace.device("bn_sums1", cols),
            workspace.device("bn_per_channel", cols))


def _partials(p0, p1, x, dy, mean, inv_std, nchunks, mode):
    rows, cols = x.shape
    if nchunks == 0:
        return
    tx = pow2_at_least(cols, BN_TX)
    ty = pow2_at_least(min(rows, BN_ROWS_PER_CHUNK), BN_TY)
    _bn_partials_kernel[((cols + tx - 1) // tx, nchunks), (tx, ty)](
        p0, p1, x, dy, mean, inv_std, rows, cols, mode)


def _check(where, x, **per_channel):
    if x.ndim != 2:
        raise ValueError(f"{where}: expected x of shape (rows, C), received {tuple(x.shape)}")
    for name, arr in per_channel.items():
        if arr is not None:
            check_shape(where, name, arr, (x.shape[1],))
    check_float32(where, x=x, **per_channel)


def _normalize(y, x, mean, stat, gamma, beta, stat_is_variance, epsilon):
    rows, cols = x.shape
    if rows * cols:
        blocks, threads = elementwise_config(rows * cols)
        _bn_normalize_kernel[blocks, threads](
            y, x, mean, stat, stat if gamma is None else gamma, stat if beta is None else beta,
            rows, cols, stat_is_variance, np.float32(epsilon), gamma is not None,
            beta is not None)


def _gradient_sums(x, dy, mean, inv_std, dgamma, dbeta, workspace):
    """(sum_dy, sum_dy_xhat) = the column sums of dy and of dy * (x - mean) * inv_std, in
    dbeta and dgamma where given (else in scratch)."""
    rows, cols = x.shape
    nchunks, p0, p1, s0, s1, _ = _scratch(workspace, rows, cols)
    sum_dy = s0 if dbeta is None else dbeta
    sum_dy_xhat = s1 if dgamma is None else dgamma
    _partials(p0, p1, x, dy, mean, inv_std, nchunks, BN_GRADIENTS)
    blocks, threads = elementwise_config(cols)
    _bn_gradient_sums_kernel[blocks, threads](sum_dy, sum_dy_xhat, p0, p1, nchunks, cols)
    return sum_dy, sum_dy_xhat


def batchnorm_forward_train(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon,
                            mean, inv_std, y, workspace):
    where = "batchnorm_forward_train"
    _check(where, x, gamma=gamma, beta=beta, moving_mean=moving_mean,
           moving_variance=moving_variance, mean=mean, inv_std=inv_std)
    check_shape(where, "y", y, x.shape)
    rows, cols = x.shape
    if cols == 0:
        return
    nchunks, p0, p1, _, _, _ = _scratch(workspace, rows, cols)
    frows = np.float32(rows)
    cblocks, cthreads = elementwise_config(cols)
    momentum = np.float32(momentum)
    _partials(p0, p1, x, x, mean, mean, nchunks, BN_SUM)
    _bn_mean_kernel[cblocks, cthreads](mean, p0, nchunks, cols, frows)
    _partials(p0, p1, x, x, mean, mean, nchunks, BN_SQUARED_DEVIATION)
    _bn_variance_kernel[cblocks, cthreads](inv_std, moving_mean, moving_variance, mean, p0,
                                           nchunks, cols, frows, momentum, F1 - momentum,
                                           np.float32(epsilon))
    _normalize(y, x, mean, inv_std, gamma, beta, False, 0.0)


def batchnorm_forward_infer(x, gamma, beta, moving_mean, moving_variance, epsilon, y):
    _check("batchnorm_forward_infer", x, gamma=gamma, beta=beta, moving_mean=moving_mean,
           moving_variance=moving_variance)
    check_shape("batchnorm_forward_infer", "y", y, x.shape)
    _normalize(y, x, moving_mean, moving_variance, gamma, beta, True, epsilon)


def batchnorm_backward(x, gamma, mean, inv_std, dy, dgamma, dbeta, dx, workspace):
    where = "batchnorm_backward"
    _check(where, x, gamma=gamma, mean=mean, inv_std=inv_std, dgamma=dgamma, dbeta=dbeta)
    check_shape(where, "dy", dy, x.shape)
    if dx is not None:
        check_shape(where, "dx", dx, x.shape)
    rows, cols = x.shape
    if cols == 0:
        return
    # dx needs both sums, so they are computed whatever is asked for
    sum_dy, sum_dy_xhat = _gradient_sums(x, dy, mean, inv_std, dgamma, dbeta, workspace)
    if dx is not None and rows:
        blocks, threads = elementwise_config(rows * cols)
        _bn_backward_dx_kernel[blocks, threads](
            dx, x, dy, inv_std if gamma is None else gamma, mean, inv_std, sum_dy, sum_dy_xhat,
            rows, cols, np.float32(rows), gamma is not None)


def batchnorm_infer_backward(x, gamma, moving_mean, moving_variance, epsilon, dy, dgamma,
                             dbeta, dx, workspace):
    where = "batchnorm_infer_backward"
    _check(where, x, gamma=gamma, moving_mean=moving_mean, moving_variance=moving_variance,
           dgamma=dgamma, dbeta=dbeta)
    check_shape(where, "dy", dy, x.shape)
    if dx is not None:
        check_shape(where, "dx", dx, x.shape)
    rows, cols = x.shape
    if cols == 0:
        return
    inv_std = _scratch(workspace, rows, cols)[5]
    blocks, threads = elementwise_config(cols)
    _bn_inv_std_kernel[blocks, threads](inv_std, moving_variance, cols, np.float32(epsilon))
    if dgamma is not None or dbeta is not None:
        _gradient_sums(x, dy, moving_mean, inv_std, dgamma, dbeta, workspace)
    if dx is not None and rows:
        blocks, threads = elementwise_config(rows * cols)
        _bn_infer_backward_dx_kernel[blocks, threads](
            dx, dy, inv_std if gamma is None else gamma, inv_std, rows, cols, gamma is not None)
