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
from .elementwise import fill
from .reduction import (ROWS_PER_BLOCK, THREADS, _sum_in_order_kernel, make_row_sum_kernel,
                        store_block_sum, sum_rows, target_at)
from .runtime import D0, F0, F1, F2, HALF, check_shape, elementwise_config, pow2_at_least

LOSS_MSE = LOSSES["mse"]
LOSS_BCE = LOSSES["bce"]
LOSS_CCE = LOSSES["cce"]
LOSS_MAE = LOSSES["mae"]
LOSS_MAPE = LOSSES["mape"]
LOSS_HUBER = LOSSES["huber"]
LOSS_LOG_COSH = LOSSES["log_cosh"]
LOSS_KLD = LOSSES["kld"]
LOSS_HINGE = LOSSES["hinge"]
LOSS_SQUARED_HINGE = LOSSES["squared_hinge"]
LOSS_CATEGORICAL_HINGE = LOSSES["categorical_hinge"]
LOSS_POISSON = LOSSES["poisson"]
LOSS_COSINE = LOSSES["cosine_similarity"]
# "scce" runs the CCE rows against the one-hot rows of its labels (sparse=True)
LOSS_KERNEL_KINDS = dict(LOSSES, scce=LOSS_CCE)
_HINGES = ("hinge", "squared_hinge")

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
def _smoothed(t, smooth, keep, add):
    """Label smoothing (the options path; the default path passes smooth=False)."""
    return t * keep + add if smooth else t


@cuda.jit(device=True, inline=True)
def _bce_probs_row(g, p, t, labels, r, cols, size, sparse, write_grad, smooth, keep, add):
    s = D0
    for j in range(cols):
        pj = p[r, j]
        tj = _smoothed(target_at(t, labels, r, j, sparse), smooth, keep, add)
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
def _bce_logits_row(g, z, t, labels, r, cols, size, sparse, write_grad, smooth, keep, add):
    s = D0
    for j in range(cols):
        zj = z[r, j]
        tj = _smoothed(target_at(t, labels, r, j, sparse), smooth, keep, add)
        # max(z, 0) - z t + log1p(exp(-|z|)): never overflows
        s += float64(max(zj, F0) - zj * tj + math.log1p(math.exp(-abs(zj))))
        if write_grad:
            g[r, j] = (sigmoid(zj) - tj) / size
    return s / cols


@cuda.jit(device=True, inline=True)
def _cce_probs_row(g, p, t, labels, r, cols, frows, sparse, write_grad, smooth, keep, add):
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
        tj = _smoothed(target_at(t, labels, r, j, sparse), smooth, keep, add)
        gq = F0 if (q < _PROB_EPS or q > _PROB_MAX) else -tj / qc
        loss -= float64(tj * math.log(qc))
        dot += float64(gq * q)
    if write_grad:
        dotf = float32(dot)
        for j in range(cols):
            q = p[r, j] / s
            tj = _smoothed(target_at(t, labels, r, j, sparse), smooth, keep, add)
            gq = F0 if (q < _PROB_EPS or q > _PROB_MAX) else -tj / _clip_prob(q)
            g[r, j] = (gq - dotf) / s / frows
    return loss


@cuda.jit(device=True, inline=True)
def _cce_logits_row(g, z, t, labels, r, cols, frows, sparse, write_grad, smooth, keep, add):
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
        tj = _smoothed(target_at(t, labels, r, j, sparse), smooth, keep, add)
        loss -= float64(tj * ((z[r, j] - mx) - log_s))
        t_sum += float64(tj)
    if write_grad:
        t_sumf = float32(t_sum)
        for j in range(cols):
            g[r, j] = (math.exp(z[r, j] - mx) / s * t_sumf
                       - _smoothed(target_at(t, labels, r, j, sparse), smooth, keep, add)) / frows
    return loss


# ---- Keras 3's other losses (csrc/losses.c's formulas, in its order) ----

_LOG2 = np.float32(math.log(2.0))
_HUNDRED = np.float32(100.0)
_NORM_EPS2 = np.float32(1e-14)


@cuda.jit(device=True, inline=True)
def _sign(x):
    return F1 if x > F0 else (-F1 if x < F0 else F0)


