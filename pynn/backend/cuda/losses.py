"""The losses: per-row values and gradient rows (the C core's formulas and summation
orders, see csrc/losses.c), summed over the rows in a fixed order by reduction.py.

Each row function returns the row's per-sample loss in double (sums along the row in index
order, as the C core) and writes the row of d loss / d pred when write_grad.  Semantics of
reference.loss / reference.sparse_cce (Keras 3's).
"""
import math

import numpy as np
from numba import cuda, float32, float64

from ...ids import LOSSES
from .elementwise import sigmoid
from .reduction import make_row_sum_kernel, sum_rows, target_at
from .runtime import D0, F0, F1, F2, check_shape

LOSS_MSE = LOSSES["mse"]
LOSS_BCE = LOSSES["bce"]
LOSS_CCE = LOSSES["cce"]
# "scce" runs the CCE rows against the one-hot rows of its labels (sparse=True)
LOSS_KERNEL_KINDS = {"mse": LOSS_MSE, "bce": LOSS_BCE, "cce": LOSS_CCE, "scce": LOSS_CCE}

_PROB_EPS = np.float32(1e-7)              # Keras's epsilon: probabilities clipped to
_PROB_MAX = np.float32(1.0) - _PROB_EPS   # [EPS, 1 - EPS]


@cuda.jit(device=True, inline=True)
def _clip_prob(p):
    return _PROB_EPS if p < _PROB_EPS else (_PROB_MAX if p > _PROB_MAX else p)


@cuda.jit(device=True, inline=True)
def _mse_row(g, p, t, labels, r, cols, size, sparse, write_grad):
    s = D0
    for j in range(cols):
        d = p[r, j] - target_at(t, labels, r, j, sparse)
        s += float64(d * d)
        if write_grad:
            g[r, j] = F2 * d / size
    return s / cols


@cuda.jit(device=True, inline=True)
def _bce_probs_row(g, p, t, labels, r, cols, size, sparse, write_grad):
    s = D0
    for j in range(cols):
        pj = p[r, j]
        tj = target_at(t, labels, r, j, sparse)
        pc = _clip_prob(pj)
        s += float64(-(tj * math.log(pc) + (F1 - tj) * math.log(F1 - pc)))
        if write_grad:
            # where clipping changed p the loss is flat in p: zero gradient
            if pj < _PROB_EPS or pj > _PROB_MAX:
                g[r, j] = F0
            else:
                g[r, j] = (pc - tj) / (pc * (F1 - pc)) / size
    return s / cols


@cuda.jit(device=True, inline=True)
def _bce_logits_row(g, z, t, labels, r, cols, size, sparse, write_grad):
    s = D0
    for j in range(cols):
        zj = z[r, j]
        tj = target_at(t, labels, r, j, sparse)
        # max(z, 0) - z t + log1p(exp(-|z|)): never overflows
        s += float64(max(zj, F0) - zj * tj + math.log1p(math.exp(-abs(zj))))
        if write_grad:
            g[r, j] = (sigmoid(zj) - tj) / size
    return s / cols


@cuda.jit(device=True, inline=True)
def _cce_probs_row(g, p, t, labels, r, cols, frows, sparse, write_grad):
    # Keras 3: q = p / sum(p), clipped; loss -sum t log q; the gradient goes through the
    # normalisation: with g'_j = -t_j / q_j where q_j was not clipped (else 0),
    # grad_i = (g'_i - sum_j g'_j q_j) / s / rows
    row_sum = D0
    for j in range(cols):
        row_sum += float64(p[r, j])
    s = float32(row_sum)
    loss = D0
    dot = D0
    for j in range(cols):
        q = p[r, j] / s
        qc = _clip_prob(q)
        tj = target_at(t, labels, r, j, sparse)
        gq = F0 if (q < _PROB_EPS or q > _PROB_MAX) else -tj / qc
        loss -= float64(tj * math.log(qc))
        dot += float64(gq * q)
    if write_grad:
        dotf = float32(dot)
        for j in range(cols):
            q = p[r, j] / s
            tj = target_at(t, labels, r, j, sparse)
            gq = F0 if (q < _PROB_EPS or q > _PROB_MAX) else -tj / _clip_prob(q)
            g[r, j] = (gq - dotf) / s / frows
    return loss


@cuda.jit(device=True, inline=True)
def _cce_logits_row(g, z, t, labels, r, cols, frows, sparse, write_grad):
    # loss -sum t (z - lse) (right for soft targets not summing to 1);
    # grad (softmax(z) sum t - t) / rows
    mx = z[r, 0]
    for j in range(1, cols):
        v = z[r, j]
        if v > mx:
            mx = v
    exp_sum = D0
    for j in range(cols):
        exp_sum += float64(math.exp(z[r, j] - mx))
    s = float32(exp_sum)
    log_s = math.log(s)
    loss = D0
    t_sum = D0
    for j in range(cols):
        tj = target_at(t, labels, r, j, sparse)
        loss -= float64(tj * ((z[r, j] - mx) - log_s))
        t_sum += float64(tj)
    if write_grad:
        t_sumf = float32(t_sum)
        for j in range(cols):
            g[r, j] = (math.exp(z[r, j] - mx) / s * t_sumf - target_at(t, labels, r, j, sparse)) / frows
    return loss


@cuda.jit(device=True, inline=True)
def _loss_row(grad, pred, target, labels, r, rows, cols, kind, from_logits, sparse,
              write_grad):
    size = float32(rows * cols)
    frows = float32(rows)
    if kind == LOSS_MSE:
        return _mse_row(grad, pred, target, labels, r, cols, size, sparse, write_grad)
    if kind == LOSS_BCE:
        if from_logits:
            return _bce_logits_row(grad, pred, target, labels, r, cols, size, sparse, write_grad)
        return _bce_probs_row(grad, pred, target, labels, r, cols, size, sparse, write_grad)
    if from_logits:
        return _cce_logits_row(grad, pred, target, labels, r, cols, frows, sparse, write_grad)
    return _cce_probs_row(grad, pred, target, labels, r, cols, frows, sparse, write_grad)


_loss_kernel = make_row_sum_kernel(_loss_row, "loss_rows")


def loss(kind, pred, target, from_logits, grad, workspace):
    """The mean loss (a float: one double copied back) and, when grad is given, its
    gradient written on the device."""
    if kind not in LOSS_KERNEL_KINDS:
        raise ValueError(f"loss: expected kind in {tuple(LOSS_KERNEL_KINDS)}, received "
                         f"kind={kind!r}")
    sparse = kind == "scce"
    if pred.ndim != 2 or pred.shape[0] == 0 or pred.shape[1] == 0:
        raise ValueError(f"loss: expected pred of shape (rows >= 1, cols >= 1), received "
                         f"{tuple(pred.shape)}")
    rows = pred.shape[0]
    if sparse:
        check_shape("loss", "labels", target, (rows,))
        if target.dtype != np.int64:
            raise TypeError(f"loss: expected int64 labels, received dtype {target.dtype}")
        labels, target2 = target, pred
    else:
        check_shape("loss", "target", target, pred.shape)
        labels, target2 = workspace.table("no_labels", (0,)), target
    if grad is not None:
        check_shape("loss", "grad", grad, pred.shape)
    total = sum_rows(_loss_kernel, workspace, pred if grad is None else grad, pred, target2,
                     labels, LOSS_KERNEL_KINDS[kind], bool(from_logits), sparse, grad is not None)
    return total / rows
