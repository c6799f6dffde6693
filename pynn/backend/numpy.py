"""The `numpy` backend: the reference kernels of `reference.py` behind the backend
interface.  Slow and plain on purpose: it is the truth the C and CUDA kernels are
checked against."""
import numpy as np

from . import reference as ref
from .base import HostBackend


class NumpyBackend(HostBackend):
    name = "numpy"

    def matmul(self, a, b, transpose_a, transpose_b, out):
        out[...] = ref.gemm(a, b, transpose_a, transpose_b)

    def dense_forward(self, x, w, b, activation, alpha, z, y):
        zz = ref.gemm(x, w)
        if b is not None:
            zz = zz + b
        z[...] = zz
        y[...] = ref.activation_forward(z, activation, alpha)

    def bias_grad(self, dz, out):
        out[...] = ref.bias_grad(dz)

    def activation_forward(self, x, activation, alpha, out):
        out[...] = ref.activation_forward(x, activation, alpha)

    def activation_backward(self, x, y, dy, activation, alpha, out):
        out[...] = ref.activation_backward(x, y, dy, activation, alpha)

    def loss(self, kind, pred, target, from_logits, grad):
        if kind == "scce":
            value, g = ref.sparse_cce(pred, target, from_logits)
        else:
            value, g = ref.loss(pred, target, kind, from_logits)
        if grad is not None:
            grad[...] = g
        return float(value)

    def sgd_update(self, w, m, g, lr, momentum, nesterov):
        ref.sgd_update(w, m, g, np.float32(lr), np.float32(momentum), nesterov)

    def adam_update(self, w, m, v, g, lr_t, beta1, beta2, epsilon):
        ref.adam_update(w, m, v, g, np.float32(lr_t), np.float32(beta1), np.float32(beta2),
                        np.float32(epsilon))

    def rmsprop_update(self, w, v, mom, g, lr, rho, momentum, epsilon):
        ref.rmsprop_update(w, v, mom, g, np.float32(lr), np.float32(rho), np.float32(momentum),
                           np.float32(epsilon))