@cuda.jit(device=True, inline=True)
def _clip_unit(x):
    return _PROB_EPS if x < _PROB_EPS else (F1 if x > F1 else x)


@cuda.jit(device=True, inline=True)
def _other_row(g, p, t, r, cols, size, frows, kind, param, binary, write_grad):
    """The row of one of the kinds MAE ... cosine similarity (csrc/losses.c)."""
    if kind == LOSS_CATEGORICAL_HINGE:
        pos = D0
        for j in range(cols):
            pos += float64(t[r, j] * p[r, j])
        neg = (F1 - t[r, 0]) * p[r, 0]
        k = 0
        for j in range(1, cols):
            v = (F1 - t[r, j]) * p[r, j]
            if v > neg:
                neg = v
                k = j
        m = neg - float32(pos) + F1
        if write_grad:
            for j in range(cols):
                if m > F0:
                    g[r, j] = (-t[r, j] + ((F1 - t[r, j]) if j == k else F0)) / frows
                else:
                    g[r, j] = F0
        return float64(max(m, F0))
    if kind == LOSS_COSINE:
        pp = D0
        tt = D0
        tp = D0
        for j in range(cols):
            pp += float64(p[r, j] * p[r, j])
            tt += float64(t[r, j] * t[r, j])
            tp += float64(t[r, j] * p[r, j])
        ppf = float32(pp)
        ip = F1 / math.sqrt(max(ppf, _NORM_EPS2))
        it = F1 / math.sqrt(max(float32(tt), _NORM_EPS2))
        c = it * ip * float32(tp)
        if write_grad:
            for j in range(cols):
                if ppf >= _NORM_EPS2:
                    g[r, j] = -ip * (t[r, j] * it - c * (p[r, j] * ip)) / frows
                else:
                    g[r, j] = -t[r, j] * it * ip / frows
        return -float64(c)
    s = D0
    for j in range(cols):
        pj = p[r, j]
        tj = t[r, j]
        if kind == LOSS_MAE:
            d = pj - tj
            s += float64(abs(d))
            gj = _sign(d) / size
        elif kind == LOSS_MAPE:
            den = max(abs(tj), _PROB_EPS)
            s += float64(abs((tj - pj) / den))
            gj = _HUNDRED * _sign(pj - tj) / den / size
        elif kind == LOSS_HUBER:
            e = pj - tj
            a = abs(e)
            if a <= param:
                s += float64(HALF * e * e)
                gj = e / size
            else:
                s += float64(param * a - HALF * param * param)
                gj = param * _sign(e) / size
        elif kind == LOSS_LOG_COSH:
            e = pj - tj
            x = float32(-2.0) * e
            s += float64(e + (max(x, F0) + math.log1p(math.exp(-abs(x)))) - _LOG2)
            gj = math.tanh(e) / size
        elif kind == LOSS_KLD:
            tc = _clip_unit(tj)
            pc = _clip_unit(pj)
            s += float64(tc * math.log(tc / pc))
            gj = F0 if (pj < _PROB_EPS or pj > F1) else -tc / pc / frows
        elif kind == LOSS_POISSON:
            pe = pj + _PROB_EPS
            s += float64(pj - tj * math.log(pe))
            gj = (F1 - tj / pe) / size
        else:                                      # hinge, squared hinge
            tt = F2 * tj - F1 if binary else tj
            m = F1 - tt * pj
            h = max(m, F0)
            if kind == LOSS_HINGE:
                s += float64(h)
                gj = -tt / size if m > F0 else F0
            else:
                s += float64(h * h)
                gj = -F2 * tt * h / size if m > F0 else F0
        if write_grad:
            g[r, j] = gj
    if kind == LOSS_KLD:
        return s
    if kind == LOSS_MAPE:
        return 100.0 * (s / cols)
    return s / cols


