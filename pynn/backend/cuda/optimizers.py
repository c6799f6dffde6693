"""The optimizers' updates over a flat parameter array, Keras 3's rules in the float32
order of csrc/optimizers.c, one thread per parameter; and optimizer_step, the plan's one
call per training step.  Adam's bias-corrected step size is computed on the host in double
and rounded to float32, term for term as pynn_optimizer_step does in C, so every backend
sees the same lr_t.
"""
import math

import numpy as np
from numba import cuda

from ...ids import OPTIMIZERS
from .. import reference as ref
from .runtime import F1, as_1d, elementwise_config


@cuda.jit
def _sgd_kernel(w, m, g, n, lr, momentum, use_momentum, nesterov):
    i = cuda.grid(1)
    if i < n:
        if not use_momentum:
            w[i] -= lr * g[i]
        else:
            mi = momentum * m[i] - lr * g[i]
            m[i] = mi
            if nesterov:
                w[i] += momentum * mi - lr * g[i]
            else:
                w[i] += mi


@cuda.jit(device=True, inline=True)
def _adam_moments(m, v, i, gi, one_minus_beta1, one_minus_beta2):
    """Adam's (and AMSGrad's, Nadam's) moments, Keras 3's form: m += (g - m)(1 - beta_1),
    v += (g^2 - v)(1 - beta_2); stored, and returned."""
    mi = m[i] + (gi - m[i]) * one_minus_beta1
    vi = v[i] + (gi * gi - v[i]) * one_minus_beta2
    m[i] = mi
    v[i] = vi
    return mi, vi


