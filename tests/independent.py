"""An independent float64 implementation of a Dense network's training step.

Written from the Keras documentation's formulas, sharing no code with pynn: the
gradient comes from central finite differences of the float64 loss, not from any
backward pass, so it checks pynn's backpropagation end to end.
"""
import math

import numpy as np

_erf = np.vectorize(math.erf)


def activation(name, z, alpha=0.2):
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "gelu":
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(name)


EPS = 1e-7  # Keras's clipping epsilon for probabilities


def loss(kind, out, target, from_logits):
    """Keras semantics: mean over the batch of the per-sample loss.  kind "huber/0.5":
    Huber with delta 0.5."""
    per_sample = _keras_loss(kind, out, target)
    if per_sample is not None:
        return np.mean(per_sample)
    if kind == "mse":
        return np.mean(np.mean((out - target) ** 2, axis=-1))
    if kind == "bce":
        if from_logits:
            p = 1.0 / (1.0 + np.exp(-out))
        else:
            p = out
        p = np.clip(p, EPS, 1 - EPS)
        return np.mean(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p)), axis=-1))
    if kind in ("cce", "scce"):
        if kind == "scce":
            onehot = np.zeros_like(out)
            onehot[np.arange(len(target)), target.astype(int)] = 1.0
            target = onehot
        if from_logits:
            z = out - out.max(axis=-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        else:
            p = out / out.sum(axis=-1, keepdims=True)
            logp = np.log(np.clip(p, EPS, 1 - EPS))
        return np.mean(-np.sum(target * logp, axis=-1))
    raise ValueError(kind)


def _keras_loss(kind, p, t):
    """The per-sample values of Keras 3's other losses (keras/src/losses/losses.py), or
    None for the cross-entropies and MSE."""
    if kind == "mae":
        return np.mean(np.abs(t - p), axis=-1)
    if kind == "mape":
        return 100 * np.mean(np.abs((t - p) / np.maximum(np.abs(t), EPS)), axis=-1)
    if kind.startswith("huber"):
        delta = float(kind.split("/")[1]) if "/" in kind else 1.0
        e = np.abs(p - t)
        return np.mean(np.where(e <= delta, 0.5 * e ** 2, delta * e - 0.5 * delta ** 2), axis=-1)
    if kind == "log_cosh":
        return np.mean(np.log(np.cosh(p - t)), axis=-1)
    if kind == "kld":
        tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return np.sum(tc * np.log(tc / pc), axis=-1)
    if kind in ("hinge", "squared_hinge"):
        if np.all((t == 0) | (t == 1)):
            t = 2 * t - 1
        h = np.maximum(1 - t * p, 0)
        return np.mean(h if kind == "hinge" else h ** 2, axis=-1)
    if kind == "categorical_hinge":
        pos = np.sum(t * p, axis=-1)
        neg = np.max((1 - t) * p, axis=-1)
        return np.maximum(neg - pos + 1, 0)
    if kind == "poisson":
        return np.mean(p - t * np.log(p + EPS), axis=-1)
    if kind == "cosine_similarity":
        def unit(v):
            return v / np.sqrt(np.maximum(np.sum(v * v, axis=-1, keepdims=True), EPS * EPS))
        return -np.sum(unit(t) * unit(p), axis=-1)
    return None


def forward(weights, acts, x):
    """weights: [k0, b0, k1, b1, ...] (Keras layouts); acts: one name per Dense layer."""
    a = x
    for i, act in enumerate(acts):
        a = activation(act, a @ weights[2 * i] + weights[2 * i + 1])
    return a


def loss_of(weights, acts, x, target, kind, from_logits):
    return loss(kind, forward(weights, acts, x), target, from_logits)


def gradients(weights, acts, x, target, kind, from_logits, h=1e-6):
    """d loss / d weight for every weight, by central differences in float64."""
    grads = []
    for w in weights:
        g = np.zeros_like(w)
        flat, gflat = w.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = loss_of(weights, acts, x, target, kind, from_logits)
            flat[i] = old - h
            down = loss_of(weights, acts, x, target, kind, from_logits)
            flat[i] = old
            gflat[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


class Optimizer:
    """Keras 3 update rules, in float64 (keras/src/optimizers/*.py; weight_decay as
    base_optimizer._apply_weight_decay: before the rule, w -= w * weight_decay * lr)."""

    def __init__(self, kind, lr, momentum=0.0, nesterov=False, beta_1=0.9, beta_2=0.999,
                 rho=0.9, epsilon=1e-7, weight_decay=0.0, amsgrad=False,
                 initial_accumulator_value=0.1):
        self.kind, self.lr, self.momentum, self.nesterov = kind, lr, momentum, nesterov
        self.beta_1, self.beta_2, self.rho, self.epsilon = beta_1, beta_2, rho, epsilon
        self.weight_decay, self.amsgrad = weight_decay, amsgrad
        self.initial_accumulator_value = initial_accumulator_value
        self.t = 0
        self.u_product = 1.0          # Nadam's running product, as Keras keeps it
        self.state = None

    def step(self, weights, grads):
        if self.state is None:
            init = self.initial_accumulator_value if self.kind == "adagrad" else 0.0
            self.state = [[np.full_like(w, init), np.zeros_like(w), np.zeros_like(w)]
                          for w in weights]
        self.t += 1
        t = self.t
        if self.kind == "nadam":
            self.u_product *= self.beta_1 * (1.0 - 0.5 * 0.96 ** t)
        for w, g, (s1, s2, s3) in zip(weights, grads, self.state):
            if self.weight_decay:
                w -= w * self.weight_decay * self.lr
            if self.kind == "sgd":
                if self.momentum:
                    s1[...] = self.momentum * s1 - self.lr * g
                    w += (self.momentum * s1 - self.lr * g) if self.nesterov else s1
                else:
                    w -= self.lr * g
            elif self.kind == "adam":
                s1 += (g - s1) * (1 - self.beta_1)
                s2 += (g * g - s2) * (1 - self.beta_2)
                v = s2
                if self.amsgrad:
                    s3[...] = np.maximum(s3, s2)
                    v = s3
                alpha = self.lr * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
                w -= alpha * s1 / (np.sqrt(v) + self.epsilon)
            elif self.kind == "rmsprop":
                s1[...] = self.rho * s1 + (1 - self.rho) * g * g
                inc = self.lr * g / np.sqrt(s1 + self.epsilon)
                if self.momentum:
                    s2[...] = self.momentum * s2 + inc
                    w -= s2
                else:
                    w -= inc
            elif self.kind == "adagrad":
                s1 += g * g
                w -= self.lr * g / np.sqrt(s1 + self.epsilon)
            elif self.kind == "adadelta":
                s1[...] = self.rho * s1 + (1 - self.rho) * g * g
                delta = -np.sqrt(s2 + self.epsilon) * g / np.sqrt(s1 + self.epsilon)
                s2[...] = self.rho * s2 + (1 - self.rho) * delta * delta
                w += self.lr * delta
            elif self.kind == "adamax":
                s1 += (g - s1) * (1 - self.beta_1)
                s2[...] = np.maximum(self.beta_2 * s2, np.abs(g))
                w -= self.lr * s1 / ((1 - self.beta_1 ** t) * (s2 + self.epsilon))
            elif self.kind == "nadam":
                u_t = self.beta_1 * (1.0 - 0.5 * 0.96 ** t)
                u_t1 = self.beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
                u_product_t1 = self.u_product * u_t1
                s1 += (g - s1) * (1 - self.beta_1)
                s2 += (g * g - s2) * (1 - self.beta_2)
                m_hat = u_t1 * s1 / (1 - u_product_t1) + (1 - u_t) * g / (1 - self.u_product)
                v_hat = s2 / (1 - self.beta_2 ** t)
                w -= m_hat * self.lr / (np.sqrt(v_hat) + self.epsilon)
            elif self.kind == "lion":
                w -= self.lr * np.sign(s1 * self.beta_1 + g * (1 - self.beta_1))
                s1[...] = s1 * self.beta_2 + g * (1 - self.beta_2)
            else:
                raise ValueError(self.kind)