@cuda.jit(device=True, inline=True)
def _row(grad, pred, target, labels, r, cols, size, frows, kind, from_logits, param, sparse,
         write_grad, smooth, keep, add):
    """The row of any kind, its gradient divided by size (rows cols) or frows (rows)."""
    if kind != LOSS_MSE and kind != LOSS_BCE and kind != LOSS_CCE:
        return _other_row(grad, pred, target, r, cols, size, frows, kind, param,
                          labels[0] != 0, write_grad)
    if kind == LOSS_MSE:
        return _mse_row(grad, pred, target, labels, r, cols, size, sparse, write_grad)
    if kind == LOSS_BCE:
        if from_logits:
            return _bce_logits_row(grad, pred, target, labels, r, cols, size, sparse, write_grad,
                                   smooth, keep, add)
        return _bce_probs_row(grad, pred, target, labels, r, cols, size, sparse, write_grad,
                              smooth, keep, add)
    if from_logits:
        return _cce_logits_row(grad, pred, target, labels, r, cols, frows, sparse, write_grad,
                               smooth, keep, add)
    return _cce_probs_row(grad, pred, target, labels, r, cols, frows, sparse, write_grad,
                          smooth, keep, add)


@cuda.jit(device=True, inline=True)
def _loss_row(grad, pred, target, labels, r, rows, cols, kind, option, sparse,
              write_grad):
    # option: from_logits (1 or 0) for BCE and CCE, Huber's delta; labels (not sparse):
    # [1] when hinge targets are all 0 or 1 (mapped to -1, 1), else [0]
    return _row(grad, pred, target, labels, r, cols, float32(rows * cols), float32(rows), kind,
                option != 0, float32(option), sparse, write_grad, False, F1, F0)


_loss_kernel = make_row_sum_kernel(_loss_row, "loss_rows")


@cuda.jit
def _hinge_binary_kernel(flag, t, n):
    # flag[0] starts at 1; any target neither 0 nor 1 writes 0 (every writer writes 0)
    i = cuda.grid(1)
    if i < n:
        v = t[i]
        if v != F0 and v != F1:
            flag[0] = 0