@cuda.jit
def _adam_kernel(w, m, v, g, n, lr_t, one_minus_beta1, one_minus_beta2, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        mi, vi = _adam_moments(m, v, i, gi, one_minus_beta1, one_minus_beta2)
        w[i] -= lr_t * mi / (math.sqrt(vi) + epsilon)


@cuda.jit
def _rmsprop_kernel(w, v, mom, g, n, lr, rho, one_minus_rho, momentum, use_momentum, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        vi = rho * v[i] + one_minus_rho * (gi * gi)
        v[i] = vi
        inc = lr * gi / math.sqrt(vi + epsilon)
        if not use_momentum:
            w[i] -= inc
        else:
            mo = momentum * mom[i] + inc
            mom[i] = mo
            w[i] -= mo


def sgd_update(w, m, g, lr, momentum, nesterov):
    """momentum 0: w -= lr g (m unused, may be None); else m = momentum m - lr g and
    w += m (nesterov: w += momentum m - lr g)."""
    w1, g1 = as_1d(w), as_1d(g)
    n = int(w1.shape[0])
    if n == 0:
        return
    use_momentum = momentum != 0.0
    m1 = as_1d(m) if use_momentum else w1
    blocks, threads = elementwise_config(n)
    _sgd_kernel[blocks, threads](w1, m1, g1, n, np.float32(lr), np.float32(momentum),
                                 use_momentum, bool(nesterov))


def adam_update(w, m, v, g, lr_t, beta1, beta2, epsilon):
    w1 = as_1d(w)
    n = int(w1.shape[0])
    if n == 0:
        return
    blocks, threads = elementwise_config(n)
    _adam_kernel[blocks, threads](w1, as_1d(m), as_1d(v), as_1d(g), n, np.float32(lr_t),
                                  F1 - np.float32(beta1), F1 - np.float32(beta2),
                                  np.float32(epsilon))


def rmsprop_update(w, v, mom, g, lr, rho, momentum, epsilon):
    """mom unused (may be None) when momentum is 0."""
    w1 = as_1d(w)
    n = int(w1.shape[0])
    if n == 0:
        return
    use_momentum = momentum != 0.0
    blocks, threads = elementwise_config(n)
    _rmsprop_kernel[blocks, threads](w1, as_1d(v), as_1d(mom) if use_momentum else w1,
                                     as_1d(g), n, np.float32(lr), np.float32(rho),
                                     F1 - np.float32(rho), np.float32(momentum),
                                     use_momentum, np.float32(epsilon))


@cuda.jit
def _weight_decay_kernel(w, n, wd, lr):
    i = cuda.grid(1)
    if i < n:
        wi = w[i]
        w[i] = wi - wi * wd * lr


@cuda.jit
def _adam_amsgrad_kernel(w, m, v, vh, g, n, lr_t, one_minus_beta1, one_minus_beta2, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        mi, vi = _adam_moments(m, v, i, gi, one_minus_beta1, one_minus_beta2)
        hi = vh[i]
        if vi > hi or vi != vi:
            hi = vi
        vh[i] = hi
        w[i] -= lr_t * mi / (math.sqrt(hi) + epsilon)


@cuda.jit
def _adagrad_kernel(w, acc, g, n, lr, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        ai = acc[i] + gi * gi
        acc[i] = ai
        w[i] -= lr * gi / math.sqrt(ai + epsilon)


@cuda.jit
def _adadelta_kernel(w, ag, ad, g, n, lr, rho, one_minus_rho, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        agi = rho * ag[i] + one_minus_rho * (gi * gi)
        ag[i] = agi
        delta = -(math.sqrt(ad[i] + epsilon) * gi / math.sqrt(agi + epsilon))
        ad[i] = rho * ad[i] + one_minus_rho * (delta * delta)
        w[i] += lr * delta


@cuda.jit
def _adamax_kernel(w, m, u, g, n, lr, one_minus_beta1, beta2, epsilon, bc1):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta1
        m[i] = mi
        ui = beta2 * u[i]
        ag = abs(gi)
        if ag > ui or ag != ag:
            ui = ag
        u[i] = ui
        w[i] -= lr * mi / (bc1 * (ui + epsilon))


@cuda.jit
def _nadam_kernel(w, m, v, g, n, lr, one_minus_beta1, one_minus_beta2, epsilon, c_m, c_g, bc2):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        mi, vi = _adam_moments(m, v, i, gi, one_minus_beta1, one_minus_beta2)
        m_hat = c_m * mi + c_g * gi
        v_hat = vi / bc2
        w[i] -= m_hat * lr / (math.sqrt(v_hat) + epsilon)


@cuda.jit
def _lion_kernel(w, m, g, n, lr, beta1, one_minus_beta1, beta2, one_minus_beta2):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        mi = m[i]
        c = mi * beta1 + gi * one_minus_beta1
        if c > 0:
            c = F1
        elif c < 0:
            c = -F1
        w[i] -= lr * c
        m[i] = mi * beta2 + gi * one_minus_beta2


def _launch(kernel, w, *args):
    """kernel[grid](w, *args) over w's n elements (args: arrays, then n's place is
    marked by None, then scalars)."""
    w1 = as_1d(w)
    n = int(w1.shape[0])
    if n == 0:
        return
    blocks, threads = elementwise_config(n)
    args = [n if a is None else (as_1d(a) if hasattr(a, "shape") and a.ndim else a)
            for a in args]
    kernel[blocks, threads](w1, *args)


def adam_lr_t(lr, beta_1, beta_2, step):
    """Adam's step size with the bias correction folded in: lr sqrt(1 - beta_2^step) /
    (1 - beta_1^step), in double, rounded to float32 (the kernels' precision)."""
    return float(np.float32(lr * math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)))


# ---- Keras 3's base-optimizer settings: clipping, per-variable decay, EMA ------------------
@cuda.jit
def _chunk_sumsq_kernel(g, starts, ends, out):
    """out[c] = the sum of squares of g[starts[c]:ends[c]] in double, in order (one thread
    per chunk of NORM_CHUNK: the chunking of pynn_segment_sumsq)."""
    c = cuda.grid(1)
    if c < out.shape[0]:
        acc = 0.0
        for i in range(starts[c], ends[c]):
            x = np.float64(g[i])
            acc += x * x
        out[c] = acc


@cuda.jit
def _clip_norm_kernel(g, n, c, denom):
    i = cuda.grid(1)
    if i < n:
        g[i] = g[i] * c / denom


@cuda.jit
def _scale_kernel(g, n, scale):
    i = cuda.grid(1)
    if i < n:
        g[i] = g[i] * scale


@cuda.jit
def _clip_value_kernel(g, n, c):
    i = cuda.grid(1)
    if i < n:
        x = g[i]
        if x < -c:
            x = -c
        elif x > c:
            x = c
        g[i] = x


@cuda.jit
def _ema_kernel(ema, w, n, m, one_minus_m, overwrite):
    i = cuda.grid(1)
    if i < n:
        e = m * ema[i] + one_minus_m * w[i]
        ema[i] = e
        if overwrite:
            w[i] = e


def segment_sumsq(g, triples):
    """The sum of squares of each segment (offset, size, flags) of the flat device array g,
    in double: chunk sums on the device, added in chunk order on the host (as C does)."""
    starts, ends, owner = [], [], []
    for k, (off, size, _) in enumerate(triples):
        for c in range(off, off + size, ref.NORM_CHUNK):
            starts.append(c)
            ends.append(min(c + ref.NORM_CHUNK, off + size))
            owner.append(k)
    sums = [0.0] * len(triples)
    if starts:
        out = cuda.device_array(len(starts), dtype=np.float64)
        blocks, threads = elementwise_config(len(starts))
        _chunk_sumsq_kernel[blocks, threads](as_1d(g), cuda.to_device(np.array(starts)),
                                             cuda.to_device(np.array(ends)), out)
        for k, part in zip(owner, out.copy_to_host()):
            sums[k] += float(part)
    return sums


def clip_gradients(g, triples, clipnorm, clipvalue, global_clipnorm):
    """Keras 3's _clip_gradients in place (reference.clip_gradients's formulas, float32
    elementwise)."""
    f = np.float32
    g1 = as_1d(g)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if clipnorm > 0:
            c = f(clipnorm)
            for (off, size, _), total in zip(triples, segment_sumsq(g1, triples)):
                if size:
                    norm = f(math.sqrt(total))
                    denom = norm if (norm > c or norm != norm) else c
                    _launch(_clip_norm_kernel, g1[off:off + size], None, c, f(denom))
        elif global_clipnorm > 0:
            c = f(global_clipnorm)
            norm = f(math.sqrt(sum(segment_sumsq(g1, triples))))
            inv = f(1) / norm
            scale = c * min(inv, f(1) / c) + (norm - norm)
            _launch(_scale_kernel, g1, None, f(scale))
        elif clipvalue > 0:
            _launch(_clip_value_kernel, g1, None, f(clipvalue))


def optimizer_step(kind, w, slots, g, step, hyper, segments=None, ema=None):
    """One update of w from g with the settings hyper (pynn.ids.HYPER's names; weight_decay
    and amsgrad may be left out; pynn.ids.OPTIONS's: clipping and EMA, 0 when left out);
    slots as pynn_optimizer_step's (csrc/pynn.h), None where the rule reads none; segments
    and ema as pynn_optimizer_apply's.  The step's scalars come from the reference's
    double-precision functions (adam_lr_t, nadam_factors), as C computes them."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer_step: expected kind in {tuple(OPTIMIZERS)}, received "
                         f"{kind!r}")
    s = list(slots) + [None] * 3
    f = np.float32
    w1 = as_1d(w)
    triples = ref.check_segments(segments, int(w1.shape[0]))
    clip_gradients(g, triples, hyper.get("clipnorm", 0.0), hyper.get("clipvalue", 0.0),
                   hyper.get("global_clipnorm", 0.0))
    lr = hyper["learning_rate"]
    wd = f(hyper.get("weight_decay", 0.0))
    if wd != 0:
        for off, size, flags in triples:
            if flags & ref.SEGMENT_DECAY and size:
                _launch(_weight_decay_kernel, w1[off:off + size], None, wd, f(lr))
    if segments is not None and ref.sparse_sgd_ok(kind, hyper, ema is not None):
        # plain SGD: the segments flagged SEGMENT_SPARSE are left to embedding_sgd
        g1 = as_1d(g)
        for a, b in ref.dense_runs(triples):
            _rule(kind, w1[a:b], s, g1[a:b], step, hyper, lr)
        return
    _rule(kind, w, s, g, step, hyper, lr)
    if ema is not None:
        m = f(0.0 if step == 1 else hyper.get("ema_momentum", 0.0))
        freq = int(hyper.get("ema_overwrite_frequency", 0.0) or 0)
        _launch(_ema_kernel, ema, w1, None, m, F1 - m, bool(freq > 0 and step % freq == 0))


def _rule(kind, w, s, g, step, hyper, lr):
    f = np.float32
    if kind == "sgd":
        sgd_update(w, s[0], g, lr, hyper["momentum"], bool(hyper["nesterov"]))
    elif kind == "adam":
        lr_t = adam_lr_t(lr, hyper["beta_1"], hyper["beta_2"], step)
        if hyper.get("amsgrad", 0.0):
            _launch(_adam_amsgrad_kernel, w, s[0], s[1], s[2], g, None, f(lr_t),
                    F1 - f(hyper["beta_1"]), F1 - f(hyper["beta_2"]), f(hyper["epsilon"]))
        else:
            adam_update(w, s[0], s[1], g, lr_t, hyper["beta_1"], hyper["beta_2"],
                        hyper["epsilon"])
    elif kind == "rmsprop":
        rmsprop_update(w, s[0], s[1], g, lr, hyper["rho"], hyper["momentum"], hyper["epsilon"])
    elif kind == "adagrad":
        _launch(_adagrad_kernel, w, s[0], g, None, f(lr), f(hyper["epsilon"]))
    elif kind == "adadelta":
        _launch(_adadelta_kernel, w, s[0], s[1], g, None, f(lr), f(hyper["rho"]),
                F1 - f(hyper["rho"]), f(hyper["epsilon"]))
    elif kind == "adamax":
        _launch(_adamax_kernel, w, s[0], s[1], g, None, f(lr), F1 - f(hyper["beta_1"]),
                f(hyper["beta_2"]), f(hyper["epsilon"]), f(1.0 - hyper["beta_1"] ** step))
    elif kind == "nadam":
        c_m, c_g, bc2 = ref.nadam_factors(hyper["beta_1"], hyper["beta_2"], step)
        _launch(_nadam_kernel, w, s[0], s[1], g, None, f(lr), F1 - f(hyper["beta_1"]),
                F1 - f(hyper["beta_2"]), f(hyper["epsilon"]), f(c_m), f(c_g), f(bc2))
    else:
        _launch(_lion_kernel, w, s[0], g, None, f(lr), f(hyper["beta_1"]),
                F1 - f(hyper["beta_1"]), f(hyper["beta_2"]), F1 - f(hyper["beta_2"]))
