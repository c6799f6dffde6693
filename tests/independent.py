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
    """Keras semantics: mean over the batch of the per-sample loss."""
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
    """Keras 3 update rules, in float64."""

    def __init__(self, kind, lr, momentum=0.0, nesterov=False, beta_1=0.9, beta_2=0.999,
                 rho=0.9, epsilon=1e-7):
        self.kind, self.lr, self.momentum, self.nesterov = kind, lr, momentum, nesterov
        self.beta_1, self.beta_2, self.rho, self.epsilon = beta_1, beta_2, rho, epsilon
        self.t = 0
        self.state = None

    def step(self, weights, grads):
        if self.state is None:
            self.state = [[np.zeros_like(w), np.zeros_like(w)] for w in weights]
        self.t += 1
        for w, g, (s1, s2) in zip(weights, grads, self.state):
            if self.kind == "sgd":
                if self.momentum:
                    s1[...] = self.momentum * s1 - self.lr * g
                    w += (self.momentum * s1 - self.lr * g) if self.nesterov else s1
                else:
                    w -= self.lr * g
            elif self.kind == "adam":
                s1 += (g - s1) * (1 - self.beta_1)
                s2 += (g * g - s2) * (1 - self.beta_2)
                alpha = self.lr * math.sqrt(1 - self.beta_2 ** self.t) / (1 - self.beta_1 ** self.t)
                w -= alpha * s1 / (np.sqrt(s2) + self.epsilon)
            elif self.kind == "rmsprop":
                s1[...] = self.rho * s1 + (1 - self.rho) * g * g
                inc = self.lr * g / np.sqrt(s1 + self.epsilon)
                if self.momentum:
                    s2[...] = self.momentum * s2 + inc
                    w -= s2
                else:
                    w -= inc
            else:
                raise ValueError(self.kind)