@cuda.jit
def _options_kernel(partials, grad, pred, target, labels, rows, cols, kind, from_logits, param,
                    sparse, write_grad, weights, per_weight, has_weights, has_ignore, ignore,
                    smooth, keep, add, divisor):
    """The options path (csrc/losses.c's options_row): per row its loss times its weight,
    the gradient divided by `divisor` rows and scaled by the weight; ignored rows give 0 and a
    zero gradient row.  The rows' sum runs as reduction.make_row_sum_kernel's (same blocks,
    threads and tree)."""
    part = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    r0 = cuda.blockIdx.x * ROWS_PER_BLOCK
    r1 = min(r0 + ROWS_PER_BLOCK, rows)
    size = float32(divisor * cols)
    frows = float32(divisor)
    s = D0
    for r in range(r0 + tid, r1, nthreads):
        if has_ignore and labels[r] == ignore:
            if write_grad:
                for j in range(cols):
                    grad[r, j] = F0
            continue
        v = _row(grad, pred, target, labels, r, cols, size, frows, kind, from_logits, param,
                 sparse, write_grad, smooth, keep, add)
        if has_weights:
            w = weights[r // per_weight]
            if write_grad:
                for j in range(cols):
                    grad[r, j] = grad[r, j] * w
            v = float64(w) * v
        s += v
    store_block_sum(partials, part, tid, nthreads, s)


def _sum_options(workspace, grad, pred, target, labels, kind, from_logits, param, sparse,
                 weights, per_weight, ignore_class, smooth, keep, add, divisor):
    rows, cols = pred.shape
    nblocks = (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    threads = pow2_at_least(min(rows, ROWS_PER_BLOCK), THREADS)
    partials = workspace.device("row_sum_partials", nblocks, np.float64)
    no_w = weights is None
    if no_w:
        weights = workspace.device("no_weights", 1, np.float32)
    _options_kernel[nblocks, threads](
        partials, pred if grad is None else grad, pred, target, labels, rows, cols,
        LOSS_KERNEL_KINDS[kind], bool(from_logits), np.float32(param), sparse, grad is not None,
        weights, per_weight, not no_w, ignore_class is not None,
        np.int64(0 if ignore_class is None else ignore_class), smooth, keep, add, divisor)
    total = partials
    if nblocks > 1:
        total = workspace.device("row_sum_total", 1, np.float64)
        _sum_in_order_kernel[1, 1](total, partials, nblocks)
    host = workspace.pinned("row_sum_host", 1, np.float64)
    total[0:1].copy_to_host(host)
    return float(host[0])


def loss(kind, pred, target, from_logits, grad, workspace, param=1.0, weights=None,
         label_smoothing=0.0, ignore_class=None, reduce_sum=False):
    """The loss, sum_i w_i l_i / rows (a float: one double copied back) and, when grad is
    given, its gradient written on the device.  param: Huber's delta; weights,
    label_smoothing, ignore_class, reduce_sum (Keras's "sum": divisor 1) as Backend.loss
    (csrc/pynn.h's pynn_loss_options).  The
    options path copies the weights (and, with ignore_class, the labels) to the host to
    check them and count the rows not ignored."""
    if kind not in LOSS_KERNEL_KINDS:
        raise ValueError(f"loss: expected kind in {tuple(LOSS_KERNEL_KINDS)}, received "
                         f"kind={kind!r}")
    sparse = kind == "scce"
    if pred.ndim != 2 or pred.shape[0] == 0 or pred.shape[1] == 0:
        raise ValueError(f"loss: expected pred of shape (rows >= 1, cols >= 1), received "
                         f"{tuple(pred.shape)}")
    rows, cols = pred.shape
    if sparse:
        check_shape("loss", "labels", target, (rows,))
        if target.dtype != np.int64:
            raise TypeError(f"loss: expected int64 labels, received dtype {target.dtype}")
        labels, target2 = target, pred
    else:
        check_shape("loss", "target", target, pred.shape)
        labels, target2 = workspace.table("no_labels", (0,)), target
        if kind in _HINGES:       # Keras: {0, 1} targets become {-1, 1} (the whole batch's)
            labels = workspace.device("hinge_binary", 1, np.int64)
            labels.copy_to_device(np.ones(1, np.int64))
            n = target.size
            blocks, threads = elementwise_config(n)
            _hinge_binary_kernel[blocks, threads](labels, target.reshape(n), n)
    if kind == "huber" and not (param > 0 and math.isfinite(param)):
        raise ValueError(f"loss: expected huber's delta > 0, received delta={param!r}")
    if grad is not None:
        check_shape("loss", "grad", grad, pred.shape)
    if not (0 <= label_smoothing <= 1):
        raise ValueError(f"loss: expected label_smoothing in [0, 1], received "
                         f"{label_smoothing!r}")
    if label_smoothing != 0 and kind not in ("bce", "cce", "scce"):
        raise ValueError(f"loss: label_smoothing applies to bce and cce, received kind={kind!r}")
    if ignore_class is not None and not sparse:
        raise ValueError(f"loss: ignore_class applies to 'scce', received kind={kind!r}")
    if weights is None and label_smoothing == 0 and ignore_class is None and not reduce_sum:
        option = float(param) if kind == "huber" else float(bool(from_logits))
        total = sum_rows(_loss_kernel, workspace, pred if grad is None else grad, pred,
                         target2, labels, LOSS_KERNEL_KINDS[kind], option, sparse,
                         grad is not None)
        return total / rows
    # ---- the options path ----
    per_weight = 1
    if weights is not None:
        if weights.ndim != 1 or weights.shape[0] < 1 or rows % weights.shape[0] != 0:
            raise ValueError(f"loss: expected weights of a length dividing the {rows} rows, "
                             f"received shape {tuple(weights.shape)}")
        w_host = weights.copy_to_host()
        if not (np.all(np.isfinite(w_host)) and np.all(w_host >= 0)):
            raise ValueError("loss: expected finite weights >= 0")
        per_weight = rows // weights.shape[0]
    divisor = rows
    if ignore_class is not None:
        divisor = int(np.count_nonzero(target.copy_to_host() != ignore_class))
        if divisor == 0:                     # every row ignored: 0 and a zero gradient
            if grad is not None:
                fill(grad, 0.0)
            return 0.0
    if reduce_sum:                           # Keras's "sum": nothing divided by the rows
        divisor = 1
    ls = np.float32(label_smoothing)
    keep = F1 - ls
    add = HALF * ls if kind == "bce" else ls / np.float32(cols)
    total = _sum_options(workspace, grad, pred, target2, labels, kind, from_logits,
                         param if kind == "huber" else 1.0, sparse, weights, per_weight,
                         ignore_class, label_smoothing != 0, keep, add, divisor)
    return total / divisor
