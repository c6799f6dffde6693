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


@cuda.jit
def _adam_kernel(w, m, v, g, n, lr_t, one_minus_beta1, one_minus_beta2, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta2
        m[i] = mi
        v[i] = vi
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


def adam_lr_t(lr, beta_1, beta_2, step):
    """Adam's step size with the bias correction folded in: lr sqrt(1 - beta_2^step) /
    (1 - beta_1^step), in double, rounded to float32 (the kernels' precision)."""
    return float(np.float32(lr * math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)))


def optimizer_step(kind, w, slot1, slot2, g, step, hyper):
    """One update of w from g with the settings hyper (pynn.ids.HYPER's names); the slots
    as pynn_optimizer_step's: SGD slot1 = momentum; Adam slot1 = m, slot2 = v; RMSprop
    slot1 = velocity, slot2 = momentum (None where momentum is 0)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer_step: expected kind in {tuple(OPTIMIZERS)}, received "
                         f"{kind!r}")
    lr = hyper["learning_rate"]
    if kind == "sgd":
        sgd_update(w, slot1, g, lr, hyper["momentum"], bool(hyper["nesterov"]))
    elif kind == "adam":
        lr_t = adam_lr_t(lr, hyper["beta_1"], hyper["beta_2"], step)
        adam_update(w, slot1, slot2, g, lr_t, hyper["beta_1"], hyper["beta_2"], hyper["epsilon"])
    else:
        rmsprop_update(w, slot1, slot2, g, lr, hyper["rho"], hyper["momentum"], hyper["epsilon"])
